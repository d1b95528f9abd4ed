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

#include <stdatomic.h>
#include <stdlib.h>

#include "core/log.h"
#include "core/time.h"
#include "store/internal.h"

#define EPOCH_META "keys.epoch"
#define EPOCH_EVERY_US 1000000
#define LEGACY_META "key.data" /* the format-1 data key of stores made before per-patient keys */
#define MASTER_VERSION_META "master.version"
#define REWRAP_BATCH 512
#define RESEAL_BATCH 256
#define RESEAL_CURSOR_META "keys.reseal-cursor"
#define LEGACY_DONE_META "keys.legacy-resealed" /* a full rotation moved all legacy data to per-patient keys */

/* The system keys kept in meta, wrapped by the master key with their name as purpose. */
static const char *const wrapped_meta[] = { "key.index", LEGACY_META, "key.audit-sign" };

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

static void refresh_system_keys(cv_store_t *s);
void cv_store_keys_refresh_system(cv_store_t *s);

/* Drops every cached patient key when another node (or process) erased one
 * or rotated keys; picks up new versions of the system keys. */
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
	bool moved = (rc == CV_OK || rc == CV_E_NOTFOUND) && strcmp(text, s->key_epoch) != 0;
	if (moved) {
		if (s->key_epoch[0] || text[0])
			cv_keyring_drop_all(s->keys);
		snprintf(s->key_epoch, sizeof s->key_epoch, "%s", text);
	}
	pthread_mutex_unlock(&s->key_load_mu);
	cv_buf_release(&v);
	if (moved)
		refresh_system_keys(s);
}

static cv_rc new_key(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], int64_t version, cv_keyent_t **out);

/* A key from the cache (by id, or an owner's current one), else loaded, or
 * for an owner without one made, under key_load_mu (the cache is checked
 * again under it: one thread loads a key). Pinned. */
static cv_rc lookup(cv_store_t *s, bool by_owner, const uint8_t *k, cv_keyent_t **out)
{
	refresh_epoch(s);
	if ((*out = by_owner ? cv_keyring_find_owner(s->keys, k) : cv_keyring_find_kid(s->keys, k)))
		return CV_OK;
	cv_store_key_row_t row;
	cv_buf_t wrapped;
	cv_buf_init(&wrapped, 4096);
	pthread_mutex_lock(&s->key_load_mu);
	cv_rc rc = CV_OK;
	if (!(*out = by_owner ? cv_keyring_find_owner(s->keys, k) : cv_keyring_find_kid(s->keys, k))) {
		rc = by_owner ? s->ops->key_current(s->be, k, &row, &wrapped) : s->ops->key_get(s->be, k, &row, &wrapped);
		if (rc == CV_E_NOTFOUND) /* an owner's first key; or no such key: not a blob of this store */
			rc = by_owner ? new_key(s, k, 1, out) : CV_E_CRYPTO;
		else if (!rc)
			rc = unwrap_row(s, &row, out);
	}
	pthread_mutex_unlock(&s->key_load_mu);
	cv_buf_release(&wrapped);
	return rc;
}

cv_rc cv_store_key_for_blob(cv_store_t *s, const uint8_t *blob, size_t len, cv_keyent_t **out)
{
	uint8_t kid[CV_KID_BYTES];
	return cv_crypto_blob_kid(blob, len, kid) ? CV_E_CRYPTO : lookup(s, false, kid, out);
}

/* A meta value that is a decimal integer (0 when absent). */
static int64_t meta_int(cv_store_t *s, const char *name)
{
	cv_buf_t v;
	char text[24];
	cv_buf_init(&v, 64);
	cv_rc rc = s->ops->meta_get(s->be, name, &v);
	snprintf(text, sizeof text, "%.*s", rc ? 0 : (int)(v.len < 23 ? v.len : 23), rc ? "" : v.data);
	cv_buf_release(&v);
	return strtoll(text, NULL, 10);
}

/* The master key version new wraps must use (0 when never rotated). */
static uint32_t master_version(cv_store_t *s)
{
	return (uint32_t)meta_int(s, MASTER_VERSION_META);
}

/* A new key for owner, not stored yet, cached and pinned (key_load_mu held). */
static cv_rc new_key(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], int64_t version, cv_keyent_t **out)
{
	if (cv_master_current(s->master) < master_version(s)) /* rotated by another process */
		cv_master_refresh(s->master);
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
	return lookup(s, true, owner, out);
}

