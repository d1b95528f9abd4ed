/*
 * router.c - segment-wise path matching with captures.
 */
#include "net/router.h"

#include <string.h>

int cv_route_match(const char *pattern, const char *path, const char *args[CV_ROUTE_MAX_ARGS], cv_pool_t *pool)
{
	size_t nargs = 0;
	while (*pattern && *path) {
		if (*pattern++ != '/' || *path++ != '/')
			return 0;
		size_t plen = strcspn(pattern, "/"), slen = strcspn(path, "/");
		if (pattern[0] == '{') {
			if (slen == 0 || nargs >= CV_ROUTE_MAX_ARGS || !(args[nargs++] = cv_pool_strndup(pool, path, slen)))
				return 0;
		} else if (plen != slen || strncmp(pattern, path, plen) != 0) {
			return 0;
		}
		pattern += plen;
		path += slen;
	}
	return !*pattern && (!*path || strcmp(path, "/") == 0);
}
