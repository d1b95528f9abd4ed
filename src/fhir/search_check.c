/*
 * search_check.c - the in-memory side of a search: does an opened candidate
 * really match a clause the index could only narrow (see search.h)?
 *
 * The candidate's entries for the clause's parameter are extracted again, in
 * match mode (with whole folded strings and plain identifying dates), and
 * each alternative of the clause is tested against them with the same rules
 * the store's SQL applies.
 */
#define _GNU_SOURCE
#include "fhir/search.h"

#include <string.h>

/* The spec's range comparison of a stored [lo, hi] against a search [P, Q]. */
#define RANGE_OK(cmp, lo, hi, P, Q)                                                                              \
	((cmp) == CV_CMP_EQ   ? ((lo) >= (P) && (hi) <= (Q))                                                     \
	 : (cmp) == CV_CMP_NE ? !((lo) >= (P) && (hi) <= (Q))                                                    \
	 : (cmp) == CV_CMP_GT ? ((hi) > (Q))                                                                     \
	 : (cmp) == CV_CMP_LT ? ((lo) < (P))                                                                     \
	 : (cmp) == CV_CMP_GE ? ((hi) > (Q) || ((lo) >= (P) && (hi) <= (Q)))                                     \
	 : (cmp) == CV_CMP_LE ? ((lo) < (P) || ((lo) >= (P) && (hi) <= (Q)))                                     \
	 : (cmp) == CV_CMP_SA ? ((lo) > (Q))                                                                     \
	 : (cmp) == CV_CMP_EB ? ((hi) < (P))                                                                     \
			      : ((lo) <= (Q) && (hi) >= (P)))

static bool starts(const cv_ix_entry_t *e, const char *tag, const cv_mterm_t *t)
{
	size_t tl = strlen(tag);
	return e->key_len >= tl + t->key_len && memcmp(e->key, tag, tl) == 0 &&
	       memcmp(e->key + tl, t->key, t->key_len) == 0;
}

static bool contains(const cv_ix_entry_t *e, const cv_mterm_t *t)
{
	if (e->key_len < 2 || memcmp(e->key, "f:", 2) != 0)
		return false;
	return memmem(e->key + 2, e->key_len - 2, t->key, t->key_len) != NULL;
}

static bool entry_matches(const cv_ix_entry_t *e, const cv_mterm_t *t)
{
	switch (t->kind) {
	case CV_MT_HASH:
		return e->kind == CV_IX_HASH && e->key_len == t->key_len && memcmp(e->key, t->key, t->key_len) == 0;
	case CV_MT_FPREFIX:
		return e->kind == CV_IX_HASH && starts(e, "f:", t);
	case CV_MT_FCONTAINS:
		return e->kind == CV_IX_HASH && contains(e, t);
	case CV_MT_TFPREFIX:
		return e->kind == CV_IX_HASH && starts(e, "tf:", t);
	case CV_MT_DATE:
		return e->kind == CV_IX_DATE && RANGE_OK(t->cmp, e->lo, e->hi, t->lo, t->hi);
	case CV_MT_NUM:
		return e->kind == CV_IX_NUM && strcmp(e->key, t->unit ? t->unit : "") == 0 &&
		       RANGE_OK(t->cmp, e->nlo, e->nhi, t->nlo, t->nhi);
	}
	return false;
}

static bool any_entry(const cv_sp_entries_t *es, const cv_mterm_t *t)
{
	for (size_t i = 0; i < es->n; i++)
		if (entry_matches(&es->v[i], t))
			return true;
	return false;
}

/* Does component k of a composite value hold for the element `item`? */
static bool part_holds(const cv_sp_t *sp, size_t k, const cv_model_t *m, json_object *res, const cv_fp_item_t *item,
		       const cv_mterm_t *t, cv_pool_t *pool)
{
	char err[128];
	cv_fp_list_t sub;
	if (!sp->comp[k].compiled || item->kind != CV_FP_NODE)
		return false;
	cv_fp_env_t env = { .model = m, .resource = res, .context = item->node, .context_item = item };
	if (cv_fhirpath_eval(sp->comp[k].compiled, &env, pool, &sub, err, sizeof err))
		return false;
	cv_sp_entries_t es = { .pool = pool };
	for (size_t i = 0; i < sub.n; i++)
		if (cv_sp_entries_of(&sub.v[i], sp->code, sp->comp[k].type, false, CV_SP_MATCH, &es))
			return false;
	return any_entry(&es, t);
}

static bool composite_matches(const cv_search_clause_t *c, const cv_model_t *m, json_object *res, cv_pool_t *pool)
{
	char err[128];
	cv_fp_list_t items;
	cv_fp_env_t env = { .model = m, .resource = res };
	if (!c->sp->compiled || cv_fhirpath_eval(c->sp->compiled, &env, pool, &items, err, sizeof err))
		return false;
	for (size_t a = 0; a < c->nm; a++) {
		const cv_mcomposite_t *mc = &c->mc[a];
		for (size_t i = 0; i < items.n; i++) {
			bool all = true;
			for (size_t k = 0; all && k < mc->n; k++)
				all = part_holds(c->sp, k, m, res, &items.v[i], &mc->parts[k], pool);
			if (all)
				return true;
		}
	}
	return false;
}

bool cv_search_check(const cv_search_clause_t *c, const cv_model_t *m, json_object *res, cv_pool_t *pool)
{
	bool hit = false;
	if (!c->sp)
		return true; /* _id, _lastUpdated, chains: the index answers exactly */
	if (c->mc) {
		hit = composite_matches(c, m, res, pool);
	} else {
		cv_sp_entries_t es = { .pool = pool };
		if (cv_sp_extract_one(c->sp, m, res, CV_SP_MATCH, &es))
			return false;
		for (size_t a = 0; !hit && a < c->nm; a++)
			hit = any_entry(&es, &c->m[a]);
	}
	return c->negate ? !hit : hit;
}
