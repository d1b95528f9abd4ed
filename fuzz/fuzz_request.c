/*
 * fuzz_request.c - the request values carevault parses itself (libmicrohttpd
 * parses HTTP): route paths against every route pattern, Accept, _format,
 * Content-Type, If-Match ETags and version ids. The input is split at '\n'
 * into the values; invariants are checked on what is accepted.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/negotiate.h"
#include "net/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const patterns[] = {
	"/healthz", "/fhir/metadata", "/fhir/_history", "/fhir/{type}/_history", "/fhir/{type}",
	"/fhir/{type}/{id}/_history", "/fhir/{type}/{id}/_history/{vid}", "/fhir/{type}/{id}",
};

static void check_route(const char *path)
{
	for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
		cv_pool_t pool;
		const char *args[CV_ROUTE_MAX_ARGS] = { 0 };
		cv_pool_init(&pool, 1u << 20);
		if (cv_route_match(patterns[i], path, args, &pool)) {
			for (size_t k = 0; k < CV_ROUTE_MAX_ARGS && args[k]; k++)
				assert(args[k][0] && !strchr(args[k], '/'));
		}
		cv_pool_release(&pool);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	const char *v[6] = { "", "", "", "", "", "" };
	char *p = s;
	for (size_t i = 0; i < 6 && p; i++) {
		v[i] = p;
		p = strchr(p, '\n');
		if (p)
			*p++ = '\0';
	}
	check_route(v[0]);
	(void)cv_http_accepts_json(v[1]);
	(void)cv_http_format_json(v[2]);
	(void)cv_http_content_type_json(v[3]);
	int64_t e = cv_http_parse_etag(v[4]);
	assert(e >= -1);
	int64_t ver = 0;
	if (cv_http_parse_version(v[5], &ver))
		assert(ver >= 1);
	free(s);
	return 0;
}
