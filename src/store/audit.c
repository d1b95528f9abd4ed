/*
 * audit.c - the store's side of the audit trail: sealing records, the hash
 * chain's encoding, and reading the trail (see store.h, "the audit trail").
 *
 * A row's hash is SHA-256 over "cv-audit-1", then every stored field in a
 * fixed order (integers big-endian, strings and byte strings prefixed by
 * their length), the previous row's hash included: changing, removing,
 * inserting or moving a row breaks the chain at that row, and checking it
 * needs no key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/internal.h"
#include "store/query.h"

#define AUDIT_KEYS_MAX 4096 /* most search keys of one record */

static void put_u64(cv_sha256_t *h, uint64_t v)
{
	uint8_t b[8];
	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
	cv_sha256_update(h, b, 8);
}

static void put_bytes(cv_sha256_t *h, const void *p, size_t len)
{
	put_u64(h, len);
	if (len)
		cv_sha256_update(h, p, len);
}

static void put_str(cv_sha256_t *h, const char *s)
{
	put_bytes(h, s ? s : "", s ? strlen(s) : 0);
}

void cv_store_audit_hash(const cv_store_audit_row_t *r, uint8_t out[CV_AUDIT_HASH_BYTES])
{
	cv_sha256_t h;
	cv_sha256_init(&h);
	cv_sha256_update(&h, "cv-audit-1", 10);
	put_u64(&h, (uint64_t)r->pos);
	cv_sha256_update(&h, r->prev, CV_AUDIT_HASH_BYTES);
	put_u64(&h, (uint64_t)r->at_us);
	put_u64(&h, (uint64_t)(unsigned char)r->action);
	put_u64(&h, (uint64_t)(int64_t)r->outcome);
	put_u64(&h, r->flags);
	put_str(&h, r->kind);
	put_str(&h, r->subtype);
	put_str(&h, r->agent);
	put_str(&h, r->id);
	put_u64(&h, (uint64_t)r->nres);
	put_u64(&h, (uint64_t)r->npat);
	put_bytes(&h, r->keys, r->keys_len);
	put_bytes(&h, r->body, r->body_len);
	cv_sha256_final(&h, out);
}

void cv_audit_chain_next(cv_audit_chain_t *c, cv_store_write_t *w, cv_store_audit_row_t *row)
{
	const cv_store_audit_t *a = w->audit;
	*row = (cv_store_audit_row_t){ .pos = c->pos + 1, .at_us = a->at_us, .action = a->action,
				       .outcome = a->outcome, .flags = a->flags, .kind = a->kind,
				       .subtype = a->subtype, .agent = a->agent, .id = a->id, .nres = a->nres,
				       .keys = (const uint8_t *)w->blinded.data, .keys_len = w->blinded.len, .npat = (int64_t)a->npat,
				       .body = (const uint8_t *)w->sealed.data, .body_len = w->sealed.len };
	memcpy(row->prev, c->hash, CV_AUDIT_HASH_BYTES);
	cv_store_audit_hash(row, row->hash);
	c->pos = row->pos;
	memcpy(c->hash, row->hash, CV_AUDIT_HASH_BYTES);
	w->audit_pos = row->pos;
}

