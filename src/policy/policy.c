/*
 * policy.c - the route-level decision: role × resource group × interaction,
 * and SMART scopes; deny by default. The resource level is in access.c.
 */
#include "policy/policy.h"

#include <stddef.h>
#include <string.h>

#include "auth/scope.h"
#include "policy/rules.h"

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
	[CV_ACT_ADMIN_ERASURES] = "admin.erasures",
	[CV_ACT_FHIR_VREAD] = "fhir.vread",
	[CV_ACT_BREAK_GLASS] = "fhir.break-glass",
	[CV_ACT_ACCESS_REPORT] = "fhir.access-report",
};

const char *cv_action_name(cv_action a)
{
	return a > CV_ACT_UNSET && a < CV_ACT_COUNT ? action_names[a] : "unset";
}

static int is_public(cv_action a)
{
	return a == CV_ACT_PUBLIC_HEALTH || a == CV_ACT_PUBLIC_META || a == CV_ACT_AUTH_LOGIN || a == CV_ACT_AUTH_TOKEN;
}

/* The interactions on FHIR resources (checked per type and per resource). */
static int is_fhir(cv_action a)
{
	return (a >= CV_ACT_FHIR_READ && a <= CV_ACT_FHIR_DELETE) || a == CV_ACT_FHIR_VREAD;
}

/* A type- or system-level history is the bootstrap administrator's and
 * backend clients': a person's history is one resource's. A transaction
 * or batch is open to everyone with FHIR access: each entry is checked as
 * its own interaction. */
static int client_grants(const cv_principal_t *p, cv_action a, const char *type, const char *id)
{
	if (type && strcmp(type, "AuditEvent") == 0 && !cv_rules_scope_names(p->scope, CV_SCOPE_SYSTEM, "AuditEvent"))
		return 0; /* the trail (staff logins, addresses, reasons) only for a scope that names it */
	if (a == CV_ACT_FHIR_BUNDLE)
		return p->scope && cv_scope_perms(p->scope, CV_SCOPE_SYSTEM, NULL) != 0;
	if (a == CV_ACT_FHIR_DELETE && cv_access_immutable(type))
		return 0; /* an update is refused when the resource exists: a PUT may create */
	(void)id;
	unsigned need = cv_rules_scope_bit(a);
	return need && cv_rules_scope_allows(NULL, p->scope, CV_SCOPE_SYSTEM, type, need, NULL);
}

/* A person: the role's table, and the token's scopes when they came through an app. */
static int user_grants(const cv_policy_t *pol, const cv_principal_t *p, cv_action a, const char *type,
		       const char *id, const char **why)
{
	cv_rules_role role = cv_rules_role_of(p->role);
	if (a == CV_ACT_FHIR_BUNDLE) {
		*why = "transaction or batch: each entry is decided on its own";
		return role != CV_RULES_NONE && role != CV_RULES_RESEARCHER;
	}
	if (a == CV_ACT_FHIR_HISTORY && !id) {
		*why = "type and system history are not open to people";
		return 0;
	}
	cv_group g = cv_policy_group(pol, type);
	if (!type || !cv_rules_role_may(role, g, a) ||
	    (role == CV_RULES_BILLING && g == CV_GROUP_RECORD && strcmp(type, "Patient") != 0)) {
		*why = "the role never has this interaction on this type";
		return 0;
	}
	if (!cv_rules_type_writable(role, a, type)) {
		*why = "the role never creates or updates this type";
		return 0;
	}
	if (p->client && !cv_rules_token_may(p, a, type)) {
		*why = "the token's scopes do not cover this interaction";
		return 0;
	}
	*why = "role permits the interaction; each resource is decided on its own";
	return 1;
}

