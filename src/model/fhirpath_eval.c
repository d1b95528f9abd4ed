/*
 * fhirpath_eval.c - evaluation of a compiled FHIRPath tree over a json-c
 * resource: navigation with FHIR's JSON shape (arrays flattened, choice
 * elements by their type suffix, primitives paired with `_element`
 * siblings), types from the model, equality and ordering of system values,
 * the operators, and the bounds (depth, items, steps).
 */
#include "model/fhirpath_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- context helpers ------------------------------------------------------ */

cv_rc fp_fail(fp_ev_t *ev, cv_rc rc, const char *fmt, ...)
{
	va_list ap;

	if (ev->err && ev->errlen && !ev->err[0]) {
		va_start(ap, fmt);
		vsnprintf(ev->err, ev->errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

cv_rc fp_step(fp_ev_t *ev)
{
	if (++ev->steps > FP_MAX_STEPS)
		return fp_fail(ev, CV_E_LIMIT, "evaluation took more than %u steps", FP_MAX_STEPS);
	return CV_OK;
}

cv_rc fp_push(fp_ev_t *ev, fp_coll_t *c, const cv_fp_item_t *it)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 4;
		cv_fp_item_t *v;
		if (c->n >= FP_MAX_ITEMS)
			return fp_fail(ev, CV_E_LIMIT, "a collection grew past %u items", FP_MAX_ITEMS);
		if (cap > FP_MAX_ITEMS)
			cap = FP_MAX_ITEMS;
		ev->bytes += cap * sizeof(*v);
		if (ev->bytes > FP_MAX_BYTES)
			return fp_fail(ev, CV_E_LIMIT, "evaluation used more than %u bytes", FP_MAX_BYTES);
		v = cv_pool_alloc(ev->pool, cap * sizeof(*v));
		if (!v)
			return CV_E_NOMEM;
		if (c->n)
			memcpy(v, c->v, c->n * sizeof(*v));
		c->v = v;
		c->cap = cap;
	}
	if (it->kind == CV_FP_STRING && it->s) {
		/* computed strings count too: `$this & $this` doubles at each step */
		ev->bytes += strlen(it->s);
		if (ev->bytes > FP_MAX_BYTES)
			return fp_fail(ev, CV_E_LIMIT, "evaluation used more than %u bytes", FP_MAX_BYTES);
	}
	c->v[c->n++] = *it;
	return fp_step(ev);
}

cv_rc fp_push_bool(fp_ev_t *ev, fp_coll_t *c, bool b)
{
	cv_fp_item_t it = {.kind = CV_FP_BOOLEAN, .b = b};

	return fp_push(ev, c, &it);
}

cv_rc fp_push_int(fp_ev_t *ev, fp_coll_t *c, int64_t i)
{
	cv_fp_item_t it = {.kind = CV_FP_INTEGER, .i = i, .d = (double)i};

	return fp_push(ev, c, &it);
}

cv_rc fp_push_str(fp_ev_t *ev, fp_coll_t *c, const char *s)
{
	cv_fp_item_t it = {.kind = CV_FP_STRING, .s = s};

	if (!s)
		return CV_E_NOMEM;
	return fp_push(ev, c, &it);
}

const char *fp_dec_text(fp_ev_t *ev, double d)
{
	char buf[64];

	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, d);
		if (strtod(buf, NULL) == d || prec == 15)
			break;
	}
	if (strchr(buf, 'e')) /* FHIRPath decimals have no exponent */
		snprintf(buf, sizeof(buf), "%.8f", d);
	return cv_pool_strdup(ev->pool, buf);
}

cv_rc fp_push_dec(fp_ev_t *ev, fp_coll_t *c, double d)
{
	cv_fp_item_t it = {.kind = CV_FP_DECIMAL, .d = d};

	if (!isfinite(d))
		return CV_OK; /* overflow: empty */
	it.s = fp_dec_text(ev, d);
	if (!it.s)
		return CV_E_NOMEM;
	return fp_push(ev, c, &it);
}

cv_rc fp_truth(fp_ev_t *ev, const fp_coll_t *c, int *out)
{
	cv_fp_item_t v;

	*out = -1;
	if (c->n == 0)
		return CV_OK;
	if (c->n > 1)
		return fp_fail(ev, CV_E_INVALID, "a boolean was expected but a collection of %zu items was found", c->n);
	if (fp_sysval(ev, &c->v[0], &v) && v.kind == CV_FP_BOOLEAN)
		*out = v.b;
	else
		*out = 1; /* a single non-boolean item is true */
	return CV_OK;
}

/* ---- system values ---------------------------------------------------------- */

static bool type_in(const char *t, const char *const *names)
{
	for (int i = 0; t && names[i]; i++) {
		if (strcmp(t, names[i]) == 0)
			return true;
	}
	return false;
}

static json_object *member(json_object *obj, const char *key)
{
	json_object *v = NULL;

	if (!obj || !json_object_is_type(obj, json_type_object) || !json_object_object_get_ex(obj, key, &v))
		return NULL;
	return v;
}

/* The text of a JSON number without json_object_get_string(), which caches
 * its output in the object: evaluation never writes to the input tree, so
 * threads may share it. A decimal made by the strict parser carries its
 * source text as userdata (json_object_new_double_s). */
static const char *num_text(fp_ev_t *ev, json_object *n)
{
	if (json_object_is_type(n, json_type_double)) {
		const char *ud = json_object_get_userdata(n);
		return ud ? ud : fp_dec_text(ev, json_object_get_double(n));
	}
	return cv_pool_printf(ev->pool, "%lld", (long long)json_object_get_int64(n));
}

