/*
 * postgres.c - the scale-out back end: PostgreSQL through libpq.
 *
 * Same semantics as the SQLite back end: every version kept, tombstones, a
 * batch of writes in one transaction committed (synchronous_commit on)
 * before any is acknowledged, migrations at start. Several carevault nodes
 * may share one database: a version is inserted only if the row's current
 * version is the one the writer saw (checked in the INSERT itself, with the
 * unique (type, rid, version) key settling races between nodes), and
 * migrations run under an advisory lock.
 *
 * Connections: one for the committer thread, a bounded pool for reads. A
 * connection found broken is reset once and the call retried; if the
 * database stays away the call fails with CV_E_BUSY (503, retry) and the
 * next call tries again, so nodes recover by themselves after a restart.
 */
#include <endian.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/log.h"
#include "store/backend.h"
#include "store/query.h"
#include "store/slots.h"

#define PG_LOCK_MIGRATE 0x63766d67 /* advisory lock key: "cvmg" */

typedef struct pconn {
	PGconn *c;
	int prepared;  /* statements prepared on this connection */
} pconn_t;

struct cv_backend {
	char *conninfo;
	pconn_t writer;                   /* the committer thread's */
	pconn_t readers[CV_SLOTS_MAX];
	cv_slots_t slots;                 /* which readers are free */
};

static const char *const migrations[] = {
	"CREATE TABLE IF NOT EXISTS cv_meta (name text PRIMARY KEY, value bytea NOT NULL);"
	"CREATE TABLE IF NOT EXISTS cv_version ("
	"  seq bigserial PRIMARY KEY,"
	"  type text NOT NULL,"
	"  rid text NOT NULL,"
	"  version bigint NOT NULL,"
	"  updated_us bigint NOT NULL,"
	"  deleted boolean NOT NULL,"
	"  body bytea NOT NULL,"
	"  UNIQUE (type, rid, version));"
	"CREATE INDEX IF NOT EXISTS cv_version_type_seq ON cv_version (type, seq);",
	/* 2: current versions and the search index (store/query.h) */
	"CREATE TABLE cv_resource ("
	"  rk bigserial PRIMARY KEY,"
	"  type text NOT NULL,"
	"  rid text NOT NULL,"
	"  version bigint NOT NULL,"
	"  seq bigint NOT NULL,"
	"  updated_us bigint NOT NULL,"
	"  deleted boolean NOT NULL,"
	"  UNIQUE (type, rid));"
	"CREATE INDEX cv_resource_type ON cv_resource (type, rk);"
	"CREATE TABLE cv_ix_hash (h bytea NOT NULL, rk bigint NOT NULL, PRIMARY KEY (h, rk));"
	"CREATE INDEX cv_ix_hash_rk ON cv_ix_hash (rk);"
	"CREATE TABLE cv_ix_date (rk bigint NOT NULL, param text NOT NULL, lo bigint NOT NULL, hi bigint NOT NULL);"
	"CREATE INDEX cv_ix_date_rk ON cv_ix_date (rk, param);"
	"CREATE TABLE cv_ix_num (rk bigint NOT NULL, param text NOT NULL, unit text NOT NULL,"
	"  lo double precision NOT NULL, hi double precision NOT NULL);"
	"CREATE INDEX cv_ix_num_rk ON cv_ix_num (rk, param);"
	"INSERT INTO cv_resource (type, rid, version, seq, updated_us, deleted) "
	"  SELECT DISTINCT ON (type, rid) type, rid, version, seq, updated_us, deleted FROM cv_version "
	"  ORDER BY type, rid, version DESC;",
	/* 3: the audit trail (store.h, "the audit trail") */
	"CREATE TABLE cv_audit ("
	"  pos bigint PRIMARY KEY,"
	"  at_us bigint NOT NULL,"
	"  action text NOT NULL,"
	"  outcome bigint NOT NULL,"
	"  flags bigint NOT NULL,"
	"  kind text NOT NULL,"
	"  subtype text NOT NULL,"
	"  agent text NOT NULL,"
	"  id text NOT NULL,"
	"  nres bigint NOT NULL,"
	"  keys bytea NOT NULL,"
	"  body bytea NOT NULL,"
	"  prev bytea NOT NULL,"
	"  hash bytea NOT NULL,"
	"  npat bigint NOT NULL);"
	"CREATE INDEX cv_audit_id ON cv_audit (id);"
	"CREATE INDEX cv_audit_at ON cv_audit (at_us);"
	"CREATE INDEX cv_audit_agent ON cv_audit (agent, pos);"
	"CREATE TABLE cv_audit_key (k bytea NOT NULL, pos bigint NOT NULL, PRIMARY KEY (k, pos));"
	"CREATE TABLE cv_audit_head (one integer PRIMARY KEY CHECK (one = 1), pos bigint NOT NULL, hash bytea NOT NULL);"
	"INSERT INTO cv_audit_head VALUES (1, 0, decode(repeat('00', 32), 'hex'));"
	"CREATE TABLE cv_audit_checkpoint (pos bigint PRIMARY KEY, at_us bigint NOT NULL, hash bytea NOT NULL,"
	"  key bytea NOT NULL, sig bytea NOT NULL);",
	/* 4: data keys per owner (store.h, "data keys"); which key seals each current version */
	"CREATE TABLE cv_key ("
	"  kid bytea PRIMARY KEY,"
	"  owner bytea NOT NULL,"
	"  version bigint NOT NULL,"
	"  state int NOT NULL,"
	"  created_us bigint NOT NULL,"
	"  wrapped bytea NOT NULL,"
	"  UNIQUE (owner, version));"
	"ALTER TABLE cv_resource ADD COLUMN kid bytea;",
};

#define SQL_KEY_COLS "SELECT kid, owner, version, state::bigint, created_us, wrapped FROM cv_key "

/* The current rows sealed under one of owner $1's keys (an erasure's). */
#define SQL_ERASED_RKS "(SELECT rk FROM cv_resource WHERE kid IN (SELECT kid FROM cv_key WHERE owner = $1::bytea))"

