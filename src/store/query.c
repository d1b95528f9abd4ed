/*
 * query.c - builds the SQL of a search (see query.h).
 *
 * Shape of a search statement:
 *   SELECT r.rk, r.rid, r.version, r.seq, r.updated_us, v.body, r.k0, ...
 *   FROM (SELECT rk, rid, version, seq, updated_us, <sort key> AS k0, ...
 *         FROM cv_resource r WHERE r.type = ? AND r.deleted = 0 AND <clauses>) r
 *   JOIN cv_version v ON v.seq = r.seq
 *   WHERE (r.k0, ..., r.rk) > (?, ..., ?)          -- keyset paging
 *   ORDER BY r.k0, ..., r.rk LIMIT ?
 * Every sort key is made ascending (a descending key is negated) and never
 * NULL (a resource without a value sorts last), so one row-value comparison
 * pages in any order. Hash terms are selective: `rk IN (SELECT rk FROM
 * cv_ix_hash WHERE h IN (...))`; range terms are probes per candidate:
 * `EXISTS (SELECT 1 FROM cv_ix_date d WHERE d.rk = r.rk AND ...)`.
 */
#include "store/query.h"

#include <string.h>

/* A resource without a value for a sort key gets 2^62 (dates) or 1e300
 * (numbers): after every real value. */
void cv_sql_init(cv_sql_t *s, int pg)
{
	memset(s, 0, sizeof *s);
	cv_buf_init(&s->text, 1u << 20);
	s->pg = pg;
}

void cv_sql_release(cv_sql_t *s)
{
	cv_buf_release(&s->text);
}

/* Appends a placeholder for a new bind value. */
static cv_rc ph(cv_sql_t *s, cv_bind_t b)
{
	if (s->n >= CV_QUERY_BINDS_MAX)
		return CV_E_LIMIT;
	s->binds[s->n++] = b;
	if (!s->pg)
		return cv_buf_printf(&s->text, "?%zu", s->n);
	const char *cast = b.kind == CV_BIND_INT ? "::bigint" : b.kind == CV_BIND_REAL ? "::float8"
			 : b.kind == CV_BIND_BLOB ? "::bytea" : "::text";
	return cv_buf_printf(&s->text, "$%zu%s", s->n, cast);
}

static cv_rc ph_int(cv_sql_t *s, int64_t v)
{
	return ph(s, (cv_bind_t){ .kind = CV_BIND_INT, .i = v });
}

static cv_rc ph_real(cv_sql_t *s, double v)
{
	return ph(s, (cv_bind_t){ .kind = CV_BIND_REAL, .d = v });
}

static cv_rc ph_text(cv_sql_t *s, const char *v)
{
	return ph(s, (cv_bind_t){ .kind = CV_BIND_TEXT, .p = v });
}

static cv_rc ph_blob(cv_sql_t *s, const void *p, size_t len)
{
	return ph(s, (cv_bind_t){ .kind = CV_BIND_BLOB, .p = p, .len = len });
}

static cv_rc put(cv_sql_t *s, const char *text)
{
	return cv_buf_puts(&s->text, text);
}

/* A range comparison: the stored range [lo col, hi col] against the search
 * value's range [P, Q] (the spec's rules for date, number and quantity). */
static cv_rc range_cmp(cv_sql_t *s, const char *lo, const char *hi, cv_cmp cmp, bool real, int64_t ilo,
		       int64_t ihi, double dlo, double dhi)
{
	cv_rc rc = CV_OK;
#define P() (real ? ph_real(s, dlo) : ph_int(s, ilo))
#define Q() (real ? ph_real(s, dhi) : ph_int(s, ihi))
#define T(x) (rc = rc ? rc : put(s, x))
#define B(x) (rc = rc ? rc : (x))
	switch (cmp) {
	case CV_CMP_EQ:
	case CV_CMP_NE:
		T(cmp == CV_CMP_NE ? "NOT (" : "(");
		T(lo); T(" >= "); B(P()); T(" AND "); T(hi); T(" <= "); B(Q()); T(")");
		break;
	case CV_CMP_GT:
		T(hi); T(" > "); B(Q());
		break;
	case CV_CMP_LT:
		T(lo); T(" < "); B(P());
		break;
	case CV_CMP_GE:
		T("("); T(hi); T(" > "); B(Q()); T(" OR ("); T(lo); T(" >= "); B(P()); T(" AND ");
		T(hi); T(" <= "); B(Q()); T("))");
		break;
	case CV_CMP_LE:
		T("("); T(lo); T(" < "); B(P()); T(" OR ("); T(lo); T(" >= "); B(P()); T(" AND ");
		T(hi); T(" <= "); B(Q()); T("))");
		break;
	case CV_CMP_SA:
		T(lo); T(" > "); B(Q());
		break;
	case CV_CMP_EB:
		T(hi); T(" < "); B(P());
		break;
	case CV_CMP_AP:
		T("("); T(lo); T(" <= "); B(Q()); T(" AND "); T(hi); T(" >= "); B(P()); T(")");
		break;
	default:
		rc = CV_E_INVALID;
	}
#undef P
#undef Q
#undef T
#undef B
	return rc;
}

