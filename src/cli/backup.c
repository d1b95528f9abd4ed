/*
 * backup.c - `carevault backup` and `carevault restore` (store.h, "backups";
 * decision 0010).
 *
 * backup: one consistent snapshot of the store, made while it serves, into a
 * new file (0600) encrypted and authenticated as a whole, with a progress
 * bar; recorded in the audit trail.
 * restore: reads the whole file and checks it before it writes anything (a
 * changed byte, a dropped or moved chunk, a cut-short file is refused and
 * says so), then loads it into a new data directory, applies the erasure
 * ledger (patients erased after the backup was made stay erased: their keys
 * are destroyed before the store ever serves), and records the restore in
 * the restored trail.
 */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/log.h"
#include "core/time.h"

typedef struct bk_cmd {
	cv_config_t cfg;
	const char *in, *out, *erasures;
	bool verify_only;
	bool master_given;
} bk_cmd_t;

static void backup_usage(FILE *out)
{
	fprintf(out,
		"usage: carevault backup --data DIR --out FILE\n\n"
		"Writes a backup of DIR's store (embedded or PostgreSQL) to FILE (new, 0600) while the server\n"
		"keeps serving: one consistent snapshot of every record as stored (sealed data stays sealed),\n"
		"the file encrypted and authenticated as a whole under a key wrapped by the master key\n"
		"(XChaCha20-Poly1305 in chunks: a changed, moved or missing byte is detected). Keep backups\n"
		"apart from the master key. Restore with carevault restore.\n"
		"Takes --store URL, --config FILE and the master key options as serve does.\n");
}

static void restore_usage(FILE *out)
{
	fprintf(out,
		"usage: carevault restore --in FILE --data NEWDIR [--master-key KEYFILE] [--erasures LEDGER|none]\n"
		"       carevault restore --in FILE --verify-only [--master-key KEYFILE]\n\n"
		"Checks the whole backup first (nothing is written if any byte of it was changed, a chunk\n"
		"moved or dropped, or the file cut short), then restores it into NEWDIR (new or empty) as an\n"
		"embedded store, with a new development TLS certificate (replace it) and the master key file\n"
		"copied in. The search index is rebuilt when the restored store first serves.\n"
		"--master-key: the master key of the system the backup came from (a key file; for a backup\n"
		"  older than a master key rotation, the file with the retired versions, master-retired.key).\n"
		"  With --master-key-source pkcs11 or env, the key is taken from there.\n"
		"--erasures: the erasure ledger of that system (its DATA/erasures; by default the one beside\n"
		"  the master key file). Every patient erased there, also after the backup was made, is\n"
		"  erased in the restored store before it ever serves. 'none' only when no patient was ever\n"
		"  erased.\n"
		"To restore into PostgreSQL, restore here, then carevault migrate-store.\n");
}

static int own_option(void *arg, const char *name, const char *value)
{
	bk_cmd_t *c = arg;
	if (strcmp(name, "--verify-only") == 0)
		return c->verify_only = true, 1;
	const char **slot = strcmp(name, "--in") == 0 ? &c->in : strcmp(name, "--out") == 0 ? &c->out
			  : strcmp(name, "--erasures") == 0 ? &c->erasures : NULL;
	if (slot && value)
		return *slot = value, 2;
	if (strcmp(name, "--master-key") == 0)
		c->master_given = true; /* and the configuration takes it */
	return 0;
}

static int parse_args(bk_cmd_t *c, int argc, char **argv, char *err, size_t errlen)
{
	return cv_cli_options(&c->cfg, argc, argv, 1, own_option, c, err, errlen);
}

static void record(cv_store_t *s, const char *subtype, char action, bool ok, const char *detail)
{
	char agent[64];
	snprintf(agent, sizeof agent, "operator-uid-%u", (unsigned)getuid());
	cv_audit_event_t e = { .type = CV_AUDIT_SECURITY, .subtype = subtype, .action = action, .outcome = ok ? 0 : 8,
			       .flags = CV_AUDIT_F_SECURITY | CV_AUDIT_F_EXPORT, .agent = agent, .agent_kind = "operator",
			       .detail = detail };
	if (cv_audit_record(s, &e) != CV_OK)
		fprintf(stderr, "carevault: warning: this could not be recorded in the audit trail\n");
}

