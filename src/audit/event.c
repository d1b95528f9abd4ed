/*
 * event.c - one audit record: the store write that appends it to the chain
 * (its stored form: record.c) and the AuditEvent JSON (IHE BALP shape)
 * rendered from it.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "core/time.h"

#define SYS_DCM CV_AUDIT_SYS_DCM
#define SYS_EVENT_TYPE CV_AUDIT_SYS_EVENT_TYPE
#define SYS_INTERACTION CV_AUDIT_SYS_INTERACTION
#define SYS_SUBTYPE CV_AUDIT_SYS_SUBTYPE
#define SYS_ENTITY_TYPE "http://terminology.hl7.org/CodeSystem/audit-entity-type"
#define SYS_OBJECT_ROLE "http://terminology.hl7.org/CodeSystem/object-role"
#define SYS_BALP_ENTITY "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
#define SYS_REASON "http://terminology.hl7.org/CodeSystem/v3-ActReason"
#define SYS_ACTCODE "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#define SYS_PARTICIPATION "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
#define SYS_SOURCE_TYPE "http://terminology.hl7.org/CodeSystem/security-source-type"
#define SYS_ACCOUNT "https://carevault.dev/fhir/sid/account"
#define SYS_CLIENT "https://carevault.dev/fhir/sid/client"
#define SYS_REQUEST "https://carevault.dev/fhir/sid/request"
#define EXT_RESOURCE_COUNT "https://carevault.dev/fhir/StructureDefinition/resource-count"

typedef struct type_code {
	const char *system, *code, *display;
} type_code_t;

static type_code_t type_code(cv_audit_type t)
{
	switch (t) {
	case CV_AUDIT_LOGIN: return (type_code_t){ SYS_DCM, "110114", "User Authentication" };
	case CV_AUDIT_SECURITY: return (type_code_t){ SYS_DCM, "110137", "User Security Attributes Changed" };
	case CV_AUDIT_ALERT: return (type_code_t){ SYS_DCM, "110113", "Security Alert" };
	case CV_AUDIT_EXPORT: return (type_code_t){ SYS_DCM, "110106", "Export" };
	case CV_AUDIT_APPLICATION: return (type_code_t){ SYS_DCM, "110100", "Application Activity" };
	default: return (type_code_t){ SYS_EVENT_TYPE, "rest", "Restful Operation" };
	}
}

int cv_audit_outcome(unsigned status)
{
	return status >= 500 ? 8 : status >= 400 ? 4 : 0;
}

/* "key":"escaped value" preceded by a comma unless first. */
static cv_rc str_field(cv_buf_t *b, const char *key, const char *v, bool comma)
{
	cv_rc rc = cv_buf_printf(b, "%s\"%s\":\"", comma ? "," : "", key);
	if (!rc)
		rc = cv_buf_json_escape(b, v ? v : "");
	return rc ? rc : cv_buf_puts(b, "\"");
}

static cv_rc coding(cv_buf_t *b, const char *system, const char *code)
{
	cv_rc rc = str_field(b, "system", system, false);
	return rc ? rc : str_field(b, "code", code, true);
}

static cv_rc head(cv_buf_t *b, const cv_audit_event_t *e, const char *id, int64_t at)
{
	char when[40];
	type_code_t t = type_code(e->type);
	cv_time_format_instant(at, when, sizeof when);
	cv_rc rc = cv_buf_printf(b, "{\"resourceType\":\"AuditEvent\",\"id\":\"%s\"", id);
	if (!rc && (e->flags & CV_AUDIT_F_BREAK_GLASS))
		rc = cv_buf_puts(b, ",\"meta\":{\"security\":[{\"system\":\"" SYS_ACTCODE "\",\"code\":\"BTG\","
				    "\"display\":\"break the glass\"}]}");
	if (!rc && e->nres > (int64_t)e->nentities) /* more than the entities listed (at most CV_AUDIT_ENTITIES_MAX) */
		rc = cv_buf_printf(b, ",\"extension\":[{\"url\":\"" EXT_RESOURCE_COUNT "\",\"valueInteger\":%lld}]",
				   (long long)(e->nres > INT32_MAX ? INT32_MAX : e->nres));
	if (!rc)
		rc = cv_buf_printf(b, ",\"type\":{\"system\":\"%s\",\"code\":\"%s\",\"display\":\"%s\"},\"subtype\":[{",
				   t.system, t.code, t.display);
	if (!rc)
		rc = coding(b, e->type == CV_AUDIT_REST ? SYS_INTERACTION : SYS_SUBTYPE, e->subtype ? e->subtype : "other");
	if (!rc)
		rc = cv_buf_printf(b, "}],\"action\":\"%c\",\"recorded\":\"%s\",\"outcome\":\"%d\"",
				   e->action ? e->action : 'E', when,
				   e->outcome);
	if (!rc && (e->outcome_text || e->status))
		rc = cv_buf_printf(b, ",\"outcomeDesc\":\"HTTP %u%s", e->status, e->outcome_text ? ": " : "");
	if (!rc && (e->outcome_text || e->status))
		rc = cv_buf_json_escape(b, e->outcome_text ? e->outcome_text : "");
	if (!rc && (e->outcome_text || e->status))
		rc = cv_buf_puts(b, "\"");
	if (!rc && e->purpose) {
		rc = cv_buf_puts(b, ",\"purposeOfEvent\":[{\"coding\":[{");
		if (!rc)
			rc = coding(b, SYS_REASON, e->purpose);
		if (!rc)
			rc = cv_buf_puts(b, "}]}]");
	}
	return rc;
}

