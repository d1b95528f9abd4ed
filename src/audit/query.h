/*
 * query.h - the search parameters of the audit trail (GET /fhir/AuditEvent
 * and Patient/{id}/$access-report): parsed into a store query.
 *
 *   patient=Patient/1 | 1     records naming the patient
 *   entity=Type/id            records naming the resource (any version)
 *   agent=ID                  the account or client id that acted
 *   date=[eq|ge|gt|le|lt]T    when (FHIR date, dateTime or instant; repeat for a range)
 *   action=C|R|U|D|E
 *   outcome=0|4|8|12
 *   type=[system|]code        the event type ("rest", "110114", ...)
 *   subtype=[system|]code     "read", "search-type", "login-failed", "break-glass", ...
 *   break-glass=true          accesses that relied on (or declared) break-glass
 *   alert=true                security alerts
 *   denied=true               accesses the policy refused
 *   _count=N, _cursor=C       page size, and where the next page starts
 *   _format, _pretty          ignored here (negotiated by the REST layer)
 */
#ifndef CV_AUDIT_QUERY_H
#define CV_AUDIT_QUERY_H

#include "core/exchange.h"
#include "core/pool.h"
#include "store/store.h"

/* Parses params into q (strings in pool); count_default and count_max bound
 * _count. CV_E_INVALID with a message in why (no PHI: names the parameter,
 * never its value) when a parameter is unknown, repeated where it cannot be,
 * or malformed. */
cv_rc cv_audit_query_parse(const cv_param_t *params, size_t n, unsigned count_default, unsigned count_max,
			   cv_pool_t *pool, cv_store_audit_query_t *q, char *why, size_t whylen);

#endif
