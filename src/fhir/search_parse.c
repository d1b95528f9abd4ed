/*
 * search_parse.c - search parameters to a plan (see search.h).
 *
 * Each parameter becomes a clause: its comma-separated values are the
 * clause's alternatives. A value gives an index term (what the store can
 * check: a blinded key, a date or number range) and an in-memory check term
 * (the same test, or a finer one when the index only narrows the candidates:
 * prefixes longer than the indexed ones, :contains, birth-date ranges,
 * composites). Messages name parameters and modifiers, never values.
 */
#include "fhir/search.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/time.h"
#include "model/fold.h"

#define CHAIN_DEPTH_MAX 3 /* nested chains and _has */

/* A parse in progress: where messages go and what the clause gathers. */
typedef struct ps {
	const cv_sp_registry_t *reg;
	const cv_model_t *m;
	const char *base_url;
	const cv_search_limits_t *lim;
	cv_pool_t *pool;
	cv_outcome_t *oo;
	bool lenient;
	int depth;
} ps_t;

typedef struct build {
	cv_search_clause_t *c;
	size_t nsql, capsql;
	cv_store_term_t *sql;
	size_t nm;
	cv_mterm_t *m;
} build_t;

/* A 400: what is wrong with which parameter (never its value). */
static cv_rc bad(ps_t *p, const char *name, const char *what)
{
	cv_outcome_add(p->oo, CV_SEV_ERROR, "invalid", NULL, "search parameter '%s': %s", name, what);
	return CV_E_INVALID;
}

static cv_rc unsupported(ps_t *p, const char *name, const char *what)
{
	cv_outcome_add(p->oo, CV_SEV_ERROR, "not-supported", NULL, "search parameter '%s': %s", name, what);
	return CV_E_UNSUPPORTED;
}

/* ---- values ------------------------------------------------------------- */

/* Splits v at unescaped `sep`. The escape of sep itself ("\\,") is removed;
 * other escapes ("\\|", "\\$", "\\\\") stay for the next stage (unesc). */
static cv_rc split(cv_pool_t *pool, const char *v, char sep, char **out, size_t max, size_t *n)
{
	size_t len = strlen(v);
	char *buf = cv_pool_alloc(pool, len + 1);
	if (!buf)
		return CV_E_NOMEM;
	size_t k = 0, w = 0;
	out[k++] = buf;
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '\\' && i + 1 < len && strchr(",$|\\", v[i + 1])) {
			if (v[i + 1] != sep)
				buf[w++] = v[i];
			buf[w++] = v[++i];
		} else if (v[i] == sep) {
			buf[w++] = '\0';
			if (k >= max)
				return CV_E_LIMIT;
			out[k++] = buf + w;
		} else {
			buf[w++] = v[i];
		}
	}
	buf[w] = '\0';
	*n = k;
	return CV_OK;
}

/* v with its escapes (\\, \\$ \\| \\\\) removed, in pool (NULL: out of memory). */
static char *unesc(cv_pool_t *pool, const char *v, size_t len)
{
	char *out = cv_pool_alloc(pool, len + 1);
	size_t w = 0;
	for (size_t i = 0; out && i < len; i++) {
		if (v[i] == '\\' && i + 1 < len && strchr(",$|\\", v[i + 1]))
			i++;
		out[w++] = v[i];
	}
	if (out)
		out[w] = '\0';
	return out;
}

/* Position of the first unescaped c in v, or NULL. */
static const char *unescaped(const char *v, char c)
{
	for (const char *s = v; *s; s++) {
		if (*s == '\\' && s[1]) {
			s++;
			continue;
		}
		if (*s == c)
			return s;
	}
	return NULL;
}

/* ---- building clauses --------------------------------------------------- */

static cv_rc grow(ps_t *p, build_t *b)
{
	if (b->nsql < b->capsql && b->nm < b->capsql)
		return CV_OK;
	size_t cap = b->capsql ? b->capsql * 2 : 8;
	cv_store_term_t *sql = cv_pool_alloc(p->pool, cap * sizeof *sql);
	cv_mterm_t *m = cv_pool_alloc(p->pool, cap * sizeof *m);
	if (!sql || !m)
		return CV_E_NOMEM;
	if (b->nsql)
		memcpy(sql, b->sql, b->nsql * sizeof *sql);
	if (b->nm)
		memcpy(m, b->m, b->nm * sizeof *m);
	b->sql = sql;
	b->m = m;
	b->capsql = cap;
	return CV_OK;
}

/* An index term and its exact in-memory twin: a key. */
static cv_rc hash(ps_t *p, build_t *b, const char *code, const char *prefix, const char *a, size_t alen)
{
	cv_rc rc = grow(p, b);
	size_t pl = strlen(prefix);
	char *key = cv_pool_alloc(p->pool, pl + alen + 1);
	if (rc || !key)
		return rc ? rc : CV_E_NOMEM;
	memcpy(key, prefix, pl);
	memcpy(key + pl, a, alen);
	b->sql[b->nsql++] = (cv_store_term_t){ .kind = CV_TERM_HASH, .param = code, .key = key, .key_len = pl + alen };
	b->m[b->nm++] = (cv_mterm_t){ .kind = CV_MT_HASH, .key = key, .key_len = pl + alen };
	return CV_OK;
}

static cv_rc hash_s(ps_t *p, build_t *b, const char *code, const char *prefix, const char *a)
{
	return hash(p, b, code, prefix, a, strlen(a));
}

/* Replaces the in-memory twin of the last term by a finer check. */
static void refine_last(build_t *b, cv_mterm_t m)
{
	b->m[b->nm - 1] = m;
	b->c->check = true;
}

/* A folded search string (NULL with an error if it is empty or invalid). */
static cv_rc folded(ps_t *p, const char *name, const char *v, char **f, size_t *flen)
{
	cv_rc rc = cv_fold(v, strlen(v), p->pool, f, flen);
	if (rc == CV_E_NOMEM)
		return rc;
	if (rc || *flen == 0)
		return bad(p, name, "the value is empty or not valid text");
	return CV_OK;
}

