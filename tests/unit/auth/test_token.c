/*
 * test_token.c - access tokens, grants, authorization codes and refresh
 * tokens, attacked: PKCE (RFC 7636 appendix B vector, wrong verifier), a
 * reused code revokes what was issued from it, a refresh token used twice
 * revokes its family, another client's code, a redirect URI off by one
 * character, expiry, a disabled account, a moved epoch, a disabled client,
 * revocation (RFC 7009). On SQLite, and on PostgreSQL when CV_TEST_PG_BASE
 * is set.
 */
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
#include "auth/token.h"
#include "auth/users.h"
#include "core/time.h"

#define VERIFIER "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define CHALLENGE "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
#define REDIRECT "https://app.example/cb"
#define US 1000000LL

typedef struct fx {
	cv_test_store_t t;
	cv_store_t *s;
	cv_client_t app, other;
	cv_account_t user;
} fx_t;

static void register_app(cv_store_t *s, cv_client_t *c)
{
	char secret[CV_CLIENT_SECRET_MAX], why[200] = "";
	const char *redirects[] = { REDIRECT };
	assert_int_equal(cv_client_register(s, "App", "public", redirects, 1, "launch/patient openid fhirUser offline_access patient/*.rs",
					    NULL, c, secret, why, sizeof why),
			 CV_OK);
}

static int open_fx(void **state, const char *pg_base)
{
	fx_t *f = calloc(1, sizeof *f);
	cv_test_store_open(&f->t, "cvtoken", pg_base);
	f->s = f->t.s;
	register_app(f->s, &f->app);
	register_app(f->s, &f->other);
	assert_int_equal(cv_account_init(&f->user, "pat.token", CV_ROLE_PATIENT, "Patient/p1"), CV_OK);
	assert_int_equal(cv_account_create(f->s, &f->user), CV_OK);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return open_fx(state, NULL);
}

static int setup_pg(void **state)
{
	return open_fx(state, getenv("CV_TEST_PG_BASE"));
}

static int teardown(void **state)
{
	fx_t *f = *state;
	cv_client_release(&f->app);
	cv_client_release(&f->other);
	cv_account_release(&f->user);
	cv_test_store_close(&f->t);
	free(f);
	return 0;
}

/* A grant of the fixture's user to the app. */
static void make_grant(fx_t *f, cv_grant_t *g)
{
	memset(g, 0, sizeof *g);
	snprintf(g->client, sizeof g->client, "%s", f->app.id);
	snprintf(g->user, sizeof g->user, "%s", f->user.id);
	snprintf(g->scope, sizeof g->scope, "launch/patient patient/*.rs offline_access");
	snprintf(g->patient, sizeof g->patient, "p1");
	g->epoch = f->user.epoch;
	assert_int_equal(cv_grant_create(f->s, g, cv_time_now_us()), CV_OK);
}

static void pkce_rfc7636_vector(void **state)
{
	(void)state;
	char c[CV_CHALLENGE_LEN + 1];
	assert_int_equal(cv_pkce_s256(VERIFIER, c), CV_OK);
	assert_string_equal(c, CHALLENGE);
	assert_int_equal(cv_pkce_s256("short", c), CV_E_INVALID);
	assert_int_equal(cv_pkce_s256(VERIFIER "+", c), CV_E_INVALID);
	char longv[130];
	memset(longv, 'a', 129);
	longv[129] = '\0';
	assert_int_equal(cv_pkce_s256(longv, c), CV_E_INVALID);
	longv[128] = '\0';
	assert_int_equal(cv_pkce_s256(longv, c), CV_OK);
}

