/*
 * rc.h - the one status type of carevault.
 *
 * Every fallible function returns a cv_rc in a local named `rc`; results travel
 * through out-parameters. CV_OK is zero so `if (rc)` reads "on failure".
 * The mapping to HTTP statuses lives in fhir/outcome (one place).
 */
#ifndef CV_CORE_RC_H
#define CV_CORE_RC_H

typedef enum cv_rc {
	CV_OK = 0,
	CV_E_NOMEM,        /* allocation failed */
	CV_E_INVALID,      /* the input is malformed or fails validation */
	CV_E_NOTFOUND,     /* no such thing (or the caller may not know it exists) */
	CV_E_GONE,         /* it existed and was deleted */
	CV_E_CONFLICT,     /* the state changed under the caller (version clash) */
	CV_E_PRECONDITION, /* an If-Match style precondition failed */
	CV_E_DENIED,       /* authenticated, but not permitted */
	CV_E_UNAUTH,       /* no valid credential */
	CV_E_STORAGE,      /* the store failed */
	CV_E_LIMIT,        /* a bound was exceeded */
	CV_E_UNSUPPORTED,  /* a valid request for something not implemented */
	CV_E_IO,           /* file or socket I/O failed */
	CV_E_CRYPTO,       /* sealing, opening or key handling failed */
	CV_E_BUSY,         /* try again later (store unavailable, shutting down) */
	CV_E_INTERNAL,     /* a bug: an invariant did not hold */
	CV_E_ABORTED,      /* not applied because another part of the same unit failed */
	CV_E_AGAIN,        /* a key a write used was retired meanwhile: the store redoes it (internal to store/) */
} cv_rc;

/* Returns a short lowercase name for rc ("invalid", "not found"); never NULL. */
const char *cv_rc_str(cv_rc rc);

#endif
