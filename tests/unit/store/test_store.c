/*
 * test_store.c - the store: versions, conflicts, tombstones, history, group
 * commit under concurrency, and encryption at rest attacked directly
 * (ciphertext moved between rows, plaintext searched for in the files).
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
#include <sys/stat.h>
#include <unistd.h>

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
	char err[256];
	snprintf(f->dir, sizeof f->dir, "/tmp/cv-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	char key[128];
	snprintf(key, sizeof key, "%s/master.key", f->dir);
	assert_int_equal(cv_crypto_init(err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_create(key, err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_load(key, &f->master, err, sizeof err), CV_OK);
	assert_int_equal(cv_store_open(f->dir, NULL, 4, f->master, &f->s, err, sizeof err), CV_OK);
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

static cv_rc put(cv_store_t *s, const char *type, const char *id, int64_t expect, const char *body, int del)
{
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = type, .id = id, .expect_version = expect,
			       .updated_us = 1000000 * (expect + 1), .deleted = del,
			       .body = (const uint8_t *)body, .body_len = strlen(body) };
	return cv_store_write_sync(s, &w);
}

static void versions_and_conflicts(void **state)
{
	fx_t *f = *state;
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->s, "Patient", "p1", 0, &f->pool, &v), CV_E_NOTFOUND);
	assert_int_equal(put(f->s, "Patient", "p1", 0, "{\"v\":1}", 0), CV_OK);
	assert_int_equal(put(f->s, "Patient", "p1", 0, "{\"v\":1}", 0), CV_E_CONFLICT);
	assert_int_equal(put(f->s, "Patient", "p1", 1, "{\"v\":2}", 0), CV_OK);
	assert_int_equal(cv_store_read(f->s, "Patient", "p1", 0, &f->pool, &v), CV_OK);
	assert_int_equal(v.version, 2);
	assert_string_equal((const char *)v.body, "{\"v\":2}");
	assert_int_equal(cv_store_read(f->s, "Patient", "p1", 1, &f->pool, &v), CV_OK);
	assert_string_equal((const char *)v.body, "{\"v\":1}");
	assert_int_equal(cv_store_read(f->s, "Patient", "p1", 3, &f->pool, &v), CV_E_NOTFOUND);
	/* same id, other type: another resource */
	assert_int_equal(cv_store_read(f->s, "Observation", "p1", 0, &f->pool, &v), CV_E_NOTFOUND);
	assert_int_equal(put(f->s, "Patient", "p1", 2, "{\"resourceType\":\"Patient\",\"id\":\"p1\"}", 1), CV_OK);
	assert_int_equal(cv_store_read(f->s, "Patient", "p1", 0, &f->pool, &v), CV_OK);
	assert_true(v.deleted);
	assert_int_equal(v.version, 3);
}

typedef struct seen {
	int n;
	int64_t versions[16];
	int64_t last_seq;
} seen_t;

static cv_rc collect(void *arg, const cv_store_version_t *v)
{
	seen_t *s = arg;
	if (s->n < 16)
		s->versions[s->n] = v->version;
	s->n++;
	s->last_seq = v->seq;
	return CV_OK;
}

static void history_pages(void **state)
{
	fx_t *f = *state;
	char body[32];
	for (int i = 0; i < 5; i++) {
		snprintf(body, sizeof body, "{\"v\":%d}", i + 1);
		assert_int_equal(put(f->s, "Observation", "o1", i, body, 0), CV_OK);
	}
	assert_int_equal(put(f->s, "Patient", "p9", 0, "{}", 0), CV_OK);
	seen_t s = { 0 };
	cv_store_history_query_t q = { .type = "Observation", .id = "o1", .limit = 3 };
	assert_int_equal(cv_store_history(f->s, &q, &f->pool, collect, &s), CV_OK);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.versions[0], 5);
	assert_int_equal(s.versions[2], 3);
	q.before_seq = s.last_seq;
	s = (seen_t){ 0 };
	assert_int_equal(cv_store_history(f->s, &q, &f->pool, collect, &s), CV_OK);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.versions[1], 1);
	cv_store_history_query_t all = { .limit = 100 };
	s = (seen_t){ 0 };
	assert_int_equal(cv_store_history(f->s, &all, &f->pool, collect, &s), CV_OK);
	assert_int_equal(s.n, 6);
	cv_store_history_query_t since = { .type = "Observation", .since_us = 4000000, .limit = 100 };
	s = (seen_t){ 0 };
	assert_int_equal(cv_store_history(f->s, &since, &f->pool, collect, &s), CV_OK);
	assert_int_equal(s.n, 2); /* versions 4 and 5 were written at 4 s and 5 s */
}

typedef struct writer {
	cv_store_t *s;
	int id;
	int ok;
} writer_t;

static void *write_many(void *arg)
{
	writer_t *w = arg;
	char id[32];
	for (int i = 0; i < 50; i++) {
		snprintf(id, sizeof id, "w%d-%d", w->id, i);
		if (put(w->s, "Observation", id, 0, "{\"resourceType\":\"Observation\"}", 0) == CV_OK)
			w->ok++;
	}
	return NULL;
}

