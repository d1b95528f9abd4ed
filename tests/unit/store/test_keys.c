/*
 * test_keys.c - per-patient data keys and erasure by crypto-shredding
 * (store.h, "data keys"): each patient's resources are sealed under their
 * own key, the rest under the shared key; erasing a patient destroys their
 * keys, so nothing sealed under them opens again, through the store or
 * with any key left in the database (checked on the raw tables), nor in
 * another handle on the same data after the erasure epoch moves, and a
 * handle with the key still cached cannot write for them; erasure follows
 * the key that sealed each version when resources change compartment; the
 * key cache stays bounded; concurrent writers (and groups) of a new patient
 * share one key; a wrapped key moved to another row does not open; copying
 * a store to PostgreSQL carries the keys; a new key whose first write is in
 * flight survives an erasure epoch change; an overlong id is refused.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../testpg.h"
#include "crypto/crypto.h"
#include "store/store.h"

/* With CV_TEST_PG_BASE (a postgresql:// URL of a throwaway cluster, as
 * scripts/test starts one) every test runs a second time on PostgreSQL, each
 * in a database of its own. copy_base is the same URL, for the copy test
 * (which runs in the SQLite pass: it copies an embedded store). */
static const char *pg_base;
static const char *copy_base;

typedef struct fx {
	char dir[64];
	cv_key_t *master;
	cv_store_t *s;
	cv_pool_t pool;
	char url[1024]; /* the PostgreSQL database, or "" */
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	char err[256], key[128];
	snprintf(f->dir, sizeof f->dir, "/tmp/cv-keys-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(key, sizeof key, "%s/master.key", f->dir);
	assert_int_equal(cv_crypto_init(err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_create(key, err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_load(key, &f->master, err, sizeof err), CV_OK);
	if (pg_base)
		assert_int_equal(cv_test_pg_database(pg_base, "cv_unit_keys", f->url, sizeof f->url), 0);
	assert_int_equal(cv_store_open(f->dir, f->url, 2, f->master, &f->s, err, sizeof err), CV_OK);
	cv_pool_init(&f->pool, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	char cmd[128];
	cv_store_set_key_cache(CV_STORE_KEY_CACHE); /* key_cache_is_bounded changes it */
	cv_pool_release(&f->pool);
	cv_store_close(f->s);
	cv_key_free(f->master);
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* Closes the store and opens it again (same data, same master key). */
static void reopen(fx_t *f)
{
	char err[256];
	cv_store_close(f->s);
	f->s = NULL;
	assert_int_equal(cv_store_open(f->dir, f->url, 2, f->master, &f->s, err, sizeof err), CV_OK);
}

/* Writes a version of type/id sealed under `owner`'s key (NULL: the shared key),
 * with one HASH index entry "code" = code when code is given. */
static cv_rc put(fx_t *f, const char *type, const char *id, int64_t expect, const char *owner, const char *body,
		 const char *code)
{
	cv_ix_entry_t ix = { .kind = CV_IX_HASH, .param = "code", .key = code, .key_len = code ? strlen(code) : 0 };
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = type, .id = id, .expect_version = expect,
			       .updated_us = 1000000 * (expect + 1), .owner = owner, .body = (const uint8_t *)body,
			       .body_len = strlen(body), .index = code ? &ix : NULL, .nindex = code ? 1 : 0 };
	return cv_store_write_sync(f->s, &w);
}

/* Reads type/id at version (0: current) and checks its body; returns its seq. */
static int64_t read_equal(fx_t *f, const char *type, const char *id, int64_t version, const char *body)
{
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->s, type, id, version, &f->pool, &v), CV_OK);
	assert_string_equal((const char *)v.body, body);
	assert_int_equal(v.body_len, strlen(body));
	if (version)
		assert_int_equal(v.version, version);
	return v.seq;
}

static cv_rc read_rc(fx_t *f, const char *type, const char *id, int64_t version)
{
	cv_store_version_t v;
	return cv_store_read(f->s, type, id, version, &f->pool, &v);
}

static void owner_hex(fx_t *f, const char *patient, char hex[2 * CV_OWNER_BYTES + 1])
{
	uint8_t owner[CV_OWNER_BYTES];
	cv_store_patient_owner(f->s, patient, owner);
	cv_crypto_hex(owner, CV_OWNER_BYTES, hex);
}

/* ---- the raw database (SQLite file, or PostgreSQL through psql) ----------
 * Queries return one text column; binary columns go through encode(x, 'hex'),
 * which PostgreSQL has and which is registered on the SQLite connection. */

static void sql_encode(sqlite3_context *c, int n, sqlite3_value **v)
{
	int len = sqlite3_value_bytes(v[0]);
	const uint8_t *p = sqlite3_value_blob(v[0]);
	char *hex = malloc(2 * (size_t)len + 1);
	hex[0] = '\0';
	if (len > 0)
		cv_crypto_hex(p, (size_t)len, hex);
	sqlite3_result_text(c, hex, 2 * len, free);
}

typedef void (*line_fn)(void *arg, const char *text);

/* Runs sql on the fixture's database; fn gets each row's first column as text. */
static void raw_sql(fx_t *f, const char *sql, line_fn fn, void *arg)
{
	if (f->url[0]) {
		char *cmd = malloc(strlen(sql) + 2048), *line = malloc(1 << 16);
		snprintf(cmd, strlen(sql) + 2048, "psql '%s' -X -At -v ON_ERROR_STOP=1 -c \"%s\"", f->url, sql);
		FILE *p = popen(cmd, "r");
		assert_non_null(p);
		while (fgets(line, 1 << 16, p)) {
			line[strcspn(line, "\n")] = '\0';
			if (fn)
				fn(arg, line);
		}
		assert_int_equal(pclose(p), 0);
		free(cmd);
		free(line);
		return;
	}
	char path[128];
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	snprintf(path, sizeof path, "%s/store.db", f->dir);
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	assert_int_equal(sqlite3_create_function(db, "encode", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
						 sql_encode, NULL, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW)
		if (fn)
			fn(arg, sqlite3_column_text(st, 0) ? (const char *)sqlite3_column_text(st, 0) : "");
	assert_int_equal(s, SQLITE_DONE);
	sqlite3_finalize(st);
	assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void take_int(void *arg, const char *text)
{
	*(long long *)arg = strtoll(text, NULL, 10);
}

static long long raw_count(fx_t *f, const char *sql)
{
	long long n = -1;
	raw_sql(f, sql, take_int, &n);
	return n;
}

/* Hex text of exactly 2n digits into n bytes. */
static void unhex(const char *hex, size_t hexlen, uint8_t *out, size_t n)
{
	char tmp[4096];
	assert_int_equal(hexlen, 2 * n);
	assert_true(hexlen < sizeof tmp);
	if (n == 0)
		return;
	memcpy(tmp, hex, hexlen);
	tmp[hexlen] = '\0';
	assert_int_equal(cv_crypto_unhex(tmp, out, n), CV_OK);
}

/* One row of cv_version as stored. */
typedef struct vrow {
	char type[32];
	char rid[80];
	int64_t version;
	uint8_t body[1024]; /* sealed */
	size_t body_len;
	bool found;
} vrow_t;

static void take_vrow(void *arg, const char *text)
{
	vrow_t *v = arg;
	const char *p1 = strchr(text, '|'), *p2 = p1 ? strchr(p1 + 1, '|') : NULL, *p3 = p2 ? strchr(p2 + 1, '|') : NULL;
	assert_non_null(p3);
	snprintf(v->type, sizeof v->type, "%.*s", (int)(p1 - text), text);
	snprintf(v->rid, sizeof v->rid, "%.*s", (int)(p2 - p1 - 1), p1 + 1);
	v->version = strtoll(p2 + 1, NULL, 10);
	v->body_len = strlen(p3 + 1) / 2;
	assert_true(v->body_len <= sizeof v->body);
	unhex(p3 + 1, strlen(p3 + 1), v->body, v->body_len);
	v->found = true;
}

/* The stored row of write seq. */
static void version_row(fx_t *f, int64_t seq, vrow_t *out)
{
	char sql[256];
	memset(out, 0, sizeof *out);
	snprintf(sql, sizeof sql, "SELECT type || '|' || rid || '|' || version || '|' || encode(body, 'hex') "
		 "FROM cv_version WHERE seq = %lld", (long long)seq);
	raw_sql(f, sql, take_vrow, out);
	assert_true(out->found);
}

/* The key id a stored version names. */
static void kid_of_seq(fx_t *f, int64_t seq, uint8_t kid[CV_KID_BYTES])
{
	vrow_t v;
	version_row(f, seq, &v);
	assert_int_equal(cv_crypto_blob_kid(v.body, v.body_len, kid), CV_OK);
}

/* One row of cv_key as stored. */
typedef struct krow {
	uint8_t kid[CV_KID_BYTES];
	uint8_t owner[CV_OWNER_BYTES];
	char owner_hex[2 * CV_OWNER_BYTES + 1];
	int64_t version;
	int state;
	uint8_t wrapped[512];
	size_t wrapped_len;
} krow_t;

typedef struct krows {
	krow_t r[64];
	size_t n;
} krows_t;

static void take_krow(void *arg, const char *text)
{
	krows_t *k = arg;
	assert_true(k->n < 64);
	krow_t *r = &k->r[k->n++];
	const char *p[4];
	p[0] = strchr(text, '|');
	for (int i = 1; i < 4; i++)
		p[i] = p[i - 1] ? strchr(p[i - 1] + 1, '|') : NULL;
	assert_non_null(p[3]);
	unhex(text, (size_t)(p[0] - text), r->kid, CV_KID_BYTES);
	unhex(p[0] + 1, (size_t)(p[1] - p[0] - 1), r->owner, CV_OWNER_BYTES);
	cv_crypto_hex(r->owner, CV_OWNER_BYTES, r->owner_hex);
	r->version = strtoll(p[1] + 1, NULL, 10);
	r->state = (int)strtol(p[2] + 1, NULL, 10);
	r->wrapped_len = strlen(p[3] + 1) / 2;
	assert_true(r->wrapped_len <= sizeof r->wrapped);
	unhex(p[3] + 1, strlen(p[3] + 1), r->wrapped, r->wrapped_len);
}

/* Every row of the key table. */
static void key_rows(fx_t *f, krows_t *out)
{
	out->n = 0;
	raw_sql(f, "SELECT encode(kid, 'hex') || '|' || encode(owner, 'hex') || '|' || version || '|' || state || "
		   "'|' || encode(wrapped, 'hex') FROM cv_key ORDER BY owner, version", take_krow, out);
}

static const krow_t *key_row_of_kid(const krows_t *k, const uint8_t kid[CV_KID_BYTES])
{
	for (size_t i = 0; i < k->n; i++)
		if (memcmp(k->r[i].kid, kid, CV_KID_BYTES) == 0)
			return &k->r[i];
	return NULL;
}

/* The additional data binding a wrapped key to its row (keys.c, purpose_of). */
static void key_purpose(const krow_t *r, char out[128])
{
	char kid[2 * CV_KID_BYTES + 1];
	cv_crypto_hex(r->kid, CV_KID_BYTES, kid);
	snprintf(out, 128, "key|%s|%s|%lld", kid, r->owner_hex, (long long)r->version);
}

/* ---- searching ------------------------------------------------------------ */

typedef struct ids {
	char s[512];
	size_t n;
} ids_t;

static cv_rc take_id(void *arg, const cv_store_hit_t *h)
{
	ids_t *c = arg;
	const char *p = strstr((const char *)h->v.body, "\"id\":\"");
	assert_non_null(p);
	size_t len = strlen(c->s);
	snprintf(c->s + len, sizeof c->s - len, "%s%.*s", c->n ? "," : "", (int)strcspn(p + 6, "\""), p + 6);
	c->n++;
	return CV_OK;
}

/* The ids of the type's resources with index entry code = key, in row order. */
static const char *find_code(fx_t *f, const char *type, const char *key)
{
	static ids_t got;
	cv_store_term_t t = { .kind = CV_TERM_HASH, .param = "code", .key = key, .key_len = strlen(key) };
	cv_store_clause_t c = { .n = 1, .terms = &t };
	cv_store_query_t q = { .type = type, .nclauses = 1, .clauses = &c, .limit = 50 };
	memset(&got, 0, sizeof got);
	assert_int_equal(cv_store_search(f->s, &q, &f->pool, take_id, &got), CV_OK);
	uint64_t count = 99;
	assert_int_equal(cv_store_count(f->s, &q, &count), CV_OK);
	assert_int_equal(count, got.n);
	return got.s;
}

typedef struct hist {
	int n;
	char bodies[16][160];
} hist_t;

static cv_rc take_version(void *arg, const cv_store_version_t *v)
{
	hist_t *h = arg;
	if (h->n < 16)
		snprintf(h->bodies[h->n], sizeof h->bodies[h->n], "%s", (const char *)v->body);
	h->n++;
	return CV_OK;
}

static int history_count(fx_t *f, const char *type, const char *id, hist_t *h)
{
	cv_store_history_query_t q = { .type = type, .id = id, .limit = 100 };
	memset(h, 0, sizeof *h);
	assert_int_equal(cv_store_history(f->s, &q, &f->pool, take_version, h), CV_OK);
	return h->n;
}

static const char *obs(const char *id, const char *patient, int v)
{
	static char buf[4][160];
	static int i;
	char *b = buf[i++ % 4];
	snprintf(b, 160, "{\"resourceType\":\"Observation\",\"id\":\"%s\",\"subject\":{\"reference\":\"Patient/%s\"},"
		 "\"v\":%d}", id, patient, v);
	return b;
}

/* ---- 1: one key per patient ------------------------------------------------ */

static void patients_get_their_own_keys(void **state)
{
	fx_t *f = *state;
	const char *o1 = obs("o1", "p1", 1), *o2 = obs("o2", "p2", 1);
	const char *x = "{\"resourceType\":\"Practitioner\",\"id\":\"x\"}";
	const char *y = "{\"resourceType\":\"Organization\",\"id\":\"y\"}";
	char o3[160], o1b[160];
	snprintf(o3, sizeof o3, "%s", obs("o3", "p1", 1));
	assert_int_equal(put(f, "Observation", "o1", 0, "p1", o1, NULL), CV_OK);
	assert_int_equal(put(f, "Observation", "o2", 0, "p2", o2, NULL), CV_OK);
	assert_int_equal(put(f, "Practitioner", "x", 0, NULL, x, NULL), CV_OK);
	assert_int_equal(put(f, "Organization", "y", 0, NULL, y, NULL), CV_OK);
	assert_int_equal(put(f, "Observation", "o3", 0, "p1", o3, NULL), CV_OK);
	uint8_t k1[CV_KID_BYTES], k2[CV_KID_BYTES], kx[CV_KID_BYTES], ky[CV_KID_BYTES], k3[CV_KID_BYTES];
	kid_of_seq(f, read_equal(f, "Observation", "o1", 0, o1), k1);
	kid_of_seq(f, read_equal(f, "Observation", "o2", 0, o2), k2);
	kid_of_seq(f, read_equal(f, "Practitioner", "x", 0, x), kx);
	kid_of_seq(f, read_equal(f, "Organization", "y", 0, y), ky);
	kid_of_seq(f, read_equal(f, "Observation", "o3", 0, o3), k3);
	assert_memory_not_equal(k1, k2, CV_KID_BYTES);
	assert_memory_not_equal(k1, kx, CV_KID_BYTES);
	assert_memory_not_equal(k2, kx, CV_KID_BYTES);
	assert_memory_equal(kx, ky, CV_KID_BYTES); /* everything in no compartment: the shared key */
	assert_memory_equal(k1, k3, CV_KID_BYTES); /* one key per patient, not per resource */
	/* the key table: the shared and audit keys, p1's, p2's; each row names its owner */
	krows_t rows;
	char h1[33], h2[33];
	owner_hex(f, "p1", h1);
	owner_hex(f, "p2", h2);
	key_rows(f, &rows);
	assert_int_equal(rows.n, 4);
	const krow_t *r1 = key_row_of_kid(&rows, k1), *r2 = key_row_of_kid(&rows, k2), *rx = key_row_of_kid(&rows, kx);
	assert_non_null(r1);
	assert_non_null(r2);
	assert_non_null(rx);
	assert_string_equal(r1->owner_hex, h1);
	assert_string_equal(r2->owner_hex, h2);
	assert_string_not_equal(rx->owner_hex, h1);
	assert_string_not_equal(rx->owner_hex, h2);
	for (size_t i = 0; i < rows.n; i++) {
		assert_int_equal(rows.r[i].state, CV_KEY_ACTIVE);
		assert_int_equal(rows.r[i].version, 1);
		assert_true(rows.r[i].wrapped_len > CV_KEY_BYTES);
	}
	/* owners are stored blinded, 16 bytes each (no patient id) */
	assert_int_equal(raw_count(f, "SELECT count(*) FROM cv_key WHERE length(owner) <> 16"), 0);
	/* o1 moves into p2's compartment: version 2 is sealed under p2's key,
	 * version 1 still opens under p1's */
	snprintf(o1b, sizeof o1b, "%s", obs("o1", "p2", 2));
	assert_int_equal(put(f, "Observation", "o1", 1, "p2", o1b, NULL), CV_OK);
	uint8_t kv2[CV_KID_BYTES], kv1[CV_KID_BYTES];
	kid_of_seq(f, read_equal(f, "Observation", "o1", 2, o1b), kv2);
	kid_of_seq(f, read_equal(f, "Observation", "o1", 1, o1), kv1);
	assert_memory_equal(kv2, k2, CV_KID_BYTES);
	assert_memory_equal(kv1, k1, CV_KID_BYTES);
	read_equal(f, "Observation", "o1", 0, o1b);
	/* and with nothing cached: every key unwrapped from its row */
	reopen(f);
	read_equal(f, "Observation", "o1", 1, o1);
	read_equal(f, "Observation", "o1", 2, o1b);
	read_equal(f, "Observation", "o2", 0, o2);
	read_equal(f, "Practitioner", "x", 0, x);
	key_rows(f, &rows);
	assert_int_equal(rows.n, 4); /* reopening made no new keys */
}

/* ---- 2: erasure ----------------------------------------------------------- */

typedef struct world {
	char pat1[160], a1[160], b1[160], b2[160], q1[160], x1[160];
} world_t;

/* p1: Patient/p1, Observations a and b (b updated: 2 versions), all found
 * by code c:1 (the patient by name n:zed); p2: Observation q; x: shared. */
static void build_world(fx_t *f, world_t *w)
{
	snprintf(w->pat1, sizeof w->pat1, "{\"resourceType\":\"Patient\",\"id\":\"p1\",\"name\":\"Zed\"}");
	snprintf(w->a1, sizeof w->a1, "%s", obs("a", "p1", 1));
	snprintf(w->b1, sizeof w->b1, "%s", obs("b", "p1", 1));
	snprintf(w->b2, sizeof w->b2, "%s", obs("b", "p1", 2));
	snprintf(w->q1, sizeof w->q1, "%s", obs("q", "p2", 1));
	snprintf(w->x1, sizeof w->x1, "{\"resourceType\":\"Practitioner\",\"id\":\"x\"}");
	assert_int_equal(put(f, "Patient", "p1", 0, "p1", w->pat1, "n:zed"), CV_OK);
	assert_int_equal(put(f, "Observation", "a", 0, "p1", w->a1, "c:1"), CV_OK);
	assert_int_equal(put(f, "Observation", "b", 0, "p1", w->b1, "c:1"), CV_OK);
	assert_int_equal(put(f, "Observation", "b", 1, "p1", w->b2, "c:1"), CV_OK);
	assert_int_equal(put(f, "Observation", "q", 0, "p2", w->q1, "c:1"), CV_OK);
	assert_int_equal(put(f, "Practitioner", "x", 0, NULL, w->x1, "c:1"), CV_OK);
}

/* What an erasure of p1 must leave behind, whatever the handle. */
static void check_erased(fx_t *f, const world_t *w)
{
	hist_t h;
	assert_int_equal(read_rc(f, "Patient", "p1", 0), CV_E_GONE);
	assert_int_equal(read_rc(f, "Patient", "p1", 1), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "a", 0), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "a", 1), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "b", 0), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "b", 1), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "b", 2), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "b", 3), CV_E_NOTFOUND);
	assert_int_equal(history_count(f, "Observation", "a", &h), 0);
	assert_int_equal(history_count(f, "Observation", "b", &h), 0);
	assert_int_equal(history_count(f, "Patient", "p1", &h), 0);
	assert_int_equal(history_count(f, "Patient", NULL, &h), 0);
	assert_int_equal(history_count(f, "Observation", NULL, &h), 1);
	assert_string_equal(h.bodies[0], w->q1);
	assert_int_equal(history_count(f, NULL, NULL, &h), 2); /* q and x */
	for (int i = 0; i < h.n; i++)
		assert_null(strstr(h.bodies[i], "Patient/p1"));
	assert_string_equal(find_code(f, "Observation", "c:1"), "q");
	assert_string_equal(find_code(f, "Patient", "n:zed"), "");
	assert_string_equal(find_code(f, "Practitioner", "c:1"), "x");
	read_equal(f, "Observation", "q", 0, w->q1);
	read_equal(f, "Practitioner", "x", 0, w->x1);
	/* nothing new is sealed for an erased patient, nor an erased resource updated */
	assert_int_equal(put(f, "Observation", "new", 0, "p1", obs("new", "p1", 1), "c:1"), CV_E_GONE);
	assert_int_equal(put(f, "Observation", "a", 1, "p1", obs("a", "p1", 2), "c:1"), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "new", 0), CV_E_NOTFOUND);
	assert_string_equal(find_code(f, "Observation", "c:1"), "q");
	int64_t n = -1;
	char hex[33];
	assert_int_equal(cv_store_erase(f->s, "p1", 5, &n, hex), CV_E_GONE);
	assert_int_equal(n, -1);
	assert_int_equal(cv_store_erase(f->s, "never-written", 5, &n, hex), CV_E_NOTFOUND);
}

