/*
 * search.c - the search interaction: GET /fhir/{type}?... and
 * POST /fhir/{type}/_search, answered with a searchset Bundle.
 *
 * A plan (search_parse.c) runs against the store's index; candidates that the
 * index can only narrow are opened and checked (search_check.c) before they
 * count, so page sizes and totals never include a false match. Pages are
 * keyset pages: the next link carries a sealed cursor (the sort keys and row
 * key of the last entry, bound to the query), so paging stays correct while
 * others write, and a client can neither read nor forge it.
 */
#define _GNU_SOURCE
#include "fhir/fhir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/time.h"
#include "audit/audit.h"
#include "crypto/crypto.h"
#include "fhir/search.h"

#define FHIR_JSON "application/fhir+json; charset=utf-8"
#define SEARCH_BATCH 200           /* candidates fetched at a time when they need checking */
#define SEARCH_SCAN_MAX 20000      /* candidates examined for one page */
#define SEARCH_COUNT_MAX 200000    /* candidates examined for an accurate total */
#define SEARCH_INCLUDE_MAX 1000    /* resources added by _include / _revinclude */
#define SEARCH_ITERATE_MAX 4       /* rounds of :iterate */
#define SEARCH_PARAMS_MAX 256      /* parameters of one search (query and form) */
#define CURSOR_PURPOSE "carevault search cursor v1"

typedef struct match {
	cv_store_version_t v;
	cv_store_cursor_t at;
	json_object *obj;   /* parsed body */
	const char *id;     /* logical id */
} match_t;

typedef cv_rc (*match_fn)(void *arg, const match_t *m);

/* ---- running a plan ------------------------------------------------------ */

static cv_rc resolve_chains(cv_fhir_t *f, cv_pool_t *pool, cv_search_plan_t *plan, cv_outcome_t *oo);

static bool needs_check(const cv_search_plan_t *plan)
{
	if (cv_access_filters(plan->access, plan->type))
		return true;
	for (size_t i = 0; i < plan->n; i++)
		if (plan->clauses[i].check)
			return true;
	return false;
}

/* The store query of a plan (clauses the index can answer). */
static cv_rc store_query(const cv_search_plan_t *plan, cv_pool_t *pool, cv_store_query_t *q)
{
	cv_store_clause_t *cl = cv_pool_alloc(pool, (plan->n + 1) * sizeof *cl);
	if (!cl)
		return CV_E_NOMEM;
	memset(q, 0, sizeof *q);
	q->type = plan->type;
	for (size_t i = 0; i < plan->n; i++)
		if (plan->clauses[i].use_sql)
			cl[q->nclauses++] = plan->clauses[i].sql;
	bool narrowed = false;
	cv_rc rc = cv_access_clause(plan->access, plan->type, pool, &cl[q->nclauses], &narrowed);
	if (rc)
		return rc;
	q->nclauses += narrowed;
	q->clauses = cl;
	q->nsort = plan->nsort;
	memcpy(q->sort, plan->sort, sizeof q->sort);
	q->as_of_seq = plan->as_of_seq;
	return CV_OK;
}

static const char *obj_id(json_object *o)
{
	json_object *id;
	return o && json_object_object_get_ex(o, "id", &id) ? json_object_get_string(id) : NULL;
}

typedef struct batch {
	size_t n, cap;
	cv_store_hit_t *v;
	cv_pool_t *pool;
} batch_t;

static cv_rc gather(void *arg, const cv_store_hit_t *h)
{
	batch_t *b = arg;
	if (b->n == b->cap)
		return CV_E_INTERNAL;
	b->v[b->n++] = *h;
	return CV_OK;
}

typedef struct run {
	cv_fhir_t *f;
	cv_search_plan_t *plan;
	size_t want;                 /* matches to deliver */
	size_t scan_max;             /* candidates to examine at most */
	match_fn fn;
	void *arg;
	cv_pool_t *keep;             /* where delivered matches live */
	size_t got;                  /* delivered */
	bool more;                   /* there are matches (or unexamined candidates) after the last one */
	bool check;                  /* candidates go through the plan's in-memory checks or the access rules */
	bool filter;                 /* candidates go through the access rules */
	cv_store_cursor_t last;      /* where the next page starts */
} run_t;

/* Checks one candidate and delivers it; 1 when the run has all it wants. */
static cv_rc consider(run_t *r, const cv_store_hit_t *h, cv_pool_t *scratch, int *stop)
{
	json_object *obj = NULL;
	/* parsed once: the tree goes to r->keep when the candidate is delivered, else it is freed here */
	cv_rc rc = cv_fhir_parse_stored(&h->v, NULL, &obj);
	if (rc)
		return rc;
	bool pass = true;
	for (size_t i = 0; pass && r->check && i < r->plan->n; i++)
		pass = !r->plan->clauses[i].check || cv_search_check(&r->plan->clauses[i], r->f->model, obj, scratch);
	if (pass && r->filter) {
		cv_verdict verdict;
		rc = cv_access_check_stored(r->plan->access, CV_ACT_FHIR_SEARCH, h->v.type, h->v.seq, obj, &verdict, NULL);
		pass = !rc && verdict == CV_ACCESS_PERMIT;
	}
	if (pass && r->got == r->want) {
		r->more = true;
		*stop = 1;
		pass = false;
	}
	if (!pass || cv_json_pool_own(r->keep, obj)) {
		json_object_put(obj);
		return rc ? rc : pass ? CV_E_NOMEM : CV_OK;
	}
	match_t m = { .v = h->v, .at = h->at, .obj = obj };
	m.v.body = (const uint8_t *)cv_pool_strndup(r->keep, (const char *)h->v.body, h->v.body_len);
	m.v.type = cv_pool_strdup(r->keep, h->v.type);
	m.v.rid = cv_pool_strdup(r->keep, h->v.rid);
	if (!m.v.body || !m.v.type || !m.v.rid)
		return CV_E_NOMEM;
	m.id = obj_id(m.obj);
	r->got++;
	r->last = h->at;
	return r->fn ? r->fn(r->arg, &m) : CV_OK;
}

/* Runs r->plan from `after`, delivering up to r->want matches. */
static cv_rc run_plan(run_t *r, const cv_store_cursor_t *after, cv_outcome_t *oo)
{
	cv_store_query_t q;
	cv_rc rc = resolve_chains(r->f, r->keep, r->plan, oo);
	if (!rc)
		rc = store_query(r->plan, r->keep, &q);
	if (rc)
		return rc;
	if (after)
		q.after = *after;
	r->check = needs_check(r->plan);
	r->filter = cv_access_filters(r->plan->access, r->plan->type);
	size_t scanned = 0;
	int stop = 0;
	while (!rc && !stop) {
		cv_pool_t scratch;
		cv_pool_init(&scratch, 0);
		batch_t b = { .cap = r->check ? SEARCH_BATCH : r->want - r->got + 1, .pool = &scratch };
		b.v = cv_pool_alloc(&scratch, b.cap * sizeof *b.v);
		q.limit = (unsigned)b.cap;
		rc = b.v ? cv_store_search(r->f->store, &q, &scratch, gather, &b) : CV_E_NOMEM;
		for (size_t i = 0; !rc && !stop && i < b.n; i++)
			rc = consider(r, &b.v[i], &scratch, &stop);
		scanned += b.n;
		if (b.n)
			q.after = b.v[b.n - 1].at;
		cv_pool_release(&scratch);
		if (b.n < b.cap)
			break;
		if (!stop && scanned >= r->scan_max) {
			/* examined enough: page from the last candidate examined */
			r->more = true;
			r->last = q.after;
			break;
		}
	}
	return rc;
}

