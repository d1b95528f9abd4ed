/*
 * test_auth.c - bearer authentication and the policy decision, attacked:
 * no token, forged tokens, wrong scheme, a token of the right shape, and
 * deny by default for actions no rule grants.
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

#include "auth/account.h"
#include "auth/auth.h"
#include "policy/policy.h"

typedef struct fx {
	char dir[32];
	cv_key_t *master;
	cv_store_t *s;
	cv_auth_t *a;
	char token[CV_TOKEN_MAX];
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	char err[256], path[64];
	snprintf(f->dir, sizeof f->dir, "/tmp/cv-auth-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(path, sizeof path, "%s/master.key", f->dir);
	assert_int_equal(cv_crypto_init(err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_create(path, err, sizeof err), CV_OK);
	assert_int_equal(cv_crypto_master_load(path, &f->master, err, sizeof err), CV_OK);
	assert_int_equal(cv_store_open(f->dir, NULL, 1, f->master, &f->s, err, sizeof err), CV_OK);
	assert_int_equal(cv_auth_bootstrap_create(f->s, f->token, sizeof f->token), CV_OK);
	assert_int_equal(cv_auth_new(f->s, &f->a), CV_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	char cmd[64];
	cv_auth_free(f->a);
	cv_store_close(f->s);
	cv_key_free(f->master);
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void bootstrap_token(void **state)
{
	fx_t *f = *state;
	char hdr[CV_TOKEN_MAX + 16];
	cv_principal_t p;
	snprintf(hdr, sizeof hdr, "Bearer %s", f->token);
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_OK);
	assert_int_equal(p.kind, CV_PRINCIPAL_ADMIN);
	snprintf(hdr, sizeof hdr, "bearer %s", f->token);
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_OK);
}

static void forged_tokens(void **state)
{
	fx_t *f = *state;
	char hdr[CV_TOKEN_MAX + 16];
	cv_principal_t p;
	const char *bad[] = { "Bearer ", "Bearer x", "Basic YWRtaW46YWRtaW4=", "Bearer cvb_", "token",
			      "Bearer cvb_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(cv_auth_bearer(f->a, bad[i], NULL, &p), CV_E_UNAUTH);
		assert_int_equal(p.kind, CV_PRINCIPAL_NONE);
	}
	/* the real token with one character changed, or cut short, or extended */
	snprintf(hdr, sizeof hdr, "Bearer %s", f->token);
	hdr[strlen(hdr) - 1] ^= 1;
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_E_UNAUTH);
	snprintf(hdr, sizeof hdr, "Bearer %.*s", (int)strlen(f->token) - 1, f->token);
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_E_UNAUTH);
	snprintf(hdr, sizeof hdr, "Bearer %sA", f->token);
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_E_UNAUTH);
	/* no header: anonymous, not an error */
	assert_int_equal(cv_auth_bearer(f->a, NULL, NULL, &p), CV_OK);
	assert_int_equal(p.kind, CV_PRINCIPAL_NONE);
}

static void new_token_replaces_old(void **state)
{
	fx_t *f = *state;
	char old[CV_TOKEN_MAX], hdr[CV_TOKEN_MAX + 16];
	cv_principal_t p;
	memcpy(old, f->token, sizeof old);
	assert_int_equal(cv_auth_bootstrap_create(f->s, f->token, sizeof f->token), CV_OK);
	cv_auth_free(f->a);
	assert_int_equal(cv_auth_new(f->s, &f->a), CV_OK);
	snprintf(hdr, sizeof hdr, "Bearer %s", old);
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_E_UNAUTH);
}

