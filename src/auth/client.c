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

#include "auth/fetch.h"
#include "auth/jwt.h"
#include "auth/scope.h"
#include "core/pool.h"
#include "model/json.h"
#include "core/time.h"
#include "crypto/crypto.h"

#define CLIENT_TYPE CV_CLIENT_TYPE
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
	if (c->type == CV_CLIENT_BACKEND && !c->jwks == !c->jwks_url[0]) {
		snprintf(why, whylen, "a backend client needs its public keys, either as a JWKS (jwks, --jwks-file) or "
				      "as the https URL of one (jwks_url, --jwks-url), not both");
		return CV_E_INVALID;
	}
	if (c->type != CV_CLIENT_BACKEND && (c->jwks || c->jwks_url[0])) {
		snprintf(why, whylen, "only a backend client has a JWKS (jwks, jwks_url)");
		return CV_E_INVALID;
	}
	if (c->jwks_url[0] && cv_fetch_url_check(c->jwks_url, why, whylen))
		return CV_E_INVALID;
	if (!c->scope[0]) {
		snprintf(why, whylen, "give the scopes the client may have (scope, --scope)");
		return CV_E_INVALID;
	}
	if (cv_scope_check_registration(c->scope, c->type == CV_CLIENT_BACKEND, why, whylen))
		return CV_E_INVALID;
	if (!c->jwks)
		return CV_OK; /* none yet: fetched from jwks_url once the rest checked out */
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
	if (c->jwks_url[0]) {
		json_object_object_add(o, "jwks_url", json_object_new_string(c->jwks_url));
		json_object_object_add(o, "jwks_fetched_us", json_object_new_int64(c->jwks_fetched_us));
		json_object_object_add(o, "jwks_refresh_us", json_object_new_int64(c->jwks_refresh_us));
	}
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
	if (!rc && cv_json_member_string(o, "jwks_url", &(int){ 0 }))
		rc = copy(c->jwks_url, sizeof c->jwks_url, cv_json_member_string(o, "jwks_url", &(int){ 0 }));
	c->jwks_fetched_us = json_object_object_get_ex(o, "jwks_fetched_us", &v) ? json_object_get_int64(v) : 0;
	c->jwks_refresh_us = json_object_object_get_ex(o, "jwks_refresh_us", &v) ? json_object_get_int64(v) : 0;
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

/* Fetches the JWKS at url into a heap string, checked with cv_jwt_jwks_check. */
static cv_rc fetch_checked(const char *url, const char *ca_file, char **out, char *why, size_t whylen)
{
	char sub[200] = "";
	cv_buf_t body;
	*out = NULL;
	cv_buf_init(&body, CV_CLIENT_JWKS_MAX);
	cv_rc rc = cv_fetch_jwks(url, ca_file, &body, sub, sizeof sub);
	if (rc) {
		snprintf(why, whylen, "jwks_url: %s", sub);
	} else if (!body.len || memchr(body.data, '\0', body.len) ||
		   cv_jwt_jwks_check(body.data, body.len, sub, sizeof sub)) {
		snprintf(why, whylen, "jwks_url: the document is not a usable JWKS: %s", sub[0] ? sub : "it is empty");
		rc = CV_E_INVALID;
	} else {
		*out = cv_buf_take(&body, NULL);
		rc = *out ? CV_OK : CV_E_NOMEM;
	}
	cv_buf_release(&body);
	return rc;
}

/* Copies the caller's values into out, with the scopes normalised (single spaces). */
static cv_rc fill(const cv_client_new_t *n, cv_client_t *out, char *why, size_t whylen)
{
	if (!n->name || strlen(n->name) > CV_CLIENT_NAME_MAX || n->nredirects > CV_CLIENT_REDIRECTS ||
	    (n->scope && strlen(n->scope) > CV_CLIENT_SCOPE_MAX) || (n->jwks && strlen(n->jwks) > CV_CLIENT_JWKS_MAX) ||
	    (n->jwks_url && strlen(n->jwks_url) > CV_CLIENT_URI_MAX)) {
		snprintf(why, whylen, "a name, scope list, JWKS, JWKS URL or redirect list is too long");
		return CV_E_LIMIT;
	}
	snprintf(out->name, sizeof out->name, "%s", n->name);
	for (size_t i = 0; i < n->nredirects; i++) {
		if (strlen(n->redirects[i]) > CV_CLIENT_URI_MAX) {
			snprintf(why, whylen, "a redirect URI is too long");
			return CV_E_LIMIT;
		}
		snprintf(out->redirect[out->nredirect++], CV_CLIENT_URI_MAX + 1, "%s", n->redirects[i]);
	}
	snprintf(out->jwks_url, sizeof out->jwks_url, "%s", n->jwks_url ? n->jwks_url : "");
	cv_buf_t norm;
	cv_buf_init(&norm, CV_CLIENT_SCOPE_MAX + 1);
	for (const char *p = n->scope ? n->scope : ""; *p;) {
		p += strspn(p, " \t");
		size_t len = strcspn(p, " \t");
		if (len && cv_buf_printf(&norm, "%s%.*s", norm.len ? " " : "", (int)len, p)) {
			cv_buf_release(&norm);
			return CV_E_LIMIT;
		}
		p += len;
	}
	snprintf(out->scope, sizeof out->scope, "%s", norm.data ? norm.data : "");
	cv_buf_release(&norm);
	if (n->jwks && !(out->jwks = strdup(n->jwks)))
		return CV_E_NOMEM;
	return CV_OK;
}

