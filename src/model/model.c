/*
 * model.c - the FHIR R4 model: loads the embedded definitions and validates
 * resources against them.
 *
 * The definitions (src/model/defs/fhir-r4-model.json, made by tools/gen-model.py)
 * are compiled in as cv_model_blob. cv_model_new() parses them once and builds
 * sorted tables: types by name, the elements of each type and backbone element
 * by name, and the codes of required value sets by system. The tree parsed from
 * the blob stays alive and the tables point at its strings; after creation
 * nothing is written, so one model serves all threads.
 *
 * cv_model_validate() walks a json-c tree and adds one issue per problem, with
 * a FHIRPath-like location kept in a fixed buffer. Diagnostics name elements,
 * types and value sets only, never a value from the input.
 */
#include "model/model.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Emitted by tools/embed.c at build time. */
extern const unsigned char cv_model_blob[];
extern const unsigned long cv_model_blob_len;

#define MODEL_MAX_ELEMS 128            /* most elements in one element set */
#define MODEL_MAX_DEPTH 100            /* deepest object nesting validated */
#define MODEL_PATH_MAX 4096            /* longest location kept */
#define MODEL_NAME_MAX 64              /* longest element name echoed in a location */
#define MODEL_MAX_STRING (1024u * 1024u) /* longest string value */
#define MODEL_UNBOUNDED UINT32_MAX     /* max "*" */

typedef enum {
	P_NONE,
	P_BASE64,
	P_BOOLEAN,
	P_CANONICAL,
	P_CODE,
	P_DATE,
	P_DATETIME,
	P_DECIMAL,
	P_ID,
	P_INSTANT,
	P_INTEGER,
	P_MARKDOWN,
	P_OID,
	P_POSINT,
	P_STRING,
	P_TIME,
	P_UINT,
	P_URI,
	P_URL,
	P_UUID,
	P_XHTML,
} prim_t;

typedef enum { K_PRIMITIVE, K_COMPLEX, K_RESOURCE, K_ANY_RESOURCE } kind_t;

typedef struct mtype mtype_t;
typedef struct elem elem_t;

typedef struct elemset {
	size_t n;
	elem_t *e; /* sorted by name */
} elemset_t;

typedef struct codesys {
	const char *system;
	size_t n;
	const char **codes; /* sorted */
} codesys_t;

typedef struct codeset {
	const char *url;
	bool expandable;
	size_t nsys;
	codesys_t *sys;
} codeset_t;

struct elem {
	const char *name;         /* without "[x]" */
	size_t name_len;
	bool choice;              /* value[x]: the JSON key is name + type suffix */
	bool contained;           /* the `contained` element of a resource */
	uint32_t min;
	uint32_t max;             /* MODEL_UNBOUNDED for "*" */
	size_t ntypes;
	const mtype_t **types;
	elemset_t *children;      /* inline backbone element, or contentReference target */
	const char *ref;          /* contentReference path ("Questionnaire.item") */
	const codeset_t *codes;   /* required binding that could be expanded */
};

struct mtype {
	const char *name;
	kind_t kind;
	bool abstract;
	prim_t prim;
	const char *base;  /* the type it specialises ("DomainResource"), NULL for roots */
	elemset_t elems;
	json_object *def; /* the type's entry in the blob, while loading */
};

struct cv_model {
	cv_pool_t pool;
	json_object *root;
	size_t ntypes;
	mtype_t *types; /* sorted by name */
	size_t nres;
	const char **res; /* concrete resource names, sorted */
	size_t nvs;
	codeset_t *vs; /* sorted by url */
	const mtype_t *t_extension;
	const mtype_t *t_coding;
	const mtype_t *t_codeable;
	elemset_t prim_ext; /* what `_element` objects may hold: id, extension */
};

static const struct {
	const char *name;
	prim_t prim;
} prim_names[] = {
	{"base64Binary", P_BASE64}, {"boolean", P_BOOLEAN}, {"canonical", P_CANONICAL},
	{"code", P_CODE},           {"date", P_DATE},       {"dateTime", P_DATETIME},
	{"decimal", P_DECIMAL},     {"id", P_ID},           {"instant", P_INSTANT},
	{"integer", P_INTEGER},     {"markdown", P_MARKDOWN}, {"oid", P_OID},
	{"positiveInt", P_POSINT},  {"string", P_STRING},   {"time", P_TIME},
	{"unsignedInt", P_UINT},    {"uri", P_URI},         {"url", P_URL},
	{"uuid", P_UUID},           {"xhtml", P_XHTML},
};

/* ---- loading ---------------------------------------------------------- */

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_type(const void *a, const void *b)
{
	return strcmp(((const mtype_t *)a)->name, ((const mtype_t *)b)->name);
}

static int cmp_elem(const void *a, const void *b)
{
	return strcmp(((const elem_t *)a)->name, ((const elem_t *)b)->name);
}

static int cmp_codeset(const void *a, const void *b)
{
	return strcmp(((const codeset_t *)a)->url, ((const codeset_t *)b)->url);
}

static int cmp_codesys(const void *a, const void *b)
{
	return strcmp(((const codesys_t *)a)->system, ((const codesys_t *)b)->system);
}

static const mtype_t *find_type(const cv_model_t *m, const char *name)
{
	mtype_t key = {.name = name};

	return bsearch(&key, m->types, m->ntypes, sizeof(*m->types), cmp_type);
}

static const codeset_t *find_codeset(const cv_model_t *m, const char *url)
{
	codeset_t key = {.url = url};

	return bsearch(&key, m->vs, m->nvs, sizeof(*m->vs), cmp_codeset);
}

static prim_t prim_of(const char *name)
{
	for (size_t i = 0; i < sizeof(prim_names) / sizeof(prim_names[0]); i++) {
		if (strcmp(prim_names[i].name, name) == 0)
			return prim_names[i].prim;
	}
	return P_NONE;
}

/* s copied into the model's pool (the parsed blob is freed after loading). */
static const char *keep(cv_model_t *m, const char *s)
{
	return s ? cv_pool_strdup(&m->pool, s) : NULL;
}

/* A member of obj that must be a string; NULL if absent or not a string. */
static const char *get_str(json_object *obj, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static json_object *get_typed(json_object *obj, const char *key, json_type type)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || !json_object_is_type(v, type))
		return NULL;
	return v;
}

