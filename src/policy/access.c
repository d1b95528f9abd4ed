/*
 * access.c - the resource-level decisions: relationship to the patient,
 * consent, launch patient and granular scopes, the state before and after
 * a write; the search clause that narrows a search to what the caller may
 * see; the reduced view billing staff get of a Patient; break-glass.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "model/json.h"
#include "policy/consent.h"
#include "policy/lookup.h"

#define COMPARTMENT_MAX 32  /* patients one resource may point at (more: decided on the first ones) */
#define CONSENT_CACHE 16    /* patients whose consents one request keeps parsed */
#define CLAUSE_TERMS_MAX 1024
#define BREAK_GLASS_MAX 64  /* live declarations one account keeps */

typedef struct related {
	const char *id; /* patient id */
	char kind;      /* 'A' assigned, 'T' treating */
} related_t;

typedef struct glass {
	const char *id;
	int64_t expires_us;
} glass_t;

#define SCOPE_MEMO 8 /* scope answers one request keeps */

/* What the token's scopes say for (context, type, permission), when no
 * granular scope is involved: the same for every resource of the type. */
typedef struct scope_memo {
	cv_scope_ctx ctx;
	const char *type;
	unsigned need;
	bool granular;  /* a granular scope applies: decided per resource */
	bool allowed;
} scope_memo_t;

typedef struct parsed_consent {
	const char *patient;
	json_object *consents;
} parsed_consent_t;

struct cv_access {
	cv_policy_t *pol;
	const cv_principal_t *p;
	cv_pool_t *pool;
	cv_rules_role role;
	bool client;               /* a backend client: system scopes */
	const char *self;          /* a patient: their Patient id */
	const char *practitioner;  /* a nurse or doctor: "Practitioner/x" */
	int64_t seq;               /* the lookups' write sequence (0: not read yet) */
	int64_t now;
	bool loaded;               /* relationships and break-glass read */
	size_t nrel;
	related_t *rel;            /* sorted by id */
	size_t norgs;
	const char **orgs;         /* "Organization/y" */
	size_t nglass;
	glass_t *glass;
	size_t ncon;
	parsed_consent_t con[CONSENT_CACHE];
	bool broke_glass;          /* a decision relied on break-glass */
	size_t nmemo;
	scope_memo_t memo[SCOPE_MEMO];
};

cv_rc cv_access_new(cv_policy_t *pol, const cv_principal_t *p, cv_pool_t *pool, cv_access_t **out)
{
	*out = NULL;
	if (p->kind == CV_PRINCIPAL_ADMIN)
		return CV_OK;
	cv_access_t *a = cv_pool_alloc(pool, sizeof *a);
	if (!a)
		return CV_E_NOMEM;
	memset(a, 0, sizeof *a);
	a->pol = pol;
	a->p = p;
	a->pool = pool;
	a->client = p->kind == CV_PRINCIPAL_CLIENT;
	a->role = p->kind == CV_PRINCIPAL_USER ? cv_rules_role_of(p->role) : CV_RULES_NONE;
	a->now = cv_time_now_us();
	if (p->link && strncmp(p->link, "Patient/", 8) == 0 && a->role == CV_RULES_PATIENT)
		a->self = p->link + 8;
	if (p->link && strncmp(p->link, "Practitioner/", 13) == 0 &&
	    (a->role == CV_RULES_NURSE || a->role == CV_RULES_DOCTOR))
		a->practitioner = p->link;
	*out = a;
	return CV_OK;
}

/* The types the lookups read: a write of one of them ends every cached lookup. */
static const char *const looked_up[] = { "CareTeam", "Encounter", "PractitionerRole", "Consent", CV_BREAK_GLASS_TYPE };

/* The store's latest write among those types, read once per request. */
static cv_rc lookup_seq(cv_access_t *a, int64_t *out)
{
	cv_rc rc = CV_OK;
	if (!a->seq)
		rc = cv_store_types_seq(a->pol->store, looked_up, sizeof looked_up / sizeof looked_up[0], &a->seq);
	*out = a->seq;
	return rc;
}

static const scope_memo_t memo_granular = { .granular = true }, memo_allowed = { .allowed = true },
			  memo_refused = { .allowed = false };

