/*
 * rest.c - the FHIR R4 instance and type interactions: create, read, vread,
 * update (and update-as-create), delete, and history at three levels.
 *
 * The stored body is the resource exactly as it is served, with id and
 * meta.versionId / meta.lastUpdated already set, so a read is one store
 * lookup and one decryption, without re-serialising JSON.
 */
#define _GNU_SOURCE
#include "fhir/fhir.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/time.h"
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "fhir/negotiate.h"
#include "model/outcome.h"

#define MAX_WRITE_ATTEMPTS 5
#define FHIR_JSON "application/fhir+json; charset=utf-8"

static cv_fhir_t *ctx(cv_exchange_t *ex)
{
	return ex->app;
}

/* ---- request checks ---------------------------------------------------- */

int cv_fhir_access(cv_exchange_t *ex, cv_access_t **out)
{
	if (!ex->access_made) {
		cv_access_t *a = NULL;
		cv_rc rc = cv_access_new(ctx(ex)->policy, &ex->principal, ex->pool, &a);
		if (rc) {
			cv_exchange_add_header(ex, "Retry-After", "1");
			cv_fhir_fail(ex, rc, NULL, "the access rules could not be read; retry later");
			return 0;
		}
		ex->access = a;
		ex->access_made = true;
	}
	*out = ex->access;
	return 1;
}

cv_rc cv_fhir_parse_stored(const cv_store_version_t *v, cv_pool_t *pool, json_object **out)
{
	const char *err;
	cv_json_limits_t lim;
	cv_json_limits_default(&lim);
	lim.max_depth = 256;
	cv_rc rc = cv_json_parse((const char *)v->body, v->body_len, &lim, pool, out, &err);
	if (!rc && pool && (rc = cv_json_pool_own(pool, *out)))
		json_object_put(*out);
	return rc;
}

/* Parses a stored body (in the exchange's pool). */
static json_object *stored(cv_exchange_t *ex, const cv_store_version_t *v)
{
	json_object *obj = NULL;
	return cv_fhir_parse_stored(v, ex->pool, &obj) ? NULL : obj;
}

const char *cv_fhir_claim_text(cv_exchange_t *ex, const char *type, const char *criteria)
{
	if (ex->access)
		return cv_pool_printf(ex->pool, "%s?%s#%s", type, criteria, ex->principal.id ? ex->principal.id : "");
	return cv_pool_printf(ex->pool, "%s?%s", type, criteria);
}

cv_rc cv_fhir_visible(cv_exchange_t *ex, cv_access_t *acc, cv_action act, const char *id,
		      const cv_store_version_t *v, json_object **obj, cv_verdict *out)
{
	cv_store_version_t prev;
	*out = CV_ACCESS_PERMIT;
	if (obj)
		*obj = NULL;
	if (!acc)
		return CV_OK;
	if (v->deleted) {
		/* a tombstone shows what its resource showed before it went */
		*out = CV_ACCESS_HIDDEN;
		if (v->version <= 1)
			return CV_OK;
		cv_rc rc = cv_store_read(ctx(ex)->store, v->type, id, v->version - 1, ex->pool, &prev);
		return rc == CV_E_NOTFOUND ? CV_OK : rc ? rc : cv_fhir_visible(ex, acc, CV_ACT_FHIR_READ, id, &prev, NULL, out);
	}
	json_object *o = stored(ex, v);
	if (!o)
		return CV_E_NOMEM;
	if (obj)
		*obj = o;
	return cv_access_check_stored(acc, act, v->type, v->seq, o, out, &ex->decision);
}

/* The patients of a stored version (a tombstone's: those of the version it
 * deleted); rc CV_E_NOTFOUND when there is none to say. */
static cv_rc stored_patients(cv_exchange_t *ex, const cv_store_version_t *v, const char *id, json_object *obj,
			     const char ***pats, size_t *n)
{
	cv_store_version_t prev;
	if (v->deleted) {
		if (v->version <= 1 || !id || cv_store_read(ctx(ex)->store, v->type, id, v->version - 1, ex->pool, &prev))
			return CV_E_NOTFOUND;
		return stored_patients(ex, &prev, id, NULL, pats, n);
	}
	cv_rc rc = cv_policy_patients(ctx(ex)->policy, v->type, v->seq, obj, ex->pool, pats, n);
	if (rc == CV_E_NOTFOUND && !obj && (obj = stored(ex, v)))
		rc = cv_policy_patients(ctx(ex)->policy, v->type, v->seq, obj, ex->pool, pats, n);
	return rc;
}

