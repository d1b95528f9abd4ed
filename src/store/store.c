/*
 * store.c - the back-end-independent part of the store: dispatch, and the
 * committer thread that groups concurrent writes into shared transactions.
 *
 * Group commit: writers queue their write and wait (or get a callback); the
 * committer takes everything queued, applies it as one transaction with one
 * durable commit, then completes each write. While it commits, new writes
 * queue up for the next batch, so throughput grows with concurrency instead
 * of being capped at one fsync per request.
 */
#include "store/store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "store/backend.h"
#include "store/internal.h"
#include "store/query.h"

#define CV_STORE_BATCH_MAX 1024



#define KEY_INDEX_ID 2

static size_t key_cache = CV_STORE_KEY_CACHE;

void cv_store_set_key_cache(size_t n)
{
	key_cache = n < 16 ? 16 : n;
}

static cv_store_write_t *take_batch(cv_store_t *s)
{
	cv_store_write_t *batch = s->head, *last = s->head;
	size_t n = 1;
	while (last->next && n < CV_STORE_BATCH_MAX) {
		last = last->next;
		n++;
	}
	s->head = last->next;
	if (!s->head)
		s->tail = NULL;
	s->queued -= n;
	last->next = NULL;
	return batch;
}

/* Frees what the store prepared for w (and its members), once its result is known. */
static void release_write(cv_store_t *s, cv_store_write_t *w)
{
	cv_buf_release(&w->sealed);
	cv_buf_release(&w->blinded);
	cv_store_key_done(s, w);
	for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
		release_write(s, w->members[i]);
}

static cv_rc prepare_write(cv_store_t *s, cv_store_write_t *w);

/* Whether w used a key retired meanwhile (store.h: the back end's CV_E_AGAIN). */
static bool used_retired_key(const cv_store_write_t *w)
{
	if (w->result == CV_E_AGAIN)
		return true;
	for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
		if (w->members[i]->result == CV_E_AGAIN)
			return true;
	return false;
}

#define REDO_MAX 3

/* A write sealed under a key that a rotation retired before it committed:
 * sealed again under the owner's current key and queued again, at the front
 * (its caller keeps the plaintext until done). True when it was requeued. */
static bool redo(cv_store_t *s, cv_store_write_t *w)
{
	if (!used_retired_key(w))
		return false;
	bool retry = w->redo < REDO_MAX;
	w->redo++;
	release_write(s, w); /* unpins and forgets the retired keys */
	atomic_store_explicit(&s->key_epoch_checked, 0, memory_order_relaxed);
	cv_store_keys_refresh_system(s);
	cv_rc rc = retry ? prepare_write(s, w) : CV_E_CONFLICT;
	if (rc) {
		w->result = rc;
		for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
			w->members[i]->result = w->members[i]->result == CV_E_AGAIN ? rc : CV_E_ABORTED;
		return false;
	}
	w->result = CV_E_INTERNAL; /* this attempt's results only (settle_group) */
	for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
		w->members[i]->result = CV_E_INTERNAL;
	pthread_mutex_lock(&s->mu);
	w->next = s->head;
	s->head = w;
	if (!s->tail)
		s->tail = w;
	s->queued++;
	pthread_mutex_unlock(&s->mu);
	return true;
}

/* A group that failed committed none of its members, but a back end that
 * failed a whole batch (connection lost, COMMIT refused) may leave members
 * it had applied before with CV_OK, or never reached them (CV_E_INTERNAL
 * from submit): they take the group's failure. Done
 * before the keys are released (a new key counts as stored only when the
 * write carrying it is) and before the callers are told. */
static void settle_group(cv_store_write_t *w)
{
	for (size_t i = 0; w->op == CV_STORE_GROUP && w->result != CV_OK && i < w->nmembers; i++)
		if (w->members[i]->result == CV_OK || w->members[i]->result == CV_E_INTERNAL)
			w->members[i]->result = w->result;
}

static void *committer_main(void *arg)
{
	cv_store_t *s = arg;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->head && !s->closing)
			pthread_cond_wait(&s->cond, &s->mu);
		if (!s->head)
			break;
		cv_store_write_t *batch = take_batch(s);
		pthread_mutex_unlock(&s->mu);
		s->ops->apply(s->be, batch);
		while (batch) {
			cv_store_write_t *next = batch->next;
			batch->next = NULL;
			settle_group(batch);
			if (!redo(s, batch)) {
				release_write(s, batch);
				batch->done(batch);
			}
			batch = next;
		}
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Loads the wrapped key `name` from meta, creating and storing it on first open. */
static cv_rc load_key(cv_store_t *s, const cv_key_t *master, const char *name, uint32_t id,
		      cv_key_t **out, char *err, size_t errlen)
{
	cv_buf_t blob;
	cv_buf_init(&blob, 4096);
	cv_rc rc = s->ops->meta_get(s->be, name, &blob);
	if (rc == CV_E_NOTFOUND) {
		rc = cv_crypto_key_wrap_new(master, name, id, &blob);
		cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = name,
				       .body = (const uint8_t *)blob.data, .body_len = blob.len };
		if (!rc)
			rc = cv_store_write_sync(s, &w);
	}
	if (!rc)
		rc = cv_crypto_key_unwrap(master, name, (const uint8_t *)blob.data, blob.len, out);
	if (rc == CV_E_CRYPTO)
		snprintf(err, errlen, "the master key does not open this store's %s key: "
			 "wrong master.key for this data directory", name);
	else if (rc)
		snprintf(err, errlen, "cannot load the store's %s key: %s", name, cv_rc_str(rc));
	cv_buf_release(&blob);
	return rc;
}

