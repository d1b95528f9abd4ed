/*
 * test_searchparam.c - string folding, the R4 search-parameter registry
 * (every expression compiles, lookups, compartments, summaries) and the index
 * entries extracted from small hand-made resources, in index and match mode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/fold.h"
#include "model/searchparam.h"

#define SEC 1000000LL
#define DAY (86400LL * SEC)
#define T_1980_05_17 327369600000000LL   /* 1980-05-17T00:00:00Z */
#define T_2013_01_14 1358121600000000LL  /* 2013-01-14T00:00:00Z */
#define T_2013_01_14_08 1358150400000000LL /* 2013-01-14T08:00:00Z */
#define T_2013_01_16 1358294400000000LL  /* 2013-01-16T00:00:00Z */

typedef struct fx {
	cv_model_t *model;
	cv_sp_registry_t *reg;
	cv_pool_t pool;
	json_object *res; /* the resource of the current test, put in teardown */
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	char err[256];
	size_t failed = 99;
	if (!f || cv_model_new(&f->model) != CV_OK)
		return -1;
	if (cv_sp_registry_new(f->model, &f->reg, &failed, err, sizeof err) != CV_OK || failed != 0)
		return -1;
	cv_pool_init(&f->pool, 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	json_object_put(f->res);
	cv_pool_release(&f->pool);
	cv_sp_registry_free(f->reg);
	cv_model_free(f->model);
	free(f);
	return 0;
}

/* ---- helpers ------------------------------------------------------------ */

static char *fold(fx_t *f, const char *s)
{
	char *out = NULL;
	size_t len = 0;
	assert_int_equal(cv_fold(s, strlen(s), &f->pool, &out, &len), CV_OK);
	assert_int_equal(len, strlen(out));
	return out;
}

/* Entries of the resource in json (kept in f->res) for every parameter. */
static cv_sp_entries_t extract(fx_t *f, const char *json, cv_sp_mode mode)
{
	json_object_put(f->res);
	f->res = json_tokener_parse(json);
	assert_non_null(f->res);
	cv_sp_entries_t es = { .pool = &f->pool };
	assert_int_equal(cv_sp_extract(f->reg, f->model, f->res, mode, &es), CV_OK);
	return es;
}

static size_t count_hash(const cv_sp_entries_t *es, const char *param, const char *key)
{
	size_t n = 0, kl = strlen(key);
	for (size_t i = 0; i < es->n; i++)
		if (es->v[i].kind == CV_IX_HASH && strcmp(es->v[i].param, param) == 0 && es->v[i].key_len == kl &&
		    memcmp(es->v[i].key, key, kl) == 0)
			n++;
	return n;
}

static void has(const cv_sp_entries_t *es, const char *param, const char *key)
{
	if (count_hash(es, param, key) != 1)
		fail_msg("expected exactly one %s '%s', found %zu", param, key, count_hash(es, param, key));
}

static void hasnt(const cv_sp_entries_t *es, const char *param, const char *key)
{
	if (count_hash(es, param, key) != 0)
		fail_msg("unexpected %s '%s'", param, key);
}

/* Number of HASH entries of param whose key starts with tag. */
static size_t count_tag(const cv_sp_entries_t *es, const char *param, const char *tag)
{
	size_t n = 0;
	for (size_t i = 0; i < es->n; i++)
		if (es->v[i].kind == CV_IX_HASH && strcmp(es->v[i].param, param) == 0 &&
		    es->v[i].key_len >= strlen(tag) && memcmp(es->v[i].key, tag, strlen(tag)) == 0)
			n++;
	return n;
}

static size_t count_kind(const cv_sp_entries_t *es, const char *param, cv_ix_kind kind)
{
	size_t n = 0;
	for (size_t i = 0; i < es->n; i++)
		if (es->v[i].kind == kind && strcmp(es->v[i].param, param) == 0)
			n++;
	return n;
}

static size_t count_param(const cv_sp_entries_t *es, const char *param)
{
	size_t n = 0;
	for (size_t i = 0; i < es->n; i++)
		if (strcmp(es->v[i].param, param) == 0)
			n++;
	return n;
}

static void date_is(const cv_sp_entries_t *es, const char *param, int64_t lo, int64_t hi)
{
	assert_int_equal(count_kind(es, param, CV_IX_DATE), 1);
	for (size_t i = 0; i < es->n; i++)
		if (es->v[i].kind == CV_IX_DATE && strcmp(es->v[i].param, param) == 0) {
			assert_true(es->v[i].lo == lo);
			assert_true(es->v[i].hi == hi);
		}
}

static void num_is(const cv_sp_entries_t *es, const char *param, const char *unit, double lo, double hi)
{
	size_t n = 0;
	for (size_t i = 0; i < es->n; i++)
		if (es->v[i].kind == CV_IX_NUM && strcmp(es->v[i].param, param) == 0 &&
		    strcmp(es->v[i].key, unit) == 0) {
			assert_int_equal(es->v[i].key_len, strlen(unit));
			assert_true(es->v[i].nlo == lo);
			assert_true(es->v[i].nhi == hi);
			n++;
		}
	if (n != 1)
		fail_msg("expected one NUM %s unit '%s', found %zu", param, unit, n);
}

/* No two entries are equal (extraction dedupes). */
static void no_duplicates(const cv_sp_entries_t *es)
{
	for (size_t i = 0; i < es->n; i++)
		for (size_t k = i + 1; k < es->n; k++) {
			const cv_ix_entry_t *a = &es->v[i], *b = &es->v[k];
			if (a->kind != b->kind || strcmp(a->param, b->param) != 0)
				continue;
			if (a->kind == CV_IX_HASH && a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0)
				fail_msg("duplicate %s '%.*s'", a->param, (int)a->key_len, a->key);
			if (a->kind == CV_IX_DATE && a->lo == b->lo && a->hi == b->hi)
				fail_msg("duplicate DATE of %s", a->param);
			if (a->kind == CV_IX_NUM && a->nlo == b->nlo && a->nhi == b->nhi && strcmp(a->key, b->key) == 0)
				fail_msg("duplicate NUM of %s", a->param);
		}
}

/* ---- folding ------------------------------------------------------------ */

static void fold_case_and_accents(void **state)
{
	fx_t *f = *state;
	assert_string_equal(fold(f, "Zoë"), "zoe");
	assert_string_equal(fold(f, "ZOE"), "zoe");
	assert_string_equal(fold(f, "zoe"), "zoe");
	assert_string_equal(fold(f, "ZOË"), "zoe");
	assert_string_equal(fold(f, "Zoe\xcc\x88"), "zoe"); /* e + combining diaeresis */
	assert_string_equal(fold(f, "Müller"), "muller");
	assert_string_equal(fold(f, "MÜLLER"), "muller");
	assert_string_equal(fold(f, "François Ångström"), "francois angstrom");
	/* libunistring's full case folding maps ß (and ẞ) to "ss" */
	assert_string_equal(fold(f, "Straße"), "strasse");
	assert_string_equal(fold(f, "STRAẞE"), "strasse");
	assert_string_equal(fold(f, "ΣΊΣΥΦΟΣ"), fold(f, "σίσυφος"));
	/* compatibility decomposition: ligatures, full-width letters, superscripts */
	assert_string_equal(fold(f, "\xef\xac\x81nance"), "finance"); /* U+FB01 fi ligature */
	assert_string_equal(fold(f, "ＡＢＣ"), "abc");
	assert_string_equal(fold(f, "x²"), "x2");
	/* a letter that is not decomposed keeps its own code point */
	assert_string_equal(fold(f, "Øre"), "øre");
}

static void fold_white_space(void **state)
{
	fx_t *f = *state;
	assert_string_equal(fold(f, "  Jean \t  Luc\n "), "jean luc");
	assert_string_equal(fold(f, "a\xc2\xa0\xc2\xa0" "b"), "a b"); /* no-break spaces */
	assert_string_equal(fold(f, "a\xe2\x80\x83" "b"), "a b");       /* em space */
	assert_string_equal(fold(f, " \t\r\n "), "");
	assert_string_equal(fold(f, ""), "");
	/* a mark alone after a space does not leave a double space */
	assert_string_equal(fold(f, "a \xcc\x88 b"), "a b");
}

static void fold_refuses_bad_input(void **state)
{
	fx_t *f = *state;
	char *out = (char *)"untouched";
	static const char *const bad[] = { "\xc3\x28", "ab\xc0\xaf", "\xed\xa0\x80", "\xff", "z\xe2\x82", "\xf4\x90\x80\x80" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(cv_fold(bad[i], strlen(bad[i]), &f->pool, &out, NULL), CV_E_INVALID);
	assert_string_equal(out, "untouched");
	/* an embedded NUL is a character, but the length decides what is read */
	size_t len = 99;
	assert_int_equal(cv_fold("AB\0CD", 2, &f->pool, &out, &len), CV_OK);
	assert_string_equal(out, "ab");
	assert_int_equal(len, 2);
	/* over the bound */
	char *big = malloc(CV_FOLD_MAX_IN + 1);
	assert_non_null(big);
	memset(big, 'a', CV_FOLD_MAX_IN + 1);
	assert_int_equal(cv_fold(big, CV_FOLD_MAX_IN + 1, &f->pool, &out, &len), CV_E_LIMIT);
	assert_int_equal(cv_fold(big, CV_FOLD_MAX_IN, &f->pool, &out, &len), CV_OK);
	assert_int_equal(len, CV_FOLD_MAX_IN);
	free(big);
}

static void fold_prefixes_and_lengths(void **state)
{
	(void)state;
	const char *s = "zoë x"; /* 5 characters, 6 bytes */
	assert_int_equal(cv_fold_chars(s, strlen(s)), 5);
	assert_int_equal(cv_fold_prefix(s, strlen(s), 0), 0);
	assert_int_equal(cv_fold_prefix(s, strlen(s), 2), 2);
	assert_int_equal(cv_fold_prefix(s, strlen(s), 3), 4); /* ë is two bytes */
	assert_int_equal(cv_fold_prefix(s, strlen(s), 5), 6);
	assert_int_equal(cv_fold_prefix(s, strlen(s), 50), 6);
	assert_int_equal(cv_fold_chars("", 0), 0);
	assert_int_equal(cv_fold_chars("日本語", strlen("日本語")), 3);
	assert_int_equal(cv_fold_prefix("日本語", strlen("日本語"), 2), 6);

	/* the indexed lengths: ascending, from 1 to CV_SP_PREFIX_MAX */
	assert_true(cv_sp_prefix_count > 3);
	assert_int_equal(cv_sp_prefix_lengths[0], 1);
	assert_int_equal(cv_sp_prefix_lengths[cv_sp_prefix_count - 1], CV_SP_PREFIX_MAX);
	for (size_t i = 1; i < cv_sp_prefix_count; i++)
		assert_true(cv_sp_prefix_lengths[i] > cv_sp_prefix_lengths[i - 1]);
	assert_int_equal(cv_sp_prefix_cut(0), 0);
	assert_int_equal(cv_sp_prefix_cut(1), 1);
	assert_int_equal(cv_sp_prefix_cut(6), 6);
	assert_int_equal(cv_sp_prefix_cut(7), 6);
	assert_int_equal(cv_sp_prefix_cut(9), 8);
	assert_int_equal(cv_sp_prefix_cut(31), 24);
	assert_int_equal(cv_sp_prefix_cut(32), 32);
	assert_int_equal(cv_sp_prefix_cut(1000), 32);
	for (size_t i = 0; i < cv_sp_prefix_count; i++)
		assert_int_equal(cv_sp_prefix_cut(cv_sp_prefix_lengths[i]), cv_sp_prefix_lengths[i]);
}

/* ---- registry ----------------------------------------------------------- */

static void registry_compiles_everything(void **state)
{
	fx_t *f = *state;
	assert_true(cv_sp_total(f->reg) >= 1372);
	size_t seen = 0, uncompiled = 0, types_with_params = 0;
	size_t common = cv_sp_count(f->reg, "Resource");
	assert_int_equal(common, 6); /* _id _lastUpdated _profile _security _source _tag */
	for (size_t t = 0; t < cv_model_resource_count(f->model); t++) {
		const char *type = cv_model_resource_name(f->model, t);
		size_t n = cv_sp_count(f->reg, type);
		assert_true(n >= common);
		if (n > common)
			types_with_params++;
		for (size_t i = 0; i < n; i++) {
			const cv_sp_t *sp = cv_sp_at(f->reg, type, i);
			assert_non_null(sp);
			if (i < n - common) {
				assert_string_equal(sp->base, type);
				seen++;
			} else {
				assert_string_equal(sp->base, "Resource");
			}
			if (!sp->compiled)
				uncompiled++;
			for (size_t k = 0; k < sp->ncomp; k++) {
				if (!sp->comp[k].compiled)
					uncompiled++;
				assert_true(sp->comp[k].type != CV_SP_SPECIAL && sp->comp[k].type != CV_SP_COMPOSITE);
			}
			assert_true(sp->type != CV_SP_COMPOSITE || sp->ncomp >= 2);
			assert_true(sp->type == CV_SP_REFERENCE || sp->ntargets == 0);
			/* lookups find the same parameter again */
			assert_ptr_equal(cv_sp_find(f->reg, type, sp->code), sp);
		}
		assert_null(cv_sp_at(f->reg, type, n));
	}
	assert_int_equal(uncompiled, 0);
	assert_true(types_with_params > 120);
	assert_int_equal(seen + common, cv_sp_total(f->reg));
}

static void registry_lookups(void **state)
{
	fx_t *f = *state;
	const cv_sp_t *sp = cv_sp_find(f->reg, "Patient", "name");
	assert_non_null(sp);
	assert_int_equal(sp->type, CV_SP_STRING);
	assert_string_equal(sp->base, "Patient");
	assert_string_equal(sp->expr, "Patient.name");

	sp = cv_sp_find(f->reg, "Patient", "birthdate");
	assert_non_null(sp);
	assert_int_equal(sp->type, CV_SP_DATE);
	assert_true(sp->blind_date);
	assert_true(cv_sp_find(f->reg, "Person", "birthdate")->blind_date);
	assert_false(cv_sp_find(f->reg, "Observation", "date")->blind_date);
	assert_false(cv_sp_find(f->reg, "Encounter", "date")->blind_date);

	sp = cv_sp_find(f->reg, "Patient", "_id");
	assert_non_null(sp);
	assert_string_equal(sp->base, "Resource");
	assert_int_equal(sp->type, CV_SP_TOKEN);
	assert_ptr_equal(cv_sp_find(f->reg, "Observation", "_id"), sp);
	sp = cv_sp_find(f->reg, "Patient", "_tag");
	assert_non_null(sp);
	assert_int_equal(sp->type, CV_SP_TOKEN);
	assert_string_equal(sp->base, "Resource");

	assert_null(cv_sp_find(f->reg, "Patient", "nonsense"));
	assert_null(cv_sp_find(f->reg, "Patient", "code"));
	assert_null(cv_sp_find(f->reg, "NoSuchType", "name"));
	assert_non_null(cv_sp_find(f->reg, "NoSuchType", "_id")); /* the common ones apply anyway */

	/* one parameter, several bases, each with its own expression */
	const cv_sp_t *op = cv_sp_find(f->reg, "Observation", "patient");
	const cv_sp_t *ap = cv_sp_find(f->reg, "AllergyIntolerance", "patient");
	assert_non_null(op);
	assert_non_null(ap);
	assert_ptr_not_equal(op, ap);
	assert_string_equal(op->base, "Observation");
	assert_string_equal(ap->base, "AllergyIntolerance");
	assert_int_equal(op->type, CV_SP_REFERENCE);
	assert_string_equal(ap->expr, "AllergyIntolerance.patient");
	assert_non_null(strstr(op->expr, "Observation.subject"));
	assert_int_equal(op->ntargets, 2);
	assert_true(strcmp(op->targets[0], "Patient") == 0 || strcmp(op->targets[1], "Patient") == 0);

	/* composites know their components and the components' types */
	sp = cv_sp_find(f->reg, "Observation", "code-value-quantity");
	assert_non_null(sp);
	assert_int_equal(sp->type, CV_SP_COMPOSITE);
	assert_int_equal(sp->ncomp, 2);
	assert_string_equal(sp->comp[0].code, "code");
	assert_int_equal(sp->comp[0].type, CV_SP_TOKEN);
	assert_string_equal(sp->comp[1].code, "value-quantity");
	assert_int_equal(sp->comp[1].type, CV_SP_QUANTITY);

	sp = cv_sp_find(f->reg, "Encounter", "service-provider");
	assert_non_null(sp);
	assert_int_equal(sp->ntargets, 1);
	assert_string_equal(sp->targets[0], "Organization");
}

static void registry_compartments_and_summaries(void **state)
{
	fx_t *f = *state;
	const char *const *codes = NULL;
	size_t n = cv_sp_compartment(f->reg, "Observation", &codes);
	assert_true(n >= 2);
	bool subject = false, performer = false;
	for (size_t i = 0; i < n; i++) {
		subject |= strcmp(codes[i], "subject") == 0;
		performer |= strcmp(codes[i], "performer") == 0;
		assert_non_null(cv_sp_find(f->reg, "Observation", codes[i]));
	}
	assert_true(subject && performer);
	n = cv_sp_compartment(f->reg, "Encounter", &codes);
	assert_int_equal(n, 1);
	assert_string_equal(codes[0], "patient");
	n = cv_sp_compartment(f->reg, "Patient", &codes);
	assert_true(n >= 1);
	codes = NULL;
	assert_int_equal(cv_sp_compartment(f->reg, "NoSuchType", &codes), 0);
	assert_null(codes);
	/* a type outside the patient compartment */
	assert_int_equal(cv_sp_compartment(f->reg, "CodeSystem", &codes), 0);

	assert_true(cv_sp_in_summary(f->reg, "Patient", "name"));
	assert_true(cv_sp_in_summary(f->reg, "Patient", "birthDate"));
	assert_true(cv_sp_in_summary(f->reg, "Patient", "deceased"));
	assert_true(cv_sp_in_summary(f->reg, "Patient", "id"));
	assert_false(cv_sp_in_summary(f->reg, "Patient", "photo"));
	assert_false(cv_sp_in_summary(f->reg, "Patient", "contact"));
	assert_false(cv_sp_in_summary(f->reg, "Patient", "deceasedBoolean"));
	assert_true(cv_sp_in_summary(f->reg, "Observation", "status")); /* mandatory */
	assert_true(cv_sp_in_summary(f->reg, "Observation", "value"));
	assert_false(cv_sp_in_summary(f->reg, "Observation", "note"));
	assert_false(cv_sp_in_summary(f->reg, "NoSuchType", "id"));
}

/* ---- extraction --------------------------------------------------------- */

static const char patient_json[] =
	"{\"resourceType\":\"Patient\",\"id\":\"p1\","
	"\"meta\":{\"tag\":[{\"system\":\"http://t\",\"code\":\"x\"}],"
	"\"profile\":[\"http://example.org/StructureDefinition/pat|2.0\"]},"
	"\"name\":[{\"family\":\"Müller\",\"given\":[\"Zoë\",\"Zoe\"],\"prefix\":[\"Dr.\"]}],"
	"\"address\":[{\"line\":[\"1 Main St\"],\"city\":\"Springfield\",\"postalCode\":\"12345\","
	"\"country\":\"US\"}],"
	"\"telecom\":[{\"system\":\"phone\",\"value\":\"+1 555 0100\"}],"
	"\"identifier\":[{\"system\":\"http://hosp/mrn\",\"value\":\"MRN-1\",\"type\":{\"coding\":"
	"[{\"system\":\"http://terminology.hl7.org/CodeSystem/v2-0203\",\"code\":\"MR\"}],"
	"\"text\":\"Medical record\"}}],"
	"\"gender\":\"female\",\"birthDate\":\"1980-05-17\"}";

static void patient_strings(void **state)
{
	fx_t *f = *state;
	cv_sp_entries_t es = extract(f, patient_json, CV_SP_INDEX);
	no_duplicates(&es);
	/* exact text, folded prefixes at the indexed lengths, trigrams */
	has(&es, "name", "e:Müller");
	has(&es, "name", "p:m");
	has(&es, "name", "p:mu");
	has(&es, "name", "p:mull");
	has(&es, "name", "p:muller");
	hasnt(&es, "name", "p:Müller");
	hasnt(&es, "name", "p:mül");
	has(&es, "name", "g:mul");
	has(&es, "name", "g:ler");
	hasnt(&es, "name", "g:le");
	has(&es, "name", "e:Zoë");
	has(&es, "name", "e:Zoe");
	has(&es, "name", "p:zoe"); /* once, though two givens give it */
	has(&es, "name", "g:zoe");
	has(&es, "name", "e:Dr.");
	has(&es, "name", "p:dr.");
	has(&es, "family", "p:muller");
	hasnt(&es, "family", "p:zoe");
	has(&es, "given", "p:zoe");
	hasnt(&es, "given", "p:muller");
	/* index mode keeps no whole folded strings */
	assert_int_equal(count_tag(&es, "name", "f:"), 0);
	/* 11 characters: prefixes of 1..6, 8, 10 characters */
	has(&es, "address", "e:Springfield");
	has(&es, "address", "p:springfiel");
	hasnt(&es, "address", "p:springfie");
	has(&es, "address", "p:1 main s");
	has(&es, "address", "g:n s");
	has(&es, "address", "e:12345");
	has(&es, "address-city", "p:spring");
	has(&es, "address-postalcode", "p:12345");
	has(&es, "address-country", "e:US");
	assert_int_equal(count_param(&es, "address-state"), 0);

	/* match mode adds the whole folded strings */
	es = extract(f, patient_json, CV_SP_MATCH);
	no_duplicates(&es);
	has(&es, "name", "f:muller");
	has(&es, "name", "f:zoe");
	has(&es, "name", "f:dr.");
	has(&es, "address", "f:springfield");
	has(&es, "address", "f:1 main st");
}

static void patient_tokens_and_markers(void **state)
{
	fx_t *f = *state;
	cv_sp_entries_t es = extract(f, patient_json, CV_SP_INDEX);
	has(&es, "gender", "c:female");
	has(&es, "gender", "n:female");
	assert_int_equal(count_tag(&es, "gender", "sc:"), 0);
	has(&es, "telecom", "c:+1 555 0100");
	has(&es, "phone", "c:+1 555 0100");
	assert_int_equal(count_param(&es, "email"), 0);
	has(&es, "identifier", "c:MRN-1");
	has(&es, "identifier", "sc:http://hosp/mrn|MRN-1");
	has(&es, "identifier", "s:http://hosp/mrn|");
	hasnt(&es, "identifier", "n:MRN-1");
	has(&es, "identifier", "ot:http://terminology.hl7.org/CodeSystem/v2-0203|MR|MRN-1");
	has(&es, "identifier", "t:medical re");
	has(&es, "_tag", "sc:http://t|x");
	has(&es, "_tag", "c:x");
	/* a canonical with its version is kept with and without it */
	has(&es, "_profile", "u:http://example.org/StructureDefinition/pat|2.0");
	has(&es, "_profile", "u:http://example.org/StructureDefinition/pat");
	/* _id and _lastUpdated are searched on the row: no entries */
	assert_int_equal(count_param(&es, "_id"), 0);
	assert_int_equal(count_param(&es, "_lastUpdated"), 0);

	/* one presence marker per parameter with a value, none without */
	static const char *const present[] = { "name", "family", "given", "address", "address-city", "telecom",
					       "phone", "identifier", "gender", "birthdate", "_tag", "_profile" };
	for (size_t i = 0; i < sizeof present / sizeof present[0]; i++)
		has(&es, present[i], "m:");
	/* deceased is a boolean expression: false for a patient without deceased[x] */
	has(&es, "deceased", "c:false");
	has(&es, "deceased", "m:");
	static const char *const absent[] = { "email", "death-date", "active", "organization",
					      "general-practitioner", "address-state", "_security", "language" };
	for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++)
		assert_int_equal(count_param(&es, absent[i]), 0);
	no_duplicates(&es);
}

static void birth_date_is_blinded(void **state)
{
	fx_t *f = *state;
	cv_sp_entries_t es = extract(f, patient_json, CV_SP_INDEX);
	has(&es, "birthdate", "y:1980");
	has(&es, "birthdate", "ym:1980-05");
	has(&es, "birthdate", "d:1980-05-17");
	has(&es, "birthdate", "m:");
	has(&es, "birthdate", "yc:19");
	has(&es, "birthdate", "yd:198");
	assert_int_equal(count_kind(&es, "birthdate", CV_IX_DATE), 0);
	assert_int_equal(count_param(&es, "birthdate"), 6);

	es = extract(f, patient_json, CV_SP_MATCH);
	has(&es, "birthdate", "d:1980-05-17");
	date_is(&es, "birthdate", T_1980_05_17, T_1980_05_17 + DAY - 1);

	/* a partial birth date: only the keys of its precision */
	es = extract(f, "{\"resourceType\":\"Patient\",\"birthDate\":\"1980-05\"}", CV_SP_INDEX);
	has(&es, "birthdate", "y:1980");
	has(&es, "birthdate", "ym:1980-05");
	assert_int_equal(count_tag(&es, "birthdate", "d:"), 0);
	es = extract(f, "{\"resourceType\":\"Patient\",\"birthDate\":\"1980\"}", CV_SP_INDEX);
	has(&es, "birthdate", "y:1980");
	assert_int_equal(count_tag(&es, "birthdate", "ym:"), 0);
	/* a date that does not exist gives nothing, not even the marker */
	es = extract(f, "{\"resourceType\":\"Patient\",\"birthDate\":\"1980-02-30\"}", CV_SP_INDEX);
	assert_int_equal(count_param(&es, "birthdate"), 0);
	/* a deceased date is identifying too */
	es = extract(f, "{\"resourceType\":\"Patient\",\"deceasedDateTime\":\"2020-03-04T05:06:07Z\"}", CV_SP_INDEX);
	has(&es, "death-date", "d:2020-03-04");
	assert_int_equal(count_kind(&es, "death-date", CV_IX_DATE), 0);
}

static const char obs_json[] =
	"{\"resourceType\":\"Observation\",\"id\":\"o1\",\"status\":\"final\","
	"\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8480-6\","
	"\"display\":\"Systolic blood pressure\"}],\"text\":\"Systolic blood pressure\"},"
	"\"subject\":{\"reference\":\"Patient/p1\"},"
	"\"effectiveDateTime\":\"2013-01-14T10:00:00+02:00\","
	"\"valueQuantity\":{\"value\":120.5,\"unit\":\"mmHg\",\"system\":\"http://unitsofmeasure.org\","
	"\"code\":\"mm[Hg]\"}}";

static void observation_entries(void **state)
{
	fx_t *f = *state;
	cv_sp_entries_t es = extract(f, obs_json, CV_SP_INDEX);
	no_duplicates(&es);
	has(&es, "code", "c:8480-6");
	has(&es, "code", "sc:http://loinc.org|8480-6");
	has(&es, "code", "s:http://loinc.org|");
	hasnt(&es, "code", "n:8480-6");
	has(&es, "code", "t:systolic blood p"); /* display and text: one entry */
	has(&es, "code", "t:s");
	hasnt(&es, "code", "t:systolic blood pressure"); /* 23 characters: not an indexed length */
	assert_int_equal(count_tag(&es, "code", "tf:"), 0);
	has(&es, "combo-code", "c:8480-6");
	has(&es, "status", "c:final");
	has(&es, "subject", "r:Patient/p1");
	has(&es, "subject", "i:p1");
	assert_int_equal(count_tag(&es, "subject", "u:"), 0);
	has(&es, "patient", "r:Patient/p1");
	/* 10:00 at +02:00 is 08:00Z, a second's precision */
	date_is(&es, "date", T_2013_01_14_08, T_2013_01_14_08 + SEC - 1);
	num_is(&es, "value-quantity", "", 120.5, 120.5);
	num_is(&es, "value-quantity", "c|mm[Hg]", 120.5, 120.5);
	num_is(&es, "value-quantity", "c|mmHg", 120.5, 120.5);
	num_is(&es, "value-quantity", "s|http://unitsofmeasure.org|mm[Hg]", 120.5, 120.5);
	assert_int_equal(count_kind(&es, "value-quantity", CV_IX_NUM), 4);
	/* composites keep only their presence marker in the index (for :missing) */
	assert_int_equal(count_param(&es, "code-value-quantity"), 1);
	has(&es, "code-value-quantity", "m:");
	assert_int_equal(count_param(&es, "combo-code-value-quantity"), 1);

	es = extract(f, obs_json, CV_SP_MATCH);
	has(&es, "code", "tf:systolic blood pressure");
	has(&es, "code-value-quantity", "c:8480-6");
	has(&es, "code-value-quantity", "m:");
}

/* In match mode a composite over backbone elements (Observation.component)
 * gives its first component's values, as one over the resource does. */
static void component_composite_match_entries(void **state)
{
	fx_t *f = *state;
	cv_sp_entries_t es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"bp\"},"
		"\"component\":[{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8480-6\"}]},"
		"\"valueQuantity\":{\"value\":150,\"code\":\"mm[Hg]\"}}]}", CV_SP_MATCH);
	has(&es, "component-code", "c:8480-6"); /* the component's own parameter sees it */
	has(&es, "component-code-value-quantity", "c:8480-6");
	has(&es, "component-code-value-quantity", "m:");
}

