/*
 * auditevent.c - reading the audit trail through the FHIR API.
 *
 * AuditEvents are not stored as resources: they live in the store's hash
 * chain (store.h, "the audit trail"). GET /fhir/AuditEvent/{id} and the
 * AuditEvent search (audit/query.h) read it for auditors; nothing changes
 * it (writes answer 405). GET /fhir/Patient/{id}/$access-report gives a
 * patient the accesses to their own record: who (role, and the name for
 * staff), when, what kind of access, and why, with disclosures to outside
 * applications marked (HIPAA's accounting of disclosures).
 */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/query.h"
#include "core/time.h"
#include "fhir/fhir.h"
#include "fhir/search.h"
#include "model/json.h"

#define FHIR_JSON "application/fhir+json; charset=utf-8"
#define FORM_PARAMS_MAX 64
#define SUBSETTED_TAG "{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ObservationValue\",\"code\":\"SUBSETTED\"}"
#define DISCLOSURE_URL "https://carevault.dev/fhir/StructureDefinition/disclosure"
#define NAMES_MAX 64 /* staff names one report page looks up */

static cv_fhir_t *ctx(cv_exchange_t *ex)
{
	return ex->app;
}

bool cv_fhir_is_audit(const cv_exchange_t *ex)
{
	return ex->args[0] && strcmp(ex->args[0], "AuditEvent") == 0;
}

void cv_fhir_audit_readonly(cv_exchange_t *ex)
{
	cv_exchange_add_header(ex, "Allow", "GET");
	cv_fhir_error(ex, 405, "not-supported", "the audit trail is written by this server only: AuditEvents are "
		      "never created, changed or deleted through the API");
}

/* ---- reading ----------------------------------------------------------------- */

typedef struct one {
	cv_exchange_t *ex;
	bool found;
} one_t;

static cv_rc answer_one(void *arg, const cv_store_audit_row_t *r)
{
	one_t *o = arg;
	o->found = true;
	cv_buf_reset(&o->ex->resp);
	return cv_buf_append(&o->ex->resp, r->body, r->body_len);
}

void cv_fhir_audit_read(cv_exchange_t *ex)
{
	cv_store_audit_query_t q = { .id = ex->args[1], .outcome = -1, .limit = 1 };
	one_t o = { .ex = ex };
	if (!cv_fhir_valid_id(ex->args[1]))
		return cv_fhir_error(ex, 404, "not-found", "no resource of this type has this id");
	cv_rc rc = cv_audit_search(ctx(ex)->store, &q, ex->pool, answer_one, &o);
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, "the audit trail could not be read");
	if (!o.found)
		return cv_fhir_error(ex, 404, "not-found", "no resource of this type has this id");
	cv_exchange_add_header(ex, "ETag", "W/\"1\"");
	ex->status = 200;
	ex->content_type = FHIR_JSON;
	ex->no_store = 1;
}

/* ---- searching --------------------------------------------------------------- */

/* The request's parameters, with a POSTed form's (POST _search). */
static int all_params(cv_exchange_t *ex, const cv_param_t **out, size_t *n)
{
	cv_param_t *p = cv_pool_alloc(ex->pool, (CV_EX_MAX_PARAMS + FORM_PARAMS_MAX) * sizeof *p);
	size_t k = 0, nf = 0;
	if (!p) {
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return 0;
	}
	for (size_t i = 0; i < ex->nparams; i++)
		p[k++] = ex->params[i];
	if (strcmp(ex->method, "POST") == 0 && ex->body_len &&
	    cv_search_form_decode(ex->body, ex->body_len, ex->pool, p + k, FORM_PARAMS_MAX, &nf)) {
		cv_fhir_error(ex, 400, "invalid", "the search form could not be read (application/x-www-form-urlencoded)");
		return 0;
	}
	*out = p;
	*n = k + nf;
	return 1;
}

typedef struct page {
	cv_exchange_t *ex;
	cv_buf_t *b;
	size_t n;
	int64_t last_pos;
	cv_rc (*entry)(struct page *pg, const cv_store_audit_row_t *r);
	const char *patient;      /* the access report's patient */
	struct { const char *ref, *name; } names[NAMES_MAX];
	size_t nnames;
} page_t;

