/*
 * audit.c - `carevault audit`: verify, export, checkpoint and pubkey for the
 * audit trail of a data directory (audit/audit.h).
 *
 * verify needs no key: it opens the store without the master key and checks
 * the hash chain, the head and every signed checkpoint (and those of an
 * exported checkpoint file). export opens the records, so it needs the
 * master key; it is itself recorded in the trail and raises a bulk-export
 * alert. Exit codes: 0 good, 1 the trail is not whole (verify) or the
 * command failed, 2 bad usage.
 */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/query.h"
#include "core/config.h"
#include "core/log.h"
#include "core/time.h"

typedef struct audit_cmd {
	cv_config_t cfg;
	const char *verb;
	const char *checkpoints;  /* verify: an exported checkpoint file */
	const char *archive;      /* verify: an archive file instead of the store */
	const char *pubkey;       /* verify: the audit public key the operator kept (hex) */
	bool accept_v1;           /* verify --archive: a format-1 archive verifies as far as it can */
	const char *before;       /* archive: archive records older than this date */
	const char *out;          /* export: the output file ("-": standard output) */
	cv_param_t filter[16];    /* export: --since, --until, --patient as search parameters */
	size_t nfilter;
	bool quiet;
} audit_cmd_t;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: carevault audit verify --data DIR [--checkpoints FILE] [--pubkey HEX]\n"
		"       carevault audit verify --archive FILE [--data DIR | --pubkey HEX] [--accept-format-1]\n"
		"       carevault audit archive --data DIR --out FILE [--before DATE]\n"
		"       carevault audit export --data DIR [--out FILE] [--since DATE] [--until DATE] [--patient ID]\n"
		"       carevault audit checkpoint --data DIR\n"
		"       carevault audit pubkey --data DIR\n\n"
		"verify walks the audit trail's hash chain from its first record, checks the store's head\n"
		"and every signed checkpoint (the store's, and with --checkpoints those of a copy kept\n"
		"elsewhere, such as DATA/audit-checkpoints.jsonl or your syslog or sink's), and names the\n"
		"first record that was edited, inserted, deleted, moved or cut off. It needs no key and\n"
		"may run while the server serves. Exit 0 when the trail is whole, 1 when it is not.\n"
		"--pubkey gives the audit public key you kept (carevault audit pubkey): the store's must be\n"
		"it, so that someone who replaced the key in the database and signed again is found.\n"
		"Someone who can write the database can also rewrite the chain and delete its stored\n"
		"checkpoints: only --checkpoints with a copy they could not reach shows that.\n"
		"export writes the records as NDJSON AuditEvents (oldest first) to FILE (0600) or standard\n"
		"output; it needs the master key, is recorded in the trail and raises a bulk-export alert.\n"
		"archive (retention) moves the records older than DATE (default: audit-retention-days,\n"
		"six years) to FILE: it writes them as stored, with a checkpoint signed by the audit key,\n"
		"reads the file back and verifies it, and only then removes them from the store, which\n"
		"starts its chain from that signed checkpoint. verify --archive checks such a file: its\n"
		"chain, and its end's signature, which covers its first and last records (with --data,\n"
		"by that store's audit key, and the store's trail must start after the archive's last\n"
		"record when it is the newest archive). An archive made before format 2 (its end signed as\n"
		"an ordinary checkpoint) is not whole: --accept-format-1 checks what it can show.\n"
		"Keep archives as long as the law says.\n"
		"checkpoint signs a checkpoint of the trail as it is now. pubkey prints the public key that\n"
		"signs checkpoints: keep it with the copies of the checkpoints.\n"
		"Every command takes --store URL and --config FILE as serve does.\n");
}

static int bad(const char *msg)
{
	fprintf(stderr, "carevault audit: %s\n", msg);
	return 2;
}