static cv_rc parse_blob(cv_model_t *m)
{
	cv_rc rc = CV_OK;
	json_tokener *tok = json_tokener_new_ex(64);

	if (!tok)
		return CV_E_NOMEM;
	m->root = json_tokener_parse_ex(tok, (const char *)cv_model_blob, (int)cv_model_blob_len);
	if (!m->root || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(m->root, json_type_object)) {
		rc = CV_E_INTERNAL;
		goto out;
	}
out:
	json_tokener_free(tok);
	return rc;
}

static cv_rc load_types(cv_model_t *m)
{
	cv_rc rc = CV_OK;
	json_object *prims = get_typed(m->root, "primitives", json_type_object);
	json_object *types = get_typed(m->root, "types", json_type_array);
	size_t n = 0;

	if (!prims || !types)
		return CV_E_INTERNAL;
	m->types = cv_pool_alloc(&m->pool, sizeof(*m->types) *
				 ((size_t)json_object_object_length(prims) + json_object_array_length(types) + 2));
	if (!m->types)
		return CV_E_NOMEM;
	json_object_object_foreach(prims, pname, pval) {
		mtype_t *t = &m->types[n++];
		t->name = keep(m, pname);
		t->kind = K_PRIMITIVE;
		t->prim = prim_of(pname);
		if (t->prim == P_NONE) {
			rc = CV_E_INTERNAL;
			goto out;
		}
	}
	for (size_t i = 0; i < json_object_array_length(types); i++) {
		json_object *def = json_object_array_get_idx(types, i);
		mtype_t *t = &m->types[n++];
		const char *kind = get_str(def, "kind");
		json_object *abs = get_typed(def, "abstract", json_type_boolean);

		t->name = keep(m, get_str(def, "name"));
		if (!t->name || !kind) {
			rc = CV_E_INTERNAL;
			goto out;
		}
		t->kind = strcmp(kind, "resource") == 0 ? K_RESOURCE : K_COMPLEX;
		t->base = keep(m, get_str(def, "base"));
		t->abstract = abs && json_object_get_boolean(abs);
		t->def = def;
	}
	/* Types the definitions use without defining: any resource, and Element. */
	m->types[n++] = (mtype_t){.name = "Resource", .kind = K_ANY_RESOURCE, .abstract = true};
	m->types[n++] = (mtype_t){.name = "Element", .kind = K_COMPLEX, .abstract = true};
	m->ntypes = n;
	qsort(m->types, n, sizeof(*m->types), cmp_type);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(m->types[i - 1].name, m->types[i].name) == 0) {
			rc = CV_E_INTERNAL;
			goto out;
		}
	}
out:
	return rc;
}

static cv_rc load_codesys(cv_model_t *m, codeset_t *cs, json_object *systems)
{
	size_t k = 0;

	cs->nsys = (size_t)json_object_object_length(systems);
	cs->sys = cv_pool_alloc(&m->pool, sizeof(*cs->sys) * (cs->nsys + 1));
	if (!cs->sys)
		return CV_E_NOMEM;
	json_object_object_foreach(systems, sys, codes) {
		codesys_t *s = &cs->sys[k++];
		size_t n = json_object_is_type(codes, json_type_array) ? json_object_array_length(codes) : 0;

		s->system = keep(m, sys);
		s->codes = cv_pool_alloc(&m->pool, sizeof(*s->codes) * (n + 1));
		if (!s->codes)
			return CV_E_NOMEM;
		for (size_t i = 0; i < n; i++) {
			const char *c = keep(m, json_object_get_string(json_object_array_get_idx(codes, i)));
			if (c)
				s->codes[s->n++] = c;
		}
		qsort(s->codes, s->n, sizeof(*s->codes), cmp_strp);
	}
	qsort(cs->sys, cs->nsys, sizeof(*cs->sys), cmp_codesys);
	return CV_OK;
}

static cv_rc load_valuesets(cv_model_t *m)
{
	cv_rc rc = CV_OK;
	json_object *vs = get_typed(m->root, "valueSets", json_type_object);

	if (!vs)
		return CV_E_INTERNAL;
	m->vs = cv_pool_alloc(&m->pool, sizeof(*m->vs) * ((size_t)json_object_object_length(vs) + 1));
	if (!m->vs)
		return CV_E_NOMEM;
	json_object_object_foreach(vs, url, def) {
		codeset_t *cs = &m->vs[m->nvs++];
		json_object *systems = get_typed(def, "systems", json_type_object);

		cs->url = keep(m, url);
		cs->expandable = systems != NULL;
		if (systems) {
			rc = load_codesys(m, cs, systems);
			if (rc)
				goto out;
		}
	}
	qsort(m->vs, m->nvs, sizeof(*m->vs), cmp_codeset);
out:
	return rc;
}

static cv_rc build_elemset(cv_model_t *m, json_object *arr, elemset_t *set);

static cv_rc build_elem_types(cv_model_t *m, json_object *def, elem_t *e)
{
	json_object *t = get_typed(def, "t", json_type_array);
	size_t n = t ? json_object_array_length(t) : 0;

	e->types = cv_pool_alloc(&m->pool, sizeof(*e->types) * (n + 1));
	if (!e->types)
		return CV_E_NOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *name = json_object_get_string(json_object_array_get_idx(t, i));
		const mtype_t *type = name ? find_type(m, name) : NULL;
		if (!type)
			return CV_E_INTERNAL;
		e->types[e->ntypes++] = type;
	}
	return CV_OK;
}

static cv_rc build_elem(cv_model_t *m, json_object *def, elem_t *e)
{
	cv_rc rc = CV_OK;
	const char *name = get_str(def, "n");
	json_object *min = get_typed(def, "min", json_type_int);
	json_object *max = get_typed(def, "max", json_type_int);
	json_object *children = get_typed(def, "c", json_type_array);
	const char *vs = get_str(def, "vs");
	size_t len;

	if (!name || !min || !max)
		return CV_E_INTERNAL;
	len = strlen(name);
	if (len > 3 && strcmp(name + len - 3, "[x]") == 0) {
		e->choice = true;
		len -= 3;
		name = cv_pool_strndup(&m->pool, name, len);
		if (!name)
			return CV_E_NOMEM;
	}
	e->name = keep(m, name);
	e->name_len = len;
	e->contained = strcmp(name, "contained") == 0;
	e->min = (uint32_t)json_object_get_int(min);
	e->max = json_object_get_int(max) < 0 ? MODEL_UNBOUNDED : (uint32_t)json_object_get_int(max);
	e->ref = keep(m, get_str(def, "ref"));
	if (!e->ref) {
		rc = build_elem_types(m, def, e);
		if (rc)
			goto out;
	}
	if (children) {
		e->children = cv_pool_alloc(&m->pool, sizeof(*e->children));
		if (!e->children) {
			rc = CV_E_NOMEM;
			goto out;
		}
		rc = build_elemset(m, children, e->children);
		if (rc)
			goto out;
	}
	if (vs) {
		const codeset_t *cs = find_codeset(m, vs);
		if (!cs) {
			rc = CV_E_INTERNAL;
			goto out;
		}
		e->codes = cs->expandable ? cs : NULL;
	}
out:
	return rc;
}

