/*
 * test_record.c - an audit record's stored form (audit.h, "the stored
 * form"): what is stored renders to exactly the AuditEvent JSON its event
 * gives, for every kind of record, strings needing escapes, and the most
 * entities and patients a record names; it is a fraction of the JSON's
 * size; a record stored as JSON (before the stored form) is served as it
 * is; and malformed stored forms are refused, never half-read.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "audit/audit.h"

#define AT 1767225600123456LL /* 2026-01-01T00:00:00.123456Z */

/* The record's stored body, through cv_audit_build. */
static cv_store_write_t built(const cv_audit_event_t *e, cv_pool_t *pool)
{
	cv_store_write_t w;
	assert_int_equal(cv_audit_build(e, pool, &w), CV_OK);
	assert_non_null(w.body);
	return w;
}

/* Rendering the stored form gives the JSON the event itself gives. */
static void renders_as_its_event(const cv_audit_event_t *e)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_store_write_t w = built(e, &pool);
	cv_store_audit_row_t row = { .id = w.audit->id, .at_us = w.audit->at_us, .body = w.body, .body_len = w.body_len };
	const char *json;
	size_t len;
	assert_int_equal(cv_audit_render(&row, &pool, &json, &len), CV_OK);
	cv_buf_t want;
	cv_buf_init(&want, 8u << 20);
	assert_int_equal(cv_audit_json(e, w.audit->id, w.audit->at_us, &want), CV_OK);
	assert_int_equal(len, want.len);
	assert_memory_equal(json, want.data, len);
	assert_int_equal(json[len], '\0');
	assert_int_equal(w.audit->at_us, e->at_us);
	cv_buf_release(&want);
	cv_pool_release(&pool);
}

static void every_kind_of_record_renders_the_same(void **state)
{
	(void)state;
	const char *ents[] = { "Patient/p1/_history/3", "Observation/o-1" };
	const char *pats[] = { "p1", "p2" };
	cv_audit_event_t read = { .type = CV_AUDIT_REST, .subtype = "read", .action = 'R', .status = 200, .at_us = AT,
				  .agent = "u-1", .agent_kind = "user", .role = "doctor", .link = "Practitioner/pr-1",
				  .client = "app-1", .address = "192.0.2.7", .request_id = "req-1", .method = "GET",
				  .route = "/fhir/{type}/{id}", .query = "name=Smith&birthdate=ge1970", .entities = ents,
				  .nentities = 2, .patients = pats, .npatients = 2, .nres = 2, .purpose = "TREAT" };
	renders_as_its_event(&read);
	cv_audit_event_t denied = { .type = CV_AUDIT_LOGIN, .subtype = "login-failed", .action = 'E', .status = 401,
				    .outcome = 4, .outcome_text = "wrong \"password\"\\ or\ncode \x01 é", .at_us = AT,
				    .flags = CV_AUDIT_F_DENIED | CV_AUDIT_F_SECURITY, .agent = "unknown-user",
				    .target = "who", .address = "::1" };
	renders_as_its_event(&denied);
	cv_audit_event_t glass = { .type = CV_AUDIT_SECURITY, .subtype = "break-glass", .action = 'E', .at_us = AT,
				   .flags = CV_AUDIT_F_BREAK_GLASS | CV_AUDIT_F_ALERT, .agent = "u-2", .patients = pats,
				   .npatients = 1, .reason = "unconscious in the ER", .purpose = "ETREAT" };
	renders_as_its_event(&glass);
	const char *glass_pats[] = { "p2" }; /* a search over both, p2 reached through break-glass alone */
	cv_audit_event_t search = { .type = CV_AUDIT_REST, .subtype = "search-type", .action = 'E', .status = 200,
				    .at_us = AT, .flags = CV_AUDIT_F_BREAK_GLASS, .agent = "u-2", .patients = pats,
				    .npatients = 2, .glass = glass_pats, .nglass = 1, .purpose = "ETREAT" };
	renders_as_its_event(&search);
	cv_buf_t json;
	cv_buf_init(&json, 1u << 20);
	assert_int_equal(cv_audit_json(&search, "id-2", AT, &json), CV_OK);
	const char *p2 = strstr(json.data, "\"Patient/p2\"}");
	assert_non_null(p2);
	assert_true(strncmp(p2 + strlen("\"Patient/p2\"}"), ",\"securityLabel\":[{", 18) == 0);
	const char *p1 = strstr(json.data, "\"Patient/p1\"}");
	assert_non_null(p1);
	assert_false(strncmp(p1 + strlen("\"Patient/p1\"}"), ",\"securityLabel\"", 16) == 0);
	cv_buf_release(&json);
	cv_audit_event_t alert = { .type = CV_AUDIT_ALERT, .subtype = "many-patients", .action = 'E', .at_us = AT,
				   .outcome = 12, .flags = CV_AUDIT_F_ALERT, .agent = "", .detail = "120 patients in an hour" };
	renders_as_its_event(&alert);
	cv_audit_event_t bare = { .type = CV_AUDIT_APPLICATION, .at_us = AT }; /* every string left out */
	renders_as_its_event(&bare);
}

