/*
 * admin.c - the admin API for accounts, OAuth clients and erasures (see admin.h). The
 * work is auth/users' and auth/client's (shared with `carevault user` and
 * `carevault client`); here are the JSON in and out.
 * Account writes wait for their durable commit on the worker thread: they
 * are rare, and Argon2id hashing takes that long anyway.
 */
#include "net/admin.h"

#include <json-c/json.h>
#include <sodium.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/client.h"
#include "auth/record.h"
#include "core/log.h"
#include "core/time.h"
#include "auth/users.h"
#include "fhir/fhir.h"
#include "model/json.h"

#define LINK_MAX (CV_LINK_MAX + 16)

static cv_store_t *store_of(cv_exchange_t *ex)
{
	return ((cv_fhir_t *)ex->app)->store;
}

/* Adds k: v to o; returns 0 when memory ran out. */
static int add(json_object *o, const char *k, json_object *v)
{
	if (v && json_object_object_add(o, k, v) == 0)
		return 1;
	json_object_put(v);
	return 0;
}

/* The account as the API shows it: no hash, no seed, no recovery codes. */
static json_object *account_json(const cv_account_t *a)
{
	json_object *o = json_object_new_object();
	if (!o)
		return NULL;
	int ok = add(o, "id", json_object_new_string(a->id)) &&
		 add(o, "username", json_object_new_string(a->username)) &&
		 add(o, "role", json_object_new_string(cv_role_name(a->role))) &&
		 (!a->link[0] || add(o, "link", json_object_new_string(a->link))) &&
		 add(o, "disabled", json_object_new_boolean(a->disabled)) &&
		 add(o, "mfa", json_object_new_boolean(a->mfa)) &&
		 add(o, "created_us", json_object_new_int64(a->created_us));
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

/* Adds the enrolment (shown once) to o. */
static int add_enrolment(json_object *o, const cv_users_enrolment_t *enr)
{
	if (!enr->enrolled)
		return 1;
	json_object *codes = json_object_new_array();
	if (!add(o, "recovery_codes", codes) || !add(o, "otpauth", json_object_new_string(enr->uri)))
		return 0;
	for (int i = 0; i < CV_TOTP_RECOVERY_COUNT; i++) {
		json_object *c = json_object_new_string(enr->codes[i]);
		if (!c || json_object_array_add(codes, c)) {
			json_object_put(c);
			return 0;
		}
	}
	return 1;
}

/* Sends o (taking it) as the JSON answer; wipes the text when it held secrets. */
static void send_json(cv_exchange_t *ex, unsigned status, json_object *o, bool secret)
{
	if (!o) {
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return;
	}
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (!text || cv_buf_puts(&ex->resp, text)) {
		json_object_put(o);
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return;
	}
	if (secret)
		sodium_memzero((void *)text, strlen(text));
	json_object_put(o);
	ex->status = status;
	ex->content_type = "application/json";
	ex->no_store = true;
}

static cv_rc list_one(void *arg, const cv_account_t *a)
{
	json_object *o = account_json(a);
	if (!o || json_object_array_add(arg, o)) {
		json_object_put(o);
		return CV_E_NOMEM;
	}
	return CV_OK;
}

/* "user-disable", ...: the action from the URL when it is a word, else "<what>-action"
 * (a URL segment goes into the trail's searchable columns only when it is one). */
static const char *action_subtype(cv_exchange_t *ex, const char *what)
{
	const char *a = ex->args[1] ? ex->args[1] : "";
	size_t n = strlen(a);
	bool word = n && n <= 32 && strspn(a, "abcdefghijklmnopqrstuvwxyz-") == n;
	return cv_pool_printf(ex->pool, "%s-%s", what, word ? a : "action");
}

void cv_admin_users_list(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "users-listed", 'R');
	json_object *arr = json_object_new_array();
	cv_rc rc = arr ? cv_account_each(store_of(ex), list_one, arr) : CV_E_NOMEM;
	if (rc) {
		json_object_put(arr);
		cv_fhir_fail(ex, rc, NULL, "the accounts could not be listed");
		return;
	}
	json_object *o = json_object_new_object();
	if (!o) {
		json_object_put(arr);
	} else if (!add(o, "users", arr)) {
		json_object_put(o);
		o = NULL;
	}
	send_json(ex, 200, o, false);
}

