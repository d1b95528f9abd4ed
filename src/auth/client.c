/*
 * client.c - registered OAuth clients as sealed internal records, and system
 * scopes (see client.h).
 */
#include "auth/client.h"

#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "auth/scope.h"
#include "core/pool.h"
#include "model/json.h"
#include "core/time.h"
#include "crypto/crypto.h"

#define CLIENT_TYPE "~Client"
#define RECORD_MAX (CV_CLIENT_JWKS_MAX + (16u << 10))
#define UPDATE_TRIES 8

static const char *const type_names[] = { "public", "confidential", "backend" };

const char *cv_client_type_name(cv_client_type t)
{
	return (unsigned)t < 3 ? type_names[t] : "unknown";
}

cv_rc cv_client_type_parse(const char *name, cv_client_type *out)
{
	for (int i = 0; name && i < 3; i++)
		if (strcmp(name, type_names[i]) == 0) {
			*out = (cv_client_type)i;
			return CV_OK;
		}
	return CV_E_INVALID;
}

/* ---------------------------------------------------------------- records */

static cv_rc redirect_check(const char *uri, char *why, size_t whylen)
{
	size_t n = strlen(uri);
	bool https = strncmp(uri, "https://", 8) == 0 && n > 8;
	bool local = strncmp(uri, "http://localhost", 16) == 0 || strncmp(uri, "http://127.0.0.1", 16) == 0;
	if (n > CV_CLIENT_URI_MAX || (!https && !local) || strchr(uri, '#') || strpbrk(uri, " \t\r\n\"<>\\")) {
		snprintf(why, whylen, "a redirect URI is https:// (or http://localhost), without a fragment, at most %d bytes",
			 CV_CLIENT_URI_MAX);
		return CV_E_INVALID;
	}
	return CV_OK;
}

