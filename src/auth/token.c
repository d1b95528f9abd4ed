/*
 * token.c - opaque access and refresh tokens, authorization codes, grants
 * and the jti replay guard (see token.h).
 */
#include "auth/token.h"

#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "auth/record.h"
#include "core/buf.h"
#include "crypto/crypto.h"

#define TOKEN_TYPE CV_TOKEN_TYPE
#define REFRESH_TYPE "~Refresh"
#define CODE_TYPE CV_CODE_TYPE
#define GRANT_TYPE CV_GRANT_TYPE
#define JTI_TYPE "~Jti"
#define WRITE_TRIES 8
#define US 1000000LL

/* Copies src into dst of cap bytes; CV_E_UNAUTH when it does not fit (a record
 * is never written with longer values, so that means it is not ours). */
static cv_rc copy(char *dst, size_t cap, const char *src)
{
	size_t n = strlen(src);
	if (n >= cap)
		return CV_E_UNAUTH;
	memcpy(dst, src, n + 1);
	return CV_OK;
}

/* A new opaque token with prefix, and the id of its record (SHA-256, hex). */
static void new_token(const char *prefix, char token[CV_ACCESS_TOKEN_MAX], char id[65])
{
	cv_crypto_token(prefix, token, CV_ACCESS_TOKEN_MAX);
	cv_crypto_sha256_hex(token, id);
}

/* The record id of a presented token, when it has the prefix and the length. */
static int token_id(const char *token, const char *prefix, char id[65])
{
	size_t n = token ? strlen(token) : 0;
	if (n < 8 || n >= CV_ACCESS_TOKEN_MAX || strncmp(token, prefix, 4) != 0)
		return 0;
	cv_crypto_sha256_hex(token, id);
	return 1;
}

/* Creates a record with body o (takes o). */
static cv_rc create(cv_store_t *s, const char *type, const char *id, json_object *o)
{
	if (!o)
		return CV_E_NOMEM;
	cv_rc rc = cv_record_put(s, type, id, 0, o);
	json_object_put(o);
	return rc;
}

static json_object *obj_str(json_object *o, const char *k, const char *v)
{
	if (o)
		json_object_object_add(o, k, json_object_new_string(v ? v : ""));
	return o;
}

static json_object *obj_int(json_object *o, const char *k, int64_t v)
{
	if (o)
		json_object_object_add(o, k, json_object_new_int64(v));
	return o;
}

/* ---------------------------------------------------------------- access tokens */

cv_rc cv_token_issue(cv_store_t *s, const char *client, const char *scope, const char *grant, int64_t now_us,
		     unsigned life_s, char token[CV_ACCESS_TOKEN_MAX])
{
	char id[65];
	new_token("cva_", token, id);
	json_object *o = obj_str(obj_str(json_object_new_object(), "client", client), "scope", scope);
	o = obj_int(obj_int(obj_str(o, "grant", grant), "iat_us", now_us), "exp_us", now_us + (int64_t)life_s * US);
	cv_rc rc = create(s, TOKEN_TYPE, id, o);
	if (rc)
		sodium_memzero(token, CV_ACCESS_TOKEN_MAX);
	return rc;
}

/* The client exists and is enabled. */
static cv_rc client_enabled(cv_store_t *s, const char *id)
{
	cv_client_t c;
	cv_rc rc = cv_client_get(s, id, &c);
	if (!rc && c.disabled)
		rc = CV_E_UNAUTH;
	cv_client_release(&c);
	return rc == CV_E_NOTFOUND ? CV_E_UNAUTH : rc;
}

/* Fills the user part of out from a live grant (which read the account). */
static cv_rc user_part(cv_store_t *s, const char *grant, int64_t now_us, cv_token_info_t *out)
{
	cv_grant_t g;
	cv_rc rc = cv_grant_live(s, grant, now_us, &g);
	if (rc)
		return rc;
	if (strcmp(g.client, out->client) != 0)
		return CV_E_UNAUTH; /* issued to the grant's client only */
	memcpy(out->user, g.user, sizeof out->user);
	memcpy(out->username, g.username, sizeof out->username);
	memcpy(out->link, g.link, sizeof out->link);
	memcpy(out->role, g.role, sizeof out->role);
	memcpy(out->patient, g.patient, sizeof out->patient);
	return CV_OK;
}