static void show(void *arg, uint64_t done, uint64_t total)
{
	cv_cli_progress(arg, done, total, false);
}

/* ---- backup ------------------------------------------------------------------ */

static int make_backup(bk_cmd_t *c, char *err, size_t errlen)
{
	cv_key_t *master = NULL;
	cv_store_t *s = NULL;
	cv_store_backup_info_t info;
	cv_cli_progress_t p = { .what = "backup", .unit = "records" };
	char detail[160];
	if (!c->out) {
		snprintf(err, errlen, "--out FILE is required");
		return -1;
	}
	if (cv_cli_open_store(&c->cfg, 2, &master, &s, err, errlen))
		return -1;
	int fd = open(c->out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	cv_rc rc = CV_OK;
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %.200s: %.60s (it must not exist)", c->out, strerror(errno));
		rc = CV_E_IO;
	}
	/* the whole store leaves in the file: recorded before it does */
	if (!rc && cv_cli_audit_intent(s, "backup-started", "a backup of the whole store", NULL)) {
		snprintf(err, errlen, "no backup was made");
		rc = CV_E_STORAGE;
	}
	if (!rc)
		rc = cv_store_backup(s, fd, show, &p, &info, err, errlen);
	if (fd >= 0 && close(fd) != 0 && !rc) {
		snprintf(err, errlen, "cannot write %.200s: %.60s", c->out, strerror(errno));
		rc = CV_E_IO;
	}
	if (rc && fd >= 0)
		unlink(c->out);
	if (!rc)
		cv_cli_progress(&p, info.records, info.records, true);
	snprintf(detail, sizeof detail, "backup: %llu versions, %llu keys, %llu audit records, master key version %u",
		 (unsigned long long)info.versions, (unsigned long long)info.keys, (unsigned long long)info.audit,
		 info.master_version);
	record(s, "backup-made", 'E', rc == CV_OK, detail);
	if (!rc)
		printf("backup written: %s (%llu bytes): %llu versions, %llu keys, %llu audit records; master key "
		       "version %u\n", c->out, (unsigned long long)info.bytes, (unsigned long long)info.versions,
		       (unsigned long long)info.keys, (unsigned long long)info.audit, info.master_version);
	cv_store_close(s);
	cv_key_free(master);
	return rc ? -1 : 0;
}

int cv_cli_backup(int argc, char **argv)
{
	bk_cmd_t c;
	char err[512] = "";
	memset(&c, 0, sizeof c);
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		backup_usage(stdout);
		return 0;
	}
	if (parse_args(&c, argc, argv, err, sizeof err)) {
		fprintf(stderr, "carevault backup: %s\n", err);
		return 2;
	}
	cv_log_set_level(CV_LOG_WARN);
	if (make_backup(&c, err, sizeof err)) {
		fprintf(stderr, "carevault backup: %s\n", err);
		return 1;
	}
	return 0;
}

/* ---- restore ------------------------------------------------------------------- */

/* The ledger to apply: --erasures, or the one beside the master key file. */
static int ledger_path(bk_cmd_t *c, char *out, size_t outlen, char *err, size_t errlen)
{
	if (c->erasures) {
		snprintf(out, outlen, "%s", strcmp(c->erasures, "none") == 0 ? "" : c->erasures);
		return 0;
	}
	char copy[CV_PATH_MAX];
	snprintf(copy, sizeof copy, "%s", c->cfg.master_key_file);
	snprintf(out, outlen, "%s/%s", dirname(copy), CV_LEDGER_FILE);
	if ((!c->cfg.master_key_source[0] || strcmp(c->cfg.master_key_source, "file") == 0) && access(out, R_OK) == 0)
		return 0;
	snprintf(err, errlen, "give --erasures LEDGER: the erasure ledger (DATA/erasures) of the system the backup came "
		 "from, so that patients erased there stay erased ('--erasures none' only if no patient was ever erased)");
	return -1;
}

