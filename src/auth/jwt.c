/*
 * jwt.c - compact JWS verification (RS384, ES384) against a registered JWKS,
 * and the check of a JWKS at registration. GnuTLS verifies, libsodium decodes
 * base64url (strictly: no padding, no whitespace, unused bits zero), and
 * cv_json_parse parses the JSON (duplicate keys refused).
 *
 * The order matters: the header is read and its alg judged before any key is
 * touched; the payload is decoded up front (a malformed one is an error either
 * way) but parsed as JSON only once a signature checked out.
 */
#include "auth/jwt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sodium.h>

#include "core/pool.h"
#include "model/json.h"

#define EC_COORD 48                          /* bytes of a P-384 coordinate, and of r and s */
#define RSA_N_MAX (CV_JWT_RSA_MAX_BITS / 8)  /* bytes of the largest modulus */
#define RSA_E_MAX 8                          /* bytes of the largest public exponent */
#define ERR_POOL_CAP 4096                    /* the parser's error message lives here */

typedef enum alg {
	ALG_RS384,
	ALG_ES384,
} alg_t;

typedef enum kind {
	KIND_OTHER = 0, /* a kty or curve never used here */
	KIND_RSA,
	KIND_P384,
} kind_t;

static const char *const alg_names[] = { [ALG_RS384] = "RS384", [ALG_ES384] = "ES384" };

/* Members only a private (or symmetric) key has (RFC 7518 6.2.2, 6.3.2, 6.4.1). */
static const char *const private_members[] = { "d", "p", "q", "dp", "dq", "qi", "oth", "k" };

static void say(char *why, size_t whylen, const char *msg)
{
	if (why && whylen)
		snprintf(why, whylen, "%s", msg);
}

/* Strict base64url without padding into out (at most max bytes); 0 or -1. */
static int b64url(const char *s, size_t n, uint8_t *out, size_t max, size_t *outlen)
{
	*outlen = 0;
	if (!n)
		return 0;
	/* No b64_end: libsodium then fails on anything it did not consume. */
	if (sodium_base642bin(out, max, s, n, NULL, outlen, NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING))
		return -1;
	return 0;
}

/* A JSON string member decoded as base64url into out; 0, or -1 when absent,
 * not a string, not base64url or longer than max. */
static int b64_member(json_object *o, const char *k, uint8_t *out, size_t max, size_t *outlen)
{
	int bad = 0;
	const char *s = cv_json_member_string(o, k, &bad);
	if (!s || bad)
		return -1;
	size_t n = strlen(s);
	/* A string longer than max could ever decode to is refused before decoding. */
	if (n > (max / 3 + 1) * 4)
		return -1;
	return b64url(s, n, out, max, outlen);
}

static cv_rc parse_json(const char *text, size_t len, size_t depth, json_object **out)
{
	cv_json_limits_t lim;
	cv_pool_t pool;
	const char *err = NULL;

	cv_json_limits_default(&lim);
	lim.max_depth = depth;
	lim.max_string = CV_JWT_JWKS_MAX;
	lim.max_members = 1024;
	lim.max_nodes = 8192;
	cv_pool_init(&pool, ERR_POOL_CAP);
	cv_rc rc = cv_json_parse(text, len, &lim, &pool, out, &err);
	cv_pool_release(&pool);
	if (rc && rc != CV_E_NOMEM)
		rc = CV_E_INVALID;
	return rc;
}