/* The JSON object body; answers 400 itself and returns NULL when there is none. */
static json_object *parse_body(cv_exchange_t *ex)
{
	const cv_fhir_t *f = ex->app;
	const char *err = NULL;
	json_object *obj = NULL;
	if (!ex->body || !ex->body_len) {
		cv_fhir_error(ex, 400, "required", "the request needs a JSON body");
		return NULL;
	}
	cv_rc rc = cv_json_parse(ex->body, ex->body_len, &f->limits, ex->pool, &obj, &err);
	if (!rc && cv_json_pool_own(ex->pool, obj))
		rc = CV_E_NOMEM;
	if (rc == CV_E_NOMEM) {
		cv_fhir_fail(ex, rc, NULL, NULL);
		return NULL;
	}
	if (rc || !json_object_is_type(obj, json_type_object)) {
		cv_fhir_error(ex, 400, "structure", "the body must be a JSON object%s%s", err ? ": " : "", err ? err : "");
		return NULL;
	}
	return obj;
}

static unsigned create_status(cv_rc rc)
{
	return rc == CV_E_CONFLICT ? 409 : rc == CV_E_INVALID || rc == CV_E_NOTFOUND ? 422 : cv_fhir_status(rc);
}

void cv_admin_users_create(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "user-created", 'C');
	json_object *body = parse_body(ex);
	if (!body)
		return;
	int bad = 0;
	const char *patient = cv_json_member_string(body, "patient", &bad);
	const char *practitioner = cv_json_member_string(body, "practitioner", &bad);
	json_object *mfa = NULL;
	json_object_object_get_ex(body, "mfa", &mfa);
	cv_users_new_t n = { .username = cv_json_member_string(body, "username", &bad),
			     .role = cv_json_member_string(body, "role", &bad),
			     .password = cv_json_member_string(body, "password", &bad),
			     .mfa = json_object_get_boolean(mfa) };
	if (bad || !n.username || !n.role || !n.password || (patient && practitioner) ||
	    (mfa && !json_object_is_type(mfa, json_type_boolean))) {
		cv_fhir_error(ex, 400, "invalid",
			      "give username, role and password as strings, at most one of patient and practitioner, "
			      "and mfa as a boolean");
		return;
	}
	char link[LINK_MAX] = "", why[256];
	if (patient || practitioner)
		snprintf(link, sizeof link, "%s/%s", patient ? "Patient" : "Practitioner", patient ? patient : practitioner);
	n.link = link;
	cv_account_t a;
	cv_users_enrolment_t enr;
	cv_audit_companion_t rec = { .ex = ex, .status = 201, .type = CV_ACCOUNT_TYPE, .target_from_write = true };
	cv_audit_companion_begin(&rec); /* the account and its record commit together */
	cv_rc rc = cv_users_create(store_of(ex), &n, &a, &enr, why, sizeof why);
	cv_audit_companion_end();
	sodium_memzero((void *)n.password, strlen(n.password));
	if (rc) {
		cv_fhir_error(ex, create_status(rc), rc == CV_E_CONFLICT ? "duplicate" : NULL, "%s", why);
		return;
	}
	json_object *o = account_json(&a);
	if (o && !add_enrolment(o, &enr)) {
		json_object_put(o);
		o = NULL;
	}
	cv_audit_target(ex, a.id);
	char *loc = cv_pool_alloc(ex->pool, 64);
	if (loc) {
		snprintf(loc, 64, "/admin/users/%s", a.id);
		cv_exchange_add_header(ex, "Location", loc);
	}
	send_json(ex, 201, o, enr.enrolled);
	cv_users_enrolment_wipe(&enr);
	cv_account_release(&a);
}

void cv_admin_user_read(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "user-read", 'R');
	cv_audit_target(ex, ex->args[0]);
	cv_account_t a;
	cv_rc rc = cv_account_get(store_of(ex), ex->args[0], &a);
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, rc == CV_E_NOTFOUND ? "no such account" : "the account could not be read");
		return;
	}
	send_json(ex, 200, account_json(&a), false);
	cv_account_release(&a);
}

