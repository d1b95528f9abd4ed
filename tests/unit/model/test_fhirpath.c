/*
 * test_fhirpath.c - unit tests of the FHIRPath evaluator: the features the
 * search parameters rely on (choice types, ofType/as/is, where, union,
 * resolve(), extension(), first, exists, indexers, `_element` siblings),
 * the bounds and syntax errors; the official FHIRPath R4 test suite
 * (tests/data/fhirpath/suite.json, made by tools/fhirpath-suite.py) with a
 * floor on the pass count; and every official search-parameter expression,
 * compiled and evaluated over the examples of its base type.
 */
#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "model/fhirpath.h"
#include "model/json.h"

#ifndef CV_TEST_DATA
#define CV_TEST_DATA "tests/data"
#endif

/* The suite's pass count this implementation reached; a drop is a regression. */
#define SUITE_FLOOR 907

static cv_model_t *model;

static int setup(void **state)
{
	return cv_model_new(&model) == CV_OK ? 0 : -1;
}

static int teardown(void **state)
{
	cv_model_free(model);
	model = NULL;
	return 0;
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		if (buf) {
			buf[n] = '\0';
			*len = (size_t)n;
		}
	}
	fclose(f);
	return buf;
}

/* Parses text with the strict parser (decimals keep their text); owned by pool. */
static json_object *parse_in(cv_pool_t *pool, const char *text, size_t len)
{
	cv_json_limits_t lim;
	json_object *obj = NULL;
	const char *err = NULL;

	cv_json_limits_default(&lim);
	if (cv_json_parse(text, len, &lim, pool, &obj, &err) != CV_OK)
		return NULL;
	if (cv_json_pool_own(pool, obj) != CV_OK)
		return NULL;
	return obj;
}

static json_object *load_json(cv_pool_t *pool, const char *path)
{
	size_t len = 0;
	char *text = slurp(path, &len);
	json_object *obj = text ? parse_in(pool, text, len) : NULL;

	free(text);
	return obj;
}

/* Evaluates expr on res; returns rc, result in *out (pool memory). */
static cv_rc run(cv_pool_t *pool, json_object *res, const char *expr, cv_fp_list_t *out)
{
	cv_fhirpath_t *e = NULL;
	cv_fp_env_t env = {.model = model, .resource = res};
	char err[256];
	cv_rc rc = cv_fhirpath_compile(expr, &e, err, sizeof(err));

	out->n = 0;
	if (rc == CV_OK)
		rc = cv_fhirpath_eval(e, &env, pool, out, err, sizeof(err));
	cv_fhirpath_free(e);
	return rc;
}

/* Renders an item as the suite writes values ("true", "@2015-02-04", "4 'g'"). */
static const char *render(cv_pool_t *pool, const cv_fp_item_t *it)
{
	switch (it->kind) {
	case CV_FP_BOOLEAN: return it->b ? "true" : "false";
	case CV_FP_INTEGER: return cv_pool_printf(pool, "%lld", (long long)it->i);
	case CV_FP_DECIMAL: return it->s;
	case CV_FP_STRING: return it->s;
	case CV_FP_DATE:
	case CV_FP_DATETIME: return cv_pool_printf(pool, "@%s", it->s);
	case CV_FP_TIME: return cv_pool_printf(pool, "@T%s", it->s);
	case CV_FP_QUANTITY: return cv_pool_printf(pool, "%s '%s'", it->s, it->unit ? it->unit : "1");
	case CV_FP_NODE:
		if (json_object_is_type(it->node, json_type_object) || json_object_is_type(it->node, json_type_array))
			return json_object_to_json_string_ext(it->node, JSON_C_TO_STRING_PLAIN);
		if (it->type && (strcmp(it->type, "date") == 0 || strcmp(it->type, "dateTime") == 0 ||
				 strcmp(it->type, "instant") == 0))
			return cv_pool_printf(pool, "@%s", json_object_get_string(it->node));
		if (it->type && strcmp(it->type, "time") == 0)
			return cv_pool_printf(pool, "@T%s", json_object_get_string(it->node));
		return json_object_get_string(it->node);
	}
	return "";
}

/* ---- fixtures ----------------------------------------------------------------- */

