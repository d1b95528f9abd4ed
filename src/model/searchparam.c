/*
 * searchparam.c - the search-parameter registry and index extraction (see
 * searchparam.h).
 *
 * The registry is built once from the embedded table: one cv_sp_t per
 * (base type, code), sorted, so a lookup is a binary search. The parameters of
 * "Resource" (_id, _tag, ...) apply to every type; their expressions start
 * with "Resource." which is dropped, so they evaluate on any resource.
 *
 * Extraction walks each parameter's FHIRPath results and turns each value,
 * by its FHIR type, into keys (searchparam.h lists them). Keys are built in
 * the pool of the entry list; nothing here logs or echoes a value.
 */
#include "model/searchparam.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/time.h"
#include "model/fold.h"

/* Emitted by tools/embed.c at build time. */
extern const unsigned char cv_search_blob[];
extern const unsigned long cv_search_blob_len;

#define SP_ENTRIES_MAX 20000 /* most index entries of one resource */

typedef struct comp_entry {
	const char *type;
	size_t n;
	const char **codes;
} comp_entry_t;

struct cv_sp_registry {
	cv_pool_t pool;     /* strings and arrays */
	json_object *root;  /* the parsed table, while loading (strings are copied into the pool) */
	size_t n;
	cv_sp_t *v;         /* sorted by (base, code) */
	size_t ncomp;
	comp_entry_t *comp; /* sorted by type */
	size_t nsum;
	comp_entry_t *sum;  /* summary elements by type, sorted by type */
};

static const struct {
	const char *name;
	cv_sp_type type;
} sp_types[] = {
	{ "number", CV_SP_NUMBER },       { "date", CV_SP_DATE },         { "string", CV_SP_STRING },
	{ "token", CV_SP_TOKEN },         { "reference", CV_SP_REFERENCE }, { "composite", CV_SP_COMPOSITE },
	{ "quantity", CV_SP_QUANTITY },   { "uri", CV_SP_URI },           { "special", CV_SP_SPECIAL },
};

static int cmp_sp(const void *a, const void *b)
{
	const cv_sp_t *x = a, *y = b;
	int c = strcmp(x->base, y->base);
	return c ? c : strcmp(x->code, y->code);
}

static int cmp_comp(const void *a, const void *b)
{
	return strcmp(((const comp_entry_t *)a)->type, ((const comp_entry_t *)b)->type);
}

static const char *member_str(json_object *o, const char *name)
{
	json_object *v;
	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* A copy of a string of the table in the registry's pool: the parsed table
 * is freed once loaded. */
static const char *keep(cv_sp_registry_t *r, const char *s)
{
	return s ? cv_pool_strdup(&r->pool, s) : NULL;
}

static cv_sp_type type_of(const char *name)
{
	for (size_t i = 0; name && i < sizeof sp_types / sizeof sp_types[0]; i++)
		if (strcmp(sp_types[i].name, name) == 0)
			return sp_types[i].type;
	return CV_SP_SPECIAL;
}

/* Compiles expr (dropping a leading "Resource." so it applies to any type). */
static cv_fhirpath_t *compile(const char *expr, size_t *failed)
{
	char err[256];
	cv_fhirpath_t *e = NULL;
	if (strncmp(expr, "Resource.", 9) == 0)
		expr += 9;
	if (cv_fhirpath_compile(expr, &e, err, sizeof err) != CV_OK) {
		(*failed)++;
		return NULL;
	}
	return e;
}

static cv_rc load_components(cv_sp_registry_t *r, cv_sp_t *sp, json_object *comp, size_t *failed)
{
	size_t n = comp ? json_object_array_length(comp) : 0;
	if (!n)
		return CV_OK;
	sp->comp = cv_pool_alloc(&r->pool, n * sizeof *sp->comp);
	if (!sp->comp)
		return CV_E_NOMEM;
	for (size_t i = 0; i < n; i++) {
		json_object *pair = json_object_array_get_idx(comp, i);
		sp->comp[i].code = keep(r, json_object_get_string(json_object_array_get_idx(pair, 0)));
		sp->comp[i].expr = keep(r, json_object_get_string(json_object_array_get_idx(pair, 1)));
		if (!sp->comp[i].code || !sp->comp[i].expr)
			return CV_E_NOMEM;
		sp->comp[i].compiled = compile(sp->comp[i].expr, failed);
	}
	sp->ncomp = n;
	return CV_OK;
}

static cv_rc load_targets(cv_sp_registry_t *r, cv_sp_t *sp, json_object *targets)
{
	size_t n = targets ? json_object_array_length(targets) : 0;
	if (!n)
		return CV_OK;
	sp->targets = cv_pool_alloc(&r->pool, n * sizeof *sp->targets);
	if (!sp->targets)
		return CV_E_NOMEM;
	for (size_t i = 0; i < n; i++)
		if (!(sp->targets[i] = keep(r, json_object_get_string(json_object_array_get_idx(targets, i)))))
			return CV_E_NOMEM;
	sp->ntargets = n;
	return CV_OK;
}

/* Identifying dates: kept only as blinded year, month and day. */
static bool is_blind_date(const char *code, const char *base)
{
	return (strcmp(code, "birthdate") == 0 || strcmp(code, "death-date") == 0) &&
	       (strcmp(base, "Patient") == 0 || strcmp(base, "Person") == 0 || strcmp(base, "RelatedPerson") == 0);
}

/* Adds one cv_sp_t per base of parameter p. */
static cv_rc load_param(cv_sp_registry_t *r, json_object *p, size_t *at, size_t *failed)
{
	json_object *expr, *targets = NULL, *comp = NULL;
	if (!json_object_object_get_ex(p, "expr", &expr))
		return CV_E_INTERNAL;
	json_object_object_get_ex(p, "target", &targets);
	json_object_object_get_ex(p, "comp", &comp);
	const char *code = keep(r, member_str(p, "code"));
	cv_sp_type type = type_of(member_str(p, "type"));
	if (!code)
		return CV_E_NOMEM;
	json_object_object_foreach(expr, base, e)
	{
		cv_sp_t *sp = &r->v[(*at)++];
		sp->code = code;
		sp->base = keep(r, base);
		sp->type = type;
		sp->expr = keep(r, json_object_get_string(e));
		if (!sp->base || !sp->expr)
			return CV_E_NOMEM;
		sp->compiled = compile(sp->expr, failed);
		sp->blind_date = type == CV_SP_DATE && is_blind_date(code, base);
		cv_rc rc = load_targets(r, sp, targets);
		if (!rc)
			rc = load_components(r, sp, comp, failed);
		if (rc)
			return rc;
	}
	return CV_OK;
}

static cv_rc load_params(cv_sp_registry_t *r, json_object *params, size_t *failed)
{
	size_t total = 0, n = json_object_array_length(params);
	for (size_t i = 0; i < n; i++) {
		json_object *expr;
		if (json_object_object_get_ex(json_object_array_get_idx(params, i), "expr", &expr))
			total += (size_t)json_object_object_length(expr);
	}
	r->v = cv_pool_alloc(&r->pool, (total ? total : 1) * sizeof *r->v);
	if (!r->v)
		return CV_E_NOMEM;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		cv_rc rc = load_param(r, json_object_array_get_idx(params, i), &at, failed);
		if (rc)
			return rc;
	}
	r->n = at;
	qsort(r->v, r->n, sizeof *r->v, cmp_sp);
	/* a component names another parameter of the same base: take its type */
	for (size_t i = 0; i < r->n; i++)
		for (size_t k = 0; k < r->v[i].ncomp; k++) {
			const cv_sp_t *c = cv_sp_find(r, r->v[i].base, r->v[i].comp[k].code);
			r->v[i].comp[k].type = c ? c->type : CV_SP_SPECIAL;
		}
	return CV_OK;
}