void cv_store_key_done(cv_store_t *s, cv_store_write_t *w)
{
	if (!w->keyent)
		return;
	if (w->newkey && w->result == CV_OK)
		cv_keyring_set_persisted(s->keys, w->keyent);
	else if (w->newkey || w->result == CV_E_GONE || w->result == CV_E_CONFLICT || w->result == CV_E_AGAIN)
		/* not stored, destroyed or retired: look again */
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
		memcpy(s->legacy_kid, row.kid, CV_KID_BYTES);
		s->has_legacy = true;
		cv_keyring_unpin(s->keys, cv_keyring_add(s->keys, e));
	}
	cv_buf_release(&blob);
	return rc;
}

/* Makes sure meta "master.version" exists (writers lock it while storing a
 * new key: store.h, cv_store_master_version_set). */
static cv_rc master_version_row(cv_store_t *s)
{
	cv_buf_t v;
	cv_buf_init(&v, 64);
	cv_rc rc = s->ops->meta_get(s->be, MASTER_VERSION_META, &v);
	cv_buf_release(&v);
	return rc == CV_E_NOTFOUND ? cv_store_master_version_set(s, cv_master_current(s->master)) : rc;
}

/* After a rotation: a system key whose owner has a newer key now gets it
 * (the old entry stays cached: it still opens what it sealed). */
static void refresh_one(cv_store_t *s, cv_keyent_t *_Atomic *slot)
{
	cv_keyent_t *cur = atomic_load(slot), *e = NULL;
	cv_store_key_row_t row;
	cv_buf_t wrapped;
	cv_buf_init(&wrapped, 4096);
	/* the back end's current key, not the cache's: the cached one may be retired */
	cv_rc rc = s->ops->key_current(s->be, cur->row.owner, &row, &wrapped);
	if (!rc && row.state == CV_KEY_ACTIVE && memcmp(row.kid, cur->row.kid, CV_KID_BYTES) != 0) {
		pthread_mutex_lock(&s->key_load_mu);
		if (!(e = cv_keyring_find_kid(s->keys, row.kid)))
			rc = unwrap_row(s, &row, &e);
		pthread_mutex_unlock(&s->key_load_mu);
		if (!rc) {
			e->permanent = true;
			atomic_store(slot, e); /* the old one stays pinned and permanent: a reader may hold it */
		}
	}
	cv_buf_release(&wrapped);
}

void cv_store_keys_refresh_system(cv_store_t *s)
{
	refresh_system_keys(s);
}

static void refresh_system_keys(cv_store_t *s)
{
	if (s->shared_key)
		refresh_one(s, &s->shared_key);
	if (s->audit_key)
		refresh_one(s, &s->audit_key);
}

cv_rc cv_store_keys_open(cv_store_t *s, char *err, size_t errlen)
{
	cv_rc rc = master_version_row(s);
	if (!rc)
		rc = legacy_key(s);
	cv_keyent_t *shared = NULL, *audit = NULL;
	if (!rc)
		rc = system_key(s, "~shared", &shared);
	if (!rc)
		rc = system_key(s, "~audit", &audit);
	atomic_store(&s->shared_key, shared);
	atomic_store(&s->audit_key, audit);
	if (!rc)
		memcpy(s->shared_owner, shared->row.owner, CV_OWNER_BYTES);
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

cv_rc cv_store_erase_owner(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], int64_t at_us, int64_t *count)
{
	cv_store_key_row_t row = { .state = CV_KEY_DESTROYED }, cur;
	cv_buf_t wrapped;
	char name[64], when[24], hex[2 * CV_OWNER_BYTES + 1];
	memcpy(row.owner, owner, CV_OWNER_BYTES);
	cv_crypto_hex(owner, CV_OWNER_BYTES, hex);
	cv_buf_init(&wrapped, 4096);
	cv_rc rc = s->ops->key_current(s->be, owner, &cur, &wrapped);
	cv_buf_release(&wrapped);
	if (!rc && cur.state == CV_KEY_DESTROYED)
		rc = CV_E_GONE;
	/* a patient whose data all dates from before per-patient keys has no key yet: a destroyed
	 * one stands for it, so that nothing new is stored for them and the data key rotation
	 * shreds what the legacy key sealed of theirs */
	bool placeholder = rc == CV_E_NOTFOUND && cv_store_legacy_pending(s);
	if (placeholder) {
		row.version = 1;
		row.created_us = at_us;
		cv_crypto_kid_new(row.kid);
		rc = CV_OK;
	}
	if (rc)
		return rc;
	snprintf(name, sizeof name, "erased.%s", hex);
	int n = snprintf(when, sizeof when, "%lld", (long long)at_us);
	cv_store_write_t put = { .op = CV_STORE_PUT_KEY, .keyrow = &row };
	cv_store_write_t w = { .op = CV_STORE_ERASE, .keyrow = &row, .name = name, .body = (const uint8_t *)when,
			       .body_len = (size_t)n };
	cv_store_write_t *members[2] = { &put, &w };
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members, .nmembers = 2 };
	rc = placeholder ? cv_store_write_sync(s, &g) : cv_store_write_sync(s, &w);
	cv_keyring_drop_owner(s->keys, owner);
	if (!rc)
		*count = w.erased;
	return rc;
}