static void observation_periods_and_zones(void **state)
{
	fx_t *f = *state;
	cv_sp_entries_t es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
		"\"effectivePeriod\":{\"start\":\"2013-01-14T10:00+02:00\",\"end\":\"2013-01-15\"}}",
		CV_SP_INDEX);
	date_is(&es, "date", T_2013_01_14_08, T_2013_01_16 - 1);

	es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
		"\"effectivePeriod\":{\"start\":\"2013-01-14\"}}", CV_SP_INDEX);
	date_is(&es, "date", T_2013_01_14, INT64_MAX / 2);
	es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
		"\"effectivePeriod\":{\"end\":\"2013-01-15T23:59:59.999-05:00\"}}", CV_SP_INDEX);
	date_is(&es, "date", INT64_MIN / 2, T_2013_01_16 + 5 * 3600 * SEC - 1);
	/* an instant with a fraction covers its last digit's unit */
	es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
		"\"effectiveInstant\":\"2013-01-14T08:00:00.25Z\"}", CV_SP_INDEX);
	date_is(&es, "date", T_2013_01_14_08 + 250000, T_2013_01_14_08 + 259999);
	/* minute and day precision */
	es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
		"\"effectiveDateTime\":\"2013-01-14T09:30-01:30\"}", CV_SP_INDEX);
	date_is(&es, "date", T_2013_01_14 + 11 * 3600 * SEC, T_2013_01_14 + 11 * 3600 * SEC + 60 * SEC - 1);
	es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
		"\"effectiveDateTime\":\"2013-01\"}", CV_SP_INDEX);
	date_is(&es, "date", T_2013_01_14 - 13 * DAY, T_2013_01_14 + 18 * DAY - 1);
	/* an empty period or a malformed date: no entry and no marker */
	es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
		"\"effectivePeriod\":{}}", CV_SP_INDEX);
	assert_int_equal(count_param(&es, "date"), 0);
	es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
		"\"effectiveDateTime\":\"2013-13-01\"}", CV_SP_INDEX);
	assert_int_equal(count_param(&es, "date"), 0);
}

