/*
 * test_policy.c - the resource-level access decisions against a real store
 * (SQLite, and PostgreSQL when CV_TEST_PG_BASE is set): care-team and
 * encounter relationships, consent, break-glass, what a patient authors,
 * writes checked before and after, granular scopes, billing's view.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/time.h"
#include "model/json.h"
#include "model/model.h"
#include "model/searchparam.h"
#include "policy/consent.h"
#include "policy/policy.h"
#include "policy/rules.h"
#include "../teststore.h"

/* The PostgreSQL cluster of the second run (CV_TEST_PG_BASE), NULL in the first (SQLite). */
static const char *pg_base;

typedef struct fx {
	cv_test_store_t ts;
	cv_model_t *model;
	cv_sp_registry_t *reg;
	cv_policy_t *pol;
	cv_pool_t pool;
} fx_t;

static json_object *parse(cv_pool_t *pool, const char *text)
{
	json_object *o = NULL;
	const char *err;
	cv_json_limits_t lim;
	cv_json_limits_default(&lim);
	assert_int_equal(cv_json_parse(text, strlen(text), &lim, pool, &o, &err), CV_OK);
	assert_int_equal(cv_json_pool_own(pool, o), CV_OK);
	return o;
}

/* Writes type/id with its search index, as the FHIR layer would. */
static void put(fx_t *f, const char *type, const char *id, const char *text)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	json_object *o = parse(&pool, text);
	cv_sp_entries_t es = { .pool = &pool };
	assert_int_equal(cv_sp_extract(f->reg, f->model, o, CV_SP_INDEX, &es), CV_OK);
	cv_store_version_t cur;
	int64_t expect = cv_store_read(f->ts.s, type, id, 0, &pool, &cur) == CV_OK ? cur.version : 0;
	cv_store_write_t w = { .op = CV_STORE_PUT_VERSION, .type = type, .id = id, .expect_version = expect,
			       .updated_us = cv_time_now_us(), .body = (const uint8_t *)text, .body_len = strlen(text),
			       .index = es.v, .nindex = es.n };
	assert_int_equal(cv_store_write_sync(f->ts.s, &w), CV_OK);
	cv_pool_release(&pool);
}

static int setup_with(void **state, int64_t glass_us)
{
	fx_t *f = calloc(1, sizeof *f);
	char err[256];
	size_t failed = 0;
	assert_non_null(f);
	cv_test_store_open(&f->ts, "policy", pg_base);
	assert_int_equal(cv_model_new(&f->model), CV_OK);
	assert_int_equal(cv_sp_registry_new(f->model, &f->reg, &failed, err, sizeof err), CV_OK);
	assert_int_equal(cv_policy_new(f->ts.s, f->model, f->reg, glass_us, &f->pol), CV_OK);
	cv_pool_init(&f->pool, 0);
	put(f, "Patient", "pa", "{\"resourceType\":\"Patient\",\"id\":\"pa\",\"gender\":\"female\",\"name\":[{\"family\":\"A\"}]}");
	put(f, "Patient", "pb", "{\"resourceType\":\"Patient\",\"id\":\"pb\"}");
	put(f, "CareTeam", "ct1", "{\"resourceType\":\"CareTeam\",\"id\":\"ct1\",\"status\":\"active\",\"subject\":"
				  "{\"reference\":\"Patient/pa\"},\"participant\":[{\"member\":{\"reference\":\"Practitioner/nurse1\"}},"
				  "{\"member\":{\"reference\":\"Practitioner/old\"},\"period\":{\"end\":\"2001-01-01\"}}]}");
	put(f, "CareTeam", "ct2", "{\"resourceType\":\"CareTeam\",\"id\":\"ct2\",\"status\":\"inactive\",\"subject\":"
				  "{\"reference\":\"Patient/pb\"},\"participant\":[{\"member\":{\"reference\":\"Practitioner/nurse1\"}}]}");
	put(f, "Encounter", "e1", "{\"resourceType\":\"Encounter\",\"id\":\"e1\",\"status\":\"finished\",\"class\":{\"code\":\"AMB\"},"
				  "\"subject\":{\"reference\":\"Patient/pb\"},\"participant\":[{\"individual\":{\"reference\":\"Practitioner/doc1\"}},"
				  "{\"individual\":{\"reference\":\"Practitioner/nurse2\"}}]}");
	put(f, "Encounter", "e2", "{\"resourceType\":\"Encounter\",\"id\":\"e2\",\"status\":\"cancelled\",\"class\":{\"code\":\"AMB\"},"
				  "\"subject\":{\"reference\":\"Patient/pa\"},\"participant\":[{\"individual\":{\"reference\":\"Practitioner/doc1\"}}]}");
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, 3600LL * 1000000);
}

