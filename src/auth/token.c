/*
 * token.c - opaque access tokens and the jti replay guard (see token.h).
 */
#include "auth/token.h"

#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/pool.h"
#include "crypto/crypto.h"

#define TOKEN_TYPE "~Token"
#define JTI_TYPE "~Jti"

static cv_rc put(cv_store_t *s, const char *type, const char *id, const char *body, int64_t now_us)
{
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = type, .id = id, .expect_version = 0,
			       .updated_us = now_us, .body = (const uint8_t *)body,
			       .body_len = strlen(body) };
	return cv_store_write_sync(s, &w);
}

cv_rc cv_token_issue(cv_store_t *s, const char *client, const char *scope, int64_t now_us, unsigned life_s,
		     char token[CV_ACCESS_TOKEN_MAX])
{
	char id[65];
	cv_buf_t body;
	cv_buf_init(&body, CV_CLIENT_SCOPE_MAX + 256);
	cv_crypto_token("cva_", token, CV_ACCESS_TOKEN_MAX);
	cv_crypto_sha256_hex(token, id);
	json_object *o = json_object_new_object();
	cv_rc rc = o ? CV_OK : CV_E_NOMEM;
	if (!rc) {
		json_object_object_add(o, "client", json_object_new_string(client));
		json_object_object_add(o, "scope", json_object_new_string(scope));
		json_object_object_add(o, "exp_us", json_object_new_int64(now_us + (int64_t)life_s * 1000000));
		const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		rc = text ? cv_buf_puts(&body, text) : CV_E_NOMEM;
	}
	json_object_put(o);
	if (!rc)
		rc = put(s, TOKEN_TYPE, id, body.data, now_us);
	cv_buf_release(&body);
	if (rc)
		sodium_memzero(token, CV_ACCESS_TOKEN_MAX);
	return rc;
}

static cv_rc read_token(cv_store_t *s, const char *id, json_object **out)
{
	cv_pool_t pool;
	cv_store_version_t v;
	*out = NULL;
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_store_read(s, TOKEN_TYPE, id, 0, &pool, &v);
	if (!rc && v.deleted)
		rc = CV_E_NOTFOUND;
	if (!rc && !(*out = json_tokener_parse((const char *)v.body)))
		rc = CV_E_INTERNAL;
	cv_pool_release(&pool);
	return rc;
}

cv_rc cv_token_check(cv_store_t *s, const char *token, int64_t now_us, cv_token_info_t *out)
{
	char id[65];
	json_object *o = NULL, *v;
	memset(out, 0, sizeof *out);
	if (!token || strncmp(token, "cva_", 4) != 0 || strlen(token) >= CV_ACCESS_TOKEN_MAX)
		return CV_E_UNAUTH;
	cv_crypto_sha256_hex(token, id);
	cv_rc rc = read_token(s, id, &o);
	if (rc)
		return rc == CV_E_NOTFOUND ? CV_E_UNAUTH : rc;
	const char *client = json_object_object_get_ex(o, "client", &v) ? json_object_get_string(v) : "";
	const char *scope = json_object_object_get_ex(o, "scope", &v) ? json_object_get_string(v) : "";
	int64_t exp = json_object_object_get_ex(o, "exp_us", &v) ? json_object_get_int64(v) : 0;
	rc = now_us < exp && strlen(client) < sizeof out->client && strlen(scope) < sizeof out->scope ? CV_OK
												      : CV_E_UNAUTH;
	if (!rc) {
		memcpy(out->client, client, strlen(client) + 1);
		memcpy(out->scope, scope, strlen(scope) + 1);
		out->expires_us = exp;
		rc = cv_scope_list(out->scope, &out->grant, NULL, 0) ? CV_E_UNAUTH : CV_OK;
	}
	json_object_put(o);
	cv_client_t c;
	if (!rc && (rc = cv_client_get(s, out->client, &c)) == CV_OK) {
		if (c.disabled)
			rc = CV_E_UNAUTH;
		cv_client_release(&c);
	}
	return rc == CV_E_NOTFOUND ? CV_E_UNAUTH : rc;
}

cv_rc cv_token_jti_use(cv_store_t *s, const char *client, const char *jti, int64_t now_us)
{
	char id[65];
	cv_buf_t key;
	cv_buf_init(&key, 1024);
	cv_rc rc = cv_buf_printf(&key, "%s|%s", client, jti);
	if (!rc)
		cv_crypto_sha256_hex(key.data, id);
	cv_buf_release(&key);
	return rc ? rc : put(s, JTI_TYPE, id, "{}", now_us);
}
