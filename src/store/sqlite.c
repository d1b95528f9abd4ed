/*
 * sqlite.c - the embedded back end: SQLite in WAL mode, DATA/store.db.
 *
 * One writer connection, used only by the committer thread, with
 * synchronous=FULL so a commit is on disk before writes are acknowledged.
 * A bounded pool of read connections (query_only) serves reads from any
 * thread; WAL lets them run while the committer writes.
 */
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "core/log.h"
#include "core/time.h"
#include "store/backend.h"
#include "store/query.h"
#include "store/slots.h"

#define READ_CONNS_MAX CV_SLOTS_MAX

typedef struct rconn {
	sqlite3 *db;
	sqlite3_stmt *read_cur;  /* current version of a row */
	sqlite3_stmt *read_ver;  /* one version of a row */
	sqlite3_stmt *meta_get;  /* a meta value */
	sqlite3_stmt *last_seq;  /* the latest write's sequence number */
	sqlite3_stmt *types_seq; /* the latest write's sequence number among some types */
	sqlite3_stmt *key_get;   /* a key row by id */
	sqlite3_stmt *key_cur;   /* an owner's current key row */
} rconn_t;

struct cv_backend {
	sqlite3 *wdb;                 /* the writer (committer thread only) */
	sqlite3_stmt *w_cur;          /* current version, inside the write transaction */
	sqlite3_stmt *w_ins;          /* insert a version */
	sqlite3_stmt *w_meta;         /* upsert a meta value */
	sqlite3_stmt *w_res;          /* upsert the current-version row, returning its row key */
	sqlite3_stmt *w_rk;           /* row key of a current, not deleted resource */
	sqlite3_stmt *w_del[3];       /* delete a row key's hash, date and number entries */
	sqlite3_stmt *w_insh;         /* insert a hash entry */
	sqlite3_stmt *w_insd;         /* insert a date entry */
	sqlite3_stmt *w_insn;         /* insert a number entry */
	sqlite3_stmt *w_claim;        /* claim a meta name unless claimed recently */
	sqlite3_stmt *w_prune;        /* forget old claims */
	sqlite3_stmt *w_ahead;        /* the audit chain's head */
	sqlite3_stmt *w_aset;         /* record the head */
	sqlite3_stmt *w_arow;         /* insert an audit row */
	sqlite3_stmt *w_akey;         /* insert an audit search key */
	sqlite3_stmt *w_acp;          /* insert a checkpoint (unless one is at its position) */
	sqlite3_stmt *w_kins;         /* insert a key row unless taken */
	sqlite3_stmt *w_kown;         /* the kid stored for (owner, version) */
	sqlite3_stmt *w_kstate;       /* a key's state */
	sqlite3_stmt *w_krewrap;      /* a key's new wrapping */
	sqlite3_stmt *w_mver;         /* meta master.version */
	sqlite3_stmt *w_begin;        /* BEGIN IMMEDIATE and COMMIT of a batch, parsed once */
	sqlite3_stmt *w_commit;
	bool shredded;                /* the batch erased keys: checkpoint the WAL away after it */
	bool scrub_pending;           /* a truncating checkpoint after an erasure has not succeeded yet */
	int64_t scrub_tried_us;       /* when it was last tried */
	cv_audit_chain_t chain;       /* the head while a batch is applied */
	unsigned claims;              /* claims since the last prune */
	rconn_t readers[READ_CONNS_MAX];
	cv_slots_t slots;                 /* which readers are free */
};

/* Schema migrations, applied in order; PRAGMA user_version records how many ran. */
static const char *const migrations[] = {
	/* 1: meta values and resource versions */
	"CREATE TABLE cv_meta(name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE cv_version("
	"  seq INTEGER PRIMARY KEY,"
	"  type TEXT NOT NULL,"
	"  rid TEXT NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  updated_us INTEGER NOT NULL,"
	"  deleted INTEGER NOT NULL,"
	"  body BLOB NOT NULL,"
	"  UNIQUE(type, rid, version));"
	"CREATE INDEX cv_version_type_seq ON cv_version(type, seq);",
	/* 2: current versions and the search index (store/query.h) */
	"CREATE TABLE cv_resource("
	"  rk INTEGER PRIMARY KEY,"
	"  type TEXT NOT NULL,"
	"  rid TEXT NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  seq INTEGER NOT NULL,"
	"  updated_us INTEGER NOT NULL,"
	"  deleted INTEGER NOT NULL,"
	"  UNIQUE(type, rid));"
	"CREATE INDEX cv_resource_type ON cv_resource(type, rk);"
	"CREATE TABLE cv_ix_hash(h BLOB NOT NULL, rk INTEGER NOT NULL, PRIMARY KEY(h, rk)) WITHOUT ROWID;"
	"CREATE INDEX cv_ix_hash_rk ON cv_ix_hash(rk);"
	"CREATE TABLE cv_ix_date(rk INTEGER NOT NULL, param TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL);"
	"CREATE INDEX cv_ix_date_rk ON cv_ix_date(rk, param);"
	"CREATE TABLE cv_ix_num(rk INTEGER NOT NULL, param TEXT NOT NULL, unit TEXT NOT NULL, lo REAL NOT NULL,"
	"  hi REAL NOT NULL);"
	"CREATE INDEX cv_ix_num_rk ON cv_ix_num(rk, param);"
	"INSERT INTO cv_resource(type, rid, version, seq, updated_us, deleted) "
	"  SELECT type, rid, version, seq, updated_us, deleted FROM cv_version v WHERE version = "
	"  (SELECT max(version) FROM cv_version w WHERE w.type = v.type AND w.rid = v.rid) ORDER BY seq;",
	/* 3: the audit trail (store.h, "the audit trail") */
	"CREATE TABLE cv_audit("
	"  pos INTEGER PRIMARY KEY,"
	"  at_us INTEGER NOT NULL,"
	"  action TEXT NOT NULL,"
	"  outcome INTEGER NOT NULL,"
	"  flags INTEGER NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  subtype TEXT NOT NULL,"
	"  agent TEXT NOT NULL,"
	"  id TEXT NOT NULL,"
	"  nres INTEGER NOT NULL,"
	"  keys BLOB NOT NULL,"
	"  body BLOB NOT NULL,"
	"  prev BLOB NOT NULL,"
	"  hash BLOB NOT NULL,"
	"  npat INTEGER NOT NULL);"
	"CREATE INDEX cv_audit_id ON cv_audit(id);"
	"CREATE INDEX cv_audit_at ON cv_audit(at_us);"
	"CREATE INDEX cv_audit_agent ON cv_audit(agent, pos);"
	"CREATE TABLE cv_audit_key(k BLOB NOT NULL, pos INTEGER NOT NULL, PRIMARY KEY(k, pos)) WITHOUT ROWID;"
	"CREATE TABLE cv_audit_head(one INTEGER PRIMARY KEY CHECK (one = 1), pos INTEGER NOT NULL, hash BLOB NOT NULL);"
	"INSERT INTO cv_audit_head VALUES (1, 0, zeroblob(32));"
	"CREATE TABLE cv_audit_checkpoint(pos INTEGER PRIMARY KEY, at_us INTEGER NOT NULL, hash BLOB NOT NULL,"
	"  key BLOB NOT NULL, sig BLOB NOT NULL);",
	/* 4: data keys per owner (store.h, "data keys"); which key seals each current version */
	"CREATE TABLE cv_key("
	"  kid BLOB PRIMARY KEY,"
	"  owner BLOB NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  state INTEGER NOT NULL,"
	"  created_us INTEGER NOT NULL,"
	"  wrapped BLOB NOT NULL,"
	"  UNIQUE(owner, version)) WITHOUT ROWID;"
	"ALTER TABLE cv_resource ADD COLUMN kid BLOB;",
};

#define SQL_KEY_COLS "SELECT kid, owner, version, state, created_us, wrapped FROM cv_key "

/* One index probe per type (cv_version_type_seq): the latest sequence among them. */
#define SQL_TYPES_SEQ                                                                                               \
	"SELECT COALESCE(max(m), 0) FROM (SELECT (SELECT max(seq) FROM cv_version WHERE type = ?1) m UNION ALL "    \
	"SELECT (SELECT max(seq) FROM cv_version WHERE type = ?2) UNION ALL "                                       \
	"SELECT (SELECT max(seq) FROM cv_version WHERE type = ?3) UNION ALL "                                       \
	"SELECT (SELECT max(seq) FROM cv_version WHERE type = ?4) UNION ALL "                                       \
	"SELECT (SELECT max(seq) FROM cv_version WHERE type = ?5) UNION ALL "                                       \
	"SELECT (SELECT max(seq) FROM cv_version WHERE type = ?6))"
#define SQL_CUR "SELECT seq, version, updated_us, deleted, body FROM cv_version " \
		"WHERE type = ?1 AND rid = ?2 ORDER BY version DESC LIMIT 1"
#define SQL_VER "SELECT seq, version, updated_us, deleted, body FROM cv_version " \
		"WHERE type = ?1 AND rid = ?2 AND version = ?3"

static cv_rc db_error(sqlite3 *db, const char *what)
{
	cv_log_field_t f[2] = { CV_LS("op", what), CV_LS("error", sqlite3_errmsg(db)) };
	cv_log(CV_LOG_ERROR, "store.sqlite", f, 2);
	return CV_E_STORAGE;
}

static cv_rc exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		cv_log_field_t f[1] = { CV_LS("error", msg ? msg : "?") };
		cv_log(CV_LOG_ERROR, "store.sqlite", f, 1);
		sqlite3_free(msg);
		return CV_E_STORAGE;
	}
	return CV_OK;
}

static cv_rc open_conn(const char *path, int create, sqlite3 **out, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open store %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
		sqlite3_close(db);
		return CV_E_STORAGE;
	}
	sqlite3_busy_timeout(db, 10000);
	sqlite3_extended_result_codes(db, 1);
	*out = db;
	return CV_OK;
}

static cv_rc migrate(sqlite3 *db, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int have = 0;
	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		have = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	int want = (int)(sizeof migrations / sizeof migrations[0]);
	if (have > want) {
		snprintf(err, errlen, "the store has schema %d, newer than this carevault (%d): upgrade carevault",
			 have, want);
		return CV_E_STORAGE;
	}
	for (int v = have; v < want; v++) {
		char pragma[64];
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
		if (exec(db, "BEGIN IMMEDIATE") || exec(db, migrations[v]) || exec(db, pragma) ||
		    exec(db, "COMMIT")) {
			exec(db, "ROLLBACK");
			snprintf(err, errlen, "schema migration %d failed", v + 1);
			return CV_E_STORAGE;
		}
		cv_log_field_t f[1] = { CV_LI("schema", v + 1) };
		cv_log(CV_LOG_INFO, "store.migrated", f, 1);
	}
	return CV_OK;
}

static cv_rc prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
		return db_error(db, "prepare");
	return CV_OK;
}

