/*
 * pkcs11.h - the master key in a PKCS#11 token (an HSM, SoftHSM2, a cloud
 * KMS's PKCS#11 library): AES-256 key objects that never leave the token,
 * one per master key version (CKA_ID: the version, 4 bytes big-endian;
 * CKA_LABEL: the configured label), used with CKM_AES_GCM (private to crypto/).
 */
#ifndef CV_CRYPTO_PKCS11_H
#define CV_CRYPTO_PKCS11_H

#include <stdint.h>

#include "crypto/crypto.h"

typedef struct cv_p11 cv_p11_t;

/* Loads the module, finds the token by label, opens a session and logs in
 * with the PIN (from pin_file, 0600, or $CAREVAULT_PKCS11_PIN). */
cv_rc cv_p11_open(const cv_master_cfg_t *cfg, cv_p11_t **out, char *err, size_t errlen);

void cv_p11_close(cv_p11_t *t);

/* The versions the token holds (at most max), ascending. */
cv_rc cv_p11_versions(cv_p11_t *t, uint32_t *ids, size_t max, size_t *n);

/* Makes version id: a new non-extractable AES-256 key in the token. */
cv_rc cv_p11_generate(cv_p11_t *t, uint32_t id, char *err, size_t errlen);

/* Destroys version id in the token. */
cv_rc cv_p11_destroy(cv_p11_t *t, uint32_t id);

/* AES-256-GCM in the token under version id: ciphertext and tag (16) of pt,
 * appended to out; and back (CV_E_CRYPTO when the tag does not verify). */
cv_rc cv_p11_encrypt(cv_p11_t *t, uint32_t id, const uint8_t nonce[12], const void *ad, size_t adlen,
		     const void *pt, size_t ptlen, uint8_t *out);
cv_rc cv_p11_decrypt(cv_p11_t *t, uint32_t id, const uint8_t nonce[12], const void *ad, size_t adlen,
		     const uint8_t *ct, size_t ctlen, uint8_t *out);

#endif
