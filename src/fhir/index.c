/*
 * index.c - keeping the search index in step with the extraction rules:
 * the entries of a resource being written, and a full reindex when the rules
 * that built the stored index are not this version's.
 *
 * The store's meta value "index.version" names the rules the index was built
 * with. A store created before search existed, a store copied to PostgreSQL
 * (index.* is not copied) or a store indexed by an older carevault has
 * another value (or none), and serve reindexes every current resource before
 * it answers. A reindex write carries the version it read, so a resource
 * written meanwhile (by another node) keeps the index its writer made.
 */
#include "fhir/fhir.h"

#include <pthread.h>
#include <string.h>

#include "core/log.h"

/* Bump when extraction or normalisation changes what an index entry is. */
#define INDEX_VERSION "search-index-2"
#define REINDEX_BATCH 256

cv_rc cv_fhir_index(const cv_fhir_t *f, json_object *obj, cv_pool_t *pool, const cv_ix_entry_t **out, size_t *n)
{
	cv_sp_entries_t es = { .pool = pool };
	cv_rc rc = cv_sp_extract(f->search, f->model, obj, CV_SP_INDEX, &es);
	*out = es.v;
	*n = es.n;
	return rc;
}

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	size_t left;
} waiter_t;

static void one_done(cv_store_write_t *w)
{
	waiter_t *wt = w->arg;
	pthread_mutex_lock(&wt->mu);
	if (--wt->left == 0)
		pthread_cond_signal(&wt->cond);
	pthread_mutex_unlock(&wt->mu);
}

typedef struct reindex {
	cv_fhir_t *f;
	cv_pool_t *pool;
	cv_store_write_t w[REINDEX_BATCH];
	size_t n;
	int64_t last_rk;
} reindex_t;

static cv_rc take(void *arg, const cv_store_hit_t *h)
{
	reindex_t *r = arg;
	json_object *obj;
	const char *err;
	cv_json_limits_t lim;
	cv_json_limits_default(&lim);
	lim.max_depth = 256;
	r->last_rk = h->at.rk;
	if (h->v.type[0] == CV_STORE_INTERNAL_PREFIX)
		return CV_OK; /* accounts and the like have no search index */
	cv_rc rc = cv_json_parse((const char *)h->v.body, h->v.body_len, &lim, r->pool, &obj, &err);
	if (!rc)
		rc = cv_json_pool_own(r->pool, obj);
	if (rc)
		return rc;
	json_object *id;
	if (!json_object_object_get_ex(obj, "id", &id))
		return CV_OK;
	cv_store_write_t *w = &r->w[r->n++];
	memset(w, 0, sizeof *w);
	w->op = CV_STORE_REINDEX;
	w->type = h->v.type;
	w->id = cv_pool_strdup(r->pool, json_object_get_string(id));
	w->expect_version = h->v.version;
	if (!w->id)
		return CV_E_NOMEM;
	return cv_fhir_index(r->f, obj, r->pool, &w->index, &w->nindex);
}

/* Submits the gathered writes and waits for all of them. */
static cv_rc flush(reindex_t *r)
{
	waiter_t wt = { .left = r->n };
	cv_rc rc = CV_OK;
	pthread_mutex_init(&wt.mu, NULL);
	pthread_cond_init(&wt.cond, NULL);
	size_t submitted = 0;
	for (size_t i = 0; i < r->n; i++) {
		r->w[i].done = one_done;
		r->w[i].arg = &wt;
		if ((rc = cv_store_submit(r->f->store, &r->w[i])))
			break;
		submitted++;
	}
	pthread_mutex_lock(&wt.mu);
	wt.left -= r->n - submitted;
	while (wt.left)
		pthread_cond_wait(&wt.cond, &wt.mu);
	pthread_mutex_unlock(&wt.mu);
	for (size_t i = 0; !rc && i < submitted; i++)
		if (r->w[i].result && r->w[i].result != CV_E_NOTFOUND)
			rc = r->w[i].result;
	pthread_mutex_destroy(&wt.mu);
	pthread_cond_destroy(&wt.cond);
	r->n = 0;
	return rc;
}

cv_rc cv_fhir_reindex(cv_fhir_t *f, void (*progress)(void *arg, uint64_t done), void *arg)
{
	cv_buf_t have;
	cv_buf_init(&have, 256);
	cv_rc rc = cv_store_meta_get(f->store, "index.version", &have);
	int current = rc == CV_OK && have.data && strcmp(have.data, INDEX_VERSION) == 0;
	cv_buf_release(&have);
	if (rc && rc != CV_E_NOTFOUND)
		return rc;
	if (current)
		return CV_OK;
	cv_log(CV_LOG_INFO, "fhir.reindex_start", NULL, 0);
	reindex_t *r = calloc(1, sizeof *r);
	if (!r)
		return CV_E_NOMEM;
	r->f = f;
	uint64_t done = 0;
	rc = CV_OK;
	for (;;) {
		cv_pool_t pool;
		cv_pool_init(&pool, 0);
		r->pool = &pool;
		int64_t before = r->last_rk;
		rc = cv_store_scan_current(f->store, NULL, r->last_rk, REINDEX_BATCH, &pool, take, r);
		size_t n = r->n;
		if (!rc)
			rc = flush(r);
		r->n = 0;
		cv_pool_release(&pool);
		done += n;
		if (progress)
			progress(arg, done);
		if (rc || r->last_rk == before)
			break;
	}
	free(r);
	if (!rc) {
		cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = "index.version",
				       .body = (const uint8_t *)INDEX_VERSION, .body_len = strlen(INDEX_VERSION) };
		rc = cv_store_write_sync(f->store, &w);
	}
	cv_log(rc ? CV_LOG_ERROR : CV_LOG_INFO, "fhir.reindex_done",
	       (cv_log_field_t[]){ CV_LI("resources", (long long)done), CV_LS("rc", cv_rc_str(rc)) }, 2);
	return rc;
}
