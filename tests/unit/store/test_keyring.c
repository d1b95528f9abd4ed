/*
 * test_keyring.c - the store's cache of unwrapped data keys (store/keyring.c),
 * driven directly: lookups by key id and by owner, pins against eviction,
 * least-recently-used eviction of stored entries only, dropping an owner
 * while one of its entries is in use (AddressSanitizer catches a use after
 * free), the owner's current key by version, legacy keys, duplicates, and
 * many threads at once.
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

#include "crypto/crypto.h"
#include "store/keyring.h"

static int setup(void **state)
{
	char err[256];
	return cv_crypto_init(err, sizeof err) == CV_OK ? 0 : -1;
}

/* An owner: 16 bytes of `b`. */
static void owner_fill(uint8_t owner[CV_OWNER_BYTES], uint8_t b)
{
	memset(owner, b, CV_OWNER_BYTES);
}

/* A new entry with a fresh random key of a fresh kid, for owner `o` at version. */
static cv_keyent_t *entry(uint8_t o, int64_t version, bool persisted)
{
	cv_store_key_row_t row = { .version = version, .state = CV_KEY_ACTIVE, .created_us = 42,
				   .wrapped = (const uint8_t *)"wrapped-bytes", .wrapped_len = 13 };
	cv_key_t *k = NULL;
	cv_keyent_t *e = NULL;
	owner_fill(row.owner, o);
	cv_crypto_kid_new(row.kid);
	assert_int_equal(cv_crypto_key_generate(row.kid, &k), CV_OK);
	assert_int_equal(cv_keyring_entry_new(&row, k, &e), CV_OK);
	e->persisted = persisted;
	return e;
}

/* Whether kid is cached (the lookup's pin is released). */
static bool has_kid(cv_keyring_t *kr, const uint8_t kid[CV_KID_BYTES])
{
	cv_keyent_t *e = cv_keyring_find_kid(kr, kid);
	cv_keyring_unpin(kr, e);
	return e != NULL;
}

/* The cached current key of owner `o`, unpinned (NULL when none). */
static cv_keyent_t *current_of(cv_keyring_t *kr, uint8_t o)
{
	uint8_t owner[CV_OWNER_BYTES];
	owner_fill(owner, o);
	cv_keyent_t *e = cv_keyring_find_owner(kr, owner);
	cv_keyring_unpin(kr, e);
	return e;
}

static void add_and_find(void **state)
{
	cv_keyring_t *kr = NULL;
	assert_int_equal(cv_keyring_new(8, &kr), CV_OK);
	cv_keyent_t *a = entry(0xA1, 1, true), *b = entry(0xB2, 1, true);
	uint8_t akid[CV_KID_BYTES], kid[CV_KID_BYTES], owner[CV_OWNER_BYTES];
	memcpy(akid, a->row.kid, CV_KID_BYTES);
	/* the entry copied the wrapped bytes */
	assert_int_equal(a->row.wrapped_len, 13);
	assert_memory_equal(a->row.wrapped, "wrapped-bytes", 13);
	assert_ptr_equal(cv_keyring_add(kr, a), a);
	assert_ptr_equal(cv_keyring_add(kr, b), b);
	assert_int_equal(cv_keyring_size(kr), 2);
	cv_keyent_t *e = cv_keyring_find_kid(kr, akid);
	assert_ptr_equal(e, a);
	cv_key_kid(e->key, kid);
	assert_memory_equal(kid, akid, CV_KID_BYTES);
	cv_keyring_unpin(kr, e);
	owner_fill(owner, 0xA1);
	e = cv_keyring_find_owner(kr, owner);
	assert_ptr_equal(e, a);
	cv_keyring_unpin(kr, e);
	assert_ptr_equal(current_of(kr, 0xB2), b);
	/* unknown id, unknown owner */
	cv_crypto_kid_new(kid);
	assert_null(cv_keyring_find_kid(kr, kid));
	assert_null(current_of(kr, 0xC3));
	cv_keyring_unpin(kr, NULL); /* NULL is fine */
	cv_keyring_unpin(kr, a);
	cv_keyring_unpin(kr, b);
	cv_keyring_free(kr);
}

