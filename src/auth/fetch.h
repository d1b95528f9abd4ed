/*
 * fetch.h - the one outbound request carevault makes: fetching the JWKS a
 * backend client registered by URL (SMART Backend Services, jwks_url).
 *
 * libcurl (GnuTLS flavour) does the HTTP and TLS (docs/decisions/0007). The
 * request is as narrow as it can be: https:// only, no redirect followed, TLS
 * 1.2 or later with the peer's certificate and host name verified, no proxy,
 * no cookies, no content decoding, a connect timeout of 5 s and a total one
 * of 10 s, and a body of at most CV_FETCH_MAX bytes.
 */
#ifndef CV_AUTH_FETCH_H
#define CV_AUTH_FETCH_H

#include <stddef.h>

#include "core/buf.h"
#include "core/rc.h"

#define CV_FETCH_MAX (64u << 10)        /* largest body accepted (CV_CLIENT_JWKS_MAX) */
#define CV_FETCH_URL_MAX 512            /* longest URL accepted (CV_CLIENT_URI_MAX) */
#define CV_FETCH_CONNECT_TIMEOUT_MS 5000
#define CV_FETCH_TIMEOUT_MS 10000

/*
 * Checks that url may be fetched: https://, at most CV_FETCH_URL_MAX bytes,
 * no white space or control characters, no user name or password, a host.
 * CV_OK or CV_E_INVALID (why, may be NULL, says what is wrong).
 */
cv_rc cv_fetch_url_check(const char *url, char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * GETs url (checked by cv_fetch_url_check) and puts the body into out
 * (reset first; its cap should be at least CV_FETCH_MAX). ca_file is a PEM
 * file of the CAs to trust; NULL or "" trusts the system bundle. Only an
 * HTTP 200 answer is a success: a redirect, any other status, a body over
 * CV_FETCH_MAX bytes (or over out's cap), a TLS failure or a timeout is not.
 *
 * Returns CV_OK; CV_E_INVALID for a URL refused; CV_E_LIMIT for a body too
 * large; CV_E_IO when the transfer failed or the answer was not 200;
 * CV_E_NOMEM. why (may be NULL) gets a short lowercase reason that never
 * holds any of the response. Safe to call from several threads at once.
 */
cv_rc cv_fetch_jwks(const char *url, const char *ca_file, cv_buf_t *out, char *why, size_t whylen)
	__attribute__((warn_unused_result));

#endif
