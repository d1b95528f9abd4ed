/*
 * test_idkey.c - the OpenID Connect signing key: created once and found again
 * (also when two loaders race), its JWKS and RFC 7638 kid recomputed here,
 * tokens that verify with a key built from the JWKS alone and stop verifying
 * when a byte changes, claims that are refused, a stored key that does not
 * open, no private key material in the database files, and signing from four
 * threads at once. Runs on SQLite, and on PostgreSQL too with CV_TEST_PG_BASE.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <json-c/json.h>
#include <sodium.h>

#include "../teststore.h"
#include "auth/idkey.h"

static const char *pg_base;

typedef cv_test_store_t fx_t; /* dir, url, master, s */

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	cv_test_store_open(f, "cv_unit_idkey", pg_base);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	cv_test_store_close(f);
	free(f);
	return 0;
}

/* ------------------------------------------------------------- helpers */

/* base64url (no padding) of n bytes; free() it. */
static char *b64(const void *p, size_t n)
{
	size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *s = malloc(cap);
	assert_non_null(s);
	sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return s;
}

/* Decodes n characters of base64url (strict, no padding) into out; the length. */
static size_t unb64(const char *s, size_t n, uint8_t *out, size_t max)
{
	size_t len = 0;
	assert_int_equal(sodium_base642bin(out, max, s, n, NULL, &len, NULL,
					   sodium_base64_VARIANT_URLSAFE_NO_PADDING), 0);
	return len;
}

static const char *member(json_object *o, const char *k)
{
	json_object *v = NULL;
	assert_true(json_object_object_get_ex(o, k, &v));
	assert_true(json_object_is_type(v, json_type_string));
	return json_object_get_string(v);
}

/* The JWKS of k, parsed; its one key in *key. */
static json_object *jwks_of(cv_idkey_t *k, json_object **key)
{
	cv_buf_t b;
	json_object *keys = NULL;
	cv_buf_init(&b, 4096);
	assert_int_equal(cv_idkey_jwks(k, &b), CV_OK);
	json_object *root = json_tokener_parse(b.data);
	assert_non_null(root);
	assert_true(json_object_object_get_ex(root, "keys", &keys));
	assert_int_equal(json_object_array_length(keys), 1);
	*key = json_object_array_get_idx(keys, 0);
	assert_int_equal(json_object_object_length(*key), 6);
	cv_buf_release(&b);
	return root;
}

/* A GnuTLS public key built from nothing but the JWKS's n and e. */
static gnutls_pubkey_t pubkey_of(cv_idkey_t *k)
{
	uint8_t n[1024], e[16];
	json_object *key;
	json_object *root = jwks_of(k, &key);
	const char *n64 = member(key, "n"), *e64 = member(key, "e");
	gnutls_datum_t m = { .data = n, .size = (unsigned)unb64(n64, strlen(n64), n, sizeof n) };
	gnutls_datum_t x = { .data = e, .size = (unsigned)unb64(e64, strlen(e64), e, sizeof e) };
	gnutls_pubkey_t pub;
	assert_int_equal(gnutls_pubkey_init(&pub), 0);
	assert_int_equal(gnutls_pubkey_import_rsa_raw(pub, &m, &x), 0);
	json_object_put(root);
	return pub;
}

/* 1 when token verifies with pub as an RS256 JWS, 0 when it does not.
 * No cmocka assertion inside: signer threads call it. */
static int verifies(gnutls_pubkey_t pub, const char *token)
{
	uint8_t sig[1024];
	size_t sl = 0;
	const char *d2 = strrchr(token, '.');
	if (!d2 || sodium_base642bin(sig, sizeof sig, d2 + 1, strlen(d2 + 1), NULL, &sl, NULL,
				     sodium_base64_VARIANT_URLSAFE_NO_PADDING))
		return 0;
	gnutls_datum_t in = { .data = (unsigned char *)token, .size = (unsigned)(d2 - token) };
	gnutls_datum_t s = { .data = sig, .size = (unsigned)sl };
	return gnutls_pubkey_verify_data2(pub, GNUTLS_SIGN_RSA_SHA256, 0, &in, &s) >= 0;
}

/* Writes a ~Key record body directly, as a broken or foreign record would be. */
static void put_record(cv_store_t *s, const char *body)
{
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = "~Key", .id = "oidc-rs256",
			       .expect_version = 0, .body = (const uint8_t *)body, .body_len = strlen(body) };
	assert_int_equal(cv_store_write_sync(s, &w), CV_OK);
}