static void duplicate_kid_returns_existing(void **state)
{
	cv_keyring_t *kr = NULL;
	assert_int_equal(cv_keyring_new(8, &kr), CV_OK);
	cv_keyent_t *a = entry(0x01, 1, true), *dup = entry(0x02, 5, true);
	memcpy(dup->row.kid, a->row.kid, CV_KID_BYTES);
	assert_ptr_equal(cv_keyring_add(kr, a), a);
	/* the duplicate is freed (LeakSanitizer would see it otherwise) and a returned, pinned again */
	assert_ptr_equal(cv_keyring_add(kr, dup), a);
	assert_int_equal(cv_keyring_size(kr), 1);
	/* the duplicate's owner did not get a current key from it */
	assert_null(current_of(kr, 0x02));
	assert_ptr_equal(current_of(kr, 0x01), a);
	cv_keyring_unpin(kr, a);
	cv_keyring_unpin(kr, a);
	cv_keyring_free(kr);
}

static void lru_evicts_oldest_unpinned(void **state)
{
	cv_keyring_t *kr = NULL;
	assert_int_equal(cv_keyring_new(3, &kr), CV_OK);
	cv_keyent_t *e[4];
	uint8_t kid[4][CV_KID_BYTES];
	for (int i = 0; i < 3; i++) {
		e[i] = entry((uint8_t)(0x10 + i), 1, true);
		memcpy(kid[i], e[i]->row.kid, CV_KID_BYTES);
		cv_keyring_unpin(kr, cv_keyring_add(kr, e[i]));
	}
	assert_int_equal(cv_keyring_size(kr), 3);
	/* use 0: now 1 is the least recently used */
	assert_true(has_kid(kr, kid[0]));
	e[3] = entry(0x13, 1, true);
	memcpy(kid[3], e[3]->row.kid, CV_KID_BYTES);
	cv_keyring_unpin(kr, cv_keyring_add(kr, e[3]));
	assert_int_equal(cv_keyring_size(kr), 3);
	assert_false(has_kid(kr, kid[1]));
	assert_null(current_of(kr, 0x11));
	assert_true(has_kid(kr, kid[0]));
	assert_true(has_kid(kr, kid[2]));
	assert_true(has_kid(kr, kid[3]));
	cv_keyring_free(kr);
}

static void pins_prevent_eviction(void **state)
{
	cv_keyring_t *kr = NULL;
	assert_int_equal(cv_keyring_new(2, &kr), CV_OK);
	cv_keyent_t *held = cv_keyring_add(kr, entry(0x20, 1, true)); /* stays pinned */
	uint8_t hkid[CV_KID_BYTES];
	memcpy(hkid, held->row.kid, CV_KID_BYTES);
	for (int i = 0; i < 10; i++)
		cv_keyring_unpin(kr, cv_keyring_add(kr, entry((uint8_t)(0x30 + i), 1, true)));
	/* the oldest entry, but pinned: still cached, still whole */
	assert_int_equal(cv_keyring_size(kr), 2);
	assert_true(has_kid(kr, hkid));
	uint8_t kid[CV_KID_BYTES];
	cv_key_kid(held->key, kid);
	assert_memory_equal(kid, hkid, CV_KID_BYTES);
	/* all pinned: the cache grows past its cap rather than drop a key in use */
	cv_keyent_t *p[4];
	for (int i = 0; i < 4; i++)
		p[i] = cv_keyring_add(kr, entry((uint8_t)(0x40 + i), 1, true));
	assert_int_equal(cv_keyring_size(kr), 5); /* held, p0..p3 (the one unpinned entry went) */
	for (int i = 0; i < 4; i++)
		assert_true(has_kid(kr, p[i]->row.kid));
	/* unpinned, they go down to the cap again, oldest first */
	for (int i = 0; i < 4; i++)
		cv_keyring_unpin(kr, p[i]);
	assert_int_equal(cv_keyring_size(kr), 2);
	assert_true(has_kid(kr, hkid));
	assert_non_null(current_of(kr, 0x43));
	assert_null(current_of(kr, 0x40));
	cv_keyring_unpin(kr, held);
	cv_keyring_free(kr);
}