static cv_rc full_entry(page_t *pg, const cv_store_audit_row_t *r)
{
	cv_rc rc = cv_buf_printf(pg->b, "%s{\"fullUrl\":\"%s/AuditEvent/%s\",\"resource\":", pg->n ? "," : "",
				 pg->ex->base_url, r->id);
	if (!rc)
		rc = cv_buf_append(pg->b, r->body, r->body_len);
	return rc ? rc : cv_buf_puts(pg->b, ",\"search\":{\"mode\":\"match\"}}");
}

static cv_rc on_row(void *arg, const cv_store_audit_row_t *r)
{
	page_t *pg = arg;
	cv_rc rc = pg->entry(pg, r);
	pg->n++;
	pg->last_pos = r->pos;
	return rc;
}

/* The Bundle's links: self, and next when the page was full. */
static cv_rc links(page_t *pg, const char *path, const cv_param_t *p, size_t np, bool more)
{
	cv_buf_t *b = pg->b;
	cv_rc rc = cv_buf_printf(b, ",\"link\":[{\"relation\":\"self\",\"url\":\"%s/%s", pg->ex->base_url, path);
	for (int pass = 0; !rc && pass < 1 + more; pass++) {
		if (pass)
			rc = cv_buf_printf(b, "\"},{\"relation\":\"next\",\"url\":\"%s/%s", pg->ex->base_url, path);
		char sep = '?';
		for (size_t i = 0; !rc && i < np; i++) {
			if (strcmp(p[i].name, "_cursor") == 0)
				continue;
			cv_buf_t enc;
			cv_buf_init(&enc, 16384);
			rc = cv_buf_url_encode(&enc, p[i].name);
			if (!rc)
				rc = cv_buf_puts(&enc, "=");
			if (!rc)
				rc = cv_buf_url_encode(&enc, p[i].value);
			if (!rc)
				rc = cv_buf_printf(b, "%c", sep);
			if (!rc)
				rc = cv_buf_json_escape(b, enc.data ? enc.data : "");
			cv_buf_release(&enc);
			sep = '&';
		}
		if (!rc && pass)
			rc = cv_buf_printf(b, "%c_cursor=%lld", sep, (long long)pg->last_pos);
	}
	return rc ? rc : cv_buf_puts(b, "\"}]");
}

/* Runs q and answers with a searchset Bundle of what entry() writes. */
static void run_page(cv_exchange_t *ex, page_t *pg, const cv_store_audit_query_t *q, const char *path,
		     const cv_param_t *p, size_t np)
{
	char uuid[37], now[40];
	cv_buf_t *b = &ex->resp;
	cv_crypto_uuid(uuid);
	cv_time_format_instant(cv_time_now_us(), now, sizeof now);
	cv_buf_reset(b);
	pg->ex = ex;
	pg->b = b;
	cv_rc rc = cv_buf_printf(b, "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{\"lastUpdated\":\"%s\"},"
				    "\"type\":\"searchset\",\"entry\":[", uuid, now);
	if (!rc)
		rc = cv_audit_search(ctx(ex)->store, q, ex->pool, on_row, pg);
	if (!rc)
		rc = cv_buf_puts(b, "]");
	if (!rc)
		rc = links(pg, path, p, np, pg->n == q->limit);
	if (!rc)
		rc = cv_buf_puts(b, "}");
	if (rc) {
		cv_buf_reset(b);
		return cv_fhir_fail(ex, rc, NULL, "the audit trail could not be read");
	}
	ex->status = 200;
	ex->content_type = FHIR_JSON;
	ex->no_store = 1;
}

void cv_fhir_audit_search(cv_exchange_t *ex)
{
	const cv_param_t *p;
	size_t np;
	cv_store_audit_query_t q;
	char why[300];
	if (!all_params(ex, &p, &np))
		return;
	const cv_config_t *cfg = ctx(ex)->cfg;
	if (cv_audit_query_parse(p, np, cfg->search_default_count, cfg->search_max_count, ex->pool, &q, why, sizeof why))
		return cv_fhir_error(ex, 400, "invalid", "%s", why);
	page_t pg = { .entry = full_entry };
	run_page(ex, &pg, &q, "AuditEvent", p, np);
}

/* ---- a patient's access report --------------------------------------------- */

static const char *str_of(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v) : NULL;
}