void cv_fhir_audit_patients_of(cv_exchange_t *ex, const cv_store_version_t *v, const char *id)
{
	const char **pats = NULL;
	size_t n = 0;
	if (v->version > 0 && stored_patients(ex, v, id, NULL, &pats, &n) == CV_OK)
		for (size_t i = 0; i < n; i++)
			cv_audit_patient(ex, pats[i]);
}

void cv_fhir_audit_refused(cv_exchange_t *ex, const char *type, const char *id, const cv_store_version_t *v,
			   json_object *obj)
{
	const char **pats = NULL;
	size_t n = 0;
	if (!type || !id || !cv_fhir_valid_id(id) || !ctx(ex) || !cv_model_is_resource(ctx(ex)->model, type))
		return;
	cv_rc rc = v && v->version > 0 ? stored_patients(ex, v, id, NULL, &pats, &n)
				       : obj ? cv_policy_patients(ctx(ex)->policy, type, 0, obj, ex->pool, &pats, &n)
					     : CV_E_NOTFOUND;
	cv_audit_asked(ex, type, id, rc ? NULL : pats, rc ? 0 : n);
	if (strcmp(type, "Patient") == 0)
		cv_audit_patient(ex, id);
}

void cv_fhir_audit_shown(cv_exchange_t *ex, const cv_store_version_t *v, const char *id, json_object *obj)
{
	const char **pats = NULL;
	size_t n = 0;
	cv_rc rc = v->seq > 0 || v->deleted ? stored_patients(ex, v, id, obj, &pats, &n)
					    : cv_policy_patients(ctx(ex)->policy, v->type, 0, obj, ex->pool, &pats, &n);
	cv_audit_resource(ex, v->type, id, v->version, rc ? NULL : pats, rc ? 0 : n);
	cv_fhir_audit_glass(ex, ex->access, rc ? NULL : pats, rc ? 0 : n);
}

void cv_fhir_audit_glass(cv_exchange_t *ex, cv_access_t *acc, const char *const *pats, size_t n)
{
	if (!cv_access_broke_glass(acc))
		return;
	cv_audit_break_glass(ex); /* a decision of the request relied on break-glass */
	for (size_t i = 0; i < n; i++)
		if (cv_access_glass_for(acc, pats[i])) /* this resource's patient, through the grant */
			cv_audit_glass_patient(ex, pats[i]);
}

int cv_fhir_valid_id(const char *id)
{
	size_t n = 0;
	for (; id[n]; n++)
		if (!isalnum((unsigned char)id[n]) && id[n] != '-' && id[n] != '.')
			return 0;
	return n >= 1 && n <= 64;
}

/* 406 unless the client accepts FHIR JSON (Accept header or _format). */
int cv_fhir_negotiate(cv_exchange_t *ex)
{
	const char *fmt = cv_exchange_param(ex, "_format");
	if (fmt) {
		if (!cv_http_format_json(fmt)) {
			cv_fhir_error(ex, 406, "not-supported",
				      "_format: only json (application/fhir+json) is supported");
			return 0;
		}
		return 1;
	}
	const char *accept = ex->header(ex, "Accept");
	if (accept && *accept && !cv_http_accepts_json(accept)) {
		cv_fhir_error(ex, 406, "not-supported",
			      "Accept: this server answers only application/fhir+json or application/json");
		return 0;
	}
	return 1;
}

static int content_type_ok(cv_exchange_t *ex)
{
	int ok = cv_http_content_type_json(ex->header(ex, "Content-Type"));
	if (!ok)
		cv_fhir_error(ex, 415, "not-supported",
			      "Content-Type must be application/fhir+json (or application/json), in UTF-8");
	return ok;
}

/* The URL's resource type is one the model knows; 404 otherwise. */
int cv_fhir_type_ok(cv_exchange_t *ex)
{
	if (!cv_model_is_resource(ctx(ex)->model, ex->args[0])) {
		cv_fhir_error(ex, 404, "not-supported",
			      "unknown resource type in the URL: see GET /fhir/metadata for the supported types");
		return 0;
	}
	return 1;
}

