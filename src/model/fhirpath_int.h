/*
 * fhirpath_int.h - what the FHIRPath parser (fhirpath_parse.c), evaluator
 * (fhirpath_eval.c) and function library (fhirpath_fn.c) share: the syntax
 * tree, the evaluation context and the collection helpers. Not a public API.
 */
#ifndef CV_MODEL_FHIRPATH_INT_H
#define CV_MODEL_FHIRPATH_INT_H

#include "model/fhirpath.h"

#define FP_MAX_EXPR (64u * 1024u)      /* longest expression text */
#define FP_MAX_AST_DEPTH 64            /* deepest syntax nesting */
#define FP_MAX_EVAL_DEPTH 200          /* deepest evaluation recursion */
#define FP_MAX_ITEMS 100000            /* most items in one collection */
#define FP_MAX_STEPS 2000000           /* most evaluation steps (nodes + items visited) */
#define FP_MAX_BYTES (32u * 1024u * 1024u) /* most bytes of collections per evaluation */
#define FP_MAX_ARGS 4                  /* most arguments of a function */

typedef enum {
	N_LITERAL, /* lit */
	N_EMPTY,   /* {} */
	N_MEMBER,  /* left.name, or name applied to the focus when left is NULL */
	N_FUNC,    /* left.name(args), or name(args) on the focus */
	N_INDEX,   /* left[args[0]] */
	N_BINARY,  /* left op right */
	N_UNARY,   /* op left ('-' or '+') */
	N_TYPEOP,  /* left is/as tname */
	N_VAR,     /* %name */
	N_THIS,    /* $this */
	N_IDX,     /* $index */
	N_TOTAL,   /* $total */
} fp_nkind;

typedef enum {
	OP_NONE,
	OP_IMPLIES, OP_OR, OP_XOR, OP_AND, OP_IN, OP_CONTAINS,
	OP_EQ, OP_NE, OP_EQUIV, OP_NEQUIV,
	OP_LT, OP_GT, OP_LE, OP_GE,
	OP_UNION, OP_IS, OP_AS,
	OP_PLUS, OP_MINUS, OP_CONCAT,
	OP_MUL, OP_DIV, OP_IDIV, OP_MOD,
} fp_op;

typedef struct fp_ev fp_ev_t;
typedef struct fp_node fp_node_t;
typedef struct fp_coll fp_coll_t;

/* A function of the library: evaluates call against in (the collection on
 * its left); focus is the call site's focus, for its non-lambda arguments. */
typedef cv_rc (*fp_fn_impl)(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			    fp_coll_t *out);

typedef struct fp_fn {
	const char *name;
	unsigned char min, max; /* argument count */
	bool type_arg;          /* the argument is a type specifier (ofType, as, is) */
	fp_fn_impl impl;        /* NULL: known but not implemented (CV_E_UNSUPPORTED) */
} fp_fn_t;

struct fp_node {
	fp_nkind kind;
	fp_op op;
	size_t off;            /* offset in the expression, for messages */
	const char *name;      /* member, function or variable name */
	const char *tname;     /* type specifier of is/as/ofType ("Patient", "System.String") */
	const fp_fn_t *fn;     /* N_FUNC */
	fp_node_t *left;
	fp_node_t *right;
	size_t nargs;
	fp_node_t *args[FP_MAX_ARGS];
	cv_fp_item_t lit;      /* N_LITERAL */
};

struct cv_fhirpath {
	cv_pool_t pool;        /* the tree and its strings */
	fp_node_t *root;
};

/* A collection being built: n items of cap in v (pool memory). */
struct fp_coll {
	size_t n, cap;
	cv_fp_item_t *v;
};

struct fp_ev {
	const cv_fp_env_t *env;
	cv_pool_t *pool;
	char *err;
	size_t errlen;
	size_t steps;
	size_t bytes;            /* taken by collections so far */
	unsigned depth;
	int64_t index;          /* $index */
	const fp_coll_t *total; /* $total (aggregate) */
	cv_fp_item_t resource;  /* %resource */
	cv_fp_item_t context;   /* %context */
};

