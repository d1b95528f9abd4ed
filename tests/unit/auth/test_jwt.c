/*
 * test_jwt.c - private_key_jwt verification: RS384 and ES384 tokens signed
 * here with keys made by GnuTLS verify and give their claims back; tampered
 * tokens, other keys, alg none/HS256/RS256, wrong kids, DER ES384 signatures,
 * weak and private keys in the JWKS, malformed and oversized inputs are
 * refused with the right code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sodium.h>

#include "auth/jwt.h"

#define BIG 70000

static gnutls_privkey_t rsa_a, rsa_b, rsa_small, ec_a, ec_b;

static const char payload_json[] = "{\"iss\":\"client-1\",\"sub\":\"client-1\",\"jti\":\"j-42\",\"exp\":1900000000}";

static gnutls_privkey_t genkey(gnutls_pk_algorithm_t pk, unsigned bits)
{
	gnutls_privkey_t k = NULL;
	if (gnutls_privkey_init(&k) < 0 || gnutls_privkey_generate2(k, pk, bits, 0, NULL, 0) < 0)
		fail_msg("key generation failed");
	return k;
}

static int group_setup(void **state)
{
	if (sodium_init() < 0)
		return -1;
	rsa_a = genkey(GNUTLS_PK_RSA, 2048);
	rsa_b = genkey(GNUTLS_PK_RSA, 2048);
	rsa_small = genkey(GNUTLS_PK_RSA, 1024);
	ec_a = genkey(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP384R1));
	ec_b = genkey(GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP384R1));
	return 0;
}

static int group_teardown(void **state)
{
	gnutls_privkey_deinit(rsa_a);
	gnutls_privkey_deinit(rsa_b);
	gnutls_privkey_deinit(rsa_small);
	gnutls_privkey_deinit(ec_a);
	gnutls_privkey_deinit(ec_b);
	return 0;
}

/* base64url without padding, malloc'd. */
static char *b64(const void *p, size_t n)
{
	size_t len = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *s = malloc(len);
	assert_non_null(s);
	sodium_bin2base64(s, len, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return s;
}

/* Copies d into out left-padded with zeros to w bytes (d may have a leading zero too many). */
static void pad(const gnutls_datum_t *d, uint8_t *out, size_t w)
{
	size_t i = 0;
	while (d->size - i > w) {
		assert_int_equal(d->data[i], 0);
		i++;
	}
	memset(out, 0, w);
	memcpy(out + w - (d->size - i), d->data + i, d->size - i);
}

/* The public JWK of k as JSON text (malloc'd); kid and extra ("," members) may be NULL. */
static char *jwk(gnutls_privkey_t k, const char *kid, const char *extra)
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t a = { NULL, 0 }, b = { NULL, 0 };
	char kidm[128] = "";
	char *out = malloc(4096);
	assert_non_null(out);
	assert_true(gnutls_pubkey_init(&pub) >= 0);
	assert_true(gnutls_pubkey_import_privkey(pub, k, 0, 0) >= 0);
	if (kid)
		snprintf(kidm, sizeof kidm, "\"kid\":\"%s\",", kid);
	if (gnutls_pubkey_get_pk_algorithm(pub, NULL) == GNUTLS_PK_RSA) {
		assert_true(gnutls_pubkey_export_rsa_raw2(pub, &a, &b, GNUTLS_EXPORT_FLAG_NO_LZ) >= 0);
		char *n = b64(a.data, a.size), *e = b64(b.data, b.size);
		snprintf(out, 4096, "{%s\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s}", kidm, n, e, extra ? extra : "");
		free(n);
		free(e);
	} else {
		gnutls_ecc_curve_t curve;
		uint8_t x[48], y[48];
		assert_true(gnutls_pubkey_export_ecc_raw2(pub, &curve, &a, &b, GNUTLS_EXPORT_FLAG_NO_LZ) >= 0);
		assert_int_equal(curve, GNUTLS_ECC_CURVE_SECP384R1);
		pad(&a, x, 48);
		pad(&b, y, 48);
		char *xs = b64(x, 48), *ys = b64(y, 48);
		snprintf(out, 4096, "{%s\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"%s\",\"y\":\"%s\"%s}", kidm, xs, ys,
			 extra ? extra : "");
		free(xs);
		free(ys);
	}
	gnutls_free(a.data);
	gnutls_free(b.data);
	gnutls_pubkey_deinit(pub);
	return out;
}