static const struct {
	const char *name;
	const char *sql;
} statements[] = {
	{ "read_cur", "SELECT seq, version, updated_us, deleted, body FROM cv_version "
		      "WHERE type = $1 AND rid = $2 ORDER BY version DESC LIMIT 1" },
	{ "read_ver", "SELECT seq, version, updated_us, deleted, body FROM cv_version "
		      "WHERE type = $1 AND rid = $2 AND version = $3::bigint" },
	{ "meta_get", "SELECT value FROM cv_meta WHERE name = $1" },
	{ "meta_put", "INSERT INTO cv_meta (name, value) VALUES ($1, $2) "
		      "ON CONFLICT (name) DO UPDATE SET value = excluded.value" },
	{ "put_version", "INSERT INTO cv_version (type, rid, version, updated_us, deleted, body) "
			 "SELECT $1, $2, $3::bigint + 1, $4::bigint, $5::boolean, $6 "
			 "WHERE COALESCE((SELECT max(version) FROM cv_version WHERE type = $1 AND rid = $2), 0) "
			 "= $3::bigint ON CONFLICT DO NOTHING RETURNING seq" },
	{ "count", "SELECT count(*)::bigint FROM cv_version" },
	{ "last_seq", "SELECT COALESCE(max(seq), 0)::bigint FROM cv_version" },
	{ "types_seq", "SELECT COALESCE(max(m), 0)::bigint FROM (SELECT (SELECT max(seq) FROM cv_version WHERE type = $1) m "
		       "UNION ALL SELECT (SELECT max(seq) FROM cv_version WHERE type = $2) "
		       "UNION ALL SELECT (SELECT max(seq) FROM cv_version WHERE type = $3) "
		       "UNION ALL SELECT (SELECT max(seq) FROM cv_version WHERE type = $4) "
		       "UNION ALL SELECT (SELECT max(seq) FROM cv_version WHERE type = $5) "
		       "UNION ALL SELECT (SELECT max(seq) FROM cv_version WHERE type = $6)) t" },
	{ "claim", "INSERT INTO cv_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE "
		   "SET value = excluded.value WHERE cv_meta.value < $3 RETURNING name" },
	{ "put_current", "INSERT INTO cv_resource (type, rid, version, seq, updated_us, deleted, kid) "
			 "VALUES ($1, $2, $3::bigint, $4::bigint, $5::bigint, $6::boolean, $7::bytea) "
			 "ON CONFLICT (type, rid) DO UPDATE SET version = excluded.version, seq = excluded.seq, "
			 "updated_us = excluded.updated_us, deleted = excluded.deleted, kid = excluded.kid RETURNING rk" },
	{ "current_rk", "SELECT rk FROM cv_resource WHERE type = $1 AND rid = $2 AND NOT deleted "
			"AND version = $3::bigint" },
	{ "ix_delete", "WITH a AS (DELETE FROM cv_ix_hash WHERE rk = $1::bigint), "
		       "b AS (DELETE FROM cv_ix_date WHERE rk = $1::bigint) "
		       "DELETE FROM cv_ix_num WHERE rk = $1::bigint" },
	{ "ix_hash", "INSERT INTO cv_ix_hash (h, rk) SELECT substring($1::bytea FROM i * 16 + 1 FOR 16), $2::bigint "
		     "FROM generate_series(0, length($1::bytea) / 16 - 1) AS i ON CONFLICT DO NOTHING" },
	{ "ix_date", "INSERT INTO cv_ix_date (rk, param, lo, hi) SELECT $1::bigint, p, l, h "
		     "FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS t(p, l, h)" },
	{ "ix_num", "INSERT INTO cv_ix_num (rk, param, unit, lo, hi) SELECT $1::bigint, p, u, l, h "
		    "FROM unnest($2::text[], $3::text[], $4::float8[], $5::float8[]) AS t(p, u, l, h)" },
	{ "scan", "SELECT seq, version, updated_us, deleted, body, type, rid FROM cv_version "
		  "WHERE seq > $1::bigint ORDER BY seq LIMIT $2::bigint" },
	{ "scan_meta", "SELECT name, value FROM cv_meta ORDER BY name" },
	/* the chain's head, locked until the batch commits: one chain for every node */
	{ "audit_head_lock", "SELECT pos, hash FROM cv_audit_head WHERE one = 1 FOR UPDATE" },
	{ "audit_head_set", "UPDATE cv_audit_head SET pos = $1::bigint, hash = $2::bytea WHERE one = 1" },
	{ "audit_insert", "INSERT INTO cv_audit (pos, at_us, action, outcome, flags, kind, subtype, agent, id, nres, "
			  "keys, body, prev, hash, npat) VALUES ($1::bigint, $2::bigint, $3, $4::bigint, $5::bigint, "
			  "$6, $7, $8, $9, $10::bigint, $11::bytea, $12::bytea, $13::bytea, $14::bytea, $15::bigint)" },
	{ "audit_keys", "INSERT INTO cv_audit_key (k, pos) SELECT substring($1::bytea FROM i * 16 + 1 FOR 16), "
			"$2::bigint FROM generate_series(0, length($1::bytea) / 16 - 1) AS i ON CONFLICT DO NOTHING" },
	{ "audit_checkpoint", "INSERT INTO cv_audit_checkpoint (pos, at_us, hash, key, sig) VALUES ($1::bigint, "
			      "$2::bigint, $3::bytea, $4::bytea, $5::bytea) ON CONFLICT (pos) DO NOTHING" },
	{ "audit_head", "SELECT pos, hash FROM cv_audit_head WHERE one = 1" },
	/* audit verify: key rows missing for (key, pos) pairs ($1 the keys end to end, $2 their positions),
	 * and rows no record names (an aligned match is not needed: keys are HMACs) */
	{ "audit_keys_missing", "SELECT coalesce(min(p.pos), 0) FROM (SELECT substring($1::bytea FROM (i - 1) * 16 + 1 "
				"FOR 16) AS k, ($2::bigint[])[i] AS pos FROM generate_subscripts($2::bigint[], 1) AS i) p "
				"WHERE NOT EXISTS (SELECT 1 FROM cv_audit_key c WHERE c.k = p.k AND c.pos = p.pos)" },
	{ "audit_keys_count", "SELECT count(*) FROM cv_audit_key WHERE pos BETWEEN $1::bigint AND $2::bigint" },
	{ "audit_keys_extra", "SELECT coalesce(min(k.pos), 0) FROM cv_audit_key k LEFT JOIN cv_audit a ON a.pos = k.pos "
			      "WHERE k.pos BETWEEN $1::bigint AND $2::bigint AND (a.pos IS NULL OR "
			      "position(k.k IN a.keys) = 0)" },
	{ "audit_prune_keys", "DELETE FROM cv_audit_key WHERE pos <= $1::bigint" },
	{ "audit_prune", "DELETE FROM cv_audit WHERE pos <= $1::bigint" },
	{ "audit_checkpoints", "SELECT pos, at_us, hash, key, sig FROM cv_audit_checkpoint ORDER BY pos" },
	{ "audit_checkpoint_last", "SELECT pos, at_us, hash, key, sig FROM cv_audit_checkpoint ORDER BY pos DESC LIMIT 1" },
	/* data keys (backend.h, "How a back end applies the key parts of writes") */
	{ "key_insert", "INSERT INTO cv_key (kid, owner, version, state, created_us, wrapped) VALUES ($1::bytea, "
			"$2::bytea, $3::bigint, $4::int, $5::bigint, $6::bytea) ON CONFLICT DO NOTHING" },
	{ "key_owner", "SELECT kid FROM cv_key WHERE owner = $1::bytea AND version = $2::bigint" },
	{ "key_get", SQL_KEY_COLS "WHERE kid = $1::bytea" },
	{ "key_state", "SELECT state::bigint FROM cv_key WHERE kid = $1::bytea FOR SHARE" },
	{ "key_rewrap", "UPDATE cv_key SET wrapped = $2::bytea WHERE kid = $1::bytea AND state <> 3" },
	{ "key_retire", "UPDATE cv_key SET state = 2 WHERE owner = $1::bytea AND state = 1 AND version < $2::bigint" },
	{ "key_purge", "UPDATE cv_key SET state = 3, wrapped = ''::bytea WHERE state = 2 AND owner <> $1::bytea "
		       "AND owner <> $2::bytea" },
	{ "reseal_version", "UPDATE cv_version SET body = $4::bytea WHERE type = $1 AND rid = $2 AND version = $3::bigint" },
	{ "reseal_current", "UPDATE cv_resource SET kid = $4::bytea WHERE type = $1 AND rid = $2 AND version = $3::bigint" },
	{ "reseal_shred", "WITH r AS (UPDATE cv_resource SET deleted = true WHERE type = $1 AND rid = $2 AND "
			  "version = $3::bigint AND kid = $4::bytea RETURNING rk), a AS (DELETE FROM cv_ix_hash WHERE rk IN "
			  "(SELECT rk FROM r)), b AS (DELETE FROM cv_ix_date WHERE rk IN (SELECT rk FROM r)) "
			  "DELETE FROM cv_ix_num WHERE rk IN (SELECT rk FROM r)" },
	{ "master_version", "SELECT convert_from(value, 'UTF8') FROM cv_meta WHERE name = 'master.version' FOR SHARE" },
	{ "key_current", SQL_KEY_COLS "WHERE owner = $1::bytea ORDER BY version DESC LIMIT 1" },
	{ "key_scan", SQL_KEY_COLS "WHERE (owner, version) > ($1::bytea, $2::bigint) ORDER BY owner, version "
		      "LIMIT $3::bigint" },
	{ "erase_index", "WITH a AS (DELETE FROM cv_ix_hash WHERE rk IN " SQL_ERASED_RKS "), "
			 "b AS (DELETE FROM cv_ix_date WHERE rk IN " SQL_ERASED_RKS ") "
			 "DELETE FROM cv_ix_num WHERE rk IN " SQL_ERASED_RKS },
	{ "erase_resources", "UPDATE cv_resource SET deleted = true WHERE NOT deleted AND kid IN "
			     "(SELECT kid FROM cv_key WHERE owner = $1::bytea)" },
	{ "erase_keys", "UPDATE cv_key SET state = 3, wrapped = ''::bytea WHERE owner = $1::bytea" },
};

/* Server notices ("relation already exists, skipping" from the idempotent
 * migrations) are not errors: libpq would print them on stderr. */
static void quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static int64_t get_i64(const PGresult *r, int row, int col)
{
	uint64_t v;
	memcpy(&v, PQgetvalue(r, row, col), sizeof v);
	return (int64_t)be64toh(v);
}

static void log_pg(const char *what, PGconn *c)
{
	/* libpq messages name the server, never data */
	char msg[256];
	snprintf(msg, sizeof msg, "%s: %s", what, c ? PQerrorMessage(c) : "no connection");
	msg[strcspn(msg, "\n")] = '\0';
	cv_log_msg(CV_LOG_ERROR, "store.postgres", msg);
}

static cv_rc exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	PQclear(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		log_pg("exec", c);
		return CV_E_STORAGE;
	}
	return CV_OK;
}

static cv_rc prepare_all(pconn_t *p)
{
	for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
		PGresult *r = PQprepare(p->c, statements[i].name, statements[i].sql, 0, NULL);
		ExecStatusType st = PQresultStatus(r);
		PQclear(r);
		if (st != PGRES_COMMAND_OK) {
			log_pg("prepare", p->c);
			return CV_E_STORAGE;
		}
	}
	p->prepared = 1;
	return CV_OK;
}

/* Makes sure p has a working connection with its statements (reconnecting). */
static cv_rc ensure(cv_backend_t *b, pconn_t *p)
{
	if (p->c && PQstatus(p->c) == CONNECTION_OK && p->prepared)
		return CV_OK;
	if (p->c)
		PQfinish(p->c);
	p->prepared = 0;
	p->c = PQconnectdb(b->conninfo);
	if (p->c)
		PQsetNoticeProcessor(p->c, quiet_notice, NULL);
	if (PQstatus(p->c) != CONNECTION_OK) {
		log_pg("connect", p->c);
		PQfinish(p->c);
		p->c = NULL;
		return CV_E_BUSY;
	}
	return prepare_all(p);
}

/* After a failed call: was it the connection? Then drop it so the next call reconnects. */
static int broken(pconn_t *p)
{
	if (p->c && PQstatus(p->c) == CONNECTION_OK)
		return 0;
	if (p->c)
		PQfinish(p->c);
	p->c = NULL;
	p->prepared = 0;
	return 1;
}

static pconn_t *reader_take(cv_backend_t *b)
{
	return &b->readers[cv_slots_take(&b->slots)];
}

static void reader_give(cv_backend_t *b, pconn_t *p)
{
	cv_slots_give(&b->slots, (unsigned)(p - b->readers));
}

/* Runs a prepared statement on a pooled connection, retrying once on a
 * broken connection. *out is the result (caller PQclears it). */
static cv_rc run_read(cv_backend_t *b, const char *stmt, int n, const char *const *vals, const int *lens,
		      const int *fmts, PGresult **out)
{
	pconn_t *p = reader_take(b);
	cv_rc rc = CV_E_BUSY;
	for (int attempt = 0; attempt < 2; attempt++) {
		rc = ensure(b, p);
		if (rc)
			continue;
		PGresult *r = PQexecPrepared(p->c, stmt, n, vals, lens, fmts, 1);
		if (PQresultStatus(r) == PGRES_TUPLES_OK) {
			*out = r;
			rc = CV_OK;
			break;
		}
		PQclear(r);
		rc = broken(p) ? CV_E_BUSY : CV_E_STORAGE;
		if (rc == CV_E_STORAGE) {
			log_pg(stmt, p->c);
			break;
		}
	}
	reader_give(b, p);
	return rc;
}

static cv_rc row_to_version(const PGresult *r, const char *type, const char *rid, cv_pool_t *pool,
			    cv_store_version_t *out)
{
	out->seq = get_i64(r, 0, 0);
	out->version = get_i64(r, 0, 1);
	out->updated_us = get_i64(r, 0, 2);
	out->deleted = PQgetvalue(r, 0, 3)[0] != 0;
	size_t len = (size_t)PQgetlength(r, 0, 4);
	uint8_t *copy = cv_pool_alloc(pool, len ? len : 1);
	out->type = cv_pool_strdup(pool, type);
	out->rid = cv_pool_strdup(pool, rid);
	if (!copy || !out->type || !out->rid)
		return CV_E_NOMEM;
	memcpy(copy, PQgetvalue(r, 0, 4), len);
	out->body = copy;
	out->body_len = len;
	return CV_OK;
}

/* Row i of a result with the columns seq, version, updated_us, deleted, body,
 * type, rid; the pointers live as long as the result. */
static cv_store_version_t result_row(const PGresult *r, int i)
{
	return (cv_store_version_t){
		.seq = get_i64(r, i, 0), .version = get_i64(r, i, 1), .updated_us = get_i64(r, i, 2),
		.deleted = PQgetvalue(r, i, 3)[0] != 0,
		.body = (const uint8_t *)PQgetvalue(r, i, 4), .body_len = (size_t)PQgetlength(r, i, 4),
		.type = PQgetvalue(r, i, 5), .rid = PQgetvalue(r, i, 6),
	};
}

static cv_rc pg_read(cv_backend_t *b, const char *type, const char *rid, int64_t version, cv_pool_t *pool,
		     cv_store_version_t *out)
{
	char vbuf[24];
	snprintf(vbuf, sizeof vbuf, "%lld", (long long)version);
	const char *vals[3] = { type, rid, vbuf };
	PGresult *r = NULL;
	cv_rc rc = run_read(b, version ? "read_ver" : "read_cur", version ? 3 : 2, vals, NULL, NULL, &r);
	if (!rc)
		rc = PQntuples(r) == 0 ? CV_E_NOTFOUND : row_to_version(r, type, rid, pool, out);
	PQclear(r);
	return rc;
}

