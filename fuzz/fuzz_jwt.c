/*
 * fuzz_jwt.c - private_key_jwt verification: the input is a token, a NUL,
 * then a JWKS. cv_jwt_verify and cv_jwt_jwks_check never crash, leak or read
 * out of bounds; a verify that fails hands back no claims and a terminated
 * reason, one that succeeds hands back an object.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t tlen = nul ? (size_t)(nul - data) : size;
	size_t jlen = nul ? size - tlen - 1 : 0;
	char *token = malloc(tlen + 1), *jwks = malloc(jlen + 1);
	json_object *claims = NULL;
	char why[64];

	if (!token || !jwks)
		goto out;
	memcpy(token, data, tlen);
	token[tlen] = '\0';
	/* the JWKS gets its exact length, in its own allocation, so ASan sees over-reads */
	if (jlen)
		memcpy(jwks, nul + 1, jlen);
	jwks[jlen] = '\0';

	cv_rc rc = cv_jwt_verify(token, jwks, jlen, &claims, why, sizeof why);
	assert(memchr(why, '\0', sizeof why));
	if (rc == CV_OK) {
		assert(claims && json_object_is_type(claims, json_type_object));
		json_object_put(claims);
	} else {
		assert(!claims);
	}
	rc = cv_jwt_jwks_check(jwks, jlen, why, sizeof why);
	assert(memchr(why, '\0', sizeof why));
	(void)rc;
out:
	free(token);
	free(jwks);
	return 0;
}