static void code_once_and_bound(void **state)
{
	fx_t *f = *state;
	cv_grant_t g;
	char code[CV_ACCESS_TOKEN_MAX], tok[CV_ACCESS_TOKEN_MAX];
	cv_grant_t got;
	int64_t now = cv_time_now_us();
	cv_token_info_t info;
	make_grant(f, &g);
	/* wrong verifier, other client, redirect off by one: refused (and the code is spent) */
	assert_int_equal(cv_code_issue(f->s, &g, REDIRECT, CHALLENGE, now, code), CV_OK);
	assert_int_equal(cv_code_redeem(f->s, code, f->app.id, REDIRECT, VERIFIER "x", now, &got), CV_E_UNAUTH);
	assert_int_equal(cv_code_redeem(f->s, code, f->app.id, REDIRECT, VERIFIER, now, &got), CV_E_UNAUTH);
	make_grant(f, &g);
	assert_int_equal(cv_code_issue(f->s, &g, REDIRECT, CHALLENGE, now, code), CV_OK);
	assert_int_equal(cv_code_redeem(f->s, code, f->other.id, REDIRECT, VERIFIER, now, &got), CV_E_UNAUTH);
	make_grant(f, &g);
	assert_int_equal(cv_code_issue(f->s, &g, REDIRECT, CHALLENGE, now, code), CV_OK);
	assert_int_equal(cv_code_redeem(f->s, code, f->app.id, REDIRECT "/", VERIFIER, now, &got), CV_E_UNAUTH);
	/* expired */
	make_grant(f, &g);
	assert_int_equal(cv_code_issue(f->s, &g, REDIRECT, CHALLENGE, now, code), CV_OK);
	assert_int_equal(cv_code_redeem(f->s, code, f->app.id, REDIRECT, VERIFIER, now + (CV_CODE_LIFE_S + 1) * US, &got),
			 CV_E_UNAUTH);
	/* the right one works once; a second use revokes the token issued from it */
	make_grant(f, &g);
	assert_int_equal(cv_code_issue(f->s, &g, REDIRECT, CHALLENGE, now, code), CV_OK);
	assert_int_equal(cv_code_redeem(f->s, code, f->app.id, REDIRECT, VERIFIER, now, &got), CV_OK);
	assert_string_equal(got.id, g.id);
	assert_int_equal(cv_token_issue(f->s, f->app.id, g.scope, g.id, now, 300, tok), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_OK);
	assert_string_equal(info.user, f->user.id);
	assert_string_equal(info.role, "patient");
	assert_string_equal(info.link, "Patient/p1");
	assert_string_equal(info.patient, "p1");
	assert_int_equal(cv_code_redeem(f->s, code, f->app.id, REDIRECT, VERIFIER, now, &got), CV_E_UNAUTH);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_E_UNAUTH);
}

static void refresh_rotation_and_reuse(void **state)
{
	fx_t *f = *state;
	cv_grant_t g;
	char r1[CV_ACCESS_TOKEN_MAX], r2[CV_ACCESS_TOKEN_MAX], tok[CV_ACCESS_TOKEN_MAX];
	cv_grant_t got;
	int64_t now = cv_time_now_us();
	cv_token_info_t info;
	make_grant(f, &g);
	assert_int_equal(cv_refresh_issue(f->s, &g, r1), CV_OK);
	assert_int_equal(cv_refresh_redeem(f->s, r1, f->other.id, now, &got), CV_E_UNAUTH); /* not its token */
	make_grant(f, &g);
	assert_int_equal(cv_refresh_issue(f->s, &g, r1), CV_OK);
	assert_int_equal(cv_refresh_redeem(f->s, r1, f->app.id, now, &got), CV_OK);
	assert_int_equal(cv_refresh_issue(f->s, &got, r2), CV_OK);
	assert_int_equal(cv_token_issue(f->s, f->app.id, g.scope, got.id, now, 300, tok), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_OK);
	/* the old one comes back: the family ends, the newest tokens with it */
	assert_int_equal(cv_refresh_redeem(f->s, r1, f->app.id, now, &got), CV_E_UNAUTH);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_E_UNAUTH);
	assert_int_equal(cv_refresh_redeem(f->s, r2, f->app.id, now, &got), CV_E_UNAUTH);
}

