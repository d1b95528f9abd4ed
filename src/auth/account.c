/*
 * account.c - user accounts as sealed, versioned store records (see account.h).
 */
#include "auth/account.h"

#include <json-c/json.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"
#include "model/json.h"
#include "core/time.h"

#define USER_TYPE CV_ACCOUNT_TYPE
#define LOGIN_TYPE "~Login"
#define RECORD_MAX (16u << 10)

static const char *const role_names[CV_ROLE_COUNT] = {
	"patient", "nurse", "doctor", "admin", "billing", "auditor", "researcher",
};

const char *cv_role_name(cv_role r)
{
	return (unsigned)r < CV_ROLE_COUNT ? role_names[r] : NULL;
}

cv_rc cv_role_parse(const char *name, cv_role *out)
{
	for (int i = 0; name && i < CV_ROLE_COUNT; i++)
		if (strcmp(name, role_names[i]) == 0) {
			*out = (cv_role)i;
			return CV_OK;
		}
	return CV_E_INVALID;
}

bool cv_role_is_staff(cv_role r)
{
	return r != CV_ROLE_PATIENT;
}

static void say(char *why, size_t whylen, const char *msg)
{
	if (why && whylen)
		snprintf(why, whylen, "%s", msg);
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == '@' || c == '+' || c == '-';
}

cv_rc cv_account_name_check(const char *name, char *why, size_t whylen)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > CV_USERNAME_MAX) {
		say(why, whylen, "a user name has 1 to 64 characters");
		return CV_E_INVALID;
	}
	for (size_t i = 0; i < n; i++)
		if (!name_char(name[i])) {
			say(why, whylen, "a user name may hold only letters, digits and . _ @ + -");
			return CV_E_INVALID;
		}
	if (!name_char(name[0]) || name[0] == '.' || name[0] == '_' || name[0] == '@' || name[0] == '+' ||
	    name[0] == '-') {
		say(why, whylen, "a user name starts with a letter or a digit");
		return CV_E_INVALID;
	}
	return CV_OK;
}

/* A FHIR id: 1-64 of A-Z a-z 0-9 - . */
static bool fhir_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

static bool link_of(const char *link, const char *type)
{
	size_t n = strlen(type);
	return strncmp(link, type, n) == 0 && link[n] == '/' && fhir_id(link + n + 1);
}

cv_rc cv_account_link_check(cv_role role, const char *link, char *why, size_t whylen)
{
	const char *l = link ? link : "";
	if (strlen(l) > CV_LINK_MAX) {
		say(why, whylen, "the linked resource reference is too long");
		return CV_E_INVALID;
	}
	if (role == CV_ROLE_PATIENT) {
		if (link_of(l, "Patient"))
			return CV_OK;
		say(why, whylen, "a patient account is linked to its Patient (--patient ID)");
		return CV_E_INVALID;
	}
	if (role == CV_ROLE_NURSE || role == CV_ROLE_DOCTOR) {
		if (link_of(l, "Practitioner"))
			return CV_OK;
		say(why, whylen, "a nurse or doctor account is linked to its Practitioner (--practitioner ID)");
		return CV_E_INVALID;
	}
	if (!*l || link_of(l, "Practitioner"))
		return CV_OK;
	say(why, whylen, "a staff account may be linked to a Practitioner only");
	return CV_E_INVALID;
}

cv_rc cv_account_init(cv_account_t *a, const char *username, cv_role role, const char *link)
{
	uint8_t raw[CV_ACCOUNT_ID_LEN / 2];
	memset(a, 0, sizeof *a);
	if (cv_account_name_check(username, NULL, 0) || !cv_role_name(role) ||
	    cv_account_link_check(role, link, NULL, 0))
		return CV_E_INVALID;
	randombytes_buf(raw, sizeof raw);
	sodium_bin2hex(a->id, sizeof a->id, raw, sizeof raw);
	snprintf(a->username, sizeof a->username, "%s", username);
	snprintf(a->link, sizeof a->link, "%s", link ? link : "");
	a->role = role;
	a->created_us = cv_time_now_us();
	a->epoch = 1;
	return CV_OK;
}

