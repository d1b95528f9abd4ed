/*
 * idkey.c - the OpenID Connect id-token signing key (see idkey.h).
 *
 * GnuTLS generates, imports, exports and signs; libsodium hashes (the
 * thumbprint), encodes base64url (through cv_crypto_b64url_encode) and wipes;
 * json-c builds the record body and the JWKS. Everything derived from the
 * public key (kid, the JWS header's base64url, the JWKS text) is computed
 * once at load, so signing only encodes the claims and signs.
 */
#include "auth/idkey.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <json-c/json.h>
#include <sodium.h>

#include "auth/record.h"
#include "core/pool.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "model/json.h"

#define KEY_TYPE "~Key"
#define KEY_ID "oidc-rs256"
#define KEY_PURPOSE "oidc-key"   /* the additional data of the sealed DER */
#define KID_LEN 43               /* base64url of 32 bytes, no padding */
#define TEXT_CAP 16384           /* cap of the small texts built here (header, thumbprint, JWKS) */
#define DER_CAP 8192             /* more than any DER a store token (4 KiB of text) can carry */
#define SEALED_CAP 16384         /* the sealed DER as base64url text */
#define LOAD_ATTEMPTS 2          /* read-or-create rounds before giving up on a moving record */

struct cv_idkey {
	gnutls_privkey_t priv;   /* the private key; only read after load */
	char kid[KID_LEN + 1];   /* RFC 7638 thumbprint */
	char *header;            /* base64url of the JWS header, NUL-terminated */
	size_t header_len;       /* its length */
	char *jwks;              /* the public JWKS text, NUL-terminated */
	size_t jwks_len;         /* its length */
};

/* Wipes and frees a buffer that held key material. */
static void secret_release(cv_buf_t *b)
{
	if (b->data)
		sodium_memzero(b->data, b->alloc);
	cv_buf_release(b);
}

/* ----------------------------------------------------------- key material */

/* Imports a PKCS#1 (or PKCS#8) DER RSA private key of CV_IDKEY_BITS or more,
 * after checking its parameters are consistent. */
static cv_rc import_der(const cv_buf_t *der, gnutls_privkey_t *out)
{
	gnutls_x509_privkey_t x = NULL;
	gnutls_privkey_t p = NULL;
	gnutls_datum_t d = { .data = (unsigned char *)der->data, .size = (unsigned)der->len };
	unsigned bits = 0;

	*out = NULL;
	if (gnutls_x509_privkey_init(&x) < 0)
		return CV_E_NOMEM;
	if (gnutls_x509_privkey_import(x, &d, GNUTLS_X509_FMT_DER) < 0 ||
	    gnutls_x509_privkey_get_pk_algorithm2(x, &bits) != GNUTLS_PK_RSA || bits < CV_IDKEY_BITS ||
	    gnutls_x509_privkey_verify_params(x) < 0) {
		gnutls_x509_privkey_deinit(x);
		return CV_E_CRYPTO;
	}
	if (gnutls_privkey_init(&p) < 0) {
		gnutls_x509_privkey_deinit(x);
		return CV_E_NOMEM;
	}
	/* AUTO_RELEASE: p owns x from here on. */
	if (gnutls_privkey_import_x509(p, x, GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE) < 0) {
		gnutls_x509_privkey_deinit(x);
		gnutls_privkey_deinit(p);
		return CV_E_CRYPTO;
	}
	*out = p;
	return CV_OK;
}

/* Appends p's PKCS#1 DER to der (wipe it after use). */
static cv_rc export_der(gnutls_privkey_t p, cv_buf_t *der)
{
	gnutls_x509_privkey_t x = NULL;
	gnutls_datum_t d = { NULL, 0 };

	if (gnutls_privkey_export_x509(p, &x) < 0)
		return CV_E_CRYPTO;
	int e = gnutls_x509_privkey_export2(x, GNUTLS_X509_FMT_DER, &d);
	gnutls_x509_privkey_deinit(x);
	if (e < 0)
		return e == GNUTLS_E_MEMORY_ERROR ? CV_E_NOMEM : CV_E_CRYPTO;
	cv_rc rc = cv_buf_append(der, d.data, d.size);
	sodium_memzero(d.data, d.size);
	gnutls_free(d.data);
	return rc;
}