cv_rc cv_store_open(const char *data_dir, const char *url, unsigned read_conns, const cv_key_t *master,
		    cv_store_t **out, char *err, size_t errlen)
{
	int pg = url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
	if (url && url[0] && !pg) {
		snprintf(err, errlen, "unsupported store: use a postgresql:// URL, or leave it empty for "
			 "the embedded store");
		return CV_E_UNSUPPORTED;
	}
	cv_store_t *s = calloc(1, sizeof *s);
	if (!s)
		return CV_E_NOMEM;
	cv_rc rc = pg ? cv_postgres_open(url, read_conns, &s->be, &s->ops, err, errlen)
		      : cv_sqlite_open(data_dir, read_conns, &s->be, &s->ops, err, errlen);
	if (rc) {
		free(s);
		return rc;
	}
	s->pg = pg;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	pthread_mutex_init(&s->key_load_mu, NULL);
	if (cv_keyring_new(key_cache, &s->keys) || cv_crypto_key_dup(master, &s->master) ||
	    pthread_create(&s->committer, NULL, committer_main, s) != 0) {
		s->ops->close(s->be);
		cv_keyring_free(s->keys);
		cv_key_free(s->master);
		free(s);
		snprintf(err, errlen, "cannot start the store (out of memory or threads)");
		return CV_E_INTERNAL;
	}
	rc = load_key(s, master, "key.index", KEY_INDEX_ID, &s->index_key, err, errlen);
	if (!rc)
		cv_crypto_hmac_init(&s->index_hmac, s->index_key);
	if (!rc)
		rc = cv_store_keys_open(s, err, errlen);
	if (rc) {
		cv_store_close(s);
		return rc;
	}
	*out = s;
	return CV_OK;
}

void cv_store_close(cv_store_t *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->closing = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
	if (!s->raw)
		pthread_join(s->committer, NULL);
	s->ops->close(s->be);
	if (s->keys) {
		cv_keyring_unpin(s->keys, s->shared_key);
		cv_keyring_unpin(s->keys, s->audit_key);
		cv_keyring_free(s->keys);
	}
	cv_key_free(s->master);
	cv_key_free(s->index_key);
	pthread_mutex_destroy(&s->key_load_mu);
	cv_crypto_wipe(&s->index_hmac, sizeof s->index_hmac);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
	free(s);
}

cv_rc cv_store_ping(cv_store_t *s)
{
	return s->ops->ping(s->be);
}

/* Row id of type/id: hex HMAC under the index key. */
static void row_id(const cv_store_t *s, const char *type, const char *id, char rid[2 * CV_BLIND_BYTES + 1])
{
	uint8_t mac[CV_BLIND_BYTES];
	char msg[256];
	int n = snprintf(msg, sizeof msg, "%s/%s", type, id);
	size_t len = n < 0 ? 0 : (size_t)n >= sizeof msg ? sizeof msg - 1 : (size_t)n;
	cv_crypto_blind(s->index_key, msg, len, mac);
	cv_crypto_hex(mac, sizeof mac, rid);
}

/* Additional data of a sealed version: where it belongs. */
size_t cv_store_version_ad(char *ad, size_t cap, const char *type, const char *rid, int64_t version)
{
	int n = snprintf(ad, cap, "%s|%s|%lld", type, rid, (long long)version);
	return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Seals a version under its owner's current key (made now if it has none:
 * the write then stores the key too). */
static cv_rc seal_version(cv_store_t *s, cv_store_write_t *w)
{
	char ad[256];
	uint8_t owner[CV_OWNER_BYTES];
	if (!w->type || !w->id || strlen(w->type) > 64 || strlen(w->id) > 64 || (w->owner && strlen(w->owner) > 64))
		return CV_E_INVALID;
	row_id(s, w->type, w->id, w->rid);
#ifdef CV_BENCH_SINGLE_KEY /* make bench's baseline: one data key for everything (never deployed) */
	w->owner = NULL;
#endif
	if (w->owner)
		cv_store_patient_owner(s, w->owner, owner);
	cv_rc rc = cv_store_key_for_owner(s, w->owner ? owner : s->shared_owner, &w->keyent);
	if (rc)
		return rc;
	w->newkey = !w->keyent->persisted;
	size_t adlen = cv_store_version_ad(ad, sizeof ad, w->type, w->rid, w->expect_version + 1);
	cv_buf_init(&w->sealed, w->body_len + CV_SEAL_OVERHEAD_MAX + 16);
	return cv_crypto_seal(w->keyent->key, ad, adlen, w->body, w->body_len, &w->sealed);
}

/* The blinded form of an index key: HMAC-SHA-256 under the index key of
 * ("ix", type, param, key), cut to CV_IX_BLIND_BYTES. */
static void blind_key(const cv_store_t *s, const char *type, const char *param, const char *key, size_t len,
		      uint8_t out[CV_IX_BLIND_BYTES])
{
	const void *parts[4] = { "ix", type, param, key };
	size_t lens[4] = { 2, strlen(type), strlen(param), len };
	cv_crypto_hmac_parts(&s->index_hmac, parts, lens, 4, out, CV_IX_BLIND_BYTES);
}

#define CV_STORE_INDEX_MAX 100000 /* most index entries of one resource */

