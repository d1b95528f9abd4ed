/*
 * search.h - FHIR search: from request parameters to a plan, and the plan's
 * execution over the store's blind index (private to fhir/, and its fuzz target).
 *
 * cv_search_parse() is pure: it reads the parameters of a search on one
 * resource type and builds a plan (clauses ANDed, each an OR of values), the
 * result parameters (_count, _sort, _include, ...) and, for what the index
 * answers only approximately (long prefixes, :contains, birth-date ranges,
 * composites), the checks to run on each opened candidate. Chained and
 * reverse-chained (_has) parameters become sub-plans, resolved when the plan
 * runs. Problems go into an OperationOutcome: with `lenient` an unknown
 * parameter is ignored and reported there; otherwise it makes the search fail.
 */
#ifndef CV_FHIR_SEARCH_H
#define CV_FHIR_SEARCH_H

#include <stdbool.h>
#include <stddef.h>

#include "core/exchange.h"
#include "model/outcome.h"
#include "model/searchparam.h"
#include "policy/policy.h"
#include "store/store.h"

#define CV_SEARCH_VALUES_MAX 64    /* comma-separated values of one parameter */
#define CV_SEARCH_CLAUSES_MAX 64   /* parameters of one search */
#define CV_SEARCH_INCLUDES_MAX 16  /* _include and _revinclude parameters */
#define CV_SEARCH_CHAIN_MAX 500    /* resources a chained or _has parameter may match */

/* An in-memory check of one value against a candidate's entries. */
typedef enum {
	CV_MT_HASH,      /* an entry with exactly this key */
	CV_MT_FPREFIX,   /* an "f:" entry starting with key (long string prefixes) */
	CV_MT_FCONTAINS, /* an "f:" entry containing key */
	CV_MT_TFPREFIX,  /* a "tf:" entry starting with key (long :text values) */
	CV_MT_DATE,      /* a DATE entry comparing to [lo, hi] by cmp */
	CV_MT_NUM,       /* a NUM entry (of unit, if set) comparing to [nlo, nhi] by cmp */
} cv_mt_kind;

typedef struct cv_mterm {
	cv_mt_kind kind;
	const char *key;
	size_t key_len;
	cv_cmp cmp;
	int64_t lo, hi;
	double nlo, nhi;
	const char *unit;
} cv_mterm_t;

/* One value of a composite parameter: a check per component. */
typedef struct cv_mcomposite {
	size_t n;
	cv_mterm_t *parts; /* parts[k] checks component k */
} cv_mcomposite_t;

struct cv_search_plan;

/* A chained parameter (subject:Patient.name=x) or a reverse chain
 * (_has:Observation:patient:code=x), resolved into ids at run time. */
typedef struct cv_search_chain {
	bool reverse;                 /* _has */
	const char *target;           /* the type searched by the inner plan */
	const cv_sp_t *link;          /* reverse: the inner type's reference parameter */
	struct cv_search_plan *inner; /* the search on `target` */
	struct cv_search_chain *next; /* forward chains without a type: the next target type */
} cv_search_chain_t;

typedef struct cv_search_clause {
	const char *name;             /* the parameter as written, for messages */
	const cv_sp_t *sp;            /* NULL for _id, _lastUpdated and _has */
	bool negate;                  /* :not, :missing=true, ne (via terms) */
	cv_store_clause_t sql;        /* what the index can check (superset when `check`) */
	bool use_sql;                 /* sql is usable (false: only the check filters) */
	bool check;                   /* candidates must pass the in-memory check */
	size_t nm;                    /* check: alternatives (ORed) */
	cv_mterm_t *m;
	cv_mcomposite_t *mc;          /* composite: nm alternatives */
	cv_search_chain_t *chain;     /* chained / _has: resolved at run time */
} cv_search_clause_t;

typedef struct cv_search_include {
	bool rev;                     /* _revinclude */
	bool iterate;                 /* :iterate */
	const char *source;           /* the type holding the reference */
	const cv_sp_t *sp;            /* its reference parameter (NULL: all of them, "*") */
	const char *target;           /* only references to this type, or NULL */
} cv_search_include_t;

typedef enum { CV_SUMMARY_NONE, CV_SUMMARY_COUNT, CV_SUMMARY_TRUE, CV_SUMMARY_TEXT, CV_SUMMARY_DATA,
	       CV_SUMMARY_FALSE } cv_summary;
typedef enum { CV_TOTAL_DEFAULT, CV_TOTAL_NONE, CV_TOTAL_ESTIMATE, CV_TOTAL_ACCURATE } cv_total;

/* A sort key the index cannot order (string, token, reference, uri and
 * birth-date values are blinded): sorted in memory over the opened matches. */
typedef struct cv_search_msort {
	const cv_sp_t *sp;            /* NULL for _lastUpdated */
	bool desc;
} cv_search_msort_t;

#define CV_SEARCH_MSORT_MAX 5000  /* most matches sorted in memory */

typedef struct cv_search_plan {
	const char *type;
	size_t n;
	cv_search_clause_t clauses[CV_SEARCH_CLAUSES_MAX];
	unsigned count;               /* page size */
	size_t nsort;
	cv_store_sort_t sort[CV_STORE_SORT_MAX];
	size_t nmsort;                /* when set, all the sort keys are here and nsort is 0 */
	cv_search_msort_t msort[CV_STORE_SORT_MAX];
	size_t ninc;
	cv_search_include_t inc[CV_SEARCH_INCLUDES_MAX];
	cv_summary summary;
	cv_total total;
	size_t nelements;             /* _elements */
	const char **elements;
	const char *cursor;           /* _cursor (a sealed token), or NULL */
	int64_t as_of_seq;            /* _lastUpdated sorts: the snapshot the walk started with */
	const char *path;             /* links: the path after the base, when not the type ("Patient/1/$everything") */
	cv_buf_t canonical;           /* the parameters that shape results, re-encoded (self link, cursor binding) */
	cv_access_t *access;          /* what the caller may see (NULL: everything); set after parsing */
} cv_search_plan_t;

typedef struct cv_search_limits {
	unsigned default_count;       /* _count when absent */
	unsigned max_count;           /* _count above this is cut to it */
} cv_search_limits_t;

/* Builds the plan for a search on `type` from n parameters. base_url is the
 * server's FHIR base (absolute references to it are local). CV_E_INVALID when
 * a parameter is unknown (and not lenient) or malformed: oo says which and why.
 * CV_E_UNSUPPORTED for a modifier or parameter this server does not handle.
 * Everything is allocated in pool. */
cv_rc cv_search_parse(const cv_sp_registry_t *reg, const cv_model_t *m, const char *type, const cv_param_t *params,
		      size_t n, const char *base_url, bool lenient, const cv_search_limits_t *lim, cv_pool_t *pool,
		      cv_search_plan_t *plan, cv_outcome_t *oo);

/* Decodes an application/x-www-form-urlencoded body into at most max
 * parameters (names and values percent-decoded, '+' as space) in pool.
 * CV_E_INVALID for bad escapes, NULs or invalid UTF-8; CV_E_LIMIT past max. */
cv_rc cv_search_form_decode(const char *body, size_t len, cv_pool_t *pool, cv_param_t *out, size_t max, size_t *n);

/* True if the candidate (opened, parsed) passes clause c's in-memory check. */
bool cv_search_check(const cv_search_clause_t *c, const cv_model_t *m, json_object *res, cv_pool_t *pool);

#endif
