/*
 * buf.h - a growable byte buffer with a cap fixed at creation.
 *
 * Appending past the cap fails with CV_E_LIMIT and leaves the buffer as it was
 * (curl dynbuf's "toobig"). The contents are always NUL-terminated so text can be
 * read as a C string. The buffer owns its memory: cv_buf_release() frees it,
 * cv_buf_take() hands it to the caller (free() it).
 */
#ifndef CV_CORE_BUF_H
#define CV_CORE_BUF_H

#include <stddef.h>
#include "core/rc.h"

typedef struct cv_buf {
	char *data;   /* NUL-terminated contents, or NULL while empty */
	size_t len;   /* bytes held, without the terminator */
	size_t alloc; /* bytes allocated */
	size_t cap;   /* most bytes it may hold */
} cv_buf_t;

/* Prepares an empty buffer that may hold at most cap bytes. */
void cv_buf_init(cv_buf_t *b, size_t cap);

/* Frees the memory; the buffer is empty again (cap kept). */
void cv_buf_release(cv_buf_t *b);

/* Empties the buffer, keeping its memory. */
void cv_buf_reset(cv_buf_t *b);

/* Appends n bytes; CV_E_LIMIT over cap, CV_E_NOMEM if allocation fails. */
cv_rc cv_buf_append(cv_buf_t *b, const void *p, size_t n);

/* Extends the buffer by n uninitialised bytes and points *p at them (to be
 * written by the caller). CV_E_LIMIT over cap; the buffer is unchanged on failure. */
cv_rc cv_buf_extend(cv_buf_t *b, size_t n, void **p);

/* Cuts the buffer back to len bytes (len <= b->len). */
void cv_buf_truncate(cv_buf_t *b, size_t len);

/* Appends a NUL-terminated string. */
cv_rc cv_buf_puts(cv_buf_t *b, const char *s);

/* Appends formatted text. */
cv_rc cv_buf_printf(cv_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends s as the inside of a JSON string (quotes not included): escapes
 * quotes, backslashes and control characters. */
cv_rc cv_buf_json_escape(cv_buf_t *b, const char *s);

/* Appends s for HTML text or a quoted attribute value: & < > " ' escaped. */
cv_rc cv_buf_html_escape(cv_buf_t *b, const char *s);

/* Appends s percent-encoded for a URL query value: everything but the
 * RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~) becomes %XX. */
cv_rc cv_buf_url_encode(cv_buf_t *b, const char *s);

/* Returns the contents (caller frees) and leaves the buffer empty; *len gets
 * the length if len is not NULL. Returns NULL for an empty buffer. */
char *cv_buf_take(cv_buf_t *b, size_t *len);

#endif
