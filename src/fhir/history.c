/*
 * history.c - the history interaction at instance, type and system level:
 * a Bundle of type "history", newest first, paged with _count and a cursor.
 *
 * Stored bodies are spliced into the Bundle as they are (they are already the
 * served JSON); only the logical id is read back out of each one, since the
 * store knows resources by blind row ids.
 */
#include "fhir/fhir.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "core/time.h"

#define HISTORY_DEFAULT_COUNT 50

typedef struct hist {
	cv_exchange_t *ex;
	cv_buf_t *out;
	unsigned n;         /* entries written */
	unsigned seen;      /* versions read (shown or not) */
	int64_t last_seq;   /* seq of the last version read: the next page's cursor */
	cv_access_t *acc;   /* what the caller may see */
	const char *id;     /* instance history: the id */
} hist_t;

/* The logical id in a stored body. */
static const char *body_id(cv_exchange_t *ex, const cv_store_version_t *v)
{
	json_tokener *tok = json_tokener_new_ex(128);
	if (!tok)
		return NULL;
	json_object *obj = json_tokener_parse_ex(tok, (const char *)v->body, (int)v->body_len);
	json_tokener_free(tok);
	json_object *id = NULL;
	const char *s = NULL;
	if (obj && json_object_object_get_ex(obj, "id", &id))
		s = cv_pool_strdup(ex->pool, json_object_get_string(id));
	json_object_put(obj);
	return s;
}

static cv_rc entry(void *arg, const cv_store_version_t *v)
{
	hist_t *h = arg;
	char when[40];
	const char *id = body_id(h->ex, v);
	if (!id)
		return CV_E_INTERNAL;
	h->seen++;
	h->last_seq = v->seq;
	if (h->acc && !v->deleted) {
		cv_verdict verdict;
		cv_rc rc = cv_fhir_visible(h->ex, h->acc, CV_ACT_FHIR_HISTORY, id, v, NULL, &verdict);
		if (rc || verdict != CV_ACCESS_PERMIT)
			return rc; /* a version the caller may not see (it was another patient's) */
	}
	cv_fhir_audit_shown(h->ex, v, id, NULL);
	cv_time_format_instant(v->updated_us, when, sizeof when);
	const char *method = v->deleted ? "DELETE" : v->version == 1 ? "POST" : "PUT";
	const char *status = v->deleted ? "204" : v->version == 1 ? "201" : "200";
	cv_rc rc = cv_buf_printf(h->out, "%s{\"fullUrl\":\"%s/%s/%s\",", h->n ? "," : "", h->ex->base_url,
				 v->type, id);
	if (!rc && !v->deleted) {
		rc = cv_buf_puts(h->out, "\"resource\":");
		if (!rc)
			rc = cv_buf_append(h->out, v->body, v->body_len);
		if (!rc)
			rc = cv_buf_puts(h->out, ",");
	}
	if (!rc)
		rc = cv_buf_printf(h->out, "\"request\":{\"method\":\"%s\",\"url\":\"%s/%s\"},"
					   "\"response\":{\"status\":\"%s\",\"etag\":\"W/\\\"%lld\\\"\","
					   "\"lastModified\":\"%s\"}}",
				   method, v->type, id, status, (long long)v->version, when);
	h->n++;
	return rc;
}

/* Percent-encodes s for a query string. */
static cv_rc put_encoded(cv_buf_t *b, const char *s)
{
	cv_rc rc = CV_OK;
	for (; *s && !rc; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '.' || c == '_')
			rc = cv_buf_append(b, s, 1);
		else
			rc = cv_buf_printf(b, "%%%02X", c);
	}
	return rc;
}

static cv_rc link(cv_buf_t *b, cv_exchange_t *ex, const char *rel, unsigned count, const char *since,
		  int64_t cursor)
{
	cv_rc rc = cv_buf_printf(b, "{\"relation\":\"%s\",\"url\":\"%s%s?_count=%u", rel, ex->base_url,
				 ex->path + 5, count);
	if (!rc && since) {
		rc = cv_buf_puts(b, "&_since=");
		if (!rc)
			rc = put_encoded(b, since);
	}
	if (!rc && cursor)
		rc = cv_buf_printf(b, "&_cursor=%lld", (long long)cursor);
	if (!rc)
		rc = cv_buf_puts(b, "\"}");
	return rc;
}

static int parse_uint(const char *s, long long max, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!isdigit((unsigned char)s[0]) || *end || errno || v < 0 || v > max)
		return 0;
	*out = v;
	return 1;
}

