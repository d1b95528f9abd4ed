/*
 * oauth.c - the token endpoint (authorization_code with PKCE, refresh_token
 * with rotation, client_credentials with a private_key_jwt assertion),
 * token introspection (RFC 7662) and revocation (RFC 7009), and the
 * metadata documents (SMART configuration, OpenID Connect discovery, RFC
 * 8414, the JWKS of the id-token key).
 *
 * A backend assertion is accepted when: its signature verifies with a key of
 * the client's registered JWKS (RS384 or ES384 only, auth/jwt), iss and sub
 * are the client_id of an enabled backend client, aud is this token
 * endpoint, it expires in the future and at most 5 minutes from now, and its
 * jti was never used by that client before (remembered in the store, so on
 * any node). A client registered with a JWKS URL whose assertion names a key
 * the stored JWKS lacks gets its JWKS fetched again, at most once every 5
 * minutes (key rotation); an unknown client id never causes a fetch.
 *
 * An app authenticates as RFC 6749 2.3 says: a confidential app with its
 * secret (HTTP Basic, or client_secret in the form), a public app by its
 * client_id alone (PKCE binds its code). A confidential app that does not
 * send its secret is refused.
 */
#include "net/oauth.h"

#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "audit/audit.h"
#include "auth/account.h"
#include "auth/client.h"
#include "auth/idkey.h"
#include "auth/jwt.h"
#include "auth/scope.h"
#include "auth/token.h"
#include "core/log.h"
#include "crypto/crypto.h"
#include "core/time.h"
#include "fhir/fhir.h"
#include "fhir/search.h"
#include "model/json.h"

#define ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define ASSERTION_MAX_LIFE_S 300
#define CLOCK_SKEW_S 30
#define FORM_MAX 16
#define ID_TOKEN_LIFE_S 300

static const cv_fhir_t *ctx(cv_exchange_t *ex)
{
	return ex->app;
}

/* "https://host" from the FHIR base "https://host/fhir". */
static const char *origin(cv_exchange_t *ex)
{
	return cv_pool_printf(ex->pool, "%.*s", (int)cv_exchange_origin_len(ex), ex->base_url);
}

static void send_json(cv_exchange_t *ex, unsigned status, const char *text)
{
	ex->status = status;
	ex->content_type = "application/json";
	ex->no_store = true;
	cv_buf_reset(&ex->resp);
	if (!text || cv_buf_puts(&ex->resp, text)) {
		ex->status = 500;
		cv_buf_reset(&ex->resp);
	}
}

static void oauth_error(cv_exchange_t *ex, unsigned status, const char *error, const char *description)
{
	send_json(ex, status, cv_pool_printf(ex->pool, "{\"error\":\"%s\",\"error_description\":\"%s\"}", error,
					     description));
	cv_exchange_add_header(ex, "Pragma", "no-cache");
}

/* The claims an unverified token names: only to find the client whose keys verify it. */
static json_object *peek_claims(const char *jwt, cv_pool_t *pool)
{
	const char *dot1 = strchr(jwt, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (!dot2 || dot2 - dot1 - 1 > 8192)
		return NULL;
	size_t cap = (size_t)(dot2 - dot1), len = 0;
	unsigned char *raw = cv_pool_alloc(pool, cap + 1);
	if (!raw || sodium_base642bin(raw, cap, dot1 + 1, (size_t)(dot2 - dot1 - 1), NULL, &len, NULL,
				      sodium_base64_VARIANT_URLSAFE_NO_PADDING))
		return NULL;
	raw[len] = '\0';
	return json_tokener_parse((const char *)raw);
}

/* aud is the token endpoint, or an array holding it. */
static int aud_ok(json_object *claims, const char *endpoint)
{
	json_object *v;
	if (!json_object_object_get_ex(claims, "aud", &v))
		return 0;
	if (json_object_is_type(v, json_type_string))
		return strcmp(json_object_get_string(v), endpoint) == 0;
	for (size_t i = 0; json_object_is_type(v, json_type_array) && i < json_object_array_length(v); i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(v, i)), endpoint) == 0)
			return 1;
	return 0;
}

