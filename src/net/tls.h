/*
 * tls.h - TLS material: the development certificate and loading PEM files.
 */
#ifndef CV_NET_TLS_H
#define CV_NET_TLS_H

#include <stddef.h>

#include "core/rc.h"

/* The GnuTLS priority string: TLS 1.3 and 1.2 only, AEAD suites only
 * (AES-GCM, ChaCha20-Poly1305), ECDHE key exchange, no compression. */
extern const char cv_tls_priorities[];

/* Generates a self-signed ECDSA P-256 certificate for localhost (SAN DNS
 * localhost, IP 127.0.0.1 and ::1), valid 825 days, and writes it and its key
 * as PEM (key file mode 0600, both created with O_EXCL). */
cv_rc cv_tls_generate_dev_cert(const char *cert_path, const char *key_path, char *err, size_t errlen);

/* Reads a whole PEM file (at most 1 MiB) into a NUL-terminated malloc'd
 * string. With private set, refuses a file group or others may read. */
cv_rc cv_tls_read_pem(const char *path, int private_key, char **out, char *err, size_t errlen);

#endif
