/*
 * consent.c - evaluates FHIR Consent provisions: actor, purpose, security
 * label and period decide whether a provision applies; the innermost one
 * that applies decides (deny over permit among siblings).
 */
#include "policy/consent.h"

#include <string.h>

#include "policy/lookup.h"

enum { NONE = -1, DENY = 0, PERMIT = 1 };


static size_t len(json_object *a)
{
	return a && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

/* The actor condition: no actor, or one whose reference names the caller. */
static bool actor_applies(json_object *prov, const cv_consent_access_t *a, cv_pool_t *pool)
{
	json_object *actors = cv_lookup_get(prov, "actor");
	if (!len(actors))
		return true;
	for (size_t i = 0; i < len(actors); i++) {
		const char *ref = cv_lookup_str(cv_lookup_get(json_object_array_get_idx(actors, i), "reference"), "reference");
		const char *id;
		if (!ref)
			continue;
		if (a->practitioner && (id = cv_lookup_ref_id(pool, ref, "Practitioner")) &&
		    strcmp(id, a->practitioner + strlen("Practitioner/")) == 0)
			return true;
		for (size_t k = 0; k < a->norgs; k++)
			if ((id = cv_lookup_ref_id(pool, ref, "Organization")) &&
			    strcmp(id, a->orgs[k] + strlen("Organization/")) == 0)
				return true;
	}
	return false;
}

static bool purpose_applies(json_object *prov, const cv_consent_access_t *a)
{
	json_object *purposes = cv_lookup_get(prov, "purpose");
	if (!len(purposes))
		return true;
	for (size_t i = 0; a->purpose && i < len(purposes); i++) {
		const char *code = cv_lookup_str(json_object_array_get_idx(purposes, i), "code");
		if (code && strcmp(code, a->purpose) == 0)
			return true;
	}
	return false;
}

/* Same code, and the same system when both name one. */
static bool same_coding(json_object *x, json_object *y)
{
	const char *cx = cv_lookup_str(x, "code"), *cy = cv_lookup_str(y, "code"), *sx = cv_lookup_str(x, "system"), *sy = cv_lookup_str(y, "system");
	return cx && cy && strcmp(cx, cy) == 0 && (!sx || !sy || strcmp(sx, sy) == 0);
}

static bool label_applies(json_object *prov, const cv_consent_access_t *a)
{
	json_object *labels = cv_lookup_get(prov, "securityLabel");
	if (!len(labels))
		return true;
	for (size_t i = 0; i < len(labels); i++)
		for (size_t k = 0; k < len(a->labels); k++)
			if (same_coding(json_object_array_get_idx(labels, i), json_object_array_get_idx(a->labels, k)))
				return true;
	return false;
}

static bool applies(json_object *prov, const cv_consent_access_t *a, cv_pool_t *pool)
{
	return cv_lookup_period_covers(cv_lookup_get(prov, "period"), a->now_us) && actor_applies(prov, a, pool) &&
	       purpose_applies(prov, a) && label_applies(prov, a);
}

/* The decision of a provision and its nested ones (NONE when it does not apply). */
static int decide(json_object *prov, const cv_consent_access_t *a, cv_pool_t *pool, int depth)
{
	if (!prov || depth > 16 || !applies(prov, a, pool))
		return NONE;
	const char *type = cv_lookup_str(prov, "type");
	int d = type && strcmp(type, "permit") == 0 ? PERMIT : type && strcmp(type, "deny") == 0 ? DENY : NONE;
	json_object *nested = cv_lookup_get(prov, "provision");
	int inner = NONE;
	for (size_t i = 0; i < len(nested); i++) {
		int c = decide(json_object_array_get_idx(nested, i), a, pool, depth + 1);
		if (c == DENY || (c == PERMIT && inner == NONE))
			inner = c;
	}
	return inner != NONE ? inner : d;
}

bool cv_consent_denies(json_object *consents, const cv_consent_access_t *a, cv_pool_t *pool)
{
	for (size_t i = 0; i < len(consents); i++)
		if (decide(cv_lookup_get(json_object_array_get_idx(consents, i), "provision"), a, pool, 0) == DENY)
			return true;
	return false;
}