/* Checks the verified claims (issuer, subject, audience, lifetime, jti once). */
static cv_rc claims_ok(cv_exchange_t *ex, json_object *claims, const char *client_id, const char *endpoint)
{
	json_object *v;
	int64_t now = cv_time_now_us() / 1000000;
	const char *iss = cv_json_member_string(claims, "iss", &(int){ 0 }), *sub = cv_json_member_string(claims, "sub", &(int){ 0 }), *jti = cv_json_member_string(claims, "jti", &(int){ 0 });
	if (!iss || !sub || strcmp(iss, client_id) != 0 || strcmp(sub, client_id) != 0 || !aud_ok(claims, endpoint))
		return CV_E_UNAUTH;
	if (!json_object_object_get_ex(claims, "exp", &v) || !json_object_is_type(v, json_type_int))
		return CV_E_UNAUTH;
	int64_t exp = json_object_get_int64(v);
	if (exp <= now - CLOCK_SKEW_S || exp > now + ASSERTION_MAX_LIFE_S + CLOCK_SKEW_S)
		return CV_E_UNAUTH;
	if (!jti || !jti[0] || strlen(jti) > 256)
		return CV_E_UNAUTH;
	cv_rc rc = cv_token_jti_use(ctx(ex)->store, client_id, jti, cv_time_now_us());
	return rc == CV_E_CONFLICT ? CV_E_UNAUTH : rc;
}

/* Verifies the assertion with c's JWKS. A client registered with a JWKS URL
 * may have rotated its keys: when the assertion names none of the stored
 * ones (never when a key was tried and the signature failed), the JWKS is
 * fetched again, at most once per CV_CLIENT_JWKS_REFRESH_S for the client
 * (auth/client decides it in the store), and the assertion verified once
 * more. CV_OK, CV_E_UNAUTH, or a store error. */
static cv_rc verify_assertion(cv_exchange_t *ex, const char *assertion, cv_client_t *c, json_object **claims,
			      char *why, size_t whylen)
{
	char sub[200] = "";
	int no_key = 0;
	if (!cv_jwt_verify_ex(assertion, c->jwks, strlen(c->jwks), claims, &no_key, why, whylen))
		return CV_OK;
	if (!no_key || !c->jwks_url[0])
		return CV_E_UNAUTH;
	cv_rc rc = cv_client_refresh_jwks(ctx(ex)->store, ctx(ex)->cfg->outbound_ca_file, cv_time_now_us(), c, sub,
					  sizeof sub);
	cv_log(rc ? CV_LOG_WARN : CV_LOG_INFO, rc == CV_E_BUSY ? "auth.jwks_refresh_skipped" : "auth.jwks_refresh",
	       (cv_log_field_t[]){ CV_LS("client", c->id), CV_LS("result", rc ? cv_rc_str(rc) : "ok"),
				   CV_LS("reason", sub[0] ? sub : "-") },
	       3);
	if (rc == CV_E_NOMEM || rc == CV_E_STORAGE)
		return rc;
	if (rc || c->disabled || !c->jwks)
		return CV_E_UNAUTH;
	return cv_jwt_verify(assertion, c->jwks, strlen(c->jwks), claims, why, whylen) ? CV_E_UNAUTH : CV_OK;
}

/* The client the assertion authenticates, or an error answered already. */
static cv_rc authenticate_client(cv_exchange_t *ex, const char *assertion, const char *endpoint, cv_client_t *c)
{
	char why[128] = "";
	json_object *peek = peek_claims(assertion, ex->pool), *claims = NULL;
	const char *iss = peek ? cv_json_member_string(peek, "iss", &(int){ 0 }) : NULL;
	cv_rc rc = iss ? cv_client_get(ctx(ex)->store, iss, c) : CV_E_UNAUTH;
	json_object_put(peek);
	if (rc == CV_E_NOTFOUND)
		rc = CV_E_UNAUTH;
	if (!rc && (c->disabled || c->type != CV_CLIENT_BACKEND || !c->jwks))
		rc = CV_E_UNAUTH;
	if (!rc)
		rc = verify_assertion(ex, assertion, c, &claims, why, sizeof why);
	if (!rc)
		rc = claims_ok(ex, claims, c->id, endpoint);
	json_object_put(claims);
	if (rc) {
		cv_log(CV_LOG_INFO, "auth.client_assertion_refused",
		       (cv_log_field_t[]){ CV_LS("reason", why[0] ? why : "claims, client or replay") }, 1);
		if (rc == CV_E_UNAUTH)
			oauth_error(ex, 401, "invalid_client", "the client assertion was not accepted");
		else
			oauth_error(ex, 503, "temporarily_unavailable", "try again");
		cv_client_release(c);
	}
	return rc;
}

