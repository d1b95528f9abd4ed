/*
 * post.h - sending a small JSON document to an https URL (checkpoint and
 * alert sinks), over libcurl as auth/fetch does (docs/decisions/0007):
 * https only, no redirects, no proxy, the peer verified, 5 s to connect and
 * 10 s in all. The answer's body is ignored; a 2xx status is success.
 */
#ifndef CV_AUDIT_POST_H
#define CV_AUDIT_POST_H

#include <stddef.h>

#include "core/rc.h"

/* POSTs json (application/json) to url. CV_E_IO with why on failure. */
cv_rc cv_audit_post(const char *url, const char *ca_file, const char *json, size_t len, char *why, size_t whylen);

#endif
