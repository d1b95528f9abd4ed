/*
 * respond.c - errors as OperationOutcomes, and the cv_rc → HTTP mapping.
 */
#include "fhir/fhir.h"

#include <stdio.h>

#include "model/outcome.h"

unsigned cv_fhir_status(cv_rc rc)
{
	switch (rc) {
	case CV_OK: return 200;
	case CV_E_INVALID: return 400;
	case CV_E_UNAUTH: return 401;
	case CV_E_DENIED: return 403;
	case CV_E_NOTFOUND: return 404;
	case CV_E_CONFLICT: return 409;
	case CV_E_ABORTED: return 409;
	case CV_E_AGAIN: return 503;
	case CV_E_GONE: return 410;
	case CV_E_PRECONDITION: return 412;
	case CV_E_LIMIT: return 413;
	case CV_E_UNSUPPORTED: return 501;
	case CV_E_BUSY: return 503;
	case CV_E_STORAGE: return 503;
	default: return 500;
	}
}

static const char *issue_code(unsigned status)
{
	switch (status) {
	case 400: return "invalid";
	case 401: return "login";
	case 403: return "forbidden";
	case 404: return "not-found";
	case 405: return "not-supported";
	case 406: return "not-supported";
	case 409: return "conflict";
	case 410: return "deleted";
	case 412: return "conflict";
	case 413: return "too-costly";
	case 415: return "not-supported";
	case 422: return "processing";
	case 501: return "not-supported";
	case 503: return "transient";
	default: return "exception";
	}
}

void cv_fhir_outcome(cv_exchange_t *ex, unsigned status, const cv_outcome_t *oo)
{
	ex->status = status;
	ex->content_type = "application/fhir+json; charset=utf-8";
	ex->no_store = 1;
	if (status == 503)
		cv_exchange_add_header(ex, "Retry-After", "1");
	cv_buf_reset(&ex->resp);
	if (cv_outcome_to_json(oo, &ex->resp)) {
		cv_buf_reset(&ex->resp);
		cv_buf_puts(&ex->resp, "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":"
				       "\"error\",\"code\":\"exception\"}]}");
	}
}

void cv_fhir_error(cv_exchange_t *ex, unsigned status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cv_outcome_t oo;
	cv_outcome_init(&oo, ex->pool, 4);
	cv_outcome_add(&oo, CV_SEV_ERROR, code ? code : issue_code(status), NULL, "%s", msg);
	cv_fhir_outcome(ex, status, &oo);
}

void cv_fhir_fail(cv_exchange_t *ex, cv_rc rc, const cv_outcome_t *oo, const char *what)
{
	unsigned status = cv_fhir_status(rc);
	if (rc == CV_E_GONE) /* from the store: a patient's keys were destroyed */
		return cv_fhir_error(ex, 410, "deleted", CV_FHIR_ERASED_TEXT);
	if (oo && oo->count) {
		cv_fhir_outcome(ex, status, oo);
		return;
	}
	if (status >= 500 && status != 503)
		what = "the server could not complete the request; it has been logged";
	cv_fhir_error(ex, status, NULL, "%s", what ? what : cv_rc_str(rc));
}