cv_rc cv_store_erase_check(cv_store_t *s, const char *patient_id, char owner_hex[33])
{
	uint8_t owner[CV_OWNER_BYTES];
	if (!patient_id || !patient_id[0] || strlen(patient_id) > 64)
		return CV_E_INVALID;
	cv_store_patient_owner(s, patient_id, owner);
	cv_crypto_hex(owner, CV_OWNER_BYTES, owner_hex);
	cv_rc rc = cv_store_patient_key_state(s, patient_id);
	return rc == CV_E_NOTFOUND && cv_store_legacy_pending(s) ? CV_OK : rc;
}

typedef struct erasures {
	cv_ledger_fn fn;
	void *arg;
} erasures_t;

static cv_rc erasure_meta(void *arg, const char *name, const uint8_t *value, size_t len)
{
	erasures_t *e = arg;
	uint8_t owner[CV_OWNER_BYTES];
	char when[24];
	if (strncmp(name, "erased.", 7) != 0 || strlen(name + 7) != 2 * CV_OWNER_BYTES ||
	    cv_crypto_unhex(name + 7, owner, CV_OWNER_BYTES))
		return CV_OK;
	snprintf(when, sizeof when, "%.*s", (int)(len < 23 ? len : 23), (const char *)value);
	return e->fn(e->arg, owner, strtoll(when, NULL, 10));
}

cv_rc cv_store_erasures(cv_store_t *s, cv_ledger_fn fn, void *arg)
{
	erasures_t e = { .fn = fn, .arg = arg };
	return s->ops->scan_meta(s->be, erasure_meta, &e);
}

bool cv_store_legacy_pending(cv_store_t *s)
{
	if (!s->has_legacy)
		return false;
	cv_buf_t v;
	cv_buf_init(&v, 16);
	cv_rc rc = s->ops->meta_get(s->be, LEGACY_DONE_META, &v);
	cv_buf_release(&v);
	return rc != CV_OK;
}

cv_rc cv_store_patient_key_state(cv_store_t *s, const char *patient_id)
{
	uint8_t owner[CV_OWNER_BYTES];
	cv_store_key_row_t row;
	cv_buf_t wrapped;
	if (!patient_id || !patient_id[0] || strlen(patient_id) > 64)
		return CV_E_NOTFOUND;
	cv_store_patient_owner(s, patient_id, owner);
	cv_buf_init(&wrapped, 4096);
	cv_rc rc = s->ops->key_current(s->be, owner, &row, &wrapped);
	cv_buf_release(&wrapped);
	return !rc && row.state == CV_KEY_DESTROYED ? CV_E_GONE : rc;
}

cv_rc cv_store_erase(cv_store_t *s, const char *patient_id, int64_t at_us, int64_t *count, char owner_hex[33])
{
	uint8_t owner[CV_OWNER_BYTES];
	if (!patient_id || !patient_id[0] || strlen(patient_id) > 64)
		return CV_E_INVALID;
	cv_store_patient_owner(s, patient_id, owner);
	cv_crypto_hex(owner, CV_OWNER_BYTES, owner_hex);
	return cv_store_erase_owner(s, owner, at_us, count);
}

/* ---- master key rotation --------------------------------------------------- */

cv_rc cv_store_master_version_set(cv_store_t *s, uint32_t version)
{
	char text[16];
	int n = snprintf(text, sizeof text, "%u", version);
	cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = MASTER_VERSION_META, .body = (const uint8_t *)text,
			       .body_len = (size_t)n };
	return cv_store_write_sync(s, &w);
}

static bool wrapped_by(const uint8_t *blob, size_t len, uint32_t version)
{
	uint32_t id;
	return cv_crypto_blob_key_id(blob, len, &id) == CV_OK && id == version;
}