/* Parses a JWKS: an object whose "keys" is an array of 1 to CV_JWT_KEYS_MAX objects. */
static cv_rc parse_jwks(const char *jwks, size_t len, json_object **root, json_object **keys, char *why,
			size_t whylen)
{
	json_object *k = NULL;
	cv_rc rc;

	*root = NULL;
	*keys = NULL;
	if (!jwks || !len) {
		say(why, whylen, "jwks is empty");
		return CV_E_INVALID;
	}
	if (len > CV_JWT_JWKS_MAX) {
		say(why, whylen, "jwks too large");
		return CV_E_INVALID;
	}
	rc = parse_json(jwks, len, 8, root);
	if (rc) {
		say(why, whylen, "jwks is not valid json");
		return rc;
	}
	if (!json_object_is_type(*root, json_type_object) || !json_object_object_get_ex(*root, "keys", &k) ||
	    !json_object_is_type(k, json_type_array)) {
		say(why, whylen, "jwks has no keys array");
		goto bad;
	}
	size_t n = json_object_array_length(k);
	if (!n) {
		say(why, whylen, "jwks has no keys");
		goto bad;
	}
	if (n > CV_JWT_KEYS_MAX) {
		say(why, whylen, "jwks has too many keys");
		goto bad;
	}
	for (size_t i = 0; i < n; i++) {
		if (!json_object_is_type(json_object_array_get_idx(k, i), json_type_object)) {
			say(why, whylen, "jwks key is not an object");
			goto bad;
		}
	}
	*keys = k;
	return CV_OK;
bad:
	json_object_put(*root);
	*root = NULL;
	return CV_E_INVALID;
}

static int has_private(json_object *key)
{
	for (size_t i = 0; i < sizeof private_members / sizeof private_members[0]; i++)
		if (json_object_object_get_ex(key, private_members[i], NULL))
			return 1;
	return 0;
}

/* What kind of key this is; -1 when kty (or an EC key's crv) is missing or not a string. */
static int key_kind(json_object *key)
{
	int bad = 0;
	const char *kty = cv_json_member_string(key, "kty", &bad);
	if (!kty || bad)
		return -1;
	if (!strcmp(kty, "RSA"))
		return KIND_RSA;
	if (strcmp(kty, "EC"))
		return KIND_OTHER;
	const char *crv = cv_json_member_string(key, "crv", &bad);
	if (!crv || bad)
		return -1;
	return strcmp(crv, "P-384") ? KIND_OTHER : KIND_P384;
}

/* 1 when the key's "use", "alg" and "key_ops" (each optional) allow verifying alg. */
static int key_allows(json_object *key, alg_t alg)
{
	json_object *ops = NULL;
	int bad = 0;
	const char *use = cv_json_member_string(key, "use", &bad);
	if (bad || (use && strcmp(use, "sig")))
		return 0;
	const char *a = cv_json_member_string(key, "alg", &bad);
	if (bad || (a && strcmp(a, alg_names[alg])))
		return 0;
	if (json_object_object_get_ex(key, "key_ops", &ops)) {
		if (!json_object_is_type(ops, json_type_array))
			return 0;
		size_t n = json_object_array_length(ops);
		for (size_t i = 0; i < n; i++) {
			json_object *op = json_object_array_get_idx(ops, i);
			if (json_object_is_type(op, json_type_string) && !strcmp(json_object_get_string(op), "verify"))
				return 1;
		}
		return 0;
	}
	return 1;
}

/* Imports an RSA JWK; *nlen gets the modulus' length in bytes (the signature's).
 * CV_E_INVALID for a malformed or too small or too large key. */