/* ---------------------------------------------------------------- forms and clients */

/* The request's form parameters. 0 (answered already) when it is not a usable form. */
typedef struct form {
	cv_param_t p[FORM_MAX];
	size_t n;
	int dup;
} form_t;

static int read_form(cv_exchange_t *ex, form_t *f)
{
	const char *ct = ex->header(ex, "Content-Type");
	f->n = 0;
	f->dup = 0;
	if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0 ||
	    cv_search_form_decode(ex->body ? ex->body : "", ex->body_len, ex->pool, f->p, FORM_MAX, &f->n)) {
		oauth_error(ex, 400, "invalid_request", "send application/x-www-form-urlencoded parameters");
		return 0;
	}
	return 1;
}

static const char *fv(form_t *f, const char *name)
{
	return cv_param_unique(f->p, f->n, name, &f->dup);
}

/* client_id and secret from an HTTP Basic header (RFC 6749 2.3.1), in pool. */
static int basic_credentials(cv_exchange_t *ex, const char **id, const char **secret)
{
	const char *h = ex->header(ex, "Authorization");
	if (!h || strncasecmp(h, "Basic ", 6) != 0)
		return 0;
	size_t n = strlen(h + 6), len = 0;
	char *raw = n < 1024 ? cv_pool_alloc(ex->pool, n + 1) : NULL;
	if (!raw || sodium_base642bin((unsigned char *)raw, n, h + 6, n, NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL))
		return -1;
	raw[len] = '\0';
	char *colon = strchr(raw, ':');
	if (!colon || memchr(raw, '\0', len) != NULL)
		return -1;
	*colon = '\0';
	*id = raw;
	*secret = colon + 1;
	return 1;
}

static void invalid_client(cv_exchange_t *ex, int basic)
{
	if (basic)
		cv_exchange_add_header(ex, "WWW-Authenticate", "Basic realm=\"carevault\"");
	oauth_error(ex, 401, "invalid_client", "the client could not be authenticated");
}

/* The app calling: a confidential app proves its secret, a public app names
 * itself. Answers 401 itself and returns non-zero when it cannot. */
static cv_rc authenticate_app(cv_exchange_t *ex, form_t *f, cv_client_t *c)
{
	const char *id = NULL, *secret = NULL;
	int basic = basic_credentials(ex, &id, &secret);
	const char *fid = fv(f, "client_id"), *fsecret = fv(f, "client_secret");
	if (basic < 0 || (basic && (fsecret || (fid && strcmp(fid, id) != 0)))) {
		invalid_client(ex, 1);
		return CV_E_UNAUTH;
	}
	if (!basic) {
		id = fid;
		secret = fsecret;
	}
	cv_rc rc = id ? cv_client_get(ctx(ex)->store, id, c) : CV_E_NOTFOUND;
	if (rc && rc != CV_E_NOTFOUND) {
		oauth_error(ex, 503, "temporarily_unavailable", "try again");
		return rc;
	}
	bool ok = !rc && !c->disabled && c->type != CV_CLIENT_BACKEND;
	if (ok && c->type == CV_CLIENT_CONFIDENTIAL) {
		uint8_t h[32];
		ok = secret != NULL;
		if (ok)
			cv_crypto_sha256(secret, strlen(secret), h);
		ok = ok && cv_crypto_equal(h, c->secret_hash, sizeof h);
	} else if (ok) {
		ok = secret == NULL; /* a public app has no secret: one sent is a mistake */
	}
	if (!ok) {
		if (!rc)
			cv_client_release(c);
		invalid_client(ex, basic);
		return CV_E_UNAUTH;
	}
	return CV_OK;
}

/* ---------------------------------------------------------------- token responses */

