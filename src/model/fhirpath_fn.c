/*
 * fhirpath_fn.c - the FHIRPath function library: existence, filtering and
 * projection, subsetting, combining, conversions, strings, math, tree
 * navigation, utility and the FHIR additions (resolve, extension, hasValue).
 * Each function gets the collection on its left and evaluates its own
 * arguments: lambdas (where, select, all, exists, repeat) per item with
 * $this and $index set, the others once against the call site's focus.
 */
#include "model/fhirpath_int.h"
#include "model/json.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FP_MAX_REGEX 256 /* longest regular expression accepted */
#define FP_MAX_REGEX_INPUT 65536u /* longest string a regular expression runs on */

/* ---- argument helpers ------------------------------------------------------ */

static cv_rc arg(fp_ev_t *ev, const fp_node_t *call, size_t i, const fp_coll_t *focus, fp_coll_t *out)
{
	out->n = 0;
	return fp_eval(ev, call->args[i], focus, out);
}

/* Evaluates a lambda argument against one item ($this = it, $index = i). */
static cv_rc lambda(fp_ev_t *ev, const fp_node_t *a, const cv_fp_item_t *it, size_t i, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t one = {.n = 1, .cap = 1, .v = (cv_fp_item_t *)it};
	int64_t saved = ev->index;

	out->n = 0;
	ev->index = (int64_t)i;
	rc = fp_eval(ev, a, &one, out);
	ev->index = saved;
	return rc;
}

/* The single system value of a collection; *have false if empty. */
static cv_rc one_value(fp_ev_t *ev, const fp_coll_t *c, const char *fn, cv_fp_item_t *v, bool *have)
{
	*have = false;
	if (c->n == 0)
		return CV_OK;
	if (c->n > 1)
		return fp_fail(ev, CV_E_INVALID, "%s() expects a single item, not %zu", fn, c->n);
	if (!fp_sysval(ev, &c->v[0], v)) {
		const cv_fp_item_t *it = &c->v[0];
		if (it->type && cv_model_type_is_primitive(ev->env->model, it->type))
			return CV_OK; /* a primitive with only extensions */
		return fp_fail(ev, CV_E_INVALID, "%s() expects a primitive value, not %s", fn, it->type ? it->type : "an object");
	}
	*have = true;
	return CV_OK;
}

static cv_rc str_arg(fp_ev_t *ev, const fp_node_t *call, size_t i, const fp_coll_t *focus, const char **s)
{
	cv_rc rc;
	fp_coll_t c = {0};
	cv_fp_item_t v;
	bool have;

	*s = NULL;
	rc = arg(ev, call, i, focus, &c);
	if (!rc)
		rc = one_value(ev, &c, call->fn->name, &v, &have);
	if (rc || !have)
		return rc;
	if (v.kind != CV_FP_STRING)
		return fp_fail(ev, CV_E_INVALID, "%s() expects a string argument", call->fn->name);
	*s = v.s;
	return CV_OK;
}

static cv_rc int_arg(fp_ev_t *ev, const fp_node_t *call, size_t i, const fp_coll_t *focus, int64_t *n, bool *have)
{
	cv_rc rc;
	fp_coll_t c = {0};
	cv_fp_item_t v;

	rc = arg(ev, call, i, focus, &c);
	if (!rc)
		rc = one_value(ev, &c, call->fn->name, &v, have);
	if (rc || !*have)
		return rc;
	if (v.kind != CV_FP_INTEGER)
		return fp_fail(ev, CV_E_INVALID, "%s() expects an integer argument", call->fn->name);
	*n = v.i;
	return CV_OK;
}

/* The input as a single string (for string functions); *s NULL if empty. */
static cv_rc in_str(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const char **s)
{
	cv_rc rc;
	cv_fp_item_t v;
	bool have;

	*s = NULL;
	rc = one_value(ev, in, call->fn->name, &v, &have);
	if (rc || !have)
		return rc;
	if (v.kind != CV_FP_STRING)
		return fp_fail(ev, CV_E_INVALID, "%s() expects a string", call->fn->name);
	*s = v.s;
	return CV_OK;
}

static cv_rc copy(fp_ev_t *ev, const fp_coll_t *in, size_t from, size_t to, fp_coll_t *out)
{
	cv_rc rc = CV_OK;

	for (size_t i = from; i < to && i < in->n && !rc; i++)
		rc = fp_push(ev, out, &in->v[i]);
	return rc;
}

/* True if c holds an item equal to it. Each comparison counts as a step:
 * callers check the bound with fp_step() in their loops. */
static bool coll_has(fp_ev_t *ev, const fp_coll_t *c, const cv_fp_item_t *it)
{
	ev->steps += c->n;
	for (size_t i = 0; i < c->n; i++) {
		if (fp_item_eq(ev, &c->v[i], it) == 1)
			return true;
	}
	return false;
}

/* ---- existence ---------------------------------------------------------------- */

static cv_rc fn_empty(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return fp_push_bool(ev, out, in->n == 0);
}

static cv_rc fn_where(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	fp_coll_t r = {0};

	for (size_t i = 0; i < in->n && !rc; i++) {
		int t = 0;
		rc = lambda(ev, call->args[0], &in->v[i], i, &r);
		if (!rc)
			rc = fp_truth(ev, &r, &t);
		if (!rc && t == 1)
			rc = fp_push(ev, out, &in->v[i]);
	}
	return rc;
}

static cv_rc fn_exists(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t f = {0};

	if (call->nargs == 0)
		return fp_push_bool(ev, out, in->n > 0);
	rc = fn_where(ev, call, in, focus, &f);
	return rc ? rc : fp_push_bool(ev, out, f.n > 0);
}

static cv_rc fn_all(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	fp_coll_t r = {0};
	bool all = true;

	for (size_t i = 0; i < in->n && !rc && all; i++) {
		int t = 0;
		rc = lambda(ev, call->args[0], &in->v[i], i, &r);
		if (!rc)
			rc = fp_truth(ev, &r, &t);
		all = t == 1;
	}
	return rc ? rc : fp_push_bool(ev, out, all);
}

/* allTrue, anyTrue, allFalse, anyFalse: want is the value, any picks the quantifier. */
static cv_rc bools(fp_ev_t *ev, const fp_coll_t *in, bool want, bool any, fp_coll_t *out)
{
	bool res = !any;

	for (size_t i = 0; i < in->n; i++) {
		cv_fp_item_t v;
		bool match;
		if (!fp_sysval(ev, &in->v[i], &v) || v.kind != CV_FP_BOOLEAN)
			return fp_fail(ev, CV_E_INVALID, "allTrue() and its kin expect booleans");
		match = v.b == want;
		if (any && match)
			res = true;
		if (!any && !match)
			res = false;
	}
	return fp_push_bool(ev, out, res);
}

static cv_rc fn_alltrue(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return bools(ev, in, true, false, out);
}

static cv_rc fn_anytrue(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return bools(ev, in, true, true, out);
}

static cv_rc fn_allfalse(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return bools(ev, in, false, false, out);
}

static cv_rc fn_anyfalse(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return bools(ev, in, false, true, out);
}

/* subsetOf / supersetOf */
static cv_rc subset(fp_ev_t *ev, const fp_coll_t *a, const fp_coll_t *b, fp_coll_t *out)
{
	bool res = true;

	cv_rc rc = CV_OK;

	for (size_t i = 0; i < a->n && res && !rc; i++) {
		res = coll_has(ev, b, &a->v[i]);
		rc = fp_step(ev);
	}
	return rc ? rc : fp_push_bool(ev, out, res);
}

static cv_rc fn_subsetof(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	fp_coll_t o = {0};
	cv_rc rc = arg(ev, call, 0, focus, &o);

	return rc ? rc : subset(ev, in, &o, out);
}

static cv_rc fn_supersetof(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			   fp_coll_t *out)
{
	fp_coll_t o = {0};
	cv_rc rc = arg(ev, call, 0, focus, &o);

	return rc ? rc : subset(ev, &o, in, out);
}

static cv_rc fn_count(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return fp_push_int(ev, out, (int64_t)in->n);
}

static cv_rc distinct(fp_ev_t *ev, const fp_coll_t *in, fp_coll_t *out)
{
	cv_rc rc = CV_OK;

	for (size_t i = 0; i < in->n && !rc; i++) {
		rc = fp_step(ev);
		if (!rc && !coll_has(ev, out, &in->v[i]))
			rc = fp_push(ev, out, &in->v[i]);
	}
	return rc;
}

static cv_rc fn_distinct(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return distinct(ev, in, out);
}

