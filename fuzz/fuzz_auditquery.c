/*
 * fuzz_auditquery.c - the audit trail's other parsers: the AuditEvent search
 * parameters (the input is split at '&' into name=value pairs) and one
 * record line of a retention archive. Neither crashes; a query it accepts
 * is bounded (at most CV_AUDIT_QUERY_KEYS keys, a page of 1 to 1000, a
 * date range that is not empty); a record it accepts has a one-letter
 * action and round-trips its hash fields.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "audit/query.h"

#define PARAMS_MAX 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void query(char *s)
{
	cv_param_t p[PARAMS_MAX];
	size_t n = 0;
	for (char *tok = s, *next; tok && n < PARAMS_MAX; tok = next) {
		next = strchr(tok, '&');
		if (next)
			*next++ = '\0';
		char *eq = strchr(tok, '=');
		if (eq)
			*eq = '\0';
		p[n++] = (cv_param_t){ .name = tok, .value = eq ? eq + 1 : "" };
	}
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_store_audit_query_t q;
	char why[300];
	if (cv_audit_query_parse(p, n, 50, 1000, &pool, &q, why, sizeof why) == CV_OK) {
		assert(q.nkeys <= CV_AUDIT_QUERY_KEYS);
		assert(q.limit >= 1 && q.limit <= 1000);
		assert(!q.from_us || !q.to_us || q.from_us <= q.to_us);
	} else {
		assert(why[0]);
	}
	cv_pool_release(&pool);
}

static void archive_row(const char *s, size_t len)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_store_audit_row_t r;
	if (cv_audit_archive_parse_row(s, len, &pool, &r) == CV_OK) {
		assert(r.kind && r.subtype && r.agent && r.id && r.keys && r.body);
		uint8_t h[CV_AUDIT_HASH_BYTES];
		cv_store_audit_hash(&r, h); /* any parsed row can be hashed */
	}
	cv_pool_release(&pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	archive_row(s, strlen(s));
	query(s);
	free(s);
	return 0;
}
