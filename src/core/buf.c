/* buf.c - bounded growable buffers. */
#include "core/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cv_buf_init(cv_buf_t *b, size_t cap)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->cap = cap;
}

void cv_buf_release(cv_buf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
}

void cv_buf_reset(cv_buf_t *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static cv_rc buf_reserve(cv_buf_t *b, size_t extra)
{
	if (extra > b->cap || b->len > b->cap - extra)
		return CV_E_LIMIT;
	size_t need = b->len + extra + 1;
	if (need <= b->alloc)
		return CV_OK;
	size_t n = b->alloc ? b->alloc : 256;
	while (n < need)
		n = n > SIZE_MAX / 2 ? need : n * 2;
	if (n > b->cap + 1)
		n = b->cap + 1;
	char *p = realloc(b->data, n);
	if (!p)
		return CV_E_NOMEM;
	b->data = p;
	b->alloc = n;
	return CV_OK;
}

cv_rc cv_buf_append(cv_buf_t *b, const void *p, size_t n)
{
	cv_rc rc = buf_reserve(b, n);
	if (rc)
		return rc;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return CV_OK;
}

cv_rc cv_buf_extend(cv_buf_t *b, size_t n, void **p)
{
	cv_rc rc = buf_reserve(b, n);
	if (rc)
		return rc;
	*p = b->data + b->len;
	b->len += n;
	b->data[b->len] = '\0';
	return CV_OK;
}

void cv_buf_truncate(cv_buf_t *b, size_t len)
{
	if (len < b->len) {
		b->len = len;
		b->data[len] = '\0';
	}
}

cv_rc cv_buf_puts(cv_buf_t *b, const char *s)
{
	return cv_buf_append(b, s, strlen(s));
}

cv_rc cv_buf_printf(cv_buf_t *b, const char *fmt, ...)
{
	va_list ap;
	size_t room = b->data && b->alloc > b->len ? b->alloc - b->len : 0;
	va_start(ap, fmt);
	int n = vsnprintf(room ? b->data + b->len : NULL, room, fmt, ap); /* one pass when it fits */
	va_end(ap);
	if (n >= 0 && (size_t)n < room && (size_t)n <= b->cap - b->len) {
		b->len += (size_t)n;
		return CV_OK;
	}
	if (room)
		b->data[b->len] = '\0'; /* what did not fit is not part of the buffer */
	if (n < 0)
		return CV_E_INVALID;
	cv_rc rc = buf_reserve(b, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return CV_OK;
}

cv_rc cv_buf_json_escape(cv_buf_t *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	cv_rc rc = CV_OK;
	for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++) {
		size_t run = 0; /* characters that need no escape go in one copy */
		while (p[run] >= 0x20 && p[run] != '"' && p[run] != '\\')
			run++;
		if (run) {
			rc = cv_buf_append(b, p, run);
			p += run - 1;
			continue;
		}
		if (*p == '"' || *p == '\\') {
			char e[2] = { '\\', (char)*p };
			rc = cv_buf_append(b, e, 2);
		} else if (*p < 0x20) {
			char e[6] = { '\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15] };
			rc = cv_buf_append(b, e, 6);
		} else {
			rc = cv_buf_append(b, p, 1);
		}
	}
	return rc;
}

cv_rc cv_buf_html_escape(cv_buf_t *b, const char *s)
{
	cv_rc rc = CV_OK;
	for (const char *p = s; *p && !rc; p++) {
		const char *e = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : *p == '"' ? "&quot;"
			      : *p == '\'' ? "&#39;" : NULL;
		rc = e ? cv_buf_puts(b, e) : cv_buf_append(b, p, 1);
	}
	return rc;
}

cv_rc cv_buf_url_encode(cv_buf_t *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	cv_rc rc = CV_OK;
	for (const unsigned char *p = (const unsigned char *)s; *p && !rc; p++) {
		int plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			    *p == '-' || *p == '.' || *p == '_' || *p == '~';
		char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
		rc = plain ? cv_buf_append(b, p, 1) : cv_buf_append(b, e, 3);
	}
	return rc;
}

char *cv_buf_take(cv_buf_t *b, size_t *len)
{
	char *p = b->data;
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	return p;
}
