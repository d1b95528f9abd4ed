/*
 * fuzz_auditrec.c - the audit record's stored form (audit/record.c): read
 * back from the store on every AuditEvent search, access report and export,
 * so a tampered row reaches it. Never crashes nor reads past the length it
 * is given; a record it accepts renders as AuditEvent JSON that parses, and
 * its event encoded again decodes and renders to the same JSON.
 */
#include <assert.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The JSON of stored form p, or NULL when it is refused. */
static const char *render(const uint8_t *p, size_t len, cv_pool_t *pool, size_t *out_len)
{
	cv_store_audit_row_t row = { .id = "0193c5a1-2b3c-7d4e-8f90-123456789abc", .at_us = 1767225600123456LL,
				     .body = p, .body_len = len };
	const char *json = NULL;
	return cv_audit_render(&row, pool, &json, out_len) == CV_OK ? json : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size && data[0] == '{') /* a JSON body is served as stored, not parsed */
		return 0;
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_audit_event_t e;
	if (cv_audit_decode(data, size, &pool, &e) != CV_OK) {
		size_t n;
		assert(render(data, size, &pool, &n) == NULL);
		cv_pool_release(&pool);
		return 0;
	}
	size_t len, len2;
	const char *json = render(data, size, &pool, &len);
	assert(json && strlen(json) == len);
	json_object *o = json_tokener_parse(json);
	assert(o);
	json_object_put(o);
	cv_buf_t again;
	cv_buf_init(&again, 8u << 20);
	assert(cv_audit_encode(&e, &again) == CV_OK);
	const char *json2 = render((const uint8_t *)again.data, again.len, &pool, &len2);
	assert(json2 && len2 == len && memcmp(json, json2, len) == 0);
	cv_buf_release(&again);
	cv_pool_release(&pool);
	return 0;
}
