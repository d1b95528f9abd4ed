/*
 * test_totp.c - HOTP/TOTP known answers (RFC 4226 Appendix D, RFC 6238
 * Appendix B), the verification window, replay refusal, malformed codes,
 * base32 (RFC 4648 section 10 vectors, strictness), otpauth:// URIs, the QR
 * code SVG and recovery codes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth/totp.h"

static const uint8_t rfc_seed[] = "12345678901234567890";
#define RFC_SEED_LEN 20

static int group_setup(void **state)
{
	return sodium_init() < 0 ? -1 : 0;
}

static void hotp_rfc4226(void **state)
{
	static const uint32_t want[10] = { 755224, 287082, 359152, 969429, 338314,
					   254676, 287922, 162583, 399871, 520489 };
	for (uint64_t c = 0; c < 10; c++) {
		uint32_t code = 0;
		assert_int_equal(cv_totp_hotp(CV_TOTP_SHA1, rfc_seed, RFC_SEED_LEN, c, 6, &code), CV_OK);
		assert_int_equal(code, want[c]);
	}
}

static void totp_rfc6238(void **state)
{
	static const uint8_t seed256[] = "12345678901234567890123456789012";
	static const uint8_t seed512[] = "1234567890123456789012345678901234567890"
					 "123456789012345678901234";
	static const struct {
		int64_t t;
		const char *sha1, *sha256, *sha512;
	} v[] = {
		{ 59, "94287082", "46119246", "90693936" },
		{ 1111111109, "07081804", "68084774", "25091201" },
		{ 1111111111, "14050471", "67062674", "99943326" },
		{ 1234567890, "89005924", "91819424", "93441116" },
		{ 2000000000, "69279037", "90698825", "38618901" },
		{ 20000000000LL, "65353130", "77737706", "47863826" },
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		uint32_t code = 0;
		char got[16];
		assert_int_equal(cv_totp_code(CV_TOTP_SHA1, rfc_seed, RFC_SEED_LEN, v[i].t, 8, &code), CV_OK);
		snprintf(got, sizeof got, "%08u", code);
		assert_string_equal(got, v[i].sha1);
		assert_int_equal(cv_totp_code(CV_TOTP_SHA256, seed256, 32, v[i].t, 8, &code), CV_OK);
		snprintf(got, sizeof got, "%08u", code);
		assert_string_equal(got, v[i].sha256);
		assert_int_equal(cv_totp_code(CV_TOTP_SHA512, seed512, 64, v[i].t, 8, &code), CV_OK);
		snprintf(got, sizeof got, "%08u", code);
		assert_string_equal(got, v[i].sha512);
	}
	/* The 6-digit code is the 8-digit one's last six digits. */
	uint32_t six = 0;
	assert_int_equal(cv_totp_code(CV_TOTP_SHA1, rfc_seed, RFC_SEED_LEN, 59, 6, &six), CV_OK);
	assert_int_equal(six, 287082);
}

static void hotp_bad_arguments(void **state)
{
	uint32_t code = 0;
	assert_int_equal(cv_totp_hotp(CV_TOTP_SHA1, rfc_seed, 0, 0, 6, &code), CV_E_INVALID);
	assert_int_equal(cv_totp_hotp(CV_TOTP_SHA1, NULL, 20, 0, 6, &code), CV_E_INVALID);
	assert_int_equal(cv_totp_hotp(CV_TOTP_SHA1, rfc_seed, CV_TOTP_SEED_MAX + 1, 0, 6, &code),
			 CV_E_INVALID);
	assert_int_equal(cv_totp_hotp(CV_TOTP_SHA1, rfc_seed, RFC_SEED_LEN, 0, 5, &code), CV_E_INVALID);
	assert_int_equal(cv_totp_hotp(CV_TOTP_SHA1, rfc_seed, RFC_SEED_LEN, 0, 9, &code), CV_E_INVALID);
	assert_int_equal(cv_totp_hotp((cv_totp_alg)42, rfc_seed, RFC_SEED_LEN, 0, 6, &code), CV_E_INVALID);
	assert_int_equal(cv_totp_code(CV_TOTP_SHA1, rfc_seed, RFC_SEED_LEN, -1, 6, &code), CV_E_INVALID);
	assert_int_equal(cv_totp_step(59), 1);
	assert_int_equal(cv_totp_step(60), 2);
	assert_int_equal(cv_totp_step(-1), -1);
}

