/*
 * authorize.c - the authorization endpoint: sign-in, consent, code (see
 * authorize.h).
 */
#include "net/authorize.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "audit/audit.h"
#include "auth/account.h"
#include "auth/client.h"
#include "auth/scope.h"
#include "auth/session.h"
#include "auth/token.h"
#include "core/log.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "fhir/fhir.h"
#include "fhir/search.h"
#include "net/login.h"

#define FORM_MAX 64
#define STATE_MAX 512
#define ID_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-."

/* The request parameters carried from step to step. */
enum { Q_RESPONSE_TYPE, Q_CLIENT_ID, Q_REDIRECT_URI, Q_SCOPE, Q_STATE, Q_AUD, Q_CHALLENGE, Q_METHOD, Q_NONCE, Q_LAUNCH, Q_COUNT };

static const char *const q_names[Q_COUNT] = { "response_type", "client_id", "redirect_uri", "scope", "state", "aud",
					      "code_challenge", "code_challenge_method", "nonce", "launch" };

/* One authorization request being handled. */
typedef struct areq {
	cv_exchange_t *ex;
	const cv_param_t *p;   /* the parameters (query or form) */
	size_t np;
	const char *q[Q_COUNT];
	cv_client_t client;
	bool have_client;
	const char *requested; /* the requested scopes the client may have (space-separated) */
} areq_t;

static const cv_fhir_t *ctx(cv_exchange_t *ex)
{
	return ex->app;
}

/* The single value of name; *dup is set when it is repeated. */
static const char *value(const areq_t *r, const char *name, int *dup)
{
	return cv_param_unique(r->p, r->np, name, dup);
}

/* ---------------------------------------------------------------- pages */

static void html_headers(cv_exchange_t *ex, const char *redirect_origin)
{
	const char *csp = cv_pool_printf(ex->pool,
					 "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
					 "frame-ancestors 'none'; form-action 'self'%s%s",
					 redirect_origin ? " " : "", redirect_origin ? redirect_origin : "");
	if (csp)
		cv_exchange_add_header(ex, "Content-Security-Policy", csp);
	cv_exchange_add_header(ex, "X-Frame-Options", "DENY");
	cv_exchange_add_header(ex, "Referrer-Policy", "no-referrer");
	ex->content_type = "text/html; charset=utf-8";
	ex->no_store = true;
}

static cv_rc page_start(cv_buf_t *b, const char *title)
{
	cv_rc rc = cv_buf_puts(b, "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
				  "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>");
	if (!rc)
		rc = cv_buf_html_escape(b, title);
	if (!rc)
		rc = cv_buf_puts(b, "</title><style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
				    "padding:0 1rem;color:#1b1f24}label{display:block;margin:.8rem 0 .2rem}"
				    "input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem}"
				    "button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem;font-size:1rem}"
				    ".err{color:#a40000;font-weight:600}ul{list-style:none;padding:0}li{margin:.4rem 0}"
				    "</style></head><body><h1>");
	if (!rc)
		rc = cv_buf_html_escape(b, title);
	return rc ? rc : cv_buf_puts(b, "</h1>");
}

static cv_rc hidden(cv_buf_t *b, const char *name, const char *v)
{
	cv_rc rc = cv_buf_printf(b, "<input type=\"hidden\" name=\"%s\" value=\"", name);
	if (!rc)
		rc = cv_buf_html_escape(b, v);
	return rc ? rc : cv_buf_puts(b, "\">");
}

/* The request's parameters as hidden inputs (scope under another name on
 * the consent form, whose checkboxes are named scope). */
static cv_rc hidden_request(cv_buf_t *b, const areq_t *r, bool consent)
{
	cv_rc rc = CV_OK;
	for (int i = 0; i < Q_COUNT && !rc; i++)
		if (r->q[i])
			rc = hidden(b, consent && i == Q_SCOPE ? "requested_scope" : q_names[i], r->q[i]);
	return rc;
}

static void send_page(areq_t *r, unsigned status, cv_buf_t *b, cv_rc rc)
{
	cv_exchange_t *ex = r->ex;
	if (!rc)
		rc = cv_buf_puts(b, "</body></html>");
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, "the page could not be made");
		return;
	}
	const char *ro = NULL;
	const char *u = r->q[Q_REDIRECT_URI];
	if (r->have_client && u) {
		const char *host = strstr(u, "://");
		size_t n = host ? strcspn(host + 3, "/?") + (size_t)(host + 3 - u) : 0;
		ro = n ? cv_pool_printf(ex->pool, "%.*s", (int)n, u) : NULL;
	}
	html_headers(ex, ro);
	ex->status = status;
	cv_buf_reset(&ex->resp);
	if (cv_buf_append(&ex->resp, b->data, b->len))
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
}