static cv_rc build_elemset(cv_model_t *m, json_object *arr, elemset_t *set)
{
	cv_rc rc = CV_OK;
	size_t n = json_object_array_length(arr);

	if (n > MODEL_MAX_ELEMS)
		return CV_E_INTERNAL;
	for (size_t i = 0; i < n; i++) {
		json_object *t = get_typed(json_object_array_get_idx(arr, i), "t", json_type_array);
		if (t && json_object_array_length(t) >= UINT8_MAX)
			return CV_E_INTERNAL;
	}
	set->e = cv_pool_alloc(&m->pool, sizeof(*set->e) * (n + 1));
	if (!set->e)
		return CV_E_NOMEM;
	for (size_t i = 0; i < n; i++) {
		rc = build_elem(m, json_object_array_get_idx(arr, i), &set->e[i]);
		if (rc)
			goto out;
	}
	set->n = n;
	qsort(set->e, n, sizeof(*set->e), cmp_elem);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(set->e[i - 1].name, set->e[i].name) == 0) {
			rc = CV_E_INTERNAL;
			goto out;
		}
	}
out:
	return rc;
}

static cv_rc build_types(cv_model_t *m)
{
	cv_rc rc = CV_OK;

	for (size_t i = 0; i < m->ntypes; i++) {
		mtype_t *t = &m->types[i];
		json_object *els = t->def ? get_typed(t->def, "elements", json_type_array) : NULL;

		if (!els)
			continue;
		rc = build_elemset(m, els, &t->elems);
		if (rc)
			break;
		t->def = NULL;
	}
	return rc;
}

/* The element named by len bytes of name in set (not a choice), or NULL. */
static elem_t *find_elem_n(const elemset_t *set, const char *name, size_t len)
{
	for (size_t i = 0; set && i < set->n; i++) {
		elem_t *e = &set->e[i];
		if (!e->choice && e->name_len == len && memcmp(e->name, name, len) == 0)
			return e;
	}
	return NULL;
}

/* Resolves a contentReference path such as "Questionnaire.item.item". */
static const elem_t *find_path(const cv_model_t *m, const char *path)
{
	const char *dot = strchr(path, '.');
	char tname[MODEL_NAME_MAX + 1];
	const mtype_t *t;
	const elemset_t *set;
	const elem_t *e = NULL;

	if (!dot || (size_t)(dot - path) > MODEL_NAME_MAX)
		return NULL;
	memcpy(tname, path, (size_t)(dot - path));
	tname[dot - path] = '\0';
	t = find_type(m, tname);
	if (!t)
		return NULL;
	set = &t->elems;
	while (dot) {
		const char *seg = dot + 1;
		dot = strchr(seg, '.');
		e = find_elem_n(set, seg, dot ? (size_t)(dot - seg) : strlen(seg));
		if (!e)
			return NULL;
		set = e->children;
	}
	return e;
}

static cv_rc resolve_refs(const cv_model_t *m, elemset_t *set)
{
	cv_rc rc = CV_OK;

	for (size_t i = 0; i < set->n && !rc; i++) {
		elem_t *e = &set->e[i];
		if (e->ref) {
			const elem_t *target = find_path(m, e->ref);
			if (!target || !target->children || target->ref)
				return CV_E_INTERNAL;
			e->children = target->children;
			e->types = target->types;
			e->ntypes = target->ntypes;
		} else if (e->children) {
			rc = resolve_refs(m, e->children);
		}
	}
	return rc;
}

static cv_rc load_specials(cv_model_t *m)
{
	cv_rc rc = CV_OK;
	elem_t *id, *ext;

	m->t_extension = find_type(m, "Extension");
	m->t_coding = find_type(m, "Coding");
	m->t_codeable = find_type(m, "CodeableConcept");
	if (!m->t_extension || !m->t_coding || !m->t_codeable)
		return CV_E_INTERNAL;
	id = find_elem_n(&m->t_extension->elems, "id", 2);
	ext = find_elem_n(&m->t_extension->elems, "extension", 9);
	if (!id || !ext)
		return CV_E_INTERNAL;
	m->prim_ext.e = cv_pool_alloc(&m->pool, 2 * sizeof(elem_t));
	if (!m->prim_ext.e)
		return CV_E_NOMEM;
	m->prim_ext.e[0] = *ext; /* "extension" < "id" */
	m->prim_ext.e[1] = *id;
	m->prim_ext.n = 2;
	m->nres = 0;
	m->res = cv_pool_alloc(&m->pool, sizeof(*m->res) * (m->ntypes + 1));
	if (!m->res)
		return CV_E_NOMEM;
	for (size_t i = 0; i < m->ntypes; i++) {
		if (m->types[i].kind == K_RESOURCE && !m->types[i].abstract)
			m->res[m->nres++] = m->types[i].name;
	}
	return rc;
}

cv_rc cv_model_new(cv_model_t **out)
{
	cv_rc rc = CV_OK;
	cv_model_t *m = calloc(1, sizeof(*m));

	*out = NULL;
	if (!m)
		return CV_E_NOMEM;
	cv_pool_init(&m->pool, 0);
	rc = parse_blob(m);
	if (rc)
		goto out;
	rc = load_types(m);
	if (rc)
		goto out;
	rc = load_valuesets(m);
	if (rc)
		goto out;
	rc = build_types(m);
	if (rc)
		goto out;
	for (size_t i = 0; i < m->ntypes && !rc; i++)
		rc = resolve_refs(m, &m->types[i].elems);
	if (rc)
		goto out;
	rc = load_specials(m);
	if (rc)
		goto out;
	/* every string the tables use was copied into the pool: drop the parsed blob */
	for (size_t i = 0; i < m->ntypes; i++)
		m->types[i].def = NULL;
	json_object_put(m->root);
	m->root = NULL;
out:
	if (rc) {
		cv_model_free(m);
		return rc;
	}
	*out = m;
	return CV_OK;
}

