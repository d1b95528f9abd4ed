/*
 * testpg.h - for unit tests that run a second time on PostgreSQL (when
 * CV_TEST_PG_BASE names a throwaway cluster, as scripts/test starts one):
 * a fresh database per test.
 */
#ifndef CV_TESTS_TESTPG_H
#define CV_TESTS_TESTPG_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Creates database <prefix>_<pid>_<n> on base; url gets its postgresql:// URL.
 * Returns system()'s status (0 on success). */
static inline int cv_test_pg_database(const char *base, const char *prefix, char *url, size_t len)
{
	static int seq;
	char db[96], cmd[1200];
	snprintf(db, sizeof db, "%s_%d_%d", prefix, (int)getpid(), ++seq);
	snprintf(cmd, sizeof cmd, "psql '%s' -v ON_ERROR_STOP=1 -qc 'CREATE DATABASE %s' >/dev/null", base, db);
	int st = system(cmd);
	const char *q = strchr(base, '?');
	const char *slash = q ? q : base + strlen(base);
	while (slash > base && *slash != '/')
		slash--;
	snprintf(url, len, "%.*s/%s%s", (int)(slash - base), base, db, q ? q : "");
	return st;
}

/* Runs the cmocka group `tests` on SQLite, then, when CV_TEST_PG_BASE names
 * a cluster, again on PostgreSQL with pg_var set to it (the fixtures read
 * pg_var; NULL in the first run). The number of failed tests. Use after
 * cmocka.h. */
#define CV_TEST_RUN_ON_BOTH(tests, what, pg_var)                                                        \
	__extension__({                                                                                  \
		int failed_ = cmocka_run_group_tests_name(what " on SQLite", tests, NULL, NULL);          \
		(pg_var) = getenv("CV_TEST_PG_BASE");                                                    \
		if ((pg_var) && (pg_var)[0])                                                             \
			failed_ += cmocka_run_group_tests_name(what " on PostgreSQL", tests, NULL, NULL); \
		failed_;                                                                                 \
	})

#endif