static cv_rc fn_isdistinct(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			   fp_coll_t *out)
{
	fp_coll_t d = {0};
	cv_rc rc = distinct(ev, in, &d);

	return rc ? rc : fp_push_bool(ev, out, d.n == in->n);
}

/* ---- filtering and projection ------------------------------------------------- */

static cv_rc fn_select(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	fp_coll_t r = {0};

	for (size_t i = 0; i < in->n && !rc; i++) {
		rc = lambda(ev, call->args[0], &in->v[i], i, &r);
		if (!rc)
			rc = copy(ev, &r, 0, r.n, out);
	}
	return rc;
}

static cv_rc fn_repeat(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	fp_coll_t r = {0};

	/* out doubles as the work queue: items are projected in turn */
	for (size_t i = 0; i < in->n && !rc; i++) {
		rc = lambda(ev, call->args[0], &in->v[i], i, &r);
		for (size_t j = 0; j < r.n && !rc; j++) {
			rc = fp_step(ev);
			if (!rc && !coll_has(ev, out, &r.v[j]))
				rc = fp_push(ev, out, &r.v[j]);
		}
	}
	for (size_t k = 0; k < out->n && !rc; k++) {
		cv_fp_item_t it = out->v[k];
		rc = lambda(ev, call->args[0], &it, k, &r);
		for (size_t j = 0; j < r.n && !rc; j++) {
			rc = fp_step(ev);
			if (!rc && !coll_has(ev, out, &r.v[j]))
				rc = fp_push(ev, out, &r.v[j]);
		}
	}
	return rc;
}

static cv_rc fn_oftype(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc = CV_OK;

	if (!fp_type_known(ev, call->tname))
		return fp_fail(ev, CV_E_INVALID, "unknown type at offset %zu", call->off);
	for (size_t i = 0; i < in->n && !rc; i++) {
		if (fp_is_exactly(ev, &in->v[i], call->tname))
			rc = fp_push(ev, out, &in->v[i]);
	}
	return rc;
}

static cv_rc fn_is(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	if (!fp_type_known(ev, call->tname))
		return fp_fail(ev, CV_E_INVALID, "unknown type at offset %zu", call->off);
	if (in->n == 0)
		return CV_OK;
	if (in->n > 1)
		return fp_fail(ev, CV_E_INVALID, "is() expects a single item, not %zu", in->n);
	return fp_push_bool(ev, out, fp_is_type(ev, &in->v[0], call->tname));
}

static cv_rc fn_as(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	if (in->n > 1)
		return fp_fail(ev, CV_E_INVALID, "as() expects a single item, not %zu (use ofType())", in->n);
	return fn_oftype(ev, call, in, focus, out);
}

/* ---- subsetting ------------------------------------------------------------------ */

static cv_rc fn_single(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	if (in->n > 1)
		return fp_fail(ev, CV_E_INVALID, "single() on a collection of %zu items", in->n);
	return copy(ev, in, 0, 1, out);
}

static cv_rc fn_first(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return copy(ev, in, 0, 1, out);
}

static cv_rc fn_last(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return in->n ? copy(ev, in, in->n - 1, in->n, out) : CV_OK;
}

static cv_rc fn_tail(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return copy(ev, in, 1, in->n, out);
}

static cv_rc fn_skip(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	int64_t n = 0;
	bool have;
	cv_rc rc = int_arg(ev, call, 0, focus, &n, &have);

	if (rc || !have)
		return rc;
	return copy(ev, in, n < 0 ? 0 : (size_t)n, in->n, out);
}

static cv_rc fn_take(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	int64_t n = 0;
	bool have;
	cv_rc rc = int_arg(ev, call, 0, focus, &n, &have);

	if (rc || !have || n <= 0)
		return rc;
	return copy(ev, in, 0, (size_t)n, out);
}

static cv_rc fn_intersect(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			  fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t o = {0};

	rc = arg(ev, call, 0, focus, &o);
	for (size_t i = 0; i < in->n && !rc; i++) {
		rc = fp_step(ev);
		if (!rc && coll_has(ev, &o, &in->v[i]) && !coll_has(ev, out, &in->v[i]))
			rc = fp_push(ev, out, &in->v[i]);
	}
	return rc;
}

static cv_rc fn_exclude(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t o = {0};

	rc = arg(ev, call, 0, focus, &o);
	for (size_t i = 0; i < in->n && !rc; i++) {
		rc = fp_step(ev);
		if (!rc && !coll_has(ev, &o, &in->v[i]))
			rc = fp_push(ev, out, &in->v[i]);
	}
	return rc;
}

/* ---- combining ------------------------------------------------------------------ */

static cv_rc fn_union(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t o = {0}, all = {0};

	rc = arg(ev, call, 0, focus, &o);
	if (!rc)
		rc = copy(ev, in, 0, in->n, &all);
	if (!rc)
		rc = copy(ev, &o, 0, o.n, &all);
	return rc ? rc : distinct(ev, &all, out);
}

static cv_rc fn_combine(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t o = {0};

	rc = arg(ev, call, 0, focus, &o);
	if (!rc)
		rc = copy(ev, in, 0, in->n, out);
	return rc ? rc : copy(ev, &o, 0, o.n, out);
}

/* ---- utility ----------------------------------------------------------------------- */

static cv_rc fn_iif(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t c = {0};
	const fp_coll_t *ctx = call->left ? in : focus;
	int t = 0;

	if (call->left && in->n > 1)
		return fp_fail(ev, CV_E_INVALID, "iif() on a collection of %zu items", in->n);
	rc = arg(ev, call, 0, ctx, &c);
	if (!rc)
		rc = fp_truth(ev, &c, &t);
	if (rc)
		return rc;
	if (t == 1)
		return fp_eval(ev, call->args[1], ctx, out);
	return call->nargs > 2 ? fp_eval(ev, call->args[2], ctx, out) : CV_OK;
}

static cv_rc fn_trace(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return copy(ev, in, 0, in->n, out);
}

static cv_rc now_text(fp_ev_t *ev, int what, fp_coll_t *out)
{
	char buf[40];
	time_t t = time(NULL);
	struct tm tm;
	cv_fp_item_t it = {0};

	gmtime_r(&t, &tm);
	if (what == 0) {
		strftime(buf, sizeof(buf), "%Y-%m-%d", &tm);
		it.kind = CV_FP_DATE;
	} else if (what == 1) {
		strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
		it.kind = CV_FP_DATETIME;
	} else {
		strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
		it.kind = CV_FP_TIME;
	}
	it.s = cv_pool_strdup(ev->pool, buf);
	return it.s ? fp_push(ev, out, &it) : CV_E_NOMEM;
}

static cv_rc fn_today(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return now_text(ev, 0, out);
}

static cv_rc fn_now(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return now_text(ev, 1, out);
}

static cv_rc fn_timeofday(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			  fp_coll_t *out)
{
	return now_text(ev, 2, out);
}

static cv_rc fn_not(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	int t = 0;
	cv_rc rc = fp_truth(ev, in, &t);

	if (rc || t < 0)
		return rc;
	return fp_push_bool(ev, out, t == 0);
}

/* ---- tree navigation ------------------------------------------------------------------ */

static cv_rc fn_children(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			 fp_coll_t *out)
{
	cv_rc rc = CV_OK;

	for (size_t i = 0; i < in->n && !rc; i++)
		rc = fp_children(ev, &in->v[i], NULL, out);
	return rc;
}

static cv_rc fn_descendants(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			    fp_coll_t *out)
{
	cv_rc rc = CV_OK;

	for (size_t i = 0; i < in->n && !rc; i++)
		rc = fp_children(ev, &in->v[i], NULL, out);
	/* out is its own queue: each item's children are appended behind it */
	for (size_t k = 0; k < out->n && !rc; k++) {
		cv_fp_item_t it = out->v[k];
		rc = fp_children(ev, &it, NULL, out);
	}
	return rc;
}

/* ---- FHIR additions ----------------------------------------------------------------- */

static cv_rc fn_extension(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			  fp_coll_t *out)
{
	cv_rc rc;
	const char *url;
	fp_coll_t ext = {0};

	rc = str_arg(ev, call, 0, focus, &url);
	if (rc || !url)
		return rc;
	for (size_t i = 0; i < in->n && !rc; i++)
		rc = fp_children(ev, &in->v[i], "extension", &ext);
	for (size_t i = 0; i < ext.n && !rc; i++) {
		json_object *u = NULL;
		if (json_object_is_type(ext.v[i].node, json_type_object) &&
		    json_object_object_get_ex(ext.v[i].node, "url", &u) && json_object_is_type(u, json_type_string) &&
		    strcmp(json_object_get_string(u), url) == 0)
			rc = fp_push(ev, out, &ext.v[i]);
	}
	return rc;
}

