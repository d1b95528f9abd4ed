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

#include "core/log.h"
#include "store/backend.h"

#define CV_STORE_BATCH_MAX 1024

struct cv_store {
	cv_backend_t *be;            /* the back end */
	const cv_backend_ops_t *ops; /* its functions */
	pthread_mutex_t mu;          /* guards the queue and `closing` */
	pthread_cond_t cond;         /* signalled when work arrives or on close */
	cv_store_write_t *head;      /* queued writes, oldest first */
	cv_store_write_t *tail;
	size_t queued;               /* length of the queue */
	int closing;                 /* no new writes; drain and stop */
	pthread_t committer;         /* the committer thread */
};

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
			batch->done(batch);
			batch = next;
		}
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

cv_rc cv_store_open(const char *data_dir, const char *url, unsigned read_conns, cv_store_t **out,
		    char *err, size_t errlen)
{
	if (url && url[0]) {
		snprintf(err, errlen, "unsupported store '%s': only the embedded store is available "
			 "(leave --store empty)", strncmp(url, "postgres", 8) == 0 ? "postgresql" : "?");
		return CV_E_UNSUPPORTED;
	}
	cv_store_t *s = calloc(1, sizeof *s);
	if (!s)
		return CV_E_NOMEM;
	cv_rc rc = cv_sqlite_open(data_dir, read_conns, &s->be, &s->ops, err, errlen);
	if (rc) {
		free(s);
		return rc;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (pthread_create(&s->committer, NULL, committer_main, s) != 0) {
		s->ops->close(s->be);
		free(s);
		snprintf(err, errlen, "cannot start the committer thread");
		return CV_E_INTERNAL;
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
	pthread_join(s->committer, NULL);
	s->ops->close(s->be);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
	free(s);
}

cv_rc cv_store_ping(cv_store_t *s)
{
	return s->ops->ping(s->be);
}

cv_rc cv_store_submit(cv_store_t *s, cv_store_write_t *w)
{
	w->next = NULL;
	w->result = CV_E_INTERNAL;
	pthread_mutex_lock(&s->mu);
	if (s->closing) {
		pthread_mutex_unlock(&s->mu);
		return CV_E_BUSY;
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

cv_rc cv_store_write_sync(cv_store_t *s, cv_store_write_t *w)
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

cv_rc cv_store_meta_get(cv_store_t *s, const char *name, cv_buf_t *out)
{
	return s->ops->meta_get(s->be, name, out);
}

cv_rc cv_store_read(cv_store_t *s, const char *type, const char *rid, int64_t version, cv_pool_t *pool,
		    cv_store_version_t *out)
{
	return s->ops->read(s->be, type, rid, version, pool, out);
}

cv_rc cv_store_history(cv_store_t *s, const cv_store_history_query_t *q, cv_pool_t *pool,
		       cv_store_version_fn fn, void *arg)
{
	return s->ops->history(s->be, q, pool, fn, arg);
}
