/*
 * session.h - portal sessions and the login that opens them.
 *
 * A session id is "cvs_" + 256 random bits (base64url). The store keeps only
 * its SHA-256, as the id of an internal "~Session" record (sealed like every
 * record) holding the account id, the account's epoch at login, when it was
 * made and last used, and its CSRF token. A session is valid while:
 * its record exists, it was used within the idle timeout (15 min default),
 * it is younger than the absolute timeout (12 h), and its account is enabled
 * with the same epoch (disable, revoke-sessions, reset-mfa and
 * logout-everywhere move the epoch: every session ends at once, on every
 * node, because the account is read on each check).
 *
 * Login: password (Argon2id; an unknown user name costs the same verify
 * against a dummy hash) and, when the account has MFA, a TOTP code (accepted
 * once: the matched step is stored with a compare-and-set, so a replayed code
 * fails even on another node) or an unused recovery code. Throttling
 * (auth/throttle) keeps its counters per folded user name (whether or not
 * the account exists) and per client address in "~Throttle" records keyed by
 * hashes. Every failure answers the same "no", whatever failed.
 */
#ifndef CV_AUTH_SESSION_H
#define CV_AUTH_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/account.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_SESSION_TYPE "~Session"   /* the internal type of session records */
#define CV_THROTTLE_TYPE "~Throttle" /* the internal type of login failure counters */
#define CV_SESSION_TOKEN_MAX 64  /* "cvs_" + 43 base64url characters, and a NUL */
#define CV_SESSION_CSRF_LEN 43   /* base64url of 32 random bytes */
#define CV_SESSION_TOUCH_US (60LL * 1000000) /* last use is written at most once a minute
                                                (or a quarter of the idle timeout, if shorter) */

typedef struct cv_session_limits {
	int64_t idle_us;     /* unused longer than this: over */
	int64_t absolute_us; /* older than this: over */
} cv_session_limits_t;

/* What a valid session stands for. */
typedef struct cv_session_info {
	char sid[65];                            /* the record id (SHA-256 of the token, hex) */
	char user[CV_ACCOUNT_ID_LEN + 1];        /* the account id */
	char username[CV_USERNAME_MAX + 1];
	char role[16];
	char link[CV_LINK_MAX + 1];
	char csrf[CV_SESSION_CSRF_LEN + 1];      /* sent back in X-CSRF-Token on state changes */
	int64_t created_us, seen_us;
} cv_session_info_t;

typedef enum {
	CV_LOGIN_OK,           /* a session was opened */
	CV_LOGIN_DENIED,       /* wrong name, password or code, or a disabled account: one answer for all */
	CV_LOGIN_MFA_REQUIRED, /* the password was right; a code is needed */
	CV_LOGIN_THROTTLED,    /* too many failures: wait retry_after seconds */
} cv_login_result;

/* The attempt's outcome as soon as it is known, before the write that
 * settles it: a CV_SESSION_TYPE version (CV_LOGIN_OK) or the account's
 * CV_THROTTLE_TYPE counter (CV_LOGIN_DENIED); MFA_REQUIRED and THROTTLED
 * write nothing. a is the account the name found (its id "" when none), or
 * NULL when it was not looked up (THROTTLED). So that a login and its audit
 * record commit together (store.h, "a write's companion"). */
typedef void (*cv_login_settling_fn)(void *arg, cv_login_result res, const cv_account_t *a);

/* What a login attempt brings. code and recovery may be NULL or "". */
typedef struct cv_login {
	const char *username;
	const char *password;
	const char *code;      /* a TOTP code */
	const char *recovery;  /* or a recovery code */
	const char *address;   /* the client's address, for throttling */
	int64_t now_us;
	cv_login_settling_fn settling; /* may be NULL */
	void *settling_arg;
} cv_login_t;

/* Tries a login. On CV_LOGIN_OK token gets the new session id (to set as
 * the cookie; never stored) and info the session. On CV_LOGIN_THROTTLED
 * *retry_after gets seconds. The return value is CV_OK unless the store
 * failed (then *res is CV_LOGIN_DENIED and no session was opened). The
 * session is the login's last write. */
cv_rc cv_session_login(cv_store_t *s, const cv_login_t *in, cv_login_result *res, char token[CV_SESSION_TOKEN_MAX],
		       cv_session_info_t *info, int64_t *retry_after);

/* Checks a session id presented as a cookie at now_us; on CV_OK info gets the
 * session (its last use is recorded, at most once a minute). CV_E_UNAUTH for
 * anything that is not a valid, current session. */
cv_rc cv_session_check(cv_store_t *s, const char *token, const cv_session_limits_t *lim, int64_t now_us,
		       cv_session_info_t *info) __attribute__((warn_unused_result));

/* Ends one session (logout). */
cv_rc cv_session_end(cv_store_t *s, const char *sid);

/* Ends every session of the account (logout everywhere): its epoch moves. */
cv_rc cv_session_end_all(cv_store_t *s, const char *user);

/* Calls fn for each valid session of account user (its active sessions). */
cv_rc cv_session_each(cv_store_t *s, const char *user, const cv_session_limits_t *lim, int64_t now_us,
		      cv_rc (*fn)(void *arg, const cv_session_info_t *info), void *arg);

#endif
