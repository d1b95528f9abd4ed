/*
 * backend.h - what a storage back end provides to store.c (private to store/).
 *
 * store.c owns the committer thread and the write queue; a back end provides
 * connections, reads, and the application of one batch of writes as one
 * durable transaction. Only the back end's own file includes its library.
 */
#ifndef CV_STORE_BACKEND_H
#define CV_STORE_BACKEND_H

#include "store/keyring.h"
#include "store/store.h"

struct cv_sql;

typedef struct cv_backend cv_backend_t;

typedef struct cv_backend_ops {
	/* Applies writes (linked by ->next) in one transaction; sets each
	 * ->result and ->seq. A write that fails alone (conflict) does not
	 * undo the others. On a failed commit every write gets CV_E_STORAGE
	 * (CV_E_BUSY when the database is unreachable); a group's members may
	 * keep the results they had, store.c gives them the group's. */
	void (*apply)(cv_backend_t *b, cv_store_write_t *batch);
	cv_rc (*ping)(cv_backend_t *b);
	cv_rc (*meta_get)(cv_backend_t *b, const char *name, cv_buf_t *out);
	cv_rc (*read)(cv_backend_t *b, const char *type, const char *rid, int64_t version, cv_pool_t *pool,
		      cv_store_version_t *out);
	cv_rc (*history)(cv_backend_t *b, const cv_store_history_query_t *q, const char *rid,
			 cv_pool_t *pool, cv_store_version_fn fn, void *arg);
	void (*close)(cv_backend_t *b);
	/* For copying a store: how many versions there are, the versions with
	 * seq > after_seq in seq order (sealed bodies, at most limit), and every
	 * meta value. */
	cv_rc (*count)(cv_backend_t *b, uint64_t *versions);
	cv_rc (*scan)(cv_backend_t *b, int64_t after_seq, unsigned limit, cv_pool_t *pool,
		      cv_store_version_fn fn, void *arg);
	cv_rc (*scan_meta)(cv_backend_t *b, cv_rc (*fn)(void *arg, const char *name, const uint8_t *value,
							size_t len), void *arg);
	/* Search (store/query.h builds the SQL): q's HASH keys are blinded and
	 * its ID terms hold row ids; hits carry sealed bodies. */
	cv_rc (*search)(cv_backend_t *b, const cv_store_query_t *q, cv_pool_t *pool, cv_store_hit_fn fn, void *arg);
	cv_rc (*search_count)(cv_backend_t *b, const cv_store_query_t *q, uint64_t *out);
	cv_rc (*last_seq)(cv_backend_t *b, int64_t *out);
	cv_rc (*types_seq)(cv_backend_t *b, const char *const *types, size_t n, int64_t *out);
	/* Current, not deleted versions in row-key order (type NULL: all types). */
	cv_rc (*scan_current)(cv_backend_t *b, const char *type, int64_t after, unsigned limit, cv_pool_t *pool,
			      cv_store_hit_fn fn, void *arg);
	/* The audit trail: rows of an audit SELECT built by cv_query_audit_sql
	 * (bodies sealed), the recorded head, and the checkpoints. */
	cv_rc (*audit_rows)(cv_backend_t *b, const struct cv_sql *sql, cv_pool_t *pool, cv_store_audit_fn fn, void *arg);
	cv_rc (*audit_head)(cv_backend_t *b, int64_t *pos, uint8_t hash[CV_AUDIT_HASH_BYTES]);
	/* Checking the search-key lookup table (store.h, cv_store_audit_keys_*). */
	cv_rc (*audit_keys_missing)(cv_backend_t *b, const cv_store_audit_pair_t *pairs, size_t n, int64_t *missing);
	cv_rc (*audit_keys_extra)(cv_backend_t *b, int64_t from, int64_t to, int64_t *extra);
	cv_rc (*audit_keys_count)(cv_backend_t *b, int64_t from, int64_t to, int64_t *count);
	cv_rc (*audit_checkpoints)(cv_backend_t *b, bool last_only, cv_rc (*fn)(void *arg, const cv_store_checkpoint_t *c),
				   void *arg);
	/* Data keys: the row of key id kid, the current (highest version) row
	 * of an owner, CV_E_NOTFOUND when none; row->wrapped points into
	 * wrapped. And every row after `after` (NULL: from the first) in
	 * (owner, version) order (copies, rotation). */
	cv_rc (*key_get)(cv_backend_t *b, const uint8_t kid[CV_KID_BYTES], cv_store_key_row_t *row, cv_buf_t *wrapped);
	cv_rc (*key_current)(cv_backend_t *b, const uint8_t owner[CV_OWNER_BYTES], cv_store_key_row_t *row,
			     cv_buf_t *wrapped);
	cv_rc (*key_scan)(cv_backend_t *b, const cv_store_key_row_t *after,
			  cv_rc (*fn)(void *arg, const cv_store_key_row_t *row), void *arg);
	/* Backups: every record (meta but index.* and claim.*, keys, versions in
	 * seq order, audit rows in position order, the head, checkpoints) from
	 * one consistent snapshot, each handed to fn (its pointers valid during
	 * the call). */
	cv_rc (*dump)(cv_backend_t *b, cv_rc (*fn)(void *arg, const cv_store_rec_t *r), void *arg);
	/* Restores: stores n records as they are, in one transaction (versions
	 * also make their current rows, audit rows their search keys). Into an
	 * empty store only. PostgreSQL loads the audit trail's records only
	 * (AUDIT, AUDIT_HEAD, CHECKPOINT; CV_E_INVALID for others): migrate-store
	 * copies the rest with apply, and a backup is restored into the embedded
	 * store, then migrated. */
	cv_rc (*load)(cv_backend_t *b, const cv_store_rec_t *recs, size_t n);
} cv_backend_ops_t;