static cv_rc fn_hasvalue(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			 fp_coll_t *out)
{
	cv_fp_item_t v;
	bool has = in->n == 1 && in->v[0].kind == CV_FP_NODE && in->v[0].type &&
		   cv_model_type_is_primitive(ev->env->model, in->v[0].type) && fp_sysval(ev, &in->v[0], &v);

	return fp_push_bool(ev, out, has);
}

/* Finds the contained resource "#id" of %resource. */
static json_object *contained(fp_ev_t *ev, const char *id)
{
	json_object *arr = NULL;

	if (!ev->resource.node || !json_object_object_get_ex(ev->resource.node, "contained", &arr) ||
	    !json_object_is_type(arr, json_type_array))
		return NULL;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *r = json_object_array_get_idx(arr, i), *rid = NULL;
		if (json_object_object_get_ex(r, "id", &rid) && json_object_is_type(rid, json_type_string) &&
		    strcmp(json_object_get_string(rid), id) == 0)
			return r;
	}
	return NULL;
}

/* The resource type a literal reference names ("Patient/1", ".../Patient/1/_history/2"). */
static const char *ref_type(fp_ev_t *ev, const char *ref)
{
	char seg[72];
	const char *p = ref, *best = NULL;

	while (*p) {
		const char *slash = strchr(p, '/');
		size_t n = slash ? (size_t)(slash - p) : strlen(p);
		if (slash && n < sizeof(seg)) {
			memcpy(seg, p, n);
			seg[n] = '\0';
			if (cv_model_is_resource(ev->env->model, seg) && slash[1] && slash[1] != '/')
				best = cv_model_type_name(ev->env->model, seg);
		}
		if (!slash)
			break;
		p = slash + 1;
	}
	return best;
}

static cv_rc resolve_one(fp_ev_t *ev, const cv_fp_item_t *it, fp_coll_t *out)
{
	cv_rc rc;
	json_object *ref = NULL, *target = NULL;
	const char *s;
	cv_fp_item_t r = {.kind = CV_FP_NODE};

	if (it->kind == CV_FP_STRING)
		s = it->s;
	else if (it->kind == CV_FP_NODE && json_object_is_type(it->node, json_type_string))
		s = json_object_get_string(it->node);
	else if (it->kind == CV_FP_NODE && json_object_object_get_ex(it->node, "reference", &ref) &&
		 json_object_is_type(ref, json_type_string))
		s = json_object_get_string(ref);
	else
		return CV_OK;
	if (s[0] == '#') {
		target = contained(ev, s + 1);
	} else if (ev->env->resolve) {
		rc = ev->env->resolve(ev->env->resolve_arg, s, &target);
		if (rc)
			return rc;
	}
	if (target) {
		json_object *rt = NULL;
		r.node = target;
		if (json_object_object_get_ex(target, "resourceType", &rt) && json_object_is_type(rt, json_type_string))
			r.type = cv_model_type_name(ev->env->model, json_object_get_string(rt));
		return fp_push(ev, out, &r);
	}
	if (ev->env->resolve || s[0] == '#')
		return CV_OK;
	r.type = ref_type(ev, s);
	if (!r.type)
		return CV_OK;
	r.node = it->node;
	r.stub = true;
	return fp_push(ev, out, &r);
}

static cv_rc fn_resolve(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			fp_coll_t *out)
{
	cv_rc rc = CV_OK;

	for (size_t i = 0; i < in->n && !rc; i++)
		rc = resolve_one(ev, &in->v[i], out);
	return rc;
}

/* ---- strings ------------------------------------------------------------------------- */

/* Byte offset of the n-th code point of s (or its length). */
static size_t utf8_off(const char *s, int64_t n)
{
	size_t i = 0;

	while (s[i] && n > 0) {
		i++;
		while (((unsigned char)s[i] & 0xC0) == 0x80)
			i++;
		n--;
	}
	return i;
}

static int64_t utf8_len(const char *s)
{
	int64_t n = 0;

	for (; *s; s++) {
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	}
	return n;
}

static cv_rc fn_length(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	const char *s;
	cv_rc rc = in_str(ev, call, in, &s);

	return rc || !s ? rc : fp_push_int(ev, out, utf8_len(s));
}

static cv_rc fn_startswith(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			   fp_coll_t *out)
{
	const char *s, *p;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &p);
	if (rc || !s || !p)
		return rc;
	return fp_push_bool(ev, out, strncmp(s, p, strlen(p)) == 0);
}

static cv_rc fn_endswith(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			 fp_coll_t *out)
{
	const char *s, *p;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &p);
	if (rc || !s || !p)
		return rc;
	return fp_push_bool(ev, out, strlen(p) <= strlen(s) && strcmp(s + strlen(s) - strlen(p), p) == 0);
}

static cv_rc fn_contains(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			 fp_coll_t *out)
{
	const char *s, *p;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &p);
	if (rc || !s || !p)
		return rc;
	return fp_push_bool(ev, out, strstr(s, p) != NULL);
}

static cv_rc fn_indexof(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	const char *s, *p, *hit;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &p);
	if (rc || !s || !p)
		return rc;
	hit = strstr(s, p);
	if (!hit)
		return fp_push_int(ev, out, -1);
	{
		char *pre = cv_pool_strndup(ev->pool, s, (size_t)(hit - s));
		return pre ? fp_push_int(ev, out, utf8_len(pre)) : CV_E_NOMEM;
	}
}

static cv_rc fn_substring(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			  fp_coll_t *out)
{
	const char *s;
	int64_t start = 0, len = INT64_MAX;
	bool have = false, hlen = false;
	size_t a, b;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = int_arg(ev, call, 0, focus, &start, &have);
	if (!rc && call->nargs > 1) {
		rc = int_arg(ev, call, 1, focus, &len, &hlen);
		if (!hlen)
			len = INT64_MAX;
	}
	if (rc || !s || !have || start < 0 || start >= utf8_len(s))
		return rc;
	if (len <= 0)
		return fp_push_str(ev, out, "");
	a = utf8_off(s, start);
	b = a + utf8_off(s + a, len);
	return fp_push_str(ev, out, cv_pool_strndup(ev->pool, s + a, b - a));
}

static cv_rc change_case(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, bool up, fp_coll_t *out)
{
	const char *s;
	char *r;
	cv_rc rc = in_str(ev, call, in, &s);

	if (rc || !s)
		return rc;
	r = cv_pool_strdup(ev->pool, s);
	if (!r)
		return CV_E_NOMEM;
	for (char *p = r; *p; p++) {
		if ((unsigned char)*p < 0x80)
			*p = (char)(up ? toupper((unsigned char)*p) : tolower((unsigned char)*p));
	}
	return fp_push_str(ev, out, r);
}

static cv_rc fn_upper(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return change_case(ev, call, in, true, out);
}

static cv_rc fn_lower(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return change_case(ev, call, in, false, out);
}

static cv_rc fn_replace(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			fp_coll_t *out)
{
	const char *s, *pat, *rep;
	cv_rc rc = in_str(ev, call, in, &s);
	char *r = NULL;
	size_t plen, rlen, n = 0, cap;

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &pat);
	if (!rc)
		rc = str_arg(ev, call, 1, focus, &rep);
	if (rc || !s || !pat || !rep)
		return rc;
	plen = strlen(pat);
	rlen = strlen(rep);
	/* an empty pattern inserts rep around every character */
	cap = strlen(s) * (rlen + 1) + rlen + 1;
	if (plen)
		cap = strlen(s) / plen * rlen + strlen(s) + 1;
	if (cap > 16u * 1024 * 1024)
		return fp_fail(ev, CV_E_LIMIT, "replace() result too long");
	r = cv_pool_alloc(ev->pool, cap);
	if (!r)
		return CV_E_NOMEM;
	if (!plen) {
		for (const char *p = s;; p++) {
			memcpy(r + n, rep, rlen);
			n += rlen;
			if (!*p)
				break;
			r[n++] = *p;
		}
	} else {
		const char *p = s, *hit;
		while ((hit = strstr(p, pat))) {
			memcpy(r + n, p, (size_t)(hit - p));
			n += (size_t)(hit - p);
			memcpy(r + n, rep, rlen);
			n += rlen;
			p = hit + plen;
		}
		memcpy(r + n, p, strlen(p));
		n += strlen(p);
	}
	r[n] = '\0';
	return fp_push_str(ev, out, r);
}

/* Refuses what makes glibc's regcomp/regexec blow up in memory or time:
 * back-references, a quantifier right after another one, more than
 * FP_MAX_QUANT quantifiers, and intervals {m,n} with bounds over FP_MAX_INTERVAL. */