static void erasure_makes_a_patient_unreadable(void **state)
{
	fx_t *f = *state;
	world_t w;
	build_world(f, &w);
	assert_string_equal(find_code(f, "Observation", "c:1"), "a,b,q");
	assert_string_equal(find_code(f, "Patient", "n:zed"), "p1");
	read_equal(f, "Observation", "b", 1, w.b1);
	int64_t count = -1;
	char hex[33] = "", want[33];
	assert_int_equal(cv_store_erase(f->s, "p1", 1234567, &count, hex), CV_OK);
	assert_int_equal(count, 3); /* Patient/p1, a, b */
	owner_hex(f, "p1", want);
	assert_string_equal(hex, want);
	/* the erasure's record */
	char name[64];
	cv_buf_t rec;
	cv_buf_init(&rec, 64);
	snprintf(name, sizeof name, "erased.%s", want);
	assert_int_equal(cv_store_meta_get(f->s, name, &rec), CV_OK);
	assert_int_equal(rec.len, 7);
	assert_memory_equal(rec.data, "1234567", 7);
	cv_buf_release(&rec);
	check_erased(f, &w);
	/* p2 is untouched and can still be erased */
	reopen(f);
	check_erased(f, &w);
	assert_int_equal(cv_store_erase(f->s, "p2", 9, &count, hex), CV_OK);
	assert_int_equal(count, 1);
	assert_int_equal(read_rc(f, "Observation", "q", 0), CV_E_GONE);
	assert_string_equal(find_code(f, "Observation", "c:1"), "");
	read_equal(f, "Practitioner", "x", 0, w.x1);
}