static void account_and_client_state(void **state)
{
	fx_t *f = *state;
	cv_grant_t g;
	char tok[CV_ACCESS_TOKEN_MAX], r[CV_ACCESS_TOKEN_MAX];
	cv_grant_t got;
	int64_t now = cv_time_now_us();
	cv_token_info_t info;
	make_grant(f, &g);
	assert_int_equal(cv_token_issue(f->s, f->app.id, g.scope, g.id, now, 300, tok), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now + 301 * US, &info), CV_E_UNAUTH); /* expired */
	/* logout everywhere moves the epoch: the token and the refresh token stop */
	assert_int_equal(cv_refresh_issue(f->s, &g, r), CV_OK);
	assert_int_equal(cv_users_apply(f->s, f->user.id, true, CV_USERS_REVOKE_SESSIONS, NULL, NULL), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_E_UNAUTH);
	assert_int_equal(cv_refresh_redeem(f->s, r, f->app.id, now, &got), CV_E_UNAUTH);
	/* a new grant at the new epoch; then the client is disabled */
	cv_account_t a;
	assert_int_equal(cv_account_get(f->s, f->user.id, &a), CV_OK);
	f->user.epoch = a.epoch;
	cv_account_release(&a);
	make_grant(f, &g);
	assert_int_equal(cv_token_issue(f->s, f->app.id, g.scope, g.id, now, 300, tok), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_OK);
	assert_int_equal(cv_client_set_disabled(f->s, f->app.id, true), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_E_UNAUTH);
	assert_int_equal(cv_client_set_disabled(f->s, f->app.id, false), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_OK);
	/* disabling the account */
	assert_int_equal(cv_users_apply(f->s, f->user.id, true, CV_USERS_DISABLE, NULL, NULL), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_E_UNAUTH);
}

static void revocation(void **state)
{
	fx_t *f = *state;
	cv_grant_t g;
	char tok[CV_ACCESS_TOKEN_MAX], tok2[CV_ACCESS_TOKEN_MAX], r[CV_ACCESS_TOKEN_MAX];
	int64_t now = cv_time_now_us();
	cv_token_info_t info;
	make_grant(f, &g);
	assert_int_equal(cv_token_issue(f->s, f->app.id, g.scope, g.id, now, 300, tok), CV_OK);
	assert_int_equal(cv_token_revoke(f->s, f->other.id, tok), CV_OK); /* not its own: ignored */
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_OK);
	assert_int_equal(cv_token_revoke(f->s, f->app.id, tok), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_E_UNAUTH);
	assert_int_equal(cv_token_revoke(f->s, f->app.id, tok), CV_OK); /* again: still fine */
	assert_int_equal(cv_token_revoke(f->s, f->app.id, "cva_nonsense"), CV_OK);
	/* revoking a refresh token ends its family */
	make_grant(f, &g);
	assert_int_equal(cv_token_issue(f->s, f->app.id, g.scope, g.id, now, 300, tok2), CV_OK);
	assert_int_equal(cv_refresh_issue(f->s, &g, r), CV_OK);
	assert_int_equal(cv_token_revoke(f->s, f->app.id, r), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok2, now, &info), CV_E_UNAUTH);
	/* a backend token (no grant) is just the client's */
	assert_int_equal(cv_token_issue(f->s, f->other.id, "system/*.rs", NULL, now, 300, tok), CV_OK);
	assert_int_equal(cv_token_check(f->s, tok, now, &info), CV_OK);
	assert_string_equal(info.user, "");
	assert_int_equal(cv_token_check(f->s, "cvb_x", now, &info), CV_E_UNAUTH);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pkce_rfc7636_vector),
		cmocka_unit_test_setup_teardown(code_once_and_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(refresh_rotation_and_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(account_and_client_state, setup, teardown),
		cmocka_unit_test_setup_teardown(revocation, setup, teardown),
		cmocka_unit_test_setup_teardown(code_once_and_bound, setup_pg, teardown),
		cmocka_unit_test_setup_teardown(refresh_rotation_and_reuse, setup_pg, teardown),
		cmocka_unit_test_setup_teardown(account_and_client_state, setup_pg, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
