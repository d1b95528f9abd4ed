/*
 * policy.c - role-based decisions, deny by default.
 */
#include "policy/policy.h"

#include <stddef.h>

static const char *const action_names[CV_ACT_COUNT] = {
	[CV_ACT_UNSET] = "unset",
	[CV_ACT_PUBLIC_HEALTH] = "health",
	[CV_ACT_PUBLIC_META] = "fhir.capabilities",
	[CV_ACT_FHIR_READ] = "fhir.read",
	[CV_ACT_FHIR_HISTORY] = "fhir.history",
	[CV_ACT_FHIR_SEARCH] = "fhir.search",
	[CV_ACT_FHIR_BUNDLE] = "fhir.bundle",
	[CV_ACT_FHIR_CREATE] = "fhir.create",
	[CV_ACT_FHIR_UPDATE] = "fhir.update",
	[CV_ACT_FHIR_DELETE] = "fhir.delete",
	[CV_ACT_ADMIN_USERS] = "admin.users",
	[CV_ACT_AUTH_LOGIN] = "auth.login",
	[CV_ACT_AUTH_SESSION] = "auth.session",
	[CV_ACT_AUTH_TOKEN] = "auth.token",
};

const char *cv_action_name(cv_action a)
{
	return a > CV_ACT_UNSET && a < CV_ACT_COUNT ? action_names[a] : "unset";
}

static int is_public(cv_action a)
{
	return a == CV_ACT_PUBLIC_HEALTH || a == CV_ACT_PUBLIC_META || a == CV_ACT_AUTH_LOGIN || a == CV_ACT_AUTH_TOKEN;
}

/* What a backend client's system scopes grant (on every type): read and
 * history need r, search s, create c, update u, delete d; a transaction or
 * batch, whose entries are not checked one by one yet, needs all five. */
static int client_grants(unsigned perms, cv_action a)
{
	const unsigned all = CV_PERM_C | CV_PERM_R | CV_PERM_U | CV_PERM_D | CV_PERM_S;
	switch (a) {
	case CV_ACT_FHIR_READ:
	case CV_ACT_FHIR_HISTORY: return (perms & CV_PERM_R) != 0;
	case CV_ACT_FHIR_SEARCH: return (perms & CV_PERM_S) != 0;
	case CV_ACT_FHIR_CREATE: return (perms & CV_PERM_C) != 0;
	case CV_ACT_FHIR_UPDATE: return (perms & CV_PERM_U) != 0;
	case CV_ACT_FHIR_DELETE: return (perms & CV_PERM_D) != 0;
	case CV_ACT_FHIR_BUNDLE: return (perms & all) == all;
	default: return 0;
	}
}

/* What the administrator role grants: the whole FHIR API (until the
 * authorization issue narrows it) and account administration. */
static int admin_grants(cv_action a)
{
	return (a >= CV_ACT_FHIR_READ && a <= CV_ACT_FHIR_DELETE) || a == CV_ACT_ADMIN_USERS;
}

cv_rc cv_policy_decide(const cv_principal_t *p, cv_action a, const char *resource_type,
		       const char **reason)
{
	const char *why = "no rule permits it";
	cv_rc rc = CV_E_DENIED;
	if (a <= CV_ACT_UNSET || a >= CV_ACT_COUNT) {
		why = "route has no action";
	} else if (is_public(a)) {
		why = "public endpoint";
		rc = CV_OK;
	} else if (p->kind == CV_PRINCIPAL_NONE) {
		why = "no credential";
		rc = CV_E_UNAUTH;
	} else if (p->kind == CV_PRINCIPAL_ADMIN && admin_grants(a)) {
		why = "administrator role";
		rc = CV_OK;
	} else if (p->kind == CV_PRINCIPAL_CLIENT && client_grants(p->perms, a)) {
		why = "backend client scopes";
		rc = CV_OK;
	} else if (p->kind == CV_PRINCIPAL_USER && a == CV_ACT_AUTH_SESSION) {
		/* what a logged-in person may do to data is the authorization issue's: until
		 * then a session reaches only itself */
		why = "own session";
		rc = CV_OK;
	}
	if (reason)
		*reason = why;
	return rc;
}
