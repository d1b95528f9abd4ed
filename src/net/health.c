/*
 * health.c - liveness (/healthz) and readiness (/readyz) endpoints.
 * Public, tiny, and free of anything about the data.
 */
#include "net/health.h"

#include "fhir/fhir.h"

void cv_health_live(cv_exchange_t *ex)
{
	ex->status = 200;
	ex->content_type = "application/json";
	cv_buf_puts(&ex->resp, "{\"status\":\"pass\"}");
}

void cv_health_ready(cv_exchange_t *ex)
{
	const cv_fhir_t *f = ex->app;
	cv_rc rc = cv_store_ping(f->store);
	ex->status = rc ? 503 : 200;
	ex->content_type = "application/json";
	cv_buf_puts(&ex->resp, rc ? "{\"status\":\"fail\",\"store\":\"unavailable\"}" : "{\"status\":\"pass\"}");
}
