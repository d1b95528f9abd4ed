/*
 * test_legacy.c - stores made before per-patient keys (store.h, "data
 * keys"): every version sealed in format 1 under one data key (meta
 * "key.data", wrapped by the master key), current rows with no key id.
 * Such a store opens and reads; nothing can be erased until a data key
 * rotation with an owner function moves each legacy version under the key
 * of the patient whose compartment it is in (or the shared key); after it,
 * erasing a patient makes every version of theirs unreadable and leaves the
 * others alone, across a reopen, and the legacy key stays (it may still
 * open old audit records). SQLite only: the legacy state is crafted in the
 * raw database.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/crypto.h"
#include "store/store.h"

typedef struct fx {
	char dir[64];
	cv_key_t *master;
	cv_store_t *s;
	cv_pool_t pool;
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	char err[256], key[128];
	snprintf(f->dir, sizeof f->dir, "/tmp/cv-legacy-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(key, sizeof key, "%s/master.key", f->dir);
	assert_int_equal(cv_crypto_init(err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_create(key, err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_load(key, &f->master, err, sizeof err), CV_OK);
	cv_pool_init(&f->pool, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	char cmd[128];
	cv_pool_release(&f->pool);
	cv_store_close(f->s);
	cv_key_free(f->master);
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void open_store(fx_t *f)
{
	char err[256] = "";
	cv_rc rc = cv_store_open(f->dir, "", 2, f->master, &f->s, err, sizeof err);
	if (rc)
		fprintf(stderr, "cv_store_open: %s\n", err);
	assert_int_equal(rc, CV_OK);
}

static void reopen(fx_t *f)
{
	cv_store_close(f->s);
	f->s = NULL;
	open_store(f);
}

static sqlite3 *raw_open(fx_t *f)
{
	char path[128];
	sqlite3 *db = NULL;
	snprintf(path, sizeof path, "%s/store.db", f->dir);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	return db;
}

/* The meta value `name` as stored (into out); false when there is none. */
static bool raw_meta(fx_t *f, const char *name, cv_buf_t *out)
{
	sqlite3 *db = raw_open(f);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT value FROM cv_meta WHERE name = ?1", -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	int s = sqlite3_step(st);
	bool found = s == SQLITE_ROW;
	if (found)
		assert_int_equal(cv_buf_append(out, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0)),
				 CV_OK);
	else
		assert_int_equal(s, SQLITE_DONE);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return found;
}

/* ---- the legacy world ------------------------------------------------------ */

typedef struct lrow {
	const char *type, *id;
	int64_t version;
	const char *patient; /* whose compartment ("" for none) */
	char json[256];
	char rid[2 * CV_BLIND_BYTES + 1];
	int64_t seq;
	uint8_t kid[CV_KID_BYTES]; /* after the reseal: the key that seals it (raw) */
} lrow_t;

/* In seq order; oA1 gets a second version last. */
static const struct {
	const char *type, *id;
	int64_t version;
	const char *patient;
} plan[] = {
	{ "Patient", "pA", 1, "pA" },
	{ "Observation", "oA1", 1, "pA" },
	{ "Patient", "pB", 1, "pB" },
	{ "Observation", "oB1", 1, "pB" },
	{ "Organization", "org1", 1, "" },
	{ "Observation", "oA2", 1, "pA" },
	{ "Observation", "oB2", 1, "pB" },
	{ "Observation", "oA1", 2, "pA" },
};
#define NROWS (sizeof plan / sizeof plan[0])
#define NA_RESOURCES 3 /* pA's current resources: the Patient, oA1, oA2 */

typedef struct world {
	lrow_t rows[NROWS];
} world_t;

static void make_json(lrow_t *r)
{
	if (strcmp(r->type, "Patient") == 0)
		snprintf(r->json, sizeof r->json,
			 "{\"resourceType\":\"Patient\",\"id\":\"%s\",\"name\":[{\"family\":\"Family-%s\"}]}", r->id,
			 r->id);
	else if (strcmp(r->type, "Observation") == 0)
		snprintf(r->json, sizeof r->json,
			 "{\"resourceType\":\"Observation\",\"id\":\"%s\",\"status\":\"%s\",\"code\":{\"text\":\"hr\"},"
			 "\"subject\":{\"reference\":\"Patient/%s\"},\"valueQuantity\":{\"value\":%lld}}",
			 r->id, r->version == 1 ? "preliminary" : "final", r->patient, (long long)(60 + r->version));
	else
		snprintf(r->json, sizeof r->json, "{\"resourceType\":\"Organization\",\"id\":\"%s\",\"name\":\"Clinic\"}",
			 r->id);
}