/* A folded prefix key: exact when the value's length is an indexed prefix
 * length, else the longest indexed prefix narrows and `fine` checks the
 * whole value. */
static cv_rc prefix_terms(ps_t *p, build_t *b, const char *code, const char *key, cv_mt_kind fine, const char *f,
			  size_t flen)
{
	size_t cut = cv_fold_prefix(f, flen, cv_sp_prefix_cut(cv_fold_chars(f, flen)));
	cv_rc rc = hash(p, b, code, key, f, cut);
	if (!rc && cut < flen)
		refine_last(b, (cv_mterm_t){ .kind = fine, .key = f, .key_len = flen });
	return rc;
}

static cv_rc string_value(ps_t *p, build_t *b, const char *name, const char *code, const char *mod, const char *v)
{
	char *f;
	size_t flen;
	if (mod && strcmp(mod, "exact") == 0)
		return v[0] ? hash_s(p, b, code, "e:", v) : bad(p, name, "empty value");
	cv_rc rc = folded(p, name, v, &f, &flen);
	if (rc)
		return rc;
	if (!mod)
		return prefix_terms(p, b, code, "p:", CV_MT_FPREFIX, f, flen);
	if (strcmp(mod, "contains") != 0)
		return unsupported(p, name, "string parameters take the modifiers :exact, :contains and :missing");
	if (cv_fold_chars(f, flen) < 3)
		return bad(p, name, ":contains needs at least 3 characters");
	rc = hash(p, b, code, "g:", f, cv_fold_prefix(f, flen, 3));
	if (!rc)
		refine_last(b, (cv_mterm_t){ .kind = CV_MT_FCONTAINS, .key = f, .key_len = flen });
	return rc;
}

static cv_rc token_value(ps_t *p, build_t *b, const char *name, const char *code, const char *mod, const char *v)
{
	size_t len = strlen(v);
	if (!v[0])
		return bad(p, name, "empty value");
	if (mod && strcmp(mod, "text") == 0) {
		char *f, *t = unesc(p->pool, v, len);
		size_t flen;
		cv_rc rc = t ? folded(p, name, t, &f, &flen) : CV_E_NOMEM;
		return rc ? rc : prefix_terms(p, b, code, "t:", CV_MT_TFPREFIX, f, flen);
	}
	if (mod && strcmp(mod, "of-type") == 0) {
		const char *a = unescaped(v, '|'), *c = a ? unescaped(a + 1, '|') : NULL;
		char *t = unesc(p->pool, v, len);
		if (!c || !c[1])
			return bad(p, name, ":of-type takes type-system|type-code|value");
		return t ? hash_s(p, b, code, "ot:", t) : CV_E_NOMEM;
	}
	if (mod && strcmp(mod, "not") != 0)
		return unsupported(p, name, "token parameters take the modifiers :not, :text, :of-type and :missing");
	const char *bar = unescaped(v, '|');
	char *sys = bar ? unesc(p->pool, v, (size_t)(bar - v)) : NULL;
	char *val = unesc(p->pool, bar ? bar + 1 : v, bar ? len - (size_t)(bar + 1 - v) : len);
	if (!val || (bar && !sys))
		return CV_E_NOMEM;
	if (!bar)
		return hash_s(p, b, code, "c:", val);
	if (!sys[0])
		return val[0] ? hash_s(p, b, code, "n:", val) : bad(p, name, "'|' alone is not a token");
	char *sc = cv_pool_printf(p->pool, "%s|%s", sys, val);
	if (!sc)
		return CV_E_NOMEM;
	return hash_s(p, b, code, val[0] ? "sc:" : "s:", sc);
}

/* A local reference "Type/id" from what the client wrote, or NULL. */
static const char *local_ref(ps_t *p, const char *v)
{
	size_t bl = p->base_url ? strlen(p->base_url) : 0;
	if (bl && strncmp(v, p->base_url, bl) == 0 && v[bl] == '/')
		v += bl + 1;
	if (strstr(v, "://") || strncmp(v, "urn:", 4) == 0)
		return NULL;
	const char *hist = strstr(v, "/_history/");
	return hist ? cv_pool_strndup(p->pool, v, (size_t)(hist - v)) : v;
}

static cv_rc reference_value(ps_t *p, build_t *b, const cv_sp_t *sp, const char *name, const char *code,
			     const char *mod, const char *v)
{
	if (!v[0])
		return bad(p, name, "empty value");
	if (mod && strcmp(mod, "identifier") == 0) {
		const char *bar = unescaped(v, '|');
		if (!bar)
			return hash_s(p, b, code, "idn:", v);
		return bar == v ? hash_s(p, b, code, "idn:", v + 1) : hash_s(p, b, code, "id:", v);
	}
	if (mod && !cv_model_is_resource(p->m, mod))
		return unsupported(p, name, "reference parameters take a resource type, :identifier or :missing "
					    "as modifier");
	const char *local = local_ref(p, v);
	if (!local)
		return hash_s(p, b, code, "u:", v);
	if (local != v && strstr(v, "://")) {
		/* our own base: the local reference, and the URL as some resources may hold it */
		cv_rc rc = hash_s(p, b, code, "u:", v);
		if (rc)
			return rc;
	}
	const char *slash = strchr(local, '/');
	if (mod) {
		const char *id = slash ? slash + 1 : local;
		char *ref = cv_pool_printf(p->pool, "%s/%s", mod, id);
		if (slash && (strncmp(local, mod, (size_t)(slash - local)) != 0 || strlen(mod) != (size_t)(slash - local)))
			return bad(p, name, "the reference's type differs from the modifier");
		return ref ? hash_s(p, b, code, "r:", ref) : CV_E_NOMEM;
	}
	if (slash)
		return hash_s(p, b, code, "r:", local);
	if (sp->ntargets == 1) {
		char *ref = cv_pool_printf(p->pool, "%s/%s", sp->targets[0], local);
		return ref ? hash_s(p, b, code, "r:", ref) : CV_E_NOMEM;
	}
	return hash_s(p, b, code, "i:", local);
}