static const char patient_json[] =
	"{\"resourceType\":\"Patient\",\"id\":\"p1\","
	"\"extension\":[{\"url\":\"http://example.org/race\",\"valueCode\":\"2106-3\"}],"
	"\"identifier\":[{\"system\":\"urn:s\",\"value\":\"A1\"},{\"system\":\"urn:t\",\"value\":\"B2\"}],"
	"\"active\":true,"
	"\"name\":[{\"use\":\"official\",\"family\":\"Doe\",\"given\":[\"Jon\",\"Q\"],"
	"\"_given\":[null,{\"extension\":[{\"url\":\"http://example.org/abbr\",\"valueString\":\"short\"}]}]},"
	"{\"use\":\"nickname\",\"given\":[\"JD\"]}],"
	"\"birthDate\":\"1970-03-04\",\"_birthDate\":{\"extension\":[{\"url\":"
	"\"http://hl7.org/fhir/StructureDefinition/patient-birthTime\",\"valueDateTime\":\"1970-03-04T10:00:00Z\"}]},"
	"\"deceasedBoolean\":false,\"multipleBirthInteger\":2,"
	"\"generalPractitioner\":[{\"reference\":\"Practitioner/pr1\"},{\"reference\":\"#org\"}],"
	"\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"org\",\"name\":\"Clinic\"}],"
	"\"managingOrganization\":{\"reference\":\"https://example.org/fhir/Organization/o1/_history/2\"},"
	"\"contact\":[{\"name\":{\"family\":\"Roe\"},\"telecom\":[{\"system\":\"phone\",\"value\":\"555\"}]}]}";

static const char observation_json[] =
	"{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\","
	"\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"29463-7\"}]},"
	"\"subject\":{\"reference\":\"Patient/p1\"},"
	"\"effectiveDateTime\":\"2020-01-02T03:04:05+01:00\","
	"\"valueQuantity\":{\"value\":72.50,\"unit\":\"kg\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"kg\"},"
	"\"component\":[{\"code\":{\"text\":\"a\"},\"valueCodeableConcept\":{\"text\":\"x\"}},"
	"{\"code\":{\"text\":\"b\"},\"valueString\":\"y\"}]}";

typedef struct fx {
	cv_pool_t pool;
	json_object *pat;
	json_object *obs;
} fx_t;

static void fx_init(fx_t *f)
{
	cv_pool_init(&f->pool, 0);
	f->pat = parse_in(&f->pool, patient_json, sizeof(patient_json) - 1);
	f->obs = parse_in(&f->pool, observation_json, sizeof(observation_json) - 1);
	assert_non_null(f->pat);
	assert_non_null(f->obs);
}

/* Asserts that expr on res yields n items, the first rendered as first (if not NULL). */
static void expect(fx_t *f, json_object *res, const char *expr, size_t n, const char *first)
{
	cv_fp_list_t out;
	cv_rc rc = run(&f->pool, res, expr, &out);

	if (rc != CV_OK || out.n != n || (first && n && strcmp(render(&f->pool, &out.v[0]), first) != 0)) {
		print_error("%s: rc %d, %zu items, first %s\n", expr, rc, out.n,
			    out.n ? render(&f->pool, &out.v[0]) : "-");
		fail();
	}
}

/* ---- focused tests ------------------------------------------------------------------ */

static void test_paths_and_indexers(void **state)
{
	fx_t f;

	fx_init(&f);
	expect(&f, f.pat, "Patient.name.given", 3, "Jon");
	expect(&f, f.pat, "name.given[1]", 1, "Q");
	expect(&f, f.pat, "Patient.name[1].given", 1, "JD");
	expect(&f, f.pat, "Patient.name.given.first()", 1, "Jon");
	expect(&f, f.pat, "Patient.name.given.last()", 1, "JD");
	expect(&f, f.pat, "Patient.identifier.value.tail()", 1, "B2");
	expect(&f, f.pat, "Patient.name.given[5]", 0, NULL);
	expect(&f, f.pat, "Observation.code", 0, NULL);
	expect(&f, f.pat, "Patient.contact.name.family", 1, "Roe");
	expect(&f, f.pat, "Patient.contact.telecom.where(system = 'phone').value", 1, "555");
	expect(&f, f.pat, "Patient.name.exists()", 1, "true");
	expect(&f, f.pat, "Patient.photo.exists()", 1, "false");
	expect(&f, f.pat, "Patient.name.exists(use = 'nickname')", 1, "true");
	expect(&f, f.pat, "Patient.name.given.count()", 1, "3");
	expect(&f, f.pat, "Patient.active", 1, "true");
	expect(&f, f.pat, "Patient.birthDate", 1, "@1970-03-04");
	cv_pool_release(&f.pool);
}

