/*
 * record.c - the stored form of an audit record (audit.h, "the stored
 * form"): the event's fields in a compact binary encoding, which the store
 * seals and chains like any record, and the AuditEvent JSON rendered from
 * it when the trail is read. A read's record is about a tenth of its JSON:
 * fewer bytes to build, seal, hash, write and fsync on every request.
 *
 * Format 1, in order:
 *   0x01                          the format (a JSON body starts with '{')
 *   type, action, outcome         one byte each
 *   status, flags, nres           unsigned LEB128 varints
 *   (tag, length, bytes)*         to the end: tag one byte, length a varint;
 *                                 the strings of the event, none holding NUL;
 *                                 entities, patients and the patients
 *                                 reached through break-glass alone
 *                                 (T_GLASS) repeat, in order
 * Records stored before this format hold the AuditEvent JSON itself and are
 * served as they are.
 */
#include <string.h>

#include "audit/audit.h"

#define FORMAT_1 0x01
#define VARINT_MAX 10 /* bytes of a 64-bit LEB128 */

enum {
	T_SUBTYPE = 1, T_OUTCOME_TEXT, T_AGENT, T_AGENT_KIND, T_ROLE, T_LINK, T_CLIENT, T_ADDRESS, T_REQUEST_ID,
	T_QUERY, T_ENTITY, T_PATIENT, T_TARGET, T_PURPOSE, T_REASON, T_DETAIL, T_GLASS,
	T_END /* one past the last tag */
};

/* ---- encoding ------------------------------------------------------------- */

static cv_rc put_varint(cv_buf_t *b, uint64_t v)
{
	uint8_t tmp[VARINT_MAX];
	size_t n = 0;
	do {
		tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return cv_buf_append(b, tmp, n);
}

static cv_rc put_field(cv_buf_t *b, uint8_t tag, const char *s)
{
	if (!s)
		return CV_OK;
	size_t len = strlen(s);
	cv_rc rc = cv_buf_append(b, &tag, 1);
	if (!rc)
		rc = put_varint(b, len);
	return rc ? rc : cv_buf_append(b, s, len);
}

cv_rc cv_audit_encode(const cv_audit_event_t *e, cv_buf_t *out)
{
	uint8_t fixed[4] = { FORMAT_1, (uint8_t)e->type, (uint8_t)(e->action ? e->action : 'E'), (uint8_t)e->outcome };
	cv_rc rc = cv_buf_append(out, fixed, sizeof fixed);
	if (!rc)
		rc = put_varint(out, e->status);
	if (!rc)
		rc = put_varint(out, e->flags);
	if (!rc)
		rc = put_varint(out, e->nres > 0 ? (uint64_t)e->nres : 0);
	const struct { uint8_t tag; const char *s; } single[] = {
		{ T_SUBTYPE, e->subtype }, { T_OUTCOME_TEXT, e->outcome_text }, { T_AGENT, e->agent },
		{ T_AGENT_KIND, e->agent_kind }, { T_ROLE, e->role }, { T_LINK, e->link }, { T_CLIENT, e->client },
		{ T_ADDRESS, e->address }, { T_REQUEST_ID, e->request_id }, { T_QUERY, e->query },
		{ T_TARGET, e->target }, { T_PURPOSE, e->purpose }, { T_REASON, e->reason }, { T_DETAIL, e->detail },
	};
	for (size_t i = 0; !rc && i < sizeof single / sizeof single[0]; i++)
		rc = put_field(out, single[i].tag, single[i].s);
	for (size_t i = 0; !rc && i < e->nentities && i < CV_AUDIT_ENTITIES_MAX; i++)
		rc = put_field(out, T_ENTITY, e->entities[i]);
	for (size_t i = 0; !rc && i < e->npatients && i < CV_AUDIT_PATIENTS_MAX; i++)
		rc = put_field(out, T_PATIENT, e->patients[i]);
	for (size_t i = 0; !rc && i < e->nglass && i < CV_AUDIT_PATIENTS_MAX; i++)
		rc = put_field(out, T_GLASS, e->glass[i]);
	return rc;
}

/* ---- decoding ------------------------------------------------------------- */

typedef struct reader {
	const uint8_t *p, *end;
} reader_t;

static bool get_varint(reader_t *r, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0, n = 0; r->p < r->end && n < VARINT_MAX; shift += 7, n++) {
		uint8_t byte = *r->p++;
		if (n == VARINT_MAX - 1 && byte > 1) /* past 64 bits */
			return false;
		v |= (uint64_t)(byte & 0x7f) << shift;
		if (!(byte & 0x80)) {
			*out = v;
			return n == 0 || byte != 0; /* the shortest form only: one encoding per value */
		}
	}
	return false;
}

/* A string field as a NUL-terminated copy in pool. */
static const char *get_string(reader_t *r, cv_pool_t *pool)
{
	uint64_t len;
	if (!get_varint(r, &len) || len > (uint64_t)(r->end - r->p) || memchr(r->p, 0, len))
		return NULL;
	const char *s = cv_pool_strndup(pool, (const char *)r->p, len);
	r->p += len;
	return s;
}