static cv_rc uri_value(ps_t *p, build_t *b, const char *name, const char *code, const char *mod, const char *v)
{
	cv_rc rc = CV_OK;
	if (!v[0])
		return bad(p, name, "empty value");
	if (!mod)
		return hash_s(p, b, code, "u:", v);
	if (strcmp(mod, "below") == 0) {
		size_t len = strlen(v);
		while (len > 1 && v[len - 1] == '/')
			len--;
		return hash(p, b, code, "ub:", v, len);
	}
	if (strcmp(mod, "above") != 0)
		return unsupported(p, name, "uri parameters take the modifiers :below, :above and :missing");
	const char *start = strstr(v, "://");
	start = start ? start + 3 : v;
	for (const char *s = strchr(start, '/'); !rc && s; s = strchr(s + 1, '/'))
		rc = hash(p, b, code, "u:", v, (size_t)(s - v));
	return rc ? rc : hash_s(p, b, code, "u:", v);
}

/* The comparison prefix of a date, number or quantity value. */
static cv_cmp prefix_of(const char **v)
{
	static const struct {
		const char *s;
		cv_cmp cmp;
	} pre[] = { { "eq", CV_CMP_EQ }, { "ne", CV_CMP_NE }, { "gt", CV_CMP_GT }, { "lt", CV_CMP_LT },
		    { "ge", CV_CMP_GE }, { "le", CV_CMP_LE }, { "sa", CV_CMP_SA }, { "eb", CV_CMP_EB },
		    { "ap", CV_CMP_AP } };
	for (size_t i = 0; i < sizeof pre / sizeof pre[0]; i++)
		if (strncmp(*v, pre[i].s, 2) == 0 && !isalpha((unsigned char)(*v)[2])) {
			*v += 2;
			return pre[i].cmp;
		}
	return CV_CMP_EQ;
}

static cv_rc add_range(ps_t *p, build_t *b, cv_term_kind kind, const char *code, cv_cmp cmp, int64_t lo, int64_t hi)
{
	cv_rc rc = grow(p, b);
	if (rc)
		return rc;
	b->sql[b->nsql++] = (cv_store_term_t){ .kind = kind, .param = code, .cmp = cmp, .lo = lo, .hi = hi };
	b->m[b->nm++] = (cv_mterm_t){ .kind = CV_MT_DATE, .cmp = cmp, .lo = lo, .hi = hi };
	return CV_OK;
}

/* ap: the value's range widened by a tenth of its distance from now. */
static void approximate(int64_t *lo, int64_t *hi)
{
	int64_t now = cv_time_now_us(), mid = *lo / 2 + *hi / 2;
	int64_t gap = (now > mid ? now - mid : mid - now) / 10;
	*lo -= gap;
	*hi += gap;
}

/* The year of an instant (UTC). */
static long utc_year(int64_t us)
{
	time_t t = (time_t)(us / 1000000 - (us % 1000000 < 0));
	struct tm tm;
	gmtime_r(&t, &tm);
	return tm.tm_year + 1900L;
}

/* Keys covering the years first..last: whole centuries ("yc:19"), then
 * whole decades ("yd:198"), then single years ("y:1987"). */
static cv_rc year_cover(ps_t *p, build_t *b, const char *code, long first, long last)
{
	cv_rc rc = CV_OK;
	char k[24];
	for (long y = first; !rc && y <= last;) {
		if (y % 100 == 0 && y + 99 <= last) {
			snprintf(k, sizeof k, "%02ld", y / 100);
			rc = hash_s(p, b, code, "yc:", k);
			y += 100;
		} else if (y % 10 == 0 && y + 9 <= last) {
			snprintf(k, sizeof k, "%03ld", y / 10);
			rc = hash_s(p, b, code, "yd:", k);
			y += 10;
		} else {
			snprintf(k, sizeof k, "%04ld", y);
			rc = hash_s(p, b, code, "y:", k);
			y++;
		}
	}
	return rc;
}

/* Identifying dates: eq on a year, month or day is one blinded key; any other
 * comparison narrows to the blinded years it may concern (few keys, thanks to
 * the century and decade keys), then checks the opened date. */
static cv_rc blind_date_value(ps_t *p, build_t *b, const char *code, cv_cmp cmp, const char *v, int64_t lo,
			      int64_t hi, int prec)
{
	static const char *const keys[] = { NULL, "y:", "ym:", "d:" };
	static const size_t lens[] = { 0, 4, 7, 10 };
	if (cmp == CV_CMP_EQ && prec <= 3)
		return hash(p, b, code, keys[prec], v, lens[prec]);
	if (cmp == CV_CMP_AP)
		approximate(&lo, &hi);
	long first = 1, last = 9999;
	if (cmp == CV_CMP_EQ || cmp == CV_CMP_AP || cmp == CV_CMP_GT || cmp == CV_CMP_GE || cmp == CV_CMP_SA)
		first = utc_year(cmp == CV_CMP_EQ || cmp == CV_CMP_AP ? lo : hi);
	if (cmp == CV_CMP_EQ || cmp == CV_CMP_AP || cmp == CV_CMP_LT || cmp == CV_CMP_LE || cmp == CV_CMP_EB)
		last = utc_year(cmp == CV_CMP_EQ || cmp == CV_CMP_AP ? hi : lo);
	if (cmp == CV_CMP_GT || cmp == CV_CMP_GE)
		first = utc_year(lo); /* ge also takes dates inside the value's own range */
	first = first < 1 ? 1 : first;
	last = last > 9999 ? 9999 : last;
	size_t m_at = b->nm;
	cv_rc rc = first == 1 && last == 9999 ? hash_s(p, b, code, "m:", "") /* any date at all */
					      : year_cover(p, b, code, first, last);
	if (rc)
		return rc;
	/* the check: the real comparison on the opened date, once for this value */
	b->nm = m_at;
	if ((rc = grow(p, b)))
		return rc;
	b->m[b->nm++] = (cv_mterm_t){ .kind = CV_MT_DATE, .cmp = cmp, .lo = lo, .hi = hi };
	b->c->check = true;
	return CV_OK;
}

