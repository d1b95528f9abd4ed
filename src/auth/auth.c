/*
 * auth.c - bearer-token authentication against the bootstrap credential.
 */
#include "auth/auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/account.h"
#include "auth/session.h"
#include "auth/token.h"
#include "core/pool.h"
#include "core/time.h"
#include "crypto/crypto.h"

#define COOKIE_NAME_LEN (sizeof CV_SESSION_COOKIE - 1)

#define TOKEN_CACHE 512 /* checked access tokens remembered (by the SHA-256 of the token) */

/* A checked access token, valid while the store has had no write since. */
typedef struct token_entry {
	uint8_t key[32];       /* SHA-256 of the token */
	int64_t seq;           /* the store's last write sequence when it was checked */
	cv_token_info_t info;  /* what it stands for */
	int used;
} token_entry_t;

/* Checking a token reads its record and its client (two opens, two parses).
 * A token checked before is taken as it was while no write at all has been
 * made since (the store's last sequence, one indexed max, counts every write
 * on every node): a revocation or a disabled client is a write, so it still
 * takes effect at once; an expiry is checked every time. */
typedef struct token_cache {
	pthread_mutex_t mu;
	token_entry_t e[TOKEN_CACHE];
	int64_t boot_seq;  /* the last sequence at which the bootstrap token was seen live (0: not yet) */
	int boot_retired;  /* it was retired (for good: a retired token never comes back) */
} token_cache_t;

struct cv_auth {
	unsigned char bootstrap_hash[32]; /* SHA-256 of the bootstrap token */
	int have_bootstrap;               /* a bootstrap token exists */
	cv_store_t *store;                /* sessions and accounts */
	cv_session_limits_t limits;       /* session timeouts */
	token_cache_t *tokens;            /* checked access tokens */
};

cv_rc cv_auth_bootstrap_create(cv_store_t *s, char *out, size_t outlen)
{
	unsigned char hash[32];
	if (outlen < CV_TOKEN_MAX)
		return CV_E_LIMIT;
	cv_crypto_token("cvb_", out, outlen);
	cv_crypto_sha256(out, strlen(out), hash);
	cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = CV_META_BOOTSTRAP,
			       .body = hash, .body_len = sizeof hash };
	cv_rc rc = cv_store_write_sync(s, &w);
	if (rc)
		cv_crypto_wipe(out, outlen);
	return rc;
}

cv_rc cv_auth_new(cv_store_t *s, cv_auth_t **out)
{
	cv_auth_t *a = calloc(1, sizeof *a);
	if (!a)
		return CV_E_NOMEM;
	cv_buf_t v;
	cv_buf_init(&v, 64);
	a->store = s;
	a->tokens = calloc(1, sizeof *a->tokens);
	if (!a->tokens) {
		free(a);
		return CV_E_NOMEM;
	}
	pthread_mutex_init(&a->tokens->mu, NULL);
	cv_auth_session_limits(a, 900, 43200);
	cv_rc rc = cv_store_meta_get(s, CV_META_BOOTSTRAP, &v);
	if (!rc && v.len == sizeof a->bootstrap_hash) {
		memcpy(a->bootstrap_hash, v.data, v.len);
		a->have_bootstrap = 1;
	} else if (rc == CV_E_NOTFOUND || !rc) {
		rc = CV_OK; /* no credential: every protected request will get 401 */
	}
	cv_buf_release(&v);
	if (rc) {
		cv_auth_free(a);
		return rc;
	}
	*out = a;
	return CV_OK;
}

void cv_auth_free(cv_auth_t *a)
{
	if (!a)
		return;
	if (a->tokens) {
		pthread_mutex_destroy(&a->tokens->mu);
		cv_crypto_wipe(a->tokens, sizeof *a->tokens);
		free(a->tokens);
	}
	cv_crypto_wipe(a, sizeof *a);
	free(a);
}

