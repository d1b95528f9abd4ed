/*
 * jwt.h - verification of the signed JWTs (compact JWS, RFC 7515) that SMART
 * Backend Services clients send as client_assertion (private_key_jwt, RFC
 * 7523), against the JWKS (RFC 7517) the client registered.
 *
 * Only two algorithms (RFC 7518) are accepted: RS384 (RSASSA-PKCS1-v1_5 with
 * SHA-384, RSA keys of 2048 to 8192 bits) and ES384 (ECDSA on P-384 with
 * SHA-384, the signature being raw r||s, 96 bytes). "none", the HMAC algorithms
 * and everything else are refused before any key is looked at, so a public key
 * can never be used as an HMAC secret. Keys come only from the registered JWKS:
 * header members that name keys elsewhere (jwk, jku, x5u, x5c) are ignored, and
 * a header with "crit" is refused (no extension is understood).
 *
 * Only the signature is checked here. The claims (iss, sub, aud, exp, jti and
 * their replay) are the caller's to check.
 */
#ifndef CV_AUTH_JWT_H
#define CV_AUTH_JWT_H

#include <stddef.h>
#include <json-c/json.h>

#include "core/rc.h"

#define CV_JWT_TOKEN_MAX (16u * 1024)  /* longest compact JWS accepted, in bytes */
#define CV_JWT_JWKS_MAX (64u * 1024)   /* longest JWKS document accepted, in bytes */
#define CV_JWT_KEYS_MAX 32             /* most keys in a JWKS */
#define CV_JWT_RSA_MIN_BITS 2048       /* smallest RSA modulus accepted */
#define CV_JWT_RSA_MAX_BITS 8192       /* largest RSA modulus accepted */

/*
 * Verifies a compact JWS (header.payload.signature, NUL-terminated) against
 * a JWKS document of jwks_len bytes ({"keys":[...]}) and returns its claims.
 * Only alg RS384 and ES384 are accepted: "none", HS256/384/512 and anything
 * else are refused, whatever the key says. The key is the JWKS entry whose
 * "kid" equals the header's kid; without a kid in the header, the keys of the
 * right kty (and crv) are tried in turn. A key is skipped when its "use" is
 * there and is not "sig", its "alg" is there and is not the header's, its
 * "key_ops" is there without "verify", it carries private members, or it is
 * not a well-formed key of the accepted sizes.
 *
 * On CV_OK *claims gets the payload, a JSON object (json_object_put it),
 * parsed only once the signature is good. On failure *claims is NULL and the
 * result is CV_E_UNAUTH (bad signature, no usable key, refused alg, "crit")
 * or CV_E_INVALID (malformed or oversized token or JWKS, missing alg, payload
 * not a JSON object); CV_E_NOMEM and CV_E_CRYPTO (GnuTLS failed otherwise)
 * are possible. why (may be NULL) gets a short lowercase reason for logs,
 * never any of the token. Bounds: token <= CV_JWT_TOKEN_MAX bytes, JWKS <=
 * CV_JWT_JWKS_MAX bytes and <= CV_JWT_KEYS_MAX keys. JSON is parsed strictly
 * (cv_json_parse: duplicate keys, bad UTF-8 are errors).
 */
cv_rc cv_jwt_verify(const char *token, const char *jwks, size_t jwks_len, json_object **claims,
		    char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * cv_jwt_verify, and *no_key (may be NULL) tells why a CV_E_UNAUTH came:
 * 1 when no key of the JWKS could even be tried (none has the header's kid,
 * or none of those is usable for the alg), 0 otherwise (a key was tried and
 * the signature did not verify with it, the alg was refused...). A caller
 * whose client rotates its keys may fetch the JWKS again on 1, never on 0.
 */
cv_rc cv_jwt_verify_ex(const char *token, const char *jwks, size_t jwks_len, json_object **claims, int *no_key,
		       char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * Checks a JWKS a client wants to register. CV_OK when jwks is a JSON object
 * with a "keys" array of 1 to CV_JWT_KEYS_MAX objects in which:
 *   - no key has a private member ("d", "p", "q", "dp", "dq", "qi", "oth",
 *     "k"): a private key registered by mistake is refused;
 *   - every RSA key is well formed and of CV_JWT_RSA_MIN_BITS bits or more,
 *     every EC key on P-384 is a valid point (keys of other types or curves
 *     are ignored, cv_jwt_verify never uses them);
 *   - at least one key is one cv_jwt_verify can use (RSA or P-384, "use" sig
 *     or absent, "alg" RS384/ES384 or absent).
 * CV_E_INVALID otherwise (why, may be NULL, says what first failed),
 * CV_E_NOMEM or CV_E_CRYPTO.
 */
cv_rc cv_jwt_jwks_check(const char *jwks, size_t len, char *why, size_t whylen)
	__attribute__((warn_unused_result));

#endif