static cv_rc date_value(ps_t *p, build_t *b, const cv_sp_t *sp, const char *name, const char *code, const char *v)
{
	int64_t lo, hi;
	int prec;
	const char *text = v;
	cv_cmp cmp = prefix_of(&text);
	if (cv_time_range(text, &lo, &hi, &prec))
		return bad(p, name, "not a date, such as 2024, 2024-05, 2024-05-31 or 2024-05-31T10:00:00Z, after an optional prefix (eq ne gt lt ge le sa eb ap)");
	if (sp && sp->blind_date)
		return blind_date_value(p, b, code, cmp, text, lo, hi, prec);
	if (cmp == CV_CMP_AP)
		approximate(&lo, &hi);
	return add_range(p, b, sp ? CV_TERM_DATE : CV_TERM_UPDATED, code, cmp, lo, hi);
}

/* A decimal search value and the range its precision implies ("100" is 99.5 to 100.5). */
/* A FHIR decimal: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (no hex, no inf, no spaces). */
static int decimal_text(const char *v)
{
	const char *s = v + (*v == '-');
	if (!isdigit((unsigned char)*s) || (s[0] == '0' && isdigit((unsigned char)s[1])))
		return 0;
	while (isdigit((unsigned char)*s))
		s++;
	if (*s == '.') {
		if (!isdigit((unsigned char)*++s))
			return 0;
		while (isdigit((unsigned char)*s))
			s++;
	}
	if (*s == 'e' || *s == 'E') {
		s += s[1] == '+' || s[1] == '-' ? 2 : 1;
		if (!isdigit((unsigned char)*s))
			return 0;
		while (isdigit((unsigned char)*s))
			s++;
	}
	return *s == '\0';
}

/* The range a search number denotes: "100" is [99.5, 100.5), the upper end
 * excluded (hi is the largest double below it). */
static int number_range(const char *v, double *lo, double *hi, double *val)
{
	char *end;
	if (!decimal_text(v))
		return 0;
	errno = 0;
	double d = strtod(v, &end);
	if (end == v || *end || errno || !isfinite(d) || isspace((unsigned char)v[0]))
		return 0;
	const char *dot = strchr(v, '.'), *exp = strpbrk(v, "eE");
	int decimals = 0;
	if (dot)
		decimals = (int)((exp ? exp : v + strlen(v)) - dot - 1);
	long e = exp ? strtol(exp + 1, NULL, 10) : 0;
	double half = 0.5 * pow(10.0, (double)(e - decimals));
	*val = d;
	*lo = d - half;
	*hi = nextafter(d + half, -INFINITY);
	return 1;
}

static cv_rc number_value(ps_t *p, build_t *b, const char *name, const char *code, const char *v, const char *unit)
{
	double lo, hi, val;
	const char *text = v;
	cv_cmp cmp = prefix_of(&text);
	if (!number_range(text, &lo, &hi, &val))
		return bad(p, name, "not a number (after an optional prefix such as gt)");
	if (cmp == CV_CMP_AP) {
		double w = fabs(val) * 0.1;
		lo = val - w;
		hi = val + w;
	} else if (cmp != CV_CMP_EQ && cmp != CV_CMP_NE) {
		/* gt, ge, lt, le, sa, eb compare with the value exactly ("gt100: greater than
		 * exactly 100"); only eq and ne use the precision the value was written with */
		lo = hi = val;
	}
	cv_rc rc = grow(p, b);
	if (rc)
		return rc;
	b->sql[b->nsql++] = (cv_store_term_t){ .kind = CV_TERM_NUM, .param = code, .key = unit, .cmp = cmp,
					       .nlo = lo, .nhi = hi };
	b->m[b->nm++] = (cv_mterm_t){ .kind = CV_MT_NUM, .cmp = cmp, .nlo = lo, .nhi = hi, .unit = unit };
	return CV_OK;
}

static cv_rc quantity_value(ps_t *p, build_t *b, const char *name, const char *code, const char *v)
{
	char *parts[3];
	size_t n;
	cv_rc rc = split(p->pool, v, '|', parts, 3, &n);
	if (rc == CV_E_LIMIT || (n != 1 && n != 3))
		return bad(p, name, "a quantity is number, number|system|code or number||code");
	if (rc)
		return rc;
	const char *unit = NULL;
	for (size_t i = 0; i < n; i++)
		if (!(parts[i] = unesc(p->pool, parts[i], strlen(parts[i]))))
			return CV_E_NOMEM;
	if (n == 3 && parts[2][0])
		unit = parts[1][0] ? cv_pool_printf(p->pool, "s|%s|%s", parts[1], parts[2])
				   : cv_pool_printf(p->pool, "c|%s", parts[2]);
	if (n == 3 && parts[2][0] && !unit)
		return CV_E_NOMEM;
	return number_value(p, b, name, code, parts[0], unit);
}

/* One value of a parameter of type `type` (also a composite's component). */
static cv_rc value_terms(ps_t *p, build_t *b, const cv_sp_t *sp, cv_sp_type type, const char *name,
			 const char *code, const char *mod, const char *v)
{
	if (type != CV_SP_TOKEN && type != CV_SP_QUANTITY && !(v = unesc(p->pool, v, strlen(v))))
		return CV_E_NOMEM;
	switch (type) {
	case CV_SP_STRING: return string_value(p, b, name, code, mod, v);
	case CV_SP_TOKEN: return token_value(p, b, name, code, mod, v);
	case CV_SP_REFERENCE: return reference_value(p, b, sp, name, code, mod, v);
	case CV_SP_URI: return uri_value(p, b, name, code, mod, v);
	case CV_SP_DATE: return mod ? unsupported(p, name, "date parameters take only :missing")
				    : date_value(p, b, sp, name, code, v);
	case CV_SP_NUMBER: return mod ? unsupported(p, name, "number parameters take only :missing")
				      : number_value(p, b, name, code, v, NULL);
	case CV_SP_QUANTITY: return mod ? unsupported(p, name, "quantity parameters take only :missing")
					: quantity_value(p, b, name, code, v);
	default: return unsupported(p, name, "this parameter type is not searchable here");
	}
}