static const char *str_of(json_object *v)
{
	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static bool quantity_of(fp_ev_t *ev, const cv_fp_item_t *in, cv_fp_item_t *out)
{
	json_object *v = member(in->node, "value");
	json_object *code = member(in->node, "code");
	json_object *unit = member(in->node, "unit");

	if (!v || !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
		return false;
	*out = (cv_fp_item_t){.kind = CV_FP_QUANTITY};
	out->d = json_object_get_double(v);
	out->s = num_text(ev, v);
	out->unit = str_of(code) ? str_of(code) : str_of(unit) ? str_of(unit) : "1";
	return out->s != NULL;
}

bool fp_sysval(fp_ev_t *ev, const cv_fp_item_t *in, cv_fp_item_t *out)
{
	static const char *const ints[] = {"integer", "positiveInt", "unsignedInt", NULL};
	static const char *const dts[] = {"dateTime", "instant", NULL};
	json_object *n = in->node;
	const char *t = in->type;

	if (in->kind != CV_FP_NODE) {
		*out = *in;
		return true;
	}
	if (!n)
		return false;
	if (json_object_is_type(n, json_type_object)) {
		if (t && cv_model_type_derives(ev->env->model, t, "Quantity"))
			return quantity_of(ev, in, out);
		return false;
	}
	if (json_object_is_type(n, json_type_array) || json_object_is_type(n, json_type_null))
		return false;
	*out = (cv_fp_item_t){.kind = CV_FP_STRING};
	if (json_object_is_type(n, json_type_boolean)) {
		out->kind = CV_FP_BOOLEAN;
		out->b = json_object_get_boolean(n);
	} else if (json_object_is_type(n, json_type_int) && (!t || type_in(t, ints))) {
		out->kind = CV_FP_INTEGER;
		out->i = json_object_get_int64(n);
		out->d = (double)out->i;
	} else if (json_object_is_type(n, json_type_int) || json_object_is_type(n, json_type_double)) {
		out->kind = CV_FP_DECIMAL;
		out->d = json_object_get_double(n);
		out->s = num_text(ev, n);
		if (!out->s)
			return false;
	} else {
		out->s = json_object_get_string(n);
		if (t && strcmp(t, "date") == 0)
			out->kind = CV_FP_DATE;
		else if (t && type_in(t, dts))
			out->kind = CV_FP_DATETIME;
		else if (t && strcmp(t, "time") == 0)
			out->kind = CV_FP_TIME;
	}
	return true;
}

/* ---- dates and times ------------------------------------------------------- */

typedef struct dt {
	int f[7];  /* year month day hour minute second millisecond */
	int prec;  /* fields present */
	bool tz;
	int tzmin; /* offset east of UTC in minutes */
} dt_t;

static int ndig(const char **s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (**s < '0' || **s > '9')
			return -1;
		v = v * 10 + (**s - '0');
		(*s)++;
	}
	return v;
}

static bool parse_time_part(const char **s, dt_t *d, int base)
{
	static const char seps[] = {':', ':', '.'};

	for (int i = 0; i < 3; i++) {
		int v = ndig(s, 2);
		if (v < 0)
			return i > 0 ? false : false;
		d->f[base + i] = v;
		d->prec = base + i + 1;
		if (**s != seps[i])
			return true;
		(*s)++;
		if (i == 2) {
			int ms = 0, k = 0;
			while (**s >= '0' && **s <= '9') {
				if (k < 3)
					ms = ms * 10 + (**s - '0');
				k++;
				(*s)++;
			}
			if (k == 0)
				return false;
			for (; k < 3; k++)
				ms *= 10;
			d->f[6] = ms;
			d->prec = 7;
			return true;
		}
	}
	return true;
}

static bool parse_tz(const char **s, dt_t *d)
{
	int sign, h, m;

	if (**s == 'Z') {
		(*s)++;
		d->tz = true;
		return true;
	}
	if (**s != '+' && **s != '-')
		return true;
	sign = **s == '-' ? -1 : 1;
	(*s)++;
	h = ndig(s, 2);
	if (h < 0 || **s != ':')
		return false;
	(*s)++;
	m = ndig(s, 2);
	if (m < 0)
		return false;
	d->tz = true;
	d->tzmin = sign * (h * 60 + m);
	return true;
}

/* Parses a date, dateTime or (time_only) time text. */
static bool parse_dt(const char *s, bool time_only, dt_t *d)
{
	memset(d, 0, sizeof(*d));
	if (time_only) {
		if (*s == 'T')
			s++;
		return parse_time_part(&s, d, 3) && *s == '\0';
	}
	if ((d->f[0] = ndig(&s, 4)) < 0)
		return false;
	d->prec = 1;
	for (int i = 1; i < 3 && *s == '-'; i++) {
		s++;
		if ((d->f[i] = ndig(&s, 2)) < 0)
			return false;
		d->prec = i + 1;
	}
	if (*s == 'T') {
		s++;
		if (*s && !parse_time_part(&s, d, 3))
			return false;
	}
	return parse_tz(&s, d) && *s == '\0';
}

static int64_t days_from_civil(int64_t y, int m, int dd)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (unsigned)((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + dd - 1);
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *dd)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*dd = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

/* Moves d to UTC (when it has a zone and a time of day). */
static void to_utc(dt_t *d)
{
	int64_t days, mins;

	if (!d->tz || d->prec < 5)
		return;
	days = days_from_civil(d->f[0], d->f[1] ? d->f[1] : 1, d->f[2] ? d->f[2] : 1);
	mins = days * 1440 + d->f[3] * 60 + d->f[4] - d->tzmin;
	days = mins >= 0 ? mins / 1440 : -((-mins + 1439) / 1440);
	mins -= days * 1440;
	civil_from_days(days, &d->f[0], &d->f[1], &d->f[2]);
	d->f[3] = (int)(mins / 60);
	d->f[4] = (int)(mins % 60);
	d->tzmin = 0;
}

int fp_dt_cmp(const char *a, const char *b, bool time_only)
{
	dt_t x, y;
	int pa, pb, pmin, start = time_only ? 3 : 0;

	if (!parse_dt(a, time_only, &x) || !parse_dt(b, time_only, &y))
		return 2;
	if (x.tz && y.tz) {
		to_utc(&x);
		to_utc(&y);
	} else if (x.tz != y.tz && x.prec >= 4 && y.prec >= 4) {
		return 2; /* one has a zone, the other not: unknown */
	}
	/* seconds and milliseconds are one precision */
	pa = x.prec == 6 ? 7 : x.prec;
	pb = y.prec == 6 ? 7 : y.prec;
	pmin = pa < pb ? pa : pb;
	for (int i = start; i < pmin; i++) {
		if (x.f[i] != y.f[i])
			return x.f[i] < y.f[i] ? -1 : 1;
	}
	return pa == pb ? 0 : 2;
}

/* ---- types ------------------------------------------------------------------ */

static const char *sys_type_name(cv_fp_kind k)
{
	switch (k) {
	case CV_FP_BOOLEAN: return "Boolean";
	case CV_FP_INTEGER: return "Integer";
	case CV_FP_DECIMAL: return "Decimal";
	case CV_FP_STRING: return "String";
	case CV_FP_DATE: return "Date";
	case CV_FP_DATETIME: return "DateTime";
	case CV_FP_TIME: return "Time";
	case CV_FP_QUANTITY: return "Quantity";
	default: return NULL;
	}
}

bool fp_type_known(fp_ev_t *ev, const char *tname)
{
	static const char *const sys[] = {"Boolean", "Integer", "Decimal", "String", "Date",
					  "DateTime", "Time", "Quantity", NULL};
	bool fhir = strncmp(tname, "FHIR.", 5) == 0, system = strncmp(tname, "System.", 7) == 0;
	const char *n = fhir ? tname + 5 : system ? tname + 7 : tname;

	if (!system && cv_model_type_known(ev->env->model, n))
		return true;
	return system || type_in(n, sys); /* an unknown System type is simply never matched */
}

bool fp_is_exactly(fp_ev_t *ev, const cv_fp_item_t *it, const char *tname)
{
	const char *n = strncmp(tname, "FHIR.", 5) == 0 ? tname + 5 : tname;

	/* primitives match their own type only (code is not a string here), as
	   the R4 suite expects of as() and ofType(); complex types by derivation */
	if (it->kind == CV_FP_NODE && it->type && cv_model_type_is_primitive(ev->env->model, it->type) &&
	    strncmp(tname, "System.", 7) != 0)
		return strcmp(it->type, n) == 0;
	return fp_is_type(ev, it, tname);
}

bool fp_is_type(fp_ev_t *ev, const cv_fp_item_t *it, const char *tname)
{
	bool fhir_only = false, sys_only = false;

	if (strncmp(tname, "FHIR.", 5) == 0) {
		tname += 5;
		fhir_only = true;
	} else if (strncmp(tname, "System.", 7) == 0) {
		tname += 7;
		sys_only = true;
	}
	if (it->kind != CV_FP_NODE) {
		const char *sn = sys_type_name(it->kind);
		return !fhir_only && sn && strcmp(sn, tname) == 0;
	}
	if (sys_only || !it->type)
		return false;
	return cv_model_type_derives(ev->env->model, it->type, tname);
}

/* ---- navigation ------------------------------------------------------------- */

/* The type of a child value: a resource's own type for Resource-typed
 * elements, else the declared one. */
static const char *value_type(fp_ev_t *ev, const char *declared, json_object *v)
{
	json_object *rt = member(v, "resourceType");

	if (rt && json_object_is_type(rt, json_type_string) &&
	    (!declared || strcmp(declared, "Resource") == 0 || strcmp(declared, "DomainResource") == 0 ||
	     cv_model_is_resource(ev->env->model, json_object_get_string(rt)))) {
		const char *t = cv_model_type_name(ev->env->model, json_object_get_string(rt));
		return t ? t : declared;
	}
	return declared;
}

/* The FHIR type of a JSON primitive at a position the model does not know
 * (a type() result, an element of an unknown type); NULL for objects. */
static const char *json_type_name(json_object *v)
{
	if (!v)
		return NULL;
	switch (json_object_get_type(v)) {
	case json_type_string: return "string";
	case json_type_boolean: return "boolean";
	case json_type_int: return "integer";
	case json_type_double: return "decimal";
	default: return NULL;
	}
}

/* Pushes the values of one element: v (value, array or not) paired with
 * its `_element` sibling x, typed type (elem: backbone definition). */
static cv_rc push_values(fp_ev_t *ev, json_object *v, json_object *x, const char *type,
			 const cv_model_elem_t *elem, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	bool va = v && json_object_is_type(v, json_type_array);
	bool xa = x && json_object_is_type(x, json_type_array);
	size_t n = va ? json_object_array_length(v) : xa ? json_object_array_length(x) : (v || x) ? 1 : 0;

	for (size_t i = 0; i < n && !rc; i++) {
		cv_fp_item_t it = {.kind = CV_FP_NODE, .elem = elem};
		json_object *vi = va ? json_object_array_get_idx(v, i) : (v && !xa ? v : NULL);
		json_object *xi = xa ? json_object_array_get_idx(x, i) : (x && !va ? x : NULL);

		if (xi && !json_object_is_type(xi, json_type_object))
			xi = NULL;
		if (vi && json_object_is_type(vi, json_type_null))
			vi = NULL;
		if (!vi && !xi)
			continue;
		it.node = vi ? vi : xi;
		it.ext = xi;
		it.type = value_type(ev, type ? type : json_type_name(vi), it.node);
		rc = fp_push(ev, out, &it);
	}
	return rc;
}

static json_object *sibling(fp_ev_t *ev, json_object *obj, const char *key)
{
	char buf[128];

	if (strlen(key) + 2 > sizeof(buf))
		return NULL;
	buf[0] = '_';
	memcpy(buf + 1, key, strlen(key) + 1);
	return member(obj, buf);
}

static const char *elem_type1(const cv_model_elem_t *e)
{
	return cv_model_elem_type_count(e) >= 1 ? cv_model_elem_type(e, 0) : NULL;
}

/* Children of the `_element` object of a primitive: id and extension. */
static cv_rc prim_children(fp_ev_t *ev, const cv_fp_item_t *it, const char *name, fp_coll_t *out)
{
	cv_rc rc = CV_OK;

	if (!it->ext)
		return CV_OK;
	if (!name || strcmp(name, "id") == 0)
		rc = push_values(ev, member(it->ext, "id"), NULL, "string", NULL, out);
	if (!rc && (!name || strcmp(name, "extension") == 0))
		rc = push_values(ev, member(it->ext, "extension"), NULL, "Extension", NULL, out);
	return rc;
}

/* Values of the element a JSON key names in obj (type/elem: obj's position). */
static cv_rc key_values(fp_ev_t *ev, const cv_fp_item_t *it, const char *key, json_object *val, fp_coll_t *out)
{
	const char *ctype = NULL;
	const cv_model_elem_t *e = cv_model_elem_by_key(ev->env->model, it->elem ? NULL : it->type, it->elem, key, &ctype);
	const char *type = ctype ? ctype : elem_type1(e);
	const cv_model_elem_t *bb = e && cv_model_elem_is_backbone(e) ? e : NULL;

	return push_values(ev, val, sibling(ev, it->node, key), type, bb, out);
}

static cv_rc choice_values(fp_ev_t *ev, const cv_fp_item_t *it, const cv_model_elem_t *e, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	const char *name = cv_model_elem_name(e);
	size_t len = strlen(name);

	json_object_object_foreach(it->node, key, val) {
		const char *ctype = NULL;
		if (rc)
			break;
		if (strncmp(key, name, len) != 0 || !key[len])
			continue;
		if (cv_model_elem_by_key(ev->env->model, it->elem ? NULL : it->type, it->elem, key, &ctype) != e || !ctype)
			continue;
		rc = push_values(ev, val, sibling(ev, it->node, key), ctype, NULL, out);
	}
	/* a choice primitive with only its `_valueX` sibling */
	json_object_object_foreach(it->node, k2, v2) {
		const char *ctype = NULL;
		if (rc)
			break;
		if (k2[0] != '_' || strncmp(k2 + 1, name, len) != 0 || member(it->node, k2 + 1))
			continue;
		if (cv_model_elem_by_key(ev->env->model, it->elem ? NULL : it->type, it->elem, k2 + 1, &ctype) != e)
			continue;
		rc = push_values(ev, NULL, v2, ctype, NULL, out);
	}
	return rc;
}

static bool is_complex_position(fp_ev_t *ev, const cv_fp_item_t *it)
{
	if (it->elem)
		return true;
	return it->type && cv_model_type_known(ev->env->model, it->type) && strcmp(it->type, "Resource") != 0 &&
	       !cv_model_type_is_primitive(ev->env->model, it->type);
}

/* All children of an object item (children()). */
static cv_rc all_children(fp_ev_t *ev, const cv_fp_item_t *it, fp_coll_t *out)
{
	cv_rc rc = CV_OK;

	json_object_object_foreach(it->node, key, val) {
		if (rc)
			break;
		if (strcmp(key, "resourceType") == 0)
			continue;
		if (key[0] == '_') {
			if (!member(it->node, key + 1))
				rc = key_values(ev, it, key + 1, NULL, out);
			continue;
		}
		rc = key_values(ev, it, key, val, out);
	}
	return rc;
}

bool fp_knows(fp_ev_t *ev, const cv_fp_item_t *it, const char *name)
{
	if (it->kind != CV_FP_NODE || it->stub || !is_complex_position(ev, it))
		return true;
	if (!json_object_is_type(it->node, json_type_object))
		return strcmp(name, "extension") == 0 || strcmp(name, "id") == 0;
	return cv_model_elem(ev->env->model, it->elem ? NULL : it->type, it->elem, name) != NULL;
}

cv_rc fp_children(fp_ev_t *ev, const cv_fp_item_t *it, const char *name, fp_coll_t *out)
{
	const cv_model_elem_t *e;
	json_object *v;

	if (it->kind != CV_FP_NODE || !it->node || it->stub)
		return CV_OK;
	if (!json_object_is_type(it->node, json_type_object) ||
	    (it->type && cv_model_type_is_primitive(ev->env->model, it->type)))
		return prim_children(ev, it, name, out);
	if (!name)
		return all_children(ev, it, out);
	e = cv_model_elem(ev->env->model, it->elem ? NULL : it->type, it->elem, name);
	if (e && cv_model_elem_is_choice(e))
		return choice_values(ev, it, e, out);
	v = member(it->node, name);
	if (e) {
		const cv_model_elem_t *bb = cv_model_elem_is_backbone(e) ? e : NULL;
		return push_values(ev, v, sibling(ev, it->node, name), elem_type1(e), bb, out);
	}
	if (!is_complex_position(ev, it) && (v || sibling(ev, it->node, name)))
		return push_values(ev, v, sibling(ev, it->node, name), NULL, NULL, out);
	return CV_OK;
}

/* ---- equality ---------------------------------------------------------------- */

static bool is_num(cv_fp_kind k)
{
	return k == CV_FP_INTEGER || k == CV_FP_DECIMAL;
}

static bool is_dt(cv_fp_kind k)
{
	return k == CV_FP_DATE || k == CV_FP_DATETIME;
}

static bool dec_eq(double a, double b)
{
	double m = fmax(1.0, fmax(fabs(a), fabs(b)));

	return fabs(a - b) <= 1e-12 * m;
}

/* Decimal places of a number's text. */
static int places(const char *s)
{
	const char *dot = s ? strchr(s, '.') : NULL;

	return dot ? (int)strlen(dot + 1) : 0;
}

/* A unit's dimension and its factor to that dimension's base unit (UCUM
 * subset: mass, length, volume, time and the calendar words). */
static void unit_canon(const char *u, const char **dim, double *f)
{
	static const struct {
		const char *u, *dim;
		double f;
	} t[] = {
		{"g", "g", 1},          {"mg", "g", 1e-3},         {"ug", "g", 1e-6},        {"kg", "g", 1e3},
		{"ng", "g", 1e-9},      {"m", "m", 1},             {"cm", "m", 1e-2},        {"mm", "m", 1e-3},
		{"km", "m", 1e3},       {"um", "m", 1e-6},         {"[in_i]", "m", 0.0254},  {"L", "L", 1},
		{"mL", "L", 1e-3},      {"dL", "L", 1e-1},         {"s", "s", 1},            {"ms", "s", 1e-3},
		{"min", "s", 60},       {"h", "s", 3600},          {"d", "s", 86400},        {"wk", "s", 604800},
		{"second", "s", 1},     {"seconds", "s", 1},       {"millisecond", "s", 1e-3}, {"milliseconds", "s", 1e-3},
		{"minute", "s", 60},    {"minutes", "s", 60},      {"hour", "s", 3600},      {"hours", "s", 3600},
		{"day", "s", 86400},    {"days", "s", 86400},      {"week", "s", 604800},    {"weeks", "s", 604800},
		{"year", "year", 1},    {"years", "year", 1},      {"month", "year", 1.0 / 12}, {"months", "year", 1.0 / 12},
		{"a", "a", 1},          {"mo", "a", 1.0 / 12},
	};

	*dim = u ? u : "1";
	*f = 1;
	for (size_t i = 0; u && i < sizeof(t) / sizeof(t[0]); i++) {
		if (strcmp(u, t[i].u) == 0) {
			*dim = t[i].dim;
			*f = t[i].f;
			return;
		}
	}
}

/* b's value in a's unit; false if the units are not comparable. */
static bool qty_align(const cv_fp_item_t *a, const cv_fp_item_t *b, double *bv)
{
	const char *da, *db;
	double fa, fb;

	unit_canon(a->unit, &da, &fa);
	unit_canon(b->unit, &db, &fb);
	if (strcmp(da, db) != 0)
		return false;
	*bv = b->d * fb / fa;
	return true;
}

bool fp_qty_comparable(const cv_fp_item_t *a, const cv_fp_item_t *b)
{
	double bv;

	return qty_align(a, b, &bv);
}

static bool unit_eq(const char *a, const char *b)
{
	static const char *const cal[][2] = {
		{"year", "a"},  {"years", "a"},  {"month", "mo"},  {"months", "mo"}, {"week", "wk"},
		{"weeks", "wk"}, {"day", "d"},   {"days", "d"},    {"hour", "h"},    {"hours", "h"},
		{"minute", "min"}, {"minutes", "min"}, {"second", "s"}, {"seconds", "s"},
		{"millisecond", "ms"}, {"milliseconds", "ms"},
	};
	const char *ca = a, *cb = b;

	if (!a || !b)
		return a == b;
	for (size_t i = 0; i < sizeof(cal) / sizeof(cal[0]); i++) {
		if (strcmp(a, cal[i][0]) == 0)
			ca = cal[i][1];
		if (strcmp(b, cal[i][0]) == 0)
			cb = cal[i][1];
	}
	return strcmp(ca, cb) == 0;
}

/* Equality of two system values: 1, 0, -1 (unknown). */
static int sys_eq(const cv_fp_item_t *a, const cv_fp_item_t *b)
{
	if (is_num(a->kind) && is_num(b->kind)) {
		if (a->kind == CV_FP_INTEGER && b->kind == CV_FP_INTEGER)
			return a->i == b->i;
		return dec_eq(a->d, b->d);
	}
	if (is_dt(a->kind) && is_dt(b->kind)) {
		int c = fp_dt_cmp(a->s, b->s, false);
		return c == 2 ? -1 : c == 0;
	}
	if (a->kind != b->kind)
		return 0;
	switch (a->kind) {
	case CV_FP_BOOLEAN: return a->b == b->b;
	case CV_FP_STRING: return strcmp(a->s, b->s) == 0;
	case CV_FP_TIME: {
		int c = fp_dt_cmp(a->s, b->s, true);
		return c == 2 ? -1 : c == 0;
	}
	case CV_FP_QUANTITY: {
		double bv, f;
		const char *da, *db;
		if (!qty_align(a, b, &bv)) {
			/* calendar years/months against UCUM 'a'/'mo': unknown */
			unit_canon(a->unit, &da, &f);
			unit_canon(b->unit, &db, &f);
			return (strcmp(da, "year") == 0 && strcmp(db, "a") == 0) ||
			       (strcmp(da, "a") == 0 && strcmp(db, "year") == 0) ? -1 : 0;
		}
		return dec_eq(a->d, bv);
	}
	default: return 0;
	}
}

int fp_item_eq(fp_ev_t *ev, const cv_fp_item_t *a, const cv_fp_item_t *b)
{
	cv_fp_item_t x, y;
	bool sa = fp_sysval(ev, a, &x), sb = fp_sysval(ev, b, &y);

	if (sa && sb)
		return sys_eq(&x, &y);
	if (!sa && !sb && a->kind == CV_FP_NODE && b->kind == CV_FP_NODE)
		return json_object_equal(a->node, b->node) ? 1 : 0;
	return 0;
}

/* Lowercase, whitespace-collapsed comparison. */
static bool str_equiv(const char *a, const char *b)
{
	for (;;) {
		while (*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r') {
			a++;
			if (!(*a == ' ' || *a == '\t' || *a == '\n' || *a == '\r') && *b != ' ' && *b != '\t' &&
			    *b != '\n' && *b != '\r')
				return false;
		}
		while (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r')
			b++;
		if (!*a || !*b)
			return !*a && !*b;
		if ((*a | 0x20) != (*b | 0x20) && !(((unsigned char)*a >= 0x80) && *a == *b))
			return false;
		a++;
		b++;
	}
}

bool fp_item_equiv(fp_ev_t *ev, const cv_fp_item_t *a, const cv_fp_item_t *b)
{
	cv_fp_item_t x, y;
	bool sa = fp_sysval(ev, a, &x), sb = fp_sysval(ev, b, &y);

	if (!sa || !sb)
		return !sa && !sb && a->kind == CV_FP_NODE && b->kind == CV_FP_NODE && json_object_equal(a->node, b->node);
	if (is_num(x.kind) && is_num(y.kind)) {
		int p = places(x.kind == CV_FP_DECIMAL ? x.s : NULL), q = places(y.kind == CV_FP_DECIMAL ? y.s : NULL);
		int m = p < q ? p : q;
		double f = pow(10.0, m);
		return dec_eq(round(x.d * f) / f, round(y.d * f) / f);
	}
	if (x.kind == CV_FP_STRING && y.kind == CV_FP_STRING)
		return strcasecmp(x.s, y.s) == 0 || str_equiv(x.s, y.s);
	if (x.kind == CV_FP_QUANTITY && y.kind == CV_FP_QUANTITY) {
		double bv, f;
		int p = places(x.s), q = places(y.s), m = p < q ? p : q;
		if (!qty_align(&x, &y, &bv))
			return false;
		f = pow(10.0, m);
		return dec_eq(round(x.d * f) / f, round(bv * f) / f);
	}
	if ((is_dt(x.kind) && is_dt(y.kind)) || (x.kind == CV_FP_TIME && y.kind == CV_FP_TIME))
		return fp_dt_cmp(x.s, y.s, x.kind == CV_FP_TIME) == 0;
	return sys_eq(&x, &y) == 1;
}

/* ---- operators --------------------------------------------------------------- */

static cv_rc eq_op(fp_ev_t *ev, const fp_coll_t *l, const fp_coll_t *r, bool negate, fp_coll_t *out)
{
	int res = 1;

	if (l->n == 0 || r->n == 0)
		return CV_OK;
	if (l->n != r->n)
		return fp_push_bool(ev, out, negate);
	for (size_t i = 0; i < l->n && res == 1; i++) {
		int e = fp_item_eq(ev, &l->v[i], &r->v[i]);
		if (e != 1)
			res = e;
	}
	if (res < 0)
		return CV_OK;
	return fp_push_bool(ev, out, negate ? !res : res);
}

static cv_rc equiv_op(fp_ev_t *ev, const fp_coll_t *l, const fp_coll_t *r, bool negate, fp_coll_t *out)
{
	bool res = l->n == r->n;

	/* order does not matter: every item of l has an equivalent in r */
	for (size_t i = 0; i < l->n && res; i++) {
		bool found = false;
		cv_rc rc;
		for (size_t j = 0; j < r->n && !found; j++)
			found = fp_item_equiv(ev, &l->v[i], &r->v[j]);
		ev->steps += r->n;
		rc = fp_step(ev);
		if (rc)
			return rc;
		res = found;
	}
	return fp_push_bool(ev, out, negate ? !res : res);
}

static cv_rc singleton(fp_ev_t *ev, const fp_coll_t *c, const char *what, cv_fp_item_t *v, bool *have)
{
	*have = false;
	if (c->n == 0)
		return CV_OK;
	if (c->n > 1)
		return fp_fail(ev, CV_E_INVALID, "%s expects a single item, not %zu", what, c->n);
	if (!fp_sysval(ev, &c->v[0], v))
		return fp_fail(ev, CV_E_INVALID, "%s expects a primitive value", what);
	*have = true;
	return CV_OK;
}

static cv_rc compare_op(fp_ev_t *ev, fp_op op, const fp_coll_t *l, const fp_coll_t *r, fp_coll_t *out)
{
	cv_rc rc;
	cv_fp_item_t a, b;
	bool ha, hb;
	int c;

	rc = singleton(ev, l, "a comparison", &a, &ha);
	if (!rc)
		rc = singleton(ev, r, "a comparison", &b, &hb);
	if (rc || !ha || !hb)
		return rc;
	if (is_num(a.kind) && is_num(b.kind)) {
		c = a.kind == CV_FP_INTEGER && b.kind == CV_FP_INTEGER ? (a.i > b.i) - (a.i < b.i)
		    : dec_eq(a.d, b.d) ? 0 : a.d < b.d ? -1 : 1;
	} else if (a.kind == CV_FP_STRING && b.kind == CV_FP_STRING) {
		c = strcmp(a.s, b.s);
		c = (c > 0) - (c < 0);
	} else if ((is_dt(a.kind) && is_dt(b.kind)) || (a.kind == CV_FP_TIME && b.kind == CV_FP_TIME)) {
		c = fp_dt_cmp(a.s, b.s, a.kind == CV_FP_TIME);
		if (c == 2)
			return CV_OK;
	} else if (a.kind == CV_FP_QUANTITY && b.kind == CV_FP_QUANTITY) {
		double bv;
		if (!qty_align(&a, &b, &bv))
			return CV_OK;
		c = dec_eq(a.d, bv) ? 0 : a.d < bv ? -1 : 1;
	} else {
		return fp_fail(ev, CV_E_INVALID, "cannot compare %s with %s", sys_type_name(a.kind), sys_type_name(b.kind));
	}
	switch (op) {
	case OP_LT: return fp_push_bool(ev, out, c < 0);
	case OP_GT: return fp_push_bool(ev, out, c > 0);
	case OP_LE: return fp_push_bool(ev, out, c <= 0);
	default: return fp_push_bool(ev, out, c >= 0);
	}
}

static cv_rc logic_op(fp_ev_t *ev, fp_op op, const fp_coll_t *l, const fp_coll_t *r, fp_coll_t *out)
{
	cv_rc rc;
	int a, b, res = -1;

	rc = fp_truth(ev, l, &a);
	if (!rc)
		rc = fp_truth(ev, r, &b);
	if (rc)
		return rc;
	switch (op) {
	case OP_AND:
		res = (a == 0 || b == 0) ? 0 : (a == 1 && b == 1) ? 1 : -1;
		break;
	case OP_OR:
		res = (a == 1 || b == 1) ? 1 : (a == 0 && b == 0) ? 0 : -1;
		break;
	case OP_XOR:
		res = (a < 0 || b < 0) ? -1 : a != b;
		break;
	default: /* implies */
		res = a == 0 ? 1 : a == 1 ? b : (b == 1 ? 1 : -1);
		break;
	}
	return res < 0 ? CV_OK : fp_push_bool(ev, out, res == 1);
}

static cv_rc union_op(fp_ev_t *ev, const fp_coll_t *l, const fp_coll_t *r, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	const fp_coll_t *src[2] = {l, r};

	for (int s = 0; s < 2 && !rc; s++) {
		for (size_t i = 0; i < src[s]->n && !rc; i++) {
			bool dup = false;
			for (size_t j = 0; j < out->n && !dup; j++) {
				rc = fp_step(ev);
				dup = fp_item_eq(ev, &out->v[j], &src[s]->v[i]) == 1;
			}
			if (!dup && !rc)
				rc = fp_push(ev, out, &src[s]->v[i]);
		}
	}
	return rc;
}

static cv_rc member_op(fp_ev_t *ev, const fp_coll_t *item, const fp_coll_t *coll, fp_coll_t *out)
{
	bool found = false;

	if (item->n == 0)
		return CV_OK;
	if (item->n > 1)
		return fp_fail(ev, CV_E_INVALID, "membership expects a single item, not %zu", item->n);
	for (size_t i = 0; i < coll->n && !found; i++)
		found = fp_item_eq(ev, &item->v[0], &coll->v[i]) == 1;
	return fp_push_bool(ev, out, found);
}

static cv_rc push_qty(fp_ev_t *ev, fp_coll_t *out, double d, const char *unit)
{
	cv_fp_item_t it = {.kind = CV_FP_QUANTITY, .d = d, .unit = unit};

	it.s = fp_dec_text(ev, d);
	return it.s ? fp_push(ev, out, &it) : CV_E_NOMEM;
}

/* Writes d as FHIRPath date/dateTime/time text (without '@' / 'T' prefix for times). */
static void dt_format(const dt_t *dp, bool time_only, char *buf, size_t len)
{
	dt_t d = *dp;
	size_t n = 0;
	int prec = d.prec;

	buf[0] = '\0';
	if (!time_only) {
		n += (size_t)snprintf(buf + n, len - n, "%04d", d.f[0]);
		if (prec >= 2)
			n += (size_t)snprintf(buf + n, len - n, "-%02d", d.f[1]);
		if (prec >= 3)
			n += (size_t)snprintf(buf + n, len - n, "-%02d", d.f[2]);
		if (prec >= 4)
			n += (size_t)snprintf(buf + n, len - n, "T");
	}
	if (prec >= 4)
		n += (size_t)snprintf(buf + n, len - n, "%02d", d.f[3]);
	if (prec >= 5)
		n += (size_t)snprintf(buf + n, len - n, ":%02d", d.f[4]);
	if (prec >= 6)
		n += (size_t)snprintf(buf + n, len - n, ":%02d", d.f[5]);
	if (prec >= 7)
		n += (size_t)snprintf(buf + n, len - n, ".%03d", d.f[6]);
	if (d.tz && !time_only && n < len) {
		if (d.tzmin == 0)
			snprintf(buf + n, len - n, "Z");
		else
			snprintf(buf + n, len - n, "%c%02d:%02d", d.tzmin < 0 ? '-' : '+', abs(d.tzmin) / 60,
				 abs(d.tzmin) % 60);
	}
}

static int month_len(int y, int m)
{
	static const int md[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (m < 1 || m > 12)
		return 31;
	return md[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100) || y % 400 == 0));
}

/* Digits of precision per field count: date/dateTime, then time. */
static const int dt_digits[8] = {0, 4, 6, 8, 10, 12, 14, 17};
static const int tm_digits[8] = {0, 0, 0, 0, 2, 4, 6, 9};

int fp_dt_precision(const char *s, bool time_only)
{
	dt_t d;

	if (!parse_dt(s, time_only, &d))
		return -1;
	return time_only ? tm_digits[d.prec] : dt_digits[d.prec];
}

const char *fp_dt_boundary(fp_ev_t *ev, const char *s, bool time_only, int digits, bool high)
{
	static const int lo[7] = {0, 1, 1, 0, 0, 0, 0};
	dt_t d;
	int target = 0;
	char buf[64];

	if (!parse_dt(s, time_only, &d))
		return NULL;
	for (int i = time_only ? 4 : 1; i < 8; i++) {
		if ((time_only ? tm_digits[i] : dt_digits[i]) == digits)
			target = i;
	}
	if (!target)
		return NULL;
	if (d.prec == 4)
		d.prec = 5; /* "T08" reads as 08:00, as the suite expects */
	for (int i = d.prec; i < target; i++) {
		int hi[7] = {9999, 12, month_len(d.f[0], d.f[1]), 23, 59, 59, 999};
		d.f[i] = high ? hi[i] : lo[i];
	}
	d.prec = target;
	if (!time_only && target >= 4 && !d.tz) {
		d.tz = true;
		d.tzmin = high ? -12 * 60 : 14 * 60;
	}
	dt_format(&d, time_only, buf, sizeof(buf));
	return cv_pool_strdup(ev->pool, buf);
}

/* Adds sign * q (a calendar or UCUM time quantity) to a date/dateTime/time. */
static cv_rc date_add(fp_ev_t *ev, const cv_fp_item_t *a, const cv_fp_item_t *q, int sign, fp_coll_t *out)
{
	static const struct {
		const char *u;
		int field;
		int64_t mult;
	} units[] = {
		{"a", 0, 1}, {"mo", 1, 1}, {"wk", 2, 7}, {"d", 2, 1}, {"h", 3, 1}, {"min", 4, 1}, {"s", 5, 1}, {"ms", 6, 1},
	};
	dt_t d;
	int field = -1;
	int64_t amount = 0, days, secs;
	char buf[64];
	cv_fp_item_t it = *a;
	bool time_only = a->kind == CV_FP_TIME;

	if (!(fabs(q->d) <= 1e9))
		return CV_OK; /* beyond any calendar: empty */
	if (q->unit && (strcmp(q->unit, "a") == 0 || strcmp(q->unit, "mo") == 0))
		return fp_fail(ev, CV_E_INVALID, "use the calendar units year and month with dates, not 'a' or 'mo'");
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (unit_eq(q->unit, units[i].u)) {
			field = units[i].field;
			amount = (int64_t)trunc(q->d) * units[i].mult * sign;
		}
	}
	if (field < 0 || !parse_dt(a->s, time_only, &d))
		return fp_fail(ev, CV_E_INVALID, "cannot add a quantity of unit '%.32s' to a date", q->unit ? q->unit : "");
	if (field < 2 && time_only)
		return fp_fail(ev, CV_E_INVALID, "cannot add years or months to a time");
	if (field < 2) {
		int64_t months = d.f[0] * 12LL + (d.f[1] ? d.f[1] - 1 : 0) + (field == 0 ? amount * 12 : amount);
		if (months < 12 || months >= 10000 * 12LL)
			return CV_OK; /* outside years 1..9999: empty */
		d.f[0] = (int)(months / 12);
		if (d.prec >= 2)
			d.f[1] = (int)(months % 12) + 1;
		if (d.prec >= 3 && d.f[2] > month_len(d.f[0], d.f[1]))
			d.f[2] = month_len(d.f[0], d.f[1]);
	} else {
		int64_t unit_ms[] = {0, 0, 86400000LL, 3600000LL, 60000LL, 1000LL, 1LL};
		int64_t ms;
		days = time_only ? 0 : days_from_civil(d.f[0], d.f[1] ? d.f[1] : 1, d.f[2] ? d.f[2] : 1);
		ms = days * 86400000LL + d.f[3] * 3600000LL + d.f[4] * 60000LL + d.f[5] * 1000LL + d.f[6];
		ms += amount * unit_ms[field];
		days = ms >= 0 ? ms / 86400000LL : -((-ms + 86399999LL) / 86400000LL);
		secs = ms - days * 86400000LL;
		if (!time_only)
			civil_from_days(days, &d.f[0], &d.f[1], &d.f[2]);
		if (!time_only && (d.f[0] < 1 || d.f[0] > 9999))
			return CV_OK; /* outside years 1..9999: empty */
		d.f[3] = (int)(secs / 3600000LL);
		d.f[4] = (int)(secs / 60000LL % 60);
		d.f[5] = (int)(secs / 1000LL % 60);
		d.f[6] = (int)(secs % 1000LL);
	}
	dt_format(&d, time_only, buf, sizeof(buf));
	it.s = cv_pool_strdup(ev->pool, buf);
	return it.s ? fp_push(ev, out, &it) : CV_E_NOMEM;
}