/* ----------------------------------------------------------- the record */

/* Reads the stored key. CV_E_NOTFOUND when there is none; *seen gets the
 * record's current version (0 when there is no record, the tombstone's
 * version when it was deleted), the version a new key must be written over. */
static cv_rc read_key(cv_store_t *s, gnutls_privkey_t *out, int64_t *seen)
{
	cv_buf_t der;
	json_object *o = NULL;

	*out = NULL;
	cv_buf_init(&der, DER_CAP);
	cv_rc rc = cv_record_read(s, KEY_TYPE, KEY_ID, &o, seen); /* *seen: also a tombstone's version */
	if (!rc && !o)
		rc = CV_E_NOTFOUND;
	if (rc)
		goto out;
	int bad = 0;
	const char *alg = o ? cv_json_member_string(o, "alg", &bad) : NULL;
	const char *sealed = o && !bad ? cv_json_member_string(o, "key", &bad) : NULL;
	if (!alg || !sealed || bad || strcmp(alg, "RS256")) {
		rc = CV_E_INTERNAL;
		goto out;
	}
	rc = cv_store_token_open(s, KEY_PURPOSE, sealed, &der);
	if (rc == CV_E_INVALID)
		rc = CV_E_CRYPTO; /* altered, moved, or sealed under another store's key */
	if (!rc)
		rc = import_der(&der, out);
out:
	json_object_put(o);
	secret_release(&der);
	return rc;
}

/* The record body: {"kty":"RSA","alg":"RS256","key":sealed}. */
static cv_rc record_body(const char *sealed, cv_buf_t *out)
{
	json_object *o = json_object_new_object();
	if (!o)
		return CV_E_NOMEM;
	json_object_object_add(o, "kty", json_object_new_string("RSA"));
	json_object_object_add(o, "alg", json_object_new_string("RS256"));
	json_object_object_add(o, "key", json_object_new_string(sealed));
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	cv_rc rc = text ? cv_buf_puts(out, text) : CV_E_NOMEM;
	json_object_put(o);
	return rc;
}

/* Generates a key and writes it over version `expect` (0: no record yet).
 * CV_E_CONFLICT when another writer got there first. */
static cv_rc create_key(cv_store_t *s, int64_t expect, gnutls_privkey_t *out)
{
	gnutls_privkey_t p = NULL;
	cv_buf_t der, sealed, body;
	cv_rc rc = CV_E_CRYPTO;

	*out = NULL;
	cv_buf_init(&der, DER_CAP);
	cv_buf_init(&sealed, SEALED_CAP);
	cv_buf_init(&body, SEALED_CAP + 256);
	if (gnutls_privkey_init(&p) < 0) {
		rc = CV_E_NOMEM;
		goto out;
	}
	if (gnutls_privkey_generate(p, GNUTLS_PK_RSA, CV_IDKEY_BITS, 0) < 0)
		goto out;
	rc = export_der(p, &der);
	if (!rc)
		rc = cv_store_token_seal(s, KEY_PURPOSE, der.data, der.len, &sealed);
	if (!rc)
		rc = record_body(sealed.data, &body);
	if (rc)
		goto out;
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = KEY_TYPE, .id = KEY_ID,
			       .expect_version = expect, .updated_us = cv_time_now_us(),
			       .body = (const uint8_t *)body.data, .body_len = body.len };
	rc = cv_store_write_sync(s, &w);
	if (!rc) {
		*out = p;
		p = NULL;
	}
out:
	if (p)
		gnutls_privkey_deinit(p);
	secret_release(&der);
	cv_buf_release(&sealed);
	cv_buf_release(&body);
	return rc;
}

/* ----------------------------------------------------------- public parts */

/* n or e of the public key: base64url of the unsigned big-endian integer
 * without leading zero bytes. */
static cv_rc b64_uint(const gnutls_datum_t *d, cv_buf_t *out)
{
	size_t i = 0;
	/* GnuTLS may prefix a 0x00 to keep the integer positive. */
	while (i + 1 < d->size && !d->data[i])
		i++;
	if (!d->size)
		return CV_E_CRYPTO;
	return cv_crypto_b64url_encode(d->data + i, d->size - i, out);
}

