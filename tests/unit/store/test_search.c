/*
 * test_search.c - the store's search index: blinded hash entries, date and
 * number ranges with every prefix, negation, keyset paging in several sort
 * orders, counts, all-or-nothing groups, reindexing, and that no index key
 * reaches the database file in plaintext.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../testpg.h"
#include "crypto/crypto.h"
#include "store/store.h"

/* With CV_TEST_PG_BASE (a postgresql:// URL of a throwaway cluster, as
 * scripts/test starts one) every test runs a second time on PostgreSQL, each
 * in a database of its own. */
static const char *pg_base;

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
	snprintf(f->dir, sizeof f->dir, "/tmp/cv-search-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(key, sizeof key, "%s/master.key", f->dir);
	assert_int_equal(cv_crypto_init(err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_create(key, err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_load(key, &f->master, err, sizeof err), CV_OK);
	if (pg_base)
		assert_int_equal(cv_test_pg_database(pg_base, "cv_unit_search", f->url, sizeof f->url), 0);
	assert_int_equal(cv_store_open(f->dir, f->url, 2, f->master, &f->s, err, sizeof err), CV_OK);
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

#define US(days) ((int64_t)(days) * 86400 * 1000000)

/* Writes Observation/id with a hash key, a date range [d0, d1] (days) and a value. */
static cv_rc put_obs(fx_t *f, const char *id, int64_t expect, const char *code, int d0, int d1, double value)
{
	cv_ix_entry_t ix[3] = {
		{ .kind = CV_IX_HASH, .param = "code", .key = code, .key_len = strlen(code) },
		{ .kind = CV_IX_DATE, .param = "date", .lo = US(d0), .hi = US(d1 + 1) - 1 },
		{ .kind = CV_IX_NUM, .param = "value-quantity", .key = "c|mg", .nlo = value, .nhi = value },
	};
	char body[128];
	snprintf(body, sizeof body, "{\"resourceType\":\"Observation\",\"id\":\"%s\"}", id);
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = "Observation", .id = id,
			       .expect_version = expect, .updated_us = 1000 + expect,
			       .body = (const uint8_t *)body, .body_len = strlen(body), .index = ix, .nindex = 3 };
	return cv_store_write_sync(f->s, &w);
}

typedef struct collect {
	char ids[64][16];
	size_t n;
	cv_store_cursor_t last;
} collect_t;

static cv_rc collect(void *arg, const cv_store_hit_t *h)
{
	collect_t *c = arg;
	const char *p = strstr((const char *)h->v.body, "\"id\":\"");
	assert_non_null(p);
	snprintf(c->ids[c->n], sizeof c->ids[c->n], "%.*s", (int)strcspn(p + 6, "\""), p + 6);
	c->n++;
	c->last = h->at;
	return CV_OK;
}

/* Runs a one-clause query and returns the ids found, joined by commas. */
static const char *find(fx_t *f, cv_store_term_t *terms, size_t n, bool negate)
{
	static char out[256];
	cv_store_clause_t c = { .negate = negate, .n = n, .terms = terms };
	cv_store_query_t q = { .type = "Observation", .nclauses = 1, .clauses = &c, .limit = 50 };
	collect_t got = { .n = 0 };
	assert_int_equal(cv_store_search(f->s, &q, &f->pool, collect, &got), CV_OK);
	out[0] = '\0';
	for (size_t i = 0; i < got.n; i++) {
		strncat(out, got.ids[i], sizeof out - strlen(out) - 2);
		if (i + 1 < got.n)
			strncat(out, ",", sizeof out - strlen(out) - 1);
	}
	uint64_t count = 0;
	assert_int_equal(cv_store_count(f->s, &q, &count), CV_OK);
	assert_int_equal(count, got.n);
	return out;
}

static void load(fx_t *f)
{
	assert_int_equal(put_obs(f, "a", 0, "c:1", 10, 10, 5), CV_OK);
	assert_int_equal(put_obs(f, "b", 0, "c:2", 12, 14, 50), CV_OK);
	assert_int_equal(put_obs(f, "c", 0, "c:1", 20, 20, 500), CV_OK);
}

static void hash_terms_and_negation(void **state)
{
	fx_t *f = *state;
	load(f);
	cv_store_term_t t[2] = { { .kind = CV_TERM_HASH, .param = "code", .key = "c:1", .key_len = 3 },
				 { .kind = CV_TERM_HASH, .param = "code", .key = "c:2", .key_len = 3 } };
	assert_string_equal(find(f, t, 1, false), "a,c");
	assert_string_equal(find(f, t, 2, false), "a,b,c");
	assert_string_equal(find(f, t, 1, true), "b");
	/* the same key under another parameter is another blinded value */
	cv_store_term_t other = { .kind = CV_TERM_HASH, .param = "category", .key = "c:1", .key_len = 3 };
	assert_string_equal(find(f, &other, 1, false), "");
	cv_store_term_t id = { .kind = CV_TERM_ID, .key = "b" };
	assert_string_equal(find(f, &id, 1, false), "b");
}

static const char *date_cmp(fx_t *f, cv_cmp cmp, int d0, int d1)
{
	cv_store_term_t t = { .kind = CV_TERM_DATE, .param = "date", .cmp = cmp, .lo = US(d0), .hi = US(d1 + 1) - 1 };
	return find(f, &t, 1, false);
}

static void date_prefixes(void **state)
{
	fx_t *f = *state;
	load(f); /* a: day 10, b: days 12-14, c: day 20 */
	assert_string_equal(date_cmp(f, CV_CMP_EQ, 10, 10), "a");
	assert_string_equal(date_cmp(f, CV_CMP_EQ, 13, 13), "");   /* b is not inside day 13 */
	assert_string_equal(date_cmp(f, CV_CMP_EQ, 11, 15), "b");
	assert_string_equal(date_cmp(f, CV_CMP_NE, 10, 10), "b,c");
	assert_string_equal(date_cmp(f, CV_CMP_GT, 13, 13), "b,c"); /* b extends past day 13 */
	assert_string_equal(date_cmp(f, CV_CMP_LT, 13, 13), "a,b");
	assert_string_equal(date_cmp(f, CV_CMP_GE, 20, 20), "c");
	assert_string_equal(date_cmp(f, CV_CMP_LE, 10, 10), "a");
	assert_string_equal(date_cmp(f, CV_CMP_SA, 11, 11), "b,c");
	assert_string_equal(date_cmp(f, CV_CMP_SA, 12, 12), "c");
	assert_string_equal(date_cmp(f, CV_CMP_EB, 12, 12), "a");
	assert_string_equal(date_cmp(f, CV_CMP_AP, 14, 20), "b,c");
}

static void number_ranges_and_units(void **state)
{
	fx_t *f = *state;
	load(f);
	cv_store_term_t t = { .kind = CV_TERM_NUM, .param = "value-quantity", .cmp = CV_CMP_GT, .nlo = 49.5, .nhi = 50.5 };
	assert_string_equal(find(f, &t, 1, false), "c");
	t.cmp = CV_CMP_EQ;
	assert_string_equal(find(f, &t, 1, false), "b");
	t.key = "c|mg";
	assert_string_equal(find(f, &t, 1, false), "b");
	t.key = "c|kg";
	assert_string_equal(find(f, &t, 1, false), "");
}

static void keyset_paging_in_sort_orders(void **state)
{
	fx_t *f = *state;
	char id[8];
	for (int i = 0; i < 30; i++) {
		snprintf(id, sizeof id, "o%02d", i);
		/* dates in a scrambled order, some equal */
		assert_int_equal(put_obs(f, id, 0, "c:1", (i * 7) % 10, (i * 7) % 10, i), CV_OK);
	}
	for (int desc = 0; desc < 2; desc++) {
		cv_store_query_t q = { .type = "Observation", .nsort = 1, .limit = 7 };
		q.sort[0] = (cv_store_sort_t){ .kind = CV_SORT_DATE, .param = "date", .desc = desc };
		size_t seen = 0;
		int64_t prev = desc ? INT64_MAX : INT64_MIN;
		char all[30] = { 0 };
		for (;;) {
			collect_t got = { .n = 0 };
			assert_int_equal(cv_store_search(f->s, &q, &f->pool, collect, &got), CV_OK);
			for (size_t i = 0; i < got.n; i++) {
				int n = (int)strtol(got.ids[i] + 1, NULL, 10);
				assert_int_equal(all[n], 0); /* no duplicates */
				all[n] = 1;
				int64_t day = (n * 7) % 10;
				assert_true(desc ? day <= prev : day >= prev);
				prev = day;
			}
			seen += got.n;
			if (got.n < q.limit)
				break;
			q.after = got.last;
		}
		assert_int_equal(seen, 30);
	}
}

/* Sorted by last update as of a snapshot, an update made since does not
 * move a resource: a walk neither repeats nor skips it. */
static void updated_sort_keeps_its_snapshot(void **state)
{
	fx_t *f = *state;
	assert_int_equal(put_obs(f, "a", 0, "c:1", 1, 1, 1), CV_OK); /* updated_us 1000 */
	assert_int_equal(put_obs(f, "b", 0, "c:1", 1, 1, 1), CV_OK);
	assert_int_equal(put_obs(f, "c", 0, "c:1", 1, 1, 1), CV_OK);
	int64_t snap = 0;
	assert_int_equal(cv_store_last_seq(f->s, &snap), CV_OK);
	assert_true(snap > 0);
	assert_int_equal(put_obs(f, "a", 1, "c:1", 1, 1, 1), CV_OK); /* now updated_us 1001: last */
	cv_store_query_t q = { .type = "Observation", .nsort = 1, .limit = 10 };
	q.sort[0] = (cv_store_sort_t){ .kind = CV_SORT_UPDATED };
	collect_t got = { .n = 0 };
	assert_int_equal(cv_store_search(f->s, &q, &f->pool, collect, &got), CV_OK);
	assert_string_equal(got.ids[2], "a"); /* without a snapshot: moved to the end */
	q.as_of_seq = snap;
	got.n = 0;
	assert_int_equal(cv_store_search(f->s, &q, &f->pool, collect, &got), CV_OK);
	assert_int_equal(got.n, 3);
	assert_string_equal(got.ids[0], "a"); /* as of the snapshot: where it was */
	assert_int_equal(put_obs(f, "d", 0, "c:1", 1, 1, 1), CV_OK); /* created since: last */
	got.n = 0;
	assert_int_equal(cv_store_search(f->s, &q, &f->pool, collect, &got), CV_OK);
	assert_int_equal(got.n, 4);
	assert_string_equal(got.ids[3], "d");
}

static void groups_are_all_or_nothing(void **state)
{
	fx_t *f = *state;
	cv_ix_entry_t ix = { .kind = CV_IX_HASH, .param = "code", .key = "c:9", .key_len = 3 };
	const char *body = "{\"resourceType\":\"Observation\",\"id\":\"g\"}";
	assert_int_equal(put_obs(f, "exists", 0, "c:8", 1, 1, 1), CV_OK);
	cv_store_write_t a = { .op = CV_STORE_PUT_VERSION, .type = "Observation", .id = "g1", .updated_us = 1,
			       .body = (const uint8_t *)body, .body_len = strlen(body), .index = &ix, .nindex = 1 };
	cv_store_write_t b = a;
	b.id = "exists"; /* expects no current version: conflicts */
	cv_store_write_t *members[2] = { &a, &b };
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members, .nmembers = 2 };
	assert_int_equal(cv_store_write_sync(f->s, &g), CV_E_CONFLICT);
	assert_int_equal(a.result, CV_E_ABORTED);
	assert_int_equal(b.result, CV_E_CONFLICT);
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->s, "Observation", "g1", 0, &f->pool, &v), CV_E_NOTFOUND);
	cv_store_term_t t = { .kind = CV_TERM_HASH, .param = "code", .key = "c:9", .key_len = 3 };
	assert_string_equal(find(f, &t, 1, false), "");
	b.id = "g2";
	assert_int_equal(cv_store_write_sync(f->s, &g), CV_OK);
	assert_int_equal(a.result, CV_OK);
	assert_int_equal(b.result, CV_OK);
	assert_int_equal(cv_store_read(f->s, "Observation", "g1", 0, &f->pool, &v), CV_OK);
}