/* A {type: [name, ...]} table (compartment parameters, summary elements). */
static cv_rc load_lists(cv_sp_registry_t *r, json_object *comp, comp_entry_t **out, size_t *count)
{
	size_t n = (size_t)json_object_object_length(comp), i = 0;
	comp_entry_t *list = cv_pool_alloc(&r->pool, (n ? n : 1) * sizeof *list);
	if (!list)
		return CV_E_NOMEM;
	json_object_object_foreach(comp, type, codes)
	{
		comp_entry_t *c = &list[i++];
		c->type = keep(r, type);
		c->n = json_object_array_length(codes);
		c->codes = cv_pool_alloc(&r->pool, (c->n ? c->n : 1) * sizeof *c->codes);
		if (!c->codes || !c->type)
			return CV_E_NOMEM;
		for (size_t k = 0; k < c->n; k++)
			if (!(c->codes[k] = keep(r, json_object_get_string(json_object_array_get_idx(codes, k)))))
				return CV_E_NOMEM;
	}
	qsort(list, n, sizeof *list, cmp_comp);
	*out = list;
	*count = n;
	return CV_OK;
}

cv_rc cv_sp_registry_new(const cv_model_t *m, cv_sp_registry_t **out, size_t *failed, char *err, size_t errlen)
{
	(void)m;
	size_t bad = 0;
	cv_sp_registry_t *r = calloc(1, sizeof *r);
	if (!r)
		return CV_E_NOMEM;
	cv_pool_init(&r->pool, 0);
	r->root = json_tokener_parse((const char *)cv_search_blob);
	json_object *params, *comp, *sum;
	cv_rc rc = CV_OK;
	if (!r->root || !json_object_object_get_ex(r->root, "params", &params) ||
	    !json_object_object_get_ex(r->root, "compartment", &comp) ||
	    !json_object_object_get_ex(r->root, "summary", &sum)) {
		snprintf(err, errlen, "the embedded search parameter table is unreadable");
		rc = CV_E_INTERNAL;
	}
	if (!rc)
		rc = load_params(r, params, &bad);
	if (!rc)
		rc = load_lists(r, comp, &r->comp, &r->ncomp);
	if (!rc)
		rc = load_lists(r, sum, &r->sum, &r->nsum);
	if (rc) {
		if (rc == CV_E_NOMEM)
			snprintf(err, errlen, "out of memory loading search parameters");
		cv_sp_registry_free(r);
		return rc;
	}
	json_object_put(r->root); /* everything needed was copied into the pool */
	r->root = NULL;
	if (failed)
		*failed = bad;
	*out = r;
	return CV_OK;
}