/* Quantity times or by quantity, in the base units of both ("cm" * "m": "m2"). */
static cv_rc qty_muldiv(fp_ev_t *ev, fp_op op, const cv_fp_item_t *a, const cv_fp_item_t *b, fp_coll_t *out)
{
	const char *da, *db, *unit;
	double fa, fb, x, y;

	unit_canon(a->unit, &da, &fa);
	unit_canon(b->unit, &db, &fb);
	x = a->d * fa;
	y = b->d * fb;
	if (op == OP_DIV && y == 0)
		return CV_OK;
	if (op == OP_MUL)
		unit = strcmp(da, "1") == 0 ? db : strcmp(db, "1") == 0 ? da
		       : strcmp(da, db) == 0 ? cv_pool_printf(ev->pool, "%s2", da) : cv_pool_printf(ev->pool, "%s.%s", da, db);
	else
		unit = strcmp(da, db) == 0 ? "1" : strcmp(db, "1") == 0 ? da : cv_pool_printf(ev->pool, "%s/%s", da, db);
	if (!unit)
		return CV_E_NOMEM;
	return push_qty(ev, out, op == OP_MUL ? x * y : x / y, unit);
}

static cv_rc int_arith(fp_ev_t *ev, fp_op op, int64_t a, int64_t b, fp_coll_t *out)
{
	int64_t r;

	switch (op) {
	case OP_PLUS:
		if (__builtin_add_overflow(a, b, &r))
			return CV_OK;
		return fp_push_int(ev, out, r);
	case OP_MINUS:
		if (__builtin_sub_overflow(a, b, &r))
			return CV_OK;
		return fp_push_int(ev, out, r);
	case OP_MUL:
		if (__builtin_mul_overflow(a, b, &r))
			return CV_OK;
		return fp_push_int(ev, out, r);
	case OP_DIV:
		return b == 0 ? CV_OK : fp_push_dec(ev, out, (double)a / (double)b);
	case OP_IDIV:
		return b == 0 || (a == INT64_MIN && b == -1) ? CV_OK : fp_push_int(ev, out, a / b);
	default: /* mod */
		return b == 0 || (a == INT64_MIN && b == -1) ? CV_OK : fp_push_int(ev, out, a % b);
	}
}