cv_rc cv_client_create(cv_store_t *s, const cv_client_new_t *n, cv_client_t *out, char secret[CV_CLIENT_SECRET_MAX],
		       char *why, size_t whylen)
{
	uint8_t raw[CV_CLIENT_ID_LEN / 2];
	memset(out, 0, sizeof *out);
	secret[0] = '\0';
	if (cv_client_type_parse(n->type, &out->type)) {
		snprintf(why, whylen, "the type is public, confidential or backend");
		return CV_E_INVALID;
	}
	cv_rc rc = fill(n, out, why, whylen);
	if (!rc)
		rc = client_check(out, why, whylen);
	if (!rc && out->jwks_url[0]) {
		rc = fetch_checked(out->jwks_url, n->ca_file, &out->jwks, why, whylen);
		if (rc && rc != CV_E_NOMEM)
			rc = CV_E_INVALID;
		out->jwks_fetched_us = cv_time_now_us();
	}
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

cv_rc cv_client_register(cv_store_t *s, const char *name, const char *type, const char *const *redirects,
			 size_t nredirects, const char *scope, const char *jwks, cv_client_t *out,
			 char secret[CV_CLIENT_SECRET_MAX], char *why, size_t whylen)
{
	cv_client_new_t n = { .name = name, .type = type, .redirects = redirects, .nredirects = nredirects,
			      .scope = scope, .jwks = jwks };
	return cv_client_create(s, &n, out, secret, why, whylen);
}

/* ---------------------------------------------------------------- key rotation */

/* Replaces *c by the stored record; *changed says whether its JWKS differs. */
static cv_rc reread(cv_store_t *s, cv_client_t *c, int *changed)
{
	cv_client_t fresh;
	cv_rc rc = cv_client_get(s, c->id, &fresh);
	if (rc)
		return rc;
	if (fresh.jwks && (!c->jwks || strcmp(fresh.jwks, c->jwks) != 0))
		*changed = 1;
	cv_client_release(c);
	*c = fresh;
	return CV_OK;
}

/* Records the refresh attempt at now (compare-and-set): CV_OK when this
 * caller may fetch, CV_E_BUSY when a refresh is too recent. */
static cv_rc reserve_refresh(cv_store_t *s, int64_t now, cv_client_t *c, int *changed)
{
	cv_rc rc = CV_E_CONFLICT;
	for (int i = 0; rc == CV_E_CONFLICT && i < UPDATE_TRIES; i++) {
		if (i && (rc = reread(s, c, changed)) != CV_OK)
			return rc;
		if (!c->jwks_url[0] || c->type != CV_CLIENT_BACKEND)
			return CV_E_UNSUPPORTED;
		if (c->jwks_refresh_us && now - c->jwks_refresh_us < (int64_t)CV_CLIENT_JWKS_REFRESH_S * 1000000)
			return CV_E_BUSY;
		int64_t before = c->jwks_refresh_us;
		c->jwks_refresh_us = now;
		rc = put(s, c);
		if (rc)
			c->jwks_refresh_us = before;
	}
	return rc;
}

/* Stores jwks (taking it) as c's, compare-and-set, as long as c keeps url. */
static cv_rc store_jwks(cv_store_t *s, cv_client_t *c, const char *url, char *jwks, int64_t now)
{
	cv_rc rc = CV_E_CONFLICT;
	int changed = 0;
	for (int i = 0; rc == CV_E_CONFLICT && i < UPDATE_TRIES; i++) {
		if (i && (rc = reread(s, c, &changed)) != CV_OK)
			break;
		if (strcmp(c->jwks_url, url) != 0) {
			rc = CV_E_CONFLICT; /* re-registered meanwhile: what was fetched is stale */
			break;
		}
		char *old = c->jwks;
		c->jwks = jwks;
		c->jwks_fetched_us = now;
		rc = put(s, c);
		c->jwks = old;
		if (!rc) {
			free(old);
			c->jwks = jwks;
			return CV_OK;
		}
	}
	free(jwks);
	return rc;
}

cv_rc cv_client_refresh_jwks(cv_store_t *s, const char *ca_file, int64_t now_us, cv_client_t *c, char *why,
			     size_t whylen)
{
	char url[CV_CLIENT_URI_MAX + 1], *jwks = NULL;
	int changed = 0;
	snprintf(why, whylen, "%s", "");
	cv_rc rc = reserve_refresh(s, now_us, c, &changed);
	if (rc)
		return rc == CV_E_BUSY && changed ? CV_OK : rc;
	snprintf(url, sizeof url, "%s", c->jwks_url);
	rc = fetch_checked(url, ca_file, &jwks, why, whylen);
	if (rc)
		return rc;
	if (c->jwks && strcmp(c->jwks, jwks) == 0) {
		free(jwks);
		snprintf(why, whylen, "the JWKS at its URL did not change");
		return CV_E_BUSY;
	}
	return store_jwks(s, c, url, jwks, now_us);
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