/* A page that stops here: the request cannot go back to the app. */
static void error_page(areq_t *r, unsigned status, const char *msg)
{
	cv_buf_t b;
	cv_buf_init(&b, 1u << 16);
	cv_rc rc = page_start(&b, "This sign-in request cannot be used");
	if (!rc)
		rc = cv_buf_puts(&b, "<p class=\"err\">");
	if (!rc)
		rc = cv_buf_html_escape(&b, msg);
	if (!rc)
		rc = cv_buf_puts(&b, "</p><p>Go back to the app and start again.</p>");
	r->have_client = false;
	send_page(r, status, &b, rc);
	cv_buf_release(&b);
}

static void login_page(areq_t *r, unsigned status, const char *msg)
{
	cv_buf_t b;
	cv_buf_init(&b, 1u << 16);
	char title[CV_CLIENT_NAME_MAX + 64];
	snprintf(title, sizeof title, "Sign in to let %s use your records", r->client.name);
	cv_rc rc = page_start(&b, title);
	if (!rc && msg) {
		rc = cv_buf_puts(&b, "<p class=\"err\" role=\"alert\">");
		if (!rc)
			rc = cv_buf_html_escape(&b, msg);
		if (!rc)
			rc = cv_buf_puts(&b, "</p>");
	}
	if (!rc)
		rc = cv_buf_puts(&b, "<form method=\"post\" action=\"/auth/authorize\">");
	if (!rc)
		rc = hidden(&b, "step", "login");
	if (!rc)
		rc = hidden_request(&b, r, false);
	if (!rc)
		rc = cv_buf_puts(&b,
				 "<label for=\"u\">User name</label><input type=\"text\" id=\"u\" name=\"username\" "
				 "autocomplete=\"username\" required autofocus>"
				 "<label for=\"p\">Password</label><input type=\"password\" id=\"p\" name=\"password\" "
				 "autocomplete=\"current-password\" required>"
				 "<label for=\"c\">Code from your authenticator app (staff: required)</label>"
				 "<input type=\"text\" id=\"c\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\">"
				 "<label for=\"r\">or a recovery code</label><input type=\"text\" id=\"r\" name=\"recovery_code\" "
				 "autocomplete=\"off\"><button type=\"submit\">Sign in</button></form>");
	send_page(r, status, &b, rc);
	cv_buf_release(&b);
}

/* A person-readable line for a scope ("read, search Observation in your records"). */
static const char *scope_words(const cv_scope_t *sc, cv_pool_t *pool)
{
	static const char *const ctx_words[] = { "your records", "the records you may see", "all records" };
	static const char *const named[] = { "", "confirm who you are", "know your user record", "see your name",
					     "open in your current context", "know which patient's record it opens",
					     "know the current encounter", "stay connected after you close it (refresh)",
					     "stay connected while you are online" };
	static const char *const verbs[] = { "create", "read", "update", "delete", "search" };
	if (sc->kind != CV_SCOPE_RESOURCE)
		return named[sc->kind];
	char what[64] = "";
	size_t n = 0;
	for (int i = 0; i < 5; i++)
		if (sc->perms & (1u << i))
			n += (size_t)snprintf(what + n, sizeof what - n, "%s%s", n ? ", " : "", verbs[i]);
	return cv_pool_printf(pool, "%s %s in %s%s", what, strcmp(sc->type, "*") == 0 ? "every kind of data" : sc->type,
			      ctx_words[sc->ctx], sc->query ? " (only those matching the app's filter)" : "");
}

typedef struct boxes {
	cv_buf_t *b;
	cv_pool_t *pool;
} boxes_t;

static cv_rc box_one(void *arg, const cv_scope_t *sc, const char *text)
{
	boxes_t *x = arg;
	cv_rc rc = cv_buf_puts(x->b, "<li><label><input type=\"checkbox\" name=\"scope\" value=\"");
	if (!rc)
		rc = cv_buf_html_escape(x->b, text);
	if (!rc)
		rc = cv_buf_puts(x->b, "\" checked> ");
	const char *w = scope_words(sc, x->pool);
	if (!rc)
		rc = w ? cv_buf_html_escape(x->b, w) : CV_E_NOMEM;
	if (!rc)
		rc = cv_buf_puts(x->b, " <code>");
	if (!rc)
		rc = cv_buf_html_escape(x->b, text);
	return rc ? rc : cv_buf_puts(x->b, "</code></label></li>");
}