/* Re-wraps the system keys kept in meta. */
static cv_rc rewrap_meta(cv_store_t *s, uint32_t target, uint64_t *count)
{
	cv_rc rc = CV_OK;
	for (size_t i = 0; !rc && i < sizeof wrapped_meta / sizeof wrapped_meta[0]; i++) {
		cv_buf_t blob, again;
		cv_key_t *k = NULL;
		cv_buf_init(&blob, 4096);
		cv_buf_init(&again, 4096);
		rc = s->ops->meta_get(s->be, wrapped_meta[i], &blob);
		if (rc == CV_E_NOTFOUND || (!rc && wrapped_by((const uint8_t *)blob.data, blob.len, target))) {
			rc = CV_OK;
		} else if (!rc) {
			rc = cv_crypto_key_unwrap(s->master, wrapped_meta[i], (const uint8_t *)blob.data, blob.len, &k);
			if (!rc)
				rc = cv_crypto_key_wrap(s->master, wrapped_meta[i], k, &again);
			cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = wrapped_meta[i],
					       .body = (const uint8_t *)again.data, .body_len = again.len };
			if (!rc)
				rc = cv_store_write_sync(s, &w);
			if (!rc)
				(*count)++;
		}
		cv_key_free(k);
		cv_buf_release(&blob);
		cv_buf_release(&again);
	}
	return rc;
}

/* Key rows to re-wrap, gathered by a scan. */
typedef struct rewrap {
	cv_store_t *s;
	uint32_t target;
	cv_store_key_row_t *rows;
	cv_buf_t *wrapped;       /* each row's new wrapped key */
	size_t n, cap;
	cv_store_key_stats_t *stats;
	cv_store_key_row_t after; /* where the next scan starts */
	bool started, full;
} rewrap_t;

static cv_rc count_row(void *arg, const cv_store_key_row_t *r)
{
	rewrap_t *rw = arg;
	if (r->state == CV_KEY_DESTROYED) {
		rw->stats->destroyed++;
		return CV_OK;
	}
	if (r->state == CV_KEY_RETIRED)
		rw->stats->retired++;
	else
		rw->stats->active++;
	if (!wrapped_by(r->wrapped, r->wrapped_len, rw->target))
		rw->stats->other_version++;
	return CV_OK;
}

cv_rc cv_store_key_stats(cv_store_t *s, uint32_t version, cv_store_key_stats_t *out)
{
	rewrap_t rw = { .s = s, .target = version, .stats = out };
	*out = (cv_store_key_stats_t){ 0 };
	cv_rc rc = s->ops->key_scan(s->be, NULL, count_row, &rw);
	for (size_t i = 0; !rc && i < sizeof wrapped_meta / sizeof wrapped_meta[0]; i++) {
		cv_buf_t blob;
		cv_buf_init(&blob, 4096);
		cv_rc m = s->ops->meta_get(s->be, wrapped_meta[i], &blob);
		if (!m && !wrapped_by((const uint8_t *)blob.data, blob.len, version))
			out->other_version++;
		else if (m && m != CV_E_NOTFOUND)
			rc = m;
		cv_buf_release(&blob);
	}
	return rc;
}

/* Writes the gathered batch as one group (one commit). */
static cv_rc rewrap_flush(rewrap_t *rw)
{
	cv_store_write_t *ws = calloc(rw->n ? rw->n : 1, sizeof *ws);
	cv_store_write_t **members = calloc(rw->n ? rw->n : 1, sizeof *members);
	cv_rc rc = ws && members ? CV_OK : CV_E_NOMEM;
	for (size_t i = 0; !rc && i < rw->n; i++) {
		rw->rows[i].wrapped = (const uint8_t *)rw->wrapped[i].data;
		rw->rows[i].wrapped_len = rw->wrapped[i].len;
		ws[i] = (cv_store_write_t){ .op = CV_STORE_KEY_REWRAP, .keyrow = &rw->rows[i] };
		members[i] = &ws[i];
	}
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members, .nmembers = rw->n };
	if (!rc && rw->n)
		rc = cv_store_write_sync(rw->s, &g);
	for (size_t i = 0; i < rw->n; i++)
		cv_buf_release(&rw->wrapped[i]);
	rw->n = 0;
	free(ws);
	free(members);
	return rc;
}

