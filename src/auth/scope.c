/*
 * scope.c - parsing, comparing and intersecting SMART scopes (see scope.h).
 */
#include "auth/scope.h"

#include <stdio.h>
#include <string.h>

#define UPPER "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define LOWER "abcdefghijklmnopqrstuvwxyz"
#define DIGIT "0123456789"
/* characters of a granular query: name=value pairs joined by &, values are token-like */
#define QUERY_CHARS UPPER LOWER DIGIT "-._~:/|=&%,"

static const struct {
	const char *name;
	cv_scope_kind kind;
} named[] = {
	{ "openid", CV_SCOPE_OPENID },
	{ "fhirUser", CV_SCOPE_FHIRUSER },
	{ "profile", CV_SCOPE_PROFILE },
	{ "launch", CV_SCOPE_LAUNCH },
	{ "launch/patient", CV_SCOPE_LAUNCH_PATIENT },
	{ "launch/encounter", CV_SCOPE_LAUNCH_ENCOUNTER },
	{ "offline_access", CV_SCOPE_OFFLINE },
	{ "online_access", CV_SCOPE_ONLINE },
};

/* SMART v2 permissions: letters of "cruds", in that order, each once. */
static cv_rc v2_perms(const char *p, size_t n, unsigned *out)
{
	static const char order[] = "cruds";
	size_t at = 0;
	*out = 0;
	if (n == 0)
		return CV_E_INVALID;
	for (size_t i = 0; i < n; i++) {
		const char *k = memchr(order + at, p[i], sizeof order - 1 - at);
		if (!k)
			return CV_E_INVALID;
		*out |= 1u << (k - order);
		at = (size_t)(k - order) + 1;
	}
	return CV_OK;
}

/* v1 "read", "write", "*", or v2 letters. */
static cv_rc perms_parse(const char *p, size_t n, cv_scope_t *out)
{
	out->v1 = true;
	if (n == 4 && memcmp(p, "read", 4) == 0)
		out->perms = CV_SCOPE_R | CV_SCOPE_S;
	else if (n == 5 && memcmp(p, "write", 5) == 0)
		out->perms = CV_SCOPE_C | CV_SCOPE_U | CV_SCOPE_D;
	else if (n == 1 && p[0] == '*')
		out->perms = CV_SCOPE_ALL;
	else {
		out->v1 = false;
		return v2_perms(p, n, &out->perms);
	}
	return CV_OK;
}

static cv_rc ctx_parse(const char *p, size_t n, cv_scope_ctx *out)
{
	if (n == 7 && memcmp(p, "patient", 7) == 0)
		*out = CV_SCOPE_PATIENT;
	else if (n == 4 && memcmp(p, "user", 4) == 0)
		*out = CV_SCOPE_USER;
	else if (n == 6 && memcmp(p, "system", 6) == 0)
		*out = CV_SCOPE_SYSTEM;
	else
		return CV_E_INVALID;
	return CV_OK;
}

/* "*" or a resource type name: an upper-case letter, then letters. */
static cv_rc type_parse(const char *p, size_t n, cv_scope_t *out)
{
	bool star = n == 1 && p[0] == '*';
	bool name = n >= 1 && n <= CV_SCOPE_TYPE_MAX && strchr(UPPER, p[0]) && p[0] &&
		    strspn(p, UPPER LOWER) >= n;
	if (!star && !name)
		return CV_E_INVALID;
	memcpy(out->type, p, n);
	out->type[n] = '\0';
	return CV_OK;
}

/* A granular query: name=value[&name=value...], v2 scopes only. */
static cv_rc query_check(const char *q, const cv_scope_t *sc)
{
	size_t n = strlen(q);
	if (sc->v1 || n < 3 || strspn(q, QUERY_CHARS) != n || !strchr(q, '=') || q[0] == '=' || q[0] == '&' ||
	    q[n - 1] == '&')
		return CV_E_INVALID;
	return CV_OK;
}

static cv_rc resource_parse(const char *text, cv_scope_t *out)
{
	const char *slash = strchr(text, '/');
	const char *dot = slash ? strchr(slash + 1, '.') : NULL;
	if (!dot)
		return CV_E_INVALID;
	const char *perm = dot + 1, *q = strchr(perm, '?');
	size_t plen = q ? (size_t)(q - perm) : strlen(perm);
	out->kind = CV_SCOPE_RESOURCE;
	if (ctx_parse(text, (size_t)(slash - text), &out->ctx) ||
	    type_parse(slash + 1, (size_t)(dot - slash - 1), out) || perms_parse(perm, plen, out))
		return CV_E_INVALID;
	out->query = q ? q + 1 : NULL;
	return q ? query_check(q + 1, out) : CV_OK;
}

cv_rc cv_scope_parse(const char *text, cv_scope_t *out)
{
	memset(out, 0, sizeof *out);
	if (!text || !text[0] || strlen(text) > CV_SCOPE_TEXT_MAX)
		return CV_E_INVALID;
	for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
		if (strcmp(text, named[i].name) == 0) {
			out->kind = named[i].kind;
			return CV_OK;
		}
	return resource_parse(text, out);
}