/* Staff choose the patient for launch/patient; a patient is their own. */
static bool needs_patient_field(const areq_t *r, const char *role)
{
	return cv_scope_has(r->requested, CV_SCOPE_LAUNCH_PATIENT) && strcmp(role, "patient") != 0;
}

static void consent_page(areq_t *r, const char *username, const char *role, const char *csrf, unsigned status,
			 const char *msg)
{
	cv_buf_t b;
	cv_buf_init(&b, 1u << 17);
	char title[CV_CLIENT_NAME_MAX + 32];
	snprintf(title, sizeof title, "Allow %s?", r->client.name);
	boxes_t x = { .b = &b, .pool = r->ex->pool };
	cv_rc rc = page_start(&b, title);
	if (!rc && msg)
		rc = cv_buf_printf(&b, "<p class=\"err\" role=\"alert\">%s</p>", msg);
	if (!rc)
		rc = cv_buf_puts(&b, "<p>Signed in as <strong>");
	if (!rc)
		rc = cv_buf_html_escape(&b, username);
	if (!rc)
		rc = cv_buf_puts(&b, "</strong>. The app asks to do what is ticked below; untick what it should not do."
				     "</p><form method=\"post\" action=\"/auth/authorize\">");
	if (!rc)
		rc = hidden(&b, "step", "consent");
	if (!rc)
		rc = hidden(&b, "csrf", csrf);
	if (!rc)
		rc = hidden_request(&b, r, true);
	if (!rc)
		rc = cv_buf_puts(&b, "<ul>");
	if (!rc)
		rc = cv_scope_each(r->requested, box_one, &x, NULL, 0);
	if (!rc)
		rc = cv_buf_puts(&b, "</ul>");
	if (!rc && needs_patient_field(r, role))
		rc = cv_buf_puts(&b, "<label for=\"pt\">Patient id (the patient this app opens)</label>"
				     "<input type=\"text\" id=\"pt\" name=\"patient\" required>");
	if (!rc)
		rc = cv_buf_puts(&b, "<button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>"
				     "<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>");
	send_page(r, status, &b, rc);
	cv_buf_release(&b);
}

/* ---------------------------------------------------------------- redirects */

/* 302 to the app's redirect URI with name=value pairs (NULL-terminated list) and the state. */
static void back_to_app(areq_t *r, const char *const *kv)
{
	cv_exchange_t *ex = r->ex;
	cv_buf_t loc;
	cv_buf_init(&loc, 8192);
	const char *u = r->q[Q_REDIRECT_URI];
	char sep = strchr(u, '?') ? '&' : '?';
	cv_rc rc = cv_buf_puts(&loc, u);
	for (size_t i = 0; kv[i] && !rc; i += 2) {
		rc = cv_buf_printf(&loc, "%c%s=", sep, kv[i]);
		if (!rc)
			rc = cv_buf_url_encode(&loc, kv[i + 1]);
		sep = '&';
	}
	if (!rc && r->q[Q_STATE]) {
		rc = cv_buf_printf(&loc, "%cstate=", sep);
		if (!rc)
			rc = cv_buf_url_encode(&loc, r->q[Q_STATE]);
	}
	const char *l = rc ? NULL : cv_pool_strdup(ex->pool, loc.data);
	cv_buf_release(&loc);
	if (!l) {
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return;
	}
	cv_exchange_add_header(ex, "Location", l);
	cv_exchange_add_header(ex, "Referrer-Policy", "no-referrer");
	ex->status = 302;
	ex->no_store = true;
	ex->content_type = "text/plain";
	cv_buf_reset(&ex->resp);
	(void)cv_buf_puts(&ex->resp, "redirecting to the app\n");
}

static void app_error(areq_t *r, const char *error, const char *description)
{
	back_to_app(r, (const char *const[]){ "error", error, "error_description", description, NULL });
}

/* ---------------------------------------------------------------- checks */

/* The client is a registered, enabled app and the redirect URI one of its own,
 * exactly. Otherwise an error page (nothing is sent to an unchecked URI). */
