/*
 * test_account.c - user accounts: roles and links, names unique whatever the
 * case (also when two writers race), compare-and-set updates, the stored
 * form round trip, no account in system history or in the database file in
 * plaintext. Runs on SQLite, and on PostgreSQL too with CV_TEST_PG_BASE.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../teststore.h"
#include "auth/account.h"

static const char *pg_base;

typedef struct fx {
	cv_test_store_t t;
	cv_store_t *s;
} fx_t;

static int setup(void **state)
{
	fx_t *f = calloc(1, sizeof *f);
	cv_test_store_open(&f->t, "cv_unit_account", pg_base);
	f->s = f->t.s;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_t *f = *state;
	cv_test_store_close(&f->t);
	free(f);
	return 0;
}

static void roles_names_and_links(void **state)
{
	(void)state;
	cv_role r;
	assert_int_equal(cv_role_parse("doctor", &r), CV_OK);
	assert_int_equal(r, CV_ROLE_DOCTOR);
	assert_string_equal(cv_role_name(CV_ROLE_RESEARCHER), "researcher");
	assert_int_equal(cv_role_parse("Doctor", &r), CV_E_INVALID);
	assert_int_equal(cv_role_parse("root", &r), CV_E_INVALID);
	assert_int_equal(cv_role_parse(NULL, &r), CV_E_INVALID);
	assert_null(cv_role_name(CV_ROLE_COUNT));
	assert_false(cv_role_is_staff(CV_ROLE_PATIENT));
	assert_true(cv_role_is_staff(CV_ROLE_BILLING));

	char why[128];
	assert_int_equal(cv_account_name_check("dr.house@example.org", why, sizeof why), CV_OK);
	assert_int_equal(cv_account_name_check("", why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_account_name_check("-x", why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_account_name_check("a b", why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_account_name_check("a'; DROP", why, sizeof why), CV_E_INVALID);
	char longname[80];
	memset(longname, 'a', 65);
	longname[65] = '\0';
	assert_int_equal(cv_account_name_check(longname, why, sizeof why), CV_E_INVALID);

	assert_int_equal(cv_account_link_check(CV_ROLE_PATIENT, "Patient/p-1", why, sizeof why), CV_OK);
	assert_int_equal(cv_account_link_check(CV_ROLE_PATIENT, "", why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_account_link_check(CV_ROLE_PATIENT, "Practitioner/x", why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_account_link_check(CV_ROLE_NURSE, "Practitioner/n1", why, sizeof why), CV_OK);
	assert_int_equal(cv_account_link_check(CV_ROLE_DOCTOR, NULL, why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_account_link_check(CV_ROLE_ADMIN, "", why, sizeof why), CV_OK);
	assert_int_equal(cv_account_link_check(CV_ROLE_ADMIN, "Patient/p", why, sizeof why), CV_E_INVALID);
	assert_int_equal(cv_account_link_check(CV_ROLE_PATIENT, "Patient/a b", why, sizeof why), CV_E_INVALID);
}

static void encode_decode_round_trip(void **state)
{
	(void)state;
	cv_account_t a, b;
	cv_buf_t buf;
	cv_buf_init(&buf, 1u << 16);
	assert_int_equal(cv_account_init(&a, "Nurse.Joy", CV_ROLE_NURSE, "Practitioner/pr-7"), CV_OK);
	assert_int_equal(strlen(a.id), CV_ACCOUNT_ID_LEN);
	snprintf(a.pwhash, sizeof a.pwhash, "$argon2id$v=19$m=65536,t=2,p=1$c29tZQ$aGFzaA");
	a.mfa = true;
	a.totp_sealed = strdup("sealed-seed");
	a.totp_last_step = 123456;
	a.recovery[3][0] = 0xab;
	a.recovery_used = 5;
	a.disabled = true;
	assert_int_equal(cv_account_encode(&a, &buf), CV_OK);
	assert_int_equal(cv_account_decode(buf.data, buf.len, &b), CV_OK);
	assert_string_equal(b.id, a.id);
	assert_string_equal(b.username, "Nurse.Joy");
	assert_int_equal(b.role, CV_ROLE_NURSE);
	assert_string_equal(b.link, "Practitioner/pr-7");
	assert_string_equal(b.pwhash, a.pwhash);
	assert_true(b.mfa && b.disabled);
	assert_string_equal(b.totp_sealed, "sealed-seed");
	assert_int_equal(b.totp_last_step, 123456);
	assert_memory_equal(b.recovery, a.recovery, sizeof a.recovery);
	assert_int_equal(b.recovery_used, 5);
	assert_int_equal(b.epoch, 1);
	cv_account_release(&b);
	assert_int_equal(cv_account_decode("{\"id\":1}", 8, &b), CV_E_INVALID);
	assert_int_equal(cv_account_decode("not json", 8, &b), CV_E_INVALID);
	cv_account_release(&a);
	cv_buf_release(&buf);
}

static void create_find_update(void **state)
{
	fx_t *f = *state;
	cv_account_t a, got, again;
	assert_int_equal(cv_account_init(&a, "Alice", CV_ROLE_PATIENT, "Patient/p1"), CV_OK);
	assert_int_equal(cv_account_create(f->s, &a), CV_OK);
	assert_int_equal(a.version, 1);
	/* found by name whatever the case, and by id */
	assert_int_equal(cv_account_find(f->s, "aLiCe", &got), CV_OK);
	assert_string_equal(got.id, a.id);
	assert_string_equal(got.username, "Alice");
	assert_int_equal(cv_account_get(f->s, a.id, &again), CV_OK);
	assert_int_equal(again.version, 1);
	/* one name, one account: another case of it is taken */
	cv_account_t dup;
	assert_int_equal(cv_account_init(&dup, "ALICE", CV_ROLE_NURSE, "Practitioner/x"), CV_OK);
	assert_int_equal(cv_account_create(f->s, &dup), CV_E_CONFLICT);
	char dup_id[CV_ACCOUNT_ID_LEN + 1];
	memcpy(dup_id, dup.id, sizeof dup_id);
	assert_int_equal(cv_account_get(f->s, dup_id, &dup), CV_E_NOTFOUND);
	/* compare-and-set: the second writer of version 1 loses */
	got.disabled = true;
	got.epoch++;
	assert_int_equal(cv_account_update(f->s, &got), CV_OK);
	assert_int_equal(got.version, 2);
	again.role = CV_ROLE_ADMIN;
	assert_int_equal(cv_account_update(f->s, &again), CV_E_CONFLICT);
	cv_account_t now;
	assert_int_equal(cv_account_find(f->s, "alice", &now), CV_OK);
	assert_true(now.disabled);
	assert_int_equal(now.epoch, 2);
	assert_int_equal(now.role, CV_ROLE_PATIENT);
	assert_int_equal(cv_account_find(f->s, "bob", &dup), CV_E_NOTFOUND);
	assert_int_equal(cv_account_find(f->s, "no such name!", &dup), CV_E_NOTFOUND);
	assert_int_equal(cv_account_get(f->s, "00", &dup), CV_E_NOTFOUND);
	cv_account_release(&a);
	cv_account_release(&got);
	cv_account_release(&again);
	cv_account_release(&now);
}