/* ---- 3: the erased ciphertexts, attacked with every key left ---------------- */

/* Searches a file for bytes. */
static int file_has(const char *path, const void *needle, size_t n)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return 0;
	size_t cap = 1 << 20, len = 0, r;
	char *buf = malloc(cap);
	int found = 0;
	while (!found && (r = fread(buf + len, 1, cap - len, fp)) > 0) {
		len += r;
		found = memmem(buf, len, needle, n) != NULL;
		if (len > n) {
			memmove(buf, buf + len - n, n);
			len = n;
		}
	}
	free(buf);
	fclose(fp);
	return found;
}

static int store_files_have(fx_t *f, const void *needle, size_t n)
{
	char path[128];
	snprintf(path, sizeof path, "%s/store.db", f->dir);
	int found = file_has(path, needle, n);
	snprintf(path, sizeof path, "%s/store.db-wal", f->dir);
	return found || file_has(path, needle, n);
}

/* Tries to open a captured ciphertext with k: as it is, and with its key id
 * replaced by k's (so that the tag, not the id check, decides). 1 if either opens. */
static int opens_with(const cv_key_t *k, const vrow_t *v)
{
	char ad[256];
	int adlen = snprintf(ad, sizeof ad, "%s|%s|%lld", v->type, v->rid, (long long)v->version);
	uint8_t kid[CV_KID_BYTES], blob[1100];
	cv_buf_t pt;
	cv_buf_init(&pt, 2048);
	int opened = cv_crypto_open(k, ad, (size_t)adlen, v->body, v->body_len, &pt) == CV_OK;
	cv_key_kid(k, kid);
	static const uint8_t zero[12];
	size_t len;
	if (memcmp(kid, zero, sizeof zero) != 0) { /* a format-2 key */
		memcpy(blob, v->body, v->body_len);
		memcpy(blob + 3, kid, CV_KID_BYTES);
		len = v->body_len;
	} else { /* a format-1 key: the same nonce, ciphertext and tag under a format-1 header */
		blob[0] = 'C', blob[1] = 'V', blob[2] = 1;
		memcpy(blob + 3, kid + 12, 4);
		memcpy(blob + 7, v->body + 3 + CV_KID_BYTES, v->body_len - 3 - CV_KID_BYTES);
		len = v->body_len - CV_KID_BYTES + 4;
	}
	opened |= cv_crypto_open(k, ad, (size_t)adlen, blob, len, &pt) == CV_OK;
	cv_buf_release(&pt);
	return opened;
}

