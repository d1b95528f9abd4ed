/*
 * archive.c - retention: the oldest records move from the store to a
 * verifiable file (audit.h, "retention").
 *
 * File format (one JSON object per line):
 *   {"format":"carevault-audit-archive-2","first":F,"prev":"hex"}
 *   {"pos":..,"at_us":..,"action":"R","outcome":0,"flags":0,"kind":"rest","subtype":"read",
 *    "agent":"..","id":"..","nres":1,"npat":1,"keys":"b64url","body":"b64url","prev":"hex","hash":"hex"}
 *   ... one line per record, F to L, as stored (bodies stay sealed) ...
 *   a checkpoint line of record L, signed with the audit key over the
 *   archive's own message (cv_audit_archive_message: F, "prev", L, its hash)
 * The records chain from "prev" exactly as in the store, so the file checks
 * without any key but the public one; the signature covers both ends, so
 * records cannot be cut from either. The store then starts its chain after
 * record L, from a base signed likewise. Format 1 files (whose end was signed
 * as an ordinary checkpoint, leaving the start unsigned) still verify, with
 * that said.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/io.h"
#include "core/time.h"
#include "model/json.h"

#define ARCHIVE_FORMAT "carevault-audit-archive-2"
#define ARCHIVE_FORMAT_1 "carevault-audit-archive-1"
#define ARCHIVE_BATCH 5000
#define LINE_MAX_BYTES (64u << 20)

/* ---- writing ---------------------------------------------------------------- */

static cv_rc hex_field(cv_buf_t *b, const char *key, const uint8_t *p, size_t n)
{
	char hex[2 * CV_AUDIT_HASH_BYTES + 1];
	cv_crypto_hex(p, n, hex);
	return cv_buf_printf(b, ",\"%s\":\"%s\"", key, hex);
}

static cv_rc b64_field(cv_buf_t *b, const char *key, const uint8_t *p, size_t n)
{
	cv_rc rc = cv_buf_printf(b, ",\"%s\":\"", key);
	if (!rc)
		rc = cv_crypto_b64url_encode(p, n, b);
	return rc ? rc : cv_buf_puts(b, "\"");
}

static cv_rc str_field(cv_buf_t *b, const char *key, const char *v)
{
	cv_rc rc = cv_buf_printf(b, ",\"%s\":\"", key);
	if (!rc)
		rc = cv_buf_json_escape(b, v);
	return rc ? rc : cv_buf_puts(b, "\"");
}

static cv_rc row_line(const cv_store_audit_row_t *r, cv_buf_t *b)
{
	cv_rc rc = cv_buf_printf(b, "{\"pos\":%lld,\"at_us\":%lld,\"action\":\"%c\",\"outcome\":%d,\"flags\":%u",
				 (long long)r->pos, (long long)r->at_us, r->action, r->outcome, r->flags);
	if (!rc)
		rc = str_field(b, "kind", r->kind);
	if (!rc)
		rc = str_field(b, "subtype", r->subtype);
	if (!rc)
		rc = str_field(b, "agent", r->agent);
	if (!rc)
		rc = str_field(b, "id", r->id);
	if (!rc)
		rc = cv_buf_printf(b, ",\"nres\":%lld,\"npat\":%lld", (long long)r->nres, (long long)r->npat);
	if (!rc)
		rc = b64_field(b, "keys", r->keys, r->keys_len);
	if (!rc)
		rc = b64_field(b, "body", r->body, r->body_len);
	if (!rc)
		rc = hex_field(b, "prev", r->prev, CV_AUDIT_HASH_BYTES);
	if (!rc)
		rc = hex_field(b, "hash", r->hash, CV_AUDIT_HASH_BYTES);
	return rc ? rc : cv_buf_puts(b, "}\n");
}

typedef struct collect {
	int fd;
	int64_t before_us;
	int64_t expect;          /* the next position */
	int64_t last;            /* the last written */
	uint8_t last_hash[CV_AUDIT_HASH_BYTES];
	int64_t first;           /* the first written, and the hash it follows */
	uint8_t first_prev[CV_AUDIT_HASH_BYTES];
	bool done;               /* a record too young was met */
	bool header;
	cv_buf_t line;
	cv_rc rc;
} collect_t;