/* ---- chains ------------------------------------------------------------- */

typedef struct ids {
	size_t n;
	const char *v[CV_SEARCH_CHAIN_MAX + 1];
	const cv_sp_t *link;     /* reverse chains: the reference read from each match */
	const char *want_type;   /* reverse chains: the type referred to */
	const cv_model_t *model;
	cv_pool_t *pool;
} ids_t;

static cv_rc add_id(ids_t *ids, const char *id)
{
	for (size_t i = 0; i < ids->n; i++)
		if (strcmp(ids->v[i], id) == 0)
			return CV_OK;
	if (ids->n > CV_SEARCH_CHAIN_MAX)
		return CV_E_LIMIT;
	ids->v[ids->n++] = id;
	return CV_OK;
}

static cv_rc take_id(void *arg, const match_t *m)
{
	ids_t *ids = arg;
	if (!ids->link)
		return m->id ? add_id(ids, m->id) : CV_OK;
	/* reverse: the ids this match refers to through the link parameter */
	cv_sp_entries_t es = { .pool = ids->pool };
	cv_rc rc = cv_sp_extract_one(ids->link, ids->model, m->obj, CV_SP_MATCH, &es);
	size_t tl = strlen(ids->want_type);
	for (size_t i = 0; !rc && i < es.n; i++) {
		const cv_ix_entry_t *e = &es.v[i];
		if (e->kind == CV_IX_HASH && e->key_len > 3 + tl && strncmp(e->key, "r:", 2) == 0 &&
		    strncmp(e->key + 2, ids->want_type, tl) == 0 && e->key[2 + tl] == '/')
			rc = add_id(ids, cv_pool_strndup(ids->pool, e->key + 3 + tl, e->key_len - 3 - tl));
	}
	return rc;
}

/* Runs a chain's inner search (every target type of a forward chain) and
 * turns the clause into index terms: references to what it found. */
static cv_rc resolve_chain(cv_fhir_t *f, cv_pool_t *pool, const char *type, cv_access_t *access, cv_search_clause_t *c,
			   cv_outcome_t *oo)
{
	size_t n = 0;
	cv_store_term_t *t = cv_pool_alloc(pool, (CV_SEARCH_CHAIN_MAX + 1) * sizeof *t);
	ids_t *ids = cv_pool_alloc(pool, sizeof *ids);
	if (!t || !ids)
		return CV_E_NOMEM;
	for (cv_search_chain_t *ch = c->chain; ch; ch = ch->next) {
		memset(ids, 0, sizeof *ids);
		ch->inner->access = access; /* criteria on what the caller cannot see change nothing */
		ids->link = ch->reverse ? ch->link : NULL;
		ids->want_type = type;
		ids->model = f->model;
		ids->pool = pool;
		run_t r = { .f = f, .plan = ch->inner, .want = CV_SEARCH_CHAIN_MAX, .scan_max = SEARCH_COUNT_MAX,
			    .fn = take_id, .arg = ids, .keep = pool };
		cv_rc rc = run_plan(&r, NULL, oo);
		if (rc == CV_E_LIMIT || (!rc && (r.more || n + ids->n > CV_SEARCH_CHAIN_MAX))) {
			cv_outcome_add(oo, CV_SEV_ERROR, "too-costly", NULL, "search parameter '%s' matches more than %d "
				       "resources: narrow it", c->name, CV_SEARCH_CHAIN_MAX);
			return CV_E_INVALID;
		}
		if (rc)
			return rc;
		for (size_t i = 0; i < ids->n; i++, n++) {
			if (ch->reverse) {
				t[n] = (cv_store_term_t){ .kind = CV_TERM_ID, .key = ids->v[i] };
				continue;
			}
			const char *key = cv_pool_printf(pool, "r:%s/%s", ch->target, ids->v[i]);
			if (!key)
				return CV_E_NOMEM;
			t[n] = (cv_store_term_t){ .kind = CV_TERM_HASH, .param = c->sp->code, .key = key,
						  .key_len = strlen(key) };
		}
	}
	if (n == 0) /* nothing matched: a term no resource has */
		t[n++] = (cv_store_term_t){ .kind = CV_TERM_ID, .key = "" };
	c->sql = (cv_store_clause_t){ .n = n, .terms = t };
	c->use_sql = true;
	c->chain = NULL;
	return CV_OK;
}

static cv_rc resolve_chains(cv_fhir_t *f, cv_pool_t *pool, cv_search_plan_t *plan, cv_outcome_t *oo)
{
	cv_rc rc = CV_OK;
	for (size_t i = 0; !rc && i < plan->n; i++)
		if (plan->clauses[i].chain)
			rc = resolve_chain(f, pool, plan->type, plan->access, &plan->clauses[i], oo);
	return rc;
}

/* ---- the response ------------------------------------------------------- */

typedef struct page {
	cv_exchange_t *ex;
	cv_fhir_t *f;
	cv_search_plan_t *plan;
	size_t n, cap;
	match_t *v;                  /* the matches */
	size_t ninc;
	match_t inc[SEARCH_INCLUDE_MAX]; /* included resources */
} page_t;

static cv_rc keep_match(void *arg, const match_t *m)
{
	page_t *p = arg;
	if (p->n == p->cap)
		return CV_E_INTERNAL;
	p->v[p->n++] = *m;
	return CV_OK;
}

static bool already(const page_t *p, const char *type, const char *id)
{
	for (size_t i = 0; i < p->n; i++)
		if (strcmp(p->v[i].v.type, type) == 0 && p->v[i].id && strcmp(p->v[i].id, id) == 0)
			return true;
	for (size_t i = 0; i < p->ninc; i++)
		if (strcmp(p->inc[i].v.type, type) == 0 && p->inc[i].id && strcmp(p->inc[i].id, id) == 0)
			return true;
	return false;
}

/* Adds type/id to the included resources if it exists and is not there yet. */
static cv_rc include_ref(page_t *p, const char *type, const char *id)
{
	if (already(p, type, id) || !cv_model_is_resource(p->f->model, type))
		return CV_OK;
	if (p->ninc >= SEARCH_INCLUDE_MAX)
		return CV_OK;
	match_t *m = &p->inc[p->ninc];
	memset(m, 0, sizeof *m);
	cv_rc rc = cv_store_read(p->f->store, type, id, 0, p->ex->pool, &m->v);
	if (rc == CV_E_NOTFOUND || rc == CV_E_GONE)
		return CV_OK;
	if (rc || m->v.deleted)
		return rc;
	if (cv_fhir_parse_stored(&m->v, p->ex->pool, &m->obj))
		return CV_E_NOMEM;
	if (p->plan->access) {
		cv_verdict verdict;
		rc = cv_access_check_stored(p->plan->access, CV_ACT_FHIR_SEARCH, type, m->v.seq, m->obj, &verdict, NULL);
		if (rc || verdict != CV_ACCESS_PERMIT)
			return rc;
	}
	m->id = obj_id(m->obj);
	p->ninc++;
	return CV_OK;
}

/* The local references ("r:Type/id" entries) one parameter of m holds. */
static cv_rc follow(page_t *p, const match_t *m, const cv_sp_t *sp, const char *target)
{
	cv_sp_entries_t es = { .pool = p->ex->pool };
	cv_rc rc = cv_sp_extract_one(sp, p->f->model, m->obj, CV_SP_MATCH, &es);
	for (size_t i = 0; !rc && i < es.n; i++) {
		const cv_ix_entry_t *e = &es.v[i];
		if (e->kind != CV_IX_HASH || e->key_len < 4 || strncmp(e->key, "r:", 2) != 0)
			continue;
		const char *slash = memchr(e->key + 2, '/', e->key_len - 2);
		if (!slash)
			continue;
		char *type = cv_pool_strndup(p->ex->pool, e->key + 2, (size_t)(slash - e->key - 2));
		char *id = cv_pool_strndup(p->ex->pool, slash + 1, e->key_len - (size_t)(slash + 1 - e->key));
		if (!type || !id)
			return CV_E_NOMEM;
		if (!target || strcmp(target, type) == 0)
			rc = include_ref(p, type, id);
	}
	return rc;
}