/* kid: base64url(SHA-256(the RFC 7638 canonical JWK: the required members
 * e, kty, n in lexicographic order, no whitespace)). */
static cv_rc thumbprint(const char *n, const char *e, char kid[KID_LEN + 1])
{
	uint8_t h[32];
	cv_buf_t text, b64;
	cv_buf_init(&text, TEXT_CAP);
	cv_buf_init(&b64, KID_LEN + 1);
	cv_rc rc = cv_buf_printf(&text, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", e, n);
	if (!rc) {
		cv_crypto_sha256(text.data, text.len, h);
		rc = cv_crypto_b64url_encode(h, sizeof h, &b64);
	}
	if (!rc && b64.len != KID_LEN)
		rc = CV_E_INTERNAL;
	if (!rc)
		memcpy(kid, b64.data, KID_LEN + 1);
	cv_buf_release(&text);
	cv_buf_release(&b64);
	return rc;
}

/* The JWKS text, members in the order idkey.h shows. */
static cv_rc jwks_text(const char *kid, const char *n, const char *e, cv_buf_t *out)
{
	json_object *root = json_object_new_object(), *keys = json_object_new_array(),
		    *key = json_object_new_object();
	cv_rc rc = CV_E_NOMEM;
	if (!root || !keys || !key) {
		json_object_put(root);
		json_object_put(keys);
		json_object_put(key);
		return rc;
	}
	json_object_object_add(key, "kty", json_object_new_string("RSA"));
	json_object_object_add(key, "use", json_object_new_string("sig"));
	json_object_object_add(key, "alg", json_object_new_string("RS256"));
	json_object_object_add(key, "kid", json_object_new_string(kid));
	json_object_object_add(key, "n", json_object_new_string(n));
	json_object_object_add(key, "e", json_object_new_string(e));
	json_object_array_add(keys, key);
	json_object_object_add(root, "keys", keys);
	const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text)
		rc = cv_buf_puts(out, text);
	json_object_put(root);
	return rc;
}

