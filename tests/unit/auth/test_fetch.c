/*
 * test_fetch.c - the outbound JWKS fetch, attacked, against a local HTTPS
 * server (libmicrohttpd on 127.0.0.1 with a fresh self-signed certificate):
 * http://, file:// and credentials in the URL are refused before any
 * connection; the certificate is verified (refused against the system CAs);
 * a redirect is not followed; a non-200 answer, a body over the cap (with a
 * Content-Length, and streamed without one) fail; a good answer arrives whole.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/fetch.h"
#include "net/tls.h"

#define JWKS "{\"keys\":[]}"

typedef struct fx {
	char dir[32];
	char cert[64], key[64];
	char *cert_pem, *key_pem;
	struct MHD_Daemon *d;
	unsigned port;
	char url[128];
} fx_t;

static ssize_t stream(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)cls;
	if (pos > 2 * CV_FETCH_MAX)
		return MHD_CONTENT_READER_END_OF_STREAM;
	memset(buf, ' ', max);
	return (ssize_t)max;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				 const char *version, const char *upload, size_t *upload_size, void **state)
{
	static char big[CV_FETCH_MAX + 1];
	struct MHD_Response *r;
	unsigned status = MHD_HTTP_OK;
	(void)cls, (void)method, (void)version, (void)upload, (void)upload_size, (void)state;
	if (strcmp(url, "/jwks") == 0) {
		r = MHD_create_response_from_buffer(strlen(JWKS), (void *)JWKS, MHD_RESPMEM_PERSISTENT);
	} else if (strcmp(url, "/big") == 0) {
		memset(big, ' ', sizeof big);
		r = MHD_create_response_from_buffer(sizeof big, big, MHD_RESPMEM_PERSISTENT);
	} else if (strcmp(url, "/stream") == 0) {
		r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream, NULL, NULL);
	} else if (strcmp(url, "/redirect") == 0) {
		r = MHD_create_response_from_buffer(strlen(JWKS), (void *)JWKS, MHD_RESPMEM_PERSISTENT);
		MHD_add_response_header(r, "Location", "/jwks");
		status = MHD_HTTP_FOUND;
	} else {
		r = MHD_create_response_from_buffer(strlen(JWKS), (void *)JWKS, MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_NOT_FOUND;
	}
	enum MHD_Result ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	char err[256];
	assert_non_null(f);
	snprintf(f->dir, sizeof f->dir, "/tmp/cvfetchXXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->cert, sizeof f->cert, "%s/cert.pem", f->dir);
	snprintf(f->key, sizeof f->key, "%s/key.pem", f->dir);
	assert_int_equal(cv_tls_generate_dev_cert(f->cert, f->key, err, sizeof err), CV_OK);
	assert_int_equal(cv_tls_read_pem(f->cert, 0, &f->cert_pem, err, sizeof err), CV_OK);
	assert_int_equal(cv_tls_read_pem(f->key, 1, &f->key_pem, err, sizeof err), CV_OK);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->d = MHD_start_daemon(MHD_USE_TLS | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, on_access, NULL,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_HTTPS_MEM_CERT, f->cert_pem,
				MHD_OPTION_HTTPS_MEM_KEY, f->key_pem, MHD_OPTION_END);
	assert_non_null(f->d);
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT);
	assert_non_null(info);
	f->port = info->port;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	MHD_stop_daemon(f->d);
	unlink(f->cert);
	unlink(f->key);
	rmdir(f->dir);
	free(f->cert_pem);
	free(f->key_pem);
	free(f);
	return 0;
}

static cv_rc get(fx_t *f, const char *path, const char *ca, cv_buf_t *out, char *why, size_t whylen)
{
	char url[128];
	snprintf(url, sizeof url, "https://127.0.0.1:%u%s", f->port, path);
	return cv_fetch_jwks(url, ca, out, why, whylen);
}

static void refused_urls(void **state)
{
	fx_t *f = *state;
	char why[200], url[128];
	cv_buf_t out;
	cv_buf_init(&out, CV_FETCH_MAX);
	snprintf(url, sizeof url, "http://127.0.0.1:%u/jwks", f->port);
	assert_int_equal(cv_fetch_jwks(url, f->cert, &out, why, sizeof why), CV_E_INVALID);
	assert_non_null(strstr(why, "https://"));
	assert_int_equal(cv_fetch_jwks("file:///etc/passwd", f->cert, &out, why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_fetch_jwks("ftp://127.0.0.1/jwks", f->cert, &out, why, sizeof why), CV_E_INVALID);
	snprintf(url, sizeof url, "https://user:pw@127.0.0.1:%u/jwks", f->port);
	assert_int_equal(cv_fetch_jwks(url, f->cert, &out, why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_fetch_jwks("https://", f->cert, &out, why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_fetch_jwks("https://a.example/ x", f->cert, &out, why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_fetch_jwks(NULL, f->cert, &out, why, sizeof why), CV_E_INVALID);
	assert_int_equal(out.len, 0);
	cv_buf_release(&out);
}

static void fetched(void **state)
{
	fx_t *f = *state;
	char why[200];
	cv_buf_t out;
	cv_buf_init(&out, CV_FETCH_MAX);
	assert_int_equal(get(f, "/jwks", f->cert, &out, why, sizeof why), CV_OK);
	assert_string_equal(out.data, JWKS);
	cv_buf_release(&out);
}

static void certificate_verified(void **state)
{
	fx_t *f = *state;
	char why[200];
	cv_buf_t out;
	cv_buf_init(&out, CV_FETCH_MAX);
	assert_int_equal(get(f, "/jwks", NULL, &out, why, sizeof why), CV_E_IO);
	assert_int_equal(out.len, 0);
	cv_buf_release(&out);
}

static void redirect_not_followed(void **state)
{
	fx_t *f = *state;
	char why[200];
	cv_buf_t out;
	cv_buf_init(&out, CV_FETCH_MAX);
	assert_int_equal(get(f, "/redirect", f->cert, &out, why, sizeof why), CV_E_IO);
	assert_non_null(strstr(why, "302"));
	assert_int_equal(out.len, 0);
	cv_buf_release(&out);
}

static void not_200(void **state)
{
	fx_t *f = *state;
	char why[200];
	cv_buf_t out;
	cv_buf_init(&out, CV_FETCH_MAX);
	assert_int_equal(get(f, "/missing", f->cert, &out, why, sizeof why), CV_E_IO);
	assert_non_null(strstr(why, "404"));
	assert_null(strstr(why, "keys"));
	assert_int_equal(out.len, 0);
	cv_buf_release(&out);
}

static void oversized(void **state)
{
	fx_t *f = *state;
	char why[200];
	cv_buf_t out;
	cv_buf_init(&out, CV_FETCH_MAX);
	assert_int_equal(get(f, "/big", f->cert, &out, why, sizeof why), CV_E_LIMIT);
	assert_int_equal(out.len, 0);
	assert_int_equal(get(f, "/stream", f->cert, &out, why, sizeof why), CV_E_LIMIT);
	assert_int_equal(out.len, 0);
	cv_buf_release(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(refused_urls),
		cmocka_unit_test(fetched),
		cmocka_unit_test(certificate_verified),
		cmocka_unit_test(redirect_not_followed),
		cmocka_unit_test(not_200),
		cmocka_unit_test(oversized),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
