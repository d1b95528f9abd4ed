/*
 * test_session.c - a login and its audit record commit together: the
 * outcome is told before the write that settles it (the session, or the
 * failure count), and when that write's record cannot be stored the login
 * fails with nothing opened. Runs on SQLite, and on PostgreSQL too with
 * CV_TEST_PG_BASE.
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

#include "../teststore.h"
#include "audit/audit.h"
#include "auth/password.h"
#include "auth/session.h"
#include "core/pool.h"
#include "core/time.h"

static const char *pg_base;

#define PASSWORD "a long passphrase nobody guesses"

typedef struct fx {
	cv_test_store_t t;
	cv_store_t *s;
	cv_pool_t pool;
	char user[CV_ACCOUNT_ID_LEN + 1];
	/* the companion */
	const char *type;  /* the internal type whose write carries the record */
	bool refuse;       /* it cannot be made */
	int asked;
	cv_store_write_t rec[4];
	/* the settling hook */
	int told;
	cv_login_result res;
	char told_account[CV_ACCOUNT_ID_LEN + 1];
	int sessions_when_told;
} fx_t;

static cv_rc count_session(void *arg, const cv_session_info_t *i)
{
	(void)i;
	(*(int *)arg)++;
	return CV_OK;
}

static int sessions(fx_t *f)
{
	int n = 0;
	cv_session_limits_t l = { 900 * 1000000LL, 43200 * 1000000LL };
	assert_int_equal(cv_session_each(f->s, f->user, &l, cv_time_now_us(), count_session, &n), CV_OK);
	return n;
}

static int64_t trail_head(fx_t *f)
{
	int64_t pos = 0;
	uint8_t hash[CV_AUDIT_HASH_BYTES];
	cv_rc rc = cv_store_audit_head(f->s, &pos, hash);
	assert_true(rc == CV_OK || rc == CV_E_NOTFOUND);
	return rc ? 0 : pos;
}

static cv_rc login_companion(void *arg, const cv_store_write_t *w, cv_store_write_t **rec)
{
	fx_t *f = arg;
	*rec = NULL;
	if (!cv_store_version_of(w, f->type))
		return CV_OK;
	if (f->refuse)
		return CV_E_NOMEM;
	assert_true(f->asked < 4);
	cv_audit_event_t e = { .type = CV_AUDIT_LOGIN, .subtype = "login", .action = 'E', .status = 200,
			       .agent = f->user, .agent_kind = "user", .role = "patient", .address = "192.0.2.9" };
	cv_store_write_t *r = &f->rec[f->asked++];
	assert_int_equal(cv_audit_build(&e, &f->pool, r), CV_OK);
	*rec = r;
	return CV_OK;
}

static void settling(void *arg, cv_login_result res, const cv_account_t *a)
{
	fx_t *f = arg;
	f->told++;
	f->res = res;
	snprintf(f->told_account, sizeof f->told_account, "%s", a ? a->id : "(none)");
	f->sessions_when_told = sessions(f);
}

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	cv_test_store_open(&f->t, "cv_unit_session", pg_base);
	f->s = f->t.s;
	cv_pool_init(&f->pool, 0);
	cv_account_t a;
	assert_int_equal(cv_account_init(&a, "Pat.Session", CV_ROLE_PATIENT, "Patient/p-session"), CV_OK);
	assert_int_equal(cv_password_hash(NULL, PASSWORD, a.pwhash), CV_OK);
	assert_int_equal(cv_account_create(f->s, &a), CV_OK);
	snprintf(f->user, sizeof f->user, "%s", a.id);
	cv_account_release(&a);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	cv_store_companion_clear();
	cv_pool_release(&f->pool);
	cv_test_store_close(&f->t);
	free(f);
	return 0;
}