static void only_stored_entries_are_evicted(void **state)
{
	cv_keyring_t *kr = NULL;
	assert_int_equal(cv_keyring_new(2, &kr), CV_OK);
	cv_keyent_t *fresh = entry(0x50, 1, false); /* a new key, not stored yet */
	cv_keyent_t *sys = entry(0x51, 1, true);
	sys->permanent = true;
	uint8_t fkid[CV_KID_BYTES], skid[CV_KID_BYTES], last[CV_KID_BYTES];
	memcpy(fkid, fresh->row.kid, CV_KID_BYTES);
	memcpy(skid, sys->row.kid, CV_KID_BYTES);
	cv_keyring_unpin(kr, cv_keyring_add(kr, fresh));
	cv_keyring_unpin(kr, cv_keyring_add(kr, sys));
	cv_keyent_t *l = NULL;
	for (int i = 0; i < 6; i++) {
		cv_keyring_unpin(kr, l);
		l = cv_keyring_add(kr, entry((uint8_t)(0x60 + i), 1, true));
		memcpy(last, l->row.kid, CV_KID_BYTES);
	}
	/* the unstored and the permanent ones are older than all others, yet
	 * stay; of the stored ones only the one in use is left */
	assert_int_equal(cv_keyring_size(kr), 3);
	assert_true(has_kid(kr, fkid));
	assert_true(has_kid(kr, skid));
	assert_int_equal(cv_keyring_size(kr), 3);
	assert_null(current_of(kr, 0x64));
	/* over the cap: released, the stored one goes at once */
	cv_keyring_unpin(kr, l);
	assert_int_equal(cv_keyring_size(kr), 2);
	assert_false(has_kid(kr, last));
	assert_true(has_kid(kr, fkid));
	/* once stored, the new key is evictable like any other */
	cv_keyent_t *f = cv_keyring_find_kid(kr, fkid);
	cv_keyring_set_persisted(kr, f);
	assert_true(f->persisted);
	cv_keyring_unpin(kr, f);
	cv_keyring_unpin(kr, cv_keyring_add(kr, entry(0x70, 1, true)));
	cv_keyring_unpin(kr, cv_keyring_add(kr, entry(0x71, 1, true)));
	assert_false(has_kid(kr, fkid));
	assert_true(has_kid(kr, skid));
	/* drop_all forgets everything but the permanent key */
	cv_keyring_drop_all(kr);
	assert_int_equal(cv_keyring_size(kr), 1);
	assert_true(has_kid(kr, skid));
	assert_ptr_equal(current_of(kr, 0x51), sys);
	cv_keyring_free(kr);
}

