/* crypto.c - master key file, wrapped keys, AES-256-GCM sealing, blind indexes. */
#include "crypto/crypto.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "crypto/keysrc.h"

#define SEAL_MAGIC0 'C'
#define SEAL_MAGIC1 'V'
#define SEAL_VERSION 1     /* a 4-byte key id */
#define SEAL_VERSION_KID 2 /* a 16-byte key id */
#define NONCE_BYTES crypto_aead_aes256gcm_NPUBBYTES

struct cv_key {
	crypto_aead_aes256gcm_state st; /* expanded AES key (must stay first: alignment) */
	uint8_t raw[CV_KEY_BYTES];      /* the key bytes, for HMAC */
	uint8_t kid[CV_KID_BYTES];      /* key id written into blobs (a short id: 12 zero bytes first) */
	struct cv_keysrc *src;          /* a master key: sealing and opening go through its source */
	struct cv_key *next_free;       /* a free slab slot: the next one */
	bool in_slab;                   /* a slab slot (else its own sodium_malloc region, read-only) */
};

/* Data keys live in slabs of guarded memory (sodium_malloc: locked, guard
 * pages), many keys to a slab: a region of its own per key costs four
 * mappings and an mmap, mprotect and mlock per key, which made every miss of
 * the per-patient key cache expensive. A freed slot is wiped at once and
 * reused; slabs stay for the process's life (their number follows the most
 * keys held at once: the key cache's bound). */
#define SLAB_KEYS 64
static pthread_mutex_t slab_mu = PTHREAD_MUTEX_INITIALIZER;
static cv_key_t *slab_free;

static cv_key_t *slot_take(void)
{
	pthread_mutex_lock(&slab_mu);
	if (!slab_free) {
		cv_key_t *slab = sodium_malloc(SLAB_KEYS * sizeof *slab);
		for (size_t i = 0; slab && i < SLAB_KEYS; i++) {
			slab[i].next_free = slab_free;
			slab_free = &slab[i];
		}
	}
	cv_key_t *k = slab_free;
	if (k)
		slab_free = k->next_free;
	pthread_mutex_unlock(&slab_mu);
	if (k) {
		sodium_memzero(k, sizeof *k);
		k->in_slab = true;
	}
	return k;
}

static void slot_give(cv_key_t *k)
{
	sodium_memzero(k, sizeof *k);
	pthread_mutex_lock(&slab_mu);
	k->next_free = slab_free;
	slab_free = k;
	pthread_mutex_unlock(&slab_mu);
}

/* A short (format 1) id is a 16-byte id whose first 12 bytes are zero. */
static int kid_is_short(const uint8_t kid[CV_KID_BYTES])
{
	static const uint8_t zero[CV_KID_BYTES - 4];
	return memcmp(kid, zero, sizeof zero) == 0;
}

static void kid_from_short(uint32_t id, uint8_t kid[CV_KID_BYTES])
{
	memset(kid, 0, CV_KID_BYTES);
	kid[12] = (uint8_t)(id >> 24);
	kid[13] = (uint8_t)(id >> 16);
	kid[14] = (uint8_t)(id >> 8);
	kid[15] = (uint8_t)id;
}

/* The header length of a blob sealed under k. */
static size_t seal_header(const cv_key_t *k)
{
	return kid_is_short(k->kid) ? 3 + 4 : 3 + CV_KID_BYTES;
}

cv_rc cv_crypto_init(char *err, size_t errlen)
{
	if (sodium_init() < 0) {
		snprintf(err, errlen, "libsodium failed to initialise");
		return CV_E_CRYPTO;
	}
	if (!crypto_aead_aes256gcm_is_available()) {
		snprintf(err, errlen, "this CPU lacks AES-NI/PCLMUL: AES-256-GCM is not available");
		return CV_E_CRYPTO;
	}
	return CV_OK;
}

cv_rc cv_crypto_master_create(const char *path, char *err, size_t errlen)
{
	cv_master_cfg_t cfg = { .source = "file", .file = path };
	return cv_master_create(&cfg, err, errlen);
}