static cv_rc take_row(void *arg, const cv_store_audit_row_t *r)
{
	collect_t *c = arg;
	char hex[2 * CV_AUDIT_HASH_BYTES + 1];
	if (r->at_us >= c->before_us || r->pos != c->expect) {
		c->done = true; /* too young (or a gap: verify reports it; archive nothing past it) */
		return CV_E_CONFLICT;
	}
	cv_buf_reset(&c->line);
	cv_rc rc = CV_OK;
	if (!c->header) {
		cv_crypto_hex(r->prev, CV_AUDIT_HASH_BYTES, hex);
		rc = cv_buf_printf(&c->line, "{\"format\":\"" ARCHIVE_FORMAT "\",\"first\":%lld,\"prev\":\"%s\"}\n",
				   (long long)r->pos, hex);
		c->header = true;
		c->first = r->pos;
		memcpy(c->first_prev, r->prev, CV_AUDIT_HASH_BYTES);
	}
	if (!rc)
		rc = row_line(r, &c->line);
	if (!rc)
		rc = cv_write_all(c->fd, c->line.data, c->line.len);
	if (rc)
		return rc;
	c->expect++;
	c->last = r->pos;
	memcpy(c->last_hash, r->hash, CV_AUDIT_HASH_BYTES);
	return CV_OK;
}

/* The base the chain starts after (0 when nothing was archived yet). */
static int64_t base_of(cv_store_t *s)
{
	cv_buf_t line;
	cv_store_checkpoint_t base = { .pos = 0 };
	cv_buf_init(&line, 4096);
	if (cv_store_meta_get(s, CV_AUDIT_META_BASE, &line) == CV_OK &&
	    cv_audit_checkpoint_parse(line.data ? line.data : "", line.len, &base))
		base.pos = 0;
	cv_buf_release(&line);
	return base.pos;
}

/* Writes the old records and the signed end line; out->last 0 when none. */
static cv_rc write_archive(cv_audit_t *a, collect_t *c, cv_store_checkpoint_t *end)
{
	cv_store_t *s = cv_audit_store(a);
	while (!c->done) {
		cv_pool_t pool;
		cv_pool_init(&pool, 0);
		int64_t before = c->expect;
		cv_rc rc = cv_store_audit_scan(s, c->expect - 1, ARCHIVE_BATCH, true, &pool, take_row, c);
		cv_pool_release(&pool);
		if (rc && rc != CV_E_CONFLICT)
			return rc;
		if (c->expect - before < ARCHIVE_BATCH)
			break;
	}
	if (!c->last)
		return CV_OK;
	*end = (cv_store_checkpoint_t){ .pos = c->last, .at_us = cv_time_now_us() };
	memcpy(end->hash, c->last_hash, CV_AUDIT_HASH_BYTES);
	cv_audit_sign_archive(a, c->first, c->first_prev, end);
	cv_buf_reset(&c->line);
	cv_rc rc = cv_audit_checkpoint_line(end, &c->line);
	if (!rc)
		rc = cv_buf_puts(&c->line, "\n");
	if (!rc)
		rc = cv_write_all(c->fd, c->line.data, c->line.len);
	if (!rc && fsync(c->fd) != 0)
		rc = CV_E_IO;
	return rc;
}