void cv_sp_registry_free(cv_sp_registry_t *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		cv_fhirpath_free(r->v[i].compiled);
		for (size_t k = 0; k < r->v[i].ncomp; k++)
			cv_fhirpath_free(r->v[i].comp[k].compiled);
	}
	json_object_put(r->root);
	cv_pool_release(&r->pool);
	free(r);
}

/* The first parameter of base, and how many there are. */
static const cv_sp_t *base_range(const cv_sp_registry_t *r, const char *base, size_t *n)
{
	size_t lo = 0, hi = r->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(r->v[mid].base, base) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t end = lo;
	while (end < r->n && strcmp(r->v[end].base, base) == 0)
		end++;
	*n = end - lo;
	return &r->v[lo];
}

const cv_sp_t *cv_sp_find(const cv_sp_registry_t *r, const char *type, const char *code)
{
	const char *bases[2] = { type, "Resource" };
	for (int b = 0; b < 2; b++) {
		cv_sp_t key = { .base = bases[b], .code = code };
		const cv_sp_t *sp = bsearch(&key, r->v, r->n, sizeof *r->v, cmp_sp);
		if (sp)
			return sp;
	}
	return NULL;
}

size_t cv_sp_count(const cv_sp_registry_t *r, const char *type)
{
	size_t own, all;
	base_range(r, type, &own);
	base_range(r, "Resource", &all);
	return strcmp(type, "Resource") == 0 ? all : own + all;
}

const cv_sp_t *cv_sp_at(const cv_sp_registry_t *r, const char *type, size_t i)
{
	size_t own, all;
	const cv_sp_t *first = base_range(r, type, &own);
	const cv_sp_t *res = base_range(r, "Resource", &all);
	if (strcmp(type, "Resource") == 0)
		own = 0;
	if (i < own)
		return &first[i];
	return i - own < all ? &res[i - own] : NULL;
}

size_t cv_sp_total(const cv_sp_registry_t *r)
{
	return r->n;
}

size_t cv_sp_compartment(const cv_sp_registry_t *r, const char *type, const char *const **codes)
{
	comp_entry_t key = { .type = type };
	const comp_entry_t *c = bsearch(&key, r->comp, r->ncomp, sizeof *r->comp, cmp_comp);
	if (!c)
		return 0;
	*codes = c->codes;
	return c->n;
}

bool cv_sp_in_summary(const cv_sp_registry_t *r, const char *type, const char *element)
{
	comp_entry_t key = { .type = type };
	const comp_entry_t *c = bsearch(&key, r->sum, r->nsum, sizeof *r->sum, cmp_comp);
	for (size_t i = 0; c && i < c->n; i++)
		if (strcmp(c->codes[i], element) == 0)
			return true;
	return false;
}

/* --- entries ------------------------------------------------------------- */

/* The FHIR type of an item ("" when the evaluator could not tell). */
static const char *item_type(const cv_fp_item_t *it)
{
	return it->type ? it->type : "";
}


static cv_ix_entry_t *entry_new(cv_sp_entries_t *out)
{
	if (out->n == out->cap) {
		if (out->cap >= SP_ENTRIES_MAX)
			return NULL;
		size_t cap = out->cap ? out->cap * 2 : 64;
		cv_ix_entry_t *v = cv_pool_alloc(out->pool, cap * sizeof *v);
		if (!v)
			return NULL;
		if (out->n)
			memcpy(v, out->v, out->n * sizeof *v);
		out->v = v;
		out->cap = cap;
	}
	cv_ix_entry_t *e = &out->v[out->n++];
	memset(e, 0, sizeof *e);
	return e;
}

static cv_rc full(cv_sp_entries_t *out)
{
	return out->cap >= SP_ENTRIES_MAX ? CV_E_LIMIT : CV_E_NOMEM;
}

/* A HASH entry whose key is prefix followed by len bytes of s. */
static cv_rc hash_key(cv_sp_entries_t *out, const char *code, const char *prefix, const char *s, size_t len)
{
	size_t pl = strlen(prefix);
	char *key = cv_pool_alloc(out->pool, pl + len + 1);
	if (!key)
		return CV_E_NOMEM;
	memcpy(key, prefix, pl);
	memcpy(key + pl, s, len);
	cv_ix_entry_t *e = entry_new(out);
	if (!e)
		return full(out);
	*e = (cv_ix_entry_t){ .kind = CV_IX_HASH, .param = code, .key = key, .key_len = pl + len };
	return CV_OK;
}

cv_rc cv_sp_key(cv_sp_entries_t *out, const char *code, const char *prefix, const char *a, const char *sep,
		const char *b)
{
	char *s = cv_pool_printf(out->pool, "%s%s%s", a ? a : "", sep ? sep : "", b ? b : "");
	return s ? hash_key(out, code, prefix, s, strlen(s)) : CV_E_NOMEM;
}

static cv_rc date_entry(cv_sp_entries_t *out, const char *code, int64_t lo, int64_t hi)
{
	cv_ix_entry_t *e = entry_new(out);
	if (!e)
		return full(out);
	*e = (cv_ix_entry_t){ .kind = CV_IX_DATE, .param = code, .lo = lo, .hi = hi };
	return CV_OK;
}

