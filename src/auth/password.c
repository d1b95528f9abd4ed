/*
 * password.c - password policy and Argon2id hashing (see password.h).
 * libunistring does the Unicode work (NFKC, case folding, UTF-8 checks),
 * libsodium the hashing. The list of common passwords is the embedded
 * cv_passwords_blob (generated from src/auth/data/common-passwords.txt).
 */
#define _GNU_SOURCE /* memmem */
#include "auth/password.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <uninorm.h>
#include <unistr.h>

extern const unsigned char cv_passwords_blob[];
extern const unsigned long cv_passwords_blob_len;

static const char product[] = "carevault"; /* already folded */

/*
 * The list as a sorted array of distinct folded entries. Written once under
 * pthread_once, read-only afterwards, never freed (it lives as long as the
 * process, like the embedded blob it comes from).
 */
static struct {
	char **entries;
	size_t count;
	cv_rc rc;
} list;
static pthread_once_t list_once = PTHREAD_ONCE_INIT;

/* A folded password as a bsearch key: bytes without a terminator. */
struct key {
	const uint8_t *s;
	size_t n;
};

static void wipe_free(uint8_t *p, size_t n)
{
	if (!p)
		return;
	sodium_memzero(p, n);
	free(p);
}

static void say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;
	if (!why || !whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
}

/* The NFKC form of len bytes at s into a new buffer (caller wipes and frees).
 * CV_E_INVALID for invalid UTF-8, CV_E_NOMEM. */
static cv_rc nfkc(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	if (u8_check((const uint8_t *)s, len))
		return CV_E_INVALID;
	*outlen = 0;
	*out = u8_normalize(UNINORM_NFKC, (const uint8_t *)s, len, NULL, outlen);
	return *out ? CV_OK : CV_E_NOMEM;
}

/* Case folding of NFKC text, normalised to NFKC again (folding can undo the
 * normal form): the form that lists, user names and passwords are compared
 * in. Caller wipes and frees. */
static cv_rc fold(const uint8_t *norm, size_t nlen, uint8_t **out, size_t *outlen)
{
	*outlen = 0;
	*out = u8_casefold(norm, nlen, NULL, UNINORM_NFKC, NULL, outlen);
	return *out ? CV_OK : CV_E_NOMEM;
}

/* NFKC then fold, for text that is not secret (list entries, user names). */
static cv_rc fold_text(const char *s, size_t len, uint8_t **out, size_t *outlen)
{
	uint8_t *norm = NULL;
	size_t nlen = 0;
	cv_rc rc = nfkc(s, len, &norm, &nlen);
	if (rc)
		return rc;
	rc = fold(norm, nlen, out, outlen);
	wipe_free(norm, nlen);
	return rc;
}

/* The NFKC form of a NUL-terminated password, bounded by CV_PASSWORD_MAX_BYTES. */
static cv_rc normalise(const char *password, uint8_t **out, size_t *outlen)
{
	size_t len = strnlen(password, CV_PASSWORD_MAX_BYTES + 1);
	if (len > CV_PASSWORD_MAX_BYTES)
		return CV_E_INVALID;
	return nfkc(password, len, out, outlen);
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Orders like strcmp on the entries: bytes as unsigned, a prefix first. */
static int cmp_key(const void *k, const void *e)
{
	const struct key *key = k;
	const char *s = *(char *const *)e;
	size_t n = strlen(s);
	int c = memcmp(key->s, s, key->n < n ? key->n : n);
	if (c)
		return c;
	return (key->n > n) - (key->n < n);
}

static int is_ascii(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] >= 0x80)
			return 0;
	return 1;
}

/* The folded copy of one line of the list (NUL-terminated, malloc'd), or NULL:
 * *rc is CV_OK for a line to skip (invalid UTF-8), CV_E_NOMEM otherwise. */