/* What the caller's scopes say for (ctx, type, need), parsed once per request. */
static const scope_memo_t *scope_memo(cv_access_t *a, cv_scope_ctx ctx, const char *type, unsigned need)
{
	for (size_t i = 0; i < a->nmemo; i++) {
		const scope_memo_t *m = &a->memo[i];
		if (m->ctx == ctx && m->need == need && strcmp(m->type, type) == 0)
			return m;
	}
	bool granular = cv_rules_scope_granular(a->p->scope, ctx, type);
	bool allowed = !granular && cv_rules_scope_allows(a->pol, a->p->scope, ctx, type, need, NULL);
	const char *t = cv_pool_strdup(a->pool, type);
	if (!t || a->nmemo == SCOPE_MEMO) /* no room to remember: the answer all the same */
		return granular ? &memo_granular : allowed ? &memo_allowed : &memo_refused;
	a->memo[a->nmemo] = (scope_memo_t){ .ctx = ctx, .type = t, .need = need, .granular = granular, .allowed = allowed };
	return &a->memo[a->nmemo++];
}

/* cv_rules_scope_allows on the caller's scopes, without parsing them again
 * for each resource of a search when no granular scope is involved. */
static bool scope_ok(cv_access_t *a, cv_scope_ctx ctx, const char *type, unsigned need, json_object *res)
{
	const scope_memo_t *m = scope_memo(a, ctx, type, need);
	return m->granular ? cv_rules_scope_allows(a->pol, a->p->scope, ctx, type, need, res) : m->allowed;
}

bool cv_access_filters(cv_access_t *a, const char *type)
{
	if (!a)
		return false;
	if (!a->client)
		return true;
	/* a client sees every resource of a type its scopes cover without a granular query */
	const scope_memo_t *m = scope_memo(a, CV_SCOPE_SYSTEM, type, CV_SCOPE_S);
	return m->granular || !m->allowed;
}

bool cv_access_broke_glass(const cv_access_t *a)
{
	return a && a->broke_glass;
}

/* ---- relationships ------------------------------------------------------- */

static int related_cmp(const void *x, const void *y)
{
	return strcmp(((const related_t *)x)->id, ((const related_t *)y)->id);
}

static cv_rc parse_relations(cv_access_t *a, const char *text)
{
	size_t lines = 0;
	for (const char *c = text; *c; c++)
		lines += *c == '\n';
	a->rel = cv_pool_alloc(a->pool, (lines ? lines : 1) * sizeof *a->rel);
	a->orgs = cv_pool_alloc(a->pool, (lines ? lines : 1) * sizeof *a->orgs);
	if (!a->rel || !a->orgs)
		return CV_E_NOMEM;
	for (const char *c = text; *c;) {
		const char *nl = strchr(c, '\n');
		size_t l = nl ? (size_t)(nl - c) : strlen(c);
		char *id = l > 2 ? cv_pool_strndup(a->pool, c + 2, l - 2) : NULL;
		if (id && c[0] == 'O')
			a->orgs[a->norgs++] = cv_pool_printf(a->pool, "Organization/%s", id);
		else if (id)
			a->rel[a->nrel++] = (related_t){ .id = id, .kind = c[0] };
		c = nl ? nl + 1 : c + l;
	}
	qsort(a->rel, a->nrel, sizeof *a->rel, related_cmp);
	return CV_OK;
}

static cv_rc parse_glass(cv_access_t *a, const char *text)
{
	a->glass = cv_pool_alloc(a->pool, BREAK_GLASS_MAX * sizeof *a->glass);
	if (!a->glass)
		return CV_E_NOMEM;
	for (const char *c = text; *c && a->nglass < BREAK_GLASS_MAX;) {
		char *end;
		long long exp = strtoll(c, &end, 10);
		const char *nl = strchr(end, '\n');
		size_t l = nl ? (size_t)(nl - end) : strlen(end);
		if (*end == ' ' && l > 1 && exp > a->now)
			a->glass[a->nglass++] = (glass_t){ .id = cv_pool_strndup(a->pool, end + 1, l - 1), .expires_us = exp };
		c = nl ? nl + 1 : end + l;
	}
	return CV_OK;
}

static cv_rc load(cv_access_t *a)
{
	const char *rel, *glass;
	int64_t seq;
	if (a->loaded || !a->practitioner)
		return CV_OK;
	cv_rc rc = lookup_seq(a, &seq);
	if (!rc)
		rc = cv_lookup_relations(a->pol, seq, a->practitioner, a->role == CV_RULES_DOCTOR, a->pool, &rel);
	if (!rc)
		rc = parse_relations(a, rel);
	if (!rc)
		rc = cv_lookup_break_glass(a->pol, seq, a->p->id, a->pool, &glass);
	if (!rc)
		rc = parse_glass(a, glass);
	a->loaded = !rc;
	return rc;
}