static cv_rc num_entry(cv_sp_entries_t *out, const char *code, const char *unit, double lo, double hi)
{
	cv_ix_entry_t *e = entry_new(out);
	if (!e)
		return full(out);
	*e = (cv_ix_entry_t){ .kind = CV_IX_NUM, .param = code, .key = unit, .key_len = strlen(unit),
			      .nlo = lo, .nhi = hi };
	return CV_OK;
}

static const char *obj_str(json_object *o, const char *name)
{
	return o && json_object_is_type(o, json_type_object) ? member_str(o, name) : NULL;
}

static json_object *obj_get(json_object *o, const char *name)
{
	json_object *v = NULL;
	if (o && json_object_is_type(o, json_type_object))
		json_object_object_get_ex(o, name, &v);
	return v;
}

const unsigned cv_sp_prefix_lengths[] = { 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32 };
const size_t cv_sp_prefix_count = sizeof cv_sp_prefix_lengths / sizeof cv_sp_prefix_lengths[0];

size_t cv_sp_prefix_cut(size_t n)
{
	size_t cut = 0;
	for (size_t i = 0; i < cv_sp_prefix_count && cv_sp_prefix_lengths[i] <= n; i++)
		cut = cv_sp_prefix_lengths[i];
	return cut;
}

/* Folded prefixes of the indexed lengths of text under `prefix`; the whole
 * text too when it is shorter than the longest (an exact value is its own
 * prefix). */
static cv_rc folded_prefixes(cv_sp_entries_t *out, const char *code, const char *prefix, const char *f, size_t flen)
{
	cv_rc rc = CV_OK;
	size_t chars = cv_fold_chars(f, flen);
	for (size_t i = 0; !rc && i < cv_sp_prefix_count && cv_sp_prefix_lengths[i] <= chars; i++)
		rc = hash_key(out, code, prefix, f, cv_fold_prefix(f, flen, cv_sp_prefix_lengths[i]));
	return rc;
}

/* Trigrams of folded text (for :contains). */
static cv_rc trigrams(cv_sp_entries_t *out, const char *code, const char *f, size_t flen)
{
	cv_rc rc = CV_OK;
	if (flen > CV_SP_TRIGRAM_MAX)
		return CV_OK;
	for (size_t i = 0; !rc && i < flen;) {
		size_t three = cv_fold_prefix(f + i, flen - i, 3);
		if (cv_fold_chars(f + i, three) < 3)
			break;
		rc = hash_key(out, code, "g:", f + i, three);
		i += cv_fold_prefix(f + i, flen - i, 1);
	}
	return rc;
}

/* A string value of a string parameter. */
static cv_rc string_value(cv_sp_entries_t *out, const char *code, const char *s, cv_sp_mode mode)
{
	if (!s || !s[0])
		return CV_OK;
	char *f;
	size_t flen;
	cv_rc rc = cv_fold(s, strlen(s), out->pool, &f, &flen);
	if (rc == CV_E_INVALID || rc == CV_E_LIMIT)
		return CV_OK; /* the validator refuses such text; nothing to index */
	if (!rc)
		rc = hash_key(out, code, "e:", s, strlen(s));
	if (!rc)
		rc = folded_prefixes(out, code, "p:", f, flen);
	if (!rc)
		rc = trigrams(out, code, f, flen);
	if (!rc && mode == CV_SP_MATCH)
		rc = hash_key(out, code, "f:", f, flen);
	return rc;
}

/* Each string of an array (or a single string) member. */
static cv_rc strings_of(cv_sp_entries_t *out, const char *code, json_object *v, cv_sp_mode mode)
{
	cv_rc rc = CV_OK;
	if (!v)
		return CV_OK;
	if (json_object_is_type(v, json_type_string))
		return string_value(out, code, json_object_get_string(v), mode);
	if (!json_object_is_type(v, json_type_array))
		return CV_OK;
	for (size_t i = 0; !rc && i < json_object_array_length(v); i++)
		rc = strings_of(out, code, json_object_array_get_idx(v, i), mode);
	return rc;
}

static cv_rc string_param(const cv_fp_item_t *it, const char *code, cv_sp_mode mode, cv_sp_entries_t *out)
{
	static const char *const name_parts[] = { "family", "given", "prefix", "suffix", "text" };
	static const char *const addr_parts[] = { "line", "city", "district", "state", "postalCode", "country", "text" };
	cv_rc rc = CV_OK;
	if (it->kind == CV_FP_STRING)
		return string_value(out, code, it->s, mode);
	if (it->kind != CV_FP_NODE || !it->node)
		return CV_OK;
	if (json_object_is_type(it->node, json_type_string))
		return string_value(out, code, json_object_get_string(it->node), mode);
	const char *const *parts = NULL;
	size_t n = 0;
	if (strcmp(item_type(it), "HumanName") == 0) {
		parts = name_parts;
		n = sizeof name_parts / sizeof name_parts[0];
	} else if (strcmp(item_type(it), "Address") == 0) {
		parts = addr_parts;
		n = sizeof addr_parts / sizeof addr_parts[0];
	}
	for (size_t i = 0; !rc && i < n; i++)
		rc = strings_of(out, code, obj_get(it->node, parts[i]), mode);
	return rc;
}