bool cv_scope_within(const cv_scope_t *a, const cv_scope_t *b)
{
	if (a->kind != b->kind)
		return false;
	if (a->kind != CV_SCOPE_RESOURCE)
		return true;
	if (a->ctx != b->ctx || (strcmp(b->type, "*") != 0 && strcmp(a->type, b->type) != 0))
		return false;
	if ((a->perms & ~b->perms) != 0)
		return false;
	return !b->query || (a->query && strcmp(a->query, b->query) == 0);
}

cv_rc cv_scope_each(const char *list, cv_rc (*fn)(void *arg, const cv_scope_t *sc, const char *text), void *arg,
		    char *why, size_t whylen)
{
	char one[CV_SCOPE_TEXT_MAX + 1];
	for (const char *p = list ? list : ""; *p;) {
		p += strspn(p, " ");
		size_t n = strcspn(p, " ");
		if (!n)
			break;
		cv_scope_t sc;
		if (n >= sizeof one || (memcpy(one, p, n), one[n] = '\0', cv_scope_parse(one, &sc))) {
			if (why)
				snprintf(why, whylen, "malformed scope: %.60s", n >= sizeof one ? "(too long)" : one);
			return CV_E_INVALID;
		}
		cv_rc rc = fn(arg, &sc, one);
		if (rc)
			return rc;
		p += n;
	}
	return CV_OK;
}

typedef struct reg_ctx {
	bool backend;
	char *why;
	size_t whylen;
} reg_ctx_t;

static cv_rc reg_one(void *arg, const cv_scope_t *sc, const char *text)
{
	reg_ctx_t *c = arg;
	bool system = sc->kind == CV_SCOPE_RESOURCE && sc->ctx == CV_SCOPE_SYSTEM;
	if (system == c->backend)
		return CV_OK;
	if (c->why)
		snprintf(c->why, c->whylen, "%s: %.60s",
			 c->backend ? "a backend client has system/ scopes only" : "an app cannot have system/ scopes",
			 text);
	return CV_E_INVALID;
}

cv_rc cv_scope_check_registration(const char *list, bool backend, char *why, size_t whylen)
{
	reg_ctx_t c = { .backend = backend, .why = why, .whylen = whylen };
	return cv_scope_each(list, reg_one, &c, why, whylen);
}

typedef struct within_ctx {
	const cv_scope_t *want;
	bool found;
} within_ctx_t;

static cv_rc within_one(void *arg, const cv_scope_t *sc, const char *text)
{
	(void)text;
	within_ctx_t *c = arg;
	if (cv_scope_within(c->want, sc))
		c->found = true;
	return CV_OK;
}

typedef struct grant_ctx {
	const char *registered;
	const char *requested;
	cv_buf_t *out;
} grant_ctx_t;

/* True when text already is in the space-separated list. */
static bool listed(const char *list, const char *text)
{
	size_t n = strlen(text);
	for (const char *p = list; p && (p = strstr(p, text)) != NULL; p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

static cv_rc grant_one(void *arg, const cv_scope_t *sc, const char *text)
{
	grant_ctx_t *g = arg;
	within_ctx_t w = { .want = sc };
	if (cv_scope_each(g->registered, within_one, &w, NULL, 0) || !w.found ||
	    (g->out->len && listed(g->out->data, text)))
		return CV_OK;
	return cv_buf_printf(g->out, "%s%s", g->out->len ? " " : "", text);
}

cv_rc cv_scope_intersect(const char *registered, const char *requested, cv_buf_t *granted)
{
	grant_ctx_t g = { .registered = registered, .requested = requested, .out = granted };
	cv_buf_reset(granted);
	cv_rc rc = cv_scope_each(requested, grant_one, &g, NULL, 0);
	if (!rc && !granted->data)
		rc = cv_buf_puts(granted, "");
	return rc;
}

typedef struct perms_ctx {
	cv_scope_ctx ctx;
	const char *type;
	unsigned perms;
	cv_scope_kind kind;
	bool has;
} perms_ctx_t;

static cv_rc perms_one(void *arg, const cv_scope_t *sc, const char *text)
{
	(void)text;
	perms_ctx_t *p = arg;
	if (sc->kind != CV_SCOPE_RESOURCE || sc->ctx != p->ctx || sc->query)
		return CV_OK;
	if (strcmp(sc->type, "*") == 0 || (p->type && strcmp(sc->type, p->type) == 0))
		p->perms |= sc->perms;
	return CV_OK;
}

unsigned cv_scope_perms(const char *list, cv_scope_ctx ctx, const char *type)
{
	perms_ctx_t p = { .ctx = ctx, .type = type };
	if (cv_scope_each(list, perms_one, &p, NULL, 0))
		return 0;
	return p.perms;
}

static cv_rc has_one(void *arg, const cv_scope_t *sc, const char *text)
{
	(void)text;
	perms_ctx_t *p = arg;
	if (sc->kind == p->kind)
		p->has = true;
	return CV_OK;
}

bool cv_scope_has(const char *list, cv_scope_kind kind)
{
	perms_ctx_t p = { .kind = kind };
	return cv_scope_each(list, has_one, &p, NULL, 0) == CV_OK && p.has;
}
