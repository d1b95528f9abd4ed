/*
 * keys.c - data keys: one per patient compartment, a shared one, one for the
 * audit trail (see store.h). Keys are rows of the key table, wrapped by the
 * master key with additional data naming the row (id, owner, version), so a
 * wrapped key moved onto another row does not open. A new patient's key is
 * made where it is first needed and stored in the same transaction as the
 * first version it seals (store.h, `newkey`): no extra commit, and two
 * writers racing for one owner cannot both win (the loser retries).
 *
 * Other nodes learn of an erasure through meta "keys.epoch", read at most
 * once a second: when it moves, every cached patient key is dropped.
 */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/time.h"
#include "store/internal.h"

#define EPOCH_META "keys.epoch"
#define EPOCH_EVERY_US 1000000
#define LEGACY_META "key.data" /* the format-1 data key of stores made before per-patient keys */

void cv_store_owner_of(cv_store_t *s, const char *name, uint8_t out[CV_OWNER_BYTES])
{
	const void *parts[2] = { "key-owner", name };
	size_t lens[2] = { 9, strlen(name) };
	cv_crypto_hmac_parts(&s->index_hmac, parts, lens, 2, out, CV_OWNER_BYTES);
}

void cv_store_patient_owner(cv_store_t *s, const char *patient_id, uint8_t out[CV_OWNER_BYTES])
{
	char name[80];
	snprintf(name, sizeof name, "Patient/%.64s", patient_id);
	cv_store_owner_of(s, name, out);
}

/* The additional data binding a wrapped key to its row. */
static const char *purpose_of(const cv_store_key_row_t *r, char out[128])
{
	char kid[2 * CV_KID_BYTES + 1], owner[2 * CV_OWNER_BYTES + 1];
	cv_crypto_hex(r->kid, CV_KID_BYTES, kid);
	cv_crypto_hex(r->owner, CV_OWNER_BYTES, owner);
	snprintf(out, 128, "key|%s|%s|%lld", kid, owner, (long long)r->version);
	return out;
}

/* Unwraps a stored row into a cached, pinned entry. */
static cv_rc unwrap_row(cv_store_t *s, const cv_store_key_row_t *row, cv_keyent_t **out)
{
	char purpose[128];
	uint8_t kid[CV_KID_BYTES];
	cv_key_t *k = NULL;
	cv_keyent_t *e = NULL;
	if (row->state == CV_KEY_DESTROYED)
		return CV_E_GONE;
	cv_rc rc = cv_crypto_key_unwrap(s->master, purpose_of(row, purpose), row->wrapped, row->wrapped_len, &k);
	if (!rc)
		cv_key_kid(k, kid);
	if (!rc && memcmp(kid, row->kid, CV_KID_BYTES) != 0)
		rc = CV_E_CRYPTO;
	if (rc) {
		cv_key_free(k);
		cv_log(CV_LOG_ERROR, "store.key_unwrap_failed", NULL, 0);
		return rc;
	}
	if ((rc = cv_keyring_entry_new(row, k, &e)))
		return rc;
	e->persisted = true;
	*out = cv_keyring_add(s->keys, e);
	return CV_OK;
}

/* Drops every cached patient key when another node (or process) erased one. */
static void refresh_epoch(cv_store_t *s)
{
	int64_t now = cv_time_now_us();
	int64_t last = atomic_load_explicit(&s->key_epoch_checked, memory_order_relaxed);
	if (now - last < EPOCH_EVERY_US)
		return;
	atomic_store_explicit(&s->key_epoch_checked, now, memory_order_relaxed);
	cv_buf_t v;
	cv_buf_init(&v, 64);
	cv_rc rc = s->ops->meta_get(s->be, EPOCH_META, &v);
	pthread_mutex_lock(&s->key_load_mu);
	char text[32];
	snprintf(text, sizeof text, "%.*s", rc ? 0 : (int)v.len, rc ? "" : v.data);
	if ((rc == CV_OK || rc == CV_E_NOTFOUND) && strcmp(text, s->key_epoch) != 0) {
		if (s->key_epoch[0] || text[0])
			cv_keyring_drop_all(s->keys);
		snprintf(s->key_epoch, sizeof s->key_epoch, "%s", text);
	}
	pthread_mutex_unlock(&s->key_load_mu);
	cv_buf_release(&v);
}

