/*
 * verify.c - checking the trail (cv_audit_verify): the chain from its first
 * record, the store's recorded head, every signed checkpoint, from the
 * store and from an exported checkpoint file, and the search-key lookup
 * table against the keys each record names (the chain covers those). Needs no secret key: the hash
 * chain covers the stored (sealed) bytes, and checkpoints are checked with
 * the public key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"

#define VERIFY_BATCH 5000
#define CHECKPOINTS_MAX 1000000

typedef struct cp {
	cv_store_checkpoint_t c;
	const char *from;      /* "the store's" or "the file's" */
} cp_t;

typedef struct cps {
	cp_t *v;
	size_t n, cap;
} cps_t;

typedef struct walk {
	cv_audit_verdict_t *out;
	cps_t *cps;
	size_t next_cp;        /* the next checkpoint to meet (sorted by pos) */
	int64_t expect;        /* the next position */
	int64_t last_good_cp;  /* the last checkpoint position that matched */
	int64_t head;          /* the store's head, read before the walk (-1: unreadable) */
	uint8_t head_hash[CV_AUDIT_HASH_BYTES];
	bool head_matched;     /* the row at the head's position has the head's hash */
	uint8_t prev[CV_AUDIT_HASH_BYTES];
	bool bad;
	cv_buf_t pairs_buf;    /* the page's (key, position) pairs (cv_store_audit_pair_t), for the lookup table */
	int64_t pairs;         /* distinct (key, position) pairs of the records walked */
	int64_t keys_inside;   /* lookup rows counted for the records walked (-1: not counted) */
	const uint8_t *pub;    /* the audit key the base must be signed by */
} walk_t;

static int64_t base_now(cv_store_t *s, const struct walk *w);

static cv_rc cps_add(cps_t *c, const cv_store_checkpoint_t *cp, const char *from)
{
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		if (cap > CHECKPOINTS_MAX)
			return CV_E_LIMIT;
		cp_t *v = realloc(c->v, cap * sizeof *v);
		if (!v)
			return CV_E_NOMEM;
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = (cp_t){ .c = *cp, .from = from };
	return CV_OK;
}

static cv_rc from_store(void *arg, const cv_store_checkpoint_t *c)
{
	return cps_add(arg, c, "the store's");
}

/* Marks the walk failed at pos; the caller writes what into w->out->what. */
static char *fail(walk_t *w, int64_t pos)
{
	w->bad = true;
	w->out->ok = false;
	w->out->bad_pos = pos;
	w->out->named = pos != 0;
	return w->out->what;
}

#define WHAT sizeof ((cv_audit_verdict_t *)0)->what

/* The same, naming pos even when it is 0 or below (a record or key put there). */
static char *fail_at(walk_t *w, int64_t pos)
{
	char *what = fail(w, pos);
	w->out->named = true;
	return what;
}

/* Reads the checkpoint file: one line each (blank lines skipped). */
static cv_rc from_file(const char *path, cps_t *c, cv_audit_verdict_t *out)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(out->what, sizeof out->what, "cannot read the checkpoint file %s", path);
		return CV_E_IO;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	long long lineno = 0;
	cv_rc rc = CV_OK;
	while (!rc && (len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (!len)
			continue;
		cv_store_checkpoint_t cp;
		if (cv_audit_checkpoint_parse(line, (size_t)len, &cp)) {
			snprintf(out->what, sizeof out->what, "line %lld of the checkpoint file is not a checkpoint", lineno);
			rc = CV_E_INVALID;
		} else {
			rc = cps_add(c, &cp, "the file's");
		}
	}
	free(line);
	fclose(f);
	return rc;
}

static int by_pos(const void *x, const void *y)
{
	const cp_t *a = x, *b = y;
	return a->c.pos < b->c.pos ? -1 : a->c.pos > b->c.pos;
}