/* The 6-digit code of a step, as an authenticator app shows it. */
static void code_at(int64_t step, char out[8])
{
	uint32_t code = 0;
	assert_int_equal(cv_totp_hotp(CV_TOTP_SHA1, rfc_seed, RFC_SEED_LEN, (uint64_t)step, 6, &code), CV_OK);
	snprintf(out, 8, "%06u", code);
}

static void verify_window(void **state)
{
	const int64_t now = 1111111111;
	const int64_t step = cv_totp_step(now);
	char code[8];
	for (int d = -2; d <= 2; d++) {
		int64_t matched = -42;
		code_at(step + d, code);
		cv_rc rc = cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, now, -1, &matched);
		if (d >= -1 && d <= 1) {
			assert_int_equal(rc, CV_OK);
			assert_int_equal(matched, step + d);
		} else {
			assert_int_equal(rc, CV_E_DENIED);
			assert_int_equal(matched, -42);
		}
	}
	/* The window moves with the clock: the last second of a step and the first of the next. */
	code_at(step + 2, code);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, (step + 1) * 30 - 1, -1, NULL),
			 CV_E_DENIED);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, (step + 1) * 30, -1, NULL), CV_OK);
	/* Near the epoch the window has no step -1. */
	code_at(0, code);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, 5, -1, NULL), CV_OK);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, -5, -1, NULL), CV_E_DENIED);
}

static void verify_replay(void **state)
{
	const int64_t now = 1234567890;
	const int64_t step = cv_totp_step(now);
	int64_t matched = -1, again = -7;
	char code[8];

	code_at(step, code);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, now, -1, &matched), CV_OK);
	assert_int_equal(matched, step);
	/* The same code again, its step now stored: refused, even later in the window. */
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, now, matched, &again), CV_E_DENIED);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, now + 30, matched, &again), CV_E_DENIED);
	assert_int_equal(again, -7);
	/* An older code after a newer one was used: refused. */
	code_at(step - 1, code);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, now, matched, &again), CV_E_DENIED);
	/* The next step's code is still good. */
	code_at(step + 1, code);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, now, matched, &again), CV_OK);
	assert_int_equal(again, step + 1);
}

static void verify_malformed(void **state)
{
	const int64_t now = 2000000000;
	char code[8], longer[16];
	code_at(cv_totp_step(now), code);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, code, now, -1, NULL), CV_OK);

	static const char *const bad[] = { "12345", "1234567", "12a456", "", " 12345", "+12345",
					   "-12345", "12345\n", "１２３４５６" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, bad[i], now, -1, NULL), CV_E_DENIED);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, NULL, now, -1, NULL), CV_E_DENIED);
	/* The right code with anything around it is not the right code. */
	snprintf(longer, sizeof longer, "%s0", code);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, longer, now, -1, NULL), CV_E_DENIED);
	snprintf(longer, sizeof longer, " %s", code);
	assert_int_equal(cv_totp_verify(rfc_seed, RFC_SEED_LEN, longer, now, -1, NULL), CV_E_DENIED);
	/* No seed, no pass. */
	assert_int_equal(cv_totp_verify(rfc_seed, 0, code, now, -1, NULL), CV_E_DENIED);
	assert_int_equal(cv_totp_verify(NULL, RFC_SEED_LEN, code, now, -1, NULL), CV_E_DENIED);
	/* Another seed gives other codes (this one's window has no 6-digit collision). */
	static const uint8_t other[] = "abcdefghijabcdefghij";
	assert_int_equal(cv_totp_verify(other, 20, code, now, -1, NULL), CV_E_DENIED);
}

static void seeds_are_random(void **state)
{
	uint8_t a[CV_TOTP_SEED_BYTES], b[CV_TOTP_SEED_BYTES], zero[CV_TOTP_SEED_BYTES] = { 0 };
	cv_totp_seed_new(a);
	cv_totp_seed_new(b);
	assert_memory_not_equal(a, b, sizeof a);
	assert_memory_not_equal(a, zero, sizeof a);
}