#define FP_MAX_QUANT 32
#define FP_MAX_INTERVAL 64

static bool re_safe(const char *pat)
{
	int quants = 0;
	bool after_quant = false, in_bracket = false;

	for (const char *p = pat; *p; p++) {
		if (in_bracket) {
			if (*p == ']' && p[-1] != '[' && !(p[-1] == '^' && p[-2] == '['))
				in_bracket = false;
			continue;
		}
		if (*p == '\\') {
			if (p[1] >= '1' && p[1] <= '9')
				return false;
			if (p[1])
				p++;
			after_quant = false;
			continue;
		}
		if (*p == '[') {
			in_bracket = true;
			after_quant = false;
			continue;
		}
		if (*p == '*' || *p == '+' || *p == '?' || *p == '{') {
			if (after_quant || ++quants > FP_MAX_QUANT)
				return false;
			after_quant = true;
			if (*p == '{') {
				char *end;
				long m = strtol(p + 1, &end, 10), n = m;
				if (*end == ',')
					n = end[1] == '}' ? FP_MAX_INTERVAL : strtol(end + 1, &end, 10);
				if (m > FP_MAX_INTERVAL || n > FP_MAX_INTERVAL || n < 0)
					return false;
				while (*p && *p != '}')
					p++;
				if (!*p)
					return false;
			}
			continue;
		}
		after_quant = false;
	}
	return true;
}

static cv_rc compile_re(fp_ev_t *ev, const char *pat, regex_t *re, bool whole)
{
	char *full;

	if (strlen(pat) > FP_MAX_REGEX)
		return fp_fail(ev, CV_E_LIMIT, "regular expression too long");
	if (!re_safe(pat))
		return fp_fail(ev, CV_E_INVALID, "regular expression too complex (back-references, stacked or "
						 "large repetitions are refused)");
	full = whole ? cv_pool_printf(ev->pool, "^(%s)$", pat) : cv_pool_strdup(ev->pool, pat);
	if (!full)
		return CV_E_NOMEM;
	if (regcomp(re, full, REG_EXTENDED) != 0)
		return fp_fail(ev, CV_E_INVALID, "invalid regular expression");
	return CV_OK;
}

static cv_rc matches(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, bool whole,
		     fp_coll_t *out)
{
	const char *s, *pat;
	regex_t re;
	bool m;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &pat);
	if (rc || !s || !pat)
		return rc;
	if (strlen(s) > FP_MAX_REGEX_INPUT)
		return fp_fail(ev, CV_E_LIMIT, "matches() on a string longer than %u bytes", FP_MAX_REGEX_INPUT);
	rc = compile_re(ev, pat, &re, whole);
	if (rc)
		return rc;
	m = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return fp_push_bool(ev, out, m);
}

static cv_rc fn_matches(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			fp_coll_t *out)
{
	return matches(ev, call, in, focus, false, out);
}

static cv_rc fn_matchesfull(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			    fp_coll_t *out)
{
	return matches(ev, call, in, focus, true, out);
}

/* Appends len bytes of src to r (n used of cap), truncating; r keeps room for a NUL. */
static void append(char *r, size_t *n, size_t cap, const char *src, size_t len)
{
	if (len > cap - 1 - *n)
		len = cap - 1 - *n;
	memcpy(r + *n, src, len);
	*n += len;
}

static cv_rc fn_replacematches(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			       fp_coll_t *out)
{
	const char *s, *pat, *rep;
	regex_t re;
	regmatch_t m[10];
	char *r = NULL;
	size_t n = 0, cap;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &pat);
	if (!rc)
		rc = str_arg(ev, call, 1, focus, &rep);
	if (rc || !s || !pat || !rep)
		return rc;
	if (!*pat)
		return fp_push_str(ev, out, s);
	if (strlen(s) > FP_MAX_REGEX_INPUT)
		return fp_fail(ev, CV_E_LIMIT, "replaceMatches() on a string longer than %u bytes", FP_MAX_REGEX_INPUT);
	cap = (strlen(s) + 1) * (strlen(rep) + 2) + 1;
	if (cap > 16u * 1024 * 1024)
		return fp_fail(ev, CV_E_LIMIT, "replaceMatches() result too long");
	r = cv_pool_alloc(ev->pool, cap);
	if (!r)
		return CV_E_NOMEM;
	rc = compile_re(ev, pat, &re, false);
	if (rc)
		return rc;
	for (const char *p = s; !rc;) {
		if (regexec(&re, p, 10, m, p == s ? 0 : REG_NOTBOL) != 0) {
			append(r, &n, cap, p, strlen(p));
			break;
		}
		append(r, &n, cap, p, (size_t)m[0].rm_so);
		for (const char *q = rep; *q; q++) {
			if (*q == '$' && q[1] >= '1' && q[1] <= '9' && m[q[1] - '0'].rm_so >= 0) {
				regmatch_t g = m[q[1] - '0'];
				append(r, &n, cap, p + g.rm_so, (size_t)(g.rm_eo - g.rm_so));
				q++;
			} else {
				append(r, &n, cap, q, 1);
			}
		}
		if (m[0].rm_eo == m[0].rm_so) {
			/* an empty match: keep the next character and move past it */
			if (!p[m[0].rm_eo])
				break;
			append(r, &n, cap, p + m[0].rm_eo, 1);
			p += m[0].rm_eo + 1;
		} else {
			p += m[0].rm_eo;
		}
		rc = fp_step(ev);
		if (!*p)
			break;
	}
	regfree(&re);
	r[n] = '\0';
	return rc ? rc : fp_push_str(ev, out, r);
}

static cv_rc fn_tochars(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	const char *s;
	cv_rc rc = in_str(ev, call, in, &s);

	while (!rc && s && *s) {
		size_t n = utf8_off(s, 1);
		rc = fp_push_str(ev, out, cv_pool_strndup(ev->pool, s, n));
		s += n;
	}
	return rc;
}

/* ---- more strings: trim, split, join, escape, encode ---------------------------------- */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static cv_rc fn_trim(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	const char *s;
	size_t n;
	cv_rc rc = in_str(ev, call, in, &s);

	if (rc || !s)
		return rc;
	while (is_ws(*s))
		s++;
	n = strlen(s);
	while (n && is_ws(s[n - 1]))
		n--;
	return fp_push_str(ev, out, cv_pool_strndup(ev->pool, s, n));
}

static cv_rc fn_split(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	const char *s, *sep, *hit;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &sep);
	if (rc || !s || !sep)
		return rc;
	if (!*sep)
		return fn_tochars(ev, call, in, focus, out);
	while (!rc && (hit = strstr(s, sep))) {
		rc = fp_push_str(ev, out, cv_pool_strndup(ev->pool, s, (size_t)(hit - s)));
		s = hit + strlen(sep);
	}
	return rc ? rc : fp_push_str(ev, out, s);
}

static cv_rc fn_join(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	const char *sep = "";
	size_t len = 0, n = 0;
	char *r;
	cv_rc rc = CV_OK;

	if (call->nargs)
		rc = str_arg(ev, call, 0, focus, &sep);
	if (rc)
		return rc;
	if (!sep)
		sep = "";
	for (size_t i = 0; i < in->n; i++) {
		cv_fp_item_t v;
		if (!fp_sysval(ev, &in->v[i], &v) || v.kind != CV_FP_STRING)
			return fp_fail(ev, CV_E_INVALID, "join() expects strings");
		len += strlen(v.s) + strlen(sep);
	}
	r = cv_pool_alloc(ev->pool, len + 1);
	if (!r)
		return CV_E_NOMEM;
	for (size_t i = 0; i < in->n; i++) {
		cv_fp_item_t v;
		fp_sysval(ev, &in->v[i], &v);
		if (i) {
			memcpy(r + n, sep, strlen(sep));
			n += strlen(sep);
		}
		memcpy(r + n, v.s, strlen(v.s));
		n += strlen(v.s);
	}
	r[n] = '\0';
	return fp_push_str(ev, out, r);
}

static const struct {
	char c;
	const char *html, *json;
} escapes[] = {
	{'&', "&amp;", NULL}, {'<', "&lt;", NULL},     {'>', "&gt;", NULL},    {'"', "&quot;", "\\\""},
	{'\'', "&#39;", NULL}, {'\\', NULL, "\\\\"},   {'\n', NULL, "\\n"},    {'\r', NULL, "\\r"},
	{'\t', NULL, "\\t"},
};

