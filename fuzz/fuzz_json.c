/*
 * fuzz_json.c - the strict JSON parser: never crashes, leaks or accepts what
 * it cannot write back; what it writes parses again to the same text.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "model/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 64u << 20);
	json_object *o = NULL, *o2 = NULL;
	const char *err = NULL;
	cv_buf_t a, b;
	cv_buf_init(&a, 64u << 20);
	cv_buf_init(&b, 64u << 20);
	if (cv_json_parse((const char *)data, size, NULL, &pool, &o, &err) == CV_OK) {
		assert(cv_json_write(o, &a) == CV_OK);
		assert(cv_json_parse(a.data, a.len, NULL, &pool, &o2, &err) == CV_OK);
		assert(cv_json_write(o2, &b) == CV_OK);
		assert(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
	} else {
		assert(o == NULL && err != NULL);
	}
	json_object_put(o);
	json_object_put(o2);
	cv_buf_release(&a);
	cv_buf_release(&b);
	cv_pool_release(&pool);
	return 0;
}