void cv_model_free(cv_model_t *m)
{
	if (!m)
		return;
	cv_pool_release(&m->pool);
	if (m->root)
		json_object_put(m->root);
	free(m);
}

bool cv_model_is_resource(const cv_model_t *m, const char *type)
{
	const mtype_t *t;

	if (!m || !type)
		return false;
	t = find_type(m, type);
	return t && t->kind == K_RESOURCE && !t->abstract;
}

size_t cv_model_resource_count(const cv_model_t *m)
{
	return m ? m->nres : 0;
}

const char *cv_model_resource_name(const cv_model_t *m, size_t i)
{
	return m && i < m->nres ? m->res[i] : NULL;
}

/* ---- primitive formats -------------------------------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return false;
	}
	return true;
}

static int num(const char *s, size_t n)
{
	int v = 0;

	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

static int month_days(int y, int mon)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return mon == 2 && leap ? 29 : days[mon - 1];
}

/* YYYY, YYYY-MM or YYYY-MM-DD at s: bytes used (0: invalid); *parts gets 1..3. */
static size_t scan_date(const char *s, size_t n, int *parts)
{
	int year, mon;

	if (n < 4 || !digits(s, 4) || (year = num(s, 4)) == 0)
		return 0;
	*parts = 1;
	if (n == 4 || s[4] != '-')
		return 4;
	if (n < 7 || !digits(s + 5, 2) || (mon = num(s + 5, 2)) < 1 || mon > 12)
		return 0;
	*parts = 2;
	if (n == 7 || s[7] != '-')
		return 7;
	if (n < 10 || !digits(s + 8, 2) || num(s + 8, 2) < 1 || num(s + 8, 2) > month_days(year, mon))
		return 0;
	*parts = 3;
	return 10;
}

/* hh:mm:ss(.fff)? at s: bytes used, 0 if invalid. */
static size_t scan_time(const char *s, size_t n)
{
	size_t p = 8;

	if (n < 8 || !digits(s, 2) || s[2] != ':' || !digits(s + 3, 2) || s[5] != ':' ||
	    !digits(s + 6, 2))
		return 0;
	if (num(s, 2) > 23 || num(s + 3, 2) > 59 || num(s + 6, 2) > 60)
		return 0;
	if (p < n && s[p] == '.') {
		size_t start = ++p;
		while (p < n && is_digit(s[p]))
			p++;
		if (p == start)
			return 0;
	}
	return p;
}

/* Z or (+|-)hh:mm at s: bytes used, 0 if invalid. */
static size_t scan_tz(const char *s, size_t n)
{
	int hh, mm;

	if (n >= 1 && s[0] == 'Z')
		return 1;
	if (n < 6 || (s[0] != '+' && s[0] != '-') || !digits(s + 1, 2) || s[3] != ':' ||
	    !digits(s + 4, 2))
		return 0;
	hh = num(s + 1, 2);
	mm = num(s + 4, 2);
	if (mm > 59 || hh > 14 || (hh == 14 && mm != 0))
		return 0;
	return 6;
}

static bool valid_datetime(const char *s, size_t n, bool instant)
{
	int parts = 0;
	size_t p = scan_date(s, n, &parts), t, z;

	if (!p)
		return false;
	if (p == n)
		return !instant;
	if (parts != 3 || s[p] != 'T')
		return false;
	p++;
	t = scan_time(s + p, n - p);
	if (!t)
		return false;
	p += t;
	z = scan_tz(s + p, n - p);
	return z && p + z == n;
}

static bool valid_date(const char *s, size_t n)
{
	int parts = 0;
	size_t p = scan_date(s, n, &parts);

	return p && p == n;
}

static bool valid_id(const char *s, size_t n)
{
	if (n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '.')
			return false;
	}
	return true;
}

/* [^\s]+(\s[^\s]+)*: no leading, trailing or doubled whitespace. */
static bool valid_code(const char *s, size_t n)
{
	if (is_space(s[0]) || is_space(s[n - 1]))
		return false;
	for (size_t i = 1; i < n; i++) {
		if (is_space(s[i]) && is_space(s[i - 1]))
			return false;
	}
	return true;
}

static bool no_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (is_space(s[i]))
			return false;
	}
	return true;
}

/* urn:oid:[0-2](\.(0|[1-9][0-9]*))+ */
static bool valid_oid(const char *s, size_t n)
{
	size_t p = 8, arcs = 0;

	if (n < 10 || memcmp(s, "urn:oid:", 8) != 0 || s[p] < '0' || s[p] > '2')
		return false;
	p++;
	while (p < n) {
		size_t start;
		if (s[p] != '.')
			return false;
		start = ++p;
		while (p < n && is_digit(s[p]))
			p++;
		if (p == start || (s[start] == '0' && p - start > 1))
			return false;
		arcs++;
	}
	return arcs > 0;
}