cv_rc cv_audit_archive(cv_audit_t *a, int64_t before_us, const char *path, cv_audit_archived_t *out)
{
	cv_store_t *s = cv_audit_store(a);
	memset(out, 0, sizeof *out);
	collect_t c = { .before_us = before_us, .expect = base_of(s) + 1 };
	int64_t first = c.expect;
	c.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (c.fd < 0) {
		snprintf(out->what, sizeof out->what, "cannot create %s (it must not exist yet): %s", path, strerror(errno));
		return CV_E_IO;
	}
	cv_buf_init(&c.line, LINE_MAX_BYTES);
	cv_store_checkpoint_t end = { .pos = 0 };
	cv_rc rc = write_archive(a, &c, &end);
	close(c.fd);
	cv_buf_t base;
	cv_buf_init(&base, 4096);
	cv_audit_verdict_t v;
	if (!rc && c.last && (rc = cv_audit_verify_archive(path, end.key, &v)) == CV_OK && !v.ok)
		rc = CV_E_CRYPTO;
	cv_store_checkpoint_t start = end; /* the chain's new base: signed as a base, not as a checkpoint */
	if (!rc && c.last) {
		cv_audit_sign_base(a, &start);
		rc = cv_audit_checkpoint_line(&start, &base);
	}
	if (!rc && c.last) {
		cv_store_write_t w = { .op = CV_STORE_AUDIT_PRUNE, .audit_pos = c.last, .name = CV_AUDIT_META_BASE,
				       .body = (const uint8_t *)base.data, .body_len = base.len };
		rc = cv_store_write_sync(s, &w);
	}
	if (!c.last && !rc) {
		unlink(path);
		snprintf(out->what, sizeof out->what, "no record is old enough to archive");
	} else if (!rc) {
		out->first = first;
		snprintf(out->what, sizeof out->what, "records %lld to %lld archived to %s (verified) and removed from "
			 "the store", (long long)first, (long long)c.last, path);
	} else if (!out->what[0]) {
		snprintf(out->what, sizeof out->what, "the archive failed (%s); the store keeps every record",
			 cv_rc_str(rc));
	}
	out->last = c.last;
	cv_buf_release(&base);
	cv_buf_release(&c.line);
	return rc;
}

/* ---- reading ---------------------------------------------------------------- */

/* The string member k, or NULL (absent or not a string). */
static const char *jstr(json_object *o, const char *k)
{
	int bad = 0;
	return cv_json_member_string(o, k, &bad);
}

static const uint8_t *b64(const char *text, cv_pool_t *pool, size_t *len)
{
	cv_buf_t b;
	cv_buf_init(&b, LINE_MAX_BYTES);
	uint8_t *copy = NULL;
	if (text && !cv_crypto_b64url_decode(text, strlen(text), &b) && (copy = cv_pool_alloc(pool, b.len + 1))) {
		if (b.len)
			memcpy(copy, b.data, b.len);
		*len = b.len;
	}
	cv_buf_release(&b);
	return copy;
}