static cv_rc pg_meta_get(cv_backend_t *b, const char *name, cv_buf_t *out)
{
	const char *vals[1] = { name };
	PGresult *r = NULL;
	cv_rc rc = run_read(b, "meta_get", 1, vals, NULL, NULL, &r);
	if (!rc)
		rc = PQntuples(r) == 0 ? CV_E_NOTFOUND
				       : cv_buf_append(out, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
	PQclear(r);
	return rc;
}

static cv_rc pg_ping(cv_backend_t *b)
{
	const char *vals[1] = { "-" };
	PGresult *r = NULL;
	cv_rc rc = run_read(b, "meta_get", 1, vals, NULL, NULL, &r);
	PQclear(r);
	return rc;
}

/* The history query with only the filters asked for, numbered in order. */
static cv_rc history_sql(const cv_store_history_query_t *q, const char *rid, cv_buf_t *sql, const char **vals,
			 char nums[3][24], int *n)
{
	cv_rc rc = cv_buf_puts(sql, "SELECT seq, version, updated_us, deleted, body, type, rid FROM cv_version WHERE true");
	*n = 0;
	if (!rc && q->type) {
		vals[(*n)++] = q->type;
		rc = cv_buf_printf(sql, " AND type = $%d", *n);
	} else if (!rc) {
		rc = cv_buf_puts(sql, " AND type NOT LIKE '~%'");
	}
	if (!rc && rid) {
		vals[(*n)++] = rid;
		rc = cv_buf_printf(sql, " AND rid = $%d", *n);
	}
	if (!rc && q->since_us > 0) {
		snprintf(nums[0], 24, "%lld", (long long)q->since_us);
		vals[(*n)++] = nums[0];
		rc = cv_buf_printf(sql, " AND updated_us >= $%d::bigint", *n);
	}
	if (!rc && q->before_seq > 0) {
		snprintf(nums[1], 24, "%lld", (long long)q->before_seq);
		vals[(*n)++] = nums[1];
		rc = cv_buf_printf(sql, " AND seq < $%d::bigint", *n);
	}
	snprintf(nums[2], 24, "%u", q->limit);
	vals[(*n)++] = nums[2];
	if (!rc)
		rc = cv_buf_printf(sql, " ORDER BY seq DESC LIMIT $%d::bigint", *n);
	return rc;
}

static cv_rc pg_history(cv_backend_t *b, const cv_store_history_query_t *q, const char *rid, cv_pool_t *pool,
			cv_store_version_fn fn, void *arg)
{
	cv_buf_t sql;
	const char *vals[5];
	char nums[3][24];
	int n;
	cv_buf_init(&sql, 1024);
	cv_rc rc = history_sql(q, rid, &sql, vals, nums, &n);
	pconn_t *p = rc ? NULL : reader_take(b);
	PGresult *r = NULL;
	if (p && !(rc = ensure(b, p))) {
		r = PQexecParams(p->c, sql.data, n, NULL, vals, NULL, NULL, 1);
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			rc = broken(p) ? CV_E_BUSY : CV_E_STORAGE;
	}
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		cv_store_version_t v = result_row(r, i);
		rc = fn(arg, &v);
	}
	PQclear(r);
	if (p)
		reader_give(b, p);
	cv_buf_release(&sql);
	return rc;
}

/* Runs a prepared write statement; *out gets the result when wanted. */
static cv_rc run_write(PGconn *c, const char *stmt, int n, const char *const *vals, const int *lens,
		       const int *fmts, PGresult **out)
{
	PGresult *r = PQexecPrepared(c, stmt, n, vals, lens, fmts, 1);
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		PQclear(r);
		return CV_E_STORAGE;
	}
	if (out)
		*out = r;
	else
		PQclear(r);
	return CV_OK;
}

/* Appends s as an element of a PostgreSQL array literal ("..." with \\ escapes). */
static cv_rc array_text(cv_buf_t *b, const char *s)
{
	cv_rc rc = cv_buf_puts(b, b->len > 1 ? ",\"" : "\"");
	for (; !rc && *s; s++)
		rc = (*s == '"' || *s == '\\') ? cv_buf_printf(b, "\\%c", *s) : cv_buf_append(b, s, 1);
	return rc ? rc : cv_buf_puts(b, "\"");
}

/* The date and number entries of w as array literals: params, units, lows, highs. */
typedef struct ix_arrays {
	cv_buf_t dp, dl, dh;      /* dates: params, lows, highs */
	cv_buf_t np, nu, nl, nh;  /* numbers: params, units, lows, highs */
	size_t nd, nn;
} ix_arrays_t;

static void arrays_release(ix_arrays_t *a)
{
	cv_buf_t *all[] = { &a->dp, &a->dl, &a->dh, &a->np, &a->nu, &a->nl, &a->nh };
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		cv_buf_release(all[i]);
}

static cv_rc arrays_build(const cv_store_write_t *w, ix_arrays_t *a)
{
	cv_buf_t *all[] = { &a->dp, &a->dl, &a->dh, &a->np, &a->nu, &a->nl, &a->nh };
	cv_rc rc = CV_OK;
	memset(a, 0, sizeof *a);
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
		cv_buf_init(all[i], 64u << 20);
		if (!rc)
			rc = cv_buf_puts(all[i], "{");
	}
	for (size_t i = 0; !rc && i < w->nindex; i++) {
		const cv_ix_entry_t *e = &w->index[i];
		if (e->kind == CV_IX_DATE) {
			rc = array_text(&a->dp, e->param);
			if (!rc)
				rc = cv_buf_printf(&a->dl, "%s%lld", a->nd ? "," : "", (long long)e->lo);
			if (!rc)
				rc = cv_buf_printf(&a->dh, "%s%lld", a->nd ? "," : "", (long long)e->hi);
			a->nd++;
		} else if (e->kind == CV_IX_NUM) {
			rc = array_text(&a->np, e->param);
			if (!rc)
				rc = array_text(&a->nu, e->key ? e->key : "");
			if (!rc)
				rc = cv_buf_printf(&a->nl, "%s%.17g", a->nn ? "," : "", e->nlo);
			if (!rc)
				rc = cv_buf_printf(&a->nh, "%s%.17g", a->nn ? "," : "", e->nhi);
			a->nn++;
		}
	}
	for (size_t i = 0; !rc && i < sizeof all / sizeof all[0]; i++)
		rc = cv_buf_puts(all[i], "}");
	return rc;
}

/* Replaces the index entries of row key rk with w's. */
static cv_rc write_index(PGconn *c, const char *rk, const cv_store_write_t *w, int fresh)
{
	cv_rc rc = CV_OK;
	const char *one[1] = { rk };
	if (!fresh)
		rc = run_write(c, "ix_delete", 1, one, NULL, NULL, NULL);
	if (!rc && w->blinded.len) {
		const char *vals[2] = { w->blinded.data, rk };
		int lens[2] = { (int)w->blinded.len, 0 }, fmts[2] = { 1, 0 };
		rc = run_write(c, "ix_hash", 2, vals, lens, fmts, NULL);
	}
	if (rc)
		return rc;
	ix_arrays_t a;
	rc = arrays_build(w, &a);
	if (!rc && a.nd) {
		const char *vals[4] = { rk, a.dp.data, a.dl.data, a.dh.data };
		rc = run_write(c, "ix_date", 4, vals, NULL, NULL, NULL);
	}
	if (!rc && a.nn) {
		const char *vals[5] = { rk, a.np.data, a.nu.data, a.nl.data, a.nh.data };
		rc = run_write(c, "ix_num", 5, vals, NULL, NULL, NULL);
	}
	arrays_release(&a);
	return rc;
}

/* Stores a key row unless its id or (owner, version) is taken. With
 * `must_win`, CV_E_CONFLICT when (owner, version) holds another key. */
static cv_rc insert_key(PGconn *c, const cv_store_key_row_t *k, bool must_win)
{
	char version[24], state[24], created[24];
	snprintf(version, sizeof version, "%lld", (long long)k->version);
	snprintf(state, sizeof state, "%d", k->state);
	snprintf(created, sizeof created, "%lld", (long long)k->created_us);
	const char *vals[6] = { (const char *)k->kid, (const char *)k->owner, version, state, created,
				k->wrapped_len ? (const char *)k->wrapped : "" };
	int lens[6] = { CV_KID_BYTES, CV_OWNER_BYTES, 0, 0, 0, (int)k->wrapped_len };
	int fmts[6] = { 1, 1, 0, 0, 0, 1 };
	PGresult *r = NULL;
	cv_rc rc = run_write(c, "key_insert", 6, vals, lens, fmts, &r);
	bool inserted = !rc && strcmp(PQcmdTuples(r), "1") == 0;
	PQclear(r);
	if (rc || !must_win || inserted)
		return rc;
	const char *own[2] = { (const char *)k->owner, version };
	int olens[2] = { CV_OWNER_BYTES, 0 }, ofmts[2] = { 1, 0 };
	r = NULL;
	rc = run_write(c, "key_owner", 2, own, olens, ofmts, &r);
	bool same = !rc && PQntuples(r) == 1 && PQgetlength(r, 0, 0) == CV_KID_BYTES &&
		    memcmp(PQgetvalue(r, 0, 0), k->kid, CV_KID_BYTES) == 0;
	PQclear(r);
	return rc ? rc : same ? CV_OK : CV_E_CONFLICT;
}

/* A new version (the version check is in its INSERT), with its key when
 * that is new, its current row and its index. */
/* CV_E_GONE when the key that sealed w was destroyed (an erasure committed
 * while this node still had it cached). The row lock (FOR SHARE) holds
 * until the commit, so an erasure racing this write waits for it and then
 * finds its version (apply_erase destroys the keys first). */
static cv_rc key_alive(PGconn *c, const cv_store_write_t *w)
{
	if (!w->keyent)
		return CV_OK;
	const char *vals[1] = { (const char *)w->keyent->row.kid };
	int lens[1] = { CV_KID_BYTES }, fmts[1] = { 1 };
	PGresult *r = NULL;
	cv_rc rc = run_write(c, "key_state", 1, vals, lens, fmts, &r);
	int64_t state = !rc && PQntuples(r) == 1 ? get_i64(r, 0, 0) : CV_KEY_ACTIVE;
	if (!rc && state == CV_KEY_DESTROYED)
		rc = CV_E_GONE;      /* erased */
	else if (!rc && state == CV_KEY_RETIRED)
		rc = CV_E_AGAIN;     /* rotated meanwhile: the store redoes the write under the new key */
	PQclear(r);
	return rc;
}

/* CV_E_CONFLICT when a new key was wrapped by an older master key version
 * than the store's "master.version" (a rotation began meanwhile: the writer
 * reads its master key again and retries). The row is read FOR SHARE: a
 * rotation's update of it waits for this write, whose key its scan then sees. */