static void references_canonicals_and_uris(void **state)
{
	fx_t *f = *state;
	cv_sp_entries_t es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
		"\"subject\":{\"reference\":\"https://other.example/fhir/Patient/p9/_history/3\"},"
		"\"performer\":[{\"reference\":\"urn:uuid:0e3c1e5a-0000-4000-8000-000000000001\"},"
		"{\"reference\":\"#contained1\"},"
		"{\"identifier\":{\"system\":\"http://npi\",\"value\":\"N-7\"}}],"
		"\"specimen\":{\"reference\":\"Specimen/s1\"}}",
		CV_SP_INDEX);
	no_duplicates(&es);
	has(&es, "subject", "u:https://other.example/fhir/Patient/p9/_history/3");
	/* another server's Patient/p9 is not our Patient/p9 */
	hasnt(&es, "subject", "r:Patient/p9");
	hasnt(&es, "subject", "i:p9");
	has(&es, "performer", "u:urn:uuid:0e3c1e5a-0000-4000-8000-000000000001");
	has(&es, "performer", "idn:N-7");
	has(&es, "performer", "id:http://npi|N-7");
	assert_int_equal(count_tag(&es, "performer", "r:"), 0);
	assert_int_equal(count_tag(&es, "performer", "i:"), 0);
	assert_int_equal(count_tag(&es, "performer", "#"), 0);
	has(&es, "performer", "m:");
	assert_int_equal(count_param(&es, "performer"), 4);
	has(&es, "specimen", "r:Specimen/s1");

	/* a reference to a canonical, with its version */
	es = extract(f,
		"{\"resourceType\":\"QuestionnaireResponse\",\"status\":\"completed\","
		"\"questionnaire\":\"http://example.org/Questionnaire/q1|3.1\"}", CV_SP_INDEX);
	has(&es, "questionnaire", "u:http://example.org/Questionnaire/q1|3.1");
	has(&es, "questionnaire", "u:http://example.org/Questionnaire/q1");
	assert_int_equal(count_tag(&es, "questionnaire", "r:"), 0);

	/* a uri and the path prefixes it is below */
	es = extract(f,
		"{\"resourceType\":\"ValueSet\",\"status\":\"active\",\"url\":\"http://acme.org/fhir/ValueSet/vs1\"}",
		CV_SP_INDEX);
	has(&es, "url", "u:http://acme.org/fhir/ValueSet/vs1");
	has(&es, "url", "ub:http://acme.org");
	has(&es, "url", "ub:http://acme.org/fhir");
	has(&es, "url", "ub:http://acme.org/fhir/ValueSet");
	has(&es, "url", "ub:http://acme.org/fhir/ValueSet/vs1");
	assert_int_equal(count_tag(&es, "url", "ub:"), 4);
	hasnt(&es, "url", "ub:http:");
	es = extract(f, "{\"resourceType\":\"ValueSet\",\"status\":\"active\",\"url\":\"urn:oid:1.2.3\"}", CV_SP_INDEX);
	has(&es, "url", "u:urn:oid:1.2.3");
	has(&es, "url", "ub:urn:oid:1.2.3");
	assert_int_equal(count_param(&es, "url"), 3);
}

