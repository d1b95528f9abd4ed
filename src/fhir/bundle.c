/*
 * bundle.c - transactions and batches: POST /fhir with a Bundle.
 *
 * A transaction is all or nothing: every write goes into one store group,
 * committed in one database transaction, or none is. Entries are processed
 * in the spec's order (DELETE, POST, PUT, GET) whatever their order in the
 * Bundle; ids are assigned first, then every reference to an entry's fullUrl
 * (urn:uuid:..., or a conditional reference "Patient?identifier=...") is
 * rewritten to the resource's Type/id before anything is validated, indexed
 * or sealed. Conditional create (ifNoneExist), update (PUT Type?query) and
 * delete (DELETE Type?query) are decided by a search. GETs run after the
 * commit and see its result. A batch runs the same steps, but each entry
 * stands alone: its failure is its own response entry.
 * The response Bundle lists every entry in request order with its status,
 * location, etag and last-modified time. Messages name entries by index and
 * never echo content.
 */
#define _GNU_SOURCE
#include "fhir/fhir.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/time.h"
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "fhir/negotiate.h"
#include "fhir/search.h"

#define BUNDLE_ENTRIES_MAX 20000
#define FHIR_JSON "application/fhir+json; charset=utf-8"

typedef enum { T_DELETE, T_POST, T_PUT, T_GET, T_BAD } tmethod;

typedef struct tentry {
	size_t at;                  /* index in the Bundle */
	tmethod method;
	json_object *res;           /* POST, PUT: the resource */
	const char *full_url;       /* the entry's fullUrl, or NULL */
	const char *type;           /* target type */
	const char *id;             /* target id (after conditional resolution) */
	const char *cond;           /* PUT/DELETE Type?query: the query */
	const char *if_none_exist;  /* POST: the ifNoneExist query */
	int64_t if_match;           /* request.ifMatch version, or 0 */
	const char *get;            /* GET: the URL after the base */
	/* results */
	unsigned status;            /* HTTP status of the entry */
	bool write;                 /* a store write belongs to it */
	int64_t version;            /* the version it wrote (or found) */
	int64_t cur;                /* the current version before it */
	cv_store_version_t curv;    /* that version, as read (cur > 0) */
	cv_store_write_t w;
	bool claimed;               /* a conditional create: `claim` goes with the write */
	bool creating;              /* PUT: a conditional update that matched nothing creates */
	cv_store_write_t claim;     /* serialises creates with the same ifNoneExist */
	cv_store_write_t group;     /* batch: the claim, the write and its audit record together */
	cv_store_write_t *pair[3];
	cv_buf_t body;              /* the stamped resource */
	cv_outcome_t oo;            /* why it failed */
	cv_buf_t got;               /* GET: the resource or searchset found */
} tentry_t;

typedef struct refmap {
	const char *from;           /* fullUrl or conditional reference */
	const char *to;             /* "Type/id" */
} refmap_t;

typedef struct txn {
	cv_exchange_t *ex;
	cv_fhir_t *f;
	bool batch;
	size_t n;
	tentry_t *e;
	size_t nmap, capmap;
	refmap_t *map;
	int64_t now;
	cv_store_write_t group;
	cv_store_write_t **members;
	size_t nmembers;
	size_t waiting;             /* batch: writes not yet done */
	tentry_t *failed;           /* transaction: the entry that failed */
	cv_store_write_t *extra;    /* committed with a transaction's writes (import progress), or NULL */
	cv_access_t *acc;           /* what the caller may see and change (NULL: everything) */
} txn_t;

static cv_fhir_t *ctx(cv_exchange_t *ex)
{
	return ex->app;
}

static const char *status_text(unsigned s)
{
	switch (s) {
	case 200: return "200 OK";
	case 201: return "201 Created";
	case 204: return "204 No Content";
	case 400: return "400 Bad Request";
	case 401: return "401 Unauthorized";
	case 403: return "403 Forbidden";
	case 404: return "404 Not Found";
	case 405: return "405 Method Not Allowed";
	case 409: return "409 Conflict";
	case 410: return "410 Gone";
	case 412: return "412 Precondition Failed";
	case 422: return "422 Unprocessable Entity";
	case 503: return "503 Service Unavailable";
	default: return "500 Internal Server Error";
	}
}

/* Marks e failed with status and a message (which must not hold PHI). */
static int fail(tentry_t *e, unsigned status, const char *code, const char *msg)
{
	e->status = status;
	cv_outcome_add(&e->oo, CV_SEV_ERROR, code, NULL, "Bundle.entry[%zu]: %s", e->at, msg);
	return 0;
}

static const char *str_at(json_object *o, const char *k)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* ---- reading the Bundle ------------------------------------------------- */

/* The URL of a request relative to the base: "Patient/1", "Patient?x=y". */
static const char *relative(const cv_exchange_t *ex, const char *url)
{
	size_t bl = strlen(ex->base_url);
	if (strncmp(url, ex->base_url, bl) == 0 && url[bl] == '/')
		return url + bl + 1;
	return url[0] == '/' ? url + 1 : url;
}

/* Splits "Type", "Type/id" or "Type?query" into e. */
static int target(txn_t *t, tentry_t *e, const char *url, int need_id)
{
	const char *q = strchr(url, '?'), *slash = strchr(url, '/');
	size_t tl = q ? (size_t)(q - url) : slash ? (size_t)(slash - url) : strlen(url);
	e->type = cv_pool_strndup(t->ex->pool, url, tl);
	if (!e->type || !cv_model_is_resource(t->f->model, e->type))
		return fail(e, 400, "not-supported", "request.url names no known resource type");
	if (q) {
		if (slash && slash < q)
			return fail(e, 400, "invalid", "request.url is Type/id or Type?query, not both");
		e->cond = q + 1;
		return 1;
	}
	if (slash) {
		e->id = slash + 1;
		if (!cv_fhir_valid_id(e->id))
			return fail(e, 400, "invalid", "request.url has an invalid id");
	} else if (need_id) {
		return fail(e, 400, "invalid", "request.url needs Type/id or Type?query");
	}
	return 1;
}

