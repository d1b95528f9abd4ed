/*
 * test_audit.c - the audit trail against a real store (SQLite, and
 * PostgreSQL when CV_TEST_PG_BASE is set): the hash chain as records are
 * appended, one at a time and many to a batch; a refused transaction leaves
 * neither its write nor its record, and no gap; searching the trail; every
 * kind of tampering with the stored rows, found by cv_audit_verify on a
 * store opened without keys; the checkpoint line format; alerts.
 *
 * The tampering tests play the attacker with write access to the database:
 * they close the store and edit its tables directly (sqlite3 on the file,
 * libpq on the database), as nothing in carevault would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "audit/alerts.h"
#include "audit/audit.h"
#include "core/time.h"
#include "../teststore.h"

#define HASH CV_AUDIT_HASH_BYTES
#define TRAIL_N 20 /* records of the tampering fixture; checkpoints at 10 and 20 */
#define ROWS_MAX 128
#define BASE_US 1700000000000000LL /* the search fixture's clock: 2023-11-14 */

/* The PostgreSQL cluster of the second run (CV_TEST_PG_BASE), NULL in the first (SQLite). */
static const char *pg_base;

typedef struct fx {
	cv_test_store_t ts;
	cv_pool_t pool;
	char cpfile[128]; /* the exported checkpoint file (kept outside the database) */
	int64_t clock;    /* the alert tests' record times */
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	assert_non_null(f);
	cv_test_store_open(&f->ts, "audit", pg_base);
	cv_pool_init(&f->pool, 0);
	snprintf(f->cpfile, sizeof f->cpfile, "%s/checkpoints.log", f->ts.dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	cv_pool_release(&f->pool);
	cv_test_store_close(&f->ts); /* the tampering tests have closed the store already: NULL is fine */
	free(f);
	return 0;
}

/* ---- writing records ------------------------------------------------------ */

/* A read of one resource of one patient, as the REST layer records it. */
static cv_audit_event_t read_event(const char *agent, const char *const *patient, const char *const *entity,
				   int64_t at_us)
{
	return (cv_audit_event_t){ .type = CV_AUDIT_REST, .subtype = "read", .action = 'R', .status = 200,
				   .agent = agent, .agent_kind = "user", .role = "doctor", .address = "192.0.2.7",
				   .request_id = "req-test", .method = "GET", .route = "/fhir/{type}/{id}",
				   .patients = patient, .npatients = patient ? 1 : 0, .entities = entity,
				   .nentities = entity ? 1 : 0, .nres = 1, .at_us = at_us };
}

/* Writes e and waits; returns its position (and its id in f->pool). */
static int64_t put_event(fx_t *f, const cv_audit_event_t *e, const char **id)
{
	cv_store_write_t w;
	assert_int_equal(cv_audit_build(e, &f->pool, &w), CV_OK);
	assert_int_equal(w.op, CV_STORE_AUDIT);
	assert_int_equal(cv_store_write_sync(f->ts.s, &w), CV_OK);
	assert_true(w.audit_pos > 0);
	if (id)
		*id = w.audit->id;
	return w.audit_pos;
}

/* The i-th of a run of plain records: a few agents and patients. */
static int64_t put_plain(fx_t *f, int i)
{
	static const char *const agents[] = { "u-ann", "u-ben", "c-app" };
	const char *patient = cv_pool_printf(&f->pool, "p-%03d", i % 7);
	const char *entity = cv_pool_printf(&f->pool, "Observation/o-%d/_history/1", i);
	cv_audit_event_t e = read_event(agents[i % 3], &patient, &entity, 0);
	return put_event(f, &e, NULL);
}

/* ---- reading the chain ---------------------------------------------------- */

typedef struct rows {
	cv_store_audit_row_t v[ROWS_MAX];
	size_t n;
} rows_t;

static cv_rc keep_row(void *arg, const cv_store_audit_row_t *r)
{
	rows_t *rs = arg;
	assert_true(rs->n < ROWS_MAX);
	rs->v[rs->n++] = *r;
	return CV_OK;
}

/* Every row of s in chain order, bodies as stored (in pool). */
static void scan_all(cv_store_t *s, cv_pool_t *pool, rows_t *out)
{
	out->n = 0;
	assert_int_equal(cv_store_audit_scan(s, 0, ROWS_MAX, true, pool, keep_row, out), CV_OK);
}

/* The chain of s is whole and n long: positions 1..n, each row linked to
 * the one before and hashing to its stored hash, the head its last row. */
static void assert_chain(cv_store_t *s, int64_t n)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	rows_t *rs = calloc(1, sizeof *rs);
	assert_non_null(rs);
	scan_all(s, &pool, rs);
	assert_int_equal(rs->n, n);
	uint8_t prev[HASH] = { 0 }, h[HASH];
	for (size_t i = 0; i < rs->n; i++) {
		const cv_store_audit_row_t *r = &rs->v[i];
		assert_int_equal(r->pos, (int64_t)i + 1);
		assert_memory_equal(r->prev, prev, HASH);
		cv_store_audit_hash(r, h);
		assert_memory_equal(h, r->hash, HASH);
		memcpy(prev, r->hash, HASH);
	}
	int64_t head = -1;
	assert_int_equal(cv_store_audit_head(s, &head, h), CV_OK);
	assert_int_equal(head, n);
	assert_memory_equal(h, prev, HASH);
	free(rs);
	cv_pool_release(&pool);
}

/* ---- 1. appending --------------------------------------------------------- */

static void appended_records_are_chained_in_order(void **state)
{
	fx_t *f = *state;
	int64_t pos;
	uint8_t h[HASH];
	assert_int_equal(cv_store_audit_head(f->ts.s, &pos, h), CV_OK);
	assert_int_equal(pos, 0); /* an empty trail: its head is zeros */
	assert_memory_equal(h, (uint8_t[HASH]){ 0 }, HASH);
	for (int i = 1; i <= 12; i++) {
		assert_int_equal(put_plain(f, i), i);
		assert_chain(f->ts.s, i);
	}
}

#define BURSTS 4
#define BURST 25

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done;
} waiter_t;

typedef struct burst {
	cv_store_t *s;
	waiter_t *wait;
	cv_pool_t pool;
	cv_store_write_t w[BURST];
	int index;
} burst_t;

static void one_done(cv_store_write_t *w)
{
	waiter_t *wt = w->arg;
	pthread_mutex_lock(&wt->mu);
	wt->done++;
	pthread_cond_signal(&wt->cond);
	pthread_mutex_unlock(&wt->mu);
}

/* Builds its records first, then submits them back to back without waiting:
 * with four of these at once, the committer finds many writes queued and
 * commits them as one batch. Returns b when a write could not be
 * submitted (it is counted done, so that the test fails rather than hangs). */
static void *burst_main(void *arg)
{
	burst_t *b = arg;
	bool failed = false;
	for (int i = 0; i < BURST; i++) {
		const char *patient = cv_pool_printf(&b->pool, "p-b%d-%d", b->index, i);
		const char *agent = cv_pool_printf(&b->pool, "u-burst-%d", b->index);
		cv_audit_event_t e = read_event(agent, &patient, NULL, 0);
		cv_rc rc = cv_audit_build(&e, &b->pool, &b->w[i]);
		b->w[i].done = one_done;
		b->w[i].arg = b->wait;
		b->w[i].result = rc;
	}
	for (int i = 0; i < BURST; i++) {
		if (b->w[i].result == CV_OK && cv_store_submit(b->s, &b->w[i]) == CV_OK)
			continue;
		b->w[i].result = CV_E_INTERNAL;
		one_done(&b->w[i]);
		failed = true;
	}
	return failed ? b : NULL;
}

static void concurrent_submissions_share_one_chain(void **state)
{
	fx_t *f = *state;
	assert_int_equal(put_plain(f, 0), 1);
	waiter_t wt = { .done = 0 };
	pthread_mutex_init(&wt.mu, NULL);
	pthread_cond_init(&wt.cond, NULL);
	burst_t *b = calloc(BURSTS, sizeof *b);
	pthread_t th[BURSTS];
	assert_non_null(b);
	for (int i = 0; i < BURSTS; i++) {
		b[i] = (burst_t){ .s = f->ts.s, .wait = &wt, .index = i };
		cv_pool_init(&b[i].pool, 0);
		assert_int_equal(pthread_create(&th[i], NULL, burst_main, &b[i]), 0);
	}
	void *failed[BURSTS];
	for (int i = 0; i < BURSTS; i++)
		assert_int_equal(pthread_join(th[i], &failed[i]), 0);
	/* all done before any assertion can leave: the committer still holds them */
	pthread_mutex_lock(&wt.mu);
	while (wt.done < BURSTS * BURST)
		pthread_cond_wait(&wt.cond, &wt.mu);
	pthread_mutex_unlock(&wt.mu);
	for (int i = 0; i < BURSTS; i++)
		assert_null(failed[i]);
	/* every write has its own position, 2 .. 101, none twice */
	bool seen[BURSTS * BURST + 2] = { false };
	for (int i = 0; i < BURSTS; i++)
		for (int k = 0; k < BURST; k++) {
			const cv_store_write_t *w = &b[i].w[k];
			assert_int_equal(w->result, CV_OK);
			assert_in_range(w->audit_pos, 2, BURSTS * BURST + 1);
			assert_false(seen[w->audit_pos]);
			seen[w->audit_pos] = true;
		}
	assert_chain(f->ts.s, BURSTS * BURST + 1);
	/* and the chain goes on after them */
	assert_int_equal(put_plain(f, 1), BURSTS * BURST + 2);
	assert_chain(f->ts.s, BURSTS * BURST + 2);
	for (int i = 0; i < BURSTS; i++)
		cv_pool_release(&b[i].pool);
	free(b);
	pthread_mutex_destroy(&wt.mu);
	pthread_cond_destroy(&wt.cond);
}

/* ---- 2. a refused transaction ------------------------------------------- */

static const char PATIENT_BODY[] = "{\"resourceType\":\"Patient\",\"id\":\"p-grp\"}";

static void version_write(cv_store_write_t *w, int64_t expect)
{
	*w = (cv_store_write_t){ .op = CV_STORE_PUT_VERSION, .type = "Patient", .id = "p-grp",
				 .expect_version = expect, .updated_us = cv_time_now_us(),
				 .body = (const uint8_t *)PATIENT_BODY, .body_len = sizeof PATIENT_BODY - 1 };
}