/* Unwraps a row (under whichever version wrapped it) and wraps it under the target. */
static cv_rc gather_row(void *arg, const cv_store_key_row_t *r)
{
	rewrap_t *rw = arg;
	char purpose[128];
	cv_key_t *k = NULL;
	if (rw->n == rw->cap) {
		rw->full = true;
		return CV_E_LIMIT; /* the caller flushes and scans on from here */
	}
	rw->after = *r;
	rw->started = true;
	if (r->state == CV_KEY_DESTROYED || wrapped_by(r->wrapped, r->wrapped_len, rw->target))
		return CV_OK;
	cv_rc rc = cv_crypto_key_unwrap(rw->s->master, purpose_of(r, purpose), r->wrapped, r->wrapped_len, &k);
	cv_buf_init(&rw->wrapped[rw->n], 4096);
	if (!rc)
		rc = cv_crypto_key_wrap(rw->s->master, purpose, k, &rw->wrapped[rw->n]);
	cv_key_free(k);
	if (rc) {
		cv_buf_release(&rw->wrapped[rw->n]);
		return rc;
	}
	rw->rows[rw->n] = *r;
	rw->rows[rw->n].wrapped = NULL;
	rw->rows[rw->n].wrapped_len = 0;
	rw->n++;
	return CV_OK;
}

cv_rc cv_store_rewrap(cv_store_t *s, void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg,
		      uint64_t *count)
{
	cv_store_key_stats_t stats;
	rewrap_t rw = { .s = s, .target = cv_master_current(s->master), .cap = REWRAP_BATCH };
	*count = 0;
	cv_rc rc = cv_store_key_stats(s, rw.target, &stats);
	uint64_t total = stats.other_version;
	if (!rc)
		rc = rewrap_meta(s, rw.target, count);
	rw.rows = calloc(REWRAP_BATCH, sizeof *rw.rows);
	rw.wrapped = calloc(REWRAP_BATCH, sizeof *rw.wrapped);
	if (!rw.rows || !rw.wrapped)
		rc = CV_E_NOMEM;
	while (!rc) { /* one pass over the table: each scan gathers a batch and stops; the next goes on from there */
		rw.full = false;
		rc = s->ops->key_scan(s->be, rw.started ? &rw.after : NULL, gather_row, &rw);
		if (rc == CV_E_LIMIT)
			rc = CV_OK;
		size_t n = rw.n;
		if (!rc)
			rc = rewrap_flush(&rw);
		*count += n;
		if (progress && n)
			progress(arg, *count, total > *count ? total : *count);
		if (!rw.full)
			break;
	}
	for (size_t i = 0; i < rw.n; i++)
		cv_buf_release(&rw.wrapped[i]);
	free(rw.rows);
	free(rw.wrapped);
	return rc;
}

/* ---- data key rotation ------------------------------------------------------- */

/* A new stored version of owner's key, retiring the older ones, in one group. */
static cv_rc rotate_owner(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], int64_t current)
{
	cv_keyent_t *e = NULL;
	pthread_mutex_lock(&s->key_load_mu);
	cv_rc rc = new_key(s, owner, current + 1, &e);
	pthread_mutex_unlock(&s->key_load_mu);
	if (rc)
		return rc;
	cv_store_write_t put = { .op = CV_STORE_PUT_KEY, .keyrow = &e->row };
	cv_store_write_t retire = { .op = CV_STORE_KEY_RETIRE, .keyrow = &e->row };
	cv_store_write_t *members[2] = { &put, &retire };
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members, .nmembers = 2 };
	rc = cv_store_write_sync(s, &g);
	if (!rc)
		cv_keyring_set_persisted(s->keys, e);
	cv_keyring_drop_owner(s->keys, owner); /* what is cached of it is retired now */
	cv_keyring_unpin(s->keys, e);
	return rc;
}

/* Owners with an active key, and whether anything is retired already. */
typedef struct owners {
	cv_store_key_row_t *rows; /* each owner's last (current) row */
	size_t n, cap;
	uint64_t retired;         /* retired keys a finished rotation would have destroyed */
	uint8_t keep[2][CV_OWNER_BYTES]; /* whose retired keys stay: the audit trail's, the shared key's */
} owners_t;

