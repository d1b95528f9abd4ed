/*
 * note.c - what one request touched, noted by its handlers on the exchange,
 * and the record made of it (audit.h, "what a request touched").
 */
#include <string.h>

#include "audit/audit.h"

typedef struct id_list {
	const char **v;              /* in the pool, grown by doubling */
	size_t n, cap;
} id_list_t;

typedef struct note {
	bool typed;                  /* cv_audit_kind was called */
	cv_audit_type type;
	const char *subtype;
	char action;
	const char *entities[CV_AUDIT_ENTITIES_MAX];
	size_t nentities;
	int64_t nres;
	id_list_t patients;          /* the patients named */
	id_list_t glass;             /* those reached through break-glass alone */
	unsigned flags;
	const char *target;
	const char *reason;
	const char *agent, *role, *link; /* cv_audit_agent */
	cv_store_write_t *attached;  /* the record a write carried */
} note_t;

static note_t *note_of(cv_exchange_t *ex)
{
	if (!ex->audit) {
		note_t *n = cv_pool_alloc(ex->pool, sizeof *n);
		if (n)
			memset(n, 0, sizeof *n);
		ex->audit = n;
	}
	return ex->audit;
}

/* Adds id to the list once (at most CV_AUDIT_PATIENTS_MAX). */
static void add_id(cv_exchange_t *ex, id_list_t *l, const char *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], id) == 0)
			return;
	if (l->n >= CV_AUDIT_PATIENTS_MAX)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		const char **p = cv_pool_alloc(ex->pool, cap * sizeof *p);
		if (!p)
			return;
		if (l->n)
			memcpy(p, l->v, l->n * sizeof *p);
		l->v = p;
		l->cap = cap;
	}
	l->v[l->n++] = cv_pool_strdup(ex->pool, id);
	if (!l->v[l->n - 1])
		l->n--;
}

static void add_patient(cv_exchange_t *ex, note_t *n, const char *id)
{
	add_id(ex, &n->patients, id);
}

/* Names type/id (at version, when > 0) and its patients in the record. */
static void note_entity(cv_exchange_t *ex, note_t *n, const char *type, const char *id, int64_t version,
			const char *const *patients, size_t npatients)
{
	if (n->nentities < CV_AUDIT_ENTITIES_MAX) {
		const char *ref = version > 0 ? cv_pool_printf(ex->pool, "%s/%s/_history/%lld", type, id, (long long)version)
					      : cv_pool_printf(ex->pool, "%s/%s", type, id);
		if (ref)
			n->entities[n->nentities++] = ref;
	}
	for (size_t i = 0; i < npatients; i++)
		add_patient(ex, n, patients[i]);
}

void cv_audit_resource(cv_exchange_t *ex, const char *type, const char *id, int64_t version,
		       const char *const *patients, size_t npatients)
{
	note_t *n = note_of(ex);
	if (!n || !type || !id)
		return;
	n->nres++;
	note_entity(ex, n, type, id, version, patients, npatients);
}

void cv_audit_asked(cv_exchange_t *ex, const char *type, const char *id, const char *const *patients,
		    size_t npatients)
{
	note_t *n = note_of(ex);
	if (n && type && id)
		note_entity(ex, n, type, id, 0, patients, npatients);
}

void cv_audit_patient(cv_exchange_t *ex, const char *patient_id)
{
	note_t *n = note_of(ex);
	if (n && patient_id)
		add_patient(ex, n, patient_id);
}

void cv_audit_denied(cv_exchange_t *ex)
{
	note_t *n = note_of(ex);
	if (n)
		n->flags |= CV_AUDIT_F_DENIED;
}

void cv_audit_glass_patient(cv_exchange_t *ex, const char *patient_id)
{
	note_t *n = note_of(ex);
	if (n && patient_id) {
		add_patient(ex, n, patient_id);
		add_id(ex, &n->glass, patient_id);
	}
}

void cv_audit_break_glass(cv_exchange_t *ex)
{
	note_t *n = note_of(ex);
	if (n)
		n->flags |= CV_AUDIT_F_BREAK_GLASS;
}

