/*
 * keys.c - `carevault keys`: the key hierarchy's state, and master key
 * rotation without downtime (decision 0010).
 *
 * rotate-master: the master key source gets a new version, which becomes
 * current; the store records it (meta "master.version"), so every process
 * wraps new keys with it from then on (store.h, cv_store_master_version_set);
 * every data key and system key still wrapped by an older version is
 * re-wrapped (a progress bar; safe while servers run, and to run again after
 * a crash: it resumes); then the source keeps only the new version, the old
 * ones going to DATA/master-retired.key (0600; what old backups need) unless
 * --destroy-old. The rotation is recorded in the audit trail.
 *
 * rotate-data [--patient ID]: a new data key for one patient, or for every
 * patient and the shared and audit keys; the old ones are retired at once
 * (nothing new is sealed with them), then every version they sealed is
 * re-encrypted with its owner's new key in the background of a serving
 * server (a progress bar; batches record how far they got, so running the
 * command again after a crash resumes), and the retired keys are destroyed
 * (the audit trail's are kept: its records are hash-chained as sealed). A
 * full rotation also moves data sealed under the single data key of stores
 * made before per-patient keys to its patients' keys.
 */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/log.h"
#include "fhir/fhir.h"
#include "model/json.h"
#include "model/model.h"
#include "policy/policy.h"

typedef struct keys_cmd {
	cv_config_t cfg;
	const char *verb;
	const char *patient;
	bool destroy_old;
} keys_cmd_t;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: carevault keys status --data DIR\n"
		"       carevault keys rotate-master --data DIR [--destroy-old]\n"
		"       carevault keys rotate-data --data DIR [--patient ID]\n\n"
		"status: where the master key lives, its versions, and the data keys (active, destroyed,\n"
		"  wrapped by another version than the current one).\n"
		"rotate-master: makes a new master key version (a new key file version, or a new key in the\n"
		"  PKCS#11 token) and re-wraps every data key with it while the server keeps serving (a\n"
		"  progress bar; run it again after an interruption: it resumes). Then only the new version\n"
		"  is kept: the old ones are appended to DATA/master-retired.key (0600), which restores of\n"
		"  backups taken before the rotation need, or destroyed with --destroy-old (those backups can\n"
		"  then no longer be opened). A master key from the environment cannot be rotated here.\n"
		"rotate-data: a new data key for one patient (--patient) or for every patient and the shared\n"
		"  and audit keys; the old ones stop sealing at once, everything they sealed is re-encrypted\n"
		"  with the new ones while the server serves (a progress bar; run it again after an\n"
		"  interruption: it resumes), then they are destroyed (the audit trail's are kept, retired).\n"
		"  A full rotation also moves data written before per-patient keys to its patients' keys.\n"
		"Takes --store URL, --config FILE and the master key options (--master-key-source ...) as\n"
		"serve does.\n");
}

static int own_option(void *arg, const char *name, const char *value)
{
	keys_cmd_t *c = arg;
	if (strcmp(name, "--destroy-old") == 0)
		return c->destroy_old = true, 1;
	if (strcmp(name, "--patient") == 0 && value)
		return c->patient = value, 2;
	return 0;
}

static int parse_args(keys_cmd_t *c, int argc, char **argv, char *err, size_t errlen)
{
	return cv_cli_options(&c->cfg, argc, argv, 2, own_option, c, err, errlen);
}

static void record(cv_store_t *s, const char *subtype, bool ok, const char *detail)
{
	char agent[64];
	snprintf(agent, sizeof agent, "operator-uid-%u", (unsigned)getuid());
	cv_audit_event_t e = { .type = CV_AUDIT_SECURITY, .subtype = subtype, .action = 'U', .outcome = ok ? 0 : 8,
			       .flags = CV_AUDIT_F_SECURITY, .agent = agent, .agent_kind = "operator", .detail = detail };
	if (cv_audit_record(s, &e) != CV_OK)
		fprintf(stderr, "carevault: warning: the key change could not be recorded in the audit trail\n");
}