static int check_client(areq_t *r)
{
	const char *id = r->q[Q_CLIENT_ID], *uri = r->q[Q_REDIRECT_URI];
	cv_rc rc = id && uri ? cv_client_get(ctx(r->ex)->store, id, &r->client) : CV_E_NOTFOUND;
	if (rc && rc != CV_E_NOTFOUND) {
		cv_fhir_fail(r->ex, rc, NULL, "the app could not be looked up; try again");
		return 0;
	}
	r->have_client = rc == CV_OK;
	bool ok = r->have_client && !r->client.disabled && r->client.type != CV_CLIENT_BACKEND;
	bool listed = false;
	for (size_t i = 0; ok && i < r->client.nredirect; i++)
		listed |= strcmp(r->client.redirect[i], uri) == 0;
	if (!ok || !listed) {
		error_page(r, 400, "The app is unknown or disabled, or the address to return to is not one it registered.");
		return 0;
	}
	return 1;
}

/* The rest of the request; errors go back to the app. */
static int check_request(areq_t *r)
{
	const char *rt = r->q[Q_RESPONSE_TYPE], *ch = r->q[Q_CHALLENGE], *m = r->q[Q_METHOD];
	if (!rt || strcmp(rt, "code") != 0) {
		app_error(r, "unsupported_response_type", "response_type must be code");
		return 0;
	}
	if (!m || strcmp(m, "S256") != 0 || !ch || strlen(ch) != CV_CHALLENGE_LEN ||
	    strspn(ch, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != CV_CHALLENGE_LEN) {
		app_error(r, "invalid_request", "PKCE is required: code_challenge_method S256 and its code_challenge");
		return 0;
	}
	if (!r->q[Q_AUD] || strcmp(r->q[Q_AUD], r->ex->base_url) != 0) {
		app_error(r, "invalid_request", "aud must be this server's FHIR base URL");
		return 0;
	}
	if (r->q[Q_LAUNCH]) {
		app_error(r, "invalid_request", "EHR launch is not supported: use the standalone launch");
		return 0;
	}
	if ((r->q[Q_STATE] && strlen(r->q[Q_STATE]) > STATE_MAX) ||
	    (r->q[Q_NONCE] && strlen(r->q[Q_NONCE]) > CV_NONCE_MAX)) {
		app_error(r, "invalid_request", "state or nonce is too long");
		return 0;
	}
	cv_buf_t g;
	cv_buf_init(&g, CV_CLIENT_SCOPE_MAX + 1);
	cv_rc rc = r->q[Q_SCOPE] && strlen(r->q[Q_SCOPE]) <= CV_CLIENT_SCOPE_MAX
			   ? cv_scope_intersect(r->client.scope, r->q[Q_SCOPE], &g)
			   : CV_E_INVALID;
	r->requested = rc || !g.len ? NULL : cv_pool_strdup(r->ex->pool, g.data);
	cv_buf_release(&g);
	if (!r->requested) {
		app_error(r, "invalid_scope", "none of the requested scopes can be granted to this app");
		return 0;
	}
	return 1;
}

/* Reads the request parameters; the consent form carries the request's scope as requested_scope. */
static int read_request(areq_t *r, bool consent)
{
	int dup = 0;
	for (int i = 0; i < Q_COUNT; i++)
		r->q[i] = value(r, consent && i == Q_SCOPE ? "requested_scope" : q_names[i], &dup);
	if (!dup)
		return 1;
	error_page(r, 400, "A parameter of the request is repeated.");
	return 0;
}

/* ---------------------------------------------------------------- steps */

static void do_login(areq_t *r)
{
	cv_exchange_t *ex = r->ex;
	int dup = 0;
	cv_login_t in = { .username = value(r, "username", &dup), .password = value(r, "password", &dup),
			  .code = value(r, "code", &dup), .recovery = value(r, "recovery_code", &dup),
			  .address = ex->peer, .now_us = cv_time_now_us() };
	if (dup || !in.username || !in.password)
		return login_page(r, 400, "Enter your user name and password.");
	cv_login_result res;
	cv_session_info_t info;
	cv_rc rc = cv_login_attempt(ex, &in, &res, &info);
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, "the sign-in could not be completed; try again");
	} else if (res == CV_LOGIN_THROTTLED) {
		login_page(r, 429, "Too many failed sign-ins: wait a while before trying again.");
	} else if (res != CV_LOGIN_OK) {
		login_page(r, 401, "The user name, password or code is not right.");
	} else {
		consent_page(r, info.username, info.role, info.csrf, 200, NULL);
	}
	sodium_memzero(&info, sizeof info);
}

