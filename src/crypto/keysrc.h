/*
 * keysrc.h - a master key's source, behind the cv_key_t a master key is
 * (private to crypto/; crypto.h, "the master key").
 */
#ifndef CV_CRYPTO_KEYSRC_H
#define CV_CRYPTO_KEYSRC_H

#include "crypto/crypto.h"

struct cv_keysrc;

/* Seals pt under the source's current version (a format-1 blob naming it). */
cv_rc cv_keysrc_seal(struct cv_keysrc *src, const void *ad, size_t adlen, const void *pt, size_t ptlen, cv_buf_t *out);

/* Opens a format-1 blob under the version it names (the source is read
 * again once when it does not hold that version). */
cv_rc cv_keysrc_open(struct cv_keysrc *src, const void *ad, size_t adlen, const uint8_t *blob, size_t len,
		     cv_buf_t *out);

/* Reference counting (a store keeps its own reference). */
void cv_keysrc_ref(struct cv_keysrc *src);
void cv_keysrc_release(struct cv_keysrc *src);

/* A master key (cv_key_t) for src; takes the caller's reference (crypto.c). */
cv_rc cv_crypto_key_from_src(struct cv_keysrc *src, cv_key_t **out);

/* The source behind a master key, or NULL (crypto.c). */
struct cv_keysrc *cv_crypto_key_src(const cv_key_t *k);

#endif