/* A record of the write to Patient/p-grp, naming a patient no other record names. */
static void ghost_record(fx_t *f, cv_store_write_t *w)
{
	static const char *const patient[] = { "p-ghost" };
	static const char *const entity[] = { "Patient/p-grp" };
	cv_audit_event_t e = read_event("u-ghost", patient, entity, 0);
	e.subtype = "update";
	e.action = 'U';
	assert_int_equal(cv_audit_build(&e, &f->pool, w), CV_OK);
}

/* A group of a version write expecting `expect` and its record, the record
 * first or last. */
typedef struct group {
	cv_store_write_t g, version, record;
	cv_store_write_t *members[2];
} group_t;

static void group_make(fx_t *f, group_t *gr, int64_t expect, bool record_first)
{
	version_write(&gr->version, expect);
	ghost_record(f, &gr->record);
	gr->members[0] = record_first ? &gr->record : &gr->version;
	gr->members[1] = record_first ? &gr->version : &gr->record;
	gr->g = (cv_store_write_t){ .op = CV_STORE_GROUP, .members = gr->members, .nmembers = 2 };
}

static int64_t current_version(fx_t *f)
{
	cv_store_version_t v;
	assert_int_equal(cv_store_read(f->ts.s, "Patient", "p-grp", 0, &f->pool, &v), CV_OK);
	return v.version;
}

static cv_rc count_hit(void *arg, const cv_store_audit_row_t *r)
{
	(*(int *)arg)++;
	return CV_OK;
}

static int ghost_records(fx_t *f)
{
	int n = 0;
	cv_store_audit_query_t q = { .outcome = -1, .nkeys = 1 };
	q.keys[0] = cv_audit_key_patient(&f->pool, "p-ghost");
	assert_int_equal(cv_store_audit_search(f->ts.s, &q, &f->pool, count_hit, &n), CV_OK);
	return n;
}

static void a_conflicting_group_stores_neither_write_nor_record(void **state)
{
	fx_t *f = *state;
	cv_store_write_t v1;
	version_write(&v1, 0);
	assert_int_equal(cv_store_write_sync(f->ts.s, &v1), CV_OK);
	assert_int_equal(put_plain(f, 0), 1);
	/* expect_version 0 is stale (the resource is at 1): the group fails whole,
	 * whichever member comes first */
	for (int first = 0; first < 2; first++) {
		group_t gr;
		group_make(f, &gr, 0, first);
		assert_int_equal(cv_store_write_sync(f->ts.s, &gr.g), CV_E_CONFLICT);
		assert_int_equal(gr.version.result, CV_E_CONFLICT);
		assert_int_equal(gr.record.result, CV_E_ABORTED);
	}
	assert_int_equal(current_version(f), 1);
	assert_int_equal(ghost_records(f), 0);
	assert_chain(f->ts.s, 1);
	assert_int_equal(put_plain(f, 1), 2); /* no gap */
	assert_chain(f->ts.s, 2);
}

/* A companion as net/ and cli/ set one (audit/note.c): a record for each
 * version of Patient/p-grp; fails on demand. */
typedef struct companion_fx {
	fx_t *f;
	int asked;          /* times the store asked for a record */
	bool fail;          /* the record cannot be made */
	bool bad_record;    /* the record is made but the store refuses it */
	cv_store_write_t rec[4];
} companion_fx_t;

static cv_rc ghost_companion(void *arg, const cv_store_write_t *w, cv_store_write_t **rec)
{
	companion_fx_t *c = arg;
	*rec = NULL;
	if (w->op != CV_STORE_PUT_VERSION || strcmp(w->id, "p-grp") != 0)
		return CV_OK; /* not the write the record is about */
	if (c->fail)
		return CV_E_NOMEM;
	assert_true(c->asked < 4);
	cv_store_write_t *r = &c->rec[c->asked++];
	ghost_record(c->f, r);
	if (c->bad_record)
		r->audit = NULL; /* refused when the store prepares it */
	*rec = r;
	return CV_OK;
}

/* "A write and its record commit in one transaction" for writes made where
 * the request is not known (an account written by auth/ for the admin API):
 * the companion's record commits with the write, or neither does. */
static void a_companion_record_commits_with_its_write_or_neither_does(void **state)
{
	fx_t *f = *state;
	companion_fx_t c = { .f = f };
	cv_store_write_t v;
	/* a write the record is not about commits alone */
	cv_store_write_t other = { .op = CV_STORE_PUT_VERSION, .type = "Patient", .id = "p-other",
				   .updated_us = cv_time_now_us(), .body = (const uint8_t *)PATIENT_BODY,
				   .body_len = sizeof PATIENT_BODY - 1 };
	cv_store_companion_set(ghost_companion, &c);
	assert_int_equal(cv_store_write_sync(f->ts.s, &other), CV_OK);
	assert_int_equal(c.asked, 0);
	/* the record cannot be made: the write fails, unwritten */
	c.fail = true;
	version_write(&v, 0);
	assert_int_equal(cv_store_write_sync(f->ts.s, &v), CV_E_NOMEM);
	/* the store refuses the record: the write fails with it */
	c.fail = false;
	c.bad_record = true;
	version_write(&v, 0);
	assert_int_not_equal(cv_store_write_sync(f->ts.s, &v), CV_OK);
	assert_int_equal(ghost_records(f), 0);
	cv_store_version_t cur;
	assert_int_equal(cv_store_read(f->ts.s, "Patient", "p-grp", 0, &f->pool, &cur), CV_E_NOTFOUND);
	/* a conflict (stale version): neither commits; the retry asks again and both commit */
	c.bad_record = false;
	version_write(&v, 3);
	assert_int_equal(cv_store_write_sync(f->ts.s, &v), CV_E_CONFLICT);
	assert_int_equal(c.rec[1].result, CV_E_ABORTED);
	assert_int_equal(ghost_records(f), 0);
	version_write(&v, 0);
	assert_int_equal(cv_store_write_sync(f->ts.s, &v), CV_OK);
	assert_int_equal(c.asked, 3);
	assert_int_equal(c.rec[2].result, CV_OK);
	assert_int_equal(current_version(f), 1);
	assert_int_equal(ghost_records(f), 1);
	/* one record a request: the companion is done */
	version_write(&v, 1);
	assert_int_equal(cv_store_write_sync(f->ts.s, &v), CV_OK);
	assert_int_equal(c.asked, 3);
	assert_int_equal(ghost_records(f), 1);
	assert_chain(f->ts.s, 1);
	cv_store_companion_clear();
}

static void a_conflicting_group_inside_a_batch_leaves_no_gap(void **state)
{
	fx_t *f = *state;
	cv_store_write_t v1;
	version_write(&v1, 0);
	assert_int_equal(cv_store_write_sync(f->ts.s, &v1), CV_OK);
	/* records and failing groups queued together: the SQLite back end redoes
	 * the batch without the group, PostgreSQL rolls back to a savepoint; in
	 * both the chain must not keep the positions the group's record took */
	waiter_t wt = { .done = 0 };
	pthread_mutex_init(&wt.mu, NULL);
	pthread_cond_init(&wt.cond, NULL);
	cv_store_write_t rec[3];
	group_t gr[2];
	cv_store_write_t *order[5] = { &rec[0], &gr[0].g, &rec[1], &gr[1].g, &rec[2] };
	for (int i = 0; i < 3; i++) {
		const char *patient = cv_pool_printf(&f->pool, "p-batch-%d", i);
		cv_audit_event_t e = read_event("u-batch", &patient, NULL, 0);
		assert_int_equal(cv_audit_build(&e, &f->pool, &rec[i]), CV_OK);
	}
	group_make(f, &gr[0], 0, true);
	group_make(f, &gr[1], 0, false);
	cv_rc submitted[5];
	for (int i = 0; i < 5; i++) {
		order[i]->done = one_done;
		order[i]->arg = &wt;
		if ((submitted[i] = cv_store_submit(f->ts.s, order[i])) != CV_OK)
			one_done(order[i]); /* counted, so that the test fails rather than hangs */
	}
	pthread_mutex_lock(&wt.mu);
	while (wt.done < 5)
		pthread_cond_wait(&wt.cond, &wt.mu);
	pthread_mutex_unlock(&wt.mu);
	for (int i = 0; i < 5; i++)
		assert_int_equal(submitted[i], CV_OK);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rec[i].result, CV_OK);
		assert_int_equal(rec[i].audit_pos, i + 1);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(gr[i].g.result, CV_E_CONFLICT);
		assert_int_equal(gr[i].record.result, CV_E_ABORTED);
	}
	assert_int_equal(ghost_records(f), 0);
	assert_chain(f->ts.s, 3);
	/* a group that holds commits both, its record next in the chain */
	group_t ok;
	group_make(f, &ok, 1, false);
	assert_int_equal(cv_store_write_sync(f->ts.s, &ok.g), CV_OK);
	assert_int_equal(ok.record.audit_pos, 4);
	assert_int_equal(current_version(f), 2);
	assert_int_equal(ghost_records(f), 1);
	assert_chain(f->ts.s, 4);
	pthread_mutex_destroy(&wt.mu);
	pthread_cond_destroy(&wt.cond);
}

/* ---- 3. searching --------------------------------------------------------- */

typedef struct hits {
	int64_t pos[ROWS_MAX];
	size_t n;
	const char *need; /* text every body must hold */
} hits_t;

/* A search result: its body opened, a valid AuditEvent with the row's id. */
static cv_rc hit(void *arg, const cv_store_audit_row_t *r)
{
	hits_t *h = arg;
	assert_true(h->n < ROWS_MAX);
	h->pos[h->n++] = r->pos;
	assert_int_equal(strlen((const char *)r->body), r->body_len);
	json_object *o = json_tokener_parse((const char *)r->body), *v;
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "resourceType", &v));
	assert_string_equal(json_object_get_string(v), "AuditEvent");
	assert_true(json_object_object_get_ex(o, "id", &v));
	assert_string_equal(json_object_get_string(v), r->id);
	json_object_put(o);
	if (h->need)
		assert_non_null(strstr((const char *)r->body, h->need));
	return CV_OK;
}

/* A query that filters on nothing yet (outcome 0 would mean success only). */
static cv_store_audit_query_t any(void)
{
	return (cv_store_audit_query_t){ .outcome = -1 };
}

static void expect(fx_t *f, const cv_store_audit_query_t *q, const char *need, const int64_t *want, size_t n)
{
	hits_t h = { .need = need };
	assert_int_equal(cv_audit_search(f->ts.s, q, &f->pool, hit, &h), CV_OK);
	assert_int_equal(h.n, n);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(h.pos[i], want[i]);
}