static cv_rc open_reader(const char *path, rconn_t *r, char *err, size_t errlen)
{
	cv_rc rc = open_conn(path, 0, &r->db, err, errlen);
	if (!rc)
		rc = exec(r->db, "PRAGMA query_only = 1; PRAGMA temp_store = MEMORY");
	if (!rc)
		rc = prepare(r->db, SQL_CUR, &r->read_cur);
	if (!rc)
		rc = prepare(r->db, SQL_VER, &r->read_ver);
	if (!rc)
		rc = prepare(r->db, "SELECT value FROM cv_meta WHERE name = ?1", &r->meta_get);
	if (!rc)
		rc = prepare(r->db, "SELECT COALESCE(max(seq), 0) FROM cv_version", &r->last_seq);
	if (!rc)
		rc = prepare(r->db, SQL_TYPES_SEQ, &r->types_seq);
	if (!rc)
		rc = prepare(r->db, SQL_KEY_COLS "WHERE kid = ?1", &r->key_get);
	if (!rc)
		rc = prepare(r->db, SQL_KEY_COLS "WHERE owner = ?1 ORDER BY version DESC LIMIT 1", &r->key_cur);
	if (rc && !err[0])
		snprintf(err, errlen, "cannot prepare store queries");
	return rc;
}

static void close_reader(rconn_t *r)
{
	sqlite3_finalize(r->read_cur);
	sqlite3_finalize(r->read_ver);
	sqlite3_finalize(r->meta_get);
	sqlite3_finalize(r->last_seq);
	sqlite3_finalize(r->types_seq);
	sqlite3_finalize(r->key_get);
	sqlite3_finalize(r->key_cur);
	sqlite3_close(r->db);
}

static void sqlite_close(cv_backend_t *b)
{
	if (!b)
		return;
	for (unsigned i = 0; i < b->slots.n; i++)
		close_reader(&b->readers[i]);
	sqlite3_finalize(b->w_cur);
	sqlite3_finalize(b->w_ins);
	sqlite3_finalize(b->w_meta);
	sqlite3_finalize(b->w_res);
	sqlite3_finalize(b->w_rk);
	for (int i = 0; i < 3; i++)
		sqlite3_finalize(b->w_del[i]);
	sqlite3_finalize(b->w_insh);
	sqlite3_finalize(b->w_insd);
	sqlite3_finalize(b->w_insn);
	sqlite3_finalize(b->w_claim);
	sqlite3_finalize(b->w_prune);
	sqlite3_finalize(b->w_ahead);
	sqlite3_finalize(b->w_aset);
	sqlite3_finalize(b->w_arow);
	sqlite3_finalize(b->w_akey);
	sqlite3_finalize(b->w_acp);
	sqlite3_finalize(b->w_kins);
	sqlite3_finalize(b->w_kown);
	sqlite3_finalize(b->w_kstate);
	sqlite3_finalize(b->w_krewrap);
	sqlite3_finalize(b->w_mver);
	sqlite3_finalize(b->w_begin);
	sqlite3_finalize(b->w_commit);
	if (b->wdb) {
		/* leave a checkpointed database behind */
		sqlite3_wal_checkpoint_v2(b->wdb, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
		sqlite3_close(b->wdb);
	}
	cv_slots_release(&b->slots);
	free(b);
}

static rconn_t *reader_take(cv_backend_t *b)
{
	return &b->readers[cv_slots_take(&b->slots)];
}

static void reader_give(cv_backend_t *b, rconn_t *r)
{
	cv_slots_give(&b->slots, (unsigned)(r - b->readers));
}

static cv_rc row_to_version(sqlite3_stmt *st, const char *type, const char *rid, cv_pool_t *pool,
			    cv_store_version_t *out)
{
	out->seq = sqlite3_column_int64(st, 0);
	out->version = sqlite3_column_int64(st, 1);
	out->updated_us = sqlite3_column_int64(st, 2);
	out->deleted = sqlite3_column_int(st, 3) != 0;
	const void *body = sqlite3_column_blob(st, 4);
	size_t len = (size_t)sqlite3_column_bytes(st, 4);
	uint8_t *copy = cv_pool_alloc(pool, len ? len : 1);
	out->type = cv_pool_strdup(pool, type);
	out->rid = cv_pool_strdup(pool, rid);
	if (!copy || !out->type || !out->rid)
		return CV_E_NOMEM;
	if (len)
		memcpy(copy, body, len);
	out->body = copy;
	out->body_len = len;
	return CV_OK;
}

static cv_rc sqlite_read(cv_backend_t *b, const char *type, const char *rid, int64_t version,
			 cv_pool_t *pool, cv_store_version_t *out)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = version ? r->read_ver : r->read_cur;
	sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, rid, -1, SQLITE_STATIC);
	if (version)
		sqlite3_bind_int64(st, 3, version);
	cv_rc rc;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		rc = row_to_version(st, type, rid, pool, out);
	else if (s == SQLITE_DONE)
		rc = CV_E_NOTFOUND;
	else
		rc = db_error(r->db, "read");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_meta_get(cv_backend_t *b, const char *name, cv_buf_t *out)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = r->meta_get;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	cv_rc rc;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		rc = cv_buf_append(out, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
	else if (s == SQLITE_DONE)
		rc = CV_E_NOTFOUND;
	else
		rc = db_error(r->db, "meta_get");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_ping(cv_backend_t *b)
{
	rconn_t *r = reader_take(b);
	cv_rc rc = exec(r->db, "SELECT 1 FROM cv_meta LIMIT 1");
	reader_give(b, r);
	return rc;
}

/* Steps st (columns seq, version, updated_us, deleted, body, type, rid) and
 * calls fn for each row until it returns non-zero. */
static cv_rc each_version(rconn_t *r, sqlite3_stmt *st, cv_pool_t *pool, cv_store_version_fn fn, void *arg,
			  const char *what)
{
	cv_rc rc = CV_OK;
	int s;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		cv_store_version_t v;
		rc = row_to_version(st, (const char *)sqlite3_column_text(st, 5),
				    (const char *)sqlite3_column_text(st, 6), pool, &v);
		if (!rc)
			rc = fn(arg, &v);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_error(r->db, what);
	return rc;
}

static cv_rc history_sql(const cv_store_history_query_t *q, const char *rid, cv_buf_t *sql)
{
	cv_rc rc = cv_buf_puts(sql, "SELECT seq, version, updated_us, deleted, body, type, rid "
				    "FROM cv_version WHERE 1");
	if (!rc)
		rc = cv_buf_puts(sql, q->type ? " AND type = ?1" : " AND type NOT LIKE '~%'");
	if (!rc && rid)
		rc = cv_buf_puts(sql, " AND rid = ?2");
	if (!rc && q->since_us > 0)
		rc = cv_buf_puts(sql, " AND updated_us >= ?3");
	if (!rc && q->before_seq > 0)
		rc = cv_buf_puts(sql, " AND seq < ?4");
	if (!rc)
		rc = cv_buf_puts(sql, " ORDER BY seq DESC LIMIT ?5");
	return rc;
}

static cv_rc sqlite_history(cv_backend_t *b, const cv_store_history_query_t *q, const char *rid,
			    cv_pool_t *pool, cv_store_version_fn fn, void *arg)
{
	cv_buf_t sql;
	cv_buf_init(&sql, 1024);
	cv_rc rc = history_sql(q, rid, &sql);
	if (rc)
		return rc;
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(r->db, sql.data, -1, &st, NULL) != SQLITE_OK) {
		rc = db_error(r->db, "history");
		goto out;
	}
	if (q->type)
		sqlite3_bind_text(st, 1, q->type, -1, SQLITE_STATIC);
	if (rid)
		sqlite3_bind_text(st, 2, rid, -1, SQLITE_STATIC);
	if (q->since_us > 0)
		sqlite3_bind_int64(st, 3, q->since_us);
	if (q->before_seq > 0)
		sqlite3_bind_int64(st, 4, q->before_seq);
	sqlite3_bind_int64(st, 5, q->limit);
	rc = each_version(r, st, pool, fn, arg, "history");
out:
	sqlite3_finalize(st);
	reader_give(b, r);
	cv_buf_release(&sql);
	return rc;
}

/* Steps a write statement once and resets it; SQLITE_DONE or SQLITE_ROW is success. */
static cv_rc step_once(cv_backend_t *b, sqlite3_stmt *st, const char *what)
{
	int s = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return s == SQLITE_DONE || s == SQLITE_ROW ? CV_OK : db_error(b->wdb, what);
}

/* Replaces the index entries of row key rk with w's (a resource's first
 * version has none to remove). */
static cv_rc write_index(cv_backend_t *b, int64_t rk, const cv_store_write_t *w, int deleted)
{
	cv_rc rc = CV_OK;
	bool fresh = w->op == CV_STORE_PUT_VERSION && w->expect_version == 0;
	for (int i = 0; !rc && !fresh && i < 3; i++) {
		sqlite3_bind_int64(b->w_del[i], 1, rk);
		rc = step_once(b, b->w_del[i], "index_delete");
	}
	size_t h = 0;
	for (size_t i = 0; !rc && !deleted && i < w->nindex; i++) {
		const cv_ix_entry_t *e = &w->index[i];
		sqlite3_stmt *st;
		if (e->kind == CV_IX_HASH) {
			st = b->w_insh;
			sqlite3_bind_blob(st, 1, w->blinded.data + h * CV_IX_BLIND_BYTES, CV_IX_BLIND_BYTES,
					  SQLITE_STATIC);
			h++;
		} else if (e->kind == CV_IX_DATE) {
			st = b->w_insd;
			sqlite3_bind_text(st, 2, e->param, -1, SQLITE_STATIC);
			sqlite3_bind_int64(st, 3, e->lo);
			sqlite3_bind_int64(st, 4, e->hi);
		} else {
			st = b->w_insn;
			sqlite3_bind_text(st, 2, e->param, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 3, e->key ? e->key : "", -1, SQLITE_STATIC);
			sqlite3_bind_double(st, 4, e->nlo);
			sqlite3_bind_double(st, 5, e->nhi);
		}
		sqlite3_bind_int64(st, e->kind == CV_IX_HASH ? 2 : 1, rk);
		rc = step_once(b, st, "index_insert");
	}
	return rc;
}

/* Records w as the current version of its resource; *rk gets the row key. */
static cv_rc put_current(cv_backend_t *b, const cv_store_write_t *w, int64_t version, int64_t *rk)
{
	sqlite3_stmt *st = b->w_res;
	sqlite3_bind_text(st, 1, w->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, w->rid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, version);
	sqlite3_bind_int64(st, 4, w->seq);
	sqlite3_bind_int64(st, 5, w->updated_us);
	sqlite3_bind_int(st, 6, w->deleted ? 1 : 0);
	uint8_t kid[CV_KID_BYTES];
	if (!cv_crypto_blob_kid((const uint8_t *)w->sealed.data, w->sealed.len, kid))
		sqlite3_bind_blob(st, 7, kid, CV_KID_BYTES, SQLITE_TRANSIENT);
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		*rk = sqlite3_column_int64(st, 0);
	/* RETURNING finishes its work on the first step; reset completes it */
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return s == SQLITE_ROW ? CV_OK : db_error(b->wdb, "current_row");
}