static void test_choice_types(void **state)
{
	fx_t f;
	cv_fp_list_t out;

	fx_init(&f);
	assert_int_equal(run(&f.pool, f.obs, "Observation.value", &out), CV_OK);
	assert_int_equal(out.n, 1);
	assert_string_equal(out.v[0].type, "Quantity");
	expect(&f, f.obs, "Observation.value.value", 1, "72.50");
	assert_int_equal(run(&f.pool, f.obs, "Observation.valueQuantity", &out), CV_E_INVALID);
	expect(&f, f.obs, "Observation.value.ofType(Quantity).unit", 1, "kg");
	expect(&f, f.obs, "(Observation.value as Quantity).code", 1, "kg");
	expect(&f, f.obs, "Observation.value.as(Quantity).system", 1, "http://unitsofmeasure.org");
	expect(&f, f.obs, "Observation.value as CodeableConcept", 0, NULL);
	expect(&f, f.obs, "Observation.value is Quantity", 1, "true");
	expect(&f, f.obs, "Observation.value.is(FHIR.Quantity)", 1, "true");
	expect(&f, f.obs, "Observation.effective is dateTime", 1, "true");
	expect(&f, f.obs, "Observation.effective.ofType(Period)", 0, NULL);
	expect(&f, f.obs, "Observation.component.value.ofType(CodeableConcept).text", 1, "x");
	expect(&f, f.obs, "Observation.component.value.ofType(string)", 1, "y");
	expect(&f, f.obs, "Observation.value > 70 'kg'", 1, "true");
	{
		cv_fp_item_t v;
		assert_int_equal(run(&f.pool, f.obs, "Observation.value | Observation.effective | Observation.status", &out),
				 CV_OK);
		assert_int_equal(out.n, 3);
		assert_true(cv_fp_item_value(model, &out.v[0], &f.pool, &v));
		assert_int_equal(v.kind, CV_FP_QUANTITY);
		assert_string_equal(v.s, "72.50");
		assert_string_equal(v.unit, "kg");
		assert_true(cv_fp_item_value(model, &out.v[1], &f.pool, &v));
		assert_int_equal(v.kind, CV_FP_DATETIME);
		assert_true(cv_fp_item_value(model, &out.v[2], &f.pool, &v));
		assert_int_equal(v.kind, CV_FP_STRING);
		assert_string_equal(v.s, "final");
		assert_int_equal(run(&f.pool, f.obs, "Observation.code", &out), CV_OK);
		assert_false(cv_fp_item_value(model, &out.v[0], &f.pool, &v));
	}
	expect(&f, f.obs, "Observation.effective > @2020-01-02T01:00:00Z", 1, "true");
	expect(&f, f.pat, "Patient.deceased", 1, "false");
	expect(&f, f.pat, "Patient.multipleBirth is integer", 1, "true");
	cv_pool_release(&f.pool);
}

static void test_where_union_resolve(void **state)
{
	fx_t f;
	cv_fp_list_t out;

	fx_init(&f);
	expect(&f, f.pat, "Patient.name.where(use = 'official').family", 1, "Doe");
	expect(&f, f.pat, "Patient.name.given | Patient.name.family", 4, "Jon");
	expect(&f, f.pat, "Patient.identifier.system | Patient.identifier.system", 2, "urn:s");
	expect(&f, f.pat, "Patient.name.select(given.first())", 2, "Jon");
	expect(&f, f.obs, "Observation.subject.where(resolve() is Patient)", 1, NULL);
	expect(&f, f.obs, "Observation.subject.resolve() is Practitioner", 1, "false");
	expect(&f, f.pat, "Patient.generalPractitioner.where(resolve() is Organization)", 1, NULL);
	expect(&f, f.pat, "Patient.generalPractitioner.resolve().name", 1, "Clinic");
	expect(&f, f.pat, "Patient.managingOrganization.resolve() is Organization", 1, "true");
	assert_int_equal(run(&f.pool, f.pat, "Patient.generalPractitioner.resolve()", &out), CV_OK);
	assert_int_equal(out.n, 2);
	assert_string_equal(out.v[0].type, "Practitioner");
	assert_true(out.v[0].stub);
	assert_string_equal(out.v[1].type, "Organization");
	assert_false(out.v[1].stub);
	cv_pool_release(&f.pool);
}

static void test_extensions_and_siblings(void **state)
{
	fx_t f;

	fx_init(&f);
	expect(&f, f.pat, "Patient.extension('http://example.org/race').value", 1, "2106-3");
	expect(&f, f.pat, "Patient.extension('http://example.org/other')", 0, NULL);
	expect(&f, f.pat, "Patient.extension.where(url = 'http://example.org/race').value.ofType(code)", 1, "2106-3");
	expect(&f, f.pat,
	       "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value", 1,
	       "@1970-03-04T10:00:00Z");
	expect(&f, f.pat, "Patient.name.given[1].extension.value", 1, "short");
	expect(&f, f.pat, "Patient.name.given[0].extension", 0, NULL);
	expect(&f, f.pat, "Patient.birthDate.hasValue()", 1, "true");
	expect(&f, f.pat, "Patient.name.given.where(extension.exists()) = 'Q'", 1, "true");
	cv_pool_release(&f.pool);
}