static cv_rc escape(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, bool un,
		    fp_coll_t *out)
{
	const char *s, *kind;
	char *r;
	size_t n = 0;
	bool html;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &kind);
	if (rc || !s || !kind)
		return rc;
	if (strcmp(kind, "html") != 0 && strcmp(kind, "json") != 0)
		return CV_OK;
	html = kind[0] == 'h';
	r = cv_pool_alloc(ev->pool, strlen(s) * 6 + 1);
	if (!r)
		return CV_E_NOMEM;
	while (*s) {
		bool done = false;
		for (size_t i = 0; i < sizeof(escapes) / sizeof(escapes[0]) && !done; i++) {
			const char *e = html ? escapes[i].html : escapes[i].json;
			if (!e)
				continue;
			if (!un && *s == escapes[i].c) {
				memcpy(r + n, e, strlen(e));
				n += strlen(e);
				s++;
				done = true;
			} else if (un && strncmp(s, e, strlen(e)) == 0) {
				r[n++] = escapes[i].c;
				s += strlen(e);
				done = true;
			}
		}
		if (!done)
			r[n++] = *s++;
	}
	r[n] = '\0';
	return fp_push_str(ev, out, r);
}

static cv_rc fn_escape(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return escape(ev, call, in, focus, false, out);
}

static cv_rc fn_unescape(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			 fp_coll_t *out)
{
	return escape(ev, call, in, focus, true, out);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *enc(fp_ev_t *ev, const unsigned char *s, size_t len, const char *kind)
{
	char *r = cv_pool_alloc(ev->pool, len * 2 + 4);
	size_t n = 0;

	if (!r)
		return NULL;
	if (strcmp(kind, "hex") == 0) {
		for (size_t i = 0; i < len; i++) {
			r[n++] = "0123456789abcdef"[s[i] >> 4];
			r[n++] = "0123456789abcdef"[s[i] & 15];
		}
	} else {
		const char *a = strcmp(kind, "urlbase64") == 0 ? b64url : b64;
		for (size_t i = 0; i < len; i += 3) {
			unsigned v = (unsigned)s[i] << 16 | (i + 1 < len ? (unsigned)s[i + 1] << 8 : 0) |
				     (i + 2 < len ? s[i + 2] : 0);
			r[n++] = a[v >> 18 & 63];
			r[n++] = a[v >> 12 & 63];
			r[n++] = i + 1 < len ? a[v >> 6 & 63] : '=';
			r[n++] = i + 2 < len ? a[v & 63] : '=';
		}
	}
	r[n] = '\0';
	return r;
}

static int b64val(char c, bool url)
{
	const char *a = url ? b64url : b64;
	const char *p = c ? strchr(a, c) : NULL;

	return p ? (int)(p - a) : -1;
}

static char *dec(fp_ev_t *ev, const char *s, const char *kind)
{
	size_t len = strlen(s), n = 0;
	char *r = cv_pool_alloc(ev->pool, len + 1);

	if (!r)
		return NULL;
	if (strcmp(kind, "hex") == 0) {
		for (size_t i = 0; i + 1 < len; i += 2) {
			const char *h = "0123456789abcdef";
			const char *a = strchr(h, tolower((unsigned char)s[i])), *b = strchr(h, tolower((unsigned char)s[i + 1]));
			if (!a || !b || !s[i] || !s[i + 1])
				return NULL;
			r[n++] = (char)((a - h) << 4 | (b - h));
		}
	} else {
		bool url = strcmp(kind, "urlbase64") == 0;
		unsigned acc = 0;
		int bits = 0;
		for (size_t i = 0; i < len && s[i] != '='; i++) {
			int v = b64val(s[i], url);
			if (v < 0)
				return NULL;
			acc = (acc << 6 | (unsigned)v) & 0xFFFFFF;
			bits += 6;
			if (bits >= 8) {
				bits -= 8;
				r[n++] = (char)(acc >> bits & 0xFF);
			}
		}
	}
	r[n] = '\0';
	return r;
}

static cv_rc code(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, bool de,
		  fp_coll_t *out)
{
	const char *s, *kind;
	char *r;
	cv_rc rc = in_str(ev, call, in, &s);

	if (!rc)
		rc = str_arg(ev, call, 0, focus, &kind);
	if (rc || !s || !kind)
		return rc;
	if (strcmp(kind, "hex") != 0 && strcmp(kind, "base64") != 0 && strcmp(kind, "urlbase64") != 0)
		return CV_OK;
	r = de ? dec(ev, s, kind) : enc(ev, (const unsigned char *)s, strlen(s), kind);
	return r ? fp_push_str(ev, out, r) : CV_OK;
}

static cv_rc fn_encode(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return code(ev, call, in, focus, false, out);
}

static cv_rc fn_decode(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	return code(ev, call, in, focus, true, out);
}

/* ---- types ------------------------------------------------------------------------------- */

static cv_rc fn_type(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	static const char *const sys[] = {"", "Boolean", "Integer", "Decimal", "String", "Date", "DateTime", "Time",
					  "Quantity"};
	cv_rc rc = CV_OK;

	for (size_t i = 0; i < in->n && !rc; i++) {
		const cv_fp_item_t *it = &in->v[i];
		cv_fp_item_t r = {.kind = CV_FP_NODE};
		bool fhir = it->kind == CV_FP_NODE;
		const char *name = fhir ? it->type : sys[it->kind];
		json_object *o;
		if (!name)
			continue;
		o = json_object_new_object();
		if (!o)
			return CV_E_NOMEM;
		rc = cv_json_pool_own(ev->pool, o);
		if (rc)
			return rc;
		json_object_object_add(o, "namespace", json_object_new_string(fhir ? "FHIR" : "System"));
		json_object_object_add(o, "name", json_object_new_string(name));
		r.node = o;
		rc = fp_push(ev, out, &r);
	}
	return rc;
}

/* ---- conversions -------------------------------------------------------------------- */

static bool all_digits(const char *s, bool sign)
{
	if (sign && (*s == '+' || *s == '-'))
		s++;
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
	}
	return true;
}

static bool dec_text(const char *s)
{
	const char *dot;

	if (*s == '+' || *s == '-')
		s++;
	dot = strchr(s, '.');
	if (!dot)
		return all_digits(s, false);
	if (dot == s || !dot[1])
		return false;
	for (const char *p = s; *p; p++) {
		if ((*p < '0' || *p > '9') && p != dot)
			return false;
	}
	return true;
}

static bool is_calendar(const char *u)
{
	static const char *const words[] = {"year",   "years",   "month",  "months",  "week",        "weeks",
					    "day",    "days",    "hour",   "hours",   "minute",      "minutes",
					    "second", "seconds", "millisecond", "milliseconds", NULL};

	for (int i = 0; words[i]; i++) {
		if (strcmp(u, words[i]) == 0)
			return true;
	}
	return false;
}

