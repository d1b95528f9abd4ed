/*
 * totp.c - HOTP/TOTP codes (GnuTLS HMAC), their replay-safe verification,
 * base32, otpauth:// URIs, QR codes as SVG (libqrencode) and recovery codes.
 *
 * Text holding a seed is written into the caller's buffer in one extend where
 * it can be, so that no reallocation leaves copies of it behind in the heap.
 */
#include "auth/totp.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <qrencode.h>
#include <sodium.h>

#define MAC_MAX 64            /* SHA-512 output */
#define QR_QUIET 4            /* modules of white around the symbol */
#define QR_PX 4               /* pixels per module in the SVG's width/height */
#define RECOVERY_CHARS 16     /* alphabet characters in a recovery code */
#define RECOVERY_GROUP 4      /* characters between dashes */
#define RECOVERY_INPUT_MAX 64 /* longest recovery code accepted as typed */

/* 32 letters without 0/O/1/I, so 5 bits each and nothing to misread. */
static const char recovery_alphabet[] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

static const uint32_t modulus[] = { 1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000 };

static int mac_of(cv_totp_alg alg, gnutls_mac_algorithm_t *mac, size_t *len)
{
	switch (alg) {
	case CV_TOTP_SHA1:
		*mac = GNUTLS_MAC_SHA1;
		*len = 20;
		return 0;
	case CV_TOTP_SHA256:
		*mac = GNUTLS_MAC_SHA256;
		*len = 32;
		return 0;
	case CV_TOTP_SHA512:
		*mac = GNUTLS_MAC_SHA512;
		*len = 64;
		return 0;
	}
	return -1;
}

void cv_totp_seed_new(uint8_t seed[CV_TOTP_SEED_BYTES])
{
	randombytes_buf(seed, CV_TOTP_SEED_BYTES);
}

cv_rc cv_totp_hotp(cv_totp_alg alg, const uint8_t *seed, size_t seedlen, uint64_t counter,
		   unsigned digits, uint32_t *code)
{
	uint8_t msg[8], mac[MAC_MAX];
	gnutls_mac_algorithm_t m;
	size_t maclen = 0;
	uint32_t bin = 0;
	cv_rc rc = CV_OK;

	if (!seed || !seedlen || seedlen > CV_TOTP_SEED_MAX || digits < 6 || digits > 8 || !code ||
	    mac_of(alg, &m, &maclen))
		return CV_E_INVALID;
	for (int i = 7; i >= 0; i--) {
		msg[i] = (uint8_t)counter;
		counter >>= 8;
	}
	if (gnutls_hmac_fast(m, seed, seedlen, msg, sizeof msg, mac) < 0) {
		rc = CV_E_CRYPTO;
		goto out;
	}
	/* RFC 4226 5.3 dynamic truncation: 31 bits at the offset the last nibble names. */
	size_t off = mac[maclen - 1] & 0x0f;
	bin = (uint32_t)(mac[off] & 0x7f) << 24 | (uint32_t)mac[off + 1] << 16 |
	      (uint32_t)mac[off + 2] << 8 | (uint32_t)mac[off + 3];
	*code = bin % modulus[digits];
out:
	sodium_memzero(mac, sizeof mac);
	sodium_memzero(&bin, sizeof bin);
	return rc;
}

int64_t cv_totp_step(int64_t now_unix)
{
	int64_t q = now_unix / CV_TOTP_PERIOD;
	return q - (now_unix % CV_TOTP_PERIOD < 0);
}

cv_rc cv_totp_code(cv_totp_alg alg, const uint8_t *seed, size_t seedlen, int64_t now_unix,
		   unsigned digits, uint32_t *code)
{
	if (now_unix < 0)
		return CV_E_INVALID;
	return cv_totp_hotp(alg, seed, seedlen, (uint64_t)cv_totp_step(now_unix), digits, code);
}

/* Exactly CV_TOTP_DIGITS ASCII digits and the NUL; reads no further than that. */
static int code_shape_ok(const char *code)
{
	if (!code)
		return 0;
	for (int i = 0; i < CV_TOTP_DIGITS; i++)
		if (code[i] < '0' || code[i] > '9')
			return 0;
	return code[CV_TOTP_DIGITS] == '\0';
}