/* Pushes d written with the given decimal places (a sum keeps its operands'
 * scale: 1.50 + 1 is 2.50), or as the shortest text when that is unknown. */
static cv_rc push_scaled(fp_ev_t *ev, fp_coll_t *out, double d, int scale)
{
	cv_fp_item_t it = {.kind = CV_FP_DECIMAL, .d = d};

	if (!isfinite(d))
		return CV_OK;
	if (scale < 0 || scale > 15 || fabs(d) >= 1e15)
		return fp_push_dec(ev, out, d);
	it.s = cv_pool_printf(ev->pool, "%.*f", scale, d);
	return it.s ? fp_push(ev, out, &it) : CV_E_NOMEM;
}

static cv_rc dec_arith(fp_ev_t *ev, fp_op op, const cv_fp_item_t *x, const cv_fp_item_t *y, fp_coll_t *out)
{
	double a = x->d, b = y->d;
	int pa = x->kind == CV_FP_DECIMAL ? places(x->s) : 0, pb = y->kind == CV_FP_DECIMAL ? places(y->s) : 0;

	switch (op) {
	case OP_PLUS: return push_scaled(ev, out, a + b, pa > pb ? pa : pb);
	case OP_MINUS: return push_scaled(ev, out, a - b, pa > pb ? pa : pb);
	case OP_MUL: return push_scaled(ev, out, a * b, pa + pb);
	case OP_DIV: return b == 0 ? CV_OK : fp_push_dec(ev, out, a / b);
	case OP_IDIV:
		if (b == 0 || !(fabs(a / b) <= 9e18))
			return CV_OK;
		return fp_push_int(ev, out, (int64_t)trunc(a / b));
	default: return b == 0 ? CV_OK : fp_push_dec(ev, out, fmod(a, b));
	}
}

