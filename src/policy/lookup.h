/*
 * lookup.h - what the decisions need from the store, private to policy/:
 * a practitioner's relationships (care teams, encounters, organizations),
 * a patient's consents, an account's break-glass declarations. Each lookup
 * is cached as text and valid while none of the types it reads was
 * written since (cv_store_types_seq, read once per request).
 */
#ifndef CV_POLICY_LOOKUP_H
#define CV_POLICY_LOOKUP_H

#include "policy/rules.h"

#define CV_LOOKUP_SCAN_MAX 20000 /* resources read for one lookup */
#define CV_LOOKUP_MAX_AGE_US (10LL * 1000000) /* a cached lookup is read again after this, whatever happened */
#define CV_BREAK_GLASS_TYPE "~BreakGlass"

/* A practitioner's relationships as lines: "A <patient id>" (an active care
 * team membership), "T <patient id>" (an encounter participant), "O <org id>"
 * (an organization of an active PractitionerRole). doctor: encounters count. */
cv_rc cv_lookup_relations(cv_policy_t *pol, int64_t seq, const char *practitioner, bool doctor, cv_pool_t *pool,
			  const char **out);

/* A patient's active Consents of scope patient-privacy, as a JSON array text. */
cv_rc cv_lookup_consents(cv_policy_t *pol, int64_t seq, const char *patient, cv_pool_t *pool, const char **out);

/* An account's break-glass declarations as lines "<expires_us> <patient id>"
 * ("" for none). */
cv_rc cv_lookup_break_glass(cv_policy_t *pol, int64_t seq, const char *account, cv_pool_t *pool, const char **out);

/* The remembered compartments of the stored version with write sequence
 * seq ("id\n" per patient, a copy in pool), or NULL; and remembering them. */
const char *cv_lookup_compartments_get(cv_policy_t *pol, int64_t seq, cv_pool_t *pool);
void cv_lookup_compartments_put(cv_policy_t *pol, int64_t seq, const char *ids);

/* The id of a relative reference to `type` ("Patient/x"), in pool; NULL for
 * another type, an absolute URL (it may name another server's resource) or a
 * malformed one. */
const char *cv_lookup_ref_id(cv_pool_t *pool, const char *ref, const char *type);

/* o's member k (NULL when o is no object or has none); the same when it is a string. */
json_object *cv_lookup_get(json_object *o, const char *k);
const char *cv_lookup_str(json_object *o, const char *k);

/* True when the FHIR Period object (NULL: none) covers now. */
bool cv_lookup_period_covers(json_object *period, int64_t now_us);

#endif