static cv_rc blind_index(cv_store_t *s, cv_store_write_t *w)
{
	if (w->nindex > CV_STORE_INDEX_MAX)
		return CV_E_LIMIT;
	cv_buf_init(&w->blinded, CV_STORE_INDEX_MAX * CV_IX_BLIND_BYTES);
	for (size_t i = 0; i < w->nindex; i++) {
		const cv_ix_entry_t *e = &w->index[i];
		if (!e->param || (e->kind != CV_IX_DATE && !e->key))
			return CV_E_INVALID;
		if (e->kind != CV_IX_HASH)
			continue;
		void *p;
		cv_rc rc = cv_buf_extend(&w->blinded, CV_IX_BLIND_BYTES, &p);
		if (rc)
			return rc;
		blind_key(s, w->type, e->param, e->key, e->key_len, p);
	}
	return CV_OK;
}

/* Prepares w for the back end, in the caller's thread: row id, seal, blinded index. */
static cv_rc prepare_write(cv_store_t *s, cv_store_write_t *w)
{
	cv_rc rc = CV_OK;
	w->next = NULL;
	switch (w->op) {
	case CV_STORE_PUT_META:
	case CV_STORE_CLAIM:
		return w->name ? CV_OK : CV_E_INVALID;
	case CV_STORE_BULK:
		return CV_OK;
	case CV_STORE_AUDIT:
		return cv_store_audit_prepare(s, w);
	case CV_STORE_CHECKPOINT:
		return w->checkpoint ? CV_OK : CV_E_INVALID;
	case CV_STORE_PUT_KEY:
	case CV_STORE_KEY_REWRAP:
	case CV_STORE_KEY_RETIRE:
	case CV_STORE_KEY_PURGE:
		return w->keyrow ? CV_OK : CV_E_INVALID;
	case CV_STORE_RESEAL:
		return w->keyrow && w->type && w->rid[0] && w->sealed.len ? CV_OK : CV_E_INVALID;
	case CV_STORE_ERASE:
		return w->keyrow && w->name ? CV_OK : CV_E_INVALID;
	case CV_STORE_AUDIT_PRUNE:
		return w->name && w->audit_pos > 0 ? CV_OK : CV_E_INVALID;
	case CV_STORE_PUT_VERSION:
		rc = seal_version(s, w);
		break;
	case CV_STORE_REINDEX:
		if (!w->type || !w->id || strlen(w->type) > 64 || strlen(w->id) > 64)
			return CV_E_INVALID;
		row_id(s, w->type, w->id, w->rid);
		break;
	case CV_STORE_GROUP:
		for (size_t i = 0; !rc && i < w->nmembers; i++)
			rc = w->members[i]->op == CV_STORE_GROUP ? CV_E_INVALID : prepare_write(s, w->members[i]);
		return rc;
	}
	if (!rc)
		rc = blind_index(s, w);
	return rc;
}

/* A write not queued: rc for it and its members, its keys unpinned and
 * its sealed buffers released. */
static cv_rc refuse(cv_store_t *s, cv_store_write_t *w, cv_rc rc)
{
	w->result = rc;
	for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
		w->members[i]->result = rc;
	release_write(s, w);
	return rc;
}

cv_rc cv_store_submit(cv_store_t *s, cv_store_write_t *w)
{
	/* a version's key is the store's to choose (a reseal's is the caller's) */
	if (w->op == CV_STORE_PUT_VERSION)
		w->keyent = NULL;
	for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
		if (w->members[i]->op == CV_STORE_PUT_VERSION)
			w->members[i]->keyent = NULL;
	cv_rc rc = prepare_write(s, w);
	if (rc)
		return refuse(s, w, rc);
	w->next = NULL;
	w->result = CV_E_INTERNAL;
	for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
		w->members[i]->result = CV_E_INTERNAL; /* until the back end applies it */
	pthread_mutex_lock(&s->mu);
	if (s->closing) {
		pthread_mutex_unlock(&s->mu);
		return refuse(s, w, CV_E_BUSY);
	}
	if (s->tail)
		s->tail->next = w;
	else
		s->head = w;
	s->tail = w;
	s->queued++;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
	return CV_OK;
}

typedef struct sync_wait {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done;
} sync_wait_t;

static void sync_done(cv_store_write_t *w)
{
	sync_wait_t *sw = w->arg;
	pthread_mutex_lock(&sw->mu);
	sw->done = 1;
	pthread_cond_signal(&sw->cond);
	pthread_mutex_unlock(&sw->mu);
}

static cv_rc write_wait(cv_store_t *s, cv_store_write_t *w)
{
	sync_wait_t sw = { .done = 0 };
	pthread_mutex_init(&sw.mu, NULL);
	pthread_cond_init(&sw.cond, NULL);
	w->done = sync_done;
	w->arg = &sw;
	cv_rc rc = cv_store_submit(s, w);
	if (!rc) {
		pthread_mutex_lock(&sw.mu);
		while (!sw.done)
			pthread_cond_wait(&sw.cond, &sw.mu);
		pthread_mutex_unlock(&sw.mu);
		rc = w->result;
	}
	w->done = NULL;
	pthread_mutex_destroy(&sw.mu);
	pthread_cond_destroy(&sw.cond);
	return rc;
}

typedef struct companion {
	cv_store_companion_fn fn;
	void *arg;
} companion_t;

static _Thread_local companion_t companion;

void cv_store_companion_set(cv_store_companion_fn fn, void *arg)
{
	companion = (companion_t){ .fn = fn, .arg = arg };
}

void cv_store_companion_clear(void)
{
	companion = (companion_t){ 0 };
}