cv_rc cv_totp_verify(const uint8_t *seed, size_t seedlen, const char *code, int64_t now_unix,
		     int64_t last_used_step, int64_t *matched_step)
{
	char want[CV_TOTP_DIGITS];
	uint32_t v = 0;
	uint64_t best = 0;
	int ok = 0;
	cv_rc rc = CV_E_DENIED;

	if (!code_shape_ok(code) || now_unix < 0)
		return CV_E_DENIED;
	int64_t now_step = cv_totp_step(now_unix);
	/* Every step of the window is computed and compared, whatever matched
	 * before: the time taken says nothing about which step (if any) it was. */
	for (int64_t d = -CV_TOTP_WINDOW; d <= CV_TOTP_WINDOW; d++) {
		int64_t step = now_step + d;
		if (step < 0)
			continue;
		if (cv_totp_hotp(CV_TOTP_SHA1, seed, seedlen, (uint64_t)step, CV_TOTP_DIGITS, &v))
			goto out;
		for (int i = CV_TOTP_DIGITS - 1; i >= 0; i--) {
			want[i] = (char)('0' + v % 10);
			v /= 10;
		}
		int hit = (sodium_memcmp(want, code, CV_TOTP_DIGITS) == 0) & (step > last_used_step);
		/* Keep the latest matching step: storing it refuses the same code
		 * for every earlier step as well. */
		uint64_t mask = (uint64_t)0 - (uint64_t)hit;
		best = (best & ~mask) | ((uint64_t)step & mask);
		ok |= hit;
	}
	if (ok) {
		if (matched_step)
			*matched_step = (int64_t)best;
		rc = CV_OK;
	}
out:
	sodium_memzero(want, sizeof want);
	sodium_memzero(&v, sizeof v);
	return rc;
}

/* Base32 characters for n bytes, unpadded; n <= SIZE_MAX / 8 checked by callers. */
static size_t b32_len(size_t n)
{
	return (n * 8 + 4) / 5;
}

/* Writes the unpadded base32 of n bytes at d (b32_len(n) characters) and
 * returns the end. Character selection has no table or branch on the data. */
static char *b32_put(char *d, const uint8_t *in, size_t n)
{
	uint32_t acc = 0;
	unsigned bits = 0;
	for (size_t i = 0; i < n; i++) {
		acc = (acc << 8) | in[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			unsigned v = (acc >> bits) & 31;
			unsigned digit = (25u - v) >> 31; /* 1 for 26..31: '2'..'7' */
			*d++ = (char)('A' + v - digit * ('A' - '2' + 26));
		}
	}
	if (bits) {
		unsigned v = (acc << (5 - bits)) & 31;
		unsigned digit = (25u - v) >> 31;
		*d++ = (char)('A' + v - digit * ('A' - '2' + 26));
	}
	sodium_memzero(&acc, sizeof acc);
	return d;
}

cv_rc cv_totp_base32_encode(const uint8_t *in, size_t n, cv_buf_t *out)
{
	char *d = NULL;
	if (n > SIZE_MAX / 8)
		return CV_E_LIMIT;
	if (!n)
		return CV_OK;
	cv_rc rc = cv_buf_extend(out, b32_len(n), (void **)&d);
	if (rc)
		return rc;
	char *end = b32_put(d, in, n);
	assert(end == d + b32_len(n));
	(void)end;
	return CV_OK;
}

static int b32_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

cv_rc cv_totp_base32_decode(const char *text, size_t len, cv_buf_t *out)
{
	size_t start = out->len, pad = 0, o = 0;
	uint8_t *d = NULL;
	uint32_t acc = 0;
	unsigned bits = 0;
	cv_rc rc = CV_OK;

	if (len > CV_TOTP_B32_MAX)
		return CV_E_LIMIT;
	if (len && !text)
		return CV_E_INVALID;
	while (pad < len && text[len - 1 - pad] == '=')
		pad++;
	if (pad) {
		/* Padding completes the last group of 8; a group of r characters
		 * takes 8 - r of it, and only r = 2, 4, 5, 7 are possible. */
		size_t r = (len - pad) % 8;
		if (len % 8 || r == 0 || r + pad != 8)
			return CV_E_INVALID;
		len -= pad;
	}
	if (!len)
		return CV_OK;
	/* One extend for all of it: no reallocation leaves decoded bytes behind. */
	rc = cv_buf_extend(out, len * 5 / 8, (void **)&d);
	if (rc)
		return rc;
	for (size_t i = 0; i < len; i++) {
		int v = b32_value(text[i]);
		if (v < 0) {
			rc = CV_E_INVALID;
			goto out;
		}
		acc = (acc << 5) | (uint32_t)v;
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			d[o++] = (uint8_t)(acc >> bits);
		}
	}
	assert(o == len * 5 / 8);
	/* Five or more bits left is a length no encoder makes (1, 3 or 6
	 * characters in the last group); so are set leftover bits. */
	if (bits >= 5 || (acc & ((1u << bits) - 1)))
		rc = CV_E_INVALID;