static int read_entry(txn_t *t, json_object *entry, tentry_t *e)
{
	json_object *req = NULL;
	cv_outcome_init(&e->oo, t->ex->pool, 8);
	e->status = 0;
	json_object_object_get_ex(entry, "request", &req);
	json_object_object_get_ex(entry, "resource", &e->res);
	e->full_url = str_at(entry, "fullUrl");
	const char *method = str_at(req, "method"), *url = str_at(req, "url");
	if (!method || !url)
		return fail(e, 400, "required", "a transaction or batch entry needs request.method and request.url");
	url = relative(t->ex, url);
	e->method = strcmp(method, "DELETE") == 0 ? T_DELETE : strcmp(method, "POST") == 0 ? T_POST
		  : strcmp(method, "PUT") == 0 ? T_PUT : strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0
		  ? T_GET : T_BAD;
	if (e->method == T_BAD)
		return fail(e, 405, "not-supported", "request.method must be GET, POST, PUT or DELETE (PATCH is "
						     "not supported)");
	const char *if_match = str_at(req, "ifMatch");
	if (if_match && (e->if_match = cv_http_parse_etag(if_match)) <= 0)
		return fail(e, 400, "invalid", "request.ifMatch must be a version ETag such as W/\"3\"");
	e->if_none_exist = str_at(req, "ifNoneExist");
	if (e->method == T_GET) {
		e->get = url;
		return 1;
	}
	if (!target(t, e, url, e->method != T_POST))
		return 0;
	if (e->method == T_POST && (e->id || e->cond))
		return fail(e, 400, "invalid", "a POST entry's request.url is the resource type alone");
	if (e->method == T_DELETE)
		return 1;
	if (!e->res || !json_object_is_type(e->res, json_type_object))
		return fail(e, 400, "required", "a POST or PUT entry needs a resource");
	const char *rt = str_at(e->res, "resourceType");
	if (!rt || strcmp(rt, e->type) != 0)
		return fail(e, 400, "invalid", "the resource's type differs from request.url");
	const char *body_id = str_at(e->res, "id");
	if (e->method == T_PUT && e->id && body_id && strcmp(body_id, e->id) != 0)
		return fail(e, 400, "invalid", "the resource's id differs from the id in request.url");
	return 1;
}

/* ---- resolving ---------------------------------------------------------- */

static cv_rc map_add(txn_t *t, const char *from, const char *type, const char *id)
{
	if (!from)
		return CV_OK;
	if (t->nmap == t->capmap) {
		size_t cap = t->capmap ? t->capmap * 2 : 64;
		refmap_t *m = cv_pool_alloc(t->ex->pool, cap * sizeof *m);
		if (!m)
			return CV_E_NOMEM;
		if (t->nmap)
			memcpy(m, t->map, t->nmap * sizeof *m);
		t->map = m;
		t->capmap = cap;
	}
	const char *to = cv_pool_printf(t->ex->pool, "%s/%s", type, id);
	if (!to)
		return CV_E_NOMEM;
	t->map[t->nmap++] = (refmap_t){ .from = from, .to = to };
	return CV_OK;
}

static const char *map_find(const txn_t *t, const char *from)
{
	for (size_t i = 0; i < t->nmap; i++)
		if (strcmp(t->map[i].from, from) == 0)
			return t->map[i].to;
	return NULL;
}

/* Runs a conditional search; *id gets the one match. Returns the number of
 * matches (0, 1, 2 = several) or -1 after failing e. */
static int conditional(txn_t *t, tentry_t *e, const char *query, const char **id)
{
	const char *ids[2];
	size_t n = 0;
	cv_rc rc = cv_fhir_search_ids(t->f, t->acc, t->ex->pool, e->type, query, t->ex->base_url, ids, 1, &n, &e->oo);
	if (rc == CV_E_INVALID)
		return fail(e, 400, "invalid", "the conditional search is not valid"), -1;
	if (rc)
		return fail(e, cv_fhir_status(rc), "exception", "the conditional search could not run"), -1;
	if (n == 1)
		*id = ids[0];
	return n > 1 ? 2 : (int)n;
}

/* The current version of type/id (0 if none or deleted). */
static int current(txn_t *t, tentry_t *e)
{
	cv_store_version_t v;
	cv_rc rc = cv_store_read(t->f->store, e->type, e->id, 0, t->ex->pool, &v);
	if (rc == CV_E_NOTFOUND) {
		e->cur = 0;
		return 1;
	}
	if (rc == CV_E_GONE)
		return fail(e, 410, "deleted", CV_FHIR_ERASED_TEXT);
	if (rc)
		return fail(e, cv_fhir_status(rc), "exception", "the store could not be read");
	e->cur = v.deleted ? -v.version : v.version;
	e->curv = v;
	return 1;
}

static const char *new_id(txn_t *t)
{
	char uuid[37];
	cv_crypto_uuid(uuid);
	return cv_pool_strdup(t->ex->pool, uuid);
}

static int resolve_delete(txn_t *t, tentry_t *e)
{
	if (e->cond) {
		int n = conditional(t, e, e->cond, &e->id);
		if (n < 0)
			return 0;
		if (n > 1)
			return fail(e, 412, "multiple-matches", "the conditional delete matches more than one resource");
		if (n == 0) {
			e->status = 204;
			return 1;
		}
	}
	if (!current(t, e))
		return 0;
	if (e->if_match && e->if_match != e->cur)
		return fail(e, 412, "conflict", "request.ifMatch does not name the current version");
	if (e->cur <= 0) {
		e->status = 204; /* deleting what is not there is done already */
		return 1;
	}
	e->write = true;
	e->status = 204;
	return 1;
}

