/*
 * rules.c - the access model's tables (docs/SECURITY.md, "Access model"):
 * resource groups, what each role may do on each group, and what SMART
 * scopes (granular ones included) allow.
 */
#include "policy/rules.h"

#include <stdlib.h>
#include <string.h>

/* Interaction bits of the role table. */
enum { B_R = 1, B_V = 2, B_H = 4, B_S = 8, B_C = 16, B_U = 32, B_D = 64 };
#define B_READS (B_R | B_S)
#define B_ALL (B_R | B_V | B_H | B_S | B_C | B_U | B_D)

static const struct {
	const char *name;
	cv_rules_role role;
} role_names[] = {
	{ "patient", CV_RULES_PATIENT }, { "nurse", CV_RULES_NURSE },     { "doctor", CV_RULES_DOCTOR },
	{ "billing", CV_RULES_BILLING }, { "auditor", CV_RULES_AUDITOR }, { "admin", CV_RULES_ADMIN },
	{ "researcher", CV_RULES_RESEARCHER },
};

cv_rules_role cv_rules_role_of(const char *name)
{
	for (size_t i = 0; name && i < sizeof role_names / sizeof role_names[0]; i++)
		if (strcmp(name, role_names[i].name) == 0)
			return role_names[i].role;
	return CV_RULES_NONE;
}

/* role × group → interactions (record: of related patients; the resource
 * level narrows creates and updates further: what a patient authors, what a nurse records). */
static const unsigned char table[CV_RULES_RESEARCHER + 1][CV_GROUP_COUNT] = {
	[CV_RULES_PATIENT] = { [CV_GROUP_RECORD] = B_READS | B_C | B_U, [CV_GROUP_BILLING] = B_READS,
			       [CV_GROUP_CONSENT] = B_READS | B_C | B_U, [CV_GROUP_CARETEAM] = B_READS,
			       [CV_GROUP_DIRECTORY] = B_READS, [CV_GROUP_REFERENCE] = B_READS },
	[CV_RULES_NURSE] = { [CV_GROUP_RECORD] = B_READS | B_C | B_U, [CV_GROUP_CONSENT] = B_READS,
			     [CV_GROUP_CARETEAM] = B_READS, [CV_GROUP_DIRECTORY] = B_READS,
			     [CV_GROUP_REFERENCE] = B_READS },
	[CV_RULES_DOCTOR] = { [CV_GROUP_RECORD] = B_ALL, [CV_GROUP_CONSENT] = B_READS | B_C | B_U,
			      [CV_GROUP_CARETEAM] = B_READS, [CV_GROUP_DIRECTORY] = B_READS,
			      [CV_GROUP_REFERENCE] = B_READS | B_C | B_U },
	[CV_RULES_BILLING] = { [CV_GROUP_RECORD] = B_READS, [CV_GROUP_BILLING] = B_READS | B_C | B_U,
			       [CV_GROUP_DIRECTORY] = B_READS, [CV_GROUP_REFERENCE] = B_READS },
	[CV_RULES_AUDITOR] = { [CV_GROUP_AUDIT] = B_READS | B_V | B_H, [CV_GROUP_DIRECTORY] = B_READS },
	[CV_RULES_ADMIN] = { [CV_GROUP_CARETEAM] = B_READS | B_C | B_U | B_D, [CV_GROUP_DIRECTORY] = B_READS | B_C | B_U | B_D,
			     [CV_GROUP_REFERENCE] = B_READS | B_C | B_U | B_D },
};

static unsigned action_bit(cv_action a)
{
	switch (a) {
	case CV_ACT_FHIR_READ: return B_R;
	case CV_ACT_FHIR_VREAD: return B_V;
	case CV_ACT_FHIR_HISTORY: return B_H;
	case CV_ACT_FHIR_SEARCH: return B_S;
	case CV_ACT_FHIR_CREATE: return B_C;
	case CV_ACT_FHIR_UPDATE: return B_U;
	case CV_ACT_FHIR_DELETE: return B_D;
	default: return 0;
	}
}

bool cv_rules_role_may(cv_rules_role r, cv_group g, cv_action a)
{
	unsigned bit = action_bit(a);
	return r != CV_RULES_NONE && g < CV_GROUP_COUNT && bit && (table[r][g] & bit);
}

bool cv_rules_needs_relation(cv_rules_role r, cv_group g)
{
	switch (r) {
	case CV_RULES_PATIENT:
	case CV_RULES_NURSE:
	case CV_RULES_DOCTOR:
		return g == CV_GROUP_RECORD || g == CV_GROUP_BILLING || g == CV_GROUP_CONSENT || g == CV_GROUP_CARETEAM;
	default:
		return false;
	}
}

