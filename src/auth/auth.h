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
#include "core/pool.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_TOKEN_MAX 128

typedef struct cv_auth cv_auth_t;

/* Makes a new bootstrap token, stores its hash (replacing any earlier one) and
 * writes the token to out (outlen >= CV_TOKEN_MAX). */
cv_rc cv_auth_bootstrap_create(cv_store_t *s, char *out, size_t outlen);

/* Loads what authentication needs from the store (which it keeps using, for
 * sessions). Sessions last session_idle_s unused and session_absolute_s at most. */
cv_rc cv_auth_new(cv_store_t *s, cv_auth_t **out);
void cv_auth_session_limits(cv_auth_t *a, unsigned idle_s, unsigned absolute_s);

#define CV_SESSION_COOKIE "__Host-cv_session" /* Secure, HttpOnly, SameSite=Strict, Path=/ */

/* Establishes the principal from a Cookie header holding a session cookie:
 * CV_OK with kind CV_PRINCIPAL_USER (strings in pool); CV_OK with
 * CV_PRINCIPAL_NONE when there is no session cookie; CV_E_UNAUTH for a
 * session that is not valid (ended, timed out, its account disabled). */
cv_rc cv_auth_cookie(const cv_auth_t *a, const char *cookie, cv_pool_t *pool, cv_principal_t *out)
	__attribute__((warn_unused_result));

/* The value of the session cookie in a Cookie header ("a=1; __Host-cv_session=v"),
 * copied to out (NUL-terminated); NULL when there is none or it does not fit in cap. */
const char *cv_auth_cookie_token(const char *cookie, char *out, size_t cap);

/* CV_OK when a session principal's state-changing request carries its CSRF
 * token in the header (constant-time compare); CV_E_DENIED otherwise. */
cv_rc cv_auth_csrf(const cv_principal_t *p, const char *header) __attribute__((warn_unused_result));

/* Frees it (NULL is fine). */
void cv_auth_free(cv_auth_t *a);

/* Establishes the principal from an Authorization header value (may be NULL):
 * the bootstrap token (ADMIN), or an OAuth access token "cva_..." (CLIENT,
 * its strings in pool; without a pool such a token is refused).
 * No header: CV_OK with kind CV_PRINCIPAL_NONE. A header that is not a valid
 * bearer token: CV_E_UNAUTH. */
cv_rc cv_auth_bearer(const cv_auth_t *a, const char *authorization, cv_pool_t *pool, cv_principal_t *out)
	__attribute__((warn_unused_result));

#endif