int cv_fhir_id_ok(cv_exchange_t *ex)
{
	if (!cv_fhir_valid_id(ex->args[1])) {
		cv_fhir_error(ex, 404, "not-found", "no resource has this id: an id is 1 to 64 characters "
						    "of A-Z, a-z, 0-9, '-' and '.'");
		return 0;
	}
	return 1;
}

int cv_fhir_parse_body(cv_exchange_t *ex, json_object **out)
{
	const char *err = NULL;
	json_object *obj = NULL;
	if (!content_type_ok(ex))
		return 0;
	if (!ex->body || ex->body_len == 0) {
		cv_fhir_error(ex, 400, "required", "the request needs a body: the resource as FHIR JSON");
		return 0;
	}
	cv_rc rc = cv_json_parse(ex->body, ex->body_len, &ctx(ex)->limits, ex->pool, &obj, &err);
	if (rc == CV_E_NOMEM) {
		cv_fhir_fail(ex, rc, NULL, NULL);
		return 0;
	}
	if (rc) {
		cv_fhir_error(ex, 400, "structure", "the body is not valid JSON: %s", err ? err : "parse error");
		return 0;
	}
	if (cv_json_pool_own(ex->pool, obj)) {
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return 0;
	}
	json_object *rt = NULL;
	if (!json_object_is_type(obj, json_type_object) ||
	    !json_object_object_get_ex(obj, "resourceType", &rt) || !json_object_is_type(rt, json_type_string)) {
		cv_fhir_error(ex, 400, "structure", "the body must be a JSON object with a resourceType");
		return 0;
	}
	*out = obj;
	return 1;
}

/* Parses and validates the body as a resource of the URL's type. */
static int body_resource(cv_exchange_t *ex, json_object **out)
{
	json_object *obj = NULL, *rt = NULL;
	if (!cv_fhir_parse_body(ex, &obj))
		return 0;
	json_object_object_get_ex(obj, "resourceType", &rt);
	if (strcmp(json_object_get_string(rt), ex->args[0]) != 0) {
		cv_fhir_error(ex, 400, "invalid", "the body's resourceType does not match the URL's resource type");
		return 0;
	}
	cv_outcome_t oo;
	cv_outcome_init(&oo, ex->pool, 100);
	cv_rc rc = cv_model_validate(ctx(ex)->model, obj, &oo);
	if (rc == CV_E_INVALID) {
		cv_fhir_outcome(ex, 422, &oo);
		return 0;
	}
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, NULL);
		return 0;
	}
	*out = obj;
	return 1;
}

/* ---- responses ---------------------------------------------------------- */

static const char *etag(cv_exchange_t *ex, int64_t version)
{
	return cv_pool_printf(ex->pool, "W/\"%lld\"", (long long)version);
}

static const char *http_date(cv_exchange_t *ex, int64_t us)
{
	char *d = cv_pool_alloc(ex->pool, 40);
	return d ? cv_time_format_http(us, d, 40) : "";
}

static void version_headers(cv_exchange_t *ex, int64_t version, int64_t updated_us)
{
	cv_exchange_add_header(ex, "ETag", etag(ex, version));
	cv_exchange_add_header(ex, "Last-Modified", http_date(ex, updated_us));
}

static int prefer_minimal(cv_exchange_t *ex)
{
	const char *p = ex->header(ex, "Prefer");
	return p && strcasestr(p, "return=minimal") != NULL;
}

static void answer_resource(cv_exchange_t *ex, unsigned status, const cv_store_version_t *v)
{
	ex->status = status;
	ex->content_type = FHIR_JSON;
	ex->no_store = 1;
	version_headers(ex, v->version, v->updated_us);
	cv_buf_reset(&ex->resp);
	if (cv_buf_append(&ex->resp, v->body, v->body_len))
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
}

/* ---- read, vread -------------------------------------------------------- */