/* The row id of type/id as store.c computes it (row_id): hex HMAC under the index key. */
static void rid_of(const cv_key_t *index_key, const char *type, const char *id, char rid[2 * CV_BLIND_BYTES + 1])
{
	char msg[256];
	uint8_t mac[CV_BLIND_BYTES];
	int n = snprintf(msg, sizeof msg, "%s/%s", type, id);
	cv_crypto_blind(index_key, msg, (size_t)n, mac);
	cv_crypto_hex(mac, sizeof mac, rid);
}

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "sqlite: %s\n", msg ? msg : "?");
	sqlite3_free(msg);
	assert_int_equal(rc, SQLITE_OK);
}

/* Writes the legacy state into the raw database of a closed store: meta
 * key.data, and every version of the plan sealed in format 1 under it,
 * with the current rows (no key id). */
static void craft_legacy(fx_t *f, world_t *w)
{
	cv_buf_t blob, wrapped;
	cv_key_t *index_key = NULL, *data_key = NULL;
	cv_buf_init(&blob, 4096);
	cv_buf_init(&wrapped, 4096);
	assert_true(raw_meta(f, "key.index", &blob));
	assert_int_equal(cv_crypto_key_unwrap(f->master, "key.index", (const uint8_t *)blob.data, blob.len, &index_key),
			 CV_OK);
	assert_false(raw_meta(f, "key.data", &wrapped)); /* a new store has none */
	assert_int_equal(cv_crypto_key_wrap_new(f->master, "key.data", 1, &wrapped), CV_OK);
	assert_int_equal(cv_crypto_key_unwrap(f->master, "key.data", (const uint8_t *)wrapped.data, wrapped.len,
					      &data_key),
			 CV_OK);
	assert_int_equal(cv_key_id(data_key), 1);

	sqlite3 *db = raw_open(f);
	sqlite3_stmt *meta = NULL, *ver = NULL, *res = NULL;
	exec_ok(db, "BEGIN");
	assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO cv_meta(name, value) VALUES ('key.data', ?1)", -1, &meta,
					    NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(meta, 1, wrapped.data, (int)wrapped.len, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(meta), SQLITE_DONE);
	sqlite3_finalize(meta);
	assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO cv_version(seq, type, rid, version, updated_us, deleted, body) "
						"VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
					    -1, &ver, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "INSERT INTO cv_resource(type, rid, version, seq, updated_us, deleted, kid) "
						"VALUES (?1, ?2, ?3, ?4, ?5, 0, NULL) ON CONFLICT(type, rid) DO UPDATE SET "
						"version = excluded.version, seq = excluded.seq, updated_us = excluded.updated_us",
					    -1, &res, NULL),
			 SQLITE_OK);
	for (size_t i = 0; i < NROWS; i++) {
		lrow_t *r = &w->rows[i];
		char ad[256];
		cv_buf_t sealed;
		*r = (lrow_t){ .type = plan[i].type, .id = plan[i].id, .version = plan[i].version,
			       .patient = plan[i].patient, .seq = (int64_t)i + 1 };
		make_json(r);
		rid_of(index_key, r->type, r->id, r->rid);
		int adlen = snprintf(ad, sizeof ad, "%s|%s|%lld", r->type, r->rid, (long long)r->version);
		cv_buf_init(&sealed, 4096);
		assert_int_equal(cv_crypto_seal(data_key, ad, (size_t)adlen, r->json, strlen(r->json), &sealed), CV_OK);
		assert_int_equal((uint8_t)sealed.data[2], 1); /* format 1 */
		int64_t updated = 1700000000000000LL + r->seq * 1000000;
		sqlite3_bind_int64(ver, 1, r->seq);
		sqlite3_bind_text(ver, 2, r->type, -1, SQLITE_STATIC);
		sqlite3_bind_text(ver, 3, r->rid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(ver, 4, r->version);
		sqlite3_bind_int64(ver, 5, updated);
		sqlite3_bind_blob(ver, 6, sealed.data, (int)sealed.len, SQLITE_STATIC);
		assert_int_equal(sqlite3_step(ver), SQLITE_DONE);
		sqlite3_reset(ver);
		sqlite3_clear_bindings(ver);
		sqlite3_bind_text(res, 1, r->type, -1, SQLITE_STATIC);
		sqlite3_bind_text(res, 2, r->rid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(res, 3, r->version);
		sqlite3_bind_int64(res, 4, r->seq);
		sqlite3_bind_int64(res, 5, updated);
		assert_int_equal(sqlite3_step(res), SQLITE_DONE);
		sqlite3_reset(res);
		sqlite3_clear_bindings(res);
		cv_buf_release(&sealed);
	}
	sqlite3_finalize(ver);
	sqlite3_finalize(res);
	exec_ok(db, "COMMIT");
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	cv_key_free(index_key);
	cv_key_free(data_key);
	cv_buf_release(&blob);
	cv_buf_release(&wrapped);
}

/* ---- reading back ------------------------------------------------------------ */

static void read_equal(fx_t *f, const lrow_t *r, int64_t version)
{
	cv_store_version_t v;
	cv_rc rc = cv_store_read(f->s, r->type, r->id, version, &f->pool, &v);
	if (rc)
		fprintf(stderr, "read %s/%s v%lld: %s\n", r->type, r->id, (long long)version, cv_rc_str(rc));
	assert_int_equal(rc, CV_OK);
	assert_int_equal(v.version, r->version);
	assert_int_equal(v.seq, r->seq);
	assert_false(v.deleted);
	assert_int_equal(v.body_len, strlen(r->json));
	assert_string_equal((const char *)v.body, r->json);
}

static bool is_current(const world_t *w, size_t i)
{
	for (size_t j = 0; j < NROWS; j++)
		if (j != i && strcmp(w->rows[j].type, w->rows[i].type) == 0 && strcmp(w->rows[j].id, w->rows[i].id) == 0 &&
		    w->rows[j].version > w->rows[i].version)
			return false;
	return true;
}

/* Every version reads back equal, by its number and (the current ones) as current. */
static void all_read_equal(fx_t *f, const world_t *w)
{
	for (size_t i = 0; i < NROWS; i++) {
		read_equal(f, &w->rows[i], w->rows[i].version);
		if (is_current(w, i))
			read_equal(f, &w->rows[i], 0);
	}
}

/* After pA's erasure: pA's versions (all of them, current or old) are gone,
 * the others read back equal. */
static void check_erased(fx_t *f, const world_t *w)
{
	for (size_t i = 0; i < NROWS; i++) {
		const lrow_t *r = &w->rows[i];
		cv_store_version_t v;
		if (strcmp(r->patient, "pA") == 0) {
			assert_int_equal(cv_store_read(f->s, r->type, r->id, r->version, &f->pool, &v), CV_E_GONE);
			if (is_current(w, i))
				assert_int_equal(cv_store_read(f->s, r->type, r->id, 0, &f->pool, &v), CV_E_GONE);
		} else {
			read_equal(f, r, r->version);
			if (is_current(w, i))
				read_equal(f, r, 0);
		}
	}
}

/* ---- the owner function ------------------------------------------------------ */

typedef struct owner_calls {
	int n;
	int bad; /* calls whose JSON did not match the version of its type */
} owner_calls_t;

/* Copies the string value that follows `key` in json[0..len) into out (at most 64 characters). */
static bool value_after(const char *json, size_t len, const char *key, char out[65])
{
	size_t klen = strlen(key);
	for (size_t i = 0; i + klen <= len; i++) {
		if (memcmp(json + i, key, klen) != 0)
			continue;
		size_t j = i + klen, n = 0;
		while (j < len && json[j] != '"' && n < 64)
			out[n++] = json[j++];
		out[n] = '\0';
		return j < len && json[j] == '"';
	}
	return false;
}

static cv_rc owner_fn(void *arg, const char *type, const char *json, size_t len, char out[65])
{
	owner_calls_t *c = arg;
	c->n++;
	out[0] = '\0';
	char rt[65];
	if (!value_after(json, len, "\"resourceType\":\"", rt) || strcmp(rt, type) != 0)
		c->bad++;
	if (strcmp(type, "Patient") == 0) {
		if (!value_after(json, len, "\"id\":\"", out))
			out[0] = '\0';
	} else if (!value_after(json, len, "\"subject\":{\"reference\":\"Patient/", out)) {
		out[0] = '\0';
	}
	return CV_OK;
}

/* ---- raw checks after the reseal -------------------------------------------- */

static lrow_t *row_of(world_t *w, const char *type, const char *rid, int64_t version)
{
	for (size_t i = 0; i < NROWS; i++)
		if (strcmp(w->rows[i].type, type) == 0 && strcmp(w->rows[i].rid, rid) == 0 &&
		    w->rows[i].version == version)
			return &w->rows[i];
	return NULL;
}

/* Every version is format 2 now: records each one's key id (bytes 3..18). */
static void raw_versions(fx_t *f, world_t *w)
{
	sqlite3 *db = raw_open(f);
	sqlite3_stmt *st = NULL;
	size_t n = 0;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT seq, type, rid, version, body FROM cv_version ORDER BY seq", -1,
					    &st, NULL),
			 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		lrow_t *r = row_of(w, (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2),
				   sqlite3_column_int64(st, 3));
		assert_non_null(r);
		assert_int_equal(sqlite3_column_int64(st, 0), r->seq); /* the reseal keeps the version where it was */
		const uint8_t *body = sqlite3_column_blob(st, 4);
		int len = sqlite3_column_bytes(st, 4);
		assert_true(len > 3 + CV_KID_BYTES + 12 + 16);
		assert_int_equal(body[0], 'C');
		assert_int_equal(body[1], 'V');
		assert_int_equal(body[2], 2); /* no format-1 body is left */
		uint8_t kid[CV_KID_BYTES];
		assert_int_equal(cv_crypto_blob_kid(body, (size_t)len, kid), CV_OK);
		assert_memory_equal(kid, body + 3, CV_KID_BYTES);
		memcpy(r->kid, kid, CV_KID_BYTES);
		n++;
	}
	sqlite3_finalize(st);
	assert_int_equal(n, NROWS);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The key id on the current row of r (cv_resource.kid); false when NULL. */
