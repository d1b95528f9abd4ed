/*
 * fuzz_cookie.c - the Cookie header parser that finds the session cookie:
 * never crashes or reads past the header, and what it returns is a
 * terminated substring of the header that fits the buffer.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	char out[64];
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	const char *v = cv_auth_cookie_token(s, out, sizeof out);
	if (v) {
		assert(v == out);
		assert(strlen(out) < sizeof out);
		assert(strstr(s, out) != NULL);
		assert(strstr(s, CV_SESSION_COOKIE "=") != NULL);
	}
	free(s);
	return 0;
}