void cv_account_release(cv_account_t *a)
{
	if (!a)
		return;
	if (a->totp_sealed)
		free(a->totp_sealed);
	sodium_memzero(a, sizeof *a);
}

/* ---------------------------------------------------------------- JSON */

static cv_rc put_str(json_object *o, const char *k, const char *v)
{
	json_object *s = json_object_new_string(v);
	if (!s || json_object_object_add(o, k, s)) {
		json_object_put(s);
		return CV_E_NOMEM;
	}
	return CV_OK;
}

static cv_rc put_int(json_object *o, const char *k, int64_t v)
{
	json_object *s = json_object_new_int64(v);
	if (!s || json_object_object_add(o, k, s)) {
		json_object_put(s);
		return CV_E_NOMEM;
	}
	return CV_OK;
}

static cv_rc put_recovery(json_object *o, const cv_account_t *a)
{
	char hex[2 * CV_RECOVERY_HASH + 1];
	json_object *arr = json_object_new_array();
	if (!arr || json_object_object_add(o, "recovery", arr)) {
		json_object_put(arr);
		return CV_E_NOMEM;
	}
	for (int i = 0; i < CV_RECOVERY_CODES; i++) {
		sodium_bin2hex(hex, sizeof hex, a->recovery[i], CV_RECOVERY_HASH);
		json_object *s = json_object_new_string(hex);
		if (!s || json_object_array_add(arr, s)) {
			json_object_put(s);
			return CV_E_NOMEM;
		}
	}
	return CV_OK;
}

cv_rc cv_account_encode(const cv_account_t *a, cv_buf_t *out)
{
	json_object *o = json_object_new_object();
	if (!o)
		return CV_E_NOMEM;
	cv_rc rc = put_str(o, "id", a->id);
	if (!rc)
		rc = put_str(o, "username", a->username);
	if (!rc)
		rc = put_str(o, "role", cv_role_name(a->role));
	if (!rc)
		rc = put_str(o, "link", a->link);
	if (!rc)
		rc = put_str(o, "pwhash", a->pwhash);
	if (!rc)
		rc = put_int(o, "disabled", a->disabled);
	if (!rc)
		rc = put_int(o, "epoch", a->epoch);
	if (!rc)
		rc = put_int(o, "created_us", a->created_us);
	if (!rc)
		rc = put_int(o, "mfa", a->mfa);
	if (!rc && a->totp_sealed)
		rc = put_str(o, "totp", a->totp_sealed);
	if (!rc)
		rc = put_int(o, "totp_last_step", a->totp_last_step);
	if (!rc)
		rc = put_int(o, "recovery_used", a->recovery_used);
	if (!rc)
		rc = put_recovery(o, a);
	if (!rc) {
		const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		cv_buf_reset(out);
		rc = text ? cv_buf_puts(out, text) : CV_E_NOMEM;
		if (text)
			sodium_memzero((void *)text, strlen(text));
	}
	json_object_put(o);
	return rc;
}

static int64_t get_int(json_object *o, const char *k)
{
	json_object *v;
	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
		return 0;
	return json_object_get_int64(v);
}

static cv_rc copy_str(char *dst, size_t cap, const char *src)
{
	if (!src || strlen(src) >= cap)
		return CV_E_INVALID;
	memcpy(dst, src, strlen(src) + 1);
	return CV_OK;
}

static cv_rc get_recovery(json_object *o, cv_account_t *a)
{
	json_object *arr;
	if (!json_object_object_get_ex(o, "recovery", &arr) || !json_object_is_type(arr, json_type_array) ||
	    json_object_array_length(arr) != CV_RECOVERY_CODES)
		return CV_E_INVALID;
	for (size_t i = 0; i < CV_RECOVERY_CODES; i++) {
		const char *hex = json_object_get_string(json_object_array_get_idx(arr, i));
		size_t got = 0;
		if (!hex || sodium_hex2bin(a->recovery[i], CV_RECOVERY_HASH, hex, strlen(hex), NULL, &got, NULL) ||
		    got != CV_RECOVERY_HASH)
			return CV_E_INVALID;
	}
	return CV_OK;
}

