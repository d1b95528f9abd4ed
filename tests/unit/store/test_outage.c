/*
 * test_outage.c - a batch the database cannot commit acknowledges nothing:
 * while the database is unreachable (PostgreSQL refusing connections) or
 * locked by another writer (SQLite), or when PostgreSQL refuses the COMMIT
 * after the group was applied, a group write fails in every member,
 * nothing of it is stored, and a patient's new key that rode with it is not
 * taken as stored (a later write stores it, and it opens after a restart).
 * Runs on SQLite, then on PostgreSQL when CV_TEST_PG_BASE is set.
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

#include "../teststore.h"

static const char *pg_base;

typedef struct fx {
	cv_test_store_t ts;
	cv_pool_t pool;
	sqlite3 *locker; /* SQLite: a second writer holding the lock */
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	cv_test_store_open(&f->ts, "outage", pg_base);
	cv_pool_init(&f->pool, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	cv_pool_release(&f->pool);
	cv_test_store_close(&f->ts);
	free(f);
	return 0;
}

/* Runs sql on the cluster's maintenance database (pg_base). */
static void psql(const char *sql)
{
	char cmd[2048];
	snprintf(cmd, sizeof cmd, "psql '%s' -v ON_ERROR_STOP=1 -qAtc \"%s\" >/dev/null", pg_base, sql);
	assert_int_equal(system(cmd), 0);
}

/* The database name at the end of the store's URL path. */
static void db_name(const fx_t *f, char *out, size_t len)
{
	const char *q = strchr(f->ts.url, '?');
	const char *end = q ? q : f->ts.url + strlen(f->ts.url);
	const char *start = end;
	while (start > f->ts.url && start[-1] != '/')
		start--;
	snprintf(out, len, "%.*s", (int)(end - start), start);
}

/* Makes the store's database refuse the committer until outage_end:
 * PostgreSQL drops its connection and accepts no new one; on SQLite
 * another connection holds the write lock (the committer gives up after
 * its busy timeout, 10 s). */