static void updates_and_deletes_replace_entries(void **state)
{
	fx_t *f = *state;
	load(f);
	assert_int_equal(put_obs(f, "a", 1, "c:2", 10, 10, 5), CV_OK);
	cv_store_term_t t = { .kind = CV_TERM_HASH, .param = "code", .key = "c:1", .key_len = 3 };
	assert_string_equal(find(f, &t, 1, false), "c");
	cv_store_write_t del = { .op = CV_STORE_PUT_VERSION, .type = "Observation", .id = "c", .expect_version = 1,
				 .deleted = true, .body = (const uint8_t *)"{}", .body_len = 2 };
	assert_int_equal(cv_store_write_sync(f->s, &del), CV_OK);
	assert_string_equal(find(f, &t, 1, false), "");
	assert_string_equal(find(f, &t, 1, true), "a,b");
	/* reindex replaces the entries without a new version */
	cv_ix_entry_t ix = { .kind = CV_IX_HASH, .param = "code", .key = "c:1", .key_len = 3 };
	cv_store_write_t re = { .op = CV_STORE_REINDEX, .type = "Observation", .id = "b", .expect_version = 2,
				.index = &ix, .nindex = 1 };
	assert_int_equal(cv_store_write_sync(f->s, &re), CV_E_NOTFOUND); /* not its current version */
	re.expect_version = 1;
	assert_int_equal(cv_store_write_sync(f->s, &re), CV_OK);
	assert_string_equal(find(f, &t, 1, false), "b");
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->s, "Observation", "b", 0, &f->pool, &v), CV_OK);
	assert_int_equal(v.version, 1);
}