static void test_operators(void **state)
{
	fx_t f;

	fx_init(&f);
	expect(&f, f.pat, "1 + 2 * 3", 1, "7");
	expect(&f, f.pat, "7 div 2 = 3 and 7 mod 2 = 1", 1, "true");
	expect(&f, f.pat, "'a' & {} & 'b'", 1, "ab");
	expect(&f, f.pat, "'abc'.substring(1, 1).upper()", 1, "B");
	expect(&f, f.pat, "'Jon' in Patient.name.given", 1, "true");
	expect(&f, f.pat, "Patient.name.given contains 'Q'", 1, "true");
	expect(&f, f.pat, "Patient.name.family ~ 'doe'", 1, "true");
	expect(&f, f.pat, "@2012-04-15 < @2012-05", 1, "true");
	expect(&f, f.pat, "@2012-05 < @2012-05-15", 0, NULL);
	expect(&f, f.pat, "@2014-01-01 + 1 month", 1, "@2014-02-01");
	expect(&f, f.pat, "@2014-03-31 - 1 month", 1, "@2014-02-28");
	expect(&f, f.pat, "@0001-01-01 - 1 day", 0, NULL);
	expect(&f, f.pat, "@T10:00 + 90 minutes", 1, "@T11:30");
	expect(&f, f.pat, "iif(Patient.active, 'yes', 'no')", 1, "yes");
	expect(&f, f.pat, "true implies {}", 0, NULL);
	expect(&f, f.pat, "false implies {}", 1, "true");
	expect(&f, f.pat, "'12'.toInteger() + 1", 1, "13");
	expect(&f, f.pat, "'abc'.matches('^a.c$')", 1, "true");
	expect(&f, f.pat, "'abcabc'.replaceMatches('(b)(c)', '$2$1')", 1, "acbacb");
	expect(&f, f.pat, "(3 | 1 | 2).sort(-$this).first()", 1, "3");
	expect(&f, f.pat, "'aGVsbG8='.decode('base64')", 1, "hello");
	expect(&f, f.pat, "1.587.lowBoundary(2)", 1, "1.58");
	expect(&f, f.pat, "Patient.name.first().type().name", 1, "HumanName");
	expect(&f, f.pat, "(1 | 2 | 2 | 3).count()", 1, "3");
	expect(&f, f.pat, "%ucum", 1, "http://unitsofmeasure.org");
	expect(&f, f.pat, "%resource.id", 1, "p1");
	expect(&f, f.pat, "Patient.descendants().ofType(HumanName).count()", 1, "3");
	cv_pool_release(&f.pool);
}

static void test_errors_and_limits(void **state)
{
	cv_fhirpath_t *e = NULL;
	char err[128];
	char deep[700];
	fx_t f;
	cv_fp_list_t out;
	const char *x = "(0|1|2|3|4|5|6|7|8|9)";
	char *big;

	assert_int_equal(cv_fhirpath_compile("Patient.name.where(", &e, err, sizeof(err)), CV_E_INVALID);
	assert_null(e);
	assert_non_null(strstr(err, "offset 19"));
	assert_int_equal(cv_fhirpath_compile("Patient.name.frobnicate()", &e, err, sizeof(err)), CV_E_INVALID);
	assert_non_null(strstr(err, "unknown function"));
	assert_non_null(strstr(err, "offset 13"));
	assert_int_equal(cv_fhirpath_compile("'abc", &e, err, sizeof(err)), CV_E_INVALID);
	assert_int_equal(cv_fhirpath_compile("1 +", &e, err, sizeof(err)), CV_E_INVALID);
	assert_int_equal(cv_fhirpath_compile("a.b c", &e, err, sizeof(err)), CV_E_INVALID);
	assert_int_equal(cv_fhirpath_compile("first(1)", &e, err, sizeof(err)), CV_E_INVALID);
	assert_int_equal(cv_fhirpath_compile("", &e, err, sizeof(err)), CV_E_INVALID);
	memset(deep, '(', 300);
	deep[300] = '1';
	memset(deep + 301, ')', 300);
	deep[601] = '\0';
	assert_int_equal(cv_fhirpath_compile(deep, &e, err, sizeof(err)), CV_E_LIMIT);
	assert_null(e);

	fx_init(&f);
	assert_int_equal(run(&f.pool, f.pat, "Patient.name.given = 'Jon'", &out), CV_OK);
	assert_int_equal(out.n, 1);
	assert_false(out.v[0].b);
	assert_int_equal(run(&f.pool, f.pat, "Patient.name.given > 'A'", &out), CV_E_INVALID);
	assert_int_equal(run(&f.pool, f.pat, "Patient.name.given1", &out), CV_E_INVALID);
	assert_int_equal(run(&f.pool, f.pat, "'aa'.matches('(a)\\1')", &out), CV_E_INVALID);
	assert_int_equal(run(&f.pool, f.pat, "'a'.matches('a{1000}')", &out), CV_E_INVALID);
	assert_int_equal(run(&f.pool, f.pat, "Patient.name.as(HumanName)", &out), CV_E_INVALID);
	assert_int_equal(run(&f.pool, f.pat, "Patient.name.ofType(HumanNameX)", &out), CV_E_INVALID);
	assert_int_equal(run(&f.pool, f.pat, "'ab'.repeat($this & $this)", &out), CV_E_LIMIT);
	assert_int_equal(run(&f.pool, f.pat, "@T10 + -1 month", &out), CV_E_INVALID); /* found by fuzzing */
	big = cv_pool_printf(&f.pool, "%s.select(%s).select(%s).select(%s).select(%s).select(%s)", x, x, x, x, x, x);
	assert_int_equal(run(&f.pool, f.pat, big, &out), CV_E_LIMIT);
	cv_pool_release(&f.pool);
}

