/*
 * token.h - OAuth access tokens, the grants behind user tokens, refresh
 * tokens, authorization codes, and the replay guard for client assertions.
 *
 * Every token is opaque: a prefix and 256 random bits, base64url ("cva_"
 * access, "cvr_" refresh, "cvz_" authorization code). The store keeps only
 * its SHA-256, as the id of a sealed internal record; nothing that is
 * handed out can be rebuilt from the store.
 *
 * A grant ("~Grant", random id) is what a person consented to: client,
 * account, the account's epoch then, scopes, launch patient, OpenID nonce.
 * It is the family of every code, access token and refresh token issued
 * from it. Revoking the grant (a reused code or refresh token, a revoked
 * refresh token) ends the whole family at once.
 *
 * An access token ("~Token") names its client and scopes, and for a user its
 * grant. It is checked on every request by reading the token, the grant,
 * the account and the client: a deleted token, a revoked grant, a disabled
 * or re-epoched account (disable, revoke-sessions, logout-everywhere) and a
 * disabled client stop it at once, on every node. Tokens live 5 minutes by
 * default.
 *
 * A refresh token ("~Refresh") and a code ("~Code") are used once: using one
 * writes its record's next version with compare-and-set, so a second use,
 * even at the same moment on another node, is seen, and revokes the grant.
 *
 * Client assertion ids (jti) are remembered in "~Jti" records keyed by the
 * hash of client and jti, created with expect-version 0: a second use of the
 * same jti is a conflict, on any node.
 */
#ifndef CV_AUTH_TOKEN_H
#define CV_AUTH_TOKEN_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/account.h"
#include "auth/client.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_TOKEN_TYPE "~Token" /* the internal type of access token records */
#define CV_GRANT_TYPE "~Grant" /* of grants (a refresh token's family) */
#define CV_CODE_TYPE "~Code"   /* of authorization codes */

#define CV_ACCESS_TOKEN_MAX 64 /* "cva_" + 43 base64url characters, and a NUL (same for cvr_, cvz_) */
#define CV_ACCESS_TOKEN_LIFE_S 300
#define CV_REFRESH_LIFE_S (30 * 86400) /* a refresh token's family lives 30 days at most */
#define CV_CODE_LIFE_S 60
#define CV_GRANT_ID_LEN 32
#define CV_PATIENT_ID_MAX 64
#define CV_NONCE_MAX 128
#define CV_CHALLENGE_LEN 43 /* base64url SHA-256 */

/* What a person consented to. */
typedef struct cv_grant {
	char id[CV_GRANT_ID_LEN + 1];
	char client[CV_CLIENT_ID_LEN + 1];
	char user[CV_ACCOUNT_ID_LEN + 1];
	int64_t epoch;                          /* the account's epoch at consent */
	char scope[CV_CLIENT_SCOPE_MAX + 1];    /* granted */
	char patient[CV_PATIENT_ID_MAX + 1];    /* launch patient id, or "" */
	char nonce[CV_NONCE_MAX + 1];           /* OpenID nonce, or "" */
	int64_t created_us;
	int64_t expires_us;                     /* when the family ends (refresh tokens with it) */
	/* from the account, filled by cv_grant_live: */
	char username[CV_USERNAME_MAX + 1];
	char role[16];
	char link[CV_LINK_MAX + 1];             /* Patient/... or Practitioner/..., or "" */
} cv_grant_t;

/* What a valid access token stands for. */
typedef struct cv_token_info {
	char client[CV_CLIENT_ID_LEN + 1];
	char scope[CV_CLIENT_SCOPE_MAX + 1];
	int64_t expires_us;
	int64_t issued_us;
	char grant[CV_GRANT_ID_LEN + 1];         /* "" for a backend token */
	char user[CV_ACCOUNT_ID_LEN + 1];        /* the account, "" for a backend token */
	char username[CV_USERNAME_MAX + 1];
	char role[16];
	char link[CV_LINK_MAX + 1];              /* the account's Patient/... or Practitioner/... */
	char patient[CV_PATIENT_ID_MAX + 1];     /* launch patient id, or "" */
} cv_token_info_t;

