/*
 * backup.c - encrypted, authenticated backups of a store, and restores
 * (store.h, "backups"; decision 0010).
 *
 * File layout:
 *   "carevault backup 1\n"
 *   u32 (big-endian) n, then n bytes of header: created_us (8 bytes), the
 *       master key version that wrapped the backup key (8), the wrapped
 *       backup key and the secretstream header (each a u32 length and bytes)
 *   chunks: u32 length, then that many bytes of secretstream ciphertext; the
 *       first is authenticated with everything before it as additional data,
 *       the last carries TAG_FINAL and the END record; nothing may follow.
 * A chunk's plaintext is whole records (cv_store_rec_write): a type byte,
 * then fields (integers as 8 bytes big-endian, strings and byte strings as a
 * u32 length and the bytes).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "core/io.h"
#include "core/log.h"
#include "core/time.h"
#include "store/internal.h"

#define MAGIC "carevault backup 1\n"
#define HEADER_MAX 4096
#define CHUNK 1048576                 /* records are gathered up to this much per chunk */
#define CHUNK_MAX (64u << 20)         /* the largest chunk a reader accepts (one large record) */
#define REC_END 100                   /* the trailer record: the counts */
#define ABYTES crypto_secretstream_xchacha20poly1305_ABYTES

/* ---- records --------------------------------------------------------------- */

static cv_rc put_u64(cv_buf_t *b, uint64_t v)
{
	uint8_t x[8];
	for (int i = 7; i >= 0; i--, v >>= 8)
		x[i] = (uint8_t)v;
	return cv_buf_append(b, x, 8);
}