static cv_rc person_agent(cv_buf_t *b, const cv_audit_event_t *e)
{
	bool client_only = e->agent_kind && strcmp(e->agent_kind, "client") == 0;
	cv_rc rc = cv_buf_puts(b, "{\"type\":{\"coding\":[{\"system\":\"" SYS_PARTICIPATION "\",\"code\":\"IRCP\"}]}");
	if (!rc && e->role) {
		rc = cv_buf_puts(b, ",\"role\":[{");
		if (!rc)
			rc = str_field(b, "text", e->role, false);
		if (!rc)
			rc = cv_buf_puts(b, "}]");
	}
	if (!rc)
		rc = cv_buf_puts(b, ",\"who\":{");
	if (!rc && e->link && e->link[0] && !client_only) {
		rc = str_field(b, "reference", e->link, false);
		if (!rc)
			rc = cv_buf_puts(b, ",");
	}
	if (!rc)
		rc = cv_buf_printf(b, "\"identifier\":{\"system\":\"%s\",", client_only ? SYS_CLIENT : SYS_ACCOUNT);
	if (!rc)
		rc = str_field(b, "value", e->agent ? e->agent : "anonymous", false);
	if (!rc)
		rc = cv_buf_puts(b, "}},\"requestor\":true");
	if (!rc && e->address) {
		rc = cv_buf_puts(b, ",\"network\":{");
		if (!rc)
			rc = str_field(b, "address", e->address, false);
		if (!rc)
			rc = cv_buf_puts(b, ",\"type\":\"2\"}");
	}
	return rc ? rc : cv_buf_puts(b, "}");
}

static cv_rc agents(cv_buf_t *b, const cv_audit_event_t *e)
{
	cv_rc rc = cv_buf_puts(b, ",\"agent\":[");
	if (!rc)
		rc = person_agent(b, e);
	if (!rc && e->client && e->client[0] && !(e->agent_kind && strcmp(e->agent_kind, "client") == 0)) {
		rc = cv_buf_puts(b, ",{\"type\":{\"coding\":[{\"system\":\"" SYS_DCM "\",\"code\":\"110150\"}]},"
				    "\"who\":{\"identifier\":{\"system\":\"" SYS_CLIENT "\",");
		if (!rc)
			rc = str_field(b, "value", e->client, false);
		if (!rc)
			rc = cv_buf_puts(b, "}},\"requestor\":false}");
	}
	if (!rc)
		rc = cv_buf_puts(b, "]");
	return rc;
}

static cv_rc source(cv_buf_t *b, const cv_audit_event_t *e, const char *site)
{
	cv_rc rc = cv_buf_puts(b, ",\"source\":{");
	if (!rc)
		rc = str_field(b, "site", site ? site : "carevault", false);
	if (!rc)
		rc = cv_buf_puts(b, ",\"observer\":{\"display\":\"carevault\"},\"type\":[{\"system\":\"" SYS_SOURCE_TYPE
				    "\",\"code\":\"4\"}]}");
	return rc;
}

static cv_rc entity_open(cv_buf_t *b, bool *first, const char *etype_system, const char *etype)
{
	cv_rc rc = cv_buf_printf(b, "%s{\"type\":{", *first ? "" : ",");
	*first = false;
	if (!rc)
		rc = coding(b, etype_system, etype);
	return rc ? rc : cv_buf_puts(b, "}");
}

static bool under_glass(const cv_audit_event_t *e, const char *patient)
{
	for (size_t i = 0; i < e->nglass; i++)
		if (strcmp(e->glass[i], patient) == 0)
			return true;
	return false;
}