static cv_rc decode_into(json_object *o, cv_account_t *a)
{
	cv_rc rc = copy_str(a->id, sizeof a->id, cv_json_member_string(o, "id", &(int){ 0 }));
	if (!rc)
		rc = copy_str(a->username, sizeof a->username, cv_json_member_string(o, "username", &(int){ 0 }));
	if (!rc)
		rc = cv_role_parse(cv_json_member_string(o, "role", &(int){ 0 }), &a->role);
	if (!rc)
		rc = copy_str(a->link, sizeof a->link, cv_json_member_string(o, "link", &(int){ 0 }));
	if (!rc)
		rc = copy_str(a->pwhash, sizeof a->pwhash, cv_json_member_string(o, "pwhash", &(int){ 0 }));
	if (rc)
		return rc;
	a->disabled = get_int(o, "disabled") != 0;
	a->epoch = get_int(o, "epoch");
	a->created_us = get_int(o, "created_us");
	a->mfa = get_int(o, "mfa") != 0;
	a->totp_last_step = get_int(o, "totp_last_step");
	a->recovery_used = (uint16_t)get_int(o, "recovery_used");
	const char *totp = cv_json_member_string(o, "totp", &(int){ 0 });
	if (totp && !(a->totp_sealed = strdup(totp)))
		return CV_E_NOMEM;
	return get_recovery(o, a);
}

cv_rc cv_account_decode(const char *json, size_t len, cv_account_t *out)
{
	memset(out, 0, sizeof *out);
	if (len > RECORD_MAX)
		return CV_E_INVALID;
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return CV_E_NOMEM;
	json_object *o = json_tokener_parse_ex(tok, json, (int)len);
	cv_rc rc = o && json_object_is_type(o, json_type_object) ? decode_into(o, out) : CV_E_INVALID;
	json_object_put(o);
	json_tokener_free(tok);
	if (rc)
		cv_account_release(out);
	return rc;
}

/* ---------------------------------------------------------------- store */