/* The master key: --master-key (or the configured source); a key file must be given. */
static int load_master(bk_cmd_t *c, cv_key_t **master, char *err, size_t errlen)
{
	bool file = !c->cfg.master_key_source[0] || strcmp(c->cfg.master_key_source, "file") == 0;
	if (file && !c->master_given) {
		snprintf(err, errlen, "give --master-key KEYFILE: the master key of the system the backup came from");
		return -1;
	}
	char copy[CV_PATH_MAX], sibling[CV_PATH_MAX];
	snprintf(copy, sizeof copy, "%s", c->cfg.master_key_file);
	snprintf(sibling, sizeof sibling, "%.990s/master-retired.key", dirname(copy));
	/* the retired versions beside it: a backup made during or before a rotation needs them */
	if (file && !c->cfg.master_key_retired[0] && strcmp(sibling, c->cfg.master_key_file) != 0 &&
	    access(sibling, F_OK) == 0)
		snprintf(c->cfg.master_key_retired, sizeof c->cfg.master_key_retired, "%s", sibling);
	cv_rc rc = cv_crypto_init(err, errlen);
	return rc || cv_cli_master_load(&c->cfg, master, err, errlen) ? -1 : 0;
}

/* Copies the master key file into the new data directory (0600). */
static cv_rc copy_key_file(const char *from, const char *dir, char *err, size_t errlen)
{
	char to[CV_PATH_MAX + 32];
	snprintf(to, sizeof to, "%s/master.key", dir);
	int in = open(from, O_RDONLY | O_CLOEXEC), out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	char buf[8192];
	ssize_t n = 0;
	cv_rc rc = in < 0 || out < 0 ? CV_E_IO : CV_OK;
	while (!rc && (n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n)
			rc = CV_E_IO;
	if (!rc && (n < 0 || fsync(out) != 0))
		rc = CV_E_IO;
	cv_crypto_wipe(buf, sizeof buf);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (rc)
		snprintf(err, errlen, "cannot copy the master key into %.200s: %.60s", to, strerror(errno));
	return rc;
}

typedef struct apply {
	cv_store_t *s;
	char path[CV_PATH_MAX + 32]; /* the restored ledger */
	unsigned erased, lines;
	char *err;
	size_t errlen;
} apply_t;

/* One ledger line: the owner's keys destroyed in the restored store, the line kept in its ledger. */
static cv_rc apply_line(void *arg, const uint8_t owner[CV_OWNER_BYTES], int64_t at_us)
{
	apply_t *a = arg;
	int64_t n = 0;
	char hex[2 * CV_OWNER_BYTES + 1];
	cv_rc rc = cv_store_erase_owner(a->s, owner, at_us, &n);
	if (rc == CV_E_NOTFOUND || rc == CV_E_GONE) /* nothing of theirs in the backup, or erased before it */
		rc = CV_OK;
	else if (!rc)
		a->erased++;
	a->lines++;
	cv_crypto_hex(owner, CV_OWNER_BYTES, hex);
	return rc ? rc : cv_ledger_append(a->path, hex, at_us, a->err, a->errlen);
}

/* The marker of an unfinished restore (cli.h, CV_RESTORE_MARKER). */
static int mark(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "cannot create %.200s: %.60s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int new_dir(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %.200s: %.60s", dir, strerror(errno));
		return -1;
	}
	char probe[CV_PATH_MAX + 32];
	snprintf(probe, sizeof probe, "%s/store.db", dir);
	if (access(probe, F_OK) == 0 || (snprintf(probe, sizeof probe, "%s/master.key", dir), access(probe, F_OK) == 0)) {
		snprintf(err, errlen, "%.200s already holds a data directory: restore into a new one", dir);
		return -1;
	}
	return chmod(dir, 0700) == 0 ? 0 : -1;
}

