/*
 * fold.h - the normal form of text for string search (libunistring).
 *
 * FHIR string search is case- and accent-insensitive: "Zoë", "ZOE" and "zoe"
 * match each other. A folded string is the Unicode case folding of the NFKD
 * decomposition of the input with every combining mark (general category M)
 * removed, white space runs collapsed to one space, and leading and trailing
 * space trimmed. The same function folds indexed values and search values.
 */
#ifndef CV_MODEL_FOLD_H
#define CV_MODEL_FOLD_H

#include <stddef.h>

#include "core/pool.h"
#include "core/rc.h"

#define CV_FOLD_MAX_IN (64u * 1024u) /* longest input folded */

/* Folds len bytes of UTF-8 at s into a NUL-terminated string in pool.
 * CV_E_INVALID for invalid UTF-8, CV_E_LIMIT over CV_FOLD_MAX_IN, CV_E_NOMEM. */
cv_rc cv_fold(const char *s, size_t len, cv_pool_t *pool, char **out, size_t *outlen);

/* Byte length of the first n characters (code points) of UTF-8 text s of len
 * bytes (len if it has fewer). */
size_t cv_fold_prefix(const char *s, size_t len, size_t n);

/* Number of characters (code points) in UTF-8 text s of len bytes. */
size_t cv_fold_chars(const char *s, size_t len);

#endif