static int parse_args(audit_cmd_t *c, int argc, char **argv, char *err, size_t errlen)
{
	cv_config_defaults(&c->cfg);
	if (cv_config_load_env(&c->cfg, err, errlen))
		return -1;
	unsigned seen = 0; /* --since, --until, --patient: once each */
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char *filter = strcmp(a, "--since") == 0 ? "date" : strcmp(a, "--until") == 0 ? "date"
				   : strcmp(a, "--patient") == 0 ? "patient" : NULL;
		unsigned bit = !filter ? 0 : strcmp(a, "--since") == 0 ? 1 : strcmp(a, "--until") == 0 ? 2 : 4;
		if (bit & seen) {
			snprintf(err, errlen, "%s is given twice", a);
			return -1;
		}
		seen |= bit;
		if (strcmp(a, "--checkpoints") == 0 && v) {
			c->checkpoints = argv[++i];
		} else if (strcmp(a, "--archive") == 0 && v) {
			c->archive = argv[++i];
		} else if (strcmp(a, "--pubkey") == 0 && v) {
			c->pubkey = argv[++i];
		} else if (strcmp(a, "--before") == 0 && v) {
			c->before = argv[++i];
		} else if (strcmp(a, "--out") == 0 && v) {
			c->out = argv[++i];
		} else if (strcmp(a, "--quiet") == 0) {
			c->quiet = true;
		} else if (strcmp(a, "--accept-format-1") == 0) {
			c->accept_v1 = true;
		} else if (filter && v && c->nfilter < 16) {
			char *value = NULL; /* --since D: date=geD, --until D: date=leD (freed at exit) */
			if (asprintf(&value, "%s%s", strcmp(a, "--since") == 0 ? "ge" : strcmp(a, "--until") == 0 ? "le" : "",
				     v) < 0)
				return -1;
			c->filter[c->nfilter++] = (cv_param_t){ .name = filter, .value = value };
			i++;
		} else if (strncmp(a, "--", 2) == 0 && v) { /* --data, --store, --config, the master key options */
			cv_rc rc = strcmp(a, "--config") == 0 ? cv_config_load_file(&c->cfg, v, err, errlen)
							       : cv_config_set(&c->cfg, a + 2, v, err, errlen);
			if (rc)
				return -1;
			i++;
		} else {
			snprintf(err, errlen, "unknown option or missing value: %s (see carevault audit --help)", a);
			return -1;
		}
	}
	cv_config_finish(&c->cfg);
	return 0;
}

/* ---- verify ---------------------------------------------------------------- */

/* 64 hex digits into 32 bytes. */
static int parse_pubkey(const char *hex, uint8_t out[CV_SIGN_PUBLIC_BYTES])
{
	return cv_crypto_unhex(hex, out, CV_SIGN_PUBLIC_BYTES) == CV_OK;
}

static void verify_progress(void *arg, int64_t done)
{
	if (!*(bool *)arg)
		fprintf(stderr, "\rverifying: %lld records", (long long)done);
}

static int cmd_verify(audit_cmd_t *c)
{
	char err[512] = "", path[CV_PATH_MAX + 16];
	snprintf(path, sizeof path, "%s/store.db", c->cfg.data_dir);
	if (!c->cfg.store_url[0] && access(path, R_OK) != 0) {
		fprintf(stderr, "carevault audit verify: no store in %s\n", c->cfg.data_dir);
		return 1;
	}
	cv_store_t *s = NULL;
	if (cv_store_open_raw(c->cfg.data_dir, c->cfg.store_url, &s, err, sizeof err)) {
		fprintf(stderr, "carevault audit verify: %s\n", err);
		return 1;
	}
	cv_audit_verdict_t v;
	uint8_t pin[CV_SIGN_PUBLIC_BYTES];
	if (c->pubkey && !parse_pubkey(c->pubkey, pin)) {
		cv_store_close(s);
		return bad("--pubkey takes the 64 hex digits carevault audit pubkey printed");
	}
	int64_t t0 = cv_time_mono_us();
	cv_rc rc = cv_audit_verify_key(s, c->checkpoints, c->pubkey ? pin : NULL, verify_progress, &c->quiet, &v);
	double secs = (double)(cv_time_mono_us() - t0) / 1e6;
	cv_store_close(s);
	if (!c->quiet)
		fprintf(stderr, "\r");
	if (rc && !v.what[0])
		snprintf(v.what, sizeof v.what, "verification could not run: %s", cv_rc_str(rc));
	if (!rc && v.ok && !v.records && !v.base && !v.checkpoints) {
		printf("no audit trail in this store (no record and no checkpoint)\n");
		return 1;
	}
	if (rc || !v.ok) {
		printf("AUDIT TRAIL NOT WHOLE: %s\n", v.what);
		if (v.named || v.bad_pos)
			printf("first bad record: %lld\n", (long long)v.bad_pos);
		return 1;
	}
	printf("%s\nhead %s\n%lld records in %.2f s (%.0f records/s)\n", v.what, v.head, (long long)v.records, secs,
	       secs > 0 ? (double)v.records / secs : 0.0);
	return 0;
}