static int resolve_post(txn_t *t, tentry_t *e)
{
	if (e->if_none_exist) {
		const char *id = NULL;
		int n = conditional(t, e, e->if_none_exist, &id);
		if (n < 0)
			return 0;
		if (n > 1)
			return fail(e, 412, "multiple-matches", "ifNoneExist matches more than one resource");
		if (n == 1) {
			e->id = id;
			e->status = 200;
			if (!current(t, e))
				return 0;
			e->version = e->cur;
			return map_add(t, e->full_url, e->type, e->id) == CV_OK;
		}
	}
	e->id = new_id(t);
	e->cur = 0;
	e->write = true;
	e->status = 201;
	if (e->if_none_exist) {
		char name[64];
		const char *text = cv_fhir_claim_text(t->ex, e->type, e->if_none_exist);
		if (!text)
			return fail(e, 500, "exception", "out of memory");
		cv_store_claim_name(t->f->store, text, name);
		e->claimed = true;
		e->claim = (cv_store_write_t){ .op = CV_STORE_CLAIM, .name = cv_pool_strdup(t->ex->pool, name),
					       .updated_us = cv_time_now_us() };
		if (!e->claim.name)
			return fail(e, 500, "exception", "out of memory");
	}
	return e->id && map_add(t, e->full_url, e->type, e->id) == CV_OK;
}

static int resolve_put(txn_t *t, tentry_t *e)
{
	if (e->cond) {
		const char *id = NULL, *body_id = str_at(e->res, "id");
		int n = conditional(t, e, e->cond, &id);
		if (n < 0)
			return 0;
		if (n > 1)
			return fail(e, 412, "multiple-matches", "the conditional update matches more than one resource");
		if (n == 1 && body_id && strcmp(body_id, id) != 0)
			return fail(e, 400, "invalid", "the resource's id differs from the resource the condition found");
		/* a person's conditional update creates at a new id: the body's could be one they cannot see */
		e->id = n == 1 ? id : body_id && cv_fhir_valid_id(body_id) && !t->acc ? body_id : new_id(t);
		e->creating = n == 0;
		if (n == 0 && t->acc && body_id)
			json_object_object_del(e->res, "id");
	}
	if (!e->id || !current(t, e))
		return 0;
	if (e->if_match && e->if_match != e->cur)
		return fail(e, 412, "conflict", "request.ifMatch does not name the current version");
	e->write = true;
	e->status = e->cur > 0 ? 200 : 201;
	return map_add(t, e->full_url, e->type, e->id) == CV_OK;
}

/* Two entries may not write the same resource. */
static int unique_targets(txn_t *t)
{
	for (size_t i = 0; i < t->n; i++) {
		tentry_t *a = &t->e[i];
		if (!a->write)
			continue;
		for (size_t j = i + 1; j < t->n; j++) {
			tentry_t *b = &t->e[j];
			if (b->write && strcmp(a->type, b->type) == 0 && strcmp(a->id, b->id) == 0)
				return fail(b, 400, "invalid", "two entries change the same resource");
		}
	}
	return 1;
}

/* ---- references ---------------------------------------------------------- */

/* A conditional reference "Type?query": resolved by search to one resource. */
static const char *conditional_ref(txn_t *t, tentry_t *e, const char *ref)
{
	const char *q = strchr(ref, '?');
	const char *mapped = map_find(t, ref);
	if (mapped)
		return mapped;
	tentry_t probe = { .at = e->at, .oo = e->oo };
	probe.type = cv_pool_strndup(t->ex->pool, ref, (size_t)(q - ref));
	if (!probe.type || !cv_model_is_resource(t->f->model, probe.type)) {
		fail(e, 400, "invalid", "a conditional reference names no known resource type");
		return NULL;
	}
	const char *id = NULL;
	int n = conditional(t, &probe, q + 1, &id);
	e->oo = probe.oo;
	if (n != 1) {
		if (n >= 0)
			fail(e, 412, n ? "multiple-matches" : "not-found",
			     n ? "a conditional reference matches more than one resource"
			       : "a conditional reference matches no resource");
		else
			e->status = probe.status;
		return NULL;
	}
	if (map_add(t, ref, probe.type, id))
		return NULL;
	return map_find(t, ref);
}

/* Rewrites every "reference" in o that names an entry's fullUrl or is conditional. */
static int rewrite(txn_t *t, tentry_t *e, json_object *o, int depth)
{
	if (depth > 100)
		return 1;
	if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(o); i++)
			if (!rewrite(t, e, json_object_array_get_idx(o, i), depth + 1))
				return 0;
		return 1;
	}
	if (!json_object_is_type(o, json_type_object))
		return 1;
	json_object_object_foreach(o, key, val)
	{
		if (strcmp(key, "reference") == 0 && json_object_is_type(val, json_type_string)) {
			const char *ref = json_object_get_string(val), *to = map_find(t, ref);
			if (!to && strncmp(ref, "urn:uuid:", 9) == 0)
				return fail(e, 400, "not-found", "a urn:uuid reference names no entry of the Bundle");
			if (!to && strchr(ref, '?') && !strchr(ref, '/') && !(to = conditional_ref(t, e, ref)))
				return 0;
			if (to && json_object_set_string(val, to) != 1)
				return fail(e, 500, "exception", "out of memory");
		} else if (!rewrite(t, e, val, depth + 1)) {
			return 0;
		}
	}
	return 1;
}

/* The access checks of a write entry (after its references are resolved):
 * 1 go on; 0 refused (the entry failed); -1 a delete of what the caller
 * cannot see, answered as a delete of nothing (204, no write). */