static cv_rc put_bytes(cv_buf_t *b, const void *p, size_t n)
{
	uint8_t x[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
	cv_rc rc = n > UINT32_MAX ? CV_E_LIMIT : cv_buf_append(b, x, 4);
	return rc || !n ? rc : cv_buf_append(b, p, n);
}

static cv_rc put_str(cv_buf_t *b, const char *s)
{
	return put_bytes(b, s ? s : "", s ? strlen(s) : 0);
}

static cv_rc write_audit(const cv_store_audit_row_t *a, cv_buf_t *b)
{
	cv_rc rc = put_u64(b, (uint64_t)a->pos);
	if (!rc)
		rc = put_u64(b, (uint64_t)a->at_us);
	if (!rc)
		rc = put_u64(b, (uint64_t)(unsigned char)a->action);
	if (!rc)
		rc = put_u64(b, (uint64_t)(int64_t)a->outcome);
	if (!rc)
		rc = put_u64(b, a->flags);
	const char *texts[4] = { a->kind, a->subtype, a->agent, a->id };
	for (int i = 0; !rc && i < 4; i++)
		rc = put_str(b, texts[i]);
	if (!rc)
		rc = put_u64(b, (uint64_t)a->nres);
	if (!rc)
		rc = put_u64(b, (uint64_t)a->npat);
	if (!rc)
		rc = put_bytes(b, a->keys, a->keys_len);
	if (!rc)
		rc = put_bytes(b, a->body, a->body_len);
	if (!rc)
		rc = put_bytes(b, a->prev, CV_AUDIT_HASH_BYTES);
	return rc ? rc : put_bytes(b, a->hash, CV_AUDIT_HASH_BYTES);
}

cv_rc cv_store_rec_write(const cv_store_rec_t *r, cv_buf_t *b)
{
	uint8_t t = (uint8_t)r->type;
	cv_rc rc = cv_buf_append(b, &t, 1);
	const cv_store_version_t *v = &r->version;
	const cv_store_key_row_t *k = &r->key;
	const cv_store_checkpoint_t *c = &r->checkpoint;
	switch (r->type) {
	case CV_REC_META:
		if (!rc)
			rc = put_str(b, r->name);
		return rc ? rc : put_bytes(b, r->value, r->value_len);
	case CV_REC_KEY:
		if (!rc)
			rc = put_bytes(b, k->kid, CV_KID_BYTES);
		if (!rc)
			rc = put_bytes(b, k->owner, CV_OWNER_BYTES);
		if (!rc)
			rc = put_u64(b, (uint64_t)k->version);
		if (!rc)
			rc = put_u64(b, (uint64_t)(int64_t)k->state);
		if (!rc)
			rc = put_u64(b, (uint64_t)k->created_us);
		return rc ? rc : put_bytes(b, k->wrapped, k->wrapped_len);
	case CV_REC_VERSION:
		if (!rc)
			rc = put_u64(b, (uint64_t)v->seq);
		if (!rc)
			rc = put_str(b, v->type);
		if (!rc)
			rc = put_str(b, v->rid);
		if (!rc)
			rc = put_u64(b, (uint64_t)v->version);
		if (!rc)
			rc = put_u64(b, (uint64_t)v->updated_us);
		if (!rc)
			rc = put_u64(b, v->deleted);
		return rc ? rc : put_bytes(b, v->body, v->body_len);
	case CV_REC_AUDIT:
		return rc ? rc : write_audit(&r->audit, b);
	case CV_REC_AUDIT_HEAD:
		if (!rc)
			rc = put_u64(b, (uint64_t)r->audit.pos);
		return rc ? rc : put_bytes(b, r->audit.hash, CV_AUDIT_HASH_BYTES);
	case CV_REC_CHECKPOINT:
		if (!rc)
			rc = put_u64(b, (uint64_t)c->pos);
		if (!rc)
			rc = put_u64(b, (uint64_t)c->at_us);
		if (!rc)
			rc = put_bytes(b, c->hash, CV_AUDIT_HASH_BYTES);
		if (!rc)
			rc = put_bytes(b, c->key, 32);
		return rc ? rc : put_bytes(b, c->sig, 64);
	}
	return CV_E_INVALID;
}

/* A cursor over a record's bytes. */
typedef struct rd {
	const uint8_t *p;
	size_t len, at;
	cv_pool_t *pool;
	int bad;
} rd_t;

static uint64_t get_u64(rd_t *r)
{
	uint64_t v = 0;
	if (r->bad || r->len - r->at < 8) {
		r->bad = 1;
		return 0;
	}
	for (int i = 0; i < 8; i++)
		v = v << 8 | r->p[r->at + (size_t)i];
	r->at += 8;
	return v;
}

static const uint8_t *get_bytes(rd_t *r, size_t *n)
{
	*n = 0;
	if (r->bad || r->len - r->at < 4) {
		r->bad = 1;
		return NULL;
	}
	const uint8_t *q = r->p + r->at;
	size_t len = (size_t)q[0] << 24 | (size_t)q[1] << 16 | (size_t)q[2] << 8 | q[3];
	r->at += 4;
	if (r->len - r->at < len) {
		r->bad = 1;
		return NULL;
	}
	*n = len;
	r->at += len;
	return r->p + r->at - len;
}

/* Exactly n bytes into out. */
static void get_fixed(rd_t *r, uint8_t *out, size_t n)
{
	size_t got;
	const uint8_t *q = get_bytes(r, &got);
	if (!r->bad && got != n)
		r->bad = 1;
	if (!r->bad)
		memcpy(out, q, n);
}

/* A NUL-terminated copy (no NUL inside). */
static const char *get_str(rd_t *r)
{
	size_t n;
	const uint8_t *q = get_bytes(r, &n);
	if (r->bad || memchr(q, 0, n)) {
		r->bad = 1;
		return NULL;
	}
	char *s = cv_pool_strndup(r->pool, (const char *)q, n);
	if (!s)
		r->bad = 1;
	return s;
}

/* An integer that must fit the field it goes to (anything else is refused,
 * so that what is accepted writes back to the same bytes). */
static uint64_t get_small(rd_t *r, int64_t lo, int64_t hi)
{
	int64_t v = (int64_t)get_u64(r);
	if (v < lo || v > hi)
		r->bad = 1;
	return (uint64_t)v;
}

static void parse_audit(rd_t *r, cv_store_audit_row_t *a)
{
	a->pos = (int64_t)get_u64(r);
	a->at_us = (int64_t)get_u64(r);
	a->action = (char)get_small(r, 1, 255);
	a->outcome = (int)(int64_t)get_small(r, INT32_MIN, INT32_MAX);
	a->flags = (unsigned)get_small(r, 0, UINT32_MAX);
	a->kind = get_str(r);
	a->subtype = get_str(r);
	a->agent = get_str(r);
	a->id = get_str(r);
	a->nres = (int64_t)get_u64(r);
	a->npat = (int64_t)get_u64(r);
	a->keys = get_bytes(r, &a->keys_len);
	a->body = get_bytes(r, &a->body_len);
	get_fixed(r, a->prev, CV_AUDIT_HASH_BYTES);
	get_fixed(r, a->hash, CV_AUDIT_HASH_BYTES);
	if (!r->bad && (a->keys_len % CV_AUDIT_KEY_BYTES || a->npat < 0 || (size_t)a->npat > a->keys_len / CV_AUDIT_KEY_BYTES))
		r->bad = 1;
}

cv_rc cv_store_rec_parse(const uint8_t *p, size_t len, cv_pool_t *pool, cv_store_rec_t *out, size_t *used)
{
	rd_t r = { .p = p, .len = len, .at = 1, .pool = pool };
	memset(out, 0, sizeof *out);
	if (len < 1)
		return CV_E_INVALID;
	out->type = (cv_rec_type)p[0];
	cv_store_version_t *v = &out->version;
	cv_store_key_row_t *k = &out->key;
	cv_store_checkpoint_t *c = &out->checkpoint;
	switch (p[0]) {
	case CV_REC_META:
		out->name = get_str(&r);
		out->value = get_bytes(&r, &out->value_len);
		break;
	case CV_REC_KEY:
		get_fixed(&r, k->kid, CV_KID_BYTES);
		get_fixed(&r, k->owner, CV_OWNER_BYTES);
		k->version = (int64_t)get_u64(&r);
		k->state = (int)(int64_t)get_small(&r, INT32_MIN, INT32_MAX);
		k->created_us = (int64_t)get_u64(&r);
		k->wrapped = get_bytes(&r, &k->wrapped_len);
		break;
	case CV_REC_VERSION:
		v->seq = (int64_t)get_u64(&r);
		v->type = get_str(&r);
		v->rid = get_str(&r);
		v->version = (int64_t)get_u64(&r);
		v->updated_us = (int64_t)get_u64(&r);
		v->deleted = get_small(&r, 0, 1) != 0;
		v->body = get_bytes(&r, &v->body_len);
		if (!r.bad && (v->seq <= 0 || v->version <= 0 || strlen(v->type) > 64 || strlen(v->rid) > 2 * CV_BLIND_BYTES))
			r.bad = 1;
		break;
	case CV_REC_AUDIT:
		parse_audit(&r, &out->audit);
		break;
	case CV_REC_AUDIT_HEAD:
		out->audit.pos = (int64_t)get_u64(&r);
		get_fixed(&r, out->audit.hash, CV_AUDIT_HASH_BYTES);
		break;
	case CV_REC_CHECKPOINT:
		c->pos = (int64_t)get_u64(&r);
		c->at_us = (int64_t)get_u64(&r);
		get_fixed(&r, c->hash, CV_AUDIT_HASH_BYTES);
		get_fixed(&r, c->key, 32);
		get_fixed(&r, c->sig, 64);
		break;
	case REC_END:
		for (int i = 0; i < 4; i++)
			get_u64(&r);
		break;
	default:
		return CV_E_INVALID;
	}
	if (r.bad)
		return CV_E_INVALID;
	*used = r.at;
	return CV_OK;
}

/* ---- writing a backup ----------------------------------------------------- */

typedef struct writer {
	int fd;
	crypto_secretstream_xchacha20poly1305_state st;
	cv_buf_t plain, cipher;
	cv_buf_t ad;               /* the first chunk's additional data: the file's beginning */
	bool first;
	cv_store_backup_info_t *info;
	uint64_t total;
	cv_store_progress_fn progress;
	void *arg;
	cv_rc io;                  /* a write failure */
} writer_t;

/* Encrypts and writes the gathered records as one chunk. */
static cv_rc flush_chunk(writer_t *w, bool final)
{
	uint8_t *ct = NULL, len[4];
	size_t n = w->plain.len;
	cv_buf_reset(&w->cipher);
	cv_rc rc = cv_buf_extend(&w->cipher, n + ABYTES, (void **)&ct);
	if (rc)
		return rc;
	crypto_secretstream_xchacha20poly1305_push(&w->st, ct, NULL, (const uint8_t *)w->plain.data, n,
						   w->first ? (const uint8_t *)w->ad.data : NULL, w->first ? w->ad.len : 0,
						   final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
	w->first = false;
	len[0] = (uint8_t)((n + ABYTES) >> 24);
	len[1] = (uint8_t)((n + ABYTES) >> 16);
	len[2] = (uint8_t)((n + ABYTES) >> 8);
	len[3] = (uint8_t)(n + ABYTES);
	rc = cv_write_all(w->fd, len, 4);
	if (!rc)
		rc = cv_write_all(w->fd, ct, n + ABYTES);
	w->info->bytes += 4 + n + ABYTES;
	sodium_memzero(w->plain.data, w->plain.len);
	cv_buf_reset(&w->plain);
	return rc;
}

static void count(cv_store_backup_info_t *info, cv_rec_type t)
{
	info->records++;
	info->versions += t == CV_REC_VERSION;
	info->keys += t == CV_REC_KEY;
	info->audit += t == CV_REC_AUDIT;
}

static cv_rc take_rec(void *arg, const cv_store_rec_t *r)
{
	writer_t *w = arg;
	size_t before = w->plain.len;
	cv_rc rc = cv_store_rec_write(r, &w->plain);
	if (!rc && w->plain.len - before > CHUNK_MAX) /* what a reader takes as one chunk at most */
		rc = CV_E_LIMIT;
	if (rc)
		return rc;
	count(w->info, r->type);
	if (w->progress && (w->info->records % 1000) == 0)
		w->progress(w->arg, w->info->records, w->total);
	if (w->plain.len < CHUNK)
		return CV_OK;
	if (before == 0) /* one record larger than a chunk: a chunk of its own */
		return flush_chunk(w, false);
	/* move the record that overflowed into the next chunk */
	size_t n = w->plain.len - before;
	uint8_t *tail = malloc(n);
	if (!tail)
		return CV_E_NOMEM;
	memcpy(tail, w->plain.data + before, n);
	cv_buf_truncate(&w->plain, before);
	rc = flush_chunk(w, false);
	if (!rc)
		rc = cv_buf_append(&w->plain, tail, n);
	sodium_memzero(tail, n);
	free(tail);
	return rc;
}

/* The file's beginning: magic, header length, header. */
static cv_rc header(cv_store_t *s, const uint8_t *stream_header, cv_store_backup_info_t *info, cv_key_t *bk,
		    cv_buf_t *out)
{
	char purpose[64];
	cv_buf_t wrapped, h;
	cv_buf_init(&wrapped, 4096);
	cv_buf_init(&h, HEADER_MAX);
	snprintf(purpose, sizeof purpose, "backup|%lld", (long long)info->created_us);
	info->master_version = cv_master_current(s->master);
	cv_rc rc = cv_crypto_key_wrap(s->master, purpose, bk, &wrapped);
	if (!rc)
		rc = put_u64(&h, (uint64_t)info->created_us);
	if (!rc)
		rc = put_u64(&h, info->master_version);
	if (!rc)
		rc = put_bytes(&h, wrapped.data, wrapped.len);
	if (!rc)
		rc = put_bytes(&h, stream_header, crypto_secretstream_xchacha20poly1305_HEADERBYTES);
	uint8_t len[4] = { (uint8_t)(h.len >> 24), (uint8_t)(h.len >> 16), (uint8_t)(h.len >> 8), (uint8_t)h.len };
	if (!rc)
		rc = cv_buf_append(out, MAGIC, strlen(MAGIC));
	if (!rc)
		rc = cv_buf_append(out, len, 4);
	if (!rc)
		rc = cv_buf_append(out, h.data, h.len);
	cv_buf_release(&h);
	cv_buf_release(&wrapped);
	return rc;
}

cv_rc cv_store_backup(cv_store_t *s, int fd, cv_store_progress_fn progress, void *arg, cv_store_backup_info_t *info,
		      char *err, size_t errlen)
{
	uint8_t kid[CV_KID_BYTES], raw[CV_KEY_BYTES], sh[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
	cv_key_t *bk = NULL;
	uint64_t versions = 0;
	int64_t pos = 0;
	uint8_t hash[CV_AUDIT_HASH_BYTES];
	writer_t w = { .fd = fd, .first = true, .info = info, .progress = progress, .arg = arg };
	memset(info, 0, sizeof *info);
	info->created_us = cv_time_now_us();
	cv_buf_init(&w.plain, CHUNK_MAX + 1024);
	cv_buf_init(&w.cipher, CHUNK_MAX + 1024);
	cv_buf_init(&w.ad, HEADER_MAX + 64);
	cv_crypto_kid_new(kid);
	cv_rc rc = cv_crypto_key_generate(kid, &bk);
	if (!rc) {
		cv_crypto_key_bytes(bk, raw);
		crypto_secretstream_xchacha20poly1305_init_push(&w.st, sh, raw);
		sodium_memzero(raw, sizeof raw);
		rc = header(s, sh, info, bk, &w.ad);
	}
	if (!rc && !s->ops->count(s->be, &versions) && !s->ops->audit_head(s->be, &pos, hash))
		w.total = versions + (uint64_t)pos;
	if (!rc)
		rc = cv_write_all(fd, w.ad.data, w.ad.len);
	info->bytes = w.ad.len;
	if (!rc)
		rc = s->ops->dump(s->be, take_rec, &w);
	uint8_t end = REC_END;
	if (!rc)
		rc = cv_buf_append(&w.plain, &end, 1);
	uint64_t counts[4] = { info->records, info->versions, info->keys, info->audit };
	for (int i = 0; !rc && i < 4; i++)
		rc = put_u64(&w.plain, counts[i]);
	if (!rc)
		rc = flush_chunk(&w, true);
	if (!rc && fsync(fd) != 0)
		rc = CV_E_IO;
	if (rc)
		snprintf(err, errlen, "the backup failed: %s", rc == CV_E_IO ? strerror(errno) : cv_rc_str(rc));
	cv_key_free(bk);
	sodium_memzero(&w.st, sizeof w.st);
	cv_buf_release(&w.plain);
	cv_buf_release(&w.cipher);
	cv_buf_release(&w.ad);
	return rc;
}

/* ---- reading a backup ------------------------------------------------------ */

typedef struct reader {
	int fd;
	crypto_secretstream_xchacha20poly1305_state st;
	cv_buf_t ad, cipher, plain;
	bool first, ended;
	uint64_t chunk;                /* chunks read */
	cv_store_backup_info_t *info;
	uint64_t want[4];              /* the counts the END record gives */
} reader_t;

static cv_rc read_exact(int fd, void *p, size_t n, bool *eof)
{
	uint8_t *b = p;
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, b + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return CV_E_IO;
		if (r == 0) {
			if (eof)
				*eof = got == 0;
			return CV_E_CRYPTO;
		}
		got += (size_t)r;
	}
	return CV_OK;
}

/* Reads the file's beginning and opens the stream. */
static cv_rc open_stream(reader_t *r, const cv_key_t *master, char *err, size_t errlen)
{
	char magic[sizeof MAGIC];
	uint8_t len[4], *p = NULL;
	cv_key_t *bk = NULL;
	cv_rc rc = read_exact(r->fd, magic, strlen(MAGIC), NULL);
	if (rc == CV_E_CRYPTO || (!rc && memcmp(magic, MAGIC, strlen(MAGIC)) != 0))
		rc = CV_E_INVALID; /* shorter than the magic, or another file */
	if (!rc)
		rc = read_exact(r->fd, len, 4, NULL);
	size_t n = (size_t)len[0] << 24 | (size_t)len[1] << 16 | (size_t)len[2] << 8 | len[3];
	if (!rc && n > HEADER_MAX)
		rc = CV_E_CRYPTO;
	if (!rc && !(rc = cv_buf_append(&r->ad, MAGIC, strlen(MAGIC))) && !(rc = cv_buf_append(&r->ad, len, 4)))
		rc = cv_buf_extend(&r->ad, n, (void **)&p);
	if (!rc)
		rc = read_exact(r->fd, p, n, NULL);
	rd_t h = { .p = p, .len = n };
	size_t wlen = 0, shlen = 0;
	int64_t created = rc ? 0 : (int64_t)get_u64(&h);
	uint64_t mver = rc ? 0 : get_u64(&h);
	const uint8_t *wrapped = rc ? NULL : get_bytes(&h, &wlen), *sh = rc ? NULL : get_bytes(&h, &shlen);
	if (!rc && (h.bad || h.at != n || shlen != crypto_secretstream_xchacha20poly1305_HEADERBYTES || mver > UINT32_MAX))
		rc = CV_E_CRYPTO;
	if (rc == CV_E_INVALID)
		snprintf(err, errlen, "this is not a carevault backup");
	else if (rc == CV_E_CRYPTO)
		snprintf(err, errlen, "the backup's header is damaged or cut short");
	char purpose[64];
	snprintf(purpose, sizeof purpose, "backup|%lld", (long long)created);
	if (!rc && cv_crypto_key_unwrap(master, purpose, wrapped, wlen, &bk)) {
		snprintf(err, errlen, "the master key does not open this backup (it was made under master key version %llu: "
			 "give the key file that holds it, e.g. master-retired.key), or its header was changed",
			 (unsigned long long)mver);
		rc = CV_E_DENIED;
	}
	if (!rc) {
		uint8_t raw[CV_KEY_BYTES];
		cv_crypto_key_bytes(bk, raw);
		if (crypto_secretstream_xchacha20poly1305_init_pull(&r->st, sh, raw) != 0)
			rc = CV_E_CRYPTO;
		sodium_memzero(raw, sizeof raw);
		r->info->created_us = created;
		r->info->master_version = (uint32_t)mver;
	}
	cv_key_free(bk);
	return rc;
}

/* The next chunk's plaintext into r->plain. CV_E_CRYPTO, with a message, when
 * it does not authenticate, is missing, or anything follows the last. */
static cv_rc next_chunk(reader_t *r, char *err, size_t errlen)
{
	uint8_t len[4], *ct = NULL, *pt = NULL, tag = 0;
	bool eof = false;
	cv_rc rc = read_exact(r->fd, len, 4, &eof);
	size_t n = (size_t)len[0] << 24 | (size_t)len[1] << 16 | (size_t)len[2] << 8 | len[3];
	if (!rc && (n < ABYTES || n > CHUNK_MAX + ABYTES))
		rc = CV_E_CRYPTO;
	cv_buf_reset(&r->cipher);
	cv_buf_reset(&r->plain);
	if (!rc)
		rc = cv_buf_extend(&r->cipher, n, (void **)&ct);
	if (!rc)
		rc = read_exact(r->fd, ct, n, NULL);
	if (!rc)
		rc = cv_buf_extend(&r->plain, n - ABYTES, (void **)&pt);
	if (!rc && crypto_secretstream_xchacha20poly1305_pull(&r->st, pt, NULL, &tag, ct, n, r->first ? (const uint8_t *)r->ad.data : NULL,
							      r->first ? r->ad.len : 0) != 0)
		rc = CV_E_CRYPTO;
	r->first = false;
	r->chunk++;
	if (!rc && tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
		uint8_t extra;
		bool at_end = false;
		r->ended = true;
		if (read_exact(r->fd, &extra, 1, &at_end) != CV_E_CRYPTO || !at_end) {
			snprintf(err, errlen, "the backup has bytes after its end: it was changed");
			return CV_E_CRYPTO;
		}
	}
	if (rc == CV_E_CRYPTO)
		snprintf(err, errlen, "the backup is damaged: chunk %llu %s", (unsigned long long)r->chunk,
			 eof ? "is missing: the file was cut short" : "does not authenticate (a byte was changed, or the file "
			 "was cut short or reordered)");
	return rc;
}

/* Parses a chunk's records; hands each (except END) to fn (their pointers
 * stay valid until the next chunk is read: into r->plain and pool). */
static cv_rc chunk_records(reader_t *r, cv_pool_t *pool, cv_rc (*fn)(void *arg, const cv_store_rec_t *rec), void *arg,
			   char *err, size_t errlen)
{
	size_t at = 0;
	cv_rc rc = CV_OK;
	while (!rc && at < r->plain.len) {
		cv_store_rec_t rec;
		size_t used = 0;
		const uint8_t *p = (const uint8_t *)r->plain.data + at;
		rc = cv_store_rec_parse(p, r->plain.len - at, pool, &rec, &used);
		if (rc) {
			snprintf(err, errlen, "the backup holds a malformed record in chunk %llu", (unsigned long long)r->chunk);
			rc = CV_E_CRYPTO;
			break;
		}
		if (p[0] == REC_END) {
			rd_t rd = { .p = p, .len = used, .at = 1 };
			for (int i = 0; i < 4; i++)
				r->want[i] = get_u64(&rd);
			if (!r->ended || at + used != r->plain.len) {
				snprintf(err, errlen, "the backup's end record is misplaced");
				rc = CV_E_CRYPTO;
			}
		} else {
			count(r->info, rec.type);
			if (fn)
				rc = fn(arg, &rec);
		}
		at += used;
	}
	return rc;
}

/* Reads the whole backup, handing records to fn (per chunk, in order). */
static cv_rc read_backup(const char *path, const cv_key_t *master, cv_rc (*fn)(void *arg, const cv_store_rec_t *rec),
			 cv_rc (*chunk_done)(void *arg), void *arg, cv_store_progress_fn progress, void *parg,
			 cv_store_backup_info_t *info, char *err, size_t errlen)
{
	reader_t r = { .first = true, .info = info };
	struct stat st;
	memset(info, 0, sizeof *info);
	r.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (r.fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return CV_E_IO;
	}
	info->bytes = fstat(r.fd, &st) == 0 ? (uint64_t)st.st_size : 0;
	cv_buf_init(&r.ad, HEADER_MAX + 64);
	cv_buf_init(&r.cipher, CHUNK_MAX + ABYTES + 16);
	cv_buf_init(&r.plain, CHUNK_MAX + 16);
	cv_rc rc = open_stream(&r, master, err, errlen);
	while (!rc && !r.ended) {
		cv_pool_t pool;
		cv_pool_init(&pool, 0);
		rc = next_chunk(&r, err, errlen);
		if (!rc)
			rc = chunk_records(&r, &pool, fn, arg, err, errlen);
		if (!rc && chunk_done)
			rc = chunk_done(arg);
		cv_pool_release(&pool);
		if (!rc && progress)
			progress(parg, (uint64_t)lseek(r.fd, 0, SEEK_CUR), info->bytes);
	}
	uint64_t got[4] = { info->records, info->versions, info->keys, info->audit };
	if (!rc && memcmp(got, r.want, sizeof got) != 0) {
		snprintf(err, errlen, "the backup's records do not add up to its end record's counts");
		rc = CV_E_CRYPTO;
	}
	if (r.plain.data)
		sodium_memzero(r.plain.data, r.plain.len);
	sodium_memzero(&r.st, sizeof r.st);
	cv_buf_release(&r.ad);
	cv_buf_release(&r.cipher);
	cv_buf_release(&r.plain);
	close(r.fd);
	return rc;
}

cv_rc cv_store_backup_verify(const char *path, const cv_key_t *master, cv_store_progress_fn progress, void *arg,
			     cv_store_backup_info_t *info, char *err, size_t errlen)
{
	return read_backup(path, master, NULL, NULL, NULL, progress, arg, info, err, errlen);
}

/* ---- restoring ------------------------------------------------------------- */

typedef struct loader {
	cv_backend_t *be;
	const cv_backend_ops_t *ops;
	cv_store_rec_t *recs;      /* the records of the chunk being loaded */
	size_t n, cap;
} loader_t;

/* Keeps a record until its chunk is loaded (one transaction per chunk). */
static cv_rc keep_rec(void *arg, const cv_store_rec_t *rec)
{
	loader_t *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 1024;
		cv_store_rec_t *more = realloc(l->recs, cap * sizeof *more);
		if (!more)
			return CV_E_NOMEM;
		l->recs = more;
		l->cap = cap;
	}
	l->recs[l->n++] = *rec;
	return CV_OK;
}

static cv_rc load_chunk(void *arg)
{
	loader_t *l = arg;
	cv_rc rc = l->n ? l->ops->load(l->be, l->recs, l->n) : CV_OK;
	l->n = 0;
	return rc;
}

cv_rc cv_store_restore(const char *path, const cv_key_t *master, const char *data_dir, cv_store_progress_fn progress,
		       void *arg, cv_store_backup_info_t *info, char *err, size_t errlen)
{
	char db[1100];
	snprintf(db, sizeof db, "%s/store.db", data_dir);
	if (access(db, F_OK) == 0) {
		snprintf(err, errlen, "%s already holds a store: restore only into a new data directory", data_dir);
		return CV_E_CONFLICT;
	}
	/* every byte checked before anything is written */
	cv_rc rc = cv_store_backup_verify(path, master, NULL, NULL, info, err, errlen);
	if (rc)
		return rc;
	loader_t l = { 0 };
	rc = cv_sqlite_open(data_dir, 1, &l.be, &l.ops, err, errlen);
	if (!rc)
		rc = read_backup(path, master, keep_rec, load_chunk, &l, progress, arg, info, err, errlen);
	if (rc && !err[0])
		snprintf(err, errlen, "the restore failed: %s", cv_rc_str(rc));
	if (l.be)
		l.ops->close(l.be);
	free(l.recs);
	return rc;
}