/* The user name as the ~Login record's id: ASCII lower case. */
static void fold_name(const char *name, char out[CV_USERNAME_MAX + 1])
{
	size_t i = 0;
	for (; name[i] && i < CV_USERNAME_MAX; i++)
		out[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
	out[i] = '\0';
}

static void version_write(cv_store_write_t *w, const char *type, const char *id, int64_t expect,
			  const cv_buf_t *body)
{
	memset(w, 0, sizeof *w);
	w->op = CV_STORE_PUT_VERSION;
	w->type = type;
	w->id = id;
	w->expect_version = expect;
	w->updated_us = cv_time_now_us();
	w->body = (const uint8_t *)body->data;
	w->body_len = body->len;
}

cv_rc cv_account_create(cv_store_t *s, cv_account_t *a)
{
	char folded[CV_USERNAME_MAX + 1];
	cv_buf_t user, login;
	cv_buf_init(&user, RECORD_MAX);
	cv_buf_init(&login, 256);
	fold_name(a->username, folded);
	cv_rc rc = cv_account_encode(a, &user);
	if (!rc)
		rc = cv_buf_printf(&login, "{\"user\":\"%s\"}", a->id);
	if (!rc) {
		cv_store_write_t wl, wu;
		version_write(&wl, LOGIN_TYPE, folded, 0, &login);
		version_write(&wu, USER_TYPE, a->id, 0, &user);
		/* the first administrator retires the bootstrap token, in the same commit */
		cv_store_write_t wb = { .op = CV_STORE_PUT_META, .name = CV_META_BOOTSTRAP, .body = (const uint8_t *)"",
					.body_len = 0 };
		cv_store_write_t *members[3] = { &wl, &wu, &wb };
		cv_store_write_t g = { .op = CV_STORE_GROUP, .members = members,
				       .nmembers = a->role == CV_ROLE_ADMIN ? 3 : 2 };
		rc = cv_store_write_sync(s, &g);
		if (rc == CV_E_CONFLICT && wl.result != CV_E_CONFLICT)
			rc = CV_E_INTERNAL; /* a random id collided: 128 bits make that a bug */
		if (!rc)
			a->version = 1;
	}
	if (user.data)
		sodium_memzero(user.data, user.len);
	cv_buf_release(&user);
	cv_buf_release(&login);
	return rc;
}

cv_rc cv_account_update(cv_store_t *s, cv_account_t *a)
{
	cv_buf_t user;
	cv_buf_init(&user, RECORD_MAX);
	if (a->version < 1)
		return CV_E_INVALID;
	cv_rc rc = cv_account_encode(a, &user);
	if (!rc) {
		cv_store_write_t w;
		version_write(&w, USER_TYPE, a->id, a->version, &user);
		rc = cv_store_write_sync(s, &w);
		if (!rc)
			a->version++;
	}
	if (user.data)
		sodium_memzero(user.data, user.len);
	cv_buf_release(&user);
	return rc;
}

cv_rc cv_account_get(cv_store_t *s, const char *id, cv_account_t *out)
{
	cv_pool_t pool;
	cv_store_version_t v;
	memset(out, 0, sizeof *out);
	if (!id || strlen(id) != CV_ACCOUNT_ID_LEN)
		return CV_E_NOTFOUND;
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_store_read(s, USER_TYPE, id, 0, &pool, &v);
	if (!rc && v.deleted)
		rc = CV_E_NOTFOUND;
	if (!rc)
		rc = cv_account_decode((const char *)v.body, v.body_len, out);
	if (!rc) {
		out->version = v.version;
		if (strcmp(out->id, id) != 0)
			rc = CV_E_INTERNAL;
	}
	if (!rc)
		sodium_memzero((void *)v.body, v.body_len);
	cv_pool_release(&pool);
	if (rc && rc != CV_E_NOTFOUND)
		cv_account_release(out);
	return rc;
}

cv_rc cv_account_find(cv_store_t *s, const char *username, cv_account_t *out)
{
	char folded[CV_USERNAME_MAX + 1], id[CV_ACCOUNT_ID_LEN + 1];
	cv_pool_t pool;
	cv_store_version_t v;
	memset(out, 0, sizeof *out);
	if (cv_account_name_check(username, NULL, 0))
		return CV_E_NOTFOUND;
	fold_name(username, folded);
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_store_read(s, LOGIN_TYPE, folded, 0, &pool, &v);
	if (!rc && v.deleted)
		rc = CV_E_NOTFOUND;
	const char *p = rc ? NULL : strstr((const char *)v.body, "\"user\":\"");
	if (!rc && (!p || strlen(p + 8) < CV_ACCOUNT_ID_LEN))
		rc = CV_E_INTERNAL;
	if (!rc)
		snprintf(id, sizeof id, "%.*s", CV_ACCOUNT_ID_LEN, p + 8);
	cv_pool_release(&pool);
	return rc ? rc : cv_account_get(s, id, out);
}

typedef struct each_ctx {
	cv_rc (*fn)(void *arg, const cv_account_t *a);
	void *arg;
} each_ctx_t;

static cv_rc each_one(void *arg, const cv_store_hit_t *h)
{
	each_ctx_t *c = arg;
	cv_account_t a;
	cv_rc rc = cv_account_decode((const char *)h->v.body, h->v.body_len, &a);
	if (rc)
		return rc;
	a.version = h->v.version;
	rc = c->fn(c->arg, &a);
	cv_account_release(&a);
	return rc;
}

cv_rc cv_account_each(cv_store_t *s, cv_rc (*fn)(void *arg, const cv_account_t *a), void *arg)
{
	each_ctx_t c = { .fn = fn, .arg = arg };
	return cv_store_each_current(s, USER_TYPE, each_one, &c);
}