/* Additional data of a sealed record: its id. */
static size_t record_ad(char *ad, size_t cap, const char *id)
{
	int n = snprintf(ad, cap, "audit|%s", id);
	return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* The blinded form of an audit search key. */
static void blind_audit_key(const cv_store_t *s, const char *key, uint8_t out[CV_AUDIT_KEY_BYTES])
{
	const void *parts[2] = { "audit", key };
	size_t lens[2] = { 5, strlen(key) };
	cv_crypto_hmac_parts(&s->index_hmac, parts, lens, 2, out, CV_AUDIT_KEY_BYTES);
}

static int short_text(const char *s, size_t max)
{
	return s && strlen(s) <= max;
}

cv_rc cv_store_audit_prepare(cv_store_t *s, cv_store_write_t *w)
{
	const cv_store_audit_t *a = w->audit;
	char ad[128];
	if (!a || !short_text(a->id, 64) || !short_text(a->kind, 64) || !short_text(a->subtype, 64) ||
	    !short_text(a->agent, 128) || !strchr("CRUDE", a->action) || !a->action || a->nkeys > AUDIT_KEYS_MAX || a->npat > a->nkeys ||
	    !w->body || !w->body_len)
		return CV_E_INVALID;
	cv_buf_init(&w->sealed, w->body_len + CV_SEAL_OVERHEAD_MAX + 16);
	cv_rc rc = cv_crypto_seal(s->audit_key->key, ad, record_ad(ad, sizeof ad, a->id), w->body, w->body_len, &w->sealed);
	cv_buf_init(&w->blinded, AUDIT_KEYS_MAX * CV_AUDIT_KEY_BYTES);
	for (size_t i = 0; !rc && i < a->nkeys; i++) {
		void *p;
		if (!a->keys[i])
			return CV_E_INVALID;
		if (!(rc = cv_buf_extend(&w->blinded, CV_AUDIT_KEY_BYTES, &p)))
			blind_audit_key(s, a->keys[i], p);
	}
	return rc;
}

/* ---- reading -------------------------------------------------------------- */

cv_rc cv_store_open_raw(const char *data_dir, const char *url, cv_store_t **out, char *err, size_t errlen)
{
	int pg = url && (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
	cv_store_t *s = calloc(1, sizeof *s);
	if (!s)
		return CV_E_NOMEM;
	cv_rc rc = pg ? cv_postgres_open(url, 1, &s->be, &s->ops, err, errlen)
		      : cv_sqlite_open(data_dir, 1, &s->be, &s->ops, err, errlen);
	if (rc) {
		free(s);
		return rc;
	}
	s->raw = true;
	s->pg = pg;
	s->closing = 1; /* no writes */
	pthread_mutex_init(&s->mu, NULL);
	pthread_mutex_init(&s->key_load_mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	*out = s;
	return CV_OK;
}

cv_rc cv_store_audit_scan(cv_store_t *s, int64_t after, unsigned limit, bool bodies, cv_pool_t *pool,
			  cv_store_audit_fn fn, void *arg)
{
	cv_store_audit_query_t q = { .after_pos = after, .ascending = true, .limit = limit, .outcome = -1 };
	cv_sql_t *sql = malloc(sizeof *sql);
	if (!sql)
		return CV_E_NOMEM;
	cv_sql_init(sql, s->pg);
	cv_rc rc = cv_query_audit_sql(&q, bodies, sql);
	if (!rc)
		rc = s->ops->audit_rows(s->be, sql, pool, fn, arg);
	cv_sql_release(sql);
	free(sql);
	return rc;
}

cv_rc cv_store_audit_head(cv_store_t *s, int64_t *pos, uint8_t hash[CV_AUDIT_HASH_BYTES])
{
	return s->ops->audit_head(s->be, pos, hash);
}

cv_rc cv_store_audit_keys_missing(cv_store_t *s, const cv_store_audit_pair_t *pairs, size_t n, int64_t *missing)
{
	return s->ops->audit_keys_missing(s->be, pairs, n, missing);
}

cv_rc cv_store_audit_keys_extra(cv_store_t *s, int64_t from, int64_t to, int64_t *extra)
{
	return s->ops->audit_keys_extra(s->be, from, to, extra);
}

cv_rc cv_store_audit_keys_count(cv_store_t *s, int64_t from, int64_t to, int64_t *count)
{
	return s->ops->audit_keys_count(s->be, from, to, count);
}

cv_rc cv_store_audit_checkpoints(cv_store_t *s, cv_rc (*fn)(void *arg, const cv_store_checkpoint_t *c), void *arg)
{
	return s->ops->audit_checkpoints(s->be, false, fn, arg);
}

static cv_rc keep_checkpoint(void *arg, const cv_store_checkpoint_t *c)
{
	*(cv_store_checkpoint_t *)arg = *c;
	return CV_OK;
}

cv_rc cv_store_audit_last_checkpoint(cv_store_t *s, cv_store_checkpoint_t *out)
{
	out->pos = 0;
	cv_rc rc = s->ops->audit_checkpoints(s->be, true, keep_checkpoint, out);
	return rc ? rc : out->pos ? CV_OK : CV_E_NOTFOUND;
}

typedef struct open_ctx {
	cv_store_t *s;
	cv_pool_t *pool;
	cv_store_audit_fn fn;
	void *arg;
} open_ctx_t;

/* Opens a row's body and hands it on. */
static cv_rc open_row(void *arg, const cv_store_audit_row_t *r)
{
	open_ctx_t *c = arg;
	char ad[128];
	cv_buf_t pt;
	cv_buf_init(&pt, r->body_len + 1);
	cv_keyent_t *key = NULL;
	cv_rc rc = cv_store_key_for_blob(c->s, r->body, r->body_len, &key);
	if (!rc)
		rc = cv_crypto_open(key->key, ad, record_ad(ad, sizeof ad, r->id), r->body, r->body_len, &pt);
	cv_keyring_unpin(c->s->keys, key);
	size_t opened_len = pt.len; /* a stored form holds NUL bytes: copied whole, NUL-terminated */
	char *copy = rc || !pt.len ? NULL : cv_pool_alloc(c->pool, pt.len + 1);
	if (copy) {
		memcpy(copy, pt.data, pt.len);
		copy[pt.len] = '\0';
	}
	if (!rc && !copy)
		rc = pt.len ? CV_E_NOMEM : CV_E_CRYPTO;
	if (rc == CV_E_CRYPTO)
		cv_log(CV_LOG_ERROR, "audit.open_failed", (cv_log_field_t[]){ CV_LI("pos", r->pos) }, 1);
	cv_crypto_wipe(pt.data, pt.len);
	cv_buf_release(&pt);
	if (rc)
		return rc;
	cv_store_audit_row_t opened = *r;
	opened.body = (const uint8_t *)copy;
	opened.body_len = opened_len;
	return c->fn(c->arg, &opened);
}

cv_rc cv_store_audit_search(cv_store_t *s, const cv_store_audit_query_t *q, cv_pool_t *pool, cv_store_audit_fn fn,
			    void *arg)
{
	if (s->raw || q->nkeys > CV_AUDIT_QUERY_KEYS)
		return CV_E_INVALID;
	cv_store_audit_query_t bq = *q;
	uint8_t blinded[CV_AUDIT_QUERY_KEYS][CV_AUDIT_KEY_BYTES];
	uint8_t agent_key[CV_AUDIT_KEY_BYTES];
	for (size_t i = 0; i < q->nkeys; i++) {
		blind_audit_key(s, q->keys[i], blinded[i]);
		bq.keys[i] = (const char *)blinded[i];
	}
	if (q->agent_key) {
		blind_audit_key(s, q->agent_key, agent_key);
		bq.agent_key = (const char *)agent_key;
	}
	cv_sql_t *sql = malloc(sizeof *sql);
	if (!sql)
		return CV_E_NOMEM;
	cv_sql_init(sql, s->pg);
	open_ctx_t c = { .s = s, .pool = pool, .fn = fn, .arg = arg };
	cv_rc rc = cv_query_audit_sql(&bq, true, sql);
	if (!rc)
		rc = s->ops->audit_rows(s->be, sql, pool, open_row, &c);
	cv_sql_release(sql);
	free(sql);
	return rc;
}