/* The id token: who signed in (sub), for which app (aud), the fhirUser. */
static const char *id_token(cv_exchange_t *ex, const cv_grant_t *g)
{
	cv_idkey_t *key = ctx(ex)->idkey;
	if (!key || !cv_scope_has(g->scope, CV_SCOPE_OPENID))
		return NULL;
	int64_t now = cv_time_now_us() / 1000000;
	json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "iss", json_object_new_string(ex->base_url));
	json_object_object_add(o, "sub", json_object_new_string(g->user));
	json_object_object_add(o, "aud", json_object_new_string(g->client));
	json_object_object_add(o, "iat", json_object_new_int64(now));
	json_object_object_add(o, "exp", json_object_new_int64(now + ID_TOKEN_LIFE_S));
	if (g->nonce[0])
		json_object_object_add(o, "nonce", json_object_new_string(g->nonce));
	const char *fhir_user = g->link[0] ? cv_pool_printf(ex->pool, "%s/%s", ex->base_url, g->link) : NULL;
	if ((cv_scope_has(g->scope, CV_SCOPE_FHIRUSER) || cv_scope_has(g->scope, CV_SCOPE_PROFILE)) && fhir_user)
		json_object_object_add(o, "fhirUser", json_object_new_string(fhir_user));
	cv_buf_t out;
	cv_buf_init(&out, 16u << 10);
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	const char *jwt = text && !cv_idkey_sign(key, text, &out) ? cv_pool_strdup(ex->pool, out.data) : NULL;
	cv_buf_release(&out);
	json_object_put(o);
	return jwt;
}

/* Issues the access token (and a new refresh token when offline_access was
 * granted) for a live grant g, with scope (within the grant's; NULL: all of
 * it), and answers. */
static void grant_tokens(cv_exchange_t *ex, const cv_grant_t *g, const char *scope)
{
	cv_store_t *s = ctx(ex)->store;
	unsigned life = ctx(ex)->cfg->access_token_life ? ctx(ex)->cfg->access_token_life : CV_ACCESS_TOKEN_LIFE_S;
	int64_t now = cv_time_now_us();
	char access[CV_ACCESS_TOKEN_MAX] = "", refresh[CV_ACCESS_TOKEN_MAX] = "";
	cv_rc rc = CV_OK;
	if (cv_scope_has(g->scope, CV_SCOPE_OFFLINE)) /* first: the access token, last, carries the record */
		rc = cv_refresh_issue(s, g, refresh);
	if (!rc)
		rc = cv_token_issue(s, g->client, scope ? scope : g->scope, g->id, now, life, access);
	json_object *o = rc ? NULL : json_object_new_object();
	if (o) {
		json_object_object_add(o, "access_token", json_object_new_string(access));
		json_object_object_add(o, "token_type", json_object_new_string("Bearer"));
		json_object_object_add(o, "expires_in", json_object_new_int((int)life));
		json_object_object_add(o, "scope", json_object_new_string(scope ? scope : g->scope));
		if (g->patient[0])
			json_object_object_add(o, "patient", json_object_new_string(g->patient));
		if (refresh[0])
			json_object_object_add(o, "refresh_token", json_object_new_string(refresh));
		const char *idt = id_token(ex, g);
		if (idt)
			json_object_object_add(o, "id_token", json_object_new_string(idt));
		send_json(ex, 200, cv_pool_strdup(ex->pool, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)));
		cv_exchange_add_header(ex, "Pragma", "no-cache");
	} else {
		oauth_error(ex, 503, "temporarily_unavailable", "try again");
	}
	json_object_put(o);
	sodium_memzero(access, sizeof access);
	sodium_memzero(refresh, sizeof refresh);
}

/* ---------------------------------------------------------------- grants */