cv_rc cv_store_key_for_blob(cv_store_t *s, const uint8_t *blob, size_t len, cv_keyent_t **out)
{
	uint8_t kid[CV_KID_BYTES];
	if (cv_crypto_blob_kid(blob, len, kid))
		return CV_E_CRYPTO;
	refresh_epoch(s);
	if ((*out = cv_keyring_find_kid(s->keys, kid)))
		return CV_OK;
	cv_store_key_row_t row;
	cv_buf_t wrapped;
	cv_buf_init(&wrapped, 4096);
	pthread_mutex_lock(&s->key_load_mu);
	cv_rc rc = CV_OK;
	if (!(*out = cv_keyring_find_kid(s->keys, kid))) {
		rc = s->ops->key_get(s->be, kid, &row, &wrapped);
		if (rc == CV_E_NOTFOUND)
			rc = CV_E_CRYPTO; /* no such key: not a blob of this store */
		if (!rc)
			rc = unwrap_row(s, &row, out);
	}
	pthread_mutex_unlock(&s->key_load_mu);
	cv_buf_release(&wrapped);
	return rc;
}

/* A new key for owner, not stored yet, cached and pinned (key_load_mu held). */
static cv_rc new_key(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], int64_t version, cv_keyent_t **out)
{
	char purpose[128];
	cv_store_key_row_t row = { .version = version, .state = CV_KEY_ACTIVE, .created_us = cv_time_now_us() };
	cv_key_t *k = NULL;
	cv_keyent_t *e = NULL;
	cv_buf_t wrapped;
	memcpy(row.owner, owner, CV_OWNER_BYTES);
	cv_crypto_kid_new(row.kid);
	cv_buf_init(&wrapped, 4096);
	cv_rc rc = cv_crypto_key_generate(row.kid, &k);
	if (!rc)
		rc = cv_crypto_key_wrap(s->master, purpose_of(&row, purpose), k, &wrapped);
	row.wrapped = (const uint8_t *)wrapped.data;
	row.wrapped_len = wrapped.len;
	if (!rc) {
		rc = cv_keyring_entry_new(&row, k, &e);
		k = NULL;
	}
	cv_key_free(k);
	cv_buf_release(&wrapped);
	if (!rc)
		*out = cv_keyring_add(s->keys, e);
	return rc;
}

cv_rc cv_store_key_for_owner(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], cv_keyent_t **out)
{
	refresh_epoch(s);
	if ((*out = cv_keyring_find_owner(s->keys, owner)))
		return CV_OK;
	cv_store_key_row_t row;
	cv_buf_t wrapped;
	cv_buf_init(&wrapped, 4096);
	pthread_mutex_lock(&s->key_load_mu);
	cv_rc rc = CV_OK;
	if (!(*out = cv_keyring_find_owner(s->keys, owner))) {
		rc = s->ops->key_current(s->be, owner, &row, &wrapped);
		if (rc == CV_E_NOTFOUND)
			rc = new_key(s, owner, 1, out);
		else if (!rc)
			rc = unwrap_row(s, &row, out);
	}
	pthread_mutex_unlock(&s->key_load_mu);
	cv_buf_release(&wrapped);
	return rc;
}

void cv_store_key_done(cv_store_t *s, cv_store_write_t *w)
{
	if (!w->keyent)
		return;
	if (w->newkey && w->result == CV_OK)
		cv_keyring_set_persisted(s->keys, w->keyent);
	else if (w->newkey || w->result == CV_E_GONE) /* not stored, or destroyed: look again next time */
		cv_keyring_drop_owner(s->keys, w->keyent->row.owner);
	cv_keyring_unpin(s->keys, w->keyent);
	w->keyent = NULL;
	w->newkey = false;
}

/* ---- system keys ----------------------------------------------------------- */