static void keys_are_not_on_disk(void **state)
{
	fx_t *f = *state;
	if (pg_base)
		skip(); /* the embedded store's files are what this looks at */
	const char *secret = "p:margarette";
	cv_ix_entry_t ix = { .kind = CV_IX_HASH, .param = "name", .key = secret, .key_len = strlen(secret) };
	const char *body = "{}";
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = "Patient", .id = "x", .updated_us = 1,
			       .body = (const uint8_t *)body, .body_len = 2, .index = &ix, .nindex = 1 };
	assert_int_equal(cv_store_write_sync(f->s, &w), CV_OK);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "grep -c -a margarette %s/store.db %s/store.db-wal 2>/dev/null | grep -v ':0' | grep -q .",
		 f->dir, f->dir);
	assert_int_not_equal(system(cmd), 0);
}

static void tokens_are_sealed(void **state)
{
	fx_t *f = *state;
	cv_buf_t tok, back;
	cv_buf_init(&tok, 4096);
	cv_buf_init(&back, 4096);
	assert_int_equal(cv_store_token_seal(f->s, "cursor", "secret-state", 12, &tok), CV_OK);
	assert_null(strstr(tok.data, "secret"));
	assert_int_equal(cv_store_token_open(f->s, "cursor", tok.data, &back), CV_OK);
	assert_string_equal(back.data, "secret-state");
	cv_buf_reset(&back);
	assert_int_equal(cv_store_token_open(f->s, "other", tok.data, &back), CV_E_INVALID);
	tok.data[10] = tok.data[10] == 'A' ? 'B' : 'A';
	assert_int_equal(cv_store_token_open(f->s, "cursor", tok.data, &back), CV_E_INVALID);
	assert_int_equal(cv_store_token_open(f->s, "cursor", "!!", &back), CV_E_INVALID);
	cv_buf_release(&tok);
	cv_buf_release(&back);
}