static bool under_glass(const cv_access_t *a, const char *patient)
{
	for (size_t i = 0; i < a->nglass; i++)
		if (strcmp(a->glass[i].id, patient) == 0)
			return true;
	return false;
}

/* How the caller relates to the patient: 'O' own, 'A' assigned, 'T'
 * treating, 'B' break-glass, 0 not at all. */
static char relation(cv_access_t *a, const char *patient)
{
	if (a->role == CV_RULES_PATIENT)
		return a->self && strcmp(a->self, patient) == 0 ? 'O' : 0;
	if (!a->practitioner)
		return 0;
	if (under_glass(a, patient)) /* the emergency covers everything of the patient, consent included */
		return 'B';
	size_t lo = 0, hi = a->nrel;
	while (lo < hi) { /* the first entry for the patient */
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(a->rel[mid].id, patient) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* a nurse counts care teams only; a doctor encounters too */
	for (size_t i = lo; i < a->nrel && strcmp(a->rel[i].id, patient) == 0; i++)
		if (a->rel[i].kind == 'A' || a->role == CV_RULES_DOCTOR)
			return a->rel[i].kind;
	return 0;
}

/* ---- what a resource is about ------------------------------------------- */

static void add_patient(const char **ids, size_t *n, const char *id)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(ids[i], id) == 0)
			return;
	if (*n < COMPARTMENT_MAX)
		ids[(*n)++] = id;
}

/* The ids remembered for a stored version, or false. */
static bool remembered(cv_access_t *a, int64_t seq, const char **ids, size_t *n)
{
	char *text = (char *)cv_lookup_compartments_get(a->pol, seq, a->pool);
	if (!text)
		return false;
	for (char *c = text, *nl; *c && (nl = strchr(c, '\n')); c = nl + 1) {
		*nl = '\0';
		add_patient(ids, n, c);
	}
	return true;
}

static void remember(cv_access_t *a, int64_t seq, const char *const *ids, size_t n)
{
	cv_buf_t b;
	cv_buf_init(&b, 64u << 10);
	cv_rc rc = cv_buf_append(&b, "", 0);
	for (size_t i = 0; !rc && i < n; i++)
		rc = cv_buf_printf(&b, "%s\n", ids[i]);
	if (!rc)
		cv_lookup_compartments_put(a->pol, seq, b.data ? b.data : "");
	cv_buf_release(&b);
}

/* The patients whose compartment the resource is in (seq > 0: a stored
 * version, whose answer is remembered). */
static cv_rc compartments(cv_access_t *a, const char *type, int64_t seq, json_object *res, const char **ids, size_t *n)
{
	const char *const *codes;
	size_t ncodes = cv_sp_compartment(a->pol->sp, type, &codes);
	*n = 0;
	if (seq > 0 && remembered(a, seq, ids, n))
		return CV_OK;
	if (!res)
		return CV_E_NOTFOUND;
	if (strcmp(type, "Patient") == 0 && cv_lookup_str(res, "id"))
		add_patient(ids, n, cv_lookup_str(res, "id"));
	for (size_t i = 0; i < ncodes; i++) {
		const cv_sp_t *sp = cv_sp_find(a->pol->sp, type, codes[i]);
		cv_sp_entries_t es = { .pool = a->pool };
		if (!sp)
			continue;
		cv_rc rc = cv_sp_extract_one(sp, a->pol->model, res, CV_SP_MATCH, &es);
		if (rc == CV_E_NOMEM)
			return rc;
		for (size_t k = 0; k < es.n; k++) {
			const cv_ix_entry_t *e = &es.v[k];
			if (e->kind == CV_IX_HASH && e->key_len > 10 && strncmp(e->key, "r:Patient/", 10) == 0) {
				char *id = cv_pool_strndup(a->pool, e->key + 10, e->key_len - 10);
				if (!id)
					return CV_E_NOMEM;
				add_patient(ids, n, id);
			}
		}
	}
	if (seq > 0)
		remember(a, seq, ids, *n);
	return CV_OK;
}

