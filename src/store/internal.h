/*
 * internal.h - the store's state, shared by store.c and audit.c (private to store/).
 */
#ifndef CV_STORE_INTERNAL_H
#define CV_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "store/backend.h"
#include "store/keyring.h"

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
	cv_key_t *master;            /* the store's copy: wraps and unwraps data keys */
	cv_keyring_t *keys;          /* unwrapped data keys (store/keys.c) */
	pthread_mutex_t key_load_mu; /* one key load or creation at a time */
	cv_keyent_t *_Atomic shared_key; /* the shared key's current version (permanent): paging tokens */
	cv_keyent_t *_Atomic audit_key;  /* the audit trail's (permanent): seals audit records */
	uint8_t shared_owner[CV_OWNER_BYTES];
	uint8_t legacy_kid[CV_KID_BYTES]; /* the data key of a store made before per-patient keys ... */
	bool has_legacy;             /* ... when it has one */
	_Atomic int64_t key_epoch_checked; /* when the erasure epoch was last read (us) */
	char key_epoch[32];          /* its value then (guarded by key_load_mu) */
	cv_key_t *index_key;         /* computes row ids (blind indexes) */
	cv_hmac_t index_hmac;        /* the index key, keyed once for index entries */
};

/* --- data keys (store/keys.c) --- */

/* Loads the system keys (the legacy format-1 data key, the shared and audit
 * keys), creating what is missing. */
cv_rc cv_store_keys_open(cv_store_t *s, char *err, size_t errlen);

/* The key that opens a blob, pinned: CV_E_GONE when destroyed, CV_E_CRYPTO
 * when the blob names no key of this store. */
cv_rc cv_store_key_for_blob(cv_store_t *s, const uint8_t *blob, size_t len, cv_keyent_t **out);

/* The current key of owner, pinned; a new one (not stored yet) when it has
 * none. CV_E_GONE when the owner was erased. */
cv_rc cv_store_key_for_owner(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], cv_keyent_t **out);

/* Reads the shared and audit keys' current versions from the back end (after
 * a rotation elsewhere) and seals with them from now on. */
void cv_store_keys_refresh_system(cv_store_t *s);

/* The owner of a name ("Patient/<id>", "~shared", "~audit"). */
void cv_store_owner_of(cv_store_t *s, const char *name, uint8_t out[CV_OWNER_BYTES]);

/* After a write that carried keyent is done: remembers a new key as stored,
 * or forgets it when the write failed; unpins. */
void cv_store_key_done(cv_store_t *s, cv_store_write_t *w);

/* The additional data that binds a sealed version to its place (type, row id, version). */
size_t cv_store_version_ad(char *ad, size_t cap, const char *type, const char *rid, int64_t version);

/* Seals an audit record's body and blinds its search keys (store/audit.c). */
cv_rc cv_store_audit_prepare(cv_store_t *s, cv_store_write_t *w);

#endif