static cv_rc import_rsa(json_object *key, gnutls_pubkey_t *out, size_t *nlen)
{
	uint8_t n[RSA_N_MAX + 1], e[RSA_E_MAX];
	size_t nl = 0, el = 0, ni = 0, ei = 0;
	gnutls_pubkey_t pub = NULL;

	if (b64_member(key, "n", n, sizeof n, &nl) || b64_member(key, "e", e, sizeof e, &el))
		return CV_E_INVALID;
	while (ni < nl && !n[ni])
		ni++;
	while (ei < el && !e[ei])
		ei++;
	nl -= ni;
	el -= ei;
	if (!nl || nl > RSA_N_MAX || !el || !(e[ei + el - 1] & 1) || (el == 1 && e[ei] < 3))
		return CV_E_INVALID;
	unsigned bits = (unsigned)nl * 8;
	for (uint8_t top = n[ni]; !(top & 0x80); top <<= 1)
		bits--;
	if (bits < CV_JWT_RSA_MIN_BITS || bits > CV_JWT_RSA_MAX_BITS)
		return CV_E_INVALID;

	gnutls_datum_t m = { .data = n + ni, .size = (unsigned)nl };
	gnutls_datum_t ex = { .data = e + ei, .size = (unsigned)el };
	if (gnutls_pubkey_init(&pub) < 0)
		return CV_E_NOMEM;
	if (gnutls_pubkey_import_rsa_raw(pub, &m, &ex) < 0 || gnutls_pubkey_verify_params(pub) < 0) {
		gnutls_pubkey_deinit(pub);
		return CV_E_INVALID;
	}
	*out = pub;
	*nlen = nl;
	return CV_OK;
}

/* Imports a P-384 JWK: x and y of exactly 48 bytes, a point on the curve. */
static cv_rc import_p384(json_object *key, gnutls_pubkey_t *out)
{
	uint8_t x[EC_COORD + 1], y[EC_COORD + 1];
	size_t xl = 0, yl = 0;
	gnutls_pubkey_t pub = NULL;

	if (b64_member(key, "x", x, sizeof x, &xl) || b64_member(key, "y", y, sizeof y, &yl) ||
	    xl != EC_COORD || yl != EC_COORD)
		return CV_E_INVALID;
	gnutls_datum_t dx = { .data = x, .size = EC_COORD };
	gnutls_datum_t dy = { .data = y, .size = EC_COORD };
	if (gnutls_pubkey_init(&pub) < 0)
		return CV_E_NOMEM;
	if (gnutls_pubkey_import_ecc_raw(pub, GNUTLS_ECC_CURVE_SECP384R1, &dx, &dy) < 0 ||
	    gnutls_pubkey_verify_params(pub) < 0) {
		gnutls_pubkey_deinit(pub);
		return CV_E_INVALID;
	}
	*out = pub;
	return CV_OK;
}

/* Imports a key of the given kind; *siglen gets the length a signature must have. */
static cv_rc import_key(json_object *key, kind_t kind, gnutls_pubkey_t *out, size_t *siglen)
{
	*out = NULL;
	if (kind == KIND_RSA)
		return import_rsa(key, out, siglen);
	if (kind == KIND_P384) {
		*siglen = 2 * EC_COORD;
		return import_p384(key, out);
	}
	return CV_E_INVALID;
}

/* Checks sig over data with pub: 1 good, 0 bad, -1 out of memory. */
static int check_sig(gnutls_pubkey_t pub, alg_t alg, const uint8_t *data, size_t datalen, const uint8_t *sig,
		     size_t siglen)
{
	gnutls_datum_t d = { .data = (unsigned char *)data, .size = (unsigned)datalen };
	gnutls_datum_t der = { NULL, 0 };
	int ok;

	if (alg == ALG_RS384) {
		gnutls_datum_t s = { .data = (unsigned char *)sig, .size = (unsigned)siglen };
		return gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_RSA_SHA384, 0, &d, &s) >= 0;
	}
	/* JWS carries r||s (RFC 7518 3.4); GnuTLS wants the DER SEQUENCE of two
	 * INTEGERs. Leading zero bytes are dropped so the INTEGERs are minimal. */
	size_t ri = 0, si = EC_COORD;
	while (ri < EC_COORD - 1 && !sig[ri])
		ri++;
	while (si < 2 * EC_COORD - 1 && !sig[si])
		si++;
	gnutls_datum_t r = { .data = (unsigned char *)sig + ri, .size = (unsigned)(EC_COORD - ri) };
	gnutls_datum_t s = { .data = (unsigned char *)sig + si, .size = (unsigned)(2 * EC_COORD - si) };
	int e = gnutls_encode_rs_value(&der, &r, &s);
	if (e == GNUTLS_E_MEMORY_ERROR)
		return -1;
	if (e < 0)
		return 0;
	ok = gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_ECDSA_SHA384, 0, &d, &der) >= 0;
	gnutls_free(der.data);
	return ok;
}

