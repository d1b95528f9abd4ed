/*
 * client.h - registered OAuth 2.0 / SMART clients.
 *
 * A client is a sealed, versioned internal record "~Client" (id: 128 random
 * bits, hex, the client_id). It has a name, a type (public, confidential,
 * backend), its exact redirect URIs, the scopes it may be granted and, for a
 * backend client, the JWKS whose keys sign its assertions (given, or fetched
 * from the https URL it registered, auth/fetch); a confidential
 * client's secret is kept only as its SHA-256 (the secret has 256 random
 * bits, so a slow hash adds nothing). Disabling a client stops its tokens at
 * once: every token check reads the client.
 *
 * Scopes (auth/scope): a backend client is registered with system/ scopes
 * only; an app (public or confidential) with patient/ and user/ scopes and
 * the named ones (openid, fhirUser, launch/patient, offline_access...), never
 * system/ ones. A token gets the requested scopes that lie within the
 * registration, less those the user unticks at consent.
 *
 * Key rotation: a backend client registered with a JWKS URL keeps the URL and
 * the JWKS fetched from it. When one of its assertions names no key of that
 * JWKS, the token endpoint fetches it again (cv_client_refresh_jwks), at most
 * once per CV_CLIENT_JWKS_REFRESH_S per client, decided in the store.
 */
#ifndef CV_AUTH_CLIENT_H
#define CV_AUTH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_CLIENT_TYPE "~Client" /* the internal type of client records */

#define CV_CLIENT_ID_LEN 32
#define CV_CLIENT_NAME_MAX 100
#define CV_CLIENT_REDIRECTS 8
#define CV_CLIENT_URI_MAX 512
#define CV_CLIENT_SCOPE_MAX 1024
#define CV_CLIENT_JWKS_MAX (64u << 10)
#define CV_CLIENT_SECRET_MAX 64
#define CV_CLIENT_JWKS_REFRESH_S 300 /* shortest time between two refreshes of a JWKS URL */

typedef enum { CV_CLIENT_PUBLIC, CV_CLIENT_CONFIDENTIAL, CV_CLIENT_BACKEND } cv_client_type;

typedef struct cv_client {
	char id[CV_CLIENT_ID_LEN + 1];
	char name[CV_CLIENT_NAME_MAX + 1];
	cv_client_type type;
	char redirect[CV_CLIENT_REDIRECTS][CV_CLIENT_URI_MAX + 1];
	size_t nredirect;
	char scope[CV_CLIENT_SCOPE_MAX + 1];  /* space-separated, normalised */
	char *jwks;                           /* backend: the JWKS JSON (heap) or NULL */
	char jwks_url[CV_CLIENT_URI_MAX + 1]; /* backend: https URL the JWKS comes from, or "" */
	int64_t jwks_fetched_us;              /* when the JWKS was last fetched from jwks_url, or 0 */
	int64_t jwks_refresh_us;              /* when the token endpoint last tried a refresh, or 0 */
	uint8_t secret_hash[32];              /* confidential: SHA-256 of the secret */
	bool disabled;
	int64_t created_us;
	int64_t version;                      /* store version read */
} cv_client_t;

/* "public", "confidential", "backend". */
const char *cv_client_type_name(cv_client_type t);
cv_rc cv_client_type_parse(const char *name, cv_client_type *out);

/* What a new client is made of (the strings are the caller's). */
typedef struct cv_client_new {
	const char *name;
	const char *type;                /* "public", "confidential", "backend" */
	const char *const *redirects;    /* exact redirect URIs */
	size_t nredirects;
	const char *scope;               /* space-separated */
	const char *jwks;                /* backend: the JWKS JSON, or NULL */
	const char *jwks_url;            /* backend: https URL of the JWKS instead, or NULL */
	const char *ca_file;             /* CAs for jwks_url (PEM); NULL or "": system bundle */
} cv_client_new_t;

/* Makes a client: checks name, type, redirect URIs (https, or http on
 * localhost, no fragment; required for public and confidential clients),
 * scopes and the JWKS (a backend client needs exactly one of jwks and
 * jwks_url; the JWKS, given or fetched with cv_fetch_jwks, must pass
 * cv_jwt_jwks_check). The JWKS is fetched only once everything else checked
 * out. For a confidential client, secret (CV_CLIENT_SECRET_MAX) gets the
 * secret to show once. Stores it; on CV_OK out is the client (release it).
 * CV_E_INVALID (a value is wrong, or the JWKS URL could not be fetched or
 * did not hold a usable JWKS: why says which, never quoting the response),
 * CV_E_LIMIT (a value is too long), or a store error. */
cv_rc cv_client_create(cv_store_t *s, const cv_client_new_t *n, cv_client_t *out, char secret[CV_CLIENT_SECRET_MAX],
		       char *why, size_t whylen);

/* cv_client_create without a JWKS URL (kept for its callers). */
cv_rc cv_client_register(cv_store_t *s, const char *name, const char *type, const char *const *redirects,
			 size_t nredirects, const char *scope, const char *jwks, cv_client_t *out,
			 char secret[CV_CLIENT_SECRET_MAX], char *why, size_t whylen);

/* Fetches again the JWKS of c, a backend client read with cv_client_get that
 * has a jwks_url, when its last refresh is CV_CLIENT_JWKS_REFRESH_S or more
 * before now_us (or there was none). The attempt is recorded first, with a
 * compare-and-set on the record, so that of concurrent callers on any node
 * only one fetches; a fetched JWKS that passes cv_jwt_jwks_check then
 * replaces the stored one (compare-and-set again). ca_file as in
 * cv_client_new_t.
 * CV_OK when c now holds a JWKS other than the one it had (c is updated,
 * version included); CV_E_BUSY when the last refresh is too recent (c may
 * have been re-read); CV_E_UNSUPPORTED when c has no jwks_url; CV_E_IO,
 * CV_E_INVALID or CV_E_LIMIT from a failed fetch or check (why says which);
 * a store error. Blocks for up to the fetch's timeouts (auth/fetch). */
cv_rc cv_client_refresh_jwks(cv_store_t *s, const char *ca_file, int64_t now_us, cv_client_t *c, char *why,
			     size_t whylen) __attribute__((warn_unused_result));

/* Reads a client by id. CV_E_NOTFOUND when there is none. */
cv_rc cv_client_get(cv_store_t *s, const char *id, cv_client_t *out);

/* Sets disabled (retried on a concurrent change). */
cv_rc cv_client_set_disabled(cv_store_t *s, const char *id, bool disabled);

/* Calls fn for each client. */
cv_rc cv_client_each(cv_store_t *s, cv_rc (*fn)(void *arg, const cv_client_t *c), void *arg);

/* Frees what the client owns. */
void cv_client_release(cv_client_t *c);

#endif
