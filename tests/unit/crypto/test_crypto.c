/*
 * test_crypto.c - sealing (formats 1 and 2), tampering, key wrapping, master key file rules,
 * SHA-256 known answer, constant-time compare, tokens.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/crypto.h"

static int setup(void **state)
{
	char err[256];
	return cv_crypto_init(err, sizeof err) == CV_OK ? 0 : -1;
}

static cv_key_t *key(uint32_t id, uint8_t fill)
{
	uint8_t b[CV_KEY_BYTES];
	cv_key_t *k = NULL;
	memset(b, fill, sizeof b);
	assert_int_equal(cv_crypto_key_from_bytes(b, id, &k), CV_OK);
	return k;
}

static void seal_open_and_tamper(void **state)
{
	cv_key_t *k = key(7, 0x11), *other = key(7, 0x22);
	cv_buf_t blob, pt;
	cv_buf_init(&blob, 4096);
	cv_buf_init(&pt, 4096);
	assert_int_equal(cv_crypto_seal(k, "Patient|r1|1", 12, "secret", 6, &blob), CV_OK);
	assert_int_equal(blob.len, 6 + CV_SEAL_OVERHEAD);
	assert_null(memmem(blob.data, blob.len, "secret", 6));
	uint32_t id;
	assert_int_equal(cv_crypto_blob_key_id((uint8_t *)blob.data, blob.len, &id), CV_OK);
	assert_int_equal(id, 7);
	assert_int_equal(cv_crypto_open(k, "Patient|r1|1", 12, (uint8_t *)blob.data, blob.len, &pt), CV_OK);
	assert_memory_equal(pt.data, "secret", 6);
	cv_buf_reset(&pt);
	/* moved to another row or version */
	assert_int_equal(cv_crypto_open(k, "Patient|r2|1", 12, (uint8_t *)blob.data, blob.len, &pt), CV_E_CRYPTO);
	assert_int_equal(cv_crypto_open(k, "Patient|r1|2", 12, (uint8_t *)blob.data, blob.len, &pt), CV_E_CRYPTO);
	/* another key */
	assert_int_equal(cv_crypto_open(other, "Patient|r1|1", 12, (uint8_t *)blob.data, blob.len, &pt),
			 CV_E_CRYPTO);
	/* every flipped byte is caught */
	for (size_t i = 0; i < blob.len; i++) {
		blob.data[i] ^= 0x01;
		assert_int_not_equal(cv_crypto_open(k, "Patient|r1|1", 12, (uint8_t *)blob.data, blob.len, &pt), CV_OK);
		blob.data[i] ^= 0x01;
	}
	assert_int_not_equal(cv_crypto_open(k, "Patient|r1|1", 12, (uint8_t *)blob.data, blob.len - 1, &pt), CV_OK);
	assert_int_equal(pt.len, 0);
	cv_buf_release(&blob);
	cv_buf_release(&pt);
	cv_key_free(k);
	cv_key_free(other);
}

static void two_seals_differ(void **state)
{
	cv_key_t *k = key(1, 0x33);
	cv_buf_t a, b;
	cv_buf_init(&a, 256);
	cv_buf_init(&b, 256);
	assert_int_equal(cv_crypto_seal(k, "x", 1, "same", 4, &a), CV_OK);
	assert_int_equal(cv_crypto_seal(k, "x", 1, "same", 4, &b), CV_OK);
	assert_memory_not_equal(a.data, b.data, a.len); /* random nonces */
	cv_buf_release(&a);
	cv_buf_release(&b);
	cv_key_free(k);
}

static void wrapping(void **state)
{
	cv_key_t *master = key(0, 0x44), *wrong = key(0, 0x45), *dk = NULL;
	cv_buf_t w;
	cv_buf_init(&w, 256);
	assert_int_equal(cv_crypto_key_wrap_new(master, "key.data", 3, &w), CV_OK);
	assert_int_equal(cv_crypto_key_unwrap(master, "key.data", (uint8_t *)w.data, w.len, &dk), CV_OK);
	assert_int_equal(cv_key_id(dk), 3);
	cv_key_free(dk);
	dk = NULL;
	assert_int_equal(cv_crypto_key_unwrap(master, "key.index", (uint8_t *)w.data, w.len, &dk), CV_E_CRYPTO);
	assert_int_equal(cv_crypto_key_unwrap(wrong, "key.data", (uint8_t *)w.data, w.len, &dk), CV_E_CRYPTO);
	assert_null(dk);
	cv_buf_release(&w);
	cv_key_free(master);
	cv_key_free(wrong);
}

