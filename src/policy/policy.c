/*
 * policy.c - role-based decisions, deny by default.
 */
#include "policy/policy.h"

#include <stddef.h>
#include <string.h>

#include "auth/scope.h"

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
	[CV_ACT_ADMIN_CLIENTS] = "admin.clients",
};

const char *cv_action_name(cv_action a)
{
	return a > CV_ACT_UNSET && a < CV_ACT_COUNT ? action_names[a] : "unset";
}

static int is_public(cv_action a)
{
	return a == CV_ACT_PUBLIC_HEALTH || a == CV_ACT_PUBLIC_META || a == CV_ACT_AUTH_LOGIN || a == CV_ACT_AUTH_TOKEN;
}

/* The scope permission an interaction needs: read and history r, search
 * s, create c, update u, delete d; a transaction or batch, whose entries are
 * not checked one by one yet, needs all five. */
static unsigned needed_perms(cv_action a)
{
	switch (a) {
	case CV_ACT_FHIR_READ:
	case CV_ACT_FHIR_HISTORY: return CV_SCOPE_R;
	case CV_ACT_FHIR_SEARCH: return CV_SCOPE_S;
	case CV_ACT_FHIR_CREATE: return CV_SCOPE_C;
	case CV_ACT_FHIR_UPDATE: return CV_SCOPE_U;
	case CV_ACT_FHIR_DELETE: return CV_SCOPE_D;
	case CV_ACT_FHIR_BUNDLE: return CV_SCOPE_ALL;
	default: return 0;
	}
}

/* What a backend client's system scopes grant on the type (NULL: on every type). */
static int client_grants(const cv_principal_t *p, cv_action a, const char *type)
{
	unsigned need = needed_perms(a);
	return need && p->scope && (cv_scope_perms(p->scope, CV_SCOPE_SYSTEM, type) & need) == need;
}

/* A patient, through an app, reading the Patient resource their account is
 * linked to, with a token whose scopes allow reading Patient (patient/ scopes
 * only in the launch patient's compartment). */
static int own_patient_read(const cv_principal_t *p, cv_action a, const char *type, const char *id)
{
	if (!p->client || a != CV_ACT_FHIR_READ || !type || !id || strcmp(type, "Patient") != 0 || !p->role ||
	    strcmp(p->role, "patient") != 0 || !p->link || strncmp(p->link, "Patient/", 8) != 0 ||
	    strcmp(p->link + 8, id) != 0)
		return 0;
	int by_patient = p->patient && strcmp(p->patient, id) == 0 &&
			 (cv_scope_perms(p->scope, CV_SCOPE_PATIENT, type) & CV_SCOPE_R);
	int by_user = (cv_scope_perms(p->scope, CV_SCOPE_USER, type) & CV_SCOPE_R) != 0;
	return by_patient || by_user;
}

/* What the administrator role grants: the whole FHIR API (until the
 * authorization issue narrows it), account and client administration. */
static int admin_grants(cv_action a)
{
	return (a >= CV_ACT_FHIR_READ && a <= CV_ACT_FHIR_DELETE) || a == CV_ACT_ADMIN_USERS || a == CV_ACT_ADMIN_CLIENTS;
}

cv_rc cv_policy_decide(const cv_principal_t *p, cv_action a, const char *resource_type, const char *resource_id,
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
	} else if (p->kind == CV_PRINCIPAL_CLIENT && client_grants(p, a, resource_type)) {
		why = "backend client scopes";
		rc = CV_OK;
	} else if (p->kind == CV_PRINCIPAL_USER && own_patient_read(p, a, resource_type, resource_id)) {
		why = "own Patient resource, app scopes";
		rc = CV_OK;
	} else if (p->kind == CV_PRINCIPAL_USER && p->session && p->role && strcmp(p->role, "admin") == 0 &&
		   (a == CV_ACT_ADMIN_USERS || a == CV_ACT_ADMIN_CLIENTS)) {
		why = "administrator account, portal session";
		rc = CV_OK;
	} else if (p->kind == CV_PRINCIPAL_USER && p->session && a == CV_ACT_AUTH_SESSION) {
		/* what a logged-in person may do to data is the authorization issue's: until
		 * then a session reaches only itself */
		why = "own session";
		rc = CV_OK;
	}
	if (reason)
		*reason = why;
	return rc;
}