typedef struct names {
	char n[32][96];
	size_t count;
} names_t;

static void take_name(void *arg, const char *text)
{
	names_t *m = arg;
	if (m->count < 32)
		snprintf(m->n[m->count++], sizeof m->n[0], "%s", text);
}

static void erased_ciphertexts_open_with_no_key_left(void **state)
{
	fx_t *f = *state;
	world_t w;
	build_world(f, &w);
	/* what an attacker with a copy of the database takes before the erasure:
	 * every sealed version of p1, and p1's wrapped key */
	struct { const char *type, *id; int64_t version; const char *body; } p1v[] = {
		{ "Patient", "p1", 1, w.pat1 }, { "Observation", "a", 1, w.a1 },
		{ "Observation", "b", 1, w.b1 }, { "Observation", "b", 2, w.b2 },
	};
	enum { NV = sizeof p1v / sizeof p1v[0] };
	vrow_t *v = calloc(NV, sizeof *v);
	for (size_t i = 0; i < NV; i++)
		version_row(f, read_equal(f, p1v[i].type, p1v[i].id, p1v[i].version, p1v[i].body), &v[i]);
	char h1[33];
	owner_hex(f, "p1", h1);
	krows_t *rows = calloc(1, sizeof *rows);
	key_rows(f, rows);
	krow_t p1key = { .version = 0 };
	for (size_t i = 0; i < rows->n; i++)
		if (strcmp(rows->r[i].owner_hex, h1) == 0)
			p1key = rows->r[i];
	assert_int_equal(p1key.version, 1);
	assert_true(p1key.wrapped_len > CV_KEY_BYTES);
	/* control: with that key, the reconstructed additional data opens them
	 * (so the failures below are the keys', not the test's) */
	char purpose[128];
	cv_key_t *k = NULL;
	key_purpose(&p1key, purpose);
	assert_int_equal(cv_crypto_key_unwrap(f->master, purpose, p1key.wrapped, p1key.wrapped_len, &k), CV_OK);
	for (size_t i = 0; i < NV; i++)
		assert_true(opens_with(k, &v[i]));
	cv_key_free(k);
	if (!f->url[0]) /* control: the wrapped key is in the files before the erasure */
		assert_true(store_files_have(f, p1key.wrapped, p1key.wrapped_len));

	int64_t count = 0;
	char hex[33];
	assert_int_equal(cv_store_erase(f->s, "p1", 77, &count, hex), CV_OK);
	assert_int_equal(count, 3);

	/* p1's row: destroyed, its wrapped key gone */
	key_rows(f, rows);
	size_t destroyed = 0, tried = 0;
	for (size_t i = 0; i < rows->n; i++) {
		const krow_t *r = &rows->r[i];
		if (strcmp(r->owner_hex, h1) == 0) {
			destroyed++;
			assert_int_equal(r->state, CV_KEY_DESTROYED);
			assert_int_equal(r->wrapped_len, 0);
			continue;
		}
		assert_int_equal(r->state, CV_KEY_ACTIVE);
		/* every key left unwraps with the master key; none opens p1's versions */
		key_purpose(r, purpose);
		k = NULL;
		assert_int_equal(cv_crypto_key_unwrap(f->master, purpose, r->wrapped, r->wrapped_len, &k), CV_OK);
		for (size_t j = 0; j < NV; j++)
			assert_false(opens_with(k, &v[j]));
		cv_key_free(k);
		tried++;
	}
	assert_int_equal(destroyed, 1);
	assert_int_equal(tried, 3); /* shared, audit, p2 */
	/* nor do the wrapped keys in meta (the index key; a legacy data key if any) */
	names_t *meta = calloc(1, sizeof *meta);
	raw_sql(f, "SELECT name FROM cv_meta WHERE name LIKE 'key.%' ORDER BY name", take_name, meta);
	assert_true(meta->count >= 1);
	for (size_t i = 0; i < meta->count; i++) {
		cv_buf_t blob;
		cv_buf_init(&blob, 4096);
		assert_int_equal(cv_store_meta_get(f->s, meta->n[i], &blob), CV_OK);
		k = NULL;
		assert_int_equal(cv_crypto_key_unwrap(f->master, meta->n[i], (uint8_t *)blob.data, blob.len, &k), CV_OK);
		for (size_t j = 0; j < NV; j++)
			assert_false(opens_with(k, &v[j]));
		cv_key_free(k);
		cv_buf_release(&blob);
	}
	/* nor the master key itself */
	for (size_t j = 0; j < NV; j++)
		assert_false(opens_with(f->master, &v[j]));
	/* the wrapped key's bytes are gone from the files (secure_delete and a
	 * truncating checkpoint: not in a free page, not in the WAL) */
	if (!f->url[0])
		assert_false(store_files_have(f, p1key.wrapped, p1key.wrapped_len));
	free(meta);
	free(rows);
	free(v);
}