/* ---- the model's navigation API ------------------------------------------------------ */

static void test_model_navigation(void **state)
{
	const cv_model_elem_t *e, *c, *item, *sub;
	const char *ct = NULL;
	size_t n;
	bool found = false;

	e = cv_model_elem(model, "Observation", NULL, "value");
	assert_non_null(e);
	assert_true(cv_model_elem_is_choice(e));
	assert_false(cv_model_elem_repeats(e));
	assert_string_equal(cv_model_elem_name(e), "value");
	for (size_t i = 0; i < cv_model_elem_type_count(e); i++)
		found = found || strcmp(cv_model_elem_type(e, i), "Quantity") == 0;
	assert_true(found);
	assert_ptr_equal(cv_model_elem_by_key(model, "Observation", NULL, "valueQuantity", &ct), e);
	assert_string_equal(ct, "Quantity");
	assert_null(cv_model_elem_by_key(model, "Observation", NULL, "valueFoo", &ct));
	assert_null(cv_model_elem(model, "Observation", NULL, "valueQuantity"));

	c = cv_model_elem(model, "Patient", NULL, "contact");
	assert_non_null(c);
	assert_true(cv_model_elem_is_backbone(c));
	assert_true(cv_model_elem_repeats(c));
	assert_string_equal(cv_model_elem_type(c, 0), "BackboneElement");
	e = cv_model_elem(model, NULL, c, "name");
	assert_non_null(e);
	assert_string_equal(cv_model_elem_type(e, 0), "HumanName");
	n = cv_model_elem_child_count(model, NULL, c);
	assert_true(n > 5);
	assert_non_null(cv_model_elem_child(model, NULL, c, n - 1));
	assert_null(cv_model_elem_child(model, NULL, c, n));

	/* contentReference: Questionnaire.item.item has the children of Questionnaire.item */
	item = cv_model_elem(model, "Questionnaire", NULL, "item");
	sub = cv_model_elem(model, NULL, item, "item");
	assert_non_null(sub);
	assert_true(cv_model_elem_is_backbone(sub));
	assert_non_null(cv_model_elem(model, NULL, sub, "linkId"));

	assert_true(cv_model_type_known(model, "DomainResource"));
	assert_false(cv_model_type_known(model, "Nope"));
	assert_string_equal(cv_model_type_base(model, "Patient"), "DomainResource");
	assert_string_equal(cv_model_type_base(model, "Age"), "Quantity");
	assert_true(cv_model_type_derives(model, "Age", "Quantity"));
	assert_true(cv_model_type_derives(model, "Patient", "Resource"));
	assert_true(cv_model_type_derives(model, "code", "string"));
	assert_false(cv_model_type_derives(model, "Quantity", "Age"));
	assert_true(cv_model_type_is_primitive(model, "dateTime"));
	assert_false(cv_model_type_is_primitive(model, "HumanName"));
}

/* ---- allocation failures -------------------------------------------------------------- */

/* Every evaluation under a pool too small for it fails cleanly (no crash,
 * no leak under ASan), and succeeds once the pool is large enough. */
