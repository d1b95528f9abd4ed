/*
 * fuzz_model.c - the resource validator: parses the input with json-c (depth
 * bounded), validates any object against the model, and must never crash,
 * leak or read out of bounds, whatever the tree looks like.
 */
#include <stdint.h>
#include <stdlib.h>

#include <json-c/json.h>

#include "core/pool.h"
#include "model/model.h"
#include "model/outcome.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cv_model_t *model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_tokener *tok;
	json_object *obj;
	cv_pool_t pool;
	cv_outcome_t oo;

	if (!model && cv_model_new(&model) != CV_OK)
		abort();
	if (size > (1u << 20))
		return 0;
	tok = json_tokener_new_ex(64);
	if (!tok)
		return 0;
	obj = json_tokener_parse_ex(tok, (const char *)data, (int)size);
	if (obj && json_tokener_get_error(tok) == json_tokener_success &&
	    json_object_is_type(obj, json_type_object)) {
		cv_pool_init(&pool, 4u << 20);
		cv_outcome_init(&oo, &pool, 0);
		cv_rc rc = cv_model_validate(model, obj, &oo);
		if (rc != CV_OK && rc != CV_E_INVALID && rc != CV_E_NOMEM)
			abort();
		if ((rc == CV_OK) != (cv_outcome_errors(&oo) == 0) && !oo.truncated && rc != CV_E_NOMEM)
			abort();
		cv_pool_release(&pool);
	}
	json_object_put(obj);
	json_tokener_free(tok);
	return 0;
}
