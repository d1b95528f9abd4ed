/*
 * crypto.h - keys, sealing and blind indexes (libsodium).
 *
 * Key hierarchy: a master key (32 random bytes in a 0600 file, never in the
 * store) wraps data keys; data keys are stored wrapped, unwrapped into guarded
 * memory (sodium_malloc: locked, guard pages, read-only, wiped on free).
 *
 * Sealed blob formats:
 *   1: "CV" | 0x01 | key id (u32, big-endian) | nonce (12) | ciphertext | tag (16)
 *   2: "CV" | 0x02 | key id (16 random bytes) | nonce (12) | ciphertext | tag (16)
 * A key made with a u32 id (the master key, the first data keys) seals in
 * format 1; a key with a 16-byte id (per-patient and later data keys, made
 * by many nodes without coordination) seals in format 2. Internally every id
 * is 16 bytes: a u32 id is 12 zero bytes and the u32, big-endian.
 * AES-256-GCM with a random 96-bit nonce; the caller's additional data binds
 * the blob to its place (for resources: type, row id, version), so a blob
 * copied to another row fails to open.
 */
#ifndef CV_CRYPTO_CRYPTO_H
#define CV_CRYPTO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/rc.h"

#define CV_KEY_BYTES 32
#define CV_SEAL_OVERHEAD (3 + 4 + 12 + 16)      /* format 1 */
#define CV_SEAL_OVERHEAD_MAX (3 + 16 + 12 + 16) /* format 2 */
#define CV_KID_BYTES 16
#define CV_BLIND_BYTES 32

typedef struct cv_key cv_key_t;

/* Initialises libsodium and checks that AES-256-GCM is available in hardware.
 * CV_E_CRYPTO with a message in err otherwise. Call once at start. */
cv_rc cv_crypto_init(char *err, size_t errlen);

/* --- the master key ----------------------------------------------------------
 * Where it lives, behind one interface (crypto/master.c, decision 0010): a key
 * file (the default), an environment variable, or a PKCS#11 token (an HSM,
 * SoftHSM2, a cloud KMS's PKCS#11 library), where it never leaves the token.
 * A master key is a cv_key_t: cv_crypto_seal/open (and so key wrapping) go
 * through its source. It has versions (rotation): sealing uses the current
 * one, and every wrapped key names the version that wrapped it. */
typedef struct cv_master_cfg {
	const char *source;          /* "file" (default), "env", "pkcs11" */
	const char *file;            /* file: its path */
	const char *retired_file;    /* file: retired versions read with it (restores of older backups), or NULL */
	const char *env;             /* env: the variable (default CV_MASTER_ENV), 64 hex digits */
	const char *pkcs11_module;   /* pkcs11: the module (.so) */
	const char *pkcs11_token;    /* the token's label */
	const char *pkcs11_label;    /* the key objects' label (default "carevault-master") */
	const char *pkcs11_pin_file; /* a 0600 file holding the user PIN (else $CAREVAULT_PKCS11_PIN) */
} cv_master_cfg_t;

#define CV_MASTER_ENV "CAREVAULT_MASTER_KEY"

/* Makes the master key where cfg says (a file: O_EXCL, 0600, fsynced; a
 * token: a non-extractable AES-256 key, unless it holds one; env: nothing). */
cv_rc cv_master_create(const cv_master_cfg_t *cfg, char *err, size_t errlen);

/* Loads the master key from its source (a file group or others may read is refused). */
cv_rc cv_master_load(const cv_master_cfg_t *cfg, cv_key_t **out, char *err, size_t errlen);

/* Its current version (what it wraps new keys with). */
uint32_t cv_master_current(const cv_key_t *m);

/* The versions it holds now (at most max), ascending; how many. */
size_t cv_master_versions(const cv_key_t *m, uint32_t *ids, size_t max);

/* Reads the source again (another process rotated it). */
cv_rc cv_master_refresh(cv_key_t *m);

/* Rotation, step 1: a new version, which becomes the current one (the key
 * file is rewritten atomically with every version; a token gets a new key). */
cv_rc cv_master_add_version(cv_key_t *m, uint32_t *id, char *err, size_t errlen);