/* What an archive is checked against in the store of c: its audit public
 * key (CV_OK, CV_E_NOTFOUND when there is none yet, or the store's failure
 * with err set) and the base its chain starts after (base->pos 0: none). */
static cv_rc store_anchor(const audit_cmd_t *c, uint8_t out[CV_SIGN_PUBLIC_BYTES], cv_store_checkpoint_t *base,
			  char *err, size_t errlen)
{
	cv_store_t *s = NULL;
	cv_buf_t pub, line;
	memset(base, 0, sizeof *base);
	cv_rc rc = cv_store_open_raw(c->cfg.data_dir, c->cfg.store_url, &s, err, errlen);
	if (rc)
		return rc;
	cv_buf_init(&pub, 64);
	cv_buf_init(&line, 4096);
	if (cv_store_meta_get(s, CV_AUDIT_META_BASE, &line) != CV_OK ||
	    cv_audit_checkpoint_parse(line.data ? line.data : "", line.len, base))
		memset(base, 0, sizeof *base);
	rc = cv_store_meta_get(s, "audit.pubkey", &pub);
	if (!rc && pub.len != CV_SIGN_PUBLIC_BYTES)
		rc = CV_E_NOTFOUND;
	if (!rc)
		memcpy(out, pub.data, CV_SIGN_PUBLIC_BYTES);
	cv_buf_release(&line);
	cv_buf_release(&pub);
	cv_store_close(s);
	return rc;
}

/* Where the store's trail starts, against the archive: the base must be
 * signed by the archive's key, and when it is at the archive's last record
 * it must name that record (the newest archive ends where the trail
 * starts). 0 when it holds; else 1, said. */
static int against_base(const cv_audit_verdict_t *v, const cv_store_checkpoint_t *base, const uint8_t *pub)
{
	char hex[2 * CV_AUDIT_HASH_BYTES + 1], msg[160];
	int64_t last = v->base + v->records;
	if (!base->pos) {
		printf("the store has no archived records (its trail starts at record 1): this archive was made and "
		       "not pruned, or the store's base was removed; verify the store\n");
		return 0;
	}
	cv_audit_base_message(base, msg);
	if (memcmp(base->key, pub, CV_SIGN_PUBLIC_BYTES) != 0 ||
	    cv_crypto_sign_verify(base->key, msg, strlen(msg), base->sig) != CV_OK) {
		printf("AUDIT ARCHIVE NOT CHECKED AGAINST THE STORE: the store's base is not signed by the audit key; "
		       "verify the store\n");
		return 1;
	}
	cv_crypto_hex(base->hash, CV_AUDIT_HASH_BYTES, hex);
	if (base->pos == last && strcmp(hex, v->head) == 0) {
		printf("the store's trail starts right after this archive's last record\n");
		return 0;
	}
	if (base->pos == last) {
		printf("AUDIT ARCHIVE NOT WHOLE: record %lld is not the one the store's trail starts after: the archive "
		       "or the store was altered\nfirst bad record: %lld\n", (long long)last, (long long)last);
		return 1;
	}
	if (base->pos > last)
		printf("the store's trail starts after record %lld: later archives hold records %lld to %lld\n",
		       (long long)base->pos, (long long)last + 1, (long long)base->pos);
	else
		printf("the store's trail starts after record %lld, inside this archive (its records after that are "
		       "still in the store: the archive was made and not pruned)\n", (long long)base->pos);
	return 0;
}

static int cmd_verify_archive(audit_cmd_t *c)
{
	uint8_t pub[CV_SIGN_PUBLIC_BYTES];
	cv_store_checkpoint_t base = { .pos = 0 };
	cv_audit_verdict_t v;
	if (c->pubkey && !parse_pubkey(c->pubkey, pub))
		return bad("--pubkey takes the 64 hex digits carevault audit pubkey printed");
	char err[512];
	uint8_t stored[CV_SIGN_PUBLIC_BYTES];
	bool pinned = c->pubkey != NULL, have_store = false;
	if (c->cfg.data_dir[0] || c->cfg.store_url[0]) {
		/* the store is the archive's own when its key signs it: then where its trail starts is checked too */
		cv_rc arc = store_anchor(c, stored, &base, err, sizeof err);
		if (arc == CV_OK && !pinned) {
			memcpy(pub, stored, sizeof pub);
			pinned = true;
		}
		have_store = arc == CV_OK && memcmp(pub, stored, sizeof pub) == 0;
	}
	if (cv_audit_verify_archive_as(c->archive, pinned ? pub : NULL, c->accept_v1, &v)) {
		fprintf(stderr, "carevault audit verify: %s\n", v.what);
		return 1;
	}
	if (!v.ok) {
		printf("AUDIT ARCHIVE NOT WHOLE: %s\n", v.what);
		if (v.named || v.bad_pos)
			printf("first bad record: %lld\n", (long long)v.bad_pos);
		return 1;
	}
	printf("%s\nlast hash %s\n", v.what, v.head);
	return have_store ? against_base(&v, &base, pub) : 0;
}