void cv_audit_kind(cv_exchange_t *ex, cv_audit_type type, const char *subtype, char action)
{
	note_t *n = note_of(ex);
	if (!n)
		return;
	n->typed = true;
	n->type = type;
	n->subtype = subtype;
	n->action = action;
	if (type != CV_AUDIT_REST)
		n->flags |= CV_AUDIT_F_SECURITY;
	if (type == CV_AUDIT_ALERT)
		n->flags |= CV_AUDIT_F_ALERT;
	if (type == CV_AUDIT_EXPORT)
		n->flags |= CV_AUDIT_F_EXPORT;
}

void cv_audit_agent(cv_exchange_t *ex, const char *id, const char *role, const char *link)
{
	note_t *n = note_of(ex);
	if (!n || !id)
		return;
	n->agent = cv_pool_strdup(ex->pool, id);
	n->role = role ? cv_pool_strdup(ex->pool, role) : NULL;
	n->link = link && link[0] ? cv_pool_strdup(ex->pool, link) : NULL;
}

void cv_audit_target(cv_exchange_t *ex, const char *id)
{
	note_t *n = note_of(ex);
	if (n && id)
		n->target = cv_pool_strdup(ex->pool, id);
}

void cv_audit_reason(cv_exchange_t *ex, const char *reason)
{
	note_t *n = note_of(ex);
	if (n && reason)
		n->reason = cv_pool_strdup(ex->pool, reason);
}

/* ---- the record of a request ---------------------------------------------- */

bool cv_audit_route(const char *route)
{
	static const char *const quiet[] = { "-", "/healthz", "/readyz", "/fhir/metadata" };
	if (!route)
		return false;
	for (size_t i = 0; i < sizeof quiet / sizeof quiet[0]; i++)
		if (strcmp(route, quiet[i]) == 0)
			return false;
	return strstr(route, "/.well-known/") == NULL;
}

/* The FHIR interaction of a route and method: subtype and action. */
static void interaction(const cv_exchange_t *ex, const char **subtype, char *action)
{
	const char *r = ex->route ? ex->route : "-", *m = ex->method ? ex->method : "";
	bool get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
	*action = 'E';
	if (strstr(r, "$everything") || strstr(r, "$break-glass") || strstr(r, "$access-report")) {
		*subtype = "operation";
	} else if (strstr(r, "/_history/{vid}")) {
		*subtype = "vread", *action = 'R';
	} else if (strstr(r, "_history")) {
		*subtype = strstr(r, "{id}") ? "history-instance" : strstr(r, "{type}") ? "history-type" : "history-system";
		*action = 'R';
	} else if (strcmp(r, "/fhir") == 0) {
		*subtype = "batch"; /* or transaction: the handler says which */
	} else if (strstr(r, "_search") || (get && strcmp(r, "/fhir/{type}") == 0)) {
		*subtype = "search-type";
	} else if (get) {
		*subtype = "read", *action = 'R';
	} else if (strcmp(m, "POST") == 0) {
		*subtype = "create", *action = 'C';
	} else if (strcmp(m, "PUT") == 0) {
		*subtype = "update", *action = 'U';
	} else if (strcmp(m, "DELETE") == 0) {
		*subtype = "delete", *action = 'D';
	} else {
		*subtype = "other";
	}
}

static const char *agent_kind(const cv_principal_t *p)
{
	switch (p->kind) {
	case CV_PRINCIPAL_USER: return "user";
	case CV_PRINCIPAL_CLIENT: return "client";
	case CV_PRINCIPAL_ADMIN: return "admin";
	default: return "anonymous";
	}
}

/* Why, as a v3 ActReason code: what the role reads for. */
static const char *purpose(const cv_principal_t *p, unsigned flags)
{
	if (flags & CV_AUDIT_F_BREAK_GLASS)
		return "ETREAT";
	if (p->kind == CV_PRINCIPAL_ADMIN)
		return "HSYSADMIN";
	if (p->kind != CV_PRINCIPAL_USER || !p->role)
		return NULL;
	if (strcmp(p->role, "doctor") == 0 || strcmp(p->role, "nurse") == 0)
		return "TREAT";
	if (strcmp(p->role, "billing") == 0)
		return "HPAYMT";
	if (strcmp(p->role, "patient") == 0)
		return "PATRQT";
	if (strcmp(p->role, "auditor") == 0)
		return "HOPERAT";
	if (strcmp(p->role, "admin") == 0)
		return "HSYSADMIN";
	return NULL;
}

