/*
 * query.h - SQL for search queries, shared by the back ends (private to store/).
 *
 * Turns a cv_store_query_t whose HASH keys are already blinded (key points at
 * CV_IX_BLIND_BYTES bytes) and whose ID terms hold row ids into one SELECT
 * (or count) and its bind values. The SQL is the same for SQLite and
 * PostgreSQL but for the placeholders (?N or $N) and a few casts.
 *
 * Tables (created by each back end's migrations):
 *   cv_resource(rk, type, rid, version, seq, updated_us, deleted)  one row per resource, its current version
 *   cv_ix_hash(h, rk)                    blinded keys of string, token, reference, uri entries
 *   cv_ix_date(rk, param, lo, hi)        date ranges, microseconds
 *   cv_ix_num(rk, param, unit, lo, hi)   number and quantity ranges
 */
#ifndef CV_STORE_QUERY_H
#define CV_STORE_QUERY_H

#include "store/store.h"

typedef enum { CV_BIND_INT, CV_BIND_REAL, CV_BIND_TEXT, CV_BIND_BLOB } cv_bind_kind;

typedef struct cv_bind {
	cv_bind_kind kind;
	int64_t i;
	double d;
	const void *p;  /* TEXT (NUL-terminated) or BLOB */
	size_t len;     /* BLOB */
} cv_bind_t;

#define CV_QUERY_BINDS_MAX 1024

typedef struct cv_sql {
	cv_buf_t text;                      /* the statement */
	size_t n;                           /* binds used */
	cv_bind_t binds[CV_QUERY_BINDS_MAX];
	int pg;                             /* $N placeholders and casts */
} cv_sql_t;

/* Builds the search statement for q. Its columns: rk, rid, version, seq,
 * updated_us, body, then one column per sort key. CV_E_LIMIT when the query
 * needs more binds than CV_QUERY_BINDS_MAX; CV_E_INVALID when malformed. */
cv_rc cv_query_search_sql(const cv_store_query_t *q, cv_sql_t *out);

/* Builds the statement that counts q's matches (one column). */
cv_rc cv_query_count_sql(const cv_store_query_t *q, cv_sql_t *out);

/* Builds an audit trail SELECT (keys already blinded: each of q->keys
 * points at CV_AUDIT_KEY_BYTES bytes). Its columns: pos, at_us, action,
 * outcome, flags, kind, subtype, agent, id, nres, keys, body, prev, hash,
 * npat
 * (body empty when !bodies). */
cv_rc cv_query_audit_sql(const cv_store_audit_query_t *q, bool bodies, cv_sql_t *out);

/* Prepares / releases a cv_sql_t. */
void cv_sql_init(cv_sql_t *s, int pg);
void cv_sql_release(cv_sql_t *s);

#endif