/* Answers with version vid (0: the current one) of args[0]/args[1]. */
/* Answers with version vid (0: the current one) of args[0]/id (args[1] when id is NULL). */
static void answer_version(cv_exchange_t *ex, int64_t vid, const char *id)
{
	cv_store_version_t v;
	cv_access_t *acc;
	cv_verdict verdict = CV_ACCESS_PERMIT;
	json_object *obj = NULL;
	if (!id)
		id = ex->args[1];
	if (!cv_fhir_access(ex, &acc))
		return;
	cv_rc rc = cv_store_read(ctx(ex)->store, ex->args[0], id, vid, ex->pool, &v);
	if (rc == CV_E_GONE) /* its patient was erased: nothing to show, as if it never was */
		rc = CV_E_NOTFOUND;
	if (!rc)
		rc = cv_fhir_visible(ex, acc, vid ? CV_ACT_FHIR_VREAD : CV_ACT_FHIR_READ, id, &v, &obj, &verdict);
	if (!rc && verdict != CV_ACCESS_PERMIT) {
		cv_audit_denied(ex);
		cv_fhir_audit_refused(ex, v.type, id, &v, NULL);
	} else if (!rc) {
		cv_fhir_audit_shown(ex, &v, id, obj);
	}
	if (rc == CV_E_NOTFOUND || (!rc && verdict != CV_ACCESS_PERMIT))
		return cv_fhir_error(ex, 404, "not-found", vid ? "no such version of this resource"
							 : "no resource of this type has this id");
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, NULL);
	if (obj && cv_access_view(acc, v.type, obj)) {
		cv_buf_t *b = cv_pool_alloc(ex->pool, sizeof *b);
		if (!b)
			return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		cv_buf_init(b, 16u << 20);
		if ((rc = cv_json_write(obj, b)) || cv_pool_defer(ex->pool, (void (*)(void *))cv_buf_release, b)) {
			cv_buf_release(b);
			return cv_fhir_fail(ex, rc ? rc : CV_E_NOMEM, NULL, NULL);
		}
		v.body = (const uint8_t *)b->data;
		v.body_len = b->len;
	}
	if (v.deleted) {
		version_headers(ex, v.version, v.updated_us);
		return cv_fhir_error(ex, 410, "deleted", vid ? "this version records the resource's deletion"
							 : "the resource was deleted; its history remains");
	}
	answer_resource(ex, 200, &v);
}

void cv_fhir_read(cv_exchange_t *ex)
{
	if (cv_fhir_negotiate(ex) && cv_fhir_type_ok(ex) && cv_fhir_id_ok(ex))
		cv_fhir_is_audit(ex) ? cv_fhir_audit_read(ex) : answer_version(ex, 0, NULL);
}

void cv_fhir_vread(cv_exchange_t *ex)
{
	int64_t vid;
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex) || !cv_fhir_id_ok(ex))
		return;
	if (!cv_http_parse_version(ex->args[2], &vid))
		return cv_fhir_error(ex, 404, "not-found", "no such version: a version id is a positive integer");
	if (cv_fhir_is_audit(ex) && vid != 1)
		return cv_fhir_error(ex, 404, "not-found", "an audit record has one version, 1");
	cv_fhir_is_audit(ex) ? cv_fhir_audit_read(ex) : answer_version(ex, vid, NULL);
}

/* ---- writes ------------------------------------------------------------- */

typedef struct wctx {
	cv_store_write_t w;    /* the store write */
	cv_exchange_t *ex;     /* the exchange it answers */
	json_object *obj;      /* the resource (create/update) or NULL (delete) */
	const char *type;      /* resource type */
	const char *id;        /* logical id */
	int64_t if_match;      /* the version If-Match named, or 0 */
	int attempts;          /* writes tried (conflicts are retried) */
	int created;           /* answered 201 */
	int creating;          /* a create (POST, or a conditional update that matched nothing) */
	const char *ine;       /* If-None-Exist criteria of a conditional create, or NULL */
	cv_store_write_t claim; /* conditional create: serialises creates with the same criteria */
	cv_store_write_t group; /* the claim, the write and its audit record together */
	cv_store_write_t *members[3];
} wctx_t;

static void write_done(cv_store_write_t *w)
{
	wctx_t *c = w->arg;
	c->ex->resume(c->ex);
}

cv_rc cv_fhir_stamp(json_object *obj, const char *id, int64_t version, int64_t us)
{
	char vbuf[24], tbuf[40];
	json_object *meta = NULL;
	snprintf(vbuf, sizeof vbuf, "%lld", (long long)version);
	cv_time_format_instant(us, tbuf, sizeof tbuf);
	if (json_object_object_add(obj, "id", json_object_new_string(id)))
		return CV_E_NOMEM;
	if (!json_object_object_get_ex(obj, "meta", &meta) || !json_object_is_type(meta, json_type_object)) {
		meta = json_object_new_object();
		if (!meta || json_object_object_add(obj, "meta", meta))
			return CV_E_NOMEM;
	}
	if (json_object_object_add(meta, "versionId", json_object_new_string(vbuf)) ||
	    json_object_object_add(meta, "lastUpdated", json_object_new_string(tbuf)))
		return CV_E_NOMEM;
	return CV_OK;
}

