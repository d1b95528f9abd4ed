/*
 * test_search.c - search parameters to plans (cv_search_parse), form bodies
 * (cv_search_form_decode), and the matching rules of the in-memory check
 * (cv_search_check) on parsed resources: date, number and quantity prefixes
 * at every precision and at their boundaries, strings, tokens, references,
 * blinded birth dates, composites and negation. For clauses the index answers
 * exactly (no check), the index entries must give the same answer as the
 * check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"
#include "fhir/search.h"

#define BASE "https://cv.example/fhir"

typedef struct fx {
	cv_model_t *model;
	cv_sp_registry_t *reg;
	cv_pool_t pool;
	cv_outcome_t oo;
	cv_search_plan_t *plan; /* the last parse's, in pool (one plan per parse: its buffer is released with the pool) */
	cv_search_limits_t lim;
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	char err[256];
	size_t failed = 99;
	if (!f || cv_model_new(&f->model) != CV_OK)
		return -1;
	if (cv_sp_registry_new(f->model, &f->reg, &failed, err, sizeof err) != CV_OK || failed != 0)
		return -1;
	f->lim = (cv_search_limits_t){ .default_count = 20, .max_count = 100 };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	cv_sp_registry_free(f->reg);
	cv_model_free(f->model);
	free(f);
	return 0;
}

/* Each test gets a fresh pool and outcome. */
static int test_setup(void **state)
{
	fx_t *f = *state;
	cv_pool_init(&f->pool, 0);
	cv_outcome_init(&f->oo, &f->pool, 0);
	return 0;
}

static int test_teardown(void **state)
{
	fx_t *f = *state;
	cv_pool_release(&f->pool);
	return 0;
}

/* ---- helpers ------------------------------------------------------------ */

/* Parses n name/value pairs (names at even, values at odd positions). */
static cv_rc parse_n(fx_t *f, const char *type, const char *const *kv, size_t n, bool lenient)
{
	cv_param_t ps[16];
	assert_true(n <= 16);
	for (size_t i = 0; i < n; i++)
		ps[i] = (cv_param_t){ .name = kv[2 * i], .value = kv[2 * i + 1] };
	cv_outcome_init(&f->oo, &f->pool, 0);
	f->plan = cv_pool_alloc(&f->pool, sizeof *f->plan);
	assert_non_null(f->plan);
	return cv_search_parse(f->reg, f->model, type, ps, n, BASE, lenient, &f->lim, &f->pool, f->plan, &f->oo);
}

static cv_rc parse1(fx_t *f, const char *type, const char *name, const char *value)
{
	const char *kv[] = { name, value };
	return parse_n(f, type, kv, 1, false);
}

/* Parses one parameter that must be valid; its clause. */
static const cv_search_clause_t *clause(fx_t *f, const char *type, const char *name, const char *value)
{
	cv_rc rc = parse1(f, type, name, value);
	if (rc != CV_OK)
		fail_msg("%s=%s: rc %d (%s)", name, value, (int)rc,
			 f->oo.head ? f->oo.head->diagnostics : "no issue");
	assert_int_equal(f->plan->n, 1);
	return &f->plan->clauses[0];
}

/* The parameter is refused with rc, and an issue of severity error says why. */
static void refused(fx_t *f, const char *type, const char *name, const char *value, cv_rc want)
{
	cv_rc rc = parse1(f, type, name, value);
	if (rc != want)
		fail_msg("%s=%s: rc %d, expected %d", name, value, (int)rc, (int)want);
	assert_true(cv_outcome_errors(&f->oo) >= 1);
	assert_non_null(f->oo.head->diagnostics);
}

/* The clause's index terms hold a HASH term of param with exactly this key. */
static bool sql_has(const cv_search_clause_t *c, const char *param, const char *key)
{
	for (size_t i = 0; i < c->sql.n; i++) {
		const cv_store_term_t *t = &c->sql.terms[i];
		if (t->kind == CV_TERM_HASH && strcmp(t->param, param) == 0 && t->key_len == strlen(key) &&
		    memcmp(t->key, key, t->key_len) == 0)
			return true;
	}
	return false;
}

static void one_hash(const cv_search_clause_t *c, const char *param, const char *key)
{
	assert_int_equal(c->sql.n, 1);
	if (!sql_has(c, param, key))
		fail_msg("expected the term %s '%s', got '%.*s'", param, key, (int)c->sql.terms[0].key_len,
			 c->sql.terms[0].key ? c->sql.terms[0].key : "");
}

/* The spec's range comparison, as the store's SQL applies it (store/query.c). */
static bool range_ok(cv_cmp cmp, double lo, double hi, double P, double Q)
{
	switch (cmp) {
	case CV_CMP_EQ: return lo >= P && hi <= Q;
	case CV_CMP_NE: return !(lo >= P && hi <= Q);
	case CV_CMP_GT: return hi > Q;
	case CV_CMP_LT: return lo < P;
	case CV_CMP_GE: return hi > Q || (lo >= P && hi <= Q);
	case CV_CMP_LE: return lo < P || (lo >= P && hi <= Q);
	case CV_CMP_SA: return lo > Q;
	case CV_CMP_EB: return hi < P;
	default: return lo <= Q && hi >= P;
	}
}

/* What the store would answer for clause c from the index entries es. */
static bool index_answer(const cv_search_clause_t *c, const cv_sp_entries_t *es)
{
	bool hit = false;
	for (size_t i = 0; !hit && i < c->sql.n; i++) {
		const cv_store_term_t *t = &c->sql.terms[i];
		for (size_t k = 0; !hit && k < es->n; k++) {
			const cv_ix_entry_t *e = &es->v[k];
			if (strcmp(e->param, t->param) != 0)
				continue;
			if (t->kind == CV_TERM_HASH)
				hit = e->kind == CV_IX_HASH && e->key_len == t->key_len &&
				      memcmp(e->key, t->key, t->key_len) == 0;
			else if (t->kind == CV_TERM_DATE)
				hit = e->kind == CV_IX_DATE &&
				      range_ok(t->cmp, (double)e->lo, (double)e->hi, (double)t->lo, (double)t->hi);
			else if (t->kind == CV_TERM_NUM)
				hit = e->kind == CV_IX_NUM && (!t->key || strcmp(e->key, t->key) == 0) &&
				      range_ok(t->cmp, e->nlo, e->nhi, t->nlo, t->nhi);
		}
	}
	return c->sql.negate ? !hit : hit;
}

/* Does the resource (JSON) match name=value on type? Checks every clause with
 * cv_search_check; for a clause without check, the index's answer (from the
 * resource's index-mode entries) must be the same. */
static bool matches(fx_t *f, const char *type, const char *name, const char *value, const char *json)
{
	json_object *res = json_tokener_parse(json);
	assert_non_null(res);
	cv_rc rc = parse1(f, type, name, value);
	if (rc != CV_OK) {
		json_object_put(res);
		fail_msg("%s=%s: rc %d (%s)", name, value, (int)rc, f->oo.head ? f->oo.head->diagnostics : "");
	}
	bool all = true;
	for (size_t i = 0; i < f->plan->n; i++) {
		const cv_search_clause_t *c = &f->plan->clauses[i];
		bool hit = cv_search_check(c, f->model, res, &f->pool);
		if (c->sp && c->use_sql && !c->chain) {
			cv_sp_entries_t es = { .pool = &f->pool };
			assert_int_equal(cv_sp_extract(f->reg, f->model, res, CV_SP_INDEX, &es), CV_OK);
			bool ix = index_answer(c, &es);
			/* exact: the same answer; narrowing: a superset of the matches */
			if (c->check ? (hit && !ix && !c->negate) : ix != hit) {
				json_object_put(res);
				fail_msg("%s=%s: the index says %d, the check %d", name, value, ix, hit);
			}
		}
		all = all && hit;
	}
	json_object_put(res);
	return all;
}