void cv_admin_user_action(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, action_subtype(ex, "user"), 'U');
	cv_audit_target(ex, ex->args[0]);
	cv_users_action act;
	if (cv_users_action_parse(ex->args[1], &act)) {
		cv_fhir_error(ex, 404, "not-found", "the actions are disable, enable, revoke-sessions and reset-mfa");
		return;
	}
	cv_account_t a;
	cv_users_enrolment_t enr;
	cv_audit_companion_t rec = { .ex = ex, .status = 200, .type = CV_ACCOUNT_TYPE };
	cv_audit_companion_begin(&rec);
	cv_rc rc = cv_users_apply(store_of(ex), ex->args[0], true, act, &enr, &a);
	cv_audit_companion_end();
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, rc == CV_E_NOTFOUND ? "no such account" : "the account could not be changed");
		return;
	}
	json_object *o = account_json(&a);
	if (o && !add_enrolment(o, &enr)) {
		json_object_put(o);
		o = NULL;
	}
	send_json(ex, 200, o, enr.enrolled);
	cv_users_enrolment_wipe(&enr);
	cv_account_release(&a);
}

/* ---------------------------------------------------------------- clients */

/* The number of keys in a stored JWKS (it was checked at registration). */
static int64_t jwks_keys(const char *jwks)
{
	json_object *o = json_tokener_parse(jwks), *keys;
	int64_t n = o && json_object_object_get_ex(o, "keys", &keys) && json_object_is_type(keys, json_type_array)
			    ? (int64_t)json_object_array_length(keys)
			    : 0;
	json_object_put(o);
	return n;
}

/* The client as the API shows it: no secret hash, of the JWKS only its size. */
static json_object *client_json(const cv_client_t *c)
{
	json_object *o = json_object_new_object(), *uris = NULL;
	if (!o)
		return NULL;
	if (!add(o, "client_id", json_object_new_string(c->id)) || !add(o, "name", json_object_new_string(c->name)) ||
	    !add(o, "type", json_object_new_string(cv_client_type_name(c->type))) ||
	    !add(o, "redirect_uris", (uris = json_object_new_array()))) {
		json_object_put(o);
		return NULL;
	}
	for (size_t i = 0; i < c->nredirect; i++) {
		json_object *u = json_object_new_string(c->redirect[i]);
		if (!u || json_object_array_add(uris, u)) {
			json_object_put(u);
			json_object_put(o);
			return NULL;
		}
	}
	int ok = add(o, "scope", json_object_new_string(c->scope)) &&
		 add(o, "disabled", json_object_new_boolean(c->disabled)) &&
		 add(o, "created_us", json_object_new_int64(c->created_us)) &&
		 (c->type != CV_CLIENT_BACKEND || add(o, "jwks_keys", json_object_new_int64(c->jwks ? jwks_keys(c->jwks) : 0))) &&
		 (!c->jwks_url[0] || (add(o, "jwks_url", json_object_new_string(c->jwks_url)) &&
				      add(o, "jwks_fetched_us", json_object_new_int64(c->jwks_fetched_us))));
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static cv_rc clients_list_one(void *arg, const cv_client_t *c)
{
	json_object *o = client_json(c);
	if (!o || json_object_array_add(arg, o)) {
		json_object_put(o);
		return CV_E_NOMEM;
	}
	return CV_OK;
}

void cv_admin_clients_list(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "clients-listed", 'R');
	json_object *arr = json_object_new_array();
	cv_rc rc = arr ? cv_client_each(store_of(ex), clients_list_one, arr) : CV_E_NOMEM;
	if (rc) {
		json_object_put(arr);
		cv_fhir_fail(ex, rc, NULL, "the clients could not be listed");
		return;
	}
	json_object *o = json_object_new_object();
	if (!o) {
		json_object_put(arr);
	} else if (!add(o, "clients", arr)) {
		json_object_put(o);
		o = NULL;
	}
	send_json(ex, 200, o, false);
}

/* The redirect_uris member: absent (0 URIs) or an array of strings. Returns
 * -1 when it is something else. More than CV_CLIENT_REDIRECTS are counted
 * (the register call refuses them) but not kept. */