/* Stores a key row unless its id or (owner, version) is taken. With
 * `must_win`, CV_E_CONFLICT when (owner, version) holds another key. */
static cv_rc insert_key(cv_backend_t *b, const cv_store_key_row_t *k, bool must_win)
{
	sqlite3_stmt *st = b->w_kins;
	sqlite3_bind_blob(st, 1, k->kid, CV_KID_BYTES, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, k->owner, CV_OWNER_BYTES, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, k->version);
	sqlite3_bind_int(st, 4, k->state);
	sqlite3_bind_int64(st, 5, k->created_us);
	sqlite3_bind_blob(st, 6, k->wrapped_len ? (const void *)k->wrapped : "", (int)k->wrapped_len, SQLITE_STATIC);
	cv_rc rc = step_once(b, st, "key_insert");
	if (rc || !must_win || sqlite3_changes(b->wdb) == 1)
		return rc;
	st = b->w_kown;
	sqlite3_bind_blob(st, 1, k->owner, CV_OWNER_BYTES, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, k->version);
	int s = sqlite3_step(st);
	bool same = s == SQLITE_ROW && sqlite3_column_bytes(st, 0) == CV_KID_BYTES &&
		    memcmp(sqlite3_column_blob(st, 0), k->kid, CV_KID_BYTES) == 0;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (s != SQLITE_ROW && s != SQLITE_DONE)
		return db_error(b->wdb, "key_owner");
	return same ? CV_OK : CV_E_CONFLICT;
}

/* CV_E_GONE when the key that sealed w was destroyed (an erasure committed
 * while this process still had it cached). */
static cv_rc key_alive(cv_backend_t *b, const cv_store_write_t *w)
{
	if (!w->keyent)
		return CV_OK;
	sqlite3_stmt *st = b->w_kstate;
	sqlite3_bind_blob(st, 1, w->keyent->row.kid, CV_KID_BYTES, SQLITE_STATIC);
	int s = sqlite3_step(st);
	int state = s == SQLITE_ROW ? sqlite3_column_int(st, 0) : CV_KEY_ACTIVE;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (s != SQLITE_ROW && s != SQLITE_DONE)
		return db_error(b->wdb, "key_state");
	/* destroyed: erased; retired: rotated meanwhile (the writer retries under the new key) */
	return state == CV_KEY_DESTROYED ? CV_E_GONE : state == CV_KEY_RETIRED ? CV_E_AGAIN : CV_OK;
}

/* CV_E_CONFLICT when a new key was wrapped by an older master key version
 * than the store's "master.version" (a rotation began meanwhile: the writer
 * reads its master key again and retries). */
static cv_rc wrap_current(cv_backend_t *b, const cv_store_key_row_t *k)
{
	uint32_t id;
	char text[16] = "";
	if (cv_crypto_blob_key_id(k->wrapped, k->wrapped_len, &id))
		return CV_E_CRYPTO;
	sqlite3_stmt *st = b->w_mver;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		snprintf(text, sizeof text, "%.*s", sqlite3_column_bytes(st, 0) < 15 ? sqlite3_column_bytes(st, 0) : 15,
			 (const char *)sqlite3_column_blob(st, 0));
	sqlite3_reset(st);
	if (s != SQLITE_ROW && s != SQLITE_DONE)
		return db_error(b->wdb, "master_version");
	return id < (uint32_t)strtoul(text, NULL, 10) ? CV_E_CONFLICT : CV_OK;
}

/* Master key rotation: a key's new wrapping (not for a destroyed key). */
static cv_rc rewrap_key(cv_backend_t *b, const cv_store_write_t *w)
{
	sqlite3_stmt *st = b->w_krewrap;
	sqlite3_bind_blob(st, 1, w->keyrow->kid, CV_KID_BYTES, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, w->keyrow->wrapped, (int)w->keyrow->wrapped_len, SQLITE_STATIC);
	return step_once(b, st, "key_rewrap");
}

/* Runs a one-off statement with a blob and up to three more parameters. */
static cv_rc run_once(cv_backend_t *b, const char *sql, const void *blob, size_t blen, const char *t1, const char *t2,
		      int64_t n3, int64_t *changed)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(b->wdb, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(b->wdb, "prepare");
	sqlite3_bind_blob(st, 1, blob, (int)blen, SQLITE_STATIC);
	if (t1)
		sqlite3_bind_text(st, 2, t1, -1, SQLITE_STATIC);
	if (t2)
		sqlite3_bind_text(st, 3, t2, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, t1 ? 4 : 2, n3);
	cv_rc rc = sqlite3_step(st) == SQLITE_DONE ? CV_OK : db_error(b->wdb, "key_rotation");
	if (changed)
		*changed = sqlite3_changes64(b->wdb);
	sqlite3_finalize(st);
	return rc;
}

/* Data key rotation (store.h: KEY_RETIRE, RESEAL, KEY_PURGE). */
static cv_rc rotation_step(cv_backend_t *b, cv_store_write_t *w)
{
	const cv_store_key_row_t *k = w->keyrow;
	if (w->op == CV_STORE_KEY_RETIRE) {
		int64_t n = 0;
		cv_rc rc = run_once(b, "UPDATE cv_key SET state = 2 WHERE owner = ?1 AND state = 1 AND version < ?2", k->owner,
				    CV_OWNER_BYTES, NULL, NULL, k->version, &n);
		return rc ? rc : n ? CV_OK : CV_E_GONE; /* erased meanwhile */
	}
	if (w->op == CV_STORE_KEY_PURGE) {
		sqlite3_stmt *st = NULL;
		if (w->body_len != CV_OWNER_BYTES ||
		    sqlite3_prepare_v2(b->wdb, "UPDATE cv_key SET state = 3, wrapped = x'' WHERE state = 2 AND owner NOT IN (?1, ?2)",
				       -1, &st, NULL) != SQLITE_OK)
			return w->body_len != CV_OWNER_BYTES ? CV_E_INVALID : db_error(b->wdb, "key_purge");
		sqlite3_bind_blob(st, 1, k->owner, CV_OWNER_BYTES, SQLITE_STATIC);
		sqlite3_bind_blob(st, 2, w->body, CV_OWNER_BYTES, SQLITE_STATIC);
		cv_rc rc = sqlite3_step(st) == SQLITE_DONE ? CV_OK : db_error(b->wdb, "key_purge");
		sqlite3_finalize(st);
		b->shredded = !rc;
		return rc;
	}
	int64_t n = 0;
	cv_rc rc = run_once(b, "UPDATE cv_version SET body = ?1 WHERE type = ?2 AND rid = ?3 AND version = ?4", w->sealed.data,
			    w->sealed.len, w->type, w->rid, w->expect_version, &n);
	if (!rc && n != 1)
		return CV_E_NOTFOUND;
	if (!rc)
		rc = run_once(b, "UPDATE cv_resource SET kid = ?1 WHERE type = ?2 AND rid = ?3 AND version = ?4", k->kid,
			      CV_KID_BYTES, w->type, w->rid, w->expect_version, NULL);
	/* a version of an erased patient (store.h, RESEAL): out of the index, as the erasure would have done */
	static const char *const out[4] = {
		"DELETE FROM cv_ix_hash WHERE rk IN (SELECT rk FROM cv_resource WHERE kid = ?1 AND type = ?2 AND rid = ?3 AND version = ?4)",
		"DELETE FROM cv_ix_date WHERE rk IN (SELECT rk FROM cv_resource WHERE kid = ?1 AND type = ?2 AND rid = ?3 AND version = ?4)",
		"DELETE FROM cv_ix_num WHERE rk IN (SELECT rk FROM cv_resource WHERE kid = ?1 AND type = ?2 AND rid = ?3 AND version = ?4)",
		"UPDATE cv_resource SET deleted = 1 WHERE kid = ?1 AND type = ?2 AND rid = ?3 AND version = ?4" };
	for (int i = 0; !rc && w->deleted && i < 4; i++)
		rc = run_once(b, out[i], k->kid, CV_KID_BYTES, w->type, w->rid, w->expect_version, NULL);
	return rc;
}

/* Runs one erase statement bound to the owner; *changed gets its row count. */
static cv_rc erase_step(cv_backend_t *b, const char *sql, const uint8_t *owner, int64_t *changed)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(b->wdb, sql, -1, &st, NULL) != SQLITE_OK)
		return db_error(b->wdb, "erase");
	sqlite3_bind_blob(st, 1, owner, CV_OWNER_BYTES, SQLITE_STATIC);
	cv_rc rc = sqlite3_step(st) == SQLITE_DONE ? CV_OK : db_error(b->wdb, "erase");
	if (changed)
		*changed = sqlite3_changes64(b->wdb);
	sqlite3_finalize(st);
	return rc;
}

#define ERASED_RKS "(SELECT rk FROM cv_resource WHERE kid IN (SELECT kid FROM cv_key WHERE owner = ?1))"

static cv_rc apply_meta(cv_backend_t *b, cv_store_write_t *w);

/* Crypto-shredding (backend.h, "ERASE"). */
static cv_rc apply_erase(cv_backend_t *b, cv_store_write_t *w)
{
	const uint8_t *owner = w->keyrow->owner;
	cv_rc rc = CV_OK;
	const char *index[3] = { "DELETE FROM cv_ix_hash WHERE rk IN " ERASED_RKS,
				 "DELETE FROM cv_ix_date WHERE rk IN " ERASED_RKS,
				 "DELETE FROM cv_ix_num WHERE rk IN " ERASED_RKS };
	for (int i = 0; !rc && i < 3; i++)
		rc = erase_step(b, index[i], owner, NULL);
	if (!rc)
		rc = erase_step(b, "UPDATE cv_resource SET deleted = 1 WHERE deleted = 0 AND kid IN "
				   "(SELECT kid FROM cv_key WHERE owner = ?1)", owner, &w->erased);
	if (!rc)
		rc = erase_step(b, "UPDATE cv_key SET state = 3, wrapped = x'' WHERE owner = ?1", owner, NULL);
	if (!rc)
		rc = apply_meta(b, w);
	cv_store_write_t epoch = { .op = CV_STORE_PUT_META, .name = "keys.epoch", .body = (const uint8_t *)w->name,
				   .body_len = strlen(w->name) };
	if (!rc)
		rc = apply_meta(b, &epoch);
	if (!rc)
		b->shredded = true;
	return rc;
}

static cv_rc insert_version(cv_backend_t *b, cv_store_write_t *w)
{
	sqlite3_stmt *st = b->w_cur;
	sqlite3_bind_text(st, 1, w->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, w->rid, -1, SQLITE_STATIC);
	int64_t cur = 0;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW)
		cur = sqlite3_column_int64(st, 1);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (s != SQLITE_ROW && s != SQLITE_DONE)
		return db_error(b->wdb, "current");
	if (cur != w->expect_version)
		return CV_E_CONFLICT;
	cv_rc rc = w->newkey ? wrap_current(b, &w->keyent->row) : key_alive(b, w);
	if (!rc && w->newkey)
		rc = insert_key(b, &w->keyent->row, true);
	if (rc)
		return rc;
	st = b->w_ins;
	sqlite3_bind_text(st, 1, w->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, w->rid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, cur + 1);
	sqlite3_bind_int64(st, 4, w->updated_us);
	sqlite3_bind_int(st, 5, w->deleted ? 1 : 0);
	sqlite3_bind_blob(st, 6, w->sealed.data, (int)w->sealed.len, SQLITE_STATIC);
	rc = step_once(b, st, "insert");
	if (rc)
		return rc;
	w->seq = sqlite3_last_insert_rowid(b->wdb);
	int64_t rk = 0;
	rc = put_current(b, w, cur + 1, &rk);
	return rc ? rc : write_index(b, rk, w, w->deleted);
}