static int restore(bk_cmd_t *c, char *err, size_t errlen)
{
	cv_key_t *master = NULL;
	cv_store_t *s = NULL;
	cv_store_backup_info_t info;
	cv_cli_progress_t p = { .what = "restore", .unit = "bytes" };
	char ledger[CV_PATH_MAX + 32], detail[200];
	bool file = !c->cfg.master_key_source[0] || strcmp(c->cfg.master_key_source, "file") == 0;
	if (!c->in) {
		snprintf(err, errlen, "--in FILE is required");
		return -1;
	}
	if (load_master(c, &master, err, errlen))
		return -1;
	cv_rc rc = CV_OK;
	if (c->verify_only) {
		rc = cv_store_backup_verify(c->in, master, show, &p, &info, err, errlen);
		if (!rc)
			printf("the backup is whole: %llu versions, %llu keys, %llu audit records (%llu bytes), made under master "
			       "key version %u\n", (unsigned long long)info.versions, (unsigned long long)info.keys,
			       (unsigned long long)info.audit, (unsigned long long)info.bytes, info.master_version);
		cv_key_free(master);
		return rc ? -1 : 0;
	}
	apply_t a = { .err = err, .errlen = errlen };
	char marker[CV_PATH_MAX + 64];
	snprintf(marker, sizeof marker, "%s/%s", c->cfg.data_dir, CV_RESTORE_MARKER);
	if (ledger_path(c, ledger, sizeof ledger, err, errlen) || new_dir(c->cfg.data_dir, err, errlen) ||
	    mark(marker, err, errlen)) {
		cv_key_free(master);
		return -1;
	}
	rc = cv_store_restore(c->in, master, c->cfg.data_dir, show, &p, &info, err, errlen);
	if (!rc && file)
		rc = copy_key_file(c->cfg.master_key_file, c->cfg.data_dir, err, errlen);
	if (!rc)
		rc = cv_ledger_create(c->cfg.data_dir, err, errlen);
	if (!rc && (rc = cv_store_open(c->cfg.data_dir, NULL, 1, master, &s, err, errlen)) == CV_OK) {
		a.s = s;
		snprintf(a.path, sizeof a.path, "%s/%s", c->cfg.data_dir, CV_LEDGER_FILE);
		if (ledger[0])
			rc = cv_ledger_each(ledger, apply_line, &a, err, errlen);
		uint64_t moved = 0; /* what an older store sealed under its single key: to its patients' keys */
		if (!rc && cv_store_legacy_pending(s) && cv_cli_migrate_legacy(s, &c->cfg, &moved, err, errlen))
			rc = CV_E_STORAGE;
		snprintf(detail, sizeof detail, "restored a backup made at %lld: %llu versions, %llu audit records; %u erasures "
			 "of %u in the ledger applied", (long long)info.created_us, (unsigned long long)info.versions,
			 (unsigned long long)info.audit, a.erased, a.lines);
		record(s, "store-restored", 'C', rc == CV_OK, detail);
	}
	if (!rc)
		rc = cv_cli_init_tls(c->cfg.data_dir, NULL, NULL, err, errlen);
	cv_store_close(s);
	cv_key_free(master);
	if (!rc && unlink(marker) != 0) {
		snprintf(err, errlen, "cannot remove %.200s: %.60s", marker, strerror(errno));
		rc = CV_E_IO;
	}
	if (rc) {
		size_t n = strlen(err);
		snprintf(err + n, errlen - n, " (the new directory is unfinished: serve refuses it; remove it and run again)");
		return -1;
	}
	cv_cli_progress(&p, info.bytes, info.bytes, true);
	printf("restored into %s: %llu versions, %llu keys, %llu audit records; %u patients erased since (of %u in the "
	       "ledger) are erased again. A new development TLS certificate is in %s/tls (install yours). The search index "
	       "is rebuilt when it first serves: carevault serve --data %s\n", c->cfg.data_dir,
	       (unsigned long long)info.versions, (unsigned long long)info.keys, (unsigned long long)info.audit, a.erased,
	       a.lines, c->cfg.data_dir, c->cfg.data_dir);
	return 0;
}

int cv_cli_restore(int argc, char **argv)
{
	bk_cmd_t c;
	char err[512] = "";
	memset(&c, 0, sizeof c);
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		restore_usage(stdout);
		return 0;
	}
	if (parse_args(&c, argc, argv, err, sizeof err)) {
		fprintf(stderr, "carevault restore: %s\n", err);
		return 2;
	}
	cv_log_set_level(CV_LOG_WARN);
	if (restore(&c, err, sizeof err)) {
		fprintf(stderr, "carevault restore: %s\n", err);
		return 1;
	}
	return 0;
}