cv_rc cv_policy_patients(cv_policy_t *pol, const char *type, int64_t seq, json_object *res, cv_pool_t *pool,
			 const char ***ids, size_t *n)
{
	cv_access_t a = { .pol = pol, .pool = pool };
	*ids = cv_pool_alloc(pool, COMPARTMENT_MAX * sizeof **ids);
	*n = 0;
	return *ids ? compartments(&a, type, seq, res, *ids, n) : CV_E_NOMEM;
}

/* ---- consent ------------------------------------------------------------- */

static cv_rc consents_of(cv_access_t *a, const char *patient, json_object **out)
{
	for (size_t i = 0; i < a->ncon; i++)
		if (strcmp(a->con[i].patient, patient) == 0) {
			*out = a->con[i].consents;
			return CV_OK;
		}
	int64_t seq;
	cv_rc rc = lookup_seq(a, &seq);
	const char *text, *err;
	if (!rc)
		rc = cv_lookup_consents(a->pol, seq, patient, a->pool, &text);
	cv_json_limits_t lim;
	cv_json_limits_default(&lim);
	lim.max_depth = 64;
	if (!rc && (rc = cv_json_parse(text, strlen(text), &lim, a->pool, out, &err)) == CV_OK)
		rc = cv_json_pool_own(a->pool, *out);
	const char *key = rc ? NULL : cv_pool_strdup(a->pool, patient); /* patient may live in a candidate's tree */
	if (!rc && key && a->ncon < CONSENT_CACHE)
		a->con[a->ncon++] = (parsed_consent_t){ .patient = key, .consents = *out };
	return rc;
}

static const char *purpose_of(const cv_access_t *a, char rel)
{
	if (rel == 'B')
		return "ETREAT";
	switch (a->role) {
	case CV_RULES_BILLING: return "HPAYMT";
	case CV_RULES_RESEARCHER: return "HRESCH";
	default: return "TREAT";
	}
}

/* True when the patient's consent denies this caller this resource. */
static cv_rc consent_denies(cv_access_t *a, const char *patient, char rel, json_object *res, bool *denies)
{
	json_object *consents;
	*denies = false;
	if (rel == 'O' || rel == 'B') /* the patient themselves; an emergency overrides */
		return CV_OK;
	cv_rc rc = consents_of(a, patient, &consents);
	if (rc || !json_object_array_length(consents))
		return rc;
	cv_consent_access_t ca = { .practitioner = a->practitioner, .orgs = a->orgs, .norgs = a->norgs,
				   .purpose = purpose_of(a, rel), .labels = cv_lookup_get(cv_lookup_get(res, "meta"), "security"),
				   .now_us = a->now };
	*denies = cv_consent_denies(consents, &ca, a->pool);
	return CV_OK;
}

/* ---- what a patient authors ---------------------------------------------- */

static bool refers_to(cv_access_t *a, json_object *ref, const char *patient)
{
	const char *id = cv_lookup_ref_id(a->pool, cv_lookup_str(ref, "reference"), "Patient");
	return id && strcmp(id, patient) == 0;
}

static bool all_refer(cv_access_t *a, json_object *arr, const char *key, const char *patient)
{
	size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
	for (size_t i = 0; i < n; i++) {
		json_object *x = json_object_array_get_idx(arr, i);
		if (!refers_to(a, key ? cv_lookup_get(x, key) : x, patient))
			return false;
	}
	return n > 0;
}

static bool any_refers(cv_access_t *a, json_object *arr, const char *key, const char *patient)
{
	size_t n = arr && json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : 0;
	for (size_t i = 0; i < n; i++)
		if (refers_to(a, cv_lookup_get(json_object_array_get_idx(arr, i), key), patient))
			return true;
	return false;
}

static bool patient_authored(cv_access_t *a, const char *type, json_object *res)
{
	const char *me = a->self, *status = cv_lookup_str(res, "status");
	if (strcmp(type, "Consent") == 0)
		return refers_to(a, cv_lookup_get(res, "patient"), me);
	if (strcmp(type, "QuestionnaireResponse") == 0)
		return refers_to(a, cv_lookup_get(res, "subject"), me) && (!cv_lookup_get(res, "author") || refers_to(a, cv_lookup_get(res, "author"), me));
	if (strcmp(type, "Communication") == 0)
		return refers_to(a, cv_lookup_get(res, "sender"), me);
	if (strcmp(type, "Appointment") == 0)
		return status && (strcmp(status, "proposed") == 0 || strcmp(status, "cancelled") == 0) &&
		       any_refers(a, cv_lookup_get(res, "participant"), "actor", me);
	if (strcmp(type, "Observation") == 0)
		return all_refer(a, cv_lookup_get(res, "performer"), NULL, me);
	return false;
}