/* The library function called name, or NULL. */
const fp_fn_t *fp_fn_find(const char *name);

/* Evaluates n with focus as its input collection. */
cv_rc fp_eval(fp_ev_t *ev, const fp_node_t *n, const fp_coll_t *focus, fp_coll_t *out);

/* Records a message in ev->err and returns rc. */
cv_rc fp_fail(fp_ev_t *ev, cv_rc rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Appends it to c (CV_E_LIMIT past FP_MAX_ITEMS). */
cv_rc fp_push(fp_ev_t *ev, fp_coll_t *c, const cv_fp_item_t *it);
cv_rc fp_push_bool(fp_ev_t *ev, fp_coll_t *c, bool b);
cv_rc fp_push_int(fp_ev_t *ev, fp_coll_t *c, int64_t i);
cv_rc fp_push_str(fp_ev_t *ev, fp_coll_t *c, const char *s);
cv_rc fp_push_dec(fp_ev_t *ev, fp_coll_t *c, double d);

/* Counts one step of work (CV_E_LIMIT past FP_MAX_STEPS). */
cv_rc fp_step(fp_ev_t *ev);

/* The system value of a primitive node (boolean, integer, decimal, string,
 * date, dateTime, time, quantity); false if it has none (complex, no value). */
bool fp_sysval(fp_ev_t *ev, const cv_fp_item_t *in, cv_fp_item_t *out);

/* Children of an item: of element name (NULL: all children). */
cv_rc fp_children(fp_ev_t *ev, const cv_fp_item_t *it, const char *name, fp_coll_t *out);

/* True if the item's type defines element name (or the item is not a
 * typed complex node, whose elements cannot be known). */
bool fp_knows(fp_ev_t *ev, const cv_fp_item_t *it, const char *name);

/* True if tname names a FHIR or System type. */
bool fp_type_known(fp_ev_t *ev, const char *tname);

/* Like fp_is_type, but a FHIR primitive matches its own type only (as, ofType). */
bool fp_is_exactly(fp_ev_t *ev, const cv_fp_item_t *it, const char *tname);

/* True if it is of type tname (derived types count). */
bool fp_is_type(fp_ev_t *ev, const cv_fp_item_t *it, const char *tname);

/* Equality (=) of two items: 1 true, 0 false, -1 empty (not comparable). */
int fp_item_eq(fp_ev_t *ev, const cv_fp_item_t *a, const cv_fp_item_t *b);

/* Equivalence (~) of two items. */
bool fp_item_equiv(fp_ev_t *ev, const cv_fp_item_t *a, const cv_fp_item_t *b);

/* Singleton evaluation of a collection as a boolean: 1, 0, -1 (empty);
 * CV_E_INVALID for several items. */
cv_rc fp_truth(fp_ev_t *ev, const fp_coll_t *c, int *out);

/* Number text for a double (shortest that round-trips, in the pool). */
const char *fp_dec_text(fp_ev_t *ev, double d);

/* Date/time: compares a and b (same kind family): -1, 0, 1, or 2 when the
 * precisions differ so that the answer is unknown. */
int fp_dt_cmp(const char *a, const char *b, bool time_only);

/* Digits of precision of a date/dateTime/time text (4 for "2014"), -1 if invalid. */
int fp_dt_precision(const char *s, bool time_only);

/* The lowest (highest) date/time s may stand for, at digits of precision
 * (4, 6, 8, 10, 12, 14, 17; time 2, 4, 6, 9), in the pool; NULL if none. */
const char *fp_dt_boundary(fp_ev_t *ev, const char *s, bool time_only, int digits, bool high);

/* True if quantities a and b have units of one dimension. */
bool fp_qty_comparable(const cv_fp_item_t *a, const cv_fp_item_t *b);

#endif