/* Every checkpoint is signed by the store's key. */
static void check_signatures(walk_t *w, const uint8_t *pub)
{
	for (size_t i = 0; i < w->cps->n && !w->bad; i++) {
		const cv_store_checkpoint_t *c = &w->cps->v[i].c;
		char msg[160];
		cv_audit_checkpoint_message(c, msg);
		if (pub && memcmp(c->key, pub, CV_SIGN_PUBLIC_BYTES) != 0)
			snprintf(fail(w, c->pos), WHAT, "%s checkpoint at record %lld is signed by another key than "
				 "this store's audit key", w->cps->v[i].from, (long long)c->pos);
		else if (cv_crypto_sign_verify(c->key, msg, strlen(msg), c->sig) != CV_OK)
			snprintf(fail(w, c->pos), WHAT, "%s checkpoint at record %lld has a bad signature (it was altered)",
				 w->cps->v[i].from, (long long)c->pos);
	}
}

/* The checkpoints at the row's position must sign its hash. */
static void meet_checkpoints(walk_t *w, const cv_store_audit_row_t *r)
{
	cps_t *c = w->cps;
	while (w->next_cp < c->n && c->v[w->next_cp].c.pos < r->pos)
		w->next_cp++;
	for (; w->next_cp < c->n && c->v[w->next_cp].c.pos == r->pos && !w->bad; w->next_cp++) {
		if (memcmp(c->v[w->next_cp].c.hash, r->hash, CV_AUDIT_HASH_BYTES) == 0) {
			w->last_good_cp = r->pos;
			continue;
		}
		snprintf(fail(w, w->last_good_cp + 1), WHAT, "the trail does not match %s signed checkpoint at record "
			 "%lld: a record after %lld and up to %lld was rewritten (and the chain recomputed)",
			 c->v[w->next_cp].from, (long long)r->pos, (long long)w->last_good_cp, (long long)r->pos);
	}
}

/* Notes the row's distinct search keys (the chain covers them; the lookup
 * table that searches use is checked against them after the page). */
static cv_rc note_keys(walk_t *w, const cv_store_audit_row_t *r)
{
	size_t n = r->keys_len / CV_AUDIT_KEY_BYTES;
	cv_rc rc = CV_OK;
	for (size_t i = 0; !rc && i < n; i++) {
		const uint8_t *k = r->keys + i * CV_AUDIT_KEY_BYTES;
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = memcmp(k, r->keys + j * CV_AUDIT_KEY_BYTES, CV_AUDIT_KEY_BYTES) == 0;
		if (seen)
			continue;
		cv_store_audit_pair_t p = { .pos = r->pos };
		memcpy(p.k, k, CV_AUDIT_KEY_BYTES);
		rc = cv_buf_append(&w->pairs_buf, &p, sizeof p);
		w->pairs++;
	}
	return rc;
}