static void policy_denies_by_default(void **state)
{
	cv_principal_t anon = { .kind = CV_PRINCIPAL_NONE }, admin = { .kind = CV_PRINCIPAL_ADMIN, .id = "bootstrap-admin" };
	cv_principal_t user = { .kind = CV_PRINCIPAL_USER, .id = "0123", .role = "doctor", .link = "Practitioner/p",
				.session = "s", .csrf = "c" };
	const char *why;
	assert_int_equal(cv_policy_decide(NULL, &anon, CV_ACT_PUBLIC_HEALTH, NULL, NULL, &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &anon, CV_ACT_PUBLIC_META, NULL, NULL, &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &anon, CV_ACT_AUTH_LOGIN, NULL, NULL, &why), CV_OK);
	for (int a = CV_ACT_FHIR_READ; a <= CV_ACT_FHIR_DELETE; a++) {
		assert_int_equal(cv_policy_decide(NULL, &anon, (cv_action)a, "Patient", NULL, &why), CV_E_UNAUTH);
		assert_int_equal(cv_policy_decide(NULL, &admin, (cv_action)a, "Patient", NULL, &why), CV_OK);
		/* a doctor reaches the record group at the route level; which patients is decided per resource */
		assert_int_equal(cv_policy_decide(NULL, &user, (cv_action)a, "Patient", "p", &why), CV_OK);
		/* an auditor never reaches clinical data, whatever the id */
		cv_principal_t aud = user;
		aud.role = "auditor";
		if (a != CV_ACT_FHIR_BUNDLE) /* a bundle's entries are decided one by one */
			assert_int_equal(cv_policy_decide(NULL, &aud, (cv_action)a, "Observation", "o", &why), CV_E_DENIED);
	}
	/* type and system history are not open to people */
	assert_int_equal(cv_policy_decide(NULL, &user, CV_ACT_FHIR_HISTORY, "Patient", NULL, &why), CV_E_DENIED);
	/* nobody changes the audit trail, not even the bootstrap administrator */
	assert_int_equal(cv_policy_decide(NULL, &admin, CV_ACT_FHIR_UPDATE, "AuditEvent", "a", &why), CV_OK); /* refused if it exists */
	assert_int_equal(cv_policy_decide(NULL, &admin, CV_ACT_FHIR_DELETE, "AuditEvent", "a", &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &user, CV_ACT_AUTH_SESSION, NULL, NULL, &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &user, CV_ACT_ADMIN_USERS, NULL, NULL, &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &anon, CV_ACT_AUTH_SESSION, NULL, NULL, &why), CV_E_UNAUTH);
	assert_int_equal(cv_policy_decide(NULL, &admin, CV_ACT_AUTH_SESSION, NULL, NULL, &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &admin, CV_ACT_ADMIN_USERS, NULL, NULL, &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &admin, CV_ACT_ADMIN_CLIENTS, NULL, NULL, &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &user, CV_ACT_ADMIN_CLIENTS, NULL, NULL, &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &anon, CV_ACT_ADMIN_CLIENTS, NULL, NULL, &why), CV_E_UNAUTH);
	assert_string_equal(cv_action_name(CV_ACT_ADMIN_CLIENTS), "admin.clients");
	assert_int_equal(cv_policy_decide(NULL, &admin, CV_ACT_UNSET, "Patient", NULL, &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &admin, CV_ACT_COUNT, "Patient", NULL, &why), CV_E_DENIED);
	assert_string_equal(cv_action_name(CV_ACT_FHIR_READ), "fhir.read");
}