static void finish_write(cv_exchange_t *ex);

/* The access checks of a write against the current version (cur.version 0:
 * none) and the new content; answers 404 or 403 itself and returns 0 when
 * the write may not go on. People cannot update-as-create: a PUT to an id
 * they cannot see answers 404 whether or not it exists. */
static int write_permitted(wctx_t *c, const cv_store_version_t *cur)
{
	cv_exchange_t *ex = c->ex;
	cv_access_t *acc;
	cv_verdict verdict = CV_ACCESS_PERMIT;
	json_object *before = NULL;
	if (!cv_fhir_access(ex, &acc))
		return 0;
	bool exists = cur->version && !cur->deleted;
	cv_rc rc = CV_OK;
	if (!acc && exists && cv_access_immutable(c->type)) {
		cv_fhir_error(ex, 403, "forbidden", "the audit trail is never changed");
		return 0;
	}
	if (acc && exists && !(before = stored(ex, cur)))
		rc = CV_E_NOMEM;
	if (!rc && acc && !exists && !c->creating && (c->w.deleted || strcmp(ex->method, "PUT") == 0))
		verdict = CV_ACCESS_HIDDEN;
	else if (!rc)
		rc = cv_access_write(acc, c->w.deleted ? CV_ACT_FHIR_DELETE : exists ? CV_ACT_FHIR_UPDATE : CV_ACT_FHIR_CREATE,
				     c->type, before, c->w.deleted ? NULL : c->obj, &verdict, &ex->decision);
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, NULL);
		return 0;
	}
	if (verdict == CV_ACCESS_HIDDEN || verdict == CV_ACCESS_FORBIDDEN) {
		cv_audit_denied(ex);
		cv_fhir_audit_refused(ex, c->type, c->id, exists ? cur : NULL, exists ? NULL : c->obj);
	}
	if (verdict == CV_ACCESS_HIDDEN) {
		cv_fhir_error(ex, 404, "not-found", "no resource of this type has this id");
		return 0;
	}
	if (verdict == CV_ACCESS_FORBIDDEN) {
		cv_fhir_error(ex, 403, "forbidden", "not permitted");
		return 0;
	}
	return 1;
}

/* Notes the written resource and its patients (the new content's; a
 * delete's, the current version's) for the write's audit record. */
static void audit_write(wctx_t *c, const cv_store_version_t *cur)
{
	if (c->w.deleted)
		return cv_fhir_audit_shown(c->ex, cur, c->id, NULL);
	cv_store_version_t next = { .type = c->type, .version = cur->version + 1 };
	cv_fhir_audit_shown(c->ex, &next, c->id, c->obj);
	if (cur->version > 0 && !cur->deleted) /* an update that moves it: the patients it leaves too */
		cv_fhir_audit_patients_of(c->ex, cur, c->id);
}

/* The patient whose data key seals the write (store.h): the first patient of
 * the new content's compartments, or of the version a delete removes; NULL
 * (the shared key) when it is in none. */
static const char *write_owner(wctx_t *c, const cv_store_version_t *cur)
{
	const char **pats = NULL;
	size_t n = 0;
	cv_exchange_t *ex = c->ex;
	cv_rc rc = c->w.deleted ? stored_patients(ex, cur, c->id, NULL, &pats, &n)
				: cv_policy_patients(ctx(ex)->policy, c->type, 0, c->obj, ex->pool, &pats, &n);
	return !rc && n ? pats[0] : NULL;
}

/* Submits the write as one group with its audit record (and the claim of a
 * conditional create): the record commits with the write or not at all. */
static cv_rc submit_group(wctx_t *c)
{
	cv_exchange_t *ex = c->ex;
	cv_store_write_t *rec = NULL;
	size_t n = 0;
	cv_rc rc = cv_audit_attach(ex, c->w.deleted ? 204 : c->created ? 201 : 200, &rec);
	if (rc)
		return rc;
	if (c->ine) {
		char name[64];
		cv_store_claim_name(ctx(ex)->store, cv_fhir_claim_text(ex, c->type, c->ine), name);
		c->claim = (cv_store_write_t){ .op = CV_STORE_CLAIM, .name = cv_pool_strdup(ex->pool, name),
					       .updated_us = cv_time_now_us() };
		if (!c->claim.name)
			return CV_E_NOMEM;
		c->members[n++] = &c->claim;
	}
	c->members[n++] = &c->w;
	c->members[n++] = rec;
	c->group = (cv_store_write_t){ .op = CV_STORE_GROUP, .members = c->members, .nmembers = n,
				       .done = write_done, .arg = c };
	ex->cont = finish_write;
	ex->cont_arg = c;
	ex->pending = 1;
	return cv_store_submit(ctx(ex)->store, &c->group);
}

