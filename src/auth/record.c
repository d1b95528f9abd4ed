/*
 * record.c - reading and writing auth/'s internal records (see record.h).
 */
#include "auth/record.h"

#include <sodium.h>
#include <string.h>

#include "core/pool.h"
#include "core/time.h"

cv_rc cv_record_read(cv_store_t *s, const char *type, const char *id, json_object **out, int64_t *version)
{
	cv_pool_t pool;
	cv_store_version_t v;
	*out = NULL;
	*version = 0;
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_store_read(s, type, id, 0, &pool, &v);
	if (!rc) {
		*version = v.version;
		if (!v.deleted)
			*out = json_tokener_parse((const char *)v.body);
		if (!v.deleted && !*out)
			rc = CV_E_INTERNAL;
		sodium_memzero((void *)v.body, v.body_len);
	}
	cv_pool_release(&pool);
	return rc == CV_E_NOTFOUND ? CV_OK : rc;
}

cv_rc cv_record_put(cv_store_t *s, const char *type, const char *id, int64_t expect, json_object *o)
{
	const char *text = o ? json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN) : "{}";
	if (!text)
		return CV_E_NOMEM;
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = type, .id = id, .expect_version = expect,
			       .updated_us = cv_time_now_us(), .deleted = o == NULL,
			       .body = (const uint8_t *)text, .body_len = strlen(text) };
	return cv_store_write_sync(s, &w);
}

const char *cv_record_str(json_object *o, const char *key)
{
	json_object *v;
	if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return "";
	return json_object_get_string(v);
}

int64_t cv_record_int(json_object *o, const char *key)
{
	json_object *v;
	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

bool cv_record_bool(json_object *o, const char *key)
{
	json_object *v;
	return o && json_object_object_get_ex(o, key, &v) && json_object_get_boolean(v);
}