static cv_rc wrap_current(PGconn *c, const cv_store_key_row_t *k)
{
	uint32_t id;
	char text[16] = "";
	if (cv_crypto_blob_key_id(k->wrapped, k->wrapped_len, &id))
		return CV_E_CRYPTO;
	PGresult *r = NULL;
	cv_rc rc = run_write(c, "master_version", 0, NULL, NULL, NULL, &r);
	if (!rc && PQntuples(r) == 1)
		snprintf(text, sizeof text, "%.*s", PQgetlength(r, 0, 0) < 15 ? PQgetlength(r, 0, 0) : 15, PQgetvalue(r, 0, 0));
	PQclear(r);
	return rc ? rc : id < (uint32_t)strtoul(text, NULL, 10) ? CV_E_CONFLICT : CV_OK;
}

/* Data key rotation (store.h: KEY_RETIRE, RESEAL, KEY_PURGE). */
static cv_rc rotation_step(PGconn *c, cv_store_write_t *w)
{
	const cv_store_key_row_t *k = w->keyrow;
	char num[24];
	if (w->op != CV_STORE_RESEAL) {
		bool retire = w->op == CV_STORE_KEY_RETIRE;
		if (!retire && w->body_len != CV_OWNER_BYTES)
			return CV_E_INVALID;
		snprintf(num, sizeof num, "%lld", (long long)k->version);
		const char *vals[2] = { (const char *)k->owner, retire ? num : (const char *)w->body };
		int lens[2] = { CV_OWNER_BYTES, retire ? 0 : CV_OWNER_BYTES }, fmts[2] = { 1, retire ? 0 : 1 };
		PGresult *r = NULL;
		cv_rc rc = run_write(c, retire ? "key_retire" : "key_purge", 2, vals, lens, fmts, &r);
		if (!rc && retire && strcmp(PQcmdTuples(r), "0") == 0)
			rc = CV_E_GONE; /* erased meanwhile */
		PQclear(r);
		return rc;
	}
	snprintf(num, sizeof num, "%lld", (long long)w->expect_version);
	const char *vals[4] = { w->type, w->rid, num, w->sealed.data };
	int lens[4] = { 0, 0, 0, (int)w->sealed.len }, fmts[4] = { 0, 0, 0, 1 };
	PGresult *r = NULL;
	cv_rc rc = run_write(c, "reseal_version", 4, vals, lens, fmts, &r);
	if (!rc && strcmp(PQcmdTuples(r), "1") != 0)
		rc = CV_E_NOTFOUND;
	PQclear(r);
	vals[3] = (const char *)k->kid;
	lens[3] = CV_KID_BYTES;
	if (!rc)
		rc = run_write(c, "reseal_current", 4, vals, lens, fmts, NULL);
	/* a version of an erased patient (store.h, RESEAL): out of the index, as the erasure would have done */
	return rc || !w->deleted ? rc : run_write(c, "reseal_shred", 4, vals, lens, fmts, NULL);
}

/* Master key rotation: a key's new wrapping (not for a destroyed key). */
static cv_rc rewrap_key(PGconn *c, const cv_store_write_t *w)
{
	const char *vals[2] = { (const char *)w->keyrow->kid, (const char *)w->keyrow->wrapped };
	int lens[2] = { CV_KID_BYTES, (int)w->keyrow->wrapped_len }, fmts[2] = { 1, 1 };
	return run_write(c, "key_rewrap", 2, vals, lens, fmts, NULL);
}

static cv_rc put_version(PGconn *c, cv_store_write_t *w)
{
	char expect[24], when[24], version[24], seq[24], rk[24];
	cv_rc rc = w->newkey ? CV_OK : key_alive(c, w);
	if (rc)
		return rc;
	snprintf(expect, sizeof expect, "%lld", (long long)w->expect_version);
	snprintf(when, sizeof when, "%lld", (long long)w->updated_us);
	const char *vals[6] = { w->type, w->rid, expect, when, w->deleted ? "true" : "false", w->sealed.data };
	int lens[6] = { 0, 0, 0, 0, 0, (int)w->sealed.len };
	int fmts[6] = { 0, 0, 0, 0, 0, 1 };
	PGresult *r = NULL;
	rc = run_write(c, "put_version", 6, vals, lens, fmts, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 0)
		rc = CV_E_CONFLICT;
	else
		w->seq = get_i64(r, 0, 0);
	PQclear(r);
	if (!rc && w->newkey)
		rc = wrap_current(c, &w->keyent->row);
	if (!rc && w->newkey)
		rc = insert_key(c, &w->keyent->row, true);
	if (rc)
		return rc;
	snprintf(version, sizeof version, "%lld", (long long)w->expect_version + 1);
	snprintf(seq, sizeof seq, "%lld", (long long)w->seq);
	uint8_t kid[CV_KID_BYTES];
	bool has_kid = !cv_crypto_blob_kid((const uint8_t *)w->sealed.data, w->sealed.len, kid);
	const char *cur[7] = { w->type, w->rid, version, seq, when, w->deleted ? "true" : "false",
			       has_kid ? (const char *)kid : NULL };
	int clens[7] = { [6] = CV_KID_BYTES }, cfmts[7] = { [6] = 1 };
	rc = run_write(c, "put_current", 7, cur, clens, cfmts, &r);
	if (rc)
		return rc;
	snprintf(rk, sizeof rk, "%lld", (long long)get_i64(r, 0, 0));
	PQclear(r);
	if (w->deleted) {
		const char *one[1] = { rk };
		return run_write(c, "ix_delete", 1, one, NULL, NULL, NULL);
	}
	return write_index(c, rk, w, w->expect_version == 0);
}

/* A version whose key is new stores the key with it (backend.h): when
 * another writer gave the owner a key first, a savepoint takes the version
 * back out, so that the write fails having written nothing. */
static cv_rc apply_version(PGconn *c, cv_store_write_t *w)
{
	if (!w->newkey)
		return put_version(c, w);
	if (exec_ok(c, "SAVEPOINT k"))
		return CV_E_STORAGE;
	cv_rc rc = put_version(c, w);
	if (rc == CV_E_STORAGE)
		return rc;
	if (rc && exec_ok(c, "ROLLBACK TO SAVEPOINT k"))
		return CV_E_STORAGE;
	return exec_ok(c, "RELEASE SAVEPOINT k") ? CV_E_STORAGE : rc;
}

static cv_rc apply_reindex(PGconn *c, cv_store_write_t *w)
{
	char rk[24], version[24];
	snprintf(version, sizeof version, "%lld", (long long)w->expect_version);
	const char *vals[3] = { w->type, w->rid, version };
	PGresult *r = NULL;
	cv_rc rc = run_write(c, "current_rk", 3, vals, NULL, NULL, &r);
	if (rc)
		return rc;
	if (PQntuples(r) == 0)
		rc = CV_E_NOTFOUND;
	else
		snprintf(rk, sizeof rk, "%lld", (long long)get_i64(r, 0, 0));
	PQclear(r);
	return rc ? rc : write_index(c, rk, w, 0);
}

static cv_rc apply_meta(PGconn *c, cv_store_write_t *w)
{
	const char *vals[2] = { w->name, (const char *)w->body };
	int lens[2] = { 0, (int)w->body_len };
	int fmts[2] = { 0, 1 };
	PGresult *r = PQexecPrepared(c, "meta_put", 2, vals, lens, fmts, 1);
	cv_rc rc = PQresultStatus(r) == PGRES_COMMAND_OK ? CV_OK : CV_E_STORAGE;
	PQclear(r);
	return rc;
}

static cv_rc apply_claim(PGconn *c, cv_store_write_t *w)
{
	char now[21], old[21];
	snprintf(now, sizeof now, "%020lld", (long long)(w->updated_us < 0 ? 0 : w->updated_us));
	int64_t o = w->updated_us - CV_STORE_CLAIM_US;
	snprintf(old, sizeof old, "%020lld", (long long)(o < 0 ? 0 : o));
	const char *vals[3] = { w->name, now, old };
	int lens[3] = { 0, 20, 20 }, fmts[3] = { 0, 1, 1 };
	PGresult *r = NULL;
	cv_rc rc = run_write(c, "claim", 3, vals, lens, fmts, &r);
	if (!rc && PQntuples(r) == 0)
		rc = CV_E_CONFLICT;
	PQclear(r);
	return rc;
}

/* ---- the audit trail ------------------------------------------------------ */

/* Locks and loads the chain's head (once per batch, before any savepoint,
 * so that a group rolled back does not release the lock). */
static cv_rc chain_load(PGconn *c, cv_audit_chain_t *chain)
{
	PGresult *r = NULL;
	cv_rc rc = run_write(c, "audit_head_lock", 0, NULL, NULL, NULL, &r);
	if (!rc && PQntuples(r) == 1 && PQgetlength(r, 0, 1) == CV_AUDIT_HASH_BYTES) {
		chain->pos = get_i64(r, 0, 0);
		memcpy(chain->hash, PQgetvalue(r, 0, 1), CV_AUDIT_HASH_BYTES);
		chain->loaded = true;
	} else if (!rc) {
		rc = CV_E_STORAGE;
	}
	PQclear(r);
	return rc;
}

static cv_rc chain_save(PGconn *c, const cv_audit_chain_t *chain)
{
	if (!chain->loaded)
		return CV_OK;
	char pos[24];
	snprintf(pos, sizeof pos, "%lld", (long long)chain->pos);
	const char *vals[2] = { pos, (const char *)chain->hash };
	int lens[2] = { 0, CV_AUDIT_HASH_BYTES }, fmts[2] = { 0, 1 };
	return run_write(c, "audit_head_set", 2, vals, lens, fmts, NULL);
}

static bool has_audit(const cv_store_write_t *batch)
{
	for (const cv_store_write_t *w = batch; w; w = w->next) {
		if (w->op == CV_STORE_AUDIT)
			return true;
		for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
			if (w->members[i]->op == CV_STORE_AUDIT)
				return true;
	}
	return false;
}

/* Inserts a row as it is (chained by the caller) with its search keys. */
static cv_rc insert_audit_row(PGconn *c, const cv_store_audit_row_t *a)
{
	cv_store_audit_row_t r = *a;
	char pos[24], at[24], outcome[24], flags[24], nres[24], npat[24], act[2] = { r.action, 0 };
	snprintf(pos, sizeof pos, "%lld", (long long)r.pos);
	snprintf(at, sizeof at, "%lld", (long long)r.at_us);
	snprintf(outcome, sizeof outcome, "%d", r.outcome);
	snprintf(flags, sizeof flags, "%u", r.flags);
	snprintf(nres, sizeof nres, "%lld", (long long)r.nres);
	snprintf(npat, sizeof npat, "%lld", (long long)r.npat);
	const char *vals[15] = { pos, at, act, outcome, flags, r.kind ? r.kind : "", r.subtype ? r.subtype : "",
				 r.agent ? r.agent : "", r.id ? r.id : "", nres, r.keys_len ? (const char *)r.keys : "",
				 (const char *)r.body, (const char *)r.prev, (const char *)r.hash, npat };
	int lens[15] = { [10] = (int)r.keys_len, [11] = (int)r.body_len, [12] = CV_AUDIT_HASH_BYTES,
			 [13] = CV_AUDIT_HASH_BYTES };
	int fmts[15] = { [10] = 1, [11] = 1, [12] = 1, [13] = 1 };
	cv_rc rc = run_write(c, "audit_insert", 15, vals, lens, fmts, NULL);
	if (!rc && r.keys_len) {
		const char *kv[2] = { (const char *)r.keys, pos };
		int kl[2] = { (int)r.keys_len, 0 }, kf[2] = { 1, 0 };
		rc = run_write(c, "audit_keys", 2, kv, kl, kf, NULL);
	}
	return rc;
}