const cv_store_write_t *cv_store_version_of(const cv_store_write_t *w, const char *type)
{
	size_t n = w->op == CV_STORE_GROUP ? w->nmembers : 1;
	for (size_t i = 0; i < n; i++) {
		const cv_store_write_t *m = w->op == CV_STORE_GROUP ? w->members[i] : w;
		if (m->op == CV_STORE_PUT_VERSION && m->type && m->id && strcmp(m->type, type) == 0)
			return m;
	}
	return NULL;
}

#define COMPANION_MEMBERS_MAX 16

/* w (a version, or a group's members) and rec as one group. */
static cv_rc write_with_record(cv_store_t *s, cv_store_write_t *w, cv_store_write_t *rec)
{
	cv_store_write_t *members[COMPANION_MEMBERS_MAX + 1];
	size_t n = w->op == CV_STORE_GROUP ? w->nmembers : 1;
	if (n > COMPANION_MEMBERS_MAX || rec->op != CV_STORE_AUDIT)
		return w->result = CV_E_INVALID;
	for (size_t i = 0; i < n; i++)
		members[i] = w->op == CV_STORE_GROUP ? w->members[i] : w;
	members[n] = rec;
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members, .nmembers = n + 1 };
	cv_rc rc = write_wait(s, &g);
	/* a group takes the group's result; a version keeps its own failure (the back end's, or the
	 * group's: settle_group), but for CV_E_ABORTED: the group failed elsewhere (its record) */
	if (w->op == CV_STORE_GROUP || w->result == CV_E_ABORTED)
		w->result = rc;
	if (!rc)
		cv_store_companion_clear();
	return rc;
}

cv_rc cv_store_write_sync(cv_store_t *s, cv_store_write_t *w)
{
	cv_store_write_t *rec = NULL;
	if (companion.fn && (w->op == CV_STORE_PUT_VERSION || w->op == CV_STORE_GROUP)) {
		cv_rc rc = companion.fn(companion.arg, w, &rec);
		if (rc)
			return w->result = rc;
	}
	return rec ? write_with_record(s, w, rec) : write_wait(s, w);
}

cv_rc cv_store_meta_get(cv_store_t *s, const char *name, cv_buf_t *out)
{
	return s->ops->meta_get(s->be, name, out);
}

/* Opens v's sealed body in place (the plaintext replaces it, in pool).
 * CV_E_GONE when its key was destroyed. */
static cv_rc open_version(cv_store_t *s, cv_pool_t *pool, cv_store_version_t *v)
{
	char ad[256];
	size_t adlen = cv_store_version_ad(ad, sizeof ad, v->type, v->rid, v->version);
	cv_keyent_t *key = NULL;
	cv_rc rc = cv_store_key_for_blob(s, v->body, v->body_len, &key);
	if (rc == CV_E_GONE)
		return rc;
	cv_buf_t pt;
	cv_buf_init(&pt, v->body_len + 1);
	if (!rc)
		rc = cv_crypto_open(key->key, ad, adlen, v->body, v->body_len, &pt);
	cv_keyring_unpin(s->keys, key);
	if (!rc && pt.len == 0)
		rc = CV_E_CRYPTO;
	char *copy = rc ? NULL : cv_pool_strndup(pool, pt.data, pt.len);
	if (!rc && !copy)
		rc = CV_E_NOMEM;
	if (!rc) {
		v->body = (const uint8_t *)copy;
		v->body_len = pt.len;
	}
	if (rc == CV_E_CRYPTO)
		cv_log(CV_LOG_ERROR, "store.open_failed",
		       (cv_log_field_t[]){ CV_LS("type", v->type), CV_LI("seq", v->seq) }, 2);
	cv_crypto_wipe(pt.data, pt.len);
	cv_buf_release(&pt);
	return rc;
}

cv_rc cv_store_read(cv_store_t *s, const char *type, const char *id, int64_t version, cv_pool_t *pool,
		    cv_store_version_t *out)
{
	char rid[2 * CV_BLIND_BYTES + 1];
	if (strlen(type) > 64 || strlen(id) > 64)
		return CV_E_NOTFOUND;
	row_id(s, type, id, rid);
	cv_rc rc = s->ops->read(s->be, type, rid, version, pool, out);
	if (!rc)
		rc = open_version(s, pool, out);
	return rc;
}

typedef struct history_ctx {
	cv_store_t *s;
	cv_pool_t *pool;
	cv_store_version_fn fn;
	void *arg;
} history_ctx_t;

/* An erased version (CV_E_GONE) is left out. */
static cv_rc history_one(void *arg, const cv_store_version_t *v)
{
	history_ctx_t *h = arg;
	cv_store_version_t copy = *v;
	cv_rc rc = open_version(h->s, h->pool, &copy);
	return rc == CV_E_GONE ? CV_OK : rc ? rc : h->fn(h->arg, &copy);
}

cv_rc cv_store_history(cv_store_t *s, const cv_store_history_query_t *q, cv_pool_t *pool,
		       cv_store_version_fn fn, void *arg)
{
	char rid[2 * CV_BLIND_BYTES + 1];
	const char *prid = NULL;
	if (q->id) {
		if (!q->type || strlen(q->type) > 64 || strlen(q->id) > 64)
			return CV_E_NOTFOUND;
		row_id(s, q->type, q->id, rid);
		prid = rid;
	}
	history_ctx_t h = { .s = s, .pool = pool, .fn = fn, .arg = arg };
	return s->ops->history(s->be, q, prid, pool, history_one, &h);
}

