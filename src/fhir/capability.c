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
	"{\"code\":\"create\"},{\"code\":\"search-type\"},{\"code\":\"history-instance\"},"
	"{\"code\":\"history-type\"}]";

static const char *const sp_type_names[] = {
	[CV_SP_NUMBER] = "number", [CV_SP_DATE] = "date", [CV_SP_STRING] = "string", [CV_SP_TOKEN] = "token",
	[CV_SP_REFERENCE] = "reference", [CV_SP_COMPOSITE] = "composite", [CV_SP_QUANTITY] = "quantity",
	[CV_SP_URI] = "uri", [CV_SP_SPECIAL] = "special",
};

/* The search parameters of type that can be searched (and the result parameters). */
static cv_rc search_params(cv_buf_t *b, const cv_sp_registry_t *reg, const char *type)
{
	cv_rc rc = cv_buf_puts(b, ",\"searchParam\":[");
	size_t n = cv_sp_count(reg, type);
	int first = 1;
	for (size_t i = 0; !rc && i < n; i++) {
		const cv_sp_t *sp = cv_sp_at(reg, type, i);
		if (!sp->compiled || sp->type == CV_SP_SPECIAL)
			continue;
		rc = cv_buf_printf(b, "%s{\"name\":\"%s\",\"type\":\"%s\"}", first ? "" : ",", sp->code,
				   sp_type_names[sp->type]);
		first = 0;
	}
	return rc ? rc : cv_buf_puts(b, "]");
}

/* AuditEvent: the server's own trail, read and searched only (audit/query.h). */
static cv_rc audit_entry(cv_buf_t *b, int first)
{
	return cv_buf_printf(b, "%s{\"type\":\"AuditEvent\",\"interaction\":[{\"code\":\"read\"},{\"code\":\"vread\"},"
			     "{\"code\":\"search-type\"}],\"versioning\":\"no-version\",\"readHistory\":false,"
			     "\"updateCreate\":false,\"conditionalCreate\":false,\"conditionalRead\":\"not-supported\","
			     "\"conditionalUpdate\":false,\"conditionalDelete\":\"not-supported\","
			     "\"documentation\":\"The audit trail, written by this server only (writes answer 405). Also "
			     "break-glass=true, alert=true and denied=true.\",\"searchParam\":["
			     "{\"name\":\"patient\",\"type\":\"reference\"},{\"name\":\"entity\",\"type\":\"reference\"},"
			     "{\"name\":\"agent\",\"type\":\"token\"},{\"name\":\"date\",\"type\":\"date\"},"
			     "{\"name\":\"action\",\"type\":\"token\"},{\"name\":\"outcome\",\"type\":\"token\"},"
			     "{\"name\":\"type\",\"type\":\"token\"},{\"name\":\"subtype\",\"type\":\"token\"}]}",
			     first ? "" : ",");
}

static cv_rc resource_entry(cv_buf_t *b, const cv_sp_registry_t *reg, const char *type, int first)
{
	if (strcmp(type, "AuditEvent") == 0)
		return audit_entry(b, first);
	cv_rc rc = cv_buf_printf(b, "%s{\"type\":\"%s\",\"interaction\":%s,\"versioning\":\"versioned-update\","
				    "\"readHistory\":true,\"updateCreate\":true,\"conditionalCreate\":true,"
				    "\"conditionalRead\":\"not-supported\",\"conditionalUpdate\":true,"
				    "\"conditionalDelete\":\"single\",\"searchInclude\":[\"*\"],"
				    "\"searchRevInclude\":[\"*\"]",
				 first ? "" : ",", type, type_interactions);
	if (!rc)
		rc = search_params(b, reg, type);
	if (!rc && strcmp(type, "Patient") == 0)
		rc = cv_buf_puts(b, ",\"operation\":[{\"name\":\"everything\","
				    "\"definition\":\"http://hl7.org/fhir/OperationDefinition/Patient-everything\"},"
				    "{\"name\":\"break-glass\",\"definition\":\"https://carevault.dev/fhir/"
				    "OperationDefinition/Patient-break-glass\"},{\"name\":\"access-report\","
				    "\"definition\":\"https://carevault.dev/fhir/OperationDefinition/Patient-access-report\"}]");
	return rc ? rc : cv_buf_puts(b, "}");
}

static cv_rc build(cv_buf_t *b, const cv_model_t *m, const cv_sp_registry_t *reg)
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
		rc = resource_entry(b, reg, cv_model_resource_name(m, i), i == 0);
	if (!rc)
		rc = cv_buf_puts(b, "],\"interaction\":[{\"code\":\"transaction\"},{\"code\":\"batch\"},"
				    "{\"code\":\"history-system\"}]}]}");
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
	rc = build(&b, m, f->search);
	if (rc) {
		cv_buf_release(&b);
		cv_sp_registry_free(f->search);
		f->search = NULL;
		return rc;
	}
	f->capability = cv_buf_take(&b, &f->capability_len);
	unsigned minutes = cfg->break_glass_minutes ? cfg->break_glass_minutes : 1;
	rc = cv_policy_new(s, m, f->search, (int64_t)minutes * 60 * 1000000, &f->policy);
	if (rc)
		cv_fhir_release(f);
	return rc;
}

void cv_fhir_release(cv_fhir_t *f)
{
	cv_policy_free(f->policy);
	f->policy = NULL;
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
