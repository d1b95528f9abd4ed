/*
 * store.h - the one storage interface, whatever the back end.
 *
 * Callers hand the store plaintext resource JSON; the store seals it
 * (crypto/, AES-256-GCM under a data key wrapped by the master key) before a
 * back end sees it, and opens it on read, so no back end, file, WAL or backup
 * ever holds plaintext. The additional data of each seal binds type, row id
 * and version: a sealed body copied onto another row does not open.
 * Each version is sealed under the data key of its owner: the patient whose
 * compartment it is in (the write says which; the first of several), or the
 * shared key for everything else. Keys live wrapped by the master key in the
 * store's key table, are unwrapped on demand and cached (store/keyring.h);
 * a blob names its key, so old versions open after the owner changes.
 * Erasing a patient destroys their keys (crypto-shredding): every version
 * sealed under them, current or old, can no longer be opened by anyone.
 * Resources are kept as versions (every version stays; a delete is a
 * tombstone version) under (type, rid), where rid is a blind index
 * (HMAC-SHA-256 under the index key) of "type/id": logical ids are not stored
 * in plaintext either. Small named values (wrapped keys, token hashes,
 * settings) live in `meta`, unsealed (callers store only hashes or wrapped keys there).
 *
 * Writes are durable before they are acknowledged. They go through a
 * committer thread that groups concurrent writes into one transaction (one
 * fsync for many requests); each write still succeeds or fails on its own.
 * Reads run on a bounded pool of connections and may be called from any thread.
 *
 * Back ends: SQLite (embedded, the default; file DATA/store.db in WAL mode).
 * No back-end type or idiom appears in this header.
 */
#ifndef CV_STORE_STORE_H
#define CV_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/ixentry.h"
#include "core/pool.h"
#include "core/rc.h"
#include "crypto/crypto.h"

typedef struct cv_store cv_store_t;