/* A composite value "a$b": the first component narrows through the index,
 * every component is checked on the same element of the candidate. */
static cv_rc composite_value(ps_t *p, build_t *b, const cv_sp_t *sp, const char *name, const char *v,
			     cv_mcomposite_t *out)
{
	char *parts[8];
	size_t n;
	cv_rc rc = split(p->pool, v, '$', parts, 8, &n);
	if (rc == CV_E_LIMIT || (!rc && n != sp->ncomp))
		return bad(p, name, "a composite value has one part per component, separated by '$'");
	if (rc)
		return rc;
	out->n = n;
	out->parts = cv_pool_alloc(p->pool, n * sizeof *out->parts);
	if (!out->parts)
		return CV_E_NOMEM;
	for (size_t k = 0; !rc && k < n; k++) {
		build_t part = { .c = b->c };
		/* the first part narrows through its own parameter's index entries */
		rc = value_terms(p, &part, sp, sp->comp[k].type, name, k == 0 ? sp->comp[0].code : sp->code, NULL,
				 parts[k]);
		if (!rc && part.nm != 1)
			rc = bad(p, name, "a composite part must be a single value");
		if (rc)
			break;
		out->parts[k] = part.m[0];
		if (k == 0) { /* the index narrows by the first component */
			if ((rc = grow(p, b)))
				break;
			b->sql[b->nsql++] = part.sql[0];
			b->m[b->nm++] = part.m[0];
		}
	}
	b->c->check = true;
	return rc;
}

/* ---- clauses ------------------------------------------------------------ */

static cv_rc finish(build_t *b)
{
	b->c->sql.n = b->nsql;
	b->c->sql.terms = b->sql;
	b->c->sql.negate = b->c->negate;
	b->c->nm = b->nm;
	b->c->m = b->m;
	/* a negated clause whose index terms only narrow cannot be negated in SQL */
	b->c->use_sql = b->nsql > 0 && !(b->c->negate && b->c->check);
	return CV_OK;
}

static cv_rc missing(ps_t *p, build_t *b, const char *name, const char *code, const char *v)
{
	if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
		return bad(p, name, ":missing takes true or false");
	b->c->negate = strcmp(v, "true") == 0;
	cv_rc rc = hash_s(p, b, code, "m:", "");
	return rc ? rc : finish(b);
}

static cv_rc values_clause(ps_t *p, build_t *b, const cv_sp_t *sp, const char *name, const char *mod,
			   const char *value)
{
	char *vals[CV_SEARCH_VALUES_MAX];
	size_t n;
	cv_rc rc = split(p->pool, value, ',', vals, CV_SEARCH_VALUES_MAX, &n);
	if (rc == CV_E_LIMIT)
		return bad(p, name, "too many comma-separated values");
	if (!rc && sp->type == CV_SP_TOKEN && mod && strcmp(mod, "not") == 0)
		b->c->negate = true;
	if (!rc && sp->type == CV_SP_COMPOSITE) {
		b->c->mc = cv_pool_alloc(p->pool, n * sizeof *b->c->mc);
		if (!b->c->mc)
			return CV_E_NOMEM;
		if (mod)
			return unsupported(p, name, "composite parameters take no modifier");
	}
	for (size_t i = 0; !rc && i < n; i++)
		rc = sp->type == CV_SP_COMPOSITE ? composite_value(p, b, sp, name, vals[i], &b->c->mc[i])
						 : value_terms(p, b, sp, sp->type, name, sp->code, mod, vals[i]);
	if (!rc && sp->type == CV_SP_COMPOSITE)
		b->nm = n; /* the composite's alternatives are mc[0..n) */
	return rc ? rc : finish(b);
}

static cv_rc id_clause(ps_t *p, build_t *b, const char *name, const char *value)
{
	char *vals[CV_SEARCH_VALUES_MAX];
	size_t n;
	cv_rc rc = split(p->pool, value, ',', vals, CV_SEARCH_VALUES_MAX, &n);
	if (rc == CV_E_LIMIT)
		return bad(p, name, "too many comma-separated values");
	for (size_t i = 0; !rc && i < n; i++) {
		if (!(rc = grow(p, b)))
			b->sql[b->nsql++] = (cv_store_term_t){ .kind = CV_TERM_ID, .key = vals[i] };
	}
	return rc ? rc : finish(b);
}

static cv_rc plan_new(ps_t *p, const char *type, const char *name, const char *value, cv_search_plan_t **out);

/* One target type of a forward chain: its inner search, linked into the clause. */
static cv_rc chain_target(ps_t *p, build_t *b, const char *target, const char *inner, const char *value)
{
	cv_search_chain_t *ch = cv_pool_alloc(p->pool, sizeof *ch);
	if (!ch)
		return CV_E_NOMEM;
	ch->target = target;
	ch->next = b->c->chain;
	b->c->chain = ch;
	return plan_new(p, target, inner, value, &ch->inner);
}