/* A search by POST with its parameters in a form body. */
static bool form_search(const cv_exchange_t *ex)
{
	size_t n = ex->path ? strlen(ex->path) : 0;
	return ex->method && strcmp(ex->method, "POST") == 0 && n >= 8 && strcmp(ex->path + n - 8, "/_search") == 0 &&
	       ex->body && ex->body_len && ex->body_len <= 60000;
}

/* The query of ex (sealed with the record: it may name patients): the path
 * after the FHIR base and the parameters ("Observation?code=x"), for a
 * search or any request with parameters; NULL for others. */
static const char *query_text(cv_exchange_t *ex, const char *subtype)
{
	cv_buf_t b;
	bool search = subtype && strncmp(subtype, "search", 6) == 0;
	if (!ex->nparams && !search)
		return NULL;
	const char *path = ex->path ? ex->path : "";
	path += strncmp(path, "/fhir/", 6) == 0 ? 6 : strncmp(path, "/fhir", 5) == 0 ? 5 : 0;
	cv_buf_init(&b, 64u << 10);
	cv_rc rc = cv_buf_puts(&b, path);
	if (!rc && ex->nparams)
		rc = cv_buf_puts(&b, "?");
	for (size_t i = 0; !rc && i < ex->nparams && i < CV_EX_MAX_PARAMS; i++) {
		if (i)
			rc = cv_buf_puts(&b, "&");
		if (!rc)
			rc = cv_buf_url_encode(&b, ex->params[i].name);
		if (!rc)
			rc = cv_buf_puts(&b, "=");
		if (!rc)
			rc = cv_buf_url_encode(&b, ex->params[i].value);
	}
	if (!rc && form_search(ex)) /* POST .../_search: the form is the query (already URL-encoded) */
		rc = cv_buf_printf(&b, "%s%.*s", ex->nparams ? "&" : "?", (int)strnlen(ex->body, ex->body_len), ex->body);
	const char *q = rc ? NULL : cv_pool_strndup(ex->pool, b.data ? b.data : "", b.len);
	cv_buf_release(&b);
	return q;
}

/* The event of ex as it stands, answered with `status`. */
static void event_of(cv_exchange_t *ex, note_t *n, unsigned status, cv_audit_event_t *e)
{
	const cv_principal_t *p = &ex->principal;
	*e = (cv_audit_event_t){ .status = status, .outcome = cv_audit_outcome(status), .flags = n->flags,
				 .agent = p->id ? p->id : "anonymous", .agent_kind = agent_kind(p), .role = p->role,
				 .link = p->link, .client = p->client, .address = ex->peer,
				 .request_id = ex->request_id, .method = ex->method, .route = ex->route,
				 .entities = n->entities, .nentities = n->nentities, .patients = n->patients.v,
				 .npatients = n->patients.n, .glass = n->glass.v, .nglass = n->glass.n, .nres = n->nres,
				 .target = n->target, .reason = n->reason };
	if (n->typed) {
		e->type = n->type;
		e->subtype = n->subtype;
		e->action = n->action;
	} else {
		e->type = CV_AUDIT_REST;
		interaction(ex, &e->subtype, &e->action);
	}
	if (n->agent && p->kind == CV_PRINCIPAL_NONE) {
		e->agent = n->agent;
		e->agent_kind = strncmp(n->agent, "unknown", 7) == 0 ? "anonymous" : n->role ? "user" : "client";
		e->role = n->role;
		e->link = n->link;
	}
	if ((status == 401 || status == 403) && e->type == CV_AUDIT_REST)
		e->flags |= CV_AUDIT_F_DENIED;
	if ((e->flags & CV_AUDIT_F_DENIED) && ex->decision)
		e->outcome_text = ex->decision;
	e->purpose = purpose(p, e->flags);
	if (e->type == CV_AUDIT_REST && ex->route && strncmp(ex->route, "/fhir", 5) == 0)
		e->query = query_text(ex, e->subtype);
}

