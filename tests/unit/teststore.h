/*
 * teststore.h - a throwaway store for a unit test: a temporary data
 * directory with a fresh master key, on SQLite, or on a fresh PostgreSQL
 * database when pg_base is given (CV_TEST_PG_BASE). Include after cmocka.h.
 */
#ifndef CV_TESTS_TESTSTORE_H
#define CV_TESTS_TESTSTORE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "store/store.h"
#include "testpg.h"

typedef struct cv_test_store {
	char dir[64];
	char url[1024];
	cv_key_t *master;
	cv_store_t *s;
} cv_test_store_t;

/* Opens t->s; name labels the directory and the database. */
static inline void cv_test_store_open(cv_test_store_t *t, const char *name, const char *pg_base)
{
	char err[256], path[96];
	snprintf(t->dir, sizeof t->dir, "/tmp/cv-%s-XXXXXX", name);
	assert_non_null(mkdtemp(t->dir));
	snprintf(path, sizeof path, "%s/master.key", t->dir);
	assert_int_equal(cv_crypto_init(err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_create(path, err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_load(path, &t->master, err, sizeof err), CV_OK);
	t->url[0] = '\0';
	if (pg_base && pg_base[0])
		assert_int_equal(cv_test_pg_database(pg_base, name, t->url, sizeof t->url), 0);
	assert_int_equal(cv_store_open(t->dir, t->url, 2, t->master, &t->s, err, sizeof err), CV_OK);
}

/* Closes the store and removes the directory. */
static inline void cv_test_store_close(cv_test_store_t *t)
{
	char cmd[96];
	cv_store_close(t->s);
	cv_key_free(t->master);
	snprintf(cmd, sizeof cmd, "rm -rf %s", t->dir);
	assert_int_equal(system(cmd), 0);
}

#endif