/* ---- 4: another handle learns of the erasure ------------------------------ */

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void other_handle_sees_the_erasure(void **state)
{
	fx_t *f = *state;
	const char *a = obs("a", "p1", 1), *q = obs("q", "p2", 1);
	char err[256];
	assert_int_equal(put(f, "Observation", "a", 0, "p1", a, NULL), CV_OK);
	assert_int_equal(put(f, "Observation", "q", 0, "p2", q, NULL), CV_OK);
	/* a second handle on the same data (another process, another node), p1's key cached */
	fx_t g = *f;
	g.s = NULL;
	cv_pool_init(&g.pool, 0);
	assert_int_equal(cv_store_open(f->dir, f->url, 2, f->master, &g.s, err, sizeof err), CV_OK);
	read_equal(&g, "Observation", "a", 0, a);
	read_equal(&g, "Observation", "q", 0, q);
	size_t cached = cv_store_keys_cached(g.s);
	assert_true(cached >= 4); /* shared, audit, p1, p2 */
	int64_t n = 0;
	char hex[33];
	assert_int_equal(cv_store_erase(f->s, "p1", 1, &n, hex), CV_OK);
	assert_int_equal(n, 1);
	int64_t t0 = mono_ms(), gone_after = -1;
	cv_rc rc = CV_OK;
	while (mono_ms() - t0 <= 3000) {
		rc = read_rc(&g, "Observation", "a", 0);
		if (rc == CV_E_GONE) {
			gone_after = mono_ms() - t0;
			break;
		}
		assert_int_equal(rc, CV_OK); /* the cached key, until the epoch is read again */
		usleep(100 * 1000);
	}
	assert_int_equal(rc, CV_E_GONE);
	assert_true(gone_after >= 0 && gone_after <= 1500);
	/* the other handle dropped its patient keys; p2 still reads, p1 takes no writes */
	read_equal(&g, "Observation", "q", 0, q);
	assert_int_equal(put(&g, "Observation", "a2", 0, "p1", obs("a2", "p1", 1), NULL), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "a", 0), CV_E_GONE);
	cv_store_close(g.s);
	cv_pool_release(&g.pool);
}

/* ---- 5: the key cache is bounded ------------------------------------------- */

static void key_cache_is_bounded(void **state)
{
	fx_t *f = *state;
	char id[16], pat[16];
	cv_store_set_key_cache(16); /* teardown restores the default */
	reopen(f);
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof id, "o%d", i);
		snprintf(pat, sizeof pat, "pat%d", i);
		assert_int_equal(put(f, "Observation", id, 0, pat, obs(id, pat, i), NULL), CV_OK);
		assert_true(cv_store_keys_cached(f->s) <= 20);
	}
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < 200; i++) {
			snprintf(id, sizeof id, "o%d", i);
			snprintf(pat, sizeof pat, "pat%d", i);
			read_equal(f, "Observation", id, 0, obs(id, pat, i));
			assert_true(cv_store_keys_cached(f->s) <= 20);
		}
	assert_true(cv_store_keys_cached(f->s) >= 2); /* the system keys stay */
	assert_int_equal(raw_count(f, "SELECT count(*) FROM cv_key"), 202);
	/* evicted keys are found again for writing too: no second key for a patient */
	assert_int_equal(put(f, "Observation", "o0b", 0, "pat0", obs("o0b", "pat0", 0), NULL), CV_OK);
	assert_int_equal(raw_count(f, "SELECT count(*) FROM cv_key"), 202);
}