/* Reads the current version, checks If-Match, stamps, serialises into
 * ex->resp and submits. Answers the exchange itself on failure. */
static void submit_write(wctx_t *c)
{
	cv_exchange_t *ex = c->ex;
	cv_store_version_t cur = { .version = 0 };
	cv_rc rc = CV_OK;
	if (c->attempts > 0 || c->w.deleted || c->if_match || strcmp(ex->method, "PUT") == 0)
		rc = cv_store_read(ctx(ex)->store, c->type, c->id, 0, ex->pool, &cur);
	if (rc == CV_E_NOTFOUND)
		rc = CV_OK;
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, NULL);
	if (!write_permitted(c, &cur))
		return;
	if (c->if_match && c->if_match != cur.version)
		return cv_fhir_error(ex, 412, "conflict", "If-Match names version %lld but the current version "
				     "is %lld: read the resource again and reapply the change",
				     (long long)c->if_match, (long long)cur.version);
	if (c->w.deleted && (cur.version == 0 || cur.deleted)) {
		ex->status = cur.version ? 204 : 404;
		if (!cur.version)
			cv_fhir_error(ex, 404, "not-found", "no resource of this type has this id");
		return;
	}
	c->created = cur.version == 0 || cur.deleted;
	c->w.expect_version = cur.version;
	c->w.updated_us = cv_time_now_us() / 1000 * 1000;
	cv_buf_reset(&ex->resp);
	if (c->obj) {
		rc = cv_fhir_stamp(c->obj, c->id, cur.version + 1, c->w.updated_us);
		if (!rc)
			rc = cv_json_write(c->obj, &ex->resp);
		if (!rc && c->attempts == 0)
			rc = cv_fhir_index(ctx(ex), c->obj, ex->pool, &c->w.index, &c->w.nindex);
	} else {
		rc = cv_buf_printf(&ex->resp, "{\"resourceType\":\"%s\",\"id\":\"%s\"}", c->type, c->id);
	}
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, NULL);
	c->w.body = (const uint8_t *)ex->resp.data;
	c->w.body_len = ex->resp.len;
	if (c->attempts == 0)
		audit_write(c, &cur);
	c->w.owner = write_owner(c, &cur);
	c->attempts++;
	rc = submit_group(c);
	if (rc) {
		ex->pending = 0;
		cv_fhir_fail(ex, rc, NULL, "the store is not accepting writes; retry later");
	}
}

static int conditional_match(cv_exchange_t *ex, const char *query, const cv_param_t *params, size_t np,
			     const char **id);
static void answer_version(cv_exchange_t *ex, int64_t vid, const char *id);

static void finish_write(cv_exchange_t *ex)
{
	wctx_t *c = ex->cont_arg;
	ex->pending = 0;
	cv_rc rc = c->w.result;
	if (c->ine && c->claim.result == CV_E_CONFLICT) {
		/* another conditional create with the same criteria ran at the same time */
		const char *found = NULL;
		int n = conditional_match(ex, c->ine, NULL, 0, &found);
		if (n == 1)
			return answer_version(ex, 0, found);
		if (n == 0)
			cv_fhir_error(ex, 409, "conflict", "another request is creating a resource with the same "
				      "If-None-Exist; retry to find it");
		return;
	}
	if (rc == CV_E_CONFLICT && !c->if_match && c->attempts < MAX_WRITE_ATTEMPTS)
		return submit_write(c);
	if (rc == CV_E_CONFLICT && c->if_match)
		return cv_fhir_error(ex, 412, "conflict", "the resource changed before this write: read it again");
	if (rc == CV_E_CONFLICT)
		return cv_fhir_error(ex, 409, "conflict", "too many concurrent writes to this resource; retry");
	if (rc) {
		cv_log(CV_LOG_ERROR, "fhir.write_failed",
		       (cv_log_field_t[]){ CV_LS("request_id", ex->request_id), CV_LS("rc", cv_rc_str(rc)) }, 2);
		return cv_fhir_fail(ex, rc, NULL, "the write could not be made durable; it was not stored");
	}
	int64_t version = c->w.expect_version + 1;
	version_headers(ex, version, c->w.updated_us);
	ex->no_store = 1;
	if (c->w.deleted) {
		ex->status = 204;
		cv_buf_reset(&ex->resp);
		return;
	}
	ex->status = c->created ? 201 : 200;
	if (c->created)
		cv_exchange_add_header(ex, "Location", cv_pool_printf(ex->pool, "%s/%s/%s/_history/%lld",
			ex->base_url, c->type, c->id, (long long)version));
	ex->content_type = FHIR_JSON;
	if (prefer_minimal(ex))
		cv_buf_reset(&ex->resp);
}