static int cmd_archive(audit_cmd_t *c)
{
	char err[512] = "";
	cv_key_t *master = NULL;
	cv_store_t *s = NULL;
	cv_audit_t *a = NULL;
	int64_t before = cv_time_now_us() - (int64_t)c->cfg.audit_retention_days * 86400 * 1000000;
	if (!c->out)
		return bad("archive needs --out FILE");
	if (c->before && cv_time_parse(c->before, &before))
		return bad("--before takes a FHIR date or instant (2020-01-31, 2020-01-31T00:00:00Z)");
	if (cv_cli_open_store(&c->cfg, 1, &master, &s, err, sizeof err)) {
		fprintf(stderr, "carevault audit archive: %s\n", err);
		return 1;
	}
	cv_audit_config_t acfg = { .checkpoint_records = 1, .checkpoint_seconds = 1,
				   .checkpoint_file = c->cfg.audit_checkpoint_file };
	cv_audit_archived_t res = { .what = "" };
	cv_rc rc = cv_audit_new(s, master, &acfg, &a, err, sizeof err);
	if (!rc && cv_cli_audit_intent(s, "audit-archive-started", "retention archive of the oldest records", NULL))
		rc = CV_E_STORAGE;
	if (!rc)
		rc = cv_audit_archive(a, before, c->out, &res);
	char agent[64], detail[400];
	snprintf(agent, sizeof agent, "operator-uid-%u", (unsigned)getuid());
	snprintf(detail, sizeof detail, "%s", rc ? "retention archive failed" : res.what);
	cv_audit_event_t e = { .type = CV_AUDIT_APPLICATION, .subtype = "audit-archived", .action = 'E',
			       .outcome = rc ? 8 : 0, .flags = CV_AUDIT_F_SECURITY, .agent = agent,
			       .agent_kind = "operator", .nres = res.last ? res.last - res.first + 1 : 0, .detail = detail };
	if (a && cv_audit_record(s, &e))
		fprintf(stderr, "carevault audit archive: warning: the archive could not be recorded in the trail\n");
	/* a checkpoint after its own records, copied to the sinks: cutting them (the evidence that an archive
	 * took place) is then found against the copies outside the database */
	else if (a && cv_audit_checkpoint_now(a))
		fprintf(stderr, "carevault audit archive: warning: no checkpoint could be signed after the archive\n");
	if (rc)
		fprintf(stderr, "carevault audit archive: %s\n", res.what[0] ? res.what : err[0] ? err : cv_rc_str(rc));
	else
		printf("%s\n", res.what);
	cv_audit_free(a);
	cv_store_close(s);
	cv_key_free(master);
	return rc ? 1 : 0;
}

/* ---- export --------------------------------------------------------------- */

typedef struct export_ctx {
	FILE *f;
	int64_t n;
	int64_t after;
} export_ctx_t;

static cv_rc export_row(void *arg, const cv_store_audit_row_t *r)
{
	export_ctx_t *x = arg;
	x->after = r->pos;
	x->n++;
	return fwrite(r->body, 1, r->body_len, x->f) == r->body_len && fputc('\n', x->f) != EOF ? CV_OK : CV_E_IO;
}

static FILE *open_out(const char *path)
{
	if (!path || strcmp(path, "-") == 0)
		return stdout;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	return fd < 0 ? NULL : fdopen(fd, "w");
}

/* The operator's own record of the export, and its alert. */
/* What an export takes, for its records: its filters ("patient=p1
 * date=ge2026-01-01"), and the patient it is about (NULL: none named). */
static void export_scope(const audit_cmd_t *c, char *out, size_t outlen, const char **patient)
{
	size_t used = (size_t)snprintf(out, outlen, "the audit trail");
	*patient = NULL;
	for (size_t i = 0; i < c->nfilter && used < outlen; i++) {
		used += (size_t)snprintf(out + used, outlen - used, "%s%s=%s", i ? " " : ", where ", c->filter[i].name,
					 c->filter[i].value);
		if (strcmp(c->filter[i].name, "patient") == 0)
			*patient = strncmp(c->filter[i].value, "Patient/", 8) == 0 ? c->filter[i].value + 8 : c->filter[i].value;
	}
}