/* {"keys":[j1,j2]} (j2 may be NULL), malloc'd. */
static char *jwks2(const char *j1, const char *j2)
{
	size_t len = strlen(j1) + (j2 ? strlen(j2) : 0) + 32;
	char *s = malloc(len);
	assert_non_null(s);
	snprintf(s, len, "{\"keys\":[%s%s%s]}", j1, j2 ? "," : "", j2 ? j2 : "");
	return s;
}

typedef enum sigmode {
	SIG_NONE,  /* empty signature */
	SIG_JWS,   /* RS*: PKCS#1; ES384: raw r||s */
	SIG_DER,   /* ES384 left as GnuTLS' DER */
} sigmode_t;

/* b64(header).b64(payload).b64(signature) signed by k with algo, malloc'd. */
static char *token(const char *header, const char *payload, gnutls_privkey_t k, gnutls_sign_algorithm_t algo,
		   sigmode_t mode)
{
	char *h = b64(header, strlen(header)), *p = b64(payload, strlen(payload)), *s = NULL;
	size_t inlen = strlen(h) + 1 + strlen(p);
	char *in = malloc(inlen + 1);
	assert_non_null(in);
	snprintf(in, inlen + 1, "%s.%s", h, p);
	if (mode == SIG_NONE) {
		s = b64("", 0);
	} else {
		gnutls_datum_t d = { (unsigned char *)in, (unsigned)inlen }, sig = { NULL, 0 };
		assert_true(gnutls_privkey_sign_data2(k, algo, 0, &d, &sig) >= 0);
		if (algo == GNUTLS_SIGN_ECDSA_SHA384 && mode == SIG_JWS) {
			gnutls_datum_t r = { NULL, 0 }, ss = { NULL, 0 };
			uint8_t raw[96];
			assert_true(gnutls_decode_rs_value(&sig, &r, &ss) >= 0);
			pad(&r, raw, 48);
			pad(&ss, raw + 48, 48);
			s = b64(raw, 96);
			gnutls_free(r.data);
			gnutls_free(ss.data);
		} else {
			s = b64(sig.data, sig.size);
		}
		gnutls_free(sig.data);
	}
	size_t len = inlen + 1 + strlen(s) + 1;
	char *t = malloc(len);
	assert_non_null(t);
	snprintf(t, len, "%s.%s", in, s);
	free(h);
	free(p);
	free(s);
	free(in);
	return t;
}

static cv_rc verify(const char *tok, const char *jwks, char *why, size_t whylen)
{
	json_object *claims = (json_object *)1;
	cv_rc rc = cv_jwt_verify(tok, jwks, strlen(jwks), &claims, why, whylen);
	if (rc == CV_OK) {
		json_object *j = NULL;
		assert_true(json_object_object_get_ex(claims, "jti", &j));
		assert_string_equal(json_object_get_string(j), "j-42");
		json_object_put(claims);
	} else {
		assert_null(claims);
	}
	return rc;
}

