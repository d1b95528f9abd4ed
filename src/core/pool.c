/* pool.c - arena allocation for one request: bump allocation in blocks. */
#include "core/pool.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CV_POOL_BLOCK 8192u
#define CV_POOL_DEFAULT_CAP (64u * 1024u * 1024u)
#define CV_POOL_ALIGN 16u

struct cv_pool_block {
	cv_pool_block_t *next;
	size_t size;  /* usable bytes in data */
	size_t off;   /* first free byte */
	_Alignas(16) unsigned char data[];
};

struct cv_pool_cleanup {
	cv_pool_cleanup_t *next;
	void (*fn)(void *);
	void *arg;
};

void cv_pool_init(cv_pool_t *pool, size_t cap)
{
	pool->blocks = NULL;
	pool->cleanups = NULL;
	pool->used = 0;
	pool->cap = cap ? cap : CV_POOL_DEFAULT_CAP;
}

void cv_pool_release(cv_pool_t *pool)
{
	cv_pool_cleanup_t *c = pool->cleanups;
	while (c) {
		cv_pool_cleanup_t *next = c->next;
		c->fn(c->arg);
		c = next;
	}
	pool->cleanups = NULL;
	cv_pool_block_t *b = pool->blocks;
	while (b) {
		cv_pool_block_t *next = b->next;
		free(b);
		b = next;
	}
	pool->blocks = NULL;
	pool->used = 0;
}

static cv_pool_block_t *pool_grow(cv_pool_t *pool, size_t n)
{
	size_t size = n > CV_POOL_BLOCK ? n : CV_POOL_BLOCK;
	if (size > SIZE_MAX - sizeof(cv_pool_block_t))
		return NULL;
	size_t total = sizeof(cv_pool_block_t) + size;
	if (pool->used + total > pool->cap)
		return NULL;
	cv_pool_block_t *b = malloc(total);
	if (!b)
		return NULL;
	b->size = size;
	b->off = 0;
	b->next = pool->blocks;
	pool->blocks = b;
	pool->used += total;
	return b;
}

void *cv_pool_alloc(cv_pool_t *pool, size_t n)
{
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX - CV_POOL_ALIGN)
		return NULL;
	size_t need = (n + CV_POOL_ALIGN - 1) & ~(size_t)(CV_POOL_ALIGN - 1);
	cv_pool_block_t *b = pool->blocks;
	if (!b || b->size - b->off < need) {
		b = pool_grow(pool, need);
		if (!b)
			return NULL;
	}
	void *p = b->data + b->off;
	b->off += need;
	memset(p, 0, n);
	return p;
}

char *cv_pool_strndup(cv_pool_t *pool, const char *s, size_t n)
{
	if (n == SIZE_MAX)
		return NULL;
	char *d = cv_pool_alloc(pool, n + 1);
	if (!d)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *cv_pool_strdup(cv_pool_t *pool, const char *s)
{
	return cv_pool_strndup(pool, s, strlen(s));
}

char *cv_pool_printf(cv_pool_t *pool, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *d = cv_pool_alloc(pool, (size_t)n + 1);
	if (!d)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return d;
}

cv_rc cv_pool_defer(cv_pool_t *pool, void (*fn)(void *), void *arg)
{
	cv_pool_cleanup_t *c = cv_pool_alloc(pool, sizeof(*c));
	if (!c) {
		fn(arg);
		return CV_E_NOMEM;
	}
	c->fn = fn;
	c->arg = arg;
	c->next = pool->cleanups;
	pool->cleanups = c;
	return CV_OK;
}