static void base32_vectors(void **state)
{
	static const struct {
		const char *raw, *b32, *padded;
	} v[] = {
		{ "", "", "" },
		{ "f", "MY", "MY======" },
		{ "fo", "MZXQ", "MZXQ====" },
		{ "foo", "MZXW6", "MZXW6===" },
		{ "foob", "MZXW6YQ", "MZXW6YQ=" },
		{ "fooba", "MZXW6YTB", "MZXW6YTB" },
		{ "foobar", "MZXW6YTBOI", "MZXW6YTBOI======" },
	};
	cv_buf_t b;
	cv_buf_init(&b, 256);
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		cv_buf_reset(&b);
		assert_int_equal(cv_totp_base32_encode((const uint8_t *)v[i].raw, strlen(v[i].raw), &b), CV_OK);
		assert_int_equal(b.len, strlen(v[i].b32));
		if (b.len)
			assert_string_equal(b.data, v[i].b32);
		cv_buf_reset(&b);
		assert_int_equal(cv_totp_base32_decode(v[i].b32, strlen(v[i].b32), &b), CV_OK);
		assert_int_equal(b.len, strlen(v[i].raw));
		if (b.len)
			assert_memory_equal(b.data, v[i].raw, b.len);
		cv_buf_reset(&b);
		assert_int_equal(cv_totp_base32_decode(v[i].padded, strlen(v[i].padded), &b), CV_OK);
		assert_int_equal(b.len, strlen(v[i].raw));
		if (b.len)
			assert_memory_equal(b.data, v[i].raw, b.len);
	}
	cv_buf_reset(&b);
	assert_int_equal(cv_totp_base32_encode(rfc_seed, RFC_SEED_LEN, &b), CV_OK);
	assert_string_equal(b.data, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
	cv_buf_release(&b);
}

static void base32_round_trip(void **state)
{
	uint8_t raw[64];
	cv_buf_t enc, dec;
	cv_buf_init(&enc, 256);
	cv_buf_init(&dec, 256);
	for (size_t n = 0; n <= sizeof raw; n++) {
		randombytes_buf(raw, n);
		cv_buf_reset(&enc);
		cv_buf_reset(&dec);
		assert_int_equal(cv_totp_base32_encode(raw, n, &enc), CV_OK);
		assert_int_equal(enc.len, (n * 8 + 4) / 5);
		assert_int_equal(cv_totp_base32_decode(enc.data, enc.len, &dec), CV_OK);
		assert_int_equal(dec.len, n);
		if (n)
			assert_memory_equal(dec.data, raw, n);
	}
	cv_buf_release(&enc);
	cv_buf_release(&dec);
}

static void base32_strict(void **state)
{
	static const char *const bad[] = {
		"my",        /* lowercase */
		"M1",        /* not in the alphabet */
		"MY ",       /* whitespace */
		"M",         /* 1 character in the last group */
		"MZX",       /* 3 */
		"MZXW6Y",    /* 6 */
		"MZ",        /* unused bits set */
		"MZXR",      /* unused bits set */
		"MY=",       /* short padding */
		"MY=====",   /* short padding */
		"MY=======", /* too much */
		"M=Y=====",  /* padding inside */
		"========",  /* nothing but padding */
		"MZXW6YTB========",
	};
	cv_buf_t b;
	cv_buf_init(&b, 256);
	assert_int_equal(cv_buf_puts(&b, "keep"), CV_OK);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(cv_totp_base32_decode(bad[i], strlen(bad[i]), &b), CV_E_INVALID);
		assert_string_equal(b.data, "keep");
	}
	/* An embedded NUL is not base32 either. */
	assert_int_equal(cv_totp_base32_decode("MZ\0Q", 4, &b), CV_E_INVALID);
	/* Bounded: longer text is refused before it is read. */
	char *big = malloc(CV_TOTP_B32_MAX + 8);
	assert_non_null(big);
	memset(big, 'A', CV_TOTP_B32_MAX + 8);
	assert_int_equal(cv_totp_base32_decode(big, CV_TOTP_B32_MAX + 8, &b), CV_E_LIMIT);
	/* A full buffer: refused, left as it was. */
	cv_buf_t small;
	cv_buf_init(&small, 3);
	assert_int_equal(cv_totp_base32_decode(big, 16, &small), CV_E_LIMIT);
	assert_int_equal(small.len, 0);
	assert_int_equal(cv_totp_base32_encode(rfc_seed, RFC_SEED_LEN, &small), CV_E_LIMIT);
	assert_int_equal(small.len, 0);
	free(big);
	cv_buf_release(&small);
	cv_buf_release(&b);
}