/* Appends s to a list of at most max in pool (grown by doubling). */
static bool list_add(cv_pool_t *pool, const char ***list, size_t *n, size_t max, const char *s)
{
	if (*n == max)
		return false;
	if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: full */
		size_t cap = *n ? *n * 2 : 1;
		const char **grown = cv_pool_alloc(pool, cap * sizeof *grown);
		if (!grown)
			return false;
		if (*n)
			memcpy(grown, *list, *n * sizeof *grown);
		*list = grown;
	}
	(*list)[(*n)++] = s;
	return true;
}

static const char **single_slot(cv_audit_event_t *e, unsigned tag)
{
	switch (tag) {
	case T_SUBTYPE: return &e->subtype;
	case T_OUTCOME_TEXT: return &e->outcome_text;
	case T_AGENT: return &e->agent;
	case T_AGENT_KIND: return &e->agent_kind;
	case T_ROLE: return &e->role;
	case T_LINK: return &e->link;
	case T_CLIENT: return &e->client;
	case T_ADDRESS: return &e->address;
	case T_REQUEST_ID: return &e->request_id;
	case T_QUERY: return &e->query;
	case T_TARGET: return &e->target;
	case T_PURPOSE: return &e->purpose;
	case T_REASON: return &e->reason;
	case T_DETAIL: return &e->detail;
	default: return NULL;
	}
}

static bool fixed_fields(reader_t *r, cv_audit_event_t *e)
{
	uint64_t status, flags, nres;
	if (r->end - r->p < 4 || r->p[0] != FORMAT_1 || r->p[1] > CV_AUDIT_APPLICATION || !r->p[2] ||
	    !strchr("CRUDE", r->p[2]) || r->p[3] > 12 || r->p[3] % 4)
		return false;
	e->type = (cv_audit_type)r->p[1];
	e->action = (char)r->p[2];
	e->outcome = r->p[3];
	r->p += 4;
	if (!get_varint(r, &status) || !get_varint(r, &flags) || !get_varint(r, &nres) || status > 999 ||
	    flags > 0xffff || nres > INT64_MAX)
		return false;
	e->status = (unsigned)status;
	e->flags = (unsigned)flags;
	e->nres = (int64_t)nres;
	return true;
}

cv_rc cv_audit_decode(const uint8_t *p, size_t len, cv_pool_t *pool, cv_audit_event_t *e)
{
	reader_t r = { p, p + len };
	const char **entities = NULL, **patients = NULL, **glass = NULL;
	*e = (cv_audit_event_t){ .type = CV_AUDIT_REST };
	if (!fixed_fields(&r, e))
		return CV_E_INVALID;
	while (r.p < r.end) {
		unsigned tag = *r.p++;
		const char *s = tag && tag < T_END ? get_string(&r, pool) : NULL;
		const char **slot = single_slot(e, tag);
		if (!s)
			return CV_E_INVALID;
		if (slot && *slot) /* each field once */
			return CV_E_INVALID;
		if (slot)
			*slot = s;
		else if (tag == T_ENTITY && !list_add(pool, &entities, &e->nentities, CV_AUDIT_ENTITIES_MAX, s))
			return CV_E_INVALID;
		else if (tag == T_PATIENT && !list_add(pool, &patients, &e->npatients, CV_AUDIT_PATIENTS_MAX, s))
			return CV_E_INVALID;
		else if (tag == T_GLASS && !list_add(pool, &glass, &e->nglass, CV_AUDIT_PATIENTS_MAX, s))
			return CV_E_INVALID;
	}
	e->entities = entities;
	e->patients = patients;
	e->glass = glass;
	return CV_OK;
}

/* ---- reading the trail ---------------------------------------------------- */

cv_rc cv_audit_render(const cv_store_audit_row_t *r, cv_pool_t *pool, const char **json, size_t *len)
{
	if (r->body_len && r->body[0] == '{') { /* stored before format 1: the JSON itself */
		*json = (const char *)r->body;
		*len = r->body_len;
		return CV_OK;
	}
	cv_audit_event_t e;
	cv_rc rc = cv_audit_decode(r->body, r->body_len, pool, &e);
	cv_buf_t b;
	cv_buf_init(&b, 8u << 20);
	if (!rc)
		rc = cv_audit_json(&e, r->id, r->at_us, &b);
	char *copy = rc ? NULL : cv_pool_strndup(pool, b.data, b.len);
	if (!rc && !copy)
		rc = CV_E_NOMEM;
	if (!rc) {
		*json = copy;
		*len = b.len;
	}
	cv_buf_release(&b);
	return rc;
}

typedef struct render_ctx {
	cv_pool_t *pool;
	cv_store_audit_fn fn;
	void *arg;
} render_ctx_t;

static cv_rc render_row(void *arg, const cv_store_audit_row_t *r)
{
	render_ctx_t *c = arg;
	cv_store_audit_row_t shown = *r;
	const char *json;
	cv_rc rc = cv_audit_render(r, c->pool, &json, &shown.body_len);
	if (rc)
		return rc;
	shown.body = (const uint8_t *)json;
	return c->fn(c->arg, &shown);
}

cv_rc cv_audit_search(cv_store_t *s, const cv_store_audit_query_t *q, cv_pool_t *pool, cv_store_audit_fn fn,
		      void *arg)
{
	render_ctx_t c = { .pool = pool, .fn = fn, .arg = arg };
	return cv_store_audit_search(s, q, pool, render_row, &c);
}