static cv_rc arith_op(fp_ev_t *ev, fp_op op, const fp_coll_t *l, const fp_coll_t *r, fp_coll_t *out)
{
	cv_rc rc;
	cv_fp_item_t a, b;
	bool ha, hb;

	rc = singleton(ev, l, "arithmetic", &a, &ha);
	if (!rc)
		rc = singleton(ev, r, "arithmetic", &b, &hb);
	if (rc || !ha || !hb)
		return rc;
	if (a.kind == CV_FP_INTEGER && b.kind == CV_FP_INTEGER)
		return int_arith(ev, op, a.i, b.i, out);
	if (is_num(a.kind) && is_num(b.kind))
		return dec_arith(ev, op, &a, &b, out);
	if (a.kind == CV_FP_STRING && b.kind == CV_FP_STRING && op == OP_PLUS)
		return fp_push_str(ev, out, cv_pool_printf(ev->pool, "%s%s", a.s, b.s));
	if ((is_dt(a.kind) || a.kind == CV_FP_TIME) && b.kind == CV_FP_QUANTITY && (op == OP_PLUS || op == OP_MINUS))
		return date_add(ev, &a, &b, op == OP_PLUS ? 1 : -1, out);
	if (a.kind == CV_FP_QUANTITY && b.kind == CV_FP_QUANTITY && (op == OP_PLUS || op == OP_MINUS)) {
		if (!unit_eq(a.unit, b.unit))
			return CV_OK;
		return push_qty(ev, out, op == OP_PLUS ? a.d + b.d : a.d - b.d, a.unit);
	}
	if (a.kind == CV_FP_QUANTITY && b.kind == CV_FP_QUANTITY && (op == OP_MUL || op == OP_DIV))
		return qty_muldiv(ev, op, &a, &b, out);
	if (a.kind == CV_FP_QUANTITY && is_num(b.kind) && (op == OP_MUL || op == OP_DIV))
		return b.d == 0 && op == OP_DIV ? CV_OK : push_qty(ev, out, op == OP_MUL ? a.d * b.d : a.d / b.d, a.unit);
	if (is_num(a.kind) && b.kind == CV_FP_QUANTITY && op == OP_MUL)
		return push_qty(ev, out, a.d * b.d, b.unit);
	return fp_fail(ev, CV_E_INVALID, "cannot apply an arithmetic operator to %s and %s", sys_type_name(a.kind),
		       sys_type_name(b.kind));
}