/* The token's entry if it was checked and nothing was written since (copied to out). */
static int cache_get(token_cache_t *c, const uint8_t key[32], int64_t seq, int64_t now_us, cv_token_info_t *out)
{
	token_entry_t *e = &c->e[(key[0] | (unsigned)key[1] << 8) % TOKEN_CACHE];
	pthread_mutex_lock(&c->mu);
	int hit = e->used && e->seq == seq && now_us < e->info.expires_us && cv_crypto_equal(e->key, key, 32);
	if (hit)
		*out = e->info;
	pthread_mutex_unlock(&c->mu);
	return hit;
}

static void cache_put(token_cache_t *c, const uint8_t key[32], int64_t seq, const cv_token_info_t *info)
{
	token_entry_t *e = &c->e[(key[0] | (unsigned)key[1] << 8) % TOKEN_CACHE];
	pthread_mutex_lock(&c->mu);
	memcpy(e->key, key, 32);
	e->seq = seq;
	e->info = *info;
	e->used = 1;
	pthread_mutex_unlock(&c->mu);
}

/* cv_token_check, through the cache. */
static cv_rc token_check(const cv_auth_t *a, const char *tok, cv_token_info_t *t)
{
	uint8_t key[32];
	int64_t seq = 0, now = cv_time_now_us();
	cv_crypto_sha256(tok, strlen(tok), key);
	int have_seq = cv_store_last_seq(a->store, &seq) == CV_OK; /* read before the check: a write
								      * meanwhile makes the entry stale */
	if (have_seq && cache_get(a->tokens, key, seq, now, t))
		return CV_OK;
	cv_rc rc = cv_token_check(a->store, tok, now, t);
	if (!rc && have_seq)
		cache_put(a->tokens, key, seq, t);
	return rc;
}

/* A person's token: the USER principal as their app may act for them. */
static cv_rc user_principal(const cv_token_info_t *t, cv_pool_t *pool, cv_principal_t *out)
{
	out->id = cv_pool_strdup(pool, t->user);
	out->role = cv_pool_strdup(pool, t->role);
	out->link = cv_pool_strdup(pool, t->link);
	out->patient = t->patient[0] ? cv_pool_strdup(pool, t->patient) : NULL;
	if (!out->id || !out->role || !out->link || (t->patient[0] && !out->patient))
		return CV_E_NOMEM;
	out->kind = CV_PRINCIPAL_USER;
	return CV_OK;
}

/* An OAuth access token: a backend service (CLIENT) or a person through an
 * app (USER), with the token's scopes and client. */
static cv_rc access_token(const cv_auth_t *a, const char *tok, cv_pool_t *pool, cv_principal_t *out)
{
	cv_token_info_t t;
	if (!pool)
		return CV_E_UNAUTH;
	cv_rc rc = token_check(a, tok, &t);
	if (rc)
		return rc == CV_E_UNAUTH ? CV_E_UNAUTH : rc;
	out->scope = cv_pool_strdup(pool, t.scope);
	out->client = cv_pool_strdup(pool, t.client);
	if (!out->scope || !out->client)
		return CV_E_NOMEM;
	if (t.user[0])
		return user_principal(&t, pool, out);
	out->id = out->client;
	out->kind = CV_PRINCIPAL_CLIENT;
	return CV_OK;
}

/* The bootstrap token still stands: no administrator account has retired it.
 * Retiring is committed with the account (a write, so the store's last
 * sequence moves): while the sequence has not moved since it was last seen
 * live, it still is; otherwise the meta value is read again. */
static cv_rc bootstrap_live(const cv_auth_t *a)
{
	token_cache_t *c = a->tokens;
	int64_t seq = 0;
	cv_rc rc = cv_store_last_seq(a->store, &seq);
	if (rc)
		return rc;
	pthread_mutex_lock(&c->mu);
	int known = c->boot_retired ? -1 : (c->boot_seq == seq ? 1 : 0);
	pthread_mutex_unlock(&c->mu);
	if (known)
		return known > 0 ? CV_OK : CV_E_UNAUTH;
	cv_buf_t v;
	cv_buf_init(&v, 64);
	rc = cv_store_meta_get(a->store, CV_META_BOOTSTRAP, &v);
	int live = !rc && v.len == sizeof a->bootstrap_hash && cv_crypto_equal(v.data, a->bootstrap_hash, v.len);
	cv_buf_release(&v);
	if (rc && rc != CV_E_NOTFOUND)
		return rc;
	pthread_mutex_lock(&c->mu);
	if (live)
		c->boot_seq = seq;
	else
		c->boot_retired = 1;
	pthread_mutex_unlock(&c->mu);
	return live ? CV_OK : CV_E_UNAUTH;
}

