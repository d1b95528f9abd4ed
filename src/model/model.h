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

/* ---- navigation, for FHIRPath ----------------------------------------------
 * An element definition of a type (or of a backbone element inside one).
 * Positions are (type, parent): parent NULL means the elements of the named
 * type; a backbone element (cv_model_elem_is_backbone) is itself a parent.
 * Pointers are into the model and live as long as it. Lookups are cheap
 * (binary search) and never allocate; NULL/0/false when unknown. */
typedef struct cv_model_elem cv_model_elem_t;

/* The element called name (without "[x]": "value") of type, or of parent
 * when parent is not NULL. */
const cv_model_elem_t *cv_model_elem(const cv_model_t *m, const char *type, const cv_model_elem_t *parent,
				     const char *name);

/* The element a JSON key names: "valueQuantity" finds the choice element
 * "value" and sets *choice_type to "Quantity" (NULL for a plain element);
 * choice_type must not be NULL. A choice element is not found by its bare
 * name here ("value" is no JSON key): use cv_model_elem for that. */
const cv_model_elem_t *cv_model_elem_by_key(const cv_model_t *m, const char *type, const cv_model_elem_t *parent,
					    const char *key, const char **choice_type);

/* Its name without "[x]". */
const char *cv_model_elem_name(const cv_model_elem_t *e);

/* True for a choice element: its JSON key is the name + a type suffix. */
bool cv_model_elem_is_choice(const cv_model_elem_t *e);

/* True if it may hold more than one value (max > 1 or "*"). */
bool cv_model_elem_repeats(const cv_model_elem_t *e);

/* Its declared types: count and the i-th name ("HumanName", "string",
 * "BackboneElement" for an inline element). For a contentReference, the
 * target's types and children. */
size_t cv_model_elem_type_count(const cv_model_elem_t *e);
const char *cv_model_elem_type(const cv_model_elem_t *e, size_t i);

/* True if it has inline children (backbone element or contentReference). */
bool cv_model_elem_is_backbone(const cv_model_elem_t *e);

/* The children at a position (type's elements, or parent's): count and i-th. */
size_t cv_model_elem_child_count(const cv_model_t *m, const char *type, const cv_model_elem_t *parent);
const cv_model_elem_t *cv_model_elem_child(const cv_model_t *m, const char *type, const cv_model_elem_t *parent,
					   size_t i);

/* True if type names a type of the model (primitive, complex or resource,
 * abstract ones included: "Resource", "Element", "DomainResource"). */
bool cv_model_type_known(const cv_model_t *m, const char *type);

/* The model's own copy of a type's name (lives as long as the model), or NULL. */
const char *cv_model_type_name(const cv_model_t *m, const char *type);

/* The type type specialises ("Age": "Quantity", "Patient": "DomainResource"), or NULL. */
const char *cv_model_type_base(const cv_model_t *m, const char *type);

/* True for a primitive type ("string", "dateTime", ...). */
bool cv_model_type_is_primitive(const cv_model_t *m, const char *type);

/* True if type is ancestor or specialises it, directly or not. */
bool cv_model_type_derives(const cv_model_t *m, const char *type, const char *ancestor);

#endif