/* Converts v to kind target into *r; false if it cannot. */
static bool convert(fp_ev_t *ev, const cv_fp_item_t *v, cv_fp_kind target, cv_fp_item_t *r)
{
	*r = (cv_fp_item_t){.kind = target};
	switch (target) {
	case CV_FP_BOOLEAN:
		if (v->kind == CV_FP_BOOLEAN) {
			r->b = v->b;
			return true;
		}
		if (v->kind == CV_FP_INTEGER && (v->i == 0 || v->i == 1)) {
			r->b = v->i == 1;
			return true;
		}
		if (v->kind == CV_FP_DECIMAL && (v->d == 0.0 || v->d == 1.0)) {
			r->b = v->d == 1.0;
			return true;
		}
		if (v->kind == CV_FP_STRING) {
			static const char *const t[] = {"true", "t", "yes", "y", "1", "1.0", NULL};
			static const char *const f[] = {"false", "f", "no", "n", "0", "0.0", NULL};
			for (int i = 0; t[i]; i++) {
				if (strcasecmp(v->s, t[i]) == 0) {
					r->b = true;
					return true;
				}
				if (strcasecmp(v->s, f[i]) == 0)
					return true;
			}
		}
		return false;
	case CV_FP_INTEGER:
		if (v->kind == CV_FP_INTEGER) {
			*r = *v;
			return true;
		}
		if (v->kind == CV_FP_BOOLEAN) {
			r->i = v->b;
			r->d = (double)r->i;
			return true;
		}
		if (v->kind == CV_FP_STRING && all_digits(v->s, true)) {
			errno = 0;
			r->i = strtoll(v->s, NULL, 10);
			r->d = (double)r->i;
			return errno == 0;
		}
		return false;
	case CV_FP_DECIMAL:
		if (v->kind == CV_FP_INTEGER || v->kind == CV_FP_DECIMAL) {
			r->d = v->d;
			r->s = v->kind == CV_FP_DECIMAL ? v->s : fp_dec_text(ev, v->d);
			return r->s != NULL;
		}
		if (v->kind == CV_FP_BOOLEAN) {
			r->d = v->b ? 1.0 : 0.0;
			r->s = v->b ? "1.0" : "0.0";
			return true;
		}
		if (v->kind == CV_FP_STRING && dec_text(v->s)) {
			r->d = strtod(v->s, NULL);
			r->s = v->s;
			return true;
		}
		return false;
	case CV_FP_STRING:
		switch (v->kind) {
		case CV_FP_BOOLEAN: r->s = v->b ? "true" : "false"; return true;
		case CV_FP_INTEGER: r->s = cv_pool_printf(ev->pool, "%lld", (long long)v->i); return r->s != NULL;
		case CV_FP_QUANTITY:
			if (v->unit && is_calendar(v->unit))
				r->s = cv_pool_printf(ev->pool, "%s %s", v->s ? v->s : fp_dec_text(ev, v->d), v->unit);
			else
				r->s = cv_pool_printf(ev->pool, "%s '%s'", v->s ? v->s : fp_dec_text(ev, v->d), v->unit ? v->unit : "1");
			return r->s != NULL;
		case CV_FP_DECIMAL:
			r->s = v->s ? v->s : fp_dec_text(ev, v->d);
			return r->s != NULL;
		default: r->s = v->s; return r->s != NULL;
		}
	case CV_FP_DATE:
		if (v->kind == CV_FP_DATE || ((v->kind == CV_FP_DATETIME || v->kind == CV_FP_STRING) && v->s)) {
			size_t n = strcspn(v->s, "T");
			r->s = cv_pool_strndup(ev->pool, v->s, n);
			return r->s && fp_dt_cmp(r->s, r->s, false) == 0;
		}
		return false;
	case CV_FP_DATETIME:
		if ((v->kind == CV_FP_DATE || v->kind == CV_FP_DATETIME || v->kind == CV_FP_STRING) && v->s) {
			r->s = v->s;
			return fp_dt_cmp(r->s, r->s, false) == 0;
		}
		return false;
	case CV_FP_TIME:
		if ((v->kind == CV_FP_TIME || v->kind == CV_FP_STRING) && v->s) {
			r->s = v->s;
			return fp_dt_cmp(r->s, r->s, true) == 0;
		}
		return false;
	case CV_FP_QUANTITY:
		if (v->kind == CV_FP_QUANTITY) {
			*r = *v;
			return true;
		}
		if (v->kind == CV_FP_INTEGER || v->kind == CV_FP_DECIMAL) {
			r->d = v->d;
			r->s = v->kind == CV_FP_DECIMAL ? v->s : fp_dec_text(ev, v->d);
			r->unit = "1";
			return r->s != NULL;
		}
		if (v->kind == CV_FP_BOOLEAN) {
			r->d = v->b ? 1.0 : 0.0;
			r->s = v->b ? "1.0" : "0.0";
			r->unit = "1";
			return true;
		}
		if (v->kind == CV_FP_STRING) {
			/* number, optional space, optional 'unit' */
			const char *q = strchr(v->s, '\'');
			const char *sp = strchr(v->s, ' ');
			size_t nlen = q ? (size_t)(q - v->s) : strlen(v->s);

			if (!q && sp && is_calendar(sp + 1)) {
				r->unit = sp + 1;
				r->b = true;
				nlen = (size_t)(sp - v->s);
			}
			char *num = cv_pool_strndup(ev->pool, v->s, nlen);
			if (!num)
				return false;
			while (nlen && num[nlen - 1] == ' ')
				num[--nlen] = '\0';
			if (!dec_text(num))
				return false;
			r->d = strtod(num, NULL);
			r->s = num;
			if (!r->b)
				r->unit = "1";
			if (q) {
				const char *end = strchr(q + 1, '\'');
				if (!end || end[1])
					return false;
				r->unit = cv_pool_strndup(ev->pool, q + 1, (size_t)(end - q - 1));
			}
			return r->unit != NULL;
		}
		return false;
	default:
		return false;
	}
}

static cv_rc conv(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, cv_fp_kind target, bool test,
		  fp_coll_t *out)
{
	cv_fp_item_t v, r;
	bool have, ok;
	cv_rc rc = one_value(ev, in, call->fn->name, &v, &have);

	if (rc || !have)
		return rc;
	ok = convert(ev, &v, target, &r);
	if (test)
		return fp_push_bool(ev, out, ok);
	return ok ? fp_push(ev, out, &r) : CV_OK;
}

#define CONV(fname, kind, test)                                                                                  \
	static cv_rc fname(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,      \
			   fp_coll_t *out)                                                                        \
	{                                                                                                         \
		return conv(ev, call, in, kind, test, out);                                                       \
	}
CONV(fn_toboolean, CV_FP_BOOLEAN, false)
CONV(fn_ctoboolean, CV_FP_BOOLEAN, true)
CONV(fn_tointeger, CV_FP_INTEGER, false)
CONV(fn_ctointeger, CV_FP_INTEGER, true)
CONV(fn_todecimal, CV_FP_DECIMAL, false)
CONV(fn_ctodecimal, CV_FP_DECIMAL, true)
CONV(fn_tostring, CV_FP_STRING, false)
CONV(fn_ctostring, CV_FP_STRING, true)
CONV(fn_todate, CV_FP_DATE, false)
CONV(fn_ctodate, CV_FP_DATE, true)
CONV(fn_todatetime, CV_FP_DATETIME, false)
CONV(fn_ctodatetime, CV_FP_DATETIME, true)
CONV(fn_totime, CV_FP_TIME, false)
CONV(fn_ctotime, CV_FP_TIME, true)
CONV(fn_toquantity, CV_FP_QUANTITY, false)
CONV(fn_ctoquantity, CV_FP_QUANTITY, true)

/* ---- math ----------------------------------------------------------------------------- */

static cv_rc num_in(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, cv_fp_item_t *v, bool *have)
{
	cv_rc rc = one_value(ev, in, call->fn->name, v, have);

	if (rc || !*have)
		return rc;
	if (v->kind != CV_FP_INTEGER && v->kind != CV_FP_DECIMAL && v->kind != CV_FP_QUANTITY)
		return fp_fail(ev, CV_E_INVALID, "%s() expects a number", call->fn->name);
	return CV_OK;
}

static cv_rc math1(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, double (*f)(double), bool to_int,
		   fp_coll_t *out)
{
	cv_fp_item_t v;
	bool have;
	double r;
	cv_rc rc = num_in(ev, call, in, &v, &have);

	if (rc || !have)
		return rc;
	r = f(v.d);
	if (to_int) {
		if (!isfinite(r) || fabs(r) > 9e18)
			return CV_OK;
		return fp_push_int(ev, out, (int64_t)r);
	}
	return isnan(r) ? CV_OK : fp_push_dec(ev, out, r);
}

static cv_rc fn_abs(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_fp_item_t v;
	bool have;
	cv_rc rc = num_in(ev, call, in, &v, &have);

	if (rc || !have)
		return rc;
	if (v.kind == CV_FP_INTEGER)
		return v.i == INT64_MIN ? CV_OK : fp_push_int(ev, out, v.i < 0 ? -v.i : v.i);
	if (v.kind == CV_FP_QUANTITY) {
		v.d = fabs(v.d);
		v.s = fp_dec_text(ev, v.d);
		return fp_push(ev, out, &v);
	}
	return fp_push_dec(ev, out, fabs(v.d));
}

static cv_rc fn_ceiling(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return math1(ev, c, in, ceil, true, out);
}

static cv_rc fn_floor(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return math1(ev, c, in, floor, true, out);
}

static cv_rc fn_truncate(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return math1(ev, c, in, trunc, true, out);
}

static cv_rc fn_exp(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return math1(ev, c, in, exp, false, out);
}

static cv_rc fn_ln(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return math1(ev, c, in, log, false, out);
}

static cv_rc fn_sqrt(fp_ev_t *ev, const fp_node_t *c, const fp_coll_t *in, const fp_coll_t *f, fp_coll_t *out)
{
	return math1(ev, c, in, sqrt, false, out);
}

static cv_rc num_arg(fp_ev_t *ev, const fp_node_t *call, size_t i, const fp_coll_t *focus, cv_fp_item_t *v, bool *have)
{
	fp_coll_t c = {0};
	cv_rc rc = arg(ev, call, i, focus, &c);

	if (!rc)
		rc = num_in(ev, call, &c, v, have);
	return rc;
}