static wctx_t *new_write(cv_exchange_t *ex, json_object *obj, const char *id)
{
	wctx_t *c = cv_pool_alloc(ex->pool, sizeof *c);
	if (!c) {
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return NULL;
	}
	c->ex = ex;
	c->obj = obj;
	c->type = ex->args[0];
	c->id = id;
	c->w.op = CV_STORE_PUT_VERSION;
	c->w.type = c->type;
	c->w.id = id;
	c->w.done = write_done;
	c->w.arg = c;
	c->if_match = cv_http_parse_etag(ex->header(ex, "If-Match"));
	if (c->if_match < 0) {
		cv_fhir_error(ex, 400, "invalid", "If-Match must be a version ETag such as W/\"3\"");
		return NULL;
	}
	return c;
}

/* Runs a conditional request's search. Returns the number of matches (0, 1,
 * 2 for several) with the one match's id in *id, or -1 after answering. */
static int conditional_match(cv_exchange_t *ex, const char *query, const cv_param_t *params, size_t np,
			     const char **id)
{
	const char *ids[2];
	size_t n = 0;
	cv_outcome_t oo;
	cv_outcome_init(&oo, ex->pool, 16);
	cv_access_t *acc;
	if (!cv_fhir_access(ex, &acc))
		return -1;
	cv_rc rc = query ? cv_fhir_search_ids(ctx(ex), acc, ex->pool, ex->args[0], query, ex->base_url, ids, 1, &n, &oo)
			 : cv_fhir_search_ids_params(ctx(ex), acc, ex->pool, ex->args[0], params, np, ex->base_url, ids,
						     1, &n, &oo);
	if (rc == CV_E_INVALID) {
		cv_fhir_outcome(ex, 400, &oo);
		return -1;
	}
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, "the conditional search could not run; retry later");
		return -1;
	}
	if (n > 1) {
		cv_fhir_error(ex, 412, "multiple-matches", "the condition matches more than one resource: make it "
			      "more specific");
		return -1;
	}
	if (n == 1)
		*id = ids[0];
	return (int)n;
}

/* 405 for PUT / DELETE on a type without criteria. */
static void no_criteria(cv_exchange_t *ex, const char *what)
{
	cv_exchange_add_header(ex, "Allow", "GET, POST, PUT, DELETE");
	cv_fhir_error(ex, 405, "not-supported", "%s", what);
}

/* The request's query parameters that are search criteria (not _format). */
static size_t criteria(cv_exchange_t *ex, cv_param_t *out)
{
	size_t n = 0;
	for (size_t i = 0; i < ex->nparams; i++)
		if (strcmp(ex->params[i].name, "_format") != 0 && strcmp(ex->params[i].name, "_pretty") != 0)
			out[n++] = ex->params[i];
	return n;
}

void cv_fhir_create(cv_exchange_t *ex)
{
	json_object *obj;
	char uuid[37];
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex))
		return;
	if (cv_fhir_is_audit(ex))
		return cv_fhir_audit_readonly(ex);
	if (!body_resource(ex, &obj))
		return;
	const char *ine = ex->header(ex, "If-None-Exist"), *found = NULL;
	if (ine) {
		const char *q = strchr(ine, '?');
		int n = conditional_match(ex, q ? q + 1 : ine, NULL, 0, &found);
		if (n < 0)
			return;
		if (n == 1) { /* it exists: answer with it, create nothing */
			answer_version(ex, 0, found);
			return;
		}
	}
	const char *criteria_text = ine ? (strchr(ine, '?') ? strchr(ine, '?') + 1 : ine) : NULL;
	cv_crypto_uuid(uuid);
	wctx_t *c = new_write(ex, obj, cv_pool_strdup(ex->pool, uuid));
	if (!c)
		return;
	if (c->if_match)
		return cv_fhir_error(ex, 400, "invalid", "If-Match does not apply to create");
	c->ine = criteria_text;
	c->creating = 1;
	submit_write(c);
}