static bool nurse_records(const char *type)
{
	return strcmp(type, "Observation") == 0 || strcmp(type, "DocumentReference") == 0 ||
	       strcmp(type, "Communication") == 0;
}

/* ---- the decisions ------------------------------------------------------- */

static bool is_write(cv_action act)
{
	return act == CV_ACT_FHIR_CREATE || act == CV_ACT_FHIR_UPDATE || act == CV_ACT_FHIR_DELETE;
}

/* Billing staff reach of the record group only Patient. */
static bool type_in_reach(const cv_access_t *a, cv_group g, const char *type)
{
	return !(a->role == CV_RULES_BILLING && g == CV_GROUP_RECORD && strcmp(type, "Patient") != 0);
}

/* The token's scopes (a person through an app): user/ scopes, or patient/
 * scopes within the launch patient's compartment (or on resources of no patient). */
static bool token_allows(cv_access_t *a, cv_action act, const char *type, cv_group g, json_object *res,
			 const char *const *pats, size_t npats)
{
	unsigned need = cv_rules_scope_bit(act);
	if (!a->p->client)
		return true;
	if (scope_ok(a, CV_SCOPE_USER, type, need, res))
		return true;
	if (!a->p->patient || !scope_ok(a, CV_SCOPE_PATIENT, type, need, res))
		return false;
	if (g == CV_GROUP_DIRECTORY || g == CV_GROUP_REFERENCE)
		return true;
	size_t inside = 0;
	for (size_t i = 0; i < npats; i++)
		inside += strcmp(pats[i], a->p->patient) == 0;
	/* a read needs to be inside the launch patient's compartment, a write must stay inside it */
	return inside && (!is_write(act) || inside == npats);
}

bool cv_access_glass_for(cv_access_t *a, const char *patient)
{
	return a && a->broke_glass && patient && relation(a, patient) == 'B';
}

/* The relationship rules: reads need one related patient, writes every one. */
static cv_rc related_ok(cv_access_t *a, cv_action act, json_object *res, const char **pats, size_t npats, bool *ok,
			const char **why)
{
	bool write = is_write(act), any = false, glass = false;
	*ok = false;
	cv_rc rc = load(a);
	if (rc)
		return rc;
	if (!npats) {
		*why = "the resource is in no patient's compartment";
		return CV_OK;
	}
	for (size_t i = 0; i < npats; i++) {
		char rel = relation(a, pats[i]);
		bool denies = false;
		if (rel && (rc = consent_denies(a, pats[i], rel, res, &denies)))
			return rc;
		if (denies && !write) {
			*why = "the patient's consent denies it";
			return CV_OK;
		}
		if ((!rel || denies) && write) {
			*why = rel ? "the patient's consent denies it" : "a patient of the resource is not related to the caller";
			return CV_OK;
		}
		any = any || rel;
		glass = glass || rel == 'B';
	}
	if (!any) {
		*why = "no relationship to the resource's patient";
		return CV_OK;
	}
	a->broke_glass = a->broke_glass || glass;
	*why = glass ? "break-glass" : "relationship to the patient";
	*ok = true;
	return CV_OK;
}