static cv_rc gather_owner(void *arg, const cv_store_key_row_t *r)
{
	owners_t *o = arg;
	if (r->state == CV_KEY_RETIRED && memcmp(r->owner, o->keep[0], CV_OWNER_BYTES) != 0 &&
	    memcmp(r->owner, o->keep[1], CV_OWNER_BYTES) != 0)
		o->retired++;
	if (r->state != CV_KEY_ACTIVE)
		return CV_OK;
	if (o->n && memcmp(o->rows[o->n - 1].owner, r->owner, CV_OWNER_BYTES) == 0) {
		o->rows[o->n - 1] = *r; /* rows come in (owner, version) order: keep the last */
		return CV_OK;
	}
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 256;
		cv_store_key_row_t *more = realloc(o->rows, cap * sizeof *more);
		if (!more)
			return CV_E_NOMEM;
		o->rows = more;
		o->cap = cap;
	}
	o->rows[o->n] = *r;
	o->rows[o->n].wrapped = NULL;
	o->rows[o->n++].wrapped_len = 0;
	return CV_OK;
}

/* Tells every process to drop its cached keys (and this one). */
static cv_rc bump_epoch(cv_store_t *s, const char *why)
{
	char text[32];
	int n = snprintf(text, sizeof text, "%s.%lld", why, (long long)cv_time_now_us());
	cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = EPOCH_META, .body = (const uint8_t *)text,
			       .body_len = (size_t)n };
	cv_rc rc = cv_store_write_sync(s, &w);
	atomic_store_explicit(&s->key_epoch_checked, 0, memory_order_relaxed);
	refresh_epoch(s);
	return rc;
}

cv_rc cv_store_rotate_keys(cv_store_t *s, const char *patient_id, uint64_t *count)
{
	owners_t o = { 0 };
	*count = 0;
	cv_store_owner_of(s, "~audit", o.keep[0]);
	memcpy(o.keep[1], s->shared_owner, CV_OWNER_BYTES);
	cv_rc rc = s->ops->key_scan(s->be, NULL, gather_owner, &o);
	if (!rc && o.retired)
		rc = CV_E_CONFLICT;
	uint8_t only[CV_OWNER_BYTES];
	if (patient_id) {
		if (!patient_id[0] || strlen(patient_id) > 64)
			rc = rc ? rc : CV_E_INVALID;
		cv_store_patient_owner(s, patient_id, only);
	}
	bool found = !patient_id;
	for (size_t i = 0; !rc && i < o.n; i++) {
		if (patient_id && memcmp(o.rows[i].owner, only, CV_OWNER_BYTES) != 0)
			continue;
		found = true;
		rc = rotate_owner(s, o.rows[i].owner, o.rows[i].version);
		if (!rc)
			(*count)++;
		else if (rc == CV_E_GONE && !patient_id) /* erased meanwhile: nothing of theirs to rotate */
			rc = CV_OK;
	}
	if (!rc && !found)
		rc = CV_E_NOTFOUND;
	if (*count)
		bump_epoch(s, "rotate");
	free(o.rows);
	return rc;
}

/* A key of owner that is stored (a new one is stored first). */
static cv_rc stored_key(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], cv_keyent_t **out)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		cv_rc rc = cv_store_key_for_owner(s, owner, out);
		if (rc || (*out)->persisted)
			return rc;
		cv_store_write_t w = { .op = CV_STORE_PUT_KEY, .keyrow = &(*out)->row };
		rc = cv_store_write_sync(s, &w);
		cv_keyring_drop_owner(s->keys, owner);
		cv_keyring_unpin(s->keys, *out);
		*out = NULL;
		if (rc)
			return rc;
	}
	return CV_E_CONFLICT;
}

typedef struct reseal {
	cv_store_t *s;
	uint8_t (*kids)[CV_KID_BYTES];  /* the retired keys (sorted) */
	size_t nkids, cap;
	bool legacy;                    /* also what the legacy data key sealed */
	uint8_t audit_owner[CV_OWNER_BYTES];
	cv_store_owner_fn owner_fn;
	void *owner_arg;
	cv_store_write_t w[RESEAL_BATCH];
	size_t n;
	int64_t last_seq;
	uint64_t resealed;
	cv_pool_t *pool;                /* the page's: what the batch's writes point to */
} reseal_t;

static int kid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, CV_KID_BYTES);
}

static cv_rc gather_retired(void *arg, const cv_store_key_row_t *r)
{
	reseal_t *rs = arg;
	if (r->state != CV_KEY_RETIRED || memcmp(r->owner, rs->audit_owner, CV_OWNER_BYTES) == 0)
		return CV_OK;
	if (rs->nkids == rs->cap) {
		size_t cap = rs->cap ? 2 * rs->cap : 256;
		uint8_t (*more)[CV_KID_BYTES] = realloc(rs->kids, cap * sizeof *more);
		if (!more)
			return CV_E_NOMEM;
		rs->kids = more;
		rs->cap = cap;
	}
	memcpy(rs->kids[rs->nkids++], r->kid, CV_KID_BYTES);
	return CV_OK;
}

