/*
 * test_json.c - strict JSON: exact decimals, duplicate keys, NULs, invalid
 * UTF-8, limits, and error messages that never echo the input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "model/json.h"
#include "model/outcome.h"

static cv_rc parse(const char *text, size_t len, cv_pool_t *pool, json_object **obj, const char **err)
{
	return cv_json_parse(text, len, NULL, pool, obj, err);
}

static void round_trip(const char *in, const char *expect)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	json_object *o;
	const char *err;
	assert_int_equal(parse(in, strlen(in), &pool, &o, &err), CV_OK);
	cv_buf_t b;
	cv_buf_init(&b, 1 << 20);
	assert_int_equal(cv_json_write(o, &b), CV_OK);
	assert_string_equal(b.data, expect);
	cv_buf_release(&b);
	json_object_put(o);
	cv_pool_release(&pool);
}

static void rejects(const char *in, size_t len, const char *msg_part)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	json_object *o = (json_object *)1;
	const char *err = NULL;
	assert_int_equal(parse(in, len, &pool, &o, &err), CV_E_INVALID);
	assert_null(o);
	assert_non_null(err);
	if (msg_part && !strstr(err, msg_part))
		fail_msg("error '%s' does not mention '%s'", err, msg_part);
	cv_pool_release(&pool);
}

static void decimals_keep_their_text(void **state)
{
	round_trip("{\"a\":1.50,\"b\":-0.0,\"c\":1e3,\"d\":12345678901234567890,\"e\":7,\"f\":-0}",
		   "{\"a\":1.50,\"b\":-0.0,\"c\":1e3,\"d\":12345678901234567890,\"e\":7,\"f\":-0}");
	round_trip("[0.1000000000000000055511151231257827]", "[0.1000000000000000055511151231257827]");
}

static void strings_and_unicode(void **state)
{
	round_trip("{\"s\":\"caf\\u00e9 \\\"q\\\" /x\"}", "{\"s\":\"caf\xc3\xa9 \\\"q\\\" /x\"}");
	round_trip("{\"n\":null,\"t\":true,\"f\":false}", "{\"n\":null,\"t\":true,\"f\":false}");
}

static void duplicate_keys(void **state)
{
	const char *d1 = "{\"a\":1,\"a\":2}";
	const char *d2 = "{\"x\":{\"b\":[1,{\"c\":1,\"c\":1}]}}";
	rejects(d1, strlen(d1), "same key");
	rejects(d2, strlen(d2), "same key");
}

static void nul_and_control_characters(void **state)
{
	const char *esc = "{\"a\":\"x\\u0000y\"}";
	rejects(esc, strlen(esc), "NUL");
	const char raw[] = "{\"a\":\"x\0y\"}";
	rejects(raw, sizeof raw - 1, NULL);
	const char ctl[] = "{\"a\":\"x\ty\"}";
	rejects(ctl, sizeof ctl - 1, NULL);
	const char key[] = "{\"k\\u0000\":1}";
	rejects(key, strlen(key), "NUL");
}

static void invalid_utf8(void **state)
{
	const char *bad[] = { "{\"a\":\"\xc3\x28\"}", "{\"a\":\"\xff\"}", "{\"a\":\"\xe2\x82\"}",
			      "[\"\xed\xa0\x80\"]", "[\"\xc0\xaf\"]", "[\"\xf4\x90\x80\x80\"]",
			      "[\"\\ud800\"]", "[\"\\udc00x\"]", "[\"\\ud800\\u0041\"]", "{\"\\ud83d\":1}" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		rejects(bad[i], strlen(bad[i]), NULL);
	round_trip("[\"\\ud83d\\ude00\",\"\\\\ud800\"]", "[\"\xf0\x9f\x98\x80\",\"\\\\ud800\"]");
}

static char *nested(size_t depth)
{
	char *s = malloc(2 * depth + 1);
	memset(s, '[', depth);
	memset(s + depth, ']', depth);
	s[2 * depth] = '\0';
	return s;
}

static void depth_limit(void **state)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	json_object *o;
	const char *err;
	char *ok = nested(64), *deep = nested(65), *huge = nested(10000);
	assert_int_equal(parse(ok, strlen(ok), &pool, &o, &err), CV_OK);
	json_object_put(o);
	rejects(deep, strlen(deep), "deeply");
	rejects(huge, strlen(huge), "deeply");
	free(ok);
	free(deep);
	free(huge);
	cv_pool_release(&pool);
}

static void syntax_errors(void **state)
{
	const char *cases[] = { "", "   ", "{", "{\"a\":}", "{\"a\":1,}", "[1,]", "{} x", "{}{}", "{'a':1}",
				"{\"a\":01}", "{\"a\":NaN}", "/*c*/{}", "{\"a\":1}\n]" };
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		rejects(cases[i], strlen(cases[i]), NULL);
}