/* What the bootstrap administrator may do: everything but changing the audit trail. */
static int bootstrap_grants(cv_action a, const char *type)
{
	if (a == CV_ACT_FHIR_DELETE && cv_access_immutable(type))
		return 0; /* an update is refused when the resource exists: a PUT may create */
	return is_fhir(a) || a == CV_ACT_FHIR_BUNDLE || a == CV_ACT_ADMIN_USERS || a == CV_ACT_ADMIN_CLIENTS ||
	       a == CV_ACT_ADMIN_ERASURES;
}

static int is_role(const cv_principal_t *p, const char *role)
{
	return p->role && strcmp(p->role, role) == 0;
}

/* A patient's access report: the patient themself (through an app, one
 * whose scopes read their Patient record), an auditor, the bootstrap
 * administrator, or a backend client that may read AuditEvents. */
static int report_grants(const cv_principal_t *p, const char *type, const char *id, const char **why)
{
	*why = "an access report is for the patient, auditors and the administrator";
	if (!type || strcmp(type, "Patient") != 0)
		return 0;
	if (p->kind == CV_PRINCIPAL_ADMIN)
		return 1;
	if (p->kind == CV_PRINCIPAL_CLIENT)
		return client_grants(p, CV_ACT_FHIR_SEARCH, "AuditEvent", NULL);
	if (p->kind != CV_PRINCIPAL_USER)
		return 0;
	if (is_role(p, "auditor"))
		return !p->client || cv_rules_token_may(p, CV_ACT_FHIR_SEARCH, "AuditEvent");
	bool own = is_role(p, "patient") && id && p->link && strncmp(p->link, "Patient/", 8) == 0 &&
		   strcmp(p->link + 8, id) == 0;
	*why = own ? "the patient's own access report" : "only the patient themself, or an auditor, reads the report";
	return own && (!p->client || cv_rules_token_may(p, CV_ACT_FHIR_READ, "Patient"));
}

cv_rc cv_policy_decide(const cv_policy_t *pol, const cv_principal_t *p, cv_action a, const char *resource_type,
		       const char *resource_id, const char **reason)
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
	} else if (a == CV_ACT_ACCESS_REPORT && p->kind != CV_PRINCIPAL_NONE) {
		rc = report_grants(p, resource_type, resource_id, &why) ? CV_OK : CV_E_DENIED;
	} else if (p->kind == CV_PRINCIPAL_ADMIN) {
		why = "bootstrap administrator";
		rc = bootstrap_grants(a, resource_type) ? CV_OK : CV_E_DENIED;
	} else if (p->kind == CV_PRINCIPAL_CLIENT && (is_fhir(a) || a == CV_ACT_FHIR_BUNDLE)) {
		why = "backend client scopes";
		rc = client_grants(p, a, resource_type, resource_id) ? CV_OK : CV_E_DENIED;
	} else if (p->kind == CV_PRINCIPAL_USER && (is_fhir(a) || a == CV_ACT_FHIR_BUNDLE)) {
		rc = user_grants(pol, p, a, resource_type, resource_id, &why) ? CV_OK : CV_E_DENIED;
	} else if (p->kind == CV_PRINCIPAL_USER && a == CV_ACT_BREAK_GLASS) {
		why = "break-glass is for nurses and doctors, in a portal session";
		rc = (is_role(p, "nurse") || is_role(p, "doctor")) && p->session && resource_type &&
			     strcmp(resource_type, "Patient") == 0 ? CV_OK : CV_E_DENIED;
	} else if (p->kind == CV_PRINCIPAL_USER && p->session && is_role(p, "admin") &&
		   (a == CV_ACT_ADMIN_USERS || a == CV_ACT_ADMIN_CLIENTS || a == CV_ACT_ADMIN_ERASURES)) {
		why = "administrator account, portal session";
		rc = CV_OK;
	} else if (p->kind == CV_PRINCIPAL_USER && p->session && a == CV_ACT_AUTH_SESSION) {
		why = "own session";
		rc = CV_OK;
	}
	if (reason)
		*reason = why;
	return rc;
}