cv_rc cv_jwt_verify(const char *token, const char *jwks, size_t jwks_len, json_object **claims, char *why,
		    size_t whylen)
{
	return cv_jwt_verify_ex(token, jwks, jwks_len, claims, NULL, why, whylen);
}

cv_rc cv_jwt_verify_ex(const char *token, const char *jwks, size_t jwks_len, json_object **claims, int *no_key,
		       char *why, size_t whylen)
{
	uint8_t *buf = NULL;
	json_object *header = NULL, *root = NULL, *keys = NULL, *payload = NULL;
	gnutls_pubkey_t pub = NULL;
	size_t hl = 0, pl = 0, sl = 0;
	int verified = 0, tried = 0;
	alg_t alg;
	cv_rc rc = CV_E_INVALID;

	if (claims)
		*claims = NULL;
	if (no_key)
		*no_key = 0;
	say(why, whylen, "");
	if (!token || !claims) {
		say(why, whylen, "no token");
		return CV_E_INVALID;
	}
	size_t n = strnlen(token, CV_JWT_TOKEN_MAX + 1);
	if (n > CV_JWT_TOKEN_MAX) {
		say(why, whylen, "token too long");
		return CV_E_INVALID;
	}
	const char *d1 = memchr(token, '.', n);
	const char *d2 = d1 ? memchr(d1 + 1, '.', n - (size_t)(d1 + 1 - token)) : NULL;
	if (!d2 || memchr(d2 + 1, '.', n - (size_t)(d2 + 1 - token))) {
		say(why, whylen, "token is not header.payload.signature");
		return CV_E_INVALID;
	}
	size_t h64 = (size_t)(d1 - token), p64 = (size_t)(d2 - d1 - 1), s64 = n - (size_t)(d2 + 1 - token);
	if (!h64 || !p64) {
		say(why, whylen, "token has an empty header or payload");
		return CV_E_INVALID;
	}
	/* Decoded, the three parts together are shorter than the token. */
	buf = malloc(n);
	if (!buf)
		return CV_E_NOMEM;
	uint8_t *hdr = buf;
	if (b64url(token, h64, hdr, n, &hl)) {
		say(why, whylen, "header is not base64url");
		goto out;
	}
	uint8_t *pay = hdr + hl;
	if (b64url(d1 + 1, p64, pay, n - hl, &pl)) {
		say(why, whylen, "payload is not base64url");
		goto out;
	}
	uint8_t *sig = pay + pl;

	rc = parse_json((const char *)hdr, hl, 4, &header);
	if (rc) {
		say(why, whylen, "header is not valid json");
		goto out;
	}
	rc = CV_E_INVALID;
	if (!json_object_is_type(header, json_type_object)) {
		say(why, whylen, "header is not an object");
		goto out;
	}
	int bad = 0;
	const char *a = cv_json_member_string(header, "alg", &bad);
	if (!a || bad) {
		say(why, whylen, "header has no alg");
		goto out;
	}
	const char *kid = cv_json_member_string(header, "kid", &bad);
	if (bad) {
		say(why, whylen, "header kid is not a string");
		goto out;
	}
	rc = CV_E_UNAUTH;
	if (!strcmp(a, "RS384")) {
		alg = ALG_RS384;
	} else if (!strcmp(a, "ES384")) {
		alg = ALG_ES384;
	} else {
		say(why, whylen, "alg not accepted");
		goto out;
	}
	if (json_object_object_get_ex(header, "crit", NULL)) {
		say(why, whylen, "crit header not supported");
		goto out;
	}
	if (b64url(d2 + 1, s64, sig, n - hl - pl, &sl) || !sl) {
		say(why, whylen, "signature is not base64url");
		rc = CV_E_INVALID;
		goto out;
	}

	rc = parse_jwks(jwks, jwks_len, &root, &keys, why, whylen);
	if (rc)
		goto out;
	kind_t want = alg == ALG_RS384 ? KIND_RSA : KIND_P384;
	size_t nkeys = json_object_array_length(keys);
	for (size_t i = 0; i < nkeys && !verified; i++) {
		json_object *key = json_object_array_get_idx(keys, i);
		size_t siglen = 0;
		if (kid) {
			int kbad = 0;
			const char *k = cv_json_member_string(key, "kid", &kbad);
			if (!k || kbad || strcmp(k, kid))
				continue;
		}
		if (key_kind(key) != (int)want || !key_allows(key, alg) || has_private(key))
			continue;
		rc = import_key(key, want, &pub, &siglen);
		if (rc == CV_E_INVALID)
			continue;
		if (rc)
			goto out;
		tried = 1;
		if (sl == siglen) {
			int r = check_sig(pub, alg, (const uint8_t *)token, (size_t)(d2 - token), sig, sl);
			if (r < 0) {
				rc = CV_E_NOMEM;
				goto out;
			}
			verified = r;
		}
		gnutls_pubkey_deinit(pub);
		pub = NULL;
	}
	if (!verified) {
		say(why, whylen, tried ? "bad signature" : "no usable key");
		if (no_key)
			*no_key = !tried;
		rc = CV_E_UNAUTH;
		goto out;
	}

	rc = parse_json((const char *)pay, pl, 16, &payload);
	if (rc) {
		say(why, whylen, "payload is not valid json");
		goto out;
	}
	if (!json_object_is_type(payload, json_type_object)) {
		say(why, whylen, "payload is not an object");
		rc = CV_E_INVALID;
		goto out;
	}
	*claims = payload;
	payload = NULL;
	rc = CV_OK;
out:
	if (pub)
		gnutls_pubkey_deinit(pub);
	json_object_put(payload);
	json_object_put(root);
	json_object_put(header);
	free(buf);
	return rc;
}