static cv_rc patient_entities(cv_buf_t *b, const cv_audit_event_t *e, bool *first)
{
	cv_rc rc = CV_OK;
	for (size_t i = 0; !rc && i < e->npatients; i++) {
		rc = entity_open(b, first, SYS_ENTITY_TYPE, "1");
		if (!rc)
			rc = cv_buf_puts(b, ",\"role\":{\"system\":\"" SYS_OBJECT_ROLE "\",\"code\":\"1\"},\"what\":{\"reference\":\"Patient/");
		if (!rc)
			rc = cv_buf_json_escape(b, e->patients[i]);
		if (!rc)
			rc = cv_buf_puts(b, "\"}");
		if (!rc && under_glass(e, e->patients[i])) /* reached through break-glass alone */
			rc = cv_buf_puts(b, ",\"securityLabel\":[{\"system\":\"" SYS_ACTCODE "\",\"code\":\"BTG\"}]");
		if (!rc && e->reason && i == 0) {
			rc = cv_buf_puts(b, ",\"detail\":[{\"type\":\"reason\",\"valueString\":\"");
			if (!rc)
				rc = cv_buf_json_escape(b, e->reason);
			if (!rc)
				rc = cv_buf_puts(b, "\"}]");
		}
		if (!rc)
			rc = cv_buf_puts(b, "}");
	}
	return rc;
}

static cv_rc resource_entities(cv_buf_t *b, const cv_audit_event_t *e, bool *first)
{
	cv_rc rc = CV_OK;
	for (size_t i = 0; !rc && i < e->nentities && i < CV_AUDIT_ENTITIES_MAX; i++) {
		rc = entity_open(b, first, SYS_ENTITY_TYPE, "2");
		if (!rc)
			rc = cv_buf_puts(b, ",\"role\":{\"system\":\"" SYS_OBJECT_ROLE "\",\"code\":\"4\"},\"what\":{");
		if (!rc)
			rc = str_field(b, "reference", e->entities[i], false);
		if (!rc)
			rc = cv_buf_puts(b, "}}");
	}
	return rc;
}

static cv_rc other_entities(cv_buf_t *b, const cv_audit_event_t *e, bool *first)
{
	cv_rc rc = CV_OK;
	if (e->query && e->query[0]) {
		cv_buf_t q;
		cv_buf_init(&q, 64u << 10);
		rc = entity_open(b, first, SYS_ENTITY_TYPE, "2");
		if (!rc)
			rc = cv_buf_puts(b, ",\"role\":{\"system\":\"" SYS_OBJECT_ROLE "\",\"code\":\"24\"},\"query\":\"");
		/* base64 (FHIR base64Binary) of the query string */
		if (!rc)
			rc = cv_crypto_b64url_encode(e->query, strlen(e->query), &q);
		for (size_t i = 0; !rc && i < q.len; i++)
			q.data[i] = q.data[i] == '-' ? '+' : q.data[i] == '_' ? '/' : q.data[i];
		if (!rc)
			rc = cv_buf_append(b, q.data ? q.data : "", q.len);
		for (size_t pad = q.len % 4 ? 4 - q.len % 4 : 0; !rc && pad; pad--)
			rc = cv_buf_puts(b, "=");
		if (!rc)
			rc = cv_buf_puts(b, "\"}");
		cv_buf_release(&q);
	}
	if (!rc && e->target) {
		rc = entity_open(b, first, SYS_ENTITY_TYPE, "2");
		if (!rc)
			rc = cv_buf_puts(b, ",\"role\":{\"system\":\"" SYS_OBJECT_ROLE "\",\"code\":\"11\"},\"what\":{\"identifier\":{");
		if (!rc)
			rc = str_field(b, "value", e->target, false);
		if (!rc)
			rc = cv_buf_puts(b, "}}}");
	}
	if (!rc && e->detail) {
		rc = entity_open(b, first, SYS_ENTITY_TYPE, "4");
		if (!rc)
			rc = cv_buf_puts(b, ",\"description\":\"");
		if (!rc)
			rc = cv_buf_json_escape(b, e->detail);
		if (!rc)
			rc = cv_buf_puts(b, "\"}");
	}
	if (!rc && e->request_id) {
		rc = entity_open(b, first, SYS_BALP_ENTITY, "XrequestId");
		if (!rc)
			rc = cv_buf_puts(b, ",\"what\":{\"identifier\":{\"system\":\"" SYS_REQUEST "\",");
		if (!rc)
			rc = str_field(b, "value", e->request_id, false);
		if (!rc)
			rc = cv_buf_puts(b, "}}}");
	}
	return rc;
}