static int member_uris(json_object *body, const char *uris[CV_CLIENT_REDIRECTS], size_t *n)
{
	json_object *arr;
	*n = 0;
	if (!json_object_object_get_ex(body, "redirect_uris", &arr))
		return 0;
	if (!json_object_is_type(arr, json_type_array))
		return -1;
	size_t len = json_object_array_length(arr);
	for (size_t i = 0; i < len; i++) {
		json_object *u = json_object_array_get_idx(arr, i);
		if (!json_object_is_type(u, json_type_string))
			return -1;
		if (i < CV_CLIENT_REDIRECTS)
			uris[i] = json_object_get_string(u);
	}
	*n = len;
	return 0;
}

/* What a refused registration answers: the caller's values are wrong. */
static unsigned client_create_status(cv_rc rc)
{
	return rc == CV_E_INVALID || rc == CV_E_UNSUPPORTED || rc == CV_E_LIMIT ? 422 : cv_fhir_status(rc);
}

void cv_admin_clients_create(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "client-created", 'C');
	json_object *body = parse_body(ex);
	if (!body)
		return;
	int bad = 0;
	const char *name = cv_json_member_string(body, "name", &bad);
	const char *type = cv_json_member_string(body, "type", &bad);
	const char *scope = cv_json_member_string(body, "scope", &bad);
	const char *jwks_url = cv_json_member_string(body, "jwks_url", &bad);
	const char *uris[CV_CLIENT_REDIRECTS] = { NULL };
	size_t nuris = 0;
	json_object *jwks = NULL;
	json_object_object_get_ex(body, "jwks", &jwks);
	if (bad || !name || !type || member_uris(body, uris, &nuris) ||
	    (jwks && !json_object_is_type(jwks, json_type_object))) {
		cv_fhir_error(ex, 400, "invalid",
			      "give name and type as strings, redirect_uris as an array of strings, scope as a "
			      "space-separated string, and jwks as a JWKS object or jwks_url as a string");
		return;
	}
	if (jwks && jwks_url) {
		cv_fhir_error(ex, 422, NULL, "give jwks or jwks_url, not both");
		return;
	}
	if (nuris > CV_CLIENT_REDIRECTS) {
		cv_fhir_error(ex, 422, NULL, "a client has at most %d redirect URIs", CV_CLIENT_REDIRECTS);
		return;
	}
	const char *jwks_text = jwks ? json_object_to_json_string_ext(jwks, JSON_C_TO_STRING_PLAIN) : NULL;
	if (jwks && !jwks_text) {
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return;
	}
	char secret[CV_CLIENT_SECRET_MAX], why[256] = "the client could not be registered";
	cv_client_t c;
	cv_client_new_t n = { .name = name, .type = type, .redirects = uris, .nredirects = nuris, .scope = scope,
			      .jwks = jwks_text, .jwks_url = jwks_url,
			      .ca_file = ((cv_fhir_t *)ex->app)->cfg->outbound_ca_file };
	cv_audit_companion_t rec = { .ex = ex, .status = 201, .type = CV_CLIENT_TYPE, .target_from_write = true };
	cv_audit_companion_begin(&rec); /* the client and its record commit together */
	cv_rc rc = cv_client_create(store_of(ex), &n, &c, secret, why, sizeof why);
	cv_audit_companion_end();
	if (rc) {
		cv_fhir_error(ex, client_create_status(rc), NULL, "%s", why);
		return;
	}
	json_object *o = client_json(&c);
	if (o && secret[0] && !add(o, "client_secret", json_object_new_string(secret))) {
		json_object_put(o);
		o = NULL;
	}
	cv_audit_target(ex, c.id);
	char *loc = cv_pool_alloc(ex->pool, 64);
	if (loc) {
		snprintf(loc, 64, "/admin/clients/%s", c.id);
		cv_exchange_add_header(ex, "Location", loc);
	}
	send_json(ex, 201, o, secret[0] != '\0');
	sodium_memzero(secret, sizeof secret);
	cv_client_release(&c);
}

void cv_admin_client_read(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "client-read", 'R');
	cv_audit_target(ex, ex->args[0]);
	cv_client_t c;
	cv_rc rc = cv_client_get(store_of(ex), ex->args[0], &c);
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, rc == CV_E_NOTFOUND ? "no such client" : "the client could not be read");
		return;
	}
	send_json(ex, 200, client_json(&c), false);
	cv_client_release(&c);
}