static int teardown(void **state)
{
	fx_t *f = *state;
	cv_pool_release(&f->pool);
	cv_policy_free(f->pol);
	cv_sp_registry_free(f->reg);
	cv_model_free(f->model);
	cv_test_store_close(&f->ts);
	free(f);
	return 0;
}

static const char *OBS_A = "{\"resourceType\":\"Observation\",\"id\":\"oa\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
			   "\"subject\":{\"reference\":\"Patient/pa\"}}";
static const char *OBS_B = "{\"resourceType\":\"Observation\",\"id\":\"oa\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
			   "\"subject\":{\"reference\":\"Patient/pb\"}}";

static cv_verdict check(fx_t *f, const cv_principal_t *p, cv_action act, const char *type, const char *text)
{
	cv_access_t *a;
	cv_verdict v;
	assert_int_equal(cv_access_new(f->pol, p, &f->pool, &a), CV_OK);
	assert_int_equal(cv_access_check(a, act, type, parse(&f->pool, text), &v, NULL), CV_OK);
	return v;
}

static cv_verdict change(fx_t *f, const cv_principal_t *p, cv_action act, const char *type, const char *before,
			 const char *after)
{
	cv_access_t *a;
	cv_verdict v;
	assert_int_equal(cv_access_new(f->pol, p, &f->pool, &a), CV_OK);
	assert_int_equal(cv_access_write(a, act, type, before ? parse(&f->pool, before) : NULL,
					 after ? parse(&f->pool, after) : NULL, &v, NULL), CV_OK);
	return v;
}

static const cv_principal_t NURSE = { .kind = CV_PRINCIPAL_USER, .id = "n1", .role = "nurse",
				      .link = "Practitioner/nurse1", .session = "s" };
static const cv_principal_t NURSE2 = { .kind = CV_PRINCIPAL_USER, .id = "n2", .role = "nurse",
				       .link = "Practitioner/nurse2", .session = "s" };
static const cv_principal_t OLD = { .kind = CV_PRINCIPAL_USER, .id = "n3", .role = "nurse",
				    .link = "Practitioner/old", .session = "s" };
static const cv_principal_t DOC = { .kind = CV_PRINCIPAL_USER, .id = "d1", .role = "doctor",
				    .link = "Practitioner/doc1", .session = "s" };
static const cv_principal_t PAT = { .kind = CV_PRINCIPAL_USER, .id = "p1", .role = "patient", .link = "Patient/pa",
				    .session = "s" };

