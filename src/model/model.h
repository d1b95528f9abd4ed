/*
 * model.h - FHIR R4 (4.0.1) definitions and resource validation.
 *
 * The definitions (every resource, complex and primitive type of the base
 * spec, and the codes of the value sets bound with strength "required") are
 * generated from the official StructureDefinitions by tools/gen-model and
 * compiled into the binary; cv_model_new() builds lookup tables from them.
 * A model is immutable after creation and may be shared by all threads.
 */
#ifndef CV_MODEL_MODEL_H
#define CV_MODEL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#include "core/pool.h"
#include "core/rc.h"
#include "model/outcome.h"

typedef struct cv_model cv_model_t;

/* Loads the compiled-in definitions. CV_E_NOMEM / CV_E_INTERNAL on failure. */
cv_rc cv_model_new(cv_model_t **out);

/* Frees the model (NULL is fine). */
void cv_model_free(cv_model_t *m);

/* True if type names a concrete (non-abstract) resource type, such as "Patient". */
bool cv_model_is_resource(const cv_model_t *m, const char *type);

/* The concrete resource types, sorted by name: count, and the i-th name. */
size_t cv_model_resource_count(const cv_model_t *m);
const char *cv_model_resource_name(const cv_model_t *m, size_t i);

/*
 * Validates a resource (a JSON object with "resourceType") against the base
 * definitions: resource type, unknown elements, cardinality (min and max, arrays
 * vs single values), primitive formats (id, date, dateTime, instant, time,
 * decimal, integer ranges, uri, code, boolean, base64Binary, ...), choice types
 * (value[x]), required bindings, contained resources, extensions, the
 * primitive `_element` siblings, and the rule that no element is empty
 * ({}, [], "" and null are errors).
 * Returns CV_OK when valid, CV_E_INVALID with one issue per problem added to oo
 * (expression such as "Patient.name[0].given[1]"), CV_E_NOMEM on exhaustion.
 */
cv_rc cv_model_validate(const cv_model_t *m, json_object *resource, cv_outcome_t *oo);

#endif