void cv_admin_client_action(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, action_subtype(ex, "client"), 'U');
	cv_audit_target(ex, ex->args[0]);
	bool disable = strcmp(ex->args[1], "disable") == 0;
	if (!disable && strcmp(ex->args[1], "enable") != 0) {
		cv_fhir_error(ex, 404, "not-found", "the actions are disable and enable");
		return;
	}
	cv_client_t c;
	cv_audit_companion_t rec = { .ex = ex, .status = 200, .type = CV_CLIENT_TYPE };
	cv_audit_companion_begin(&rec);
	cv_rc rc = cv_client_set_disabled(store_of(ex), ex->args[0], disable);
	cv_audit_companion_end();
	if (!rc)
		rc = cv_client_get(store_of(ex), ex->args[0], &c);
	if (rc) {
		cv_fhir_fail(ex, rc, NULL, rc == CV_E_NOTFOUND ? "no such client" : "the client could not be changed");
		return;
	}
	send_json(ex, 200, client_json(&c), false);
	cv_client_release(&c);
}

/* ---- erasures (two administrators) ------------------------------------------ */

#define ERASURE_TYPE "~Erasure"
#define ERASURE_TTL_US (24LL * 3600 * 1000000) /* a request not approved within a day lapses */
#define REASON_MAX 500

/* The request as the API shows it; a pending one past its day is "expired". */
static json_object *erasure_json(const char *id, json_object *rec)
{
	json_object *o = json_object_new_object();
	const char *state = cv_record_str(rec, "state");
	int64_t at = cv_record_int(rec, "requested_us");
	if (strcmp(state, "pending") == 0 && cv_time_now_us() - at > ERASURE_TTL_US)
		state = "expired";
	int ok = o && add(o, "id", json_object_new_string(id)) &&
		 add(o, "patient", json_object_new_string(cv_record_str(rec, "patient"))) &&
		 add(o, "reason", json_object_new_string(cv_record_str(rec, "reason"))) &&
		 add(o, "state", json_object_new_string(state)) &&
		 add(o, "requested_by", json_object_new_string(cv_record_str(rec, "requested_by"))) &&
		 add(o, "requested_us", json_object_new_int64(at)) &&
		 add(o, "expires_us", json_object_new_int64(at + ERASURE_TTL_US));
	if (ok && cv_record_str(rec, "decided_by")[0])
		ok = add(o, "decided_by", json_object_new_string(cv_record_str(rec, "decided_by"))) &&
		     add(o, "decided_us", json_object_new_int64(cv_record_int(rec, "decided_us"))) &&
		     add(o, "resources", json_object_new_int64(cv_record_int(rec, "resources")));
	if (!ok) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static cv_rc erasure_list_one(void *arg, const cv_store_hit_t *h)
{
	char id[80];
	json_object *rec = json_tokener_parse((const char *)h->v.body);
	const char *rid = cv_record_str(rec, "id");
	snprintf(id, sizeof id, "%s", rid);
	json_object *o = rec ? erasure_json(id, rec) : NULL;
	json_object_put(rec);
	if (!o || json_object_array_add(arg, o)) {
		json_object_put(o);
		return CV_E_NOMEM;
	}
	return CV_OK;
}

void cv_admin_erasures_list(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "erasures-listed", 'R');
	json_object *arr = json_object_new_array(), *o = json_object_new_object();
	cv_rc rc = arr && o ? cv_store_each_current(store_of(ex), ERASURE_TYPE, erasure_list_one, arr) : CV_E_NOMEM;
	if (rc || !add(o, "erasures", arr)) {
		if (!rc)
			arr = NULL;
		json_object_put(arr);
		json_object_put(o);
		cv_fhir_fail(ex, rc ? rc : CV_E_NOMEM, NULL, "the erasure requests could not be listed");
		return;
	}
	send_json(ex, 200, o, false);
}

/* Writes the request record (a new one: expect 0). */
static cv_rc erasure_put(cv_store_t *s, const char *id, int64_t expect, json_object *rec)
{
	json_object_object_add(rec, "id", json_object_new_string(id));
	return cv_record_put(s, ERASURE_TYPE, id, expect, rec);
}