static char *fold_entry(const char *s, size_t n, cv_rc *rc)
{
	char *e;
	*rc = CV_OK;
	if (is_ascii(s, n)) {
		/* ASCII is its own NFKC form, and folds to lower case */
		e = malloc(n + 1);
		if (!e) {
			*rc = CV_E_NOMEM;
			return NULL;
		}
		for (size_t i = 0; i < n; i++)
			e[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
		e[n] = '\0';
		return e;
	}
	uint8_t *f = NULL;
	size_t flen = 0;
	cv_rc r = fold_text(s, n, &f, &flen);
	if (r) {
		*rc = r == CV_E_INVALID ? CV_OK : r;
		return NULL;
	}
	e = malloc(flen + 1);
	if (e) {
		memcpy(e, f, flen);
		e[flen] = '\0';
	} else {
		*rc = CV_E_NOMEM;
	}
	free(f);
	return e;
}

static void list_build(void)
{
	const char *p = (const char *)cv_passwords_blob;
	const char *end = p + cv_passwords_blob_len;
	size_t cap = 1, n = 0;
	char **e = NULL;
	cv_rc rc = CV_OK;

	for (const char *q = p; q < end; q++)
		cap += *q == '\n';
	e = calloc(cap, sizeof *e);
	if (!e) {
		rc = CV_E_NOMEM;
		goto out;
	}
	while (p < end && n < cap) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);
		if (len && p[len - 1] == '\r')
			len--;
		if (len && len <= CV_PASSWORD_MAX_BYTES) {
			char *f = fold_entry(p, len, &rc);
			if (rc)
				goto out;
			if (f && *f)
				e[n++] = f;
			else
				free(f);
		}
		p = nl ? nl + 1 : end;
	}
	if (n) {
		qsort(e, n, sizeof *e, cmp_entry);
		size_t w = 1;
		for (size_t i = 1; i < n; i++) {
			if (strcmp(e[i], e[w - 1]) == 0)
				free(e[i]);
			else
				e[w++] = e[i];
		}
		n = w;
	}
out:
	if (rc) {
		for (size_t i = 0; e && i < n; i++)
			free(e[i]);
		free(e);
		e = NULL;
		n = 0;
	}
	list.entries = e;
	list.count = n;
	list.rc = rc;
}

cv_rc cv_password_list_load(size_t *count)
{
	if (pthread_once(&list_once, list_build) != 0)
		return CV_E_INTERNAL;
	if (count)
		*count = list.count;
	return list.rc;
}

/* 1 when the folded text is on the list (which must be loaded). */
static int listed(const uint8_t *folded, size_t flen)
{
	struct key k = { folded, flen };
	if (!list.count)
		return 0;
	return bsearch(&k, list.entries, list.count, sizeof *list.entries, cmp_key) != NULL;
}

int cv_password_list_contains(const char *password)
{
	uint8_t *norm = NULL, *folded = NULL;
	size_t nlen = 0, flen = 0;
	int hit = 0;
	if (!password || cv_password_list_load(NULL))
		return 0;
	if (normalise(password, &norm, &nlen) || fold(norm, nlen, &folded, &flen))
		goto out;
	hit = listed(folded, flen);
out:
	wipe_free(norm, nlen);
	wipe_free(folded, flen);
	return hit;
}

cv_rc cv_password_params_check(const cv_password_params_t *params)
{
	if (!params)
		return CV_E_INVALID;
	if (params->opslimit < crypto_pwhash_OPSLIMIT_INTERACTIVE ||
	    params->opslimit > crypto_pwhash_opslimit_max())
		return CV_E_INVALID;
	if (params->memlimit < crypto_pwhash_MEMLIMIT_INTERACTIVE ||
	    params->memlimit > crypto_pwhash_memlimit_max())
		return CV_E_INVALID;
	return CV_OK;
}

cv_rc cv_password_policy_check(const cv_password_policy_t *pol)
{
	if (!pol)
		return CV_E_INVALID;
	if (pol->min_chars < CV_PASSWORD_FLOOR_CHARS || pol->min_chars > pol->max_chars ||
	    pol->max_chars < 64 || pol->max_chars > CV_PASSWORD_CEIL_CHARS)
		return CV_E_INVALID;
	return CV_OK;
}

cv_rc cv_password_hash(const cv_password_params_t *params, const char *password,
		       char out[CV_PASSWORD_HASH_MAX])
{
	const cv_password_params_t def = CV_PASSWORD_PARAMS_DEFAULT;
	uint8_t *norm = NULL;
	size_t nlen = 0;
	cv_rc rc;

	out[0] = '\0';
	if (!params)
		params = &def;
	rc = cv_password_params_check(params);
	if (rc)
		return rc;
	if (!password)
		return CV_E_INVALID;
	if (sodium_init() < 0)
		return CV_E_CRYPTO;
	rc = normalise(password, &norm, &nlen);
	if (rc)
		goto out;
	if (crypto_pwhash_str_alg(out, (const char *)norm, nlen, params->opslimit, params->memlimit,
				  crypto_pwhash_ALG_ARGON2ID13) != 0) {
		sodium_memzero(out, CV_PASSWORD_HASH_MAX);
		rc = CV_E_NOMEM;
		goto out;
	}
out:
	wipe_free(norm, nlen);
	return rc;
}

cv_rc cv_password_verify(const char *stored, const char *password)
{
	uint8_t *norm = NULL;
	size_t nlen = 0;
	cv_rc rc = CV_E_DENIED;

	if (!stored || !password || strnlen(stored, CV_PASSWORD_HASH_MAX) >= CV_PASSWORD_HASH_MAX)
		return CV_E_DENIED;
	if (sodium_init() < 0)
		return CV_E_DENIED;
	if (normalise(password, &norm, &nlen))
		goto out;
	if (crypto_pwhash_str_verify(stored, (const char *)norm, nlen) == 0)
		rc = CV_OK;
out:
	wipe_free(norm, nlen);
	return rc;
}

