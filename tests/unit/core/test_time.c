/*
 * test_time.c - FHIR instants and HTTP dates, before and after 1970, and the
 * parser's refusals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/time.h"

static void formats_round_trip(void **state)
{
	const char *v[] = { "0001-01-01T00:00:00.000Z", "1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00.000Z",
			    "2026-11-22T21:39:41.123Z", "9999-12-31T23:59:59.999Z" };
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		int64_t us;
		char out[40];
		assert_int_equal(cv_time_parse(v[i], &us), CV_OK);
		assert_string_equal(cv_time_format_instant(us, out, sizeof out), v[i]);
	}
}

static void zones_and_partial_dates(void **state)
{
	int64_t a, b;
	assert_int_equal(cv_time_parse("2026-11-22T23:00:00+02:00", &a), CV_OK);
	assert_int_equal(cv_time_parse("2026-11-22T21:00:00Z", &b), CV_OK);
	assert_true(a == b);
	assert_int_equal(cv_time_parse("2026-11", &a), CV_OK);
	assert_int_equal(cv_time_parse("2026-11-01T00:00:00Z", &b), CV_OK);
	assert_true(a == b);
	char out[40];
	assert_string_equal(cv_time_format_http(b, out, sizeof out), "Sun, 01 Nov 2026 00:00:00 GMT");
}

static void refusals(void **state)
{
	const char *bad[] = { "", "yesterday", "2026-13-01", "2026-11-22T25:00:00Z", "2026-11-22T10:00", "2026-1-1",
			      "2026-11-22T10:00:00", "2026-11-22T10:00:00+2:00" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int64_t us;
		if (cv_time_parse(bad[i], &us) == CV_OK)
			fail_msg("accepted '%s'", bad[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(formats_round_trip), cmocka_unit_test(zones_and_partial_dates), cmocka_unit_test(refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