static cv_rc reindex(cv_backend_t *b, cv_store_write_t *w)
{
	sqlite3_stmt *st = b->w_rk;
	sqlite3_bind_text(st, 1, w->type, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, w->rid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, w->expect_version);
	int s = sqlite3_step(st);
	int64_t rk = s == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (s == SQLITE_DONE)
		return CV_E_NOTFOUND;
	if (s != SQLITE_ROW)
		return db_error(b->wdb, "reindex");
	return write_index(b, rk, w, 0);
}

/* Claim values are the claim's time as 20 zero-padded digits, so that they
 * compare as text in time order. */
static void claim_value(int64_t us, char out[21])
{
	snprintf(out, 21, "%020lld", (long long)(us < 0 ? 0 : us));
}

static cv_rc apply_claim(cv_backend_t *b, cv_store_write_t *w)
{
	char now[21], old[21];
	claim_value(w->updated_us, now);
	claim_value(w->updated_us - CV_STORE_CLAIM_US, old);
	sqlite3_stmt *st = b->w_claim;
	sqlite3_bind_text(st, 1, w->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, now, 20, SQLITE_STATIC);
	sqlite3_bind_blob(st, 3, old, 20, SQLITE_STATIC);
	cv_rc rc = step_once(b, st, "claim");
	if (!rc && sqlite3_changes(b->wdb) == 0)
		rc = CV_E_CONFLICT;
	if (!rc && ++b->claims >= 1000) {
		/* claims only matter while requests race: drop the ones long expired */
		b->claims = 0;
		sqlite3_bind_blob(b->w_prune, 1, old, 20, SQLITE_STATIC);
		rc = step_once(b, b->w_prune, "claim_prune");
	}
	return rc;
}

/* ---- the audit trail ------------------------------------------------------ */

/* Loads the chain's head, once per batch (the transaction holds the write lock). */
static cv_rc chain_load(cv_backend_t *b)
{
	if (b->chain.loaded)
		return CV_OK;
	sqlite3_stmt *st = b->w_ahead;
	int s = sqlite3_step(st);
	if (s == SQLITE_ROW && sqlite3_column_bytes(st, 1) == CV_AUDIT_HASH_BYTES) {
		b->chain.pos = sqlite3_column_int64(st, 0);
		memcpy(b->chain.hash, sqlite3_column_blob(st, 1), CV_AUDIT_HASH_BYTES);
		b->chain.loaded = true;
	}
	sqlite3_reset(st);
	return b->chain.loaded ? CV_OK : db_error(b->wdb, "audit_head");
}

/* Writes the head back before the batch commits. */
static cv_rc chain_save(cv_backend_t *b)
{
	if (!b->chain.loaded)
		return CV_OK;
	sqlite3_bind_int64(b->w_aset, 1, b->chain.pos);
	sqlite3_bind_blob(b->w_aset, 2, b->chain.hash, CV_AUDIT_HASH_BYTES, SQLITE_STATIC);
	return step_once(b, b->w_aset, "audit_head_set");
}

static void bind_text_or_empty(sqlite3_stmt *st, int at, const char *v)
{
	sqlite3_bind_text(st, at, v ? v : "", -1, SQLITE_TRANSIENT);
}

static cv_rc apply_audit(cv_backend_t *b, cv_store_write_t *w)
{
	cv_store_audit_row_t r;
	cv_rc rc = chain_load(b);
	if (rc)
		return rc;
	cv_audit_chain_t before = b->chain;
	cv_audit_chain_next(&b->chain, w, &r);
	sqlite3_stmt *st = b->w_arow;
	char act[2] = { r.action, 0 };
	sqlite3_bind_int64(st, 1, r.pos);
	sqlite3_bind_int64(st, 2, r.at_us);
	bind_text_or_empty(st, 3, act);
	sqlite3_bind_int(st, 4, r.outcome);
	sqlite3_bind_int64(st, 5, r.flags);
	bind_text_or_empty(st, 6, r.kind);
	bind_text_or_empty(st, 7, r.subtype);
	bind_text_or_empty(st, 8, r.agent);
	bind_text_or_empty(st, 9, r.id);
	sqlite3_bind_int64(st, 10, r.nres);
	sqlite3_bind_blob(st, 11, r.keys_len ? (const void *)r.keys : "", (int)r.keys_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 12, r.body, (int)r.body_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 13, r.prev, CV_AUDIT_HASH_BYTES, SQLITE_STATIC);
	sqlite3_bind_blob(st, 14, r.hash, CV_AUDIT_HASH_BYTES, SQLITE_STATIC);
	sqlite3_bind_int64(st, 15, r.npat);
	rc = step_once(b, st, "audit_insert");
	for (size_t i = 0; !rc && i < r.keys_len / CV_AUDIT_KEY_BYTES; i++) {
		sqlite3_bind_blob(b->w_akey, 1, r.keys + i * CV_AUDIT_KEY_BYTES, CV_AUDIT_KEY_BYTES, SQLITE_STATIC);
		sqlite3_bind_int64(b->w_akey, 2, r.pos);
		rc = step_once(b, b->w_akey, "audit_key");
	}
	if (rc)
		b->chain = before;
	return rc;
}

static cv_rc apply_checkpoint(cv_backend_t *b, cv_store_write_t *w)
{
	const cv_store_checkpoint_t *c = w->checkpoint;
	sqlite3_stmt *st = b->w_acp;
	sqlite3_bind_int64(st, 1, c->pos);
	sqlite3_bind_int64(st, 2, c->at_us);
	sqlite3_bind_blob(st, 3, c->hash, CV_AUDIT_HASH_BYTES, SQLITE_STATIC);
	sqlite3_bind_blob(st, 4, c->key, 32, SQLITE_STATIC);
	sqlite3_bind_blob(st, 5, c->sig, 64, SQLITE_STATIC);
	return step_once(b, st, "audit_checkpoint");
}

/* Retention: the archived records go, and the signed base is recorded, in
 * the batch's transaction. */
static cv_rc apply_prune(cv_backend_t *b, cv_store_write_t *w)
{
	sqlite3_stmt *st = NULL;
	cv_rc rc = CV_OK;
	const char *sql[2] = { "DELETE FROM cv_audit_key WHERE pos <= ?1", "DELETE FROM cv_audit WHERE pos <= ?1" };
	for (int i = 0; !rc && i < 2; i++) {
		if (sqlite3_prepare_v2(b->wdb, sql[i], -1, &st, NULL) != SQLITE_OK)
			return db_error(b->wdb, "audit_prune");
		sqlite3_bind_int64(st, 1, w->audit_pos);
		rc = sqlite3_step(st) == SQLITE_DONE ? CV_OK : db_error(b->wdb, "audit_prune");
		sqlite3_finalize(st);
	}
	return rc ? rc : apply_meta(b, w);
}

/* Applies one write. A write refused on its own (conflict, not found) has
 * written nothing when it returns; any other failure is a storage failure,
 * and the caller rolls the whole transaction back (no savepoint per write:
 * SQLite's savepoints cost time in proportion to the pages a transaction has
 * dirtied, which made large batches quadratic). */
static cv_rc apply_one(cv_backend_t *b, cv_store_write_t *w)
{
	if (w->op == CV_STORE_AUDIT)
		return apply_audit(b, w);
	if (w->op == CV_STORE_CHECKPOINT)
		return apply_checkpoint(b, w);
	if (w->op == CV_STORE_AUDIT_PRUNE)
		return apply_prune(b, w);
	if (w->op == CV_STORE_PUT_META)
		return apply_meta(b, w);
	if (w->op == CV_STORE_PUT_KEY)
		return insert_key(b, w->keyrow, false);
	if (w->op == CV_STORE_ERASE)
		return apply_erase(b, w);
	if (w->op == CV_STORE_KEY_REWRAP)
		return rewrap_key(b, w);
	if (w->op == CV_STORE_KEY_RETIRE || w->op == CV_STORE_RESEAL || w->op == CV_STORE_KEY_PURGE)
		return rotation_step(b, w);
	if (w->op == CV_STORE_CLAIM)
		return apply_claim(b, w);
	if (w->op == CV_STORE_BULK) /* a page cache that holds the index B-trees being filled */
		return exec(b->wdb, "PRAGMA cache_size = -65536");
	return w->op == CV_STORE_REINDEX ? reindex(b, w) : insert_version(b, w);
}

/* Applies a group's members in order, stopping at the first failure (whose
 * result it returns). Undoing the members applied before it is the caller's
 * job: sqlite_apply redoes the batch without the group. (A savepoint per group
 * would do it too, but SQLite's savepoints cost time in proportion to the
 * pages the transaction has dirtied.) */
static cv_rc apply_group(cv_backend_t *b, cv_store_write_t *g)
{
	cv_rc rc = CV_OK;
	for (size_t i = 0; i < g->nmembers; i++)
		g->members[i]->result = CV_E_ABORTED;
	for (size_t i = 0; !rc && i < g->nmembers; i++) {
		cv_store_write_t *m = g->members[i];
		m->result = m->op == CV_STORE_GROUP ? CV_E_INVALID : apply_one(b, m);
		rc = m->result;
	}
	if (rc)
		for (size_t i = 0; i < g->nmembers; i++)
			if (g->members[i]->result == CV_OK)
				g->members[i]->result = CV_E_ABORTED;
	return rc;
}

static cv_rc apply_meta(cv_backend_t *b, cv_store_write_t *w)
{
	sqlite3_stmt *st = b->w_meta;
	sqlite3_bind_text(st, 1, w->name, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, w->body_len ? (const void *)w->body : "", (int)w->body_len, SQLITE_STATIC);
	int s = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return s == SQLITE_DONE ? CV_OK : db_error(b->wdb, "meta_put");
}

static void fail_all(cv_store_write_t *batch, cv_rc rc)
{
	for (cv_store_write_t *w = batch; w; w = w->next) {
		if (w->result == CV_OK)
			w->result = rc;
		for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
			if (w->members[i]->result == CV_OK || w->members[i]->result == CV_E_ABORTED)
				w->members[i]->result = rc;
	}
}

/* The destroyed keys' old pages must not linger in the WAL: a truncating
 * checkpoint, tried without waiting (a reader, a backup in progress, would
 * block the committer) and again after every later batch until it works. */