static int permitted(txn_t *t, tentry_t *e)
{
	if (e->method != T_DELETE && !rewrite(t, e, e->res, 0))
		return 0;
	if (!t->acc)
		return cv_access_immutable(e->type) && (e->method == T_DELETE || e->cur > 0)
			       ? fail(e, 403, "forbidden", "the audit trail is never changed") : 1;
	json_object *before = NULL; /* the version current() read */
	cv_verdict verdict = CV_ACCESS_HIDDEN;
	cv_rc rc = e->cur > 0 ? cv_fhir_parse_stored(&e->curv, t->ex->pool, &before) : CV_OK;
	if (rc)
		return fail(e, cv_fhir_status(rc), "exception", "the current version could not be read");
	if (before || e->method == T_POST || e->creating)
		rc = cv_access_write(t->acc, e->method == T_DELETE ? CV_ACT_FHIR_DELETE : before ? CV_ACT_FHIR_UPDATE
				     : CV_ACT_FHIR_CREATE, e->type, before, e->method == T_DELETE ? NULL : e->res,
				     &verdict, &t->ex->decision);
	if (rc)
		return fail(e, cv_fhir_status(rc), "exception", "the access rules could not be read");
	if (verdict != CV_ACCESS_PERMIT)
		cv_audit_denied(t->ex);
	if (verdict == CV_ACCESS_HIDDEN && e->method == T_DELETE) {
		e->write = false;
		e->status = 204;
		return -1;
	}
	if (verdict == CV_ACCESS_HIDDEN)
		return fail(e, 404, "not-found", "no resource of this type has this id");
	if (verdict == CV_ACCESS_FORBIDDEN)
		return fail(e, 403, "forbidden", "not permitted");
	return 1;
}

/* The route-level rule for an entry: may the caller ever do this on this type? */
static int entry_allowed(txn_t *t, tentry_t *e, const char *type, const char *id)
{
	cv_action act = e->method == T_DELETE ? CV_ACT_FHIR_DELETE : e->method == T_POST ? CV_ACT_FHIR_CREATE
			: e->method == T_PUT ? CV_ACT_FHIR_UPDATE : id ? CV_ACT_FHIR_READ : CV_ACT_FHIR_SEARCH;
	if (cv_policy_decide(t->f->policy, &t->ex->principal, act, type, id, NULL) != CV_OK)
		return fail(e, 403, "forbidden", "not permitted");
	return 1;
}

/* Stamps, validates and indexes the resource of a POST/PUT entry. */
static int prepare(txn_t *t, tentry_t *e)
{
	int allowed = permitted(t, e);
	if (allowed <= 0)
		return allowed == 0 ? 0 : 1;
	cv_buf_init(&e->body, t->f->cfg->max_body + 4096);
	e->version = e->cur > 0 ? e->cur + 1 : (e->cur < 0 ? -e->cur + 1 : 1);
	e->w = (cv_store_write_t){ .op = CV_STORE_PUT_VERSION, .type = e->type, .id = e->id,
				   .expect_version = e->cur < 0 ? -e->cur : e->cur, .updated_us = t->now };
	if (e->method == T_DELETE) {
		e->w.deleted = true;
		cv_buf_printf(&e->body, "{\"resourceType\":\"%s\",\"id\":\"%s\"}", e->type, e->id);
	} else {
		cv_outcome_t oo;
		cv_outcome_init(&oo, t->ex->pool, 50);
		if (cv_fhir_stamp(e->res, e->id, e->version, t->now))
			return fail(e, 500, "exception", "out of memory");
		cv_rc rc = cv_model_validate(t->f->model, e->res, &oo);
		if (rc == CV_E_INVALID) {
			e->status = 422;
			e->oo = oo;
			return 0;
		}
		if (rc || cv_json_write(e->res, &e->body) ||
		    cv_fhir_index(t->f, e->res, t->ex->pool, &e->w.index, &e->w.nindex))
			return fail(e, 500, "exception", "the resource could not be prepared");
	}
	e->w.body = (const uint8_t *)e->body.data;
	e->w.body_len = e->body.len;
	if (cv_pool_defer(t->ex->pool, (void (*)(void *))cv_buf_release, &e->body))
		return fail(e, 500, "exception", "out of memory");
	return 1;
}

/* ---- reads after the writes ---------------------------------------------- */

static const char *exchange_header(cv_exchange_t *ex, const char *name)
{
	cv_exchange_t *outer = ex->net;
	if (strcasecmp(name, "Content-Type") == 0)
		return NULL;
	return outer->header(outer, name);
}

/* GET Type?query: a searchset through the search interaction itself. */
static void get_search(txn_t *t, tentry_t *e, const char *url, const char *q)
{
	cv_exchange_t sub = { .method = "GET", .path = url, .header = exchange_header, .net = t->ex,
			      .base_url = t->ex->base_url, .principal = t->ex->principal, .pool = t->ex->pool,
			      .app = t->ex->app, .request_id = t->ex->request_id };
	sub.args[0] = cv_pool_strndup(t->ex->pool, url, (size_t)(q - url));
	cv_param_t params[CV_EX_MAX_PARAMS];
	size_t n = 0;
	if (!sub.args[0] || cv_search_form_decode(q + 1, strlen(q + 1), t->ex->pool, params, CV_EX_MAX_PARAMS, &n)) {
		fail(e, 400, "invalid", "request.url is not a valid search");
		return;
	}
	memcpy(sub.params, params, n * sizeof *params);
	sub.nparams = n;
	cv_buf_init(&sub.resp, 64u << 20);
	cv_fhir_search_type(&sub);
	e->status = sub.status;
	if (sub.status == 200)
		e->got = sub.resp;
	else
		cv_buf_release(&sub.resp);
	if (sub.status == 200 && cv_pool_defer(t->ex->pool, (void (*)(void *))cv_buf_release, &e->got))
		e->status = 500;
}