cv_rc cv_audit_attach(cv_exchange_t *ex, unsigned status, cv_store_write_t **out)
{
	note_t *n = note_of(ex);
	cv_store_write_t *w = cv_pool_alloc(ex->pool, sizeof *w);
	if (!n || !w)
		return CV_E_NOMEM;
	cv_audit_event_t e;
	event_of(ex, n, status, &e);
	cv_rc rc = cv_audit_build(&e, ex->pool, w);
	if (rc)
		return rc;
	w->result = CV_E_ABORTED; /* committed only when the back end says so: else the request records itself */
	n->attached = w;
	*out = w;
	return CV_OK;
}

cv_rc cv_audit_intent(cv_exchange_t *ex, cv_store_t *s, const char *subtype)
{
	note_t *n = note_of(ex);
	if (!n)
		return CV_E_NOMEM;
	cv_audit_event_t e;
	event_of(ex, n, 0, &e);
	e.subtype = subtype;
	e.action = 'E';
	return cv_audit_record(s, &e);
}

static cv_rc companion_record(void *arg, const cv_store_write_t *w, cv_store_write_t **rec)
{
	const cv_audit_companion_t *c = arg;
	const cv_store_write_t *m = c->type ? cv_store_version_of(w, c->type) : NULL;
	*rec = NULL;
	if (!m)
		return CV_OK;
	if (c->target_from_write)
		cv_audit_target(c->ex, m->id);
	return cv_audit_attach(c->ex, c->status, rec);
}

void cv_audit_companion_begin(cv_audit_companion_t *c)
{
	cv_store_companion_set(companion_record, c);
}

void cv_audit_companion_end(void)
{
	cv_store_companion_clear();
}

cv_rc cv_audit_attach_entry(cv_exchange_t *ex, const char *subtype, char action, unsigned status, const char *type,
			    const char *id, int64_t version, const char *const *patients, size_t npatients,
			    cv_store_write_t **out)
{
	note_t *whole = note_of(ex), *n = cv_pool_alloc(ex->pool, sizeof *n);
	cv_store_write_t *w = cv_pool_alloc(ex->pool, sizeof *w);
	if (!whole || !n || !w)
		return CV_E_NOMEM;
	*n = (note_t){ .typed = true, .type = CV_AUDIT_REST, .subtype = subtype, .action = action,
		       .flags = whole->flags & CV_AUDIT_F_BREAK_GLASS, .nres = 1, .nentities = 1 };
	n->entities[0] = version > 0 ? cv_pool_printf(ex->pool, "%s/%s/_history/%lld", type, id, (long long)version)
				     : cv_pool_printf(ex->pool, "%s/%s", type, id);
	if (!n->entities[0])
		return CV_E_NOMEM;
	for (size_t i = 0; i < npatients; i++)
		add_patient(ex, n, patients[i]);
	cv_audit_event_t e;
	event_of(ex, n, status, &e);
	e.query = NULL;
	cv_rc rc = cv_audit_build(&e, ex->pool, w);
	if (!rc)
		*out = w;
	return rc;
}

cv_rc cv_audit_request(cv_audit_t *a, cv_exchange_t *ex, cv_store_write_t **out)
{
	*out = NULL;
	if (!cv_audit_route(ex->route))
		return CV_OK;
	note_t *n = note_of(ex);
	if (!n)
		return CV_E_NOMEM;
	if (n->attached && n->attached->result == CV_OK)
		return CV_OK;
	cv_store_write_t *w = cv_pool_alloc(ex->pool, sizeof *w);
	if (!w)
		return CV_E_NOMEM;
	cv_audit_event_t e;
	event_of(ex, n, ex->status, &e);
	cv_rc rc = cv_audit_build(&e, ex->pool, w);
	if (!rc)
		*out = w;
	return rc;
}