/* The JWS header, base64url-encoded, into out. */
static cv_rc header_text(const char *kid, cv_buf_t *out)
{
	cv_buf_t h;
	cv_buf_init(&h, TEXT_CAP);
	cv_rc rc = cv_buf_printf(&h, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", kid);
	if (!rc)
		rc = cv_crypto_b64url_encode(h.data, h.len, out);
	cv_buf_release(&h);
	return rc;
}

/* Computes kid, header and JWKS from k->priv's public half. */
static cv_rc describe(cv_idkey_t *k)
{
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t m = { NULL, 0 }, e = { NULL, 0 };
	cv_buf_t n64, e64, hdr, jwks;
	cv_rc rc = CV_E_CRYPTO;

	cv_buf_init(&n64, TEXT_CAP);
	cv_buf_init(&e64, TEXT_CAP);
	cv_buf_init(&hdr, TEXT_CAP);
	cv_buf_init(&jwks, TEXT_CAP);
	if (gnutls_pubkey_init(&pub) < 0) {
		rc = CV_E_NOMEM;
		goto out;
	}
	if (gnutls_pubkey_import_privkey(pub, k->priv, 0, 0) < 0 ||
	    gnutls_pubkey_export_rsa_raw2(pub, &m, &e, GNUTLS_EXPORT_FLAG_NO_LZ) < 0)
		goto out;
	rc = b64_uint(&m, &n64);
	if (!rc)
		rc = b64_uint(&e, &e64);
	if (!rc)
		rc = thumbprint(n64.data, e64.data, k->kid);
	if (!rc)
		rc = header_text(k->kid, &hdr);
	if (!rc)
		rc = jwks_text(k->kid, n64.data, e64.data, &jwks);
	if (rc)
		goto out;
	k->header = cv_buf_take(&hdr, &k->header_len);
	k->jwks = cv_buf_take(&jwks, &k->jwks_len);
out:
	gnutls_free(m.data);
	gnutls_free(e.data);
	if (pub)
		gnutls_pubkey_deinit(pub);
	cv_buf_release(&n64);
	cv_buf_release(&e64);
	cv_buf_release(&hdr);
	cv_buf_release(&jwks);
	return rc;
}

/* ----------------------------------------------------------- API */

cv_rc cv_idkey_load(cv_store_t *s, cv_idkey_t **out)
{
	cv_idkey_t *k = calloc(1, sizeof *k);
	int64_t seen = 0;
	cv_rc rc = k ? CV_E_CONFLICT : CV_E_NOMEM;

	*out = NULL;
	/* Read; if there is no key, create one over the version seen. Losing
	 * that race (CV_E_CONFLICT) means another node just stored its key:
	 * read again and use that one. */
	for (int i = 0; k && i < LOAD_ATTEMPTS && rc == CV_E_CONFLICT; i++) {
		rc = read_key(s, &k->priv, &seen);
		if (rc == CV_E_NOTFOUND)
			rc = create_key(s, seen, &k->priv);
	}
	if (!rc)
		rc = describe(k);
	if (rc) {
		cv_idkey_free(k);
		return rc;
	}
	*out = k;
	return CV_OK;
}

void cv_idkey_free(cv_idkey_t *k)
{
	if (!k)
		return;
	if (k->priv)
		gnutls_privkey_deinit(k->priv);
	free(k->header);
	free(k->jwks);
	sodium_memzero(k, sizeof *k);
	free(k);
}

const char *cv_idkey_kid(const cv_idkey_t *k)
{
	return k->kid;
}

/* CV_OK when text (len bytes) is one strict JSON object. */
static cv_rc check_claims(const char *text, size_t len)
{
	cv_json_limits_t lim;
	cv_pool_t pool;
	json_object *o = NULL;
	const char *err = NULL;

	cv_json_limits_default(&lim);
	lim.max_depth = 16;
	lim.max_string = CV_IDKEY_CLAIMS_MAX;
	cv_pool_init(&pool, 4096);
	cv_rc rc = cv_json_parse(text, len, &lim, &pool, &o, &err);
	if (!rc && !json_object_is_type(o, json_type_object))
		rc = CV_E_INVALID;
	json_object_put(o);
	cv_pool_release(&pool);
	return rc == CV_E_NOMEM ? rc : rc ? CV_E_INVALID : CV_OK;
}

cv_rc cv_idkey_sign(cv_idkey_t *k, const char *claims_json, cv_buf_t *out)
{
	gnutls_datum_t sig = { NULL, 0 };
	cv_rc rc;

	cv_buf_reset(out);
	if (!k || !claims_json)
		return CV_E_INVALID;
	size_t len = strnlen(claims_json, CV_IDKEY_CLAIMS_MAX + 1);
	if (len > CV_IDKEY_CLAIMS_MAX)
		return CV_E_LIMIT;
	rc = check_claims(claims_json, len);
	if (!rc)
		rc = cv_buf_append(out, k->header, k->header_len);
	if (!rc)
		rc = cv_buf_puts(out, ".");
	if (!rc)
		rc = cv_crypto_b64url_encode(claims_json, len, out);
	if (rc)
		goto out;
	/* The signing input is header.payload, as it stands in out now. */
	gnutls_datum_t input = { .data = (unsigned char *)out->data, .size = (unsigned)out->len };
	int e = gnutls_privkey_sign_data(k->priv, GNUTLS_DIG_SHA256, 0, &input, &sig);
	if (e < 0) {
		rc = e == GNUTLS_E_MEMORY_ERROR ? CV_E_NOMEM : CV_E_CRYPTO;
		goto out;
	}
	rc = cv_buf_puts(out, ".");
	if (!rc)
		rc = cv_crypto_b64url_encode(sig.data, sig.size, out);
out:
	gnutls_free(sig.data);
	if (rc)
		cv_buf_reset(out);
	return rc;
}

cv_rc cv_idkey_jwks(const cv_idkey_t *k, cv_buf_t *out)
{
	cv_buf_reset(out);
	return cv_buf_append(out, k->jwks, k->jwks_len);
}