static void care_team_and_encounter_relationships(void **state)
{
	fx_t *f = *state;
	/* an active care team membership */
	assert_int_equal(check(f, &NURSE, CV_ACT_FHIR_READ, "Observation", OBS_A), CV_ACCESS_PERMIT);
	/* an inactive care team gives nothing */
	assert_int_equal(check(f, &NURSE, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_HIDDEN);
	/* a membership whose period ended gives nothing */
	assert_int_equal(check(f, &OLD, CV_ACT_FHIR_READ, "Observation", OBS_A), CV_ACCESS_HIDDEN);
	/* an encounter makes a doctor treating, not a nurse assigned */
	assert_int_equal(check(f, &DOC, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_PERMIT);
	assert_int_equal(check(f, &NURSE2, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_HIDDEN);
	/* a cancelled encounter gives nothing */
	assert_int_equal(check(f, &DOC, CV_ACT_FHIR_READ, "Observation", OBS_A), CV_ACCESS_HIDDEN);
	/* the patient: their own compartment only */
	assert_int_equal(check(f, &PAT, CV_ACT_FHIR_READ, "Observation", OBS_A), CV_ACCESS_PERMIT);
	assert_int_equal(check(f, &PAT, CV_ACT_FHIR_SEARCH, "Observation", OBS_B), CV_ACCESS_HIDDEN);
	/* a resource of no patient's compartment is not a person's */
	assert_int_equal(check(f, &DOC, CV_ACT_FHIR_READ, "Observation",
			       "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"}}"),
			 CV_ACCESS_HIDDEN);
	/* the care team ends: the next request sees it (the cache follows the store's writes) */
	put(f, "CareTeam", "ct1", "{\"resourceType\":\"CareTeam\",\"id\":\"ct1\",\"status\":\"inactive\",\"subject\":"
				  "{\"reference\":\"Patient/pa\"},\"participant\":[{\"member\":{\"reference\":\"Practitioner/nurse1\"}}]}");
	assert_int_equal(check(f, &NURSE, CV_ACT_FHIR_READ, "Observation", OBS_A), CV_ACCESS_HIDDEN);
}

static void a_membership_ends_on_time(void **state)
{
	fx_t *f = *state;
	char end[40], text[512];
	cv_time_format_instant(cv_time_now_us() + 1200000, end, sizeof end);
	snprintf(text, sizeof text, "{\"resourceType\":\"CareTeam\",\"id\":\"ct3\",\"status\":\"active\",\"subject\":"
		 "{\"reference\":\"Patient/pb\"},\"participant\":[{\"member\":{\"reference\":\"Practitioner/nurse2\"},"
		 "\"period\":{\"end\":\"%s\"}}]}", end);
	put(f, "CareTeam", "ct3", text);
	assert_int_equal(check(f, &NURSE2, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_PERMIT);
	/* no write happens, yet the cached relationship ends with the period */
	usleep(1500000);
	assert_int_equal(check(f, &NURSE2, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_HIDDEN);
}

static void writes_are_checked_before_and_after(void **state)
{
	fx_t *f = *state;
	/* a nurse updates her patient's observation, but cannot move it to another patient */
	assert_int_equal(change(f, &NURSE, CV_ACT_FHIR_UPDATE, "Observation", OBS_A, OBS_A), CV_ACCESS_PERMIT);
	assert_int_equal(change(f, &NURSE, CV_ACT_FHIR_UPDATE, "Observation", OBS_A, OBS_B), CV_ACCESS_FORBIDDEN);
	/* nor change what she cannot see: that is hidden, not forbidden */
	assert_int_equal(change(f, &NURSE, CV_ACT_FHIR_UPDATE, "Observation", OBS_B, OBS_A), CV_ACCESS_HIDDEN);
	/* no delete for nurses; a doctor treating the patient may */
	assert_int_equal(change(f, &NURSE, CV_ACT_FHIR_DELETE, "Observation", OBS_A, NULL), CV_ACCESS_FORBIDDEN);
	assert_int_equal(change(f, &DOC, CV_ACT_FHIR_DELETE, "Observation", OBS_B, NULL), CV_ACCESS_PERMIT);
	/* a nurse records observations, not conditions */
	assert_int_equal(change(f, &NURSE, CV_ACT_FHIR_CREATE, "Condition", NULL,
			       "{\"resourceType\":\"Condition\",\"subject\":{\"reference\":\"Patient/pa\"}}"),
			 CV_ACCESS_FORBIDDEN);
	/* a patient writes what a patient authors, for themselves only */
	const char *self = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"subject\":"
			   "{\"reference\":\"Patient/pa\"},\"performer\":[{\"reference\":\"Patient/pa\"}]}";
	const char *moved = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"subject\":"
			    "{\"reference\":\"Patient/pb\"},\"performer\":[{\"reference\":\"Patient/pa\"}]}";
	assert_int_equal(change(f, &PAT, CV_ACT_FHIR_CREATE, "Observation", NULL, self), CV_ACCESS_PERMIT);
	assert_int_equal(change(f, &PAT, CV_ACT_FHIR_UPDATE, "Observation", self, moved), CV_ACCESS_FORBIDDEN);
	/* never what a clinician recorded */
	assert_int_equal(change(f, &PAT, CV_ACT_FHIR_UPDATE, "Observation", OBS_A, self), CV_ACCESS_FORBIDDEN);
	/* nobody changes the audit trail */
	const char *ae = "{\"resourceType\":\"AuditEvent\",\"type\":{\"code\":\"rest\"},\"recorded\":\"2020-01-01T00:00:00Z\"}";
	assert_int_equal(change(f, &DOC, CV_ACT_FHIR_DELETE, "AuditEvent", ae, NULL), CV_ACCESS_HIDDEN);
	cv_verdict v;
	assert_int_equal(cv_access_write(NULL, CV_ACT_FHIR_UPDATE, "AuditEvent", parse(&f->pool, ae),
					 parse(&f->pool, ae), &v, NULL), CV_OK);
	assert_int_equal(v, CV_ACCESS_FORBIDDEN);
}

static void consent_denies_and_its_exceptions(void **state)
{
	fx_t *f = *state;
	const char *psy = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"meta\":"
			  "{\"security\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":\"PSY\"}]},"
			  "\"subject\":{\"reference\":\"Patient/pb\"}}";
	assert_int_equal(check(f, &DOC, CV_ACT_FHIR_READ, "Observation", psy), CV_ACCESS_PERMIT);
	/* deny mental-health data to everyone, except doc1 */
	put(f, "Consent", "c1", "{\"resourceType\":\"Consent\",\"id\":\"c1\",\"status\":\"active\",\"scope\":{\"coding\":"
				"[{\"code\":\"patient-privacy\"}]},\"category\":[{\"text\":\"x\"}],\"patient\":{\"reference\":\"Patient/pb\"},"
				"\"provision\":{\"type\":\"permit\",\"provision\":[{\"type\":\"deny\",\"securityLabel\":[{\"code\":\"PSY\"}],"
				"\"provision\":[{\"type\":\"permit\",\"actor\":[{\"role\":{\"text\":\"x\"},\"reference\":{\"reference\":"
				"\"Practitioner/doc1\"}}]}]}]}}");
	assert_int_equal(check(f, &DOC, CV_ACT_FHIR_READ, "Observation", psy), CV_ACCESS_PERMIT);
	cv_principal_t doc2 = DOC;
	doc2.link = "Practitioner/doc2";
	doc2.id = "d2";
	put(f, "Encounter", "e3", "{\"resourceType\":\"Encounter\",\"id\":\"e3\",\"status\":\"finished\",\"class\":{\"code\":\"AMB\"},"
				  "\"subject\":{\"reference\":\"Patient/pb\"},\"participant\":[{\"individual\":{\"reference\":\"Practitioner/doc2\"}}]}");
	assert_int_equal(check(f, &doc2, CV_ACT_FHIR_READ, "Observation", psy), CV_ACCESS_HIDDEN);
	assert_int_equal(check(f, &doc2, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_PERMIT); /* no label */
	/* a break-glass declaration overrides it, and is marked */
	int64_t until;
	assert_int_equal(cv_policy_break_glass(f->pol, &doc2, "pb", "too short", NULL, &until), CV_E_INVALID);
	assert_int_equal(cv_policy_break_glass(f->pol, &doc2, "pb", "unconscious, history needed", NULL, &until), CV_OK);
	cv_access_t *a;
	cv_verdict v;
	assert_int_equal(cv_access_new(f->pol, &doc2, &f->pool, &a), CV_OK);
	assert_int_equal(cv_access_check(a, CV_ACT_FHIR_READ, "Observation", parse(&f->pool, psy), &v, NULL), CV_OK);
	assert_int_equal(v, CV_ACCESS_PERMIT);
	assert_true(cv_access_broke_glass(a));
	/* withdrawn: effective at once */
	put(f, "Consent", "c1", "{\"resourceType\":\"Consent\",\"id\":\"c1\",\"status\":\"inactive\",\"scope\":{\"coding\":"
				"[{\"code\":\"patient-privacy\"}]},\"category\":[{\"text\":\"x\"}],\"patient\":{\"reference\":\"Patient/pb\"}}");
	cv_principal_t doc3 = doc2;
	doc3.id = "d3"; /* no break-glass of its own */
	assert_int_equal(check(f, &doc3, CV_ACT_FHIR_READ, "Observation", psy), CV_ACCESS_PERMIT);
}

static void consent_provisions(void **state)
{
	fx_t *f = *state;
	const char *labels = "[{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-ActCode\",\"code\":\"ETH\"}]";
	const char *orgs[] = { "Organization/o1" };
	cv_consent_access_t a = { .practitioner = "Practitioner/x", .orgs = orgs, .norgs = 1, .purpose = "TREAT",
				  .labels = parse(&f->pool, labels), .now_us = cv_time_now_us() };
	/* research opt-out: nothing for treatment */
	json_object *research = parse(&f->pool, "[{\"provision\":{\"type\":\"deny\",\"purpose\":[{\"code\":\"HRESCH\"}]}}]");
	assert_false(cv_consent_denies(research, &a, &f->pool));
	a.purpose = "HRESCH";
	assert_true(cv_consent_denies(research, &a, &f->pool));
	a.purpose = "TREAT";
	/* an organization named in a deny */
	json_object *org = parse(&f->pool, "[{\"provision\":{\"type\":\"deny\",\"actor\":[{\"reference\":{\"reference\":"
					   "\"Organization/o1\"}}]}}]");
	assert_true(cv_consent_denies(org, &a, &f->pool));
	/* a deny whose period has ended */
	json_object *past = parse(&f->pool, "[{\"provision\":{\"type\":\"deny\",\"period\":{\"end\":\"2001-01-01\"}}}]");
	assert_false(cv_consent_denies(past, &a, &f->pool));
	/* deny all, permit an exception for x; a label deny nested in the exception wins again */
	json_object *nested = parse(&f->pool, "[{\"provision\":{\"type\":\"deny\",\"provision\":[{\"type\":\"permit\","
					      "\"actor\":[{\"reference\":{\"reference\":\"Practitioner/x\"}}],\"provision\":"
					      "[{\"type\":\"deny\",\"securityLabel\":[{\"code\":\"ETH\"}]}]}]}}]");
	assert_true(cv_consent_denies(nested, &a, &f->pool));
	a.labels = NULL;
	assert_false(cv_consent_denies(nested, &a, &f->pool));
	a.practitioner = "Practitioner/y";
	assert_true(cv_consent_denies(nested, &a, &f->pool));
}

static void break_glass_expires(void **state)
{
	fx_t *f = *state;
	cv_policy_free(f->pol);
	assert_int_equal(cv_policy_new(f->ts.s, f->model, f->reg, 200000, &f->pol), CV_OK); /* 0.2 s */
	int64_t until;
	assert_int_equal(check(f, &NURSE, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_HIDDEN);
	assert_int_equal(cv_policy_break_glass(f->pol, &PAT, "pb", "a patient may not do this", NULL, &until), CV_E_DENIED);
	assert_int_equal(cv_policy_break_glass(f->pol, &NURSE, "pb", "collapsed in the waiting room", NULL, &until), CV_OK);
	assert_int_equal(check(f, &NURSE, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_PERMIT);
	/* the role's rights, no more: a nurse still does not delete */
	assert_int_equal(change(f, &NURSE, CV_ACT_FHIR_DELETE, "Observation", OBS_B, NULL), CV_ACCESS_FORBIDDEN);
	usleep(300000);
	assert_int_equal(check(f, &NURSE, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_HIDDEN);
}

static void granular_scopes_and_launch_patient(void **state)
{
	fx_t *f = *state;
	const char *lab = "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},\"category\":[{\"coding\":"
			  "[{\"system\":\"http://terminology.hl7.org/CodeSystem/observation-category\",\"code\":\"laboratory\"}]}],"
			  "\"subject\":{\"reference\":\"Patient/pa\"}}";
	cv_principal_t app = PAT;
	app.session = NULL;
	app.client = "app";
	app.patient = "pa";
	app.scope = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
	assert_int_equal(check(f, &app, CV_ACT_FHIR_READ, "Observation", lab), CV_ACCESS_PERMIT);
	assert_int_equal(check(f, &app, CV_ACT_FHIR_READ, "Observation", OBS_A), CV_ACCESS_HIDDEN); /* no category */
	app.scope = "patient/Observation.rs";
	assert_int_equal(check(f, &app, CV_ACT_FHIR_READ, "Observation", OBS_A), CV_ACCESS_PERMIT);
	/* a doctor's app with patient/ scopes reaches only the launch patient */
	cv_principal_t dapp = DOC;
	dapp.session = NULL;
	dapp.client = "app";
	dapp.patient = "pa";
	dapp.scope = "patient/Observation.rs";
	assert_int_equal(check(f, &dapp, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_HIDDEN);
	dapp.scope = "user/Observation.rs";
	assert_int_equal(check(f, &dapp, CV_ACT_FHIR_READ, "Observation", OBS_B), CV_ACCESS_PERMIT);
	/* a backend client: system scopes, granular ones too */
	cv_principal_t svc = { .kind = CV_PRINCIPAL_CLIENT, .id = "svc", .client = "svc",
			       .scope = "system/Observation.rs?category=laboratory" };
	assert_int_equal(check(f, &svc, CV_ACT_FHIR_READ, "Observation", lab), CV_ACCESS_PERMIT);
	assert_int_equal(check(f, &svc, CV_ACT_FHIR_READ, "Observation", OBS_A), CV_ACCESS_HIDDEN);
}

static void a_stored_version_is_examined_once(void **state)
{
	fx_t *f = *state;
	put(f, "Observation", "oa", OBS_A);
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->ts.s, "Observation", "oa", 0, &f->pool, &v), CV_OK);
	cv_access_t *a;
	cv_verdict out;
	assert_int_equal(cv_access_new(f->pol, &NURSE, &f->pool, &a), CV_OK);
	json_object *obj = parse(&f->pool, (const char *)v.body);
	assert_int_equal(cv_access_check_stored(a, CV_ACT_FHIR_READ, "Observation", v.seq, obj, &out, NULL), CV_OK);
	assert_int_equal(out, CV_ACCESS_PERMIT);
	/* the same version again: its compartments come from memory, not from the tree
	 * (here a tree of another patient stands in for it, to show which one decides) */
	assert_int_equal(cv_access_check_stored(a, CV_ACT_FHIR_READ, "Observation", v.seq, parse(&f->pool, OBS_B), &out,
						NULL), CV_OK);
	assert_int_equal(out, CV_ACCESS_PERMIT);
	/* a new version has a new sequence number: examined afresh */
	put(f, "Observation", "oa", OBS_B);
	assert_int_equal(cv_store_read(f->ts.s, "Observation", "oa", 0, &f->pool, &v), CV_OK);
	assert_int_equal(cv_access_check_stored(a, CV_ACT_FHIR_READ, "Observation", v.seq,
						parse(&f->pool, (const char *)v.body), &out, NULL), CV_OK);
	assert_int_equal(out, CV_ACCESS_HIDDEN);
}

static void billing_sees_part_of_a_patient(void **state)
{
	fx_t *f = *state;
	cv_principal_t bill = { .kind = CV_PRINCIPAL_USER, .id = "b1", .role = "billing", .session = "s" };
	const char *pa = "{\"resourceType\":\"Patient\",\"id\":\"pa\",\"gender\":\"female\",\"name\":[{\"family\":\"A\"}],"
			 "\"birthDate\":\"1970-01-01\",\"telecom\":[{\"value\":\"1\"}]}";
	cv_access_t *a;
	cv_verdict v;
	assert_int_equal(cv_access_new(f->pol, &bill, &f->pool, &a), CV_OK);
	json_object *o = parse(&f->pool, pa), *x;
	assert_int_equal(cv_access_check(a, CV_ACT_FHIR_READ, "Patient", o, &v, NULL), CV_OK);
	assert_int_equal(v, CV_ACCESS_PERMIT);
	assert_true(cv_access_view(a, "Patient", o));
	assert_false(json_object_object_get_ex(o, "gender", &x));
	assert_false(json_object_object_get_ex(o, "telecom", &x));
	assert_true(json_object_object_get_ex(o, "birthDate", &x));
	assert_true(cv_access_param_ok(a, "Patient", "name:exact"));
	assert_false(cv_access_param_ok(a, "Patient", "gender"));
	assert_int_equal(check(f, &bill, CV_ACT_FHIR_READ, "Observation", OBS_A), CV_ACCESS_HIDDEN);
	/* the search clause: a patient's searches are narrowed to their compartment */
	cv_store_clause_t c;
	bool have;
	assert_int_equal(cv_access_new(f->pol, &PAT, &f->pool, &a), CV_OK);
	assert_int_equal(cv_access_clause(a, "Observation", &f->pool, &c, &have), CV_OK);
	assert_true(have);
	assert_true(c.n >= 1);
	assert_int_equal(cv_access_clause(a, "Medication", &f->pool, &c, &have), CV_OK);
	assert_false(have);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(care_team_and_encounter_relationships, setup, teardown),
		cmocka_unit_test_setup_teardown(a_membership_ends_on_time, setup, teardown),
		cmocka_unit_test_setup_teardown(writes_are_checked_before_and_after, setup, teardown),
		cmocka_unit_test_setup_teardown(consent_denies_and_its_exceptions, setup, teardown),
		cmocka_unit_test_setup_teardown(consent_provisions, setup, teardown),
		cmocka_unit_test_setup_teardown(break_glass_expires, setup, teardown),
		cmocka_unit_test_setup_teardown(granular_scopes_and_launch_patient, setup, teardown),
		cmocka_unit_test_setup_teardown(a_stored_version_is_examined_once, setup, teardown),
		cmocka_unit_test_setup_teardown(billing_sees_part_of_a_patient, setup, teardown),
	};
	return CV_TEST_RUN_ON_BOTH(tests, "policy", pg_base);
}
