/*
 * lookup.c - the store lookups behind the decisions, cached until the next
 * write: relationships (CareTeam, Encounter, PractitionerRole), consents,
 * break-glass declarations.
 */
#include "policy/lookup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/time.h"
#include "model/json.h"

/* ---- the cache ----------------------------------------------------------- */

/* A copy, in pool, of the cached value of key when it is still valid. */
static const char *cache_get(cv_policy_t *pol, const char *key, int64_t seq, cv_pool_t *pool)
{
	const char *out = NULL;
	pthread_mutex_lock(&pol->mu);
	for (unsigned i = 0; i < CV_RULES_CACHE; i++) {
		cv_rules_cached_t *c = &pol->cache[i];
		if (c->key && c->seq == seq && strcmp(c->key, key) == 0 && (!c->until_us || cv_time_now_us() < c->until_us)) {
			char *v = cv_pool_alloc(pool, c->len + 1);
			if (v) {
				memcpy(v, c->value, c->len + 1);
				out = v;
			}
			break;
		}
	}
	pthread_mutex_unlock(&pol->mu);
	return out;
}

static void cache_put(cv_policy_t *pol, const char *key, int64_t seq, const char *value, size_t len, int64_t until_us)
{
	/* a bound on any staleness the sequence cannot see (see cv_store_types_seq's caveat) */
	int64_t cap = cv_time_now_us() + CV_LOOKUP_MAX_AGE_US;
	if (!until_us || until_us > cap)
		until_us = cap;
	char *k = strdup(key), *v = malloc(len + 1);
	if (!k || !v) {
		free(k);
		free(v);
		return;
	}
	memcpy(v, value, len);
	v[len] = '\0';
	pthread_mutex_lock(&pol->mu);
	unsigned slot = pol->next;
	for (unsigned i = 0; i < CV_RULES_CACHE; i++)
		if (pol->cache[i].key && strcmp(pol->cache[i].key, key) == 0) {
			slot = i;
			break;
		}
	if (slot == pol->next)
		pol->next = (pol->next + 1) % CV_RULES_CACHE;
	cv_rules_cached_t *c = &pol->cache[slot];
	free(c->key);
	free(c->value);
	*c = (cv_rules_cached_t){ .key = k, .seq = seq, .value = v, .len = len, .until_us = until_us };
	pthread_mutex_unlock(&pol->mu);
}

cv_rc cv_policy_new(cv_store_t *s, const cv_model_t *m, const cv_sp_registry_t *sp, int64_t break_glass_us,
		    cv_policy_t **out)
{
	cv_policy_t *pol = calloc(1, sizeof *pol);
	if (!pol)
		return CV_E_NOMEM;
	pol->store = s;
	pol->model = m;
	pol->sp = sp;
	pol->break_glass_us = break_glass_us;
	pthread_mutex_init(&pol->mu, NULL);
	pthread_mutex_init(&pol->cmu, NULL);
	*out = pol;
	return CV_OK;
}

void cv_policy_free(cv_policy_t *pol)
{
	if (!pol)
		return;
	for (unsigned i = 0; i < CV_RULES_CACHE; i++) {
		free(pol->cache[i].key);
		free(pol->cache[i].value);
	}
	for (unsigned i = 0; i < CV_RULES_COMPARTMENTS; i++)
		free(pol->comp[i].ids);
	pthread_mutex_destroy(&pol->mu);
	pthread_mutex_destroy(&pol->cmu);
	free(pol);
}

const char *cv_lookup_compartments_get(cv_policy_t *pol, int64_t seq, cv_pool_t *pool)
{
	const char *out = NULL;
	cv_rules_compartments_t *c = &pol->comp[(uint64_t)seq % CV_RULES_COMPARTMENTS];
	pthread_mutex_lock(&pol->cmu);
	if (seq > 0 && c->seq == seq)
		out = cv_pool_strdup(pool, c->ids);
	pthread_mutex_unlock(&pol->cmu);
	return out;
}

void cv_lookup_compartments_put(cv_policy_t *pol, int64_t seq, const char *ids)
{
	char *copy = seq > 0 ? strdup(ids) : NULL;
	if (!copy)
		return;
	cv_rules_compartments_t *c = &pol->comp[(uint64_t)seq % CV_RULES_COMPARTMENTS];
	pthread_mutex_lock(&pol->cmu);
	char *old = c->ids;
	c->seq = seq;
	c->ids = copy;
	pthread_mutex_unlock(&pol->cmu);
	free(old);
}