out:
	sodium_memzero(&acc, sizeof acc);
	if (rc) {
		sodium_memzero(out->data + start, out->len - start);
		cv_buf_truncate(out, start);
	}
	return rc;
}

/* RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~" (ASCII, no locale). */
static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
	       c == '.' || c == '_' || c == '~';
}

static size_t pct_len(const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		n += unreserved(*p) ? 1 : 3;
	return n;
}

static char *pct_put(char *d, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (unreserved(*p)) {
			*d++ = (char)*p;
		} else {
			*d++ = '%';
			*d++ = hex[*p >> 4];
			*d++ = hex[*p & 15];
		}
	}
	return d;
}

static char *put(char *d, const char *s)
{
	size_t n = strlen(s);
	memcpy(d, s, n);
	return d + n;
}

#define URI_SCHEME "otpauth://totp/"
#define URI_SECRET "?secret="
#define URI_ISSUER "&issuer="
#define URI_PARAMS "&algorithm=SHA1&digits=6&period=30"

cv_rc cv_totp_uri(const char *issuer, const char *account, const uint8_t *seed, size_t seedlen,
		  cv_buf_t *out)
{
	char *d = NULL;

	if (!issuer || !account || !seed || !*issuer || !*account || !seedlen)
		return CV_E_INVALID;
	if (strnlen(issuer, CV_TOTP_LABEL_MAX + 1) > CV_TOTP_LABEL_MAX ||
	    strnlen(account, CV_TOTP_LABEL_MAX + 1) > CV_TOTP_LABEL_MAX || seedlen > CV_TOTP_SEED_MAX)
		return CV_E_LIMIT;
	size_t il = pct_len(issuer), al = pct_len(account);
	size_t total = strlen(URI_SCHEME) + il + 1 + al + strlen(URI_SECRET) + b32_len(seedlen) +
		       strlen(URI_ISSUER) + il + strlen(URI_PARAMS);
	cv_rc rc = cv_buf_extend(out, total, (void **)&d);
	if (rc)
		return rc;
	char *p = put(d, URI_SCHEME);
	p = pct_put(p, issuer);
	*p++ = ':';
	p = pct_put(p, account);
	p = put(p, URI_SECRET);
	p = b32_put(p, seed, seedlen);
	p = put(p, URI_ISSUER);
	p = pct_put(p, issuer);
	p = put(p, URI_PARAMS);
	assert(p == d + total);
	return CV_OK;
}

static size_t dec_len(unsigned v)
{
	size_t n = 1;
	while (v >= 10) {
		v /= 10;
		n++;
	}
	return n;
}

static char *dec_put(char *d, unsigned v)
{
	size_t n = dec_len(v);
	for (size_t i = n; i > 0; i--) {
		d[i - 1] = (char)('0' + v % 10);
		v /= 10;
	}
	return d + n;
}

#define SQUARE_TAIL "h1v1h-1z"

cv_rc cv_totp_qr_svg(const char *text, cv_buf_t *out)
{
	char head[512];
	const char *tail = "\"/></svg>\n";
	QRcode *qr = NULL;
	char *d = NULL;
	cv_rc rc = CV_OK;

	if (!text || !*text)
		return CV_E_INVALID;
	if (strnlen(text, CV_TOTP_QR_TEXT_MAX + 1) > CV_TOTP_QR_TEXT_MAX)
		return CV_E_LIMIT;
	errno = 0;
	qr = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
	if (!qr)
		return errno == ENOMEM ? CV_E_NOMEM : errno == ERANGE ? CV_E_LIMIT : CV_E_INVALID;

	unsigned w = (unsigned)qr->width, size = w + 2 * QR_QUIET;
	int hn = snprintf(head, sizeof head,
			  "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
			  "width=\"%u\" height=\"%u\" viewBox=\"0 0 %u %u\" shape-rendering=\"crispEdges\">"
			  "<rect width=\"%u\" height=\"%u\" fill=\"#fff\"/><path fill=\"#000\" d=\"",
			  size * QR_PX, size * QR_PX, size, size, size, size);
	if (hn < 0 || (size_t)hn >= sizeof head) {
		rc = CV_E_INTERNAL;
		goto out;
	}
	/* Sized first and written in one extend: the picture is as secret as the seed. */
	size_t total = (size_t)hn + strlen(tail);
	for (unsigned y = 0; y < w; y++)
		for (unsigned x = 0; x < w; x++)
			if (qr->data[y * w + x] & 1)
				total += 1 + dec_len(x + QR_QUIET) + 1 + dec_len(y + QR_QUIET) +
					 strlen(SQUARE_TAIL);
	rc = cv_buf_extend(out, total, (void **)&d);
	if (rc)
		goto out;
	char *p = put(d, head);
	for (unsigned y = 0; y < w; y++) {
		for (unsigned x = 0; x < w; x++) {
			if (!(qr->data[y * w + x] & 1))
				continue;
			*p++ = 'M';
			p = dec_put(p, x + QR_QUIET);
			*p++ = ' ';
			p = dec_put(p, y + QR_QUIET);
			p = put(p, SQUARE_TAIL);
		}
	}
	p = put(p, tail);
	assert(p == d + total);
out:
	sodium_memzero(qr->data, (size_t)w * w);
	QRcode_free(qr);
	return rc;
}

