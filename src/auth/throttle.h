/*
 * throttle.h - login throttling: whether a password attempt may be made now.
 *
 * Pure and store-agnostic: the caller loads two small records, asks
 * cv_throttle_decide, checks the password only when permitted, applies
 * cv_throttle_failure or cv_throttle_success and stores the records back.
 * Times are whole seconds (Unix time); nothing here reads a clock.
 *
 * The rules (defaults in CV_THROTTLE_POLICY_DEFAULT):
 *  - Account delay. The first free_attempts (5) consecutive failures cost
 *    nothing. After n >= free_attempts consecutive failures the next attempt
 *    must wait delay_base << (n - free_attempts) seconds after the last
 *    failure (1 s, 2 s, 4 s, ...), at most delay_max (15 min).
 *  - Account lock. After lock_after (20) consecutive failures the account is
 *    locked: no attempt at all, from anywhere, until an administrator resets
 *    the record (cv_throttle_success) or lock_period (1 h) has passed since
 *    the last failure (lock_period 0: only the administrator unlocks). When a
 *    lock has expired the account starts over: the next failure counts as the
 *    first, with its free attempts.
 *  - Address limit. A client address may fail addr_max (50) times in a fixed
 *    window of addr_window (15 min) that starts at its first failure; after
 *    that it is refused until the window ends.
 *  - A success resets the account's record (not the address's: see below).
 *
 * Guessing against one account: at most 20 guesses per lock cycle; reaching
 * the lock takes about 92 minutes of waiting (1 + 2 + ... + 512 s, then 15
 * minutes five times) and the lock then holds for an hour, so about 20
 * guesses in 2.5 hours, 200 a day, whoever and wherever the attacker is.
 *
 * Denial of service, the trade-off. Any lock lets an attacker keep a user
 * out; carevault chooses locks that expire over locks that only an
 * administrator lifts (an attacker could otherwise lock every account for
 * good, and a hospital cannot wait for an administrator at 3 am):
 *  - A lock costs 20 failures and about 92 minutes per account, and lasts an
 *    hour; after it the account starts over, so keeping an account locked
 *    costs 20 failures every 2.5 hours.
 *  - One address gets 50 failures per 15 minutes, 200 an hour: it can lock at
 *    most 10 accounts an hour and keep at most about 25 locked, and every
 *    lock it makes ends within an hour of its last failure. Many addresses
 *    (a botnet) can still lock many accounts; that needs limits outside this
 *    module (rate limits at the edge, alerts on many locks).
 *  - A success does not reset the address's window: otherwise an attacker
 *    with one valid account of their own could log in to it between guesses
 *    and never reach the address limit. The cost is that many users behind
 *    one NAT share the 50 failures.
 *  - Expiring locks and starting over give the attacker more guesses in the
 *    long run than a permanent lock would (NIST SP 800-63B 5.2.2 asks for no
 *    more than 100 consecutive failures); the delays keep that to about 200
 *    a day against one account, which a password that passes
 *    cv_password_check withstands.
 *
 * Callers should keep a record for user names that do not exist too (keyed
 * by the name), and answer "locked" and "wrong password" the same way to the
 * client, so that throttling does not tell which accounts exist. Attempts
 * refused here are not failures: do not record them (they never reached the
 * password check).
 */
#ifndef CV_AUTH_THROTTLE_H
#define CV_AUTH_THROTTLE_H

#include <stdint.h>

#include "core/rc.h"

typedef struct cv_throttle_policy {
	uint32_t free_attempts; /* consecutive failures before any delay */
	int64_t delay_base;     /* seconds of the first delay, doubled per failure */
	int64_t delay_max;      /* longest delay, seconds */
	uint32_t lock_after;    /* consecutive failures that lock the account */
	int64_t lock_period;    /* seconds a lock lasts after the last failure; 0: until reset */
	uint32_t addr_max;      /* failures an address may make in one window */
	int64_t addr_window;    /* length of an address's window, seconds */
} cv_throttle_policy_t;

#define CV_THROTTLE_POLICY_DEFAULT { 5, 1, 15 * 60, 20, 60 * 60, 50, 15 * 60 }

/* What is known of an account (or of a user name that has no account). */
typedef struct cv_throttle_account {
	uint32_t failures;    /* consecutive failures since the last success, reset or expired lock */
	int64_t last_failure; /* time of the latest of them; meaningless when failures is 0 */
} cv_throttle_account_t;

/* What is known of a client address. */
typedef struct cv_throttle_address {
	uint32_t failures;    /* failures in the window that started at window_start */
	int64_t window_start; /* time of the window's first failure; meaningless when failures is 0 */
} cv_throttle_address_t;

typedef enum cv_throttle_why {
	CV_THROTTLE_OK = 0,   /* permitted */
	CV_THROTTLE_DELAY,    /* the account's delay has not passed */
	CV_THROTTLE_LOCKED,   /* the account is locked */
	CV_THROTTLE_ADDRESS,  /* the address has used up its window */
} cv_throttle_why_t;

typedef struct cv_throttle_decision {
	int permitted;         /* 1: check the password now */
	int locked;            /* 1: the account is locked */
	int64_t wait;          /* seconds until an attempt may be permitted; 0 when permitted,
				  or when locked until an administrator resets it */
	cv_throttle_why_t why; /* the rule that refused (the lock first, then the longest wait) */
} cv_throttle_decision_t;

/* CV_OK when pol is usable: delay_base >= 1, delay_max >= delay_base,
 * lock_after > free_attempts, lock_period >= 0, addr_max >= 1,
 * addr_window >= 1; CV_E_INVALID otherwise. */
cv_rc cv_throttle_policy_check(const cv_throttle_policy_t *pol);

/* Decides whether a password attempt for account acct from address addr may
 * be made at time now, under pol (NULL: default). acct or addr may be NULL
 * (nothing known: no limit from it). A clock that went back (now before a
 * recorded time) counts as no time passed. CV_E_INVALID for a policy that
 * fails cv_throttle_policy_check, and then *out says locked (fails closed). */
cv_rc cv_throttle_decide(const cv_throttle_policy_t *pol, const cv_throttle_account_t *acct,
			 const cv_throttle_address_t *addr, int64_t now, cv_throttle_decision_t *out)
	__attribute__((warn_unused_result));

/* Records a failed password check at time now in acct (may be NULL) and addr
 * (may be NULL) under pol (NULL, or one that fails cv_throttle_policy_check:
 * the default): the account's count goes up by
 * one (starting over after an expired lock), the address's too (starting a
 * new window when the last has ended). Counts saturate. */
void cv_throttle_failure(const cv_throttle_policy_t *pol, cv_throttle_account_t *acct,
			 cv_throttle_address_t *addr, int64_t now);

/* Records a successful login, or an administrator's unlock: the account
 * starts over with no failures. */
void cv_throttle_success(cv_throttle_account_t *acct);

#endif