static cv_rc include_forward(page_t *p, const cv_search_include_t *inc, const match_t *m)
{
	if (strcmp(m->v.type, inc->source) != 0)
		return CV_OK;
	if (inc->sp)
		return follow(p, m, inc->sp, inc->target);
	cv_rc rc = CV_OK;
	size_t n = cv_sp_count(p->f->search, inc->source);
	for (size_t i = 0; !rc && i < n; i++) {
		const cv_sp_t *sp = cv_sp_at(p->f->search, inc->source, i);
		if (sp->type == CV_SP_REFERENCE)
			rc = follow(p, m, sp, inc->target);
	}
	return rc;
}

static cv_rc take_rev(void *arg, const match_t *m)
{
	page_t *p = arg;
	if (already(p, m->v.type, m->id ? m->id : "") || p->ninc >= SEARCH_INCLUDE_MAX)
		return CV_OK;
	p->inc[p->ninc++] = *m;
	return CV_OK;
}

/* _revinclude: resources of the source type whose parameter refers to any of
 * the given matches. */
static cv_rc include_reverse(page_t *p, const cv_search_include_t *inc, const match_t *ms, size_t n,
			     cv_outcome_t *oo)
{
	cv_store_term_t *t = cv_pool_alloc(p->ex->pool, (n ? n : 1) * sizeof *t);
	size_t k = 0;
	if (!t)
		return CV_E_NOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!ms[i].id || (inc->target && strcmp(inc->target, ms[i].v.type) != 0))
			continue;
		const char *key = cv_pool_printf(p->ex->pool, "r:%s/%s", ms[i].v.type, ms[i].id);
		if (!key)
			return CV_E_NOMEM;
		t[k++] = (cv_store_term_t){ .kind = CV_TERM_HASH, .param = inc->sp->code, .key = key,
					    .key_len = strlen(key) };
	}
	if (!k)
		return CV_OK;
	cv_search_plan_t *plan = cv_pool_alloc(p->ex->pool, sizeof *plan);
	if (!plan)
		return CV_E_NOMEM;
	plan->type = inc->source;
	plan->access = p->plan->access;
	plan->n = 1;
	plan->clauses[0] = (cv_search_clause_t){ .name = "_revinclude", .use_sql = true,
						 .sql = { .n = k, .terms = t } };
	run_t r = { .f = p->f, .plan = plan, .want = SEARCH_INCLUDE_MAX - p->ninc, .scan_max = SEARCH_INCLUDE_MAX,
		    .fn = take_rev, .arg = p, .keep = p->ex->pool };
	return r.want ? run_plan(&r, NULL, oo) : CV_OK;
}

static cv_rc includes(page_t *p, cv_outcome_t *oo)
{
	cv_rc rc = CV_OK;
	size_t from = 0;
	for (int round = 0; !rc && round <= SEARCH_ITERATE_MAX; round++) {
		size_t start = p->ninc;
		for (size_t k = 0; !rc && k < p->plan->ninc; k++) {
			const cv_search_include_t *inc = &p->plan->inc[k];
			if (round > 0 && !inc->iterate)
				continue;
			/* round 0 works on the matches, later rounds on what the previous one added */
			const match_t *src = round == 0 ? p->v : &p->inc[from];
			size_t n = round == 0 ? p->n : start - from;
			if (inc->rev)
				rc = include_reverse(p, inc, src, n, oo);
			for (size_t i = 0; !rc && !inc->rev && i < n; i++)
				rc = include_forward(p, inc, &src[i]);
		}
		from = start;
		if (p->ninc == start && round > 0)
			break;
	}
	return rc;
}

/* The top-level element name of a JSON key: "deceasedBoolean" is "deceased"
 * when the type has a choice element of that name ("_birthDate" is "birthDate"). */
static bool summary_key(const cv_sp_registry_t *reg, const char *type, const char *key)
{
	char name[128];
	if (key[0] == '_')
		key++;
	if (cv_sp_in_summary(reg, type, key))
		return true;
	size_t n = strlen(key);
	for (size_t i = n; i > 1 && i < sizeof name; i--) {
		if (key[i - 1] < 'A' || key[i - 1] > 'Z')
			continue;
		memcpy(name, key, i - 1);
		name[i - 1] = '\0';
		if (cv_sp_in_summary(reg, type, name))
			return true;
	}
	return false;
}

/* _elements and _summary: a reduced copy of the resource, marked SUBSETTED. */
static cv_rc subset(const cv_sp_registry_t *reg, const cv_search_plan_t *plan, const char *type, json_object *obj,
		    cv_buf_t *out)
{
	json_object *copy = json_object_new_object();
	if (!copy)
		return CV_E_NOMEM;
	json_object_object_foreach(obj, key, val)
	{
		bool keep = strcmp(key, "resourceType") == 0 || strcmp(key, "id") == 0 || strcmp(key, "meta") == 0;
		if (plan->summary == CV_SUMMARY_TEXT)
			keep = keep || strcmp(key, "text") == 0;
		else if (plan->summary == CV_SUMMARY_TRUE)
			keep = keep || summary_key(reg, type, key);
		else if (plan->summary == CV_SUMMARY_DATA)
			keep = strcmp(key, "text") != 0;
		for (size_t i = 0; !keep && i < plan->nelements; i++) {
			size_t l = strlen(plan->elements[i]);
			keep = strncmp(key, plan->elements[i], l) == 0 &&
			       (key[l] == '\0' || (key[l] >= 'A' && key[l] <= 'Z')); /* value[x] */
		}
		if (keep)
			json_object_object_add(copy, key, json_object_get(val));
	}
	json_object *meta = NULL;
	if (json_object_object_get_ex(copy, "meta", &meta)) {
		meta = json_object_get(meta);
		json_object *fresh = NULL;
		json_object_deep_copy(meta, &fresh, NULL);
		json_object_put(meta);
		meta = fresh;
	} else {
		meta = json_object_new_object();
	}
	cv_rc rc = cv_json_tag_subsetted(meta);
	json_object_object_add(copy, "meta", meta);
	if (!rc)
		rc = cv_json_write(copy, out);
	json_object_put(copy);
	return rc;
}

static cv_rc write_entry(cv_buf_t *b, page_t *p, const match_t *m, const char *mode, bool first)
{
	cv_rc rc = cv_buf_printf(b, "%s{\"fullUrl\":\"%s/%s/%s\",\"resource\":", first ? "" : ",", p->ex->base_url,
				 m->v.type, m->id ? m->id : "");
	bool reduce = p->plan->nelements || p->plan->summary == CV_SUMMARY_TEXT ||
		      p->plan->summary == CV_SUMMARY_DATA || p->plan->summary == CV_SUMMARY_TRUE;
	cv_fhir_audit_shown(p->ex, &m->v, m->id, m->obj);
	bool viewed = cv_access_view(p->plan->access, m->v.type, m->obj);
	if (!rc)
		rc = reduce ? subset(p->f->search, p->plan, m->v.type, m->obj, b)
		     : viewed ? cv_json_write(m->obj, b) : cv_buf_append(b, m->v.body, m->v.body_len);
	if (!rc)
		rc = cv_buf_printf(b, ",\"search\":{\"mode\":\"%s\"}}", mode);
	return rc;
}