/* subject:Patient.name=x, subject.name=x: the inner search runs first. */
static cv_rc chain_clause(ps_t *p, build_t *b, const char *type, const char *name, const char *value)
{
	const char *dot = strchr(name, '.');
	char *left = cv_pool_strndup(p->pool, name, (size_t)(dot - name));
	if (!left)
		return CV_E_NOMEM;
	char *colon = strchr(left, ':');
	if (colon)
		*colon++ = '\0';
	const cv_sp_t *sp = cv_sp_find(p->reg, type, left);
	if (!sp || sp->type != CV_SP_REFERENCE)
		return bad(p, name, "a chain starts with a reference parameter of the resource searched");
	b->c->sp = sp;
	if (colon) {
		if (!cv_model_is_resource(p->m, colon))
			return bad(p, name, "the chain's type is not a resource type");
		return chain_target(p, b, colon, dot + 1, value);
	}
	/* no type given: every target type that has the next parameter */
	size_t inner_len = strcspn(dot + 1, ".:");
	char *inner = cv_pool_strndup(p->pool, dot + 1, inner_len);
	cv_rc rc = inner ? CV_OK : CV_E_NOMEM;
	size_t found = 0;
	for (size_t i = 0; !rc && i < sp->ntargets; i++) {
		if (!cv_sp_find(p->reg, sp->targets[i], inner) && strncmp(inner, "_has", 4) != 0)
			continue;
		rc = chain_target(p, b, sp->targets[i], dot + 1, value);
		found++;
	}
	if (!rc && !found)
		return bad(p, name, "no type the reference may point at has that parameter");
	return rc;
}

/* _has:Observation:patient:code=x: resources that such Observations point at. */
static cv_rc has_clause(ps_t *p, build_t *b, const char *type, const char *name, const char *value)
{
	char *parts[4];
	size_t n;
	cv_rc rc = split(p->pool, name + 5, ':', parts, 4, &n);
	if (rc == CV_E_LIMIT || (!rc && n < 3))
		return bad(p, name, "_has is written _has:Type:reference:parameter");
	if (rc)
		return rc;
	/* _has:A:ref:_has:B:ref2:param nests: rebuild the inner name */
	char *inner_name = n == 3 ? parts[2] : cv_pool_printf(p->pool, "%s:%s", parts[2], parts[3]);
	if (!inner_name)
		return CV_E_NOMEM;
	if (!cv_model_is_resource(p->m, parts[0]))
		return bad(p, name, "_has names an unknown resource type");
	const cv_sp_t *link = cv_sp_find(p->reg, parts[0], parts[1]);
	if (!link || link->type != CV_SP_REFERENCE)
		return bad(p, name, "_has needs a reference parameter of its type");
	cv_search_chain_t *ch = cv_pool_alloc(p->pool, sizeof *ch);
	if (!ch)
		return CV_E_NOMEM;
	ch->reverse = true;
	ch->target = parts[0];
	ch->link = link;
	b->c->chain = ch;
	(void)type;
	return plan_new(p, parts[0], inner_name, value, &ch->inner);
}

/* Splits "name:modifier" (the modifier may be absent). */
static void name_mod(cv_pool_t *pool, const char *name, char **code, char **mod)
{
	*code = cv_pool_strdup(pool, name);
	*mod = NULL;
	char *colon = *code ? strchr(*code, ':') : NULL;
	if (colon) {
		*colon = '\0';
		*mod = colon + 1;
	}
}

/* One filtering parameter as a clause of plan. */
static cv_rc add_clause(ps_t *p, cv_search_plan_t *plan, const char *name, const char *value)
{
	if (plan->n >= CV_SEARCH_CLAUSES_MAX)
		return bad(p, name, "too many search parameters");
	cv_search_clause_t *c = &plan->clauses[plan->n];
	memset(c, 0, sizeof *c);
	c->name = name;
	build_t b = { .c = c };
	cv_rc rc;
	if (strncmp(name, "_has:", 5) == 0)
		rc = p->depth < CHAIN_DEPTH_MAX ? has_clause(p, &b, plan->type, name, value)
						: bad(p, name, "chains nest too deep");
	else if (strchr(name, '.'))
		rc = p->depth < CHAIN_DEPTH_MAX ? chain_clause(p, &b, plan->type, name, value)
						: bad(p, name, "chains nest too deep");
	else {
		char *code, *mod;
		name_mod(p->pool, name, &code, &mod);
		if (!code)
			return CV_E_NOMEM;
		const cv_sp_t *sp = cv_sp_find(p->reg, plan->type, code);
		if (strcmp(code, "_id") == 0 && !mod)
			rc = id_clause(p, &b, name, value);
		else if (strcmp(code, "_lastUpdated") == 0 && !mod) {
			rc = CV_OK;
			char *vals[CV_SEARCH_VALUES_MAX];
			size_t n;
			rc = split(p->pool, value, ',', vals, CV_SEARCH_VALUES_MAX, &n);
			for (size_t i = 0; !rc && i < n; i++)
				rc = date_value(p, &b, NULL, name, code, vals[i]);
			if (!rc)
				rc = finish(&b);
		} else if (!sp || !sp->compiled || sp->type == CV_SP_SPECIAL) {
			if (p->lenient) {
				cv_outcome_add(p->oo, CV_SEV_WARNING, "not-supported", NULL,
					       "search parameter '%s' is not known for %s and was ignored", code,
					       plan->type);
				return CV_OK;
			}
			cv_outcome_add(p->oo, CV_SEV_ERROR, "not-supported", NULL,
				       "search parameter '%s' is not known for %s (send Prefer: handling=lenient to "
				       "ignore unknown parameters)", code, plan->type);
			return CV_E_INVALID;
		} else {
			c->sp = sp;
			rc = mod && strcmp(mod, "missing") == 0 ? missing(p, &b, name, sp->code, value)
								: values_clause(p, &b, sp, name, mod, value);
		}
	}
	if (!rc)
		plan->n++;
	return rc;
}

static cv_rc plan_new(ps_t *p, const char *type, const char *name, const char *value, cv_search_plan_t **out)
{
	cv_search_plan_t *plan = cv_pool_alloc(p->pool, sizeof *plan);
	if (!plan)
		return CV_E_NOMEM;
	plan->type = type;
	plan->count = CV_SEARCH_CHAIN_MAX + 1;
	p->depth++;
	cv_rc rc = add_clause(p, plan, name, value);
	p->depth--;
	*out = plan;
	return rc;
}

/* ---- result parameters -------------------------------------------------- */