void cv_admin_erasures_create(cv_exchange_t *ex)
{
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "erasure-requested", 'C');
	json_object *body = parse_body(ex);
	if (!body)
		return;
	int bad = 0;
	const char *patient = cv_json_member_string(body, "patient", &bad);
	const char *reason = cv_json_member_string(body, "reason", &bad);
	if (bad || !patient || !reason || !cv_fhir_valid_id(patient) || !reason[0] || strlen(reason) > REASON_MAX) {
		cv_fhir_error(ex, 400, "invalid", "give patient (a Patient id) and reason (1 to %d characters: the "
			      "request or ticket that asks for the erasure; no health information)", REASON_MAX);
		return;
	}
	cv_audit_patient(ex, patient);
	cv_rc rc = cv_store_patient_key_state(store_of(ex), patient);
	if (rc == CV_E_NOTFOUND || rc == CV_E_GONE) {
		cv_fhir_error(ex, rc == CV_E_GONE ? 410 : 404, rc == CV_E_GONE ? "deleted" : "not-found",
			      rc == CV_E_GONE ? "this patient was erased already" : "no data of this patient is stored");
		return;
	}
	char id[37];
	cv_crypto_uuid(id);
	json_object *rec = json_object_new_object();
	if (!rec || !add(rec, "patient", json_object_new_string(patient)) || !add(rec, "reason", json_object_new_string(reason)) ||
	    !add(rec, "requested_by", json_object_new_string(ex->principal.id ? ex->principal.id : "")) ||
	    !add(rec, "requested_us", json_object_new_int64(cv_time_now_us())) ||
	    !add(rec, "state", json_object_new_string("pending")))
		rc = CV_E_NOMEM;
	cv_audit_target(ex, id);
	cv_audit_companion_t companion = { .ex = ex, .status = 202, .type = ERASURE_TYPE };
	cv_audit_companion_begin(&companion); /* the request and its record commit together */
	if (!rc)
		rc = erasure_put(store_of(ex), id, 0, rec);
	cv_audit_companion_end();
	if (rc) {
		json_object_put(rec);
		cv_fhir_fail(ex, rc, NULL, "the erasure request could not be stored");
		return;
	}
	char *loc = cv_pool_printf(ex->pool, "/admin/erasures/%s", id);
	if (loc)
		cv_exchange_add_header(ex, "Location", loc);
	send_json(ex, 202, erasure_json(id, rec), false);
	json_object_put(rec);
}

/* Reads a request; answers 404 itself when there is none. */
static json_object *erasure_get(cv_exchange_t *ex, const char *id, int64_t *version)
{
	json_object *rec = NULL;
	cv_rc rc = strlen(id) > 64 ? CV_OK : cv_record_read(store_of(ex), ERASURE_TYPE, id, &rec, version);
	if (rc || !rec) {
		json_object_put(rec);
		cv_fhir_fail(ex, rc ? rc : CV_E_NOTFOUND, NULL, rc ? NULL : "no such erasure request");
		return NULL;
	}
	return rec;
}

void cv_admin_erasure_read(cv_exchange_t *ex)
{
	int64_t version;
	cv_audit_kind(ex, CV_AUDIT_SECURITY, "erasure-read", 'R');
	cv_audit_target(ex, ex->args[0]);
	json_object *rec = erasure_get(ex, ex->args[0], &version);
	if (rec)
		send_json(ex, 200, erasure_json(ex->args[0], rec), false);
	json_object_put(rec);
}

/* Why this administrator may not decide the request now ("" when they may). */
static const char *refusal(cv_exchange_t *ex, json_object *rec, bool approve, unsigned *status)
{
	const char *by = ex->principal.id ? ex->principal.id : "";
	*status = 409;
	if (strcmp(cv_record_str(rec, "state"), "pending") != 0)
		return "this request was decided already";
	if (cv_time_now_us() - cv_record_int(rec, "requested_us") > ERASURE_TTL_US)
		return "this request lapsed (not approved within a day): request the erasure again";
	*status = 403;
	if (approve && strcmp(by, cv_record_str(rec, "requested_by")) == 0)
		return "a second administrator must approve an erasure: the one who asked for it cannot";
	return "";
}

