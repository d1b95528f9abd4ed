/*
 * login.c - portal login, session information and logout (see login.h).
 * The cookie is __Host- prefixed, Secure, HttpOnly, SameSite=Strict, Path=/:
 * scripts cannot read it, other sites cannot send it, and no subdomain can
 * set it. Every failed login gets one answer, whatever failed.
 */
#include "net/login.h"

#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/account.h"
#include "auth/auth.h"
#include "auth/session.h"
#include "core/time.h"
#include "fhir/fhir.h"
#include "model/json.h"

static const cv_fhir_t *ctx(cv_exchange_t *ex)
{
	return ex->app;
}

static cv_session_limits_t limits(cv_exchange_t *ex)
{
	const cv_config_t *cfg = ctx(ex)->cfg;
	cv_session_limits_t l = { (int64_t)cfg->session_idle * 1000000, (int64_t)cfg->session_absolute * 1000000 };
	return l;
}

static void send_text(cv_exchange_t *ex, unsigned status, const char *json)
{
	ex->status = status;
	ex->content_type = "application/json";
	ex->no_store = true;
	if (cv_buf_puts(&ex->resp, json))
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
}

/* {"user":{...},"csrf_token":...,"created_us":..,"idle_timeout":..,"absolute_timeout":..} */
static void send_session(cv_exchange_t *ex, unsigned status, const cv_session_info_t *i)
{
	const cv_config_t *cfg = ctx(ex)->cfg;
	char *text = cv_pool_printf(ex->pool,
				    "{\"user\":{\"id\":\"%s\",\"username\":\"%s\",\"role\":\"%s\",\"link\":\"%s\"},"
				    "\"csrf_token\":\"%s\",\"created_us\":%lld,\"idle_timeout\":%u,\"absolute_timeout\":%u}",
				    i->user, i->username, i->role, i->link, i->csrf, (long long)i->created_us,
				    cfg->session_idle, cfg->session_absolute);
	if (!text) {
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return;
	}
	send_text(ex, status, text);
}

static void set_cookie(cv_exchange_t *ex, const char *token, unsigned max_age)
{
	char *c = cv_pool_printf(ex->pool, "%s=%s; Path=/; Max-Age=%u; Secure; HttpOnly; SameSite=Strict",
				 CV_SESSION_COOKIE, token, max_age);
	if (c)
		cv_exchange_add_header(ex, "Set-Cookie", c);
}

/* The login request's JSON body; answers 400 itself when it is not usable. */
static int login_input(cv_exchange_t *ex, cv_login_t *in)
{
	const char *err = NULL;
	json_object *o = NULL;
	int bad = 0;
	cv_rc rc = ex->body && ex->body_len ? cv_json_parse(ex->body, ex->body_len, &ctx(ex)->limits, ex->pool, &o, &err)
					    : CV_E_INVALID;
	if (!rc && cv_json_pool_own(ex->pool, o))
		rc = CV_E_NOMEM;
	if (!rc && json_object_is_type(o, json_type_object)) {
		in->username = cv_json_member_string(o, "username", &bad);
		in->password = cv_json_member_string(o, "password", &bad);
		in->code = cv_json_member_string(o, "code", &bad);
		in->recovery = cv_json_member_string(o, "recovery_code", &bad);
	}
	if (rc || bad || !in->username || !in->password || !json_object_is_type(o, json_type_object)) {
		cv_fhir_error(ex, 400, "invalid",
			      "send a JSON object with username and password (strings), and code or recovery_code");
		return 0;
	}
	return 1;
}

/* The login's audit record: whose account (by id: a user name is not
 * recorded), and how it went. Set as soon as the outcome is known, so that
 * the write settling it (the session, or the failure count) commits with it. */
typedef struct login_audit {
	cv_exchange_t *ex;
	const cv_login_t *in;
	bool settled;             /* the outcome (and the agent) is known */
	cv_audit_companion_t rec; /* no type (no record) until it is */
} login_audit_t;

static void login_agent(cv_exchange_t *ex, const char *username, const cv_account_t *a)
{
	cv_account_t found;
	if (!a && cv_account_find(ctx(ex)->store, username, &found) == CV_OK) {
		cv_audit_agent(ex, found.id, cv_role_name(found.role), found.link);
		cv_account_release(&found);
	} else if (a && a->id[0]) {
		cv_audit_agent(ex, a->id, cv_role_name(a->role), a->link);
	} else {
		cv_audit_agent(ex, "unknown-user", NULL, NULL);
	}
}

static void login_settling(void *arg, cv_login_result res, const cv_account_t *a)
{
	login_audit_t *la = arg;
	const cv_login_t *in = la->in;
	bool code = (in->code && in->code[0]) || (in->recovery && in->recovery[0]);
	const char *sub = res == CV_LOGIN_OK ? "login" : res == CV_LOGIN_MFA_REQUIRED ? "login-mfa-required"
			  : res == CV_LOGIN_THROTTLED ? "login-throttled" : code ? "mfa-failed" : "login-failed";
	cv_audit_kind(la->ex, CV_AUDIT_LOGIN, sub, 'E');
	login_agent(la->ex, in->username, a);
	la->settled = true;
	la->rec.type = res == CV_LOGIN_OK ? CV_SESSION_TYPE : res == CV_LOGIN_DENIED ? CV_THROTTLE_TYPE : NULL;
	la->rec.status = res == CV_LOGIN_OK ? 200 : 401;
}