static void duplicates_are_removed(void **state)
{
	fx_t *f = *state;
	cv_sp_entries_t es = extract(f,
		"{\"resourceType\":\"Observation\",\"status\":\"final\","
		"\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"1\",\"display\":\"Heart\"},"
		"{\"system\":\"http://loinc.org\",\"code\":\"1\",\"display\":\"heart\"},"
		"{\"system\":\"http://snomed.info/sct\",\"code\":\"1\"}],\"text\":\"HEART\"},"
		"\"valueQuantity\":{\"value\":5,\"unit\":\"mg\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"mg\"},"
		"\"component\":[{\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"1\"}]},"
		"\"valueQuantity\":{\"value\":5,\"code\":\"mg\"}}]}",
		CV_SP_INDEX);
	no_duplicates(&es);
	has(&es, "code", "c:1");
	has(&es, "code", "sc:http://loinc.org|1");
	has(&es, "code", "sc:http://snomed.info/sct|1");
	has(&es, "code", "t:heart");
	has(&es, "code", "m:");
	has(&es, "combo-code", "c:1");
	has(&es, "component-code", "sc:http://loinc.org|1");
	/* unit and code the same: one "c|mg" */
	num_is(&es, "value-quantity", "c|mg", 5, 5);
	num_is(&es, "value-quantity", "", 5, 5);
	num_is(&es, "combo-value-quantity", "", 5, 5);
	num_is(&es, "component-value-quantity", "c|mg", 5, 5);
	/* and the entries are sorted */
	for (size_t i = 1; i < es.n; i++)
		assert_true(strcmp(es.v[i - 1].param, es.v[i].param) <= 0);
}