cv_rc cv_token_check(cv_store_t *s, const char *token, int64_t now_us, cv_token_info_t *out)
{
	char id[65];
	json_object *o = NULL;
	int64_t version;
	memset(out, 0, sizeof *out);
	if (!token_id(token, "cva_", id))
		return CV_E_UNAUTH;
	cv_rc rc = cv_record_read(s, TOKEN_TYPE, id, &o, &version);
	if (!rc && !o)
		rc = CV_E_UNAUTH;
	if (!rc)
		rc = copy(out->client, sizeof out->client, cv_record_str(o, "client"));
	if (!rc)
		rc = copy(out->scope, sizeof out->scope, cv_record_str(o, "scope"));
	if (!rc)
		rc = copy(out->grant, sizeof out->grant, cv_record_str(o, "grant"));
	out->expires_us = cv_record_int(o, "exp_us");
	out->issued_us = cv_record_int(o, "iat_us");
	json_object_put(o);
	if (!rc && now_us >= out->expires_us)
		rc = CV_E_UNAUTH;
	if (!rc && out->grant[0])
		rc = user_part(s, out->grant, now_us, out); /* the grant's client is checked with it */
	else if (!rc)
		rc = client_enabled(s, out->client);
	return rc;
}

/* Deletes an access token of client. */
static cv_rc revoke_access(cv_store_t *s, const char *client, const char *id)
{
	cv_rc rc = CV_E_CONFLICT;
	for (int i = 0; rc == CV_E_CONFLICT && i < WRITE_TRIES; i++) {
		json_object *o = NULL;
		int64_t version;
		rc = cv_record_read(s, TOKEN_TYPE, id, &o, &version);
		int mine = o && strcmp(cv_record_str(o, "client"), client) == 0;
		json_object_put(o);
		if (rc || !mine)
			return rc;
		rc = cv_record_put(s, TOKEN_TYPE, id, version, NULL);
	}
	return rc;
}

const char *cv_token_revoke_type(const char *token)
{
	char id[65];
	return token_id(token, "cva_", id) ? CV_TOKEN_TYPE : token_id(token, "cvr_", id) ? GRANT_TYPE : NULL;
}

cv_rc cv_token_revoke(cv_store_t *s, const char *client, const char *token)
{
	char id[65];
	if (token_id(token, "cva_", id))
		return revoke_access(s, client, id);
	if (!token_id(token, "cvr_", id))
		return CV_OK;
	json_object *o = NULL;
	int64_t version;
	cv_rc rc = cv_record_read(s, REFRESH_TYPE, id, &o, &version);
	char grant[CV_GRANT_ID_LEN + 1] = "";
	if (!rc && o && strcmp(cv_record_str(o, "client"), client) == 0)
		(void)copy(grant, sizeof grant, cv_record_str(o, "grant"));
	json_object_put(o);
	return rc || !grant[0] ? rc : cv_grant_revoke(s, grant);
}

/* ---------------------------------------------------------------- grants */

static json_object *grant_json(const cv_grant_t *g)
{
	json_object *o = obj_str(obj_str(json_object_new_object(), "client", g->client), "user", g->user);
	o = obj_str(obj_str(obj_str(o, "scope", g->scope), "patient", g->patient), "nonce", g->nonce);
	o = obj_int(obj_int(obj_int(o, "epoch", g->epoch), "created_us", g->created_us), "exp_us", g->expires_us);
	if (o)
		json_object_object_add(o, "revoked", json_object_new_boolean(0));
	return o;
}

cv_rc cv_grant_create(cv_store_t *s, cv_grant_t *g, int64_t now_us)
{
	uint8_t raw[CV_GRANT_ID_LEN / 2];
	randombytes_buf(raw, sizeof raw);
	sodium_bin2hex(g->id, sizeof g->id, raw, sizeof raw);
	g->created_us = now_us;
	g->expires_us = now_us + (int64_t)CV_REFRESH_LIFE_S * US;
	return create(s, GRANT_TYPE, g->id, grant_json(g));
}

static cv_rc grant_decode(json_object *o, const char *id, cv_grant_t *g)
{
	cv_rc rc = copy(g->id, sizeof g->id, id);
	if (!rc)
		rc = copy(g->client, sizeof g->client, cv_record_str(o, "client"));
	if (!rc)
		rc = copy(g->user, sizeof g->user, cv_record_str(o, "user"));
	if (!rc)
		rc = copy(g->scope, sizeof g->scope, cv_record_str(o, "scope"));
	if (!rc)
		rc = copy(g->patient, sizeof g->patient, cv_record_str(o, "patient"));
	if (!rc)
		rc = copy(g->nonce, sizeof g->nonce, cv_record_str(o, "nonce"));
	g->epoch = cv_record_int(o, "epoch");
	g->created_us = cv_record_int(o, "created_us");
	g->expires_us = cv_record_int(o, "exp_us");
	return rc;
}