/* ---- copying a store ---------------------------------------------------- */

#define COPY_BATCH 500

typedef struct search_ctx {
	cv_store_t *s;
	cv_pool_t *pool;
	cv_store_hit_fn fn;
	void *arg;
} search_ctx_t;

static cv_rc search_one(void *arg, const cv_store_hit_t *h)
{
	search_ctx_t *c = arg;
	cv_store_hit_t copy = *h;
	/* a back end's strings may not outlive its result: keep them in the pool */
	copy.v.type = cv_pool_strdup(c->pool, h->v.type);
	copy.v.rid = cv_pool_strdup(c->pool, h->v.rid);
	if (!copy.v.type || !copy.v.rid)
		return CV_E_NOMEM;
	cv_rc rc = open_version(c->s, c->pool, &copy.v);
	return rc == CV_E_GONE ? CV_OK : rc ? rc : c->fn(c->arg, &copy);
}

/* A copy of q (in pool) whose HASH keys are blinded and ID terms hold row ids. */
static cv_rc blind_query(cv_store_t *s, const cv_store_query_t *q, cv_pool_t *pool, cv_store_query_t *out)
{
	if (!q->type || strlen(q->type) > 64 || q->nsort > CV_STORE_SORT_MAX || q->nclauses > 256)
		return CV_E_INVALID;
	*out = *q;
	cv_store_clause_t *cl = cv_pool_alloc(pool, (q->nclauses ? q->nclauses : 1) * sizeof *cl);
	if (!cl)
		return CV_E_NOMEM;
	for (size_t i = 0; i < q->nclauses; i++) {
		const cv_store_clause_t *c = &q->clauses[i];
		cv_store_term_t *t = cv_pool_alloc(pool, (c->n ? c->n : 1) * sizeof *t);
		if (!t)
			return CV_E_NOMEM;
		cl[i] = *c;
		cl[i].terms = t;
		for (size_t j = 0; j < c->n; j++) {
			t[j] = c->terms[j];
			if (t[j].kind == CV_TERM_HASH) {
				uint8_t *h = cv_pool_alloc(pool, CV_IX_BLIND_BYTES);
				if (!h || !t[j].param || !t[j].key)
					return h ? CV_E_INVALID : CV_E_NOMEM;
				blind_key(s, q->type, t[j].param, t[j].key, t[j].key_len, h);
				t[j].key = (const char *)h;
				t[j].key_len = CV_IX_BLIND_BYTES;
			} else if (t[j].kind == CV_TERM_ID) {
				char *rid = cv_pool_alloc(pool, 2 * CV_BLIND_BYTES + 1);
				if (!rid || !t[j].key)
					return rid ? CV_E_INVALID : CV_E_NOMEM;
				row_id(s, q->type, strlen(t[j].key) > 64 ? "" : t[j].key, rid);
				t[j].key = rid;
			}
		}
	}
	out->clauses = cl;
	return CV_OK;
}

cv_rc cv_store_search(cv_store_t *s, const cv_store_query_t *q, cv_pool_t *pool, cv_store_hit_fn fn, void *arg)
{
	cv_store_query_t bq;
	cv_rc rc = blind_query(s, q, pool, &bq);
	if (rc)
		return rc;
	search_ctx_t c = { .s = s, .pool = pool, .fn = fn, .arg = arg };
	return s->ops->search(s->be, &bq, pool, search_one, &c);
}

cv_rc cv_store_last_seq(cv_store_t *s, int64_t *out)
{
	return s->ops->last_seq(s->be, out);
}

cv_rc cv_store_types_seq(cv_store_t *s, const char *const *types, size_t n, int64_t *out)
{
	if (n == 0 || n > CV_STORE_TYPES_SEQ_MAX)
		return CV_E_INVALID;
	return s->ops->types_seq(s->be, types, n, out);
}

cv_rc cv_store_count(cv_store_t *s, const cv_store_query_t *q, uint64_t *out)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 1u << 20);
	cv_store_query_t bq;
	cv_rc rc = blind_query(s, q, &pool, &bq);
	if (!rc)
		rc = s->ops->search_count(s->be, &bq, out);
	cv_pool_release(&pool);
	return rc;
}

cv_rc cv_store_scan_current(cv_store_t *s, const char *type, int64_t after, unsigned limit, cv_pool_t *pool,
			    cv_store_hit_fn fn, void *arg)
{
	search_ctx_t c = { .s = s, .pool = pool, .fn = fn, .arg = arg };
	return s->ops->scan_current(s->be, type, after, limit, pool, search_one, &c);
}

typedef struct each_ctx {
	cv_store_hit_fn fn;
	void *arg;
	int64_t last;
	unsigned n;
} each_ctx_t;

static cv_rc each_hit(void *arg, const cv_store_hit_t *h)
{
	each_ctx_t *c = arg;
	c->last = h->at.rk;
	c->n++;
	return c->fn(c->arg, h);
}

cv_rc cv_store_each_current(cv_store_t *s, const char *type, cv_store_hit_fn fn, void *arg)
{
	enum { BATCH = 100 };
	each_ctx_t c = { .fn = fn, .arg = arg };
	cv_rc rc;
	do {
		cv_pool_t pool;
		cv_pool_init(&pool, 0);
		c.n = 0;
		rc = cv_store_scan_current(s, type, c.last, BATCH, &pool, each_hit, &c);
		cv_pool_release(&pool);
	} while (!rc && c.n == BATCH);
	return rc;
}