static void limits(void **state)
{
	cv_json_limits_t lim;
	cv_json_limits_default(&lim);
	lim.max_string = 8;
	lim.max_members = 3;
	lim.max_nodes = 10;
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	json_object *o;
	const char *err;
	assert_int_equal(cv_json_parse("[\"123456789\"]", 13, &lim, &pool, &o, &err), CV_E_INVALID);
	assert_int_equal(cv_json_parse("[1,2,3,4]", 9, &lim, &pool, &o, &err), CV_E_INVALID);
	assert_int_equal(cv_json_parse("[[1,2],[3,4],[5,6],[7]]", 23, &lim, &pool, &o, &err), CV_E_INVALID);
	assert_int_equal(cv_json_parse("[1,2,3]", 7, &lim, &pool, &o, &err), CV_OK);
	json_object_put(o);
	cv_pool_release(&pool);
}

static void errors_do_not_echo_input(void **state)
{
	const char *doc = "{\"name\":\"Zebulon Quixotic\",\"name\":\"Zebulon Quixotic\", oops}";
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	json_object *o;
	const char *err;
	assert_int_equal(parse(doc, strlen(doc), &pool, &o, &err), CV_E_INVALID);
	assert_null(strstr(err, "Zebulon"));
	assert_null(strstr(err, "oops"));
	const char *syn = "{\"name\":\"Zebulon Quixotic\" oops}";
	assert_int_equal(parse(syn, strlen(syn), &pool, &o, &err), CV_E_INVALID);
	assert_null(strstr(err, "Zebulon"));
	assert_null(strstr(err, "oops"));
	cv_pool_release(&pool);
}

static void outcome_json(void **state)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_outcome_t oo;
	cv_outcome_init(&oo, &pool, 2);
	assert_int_equal(cv_outcome_add(&oo, CV_SEV_ERROR, "value", "Patient.birthDate", "bad \"date\""), CV_OK);
	assert_int_equal(cv_outcome_add(&oo, CV_SEV_WARNING, "structure", NULL, "w"), CV_OK);
	assert_int_equal(cv_outcome_add(&oo, CV_SEV_ERROR, "x", NULL, "dropped"), CV_OK);
	assert_true(oo.truncated);
	assert_int_equal(cv_outcome_errors(&oo), 1);
	cv_buf_t b;
	cv_buf_init(&b, 4096);
	assert_int_equal(cv_outcome_to_json(&oo, &b), CV_OK);
	json_object *o;
	const char *err;
	assert_int_equal(parse(b.data, b.len, &pool, &o, &err), CV_OK);
	json_object *issues = json_object_object_get(o, "issue");
	assert_int_equal(json_object_array_length(issues), 3);
	json_object *first = json_object_array_get_idx(issues, 0);
	assert_string_equal(json_object_get_string(json_object_object_get(first, "severity")), "error");
	assert_string_equal(json_object_get_string(json_object_array_get_idx(
		json_object_object_get(first, "expression"), 0)), "Patient.birthDate");
	assert_string_equal(json_object_get_string(json_object_object_get(first, "diagnostics")), "bad \"date\"");
	json_object_put(o);
	cv_buf_release(&b);
	cv_pool_release(&pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(decimals_keep_their_text), cmocka_unit_test(strings_and_unicode),
		cmocka_unit_test(duplicate_keys), cmocka_unit_test(nul_and_control_characters),
		cmocka_unit_test(invalid_utf8), cmocka_unit_test(depth_limit), cmocka_unit_test(syntax_errors),
		cmocka_unit_test(limits), cmocka_unit_test(errors_do_not_echo_input), cmocka_unit_test(outcome_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