static void the_most_entities_and_patients_render_the_same(void **state)
{
	(void)state;
	static char ebuf[CV_AUDIT_ENTITIES_MAX][32], pbuf[CV_AUDIT_PATIENTS_MAX][16];
	static const char *ents[CV_AUDIT_ENTITIES_MAX], *pats[CV_AUDIT_PATIENTS_MAX];
	for (size_t i = 0; i < CV_AUDIT_ENTITIES_MAX; i++) {
		snprintf(ebuf[i], sizeof ebuf[i], "Observation/o-%zu", i);
		ents[i] = ebuf[i];
	}
	for (size_t i = 0; i < CV_AUDIT_PATIENTS_MAX; i++) {
		snprintf(pbuf[i], sizeof pbuf[i], "p-%zu", i);
		pats[i] = pbuf[i];
	}
	cv_audit_event_t e = { .type = CV_AUDIT_REST, .subtype = "search-type", .action = 'E', .status = 200,
			       .at_us = AT, .agent = "u-1", .entities = ents, .nentities = CV_AUDIT_ENTITIES_MAX,
			       .patients = pats, .npatients = CV_AUDIT_PATIENTS_MAX, .nres = 5000 };
	renders_as_its_event(&e);
	/* the entities stop at CV_AUDIT_ENTITIES_MAX: the record says how many there were */
	cv_buf_t json;
	cv_buf_init(&json, 1u << 24);
	assert_int_equal(cv_audit_json(&e, "id-1", AT, &json), CV_OK);
	assert_non_null(strstr(json.data, "\"url\":\"https://carevault.dev/fhir/StructureDefinition/resource-count\","
					  "\"valueInteger\":5000}"));
	cv_buf_reset(&json);
	e.nres = CV_AUDIT_ENTITIES_MAX; /* all listed: no count */
	assert_int_equal(cv_audit_json(&e, "id-1", AT, &json), CV_OK);
	assert_null(strstr(json.data, "resource-count"));
	cv_buf_release(&json);
}

/* A read's record (what every GET writes) is a fraction of its JSON. */
static void a_read_record_is_small(void **state)
{
	(void)state;
	const char *ents[] = { "Patient/bench-1/_history/1" };
	const char *pats[] = { "bench-1" };
	cv_audit_event_t e = { .type = CV_AUDIT_REST, .subtype = "read", .action = 'R', .status = 200, .at_us = AT,
			       .agent = "bootstrap-admin", .agent_kind = "admin", .role = "admin", .address = "127.0.0.1",
			       .request_id = "0193c5a1-2b3c-7d4e-8f90-123456789abc", .entities = ents, .nentities = 1,
			       .patients = pats, .npatients = 1, .nres = 1, .purpose = "HSYSADMIN" };
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_store_write_t w = built(&e, &pool);
	cv_buf_t json;
	cv_buf_init(&json, 1u << 20);
	assert_int_equal(cv_audit_json(&e, w.audit->id, AT, &json), CV_OK);
	assert_true(w.body_len * 5 < json.len);
	cv_buf_release(&json);
	cv_pool_release(&pool);
}

static void a_json_record_is_served_as_stored(void **state)
{
	(void)state;
	static const char body[] = "{\"resourceType\":\"AuditEvent\",\"id\":\"x\"}";
	cv_store_audit_row_t row = { .id = "x", .at_us = AT, .body = (const uint8_t *)body, .body_len = sizeof body - 1 };
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	const char *json;
	size_t len;
	assert_int_equal(cv_audit_render(&row, &pool, &json, &len), CV_OK);
	assert_ptr_equal(json, body);
	assert_int_equal(len, sizeof body - 1);
	cv_pool_release(&pool);
}