/* A practitioner's name as the directory has it ("" when none). */
static const char *staff_name(page_t *pg, const char *ref)
{
	for (size_t i = 0; i < pg->nnames; i++)
		if (strcmp(pg->names[i].ref, ref) == 0)
			return pg->names[i].name;
	const char *slash = strchr(ref, '/'), *name = "";
	cv_store_version_t v;
	json_object *o = NULL, *names, *n0;
	if (slash && strncmp(ref, "Practitioner/", 13) == 0 &&
	    cv_store_read(ctx(pg->ex)->store, "Practitioner", slash + 1, 0, pg->ex->pool, &v) == CV_OK && !v.deleted &&
	    cv_fhir_parse_stored(&v, pg->ex->pool, &o) == CV_OK && json_object_object_get_ex(o, "name", &names) &&
	    json_object_is_type(names, json_type_array) && (n0 = json_object_array_get_idx(names, 0))) {
		json_object *given, *g0;
		const char *text = str_of(n0, "text"), *family = str_of(n0, "family");
		const char *first = json_object_object_get_ex(n0, "given", &given) &&
				    json_object_is_type(given, json_type_array) && (g0 = json_object_array_get_idx(given, 0))
				    ? json_object_get_string(g0) : NULL;
		name = text ? text : cv_pool_printf(pg->ex->pool, "%s%s%s", first ? first : "", first && family ? " " : "",
						    family ? family : "");
	}
	if (pg->nnames < NAMES_MAX) {
		pg->names[pg->nnames].ref = cv_pool_strdup(pg->ex->pool, ref);
		pg->names[pg->nnames].name = name ? name : "";
		pg->nnames++;
	}
	return name ? name : "";
}

/* How a patient is told of an agent with no name to show: its role's text
 * ("auditor", "billing"...), else the server itself (an operator's command,
 * the bootstrap administrator). */
static const char *role_text(json_object *role, bool has_role)
{
	json_object *r0 = has_role && json_object_is_type(role, json_type_array) ? json_object_array_get_idx(role, 0) : NULL;
	const char *text = r0 ? str_of(r0, "text") : NULL;
	return text && text[0] ? text : "carevault (system)";
}

/* The person or app that acted, as the patient sees them: role and, for
 * staff, name; an app (backend client) is a disclosure outside the staff. */
static json_object *report_agents(page_t *pg, json_object *rec, bool *disclosure)
{
	json_object *agents, *out = json_object_new_array();
	*disclosure = false;
	if (!json_object_object_get_ex(rec, "agent", &agents) || !json_object_is_type(agents, json_type_array))
		return out;
	for (size_t i = 0; i < json_object_array_length(agents); i++) {
		json_object *a = json_object_array_get_idx(agents, i), *who, *ident, *role, *na = json_object_new_object();
		const char *ref = json_object_object_get_ex(a, "who", &who) ? str_of(who, "reference") : NULL;
		const char *system = who && json_object_object_get_ex(who, "identifier", &ident) ? str_of(ident, "system") : NULL;
		bool app = system && strstr(system, "/client");
		const char *display = ref && strncmp(ref, "Practitioner/", 13) == 0 ? staff_name(pg, ref)
				      : app ? cv_pool_printf(pg->ex->pool, "application %s", str_of(ident, "value"))
				      : ref && strncmp(ref, "Patient/", 8) == 0 && strcmp(ref + 8, pg->patient) == 0 ? "you"
				      : ref && strncmp(ref, "Patient/", 8) == 0 ? "a patient" : NULL;
		bool has_role = json_object_object_get_ex(a, "role", &role);
		if (has_role)
			json_object_object_add(na, "role", json_object_get(role));
		if (!display || !display[0]) /* staff without a Practitioner, an operator's tool: by role */
			display = role_text(role, has_role);
		json_object *nw = json_object_new_object();
		json_object_object_add(nw, "display", json_object_new_string(display));
		json_object_object_add(na, "who", nw);
		json_object *req;
		json_object_object_add(na, "requestor", json_object_new_boolean(
			json_object_object_get_ex(a, "requestor", &req) && json_object_get_boolean(req)));
		json_object_array_add(out, na);
		*disclosure = *disclosure || (app && i == 0);
	}
	return out;
}

/* Whether the entities out name type already (as a type, not a reference). */
static bool has_type(json_object *out, const char *type)
{
	for (size_t i = 0; i < json_object_array_length(out); i++) {
		json_object *what;
		if (json_object_object_get_ex(json_object_array_get_idx(out, i), "what", &what) &&
		    str_of(what, "type") && strcmp(str_of(what, "type"), type) == 0)
			return true;
	}
	return false;
}