typedef struct pick {
	const areq_t *r;
	const cv_param_t *p;
	size_t np;
	cv_buf_t *out;
} pick_t;

/* Keeps a requested scope when its box came back ticked. */
static cv_rc pick_one(void *arg, const cv_scope_t *sc, const char *text)
{
	(void)sc;
	pick_t *k = arg;
	for (size_t i = 0; i < k->np; i++)
		if (strcmp(k->p[i].name, "scope") == 0 && strcmp(k->p[i].value, text) == 0)
			return cv_buf_printf(k->out, "%s%s", k->out->len ? " " : "", text);
	return CV_OK;
}

/* The launch patient: a patient's own; for staff the chosen one, which must exist. */
static cv_rc launch_patient(areq_t *r, const char *scope, const char **patient)
{
	const cv_principal_t *p = &r->ex->principal;
	int dup = 0;
	*patient = "";
	if (!cv_scope_has(scope, CV_SCOPE_LAUNCH_PATIENT))
		return CV_OK;
	if (strcmp(p->role, "patient") == 0) {
		*patient = strncmp(p->link, "Patient/", 8) == 0 ? p->link + 8 : "";
		return (*patient)[0] ? CV_OK : CV_E_INVALID;
	}
	const char *id = value(r, "patient", &dup);
	size_t n = id ? strlen(id) : 0;
	if (dup || n == 0 || n > CV_PATIENT_ID_MAX || strspn(id, ID_CHARS) != n)
		return CV_E_INVALID;
	cv_pool_t pool;
	cv_store_version_t v;
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_store_read(ctx(r->ex)->store, "Patient", id, 0, &pool, &v);
	if (!rc && v.deleted)
		rc = CV_E_NOTFOUND;
	cv_pool_release(&pool);
	*patient = id;
	return rc == CV_E_NOTFOUND ? CV_E_INVALID : rc;
}

/* The code, committed with the record of the authorization (the grant
 * commits just before it: without a code it gives nothing). */
static cv_rc code_with_record(areq_t *r, const cv_grant_t *g, int64_t now, char code[CV_ACCESS_TOKEN_MAX])
{
	cv_exchange_t *ex = r->ex;
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "app-authorized", 'E');
	cv_audit_target(ex, r->client.id);
	cv_audit_companion_t rec = { .ex = ex, .status = 302, .type = CV_CODE_TYPE };
	cv_audit_companion_begin(&rec);
	cv_rc rc = cv_code_issue(ctx(ex)->store, g, r->q[Q_REDIRECT_URI], r->q[Q_CHALLENGE], now, code);
	cv_audit_companion_end();
	return rc;
}

/* Stores the grant and its code, and sends the person back to the app. */
static void issue_code(areq_t *r, const char *scope, const char *patient)
{
	cv_exchange_t *ex = r->ex;
	const cv_principal_t *p = &ex->principal;
	cv_account_t a;
	cv_grant_t g;
	char code[CV_ACCESS_TOKEN_MAX];
	memset(&g, 0, sizeof g);
	cv_rc rc = cv_account_get(ctx(ex)->store, p->id, &a);
	if (!rc) {
		g.epoch = a.epoch;
		cv_account_release(&a);
		snprintf(g.client, sizeof g.client, "%s", r->client.id);
		snprintf(g.user, sizeof g.user, "%s", p->id);
		snprintf(g.scope, sizeof g.scope, "%s", scope);
		snprintf(g.patient, sizeof g.patient, "%s", patient);
		snprintf(g.nonce, sizeof g.nonce, "%s", r->q[Q_NONCE] ? r->q[Q_NONCE] : "");
		int64_t now = cv_time_now_us();
		rc = cv_grant_create(ctx(ex)->store, &g, now);
		if (!rc)
			rc = code_with_record(r, &g, now, code);
	}
	if (rc) { /* the record says so: the answer is a redirect, whatever happened */
		cv_audit_kind(ex, CV_AUDIT_SECURITY, "app-authorization-failed", 'E');
		app_error(r, "temporarily_unavailable", "the authorization could not be stored; try again");
		return;
	}
	cv_log(CV_LOG_INFO, "auth.authorized",
	       (cv_log_field_t[]){ CV_LS("user", p->id), CV_LS("client", r->client.id), CV_LS("grant", g.id) }, 3);
	back_to_app(r, (const char *const[]){ "code", code, NULL });
	sodium_memzero(code, sizeof code);
}

