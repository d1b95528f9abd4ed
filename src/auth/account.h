/*
 * account.h - user accounts: who may log in, with which role, linked to
 * which Patient or Practitioner.
 *
 * An account is a sealed, versioned store record of the internal type
 * "~User" (id: 128 random bits, hex), so it is encrypted at rest like a
 * resource, every change is a new version (compare-and-set on the version,
 * safe across nodes), and no FHIR interaction can reach it (internal types
 * start with '~', which no FHIR type does; the store leaves them out of
 * system-wide history). The user name is unique, case-insensitively: a
 * second record "~Login" whose id is the folded name (the store keeps only
 * a blind index of it) points to the account and is created in the same
 * all-or-nothing write, so two nodes cannot both create one name.
 *
 * Secrets in the record: the Argon2id password hash, the TOTP seed (sealed
 * once more under the store's token key, purpose "totp-seed"), the last used
 * TOTP step, and the hashes of the recovery codes. `epoch` is raised by
 * disable and revoke-sessions: sessions and tokens carry the epoch they were
 * issued under and stop working when it moves.
 */
#ifndef CV_AUTH_ACCOUNT_H
#define CV_AUTH_ACCOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_ACCOUNT_TYPE "~User" /* the internal type of account records */

#define CV_ACCOUNT_ID_LEN 32       /* hex characters of an account id */
#define CV_USERNAME_MAX 64         /* bytes of a user name */
#define CV_LINK_MAX 80             /* "Patient/<id>" or "Practitioner/<id>" */
#define CV_PWHASH_MAX 128          /* an encoded Argon2id hash (crypto_pwhash_STRBYTES) */
#define CV_RECOVERY_CODES 10       /* recovery codes per account */
#define CV_RECOVERY_HASH 32        /* bytes of a recovery code's hash */
#define CV_META_BOOTSTRAP "auth.bootstrap" /* the bootstrap token's hash; empty once retired */

typedef enum {
	CV_ROLE_PATIENT,
	CV_ROLE_NURSE,
	CV_ROLE_DOCTOR,
	CV_ROLE_ADMIN,
	CV_ROLE_BILLING,
	CV_ROLE_AUDITOR,
	CV_ROLE_RESEARCHER,
	CV_ROLE_COUNT,
} cv_role;

typedef struct cv_account {
	char id[CV_ACCOUNT_ID_LEN + 1];      /* random, hex */
	char username[CV_USERNAME_MAX + 1];  /* as given (unique when folded) */
	cv_role role;
	char link[CV_LINK_MAX + 1];          /* the linked resource, "" for none */
	char pwhash[CV_PWHASH_MAX + 1];      /* Argon2id, encoded; "" until a password is set */
	bool disabled;                       /* refused at login; sessions and tokens stop at once */
	int64_t epoch;                       /* raised to revoke every session and token */
	int64_t created_us;                  /* when the account was made */
	bool mfa;                            /* a TOTP seed is enrolled */
	char *totp_sealed;                   /* the seed, sealed under the token key (heap, or NULL) */
	int64_t totp_last_step;              /* the last accepted TOTP step (replays are refused) */
	uint8_t recovery[CV_RECOVERY_CODES][CV_RECOVERY_HASH]; /* recovery code hashes */
	uint16_t recovery_used;              /* bit i: code i was used */
	int64_t version;                     /* the store version read (0: not stored yet) */
} cv_account_t;

/* "patient", "nurse", ... for a role; NULL for an invalid one. */
const char *cv_role_name(cv_role r);

/* Parses a role name. CV_E_INVALID for anything else. */
cv_rc cv_role_parse(const char *name, cv_role *out);

/* True for the roles that must use MFA (every role but patient). */
bool cv_role_is_staff(cv_role r);

/* Checks a user name: 1..64 characters of A-Z a-z 0-9 . _ @ + -, starting
 * with a letter or digit. why (may be NULL) gets a message for a person. */
cv_rc cv_account_name_check(const char *name, char *why, size_t whylen);

/* Checks that the link suits the role: a patient account needs
 * "Patient/<id>", the clinical staff roles (nurse, doctor) need
 * "Practitioner/<id>", the others may have a Practitioner or nothing. */
cv_rc cv_account_link_check(cv_role role, const char *link, char *why, size_t whylen);

/* Initialises a new account (random id, created now, enabled, no MFA). */
cv_rc cv_account_init(cv_account_t *a, const char *username, cv_role role, const char *link);

/* Frees what the account owns (the sealed seed) and wipes its secrets. */
void cv_account_release(cv_account_t *a);

/* Stores a new account and its name, all or nothing. CV_E_CONFLICT when the
 * (folded) name is taken. Sets a->version. An administrator's account
 * retires the bootstrap token in the same commit (from the first one on,
 * administrators log in, and scripts use backend clients). */
cv_rc cv_account_create(cv_store_t *s, cv_account_t *a);

/* Writes a->version + 1 of an existing account. CV_E_CONFLICT when someone
 * else changed it since it was read (read again and retry). */
cv_rc cv_account_update(cv_store_t *s, cv_account_t *a);

/* Reads an account by id, or by user name (case-insensitive).
 * CV_E_NOTFOUND when there is none. */
cv_rc cv_account_get(cv_store_t *s, const char *id, cv_account_t *out);
cv_rc cv_account_find(cv_store_t *s, const char *username, cv_account_t *out);

/* Calls fn for every account, in creation order. fn's account is released
 * after it returns. */
cv_rc cv_account_each(cv_store_t *s, cv_rc (*fn)(void *arg, const cv_account_t *a), void *arg);

/* Encodes / decodes the stored JSON form (for the store and the tests). */
cv_rc cv_account_encode(const cv_account_t *a, cv_buf_t *out);
cv_rc cv_account_decode(const char *json, size_t len, cv_account_t *out);

#endif