static void uri_shape(void **state)
{
	cv_buf_t b;
	cv_buf_init(&b, 1024);
	assert_int_equal(cv_totp_uri("ACME Health: Dev", "alice@example.org", rfc_seed, RFC_SEED_LEN, &b),
			 CV_OK);
	assert_string_equal(b.data, "otpauth://totp/ACME%20Health%3A%20Dev:alice%40example.org"
				    "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
				    "&issuer=ACME%20Health%3A%20Dev&algorithm=SHA1&digits=6&period=30");
	/* Unreserved characters stay; UTF-8 and reserved ones are escaped. */
	cv_buf_reset(&b);
	assert_int_equal(cv_totp_uri("a-b.c_d~e", "J\xc3\xbcrgen/&?#=+", rfc_seed, 5, &b), CV_OK);
	assert_string_equal(b.data, "otpauth://totp/a-b.c_d~e:J%C3%BCrgen%2F%26%3F%23%3D%2B"
				    "?secret=GEZDGNBV&issuer=a-b.c_d~e&algorithm=SHA1&digits=6&period=30");
	/* Refusals leave the buffer as it was. */
	cv_buf_reset(&b);
	assert_int_equal(cv_buf_puts(&b, "x"), CV_OK);
	assert_int_equal(cv_totp_uri("", "a", rfc_seed, RFC_SEED_LEN, &b), CV_E_INVALID);
	assert_int_equal(cv_totp_uri("i", "", rfc_seed, RFC_SEED_LEN, &b), CV_E_INVALID);
	assert_int_equal(cv_totp_uri(NULL, "a", rfc_seed, RFC_SEED_LEN, &b), CV_E_INVALID);
	assert_int_equal(cv_totp_uri("i", NULL, rfc_seed, RFC_SEED_LEN, &b), CV_E_INVALID);
	assert_int_equal(cv_totp_uri("i", "a", NULL, RFC_SEED_LEN, &b), CV_E_INVALID);
	assert_int_equal(cv_totp_uri("i", "a", rfc_seed, 0, &b), CV_E_INVALID);
	assert_int_equal(cv_totp_uri("i", "a", rfc_seed, CV_TOTP_SEED_MAX + 1, &b), CV_E_LIMIT);
	char name[CV_TOTP_LABEL_MAX + 2];
	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	assert_int_equal(cv_totp_uri(name, "a", rfc_seed, RFC_SEED_LEN, &b), CV_E_LIMIT);
	assert_int_equal(cv_totp_uri("i", name, rfc_seed, RFC_SEED_LEN, &b), CV_E_LIMIT);
	assert_string_equal(b.data, "x");
	cv_buf_t small;
	cv_buf_init(&small, 40);
	assert_int_equal(cv_totp_uri("i", "a", rfc_seed, RFC_SEED_LEN, &small), CV_E_LIMIT);
	assert_int_equal(small.len, 0);
	cv_buf_release(&small);
	cv_buf_release(&b);
}

/* Reads "M<x> <y>h1v1h-1z" squares from the path data; returns how many, or -1. */
static long squares(const char *d, unsigned lo, unsigned hi, int *has_corner)
{
	long n = 0;
	*has_corner = 0;
	while (*d == 'M') {
		char *end = NULL;
		unsigned long x = strtoul(d + 1, &end, 10);
		if (*end != ' ')
			return -1;
		unsigned long y = strtoul(end + 1, &end, 10);
		if (strncmp(end, "h1v1h-1z", 8))
			return -1;
		if (x < lo || y < lo || x >= hi || y >= hi)
			return -1;
		if (x == lo && y == lo)
			*has_corner = 1;
		d = end + 8;
		n++;
	}
	return *d == '"' ? n : -1;
}