/* The key of a system owner, stored and kept for good (pinned). */
static cv_rc system_key(cv_store_t *s, const char *name, cv_keyent_t **out)
{
	uint8_t owner[CV_OWNER_BYTES];
	cv_store_owner_of(s, name, owner);
	for (int attempt = 0; attempt < 3; attempt++) {
		cv_keyent_t *e = NULL;
		cv_rc rc = cv_store_key_for_owner(s, owner, &e);
		if (rc)
			return rc;
		if (e->persisted) {
			e->permanent = true;
			*out = e;
			return CV_OK;
		}
		cv_store_write_t w = { .op = CV_STORE_PUT_KEY, .keyrow = &e->row };
		rc = cv_store_write_sync(s, &w);
		/* stored, or another node stored its own first: read back whichever won */
		cv_keyring_drop_owner(s->keys, owner);
		cv_keyring_unpin(s->keys, e);
		if (rc && rc != CV_E_CONFLICT)
			return rc;
	}
	return CV_E_CONFLICT;
}

/* The data key of stores made before per-patient keys: it still opens what it sealed. */
static cv_rc legacy_key(cv_store_t *s)
{
	cv_buf_t blob;
	cv_key_t *k = NULL;
	cv_keyent_t *e = NULL;
	cv_buf_init(&blob, 4096);
	cv_rc rc = s->ops->meta_get(s->be, LEGACY_META, &blob);
	if (rc == CV_E_NOTFOUND) {
		cv_buf_release(&blob);
		return CV_OK;
	}
	if (!rc)
		rc = cv_crypto_key_unwrap(s->master, LEGACY_META, (const uint8_t *)blob.data, blob.len, &k);
	cv_store_key_row_t row = { .state = CV_KEY_ACTIVE };
	if (!rc) {
		cv_key_kid(k, row.kid);
		rc = cv_keyring_entry_new(&row, k, &e);
	}
	else
		cv_key_free(k);
	if (!rc) {
		e->legacy = e->permanent = e->persisted = true;
		cv_keyring_unpin(s->keys, cv_keyring_add(s->keys, e));
	}
	cv_buf_release(&blob);
	return rc;
}

cv_rc cv_store_keys_open(cv_store_t *s, char *err, size_t errlen)
{
	cv_rc rc = legacy_key(s);
	if (!rc)
		rc = system_key(s, "~shared", &s->shared_key);
	if (!rc)
		rc = system_key(s, "~audit", &s->audit_key);
	if (!rc)
		memcpy(s->shared_owner, s->shared_key->row.owner, CV_OWNER_BYTES);
	if (rc == CV_E_CRYPTO)
		snprintf(err, errlen, "the master key does not open this store's data keys: wrong master.key for "
			 "this data directory");
	else if (rc)
		snprintf(err, errlen, "cannot load the store's data keys: %s", cv_rc_str(rc));
	return rc;
}

size_t cv_store_keys_cached(cv_store_t *s)
{
	return cv_keyring_size(s->keys);
}

cv_rc cv_store_erase(cv_store_t *s, const char *patient_id, int64_t at_us, int64_t *count, char owner_hex[33])
{
	cv_store_key_row_t row = { .state = CV_KEY_DESTROYED };
	cv_buf_t wrapped;
	char name[64], when[24];
	cv_store_patient_owner(s, patient_id, row.owner);
	cv_crypto_hex(row.owner, CV_OWNER_BYTES, owner_hex);
	cv_buf_init(&wrapped, 4096);
	cv_store_key_row_t cur;
	cv_rc rc = s->ops->key_current(s->be, row.owner, &cur, &wrapped);
	cv_buf_release(&wrapped);
	if (!rc && cur.state == CV_KEY_DESTROYED)
		rc = CV_E_GONE;
	if (rc)
		return rc;
	snprintf(name, sizeof name, "erased.%s", owner_hex);
	int n = snprintf(when, sizeof when, "%lld", (long long)at_us);
	cv_store_write_t w = { .op = CV_STORE_ERASE, .keyrow = &row, .name = name, .body = (const uint8_t *)when,
			       .body_len = (size_t)n };
	rc = cv_store_write_sync(s, &w);
	cv_keyring_drop_owner(s->keys, row.owner);
	if (!rc)
		*count = w.erased;
	return rc;
}
