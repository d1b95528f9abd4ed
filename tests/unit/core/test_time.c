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

/* Every precision, zones, month lengths and leap years. */
static void ranges(void **state)
{
	int64_t lo, hi, a, b;
	int prec;
	assert_int_equal(cv_time_range("2013", &lo, &hi, &prec), CV_OK);
	assert_int_equal(prec, 1);
	assert_int_equal(cv_time_parse("2013-01-01T00:00:00Z", &a), CV_OK);
	assert_int_equal(cv_time_parse("2014-01-01T00:00:00Z", &b), CV_OK);
	assert_true(lo == a && hi == b - 1);
	assert_int_equal(cv_time_range("2012-02", &lo, &hi, &prec), CV_OK);
	assert_int_equal(prec, 2);
	assert_true(hi - lo + 1 == 29LL * 86400 * 1000000); /* leap year */
	assert_int_equal(cv_time_range("2013-12", &lo, &hi, NULL), CV_OK);
	assert_int_equal(cv_time_parse("2014-01-01T00:00:00Z", &b), CV_OK);
	assert_true(hi == b - 1);
	assert_int_equal(cv_time_range("2013-01-14", &lo, &hi, &prec), CV_OK);
	assert_true(prec == 3 && hi - lo + 1 == 86400LL * 1000000);
	assert_int_equal(cv_time_range("2013-01-14T10:00", &lo, &hi, &prec), CV_OK);
	assert_true(prec == 4 && hi - lo + 1 == 60LL * 1000000);
	assert_int_equal(cv_time_range("2013-01-14T10:00:00+02:00", &lo, &hi, NULL), CV_OK);
	assert_int_equal(cv_time_parse("2013-01-14T08:00:00Z", &a), CV_OK);
	assert_true(lo == a && hi == a + 999999);
	assert_int_equal(cv_time_range("2013-01-14T10:00:00.25Z", &lo, &hi, NULL), CV_OK);
	assert_int_equal(cv_time_parse("2013-01-14T10:00:00Z", &a), CV_OK);
	assert_true(lo == a + 250000 && hi == lo + 9999);
	assert_int_equal(cv_time_range("1950-06-30T23:59:59-05:00", &lo, &hi, NULL), CV_OK);
	assert_int_equal(cv_time_parse("1950-07-01T04:59:59Z", &a), CV_OK);
	assert_true(lo == a);
	const char *bad[] = { "2013-02-29", "2012-02-30", "2013-04-31", "13", "2013-1", "2013-01-14T", "2013-01-14T10",
			      "2013-01-14T24:00", "2013-01-14T10:00:00.", "2013T10:00", "2013-01-14 10:00", "" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (cv_time_range(bad[i], &lo, &hi, NULL) == CV_OK)
			fail_msg("accepted '%s'", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(formats_round_trip), cmocka_unit_test(zones_and_partial_dates), cmocka_unit_test(refusals),
		cmocka_unit_test(ranges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