static cv_rc apply_audit(PGconn *c, cv_audit_chain_t *chain, cv_store_write_t *w)
{
	cv_store_audit_row_t r;
	if (!chain->loaded)
		return CV_E_STORAGE;
	cv_audit_chain_t before = *chain;
	cv_audit_chain_next(chain, w, &r);
	cv_rc rc = insert_audit_row(c, &r);
	if (rc)
		*chain = before;
	return rc;
}

static cv_rc apply_checkpoint(PGconn *c, const cv_store_write_t *w)
{
	const cv_store_checkpoint_t *cp = w->checkpoint;
	char pos[24], at[24];
	snprintf(pos, sizeof pos, "%lld", (long long)cp->pos);
	snprintf(at, sizeof at, "%lld", (long long)cp->at_us);
	const char *vals[5] = { pos, at, (const char *)cp->hash, (const char *)cp->key, (const char *)cp->sig };
	int lens[5] = { 0, 0, CV_AUDIT_HASH_BYTES, 32, 64 }, fmts[5] = { 0, 0, 1, 1, 1 };
	return run_write(c, "audit_checkpoint", 5, vals, lens, fmts, NULL);
}

/* Retention: the archived records go, and the signed base is recorded. */
static cv_rc apply_prune(PGconn *c, cv_store_write_t *w)
{
	char pos[24];
	snprintf(pos, sizeof pos, "%lld", (long long)w->audit_pos);
	const char *vals[1] = { pos };
	cv_rc rc = run_write(c, "audit_prune_keys", 1, vals, NULL, NULL, NULL);
	if (!rc)
		rc = run_write(c, "audit_prune", 1, vals, NULL, NULL, NULL);
	return rc ? rc : apply_meta(c, w);
}

/* Crypto-shredding (backend.h, "ERASE"). */
static cv_rc apply_erase(PGconn *c, cv_store_write_t *w)
{
	const char *vals[1] = { (const char *)w->keyrow->owner };
	int lens[1] = { CV_OWNER_BYTES }, fmts[1] = { 1 };
	PGresult *r = NULL;
	/* the keys first: their row locks wait for writes that still use them (key_alive) */
	cv_rc rc = run_write(c, "erase_keys", 1, vals, lens, fmts, NULL);
	if (!rc)
		rc = run_write(c, "erase_index", 1, vals, lens, fmts, NULL);
	if (!rc)
		rc = run_write(c, "erase_resources", 1, vals, lens, fmts, &r);
	if (!rc) {
		w->erased = strtoll(PQcmdTuples(r), NULL, 10);
		PQclear(r);
	}
	if (!rc)
		rc = apply_meta(c, w);
	cv_store_write_t epoch = { .op = CV_STORE_PUT_META, .name = "keys.epoch", .body = (const uint8_t *)w->name,
				   .body_len = strlen(w->name) };
	return rc ? rc : apply_meta(c, &epoch);
}

/* One write. Only a failed statement aborts a PostgreSQL transaction, and
 * that fails the whole batch, so a single write needs no savepoint: a
 * conflict or a missing row writes nothing (a version with a new key takes
 * one of its own, apply_version). */
static cv_rc apply_one(PGconn *c, cv_audit_chain_t *chain, cv_store_write_t *w)
{
	switch (w->op) {
	case CV_STORE_PUT_META: return apply_meta(c, w);
	case CV_STORE_PUT_VERSION: return apply_version(c, w);
	case CV_STORE_REINDEX: return apply_reindex(c, w);
	case CV_STORE_CLAIM: return apply_claim(c, w);
	case CV_STORE_AUDIT: return apply_audit(c, chain, w);
	case CV_STORE_CHECKPOINT: return apply_checkpoint(c, w);
	case CV_STORE_AUDIT_PRUNE: return apply_prune(c, w);
	case CV_STORE_PUT_KEY: return insert_key(c, w->keyrow, false);
	case CV_STORE_ERASE: return apply_erase(c, w);
	case CV_STORE_KEY_REWRAP: return rewrap_key(c, w);
	case CV_STORE_KEY_RETIRE:
	case CV_STORE_RESEAL:
	case CV_STORE_KEY_PURGE: return rotation_step(c, w);
	case CV_STORE_BULK: return CV_OK; /* the server's memory is PostgreSQL's to tune */
	default: return CV_E_INVALID;
	}
}

/* A group: all members or none (a savepoint undoes the members before a
 * failed one, and the chain goes back to where it was). */
static cv_rc apply_group(PGconn *c, cv_audit_chain_t *chain, cv_store_write_t *g)
{
	if (exec_ok(c, "SAVEPOINT g"))
		return CV_E_STORAGE;
	cv_audit_chain_t before = *chain;
	cv_rc rc = CV_OK;
	for (size_t i = 0; i < g->nmembers; i++)
		g->members[i]->result = CV_E_ABORTED;
	for (size_t i = 0; !rc && i < g->nmembers; i++) {
		g->members[i]->result = g->members[i]->op == CV_STORE_GROUP ? CV_E_INVALID
									    : apply_one(c, chain, g->members[i]);
		rc = g->members[i]->result;
	}
	if (rc == CV_E_STORAGE)
		return rc;
	if (rc) {
		*chain = before;
		for (size_t i = 0; i < g->nmembers; i++)
			if (g->members[i]->result == CV_OK)
				g->members[i]->result = CV_E_ABORTED;
		if (exec_ok(c, "ROLLBACK TO SAVEPOINT g"))
			return CV_E_STORAGE;
	}
	return exec_ok(c, "RELEASE SAVEPOINT g") ? CV_E_STORAGE : rc;
}

/* The committer's connection with a transaction begun. A connection found
 * broken by BEGIN (the database restarted since the last batch) is made
 * again and BEGIN tried once more: nothing of the batch was sent yet, so
 * this cannot apply anything twice. NULL (and *fail) when it cannot. */
static PGconn *writer_begin(cv_backend_t *b, cv_rc *fail)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (ensure(b, &b->writer)) {
			*fail = CV_E_BUSY;
			return NULL;
		}
		if (exec_ok(b->writer.c, "BEGIN") == CV_OK)
			return b->writer.c;
		if (!broken(&b->writer))
			return NULL;
		*fail = CV_E_BUSY;
	}
	return NULL;
}

/* Did a write of the batch destroy keys? */
static bool has_erase(const cv_store_write_t *batch)
{
	for (const cv_store_write_t *w = batch; w; w = w->next) {
		if ((w->op == CV_STORE_ERASE || w->op == CV_STORE_KEY_PURGE) && w->result == CV_OK)
			return true;
		for (size_t i = 0; w->op == CV_STORE_GROUP && i < w->nmembers; i++)
			if ((w->members[i]->op == CV_STORE_ERASE || w->members[i]->op == CV_STORE_KEY_PURGE) &&
			    w->members[i]->result == CV_OK)
				return true;
	}
	return false;
}

/* After a commit that destroyed keys: VACUUM frees the old key rows'
 * space for reuse (rows an older snapshot still sees stay until a later
 * vacuum). A failure is logged; the erasure stands. */
static void shred_keys(PGconn *c)
{
	PGresult *r = PQexec(c, "VACUUM cv_key");
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		log_pg("vacuum cv_key", c);
	PQclear(r);
}

/* COMMIT, made sure: in a transaction an error aborted, PostgreSQL answers
 * COMMIT with success and the tag "ROLLBACK". */
static cv_rc commit(PGconn *c)
{
	PGresult *r = PQexec(c, "COMMIT");
	bool ok = PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
	PQclear(r);
	if (!ok)
		log_pg("commit", c);
	return ok ? CV_OK : CV_E_STORAGE;
}

static void pg_apply(cv_backend_t *b, cv_store_write_t *batch)
{
	cv_rc fail = CV_E_STORAGE;
	for (cv_store_write_t *w = batch; w; w = w->next)
		w->result = CV_E_STORAGE;
	PGconn *c = writer_begin(b, &fail);
	cv_audit_chain_t chain = { .loaded = false };
	if (!c)
		goto failed;
	if (has_audit(batch) && chain_load(c, &chain)) {
		log_pg("audit_head", c);
		exec_ok(c, "ROLLBACK");
		goto failed;
	}
	for (cv_store_write_t *w = batch; w; w = w->next) {
		w->result = w->op == CV_STORE_GROUP ? apply_group(c, &chain, w) : apply_one(c, &chain, w);
		if (w->result == CV_E_STORAGE) {
			/* an error aborts the whole transaction in PostgreSQL */
			log_pg("write", c);
			exec_ok(c, "ROLLBACK");
			goto failed;
		}
	}
	if (chain_save(c, &chain)) {
		log_pg("audit_head_set", c);
		exec_ok(c, "ROLLBACK");
		goto failed;
	}
	if (commit(c) == CV_OK) {
		if (has_erase(batch))
			shred_keys(c);
		return;
	}
failed:
	if (broken(&b->writer))
		fail = CV_E_BUSY;
	for (cv_store_write_t *w = batch; w; w = w->next)
		w->result = fail;
}

static void pg_close(cv_backend_t *b)
{
	if (!b)
		return;
	for (unsigned i = 0; i < b->slots.n; i++)
		if (b->readers[i].c)
			PQfinish(b->readers[i].c);
	if (b->writer.c)
		PQfinish(b->writer.c);
	cv_slots_release(&b->slots);
	free(b->conninfo);
	free(b);
}

static cv_rc pg_count(cv_backend_t *b, uint64_t *versions)
{
	PGresult *r = NULL;
	cv_rc rc = run_read(b, "count", 0, NULL, NULL, NULL, &r);
	if (!rc)
		*versions = (uint64_t)get_i64(r, 0, 0);
	PQclear(r);
	return rc;
}

static cv_rc pg_scan(cv_backend_t *b, int64_t after_seq, unsigned limit, cv_pool_t *pool,
		     cv_store_version_fn fn, void *arg)
{
	char after[24], lim[24];
	snprintf(after, sizeof after, "%lld", (long long)after_seq);
	snprintf(lim, sizeof lim, "%u", limit);
	const char *vals[2] = { after, lim };
	PGresult *r = NULL;
	cv_rc rc = run_read(b, "scan", 2, vals, NULL, NULL, &r);
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		cv_store_version_t v = result_row(r, i);
		rc = fn(arg, &v);
	}
	PQclear(r);
	return rc;
}

static cv_rc pg_scan_meta(cv_backend_t *b, cv_rc (*fn)(void *, const char *, const uint8_t *, size_t), void *arg)
{
	PGresult *r = NULL;
	cv_rc rc = run_read(b, "scan_meta", 0, NULL, NULL, NULL, &r);
	for (int i = 0; !rc && i < PQntuples(r); i++)
		rc = fn(arg, PQgetvalue(r, i, 0), (const uint8_t *)PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1));
	PQclear(r);
	return rc;
}