static int by_key(const void *x, const void *y)
{
	const cv_store_audit_pair_t *a = x, *b = y;
	int c = memcmp(a->k, b->k, CV_AUDIT_KEY_BYTES);
	return c ? c : a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* The first record of the page missing a pair, probed in key order (the
 * lookup table's order: its pages are read once each, not once per record). */
static cv_rc page_missing(cv_store_t *s, walk_t *w, int64_t *missing)
{
	size_t n = w->pairs_buf.len / sizeof(cv_store_audit_pair_t);
	cv_store_audit_pair_t *p = (cv_store_audit_pair_t *)(void *)w->pairs_buf.data;
	*missing = 0;
	if (!n)
		return CV_OK;
	qsort(p, n, sizeof *p, by_key);
	cv_rc rc = cv_store_audit_keys_missing(s, p, n, missing);
	int64_t base = !rc && *missing ? base_now(s, w) : 0;
	if (*missing && *missing <= base) { /* archived meanwhile, with its keys: probe the rest */
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (p[i].pos > base)
				p[m++] = p[i];
		*missing = 0;
		rc = m ? cv_store_audit_keys_missing(s, p, m, missing) : CV_OK;
	}
	return rc;
}

/* The lookup table holds every search key of the page's records. */
static void check_page_keys(cv_store_t *s, walk_t *w)
{
	int64_t missing = 0;
	cv_rc rc = page_missing(s, w, &missing);
	if (rc)
		snprintf(fail(w, 0), WHAT, "the search-key table could not be read: %s", cv_rc_str(rc));
	else if (missing)
		snprintf(fail(w, missing), WHAT, "record %lld is missing from the search-key table (rows were deleted): "
			 "searches and access reports for its patients and resources no longer show it", (long long)missing);
	cv_buf_reset(&w->pairs_buf);
}

/* The lookup table names no record with a key it does not hold: it holds
 * every pair the records name (check_page_keys), so as many rows as pairs
 * means none more; else the extra rows are looked for, to name a record. */
static void check_extra_keys(cv_store_t *s, walk_t *w)
{
	int64_t extra = 0, count = 0;
	if (!w->bad && w->expect - 1 <= w->out->base)
		w->keys_inside = 0; /* no record walked: none of its rows */
	if (w->bad || w->expect - 1 <= w->out->base)
		return;
	cv_rc rc = cv_store_audit_keys_count(s, w->out->base + 1, w->expect - 1, &count);
	w->keys_inside = rc ? -1 : count;
	if (!rc && count == w->pairs)
		return;
	int64_t base = rc ? 0 : base_now(s, w); /* an archive removed the first records' keys meanwhile */
	if (!rc)
		rc = cv_store_audit_keys_extra(s, base + 1, w->expect - 1, &extra);
	if (rc)
		snprintf(fail(w, 0), WHAT, "the search-key table could not be read: %s", cv_rc_str(rc));
	else if (extra)
		snprintf(fail(w, extra), WHAT, "the search-key table ties record %lld to a patient or resource the record "
			 "does not name (rows were added): it would show in their searches and access reports",
			 (long long)extra);
	else if (base == w->out->base) /* no archive explains the difference */
		snprintf(fail(w, 0), WHAT, "the search-key table holds %lld rows for the records walked, which name %lld: "
			 "it was changed", (long long)count, (long long)w->pairs);
}

/* The lookup table has no row outside the records walked: none at or before
 * the base (an archive removed those with their records) and none past the
 * last record (a serving server's newer records come with theirs, in one
 * transaction: only a row with no record of its own is extra). */
static void check_outside_keys(cv_store_t *s, walk_t *w)
{
	int64_t nbelow = 0, below = 0, above = 0, total = 0;
	if (w->bad)
		return;
	/* the common case in one scan: the whole table holds no more rows than the walked records' (a serving
	 * server's newer records, an archive meanwhile: looked at below, and not extra) */
	cv_rc rc = w->keys_inside >= 0 ? cv_store_audit_keys_count(s, INT64_MIN, INT64_MAX, &total) : CV_OK;
	if (!rc && w->keys_inside >= 0 && total == w->keys_inside)
		return;
	if (!rc)
		rc = cv_store_audit_keys_count(s, INT64_MIN, w->out->base, &nbelow);
	if (!rc && nbelow) /* every row there is extra: where the first is (0 is a position too) */
		rc = cv_store_audit_keys_extra(s, INT64_MIN, w->out->base, &below);
	if (!rc && !nbelow)
		rc = cv_store_audit_keys_extra(s, w->expect, INT64_MAX, &above);
	if (rc)
		snprintf(fail(w, 0), WHAT, "the search-key table could not be read: %s", cv_rc_str(rc));
	else if (nbelow || above)
		snprintf(fail_at(w, nbelow ? below : above), WHAT, "the search-key table ties position %lld, %s, to a "
			 "patient or resource (rows were added): a record put there would show in their searches and "
			 "access reports", (long long)(nbelow ? below : above),
			 nbelow ? "at or before the trail's start" : "past its last record");
}

static cv_rc first_row(void *arg, const cv_store_audit_row_t *r)
{
	*(int64_t *)arg = r->pos;
	return CV_E_CONFLICT; /* one is enough */
}

/* No record lies at or before where the chain starts (the walk begins after
 * it, but searches have no lower bound): after an archive, a row put below
 * its base would be served and never checked. */
static void check_below_base(cv_store_t *s, walk_t *w)
{
	int64_t pos = INT64_MAX;
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_store_audit_scan(s, 0, 1, false, &pool, first_row, &pos);
	cv_pool_release(&pool);
	if (rc && rc != CV_E_CONFLICT)
		snprintf(fail(w, 0), WHAT, "the trail could not be read: %s", cv_rc_str(rc));
	else if (pos <= w->out->base)
		snprintf(fail_at(w, pos), WHAT, "record %lld lies at or before the trail's start (record %lld, where it "
			 "begins after an archive or at 1): it was put there by hand, and searches would show it",
			 (long long)pos, (long long)w->out->base + 1);
}

static cv_rc one(void *arg, const cv_store_audit_row_t *r)
{
	walk_t *w = arg;
	uint8_t h[CV_AUDIT_HASH_BYTES];
	if (w->bad)
		return CV_E_CONFLICT;
	if (r->pos != w->expect && w->head >= 0 && w->expect - 1 >= w->head) {
		/* the chain reached the store's head: a later row after a gap was put there */
		snprintf(fail(w, r->pos), WHAT, "record %lld lies past the store's head (%lld), after a gap: it was added "
			 "by hand", (long long)r->pos, (long long)w->head);
		return CV_E_CONFLICT;
	}
	if (r->pos != w->expect) {
		snprintf(fail(w, w->expect), WHAT, "record %lld is missing: the chain goes on at record %lld "
			 "(records were deleted)", (long long)w->expect, (long long)r->pos);
		return CV_E_CONFLICT;
	}
	if (memcmp(r->prev, w->prev, CV_AUDIT_HASH_BYTES) != 0) {
		snprintf(fail(w, r->pos), WHAT, "record %lld does not follow record %lld: a record was inserted, "
			 "deleted or moved here", (long long)r->pos, (long long)r->pos - 1);
		return CV_E_CONFLICT;
	}
	cv_store_audit_hash(r, h);
	if (memcmp(h, r->hash, CV_AUDIT_HASH_BYTES) != 0) {
		snprintf(fail(w, r->pos), WHAT, "record %lld was altered: its contents do not match its hash",
			 (long long)r->pos);
		return CV_E_CONFLICT;
	}
	if (r->malformed) {
		snprintf(fail(w, r->pos), WHAT, "record %lld was altered: a field is stored as another type or with "
			 "bytes its hash does not cover, so searches and access reports would miss it", (long long)r->pos);
		return CV_E_CONFLICT;
	}
	meet_checkpoints(w, r);
	if (w->bad)
		return CV_E_CONFLICT;
	if (note_keys(w, r))
		return CV_E_NOMEM;
	if (r->pos == w->head)
		w->head_matched = memcmp(r->hash, w->head_hash, CV_AUDIT_HASH_BYTES) == 0;
	memcpy(w->prev, r->hash, CV_AUDIT_HASH_BYTES);
	w->expect++;
	return CV_OK;
}

static void walk_chain(cv_store_t *s, walk_t *w, void (*progress)(void *, int64_t), void *arg)
{
	for (;;) {
		cv_pool_t pool;
		cv_pool_init(&pool, 0);
		int64_t before = w->expect;
		cv_rc rc = cv_store_audit_scan(s, w->expect - 1, VERIFY_BATCH, true, &pool, one, w);
		cv_pool_release(&pool);
		if (rc && !w->bad)
			snprintf(fail(w, 0), WHAT, "the trail could not be read: %s", cv_rc_str(rc));
		if (!w->bad)
			check_page_keys(s, w);
		if (w->bad || w->expect - before < VERIFY_BATCH)
			return;
		if (progress)
			progress(arg, w->expect - 1);
	}
}

/* After the walk: the head read before it must be in the chain with the
 * hash it recorded; the head read after it must cover every record walked
 * (a record the head never recorded was put there by hand), and match the
 * last one when it is at it. Records appended by a serving server in
 * between are fine. Every checkpoint must lie within the chain. */
static void check_end(cv_store_t *s, walk_t *w)
{
	int64_t count = w->expect - 1, now = 0;
	uint8_t now_hash[CV_AUDIT_HASH_BYTES];
	if (w->bad)
		return;
	if (w->head >= 0 && cv_store_audit_head(s, &now, now_hash) == CV_OK && count > w->out->base &&
	    (now < count || (now == count && memcmp(now_hash, w->prev, CV_AUDIT_HASH_BYTES) != 0))) {
		if (now < count)
			snprintf(fail(w, now + 1), WHAT, "records %lld to %lld are past the store's head (%lld): they "
				 "were added to the trail by hand", (long long)now + 1, (long long)count, (long long)now);
		else
			snprintf(fail(w, count), WHAT, "record %lld is not the one the store's head recorded",
				 (long long)count);
		return;
	}
	check_extra_keys(s, w);
	if (w->bad)
		return;
	if (w->head < 0)
		snprintf(fail(w, 0), WHAT, "the store's head could not be read: where the trail ends is unknown");
	else if (w->head > count)
		snprintf(fail(w, count + 1), WHAT, "the trail ends at record %lld but the store's head says %lld: "
			 "the records after it were removed (truncated)", (long long)count, (long long)w->head);
	else if (w->head > w->out->base && !w->head_matched)
		snprintf(fail(w, w->head), WHAT, "record %lld is not the one the store's head recorded: the trail "
			 "was rewritten there", (long long)w->head);
	for (size_t i = 0; i < w->cps->n && !w->bad; i++)
		if (w->cps->v[i].c.pos > count)
			snprintf(fail(w, count + 1), WHAT, "the trail ends at record %lld but %s signed checkpoint covers "
				 "%lld records: the records after it were removed (truncated)", (long long)count,
				 w->cps->v[i].from, (long long)w->cps->v[i].c.pos);
}

/* The store's base (meta "audit.base", where the chain starts after an
 * archive): CV_OK with *base when there is one signed by pub, CV_E_NOTFOUND
 * when there is none, CV_E_CRYPTO when it is not signed by pub. */
static cv_rc read_base(cv_store_t *s, const uint8_t *pub, cv_store_checkpoint_t *base)
{
	cv_buf_t line;
	char msg[160];
	cv_buf_init(&line, 4096);
	cv_rc rc = cv_store_meta_get(s, CV_AUDIT_META_BASE, &line);
	if (rc == CV_OK && (cv_audit_checkpoint_parse(line.data ? line.data : "", line.len, base) ||
			    (cv_audit_base_message(base, msg), !pub) ||
			    memcmp(base->key, pub, CV_SIGN_PUBLIC_BYTES) != 0 ||
			    cv_crypto_sign_verify(base->key, msg, strlen(msg), base->sig) != CV_OK))
		rc = CV_E_CRYPTO;
	cv_buf_release(&line);
	return rc;
}

/* Where the chain starts: after the records retention archived, at the
 * base the archive signed; else at record 1. */
static void chain_base(cv_store_t *s, walk_t *w, const uint8_t *pub)
{
	cv_store_checkpoint_t base;
	cv_rc rc = read_base(s, pub, &base);
	w->pub = pub;
	if (rc == CV_E_CRYPTO) {
		snprintf(fail(w, 1), WHAT, "the trail's base (where it starts after an archive) is not signed by this "
			 "store's audit key: the start of the trail was removed or replaced");
	} else if (rc == CV_OK) {
		w->expect = base.pos + 1;
		memcpy(w->prev, base.hash, CV_AUDIT_HASH_BYTES);
		w->out->base = base.pos;
	} else if (rc != CV_E_NOTFOUND) {
		snprintf(fail(w, 0), WHAT, "the trail's base could not be read: %s", cv_rc_str(rc));
	}
}

/* Where the chain starts now, when an archive signed a later base while the
 * walk ran (it removed records and their search keys up to it); else the
 * walk's own base. */
static int64_t base_now(cv_store_t *s, const struct walk *w)
{
	cv_store_checkpoint_t base;
	return read_base(s, w->pub, &base) == CV_OK && base.pos > w->out->base ? base.pos : w->out->base;
}

cv_rc cv_audit_verify(cv_store_t *s, const char *checkpoints_path, void (*progress)(void *arg, int64_t done),
		      void *arg, cv_audit_verdict_t *out)
{
	return cv_audit_verify_key(s, checkpoints_path, NULL, progress, arg, out);
}

/* The key checkpoints must be signed with: the one the operator kept
 * (pinned), which the store's must equal; else the store's. NULL (and the
 * walk failed) when the store's was replaced, or when there is none but
 * there are checkpoints. */
static const uint8_t *signing_key(walk_t *w, const uint8_t *pinned, const cv_buf_t *stored)
{
	bool have = stored->len == CV_SIGN_PUBLIC_BYTES;
	if (pinned && have && memcmp(pinned, stored->data, CV_SIGN_PUBLIC_BYTES) != 0)
		snprintf(fail(w, 0), WHAT, "the store's audit key is not the one given: it was replaced");
	else if (!pinned && !have && w->cps->n)
		snprintf(fail(w, 0), WHAT, "there are signed checkpoints but no audit key in the store: it was removed");
	else
		return pinned ? pinned : have ? (const uint8_t *)stored->data : NULL;
	return NULL;
}

cv_rc cv_audit_verify_key(cv_store_t *s, const char *checkpoints_path, const uint8_t *pinned,
			  void (*progress)(void *arg, int64_t done), void *arg, cv_audit_verdict_t *out)
{
	cps_t cps = { 0 };
	walk_t w = { .out = out, .cps = &cps, .expect = 1, .keys_inside = -1 };
	cv_buf_init(&w.pairs_buf, (size_t)1 << 30);
	memset(out, 0, sizeof *out);
	out->ok = true;
	cv_buf_t pub;
	cv_buf_init(&pub, 64);
	cv_rc rc = cv_store_meta_get(s, "audit.pubkey", &pub);
	bool have_pub = !rc && pub.len == CV_SIGN_PUBLIC_BYTES;
	rc = rc == CV_E_NOTFOUND ? CV_OK : rc;
	if (!rc)
		rc = cv_store_audit_checkpoints(s, from_store, &cps);
	if (!rc && checkpoints_path)
		rc = from_file(checkpoints_path, &cps, out);
	if (!rc) {
		if (cps.n)
			qsort(cps.v, cps.n, sizeof *cps.v, by_pos);
		const uint8_t *key = signing_key(&w, pinned, &pub);
		have_pub = key != NULL;
		if (!w.bad)
			check_signatures(&w, key);
		if (!w.bad)
			chain_base(s, &w, key);
		if (!w.bad && cv_store_audit_head(s, &w.head, w.head_hash))
			w.head = -1;
		if (!w.bad)
			check_below_base(s, &w);
		if (!w.bad)
			walk_chain(s, &w, progress, arg);
		check_end(s, &w);
		check_outside_keys(s, &w);
	} else {
		out->ok = false;
		if (!out->what[0])
			snprintf(out->what, sizeof out->what, "cannot read the checkpoints: %s", cv_rc_str(rc));
	}
	out->records = w.expect - 1 - out->base;
	out->checkpoints = (int64_t)cps.n;
	cv_crypto_hex(w.prev, CV_AUDIT_HASH_BYTES, out->head);
	if (out->ok)
		snprintf(out->what, sizeof out->what, "the audit trail is whole: %lld records (%lld to %lld), %lld signed "
			 "checkpoints checked%s", (long long)out->records, (long long)out->base + 1, (long long)w.expect - 1,
			 (long long)out->checkpoints, !have_pub ? " (no audit key recorded yet)" :
			 out->checkpoints || !out->records ? "" : " (none signed: only a copy of the checkpoints kept "
			 "outside the database, --checkpoints, shows whether the records were rewritten)");
	cv_buf_release(&pub);
	cv_buf_release(&w.pairs_buf);
	free(cps.v);
	return rc;
}