static void test_allocation_failures(void **state)
{
	static const char *const exprs[] = {
		"Patient.name.where(use = 'official').select(family & ', ' & given.join(' '))",
		"Patient.descendants().ofType(string).distinct().count()",
		"(Patient.name.given | Patient.identifier.value).sort().last().upper().replace('O', '0')",
		"Patient.birthDate + 1 year > @1970 and Patient.multipleBirth.toString().toDecimal() * 1.5 = 3.0",
		"Patient.generalPractitioner.resolve().ofType(Organization).name.lowBoundary().exists().not()",
	};
	fx_t f;

	fx_init(&f);
	for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
		cv_fhirpath_t *e = NULL;
		char err[128];
		cv_rc rc = CV_E_NOMEM;

		assert_int_equal(cv_fhirpath_compile(exprs[i], &e, err, sizeof(err)), CV_OK);
		for (size_t cap = 1024; rc != CV_OK && cap < 4u * 1024 * 1024; cap += cap / 8) {
			cv_pool_t pool;
			cv_fp_env_t env = {.model = model, .resource = f.pat};
			cv_fp_list_t out;
			cv_pool_init(&pool, cap);
			rc = cv_fhirpath_eval(e, &env, &pool, &out, err, sizeof(err));
			cv_pool_release(&pool);
		}
		if (rc != CV_OK)
			print_error("%s: %s\n", exprs[i], err);
		assert_int_equal(rc, CV_OK);
		cv_fhirpath_free(e);
	}
	cv_pool_release(&f.pool);
}

/* ---- one compiled tree, several threads ------------------------------------------------- */

typedef struct thread_arg {
	const cv_fhirpath_t *e;
	json_object *res;
	int ok;
} thread_arg_t;

static void *eval_many(void *p)
{
	thread_arg_t *a = p;

	for (int i = 0; i < 200; i++) {
		cv_pool_t pool;
		cv_fp_env_t env = {.model = model, .resource = a->res};
		cv_fp_list_t out;
		char err[128];
		cv_pool_init(&pool, 0);
		if (cv_fhirpath_eval(a->e, &env, &pool, &out, err, sizeof(err)) == CV_OK && out.n == 1 &&
		    out.v[0].kind == CV_FP_STRING && strcmp(out.v[0].s, "Doe, Jon Q") == 0)
			a->ok++;
		cv_pool_release(&pool);
	}
	return NULL;
}

static void test_threads(void **state)
{
	cv_fhirpath_t *e = NULL;
	char err[128];
	pthread_t t[4];
	thread_arg_t a[4];
	fx_t f;

	fx_init(&f);
	assert_int_equal(cv_fhirpath_compile("Patient.name.where(use = 'official').select(family & ', ' & "
					     "given.join(' '))",
					     &e, err, sizeof(err)),
			 CV_OK);
	for (int i = 0; i < 4; i++) {
		a[i] = (thread_arg_t){.e = e, .res = f.pat};
		assert_int_equal(pthread_create(&t[i], NULL, eval_many, &a[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].ok, 200);
	}
	cv_fhirpath_free(e);
	cv_pool_release(&f.pool);
}

/* ---- the official suite ------------------------------------------------------------- */

typedef struct suite_stats {
	int pass, fail, skip;
	int skip_input, skip_unsupported, skip_strict;
	FILE *report;
} suite_stats_t;

static json_object *suite_input(cv_pool_t *pool, json_object *cache, const char *name)
{
	json_object *obj = NULL;
	char path[512];

	if (json_object_object_get_ex(cache, name, &obj))
		return obj;
	snprintf(path, sizeof(path), "%s/fhirpath/%s", CV_TEST_DATA, name);
	obj = load_json(pool, path);
	json_object_object_add(cache, name, obj ? json_object_get(obj) : NULL);
	return obj;
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v = NULL;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
											     : NULL;
}

static bool jbool(json_object *o, const char *k)
{
	json_object *v = NULL;

	return json_object_object_get_ex(o, k, &v) && json_object_get_boolean(v);
}

/* True if the item has the type the suite names (System or FHIR name). */
static bool type_matches(const cv_fp_item_t *it, const char *want)
{
	static const struct {
		const char *want;
		cv_fp_kind kind;
		const char *fhir[6];
	} t[] = {
		{"boolean", CV_FP_BOOLEAN, {"boolean"}},
		{"integer", CV_FP_INTEGER, {"integer", "positiveInt", "unsignedInt"}},
		{"decimal", CV_FP_DECIMAL, {"decimal"}},
		{"string", CV_FP_STRING, {"string", "markdown", "code", "id", "uri"}},
		{"code", CV_FP_STRING, {"code"}},
		{"id", CV_FP_STRING, {"id"}},
		{"date", CV_FP_DATE, {"date"}},
		{"dateTime", CV_FP_DATETIME, {"dateTime", "instant"}},
		{"time", CV_FP_TIME, {"time"}},
		{"Quantity", CV_FP_QUANTITY, {"Quantity"}},
	};

	if (!want)
		return true;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (strcmp(t[i].want, want) != 0)
			continue;
		if (it->kind != CV_FP_NODE)
			return it->kind == t[i].kind;
		for (int j = 0; j < 6 && t[i].fhir[j]; j++) {
			if (it->type && strcmp(it->type, t[i].fhir[j]) == 0)
				return true;
		}
		return false;
	}
	return true;
}