static cv_rc entities(cv_buf_t *b, const cv_audit_event_t *e)
{
	bool first = true;
	cv_rc rc = cv_buf_puts(b, ",\"entity\":[");
	if (!rc)
		rc = patient_entities(b, e, &first);
	if (!rc)
		rc = resource_entities(b, e, &first);
	if (!rc)
		rc = other_entities(b, e, &first);
	if (!rc && first) /* an entity-less event: drop the empty list */
		cv_buf_truncate(b, b->len - strlen(",\"entity\":["));
	else if (!rc)
		rc = cv_buf_puts(b, "]");
	return rc;
}

const char *cv_audit_key_patient(cv_pool_t *pool, const char *patient_id)
{
	return cv_pool_printf(pool, "patient\n%s", patient_id);
}

const char *cv_audit_key_entity(cv_pool_t *pool, const char *reference)
{
	/* the versionless reference: a search by entity finds every version's records */
	const char *h = strstr(reference, "/_history/");
	return h ? cv_pool_printf(pool, "entity\n%.*s", (int)(h - reference), reference)
		 : cv_pool_printf(pool, "entity\n%s", reference);
}

const char *cv_audit_key_app(cv_pool_t *pool, const char *client_id)
{
	return cv_pool_printf(pool, "app\n%s", client_id);
}

/* The search keys: every patient and every resource named, and the app
 * acting for a person (agent= finds it as well as the person). */
static cv_rc keys(const cv_audit_event_t *e, cv_pool_t *pool, cv_store_audit_t *a)
{
	size_t ne = e->nentities < CV_AUDIT_ENTITIES_MAX ? e->nentities : CV_AUDIT_ENTITIES_MAX;
	size_t np = e->npatients < CV_AUDIT_PATIENTS_MAX ? e->npatients : CV_AUDIT_PATIENTS_MAX;
	const char **k = cv_pool_alloc(pool, (ne + np + 1) * sizeof *k);
	if (!k)
		return CV_E_NOMEM;
	size_t n = 0;
	for (size_t i = 0; i < np; i++)
		if (!(k[n++] = cv_audit_key_patient(pool, e->patients[i])))
			return CV_E_NOMEM;
	for (size_t i = 0; i < ne; i++)
		if (!(k[n++] = cv_audit_key_entity(pool, e->entities[i])))
			return CV_E_NOMEM;
	if (e->client && e->client[0] && !(e->agent_kind && strcmp(e->agent_kind, "client") == 0) &&
	    !(k[n++] = cv_audit_key_app(pool, e->client)))
		return CV_E_NOMEM;
	a->keys = k;
	a->nkeys = n;
	a->npat = np;
	return CV_OK;
}

cv_rc cv_audit_json(const cv_audit_event_t *e, const char *id, int64_t at_us, cv_buf_t *out)
{
	cv_rc rc = head(out, e, id, at_us);
	if (!rc)
		rc = agents(out, e);
	if (!rc)
		rc = source(out, e, NULL);
	if (!rc)
		rc = entities(out, e);
	return rc ? rc : cv_buf_puts(out, "}");
}

cv_rc cv_audit_build(const cv_audit_event_t *e, cv_pool_t *pool, cv_store_write_t *w)
{
	char id[37];
	int64_t at = e->at_us ? e->at_us : cv_time_now_us();
	cv_crypto_uuid7(at, id); /* time-ordered: the store's index of ids grows at its end */
	cv_store_audit_t *a = cv_pool_alloc(pool, sizeof *a);
	if (!a)
		return CV_E_NOMEM;
	type_code_t t = type_code(e->type);
	*a = (cv_store_audit_t){ .id = cv_pool_strdup(pool, id), .at_us = at, .action = e->action ? e->action : 'E',
				 .outcome = e->outcome, .flags = e->flags, .kind = t.code,
				 .subtype = e->subtype ? e->subtype : "other",
				 .agent = e->agent ? e->agent : "anonymous", .nres = e->nres };
	cv_buf_t b;
	cv_buf_init(&b, 8u << 20);
	cv_rc rc = a->id ? cv_audit_encode(e, &b) : CV_E_NOMEM;
	uint8_t *body = rc ? NULL : cv_pool_alloc(pool, b.len);
	size_t len = b.len;
	if (body)
		memcpy(body, b.data, len);
	cv_buf_release(&b);
	if (!rc && !body)
		rc = CV_E_NOMEM;
	if (!rc)
		rc = keys(e, pool, a);
	if (rc)
		return rc;
	*w = (cv_store_write_t){ .op = CV_STORE_AUDIT, .audit = a, .body = body, .body_len = len };
	return CV_OK;
}