/* How a back end applies the key parts of writes (the same in each):
 * - PUT_VERSION: the version row's key id (cv_resource.kid) is the sealed
 *   body's (cv_crypto_blob_kid). With w->newkey, after the version check and
 *   before the insert: INSERT the key row (w->keyent->row) unless its kid or
 *   (owner, version) exists, then read the kid stored for (owner, version):
 *   another kid means another writer gave the owner a key first, and the
 *   write fails with CV_E_CONFLICT, having written nothing. Without it, the
 *   write fails with CV_E_GONE (having written nothing) when its key's row
 *   is CV_KEY_DESTROYED: an erasure elsewhere, before this process noticed
 *   (PostgreSQL: the row is read FOR SHARE, and ERASE updates the key rows
 *   first, so the two serialise); with CV_E_AGAIN when it is CV_KEY_RETIRED
 *   (a rotation: store.c seals the write again under the new key and redoes it).
 * - KEY_RETIRE: CV_E_GONE when no active key of the owner was retired (it was
 *   erased meanwhile: the rotation's new key must not be stored).
 * - PUT_KEY: the same insert, ignoring a row that exists.
 * - ERASE: delete the index entries of the resources whose current row's
 *   kid is one of the owner's keys, mark those resources deleted (w->erased
 *   gets how many), set every key row of the owner to CV_KEY_DESTROYED with
 *   an empty wrapped key, set meta w->name to w->body and meta "keys.epoch"
 *   to w->name; after the commit, make the old key bytes unrecoverable where
 *   the engine allows (SQLite: secure_delete and a truncating checkpoint;
 *   PostgreSQL: VACUUM of the key table). */

/* The head of the chain while a batch is applied: a back end reads it from
 * the database (locked) at the batch's first audit record and writes it back
 * before the commit. */
typedef struct cv_audit_chain {
	bool loaded;
	int64_t pos;
	uint8_t hash[CV_AUDIT_HASH_BYTES];
} cv_audit_chain_t;

/* Fills row from an AUDIT write as it will be stored at the chain's next
 * position, and advances the chain (store/audit.c). */
void cv_audit_chain_next(cv_audit_chain_t *c, cv_store_write_t *w, cv_store_audit_row_t *row);

/* Back ends see only row ids and sealed bodies: a write's rid and sealed
 * fields, a query's rid (in place of the id), and they return sealed bodies
 * that store.c opens. */

/* Opens the SQLite back end on DATA/store.db (store/sqlite.c). */
cv_rc cv_sqlite_open(const char *data_dir, unsigned read_conns, cv_backend_t **out,
		     const cv_backend_ops_t **ops, char *err, size_t errlen);

/* Opens the PostgreSQL back end on a libpq connection string or URL
 * (store/postgres.c). Refuses a URL that carries a password. */
cv_rc cv_postgres_open(const char *url, unsigned read_conns, cv_backend_t **out, const cv_backend_ops_t **ops,
		       char *err, size_t errlen);

#endif