static cv_rc login(fx_t *f, const char *username, const char *password, cv_login_result *res)
{
	char token[CV_SESSION_TOKEN_MAX];
	cv_session_info_t info;
	int64_t retry = 0;
	cv_login_t in = { .username = username, .password = password, .address = "192.0.2.9",
			  .now_us = cv_time_now_us(), .settling = settling, .settling_arg = f };
	f->told = 0;
	cv_store_companion_set(login_companion, f);
	cv_rc rc = cv_session_login(f->s, &in, res, token, &info, &retry);
	cv_store_companion_clear();
	return rc;
}

static void a_session_opens_only_with_its_record(void **state)
{
	fx_t *f = *state;
	cv_login_result res;
	f->type = CV_SESSION_TYPE;
	int64_t before = trail_head(f);
	/* the record cannot be stored: the login fails, no session is open */
	f->refuse = true;
	assert_int_not_equal(login(f, "Pat.Session", PASSWORD, &res), CV_OK);
	assert_int_equal(res, CV_LOGIN_DENIED);
	assert_int_equal(f->told, 1);
	assert_int_equal(f->res, CV_LOGIN_OK);
	assert_string_equal(f->told_account, f->user);
	assert_int_equal(sessions(f), 0);
	assert_int_equal(trail_head(f), before);
	/* it can: the session and its record commit together; the outcome was
	 * told before the session was written */
	f->refuse = false;
	assert_int_equal(login(f, "Pat.Session", PASSWORD, &res), CV_OK);
	assert_int_equal(res, CV_LOGIN_OK);
	assert_int_equal(f->told, 1);
	assert_int_equal(f->sessions_when_told, 0);
	assert_int_equal(f->asked, 1);
	assert_int_equal(f->rec[0].result, CV_OK);
	assert_int_equal(sessions(f), 1);
	assert_int_equal(trail_head(f), before + 1);
}

static void a_failure_is_counted_only_with_its_record(void **state)
{
	fx_t *f = *state;
	cv_login_result res;
	f->type = CV_THROTTLE_TYPE;
	int64_t before = trail_head(f);
	/* a wrong password: told DENIED with the account, before the count is written */
	f->refuse = true;
	assert_int_not_equal(login(f, "Pat.Session", "not the passphrase at all", &res), CV_OK);
	assert_int_equal(res, CV_LOGIN_DENIED);
	assert_int_equal(f->told, 1);
	assert_int_equal(f->res, CV_LOGIN_DENIED);
	assert_string_equal(f->told_account, f->user);
	assert_int_equal(trail_head(f), before);
	f->refuse = false;
	assert_int_equal(login(f, "Pat.Session", "not the passphrase at all", &res), CV_OK);
	assert_int_equal(res, CV_LOGIN_DENIED);
	assert_int_equal(f->asked, 1); /* the account's counter carried it; the address's did not */
	assert_int_equal(f->rec[0].result, CV_OK);
	assert_int_equal(trail_head(f), before + 1);
	/* no such account: told so (an empty id) */
	assert_int_equal(login(f, "Nobody.Here", "whatever it may be", &res), CV_OK);
	assert_int_equal(res, CV_LOGIN_DENIED);
	assert_string_equal(f->told_account, "");
	assert_int_equal(f->asked, 2);
	assert_int_equal(trail_head(f), before + 2);
	/* the right password after failures: the reset count is written before the
	 * session, which carries the record */
	f->type = CV_SESSION_TYPE;
	assert_int_equal(login(f, "Pat.Session", PASSWORD, &res), CV_OK);
	assert_int_equal(res, CV_LOGIN_OK);
	assert_int_equal(f->asked, 3);
	assert_int_equal(sessions(f), 1);
	assert_int_equal(trail_head(f), before + 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_session_opens_only_with_its_record, setup, teardown),
		cmocka_unit_test_setup_teardown(a_failure_is_counted_only_with_its_record, setup, teardown),
	};
	return CV_TEST_RUN_ON_BOTH(tests, "sessions", pg_base);
}