static void valid_rs384(void **state)
{
	char *j = jwk(rsa_a, "r1", NULL), *ks = jwks2(j, NULL);
	char *t = token("{\"alg\":\"RS384\",\"kid\":\"r1\",\"typ\":\"JWT\"}", payload_json, rsa_a,
			GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	char why[64];
	assert_int_equal(verify(t, ks, why, sizeof why), CV_OK);
	assert_int_equal(cv_jwt_jwks_check(ks, strlen(ks), why, sizeof why), CV_OK);
	free(t);
	/* no kid in the header: the RSA keys are tried */
	t = token("{\"alg\":\"RS384\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, NULL, 0), CV_OK);
	free(t);
	free(ks);
	free(j);
}

static void valid_es384(void **state)
{
	char *j = jwk(ec_a, "e1", ",\"use\":\"sig\",\"alg\":\"ES384\""), *ks = jwks2(j, NULL);
	char why[64];
	assert_int_equal(cv_jwt_jwks_check(ks, strlen(ks), why, sizeof why), CV_OK);
	/* signatures until one whose r or s starts with a zero byte came up (about
	 * one in 128), so that shorter INTEGERs in the DER are covered */
	int lz = 0;
	for (int i = 0; i < 4000 && (i < 16 || !lz); i++) {
		char *t = token("{\"alg\":\"ES384\",\"kid\":\"e1\"}", payload_json, ec_a, GNUTLS_SIGN_ECDSA_SHA384,
				SIG_JWS);
		uint8_t raw[96];
		size_t rawlen = 0;
		const char *s = strrchr(t, '.') + 1;
		assert_int_equal(sodium_base642bin(raw, sizeof raw, s, strlen(s), NULL, &rawlen, NULL,
						   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
				 0);
		assert_int_equal(rawlen, 96);
		if (!raw[0] || !raw[48])
			lz++;
		assert_int_equal(verify(t, ks, why, sizeof why), CV_OK);
		free(t);
	}
	assert_true(lz > 0);
	free(ks);
	free(j);
}

/* Changes one base64url character at off into another valid one. */
static void flip(char *t, size_t off)
{
	t[off] = t[off] == 'A' ? 'B' : 'A';
}

static void tampered(void **state)
{
	char *jr = jwk(rsa_a, NULL, NULL), *je = jwk(ec_a, NULL, NULL), *ks = jwks2(jr, je);
	char why[64];
	struct {
		const char *h;
		gnutls_privkey_t k;
		gnutls_sign_algorithm_t a;
	} c[] = {
		{ "{\"alg\":\"RS384\"}", rsa_a, GNUTLS_SIGN_RSA_SHA384 },
		{ "{\"alg\":\"ES384\"}", ec_a, GNUTLS_SIGN_ECDSA_SHA384 },
	};
	for (size_t i = 0; i < 2; i++) {
		char *t = token(c[i].h, payload_json, c[i].k, c[i].a, SIG_JWS);
		size_t po = (size_t)(strchr(t, '.') + 1 - t) + 3, so = (size_t)(strrchr(t, '.') + 1 - t) + 5;
		char keep = t[po];
		flip(t, po);
		assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
		assert_string_equal(why, "bad signature");
		t[po] = keep;
		assert_int_equal(verify(t, ks, why, sizeof why), CV_OK);
		keep = t[so];
		flip(t, so);
		assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
		t[so] = keep;
		/* RS384's last character has 4 unused bits: set one, not strict base64url */
		size_t n = strlen(t);
		keep = t[n - 1];
		if (i == 0 && strchr("AQgw", keep)) {
			t[n - 1] = (char)(keep + 1);
			assert_int_equal(verify(t, ks, why, sizeof why), CV_E_INVALID);
			t[n - 1] = keep;
		}
		free(t);
	}
	free(ks);
	free(je);
	free(jr);
}

static void other_key(void **state)
{
	char *jr = jwk(rsa_a, "k", NULL), *je = jwk(ec_a, "k2", NULL), *ks = jwks2(jr, je);
	char why[64];
	char *t = token("{\"alg\":\"RS384\"}", payload_json, rsa_b, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	free(t);
	t = token("{\"alg\":\"RS384\",\"kid\":\"k\"}", payload_json, rsa_b, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	free(t);
	t = token("{\"alg\":\"ES384\"}", payload_json, ec_b, GNUTLS_SIGN_ECDSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	free(t);
	/* a kid naming a key of the other type */
	t = token("{\"alg\":\"ES384\",\"kid\":\"k\"}", payload_json, ec_a, GNUTLS_SIGN_ECDSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	assert_string_equal(why, "no usable key");
	free(t);
	free(ks);
	free(je);
	free(jr);
}

/* cv_jwt_verify_ex's no_key: 1 only when no key could be tried (an unknown
 * kid, a kid of a key unusable for the alg), never for a bad signature. */
static void no_key_detail(void **state)
{
	char *jr = jwk(rsa_a, "k", NULL), *ks = jwks2(jr, NULL);
	char why[64];
	json_object *claims = NULL;
	int no_key = -1;
	char *t = token("{\"alg\":\"RS384\",\"kid\":\"rotated\"}", payload_json, rsa_b, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(cv_jwt_verify_ex(t, ks, strlen(ks), &claims, &no_key, why, sizeof why), CV_E_UNAUTH);
	assert_int_equal(no_key, 1);
	free(t);
	t = token("{\"alg\":\"ES384\"}", payload_json, ec_a, GNUTLS_SIGN_ECDSA_SHA384, SIG_JWS);
	assert_int_equal(cv_jwt_verify_ex(t, ks, strlen(ks), &claims, &no_key, why, sizeof why), CV_E_UNAUTH);
	assert_int_equal(no_key, 1);
	free(t);
	t = token("{\"alg\":\"RS384\",\"kid\":\"k\"}", payload_json, rsa_b, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(cv_jwt_verify_ex(t, ks, strlen(ks), &claims, &no_key, why, sizeof why), CV_E_UNAUTH);
	assert_int_equal(no_key, 0);
	free(t);
	t = token("{\"alg\":\"HS256\",\"kid\":\"rotated\"}", payload_json, NULL, 0, SIG_NONE);
	assert_int_equal(cv_jwt_verify_ex(t, ks, strlen(ks), &claims, &no_key, why, sizeof why), CV_E_UNAUTH);
	assert_int_equal(no_key, 0);
	free(t);
	t = token("{\"alg\":\"RS384\",\"kid\":\"k\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(cv_jwt_verify_ex(t, ks, strlen(ks), &claims, &no_key, why, sizeof why), CV_OK);
	assert_int_equal(no_key, 0);
	json_object_put(claims);
	free(t);
	free(ks);
	free(jr);
}

static void alg_none(void **state)
{
	char *j = jwk(rsa_a, NULL, NULL), *ks = jwks2(j, NULL);
	char why[64];
	char *t = token("{\"alg\":\"none\"}", payload_json, NULL, 0, SIG_NONE);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	assert_string_equal(why, "alg not accepted");
	free(t);
	/* none with a signature that would verify under RS384 */
	t = token("{\"alg\":\"none\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	free(t);
	t = token("{\"alg\":\"None\"}", payload_json, NULL, 0, SIG_NONE);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	free(t);
	/* RS384 with an empty signature */
	t = token("{\"alg\":\"RS384\"}", payload_json, NULL, 0, SIG_NONE);
	assert_int_not_equal(verify(t, ks, why, sizeof why), CV_OK);
	free(t);
	free(ks);
	free(j);
}

/* HS256 keyed with the RSA modulus bytes, and HS384 keyed with the JWKS text. */
static void alg_hmac(void **state)
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t m = { NULL, 0 }, e = { NULL, 0 };
	char *j = jwk(rsa_a, NULL, NULL), *ks = jwks2(j, NULL);
	char why[64];
	assert_true(gnutls_pubkey_init(&pub) >= 0);
	assert_true(gnutls_pubkey_import_privkey(pub, rsa_a, 0, 0) >= 0);
	assert_true(gnutls_pubkey_export_rsa_raw2(pub, &m, &e, GNUTLS_EXPORT_FLAG_NO_LZ) >= 0);

	for (int v = 0; v < 2; v++) {
		const char *hdr = v ? "{\"alg\":\"HS384\"}" : "{\"alg\":\"HS256\"}";
		char *h = b64(hdr, strlen(hdr)), *p = b64(payload_json, strlen(payload_json));
		char in[1024], t[2048];
		uint8_t mac[48];
		snprintf(in, sizeof in, "%s.%s", h, p);
		if (v)
			assert_int_equal(gnutls_hmac_fast(GNUTLS_MAC_SHA384, ks, strlen(ks), in, strlen(in), mac), 0);
		else
			assert_int_equal(gnutls_hmac_fast(GNUTLS_MAC_SHA256, m.data, m.size, in, strlen(in), mac), 0);
		char *s = b64(mac, v ? 48 : 32);
		snprintf(t, sizeof t, "%s.%s", in, s);
		assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
		assert_string_equal(why, "alg not accepted");
		free(s);
		free(h);
		free(p);
	}
	gnutls_free(m.data);
	gnutls_free(e.data);
	gnutls_pubkey_deinit(pub);
	free(ks);
	free(j);
}

static void alg_rs256(void **state)
{
	char *j = jwk(rsa_a, NULL, NULL), *ks = jwks2(j, NULL);
	char *t = token("{\"alg\":\"RS256\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA256, SIG_JWS);
	assert_int_equal(verify(t, ks, NULL, 0), CV_E_UNAUTH);
	free(t);
	/* an RS384 signature under a header saying RS256 */
	t = token("{\"alg\":\"RS256\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, NULL, 0), CV_E_UNAUTH);
	free(t);
	/* an RS384 token against a key that says it is for RS256 */
	char *j2 = jwk(rsa_a, NULL, ",\"alg\":\"RS256\""), *ks2 = jwks2(j2, NULL);
	t = token("{\"alg\":\"RS384\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks2, NULL, 0), CV_E_UNAUTH);
	free(t);
	free(ks2);
	free(j2);
	free(ks);
	free(j);
}

static void kid_selection(void **state)
{
	char *j1 = jwk(rsa_a, "one", NULL), *j2 = jwk(rsa_b, "two", NULL), *ks = jwks2(j1, j2);
	char why[64];
	char *t = token("{\"alg\":\"RS384\",\"kid\":\"two\"}", payload_json, rsa_b, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_OK);
	free(t);
	t = token("{\"alg\":\"RS384\",\"kid\":\"one\"}", payload_json, rsa_b, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	assert_string_equal(why, "bad signature");
	free(t);
	t = token("{\"alg\":\"RS384\",\"kid\":\"three\"}", payload_json, rsa_b, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	assert_string_equal(why, "no usable key");
	free(t);
	/* without kid, the second key is found */
	t = token("{\"alg\":\"RS384\"}", payload_json, rsa_b, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_OK);
	free(t);
	/* kid not a string */
	t = token("{\"alg\":\"RS384\",\"kid\":2}", payload_json, rsa_b, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_INVALID);
	free(t);
	free(ks);
	free(j2);
	free(j1);

	/* a key for encryption is skipped */
	j1 = jwk(rsa_a, "one", ",\"use\":\"enc\"");
	ks = jwks2(j1, NULL);
	t = token("{\"alg\":\"RS384\",\"kid\":\"one\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	assert_string_equal(why, "no usable key");
	assert_int_equal(cv_jwt_jwks_check(ks, strlen(ks), why, sizeof why), CV_E_INVALID);
	free(t);
	free(ks);
	free(j1);
}

static void es384_der(void **state)
{
	char *j = jwk(ec_a, NULL, NULL), *ks = jwks2(j, NULL);
	char *t = token("{\"alg\":\"ES384\"}", payload_json, ec_a, GNUTLS_SIGN_ECDSA_SHA384, SIG_DER);
	assert_int_equal(verify(t, ks, NULL, 0), CV_E_UNAUTH);
	free(t);
	free(ks);
	free(j);
}

static void malformed(void **state)
{
	char *j = jwk(rsa_a, NULL, NULL), *ks = jwks2(j, NULL);
	char why[64], buf[4096];
	char *good = token("{\"alg\":\"RS384\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	char *p = strchr(good, '.'), *s = strrchr(good, '.');

	/* two parts */
	snprintf(buf, sizeof buf, "%.*s", (int)(s - good), good);
	assert_int_equal(verify(buf, ks, why, sizeof why), CV_E_INVALID);
	/* four parts */
	snprintf(buf, sizeof buf, "%s.%s", good, s + 1);
	assert_int_equal(verify(buf, ks, why, sizeof why), CV_E_INVALID);
	/* padding in a part, whitespace in a part */
	snprintf(buf, sizeof buf, "%.*s=%s", (int)(p - good), good, p);
	assert_int_equal(verify(buf, ks, why, sizeof why), CV_E_INVALID);
	snprintf(buf, sizeof buf, "%s==", good);
	assert_int_equal(verify(buf, ks, why, sizeof why), CV_E_INVALID);
	snprintf(buf, sizeof buf, "%.*s %s", (int)(p - good), good, p);
	assert_int_equal(verify(buf, ks, why, sizeof why), CV_E_INVALID);
	/* standard base64 characters */
	snprintf(buf, sizeof buf, "%.*s+%s", (int)(p - good), good, p);
	assert_int_equal(verify(buf, ks, why, sizeof why), CV_E_INVALID);
	/* empty header, empty payload, empty token */
	assert_int_equal(verify(p, ks, why, sizeof why), CV_E_INVALID);
	assert_int_equal(verify("..", ks, why, sizeof why), CV_E_INVALID);
	assert_int_equal(verify("", ks, why, sizeof why), CV_E_INVALID);
	free(good);

	static const char *const headers[] = {
		"{\"alg\":\"RS384\"",                  /* not JSON */
		"not json",                            /* not JSON */
		"[\"RS384\"]",                         /* not an object */
		"\"RS384\"",                           /* not an object */
		"{\"typ\":\"JWT\"}",                   /* no alg */
		"{\"alg\":384}",                       /* alg not a string */
		"{\"alg\":\"RS384\",\"alg\":\"none\"}", /* duplicate key */
	};
	for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
		char *t = token(headers[i], payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
		assert_int_equal(verify(t, ks, why, sizeof why), CV_E_INVALID);
		free(t);
	}
	/* a good signature over a payload that is not an object */
	char *t = token("{\"alg\":\"RS384\"}", "[1,2]", rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	json_object *claims = NULL;
	assert_int_equal(cv_jwt_verify(t, ks, strlen(ks), &claims, why, sizeof why), CV_E_INVALID);
	assert_null(claims);
	free(t);
	/* crit is refused */
	t = token("{\"alg\":\"RS384\",\"crit\":[\"exp\"],\"exp\":1}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384,
		  SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	free(t);
	/* malformed JWKS */
	t = token("{\"alg\":\"RS384\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, "{\"keys\":[]}", why, sizeof why), CV_E_INVALID);
	assert_int_equal(verify(t, "{\"keys\":{}}", why, sizeof why), CV_E_INVALID);
	assert_int_equal(verify(t, "{\"keys\":[1]}", why, sizeof why), CV_E_INVALID);
	assert_int_equal(verify(t, "[]", why, sizeof why), CV_E_INVALID);
	assert_int_equal(verify(t, "{\"keys\":[", why, sizeof why), CV_E_INVALID);
	free(t);
	free(ks);
	free(j);
}

static void jwks_private_and_weak(void **state)
{
	char why[64];
	char *j = jwk(rsa_a, NULL, ",\"d\":\"AQAB\""), *ks = jwks2(j, NULL);
	assert_int_equal(cv_jwt_jwks_check(ks, strlen(ks), why, sizeof why), CV_E_INVALID);
	assert_string_equal(why, "jwks holds a private key");
	/* and verify does not use it */
	char *t = token("{\"alg\":\"RS384\"}", payload_json, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	free(t);
	free(ks);
	free(j);

	j = jwk(ec_a, NULL, ",\"d\":\"AQAB\"");
	ks = jwks2(j, NULL);
	assert_int_equal(cv_jwt_jwks_check(ks, strlen(ks), why, sizeof why), CV_E_INVALID);
	free(ks);
	free(j);

	/* a symmetric key */
	static const char oct[] = "{\"keys\":[{\"kty\":\"oct\",\"k\":\"AQAB\"}]}";
	assert_int_equal(cv_jwt_jwks_check(oct, strlen(oct), why, sizeof why),
			 CV_E_INVALID);

	j = jwk(rsa_small, NULL, NULL);
	ks = jwks2(j, NULL);
	assert_int_equal(cv_jwt_jwks_check(ks, strlen(ks), why, sizeof why), CV_E_INVALID);
	t = token("{\"alg\":\"RS384\"}", payload_json, rsa_small, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_UNAUTH);
	assert_string_equal(why, "no usable key");
	free(t);
	free(ks);
	free(j);

	/* a good key beside a weak one still fails the check */
	char *j1 = jwk(rsa_a, NULL, NULL), *j2 = jwk(rsa_small, NULL, NULL);
	ks = jwks2(j1, j2);
	assert_int_equal(cv_jwt_jwks_check(ks, strlen(ks), why, sizeof why), CV_E_INVALID);
	free(ks);
	free(j2);
	free(j1);

	/* only keys of other types or curves */
	static const char okp[] = "{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AA\"}]}";
	assert_int_equal(cv_jwt_jwks_check(okp, strlen(okp), why, sizeof why), CV_E_INVALID);
	/* EC point not on the curve */
	uint8_t zero[48] = { 0 };
	zero[47] = 1;
	char *z = b64(zero, 48), bad[512];
	snprintf(bad, sizeof bad, "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"%s\",\"y\":\"%s\"}]}", z, z);
	assert_int_equal(cv_jwt_jwks_check(bad, strlen(bad), why, sizeof why), CV_E_INVALID);
	free(z);
	/* the good mixed set */
	j1 = jwk(rsa_a, "a", NULL);
	j2 = jwk(ec_a, "b", NULL);
	ks = jwks2(j1, j2);
	assert_int_equal(cv_jwt_jwks_check(ks, strlen(ks), why, sizeof why), CV_OK);
	free(ks);
	free(j2);
	free(j1);
}

static void oversized(void **state)
{
	char why[64];
	char *j = jwk(rsa_a, NULL, NULL), *ks = jwks2(j, NULL);
	/* a big (but signed) payload over the token bound */
	char *big = malloc(BIG);
	assert_non_null(big);
	int n = snprintf(big, BIG, "{\"jti\":\"j-42\",\"pad\":\"");
	memset(big + n, 'x', 12500);
	memcpy(big + n + 12500, "\"}", 3);
	char *t = token("{\"alg\":\"RS384\"}", big, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_true(strlen(t) > CV_JWT_TOKEN_MAX);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_E_INVALID);
	assert_string_equal(why, "token too long");
	free(t);
	/* just under the bound it verifies */
	memcpy(big + n + 11000, "\"}", 3);
	t = token("{\"alg\":\"RS384\"}", big, rsa_a, GNUTLS_SIGN_RSA_SHA384, SIG_JWS);
	assert_true(strlen(t) <= CV_JWT_TOKEN_MAX);
	assert_int_equal(verify(t, ks, why, sizeof why), CV_OK);

	/* a JWKS over 64 KiB (the good key first, then padding) */
	size_t kl = strlen(ks);
	memcpy(big, ks, kl - 1);
	size_t off = kl - 1;
	off += (size_t)snprintf(big + off, BIG - off, ",\"pad\":\"");
	memset(big + off, 'x', CV_JWT_JWKS_MAX);
	memcpy(big + off + CV_JWT_JWKS_MAX, "\"}", 3);
	assert_int_equal(verify(t, big, why, sizeof why), CV_E_INVALID);
	assert_string_equal(why, "jwks too large");
	assert_int_equal(cv_jwt_jwks_check(big, strlen(big), why, sizeof why), CV_E_INVALID);

	/* 33 keys */
	off = (size_t)snprintf(big, BIG, "{\"keys\":[");
	for (int i = 0; i <= CV_JWT_KEYS_MAX; i++)
		off += (size_t)snprintf(big + off, BIG - off, "%s%s", i ? "," : "", j);
	snprintf(big + off, BIG - off, "]}");
	assert_int_equal(verify(t, big, why, sizeof why), CV_E_INVALID);
	assert_string_equal(why, "jwks has too many keys");
	assert_int_equal(cv_jwt_jwks_check(big, strlen(big), why, sizeof why), CV_E_INVALID);
	free(t);
	free(big);
	free(ks);
	free(j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(valid_rs384),
		cmocka_unit_test(valid_es384),
		cmocka_unit_test(tampered),
		cmocka_unit_test(other_key),
		cmocka_unit_test(no_key_detail),
		cmocka_unit_test(alg_none),
		cmocka_unit_test(alg_hmac),
		cmocka_unit_test(alg_rs256),
		cmocka_unit_test(kid_selection),
		cmocka_unit_test(es384_der),
		cmocka_unit_test(malformed),
		cmocka_unit_test(jwks_private_and_weak),
		cmocka_unit_test(oversized),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