void cv_fhir_update(cv_exchange_t *ex)
{
	json_object *obj, *id = NULL;
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex))
		return;
	if (cv_fhir_is_audit(ex))
		return cv_fhir_audit_readonly(ex);
	if (!cv_fhir_valid_id(ex->args[1]))
		return cv_fhir_error(ex, 400, "invalid", "the id in the URL is not a valid FHIR id "
					"(1 to 64 characters of A-Z, a-z, 0-9, '-' and '.')");
	if (!body_resource(ex, &obj))
		return;
	if (!json_object_object_get_ex(obj, "id", &id) || !json_object_is_type(id, json_type_string))
		return cv_fhir_error(ex, 400, "required", "an update needs the resource's id in the body, "
					"equal to the id in the URL");
	if (strcmp(json_object_get_string(id), ex->args[1]) != 0)
		return cv_fhir_error(ex, 400, "invalid", "the id in the body does not match the id in the URL");
	wctx_t *c = new_write(ex, obj, ex->args[1]);
	if (c)
		submit_write(c);
}

void cv_fhir_update_conditional(cv_exchange_t *ex)
{
	json_object *obj, *bid = NULL;
	cv_param_t params[CV_EX_MAX_PARAMS];
	const char *id = NULL;
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex))
		return;
	if (cv_fhir_is_audit(ex))
		return cv_fhir_audit_readonly(ex);
	size_t np = criteria(ex, params);
	if (!np)
		return no_criteria(ex, "PUT takes /fhir/Type/id, or /fhir/Type?criteria for a "
				     "conditional update");
	if (!body_resource(ex, &obj))
		return;
	int n = conditional_match(ex, NULL, params, np, &id);
	if (n < 0)
		return;
	const char *body_id = json_object_object_get_ex(obj, "id", &bid) && json_object_is_type(bid, json_type_string)
				      ? json_object_get_string(bid) : NULL;
	if (n == 1 && body_id && strcmp(body_id, id) != 0)
		return cv_fhir_error(ex, 400, "invalid", "the id in the body differs from the resource the condition "
				     "matched");
	cv_access_t *acc;
	if (!cv_fhir_access(ex, &acc))
		return;
	if (n == 0) {
		/* a person's conditional update creates at a new id: the body's could be one they cannot see */
		char uuid[37];
		cv_crypto_uuid(uuid);
		id = body_id && cv_fhir_valid_id(body_id) && !acc ? body_id : cv_pool_strdup(ex->pool, uuid);
		if (acc && body_id)
			json_object_object_del(obj, "id");
	}
	wctx_t *c = new_write(ex, obj, id);
	if (c) {
		c->creating = n == 0;
		submit_write(c);
	}
}

void cv_fhir_delete_conditional(cv_exchange_t *ex)
{
	cv_param_t params[CV_EX_MAX_PARAMS];
	const char *id = NULL;
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex))
		return;
	if (cv_fhir_is_audit(ex))
		return cv_fhir_audit_readonly(ex);
	size_t np = criteria(ex, params);
	if (!np)
		return no_criteria(ex, "DELETE takes /fhir/Type/id, or /fhir/Type?criteria for "
				     "a conditional delete");
	int n = conditional_match(ex, NULL, params, np, &id);
	if (n < 0)
		return;
	if (n == 0) {
		ex->status = 204; /* nothing matches: nothing to delete */
		return;
	}
	wctx_t *c = new_write(ex, NULL, id);
	if (!c)
		return;
	c->w.deleted = 1;
	submit_write(c);
}

void cv_fhir_delete(cv_exchange_t *ex)
{
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex) || !cv_fhir_id_ok(ex))
		return;
	if (cv_fhir_is_audit(ex))
		return cv_fhir_audit_readonly(ex);
	wctx_t *c = new_write(ex, NULL, ex->args[1]);
	if (!c)
		return;
	c->w.deleted = 1;
	submit_write(c);
}