cv_rc cv_jwt_jwks_check(const char *jwks, size_t len, char *why, size_t whylen)
{
	json_object *root = NULL, *keys = NULL;
	gnutls_pubkey_t pub = NULL;
	int usable = 0;
	cv_rc rc;

	say(why, whylen, "");
	rc = parse_jwks(jwks, len, &root, &keys, why, whylen);
	if (rc)
		return rc;
	size_t n = json_object_array_length(keys);
	for (size_t i = 0; i < n; i++) {
		json_object *key = json_object_array_get_idx(keys, i);
		size_t siglen = 0;
		if (has_private(key)) {
			say(why, whylen, "jwks holds a private key");
			rc = CV_E_INVALID;
			goto out;
		}
		int kind = key_kind(key);
		if (kind < 0) {
			say(why, whylen, "jwks key has no kty or crv");
			rc = CV_E_INVALID;
			goto out;
		}
		if (kind == KIND_OTHER)
			continue;
		rc = import_key(key, (kind_t)kind, &pub, &siglen);
		if (rc) {
			say(why, whylen, kind == KIND_RSA ? "jwks rsa key is malformed or under 2048 bits"
							  : "jwks p-384 key is malformed");
			goto out;
		}
		gnutls_pubkey_deinit(pub);
		pub = NULL;
		if (key_allows(key, kind == KIND_RSA ? ALG_RS384 : ALG_ES384))
			usable = 1;
	}
	if (!usable) {
		say(why, whylen, "jwks has no rs384 or es384 signing key");
		rc = CV_E_INVALID;
	}
out:
	if (pub)
		gnutls_pubkey_deinit(pub);
	json_object_put(root);
	return rc;
}