/* Rotation, last step: the source keeps only version `keep`. The others are
 * appended to the key file `retired` (0600; itself a key file that opens
 * what they wrapped: old backups), or destroyed when retired is NULL. */
cv_rc cv_master_retire(cv_key_t *m, uint32_t keep, const char *retired, char *err, size_t errlen);

/* "file", "env", "pkcs11" (or "key" for a plain key). */
const char *cv_master_source(const cv_key_t *m);

/* The 32 bytes of a plain key (to write a key file). */
void cv_crypto_key_bytes(const cv_key_t *k, uint8_t out[CV_KEY_BYTES]);

/* Creates a new master key file at path (O_EXCL, mode 0600, fsynced). */
cv_rc cv_crypto_master_create(const char *path, char *err, size_t errlen);

/* Loads the master key file. Refuses (CV_E_DENIED) a file that group or
 * others may read or write, or that is not a regular file of 32 bytes. */
cv_rc cv_crypto_master_load(const char *path, cv_key_t **out, char *err, size_t errlen);

/* Makes a key of the given id from 32 bytes (copied into guarded memory). */
cv_rc cv_crypto_key_from_bytes(const uint8_t bytes[CV_KEY_BYTES], uint32_t id, cv_key_t **out);

/* Makes a key with a 16-byte id (see cv_crypto_kid_new) from 32 bytes. */
cv_rc cv_crypto_key_from_bytes_kid(const uint8_t bytes[CV_KEY_BYTES], const uint8_t kid[CV_KID_BYTES],
				   cv_key_t **out);

/* A new random 16-byte key id (never one of the u32 form). */
void cv_crypto_kid_new(uint8_t kid[CV_KID_BYTES]);

/* A new random key with id kid. */
cv_rc cv_crypto_key_generate(const uint8_t kid[CV_KID_BYTES], cv_key_t **out);

/* Seals k (its bytes and its id) under `wrapping` with additional data
 * `purpose`; appends the blob to out. cv_crypto_key_unwrap opens it. */
cv_rc cv_crypto_key_wrap(const cv_key_t *wrapping, const char *purpose, const cv_key_t *k, cv_buf_t *out);

/* The 16-byte id of k. */
void cv_key_kid(const cv_key_t *k, uint8_t kid[CV_KID_BYTES]);

/* The 16-byte id of the key a blob was sealed with; CV_E_CRYPTO if it is
 * not a sealed blob. */
cv_rc cv_crypto_blob_kid(const uint8_t *blob, size_t len, uint8_t kid[CV_KID_BYTES]);

/* A copy of k (its own guarded memory). */
cv_rc cv_crypto_key_dup(const cv_key_t *k, cv_key_t **out);

/* Wipes and frees a key (NULL is fine). */
void cv_key_free(cv_key_t *k);

/* The u32 id a key was made with (the last 4 bytes of its 16-byte id). */
uint32_t cv_key_id(const cv_key_t *k);

/* Generates a random data key of the given id and appends it, sealed under
 * `wrapping` with additional data `purpose`, to out. */
cv_rc cv_crypto_key_wrap_new(const cv_key_t *wrapping, const char *purpose, uint32_t id,
			     cv_buf_t *out);

/* Opens a wrapped key made by cv_crypto_key_wrap_new with the same purpose. */
cv_rc cv_crypto_key_unwrap(const cv_key_t *wrapping, const char *purpose, const uint8_t *blob,
			   size_t len, cv_key_t **out);

/* Seals pt under k with additional data ad; appends the blob to out. */
cv_rc cv_crypto_seal(const cv_key_t *k, const void *ad, size_t adlen, const void *pt, size_t ptlen,
		     cv_buf_t *out);

/* The u32 key id a format-1 blob was sealed with; CV_E_CRYPTO otherwise. */
cv_rc cv_crypto_blob_key_id(const uint8_t *blob, size_t len, uint32_t *id);

/* Opens a blob sealed by cv_crypto_seal; appends the plaintext to out.
 * CV_E_CRYPTO if the blob was altered, moved (other ad) or sealed under another key. */
cv_rc cv_crypto_open(const cv_key_t *k, const void *ad, size_t adlen, const uint8_t *blob, size_t len,
		     cv_buf_t *out) __attribute__((warn_unused_result));