static cv_rc decide(cv_access_t *a, cv_action act, const char *type, int64_t seq, json_object *res, cv_verdict *out,
		    const char **why)
{
	cv_group g = cv_policy_group(a->pol, type);
	cv_verdict no = is_write(act) ? CV_ACCESS_FORBIDDEN : CV_ACCESS_HIDDEN;
	const char *pats[COMPARTMENT_MAX];
	size_t npats = 0;
	*out = no;
	if ((act == CV_ACT_FHIR_UPDATE || act == CV_ACT_FHIR_DELETE) && cv_access_immutable(type)) {
		*why = "the audit trail is never changed";
		return CV_OK;
	}
	if (a->client) {
		*why = "backend client scopes";
		if (scope_ok(a, CV_SCOPE_SYSTEM, type, cv_rules_scope_bit(act), res))
			*out = CV_ACCESS_PERMIT;
		return CV_OK;
	}
	if (!cv_rules_role_may(a->role, g, act) || !type_in_reach(a, g, type)) {
		*why = "the role does not have this interaction on this type";
		return CV_OK;
	}
	bool relate = cv_rules_needs_relation(a->role, g);
	bool consent = a->role == CV_RULES_BILLING && (g == CV_GROUP_BILLING || g == CV_GROUP_RECORD);
	cv_rc rc = relate || consent || a->p->client ? compartments(a, type, seq, res, pats, &npats) : CV_OK;
	if (rc)
		return rc;
	for (size_t i = 0; consent && i < npats; i++) {
		bool denies;
		if ((rc = consent_denies(a, pats[i], 'P', res, &denies)))
			return rc;
		if (denies) {
			*why = "the patient's consent denies it";
			return CV_OK;
		}
	}
	if (relate) {
		bool ok;
		if ((rc = related_ok(a, act, res, pats, npats, &ok, why)) || !ok)
			return rc;
	}
	if (a->role == CV_RULES_PATIENT && is_write(act) && !patient_authored(a, type, res)) {
		*why = "a patient changes only what a patient authors";
		return CV_OK;
	}
	if (a->role == CV_RULES_NURSE && act == CV_ACT_FHIR_CREATE && !nurse_records(type)) {
		*why = "a nurse records observations, documents and communications";
		return CV_OK;
	}
	if (!token_allows(a, act, type, g, res, pats, npats)) {
		*why = "the token's scopes do not cover it";
		return CV_OK;
	}
	if (!relate)
		*why = "role permits it";
	*out = CV_ACCESS_PERMIT;
	return CV_OK;
}

cv_rc cv_access_check(cv_access_t *a, cv_action act, const char *type, json_object *res, cv_verdict *out,
		      const char **reason)
{
	return cv_access_check_stored(a, act, type, 0, res, out, reason);
}

cv_rc cv_access_check_stored(cv_access_t *a, cv_action act, const char *type, int64_t seq, json_object *res,
			     cv_verdict *out, const char **reason)
{
	const char *why = "unrestricted";
	cv_rc rc = CV_OK;
	*out = CV_ACCESS_PERMIT;
	if (a)
		rc = decide(a, act, type, seq, res, out, &why);
	else if ((act == CV_ACT_FHIR_UPDATE || act == CV_ACT_FHIR_DELETE) && cv_access_immutable(type))
		*out = CV_ACCESS_FORBIDDEN;
	if (reason)
		*reason = why;
	return rc;
}

cv_rc cv_access_write(cv_access_t *a, cv_action act, const char *type, json_object *before, json_object *after,
		      cv_verdict *out, const char **reason)
{
	cv_rc rc = CV_OK;
	*out = CV_ACCESS_PERMIT;
	if (before) {
		rc = cv_access_check(a, CV_ACT_FHIR_READ, type, before, out, reason);
		if (!rc && *out == CV_ACCESS_PERMIT)
			rc = cv_access_check(a, act == CV_ACT_FHIR_DELETE ? CV_ACT_FHIR_DELETE : CV_ACT_FHIR_UPDATE, type,
					     before, out, reason);
	}
	if (!rc && *out == CV_ACCESS_PERMIT && after)
		rc = cv_access_check(a, before ? CV_ACT_FHIR_UPDATE : CV_ACT_FHIR_CREATE, type, after, out, reason);
	return rc;
}

/* ---- search -------------------------------------------------------------- */

/* The patients a search of type may reach, or *n = SIZE_MAX for no narrowing. */
static cv_rc reach(cv_access_t *a, const char *type, const char ***ids, size_t *n)
{
	cv_group g = cv_policy_group(a->pol, type);
	*n = SIZE_MAX;
	if (a->client || !cv_rules_needs_relation(a->role, g))
		return CV_OK;
	cv_rc rc = load(a); /* before sizing: it fills a->rel and a->glass */
	if (rc)
		return rc;
	const char **v = cv_pool_alloc(a->pool, (a->nrel + a->nglass + 2) * sizeof *v);
	if (!v)
		return CV_E_NOMEM;
	bool launch_only = a->p->client && a->p->patient && !scope_ok(a, CV_SCOPE_USER, type, CV_SCOPE_S, NULL);
	size_t k = 0;
	if (launch_only) {
		v[k++] = a->p->patient;
	} else if (a->role == CV_RULES_PATIENT) {
		if (a->self)
			v[k++] = a->self;
	} else {
		for (size_t i = 0; i < a->nrel; i++)
			if ((a->rel[i].kind == 'A' || a->role == CV_RULES_DOCTOR) && (!k || strcmp(v[k - 1], a->rel[i].id) != 0))
				v[k++] = a->rel[i].id;
		for (size_t i = 0; i < a->nglass; i++)
			v[k++] = a->glass[i].id;
	}
	*ids = v;
	*n = k;
	return CV_OK;
}