static cv_rc decode(const void *p, size_t len)
{
	cv_pool_t pool;
	cv_audit_event_t e;
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_audit_decode(p, len, &pool, &e);
	cv_pool_release(&pool);
	return rc;
}

#define BYTES(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

static void malformed_stored_forms_are_refused(void **state)
{
	(void)state;
	/* a minimal good one: format 1, rest, 'R', outcome 0, status 200, flags 0, nres 1, agent "a" */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0xc8, 0x01, 0, 1, 3, 1, 'a')), CV_OK);
	assert_int_equal(decode(BYTES(0)), CV_E_INVALID);                                 /* nothing */
	assert_int_equal(decode(BYTES(2, 0, 'R', 0, 0, 0, 0)), CV_E_INVALID);             /* another format */
	assert_int_equal(decode(BYTES(1, 6, 'R', 0, 0, 0, 0)), CV_E_INVALID);             /* no such type */
	assert_int_equal(decode(BYTES(1, 0, 'X', 0, 0, 0, 0)), CV_E_INVALID);             /* no such action */
	assert_int_equal(decode(BYTES(1, 0, 0, 0, 0, 0, 0)), CV_E_INVALID);               /* no action */
	assert_int_equal(decode(BYTES(1, 0, 'R', 5, 0, 0, 0)), CV_E_INVALID);             /* no such outcome */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0xe8, 0x07, 0, 0)), CV_E_INVALID);    /* status 1000 */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0x80, 0x00, 0, 0)), CV_E_INVALID);    /* a varint not shortest */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02)),
			 CV_E_INVALID);                                                    /* nres past 64 bits */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0, 0, 0x80)), CV_E_INVALID);          /* a varint cut off */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0, 0, 0, 3, 2, 'a')), CV_E_INVALID);  /* a string cut off */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0, 0, 0, 3)), CV_E_INVALID);          /* a tag alone */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0, 0, 0, 3, 2, 'a', 0)), CV_E_INVALID); /* a NUL inside */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0, 0, 0, 0, 1, 'a')), CV_E_INVALID);  /* tag 0 */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0, 0, 0, 18, 1, 'a')), CV_E_INVALID); /* an unknown tag */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0, 0, 0, 17, 1, 'a')), CV_OK);      /* a patient under break-glass */
	assert_int_equal(decode(BYTES(1, 0, 'R', 0, 0, 0, 0, 3, 1, 'a', 3, 1, 'b')), CV_E_INVALID); /* agent twice */
	/* entities repeat, up to the most a record names */
	uint8_t many[8 + 4 * (CV_AUDIT_ENTITIES_MAX + 1)] = { 1, 0, 'R', 0, 0, 0, 0 };
	size_t n = 7;
	for (int i = 0; i <= CV_AUDIT_ENTITIES_MAX; i++) {
		many[n++] = 11; /* an entity */
		many[n++] = 2;
		many[n++] = 'e';
		many[n++] = 'x';
	}
	assert_int_equal(decode(many, n - 4), CV_OK);
	assert_int_equal(decode(many, n), CV_E_INVALID);
}

/* A stored record cut short inside a field is refused at every such length. */
static void a_record_cut_inside_a_field_is_refused(void **state)
{
	(void)state;
	cv_audit_event_t e = { .type = CV_AUDIT_REST, .subtype = "read", .action = 'R', .status = 200, .at_us = AT,
			       .agent = "u-1", .address = "192.0.2.7", .query = "a=b" };
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_store_write_t w = built(&e, &pool);
	/* the field boundaries: after the fixed part, then after each field */
	size_t cut_ok = 0;
	for (size_t len = 0; len < w.body_len; len++)
		if (decode(w.body, len) == CV_OK)
			cut_ok++;
	/* only the fixed part alone and each field boundary before the last: 1 + 3 */
	assert_int_equal(cut_ok, 4);
	cv_pool_release(&pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_kind_of_record_renders_the_same),
		cmocka_unit_test(the_most_entities_and_patients_render_the_same),
		cmocka_unit_test(a_read_record_is_small),
		cmocka_unit_test(a_json_record_is_served_as_stored),
		cmocka_unit_test(malformed_stored_forms_are_refused),
		cmocka_unit_test(a_record_cut_inside_a_field_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