/* One line as a JSON object (strict: duplicate keys and bad UTF-8 refused), or NULL. */
static json_object *parse_line(const char *line, size_t len, cv_pool_t *pool)
{
	cv_json_limits_t lim;
	json_object *o = NULL;
	const char *err;
	cv_json_limits_default(&lim);
	lim.max_depth = 4;
	lim.max_string = LINE_MAX_BYTES;
	if (len > LINE_MAX_BYTES || cv_json_parse(line, len, &lim, pool, &o, &err))
		return NULL;
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

cv_rc cv_audit_archive_parse_row(const char *line, size_t len, cv_pool_t *pool, cv_store_audit_row_t *out)
{
	json_object *o = parse_line(line, len, pool);
	int64_t outcome = 0, flags = 0;
	const char *act;
	memset(out, 0, sizeof *out);
	cv_rc rc = CV_E_INVALID;
	if (o && cv_json_member_int(o, "pos", &out->pos) && cv_json_member_int(o, "at_us", &out->at_us) && (act = jstr(o, "action")) &&
	    strlen(act) == 1 && cv_json_member_int(o, "outcome", &outcome) && cv_json_member_int(o, "flags", &flags) && flags >= 0 &&
	    cv_json_member_int(o, "nres", &out->nres) && cv_json_member_int(o, "npat", &out->npat) && jstr(o, "kind") && jstr(o, "subtype") &&
	    jstr(o, "agent") && jstr(o, "id") && !cv_crypto_unhex(jstr(o, "prev"), out->prev, CV_AUDIT_HASH_BYTES) &&
	    !cv_crypto_unhex(jstr(o, "hash"), out->hash, CV_AUDIT_HASH_BYTES)) {
		out->action = act[0];
		out->outcome = (int)outcome;
		out->flags = (unsigned)flags;
		out->kind = cv_pool_strdup(pool, jstr(o, "kind"));
		out->subtype = cv_pool_strdup(pool, jstr(o, "subtype"));
		out->agent = cv_pool_strdup(pool, jstr(o, "agent"));
		out->id = cv_pool_strdup(pool, jstr(o, "id"));
		out->keys = b64(jstr(o, "keys"), pool, &out->keys_len);
		out->body = b64(jstr(o, "body"), pool, &out->body_len);
		rc = out->kind && out->subtype && out->agent && out->id && out->keys && out->body ? CV_OK : CV_E_INVALID;
	}
	json_object_put(o);
	return rc;
}

typedef struct areader {
	FILE *f;
	char *line;
	size_t cap;
	long long lineno;
} areader_t;

/* The next non-empty line (without its newline), or NULL at the end. */
static const char *next_line(areader_t *r, size_t *len)
{
	ssize_t n;
	while ((n = getline(&r->line, &r->cap, r->f)) >= 0) {
		r->lineno++;
		while (n > 0 && (r->line[n - 1] == '\n' || r->line[n - 1] == '\r'))
			r->line[--n] = '\0';
		if (n) {
			*len = (size_t)n;
			return r->line;
		}
	}
	return NULL;
}

/* The header: the format (1 or 2; 0 when it is not an archive's), the first
 * record's position and the hash it follows. */
static int read_header(areader_t *r, int64_t *first, uint8_t prev[CV_AUDIT_HASH_BYTES])
{
	size_t len;
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	const char *line = next_line(r, &len);
	json_object *o = line ? parse_line(line, len, &pool) : NULL;
	const char *format = o ? jstr(o, "format") : NULL;
	int version = !format ? 0 : strcmp(format, ARCHIVE_FORMAT) == 0 ? 2 : strcmp(format, ARCHIVE_FORMAT_1) == 0 ? 1 : 0;
	if (!version || !cv_json_member_int(o, "first", first) || *first < 1 ||
	    cv_crypto_unhex(jstr(o, "prev"), prev, CV_AUDIT_HASH_BYTES))
		version = 0;
	json_object_put(o);
	cv_pool_release(&pool);
	return version;
}

typedef struct awalk {
	int version;                       /* the file's format */
	bool accept_v1;                    /* a format-1 file may verify (with what it cannot show said) */
	int64_t first, expect;             /* the first record, the next one */
	uint8_t start[CV_AUDIT_HASH_BYTES]; /* the hash the first follows */
	uint8_t prev[CV_AUDIT_HASH_BYTES];  /* the last record's */
} awalk_t;

/* Whether end is signed by the audit key (pub, or the one it names) over
 * the archive's message: both ends (format 2), or the end alone (format 1). */
static bool end_signed(const awalk_t *aw, const cv_store_checkpoint_t *end, const uint8_t *pub)
{
	char msg[320];
	if (aw->version == 2)
		cv_audit_archive_message(aw->first, aw->start, end, msg);
	else
		cv_audit_checkpoint_message(end, msg);
	return (!pub || memcmp(pub, end->key, CV_SIGN_PUBLIC_BYTES) == 0) &&
	       cv_crypto_sign_verify(end->key, msg, strlen(msg), end->sig) == CV_OK;
}

/* The signed end line, after the records: it must sign the last one, and
 * nothing may follow it. */
static void check_end_line(areader_t *r, const awalk_t *aw, const cv_store_checkpoint_t *end, const uint8_t *pub,
			   cv_audit_verdict_t *out)
{
	size_t len;
	out->bad_pos = end->pos;
	if (end->pos != aw->expect - 1 || memcmp(end->hash, aw->prev, CV_AUDIT_HASH_BYTES) != 0) {
		snprintf(out->what, sizeof out->what, "the archive's signed end does not match its last record");
	} else if (aw->version == 1 && !aw->accept_v1) {
		snprintf(out->what, sizeof out->what, "a format-1 archive: its signature covers its end only (as an "
			 "ordinary checkpoint), so records cut from its start, or from its end back to any checkpoint, "
			 "would not show; check what it can show with --accept-format-1");
	} else if (!end_signed(aw, end, pub)) {
		snprintf(out->what, sizeof out->what, "the archive is not signed by the audit key for its first and last "
			 "records (records were cut from its start or end, or it was altered)");
	} else if (next_line(r, &len)) {
		snprintf(out->what, sizeof out->what, "the archive has lines after its signed end");
	} else {
		out->ok = true;
		out->bad_pos = 0;
		out->records = aw->expect - aw->first;
		out->base = aw->first - 1;
		cv_crypto_hex(aw->prev, CV_AUDIT_HASH_BYTES, out->head);
		snprintf(out->what, sizeof out->what, "the archive is whole: records %lld to %lld, signed%s",
			 (long long)aw->first, (long long)aw->expect - 1,
			 aw->version == 2 ? "" : " at its end only (a format-1 archive: records cut from its start, or "
			 "from its end back to a checkpoint, would not show)");
	}
}

/* One record line: it must be the next record of the chain. */
static bool record_follows(const cv_store_audit_row_t *row, awalk_t *aw, cv_audit_verdict_t *out)
{
	uint8_t h[CV_AUDIT_HASH_BYTES];
	out->bad_pos = aw->expect;
	if (row->pos != aw->expect)
		snprintf(out->what, sizeof out->what, "record %lld is missing from the archive", (long long)aw->expect);
	else if (memcmp(row->prev, aw->prev, CV_AUDIT_HASH_BYTES) != 0)
		snprintf(out->what, sizeof out->what, "record %lld does not follow record %lld", (long long)aw->expect,
			 (long long)aw->expect - 1);
	else if ((cv_store_audit_hash(row, h), memcmp(h, row->hash, CV_AUDIT_HASH_BYTES) != 0))
		snprintf(out->what, sizeof out->what, "record %lld was altered", (long long)aw->expect);
	else
		out->bad_pos = 0;
	if (out->bad_pos)
		return false;
	memcpy(aw->prev, row->hash, CV_AUDIT_HASH_BYTES);
	aw->expect++;
	return true;
}

/* Checks the record lines and the signed end line. */
static void check_lines(areader_t *r, const uint8_t *pub, bool accept_v1, cv_audit_verdict_t *out)
{
	awalk_t aw = { .accept_v1 = accept_v1 };
	aw.version = read_header(r, &aw.first, aw.start);
	if (!aw.version) {
		snprintf(out->what, sizeof out->what, "not a carevault audit archive (bad header)");
		return;
	}
	aw.expect = aw.first;
	memcpy(aw.prev, aw.start, CV_AUDIT_HASH_BYTES);
	const char *line;
	size_t len;
	while ((line = next_line(r, &len))) {
		cv_pool_t pool;
		cv_store_audit_row_t row;
		cv_store_checkpoint_t end;
		cv_pool_init(&pool, 0);
		cv_rc rc = cv_audit_archive_parse_row(line, len, &pool, &row);
		bool go_on = false;
		if (rc && cv_audit_checkpoint_parse(line, len, &end) == CV_OK) {
			check_end_line(r, &aw, &end, pub, out);
		} else if (rc) {
			out->bad_pos = aw.expect;
			snprintf(out->what, sizeof out->what, "line %lld of the archive is not a record", r->lineno);
		} else {
			go_on = record_follows(&row, &aw, out);
		}
		cv_pool_release(&pool);
		if (!go_on)
			return;
	}
	out->bad_pos = aw.expect;
	snprintf(out->what, sizeof out->what, "the archive ends without its signed checkpoint (truncated)");
}

cv_rc cv_audit_verify_archive(const char *path, const uint8_t *pub, cv_audit_verdict_t *out)
{
	return cv_audit_verify_archive_as(path, pub, false, out);
}

cv_rc cv_audit_verify_archive_as(const char *path, const uint8_t *pub, bool accept_v1, cv_audit_verdict_t *out)
{
	memset(out, 0, sizeof *out);
	areader_t r = { .f = fopen(path, "re") };
	if (!r.f) {
		snprintf(out->what, sizeof out->what, "cannot read %s", path);
		return CV_E_IO;
	}
	check_lines(&r, pub, accept_v1, out);
	free(r.line);
	fclose(r.f);
	return CV_OK;
}