/* HMAC-SHA-256 of msg under k: the blind-index value of msg. */
void cv_crypto_blind(const cv_key_t *k, const void *msg, size_t len, uint8_t out[CV_BLIND_BYTES]);

/* A keyed HMAC-SHA-256 state, ready to blind many messages under one key
 * without re-keying each time (the key's pads are hashed once). */
typedef struct cv_hmac {
	unsigned char state[512] __attribute__((aligned(16))); /* libsodium's state, opaque */
} cv_hmac_t;

/* Keys h with k. Wipe it with cv_crypto_wipe when done. */
void cv_crypto_hmac_init(cv_hmac_t *h, const cv_key_t *k);

/* HMAC-SHA-256 under h over several parts, each followed by a 0 byte (so
 * that ("ab","c") and ("a","bc") differ); the first outlen (<= 32) bytes go to
 * out. h is not changed. */
void cv_crypto_hmac_parts(const cv_hmac_t *h, const void *const *parts, const size_t *lens, size_t n, uint8_t *out,
			  size_t outlen);

/* base64url (no padding) of n bytes, appended to out. */
cv_rc cv_crypto_b64url_encode(const void *in, size_t n, cv_buf_t *out);

/* Decodes base64url text (no padding) and appends the bytes to out;
 * CV_E_INVALID if it is not base64url. */
cv_rc cv_crypto_b64url_decode(const char *text, size_t len, cv_buf_t *out);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void cv_crypto_hex(const uint8_t *in, size_t n, char *out);

/* Exactly 2n hex digits (either case) into n bytes; CV_E_INVALID otherwise. */
cv_rc cv_crypto_unhex(const char *hex, uint8_t *out, size_t n) __attribute__((warn_unused_result));

/* Fills buf with n random bytes. */
void cv_crypto_random(void *buf, size_t n);

/* A random token: `prefix` + base64url(32 random bytes), into out (outlen ≥ 64). */
void cv_crypto_token(const char *prefix, char *out, size_t outlen);

/* SHA-256 of data. */
void cv_crypto_sha256(const void *data, size_t len, uint8_t out[32]);

/* Lowercase hex of the SHA-256 of a string (a record id that keeps the string out of the store). */
void cv_crypto_sha256_hex(const char *text, char out[65]);

/* Streaming SHA-256 (for checksums over many rows). */
typedef struct cv_sha256 {
	unsigned char state[128] __attribute__((aligned(16))); /* libsodium's state, opaque */
} cv_sha256_t;
void cv_sha256_init(cv_sha256_t *h);
void cv_sha256_update(cv_sha256_t *h, const void *data, size_t len);
void cv_sha256_final(cv_sha256_t *h, uint8_t out[32]);

/* Constant-time equality of two n-byte buffers. */
int cv_crypto_equal(const void *a, const void *b, size_t n) __attribute__((warn_unused_result));

/* Wipes n bytes at p. */
void cv_crypto_wipe(void *p, size_t n);

/* Ed25519 (the audit trail's signed checkpoints). A signing key is any
 * data key: its 32 bytes are the key pair's seed. */
#define CV_SIGN_PUBLIC_BYTES 32
#define CV_SIGN_BYTES 64

/* The public key of the pair seeded by seed. */
void cv_crypto_sign_public(const cv_key_t *seed, uint8_t pk[CV_SIGN_PUBLIC_BYTES]);

/* A detached signature of msg. */
void cv_crypto_sign(const cv_key_t *seed, const void *msg, size_t len, uint8_t sig[CV_SIGN_BYTES]);

/* CV_OK when sig signs msg under pk, else CV_E_CRYPTO. */
cv_rc cv_crypto_sign_verify(const uint8_t pk[CV_SIGN_PUBLIC_BYTES], const void *msg, size_t len,
			    const uint8_t sig[CV_SIGN_BYTES]) __attribute__((warn_unused_result));

/* A random version-4 UUID as text (37 bytes with the NUL). */
void cv_crypto_uuid(char out[37]);

/* A version-7 UUID (RFC 9562): the time in milliseconds, then 74 random
 * bits. Ids made in time order sort in time order: an index of them grows
 * at its end (audit records). */
void cv_crypto_uuid7(int64_t now_us, char out[37]);

#endif
