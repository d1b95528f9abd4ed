/*
 * test_model.c - unit tests of the FHIR R4 model and validator: every official
 * example validates, and each kind of structural problem is reported once at
 * the expected location.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "model/model.h"

#ifndef CV_TEST_DATA
#define CV_TEST_DATA "tests/data"
#endif

static cv_model_t *model;

/* Examples that are legitimately invalid against the base definitions, with why. */
static const struct {
	const char *file;
	const char *reason;
} known_invalid[] = {
	{"Questionnaire-qs1.json",
	 "nested items have no linkId, which Questionnaire.item.linkId requires (min 1); the published R4 example is invalid"},
	{NULL, NULL},
};

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

static json_object *parse(const char *text, size_t len)
{
	json_tokener *tok = json_tokener_new_ex(64);
	json_object *obj;

	assert_non_null(tok);
	obj = json_tokener_parse_ex(tok, text, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

static void print_issues(const cv_outcome_t *oo)
{
	for (const cv_issue_t *i = oo->head; i; i = i->next)
		print_message("    %s %s: %s\n", i->code, i->expression ? i->expression : "-", i->diagnostics);
}

/* Validates text; returns rc and leaves the issues in oo (allocated from pool). */
static cv_rc validate_text(const char *text, cv_pool_t *pool, cv_outcome_t *oo)
{
	json_object *obj = parse(text, strlen(text));
	cv_rc rc;

	assert_non_null(obj);
	cv_outcome_init(oo, pool, 0);
	rc = cv_model_validate(model, obj, oo);
	json_object_put(obj);
	return rc;
}

/* Asserts that text is invalid with exactly one issue, of code at expr. */
static void expect_one(const char *text, const char *code, const char *expr)
{
	cv_pool_t pool;
	cv_outcome_t oo;
	cv_rc rc;

	cv_pool_init(&pool, 0);
	rc = validate_text(text, &pool, &oo);
	if (rc != CV_E_INVALID || oo.count != 1 || strcmp(oo.head->code, code) != 0 ||
	    (expr ? !oo.head->expression || strcmp(oo.head->expression, expr) != 0 : oo.head->expression != NULL)) {
		print_message("for %s\n  expected %s at %s, got rc %d with %zu issues:\n", text, code,
			      expr ? expr : "-", (int)rc, oo.count);
		print_issues(&oo);
		cv_pool_release(&pool);
		fail();
	}
	cv_pool_release(&pool);
}

static void expect_valid(const char *text)
{
	cv_pool_t pool;
	cv_outcome_t oo;
	cv_rc rc;

	cv_pool_init(&pool, 0);
	rc = validate_text(text, &pool, &oo);
	if (rc != CV_OK) {
		print_message("for %s\n  expected valid, got:\n", text);
		print_issues(&oo);
		cv_pool_release(&pool);
		fail();
	}
	cv_pool_release(&pool);
}

static char *read_file(const char *path, size_t *len)
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

static const char *known_reason(const char *file)
{
	for (size_t i = 0; known_invalid[i].file; i++) {
		if (strcmp(known_invalid[i].file, file) == 0)
			return known_invalid[i].reason;
	}
	return NULL;
}

static bool is_json_name(const char *name)
{
	size_t n = strlen(name);

	return n > 5 && strcmp(name + n - 5, ".json") == 0;
}

/* Validates one example file; returns true if it is valid. */
static bool check_example(const char *dir, const char *file)
{
	char path[1024];
	size_t len = 0;
	char *text;
	json_object *obj;
	cv_pool_t pool;
	cv_outcome_t oo;
	cv_rc rc;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	text = read_file(path, &len);
	assert_non_null(text);
	obj = parse(text, len);
	free(text);
	if (!obj) {
		print_message("%s: does not parse\n", file);
		return false;
	}
	cv_pool_init(&pool, 0);
	cv_outcome_init(&oo, &pool, 0);
	rc = cv_model_validate(model, obj, &oo);
	if (rc != CV_OK) {
		print_message("%s: %zu issues\n", file, oo.count);
		print_issues(&oo);
	}
	cv_pool_release(&pool);
	json_object_put(obj);
	return rc == CV_OK;
}

static void test_examples(void **state)
{
	const char *dir = CV_TEST_DATA "/examples";
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t total = 0, valid = 0, unexpected = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		const char *reason;
		bool ok;
		if (!is_json_name(de->d_name))
			continue;
		total++;
		ok = check_example(dir, de->d_name);
		valid += ok;
		reason = known_reason(de->d_name);
		if (!ok && !reason)
			unexpected++;
		if (ok && reason) {
			print_message("%s: listed as invalid but validates\n", de->d_name);
			unexpected++;
		}
	}
	closedir(d);
	print_message("examples: %zu of %zu valid\n", valid, total);
	assert_true(total >= 400);
	assert_int_equal(unexpected, 0);
}

/* ---- the model's tables ---- */

static void test_resource_names(void **state)
{
	size_t n = cv_model_resource_count(model);

	assert_true(n >= 140);
	assert_true(cv_model_is_resource(model, "Patient"));
	assert_true(cv_model_is_resource(model, "Bundle"));
	assert_false(cv_model_is_resource(model, "DomainResource"));
	assert_false(cv_model_is_resource(model, "HumanName"));
	assert_false(cv_model_is_resource(model, "string"));
	assert_false(cv_model_is_resource(model, "Nope"));
	for (size_t i = 1; i < n; i++)
		assert_true(strcmp(cv_model_resource_name(model, i - 1), cv_model_resource_name(model, i)) < 0);
	assert_null(cv_model_resource_name(model, n));
}

/* ---- valid edge cases ---- */

static void test_valid_cases(void **state)
{
	expect_valid("{\"resourceType\":\"Patient\"}");
	expect_valid("{\"resourceType\":\"Patient\",\"id\":\"a-1.b\",\"birthDate\":\"1974\",\"gender\":\"female\"}");
	expect_valid("{\"resourceType\":\"Patient\",\"_birthDate\":{\"extension\":[{\"url\":\"http://x\",\"valueCode\":\"unknown\"}]}}");
	expect_valid("{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"A\",null],\"_given\":[null,{\"id\":\"g2\",\"extension\":[{\"url\":\"http://x\",\"valueString\":\"B\"}]}]}]}");
	expect_valid("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valueQuantity\":{\"value\":1.50,\"unit\":\"mg\"},\"effectiveDateTime\":\"2020-02-29T23:59:60.123+14:00\"}");
	expect_valid("{\"resourceType\":\"Questionnaire\",\"status\":\"draft\",\"item\":[{\"linkId\":\"1\",\"type\":\"group\",\"item\":[{\"linkId\":\"1.1\",\"type\":\"string\",\"item\":[{\"linkId\":\"1.1.1\",\"type\":\"boolean\"}]}]}]}");
	expect_valid("{\"resourceType\":\"Binary\",\"contentType\":\"text/plain\",\"data\":\"aGVs bG8=\"}");
	expect_valid("{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"o\"}]}}]}");
}

/* ---- one issue per problem, at the right place ---- */

static void test_unknown_resource_type(void **state)
{
	expect_one("{\"resourceType\":\"Patientx\"}", "invalid", "resourceType");
	expect_one("{\"resourceType\":\"DomainResource\"}", "invalid", "resourceType");
	expect_one("{\"id\":\"x\"}", "required", "resourceType");
	expect_one("{\"resourceType\":5}", "structure", "resourceType");
}

static void test_unknown_element(void **state)
{
	expect_one("{\"resourceType\":\"Patient\",\"foo\":1}", "structure", "Patient.foo");
	expect_one("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"x\",\"bogus\":true}]}", "structure",
		   "Patient.name[0].bogus");
	expect_one("{\"resourceType\":\"Patient\",\"_gender\":{\"x\":1}}", "structure", "Patient.gender.x");
	expect_one("{\"resourceType\":\"Patient\",\"_name\":{\"id\":\"x\"}}", "structure", "Patient._name");
}

static void test_required(void **state)
{
	expect_one("{\"resourceType\":\"Bundle\"}", "required", "Bundle.type");
	expect_one("{\"resourceType\":\"Observation\",\"code\":{\"text\":\"x\"}}", "required", "Observation.status");
	expect_one("{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\"}}", "required", "Patient.text.div");
	expect_one("{\"resourceType\":\"Patient\",\"link\":[{\"type\":\"seealso\"}]}", "required", "Patient.link[0].other");
}

static void test_dates(void **state)
{
	expect_one("{\"resourceType\":\"Patient\",\"birthDate\":\"2020-13-45\"}", "value", "Patient.birthDate");
	expect_one("{\"resourceType\":\"Patient\",\"birthDate\":\"2021-02-29\"}", "value", "Patient.birthDate");
	expect_one("{\"resourceType\":\"Patient\",\"birthDate\":\"2020-01-01T10:00:00Z\"}", "value", "Patient.birthDate");
	expect_one("{\"resourceType\":\"Patient\",\"deceasedDateTime\":\"2020-01-01T10:00:00\"}", "value",
		   "Patient.deceasedDateTime");
	expect_one("{\"resourceType\":\"Patient\",\"deceasedDateTime\":\"2020-01-01T10:00Z\"}", "value",
		   "Patient.deceasedDateTime");
	expect_one("{\"resourceType\":\"Patient\",\"meta\":{\"lastUpdated\":\"2020-01-01T10:00:00\"}}", "value",
		   "Patient.meta.lastUpdated");
	expect_one("{\"resourceType\":\"Patient\",\"meta\":{\"lastUpdated\":\"2020-01-01\"}}", "value",
		   "Patient.meta.lastUpdated");
	expect_one("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valueTime\":\"25:00:00\"}",
		   "value", "Observation.valueTime");
}

static void test_numbers(void **state)
{
	expect_one("{\"resourceType\":\"Patient\",\"multipleBirthInteger\":3000000000}", "value",
		   "Patient.multipleBirthInteger");
	expect_one("{\"resourceType\":\"Patient\",\"multipleBirthInteger\":1.5}", "structure",
		   "Patient.multipleBirthInteger");
	expect_one("{\"resourceType\":\"Patient\",\"multipleBirthInteger\":\"2\"}", "structure",
		   "Patient.multipleBirthInteger");
	expect_one("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valueQuantity\":{\"value\":\"1.5\"}}",
		   "structure", "Observation.valueQuantity.value");
	expect_one("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valueQuantity\":{\"value\":NaN}}",
		   "value", "Observation.valueQuantity.value");
	expect_one("{\"resourceType\":\"Patient\",\"photo\":[{\"size\":-1}]}", "value", "Patient.photo[0].size");
	expect_one("{\"resourceType\":\"Patient\",\"telecom\":[{\"value\":\"1\",\"rank\":0}]}", "value",
		   "Patient.telecom[0].rank");
	expect_one("{\"resourceType\":\"Patient\",\"telecom\":[{\"value\":\"1\",\"rank\":true}]}", "structure",
		   "Patient.telecom[0].rank");
	expect_one("{\"resourceType\":\"Questionnaire\",\"status\":\"draft\",\"item\":[{\"linkId\":\"1\",\"type\":\"string\",\"maxLength\":1.0}]}",
		   "structure", "Questionnaire.item[0].maxLength");
}

static void test_choice(void **state)
{
	expect_one("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valueString\":\"a\",\"valueBoolean\":true}",
		   "structure", "Observation.valueBoolean");
	expect_one("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valueFoo\":\"a\"}",
		   "structure", "Observation.valueFoo");
	expect_one("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"value\":\"a\"}",
		   "structure", "Observation.value");
	expect_one("{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"valuestring\":\"a\"}",
		   "structure", "Observation.valuestring");
}

static void test_binding(void **state)
{
	expect_one("{\"resourceType\":\"Patient\",\"gender\":\"woman\"}", "code-invalid", "Patient.gender");
	expect_one("{\"resourceType\":\"Patient\",\"gender\":\" male\"}", "value", "Patient.gender");
	expect_one("{\"resourceType\":\"Bundle\",\"type\":\"pile\"}", "code-invalid", "Bundle.type");
}

static void test_empty(void **state)
{
	expect_one("{\"resourceType\":\"Patient\",\"gender\":\"\"}", "value", "Patient.gender");
	expect_one("{\"resourceType\":\"Patient\",\"name\":[{}]}", "structure", "Patient.name[0]");
	expect_one("{\"resourceType\":\"Patient\",\"name\":[]}", "structure", "Patient.name");
	expect_one("{\"resourceType\":\"Patient\",\"gender\":null}", "structure", "Patient.gender");
	expect_one("{\"resourceType\":\"Patient\",\"name\":[null]}", "structure", "Patient.name[0]");
	expect_one("{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"a\",null]}]}", "structure",
		   "Patient.name[0].given[1]");
	expect_one("{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\"}]}", "value", "Patient.name[0].family");
	expect_one("{\"resourceType\":\"Patient\",\"maritalStatus\":{}}", "structure", "Patient.maritalStatus");
	expect_one("{\"resourceType\":\"Patient\",\"maritalStatus\":{\"id\":\"m\"}}", "invariant", "Patient.maritalStatus");
	expect_one("{\"resourceType\":\"Patient\",\"contact\":[{\"id\":\"c\"}]}", "invariant", "Patient.contact[0]");
}

static void test_json_types(void **state)
{
	expect_one("{\"resourceType\":\"Patient\",\"active\":\"true\"}", "structure", "Patient.active");
	expect_one("{\"resourceType\":\"Patient\",\"gender\":1}", "structure", "Patient.gender");
	expect_one("{\"resourceType\":\"Patient\",\"maritalStatus\":\"M\"}", "structure", "Patient.maritalStatus");
	expect_one("{\"resourceType\":\"Patient\",\"name\":{\"family\":\"x\"}}", "structure", "Patient.name");
	expect_one("{\"resourceType\":\"Patient\",\"gender\":[\"male\"]}", "structure", "Patient.gender");
	expect_one("{\"resourceType\":\"Patient\",\"name\":[{\"given\":\"x\"}]}", "structure", "Patient.name[0].given");
}

static void test_contained(void **state)
{
	expect_one("{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"contained\":[{\"resourceType\":\"Organization\"}]}]}",
		   "structure", "Patient.contained[0].contained");
	expect_one("{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"bogus\":1}]}",
		   "structure", "Patient.contained[0].bogus");
	expect_one("{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"meta\":{\"versionId\":\"1\"}}]}",
		   "invariant", "Patient.contained[0].meta.versionId");
	expect_one("{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"meta\":{\"security\":[{\"code\":\"R\"}]}}]}",
		   "invariant", "Patient.contained[0].meta.security");
	expect_one("{\"resourceType\":\"Patient\",\"contained\":[{\"id\":\"x\"}]}", "required",
		   "Patient.contained[0].resourceType");
	expect_one("{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":{\"resourceType\":\"Patient\",\"birthDate\":\"x\"}}]}",
		   "value", "Bundle.entry[0].resource.birthDate");
}

static void test_extensions(void **state)
{
	expect_one("{\"resourceType\":\"Patient\",\"extension\":[{\"valueString\":\"a\"}]}", "required",
		   "Patient.extension[0].url");
	expect_one("{\"resourceType\":\"Patient\",\"extension\":[{\"url\":\"http://x\"}]}", "invariant",
		   "Patient.extension[0]");
	expect_one("{\"resourceType\":\"Patient\",\"extension\":[{\"url\":\"http://x\",\"valueString\":\"a\",\"extension\":[{\"url\":\"http://y\",\"valueBoolean\":true}]}]}",
		   "invariant", "Patient.extension[0]");
	expect_one("{\"resourceType\":\"Patient\",\"extension\":{\"url\":\"http://x\",\"valueString\":\"a\"}}",
		   "structure", "Patient.extension");
	expect_one("{\"resourceType\":\"Patient\",\"extension\":[{\"url\":\"http://x y\",\"valueString\":\"a\"}]}",
		   "value", "Patient.extension[0].url");
	expect_one("{\"resourceType\":\"Patient\",\"modifierExtension\":[{\"url\":\"http://x\",\"valueDate\":\"2020-02-30\"}]}",
		   "value", "Patient.modifierExtension[0].valueDate");
}

static void test_primitive_extensions(void **state)
{
	expect_one("{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"a\"],\"_given\":[null,{\"id\":\"x\"}]}]}",
		   "structure", "Patient.name[0].given");
	expect_one("{\"resourceType\":\"Patient\",\"name\":[{\"_given\":[null]}]}", "structure",
		   "Patient.name[0].given[0]");
	expect_one("{\"resourceType\":\"Patient\",\"_birthDate\":[{\"id\":\"x\"}]}", "structure", "Patient.birthDate");
	expect_one("{\"resourceType\":\"Patient\",\"_birthDate\":{\"extension\":[{\"url\":\"http://x\"}]}}", "invariant",
		   "Patient.birthDate.extension[0]");
}

static void test_formats(void **state)
{
	expect_one("{\"resourceType\":\"Binary\",\"contentType\":\"text/plain\",\"data\":\"abc\"}", "value", "Binary.data");
	expect_one("{\"resourceType\":\"Binary\",\"contentType\":\"text/plain\",\"data\":\"ab=c\"}", "value", "Binary.data");
	expect_one("{\"resourceType\":\"Patient\",\"id\":\"a b\"}", "value", "Patient.id");
	expect_one("{\"resourceType\":\"Patient\",\"id\":\"0123456789012345678901234567890123456789012345678901234567890123456789\"}",
		   "value", "Patient.id");
	expect_one("{\"resourceType\":\"Patient\",\"implicitRules\":\"http://a b\"}", "value", "Patient.implicitRules");
	expect_one("{\"resourceType\":\"Patient\",\"extension\":[{\"url\":\"http://x\",\"valueOid\":\"urn:oid:1.02\"}]}",
		   "value", "Patient.extension[0].valueOid");
	expect_one("{\"resourceType\":\"Patient\",\"extension\":[{\"url\":\"http://x\",\"valueUuid\":\"urn:uuid:ABC\"}]}",
		   "value", "Patient.extension[0].valueUuid");
	expect_one("{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":\"<p>x</p>\"}}", "value",
		   "Patient.text.div");
	expect_one("{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":\"\"}}", "value",
		   "Patient.text.div");
}

static void test_not_object(void **state)
{
	expect_one("[1]", "structure", NULL);
	expect_one("\"Patient\"", "structure", NULL);
}

static void test_cap(void **state)
{
	char text[40000];
	size_t n = 0;
	cv_pool_t pool;
	cv_outcome_t oo;
	cv_rc rc;

	n += (size_t)snprintf(text + n, sizeof(text) - n, "{\"resourceType\":\"Patient\"");
	for (int i = 0; i < 1000; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, ",\"x%d\":1", i);
	snprintf(text + n, sizeof(text) - n, "}");
	cv_pool_init(&pool, 0);
	rc = validate_text(text, &pool, &oo);
	assert_int_equal(rc, CV_E_INVALID);
	assert_true(oo.count <= 100);
	cv_pool_release(&pool);
}

static void test_speed(void **state)
{
	static const char text[] =
		"{\"resourceType\":\"Patient\",\"id\":\"example\",\"meta\":{\"lastUpdated\":\"2020-01-01T00:00:00Z\"},"
		"\"text\":{\"status\":\"generated\",\"div\":\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">x</div>\"},"
		"\"identifier\":[{\"use\":\"usual\",\"system\":\"urn:oid:1.2.36.146.595.217.0.1\",\"value\":\"12345\"}],"
		"\"active\":true,\"name\":[{\"use\":\"official\",\"family\":\"Chalmers\",\"given\":[\"Peter\",\"James\"]}],"
		"\"telecom\":[{\"system\":\"phone\",\"value\":\"(03) 5555 6473\",\"use\":\"work\",\"rank\":1}],"
		"\"gender\":\"male\",\"birthDate\":\"1974-12-25\",\"_birthDate\":{\"extension\":[{\"url\":"
		"\"http://hl7.org/fhir/StructureDefinition/patient-birthTime\",\"valueDateTime\":\"1974-12-25T14:35:45-05:00\"}]},"
		"\"address\":[{\"use\":\"home\",\"line\":[\"534 Erewhon St\"],\"city\":\"PleasantVille\",\"postalCode\":\"3999\"}]}";
	json_object *obj = parse(text, strlen(text));
	cv_pool_t pool;
	cv_outcome_t oo;
	struct timespec a, b;
	double us;
	const int rounds = 2000;

	assert_non_null(obj);
	cv_pool_init(&pool, 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < rounds; i++) {
		cv_outcome_init(&oo, &pool, 0);
		assert_int_equal(cv_model_validate(model, obj, &oo), CV_OK);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	us = ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) / rounds;
	print_message("validating a small Patient: %.2f us\n", us);
	assert_true(us < 1000.0);
	cv_pool_release(&pool);
	json_object_put(obj);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_resource_names),
		cmocka_unit_test(test_examples),
		cmocka_unit_test(test_valid_cases),
		cmocka_unit_test(test_unknown_resource_type),
		cmocka_unit_test(test_unknown_element),
		cmocka_unit_test(test_required),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_choice),
		cmocka_unit_test(test_binding),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_json_types),
		cmocka_unit_test(test_contained),
		cmocka_unit_test(test_extensions),
		cmocka_unit_test(test_primitive_extensions),
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_not_object),
		cmocka_unit_test(test_cap),
		cmocka_unit_test(test_speed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