/* ---- 6: concurrent writers of a new patient share one key ------------------- */

typedef struct writer {
	fx_t *f;
	int id;
	int ok;
	cv_rc last;
} writer_t;

static void *write_many(void *arg)
{
	writer_t *w = arg;
	char id[32];
	for (int i = 0; i < 50; i++) {
		snprintf(id, sizeof id, "w%d-%d", w->id, i);
		cv_store_write_t x = { .op = CV_STORE_PUT_VERSION, .type = "Observation", .id = id, .updated_us = 1,
				       .owner = "crowd", .body = (const uint8_t *)id, .body_len = strlen(id) };
		cv_rc rc = cv_store_write_sync(w->f->s, &x);
		if (rc == CV_OK)
			w->ok++;
		else
			w->last = rc;
	}
	return NULL;
}

static void concurrent_writers_share_one_key(void **state)
{
	fx_t *f = *state;
	pthread_t t[8];
	writer_t w[8];
	for (int i = 0; i < 8; i++) {
		w[i] = (writer_t){ .f = f, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, write_many, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(w[i].last, CV_OK);
		assert_int_equal(w[i].ok, 50);
	}
	char id[32], hex[33], sql[256];
	for (int i = 0; i < 8; i++)
		for (int j = 0; j < 50; j++) {
			snprintf(id, sizeof id, "w%d-%d", i, j);
			read_equal(f, "Observation", id, 0, id);
		}
	owner_hex(f, "crowd", hex);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM cv_key WHERE encode(owner, 'hex') = '%s'", hex);
	assert_int_equal(raw_count(f, sql), 1);
	assert_int_equal(raw_count(f, "SELECT count(DISTINCT encode(substr(body, 4, 16), 'hex')) FROM cv_version "
				      "WHERE type = 'Observation'"), 1);
	assert_int_equal(raw_count(f, "SELECT count(*) FROM cv_version WHERE type = 'Observation'"), 400);
	/* and the erasure takes all of them */
	int64_t n = 0;
	assert_int_equal(cv_store_erase(f->s, "crowd", 1, &n, hex), CV_OK);
	assert_int_equal(n, 400);
	assert_int_equal(read_rc(f, "Observation", "w3-17", 0), CV_E_GONE);
}

/* ---- 7: a wrapped key moved onto another row does not open ------------------ */

static void moved_wrapped_key_does_not_open(void **state)
{
	fx_t *f = *state;
	const char *a = obs("a", "p1", 1), *q = obs("q", "p2", 1);
	char h1[33], h2[33], sql[512];
	assert_int_equal(put(f, "Observation", "a", 0, "p1", a, NULL), CV_OK);
	assert_int_equal(put(f, "Observation", "q", 0, "p2", q, NULL), CV_OK);
	owner_hex(f, "p1", h1);
	owner_hex(f, "p2", h2);
	cv_store_close(f->s);
	f->s = NULL;
	/* the attacker has write access to the database: p2's wrapped key onto p1's row */
	snprintf(sql, sizeof sql, "UPDATE cv_key SET wrapped = (SELECT wrapped FROM cv_key WHERE "
		 "encode(owner, 'hex') = '%s') WHERE encode(owner, 'hex') = '%s'", h2, h1);
	raw_sql(f, sql, NULL, NULL);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM cv_key WHERE wrapped = (SELECT wrapped FROM cv_key "
		 "WHERE encode(owner, 'hex') = '%s')", h2);
	assert_int_equal(raw_count(f, sql), 2); /* the swap took */
	reopen(f);
	cv_store_version_t v = { .body = NULL };
	cv_rc rc = cv_store_read(f->s, "Observation", "a", 0, &f->pool, &v);
	assert_int_not_equal(rc, CV_OK);
	assert_int_equal(rc, CV_E_CRYPTO);
	/* no key for p1 can be had: nothing new is sealed for them either */
	assert_int_not_equal(put(f, "Observation", "a2", 0, "p1", obs("a2", "p1", 1), NULL), CV_OK);
	read_equal(f, "Observation", "q", 0, q);
}

/* ---- 8: copying to PostgreSQL carries the keys ------------------------------ */

static void copy_carries_the_keys(void **state)
{
	fx_t *f = *state;
	if (f->url[0] || !copy_base)
		skip(); /* copies an embedded store into PostgreSQL */
	world_t w;
	char err[512];
	build_world(f, &w);
	const char *r = obs("r", "p3", 1);
	int64_t n = 0;
	char hex[33];
	assert_int_equal(put(f, "Observation", "r", 0, "p3", r, NULL), CV_OK);
	assert_int_equal(cv_store_erase(f->s, "p3", 5, &n, hex), CV_OK);
	cv_store_close(f->s);
	f->s = NULL;
	fx_t g = *f;
	g.s = NULL;
	cv_pool_init(&g.pool, 0);
	assert_int_equal(cv_test_pg_database(copy_base, "cv_unit_keys_copy", g.url, sizeof g.url), 0);
	assert_int_equal(cv_store_copy(f->dir, g.url, NULL, NULL, err, sizeof err), CV_OK);
	assert_int_equal(cv_store_open(f->dir, g.url, 2, f->master, &g.s, err, sizeof err), CV_OK);
	read_equal(&g, "Patient", "p1", 0, w.pat1);
	read_equal(&g, "Observation", "a", 0, w.a1);
	read_equal(&g, "Observation", "b", 1, w.b1);
	read_equal(&g, "Observation", "b", 2, w.b2);
	read_equal(&g, "Observation", "q", 0, w.q1);
	read_equal(&g, "Practitioner", "x", 0, w.x1);
	/* the destroyed key came along destroyed */
	assert_int_equal(read_rc(&g, "Observation", "r", 0), CV_E_GONE);
	assert_int_equal(cv_store_erase(g.s, "p3", 5, &n, hex), CV_E_GONE);
	/* the copy's own keys: same rows, and erasure works on them */
	assert_int_equal(raw_count(&g, "SELECT count(*) FROM cv_key"), 5); /* shared, audit, p1, p2, p3 */
	assert_int_equal(put(&g, "Observation", "c", 0, "p1", obs("c", "p1", 1), NULL), CV_OK);
	assert_int_equal(raw_count(&g, "SELECT count(*) FROM cv_key"), 5); /* p1's copied key, not a new one */
	assert_int_equal(cv_store_erase(g.s, "p1", 6, &n, hex), CV_OK);
	assert_int_equal(n, 4); /* Patient/p1, a, b, c */
	assert_int_equal(read_rc(&g, "Observation", "b", 1), CV_E_GONE);
	read_equal(&g, "Observation", "q", 0, w.q1);
	cv_store_close(g.s);
	cv_pool_release(&g.pool);
	/* the source is unchanged */
	reopen(f);
	read_equal(f, "Observation", "a", 0, w.a1);
	assert_int_equal(read_rc(f, "Observation", "r", 0), CV_E_GONE);
}

/* ---- 9: a handle with the key still cached cannot write for an erased patient */

static void stale_handle_cannot_write_after_erasure(void **state)
{
	fx_t *f = *state;
	char err[256];
	const char *a = obs("a", "p1", 1);
	assert_int_equal(put(f, "Observation", "a", 0, "p1", a, "c:1"), CV_OK);
	fx_t g = *f;
	g.s = NULL;
	cv_pool_init(&g.pool, 0);
	assert_int_equal(cv_store_open(f->dir, f->url, 2, f->master, &g.s, err, sizeof err), CV_OK);
	read_equal(&g, "Observation", "a", 0, a); /* g has p1's key cached */
	int64_t n = 0;
	char hex[33];
	assert_int_equal(cv_store_erase(f->s, "p1", 1, &n, hex), CV_OK);
	/* at once, before g reads the erasure epoch again: g still seals with the
	 * cached key, and the back end refuses the version (its key is destroyed) */
	assert_int_equal(put(&g, "Observation", "z", 0, "p1", obs("z", "p1", 1), "c:1"), CV_E_GONE);
	assert_int_equal(put(&g, "Observation", "a", 1, "p1", obs("a", "p1", 2), "c:1"), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "z", 0), CV_E_NOTFOUND);
	assert_int_equal(read_rc(&g, "Observation", "a", 0), CV_E_GONE);
	assert_string_equal(find_code(f, "Observation", "c:1"), "");
	assert_string_equal(find_code(&g, "Observation", "c:1"), "");
	assert_int_equal(raw_count(f, "SELECT count(*) FROM cv_version WHERE type = 'Observation'"), 1);
	/* other patients' writes through g are unaffected */
	assert_int_equal(put(&g, "Observation", "q", 0, "p2", obs("q", "p2", 1), "c:1"), CV_OK);
	assert_string_equal(find_code(f, "Observation", "c:1"), "q");
	cv_store_close(g.s);
	cv_pool_release(&g.pool);
}