/* Reads _count, _since and _cursor; answers 400 itself when one is malformed. */
static int history_params(cv_exchange_t *ex, cv_store_history_query_t *q, const char **since)
{
	const cv_fhir_t *f = ex->app;
	long long count = HISTORY_DEFAULT_COUNT, cursor = 0;
	const char *c = cv_exchange_param(ex, "_count");
	*since = cv_exchange_param(ex, "_since");
	const char *cur = cv_exchange_param(ex, "_cursor");
	if (c && !parse_uint(c, 1LL << 40, &count)) {
		cv_fhir_error(ex, 400, "invalid", "_count must be a whole number");
		return 0;
	}
	if (count > (long long)f->cfg->history_max_count)
		count = f->cfg->history_max_count;
	if (*since && cv_time_parse(*since, &q->since_us)) {
		cv_fhir_error(ex, 400, "invalid", "_since must be an instant such as 2026-01-31T12:00:00Z");
		return 0;
	}
	if (cur && (!parse_uint(cur, 1LL << 62, &cursor) || cursor == 0)) {
		cv_fhir_error(ex, 400, "invalid", "_cursor is not a cursor this server issued");
		return 0;
	}
	q->limit = (unsigned)count;
	q->before_seq = cursor;
	return 1;
}

/* An instance's history is visible when its latest version is (a
 * tombstone: the version before it); answers 404 itself when not. */
static int instance_visible(cv_exchange_t *ex, cv_access_t *acc, const char *type, const char *id)
{
	cv_fhir_t *f = ex->app;
	cv_store_version_t v;
	cv_verdict verdict = CV_ACCESS_PERMIT;
	if (!acc || !id)
		return 1;
	cv_rc rc = cv_store_read(f->store, type, id, 0, ex->pool, &v);
	if (rc == CV_E_GONE) /* its patient was erased: nothing to show, as if it never was */
		rc = CV_E_NOTFOUND;
	if (!rc)
		rc = cv_fhir_visible(ex, acc, CV_ACT_FHIR_HISTORY, id, &v, NULL, &verdict);
	if (!rc && verdict != CV_ACCESS_PERMIT)
		cv_audit_denied(ex);
	if (rc == CV_E_NOTFOUND || (!rc && verdict != CV_ACCESS_PERMIT)) {
		cv_fhir_error(ex, 404, "not-found", "no resource of this type has this id");
		return 0;
	}
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, NULL);
		return 0;
	}
	return 1;
}

static void history(cv_exchange_t *ex, const char *type, const char *id)
{
	cv_fhir_t *f = ex->app;
	cv_store_history_query_t q = { .type = type, .id = id };
	const char *since;
	if (!history_params(ex, &q, &since))
		return;
	cv_access_t *acc;
	if (!cv_fhir_access(ex, &acc) || !instance_visible(ex, acc, type, id))
		return;
	cv_buf_t *b = &ex->resp;
	cv_buf_reset(b);
	hist_t h = { .ex = ex, .out = b, .acc = acc, .id = id };
	cv_rc rc = cv_buf_puts(b, "{\"resourceType\":\"Bundle\",\"type\":\"history\",\"entry\":[");
	if (!rc && q.limit)
		rc = cv_store_history(f->store, &q, ex->pool, entry, &h);
	if (!rc)
		rc = cv_buf_puts(b, "],\"link\":[");
	if (!rc)
		rc = link(b, ex, "self", q.limit, since, q.before_seq);
	if (!rc && q.limit && h.seen == q.limit) {
		rc = cv_buf_puts(b, ",");
		if (!rc)
			rc = link(b, ex, "next", q.limit, since, h.last_seq);
	}
	if (!rc)
		rc = cv_buf_puts(b, "]}");
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, NULL);
	if (id && h.n == 0 && !q.before_seq && !q.since_us)
		return cv_fhir_error(ex, 404, "not-found", "no resource of this type has this id");
	ex->status = 200;
	ex->content_type = "application/fhir+json; charset=utf-8";
	ex->no_store = 1;
}

static int checks(cv_exchange_t *ex, int need_type, int need_id)
{
	return cv_fhir_negotiate(ex) && (!need_type || cv_fhir_type_ok(ex)) && (!need_id || cv_fhir_id_ok(ex));
}

void cv_fhir_history_instance(cv_exchange_t *ex)
{
	if (checks(ex, 1, 1) && cv_fhir_is_audit(ex))
		cv_fhir_error(ex, 404, "not-supported", "an audit record has one version and no history: read it");
	else if (!ex->status)
		history(ex, ex->args[0], ex->args[1]);
}

void cv_fhir_history_type(cv_exchange_t *ex)
{
	if (checks(ex, 1, 0) && cv_fhir_is_audit(ex))
		cv_fhir_error(ex, 404, "not-supported", "the audit trail has no history: search AuditEvent");
	else if (!ex->status)
		history(ex, ex->args[0], NULL);
}

void cv_fhir_history_system(cv_exchange_t *ex)
{
	if (checks(ex, 0, 0))
		history(ex, NULL, NULL);
}