cv_rc cv_crypto_key_from_bytes(const uint8_t bytes[CV_KEY_BYTES], uint32_t id, cv_key_t **out)
{
	uint8_t kid[CV_KID_BYTES];
	kid_from_short(id, kid);
	return cv_crypto_key_from_bytes_kid(bytes, kid, out);
}

cv_rc cv_crypto_key_from_bytes_kid(const uint8_t bytes[CV_KEY_BYTES], const uint8_t kid[CV_KID_BYTES],
				   cv_key_t **out)
{
	cv_key_t *k = slot_take();
	if (!k)
		return CV_E_NOMEM;
	memcpy(k->kid, kid, CV_KID_BYTES);
	memcpy(k->raw, bytes, CV_KEY_BYTES);
	crypto_aead_aes256gcm_beforenm(&k->st, k->raw);
	*out = k;
	return CV_OK;
}

cv_rc cv_crypto_master_load(const char *path, cv_key_t **out, char *err, size_t errlen)
{
	cv_master_cfg_t cfg = { .source = "file", .file = path };
	return cv_master_load(&cfg, out, err, errlen);
}

void cv_crypto_key_bytes(const cv_key_t *k, uint8_t out[CV_KEY_BYTES])
{
	memcpy(out, k->raw, CV_KEY_BYTES);
}

cv_rc cv_crypto_key_from_src(struct cv_keysrc *src, cv_key_t **out)
{
	cv_key_t *k = sodium_malloc(sizeof *k);
	if (!k) {
		cv_keysrc_release(src);
		return CV_E_NOMEM;
	}
	memset(k, 0, sizeof *k);
	k->src = src;
	k->in_slab = false;
	sodium_mprotect_readonly(k);
	*out = k;
	return CV_OK;
}

struct cv_keysrc *cv_crypto_key_src(const cv_key_t *k)
{
	return k->src;
}

cv_rc cv_crypto_key_dup(const cv_key_t *k, cv_key_t **out)
{
	if (k->src) {
		cv_keysrc_ref(k->src);
		return cv_crypto_key_from_src(k->src, out);
	}
	return cv_crypto_key_from_bytes_kid(k->raw, k->kid, out);
}

void cv_key_free(cv_key_t *k)
{
	if (!k)
		return;
	if (k->in_slab)
		return slot_give(k);
	if (k->src)
		cv_keysrc_release(k->src);
	sodium_free(k); /* sodium_free wipes the memory */
}

uint32_t cv_key_id(const cv_key_t *k)
{
	return (uint32_t)k->kid[12] << 24 | (uint32_t)k->kid[13] << 16 | (uint32_t)k->kid[14] << 8 | k->kid[15];
}

void cv_key_kid(const cv_key_t *k, uint8_t kid[CV_KID_BYTES])
{
	memcpy(kid, k->kid, CV_KID_BYTES);
}

void cv_crypto_kid_new(uint8_t kid[CV_KID_BYTES])
{
	do
		randombytes_buf(kid, CV_KID_BYTES);
	while (kid_is_short(kid));
}

cv_rc cv_crypto_key_generate(const uint8_t kid[CV_KID_BYTES], cv_key_t **out)
{
	uint8_t raw[CV_KEY_BYTES];
	randombytes_buf(raw, sizeof raw);
	cv_rc rc = cv_crypto_key_from_bytes_kid(raw, kid, out);
	sodium_memzero(raw, sizeof raw);
	return rc;
}

cv_rc cv_crypto_seal(const cv_key_t *k, const void *ad, size_t adlen, const void *pt, size_t ptlen,
		     cv_buf_t *out)
{
	if (k->src)
		return cv_keysrc_seal(k->src, ad, adlen, pt, ptlen, out);
	size_t header = seal_header(k);
	if (ptlen > SIZE_MAX - CV_SEAL_OVERHEAD_MAX)
		return CV_E_LIMIT;
	uint8_t *blob = NULL;
	cv_rc rc = cv_buf_extend(out, ptlen + header + NONCE_BYTES + crypto_aead_aes256gcm_ABYTES, (void **)&blob);
	if (rc)
		return rc;
	blob[0] = SEAL_MAGIC0;
	blob[1] = SEAL_MAGIC1;
	if (header == 3 + 4) {
		blob[2] = SEAL_VERSION;
		memcpy(blob + 3, k->kid + 12, 4);
	} else {
		blob[2] = SEAL_VERSION_KID;
		memcpy(blob + 3, k->kid, CV_KID_BYTES);
	}
	uint8_t *nonce = blob + header;
	randombytes_buf(nonce, NONCE_BYTES);
	unsigned long long clen = 0;
	crypto_aead_aes256gcm_encrypt_afternm(nonce + NONCE_BYTES, &clen, pt, ptlen, ad, adlen, NULL,
					      nonce, &k->st);
	return CV_OK;
}

