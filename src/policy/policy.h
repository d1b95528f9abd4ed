/*
 * policy.h - the single decision point: may this principal do this?
 *
 * Every route is registered with the action it needs (net/ refuses to start
 * with a route that has none). Deny by default: an action not listed as
 * public needs an authenticated principal whose role grants it.
 * Until the authorization rules (roles, relationships, consent) exist:
 * the bootstrap administrator may use the whole FHIR API; a backend client
 * what its system/ scopes grant; a person through an app only their own
 * Patient resource (a patient account reading the Patient it is linked to,
 * when the token's scopes allow reading Patient); a portal session only
 * itself.
 */
#ifndef CV_POLICY_POLICY_H
#define CV_POLICY_POLICY_H

#include "core/exchange.h"
#include "core/rc.h"

typedef enum cv_action {
	CV_ACT_UNSET = 0,     /* no action: a route with it is a start-up error */
	CV_ACT_PUBLIC_HEALTH, /* /healthz, /readyz */
	CV_ACT_PUBLIC_META,   /* the CapabilityStatement */
	CV_ACT_FHIR_READ,     /* read, vread */
	CV_ACT_FHIR_HISTORY,  /* history at any level */
	CV_ACT_FHIR_SEARCH,   /* search on a type */
	CV_ACT_FHIR_BUNDLE,   /* transaction or batch (each entry is checked as its own interaction) */
	CV_ACT_FHIR_CREATE,   /* create */
	CV_ACT_FHIR_UPDATE,   /* update, update-as-create */
	CV_ACT_FHIR_DELETE,   /* delete */
	CV_ACT_ADMIN_USERS,   /* account administration (/admin/users) */
	CV_ACT_AUTH_LOGIN,    /* POST /auth/login: public (it is how one gets in) */
	CV_ACT_AUTH_SESSION,  /* one's own session: logout, logout everywhere, the list */
	CV_ACT_AUTH_TOKEN,    /* the OAuth token endpoint and SMART metadata: public (clients authenticate in the body) */
	CV_ACT_ADMIN_CLIENTS, /* OAuth client administration (/admin/clients) */
	CV_ACT_COUNT
} cv_action;

/* Name of an action for logs and audit ("fhir.read"). */
const char *cv_action_name(cv_action a);

/* Decides. CV_OK: permitted. CV_E_UNAUTH: the action needs a credential and
 * there is none. CV_E_DENIED: authenticated, not permitted. *reason (static
 * text, may be NULL) says why, for the audit trail; never shown to callers. */
cv_rc cv_policy_decide(const cv_principal_t *p, cv_action a, const char *resource_type, const char *resource_id,
		       const char **reason) __attribute__((warn_unused_result));

#endif
