/*
 * client.h - registered OAuth 2.0 / SMART clients.
 *
 * A client is a sealed, versioned internal record "~Client" (id: 128 random
 * bits, hex, the client_id). It has a name, a type (public, confidential,
 * backend), its exact redirect URIs, the scopes it may be granted and, for a
 * backend client, the JWKS whose keys sign its assertions; a confidential
 * client's secret is kept only as its SHA-256 (the secret has 256 random
 * bits, so a slow hash adds nothing). Disabling a client stops its tokens at
 * once: every token check reads the client.
 *
 * Scopes (auth/scope): a backend client is registered with system/ scopes
 * only; an app (public or confidential) with patient/ and user/ scopes and
 * the named ones (openid, fhirUser, launch/patient, offline_access...), never
 * system/ ones. A token gets the requested scopes that lie within the
 * registration, less those the user unticks at consent.
 */
#ifndef CV_AUTH_CLIENT_H
#define CV_AUTH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_CLIENT_ID_LEN 32
#define CV_CLIENT_NAME_MAX 100
#define CV_CLIENT_REDIRECTS 8
#define CV_CLIENT_URI_MAX 512
#define CV_CLIENT_SCOPE_MAX 1024
#define CV_CLIENT_JWKS_MAX (64u << 10)
#define CV_CLIENT_SECRET_MAX 64

typedef enum { CV_CLIENT_PUBLIC, CV_CLIENT_CONFIDENTIAL, CV_CLIENT_BACKEND } cv_client_type;

typedef struct cv_client {
	char id[CV_CLIENT_ID_LEN + 1];
	char name[CV_CLIENT_NAME_MAX + 1];
	cv_client_type type;
	char redirect[CV_CLIENT_REDIRECTS][CV_CLIENT_URI_MAX + 1];
	size_t nredirect;
	char scope[CV_CLIENT_SCOPE_MAX + 1];  /* space-separated, normalised */
	char *jwks;                           /* backend: the JWKS JSON (heap) or NULL */
	uint8_t secret_hash[32];              /* confidential: SHA-256 of the secret */
	bool disabled;
	int64_t created_us;
	int64_t version;                      /* store version read */
} cv_client_t;

/* "public", "confidential", "backend". */
const char *cv_client_type_name(cv_client_type t);
cv_rc cv_client_type_parse(const char *name, cv_client_type *out);

/* Makes a client: checks name, type, redirect URIs (https, or http on
 * localhost, no fragment; required for public and confidential clients),
 * scopes and the JWKS (required for backend clients, via cv_jwt_jwks_check).
 * For a confidential client, secret (CV_CLIENT_SECRET_MAX) gets the secret to
 * show once. Stores it; on CV_OK out is the client (release it). */
cv_rc cv_client_register(cv_store_t *s, const char *name, const char *type, const char *const *redirects,
			 size_t nredirects, const char *scope, const char *jwks, cv_client_t *out,
			 char secret[CV_CLIENT_SECRET_MAX], char *why, size_t whylen);

/* Reads a client by id. CV_E_NOTFOUND when there is none. */
cv_rc cv_client_get(cv_store_t *s, const char *id, cv_client_t *out);

/* Sets disabled (retried on a concurrent change). */
cv_rc cv_client_set_disabled(cv_store_t *s, const char *id, bool disabled);

/* Calls fn for each client. */
cv_rc cv_client_each(cv_store_t *s, cv_rc (*fn)(void *arg, const cv_client_t *c), void *arg);

/* Frees what the client owns. */
void cv_client_release(cv_client_t *c);

#endif