static int recovery_char_ok(unsigned char c)
{
	return (c >= '2' && c <= '9') || (c >= 'A' && c <= 'Z' && c != 'I' && c != 'O');
}

void cv_totp_recovery_new(char codes[CV_TOTP_RECOVERY_COUNT][CV_TOTP_RECOVERY_LEN])
{
	uint8_t r[RECOVERY_CHARS];
	for (int i = 0; i < CV_TOTP_RECOVERY_COUNT; i++) {
		size_t p = 0;
		randombytes_buf(r, sizeof r);
		for (int j = 0; j < RECOVERY_CHARS; j++) {
			if (j && j % RECOVERY_GROUP == 0)
				codes[i][p++] = '-';
			/* 256 is a multiple of 32: the low 5 bits are uniform. */
			codes[i][p++] = recovery_alphabet[r[j] & 31];
		}
		codes[i][p] = '\0';
		assert(p + 1 == CV_TOTP_RECOVERY_LEN);
	}
	sodium_memzero(r, sizeof r);
}

/* Drops dashes and spaces, uppercases; exactly RECOVERY_CHARS alphabet characters must remain. */
static cv_rc recovery_normalise(const char *code, char norm[RECOVERY_CHARS])
{
	size_t n = 0;
	if (!code)
		return CV_E_INVALID;
	for (size_t i = 0; code[i]; i++) {
		unsigned char c = (unsigned char)code[i];
		if (i >= RECOVERY_INPUT_MAX)
			return CV_E_INVALID;
		if (c == '-' || c == ' ')
			continue;
		if (c >= 'a' && c <= 'z')
			c = (unsigned char)(c - 'a' + 'A');
		if (n == RECOVERY_CHARS || !recovery_char_ok(c))
			return CV_E_INVALID;
		norm[n++] = (char)c;
	}
	return n == RECOVERY_CHARS ? CV_OK : CV_E_INVALID;
}

cv_rc cv_totp_recovery_hash(const char *code, uint8_t out[CV_TOTP_RECOVERY_HASH])
{
	char norm[RECOVERY_CHARS];
	cv_rc rc = recovery_normalise(code, norm);
	if (rc)
		goto out;
	crypto_generichash(out, CV_TOTP_RECOVERY_HASH, (const unsigned char *)norm, sizeof norm, NULL, 0);
out:
	sodium_memzero(norm, sizeof norm);
	return rc;
}

int cv_totp_recovery_equal(const uint8_t a[CV_TOTP_RECOVERY_HASH], const uint8_t b[CV_TOTP_RECOVERY_HASH])
{
	return sodium_memcmp(a, b, CV_TOTP_RECOVERY_HASH) == 0;
}

cv_rc cv_totp_recovery_find(const char *code, const uint8_t (*hashes)[CV_TOTP_RECOVERY_HASH], size_t n,
			    size_t *index)
{
	uint8_t h[CV_TOTP_RECOVERY_HASH];
	size_t found = 0;
	int ok = 0;

	if (!hashes || !n || cv_totp_recovery_hash(code, h)) {
		sodium_memzero(h, sizeof h);
		return CV_E_DENIED;
	}
	for (size_t i = 0; i < n; i++) {
		int hit = cv_totp_recovery_equal(h, hashes[i]);
		size_t mask = (size_t)0 - (size_t)hit;
		found = (found & ~mask) | (i & mask);
		ok |= hit;
	}
	sodium_memzero(h, sizeof h);
	if (!ok)
		return CV_E_DENIED;
	if (index)
		*index = found;
	return CV_OK;
}
