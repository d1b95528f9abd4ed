/*
 * users.h - what an administrator does to accounts, the same from the
 * command line (`carevault user`) and the admin API (/admin/users): create
 * one (checked name, role and link, a password under the NIST rules, TOTP
 * MFA for staff), and disable, enable, revoke sessions or reset MFA.
 *
 * Enrolment output (the otpauth URI and the ten recovery codes) is shown to
 * the administrator once and never stored: only the sealed seed and the
 * codes' hashes are. Callers wipe the cv_users_enrolment_t when done.
 */
#ifndef CV_AUTH_USERS_H
#define CV_AUTH_USERS_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/account.h"
#include "auth/totp.h"
#include "core/buf.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_USERS_ISSUER "carevault" /* the issuer an authenticator app shows */

/* What a new or reset MFA enrolment shows once. */
typedef struct cv_users_enrolment {
	bool enrolled;                                        /* MFA was set up */
	char uri[CV_TOTP_QR_TEXT_MAX];                        /* otpauth://totp/... */
	char codes[CV_TOTP_RECOVERY_COUNT][CV_TOTP_RECOVERY_LEN]; /* recovery codes */
} cv_users_enrolment_t;

/* A new account's details. link is "" or "Patient/<id>" / "Practitioner/<id>". */
typedef struct cv_users_new {
	const char *username;
	const char *role;
	const char *link;
	const char *password;
	bool mfa; /* enrol a patient in MFA too (staff always are) */
} cv_users_new_t;

typedef enum {
	CV_USERS_DISABLE,         /* refused at login; sessions and tokens end (epoch moves) */
	CV_USERS_ENABLE,          /* may log in again */
	CV_USERS_REVOKE_SESSIONS, /* every session and token ends */
	CV_USERS_RESET_MFA,       /* a new seed and new recovery codes; sessions end */
} cv_users_action;

/* Parses "disable", "enable", "revoke-sessions", "reset-mfa". */
cv_rc cv_users_action_parse(const char *name, cv_users_action *out);

/* Creates the account. CV_E_INVALID (why says what to fix: a bad name, role,
 * link or password), CV_E_NOTFOUND (the linked resource does not exist; why
 * says so), CV_E_CONFLICT (the name is taken), or a store error. On CV_OK
 * out gets the account (release it) and enr what to hand over. */
cv_rc cv_users_create(cv_store_t *s, const cv_users_new_t *n, cv_account_t *out, cv_users_enrolment_t *enr,
		      char *why, size_t whylen);

/* Applies act to the account with this id (by_id) or user name, re-reading
 * and retrying when another writer changed it meanwhile. CV_E_NOTFOUND when
 * there is no such account. For CV_USERS_RESET_MFA enr gets the new
 * enrolment. out (may be NULL) gets the account as written (release it). */
cv_rc cv_users_apply(cv_store_t *s, const char *key, bool by_id, cv_users_action act, cv_users_enrolment_t *enr,
		     cv_account_t *out);

/* Wipes an enrolment. */
void cv_users_enrolment_wipe(cv_users_enrolment_t *enr);

#endif
