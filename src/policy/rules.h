/*
 * rules.h - the access model's tables, private to policy/: roles, what each
 * role may do on each resource group, what a token's scopes allow.
 */
#ifndef CV_POLICY_RULES_H
#define CV_POLICY_RULES_H

#include <json-c/json.h>
#include <stdbool.h>

#include "auth/scope.h"
#include <pthread.h>

#include "policy/policy.h"

#define CV_RULES_CACHE 128 /* lookups (a practitioner's relationships, a patient's consents) kept */

/* A cached lookup: its key, the store's last write sequence when it was
 * made (valid while that has not moved) and its value (malloc'd text). */
typedef struct cv_rules_cached {
	char *key;
	int64_t seq;
	char *value;
	size_t len;
	int64_t until_us;  /* stale from this time on (a care-team period starts or ends; at most 10 s on) */
} cv_rules_cached_t;

#define CV_RULES_COMPARTMENTS 4096 /* stored versions whose compartments are remembered */

/* The patients whose compartments one stored version is in ("id\n" each). */
typedef struct cv_rules_compartments {
	int64_t seq;   /* the version's write sequence number (0: empty slot) */
	char *ids;     /* malloc'd */
} cv_rules_compartments_t;

struct cv_policy {
	cv_store_t *store;
	const cv_model_t *model;
	const cv_sp_registry_t *sp;
	int64_t break_glass_us;
	pthread_mutex_t mu;                    /* guards the cache */
	cv_rules_cached_t cache[CV_RULES_CACHE];
	unsigned next;                         /* the slot to replace next */
	pthread_mutex_t cmu;                   /* guards comp */
	cv_rules_compartments_t comp[CV_RULES_COMPARTMENTS]; /* by seq modulo the size */
};

typedef enum {
	CV_RULES_NONE, /* no role (or an unknown one): nothing */
	CV_RULES_PATIENT,
	CV_RULES_NURSE,
	CV_RULES_DOCTOR,
	CV_RULES_BILLING,
	CV_RULES_AUDITOR,
	CV_RULES_ADMIN,
	CV_RULES_RESEARCHER,
} cv_rules_role;

/* The role named by an account's role text. */
cv_rules_role cv_rules_role_of(const char *name);

/* True when the role's table allows the FHIR interaction on the group. */
bool cv_rules_role_may(cv_rules_role r, cv_group g, cv_action a);

/* Route level: a patient creates and updates only the types a patient
 * authors, a nurse creates only observations, documents and communications. */
bool cv_rules_type_writable(cv_rules_role r, cv_action a, const char *type);

/* True when the group's resources need a relationship to their patient for the role. */
bool cv_rules_needs_relation(cv_rules_role r, cv_group g);

/* The SMART permission bit an interaction needs (0 for none). */
unsigned cv_rules_scope_bit(cv_action a);

/* True when the scope list has a scope of context ctx on type (or "*")
 * with permission `need`; a granular scope counts only when res matches
 * its query, or when res is NULL (a route-level check: the resources are
 * filtered one by one later). */
bool cv_rules_scope_allows(const cv_policy_t *pol, const char *scopes, cv_scope_ctx ctx, const char *type,
			   unsigned need, json_object *res);

/* True when a scope of the list in context ctx on type (or "*") has a granular query. */
/* True when a scope of the context names `type` itself (not "*") with read
 * permission and no granular query: the audit trail is given to an app or
 * service only by name, never with a wildcard. */
bool cv_rules_scope_names(const char *scopes, cv_scope_ctx ctx, const char *type);

bool cv_rules_scope_granular(const char *scopes, cv_scope_ctx ctx, const char *type);

/* Route level: a person's token has a user/ or patient/ scope for the interaction on type. */
bool cv_rules_token_may(const cv_principal_t *p, cv_action a, const char *type);

#endif
