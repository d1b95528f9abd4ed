/*
 * test_server.c - deny by default at start-up (a route without a policy action
 * stops the server from starting), the development certificate, and PEM
 * loading rules (a private key readable by others is refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/server.h"
#include "net/tls.h"

static void handler(cv_exchange_t *ex)
{
	ex->status = 204;
}

static void route_without_action_is_refused(void **state)
{
	cv_config_t cfg;
	cv_server_t *srv = NULL;
	char err[256] = "";
	cv_config_defaults(&cfg);
	const cv_route_t routes[] = {
		{ "GET", "/healthz", CV_ACT_PUBLIC_HEALTH, handler },
		{ "GET", "/fhir/secret", CV_ACT_UNSET, handler },
	};
	assert_int_equal(cv_server_start(&cfg, routes, 2, NULL, NULL, &srv, err, sizeof err), CV_E_INVALID);
	assert_null(srv);
	assert_non_null(strstr(err, "/fhir/secret"));
	const cv_route_t no_handler[] = { { "GET", "/x", CV_ACT_FHIR_READ, NULL } };
	assert_int_equal(cv_server_start(&cfg, no_handler, 1, NULL, NULL, &srv, err, sizeof err), CV_E_INVALID);
}

static void dev_certificate_and_key_rules(void **state)
{
	char dir[] = "/tmp/cv-net-XXXXXX", cert[64], key[64], err[512];
	char *pem = NULL;
	assert_non_null(mkdtemp(dir));
	snprintf(cert, sizeof cert, "%s/cert.pem", dir);
	snprintf(key, sizeof key, "%s/key.pem", dir);
	assert_int_equal(cv_tls_generate_dev_cert(cert, key, err, sizeof err), CV_OK);
	struct stat st;
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	assert_int_equal(cv_tls_read_pem(cert, 0, &pem, err, sizeof err), CV_OK);
	assert_non_null(strstr(pem, "BEGIN CERTIFICATE"));
	free(pem);
	pem = NULL;
	assert_int_equal(cv_tls_read_pem(key, 1, &pem, err, sizeof err), CV_OK);
	assert_non_null(strstr(pem, "PRIVATE KEY"));
	free(pem);
	pem = NULL;
	/* never overwritten */
	assert_int_not_equal(cv_tls_generate_dev_cert(cert, key, err, sizeof err), CV_OK);
	assert_int_equal(chmod(key, 0644), 0);
	assert_int_equal(cv_tls_read_pem(key, 1, &pem, err, sizeof err), CV_E_DENIED);
	assert_non_null(strstr(err, "chmod 600"));
	assert_null(pem);
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(route_without_action_is_refused),
		cmocka_unit_test(dev_certificate_and_key_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