int cv_password_needs_rehash(const char *stored, const cv_password_params_t *params)
{
	const cv_password_params_t def = CV_PASSWORD_PARAMS_DEFAULT;
	const char *prefix = crypto_pwhash_argon2id_STRPREFIX;

	if (!params)
		params = &def;
	if (!stored || cv_password_params_check(params))
		return 1;
	if (strnlen(stored, CV_PASSWORD_HASH_MAX) >= CV_PASSWORD_HASH_MAX)
		return 1;
	/* the generic needs_rehash accepts Argon2i strings of the same limits */
	if (strncmp(stored, prefix, strlen(prefix)) != 0)
		return 1;
	return crypto_pwhash_argon2id_str_needs_rehash(stored, params->opslimit, params->memlimit) != 0;
}

/* 1 when the text is one code point, repeated. */
static int repeated(const uint8_t *s, size_t n)
{
	ucs4_t first, uc;
	int len = u8_mbtouc(&first, s, n);
	if (len <= 0)
		return 0;
	for (size_t i = (size_t)len; i < n; i += (size_t)len) {
		len = u8_mbtouc(&uc, s + i, n - i);
		if (len <= 0 || uc != first)
			return 0;
	}
	return 1;
}

cv_rc cv_password_check(const cv_password_policy_t *pol, const char *username,
			const char *password, char *why, size_t whylen)
{
	const cv_password_policy_t def = CV_PASSWORD_POLICY_DEFAULT;
	uint8_t *norm = NULL, *folded = NULL, *user = NULL;
	size_t nlen = 0, flen = 0, ulen = 0, len, chars;
	cv_rc rc;

	say(why, whylen, "%s", "");
	if (!pol)
		pol = &def;
	if (cv_password_policy_check(pol)) {
		say(why, whylen, "the password policy is not valid");
		return CV_E_INVALID;
	}
	if (!password || !*password) {
		say(why, whylen, "a password is required");
		return CV_E_INVALID;
	}
	len = strnlen(password, CV_PASSWORD_MAX_BYTES + 1);
	if (len > CV_PASSWORD_MAX_BYTES) {
		say(why, whylen, "the password is too long: use at most %zu characters", pol->max_chars);
		return CV_E_INVALID;
	}
	rc = nfkc(password, len, &norm, &nlen);
	if (rc == CV_E_INVALID) {
		say(why, whylen, "the password is not valid utf-8 text");
		goto out;
	}
	if (rc)
		goto nomem;
	chars = u8_mbsnlen(norm, nlen);
	if (chars < pol->min_chars) {
		say(why, whylen, "the password is too short: use at least %zu characters", pol->min_chars);
		rc = CV_E_INVALID;
		goto out;
	}
	if (chars > pol->max_chars) {
		say(why, whylen, "the password is too long: use at most %zu characters", pol->max_chars);
		rc = CV_E_INVALID;
		goto out;
	}
	rc = fold(norm, nlen, &folded, &flen);
	if (rc)
		goto nomem;
	if (repeated(folded, flen)) {
		say(why, whylen, "the password is one character repeated");
		rc = CV_E_INVALID;
		goto out;
	}
	if (memmem(folded, flen, product, sizeof product - 1)) {
		say(why, whylen, "the password contains the name of the product");
		rc = CV_E_INVALID;
		goto out;
	}
	if (username && *username) {
		size_t rawlen = strnlen(username, CV_PASSWORD_MAX_BYTES + 1);
		if (rawlen > CV_PASSWORD_MAX_BYTES) {
			say(why, whylen, "the user name is too long");
			rc = CV_E_INVALID;
			goto out;
		}
		rc = fold_text(username, rawlen, &user, &ulen);
		if (rc == CV_E_INVALID) {
			say(why, whylen, "the user name is not valid utf-8 text");
			goto out;
		}
		if (rc)
			goto nomem;
		if (u8_mbsnlen(user, ulen) >= CV_PASSWORD_USER_MIN && memmem(folded, flen, user, ulen)) {
			say(why, whylen, "the password contains the user name");
			rc = CV_E_INVALID;
			goto out;
		}
	}
	rc = cv_password_list_load(NULL);
	if (rc)
		goto nomem;
	if (listed(folded, flen)) {
		say(why, whylen, "the password is on a list of common or breached passwords");
		rc = CV_E_INVALID;
		goto out;
	}
	rc = CV_OK;
	goto out;
nomem:
	say(why, whylen, "out of memory while checking the password");
	rc = CV_E_NOMEM;
out:
	wipe_free(norm, nlen);
	wipe_free(folded, flen);
	wipe_free(user, ulen);
	return rc;
}