/* urn:uuid: and 8-4-4-4-12 lowercase hex digits. */
static bool valid_uuid(const char *s, size_t n)
{
	if (n != 45 || memcmp(s, "urn:uuid:", 9) != 0)
		return false;
	for (size_t i = 0; i < 36; i++) {
		char c = s[9 + i];
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? c != '-' : !(is_digit(c) || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

/* Groups of four from [A-Za-z0-9+/=], whitespace allowed, '=' only as padding. */
static bool valid_base64(const char *s, size_t n)
{
	size_t count = 0, pad = 0;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (is_space(c))
			continue;
		if (c == '=') {
			if (++pad > 2)
				return false;
		} else if (pad || !(is_alnum(c) || c == '+' || c == '/')) {
			return false;
		}
		count++;
	}
	return count > 0 && count % 4 == 0;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool valid_decimal_text(const char *s)
{
	size_t p = 0, start;

	if (s[p] == '-')
		p++;
	if (s[p] == '0') {
		p++;
	} else {
		start = p;
		while (is_digit(s[p]))
			p++;
		if (p == start)
			return false;
	}
	if (s[p] == '.') {
		start = ++p;
		while (is_digit(s[p]))
			p++;
		if (p == start)
			return false;
	}
	if (s[p] == 'e' || s[p] == 'E') {
		p++;
		if (s[p] == '+' || s[p] == '-')
			p++;
		start = p;
		while (is_digit(s[p]))
			p++;
		if (p == start)
			return false;
	}
	return s[p] == '\0';
}

static bool valid_xhtml(const char *s, size_t n)
{
	return n >= 5 && memcmp(s, "<div", 4) == 0 &&
	       (s[4] == '>' || s[4] == '/' || is_space(s[4]));
}

static const char *prim_label(prim_t p)
{
	for (size_t i = 0; i < sizeof(prim_names) / sizeof(prim_names[0]); i++) {
		if (prim_names[i].prim == p)
			return prim_names[i].name;
	}
	return "value";
}

/* Checks a non-empty string's format; true when it is valid for p. */
static bool valid_string_format(prim_t p, const char *s, size_t n)
{
	switch (p) {
	case P_CODE:
		return valid_code(s, n);
	case P_ID:
		return valid_id(s, n);
	case P_URI:
	case P_URL:
	case P_CANONICAL:
		return no_space(s, n);
	case P_OID:
		return valid_oid(s, n);
	case P_UUID:
		return valid_uuid(s, n);
	case P_DATE:
		return valid_date(s, n);
	case P_DATETIME:
		return valid_datetime(s, n, false);
	case P_INSTANT:
		return valid_datetime(s, n, true);
	case P_TIME:
		return scan_time(s, n) == n;
	case P_BASE64:
		return valid_base64(s, n);
	case P_XHTML:
		return valid_xhtml(s, n);
	default:
		return true;
	}
}

static bool codesys_has(const codesys_t *cs, const char *code)
{
	return bsearch(&code, cs->codes, cs->n, sizeof(*cs->codes), cmp_strp) != NULL;
}

static const codesys_t *codeset_system(const codeset_t *set, const char *system)
{
	codesys_t key = {.system = system};

	return bsearch(&key, set->sys, set->nsys, sizeof(*set->sys), cmp_codesys);
}

static bool codeset_has_any(const codeset_t *set, const char *code)
{
	for (size_t i = 0; i < set->nsys; i++) {
		if (codesys_has(&set->sys[i], code))
			return true;
	}
	return false;
}

/* ---- validation ----------------------------------------------------------- */

typedef struct walk {
	const cv_model_t *m;
	cv_outcome_t *oo;
	size_t errors;     /* problems found (also past the outcome's cap) */
	cv_rc rc;          /* CV_E_NOMEM once an issue could not be recorded */
	bool stop;         /* outcome full or failed: stop walking */
	bool in_contained; /* inside a contained resource */
	unsigned depth;
	size_t len;
	char path[MODEL_PATH_MAX];
} walk_t;

static void issue(walk_t *w, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void issue(walk_t *w, const char *code, const char *fmt, ...)
{
	char msg[256];
	const char *expr = NULL;
	va_list ap;
	cv_rc rc;

	w->errors++;
	if (w->stop)
		return;
	if (w->oo->max && w->oo->count >= w->oo->max)
		w->stop = true; /* this add only marks the outcome truncated */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (w->len && !w->stop) {
		expr = cv_pool_strndup(w->oo->pool, w->path, w->len);
		if (!expr) {
			w->rc = CV_E_NOMEM;
			w->stop = true;
			return;
		}
	}
	rc = cv_outcome_add(w->oo, CV_SEV_ERROR, code, expr, "%s", msg);
	if (rc) {
		/* Only running out of memory is a failure; anything else means the
		 * outcome is full, and the resource is invalid either way. */
		if (rc == CV_E_NOMEM)
			w->rc = rc;
		w->stop = true;
	}
}

/* Appends n bytes of s to the location if they fit (else leaves it as it was). */
static void path_append(walk_t *w, const char *s, size_t n)
{
	if (n >= sizeof(w->path) - w->len)
		return;
	memcpy(w->path + w->len, s, n);
	w->len += n;
	w->path[w->len] = '\0';
}

/* Appends sep (unless the location is empty) and name; returns the length to restore. */
static size_t path_push(walk_t *w, const char *sep, const char *name)
{
	size_t old = w->len, ns = w->len ? strlen(sep) : 0, nn = strlen(name);

	if (ns + nn < sizeof(w->path) - w->len) {
		path_append(w, sep, ns);
		path_append(w, name, nn);
	}
	return old;
}

/* Appends "[i]"; returns the length to restore. */
static size_t path_index(walk_t *w, size_t i)
{
	char buf[24];
	size_t p = sizeof(buf), old = w->len;

	buf[--p] = ']';
	do {
		buf[--p] = (char)('0' + i % 10);
		i /= 10;
	} while (i && p > 1);
	buf[--p] = '[';
	path_append(w, buf + p, sizeof(buf) - p);
	return old;
}

static void path_pop(walk_t *w, size_t old)
{
	w->len = old;
	w->path[old] = '\0';
}

/* A JSON key is echoed in locations only if it looks like an element name. */
static const char *safe_name(const char *key)
{
	size_t n = 0;

	for (; key[n]; n++) {
		if (n >= MODEL_NAME_MAX || !(is_alnum(key[n]) || key[n] == '_'))
			return "(invalid-name)";
	}
	return n ? key : "(empty-name)";
}

/* The element a JSON key names; for a choice, *ctype and *cidx (1-based) get the type. */
static const elem_t *lookup_elem(const elemset_t *set, const char *key, const mtype_t **ctype,
				 uint8_t *cidx)
{
	elem_t k = {.name = key};
	const elem_t *e = bsearch(&k, set->e, set->n, sizeof(*set->e), cmp_elem);

	*ctype = NULL;
	*cidx = 0;
	if (e)
		return e->choice ? NULL : e;
	for (size_t i = 0; i < set->n; i++) {
		const elem_t *c = &set->e[i];
		const char *suffix = key + c->name_len;
		if (!c->choice || strncmp(key, c->name, c->name_len) != 0)
			continue;
		for (size_t j = 0; j < c->ntypes; j++) {
			const char *tn = c->types[j]->name;
			char first = tn[0] >= 'a' && tn[0] <= 'z' ? (char)(tn[0] - 'a' + 'A') : tn[0];
			if (suffix[0] == first && strcmp(suffix + 1, tn + 1) == 0) {
				*ctype = c->types[j];
				*cidx = (uint8_t)(j + 1);
				return c;
			}
		}
	}
	return NULL;
}

static void check_object(walk_t *w, json_object *obj, const elemset_t *set, bool resource);
static void check_resource(walk_t *w, json_object *obj);

static void check_int(walk_t *w, json_object *val, prim_t p)
{
	int64_t v;

	if (!json_object_is_type(val, json_type_int)) {
		issue(w, "structure", "an %s must be a JSON integer number", prim_label(p));
		return;
	}
	v = json_object_get_int64(val);
	if (v < INT32_MIN || v > INT32_MAX)
		issue(w, "value", "the integer is outside the 32-bit range");
	else if (p == P_POSINT && v < 1)
		issue(w, "value", "a positiveInt must be 1 or more");
	else if (p == P_UINT && v < 0)
		issue(w, "value", "an unsignedInt must not be negative");
}

static void check_decimal(walk_t *w, json_object *val)
{
	if (json_object_is_type(val, json_type_int))
		return;
	if (!json_object_is_type(val, json_type_double)) {
		issue(w, "structure", "a decimal must be a JSON number");
		return;
	}
	if (!valid_decimal_text(json_object_get_string(val)) ||
	    isnan(json_object_get_double(val)))
		issue(w, "value", "not a valid decimal number");
}

static void check_primitive(walk_t *w, json_object *val, prim_t p, const codeset_t *codes)
{
	const char *s;
	size_t n;

	switch (p) {
	case P_BOOLEAN:
		if (!json_object_is_type(val, json_type_boolean))
			issue(w, "structure", "a boolean must be JSON true or false");
		return;
	case P_INTEGER:
	case P_POSINT:
	case P_UINT:
		check_int(w, val, p);
		return;
	case P_DECIMAL:
		check_decimal(w, val);
		return;
	default:
		break;
	}
	if (!json_object_is_type(val, json_type_string)) {
		issue(w, "structure", "a %s must be a JSON string", prim_label(p));
		return;
	}
	s = json_object_get_string(val);
	n = (size_t)json_object_get_string_len(val);
	if (n == 0) {
		issue(w, "value", "empty strings are not allowed: omit the element instead");
		return;
	}
	if (n > MODEL_MAX_STRING && p != P_BASE64) {
		issue(w, "too-long", "the string is longer than %u bytes", MODEL_MAX_STRING);
		return;
	}
	if (memchr(s, '\0', n) || !valid_string_format(p, s, n)) {
		issue(w, "value", "not a valid %s", prim_label(p));
		return;
	}
	if (codes && !codeset_has_any(codes, s))
		issue(w, "code-invalid", "the code is not in the required value set %s", codes->url);
}

static void check_coding(walk_t *w, json_object *coding, const codeset_t *codes)
{
	const char *system = get_str(coding, "system");
	const char *code = get_str(coding, "code");
	const codesys_t *cs = system && code ? codeset_system(codes, system) : NULL;
	size_t old;

	/* A malformed code was reported where it stands; only report each problem once. */
	if (!cs || !code[0] || !valid_code(code, strlen(code)) || codesys_has(cs, code))
		return;
	old = path_push(w, ".", "code");
	issue(w, "code-invalid", "the code is not in the required value set %s", codes->url);
	path_pop(w, old);
}

/* Required binding on Coding or CodeableConcept: codes of a known system must be in the set. */
static void check_coded(walk_t *w, json_object *obj, const mtype_t *type, const codeset_t *codes)
{
	json_object *arr;
	size_t old;

	if (type == w->m->t_coding) {
		check_coding(w, obj, codes);
		return;
	}
	if (type != w->m->t_codeable || !(arr = get_typed(obj, "coding", json_type_array)))
		return;
	old = path_push(w, ".", "coding");
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *c = json_object_array_get_idx(arr, i);
		size_t o2;
		if (!json_object_is_type(c, json_type_object))
			continue;
		o2 = path_index(w, i);
		check_coding(w, c, codes);
		path_pop(w, o2);
	}
	path_pop(w, old);
}

/* ext-1: an extension has a value[x] or nested extensions, not both. */
static void check_extension_rule(walk_t *w, json_object *obj)
{
	bool has_ext = json_object_object_get_ex(obj, "extension", NULL);
	bool has_val = false;

	json_object_object_foreach(obj, key, v) {
		(void)v;
		if (strncmp(key, "value", 5) == 0 || strncmp(key, "_value", 6) == 0)
			has_val = true;
	}
	if (has_ext && has_val)
		issue(w, "invariant", "an extension must have either nested extensions or a value[x], not both");
	else if (!has_ext && !has_val)
		issue(w, "invariant", "an extension must have a value[x] or nested extensions");
}

static void check_item(walk_t *w, json_object *val, const elem_t *e, const mtype_t *type)
{
	bool saved;

	if (!type)
		return;
	if (type->kind == K_PRIMITIVE) {
		check_primitive(w, val, type->prim, e->codes);
		return;
	}
	if (!json_object_is_type(val, json_type_object)) {
		issue(w, "structure", "a %s must be a JSON object", type->name);
		return;
	}
	if (type->kind != K_ANY_RESOURCE && json_object_object_length(val) == 1 &&
	    json_object_object_get_ex(val, "id", NULL))
		issue(w, "invariant", "an element must have a value or children other than id (ele-1)");
	if (e->children) {
		check_object(w, val, e->children, false);
		return;
	}
	if (type->kind == K_ANY_RESOURCE) {
		saved = w->in_contained;
		w->in_contained = e->contained;
		check_resource(w, val);
		w->in_contained = saved;
		return;
	}
	check_object(w, val, &type->elems, false);
	if (type == w->m->t_extension)
		check_extension_rule(w, val);
	if (e->codes)
		check_coded(w, val, type, e->codes);
}

/* Whether item i of the `_name` sibling array is an object (extensions of a null value). */
static bool ext_at(json_object *ext, size_t i)
{
	return ext && json_object_is_type(ext, json_type_array) && i < json_object_array_length(ext) &&
	       json_object_is_type(json_object_array_get_idx(ext, i), json_type_object);
}

static json_object *sibling(json_object *parent, const char *key, bool underscore)
{
	char buf[MODEL_NAME_MAX * 2 + 2];
	json_object *v = NULL;
	int n = snprintf(buf, sizeof(buf), "%s%s", underscore ? "_" : "", key);

	if (n < 0 || (size_t)n >= sizeof(buf))
		return NULL;
	json_object_object_get_ex(parent, buf, &v);
	return v;
}

static void check_array(walk_t *w, json_object *parent, const char *key, json_object *val,
			const elem_t *e, const mtype_t *type)
{
	size_t n = json_object_array_length(val);
	bool prim = type && type->kind == K_PRIMITIVE;
	json_object *ext = prim ? sibling(parent, key, true) : NULL;

	if (n == 0) {
		issue(w, "structure", "empty arrays are not allowed: omit the element instead");
		return;
	}
	if (e->max != MODEL_UNBOUNDED && n > e->max)
		issue(w, "structure", "too many items: at most %u allowed", (unsigned)e->max);
	for (size_t i = 0; i < n && !w->stop; i++) {
		json_object *item = json_object_array_get_idx(val, i);
		size_t old = path_index(w, i);
		if (!item) {
			if (!prim || !ext_at(ext, i))
				issue(w, "structure", "null is only allowed in a primitive array whose _%s item at the same position has extensions",
				      e->name);
		} else {
			check_item(w, item, e, type);
		}
		path_pop(w, old);
	}
}

static void check_value(walk_t *w, json_object *parent, const char *key, json_object *val,
			const elem_t *e, const mtype_t *type)
{
	if (e->max == 0) {
		issue(w, "structure", "this element is not allowed");
		return;
	}
	if (e->contained && w->in_contained) {
		issue(w, "structure", "a contained resource must not contain resources");
		return;
	}
	if (json_object_is_type(val, json_type_array)) {
		if (e->max == 1)
			issue(w, "structure", "must be a single value, not an array");
		else
			check_array(w, parent, key, val, e, type);
		return;
	}
	if (e->max > 1) {
		issue(w, "structure", "must be an array");
		return;
	}
	if (!val) {
		issue(w, "structure", "null is not allowed: omit the element instead");
		return;
	}
	check_item(w, val, e, type);
}

/* An `_element` item: an object with id and/or extension. */
static void check_ext_holder(walk_t *w, json_object *val)
{
	if (!json_object_is_type(val, json_type_object)) {
		issue(w, "structure", "primitive extensions must be a JSON object");
		return;
	}
	check_object(w, val, &w->m->prim_ext, false);
}

/* `_name` sibling of a primitive element `name`. */
static void check_prim_ext(walk_t *w, json_object *parent, const char *name, json_object *val,
			   const elem_t *e)
{
	json_object *values = sibling(parent, name, false);
	bool have = json_object_is_type(values, json_type_array);
	size_t n, nv = have ? json_object_array_length(values) : 0;

	if (e->max == 1 || !json_object_is_type(val, json_type_array)) {
		if (e->max != 1)
			issue(w, "structure", "must be an array aligned with the values");
		else if (json_object_is_type(val, json_type_array))
			issue(w, "structure", "must be a single object, not an array");
		else if (!val)
			issue(w, "structure", "null is not allowed: omit the element instead");
		else
			check_ext_holder(w, val);
		return;
	}
	n = json_object_array_length(val);
	if (n == 0) {
		issue(w, "structure", "empty arrays are not allowed: omit the element instead");
		return;
	}
	if (have && nv != n)
		issue(w, "structure", "the _%s array must have as many items as the %s array", e->name, e->name);
	for (size_t i = 0; i < n && !w->stop; i++) {
		json_object *item = json_object_array_get_idx(val, i);
		size_t old = path_index(w, i);
		if (item)
			check_ext_holder(w, item);
		else if (!have || i >= nv)
			issue(w, "structure", "null here needs a value at the same position");
		path_pop(w, old);
	}
}

static void check_member(walk_t *w, json_object *obj, const elemset_t *set, const char *key,
			 json_object *val, uint8_t *seen, uint8_t *chosen)
{
	bool under = key[0] == '_';
	const char *name = under ? key + 1 : key;
	const mtype_t *ctype;
	uint8_t cidx;
	const elem_t *e = lookup_elem(set, name, &ctype, &cidx);
	const mtype_t *type;
	size_t i, old;

	type = e ? (e->choice ? ctype : (e->ntypes ? e->types[0] : NULL)) : NULL;
	if (!e || (under && (!type || type->kind != K_PRIMITIVE))) {
		old = path_push(w, ".", safe_name(key));
		issue(w, "structure", "unknown element");
		path_pop(w, old);
		return;
	}
	i = (size_t)(e - set->e);
	old = path_push(w, ".", name);
	if (e->choice && chosen[i] && chosen[i] != cidx) {
		issue(w, "structure", "only one type of %s[x] may be present", e->name);
		path_pop(w, old);
		return;
	}
	chosen[i] = cidx;
	seen[i] = 1;
	if (under)
		check_prim_ext(w, obj, name, val, e);
	else
		check_value(w, obj, key, val, e, type);
	path_pop(w, old);
}

static void check_required(walk_t *w, const elemset_t *set, const uint8_t *seen)
{
	for (size_t i = 0; i < set->n && !w->stop; i++) {
		const elem_t *e = &set->e[i];
		size_t old;
		if (e->min == 0 || seen[i])
			continue;
		old = path_push(w, ".", e->name);
		if (e->choice)
			path_push(w, "", "[x]");
		issue(w, "required", "a required element is missing");
		path_pop(w, old);
	}
}

static void check_object(walk_t *w, json_object *obj, const elemset_t *set, bool resource)
{
	uint8_t seen[MODEL_MAX_ELEMS] = {0};
	uint8_t chosen[MODEL_MAX_ELEMS] = {0}; /* 1 + index of the value[x] type used */

	if (w->stop)
		return;
	if (json_object_object_length(obj) == 0) {
		issue(w, "structure", "empty objects are not allowed: omit the element instead");
		return;
	}
	if (w->depth >= MODEL_MAX_DEPTH) {
		issue(w, "too-costly", "the content is nested too deeply");
		return;
	}
	w->depth++;
	json_object_object_foreach(obj, key, val) {
		if (w->stop)
			break;
		if (resource && strcmp(key, "resourceType") == 0)
			continue;
		check_member(w, obj, set, key, val, seen, chosen);
	}
	check_required(w, set, seen);
	w->depth--;
}

/* dom-4, dom-5: a contained resource has no versionId, lastUpdated or security labels. */
static void check_contained_meta(walk_t *w, json_object *obj)
{
	static const char *const banned[] = {"versionId", "lastUpdated", "security"};
	json_object *meta = get_typed(obj, "meta", json_type_object);

	for (size_t i = 0; meta && i < sizeof(banned) / sizeof(banned[0]); i++) {
		size_t old;
		if (!json_object_object_get_ex(meta, banned[i], NULL))
			continue;
		old = path_push(w, ".", "meta");
		path_push(w, ".", banned[i]);
		issue(w, "invariant", "a contained resource must not have meta.%s", banned[i]);
		path_pop(w, old);
	}
}

static void check_resource(walk_t *w, json_object *obj)
{
	json_object *rt;
	const mtype_t *t;
	size_t old;

	if (!json_object_object_get_ex(obj, "resourceType", &rt)) {
		old = path_push(w, ".", "resourceType");
		issue(w, "required", "resourceType is missing");
		path_pop(w, old);
		return;
	}
	if (!json_object_is_type(rt, json_type_string)) {
		old = path_push(w, ".", "resourceType");
		issue(w, "structure", "resourceType must be a JSON string");
		path_pop(w, old);
		return;
	}
	t = find_type(w->m, json_object_get_string(rt));
	if (!t || t->kind != K_RESOURCE || t->abstract) {
		old = path_push(w, ".", "resourceType");
		issue(w, "invalid", "resourceType does not name a FHIR R4 resource type");
		path_pop(w, old);
		return;
	}
	old = w->len ? w->len : path_push(w, "", t->name);
	check_object(w, obj, &t->elems, true);
	if (w->in_contained)
		check_contained_meta(w, obj);
	path_pop(w, old);
}

cv_rc cv_model_validate(const cv_model_t *m, json_object *resource, cv_outcome_t *oo)
{
	cv_rc rc = CV_OK;
	walk_t *w;

	if (!m || !oo)
		return CV_E_INTERNAL;
	w = malloc(sizeof(*w));
	if (!w)
		return CV_E_NOMEM;
	memset(w, 0, offsetof(walk_t, path));
	w->path[0] = '\0';
	w->m = m;
	w->oo = oo;
	if (!json_object_is_type(resource, json_type_object))
		issue(w, "structure", "a resource must be a JSON object");
	else
		check_resource(w, resource);
	rc = w->rc ? w->rc : (w->errors ? CV_E_INVALID : CV_OK);
	free(w);
	return rc;
}

/* ---- navigation (FHIRPath) ---------------------------------------------- */

struct cv_model_elem {
	elem_t e; /* never instantiated: cv_model_elem_t is an elem_t */
};

static const elem_t *as_elem(const cv_model_elem_t *e)
{
	return (const elem_t *)(const void *)e;
}

static const cv_model_elem_t *to_pub(const elem_t *e)
{
	return (const cv_model_elem_t *)(const void *)e;
}

static const elemset_t *nav_set(const cv_model_t *m, const char *type, const cv_model_elem_t *parent)
{
	const mtype_t *t;

	if (parent)
		return as_elem(parent)->children;
	if (!m || !type)
		return NULL;
	t = find_type(m, type);
	return t ? &t->elems : NULL;
}

const cv_model_elem_t *cv_model_elem(const cv_model_t *m, const char *type, const cv_model_elem_t *parent,
				     const char *name)
{
	const elemset_t *set = nav_set(m, type, parent);
	elem_t k = {.name = name};

	if (!set || !name)
		return NULL;
	return to_pub(bsearch(&k, set->e, set->n, sizeof(*set->e), cmp_elem));
}

const cv_model_elem_t *cv_model_elem_by_key(const cv_model_t *m, const char *type, const cv_model_elem_t *parent,
					    const char *key, const char **choice_type)
{
	const elemset_t *set = nav_set(m, type, parent);
	const mtype_t *ct = NULL;
	uint8_t ci = 0;
	const elem_t *e;

	*choice_type = NULL;
	if (!set || !key)
		return NULL;
	e = lookup_elem(set, key, &ct, &ci);
	if (e && ct)
		*choice_type = ct->name;
	return to_pub(e);
}

const char *cv_model_elem_name(const cv_model_elem_t *e)
{
	return e ? as_elem(e)->name : NULL;
}

bool cv_model_elem_is_choice(const cv_model_elem_t *e)
{
	return e && as_elem(e)->choice;
}

bool cv_model_elem_repeats(const cv_model_elem_t *e)
{
	return e && as_elem(e)->max > 1;
}

size_t cv_model_elem_type_count(const cv_model_elem_t *e)
{
	return e ? as_elem(e)->ntypes : 0;
}

const char *cv_model_elem_type(const cv_model_elem_t *e, size_t i)
{
	return e && i < as_elem(e)->ntypes ? as_elem(e)->types[i]->name : NULL;
}

bool cv_model_elem_is_backbone(const cv_model_elem_t *e)
{
	return e && as_elem(e)->children != NULL;
}

size_t cv_model_elem_child_count(const cv_model_t *m, const char *type, const cv_model_elem_t *parent)
{
	const elemset_t *set = nav_set(m, type, parent);

	return set ? set->n : 0;
}

const cv_model_elem_t *cv_model_elem_child(const cv_model_t *m, const char *type, const cv_model_elem_t *parent,
					   size_t i)
{
	const elemset_t *set = nav_set(m, type, parent);

	return set && i < set->n ? to_pub(&set->e[i]) : NULL;
}

bool cv_model_type_known(const cv_model_t *m, const char *type)
{
	return m && type && find_type(m, type) != NULL;
}

const char *cv_model_type_name(const cv_model_t *m, const char *type)
{
	const mtype_t *t = m && type ? find_type(m, type) : NULL;

	return t ? t->name : NULL;
}

const char *cv_model_type_base(const cv_model_t *m, const char *type)
{
	const mtype_t *t = m && type ? find_type(m, type) : NULL;

	if (!t)
		return NULL;
	static const char *const prim_base[][2] = {
		{"code", "string"},        {"id", "string"},         {"markdown", "string"},
		{"canonical", "uri"},      {"oid", "uri"},           {"url", "uri"},
		{"uuid", "uri"},           {"positiveInt", "integer"}, {"unsignedInt", "integer"},
	};

	if (t->base)
		return t->base;
	if (t->kind != K_PRIMITIVE)
		return NULL;
	for (size_t i = 0; i < sizeof(prim_base) / sizeof(prim_base[0]); i++) {
		if (strcmp(t->name, prim_base[i][0]) == 0)
			return prim_base[i][1];
	}
	return "Element";
}

bool cv_model_type_is_primitive(const cv_model_t *m, const char *type)
{
	const mtype_t *t = m && type ? find_type(m, type) : NULL;

	return t && t->kind == K_PRIMITIVE;
}

bool cv_model_type_derives(const cv_model_t *m, const char *type, const char *ancestor)
{
	/* the chain is short (Age < Quantity < Element); the bound guards a bad blob */
	for (int i = 0; type && ancestor && i < 8; i++) {
		if (strcmp(type, ancestor) == 0)
			return true;
		type = cv_model_type_base(m, type);
	}
	return false;
}