/* ------------------------------------------------------------- tests */

static void created_once_then_found(void **state)
{
	fx_t *f = *state;
	cv_idkey_t *k = NULL, *k2 = NULL;
	cv_pool_t pool;
	cv_store_version_t v;

	cv_idkey_free(NULL);
	cv_pool_init(&pool, 0);
	assert_int_equal(cv_store_read(f->s, "~Key", "oidc-rs256", 0, &pool, &v), CV_E_NOTFOUND);
	assert_int_equal(cv_idkey_load(f->s, &k), CV_OK);
	assert_int_equal(strlen(cv_idkey_kid(k)), 43);
	assert_int_equal(cv_store_read(f->s, "~Key", "oidc-rs256", 0, &pool, &v), CV_OK);
	assert_int_equal(v.version, 1);
	assert_non_null(strstr((const char *)v.body, "\"alg\":\"RS256\""));

	assert_int_equal(cv_idkey_load(f->s, &k2), CV_OK);
	assert_string_equal(cv_idkey_kid(k), cv_idkey_kid(k2));
	assert_int_equal(cv_store_read(f->s, "~Key", "oidc-rs256", 0, &pool, &v), CV_OK);
	assert_int_equal(v.version, 1); /* loading did not write */

	/* a token from one verifies with the JWKS of the other: the same key */
	cv_buf_t tok;
	cv_buf_init(&tok, 4096);
	assert_int_equal(cv_idkey_sign(k, "{\"sub\":\"x\"}", &tok), CV_OK);
	gnutls_pubkey_t pub = pubkey_of(k2);
	assert_true(verifies(pub, tok.data));
	gnutls_pubkey_deinit(pub);
	cv_buf_release(&tok);
	cv_idkey_free(k);
	cv_idkey_free(k2);
	cv_pool_release(&pool);
}

