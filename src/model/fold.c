/*
 * fold.c - case and accent folding for string search (see fold.h), with
 * libunistring doing the Unicode work (decomposition, case folding, categories).
 */
#include "model/fold.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

/* Copies the folded code points of f (flen bytes) into out, dropping marks
 * and collapsing white space; returns the length written. */
static size_t strip(const uint8_t *f, size_t flen, char *out)
{
	size_t n = 0;
	int space = 1; /* at the start: drop leading space */
	for (size_t i = 0; i < flen;) {
		ucs4_t uc;
		int len = u8_mbtouc(&uc, f + i, flen - i);
		if (len <= 0)
			break;
		if (uc_is_general_category(uc, UC_CATEGORY_M)) {
			i += (size_t)len;
			continue;
		}
		if (uc_is_space(uc)) {
			if (!space)
				out[n++] = ' ';
			space = 1;
			i += (size_t)len;
			continue;
		}
		memcpy(out + n, f + i, (size_t)len);
		n += (size_t)len;
		space = 0;
		i += (size_t)len;
	}
	if (n && out[n - 1] == ' ')
		n--;
	out[n] = '\0';
	return n;
}

cv_rc cv_fold(const char *s, size_t len, cv_pool_t *pool, char **out, size_t *outlen)
{
	if (len > CV_FOLD_MAX_IN)
		return CV_E_LIMIT;
	if (u8_check((const uint8_t *)s, len))
		return CV_E_INVALID;
	size_t flen = 0;
	uint8_t *f = u8_casefold((const uint8_t *)s, len, NULL, UNINORM_NFKD, NULL, &flen);
	if (!f)
		return CV_E_NOMEM;
	char *buf = cv_pool_alloc(pool, flen + 1);
	if (!buf) {
		free(f);
		return CV_E_NOMEM;
	}
	size_t n = strip(f, flen, buf);
	free(f);
	*out = buf;
	if (outlen)
		*outlen = n;
	return CV_OK;
}

size_t cv_fold_prefix(const char *s, size_t len, size_t n)
{
	size_t i = 0;
	while (i < len && n > 0) {
		ucs4_t uc;
		int l = u8_mbtouc(&uc, (const uint8_t *)s + i, len - i);
		if (l <= 0)
			break;
		i += (size_t)l;
		n--;
	}
	return i;
}

size_t cv_fold_chars(const char *s, size_t len)
{
	return u8_mbsnlen((const uint8_t *)s, len);
}
