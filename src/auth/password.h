/*
 * password.h - user passwords: the policy a new password must meet, and
 * Argon2id hashing and checking (libsodium).
 *
 * Policy (NIST SP 800-63B, 5.1.1.2): a password is Unicode text; it is
 * normalised to NFKC (libunistring) and its length counted in code points,
 * from 12 to 256 by default. There are no composition rules ("one digit, one
 * symbol"). A password is refused when it is on the embedded list of common
 * or breached passwords (compared after NFKC and Unicode case folding), when
 * it contains the user name (same folding, for names of 3 or more
 * characters) or the product name "carevault", or when it is one character
 * repeated.
 *
 * Hashing: Argon2id (crypto_pwhash_str_alg, ARGON2ID13) over the NFKC form,
 * so "ｐａｓｓ…" typed on a full-width keyboard and "pass…" are the same
 * password. The stored string is libsodium's encoded form ("$argon2id$v=19$
 * m=…,t=…,p=1$salt$hash"): it carries its parameters, so a change of the
 * configured parameters is seen by cv_password_needs_rehash and the login
 * path can rehash after a successful check.
 *
 * Every normalised or folded copy of a password made here is wiped
 * (sodium_memzero) before it is freed. Messages never contain the password.
 *
 * The list of common passwords (src/auth/data/common-passwords.txt, see the
 * NOTICE beside it and docs/decisions/0006) is embedded in the binary and
 * turned into a sorted table on first use (pthread_once), which is then
 * read-only and shared by all threads.
 */
#ifndef CV_AUTH_PASSWORD_H
#define CV_AUTH_PASSWORD_H

#include <stddef.h>

#include <sodium.h>

#include "core/rc.h"

#define CV_PASSWORD_HASH_MAX crypto_pwhash_STRBYTES /* size of a stored hash, with its NUL */
#define CV_PASSWORD_MAX_BYTES 4096u  /* longer input is refused before any Unicode work */
#define CV_PASSWORD_MIN_CHARS 12u    /* default shortest password, in code points after NFKC */
#define CV_PASSWORD_MAX_CHARS 256u   /* default longest password, in code points after NFKC */
#define CV_PASSWORD_FLOOR_CHARS 8u   /* a policy may not ask for less (NIST SP 800-63B) */
#define CV_PASSWORD_CEIL_CHARS 1024u /* a policy may not allow more */
#define CV_PASSWORD_USER_MIN 3u      /* shorter user names are not looked for in passwords */

/* Argon2id cost parameters. */
typedef struct cv_password_params {
	unsigned long long opslimit; /* passes over memory; >= crypto_pwhash_OPSLIMIT_INTERACTIVE */
	size_t memlimit;             /* bytes; >= crypto_pwhash_MEMLIMIT_INTERACTIVE */
} cv_password_params_t;

/* libsodium's interactive limits: the least carevault accepts (64 MiB, 2 passes). */
#define CV_PASSWORD_PARAMS_DEFAULT \
	{ crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE }

/* What a new password must meet. */
typedef struct cv_password_policy {
	size_t min_chars; /* shortest, in code points after NFKC */
	size_t max_chars; /* longest, in code points after NFKC */
} cv_password_policy_t;

#define CV_PASSWORD_POLICY_DEFAULT { CV_PASSWORD_MIN_CHARS, CV_PASSWORD_MAX_CHARS }

/* CV_OK when params are usable: at least libsodium's interactive limits and
 * at most its maximums; CV_E_INVALID otherwise. */
cv_rc cv_password_params_check(const cv_password_params_t *params);

/* CV_OK when pol is usable: CV_PASSWORD_FLOOR_CHARS <= min_chars <= max_chars
 * <= CV_PASSWORD_CEIL_CHARS and max_chars >= 64 (NIST: allow at least 64);
 * CV_E_INVALID otherwise. */
cv_rc cv_password_policy_check(const cv_password_policy_t *pol);

/* Hashes the NFKC form of password (NUL-terminated UTF-8) with Argon2id and a
 * random salt under params (NULL: CV_PASSWORD_PARAMS_DEFAULT) and writes the
 * encoded string, NUL-terminated, to out. This takes params->memlimit bytes
 * and noticeable time: call it off the request's hot path where possible.
 * CV_E_INVALID: params below the floor, password not valid UTF-8 or longer
 * than CV_PASSWORD_MAX_BYTES; CV_E_NOMEM: the memory could not be had;
 * CV_E_CRYPTO: libsodium could not be initialised. out is emptied on failure.
 * It does not apply the policy: call cv_password_check first for new passwords. */
cv_rc cv_password_hash(const cv_password_params_t *params, const char *password,
		       char out[CV_PASSWORD_HASH_MAX]) __attribute__((warn_unused_result));

/* Checks password against a string made by cv_password_hash (any Argon2
 * parameters; also Argon2i strings). CV_OK when it matches; CV_E_DENIED
 * otherwise, including for a malformed stored string, a NULL argument or a
 * password that is not valid UTF-8: the caller learns nothing more than "no".
 * Takes as long as the stored parameters say. When the account does not
 * exist, callers should still verify against some hash of the same cost, so
 * that the answer's timing does not tell which accounts exist. */
cv_rc cv_password_verify(const char *stored, const char *password)
	__attribute__((warn_unused_result));

/* 1 when stored should be replaced by a new hash under params (NULL:
 * default): it is not an Argon2id string with exactly these parameters (an
 * Argon2i string, other limits, or not a hash at all); 0 when it is. Call it
 * after a successful cv_password_verify, and rehash the password then. */
int cv_password_needs_rehash(const char *stored, const cv_password_params_t *params);

/* Applies the policy pol (NULL: CV_PASSWORD_POLICY_DEFAULT) to a new
 * password (NUL-terminated UTF-8) of the account username (may be NULL).
 * CV_OK when it is acceptable. CV_E_INVALID when it is not, or when pol fails
 * cv_password_policy_check, with a short lowercase message for a person in
 * why (NUL-terminated, truncated to whylen; why may be NULL); the message
 * never contains the password. CV_E_NOMEM when memory ran out (why says so).
 * why is empty on CV_OK. */
cv_rc cv_password_check(const cv_password_policy_t *pol, const char *username,
			const char *password, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* Builds the table of common passwords if it is not built yet (thread-safe,
 * once per process) and gives the number of distinct entries in *count (may
 * be NULL). cv_password_check calls it; a server calls it at start so the
 * first check is not slower. CV_E_NOMEM if the table could not be built. */
cv_rc cv_password_list_load(size_t *count);

/* 1 when password, after NFKC and case folding, is on the list of common
 * passwords; 0 when it is not, or it is not valid UTF-8, or the list could not
 * be loaded. For tests and tools; cv_password_check is the policy. */
int cv_password_list_contains(const char *password);

#endif
