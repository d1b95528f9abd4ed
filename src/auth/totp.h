/*
 * totp.h - one-time passwords for the second factor: HOTP (RFC 4226) and
 * TOTP (RFC 6238) as authenticator apps (Google Authenticator, FreeOTP, ...)
 * expect them, plus what enrolment and recovery need around them.
 *
 * Defaults are the ones every app understands: HMAC-SHA1, 6 digits, a 30 s
 * step, a 20-byte seed shown as unpadded base32 in an otpauth:// URI (and as
 * a QR code of that URI). SHA-256/512 are there for cv_totp_hotp/cv_totp_code
 * only; cv_totp_verify and cv_totp_uri are SHA-1.
 *
 * Replay: cv_totp_verify reports the time step a code matched. The caller
 * stores it (in the database, with the seed) and passes it back as
 * last_used_step next time; a code for that step or an earlier one is then
 * refused, so every code works at most once.
 *
 * Recovery codes: ten single-use codes "XXXX-XXXX-XXXX-XXXX" from a 32-letter
 * alphabet without 0/O/1/I (80 random bits each). Only their BLAKE2b hashes
 * are stored; a code is normalised (dashes and spaces dropped, uppercased)
 * before hashing so the way a person types it does not matter.
 *
 * Secrets (seeds, HMAC outputs, expected codes) on the stack are wiped on
 * every exit path. Text built here that holds a seed (the URI, its QR code,
 * base32) lands in the caller's cv_buf_t: wipe it (cv_crypto_wipe) before
 * releasing it.
 */
#ifndef CV_AUTH_TOTP_H
#define CV_AUTH_TOTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/rc.h"

#define CV_TOTP_SEED_BYTES 20   /* seed length cv_totp_seed_new makes (160 bits, RFC 4226's advice) */
#define CV_TOTP_SEED_MAX 64     /* longest seed accepted (RFC 6238's SHA-512 test seed is 64 bytes) */
#define CV_TOTP_DIGITS 6        /* digits in a code cv_totp_verify accepts */
#define CV_TOTP_PERIOD 30       /* seconds per time step */
#define CV_TOTP_WINDOW 1        /* steps accepted either side of now */
#define CV_TOTP_B32_MAX 1024    /* longest base32 text cv_totp_base32_decode reads */
#define CV_TOTP_LABEL_MAX 256   /* longest issuer or account name in a URI */
#define CV_TOTP_QR_TEXT_MAX 2048 /* longest text put in a QR code */

#define CV_TOTP_RECOVERY_COUNT 10 /* recovery codes made at a time */
#define CV_TOTP_RECOVERY_LEN 20   /* "XXXX-XXXX-XXXX-XXXX" and its NUL */
#define CV_TOTP_RECOVERY_HASH 32  /* bytes of a recovery code's hash */

typedef enum cv_totp_alg {
	CV_TOTP_SHA1 = 0, /* the default, and the one apps all support */
	CV_TOTP_SHA256,
	CV_TOTP_SHA512,
} cv_totp_alg;

/* Fills seed with CV_TOTP_SEED_BYTES random bytes (libsodium). */
void cv_totp_seed_new(uint8_t seed[CV_TOTP_SEED_BYTES]);

/* HOTP (RFC 4226): HMAC of the 8-byte big-endian counter under seed,
 * dynamically truncated, modulo 10^digits, into *code. digits is 6 to 8;
 * seedlen 1 to CV_TOTP_SEED_MAX. CV_E_INVALID for bad arguments, CV_E_CRYPTO
 * if GnuTLS fails. Format *code with leading zeros ("%0*u") to show it. */
cv_rc cv_totp_hotp(cv_totp_alg alg, const uint8_t *seed, size_t seedlen, uint64_t counter,
		   unsigned digits, uint32_t *code) __attribute__((warn_unused_result));

/* The time step of a Unix time: floor(now_unix / CV_TOTP_PERIOD). */
int64_t cv_totp_step(int64_t now_unix);

/* TOTP (RFC 6238): cv_totp_hotp with the time step of now_unix as counter.
 * CV_E_INVALID for a time before the epoch and for what cv_totp_hotp refuses. */
cv_rc cv_totp_code(cv_totp_alg alg, const uint8_t *seed, size_t seedlen, int64_t now_unix,
		   unsigned digits, uint32_t *code) __attribute__((warn_unused_result));