static void master_key_file_rules(void **state)
{
	char dir[] = "/tmp/cv-crypto-XXXXXX", path[64], err[256];
	cv_key_t *k = NULL;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/master.key", dir);
	assert_int_equal(cv_crypto_master_create(path, err, sizeof err), CV_OK);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 32);
	assert_int_not_equal(cv_crypto_master_create(path, err, sizeof err), CV_OK); /* never overwritten */
	assert_int_equal(cv_crypto_master_load(path, &k, err, sizeof err), CV_OK);
	cv_key_free(k);
	k = NULL;
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(cv_crypto_master_load(path, &k, err, sizeof err), CV_E_DENIED);
	assert_non_null(strstr(err, "chmod 600"));
	assert_null(k);
	unlink(path);
	rmdir(dir);
}

static void sha256_known_answer(void **state)
{
	uint8_t h[32];
	char hex[65];
	cv_crypto_sha256("abc", 3, h);
	cv_crypto_hex(h, 32, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void blind_index_is_keyed(void **state)
{
	cv_key_t *a = key(2, 0x55), *b = key(2, 0x56);
	uint8_t x[CV_BLIND_BYTES], y[CV_BLIND_BYTES], z[CV_BLIND_BYTES];
	cv_crypto_blind(a, "Patient/1", 9, x);
	cv_crypto_blind(a, "Patient/1", 9, y);
	cv_crypto_blind(b, "Patient/1", 9, z);
	assert_memory_equal(x, y, sizeof x);
	assert_memory_not_equal(x, z, sizeof x);
	assert_true(cv_crypto_equal(x, y, sizeof x));
	assert_false(cv_crypto_equal(x, z, sizeof x));
	cv_key_free(a);
	cv_key_free(b);
}

static void tokens_and_uuids(void **state)
{
	char t1[96], t2[96], u[37];
	cv_crypto_token("cvb_", t1, sizeof t1);
	cv_crypto_token("cvb_", t2, sizeof t2);
	assert_true(strncmp(t1, "cvb_", 4) == 0 && strlen(t1) >= 4 + 43);
	assert_string_not_equal(t1, t2);
	assert_int_equal(strspn(t1 + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
			 strlen(t1 + 4));
	cv_crypto_uuid(u);
	assert_int_equal(strlen(u), 36);
	assert_int_equal(u[14], '4');
}

/* ---- format 2: keys with 16-byte ids (per-patient data keys) ------------- */

static cv_key_t *kid_key(uint8_t kid[CV_KID_BYTES])
{
	cv_key_t *k = NULL;
	cv_crypto_kid_new(kid);
	assert_int_equal(cv_crypto_key_generate(kid, &k), CV_OK);
	return k;
}

static void format2_seal_open(void **state)
{
	uint8_t kid[CV_KID_BYTES], got[CV_KID_BYTES], kid2[CV_KID_BYTES];
	cv_key_t *k = kid_key(kid), *other = kid_key(kid2);
	cv_buf_t blob, pt;
	cv_buf_init(&blob, 4096);
	cv_buf_init(&pt, 4096);
	uint8_t kk[CV_KID_BYTES];
	cv_key_kid(k, kk);
	assert_memory_equal(kk, kid, CV_KID_BYTES);
	assert_int_equal(cv_crypto_seal(k, "Observation|r|1", 15, "format-two", 10, &blob), CV_OK);
	assert_int_equal(blob.len, 10 + CV_SEAL_OVERHEAD_MAX);
	assert_int_equal((uint8_t)blob.data[0], 'C');
	assert_int_equal((uint8_t)blob.data[1], 'V');
	assert_int_equal((uint8_t)blob.data[2], 2);
	assert_memory_equal(blob.data + 3, kid, CV_KID_BYTES);
	assert_null(memmem(blob.data, blob.len, "format-two", 10));
	assert_int_equal(cv_crypto_blob_kid((uint8_t *)blob.data, blob.len, got), CV_OK);
	assert_memory_equal(got, kid, CV_KID_BYTES);
	uint32_t id = 12345;
	assert_int_equal(cv_crypto_blob_key_id((uint8_t *)blob.data, blob.len, &id), CV_E_CRYPTO);
	assert_int_equal(id, 12345);
	assert_int_equal(cv_crypto_open(k, "Observation|r|1", 15, (uint8_t *)blob.data, blob.len, &pt), CV_OK);
	assert_int_equal(pt.len, 10);
	assert_memory_equal(pt.data, "format-two", 10);
	cv_buf_reset(&pt);
	/* other additional data, another format-2 key, a truncated blob */
	assert_int_equal(cv_crypto_open(k, "Observation|r|2", 15, (uint8_t *)blob.data, blob.len, &pt), CV_E_CRYPTO);
	assert_int_equal(cv_crypto_open(other, "Observation|r|1", 15, (uint8_t *)blob.data, blob.len, &pt),
			 CV_E_CRYPTO);
	assert_int_not_equal(cv_crypto_open(k, "Observation|r|1", 15, (uint8_t *)blob.data, CV_SEAL_OVERHEAD_MAX - 1,
					    &pt), CV_OK);
	/* another key given this key's id: the tag, not just the id check, refuses it */
	cv_buf_t forged;
	cv_buf_init(&forged, 4096);
	assert_int_equal(cv_buf_append(&forged, blob.data, blob.len), CV_OK);
	memcpy(forged.data + 3, kid2, CV_KID_BYTES);
	assert_int_equal(cv_crypto_open(other, "Observation|r|1", 15, (uint8_t *)forged.data, forged.len, &pt),
			 CV_E_CRYPTO);
	/* every flipped byte is caught */
	for (size_t i = 0; i < blob.len; i++) {
		blob.data[i] ^= 0x01;
		assert_int_not_equal(cv_crypto_open(k, "Observation|r|1", 15, (uint8_t *)blob.data, blob.len, &pt),
				     CV_OK);
		blob.data[i] ^= 0x01;
	}
	assert_int_equal(pt.len, 0);
	/* a copy of the key seals and opens the same */
	cv_key_t *dup = NULL;
	assert_int_equal(cv_crypto_key_dup(k, &dup), CV_OK);
	cv_key_kid(dup, got);
	assert_memory_equal(got, kid, CV_KID_BYTES);
	assert_int_equal(cv_crypto_open(dup, "Observation|r|1", 15, (uint8_t *)blob.data, blob.len, &pt), CV_OK);
	assert_memory_equal(pt.data, "format-two", 10);
	cv_key_free(dup);
	cv_buf_release(&forged);
	cv_buf_release(&blob);
	cv_buf_release(&pt);
	cv_key_free(k);
	cv_key_free(other);
}

static void format1_still_works(void **state)
{
	cv_key_t *k = key(0x01020304, 0x66);
	uint8_t kid[CV_KID_BYTES], want[CV_KID_BYTES] = { 0 };
	want[12] = 1, want[13] = 2, want[14] = 3, want[15] = 4;
	cv_key_kid(k, kid);
	assert_memory_equal(kid, want, CV_KID_BYTES);
	assert_int_equal(cv_key_id(k), 0x01020304);
	cv_buf_t blob, pt;
	cv_buf_init(&blob, 256);
	cv_buf_init(&pt, 256);
	assert_int_equal(cv_crypto_seal(k, "ad", 2, "one", 3, &blob), CV_OK);
	assert_int_equal(blob.len, 3 + CV_SEAL_OVERHEAD);
	assert_int_equal((uint8_t)blob.data[2], 1);
	uint32_t id = 0;
	assert_int_equal(cv_crypto_blob_key_id((uint8_t *)blob.data, blob.len, &id), CV_OK);
	assert_int_equal(id, 0x01020304);
	assert_int_equal(cv_crypto_blob_kid((uint8_t *)blob.data, blob.len, kid), CV_OK);
	assert_memory_equal(kid, want, CV_KID_BYTES);
	assert_int_equal(cv_crypto_open(k, "ad", 2, (uint8_t *)blob.data, blob.len, &pt), CV_OK);
	assert_int_equal(pt.len, 3);
	assert_memory_equal(pt.data, "one", 3);
	/* a format-2 key does not open a format-1 blob, nor the other way round */
	uint8_t k2id[CV_KID_BYTES];
	cv_key_t *k2 = kid_key(k2id);
	cv_buf_reset(&pt);
	assert_int_equal(cv_crypto_open(k2, "ad", 2, (uint8_t *)blob.data, blob.len, &pt), CV_E_CRYPTO);
	cv_buf_t b2;
	cv_buf_init(&b2, 256);
	assert_int_equal(cv_crypto_seal(k2, "ad", 2, "two", 3, &b2), CV_OK);
	assert_int_equal(cv_crypto_open(k, "ad", 2, (uint8_t *)b2.data, b2.len, &pt), CV_E_CRYPTO);
	/* a format-2 blob claiming a short id (12 zero bytes) is not a blob */
	memset(b2.data + 3, 0, 12);
	assert_int_equal(cv_crypto_blob_kid((uint8_t *)b2.data, b2.len, kid), CV_E_CRYPTO);
	/* nor is a blob of an unknown format */
	blob.data[2] = 3;
	assert_int_equal(cv_crypto_blob_kid((uint8_t *)blob.data, blob.len, kid), CV_E_CRYPTO);
	assert_int_equal(pt.len, 0);
	cv_buf_release(&b2);
	cv_buf_release(&blob);
	cv_buf_release(&pt);
	cv_key_free(k);
	cv_key_free(k2);
}

static void wrap_kid_key(void **state)
{
	cv_key_t *master = key(0, 0x77), *wrong = key(0, 0x78), *back = NULL;
	uint8_t kid[CV_KID_BYTES], got[CV_KID_BYTES];
	cv_key_t *dk = kid_key(kid);
	cv_buf_t w, blob, pt;
	cv_buf_init(&w, 256);
	cv_buf_init(&blob, 256);
	cv_buf_init(&pt, 256);
	assert_int_equal(cv_crypto_key_wrap(master, "key|a|b|1", dk, &w), CV_OK);
	assert_int_equal(w.len, CV_KEY_BYTES + CV_KID_BYTES + CV_SEAL_OVERHEAD); /* the master seals in format 1 */
	assert_int_equal(cv_crypto_key_unwrap(master, "key|a|b|1", (uint8_t *)w.data, w.len, &back), CV_OK);
	cv_key_kid(back, got);
	assert_memory_equal(got, kid, CV_KID_BYTES);
	/* the same key bytes: what one seals, the other opens */
	assert_int_equal(cv_crypto_seal(dk, "x", 1, "payload", 7, &blob), CV_OK);
	assert_int_equal(cv_crypto_open(back, "x", 1, (uint8_t *)blob.data, blob.len, &pt), CV_OK);
	assert_memory_equal(pt.data, "payload", 7);
	cv_key_free(back);
	back = NULL;
	/* another purpose (another row), another master */
	assert_int_equal(cv_crypto_key_unwrap(master, "key|a|b|2", (uint8_t *)w.data, w.len, &back), CV_E_CRYPTO);
	assert_int_equal(cv_crypto_key_unwrap(wrong, "key|a|b|1", (uint8_t *)w.data, w.len, &back), CV_E_CRYPTO);
	assert_null(back);
	cv_buf_release(&w);
	cv_buf_release(&blob);
	cv_buf_release(&pt);
	cv_key_free(dk);
	cv_key_free(master);
	cv_key_free(wrong);
}

static void kid_new_is_never_short(void **state)
{
	static const uint8_t zero[12];
	uint8_t prev[CV_KID_BYTES] = { 0 }, kid[CV_KID_BYTES];
	for (int i = 0; i < 1000; i++) {
		cv_crypto_kid_new(kid);
		assert_memory_not_equal(kid, zero, sizeof zero);
		assert_memory_not_equal(kid, prev, CV_KID_BYTES);
		memcpy(prev, kid, CV_KID_BYTES);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(seal_open_and_tamper), cmocka_unit_test(two_seals_differ), cmocka_unit_test(wrapping),
		cmocka_unit_test(master_key_file_rules), cmocka_unit_test(sha256_known_answer),
		cmocka_unit_test(blind_index_is_keyed), cmocka_unit_test(tokens_and_uuids),
		cmocka_unit_test(format2_seal_open), cmocka_unit_test(format1_still_works),
		cmocka_unit_test(wrap_kid_key), cmocka_unit_test(kid_new_is_never_short),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
