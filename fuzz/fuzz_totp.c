/*
 * fuzz_totp.c - the parts of TOTP that read untrusted text: the base32
 * decoder never crashes and what it accepts encodes back to the same text
 * (padding aside); cv_totp_verify takes any string as a code, accepts only
 * 6 digits, and never reports a step outside the window.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth/totp.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t seed[] = "12345678901234567890";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	return sodium_init() < 0 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	cv_buf_t dec, enc;
	cv_buf_init(&dec, CV_TOTP_B32_MAX);
	cv_buf_init(&enc, 2 * CV_TOTP_B32_MAX);
	if (cv_totp_base32_decode((const char *)data, size, &dec) == CV_OK) {
		size_t unpadded = size;
		while (unpadded && data[unpadded - 1] == '=')
			unpadded--;
		assert(dec.len == unpadded * 5 / 8);
		if (dec.len) {
			assert(cv_totp_base32_encode((const uint8_t *)dec.data, dec.len, &enc) == CV_OK);
			assert(enc.len == unpadded && memcmp(enc.data, data, unpadded) == 0);
		}
	}
	cv_buf_release(&dec);
	cv_buf_release(&enc);

	char *code = malloc(size + 1);
	if (!code)
		return 0;
	memcpy(code, data, size);
	code[size] = '\0';
	int64_t now = 1111111111, step = cv_totp_step(now), matched = -1;
	if (cv_totp_verify(seed, sizeof seed - 1, code, now, -1, &matched) == CV_OK) {
		assert(strlen(code) == 6 && strspn(code, "0123456789") == 6);
		assert(matched >= step - 1 && matched <= step + 1);
		assert(cv_totp_verify(seed, sizeof seed - 1, code, now, matched, NULL) == CV_E_DENIED);
	}
	free(code);
	return 0;
}
