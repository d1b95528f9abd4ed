/*
 * auth.c - bearer-token authentication against the bootstrap credential.
 */
#include "auth/auth.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "crypto/crypto.h"

#define META_BOOTSTRAP "auth.bootstrap"

struct cv_auth {
	unsigned char bootstrap_hash[32]; /* SHA-256 of the bootstrap token */
	int have_bootstrap;               /* a bootstrap token exists */
};

cv_rc cv_auth_bootstrap_create(cv_store_t *s, char *out, size_t outlen)
{
	unsigned char hash[32];
	if (outlen < CV_TOKEN_MAX)
		return CV_E_LIMIT;
	cv_crypto_token("cvb_", out, outlen);
	cv_crypto_sha256(out, strlen(out), hash);
	cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = META_BOOTSTRAP,
			       .body = hash, .body_len = sizeof hash };
	cv_rc rc = cv_store_write_sync(s, &w);
	if (rc)
		cv_crypto_wipe(out, outlen);
	return rc;
}

cv_rc cv_auth_new(cv_store_t *s, cv_auth_t **out)
{
	cv_auth_t *a = calloc(1, sizeof *a);
	if (!a)
		return CV_E_NOMEM;
	cv_buf_t v;
	cv_buf_init(&v, 64);
	cv_rc rc = cv_store_meta_get(s, META_BOOTSTRAP, &v);
	if (!rc && v.len == sizeof a->bootstrap_hash) {
		memcpy(a->bootstrap_hash, v.data, v.len);
		a->have_bootstrap = 1;
	} else if (rc == CV_E_NOTFOUND || !rc) {
		rc = CV_OK; /* no credential: every protected request will get 401 */
	}
	cv_buf_release(&v);
	if (rc) {
		free(a);
		return rc;
	}
	*out = a;
	return CV_OK;
}

void cv_auth_free(cv_auth_t *a)
{
	if (!a)
		return;
	cv_crypto_wipe(a, sizeof *a);
	free(a);
}

cv_rc cv_auth_bearer(const cv_auth_t *a, const char *authorization, cv_principal_t *out)
{
	out->kind = CV_PRINCIPAL_NONE;
	out->id = NULL;
	if (!authorization)
		return CV_OK;
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
		return CV_E_UNAUTH;
	const char *tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	size_t len = strlen(tok);
	if (len == 0 || len > CV_TOKEN_MAX || !a->have_bootstrap)
		return CV_E_UNAUTH;
	unsigned char hash[32];
	cv_crypto_sha256(tok, len, hash);
	int same = cv_crypto_equal(hash, a->bootstrap_hash, sizeof hash);
	cv_crypto_wipe(hash, sizeof hash);
	if (!same)
		return CV_E_UNAUTH;
	out->kind = CV_PRINCIPAL_ADMIN;
	out->id = "bootstrap-admin";
	return CV_OK;
}
