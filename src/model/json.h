/*
 * json.h - strict JSON parsing into json-c trees.
 *
 * Parses with yajl (streaming, raw number text) and builds the json-c tree in
 * one pass, so that it can enforce what json-c alone does not:
 *   - duplicate keys in an object are an error;
 *   - invalid UTF-8, NUL bytes and unescaped control characters are errors;
 *   - bounds: nesting depth, string length, members per object/array, total nodes;
 *   - a number keeps the exact text it was sent with ("1.50" stays "1.50"):
 *     decimals become json-c doubles carrying their source text
 *     (json_object_new_double_s), integers that fit become int64.
 * Trailing content after the value is an error.
 */
#ifndef CV_MODEL_JSON_H
#define CV_MODEL_JSON_H

#include <stddef.h>
#include <json-c/json.h>

#include "core/buf.h"
#include "core/pool.h"
#include "core/rc.h"

typedef struct cv_json_limits {
	size_t max_depth;   /* deepest nesting of objects/arrays (default 64) */
	size_t max_string;  /* longest string or key in bytes (default 4 MiB) */
	size_t max_members; /* most members in one object or array (default 100000) */
	size_t max_nodes;   /* most values in the whole document (default 4000000) */
} cv_json_limits_t;

/* Fills lim with the defaults above. */
void cv_json_limits_default(cv_json_limits_t *lim);

/*
 * Parses len bytes of text. On success *out is a new tree owned by the caller
 * (json_object_put it, or hand it to a pool with cv_json_pool_own) and CV_OK is
 * returned. On failure returns CV_E_INVALID (syntax, duplicate key, bad UTF-8,
 * over a limit) or CV_E_NOMEM, *out is NULL, and *err points to a message
 * allocated in pool that names the problem and the byte offset but never
 * echoes the input's content.
 */
cv_rc cv_json_parse(const char *text, size_t len, const cv_json_limits_t *lim, cv_pool_t *pool,
		    json_object **out, const char **err);

/* Ties obj's lifetime to pool: it is released with json_object_put at cv_pool_release. */
cv_rc cv_json_pool_own(cv_pool_t *pool, json_object *obj);

/* Appends obj's compact JSON text to out (no slash escaping, decimals as sent). */
cv_rc cv_json_write(json_object *obj, cv_buf_t *out);

/* Adds the SUBSETTED tag (v3-ObservationValue) to a resource's meta object
 * (its `tag` array made if missing): the resource shown is not all of it. */
cv_rc cv_json_tag_subsetted(json_object *meta);

/* The string member k of object o: NULL when it is absent; when it is there
 * but not a string, NULL and *bad set to 1 (so callers can answer 400). */
const char *cv_json_member_string(json_object *o, const char *k, int *bad);

/* The integer member k of object o into *out: 1 when it is one, else 0. */
int cv_json_member_int(json_object *o, const char *k, int64_t *out);

#endif