static cv_rc link(cv_buf_t *b, page_t *p, const char *rel, const char *cursor, bool first)
{
	const cv_search_plan_t *plan = p->plan;
	cv_rc rc = cv_buf_printf(b, "%s{\"relation\":\"%s\",\"url\":\"", first ? "" : ",", rel);
	if (!rc)
		rc = cv_buf_printf(b, "%s/%s?", p->ex->base_url, plan->path ? plan->path : plan->type);
	if (!rc)
		rc = cv_buf_json_escape(b, plan->canonical.data ? plan->canonical.data : "");
	if (!rc && cursor)
		rc = cv_buf_printf(b, "%s_cursor=%s", plan->canonical.len ? "&" : "", cursor);
	return rc ? rc : cv_buf_puts(b, "\"}");
}

static cv_rc write_bundle(page_t *p, bool have_total, uint64_t total, const char *next, const cv_outcome_t *warn)
{
	cv_buf_t *b = &p->ex->resp;
	char uuid[37], now[40];
	cv_crypto_uuid(uuid);
	cv_time_format_instant(cv_time_now_us(), now, sizeof now);
	cv_buf_reset(b);
	cv_rc rc = cv_buf_printf(b, "{\"resourceType\":\"Bundle\",\"id\":\"%s\",\"meta\":{\"lastUpdated\":\"%s\"},"
				    "\"type\":\"searchset\"", uuid, now);
	if (!rc && have_total)
		rc = cv_buf_printf(b, ",\"total\":%llu", (unsigned long long)total);
	if (!rc)
		rc = cv_buf_puts(b, ",\"link\":[");
	if (!rc)
		rc = link(b, p, "self", p->plan->cursor, true);
	if (!rc && next)
		rc = link(b, p, "next", next, false);
	if (!rc)
		rc = cv_buf_puts(b, "]");
	bool first = true;
	if (!rc && (p->n || p->ninc || (warn && warn->count)))
		rc = cv_buf_puts(b, ",\"entry\":[");
	for (size_t i = 0; !rc && i < p->n; i++, first = false)
		rc = write_entry(b, p, &p->v[i], "match", first);
	for (size_t i = 0; !rc && i < p->ninc; i++, first = false)
		rc = write_entry(b, p, &p->inc[i], "include", first);
	if (!rc && warn && warn->count) {
		rc = cv_buf_printf(b, "%s{\"resource\":", first ? "" : ",");
		if (!rc)
			rc = cv_outcome_to_json(warn, b);
		if (!rc)
			rc = cv_buf_puts(b, ",\"search\":{\"mode\":\"outcome\"}}");
		first = false;
	}
	if (!rc && !first)
		rc = cv_buf_puts(b, "]");
	return rc ? rc : cv_buf_puts(b, "}");
}

/* ---- cursors ------------------------------------------------------------ */

typedef struct cursor_tok {
	uint8_t query[16];        /* SHA-256 (cut) of type and canonical query */
	cv_store_cursor_t at;
	int64_t as_of_seq;        /* the snapshot of a _lastUpdated sort */
} cursor_tok_t;

static void query_hash(const cv_search_plan_t *plan, uint8_t out[16])
{
	cv_sha256_t h;
	uint8_t full[32];
	cv_sha256_init(&h);
	cv_sha256_update(&h, plan->type, strlen(plan->type) + 1);
	cv_sha256_update(&h, plan->canonical.data ? plan->canonical.data : "", plan->canonical.len);
	cv_sha256_final(&h, full);
	memcpy(out, full, 16);
}

static const char *cursor_make(cv_fhir_t *f, cv_pool_t *pool, const cv_search_plan_t *plan, const cv_store_cursor_t *at)
{
	cursor_tok_t t;
	memset(&t, 0, sizeof t);
	query_hash(plan, t.query);
	t.at = *at;
	t.as_of_seq = plan->as_of_seq;
	cv_buf_t out;
	cv_buf_init(&out, 4096);
	const char *s = NULL;
	if (cv_store_token_seal(f->store, CURSOR_PURPOSE, &t, sizeof t, &out) == CV_OK)
		s = cv_pool_strndup(pool, out.data, out.len);
	cv_buf_release(&out);
	return s;
}

static cv_rc cursor_open(cv_fhir_t *f, cv_search_plan_t *plan, cv_store_cursor_t *at)
{
	cursor_tok_t t;
	uint8_t want[16];
	cv_buf_t out;
	cv_buf_init(&out, 4096);
	cv_rc rc = cv_store_token_open(f->store, CURSOR_PURPOSE, plan->cursor, &out);
	if (!rc && out.len != sizeof t)
		rc = CV_E_INVALID;
	if (!rc) {
		memcpy(&t, out.data, sizeof t);
		query_hash(plan, want);
		if (memcmp(want, t.query, sizeof want) != 0 || !t.at.set)
			rc = CV_E_INVALID;
		*at = t.at;
		plan->as_of_seq = t.as_of_seq;
	}
	cv_buf_release(&out);
	return rc;
}

/* ---- sorting in memory ------------------------------------------------------ */

#define MSORT_PURPOSE "carevault search cursor v1 (sorted in memory)"

typedef struct skey {
	int kind;            /* 0: no value (sorts last), 1: text, 2: number */
	const char *s;
	size_t len;
	double d;
} skey_t;

typedef struct sorted {
	match_t m;
	skey_t k[CV_STORE_SORT_MAX];
} sorted_t;

typedef struct msort {
	cv_fhir_t *f;
	const cv_search_plan_t *plan;
	cv_pool_t *pool;
	sorted_t *v;
	size_t n, cap;
} msort_t;

/* The prefix of the entries a parameter type sorts by. */
static const char *sort_tag(cv_sp_type t)
{
	return t == CV_SP_STRING ? "f:" : t == CV_SP_TOKEN ? "c:" : t == CV_SP_REFERENCE ? "r:" : "u:";
}

static int text_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);
	return c ? c : al < bl ? -1 : al > bl;
}

/* The value m sorts by for key ms: the lowest (ascending) or highest (descending). */
static void sort_value(msort_t *st, const cv_search_msort_t *ms, const match_t *m, skey_t *k)
{
	memset(k, 0, sizeof *k);
	if (!ms->sp) {
		*k = (skey_t){ .kind = 2, .d = (double)m->v.updated_us };
		return;
	}
	cv_sp_entries_t es = { .pool = st->pool };
	if (cv_sp_extract_one(ms->sp, st->f->model, m->obj, CV_SP_MATCH, &es))
		return;
	const char *tag = sort_tag(ms->sp->type);
	size_t tl = strlen(tag);
	for (size_t i = 0; i < es.n; i++) {
		const cv_ix_entry_t *e = &es.v[i];
		skey_t c = { 0 };
		if (e->kind == CV_IX_DATE)
			c = (skey_t){ .kind = 2, .d = (double)(ms->desc ? e->hi : e->lo) };
		else if (e->kind == CV_IX_HASH && e->key_len >= tl && memcmp(e->key, tag, tl) == 0)
			c = (skey_t){ .kind = 1, .s = e->key + tl, .len = e->key_len - tl };
		if (!c.kind || (k->kind && k->kind != c.kind))
			continue;
		int better = !k->kind || (c.kind == 2 ? (ms->desc ? c.d > k->d : c.d < k->d)
						      : (ms->desc ? text_cmp(c.s, c.len, k->s, k->len) > 0
								  : text_cmp(c.s, c.len, k->s, k->len) < 0));
		if (better)
			*k = c;
	}
}

