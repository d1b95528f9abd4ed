/*
 * test_negotiate.c - Accept, _format, Content-Type, ETags, version ids and
 * route matching, including the inputs clients really send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fhir/negotiate.h"
#include "net/router.h"

static void accept_header(void **state)
{
	assert_true(cv_http_accepts_json("application/fhir+json"));
	assert_true(cv_http_accepts_json("text/html, application/json;q=0.9"));
	assert_true(cv_http_accepts_json("*/*"));
	assert_true(cv_http_accepts_json("application/fhir+json; fhirVersion=4.0"));
	assert_true(cv_http_accepts_json(" APPLICATION/*"));
	assert_false(cv_http_accepts_json("application/fhir+xml"));
	assert_false(cv_http_accepts_json("text/html, application/xml"));
	assert_false(cv_http_accepts_json(""));
	assert_false(cv_http_accepts_json("application/jsonx"));
}

static void format_param(void **state)
{
	assert_true(cv_http_format_json("json"));
	assert_true(cv_http_format_json("application/fhir+json"));
	assert_false(cv_http_format_json("xml"));
	assert_false(cv_http_format_json("json,xml"));
	assert_false(cv_http_format_json(""));
}

static void content_type(void **state)
{
	assert_true(cv_http_content_type_json("application/fhir+json"));
	assert_true(cv_http_content_type_json("application/json; charset=utf-8"));
	assert_true(cv_http_content_type_json("application/fhir+json;charset=UTF-8"));
	assert_false(cv_http_content_type_json("application/fhir+json; charset=iso-8859-1"));
	assert_false(cv_http_content_type_json("text/plain"));
	assert_false(cv_http_content_type_json("application/x-www-form-urlencoded"));
	assert_false(cv_http_content_type_json(NULL));
	assert_false(cv_http_content_type_json(""));
}

static void etags_and_versions(void **state)
{
	int64_t v;
	assert_int_equal(cv_http_parse_etag(NULL), 0);
	assert_int_equal(cv_http_parse_etag("W/\"3\""), 3);
	assert_int_equal(cv_http_parse_etag("\"12\""), 12);
	assert_int_equal(cv_http_parse_etag("3"), -1);
	assert_int_equal(cv_http_parse_etag("W/\"\""), -1);
	assert_int_equal(cv_http_parse_etag("W/\"0\""), -1);
	assert_int_equal(cv_http_parse_etag("W/\"-1\""), -1);
	assert_int_equal(cv_http_parse_etag("W/\"99999999999999999999999\""), -1);
	assert_true(cv_http_parse_version("1", &v) && v == 1);
	assert_false(cv_http_parse_version("+1", &v));
	assert_false(cv_http_parse_version(" 1", &v));
	assert_false(cv_http_parse_version("1a", &v));
	assert_false(cv_http_parse_version("0", &v));
	assert_false(cv_http_parse_version("", &v));
}

static void routes(void **state)
{
	cv_pool_t pool;
	const char *a[CV_ROUTE_MAX_ARGS] = { 0 };
	cv_pool_init(&pool, 0);
	assert_true(cv_route_match("/fhir/{type}/{id}/_history/{vid}", "/fhir/Patient/p1/_history/2", a, &pool));
	assert_string_equal(a[0], "Patient");
	assert_string_equal(a[1], "p1");
	assert_string_equal(a[2], "2");
	assert_true(cv_route_match("/fhir/metadata", "/fhir/metadata/", a, &pool));
	assert_false(cv_route_match("/fhir/{type}", "/fhir/", a, &pool));
	assert_false(cv_route_match("/fhir/{type}", "/fhir//", a, &pool));
	assert_false(cv_route_match("/fhir/{type}/{id}", "/fhir/Patient", a, &pool));
	assert_false(cv_route_match("/fhir/{type}", "/fhir/Patient/x", a, &pool));
	assert_false(cv_route_match("/healthz", "/healthzz", a, &pool));
	assert_false(cv_route_match("/healthz", "healthz", a, &pool));
	cv_pool_release(&pool);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(accept_header), cmocka_unit_test(format_param), cmocka_unit_test(content_type),
		cmocka_unit_test(etags_and_versions), cmocka_unit_test(routes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