static void drop_owner_while_pinned(void **state)
{
	cv_keyring_t *kr = NULL;
	assert_int_equal(cv_keyring_new(8, &kr), CV_OK);
	cv_keyent_t *v1 = cv_keyring_add(kr, entry(0x80, 1, true));
	cv_keyent_t *v2 = cv_keyring_add(kr, entry(0x80, 2, true));
	cv_keyent_t *other = cv_keyring_add(kr, entry(0x81, 1, true));
	cv_keyent_t *sys = entry(0x80, 9, true);
	cv_keyring_unpin(kr, v1); /* v1 is not in use; v2 is */
	uint8_t kid1[CV_KID_BYTES], kid2[CV_KID_BYTES], owner[CV_OWNER_BYTES], kid[CV_KID_BYTES];
	memcpy(kid1, v1->row.kid, CV_KID_BYTES);
	memcpy(kid2, v2->row.kid, CV_KID_BYTES);
	owner_fill(owner, 0x80);
	cv_keyring_drop_owner(kr, owner);
	assert_int_equal(cv_keyring_size(kr), 1);
	assert_false(has_kid(kr, kid1));
	assert_false(has_kid(kr, kid2));
	assert_null(current_of(kr, 0x80));
	assert_ptr_equal(current_of(kr, 0x81), other);
	/* v2 is still pinned: it must still be whole (a use after free shows under ASan) */
	cv_key_kid(v2->key, kid);
	assert_memory_equal(kid, kid2, CV_KID_BYTES);
	assert_memory_equal(v2->row.wrapped, "wrapped-bytes", 13);
	cv_buf_t blob, pt;
	cv_buf_init(&blob, 256);
	cv_buf_init(&pt, 256);
	assert_int_equal(cv_crypto_seal(v2->key, "ad", 2, "still usable", 12, &blob), CV_OK);
	assert_int_equal(cv_crypto_open(v2->key, "ad", 2, (uint8_t *)blob.data, blob.len, &pt), CV_OK);
	assert_int_equal(pt.len, 12);
	cv_buf_release(&blob);
	cv_buf_release(&pt);
	/* the last unpin frees it (LeakSanitizer: no leak; ASan: no double free at keyring_free) */
	cv_keyring_unpin(kr, v2);
	/* a key of the owner added again after the drop is found again */
	cv_keyent_t *again = cv_keyring_add(kr, entry(0x80, 3, true));
	assert_ptr_equal(current_of(kr, 0x80), again);
	cv_keyring_unpin(kr, again);
	/* a permanent key of the owner survives the drop */
	sys->permanent = true;
	cv_keyring_unpin(kr, cv_keyring_add(kr, sys));
	cv_keyring_drop_owner(kr, owner);
	assert_ptr_equal(current_of(kr, 0x80), sys);
	assert_int_equal(cv_keyring_size(kr), 2);
	cv_keyring_unpin(kr, other);
	cv_keyring_free(kr);
}

static void higher_version_is_current(void **state)
{
	cv_keyring_t *kr = NULL;
	assert_int_equal(cv_keyring_new(8, &kr), CV_OK);
	cv_keyent_t *v1 = entry(0x90, 1, true), *v2 = entry(0x90, 2, true), *v3 = entry(0x90, 3, true);
	uint8_t k1[CV_KID_BYTES], k2[CV_KID_BYTES], k3[CV_KID_BYTES];
	memcpy(k1, v1->row.kid, CV_KID_BYTES);
	memcpy(k2, v2->row.kid, CV_KID_BYTES);
	memcpy(k3, v3->row.kid, CV_KID_BYTES);
	cv_keyring_unpin(kr, cv_keyring_add(kr, v1));
	assert_ptr_equal(current_of(kr, 0x90), v1);
	cv_keyring_unpin(kr, cv_keyring_add(kr, v3));
	assert_ptr_equal(current_of(kr, 0x90), v3);
	/* an older version loaded later (to open an old blob) does not become current */
	cv_keyring_unpin(kr, cv_keyring_add(kr, v2));
	assert_ptr_equal(current_of(kr, 0x90), v3);
	/* but every version opens what it sealed: all found by id */
	assert_true(has_kid(kr, k1));
	assert_true(has_kid(kr, k2));
	assert_true(has_kid(kr, k3));
	assert_int_equal(cv_keyring_size(kr), 3);
	cv_keyring_free(kr);
}