static cv_rc concat_op(fp_ev_t *ev, const fp_coll_t *l, const fp_coll_t *r, fp_coll_t *out)
{
	cv_rc rc;
	cv_fp_item_t a = {.kind = CV_FP_STRING, .s = ""}, b = {.kind = CV_FP_STRING, .s = ""};
	bool ha, hb;

	rc = singleton(ev, l, "&", &a, &ha);
	if (!rc)
		rc = singleton(ev, r, "&", &b, &hb);
	if (rc)
		return rc;
	return fp_push_str(ev, out, cv_pool_printf(ev->pool, "%s%s", ha ? a.s : "", hb ? b.s : ""));
}

static cv_rc binary(fp_ev_t *ev, const fp_node_t *n, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t l = {0}, r = {0};

	rc = fp_eval(ev, n->left, focus, &l);
	if (rc)
		return rc;
	/* short-circuit the logic operators when the left side decides */
	if (n->op == OP_AND || n->op == OP_OR || n->op == OP_IMPLIES) {
		int a;
		rc = fp_truth(ev, &l, &a);
		if (rc)
			return rc;
		if ((n->op == OP_AND && a == 0) || (n->op == OP_OR && a == 1))
			return fp_push_bool(ev, out, a == 1);
		if (n->op == OP_IMPLIES && a == 0)
			return fp_push_bool(ev, out, true);
	}
	rc = fp_eval(ev, n->right, focus, &r);
	if (rc)
		return rc;
	switch (n->op) {
	case OP_IMPLIES: case OP_OR: case OP_XOR: case OP_AND: return logic_op(ev, n->op, &l, &r, out);
	case OP_IN: return member_op(ev, &l, &r, out);
	case OP_CONTAINS: return member_op(ev, &r, &l, out);
	case OP_EQ: return eq_op(ev, &l, &r, false, out);
	case OP_NE: return eq_op(ev, &l, &r, true, out);
	case OP_EQUIV: return equiv_op(ev, &l, &r, false, out);
	case OP_NEQUIV: return equiv_op(ev, &l, &r, true, out);
	case OP_LT: case OP_GT: case OP_LE: case OP_GE: return compare_op(ev, n->op, &l, &r, out);
	case OP_UNION: return union_op(ev, &l, &r, out);
	case OP_CONCAT: return concat_op(ev, &l, &r, out);
	default: return arith_op(ev, n->op, &l, &r, out);
	}
}

