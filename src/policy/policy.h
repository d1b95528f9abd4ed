/*
 * policy.h - the single decision point: may this principal do this?
 *
 * Every route is registered with the action it needs (net/ refuses to start
 * with a route that has none). Deny by default: an action not listed as
 * public needs an authenticated principal whose role grants it.
 *
 * Two levels, one set of rules (docs/SECURITY.md, "Access model"):
 * - cv_policy_decide(): the route level, before the handler runs: may this
 *   principal ever do this interaction on this type? (role × resource group ×
 *   interaction, SMART scopes). A refusal here is 403 whatever the id.
 * - cv_access_*(): the resource level, for every resource a handler is about
 *   to show, change or count: relationship to the patient (care team,
 *   encounter, break-glass), consent, launch patient, granular scopes, the
 *   state before and after a write. A refusal here is "hidden" (404, exactly
 *   like a resource that does not exist) or "forbidden" (403, for what the
 *   caller may see but not change).
 */
#ifndef CV_POLICY_POLICY_H
#define CV_POLICY_POLICY_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/exchange.h"
#include "core/pool.h"
#include "core/rc.h"
#include "model/model.h"
#include "model/searchparam.h"
#include "store/store.h"

typedef enum cv_action {
	CV_ACT_UNSET = 0,     /* no action: a route with it is a start-up error */
	CV_ACT_PUBLIC_HEALTH, /* /healthz, /readyz */
	CV_ACT_PUBLIC_META,   /* the CapabilityStatement */
	CV_ACT_FHIR_READ,     /* read */
	CV_ACT_FHIR_HISTORY,  /* history (an instance's when the route has an id; else a type's or the system's) */
	CV_ACT_FHIR_SEARCH,   /* search on a type (and Patient/$everything) */
	CV_ACT_FHIR_BUNDLE,   /* transaction or batch (each entry is checked as its own interaction) */
	CV_ACT_FHIR_CREATE,   /* create */
	CV_ACT_FHIR_UPDATE,   /* update, update-as-create */
	CV_ACT_FHIR_DELETE,   /* delete */
	CV_ACT_ADMIN_USERS,   /* account administration (/admin/users) */
	CV_ACT_AUTH_LOGIN,    /* POST /auth/login: public (it is how one gets in) */
	CV_ACT_AUTH_SESSION,  /* one's own session: logout, logout everywhere, the list */
	CV_ACT_AUTH_TOKEN,    /* the OAuth token endpoint and SMART metadata: public (clients authenticate in the body) */
	CV_ACT_ADMIN_CLIENTS, /* OAuth client administration (/admin/clients) */
	CV_ACT_FHIR_VREAD,    /* vread: one version */
	CV_ACT_BREAK_GLASS,   /* Patient/{id}/$break-glass: declare an emergency */
	CV_ACT_ACCESS_REPORT, /* Patient/{id}/$access-report: who accessed a patient's record */
	CV_ACT_ADMIN_ERASURES, /* erasure requests and approvals (/admin/erasures) */
	CV_ACT_COUNT
} cv_action;

/* The resource groups of the access model. */
typedef enum {
	CV_GROUP_RECORD,    /* the patient compartment's types, Patient included */
	CV_GROUP_BILLING,   /* Coverage, Claim, ... */
	CV_GROUP_CONSENT,   /* Consent */
	CV_GROUP_CARETEAM,  /* CareTeam */
	CV_GROUP_AUDIT,     /* AuditEvent */
	CV_GROUP_DIRECTORY, /* Organization, Location, Practitioner, ... */
	CV_GROUP_REFERENCE, /* every other type: no patient in them */
	CV_GROUP_COUNT
} cv_group;

/* The shared context of the resource-level decisions: the store (care teams,
 * encounters, consents, break-glass records), the definitions and a cache of
 * lookups that every write to the store invalidates. Thread-safe. */
typedef struct cv_policy cv_policy_t;

/* Makes the context. break_glass_us: how long a break-glass declaration lasts. */
cv_rc cv_policy_new(cv_store_t *s, const cv_model_t *m, const cv_sp_registry_t *sp, int64_t break_glass_us,
		    cv_policy_t **out);

/* Frees it (NULL is fine). */
void cv_policy_free(cv_policy_t *pol);

/* Name of an action for logs and audit ("fhir.read"). */
const char *cv_action_name(cv_action a);

/* The group of a resource type (pol NULL: types of no fixed group are record). */
cv_group cv_policy_group(const cv_policy_t *pol, const char *type);

/* Decides at the route level. CV_OK: permitted. CV_E_UNAUTH: the action
 * needs a credential and there is none. CV_E_DENIED: authenticated, not
 * permitted. *reason (static text, may be NULL) says why, for the audit
 * trail; never shown to callers. pol may be NULL (types then group as
 * cv_policy_group says). resource_id NULL: a type- or system-level route. */