/* Text of a token (display, CodeableConcept.text) for :text. */
static cv_rc token_text(cv_sp_entries_t *out, const char *code, const char *text, cv_sp_mode mode)
{
	if (!text || !text[0])
		return CV_OK;
	char *f;
	size_t flen;
	cv_rc rc = cv_fold(text, strlen(text), out->pool, &f, &flen);
	if (rc == CV_E_INVALID || rc == CV_E_LIMIT)
		return CV_OK;
	if (!rc)
		rc = folded_prefixes(out, code, "t:", f, flen);
	if (!rc && mode == CV_SP_MATCH)
		rc = hash_key(out, code, "tf:", f, flen);
	return rc;
}

/* A system/code pair. */
static cv_rc token_code(cv_sp_entries_t *out, const char *code, const char *system, const char *value)
{
	cv_rc rc = CV_OK;
	if (value) {
		rc = cv_sp_key(out, code, "c:", value, NULL, NULL);
		if (!rc)
			rc = system ? cv_sp_key(out, code, "sc:", system, "|", value)
				    : cv_sp_key(out, code, "n:", value, NULL, NULL);
	}
	if (!rc && system)
		rc = cv_sp_key(out, code, "s:", system, "|", NULL);
	return rc;
}

static cv_rc coding(cv_sp_entries_t *out, const char *code, json_object *c, cv_sp_mode mode)
{
	cv_rc rc = token_code(out, code, obj_str(c, "system"), obj_str(c, "code"));
	return rc ? rc : token_text(out, code, obj_str(c, "display"), mode);
}

static cv_rc codeable(cv_sp_entries_t *out, const char *code, json_object *cc, cv_sp_mode mode)
{
	cv_rc rc = CV_OK;
	json_object *codings = obj_get(cc, "coding");
	for (size_t i = 0; !rc && codings && i < json_object_array_length(codings); i++)
		rc = coding(out, code, json_object_array_get_idx(codings, i), mode);
	return rc ? rc : token_text(out, code, obj_str(cc, "text"), mode);
}

static cv_rc identifier(cv_sp_entries_t *out, const char *code, json_object *id, cv_sp_mode mode)
{
	const char *value = obj_str(id, "value");
	cv_rc rc = token_code(out, code, obj_str(id, "system"), value);
	json_object *type = obj_get(id, "type"), *codings = obj_get(type, "coding");
	for (size_t i = 0; !rc && value && codings && i < json_object_array_length(codings); i++) {
		json_object *c = json_object_array_get_idx(codings, i);
		char *k = cv_pool_printf(out->pool, "%s|%s|%s", obj_str(c, "system") ? obj_str(c, "system") : "",
					 obj_str(c, "code") ? obj_str(c, "code") : "", value);
		rc = k ? hash_key(out, code, "ot:", k, strlen(k)) : CV_E_NOMEM;
	}
	return rc ? rc : token_text(out, code, obj_str(type, "text"), mode);
}

/* The text of a primitive item (string, code, boolean, number), or NULL. */
static const char *primitive_text(const cv_fp_item_t *it)
{
	if (it->kind == CV_FP_STRING)
		return it->s;
	if (it->kind == CV_FP_BOOLEAN)
		return it->b ? "true" : "false";
	if (it->kind != CV_FP_NODE || !it->node)
		return NULL;
	if (json_object_is_type(it->node, json_type_string) || json_object_is_type(it->node, json_type_boolean) ||
	    json_object_is_type(it->node, json_type_int))
		return json_object_get_string(it->node);
	return NULL;
}

static cv_rc token_param(const cv_fp_item_t *it, const char *code, cv_sp_mode mode, cv_sp_entries_t *out)
{
	const char *text = primitive_text(it);
	if (text)
		return token_code(out, code, NULL, text);
	if (it->kind != CV_FP_NODE || !json_object_is_type(it->node, json_type_object))
		return CV_OK;
	if (strcmp(item_type(it), "Coding") == 0)
		return coding(out, code, it->node, mode);
	if (strcmp(item_type(it), "CodeableConcept") == 0)
		return codeable(out, code, it->node, mode);
	if (strcmp(item_type(it), "Identifier") == 0)
		return identifier(out, code, it->node, mode);
	if (strcmp(item_type(it), "ContactPoint") == 0)
		return token_code(out, code, NULL, obj_str(it->node, "value"));
	return CV_OK;
}

/* "Type/id" at the end of a reference (relative, absolute or versioned): sets
 * *type_len and *id (within ref), or returns 0. */
static int split_reference(const char *ref, const char **type, size_t *type_len, const char **id, size_t *id_len)
{
	const char *end = ref + strlen(ref);
	const char *hist = strstr(ref, "/_history/");
	if (hist)
		end = hist;
	const char *slash = end;
	while (slash > ref && slash[-1] != '/')
		slash--;
	if (slash == ref || slash == end)
		return 0;
	const char *t = slash - 1;
	while (t > ref && t[-1] != '/')
		t--;
	if (t[0] < 'A' || t[0] > 'Z')
		return 0;
	*type = t;
	*type_len = (size_t)(slash - 1 - t);
	*id = slash;
	*id_len = (size_t)(end - slash);
	return *id_len > 0 && *id_len <= 64 && *type_len > 0;
}

