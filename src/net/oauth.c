/*
 * oauth.c - the token endpoint (client_credentials with a private_key_jwt
 * assertion, RFC 7523 / SMART Backend Services) and SMART metadata.
 *
 * An assertion is accepted when: its signature verifies with a key of the
 * client's registered JWKS (RS384 or ES384 only, auth/jwt), iss and sub are
 * the client_id of an enabled backend client, aud is this token endpoint,
 * it expires in the future and at most 5 minutes from now, and its jti was
 * never used by that client before (remembered in the store, so on any node).
 */
#include "net/oauth.h"

#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/client.h"
#include "auth/jwt.h"
#include "auth/scope.h"
#include "auth/token.h"
#include "core/log.h"
#include "core/time.h"
#include "fhir/fhir.h"
#include "fhir/search.h"
#include "model/json.h"

#define ASSERTION_TYPE "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#define ASSERTION_MAX_LIFE_S 300
#define CLOCK_SKEW_S 30
#define FORM_MAX 16

static const cv_fhir_t *ctx(cv_exchange_t *ex)
{
	return ex->app;
}

/* "https://host" from the FHIR base "https://host/fhir". */
static const char *origin(cv_exchange_t *ex)
{
	size_t n = strlen(ex->base_url);
	if (n >= 5 && strcmp(ex->base_url + n - 5, "/fhir") == 0)
		n -= 5;
	return cv_pool_printf(ex->pool, "%.*s", (int)n, ex->base_url);
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

void cv_oauth_smart_configuration(cv_exchange_t *ex)
{
	const char *o = origin(ex);
	send_json(ex, 200,
		  cv_pool_printf(ex->pool,
				 "{\"issuer\":\"%s\",\"token_endpoint\":\"%s/auth/token\","
				 "\"grant_types_supported\":[\"client_credentials\"],"
				 "\"token_endpoint_auth_methods_supported\":[\"private_key_jwt\"],"
				 "\"token_endpoint_auth_signing_alg_values_supported\":[\"RS384\",\"ES384\"],"
				 "\"scopes_supported\":[\"system/*.cruds\",\"system/*.rs\",\"system/*.read\",\"system/*.write\"],"
				 "\"capabilities\":[\"client-confidential-asymmetric\"]}",
				 o ? o : "", o ? o : ""));
	ex->no_store = false;
}

static const char *form_value(const cv_param_t *p, size_t n, const char *name, int *dup)
{
	const char *v = NULL;
	for (size_t i = 0; i < n; i++)
		if (strcmp(p[i].name, name) == 0) {
			if (v)
				*dup = 1;
			v = p[i].value;
		}
	return v;
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
	if (!rc && cv_jwt_verify(assertion, c->jwks, strlen(c->jwks), &claims, why, sizeof why))
		rc = CV_E_UNAUTH;
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

void cv_oauth_token(cv_exchange_t *ex)
{
	cv_param_t p[FORM_MAX];
	size_t n = 0;
	int dup = 0;
	const char *ct = ex->header(ex, "Content-Type");
	if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0 ||
	    cv_search_form_decode(ex->body ? ex->body : "", ex->body_len, ex->pool, p, FORM_MAX, &n))
		return oauth_error(ex, 400, "invalid_request", "send application/x-www-form-urlencoded parameters");
	const char *grant = form_value(p, n, "grant_type", &dup), *atype = form_value(p, n, "client_assertion_type", &dup);
	const char *assertion = form_value(p, n, "client_assertion", &dup), *scope = form_value(p, n, "scope", &dup);
	if (dup)
		return oauth_error(ex, 400, "invalid_request", "a parameter is repeated");
	if (!grant || strcmp(grant, "client_credentials") != 0)
		return oauth_error(ex, 400, "unsupported_grant_type", "grant_type is client_credentials");
	if (!atype || strcmp(atype, ASSERTION_TYPE) != 0 || !assertion || !scope || strlen(assertion) > 16384)
		return oauth_error(ex, 400, "invalid_request",
				   "send client_assertion_type (jwt-bearer), client_assertion and scope");
	const char *endpoint = cv_pool_printf(ex->pool, "%s/auth/token", origin(ex));
	cv_client_t c;
	if (!endpoint || authenticate_client(ex, assertion, endpoint, &c))
		return;
	cv_buf_t granted;
	cv_buf_init(&granted, CV_CLIENT_SCOPE_MAX + 1);
	char token[CV_ACCESS_TOKEN_MAX];
	cv_rc rc = cv_scope_intersect(c.scope, scope, &granted);
	if (rc || !granted.len) {
		oauth_error(ex, 400, "invalid_scope", "none of the requested scopes is granted to this client");
	} else if ((rc = cv_token_issue(ctx(ex)->store, c.id, granted.data, NULL, cv_time_now_us(), CV_ACCESS_TOKEN_LIFE_S,
					 token))) {
		oauth_error(ex, 503, "temporarily_unavailable", "try again");
	} else {
		send_json(ex, 200,
			  cv_pool_printf(ex->pool,
					 "{\"access_token\":\"%s\",\"token_type\":\"bearer\",\"expires_in\":%d,\"scope\":\"%s\"}",
					 token, CV_ACCESS_TOKEN_LIFE_S, granted.data));
		cv_exchange_add_header(ex, "Pragma", "no-cache");
		sodium_memzero(token, sizeof token);
	}
	cv_buf_release(&granted);
	cv_client_release(&c);
}
