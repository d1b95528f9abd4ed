/*
 * post.c - the audit trail's outbound POST (see post.h).
 */
#include "audit/post.h"

#include <pthread.h>
#include <stdio.h>
#include <strings.h>

#include <curl/curl.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Drops the answer's body. */
static size_t discard(char *p, size_t size, size_t nmemb, void *arg)
{
	return size * nmemb;
}

static int options(CURL *h, const char *url, const char *ca_file, struct curl_slist *headers, const char *json,
		   size_t len)
{
	int bad = 0;
	bad |= curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https") != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK;
	if (ca_file && ca_file[0])
		bad |= curl_easy_setopt(h, CURLOPT_CAINFO, ca_file) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_USERAGENT, "carevault/" CV_VERSION) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, json) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) != CURLE_OK;
	bad |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard) != CURLE_OK;
	return bad;
}

cv_rc cv_audit_post(const char *url, const char *ca_file, const char *json, size_t len, char *why, size_t whylen)
{
	if (!url || strncasecmp(url, "https://", 8) != 0) {
		snprintf(why, whylen, "the URL must start with https://");
		return CV_E_INVALID;
	}
	pthread_once(&init_once, global_init);
	if (init_rc != CURLE_OK) {
		snprintf(why, whylen, "libcurl could not start");
		return CV_E_IO;
	}
	CURL *h = curl_easy_init();
	struct curl_slist *headers = h ? curl_slist_append(NULL, "Content-Type: application/json") : NULL;
	cv_rc rc = CV_E_NOMEM;
	long status = 0;
	if (!headers)
		goto out;
	rc = CV_E_INTERNAL;
	if (options(h, url, ca_file, headers, json, len)) {
		snprintf(why, whylen, "libcurl refused an option");
		goto out;
	}
	CURLcode res = curl_easy_perform(h);
	rc = CV_E_IO;
	if (res != CURLE_OK) {
		snprintf(why, whylen, "%s", curl_easy_strerror(res));
		goto out;
	}
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status > 299) {
		snprintf(why, whylen, "the sink answered http %ld", status);
		goto out;
	}
	rc = CV_OK;
out:
	curl_slist_free_all(headers);
	if (h)
		curl_easy_cleanup(h);
	return rc;
}