cv_rc cv_crypto_blob_kid(const uint8_t *blob, size_t len, uint8_t kid[CV_KID_BYTES])
{
	if (len < CV_SEAL_OVERHEAD || blob[0] != SEAL_MAGIC0 || blob[1] != SEAL_MAGIC1)
		return CV_E_CRYPTO;
	if (blob[2] == SEAL_VERSION) {
		memset(kid, 0, CV_KID_BYTES);
		memcpy(kid + 12, blob + 3, 4);
		return CV_OK;
	}
	if (blob[2] != SEAL_VERSION_KID || len < CV_SEAL_OVERHEAD_MAX || kid_is_short(blob + 3))
		return CV_E_CRYPTO;
	memcpy(kid, blob + 3, CV_KID_BYTES);
	return CV_OK;
}

cv_rc cv_crypto_blob_key_id(const uint8_t *blob, size_t len, uint32_t *id)
{
	uint8_t kid[CV_KID_BYTES];
	if (cv_crypto_blob_kid(blob, len, kid) || !kid_is_short(kid))
		return CV_E_CRYPTO;
	*id = (uint32_t)kid[12] << 24 | (uint32_t)kid[13] << 16 | (uint32_t)kid[14] << 8 | kid[15];
	return CV_OK;
}

cv_rc cv_crypto_open(const cv_key_t *k, const void *ad, size_t adlen, const uint8_t *blob, size_t len,
		     cv_buf_t *out)
{
	uint8_t kid[CV_KID_BYTES];
	if (k->src)
		return cv_keysrc_open(k->src, ad, adlen, blob, len, out);
	if (cv_crypto_blob_kid(blob, len, kid) || memcmp(kid, k->kid, CV_KID_BYTES) != 0)
		return CV_E_CRYPTO;
	const uint8_t *nonce = blob + seal_header(k);
	const uint8_t *ct = nonce + NONCE_BYTES;
	size_t ctlen = len - seal_header(k) - NONCE_BYTES;
	size_t start = out->len;
	uint8_t *pt = NULL;
	cv_rc rc = cv_buf_extend(out, ctlen - crypto_aead_aes256gcm_ABYTES, (void **)&pt);
	if (rc)
		return rc;
	unsigned long long mlen = 0;
	if (crypto_aead_aes256gcm_decrypt_afternm(pt, &mlen, NULL, ct, ctlen, ad, adlen, nonce,
						  &k->st) != 0) {
		sodium_memzero(pt, ctlen - crypto_aead_aes256gcm_ABYTES);
		cv_buf_truncate(out, start);
		return CV_E_CRYPTO;
	}
	return CV_OK;
}

cv_rc cv_crypto_key_wrap_new(const cv_key_t *wrapping, const char *purpose, uint32_t id, cv_buf_t *out)
{
	uint8_t raw[CV_KEY_BYTES + 4];
	randombytes_buf(raw, CV_KEY_BYTES);
	raw[CV_KEY_BYTES] = (uint8_t)(id >> 24);
	raw[CV_KEY_BYTES + 1] = (uint8_t)(id >> 16);
	raw[CV_KEY_BYTES + 2] = (uint8_t)(id >> 8);
	raw[CV_KEY_BYTES + 3] = (uint8_t)id;
	cv_rc rc = cv_crypto_seal(wrapping, purpose, strlen(purpose), raw, sizeof raw, out);
	sodium_memzero(raw, sizeof raw);
	return rc;
}

