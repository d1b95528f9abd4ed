/*
 * idkey.h - the server's OpenID Connect signing key: it signs id_tokens
 * (RS256, RFC 7518 3.3) and is published as a JWKS for relying parties.
 *
 * One RSA 2048 key for the whole deployment, shared by every node. It lives
 * in the store as the internal record "~Key"/"oidc-rs256" (sealed by the
 * store like every record), whose JSON body is
 *   {"kty":"RSA","alg":"RS256","key":"<token>"}
 * where <token> is the key's PKCS#1 DER sealed once more with
 * cv_store_token_seal (purpose "oidc-key"): the DER is never plaintext in a
 * JSON tree or a json-c buffer, only in buffers this module wipes. In memory
 * the key is a GnuTLS private key object (GnuTLS wipes it on deinit).
 *
 * The key id is the RFC 7638 JWK thumbprint of the public key, so every node
 * derives the same kid from the same key.
 */
#ifndef CV_AUTH_IDKEY_H
#define CV_AUTH_IDKEY_H

#include "core/buf.h"
#include "core/rc.h"
#include "store/store.h"

#define CV_IDKEY_BITS 2048               /* size of a key created here, and the smallest one loaded */
#define CV_IDKEY_CLAIMS_MAX (8u * 1024)  /* longest claims text cv_idkey_sign accepts, in bytes */

typedef struct cv_idkey cv_idkey_t;

/*
 * Loads the server's id-token signing key (RSA 2048, private key kept as an
 * internal sealed store record of type "~Key", id "oidc-rs256", PEM or DER of
 * the private key in a JSON body), creating it when there is none. Creation
 * uses expect-version 0, so when two nodes race the loser reads the winner's
 * key. (Should the record be a tombstone, the new key is written over the
 * version seen, with the same race rule.)
 *
 * Creating takes an RSA key generation in the caller's thread: about 60 ms
 * on average on the 2-core reference machine, with a long tail (it depends
 * on how soon primes are found), plus one durable write. A later load reads
 * the record and imports and checks the key (a few milliseconds). Call it
 * once at start-up and share the key, not per request.
 *
 * On CV_OK *out gets the key (cv_idkey_free it). On failure *out is NULL
 * and the result is CV_E_STORAGE / CV_E_BUSY (the store failed), CV_E_CRYPTO
 * (the stored key does not open, is not an RSA key of CV_IDKEY_BITS bits or
 * more, or GnuTLS failed), CV_E_INTERNAL (the record is not in the format
 * above), CV_E_CONFLICT (the record kept changing under two attempts) or
 * CV_E_NOMEM.
 */
cv_rc cv_idkey_load(cv_store_t *s, cv_idkey_t **out) __attribute__((warn_unused_result));

/* Frees k (NULL is fine); GnuTLS wipes the private key as it frees it. */
void cv_idkey_free(cv_idkey_t *k);

/* The key id: RFC 7638 JWK thumbprint (SHA-256, base64url, no padding),
 * 43 characters. Valid as long as k. */
const char *cv_idkey_kid(const cv_idkey_t *k);

/*
 * Signs a JSON object text as a compact JWS, header
 * {"alg":"RS256","typ":"JWT","kid":...}; out gets header.payload.signature
 * (NUL-terminated, cv_buf; emptied first, empty again on failure). The
 * claims are signed byte for byte as given (the caller checks iss, aud, exp
 * ... are right). Thread-safe: several server threads may sign with the same
 * k at once, without a lock (the key object is only read, as a GnuTLS
 * credentials' key is by a threaded TLS server). One signature costs about
 * 2.5 ms of CPU on the reference machine.
 *
 * CV_E_INVALID when claims_json is NULL or not one strict JSON object
 * (cv_json_parse: bad UTF-8, duplicate keys, trailing text refused);
 * CV_E_LIMIT when it is longer than CV_IDKEY_CLAIMS_MAX or the token does
 * not fit out's cap; CV_E_CRYPTO if GnuTLS fails to sign; CV_E_NOMEM.
 */
cv_rc cv_idkey_sign(cv_idkey_t *k, const char *claims_json, cv_buf_t *out) __attribute__((warn_unused_result));

/*
 * The public JWKS document:
 *   {"keys":[{"kty":"RSA","use":"sig","alg":"RS256","kid":"...","n":"...","e":"..."}]}
 * with n and e base64url (no padding) of the unsigned big-endian integers
 * without leading zero bytes. out is emptied first and gets the text
 * (NUL-terminated). CV_E_LIMIT over out's cap (the document is about 450
 * bytes for a 2048-bit key), CV_E_NOMEM.
 */
cv_rc cv_idkey_jwks(const cv_idkey_t *k, cv_buf_t *out);

#endif