static bool to_reseal(const reseal_t *rs, const uint8_t kid[CV_KID_BYTES])
{
	if (rs->legacy && rs->s->has_legacy && memcmp(kid, rs->s->legacy_kid, CV_KID_BYTES) == 0)
		return true;
	return rs->nkids && bsearch(kid, rs->kids, rs->nkids, CV_KID_BYTES, kid_cmp);
}

/* For a version of an erased patient: a throwaway key (random, forgotten
 * after this seal) that bears the id of one of the patient's destroyed keys,
 * so that the version reads as erased (CV_E_GONE) and nobody can open it. */
static cv_rc shredded_key(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], cv_keyent_t **out)
{
	cv_store_key_row_t row;
	cv_buf_t wrapped;
	cv_key_t *k = NULL;
	cv_buf_init(&wrapped, 4096);
	cv_rc rc = s->ops->key_current(s->be, owner, &row, &wrapped);
	cv_buf_release(&wrapped);
	if (!rc && row.state != CV_KEY_DESTROYED)
		rc = CV_E_CONFLICT;
	row.wrapped = NULL;
	row.wrapped_len = 0;
	if (!rc)
		rc = cv_crypto_key_generate(row.kid, &k);
	if (!rc)
		rc = cv_keyring_entry_new(&row, k, out);
	if (!rc)
		cv_keyring_detach(*out); /* never cached: freed when the write is done */
	return rc;
}

/* The owner a version goes to: the retired key's, or (legacy) owner_fn's answer. */
static cv_rc owner_of(reseal_t *rs, const cv_store_version_t *v, const cv_keyent_t *old, const cv_buf_t *pt,
		      uint8_t owner[CV_OWNER_BYTES])
{
	char patient[65] = "";
	if (!old->legacy) {
		memcpy(owner, old->row.owner, CV_OWNER_BYTES);
		return CV_OK;
	}
	cv_rc rc = rs->owner_fn(rs->owner_arg, v->type, pt->data, pt->len, patient);
	if (!rc && patient[0])
		cv_store_patient_owner(rs->s, patient, owner);
	else if (!rc)
		memcpy(owner, rs->s->shared_owner, CV_OWNER_BYTES);
	return rc;
}

/* Re-encrypts one version into the next write of the batch. */
static cv_rc reseal_one(reseal_t *rs, const cv_store_version_t *v)
{
	char ad[256];
	uint8_t owner[CV_OWNER_BYTES];
	cv_keyent_t *old = NULL, *cur = NULL;
	cv_buf_t pt;
	size_t adlen = cv_store_version_ad(ad, sizeof ad, v->type, v->rid, v->version);
	cv_buf_init(&pt, v->body_len + 1);
	cv_rc rc = cv_store_key_for_blob(rs->s, v->body, v->body_len, &old);
	if (rc == CV_E_GONE) { /* erased meanwhile: nothing to move */
		cv_buf_release(&pt);
		return CV_OK;
	}
	if (!rc)
		rc = cv_crypto_open(old->key, ad, adlen, v->body, v->body_len, &pt);
	if (!rc)
		rc = owner_of(rs, v, old, &pt, owner);
	if (!rc)
		rc = stored_key(rs->s, owner, &cur);
	bool erased = rc == CV_E_GONE;
	if (erased) /* its patient was erased while it was still under the legacy key: shred it now */
		rc = shredded_key(rs->s, owner, &cur);
	cv_store_write_t *w = &rs->w[rs->n];
	*w = (cv_store_write_t){ .op = CV_STORE_RESEAL, .type = cv_pool_strdup(rs->pool, v->type),
				 .expect_version = v->version, .deleted = erased };
	if (!rc && !w->type)
		rc = CV_E_NOMEM;
	cv_buf_init(&w->sealed, v->body_len + CV_SEAL_OVERHEAD_MAX + 16);
	if (!rc) {
		snprintf(w->rid, sizeof w->rid, "%s", v->rid);
		w->keyrow = &cur->row;
		w->keyent = cur; /* unpinned when the write is done */
		rc = cv_crypto_seal(cur->key, ad, adlen, pt.data, pt.len, &w->sealed);
	}
	cv_crypto_wipe(pt.data, pt.len);
	cv_buf_release(&pt);
	cv_keyring_unpin(rs->s->keys, old);
	if (rc) {
		cv_buf_release(&w->sealed);
		cv_keyring_unpin(rs->s->keys, cur);
		return rc;
	}
	rs->n++;
	rs->resealed++;
	return CV_OK;
}