cv_rc cv_crypto_key_wrap(const cv_key_t *wrapping, const char *purpose, const cv_key_t *k, cv_buf_t *out)
{
	uint8_t raw[CV_KEY_BYTES + CV_KID_BYTES];
	memcpy(raw, k->raw, CV_KEY_BYTES);
	memcpy(raw + CV_KEY_BYTES, k->kid, CV_KID_BYTES);
	cv_rc rc = cv_crypto_seal(wrapping, purpose, strlen(purpose), raw, sizeof raw, out);
	sodium_memzero(raw, sizeof raw);
	return rc;
}

cv_rc cv_crypto_key_unwrap(const cv_key_t *wrapping, const char *purpose, const uint8_t *blob,
			   size_t len, cv_key_t **out)
{
	cv_buf_t pt;
	cv_buf_init(&pt, 256);
	cv_rc rc = cv_crypto_open(wrapping, purpose, strlen(purpose), blob, len, &pt);
	if (!rc && pt.len != CV_KEY_BYTES + 4 && pt.len != CV_KEY_BYTES + CV_KID_BYTES)
		rc = CV_E_CRYPTO;
	if (!rc) {
		const uint8_t *p = (const uint8_t *)pt.data;
		uint8_t kid[CV_KID_BYTES];
		if (pt.len == CV_KEY_BYTES + 4)
			kid_from_short((uint32_t)p[32] << 24 | (uint32_t)p[33] << 16 | (uint32_t)p[34] << 8 | p[35], kid);
		else
			memcpy(kid, p + CV_KEY_BYTES, CV_KID_BYTES);
		rc = cv_crypto_key_from_bytes_kid(p, kid, out);
	}
	if (pt.data)
		sodium_memzero(pt.data, pt.alloc);
	cv_buf_release(&pt);
	return rc;
}

void cv_crypto_blind(const cv_key_t *k, const void *msg, size_t len, uint8_t out[CV_BLIND_BYTES])
{
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, k->raw, CV_KEY_BYTES);
	crypto_auth_hmacsha256_update(&st, msg, len);
	crypto_auth_hmacsha256_final(&st, out);
	sodium_memzero(&st, sizeof st);
}

_Static_assert(sizeof(crypto_auth_hmacsha256_state) <= sizeof(((cv_hmac_t *)0)->state), "cv_hmac_t too small");

void cv_crypto_hmac_init(cv_hmac_t *h, const cv_key_t *k)
{
	crypto_auth_hmacsha256_init((crypto_auth_hmacsha256_state *)h->state, k->raw, CV_KEY_BYTES);
}

void cv_crypto_hmac_parts(const cv_hmac_t *h, const void *const *parts, const size_t *lens, size_t n, uint8_t *out,
			  size_t outlen)
{
	crypto_auth_hmacsha256_state st;
	uint8_t mac[crypto_auth_hmacsha256_BYTES];
	static const uint8_t zero = 0;
	memcpy(&st, h->state, sizeof st);
	for (size_t i = 0; i < n; i++) {
		crypto_auth_hmacsha256_update(&st, parts[i], lens[i]);
		crypto_auth_hmacsha256_update(&st, &zero, 1);
	}
	crypto_auth_hmacsha256_final(&st, mac);
	memcpy(out, mac, outlen < sizeof mac ? outlen : sizeof mac);
	sodium_memzero(&st, sizeof st);
	sodium_memzero(mac, sizeof mac);
}