static void scrub_wal(cv_backend_t *b)
{
	int64_t now = cv_time_mono_us();
	if (!b->shredded && now - b->scrub_tried_us < 1000000) /* a retry: at most once a second */
		return;
	b->scrub_tried_us = now;
	sqlite3_busy_timeout(b->wdb, 0);
	int s = sqlite3_wal_checkpoint_v2(b->wdb, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	sqlite3_busy_timeout(b->wdb, 10000);
	bool was = b->scrub_pending;
	b->scrub_pending = s != SQLITE_OK;
	if (b->scrub_pending && !was)
		cv_log(CV_LOG_WARN, "store.wal_scrub_deferred", (cv_log_field_t[]){ CV_LS("why", sqlite3_errmsg(b->wdb)) }, 1);
	else if (!b->scrub_pending && was)
		cv_log(CV_LOG_INFO, "store.wal_scrubbed", NULL, 0);
}

/* One attempt at the batch: 1 when it is done (committed or failed for
 * good), 0 when a group failed and the batch must be redone without it. */
static int apply_batch(cv_backend_t *b, cv_store_write_t *batch)
{
	for (cv_store_write_t *w = batch; w; w = w->next)
		if (!w->skip)
			w->result = CV_E_STORAGE;
	if (step_once(b, b->w_begin, "begin"))
		return 1;
	b->chain.loaded = false;
	b->shredded = false;
	for (cv_store_write_t *w = batch; w; w = w->next) {
		if (w->skip)
			continue;
		w->result = w->op == CV_STORE_GROUP ? apply_group(b, w) : apply_one(b, w);
		if (w->result == CV_E_STORAGE || sqlite3_get_autocommit(b->wdb)) {
			/* a storage failure (I/O error, disk full): nothing of the batch is kept */
			if (!sqlite3_get_autocommit(b->wdb))
				exec(b->wdb, "ROLLBACK");
			fail_all(batch, CV_E_STORAGE);
			return 1;
		}
		if (w->op == CV_STORE_GROUP && w->result) {
			/* part of the group is applied: undo everything, redo the rest */
			w->skip = true;
			exec(b->wdb, "ROLLBACK");
			return 0;
		}
	}
	if (chain_save(b) || step_once(b, b->w_commit, "commit")) {
		exec(b->wdb, "ROLLBACK");
		fail_all(batch, CV_E_STORAGE);
	} else if (b->shredded || b->scrub_pending) {
		scrub_wal(b);
	}
	b->shredded = false;
	return 1;
}

static void sqlite_apply(cv_backend_t *b, cv_store_write_t *batch)
{
	for (cv_store_write_t *w = batch; w; w = w->next)
		w->skip = false;
	while (!apply_batch(b, batch))
		;
}

static cv_rc sqlite_count(cv_backend_t *b, uint64_t *versions)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_rc rc = prepare(r->db, "SELECT count(*) FROM cv_version", &st);
	if (!rc && sqlite3_step(st) == SQLITE_ROW)
		*versions = (uint64_t)sqlite3_column_int64(st, 0);
	else if (!rc)
		rc = db_error(r->db, "count");
	sqlite3_finalize(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_scan(cv_backend_t *b, int64_t after_seq, unsigned limit, cv_pool_t *pool,
			 cv_store_version_fn fn, void *arg)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_rc rc = prepare(r->db, "SELECT seq, version, updated_us, deleted, body, type, rid FROM cv_version "
				  "WHERE seq > ?1 ORDER BY seq LIMIT ?2", &st);
	if (!rc) {
		sqlite3_bind_int64(st, 1, after_seq);
		sqlite3_bind_int64(st, 2, limit);
		rc = each_version(r, st, pool, fn, arg, "scan");
	}
	sqlite3_finalize(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_scan_meta(cv_backend_t *b, cv_rc (*fn)(void *, const char *, const uint8_t *, size_t),
			      void *arg)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_rc rc = prepare(r->db, "SELECT name, value FROM cv_meta ORDER BY name", &st);
	int s = SQLITE_DONE;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW)
		rc = fn(arg, (const char *)sqlite3_column_text(st, 0), sqlite3_column_blob(st, 1),
			(size_t)sqlite3_column_bytes(st, 1));
	if (!rc && s != SQLITE_DONE)
		rc = db_error(r->db, "scan_meta");
	sqlite3_finalize(st);
	reader_give(b, r);
	return rc;
}

static void bind_all(sqlite3_stmt *st, const cv_sql_t *q)
{
	for (size_t i = 0; i < q->n; i++) {
		const cv_bind_t *v = &q->binds[i];
		int at = (int)i + 1;
		if (v->kind == CV_BIND_INT)
			sqlite3_bind_int64(st, at, v->i);
		else if (v->kind == CV_BIND_REAL)
			sqlite3_bind_double(st, at, v->d);
		else if (v->kind == CV_BIND_TEXT)
			sqlite3_bind_text(st, at, v->p, -1, SQLITE_STATIC);
		else
			sqlite3_bind_blob(st, at, v->p, (int)v->len, SQLITE_STATIC);
	}
}

/* A hit from a row: rk, rid, version, seq, updated_us, body, then sort keys (search)
 * or the type (scan). */
static cv_rc row_to_hit(sqlite3_stmt *st, const char *type, const cv_store_query_t *q, cv_pool_t *pool,
			cv_store_hit_t *h)
{
	memset(h, 0, sizeof *h);
	h->at.set = true;
	h->at.rk = sqlite3_column_int64(st, 0);
	h->v.version = sqlite3_column_int64(st, 2);
	h->v.seq = sqlite3_column_int64(st, 3);
	h->v.updated_us = sqlite3_column_int64(st, 4);
	size_t len = (size_t)sqlite3_column_bytes(st, 5);
	uint8_t *body = cv_pool_alloc(pool, len ? len : 1);
	h->v.type = cv_pool_strdup(pool, type ? type : (const char *)sqlite3_column_text(st, 6));
	h->v.rid = cv_pool_strdup(pool, (const char *)sqlite3_column_text(st, 1));
	if (!body || !h->v.type || !h->v.rid)
		return CV_E_NOMEM;
	if (len)
		memcpy(body, sqlite3_column_blob(st, 5), len);
	h->v.body = body;
	h->v.body_len = len;
	for (size_t i = 0; q && i < q->nsort; i++) {
		if (q->sort[i].kind == CV_SORT_NUM)
			h->at.dkey[i] = sqlite3_column_double(st, 6 + (int)i);
		else
			h->at.ikey[i] = sqlite3_column_int64(st, 6 + (int)i);
	}
	return CV_OK;
}

/* Prepares sql on a reader, binds it, and calls fn per row as a hit. */
static cv_rc run_hits(cv_backend_t *b, const cv_sql_t *sql, const char *type, const cv_store_query_t *q,
		      cv_pool_t *pool, cv_store_hit_fn fn, void *arg)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_rc rc = CV_OK;
	if (sqlite3_prepare_v2(r->db, sql->text.data, -1, &st, NULL) != SQLITE_OK) {
		rc = db_error(r->db, "search");
		goto out;
	}
	bind_all(st, sql);
	int s = SQLITE_DONE;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		cv_store_hit_t h;
		rc = row_to_hit(st, type, q, pool, &h);
		if (!rc)
			rc = fn(arg, &h);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_error(r->db, "search");
out:
	sqlite3_finalize(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_search(cv_backend_t *b, const cv_store_query_t *q, cv_pool_t *pool, cv_store_hit_fn fn,
			   void *arg)
{
	cv_sql_t *sql = malloc(sizeof *sql);
	if (!sql)
		return CV_E_NOMEM;
	cv_sql_init(sql, 0);
	cv_rc rc = cv_query_search_sql(q, sql);
	if (!rc)
		rc = run_hits(b, sql, q->type, q, pool, fn, arg);
	cv_sql_release(sql);
	free(sql);
	return rc;
}

static cv_rc sqlite_search_count(cv_backend_t *b, const cv_store_query_t *q, uint64_t *out)
{
	cv_sql_t *sql = malloc(sizeof *sql);
	if (!sql)
		return CV_E_NOMEM;
	cv_sql_init(sql, 0);
	cv_rc rc = cv_query_count_sql(q, sql);
	rconn_t *r = rc ? NULL : reader_take(b);
	sqlite3_stmt *st = NULL;
	if (r && sqlite3_prepare_v2(r->db, sql->text.data, -1, &st, NULL) != SQLITE_OK)
		rc = db_error(r->db, "count");
	if (!rc) {
		bind_all(st, sql);
		if (sqlite3_step(st) == SQLITE_ROW)
			*out = (uint64_t)sqlite3_column_int64(st, 0);
		else
			rc = db_error(r->db, "count");
	}
	sqlite3_finalize(st);
	if (r)
		reader_give(b, r);
	cv_sql_release(sql);
	free(sql);
	return rc;
}

static cv_rc sqlite_last_seq(cv_backend_t *b, int64_t *out)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = r->last_seq; /* prepared once: it runs on every token check */
	cv_rc rc = CV_OK;
	if (sqlite3_step(st) == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else
		rc = db_error(r->db, "last_seq");
	sqlite3_reset(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_types_seq(cv_backend_t *b, const char *const *types, size_t n, int64_t *out)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = r->types_seq;
	cv_rc rc = CV_OK;
	for (size_t i = 0; i < CV_STORE_TYPES_SEQ_MAX; i++)
		sqlite3_bind_text(st, (int)i + 1, i < n ? types[i] : "", -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else
		rc = db_error(r->db, "types_seq");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_scan_current(cv_backend_t *b, const char *type, int64_t after, unsigned limit,
				 cv_pool_t *pool, cv_store_hit_fn fn, void *arg)
{
	cv_sql_t *sql = malloc(sizeof *sql);
	if (!sql)
		return CV_E_NOMEM;
	cv_sql_init(sql, 0);
	cv_rc rc = cv_buf_puts(&sql->text, type ? "SELECT r.rk, r.rid, r.version, r.seq, r.updated_us, v.body, r.type "
						  "FROM cv_resource r JOIN cv_version v ON v.seq = r.seq "
						  "WHERE r.deleted = 0 AND r.rk > ?1 AND r.type = ?3 "
						  "ORDER BY r.rk LIMIT ?2"
						: "SELECT r.rk, r.rid, r.version, r.seq, r.updated_us, v.body, r.type "
						  "FROM cv_resource r JOIN cv_version v ON v.seq = r.seq "
						  "WHERE r.deleted = 0 AND r.rk > ?1 ORDER BY r.rk LIMIT ?2");
	sql->binds[0] = (cv_bind_t){ .kind = CV_BIND_INT, .i = after };
	sql->binds[1] = (cv_bind_t){ .kind = CV_BIND_INT, .i = limit };
	sql->binds[2] = (cv_bind_t){ .kind = CV_BIND_TEXT, .p = type };
	sql->n = type ? 3 : 2;
	if (!rc)
		rc = run_hits(b, sql, NULL, NULL, pool, fn, arg);
	cv_sql_release(sql);
	free(sql);
	return rc;
}

/* ---- reading the audit trail ------------------------------------------------ */

static const char *col_text(sqlite3_stmt *st, int i, cv_pool_t *pool)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	return cv_pool_strdup(pool, t ? (const char *)t : "");
}

static const uint8_t *col_blob(sqlite3_stmt *st, int i, cv_pool_t *pool, size_t *len)
{
	*len = (size_t)sqlite3_column_bytes(st, i);
	const void *p = sqlite3_column_blob(st, i);
	uint8_t *copy = cv_pool_alloc(pool, *len + 1);
	if (copy && *len)
		memcpy(copy, p, *len);
	return copy;
}

/* The SQLite storage class each column of an audit SELECT must have. */
static const int audit_col_type[15] = {
	SQLITE_INTEGER, SQLITE_INTEGER, SQLITE_TEXT, SQLITE_INTEGER, SQLITE_INTEGER,
	SQLITE_TEXT, SQLITE_TEXT, SQLITE_TEXT, SQLITE_TEXT, SQLITE_INTEGER,
	SQLITE_BLOB, SQLITE_BLOB, SQLITE_BLOB, SQLITE_BLOB, SQLITE_INTEGER,
};

/* Whether the row's columns are stored as the store writes them: SQLite
 * keeps whatever type an UPDATE gives a column, and a value read back
 * through C's types could hash as the original while SQL comparisons (the
 * searches) see another (a BLOB agent, text with a NUL and more bytes, an
 * outcome past 32 bits, a two-letter action). */
static bool audit_row_canonical(sqlite3_stmt *st)
{
	for (int i = 0; i < 15; i++) {
		if (sqlite3_column_type(st, i) != audit_col_type[i])
			return false;
		if (audit_col_type[i] == SQLITE_TEXT) {
			const unsigned char *t = sqlite3_column_text(st, i);
			if (!t || strlen((const char *)t) != (size_t)sqlite3_column_bytes(st, i))
				return false;
		}
	}
	int64_t outcome = sqlite3_column_int64(st, 3), flags = sqlite3_column_int64(st, 4);
	return sqlite3_column_bytes(st, 2) == 1 && outcome >= INT_MIN && outcome <= INT_MAX && flags >= 0 &&
	       flags <= (int64_t)UINT_MAX;
}

/* A row of an audit SELECT (the columns of cv_query_audit_sql). */
static cv_rc audit_row(sqlite3_stmt *st, cv_pool_t *pool, cv_store_audit_row_t *r)
{
	bool malformed = !audit_row_canonical(st); /* first: reading converts types */
	const unsigned char *act = sqlite3_column_text(st, 2);
	*r = (cv_store_audit_row_t){ .pos = sqlite3_column_int64(st, 0), .at_us = sqlite3_column_int64(st, 1),
				     .action = act ? (char)act[0] : '?', .outcome = sqlite3_column_int(st, 3),
				     .flags = (unsigned)sqlite3_column_int64(st, 4), .nres = sqlite3_column_int64(st, 9),
				     .npat = sqlite3_column_int64(st, 14) };
	r->kind = col_text(st, 5, pool);
	r->subtype = col_text(st, 6, pool);
	r->agent = col_text(st, 7, pool);
	r->id = col_text(st, 8, pool);
	r->keys = col_blob(st, 10, pool, &r->keys_len);
	r->body = col_blob(st, 11, pool, &r->body_len);
	size_t pl = 0, hl = 0;
	const uint8_t *prev = col_blob(st, 12, pool, &pl), *hash = col_blob(st, 13, pool, &hl);
	if (!r->kind || !r->subtype || !r->agent || !r->id || !r->keys || !r->body || !prev || !hash)
		return CV_E_NOMEM;
	/* a wrong length is kept visible to verification: it compares as a mismatch */
	memcpy(r->prev, prev, pl < CV_AUDIT_HASH_BYTES ? pl : CV_AUDIT_HASH_BYTES);
	memcpy(r->hash, hash, hl < CV_AUDIT_HASH_BYTES ? hl : CV_AUDIT_HASH_BYTES);
	if (pl != CV_AUDIT_HASH_BYTES)
		r->prev[0] ^= 0xff;
	if (hl != CV_AUDIT_HASH_BYTES)
		r->hash[0] ^= 0xff;
	r->malformed = malformed;
	return CV_OK;
}

static cv_rc sqlite_audit_rows(cv_backend_t *b, const cv_sql_t *sql, cv_pool_t *pool, cv_store_audit_fn fn, void *arg)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_rc rc = CV_OK;
	if (sqlite3_prepare_v2(r->db, sql->text.data, -1, &st, NULL) != SQLITE_OK) {
		rc = db_error(r->db, "audit_rows");
		goto out;
	}
	bind_all(st, sql);
	int s = SQLITE_DONE;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		cv_store_audit_row_t row;
		rc = audit_row(st, pool, &row);
		if (!rc)
			rc = fn(arg, &row);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_error(r->db, "audit_rows");
out:
	sqlite3_finalize(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_audit_head(cv_backend_t *b, int64_t *pos, uint8_t hash[CV_AUDIT_HASH_BYTES])
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_rc rc = prepare(r->db, "SELECT pos, hash FROM cv_audit_head WHERE one = 1", &st);
	if (!rc && sqlite3_step(st) == SQLITE_ROW) {
		*pos = sqlite3_column_int64(st, 0);
		memset(hash, 0, CV_AUDIT_HASH_BYTES);
		size_t n = (size_t)sqlite3_column_bytes(st, 1);
		memcpy(hash, sqlite3_column_blob(st, 1), n < CV_AUDIT_HASH_BYTES ? n : CV_AUDIT_HASH_BYTES);
		if (n != CV_AUDIT_HASH_BYTES) /* a wrong length compares as a mismatch */
			hash[0] ^= 0xff;
	} else if (!rc) {
		rc = db_error(r->db, "audit_head");
	}
	sqlite3_finalize(st);
	reader_give(b, r);
	return rc;
}

/* Ends a reader's explicit read transaction: the connection goes back to
 * the pool holding no snapshot (an old one would hide new writes from its
 * reads and keep the WAL from being checkpointed). */
static void end_read(rconn_t *r)
{
	if (exec(r->db, "COMMIT"))
		exec(r->db, "ROLLBACK");
}

static cv_rc sqlite_audit_keys_missing(cv_backend_t *b, const cv_store_audit_pair_t *pairs, size_t n,
				       int64_t *missing)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_rc rc = prepare(r->db, "SELECT 1 FROM cv_audit_key WHERE k = ?1 AND pos = ?2", &st);
	bool txn = !rc && exec(r->db, "BEGIN") == CV_OK; /* one snapshot, not a lock and unlock per probe */
	*missing = 0;
	for (size_t i = 0; !rc && i < n; i++) {
		sqlite3_bind_blob(st, 1, pairs[i].k, CV_AUDIT_KEY_BYTES, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, pairs[i].pos);
		int s = sqlite3_step(st);
		if (s == SQLITE_DONE && (!*missing || pairs[i].pos < *missing)) /* the first record missing one */
			*missing = pairs[i].pos;
		else if (s != SQLITE_ROW && s != SQLITE_DONE)
			rc = db_error(r->db, "audit_keys_missing");
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	if (txn)
		end_read(r);
	reader_give(b, r);
	return rc;
}

/* One integer from a query over a range of positions (?1, ?2). */
static cv_rc sqlite_audit_range(cv_backend_t *b, const char *sql, int64_t from, int64_t to, int64_t *out)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_rc rc = prepare(r->db, sql, &st);
	if (!rc) {
		sqlite3_bind_int64(st, 1, from);
		sqlite3_bind_int64(st, 2, to);
		if (sqlite3_step(st) == SQLITE_ROW)
			*out = sqlite3_column_int64(st, 0);
		else
			rc = db_error(r->db, "audit_range");
	}
	sqlite3_finalize(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_audit_keys_extra(cv_backend_t *b, int64_t from, int64_t to, int64_t *extra)
{
	/* a key row its record does not name (keys are HMACs: an aligned match is not needed) */
	return sqlite_audit_range(b, "SELECT coalesce(min(k.pos), 0) FROM cv_audit_key k LEFT JOIN cv_audit a ON "
				     "a.pos = k.pos WHERE k.pos BETWEEN ?1 AND ?2 AND (a.pos IS NULL OR "
				     "instr(a.keys, k.k) = 0)", from, to, extra);
}

static cv_rc sqlite_audit_keys_count(cv_backend_t *b, int64_t from, int64_t to, int64_t *count)
{
	return sqlite_audit_range(b, "SELECT count(*) FROM cv_audit_key WHERE pos BETWEEN ?1 AND ?2", from, to, count);
}

static cv_rc sqlite_audit_checkpoints(cv_backend_t *b, bool last_only, cv_rc (*fn)(void *, const cv_store_checkpoint_t *),
				      void *arg)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_rc rc = prepare(r->db, last_only ? "SELECT pos, at_us, hash, key, sig FROM cv_audit_checkpoint ORDER BY pos DESC LIMIT 1"
					    : "SELECT pos, at_us, hash, key, sig FROM cv_audit_checkpoint ORDER BY pos", &st);
	int s = SQLITE_DONE;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		cv_store_checkpoint_t c = { .pos = sqlite3_column_int64(st, 0), .at_us = sqlite3_column_int64(st, 1) };
		if (sqlite3_column_bytes(st, 2) == CV_AUDIT_HASH_BYTES && sqlite3_column_bytes(st, 3) == 32 &&
		    sqlite3_column_bytes(st, 4) == 64) {
			memcpy(c.hash, sqlite3_column_blob(st, 2), CV_AUDIT_HASH_BYTES);
			memcpy(c.key, sqlite3_column_blob(st, 3), 32);
			memcpy(c.sig, sqlite3_column_blob(st, 4), 64);
		}
		rc = fn(arg, &c);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_error(r->db, "audit_checkpoints");
	sqlite3_finalize(st);
	reader_give(b, r);
	return rc;
}

/* ---- data keys ------------------------------------------------------------- */

/* Fills row from a SQL_KEY_COLS result row (wrapped copied into buf). */
static cv_rc key_row(sqlite3_stmt *st, cv_store_key_row_t *row, cv_buf_t *wrapped)
{
	if (sqlite3_column_bytes(st, 0) != CV_KID_BYTES || sqlite3_column_bytes(st, 1) != CV_OWNER_BYTES)
		return CV_E_STORAGE;
	memcpy(row->kid, sqlite3_column_blob(st, 0), CV_KID_BYTES);
	memcpy(row->owner, sqlite3_column_blob(st, 1), CV_OWNER_BYTES);
	row->version = sqlite3_column_int64(st, 2);
	row->state = sqlite3_column_int(st, 3);
	row->created_us = sqlite3_column_int64(st, 4);
	cv_buf_reset(wrapped);
	cv_rc rc = cv_buf_append(wrapped, sqlite3_column_blob(st, 5), (size_t)sqlite3_column_bytes(st, 5));
	row->wrapped = (const uint8_t *)wrapped->data;
	row->wrapped_len = wrapped->len;
	return rc;
}

static cv_rc key_lookup(cv_backend_t *b, bool by_owner, const uint8_t *k, cv_store_key_row_t *row, cv_buf_t *wrapped)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = by_owner ? r->key_cur : r->key_get;
	sqlite3_bind_blob(st, 1, k, by_owner ? CV_OWNER_BYTES : CV_KID_BYTES, SQLITE_STATIC);
	int s = sqlite3_step(st);
	cv_rc rc = s == SQLITE_ROW ? key_row(st, row, wrapped) : s == SQLITE_DONE ? CV_E_NOTFOUND : db_error(r->db, "key");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	reader_give(b, r);
	return rc;
}

static cv_rc sqlite_key_get(cv_backend_t *b, const uint8_t kid[CV_KID_BYTES], cv_store_key_row_t *row,
			    cv_buf_t *wrapped)
{
	return key_lookup(b, false, kid, row, wrapped);
}

static cv_rc sqlite_key_current(cv_backend_t *b, const uint8_t owner[CV_OWNER_BYTES], cv_store_key_row_t *row,
				cv_buf_t *wrapped)
{
	return key_lookup(b, true, owner, row, wrapped);
}

static cv_rc sqlite_key_scan(cv_backend_t *b, const cv_store_key_row_t *after,
			     cv_rc (*fn)(void *arg, const cv_store_key_row_t *row), void *arg)
{
	rconn_t *r = reader_take(b);
	sqlite3_stmt *st = NULL;
	cv_buf_t wrapped;
	cv_buf_init(&wrapped, 4096);
	cv_rc rc = prepare(r->db, after ? SQL_KEY_COLS "WHERE (owner, version) > (?1, ?2) ORDER BY owner, version"
				       : SQL_KEY_COLS "ORDER BY owner, version", &st);
	if (!rc && after) {
		sqlite3_bind_blob(st, 1, after->owner, CV_OWNER_BYTES, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, after->version);
	}
	int s = SQLITE_DONE;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		cv_store_key_row_t row;
		rc = key_row(st, &row, &wrapped);
		if (!rc)
			rc = fn(arg, &row);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_error(r->db, "key_scan");
	sqlite3_finalize(st);
	cv_buf_release(&wrapped);
	reader_give(b, r);
	return rc;
}

/* ---- backups ------------------------------------------------------------- */

typedef cv_rc (*rec_fn)(void *arg, const cv_store_rec_t *r);

/* Steps a dump query, turning each row into a record with `row`. */
static cv_rc dump_query(rconn_t *r, const char *sql, cv_rc (*row)(sqlite3_stmt *st, cv_store_rec_t *rec),
			rec_fn fn, void *arg)
{
	sqlite3_stmt *st = NULL;
	cv_rc rc = prepare(r->db, sql, &st);
	int s = SQLITE_DONE;
	while (!rc && (s = sqlite3_step(st)) == SQLITE_ROW) {
		cv_store_rec_t rec;
		memset(&rec, 0, sizeof rec);
		rc = row(st, &rec);
		if (!rc)
			rc = fn(arg, &rec);
	}
	if (!rc && s != SQLITE_DONE)
		rc = db_error(r->db, "dump");
	sqlite3_finalize(st);
	return rc;
}

static const uint8_t *blob_or_empty(sqlite3_stmt *st, int i, size_t *len)
{
	*len = (size_t)sqlite3_column_bytes(st, i);
	const void *p = sqlite3_column_blob(st, i);
	return p ? p : (const uint8_t *)"";
}

static cv_rc meta_rec(sqlite3_stmt *st, cv_store_rec_t *rec)
{
	rec->type = CV_REC_META;
	rec->name = (const char *)sqlite3_column_text(st, 0);
	rec->value = blob_or_empty(st, 1, &rec->value_len);
	return rec->name ? CV_OK : CV_E_NOMEM;
}

static cv_rc key_rec(sqlite3_stmt *st, cv_store_rec_t *rec)
{
	cv_buf_t unused;
	cv_buf_init(&unused, 1);
	rec->type = CV_REC_KEY;
	if (sqlite3_column_bytes(st, 0) != CV_KID_BYTES || sqlite3_column_bytes(st, 1) != CV_OWNER_BYTES)
		return CV_E_STORAGE;
	memcpy(rec->key.kid, sqlite3_column_blob(st, 0), CV_KID_BYTES);
	memcpy(rec->key.owner, sqlite3_column_blob(st, 1), CV_OWNER_BYTES);
	rec->key.version = sqlite3_column_int64(st, 2);
	rec->key.state = sqlite3_column_int(st, 3);
	rec->key.created_us = sqlite3_column_int64(st, 4);
	rec->key.wrapped = blob_or_empty(st, 5, &rec->key.wrapped_len);
	return CV_OK;
}

static cv_rc version_rec(sqlite3_stmt *st, cv_store_rec_t *rec)
{
	rec->type = CV_REC_VERSION;
	rec->version = (cv_store_version_t){ .seq = sqlite3_column_int64(st, 0), .version = sqlite3_column_int64(st, 1),
					     .updated_us = sqlite3_column_int64(st, 2), .deleted = sqlite3_column_int(st, 3) != 0,
					     .type = (const char *)sqlite3_column_text(st, 5),
					     .rid = (const char *)sqlite3_column_text(st, 6) };
	rec->version.body = blob_or_empty(st, 4, &rec->version.body_len);
	return rec->version.type && rec->version.rid ? CV_OK : CV_E_NOMEM;
}

static cv_rc audit_rec(sqlite3_stmt *st, cv_store_rec_t *rec)
{
	const unsigned char *act = sqlite3_column_text(st, 2);
	cv_store_audit_row_t *a = &rec->audit;
	rec->type = CV_REC_AUDIT;
	*a = (cv_store_audit_row_t){ .pos = sqlite3_column_int64(st, 0), .at_us = sqlite3_column_int64(st, 1),
				     .action = act ? (char)act[0] : '?', .outcome = sqlite3_column_int(st, 3),
				     .flags = (unsigned)sqlite3_column_int64(st, 4), .nres = sqlite3_column_int64(st, 9),
				     .npat = sqlite3_column_int64(st, 14),
				     .kind = (const char *)sqlite3_column_text(st, 5),
				     .subtype = (const char *)sqlite3_column_text(st, 6),
				     .agent = (const char *)sqlite3_column_text(st, 7),
				     .id = (const char *)sqlite3_column_text(st, 8) };
	a->keys = blob_or_empty(st, 10, &a->keys_len);
	a->body = blob_or_empty(st, 11, &a->body_len);
	if (sqlite3_column_bytes(st, 12) != CV_AUDIT_HASH_BYTES || sqlite3_column_bytes(st, 13) != CV_AUDIT_HASH_BYTES)
		return CV_E_STORAGE;
	memcpy(a->prev, sqlite3_column_blob(st, 12), CV_AUDIT_HASH_BYTES);
	memcpy(a->hash, sqlite3_column_blob(st, 13), CV_AUDIT_HASH_BYTES);
	return a->kind && a->subtype && a->agent && a->id ? CV_OK : CV_E_NOMEM;
}

static cv_rc head_rec(sqlite3_stmt *st, cv_store_rec_t *rec)
{
	rec->type = CV_REC_AUDIT_HEAD;
	rec->audit.pos = sqlite3_column_int64(st, 0);
	if (sqlite3_column_bytes(st, 1) != CV_AUDIT_HASH_BYTES)
		return CV_E_STORAGE;
	memcpy(rec->audit.hash, sqlite3_column_blob(st, 1), CV_AUDIT_HASH_BYTES);
	return CV_OK;
}

static cv_rc checkpoint_rec(sqlite3_stmt *st, cv_store_rec_t *rec)
{
	cv_store_checkpoint_t *c = &rec->checkpoint;
	rec->type = CV_REC_CHECKPOINT;
	c->pos = sqlite3_column_int64(st, 0);
	c->at_us = sqlite3_column_int64(st, 1);
	if (sqlite3_column_bytes(st, 2) != CV_AUDIT_HASH_BYTES || sqlite3_column_bytes(st, 3) != 32 ||
	    sqlite3_column_bytes(st, 4) != 64)
		return CV_E_STORAGE;
	memcpy(c->hash, sqlite3_column_blob(st, 2), CV_AUDIT_HASH_BYTES);
	memcpy(c->key, sqlite3_column_blob(st, 3), 32);
	memcpy(c->sig, sqlite3_column_blob(st, 4), 64);
	return CV_OK;
}

#define DUMP_META "SELECT name, value FROM cv_meta WHERE name NOT LIKE 'index.%' AND name NOT LIKE 'claim.%' ORDER BY name"
#define DUMP_AUDIT "SELECT pos, at_us, action, outcome, flags, kind, subtype, agent, id, nres, keys, body, prev, hash, " \
		   "npat FROM cv_audit ORDER BY pos"

/* One read transaction: WAL gives it a snapshot that writers do not change. */
static cv_rc sqlite_dump(cv_backend_t *b, rec_fn fn, void *arg)
{
	rconn_t *r = reader_take(b);
	cv_rc rc = exec(r->db, "BEGIN");
	if (!rc)
		rc = dump_query(r, DUMP_META, meta_rec, fn, arg);
	if (!rc)
		rc = dump_query(r, SQL_KEY_COLS "ORDER BY owner, version", key_rec, fn, arg);
	if (!rc)
		rc = dump_query(r, "SELECT seq, version, updated_us, deleted, body, type, rid FROM cv_version ORDER BY seq",
				version_rec, fn, arg);
	if (!rc)
		rc = dump_query(r, DUMP_AUDIT, audit_rec, fn, arg);
	if (!rc)
		rc = dump_query(r, "SELECT pos, hash FROM cv_audit_head WHERE one = 1", head_rec, fn, arg);
	if (!rc)
		rc = dump_query(r, "SELECT pos, at_us, hash, key, sig FROM cv_audit_checkpoint ORDER BY pos", checkpoint_rec,
				fn, arg);
	end_read(r);
	reader_give(b, r);
	return rc;
}

/* Runs one load statement (prepared each batch: a restore is a one-off). */
static cv_rc load_step(sqlite3_stmt *st, sqlite3 *db)
{
	int s = sqlite3_step(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return s == SQLITE_DONE || s == SQLITE_ROW ? CV_OK : db_error(db, "load");
}

static cv_rc load_version(cv_backend_t *b, const cv_store_version_t *v)
{
	sqlite3_stmt *st = NULL;
	cv_rc rc = prepare(b->wdb, "INSERT INTO cv_version(seq, type, rid, version, updated_us, deleted, body) "
				   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", &st);
	if (!rc) {
		sqlite3_bind_int64(st, 1, v->seq);
		sqlite3_bind_text(st, 2, v->type, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, v->rid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, v->version);
		sqlite3_bind_int64(st, 5, v->updated_us);
		sqlite3_bind_int(st, 6, v->deleted);
		sqlite3_bind_blob(st, 7, v->body, (int)v->body_len, SQLITE_STATIC);
		rc = load_step(st, b->wdb);
	}
	sqlite3_finalize(st);
	/* its current row (versions come in seq order: the last one stays) */
	cv_store_write_t w = { .type = v->type, .updated_us = v->updated_us, .deleted = v->deleted, .seq = v->seq };
	snprintf(w.rid, sizeof w.rid, "%s", v->rid);
	cv_buf_init(&w.sealed, v->body_len + 1);
	int64_t rk;
	if (!rc)
		rc = cv_buf_append(&w.sealed, v->body, v->body_len);
	if (!rc)
		rc = put_current(b, &w, v->version, &rk);
	cv_buf_release(&w.sealed);
	return rc;
}

static cv_rc load_audit(cv_backend_t *b, const cv_store_audit_row_t *a)
{
	sqlite3_stmt *st = b->w_arow;
	char act[2] = { a->action, 0 };
	sqlite3_bind_int64(st, 1, a->pos);
	sqlite3_bind_int64(st, 2, a->at_us);
	sqlite3_bind_text(st, 3, act, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 4, a->outcome);
	sqlite3_bind_int64(st, 5, a->flags);
	bind_text_or_empty(st, 6, a->kind);
	bind_text_or_empty(st, 7, a->subtype);
	bind_text_or_empty(st, 8, a->agent);
	bind_text_or_empty(st, 9, a->id);
	sqlite3_bind_int64(st, 10, a->nres);
	sqlite3_bind_blob(st, 11, a->keys_len ? (const void *)a->keys : "", (int)a->keys_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 12, a->body, (int)a->body_len, SQLITE_STATIC);
	sqlite3_bind_blob(st, 13, a->prev, CV_AUDIT_HASH_BYTES, SQLITE_STATIC);
	sqlite3_bind_blob(st, 14, a->hash, CV_AUDIT_HASH_BYTES, SQLITE_STATIC);
	sqlite3_bind_int64(st, 15, a->npat);
	cv_rc rc = step_once(b, st, "load_audit");
	for (size_t i = 0; !rc && i < a->keys_len / CV_AUDIT_KEY_BYTES; i++) {
		sqlite3_bind_blob(b->w_akey, 1, a->keys + i * CV_AUDIT_KEY_BYTES, CV_AUDIT_KEY_BYTES, SQLITE_STATIC);
		sqlite3_bind_int64(b->w_akey, 2, a->pos);
		rc = step_once(b, b->w_akey, "load_audit_key");
	}
	return rc;
}

static cv_rc load_one(cv_backend_t *b, const cv_store_rec_t *r)
{
	cv_store_write_t w = { 0 };
	switch (r->type) {
	case CV_REC_META:
		w = (cv_store_write_t){ .name = r->name, .body = r->value, .body_len = r->value_len };
		return apply_meta(b, &w);
	case CV_REC_KEY:
		return insert_key(b, &r->key, false);
	case CV_REC_VERSION:
		return load_version(b, &r->version);
	case CV_REC_AUDIT:
		return load_audit(b, &r->audit);
	case CV_REC_AUDIT_HEAD:
		b->chain = (cv_audit_chain_t){ .loaded = true, .pos = r->audit.pos };
		memcpy(b->chain.hash, r->audit.hash, CV_AUDIT_HASH_BYTES);
		return chain_save(b);
	case CV_REC_CHECKPOINT:
		w.checkpoint = &r->checkpoint;
		return apply_checkpoint(b, &w);
	}
	return CV_E_INVALID;
}

static cv_rc sqlite_load(cv_backend_t *b, const cv_store_rec_t *recs, size_t n)
{
	cv_rc rc = exec(b->wdb, "BEGIN IMMEDIATE");
	for (size_t i = 0; !rc && i < n; i++)
		rc = load_one(b, &recs[i]);
	if (!rc)
		rc = exec(b->wdb, "COMMIT");
	if (rc)
		exec(b->wdb, "ROLLBACK");
	b->chain.loaded = false;
	return rc;
}

static const cv_backend_ops_t sqlite_ops = {
	.apply = sqlite_apply,
	.ping = sqlite_ping,
	.meta_get = sqlite_meta_get,
	.read = sqlite_read,
	.history = sqlite_history,
	.close = sqlite_close,
	.count = sqlite_count,
	.scan = sqlite_scan,
	.scan_meta = sqlite_scan_meta,
	.search = sqlite_search,
	.search_count = sqlite_search_count,
	.last_seq = sqlite_last_seq,
	.types_seq = sqlite_types_seq,
	.scan_current = sqlite_scan_current,
	.audit_rows = sqlite_audit_rows,
	.audit_head = sqlite_audit_head,
	.audit_keys_missing = sqlite_audit_keys_missing,
	.audit_keys_extra = sqlite_audit_keys_extra,
	.audit_keys_count = sqlite_audit_keys_count,
	.audit_checkpoints = sqlite_audit_checkpoints,
	.key_get = sqlite_key_get,
	.key_current = sqlite_key_current,
	.key_scan = sqlite_key_scan,
	.dump = sqlite_dump,
	.load = sqlite_load,
};

static cv_rc open_writer(cv_backend_t *b, const char *path, char *err, size_t errlen)
{
	cv_rc rc = open_conn(path, 1, &b->wdb, err, errlen);
	if (!rc)
		rc = exec(b->wdb, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
				  "PRAGMA temp_store = MEMORY; PRAGMA secure_delete = ON; "
				  "PRAGMA cache_size = -4096");
	if (!rc)
		rc = migrate(b->wdb, err, errlen);
	if (!rc)
		rc = prepare(b->wdb, SQL_CUR, &b->w_cur);
	if (!rc)
		rc = prepare(b->wdb, "INSERT INTO cv_version(type, rid, version, updated_us, deleted, body) "
				     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &b->w_ins);
	if (!rc)
		rc = prepare(b->wdb, "INSERT INTO cv_meta(name, value) VALUES (?1, ?2) "
				     "ON CONFLICT(name) DO UPDATE SET value = excluded.value", &b->w_meta);
	if (!rc)
		rc = prepare(b->wdb, "INSERT INTO cv_resource(type, rid, version, seq, updated_us, deleted, kid) "
				     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(type, rid) DO UPDATE SET "
				     "version = excluded.version, seq = excluded.seq, updated_us = excluded.updated_us, "
				     "deleted = excluded.deleted, kid = excluded.kid RETURNING rk", &b->w_res);
	if (!rc)
		rc = prepare(b->wdb, "SELECT rk FROM cv_resource WHERE type = ?1 AND rid = ?2 AND deleted = 0 "
				     "AND version = ?3", &b->w_rk);
	if (!rc)
		rc = prepare(b->wdb, "DELETE FROM cv_ix_hash WHERE rk = ?1", &b->w_del[0]);
	if (!rc)
		rc = prepare(b->wdb, "DELETE FROM cv_ix_date WHERE rk = ?1", &b->w_del[1]);
	if (!rc)
		rc = prepare(b->wdb, "DELETE FROM cv_ix_num WHERE rk = ?1", &b->w_del[2]);
	if (!rc)
		rc = prepare(b->wdb, "INSERT OR IGNORE INTO cv_ix_hash(h, rk) VALUES (?1, ?2)", &b->w_insh);
	if (!rc)
		rc = prepare(b->wdb, "INSERT INTO cv_ix_date(rk, param, lo, hi) VALUES (?1, ?2, ?3, ?4)", &b->w_insd);
	if (!rc)
		rc = prepare(b->wdb, "INSERT INTO cv_ix_num(rk, param, unit, lo, hi) VALUES (?1, ?2, ?3, ?4, ?5)",
			     &b->w_insn);
	if (!rc)
		rc = prepare(b->wdb, "INSERT INTO cv_meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE "
				     "SET value = excluded.value WHERE cv_meta.value < ?3", &b->w_claim);
	if (!rc)
		rc = prepare(b->wdb, "DELETE FROM cv_meta WHERE name LIKE 'claim.%' AND value < ?1", &b->w_prune);
	if (!rc)
		rc = prepare(b->wdb, "SELECT pos, hash FROM cv_audit_head WHERE one = 1", &b->w_ahead);
	if (!rc)
		rc = prepare(b->wdb, "UPDATE cv_audit_head SET pos = ?1, hash = ?2 WHERE one = 1", &b->w_aset);
	if (!rc)
		rc = prepare(b->wdb, "INSERT INTO cv_audit(pos, at_us, action, outcome, flags, kind, subtype, agent, id, "
				     "nres, keys, body, prev, hash, npat) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
				     "?11, ?12, ?13, ?14, ?15)", &b->w_arow);
	if (!rc)
		rc = prepare(b->wdb, "INSERT OR IGNORE INTO cv_audit_key(k, pos) VALUES (?1, ?2)", &b->w_akey);
	if (!rc)
		rc = prepare(b->wdb, "INSERT OR IGNORE INTO cv_audit_checkpoint(pos, at_us, hash, key, sig) "
				     "VALUES (?1, ?2, ?3, ?4, ?5)", &b->w_acp);
	if (!rc)
		rc = prepare(b->wdb, "INSERT OR IGNORE INTO cv_key(kid, owner, version, state, created_us, wrapped) "
				     "VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &b->w_kins);
	if (!rc)
		rc = prepare(b->wdb, "SELECT kid FROM cv_key WHERE owner = ?1 AND version = ?2", &b->w_kown);
	if (!rc)
		rc = prepare(b->wdb, "SELECT state FROM cv_key WHERE kid = ?1", &b->w_kstate);
	if (!rc)
		rc = prepare(b->wdb, "UPDATE cv_key SET wrapped = ?2 WHERE kid = ?1 AND state <> 3", &b->w_krewrap);
	if (!rc)
		rc = prepare(b->wdb, "SELECT value FROM cv_meta WHERE name = 'master.version'", &b->w_mver);
	if (!rc)
		rc = prepare(b->wdb, "BEGIN IMMEDIATE", &b->w_begin);
	if (!rc)
		rc = prepare(b->wdb, "COMMIT", &b->w_commit);
	if (rc && !err[0])
		snprintf(err, errlen, "cannot open the store for writing");
	return rc;
}

cv_rc cv_sqlite_open(const char *data_dir, unsigned read_conns, cv_backend_t **out,
		     const cv_backend_ops_t **ops, char *err, size_t errlen)
{
	char path[1100];
	snprintf(path, sizeof path, "%s/store.db", data_dir);
	if (!sqlite3_threadsafe()) {
		snprintf(err, errlen, "the SQLite library was built without thread support");
		return CV_E_STORAGE;
	}
	cv_backend_t *b = calloc(1, sizeof *b);
	if (!b)
		return CV_E_NOMEM;
	cv_slots_init(&b->slots, 1);
	err[0] = '\0';
	cv_rc rc = open_writer(b, path, err, errlen);
	unsigned n = read_conns < 1 ? 1 : read_conns > READ_CONNS_MAX ? READ_CONNS_MAX : read_conns;
	for (unsigned i = 0; !rc && i < n; i++) {
		rc = open_reader(path, &b->readers[i], err, errlen);
		b->slots.n = i + 1;
	}
	if (rc) {
		sqlite_close(b);
		return rc;
	}
	*out = b;
	*ops = &sqlite_ops;
	return CV_OK;
}