cv_rc cv_auth_bearer(const cv_auth_t *a, const char *authorization, cv_pool_t *pool, cv_principal_t *out)
{
	out->kind = CV_PRINCIPAL_NONE;
	out->id = NULL;
	if (!authorization)
		return CV_OK;
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return CV_E_UNAUTH;
	const char *tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	size_t len = strlen(tok);
	if (len == 0 || len > CV_TOKEN_MAX)
		return CV_E_UNAUTH;
	if (strncmp(tok, "cva_", 4) == 0)
		return access_token(a, tok, pool, out);
	if (!a->have_bootstrap)
		return CV_E_UNAUTH;
	unsigned char hash[32];
	cv_crypto_sha256(tok, len, hash);
	int same = cv_crypto_equal(hash, a->bootstrap_hash, sizeof hash);
	cv_crypto_wipe(hash, sizeof hash);
	if (!same)
		return CV_E_UNAUTH;
	cv_rc rc = bootstrap_live(a);
	if (rc)
		return rc;
	out->kind = CV_PRINCIPAL_ADMIN;
	out->id = "bootstrap-admin";
	return CV_OK;
}

void cv_auth_session_limits(cv_auth_t *a, unsigned idle_s, unsigned absolute_s)
{
	a->limits.idle_us = (int64_t)idle_s * 1000000;
	a->limits.absolute_us = (int64_t)absolute_s * 1000000;
}

const char *cv_auth_cookie_token(const char *cookie, char *out, size_t cap)
{
	const char *p = cookie;
	while (p && *p) {
		while (*p == ' ' || *p == ';')
			p++;
		size_t n = strcspn(p, ";");
		if (n > COOKIE_NAME_LEN && strncmp(p, CV_SESSION_COOKIE "=", COOKIE_NAME_LEN + 1) == 0) {
			size_t vlen = n - COOKIE_NAME_LEN - 1;
			if (vlen >= cap)
				return NULL;
			memcpy(out, p + COOKIE_NAME_LEN + 1, vlen);
			out[vlen] = '\0';
			return out;
		}
		p += n;
	}
	return NULL;
}

cv_rc cv_auth_cookie(const cv_auth_t *a, const char *cookie, cv_pool_t *pool, cv_principal_t *out)
{
	char token[CV_SESSION_TOKEN_MAX];
	cv_session_info_t info;
	out->kind = CV_PRINCIPAL_NONE;
	out->id = NULL;
	if (!cookie || !cv_auth_cookie_token(cookie, token, sizeof token))
		return CV_OK;
	cv_rc rc = cv_session_check(a->store, token, &a->limits, cv_time_now_us(), &info);
	cv_crypto_wipe(token, sizeof token);
	if (rc)
		return rc == CV_E_UNAUTH ? CV_E_UNAUTH : rc;
	out->id = cv_pool_strdup(pool, info.user);
	out->role = cv_pool_strdup(pool, info.role);
	out->link = cv_pool_strdup(pool, info.link);
	out->session = cv_pool_strdup(pool, info.sid);
	out->csrf = cv_pool_strdup(pool, info.csrf);
	cv_crypto_wipe(&info, sizeof info);
	if (!out->id || !out->role || !out->link || !out->session || !out->csrf)
		return CV_E_NOMEM;
	out->kind = CV_PRINCIPAL_USER;
	return CV_OK;
}

cv_rc cv_auth_csrf(const cv_principal_t *p, const char *header)
{
	if (p->kind != CV_PRINCIPAL_USER || !p->csrf)
		return CV_OK; /* bearer credentials are not sent by browsers on their own */
	size_t n = strlen(p->csrf);
	if (!header || strlen(header) != n || n == 0)
		return CV_E_DENIED;
	return cv_crypto_equal(p->csrf, header, n) ? CV_OK : CV_E_DENIED;
}