/* GET Type/id[/_history/v]. */
static void get_read(txn_t *t, tentry_t *e, const char *url)
{
	char type[65], id[65];
	long long vid = 0;
	const char *slash = strchr(url, '/');
	size_t tl = slash ? (size_t)(slash - url) : 0;
	const char *rest = slash ? slash + 1 : NULL;
	const char *hist = rest ? strstr(rest, "/_history/") : NULL;
	size_t il = hist ? (size_t)(hist - rest) : rest ? strlen(rest) : 0;
	if (!slash || tl == 0 || tl > 64 || il == 0 || il > 64) {
		fail(e, 400, "invalid", "request.url of a GET is Type/id, Type/id/_history/vid or Type?query");
		return;
	}
	memcpy(type, url, tl);
	type[tl] = '\0';
	memcpy(id, rest, il);
	id[il] = '\0';
	if (hist) {
		char *end;
		vid = strtoll(hist + 10, &end, 10);
		if (*end || vid <= 0) {
			fail(e, 404, "not-found", "no such version");
			return;
		}
	}
	cv_store_version_t v;
	cv_verdict verdict = CV_ACCESS_PERMIT;
	json_object *obj = NULL;
	cv_rc rc = cv_model_is_resource(t->f->model, type) && cv_fhir_valid_id(id)
			   ? cv_store_read(t->f->store, type, id, vid, t->ex->pool, &v) : CV_E_NOTFOUND;
	if (rc == CV_E_GONE) /* its patient was erased: nothing to show, as if it never was */
		rc = CV_E_NOTFOUND;
	if (!rc)
		rc = cv_fhir_visible(t->ex, t->acc, vid ? CV_ACT_FHIR_VREAD : CV_ACT_FHIR_READ, id, &v, &obj, &verdict);
	if (!rc && verdict != CV_ACCESS_PERMIT)
		cv_audit_denied(t->ex);
	else if (!rc && !v.deleted)
		cv_fhir_audit_shown(t->ex, &v, id, obj);
	if (!rc && verdict != CV_ACCESS_PERMIT)
		rc = CV_E_NOTFOUND;
	if (!rc && v.deleted && !vid)
		rc = CV_E_GONE;
	if (rc) {
		fail(e, cv_fhir_status(rc), rc == CV_E_GONE ? "deleted" : "not-found",
		     rc == CV_E_GONE ? "the resource was deleted" : "no such resource");
		return;
	}
	e->status = 200;
	e->version = v.version;
	cv_buf_init(&e->got, v.body_len + 4096);
	if ((obj && cv_access_view(t->acc, type, obj) ? cv_json_write(obj, &e->got)
						      : cv_buf_append(&e->got, v.body, v.body_len)) ||
	    cv_pool_defer(t->ex->pool, (void (*)(void *))cv_buf_release, &e->got))
		e->status = 500;
}

/* The route-level rule for a GET entry. */
static int get_allowed(txn_t *t, tentry_t *e)
{
	const char *q = strchr(e->get, '?'), *slash = strchr(e->get, '/');
	size_t tl = q && (!slash || q < slash) ? (size_t)(q - e->get) : slash ? (size_t)(slash - e->get) : strlen(e->get);
	char *type = cv_pool_strndup(t->ex->pool, e->get, tl);
	cv_action act = q && (!slash || q < slash) ? CV_ACT_FHIR_SEARCH
			: strstr(e->get, "/_history/") ? CV_ACT_FHIR_VREAD : CV_ACT_FHIR_READ;
	if (!type)
		return fail(e, 500, "exception", "out of memory");
	if (cv_policy_decide(t->f->policy, &t->ex->principal, act, type, act == CV_ACT_FHIR_SEARCH ? NULL : "",
			     NULL) != CV_OK)
		return fail(e, 403, "forbidden", "not permitted");
	return 1;
}

static void run_get(txn_t *t, tentry_t *e)
{
	if (t->batch && !get_allowed(t, e)) /* a transaction's GETs were allowed in precheck_get */
		return;
	const char *q = strchr(e->get, '?');
	if (q)
		get_search(t, e, e->get, q);
	else
		get_read(t, e, e->get);
}

/* ---- the response ------------------------------------------------------- */

static cv_rc entry_response(txn_t *t, tentry_t *e, cv_buf_t *b, bool first, bool full)
{
	cv_rc rc = cv_buf_puts(b, first ? "{" : ",{");
	bool ok = e->status < 300;
	if (!rc && ok && e->method == T_GET && e->got.len) {
		rc = cv_buf_puts(b, "\"resource\":");
		if (!rc)
			rc = cv_buf_append(b, e->got.data, e->got.len);
		if (!rc)
			rc = cv_buf_puts(b, ",");
	} else if (!rc && ok && full && e->write && e->method != T_DELETE) {
		rc = cv_buf_printf(b, "\"fullUrl\":\"%s/%s/%s\",\"resource\":", t->ex->base_url, e->type, e->id);
		if (!rc)
			rc = cv_buf_append(b, e->body.data, e->body.len);
		if (!rc)
			rc = cv_buf_puts(b, ",");
	}
	if (!rc)
		rc = cv_buf_printf(b, "\"response\":{\"status\":\"%s\"", status_text(e->status));
	if (!rc && ok && e->method != T_GET && e->method != T_DELETE && e->id) {
		char when[40];
		cv_time_format_instant(e->write ? t->now : cv_time_now_us(), when, sizeof when);
		rc = cv_buf_printf(b, ",\"location\":\"%s/%s/%s/_history/%lld\",\"etag\":\"W/\\\"%lld\\\"\"",
				   t->ex->base_url, e->type, e->id, (long long)e->version, (long long)e->version);
		if (!rc && e->write)
			rc = cv_buf_printf(b, ",\"lastModified\":\"%s\"", when);
	}
	if (!rc && !ok) {
		rc = cv_buf_puts(b, ",\"outcome\":");
		if (!rc)
			rc = cv_outcome_to_json(&e->oo, b);
	}
	return rc ? rc : cv_buf_puts(b, "}}");
}

static void respond(txn_t *t)
{
	cv_exchange_t *ex = t->ex;
	const char *prefer = ex->header(ex, "Prefer");
	bool full = prefer && strstr(prefer, "return=representation");
	for (size_t i = 0; i < t->n; i++)
		if (t->e[i].method == T_GET && t->e[i].status == 0)
			run_get(t, &t->e[i]);
	cv_buf_t *b = &ex->resp;
	char uuid[37];
	cv_crypto_uuid(uuid);
	cv_buf_reset(b);
	cv_rc rc = cv_buf_printf(b, "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"type\":\"%s-response\",\"entry\":[",
				 uuid, t->batch ? "batch" : "transaction");
	for (size_t i = 0; !rc && i < t->n; i++)
		rc = entry_response(t, &t->e[i], b, i == 0, full);
	if (!rc)
		rc = cv_buf_puts(b, "]}");
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, NULL);
	ex->status = 200;
	ex->content_type = FHIR_JSON;
	ex->no_store = 1;
}

