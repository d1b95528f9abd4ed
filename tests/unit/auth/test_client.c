/*
 * test_client.c - system scopes (SMART v1 and v2 syntax; what is refused as
 * malformed and what as not supported yet) and granting a request within a
 * client's registration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth/client.h"

static cv_scope_grant_t g(const char *scope, cv_rc want)
{
	cv_scope_grant_t out;
	assert_int_equal(cv_scope_parse(scope, &out), want);
	return out;
}

static void scopes_v1_and_v2(void **state)
{
	(void)state;
	cv_scope_grant_t x = g("system/*.cruds", CV_OK);
	assert_true(x.c && x.r && x.u && x.d && x.s);
	x = g("system/*.rs", CV_OK);
	assert_true(!x.c && x.r && !x.u && !x.d && x.s);
	x = g("system/*.read", CV_OK);
	assert_true(x.r && x.s && !x.c);
	x = g("system/*.write", CV_OK);
	assert_true(x.c && x.u && x.d && !x.r && !x.s);
	x = g("system/*.*", CV_OK);
	assert_true(x.c && x.r && x.u && x.d && x.s);
	/* v2 letters come in the order c r u d s, each once */
	g("system/*.sr", CV_E_INVALID);
	g("system/*.rrs", CV_E_INVALID);
	g("system/*.", CV_E_INVALID);
	g("system/*.x", CV_E_INVALID);
	g("system/.rs", CV_E_INVALID);
	g("root/*.rs", CV_E_INVALID);
	g("system/*", CV_E_INVALID);
	g("", CV_E_INVALID);
	/* well-formed, but not grantable yet */
	g("system/Patient.rs", CV_E_UNSUPPORTED);
	g("user/*.cruds", CV_E_UNSUPPORTED);
	g("patient/Observation.rs", CV_E_UNSUPPORTED);
	g("system/Observation.rs?category=laboratory", CV_E_UNSUPPORTED);
	g("openid", CV_E_UNSUPPORTED);
	g("fhirUser", CV_E_UNSUPPORTED);
	g("launch/patient", CV_E_UNSUPPORTED);
}

static void lists_and_grants(void **state)
{
	(void)state;
	cv_scope_grant_t all;
	char why[128];
	assert_int_equal(cv_scope_list("  system/*.rs   system/*.c ", &all, why, sizeof why), CV_OK);
	assert_true(all.c && all.r && all.s && !all.u && !all.d);
	assert_int_equal(cv_scope_list("system/*.rs user/*.rs", &all, why, sizeof why), CV_E_UNSUPPORTED);
	assert_non_null(strstr(why, "user/"));
	cv_client_t c;
	memset(&c, 0, sizeof c);
	snprintf(c.scope, sizeof c.scope, "system/*.rs");
	cv_buf_t out;
	cv_buf_init(&out, 1024);
	assert_int_equal(cv_scope_grant(&c, "system/*.cruds system/*.r system/*.rs openid", &out), CV_OK);
	assert_string_equal(out.data, "system/*.r system/*.rs");
	assert_int_equal(cv_scope_grant(&c, "system/*.cruds", &out), CV_OK);
	assert_int_equal(out.len, 0);
	assert_int_equal(cv_scope_grant(&c, "system/*.zz", &out), CV_E_INVALID);
	cv_buf_release(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(scopes_v1_and_v2),
		cmocka_unit_test(lists_and_grants),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
