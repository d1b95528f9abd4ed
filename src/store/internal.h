/*
 * internal.h - the store's state, shared by store.c and audit.c (private to store/).
 */
#ifndef CV_STORE_INTERNAL_H
#define CV_STORE_INTERNAL_H

#include <pthread.h>

#include "store/backend.h"

struct cv_store {
	bool raw;                    /* opened without keys (cv_store_open_raw) */
	int pg;                      /* the PostgreSQL back end */
	cv_backend_t *be;            /* the back end */
	const cv_backend_ops_t *ops; /* its functions */
	pthread_mutex_t mu;          /* guards the queue and `closing` */
	pthread_cond_t cond;         /* signalled when work arrives or on close */
	cv_store_write_t *head;      /* queued writes, oldest first */
	cv_store_write_t *tail;
	size_t queued;               /* length of the queue */
	int closing;                 /* no new writes; drain and stop */
	pthread_t committer;         /* the committer thread */
	cv_key_t *data_key;          /* seals resource bodies */
	cv_key_t *index_key;         /* computes row ids (blind indexes) */
	cv_hmac_t index_hmac;        /* the index key, keyed once for index entries */
};

/* Seals an audit record's body and blinds its search keys (store/audit.c). */
cv_rc cv_store_audit_prepare(cv_store_t *s, cv_store_write_t *w);

#endif