static void extraction_edge_cases(void **state)
{
	fx_t *f = *state;
	json_object *o = json_tokener_parse("{\"id\":\"x\"}");
	cv_sp_entries_t es = { .pool = &f->pool };
	assert_int_equal(cv_sp_extract(f->reg, f->model, o, CV_SP_INDEX, &es), CV_E_INVALID);
	json_object_put(o);
	/* empty strings and invalid text index nothing */
	es = extract(f, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\",\"given\":[\"  \"]}]}",
		     CV_SP_INDEX);
	assert_int_equal(count_tag(&es, "name", "p:"), 0);
	assert_int_equal(count_tag(&es, "name", "g:"), 0);
	/* one parameter at a time, without dedupe across parameters */
	es = extract(f, patient_json, CV_SP_INDEX);
	cv_sp_entries_t one = { .pool = &f->pool };
	assert_int_equal(cv_sp_extract_one(cv_sp_find(f->reg, "Patient", "gender"), f->model, f->res, CV_SP_INDEX,
					   &one), CV_OK);
	assert_int_equal(one.n, 3); /* c:, n:, m: */
	/* a long string: prefixes up to 32 characters, no trigrams past 256 bytes */
	char json[700], name[301];
	memset(name, 'a', 300);
	name[300] = '\0';
	snprintf(json, sizeof json, "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"%s\"}]}", name);
	es = extract(f, json, CV_SP_INDEX);
	assert_int_equal(count_tag(&es, "family", "p:"), cv_sp_prefix_count);
	assert_int_equal(count_tag(&es, "family", "g:"), 0);
	/* a number: Range and plain value (RiskAssessment.prediction.probability) */
	es = extract(f,
		"{\"resourceType\":\"RiskAssessment\",\"status\":\"final\",\"subject\":{\"reference\":\"Patient/p1\"},"
		"\"prediction\":[{\"probabilityDecimal\":0.25},{\"probabilityRange\":{\"low\":{\"value\":0.5},"
		"\"high\":{\"value\":0.75}}}]}", CV_SP_INDEX);
	assert_int_equal(count_kind(&es, "probability", CV_IX_NUM), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fold_case_and_accents),
		cmocka_unit_test(fold_white_space),
		cmocka_unit_test(fold_refuses_bad_input),
		cmocka_unit_test(fold_prefixes_and_lengths),
		cmocka_unit_test(registry_compiles_everything),
		cmocka_unit_test(registry_lookups),
		cmocka_unit_test(registry_compartments_and_summaries),
		cmocka_unit_test(patient_strings),
		cmocka_unit_test(patient_tokens_and_markers),
		cmocka_unit_test(birth_date_is_blinded),
		cmocka_unit_test(observation_entries),
		cmocka_unit_test(component_composite_match_entries),
		cmocka_unit_test(observation_periods_and_zones),
		cmocka_unit_test(references_canonicals_and_uris),
		cmocka_unit_test(duplicates_are_removed),
		cmocka_unit_test(extraction_edge_cases),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
