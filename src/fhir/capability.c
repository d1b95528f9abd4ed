/*
 * capability.c - the CapabilityStatement (GET /fhir/metadata), stating
 * exactly the interactions this server implements, built once at start.
 */
#include "fhir/fhir.h"

#include "core/log.h"

#include <stdlib.h>
#include <string.h>

#include "core/time.h"

static const char *const type_interactions =
	"[{\"code\":\"read\"},{\"code\":\"vread\"},{\"code\":\"update\"},{\"code\":\"delete\"},"
	"{\"code\":\"create\"},{\"code\":\"history-instance\"},{\"code\":\"history-type\"}]";

static cv_rc resource_entry(cv_buf_t *b, const char *type, int first)
{
	return cv_buf_printf(b, "%s{\"type\":\"%s\",\"interaction\":%s,\"versioning\":\"versioned-update\","
				"\"readHistory\":true,\"updateCreate\":true,\"conditionalCreate\":false,"
				"\"conditionalRead\":\"not-supported\",\"conditionalUpdate\":false,"
				"\"conditionalDelete\":\"not-supported\"}",
			     first ? "" : ",", type, type_interactions);
}

static cv_rc build(cv_buf_t *b, const cv_model_t *m)
{
	char now[40];
	cv_time_format_instant(cv_time_now_us(), now, sizeof now);
	cv_rc rc = cv_buf_printf(b,
		"{\"resourceType\":\"CapabilityStatement\",\"status\":\"active\",\"date\":\"%s\","
		"\"publisher\":\"carevault\",\"kind\":\"instance\","
		"\"software\":{\"name\":\"carevault\",\"version\":\"%s\"},"
		"\"implementation\":{\"description\":\"carevault FHIR R4 server\"},"
		"\"fhirVersion\":\"4.0.1\",\"format\":[\"application/fhir+json\",\"json\"],"
		"\"rest\":[{\"mode\":\"server\",\"security\":{\"cors\":false,\"description\":"
		"\"TLS 1.2+ only. Every interaction but this one needs Authorization: Bearer <token>.\"},"
		"\"resource\":[", now, CV_VERSION);
	size_t n = cv_model_resource_count(m);
	for (size_t i = 0; !rc && i < n; i++)
		rc = resource_entry(b, cv_model_resource_name(m, i), i == 0);
	if (!rc)
		rc = cv_buf_puts(b, "],\"interaction\":[{\"code\":\"history-system\"}]}]}");
	return rc;
}

cv_rc cv_fhir_init(cv_fhir_t *f, cv_store_t *s, const cv_model_t *m, const cv_config_t *cfg)
{
	memset(f, 0, sizeof *f);
	f->store = s;
	f->model = m;
	f->cfg = cfg;
	cv_json_limits_default(&f->limits);
	f->limits.max_depth = cfg->max_json_depth;
	char err[256];
	size_t failed = 0;
	cv_rc rc = cv_sp_registry_new(m, &f->search, &failed, err, sizeof err);
	if (rc)
		return rc;
	if (failed)
		cv_log(CV_LOG_WARN, "fhir.search_params_uncompiled", (cv_log_field_t[]){ CV_LI("count", failed) }, 1);
	cv_buf_t b;
	cv_buf_init(&b, 4u << 20);
	rc = build(&b, m);
	if (rc) {
		cv_buf_release(&b);
		cv_sp_registry_free(f->search);
		f->search = NULL;
		return rc;
	}
	f->capability = cv_buf_take(&b, &f->capability_len);
	return CV_OK;
}

void cv_fhir_release(cv_fhir_t *f)
{
	free(f->capability);
	f->capability = NULL;
	cv_sp_registry_free(f->search);
	f->search = NULL;
}

void cv_fhir_metadata(cv_exchange_t *ex)
{
	const cv_fhir_t *f = ex->app;
	if (!cv_fhir_negotiate(ex))
		return;
	ex->status = 200;
	ex->content_type = "application/fhir+json; charset=utf-8";
	if (cv_buf_append(&ex->resp, f->capability, f->capability_len))
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
}