typedef struct race {
	cv_store_t *s;
	char name[16];
	cv_rc rc;
} race_t;

static void *create_one(void *arg)
{
	race_t *r = arg;
	cv_account_t a;
	if (cv_account_init(&a, r->name, CV_ROLE_ADMIN, "")) {
		r->rc = CV_E_INVALID;
		return NULL;
	}
	r->rc = cv_account_create(r->s, &a);
	cv_account_release(&a);
	return NULL;
}

static void racing_creates_make_one_account(void **state)
{
	fx_t *f = *state;
	race_t r[8];
	pthread_t t[8];
	for (int i = 0; i < 8; i++) {
		r[i].s = f->s;
		snprintf(r[i].name, sizeof r[i].name, i % 2 ? "Admin" : "admin");
		pthread_create(&t[i], NULL, create_one, &r[i]);
	}
	int ok = 0;
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		if (r[i].rc == CV_OK)
			ok++;
		else
			assert_int_equal(r[i].rc, CV_E_CONFLICT);
	}
	assert_int_equal(ok, 1);
}

static cv_rc count_one(void *arg, const cv_account_t *a)
{
	(*(int *)arg)++;
	assert_int_equal(strlen(a->id), CV_ACCOUNT_ID_LEN);
	return CV_OK;
}

static cv_rc count_version(void *arg, const cv_store_version_t *v)
{
	(void)v;
	(*(int *)arg)++;
	return CV_OK;
}

static void listed_but_never_in_system_history(void **state)
{
	fx_t *f = *state;
	char name[32];
	for (int i = 0; i < 130; i++) {
		cv_account_t a;
		snprintf(name, sizeof name, "user%03d", i);
		assert_int_equal(cv_account_init(&a, name, CV_ROLE_BILLING, ""), CV_OK);
		assert_int_equal(cv_account_create(f->s, &a), CV_OK);
		cv_account_release(&a);
	}
	int n = 0;
	assert_int_equal(cv_account_each(f->s, count_one, &n), CV_OK);
	assert_int_equal(n, 130);
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_store_history_query_t q = { .limit = 1000 };
	int versions = 0;
	assert_int_equal(cv_store_history(f->s, &q, &pool, count_version, &versions), CV_OK);
	assert_int_equal(versions, 0);
	cv_pool_release(&pool);
}

static void names_are_not_on_disk(void **state)
{
	fx_t *f = *state;
	if (f->t.url[0])
		skip(); /* the embedded store's files are what this looks at */
	cv_account_t a;
	assert_int_equal(cv_account_init(&a, "Zebulon.Quixote", CV_ROLE_PATIENT, "Patient/zq-4711"), CV_OK);
	assert_int_equal(cv_account_create(f->s, &a), CV_OK);
	cv_account_release(&a);
	cv_store_close(f->s);
	f->s = NULL;
	char cmd[256];
	snprintf(cmd, sizeof cmd, "cat %s/store.db* | grep -a -i -c -e zebulon -e zq-4711 >/dev/null", f->t.dir);
	assert_int_not_equal(system(cmd), 0);
	char err[256];
	assert_int_equal(cv_store_open(f->t.dir, NULL, 1, f->t.master, &f->t.s, err, sizeof err), CV_OK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(roles_names_and_links),
		cmocka_unit_test(encode_decode_round_trip),
		cmocka_unit_test_setup_teardown(create_find_update, setup, teardown),
		cmocka_unit_test_setup_teardown(racing_creates_make_one_account, setup, teardown),
		cmocka_unit_test_setup_teardown(listed_but_never_in_system_history, setup, teardown),
		cmocka_unit_test_setup_teardown(names_are_not_on_disk, setup, teardown),
	};
	return CV_TEST_RUN_ON_BOTH(tests, "accounts", pg_base);
}