static bool raw_resource_kid(fx_t *f, const lrow_t *r, uint8_t kid[CV_KID_BYTES], int *deleted)
{
	sqlite3 *db = raw_open(f);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT kid, deleted, version FROM cv_resource WHERE type = ?1 AND rid = ?2",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, r->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, r->rid, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_int64(st, 2), r->version);
	bool has = sqlite3_column_type(st, 0) == SQLITE_BLOB;
	if (has) {
		assert_int_equal(sqlite3_column_bytes(st, 0), CV_KID_BYTES);
		memcpy(kid, sqlite3_column_blob(st, 0), CV_KID_BYTES);
	}
	if (deleted)
		*deleted = sqlite3_column_int(st, 1);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return has;
}

/* The key row of kid: its owner, version and state. */
static void raw_key(fx_t *f, const uint8_t kid[CV_KID_BYTES], uint8_t owner[CV_OWNER_BYTES], int64_t *version,
		    int *state, int *wrapped_len)
{
	sqlite3 *db = raw_open(f);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT owner, version, state, length(wrapped) FROM cv_key WHERE kid = ?1",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, kid, CV_KID_BYTES, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_int_equal(sqlite3_column_bytes(st, 0), CV_OWNER_BYTES);
	memcpy(owner, sqlite3_column_blob(st, 0), CV_OWNER_BYTES);
	*version = sqlite3_column_int64(st, 1);
	*state = sqlite3_column_int(st, 2);
	*wrapped_len = sqlite3_column_int(st, 3);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* The key id the shared key seals with now (a paging token is sealed under it). */
static void shared_kid(fx_t *f, uint8_t kid[CV_KID_BYTES])
{
	cv_buf_t tok, blob;
	cv_buf_init(&tok, 4096);
	cv_buf_init(&blob, 4096);
	assert_int_equal(cv_store_token_seal(f->s, "test", "x", 1, &tok), CV_OK);
	assert_int_equal(cv_crypto_b64url_decode(tok.data, tok.len, &blob), CV_OK);
	assert_int_equal(cv_crypto_blob_kid((const uint8_t *)blob.data, blob.len, kid), CV_OK);
	cv_buf_release(&tok);
	cv_buf_release(&blob);
}

static size_t count_format1(fx_t *f)
{
	sqlite3 *db = raw_open(f);
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM cv_version WHERE substr(body, 3, 1) = x'01'", -1,
					    &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	size_t n = (size_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
	return n;
}

/* ---- the test ------------------------------------------------------------------ */

static void legacy_store_reseals_then_erases(void **state)
{
	fx_t *f = *state;
	world_t world, *w = &world;
	int64_t count = -1;
	char hex[33];

	/* 1: a store with its index, shared and audit keys */
	open_store(f);
	cv_store_close(f->s);
	f->s = NULL;

	/* 2: the state of a store made before per-patient keys */
	craft_legacy(f, w);
	assert_int_equal(count_format1(f), NROWS);

	/* 3: it opens and reads; pA has no key of theirs yet, and the store knows it holds legacy data */
	open_store(f);
	all_read_equal(f, w);
	for (size_t i = 0; i < NROWS; i++) {
		uint8_t kid[CV_KID_BYTES];
		if (is_current(w, i))
			assert_false(raw_resource_kid(f, &w->rows[i], kid, NULL));
	}
	assert_int_equal(cv_store_patient_key_state(f->s, "pA"), CV_E_NOTFOUND);
	assert_true(cv_store_legacy_pending(f->s));
	assert_int_equal(count, -1);
	all_read_equal(f, w);

	/* 4: rotation, then the reseal moves every legacy version to its owner's key */
	uint64_t rotated = 0, resealed = 0;
	owner_calls_t calls = { 0 };
	assert_int_equal(cv_store_rotate_keys(f->s, NULL, &rotated), CV_OK);
	assert_int_equal(rotated, 2); /* the shared key and the audit trail's */
	all_read_equal(f, w);
	assert_int_equal(cv_store_reseal(f->s, owner_fn, &calls, NULL, NULL, &resealed), CV_OK);
	assert_int_equal(resealed, NROWS);
	assert_int_equal(calls.n, NROWS); /* once per legacy version */
	assert_int_equal(calls.bad, 0);
	all_read_equal(f, w);
	assert_int_equal(count_format1(f), 0);
	raw_versions(f, w);

	uint8_t ka[CV_KID_BYTES], kb[CV_KID_BYTES], kshared[CV_KID_BYTES];
	const lrow_t *org = NULL;
	bool have_a = false, have_b = false;
	for (size_t i = 0; i < NROWS; i++) {
		const lrow_t *r = &w->rows[i];
		if (strcmp(r->patient, "pA") == 0) {
			if (have_a)
				assert_memory_equal(r->kid, ka, CV_KID_BYTES); /* all of pA's versions, old ones too */
			memcpy(ka, r->kid, CV_KID_BYTES);
			have_a = true;
		} else if (strcmp(r->patient, "pB") == 0) {
			if (have_b)
				assert_memory_equal(r->kid, kb, CV_KID_BYTES);
			memcpy(kb, r->kid, CV_KID_BYTES);
			have_b = true;
		} else {
			org = r;
		}
	}
	assert_true(have_a && have_b && org);
	assert_memory_not_equal(ka, kb, CV_KID_BYTES);
	shared_kid(f, kshared);
	assert_memory_equal(org->kid, kshared, CV_KID_BYTES);
	assert_memory_not_equal(org->kid, ka, CV_KID_BYTES);
	assert_memory_not_equal(org->kid, kb, CV_KID_BYTES);

	/* the key rows: pA's and pB's keys are theirs and active; the shared key is its rotated version */
	uint8_t owner[CV_OWNER_BYTES], want[CV_OWNER_BYTES];
	int64_t kver = 0;
	int kstate = 0, wlen = 0;
	raw_key(f, ka, owner, &kver, &kstate, &wlen);
	cv_store_patient_owner(f->s, "pA", want);
	assert_memory_equal(owner, want, CV_OWNER_BYTES);
	assert_int_equal(kstate, 1);
	raw_key(f, kb, owner, &kver, &kstate, &wlen);
	cv_store_patient_owner(f->s, "pB", want);
	assert_memory_equal(owner, want, CV_OWNER_BYTES);
	assert_int_equal(kstate, 1);
	raw_key(f, kshared, owner, &kver, &kstate, &wlen);
	assert_int_equal(kver, 2);
	assert_int_equal(kstate, 1);

	/* every current row names the key of its current version */
	for (size_t i = 0; i < NROWS; i++) {
		uint8_t kid[CV_KID_BYTES];
		int deleted = -1;
		if (!is_current(w, i))
			continue;
		assert_true(raw_resource_kid(f, &w->rows[i], kid, &deleted));
		assert_memory_equal(kid, w->rows[i].kid, CV_KID_BYTES);
		assert_int_equal(deleted, 0);
	}

	/* 5: pA's erasure now shreds every version of theirs */
	assert_int_equal(cv_store_erase(f->s, "pA", 2, &count, hex), CV_OK);
	assert_int_equal(count, NA_RESOURCES);
	check_erased(f, w);
	raw_key(f, ka, owner, &kver, &kstate, &wlen);
	assert_int_equal(kstate, 3);
	assert_int_equal(wlen, 0);
	for (size_t i = 0; i < NROWS; i++) {
		uint8_t kid[CV_KID_BYTES];
		int deleted = -1;
		if (!is_current(w, i))
			continue;
		raw_resource_kid(f, &w->rows[i], kid, &deleted);
		assert_int_equal(deleted, strcmp(w->rows[i].patient, "pA") == 0);
	}
	reopen(f);
	check_erased(f, w);
	count = -1;
	assert_int_equal(cv_store_erase(f->s, "pA", 3, &count, hex), CV_E_GONE);

	/* 6: the legacy key stays (it may still open old audit records) */
	cv_buf_t legacy;
	cv_buf_init(&legacy, 4096);
	assert_true(raw_meta(f, "key.data", &legacy));
	cv_key_t *lk = NULL;
	assert_int_equal(cv_crypto_key_unwrap(f->master, "key.data", (const uint8_t *)legacy.data, legacy.len, &lk), CV_OK);
	assert_int_equal(cv_key_id(lk), 1);
	cv_key_free(lk);
	cv_buf_release(&legacy);
	cv_buf_init(&legacy, 4096);
	assert_int_equal(cv_store_meta_get(f->s, "key.data", &legacy), CV_OK);
	assert_true(legacy.len > 0);
	cv_buf_release(&legacy);
}

static cv_rc count_erasure(void *arg, const uint8_t owner[CV_OWNER_BYTES], int64_t at_us)
{
	int64_t *n = arg;
	(void)owner;
	assert_int_equal(at_us, 10);
	*n = *n == 0 ? 1 : *n + 1;
	return CV_OK;
}

/* A store made, closed, turned into one from before per-patient keys
 * (craft_legacy) and opened again. */
static void open_legacy(fx_t *f, world_t *w)
{
	open_store(f);
	cv_store_close(f->s);
	f->s = NULL;
	craft_legacy(f, w);
	open_store(f);
}

/* A patient erased while their data is still under the legacy key: the
 * erasure warns (cv_store_legacy_pending), their legacy versions stay
 * readable until the full rotation, which then shreds them (they read as
 * erased, leave the index) and moves everyone else's on. */
static void erasure_before_the_rotation_is_finished_by_it(void **state)
{
	fx_t *f = *state;
	world_t world, *w = &world;
	int64_t count = -1;
	char hex[33];
	open_legacy(f, w);
	assert_true(cv_store_legacy_pending(f->s));
	/* a new version of oA2 gives pA a key of their own */
	lrow_t *oa2 = NULL;
	for (size_t i = 0; i < NROWS; i++)
		if (strcmp(w->rows[i].id, "oA2") == 0)
			oa2 = &w->rows[i];
	assert_non_null(oa2);
	cv_store_write_t wr = { .op = CV_STORE_PUT_VERSION, .type = "Observation", .id = "oA2", .expect_version = 1,
				.updated_us = 5, .owner = "pA", .body = (const uint8_t *)oa2->json, .body_len = strlen(oa2->json) };
	assert_int_equal(cv_store_write_sync(f->s, &wr), CV_OK);
	assert_int_equal(cv_store_erase(f->s, "pA", 10, &count, hex), CV_OK);
	assert_int_equal(count, 1); /* only oA2's new version was under pA's key */
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->s, "Observation", "oA2", 2, &f->pool, &v), CV_E_GONE);
	assert_int_equal(cv_store_read(f->s, "Patient", "pA", 0, &f->pool, &v), CV_OK); /* still legacy: readable */
	/* the full rotation finishes the erasure */
	uint64_t rotated = 0, resealed = 0;
	owner_calls_t calls = { 0 };
	assert_int_equal(cv_store_rotate_keys(f->s, NULL, &rotated), CV_OK);
	assert_int_equal(cv_store_reseal(f->s, owner_fn, &calls, NULL, NULL, &resealed), CV_OK);
	assert_int_equal(resealed, NROWS);
	assert_int_equal(count_format1(f), 0);
	assert_false(cv_store_legacy_pending(f->s));
	for (int pass = 0; pass < 2; pass++) {
		check_erased(f, w); /* every version of pA's reads as erased, the others equal */
		/* pA's current resources are out of the index and marked deleted */
		for (size_t i = 0; i < NROWS; i++) {
			uint8_t kid[CV_KID_BYTES];
			int deleted = 0;
			if (strcmp(w->rows[i].patient, "pA") == 0 && is_current(w, i) && strcmp(w->rows[i].id, "oA2") != 0) {
				assert_true(raw_resource_kid(f, &w->rows[i], kid, &deleted));
				assert_int_equal(deleted, 1);
			}
		}
		reopen(f);
	}
	/* and a second rotation has nothing of pA's left to move */
	assert_int_equal(cv_store_rotate_keys(f->s, NULL, &rotated), CV_OK);
	assert_int_equal(cv_store_reseal(f->s, owner_fn, &calls, NULL, NULL, &resealed), CV_OK);
	check_erased(f, w);
}