static void do_consent(areq_t *r)
{
	cv_exchange_t *ex = r->ex;
	const cv_principal_t *p = &ex->principal;
	int dup = 0;
	const char *csrf = value(r, "csrf", &dup), *decision = value(r, "decision", &dup);
	if (p->kind != CV_PRINCIPAL_USER || !p->session)
		return login_page(r, 401, "Your session has ended: sign in again.");
	if (dup || !csrf || !p->csrf || strlen(csrf) != strlen(p->csrf) || !cv_crypto_equal(csrf, p->csrf, strlen(csrf)))
		return error_page(r, 403, "The form did not come from this server's consent page.");
	if (!decision || strcmp(decision, "approve") != 0) {
		cv_audit_kind(ex, CV_AUDIT_SECURITY, "app-authorization-refused", 'E');
		return app_error(r, "access_denied", "the user did not allow the app");
	}
	cv_buf_t chosen;
	cv_buf_init(&chosen, CV_CLIENT_SCOPE_MAX + 1);
	pick_t k = { .r = r, .p = r->p, .np = r->np, .out = &chosen };
	cv_rc rc = cv_scope_each(r->requested, pick_one, &k, NULL, 0);
	const char *scope = rc || !chosen.len ? NULL : cv_pool_strdup(ex->pool, chosen.data);
	cv_buf_release(&chosen);
	const char *patient = "";
	if (!scope)
		return app_error(r, "access_denied", "no scope was allowed");
	rc = launch_patient(r, scope, &patient);
	if (rc == CV_E_INVALID)
		return consent_page(r, p->id, p->role, p->csrf, 400,
				    "Give the id of an existing patient for the app to open.");
	if (rc)
		return app_error(r, "temporarily_unavailable", "try again");
	issue_code(r, scope, patient);
}

/* The request is checked again at every step, then the step is taken. */
static void handle(areq_t *r, const char *step)
{
	cv_exchange_t *ex = r->ex;
	bool consent = step && strcmp(step, "consent") == 0;
	if (!read_request(r, consent) || !check_client(r) || !check_request(r))
		return;
	if (step && strcmp(step, "login") == 0)
		return do_login(r);
	if (consent)
		return do_consent(r);
	const cv_principal_t *p = &ex->principal;
	if (p->kind == CV_PRINCIPAL_USER && p->session) {
		cv_account_t a;
		const char *name = p->id;
		if (cv_account_get(ctx(ex)->store, p->id, &a) == CV_OK) {
			name = cv_pool_strdup(ex->pool, a.username);
			cv_account_release(&a);
		}
		return consent_page(r, name ? name : p->id, p->role, p->csrf, 200, NULL);
	}
	login_page(r, 200, NULL);
}

void cv_authorize_get(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "authorize-page", 'R');
	areq_t r = { .ex = ex, .p = ex->params, .np = ex->nparams };
	handle(&r, NULL);
	cv_client_release(&r.client);
}

/* The form was posted from a page of this server: its Origin header, which
 * browsers send with every POST, names this origin. */
static int same_origin(cv_exchange_t *ex)
{
	const char *o = ex->header(ex, "Origin");
	size_t n = cv_exchange_origin_len(ex);
	return o && strlen(o) == n && strncmp(o, ex->base_url, n) == 0;
}

void cv_authorize_post(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "authorize-form", 'E'); /* a sign-in or consent step says more */
	cv_param_t p[FORM_MAX];
	size_t n = 0;
	areq_t r = { .ex = ex, .p = p };
	const char *ct = ex->header(ex, "Content-Type");
	if (!same_origin(ex))
		return error_page(&r, 403, "The form was not sent from this server's own page.");
	if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0 ||
	    cv_search_form_decode(ex->body ? ex->body : "", ex->body_len, ex->pool, p, FORM_MAX, &n))
		return error_page(&r, 400, "The form could not be read.");
	r.np = n;
	int dup = 0;
	const char *step = value(&r, "step", &dup);
	if (dup || !step || (strcmp(step, "login") != 0 && strcmp(step, "consent") != 0))
		return error_page(&r, 400, "The form could not be read.");
	handle(&r, step);
	cv_client_release(&r.client);
}