static cv_rc reference_string(cv_sp_entries_t *out, const char *code, const char *ref)
{
	cv_rc rc = CV_OK;
	if (!ref || !ref[0] || ref[0] == '#')
		return CV_OK;
	const char *type, *id;
	size_t tl, il;
	/* an absolute reference names a resource on some server: only the URL
	 * itself is indexed (a search by that URL finds it; a search for a local
	 * Type/id does not find another server's resource of the same id) */
	if (strstr(ref, "://") != NULL || strncmp(ref, "urn:", 4) == 0)
		return hash_key(out, code, "u:", ref, strlen(ref));
	if (split_reference(ref, &type, &tl, &id, &il)) {
		rc = hash_key(out, code, "r:", type, tl + 1 + il);
		if (!rc)
			rc = hash_key(out, code, "i:", id, il);
	}
	return rc;
}

/* A canonical URL, with and without its |version. */
static cv_rc canonical(cv_sp_entries_t *out, const char *code, const char *url)
{
	if (!url || !url[0])
		return CV_OK;
	cv_rc rc = hash_key(out, code, "u:", url, strlen(url));
	const char *bar = strchr(url, '|');
	if (!rc && bar)
		rc = hash_key(out, code, "u:", url, (size_t)(bar - url));
	return rc;
}

static cv_rc reference_param(const cv_fp_item_t *it, const char *code, cv_sp_entries_t *out)
{
	const char *text = primitive_text(it);
	if (text)
		return canonical(out, code, text);
	if (it->kind != CV_FP_NODE || !json_object_is_type(it->node, json_type_object))
		return CV_OK;
	cv_rc rc = reference_string(out, code, obj_str(it->node, "reference"));
	json_object *ident = obj_get(it->node, "identifier");
	const char *value = obj_str(ident, "value");
	if (!rc && value) {
		const char *system = obj_str(ident, "system");
		rc = cv_sp_key(out, code, "idn:", value, NULL, NULL);
		if (!rc && system)
			rc = cv_sp_key(out, code, "id:", system, "|", value);
	}
	return rc;
}

static cv_rc uri_param(const cv_fp_item_t *it, const char *code, cv_sp_entries_t *out)
{
	const char *u = primitive_text(it);
	if (!u || !u[0])
		return CV_OK;
	cv_rc rc = canonical(out, code, u);
	/* path prefixes for :below ("http://a/b/c" is below "http://a/b") */
	const char *start = strstr(u, "://");
	start = start ? start + 3 : u;
	for (const char *p = strchr(start, '/'); !rc && p; p = strchr(p + 1, '/'))
		rc = hash_key(out, code, "ub:", u, (size_t)(p - u));
	return rc ? rc : hash_key(out, code, "ub:", u, strlen(u));
}

/* The calendar date (UTC) of an instant, as "YYYY-MM-DD". */
static void utc_date(int64_t us, char out[11])
{
	time_t t = (time_t)(us / 1000000 - (us % 1000000 < 0));
	struct tm tm;
	gmtime_r(&t, &tm);
	unsigned y = (unsigned)(tm.tm_year + 1900) % 10000u, mo = (unsigned)(tm.tm_mon + 1) % 100u,
		 d = (unsigned)tm.tm_mday % 100u;
	snprintf(out, 11, "%04u-%02u-%02u", y, mo, d);
}

/* Blinded century, decade, year, year-month and date of an identifying date
 * (a dateTime with a time counts by its UTC date, as range searches do). The
 * century and decade keys let a range of years be looked up with few keys. */
static cv_rc blind_date(cv_sp_entries_t *out, const char *code, const char *s, cv_sp_mode mode)
{
	int64_t lo, hi;
	int prec;
	char day[11];
	if (cv_time_range(s, &lo, &hi, &prec))
		return CV_OK;
	if (prec == 4) {
		utc_date(lo, day);
		s = day;
		prec = 3;
	}
	cv_rc rc = hash_key(out, code, "yc:", s, 2);
	if (!rc)
		rc = hash_key(out, code, "yd:", s, 3);
	if (!rc)
		rc = hash_key(out, code, "y:", s, 4);
	if (!rc && prec >= 2)
		rc = hash_key(out, code, "ym:", s, 7);
	if (!rc && prec >= 3)
		rc = hash_key(out, code, "d:", s, 10);
	if (!rc && mode == CV_SP_MATCH)
		rc = date_entry(out, code, lo, hi);
	return rc;
}

static cv_rc date_text(cv_sp_entries_t *out, const char *code, const char *s)
{
	int64_t lo, hi;
	if (!s || cv_time_range(s, &lo, &hi, NULL))
		return CV_OK;
	return date_entry(out, code, lo, hi);
}

#define SP_DATE_MIN INT64_MIN / 2
#define SP_DATE_MAX INT64_MAX / 2