void cv_store_claim_name(cv_store_t *s, const char *text, char out[64])
{
	uint8_t h[16];
	char hex[33];
	const void *parts[2] = { "claim", text };
	size_t lens[2] = { 5, strlen(text) };
	cv_crypto_hmac_parts(&s->index_hmac, parts, lens, 2, h, sizeof h);
	cv_crypto_hex(h, sizeof h, hex);
	snprintf(out, 64, "claim.%s", hex);
}

#define TOKEN_MAX 4096

cv_rc cv_store_token_seal(cv_store_t *s, const char *purpose, const void *pt, size_t len, cv_buf_t *out)
{
	cv_buf_t blob;
	cv_buf_init(&blob, TOKEN_MAX);
	cv_rc rc = cv_crypto_seal(s->shared_key->key, purpose, strlen(purpose), pt, len, &blob);
	if (!rc)
		rc = cv_crypto_b64url_encode(blob.data, blob.len, out);
	cv_buf_release(&blob);
	return rc;
}

cv_rc cv_store_token_open(cv_store_t *s, const char *purpose, const char *token, cv_buf_t *out)
{
	cv_buf_t blob;
	cv_buf_init(&blob, TOKEN_MAX);
	size_t len = strlen(token);
	cv_keyent_t *key = NULL;
	cv_rc rc = len > TOKEN_MAX ? CV_E_INVALID : cv_crypto_b64url_decode(token, len, &blob);
	if (!rc && cv_store_key_for_blob(s, (const uint8_t *)blob.data, blob.len, &key))
		rc = CV_E_INVALID;
	if (!rc && cv_crypto_open(key->key, purpose, strlen(purpose), (const uint8_t *)blob.data, blob.len, out))
		rc = CV_E_INVALID;
	cv_keyring_unpin(s->keys, key);
	cv_buf_release(&blob);
	return rc;
}

typedef struct copy {
	cv_backend_t *src, *dst;
	const cv_backend_ops_t *sops, *dops;
	cv_sha256_t hash;             /* over what was read from the source */
	cv_store_write_t w[COPY_BATCH];
	size_t n;
	int64_t last_seq;
} copy_t;

static void hash_version(cv_sha256_t *h, const cv_store_version_t *v)
{
	int64_t nums[3] = { v->version, v->updated_us, v->deleted };
	cv_sha256_update(h, v->type, strlen(v->type) + 1);
	cv_sha256_update(h, v->rid, strlen(v->rid) + 1);
	cv_sha256_update(h, nums, sizeof nums);
	cv_sha256_update(h, v->body, v->body_len);
}

/* Meta values about the search index ("index.*") are not copied: the
 * destination builds its own index (the serving node reindexes on start). */
static int index_meta(const char *name)
{
	return strncmp(name, "index.", 6) == 0;
}

static cv_rc hash_meta(void *arg, const char *name, const uint8_t *value, size_t len)
{
	if (index_meta(name))
		return CV_OK;
	cv_sha256_update(arg, name, strlen(name) + 1);
	cv_sha256_update(arg, value, len);
	return CV_OK;
}

typedef struct hash_scan {
	cv_sha256_t *h;
	size_t n;          /* versions seen in this page */
	int64_t last_seq;  /* the page's last seq */
} hash_scan_t;

static cv_rc hash_page(void *arg, const cv_store_version_t *v)
{
	hash_scan_t *hs = arg;
	hash_version(hs->h, v);
	hs->n++;
	hs->last_seq = v->seq;
	return CV_OK;
}

static cv_rc take_version(void *arg, const cv_store_version_t *v)
{
	copy_t *c = arg;
	cv_store_write_t *w = &c->w[c->n++];
	hash_version(&c->hash, v);
	*w = (cv_store_write_t){ .op = CV_STORE_PUT_VERSION, .type = v->type, .expect_version = v->version - 1,
				 .updated_us = v->updated_us, .deleted = v->deleted };
	snprintf(w->rid, sizeof w->rid, "%s", v->rid);
	cv_buf_init(&w->sealed, v->body_len + 1);
	c->last_seq = v->seq;
	return cv_buf_append(&w->sealed, v->body, v->body_len);
}

/* Applies the gathered batch to the destination in one transaction. */
static cv_rc flush_batch(copy_t *c)
{
	cv_rc rc = CV_OK;
	for (size_t i = 0; i + 1 < c->n; i++)
		c->w[i].next = &c->w[i + 1];
	if (c->n)
		c->dops->apply(c->dst, &c->w[0]);
	for (size_t i = 0; i < c->n; i++) {
		if (!rc && c->w[i].result)
			rc = c->w[i].result;
		cv_buf_release(&c->w[i].sealed);
	}
	c->n = 0;
	return rc;
}

static cv_rc copy_meta(void *arg, const char *name, const uint8_t *value, size_t len)
{
	copy_t *c = arg;
	cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = name, .body = value, .body_len = len };
	if (index_meta(name))
		return CV_OK;
	hash_meta(&c->hash, name, value, len);
	c->dops->apply(c->dst, &w);
	return w.result;
}

static void hash_key(cv_sha256_t *h, const cv_store_key_row_t *k)
{
	int64_t nums[3] = { k->version, k->state, k->created_us };
	cv_sha256_update(h, k->kid, CV_KID_BYTES);
	cv_sha256_update(h, k->owner, CV_OWNER_BYTES);
	cv_sha256_update(h, nums, sizeof nums);
	cv_sha256_update(h, k->wrapped, k->wrapped_len);
}

static cv_rc hash_key_row(void *arg, const cv_store_key_row_t *k)
{
	hash_key(arg, k);
	return CV_OK;
}

