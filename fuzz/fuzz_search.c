/*
 * fuzz_search.c - search parameters: a form-encoded query (as a POST _search
 * body or a conditional request carries it) is decoded and planned for one of
 * a few resource types, and every clause of a plan is checked against a fixed
 * resource. Nothing may crash, leak or read out of bounds; a plan that parses
 * has clauses whose index terms and checks are consistent.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/search.h"
#include "model/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cv_model_t *model;
static cv_sp_registry_t *reg;
static json_object *patient, *observation;

static const char *const types[] = { "Patient", "Observation", "Encounter", "Condition", "MedicationRequest",
				     "ValueSet" };

static const char PATIENT[] = "{\"resourceType\":\"Patient\",\"id\":\"p\",\"name\":[{\"family\":\"Zoë\","
			      "\"given\":[\"Ada\"]}],\"birthDate\":\"1974-12-25\",\"gender\":\"female\","
			      "\"identifier\":[{\"system\":\"urn:s\",\"value\":\"1\"}]}";
static const char OBSERVATION[] = "{\"resourceType\":\"Observation\",\"id\":\"o\",\"status\":\"final\","
				  "\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8480-6\"}]},"
				  "\"subject\":{\"reference\":\"Patient/p\"},\"effectiveDateTime\":\"2020-01-02\","
				  "\"valueQuantity\":{\"value\":120,\"system\":\"http://unitsofmeasure.org\","
				  "\"code\":\"mm[Hg]\"}}";

static void init(void)
{
	char err[256];
	if (cv_model_new(&model) || cv_sp_registry_new(model, &reg, NULL, err, sizeof err))
		abort();
	patient = json_tokener_parse(PATIENT);
	observation = json_tokener_parse(OBSERVATION);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!model)
		init();
	if (size < 1 || size > 16384)
		return 0;
	const char *type = types[data[0] % (sizeof types / sizeof types[0])];
	cv_pool_t pool;
	cv_pool_init(&pool, 16u << 20);
	cv_param_t params[64];
	size_t n = 0;
	if (cv_search_form_decode((const char *)data + 1, size - 1, &pool, params, 64, &n) == CV_OK) {
		for (size_t i = 0; i < n; i++)
			assert(params[i].name && params[i].value);
		cv_outcome_t oo;
		cv_outcome_init(&oo, &pool, 16);
		cv_search_plan_t *plan = cv_pool_alloc(&pool, sizeof *plan);
		cv_search_limits_t lim = { .default_count = 50, .max_count = 1000 };
		cv_rc rc = cv_search_parse(reg, model, type, params, n, "https://localhost/fhir", data[0] & 0x80, &lim,
					   &pool, plan, &oo);
		assert(rc == CV_OK || rc == CV_E_INVALID || rc == CV_E_UNSUPPORTED || rc == CV_E_NOMEM);
		if (rc != CV_OK)
			assert(oo.count > 0 || rc == CV_E_NOMEM);
		for (size_t i = 0; rc == CV_OK && i < plan->n; i++) {
			const cv_search_clause_t *c = &plan->clauses[i];
			assert(c->chain || c->sql.n > 0 || !c->use_sql);
			(void)cv_search_check(c, model, strcmp(type, "Patient") == 0 ? patient : observation, &pool);
		}
	}
	cv_pool_release(&pool);
	return 0;
}
