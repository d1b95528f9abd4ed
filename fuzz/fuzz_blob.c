/*
 * fuzz_blob.c - sealed blobs and wrapped keys read from the store (which an
 * intruder who can write the database controls): cv_crypto_blob_kid accepts
 * only the two formats and a key id of the right form; opening any input
 * under a fixed key never crashes and succeeds only for what that key
 * sealed (a forged tag never opens); unwrapping any input never crashes.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cv_key_t *key;    /* a format-2 key */
static cv_key_t *master; /* a format-1 key (the master key's form) */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	uint8_t raw[CV_KEY_BYTES], kid[CV_KID_BYTES];
	if (sodium_init() < 0)
		return -1;
	memset(raw, 7, sizeof raw);
	memset(kid, 9, sizeof kid);
	if (cv_crypto_key_from_bytes_kid(raw, kid, &key) || cv_crypto_key_from_bytes(raw, 0, &master))
		return -1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t kid[CV_KID_BYTES];
	uint32_t id;
	cv_buf_t out;
	cv_key_t *k = NULL;
	cv_buf_init(&out, 1u << 20);
	if (cv_crypto_blob_kid(data, size, kid) == CV_OK) {
		assert(size >= CV_SEAL_OVERHEAD && data[0] == 'C' && data[1] == 'V' && (data[2] == 1 || data[2] == 2));
		assert(data[2] == 1 ? cv_crypto_blob_key_id(data, size, &id) == CV_OK
				    : cv_crypto_blob_key_id(data, size, &id) == CV_E_CRYPTO);
	}
	/* random input never opens: only a sealed blob's tag verifies */
	assert(cv_crypto_open(key, "ad", 2, data, size, &out) != CV_OK);
	assert(out.len == 0);
	assert(cv_crypto_key_unwrap(master, "key", data, size, &k) != CV_OK && !k);
	/* and what the key seals opens back to the input */
	cv_buf_t blob;
	cv_buf_init(&blob, (1u << 20) + CV_SEAL_OVERHEAD_MAX);
	if (size <= (1u << 16) && cv_crypto_seal(key, "ad", 2, data, size, &blob) == CV_OK) {
		assert(blob.len == size + CV_SEAL_OVERHEAD_MAX);
		assert(cv_crypto_open(key, "ad", 2, (const uint8_t *)blob.data, blob.len, &out) == CV_OK);
		assert(out.len == size && (size == 0 || memcmp(out.data, data, size) == 0));
		assert(cv_crypto_open(key, "ax", 2, (const uint8_t *)blob.data, blob.len, &out) == CV_E_CRYPTO);
	}
	cv_buf_release(&blob);
	cv_buf_release(&out);
	return 0;
}