/* Text or binary parameter values for a built query; numbers are printed into nums. */
typedef struct pg_params {
	const char *vals[CV_QUERY_BINDS_MAX];
	int lens[CV_QUERY_BINDS_MAX];
	int fmts[CV_QUERY_BINDS_MAX];
	char nums[CV_QUERY_BINDS_MAX][32];
} pg_params_t;

static void params_from(const cv_sql_t *q, pg_params_t *p)
{
	for (size_t i = 0; i < q->n; i++) {
		const cv_bind_t *v = &q->binds[i];
		p->lens[i] = 0;
		p->fmts[i] = 0;
		if (v->kind == CV_BIND_INT) {
			snprintf(p->nums[i], sizeof p->nums[i], "%lld", (long long)v->i);
			p->vals[i] = p->nums[i];
		} else if (v->kind == CV_BIND_REAL) {
			snprintf(p->nums[i], sizeof p->nums[i], "%.17g", v->d);
			p->vals[i] = p->nums[i];
		} else if (v->kind == CV_BIND_TEXT) {
			p->vals[i] = v->p;
		} else {
			p->vals[i] = v->p;
			p->lens[i] = (int)v->len;
			p->fmts[i] = 1;
		}
	}
}

static double get_f64(const PGresult *r, int row, int col)
{
	uint64_t u;
	double d;
	memcpy(&u, PQgetvalue(r, row, col), sizeof u);
	u = be64toh(u);
	memcpy(&d, &u, sizeof d);
	return d;
}

/* Runs a built query on a pooled reader (binary results). */
static cv_rc run_sql(cv_backend_t *b, const cv_sql_t *sql, PGresult **out)
{
	pg_params_t *pp = malloc(sizeof *pp);
	if (!pp)
		return CV_E_NOMEM;
	params_from(sql, pp);
	pconn_t *p = reader_take(b);
	cv_rc rc = CV_E_BUSY;
	for (int attempt = 0; attempt < 2; attempt++) {
		rc = ensure(b, p);
		if (rc)
			continue;
		PGresult *r = PQexecParams(p->c, sql->text.data, (int)sql->n, NULL, pp->vals, pp->lens, pp->fmts, 1);
		if (PQresultStatus(r) == PGRES_TUPLES_OK) {
			*out = r;
			rc = CV_OK;
			break;
		}
		PQclear(r);
		rc = broken(p) ? CV_E_BUSY : CV_E_STORAGE;
		if (rc == CV_E_STORAGE) {
			log_pg("search", p->c);
			break;
		}
	}
	reader_give(b, p);
	free(pp);
	return rc;
}

/* Calls fn per row (rk, rid, version, seq, updated_us, body, then sort keys or type). */
static cv_rc each_hit(const PGresult *r, const char *type, const cv_store_query_t *q, cv_store_hit_fn fn, void *arg)
{
	cv_rc rc = CV_OK;
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		cv_store_hit_t h;
		memset(&h, 0, sizeof h);
		h.at.set = true;
		h.at.rk = get_i64(r, i, 0);
		h.v.rid = PQgetvalue(r, i, 1);
		h.v.version = get_i64(r, i, 2);
		h.v.seq = get_i64(r, i, 3);
		h.v.updated_us = get_i64(r, i, 4);
		h.v.body = (const uint8_t *)PQgetvalue(r, i, 5);
		h.v.body_len = (size_t)PQgetlength(r, i, 5);
		h.v.type = type ? type : PQgetvalue(r, i, 6);
		for (size_t k = 0; q && k < q->nsort; k++) {
			if (q->sort[k].kind == CV_SORT_NUM)
				h.at.dkey[k] = get_f64(r, i, 6 + (int)k);
			else
				h.at.ikey[k] = get_i64(r, i, 6 + (int)k);
		}
		rc = fn(arg, &h);
	}
	return rc;
}

static cv_rc pg_search(cv_backend_t *b, const cv_store_query_t *q, cv_pool_t *pool, cv_store_hit_fn fn, void *arg)
{
	cv_sql_t *sql = malloc(sizeof *sql);
	if (!sql)
		return CV_E_NOMEM;
	cv_sql_init(sql, 1);
	PGresult *r = NULL;
	cv_rc rc = cv_query_search_sql(q, sql);
	if (!rc)
		rc = run_sql(b, sql, &r);
	if (!rc)
		rc = each_hit(r, q->type, q, fn, arg);
	PQclear(r);
	cv_sql_release(sql);
	free(sql);
	return rc;
}

static cv_rc pg_search_count(cv_backend_t *b, const cv_store_query_t *q, uint64_t *out)
{
	cv_sql_t *sql = malloc(sizeof *sql);
	if (!sql)
		return CV_E_NOMEM;
	cv_sql_init(sql, 1);
	PGresult *r = NULL;
	cv_rc rc = cv_query_count_sql(q, sql);
	if (!rc)
		rc = run_sql(b, sql, &r);
	if (!rc)
		*out = (uint64_t)get_i64(r, 0, 0);
	PQclear(r);
	cv_sql_release(sql);
	free(sql);
	return rc;
}

static cv_rc pg_last_seq(cv_backend_t *b, int64_t *out)
{
	PGresult *r = NULL;
	cv_rc rc = run_read(b, "last_seq", 0, NULL, NULL, NULL, &r);
	if (!rc)
		*out = get_i64(r, 0, 0);
	PQclear(r);
	return rc;
}

static cv_rc pg_types_seq(cv_backend_t *b, const char *const *types, size_t n, int64_t *out)
{
	const char *vals[CV_STORE_TYPES_SEQ_MAX];
	for (size_t i = 0; i < CV_STORE_TYPES_SEQ_MAX; i++)
		vals[i] = i < n ? types[i] : "";
	PGresult *r = NULL;
	cv_rc rc = run_read(b, "types_seq", CV_STORE_TYPES_SEQ_MAX, vals, NULL, NULL, &r);
	if (!rc)
		*out = get_i64(r, 0, 0);
	PQclear(r);
	return rc;
}

static cv_rc pg_scan_current(cv_backend_t *b, const char *type, int64_t after, unsigned limit, cv_pool_t *pool,
			     cv_store_hit_fn fn, void *arg)
{
	cv_sql_t *sql = malloc(sizeof *sql);
	if (!sql)
		return CV_E_NOMEM;
	cv_sql_init(sql, 1);
	cv_rc rc = cv_buf_puts(&sql->text, type ? "SELECT r.rk, r.rid, r.version, r.seq, r.updated_us, v.body, r.type "
						  "FROM cv_resource r JOIN cv_version v ON v.seq = r.seq "
						  "WHERE NOT r.deleted AND r.rk > $1::bigint AND r.type = $3 "
						  "ORDER BY r.rk LIMIT $2::bigint"
						: "SELECT r.rk, r.rid, r.version, r.seq, r.updated_us, v.body, r.type "
						  "FROM cv_resource r JOIN cv_version v ON v.seq = r.seq "
						  "WHERE NOT r.deleted AND r.rk > $1::bigint ORDER BY r.rk LIMIT $2::bigint");
	sql->binds[0] = (cv_bind_t){ .kind = CV_BIND_INT, .i = after };
	sql->binds[1] = (cv_bind_t){ .kind = CV_BIND_INT, .i = limit };
	sql->binds[2] = (cv_bind_t){ .kind = CV_BIND_TEXT, .p = type };
	sql->n = type ? 3 : 2;
	PGresult *r = NULL;
	if (!rc)
		rc = run_sql(b, sql, &r);
	if (!rc)
		rc = each_hit(r, NULL, NULL, fn, arg);
	PQclear(r);
	cv_sql_release(sql);
	free(sql);
	return rc;
}

/* ---- reading the audit trail ------------------------------------------------ */

static const uint8_t *pg_blob(const PGresult *r, int row, int col, cv_pool_t *pool, size_t *len)
{
	*len = (size_t)PQgetlength(r, row, col);
	uint8_t *copy = cv_pool_alloc(pool, *len + 1);
	if (copy) {
		memcpy(copy, PQgetvalue(r, row, col), *len);
		copy[*len] = 0;
	}
	return copy;
}

static void pg_hash(const PGresult *r, int row, int col, uint8_t out[CV_AUDIT_HASH_BYTES])
{
	size_t n = (size_t)PQgetlength(r, row, col);
	memset(out, 0, CV_AUDIT_HASH_BYTES);
	memcpy(out, PQgetvalue(r, row, col), n < CV_AUDIT_HASH_BYTES ? n : CV_AUDIT_HASH_BYTES);
	if (n != CV_AUDIT_HASH_BYTES) /* a wrong length compares as a mismatch */
		out[0] ^= 0xff;
}

/* A row of an audit SELECT (the columns of cv_query_audit_sql, binary). */
static cv_rc pg_audit_row(const PGresult *r, int i, cv_pool_t *pool, cv_store_audit_row_t *out)
{
	size_t n;
	*out = (cv_store_audit_row_t){ .pos = get_i64(r, i, 0), .at_us = get_i64(r, i, 1),
				       .action = PQgetvalue(r, i, 2)[0], .outcome = (int)get_i64(r, i, 3),
				       .flags = (unsigned)get_i64(r, i, 4), .nres = get_i64(r, i, 9),
				       .npat = get_i64(r, i, 14) };
	out->kind = (const char *)pg_blob(r, i, 5, pool, &n);
	out->subtype = (const char *)pg_blob(r, i, 6, pool, &n);
	out->agent = (const char *)pg_blob(r, i, 7, pool, &n);
	out->id = (const char *)pg_blob(r, i, 8, pool, &n);
	out->keys = pg_blob(r, i, 10, pool, &out->keys_len);
	out->body = pg_blob(r, i, 11, pool, &out->body_len);
	pg_hash(r, i, 12, out->prev);
	pg_hash(r, i, 13, out->hash);
	/* the columns are typed, but outcome and flags are bigint and action any text: a value C's
	 * types would read as the original while SQL comparisons (the searches) see another */
	int64_t outcome = get_i64(r, i, 3), flags = get_i64(r, i, 4);
	out->malformed = PQgetlength(r, i, 2) != 1 || outcome < INT_MIN || outcome > INT_MAX || flags < 0 ||
			 flags > (int64_t)UINT_MAX;
	return out->kind && out->subtype && out->agent && out->id && out->keys && out->body ? CV_OK : CV_E_NOMEM;
}

static cv_rc pg_audit_rows(cv_backend_t *b, const cv_sql_t *sql, cv_pool_t *pool, cv_store_audit_fn fn, void *arg)
{
	PGresult *r = NULL;
	cv_rc rc = run_sql(b, sql, &r);
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		cv_store_audit_row_t row;
		rc = pg_audit_row(r, i, pool, &row);
		if (!rc)
			rc = fn(arg, &row);
	}
	PQclear(r);
	return rc;
}