/* ---- 10: groups carrying a new patient's key ------------------------------- */

static void groups_carry_new_keys(void **state)
{
	fx_t *f = *state;
	char hex[33], sql[256];
	const char *g1 = obs("g1", "np", 1), *g2 = obs("g2", "np", 1);
	cv_store_write_t a = { .op = CV_STORE_PUT_VERSION, .type = "Observation", .id = "g1", .updated_us = 1,
			       .owner = "np", .body = (const uint8_t *)g1, .body_len = strlen(g1) };
	cv_store_write_t b = a;
	b.id = "g2";
	b.body = (const uint8_t *)g2;
	b.body_len = strlen(g2);
	cv_store_write_t *members[2] = { &a, &b };
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members, .nmembers = 2 };
	/* a failed group stores nothing, not even the key it brought */
	assert_int_equal(put(f, "Observation", "g2", 0, NULL, "{}", NULL), CV_OK); /* b will conflict */
	assert_int_equal(cv_store_write_sync(f->s, &g), CV_E_CONFLICT);
	assert_int_equal(a.result, CV_E_ABORTED);
	assert_int_equal(b.result, CV_E_CONFLICT);
	owner_hex(f, "np", hex);
	snprintf(sql, sizeof sql, "SELECT count(*) FROM cv_key WHERE encode(owner, 'hex') = '%s'", hex);
	assert_int_equal(raw_count(f, sql), 0);
	assert_int_equal(read_rc(f, "Observation", "g1", 0), CV_E_NOTFOUND);
	int64_t n = 0;
	assert_int_equal(cv_store_erase(f->s, "np", 1, &n, hex), CV_E_NOTFOUND);
	/* the same group that can succeed: both members under one new key */
	b.expect_version = 1;
	assert_int_equal(cv_store_write_sync(f->s, &g), CV_OK);
	assert_int_equal(a.result, CV_OK);
	assert_int_equal(b.result, CV_OK);
	assert_int_equal(raw_count(f, sql), 1);
	uint8_t k1[CV_KID_BYTES], k2[CV_KID_BYTES];
	kid_of_seq(f, read_equal(f, "Observation", "g1", 0, g1), k1);
	kid_of_seq(f, read_equal(f, "Observation", "g2", 2, g2), k2);
	assert_memory_equal(k1, k2, CV_KID_BYTES);
	assert_int_equal(cv_store_erase(f->s, "np", 1, &n, hex), CV_OK);
	assert_int_equal(n, 2);
	read_equal(f, "Observation", "g2", 1, "{}"); /* g2's first version was sealed under the shared key */
}

/* ---- 11: resources that changed compartment --------------------------------- */

static void erasure_follows_the_sealing_key(void **state)
{
	fx_t *f = *state;
	hist_t h;
	const char *m1 = obs("m", "p1", 1), *m2 = obs("m", "p2", 2); /* moved p1 -> p2 */
	const char *n1 = obs("n", "p2", 1), *n2 = obs("n", "p1", 2); /* moved p2 -> p1 */
	char mm1[160], mm2[160], nn1[160], nn2[160];
	snprintf(mm1, sizeof mm1, "%s", m1);
	snprintf(mm2, sizeof mm2, "%s", m2);
	snprintf(nn1, sizeof nn1, "%s", n1);
	snprintf(nn2, sizeof nn2, "%s", n2);
	assert_int_equal(put(f, "Observation", "m", 0, "p1", mm1, "c:1"), CV_OK);
	assert_int_equal(put(f, "Observation", "m", 1, "p2", mm2, "c:1"), CV_OK);
	assert_int_equal(put(f, "Observation", "n", 0, "p2", nn1, "c:1"), CV_OK);
	assert_int_equal(put(f, "Observation", "n", 1, "p1", nn2, "c:1"), CV_OK);
	assert_string_equal(find_code(f, "Observation", "c:1"), "m,n");
	int64_t count = 0;
	char hex[33];
	assert_int_equal(cv_store_erase(f->s, "p1", 1, &count, hex), CV_OK);
	assert_int_equal(count, 1); /* n: its current version was p1's */
	/* m now belongs to p2: its current version stays, its p1 version is gone */
	read_equal(f, "Observation", "m", 0, mm2);
	assert_int_equal(read_rc(f, "Observation", "m", 1), CV_E_GONE);
	assert_int_equal(history_count(f, "Observation", "m", &h), 1);
	assert_string_equal(h.bodies[0], mm2);
	/* n's current version is gone and it left the index; its version sealed
	 * under p2's key is not p1's to erase */
	assert_int_equal(read_rc(f, "Observation", "n", 0), CV_E_GONE);
	assert_int_equal(read_rc(f, "Observation", "n", 2), CV_E_GONE);
	read_equal(f, "Observation", "n", 1, nn1);
	assert_string_equal(find_code(f, "Observation", "c:1"), "m");
}

/* ---- 12: a new patient's first write, while the erasure epoch moves ---------
 * The first write is kept in flight by a lock taken from outside: SQLite's
 * write lock, or on PostgreSQL a SHARE lock on cv_version (an erasure does
 * not touch that table; a new version waits for it). */