/* ---- terms ------------------------------------------------------------------ */

static cv_rc type_op(fp_ev_t *ev, const fp_node_t *n, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t l = {0};

	rc = fp_eval(ev, n->left, focus, &l);
	if (rc || l.n == 0)
		return rc;
	if (!fp_type_known(ev, n->tname))
		return fp_fail(ev, CV_E_INVALID, "unknown type at offset %zu", n->off);
	if (n->op == OP_IS) {
		if (l.n > 1)
			return fp_fail(ev, CV_E_INVALID, "'is' expects a single item, not %zu", l.n);
		return fp_push_bool(ev, out, fp_is_type(ev, &l.v[0], n->tname));
	}
	/* `as` filters a collection, as the R4 search parameters use it
	   ("(useContext.value as CodeableConcept)") */
	for (size_t i = 0; i < l.n && !rc; i++) {
		if (fp_is_exactly(ev, &l.v[i], n->tname))
			rc = fp_push(ev, out, &l.v[i]);
	}
	return rc;
}

static cv_rc var_term(fp_ev_t *ev, const fp_node_t *n, fp_coll_t *out)
{
	static const struct {
		const char *name;
		const char *value;
	} consts[] = {
		{"ucum", "http://unitsofmeasure.org"}, {"sct", "http://snomed.info/sct"}, {"loinc", "http://loinc.org"},
	};

	if (strcmp(n->name, "resource") == 0 || strcmp(n->name, "rootResource") == 0)
		return ev->resource.node ? fp_push(ev, out, &ev->resource) : CV_OK;
	if (strcmp(n->name, "context") == 0)
		return ev->context.node ? fp_push(ev, out, &ev->context) : CV_OK;
	for (size_t i = 0; i < sizeof(consts) / sizeof(consts[0]); i++) {
		if (strcmp(n->name, consts[i].name) == 0)
			return fp_push_str(ev, out, consts[i].value);
	}
	if (strncmp(n->name, "vs-", 3) == 0)
		return fp_push_str(ev, out, cv_pool_printf(ev->pool, "http://hl7.org/fhir/ValueSet/%s", n->name + 3));
	if (strncmp(n->name, "ext-", 4) == 0)
		return fp_push_str(ev, out,
				   cv_pool_printf(ev->pool, "http://hl7.org/fhir/StructureDefinition/%s", n->name + 4));
	return fp_fail(ev, CV_E_INVALID, "unknown variable at offset %zu", n->off);
}

