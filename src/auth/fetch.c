/*
 * fetch.c - the outbound JWKS fetch over libcurl (see fetch.h). Every option
 * that could widen the request (protocols, redirects, proxies, cookies,
 * decoding) is set explicitly, so a libcurl default or an environment
 * variable (https_proxy, CURL_CA_BUNDLE...) never decides it.
 */
#include "auth/fetch.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#ifndef CV_VERSION
#define CV_VERSION "0"
#endif

typedef struct sink {
	cv_buf_t *out;
	int toobig; /* the body passed CV_FETCH_MAX or out's cap */
} sink_t;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_rc = CURLE_FAILED_INIT;

/* curl_global_init is not thread-safe in every libcurl, hence once; GnuTLS's
 * own global init, which it calls, is reference-counted and thread-safe. */
static void global_init(void)
{
	init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void say(char *why, size_t whylen, const char *msg)
{
	if (why && whylen)
		snprintf(why, whylen, "%s", msg);
}

cv_rc cv_fetch_url_check(const char *url, char *why, size_t whylen)
{
	char *part = NULL;
	cv_rc rc = CV_E_INVALID;
	if (!url || strncasecmp(url, "https://", 8) != 0) {
		say(why, whylen, "the jwks url must start with https://");
		return CV_E_INVALID;
	}
	size_t n = strlen(url);
	if (n > CV_FETCH_URL_MAX) {
		say(why, whylen, "the jwks url is too long");
		return CV_E_INVALID;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] == 0x7f) {
			say(why, whylen, "the jwks url holds white space or control characters");
			return CV_E_INVALID;
		}
	CURLU *u = curl_url();
	if (!u)
		return CV_E_NOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		say(why, whylen, "the jwks url is not a valid url");
		goto out;
	}
	CURLUcode user = curl_url_get(u, CURLUPART_USER, &part, 0);
	curl_free(part);
	part = NULL;
	CURLUcode pass = curl_url_get(u, CURLUPART_PASSWORD, &part, 0);
	curl_free(part);
	part = NULL;
	if (user != CURLUE_NO_USER || pass != CURLUE_NO_PASSWORD) {
		say(why, whylen, "the jwks url must not hold a user name or password");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &part, 0) != CURLUE_OK || !part || !part[0]) {
		say(why, whylen, "the jwks url has no host");
		goto out;
	}
	rc = CV_OK;
out:
	curl_free(part);
	curl_url_cleanup(u);
	return rc;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
	sink_t *s = arg;
	size_t n = size * nmemb;
	if (s->out->len + n > CV_FETCH_MAX || cv_buf_append(s->out, p, n)) {
		s->toobig = 1;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	return n;
}

/* Sets the options of the one request; 0 when all were accepted. */
static int set_options(CURL *h, const char *url, const char *ca_file, struct curl_slist *headers, sink_t *s)
{
	int bad = 0;
	bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https") != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_MAXREDIRS, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK; /* "" : no proxy, whatever the environment says */
	bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
	if (ca_file && ca_file[0])
		bad |= curl_easy_setopt(h, CURLOPT_CAINFO, ca_file) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CV_FETCH_CONNECT_TIMEOUT_MS) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)CV_FETCH_TIMEOUT_MS) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CV_FETCH_MAX) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, "carevault/" CV_VERSION) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_WRITEDATA, s) != CURLE_OK;
	return bad;
}

cv_rc cv_fetch_jwks(const char *url, const char *ca_file, cv_buf_t *out, char *why, size_t whylen)
{
	CURL *h = NULL;
	struct curl_slist *headers = NULL;
	sink_t s = { .out = out, .toobig = 0 };
	long status = 0;
	cv_rc rc = cv_fetch_url_check(url, why, whylen);

	cv_buf_reset(out);
	if (rc)
		return rc;
	pthread_once(&init_once, global_init);
	if (init_rc != CURLE_OK) {
		say(why, whylen, "libcurl could not start");
		return CV_E_IO;
	}
	rc = CV_E_NOMEM;
	h = curl_easy_init();
	headers = h ? curl_slist_append(NULL, "Accept: application/jwk-set+json, application/json") : NULL;
	if (!headers)
		goto out;
	if (set_options(h, url, ca_file, headers, &s)) {
		say(why, whylen, "libcurl refused an option");
		rc = CV_E_INTERNAL;
		goto out;
	}
	CURLcode res = curl_easy_perform(h);
	if (s.toobig || res == CURLE_FILESIZE_EXCEEDED) {
		if (why && whylen)
			snprintf(why, whylen, "the jwks is larger than %u bytes", CV_FETCH_MAX);
		rc = CV_E_LIMIT;
		goto out;
	}
	if (res != CURLE_OK) {
		if (why && whylen)
			snprintf(why, whylen, "the jwks could not be fetched: %s", curl_easy_strerror(res));
		rc = res == CURLE_OUT_OF_MEMORY ? CV_E_NOMEM : CV_E_IO;
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200) {
		if (why && whylen)
			snprintf(why, whylen, "the jwks url answered http %ld, not 200 (redirects are not followed)", status);
		rc = CV_E_IO;
		goto out;
	}
	rc = CV_OK;
out:
	if (rc)
		cv_buf_reset(out);
	curl_slist_free_all(headers);
	if (h)
		curl_easy_cleanup(h);
	return rc;
}
