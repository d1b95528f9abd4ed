/*
 * test_client.c - SMART scopes (v1 and v2 syntax, granular scopes, named
 * scopes; what is malformed), comparing them, checking a registration and
 * granting a request within it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth/scope.h"

static cv_scope_t sc(const char *text, cv_rc want)
{
	cv_scope_t out;
	assert_int_equal(cv_scope_parse(text, &out), want);
	return out;
}

static void scopes_v1_and_v2(void **state)
{
	(void)state;
	cv_scope_t x = sc("system/*.cruds", CV_OK);
	assert_int_equal(x.kind, CV_SCOPE_RESOURCE);
	assert_int_equal(x.ctx, CV_SCOPE_SYSTEM);
	assert_int_equal(x.perms, CV_SCOPE_ALL);
	assert_false(x.v1);
	x = sc("patient/Observation.rs", CV_OK);
	assert_int_equal(x.ctx, CV_SCOPE_PATIENT);
	assert_string_equal(x.type, "Observation");
	assert_int_equal(x.perms, CV_SCOPE_R | CV_SCOPE_S);
	x = sc("user/*.read", CV_OK);
	assert_true(x.v1);
	assert_int_equal(x.perms, CV_SCOPE_R | CV_SCOPE_S);
	assert_int_equal(sc("user/Patient.write", CV_OK).perms, CV_SCOPE_C | CV_SCOPE_U | CV_SCOPE_D);
	assert_int_equal(sc("system/*.*", CV_OK).perms, CV_SCOPE_ALL);
	/* v2 letters come in the order c r u d s, each once */
	sc("system/*.sr", CV_E_INVALID);
	sc("system/*.rrs", CV_E_INVALID);
	sc("system/*.", CV_E_INVALID);
	sc("system/*.x", CV_E_INVALID);
	sc("system/.rs", CV_E_INVALID);
	sc("root/*.rs", CV_E_INVALID);
	sc("system/*", CV_E_INVALID);
	sc("patient/observation.rs", CV_E_INVALID);
	sc("patient/Obs-ervation.rs", CV_E_INVALID);
	sc("", CV_E_INVALID);
	sc("openidx", CV_E_INVALID);
	sc("launch/practitioner", CV_E_INVALID);
}

static void granular_and_named(void **state)
{
	(void)state;
	const char *lab = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
	cv_scope_t x = sc(lab, CV_OK);
	assert_non_null(x.query);
	assert_string_equal(x.query, "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory");
	sc("patient/Observation.read?category=laboratory", CV_E_INVALID); /* granular is v2 only */
	sc("patient/Observation.rs?", CV_E_INVALID);
	sc("patient/Observation.rs?category", CV_E_INVALID);
	sc("patient/Observation.rs?category=a b", CV_E_INVALID);
	sc("patient/Observation.rs?category=<script>", CV_E_INVALID);
	assert_int_equal(sc("openid", CV_OK).kind, CV_SCOPE_OPENID);
	assert_int_equal(sc("fhirUser", CV_OK).kind, CV_SCOPE_FHIRUSER);
	assert_int_equal(sc("launch/patient", CV_OK).kind, CV_SCOPE_LAUNCH_PATIENT);
	assert_int_equal(sc("offline_access", CV_OK).kind, CV_SCOPE_OFFLINE);
	assert_int_equal(sc("online_access", CV_OK).kind, CV_SCOPE_ONLINE);
}

static void within(void **state)
{
	(void)state;
	cv_scope_t a = sc("patient/Observation.rs", CV_OK), b = sc("patient/*.cruds", CV_OK);
	assert_true(cv_scope_within(&a, &b));
	assert_false(cv_scope_within(&b, &a));
	cv_scope_t u = sc("user/Observation.rs", CV_OK);
	assert_false(cv_scope_within(&u, &b)); /* the context must match */
	cv_scope_t g = sc("patient/Observation.rs?category=laboratory", CV_OK);
	assert_true(cv_scope_within(&g, &b));  /* narrower than the whole type */
	assert_false(cv_scope_within(&a, &g)); /* wider than the granular one */
	cv_scope_t o = sc("openid", CV_OK), f = sc("fhirUser", CV_OK);
	assert_true(cv_scope_within(&o, &o));
	assert_false(cv_scope_within(&o, &f));
}

static void registration(void **state)
{
	(void)state;
	char why[160];
	assert_int_equal(cv_scope_check_registration("system/*.rs system/Patient.c", true, why, sizeof why), CV_OK);
	assert_int_equal(cv_scope_check_registration("system/*.rs user/*.rs", true, why, sizeof why), CV_E_INVALID);
	assert_non_null(strstr(why, "user/*.rs"));
	assert_int_equal(cv_scope_check_registration("launch/patient openid fhirUser offline_access patient/*.rs user/*.cruds",
						      false, why, sizeof why), CV_OK);
	assert_int_equal(cv_scope_check_registration("openid system/*.rs", false, why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_scope_check_registration("openid bogus", false, why, sizeof why), CV_E_INVALID);
	assert_non_null(strstr(why, "bogus"));
}

static void intersect_and_perms(void **state)
{
	(void)state;
	cv_buf_t out;
	cv_buf_init(&out, 1024);
	assert_int_equal(cv_scope_intersect("system/*.rs", "system/*.cruds system/*.r system/*.rs system/*.r", &out), CV_OK);
	assert_string_equal(out.data, "system/*.r system/*.rs");
	assert_int_equal(cv_scope_intersect("system/*.rs", "system/*.cruds", &out), CV_OK);
	assert_int_equal(out.len, 0);
	assert_int_equal(cv_scope_intersect("system/*.rs", "system/*.zz", &out), CV_E_INVALID);
	assert_int_equal(cv_scope_intersect("launch/patient openid patient/*.rs", "openid fhirUser patient/Patient.r launch/patient user/*.rs",
					    &out), CV_OK);
	assert_string_equal(out.data, "openid patient/Patient.r launch/patient");
	const char *t = "patient/Patient.r patient/Observation.rs?category=laboratory user/*.s system/Encounter.cud";
	assert_int_equal(cv_scope_perms(t, CV_SCOPE_PATIENT, "Patient"), CV_SCOPE_R);
	assert_int_equal(cv_scope_perms(t, CV_SCOPE_PATIENT, "Observation"), 0); /* granular: not type-wide */
	assert_int_equal(cv_scope_perms(t, CV_SCOPE_USER, "Observation"), CV_SCOPE_S);
	assert_int_equal(cv_scope_perms(t, CV_SCOPE_SYSTEM, "Encounter"), CV_SCOPE_C | CV_SCOPE_U | CV_SCOPE_D);
	assert_int_equal(cv_scope_perms(t, CV_SCOPE_SYSTEM, NULL), 0); /* not on every type */
	assert_int_equal(cv_scope_perms("system/*.rs", CV_SCOPE_SYSTEM, NULL), CV_SCOPE_R | CV_SCOPE_S);
	assert_true(cv_scope_has("openid fhirUser", CV_SCOPE_FHIRUSER));
	assert_false(cv_scope_has("openid", CV_SCOPE_OFFLINE));
	cv_buf_release(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(scopes_v1_and_v2),
		cmocka_unit_test(granular_and_named),
		cmocka_unit_test(within),
		cmocka_unit_test(registration),
		cmocka_unit_test(intersect_and_perms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