static void policy_app_tokens(void **state)
{
	(void)state;
	const char *why;
	cv_principal_t pat = { .kind = CV_PRINCIPAL_USER, .id = "u1", .role = "patient", .link = "Patient/p1",
			       .scope = "launch/patient patient/Patient.r", .client = "c1", .patient = "p1" };
	/* the route level: the scopes cover the interaction on the type (which patient is decided per resource) */
	assert_int_equal(cv_policy_decide(NULL, &pat, CV_ACT_FHIR_READ, "Patient", "p1", &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &pat, CV_ACT_FHIR_READ, "Observation", "o1", &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &pat, CV_ACT_FHIR_SEARCH, "Patient", NULL, &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &pat, CV_ACT_FHIR_UPDATE, "Patient", "p1", &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &pat, CV_ACT_FHIR_VREAD, "Patient", "p1", &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &pat, CV_ACT_AUTH_SESSION, NULL, NULL, &why), CV_E_DENIED); /* not a session */
	pat.scope = "launch/patient patient/Observation.rs"; /* no scope on Patient */
	assert_int_equal(cv_policy_decide(NULL, &pat, CV_ACT_FHIR_READ, "Patient", "p1", &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &pat, CV_ACT_FHIR_SEARCH, "Observation", NULL, &why), CV_OK);
	cv_principal_t doc = { .kind = CV_PRINCIPAL_USER, .id = "u2", .role = "doctor", .link = "Practitioner/d",
			       .scope = "user/Observation.rs", .client = "c1" };
	assert_int_equal(cv_policy_decide(NULL, &doc, CV_ACT_FHIR_READ, "Patient", "p1", &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &doc, CV_ACT_FHIR_READ, "Observation", "o1", &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &doc, CV_ACT_FHIR_DELETE, "Observation", "o1", &why), CV_E_DENIED);
	doc.scope = "user/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
	assert_int_equal(cv_policy_decide(NULL, &doc, CV_ACT_FHIR_SEARCH, "Observation", NULL, &why), CV_OK);
	cv_principal_t svc = { .kind = CV_PRINCIPAL_CLIENT, .id = "c2", .client = "c2",
			       .scope = "system/Patient.rs system/*.c" };
	assert_int_equal(cv_policy_decide(NULL, &svc, CV_ACT_FHIR_READ, "Patient", "p1", &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &svc, CV_ACT_FHIR_SEARCH, "Patient", NULL, &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &svc, CV_ACT_FHIR_READ, "Observation", "o", &why), CV_E_DENIED);
	assert_int_equal(cv_policy_decide(NULL, &svc, CV_ACT_FHIR_CREATE, "Observation", NULL, &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &svc, CV_ACT_FHIR_HISTORY, NULL, NULL, &why), CV_E_DENIED); /* system-wide */
	/* a transaction or batch is open: each entry is decided as its own interaction */
	assert_int_equal(cv_policy_decide(NULL, &svc, CV_ACT_FHIR_BUNDLE, NULL, NULL, &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &svc, CV_ACT_ADMIN_USERS, NULL, NULL, &why), CV_E_DENIED);
	/* an administrator's portal session administers accounts, but not through an app's token */
	cv_principal_t adm = { .kind = CV_PRINCIPAL_USER, .id = "u3", .role = "admin", .link = "", .session = "s",
			       .csrf = "c" };
	assert_int_equal(cv_policy_decide(NULL, &adm, CV_ACT_ADMIN_USERS, NULL, NULL, &why), CV_OK);
	assert_int_equal(cv_policy_decide(NULL, &adm, CV_ACT_FHIR_READ, "Patient", "p1", &why), CV_E_DENIED);
	adm.session = NULL;
	adm.client = "c1";
	adm.scope = "user/*.cruds";
	assert_int_equal(cv_policy_decide(NULL, &adm, CV_ACT_ADMIN_USERS, NULL, NULL, &why), CV_E_DENIED);
}

/* The first administrator account retires the bootstrap token, at once. */
static void bootstrap_retired_by_first_admin(void **state)
{
	fx_t *f = *state;
	char hdr[CV_TOKEN_MAX + 16];
	cv_principal_t p;
	cv_account_t a;
	snprintf(hdr, sizeof hdr, "Bearer %s", f->token);
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_OK);
	assert_int_equal(cv_account_init(&a, "nurse.one", CV_ROLE_NURSE, "Practitioner/n"), CV_OK);
	assert_int_equal(cv_account_create(f->s, &a), CV_OK);
	cv_account_release(&a);
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_OK); /* a nurse does not */
	assert_int_equal(cv_account_init(&a, "first.admin", CV_ROLE_ADMIN, ""), CV_OK);
	assert_int_equal(cv_account_create(f->s, &a), CV_OK);
	cv_account_release(&a);
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_E_UNAUTH);
	cv_auth_free(f->a);
	assert_int_equal(cv_auth_new(f->s, &f->a), CV_OK);
	assert_int_equal(cv_auth_bearer(f->a, hdr, NULL, &p), CV_E_UNAUTH); /* after a restart too */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(bootstrap_token, setup, teardown),
		cmocka_unit_test(policy_app_tokens),
		cmocka_unit_test_setup_teardown(bootstrap_retired_by_first_admin, setup, teardown),
		cmocka_unit_test_setup_teardown(forged_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(new_token_replaces_old, setup, teardown),
		cmocka_unit_test(policy_denies_by_default),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
