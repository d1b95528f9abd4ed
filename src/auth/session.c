/*
 * session.c - login, portal sessions and their throttling records (see session.h).
 */
#include "auth/session.h"

#include <json-c/json.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/password.h"
#include "auth/throttle.h"
#include "auth/totp.h"
#include "auth/users.h"
#include "core/pool.h"
#include "model/json.h"
#include "core/time.h"
#include "auth/record.h"
#include "crypto/crypto.h"

#define SESSION_TYPE CV_SESSION_TYPE
#define THROTTLE_TYPE CV_THROTTLE_TYPE
#define WRITE_TRIES 4
#define LOCK_RETRY_S 3600 /* Retry-After for a lock only an administrator lifts */
#define US 1000000LL

static const cv_throttle_policy_t throttle_policy = CV_THROTTLE_POLICY_DEFAULT;

/* ---------------------------------------------------------------- records */

static cv_store_write_t record_write(const char *type, const char *id, int64_t expect, const char *body)
{
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = type, .id = id, .expect_version = expect,
			       .updated_us = cv_time_now_us(), .body = (const uint8_t *)body, .body_len = strlen(body) };
	return w;
}

/* ---------------------------------------------------------------- throttling */

typedef struct counters {
	char acct_id[65], addr_id[65];
	cv_throttle_account_t acct;
	cv_throttle_address_t addr;
	int64_t acct_v, addr_v;
} counters_t;

static cv_rc counters_load(cv_store_t *s, counters_t *c)
{
	json_object *o;
	cv_rc rc = cv_record_read(s, THROTTLE_TYPE, c->acct_id, &o, &c->acct_v);
	if (rc)
		return rc;
	c->acct.failures = (uint32_t)cv_record_int(o, "n");
	c->acct.last_failure = cv_record_int(o, "t");
	json_object_put(o);
	rc = cv_record_read(s, THROTTLE_TYPE, c->addr_id, &o, &c->addr_v);
	if (rc)
		return rc;
	c->addr.failures = (uint32_t)cv_record_int(o, "n");
	c->addr.window_start = cv_record_int(o, "t");
	json_object_put(o);
	return CV_OK;
}