/* The hash terms of a clause, as one IN list. */
static cv_rc hash_terms(cv_sql_t *s, const cv_store_clause_t *c)
{
	cv_rc rc = put(s, "r.rk IN (SELECT rk FROM cv_ix_hash WHERE h IN (");
	int first = 1;
	for (size_t i = 0; !rc && i < c->n; i++) {
		const cv_store_term_t *t = &c->terms[i];
		if (t->kind != CV_TERM_HASH)
			continue;
		if (!first)
			rc = put(s, ", ");
		first = 0;
		if (!rc)
			rc = ph_blob(s, t->key, t->key_len);
	}
	return rc ? rc : put(s, "))");
}

static cv_rc id_terms(cv_sql_t *s, const cv_store_clause_t *c)
{
	cv_rc rc = put(s, "r.rid IN (");
	int first = 1;
	for (size_t i = 0; !rc && i < c->n; i++) {
		if (c->terms[i].kind != CV_TERM_ID)
			continue;
		if (!first)
			rc = put(s, ", ");
		first = 0;
		if (!rc)
			rc = ph_text(s, c->terms[i].key);
	}
	return rc ? rc : put(s, ")");
}

static cv_rc range_term(cv_sql_t *s, const cv_store_term_t *t)
{
	cv_rc rc;
	if (t->kind == CV_TERM_UPDATED)
		return range_cmp(s, "r.updated_us", "r.updated_us", t->cmp, false, t->lo, t->hi, 0, 0);
	if (!t->param)
		return CV_E_INVALID;
	int num = t->kind == CV_TERM_NUM;
	rc = put(s, num ? "EXISTS (SELECT 1 FROM cv_ix_num x WHERE x.rk = r.rk AND x.param = "
			: "EXISTS (SELECT 1 FROM cv_ix_date x WHERE x.rk = r.rk AND x.param = ");
	if (!rc)
		rc = ph_text(s, t->param);
	if (!rc && num && t->key) {
		rc = put(s, " AND x.unit = ");
		if (!rc)
			rc = ph_text(s, t->key);
	}
	if (!rc)
		rc = put(s, " AND ");
	if (!rc)
		rc = range_cmp(s, "x.lo", "x.hi", t->cmp, num, t->lo, t->hi, t->nlo, t->nhi);
	return rc ? rc : put(s, ")");
}

static int has_kind(const cv_store_clause_t *c, cv_term_kind k)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->terms[i].kind == k)
			return 1;
	return 0;
}

static cv_rc clause(cv_sql_t *s, const cv_store_clause_t *c)
{
	if (c->n == 0)
		return CV_E_INVALID;
	cv_rc rc = put(s, c->negate ? " AND NOT (" : " AND (");
	int first = 1;
	if (!rc && has_kind(c, CV_TERM_HASH)) {
		rc = hash_terms(s, c);
		first = 0;
	}
	if (!rc && has_kind(c, CV_TERM_ID)) {
		rc = first ? CV_OK : put(s, " OR ");
		if (!rc)
			rc = id_terms(s, c);
		first = 0;
	}
	for (size_t i = 0; !rc && i < c->n; i++) {
		const cv_store_term_t *t = &c->terms[i];
		if (t->kind == CV_TERM_HASH || t->kind == CV_TERM_ID)
			continue;
		if (!first)
			rc = put(s, " OR ");
		first = 0;
		if (!rc)
			rc = range_term(s, t);
	}
	return rc ? rc : put(s, ")");
}

static cv_rc where(cv_sql_t *s, const cv_store_query_t *q)
{
	if (!q->type)
		return CV_E_INVALID;
	cv_rc rc = put(s, " FROM cv_resource r WHERE r.type = ");
	if (!rc)
		rc = ph_text(s, q->type);
	if (!rc)
		rc = put(s, s->pg ? " AND NOT r.deleted" : " AND r.deleted = 0");
	for (size_t i = 0; !rc && i < q->nclauses; i++)
		rc = clause(s, &q->clauses[i]);
	return rc;
}

