/*
 * users.c - account administration shared by the CLI and the admin API (see users.h).
 */
#include "auth/users.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/password.h"
#include "core/pool.h"

#define UPDATE_TRIES 8

static const char *const action_names[] = {
	[CV_USERS_DISABLE] = "disable",
	[CV_USERS_ENABLE] = "enable",
	[CV_USERS_REVOKE_SESSIONS] = "revoke-sessions",
	[CV_USERS_RESET_MFA] = "reset-mfa",
};

cv_rc cv_users_action_parse(const char *name, cv_users_action *out)
{
	for (size_t i = 0; name && i < sizeof action_names / sizeof action_names[0]; i++)
		if (strcmp(name, action_names[i]) == 0) {
			*out = (cv_users_action)i;
			return CV_OK;
		}
	return CV_E_INVALID;
}

void cv_users_enrolment_wipe(cv_users_enrolment_t *enr)
{
	if (enr)
		sodium_memzero(enr, sizeof *enr);
}

/* A new TOTP seed (sealed under the store's token key) and recovery codes for a. */
static cv_rc enrol(cv_store_t *s, cv_account_t *a, cv_users_enrolment_t *enr)
{
	uint8_t seed[CV_TOTP_SEED_BYTES];
	cv_buf_t sealed, uri;
	cv_buf_init(&sealed, 4096);
	cv_buf_init(&uri, CV_TOTP_QR_TEXT_MAX);
	cv_totp_seed_new(seed);
	cv_totp_recovery_new(enr->codes);
	cv_rc rc = cv_store_token_seal(s, "totp-seed", seed, sizeof seed, &sealed);
	if (!rc)
		rc = cv_totp_uri(CV_USERS_ISSUER, a->username, seed, sizeof seed, &uri);
	if (!rc && uri.len >= sizeof enr->uri)
		rc = CV_E_LIMIT;
	for (int i = 0; !rc && i < CV_TOTP_RECOVERY_COUNT; i++)
		rc = cv_totp_recovery_hash(enr->codes[i], a->recovery[i]);
	char *copy = rc ? NULL : strdup(sealed.data);
	if (!rc && !copy)
		rc = CV_E_NOMEM;
	if (!rc) {
		free(a->totp_sealed);
		a->totp_sealed = copy;
		a->mfa = true;
		a->totp_last_step = -1;
		a->recovery_used = 0;
		memcpy(enr->uri, uri.data, uri.len + 1);
		enr->enrolled = true;
	} else {
		cv_users_enrolment_wipe(enr);
	}
	sodium_memzero(seed, sizeof seed);
	if (uri.data)
		sodium_memzero(uri.data, uri.len);
	cv_buf_release(&uri);
	cv_buf_release(&sealed);
	return rc;
}

/* CV_OK when link is "" or names a resource that exists (not deleted). */
static cv_rc link_exists(cv_store_t *s, const char *link)
{
	if (!link || !link[0])
		return CV_OK;
	const char *slash = strchr(link, '/');
	char type[32];
	if (!slash || slash - link >= (long)sizeof type)
		return CV_E_INVALID;
	snprintf(type, sizeof type, "%.*s", (int)(slash - link), link);
	cv_pool_t pool;
	cv_store_version_t v;
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_store_read(s, type, slash + 1, 0, &pool, &v);
	if (!rc && v.deleted)
		rc = CV_E_NOTFOUND;
	cv_pool_release(&pool);
	return rc;
}

/* The account's password hash from a new password that meets the policy. */
static cv_rc set_password(cv_account_t *a, const char *password, char *why, size_t whylen)
{
	char hash[CV_PASSWORD_HASH_MAX];
	cv_rc rc = cv_password_check(NULL, a->username, password ? password : "", why, whylen);
	if (rc)
		return rc;
	rc = cv_password_hash(NULL, password, hash);
	if (!rc && strlen(hash) >= sizeof a->pwhash)
		rc = CV_E_INTERNAL;
	if (!rc)
		memcpy(a->pwhash, hash, strlen(hash) + 1);
	else
		snprintf(why, whylen, "the password could not be hashed");
	sodium_memzero(hash, sizeof hash);
	return rc;
}

cv_rc cv_users_create(cv_store_t *s, const cv_users_new_t *n, cv_account_t *out, cv_users_enrolment_t *enr,
		      char *why, size_t whylen)
{
	cv_role role;
	memset(out, 0, sizeof *out);
	memset(enr, 0, sizeof *enr);
	why[0] = '\0';
	if (cv_role_parse(n->role, &role)) {
		snprintf(why, whylen, "the role is one of patient, nurse, doctor, admin, billing, auditor, researcher");
		return CV_E_INVALID;
	}
	cv_rc rc = cv_account_name_check(n->username, why, whylen);
	if (!rc)
		rc = cv_account_link_check(role, n->link, why, whylen);
	if (!rc && (rc = cv_account_init(out, n->username, role, n->link)))
		snprintf(why, whylen, "the account could not be prepared");
	if (!rc)
		rc = set_password(out, n->password, why, whylen);
	if (!rc && (rc = link_exists(s, n->link)))
		snprintf(why, whylen, "%s %s", n->link,
			 rc == CV_E_NOTFOUND ? "does not exist: create it first" : "cannot be read");
	if (!rc && (cv_role_is_staff(role) || n->mfa) && (rc = enrol(s, out, enr)))
		snprintf(why, whylen, "MFA could not be set up");
	if (!rc && (rc = cv_account_create(s, out)))
		snprintf(why, whylen, rc == CV_E_CONFLICT ? "the user name is taken" : "the account could not be stored");
	if (rc) {
		cv_account_release(out);
		cv_users_enrolment_wipe(enr);
	}
	return rc;
}

static cv_rc change(cv_store_t *s, cv_account_t *a, cv_users_action act, cv_users_enrolment_t *enr)
{
	switch (act) {
	case CV_USERS_DISABLE:
		a->disabled = true;
		a->epoch++;
		return CV_OK;
	case CV_USERS_ENABLE:
		a->disabled = false;
		return CV_OK;
	case CV_USERS_REVOKE_SESSIONS:
		a->epoch++;
		return CV_OK;
	case CV_USERS_RESET_MFA:
		a->epoch++;
		return enrol(s, a, enr);
	}
	return CV_E_INVALID;
}

cv_rc cv_users_apply(cv_store_t *s, const char *key, bool by_id, cv_users_action act, cv_users_enrolment_t *enr,
		     cv_account_t *out)
{
	cv_rc rc = CV_E_CONFLICT;
	if (enr)
		memset(enr, 0, sizeof *enr);
	if (act == CV_USERS_RESET_MFA && !enr)
		return CV_E_INVALID;
	for (int tries = 0; rc == CV_E_CONFLICT && tries < UPDATE_TRIES; tries++) {
		cv_account_t a;
		rc = by_id ? cv_account_get(s, key, &a) : cv_account_find(s, key, &a);
		if (rc)
			return rc;
		rc = change(s, &a, act, enr);
		if (!rc)
			rc = cv_account_update(s, &a);
		if (!rc && out)
			*out = a;
		else
			cv_account_release(&a);
	}
	if (rc && enr)
		cv_users_enrolment_wipe(enr);
	return rc;
}