static void counters_init(counters_t *c, const char *username, const char *address)
{
	char key[CV_USERNAME_MAX + 80];
	size_t i = 0;
	memset(c, 0, sizeof *c);
	i = (size_t)snprintf(key, sizeof key, "acct:");
	for (const char *p = username ? username : ""; *p && i + 1 < sizeof key; p++)
		key[i++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : *p;
	key[i] = '\0';
	cv_crypto_sha256_hex(key, c->acct_id);
	snprintf(key, sizeof key, "addr:%s", address ? address : "-");
	cv_crypto_sha256_hex(key, c->addr_id);
}

static cv_rc counter_write(cv_store_t *s, const char *id, int64_t expect, uint32_t n, int64_t t)
{
	char body[96];
	snprintf(body, sizeof body, "{\"n\":%u,\"t\":%lld}", n, (long long)t);
	cv_store_write_t w = record_write(THROTTLE_TYPE, id, expect, body);
	return cv_store_write_sync(s, &w);
}

/* Records a failure in both counters (re-read and retried when another node wrote them). */
static cv_rc record_failure(cv_store_t *s, counters_t *c, int64_t now)
{
	cv_rc rc = CV_E_CONFLICT;
	for (int i = 0; rc == CV_E_CONFLICT && i < WRITE_TRIES; i++) {
		if (i && (rc = counters_load(s, c)))
			return rc;
		cv_throttle_failure(&throttle_policy, &c->acct, &c->addr, now);
		rc = counter_write(s, c->acct_id, c->acct_v, c->acct.failures, c->acct.last_failure);
		if (!rc)
			rc = counter_write(s, c->addr_id, c->addr_v, c->addr.failures, c->addr.window_start);
		if (!rc)
			break;
	}
	return rc;
}

static cv_rc record_success(cv_store_t *s, counters_t *c)
{
	if (!c->acct.failures)
		return CV_OK;
	cv_throttle_success(&c->acct);
	cv_rc rc = counter_write(s, c->acct_id, c->acct_v, 0, 0);
	return rc == CV_E_CONFLICT ? CV_OK : rc; /* someone else wrote it: their count stands */
}

/* ---------------------------------------------------------------- login */

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[CV_PASSWORD_HASH_MAX];

static void dummy_make(void)
{
	if (cv_password_hash(NULL, "no account has this password, it only costs time", dummy_hash))
		dummy_hash[0] = '\0';
}

/* The password check, at the same cost whether or not the account exists. */
static bool password_ok(const cv_account_t *a, bool exists, const char *password)
{
	if (!exists || !a->pwhash[0]) {
		pthread_once(&dummy_once, dummy_make);
		cv_rc spent = cv_password_verify(dummy_hash, password ? password : "");
		(void)spent; /* only the time it takes matters */
		return false;
	}
	return cv_password_verify(a->pwhash, password ? password : "") == CV_OK;
}

/* The second factor: a TOTP code or an unused recovery code; marks it used in a. */
static bool second_factor(cv_store_t *s, cv_account_t *a, const cv_login_t *in)
{
	if (in->code && in->code[0] && a->totp_sealed) {
		cv_buf_t seed;
		cv_buf_init(&seed, 256);
		int64_t step = 0;
		bool ok = cv_store_token_open(s, "totp-seed", a->totp_sealed, &seed) == CV_OK &&
			  cv_totp_verify((const uint8_t *)seed.data, seed.len, in->code, in->now_us / US,
					 a->totp_last_step, &step) == CV_OK;
		if (seed.data)
			sodium_memzero(seed.data, seed.alloc);
		cv_buf_release(&seed);
		if (ok)
			a->totp_last_step = step;
		return ok;
	}
	if (in->recovery && in->recovery[0]) {
		size_t i = 0;
		if (cv_totp_recovery_find(in->recovery, (const uint8_t(*)[CV_TOTP_RECOVERY_HASH])a->recovery,
					  CV_RECOVERY_CODES, &i) != CV_OK ||
		    (a->recovery_used & (1u << i)))
			return false;
		a->recovery_used |= (uint16_t)(1u << i);
		return true;
	}
	return false;
}

static cv_rc session_open(cv_store_t *s, const cv_account_t *a, int64_t now_us, char token[CV_SESSION_TOKEN_MAX],
			  cv_session_info_t *info)
{
	char body[512];
	memset(info, 0, sizeof *info);
	cv_crypto_token("cvs_", token, CV_SESSION_TOKEN_MAX);
	cv_crypto_token("", info->csrf, sizeof info->csrf);
	cv_crypto_sha256_hex(token, info->sid);
	snprintf(body, sizeof body,
		 "{\"sid\":\"%s\",\"user\":\"%s\",\"epoch\":%lld,\"created_us\":%lld,\"seen_us\":%lld,\"csrf\":\"%s\"}",
		 info->sid, a->id, (long long)a->epoch, (long long)now_us, (long long)now_us, info->csrf);
	cv_store_write_t w = record_write(SESSION_TYPE, info->sid, 0, body);
	cv_rc rc = cv_store_write_sync(s, &w);
	sodium_memzero(body, sizeof body);
	if (rc) {
		sodium_memzero(token, CV_SESSION_TOKEN_MAX);
		return rc;
	}
	snprintf(info->user, sizeof info->user, "%s", a->id);
	snprintf(info->username, sizeof info->username, "%s", a->username);
	snprintf(info->role, sizeof info->role, "%s", cv_role_name(a->role));
	snprintf(info->link, sizeof info->link, "%s", a->link);
	info->created_us = info->seen_us = now_us;
	return CV_OK;
}

/* The checks after the throttle said yes: account, password, state, second factor. */
static cv_login_result attempt(cv_store_t *s, const cv_login_t *in, cv_account_t *a, cv_rc *rc)
{
	cv_rc found = cv_account_find(s, in->username, a);
	if (found && found != CV_E_NOTFOUND) {
		*rc = found;
		return CV_LOGIN_DENIED;
	}
	if (!password_ok(a, found == CV_OK, in->password) || a->disabled)
		return CV_LOGIN_DENIED;
	if (!a->mfa)
		return cv_role_is_staff(a->role) ? CV_LOGIN_DENIED : CV_LOGIN_OK; /* staff without MFA: refused */
	if ((!in->code || !in->code[0]) && (!in->recovery || !in->recovery[0]))
		return CV_LOGIN_MFA_REQUIRED;
	return second_factor(s, a, in) ? CV_LOGIN_OK : CV_LOGIN_DENIED;
}

/* Writes what the login changed in the account (used code, rehash); a
 * concurrent change (another login using a code) refuses this one. */
static cv_rc commit_account(cv_store_t *s, cv_account_t *a, const char *password)
{
	if (cv_password_needs_rehash(a->pwhash, NULL)) {
		char hash[CV_PASSWORD_HASH_MAX];
		if (cv_password_hash(NULL, password, hash) == CV_OK && strlen(hash) < sizeof a->pwhash)
			memcpy(a->pwhash, hash, strlen(hash) + 1);
		sodium_memzero(hash, sizeof hash);
	}
	return cv_account_update(s, a);
}

static void settling(const cv_login_t *in, cv_login_result res, const cv_account_t *a)
{
	if (in->settling)
		in->settling(in->settling_arg, res, a);
}

cv_rc cv_session_login(cv_store_t *s, const cv_login_t *in, cv_login_result *res, char token[CV_SESSION_TOKEN_MAX],
		       cv_session_info_t *info, int64_t *retry_after)
{
	counters_t c;
	cv_throttle_decision_t d;
	cv_account_t a;
	int64_t now = in->now_us / US;
	*res = CV_LOGIN_DENIED;
	*retry_after = 0;
	memset(&a, 0, sizeof a);
	counters_init(&c, in->username, in->address);
	cv_rc rc = counters_load(s, &c);
	if (!rc)
		rc = cv_throttle_decide(&throttle_policy, &c.acct, &c.addr, now, &d);
	if (rc)
		return rc;
	if (!d.permitted) {
		*res = CV_LOGIN_THROTTLED;
		*retry_after = d.wait > 0 ? d.wait : LOCK_RETRY_S;
		settling(in, *res, NULL);
		return CV_OK;
	}
	*res = attempt(s, in, &a, &rc);
	if (!rc && *res == CV_LOGIN_OK && (a.mfa || cv_password_needs_rehash(a.pwhash, NULL)))
		rc = commit_account(s, &a, in->password);
	if (rc == CV_E_CONFLICT) {
		rc = CV_OK;
		*res = CV_LOGIN_DENIED;
	}
	if (!rc && *res == CV_LOGIN_OK)
		rc = record_success(s, &c); /* before the session: the login's last write carries its record */
	if (!rc)
		settling(in, *res, &a);
	if (!rc && *res == CV_LOGIN_OK)
		rc = session_open(s, &a, in->now_us, token, info);
	else if (!rc && *res == CV_LOGIN_DENIED)
		rc = record_failure(s, &c, now);
	if (rc)
		*res = CV_LOGIN_DENIED;
	cv_account_release(&a);
	return rc;
}

/* ---------------------------------------------------------------- checks */

static int64_t clamp_us(int64_t v)
{
	return v < US ? US : v;
}

/* Fills info from the session record o (of id sid) if it is still valid at now. */
static cv_rc session_valid(cv_store_t *s, json_object *o, const char *sid, const cv_session_limits_t *lim,
			   int64_t now_us, cv_session_info_t *info)
{
	const char *user = cv_json_member_string(o, "user", &(int){ 0 }), *csrf = cv_json_member_string(o, "csrf", &(int){ 0 });
	int64_t created = cv_record_int(o, "created_us"), seen = cv_record_int(o, "seen_us");
	if (!user || !csrf || strlen(csrf) > CV_SESSION_CSRF_LEN || now_us - seen > clamp_us(lim->idle_us) ||
	    now_us - created > clamp_us(lim->absolute_us) || now_us < created)
		return CV_E_UNAUTH;
	cv_account_t a;
	cv_rc rc = cv_account_get(s, user, &a);
	if (rc)
		return rc == CV_E_NOTFOUND ? CV_E_UNAUTH : rc;
	if (a.disabled || a.epoch != cv_record_int(o, "epoch")) {
		cv_account_release(&a);
		return CV_E_UNAUTH;
	}
	memset(info, 0, sizeof *info);
	snprintf(info->sid, sizeof info->sid, "%s", sid);
	snprintf(info->user, sizeof info->user, "%s", a.id);
	snprintf(info->username, sizeof info->username, "%s", a.username);
	snprintf(info->role, sizeof info->role, "%s", cv_role_name(a.role));
	snprintf(info->link, sizeof info->link, "%s", a.link);
	snprintf(info->csrf, sizeof info->csrf, "%s", csrf);
	info->created_us = created;
	info->seen_us = seen;
	cv_account_release(&a);
	return CV_OK;
}

/* Records the session's last use (at most once a minute; a lost race is harmless). */
static void touch(cv_store_t *s, json_object *o, const char *sid, int64_t version, const cv_session_limits_t *lim,
		  int64_t now_us)
{
	int64_t every = clamp_us(lim->idle_us) / 4; /* so a session in use never looks idle */
	if (now_us - cv_record_int(o, "seen_us") < (every < CV_SESSION_TOUCH_US ? every : CV_SESSION_TOUCH_US))
		return;
	json_object *seen = json_object_new_int64(now_us);
	if (!seen || json_object_object_add(o, "seen_us", seen)) {
		json_object_put(seen);
		return;
	}
	const char *body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (!body)
		return;
	cv_store_write_t w = record_write(SESSION_TYPE, sid, version, body);
	(void)cv_store_write_sync(s, &w);
}

cv_rc cv_session_check(cv_store_t *s, const char *token, const cv_session_limits_t *lim, int64_t now_us,
		       cv_session_info_t *info)
{
	char sid[65];
	json_object *o = NULL;
	int64_t version = 0;
	if (!token || strncmp(token, "cvs_", 4) != 0 || strlen(token) >= CV_SESSION_TOKEN_MAX)
		return CV_E_UNAUTH;
	cv_crypto_sha256_hex(token, sid);
	cv_rc rc = cv_record_read(s, SESSION_TYPE, sid, &o, &version);
	if (!rc && !o)
		rc = CV_E_UNAUTH;
	if (!rc)
		rc = session_valid(s, o, sid, lim, now_us, info);
	if (!rc)
		touch(s, o, sid, version, lim, now_us);
	json_object_put(o);
	return rc;
}

cv_rc cv_session_end(cv_store_t *s, const char *sid)
{
	cv_rc rc = CV_E_CONFLICT;
	for (int i = 0; rc == CV_E_CONFLICT && i < WRITE_TRIES; i++) {
		json_object *o = NULL;
		int64_t version = 0;
		rc = cv_record_read(s, SESSION_TYPE, sid, &o, &version);
		int live = o != NULL;
		json_object_put(o);
		if (rc || !live)
			return rc;
		cv_store_write_t w = record_write(SESSION_TYPE, sid, version, "{}");
		w.deleted = true;
		rc = cv_store_write_sync(s, &w);
	}
	return rc;
}

cv_rc cv_session_end_all(cv_store_t *s, const char *user)
{
	return cv_users_apply(s, user, true, CV_USERS_REVOKE_SESSIONS, NULL, NULL);
}

typedef struct each_ctx {
	cv_store_t *s;
	const char *user;
	const cv_session_limits_t *lim;
	int64_t now_us;
	cv_rc (*fn)(void *arg, const cv_session_info_t *info);
	void *arg;
} each_ctx_t;

static cv_rc each_one(void *arg, const cv_store_hit_t *h)
{
	each_ctx_t *c = arg;
	cv_session_info_t info;
	json_object *o = json_tokener_parse((const char *)h->v.body);
	const char *user = cv_json_member_string(o, "user", &(int){ 0 }), *sid = cv_json_member_string(o, "sid", &(int){ 0 });
	cv_rc rc = CV_OK;
	if (user && sid && strcmp(user, c->user) == 0 && session_valid(c->s, o, sid, c->lim, c->now_us, &info) == CV_OK)
		rc = c->fn(c->arg, &info);
	json_object_put(o);
	return rc;
}

cv_rc cv_session_each(cv_store_t *s, const char *user, const cv_session_limits_t *lim, int64_t now_us,
		      cv_rc (*fn)(void *arg, const cv_session_info_t *info), void *arg)
{
	each_ctx_t c = { .s = s, .user = user, .lim = lim, .now_us = now_us, .fn = fn, .arg = arg };
	return cv_store_each_current(s, SESSION_TYPE, each_one, &c);
}