cv_rc cv_access_clause(cv_access_t *a, const char *type, cv_pool_t *pool, cv_store_clause_t *out, bool *have)
{
	const char **ids, *const *codes;
	size_t n;
	*have = false;
	if (!a)
		return CV_OK;
	cv_rc rc = reach(a, type, &ids, &n);
	if (rc || n == SIZE_MAX)
		return rc;
	bool patient = strcmp(type, "Patient") == 0;
	size_t ncodes = patient ? 1 : cv_sp_compartment(a->pol->sp, type, &codes);
	if (!ncodes || n * ncodes > CLAUSE_TERMS_MAX)
		return CV_OK;
	cv_store_term_t *t = cv_pool_alloc(pool, (n * ncodes + 1) * sizeof *t);
	size_t k = 0;
	if (!t)
		return CV_E_NOMEM;
	for (size_t i = 0; i < n; i++) {
		if (patient) {
			t[k++] = (cv_store_term_t){ .kind = CV_TERM_ID, .key = ids[i] };
			continue;
		}
		char *key = cv_pool_printf(pool, "r:Patient/%s", ids[i]);
		if (!key)
			return CV_E_NOMEM;
		for (size_t c = 0; c < ncodes; c++)
			t[k++] = (cv_store_term_t){ .kind = CV_TERM_HASH, .param = codes[c], .key = key,
						    .key_len = strlen(key) };
	}
	if (!k) /* nobody: a term no resource has */
		t[k++] = (cv_store_term_t){ .kind = CV_TERM_ID, .key = "" };
	*out = (cv_store_clause_t){ .n = k, .terms = t };
	*have = true;
	return CV_OK;
}

/* ---- billing's view of a Patient ----------------------------------------- */

static const char *const billing_elements[] = { "resourceType", "id", "meta", "identifier", "name", "birthDate",
						"address" };
static const char *const billing_params[] = { "_id", "identifier", "name", "family", "given", "birthdate", "address",
					      "address-city", "address-state", "address-postalcode", "address-country" };

bool cv_access_reduces(const cv_access_t *a, const char *type)
{
	return a && a->role == CV_RULES_BILLING && type && strcmp(type, "Patient") == 0;
}

bool cv_access_param_ok(const cv_access_t *a, const char *type, const char *code)
{
	if (!cv_access_reduces(a, type))
		return true;
	size_t l = strcspn(code, ":.");
	for (size_t i = 0; i < sizeof billing_params / sizeof billing_params[0]; i++)
		if (strlen(billing_params[i]) == l && strncmp(code, billing_params[i], l) == 0)
			return true;
	return false;
}

static bool kept(const char *key)
{
	for (size_t i = 0; i < sizeof billing_elements / sizeof billing_elements[0]; i++)
		if (strcmp(key, billing_elements[i]) == 0 || (key[0] == '_' && strcmp(key + 1, billing_elements[i]) == 0))
			return true;
	return false;
}

bool cv_access_view(const cv_access_t *a, const char *type, json_object *res)
{
	if (!cv_access_reduces(a, type) || !json_object_is_type(res, json_type_object))
		return false;
	const char *drop[256];
	size_t n = 0;
	json_object_object_foreach(res, key, val)
	{
		(void)val;
		if (!kept(key) && n < 256)
			drop[n++] = key;
	}
	for (size_t i = 0; i < n; i++)
		json_object_object_del(res, drop[i]);
	json_object *meta = cv_lookup_get(res, "meta");
	if (!meta) {
		meta = json_object_new_object();
		json_object_object_add(res, "meta", meta);
	}
	(void)cv_json_tag_subsetted(meta); /* out of memory: the fields are gone all the same */
	return true;
}

/* ---- break-glass --------------------------------------------------------- */

