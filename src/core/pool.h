/*
 * pool.h - a per-request memory pool (arena).
 *
 * Everything a request allocates (parsed JSON, strings, outcome issues) comes
 * from its pool and goes in one cv_pool_release() at the end. A pool has a cap
 * fixed at init: an allocation past it fails like an out-of-memory, so a
 * hostile request cannot grow one without bound. Objects owned by other
 * allocators (json-c trees) are tied to the pool with cv_pool_defer().
 * A pool is used by one thread at a time.
 */
#ifndef CV_CORE_POOL_H
#define CV_CORE_POOL_H

#include <stddef.h>
#include "core/rc.h"

typedef struct cv_pool_block cv_pool_block_t;
typedef struct cv_pool_cleanup cv_pool_cleanup_t;

typedef struct cv_pool {
	cv_pool_block_t *blocks;      /* newest first */
	cv_pool_cleanup_t *cleanups;  /* run in reverse order of registration */
	size_t used;                  /* bytes taken from the system */
	size_t cap;                   /* most bytes the pool may take */
} cv_pool_t;

/* Prepares an empty pool that may hold at most cap bytes (0: 64 MiB). */
void cv_pool_init(cv_pool_t *pool, size_t cap);

/* Runs the deferred cleanups, frees every block; the pool is empty again. */
void cv_pool_release(cv_pool_t *pool);

/* Returns n zeroed bytes aligned for any type, or NULL (out of memory or over cap). */
void *cv_pool_alloc(cv_pool_t *pool, size_t n);

/* Copies s (NUL-terminated, or the first n bytes) into the pool; NULL on failure. */
char *cv_pool_strdup(cv_pool_t *pool, const char *s);
char *cv_pool_strndup(cv_pool_t *pool, const char *s, size_t n);

/* printf into the pool; NULL on failure. */
char *cv_pool_printf(cv_pool_t *pool, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Calls fn(arg) at release time. Returns CV_E_NOMEM if it cannot record it
 * (then fn is called at once, so the object is never leaked). */
cv_rc cv_pool_defer(cv_pool_t *pool, void (*fn)(void *), void *arg);

#endif