/* Records that the export starts, before it writes anything: no export
 * leaves without its record. 0, or -1 (said) when it cannot be recorded. */
static int record_export_start(const audit_cmd_t *c, cv_store_t *s)
{
	char agent[64], detail[400];
	const char *patient, *pats[1];
	snprintf(agent, sizeof agent, "operator-uid-%u", (unsigned)getuid());
	export_scope(c, detail, sizeof detail, &patient);
	pats[0] = patient;
	cv_audit_event_t e = { .type = CV_AUDIT_EXPORT, .subtype = "audit-export-started", .action = 'E',
			       .flags = CV_AUDIT_F_EXPORT | CV_AUDIT_F_SECURITY, .agent = agent, .agent_kind = "operator",
			       .detail = detail, .patients = patient ? pats : NULL, .npatients = patient ? 1 : 0 };
	if (cv_audit_record(s, &e) == CV_OK)
		return 0;
	fprintf(stderr, "carevault audit export: the export could not be recorded in the audit trail: nothing was "
		"exported\n");
	return -1;
}

static void record_export(const audit_cmd_t *c, cv_store_t *s, int64_t n, bool ok)
{
	char agent[64], detail[512], scope[400], count[96];
	const char *patient, *pats[1];
	snprintf(agent, sizeof agent, "operator-uid-%u", (unsigned)getuid());
	export_scope(c, scope, sizeof scope, &patient);
	pats[0] = patient;
	snprintf(count, sizeof count, "%lld audit records exported with carevault audit export", (long long)n);
	snprintf(detail, sizeof detail, "%.95s: %.399s", count, scope); /* the filters may name a patient: the record only */
	cv_audit_event_t e = { .type = CV_AUDIT_EXPORT, .subtype = "audit-export", .action = 'E', .outcome = ok ? 0 : 8,
			       .flags = CV_AUDIT_F_EXPORT | CV_AUDIT_F_SECURITY, .agent = agent,
			       .agent_kind = "operator", .nres = n, .detail = detail, .patients = patient ? pats : NULL,
			       .npatients = patient ? 1 : 0 };
	cv_audit_event_t alert = { .type = CV_AUDIT_ALERT, .subtype = "bulk-export", .action = 'E',
				   .flags = CV_AUDIT_F_ALERT | CV_AUDIT_F_SECURITY, .agent = agent,
				   .agent_kind = "operator", .detail = count };
	if (cv_audit_record(s, &e) || cv_audit_record(s, &alert))
		fprintf(stderr, "carevault audit export: warning: the export's outcome could not be recorded in the trail "
			"(its start was)\n");
	cv_log(CV_LOG_WARN, "security alert", (cv_log_field_t[]){ CV_LS("alert", "bulk-export"), CV_LS("agent", agent),
								 CV_LS("detail", count) }, 3);
}

static int cmd_export(audit_cmd_t *c)
{
	char err[512] = "", why[300] = "";
	cv_key_t *master = NULL;
	cv_store_t *s = NULL;
	cv_store_audit_query_t q;
	cv_pool_t qpool;
	cv_pool_init(&qpool, 0);
	if (cv_audit_query_parse(c->filter, c->nfilter, 1000, 1000, &qpool, &q, why, sizeof why)) {
		cv_pool_release(&qpool);
		return bad(strncmp(why, "date takes", 10) == 0 ? "--since and --until take a FHIR date, dateTime or instant "
			   "(2026-01-31, 2026-01-31T08:00:00Z); each covers its whole precision (--until 2026-01-31: "
			   "to the end of that day)" : why);
	}
	if (cv_cli_open_store(&c->cfg, 1, &master, &s, err, sizeof err)) {
		cv_pool_release(&qpool);
		fprintf(stderr, "carevault audit export: %s\n", err);
		return 1;
	}
	if (record_export_start(c, s)) {
		cv_store_close(s);
		cv_key_free(master);
		cv_pool_release(&qpool);
		return 1;
	}
	FILE *f = open_out(c->out);
	export_ctx_t x = { .f = f };
	cv_rc rc = f ? CV_OK : CV_E_IO;
	if (!f)
		fprintf(stderr, "carevault audit export: cannot create %s (it must not exist yet)\n", c->out);
	q.ascending = true;
	while (!rc) {
		cv_pool_t pool;
		cv_pool_init(&pool, 0);
		int64_t before = x.n;
		q.after_pos = x.after;
		rc = cv_audit_search(s, &q, &pool, export_row, &x);
		cv_pool_release(&pool);
		if (x.n - before < q.limit)
			break;
	}
	if (f && f != stdout && (fflush(f) || fsync(fileno(f)) || fclose(f)))
		rc = rc ? rc : CV_E_IO;
	if (f)
		record_export(c, s, x.n, rc == CV_OK);
	if (rc)
		fprintf(stderr, "carevault audit export: failed after %lld records: %s\n", (long long)x.n, cv_rc_str(rc));
	else
		fprintf(stderr, "exported %lld audit records\n", (long long)x.n);
	cv_store_close(s);
	cv_key_free(master);
	cv_pool_release(&qpool);
	return rc ? 1 : 0;
}