/* A failed transaction: the failing entry's status and outcome. */
static void refuse(txn_t *t, tentry_t *e)
{
	if (!e->oo.count)
		fail(e, e->status ? e->status : 400, "processing", "the entry could not be processed");
	cv_fhir_outcome(t->ex, e->status ? e->status : 400, &e->oo);
}

/* ---- committing ----------------------------------------------------------- */

static void group_done(cv_store_write_t *w)
{
	txn_t *t = w->arg;
	t->ex->resume(t->ex);
}

static void batch_done(cv_store_write_t *w)
{
	txn_t *t = w->arg;
	if (__atomic_sub_fetch(&t->waiting, 1, __ATOMIC_ACQ_REL) == 0)
		t->ex->resume(t->ex);
}

static void result_status(tentry_t *e, cv_rc rc)
{
	if (rc == CV_E_CONFLICT)
		fail(e, 409, "conflict", "the resource changed while the request ran; retry");
	else if (rc == CV_E_ABORTED)
		fail(e, 409, "processing", "not applied: another entry of the transaction failed");
	else if (rc)
		fail(e, cv_fhir_status(rc), "exception", "the write could not be made durable; it was not stored");
}

static void finish(cv_exchange_t *ex)
{
	txn_t *t = ex->cont_arg;
	ex->pending = 0;
	for (size_t i = 0; i < t->n; i++) {
		tentry_t *e = &t->e[i];
		if (e->claimed && e->claim.result == CV_E_CONFLICT)
			fail(e, 409, "conflict", "another request is creating a resource with the same ifNoneExist; "
				 "retry to find it");
		else if (e->write)
			result_status(e, e->w.result);
	}
	if (!t->batch && t->group.result) {
		for (size_t i = 0; i < t->n; i++)
			if ((t->e[i].write && t->e[i].w.result && t->e[i].w.result != CV_E_ABORTED) ||
			    (t->e[i].claimed && t->e[i].claim.result == CV_E_CONFLICT))
				return refuse(t, &t->e[i]);
		return cv_fhir_fail(ex, t->group.result, NULL, "the transaction could not be committed");
	}
	respond(t);
}

/* Notes a write entry for the audit trail (the patients of its new content,
 * or of the version a delete removes); *pats gets them, and the first one's
 * data key seals the entry (store.h). */
static void audit_entry(txn_t *t, tentry_t *e, const char ***pats, size_t *n)
{
	cv_pool_t *pool = t->ex->pool;
	json_object *before = NULL;
	bool del = e->method == T_DELETE;
	cv_rc rc = del ? CV_E_NOTFOUND : cv_policy_patients(t->f->policy, e->type, 0, e->res, pool, pats, n);
	if (del && e->cur > 0 && (rc = cv_policy_patients(t->f->policy, e->type, e->curv.seq, NULL, pool, pats, n)) ==
	    CV_E_NOTFOUND && !cv_fhir_parse_stored(&e->curv, pool, &before))
		rc = cv_policy_patients(t->f->policy, e->type, e->curv.seq, before, pool, pats, n);
	if (rc) {
		*pats = NULL;
		*n = 0;
	}
	e->w.owner = *n ? (*pats)[0] : NULL;
	cv_audit_resource(t->ex, e->type, e->id, e->cur + 1, *pats, *n);
	if (!del && e->cur > 0 && !e->curv.deleted) /* an update that moves it: the patients it leaves too */
		cv_fhir_audit_patients_of(t->ex, &e->curv, e->id);
	cv_fhir_audit_glass(t->ex, t->acc, *pats, *n);
}

/* A batch entry's write, with its claim and its own audit record. */
static cv_store_write_t *batch_write(txn_t *t, tentry_t *e)
{
	const char **pats;
	size_t n, k = 0;
	cv_store_write_t *rec = NULL;
	audit_entry(t, e, &pats, &n);
	bool del = e->method == T_DELETE, created = !del && e->cur == 0;
	if (cv_audit_attach_entry(t->ex, del ? "delete" : created ? "create" : "update", del ? 'D' : created ? 'C' : 'U',
				  del ? 204 : created ? 201 : 200, e->type, e->id, e->cur + 1, pats, n, &rec))
		return NULL;
	if (e->claimed)
		e->pair[k++] = &e->claim;
	e->pair[k++] = &e->w;
	e->pair[k++] = rec;
	e->group = (cv_store_write_t){ .op = CV_STORE_GROUP, .members = e->pair, .nmembers = k };
	return &e->group;
}

static void submit(txn_t *t)
{
	cv_exchange_t *ex = t->ex;
	size_t writes = 0, members = t->extra ? 2 : 1; /* entries that write; store writes (+ the record) */
	for (size_t i = 0; i < t->n; i++) {
		bool w = t->e[i].write && t->e[i].status < 300;
		writes += w;
		members += w ? (t->e[i].claimed ? 2 : 1) : 0;
	}
	if (!members)
		return respond(t);
	ex->cont = finish;
	ex->cont_arg = t;
	ex->pending = 1;
	if (!t->batch) {
		t->members = cv_pool_alloc(ex->pool, members * sizeof *t->members);
		if (!t->members) {
			ex->pending = 0;
			return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		}
		for (size_t i = 0; i < t->n; i++) {
			if (t->e[i].claimed)
				t->members[t->nmembers++] = &t->e[i].claim;
			if (t->e[i].write)
				t->members[t->nmembers++] = &t->e[i].w;
		}
		if (t->extra)
			t->members[t->nmembers++] = t->extra;
		for (size_t i = 0; i < t->n; i++) {
			const char **pats;
			size_t np;
			if (t->e[i].write)
				audit_entry(t, &t->e[i], &pats, &np);
		}
		cv_store_write_t *rec = NULL;
		if (cv_audit_attach(ex, 200, &rec)) {
			ex->pending = 0;
			return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		}
		t->members[t->nmembers++] = rec;
		t->group = (cv_store_write_t){ .op = CV_STORE_GROUP, .members = t->members, .nmembers = t->nmembers,
					       .done = group_done, .arg = t };
		cv_rc rc = cv_store_submit(t->f->store, &t->group);
		if (rc) {
			ex->pending = 0;
			cv_fhir_fail(ex, rc, NULL, "the store is not accepting writes; retry later");
		}
		return;
	}
	t->waiting = writes + 1; /* +1 held until every write is submitted */
	for (size_t i = 0; i < t->n; i++) {
		tentry_t *e = &t->e[i];
		if (!e->write || e->status >= 300)
			continue;
		cv_store_write_t *sw = batch_write(t, e);
		cv_rc rc = sw ? CV_OK : CV_E_NOMEM;
		if (sw) {
			sw->done = batch_done;
			sw->arg = t;
			rc = cv_store_submit(t->f->store, sw);
		}
		if (rc) {
			e->w.result = rc;
			__atomic_sub_fetch(&t->waiting, 1, __ATOMIC_ACQ_REL);
		}
	}
	if (__atomic_sub_fetch(&t->waiting, 1, __ATOMIC_ACQ_REL) == 0)
		ex->resume(ex);
}

