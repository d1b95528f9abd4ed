/*
 * keyring.h - the store's cache of unwrapped data keys (private to store/).
 *
 * Entries are found by key id (to open a blob) or by owner (the current key
 * of a patient compartment, to seal). An entry in use is pinned; the cache
 * keeps at most `cap` entries and evicts the least recently used unpinned
 * ones (their keys are wiped). System keys are kept for good. Thread-safe.
 */
#ifndef CV_STORE_KEYRING_H
#define CV_STORE_KEYRING_H

#include <stdbool.h>
#include <stddef.h>

#include "store/store.h"

typedef struct cv_keyent {
	cv_store_key_row_t row;   /* kid, owner, version, state; wrapped points into `wrapped` */
	cv_key_t *key;            /* the unwrapped key (guarded memory) */
	cv_buf_t wrapped;         /* the wrapped key, for a key not stored yet */
	bool persisted;           /* the back end holds it */
	bool permanent;           /* a system key: never evicted */
	bool legacy;              /* found only by id (a format-1 key), never an owner's current key */
	/* private to keyring.c */
	unsigned pins;
	bool dropped;
	struct cv_keyent *next_kid, *next_owner, *older, *newer;
} cv_keyent_t;

typedef struct cv_keyring cv_keyring_t;

/* A keyring of at most cap entries (plus pinned and permanent ones). */
cv_rc cv_keyring_new(size_t cap, cv_keyring_t **out);

/* Wipes and frees every key (no entry may be pinned). */
void cv_keyring_free(cv_keyring_t *kr);

/* The entry of key id kid, pinned; NULL when not cached. */
cv_keyent_t *cv_keyring_find_kid(cv_keyring_t *kr, const uint8_t kid[CV_KID_BYTES]);

/* The current key of owner, pinned; NULL when not cached. */
cv_keyent_t *cv_keyring_find_owner(cv_keyring_t *kr, const uint8_t owner[CV_OWNER_BYTES]);

/* Adds e (made with cv_keyring_entry_new; the keyring takes it) and returns
 * it pinned; when an entry of the same id is cached already, e is freed and
 * that one is returned. A non-legacy entry becomes its owner's current key
 * unless one of a higher version is cached. */
cv_keyent_t *cv_keyring_add(cv_keyring_t *kr, cv_keyent_t *e);

/* A new entry for key k (taken) described by row (wrapped is copied). */
cv_rc cv_keyring_entry_new(const cv_store_key_row_t *row, cv_key_t *k, cv_keyent_t **out);

/* Makes e (from cv_keyring_entry_new, never added) a pinned entry of its
 * own: cv_keyring_unpin frees it. */
void cv_keyring_detach(cv_keyent_t *e);

/* Releases a pin taken by find or add (NULL is fine). */
void cv_keyring_unpin(cv_keyring_t *kr, cv_keyent_t *e);

/* Marks e stored by the back end. */
void cv_keyring_set_persisted(cv_keyring_t *kr, cv_keyent_t *e);

/* Forgets every cached key of owner (an entry still pinned goes when unpinned). */
void cv_keyring_drop_owner(cv_keyring_t *kr, const uint8_t owner[CV_OWNER_BYTES]);

/* Forgets every cached key that is stored and not permanent (a new key whose
 * first write is still in flight stays: forgetting it would make a second). */
void cv_keyring_drop_all(cv_keyring_t *kr);

/* How many entries are cached. */
size_t cv_keyring_size(cv_keyring_t *kr);

#endif