static int parse_count(const char *v, unsigned *out)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (!isdigit((unsigned char)v[0]) || *end || errno || n < 0)
		return 0;
	*out = n > 100000 ? 100000 : (unsigned)n;
	return 1;
}

static cv_rc sort_param(ps_t *p, cv_search_plan_t *plan, const char *name, const char *v)
{
	char *keys[CV_STORE_SORT_MAX + 1];
	size_t n;
	cv_rc rc = split(p->pool, v, ',', keys, CV_STORE_SORT_MAX, &n);
	if (rc == CV_E_LIMIT)
		return bad(p, name, "at most 4 sort keys");
	bool memory = false;
	for (size_t i = 0; !rc && i < n; i++) {
		bool desc = keys[i][0] == '-';
		const char *code = keys[i] + desc;
		if (plan->nsort >= CV_STORE_SORT_MAX)
			return bad(p, name, "at most 4 sort keys");
		cv_store_sort_t *s = &plan->sort[plan->nsort];
		cv_search_msort_t *ms = &plan->msort[plan->nsort];
		*ms = (cv_search_msort_t){ .desc = desc };
		if (strcmp(code, "_lastUpdated") == 0) {
			*s = (cv_store_sort_t){ .kind = CV_SORT_UPDATED, .desc = desc };
		} else {
			const cv_sp_t *sp = cv_sp_find(p->reg, plan->type, code);
			if (!sp || !sp->compiled)
				return bad(p, name, "unknown parameter to sort by");
			ms->sp = sp;
			if (sp->type == CV_SP_DATE && !sp->blind_date)
				*s = (cv_store_sort_t){ .kind = CV_SORT_DATE, .param = sp->code, .desc = desc };
			else if (sp->type == CV_SP_NUMBER || sp->type == CV_SP_QUANTITY)
				*s = (cv_store_sort_t){ .kind = CV_SORT_NUM, .param = sp->code, .desc = desc };
			else if (sp->type == CV_SP_STRING || sp->type == CV_SP_TOKEN || sp->type == CV_SP_REFERENCE ||
				 sp->type == CV_SP_URI || sp->type == CV_SP_DATE)
				memory = true; /* blinded in the index: sorted over the opened matches */
			else
				return unsupported(p, name, "composite and special parameters cannot be sorted by");
		}
		plan->nsort++;
	}
	if (!rc && memory) {
		plan->nmsort = plan->nsort;
		plan->nsort = 0;
	}
	return rc;
}

static cv_rc include_param(ps_t *p, cv_search_plan_t *plan, const char *name, const char *v, bool rev)
{
	if (plan->ninc >= CV_SEARCH_INCLUDES_MAX)
		return bad(p, name, "too many _include and _revinclude parameters");
	cv_search_include_t *inc = &plan->inc[plan->ninc];
	memset(inc, 0, sizeof *inc);
	inc->rev = rev;
	const char *mod = strchr(name, ':');
	if (mod && strcmp(mod, ":iterate") != 0 && strcmp(mod, ":recurse") != 0)
		return unsupported(p, name, "_include and _revinclude take only :iterate");
	inc->iterate = mod != NULL;
	char *parts[3];
	size_t n;
	cv_rc rc = split(p->pool, v, ':', parts, 3, &n);
	if (!rc && n == 1 && strcmp(parts[0], "*") == 0) {
		inc->source = rev ? NULL : plan->type;
		if (rev)
			return unsupported(p, name, "_revinclude=* is not supported; name Type:parameter");
		plan->ninc++;
		return CV_OK;
	}
	if (rc || n < 2 || !cv_model_is_resource(p->m, parts[0]))
		return bad(p, name, "write Type:parameter or Type:parameter:TargetType");
	inc->source = parts[0];
	if (strcmp(parts[1], "*") != 0) {
		inc->sp = cv_sp_find(p->reg, parts[0], parts[1]);
		if (!inc->sp || inc->sp->type != CV_SP_REFERENCE)
			return bad(p, name, "the parameter is not a reference parameter of that type");
	} else if (rev) {
		return unsupported(p, name, "_revinclude needs a named parameter");
	}
	if (n == 3) {
		if (!cv_model_is_resource(p->m, parts[2]))
			return bad(p, name, "the target type is not a resource type");
		inc->target = parts[2];
	}
	if (!rev && !inc->iterate && strcmp(inc->source, plan->type) != 0)
		return bad(p, name, "_include names the searched type (or add :iterate)");
	plan->ninc++;
	return CV_OK;
}

static cv_rc summary_param(ps_t *p, cv_search_plan_t *plan, const char *name, const char *v)
{
	static const struct {
		const char *s;
		cv_summary sum;
	} modes[] = { { "count", CV_SUMMARY_COUNT }, { "true", CV_SUMMARY_TRUE }, { "text", CV_SUMMARY_TEXT },
		      { "data", CV_SUMMARY_DATA }, { "false", CV_SUMMARY_FALSE } };
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		if (strcmp(v, modes[i].s) == 0) {
			plan->summary = modes[i].sum;
			return CV_OK;
		}
	return bad(p, name, "use count, true, text, data or false");
}

