/*
 * router.h - matching request paths against route patterns.
 */
#ifndef CV_NET_ROUTER_H
#define CV_NET_ROUTER_H

#include "core/pool.h"

#define CV_ROUTE_MAX_ARGS 4

/* True if path matches pattern: literal segments must be equal, "{name}"
 * captures one non-empty segment into args (in order, copied into pool;
 * at most CV_ROUTE_MAX_ARGS). A single trailing slash on path is allowed. */
int cv_route_match(const char *pattern, const char *path, const char *args[CV_ROUTE_MAX_ARGS], cv_pool_t *pool);

#endif