/* Runs one SQL statement on the fixture's PostgreSQL database. */
static void pg_sql(fx_t *f, const char *sql)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "psql '%s' -v ON_ERROR_STOP=1 -qc \"%s\" >/dev/null", f->url, sql);
	assert_int_equal(system(cmd), 0);
}

/* PostgreSQL only: an index statement that fails after the version and the
 * current row were written fails the whole write; nothing of it remains. */
static void failed_index_write_leaves_nothing(void **state)
{
	fx_t *f = *state;
	if (!f->url[0])
		skip();
	pg_sql(f, "CREATE FUNCTION cv_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
		  "'BEGIN RAISE EXCEPTION ''refused by the test''; END'");
	pg_sql(f, "CREATE TRIGGER cv_test_refuse BEFORE INSERT ON cv_ix_hash "
		  "FOR EACH STATEMENT EXECUTE FUNCTION cv_test_refuse()");
	assert_int_equal(put_obs(f, "half", 0, "c:7", 1, 1, 1), CV_E_STORAGE);
	pg_sql(f, "DROP TRIGGER cv_test_refuse ON cv_ix_hash");
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->s, "Observation", "half", 0, &f->pool, &v), CV_E_NOTFOUND);
	cv_store_term_t t = { .kind = CV_TERM_DATE, .param = "date", .cmp = CV_CMP_EQ, .lo = US(1), .hi = US(2) - 1 };
	assert_string_equal(find(f, &t, 1, false), "");
	assert_int_equal(put_obs(f, "half", 0, "c:7", 1, 1, 1), CV_OK);
	assert_string_equal(find(f, &t, 1, false), "half");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(hash_terms_and_negation, setup, teardown),
		cmocka_unit_test_setup_teardown(date_prefixes, setup, teardown),
		cmocka_unit_test_setup_teardown(number_ranges_and_units, setup, teardown),
		cmocka_unit_test_setup_teardown(keyset_paging_in_sort_orders, setup, teardown),
		cmocka_unit_test_setup_teardown(updated_sort_keeps_its_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(groups_are_all_or_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(updates_and_deletes_replace_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(keys_are_not_on_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(tokens_are_sealed, setup, teardown),
		cmocka_unit_test_setup_teardown(failed_index_write_leaves_nothing, setup, teardown),
	};
	return CV_TEST_RUN_ON_BOTH(tests, "search", pg_base);
}
