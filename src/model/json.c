/*
 * json.c - strict JSON parsing: yajl's streaming parser builds a json-c tree.
 *
 * yajl validates the syntax and UTF-8 and hands over each number's raw text;
 * the callbacks here enforce what JSON for FHIR needs beyond that: no
 * duplicate keys, no NUL characters (not even as \u0000), bounded depth,
 * width, string length and size, and decimals that keep their exact text.
 * Containers are attached to their parent when they open, so on any error
 * freeing the root frees everything.
 */
#include "model/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#define NUMBER_TEXT_MAX 128

typedef struct frame {
	json_object *obj;  /* the open container */
	size_t members;    /* values added to it */
} frame_t;

typedef struct parse {
	const cv_json_limits_t *lim;
	frame_t *stack;    /* open containers, lim->max_depth of them at most */
	size_t depth;
	json_object *root;
	int have_root;
	char *key;         /* pending object key (malloc'd) */
	size_t nodes;
	const char *err;   /* static message when a callback aborts */
} parse_t;

void cv_json_limits_default(cv_json_limits_t *lim)
{
	lim->max_depth = 64;
	lim->max_string = 4u << 20;
	lim->max_members = 100000;
	lim->max_nodes = 4000000;
}

static int fail(parse_t *p, const char *msg)
{
	if (!p->err)
		p->err = msg;
	return 0;
}

/* Attaches v to the open container (or makes it the root). Takes v. */
static int add(parse_t *p, json_object *v, int is_null)
{
	if (!v && !is_null)
		return fail(p, "out of memory");
	if (++p->nodes > p->lim->max_nodes) {
		json_object_put(v);
		return fail(p, "the document has too many values");
	}
	if (p->depth == 0) {
		p->root = v;
		p->have_root = 1;
		return 1;
	}
	frame_t *f = &p->stack[p->depth - 1];
	if (++f->members > p->lim->max_members) {
		json_object_put(v);
		return fail(p, "an object or array has too many members");
	}
	if (json_object_is_type(f->obj, json_type_array)) {
		if (json_object_array_add(f->obj, v)) {
			json_object_put(v);
			return fail(p, "out of memory");
		}
		return 1;
	}
	int rc = json_object_object_add(f->obj, p->key, v);
	free(p->key);
	p->key = NULL;
	if (rc) {
		json_object_put(v);
		return fail(p, "out of memory");
	}
	return 1;
}

static int on_null(void *ctx)
{
	return add(ctx, NULL, 1);
}

static int on_bool(void *ctx, int b)
{
	return add(ctx, json_object_new_boolean(b), 0);
}

static int is_integer_text(const char *s, size_t n)
{
	return memchr(s, '.', n) == NULL && memchr(s, 'e', n) == NULL && memchr(s, 'E', n) == NULL;
}

static int on_number(void *ctx, const char *s, size_t n)
{
	parse_t *p = ctx;
	char text[NUMBER_TEXT_MAX + 1];
	if (n > NUMBER_TEXT_MAX)
		return fail(p, "a number has too many digits");
	memcpy(text, s, n);
	text[n] = '\0';
	if (is_integer_text(text, n) && strcmp(text, "-0") != 0) {
		errno = 0;
		long long v = strtoll(text, NULL, 10);
		if (errno == 0)
			return add(p, json_object_new_int64(v), 0);
	}
	errno = 0;
	double d = strtod(text, NULL);
	if (errno == ERANGE && (d > 1.0 || d < -1.0))
		return fail(p, "a number is out of range");
	return add(p, json_object_new_double_s(d, text), 0);
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
	parse_t *p = ctx;
	if (n > p->lim->max_string)
		return fail(p, "a string is too long");
	if (memchr(s, '\0', n))
		return fail(p, "a string contains a NUL character");
	return add(p, json_object_new_string_len((const char *)s, (int)n), 0);
}