/* The grant's account is enabled and still at the grant's epoch; g gets its
 * name, role and link. */
static cv_rc account_current(cv_store_t *s, cv_grant_t *g)
{
	cv_account_t a;
	cv_rc rc = cv_account_get(s, g->user, &a);
	if (rc)
		return rc == CV_E_NOTFOUND ? CV_E_UNAUTH : rc;
	if (a.disabled || a.epoch != g->epoch)
		rc = CV_E_UNAUTH;
	memcpy(g->username, a.username, sizeof g->username);
	memcpy(g->link, a.link, sizeof g->link);
	snprintf(g->role, sizeof g->role, "%s", cv_role_name(a.role));
	cv_account_release(&a);
	return rc;
}

cv_rc cv_grant_live(cv_store_t *s, const char *id, int64_t now_us, cv_grant_t *out)
{
	json_object *o = NULL;
	int64_t version;
	memset(out, 0, sizeof *out);
	if (!id || strlen(id) != CV_GRANT_ID_LEN)
		return CV_E_UNAUTH;
	cv_rc rc = cv_record_read(s, GRANT_TYPE, id, &o, &version);
	if (!rc && (!o || cv_record_bool(o, "revoked")))
		rc = CV_E_UNAUTH;
	if (!rc)
		rc = grant_decode(o, id, out);
	json_object_put(o);
	if (!rc && now_us >= out->expires_us)
		rc = CV_E_UNAUTH;
	if (!rc)
		rc = account_current(s, out);
	if (!rc)
		rc = client_enabled(s, out->client);
	return rc;
}

cv_rc cv_grant_revoke(cv_store_t *s, const char *id)
{
	cv_rc rc = CV_E_CONFLICT;
	for (int i = 0; rc == CV_E_CONFLICT && i < WRITE_TRIES; i++) {
		json_object *o = NULL;
		int64_t version;
		rc = cv_record_read(s, GRANT_TYPE, id, &o, &version);
		if (!rc && o && !cv_record_bool(o, "revoked")) {
			json_object_object_add(o, "revoked", json_object_new_boolean(1));
			rc = cv_record_put(s, GRANT_TYPE, id, version, o);
		}
		json_object_put(o);
	}
	return rc;
}

/* ---------------------------------------------------------------- use-once records */

/* Marks the record used (compare-and-set). *o gets its body as read (NULL:
 * none). CV_E_CONFLICT when it was used before or is being used right now. */
static cv_rc use_once(cv_store_t *s, const char *type, const char *id, json_object **o)
{
	int64_t version;
	cv_rc rc = cv_record_read(s, type, id, o, &version);
	if (rc || !*o)
		return rc ? rc : CV_E_UNAUTH;
	if (cv_record_bool(*o, "used"))
		return CV_E_CONFLICT;
	json_object *u = json_object_get(*o);
	json_object_object_add(u, "used", json_object_new_boolean(1));
	rc = cv_record_put(s, type, id, version, u);
	json_object_put(u);
	return rc;
}

/* After use_once: a second use revokes the family; anything else fails. */
static cv_rc after_use(cv_store_t *s, cv_rc rc, json_object *o)
{
	if (rc == CV_E_CONFLICT && o && cv_record_str(o, "grant")[0]) {
		cv_rc r2 = cv_grant_revoke(s, cv_record_str(o, "grant"));
		if (r2)
			return r2;
	}
	return rc == CV_E_CONFLICT || rc == CV_E_NOTFOUND ? CV_E_UNAUTH : rc;
}

/* Ends a redemption: rc is the checks' verdict on the spent record o (taken).
 * On success grant gets its family, which must still be live. */
static cv_rc redeemed(cv_store_t *s, cv_rc rc, json_object *o, int64_t now_us, cv_grant_t *grant)
{
	char id[CV_GRANT_ID_LEN + 1] = "";
	if (!rc)
		rc = copy(id, sizeof id, cv_record_str(o, "grant"));
	rc = after_use(s, rc, o);
	json_object_put(o);
	if (!rc)
		return cv_grant_live(s, id, now_us, grant); /* its family, account and client still stand */
	memset(grant, 0, sizeof *grant);
	return rc;
}