/* Copies a key row as stored (still wrapped by the same master key). */
static cv_rc copy_key(void *arg, const cv_store_key_row_t *k)
{
	copy_t *c = arg;
	cv_store_write_t w = { .op = CV_STORE_PUT_KEY, .keyrow = k };
	hash_key(&c->hash, k);
	c->dops->apply(c->dst, &w);
	return w.result;
}

static cv_rc copy_versions(copy_t *c, uint64_t total, void (*progress)(void *, uint64_t, uint64_t), void *arg)
{
	uint64_t done = 0;
	cv_rc rc = CV_OK;
	for (;;) {
		cv_pool_t pool;
		cv_pool_init(&pool, 0);
		rc = c->sops->scan(c->src, c->last_seq, COPY_BATCH, &pool, take_version, c);
		size_t got = c->n;
		cv_rc frc = flush_batch(c);
		cv_pool_release(&pool);
		rc = rc ? rc : frc;
		done += got;
		if (progress)
			progress(arg, done, total);
		if (rc || got < COPY_BATCH)
			return rc;
	}
}

/* The destination's checksum, read back in the same order. */
static cv_rc dest_hash(copy_t *c, uint8_t out[32])
{
	cv_sha256_t h;
	int64_t after = 0;
	cv_sha256_init(&h);
	cv_rc rc = c->dops->scan_meta(c->dst, hash_meta, &h);
	if (!rc)
		rc = c->dops->key_scan(c->dst, NULL, hash_key_row, &h);
	while (!rc) {
		cv_pool_t pool;
		hash_scan_t hs = { .h = &h, .last_seq = after };
		cv_pool_init(&pool, 0);
		rc = c->dops->scan(c->dst, after, COPY_BATCH, &pool, hash_page, &hs);
		cv_pool_release(&pool);
		after = hs.last_seq;
		if (hs.n < COPY_BATCH)
			break;
	}
	cv_sha256_final(&h, out);
	return rc;
}

/* ---- the audit trail's copy: its rows as stored (still chained, still
 * sealed, with their search keys) in position order, then the head and the
 * checkpoints. Each side is read the same way, trail only, with a SHA-256
 * over what was read: the destination's, read back, must match. */

typedef struct trail_walk {
	const cv_backend_ops_t *load; /* the destination to load what is read into, or NULL */
	cv_backend_t *dst;
	cv_sha256_t hash;
	cv_store_rec_t recs[COPY_BATCH];
	size_t n;
	uint64_t rows;
	int64_t last;  /* the last row's position */
} trail_walk_t;

static void hash_trail_rec(cv_sha256_t *h, const cv_store_rec_t *r)
{
	int64_t pos = r->type == CV_REC_CHECKPOINT ? r->checkpoint.pos : r->audit.pos;
	cv_sha256_update(h, &r->type, sizeof r->type);
	cv_sha256_update(h, &pos, sizeof pos);
	if (r->type == CV_REC_CHECKPOINT) {
		cv_sha256_update(h, r->checkpoint.hash, CV_AUDIT_HASH_BYTES);
		cv_sha256_update(h, r->checkpoint.key, sizeof r->checkpoint.key);
		cv_sha256_update(h, r->checkpoint.sig, sizeof r->checkpoint.sig);
		return;
	}
	cv_sha256_update(h, r->audit.hash, CV_AUDIT_HASH_BYTES); /* a row's hash covers its stored bytes */
	if (r->type == CV_REC_AUDIT) {
		cv_sha256_update(h, r->audit.keys, r->audit.keys_len); /* which the hash does not */
		cv_sha256_update(h, r->audit.body, r->audit.body_len);
	}
}

static cv_rc trail_flush(trail_walk_t *t)
{
	cv_rc rc = t->load && t->n ? t->load->load(t->dst, t->recs, t->n) : CV_OK;
	t->n = 0;
	return rc;
}

/* Hashes r and queues it for loading (its pointers valid until the next flush). */
static cv_rc trail_put(trail_walk_t *t, const cv_store_rec_t *r)
{
	hash_trail_rec(&t->hash, r);
	if (!t->load)
		return CV_OK;
	t->recs[t->n++] = *r;
	return t->n == COPY_BATCH ? trail_flush(t) : CV_OK;
}

static cv_rc take_row(void *arg, const cv_store_audit_row_t *r)
{
	trail_walk_t *t = arg;
	t->rows++;
	t->last = r->pos;
	return trail_put(t, &(cv_store_rec_t){ .type = CV_REC_AUDIT, .audit = *r });
}

static cv_rc take_checkpoint(void *arg, const cv_store_checkpoint_t *c)
{
	return trail_put(arg, &(cv_store_rec_t){ .type = CV_REC_CHECKPOINT, .checkpoint = *c });
}

/* Up to COPY_BATCH rows after t->last, in pool, handed to take_row; then flushed. */
static cv_rc trail_page(trail_walk_t *t, cv_backend_t *b, const cv_backend_ops_t *ops, int pg)
{
	cv_store_audit_query_t q = { .after_pos = t->last, .ascending = true, .limit = COPY_BATCH, .outcome = -1 };
	cv_sql_t *sql = malloc(sizeof *sql);
	if (!sql)
		return CV_E_NOMEM;
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_sql_init(sql, pg);
	cv_rc rc = cv_query_audit_sql(&q, true, sql);
	if (!rc)
		rc = ops->audit_rows(b, sql, &pool, take_row, t);
	if (!rc)
		rc = trail_flush(t); /* before the rows' memory goes */
	cv_pool_release(&pool);
	cv_sql_release(sql);
	free(sql);
	return rc;
}