static void client_credentials(cv_exchange_t *ex, form_t *f)
{
	const char *atype = fv(f, "client_assertion_type"), *assertion = fv(f, "client_assertion"), *scope = fv(f, "scope");
	if (f->dup)
		return oauth_error(ex, 400, "invalid_request", "a parameter is repeated");
	if (!atype || strcmp(atype, ASSERTION_TYPE) != 0 || !assertion || !scope || strlen(assertion) > 16384)
		return oauth_error(ex, 400, "invalid_request",
				   "send client_assertion_type (jwt-bearer), client_assertion and scope");
	const char *endpoint = cv_pool_printf(ex->pool, "%s/auth/token", origin(ex));
	cv_client_t c;
	if (!endpoint || authenticate_client(ex, assertion, endpoint, &c))
		return;
	cv_audit_agent(ex, c.id, NULL, NULL);
	cv_buf_t granted;
	cv_buf_init(&granted, CV_CLIENT_SCOPE_MAX + 1);
	char token[CV_ACCESS_TOKEN_MAX];
	unsigned life = ctx(ex)->cfg->access_token_life ? ctx(ex)->cfg->access_token_life : CV_ACCESS_TOKEN_LIFE_S;
	cv_rc rc = cv_scope_intersect(c.scope, scope, &granted);
	if (rc || !granted.len) {
		oauth_error(ex, 400, "invalid_scope", "none of the requested scopes is granted to this client");
	} else if ((rc = cv_token_issue(ctx(ex)->store, c.id, granted.data, NULL, cv_time_now_us(), life, token))) {
		oauth_error(ex, 503, "temporarily_unavailable", "try again");
	} else {
		send_json(ex, 200,
			  cv_pool_printf(ex->pool,
					 "{\"access_token\":\"%s\",\"token_type\":\"Bearer\",\"expires_in\":%u,\"scope\":\"%s\"}",
					 token, life, granted.data));
		cv_exchange_add_header(ex, "Pragma", "no-cache");
		sodium_memzero(token, sizeof token);
	}
	cv_buf_release(&granted);
	cv_client_release(&c);
}

static void authorization_code(cv_exchange_t *ex, form_t *f)
{
	const char *code = fv(f, "code"), *redirect = fv(f, "redirect_uri"), *verifier = fv(f, "code_verifier");
	if (f->dup || !code || !redirect || !verifier)
		return oauth_error(ex, 400, "invalid_request", "send code, redirect_uri and code_verifier (once each)");
	cv_client_t c;
	if (authenticate_app(ex, f, &c))
		return;
	cv_audit_agent(ex, c.id, NULL, NULL);
	cv_grant_t grant;
	cv_rc rc = cv_code_redeem(ctx(ex)->store, code, c.id, redirect, verifier, cv_time_now_us(), &grant);
	if (rc == CV_E_UNAUTH)
		oauth_error(ex, 400, "invalid_grant", "the code is not valid for this request");
	else if (rc)
		oauth_error(ex, 503, "temporarily_unavailable", "try again");
	else
		grant_tokens(ex, &grant, NULL);
	cv_client_release(&c);
}

static void refresh_token(cv_exchange_t *ex, form_t *f)
{
	const char *token = fv(f, "refresh_token"), *scope = fv(f, "scope");
	if (f->dup || !token)
		return oauth_error(ex, 400, "invalid_request", "send refresh_token (once)");
	cv_client_t c;
	if (authenticate_app(ex, f, &c))
		return;
	cv_audit_agent(ex, c.id, NULL, NULL);
	cv_grant_t g;
	cv_buf_t narrowed;
	cv_buf_init(&narrowed, CV_CLIENT_SCOPE_MAX + 1);
	cv_rc rc = cv_refresh_redeem(ctx(ex)->store, token, c.id, cv_time_now_us(), &g);
	if (!rc && scope && (cv_scope_intersect(g.scope, scope, &narrowed) || !narrowed.len))
		rc = CV_E_INVALID;
	if (rc == CV_E_UNAUTH)
		oauth_error(ex, 400, "invalid_grant", "the refresh token is not valid");
	else if (rc == CV_E_INVALID)
		oauth_error(ex, 400, "invalid_scope", "the scope must lie within the original grant");
	else if (rc)
		oauth_error(ex, 503, "temporarily_unavailable", "try again");
	else
		grant_tokens(ex, &g, scope ? narrowed.data : NULL);
	cv_buf_release(&narrowed);
	cv_client_release(&c);
}

void cv_oauth_token(cv_exchange_t *ex)
{
	form_t f;
	if (!read_form(ex, &f))
		return;
	const char *grant = fv(&f, "grant_type");
	bool refresh = grant && strcmp(grant, "refresh_token") == 0;
	cv_audit_kind(ex, CV_AUDIT_LOGIN, refresh ? "token-refreshed" : "token-issued", 'E');
	/* the access token and the record of its issue commit together (a refresh token, a
	 * redeemed code, commit before it: neither gives access alone) */
	cv_audit_companion_t rec = { .ex = ex, .status = 200, .type = CV_TOKEN_TYPE };
	cv_audit_companion_begin(&rec);
	if (grant && strcmp(grant, "client_credentials") == 0)
		client_credentials(ex, &f);
	else if (grant && strcmp(grant, "authorization_code") == 0)
		authorization_code(ex, &f);
	else if (grant && strcmp(grant, "refresh_token") == 0)
		refresh_token(ex, &f);
	else
		oauth_error(ex, 400, "unsupported_grant_type",
			    "grant_type is authorization_code, refresh_token or client_credentials");
	cv_audit_companion_end();
}

