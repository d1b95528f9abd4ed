/* rc.c - names for status codes. */
#include "core/rc.h"

const char *cv_rc_str(cv_rc rc)
{
	switch (rc) {
	case CV_OK: return "ok";
	case CV_E_NOMEM: return "out of memory";
	case CV_E_INVALID: return "invalid";
	case CV_E_NOTFOUND: return "not found";
	case CV_E_GONE: return "gone";
	case CV_E_CONFLICT: return "conflict";
	case CV_E_PRECONDITION: return "precondition failed";
	case CV_E_DENIED: return "denied";
	case CV_E_UNAUTH: return "unauthenticated";
	case CV_E_STORAGE: return "storage failure";
	case CV_E_LIMIT: return "limit exceeded";
	case CV_E_UNSUPPORTED: return "unsupported";
	case CV_E_IO: return "i/o error";
	case CV_E_CRYPTO: return "crypto failure";
	case CV_E_BUSY: return "busy";
	case CV_E_INTERNAL: return "internal error";
	case CV_E_ABORTED: return "aborted";
	case CV_E_AGAIN: return "again";
	}
	return "unknown";
}
