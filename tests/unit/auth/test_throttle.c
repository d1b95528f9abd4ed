/*
 * test_throttle.c - login throttling, rule by rule, at exact second
 * boundaries: free attempts, the doubling delay and its cap, the account lock
 * and its expiry (and starting over after it), the per-address window, reset
 * on success, a clock that goes back, and a bad policy failing closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth/throttle.h"

#define T0 1700000000

static cv_throttle_decision_t decide(const cv_throttle_account_t *a, const cv_throttle_address_t *ad,
				     int64_t now)
{
	cv_throttle_decision_t d;
	assert_int_equal(cv_throttle_decide(NULL, a, ad, now, &d), CV_OK);
	assert_int_equal(d.permitted, d.wait == 0 && !d.locked);
	return d;
}

static void free_attempts(void **state)
{
	cv_throttle_account_t a = { 0 };
	cv_throttle_address_t ad = { 0 };
	cv_throttle_decision_t d = decide(&a, &ad, T0);
	assert_true(d.permitted);
	assert_int_equal(d.why, CV_THROTTLE_OK);
	for (int i = 0; i < 4; i++) {
		cv_throttle_failure(NULL, &a, &ad, T0);
		d = decide(&a, &ad, T0);
		assert_true(d.permitted);
	}
	cv_throttle_failure(NULL, &a, &ad, T0); /* the fifth */
	assert_int_equal(a.failures, 5);
	d = decide(&a, &ad, T0);
	assert_false(d.permitted);
	assert_false(d.locked);
	assert_int_equal(d.wait, 1);
	assert_int_equal(d.why, CV_THROTTLE_DELAY);
	assert_true(decide(&a, &ad, T0 + 1).permitted);
}

static void delay_doubles_to_cap(void **state)
{
	cv_throttle_account_t a = { 0 };
	int64_t now = T0;
	const int64_t want[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900, 900, 900 };
	int64_t total = 0;

	for (int i = 0; i < 5; i++)
		cv_throttle_failure(NULL, &a, NULL, now);
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		cv_throttle_decision_t d = decide(&a, NULL, now);
		assert_int_equal(d.wait, want[i]);
		assert_false(decide(&a, NULL, now + want[i] - 1).permitted);
		now += want[i];
		total += want[i];
		assert_true(decide(&a, NULL, now).permitted);
		cv_throttle_failure(NULL, &a, NULL, now);
	}
	/* the twentieth failure locks; it took the documented ~92 minutes */
	assert_int_equal(a.failures, 20);
	assert_int_equal(total, 5523);
	assert_true(decide(&a, NULL, now).locked);
}

static void lock_and_expiry(void **state)
{
	cv_throttle_account_t a = { 20, T0 };
	cv_throttle_decision_t d = decide(&a, NULL, T0);
	assert_false(d.permitted);
	assert_true(d.locked);
	assert_int_equal(d.why, CV_THROTTLE_LOCKED);
	assert_int_equal(d.wait, 3600);
	d = decide(&a, NULL, T0 + 3599);
	assert_true(d.locked);
	assert_int_equal(d.wait, 1);
	/* expired: the account starts over, free attempts and all */
	d = decide(&a, NULL, T0 + 3600);
	assert_true(d.permitted);
	assert_false(d.locked);
	cv_throttle_failure(NULL, &a, NULL, T0 + 3600);
	assert_int_equal(a.failures, 1);
	assert_int_equal(a.last_failure, T0 + 3600);
	assert_true(decide(&a, NULL, T0 + 3600).permitted);

	/* more failures recorded while locked (a caller that did not ask) extend it */
	cv_throttle_account_t b = { 20, T0 };
	cv_throttle_failure(NULL, &b, NULL, T0 + 10);
	assert_int_equal(b.failures, 21);
	assert_int_equal(decide(&b, NULL, T0 + 10).wait, 3600);
}

static void lock_until_admin(void **state)
{
	cv_throttle_policy_t pol = CV_THROTTLE_POLICY_DEFAULT;
	cv_throttle_account_t a = { 20, T0 };
	cv_throttle_decision_t d;
	pol.lock_period = 0;
	assert_int_equal(cv_throttle_decide(&pol, &a, NULL, T0 + 100 * 24 * 3600, &d), CV_OK);
	assert_true(d.locked);
	assert_false(d.permitted);
	assert_int_equal(d.wait, 0);
	cv_throttle_success(&a); /* the administrator's unlock */
	assert_int_equal(cv_throttle_decide(&pol, &a, NULL, T0 + 100 * 24 * 3600, &d), CV_OK);
	assert_true(d.permitted);
}

static void success_resets_account_not_address(void **state)
{
	cv_throttle_account_t a = { 0 };
	cv_throttle_address_t ad = { 0 };
	for (int i = 0; i < 12; i++)
		cv_throttle_failure(NULL, &a, &ad, T0);
	assert_false(decide(&a, &ad, T0).permitted);
	cv_throttle_success(&a);
	assert_int_equal(a.failures, 0);
	assert_true(decide(&a, &ad, T0).permitted);
	assert_int_equal(ad.failures, 12);
	assert_int_equal(ad.window_start, T0);
}