#define MATCH(type, name, value, json)                                                                        \
	do {                                                                                                      \
		if (!matches(f, type, name, value, json))                                                         \
			fail_msg("%s=%s should match %s", name, value, #json);                                    \
	} while (0)
#define NO_MATCH(type, name, value, json)                                                                     \
	do {                                                                                                      \
		if (matches(f, type, name, value, json))                                                          \
			fail_msg("%s=%s should not match %s", name, value, #json);                                \
	} while (0)

/* ---- parsing ------------------------------------------------------------ */

static void unknown_parameters(void **state)
{
	fx_t *f = *state;
	refused(f, "Patient", "nonsense", "1", CV_E_INVALID);
	assert_int_equal(f->oo.head->severity, CV_SEV_ERROR);
	assert_non_null(strstr(f->oo.head->diagnostics, "nonsense"));
	refused(f, "Patient", "code", "x", CV_E_INVALID); /* an Observation parameter */
	refused(f, "Patient", "nonsense:exact", "1", CV_E_INVALID);

	const char *kv[] = { "nonsense", "1", "name", "smith" };
	assert_int_equal(parse_n(f, "Patient", kv, 2, true), CV_OK);
	assert_int_equal(f->plan->n, 1);
	assert_string_equal(f->plan->clauses[0].name, "name");
	assert_int_equal(cv_outcome_errors(&f->oo), 0);
	assert_int_equal(f->oo.count, 1);
	assert_int_equal(f->oo.head->severity, CV_SEV_WARNING);
	assert_non_null(strstr(f->oo.head->diagnostics, "nonsense"));
	/* the value is never echoed */
	const char *kv2[] = { "zzsecretname", "JohnDoe1234" };
	assert_int_equal(parse_n(f, "Patient", kv2, 1, false), CV_E_INVALID);
	assert_null(strstr(f->oo.head->diagnostics, "JohnDoe1234"));
	/* an unsupported modifier of a known parameter is refused even when lenient */
	const char *kv6[] = { "name:below", "x" };
	assert_int_equal(parse_n(f, "Patient", kv6, 1, true), CV_E_UNSUPPORTED);
	/* a bad value is refused even when lenient */
	const char *kv3[] = { "birthdate", "yesterday" };
	assert_int_equal(parse_n(f, "Patient", kv3, 1, true), CV_E_INVALID);
	assert_null(strstr(f->oo.head->diagnostics, "yesterday"));
	/* an empty name is skipped, a NULL value is the empty value */
	const char *kv4[] = { "", "x" };
	assert_int_equal(parse_n(f, "Patient", kv4, 1, false), CV_OK);
	assert_int_equal(f->plan->n, 0);
	assert_int_equal(f->plan->count, 20);
	const char *kv5[] = { "name", NULL };
	assert_int_equal(parse_n(f, "Patient", kv5, 1, false), CV_E_INVALID);
}

static void dates_parse(void **state)
{
	fx_t *f = *state;
	static const char *const bad[] = { "2013-13", "2013-02-30", "13-01-01", "2013-01-14T25:00Z", "xx2013",
					   "2013-01-14T10:00:00+15:00", "2013-01-14 10:00", "2013-1-1", "",
					   "gt", "2013-01-14T10" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		refused(f, "Observation", "date", bad[i], CV_E_INVALID);
	refused(f, "Observation", "date:exact", "2013", CV_E_UNSUPPORTED);
	refused(f, "Patient", "_lastUpdated", "2013-02-29", CV_E_INVALID);

	const cv_search_clause_t *c = clause(f, "Observation", "date", "ge2013-01-14");
	assert_int_equal(c->sql.n, 1);
	assert_int_equal(c->sql.terms[0].kind, CV_TERM_DATE);
	assert_int_equal(c->sql.terms[0].cmp, CV_CMP_GE);
	assert_true(c->sql.terms[0].lo == 1358121600000000LL);
	assert_true(c->sql.terms[0].hi == 1358121600000000LL + 86400LL * 1000000 - 1);
	assert_false(c->check);
	assert_true(c->use_sql);
	assert_string_equal(c->sql.terms[0].param, "date");

	c = clause(f, "Encounter", "date", "2013-01,2014");
	assert_int_equal(c->sql.n, 2);
	assert_int_equal(c->nm, 2);
	assert_int_equal(c->sql.terms[1].cmp, CV_CMP_EQ);

	c = clause(f, "Patient", "_lastUpdated", "lt2020-01-01T00:00:00Z");
	assert_null(c->sp);
	assert_int_equal(c->sql.terms[0].kind, CV_TERM_UPDATED);
	assert_int_equal(c->sql.terms[0].cmp, CV_CMP_LT);
}

static void tokens_parse(void **state)
{
	fx_t *f = *state;
	const cv_search_clause_t *c = clause(f, "Observation", "code", "8480-6");
	one_hash(c, "code", "c:8480-6");
	assert_false(c->negate);
	assert_false(c->check);
	c = clause(f, "Observation", "code", "http://loinc.org|8480-6");
	one_hash(c, "code", "sc:http://loinc.org|8480-6");
	c = clause(f, "Observation", "code", "|8480-6");
	one_hash(c, "code", "n:8480-6");
	c = clause(f, "Observation", "code", "http://loinc.org|");
	one_hash(c, "code", "s:http://loinc.org|");
	refused(f, "Observation", "code", "|", CV_E_INVALID);
	refused(f, "Observation", "code", "", CV_E_INVALID);
	refused(f, "Observation", "code:below", "x", CV_E_UNSUPPORTED);

	/* ORed values */
	c = clause(f, "Patient", "gender", "male,female");
	assert_int_equal(c->sql.n, 2);
	assert_true(sql_has(c, "gender", "c:male"));
	assert_true(sql_has(c, "gender", "c:female"));
	/* at most CV_SEARCH_VALUES_MAX values */
	char many[CV_SEARCH_VALUES_MAX * 3 + 8];
	size_t len = 0;
	for (int i = 0; i < CV_SEARCH_VALUES_MAX; i++)
		len += (size_t)snprintf(many + len, sizeof many - len, i ? ",xy" : "xy");
	c = clause(f, "Patient", "identifier", many);
	assert_int_equal(c->sql.n, CV_SEARCH_VALUES_MAX);
	snprintf(many + len, sizeof many - len, ",xy");
	refused(f, "Patient", "identifier", many, CV_E_INVALID);
	/* an escaped comma is part of the value */
	c = clause(f, "Patient", "identifier", "a\\,b");
	one_hash(c, "identifier", "c:a,b");

	/* :not negates the clause, in SQL too */
	c = clause(f, "Patient", "gender:not", "male");
	one_hash(c, "gender", "c:male");
	assert_true(c->negate);
	assert_true(c->sql.negate);
	assert_true(c->use_sql);

	/* :text: folded prefixes */
	c = clause(f, "Observation", "code:text", "Systolic");
	one_hash(c, "code", "t:systolic");
	assert_false(c->check);
	c = clause(f, "Observation", "code:text", "Systolic B");
	one_hash(c, "code", "t:systolic b");
	assert_false(c->check);
	c = clause(f, "Observation", "code:text", "Systolic BP");
	one_hash(c, "code", "t:systolic b");
	assert_true(c->check);
	assert_int_equal(c->m[0].kind, CV_MT_TFPREFIX);

	/* :of-type */
	c = clause(f, "Patient", "identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|123");
	one_hash(c, "identifier", "ot:http://terminology.hl7.org/CodeSystem/v2-0203|MR|123");
	refused(f, "Patient", "identifier:of-type", "MR|123", CV_E_INVALID);
	refused(f, "Patient", "identifier:of-type", "a|MR|", CV_E_INVALID);

	/* :missing */
	c = clause(f, "Patient", "gender:missing", "true");
	one_hash(c, "gender", "m:");
	assert_true(c->negate);
	c = clause(f, "Patient", "birthdate:missing", "false");
	one_hash(c, "birthdate", "m:");
	assert_false(c->negate);
	refused(f, "Patient", "gender:missing", "yes", CV_E_INVALID);
}

static void tokens_keep_escaped_bars(void **state)
{
	fx_t *f = *state;
	/* "a\|b" is the code "a|b" without a system (FHIR search escaping), not
	 * the system "a" with the code "b" */
	const cv_search_clause_t *c = clause(f, "Patient", "identifier", "a\\|b");
	one_hash(c, "identifier", "c:a|b");
}

/* "\$" in a composite's part is a '$', not a separator */
static void composite_parts_keep_escaped_dollars(void **state)
{
	fx_t *f = *state;
	const cv_search_clause_t *c = clause(f, "Observation", "code-value-quantity", "a\\$b$5");
	one_hash(c, "code", "c:a$b");
}

static void strings_parse(void **state)
{
	fx_t *f = *state;
	const cv_search_clause_t *c = clause(f, "Patient", "name", "Zoë");
	one_hash(c, "name", "p:zoe");
	assert_false(c->check);
	c = clause(f, "Patient", "name", "  MÜLLER ");
	one_hash(c, "name", "p:muller");
	assert_false(c->check);
	/* 7 characters: the 6-character prefix narrows, the check decides */
	c = clause(f, "Patient", "name", "Müllers");
	one_hash(c, "name", "p:muller");
	assert_true(c->check);
	assert_true(c->use_sql);
	assert_int_equal(c->nm, 1);
	assert_int_equal(c->m[0].kind, CV_MT_FPREFIX);
	assert_int_equal(c->m[0].key_len, 7);
	assert_memory_equal(c->m[0].key, "mullers", 7);
	/* past the longest indexed length */
	c = clause(f, "Patient", "name", "abcdefghijklmnopqrstuvwxyzabcdefghij");
	one_hash(c, "name", "p:abcdefghijklmnopqrstuvwxyzabcdef");
	assert_true(c->check);
	/* :exact keeps the text as written */
	c = clause(f, "Patient", "name:exact", "Zoë");
	one_hash(c, "name", "e:Zoë");
	assert_false(c->check);
	refused(f, "Patient", "name:exact", "", CV_E_INVALID);
	/* :contains narrows by a trigram and checks */
	c = clause(f, "Patient", "name:contains", "ÜLLE");
	one_hash(c, "name", "g:ull");
	assert_true(c->check);
	assert_int_equal(c->m[0].kind, CV_MT_FCONTAINS);
	refused(f, "Patient", "name:contains", "ab", CV_E_INVALID);
	refused(f, "Patient", "name:contains", "  ab  ", CV_E_INVALID);
	refused(f, "Patient", "name", "   ", CV_E_INVALID);
	refused(f, "Patient", "name", "\xc3\x28", CV_E_INVALID);
	refused(f, "Patient", "name:below", "x", CV_E_UNSUPPORTED);
	/* a negated clause that only narrows in SQL is not used in SQL */
	c = clause(f, "Patient", "name:missing", "true");
	assert_true(c->use_sql);
}

static void references_parse(void **state)
{
	fx_t *f = *state;
	const cv_search_clause_t *c = clause(f, "Observation", "subject", "Patient/p1");
	one_hash(c, "subject", "r:Patient/p1");
	c = clause(f, "Observation", "subject", "p1"); /* several targets: any type */
	one_hash(c, "subject", "i:p1");
	c = clause(f, "Observation", "specimen", "s1"); /* one target: that type */
	one_hash(c, "specimen", "r:Specimen/s1");
	c = clause(f, "Encounter", "service-provider", "org1");
	one_hash(c, "service-provider", "r:Organization/org1");
	c = clause(f, "Observation", "subject:Patient", "p1");
	one_hash(c, "subject", "r:Patient/p1");
	refused(f, "Observation", "subject:Patient", "Group/g1", CV_E_INVALID);
	refused(f, "Observation", "subject:Nonsense", "p1", CV_E_UNSUPPORTED);
	/* our own base is local (and the URL itself, as a resource may hold it), another server's is not */
	c = clause(f, "Observation", "subject", BASE "/Patient/p1");
	assert_int_equal(c->sql.n, 2);
	assert_true(sql_has(c, "subject", "r:Patient/p1"));
	assert_true(sql_has(c, "subject", "u:" BASE "/Patient/p1"));
	c = clause(f, "Observation", "subject", "Patient/p1/_history/4");
	one_hash(c, "subject", "r:Patient/p1");
	c = clause(f, "Observation", "subject", "https://other.example/fhir/Patient/p1");
	one_hash(c, "subject", "u:https://other.example/fhir/Patient/p1");
	c = clause(f, "Observation", "subject:identifier", "http://hosp/mrn|MRN-1");
	one_hash(c, "subject", "id:http://hosp/mrn|MRN-1");
	c = clause(f, "Observation", "subject:identifier", "MRN-1");
	one_hash(c, "subject", "idn:MRN-1");
	refused(f, "Observation", "subject", "", CV_E_INVALID);

	/* uri */
	c = clause(f, "ValueSet", "url", "http://acme.org/fhir/ValueSet/vs1");
	one_hash(c, "url", "u:http://acme.org/fhir/ValueSet/vs1");
	c = clause(f, "ValueSet", "url:below", "http://acme.org/fhir/");
	one_hash(c, "url", "ub:http://acme.org/fhir");
	c = clause(f, "ValueSet", "url:above", "http://acme.org/fhir/ValueSet/vs1");
	assert_int_equal(c->sql.n, 4);
	assert_true(sql_has(c, "url", "u:http://acme.org"));
	assert_true(sql_has(c, "url", "u:http://acme.org/fhir"));
	assert_true(sql_has(c, "url", "u:http://acme.org/fhir/ValueSet/vs1"));
	refused(f, "ValueSet", "url:contains", "acme", CV_E_UNSUPPORTED);
}

static void numbers_parse(void **state)
{
	fx_t *f = *state;
	const cv_search_clause_t *c = clause(f, "Observation", "value-quantity", "100");
	assert_int_equal(c->sql.n, 1);
	assert_int_equal(c->sql.terms[0].kind, CV_TERM_NUM);
	assert_null(c->sql.terms[0].key);
	/* [99.5, 100.5): the upper end is excluded */
	assert_true(c->sql.terms[0].nlo == 99.5 && c->sql.terms[0].nhi < 100.5 && c->sql.terms[0].nhi > 100.4999999);
	c = clause(f, "Observation", "value-quantity", "100.00");
	assert_true(c->sql.terms[0].nlo > 99.99 && c->sql.terms[0].nlo < 99.996);
	assert_true(c->sql.terms[0].nhi > 100.004 && c->sql.terms[0].nhi < 100.01);
	c = clause(f, "Observation", "value-quantity", "1e2");
	assert_true(c->sql.terms[0].nlo == 50 && c->sql.terms[0].nhi < 150 && c->sql.terms[0].nhi > 149.999);
	c = clause(f, "Observation", "value-quantity", "gt100");
	assert_int_equal(c->sql.terms[0].cmp, CV_CMP_GT);
	assert_true(c->sql.terms[0].nlo == 100 && c->sql.terms[0].nhi == 100);
	c = clause(f, "Observation", "value-quantity", "ap100");
	assert_true(c->sql.terms[0].nlo == 90 && c->sql.terms[0].nhi == 110);
	c = clause(f, "Observation", "value-quantity", "5.4|http://unitsofmeasure.org|mg");
	assert_string_equal(c->sql.terms[0].key, "s|http://unitsofmeasure.org|mg");
	c = clause(f, "Observation", "value-quantity", "5.4||mg");
	assert_string_equal(c->sql.terms[0].key, "c|mg");
	c = clause(f, "Observation", "value-quantity", "5.4||");
	assert_null(c->sql.terms[0].key);
	static const char *const bad[] = { "abc", "", "gt", "1e999", "nan", "inf", " 5", "5 ", "5|mg", "1|a|b|c" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		refused(f, "Observation", "value-quantity", bad[i], CV_E_INVALID);
	refused(f, "Observation", "value-quantity:missing", "maybe", CV_E_INVALID);
	refused(f, "Observation", "value-quantity", "1e", CV_E_INVALID);
}

/* A number is a decimal ("0x10" is not 16, "0x1p3" not 8) */
static void numbers_are_decimal(void **state)
{
	fx_t *f = *state;
	refused(f, "Observation", "value-quantity", "0x10", CV_E_INVALID);
	refused(f, "Observation", "value-quantity", "gt0x1p3", CV_E_INVALID);
	refused(f, "Observation", "value-quantity:exact", "5", CV_E_UNSUPPORTED);
}

static void composites_parse(void **state)
{
	fx_t *f = *state;
	const cv_search_clause_t *c = clause(f, "Observation", "code-value-quantity", "http://loinc.org|8480-6$gt100");
	assert_non_null(c->mc);
	assert_true(c->check);
	assert_int_equal(c->nm, 1);
	assert_int_equal(c->mc[0].n, 2);
	/* the index narrows by the first component's own parameter */
	one_hash(c, "code", "sc:http://loinc.org|8480-6");
	assert_int_equal(c->mc[0].parts[1].kind, CV_MT_NUM);
	assert_int_equal(c->mc[0].parts[1].cmp, CV_CMP_GT);
	c = clause(f, "Observation", "code-value-quantity", "a$1,b$2");
	assert_int_equal(c->nm, 2);
	assert_int_equal(c->sql.n, 2);
	refused(f, "Observation", "code-value-quantity", "8480-6", CV_E_INVALID);
	refused(f, "Observation", "code-value-quantity", "a$1$2", CV_E_INVALID);
	refused(f, "Observation", "code-value-quantity", "a$x", CV_E_INVALID);
	refused(f, "Observation", "code-value-quantity:not", "a$1", CV_E_UNSUPPORTED);
}

static void result_parameters(void **state)
{
	fx_t *f = *state;
	const char *kv[] = { "_count", "50", "_summary", "count", "_total", "accurate", "_elements", "name,birthDate",
			     "_format", "json", "_pretty", "true" };
	assert_int_equal(parse_n(f, "Patient", kv, 6, false), CV_OK);
	assert_int_equal(f->plan->n, 0);
	assert_int_equal(f->plan->count, 50);
	assert_int_equal(f->plan->summary, CV_SUMMARY_COUNT);
	assert_int_equal(f->plan->total, CV_TOTAL_ACCURATE);
	assert_int_equal(f->plan->nelements, 2);
	assert_string_equal(f->plan->elements[1], "birthDate");
	/* the canonical query keeps what shapes results, not _format */
	assert_null(strstr(f->plan->canonical.data, "_format"));
	assert_non_null(strstr(f->plan->canonical.data, "_count=50"));
	assert_non_null(strstr(f->plan->canonical.data, "_elements=name%2CbirthDate"));

	assert_int_equal(clause(f, "Patient", "name", "x") && f->plan->count == 20, 1);
	assert_int_equal(parse1(f, "Patient", "_count", "100000000"), CV_OK);
	assert_int_equal(f->plan->count, 100);
	assert_int_equal(parse1(f, "Patient", "_count", "0"), CV_OK);
	assert_int_equal(f->plan->count, 0);
	static const char *const badcount[] = { "-1", "ten", "", "1.5", "+3", "99999999999999999999999" };
	for (size_t i = 0; i < sizeof badcount / sizeof badcount[0]; i++)
		refused(f, "Patient", "_count", badcount[i], CV_E_INVALID);

	refused(f, "Patient", "_summary", "yes", CV_E_INVALID);
	static const char *const sums[] = { "true", "text", "data", "false" };
	static const cv_summary sumv[] = { CV_SUMMARY_TRUE, CV_SUMMARY_TEXT, CV_SUMMARY_DATA, CV_SUMMARY_FALSE };
	for (size_t i = 0; i < 4; i++) {
		assert_int_equal(parse1(f, "Patient", "_summary", sums[i]), CV_OK);
		assert_int_equal(f->plan->summary, sumv[i]);
	}
	refused(f, "Patient", "_total", "all", CV_E_INVALID);
	assert_int_equal(parse1(f, "Patient", "_total", "none"), CV_OK);
	assert_int_equal(f->plan->total, CV_TOTAL_NONE);
	refused(f, "Patient", "_elements", "name.given", CV_E_INVALID);
	refused(f, "Patient", "_elements", "name,,gender", CV_E_INVALID);
	refused(f, "Patient", "_elements", "", CV_E_INVALID);

	/* _sort: dates, numbers, _lastUpdated */
	assert_int_equal(parse1(f, "Observation", "_sort", "-date,value-quantity,_lastUpdated"), CV_OK);
	assert_int_equal(f->plan->nsort, 3);
	assert_int_equal(f->plan->sort[0].kind, CV_SORT_DATE);
	assert_true(f->plan->sort[0].desc);
	assert_string_equal(f->plan->sort[0].param, "date");
	assert_int_equal(f->plan->sort[1].kind, CV_SORT_NUM);
	assert_false(f->plan->sort[1].desc);
	assert_int_equal(f->plan->sort[2].kind, CV_SORT_UPDATED);
	/* blinded values sort in memory */
	assert_int_equal(parse1(f, "Patient", "_sort", "-name,birthdate"), CV_OK);
	assert_int_equal(f->plan->nmsort, 2);
	assert_int_equal(f->plan->nsort, 0);
	assert_true(f->plan->msort[0].desc);
	refused(f, "Observation", "_sort", "code-value-quantity", CV_E_UNSUPPORTED);
	/* blinded birth dates sort in memory */
	assert_int_equal(parse1(f, "Patient", "_sort", "birthdate"), CV_OK);
	assert_int_equal(f->plan->nmsort, 1);
	assert_int_equal(parse1(f, "Observation", "_sort", "code"), CV_OK); /* tokens sort in memory */
	refused(f, "Patient", "_sort", "nonsense", CV_E_INVALID);
	refused(f, "Observation", "_sort", "date,date,date,date,date", CV_E_INVALID);

	/* _include and _revinclude */
	assert_int_equal(parse1(f, "Observation", "_include", "Observation:subject"), CV_OK);
	assert_int_equal(f->plan->ninc, 1);
	assert_false(f->plan->inc[0].rev);
	assert_string_equal(f->plan->inc[0].source, "Observation");
	assert_string_equal(f->plan->inc[0].sp->code, "subject");
	assert_null(f->plan->inc[0].target);
	assert_int_equal(parse1(f, "Observation", "_include", "Observation:subject:Patient"), CV_OK);
	assert_string_equal(f->plan->inc[0].target, "Patient");
	assert_int_equal(parse1(f, "Observation", "_include", "*"), CV_OK);
	assert_null(f->plan->inc[0].sp);
	assert_string_equal(f->plan->inc[0].source, "Observation");
	assert_int_equal(parse1(f, "Observation", "_include", "Observation:*"), CV_OK);
	assert_null(f->plan->inc[0].sp);
	assert_int_equal(parse1(f, "Observation", "_include:iterate", "Patient:organization"), CV_OK);
	assert_true(f->plan->inc[0].iterate);
	assert_int_equal(parse1(f, "Patient", "_revinclude", "Observation:subject"), CV_OK);
	assert_true(f->plan->inc[0].rev);
	assert_string_equal(f->plan->inc[0].source, "Observation");
	refused(f, "Observation", "_include", "Patient:organization", CV_E_INVALID); /* not the searched type */
	refused(f, "Observation", "_include", "Observation:code", CV_E_INVALID);   /* not a reference */
	refused(f, "Observation", "_include", "Observation", CV_E_INVALID);
	refused(f, "Observation", "_include", "Nope:subject", CV_E_INVALID);
	refused(f, "Observation", "_include", "Observation:subject:Nope", CV_E_INVALID);
	refused(f, "Observation", "_include:deep", "Observation:subject", CV_E_UNSUPPORTED);
	refused(f, "Patient", "_revinclude", "*", CV_E_UNSUPPORTED);
	refused(f, "Patient", "_revinclude", "Observation:*", CV_E_UNSUPPORTED);

	/* chains and _has */
	const cv_search_clause_t *c = clause(f, "Observation", "subject:Patient.name", "smith");
	assert_non_null(c->chain);
	assert_false(c->chain->reverse);
	assert_string_equal(c->chain->target, "Patient");
	assert_int_equal(c->chain->inner->n, 1);
	c = clause(f, "Patient", "_has:Observation:patient:code", "1234-5");
	assert_non_null(c->chain);
	assert_true(c->chain->reverse);
	assert_null(c->sp);
	/* no type: every target type with a name parameter (Patient, Group, Location, ...) */
	assert_int_equal(parse1(f, "Observation", "subject.name", "smith"), CV_OK);
	assert_non_null(f->plan->clauses[0].chain);
	assert_non_null(f->plan->clauses[0].chain->next);
	refused(f, "Observation", "subject.nonsense", "smith", CV_E_INVALID);
	refused(f, "Patient", "_has:Observation:code:code", "x", CV_E_INVALID);
	refused(f, "Patient", "_has:Nope:patient:code", "x", CV_E_INVALID);
}

static void form_decoding(void **state)
{
	fx_t *f = *state;
	cv_param_t ps[4];
	size_t n = 99;
	const char *body = "name=Zo%C3%AB+M%c3%bcller&&gender=female&flag&a%2Bb=%3D%26";
	assert_int_equal(cv_search_form_decode(body, strlen(body), &f->pool, ps, 4, &n), CV_OK);
	assert_int_equal(n, 4);
	assert_string_equal(ps[0].name, "name");
	assert_string_equal(ps[0].value, "Zoë Müller");
	assert_string_equal(ps[1].name, "gender");
	assert_string_equal(ps[1].value, "female");
	assert_string_equal(ps[2].name, "flag");
	assert_string_equal(ps[2].value, "");
	assert_string_equal(ps[3].name, "a+b");
	assert_string_equal(ps[3].value, "=&");
	assert_int_equal(cv_search_form_decode("", 0, &f->pool, ps, 4, &n), CV_OK);
	assert_int_equal(n, 0);

	static const char *const bad[] = { "a=%", "a=%4", "a=%GG", "a=%00", "%00=1", "a=%C3%28", "a=%ff",
					   "a=x%E2%82", "a=1&b=%zz" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (cv_search_form_decode(bad[i], strlen(bad[i]), &f->pool, ps, 4, &n) != CV_E_INVALID)
			fail_msg("'%s' should be refused", bad[i]);
	/* a raw NUL inside the body */
	assert_int_equal(cv_search_form_decode("a=b\0c", 5, &f->pool, ps, 4, &n), CV_E_INVALID);
	/* raw invalid UTF-8 */
	assert_int_equal(cv_search_form_decode("a=\xc3", 3, &f->pool, ps, 4, &n), CV_E_INVALID);
	/* the length bounds what is read */
	assert_int_equal(cv_search_form_decode("a=1&b=%zz", 3, &f->pool, ps, 4, &n), CV_OK);
	assert_int_equal(n, 1);
	assert_string_equal(ps[0].value, "1");
	/* more parameters than room */
	assert_int_equal(cv_search_form_decode("a=1&b=2&c=3", 11, &f->pool, ps, 2, &n), CV_E_LIMIT);
	assert_int_equal(cv_search_form_decode("a=1&b=2", 7, &f->pool, ps, 2, &n), CV_OK);
	assert_int_equal(n, 2);
}

/* ---- matching ----------------------------------------------------------- */

#define OBS_AT(dt)                                                                                           \
	"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"effectiveDateTime\":\"" dt \
	"\"}"
#define OBS_PERIOD(p)                                                                                          \
	"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"effectivePeriod\":" p "}"

static void date_prefixes_at_each_precision(void **state)
{
	fx_t *f = *state;
	const char *day = OBS_AT("2013-01-14");
	/* year */
	MATCH("Observation", "date", "2013", day);
	MATCH("Observation", "date", "eq2013", day);
	NO_MATCH("Observation", "date", "2012", day);
	NO_MATCH("Observation", "date", "ne2013", day);
	MATCH("Observation", "date", "ne2012", day);
	MATCH("Observation", "date", "gt2012", day);
	NO_MATCH("Observation", "date", "gt2013", day);
	MATCH("Observation", "date", "ge2013", day);
	MATCH("Observation", "date", "lt2014", day);
	NO_MATCH("Observation", "date", "lt2013", day);
	MATCH("Observation", "date", "le2013", day);
	MATCH("Observation", "date", "sa2012", day);
	NO_MATCH("Observation", "date", "sa2013", day);
	MATCH("Observation", "date", "eb2014", day);
	NO_MATCH("Observation", "date", "eb2013", day);
	MATCH("Observation", "date", "ap2013", day);
	/* month */
	MATCH("Observation", "date", "2013-01", day);
	NO_MATCH("Observation", "date", "2013-02", day);
	MATCH("Observation", "date", "lt2013-02", day);
	MATCH("Observation", "date", "gt2012-12", day);
	NO_MATCH("Observation", "date", "gt2013-01", day);
	/* day */
	MATCH("Observation", "date", "2013-01-14", day);
	NO_MATCH("Observation", "date", "2013-01-15", day);
	MATCH("Observation", "date", "ge2013-01-14", day);
	MATCH("Observation", "date", "le2013-01-14", day);
	NO_MATCH("Observation", "date", "gt2013-01-14", day);
	NO_MATCH("Observation", "date", "lt2013-01-14", day);
	MATCH("Observation", "date", "eb2013-01-15", day);
	NO_MATCH("Observation", "date", "sa2013-01-14", day);
	/* a day is not within a minute: eq fails, ap and the overlapping comparisons hold */
	NO_MATCH("Observation", "date", "2013-01-14T10:00Z", day);
	MATCH("Observation", "date", "ne2013-01-14T10:00Z", day);
	MATCH("Observation", "date", "gt2013-01-14T10:00Z", day);
	MATCH("Observation", "date", "lt2013-01-14T10:00Z", day);
	MATCH("Observation", "date", "ap2013-01-14T10:00Z", day);
	NO_MATCH("Observation", "date", "sa2013-01-14T10:00Z", day);
	NO_MATCH("Observation", "date", "eb2013-01-14T10:00Z", day);

	/* minute, second and fraction precision, with zones */
	const char *sec = OBS_AT("2013-01-14T10:00:00+02:00");
	MATCH("Observation", "date", "2013-01-14T08:00Z", sec);
	MATCH("Observation", "date", "2013-01-14T08:00:00Z", sec);
	MATCH("Observation", "date", "2013-01-14T10:00:00+02:00", sec);
	MATCH("Observation", "date", "2013-01-14T03:00:00-05:00", sec);
	NO_MATCH("Observation", "date", "2013-01-14T10:00:00Z", sec);
	NO_MATCH("Observation", "date", "2013-01-14T08:00:00.000Z", sec); /* a millisecond holds no second */
	MATCH("Observation", "date", "ap2013-01-14T08:00:00.000Z", sec);
	MATCH("Observation", "date", "2013-01-14", sec);
	MATCH("Observation", "date", "2013-01-14T08:00:00+00:00", sec);
	NO_MATCH("Observation", "date", "2013-01-14T08:01Z", sec);
	NO_MATCH("Observation", "date", "2013-01-14T07:59Z", sec);
	MATCH("Observation", "date", "gt2013-01-14T07:59:59Z", sec);
	NO_MATCH("Observation", "date", "gt2013-01-14T08:00:00Z", sec);
	MATCH("Observation", "date", "ge2013-01-14T08:00:00Z", sec);
	MATCH("Observation", "date", "sa2013-01-14T07:59:59Z", sec);
	MATCH("Observation", "date", "eb2013-01-14T08:00:01Z", sec);
	NO_MATCH("Observation", "date", "eb2013-01-14T08:00:00Z", sec);

	const char *ms = OBS_AT("2013-01-14T08:00:00.123Z");
	MATCH("Observation", "date", "2013-01-14T08:00:00Z", ms);
	MATCH("Observation", "date", "2013-01-14T08:00:00.123Z", ms);
	MATCH("Observation", "date", "2013-01-14T08:00:00.1Z", ms);
	MATCH("Observation", "date", "2013-01-14T08:00:00.12Z", ms); /* [.120, .130) holds .123's ms */
	NO_MATCH("Observation", "date", "2013-01-14T08:00:00.12Z", OBS_AT("2013-01-14T08:00:00.13Z"));
	NO_MATCH("Observation", "date", "2013-01-14T08:00:00.123Z", OBS_AT("2013-01-14T08:00:00.12Z"));
	NO_MATCH("Observation", "date", "2013-01-14T08:00:00.124Z", ms);
	MATCH("Observation", "date", "gt2013-01-14T08:00:00.122999Z", ms);
	NO_MATCH("Observation", "date", "gt2013-01-14T08:00:00.123999Z", ms);
	MATCH("Observation", "date", "lt2013-01-14T08:00:00.123001Z", ms);
	NO_MATCH("Observation", "date", "lt2013-01-14T08:00:00.123Z", ms);
}

static void date_boundaries(void **state)
{
	fx_t *f = *state;
	/* the first and last microseconds of the search range, and one outside */
	MATCH("Observation", "date", "2013-01-14", OBS_AT("2013-01-14T00:00:00.000000Z"));
	MATCH("Observation", "date", "2013-01-14", OBS_AT("2013-01-14T23:59:59.999999Z"));
	NO_MATCH("Observation", "date", "2013-01-14", OBS_AT("2013-01-13T23:59:59.999999Z"));
	NO_MATCH("Observation", "date", "2013-01-14", OBS_AT("2013-01-15T00:00:00.000000Z"));
	MATCH("Observation", "date", "2013", OBS_AT("2013-12-31T23:59:59.999999Z"));
	NO_MATCH("Observation", "date", "2013", OBS_AT("2014-01-01T00:00:00Z"));
	MATCH("Observation", "date", "2013", OBS_AT("2013-12-31T23:59:59.999999+00:00"));
	NO_MATCH("Observation", "date", "2013", OBS_AT("2013-12-31T23:00:00-01:00")); /* 2014 in UTC */
	MATCH("Observation", "date", "2013-02", OBS_AT("2013-02-28T23:59:59.999999Z"));
	NO_MATCH("Observation", "date", "2013-02", OBS_AT("2013-03-01T00:00:00Z"));
	MATCH("Observation", "date", "2012-02-29", OBS_AT("2012-02-29T12:00:00Z"));
	/* gt/lt just at the edges */
	MATCH("Observation", "date", "gt2013-01-14", OBS_AT("2013-01-15T00:00:00.000000Z"));
	NO_MATCH("Observation", "date", "gt2013-01-14", OBS_AT("2013-01-14T23:59:59.999999Z"));
	MATCH("Observation", "date", "lt2013-01-14", OBS_AT("2013-01-13T23:59:59.999999Z"));
	NO_MATCH("Observation", "date", "lt2013-01-14", OBS_AT("2013-01-14T00:00:00.000000Z"));
	MATCH("Observation", "date", "ge2013-01-14", OBS_AT("2013-01-14T00:00:00.000000Z"));
	NO_MATCH("Observation", "date", "ge2013-01-14", OBS_AT("2013-01-13T23:59:59.999999Z"));
	MATCH("Observation", "date", "le2013-01-14", OBS_AT("2013-01-14T23:59:59.999999Z"));
	NO_MATCH("Observation", "date", "le2013-01-14", OBS_AT("2013-01-15T00:00:00.000000Z"));
	MATCH("Observation", "date", "sa2013-01-14", OBS_AT("2013-01-15T00:00:00.000000Z"));
	MATCH("Observation", "date", "eb2013-01-14", OBS_AT("2013-01-13T23:59:59.999999Z"));
	NO_MATCH("Observation", "date", "eb2013-01-14", OBS_AT("2013-01-14T00:00:00.000000Z"));
	/* a zone moves the search range: 2013-01-14T10:00+02:00 is 08:00Z */
	MATCH("Observation", "date", "2013-01-14T10:00+02:00", OBS_AT("2013-01-14T08:00:59.999999Z"));
	NO_MATCH("Observation", "date", "2013-01-14T10:00+02:00", OBS_AT("2013-01-14T08:01:00Z"));
	NO_MATCH("Observation", "date", "2013-01-14T10:00+02:00", OBS_AT("2013-01-14T07:59:59.999999Z"));
	/* ORed values */
	MATCH("Observation", "date", "2012,2013-01-14", OBS_AT("2013-01-14T12:00:00Z"));
	NO_MATCH("Observation", "date", "2012,2013-01-15", OBS_AT("2013-01-14T12:00:00Z"));
	/* no date at all: nothing matches, not even ne */
	NO_MATCH("Observation", "date", "ne2013", "{\"resourceType\":\"Observation\",\"status\":\"final\","
						  "\"code\":{\"text\":\"x\"}}");
}

static void periods(void **state)
{
	fx_t *f = *state;
	const char *jan = OBS_PERIOD("{\"start\":\"2013-01-10\",\"end\":\"2013-01-20\"}");
	MATCH("Observation", "date", "2013-01", jan);
	NO_MATCH("Observation", "date", "2013-01-14", jan); /* the period is not within the day */
	MATCH("Observation", "date", "ap2013-01-14", jan);
	MATCH("Observation", "date", "gt2013-01-14", jan);
	MATCH("Observation", "date", "lt2013-01-14", jan);
	MATCH("Observation", "date", "ne2013-01-14", jan);
	NO_MATCH("Observation", "date", "sa2013-01-14", jan);
	MATCH("Observation", "date", "sa2013-01-09", jan);
	NO_MATCH("Observation", "date", "sa2013-01-10", jan);
	MATCH("Observation", "date", "eb2013-01-21", jan);
	NO_MATCH("Observation", "date", "eb2013-01-20", jan);
	NO_MATCH("Observation", "date", "gt2013-01-20", jan);
	/* open ends reach forever */
	const char *open_end = OBS_PERIOD("{\"start\":\"2013-01-10T00:00:00Z\"}");
	MATCH("Observation", "date", "gt2100-01-01", open_end);
	MATCH("Observation", "date", "ge2013-01-10", open_end);
	NO_MATCH("Observation", "date", "lt2013-01-10", open_end);
	NO_MATCH("Observation", "date", "2013", open_end);
	NO_MATCH("Observation", "date", "eb2100-01-01", open_end);
	MATCH("Observation", "date", "sa2013-01-09", open_end);
	const char *open_start = OBS_PERIOD("{\"end\":\"2013-01-10T00:00:00+01:00\"}");
	MATCH("Observation", "date", "lt1900", open_start);
	NO_MATCH("Observation", "date", "gt2013-01-09T23:00:00Z", open_start);
	MATCH("Observation", "date", "gt2013-01-09T22:59:59Z", open_start);
	MATCH("Observation", "date", "eb2013-01-09T23:00:01Z", open_start);
	NO_MATCH("Observation", "date", "eb2013-01-09T23:00:00Z", open_start);
	NO_MATCH("Observation", "date", "sa1900", open_start);
	/* Encounter.period */
	const char *enc = "{\"resourceType\":\"Encounter\",\"status\":\"finished\",\"class\":{\"code\":\"AMB\"},"
			  "\"period\":{\"start\":\"2020-06-01T09:00:00Z\",\"end\":\"2020-06-01T10:00:00Z\"}}";
	MATCH("Encounter", "date", "2020-06-01", enc);
	MATCH("Encounter", "date", "ge2020-06-01T09:30:00Z", enc);
	NO_MATCH("Encounter", "date", "ge2020-06-01T10:00:01Z", enc);
	NO_MATCH("Encounter", "date", "le2020-06-01T08:59:59Z", enc);
	NO_MATCH("Encounter", "date", "le2020-06-01T09:00:00Z", enc); /* nothing below 09:00:00 */
	MATCH("Encounter", "date", "le2020-06-01T09:00:01Z", enc);
	MATCH("Encounter", "date", "le2020-06-01T10:00:00Z", enc);
}

#define OBS_Q(v)                                                                                               \
	"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"                 \
	"\"http://loinc.org\",\"code\":\"8480-6\"}]},\"valueQuantity\":{\"value\":" v ",\"unit\":\"mmHg\","       \
	"\"system\":\"http://unitsofmeasure.org\",\"code\":\"mm[Hg]\"}}"

static void number_and_quantity_prefixes(void **state)
{
	fx_t *f = *state;
	/* eq and ne use the precision the value was written with */
	MATCH("Observation", "value-quantity", "100", OBS_Q("100"));
	MATCH("Observation", "value-quantity", "100", OBS_Q("99.5"));
	MATCH("Observation", "value-quantity", "100", OBS_Q("100.4999"));
	NO_MATCH("Observation", "value-quantity", "100", OBS_Q("100.51"));
	NO_MATCH("Observation", "value-quantity", "100", OBS_Q("99.49"));
	NO_MATCH("Observation", "value-quantity", "100.0", OBS_Q("100.06"));
	MATCH("Observation", "value-quantity", "100.0", OBS_Q("100.04"));
	MATCH("Observation", "value-quantity", "eq100", OBS_Q("100.2"));
	NO_MATCH("Observation", "value-quantity", "ne100", OBS_Q("100.2"));
	MATCH("Observation", "value-quantity", "ne100", OBS_Q("100.6"));
	MATCH("Observation", "value-quantity", "1e2", OBS_Q("140"));
	NO_MATCH("Observation", "value-quantity", "1e2", OBS_Q("151"));
	/* gt, ge, lt, le, sa, eb compare with the exact value */
	MATCH("Observation", "value-quantity", "gt100", OBS_Q("100.2"));
	NO_MATCH("Observation", "value-quantity", "gt100", OBS_Q("100"));
	MATCH("Observation", "value-quantity", "ge100", OBS_Q("100"));
	NO_MATCH("Observation", "value-quantity", "ge100", OBS_Q("99.9"));
	MATCH("Observation", "value-quantity", "lt100", OBS_Q("99.9"));
	NO_MATCH("Observation", "value-quantity", "lt100", OBS_Q("100"));
	MATCH("Observation", "value-quantity", "le100", OBS_Q("100"));
	NO_MATCH("Observation", "value-quantity", "le100", OBS_Q("100.01"));
	MATCH("Observation", "value-quantity", "sa100", OBS_Q("100.01"));
	NO_MATCH("Observation", "value-quantity", "sa100", OBS_Q("100"));
	MATCH("Observation", "value-quantity", "eb100", OBS_Q("99.99"));
	NO_MATCH("Observation", "value-quantity", "eb100", OBS_Q("100"));
	/* ap: within 10% */
	MATCH("Observation", "value-quantity", "ap100", OBS_Q("109"));
	MATCH("Observation", "value-quantity", "ap100", OBS_Q("91"));
	NO_MATCH("Observation", "value-quantity", "ap100", OBS_Q("111"));
	/* negative values */
	MATCH("Observation", "value-quantity", "-5", OBS_Q("-5.2"));
	MATCH("Observation", "value-quantity", "lt-5", OBS_Q("-5.2"));
	/* units: any, code, system|code */
	MATCH("Observation", "value-quantity", "120||mm[Hg]", OBS_Q("120"));
	MATCH("Observation", "value-quantity", "120||mmHg", OBS_Q("120"));
	MATCH("Observation", "value-quantity", "120|http://unitsofmeasure.org|mm[Hg]", OBS_Q("120"));
	NO_MATCH("Observation", "value-quantity", "120|http://unitsofmeasure.org|mmHg", OBS_Q("120"));
	NO_MATCH("Observation", "value-quantity", "120||kPa", OBS_Q("120"));
	NO_MATCH("Observation", "value-quantity", "120|http://other|mm[Hg]", OBS_Q("120"));
	MATCH("Observation", "value-quantity", "gt119|http://unitsofmeasure.org|mm[Hg]", OBS_Q("120"));
	NO_MATCH("Observation", "value-quantity", "gt120||mm[Hg]", OBS_Q("120"));
	/* a plain number parameter: RiskAssessment.prediction.probability */
	const char *ra = "{\"resourceType\":\"RiskAssessment\",\"status\":\"final\",\"subject\":{\"reference\":"
			 "\"Patient/p1\"},\"prediction\":[{\"probabilityDecimal\":0.25}]}";
	MATCH("RiskAssessment", "probability", "0.25", ra);
	MATCH("RiskAssessment", "probability", "0.3", ra);  /* [0.25, 0.35] */
	MATCH("RiskAssessment", "probability", "gt0.2", ra);
	NO_MATCH("RiskAssessment", "probability", "gt0.25", ra);
	MATCH("RiskAssessment", "probability", "le0.25", ra);
}

/* R4: "100" searches [99.5, 100.5), the upper bound excluded */
static void number_precision_upper_bound_is_exclusive(void **state)
{
	fx_t *f = *state;
	MATCH("Observation", "value-quantity", "100", OBS_Q("100.4999999"));
	NO_MATCH("Observation", "value-quantity", "100", OBS_Q("100.5"));
	MATCH("Observation", "value-quantity", "ne100", OBS_Q("100.5"));
	const char *ra = "{\"resourceType\":\"RiskAssessment\",\"status\":\"final\",\"subject\":{\"reference\":"
			 "\"Patient/p1\"},\"prediction\":[{\"probabilityDecimal\":0.25}]}";
	NO_MATCH("RiskAssessment", "probability", "0.2", ra); /* [0.15, 0.25) */
}

static const char patient_json[] =
	"{\"resourceType\":\"Patient\",\"id\":\"p1\","
	"\"name\":[{\"family\":\"Müller-Lüdenscheidt\",\"given\":[\"Zoë\",\"Anne Marie\"]}],"
	"\"address\":[{\"city\":\"São Paulo\",\"line\":[\"Rua Augusta 1500\"]}],"
	"\"identifier\":[{\"system\":\"http://hosp/mrn\",\"value\":\"MRN-1\",\"type\":{\"coding\":"
	"[{\"system\":\"http://terminology.hl7.org/CodeSystem/v2-0203\",\"code\":\"MR\"}],"
	"\"text\":\"Medical record number\"}}],"
	"\"telecom\":[{\"system\":\"email\",\"value\":\"zoe@example.org\"}],"
	"\"gender\":\"female\",\"birthDate\":\"1980-05-17\","
	"\"generalPractitioner\":[{\"reference\":\"Practitioner/dr1\"}],"
	"\"managingOrganization\":{\"reference\":\"" BASE "/Organization/org1\"}}";

static void strings_match(void **state)
{
	fx_t *f = *state;
	const char *p = patient_json;
	MATCH("Patient", "name", "zoe", p);
	MATCH("Patient", "name", "ZOË", p);
	MATCH("Patient", "name", "Z", p);
	MATCH("Patient", "name", "muller", p);
	MATCH("Patient", "name", "MÜLLER-LÜDENSCHEIDT", p); /* 19: narrowed at 16, checked */
	MATCH("Patient", "name", "muller-ludensch", p);      /* 15 characters */
	NO_MATCH("Patient", "name", "muller-ludenschx", p);  /* 16: an indexed length */
	NO_MATCH("Patient", "name", "muller-ludenscheidtt", p);
	NO_MATCH("Patient", "name", "muller-ludenscheidx", p); /* same 16-character prefix */
	MATCH("Patient", "name", "anne marie", p);
	MATCH("Patient", "name", "anne   MARIE", p);
	NO_MATCH("Patient", "name", "marie", p); /* prefix of the given, not a word */
	NO_MATCH("Patient", "name", "ludenscheidt", p);
	MATCH("Patient", "name", "zoe,nobody", p);
	NO_MATCH("Patient", "name", "nobody,other", p);
	MATCH("Patient", "family", "Müller", p);
	NO_MATCH("Patient", "family", "zoe", p);
	MATCH("Patient", "given", "zo", p);
	MATCH("Patient", "address", "sao", p);
	MATCH("Patient", "address-city", "SÃO PAULO", p);
	MATCH("Patient", "address", "rua augusta 15", p);
	/* :contains */
	MATCH("Patient", "name:contains", "lüdenS", p);
	MATCH("Patient", "name:contains", "denscheid", p);
	MATCH("Patient", "name:contains", "nne mar", p);
	NO_MATCH("Patient", "name:contains", "denschex", p);
	NO_MATCH("Patient", "name:contains", "zoe anne", p); /* across two strings */
	MATCH("Patient", "address:contains", "paulo", p);
	MATCH("Patient", "address:contains", "ugusta 1", p);
	/* :exact: as written, case and accents included */
	MATCH("Patient", "name:exact", "Zoë", p);
	NO_MATCH("Patient", "name:exact", "Zoe", p);
	NO_MATCH("Patient", "name:exact", "zoë", p);
	NO_MATCH("Patient", "name:exact", "Zo", p);
	MATCH("Patient", "name:exact", "Anne Marie", p);
	/* :missing */
	MATCH("Patient", "name:missing", "false", p);
	NO_MATCH("Patient", "name:missing", "true", p);
	MATCH("Patient", "address-state:missing", "true", p);
	NO_MATCH("Patient", "address-state:missing", "false", p);
}

static void tokens_match(void **state)
{
	fx_t *f = *state;
	const char *p = patient_json;
	MATCH("Patient", "gender", "female", p);
	NO_MATCH("Patient", "gender", "male", p);
	MATCH("Patient", "gender", "male,female", p);
	MATCH("Patient", "gender:not", "male", p);
	NO_MATCH("Patient", "gender:not", "female", p);
	NO_MATCH("Patient", "gender:not", "male,female", p);
	MATCH("Patient", "identifier", "MRN-1", p);
	NO_MATCH("Patient", "identifier", "mrn-1", p); /* codes are case-sensitive */
	MATCH("Patient", "identifier", "http://hosp/mrn|MRN-1", p);
	MATCH("Patient", "identifier", "http://hosp/mrn|", p);
	NO_MATCH("Patient", "identifier", "|MRN-1", p); /* it has a system */
	NO_MATCH("Patient", "identifier", "http://other|MRN-1", p);
	MATCH("Patient", "identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-1", p);
	NO_MATCH("Patient", "identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|DL|MRN-1", p);
	MATCH("Patient", "identifier:text", "medical", p);
	MATCH("Patient", "identifier:text", "MEDICAL RECORD NUMBER", p); /* 21: checked */
	NO_MATCH("Patient", "identifier:text", "medical record numbers", p);
	NO_MATCH("Patient", "identifier:text", "record", p);
	MATCH("Patient", "telecom", "zoe@example.org", p);
	MATCH("Patient", "email", "zoe@example.org", p);
	NO_MATCH("Patient", "phone", "zoe@example.org", p);
	MATCH("Patient", "identifier:missing", "false", p);
	MATCH("Patient", "phone:missing", "true", p);

	const char *o = OBS_Q("120");
	MATCH("Observation", "code", "8480-6", o);
	MATCH("Observation", "code", "http://loinc.org|8480-6", o);
	NO_MATCH("Observation", "code", "|8480-6", o);
	NO_MATCH("Observation", "code", "http://snomed.info/sct|8480-6", o);
	MATCH("Observation", "code:not", "http://snomed.info/sct|8480-6", o);
	NO_MATCH("Observation", "code:not", "8480-6", o);
	MATCH("Observation", "status", "final", o);
	/* a code without a system */
	const char *nosys = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"code\":"
			    "\"abc\",\"display\":\"Blood Glücose\"}],\"text\":\"Sugar\"}}";
	MATCH("Observation", "code", "|abc", nosys);
	MATCH("Observation", "code", "abc", nosys);
	NO_MATCH("Observation", "code", "x|abc", nosys);
	MATCH("Observation", "code:text", "blood gluc", nosys);
	MATCH("Observation", "code:text", "SUGAR", nosys);
	MATCH("Observation", "code:text", "blood glucose", nosys);
	NO_MATCH("Observation", "code:text", "glucose", nosys);
}

static void references_match(void **state)
{
	fx_t *f = *state;
	const char *p = patient_json;
	MATCH("Patient", "general-practitioner", "Practitioner/dr1", p);
	MATCH("Patient", "general-practitioner", "dr1", p);
	MATCH("Patient", "general-practitioner:Practitioner", "dr1", p);
	NO_MATCH("Patient", "general-practitioner:Organization", "dr1", p);
	NO_MATCH("Patient", "general-practitioner", "Practitioner/dr2", p);
	/* an absolute reference held in a resource is found by its URL (the index
	 * cannot know which base is ours: a search with our base looks up both forms) */
	NO_MATCH("Patient", "organization", "org1", p);
	MATCH("Patient", "organization", BASE "/Organization/org1", p);

	const char *o = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
			"\"subject\":{\"reference\":\"Patient/p1\"},\"performer\":[{\"identifier\":{\"system\":"
			"\"http://npi\",\"value\":\"N-7\"}}]}";
	MATCH("Observation", "subject", "Patient/p1", o);
	MATCH("Observation", "subject", "p1", o);
	NO_MATCH("Observation", "subject", "Group/p1", o);
	MATCH("Observation", "patient", "Patient/p1", o);
	MATCH("Observation", "patient", "p1", o);
	MATCH("Observation", "subject:Patient", "p1", o);
	MATCH("Observation", "performer:identifier", "http://npi|N-7", o);
	MATCH("Observation", "performer:identifier", "N-7", o);
	NO_MATCH("Observation", "performer:identifier", "http://other|N-7", o);
	MATCH("Observation", "subject:missing", "false", o);
	MATCH("Observation", "encounter:missing", "true", o);
	/* a group subject is not a patient */
	const char *g = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
			"\"subject\":{\"reference\":\"Group/p1\"}}";
	MATCH("Observation", "subject", "p1", g);
	NO_MATCH("Observation", "patient", "p1", g);
	NO_MATCH("Observation", "patient", "Patient/p1", g);
}

static void birth_dates_match(void **state)
{
	fx_t *f = *state;
	const char *p = patient_json; /* 1980-05-17 */
	/* eq on a year, month or day: one blinded key, exact in the index */
	const cv_search_clause_t *c = clause(f, "Patient", "birthdate", "1980-05");
	one_hash(c, "birthdate", "ym:1980-05");
	assert_false(c->check);
	c = clause(f, "Patient", "birthdate", "eq1980");
	one_hash(c, "birthdate", "y:1980");
	MATCH("Patient", "birthdate", "1980", p);
	MATCH("Patient", "birthdate", "1980-05", p);
	MATCH("Patient", "birthdate", "1980-05-17", p);
	MATCH("Patient", "birthdate", "eq1980-05-17", p);
	NO_MATCH("Patient", "birthdate", "1981", p);
	NO_MATCH("Patient", "birthdate", "1980-06", p);
	NO_MATCH("Patient", "birthdate", "1980-05-18", p);
	/* a partial birth date is not within a day */
	NO_MATCH("Patient", "birthdate", "1980-05-17", "{\"resourceType\":\"Patient\",\"birthDate\":\"1980-05\"}");
	MATCH("Patient", "birthdate", "1980", "{\"resourceType\":\"Patient\",\"birthDate\":\"1980-05\"}");

	/* ranges: the index narrows by blinded years, the check compares */
	c = clause(f, "Patient", "birthdate", "ge1980-05-17");
	assert_true(c->check);
	assert_true(c->use_sql);
	assert_true(sql_has(c, "birthdate", "y:1980") || sql_has(c, "birthdate", "yd:198"));
	assert_true(sql_has(c, "birthdate", "yd:199") || sql_has(c, "birthdate", "y:1990"));
	assert_true(sql_has(c, "birthdate", "yc:20") || sql_has(c, "birthdate", "yc:21"));
	assert_false(sql_has(c, "birthdate", "y:1979"));
	assert_false(sql_has(c, "birthdate", "yd:197"));
	assert_true(c->sql.n < 120); /* centuries and decades keep the list short */
	assert_int_equal(c->nm, 1);
	assert_int_equal(c->m[0].kind, CV_MT_DATE);
	for (size_t i = 0; i < c->sql.n; i++)
		assert_int_equal(c->sql.terms[i].kind, CV_TERM_HASH); /* no date in the clear */
	MATCH("Patient", "birthdate", "ge1980-05-17", p);
	NO_MATCH("Patient", "birthdate", "ge1980-05-18", p);
	MATCH("Patient", "birthdate", "lt1980-05-18", p);
	NO_MATCH("Patient", "birthdate", "lt1980-05-17", p);
	MATCH("Patient", "birthdate", "le1980-05-17", p);
	MATCH("Patient", "birthdate", "gt1980-05-16", p);
	NO_MATCH("Patient", "birthdate", "gt1980-05-17", p);
	MATCH("Patient", "birthdate", "gt1979", p);
	MATCH("Patient", "birthdate", "lt1981", p);
	NO_MATCH("Patient", "birthdate", "lt1980", p);
	MATCH("Patient", "birthdate", "ne1980-05-18", p);
	NO_MATCH("Patient", "birthdate", "ne1980-05-17", p);
	MATCH("Patient", "birthdate", "sa1980-05-16", p);
	MATCH("Patient", "birthdate", "eb1980-06", p);
	MATCH("Patient", "birthdate", "ap1980-05-20", p);
	NO_MATCH("Patient", "birthdate", "ap2020", p);
	c = clause(f, "Patient", "birthdate", "lt1900");
	assert_true(sql_has(c, "birthdate", "yc:18")); /* 1800-1899 in one key */
	assert_true(sql_has(c, "birthdate", "y:1900")); /* the value's own year, checked */
	assert_false(sql_has(c, "birthdate", "y:1901"));
	assert_false(sql_has(c, "birthdate", "yd:190"));
	/* no birth date: nothing matches */
	NO_MATCH("Patient", "birthdate", "ge1900", "{\"resourceType\":\"Patient\"}");
	MATCH("Patient", "birthdate:missing", "true", "{\"resourceType\":\"Patient\"}");
}

static void composites_match(void **state)
{
	fx_t *f = *state;
	const char *o = OBS_Q("120");
	MATCH("Observation", "code-value-quantity", "http://loinc.org|8480-6$gt100", o);
	MATCH("Observation", "code-value-quantity", "8480-6$120", o);
	MATCH("Observation", "code-value-quantity", "8480-6$120||mm[Hg]", o);
	NO_MATCH("Observation", "code-value-quantity", "8480-6$120||kg", o);
	NO_MATCH("Observation", "code-value-quantity", "8480-6$gt120", o);
	NO_MATCH("Observation", "code-value-quantity", "8462-4$gt100", o);
	MATCH("Observation", "code-value-quantity", "8462-4$gt100,8480-6$lt200", o);
}

#define OBS_BP                                                                                                 \
	"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":"                 \
	"\"http://loinc.org\",\"code\":\"85354-9\"}]},\"component\":["                                              \
	"{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8480-6\"}]},"                           \
	"\"valueQuantity\":{\"value\":150,\"code\":\"mm[Hg]\"}},"                                                    \
	"{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8462-4\"}]},"                           \
	"\"valueQuantity\":{\"value\":90,\"code\":\"mm[Hg]\"}}]}"

/* composites over backbone elements (Observation.component): both parts on the same component */
static void component_composites_match(void **state)
{
	fx_t *f = *state;
	const char *bp = OBS_BP;
	NO_MATCH("Observation", "code-value-quantity", "8480-6$150", bp);
	NO_MATCH("Observation", "component-code-value-quantity", "8462-4$gt140", bp);
	NO_MATCH("Observation", "component-code-value-quantity", "8480-6$lt100", bp);
	MATCH("Observation", "component-code-value-quantity", "8480-6$gt140", bp);
	MATCH("Observation", "component-code-value-quantity", "8462-4$lt100", bp);
	NO_MATCH("Observation", "component-code-value-quantity", "8480-6$90", bp); /* parts of two components */
	MATCH("Observation", "combo-code-value-quantity", "8480-6$150", bp);
	NO_MATCH("Observation", "combo-code-value-quantity", "8462-4$150", bp);
}

/* An absolute reference to another server is not the local resource of the
 * same type and id: Patient/p1 here is not https://other.example/fhir/Patient/p1. */
static void remote_references_are_not_local(void **state)
{
	fx_t *f = *state;
	const char *o = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
			"\"subject\":{\"reference\":\"https://other.example/fhir/Patient/p1\"}}";
	MATCH("Observation", "subject", "https://other.example/fhir/Patient/p1", o);
	NO_MATCH("Observation", "subject", "Patient/p1", o);
	NO_MATCH("Observation", "subject", "p1", o);
	NO_MATCH("Observation", "patient", "p1", o);
}

/* Identifying dates before the first blinded year searched by range */
static void old_birth_dates_are_found_by_range(void **state)
{
	fx_t *f = *state;
	const char *p = "{\"resourceType\":\"Patient\",\"birthDate\":\"1849-03-01\"}";
	MATCH("Patient", "birthdate", "1849", p);
	MATCH("Patient", "birthdate", "lt1900", p);
	MATCH("Patient", "birthdate", "ne1900", p);
}

/* A deceased dateTime with a zone: eq on its day and gt that day cannot both
 * hold for a one-second value */
static void death_dates_with_zones_are_consistent(void **state)
{
	fx_t *f = *state;
	const char *p = "{\"resourceType\":\"Patient\",\"deceasedDateTime\":\"2020-03-04T23:30:00-05:00\"}";
	bool eq = matches(f, "Patient", "death-date", "2020-03-04", p);
	bool gt = matches(f, "Patient", "death-date", "gt2020-03-04", p);
	bool eq5 = matches(f, "Patient", "death-date", "2020-03-05", p);
	bool lt5 = matches(f, "Patient", "death-date", "lt2020-03-05", p);
	if ((eq && gt) || (eq5 && lt5) || (!eq && !eq5))
		fail_msg("death-date: eq 03-04 %d, gt 03-04 %d, eq 03-05 %d, lt 03-05 %d", eq, gt, eq5, lt5);
	/* and the same value on a date parameter that is not blinded */
	const char *o = OBS_AT("2020-03-04T23:30:00-05:00");
	assert_false(matches(f, "Observation", "date", "2020-03-04", o));
	assert_true(matches(f, "Observation", "date", "2020-03-05", o));
}

static void composites_missing(void **state)
{
	fx_t *f = *state;
	/* the check says the composite is present; the index must agree (or the
	 * clause must be checked) */
	MATCH("Observation", "code-value-quantity:missing", "false", OBS_Q("120"));
	NO_MATCH("Observation", "code-value-quantity:missing", "true", OBS_Q("120"));
}

static void unchecked_clauses_keep_exact_twins(void **state)
{
	fx_t *f = *state;
	/* a clause answered by the index alone has one in-memory term per index
	 * term, testing the same key or range */
	static const struct {
		const char *type, *name, *value;
	} cases[] = {
		{ "Patient", "name", "smith,jo" },        { "Patient", "name:exact", "Smith" },
		{ "Patient", "gender", "male,female" },   { "Patient", "gender:not", "male" },
		{ "Patient", "identifier", "a|b" },       { "Observation", "code:text", "blood" },
		{ "Observation", "subject", "Patient/1" }, { "Observation", "date", "ge2013,lt2010" },
		{ "Observation", "value-quantity", "5||mg,gt7" }, { "Patient", "birthdate", "1980-05" },
		{ "Patient", "name:missing", "true" },    { "ValueSet", "url:above", "http://a/b/c" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const cv_search_clause_t *c = clause(f, cases[i].type, cases[i].name, cases[i].value);
		assert_false(c->check);
		assert_true(c->use_sql);
		assert_int_equal(c->nm, c->sql.n);
		for (size_t k = 0; k < c->nm; k++) {
			const cv_store_term_t *t = &c->sql.terms[k];
			const cv_mterm_t *m = &c->m[k];
			if (t->kind == CV_TERM_HASH) {
				assert_int_equal(m->kind, CV_MT_HASH);
				assert_int_equal(m->key_len, t->key_len);
				assert_memory_equal(m->key, t->key, t->key_len);
			} else if (t->kind == CV_TERM_DATE) {
				assert_int_equal(m->kind, CV_MT_DATE);
				assert_int_equal(m->cmp, t->cmp);
				assert_true(m->lo == t->lo && m->hi == t->hi);
			} else {
				assert_int_equal(t->kind, CV_TERM_NUM);
				assert_int_equal(m->kind, CV_MT_NUM);
				assert_int_equal(m->cmp, t->cmp);
				assert_true(m->nlo == t->nlo && m->nhi == t->nhi);
				assert_true((m->unit == NULL) == (t->key == NULL));
			}
		}
		assert_int_equal(c->negate, c->sql.negate);
	}
	/* _id and _lastUpdated: the check passes everything (the row answers) */
	json_object *res = json_tokener_parse("{\"resourceType\":\"Patient\",\"id\":\"zz\"}");
	const cv_search_clause_t *c = clause(f, "Patient", "_id", "p1,p2");
	assert_null(c->sp);
	assert_int_equal(c->sql.n, 2);
	assert_int_equal(c->sql.terms[0].kind, CV_TERM_ID);
	assert_string_equal(c->sql.terms[1].key, "p2");
	assert_true(cv_search_check(c, f->model, res, &f->pool));
	c = clause(f, "Patient", "_lastUpdated", "gt2100");
	assert_true(cv_search_check(c, f->model, res, &f->pool));
	json_object_put(res);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, test_setup, test_teardown)
	const struct CMUnitTest tests[] = {
		T(unknown_parameters),
		T(dates_parse),
		T(tokens_parse),
		T(tokens_keep_escaped_bars),
		T(composite_parts_keep_escaped_dollars),
		T(strings_parse),
		T(references_parse),
		T(numbers_parse),
		T(numbers_are_decimal),
		T(composites_parse),
		T(result_parameters),
		T(form_decoding),
		T(date_prefixes_at_each_precision),
		T(date_boundaries),
		T(periods),
		T(number_and_quantity_prefixes),
		T(number_precision_upper_bound_is_exclusive),
		T(strings_match),
		T(tokens_match),
		T(references_match),
		T(birth_dates_match),
		T(composites_match),
		T(component_composites_match),
		T(composites_missing),
		T(death_dates_with_zones_are_consistent),
		T(remote_references_are_not_local),
		T(old_birth_dates_are_found_by_range),
		T(unchecked_clauses_keep_exact_twins),
	};
#undef T
	return cmocka_run_group_tests(tests, setup, teardown);
}