static cv_rc fn_log(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_fp_item_t v, b;
	bool hv, hb;
	cv_rc rc = num_in(ev, call, in, &v, &hv);

	if (!rc)
		rc = num_arg(ev, call, 0, focus, &b, &hb);
	if (rc || !hv || !hb || b.d <= 0 || b.d == 1.0 || v.d <= 0)
		return rc;
	return fp_push_dec(ev, out, log(v.d) / log(b.d));
}

static cv_rc fn_power(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_fp_item_t v, e;
	bool hv, he;
	double r;
	cv_rc rc = num_in(ev, call, in, &v, &hv);

	if (!rc)
		rc = num_arg(ev, call, 0, focus, &e, &he);
	if (rc || !hv || !he)
		return rc;
	r = pow(v.d, e.d);
	if (isnan(r) || !isfinite(r))
		return CV_OK;
	if (v.kind == CV_FP_INTEGER && e.kind == CV_FP_INTEGER && e.i >= 0 && fabs(r) < 9e18)
		return fp_push_int(ev, out, (int64_t)r);
	return fp_push_dec(ev, out, r);
}

static cv_rc fn_round(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_fp_item_t v, p = {.i = 0};
	bool hv, hp = true;
	double f, r;
	cv_rc rc = num_in(ev, call, in, &v, &hv);

	if (!rc && call->nargs)
		rc = num_arg(ev, call, 0, focus, &p, &hp);
	if (rc || !hv || !hp)
		return rc;
	if (p.kind == CV_FP_DECIMAL || p.i < 0 || p.i > 15)
		return fp_fail(ev, CV_E_INVALID, "round() precision must be an integer from 0 to 15");
	f = pow(10.0, (double)p.i);
	r = round(v.d * f) / f;
	{
		cv_fp_item_t it = {.kind = CV_FP_DECIMAL, .d = r};
		it.s = cv_pool_printf(ev->pool, "%.*f", (int)p.i, r);
		return it.s ? fp_push(ev, out, &it) : CV_E_NOMEM;
	}
}

/* ---- precision and boundaries ------------------------------------------------------------- */

static int text_places(const char *s)
{
	const char *dot = s ? strchr(s, '.') : NULL;

	return dot ? (int)strlen(dot + 1) : 0;
}

static cv_rc fn_precision(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			  fp_coll_t *out)
{
	cv_fp_item_t v;
	bool have;
	int p = -1;
	cv_rc rc = one_value(ev, in, call->fn->name, &v, &have);

	if (rc || !have)
		return rc;
	if (v.kind == CV_FP_DECIMAL || v.kind == CV_FP_QUANTITY)
		p = text_places(v.s);
	else if (v.kind == CV_FP_INTEGER)
		p = 0;
	else if (v.kind == CV_FP_DATE || v.kind == CV_FP_DATETIME || v.kind == CV_FP_TIME)
		p = fp_dt_precision(v.s, v.kind == CV_FP_TIME);
	return p < 0 ? CV_OK : fp_push_int(ev, out, p);
}

/* The boundary of a number with `places` decimals, at `digits` decimals. */
static const char *num_boundary(fp_ev_t *ev, double v, int places, int digits, bool high)
{
	double half = 0.5 * pow(10.0, -places), b = high ? v + half : v - half;
	double scale = pow(10.0, digits), x = b * scale;

	/* a boundary below the output's resolution is zero, signed like the
	   input (the R4 suite: (-0.0034).lowBoundary(1) is -0.0) */
	if (fabs(b) < 1.0 / scale)
		return cv_pool_printf(ev->pool, "%s%.*f", v < 0 ? "-" : "", digits, 0.0);
	x = high ? ceil(x - 1e-7) : floor(x + 1e-7);
	if (x == 0)
		x = 0; /* no negative zero */
	return cv_pool_printf(ev->pool, "%.*f", digits, x / scale);
}

static cv_rc boundary(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, bool high,
		      fp_coll_t *out)
{
	cv_fp_item_t v, r;
	bool have, hp = false;
	int64_t digits = -1;
	cv_rc rc = one_value(ev, in, call->fn->name, &v, &have);

	if (!rc && call->nargs)
		rc = int_arg(ev, call, 0, focus, &digits, &hp);
	if (rc || !have)
		return rc;
	r = v;
	if (v.kind == CV_FP_INTEGER || v.kind == CV_FP_DECIMAL || v.kind == CV_FP_QUANTITY) {
		if (!hp)
			digits = 8;
		if (digits < 0 || digits > 28)
			return CV_OK;
		r.kind = v.kind == CV_FP_QUANTITY ? CV_FP_QUANTITY : CV_FP_DECIMAL;
		r.s = num_boundary(ev, v.d, v.kind == CV_FP_INTEGER ? 0 : text_places(v.s), (int)digits, high);
		if (!r.s)
			return CV_E_NOMEM;
		r.d = strtod(r.s, NULL);
		return fp_push(ev, out, &r);
	}
	if (v.kind == CV_FP_DATE || v.kind == CV_FP_DATETIME || v.kind == CV_FP_TIME) {
		if (!hp)
			digits = v.kind == CV_FP_TIME ? 9 : v.kind == CV_FP_DATE ? 8 : 17;
		r.s = fp_dt_boundary(ev, v.s, v.kind == CV_FP_TIME, (int)digits, high);
		if (r.s && v.kind == CV_FP_DATE && digits > 8)
			r.kind = CV_FP_DATETIME;
		return r.s ? fp_push(ev, out, &r) : CV_OK;
	}
	return CV_OK;
}

static cv_rc fn_lowboundary(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			    fp_coll_t *out)
{
	return boundary(ev, call, in, focus, false, out);
}

static cv_rc fn_highboundary(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			     fp_coll_t *out)
{
	return boundary(ev, call, in, focus, true, out);
}

static cv_rc fn_comparable(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			   fp_coll_t *out)
{
	fp_coll_t o = {0};
	cv_fp_item_t a, b;
	bool ha, hb;
	cv_rc rc = one_value(ev, in, call->fn->name, &a, &ha);

	if (!rc)
		rc = arg(ev, call, 0, focus, &o);
	if (!rc)
		rc = one_value(ev, &o, call->fn->name, &b, &hb);
	if (rc || !ha || !hb)
		return rc;
	if (a.kind != CV_FP_QUANTITY || b.kind != CV_FP_QUANTITY)
		return fp_fail(ev, CV_E_INVALID, "comparable() applies to quantities");
	return fp_push_bool(ev, out, fp_qty_comparable(&a, &b));
}

/* ---- sort and conformsTo --------------------------------------------------------------------- */

/* Orders two sort keys: empty first, then numbers, strings, dates by value. */
static int key_cmp(fp_ev_t *ev, const fp_coll_t *a, const fp_coll_t *b)
{
	cv_fp_item_t x, y;

	if (a->n == 0 || b->n == 0)
		return (a->n != 0) - (b->n != 0);
	if (!fp_sysval(ev, &a->v[0], &x) || !fp_sysval(ev, &b->v[0], &y))
		return 0;
	if ((x.kind == CV_FP_INTEGER || x.kind == CV_FP_DECIMAL) && (y.kind == CV_FP_INTEGER || y.kind == CV_FP_DECIMAL))
		return (x.d > y.d) - (x.d < y.d);
	if (x.kind == CV_FP_STRING && y.kind == CV_FP_STRING) {
		int c = strcmp(x.s, y.s);
		return (c > 0) - (c < 0);
	}
	if ((x.kind == CV_FP_DATE || x.kind == CV_FP_DATETIME || x.kind == CV_FP_TIME) && x.kind == y.kind) {
		int c = fp_dt_cmp(x.s, y.s, x.kind == CV_FP_TIME);
		return c == 2 ? strcmp(x.s, y.s) : c;
	}
	if (x.kind == CV_FP_BOOLEAN && y.kind == CV_FP_BOOLEAN)
		return (int)x.b - (int)y.b;
	return 0;
}