/* ---- helpers ------------------------------------------------------------- */

const char *cv_lookup_ref_id(cv_pool_t *pool, const char *ref, const char *type)
{
	size_t tl = strlen(type);
	/* relative references only: an absolute URL may name another server's resource of the same id */
	if (!ref || strncmp(ref, type, tl) != 0 || ref[tl] != '/' || !ref[tl + 1] || strchr(ref + tl + 1, '/'))
		return NULL;
	return cv_pool_strdup(pool, ref + tl + 1);
}

bool cv_lookup_period_covers(json_object *period, int64_t now_us)
{
	json_object *v;
	int64_t lo, hi;
	int prec;
	if (!period || !json_object_is_type(period, json_type_object))
		return true;
	if (json_object_object_get_ex(period, "start", &v) &&
	    cv_time_range(json_object_get_string(v), &lo, &hi, &prec) == CV_OK && lo > now_us)
		return false;
	if (json_object_object_get_ex(period, "end", &v) &&
	    cv_time_range(json_object_get_string(v), &lo, &hi, &prec) == CV_OK && hi < now_us)
		return false;
	return true;
}

json_object *cv_lookup_get(json_object *o, const char *k)
{
	json_object *v;
	return o && json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

const char *cv_lookup_str(json_object *o, const char *k)
{
	json_object *v = cv_lookup_get(o, k);
	return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static const char *ref_at(json_object *o, const char *k)
{
	return cv_lookup_str(cv_lookup_get(o, k), "reference");
}

/* Calls fn with every current resource of `type` whose parameter `code`
 * refers to target ("Practitioner/x"), parsed, at most CV_LOOKUP_SCAN_MAX,
 * in batches whose memory goes after each (fn copies what it keeps). */
typedef cv_rc (*each_fn)(void *arg, json_object *res, cv_pool_t *pool);

typedef struct each {
	each_fn fn;
	void *arg;
	cv_pool_t *pool;
	size_t n;
	cv_store_cursor_t last;
} each_t;

static cv_rc each_hit(void *arg, const cv_store_hit_t *h)
{
	each_t *e = arg;
	json_object *obj = NULL;
	const char *err;
	cv_json_limits_t lim;
	cv_json_limits_default(&lim);
	e->n++;
	e->last = h->at;
	if (cv_json_parse((const char *)h->v.body, h->v.body_len, &lim, e->pool, &obj, &err))
		return CV_OK; /* stored bodies parse; one that does not decides nothing */
	cv_rc rc = e->fn(e->arg, obj, e->pool);
	json_object_put(obj);
	return rc;
}

static cv_rc referring(cv_policy_t *pol, const char *type, const char *code, const char *target, each_fn fn,
		       void *arg)
{
	char key[160];
	if ((size_t)snprintf(key, sizeof key, "r:%s", target) >= sizeof key)
		return CV_E_INVALID;
	cv_store_term_t t = { .kind = CV_TERM_HASH, .param = code, .key = key, .key_len = strlen(key) };
	cv_store_clause_t c = { .n = 1, .terms = &t };
	cv_store_query_t q = { .type = type, .nclauses = 1, .clauses = &c, .limit = 500 };
	size_t total = 0;
	cv_rc rc = CV_OK;
	for (;;) {
		cv_pool_t batch;
		cv_pool_init(&batch, 0);
		each_t e = { .fn = fn, .arg = arg, .pool = &batch };
		rc = cv_store_search(pol->store, &q, &batch, each_hit, &e);
		cv_pool_release(&batch);
		total += e.n;
		if (rc || e.n < q.limit || total >= CV_LOOKUP_SCAN_MAX)
			break;
		q.after = e.last;
	}
	return rc;
}

/* ---- relationships ------------------------------------------------------- */

typedef struct rel {
	const char *practitioner; /* "Practitioner/x" */
	int64_t now;
	int64_t until;            /* the next time a period seen starts or ends (0: none) */
	cv_buf_t out;
} rel_t;

/* Notes when the period next starts or ends: the lookup is stale from then on. */
static void boundary(rel_t *r, json_object *period)
{
	json_object *v;
	int64_t lo, hi;
	int prec;
	if (!period || !json_object_is_type(period, json_type_object))
		return;
	if (json_object_object_get_ex(period, "start", &v) &&
	    cv_time_range(json_object_get_string(v), &lo, &hi, &prec) == CV_OK && lo > r->now && (!r->until || lo < r->until))
		r->until = lo;
	if (json_object_object_get_ex(period, "end", &v) &&
	    cv_time_range(json_object_get_string(v), &lo, &hi, &prec) == CV_OK && hi >= r->now &&
	    (!r->until || hi + 1 < r->until))
		r->until = hi + 1;
}

static cv_rc rel_line(rel_t *r, char kind, const char *id)
{
	return id ? cv_buf_printf(&r->out, "%c %s\n", kind, id) : CV_OK;
}

/* An active CareTeam, within its period, where the practitioner is a member within theirs. */
static cv_rc careteam(void *arg, json_object *ct, cv_pool_t *pool)
{
	rel_t *r = arg;
	json_object *parts, *period;
	const char *status = cv_lookup_str(ct, "status");
	if (!status || strcmp(status, "active") != 0)
		return CV_OK;
	if (json_object_object_get_ex(ct, "period", &period)) {
		boundary(r, period);
		if (!cv_lookup_period_covers(period, r->now))
			return CV_OK;
	}
	const char *patient = cv_lookup_ref_id(pool, ref_at(ct, "subject"), "Patient");
	if (!patient || !json_object_object_get_ex(ct, "participant", &parts) ||
	    !json_object_is_type(parts, json_type_array))
		return CV_OK;
	for (size_t i = 0; i < json_object_array_length(parts); i++) {
		json_object *p = json_object_array_get_idx(parts, i), *pp = NULL;
		const char *member = ref_at(p, "member");
		const char *id = cv_lookup_ref_id(pool, member, "Practitioner");
		if (!id || strcmp(id, r->practitioner + strlen("Practitioner/")) != 0)
			continue;
		json_object_object_get_ex(p, "period", &pp);
		boundary(r, pp);
		if (cv_lookup_period_covers(pp, r->now))
			return rel_line(r, 'A', patient);
	}
	return CV_OK;
}

/* An Encounter the practitioner takes part in, unless cancelled or entered in error. */
static cv_rc encounter(void *arg, json_object *enc, cv_pool_t *pool)
{
	rel_t *r = arg;
	const char *status = cv_lookup_str(enc, "status");
	if (status && (strcmp(status, "cancelled") == 0 || strcmp(status, "entered-in-error") == 0))
		return CV_OK;
	return rel_line(r, 'T', cv_lookup_ref_id(pool, ref_at(enc, "subject"), "Patient"));
}

static cv_rc practitioner_role(void *arg, json_object *pr, cv_pool_t *pool)
{
	rel_t *r = arg;
	json_object *active;
	if (json_object_object_get_ex(pr, "active", &active) && !json_object_get_boolean(active))
		return CV_OK;
	return rel_line(r, 'O', cv_lookup_ref_id(pool, ref_at(pr, "organization"), "Organization"));
}

cv_rc cv_lookup_relations(cv_policy_t *pol, int64_t seq, const char *practitioner, bool doctor, cv_pool_t *pool,
			  const char **out)
{
	char *key = cv_pool_printf(pool, "rel %c %s", doctor ? 'd' : 'n', practitioner);
	if (!key)
		return CV_E_NOMEM;
	if ((*out = cache_get(pol, key, seq, pool)))
		return CV_OK;
	rel_t r = { .practitioner = practitioner, .now = cv_time_now_us() };
	cv_buf_init(&r.out, 4u << 20);
	cv_rc rc = referring(pol, "CareTeam", "participant", practitioner, careteam, &r);
	if (!rc && doctor)
		rc = referring(pol, "Encounter", "participant", practitioner, encounter, &r);
	if (!rc)
		rc = referring(pol, "PractitionerRole", "practitioner", practitioner, practitioner_role, &r);
	if (!rc && !(*out = cv_pool_strndup(pool, r.out.len ? r.out.data : "", r.out.len)))
		rc = CV_E_NOMEM;
	if (!rc)
		cache_put(pol, key, seq, *out, r.out.len, r.until);
	cv_buf_release(&r.out);
	return rc;
}

/* ---- consents ------------------------------------------------------------ */

static bool has_code(json_object *cc, const char *code)
{
	json_object *codings;
	if (!cc || !json_object_object_get_ex(cc, "coding", &codings) || !json_object_is_type(codings, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(codings); i++) {
		const char *c = cv_lookup_str(json_object_array_get_idx(codings, i), "code");
		if (c && strcmp(c, code) == 0)
			return true;
	}
	return false;
}

static cv_rc consent(void *arg, json_object *c, cv_pool_t *pool)
{
	cv_buf_t *out = arg;
	json_object *scope = NULL;
	const char *status = cv_lookup_str(c, "status");
	(void)pool;
	if (!status || strcmp(status, "active") != 0 || !json_object_object_get_ex(c, "scope", &scope) ||
	    !has_code(scope, "patient-privacy"))
		return CV_OK;
	cv_rc rc = cv_buf_append(out, out->len > 1 ? "," : "", out->len > 1 ? 1 : 0);
	return rc ? rc : cv_json_write(c, out);
}

cv_rc cv_lookup_consents(cv_policy_t *pol, int64_t seq, const char *patient, cv_pool_t *pool, const char **out)
{
	char *key = cv_pool_printf(pool, "consent %s", patient);
	char *target = cv_pool_printf(pool, "Patient/%s", patient);
	if (!key || !target)
		return CV_E_NOMEM;
	if ((*out = cache_get(pol, key, seq, pool)))
		return CV_OK;
	cv_buf_t b;
	cv_buf_init(&b, 4u << 20);
	cv_rc rc = cv_buf_append(&b, "[", 1);
	if (!rc)
		rc = referring(pol, "Consent", "patient", target, consent, &b);
	if (!rc)
		rc = cv_buf_append(&b, "]", 1);
	if (!rc && !(*out = cv_pool_strndup(pool, b.data, b.len)))
		rc = CV_E_NOMEM;
	if (!rc)
		cache_put(pol, key, seq, *out, b.len, 0);
	cv_buf_release(&b);
	return rc;
}

/* ---- break-glass --------------------------------------------------------- */

cv_rc cv_lookup_break_glass(cv_policy_t *pol, int64_t seq, const char *account, cv_pool_t *pool, const char **out)
{
	char *key = cv_pool_printf(pool, "bg %s", account);
	if (!key)
		return CV_E_NOMEM;
	if ((*out = cache_get(pol, key, seq, pool)))
		return CV_OK;
	cv_store_version_t v;
	cv_rc rc = cv_store_read(pol->store, CV_BREAK_GLASS_TYPE, account, 0, pool, &v);
	if (rc == CV_E_NOTFOUND || (!rc && v.deleted)) {
		*out = "";
		cache_put(pol, key, seq, "", 0, 0);
		return CV_OK;
	}
	if (rc)
		return rc;
	json_object *rec = NULL, *grants;
	const char *err;
	cv_json_limits_t lim;
	cv_json_limits_default(&lim);
	if ((rc = cv_json_parse((const char *)v.body, v.body_len, &lim, pool, &rec, &err)))
		return CV_E_STORAGE;
	cv_buf_t b;
	cv_buf_init(&b, 1u << 20);
	if (json_object_object_get_ex(rec, "grants", &grants) && json_object_is_type(grants, json_type_array))
		for (size_t i = 0; !rc && i < json_object_array_length(grants); i++) {
			json_object *g = json_object_array_get_idx(grants, i), *exp;
			const char *patient = cv_lookup_str(g, "patient");
			if (patient && json_object_object_get_ex(g, "expires_us", &exp))
				rc = cv_buf_printf(&b, "%lld %s\n", (long long)json_object_get_int64(exp), patient);
		}
	json_object_put(rec);
	if (!rc && !(*out = cv_pool_strndup(pool, b.len ? b.data : "", b.len)))
		rc = CV_E_NOMEM;
	if (!rc)
		cache_put(pol, key, seq, *out, b.len, 0);
	cv_buf_release(&b);
	return rc;
}