static void qr_svg(void **state)
{
	const char *uri = "otpauth://totp/ACME:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
			  "&issuer=ACME&algorithm=SHA1&digits=6&period=30";
	cv_buf_t b;
	cv_buf_init(&b, 1 << 20);
	assert_int_equal(cv_totp_qr_svg(uri, &b), CV_OK);
	assert_int_equal(strncmp(b.data, "<svg", 4), 0);
	assert_non_null(strstr(b.data, "xmlns=\"http://www.w3.org/2000/svg\""));
	assert_non_null(strstr(b.data, "shape-rendering=\"crispEdges\""));
	assert_int_equal(strcmp(b.data + b.len - 7, "</svg>\n"), 0);
	const char *path = strstr(b.data, "<path");
	assert_non_null(path);
	assert_null(strstr(path + 1, "<path"));
	/* viewBox "0 0 N N": N is the symbol's width plus a 4-module quiet zone each side. */
	const char *vb = strstr(b.data, "viewBox=\"0 0 ");
	assert_non_null(vb);
	unsigned long size = strtoul(vb + 13, NULL, 10);
	assert_true(size >= 21 + 8 && (size - 8 - 21) % 4 == 0);
	const char *d = strstr(path, " d=\"");
	assert_non_null(d);
	int corner = 0;
	long n = squares(d + 4, 4, (unsigned)size - 4, &corner);
	assert_true(n > 100);
	assert_true(corner); /* the top-left finder pattern starts right inside the quiet zone */
	cv_buf_release(&b);

	/* Refusals leave the buffer as it was. */
	cv_buf_init(&b, 64);
	assert_int_equal(cv_totp_qr_svg(uri, &b), CV_E_LIMIT);
	assert_int_equal(b.len, 0);
	assert_int_equal(cv_totp_qr_svg("", &b), CV_E_INVALID);
	assert_int_equal(cv_totp_qr_svg(NULL, &b), CV_E_INVALID);
	cv_buf_release(&b);
	char *big = malloc(CV_TOTP_QR_TEXT_MAX + 2);
	assert_non_null(big);
	memset(big, 'x', CV_TOTP_QR_TEXT_MAX + 1);
	big[CV_TOTP_QR_TEXT_MAX + 1] = '\0';
	cv_buf_init(&b, 1 << 20);
	assert_int_equal(cv_totp_qr_svg(big, &b), CV_E_LIMIT);
	assert_int_equal(b.len, 0);
	free(big);
	cv_buf_release(&b);
}

static int in_alphabet(char c)
{
	return c && strchr("23456789ABCDEFGHJKLMNPQRSTUVWXYZ", c) != NULL;
}