static bool listed(const char *type, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(type, *list) == 0)
			return true;
	return false;
}

bool cv_rules_type_writable(cv_rules_role r, cv_action a, const char *type)
{
	static const char *const patient_authors[] = { "Consent", "QuestionnaireResponse", "Communication", "Appointment",
							"Observation", NULL };
	static const char *const nurse_records[] = { "Observation", "DocumentReference", "Communication", NULL };
	if (!type || (a != CV_ACT_FHIR_CREATE && a != CV_ACT_FHIR_UPDATE))
		return true;
	if (r == CV_RULES_PATIENT)
		return listed(type, patient_authors);
	if (r == CV_RULES_NURSE && a == CV_ACT_FHIR_CREATE)
		return listed(type, nurse_records);
	return true;
}

unsigned cv_rules_scope_bit(cv_action a)
{
	switch (a) {
	case CV_ACT_FHIR_READ:
	case CV_ACT_FHIR_VREAD:
	case CV_ACT_FHIR_HISTORY: return CV_SCOPE_R;
	case CV_ACT_FHIR_SEARCH: return CV_SCOPE_S;
	case CV_ACT_FHIR_CREATE: return CV_SCOPE_C;
	case CV_ACT_FHIR_UPDATE: return CV_SCOPE_U;
	case CV_ACT_FHIR_DELETE: return CV_SCOPE_D;
	default: return 0;
	}
}

/* ---- resource groups ----------------------------------------------------- */

static const struct {
	const char *type;
	cv_group group;
} fixed_groups[] = {
	{ "Coverage", CV_GROUP_BILLING },
	{ "Claim", CV_GROUP_BILLING },
	{ "ClaimResponse", CV_GROUP_BILLING },
	{ "ExplanationOfBenefit", CV_GROUP_BILLING },
	{ "Invoice", CV_GROUP_BILLING },
	{ "Account", CV_GROUP_BILLING },
	{ "ChargeItem", CV_GROUP_BILLING },
	{ "Consent", CV_GROUP_CONSENT },
	{ "CareTeam", CV_GROUP_CARETEAM },
	{ "AuditEvent", CV_GROUP_AUDIT },
	{ "Organization", CV_GROUP_DIRECTORY },
	{ "Location", CV_GROUP_DIRECTORY },
	{ "Practitioner", CV_GROUP_DIRECTORY },
	{ "PractitionerRole", CV_GROUP_DIRECTORY },
	{ "HealthcareService", CV_GROUP_DIRECTORY },
	{ "Endpoint", CV_GROUP_DIRECTORY },
	{ "Patient", CV_GROUP_RECORD },
};

cv_group cv_policy_group(const cv_policy_t *pol, const char *type)
{
	const char *const *codes;
	if (!type)
		return CV_GROUP_RECORD;
	for (size_t i = 0; i < sizeof fixed_groups / sizeof fixed_groups[0]; i++)
		if (strcmp(type, fixed_groups[i].type) == 0)
			return fixed_groups[i].group;
	if (!pol)
		return CV_GROUP_RECORD;
	return cv_sp_compartment(pol->sp, type, &codes) ? CV_GROUP_RECORD : CV_GROUP_REFERENCE;
}

bool cv_access_immutable(const char *type)
{
	return type && strcmp(type, "AuditEvent") == 0;
}

/* ---- scopes -------------------------------------------------------------- */

/* Does res have, for search parameter `code`, the token value `value`
 * ("system|code", "|code" or "code")? */
static bool token_matches(const cv_policy_t *pol, const char *type, json_object *res, const char *code,
			  const char *value, size_t vlen)
{
	const cv_sp_t *sp = cv_sp_find(pol->sp, type, code);
	if (!sp || sp->type != CV_SP_TOKEN)
		return false;
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	bool found = false;
	char *v = cv_pool_strndup(&pool, value, vlen);
	cv_sp_entries_t want = { .pool = &pool }, have = { .pool = &pool };
	char *bar = v ? strchr(v, '|') : NULL;
	cv_rc rc = v ? CV_OK : CV_E_NOMEM;
	if (!rc && bar) {
		*bar = '\0';
		rc = v[0] ? cv_sp_key(&want, code, "sc:", v, "|", bar + 1) : cv_sp_key(&want, code, "n:", bar + 1, NULL, NULL);
	} else if (!rc) {
		rc = cv_sp_key(&want, code, "c:", v, NULL, NULL);
	}
	if (!rc)
		rc = cv_sp_extract_one(sp, pol->model, res, CV_SP_MATCH, &have);
	for (size_t i = 0; !rc && !found && want.n && i < have.n; i++)
		found = have.v[i].kind == CV_IX_HASH && have.v[i].key_len == want.v[0].key_len &&
			memcmp(have.v[i].key, want.v[0].key, want.v[0].key_len) == 0;
	cv_pool_release(&pool);
	return found;
}