/* ---------------------------------------------------------------- introspection, revocation */

/* The client calling introspection: a confidential app with its secret, or a
 * backend service with an assertion. */
static cv_rc introspect_client(cv_exchange_t *ex, form_t *f, cv_client_t *c)
{
	const char *assertion = fv(f, "client_assertion"), *atype = fv(f, "client_assertion_type");
	if (assertion) {
		const char *endpoint = cv_pool_printf(ex->pool, "%s/auth/token", origin(ex));
		if (!atype || strcmp(atype, ASSERTION_TYPE) != 0 || !endpoint) {
			oauth_error(ex, 400, "invalid_request", "client_assertion_type must be jwt-bearer");
			return CV_E_INVALID;
		}
		return authenticate_client(ex, assertion, endpoint, c);
	}
	cv_rc rc = authenticate_app(ex, f, c);
	if (!rc && c->type != CV_CLIENT_CONFIDENTIAL) {
		cv_client_release(c);
		invalid_client(ex, 0);
		return CV_E_UNAUTH;
	}
	return rc;
}

static json_object *introspection(cv_exchange_t *ex, const cv_token_info_t *t)
{
	json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	json_object_object_add(o, "active", json_object_new_boolean(1));
	json_object_object_add(o, "scope", json_object_new_string(t->scope));
	json_object_object_add(o, "client_id", json_object_new_string(t->client));
	json_object_object_add(o, "token_type", json_object_new_string("Bearer"));
	json_object_object_add(o, "exp", json_object_new_int64(t->expires_us / 1000000));
	json_object_object_add(o, "iat", json_object_new_int64(t->issued_us / 1000000));
	json_object_object_add(o, "iss", json_object_new_string(ex->base_url));
	json_object_object_add(o, "sub", json_object_new_string(t->user[0] ? t->user : t->client));
	if (t->username[0])
		json_object_object_add(o, "username", json_object_new_string(t->username));
	if (t->patient[0])
		json_object_object_add(o, "patient", json_object_new_string(t->patient));
	const char *fhir_user = t->link[0] ? cv_pool_printf(ex->pool, "%s/%s", ex->base_url, t->link) : NULL;
	if (fhir_user)
		json_object_object_add(o, "fhirUser", json_object_new_string(fhir_user));
	return o;
}

void cv_oauth_introspect(cv_exchange_t *ex)
{
	form_t f;
	if (!read_form(ex, &f))
		return;
	const char *token = fv(&f, "token");
	cv_audit_kind(ex, CV_AUDIT_LOGIN, "token-introspected", 'E');
	if (f.dup || !token)
		return oauth_error(ex, 400, "invalid_request", "send token (once)");
	cv_client_t c;
	if (introspect_client(ex, &f, &c))
		return;
	cv_audit_agent(ex, c.id, NULL, NULL);
	cv_token_info_t t;
	cv_rc rc = cv_token_check(ctx(ex)->store, token, cv_time_now_us(), &t);
	json_object *o = NULL;
	if (!rc && strcmp(t.client, c.id) == 0)
		o = introspection(ex, &t);
	else if (!rc || rc == CV_E_UNAUTH)
		rc = CV_OK; /* not valid, or not this client's: inactive (RFC 7662 2.2) */
	if (rc)
		oauth_error(ex, 503, "temporarily_unavailable", "try again");
	else
		send_json(ex, 200, o ? cv_pool_strdup(ex->pool, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE))
				     : "{\"active\":false}");
	json_object_put(o);
	cv_client_release(&c);
}