static int key_cmp(const skey_t *a, const skey_t *b, bool desc)
{
	if (!a->kind || !b->kind)
		return a->kind ? -1 : b->kind ? 1 : 0; /* no value: last either way */
	int c = a->kind != b->kind ? a->kind - b->kind
	      : a->kind == 2 ? (a->d < b->d ? -1 : a->d > b->d) : text_cmp(a->s, a->len, b->s, b->len);
	return desc ? -c : c;
}

static int sorted_cmp_plan(const cv_search_plan_t *plan, const sorted_t *a, const sorted_t *b)
{
	for (size_t i = 0; i < plan->nmsort; i++) {
		int c = key_cmp(&a->k[i], &b->k[i], plan->msort[i].desc);
		if (c)
			return c;
	}
	return a->m.at.rk < b->m.at.rk ? -1 : a->m.at.rk > b->m.at.rk;
}

static int sorted_cmp(const void *a, const void *b, void *plan)
{
	return sorted_cmp_plan(plan, a, b);
}

static cv_rc take_sorted(void *arg, const match_t *m)
{
	msort_t *st = arg;
	if (st->n == st->cap)
		return CV_E_LIMIT;
	sorted_t *x = &st->v[st->n++];
	x->m = *m;
	for (size_t i = 0; i < st->plan->nmsort; i++)
		sort_value(st, &st->plan->msort[i], m, &x->k[i]);
	return CV_OK;
}

/* Cursor of a position in the sorted order: query hash, row key, the keys. */
static const char *msort_cursor(cv_fhir_t *f, cv_pool_t *pool, const cv_search_plan_t *plan, const sorted_t *x)
{
	cv_buf_t b, out;
	cv_buf_init(&b, 8192);
	cv_buf_init(&out, 16384);
	uint8_t q[16];
	query_hash(plan, q);
	cv_rc rc = cv_buf_append(&b, q, sizeof q);
	if (!rc)
		rc = cv_buf_append(&b, &x->m.at.rk, sizeof x->m.at.rk);
	for (size_t i = 0; !rc && i < plan->nmsort; i++) {
		const skey_t *k = &x->k[i];
		uint8_t kind = (uint8_t)k->kind;
		uint16_t len = (uint16_t)(k->len > 1024 ? 1024 : k->len);
		rc = cv_buf_append(&b, &kind, 1);
		if (!rc && k->kind == 2)
			rc = cv_buf_append(&b, &k->d, sizeof k->d);
		if (!rc && k->kind == 1 && !(rc = cv_buf_append(&b, &len, sizeof len)))
			rc = cv_buf_append(&b, k->s, len);
	}
	const char *tok = NULL;
	if (!rc && !cv_store_token_seal(f->store, MSORT_PURPOSE, b.data, b.len, &out))
		tok = cv_pool_strndup(pool, out.data, out.len);
	cv_buf_release(&b);
	cv_buf_release(&out);
	return tok;
}

static cv_rc msort_cursor_open(cv_fhir_t *f, cv_pool_t *pool, const cv_search_plan_t *plan, sorted_t *x)
{
	cv_buf_t b;
	cv_buf_init(&b, 16384);
	uint8_t q[16];
	query_hash(plan, q);
	cv_rc rc = cv_store_token_open(f->store, MSORT_PURPOSE, plan->cursor, &b);
	size_t at = sizeof q + sizeof x->m.at.rk;
	if (!rc && (b.len < at || memcmp(b.data, q, sizeof q) != 0))
		rc = CV_E_INVALID;
	memset(x, 0, sizeof *x);
	if (!rc)
		memcpy(&x->m.at.rk, b.data + sizeof q, sizeof x->m.at.rk);
	for (size_t i = 0; !rc && i < plan->nmsort; i++) {
		skey_t *k = &x->k[i];
		uint16_t len;
		if (at >= b.len) {
			rc = CV_E_INVALID;
			break;
		}
		k->kind = (uint8_t)b.data[at++];
		if (k->kind == 2 && at + sizeof k->d <= b.len) {
			memcpy(&k->d, b.data + at, sizeof k->d);
			at += sizeof k->d;
		} else if (k->kind == 1 && at + sizeof len <= b.len) {
			memcpy(&len, b.data + at, sizeof len);
			at += sizeof len;
			if (at + len > b.len || !(k->s = cv_pool_strndup(pool, b.data + at, len)))
				rc = CV_E_INVALID;
			k->len = len;
			at += len;
		} else if (k->kind != 0) {
			rc = CV_E_INVALID;
		}
	}
	cv_buf_release(&b);
	return rc;
}

/* A page of a search sorted in memory: every match is opened and sorted (at
 * most CV_SEARCH_MSORT_MAX of them), and the page starts after the cursor's
 * position in that order, so pages stay consistent while others write. */
static cv_rc msort_page(page_t *p, bool *more, const char **next, uint64_t *total, cv_outcome_t *oo)
{
	cv_search_plan_t *plan = p->plan;
	msort_t st = { .f = p->f, .plan = plan, .pool = p->ex->pool, .cap = CV_SEARCH_MSORT_MAX + 1 };
	st.v = cv_pool_alloc(p->ex->pool, st.cap * sizeof *st.v);
	if (!st.v)
		return CV_E_NOMEM;
	run_t r = { .f = p->f, .plan = plan, .want = st.cap, .scan_max = SEARCH_COUNT_MAX, .fn = take_sorted,
		    .arg = &st, .keep = p->ex->pool };
	cv_rc rc = run_plan(&r, NULL, oo);
	if (!rc && (st.n > CV_SEARCH_MSORT_MAX || r.more)) {
		cv_outcome_add(oo, CV_SEV_ERROR, "too-costly", NULL, "_sort by string, token or reference values sorts "
			       "at most %d matches in memory (their index values are blinded): narrow the search or "
			       "sort by a date", CV_SEARCH_MSORT_MAX);
		return CV_E_INVALID;
	}
	if (rc)
		return rc;
	qsort_r(st.v, st.n, sizeof *st.v, sorted_cmp, plan);
	size_t from = 0;
	if (plan->cursor) {
		sorted_t after;
		if (msort_cursor_open(p->f, p->ex->pool, plan, &after)) {
			cv_outcome_add(oo, CV_SEV_ERROR, "invalid", NULL, "_cursor is not a cursor this server issued "
				       "for this search");
			return CV_E_INVALID;
		}
		while (from < st.n && sorted_cmp_plan(plan, &st.v[from], &after) <= 0)
			from++;
	}
	for (size_t i = from; i < st.n && p->n < p->cap; i++)
		p->v[p->n++] = st.v[i].m;
	*total = st.n;
	*more = from + p->n < st.n;
	*next = *more && p->n ? msort_cursor(p->f, p->ex->pool, plan, &st.v[from + p->n - 1]) : NULL;
	return *more && p->n && !*next ? CV_E_NOMEM : CV_OK;
}

/* ---- the interaction ---------------------------------------------------- */

static bool lenient(cv_exchange_t *ex)
{
	const char *prefer = ex->header(ex, "Prefer");
	return prefer && strstr(prefer, "handling=lenient") != NULL;
}