static int on_key(void *ctx, const unsigned char *s, size_t n)
{
	parse_t *p = ctx;
	json_object *top = p->stack[p->depth - 1].obj;
	if (n > p->lim->max_string)
		return fail(p, "a key is too long");
	if (memchr(s, '\0', n))
		return fail(p, "a key contains a NUL character");
	free(p->key);
	/* s is not terminated (it points into the document): copy exactly n bytes */
	p->key = malloc(n + 1);
	if (!p->key)
		return fail(p, "out of memory");
	memcpy(p->key, s, n);
	p->key[n] = '\0';
	if (json_object_object_get_ex(top, p->key, NULL))
		return fail(p, "an object has the same key twice");
	return 1;
}

static int open_container(parse_t *p, json_object *c)
{
	if (!c)
		return fail(p, "out of memory");
	if (p->depth >= p->lim->max_depth) {
		json_object_put(c);
		return fail(p, "the document is nested too deeply");
	}
	if (!add(p, c, 0))
		return 0;
	p->stack[p->depth].obj = c;
	p->stack[p->depth].members = 0;
	p->depth++;
	return 1;
}

static int on_start_map(void *ctx)
{
	return open_container(ctx, json_object_new_object());
}

static int on_start_array(void *ctx)
{
	return open_container(ctx, json_object_new_array());
}

static int on_end(void *ctx)
{
	parse_t *p = ctx;
	p->depth--;
	return 1;
}

static const yajl_callbacks callbacks = {
	.yajl_null = on_null,
	.yajl_boolean = on_bool,
	.yajl_number = on_number,
	.yajl_string = on_string,
	.yajl_start_map = on_start_map,
	.yajl_map_key = on_key,
	.yajl_end_map = on_end,
	.yajl_start_array = on_start_array,
	.yajl_end_array = on_end,
};

/* Length of the valid UTF-8 sequence at s (strict: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t left)
{
	unsigned char c = s[0];
	size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	if (n == 0 || n > left)
		return 0;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n > 1 && (s[1] < lo || s[1] > hi))
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

static unsigned hex4(const unsigned char *s)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned c = s[i];
		unsigned d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
			     c >= 'A' && c <= 'F' ? c - 'A' + 10 : 16;
		if (d > 15)
			return 0x10000; /* not hex: yajl reports it */
		v = v * 16 + d;
	}
	return v;
}

/* A \u escape at s (pointing at the backslash): 0 when fine, else an error.
 * A high surrogate must be followed by a low one; a low one may not stand alone. */
static const char *check_escape(const unsigned char *s, size_t left, size_t *skip)
{
	*skip = 2;
	if (left < 6)
		return NULL;
	unsigned u = hex4(s + 2);
	*skip = 6;
	if (u >= 0xdc00 && u <= 0xdfff)
		return "a string has an unpaired UTF-16 surrogate escape";
	if (u < 0xd800 || u > 0xdbff)
		return NULL;
	if (left < 12 || s[6] != '\\' || s[7] != 'u')
		return "a string has an unpaired UTF-16 surrogate escape";
	unsigned lo = hex4(s + 8);
	if (lo < 0xdc00 || lo > 0xdfff)
		return "a string has an unpaired UTF-16 surrogate escape";
	*skip = 12;
	return NULL;
}

/* One pass over the raw text: strict UTF-8 everywhere, and well-formed
 * surrogate pairs in escapes (yajl replaces a lone surrogate with '?'). */
static const char *check_text(const unsigned char *s, size_t len, size_t *at)
{
	int in_string = 0;
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		size_t n = 1;
		const char *err = NULL;
		if (c >= 0x80) {
			n = utf8_seq(s + i, len - i);
			if (!n)
				err = "the text is not valid UTF-8";
		} else if (c == '"') {
			in_string = !in_string;
		} else if (c == '\\' && in_string && i + 1 < len) {
			if (s[i + 1] == 'u')
				err = check_escape(s + i, len - i, &n);
			else
				n = 2;
		}
		if (err) {
			*at = i;
			return err;
		}
		i += n;
	}
	return NULL;
}