static void concurrent_writers_share_commits(void **state)
{
	fx_t *f = *state;
	pthread_t t[16];
	writer_t w[16];
	for (int i = 0; i < 16; i++) {
		w[i] = (writer_t){ .s = f->s, .id = i };
		pthread_create(&t[i], NULL, write_many, &w[i]);
	}
	for (int i = 0; i < 16; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, 50);
	}
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->s, "Observation", "w7-49", 0, &f->pool, &v), CV_OK);
}

/* Searches a file for a string (the plaintext must never be on disk). */
static int file_contains(const char *path, const char *needle)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return 0;
	size_t n = strlen(needle), cap = 1 << 20, len = 0;
	char *buf = malloc(cap);
	int found = 0;
	size_t r;
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

static void nothing_readable_on_disk(void **state)
{
	fx_t *f = *state;
	const char *secret = "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"Quixotic-Zebulon\"}],"
			     "\"birthDate\":\"1971-03-04\"}";
	assert_int_equal(put(f->s, "Patient", "mrn-5551234", 0, secret, 0), CV_OK);
	const char *needles[] = { "Quixotic-Zebulon", "1971-03-04", "mrn-5551234", "birthDate" };
	const char *files[] = { "store.db", "store.db-wal" };
	for (size_t i = 0; i < 2; i++) {
		char path[128];
		snprintf(path, sizeof path, "%s/%s", f->dir, files[i]);
		for (size_t j = 0; j < 4; j++)
			assert_false(file_contains(path, needles[j]));
	}
}

static void moved_ciphertext_does_not_open(void **state)
{
	fx_t *f = *state;
	char path[128], err[256];
	cv_store_version_t v;
	assert_int_equal(put(f->s, "Patient", "alice", 0, "{\"who\":\"alice\"}", 0), CV_OK);
	assert_int_equal(put(f->s, "Patient", "bob", 0, "{\"who\":\"bob\"}", 0), CV_OK);
	assert_int_equal(put(f->s, "Patient", "bob", 1, "{\"who\":\"bob2\"}", 0), CV_OK);
	cv_store_close(f->s);
	f->s = NULL;
	/* the attacker has write access to the file: copy alice's row body onto
	 * bob's current version, and bob's version 1 onto version 2 */
	snprintf(path, sizeof path, "%s/store.db", f->dir);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
		"UPDATE cv_version SET body = (SELECT body FROM cv_version ORDER BY seq LIMIT 1 OFFSET "
		"(SELECT COUNT(*) FROM cv_version) - 3) WHERE seq = (SELECT MAX(seq) FROM cv_version)",
		NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(cv_store_open(f->dir, NULL, 2, f->master, &f->s, err, sizeof err), CV_OK);
	assert_int_equal(cv_store_read(f->s, "Patient", "bob", 0, &f->pool, &v), CV_E_CRYPTO);
	assert_int_equal(cv_store_read(f->s, "Patient", "alice", 0, &f->pool, &v), CV_OK);
	assert_int_equal(cv_store_read(f->s, "Patient", "bob", 1, &f->pool, &v), CV_OK);
}

static void wrong_master_key_is_refused(void **state)
{
	fx_t *f = *state;
	char path[128], err[256];
	cv_key_t *other;
	cv_store_t *s2 = NULL;
	snprintf(path, sizeof path, "%s/other.key", f->dir);
	assert_int_equal(cv_crypto_master_create(path, err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_load(path, &other, err, sizeof err), CV_OK);
	cv_store_close(f->s);
	f->s = NULL;
	assert_int_equal(cv_store_open(f->dir, NULL, 1, other, &s2, err, sizeof err), CV_E_CRYPTO);
	assert_non_null(strstr(err, "master"));
	cv_key_free(other);
	assert_int_equal(cv_store_open(f->dir, NULL, 1, f->master, &f->s, err, sizeof err), CV_OK);
}

static void meta_round_trip(void **state)
{
	fx_t *f = *state;
	cv_buf_t b;
	cv_buf_init(&b, 64);
	assert_int_equal(cv_store_meta_get(f->s, "nope", &b), CV_E_NOTFOUND);
	cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = "x", .body = (const uint8_t *)"abc", .body_len = 3 };
	assert_int_equal(cv_store_write_sync(f->s, &w), CV_OK);
	assert_int_equal(cv_store_meta_get(f->s, "x", &b), CV_OK);
	assert_int_equal(b.len, 3);
	cv_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(versions_and_conflicts, setup, teardown),
		cmocka_unit_test_setup_teardown(history_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(concurrent_writers_share_commits, setup, teardown),
		cmocka_unit_test_setup_teardown(nothing_readable_on_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(moved_ciphertext_does_not_open, setup, teardown),
		cmocka_unit_test_setup_teardown(wrong_master_key_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(meta_round_trip, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