static void outage_begin(fx_t *f)
{
	char db[128], sql[512];
	if (!f->ts.url[0]) {
		char path[128];
		snprintf(path, sizeof path, "%s/store.db", f->ts.dir);
		assert_int_equal(sqlite3_open(path, &f->locker), SQLITE_OK);
		assert_int_equal(sqlite3_exec(f->locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
		return;
	}
	db_name(f, db, sizeof db);
	snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS false", db);
	psql(sql);
	/* only the committer's connection (its last statement was a COMMIT):
	 * the readers stay up, so the write gets as far as the committer */
	snprintf(sql, sizeof sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '%s' "
		 "AND query = 'COMMIT'", db);
	psql(sql);
}

static void outage_end(fx_t *f)
{
	char db[128], sql[256];
	if (f->locker) {
		assert_int_equal(sqlite3_exec(f->locker, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(f->locker);
		f->locker = NULL;
		return;
	}
	db_name(f, db, sizeof db);
	snprintf(sql, sizeof sql, "ALTER DATABASE %s ALLOW_CONNECTIONS true", db);
	psql(sql);
}

static cv_store_write_t version(const char *type, const char *id, int64_t expect, const char *owner,
				const char *body)
{
	return (cv_store_write_t){ .op = CV_STORE_PUT_VERSION, .type = type, .id = id, .expect_version = expect,
				   .updated_us = 1000000 * (expect + 1), .owner = owner,
				   .body = (const uint8_t *)body, .body_len = strlen(body) };
}

static cv_rc read_rc(fx_t *f, const char *type, const char *id)
{
	cv_store_version_t v;
	return cv_store_read(f->ts.s, type, id, 0, &f->pool, &v);
}

/* Closes the store and opens it again: no key is cached any more. */
static void reopen(fx_t *f)
{
	char err[256];
	cv_store_close(f->ts.s);
	f->ts.s = NULL;
	assert_int_equal(cv_store_open(f->ts.dir, f->ts.url, 2, f->ts.master, &f->ts.s, err, sizeof err), CV_OK);
}

static void failed_group_acknowledges_no_member(void **state)
{
	fx_t *f = *state;
	/* a patient with data already: their key is stored */
	cv_store_write_t seed = version("Patient", "p-old", 0, "p-old", "{\"seed\":1}");
	assert_int_equal(cv_store_write_sync(f->ts.s, &seed), CV_OK);

	outage_begin(f);
	cv_store_write_t shared = version("Organization", "o1", 0, NULL, "{\"o\":1}");
	cv_store_write_t fresh = version("Patient", "p-new", 0, "p-new", "{\"p\":1}");
	cv_store_write_t old = version("Patient", "p-old", 1, "p-old", "{\"seed\":2}");
	cv_store_write_t *members[3] = { &shared, &fresh, &old };
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members, .nmembers = 3 };
	cv_rc rc = cv_store_write_sync(f->ts.s, &g);
	outage_end(f);

	assert_int_not_equal(rc, CV_OK);
	for (size_t i = 0; i < 3; i++)
		assert_int_not_equal(members[i]->result, CV_OK);
	/* nothing of the group is stored */
	assert_int_equal(read_rc(f, "Organization", "o1"), CV_E_NOTFOUND);
	assert_int_equal(read_rc(f, "Patient", "p-new"), CV_E_NOTFOUND);
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->ts.s, "Patient", "p-old", 0, &f->pool, &v), CV_OK);
	assert_int_equal(v.version, 1);

	/* the new patient's key did not count as stored: their next write stores
	 * one, and what it sealed opens with no key cached */
	cv_store_write_t again = version("Patient", "p-new", 0, "p-new", "{\"p\":2}");
	assert_int_equal(cv_store_write_sync(f->ts.s, &again), CV_OK);
	reopen(f);
	assert_int_equal(cv_store_read(f->ts.s, "Patient", "p-new", 0, &f->pool, &v), CV_OK);
	assert_string_equal((const char *)v.body, "{\"p\":2}");
	assert_int_equal(read_rc(f, "Patient", "p-old"), CV_OK);
}

/* Runs the SQL in a file on the store's own database (PostgreSQL). */
static void psql_store(const fx_t *f, const char *sql)
{
	char path[] = "/tmp/cv-outage-sql-XXXXXX", cmd[2048];
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *out = fdopen(fd, "w");
	assert_non_null(out);
	fputs(sql, out);
	fclose(out);
	snprintf(cmd, sizeof cmd, "psql '%s' -v ON_ERROR_STOP=1 -qf %s >/dev/null", f->ts.url, path);
	int st = system(cmd);
	unlink(path);
	assert_int_equal(st, 0);
}

/* PostgreSQL refuses the COMMIT after every member of the group was applied
 * (a deferred constraint trigger fires at COMMIT): members that had been
 * applied must not report success. */
static void commit_refused_after_apply_acknowledges_nothing(void **state)
{
	fx_t *f = *state;
	if (!f->ts.url[0])
		skip(); /* SQLite has no check deferred to COMMIT; its BEGIN failure is tested above */
	psql_store(f, "CREATE FUNCTION cv_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
		      "$$BEGIN RAISE EXCEPTION 'refused at commit'; END$$;\n"
		      "CREATE CONSTRAINT TRIGGER cv_test_refuse AFTER INSERT ON cv_version DEFERRABLE INITIALLY DEFERRED "
		      "FOR EACH ROW WHEN (NEW.type = 'Refused') EXECUTE FUNCTION cv_test_refuse();\n");
	cv_store_write_t shared = version("Organization", "o2", 0, NULL, "{\"o\":2}");
	cv_store_write_t fresh = version("Patient", "p-late", 0, "p-late", "{\"p\":1}");
	cv_store_write_t refused = version("Refused", "r1", 0, NULL, "{\"r\":1}");
	cv_store_write_t *members[3] = { &shared, &fresh, &refused };
	cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members, .nmembers = 3 };
	assert_int_not_equal(cv_store_write_sync(f->ts.s, &g), CV_OK);
	for (size_t i = 0; i < 3; i++)
		assert_int_not_equal(members[i]->result, CV_OK);
	assert_int_equal(read_rc(f, "Organization", "o2"), CV_E_NOTFOUND);
	assert_int_equal(read_rc(f, "Patient", "p-late"), CV_E_NOTFOUND);
	/* the store goes on, and the new patient's key is stored with their next write */
	cv_store_write_t again = version("Patient", "p-late", 0, "p-late", "{\"p\":2}");
	assert_int_equal(cv_store_write_sync(f->ts.s, &again), CV_OK);
	reopen(f);
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->ts.s, "Patient", "p-late", 0, &f->pool, &v), CV_OK);
	assert_string_equal((const char *)v.body, "{\"p\":2}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(failed_group_acknowledges_no_member, setup, teardown),
		cmocka_unit_test_setup_teardown(commit_refused_after_apply_acknowledges_nothing, setup, teardown),
	};
	return CV_TEST_RUN_ON_BOTH(tests, "outage", pg_base);
}
