/*
 * keyring.c - the store's cache of unwrapped data keys (see keyring.h).
 *
 * Two chained hash tables (by key id, by owner) over one set of entries, and
 * a list in order of use for eviction. One mutex guards all of it; the work
 * under it is a few pointer moves.
 */
#include "store/keyring.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct cv_keyring {
	pthread_mutex_t mu;
	size_t cap, n, nbuckets;
	cv_keyent_t **by_kid, **by_owner;
	cv_keyent_t *newest, *oldest; /* use order */
};

static size_t bucket(const cv_keyring_t *kr, const uint8_t *bytes, size_t len)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a: the ids are random or short, spread them */
	for (size_t i = 0; i < len; i++)
		h = (h ^ bytes[i]) * 1099511628211ULL;
	return (size_t)(h & (kr->nbuckets - 1));
}

cv_rc cv_keyring_new(size_t cap, cv_keyring_t **out)
{
	cv_keyring_t *kr = calloc(1, sizeof *kr);
	if (!kr)
		return CV_E_NOMEM;
	kr->cap = cap ? cap : 1;
	kr->nbuckets = 64;
	while (kr->nbuckets < 2 * kr->cap && kr->nbuckets < (1u << 20))
		kr->nbuckets <<= 1;
	kr->by_kid = calloc(kr->nbuckets, sizeof *kr->by_kid);
	kr->by_owner = calloc(kr->nbuckets, sizeof *kr->by_owner);
	if (!kr->by_kid || !kr->by_owner) {
		free(kr->by_kid);
		free(kr->by_owner);
		free(kr);
		return CV_E_NOMEM;
	}
	pthread_mutex_init(&kr->mu, NULL);
	*out = kr;
	return CV_OK;
}

static void entry_free(cv_keyent_t *e)
{
	cv_key_free(e->key);
	cv_buf_release(&e->wrapped);
	free(e);
}

cv_rc cv_keyring_entry_new(const cv_store_key_row_t *row, cv_key_t *k, cv_keyent_t **out)
{
	cv_keyent_t *e = calloc(1, sizeof *e);
	if (!e) {
		cv_key_free(k);
		return CV_E_NOMEM;
	}
	e->row = *row;
	e->key = k;
	cv_buf_init(&e->wrapped, 4096);
	if (row->wrapped_len && cv_buf_append(&e->wrapped, row->wrapped, row->wrapped_len)) {
		entry_free(e);
		return CV_E_NOMEM;
	}
	e->row.wrapped = (const uint8_t *)e->wrapped.data;
	*out = e;
	return CV_OK;
}

/* ---- the lists (kr->mu held) ---------------------------------------------- */

static void use_unlink(cv_keyring_t *kr, cv_keyent_t *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		kr->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		kr->oldest = e->newer;
	e->older = e->newer = NULL;
}

static void use_front(cv_keyring_t *kr, cv_keyent_t *e)
{
	e->older = kr->newest;
	e->newer = NULL;
	if (kr->newest)
		kr->newest->newer = e;
	kr->newest = e;
	if (!kr->oldest)
		kr->oldest = e;
}

static cv_keyent_t *kid_lookup(cv_keyring_t *kr, const uint8_t *kid)
{
	cv_keyent_t *e = kr->by_kid[bucket(kr, kid, CV_KID_BYTES)];
	while (e && memcmp(e->row.kid, kid, CV_KID_BYTES) != 0)
		e = e->next_kid;
	return e;
}

static cv_keyent_t *owner_lookup(cv_keyring_t *kr, const uint8_t *owner)
{
	cv_keyent_t *e = kr->by_owner[bucket(kr, owner, CV_OWNER_BYTES)];
	while (e && memcmp(e->row.owner, owner, CV_OWNER_BYTES) != 0)
		e = e->next_owner;
	return e;
}

static void owner_unlink(cv_keyring_t *kr, cv_keyent_t *e)
{
	cv_keyent_t **p = &kr->by_owner[bucket(kr, e->row.owner, CV_OWNER_BYTES)];
	while (*p && *p != e)
		p = &(*p)->next_owner;
	if (*p)
		*p = e->next_owner;
	e->next_owner = NULL;
}

/* Takes e out of the maps and the use list; frees it unless pinned. */
static void remove_entry(cv_keyring_t *kr, cv_keyent_t *e)
{
	cv_keyent_t **p = &kr->by_kid[bucket(kr, e->row.kid, CV_KID_BYTES)];
	while (*p && *p != e)
		p = &(*p)->next_kid;
	if (*p)
		*p = e->next_kid;
	owner_unlink(kr, e);
	use_unlink(kr, e);
	kr->n--;
	e->dropped = true;
	if (!e->pins)
		entry_free(e);
}

