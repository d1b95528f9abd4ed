/*
 * consent.h - a patient's privacy Consents applied to one access, private
 * to policy/ (docs/SECURITY.md, "Consent").
 */
#ifndef CV_POLICY_CONSENT_H
#define CV_POLICY_CONSENT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/pool.h"

/* Who is accessing, why, and what. */
typedef struct cv_consent_access {
	const char *practitioner;   /* "Practitioner/x", or NULL */
	const char *const *orgs;    /* "Organization/y", the caller's organizations */
	size_t norgs;
	const char *purpose;        /* v3-ActReason code: TREAT, HPAYMT, HRESCH, ETREAT */
	json_object *labels;        /* the resource's meta.security (array of Coding), or NULL */
	int64_t now_us;
} cv_consent_access_t;

/* True when one of the consents (a JSON array of Consent resources, active
 * and of scope patient-privacy) denies the access: its root provision
 * applies and the innermost applying provision says deny. */
bool cv_consent_denies(json_object *consents, const cv_consent_access_t *a, cv_pool_t *pool);

#endif
