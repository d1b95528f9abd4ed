/*
 * auth.h - who is calling: bearer tokens.
 *
 * Until user accounts exist the one credential is the bootstrap
 * administrator token made by `carevault init`: "cvb_" + base64url(32 random
 * bytes). The store keeps only its SHA-256 (meta "auth.bootstrap"); the
 * presented token is hashed and compared in constant time, and the caller
 * learns nothing but "no" when it does not match.
 */
#ifndef CV_AUTH_AUTH_H
#define CV_AUTH_AUTH_H

#include <stddef.h>

#include "core/exchange.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_TOKEN_MAX 128

typedef struct cv_auth cv_auth_t;

/* Makes a new bootstrap token, stores its hash (replacing any earlier one) and
 * writes the token to out (outlen >= CV_TOKEN_MAX). */
cv_rc cv_auth_bootstrap_create(cv_store_t *s, char *out, size_t outlen);

/* Loads what authentication needs from the store. */
cv_rc cv_auth_new(cv_store_t *s, cv_auth_t **out);

/* Frees it (NULL is fine). */
void cv_auth_free(cv_auth_t *a);

/* Establishes the principal from an Authorization header value (may be NULL).
 * No header: CV_OK with kind CV_PRINCIPAL_NONE. A header that is not a valid
 * bearer token: CV_E_UNAUTH. */
cv_rc cv_auth_bearer(const cv_auth_t *a, const char *authorization, cv_principal_t *out)
	__attribute__((warn_unused_result));

#endif