static void evict(cv_keyring_t *kr)
{
	cv_keyent_t *e = kr->oldest;
	while (kr->n > kr->cap && e) {
		cv_keyent_t *newer = e->newer;
		if (!e->pins && !e->permanent && e->persisted)
			remove_entry(kr, e);
		e = newer;
	}
}

static cv_keyent_t *pin(cv_keyring_t *kr, cv_keyent_t *e)
{
	if (e) {
		e->pins++;
		use_unlink(kr, e);
		use_front(kr, e);
	}
	return e;
}

/* ---- the interface ------------------------------------------------------- */

cv_keyent_t *cv_keyring_find_kid(cv_keyring_t *kr, const uint8_t kid[CV_KID_BYTES])
{
	pthread_mutex_lock(&kr->mu);
	cv_keyent_t *e = pin(kr, kid_lookup(kr, kid));
	pthread_mutex_unlock(&kr->mu);
	return e;
}

cv_keyent_t *cv_keyring_find_owner(cv_keyring_t *kr, const uint8_t owner[CV_OWNER_BYTES])
{
	pthread_mutex_lock(&kr->mu);
	cv_keyent_t *e = pin(kr, owner_lookup(kr, owner));
	pthread_mutex_unlock(&kr->mu);
	return e;
}

cv_keyent_t *cv_keyring_add(cv_keyring_t *kr, cv_keyent_t *e)
{
	pthread_mutex_lock(&kr->mu);
	cv_keyent_t *have = kid_lookup(kr, e->row.kid);
	if (have) {
		pin(kr, have);
		pthread_mutex_unlock(&kr->mu);
		entry_free(e);
		return have;
	}
	size_t b = bucket(kr, e->row.kid, CV_KID_BYTES);
	e->next_kid = kr->by_kid[b];
	kr->by_kid[b] = e;
	if (!e->legacy && e->row.state == CV_KEY_ACTIVE) { /* a retired key opens, never seals */
		cv_keyent_t *cur = owner_lookup(kr, e->row.owner);
		if (!cur || cur->row.version <= e->row.version) {
			if (cur)
				owner_unlink(kr, cur);
			b = bucket(kr, e->row.owner, CV_OWNER_BYTES);
			e->next_owner = kr->by_owner[b];
			kr->by_owner[b] = e;
		}
	}
	kr->n++;
	e->pins++;
	use_front(kr, e);
	evict(kr);
	pthread_mutex_unlock(&kr->mu);
	return e;
}

void cv_keyring_unpin(cv_keyring_t *kr, cv_keyent_t *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&kr->mu);
	e->pins--;
	bool gone = e->dropped && !e->pins;
	if (!gone)
		evict(kr);
	pthread_mutex_unlock(&kr->mu);
	if (gone)
		entry_free(e);
}

void cv_keyring_detach(cv_keyent_t *e)
{
	e->dropped = true;
	e->pins = 1;
}

void cv_keyring_set_persisted(cv_keyring_t *kr, cv_keyent_t *e)
{
	pthread_mutex_lock(&kr->mu);
	e->persisted = true;
	pthread_mutex_unlock(&kr->mu);
}

void cv_keyring_drop_owner(cv_keyring_t *kr, const uint8_t owner[CV_OWNER_BYTES])
{
	pthread_mutex_lock(&kr->mu);
	for (cv_keyent_t *e = kr->newest, *next; e; e = next) {
		next = e->older;
		if (memcmp(e->row.owner, owner, CV_OWNER_BYTES) == 0 && !e->permanent)
			remove_entry(kr, e);
	}
	pthread_mutex_unlock(&kr->mu);
}

void cv_keyring_drop_all(cv_keyring_t *kr)
{
	pthread_mutex_lock(&kr->mu);
	for (cv_keyent_t *e = kr->newest, *next; e; e = next) {
		next = e->older;
		if (!e->permanent && e->persisted) /* a key not stored yet is this process's own, in flight */
			remove_entry(kr, e);
	}
	pthread_mutex_unlock(&kr->mu);
}

size_t cv_keyring_size(cv_keyring_t *kr)
{
	pthread_mutex_lock(&kr->mu);
	size_t n = kr->n;
	pthread_mutex_unlock(&kr->mu);
	return n;
}

void cv_keyring_free(cv_keyring_t *kr)
{
	if (!kr)
		return;
	for (cv_keyent_t *e = kr->newest, *next; e; e = next) {
		next = e->older;
		entry_free(e);
	}
	free(kr->by_kid);
	free(kr->by_owner);
	pthread_mutex_destroy(&kr->mu);
	free(kr);
}