static void recovery_codes(void **state)
{
	char codes[CV_TOTP_RECOVERY_COUNT][CV_TOTP_RECOVERY_LEN];
	uint8_t hashes[CV_TOTP_RECOVERY_COUNT][CV_TOTP_RECOVERY_HASH];
	memset(codes, 0x55, sizeof codes);
	cv_totp_recovery_new(codes);
	for (int i = 0; i < CV_TOTP_RECOVERY_COUNT; i++) {
		assert_int_equal(strlen(codes[i]), CV_TOTP_RECOVERY_LEN - 1);
		for (int j = 0; j < CV_TOTP_RECOVERY_LEN - 1; j++) {
			if (j % 5 == 4)
				assert_int_equal(codes[i][j], '-');
			else
				assert_true(in_alphabet(codes[i][j]));
		}
		for (int k = 0; k < i; k++)
			assert_string_not_equal(codes[i], codes[k]);
		assert_int_equal(cv_totp_recovery_hash(codes[i], hashes[i]), CV_OK);
		for (int k = 0; k < i; k++)
			assert_false(cv_totp_recovery_equal(hashes[i], hashes[k]));
	}

	/* However it is typed: lowercase, without dashes, with spaces. */
	char typed[64];
	uint8_t h[CV_TOTP_RECOVERY_HASH];
	size_t n = 0;
	for (const char *p = codes[3]; *p; p++)
		if (*p != '-')
			typed[n++] = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
	typed[n] = '\0';
	assert_int_equal(cv_totp_recovery_hash(typed, h), CV_OK);
	assert_true(cv_totp_recovery_equal(h, hashes[3]));
	snprintf(typed, sizeof typed, " %.4s %.4s-%.4s  %.4s ", codes[3], codes[3] + 5, codes[3] + 10,
		 codes[3] + 15);
	assert_int_equal(cv_totp_recovery_hash(typed, h), CV_OK);
	assert_true(cv_totp_recovery_equal(h, hashes[3]));

	size_t idx = 99;
	assert_int_equal(cv_totp_recovery_find(typed, (const uint8_t(*)[CV_TOTP_RECOVERY_HASH])hashes,
					       CV_TOTP_RECOVERY_COUNT, &idx), CV_OK);
	assert_int_equal(idx, 3);
	assert_int_equal(cv_totp_recovery_find(codes[9], (const uint8_t(*)[CV_TOTP_RECOVERY_HASH])hashes,
					       CV_TOTP_RECOVERY_COUNT, &idx), CV_OK);
	assert_int_equal(idx, 9);
	/* Used codes are removed by the caller: not among the first three any more. */
	assert_int_equal(cv_totp_recovery_find(codes[3], (const uint8_t(*)[CV_TOTP_RECOVERY_HASH])hashes, 3,
					       &idx), CV_E_DENIED);

	/* One character changed: another code, not found. */
	char changed[CV_TOTP_RECOVERY_LEN];
	memcpy(changed, codes[0], sizeof changed);
	changed[0] = changed[0] == '2' ? '3' : '2';
	idx = 77;
	assert_int_equal(cv_totp_recovery_find(changed, (const uint8_t(*)[CV_TOTP_RECOVERY_HASH])hashes,
					       CV_TOTP_RECOVERY_COUNT, &idx), CV_E_DENIED);
	assert_int_equal(idx, 77);

	/* Malformed: wrong length, letters outside the alphabet, too long to be typed. */
	static const char *const bad[] = { "", "ABCD-EFGH-JKLM", "ABCD-EFGH-JKLM-NPQRS", "ABCD-EFGH-JKLM-NPQ0",
					   "ABCD-EFGH-JKLM-NPQI", "ABCD_EFGH_JKLM_NPQR" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(cv_totp_recovery_hash(bad[i], h), CV_E_INVALID);
	char padded[80];
	memset(padded, ' ', sizeof padded);
	memcpy(padded + sizeof padded - 20, codes[0], 19);
	padded[sizeof padded - 1] = '\0';
	assert_int_equal(cv_totp_recovery_hash(padded, h), CV_E_INVALID);
	assert_int_equal(cv_totp_recovery_hash(padded + sizeof padded - 64, h), CV_OK);
	assert_int_equal(cv_totp_recovery_hash(NULL, h), CV_E_INVALID);
	assert_int_equal(cv_totp_recovery_find(NULL, (const uint8_t(*)[CV_TOTP_RECOVERY_HASH])hashes,
					       CV_TOTP_RECOVERY_COUNT, &idx), CV_E_DENIED);
	assert_int_equal(cv_totp_recovery_find(codes[0], NULL, 0, &idx), CV_E_DENIED);
}

/* A fixed code hashes to a fixed value: stored hashes stay valid across versions. */
static void recovery_hash_known(void **state)
{
	uint8_t h[CV_TOTP_RECOVERY_HASH], want[CV_TOTP_RECOVERY_HASH];
	assert_int_equal(cv_totp_recovery_hash("abcd-efgh-jkmn-pqrs", h), CV_OK);
	crypto_generichash(want, sizeof want, (const unsigned char *)"ABCDEFGHJKMNPQRS", 16, NULL, 0);
	assert_memory_equal(h, want, sizeof h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hotp_rfc4226),
		cmocka_unit_test(totp_rfc6238),
		cmocka_unit_test(hotp_bad_arguments),
		cmocka_unit_test(verify_window),
		cmocka_unit_test(verify_replay),
		cmocka_unit_test(verify_malformed),
		cmocka_unit_test(seeds_are_random),
		cmocka_unit_test(base32_vectors),
		cmocka_unit_test(base32_round_trip),
		cmocka_unit_test(base32_strict),
		cmocka_unit_test(uri_shape),
		cmocka_unit_test(qr_svg),
		cmocka_unit_test(recovery_codes),
		cmocka_unit_test(recovery_hash_known),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
