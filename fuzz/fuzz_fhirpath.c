/*
 * fuzz_fhirpath.c - the FHIRPath compiler and evaluator: compiles the input
 * bytes as an expression and evaluates every one that compiles against a
 * fixed small Patient (choice elements, `_element` siblings, contained
 * resources, references). Must never crash, leak, read out of bounds or run
 * unbounded: each evaluation ends with a result, an error, or CV_E_LIMIT.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "core/pool.h"
#include "model/fhirpath.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char patient[] =
	"{\"resourceType\":\"Patient\",\"id\":\"p1\",\"active\":true,"
	"\"extension\":[{\"url\":\"http://example.org/race\",\"valueCode\":\"2106-3\"}],"
	"\"identifier\":[{\"system\":\"urn:s\",\"value\":\"A1\"}],"
	"\"name\":[{\"use\":\"official\",\"family\":\"Doe\",\"given\":[\"Jon\",\"Q\"],"
	"\"_given\":[null,{\"extension\":[{\"url\":\"http://example.org/abbr\",\"valueString\":\"s\"}]}]}],"
	"\"telecom\":[{\"system\":\"phone\",\"value\":\"555\",\"use\":\"home\"}],"
	"\"birthDate\":\"1970-03-04\",\"_birthDate\":{\"extension\":[{\"url\":\"http://example.org/bt\","
	"\"valueDateTime\":\"1970-03-04T10:00:00Z\"}]},"
	"\"deceasedBoolean\":false,\"multipleBirthInteger\":2,"
	"\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"org\",\"name\":\"Clinic\"}],"
	"\"generalPractitioner\":[{\"reference\":\"Practitioner/pr1\"},{\"reference\":\"#org\"}],"
	"\"contact\":[{\"name\":{\"family\":\"Roe\"},\"period\":{\"start\":\"2001-01-01\"}}]}";

static cv_model_t *model;
static json_object *resource;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *expr;
	char err[256];
	cv_fhirpath_t *e = NULL;
	cv_rc rc;

	if (!model) {
		if (cv_model_new(&model) != CV_OK)
			abort();
		resource = json_tokener_parse(patient);
		if (!resource)
			abort();
	}
	if (size > 4096)
		return 0;
	expr = malloc(size + 1);
	if (!expr)
		return 0;
	memcpy(expr, data, size);
	expr[size] = '\0';
	rc = cv_fhirpath_compile(expr, &e, err, sizeof(err));
	if (rc == CV_OK) {
		cv_pool_t pool;
		cv_fp_env_t env = {.model = model, .resource = resource};
		cv_fp_list_t out;

		cv_pool_init(&pool, 64u << 20);
		rc = cv_fhirpath_eval(e, &env, &pool, &out, err, sizeof(err));
		if (rc != CV_OK && rc != CV_E_INVALID && rc != CV_E_LIMIT && rc != CV_E_NOMEM)
			abort();
		if (rc == CV_OK && out.n && !out.v)
			abort();
		cv_pool_release(&pool);
	} else if (rc != CV_E_INVALID && rc != CV_E_UNSUPPORTED && rc != CV_E_LIMIT && rc != CV_E_NOMEM) {
		abort();
	}
	if ((rc == CV_OK) != (e != NULL) && rc != CV_E_INVALID && rc != CV_E_LIMIT && rc != CV_E_NOMEM)
		abort();
	cv_fhirpath_free(e);
	free(expr);
	return 0;
}