static int status(cv_key_t *master, cv_store_t *s, char *err, size_t errlen)
{
	uint32_t ids[64];
	size_t n = cv_master_versions(master, ids, 64);
	cv_store_key_stats_t st;
	cv_rc rc = cv_store_key_stats(s, cv_master_current(master), &st);
	if (rc) {
		snprintf(err, errlen, "cannot read the key table: %s", cv_rc_str(rc));
		return -1;
	}
	printf("master key: %s, current version %u (versions held:", cv_master_source(master), cv_master_current(master));
	for (size_t i = 0; i < n; i++)
		printf(" %u", ids[i]);
	printf(")\ndata keys: %llu active, %llu retired, %llu destroyed; %llu keys wrapped by another master key version\n",
	       (unsigned long long)st.active, (unsigned long long)st.retired, (unsigned long long)st.destroyed,
	       (unsigned long long)st.other_version);
	return 0;
}

static void rewrap_progress(void *arg, uint64_t done, uint64_t total)
{
	cv_cli_progress(arg, done, total, false);
}

static int rotate_master(keys_cmd_t *c, cv_key_t *master, cv_store_t *s, char *err, size_t errlen)
{
	uint32_t next;
	uint64_t count = 0, more = 0;
	char retired[CV_PATH_MAX + 32], detail[128];
	cv_cli_progress_t p = { .what = "re-wrapping", .unit = "keys" };
	snprintf(retired, sizeof retired, "%s/master-retired.key", c->cfg.data_dir);
	if (cv_cli_audit_intent(s, "master-key-rotation-started", c->destroy_old ? "old versions to be destroyed"
									       : "old versions to be retired", NULL))
		return -1;
	cv_rc rc = cv_master_add_version(master, &next, err, errlen);
	if (!rc && (rc = cv_store_master_version_set(s, next)))
		snprintf(err, errlen, "cannot record the new master key version in the store: %s", cv_rc_str(rc));
	/* until a pass finds nothing left (keys made meanwhile by servers still on the old version) */
	for (int pass = 0; !rc && pass < 5; pass++) {
		rc = cv_store_rewrap(s, rewrap_progress, &p, &more);
		count += more;
		if (!rc && more == 0)
			break;
	}
	cv_store_key_stats_t st;
	if (!rc && !(rc = cv_store_key_stats(s, next, &st)) && st.other_version) {
		snprintf(err, errlen, "%llu keys are still wrapped by an older version: run the command again",
			 (unsigned long long)st.other_version);
		rc = CV_E_CONFLICT;
	} else if (rc && !err[0]) {
		snprintf(err, errlen, "re-wrapping failed: %s (run the command again: it resumes)", cv_rc_str(rc));
	}
	cv_cli_progress(&p, count, count, true);
	if (!rc)
		rc = cv_master_retire(master, next, c->destroy_old ? NULL : retired, err, errlen);
	snprintf(detail, sizeof detail, "master key version %u; %llu keys re-wrapped%s", next, (unsigned long long)count,
		 c->destroy_old ? "; old versions destroyed" : "; old versions retired");
	record(s, "master-key-rotated", rc == CV_OK, detail);
	if (rc)
		return -1;
	printf("master key rotated: version %u is current; %llu keys re-wrapped; old versions %s\n", next,
	       (unsigned long long)count, c->destroy_old ? "destroyed" : "appended to master-retired.key");
	return 0;
}

/* Whose compartment a version sealed under the legacy data key is in. */
static cv_rc legacy_owner(void *arg, const char *type, const char *json, size_t len, char out[65])
{
	cv_fhir_t *f = arg;
	cv_pool_t pool;
	json_object *obj = NULL;
	const char *perr = NULL, **pats = NULL;
	size_t n = 0;
	out[0] = '\0';
	if (type[0] == CV_STORE_INTERNAL_PREFIX) /* accounts, sessions, clients: no patient's */
		return CV_OK;
	cv_pool_init(&pool, 0);
	cv_rc rc = cv_json_parse(json, len, &f->limits, &pool, &obj, &perr);
	if (!rc && cv_policy_patients(f->policy, type, 0, obj, &pool, &pats, &n) == CV_OK && n)
		snprintf(out, 65, "%s", pats[0]);
	json_object_put(obj);
	cv_pool_release(&pool);
	return rc == CV_E_INVALID ? CV_OK : rc; /* a tombstone or odd body: the shared key */
}

static void reseal_progress(void *arg, uint64_t done, uint64_t total)
{
	cv_cli_progress(arg, done, total, false);
}

