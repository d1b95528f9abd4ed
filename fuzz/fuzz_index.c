/*
 * fuzz_index.c - search-index extraction over hostile resources: any JSON
 * object with a known resourceType goes through every search parameter's
 * FHIRPath expression and the value-to-key rules, in both modes. Nothing may
 * crash, leak or read out of bounds, and every entry is well formed.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/json.h"
#include "model/searchparam.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cv_model_t *model;
static cv_sp_registry_t *reg;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	if (!model && (cv_model_new(&model) || cv_sp_registry_new(model, &reg, NULL, err, sizeof err)))
		abort();
	if (size > (256u << 10))
		return 0;
	cv_pool_t pool;
	cv_pool_init(&pool, 64u << 20);
	json_object *obj = NULL;
	const char *perr;
	if (cv_json_parse((const char *)data, size, NULL, &pool, &obj, &perr) == CV_OK &&
	    json_object_is_type(obj, json_type_object)) {
		json_object *rt;
		if (json_object_object_get_ex(obj, "resourceType", &rt) && json_object_is_type(rt, json_type_string) &&
		    cv_model_is_resource(model, json_object_get_string(rt))) {
			for (int mode = 0; mode < 2; mode++) {
				cv_sp_entries_t es = { .pool = &pool };
				cv_rc rc = cv_sp_extract(reg, model, obj, mode ? CV_SP_MATCH : CV_SP_INDEX, &es);
				assert(rc == CV_OK || rc == CV_E_LIMIT || rc == CV_E_NOMEM);
				for (size_t i = 0; i < es.n; i++) {
					assert(es.v[i].param);
					assert(es.v[i].kind == CV_IX_DATE || es.v[i].key);
					if (es.v[i].kind != CV_IX_HASH)
						assert(es.v[i].lo <= es.v[i].hi || es.v[i].kind == CV_IX_NUM);
				}
			}
		}
	}
	json_object_put(obj);
	cv_pool_release(&pool);
	return 0;
}