static bool starts_upper(const char *s)
{
	return s[0] >= 'A' && s[0] <= 'Z';
}

/* name with no left side: a type name filters the focus, else a child. */
static cv_rc member_term(fp_ev_t *ev, const fp_node_t *n, const fp_coll_t *in, bool first, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	bool type_name = first && starts_upper(n->name) && cv_model_type_known(ev->env->model, n->name);

	bool known = false;

	for (size_t i = 0; i < in->n && !rc; i++) {
		const cv_fp_item_t *it = &in->v[i];
		if (type_name) {
			if (it->kind == CV_FP_NODE && it->type && cv_model_type_derives(ev->env->model, it->type, n->name))
				rc = fp_push(ev, out, it);
			continue;
		}
		known = known || fp_knows(ev, it, n->name);
		rc = fp_children(ev, it, n->name, out);
	}
	/* a name no item's type defines is an error (`name.given1`), not an empty result */
	if (!rc && !type_name && in->n && !known)
		return fp_fail(ev, CV_E_INVALID, "%s has no element '%.64s'",
			       in->v[0].elem ? "the element" : in->v[0].type ? in->v[0].type : "the item", n->name);
	return rc;
}

static cv_rc index_term(fp_ev_t *ev, const fp_node_t *n, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t l = {0}, ix = {0};
	cv_fp_item_t v;
	bool have;

	rc = fp_eval(ev, n->left, focus, &l);
	if (!rc)
		rc = fp_eval(ev, n->args[0], focus, &ix);
	if (!rc)
		rc = singleton(ev, &ix, "an indexer", &v, &have);
	if (rc || !have)
		return rc;
	if (v.kind != CV_FP_INTEGER)
		return fp_fail(ev, CV_E_INVALID, "an index must be an integer");
	if (v.i >= 0 && (uint64_t)v.i < l.n)
		return fp_push(ev, out, &l.v[v.i]);
	return CV_OK;
}

static cv_rc unary(fp_ev_t *ev, const fp_node_t *n, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc;
	fp_coll_t l = {0};
	cv_fp_item_t v;
	bool have;

	rc = fp_eval(ev, n->left, focus, &l);
	if (!rc)
		rc = singleton(ev, &l, "unary minus", &v, &have);
	if (rc || !have)
		return rc;
	if (n->op == OP_PLUS)
		return fp_push(ev, out, &v);
	if (v.kind == CV_FP_INTEGER)
		return v.i == INT64_MIN ? CV_OK : fp_push_int(ev, out, -v.i);
	if (v.kind == CV_FP_DECIMAL && v.s) {
		v.d = -v.d;
		v.s = v.s[0] == '-' ? v.s + 1 : v.d == 0 ? v.s : cv_pool_printf(ev->pool, "-%s", v.s);
		return v.s ? fp_push(ev, out, &v) : CV_E_NOMEM;
	}
	if (v.kind == CV_FP_DECIMAL)
		return fp_push_dec(ev, out, -v.d);
	if (v.kind == CV_FP_QUANTITY)
		return push_qty(ev, out, -v.d, v.unit);
	return fp_fail(ev, CV_E_INVALID, "unary minus applies to numbers only");
}

/* A literal's strings live in the compiled tree: results get copies in the pool. */
static cv_rc literal(fp_ev_t *ev, const cv_fp_item_t *lit, fp_coll_t *out)
{
	cv_fp_item_t it = *lit;

	if (lit->s && !(it.s = cv_pool_strdup(ev->pool, lit->s)))
		return CV_E_NOMEM;
	if (lit->unit && !(it.unit = cv_pool_strdup(ev->pool, lit->unit)))
		return CV_E_NOMEM;
	return fp_push(ev, out, &it);
}

cv_rc fp_eval(fp_ev_t *ev, const fp_node_t *n, const fp_coll_t *focus, fp_coll_t *out)
{
	cv_rc rc = CV_OK;
	fp_coll_t in = {0};

	if (ev->depth >= FP_MAX_EVAL_DEPTH)
		return fp_fail(ev, CV_E_LIMIT, "evaluation nested deeper than %u", FP_MAX_EVAL_DEPTH);
	rc = fp_step(ev);
	if (rc)
		return rc;
	ev->depth++;
	switch (n->kind) {
	case N_LITERAL:
		rc = literal(ev, &n->lit, out);
		break;
	case N_EMPTY:
		break;
	case N_MEMBER:
		if (n->left)
			rc = fp_eval(ev, n->left, focus, &in);
		if (!rc)
			rc = member_term(ev, n, n->left ? &in : focus, !n->left, out);
		break;
	case N_FUNC:
		if (n->left)
			rc = fp_eval(ev, n->left, focus, &in);
		if (!rc)
			rc = n->fn->impl(ev, n, n->left ? &in : focus, focus, out);
		break;
	case N_INDEX:
		rc = index_term(ev, n, focus, out);
		break;
	case N_BINARY:
		rc = binary(ev, n, focus, out);
		break;
	case N_UNARY:
		rc = unary(ev, n, focus, out);
		break;
	case N_TYPEOP:
		rc = type_op(ev, n, focus, out);
		break;
	case N_VAR:
		rc = var_term(ev, n, out);
		break;
	case N_THIS:
		for (size_t i = 0; i < focus->n && !rc; i++)
			rc = fp_push(ev, out, &focus->v[i]);
		break;
	case N_IDX:
		rc = fp_push_int(ev, out, ev->index);
		break;
	case N_TOTAL:
		for (size_t i = 0; ev->total && i < ev->total->n && !rc; i++)
			rc = fp_push(ev, out, &ev->total->v[i]);
		break;
	}
	ev->depth--;
	return rc;
}

static void root_item(fp_ev_t *ev, json_object *obj, cv_fp_item_t *it)
{
	json_object *rt = member(obj, "resourceType");

	*it = (cv_fp_item_t){.kind = CV_FP_NODE, .node = obj};
	if (rt && json_object_is_type(rt, json_type_string)) {
		it->type = cv_model_type_name(ev->env->model, json_object_get_string(rt));
		if (!it->type)
			it->type = json_object_get_string(rt);
	}
}

cv_rc cv_fhirpath_eval(const cv_fhirpath_t *e, const cv_fp_env_t *env, cv_pool_t *pool, cv_fp_list_t *out,
		       char *err, size_t errlen)
{
	cv_rc rc = CV_OK;
	fp_ev_t ev = {.env = env, .pool = pool, .err = err, .errlen = errlen};
	fp_coll_t focus = {0}, res = {0};

	out->n = 0;
	out->v = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!e || !env || !env->model || !pool)
		return CV_E_INVALID;
	if (env->resource)
		root_item(&ev, env->resource, &ev.resource);
	if (env->context_item)
		ev.context = *env->context_item;
	else if (env->context || env->resource)
		root_item(&ev, env->context ? env->context : env->resource, &ev.context);
	if (ev.context.node) {
		rc = fp_push(&ev, &focus, &ev.context);
		if (rc)
			goto out;
	}
	rc = fp_eval(&ev, e->root, &focus, &res);
	if (rc)
		goto out;
	out->n = res.n;
	out->v = res.v;
out:
	return rc;
}

bool cv_fp_item_value(const cv_model_t *m, const cv_fp_item_t *it, cv_pool_t *pool, cv_fp_item_t *out)
{
	cv_fp_env_t env = {.model = m};
	fp_ev_t ev = {.env = &env, .pool = pool};

	if (!m || !it || !pool || !out)
		return false;
	return fp_sysval(&ev, it, out);
}