/* Reads b's trail into t (and loads it where t says). */
static cv_rc trail_walk(trail_walk_t *t, cv_backend_t *b, const cv_backend_ops_t *ops, int pg)
{
	cv_rc rc;
	uint64_t got;
	cv_sha256_init(&t->hash);
	do {
		uint64_t before = t->rows;
		rc = trail_page(t, b, ops, pg);
		got = t->rows - before;
	} while (!rc && got == COPY_BATCH);
	cv_store_rec_t head = { .type = CV_REC_AUDIT_HEAD };
	if (!rc)
		rc = ops->audit_head(b, &head.audit.pos, head.audit.hash);
	if (!rc)
		rc = trail_put(t, &head);
	if (!rc)
		rc = ops->audit_checkpoints(b, false, take_checkpoint, t);
	return rc ? rc : trail_flush(t);
}

/* Copies the trail into the destination and reads it back: the same rows,
 * head and checkpoints, or CV_E_STORAGE. */
static cv_rc copy_trail(copy_t *c, uint64_t *rows)
{
	trail_walk_t *src = calloc(1, sizeof *src), *dst = calloc(1, sizeof *dst);
	cv_rc rc = src && dst ? CV_OK : CV_E_NOMEM;
	uint8_t src_sum[32], dst_sum[32];
	if (!rc) {
		*src = (trail_walk_t){ .load = c->dops, .dst = c->dst };
		rc = trail_walk(src, c->src, c->sops, 0);
	}
	if (!rc)
		rc = trail_walk(dst, c->dst, c->dops, 1);
	if (!rc) {
		cv_sha256_final(&src->hash, src_sum);
		cv_sha256_final(&dst->hash, dst_sum);
		*rows = src->rows;
		if (memcmp(src_sum, dst_sum, sizeof src_sum) != 0)
			rc = CV_E_STORAGE;
	}
	free(src);
	free(dst);
	return rc;
}

static cv_rc copy_all(copy_t *c, void (*progress)(void *, uint64_t, uint64_t), void *arg, char *err, size_t errlen)
{
	uint64_t total = 0, dst_count = 1, after = 0, rows = 0;
	int64_t dst_trail = 1;
	uint8_t src_sum[32], dst_sum[32], head[CV_AUDIT_HASH_BYTES];
	cv_rc rc = c->dops->count(c->dst, &dst_count);
	if (!rc)
		rc = c->dops->audit_head(c->dst, &dst_trail, head);
	if (!rc && (dst_count || dst_trail)) {
		snprintf(err, errlen, "the destination store already holds %llu versions and %lld audit records: copy "
			 "only into an empty database", (unsigned long long)dst_count, (long long)dst_trail);
		return CV_E_CONFLICT;
	}
	if (!rc)
		rc = c->sops->count(c->src, &total);
	cv_sha256_init(&c->hash);
	if (!rc)
		rc = c->sops->scan_meta(c->src, copy_meta, c);
	if (!rc)
		rc = c->sops->key_scan(c->src, NULL, copy_key, c);
	if (!rc)
		rc = copy_versions(c, total, progress, arg);
	cv_sha256_final(&c->hash, src_sum);
	cv_rc trc = rc ? rc : copy_trail(c, &rows);
	if (trc && !rc) {
		snprintf(err, errlen, "the audit trail's copy failed or differs when read back: %s (empty the "
			 "destination before trying again)", cv_rc_str(trc));
		return trc;
	}
	if (!rc)
		rc = c->dops->count(c->dst, &after);
	if (!rc)
		rc = dest_hash(c, dst_sum);
	if (rc) {
		snprintf(err, errlen, "the copy failed: %s (the destination may hold a partial copy; empty it "
			 "before trying again)", cv_rc_str(rc));
		return rc;
	}
	if (after != total || memcmp(src_sum, dst_sum, sizeof src_sum) != 0) {
		snprintf(err, errlen, "verification failed: %llu versions copied of %llu, or checksums differ",
			 (unsigned long long)after, (unsigned long long)total);
		return CV_E_STORAGE;
	}
	char hex[65];
	cv_crypto_hex(dst_sum, sizeof dst_sum, hex);
	snprintf(err, errlen, "%llu versions and %llu audit records copied and verified (sha256 %s)",
		 (unsigned long long)total, (unsigned long long)rows, hex);
	return CV_OK;
}

cv_rc cv_store_copy(const char *data_dir, const char *to_url, void (*progress)(void *, uint64_t, uint64_t),
		    void *arg, char *err, size_t errlen)
{
	char db[1100];
	snprintf(db, sizeof db, "%s/store.db", data_dir);
	if (access(db, R_OK) != 0) {
		snprintf(err, errlen, "%s has no embedded store (store.db)", data_dir);
		return CV_E_NOTFOUND;
	}
	copy_t *c = calloc(1, sizeof *c);
	if (!c)
		return CV_E_NOMEM;
	cv_rc rc = cv_sqlite_open(data_dir, 1, &c->src, &c->sops, err, errlen);
	if (!rc)
		rc = cv_postgres_open(to_url, 1, &c->dst, &c->dops, err, errlen);
	if (!rc)
		rc = copy_all(c, progress, arg, err, errlen);
	if (c->dst)
		c->dops->close(c->dst);
	if (c->src)
		c->sops->close(c->src);
	free(c);
	return rc;
}