/* A Period: from the start of its start to the end of its end; an open end is unbounded. */
static cv_rc period(cv_sp_entries_t *out, const char *code, json_object *p)
{
	int64_t lo = SP_DATE_MIN, hi = SP_DATE_MAX, ignored;
	const char *start = obj_str(p, "start"), *end = obj_str(p, "end");
	if (start && cv_time_range(start, &lo, &ignored, NULL))
		start = NULL;
	if (end && cv_time_range(end, &ignored, &hi, NULL))
		end = NULL;
	if (!start && !end)
		return CV_OK;
	return date_entry(out, code, start ? lo : SP_DATE_MIN, end ? hi : SP_DATE_MAX);
}

static cv_rc date_param(const cv_fp_item_t *it, const char *code, bool blind, cv_sp_mode mode, cv_sp_entries_t *out)
{
	cv_rc rc = CV_OK;
	const char *text = it->kind == CV_FP_NODE ? primitive_text(it) : it->s;
	if (text)
		return blind ? blind_date(out, code, text, mode) : date_text(out, code, text);
	if (it->kind != CV_FP_NODE || !json_object_is_type(it->node, json_type_object))
		return CV_OK;
	if (strcmp(item_type(it), "Period") == 0)
		return period(out, code, it->node);
	if (strcmp(item_type(it), "Timing") == 0) {
		json_object *ev = obj_get(it->node, "event");
		for (size_t i = 0; !rc && ev && i < json_object_array_length(ev); i++)
			rc = date_text(out, code, json_object_get_string(json_object_array_get_idx(ev, i)));
		json_object *bounds = obj_get(obj_get(it->node, "repeat"), "boundsPeriod");
		if (!rc && bounds)
			rc = period(out, code, bounds);
	}
	return rc;
}