static cv_rc pg_audit_head(cv_backend_t *b, int64_t *pos, uint8_t hash[CV_AUDIT_HASH_BYTES])
{
	PGresult *r = NULL;
	cv_rc rc = run_read(b, "audit_head", 0, NULL, NULL, NULL, &r);
	if (!rc && PQntuples(r) == 1) {
		*pos = get_i64(r, 0, 0);
		pg_hash(r, 0, 1, hash);
	} else if (!rc) {
		rc = CV_E_STORAGE;
	}
	PQclear(r);
	return rc;
}

/* The pairs as the statement takes them: the keys end to end, and their
 * positions as an array literal. */
static cv_rc pg_audit_keys_missing(cv_backend_t *b, const cv_store_audit_pair_t *pairs, size_t n, int64_t *missing)
{
	cv_buf_t keys, arr;
	cv_buf_init(&keys, (size_t)1 << 30);
	cv_buf_init(&arr, (size_t)1 << 30);
	cv_rc rc = cv_buf_puts(&arr, "{");
	for (size_t i = 0; !rc && i < n; i++) {
		rc = cv_buf_append(&keys, pairs[i].k, CV_AUDIT_KEY_BYTES);
		if (!rc)
			rc = cv_buf_printf(&arr, "%s%lld", i ? "," : "", (long long)pairs[i].pos);
	}
	if (!rc)
		rc = cv_buf_puts(&arr, "}");
	const char *vals[2] = { keys.len ? keys.data : "", arr.data };
	int lens[2] = { (int)keys.len, 0 }, fmts[2] = { 1, 0 };
	PGresult *r = NULL;
	if (!rc)
		rc = run_read(b, "audit_keys_missing", 2, vals, lens, fmts, &r);
	if (!rc)
		*missing = PQntuples(r) == 1 ? get_i64(r, 0, 0) : 0;
	PQclear(r);
	cv_buf_release(&keys);
	cv_buf_release(&arr);
	return rc;
}

/* One integer from a statement over a range of positions. */
static cv_rc pg_audit_range(cv_backend_t *b, const char *stmt, int64_t from, int64_t to, int64_t *out)
{
	char f[24], t[24];
	snprintf(f, sizeof f, "%lld", (long long)from);
	snprintf(t, sizeof t, "%lld", (long long)to);
	const char *vals[2] = { f, t };
	PGresult *r = NULL;
	cv_rc rc = run_read(b, stmt, 2, vals, NULL, NULL, &r);
	if (!rc)
		*out = PQntuples(r) == 1 ? get_i64(r, 0, 0) : 0;
	PQclear(r);
	return rc;
}

static cv_rc pg_audit_keys_extra(cv_backend_t *b, int64_t from, int64_t to, int64_t *extra)
{
	return pg_audit_range(b, "audit_keys_extra", from, to, extra);
}

static cv_rc pg_audit_keys_count(cv_backend_t *b, int64_t from, int64_t to, int64_t *count)
{
	return pg_audit_range(b, "audit_keys_count", from, to, count);
}

static cv_rc pg_audit_checkpoints(cv_backend_t *b, bool last_only, cv_rc (*fn)(void *, const cv_store_checkpoint_t *),
				  void *arg)
{
	PGresult *r = NULL;
	cv_rc rc = run_read(b, last_only ? "audit_checkpoint_last" : "audit_checkpoints", 0, NULL, NULL, NULL, &r);
	for (int i = 0; !rc && i < PQntuples(r); i++) {
		cv_store_checkpoint_t c = { .pos = get_i64(r, i, 0), .at_us = get_i64(r, i, 1) };
		if (PQgetlength(r, i, 2) == CV_AUDIT_HASH_BYTES && PQgetlength(r, i, 3) == 32 && PQgetlength(r, i, 4) == 64) {
			memcpy(c.hash, PQgetvalue(r, i, 2), CV_AUDIT_HASH_BYTES);
			memcpy(c.key, PQgetvalue(r, i, 3), 32);
			memcpy(c.sig, PQgetvalue(r, i, 4), 64);
		}
		rc = fn(arg, &c);
	}
	PQclear(r);
	return rc;
}

/* ---- data keys ------------------------------------------------------------- */

#define KEY_SCAN_PAGE 1000 /* key rows per query of a key scan */

/* Fills row from row i of a SQL_KEY_COLS result (binary); wrapped points
 * into the result. */
static cv_rc key_row(const PGresult *r, int i, cv_store_key_row_t *row)
{
	if (PQgetlength(r, i, 0) != CV_KID_BYTES || PQgetlength(r, i, 1) != CV_OWNER_BYTES)
		return CV_E_STORAGE;
	memcpy(row->kid, PQgetvalue(r, i, 0), CV_KID_BYTES);
	memcpy(row->owner, PQgetvalue(r, i, 1), CV_OWNER_BYTES);
	row->version = get_i64(r, i, 2);
	row->state = (int)get_i64(r, i, 3);
	row->created_us = get_i64(r, i, 4);
	row->wrapped = (const uint8_t *)PQgetvalue(r, i, 5);
	row->wrapped_len = (size_t)PQgetlength(r, i, 5);
	return CV_OK;
}

/* The one row of stmt for key k (a kid or an owner), wrapped copied into `wrapped`. */
static cv_rc key_lookup(cv_backend_t *b, const char *stmt, const uint8_t *k, int klen, cv_store_key_row_t *row,
			cv_buf_t *wrapped)
{
	const char *vals[1] = { (const char *)k };
	int lens[1] = { klen }, fmts[1] = { 1 };
	PGresult *r = NULL;
	cv_rc rc = run_read(b, stmt, 1, vals, lens, fmts, &r);
	if (!rc)
		rc = PQntuples(r) == 0 ? CV_E_NOTFOUND : key_row(r, 0, row);
	if (!rc) {
		cv_buf_reset(wrapped);
		rc = cv_buf_append(wrapped, row->wrapped, row->wrapped_len);
		row->wrapped = (const uint8_t *)wrapped->data;
		row->wrapped_len = wrapped->len;
	}
	PQclear(r);
	return rc;
}

static cv_rc pg_key_get(cv_backend_t *b, const uint8_t kid[CV_KID_BYTES], cv_store_key_row_t *row, cv_buf_t *wrapped)
{
	return key_lookup(b, "key_get", kid, CV_KID_BYTES, row, wrapped);
}

static cv_rc pg_key_current(cv_backend_t *b, const uint8_t owner[CV_OWNER_BYTES], cv_store_key_row_t *row,
			    cv_buf_t *wrapped)
{
	return key_lookup(b, "key_current", owner, CV_OWNER_BYTES, row, wrapped);
}

/* Every key row in (owner, version) order, a page at a time (keyset paging
 * from the last row seen; an empty owner sorts before every owner). */
static cv_rc pg_key_scan(cv_backend_t *b, const cv_store_key_row_t *after,
			 cv_rc (*fn)(void *arg, const cv_store_key_row_t *row), void *arg)
{
	uint8_t owner[CV_OWNER_BYTES] = { 0 };
	char version[24] = "0", lim[24];
	int olen = after ? CV_OWNER_BYTES : 0, n = KEY_SCAN_PAGE;
	if (after) {
		memcpy(owner, after->owner, CV_OWNER_BYTES);
		snprintf(version, sizeof version, "%lld", (long long)after->version);
	}
	snprintf(lim, sizeof lim, "%d", KEY_SCAN_PAGE);
	cv_rc rc = CV_OK;
	while (!rc && n == KEY_SCAN_PAGE) {
		const char *vals[3] = { (const char *)owner, version, lim };
		int lens[3] = { olen, 0, 0 }, fmts[3] = { 1, 0, 0 };
		PGresult *r = NULL;
		rc = run_read(b, "key_scan", 3, vals, lens, fmts, &r);
		n = rc ? 0 : PQntuples(r);
		for (int i = 0; !rc && i < n; i++) {
			cv_store_key_row_t row;
			rc = key_row(r, i, &row);
			if (!rc)
				rc = fn(arg, &row);
			if (!rc && i == n - 1) {
				memcpy(owner, row.owner, CV_OWNER_BYTES);
				olen = CV_OWNER_BYTES;
				snprintf(version, sizeof version, "%lld", (long long)row.version);
			}
		}
		PQclear(r);
	}
	return rc;
}

/* ---- backups ------------------------------------------------------------- */

typedef cv_rc (*rec_fn)(void *arg, const cv_store_rec_t *r);
typedef cv_rc (*rec_row_fn)(const PGresult *r, int i, cv_store_rec_t *rec);

#define DUMP_PAGE 1000

static cv_rc meta_rec(const PGresult *r, int i, cv_store_rec_t *rec)
{
	rec->type = CV_REC_META;
	rec->name = PQgetvalue(r, i, 0); /* libpq ends every value with a NUL */
	rec->value = (const uint8_t *)PQgetvalue(r, i, 1);
	rec->value_len = (size_t)PQgetlength(r, i, 1);
	return CV_OK;
}

static cv_rc key_rec(const PGresult *r, int i, cv_store_rec_t *rec)
{
	rec->type = CV_REC_KEY;
	return key_row(r, i, &rec->key);
}

static cv_rc version_rec(const PGresult *r, int i, cv_store_rec_t *rec)
{
	rec->type = CV_REC_VERSION;
	rec->version = (cv_store_version_t){ .seq = get_i64(r, i, 0), .version = get_i64(r, i, 1),
					     .updated_us = get_i64(r, i, 2), .deleted = PQgetvalue(r, i, 3)[0] != 0,
					     .body = (const uint8_t *)PQgetvalue(r, i, 4), .body_len = (size_t)PQgetlength(r, i, 4),
					     .type = PQgetvalue(r, i, 5), .rid = PQgetvalue(r, i, 6) };
	return CV_OK;
}

static cv_rc audit_rec(const PGresult *r, int i, cv_store_rec_t *rec)
{
	cv_store_audit_row_t *a = &rec->audit;
	rec->type = CV_REC_AUDIT;
	*a = (cv_store_audit_row_t){ .pos = get_i64(r, i, 0), .at_us = get_i64(r, i, 1), .action = PQgetvalue(r, i, 2)[0],
				     .outcome = (int)get_i64(r, i, 3), .flags = (unsigned)get_i64(r, i, 4),
				     .kind = PQgetvalue(r, i, 5), .subtype = PQgetvalue(r, i, 6), .agent = PQgetvalue(r, i, 7),
				     .id = PQgetvalue(r, i, 8), .nres = get_i64(r, i, 9),
				     .keys = (const uint8_t *)PQgetvalue(r, i, 10), .keys_len = (size_t)PQgetlength(r, i, 10),
				     .body = (const uint8_t *)PQgetvalue(r, i, 11), .body_len = (size_t)PQgetlength(r, i, 11),
				     .npat = get_i64(r, i, 14) };
	if (PQgetlength(r, i, 12) != CV_AUDIT_HASH_BYTES || PQgetlength(r, i, 13) != CV_AUDIT_HASH_BYTES)
		return CV_E_STORAGE;
	memcpy(a->prev, PQgetvalue(r, i, 12), CV_AUDIT_HASH_BYTES);
	memcpy(a->hash, PQgetvalue(r, i, 13), CV_AUDIT_HASH_BYTES);
	return CV_OK;
}