/* The parameters of the request: the query string, and a POSTed form. */
static int gather_params(cv_exchange_t *ex, cv_param_t **out, size_t *n)
{
	cv_param_t *all = cv_pool_alloc(ex->pool, SEARCH_PARAMS_MAX * sizeof *all);
	if (!all) {
		cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
		return 0;
	}
	size_t k = 0;
	for (size_t i = 0; i < ex->nparams; i++)
		all[k++] = ex->params[i];
	if (strcmp(ex->method, "POST") == 0) {
		const char *ct = ex->header(ex, "Content-Type");
		size_t got = 0;
		if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0) {
			cv_fhir_error(ex, 415, "not-supported",
				      "POST _search takes application/x-www-form-urlencoded parameters");
			return 0;
		}
		cv_rc rc = cv_search_form_decode(ex->body ? ex->body : "", ex->body_len, ex->pool, all + k,
						 SEARCH_PARAMS_MAX - k, &got);
		if (rc) {
			cv_fhir_error(ex, 400, "invalid", rc == CV_E_LIMIT ? "too many search parameters"
						       : "the form is not valid (bad escape, NUL or invalid UTF-8)");
			return 0;
		}
		k += got;
	}
	*out = all;
	*n = k;
	return 1;
}

static cv_rc count_all(cv_fhir_t *f, cv_exchange_t *ex, cv_search_plan_t *plan, uint64_t *total, bool *exact,
		       cv_outcome_t *oo)
{
	*exact = true;
	bool chains = false;
	for (size_t i = 0; i < plan->n; i++)
		chains = chains || plan->clauses[i].chain;
	if (!needs_check(plan) && !chains) {
		cv_store_query_t q;
		cv_rc rc = store_query(plan, ex->pool, &q);
		return rc ? rc : cv_store_count(f->store, &q, total);
	}
	run_t r = { .f = f, .plan = plan, .want = SEARCH_COUNT_MAX, .scan_max = SEARCH_COUNT_MAX, .keep = ex->pool };
	cv_pool_t scratch;
	cv_pool_init(&scratch, 0);
	r.keep = &scratch;
	cv_rc rc = run_plan(&r, NULL, oo);
	cv_pool_release(&scratch);
	*total = r.got;
	*exact = !r.more;
	return rc;
}

/* Billing staff search Patient only by the fields they see (chains included). */
static bool params_allowed(const cv_access_t *acc, const cv_search_plan_t *plan)
{
	if (!acc)
		return true;
	for (size_t i = 0; i < plan->n; i++) {
		const cv_search_clause_t *c = &plan->clauses[i];
		if (!cv_access_param_ok(acc, plan->type, c->name))
			return false;
		for (const cv_search_chain_t *ch = c->chain; ch; ch = ch->next)
			if (!params_allowed(acc, ch->inner))
				return false;
	}
	for (size_t i = 0; i < plan->nmsort; i++)
		if (plan->msort[i].sp && !cv_access_param_ok(acc, plan->type, plan->msort[i].sp->code))
			return false;
	for (size_t i = 0; i < plan->nsort; i++)
		if (plan->sort[i].param && !cv_access_param_ok(acc, plan->type, plan->sort[i].param))
			return false;
	return true;
}

static void search(cv_exchange_t *ex)
{
	cv_fhir_t *f = ex->app;
	cv_param_t *params;
	size_t n;
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex) || !gather_params(ex, &params, &n))
		return;
	cv_outcome_t oo;
	cv_outcome_init(&oo, ex->pool, 32);
	cv_search_plan_t *plan = cv_pool_alloc(ex->pool, sizeof *plan);
	cv_search_limits_t lim = { .default_count = f->cfg->search_default_count,
				   .max_count = f->cfg->search_max_count };
	if (!plan)
		return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
	cv_rc rc = cv_search_parse(f->search, f->model, ex->args[0], params, n, ex->base_url, lenient(ex), &lim,
				   ex->pool, plan, &oo);
	if (rc == CV_E_INVALID || rc == CV_E_UNSUPPORTED)
		return cv_fhir_outcome(ex, 400, &oo);
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, NULL);
	if (!cv_fhir_access(ex, &plan->access))
		return;
	if (!params_allowed(plan->access, plan))
		return cv_fhir_error(ex, 403, "forbidden", "this search parameter is not open to your role");
	cv_store_cursor_t after = { .set = false };
	if (plan->cursor && !plan->nmsort && cursor_open(f, plan, &after))
		return cv_fhir_error(ex, 400, "invalid", "_cursor is not a cursor this server issued for this search");
	for (size_t i = 0; !plan->cursor && i < plan->nsort; i++)
		if (plan->sort[i].kind == CV_SORT_UPDATED && (rc = cv_store_last_seq(f->store, &plan->as_of_seq)))
			return cv_fhir_fail(ex, rc, NULL, "the search could not be run; retry later");
	page_t *p = cv_pool_alloc(ex->pool, sizeof *p);
	if (!p)
		return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
	p->ex = ex;
	p->f = f;
	p->plan = plan;
	p->cap = plan->summary == CV_SUMMARY_COUNT ? 0 : plan->count;
	p->v = cv_pool_alloc(ex->pool, (p->cap ? p->cap : 1) * sizeof *p->v);
	run_t r = { .f = f, .plan = plan, .want = p->cap, .scan_max = SEARCH_SCAN_MAX, .fn = keep_match, .arg = p,
		    .keep = ex->pool };
	rc = p->v ? CV_OK : CV_E_NOMEM;
	uint64_t total = 0;
	bool have_total = false, exact = true, sorted = false;
	const char *next = NULL;
	if (!rc && p->cap && plan->nmsort) {
		rc = msort_page(p, &r.more, &next, &total, &oo);
		sorted = have_total = !rc && plan->total != CV_TOTAL_NONE;
	} else if (!rc && p->cap) {
		rc = run_plan(&r, plan->cursor ? &after : NULL, &oo);
	}
	if (sorted) {
		/* the in-memory sort counted every match already */
	} else if (!rc && (plan->summary == CV_SUMMARY_COUNT || plan->total == CV_TOTAL_ACCURATE ||
			   plan->total == CV_TOTAL_ESTIMATE)) {
		rc = count_all(f, ex, plan, &total, &exact, &oo);
		have_total = exact;
	} else if (!rc && plan->total != CV_TOTAL_NONE && !plan->cursor && !r.more) {
		total = p->n;
		have_total = true;
	}
	if (!rc && plan->ninc)
		rc = includes(p, &oo);
	if (rc == CV_E_INVALID)
		return cv_fhir_outcome(ex, 400, &oo);
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, "the search could not be run; retry later");
	if (!plan->nmsort && r.more && p->cap && !(next = cursor_make(f, ex->pool, plan, &r.last)))
		return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
	if ((rc = write_bundle(p, have_total, total, next, &oo)))
		return cv_fhir_fail(ex, rc, NULL, NULL);
	ex->status = 200;
	ex->content_type = FHIR_JSON;
	ex->no_store = 1;
}

void cv_fhir_search_type(cv_exchange_t *ex)
{
	if (cv_fhir_is_audit(ex) && cv_fhir_negotiate(ex))
		return cv_fhir_audit_search(ex);
	if (!cv_fhir_is_audit(ex))
		search(ex);
}

/* ---- Patient/$everything ------------------------------------------------- */

#define EVERYTHING_TYPES_MAX 160

typedef struct everything {
	cv_exchange_t *ex;
	cv_fhir_t *f;
	const char *id;                        /* the patient */
	int64_t since;                         /* _since, or 0 */
	size_t ntypes;
	const char *types[EVERYTHING_TYPES_MAX]; /* Patient, then the compartment's types, sorted */
	const char *wanted;                    /* _type, or NULL for all */
	cv_access_t *access;                   /* what the caller may see */
} everything_t;

typedef struct ev_cursor {
	uint8_t query[16];
	uint32_t type_index;
	cv_store_cursor_t at;
} ev_cursor_t;