static bool node_number(json_object *v, double *out)
{
	if (!v || !(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
		return false;
	*out = json_object_get_double(v);
	return true;
}

static cv_rc number_param(const cv_fp_item_t *it, const char *code, cv_sp_entries_t *out)
{
	double v, lo, hi;
	if (it->kind == CV_FP_INTEGER)
		return num_entry(out, code, "", (double)it->i, (double)it->i);
	if (it->kind == CV_FP_DECIMAL)
		return num_entry(out, code, "", it->d, it->d);
	if (it->kind != CV_FP_NODE)
		return CV_OK;
	if (node_number(it->node, &v))
		return num_entry(out, code, "", v, v);
	if (strcmp(item_type(it), "Range") == 0) {
		bool l = node_number(obj_get(obj_get(it->node, "low"), "value"), &lo);
		bool h = node_number(obj_get(obj_get(it->node, "high"), "value"), &hi);
		if (l || h)
			return num_entry(out, code, "", l ? lo : -1e300, h ? hi : 1e300);
	}
	return CV_OK;
}

/* The unit forms of a quantity: any, code (and unit text), system|code. */
static cv_rc quantity_units(cv_sp_entries_t *out, const char *code, json_object *q, double lo, double hi)
{
	const char *system = obj_str(q, "system"), *ucode = obj_str(q, "code"), *unit = obj_str(q, "unit");
	const char *currency = obj_str(q, "currency");
	if (currency) {
		ucode = currency;
		system = "urn:iso:std:iso:4217";
	}
	cv_rc rc = num_entry(out, code, "", lo, hi);
	char *u;
	if (!rc && ucode) {
		u = cv_pool_printf(out->pool, "c|%s", ucode);
		rc = u ? num_entry(out, code, u, lo, hi) : CV_E_NOMEM;
	}
	if (!rc && unit && (!ucode || strcmp(unit, ucode) != 0)) {
		u = cv_pool_printf(out->pool, "c|%s", unit);
		rc = u ? num_entry(out, code, u, lo, hi) : CV_E_NOMEM;
	}
	if (!rc && system && ucode) {
		u = cv_pool_printf(out->pool, "s|%s|%s", system, ucode);
		rc = u ? num_entry(out, code, u, lo, hi) : CV_E_NOMEM;
	}
	return rc;
}

static cv_rc quantity_param(const cv_fp_item_t *it, const char *code, cv_sp_entries_t *out)
{
	double v, lo, hi;
	if (it->kind == CV_FP_QUANTITY) {
		char *u = cv_pool_printf(out->pool, "c|%s", it->unit ? it->unit : "");
		cv_rc rc = num_entry(out, code, "", it->d, it->d);
		return rc ? rc : u ? num_entry(out, code, u, it->d, it->d) : CV_E_NOMEM;
	}
	if (it->kind != CV_FP_NODE || !json_object_is_type(it->node, json_type_object))
		return number_param(it, code, out);
	if (node_number(obj_get(it->node, "value"), &v))
		return quantity_units(out, code, it->node, v, v);
	if (strcmp(item_type(it), "Range") == 0) {
		json_object *low = obj_get(it->node, "low"), *high = obj_get(it->node, "high");
		bool l = node_number(obj_get(low, "value"), &lo), h = node_number(obj_get(high, "value"), &hi);
		if (l || h)
			return quantity_units(out, code, l ? low : high, l ? lo : -1e300, h ? hi : 1e300);
	}
	return CV_OK;
}

cv_rc cv_sp_entries_of(const cv_fp_item_t *item, const char *code, cv_sp_type as, bool blind, cv_sp_mode mode,
		       cv_sp_entries_t *out)
{
	switch (as) {
	case CV_SP_STRING: return string_param(item, code, mode, out);
	case CV_SP_TOKEN: return token_param(item, code, mode, out);
	case CV_SP_REFERENCE: return reference_param(item, code, out);
	case CV_SP_URI: return uri_param(item, code, out);
	case CV_SP_DATE: return date_param(item, code, blind, mode, out);
	case CV_SP_NUMBER: return number_param(item, code, out);
	case CV_SP_QUANTITY: return quantity_param(item, code, out);
	default: return CV_OK;
	}
}

/* A composite's own entries, for checking a candidate: its first component's
 * values (the index itself keeps none: a composite search narrows through the
 * first component's own parameter, see fhir/search_parse.c). */
static cv_rc composite_entries(const cv_sp_t *sp, const cv_model_t *m, json_object *res, const cv_fp_list_t *vals,
			       cv_sp_mode mode, cv_sp_entries_t *out)
{
	cv_rc rc = CV_OK;
	if (mode == CV_SP_INDEX || !sp->ncomp || !sp->comp[0].compiled)
		return CV_OK;
	for (size_t i = 0; !rc && i < vals->n; i++) {
		if (vals->v[i].kind != CV_FP_NODE)
			continue;
		cv_fp_env_t env = { .model = m, .resource = res, .context = vals->v[i].node,
				    .context_item = &vals->v[i] };
		cv_fp_list_t sub;
		char err[128];
		if (cv_fhirpath_eval(sp->comp[0].compiled, &env, out->pool, &sub, err, sizeof err) != CV_OK)
			continue;
		for (size_t k = 0; !rc && k < sub.n; k++)
			rc = cv_sp_entries_of(&sub.v[k], sp->code, sp->comp[0].type, false, mode, out);
	}
	return rc;
}

cv_rc cv_sp_extract_one(const cv_sp_t *sp, const cv_model_t *m, json_object *res, cv_sp_mode mode,
			cv_sp_entries_t *out)
{
	char err[128];
	cv_fp_list_t vals;
	if (!sp->compiled || sp->type == CV_SP_SPECIAL)
		return CV_OK;
	cv_fp_env_t env = { .model = m, .resource = res };
	cv_rc rc = cv_fhirpath_eval(sp->compiled, &env, out->pool, &vals, err, sizeof err);
	if (rc == CV_E_NOMEM)
		return rc;
	if (rc || vals.n == 0)
		return CV_OK; /* nothing to index for this parameter */
	size_t before = out->n;
	if (sp->type == CV_SP_COMPOSITE)
		rc = composite_entries(sp, m, res, &vals, mode, out);
	for (size_t i = 0; !rc && sp->type != CV_SP_COMPOSITE && i < vals.n; i++)
		rc = cv_sp_entries_of(&vals.v[i], sp->code, sp->type, sp->blind_date, mode, out);
	/* a composite has a value when its expression has one (its index keeps only this marker) */
	if (!rc && (out->n > before || sp->type == CV_SP_COMPOSITE))
		rc = hash_key(out, sp->code, "m:", "", 0);
	return rc;
}

static int cmp_entry(const void *a, const void *b)
{
	const cv_ix_entry_t *x = a, *y = b;
	int c = strcmp(x->param, y->param);
	if (c || (c = (int)x->kind - (int)y->kind))
		return c;
	if (x->kind == CV_IX_DATE)
		return x->lo != y->lo ? (x->lo < y->lo ? -1 : 1) : x->hi != y->hi ? (x->hi < y->hi ? -1 : 1) : 0;
	if (x->kind == CV_IX_NUM) {
		if (x->nlo != y->nlo || x->nhi != y->nhi)
			return x->nlo < y->nlo || (x->nlo == y->nlo && x->nhi < y->nhi) ? -1 : 1;
		return strcmp(x->key, y->key);
	}
	size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
	c = memcmp(x->key, y->key, n);
	return c ? c : x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* Sorts the entries and drops duplicates (the same code in code and
 * combo-code, the same text as display and text, ...). */
static void dedupe(cv_sp_entries_t *out)
{
	if (out->n < 2)
		return;
	qsort(out->v, out->n, sizeof *out->v, cmp_entry);
	size_t w = 1;
	for (size_t i = 1; i < out->n; i++)
		if (cmp_entry(&out->v[w - 1], &out->v[i]) != 0)
			out->v[w++] = out->v[i];
	out->n = w;
}

cv_rc cv_sp_extract(const cv_sp_registry_t *r, const cv_model_t *m, json_object *res, cv_sp_mode mode,
		    cv_sp_entries_t *out)
{
	const char *type = member_str(res, "resourceType");
	if (!type)
		return CV_E_INVALID;
	size_t n = cv_sp_count(r, type);
	cv_rc rc = CV_OK;
	for (size_t i = 0; !rc && i < n; i++) {
		const cv_sp_t *sp = cv_sp_at(r, type, i);
		/* _id and _lastUpdated are searched on the row itself */
		if (strcmp(sp->code, "_id") == 0 || strcmp(sp->code, "_lastUpdated") == 0)
			continue;
		rc = cv_sp_extract_one(sp, m, res, mode, out);
	}
	if (!rc)
		dedupe(out);
	return rc;
}