/* Checks a 6-digit SHA-1 TOTP code typed by a person. The code must be exactly
 * CV_TOTP_DIGITS ASCII digits. It is compared (in constant time) with the
 * codes of the steps now-1, now and now+1, all three always computed; it is
 * accepted only for a step greater than last_used_step (pass -1 when no code
 * was ever used). On CV_OK, *matched_step (may be NULL) gets the step it
 * matched (the latest one, should several match): store it and pass it as
 * last_used_step next time. Every failure (wrong, replayed or malformed code,
 * bad seed) is CV_E_DENIED and leaves *matched_step alone. */
cv_rc cv_totp_verify(const uint8_t *seed, size_t seedlen, const char *code, int64_t now_unix,
		     int64_t last_used_step, int64_t *matched_step) __attribute__((warn_unused_result));

/* Appends the RFC 4648 base32 of n bytes to out, without '=' padding (as
 * otpauth:// URIs want it). CV_E_LIMIT/CV_E_NOMEM from the buffer; out is
 * unchanged on failure. */
cv_rc cv_totp_base32_encode(const uint8_t *in, size_t n, cv_buf_t *out);

/* Decodes len bytes of RFC 4648 base32 and appends the bytes to out. Strict:
 * only 'A'-'Z' and '2'-'7' (no lowercase, no spaces), '=' only as the exact
 * padding of the last group, no impossible lengths, unused trailing bits zero.
 * Meant for tests and tools. CV_E_INVALID for text that is not base32,
 * CV_E_LIMIT over CV_TOTP_B32_MAX characters or the buffer's cap; out is
 * unchanged on failure (what was decoded is wiped). */
cv_rc cv_totp_base32_decode(const char *text, size_t len, cv_buf_t *out);

/* Appends the key URI an authenticator app reads:
 *   otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
 * issuer and account are percent-encoded (all but RFC 3986 unreserved
 * characters, so a ':' in a name cannot move the label's separator).
 * CV_E_INVALID for an empty or NULL name or seed, CV_E_LIMIT for a name over
 * CV_TOTP_LABEL_MAX bytes, a seed over CV_TOTP_SEED_MAX or a full buffer; out
 * is unchanged on failure. The URI holds the seed: wipe out when done. */
cv_rc cv_totp_uri(const char *issuer, const char *account, const uint8_t *seed, size_t seedlen,
		  cv_buf_t *out);

/* Appends a standalone SVG document (starting "<svg") showing text as a QR
 * code (libqrencode, error correction level M, byte mode): a white
 * background, a 4-module quiet zone and one black <path> of unit squares,
 * shape-rendering="crispEdges". CV_E_INVALID for NULL or empty text,
 * CV_E_LIMIT for text over CV_TOTP_QR_TEXT_MAX or too long for a QR code, or a
 * full buffer, CV_E_NOMEM; out is unchanged on failure. */
cv_rc cv_totp_qr_svg(const char *text, cv_buf_t *out);

/* Makes CV_TOTP_RECOVERY_COUNT random recovery codes, "XXXX-XXXX-XXXX-XXXX"
 * (80 bits each), NUL-terminated. Show them once; store only their hashes. */
void cv_totp_recovery_new(char codes[CV_TOTP_RECOVERY_COUNT][CV_TOTP_RECOVERY_LEN]);

/* Hashes a recovery code as typed (BLAKE2b-256 of the normalised code:
 * dashes and spaces dropped, letters uppercased). CV_E_INVALID when what is
 * left is not 16 characters of the recovery alphabet (such a code never
 * matches anyway). */
cv_rc cv_totp_recovery_hash(const char *code, uint8_t out[CV_TOTP_RECOVERY_HASH])
	__attribute__((warn_unused_result));

/* Constant-time equality of two recovery code hashes: 1 if equal, else 0. */
int cv_totp_recovery_equal(const uint8_t a[CV_TOTP_RECOVERY_HASH], const uint8_t b[CV_TOTP_RECOVERY_HASH])
	__attribute__((warn_unused_result));

/* Looks a typed recovery code up among n stored hashes, comparing with every
 * one of them (constant time in which one matched). CV_OK with *index (may be
 * NULL) set to the matching entry, which the caller then deletes or marks
 * used; CV_E_DENIED if none matches or the code is malformed. */
cv_rc cv_totp_recovery_find(const char *code, const uint8_t (*hashes)[CV_TOTP_RECOVERY_HASH], size_t n,
			    size_t *index) __attribute__((warn_unused_result));

#endif