static cv_rc head_rec(const PGresult *r, int i, cv_store_rec_t *rec)
{
	rec->type = CV_REC_AUDIT_HEAD;
	rec->audit.pos = get_i64(r, i, 0);
	if (PQgetlength(r, i, 1) != CV_AUDIT_HASH_BYTES)
		return CV_E_STORAGE;
	memcpy(rec->audit.hash, PQgetvalue(r, i, 1), CV_AUDIT_HASH_BYTES);
	return CV_OK;
}

static cv_rc checkpoint_rec(const PGresult *r, int i, cv_store_rec_t *rec)
{
	cv_store_checkpoint_t *c = &rec->checkpoint;
	rec->type = CV_REC_CHECKPOINT;
	c->pos = get_i64(r, i, 0);
	c->at_us = get_i64(r, i, 1);
	if (PQgetlength(r, i, 2) != CV_AUDIT_HASH_BYTES || PQgetlength(r, i, 3) != 32 || PQgetlength(r, i, 4) != 64)
		return CV_E_STORAGE;
	memcpy(c->hash, PQgetvalue(r, i, 2), CV_AUDIT_HASH_BYTES);
	memcpy(c->key, PQgetvalue(r, i, 3), 32);
	memcpy(c->sig, PQgetvalue(r, i, 4), 64);
	return CV_OK;
}

/* Streams one query through a binary cursor, a page at a time. */
static cv_rc dump_query(PGconn *c, const char *sql, rec_row_fn row, rec_fn fn, void *arg)
{
	char declare[1024];
	snprintf(declare, sizeof declare, "DECLARE cv_dump BINARY CURSOR FOR %s", sql);
	cv_rc rc = exec_ok(c, declare);
	for (int n = DUMP_PAGE; !rc && n == DUMP_PAGE;) {
		PGresult *r = PQexecParams(c, "FETCH 1000 FROM cv_dump", 0, NULL, NULL, NULL, NULL, 1);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			log_pg("dump", c);
			rc = CV_E_STORAGE;
		}
		n = rc ? 0 : PQntuples(r);
		for (int i = 0; !rc && i < n; i++) {
			cv_store_rec_t rec;
			memset(&rec, 0, sizeof rec);
			rc = row(r, i, &rec);
			if (!rc)
				rc = fn(arg, &rec);
		}
		PQclear(r);
	}
	if (!rc)
		rc = exec_ok(c, "CLOSE cv_dump");
	return rc;
}

#define DUMP_AUDIT "SELECT pos, at_us, action, outcome::bigint, flags::bigint, kind, subtype, agent, id, nres::bigint, " \
		   "keys, body, prev, hash, npat::bigint FROM cv_audit ORDER BY pos"

/* One REPEATABLE READ transaction: one snapshot for every table. */
static cv_rc pg_dump(cv_backend_t *b, rec_fn fn, void *arg)
{
	pconn_t *p = reader_take(b);
	cv_rc rc = ensure(b, p);
	if (!rc)
		rc = exec_ok(p->c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
	if (!rc)
		rc = dump_query(p->c, "SELECT name, value FROM cv_meta WHERE name NOT LIKE 'index.%' AND name NOT LIKE "
				      "'claim.%' ORDER BY name", meta_rec, fn, arg);
	if (!rc)
		rc = dump_query(p->c, SQL_KEY_COLS "ORDER BY owner, version", key_rec, fn, arg);
	if (!rc)
		rc = dump_query(p->c, "SELECT seq, version, updated_us, deleted, body, type, rid FROM cv_version ORDER BY seq",
				version_rec, fn, arg);
	if (!rc)
		rc = dump_query(p->c, DUMP_AUDIT, audit_rec, fn, arg);
	if (!rc)
		rc = dump_query(p->c, "SELECT pos, hash FROM cv_audit_head", head_rec, fn, arg);
	if (!rc)
		rc = dump_query(p->c, "SELECT pos, at_us, hash, key, sig FROM cv_audit_checkpoint ORDER BY pos",
				checkpoint_rec, fn, arg);
	if (p->c)
		exec_ok(p->c, rc ? "ROLLBACK" : "COMMIT");
	reader_give(b, p);
	return rc;
}

/* ---- loading the audit trail (backend.h, "load") ------------------------------ */

static cv_rc load_one(PGconn *c, const cv_store_rec_t *r)
{
	cv_audit_chain_t head = { .loaded = true, .pos = r->audit.pos };
	cv_store_write_t w = { .checkpoint = &r->checkpoint };
	switch (r->type) {
	case CV_REC_AUDIT:
		return insert_audit_row(c, &r->audit);
	case CV_REC_AUDIT_HEAD:
		memcpy(head.hash, r->audit.hash, CV_AUDIT_HASH_BYTES);
		return chain_save(c, &head);
	case CV_REC_CHECKPOINT:
		return apply_checkpoint(c, &w);
	default:
		return CV_E_INVALID; /* versions, keys and meta are copied with apply (migrate-store) */
	}
}

static cv_rc pg_load(cv_backend_t *b, const cv_store_rec_t *recs, size_t n)
{
	cv_rc rc = CV_E_STORAGE;
	PGconn *c = writer_begin(b, &rc);
	if (!c)
		return rc;
	rc = CV_OK;
	for (size_t i = 0; !rc && i < n; i++)
		rc = load_one(c, &recs[i]);
	if (rc) {
		log_pg("load", c);
		exec_ok(c, "ROLLBACK");
		return rc;
	}
	return commit(c);
}

static const cv_backend_ops_t pg_ops = {
	.apply = pg_apply,
	.ping = pg_ping,
	.meta_get = pg_meta_get,
	.read = pg_read,
	.history = pg_history,
	.close = pg_close,
	.count = pg_count,
	.scan = pg_scan,
	.scan_meta = pg_scan_meta,
	.search = pg_search,
	.search_count = pg_search_count,
	.last_seq = pg_last_seq,
	.types_seq = pg_types_seq,
	.scan_current = pg_scan_current,
	.audit_rows = pg_audit_rows,
	.audit_head = pg_audit_head,
	.audit_keys_missing = pg_audit_keys_missing,
	.audit_keys_extra = pg_audit_keys_extra,
	.audit_keys_count = pg_audit_keys_count,
	.audit_checkpoints = pg_audit_checkpoints,
	.key_get = pg_key_get,
	.key_current = pg_key_current,
	.key_scan = pg_key_scan,
	.dump = pg_dump,
	.load = pg_load,
};

/* Runs the migrations not yet applied, under an advisory lock (several nodes may start at once). */
static cv_rc migrate(PGconn *c, char *err, size_t errlen)
{
	char sql[128];
	cv_rc rc = exec_ok(c, "CREATE TABLE IF NOT EXISTS cv_schema (version integer NOT NULL)");
	snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%d)", PG_LOCK_MIGRATE);
	if (!rc)
		rc = exec_ok(c, sql);
	PGresult *r = rc ? NULL : PQexec(c, "SELECT COALESCE(max(version), 0) FROM cv_schema");
	size_t done = r && PQresultStatus(r) == PGRES_TUPLES_OK ? (size_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	for (size_t i = done; !rc && i < sizeof migrations / sizeof migrations[0]; i++) {
		snprintf(sql, sizeof sql, "INSERT INTO cv_schema (version) VALUES (%zu)", i + 1);
		rc = exec_ok(c, "BEGIN");
		if (!rc)
			rc = exec_ok(c, migrations[i]);
		if (!rc)
			rc = exec_ok(c, sql);
		rc = rc ? (exec_ok(c, "ROLLBACK"), rc) : exec_ok(c, "COMMIT");
		if (!rc)
			cv_log(CV_LOG_INFO, "store.migrated", (cv_log_field_t[]){ CV_LI("schema", i + 1) }, 1);
	}
	snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%d)", PG_LOCK_MIGRATE);
	exec_ok(c, sql);
	if (rc)
		snprintf(err, errlen, "cannot migrate the PostgreSQL schema (see the log)");
	return rc;
}

/* A host that keeps the connection on this machine: a Unix socket or loopback. */
static int local_host(const char *h)
{
	return !h || !h[0] || h[0] == '/' || h[0] == '@' || strcmp(h, "localhost") == 0 ||
	       strncmp(h, "127.", 4) == 0 || strcmp(h, "::1") == 0;
}

/* Refuses a password in the URL (it would show in process lists and shell
 * history) and, off this machine, anything weaker than sslmode=verify-full. */
static cv_rc check_url(const char *url, char *err, size_t errlen)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &perr);
	const char *host = getenv("PGHOST"), *sslmode = getenv("PGSSLMODE");
	cv_rc rc = CV_OK;
	if (!opts) {
		snprintf(err, errlen, "the store URL is not a PostgreSQL connection string");
		rc = CV_E_INVALID;
	}
	for (PQconninfoOption *o = opts; o && o->keyword; o++) {
		if (strcmp(o->keyword, "password") == 0 && o->val && o->val[0]) {
			snprintf(err, errlen, "the store URL holds a password: put it in PGPASSWORD or a "
				 "~/.pgpass file (PGPASSFILE) instead");
			rc = CV_E_INVALID;
		}
		if (strcmp(o->keyword, "host") == 0 && o->val)
			host = o->val;
		if (strcmp(o->keyword, "sslmode") == 0 && o->val)
			sslmode = o->val;
	}
	if (!rc && !local_host(host) && (!sslmode || strcmp(sslmode, "verify-full") != 0)) {
		snprintf(err, errlen, "the store is on another machine: add sslmode=verify-full to the URL "
			 "(with the server's CA in ~/.postgresql/root.crt or sslrootcert=)");
		rc = CV_E_INVALID;
	}
	PQfreemem(perr);
	PQconninfoFree(opts);
	return rc;
}

cv_rc cv_postgres_open(const char *url, unsigned read_conns, cv_backend_t **out, const cv_backend_ops_t **ops,
		       char *err, size_t errlen)
{
	cv_rc rc = check_url(url, err, errlen);
	if (rc)
		return rc;
	cv_backend_t *b = calloc(1, sizeof *b);
	if (!b || !(b->conninfo = strdup(url))) {
		free(b);
		return CV_E_NOMEM;
	}
	cv_slots_init(&b->slots, read_conns);
	b->writer.c = PQconnectdb(url);
	if (b->writer.c)
		PQsetNoticeProcessor(b->writer.c, quiet_notice, NULL);
	if (PQstatus(b->writer.c) != CONNECTION_OK) {
		snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(b->writer.c));
		err[strcspn(err, "\n")] = '\0';
		pg_close(b);
		return CV_E_STORAGE;
	}
	rc = migrate(b->writer.c, err, errlen);
	if (!rc)
		rc = prepare_all(&b->writer);
	if (rc) {
		pg_close(b);
		return rc;
	}
	*out = b;
	*ops = &pg_ops;
	return CV_OK;
}