static void address_window(void **state)
{
	cv_throttle_address_t ad = { 0 };
	cv_throttle_decision_t d;
	/* fifty failures against fifty different accounts, over ten minutes */
	for (int i = 0; i < 50; i++) {
		cv_throttle_account_t fresh = { 0 };
		d = decide(&fresh, &ad, T0 + i * 12);
		assert_true(d.permitted);
		cv_throttle_failure(NULL, &fresh, &ad, T0 + i * 12);
	}
	assert_int_equal(ad.failures, 50);
	cv_throttle_account_t other = { 0 };
	d = decide(&other, &ad, T0 + 600);
	assert_false(d.permitted);
	assert_false(d.locked);
	assert_int_equal(d.why, CV_THROTTLE_ADDRESS);
	assert_int_equal(d.wait, 300);
	assert_false(decide(NULL, &ad, T0 + 899).permitted);
	/* the window ends; the next failure opens a new one */
	assert_true(decide(NULL, &ad, T0 + 900).permitted);
	cv_throttle_failure(NULL, NULL, &ad, T0 + 900);
	assert_int_equal(ad.failures, 1);
	assert_int_equal(ad.window_start, T0 + 900);
	/* 49 failures in a window do not limit */
	cv_throttle_address_t ok = { 49, T0 };
	assert_true(decide(NULL, &ok, T0).permitted);
}

static void longest_wait_wins(void **state)
{
	cv_throttle_account_t a = { 6, T0 };      /* 2 s delay */
	cv_throttle_address_t ad = { 50, T0 };    /* 900 s window */
	cv_throttle_decision_t d = decide(&a, &ad, T0);
	assert_int_equal(d.wait, 900);
	assert_int_equal(d.why, CV_THROTTLE_ADDRESS);
	cv_throttle_account_t locked = { 20, T0 };
	d = decide(&locked, &ad, T0);
	assert_true(d.locked);
	assert_int_equal(d.why, CV_THROTTLE_LOCKED);
	/* nothing known: nothing limits */
	assert_true(decide(NULL, NULL, T0).permitted);
}

static void clock_goes_back(void **state)
{
	cv_throttle_account_t a = { 7, T0 }; /* 4 s delay */
	cv_throttle_address_t ad = { 50, T0 };
	assert_int_equal(decide(&a, NULL, T0 - 1000).wait, 4);
	assert_int_equal(decide(NULL, &ad, T0 - 1000).wait, 900);
	cv_throttle_account_t l = { 20, T0 };
	assert_int_equal(decide(&l, NULL, T0 - 1000).wait, 3600);
	/* extreme times do not overflow */
	cv_throttle_account_t e = { 20, INT64_MIN };
	assert_false(decide(&e, NULL, INT64_MAX).locked);
	cv_throttle_account_t f = { 20, INT64_MAX };
	assert_int_equal(decide(&f, NULL, INT64_MIN).wait, 3600);
}

static void counts_saturate(void **state)
{
	cv_throttle_policy_t pol = CV_THROTTLE_POLICY_DEFAULT;
	cv_throttle_account_t a = { UINT32_MAX, T0 };
	cv_throttle_address_t ad = { UINT32_MAX, T0 };
	pol.lock_after = UINT32_MAX; /* so that the delay is reached with a huge count */
	cv_throttle_failure(&pol, &a, &ad, T0 + 1);
	assert_int_equal(a.failures, UINT32_MAX);
	assert_int_equal(ad.failures, UINT32_MAX);
	cv_throttle_account_t b = { UINT32_MAX - 1, T0 };
	cv_throttle_decision_t d;
	assert_int_equal(cv_throttle_decide(&pol, &b, NULL, T0, &d), CV_OK);
	assert_int_equal(d.wait, 900);
}

static void bad_policy_fails_closed(void **state)
{
	cv_throttle_policy_t pol = CV_THROTTLE_POLICY_DEFAULT;
	cv_throttle_decision_t d;
	assert_int_equal(cv_throttle_policy_check(&pol), CV_OK);
	assert_int_equal(cv_throttle_policy_check(NULL), CV_E_INVALID);
	pol.lock_after = pol.free_attempts;
	assert_int_equal(cv_throttle_decide(&pol, NULL, NULL, T0, &d), CV_E_INVALID);
	assert_false(d.permitted);
	assert_true(d.locked);
	pol = (cv_throttle_policy_t)CV_THROTTLE_POLICY_DEFAULT;
	pol.delay_base = 0;
	assert_int_equal(cv_throttle_policy_check(&pol), CV_E_INVALID);
	pol = (cv_throttle_policy_t)CV_THROTTLE_POLICY_DEFAULT;
	pol.addr_window = 0;
	assert_int_equal(cv_throttle_policy_check(&pol), CV_E_INVALID);
	pol = (cv_throttle_policy_t)CV_THROTTLE_POLICY_DEFAULT;
	pol.delay_max = 0;
	assert_int_equal(cv_throttle_policy_check(&pol), CV_E_INVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(free_attempts),
		cmocka_unit_test(delay_doubles_to_cap),
		cmocka_unit_test(lock_and_expiry),
		cmocka_unit_test(lock_until_admin),
		cmocka_unit_test(success_resets_account_not_address),
		cmocka_unit_test(address_window),
		cmocka_unit_test(longest_wait_wins),
		cmocka_unit_test(clock_goes_back),
		cmocka_unit_test(counts_saturate),
		cmocka_unit_test(bad_policy_fails_closed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
