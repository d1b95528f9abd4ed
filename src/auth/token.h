/*
 * token.h - OAuth access tokens, and the replay guard for client assertions.
 *
 * Access tokens are opaque: "cva_" + 256 random bits. The store keeps only
 * their SHA-256, as the id of an internal "~Token" record (sealed) holding
 * the client, the granted scopes and the expiry. A token is checked on
 * every request by reading that record and the client: an expired token, a
 * revoked token (its record deleted) and a disabled client's token stop
 * working at once, on every node. Tokens live 5 minutes by default.
 *
 * Client assertion ids (jti) are remembered in "~Jti" records keyed by the
 * hash of client and jti, created with expect-version 0: a second use of the
 * same jti is a conflict, on any node.
 */
#ifndef CV_AUTH_TOKEN_H
#define CV_AUTH_TOKEN_H

#include <stdint.h>

#include "auth/client.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_ACCESS_TOKEN_MAX 64 /* "cva_" + 43 base64url characters, and a NUL */
#define CV_ACCESS_TOKEN_LIFE_S 300

/* What a valid token stands for. */
typedef struct cv_token_info {
	char client[CV_CLIENT_ID_LEN + 1];
	char scope[CV_CLIENT_SCOPE_MAX + 1];
	cv_scope_grant_t grant;   /* what the scopes allow on every type */
	int64_t expires_us;
} cv_token_info_t;

/* Issues a token for client with the granted scopes, valid life_s seconds
 * from now_us. token gets it (to hand out once; never stored). */
cv_rc cv_token_issue(cv_store_t *s, const char *client, const char *scope, int64_t now_us, unsigned life_s,
		     char token[CV_ACCESS_TOKEN_MAX]);

/* Checks a presented token at now_us. CV_E_UNAUTH for anything that is not a
 * valid, unexpired token of an enabled client. */
cv_rc cv_token_check(cv_store_t *s, const char *token, int64_t now_us, cv_token_info_t *out)
	__attribute__((warn_unused_result));

/* Records the use of assertion id jti by client. CV_E_CONFLICT when it was
 * used before (a replay). */
cv_rc cv_token_jti_use(cv_store_t *s, const char *client, const char *jti, int64_t now_us);

#endif