static cv_rc client_check(const cv_client_t *c, char *why, size_t whylen)
{
	size_t n = strlen(c->name);
	if (n == 0 || strspn(c->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ._-") != n) {
		snprintf(why, whylen, "a client name has 1 to %d letters, digits, spaces and . _ -", CV_CLIENT_NAME_MAX);
		return CV_E_INVALID;
	}
	if (c->type != CV_CLIENT_BACKEND && c->nredirect == 0) {
		snprintf(why, whylen,
			 "a public or confidential client needs at least one redirect URI (redirect_uris, --redirect-uri)");
		return CV_E_INVALID;
	}
	for (size_t i = 0; i < c->nredirect; i++)
		if (redirect_check(c->redirect[i], why, whylen))
			return CV_E_INVALID;
	if (c->type == CV_CLIENT_BACKEND && !c->jwks) {
		snprintf(why, whylen, "a backend client needs its public keys (jwks, --jwks-file)");
		return CV_E_INVALID;
	}
	if (!c->scope[0]) {
		snprintf(why, whylen, "give the scopes the client may have (scope, --scope)");
		return CV_E_INVALID;
	}
	if (cv_scope_check_registration(c->scope, c->type == CV_CLIENT_BACKEND, why, whylen))
		return CV_E_INVALID;
	if (c->type != CV_CLIENT_BACKEND)
		return CV_OK;
	return cv_jwt_jwks_check(c->jwks, strlen(c->jwks), why, whylen) ? CV_E_INVALID : CV_OK;
}

static cv_rc encode(const cv_client_t *c, cv_buf_t *out)
{
	char hex[65];
	json_object *o = json_object_new_object(), *r = json_object_new_array();
	if (!o || !r) {
		json_object_put(o);
		json_object_put(r);
		return CV_E_NOMEM;
	}
	json_object_object_add(o, "redirect_uris", r);
	for (size_t i = 0; i < c->nredirect; i++)
		json_object_array_add(r, json_object_new_string(c->redirect[i]));
	sodium_bin2hex(hex, sizeof hex, c->secret_hash, sizeof c->secret_hash);
	json_object_object_add(o, "id", json_object_new_string(c->id));
	json_object_object_add(o, "name", json_object_new_string(c->name));
	json_object_object_add(o, "type", json_object_new_string(cv_client_type_name(c->type)));
	json_object_object_add(o, "scope", json_object_new_string(c->scope));
	json_object_object_add(o, "secret_sha256", json_object_new_string(hex));
	json_object_object_add(o, "disabled", json_object_new_boolean(c->disabled));
	json_object_object_add(o, "created_us", json_object_new_int64(c->created_us));
	if (c->jwks)
		json_object_object_add(o, "jwks", json_object_new_string(c->jwks));
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	cv_buf_reset(out);
	cv_rc rc = text ? cv_buf_puts(out, text) : CV_E_NOMEM;
	json_object_put(o);
	return rc;
}

static cv_rc copy(char *dst, size_t cap, const char *src)
{
	if (!src || strlen(src) >= cap)
		return CV_E_INTERNAL;
	memcpy(dst, src, strlen(src) + 1);
	return CV_OK;
}

static cv_rc decode(const char *text, cv_client_t *c)
{
	memset(c, 0, sizeof *c);
	json_object *o = json_tokener_parse(text), *r, *v;
	if (!o)
		return CV_E_INTERNAL;
	cv_rc rc = copy(c->id, sizeof c->id, cv_json_member_string(o, "id", &(int){ 0 }));
	if (!rc)
		rc = copy(c->name, sizeof c->name, cv_json_member_string(o, "name", &(int){ 0 }));
	if (!rc)
		rc = cv_client_type_parse(cv_json_member_string(o, "type", &(int){ 0 }), &c->type) ? CV_E_INTERNAL : CV_OK;
	if (!rc)
		rc = copy(c->scope, sizeof c->scope, cv_json_member_string(o, "scope", &(int){ 0 }));
	const char *hex = rc ? NULL : cv_json_member_string(o, "secret_sha256", &(int){ 0 });
	if (!rc && (!hex || sodium_hex2bin(c->secret_hash, sizeof c->secret_hash, hex, strlen(hex), NULL, NULL, NULL)))
		rc = CV_E_INTERNAL;
	if (!rc && json_object_object_get_ex(o, "redirect_uris", &r))
		for (size_t i = 0; !rc && i < json_object_array_length(r) && i < CV_CLIENT_REDIRECTS; i++)
			rc = copy(c->redirect[c->nredirect++], CV_CLIENT_URI_MAX + 1,
				  json_object_get_string(json_object_array_get_idx(r, i)));
	if (!rc && cv_json_member_string(o, "jwks", &(int){ 0 }) && !(c->jwks = strdup(cv_json_member_string(o, "jwks", &(int){ 0 }))))
		rc = CV_E_NOMEM;
	c->disabled = json_object_object_get_ex(o, "disabled", &v) && json_object_get_boolean(v);
	c->created_us = json_object_object_get_ex(o, "created_us", &v) ? json_object_get_int64(v) : 0;
	json_object_put(o);
	if (rc)
		cv_client_release(c);
	return rc;
}

static cv_rc put(cv_store_t *s, cv_client_t *c)
{
	cv_buf_t body;
	cv_buf_init(&body, RECORD_MAX);
	cv_rc rc = encode(c, &body);
	if (!rc) {
		cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = CLIENT_TYPE, .id = c->id,
				       .expect_version = c->version, .updated_us = cv_time_now_us(),
				       .body = (const uint8_t *)body.data, .body_len = body.len };
		rc = cv_store_write_sync(s, &w);
		if (!rc)
			c->version++;
	}
	cv_buf_release(&body);
	return rc;
}