cv_rc cv_login_attempt(cv_exchange_t *ex, cv_login_t *in, cv_login_result *res, cv_session_info_t *info)
{
	char token[CV_SESSION_TOKEN_MAX] = "";
	int64_t retry = 0;
	login_audit_t la = { .ex = ex, .in = in, .rec = { .ex = ex } };
	in->settling = login_settling;
	in->settling_arg = &la;
	cv_audit_companion_begin(&la.rec);
	cv_rc rc = cv_session_login(ctx(ex)->store, in, res, token, info, &retry);
	cv_audit_companion_end();
	sodium_memzero((void *)in->password, strlen(in->password));
	if (rc) /* the store failed: recorded as such (unless its record committed with a write) */
		cv_audit_kind(ex, CV_AUDIT_LOGIN, "login-error", 'E');
	if (rc && !la.settled)
		login_agent(ex, in->username, NULL);
	const char *after = !rc && *res == CV_LOGIN_THROTTLED ? cv_pool_printf(ex->pool, "%lld", (long long)retry) : NULL;
	if (after)
		cv_exchange_add_header(ex, "Retry-After", after);
	if (!rc && *res == CV_LOGIN_OK)
		set_cookie(ex, token, ctx(ex)->cfg->session_absolute);
	sodium_memzero(token, sizeof token);
	return rc;
}

void cv_login(cv_exchange_t *ex)
{
	cv_login_t in = { .address = ex->peer, .now_us = cv_time_now_us() };
	if (!login_input(ex, &in))
		return;
	cv_login_result res;
	cv_session_info_t info;
	cv_rc rc = cv_login_attempt(ex, &in, &res, &info);
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, "the login could not be completed; try again");
	} else if (res == CV_LOGIN_THROTTLED) {
		cv_fhir_error(ex, 429, "throttled", "too many failed logins: wait before trying again");
	} else if (res == CV_LOGIN_MFA_REQUIRED) {
		cv_fhir_error(ex, 401, "login", "a second factor is needed: send code (from the authenticator app) "
						"or recovery_code");
	} else if (res != CV_LOGIN_OK) {
		cv_fhir_error(ex, 401, "login", "the user name, password or code is wrong");
	} else {
		send_session(ex, 200, &info);
	}
	sodium_memzero(&info, sizeof info);
}

void cv_login_session(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_LOGIN, "session-read", 'R');
	const cv_principal_t *p = &ex->principal;
	cv_session_info_t i;
	memset(&i, 0, sizeof i);
	snprintf(i.user, sizeof i.user, "%s", p->id);
	snprintf(i.role, sizeof i.role, "%s", p->role);
	snprintf(i.link, sizeof i.link, "%s", p->link);
	snprintf(i.csrf, sizeof i.csrf, "%s", p->csrf);
	cv_account_t a;
	if (cv_account_get(ctx(ex)->store, p->id, &a) == CV_OK) {
		snprintf(i.username, sizeof i.username, "%s", a.username);
		cv_account_release(&a);
	}
	send_session(ex, 200, &i);
}

typedef struct list_ctx {
	cv_buf_t *out;
	const char *current;
	size_t n;
} list_ctx_t;

static cv_rc list_one(void *arg, const cv_session_info_t *i)
{
	list_ctx_t *c = arg;
	/* a session is shown by the first 16 hex digits of its record id: enough to tell them
	 * apart, useless as a credential (the cookie is not derivable from it) */
	return cv_buf_printf(c->out, "%s{\"id\":\"%.16s\",\"created_us\":%lld,\"last_used_us\":%lld,\"current\":%s}",
			     c->n++ ? "," : "", i->sid, (long long)i->created_us, (long long)i->seen_us,
			     strcmp(i->sid, c->current) == 0 ? "true" : "false");
}

void cv_login_sessions(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_LOGIN, "sessions-listed", 'R');
	cv_session_limits_t l = limits(ex);
	list_ctx_t c = { .out = &ex->resp, .current = ex->principal.session };
	cv_rc rc = cv_buf_puts(&ex->resp, "{\"sessions\":[");
	if (!rc)
		rc = cv_session_each(ctx(ex)->store, ex->principal.id, &l, cv_time_now_us(), list_one, &c);
	if (!rc)
		rc = cv_buf_puts(&ex->resp, "]}");
	if (rc) {
		cv_buf_reset(&ex->resp);
		cv_fhir_fail(ex, rc, NULL, "the sessions could not be listed");
		return;
	}
	ex->status = 200;
	ex->content_type = "application/json";
	ex->no_store = true;
}

static void logged_out(cv_exchange_t *ex, cv_rc rc)
{
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, "the session could not be ended; try again");
		return;
	}
	set_cookie(ex, "", 0);
	ex->status = 204;
}

void cv_logout(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_LOGIN, "logout", 'E');
	cv_audit_companion_t rec = { .ex = ex, .status = 204, .type = CV_SESSION_TYPE };
	cv_audit_companion_begin(&rec); /* the session's end commits with its record */
	cv_rc rc = cv_session_end(ctx(ex)->store, ex->principal.session);
	cv_audit_companion_end();
	logged_out(ex, rc);
}

void cv_logout_all(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_LOGIN, "logout-all", 'E');
	cv_audit_companion_t rec = { .ex = ex, .status = 204, .type = CV_ACCOUNT_TYPE };
	cv_audit_companion_begin(&rec); /* the account's new epoch commits with its record */
	cv_rc rc = cv_session_end_all(ctx(ex)->store, ex->principal.id);
	cv_audit_companion_end();
	logged_out(ex, rc);
}