cv_rc cv_crypto_b64url_encode(const void *in, size_t n, cv_buf_t *out)
{
	size_t need = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	void *p;
	cv_rc rc = cv_buf_extend(out, need, &p);
	if (rc)
		return rc;
	sodium_bin2base64(p, need, in, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	cv_buf_truncate(out, out->len - 1); /* drop the encoder's NUL from the length */
	return CV_OK;
}

cv_rc cv_crypto_b64url_decode(const char *text, size_t len, cv_buf_t *out)
{
	size_t cap = len * 3 / 4 + 1, got = 0;
	void *p;
	size_t before = out->len;
	cv_rc rc = cv_buf_extend(out, cap, &p);
	if (rc)
		return rc;
	const char *end = NULL;
	if (sodium_base642bin(p, cap, text, len, NULL, &got, &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
	    end != text + len) {
		cv_buf_truncate(out, before);
		return CV_E_INVALID;
	}
	cv_buf_truncate(out, before + got);
	return CV_OK;
}

void cv_crypto_hex(const uint8_t *in, size_t n, char *out)
{
	sodium_bin2hex(out, n * 2 + 1, in, n);
}

cv_rc cv_crypto_unhex(const char *hex, uint8_t *out, size_t n)
{
	size_t len = hex ? strlen(hex) : 0, got = 0;
	const char *end = NULL;
	if (len != 2 * n || sodium_hex2bin(out, n, hex, len, NULL, &got, &end) != 0 || got != n || *end)
		return CV_E_INVALID;
	return CV_OK;
}

void cv_crypto_random(void *buf, size_t n)
{
	randombytes_buf(buf, n);
}

void cv_crypto_token(const char *prefix, char *out, size_t outlen)
{
	uint8_t r[32];
	char b64[64];
	randombytes_buf(r, sizeof r);
	sodium_bin2base64(b64, sizeof b64, r, sizeof r, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	snprintf(out, outlen, "%s%s", prefix, b64);
	sodium_memzero(r, sizeof r);
	sodium_memzero(b64, sizeof b64);
}

void cv_crypto_sha256(const void *data, size_t len, uint8_t out[32])
{
	crypto_hash_sha256(out, data, len);
}

int cv_crypto_equal(const void *a, const void *b, size_t n)
{
	return sodium_memcmp(a, b, n) == 0;
}

void cv_crypto_wipe(void *p, size_t n)
{
	sodium_memzero(p, n);
}

static void uuid_text(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

void cv_crypto_uuid(char out[37])
{
	uint8_t u[16];
	randombytes_buf(u, sizeof u);
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	uuid_text(u, out);
}

void cv_crypto_uuid7(int64_t now_us, char out[37])
{
	uint8_t u[16];
	uint64_t ms = (uint64_t)(now_us < 0 ? 0 : now_us / 1000);
	randombytes_buf(u, sizeof u);
	for (int i = 5; i >= 0; i--, ms >>= 8)
		u[i] = (uint8_t)ms;
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x70);
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
	uuid_text(u, out);
}

_Static_assert(sizeof(crypto_hash_sha256_state) <= sizeof(((cv_sha256_t *)0)->state), "sha256 state size");

void cv_sha256_init(cv_sha256_t *h)
{
	crypto_hash_sha256_init((crypto_hash_sha256_state *)(void *)h->state);
}

void cv_sha256_update(cv_sha256_t *h, const void *data, size_t len)
{
	crypto_hash_sha256_update((crypto_hash_sha256_state *)(void *)h->state, data, len);
}

void cv_sha256_final(cv_sha256_t *h, uint8_t out[32])
{
	crypto_hash_sha256_final((crypto_hash_sha256_state *)(void *)h->state, out);
}

void cv_crypto_sha256_hex(const char *text, char out[65])
{
	uint8_t h[32];
	cv_crypto_sha256(text, strlen(text), h);
	cv_crypto_hex(h, sizeof h, out);
	sodium_memzero(h, sizeof h);
}

/* ---- Ed25519 signatures (the audit trail's checkpoints) -------------------- */

void cv_crypto_sign_public(const cv_key_t *seed, uint8_t pk[CV_SIGN_PUBLIC_BYTES])
{
	uint8_t sk[crypto_sign_SECRETKEYBYTES];
	crypto_sign_seed_keypair(pk, sk, seed->raw);
	sodium_memzero(sk, sizeof sk);
}

void cv_crypto_sign(const cv_key_t *seed, const void *msg, size_t len, uint8_t sig[CV_SIGN_BYTES])
{
	uint8_t pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
	crypto_sign_seed_keypair(pk, sk, seed->raw);
	crypto_sign_detached(sig, NULL, msg, len, sk);
	sodium_memzero(sk, sizeof sk);
}

cv_rc cv_crypto_sign_verify(const uint8_t pk[CV_SIGN_PUBLIC_BYTES], const void *msg, size_t len,
			    const uint8_t sig[CV_SIGN_BYTES])
{
	return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? CV_OK : CV_E_CRYPTO;
}