/* What was accessed, as the patient may see it: their own reference, and
 * the resources when the record is about them alone (else only the types). */
static json_object *report_entities(page_t *pg, json_object *rec, int64_t npat)
{
	json_object *entities, *out = json_object_new_array();
	if (!json_object_object_get_ex(rec, "entity", &entities) || !json_object_is_type(entities, json_type_array))
		return out;
	for (size_t i = 0; i < json_object_array_length(entities); i++) {
		json_object *e = json_object_array_get_idx(entities, i), *what, *role, *detail;
		const char *ref = json_object_object_get_ex(e, "what", &what) ? str_of(what, "reference") : NULL;
		if (!ref || json_object_object_get_ex(e, "query", &what))
			continue;
		bool mine = strncmp(ref, "Patient/", 8) == 0 && strncmp(ref + 8, pg->patient, strlen(pg->patient)) == 0 &&
			    (ref[8 + strlen(pg->patient)] == '\0' || ref[8 + strlen(pg->patient)] == '/');
		if (strncmp(ref, "Patient/", 8) == 0 && !mine)
			continue;
		const char *slash = strchr(ref, '/');
		const char *type = cv_pool_strndup(pg->ex->pool, ref, slash ? (size_t)(slash - ref) : strlen(ref));
		if (!mine && npat > 1 && (!type || has_type(out, type)))
			continue; /* a search over several patients: each type once, not how many of each */
		json_object *ne = json_object_new_object(), *nw = json_object_new_object();
		if (mine || npat <= 1)
			json_object_object_add(nw, "reference", json_object_new_string(ref));
		else
			json_object_object_add(nw, "type", json_object_new_string(type));
		json_object_object_add(ne, "what", nw);
		if (json_object_object_get_ex(e, "role", &role))
			json_object_object_add(ne, "role", json_object_get(role));
		if (mine && json_object_object_get_ex(e, "detail", &detail))
			json_object_object_add(ne, "detail", json_object_get(detail));
		json_object_array_add(out, ne);
	}
	return out;
}

static void copy_member(json_object *from, json_object *to, const char *key)
{
	json_object *v;
	if (json_object_object_get_ex(from, key, &v))
		json_object_object_add(to, key, json_object_get(v));
}

/* Whether a patient entity of the record carries the BTG label (me: the
 * report's patient's; else any): the request reached them under
 * break-glass. */