/* Issues a token for client with the granted scopes (grant: NULL for a
 * backend client), valid life_s seconds from now_us. token gets it (to hand
 * out once; never stored). */
cv_rc cv_token_issue(cv_store_t *s, const char *client, const char *scope, const char *grant, int64_t now_us,
		     unsigned life_s, char token[CV_ACCESS_TOKEN_MAX]);

/* Checks a presented access token at now_us. CV_E_UNAUTH for anything that
 * is not a valid, unexpired token of an enabled client (and, for a user's,
 * of a live grant of an enabled account at the same epoch). */
cv_rc cv_token_check(cv_store_t *s, const char *token, int64_t now_us, cv_token_info_t *out)
	__attribute__((warn_unused_result));

/* Revokes a token handed to client: an access token's record is deleted, a
 * refresh token's grant is revoked (the whole family). A token that is not
 * valid, or not the client's, is ignored (RFC 7009: the answer is the same). */
cv_rc cv_token_revoke(cv_store_t *s, const char *client, const char *token);

/* The internal type cv_token_revoke writes for token (CV_TOKEN_TYPE or
 * CV_GRANT_TYPE), or NULL when it is no token of ours: what the record of
 * the revocation commits with. */
const char *cv_token_revoke_type(const char *token);

/* Stores a new grant (g->id, created_us and expires_us are set here). */
cv_rc cv_grant_create(cv_store_t *s, cv_grant_t *g, int64_t now_us);

/* Reads a grant that is live: not revoked, not expired at now_us, its account
 * enabled at the grant's epoch and its client enabled (out also gets the
 * account's name, role and link). CV_E_UNAUTH otherwise. */
cv_rc cv_grant_live(cv_store_t *s, const char *id, int64_t now_us, cv_grant_t *out);

/* Revokes a grant and with it every token of its family. */
cv_rc cv_grant_revoke(cv_store_t *s, const char *id);

/* An authorization code for grant g (just made, or read live), bound to the
 * redirect URI and the PKCE S256 challenge; lives CV_CODE_LIFE_S. */
cv_rc cv_code_issue(cv_store_t *s, const cv_grant_t *g, const char *redirect_uri, const char *challenge,
		    int64_t now_us, char code[CV_ACCESS_TOKEN_MAX]);

/* Redeems a code once: CV_OK when it is unexpired and unused, was issued for
 * client and redirect_uri, and S256(verifier) is its challenge; grant gets
 * its grant, read live. Any failure is CV_E_UNAUTH; a second use of a code
 * also revokes its grant (RFC 6749 4.1.2: tokens issued from it stop working). */
cv_rc cv_code_redeem(cv_store_t *s, const char *code, const char *client, const char *redirect_uri,
		     const char *verifier, int64_t now_us, cv_grant_t *grant);

/* Issues a refresh token in the family of grant g (read live). */
cv_rc cv_refresh_issue(cv_store_t *s, const cv_grant_t *g, char token[CV_ACCESS_TOKEN_MAX]);

/* Uses a refresh token of client once; grant gets its family, read live.
 * CV_E_UNAUTH for anything not valid; a refresh token used before revokes
 * its family (someone holds a copy: RFC 9700 4.14.2). */
cv_rc cv_refresh_redeem(cv_store_t *s, const char *token, const char *client, int64_t now_us, cv_grant_t *grant);

/* The PKCE S256 challenge of verifier (RFC 7636 4.2): base64url(SHA-256).
 * CV_E_INVALID when the verifier is not 43 to 128 unreserved characters. */
cv_rc cv_pkce_s256(const char *verifier, char challenge[CV_CHALLENGE_LEN + 1]);

/* Records the use of assertion id jti by client. CV_E_CONFLICT when it was
 * used before (a replay). */
cv_rc cv_token_jti_use(cv_store_t *s, const char *client, const char *jti, int64_t now_us);

#endif