/* ---- the interaction ---------------------------------------------------- */

static int resolve(txn_t *t, tentry_t *e)
{
	if (e->method != T_GET && e->method != T_BAD && e->type && strcmp(e->type, "AuditEvent") == 0)
		return fail(e, 405, "not-supported", "the audit trail is written by this server only");
	if (e->method != T_GET && e->method != T_BAD && !entry_allowed(t, e, e->type, e->method == T_POST ? NULL : e->id))
		return 0;
	switch (e->method) {
	case T_DELETE: return resolve_delete(t, e);
	case T_POST: return resolve_post(t, e);
	case T_PUT: return resolve_put(t, e);
	default: return 1;
	}
}

/* Two entries with the same fullUrl make references ambiguous. */
static int unique_full_urls(txn_t *t)
{
	for (size_t i = 0; i < t->n; i++) {
		if (!t->e[i].full_url || t->e[i].status >= 300)
			continue;
		for (size_t j = i + 1; j < t->n; j++)
			if (t->e[j].full_url && strcmp(t->e[i].full_url, t->e[j].full_url) == 0) {
				fail(&t->e[j], 400, "invalid", "two entries have the same fullUrl");
				if (!t->batch)
					return (t->failed = &t->e[j]), 0;
			}
	}
	return 1;
}

/* Does an entry of this transaction write type/id (and not delete it)? */
static const tentry_t *written(const txn_t *t, const char *type, size_t tl, const char *id, size_t il)
{
	for (size_t i = 0; i < t->n; i++) {
		const tentry_t *e = &t->e[i];
		if (e->write && e->method != T_DELETE && e->id && strlen(e->type) == tl && strncmp(e->type, type, tl) == 0 &&
		    strlen(e->id) == il && strncmp(e->id, id, il) == 0)
			return e;
	}
	return NULL;
}

/* A transaction's GETs run after its commit, but one that cannot succeed
 * (a read of nothing, a search that is not valid) must fail the whole
 * transaction: checked before anything is committed. */
static int precheck_get(txn_t *t, tentry_t *e)
{
	const char *q = strchr(e->get, '?'), *slash = strchr(e->get, '/');
	if (!get_allowed(t, e))
		return 0;
	if (q) {
		cv_search_plan_t *plan = cv_pool_alloc(t->ex->pool, sizeof *plan);
		cv_param_t *params = cv_pool_alloc(t->ex->pool, CV_EX_MAX_PARAMS * sizeof *params);
		char *type = cv_pool_strndup(t->ex->pool, e->get, (size_t)(q - e->get));
		size_t n = 0;
		cv_search_limits_t lim = { .default_count = 50, .max_count = 1000 };
		if (!plan || !params || !type)
			return fail(e, 500, "exception", "out of memory");
		if (!cv_model_is_resource(t->f->model, type))
			return fail(e, 404, "not-supported", "request.url names no known resource type");
		if (cv_search_form_decode(q + 1, strlen(q + 1), t->ex->pool, params, CV_EX_MAX_PARAMS, &n) ||
		    cv_search_parse(t->f->search, t->f->model, type, params, n, t->ex->base_url, false, &lim, t->ex->pool,
				    plan, &e->oo))
			return fail(e, 400, "invalid", "request.url is not a valid search");
		return 1;
	}
	const char *hist = slash ? strstr(slash, "/_history/") : NULL;
	size_t tl = slash ? (size_t)(slash - e->get) : 0, il = slash ? (hist ? (size_t)(hist - slash - 1)
									    : strlen(slash + 1)) : 0;
	if (!slash || tl == 0 || il == 0 || tl > 64 || il > 64)
		return fail(e, 400, "invalid", "request.url of a GET is Type/id, Type/id/_history/vid or Type?query");
	if (!hist && written(t, e->get, tl, slash + 1, il))
		return 1;
	char type[65], id[65];
	memcpy(type, e->get, tl);
	type[tl] = '\0';
	memcpy(id, slash + 1, il);
	id[il] = '\0';
	cv_store_version_t v;
	cv_verdict verdict = CV_ACCESS_PERMIT;
	cv_rc rc = cv_model_is_resource(t->f->model, type) && cv_fhir_valid_id(id)
			   ? cv_store_read(t->f->store, type, id, 0, t->ex->pool, &v) : CV_E_NOTFOUND;
	if (rc == CV_E_GONE) /* its patient was erased: nothing to show, as if it never was */
		rc = CV_E_NOTFOUND;
	if (!rc)
		rc = cv_fhir_visible(t->ex, t->acc, CV_ACT_FHIR_READ, id, &v, NULL, &verdict);
	if (!rc && verdict != CV_ACCESS_PERMIT) {
		cv_audit_denied(t->ex);
		rc = CV_E_NOTFOUND;
	}
	if (rc == CV_E_NOTFOUND || (!rc && v.deleted && !hist))
		return fail(e, rc ? 404 : 410, rc ? "not-found" : "deleted", rc ? "no such resource" : "the resource "
			    "was deleted");
	return rc ? fail(e, cv_fhir_status(rc), "exception", "the store could not be read") : 1;
}