void cv_oauth_revoke(cv_exchange_t *ex)
{
	form_t f;
	if (!read_form(ex, &f))
		return;
	const char *token = fv(&f, "token");
	(void)fv(&f, "token_type_hint");
	cv_audit_kind(ex, CV_AUDIT_LOGIN, "token-revoked", 'E');
	if (f.dup || !token)
		return oauth_error(ex, 400, "invalid_request", "send token (once)");
	cv_client_t c;
	if (authenticate_app(ex, &f, &c))
		return;
	cv_audit_agent(ex, c.id, NULL, NULL);
	/* the revocation (an access token's record, or a refresh token's grant) commits with its record */
	cv_audit_companion_t rec = { .ex = ex, .status = 200, .type = cv_token_revoke_type(token) };
	cv_audit_companion_begin(&rec);
	cv_rc rc = cv_token_revoke(ctx(ex)->store, c.id, token);
	cv_audit_companion_end();
	if (rc) {
		oauth_error(ex, 503, "temporarily_unavailable", "try again");
	} else {
		send_json(ex, 200, "{}");
		cv_log(CV_LOG_INFO, "auth.token_revoked", (cv_log_field_t[]){ CV_LS("client", c.id) }, 1);
	}
	cv_client_release(&c);
}

/* ---------------------------------------------------------------- metadata */

#define SCOPES_SUPPORTED                                                                                          \
	"[\"openid\",\"fhirUser\",\"profile\",\"launch/patient\",\"offline_access\",\"patient/*.rs\","             \
	"\"patient/*.cruds\",\"user/*.rs\",\"user/*.cruds\",\"system/*.rs\",\"system/*.cruds\",\"patient/*.read\"," \
	"\"user/*.read\",\"system/*.read\"]"

static void metadata(cv_exchange_t *ex, const char *extra)
{
	const char *o = origin(ex);
	send_json(ex, 200,
		  o ? cv_pool_printf(ex->pool,
				     "{\"issuer\":\"%s\",\"authorization_endpoint\":\"%s/auth/authorize\","
				     "\"token_endpoint\":\"%s/auth/token\",\"introspection_endpoint\":\"%s/auth/introspect\","
				     "\"revocation_endpoint\":\"%s/auth/revoke\",\"jwks_uri\":\"%s/.well-known/jwks.json\","
				     "\"response_types_supported\":[\"code\"],"
				     "\"grant_types_supported\":[\"authorization_code\",\"refresh_token\",\"client_credentials\"],"
				     "\"code_challenge_methods_supported\":[\"S256\"],"
				     "\"token_endpoint_auth_methods_supported\":[\"client_secret_basic\",\"client_secret_post\","
				     "\"private_key_jwt\",\"none\"],"
				     "\"token_endpoint_auth_signing_alg_values_supported\":[\"RS384\",\"ES384\"],"
				     "\"scopes_supported\":" SCOPES_SUPPORTED "%s}",
				     ex->base_url, o, o, o, o, o, extra)
		    : NULL);
	ex->no_store = false;
}

void cv_oauth_smart_configuration(cv_exchange_t *ex)
{
	metadata(ex, ",\"capabilities\":[\"launch-standalone\",\"client-public\",\"client-confidential-symmetric\","
		     "\"client-confidential-asymmetric\",\"context-standalone-patient\",\"sso-openid-connect\","
		     "\"permission-offline\",\"permission-patient\",\"permission-user\",\"permission-v1\","
		     "\"permission-v2\",\"authorize-post\"]");
}

void cv_oauth_openid_configuration(cv_exchange_t *ex)
{
	metadata(ex, ",\"subject_types_supported\":[\"public\"],\"id_token_signing_alg_values_supported\":[\"RS256\"],"
		     "\"claims_supported\":[\"iss\",\"sub\",\"aud\",\"exp\",\"iat\",\"nonce\",\"fhirUser\"]");
}

void cv_oauth_server_metadata(cv_exchange_t *ex)
{
	metadata(ex, ",\"introspection_endpoint_auth_methods_supported\":[\"client_secret_basic\","
		     "\"client_secret_post\",\"private_key_jwt\"],\"revocation_endpoint_auth_methods_supported\":"
		     "[\"client_secret_basic\",\"client_secret_post\",\"none\"]");
}

void cv_oauth_jwks(cv_exchange_t *ex)
{
	cv_buf_t b;
	cv_buf_init(&b, 16u << 10);
	cv_idkey_t *k = ctx(ex)->idkey;
	if (!k || cv_idkey_jwks(k, &b))
		send_json(ex, 200, "{\"keys\":[]}");
	else
		send_json(ex, 200, cv_pool_strdup(ex->pool, b.data));
	ex->no_store = false;
	cv_buf_release(&b);
}