/* One sort key as an ascending, never-NULL expression. */
static cv_rc sort_key(cv_sql_t *s, const cv_store_sort_t *k, int64_t as_of)
{
	cv_rc rc;
	if (k->kind == CV_SORT_UPDATED && as_of > 0) {
		/* the time of the version current at as_of: an update made since does not move it */
		rc = cv_buf_printf(&s->text, "%sCOALESCE((SELECT v.updated_us FROM cv_version v WHERE v.type = r.type "
					     "AND v.rid = r.rid AND v.seq <= ", k->desc ? "-" : "");
		if (!rc)
			rc = ph_int(s, as_of);
		return rc ? rc : cv_buf_printf(&s->text, " ORDER BY v.version DESC LIMIT 1), %s)",
					       k->desc ? "-4611686018427387904" : "4611686018427387904");
	}
	if (k->kind == CV_SORT_UPDATED)
		return put(s, k->desc ? "-r.updated_us" : "r.updated_us");
	int num = k->kind == CV_SORT_NUM;
	const char *table = num ? "cv_ix_num" : "cv_ix_date";
	rc = cv_buf_printf(&s->text, "%sCOALESCE((SELECT %s(x.%s) FROM %s x WHERE x.rk = r.rk AND x.param = ",
			   k->desc ? "-" : "", k->desc ? "max" : "min", k->desc ? "hi" : "lo", table);
	if (!rc)
		rc = ph_text(s, k->param);
	const char *big = num ? (k->desc ? "-1e300" : "1e300")
			      : (k->desc ? "-4611686018427387904" : "4611686018427387904");
	return rc ? rc : cv_buf_printf(&s->text, "), %s)", big);
}

cv_rc cv_query_search_sql(const cv_store_query_t *q, cv_sql_t *s)
{
	if (q->nsort > CV_STORE_SORT_MAX)
		return CV_E_INVALID;
	cv_rc rc = put(s, "SELECT r.rk, r.rid, r.version, r.seq, r.updated_us, v.body");
	for (size_t i = 0; !rc && i < q->nsort; i++)
		rc = cv_buf_printf(&s->text, ", r.k%zu", i);
	if (!rc)
		rc = put(s, " FROM (SELECT r.rk, r.rid, r.version, r.seq, r.updated_us");
	for (size_t i = 0; !rc && i < q->nsort; i++) {
		rc = put(s, ", ");
		if (!rc)
			rc = sort_key(s, &q->sort[i], q->as_of_seq);
		if (!rc)
			rc = cv_buf_printf(&s->text, " AS k%zu", i);
	}
	if (!rc)
		rc = where(s, q);
	if (!rc)
		rc = put(s, ") r JOIN cv_version v ON v.seq = r.seq");
	if (!rc && q->after.set) {
		rc = put(s, " WHERE (");
		for (size_t i = 0; !rc && i < q->nsort; i++)
			rc = cv_buf_printf(&s->text, "r.k%zu, ", i);
		if (!rc)
			rc = put(s, "r.rk) > (");
		for (size_t i = 0; !rc && i < q->nsort; i++) {
			rc = q->sort[i].kind == CV_SORT_NUM ? ph_real(s, q->after.dkey[i]) : ph_int(s, q->after.ikey[i]);
			if (!rc)
				rc = put(s, ", ");
		}
		if (!rc)
			rc = ph_int(s, q->after.rk);
		if (!rc)
			rc = put(s, ")");
	}
	if (!rc)
		rc = put(s, " ORDER BY ");
	for (size_t i = 0; !rc && i < q->nsort; i++)
		rc = cv_buf_printf(&s->text, "r.k%zu, ", i);
	if (!rc)
		rc = put(s, "r.rk LIMIT ");
	if (!rc)
		rc = ph_int(s, q->limit);
	return rc;
}

cv_rc cv_query_count_sql(const cv_store_query_t *q, cv_sql_t *s)
{
	cv_rc rc = put(s, "SELECT count(*)");
	if (!rc)
		rc = where(s, q);
	return rc;
}

/* ---- the audit trail ------------------------------------------------------ */

/* " AND <col> <op> " (the placeholder follows) */
static cv_rc audit_cond(cv_sql_t *s, const char *col, const char *op)
{
	return cv_buf_printf(&s->text, " AND %s %s ", col, op);
}

/* An action letter as a string that outlives the statement. */
static const char *action_text(char a)
{
	static const char letters[] = "C\0R\0U\0D\0E";
	const char *p = strchr("CRUDE", a);
	return p && a ? letters + 2 * (p - "CRUDE") : "?";
}

/* Which rows of an agent= search a SELECT takes: those whose agent column
 * names it, or (AGENT_BY_KEY) the others whose search keys name it as the
 * app acting for a person. */
enum { AGENT_BY_COLUMN, AGENT_BY_KEY };