static cv_rc elements_param(ps_t *p, cv_search_plan_t *plan, const char *name, const char *v)
{
	char *vals[CV_SEARCH_VALUES_MAX];
	size_t n;
	cv_rc rc = split(p->pool, v, ',', vals, CV_SEARCH_VALUES_MAX, &n);
	if (rc == CV_E_LIMIT)
		return bad(p, name, "too many elements");
	for (size_t i = 0; !rc && i < n; i++) {
		const char *e = vals[i];
		if (!e[0] || strspn(e, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(e))
			return bad(p, name, "list top-level element names, such as name,birthDate");
	}
	plan->elements = cv_pool_alloc(p->pool, n * sizeof *plan->elements);
	if (!plan->elements)
		return CV_E_NOMEM;
	memcpy(plan->elements, vals, n * sizeof *vals);
	plan->nelements = n;
	return rc;
}

static cv_rc total_param(ps_t *p, cv_search_plan_t *plan, const char *name, const char *v)
{
	if (strcmp(v, "none") == 0)
		plan->total = CV_TOTAL_NONE;
	else if (strcmp(v, "estimate") == 0)
		plan->total = CV_TOTAL_ESTIMATE;
	else if (strcmp(v, "accurate") == 0)
		plan->total = CV_TOTAL_ACCURATE;
	else
		return bad(p, name, "use none, estimate or accurate");
	return CV_OK;
}

/* A result parameter (leading underscore, not a search parameter). 1 if it was one. */
static int result_param(ps_t *p, cv_search_plan_t *plan, const char *name, const char *v, cv_rc *rc)
{
	*rc = CV_OK;
	if (strcmp(name, "_count") == 0) {
		if (!parse_count(v, &plan->count))
			*rc = bad(p, name, "must be a whole number");
		else if (plan->count > p->lim->max_count)
			plan->count = p->lim->max_count;
	} else if (strcmp(name, "_sort") == 0) {
		*rc = sort_param(p, plan, name, v);
	} else if (strncmp(name, "_include", 8) == 0 && (!name[8] || name[8] == ':')) {
		*rc = include_param(p, plan, name, v, false);
	} else if (strncmp(name, "_revinclude", 11) == 0 && (!name[11] || name[11] == ':')) {
		*rc = include_param(p, plan, name, v, true);
	} else if (strcmp(name, "_summary") == 0) {
		*rc = summary_param(p, plan, name, v);
	} else if (strcmp(name, "_elements") == 0) {
		*rc = elements_param(p, plan, name, v);
	} else if (strcmp(name, "_total") == 0) {
		*rc = total_param(p, plan, name, v);
	} else if (strcmp(name, "_cursor") == 0) {
		plan->cursor = v;
		return 1; /* not part of the canonical query */
	} else if (strcmp(name, "_format") == 0 || strcmp(name, "_pretty") == 0) {
		return 1;
	} else {
		return 0;
	}
	return 1;
}

/* Percent-encodes s into b for a query string. */
static cv_rc encode(cv_buf_t *b, const char *s)
{
	cv_rc rc = CV_OK;
	for (; *s && !rc; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || strchr("-._~:", c))
			rc = cv_buf_append(b, s, 1);
		else
			rc = cv_buf_printf(b, "%%%02X", c);
	}
	return rc;
}

cv_rc cv_search_parse(const cv_sp_registry_t *reg, const cv_model_t *m, const char *type, const cv_param_t *params,
		      size_t n, const char *base_url, bool lenient, const cv_search_limits_t *lim, cv_pool_t *pool,
		      cv_search_plan_t *plan, cv_outcome_t *oo)
{
	ps_t p = { .reg = reg, .m = m, .base_url = base_url, .lim = lim, .pool = pool, .oo = oo, .lenient = lenient };
	memset(plan, 0, sizeof *plan);
	plan->type = type;
	plan->count = lim->default_count;
	cv_buf_init(&plan->canonical, 64u * 1024);
	if (cv_pool_defer(pool, (void (*)(void *))cv_buf_release, &plan->canonical))
		return CV_E_NOMEM;
	cv_rc rc = CV_OK;
	for (size_t i = 0; !rc && i < n; i++) {
		const char *name = params[i].name, *v = params[i].value ? params[i].value : "";
		if (!name[0])
			continue;
		if (!result_param(&p, plan, name, v, &rc))
			rc = add_clause(&p, plan, name, v);
		if (rc || strcmp(name, "_cursor") == 0 || strcmp(name, "_format") == 0 || strcmp(name, "_pretty") == 0)
			continue;
		if (plan->canonical.len)
			rc = cv_buf_puts(&plan->canonical, "&");
		if (!rc)
			rc = encode(&plan->canonical, name);
		if (!rc)
			rc = cv_buf_puts(&plan->canonical, "=");
		if (!rc)
			rc = encode(&plan->canonical, v);
	}
	if (rc == CV_E_LIMIT)
		rc = bad(&p, "", "the search is too long");
	return rc;
}

/* ---- forms -------------------------------------------------------------- */

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10
															   : -1;
}

/* Decodes len bytes of one form field into the pool. */
static cv_rc form_part(const char *s, size_t len, cv_pool_t *pool, const char **out)
{
	char *d = cv_pool_alloc(pool, len + 1);
	if (!d)
		return CV_E_NOMEM;
	size_t w = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '+') {
			d[w++] = ' ';
		} else if (s[i] == '%') {
			if (i + 2 >= len)
				return CV_E_INVALID;
			int hi = hexval(s[i + 1]), lo = hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return CV_E_INVALID;
			d[w++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (s[i] == '\0') {
			return CV_E_INVALID;
		} else {
			d[w++] = s[i];
		}
	}
	d[w] = '\0';
	char *check;
	size_t clen;
	/* valid UTF-8 only: fold refuses anything else */
	cv_rc rc = w ? cv_fold(d, w, pool, &check, &clen) : CV_OK;
	if (rc == CV_E_INVALID)
		return rc;
	*out = d;
	return rc == CV_E_LIMIT ? CV_E_LIMIT : CV_OK;
}

cv_rc cv_search_form_decode(const char *body, size_t len, cv_pool_t *pool, cv_param_t *out, size_t max, size_t *n)
{
	*n = 0;
	size_t i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && body[end] != '&')
			end++;
		if (end > i) {
			if (*n >= max)
				return CV_E_LIMIT;
			size_t eq = i;
			while (eq < end && body[eq] != '=')
				eq++;
			cv_rc rc = form_part(body + i, eq - i, pool, &out[*n].name);
			if (!rc)
				rc = eq < end ? form_part(body + eq + 1, end - eq - 1, pool, &out[*n].value)
					      : form_part("", 0, pool, &out[*n].value);
			if (rc)
				return rc;
			(*n)++;
		}
		i = end + 1;
	}
	return CV_OK;
}