cv_rc cv_policy_decide(const cv_policy_t *pol, const cv_principal_t *p, cv_action a, const char *resource_type,
		       const char *resource_id, const char **reason) __attribute__((warn_unused_result));

/* ---- the resource level -------------------------------------------------- */

typedef enum {
	CV_ACCESS_PERMIT,    /* go on */
	CV_ACCESS_HIDDEN,    /* the caller may not see it: answer as if it did not exist */
	CV_ACCESS_FORBIDDEN, /* the caller sees it but may not do this: 403 */
} cv_verdict;

/* One request's view of the rules: the principal and what was looked up
 * for it (relationships, consents, break-glass), in the request's pool. */
typedef struct cv_access cv_access_t;

/* The access of principal p for one request; *out NULL when p is
 * unrestricted (the bootstrap administrator): callers then check nothing
 * but the audit trail's immutability (cv_access_immutable). */
cv_rc cv_access_new(cv_policy_t *pol, const cv_principal_t *p, cv_pool_t *pool, cv_access_t **out);

/* True when nobody may update or delete resources of the type (AuditEvent). */
bool cv_access_immutable(const char *type);

/* Decides on one resource for an interaction (READ, VREAD, HISTORY, SEARCH
 * for what is shown; CREATE and UPDATE for the state after a write; UPDATE
 * and DELETE for the state before one, after READ). a NULL permits. */
cv_rc cv_access_check(cv_access_t *a, cv_action act, const char *type, json_object *res, cv_verdict *out,
		      const char **reason);

/* The same for a stored version (seq: its write sequence number, which
 * identifies its content for good): the patients whose compartments it is in
 * are remembered per version, so a version seen again is not examined again. */
cv_rc cv_access_check_stored(cv_access_t *a, cv_action act, const char *type, int64_t seq, json_object *res,
			     cv_verdict *out, const char **reason);

/* The checks of a write: `before` (the current version, NULL for none) must
 * be visible and changeable, `after` (NULL for a delete) permitted to
 * create (when before is NULL) or update. */
cv_rc cv_access_write(cv_access_t *a, cv_action act, const char *type, json_object *before, json_object *after,
		      cv_verdict *out, const char **reason);

/* The patients whose compartments a resource is in (the audit trail names
 * them): seq > 0 for a stored version, whose answer is remembered; res may
 * then be NULL when the answer is known (CV_E_NOTFOUND when it is not). */
cv_rc cv_policy_patients(cv_policy_t *pol, const char *type, int64_t seq, json_object *res, cv_pool_t *pool,
			 const char ***ids, size_t *n);

/* A store clause that narrows a search of `type` to the compartments the
 * caller may see (its patients, or the launch patient): *have false when
 * there is none to add (the caller may see resources of many patients, or
 * the type has no compartment). The per-resource check still runs. */
cv_rc cv_access_clause(cv_access_t *a, const char *type, cv_pool_t *pool, cv_store_clause_t *out, bool *have);

/* True when the caller may search `type` by parameter `code` (billing staff
 * search Patient only by the fields they may see). */
bool cv_access_param_ok(const cv_access_t *a, const char *type, const char *code);

/* Reduces a resource to what the caller may see of it, in place (billing
 * staff see of a Patient only identifier, name, birthDate and address).
 * Returns true when it changed the resource. */
bool cv_access_view(const cv_access_t *a, const char *type, json_object *res);

/* True when the view of `type` is reduced for this caller. */
bool cv_access_reduces(const cv_access_t *a, const char *type);

/* True when searches of `type` must check each candidate (false: a backend
 * client whose system scopes search the type without a granular query sees
 * every resource of it). */
bool cv_access_filters(cv_access_t *a, const char *type);

/* True when some decision of this request relied on a break-glass declaration. */
bool cv_access_broke_glass(const cv_access_t *a);
/* Whether the caller reaches the patient through break-glass alone (after a
 * decision about them loaded the caller's relationships). */
bool cv_access_glass_for(cv_access_t *a, const char *patient);

/* Declares an emergency: the principal (a nurse or doctor) gets its role's
 * rights on patient `patient_id` until *expires_us, whatever its
 * relationships and the patient's consents. Records it in the store in
 * one transaction with `record` (its audit record, the security alert;
 * NULL in unit tests only). CV_E_DENIED for other principals; CV_E_INVALID for a
 * reason shorter than 10 or longer than 1000 bytes. */
cv_rc cv_policy_break_glass(cv_policy_t *pol, const cv_principal_t *p, const char *patient_id, const char *reason,
			    cv_store_write_t *record, int64_t *expires_us);

#endif