/* The erasure itself: keys destroyed, the ledger line written. */
static cv_rc erase_now(cv_exchange_t *ex, const char *patient, int64_t *count, char *why, size_t whylen)
{
	const cv_fhir_t *f = ex->app;
	char owner[33], ledger[1100];
	int64_t now = cv_time_now_us();
	snprintf(ledger, sizeof ledger, "%s/%s", f->cfg->data_dir, CV_LEDGER_FILE);
	/* the ledger line first: an erasure must never be committed without it */
	cv_rc rc = cv_store_erase_check(store_of(ex), patient, owner);
	if (!rc && cv_ledger_append(ledger, owner, now, why, whylen)) {
		cv_log(CV_LOG_ERROR, "erasure.ledger_failed", (cv_log_field_t[]){ CV_LS("owner", owner) }, 1);
		return CV_E_IO;
	}
	return rc ? rc : cv_store_erase(store_of(ex), patient, now, count, owner);
}

void cv_admin_erasure_action(cv_exchange_t *ex)
{
	int64_t version, count = 0;
	unsigned status;
	char why[300] = "";
	bool approve = strcmp(ex->args[1], "approve") == 0;
	cv_audit_kind(ex, CV_AUDIT_SECURITY, approve ? "patient-erased" : action_subtype(ex, "erasure"), approve ? 'D' : 'U');
	cv_audit_target(ex, ex->args[0]);
	if (!approve && strcmp(ex->args[1], "reject") != 0) {
		cv_fhir_error(ex, 404, "not-found", "the actions are approve and reject");
		return;
	}
	json_object *rec = erasure_get(ex, ex->args[0], &version);
	if (!rec)
		return;
	const char *patient = cv_record_str(rec, "patient"), *no = refusal(ex, rec, approve, &status);
	cv_audit_patient(ex, patient);
	if (no[0]) {
		json_object_put(rec);
		cv_fhir_error(ex, status, status == 403 ? "forbidden" : "conflict", "%s", no);
		return;
	}
	/* the erasure takes three commits (its ledger line, its keys, the request's decision with the
	 * outcome's record): its start is recorded before the first, or it does not start */
	cv_rc rc = approve ? cv_audit_intent(ex, store_of(ex), "patient-erasure-started") : CV_OK;
	if (!rc && approve)
		rc = erase_now(ex, patient, &count, why, sizeof why);
	json_object_object_add(rec, "state", json_object_new_string(approve ? (rc ? "failed" : "done") : "rejected"));
	json_object_object_add(rec, "decided_by", json_object_new_string(ex->principal.id ? ex->principal.id : ""));
	json_object_object_add(rec, "decided_us", json_object_new_int64(cv_time_now_us()));
	json_object_object_add(rec, "resources", json_object_new_int64(count));
	/* a rejection and its record commit together; so do an erasure's record and its request's
	 * decision (the erasure itself commits before: the ledger and the keys come first) */
	cv_audit_companion_t companion = { .ex = ex, .status = 200, .type = ERASURE_TYPE };
	if (!rc)
		cv_audit_companion_begin(&companion);
	cv_rc wrc = cv_record_put(store_of(ex), ERASURE_TYPE, ex->args[0], version, rec);
	cv_audit_companion_end();
	if (rc || (wrc && !approve)) {
		json_object_put(rec);
		cv_fhir_fail(ex, rc == CV_E_GONE ? CV_E_CONFLICT : rc ? rc : wrc, NULL,
			     rc == CV_E_GONE ? "this patient was erased already"
			     : approve ? "the erasure could not be completed" : "the request could not be updated");
		return;
	}
	if (wrc) /* the erasure is done (it is in the trail and the ledger); only its request record lags */
		cv_log(CV_LOG_ERROR, "erasure.record_failed", (cv_log_field_t[]){ CV_LS("rc", cv_rc_str(wrc)) }, 1);
	json_object *o = erasure_json(ex->args[0], rec);
	if (o && approve && cv_store_legacy_pending(store_of(ex)) && !add(o, "warning", json_object_new_string(
		"this store still holds data written before per-patient keys: the patient's part of it becomes "
		"unreadable when carevault keys rotate-data runs"))) {
		json_object_put(o);
		o = NULL;
	}
	send_json(ex, 200, o, false);
	json_object_put(rec);
}
