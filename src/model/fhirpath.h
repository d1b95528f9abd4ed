/*
 * fhirpath.h - a FHIRPath (N1, as FHIR R4 uses it) evaluator over json-c trees.
 *
 * Enough of FHIRPath for the expressions of the official R4 search
 * parameters and the invariants: paths with FHIR's JSON shape (choice
 * elements `value[x]` seen as `value`, primitives with their `_element`
 * siblings), indexers, `where`, `select`, `ofType`, `as`, `is`, `|` (union),
 * `first`, `last`, `exists`, `empty`, `not`, `count`, `resolve()` on
 * references, `extension(url)`, boolean logic, comparisons, equality,
 * string functions, literals (string, number, boolean, date, dateTime, time,
 * quantity) and the environment variables %resource, %context, %ucum.
 *
 * An expression is compiled once (cv_fhirpath_compile) into an immutable
 * tree that any number of threads may evaluate at the same time.
 * Evaluation is bounded (depth, items, steps): a hostile expression or
 * resource ends with CV_E_LIMIT, never with unbounded time or memory.
 * Messages name the problem and the offset in the expression only.
 */
#ifndef CV_MODEL_FHIRPATH_H
#define CV_MODEL_FHIRPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <json-c/json.h>

#include "core/pool.h"
#include "core/rc.h"
#include "model/model.h"

typedef struct cv_fhirpath cv_fhirpath_t;

/* What an item of a result collection holds. */
typedef enum {
	CV_FP_NODE,     /* a node of the input tree: `node` and its FHIR `type` */
	CV_FP_BOOLEAN,  /* a computed System.Boolean: `b` */
	CV_FP_INTEGER,  /* a computed System.Integer: `i` */
	CV_FP_DECIMAL,  /* a computed System.Decimal: `s` holds its text, `d` its value */
	CV_FP_STRING,   /* a computed System.String: `s` */
	CV_FP_DATE,     /* a computed System.Date: `s` holds its text */
	CV_FP_DATETIME, /* a computed System.DateTime: `s` holds its text */
	CV_FP_TIME,     /* a computed System.Time: `s` holds its text */
	CV_FP_QUANTITY, /* a computed System.Quantity: `d`/`s` value, `unit` */
} cv_fp_kind;

/* One item of a result collection. Strings point into the evaluation's pool
 * or into the input tree; both must outlive the item. */
typedef struct cv_fp_item {
	cv_fp_kind kind;
	json_object *node;  /* CV_FP_NODE: the value (object, string, number or boolean);
	                       for a primitive with only an `_element` sibling, that object */
	const char *type;   /* CV_FP_NODE: the FHIR type name of the node, from the model:
	                       "HumanName", "string", "dateTime", "Reference", "Patient",
	                       "BackboneElement" for inline elements; for a choice element the
	                       type its JSON key names (valueQuantity: "Quantity") */
	bool b;
	int64_t i;
	double d;
	const char *s;
	const char *unit;
	json_object *ext;             /* CV_FP_NODE primitive: its `_element` sibling (id, extension), or NULL */
	const cv_model_elem_t *elem;  /* CV_FP_NODE backbone element: its definition, for navigation */
	bool stub;                    /* resolve() without a resolver: node is the Reference, not the target */
} cv_fp_item_t;

/* A result collection, allocated in the evaluation's pool. */
typedef struct cv_fp_list {
	size_t n;
	cv_fp_item_t *v;
} cv_fp_list_t;

/* Resolves a reference for resolve(): given the Reference's `reference`
 * string, sets *out to the referenced resource (a tree that must outlive the
 * evaluation; NULL if unknown) and returns CV_OK. */
typedef cv_rc (*cv_fp_resolver_fn)(void *arg, const char *reference, json_object **out);

/* What an evaluation runs against. */
typedef struct cv_fp_env {
	const cv_model_t *model;     /* types of the nodes (required) */
	json_object *resource;       /* %resource and the input (a resource, with resourceType) */
	json_object *context;        /* %context; NULL means `resource` */
	const cv_fp_item_t *context_item; /* %context as an item of an earlier result (its type and
	                                     element known: a backbone element such as
	                                     Observation.component); overrides `context` */
	cv_fp_resolver_fn resolve;   /* NULL: resolve() yields, for a literal reference
	                                "Type/id" (relative, absolute or contained "#id"), an item
	                                whose type is Type and whose node is the Reference's
	                                contained resource if it is one, else the Reference
	                                itself (so `resolve() is Patient` works without a store) */
	void *resolve_arg;
} cv_fp_env_t;

/* Compiles expr. CV_E_INVALID with a message (and the offset) in err on a
 * syntax error or an unknown function; CV_E_NOMEM. Free with cv_fhirpath_free.
 * Also: CV_E_LIMIT for an expression nested deeper than 64 levels or longer
 * than 64 KiB; CV_E_UNSUPPORTED for a FHIRPath function this evaluator knows
 * but does not implement (memberOf, htmlChecks, elementDefinition, slice,
 * checkModifiers, ...). */
cv_rc cv_fhirpath_compile(const char *expr, cv_fhirpath_t **out, char *err, size_t errlen);

/* Frees a compiled expression (NULL is fine). */
void cv_fhirpath_free(cv_fhirpath_t *e);

/* Evaluates e against env->resource. The result collection and everything it
 * points to (except nodes of the input tree) is allocated in pool.
 * Bounds: evaluation depth 200, 100000 items per collection, 2000000 steps,
 * 32 MiB of collections; over one, CV_E_LIMIT. A member name that no item's
 * type defines (`name.given1`) is CV_E_INVALID, not an empty result.
 * CV_E_INVALID with a message in err for a run-time type error (for example
 * a comparison of a collection of several items), CV_E_LIMIT when a bound
 * was hit, CV_E_NOMEM. */
cv_rc cv_fhirpath_eval(const cv_fhirpath_t *e, const cv_fp_env_t *env, cv_pool_t *pool, cv_fp_list_t *out,
		       char *err, size_t errlen);

/* The System value of an item, for callers that index or compare results:
 * a CV_FP_NODE primitive (string, code, uri, date, dateTime, instant, time,
 * boolean, integer, decimal) or Quantity gives *out of the matching computed
 * kind (CV_FP_STRING, CV_FP_DATE, ..., with s/b/i/d/unit set; a decimal's s
 * is its exact source text); a computed item is copied. False for complex
 * nodes and for primitives with only an `_element` sibling. Strings point into
 * the input tree or pool, which must outlive *out. */
bool cv_fp_item_value(const cv_model_t *m, const cv_fp_item_t *it, cv_pool_t *pool, cv_fp_item_t *out);

#endif
