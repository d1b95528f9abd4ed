/*
 * searchparam.h - the FHIR R4 search parameters and the index entries they
 * give a resource.
 *
 * The registry holds every official R4 search parameter (generated from the
 * spec by tools/gen-search.py, embedded in the binary) with its FHIRPath
 * expression compiled, per base resource type, and the patient compartment.
 * It is immutable after creation and shared by all threads.
 *
 * Extraction evaluates a resource's parameters and turns each value into
 * index entries (core/ixentry.h) whose keys are normalised text:
 *   string     "p:" folded prefixes (of cv_sp_prefix_lengths characters),
 *              "e:" exact text, "g:" folded trigrams (for :contains)
 *   token      "c:" code, "sc:" system|code, "s:" system|, "n:" code without
 *              system, "t:" folded prefixes of the text/display (for :text),
 *              "ot:" type-system|type-code|value (identifiers, for :of-type)
 *   reference  "r:" Type/id, "i:" id, "u:" absolute URL or canonical,
 *              "id:" system|value and "idn:" value of Reference.identifier
 *   uri        "u:" the URI, "ub:" its path prefixes (for :below)
 *   date       a DATE range; for identifying dates (birth dates) instead the
 *              HASH keys "y:" year, "ym:" year-month, "d:" full date, so the
 *              date is never stored in the clear
 *   number, quantity  a NUM range with units ("" any, "c|code", "s|system|code")
 *   composite  nothing: a composite search narrows through its first
 *              component's own parameter, then checks each candidate
 *   every parameter with a value: "m:" (for :missing)
 * The store blinds HASH keys before anything is written. In match mode (to
 * check a search on an opened resource) extraction adds what the index does
 * not keep: "f:" the whole folded string, "tf:" whole folded text, and the
 * DATE ranges of identifying dates.
 */
#ifndef CV_MODEL_SEARCHPARAM_H
#define CV_MODEL_SEARCHPARAM_H

#include <stdbool.h>
#include <stddef.h>
#include <json-c/json.h>

#include "core/ixentry.h"
#include "core/pool.h"
#include "core/rc.h"
#include "model/fhirpath.h"
#include "model/model.h"

#define CV_SP_PREFIX_MAX 32   /* longest folded prefix indexed, in characters */

/* The prefix lengths indexed (in characters): a search value of another
 * length uses the longest indexed prefix shorter than it, and the candidates
 * are checked against the whole value. */
extern const unsigned cv_sp_prefix_lengths[];
extern const size_t cv_sp_prefix_count;

/* The longest indexed prefix length <= n (0 if none). */
size_t cv_sp_prefix_cut(size_t n);
#define CV_SP_TRIGRAM_MAX 256 /* strings longer than this (folded, in bytes) get no trigrams */

typedef enum {
	CV_SP_NUMBER,
	CV_SP_DATE,
	CV_SP_STRING,
	CV_SP_TOKEN,
	CV_SP_REFERENCE,
	CV_SP_COMPOSITE,
	CV_SP_QUANTITY,
	CV_SP_URI,
	CV_SP_SPECIAL,
} cv_sp_type;

typedef struct cv_sp_component {
	const char *code;           /* the component parameter's code */
	cv_sp_type type;            /* its type */
	const char *expr;           /* relative to the composite's value */
	cv_fhirpath_t *compiled;
} cv_sp_component_t;

typedef struct cv_sp {
	const char *code;           /* "name", "_tag" */
	const char *base;           /* the resource type it applies to ("Resource" for all) */
	cv_sp_type type;
	const char *expr;           /* its FHIRPath expression for this base */
	cv_fhirpath_t *compiled;    /* NULL if the expression did not compile */
	size_t ntargets;            /* reference: the target types */
	const char **targets;
	size_t ncomp;               /* composite: the components */
	cv_sp_component_t *comp;
	bool blind_date;            /* date kept only as blinded year / month / day */
} cv_sp_t;

typedef struct cv_sp_registry cv_sp_registry_t;

/* Loads the embedded parameters and compiles their expressions. A parameter
 * whose expression does not compile is kept with compiled = NULL and counted
 * in *failed (if not NULL). CV_E_NOMEM / CV_E_INTERNAL with a message in err. */
cv_rc cv_sp_registry_new(const cv_model_t *m, cv_sp_registry_t **out, size_t *failed, char *err, size_t errlen);

/* Frees the registry (NULL is fine). */
void cv_sp_registry_free(cv_sp_registry_t *r);

/* The parameter `code` of resource type `type` (its own, or one every
 * resource has), or NULL. */
const cv_sp_t *cv_sp_find(const cv_sp_registry_t *r, const char *type, const char *code);

/* The parameters of `type`, its own then the ones every resource has: count, and the i-th. */
size_t cv_sp_count(const cv_sp_registry_t *r, const char *type);
const cv_sp_t *cv_sp_at(const cv_sp_registry_t *r, const char *type, size_t i);

/* Total parameters (all bases), and how many failed to compile. */
size_t cv_sp_total(const cv_sp_registry_t *r);

/* The parameters that put a resource of `type` in a patient's compartment
 * (CompartmentDefinition-patient): count, and the codes. 0 if none. */
size_t cv_sp_compartment(const cv_sp_registry_t *r, const char *type, const char *const **codes);

/* True if the top-level element `element` of `type` is in its summary
 * (isSummary or mandatory in the definition), for _summary=true. A choice
 * element is named without its type suffix ("deceased"). */
bool cv_sp_in_summary(const cv_sp_registry_t *r, const char *type, const char *element);

typedef enum { CV_SP_INDEX, CV_SP_MATCH } cv_sp_mode;

/* A growable list of index entries in a pool. */
typedef struct cv_sp_entries {
	cv_ix_entry_t *v;
	size_t n, cap;
	cv_pool_t *pool;
} cv_sp_entries_t;

/* Appends the entries of every parameter of the resource (type given by its
 * resourceType) to out. Parameters whose expression fails at run time on this
 * resource are skipped. CV_E_LIMIT past a bound on entries; CV_E_NOMEM. */
cv_rc cv_sp_extract(const cv_sp_registry_t *r, const cv_model_t *m, json_object *resource, cv_sp_mode mode,
		    cv_sp_entries_t *out);

/* Appends the entries of one parameter of the resource to out. */
cv_rc cv_sp_extract_one(const cv_sp_t *sp, const cv_model_t *m, json_object *resource, cv_sp_mode mode,
			cv_sp_entries_t *out);

/* Appends the entries that value `item` (a result of sp's expression, or of a
 * composite component's) gives under `code`, typed as `as` (sp's type). */
cv_rc cv_sp_entries_of(const cv_fp_item_t *item, const char *code, cv_sp_type as, bool blind_date,
		       cv_sp_mode mode, cv_sp_entries_t *out);

/* Token-style keys and string folding used by both sides of a search. */
cv_rc cv_sp_key(cv_sp_entries_t *out, const char *code, const char *prefix, const char *a, const char *sep,
		const char *b);

#endif