static cv_rc fn_sort(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	size_t nk = call->nargs ? call->nargs : 1;
	fp_coll_t *keys;
	size_t *order;

	if (in->n == 0)
		return CV_OK;
	keys = cv_pool_alloc(ev->pool, in->n * nk * sizeof(*keys));
	order = cv_pool_alloc(ev->pool, in->n * sizeof(*order));
	if (!keys || !order)
		return CV_E_NOMEM;
	for (size_t i = 0; i < in->n && !rc; i++) {
		order[i] = i;
		for (size_t k = 0; k < nk && !rc; k++) {
			const fp_node_t *a = call->nargs ? call->args[k] : NULL;
			if (a && a->kind == N_UNARY && a->op == OP_MINUS)
				a = a->left; /* descending: the key is the operand */
			if (a)
				rc = lambda(ev, a, &in->v[i], i, &keys[i * nk + k]);
			else
				rc = fp_push(ev, &keys[i * nk + k], &in->v[i]);
			if (!rc && keys[i * nk + k].n > 1)
				rc = fp_fail(ev, CV_E_INVALID, "a sort key must be a single value");
		}
	}
	/* insertion sort: stable, and every comparison is a counted step */
	for (size_t i = 1; i < in->n && !rc; i++) {
		size_t cur = order[i], j = i;
		while (j > 0 && !rc) {
			int c = 0;
			for (size_t k = 0; k < nk && c == 0; k++) {
				const fp_node_t *a = call->nargs ? call->args[k] : NULL;
				const fp_coll_t *ka = &keys[order[j - 1] * nk + k], *kb = &keys[cur * nk + k];
				c = key_cmp(ev, ka, kb);
				/* descending reverses values; an empty key stays first */
				if (a && a->kind == N_UNARY && a->op == OP_MINUS && ka->n && kb->n)
					c = -c;
			}
			rc = fp_step(ev);
			if (c <= 0)
				break;
			order[j] = order[j - 1];
			j--;
		}
		order[j] = cur;
	}
	for (size_t i = 0; i < in->n && !rc; i++)
		rc = fp_push(ev, out, &in->v[order[i]]);
	return rc;
}

static cv_rc fn_conformsto(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			   fp_coll_t *out)
{
	static const char base[] = "http://hl7.org/fhir/StructureDefinition/";
	const char *url;
	cv_rc rc = str_arg(ev, call, 0, focus, &url);

	if (rc || !url || in->n != 1 || in->v[0].kind != CV_FP_NODE || !in->v[0].type)
		return rc;
	/* only the base definitions are known: a resource conforms to its type's and its ancestors' */
	if (strncmp(url, base, sizeof(base) - 1) != 0 || !cv_model_type_known(ev->env->model, url + sizeof(base) - 1))
		return fp_fail(ev, CV_E_INVALID, "conformsTo() knows the base definitions only");
	return fp_push_bool(ev, out, cv_model_type_derives(ev->env->model, in->v[0].type, url + sizeof(base) - 1));
}

/* ---- aggregate -------------------------------------------------------------------------- */

static cv_rc fn_aggregate(fp_ev_t *ev, const fp_node_t *call, const fp_coll_t *in, const fp_coll_t *focus,
			  fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	fp_coll_t total = {0};
	const fp_coll_t *saved = ev->total;

	if (call->nargs > 1)
		rc = arg(ev, call, 1, focus, &total);
	for (size_t i = 0; i < in->n && !rc; i++) {
		fp_coll_t next = {0};
		ev->total = &total;
		rc = lambda(ev, call->args[0], &in->v[i], i, &next);
		total = next;
	}
	ev->total = saved;
	return rc ? rc : copy(ev, &total, 0, total.n, out);
}

/* ---- the table ------------------------------------------------------------------------- */

static const fp_fn_t fns[] = {
	{"abs", 0, 0, false, fn_abs},
	{"aggregate", 1, 2, false, fn_aggregate},
	{"all", 1, 1, false, fn_all},
	{"allFalse", 0, 0, false, fn_allfalse},
	{"allTrue", 0, 0, false, fn_alltrue},
	{"anyFalse", 0, 0, false, fn_anyfalse},
	{"anyTrue", 0, 0, false, fn_anytrue},
	{"as", 1, 1, true, fn_as},
	{"ceiling", 0, 0, false, fn_ceiling},
	{"checkModifiers", 1, 1, false, NULL},
	{"children", 0, 0, false, fn_children},
	{"combine", 1, 1, false, fn_combine},
	{"contains", 1, 1, false, fn_contains},
	{"convertsToBoolean", 0, 0, false, fn_ctoboolean},
	{"convertsToDate", 0, 0, false, fn_ctodate},
	{"convertsToDateTime", 0, 0, false, fn_ctodatetime},
	{"convertsToDecimal", 0, 0, false, fn_ctodecimal},
	{"convertsToInteger", 0, 0, false, fn_ctointeger},
	{"convertsToQuantity", 0, 1, false, fn_ctoquantity},
	{"convertsToString", 0, 0, false, fn_ctostring},
	{"convertsToTime", 0, 0, false, fn_ctotime},
	{"count", 0, 0, false, fn_count},
	{"descendants", 0, 0, false, fn_descendants},
	{"distinct", 0, 0, false, fn_distinct},
	{"elementDefinition", 0, 0, false, NULL},
	{"empty", 0, 0, false, fn_empty},
	{"endsWith", 1, 1, false, fn_endswith},
	{"exclude", 1, 1, false, fn_exclude},
	{"exists", 0, 1, false, fn_exists},
	{"exp", 0, 0, false, fn_exp},
	{"extension", 1, 1, false, fn_extension},
	{"first", 0, 0, false, fn_first},
	{"floor", 0, 0, false, fn_floor},
	{"hasValue", 0, 0, false, fn_hasvalue},
	{"htmlChecks", 0, 0, false, NULL},
	{"iif", 2, 3, false, fn_iif},
	{"indexOf", 1, 1, false, fn_indexof},
	{"intersect", 1, 1, false, fn_intersect},
	{"is", 1, 1, true, fn_is},
	{"isDistinct", 0, 0, false, fn_isdistinct},
	{"last", 0, 0, false, fn_last},
	{"length", 0, 0, false, fn_length},
	{"ln", 0, 0, false, fn_ln},
	{"log", 1, 1, false, fn_log},
	{"lower", 0, 0, false, fn_lower},
	{"matches", 1, 1, false, fn_matches},
	{"memberOf", 1, 1, false, NULL},
	{"not", 0, 0, false, fn_not},
	{"now", 0, 0, false, fn_now},
	{"ofType", 1, 1, true, fn_oftype},
	{"power", 1, 1, false, fn_power},
	{"repeat", 1, 1, false, fn_repeat},
	{"replace", 2, 2, false, fn_replace},
	{"replaceMatches", 2, 2, false, fn_replacematches},
	{"resolve", 0, 0, false, fn_resolve},
	{"round", 0, 1, false, fn_round},
	{"select", 1, 1, false, fn_select},
	{"single", 0, 0, false, fn_single},
	{"skip", 1, 1, false, fn_skip},
	{"slice", 2, 2, false, NULL},
	{"sqrt", 0, 0, false, fn_sqrt},
	{"startsWith", 1, 1, false, fn_startswith},
	{"subsetOf", 1, 1, false, fn_subsetof},
	{"substring", 1, 2, false, fn_substring},
	{"supersetOf", 1, 1, false, fn_supersetof},
	{"tail", 0, 0, false, fn_tail},
	{"take", 1, 1, false, fn_take},
	{"timeOfDay", 0, 0, false, fn_timeofday},
	{"toBoolean", 0, 0, false, fn_toboolean},
	{"toChars", 0, 0, false, fn_tochars},
	{"toDate", 0, 0, false, fn_todate},
	{"toDateTime", 0, 0, false, fn_todatetime},
	{"toDecimal", 0, 0, false, fn_todecimal},
	{"toInteger", 0, 0, false, fn_tointeger},
	{"toQuantity", 0, 1, false, fn_toquantity},
	{"toString", 0, 0, false, fn_tostring},
	{"toTime", 0, 0, false, fn_totime},
	{"today", 0, 0, false, fn_today},
	{"trace", 1, 2, false, fn_trace},
	{"truncate", 0, 0, false, fn_truncate},
	{"union", 1, 1, false, fn_union},
	{"upper", 0, 0, false, fn_upper},
	{"where", 1, 1, false, fn_where},
	{"sort", 0, 4, false, fn_sort},
	{"conformsTo", 1, 1, false, fn_conformsto},
	{"precision", 0, 0, false, fn_precision},
	{"lowBoundary", 0, 1, false, fn_lowboundary},
	{"highBoundary", 0, 1, false, fn_highboundary},
	{"comparable", 1, 1, false, fn_comparable},
	{"type", 0, 0, false, fn_type},
	{"matchesFull", 1, 1, false, fn_matchesfull},
	{"unescape", 1, 1, false, fn_unescape},
	{"escape", 1, 1, false, fn_escape},
	{"decode", 1, 1, false, fn_decode},
	{"encode", 1, 1, false, fn_encode},
	{"split", 1, 1, false, fn_split},
	{"join", 0, 1, false, fn_join},
	{"trim", 0, 0, false, fn_trim},
};

const fp_fn_t *fp_fn_find(const char *name)
{
	/* linear: only compilation looks functions up */
	for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		if (strcmp(fns[i].name, name) == 0)
			return &fns[i];
	}
	return NULL;
}
