/*
 * tls.c - the development certificate (GnuTLS X.509 API) and PEM loading.
 */
#include "net/tls.h"

#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto/crypto.h"

const char cv_tls_priorities[] =
	"NONE:+VERS-TLS1.3:+VERS-TLS1.2:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:+AEAD:"
	"+ECDHE-ECDSA:+ECDHE-RSA:+SIGN-ALL:+GROUP-ALL:+COMP-NULL:%SAFE_RENEGOTIATION";

#define DEV_CERT_DAYS 825

static cv_rc write_file(const char *path, const gnutls_datum_t *d, mode_t mode, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %m", path);
		return CV_E_IO;
	}
	ssize_t n = write(fd, d->data, d->size);
	int ok = n == (ssize_t)d->size && fsync(fd) == 0;
	close(fd);
	if (!ok) {
		snprintf(err, errlen, "cannot write %s", path);
		unlink(path);
		return CV_E_IO;
	}
	return CV_OK;
}

static int add_names(gnutls_x509_crt_t crt)
{
	static const unsigned char v4[4] = { 127, 0, 0, 1 };
	static const unsigned char v6[16] = { [15] = 1 };
	int r = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "localhost", 9);
	if (!r)
		r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9, GNUTLS_FSAN_APPEND);
	if (!r)
		r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, v4, 4, GNUTLS_FSAN_APPEND);
	if (!r)
		r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, v6, 16, GNUTLS_FSAN_APPEND);
	return r;
}

static int fill_cert(gnutls_x509_crt_t crt, gnutls_x509_privkey_t key)
{
	unsigned char serial[16];
	cv_crypto_random(serial, sizeof serial);
	serial[0] &= 0x7f;
	time_t now = time(NULL);
	int r = gnutls_x509_crt_set_version(crt, 3);
	if (!r)
		r = gnutls_x509_crt_set_serial(crt, serial, sizeof serial);
	if (!r)
		r = gnutls_x509_crt_set_activation_time(crt, now - 60);
	if (!r)
		r = gnutls_x509_crt_set_expiration_time(crt, now + (time_t)DEV_CERT_DAYS * 86400);
	if (!r)
		r = add_names(crt);
	if (!r)
		r = gnutls_x509_crt_set_basic_constraints(crt, 0, -1);
	if (!r)
		r = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
	if (!r)
		r = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0);
	if (!r)
		r = gnutls_x509_crt_set_key(crt, key);
	if (!r)
		r = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
	return r;
}

cv_rc cv_tls_generate_dev_cert(const char *cert_path, const char *key_path, char *err, size_t errlen)
{
	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t kpem = { 0 }, cpem = { 0 };
	cv_rc rc = CV_E_CRYPTO;
	int r = gnutls_x509_privkey_init(&key);
	if (!r)
		r = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
						 GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
	if (!r)
		r = gnutls_x509_crt_init(&crt);
	if (!r)
		r = fill_cert(crt, key);
	if (!r)
		r = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &kpem);
	if (!r)
		r = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cpem);
	if (r) {
		snprintf(err, errlen, "cannot generate the development certificate: %s", gnutls_strerror(r));
		goto out;
	}
	rc = write_file(key_path, &kpem, 0600, err, errlen);
	if (!rc)
		rc = write_file(cert_path, &cpem, 0644, err, errlen);
out:
	if (kpem.data) {
		cv_crypto_wipe(kpem.data, kpem.size);
		gnutls_free(kpem.data);
	}
	gnutls_free(cpem.data);
	gnutls_x509_crt_deinit(crt);
	gnutls_x509_privkey_deinit(key);
	return rc;
}

cv_rc cv_tls_read_pem(const char *path, int private_key, char **out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		snprintf(err, errlen, "cannot open %s: %m", path);
		if (fd >= 0)
			close(fd);
		return CV_E_IO;
	}
	cv_rc rc = CV_OK;
	if (private_key && (st.st_mode & 077)) {
		snprintf(err, errlen, "%s is readable by group or others: run chmod 600 %s", path, path);
		rc = CV_E_DENIED;
	} else if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (1 << 20)) {
		snprintf(err, errlen, "%s is not a PEM file of a sensible size", path);
		rc = CV_E_INVALID;
	}
	char *buf = rc ? NULL : malloc((size_t)st.st_size + 1);
	if (!rc && !buf)
		rc = CV_E_NOMEM;
	if (!rc && read(fd, buf, (size_t)st.st_size) != st.st_size) {
		snprintf(err, errlen, "cannot read %s", path);
		rc = CV_E_IO;
	}
	close(fd);
	if (rc) {
		free(buf);
		return rc;
	}
	buf[st.st_size] = '\0';
	*out = buf;
	return CV_OK;
}