cv_rc cv_code_issue(cv_store_t *s, const cv_grant_t *g, const char *redirect_uri, const char *challenge,
		    int64_t now_us, char code[CV_ACCESS_TOKEN_MAX])
{
	char id[65];
	new_token("cvz_", code, id);
	json_object *o = obj_str(obj_str(json_object_new_object(), "grant", g->id), "client", g->client);
	o = obj_int(obj_str(obj_str(o, "redirect_uri", redirect_uri), "challenge", challenge), "exp_us",
		    now_us + CV_CODE_LIFE_S * US);
	cv_rc rc = create(s, CODE_TYPE, id, o);
	if (rc)
		sodium_memzero(code, CV_ACCESS_TOKEN_MAX);
	return rc;
}

/* The code record binds this client, redirect URI and verifier, and is unexpired. */
static cv_rc code_binds(json_object *o, const char *client, const char *redirect_uri, const char *verifier,
			int64_t now_us)
{
	char challenge[CV_CHALLENGE_LEN + 1];
	const char *want = cv_record_str(o, "challenge");
	if (cv_pkce_s256(verifier, challenge) || strlen(want) != CV_CHALLENGE_LEN ||
	    !cv_crypto_equal(challenge, want, CV_CHALLENGE_LEN))
		return CV_E_UNAUTH;
	if (strcmp(cv_record_str(o, "client"), client) != 0 || strcmp(cv_record_str(o, "redirect_uri"), redirect_uri) != 0)
		return CV_E_UNAUTH;
	return now_us < cv_record_int(o, "exp_us") ? CV_OK : CV_E_UNAUTH;
}

cv_rc cv_code_redeem(cv_store_t *s, const char *code, const char *client, const char *redirect_uri,
		     const char *verifier, int64_t now_us, cv_grant_t *grant)
{
	char id[65];
	json_object *o = NULL;
	memset(grant, 0, sizeof *grant);
	if (!token_id(code, "cvz_", id) || !client || !redirect_uri || !verifier)
		return CV_E_UNAUTH;
	cv_rc rc = use_once(s, CODE_TYPE, id, &o); /* a code is spent by any attempt */
	if (!rc)
		rc = code_binds(o, client, redirect_uri, verifier, now_us);
	return redeemed(s, rc, o, now_us, grant);
}

cv_rc cv_refresh_issue(cv_store_t *s, const cv_grant_t *g, char token[CV_ACCESS_TOKEN_MAX])
{
	char id[65];
	new_token("cvr_", token, id);
	json_object *o = obj_str(obj_str(json_object_new_object(), "grant", g->id), "client", g->client);
	cv_rc rc = create(s, REFRESH_TYPE, id, obj_int(o, "exp_us", g->expires_us));
	if (rc)
		sodium_memzero(token, CV_ACCESS_TOKEN_MAX);
	return rc;
}

cv_rc cv_refresh_redeem(cv_store_t *s, const char *token, const char *client, int64_t now_us, cv_grant_t *grant)
{
	char id[65];
	json_object *o = NULL;
	memset(grant, 0, sizeof *grant);
	if (!token_id(token, "cvr_", id) || !client)
		return CV_E_UNAUTH;
	cv_rc rc = use_once(s, REFRESH_TYPE, id, &o);
	if (!rc && (strcmp(cv_record_str(o, "client"), client) != 0 || now_us >= cv_record_int(o, "exp_us")))
		rc = CV_E_UNAUTH;
	return redeemed(s, rc, o, now_us, grant);
}

/* ---------------------------------------------------------------- PKCE, jti */

cv_rc cv_pkce_s256(const char *verifier, char challenge[CV_CHALLENGE_LEN + 1])
{
	static const char unreserved[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
	uint8_t h[32];
	size_t n = verifier ? strlen(verifier) : 0;
	challenge[0] = '\0';
	if (n < 43 || n > 128 || strspn(verifier, unreserved) != n)
		return CV_E_INVALID;
	cv_crypto_sha256(verifier, n, h);
	sodium_bin2base64(challenge, CV_CHALLENGE_LEN + 1, h, sizeof h, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return CV_OK;
}

cv_rc cv_token_jti_use(cv_store_t *s, const char *client, const char *jti, int64_t now_us)
{
	char id[65];
	cv_buf_t key;
	(void)now_us;
	cv_buf_init(&key, 1024);
	cv_rc rc = cv_buf_printf(&key, "%s|%s", client, jti);
	if (!rc)
		cv_crypto_sha256_hex(key.data, id);
	cv_buf_release(&key);
	return rc ? rc : create(s, JTI_TYPE, id, json_object_new_object());
}