static cv_rc reseal_row(void *arg, const cv_store_version_t *v)
{
	reseal_t *rs = arg;
	uint8_t kid[CV_KID_BYTES];
	rs->last_seq = v->seq;
	if (cv_crypto_blob_kid(v->body, v->body_len, kid) || !to_reseal(rs, kid))
		return CV_OK;
	return reseal_one(rs, v);
}

/* Writes the batch and how far it got, in one transaction. */
static cv_rc reseal_flush(reseal_t *rs)
{
	char cursor[24];
	int len = snprintf(cursor, sizeof cursor, "%lld", (long long)rs->last_seq);
	cv_store_write_t meta = { .op = CV_STORE_PUT_META, .name = RESEAL_CURSOR_META, .body = (const uint8_t *)cursor,
				  .body_len = (size_t)len };
	cv_store_write_t *members[RESEAL_BATCH + 1];
	for (size_t i = 0; i < rs->n; i++)
		members[i] = &rs->w[i];
	members[rs->n] = &meta;
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members, .nmembers = rs->n + 1 };
	cv_rc rc = cv_store_write_sync(rs->s, &g);
	rs->n = 0;
	return rc;
}


cv_rc cv_store_reseal(cv_store_t *s, cv_store_owner_fn owner_fn, void *owner_arg, cv_store_progress_fn progress,
		      void *arg, uint64_t *resealed)
{
	reseal_t *rs = calloc(1, sizeof *rs);
	if (!rs)
		return CV_E_NOMEM;
	int64_t end = 0;
	rs->s = s;
	rs->owner_fn = owner_fn;
	rs->owner_arg = owner_arg;
	rs->legacy = owner_fn != NULL;
	cv_store_owner_of(s, "~audit", rs->audit_owner);
	cv_rc rc = s->ops->key_scan(s->be, NULL, gather_retired, rs);
	if (!rc && rs->nkids)
		qsort(rs->kids, rs->nkids, CV_KID_BYTES, kid_cmp);
	if (!rc)
		rc = s->ops->last_seq(s->be, &end);
	/* versions written after the rotation began are sealed under the new keys: the scan ends at `end` */
	int64_t after = meta_int(s, RESEAL_CURSOR_META);
	bool whole = after == 0; /* only a scan of everything may say the legacy data is all moved */
	while (!rc && after < end && (rs->nkids || rs->legacy)) {
		cv_pool_t pool;
		cv_pool_init(&pool, 0);
		rs->last_seq = after;
		rs->pool = &pool;
		rc = s->ops->scan(s->be, after, RESEAL_BATCH, &pool, reseal_row, rs);
		bool more = rs->last_seq > after;
		if (!rc)
			rc = reseal_flush(rs);
		for (size_t i = 0; i < rs->n; i++) { /* a failed page: its writes were never submitted */
			cv_buf_release(&rs->w[i].sealed);
			cv_keyring_unpin(s->keys, rs->w[i].keyent);
		}
		rs->n = 0;
		cv_pool_release(&pool);
		if (!more)
			break;
		after = rs->last_seq;
		if (progress)
			progress(arg, (uint64_t)after, (uint64_t)end);
	}
	/* done: the retired keys go (not the audit trail's, nor the shared key's: they open the tokens
	 * sealed inside records), and the cursor with them */
	cv_store_key_row_t keep = { .version = 0 };
	memcpy(keep.owner, rs->audit_owner, CV_OWNER_BYTES);
	cv_store_write_t purge = { .op = CV_STORE_KEY_PURGE, .keyrow = &keep, .body = s->shared_owner,
				   .body_len = CV_OWNER_BYTES };
	cv_store_write_t reset = { .op = CV_STORE_PUT_META, .name = RESEAL_CURSOR_META, .body = (const uint8_t *)"0",
				   .body_len = 1 };
	cv_store_write_t migrated = { .op = CV_STORE_PUT_META, .name = LEGACY_DONE_META, .body = (const uint8_t *)"1",
				      .body_len = 1 };
	cv_store_write_t *members[3] = { &purge, &reset, &migrated };
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members,
			       .nmembers = rs->legacy && s->has_legacy && whole ? 3 : 2 };
	if (!rc)
		rc = cv_store_write_sync(s, &g);
	if (!rc)
		bump_epoch(s, "purge");
	*resealed = rs->resealed;
	free(rs->kids);
	free(rs);
	return rc;
}