/* Compares the result with the expected outputs; the reason of a mismatch in *why. */
static bool same_outputs(cv_pool_t *pool, const cv_fp_list_t *out, json_object *exp, bool ordered, const char **why)
{
	size_t n = json_object_array_length(exp);
	bool *used = cv_pool_alloc(pool, n + 1);

	if (out->n != n) {
		*why = "count";
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		const char *want = jstr(json_object_array_get_idx(exp, i), "value");
		const char *wtype = jstr(json_object_array_get_idx(exp, i), "type");
		bool found = false;
		for (size_t j = ordered ? i : 0; j < (ordered ? i + 1 : n) && !found; j++) {
			const char *got = render(pool, &out->v[ordered ? i : j]);
			if (!ordered && used[j])
				continue;
			found = got && want && strcmp(got, want) == 0 && type_matches(&out->v[ordered ? i : j], wtype);
			if (found && !ordered)
				used[j] = true;
		}
		if (!found) {
			*why = "value";
			return false;
		}
	}
	return true;
}

static void suite_one(json_object *t, json_object *cache, cv_pool_t *pool, suite_stats_t *st)
{
	const char *name = jstr(t, "name"), *input = jstr(t, "input"), *expr = jstr(t, "expression");
	const char *invalid = jstr(t, "invalid"), *why = NULL;
	json_object *res = NULL, *exp = NULL;
	cv_fhirpath_t *e = NULL;
	cv_fp_env_t env = {.model = model};
	cv_fp_list_t out = {0};
	char err[256];
	cv_rc rc;

	json_object_object_get_ex(t, "outputs", &exp);
	if (jstr(t, "mode") && strcmp(jstr(t, "mode"), "strict") == 0) {
		/* strict mode asks for static type checking, which the evaluator does not do */
		st->skip++;
		st->skip_strict++;
		fprintf(st->report, "skip strict %s\n", name);
		return;
	}
	if (input) {
		res = suite_input(pool, cache, input);
		if (!res) {
			st->skip++;
			st->skip_input++;
			fprintf(st->report, "skip input %s\n", name);
			return;
		}
	}
	rc = cv_fhirpath_compile(expr ? expr : "", &e, err, sizeof(err));
	if (rc == CV_E_UNSUPPORTED) {
		st->skip++;
		st->skip_unsupported++;
		fprintf(st->report, "skip unsupported %s\n", name);
		return;
	}
	env.resource = res;
	if (rc == CV_OK)
		rc = cv_fhirpath_eval(e, &env, pool, &out, err, sizeof(err));
	cv_fhirpath_free(e);
	if (invalid) {
		if (rc != CV_OK && rc != CV_E_NOMEM) {
			st->pass++;
			return;
		}
		why = "noerror";
	} else if (rc != CV_OK) {
		why = "error";
	} else {
		if (jbool(t, "predicate")) {
			cv_fp_item_t *b = cv_pool_alloc(pool, sizeof(*b));
			b->kind = CV_FP_BOOLEAN;
			b->b = out.n > 0;
			out.n = 1;
			out.v = b;
		}
		if (same_outputs(pool, &out, exp, !json_object_object_get_ex(t, "ordered", NULL) || jbool(t, "ordered"),
				 &why)) {
			st->pass++;
			return;
		}
	}
	st->fail++;
	fprintf(st->report, "fail %s %s\n", why, name);
}

static void test_official_suite(void **state)
{
	cv_pool_t pool;
	json_object *suite = NULL, *tests = NULL, *cache = json_object_new_object();
	suite_stats_t st = {0};
	size_t n;

	cv_pool_init(&pool, 512u * 1024 * 1024);
	suite = load_json(&pool, CV_TEST_DATA "/fhirpath/suite.json");
	assert_non_null(suite);
	assert_true(json_object_object_get_ex(suite, "tests", &tests));
	n = json_object_array_length(tests);
	st.report = fopen("fhirpath-suite-report.txt", "w");
	assert_non_null(st.report);
	for (size_t i = 0; i < n; i++)
		suite_one(json_object_array_get_idx(tests, i), cache, &pool, &st);
	fclose(st.report);
	printf("fhirpath suite: %d passed, %d failed, %d skipped of %zu\n", st.pass, st.fail, st.skip, n);
	printf("fhirpath suite: skipped %d (input file absent), %d (function not implemented), "
	       "%d (strict mode); details in fhirpath-suite-report.txt\n",
	       st.skip_input, st.skip_unsupported, st.skip_strict);
	json_object_put(cache);
	cv_pool_release(&pool);
	assert_true(st.pass >= SUITE_FLOOR);
}