/* The re-encryption step, with the FHIR layer to tell legacy versions' owners when `all`. */
static cv_rc reseal(cv_store_t *s, const cv_config_t *cfg, bool all, cv_cli_progress_t *p, uint64_t *resealed, char *err,
		    size_t errlen)
{
	cv_model_t *model = NULL;
	cv_fhir_t f;
	memset(&f, 0, sizeof f);
	cv_rc rc = CV_OK;
	if (all && (rc = cv_model_new(&model)) == CV_OK && (rc = cv_fhir_init(&f, s, model, cfg)) != CV_OK)
		snprintf(err, errlen, "cannot prepare the FHIR layer: %s", cv_rc_str(rc));
	if (!rc && (rc = cv_store_reseal(s, all ? legacy_owner : NULL, &f, reseal_progress, p, resealed)))
		snprintf(err, errlen, "re-encryption stopped: %s (run the command again: it resumes)", cv_rc_str(rc));
	if (!rc)
		cv_cli_progress(p, 1, 1, true);
	if (f.store)
		cv_fhir_release(&f);
	cv_model_free(model);
	return rc;
}

int cv_cli_migrate_legacy(cv_store_t *s, const cv_config_t *cfg, uint64_t *resealed, char *err, size_t errlen)
{
	cv_cli_progress_t p = { .what = "re-encrypting", .unit = "versions" };
	return reseal(s, cfg, true, &p, resealed, err, errlen) ? -1 : 0;
}

static int rotate_data(keys_cmd_t *c, cv_store_t *s, char *err, size_t errlen)
{
	uint64_t owners = 0, resealed = 0;
	char detail[160];
	cv_cli_progress_t p = { .what = "re-encrypting", .unit = "versions" };
	if (cv_cli_audit_intent(s, "data-key-rotation-started", c->patient ? "one patient's keys" : "every data key",
				c->patient))
		return -1;
	cv_rc rc = cv_store_rotate_keys(s, c->patient, &owners);
	bool resuming = rc == CV_E_CONFLICT;
	if (resuming) {
		fprintf(stderr, "an interrupted rotation is unfinished: finishing it (run the command again afterwards "
				"for a new rotation)\n");
		rc = CV_OK;
	}
	if (rc == CV_E_NOTFOUND)
		snprintf(err, errlen, "no data of this patient is stored (no key of theirs exists)");
	else if (rc)
		snprintf(err, errlen, "cannot make the new keys: %s", cv_rc_str(rc));
	bool all = !c->patient || resuming;
	if (!rc)
		rc = reseal(s, &c->cfg, all, &p, &resealed, err, errlen);
	snprintf(detail, sizeof detail, "data keys rotated: %llu new keys%s%s; %llu versions re-encrypted",
		 (unsigned long long)owners, c->patient ? " (one patient)" : "", resuming ? "; an interrupted rotation finished" : "",
		 (unsigned long long)resealed);
	record(s, "data-keys-rotated", rc == CV_OK, detail);
	if (rc)
		return -1;
	printf("%s; the old keys are destroyed\n", detail);
	return 0;
}

int cv_cli_keys(int argc, char **argv)
{
	keys_cmd_t c;
	char err[512] = "";
	cv_key_t *master = NULL;
	cv_store_t *s = NULL;
	memset(&c, 0, sizeof c);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	c.verb = argv[1];
	if (strcmp(c.verb, "status") != 0 && strcmp(c.verb, "rotate-master") != 0 && strcmp(c.verb, "rotate-data") != 0) {
		fprintf(stderr, "carevault keys: unknown command (status, rotate-master, rotate-data)\n");
		return 2;
	}
	if (parse_args(&c, argc, argv, err, sizeof err)) {
		fprintf(stderr, "carevault keys %s: %s\n", c.verb, err);
		return 2;
	}
	cv_log_set_level(CV_LOG_WARN);
	int ret = cv_cli_open_store(&c.cfg, 2, &master, &s, err, sizeof err);
	if (!ret)
		ret = strcmp(c.verb, "status") == 0	   ? status(master, s, err, sizeof err)
		      : strcmp(c.verb, "rotate-data") == 0 ? rotate_data(&c, s, err, sizeof err)
							   : rotate_master(&c, master, s, err, sizeof err);
	cv_store_close(s);
	cv_key_free(master);
	if (ret) {
		fprintf(stderr, "carevault keys %s: %s\n", c.verb, err);
		return 1;
	}
	return 0;
}