cv_rc cv_client_register(cv_store_t *s, const char *name, const char *type, const char *const *redirects,
			 size_t nredirects, const char *scope, const char *jwks, cv_client_t *out,
			 char secret[CV_CLIENT_SECRET_MAX], char *why, size_t whylen)
{
	uint8_t raw[CV_CLIENT_ID_LEN / 2];
	memset(out, 0, sizeof *out);
	secret[0] = '\0';
	if (cv_client_type_parse(type, &out->type)) {
		snprintf(why, whylen, "the type is public, confidential or backend");
		return CV_E_INVALID;
	}
	if (!name || strlen(name) > CV_CLIENT_NAME_MAX || nredirects > CV_CLIENT_REDIRECTS ||
	    (scope && strlen(scope) > CV_CLIENT_SCOPE_MAX) || (jwks && strlen(jwks) > CV_CLIENT_JWKS_MAX)) {
		snprintf(why, whylen, "a name, scope list, JWKS or redirect list is too long");
		return CV_E_LIMIT;
	}
	snprintf(out->name, sizeof out->name, "%s", name);
	for (size_t i = 0; i < nredirects; i++) {
		if (strlen(redirects[i]) > CV_CLIENT_URI_MAX) {
			snprintf(why, whylen, "a redirect URI is too long");
			return CV_E_LIMIT;
		}
		snprintf(out->redirect[out->nredirect++], CV_CLIENT_URI_MAX + 1, "%s", redirects[i]);
	}
	/* normalised: single spaces */
	cv_buf_t norm;
	cv_buf_init(&norm, CV_CLIENT_SCOPE_MAX + 1);
	for (const char *p = scope ? scope : ""; *p;) {
		p += strspn(p, " \t");
		size_t n = strcspn(p, " \t");
		if (n && cv_buf_printf(&norm, "%s%.*s", norm.len ? " " : "", (int)n, p)) {
			cv_buf_release(&norm);
			return CV_E_LIMIT;
		}
		p += n;
	}
	snprintf(out->scope, sizeof out->scope, "%s", norm.data ? norm.data : "");
	cv_buf_release(&norm);
	if (jwks && !(out->jwks = strdup(jwks)))
		return CV_E_NOMEM;
	cv_rc rc = client_check(out, why, whylen);
	if (rc) {
		cv_client_release(out);
		return rc;
	}
	randombytes_buf(raw, sizeof raw);
	sodium_bin2hex(out->id, sizeof out->id, raw, sizeof raw);
	out->created_us = cv_time_now_us();
	if (out->type == CV_CLIENT_CONFIDENTIAL) {
		cv_crypto_token("cvc_", secret, CV_CLIENT_SECRET_MAX);
		cv_crypto_sha256(secret, strlen(secret), out->secret_hash);
	}
	rc = put(s, out);
	if (rc) {
		snprintf(why, whylen, "the client could not be stored");
		sodium_memzero(secret, CV_CLIENT_SECRET_MAX);
		cv_client_release(out);
	}
	return rc;
}

cv_rc cv_client_get(cv_store_t *s, const char *id, cv_client_t *out)
{
	cv_pool_t pool;
	cv_store_version_t v;
	memset(out, 0, sizeof *out);
	if (!id || strlen(id) != CV_CLIENT_ID_LEN || strspn(id, "0123456789abcdef") != CV_CLIENT_ID_LEN)
		return CV_E_NOTFOUND;
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_store_read(s, CLIENT_TYPE, id, 0, &pool, &v);
	if (!rc && v.deleted)
		rc = CV_E_NOTFOUND;
	if (!rc)
		rc = decode((const char *)v.body, out);
	if (!rc)
		out->version = v.version;
	cv_pool_release(&pool);
	return rc;
}

cv_rc cv_client_set_disabled(cv_store_t *s, const char *id, bool disabled)
{
	cv_rc rc = CV_E_CONFLICT;
	for (int i = 0; rc == CV_E_CONFLICT && i < UPDATE_TRIES; i++) {
		cv_client_t c;
		rc = cv_client_get(s, id, &c);
		if (rc)
			return rc;
		c.disabled = disabled;
		rc = put(s, &c);
		cv_client_release(&c);
	}
	return rc;
}

typedef struct each_ctx {
	cv_rc (*fn)(void *arg, const cv_client_t *c);
	void *arg;
} each_ctx_t;

static cv_rc each_one(void *arg, const cv_store_hit_t *h)
{
	each_ctx_t *e = arg;
	cv_client_t c;
	cv_rc rc = decode((const char *)h->v.body, &c);
	if (rc)
		return rc;
	rc = e->fn(e->arg, &c);
	cv_client_release(&c);
	return rc;
}

cv_rc cv_client_each(cv_store_t *s, cv_rc (*fn)(void *arg, const cv_client_t *c), void *arg)
{
	each_ctx_t e = { .fn = fn, .arg = arg };
	return cv_store_each_current(s, CLIENT_TYPE, each_one, &e);
}

void cv_client_release(cv_client_t *c)
{
	if (!c)
		return;
	free(c->jwks);
	c->jwks = NULL;
}