static void legacy_found_by_kid_only(void **state)
{
	cv_keyring_t *kr = NULL;
	assert_int_equal(cv_keyring_new(8, &kr), CV_OK);
	/* as keys.c makes it: a format-1 key, an all-zero owner, version 0 */
	uint8_t b[CV_KEY_BYTES], kid[CV_KID_BYTES];
	cv_key_t *k = NULL;
	cv_keyent_t *legacy = NULL;
	cv_crypto_random(b, sizeof b);
	assert_int_equal(cv_crypto_key_from_bytes(b, 1, &k), CV_OK);
	cv_store_key_row_t row = { .state = CV_KEY_ACTIVE };
	cv_key_kid(k, row.kid);
	memcpy(kid, row.kid, CV_KID_BYTES);
	assert_int_equal(cv_keyring_entry_new(&row, k, &legacy), CV_OK);
	legacy->legacy = legacy->permanent = legacy->persisted = true;
	assert_ptr_equal(cv_keyring_add(kr, legacy), legacy);
	cv_keyring_unpin(kr, legacy);
	assert_true(has_kid(kr, kid));
	assert_null(current_of(kr, 0x00));
	/* a legacy entry never displaces an owner's current key either */
	cv_keyent_t *cur = entry(0xAA, 1, true);
	cv_keyring_unpin(kr, cv_keyring_add(kr, cur));
	cv_keyent_t *leg2 = entry(0xAA, 7, true);
	leg2->legacy = true;
	cv_keyring_unpin(kr, cv_keyring_add(kr, leg2));
	assert_ptr_equal(current_of(kr, 0xAA), cur);
	assert_true(has_kid(kr, leg2->row.kid));
	cv_keyring_free(kr);
}

/* ---- many threads -------------------------------------------------------- */

typedef struct worker {
	cv_keyring_t *kr;
	int id;
	uint8_t kids[8][CV_KID_BYTES]; /* the entries this worker made */
	int bad;
} worker_t;

static void *churn(void *arg)
{
	worker_t *w = arg;
	for (int round = 0; round < 300; round++) {
		int slot = round % 8;
		uint8_t o = (uint8_t)(w->id * 16 + slot);
		cv_keyent_t *e = cv_keyring_find_kid(w->kr, w->kids[slot]);
		if (!e) {
			e = entry(o, 1, true);
			memcpy(w->kids[slot], e->row.kid, CV_KID_BYTES);
			e = cv_keyring_add(w->kr, e);
		}
		uint8_t kid[CV_KID_BYTES];
		cv_key_kid(e->key, kid); /* in use while other threads evict and drop */
		if (memcmp(kid, w->kids[slot], CV_KID_BYTES) != 0)
			w->bad++;
		if (round % 37 == 0) {
			uint8_t owner[CV_OWNER_BYTES];
			owner_fill(owner, o);
			cv_keyring_drop_owner(w->kr, owner);
		}
		cv_keyring_unpin(w->kr, e);
	}
	return NULL;
}

static void threads_share_the_ring(void **state)
{
	cv_keyring_t *kr = NULL;
	assert_int_equal(cv_keyring_new(16, &kr), CV_OK);
	pthread_t t[6];
	worker_t w[6];
	for (int i = 0; i < 6; i++) {
		memset(&w[i], 0, sizeof w[i]);
		w[i].kr = kr;
		w[i].id = i;
		assert_int_equal(pthread_create(&t[i], NULL, churn, &w[i]), 0);
	}
	for (int i = 0; i < 6; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(w[i].bad, 0);
	}
	assert_true(cv_keyring_size(kr) <= 16);
	cv_keyring_free(kr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(add_and_find),
		cmocka_unit_test(duplicate_kid_returns_existing),
		cmocka_unit_test(lru_evicts_oldest_unpinned),
		cmocka_unit_test(pins_prevent_eviction),
		cmocka_unit_test(only_stored_entries_are_evicted),
		cmocka_unit_test(drop_owner_while_pinned),
		cmocka_unit_test(higher_version_is_current),
		cmocka_unit_test(legacy_found_by_kid_only),
		cmocka_unit_test(threads_share_the_ring),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