typedef struct pending {
	cv_store_write_t w;
	char body[160];
	volatile int done;
} pending_t;

static void pending_done(cv_store_write_t *w)
{
	__atomic_store_n(&((pending_t *)w->arg)->done, 1, __ATOMIC_RELEASE);
}

static void pending_submit(fx_t *f, pending_t *p, const char *id, const char *owner)
{
	snprintf(p->body, sizeof p->body, "%s", obs(id, owner, 1));
	p->w = (cv_store_write_t){ .op = CV_STORE_PUT_VERSION, .type = "Observation", .id = id, .updated_us = 1,
				   .owner = owner, .body = (const uint8_t *)p->body, .body_len = strlen(p->body),
				   .done = pending_done, .arg = p };
	p->done = 0;
	assert_int_equal(cv_store_submit(f->s, &p->w), CV_OK);
}

static void pending_wait(pending_t *p)
{
	for (int i = 0; i < 3000 && !__atomic_load_n(&p->done, __ATOMIC_ACQUIRE); i++)
		usleep(10 * 1000);
	assert_true(__atomic_load_n(&p->done, __ATOMIC_ACQUIRE));
}

/* Holds a lock that keeps new versions from being written, until lock_release. */
typedef struct outside_lock {
	sqlite3 *db;
	FILE *psql;
} outside_lock_t;

static void lock_take(fx_t *f, outside_lock_t *l)
{
	memset(l, 0, sizeof *l);
	if (!f->url[0]) {
		char path[128];
		snprintf(path, sizeof path, "%s/store.db", f->dir);
		assert_int_equal(sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
		assert_int_equal(sqlite3_exec(l->db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
		return;
	}
	char cmd[1200];
	snprintf(cmd, sizeof cmd, "psql '%s' -X -q -v ON_ERROR_STOP=1 >/dev/null", f->url);
	l->psql = popen(cmd, "w");
	assert_non_null(l->psql);
	fputs("BEGIN;\nLOCK TABLE cv_version IN SHARE MODE;\n", l->psql);
	fflush(l->psql);
	long long held = 0;
	for (int i = 0; i < 100 && held != 1; i++) {
		usleep(20 * 1000);
		held = raw_count(f, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE "
				    "c.relname = 'cv_version' AND l.mode = 'ShareLock' AND l.granted");
	}
	assert_int_equal(held, 1);
}

static void lock_release(outside_lock_t *l)
{
	if (l->db) {
		assert_int_equal(sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(l->db);
	}
	if (l->psql) {
		fputs("COMMIT;\n", l->psql);
		assert_int_equal(pclose(l->psql), 0);
	}
}

static void first_write_survives_an_epoch_change(void **state)
{
	fx_t *f = *state;
	/* When the erasure epoch moves, cached patient keys are dropped, but not
	 * a new key whose first write is still in flight (not stored yet): the
	 * next writer for that patient must reuse it, not make a second key of
	 * the same (owner, version) and fail with a conflict. */
	char hex[33];
	int64_t n = 0;
	outside_lock_t lock;
	assert_int_equal(put(f, "Observation", "v", 0, "victim", obs("v", "victim", 1), NULL), CV_OK);
	usleep(1100 * 1000);
	if (f->url[0])
		lock_take(f, &lock);
	read_equal(f, "Observation", "v", 0, obs("v", "victim", 1)); /* the epoch is read now (t0) */
	assert_int_equal(cv_store_erase(f->s, "victim", 1, &n, hex), CV_OK); /* the epoch moves */
	if (!f->url[0])
		lock_take(f, &lock);
	pending_t *p1 = calloc(1, sizeof *p1), *p2 = calloc(1, sizeof *p2);
	pending_submit(f, p1, "n1", "newcomer"); /* within a second of t0: makes newcomer's key, in flight */
	usleep(1200 * 1000);
	pending_submit(f, p2, "n2", "newcomer"); /* reads the moved epoch first */
	int still_waiting = !__atomic_load_n(&p1->done, __ATOMIC_ACQUIRE);
	lock_release(&lock);
	pending_wait(p1);
	pending_wait(p2);
	cv_rc r1 = p1->w.result, r2 = p2->w.result;
	free(p1);
	free(p2);
	assert_true(still_waiting); /* the setup held the first write back */
	assert_int_equal(r1, CV_OK);
	assert_int_equal(r2, CV_OK); /* fails (CV_E_CONFLICT) with the bug above */
	read_equal(f, "Observation", "n1", 0, obs("n1", "newcomer", 1));
	read_equal(f, "Observation", "n2", 0, obs("n2", "newcomer", 1));
}

/* ---- 13: an over-long patient id ----------------------------------------- */

static void erase_refuses_an_overlong_id(void **state)
{
	fx_t *f = *state;
	/* Ids are at most 64 characters: a longer one must not be cut to 64 and
	 * erase the patient whose id is its first 64 characters. */
	char id64[65], id65[66], hex[33];
	memset(id64, 'A', 64);
	id64[64] = '\0';
	snprintf(id65, sizeof id65, "%sX", id64);
	const char *a = obs("a", "A", 1);
	assert_int_equal(put(f, "Observation", "a", 0, id64, a, NULL), CV_OK);
	assert_int_equal(put(f, "Observation", "b", 0, id65, "{}", NULL), CV_E_INVALID);
	int64_t n = -1;
	cv_rc rc = cv_store_erase(f->s, id65, 1, &n, hex);
	assert_int_not_equal(rc, CV_OK);
	assert_int_equal(n, -1);
	read_equal(f, "Observation", "a", 0, a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(patients_get_their_own_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(erasure_makes_a_patient_unreadable, setup, teardown),
		cmocka_unit_test_setup_teardown(erased_ciphertexts_open_with_no_key_left, setup, teardown),
		cmocka_unit_test_setup_teardown(other_handle_sees_the_erasure, setup, teardown),
		cmocka_unit_test_setup_teardown(key_cache_is_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(concurrent_writers_share_one_key, setup, teardown),
		cmocka_unit_test_setup_teardown(moved_wrapped_key_does_not_open, setup, teardown),
		cmocka_unit_test_setup_teardown(copy_carries_the_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(stale_handle_cannot_write_after_erasure, setup, teardown),
		cmocka_unit_test_setup_teardown(groups_carry_new_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(erasure_follows_the_sealing_key, setup, teardown),
		cmocka_unit_test_setup_teardown(first_write_survives_an_epoch_change, setup, teardown),
		cmocka_unit_test_setup_teardown(erase_refuses_an_overlong_id, setup, teardown),
	};
	copy_base = getenv("CV_TEST_PG_BASE");
	if (copy_base && !copy_base[0])
		copy_base = NULL;
	int failed = cmocka_run_group_tests_name("keys on SQLite", tests, NULL, NULL);
	pg_base = copy_base;
	if (pg_base)
		failed += cmocka_run_group_tests_name("keys on PostgreSQL", tests, NULL, NULL);
	return failed;
}