static cv_rc glass_record(cv_policy_t *pol, const cv_principal_t *p, const char *patient_id, const char *reason,
			  int64_t now, int64_t expires, cv_buf_t *body, int64_t *expect)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_store_version_t v;
	json_object *rec = NULL, *grants = NULL;
	cv_rc rc = cv_store_read(pol->store, CV_BREAK_GLASS_TYPE, p->id, 0, &pool, &v);
	*expect = rc ? 0 : v.version;
	if (rc == CV_E_NOTFOUND || (!rc && v.deleted)) {
		rc = CV_OK;
	} else if (!rc) {
		const char *err;
		cv_json_limits_t lim;
		cv_json_limits_default(&lim);
		if (cv_json_parse((const char *)v.body, v.body_len, &lim, &pool, &rec, &err))
			rc = CV_E_STORAGE;
	}
	json_object *out = json_object_new_object(), *list = json_object_new_array();
	json_object_object_add(out, "resourceType", json_object_new_string(CV_BREAK_GLASS_TYPE));
	json_object_object_add(out, "account", json_object_new_string(p->id));
	json_object_object_add(out, "grants", list);
	if (rec && json_object_object_get_ex(rec, "grants", &grants) && json_object_is_type(grants, json_type_array))
		for (size_t i = 0; i < json_object_array_length(grants); i++) {
			json_object *g = json_object_array_get_idx(grants, i), *exp;
			/* keep the live ones, but not an earlier one for this patient */
			if (json_object_object_get_ex(g, "expires_us", &exp) && json_object_get_int64(exp) > now &&
			    (!cv_lookup_str(g, "patient") || strcmp(cv_lookup_str(g, "patient"), patient_id) != 0) &&
			    json_object_array_length(list) < BREAK_GLASS_MAX - 1)
				json_object_array_add(list, json_object_get(g));
		}
	json_object *g = json_object_new_object();
	json_object_object_add(g, "patient", json_object_new_string(patient_id));
	json_object_object_add(g, "reason", json_object_new_string(reason));
	json_object_object_add(g, "started_us", json_object_new_int64(now));
	json_object_object_add(g, "expires_us", json_object_new_int64(expires));
	json_object_array_add(list, g);
	if (!rc)
		rc = cv_json_write(out, body);
	json_object_put(out);
	json_object_put(rec);
	cv_pool_release(&pool);
	return rc;
}

cv_rc cv_policy_break_glass(cv_policy_t *pol, const cv_principal_t *p, const char *patient_id, const char *reason,
			    cv_store_write_t *record, int64_t *expires_us)
{
	cv_rules_role role = p->kind == CV_PRINCIPAL_USER ? cv_rules_role_of(p->role) : CV_RULES_NONE;
	if ((role != CV_RULES_NURSE && role != CV_RULES_DOCTOR) || !p->link || strncmp(p->link, "Practitioner/", 13) != 0)
		return CV_E_DENIED;
	size_t rl = reason ? strlen(reason) : 0;
	if (rl < 10 || rl > 1000)
		return CV_E_INVALID;
	cv_rc rc = CV_E_CONFLICT;
	for (int attempt = 0; rc == CV_E_CONFLICT && attempt < 5; attempt++) {
		int64_t now = cv_time_now_us(), expect = 0;
		*expires_us = now + pol->break_glass_us;
		cv_buf_t grant;
		cv_buf_init(&grant, 1u << 20);
		rc = glass_record(pol, p, patient_id, reason, now, *expires_us, &grant, &expect);
		/* the grant and its audit record (the alert) commit together: no access without it */
		cv_store_write_t g = { .op = CV_STORE_PUT_VERSION, .type = CV_BREAK_GLASS_TYPE, .id = p->id,
				       .expect_version = expect, .updated_us = now, .body = (const uint8_t *)grant.data,
				       .body_len = grant.len };
		cv_store_write_t *both[2] = { &g, record };
		cv_store_write_t group = { .op = CV_STORE_GROUP, .members = both, .nmembers = record ? 2 : 1 };
		if (!rc && (rc = cv_store_write_sync(pol->store, &group)) == CV_E_CONFLICT && g.result != CV_E_CONFLICT)
			rc = CV_E_STORAGE; /* not a race to retry */
		cv_buf_release(&grant);
		if (!rc) /* the account id only: the patient and the reason stay in the sealed records */
			cv_log(CV_LOG_WARN, "security alert",
			       (cv_log_field_t[]){ CV_LS("alert", "break-glass"), CV_LS("agent", p->id),
						   CV_LS("role", p->role ? p->role : ""),
						   CV_LI("minutes", (*expires_us - now) / 60000000) }, 4);
	}
	return rc;
}
