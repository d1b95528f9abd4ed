/*
 * negotiate.h - parsing of the HTTP header and path values the FHIR layer
 * acts on: Accept, _format, Content-Type, ETag / If-Match, version ids.
 * Pure functions on NUL-terminated text (fuzzed by fuzz/fuzz_request.c).
 */
#ifndef CV_FHIR_NEGOTIATE_H
#define CV_FHIR_NEGOTIATE_H

#include <stdint.h>

/* True if an Accept header value admits a FHIR JSON answer
 * (application/fhir+json, application/json, application/json+fhir,
 * any application wildcard or the full wildcard, anywhere in the list). */
int cv_http_accepts_json(const char *accept);

/* True if a _format value names JSON (one media type, no list). */
int cv_http_format_json(const char *format);

/* True if a Content-Type is FHIR JSON or JSON, with no charset or UTF-8. */
int cv_http_content_type_json(const char *content_type);

/* A version id: a positive decimal integer without sign or spaces. */
int cv_http_parse_version(const char *s, int64_t *out);

/* An ETag such as W/"3" or "3" (If-Match): the version, 0 when h is NULL,
 * -1 when it is malformed. */
int64_t cv_http_parse_etag(const char *h);

#endif