/* Processes the entries in the spec's order; a transaction stops at the first failure. */
static int process(txn_t *t)
{
	if (!unique_full_urls(t))
		return 0;
	static const tmethod order[] = { T_DELETE, T_POST, T_PUT };
	for (size_t o = 0; o < sizeof order / sizeof order[0]; o++)
		for (size_t i = 0; i < t->n; i++) {
			tentry_t *e = &t->e[i];
			if (e->method != order[o] || e->status >= 300)
				continue;
			if (!resolve(t, e) && !t->batch)
				return (t->failed = e), 0;
		}
	if (!t->batch && !unique_targets(t)) {
		for (size_t i = 0; i < t->n; i++)
			if (t->e[i].status >= 300)
				return (t->failed = &t->e[i]), 0;
	}
	for (size_t i = 0; !t->batch && i < t->n; i++)
		if (t->e[i].method == T_GET && !precheck_get(t, &t->e[i]))
			return (t->failed = &t->e[i]), 0;
	t->now = cv_time_now_us() / 1000 * 1000;
	for (size_t i = 0; i < t->n; i++) {
		tentry_t *e = &t->e[i];
		if (!e->write || e->status >= 300)
			continue;
		if (!prepare(t, e)) {
			e->write = false;
			if (!t->batch)
				return (t->failed = e), 0;
		}
	}
	return 1;
}

static txn_t *read_bundle(cv_exchange_t *ex, json_object *bundle)
{
	const char *type = str_at(bundle, "type");
	json_object *entries = NULL;
	if (!type || (strcmp(type, "transaction") != 0 && strcmp(type, "batch") != 0)) {
		cv_fhir_error(ex, 400, "invalid", "POST to the base takes a Bundle of type transaction or batch");
		return NULL;
	}
	json_object_object_get_ex(bundle, "entry", &entries);
	size_t n = entries && json_object_is_type(entries, json_type_array) ? json_object_array_length(entries) : 0;
	if (n > BUNDLE_ENTRIES_MAX) {
		cv_fhir_error(ex, 413, "too-costly", "a Bundle may hold at most %d entries", BUNDLE_ENTRIES_MAX);
		return NULL;
	}
	txn_t *t = cv_pool_alloc(ex->pool, sizeof *t);
	if (!t || !(t->e = cv_pool_alloc(ex->pool, (n ? n : 1) * sizeof *t->e))) {
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return NULL;
	}
	t->ex = ex;
	t->f = ctx(ex);
	t->batch = strcmp(type, "batch") == 0;
	cv_audit_kind(ex, CV_AUDIT_REST, t->batch ? "batch" : "transaction", 'E');
	t->n = n;
	for (size_t i = 0; i < n; i++) {
		tentry_t *e = &t->e[i];
		e->at = i;
		if (!read_entry(t, json_object_array_get_idx(entries, i), e) && !t->batch) {
			refuse(t, e);
			return NULL;
		}
	}
	return t;
}

static void bundle(cv_exchange_t *ex, cv_store_write_t *extra)
{
	json_object *b = NULL;
	if (!cv_fhir_negotiate(ex) || !cv_fhir_parse_body(ex, &b))
		return;
	if (strcmp(str_at(b, "resourceType"), "Bundle") != 0)
		return cv_fhir_error(ex, 400, "invalid", "POST to the base takes a Bundle (transaction or batch)");
	txn_t *t = read_bundle(ex, b);
	if (!t)
		return;
	if (extra && t->batch)
		return cv_fhir_error(ex, 400, "invalid", "import takes transaction Bundles");
	t->extra = extra;
	if (!cv_fhir_access(ex, &t->acc))
		return;
	if (!process(t))
		return refuse(t, t->failed);
	submit(t);
}

void cv_fhir_bundle(cv_exchange_t *ex)
{
	bundle(ex, NULL);
}

/* ---- outside HTTP (import) ------------------------------------------------ */

typedef struct sync_ex {
	cv_exchange_t ex;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int resumed;
} sync_ex_t;

static const char *sync_header(cv_exchange_t *ex, const char *name)
{
	(void)ex;
	return strcasecmp(name, "Content-Type") == 0 ? "application/fhir+json" : NULL;
}

static void sync_resume(cv_exchange_t *ex)
{
	sync_ex_t *s = (sync_ex_t *)ex;
	pthread_mutex_lock(&s->mu);
	s->resumed = 1;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->mu);
}

cv_rc cv_fhir_transaction_sync(cv_fhir_t *f, const char *body, size_t len, cv_store_write_t *extra, cv_pool_t *pool,
			       unsigned *status, cv_buf_t *out)
{
	sync_ex_t *s = cv_pool_alloc(pool, sizeof *s);
	if (!s)
		return CV_E_NOMEM;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cond, NULL);
	cv_exchange_t *ex = &s->ex;
	ex->method = "POST";
	ex->path = "/fhir";
	ex->route = "/fhir";
	ex->header = sync_header;
	ex->body = body;
	ex->body_len = len;
	ex->base_url = "urn:carevault:import";
	ex->principal = (cv_principal_t){ .kind = CV_PRINCIPAL_ADMIN, .id = "import" };
	ex->request_id = "import";
	ex->pool = pool;
	ex->app = f;
	ex->resume = sync_resume;
	cv_buf_init(&ex->resp, 256u << 20);
	bundle(ex, extra);
	if (ex->pending) {
		pthread_mutex_lock(&s->mu);
		while (!s->resumed)
			pthread_cond_wait(&s->cond, &s->mu);
		pthread_mutex_unlock(&s->mu);
		ex->cont(ex);
	}
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cond);
	*status = ex->status;
	cv_rc rc = cv_buf_append(out, ex->resp.data ? ex->resp.data : "", ex->resp.len);
	cv_buf_release(&ex->resp);
	return rc;
}