/* ---- search parameters -------------------------------------------------------------- */

typedef struct example {
	const char *type;
	json_object *res;
} example_t;

static size_t load_examples(cv_pool_t *pool, example_t **out)
{
	DIR *d = opendir(CV_TEST_DATA "/examples");
	struct dirent *de;
	size_t n = 0, cap = 1024;
	example_t *v = cv_pool_alloc(pool, cap * sizeof(*v));

	assert_non_null(d);
	while ((de = readdir(d)) && n < cap) {
		char path[1024];
		json_object *res, *rt;
		if (!strstr(de->d_name, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/examples/%s", CV_TEST_DATA, de->d_name);
		res = load_json(pool, path);
		if (!res || !json_object_object_get_ex(res, "resourceType", &rt))
			continue;
		v[n].type = json_object_get_string(rt);
		v[n].res = res;
		n++;
	}
	closedir(d);
	*out = v;
	return n;
}

static bool base_matches(const char *bases, const char *type)
{
	size_t tl = strlen(type);

	for (const char *p = bases; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		if ((n == tl && memcmp(p, type, n) == 0) || (n == 8 && memcmp(p, "Resource", 8) == 0) ||
		    (n == 14 && memcmp(p, "DomainResource", 14) == 0))
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

static void test_search_expressions(void **state)
{
	cv_pool_t pool;
	size_t len = 0, nex, compiled = 0, evals = 0, bad = 0, lines = 0, foreign = 0;
	char *text = slurp(CV_TEST_DATA "/fhirpath/search-expressions.txt", &len);
	example_t *ex = NULL;

	assert_non_null(text);
	cv_pool_init(&pool, 1024u * 1024 * 1024);
	nex = load_examples(&pool, &ex);
	assert_true(nex > 100);
	for (char *line = text, *nl; line && *line; line = nl) {
		char *tab, err[256];
		cv_fhirpath_t *e = NULL;
		cv_rc rc;
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		tab = strchr(line, '\t');
		assert_non_null(tab);
		*tab = '\0';
		lines++;
		rc = cv_fhirpath_compile(tab + 1, &e, err, sizeof(err));
		if (rc) {
			print_error("search expression %zu does not compile: %s\n", lines, err);
			bad++;
			continue;
		}
		compiled++;
		for (size_t i = 0; i < nex; i++) {
			cv_pool_t ep;
			cv_fp_env_t env = {.model = model, .resource = ex[i].res};
			cv_fp_list_t out;
			bool own = base_matches(line, ex[i].type);
			cv_pool_init(&ep, 0);
			rc = cv_fhirpath_eval(e, &env, &ep, &out, err, sizeof(err));
			/* on a resource of another type an expression must yield empty, or
			   (without a type prefix: "name | alias") a semantic error */
			if (rc == CV_E_INVALID && !own)
				foreign++;
			else if (rc || (!own && out.n && out.v[0].kind == CV_FP_NODE && !strstr(tab + 1, "Resource.") &&
					!(tab[1] >= 'a' && tab[1] <= 'z'))) {
				print_error("search expression %zu (%s) on a %s example: %s\n", lines, line, ex[i].type, err);
				bad++;
			}
			evals++;
			cv_pool_release(&ep);
		}
		cv_fhirpath_free(e);
	}
	printf("search expressions: %zu of %zu compile, %zu evaluations over %zu examples (all of them, not only the "
	       "base type), %zu errors, %zu semantic errors on other types\n",
	       compiled, lines, evals, nex, bad, foreign);
	free(text);
	cv_pool_release(&pool);
	assert_int_equal(bad, 0);
	assert_true(lines > 1300);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model_navigation),
		cmocka_unit_test(test_paths_and_indexers),
		cmocka_unit_test(test_choice_types),
		cmocka_unit_test(test_where_union_resolve),
		cmocka_unit_test(test_extensions_and_siblings),
		cmocka_unit_test(test_operators),
		cmocka_unit_test(test_errors_and_limits),
		cmocka_unit_test(test_allocation_failures),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_official_suite),
		cmocka_unit_test(test_search_expressions),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