static cv_rc audit_where(const cv_store_audit_query_t *q, int arm, cv_sql_t *s)
{
	cv_rc rc = put(s, " WHERE 1 = 1");
	for (size_t i = 0; !rc && i < q->nkeys; i++)
		if (!(rc = put(s, " AND a.pos IN (SELECT pos FROM cv_audit_key WHERE k = ")) &&
		    !(rc = ph_blob(s, q->keys[i], CV_AUDIT_KEY_BYTES)))
			rc = put(s, ")");
	if (!rc && q->id && !(rc = audit_cond(s, "a.id", "=")))
		rc = ph_text(s, q->id);
	if (!rc && q->agent && arm == AGENT_BY_KEY && !(rc = put(s, " AND a.pos IN (SELECT pos FROM cv_audit_key WHERE k = ")) &&
	    !(rc = ph_blob(s, q->agent_key, CV_AUDIT_KEY_BYTES)) && !(rc = put(s, ")")) &&
	    !(rc = audit_cond(s, "a.agent", "<>")))
		rc = ph_text(s, q->agent);
	else if (!rc && q->agent && arm == AGENT_BY_COLUMN && !(rc = audit_cond(s, "a.agent", "=")))
		rc = ph_text(s, q->agent);
	if (!rc && q->from_us && !(rc = audit_cond(s, "a.at_us", ">=")))
		rc = ph_int(s, q->from_us);
	if (!rc && q->to_us && !(rc = audit_cond(s, "a.at_us", "<=")))
		rc = ph_int(s, q->to_us);
	if (!rc && q->action && !(rc = audit_cond(s, "a.action", "=")))
		rc = ph_text(s, action_text(q->action));
	if (!rc && q->outcome >= 0 && !(rc = audit_cond(s, "a.outcome", "=")))
		rc = ph_int(s, q->outcome);
	if (!rc && q->flags && !(rc = put(s, " AND (a.flags & ")) && !(rc = ph_int(s, q->flags)) &&
	    !(rc = put(s, ") = ")))
		rc = ph_int(s, q->flags);
	if (!rc && q->kind && !(rc = audit_cond(s, "a.kind", "=")))
		rc = ph_text(s, q->kind);
	if (!rc && q->subtype && !(rc = audit_cond(s, "a.subtype", "=")))
		rc = ph_text(s, q->subtype);
	if (!rc && q->before_pos > 0 && !(rc = audit_cond(s, "a.pos", "<")))
		rc = ph_int(s, q->before_pos);
	if (!rc && q->after_pos > 0 && !(rc = audit_cond(s, "a.pos", ">")))
		rc = ph_int(s, q->after_pos);
	return rc;
}

/* One SELECT of the rows (arm: which of an agent= search's). */
static cv_rc audit_select(const cv_store_audit_query_t *q, bool bodies, int arm, cv_sql_t *s)
{
	cv_rc rc = cv_buf_printf(&s->text, "SELECT a.pos, a.at_us, a.action, a.outcome, a.flags, a.kind, a.subtype, "
				 "a.agent, a.id, a.nres, a.keys, %s, a.prev, a.hash, a.npat FROM cv_audit a",
				 bodies ? "a.body" : (s->pg ? "''::bytea" : "x''"));
	if (!rc)
		rc = audit_where(q, arm, s);
	if (!rc)
		rc = cv_buf_printf(&s->text, " ORDER BY a.pos %s LIMIT ", q->ascending ? "ASC" : "DESC");
	if (!rc)
		rc = ph_int(s, q->limit ? q->limit : 100);
	return rc;
}

/* With an app's key, agent= is two SELECTs, each taking its page along an
 * index (the agent column's; the search key's), merged: one "agent = ? OR
 * pos IN (...)" would scan the trail for a rare agent. */
cv_rc cv_query_audit_sql(const cv_store_audit_query_t *q, bool bodies, cv_sql_t *s)
{
	if (!q->agent || !q->agent_key)
		return audit_select(q, bodies, AGENT_BY_COLUMN, s);
	cv_rc rc = put(s, "SELECT * FROM (");
	if (!rc)
		rc = audit_select(q, bodies, AGENT_BY_COLUMN, s);
	if (!rc)
		rc = put(s, ") ua UNION ALL SELECT * FROM (");
	if (!rc)
		rc = audit_select(q, bodies, AGENT_BY_KEY, s);
	if (!rc)
		rc = cv_buf_printf(&s->text, ") ub ORDER BY 1 %s LIMIT ", q->ascending ? "ASC" : "DESC");
	if (!rc)
		rc = ph_int(s, q->limit ? q->limit : 100);
	return rc;
}
