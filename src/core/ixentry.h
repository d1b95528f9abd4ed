/*
 * ixentry.h - a search-index entry: what model/ extracts from a resource and
 * store/ keeps (blinded where it must be). Plain data, shared vocabulary.
 */
#ifndef CV_CORE_IXENTRY_H
#define CV_CORE_IXENTRY_H

#include <stddef.h>
#include <stdint.h>

/* A search-index entry of a resource version, as extracted from its content
 * (model/searchparam). The store blinds HASH keys (HMAC-SHA-256 under the
 * index key, with type and parameter) before a back end sees them; DATE and
 * NUM ranges are stored as they are (docs/SECURITY.md says what that leaks). */
typedef enum { CV_IX_HASH, CV_IX_DATE, CV_IX_NUM } cv_ix_kind;

typedef struct cv_ix_entry {
	cv_ix_kind kind;
	const char *param;  /* search parameter code, "name" */
	const char *key;    /* HASH: the normalised key text ("p:smi"); NUM: the unit ("" for none,
	                       "c|mg", "s|http://unitsofmeasure.org|mg") */
	size_t key_len;     /* HASH: its length */
	int64_t lo, hi;     /* DATE: the range covered, microseconds since the epoch, inclusive */
	double nlo, nhi;    /* NUM: the range covered, inclusive */
} cv_ix_entry_t;

#endif