#define EXPECT(f, q, need, ...)                                                                                      \
	expect(f, q, need, (const int64_t[]){ __VA_ARGS__ }, sizeof((const int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t))
#define EXPECT_NONE(f, q) expect(f, q, NULL, NULL, 0)

/* Five records of distinct shape, then twelve of one pager (positions 6..17). */
static const char *search_fixture(fx_t *f)
{
	const char *id3;
	cv_audit_event_t e = read_event("u-alice", (const char *[]){ "p-001" },
					(const char *[]){ "Observation/o-1/_history/2" }, BASE_US + 1000000);
	assert_int_equal(put_event(f, &e, NULL), 1);
	e = read_event("u-bob", (const char *[]){ "p-001", "p-002" }, (const char *[]){ "Observation/o-2" },
		       BASE_US + 2000000);
	e.npatients = 2;
	e.subtype = "search-type";
	e.query = "subject=Patient/p-001";
	assert_int_equal(put_event(f, &e, NULL), 2);
	e = read_event("u-alice", (const char *[]){ "p-002" }, (const char *[]){ "Observation/o-1/_history/3" },
		       BASE_US + 3000000);
	e.subtype = "update";
	e.action = 'U';
	e.status = 409;
	e.outcome = cv_audit_outcome(409);
	assert_int_equal(put_event(f, &e, &id3), 3);
	e = read_event("u-carol", (const char *[]){ "p-003" }, (const char *[]){ "Observation/o-3" },
		       BASE_US + 4000000);
	e.flags = CV_AUDIT_F_BREAK_GLASS;
	e.reason = "unconscious on arrival";
	assert_int_equal(put_event(f, &e, NULL), 4);
	e = read_event("u-alice", (const char *[]){ "p-003" }, NULL, BASE_US + 5000000);
	e.flags = CV_AUDIT_F_DENIED;
	e.status = 403;
	e.outcome = cv_audit_outcome(403);
	e.outcome_text = "denied by policy: no relationship";
	assert_int_equal(put_event(f, &e, NULL), 5);
	for (int i = 0; i < 12; i++) {
		e = read_event("u-pager", (const char *[]){ "p-009" }, NULL, BASE_US + (10 + i) * 1000000LL);
		assert_int_equal(put_event(f, &e, NULL), 6 + i);
	}
	return id3;
}

static void the_trail_is_searched_by_patient_entity_and_agent(void **state)
{
	fx_t *f = *state;
	search_fixture(f);
	cv_store_audit_query_t q = any();
	q.nkeys = 1;
	q.keys[0] = cv_audit_key_patient(&f->pool, "p-001");
	EXPECT(f, &q, "\"Patient/p-001\"", 2, 1); /* newest first */
	q.keys[0] = cv_audit_key_patient(&f->pool, "p-003");
	EXPECT(f, &q, "\"Patient/p-003\"", 5, 4);
	q.keys[0] = cv_audit_key_patient(&f->pool, "p-404");
	EXPECT_NONE(f, &q);
	/* an entity key is versionless: it finds the records of every version */
	q.keys[0] = cv_audit_key_entity(&f->pool, "Observation/o-1");
	EXPECT(f, &q, "Observation/o-1/_history/", 3, 1);
	q.keys[0] = cv_audit_key_entity(&f->pool, "Observation/o-1/_history/2");
	EXPECT(f, &q, NULL, 3, 1);
	/* a patient key does not match an entity key of the same text */
	q.keys[0] = cv_audit_key_entity(&f->pool, "p-001");
	EXPECT_NONE(f, &q);
	/* keys are ANDed */
	q.nkeys = 2;
	q.keys[0] = cv_audit_key_patient(&f->pool, "p-002");
	q.keys[1] = cv_audit_key_entity(&f->pool, "Observation/o-2");
	EXPECT(f, &q, "\"Patient/p-002\"", 2);
	q = any();
	q.agent = "u-alice";
	EXPECT(f, &q, "u-alice", 5, 3, 1);
	q.agent = "u-nobody";
	EXPECT_NONE(f, &q);
}

static void the_trail_is_searched_by_action_outcome_flags_and_date(void **state)
{
	fx_t *f = *state;
	const char *id3 = search_fixture(f);
	cv_store_audit_query_t q = any();
	q.action = 'U';
	EXPECT(f, &q, "\"action\":\"U\"", 3);
	q = any();
	q.outcome = 4;
	EXPECT(f, &q, "\"outcome\":\"4\"", 5, 3);
	q.agent = "u-alice";
	q.outcome = 0;
	EXPECT(f, &q, NULL, 1);
	q = any();
	q.flags = CV_AUDIT_F_BREAK_GLASS;
	EXPECT(f, &q, "unconscious on arrival", 4); /* the sealed reason comes back opened */
	q.flags = CV_AUDIT_F_BREAK_GLASS | CV_AUDIT_F_DENIED; /* all the flags asked for */
	EXPECT_NONE(f, &q);
	q.flags = CV_AUDIT_F_DENIED;
	EXPECT(f, &q, "denied by policy", 5);
	q = any();
	q.from_us = BASE_US + 2000000;
	q.to_us = BASE_US + 4000000;
	EXPECT(f, &q, NULL, 4, 3, 2);
	q.ascending = true;
	EXPECT(f, &q, NULL, 2, 3, 4);
	q = any();
	q.kind = "rest";
	q.subtype = "update";
	EXPECT(f, &q, NULL, 3);
	q = any();
	q.id = id3;
	EXPECT(f, &q, id3, 3);
	q.id = "00000000-0000-4000-8000-000000000000";
	EXPECT_NONE(f, &q);
}

static void the_trail_pages_newest_first_with_before_pos(void **state)
{
	fx_t *f = *state;
	search_fixture(f);
	cv_store_audit_query_t q = any();
	q.agent = "u-pager";
	q.limit = 5;
	EXPECT(f, &q, "\"Patient/p-009\"", 17, 16, 15, 14, 13);
	q.before_pos = 13;
	EXPECT(f, &q, NULL, 12, 11, 10, 9, 8);
	q.before_pos = 8;
	EXPECT(f, &q, NULL, 7, 6);
	q.before_pos = 6;
	EXPECT_NONE(f, &q);
	/* exports page the other way */
	q = any();
	q.after_pos = 15;
	q.ascending = true;
	EXPECT(f, &q, NULL, 16, 17);
}

static cv_store_t *open_raw(fx_t *f)
{
	cv_store_t *s = NULL;
	char err[256] = "";
	assert_int_equal(cv_store_open_raw(f->ts.dir, f->ts.url, &s, err, sizeof err), CV_OK);
	return s;
}

static bool contains(const uint8_t *p, size_t len, const char *text)
{
	size_t n = strlen(text);
	for (size_t i = 0; i + n <= len; i++)
		if (memcmp(p + i, text, n) == 0)
			return true;
	return false;
}

/* The store opened without keys reads the chain as stored but opens nothing. */
static void a_raw_store_scans_but_cannot_search(void **state)
{
	fx_t *f = *state;
	search_fixture(f);
	cv_store_close(f->ts.s);
	f->ts.s = NULL;
	cv_store_t *raw = open_raw(f);
	cv_store_audit_query_t q = any();
	int n = 0;
	assert_int_equal(cv_store_audit_search(raw, &q, &f->pool, count_hit, &n), CV_E_INVALID);
	assert_int_equal(n, 0);
	rows_t *rs = calloc(1, sizeof *rs);
	assert_non_null(rs);
	scan_all(raw, &f->pool, rs);
	assert_int_equal(rs->n, 17);
	for (size_t i = 0; i < rs->n; i++) {
		const cv_store_audit_row_t *r = &rs->v[i];
		assert_true(r->body_len > 0);
		/* sealed: none of the AuditEvent's text shows */
		assert_false(contains(r->body, r->body_len, "AuditEvent"));
		assert_false(contains(r->body, r->body_len, "p-00"));
	}
	assert_string_equal(rs->v[0].agent, "u-alice");
	assert_int_equal(rs->v[0].npat, 1);
	assert_int_equal(rs->v[1].npat, 2);
	assert_int_equal(rs->v[1].keys_len, 3 * CV_AUDIT_KEY_BYTES); /* two patients, one entity */
	assert_chain(raw, 17);
	free(rs);
	cv_store_close(raw);
}

/* ---- 4. tampering --------------------------------------------------------- */

static void trail_config(const fx_t *f, cv_audit_config_t *cfg)
{
	*cfg = (cv_audit_config_t){ .checkpoint_records = 1000, .checkpoint_seconds = 3600,
				    .checkpoint_file = f->cpfile, .site = "test" };
}

/* The store's trail, as a server runs it, with trail_config's settings. */
static cv_audit_t *open_trail(fx_t *f)
{
	cv_audit_config_t cfg;
	cv_audit_t *a = NULL;
	char err[256] = "";
	trail_config(f, &cfg);
	assert_int_equal(cv_audit_new(f->ts.s, f->ts.master, &cfg, &a, err, sizeof err), CV_OK);
	return a;
}

/* TRAIL_N records with signed checkpoints at 10 and 20, copied to the
 * file; then the store is closed, for the attacker to work on. */
static int trail_setup(void **state)
{
	setup(state);
	fx_t *f = *state;
	cv_audit_t *a = open_trail(f);
	assert_int_equal(cv_audit_checkpoint_now(a), CV_OK); /* nothing to sign yet: no checkpoint */
	for (int i = 1; i <= TRAIL_N; i++) {
		assert_int_equal(put_plain(f, i), i);
		if (i == 10 || i == TRAIL_N)
			assert_int_equal(cv_audit_checkpoint_now(a), CV_OK);
	}
	assert_int_equal(cv_audit_checkpoint_now(a), CV_OK); /* nothing new: no third one */
	cv_audit_free(a);
	cv_store_close(f->ts.s);
	f->ts.s = NULL;
	return 0;
}

/* Direct access to the database, as an attacker has it. */
typedef struct db {
	sqlite3 *lite;
	PGconn *pg;
} db_t;

static db_t db_open(const fx_t *f)
{
	db_t d = { 0 };
	if (f->ts.url[0]) {
		d.pg = PQconnectdb(f->ts.url);
		assert_int_equal(PQstatus(d.pg), CONNECTION_OK);
	} else {
		char path[128];
		snprintf(path, sizeof path, "%s/store.db", f->ts.dir);
		assert_int_equal(sqlite3_open_v2(path, &d.lite, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	}
	return d;
}

static void db_close(db_t *d)
{
	if (d->pg)
		PQfinish(d->pg);
	if (d->lite)
		assert_int_equal(sqlite3_close(d->lite), SQLITE_OK);
}

/* Runs one statement, with blob (if not NULL) as its parameter $1 (a named
 * parameter to SQLite, a bytea to PostgreSQL). */
static void db_run(db_t *d, const char *sql, const void *blob, size_t len)
{
	if (d->pg) {
		const Oid bytea = 17;
		const char *vals[1] = { blob };
		int lens[1] = { (int)len }, fmts[1] = { 1 };
		PGresult *r = PQexecParams(d->pg, sql, blob ? 1 : 0, &bytea, vals, lens, fmts, 0);
		ExecStatusType st = PQresultStatus(r);
		if (st != PGRES_COMMAND_OK)
			print_error("%s: %s\n", sql, PQerrorMessage(d->pg));
		assert_int_equal(st, PGRES_COMMAND_OK);
		PQclear(r);
		return;
	}
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(d->lite, sql, -1, &st, NULL) != SQLITE_OK)
		print_error("%s: %s\n", sql, sqlite3_errmsg(d->lite));
	assert_non_null(st);
	if (blob)
		assert_int_equal(sqlite3_bind_blob(st, 1, blob, (int)len, SQLITE_TRANSIENT), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
}

__attribute__((format(printf, 2, 3))) static void db_exec(db_t *d, const char *fmt, ...)
{
	char sql[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(sql, sizeof sql, fmt, ap);
	va_end(ap);
	assert_in_range(n, 1, sizeof sql - 1);
	db_run(d, sql, NULL, 0);
}

/* The rows as stored, read through a store opened without keys. */
static void load_rows(fx_t *f, rows_t *rs)
{
	cv_store_t *raw = open_raw(f);
	scan_all(raw, &f->pool, rs);
	cv_store_close(raw);
	assert_int_equal(rs->n, TRAIL_N);
}

/* cv_audit_verify on a store opened without keys, as `carevault audit verify` does. */
static cv_rc verify_rc(fx_t *f, const char *file, cv_audit_verdict_t *v)
{
	cv_store_t *raw = open_raw(f);
	cv_rc rc = cv_audit_verify(raw, file, NULL, NULL, v);
	cv_store_close(raw);
	return rc;
}

static cv_audit_verdict_t verify(fx_t *f, bool with_file)
{
	cv_audit_verdict_t v;
	assert_int_equal(verify_rc(f, with_file ? f->cpfile : NULL, &v), CV_OK);
	return v;
}

static void assert_found(const cv_audit_verdict_t *v, int64_t bad_pos, const char *says)
{
	if (v->ok || v->bad_pos != bad_pos || !strstr(v->what, says))
		print_error("verdict: ok %d, bad_pos %lld (want %lld): %s\n", v->ok, (long long)v->bad_pos,
			    (long long)bad_pos, v->what);
	assert_false(v->ok);
	assert_int_equal(v->bad_pos, bad_pos);
	assert_non_null(strstr(v->what, says));
}

static void an_untouched_trail_verifies(void **state)
{
	fx_t *f = *state;
	rows_t *rs = calloc(1, sizeof *rs);
	assert_non_null(rs);
	load_rows(f, rs);
	char head[2 * HASH + 1];
	cv_crypto_hex(rs->v[TRAIL_N - 1].hash, HASH, head);
	cv_audit_verdict_t v = verify(f, false);
	assert_true(v.ok);
	assert_int_equal(v.records, TRAIL_N);
	assert_int_equal(v.checkpoints, 2);
	assert_int_equal(v.bad_pos, 0);
	assert_string_equal(v.head, head);
	assert_non_null(strstr(v.what, "whole"));
	v = verify(f, true);
	assert_true(v.ok);
	assert_int_equal(v.records, TRAIL_N);
	assert_int_equal(v.checkpoints, 4); /* the store's two and the file's two */
	free(rs);
}

static void an_edited_body_byte_is_found(void **state)
{
	fx_t *f = *state;
	rows_t *rs = calloc(1, sizeof *rs);
	assert_non_null(rs);
	load_rows(f, rs);
	const cv_store_audit_row_t *r = &rs->v[6];
	uint8_t *body = malloc(r->body_len);
	assert_non_null(body);
	memcpy(body, r->body, r->body_len);
	body[r->body_len / 2] ^= 0x01;
	db_t d = db_open(f);
	db_run(&d, "UPDATE cv_audit SET body = $1 WHERE pos = 7", body, r->body_len);
	db_close(&d);
	cv_audit_verdict_t v = verify(f, true);
	assert_found(&v, 7, "altered");
	assert_int_equal(v.records, 6); /* the walk stopped there */
	free(body);
	free(rs);
}

static void an_edited_field_is_found(void **state)
{
	fx_t *f = *state;
	db_t d = db_open(f);
	db_exec(&d, "UPDATE cv_audit SET flags = flags | %d WHERE pos = 12", CV_AUDIT_F_BREAK_GLASS);
	db_close(&d);
	cv_audit_verdict_t v = verify(f, false);
	assert_found(&v, 12, "altered");
}

/* The attacker runs sql on the database; verify (with the checkpoint file)
 * names record pos, saying `says`. */
static void tampered(fx_t *f, const char *sql, int64_t pos, const char *says)
{
	db_t d = db_open(f);
	db_exec(&d, "%s", sql);
	db_close(&d);
	cv_audit_verdict_t v = verify(f, true);
	assert_found(&v, pos, says);
}

static void a_deleted_record_is_found(void **state)
{
	tampered(*state, "DELETE FROM cv_audit WHERE pos = 7", 7, "missing");
}

/* Hiding a record from a patient's searches and access report: its rows in
 * the search-key table are deleted, the record itself left whole. */
static void a_deleted_search_key_is_found(void **state)
{
	tampered(*state, "DELETE FROM cv_audit_key WHERE pos = 5", 5, "missing from the search-key table");
}

/* Tying a record to a patient it is not about (it would show in their
 * access report): a row added to the search-key table. */
static void an_added_search_key_is_found(void **state)
{
	fx_t *f = *state;
	static const uint8_t other[CV_AUDIT_KEY_BYTES] = { 0xc0, 0xff, 0xee, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 };
	db_t d = db_open(f);
	db_run(&d, "INSERT INTO cv_audit_key (k, pos) VALUES ($1, 4)", other, sizeof other);
	db_close(&d);
	cv_audit_verdict_t v = verify(f, true);
	assert_found(&v, 4, "does not name");
}

static void an_inserted_record_is_found(void **state)
{
	fx_t *f = *state;
	db_t d = db_open(f);
	/* make room at 7, highest first (the primary key is checked row by row) */
	for (int pos = TRAIL_N; pos >= 7; pos--)
		db_exec(&d, "UPDATE cv_audit SET pos = %d WHERE pos = %d", pos + 1, pos);
	db_exec(&d, "INSERT INTO cv_audit (pos, at_us, action, outcome, flags, kind, subtype, agent, id, nres, keys, "
		    "body, prev, hash, npat) SELECT 7, at_us, action, outcome, flags, kind, subtype, agent, id, nres, "
		    "keys, body, prev, hash, npat FROM cv_audit WHERE pos = 3");
	db_close(&d);
	cv_audit_verdict_t v = verify(f, true);
	assert_found(&v, 7, "inserted");
}

static void swapped_records_are_found(void **state)
{
	fx_t *f = *state;
	db_t d = db_open(f);
	/* every column but the position changes places */
	db_exec(&d, "UPDATE cv_audit SET pos = -1 WHERE pos = 5");
	db_exec(&d, "UPDATE cv_audit SET pos = 5 WHERE pos = 12");
	db_exec(&d, "UPDATE cv_audit SET pos = 12 WHERE pos = -1");
	db_close(&d);
	cv_audit_verdict_t v = verify(f, false);
	assert_found(&v, 5, "moved");
}

/* A value stored in another form than the store writes (another SQLite
 * type, a NUL and more bytes, a number past its C type, a longer action)
 * reads back through C as the original, so its hash still matches, while
 * SQL comparisons see the stored form: searches and access reports would
 * miss the record. Each is named; undone, the next one is. */
static void a_field_stored_in_another_form_is_found(void **state)
{
	fx_t *f = *state;
	db_t d = db_open(f);
	bool lite = d.lite != NULL;
	typedef struct form {
		int64_t pos;
		const char *edit, *undo;
		bool lite_only;
	} form_t;
	static const form_t forms[] = {
		{ 12, "UPDATE cv_audit SET outcome = outcome + 4294967296 WHERE pos = 12",
		  "UPDATE cv_audit SET outcome = outcome - 4294967296 WHERE pos = 12", false },
		{ 13, "UPDATE cv_audit SET action = action || 'x' WHERE pos = 13",
		  "UPDATE cv_audit SET action = substr(action, 1, 1) WHERE pos = 13", false },
		{ 14, "UPDATE cv_audit SET flags = flags + 4294967296 WHERE pos = 14",
		  "UPDATE cv_audit SET flags = flags - 4294967296 WHERE pos = 14", false },
		{ 15, "UPDATE cv_audit SET agent = CAST(agent AS BLOB) WHERE pos = 15",
		  "UPDATE cv_audit SET agent = CAST(agent AS TEXT) WHERE pos = 15", true },
		{ 16, "UPDATE cv_audit SET id = id || char(0) || 'x' WHERE pos = 16",
		  "UPDATE cv_audit SET id = CAST(substr(CAST(id AS BLOB), 1, 36) AS TEXT) WHERE pos = 16", true },
		{ 17, "UPDATE cv_audit SET at_us = CAST(at_us AS TEXT) || 'x' WHERE pos = 17",
		  "UPDATE cv_audit SET at_us = CAST(substr(at_us, 1, length(at_us) - 1) AS INTEGER) WHERE pos = 17", true },
		{ 18, "UPDATE cv_audit SET body = CAST(body AS TEXT) WHERE pos = 18",
		  "UPDATE cv_audit SET body = CAST(body AS BLOB) WHERE pos = 18", true },
	};
	size_t n = sizeof forms / sizeof forms[0];
	for (size_t i = 0; i < n; i++)
		if (lite || !forms[i].lite_only)
			db_exec(&d, "%s", forms[i].edit);
	db_close(&d);
	for (size_t i = 0; i < n; i++) {
		if (!lite && forms[i].lite_only)
			continue;
		cv_audit_verdict_t v = verify(f, true);
		assert_found(&v, forms[i].pos, "stored as another type");
		d = db_open(f);
		db_exec(&d, "%s", forms[i].undo);
		db_close(&d);
	}
	cv_audit_verdict_t v = verify(f, true);
	if (!v.ok)
		print_error("%s\n", v.what);
	assert_true(v.ok);
}

/* After an archive the walk starts past its base, but searches have no
 * lower bound: a record put at or before the base (a copy of a later one,
 * say) would be served and never checked. So would a search-key row at or
 * before the base, or past the last record. */
static void a_record_below_the_base_or_a_key_past_the_end_is_found(void **state)
{
	fx_t *f = *state;
	/* each edit puts a row at `at`: "<pre><at><post>"; undone by "<undo><at>" */
	static const char *const copy_9[2] = { "INSERT INTO cv_audit (pos, at_us, action, outcome, flags, kind, subtype, "
					       "agent, id, nres, keys, body, prev, hash, npat) SELECT ",
					       ", at_us, action, outcome, flags, kind, subtype, 'u-framed', id, nres, keys, "
					       "body, prev, hash, npat FROM cv_audit WHERE pos = 9" };
	static const char *const key_5[2] = { "INSERT INTO cv_audit_key (k, pos) SELECT k, ",
					      " FROM cv_audit_key WHERE pos = 5" };
	typedef struct step {
		const char *const *edit;
		const char *undo;
		int at;
		const char *says;
	} step_t;
	static const step_t steps[] = {
		{ key_5, "DELETE FROM cv_audit_key WHERE pos = ", TRAIL_N + 1, "past its last record" },
		{ key_5, "DELETE FROM cv_audit_key WHERE pos = ", 0, "at or before the trail's start" }, /* 0 is named */
		{ copy_9, "DELETE FROM cv_audit WHERE pos = ", -3, "at or before the trail's start" },
		/* a copy far past the head, after a gap: named where it is, not as records deleted */
		{ copy_9, "DELETE FROM cv_audit WHERE pos = ", 5000, "past the store's head" },
	};
	for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		db_t d = db_open(f);
		db_exec(&d, "%s%d%s", steps[i].edit[0], steps[i].at, steps[i].edit[1]);
		db_close(&d);
		cv_audit_verdict_t v = verify(f, true);
		assert_found(&v, steps[i].at, steps[i].says);
		assert_true(v.named);
		d = db_open(f);
		db_exec(&d, "%s%d", steps[i].undo, steps[i].at);
		db_close(&d);
	}
	cv_audit_verdict_t v = verify(f, true);
	assert_true(v.ok);
}

static void a_truncated_tail_is_found_by_the_head(void **state)
{
	fx_t *f = *state;
	db_t d = db_open(f);
	db_exec(&d, "DELETE FROM cv_audit WHERE pos > %d", TRAIL_N - 3);
	db_close(&d);
	cv_audit_verdict_t v = verify(f, false);
	assert_found(&v, TRAIL_N - 2, "truncated");
	assert_int_equal(v.records, TRAIL_N - 3);
}

static void a_removed_head_row_fails_verification(void **state)
{
	fx_t *f = *state;
	/* without its head row the store cannot append (nor serve), and the
	 * verifier cannot check where the trail should end: that is not whole */
	db_t d = db_open(f);
	db_exec(&d, "DELETE FROM cv_audit WHERE pos > %d", TRAIL_N - 3);
	db_exec(&d, "DELETE FROM cv_audit_head");
	db_exec(&d, "DELETE FROM cv_audit_checkpoint WHERE pos > %d", TRAIL_N - 3);
	db_close(&d);
	cv_audit_verdict_t v = verify(f, false);
	if (v.ok)
		print_error("verdict: %s\n", v.what);
	assert_false(v.ok);
	assert_non_null(strstr(v.what, "head"));
}

/* Removes the tail past `keep` and leaves the store consistent with it:
 * the head row set to the last kept record, the store's checkpoints past it
 * deleted. */
static void cut_tail_cleanly(fx_t *f, int keep)
{
	rows_t *rs = calloc(1, sizeof *rs);
	assert_non_null(rs);
	load_rows(f, rs);
	db_t d = db_open(f);
	db_exec(&d, "DELETE FROM cv_audit WHERE pos > %d", keep);
	db_run(&d, "UPDATE cv_audit_head SET hash = $1 WHERE one = 1", rs->v[keep - 1].hash, HASH);
	db_exec(&d, "UPDATE cv_audit_head SET pos = %d WHERE one = 1", keep);
	db_exec(&d, "DELETE FROM cv_audit_checkpoint WHERE pos > %d", keep);
	db_close(&d);
	free(rs);
}

static void a_clean_truncation_is_found_only_by_the_checkpoint_file(void **state)
{
	fx_t *f = *state;
	cut_tail_cleanly(f, TRAIL_N - 3);
	/* the cut records' search keys left behind give it away */
	cv_audit_verdict_t v = verify(f, false);
	assert_found(&v, TRAIL_N - 2, "past its last record");
	db_t d = db_open(f);
	db_exec(&d, "DELETE FROM cv_audit_key WHERE pos > %d", TRAIL_N - 3);
	db_close(&d);
	/* Everything in the database agrees with the shorter trail, and a hash
	 * chain cannot tell a cut tail from a trail that ended there: only a
	 * checkpoint the attacker could not reach shows it. That is why the
	 * checkpoint file (and syslog, and the URL) is kept outside the
	 * database, on another machine or medium. */
	v = verify(f, false);
	assert_true(v.ok);
	assert_int_equal(v.records, TRAIL_N - 3);
	v = verify(f, true);
	assert_found(&v, TRAIL_N - 2, "the file's");
	assert_non_null(strstr(v.what, "truncated"));
}

/* Rewrites record `pos` (its agent) and recomputes the chain after it and
 * the head, as an attacker who knows the hash encoding does: the chain is
 * whole again, only a signed checkpoint can tell. */
static void rewrite_and_rechain(fx_t *f, int pos)
{
	rows_t *rs = calloc(1, sizeof *rs);
	assert_non_null(rs);
	load_rows(f, rs);
	db_t d = db_open(f);
	rs->v[pos - 1].agent = "u-scapegoat";
	db_exec(&d, "UPDATE cv_audit SET agent = 'u-scapegoat' WHERE pos = %d", pos);
	for (size_t i = (size_t)pos - 1; i < rs->n; i++) {
		cv_store_audit_row_t *r = &rs->v[i];
		memcpy(r->prev, rs->v[i - 1].hash, HASH);
		cv_store_audit_hash(r, r->hash);
		char sql[128];
		snprintf(sql, sizeof sql, "UPDATE cv_audit SET prev = $1 WHERE pos = %lld", (long long)r->pos);
		db_run(&d, sql, r->prev, HASH);
		snprintf(sql, sizeof sql, "UPDATE cv_audit SET hash = $1 WHERE pos = %lld", (long long)r->pos);
		db_run(&d, sql, r->hash, HASH);
	}
	db_run(&d, "UPDATE cv_audit_head SET hash = $1 WHERE one = 1", rs->v[rs->n - 1].hash, HASH);
	db_close(&d);
	free(rs);
}

static void a_rewritten_and_rechained_trail_is_found_by_a_checkpoint(void **state)
{
	fx_t *f = *state;
	rewrite_and_rechain(f, 15);
	/* the store's checkpoint at 20 no longer matches; the one at 10 does:
	 * the rewrite lies in 11..20 */
	cv_audit_verdict_t v = verify(f, false);
	assert_found(&v, 11, "rewritten");
	/* the attacker deletes the store's checkpoint too: the file's remains */
	db_t d = db_open(f);
	db_exec(&d, "DELETE FROM cv_audit_checkpoint WHERE pos > 10");
	db_close(&d);
	v = verify(f, false);
	assert_true(v.ok); /* why the file is kept elsewhere (as above) */
	v = verify(f, true);
	assert_found(&v, 11, "the file's");
}

/* The checkpoint file's lines. */
static size_t read_file_checkpoints(const fx_t *f, cv_store_checkpoint_t *out, size_t max)
{
	FILE *fp = fopen(f->cpfile, "r");
	assert_non_null(fp);
	char line[1024];
	size_t n = 0;
	while (fgets(line, sizeof line, fp)) {
		assert_true(n < max);
		size_t len = strcspn(line, "\n");
		assert_int_equal(cv_audit_checkpoint_parse(line, len, &out[n++]), CV_OK);
	}
	fclose(fp);
	return n;
}

static void write_file_checkpoints(const fx_t *f, const cv_store_checkpoint_t *c, size_t n)
{
	FILE *fp = fopen(f->cpfile, "w");
	assert_non_null(fp);
	for (size_t i = 0; i < n; i++) {
		cv_buf_t line;
		cv_buf_init(&line, 4096);
		assert_int_equal(cv_audit_checkpoint_line(&c[i], &line), CV_OK);
		fprintf(fp, "%s\n", line.data);
		cv_buf_release(&line);
	}
	assert_int_equal(fclose(fp), 0);
}

static void the_file_sink_holds_each_checkpoint_once(void **state)
{
	fx_t *f = *state;
	cv_store_checkpoint_t c[4];
	assert_int_equal(read_file_checkpoints(f, c, 4), 2);
	assert_int_equal(c[0].pos, 10);
	assert_int_equal(c[1].pos, TRAIL_N);
	for (int i = 0; i < 2; i++) {
		char msg[160];
		cv_audit_checkpoint_message(&c[i], msg);
		assert_int_equal(cv_crypto_sign_verify(c[i].key, msg, strlen(msg), c[i].sig), CV_OK);
	}
	/* the file is the server's alone */
	struct stat st;
	assert_int_equal(stat(f->cpfile, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
}

static void a_checkpoint_with_a_flipped_signature_byte_is_found(void **state)
{
	fx_t *f = *state;
	cv_store_checkpoint_t c[4];
	size_t n = read_file_checkpoints(f, c, 4);
	c[0].sig[17] ^= 0x20;
	write_file_checkpoints(f, c, n);
	cv_audit_verdict_t v = verify(f, true);
	assert_found(&v, 10, "bad signature");
	assert_non_null(strstr(v.what, "the file's"));
}

/* An attacker's own checkpoint key (any Ed25519 seed will do). */
static cv_key_t *forger_key(const fx_t *f)
{
	cv_buf_t blob;
	cv_key_t *k = NULL;
	cv_buf_init(&blob, 4096);
	assert_int_equal(cv_crypto_key_wrap_new(f->ts.master, "forger", 9, &blob), CV_OK);
	assert_int_equal(cv_crypto_key_unwrap(f->ts.master, "forger", (const uint8_t *)blob.data, blob.len, &k), CV_OK);
	cv_buf_release(&blob);
	return k;
}

/* A checkpoint of the trail as it now stands, signed with k. */
static cv_store_checkpoint_t forged_checkpoint(fx_t *f, const cv_key_t *k)
{
	rows_t *rs = calloc(1, sizeof *rs);
	assert_non_null(rs);
	load_rows(f, rs);
	cv_store_checkpoint_t c = { .pos = TRAIL_N, .at_us = cv_time_now_us() };
	memcpy(c.hash, rs->v[TRAIL_N - 1].hash, HASH);
	cv_crypto_sign_public(k, c.key);
	char msg[160];
	cv_audit_checkpoint_message(&c, msg);
	cv_crypto_sign(k, msg, strlen(msg), c.sig);
	free(rs);
	return c;
}

static void a_checkpoint_signed_by_another_key_is_refused(void **state)
{
	fx_t *f = *state;
	/* an attacker rewrites the trail and signs a checkpoint of their own
	 * for it: the store's recorded public key tells it apart */
	rewrite_and_rechain(f, 15);
	cv_key_t *forger = forger_key(f);
	cv_store_checkpoint_t c = forged_checkpoint(f, forger);
	write_file_checkpoints(f, &c, 1);
	cv_audit_verdict_t v = verify(f, true);
	assert_found(&v, TRAIL_N, "another key");
	cv_key_free(forger);
}

static void a_replaced_audit_key_is_found_by_the_file_or_the_kept_key(void **state)
{
	fx_t *f = *state;
	/* The attacker goes further: rewrites the trail, replaces the store's
	 * checkpoints with ones signed by their own key, and records that key
	 * as the store's audit key. Everything in the database agrees again:
	 * verification trusts the key the store records, so only the file's
	 * checkpoints, signed with the real key, show it. */
	uint8_t kept[CV_SIGN_PUBLIC_BYTES]; /* the public key the operator kept (carevault audit pubkey) */
	cv_buf_t pub;
	cv_buf_init(&pub, 64);
	cv_store_t *before = open_raw(f);
	assert_int_equal(cv_store_meta_get(before, "audit.pubkey", &pub), CV_OK);
	cv_store_close(before);
	assert_int_equal(pub.len, sizeof kept);
	memcpy(kept, pub.data, sizeof kept);
	cv_buf_release(&pub);
	rewrite_and_rechain(f, 15);
	cv_key_t *forger = forger_key(f);
	cv_store_checkpoint_t c = forged_checkpoint(f, forger);
	db_t d = db_open(f);
	db_exec(&d, "DELETE FROM cv_audit_checkpoint");
	db_run(&d, "INSERT INTO cv_audit_checkpoint (pos, at_us, hash, key, sig) VALUES (20, 1, $1, $1, $1)", c.hash,
	       HASH);
	db_exec(&d, "UPDATE cv_audit_checkpoint SET at_us = %lld WHERE pos = 20", (long long)c.at_us);
	db_run(&d, "UPDATE cv_audit_checkpoint SET key = $1 WHERE pos = 20", c.key, sizeof c.key);
	db_run(&d, "UPDATE cv_audit_checkpoint SET sig = $1 WHERE pos = 20", c.sig, sizeof c.sig);
	db_run(&d, "UPDATE cv_meta SET value = $1 WHERE name = 'audit.pubkey'", c.key, sizeof c.key);
	db_close(&d);
	cv_audit_verdict_t v = verify(f, false);
	assert_true(v.ok);
	assert_int_equal(v.checkpoints, 1);
	v = verify(f, true);
	assert_found(&v, 10, "another key"); /* the file's first checkpoint, at 10 */
	assert_non_null(strstr(v.what, "the file's"));
	/* ... or by the key the operator kept, without the file */
	cv_store_t *raw = open_raw(f);
	assert_int_equal(cv_audit_verify_key(raw, NULL, kept, NULL, NULL, &v), CV_OK);
	cv_store_close(raw);
	assert_false(v.ok);
	assert_non_null(strstr(v.what, "replaced"));
	cv_key_free(forger);
}

static void an_unreadable_checkpoint_file_fails_verification(void **state)
{
	fx_t *f = *state;
	cv_audit_verdict_t v;
	FILE *fp = fopen(f->cpfile, "a");
	assert_non_null(fp);
	fputs("\n{\"pos\":30,\"at_us\":1}\n", fp); /* a blank line is fine, a broken one is not */
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(verify_rc(f, f->cpfile, &v), CV_E_INVALID);
	assert_false(v.ok);
	assert_non_null(strstr(v.what, "line 4"));
	char missing[160];
	snprintf(missing, sizeof missing, "%s/none.log", f->ts.dir);
	assert_int_equal(verify_rc(f, missing, &v), CV_E_IO);
	assert_false(v.ok);
	assert_non_null(strstr(v.what, "cannot read"));
}

/* ---- 5. the checkpoint line ----------------------------------------------- */

/* A checkpoint of random bytes, or of known ones (hash "abab...", key
 * "cdcd...", sig "efef...") to edit its line by text. */
static cv_store_checkpoint_t some_checkpoint(bool random)
{
	cv_store_checkpoint_t c = { .pos = 123456789, .at_us = BASE_US + 123456 };
	memset(c.hash, 0xab, sizeof c.hash);
	memset(c.key, 0xcd, sizeof c.key);
	memset(c.sig, 0xef, sizeof c.sig);
	if (random) {
		cv_crypto_random(c.hash, sizeof c.hash);
		cv_crypto_random(c.key, sizeof c.key);
		cv_crypto_random(c.sig, sizeof c.sig);
	}
	return c;
}

static void a_checkpoint_line_round_trips(void **state)
{
	cv_store_checkpoint_t c = some_checkpoint(true), back;
	cv_buf_t line;
	cv_buf_init(&line, 4096);
	assert_int_equal(cv_audit_checkpoint_line(&c, &line), CV_OK);
	assert_non_null(strstr(line.data, "\"at\":\"2023-11-14T22:13:20.123Z\""));
	assert_int_equal(cv_audit_checkpoint_parse(line.data, line.len, &back), CV_OK);
	assert_int_equal(back.pos, c.pos);
	assert_int_equal(back.at_us, c.at_us);
	assert_memory_equal(back.hash, c.hash, sizeof c.hash);
	assert_memory_equal(back.key, c.key, sizeof c.key);
	assert_memory_equal(back.sig, c.sig, sizeof c.sig);
	/* the length given is the line's: what follows it is not read */
	cv_buf_puts(&line, "garbage");
	assert_int_equal(cv_audit_checkpoint_parse(line.data, line.len - 7, &back), CV_OK);
	assert_int_equal(back.pos, c.pos);
	cv_buf_release(&line);
}

/* The line of the known checkpoint with `from` replaced by `to` (first occurrence). */
static char *mangled(cv_pool_t *pool, const char *from, const char *to)
{
	cv_store_checkpoint_t c = some_checkpoint(false);
	cv_buf_t line;
	cv_buf_init(&line, 4096);
	assert_int_equal(cv_audit_checkpoint_line(&c, &line), CV_OK);
	char *at = strstr(line.data, from);
	assert_non_null(at);
	char *out = cv_pool_printf(pool, "%.*s%s%s", (int)(at - line.data), line.data, to, at + strlen(from));
	cv_buf_release(&line);
	return out;
}

static void refused(const char *text)
{
	cv_store_checkpoint_t c;
	if (cv_audit_checkpoint_parse(text, strlen(text), &c) == CV_OK)
		print_error("accepted: %s\n", text);
	assert_int_equal(cv_audit_checkpoint_parse(text, strlen(text), &c), CV_E_INVALID);
}

static void a_malformed_checkpoint_line_is_refused(void **state)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_store_checkpoint_t c;
	const char *line = mangled(&pool, "\"pos\"", "\"pos\""); /* unchanged */
	assert_int_equal(cv_audit_checkpoint_parse(line, strlen(line), &c), CV_OK);
	/* hex one digit short or long, an odd length, a byte short, not hex */
	refused(mangled(&pool, "\"hash\":\"ab", "\"hash\":\"b"));
	refused(mangled(&pool, "\"hash\":\"ab", "\"hash\":\"0ab"));
	refused(mangled(&pool, "\"key\":\"cd", "\"key\":\""));
	refused(mangled(&pool, "\"sig\":\"ef", "\"sig\":\"efef"));
	refused(mangled(&pool, "\"sig\":\"ef", "\"sig\":\"eg"));
	refused(mangled(&pool, "\"hash\":\"ab", "\"hash\":\"a "));
	refused(mangled(&pool, "\"key\":\"cd", "\"key\":\"c\\u0000"));
	/* missing or mistyped fields */
	refused(mangled(&pool, "\"pos\":", "\"position\":"));
	refused(mangled(&pool, "\"at_us\":", "\"when\":"));
	refused(mangled(&pool, "\"sig\":", "\"signature\":"));
	refused(mangled(&pool, "\"pos\":123456789", "\"pos\":\"123456789\""));
	refused(mangled(&pool, "\"pos\":123456789", "\"pos\":0"));
	refused(mangled(&pool, "\"pos\":123456789", "\"pos\":-5"));
	refused(mangled(&pool, "\"pos\":123456789", "\"pos\":1.5"));
	refused(mangled(&pool, "\"hash\":\"", "\"hash\":null,\"x\":\""));
	/* not JSON, not an object, or more than one */
	refused("");
	refused("{}");
	refused("carevault audit checkpoint");
	refused("[1,2,3]");
	refused("{\"pos\":1");
	refused(mangled(&pool, "\"}", "\"}x"));
	refused(mangled(&pool, "\"}", "\"}{}"));
	refused(mangled(&pool, "\"}", "\"},"));
	refused(mangled(&pool, "{", "{{"));
	cv_pool_release(&pool);
}

/* ---- 6. alerts ------------------------------------------------------------- */

/* Records at fixed times (a second apart from 22:10 on BASE_US's day), so
 * that they all fall in one clock hour: alerts are raised once per hour. */
#define HOUR_US (3600LL * 1000000)
#define ALERT_T0 (BASE_US / HOUR_US * HOUR_US + 600LL * 1000000)

static int64_t tick(fx_t *f)
{
	return f->clock += 1000000;
}

static void alert_config(const fx_t *f, cv_audit_config_t *cfg)
{
	trail_config(f, cfg);
	cfg->alert_failed_logins = 3;
	cfg->alert_patients_per_hour = 5;
	cfg->alert_denied_per_hour = 3;
	cfg->alert_resources_per_hour = 50;
}

static void put_failed_login(fx_t *f, const char *agent)
{
	cv_audit_event_t e = { .type = CV_AUDIT_LOGIN, .subtype = "login-failed", .action = 'E', .status = 401,
			       .outcome = 4, .flags = CV_AUDIT_F_SECURITY, .agent = agent, .agent_kind = "anonymous",
			       .address = "198.51.100.9", .at_us = tick(f) };
	put_event(f, &e, NULL);
}

static void put_read(fx_t *f, const char *agent, const char *patient, int64_t nres)
{
	cv_audit_event_t e = read_event(agent, &patient, NULL, tick(f));
	e.nres = nres;
	put_event(f, &e, NULL);
}

static void put_denied(fx_t *f, const char *agent, const char *patient)
{
	cv_audit_event_t e = read_event(agent, &patient, NULL, tick(f));
	e.flags = CV_AUDIT_F_DENIED;
	e.status = 403;
	e.outcome = 4;
	e.nres = 0;
	put_event(f, &e, NULL);
}

/* The patterns of alerts.h, each past its threshold by one agent, and
 * each under it by "u-calm". */
static void alert_patterns(fx_t *f)
{
	for (int i = 0; i < 3; i++)
		put_failed_login(f, "u-mallory");
	for (int i = 0; i < 6; i++)
		put_read(f, "u-nosy", cv_pool_printf(&f->pool, "p-n%d", i), 1);
	put_read(f, "u-nosy", "p-n0", 1); /* again: distinct patients are counted */
	for (int i = 0; i < 3; i++)
		put_denied(f, "u-blocked", "p-b");
	put_read(f, "c-bulk", "p-x", 30);
	put_read(f, "c-bulk", "p-x", 30);
	for (int i = 0; i < 2; i++) {
		put_failed_login(f, "u-calm");
		put_denied(f, "u-calm", "p-c"); /* refused: counted as refused, not as reads */
	}
	for (int i = 0; i < 4; i++)
		put_read(f, "u-calm", cv_pool_printf(&f->pool, "p-c%d", i), 10);
	put_read(f, "u-calm", "p-c0", 9); /* 4 distinct patients, 49 resources */
}

typedef struct alerts_found {
	cv_store_audit_row_t v[ROWS_MAX];
	size_t n;
} alerts_found_t;

static cv_rc keep_alert(void *arg, const cv_store_audit_row_t *r)
{
	alerts_found_t *a = arg;
	assert_true(a->n < ROWS_MAX);
	a->v[a->n++] = *r; /* its strings live in the fixture's pool */
	return CV_OK;
}

/* The alert records of kind about agent; the last one's detail must say `detail`. */
static int alerts_of(const alerts_found_t *a, const char *kind, const char *agent, const char *detail)
{
	int n = 0;
	for (size_t i = 0; i < a->n; i++) {
		const cv_store_audit_row_t *r = &a->v[i];
		if (strcmp(r->subtype, kind) != 0 || strcmp(r->agent, agent) != 0)
			continue;
		n++;
		assert_non_null(strstr((const char *)r->body, detail));
	}
	return n;
}

static void find_alerts(fx_t *f, alerts_found_t *a)
{
	cv_store_audit_query_t q = any();
	q.flags = CV_AUDIT_F_ALERT;
	a->n = 0;
	assert_int_equal(cv_audit_search(f->ts.s, &q, &f->pool, keep_alert, a), CV_OK);
	for (size_t i = 0; i < a->n; i++) {
		assert_string_equal(a->v[i].kind, "110113"); /* DICOM Security Alert */
		assert_true(a->v[i].flags & CV_AUDIT_F_SECURITY);
	}
}

/* One alert of each kind, about its agent, none about u-calm; mallory's
 * failed logins raised `mallory` times (once per hour). */
static void assert_alerts(fx_t *f, int mallory)
{
	alerts_found_t *a = calloc(1, sizeof *a);
	assert_non_null(a);
	find_alerts(f, a);
	assert_int_equal(alerts_of(a, "failed-logins", "u-mallory", "failed logins in 15 minutes"), mallory);
	assert_int_equal(alerts_of(a, "many-patients", "u-nosy", "5 distinct patients read in an hour"), 1);
	assert_int_equal(alerts_of(a, "outside-relationships", "u-blocked", "3 accesses refused in an hour"), 1);
	assert_int_equal(alerts_of(a, "bulk-export", "c-bulk", "60 resources received in an hour"), 1);
	for (size_t i = 0; i < a->n; i++)
		assert_string_not_equal(a->v[i].agent, "u-calm");
	assert_int_equal(a->n, 3 + mallory);
	free(a);
}

static void alerts_are_raised_once_per_kind_and_agent(void **state)
{
	fx_t *f = *state;
	cv_audit_config_t cfg;
	cv_audit_t *a = NULL;
	cv_alerts_t *al = NULL, *other = NULL;
	char err[256] = "";
	f->clock = ALERT_T0;
	alert_config(f, &cfg);
	assert_int_equal(cv_audit_new(f->ts.s, f->ts.master, &cfg, &a, err, sizeof err), CV_OK);
	for (int i = 0; i < 3; i++)
		put_failed_login(f, "u-before"); /* before the scanners begin: not theirs to read */
	assert_int_equal(cv_alerts_new(&al), CV_OK);
	assert_int_equal(cv_alerts_new(&other), CV_OK);
	assert_int_equal(cv_alerts_begin(al, f->ts.s), CV_OK);
	assert_int_equal(cv_alerts_begin(other, f->ts.s), CV_OK); /* another node on the same trail */
	alert_patterns(f);
	cv_alerts_scan(al, a, f->ts.s, &cfg);
	assert_alerts(f, 1);
	/* scanning again reads the alerts it wrote, and nothing new */
	cv_alerts_scan(al, a, f->ts.s, &cfg);
	assert_alerts(f, 1);
	/* the other node sees the same patterns: the claims keep it from raising them again */
	cv_alerts_scan(other, a, f->ts.s, &cfg);
	assert_alerts(f, 1);
	/* more of the same within the hour: still once */
	put_failed_login(f, "u-mallory");
	put_read(f, "u-nosy", "p-n9", 1);
	cv_alerts_scan(al, a, f->ts.s, &cfg);
	assert_alerts(f, 1);
	/* the next hour is another hour */
	f->clock += HOUR_US;
	for (int i = 0; i < 3; i++)
		put_failed_login(f, "u-mallory");
	cv_alerts_scan(al, a, f->ts.s, &cfg);
	cv_alerts_scan(other, a, f->ts.s, &cfg);
	assert_alerts(f, 2);
	cv_alerts_free(other);
	cv_alerts_free(al);
	cv_audit_free(a);
}


static cv_rc keep_last_checkpoint(void *arg, const cv_store_checkpoint_t *c)
{
	*(cv_store_checkpoint_t *)arg = *c;
	return CV_OK;
}

/* Retention: records archived to a verified, signed file leave a chain that
 * starts from a signed base; an ordinary checkpoint copied in as a base (to
 * delete the oldest records unnoticed) is refused. */
/* ---- verifying while an archive runs ---------------------------------------- */

#define ARCHIVE_RUN 5100 /* more than one page of the walk (VERIFY_BATCH, 5000) */
#define ARCHIVE_T0 1700000000000000LL

typedef struct mid_archive {
	cv_audit_t *a;
	const char *path;
	int calls;
	cv_rc rc;
} mid_archive_t;

/* The walk's progress after its first page: retention archives the oldest
 * 100 records (and their search keys) right then. */
static void archive_midway(void *arg, int64_t done)
{
	mid_archive_t *m = arg;
	cv_audit_archived_t res;
	(void)done;
	if (m->calls++ == 0)
		m->rc = cv_audit_archive(m->a, ARCHIVE_T0 + 100, m->path, &res);
}

/* `audit verify` runs daily and `audit archive` yearly; when the archive
 * commits in the middle of a verification, the records and search keys it
 * removed are not tampering. */
static void an_archive_during_verification_is_not_tampering(void **state)
{
	fx_t *f = *state;
	char path[200];
	cv_audit_t *a = open_trail(f);
	/* the records, submitted back to back (group commits keep this quick), one a microsecond */
	cv_store_write_t *w = calloc(ARCHIVE_RUN, sizeof *w);
	waiter_t wt = { .done = 0 };
	pthread_mutex_init(&wt.mu, NULL);
	pthread_cond_init(&wt.cond, NULL);
	assert_non_null(w);
	for (int i = 0; i < ARCHIVE_RUN; i++) {
		const char *patient = cv_pool_printf(&f->pool, "p-%03d", i % 7);
		const char *entity = cv_pool_printf(&f->pool, "Observation/o-%d", i);
		cv_audit_event_t e = read_event("u-ann", &patient, &entity, ARCHIVE_T0 + i);
		assert_int_equal(cv_audit_build(&e, &f->pool, &w[i]), CV_OK);
		w[i].done = one_done;
		w[i].arg = &wt;
		assert_int_equal(cv_store_submit(f->ts.s, &w[i]), CV_OK);
	}
	pthread_mutex_lock(&wt.mu);
	while (wt.done < ARCHIVE_RUN)
		pthread_cond_wait(&wt.cond, &wt.mu);
	pthread_mutex_unlock(&wt.mu);
	for (int i = 0; i < ARCHIVE_RUN; i++)
		assert_int_equal(w[i].result, CV_OK);
	free(w);
	snprintf(path, sizeof path, "%s/archive.jsonl", f->ts.dir);
	mid_archive_t m = { .a = a, .path = path };
	cv_store_t *raw = open_raw(f);
	cv_audit_verdict_t v;
	assert_int_equal(cv_audit_verify(raw, NULL, archive_midway, &m, &v), CV_OK);
	cv_store_close(raw);
	assert_int_equal(m.calls, 1);
	assert_int_equal(m.rc, CV_OK);
	if (!v.ok)
		print_error("verdict: %s\n", v.what);
	assert_true(v.ok);
	/* and the next verification starts at the archive's base */
	v = verify(f, false);
	assert_true(v.ok);
	assert_int_equal(v.base, 100);
	cv_audit_free(a);
}

static void an_archive_leaves_a_signed_base_that_a_checkpoint_cannot_forge(void **state)
{
	fx_t *f = *state;
	char path[200];
	cv_audit_t *a = open_trail(f);
	for (int i = 1; i <= 12; i++)
		assert_int_equal(put_plain(f, i), i);
	assert_int_equal(cv_audit_checkpoint_now(a), CV_OK); /* a checkpoint at 12 */
	/* everything so far is "old": archive it */
	snprintf(path, sizeof path, "%s/archive.jsonl", f->ts.dir);
	cv_audit_archived_t res;
	assert_int_equal(cv_audit_archive(a, cv_time_now_us() + 1000000, path, &res), CV_OK);
	assert_int_equal(res.first, 1);
	assert_int_equal(res.last, 12);
	for (int i = 13; i <= 15; i++)
		assert_int_equal(put_plain(f, i), i);
	cv_audit_verdict_t v;
	assert_int_equal(cv_audit_verify_archive(path, NULL, &v), CV_OK);
	assert_true(v.ok);
	assert_int_equal(v.records, 12);
	cv_audit_free(a);
	cv_store_close(f->ts.s);
	f->ts.s = NULL;
	v = verify(f, false);
	assert_true(v.ok);
	assert_int_equal(v.base, 12);
	assert_int_equal(v.records, 3);
	/* an ordinary signed checkpoint put in place of the base (what an attacker who deletes the
	 * oldest records would do with the checkpoint at the cut) does not pass as a base */
	cv_store_t *raw = open_raw(f);
	cv_store_checkpoint_t cp12 = { .pos = 0 };
	cv_buf_t line;
	cv_buf_init(&line, 4096);
	assert_int_equal(cv_store_audit_checkpoints(raw, keep_last_checkpoint, &cp12), CV_OK);
	assert_int_equal(cp12.pos, 12);
	assert_int_equal(cv_audit_checkpoint_line(&cp12, &line), CV_OK);
	cv_store_close(raw);
	db_t d = db_open(f);
	db_run(&d, "UPDATE cv_meta SET value = $1 WHERE name = 'audit.base'", line.data, line.len);
	db_close(&d);
	cv_buf_release(&line);
	v = verify(f, false);
	assert_false(v.ok);
	assert_non_null(strstr(v.what, "base"));
	/* and a damaged archive is refused */
	FILE *fp = fopen(path, "r+");
	assert_non_null(fp);
	assert_int_equal(fseek(fp, 200, SEEK_SET), 0);
	int ch = fgetc(fp);
	assert_int_equal(fseek(fp, 200, SEEK_SET), 0);
	fputc(ch == 'A' ? 'B' : 'A', fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(cv_audit_verify_archive(path, NULL, &v), CV_OK);
	assert_false(v.ok);
}

typedef struct lines {
	char *v[64];
	size_t n;
} lines_t;

static void read_lines(const char *path, lines_t *out)
{
	FILE *fp = fopen(path, "r");
	assert_non_null(fp);
	char *line = NULL;
	size_t cap = 0;
	out->n = 0;
	while (getline(&line, &cap, fp) > 0) {
		assert_true(out->n < 64);
		out->v[out->n++] = strdup(line);
	}
	free(line);
	fclose(fp);
}

static void free_lines(lines_t *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	l->n = 0;
}

/* Writes a header naming format, first and prev, lines [from, to) of src, then end. */
static void write_cut(const char *path, const char *format, int64_t first, const uint8_t prev[CV_AUDIT_HASH_BYTES],
		      const lines_t *src, size_t from, size_t to, const char *end)
{
	char hex[2 * CV_AUDIT_HASH_BYTES + 1];
	cv_crypto_hex(prev, CV_AUDIT_HASH_BYTES, hex);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp, "{\"format\":\"%s\",\"first\":%lld,\"prev\":\"%s\"}\n", format, (long long)first, hex);
	for (size_t i = from; i < to; i++)
		fputs(src->v[i], fp);
	fputs(end, fp);
	assert_int_equal(fclose(fp), 0);
}

/* The archive at path is not whole, and says so in words containing says. */
static void archive_refused(const char *path, const char *says)
{
	cv_audit_verdict_t v;
	assert_int_equal(cv_audit_verify_archive(path, NULL, &v), CV_OK);
	if (v.ok || !strstr(v.what, says))
		print_error("verdict: ok %d: %s\n", v.ok, v.what);
	assert_false(v.ok);
	assert_non_null(strstr(v.what, says));
}

/* c's checkpoint line and a newline, in out (released by the caller). */
static void checkpoint_text(const cv_store_checkpoint_t *c, cv_buf_t *out)
{
	cv_buf_init(out, 4096);
	assert_int_equal(cv_audit_checkpoint_line(c, out), CV_OK);
	assert_int_equal(cv_buf_puts(out, "\n"), CV_OK);
}

static cv_rc keep_checkpoints(void *arg, const cv_store_checkpoint_t *c)
{
	cv_store_checkpoint_t *v = arg;
	v[c->pos] = *c;
	return CV_OK;
}

/* An archive signs both its ends: records cut from its start (the header
 * rewritten to follow a later record) or from its end (the end line
 * replaced by the signed checkpoint of an earlier record) are refused. A
 * format-1 archive (its end signed as a checkpoint) still verifies, saying
 * its start is not covered. */
static void an_archive_cut_at_either_end_is_refused(void **state)
{
	fx_t *f = *state;
	char path[200], cut[220];
	cv_audit_t *a = open_trail(f);
	for (int i = 1; i <= 12; i++) {
		assert_int_equal(put_plain(f, i), i);
		if (i == 4 || i == 8 || i == 12)
			assert_int_equal(cv_audit_checkpoint_now(a), CV_OK);
	}
	snprintf(path, sizeof path, "%s/archive.jsonl", f->ts.dir);
	snprintf(cut, sizeof cut, "%s/cut.jsonl", f->ts.dir);
	cv_audit_archived_t res;
	assert_int_equal(cv_audit_archive(a, cv_time_now_us() + 1000000, path, &res), CV_OK);
	assert_int_equal(res.last, 12);
	cv_store_checkpoint_t *cps = calloc(13, sizeof *cps);
	assert_non_null(cps);
	assert_int_equal(cv_store_audit_checkpoints(f->ts.s, keep_checkpoints, cps), CV_OK);
	assert_int_equal(cps[8].pos, 8);
	cv_audit_free(a);
	lines_t l;
	read_lines(path, &l);
	assert_int_equal(l.n, 14); /* header, 12 records, the signed end */
	rows_t *rs = calloc(1, sizeof *rs);
	assert_non_null(rs);
	for (size_t i = 1; i <= 12; i++) {
		assert_int_equal(cv_audit_archive_parse_row(l.v[i], strlen(l.v[i]) - 1, &f->pool, &rs->v[i]), CV_OK);
		assert_int_equal(rs->v[i].pos, (int64_t)i);
	}
	cv_audit_verdict_t v;
	assert_int_equal(cv_audit_verify_archive(path, NULL, &v), CV_OK);
	assert_true(v.ok);
	/* the start cut: records 1 to 3 dropped, the header following record 3 */
	write_cut(cut, "carevault-audit-archive-2", 4, rs->v[3].hash, &l, 4, 14, "");
	archive_refused(cut, "first and last");
	/* the end cut: records 9 to 12 dropped, ending with the signed checkpoint of record 8 */
	cv_buf_t cp8, cp12;
	checkpoint_text(&cps[8], &cp8);
	write_cut(cut, "carevault-audit-archive-2", 1, rs->v[1].prev, &l, 1, 9, cp8.data);
	archive_refused(cut, "first and last");
	/* a format-1 archive (ending with record 12's checkpoint: any checkpoint line could end it) is
	 * not whole; asked to, it verifies as far as it can, saying what it cannot show */
	checkpoint_text(&cps[12], &cp12);
	write_cut(cut, "carevault-audit-archive-1", 1, rs->v[1].prev, &l, 1, 13, cp12.data);
	archive_refused(cut, "format-1");
	assert_int_equal(cv_audit_verify_archive_as(cut, NULL, true, &v), CV_OK);
	if (!v.ok)
		print_error("%s\n", v.what);
	assert_true(v.ok);
	assert_non_null(strstr(v.what, "format-1"));
	/* but not the format-2 end under a format-1 header (even asked to), nor the reverse */
	write_cut(cut, "carevault-audit-archive-1", 1, rs->v[1].prev, &l, 1, 14, "");
	assert_int_equal(cv_audit_verify_archive_as(cut, NULL, true, &v), CV_OK);
	assert_false(v.ok);
	write_cut(cut, "carevault-audit-archive-2", 1, rs->v[1].prev, &l, 1, 13, cp12.data);
	archive_refused(cut, "first and last");
	cv_buf_release(&cp8);
	cv_buf_release(&cp12);
	free_lines(&l);
	free(rs);
	free(cps);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(appended_records_are_chained_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(concurrent_submissions_share_one_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(a_conflicting_group_stores_neither_write_nor_record, setup, teardown),
		cmocka_unit_test_setup_teardown(a_conflicting_group_inside_a_batch_leaves_no_gap, setup, teardown),
		cmocka_unit_test_setup_teardown(a_companion_record_commits_with_its_write_or_neither_does, setup, teardown),
		cmocka_unit_test_setup_teardown(the_trail_is_searched_by_patient_entity_and_agent, setup, teardown),
		cmocka_unit_test_setup_teardown(the_trail_is_searched_by_action_outcome_flags_and_date, setup, teardown),
		cmocka_unit_test_setup_teardown(the_trail_pages_newest_first_with_before_pos, setup, teardown),
		cmocka_unit_test_setup_teardown(a_raw_store_scans_but_cannot_search, setup, teardown),
		cmocka_unit_test_setup_teardown(an_untouched_trail_verifies, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(an_edited_body_byte_is_found, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(an_edited_field_is_found, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(a_field_stored_in_another_form_is_found, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(a_record_below_the_base_or_a_key_past_the_end_is_found, trail_setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_deleted_record_is_found, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(an_inserted_record_is_found, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(a_deleted_search_key_is_found, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(an_added_search_key_is_found, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(swapped_records_are_found, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(a_truncated_tail_is_found_by_the_head, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(a_removed_head_row_fails_verification, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(a_clean_truncation_is_found_only_by_the_checkpoint_file, trail_setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_rewritten_and_rechained_trail_is_found_by_a_checkpoint, trail_setup,
						teardown),
		cmocka_unit_test_setup_teardown(the_file_sink_holds_each_checkpoint_once, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(a_checkpoint_with_a_flipped_signature_byte_is_found, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(a_checkpoint_signed_by_another_key_is_refused, trail_setup, teardown),
		cmocka_unit_test_setup_teardown(a_replaced_audit_key_is_found_by_the_file_or_the_kept_key, trail_setup,
						teardown),
		cmocka_unit_test_setup_teardown(an_unreadable_checkpoint_file_fails_verification, trail_setup, teardown),
		cmocka_unit_test(a_checkpoint_line_round_trips),
		cmocka_unit_test(a_malformed_checkpoint_line_is_refused),
		cmocka_unit_test_setup_teardown(alerts_are_raised_once_per_kind_and_agent, setup, teardown),
		cmocka_unit_test_setup_teardown(an_archive_during_verification_is_not_tampering, setup, teardown),
		cmocka_unit_test_setup_teardown(an_archive_leaves_a_signed_base_that_a_checkpoint_cannot_forge, setup,
						teardown),
		cmocka_unit_test_setup_teardown(an_archive_cut_at_either_end_is_refused, setup, teardown),
	};
	return CV_TEST_RUN_ON_BOTH(tests, "audit trail", pg_base);
}