/* Is type listed in the comma-separated _type value? */
static bool type_wanted(const char *list, const char *type)
{
	size_t tl = strlen(type);
	for (const char *p = list; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t l = comma ? (size_t)(comma - p) : strlen(p);
		if (l == tl && strncmp(p, type, l) == 0)
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

static void everything_types(everything_t *e)
{
	const cv_model_t *m = e->f->model;
	if (!e->wanted || type_wanted(e->wanted, "Patient"))
		e->types[e->ntypes++] = "Patient";
	for (size_t i = 0; i < cv_model_resource_count(m) && e->ntypes < EVERYTHING_TYPES_MAX; i++) {
		const char *t = cv_model_resource_name(m, i), *const *codes;
		if (strcmp(t, "Patient") != 0 && cv_sp_compartment(e->f->search, t, &codes) &&
		    (!e->wanted || type_wanted(e->wanted, t)))
			e->types[e->ntypes++] = t;
	}
}

/* The plan for one type: resources of the patient's compartment (or the patient itself). */
static cv_rc type_plan(everything_t *e, const char *type, cv_search_plan_t *plan)
{
	cv_pool_t *pool = e->ex->pool;
	memset(plan, 0, sizeof *plan);
	plan->type = type;
	plan->access = e->access;
	cv_search_clause_t *c = &plan->clauses[plan->n++];
	c->use_sql = true;
	c->name = "$everything";
	if (strcmp(type, "Patient") == 0) {
		cv_store_term_t *t = cv_pool_alloc(pool, sizeof *t);
		if (!t)
			return CV_E_NOMEM;
		*t = (cv_store_term_t){ .kind = CV_TERM_ID, .key = e->id };
		c->sql = (cv_store_clause_t){ .n = 1, .terms = t };
	} else {
		const char *const *codes;
		size_t n = cv_sp_compartment(e->f->search, type, &codes);
		const char *key = cv_pool_printf(pool, "r:Patient/%s", e->id);
		cv_store_term_t *t = cv_pool_alloc(pool, (n ? n : 1) * sizeof *t);
		if (!t || !key)
			return CV_E_NOMEM;
		for (size_t i = 0; i < n; i++)
			t[i] = (cv_store_term_t){ .kind = CV_TERM_HASH, .param = codes[i], .key = key,
						  .key_len = strlen(key) };
		c->sql = (cv_store_clause_t){ .n = n, .terms = t };
	}
	if (e->since) {
		cv_search_clause_t *u = &plan->clauses[plan->n++];
		cv_store_term_t *t = cv_pool_alloc(pool, sizeof *t);
		if (!t)
			return CV_E_NOMEM;
		*t = (cv_store_term_t){ .kind = CV_TERM_UPDATED, .cmp = CV_CMP_GE, .lo = e->since, .hi = e->since };
		*u = (cv_search_clause_t){ .name = "_since", .use_sql = true, .sql = { .n = 1, .terms = t } };
	}
	return CV_OK;
}

/* Adds the resources that page entries refer to and that are not themselves
 * patient data (Practitioner, Organization, Medication, ...). */
static cv_rc everything_refs(everything_t *e, page_t *p, json_object *o, int depth)
{
	cv_rc rc = CV_OK;
	if (depth > 64)
		return CV_OK;
	if (json_object_is_type(o, json_type_array)) {
		for (size_t i = 0; !rc && i < json_object_array_length(o); i++)
			rc = everything_refs(e, p, json_object_array_get_idx(o, i), depth + 1);
		return rc;
	}
	if (!json_object_is_type(o, json_type_object))
		return CV_OK;
	json_object_object_foreach(o, key, val)
	{
		if (rc)
			break;
		if (strcmp(key, "reference") != 0 || !json_object_is_type(val, json_type_string)) {
			rc = everything_refs(e, p, val, depth + 1);
			continue;
		}
		const char *ref = json_object_get_string(val), *slash = strchr(ref, '/'), *const *codes;
		if (!slash || strchr(slash + 1, '/') || strchr(ref, ':'))
			continue;
		char *type = cv_pool_strndup(e->ex->pool, ref, (size_t)(slash - ref));
		if (!type)
			return CV_E_NOMEM;
		if (strcmp(type, "Patient") != 0 && !cv_sp_compartment(e->f->search, type, &codes) &&
		    cv_fhir_valid_id(slash + 1))
			rc = include_ref(p, type, slash + 1);
	}
	return rc;
}

static cv_rc everything_page(everything_t *e, page_t *p, const ev_cursor_t *from, ev_cursor_t *next, bool *more,
			     cv_outcome_t *oo)
{
	cv_rc rc = CV_OK;
	*more = false;
	for (uint32_t ti = from ? from->type_index : 0; !rc && ti < e->ntypes && p->n < p->cap; ti++) {
		cv_search_plan_t *plan = cv_pool_alloc(e->ex->pool, sizeof *plan);
		if (!plan)
			return CV_E_NOMEM;
		rc = type_plan(e, e->types[ti], plan);
		run_t r = { .f = e->f, .plan = plan, .want = p->cap - p->n, .scan_max = SEARCH_SCAN_MAX,
			    .fn = keep_match, .arg = p, .keep = e->ex->pool };
		bool resume = from && ti == from->type_index;
		if (!rc)
			rc = run_plan(&r, resume ? &from->at : NULL, oo);
		if (!rc && r.more) {
			next->type_index = ti;
			next->at = r.last;
			*more = true;
			break;
		}
		if (!rc && p->n == p->cap && ti + 1 < e->ntypes) {
			/* the page is full at the end of a type: go on with the next one */
			next->type_index = ti + 1;
			memset(&next->at, 0, sizeof next->at);
			*more = true;
			break;
		}
	}
	for (size_t i = 0; !rc && i < p->n; i++)
		rc = everything_refs(e, p, p->v[i].obj, 0);
	return rc;
}

static cv_rc ev_bad(cv_outcome_t *oo, const char *what)
{
	cv_outcome_add(oo, CV_SEV_ERROR, "invalid", NULL, "%s", what);
	return CV_E_INVALID;
}

static cv_rc everything_params(everything_t *e, cv_search_plan_t *plan, cv_outcome_t *oo)
{
	cv_exchange_t *ex = e->ex;
	cv_rc rc = CV_OK;
	plan->count = e->f->cfg->search_default_count;
	for (size_t i = 0; !rc && i < ex->nparams; i++) {
		const char *n = ex->params[i].name, *v = ex->params[i].value ? ex->params[i].value : "";
		if (strcmp(n, "_count") == 0) {
			char *end;
			long long c = strtoll(v, &end, 10);
			if (!v[0] || *end || c < 1)
				rc = ev_bad(oo, "_count must be a positive whole number");
			else
				plan->count = c > e->f->cfg->search_max_count ? e->f->cfg->search_max_count : (unsigned)c;
		} else if (strcmp(n, "_since") == 0) {
			if (cv_time_parse(v, &e->since))
				rc = ev_bad(oo, "_since must be an instant such as 2024-01-31T12:00:00Z");
		} else if (strcmp(n, "_type") == 0) {
			e->wanted = v;
		} else if (strcmp(n, "_cursor") == 0) {
			plan->cursor = v;
			continue;
		} else if (strcmp(n, "_format") != 0 && !lenient(ex)) {
			rc = ev_bad(oo, "$everything takes _count, _since and _type");
		}
		if (!rc && strcmp(n, "_format") != 0) {
			rc = cv_buf_printf(&plan->canonical, "%s%s=", plan->canonical.len ? "&" : "", n);
			for (const char *c = v; !rc && *c; c++)
				rc = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
				     *c == '-' || *c == '.' || *c == ','
					     ? cv_buf_append(&plan->canonical, c, 1)
					     : cv_buf_printf(&plan->canonical, "%%%02X", (unsigned char)*c);
		}
	}
	return rc;
}

void cv_fhir_everything(cv_exchange_t *ex)
{
	cv_fhir_t *f = ex->app;
	if (!cv_fhir_negotiate(ex) || !cv_fhir_type_ok(ex) || !cv_fhir_id_ok(ex))
		return;
	if (strcmp(ex->args[0], "Patient") != 0)
		return cv_fhir_error(ex, 404, "not-supported", "$everything is an operation on Patient");
	cv_store_version_t pv;
	cv_access_t *acc;
	cv_verdict verdict = CV_ACCESS_PERMIT;
	if (!cv_fhir_access(ex, &acc))
		return;
	if (cv_access_reduces(acc, "Patient"))
		return cv_fhir_error(ex, 403, "forbidden", "not permitted");
	cv_rc rc = cv_store_read(f->store, "Patient", ex->args[1], 0, ex->pool, &pv);
	if (rc == CV_E_GONE) /* its patient was erased: nothing to show, as if it never was */
		rc = CV_E_NOTFOUND;
	if (!rc && !pv.deleted)
		rc = cv_fhir_visible(ex, acc, CV_ACT_FHIR_READ, ex->args[1], &pv, NULL, &verdict);
	if (!rc && !pv.deleted && verdict != CV_ACCESS_PERMIT)
		cv_audit_denied(ex);
	cv_audit_patient(ex, ex->args[1]);
	if (rc == CV_E_NOTFOUND || (!rc && (pv.deleted || verdict != CV_ACCESS_PERMIT)))
		return cv_fhir_error(ex, 404, "not-found", "no patient has this id");
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, NULL);
	everything_t *e = cv_pool_alloc(ex->pool, sizeof *e);
	cv_search_plan_t *plan = cv_pool_alloc(ex->pool, sizeof *plan);
	page_t *p = cv_pool_alloc(ex->pool, sizeof *p);
	cv_outcome_t oo;
	cv_outcome_init(&oo, ex->pool, 8);
	if (!e || !plan || !p)
		return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
	e->ex = ex;
	e->f = f;
	e->id = ex->args[1];
	e->access = acc;
	plan->type = "Patient";
	plan->access = acc;
	plan->path = cv_pool_printf(ex->pool, "Patient/%s/$everything", e->id);
	cv_buf_init(&plan->canonical, 4096);
	if (!plan->path || cv_pool_defer(ex->pool, (void (*)(void *))cv_buf_release, &plan->canonical))
		return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
	if ((rc = everything_params(e, plan, &oo)))
		return rc == CV_E_INVALID ? cv_fhir_outcome(ex, 400, &oo) : cv_fhir_fail(ex, rc, NULL, NULL);
	everything_types(e);
	ev_cursor_t from = { .type_index = 0 }, next = { .type_index = 0 };
	uint8_t want[16];
	cv_buf_t tok;
	cv_buf_init(&tok, 4096);
	if (plan->cursor) {
		query_hash(plan, want);
		bool ok = cv_store_token_open(f->store, CURSOR_PURPOSE, plan->cursor, &tok) == CV_OK &&
			  tok.len == sizeof from;
		if (ok)
			memcpy(&from, tok.data, sizeof from);
		cv_buf_release(&tok);
		if (!ok || memcmp(from.query, want, sizeof want) != 0 || from.type_index >= e->ntypes)
			return cv_fhir_error(ex, 400, "invalid", "_cursor is not a cursor this server issued for this "
				     "operation");
	}
	p->ex = ex;
	p->f = f;
	p->plan = plan;
	p->cap = plan->count;
	p->v = cv_pool_alloc(ex->pool, p->cap * sizeof *p->v);
	bool more = false;
	rc = p->v ? everything_page(e, p, plan->cursor ? &from : NULL, &next, &more, &oo) : CV_E_NOMEM;
	if (rc)
		return cv_fhir_fail(ex, rc, NULL, "the operation could not be run; retry later");
	const char *next_tok = NULL;
	if (more) {
		query_hash(plan, next.query);
		cv_buf_init(&tok, 4096);
		if (cv_store_token_seal(f->store, CURSOR_PURPOSE, &next, sizeof next, &tok) == CV_OK)
			next_tok = cv_pool_strndup(ex->pool, tok.data, tok.len);
		cv_buf_release(&tok);
		if (!next_tok)
			return cv_fhir_fail(ex, CV_E_NOMEM, NULL, NULL);
	}
	if ((rc = write_bundle(p, !plan->cursor && !more, p->n, next_tok, NULL)))
		return cv_fhir_fail(ex, rc, NULL, NULL);
	ex->status = 200;
	ex->content_type = FHIR_JSON;
	ex->no_store = 1;
}

typedef struct idlist {
	const char **ids;
	size_t n, max;
} idlist_t;

static cv_rc take_ids(void *arg, const match_t *m)
{
	idlist_t *l = arg;
	if (l->n < l->max)
		l->ids[l->n] = m->id;
	l->n++;
	return CV_OK;
}

cv_rc cv_fhir_search_ids_params(cv_fhir_t *f, cv_access_t *acc, cv_pool_t *pool, const char *type,
				const cv_param_t *params, size_t np, const char *base_url, const char **ids, size_t max,
				size_t *n, cv_outcome_t *oo)
{
	cv_search_plan_t *plan = cv_pool_alloc(pool, sizeof *plan);
	if (!plan)
		return CV_E_NOMEM;
	cv_search_limits_t lim = { .default_count = (unsigned)max + 1, .max_count = (unsigned)max + 1 };
	cv_rc rc = cv_search_parse(f->search, f->model, type, params, np, base_url, false, &lim, pool, plan, oo);
	if (rc == CV_E_UNSUPPORTED)
		rc = CV_E_INVALID;
	if (!rc && plan->n == 0) {
		cv_outcome_add(oo, CV_SEV_ERROR, "invalid", NULL, "a conditional request needs search criteria");
		rc = CV_E_INVALID;
	}
	if (!rc && !params_allowed(acc, plan)) {
		cv_outcome_add(oo, CV_SEV_ERROR, "forbidden", NULL, "this search parameter is not open to your role");
		rc = CV_E_INVALID;
	}
	if (rc)
		return rc;
	plan->access = acc;
	idlist_t l = { .ids = ids, .max = max };
	run_t r = { .f = f, .plan = plan, .want = max + 1, .scan_max = SEARCH_SCAN_MAX, .fn = take_ids, .arg = &l,
		    .keep = pool };
	rc = run_plan(&r, NULL, oo);
	*n = l.n;
	return rc;
}

cv_rc cv_fhir_search_ids(cv_fhir_t *f, cv_access_t *acc, cv_pool_t *pool, const char *type, const char *query,
			 const char *base_url, const char **ids, size_t max, size_t *n, cv_outcome_t *oo)
{
	cv_param_t *params = cv_pool_alloc(pool, SEARCH_PARAMS_MAX * sizeof *params);
	size_t np = 0;
	if (!params)
		return CV_E_NOMEM;
	if (query[0] == '?')
		query++;
	if (cv_search_form_decode(query, strlen(query), pool, params, SEARCH_PARAMS_MAX, &np)) {
		cv_outcome_add(oo, CV_SEV_ERROR, "invalid", NULL, "the search in a conditional request is not a "
			       "valid query string");
		return CV_E_INVALID;
	}
	return cv_fhir_search_ids_params(f, acc, pool, type, params, np, base_url, ids, max, n, oo);
}
