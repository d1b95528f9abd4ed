/*
 * throttle.c - login throttling decisions and record updates (see throttle.h
 * for the rules and the trade-offs). No clock, no store, no allocation.
 */
#include "auth/throttle.h"

#include <stddef.h>

static const cv_throttle_policy_t policy_default = CV_THROTTLE_POLICY_DEFAULT;

/* Seconds from then to now; 0 when the clock went back. */
static uint64_t elapsed(int64_t then, int64_t now)
{
	return now > then ? (uint64_t)now - (uint64_t)then : 0;
}

/* Seconds left of a span of len seconds that started at then; 0 when over. */
static int64_t left(int64_t then, int64_t len, int64_t now)
{
	uint64_t e = elapsed(then, now);
	return e >= (uint64_t)len ? 0 : len - (int64_t)e;
}

/* The delay after n consecutive failures (n >= free_attempts). */
static int64_t delay(const cv_throttle_policy_t *pol, uint32_t n)
{
	uint32_t shift = n - pol->free_attempts;
	if (shift >= 62 || pol->delay_base > (pol->delay_max >> shift))
		return pol->delay_max;
	return pol->delay_base << shift;
}

/* 1 when acct has reached the lock and the lock has run out. */
static int lock_expired(const cv_throttle_policy_t *pol, const cv_throttle_account_t *acct, int64_t now)
{
	return acct->failures >= pol->lock_after && pol->lock_period > 0 &&
	       left(acct->last_failure, pol->lock_period, now) == 0;
}

cv_rc cv_throttle_policy_check(const cv_throttle_policy_t *pol)
{
	if (!pol)
		return CV_E_INVALID;
	if (pol->delay_base < 1 || pol->delay_max < pol->delay_base)
		return CV_E_INVALID;
	if (pol->lock_after <= pol->free_attempts || pol->lock_period < 0)
		return CV_E_INVALID;
	if (pol->addr_max < 1 || pol->addr_window < 1)
		return CV_E_INVALID;
	return CV_OK;
}

cv_rc cv_throttle_decide(const cv_throttle_policy_t *pol, const cv_throttle_account_t *acct,
			 const cv_throttle_address_t *addr, int64_t now, cv_throttle_decision_t *out)
{
	int64_t w;

	out->permitted = 0;
	out->locked = 0;
	out->wait = 0;
	out->why = CV_THROTTLE_OK;
	if (!pol)
		pol = &policy_default;
	if (cv_throttle_policy_check(pol)) {
		out->locked = 1;
		out->why = CV_THROTTLE_LOCKED;
		return CV_E_INVALID;
	}

	if (acct && acct->failures >= pol->free_attempts && !lock_expired(pol, acct, now)) {
		if (acct->failures >= pol->lock_after) {
			out->locked = 1;
			out->why = CV_THROTTLE_LOCKED;
			out->wait = pol->lock_period ? left(acct->last_failure, pol->lock_period, now) : 0;
			return CV_OK;
		}
		w = left(acct->last_failure, delay(pol, acct->failures), now);
		if (w > 0) {
			out->wait = w;
			out->why = CV_THROTTLE_DELAY;
		}
	}
	if (addr && addr->failures >= pol->addr_max) {
		w = left(addr->window_start, pol->addr_window, now);
		if (w > out->wait) {
			out->wait = w;
			out->why = CV_THROTTLE_ADDRESS;
		}
	}
	out->permitted = out->wait == 0;
	return CV_OK;
}

void cv_throttle_failure(const cv_throttle_policy_t *pol, cv_throttle_account_t *acct,
			 cv_throttle_address_t *addr, int64_t now)
{
	if (!pol || cv_throttle_policy_check(pol))
		pol = &policy_default;
	if (acct) {
		if (acct->failures == 0 || lock_expired(pol, acct, now))
			acct->failures = 1;
		else if (acct->failures < UINT32_MAX)
			acct->failures++;
		acct->last_failure = now;
	}
	if (addr) {
		if (addr->failures == 0 || left(addr->window_start, pol->addr_window, now) == 0) {
			addr->failures = 1;
			addr->window_start = now;
		} else if (addr->failures < UINT32_MAX) {
			addr->failures++;
		}
	}
}

void cv_throttle_success(cv_throttle_account_t *acct)
{
	if (!acct)
		return;
	acct->failures = 0;
	acct->last_failure = 0;
}