/* The message for a failed parse: what went wrong and where, never the input. */
static const char *error_message(yajl_handle h, parse_t *p, size_t len, cv_pool_t *pool)
{
	size_t at = yajl_get_bytes_consumed(h);
	if (p->err)
		return cv_pool_printf(pool, "%s (near byte %zu)", p->err, at);
	unsigned char *e = yajl_get_error(h, 0, NULL, 0);
	const char *m = cv_pool_printf(pool, "%s (near byte %zu of %zu)", e ? (const char *)e : "syntax error",
				       at, len);
	if (e)
		yajl_free_error(h, e);
	return m;
}

cv_rc cv_json_parse(const char *text, size_t len, const cv_json_limits_t *lim, cv_pool_t *pool,
		    json_object **out, const char **err)
{
	cv_json_limits_t def;
	if (!lim) {
		cv_json_limits_default(&def);
		lim = &def;
	}
	parse_t p = { .lim = lim };
	size_t bad_at = 0;
	*out = NULL;
	*err = NULL;
	const char *bad = check_text((const unsigned char *)text, len, &bad_at);
	if (bad) {
		*err = cv_pool_printf(pool, "%s (at byte %zu)", bad, bad_at);
		return CV_E_INVALID;
	}
	p.stack = calloc(lim->max_depth ? lim->max_depth : 1, sizeof *p.stack);
	yajl_handle h = p.stack ? yajl_alloc(&callbacks, NULL, &p) : NULL;
	if (!h) {
		free(p.stack);
		return CV_E_NOMEM;
	}
	yajl_config(h, yajl_allow_comments, 0);
	yajl_config(h, yajl_dont_validate_strings, 0);
	yajl_status st = yajl_parse(h, (const unsigned char *)text, len);
	if (st == yajl_status_ok)
		st = yajl_complete_parse(h);
	if (st == yajl_status_ok && !p.have_root)
		p.err = "the body is empty";
	cv_rc rc = CV_OK;
	if (st != yajl_status_ok || p.err) {
		*err = error_message(h, &p, len, pool);
		rc = p.err && strcmp(p.err, "out of memory") == 0 ? CV_E_NOMEM : CV_E_INVALID;
		json_object_put(p.root);
	} else {
		*out = p.root;
	}
	free(p.key);
	free(p.stack);
	yajl_free(h);
	return rc;
}

static void put_obj(void *o)
{
	json_object_put(o);
}

cv_rc cv_json_pool_own(cv_pool_t *pool, json_object *obj)
{
	return obj ? cv_pool_defer(pool, put_obj, obj) : CV_OK;
}

cv_rc cv_json_write(json_object *obj, cv_buf_t *out)
{
	size_t n = 0;
	const char *s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
							  &n);
	return s ? cv_buf_append(out, s, n) : CV_E_NOMEM;
}

const char *cv_json_member_string(json_object *o, const char *k, int *bad)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, k, &v))
		return NULL;
	if (!json_object_is_type(v, json_type_string)) {
		*bad = 1;
		return NULL;
	}
	return json_object_get_string(v);
}

int cv_json_member_int(json_object *o, const char *k, int64_t *out)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
		return 0;
	*out = json_object_get_int64(v);
	return 1;
}

cv_rc cv_json_tag_subsetted(json_object *meta)
{
	json_object *tags, *tag = json_object_new_object();
	if (!tag)
		return CV_E_NOMEM;
	if (!json_object_object_get_ex(meta, "tag", &tags) || !json_object_is_type(tags, json_type_array)) {
		tags = json_object_new_array();
		if (!tags || json_object_object_add(meta, "tag", tags)) {
			json_object_put(tags);
			json_object_put(tag);
			return CV_E_NOMEM;
		}
	}
	if (json_object_object_add(tag, "system", json_object_new_string("http://terminology.hl7.org/CodeSystem/v3-ObservationValue")) ||
	    json_object_object_add(tag, "code", json_object_new_string("SUBSETTED")) || json_object_array_add(tags, tag)) {
		json_object_put(tag);
		return CV_E_NOMEM;
	}
	return CV_OK;
}