/* Progress of a long operation: done of total. */
typedef void (*cv_store_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* One version of a resource as stored. Pointers are valid until the pool
 * given to the read call is released. */
typedef struct cv_store_version {
	const char *type;      /* resource type, "Patient" */
	const char *rid;       /* row id (blind index, hex) */
	int64_t version;       /* 1, 2, ... */
	int64_t updated_us;    /* when it was written, microseconds since the epoch */
	int64_t seq;           /* global write order, increasing */
	bool deleted;          /* a tombstone */
	const uint8_t *body;   /* the resource JSON (opened), NUL-terminated */
	size_t body_len;       /* its length */
} cv_store_version_t;

typedef enum {
	CV_STORE_PUT_VERSION, /* a new version of a resource, with its search index */
	CV_STORE_PUT_META,    /* a meta value */
	CV_STORE_GROUP,       /* several writes that commit all together or not at all */
	CV_STORE_REINDEX,     /* replaces the search index of type/id if its current version is
	                         expect_version (else CV_E_NOTFOUND: it changed or went) */
	CV_STORE_BULK,        /* the writer uses more memory for speed from now on (bulk loading) */
	CV_STORE_CLAIM,       /* claims meta name `name` at updated_us: CV_E_CONFLICT when it was
	                         claimed less than CV_STORE_CLAIM_US before (serialises conditional
	                         creates across threads and nodes) */
	CV_STORE_AUDIT,       /* appends an audit record (`audit`, with its stored form as body)
	                         to the hash chain */
	CV_STORE_CHECKPOINT,  /* records a signed checkpoint (`checkpoint`); one already at its
	                         position is kept */
	CV_STORE_PUT_KEY,     /* stores a key row (`keyrow`) unless its id or its (owner, version)
	                         is taken (copies, system keys) */
	CV_STORE_KEY_REWRAP,  /* master key rotation: replaces the wrapped key of `keyrow->kid` with
	                         keyrow->wrapped, unless the key was destroyed meanwhile (active and
	                         retired keys are re-wrapped) */
	CV_STORE_KEY_RETIRE,  /* data key rotation: the active keys of `keyrow->owner` older than
	                         keyrow->version become retired */
	CV_STORE_RESEAL,      /* data key rotation: version expect_version of type/rid (`type`, the
	                         private rid) gets the sealed body `sealed` (the same content under
	                         another key: keyrow->kid), and its current row that key id; with
	                         `deleted` (its patient was erased: the key is a destroyed one's id
	                         on a throwaway key) the current row leaves the index too */
	CV_STORE_KEY_PURGE,   /* data key rotation, last step: every retired key is destroyed, but
	                         those of owner `keyrow->owner` (the audit trail's: its records are
	                         hash-chained as sealed and keep their key) and of the owner in
	                         `body` (16 bytes: the shared key's, whose old versions open the
	                         tokens sealed inside records: TOTP seeds, the id-token key) */
	CV_STORE_ERASE,       /* crypto-shredding: destroys every key of `keyrow->owner`, takes the
	                         resources whose current version they sealed out of the search
	                         index, and sets meta `name` to body (the erasure's record);
	                         `erased` gets the number of resources */
	CV_STORE_AUDIT_PRUNE, /* retention, after an archive was written and verified: removes
	                         the records up to audit_pos (with their search keys) and sets
	                         meta `name` to body (the signed base the chain now starts from) */
} cv_store_op;

/* --- the audit trail --------------------------------------------------------
 * Audit records live in their own table, one hash chain in commit order
 * (serialised in the database, so several nodes share one chain). Each row
 * holds the record's searchable fields (none of them PHI: the agent is an
 * account or client id; patients and resources are blinded keys), the sealed
 * AuditEvent, and the hash of the previous row; its own hash covers all of
 * them, as stored, so the chain is checked without any key. */
#define CV_AUDIT_KEY_BYTES 16   /* a blinded search key */
#define CV_AUDIT_HASH_BYTES 32  /* SHA-256 */

enum { /* cv_store_audit_t.flags */
	CV_AUDIT_F_DENIED = 1,      /* the policy refused the access */
	CV_AUDIT_F_BREAK_GLASS = 2, /* the access relied on (or declared) break-glass */
	CV_AUDIT_F_ALERT = 4,       /* a security alert */
	CV_AUDIT_F_SECURITY = 8,    /* authentication, administration, keys, configuration */
	CV_AUDIT_F_EXPORT = 16,     /* data left the system in bulk */
};

/* What a caller hands the store for one record. */
typedef struct cv_store_audit {
	const char *id;          /* the AuditEvent's id (a UUID) */
	int64_t at_us;           /* when it happened */
	char action;             /* 'C', 'R', 'U', 'D', 'E' */
	int outcome;             /* 0 success, 4 minor failure, 8 serious failure, 12 major failure */
	unsigned flags;          /* CV_AUDIT_F_* */
	const char *kind;        /* the event type code ("rest", "110114", ...) */
	const char *subtype;     /* the subtype code ("read", "login", ...) */
	const char *agent;       /* who: an account or client id, "bootstrap-admin", "anonymous" */
	int64_t nres;            /* resources delivered or changed */
	const char *const *keys; /* search keys (cv_audit_key_*): the store blinds them */
	size_t nkeys;
	size_t npat;             /* how many of the first keys are patients' */
} cv_store_audit_t;

/* One record as stored. body is sealed (opened only by cv_store_audit_search). */
typedef struct cv_store_audit_row {
	int64_t pos;             /* position in the chain, 1, 2, ... */
	int64_t at_us;
	char action;
	int outcome;
	unsigned flags;
	const char *kind, *subtype, *agent, *id;
	int64_t nres;
	const uint8_t *keys;     /* blinded keys, CV_AUDIT_KEY_BYTES each: npat patients' first */
	size_t keys_len;
	int64_t npat;
	const uint8_t *body;     /* as stored (sealed); opened in search results */
	size_t body_len;
	uint8_t prev[CV_AUDIT_HASH_BYTES]; /* the previous row's hash (zeros for the first) */
	uint8_t hash[CV_AUDIT_HASH_BYTES]; /* this row's */
	bool malformed;          /* a column is stored in a form the hash does not pin (another type, a NUL
				  * and more bytes, a number past its C type): read back, it would hash as
				  * the original while searches, which compare the stored value, miss it */
} cv_store_audit_row_t;

/* A signed checkpoint: the chain had `pos` records, the last one's hash `hash`. */
typedef struct cv_store_checkpoint {
	int64_t pos;
	int64_t at_us;
	uint8_t hash[CV_AUDIT_HASH_BYTES];
	uint8_t key[32];         /* the Ed25519 public key that signed it */
	uint8_t sig[64];
} cv_store_checkpoint_t;

#define CV_STORE_CLAIM_US (60LL * 1000000) /* how long a claim holds */

/* --- data keys -------------------------------------------------------------- */
#define CV_OWNER_BYTES 16 /* an owner as stored: a blinded name (never a patient id) */

enum { CV_KEY_ACTIVE = 1, CV_KEY_RETIRED = 2, CV_KEY_DESTROYED = 3 }; /* cv_store_key_row_t.state: a retired key
	still opens what it sealed, seals nothing new (rotation) */

/* One row of the key table. */
typedef struct cv_store_key_row {
	uint8_t kid[CV_KID_BYTES];
	uint8_t owner[CV_OWNER_BYTES];
	int64_t version;         /* 1, 2, ... (rotation adds versions) */
	int state;               /* CV_KEY_* */
	int64_t created_us;
	const uint8_t *wrapped;  /* the key sealed by the master key; empty once destroyed */
	size_t wrapped_len;
} cv_store_key_row_t;


/* A write. The caller owns it and keeps it (and what it points to) alive
 * until `done` is called. */
typedef struct cv_store_write {
	cv_store_op op;          /* what to write */
	const char *type;        /* PUT_VERSION: resource type */
	const char *id;          /* PUT_VERSION: logical id */
	int64_t expect_version;  /* PUT_VERSION: the current version the caller saw (0: none);
	                            the write stores expect_version + 1 or fails with CV_E_CONFLICT */
	int64_t updated_us;      /* PUT_VERSION: timestamp to record */
	bool deleted;            /* PUT_VERSION: write a tombstone */
	const char *name;        /* PUT_META: the name */
	const uint8_t *body;     /* resource JSON (a tombstone's may be minimal), or meta value */
	size_t body_len;         /* its length */
	const cv_ix_entry_t *index; /* PUT_VERSION, REINDEX: the version's search index entries */
	size_t nindex;           /* how many */
	const cv_store_audit_t *audit;          /* AUDIT: the record's fields (body: its stored form, audit.h) */
	const cv_store_checkpoint_t *checkpoint; /* CHECKPOINT */
	const char *owner;       /* PUT_VERSION: the patient whose key seals it (NULL: the shared key) */
	const cv_store_key_row_t *keyrow;       /* PUT_KEY; ERASE (its owner) */
	int64_t erased;          /* ERASE: set before done, the resources made unreadable */
	struct cv_store_write **members; /* GROUP: the writes (PUT_VERSION or PUT_META); each gets
	                                    its result; none is applied unless all succeed, and
	                                    then the members that did not fail get CV_E_ABORTED */
	size_t nmembers;         /* GROUP: how many */
	cv_rc result;            /* set before done: CV_OK, CV_E_CONFLICT, CV_E_STORAGE, CV_E_BUSY */
	int64_t seq;             /* set before done on success: the write's sequence number */
	void (*done)(struct cv_store_write *w); /* called once, from the committer thread, after the
	                                           commit is durable (or failed) */
	void *arg;               /* the caller's */
	/* private to the store: */
	struct cv_store_write *next;
	char rid[2 * CV_BLIND_BYTES + 1];
	cv_buf_t sealed;
	cv_buf_t blinded;        /* CV_IX_BLIND_BYTES per HASH entry, in entry order */
	bool skip;               /* a back end's: a failed group left out when the batch is redone */
	int64_t audit_pos;       /* AUDIT: set by the back end, its position in the chain;
	                            AUDIT_PRUNE: the last position removed (given) */
	struct cv_keyent *keyent; /* PUT_VERSION: the key that sealed it (pinned until done) */
	bool newkey;             /* PUT_VERSION: keyent is not stored yet: store it with the version
	                            (CV_E_CONFLICT if its owner got another key meanwhile) */
	int redo;                /* times the store sealed it again (a key retired meanwhile) */
} cv_store_write_t;

#define CV_IX_BLIND_BYTES 16 /* stored length of a blinded index key */

/* Opens the store. url "" (or NULL) means the embedded SQLite store in
 * data_dir. Runs schema migrations; on first open generates the index key and
 * the shared and audit data keys, stored wrapped by `master`. The store keeps
 * its own copy of `master` (guarded memory) to unwrap patients' keys on demand.
 * A read of a version whose key was destroyed answers CV_E_GONE.
 * err gets a message on failure. */
cv_rc cv_store_open(const char *data_dir, const char *url, unsigned read_conns, const cv_key_t *master,
		    cv_store_t **out, char *err, size_t errlen);

/* How many unwrapped data keys the store keeps cached at most (default
 * CV_STORE_KEY_CACHE); set before cv_store_open. */
#define CV_STORE_KEY_CACHE 4096
void cv_store_set_key_cache(size_t n);

/* The owner of a patient's data key as stored (a blinded "Patient/<id>"). */
void cv_store_patient_owner(cv_store_t *s, const char *patient_id, uint8_t out[CV_OWNER_BYTES]);

/* Erases a patient by crypto-shredding (an ERASE write): destroys their
 * keys and takes their resources out of the index, durably. *count gets
 * how many resources became unreadable; owner_hex (33 bytes) the blinded
 * owner, for the erasure ledger. CV_E_NOTFOUND when the patient has no key
 * (nothing of theirs is stored) and the store holds no legacy data (else a
 * destroyed key stands for theirs: see cv_store_legacy_pending); CV_E_GONE
 * when already erased. */
cv_rc cv_store_erase(cv_store_t *s, const char *patient_id, int64_t at_us, int64_t *count, char owner_hex[33]);

/* Master key rotation (see crypto.h, "the master key"): the version every
 * new wrap must use from now on, recorded in the store (meta
 * "master.version") so that every process wraps new keys with it: a process
 * still on an older version reads its master key source again, and the
 * store refuses a new key wrapped with an older version (the write retries). */
cv_rc cv_store_master_version_set(cv_store_t *s, uint32_t version);

/* Master key rotation: re-wraps, under the master key's current version,
 * every data key and master-wrapped system key still wrapped by another
 * version. Safe while servers run, and to run again (it resumes).
 * progress(arg, done, total) is called as keys are re-wrapped; *count gets
 * how many were. */
cv_rc cv_store_rewrap(cv_store_t *s, void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg,
		      uint64_t *count);

/* Data key rotation, step 1: a new key version for one patient's keys
 * (patient_id) or for every owner's (NULL: every patient, the shared key and
 * the audit trail's); the old versions are retired (they still open what
 * they sealed; a write racing with this is retried under the new one).
 * *count gets how many owners got a new key. CV_E_NOTFOUND when the patient
 * has no key; CV_E_CONFLICT when a rotation is unfinished (cv_store_reseal). */
cv_rc cv_store_rotate_keys(cv_store_t *s, const char *patient_id, uint64_t *count);

/* Whose compartment a resource is in (its first patient's id, into out,
 * or "" for none): for versions sealed under the data key of stores made
 * before per-patient keys, whose owner the store cannot tell. */
typedef cv_rc (*cv_store_owner_fn)(void *arg, const char *type, const char *json, size_t len, char out[65]);

/* Data key rotation, step 2 (also the resumption of an interrupted one):
 * re-encrypts every version sealed under a retired key with its owner's
 * current key (and, with owner_fn, every version under the legacy data key
 * with the key of the patient owner_fn names), in batches that record how
 * far they got (resumable after a crash), then destroys the retired keys
 * (not the audit trail's). progress: versions scanned of all. *resealed:
 * how many versions were re-encrypted. */
cv_rc cv_store_reseal(cv_store_t *s, cv_store_owner_fn owner_fn, void *owner_arg, cv_store_progress_fn progress,
		      void *arg, uint64_t *resealed);

/* Counts of the key table: active and destroyed keys, and how many keys
 * (and system keys) are wrapped by a version other than `version`. */
typedef struct cv_store_key_stats {
	uint64_t active, retired, destroyed, other_version;
} cv_store_key_stats_t;
cv_rc cv_store_key_stats(cv_store_t *s, uint32_t version, cv_store_key_stats_t *out);

/* The erasure ledger, DATA/erasures (store/ledger.c): one line per erasure,
 * the blinded owner (32 hex digits, no patient id) and the time. Kept with
 * the master key, apart from backups: a restore applies it. Created empty
 * (0600) by init; an erasure appended (fsynced); read line by line. */
#define CV_LEDGER_FILE "erasures"
cv_rc cv_ledger_create(const char *dir, char *err, size_t errlen);
cv_rc cv_ledger_append(const char *path, const char *owner_hex, int64_t at_us, char *err, size_t errlen);
typedef cv_rc (*cv_ledger_fn)(void *arg, const uint8_t owner[CV_OWNER_BYTES], int64_t at_us);
cv_rc cv_ledger_each(const char *path, cv_ledger_fn fn, void *arg, char *err, size_t errlen);

/* True while the store holds data written before per-patient keys (under
 * its single legacy data key) that a full data key rotation has not moved
 * to its patients' keys yet: an erasure makes such data of the patient
 * unreadable only when that rotation runs (carevault keys rotate-data). */
bool cv_store_legacy_pending(cv_store_t *s);

/* Whether an erasure of the patient would erase something: CV_OK (and the
 * blinded owner in owner_hex, for the ledger line written before it),
 * CV_E_NOTFOUND (nothing of theirs is stored), CV_E_GONE (erased already). */
cv_rc cv_store_erase_check(cv_store_t *s, const char *patient_id, char owner_hex[33]);

/* Every erasure the store records (meta "erased.<owner>"), as ledger lines:
 * the ledger of a deployment with several nodes is rebuilt from here. */
cv_rc cv_store_erasures(cv_store_t *s, cv_ledger_fn fn, void *arg);

/* Whether a patient has a key: CV_OK (their data is stored), CV_E_NOTFOUND
 * (nothing of theirs is), CV_E_GONE (erased). */
cv_rc cv_store_patient_key_state(cv_store_t *s, const char *patient_id);

/* How many keys the cache holds (tests, metrics). */
size_t cv_store_keys_cached(cv_store_t *s);

/* Finishes queued writes, stops the committer and closes (NULL is fine). */
void cv_store_close(cv_store_t *s);

/* CV_OK when the store answers queries (readiness). */
cv_rc cv_store_ping(cv_store_t *s);

/* Seals the write (in the caller's thread) and queues it; w->done is called
 * when it is durable or has failed. CV_E_BUSY, CV_E_NOMEM or CV_E_CRYPTO (and
 * no call of done) if it cannot be queued. */
cv_rc cv_store_submit(cv_store_t *s, cv_store_write_t *w);

/* Submits w and waits for it; returns w->result. w->done must be NULL.
 * With a companion set on this thread (below), a version or a group of them
 * commits with the companion's record, or not at all. */
cv_rc cv_store_write_sync(cv_store_t *s, cv_store_write_t *w);

/* A write's companion: "a write and its record commit in one transaction"
 * for writes made below the layer that knows the request (an account, a
 * client, an erasure request, written by auth/ for net/ or cli/). While one
 * is set on the calling thread, cv_store_write_sync asks fn for the record
 * of each version or group it is given: *rec an AUDIT write to commit in the
 * same transaction, or NULL when w is not the write the record is about.
 * An error from fn fails the write, unwritten. Once a record has committed
 * the companion is cleared (one record a request); conflicting attempts
 * retried by the caller ask again. */
typedef cv_rc (*cv_store_companion_fn)(void *arg, const cv_store_write_t *w, cv_store_write_t **rec);
void cv_store_companion_set(cv_store_companion_fn fn, void *arg);
void cv_store_companion_clear(void);

/* The version of internal type `type` that w writes (w itself, or a member
 * of the group w), or NULL: what a companion's record is about. */
const cv_store_write_t *cv_store_version_of(const cv_store_write_t *w, const char *type);

/* Reads a meta value into out. CV_E_NOTFOUND if absent. */
cv_rc cv_store_meta_get(cv_store_t *s, const char *name, cv_buf_t *out);

/* Reads a version of type/id: `version` 0 means the current (latest) one.
 * CV_E_NOTFOUND if there is no such row or version; CV_E_GONE if its key was
 * destroyed (its patient was erased). A tombstone is returned with deleted =
 * true. Strings and body are allocated in pool. */
cv_rc cv_store_read(cv_store_t *s, const char *type, const char *id, int64_t version, cv_pool_t *pool,
		    cv_store_version_t *out);

/* Internal record types (accounts, sessions, clients) start with '~', which
 * no FHIR type does: system-wide history (type NULL) leaves them out. */
#define CV_STORE_INTERNAL_PREFIX '~'

/* History query: newest first. type NULL = all FHIR types; id NULL = all
 * resources of the type. since_us > 0 keeps versions written at or after it; before_seq > 0
 * keeps versions with seq < before_seq (the paging cursor). */
typedef struct cv_store_history_query {
	const char *type;
	const char *id;
	int64_t since_us;
	int64_t before_seq;
	unsigned limit;
} cv_store_history_query_t;

/* Calls fn for each version found, newest first, at most q->limit times.
 * fn returning non-zero stops early with that code. */
typedef cv_rc (*cv_store_version_fn)(void *arg, const cv_store_version_t *v);
cv_rc cv_store_history(cv_store_t *s, const cv_store_history_query_t *q, cv_pool_t *pool,
		       cv_store_version_fn fn, void *arg);

/* --- search ---------------------------------------------------------------
 * A query over the current, not deleted versions of one resource type: an
 * AND of clauses, each an OR of terms over the index entries.
 */
typedef enum { CV_CMP_EQ, CV_CMP_NE, CV_CMP_GT, CV_CMP_LT, CV_CMP_GE, CV_CMP_LE, CV_CMP_SA, CV_CMP_EB,
	       CV_CMP_AP } cv_cmp;

typedef enum {
	CV_TERM_HASH,    /* an index entry with this key (the store blinds it) */
	CV_TERM_DATE,    /* a DATE entry of param whose range compares to [lo, hi] by cmp */
	CV_TERM_NUM,     /* a NUM entry of param (of unit `key` unless NULL) comparing to [nlo, nhi] */
	CV_TERM_ID,      /* the resource with logical id `key` */
	CV_TERM_UPDATED, /* last updated compares to [lo, hi] by cmp */
} cv_term_kind;

typedef struct cv_store_term {
	cv_term_kind kind;
	const char *param;  /* HASH, DATE, NUM */
	const char *key;    /* HASH: key text; NUM: unit or NULL (any); ID: the id */
	size_t key_len;     /* HASH: its length */
	cv_cmp cmp;         /* DATE, NUM, UPDATED */
	int64_t lo, hi;     /* DATE, UPDATED: the search value's range, inclusive */
	double nlo, nhi;    /* NUM: the search value's range (ap: already widened) */
} cv_store_term_t;

typedef struct cv_store_clause {
	bool negate;                  /* resources matching none of the terms */
	size_t n;                     /* terms, ORed */
	const cv_store_term_t *terms;
} cv_store_clause_t;

typedef enum { CV_SORT_DATE, CV_SORT_NUM, CV_SORT_UPDATED } cv_sort_kind;

typedef struct cv_store_sort {
	cv_sort_kind kind;
	const char *param;  /* DATE, NUM */
	bool desc;
} cv_store_sort_t;

#define CV_STORE_SORT_MAX 4

/* Where a page starts: the sort keys and row key of the last result before it. */
typedef struct cv_store_cursor {
	bool set;
	int64_t ikey[CV_STORE_SORT_MAX];   /* DATE, UPDATED keys */
	double dkey[CV_STORE_SORT_MAX];    /* NUM keys */
	int64_t rk;                        /* row key (creation order) */
} cv_store_cursor_t;

typedef struct cv_store_query {
	const char *type;
	size_t nclauses;                   /* ANDed */
	const cv_store_clause_t *clauses;
	size_t nsort;                      /* then by row key, ascending */
	cv_store_sort_t sort[CV_STORE_SORT_MAX];
	cv_store_cursor_t after;           /* keyset paging */
	unsigned limit;
	int64_t as_of_seq;                 /* > 0: a _lastUpdated sort key is the time of the version
	                                      current at this write sequence (cv_store_last_seq), so
	                                      pages keep their order while others update */
} cv_store_query_t;

/* One search result: the opened current version, and the cursor that
 * points just after it. */
typedef struct cv_store_hit {
	cv_store_version_t v;
	cv_store_cursor_t at;
} cv_store_hit_t;

typedef cv_rc (*cv_store_hit_fn)(void *arg, const cv_store_hit_t *hit);

/* Calls fn for each match in order, at most q->limit times (fn returning
 * non-zero stops early with that code). CV_E_INVALID for a malformed query. */
cv_rc cv_store_search(cv_store_t *s, const cv_store_query_t *q, cv_pool_t *pool, cv_store_hit_fn fn, void *arg);

/* The sequence number of the latest write (0 for an empty store). */
cv_rc cv_store_last_seq(cv_store_t *s, int64_t *out);

/* The sequence number of the latest write of a version of any of the n
 * types (at most CV_STORE_TYPES_SEQ_MAX; 0 when none has a version): it
 * moves when one of them is written, so a cache built from those types
 * stays valid while it holds. One index probe per type. Caveat (PostgreSQL,
 * several nodes): a write that took its sequence number before another
 * node's already committed write of these types, but commits after it,
 * does not move it. */
#define CV_STORE_TYPES_SEQ_MAX 6
cv_rc cv_store_types_seq(cv_store_t *s, const char *const *types, size_t n, int64_t *out);

/* Counts the matches of q (limit, sort and cursor ignored). */
cv_rc cv_store_count(cv_store_t *s, const cv_store_query_t *q, uint64_t *out);

/* Calls fn for the current versions of every resource of `type` (every type
 * when NULL), in row-key order after rk `after`, at most limit (for
 * reindexing and exports). */
cv_rc cv_store_scan_current(cv_store_t *s, const char *type, int64_t after, unsigned limit, cv_pool_t *pool,
			    cv_store_hit_fn fn, void *arg);

/* Calls fn for the current version of every resource (or internal record)
 * of `type`, in creation order, in batches (each batch's memory is released
 * after it: fn copies what it keeps). */
cv_rc cv_store_each_current(cv_store_t *s, const char *type, cv_store_hit_fn fn, void *arg);

/* The meta name that claims `text` (a conditional create's type and
 * criteria): "claim." and a blinded hash of it, so no criteria value is stored. */
void cv_store_claim_name(cv_store_t *s, const char *text, char out[64]);

/* Seals / opens a small token (paging cursors) under the store's data key,
 * bound to `purpose`: base64url text, tamper-proof, unreadable to clients. */
cv_rc cv_store_token_seal(cv_store_t *s, const char *purpose, const void *pt, size_t len, cv_buf_t *out);
cv_rc cv_store_token_open(cv_store_t *s, const char *purpose, const char *token, cv_buf_t *out);

/* Copies the embedded store in data_dir into the empty store at to_url, as
 * stored: sealed bodies stay sealed and the wrapped keys are copied, so the
 * same master key opens the copy and the destination never sees plaintext.
 * Then verifies that both hold the same number of versions and the same
 * SHA-256 over every version (type, row id, version, time, tombstone, sealed
 * body) and meta value. progress(arg, done, total) is called as versions are
 * copied. CV_E_CONFLICT if the destination is not empty. On success err holds
 * a one-line summary (count and checksum); on failure, what went wrong. */
cv_rc cv_store_copy(const char *data_dir, const char *to_url, void (*progress)(void *arg, uint64_t done,
		    uint64_t total), void *arg, char *err, size_t errlen);

/* --- backups ----------------------------------------------------------------
 * A backup is every record of the store as stored (sealed bodies and wrapped
 * keys stay as they are), read in one consistent snapshot while the store
 * serves, in a file encrypted and authenticated as a whole (store/backup.c,
 * decision 0010): a random backup key wrapped by the master key, the records
 * in chunks of libsodium's secretstream (XChaCha20-Poly1305; reordered,
 * dropped or truncated chunks do not open), the file's header bound to the
 * stream. The search index is not in it: a restored store is reindexed when
 * it first serves. */
typedef enum {
	CV_REC_META = 1, CV_REC_KEY, CV_REC_VERSION, CV_REC_AUDIT, CV_REC_AUDIT_HEAD, CV_REC_CHECKPOINT,
} cv_rec_type;

/* One record of a backup. */
typedef struct cv_store_rec {
	cv_rec_type type;
	const char *name;               /* META */
	const uint8_t *value;
	size_t value_len;
	cv_store_key_row_t key;         /* KEY */
	cv_store_version_t version;     /* VERSION (body sealed) */
	cv_store_audit_row_t audit;     /* AUDIT (body sealed); AUDIT_HEAD: pos and hash */
	cv_store_checkpoint_t checkpoint; /* CHECKPOINT */
} cv_store_rec_t;

typedef struct cv_store_backup_info {
	uint64_t records, versions, keys, audit;   /* counts */
	int64_t created_us;
	uint32_t master_version;        /* the master key version that wrapped the backup key */
	uint64_t bytes;                 /* the file's size */
} cv_store_backup_info_t;

/* Writes a backup of s to fd (a new file), in one consistent snapshot,
 * while s serves. progress is called as records are written. */
cv_rc cv_store_backup(cv_store_t *s, int fd, cv_store_progress_fn progress, void *arg, cv_store_backup_info_t *info,
		      char *err, size_t errlen);

/* Reads the backup at path through to its end and checks every chunk and
 * record, writing nothing: CV_E_CRYPTO (with a message saying where) when a
 * byte was changed, a chunk moved or dropped, or the file cut short;
 * CV_E_DENIED when the master key does not open it. */
cv_rc cv_store_backup_verify(const char *path, const cv_key_t *master, cv_store_progress_fn progress, void *arg,
			     cv_store_backup_info_t *info, char *err, size_t errlen);

/* Restores the backup at path into a new embedded store in data_dir (which
 * must hold no store): verifies the whole file first, then writes. */
cv_rc cv_store_restore(const char *path, const cv_key_t *master, const char *data_dir, cv_store_progress_fn progress,
		       void *arg, cv_store_backup_info_t *info, char *err, size_t errlen);

/* Serialises a record (appended to out) / parses one from p (at most len
 * bytes; *used gets how many it took; strings and bytes point into p; names
 * and texts are NUL-terminated copies in pool). CV_E_INVALID when p does not
 * hold a whole, well-formed record. */
cv_rc cv_store_rec_write(const cv_store_rec_t *r, cv_buf_t *out);
cv_rc cv_store_rec_parse(const uint8_t *p, size_t len, cv_pool_t *pool, cv_store_rec_t *out, size_t *used);

/* Erasure by a blinded owner (the erasure ledger's lines): as cv_store_erase. */
cv_rc cv_store_erase_owner(cv_store_t *s, const uint8_t owner[CV_OWNER_BYTES], int64_t at_us, int64_t *count);

/* --- reading the audit trail --------------------------------------------- */

/* Opens a store to check its audit trail only: no master key, nothing is
 * unwrapped, nothing can be opened or written (cv_store_audit_scan,
 * cv_store_audit_head, cv_store_audit_checkpoints work). */
cv_rc cv_store_open_raw(const char *data_dir, const char *url, cv_store_t **out, char *err, size_t errlen);

/* The hash of a row: SHA-256 over a fixed encoding of every stored field,
 * the previous hash and the position included. */
void cv_store_audit_hash(const cv_store_audit_row_t *r, uint8_t out[CV_AUDIT_HASH_BYTES]);

typedef cv_rc (*cv_store_audit_fn)(void *arg, const cv_store_audit_row_t *r);

/* Rows with pos > after, in chain order, at most limit; bodies stay sealed
 * (and are left out when !bodies). */
cv_rc cv_store_audit_scan(cv_store_t *s, int64_t after, unsigned limit, bool bodies, cv_pool_t *pool,
			  cv_store_audit_fn fn, void *arg);

/* The chain's head as the store records it (0 and zeros when empty). */
cv_rc cv_store_audit_head(cv_store_t *s, int64_t *pos, uint8_t hash[CV_AUDIT_HASH_BYTES]);

/* Every checkpoint in the store, in position order. */
cv_rc cv_store_audit_checkpoints(cv_store_t *s, cv_rc (*fn)(void *arg, const cv_store_checkpoint_t *c), void *arg);

/* A search key of a record: what one row of the lookup table holds. */
typedef struct cv_store_audit_pair {
	uint8_t k[CV_AUDIT_KEY_BYTES];
	int64_t pos;
} cv_store_audit_pair_t;

/* Checking the search-key lookup table against the records (audit verify;
 * no key needed: both hold blinded keys). *missing gets the position of the
 * first of the n pairs the table does not hold, 0 when it holds them all; *extra the first
 * position in [from, to] with a row whose record does not name its key (or
 * is not there), 0 when there is none. */
cv_rc cv_store_audit_keys_missing(cv_store_t *s, const cv_store_audit_pair_t *pairs, size_t n, int64_t *missing);
cv_rc cv_store_audit_keys_extra(cv_store_t *s, int64_t from, int64_t to, int64_t *extra);
/* How many rows the lookup table holds for positions in [from, to] (one scan:
 * the extra rows' query joins every row to its record). */
cv_rc cv_store_audit_keys_count(cv_store_t *s, int64_t from, int64_t to, int64_t *count);

/* The latest checkpoint (one index probe). CV_E_NOTFOUND when there is none. */
cv_rc cv_store_audit_last_checkpoint(cv_store_t *s, cv_store_checkpoint_t *out);

#define CV_AUDIT_QUERY_KEYS 4

/* A search of the trail, newest first. Unset fields (NULL, 0, -1 for
 * outcome) do not filter. */
typedef struct cv_store_audit_query {
	const char *keys[CV_AUDIT_QUERY_KEYS]; /* search keys (as in cv_store_audit_t), all required */
	size_t nkeys;
	const char *id;          /* one record */
	const char *agent;
	const char *agent_key;   /* with agent: rows with this search key match too (an app acting for a person) */
	int64_t from_us, to_us;  /* at_us within [from, to] */
	char action;
	int outcome;             /* -1: any */
	unsigned flags;          /* rows with all of these flags */
	const char *kind, *subtype;
	int64_t before_pos;      /* paging: rows with pos < before_pos */
	int64_t after_pos;       /* rows with pos > after_pos (exports: then oldest first) */
	bool ascending;          /* oldest first */
	unsigned limit;
} cv_store_audit_query_t;

/* Calls fn for each matching row with its body opened (the record as the
 * audit trail stored it, body_len bytes and a NUL after them; audit/'s
 * cv_audit_search renders it as AuditEvent JSON). */
cv_rc cv_store_audit_search(cv_store_t *s, const cv_store_audit_query_t *q, cv_pool_t *pool, cv_store_audit_fn fn,
			    void *arg);

#endif
