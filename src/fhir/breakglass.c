/*
 * breakglass.c - POST /fhir/Patient/{id}/$break-glass: a nurse or doctor
 * declares an emergency for one patient, with a reason (policy/ records it,
 * raises the security alert and grants access for a limited time).
 */
#include <string.h>
#include <strings.h>

#include "audit/audit.h"
#include "core/time.h"
#include "fhir/fhir.h"
#include "fhir/search.h"

#define FHIR_JSON "application/fhir+json; charset=utf-8"

/* The reason from a form body (reason=...) or a Parameters resource. */
static const char *reason_of(cv_exchange_t *ex)
{
	const char *ct = ex->header(ex, "Content-Type");
	if (!ex->body || !ct)
		return NULL;
	if (strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
		cv_param_t params[16];
		size_t n = 0;
		if (cv_search_form_decode(ex->body, ex->body_len, ex->pool, params, 16, &n))
			return NULL;
		for (size_t i = 0; i < n; i++)
			if (strcmp(params[i].name, "reason") == 0)
				return params[i].value;
		return NULL;
	}
	json_object *obj, *list;
	if (!cv_fhir_parse_body(ex, &obj))
		return ""; /* answered */
	if (!json_object_object_get_ex(obj, "parameter", &list) || !json_object_is_type(list, json_type_array))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		json_object *p = json_object_array_get_idx(list, i), *name, *v;
		if (json_object_object_get_ex(p, "name", &name) && strcmp(json_object_get_string(name), "reason") == 0 &&
		    json_object_object_get_ex(p, "valueString", &v) && json_object_is_type(v, json_type_string))
			return json_object_get_string(v);
	}
	return NULL;
}

void cv_fhir_break_glass(cv_exchange_t *ex)
{
	cv_fhir_t *f = ex->app;
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex) || !cv_fhir_id_ok(ex))
		return;
	if (strcmp(ex->args[0], "Patient") != 0)
		return cv_fhir_error(ex, 404, "not-supported", "$break-glass is an operation on Patient");
	const char *reason = reason_of(ex);
	if (reason && !reason[0] && ex->status)
		return;
	if (!reason || strlen(reason) < 10 || strlen(reason) > 1000)
		return cv_fhir_error(ex, 400, "required", "break-glass needs a reason of 10 to 1000 characters: send "
				     "reason=... (a form) or a Parameters resource with a 'reason' valueString");
	cv_store_version_t v;
	cv_rc rc = cv_store_read(f->store, "Patient", ex->args[1], 0, ex->pool, &v);
	if (rc == CV_E_GONE) /* its patient was erased: nothing to show, as if it never was */
		rc = CV_E_NOTFOUND;
	if (rc == CV_E_NOTFOUND || (!rc && v.deleted))
		return cv_fhir_error(ex, 404, "not-found", "no patient has this id");
	int64_t expires = 0;
	cv_store_write_t *record = NULL;
	cv_audit_kind(ex, CV_AUDIT_ALERT, "break-glass", 'E');
	cv_audit_patient(ex, ex->args[1]);
	cv_audit_reason(ex, reason);
	cv_audit_break_glass(ex);
	if (!rc)
		rc = cv_audit_attach(ex, 200, &record);
	if (!rc)
		rc = cv_policy_break_glass(f->policy, &ex->principal, ex->args[1], reason, record, &expires);
	if (!rc)
		cv_audit_webhook(f->audit, "break-glass", ex->principal.id, "an emergency access was declared");
	if (rc == CV_E_DENIED)
		return cv_fhir_error(ex, 403, "forbidden", "break-glass is for nurses and doctors");
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, "the declaration could not be recorded; retry");
	char when[40];
	cv_time_format_instant(expires, when, sizeof when);
	ex->decision = "break-glass declared";
	cv_buf_reset(&ex->resp);
	if (cv_buf_printf(&ex->resp, "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"patient\","
			  "\"valueReference\":{\"reference\":\"Patient/%s\"}},{\"name\":\"expires\",\"valueInstant\":"
			  "\"%s\"}]}", ex->args[1], when))
		return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
	ex->status = 200;
	ex->content_type = FHIR_JSON;
	ex->no_store = 1;
}