/* ---- checkpoint, pubkey ----------------------------------------------------- */

static int cmd_checkpoint(audit_cmd_t *c)
{
	char err[512] = "";
	cv_key_t *master = NULL;
	cv_store_t *s = NULL;
	cv_audit_t *a = NULL;
	if (cv_cli_open_store(&c->cfg, 1, &master, &s, err, sizeof err)) {
		fprintf(stderr, "carevault audit checkpoint: %s\n", err);
		return 1;
	}
	cv_audit_config_t acfg = { .checkpoint_records = 1, .checkpoint_seconds = 1,
				   .checkpoint_file = c->cfg.audit_checkpoint_file };
	cv_rc rc = cv_audit_new(s, master, &acfg, &a, err, sizeof err);
	if (!rc)
		rc = cv_audit_checkpoint_now(a);
	int64_t pos = 0;
	uint8_t hash[CV_AUDIT_HASH_BYTES];
	char hex[65];
	if (!rc)
		rc = cv_store_audit_head(s, &pos, hash);
	cv_crypto_hex(hash, sizeof hash, hex);
	if (rc)
		fprintf(stderr, "carevault audit checkpoint: %s\n", err[0] ? err : cv_rc_str(rc));
	else
		printf("checkpoint of %lld records, head %s (appended to %s)\n", (long long)pos, hex,
		       c->cfg.audit_checkpoint_file);
	cv_audit_free(a);
	cv_store_close(s);
	cv_key_free(master);
	return rc ? 1 : 0;
}

static int cmd_pubkey(audit_cmd_t *c)
{
	char err[512] = "", hex[2 * CV_SIGN_PUBLIC_BYTES + 1];
	uint8_t pub[CV_SIGN_PUBLIC_BYTES];
	cv_store_checkpoint_t base;
	cv_rc rc = store_anchor(c, pub, &base, err, sizeof err);
	if (rc == CV_E_NOTFOUND)
		fprintf(stderr, "carevault audit pubkey: no audit key yet (serve once to make it)\n");
	else if (rc)
		fprintf(stderr, "carevault audit pubkey: %s\n", err);
	if (rc)
		return 1;
	cv_crypto_hex(pub, sizeof pub, hex);
	printf("%s\n", hex);
	return 0;
}

int cv_cli_audit(int argc, char **argv)
{
	audit_cmd_t c = { .verb = argc > 1 ? argv[1] : NULL };
	char err[512] = "";
	if (!c.verb || strcmp(c.verb, "--help") == 0 || strcmp(c.verb, "-h") == 0) {
		usage(c.verb ? stdout : stderr);
		return c.verb ? 0 : 2;
	}
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
	if (parse_args(&c, argc, argv, err, sizeof err)) {
		for (size_t i = 0; i < c.nfilter; i++)
			free((char *)c.filter[i].value);
		return bad(err);
	}
	cv_log_set_level(CV_LOG_WARN);
	int rc = strcmp(c.verb, "verify") == 0 && c.archive ? cmd_verify_archive(&c)
		 : strcmp(c.verb, "verify") == 0 ? cmd_verify(&c)
		 : strcmp(c.verb, "archive") == 0 ? cmd_archive(&c)
		 : strcmp(c.verb, "export") == 0 ? cmd_export(&c)
		 : strcmp(c.verb, "checkpoint") == 0 ? cmd_checkpoint(&c)
		 : strcmp(c.verb, "pubkey") == 0 ? cmd_pubkey(&c)
		 : bad("the commands are verify, archive, export, checkpoint and pubkey");
	for (size_t i = 0; i < c.nfilter; i++)
		free((char *)c.filter[i].value);
	return rc;
}