/* A patient whose data all dates from before per-patient keys has no key:
 * erasing them stores a destroyed key in its place, so that nothing new is
 * stored for them and the rotation shreds their legacy versions. */
static void legacy_only_patient_is_erasable(void **state)
{
	fx_t *f = *state;
	world_t world, *w = &world;
	int64_t count = -1;
	char hex[33];
	open_legacy(f, w);
	assert_int_equal(cv_store_patient_key_state(f->s, "pA"), CV_E_NOTFOUND);
	assert_int_equal(cv_store_erase_check(f->s, "pA", hex), CV_OK);
	assert_int_equal(cv_store_erase(f->s, "pA", 10, &count, hex), CV_OK);
	assert_int_equal(count, 0); /* nothing under a key of theirs yet */
	assert_int_equal(cv_store_patient_key_state(f->s, "pA"), CV_E_GONE);
	assert_int_equal(cv_store_erase(f->s, "pA", 11, &count, hex), CV_E_GONE);
	const char *obs = "{\"resourceType\":\"Observation\",\"id\":\"oA9\"}";
	cv_store_write_t wr = { .op = CV_STORE_PUT_VERSION, .type = "Observation", .id = "oA9", .updated_us = 5,
				.owner = "pA", .body = (const uint8_t *)obs, .body_len = strlen(obs) };
	assert_int_equal(cv_store_write_sync(f->s, &wr), CV_E_GONE); /* nothing new for an erased patient */
	uint64_t rotated = 0, resealed = 0;
	owner_calls_t calls = { 0 };
	assert_int_equal(cv_store_rotate_keys(f->s, NULL, &rotated), CV_OK);
	assert_int_equal(cv_store_reseal(f->s, owner_fn, &calls, NULL, NULL, &resealed), CV_OK);
	check_erased(f, w);
	reopen(f);
	check_erased(f, w);
	/* the erasure is in the store's records: the ledger can be rebuilt from them */
	assert_int_equal(cv_store_erasures(f->s, count_erasure, &count), CV_OK);
	assert_int_equal(count, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(legacy_store_reseals_then_erases, setup, teardown),
		cmocka_unit_test_setup_teardown(erasure_before_the_rotation_is_finished_by_it, setup, teardown),
		cmocka_unit_test_setup_teardown(legacy_only_patient_is_erasable, setup, teardown),
	};
	return cmocka_run_group_tests_name("legacy data key on SQLite", tests, NULL, NULL);
}
