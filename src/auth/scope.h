/*
 * scope.h - OAuth 2.0 scopes the SMART App Launch 2.x way.
 *
 * Resource scopes are "<context>/<type>.<permissions>[?<query>]":
 *   context      patient (the launch patient's compartment), user (what the
 *                user may see), system (a backend service);
 *   type         a resource type ("Observation") or "*";
 *   permissions  v2 letters of "cruds" in that order, each once ("rs"), or
 *                v1 "read" (= rs), "write" (= cud), "*" (= cruds);
 *   query        v2 only, a granular restriction such as
 *                "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory":
 *                the scope then covers only resources matching it.
 * Other scopes are named: openid, fhirUser, profile, launch, launch/patient,
 * launch/encounter, offline_access, online_access.
 *
 * A list is space-separated. Anything else (unknown names, lower-case types,
 * permission letters out of order, a query on a v1 scope) is malformed.
 */
#ifndef CV_AUTH_SCOPE_H
#define CV_AUTH_SCOPE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/rc.h"

#define CV_SCOPE_TEXT_MAX 256  /* longest single scope, in bytes */
#define CV_SCOPE_TYPE_MAX 64   /* longest resource type */

/* Permission bits (SMART v2 letters). */
#define CV_SCOPE_C 1u
#define CV_SCOPE_R 2u
#define CV_SCOPE_U 4u
#define CV_SCOPE_D 8u
#define CV_SCOPE_S 16u
#define CV_SCOPE_ALL 31u

typedef enum {
	CV_SCOPE_RESOURCE,        /* patient/, user/, system/ */
	CV_SCOPE_OPENID,
	CV_SCOPE_FHIRUSER,
	CV_SCOPE_PROFILE,
	CV_SCOPE_LAUNCH,          /* EHR launch context */
	CV_SCOPE_LAUNCH_PATIENT,  /* standalone: pick a patient */
	CV_SCOPE_LAUNCH_ENCOUNTER,
	CV_SCOPE_OFFLINE,         /* offline_access: a refresh token */
	CV_SCOPE_ONLINE,          /* online_access */
} cv_scope_kind;

typedef enum { CV_SCOPE_PATIENT, CV_SCOPE_USER, CV_SCOPE_SYSTEM } cv_scope_ctx;

typedef struct cv_scope {
	cv_scope_kind kind;
	cv_scope_ctx ctx;                    /* RESOURCE only */
	char type[CV_SCOPE_TYPE_MAX + 1];    /* RESOURCE: a type or "*" */
	unsigned perms;                      /* RESOURCE: CV_SCOPE_* bits */
	const char *query;                   /* RESOURCE: the granular query in the parsed text, or NULL */
	bool v1;                             /* written with read / write / * */
} cv_scope_t;

/* Parses one scope; out->query points into text. CV_E_INVALID when it is not
 * a scope as above. */
cv_rc cv_scope_parse(const char *text, cv_scope_t *out);

/* True when a grants nothing b does not: same kind; for resource scopes the
 * same context, b's type "*" or equal, a's permissions within b's, and b
 * without query or with the same query. */
bool cv_scope_within(const cv_scope_t *a, const cv_scope_t *b);

/* Calls fn on each scope of the space-separated list with the parsed scope
 * and its text. CV_E_INVALID (why, may be NULL, names it) for a malformed
 * one, or what fn returns. */
cv_rc cv_scope_each(const char *list, cv_rc (*fn)(void *arg, const cv_scope_t *sc, const char *text), void *arg,
		    char *why, size_t whylen);

/* Checks the scopes a client is registered with: every scope well formed;
 * a backend client has system/ scopes only; an app (public or confidential)
 * has no system/ scope. CV_E_INVALID with why. */
cv_rc cv_scope_check_registration(const char *list, bool backend, char *why, size_t whylen);

/* The requested scopes (in request order, once each) that lie within one of
 * the registered scopes, into granted (space-separated, maybe empty).
 * CV_E_INVALID for a malformed request. */
cv_rc cv_scope_intersect(const char *registered, const char *requested, cv_buf_t *granted);

/* What the list grants on type (NULL: on every type) in context: the union
 * of the permissions of its resource scopes of that context whose type is
 * "*" or type. Granular scopes (with a query) grant on matching resources
 * only, which this cannot know: they are left out. Malformed scopes grant
 * nothing. */
unsigned cv_scope_perms(const char *list, cv_scope_ctx ctx, const char *type);

/* True when the list holds a scope of that kind (one not resource). */
bool cv_scope_has(const char *list, cv_scope_kind kind);

#endif