static void jwks_and_thumbprint(void **state)
{
	fx_t *f = *state;
	cv_idkey_t *k = NULL;
	json_object *key;
	uint8_t n[1024], e[16], h[32];
	char canon[2048];

	assert_int_equal(cv_idkey_load(f->s, &k), CV_OK);
	json_object *root = jwks_of(k, &key);
	assert_string_equal(member(key, "kty"), "RSA");
	assert_string_equal(member(key, "use"), "sig");
	assert_string_equal(member(key, "alg"), "RS256");
	assert_string_equal(member(key, "kid"), cv_idkey_kid(k));
	const char *n64 = member(key, "n"), *e64 = member(key, "e");
	/* 2048 bits: 256 bytes, the top bit set, no leading zero byte */
	assert_int_equal(unb64(n64, strlen(n64), n, sizeof n), 256);
	assert_true(n[0] & 0x80);
	assert_string_equal(e64, "AQAB"); /* 65537 as 3 bytes */
	assert_int_equal(unb64(e64, strlen(e64), e, sizeof e), 3);

	/* RFC 7638 3.1: the required members in lexicographic order, no whitespace */
	snprintf(canon, sizeof canon, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", e64, n64);
	crypto_hash_sha256(h, (const unsigned char *)canon, strlen(canon));
	char *kid = b64(h, sizeof h);
	assert_string_equal(kid, cv_idkey_kid(k));
	free(kid);

	/* no private member ever */
	const char *priv[] = { "d", "p", "q", "dp", "dq", "qi" };
	for (size_t i = 0; i < sizeof priv / sizeof priv[0]; i++)
		assert_false(json_object_object_get_ex(key, priv[i], NULL));
	json_object_put(root);

	/* an out buffer too small is an error, not a truncation */
	cv_buf_t small;
	cv_buf_init(&small, 64);
	assert_int_equal(cv_idkey_jwks(k, &small), CV_E_LIMIT);
	cv_buf_release(&small);
	cv_idkey_free(k);
}

static void signs_and_verifies(void **state)
{
	fx_t *f = *state;
	cv_idkey_t *k = NULL;
	cv_buf_t tok;
	uint8_t buf[4096];
	char want[256];
	const char *claims = "{\"iss\":\"https://cv.example\",\"sub\":\"Patient/1\",\"aud\":\"app\","
			     "\"exp\":1700000300,\"iat\":1700000000,\"name\":\"Zo\\u00eb /\"}";

	assert_int_equal(cv_idkey_load(f->s, &k), CV_OK);
	cv_buf_init(&tok, 8192);
	assert_int_equal(cv_idkey_sign(k, claims, &tok), CV_OK);
	assert_int_equal(strlen(tok.data), tok.len);

	const char *d1 = strchr(tok.data, '.'), *d2 = strrchr(tok.data, '.');
	assert_non_null(d1);
	assert_true(d2 > d1);
	assert_null(memchr(d1 + 1, '.', (size_t)(d2 - d1 - 1)));
	size_t hl = unb64(tok.data, (size_t)(d1 - tok.data), buf, sizeof buf);
	snprintf(want, sizeof want, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", cv_idkey_kid(k));
	assert_int_equal(hl, strlen(want));
	assert_memory_equal(buf, want, hl);
	/* the payload is the claims, byte for byte */
	size_t pl = unb64(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof buf);
	assert_int_equal(pl, strlen(claims));
	assert_memory_equal(buf, claims, pl);
	/* RFC 7518 3.3: the signature is as long as the modulus */
	assert_int_equal(unb64(d2 + 1, strlen(d2 + 1), buf, sizeof buf), 256);

	gnutls_pubkey_t pub = pubkey_of(k);
	assert_true(verifies(pub, tok.data));

	/* one byte of the payload changed: no longer verifies */
	char *bad = strdup(tok.data);
	assert_non_null(bad);
	size_t at = (size_t)(d1 - tok.data) + 5;
	bad[at] = bad[at] == 'A' ? 'B' : 'A';
	assert_false(verifies(pub, bad));
	/* nor with the payload's decoded byte flipped and re-encoded */
	pl = unb64(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof buf);
	buf[pl / 2] ^= 0x01;
	char *p64 = b64(buf, pl), *h64 = strndup(tok.data, (size_t)(d1 - tok.data));
	snprintf(bad, tok.len + 1, "%s.%s%s", h64, p64, d2);
	assert_false(verifies(pub, bad));
	free(p64);
	free(h64);
	free(bad);
	gnutls_pubkey_deinit(pub);

	/* two signatures of the same claims are both good (PKCS#1 v1.5 is deterministic) */
	cv_buf_t again;
	cv_buf_init(&again, 8192);
	assert_int_equal(cv_idkey_sign(k, claims, &again), CV_OK);
	assert_string_equal(again.data, tok.data);
	cv_buf_release(&again);
	cv_buf_release(&tok);
	cv_idkey_free(k);
}

static void refuses_bad_claims(void **state)
{
	fx_t *f = *state;
	cv_idkey_t *k = NULL;
	cv_buf_t tok;

	assert_int_equal(cv_idkey_load(f->s, &k), CV_OK);
	cv_buf_init(&tok, 8192);
	assert_int_equal(cv_idkey_sign(k, NULL, &tok), CV_E_INVALID);
	const char *bad[] = { "", "not json", "[1,2]", "\"s\"", "{\"a\":1,\"a\":2}", "{\"a\":1} {}",
			      "{\"a\":\"\xff\"}", "{\"a\":1" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(cv_idkey_sign(k, bad[i], &tok), CV_E_INVALID);
		assert_int_equal(tok.len, 0);
	}
	/* over the bound */
	char *big = malloc(CV_IDKEY_CLAIMS_MAX + 16);
	assert_non_null(big);
	memset(big, ' ', CV_IDKEY_CLAIMS_MAX + 15);
	memcpy(big, "{\"a\":1}", 7);
	big[CV_IDKEY_CLAIMS_MAX + 15] = '\0';
	assert_int_equal(cv_idkey_sign(k, big, &tok), CV_E_LIMIT);
	free(big);
	/* a token that does not fit out's cap */
	cv_buf_t small;
	cv_buf_init(&small, 100);
	assert_int_equal(cv_idkey_sign(k, "{\"a\":1}", &small), CV_E_LIMIT);
	assert_int_equal(small.len, 0);
	cv_buf_release(&small);
	cv_buf_release(&tok);
	cv_idkey_free(k);
}

static void broken_record_is_refused(void **state)
{
	fx_t *f = *state;
	cv_idkey_t *k = (cv_idkey_t *)&k; /* must be reset to NULL on failure */
	put_record(f->s, "{\"kty\":\"RSA\",\"alg\":\"RS256\",\"key\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}");
	assert_int_equal(cv_idkey_load(f->s, &k), CV_E_CRYPTO);
	assert_null(k);
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = "~Key", .id = "oidc-rs256",
			       .expect_version = 1, .body = (const uint8_t *)"{\"alg\":\"HS256\",\"key\":\"x\"}",
			       .body_len = strlen("{\"alg\":\"HS256\",\"key\":\"x\"}") };
	assert_int_equal(cv_store_write_sync(f->s, &w), CV_OK);
	assert_int_equal(cv_idkey_load(f->s, &k), CV_E_INTERNAL);
	assert_null(k);
}

/* Loads into a fresh store from two threads at once (on PostgreSQL, from two
 * store handles, as two nodes would): one key wins, both use it. */
typedef struct racer {
	cv_store_t *s;
	pthread_barrier_t *go;
	cv_rc rc;
	char kid[64];
} racer_t;

static void *race(void *arg)
{
	racer_t *r = arg;
	cv_idkey_t *k = NULL;
	pthread_barrier_wait(r->go);
	r->rc = cv_idkey_load(r->s, &k);
	if (!r->rc)
		snprintf(r->kid, sizeof r->kid, "%s", cv_idkey_kid(k));
	cv_idkey_free(k);
	return NULL;
}

static void racing_loads_agree(void **state)
{
	fx_t *f = *state;
	pthread_barrier_t go;
	pthread_t t[2];
	racer_t r[2];
	cv_pool_t pool;
	cv_store_version_t v;

	cv_store_t *other = f->s;
	char err[256];
	/* On PostgreSQL the second loader is a second node: its own store handle. */
	if (f->url[0])
		assert_int_equal(cv_store_open(f->dir, f->url, 2, f->master, &other, err, sizeof err), CV_OK);
	pthread_barrier_init(&go, NULL, 2);
	for (int i = 0; i < 2; i++) {
		r[i] = (racer_t){ .s = i ? other : f->s, .go = &go };
		assert_int_equal(pthread_create(&t[i], NULL, race, &r[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&go);
	if (other != f->s)
		cv_store_close(other);
	assert_int_equal(r[0].rc, CV_OK);
	assert_int_equal(r[1].rc, CV_OK);
	assert_string_equal(r[0].kid, r[1].kid);
	cv_pool_init(&pool, 0);
	assert_int_equal(cv_store_read(f->s, "~Key", "oidc-rs256", 0, &pool, &v), CV_OK);
	assert_int_equal(v.version, 1); /* exactly one key was ever stored */
	cv_pool_release(&pool);
}

/* Searches a file for n bytes (private key material must never be on disk). */
static int file_contains(const char *path, const void *needle, size_t n)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return 0;
	size_t cap = 1 << 20, len = 0, r;
	char *buf = malloc(cap);
	int found = 0;
	assert_non_null(buf);
	while (!found && (r = fread(buf + len, 1, cap - len, fp)) > 0) {
		len += r;
		found = memmem(buf, len, needle, n) != NULL;
		if (len > n) {
			memmove(buf, buf + len - n, n);
			len = n;
		}
	}
	free(buf);
	fclose(fp);
	return found;
}

static int db_contains(const fx_t *f, const void *needle, size_t n)
{
	const char *files[] = { "store.db", "store.db-wal", "store.db-shm" };
	char path[128];
	int found = 0;
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", f->dir, files[i]);
		found |= file_contains(path, needle, n);
	}
	return found;
}

/* The stored private key's DER, recovered the way idkey.c stores it. */
static void stored_der(cv_store_t *s, cv_buf_t *der, char **sealed)
{
	cv_pool_t pool;
	cv_store_version_t v;
	json_object *o = NULL;
	cv_pool_init(&pool, 0);
	assert_int_equal(cv_store_read(s, "~Key", "oidc-rs256", 0, &pool, &v), CV_OK);
	o = json_tokener_parse((const char *)v.body);
	assert_non_null(o);
	*sealed = strdup(member(o, "key"));
	assert_int_equal(cv_store_token_open(s, "oidc-key", *sealed, der), CV_OK);
	json_object_put(o);
	cv_pool_release(&pool);
}

/* Strips leading zero bytes from a GnuTLS integer. */
static void unlz(gnutls_datum_t *d)
{
	while (d->size > 1 && !d->data[0]) {
		memmove(d->data, d->data + 1, d->size - 1);
		d->size--;
	}
}

static void private_key_not_on_disk(void **state)
{
	fx_t *f = *state;
	cv_idkey_t *k = NULL;
	cv_buf_t der;
	char *sealed = NULL;
	gnutls_x509_privkey_t x;
	gnutls_datum_t m, e, d, p, q, u, e1, e2;

	if (f->url[0])
		skip(); /* the embedded store's files are what this looks at */
	assert_int_equal(cv_idkey_load(f->s, &k), CV_OK);
	cv_buf_init(&der, 8192);
	stored_der(f->s, &der, &sealed);
	assert_int_equal(gnutls_x509_privkey_init(&x), 0);
	gnutls_datum_t dd = { .data = (unsigned char *)der.data, .size = (unsigned)der.len };
	assert_int_equal(gnutls_x509_privkey_import(x, &dd, GNUTLS_X509_FMT_DER), 0);
	assert_int_equal(gnutls_x509_privkey_export_rsa_raw2(x, &m, &e, &d, &p, &q, &u, &e1, &e2), 0);
	unlz(&d);
	unlz(&p);
	unlz(&q);
	unlz(&m);
	/* the stored key is the one in use: its modulus is the JWKS's */
	json_object *key;
	json_object *root = jwks_of(k, &key);
	char *n64 = b64(m.data, m.size);
	assert_string_equal(n64, member(key, "n"));
	json_object_put(root);
	char *d64 = b64(d.data, d.size);

	cv_store_close(f->s);
	f->s = NULL;
	assert_true(db_contains(f, "SQLite format 3", 15)); /* the search itself works */
	assert_false(db_contains(f, "PRIVATE KEY", 11));
	assert_false(db_contains(f, d.data, d.size));
	assert_false(db_contains(f, p.data, p.size));
	assert_false(db_contains(f, q.data, q.size));
	assert_false(db_contains(f, d64, strlen(d64)));
	assert_false(db_contains(f, der.data, der.len));
	assert_false(db_contains(f, sealed, 64)); /* the record around it is sealed too */

	char err[256];
	assert_int_equal(cv_store_open(f->dir, NULL, 1, f->master, &f->s, err, sizeof err), CV_OK);
	free(n64);
	free(d64);
	free(sealed);
	gnutls_datum_t *all[] = { &m, &e, &d, &p, &q, &u, &e1, &e2 };
	for (size_t i = 0; i < 8; i++) {
		sodium_memzero(all[i]->data, all[i]->size);
		gnutls_free(all[i]->data);
	}
	gnutls_x509_privkey_deinit(x);
	sodium_memzero(der.data, der.len);
	cv_buf_release(&der);
	cv_idkey_free(k);
}

/* Four threads sign at once with one key; every token verifies. */
typedef struct signer {
	cv_idkey_t *k;
	gnutls_pubkey_t pub;
	pthread_barrier_t *go;
	int id, ok;
} signer_t;

#define SIGNS_PER_THREAD 25

static void *sign_many(void *arg)
{
	signer_t *t = arg;
	cv_buf_t tok;
	char claims[128];
	cv_buf_init(&tok, 8192);
	pthread_barrier_wait(t->go);
	for (int i = 0; i < SIGNS_PER_THREAD; i++) {
		snprintf(claims, sizeof claims, "{\"sub\":\"t%d\",\"n\":%d}", t->id, i);
		if (cv_idkey_sign(t->k, claims, &tok) == CV_OK && verifies(t->pub, tok.data))
			t->ok++;
	}
	cv_buf_release(&tok);
	return NULL;
}

static void four_threads_sign(void **state)
{
	fx_t *f = *state;
	cv_idkey_t *k = NULL;
	pthread_barrier_t go;
	pthread_t t[4];
	signer_t w[4];

	assert_int_equal(cv_idkey_load(f->s, &k), CV_OK);
	gnutls_pubkey_t pub = pubkey_of(k);
	pthread_barrier_init(&go, NULL, 4);
	for (int i = 0; i < 4; i++) {
		w[i] = (signer_t){ .k = k, .pub = pub, .go = &go, .id = i };
		assert_int_equal(pthread_create(&t[i], NULL, sign_many, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].ok, SIGNS_PER_THREAD);
	}
	pthread_barrier_destroy(&go);
	gnutls_pubkey_deinit(pub);
	cv_idkey_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(created_once_then_found, setup, teardown),
		cmocka_unit_test_setup_teardown(jwks_and_thumbprint, setup, teardown),
		cmocka_unit_test_setup_teardown(signs_and_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(refuses_bad_claims, setup, teardown),
		cmocka_unit_test_setup_teardown(broken_record_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(racing_loads_agree, setup, teardown),
		cmocka_unit_test_setup_teardown(private_key_not_on_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(four_threads_sign, setup, teardown),
	};
	return CV_TEST_RUN_ON_BOTH(tests, "oidc key", pg_base);
}