static bool glass_label(page_t *pg, json_object *rec, bool me_only)
{
	json_object *entities, *what, *labels;
	const char *me = cv_pool_printf(pg->ex->pool, "Patient/%s", pg->patient);
	if (!me || !json_object_object_get_ex(rec, "entity", &entities) || !json_object_is_type(entities, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(entities); i++) {
		json_object *e = json_object_array_get_idx(entities, i);
		const char *ref = json_object_object_get_ex(e, "what", &what) ? str_of(what, "reference") : NULL;
		if (!ref || (me_only && strcmp(ref, me) != 0) || !json_object_object_get_ex(e, "securityLabel", &labels) ||
		    !json_object_is_type(labels, json_type_array))
			continue;
		for (size_t k = 0; k < json_object_array_length(labels); k++)
			if (str_of(json_object_array_get_idx(labels, k), "code") &&
			    strcmp(str_of(json_object_array_get_idx(labels, k), "code"), "BTG") == 0)
				return true;
	}
	return false;
}

/* Why, as the patient is told: the record's purpose, but an emergency
 * (ETREAT, break-glass) only when it was about them: a search over several
 * patients under one patient's break-glass was ordinary treatment for the
 * others (and they are not told of another's emergency). */
static void report_purpose(page_t *pg, json_object *rec, const cv_store_audit_row_t *r, json_object *o,
			   json_object *meta)
{
	/* a record made before the patients under break-glass were marked (none is) tells them all, as it did */
	bool glass = (r->flags & CV_AUDIT_F_BREAK_GLASS) &&
		     (r->npat <= 1 || glass_label(pg, rec, true) || !glass_label(pg, rec, false));
	if (glass) {
		json_object_object_add(meta, "security", json_tokener_parse("[{\"system\":\"http://terminology.hl7.org/"
			"CodeSystem/v3-ActCode\",\"code\":\"BTG\",\"display\":\"break the glass\"}]"));
		copy_member(rec, o, "purposeOfEvent");
	} else if (r->flags & CV_AUDIT_F_BREAK_GLASS) {
		json_object_object_add(o, "purposeOfEvent", json_tokener_parse("[{\"coding\":[{\"system\":\"http://"
			"terminology.hl7.org/CodeSystem/v3-ActReason\",\"code\":\"TREAT\"}]}]"));
	} else {
		copy_member(rec, o, "purposeOfEvent");
	}
}

/* One record as the patient sees it (tagged SUBSETTED). */
static cv_rc report_entry(page_t *pg, const cv_store_audit_row_t *r)
{
	json_object *rec = NULL;
	cv_json_limits_t lim;
	const char *err;
	cv_json_limits_default(&lim);
	if (cv_json_parse((const char *)r->body, r->body_len, &lim, pg->ex->pool, &rec, &err))
		return CV_E_STORAGE;
	if (cv_json_pool_own(pg->ex->pool, rec)) { /* freed with the request */
		json_object_put(rec);
		return CV_E_NOMEM;
	}
	json_object *o = json_object_new_object(), *meta = json_object_new_object();
	json_object_object_add(o, "resourceType", json_object_new_string("AuditEvent"));
	json_object_object_add(o, "id", json_object_new_string(r->id));
	json_object_object_add(meta, "tag", json_tokener_parse("[" SUBSETTED_TAG "]"));
	json_object_object_add(o, "meta", meta);
	bool disclosure;
	json_object *agents = report_agents(pg, rec, &disclosure);
	if (disclosure)
		json_object_object_add(o, "extension", json_tokener_parse("[{\"url\":\"" DISCLOSURE_URL "\",\"valueBoolean\":true}]"));
	const char *keys[] = { "type", "subtype", "action", "recorded", "outcome" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		copy_member(rec, o, keys[i]);
	report_purpose(pg, rec, r, o, meta);
	json_object_object_add(o, "agent", agents);
	json_object_object_add(o, "source", json_tokener_parse("{\"observer\":{\"display\":\"carevault\"}}"));
	json_object_object_add(o, "entity", report_entities(pg, rec, r->npat));
	cv_rc rc = cv_buf_printf(pg->b, "%s{\"fullUrl\":\"%s/AuditEvent/%s\",\"resource\":", pg->n ? "," : "",
				 pg->ex->base_url, r->id);
	if (!rc)
		rc = cv_json_write(o, pg->b);
	if (!rc)
		rc = cv_buf_puts(pg->b, ",\"search\":{\"mode\":\"match\"}}");
	json_object_put(o);
	return rc;
}

void cv_fhir_access_report(cv_exchange_t *ex)
{
	const cv_param_t *p;
	size_t np;
	cv_store_audit_query_t q;
	char why[300];
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex) || !cv_fhir_id_ok(ex))
		return;
	if (strcmp(ex->args[0], "Patient") != 0)
		return cv_fhir_error(ex, 404, "not-supported", "$access-report is an operation on Patient");
	if (!all_params(ex, &p, &np))
		return;
	const cv_config_t *cfg = ctx(ex)->cfg;
	static const char *const allowed[] = { "date", "action", "type", "subtype", "_count", "_cursor", "_format",
					       "_pretty" };
	for (size_t i = 0; i < np; i++) {
		size_t k = 0;
		while (k < sizeof allowed / sizeof allowed[0] && strcmp(p[i].name, allowed[k]) != 0)
			k++;
		if (k == sizeof allowed / sizeof allowed[0])
			return cv_fhir_error(ex, 400, "invalid", "$access-report takes date, action, type, subtype, _count "
					     "and _cursor (not '%.40s'): it is about this patient, and lists the accesses "
					     "that took place", p[i].name);
	}
	if (cv_audit_query_parse(p, np, cfg->search_default_count, cfg->search_max_count, ex->pool, &q, why, sizeof why))
		return cv_fhir_error(ex, 400, "invalid", "%s", why);
	cv_audit_patient(ex, ex->args[1]);
	q.keys[q.nkeys++] = cv_audit_key_patient(ex->pool, ex->args[1]);
	q.outcome = 0; /* what took place: refused attempts are the auditors' */
	page_t pg = { .entry = report_entry, .patient = ex->args[1] };
	run_page(ex, &pg, &q, cv_pool_printf(ex->pool, "Patient/%s/$access-report", ex->args[1]), p, np);
}