/* Does res match a granular scope's query ("category=a|b,c|d&code=x")?
 * Every parameter must match one of its comma-separated values. */
static bool query_matches(const cv_policy_t *pol, const char *type, json_object *res, const char *q)
{
	if (!pol || !res)
		return false;
	while (*q) {
		const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q), *eq = memchr(q, '=', (size_t)(end - q));
		if (!eq || eq == q || (size_t)(eq - q) >= 64)
			return false;
		char code[64];
		memcpy(code, q, (size_t)(eq - q));
		code[eq - q] = '\0';
		bool any = false;
		for (const char *v = eq + 1; v < end && !any;) {
			const char *comma = memchr(v, ',', (size_t)(end - v)), *vend = comma ? comma : end;
			any = token_matches(pol, type, res, code, v, (size_t)(vend - v));
			v = vend + 1;
		}
		if (!any)
			return false;
		q = amp ? amp + 1 : end;
	}
	return true;
}

typedef struct scope_walk {
	const cv_policy_t *pol;
	cv_scope_ctx ctx;
	const char *type;
	unsigned need;
	json_object *res;
	bool ok;
} scope_walk_t;

static cv_rc scope_one(void *arg, const cv_scope_t *sc, const char *text)
{
	scope_walk_t *w = arg;
	(void)text;
	if (w->ok || sc->kind != CV_SCOPE_RESOURCE || sc->ctx != w->ctx || (sc->perms & w->need) != w->need)
		return CV_OK;
	if (strcmp(sc->type, "*") != 0 && (!w->type || strcmp(sc->type, w->type) != 0))
		return CV_OK;
	if (!sc->query || !w->res) {
		w->ok = true;
		return CV_OK;
	}
	/* the query ends where the scope's text does */
	size_t ql = strcspn(sc->query, " ");
	char q[CV_SCOPE_TEXT_MAX + 1];
	if (ql > CV_SCOPE_TEXT_MAX)
		return CV_OK;
	memcpy(q, sc->query, ql);
	q[ql] = '\0';
	w->ok = query_matches(w->pol, w->type, w->res, q);
	return CV_OK;
}

bool cv_rules_scope_allows(const cv_policy_t *pol, const char *scopes, cv_scope_ctx ctx, const char *type,
			   unsigned need, json_object *res)
{
	scope_walk_t w = { .pol = pol, .ctx = ctx, .type = type, .need = need, .res = res };
	if (!scopes || !need || cv_scope_each(scopes, scope_one, &w, NULL, 0))
		return false;
	return w.ok;
}

typedef struct granular_walk {
	cv_scope_ctx ctx;
	const char *type;
	bool found;
} granular_walk_t;

static cv_rc granular_one(void *arg, const cv_scope_t *sc, const char *text)
{
	granular_walk_t *w = arg;
	(void)text;
	if (sc->kind == CV_SCOPE_RESOURCE && sc->ctx == w->ctx && sc->query &&
	    (strcmp(sc->type, "*") == 0 || (w->type && strcmp(sc->type, w->type) == 0)))
		w->found = true;
	return CV_OK;
}

static cv_rc named_one(void *arg, const cv_scope_t *sc, const char *text)
{
	granular_walk_t *w = arg;
	(void)text;
	if (sc->kind == CV_SCOPE_RESOURCE && sc->ctx == w->ctx && !sc->query && strcmp(sc->type, w->type) == 0 &&
	    (sc->perms & (CV_SCOPE_R | CV_SCOPE_S)))
		w->found = true;
	return CV_OK;
}

bool cv_rules_scope_names(const char *scopes, cv_scope_ctx ctx, const char *type)
{
	granular_walk_t w = { .ctx = ctx, .type = type };
	if (!scopes || cv_scope_each(scopes, named_one, &w, NULL, 0))
		return false;
	return w.found;
}

bool cv_rules_scope_granular(const char *scopes, cv_scope_ctx ctx, const char *type)
{
	granular_walk_t w = { .ctx = ctx, .type = type };
	if (!scopes || cv_scope_each(scopes, granular_one, &w, NULL, 0))
		return false;
	return w.found;
}

bool cv_rules_token_may(const cv_principal_t *p, cv_action a, const char *type)
{
	unsigned need = cv_rules_scope_bit(a);
	return cv_rules_scope_allows(NULL, p->scope, CV_SCOPE_USER, type, need, NULL) ||
	       (p->patient && cv_rules_scope_allows(NULL, p->scope, CV_SCOPE_PATIENT, type, need, NULL));
}
