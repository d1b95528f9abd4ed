/*
 * patient.c - `carevault patient erase`: a patient's right to erasure by
 * crypto-shredding (store.h, "data keys"). Every key of the patient's
 * compartment is destroyed, so every version of every resource it sealed,
 * current or old, in this store or in any copy of it, can no longer be
 * opened with any key the system has; their index entries go, so no search
 * finds them. The erasure is recorded in the audit trail (under the
 * patient's id, a pseudonym once their records are gone) and in the
 * erasure ledger DATA/erasures, which `carevault restore` applies so that a
 * backup taken before the erasure does not bring the patient back.
 */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/log.h"
#include "core/time.h"

typedef struct patient_cmd {
	cv_config_t cfg;
	const char *id;
	bool yes;
	int argc;
	char **argv;
} patient_cmd_t;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: carevault patient erase --data DIR --id PATIENT_ID --yes\n"
		"       carevault patient ledger --data DIR > erasures\n\n"
		"Erases a patient (GDPR article 17) by destroying their data keys: every version of every\n"
		"resource in their compartment, with its history and search index entries, becomes\n"
		"unreadable for good, here and in every earlier copy or backup of the store once restored\n"
		"with 'carevault restore' (which applies the erasure ledger, DATA/erasures). It cannot be\n"
		"undone. Reads of the erased resources answer 404, searches never return them, writes\n"
		"that would store new data for the patient are refused (410). The audit trail keeps the\n"
		"erasure and the patient's id as a pseudonym. Works while the server runs: it stops using\n"
		"the destroyed keys within a second. --yes confirms.\n"
		"ledger prints the erasure ledger rebuilt from the store (every node's erasures, for a\n"
		"deployment with several nodes): keep it with the master key.\n"
		"Takes --store URL, --config FILE and the master key options as serve does. The admin API\n"
		"does the same with two administrators (POST /admin/erasures, docs/API.md).\n");
}

static int own_option(void *arg, const char *name, const char *value)
{
	patient_cmd_t *c = arg;
	if (strcmp(name, "--yes") == 0)
		return c->yes = true, 1;
	if (strcmp(name, "--id") == 0 && value)
		return c->id = value, 2;
	return 0;
}

static int parse_args(patient_cmd_t *c, int argc, char **argv, char *err, size_t errlen)
{
	if (cv_cli_options(&c->cfg, argc, argv, 2, own_option, c, err, errlen))
		return -1;
	if (!c->id || !c->id[0] || strlen(c->id) > 64) {
		snprintf(err, errlen, "--id PATIENT_ID is required (1 to 64 characters)");
		return -1;
	}
	if (!c->yes) {
		snprintf(err, errlen, "erasure cannot be undone: add --yes to confirm");
		return -1;
	}
	return 0;
}

static void record(cv_store_t *s, const char *id, bool ok)
{
	char agent[64];
	const char *pats[1] = { id };
	snprintf(agent, sizeof agent, "operator-uid-%u", (unsigned)getuid());
	cv_audit_event_t e = { .type = CV_AUDIT_SECURITY, .subtype = "patient-erased", .action = 'D',
			       .outcome = ok ? 0 : 8, .flags = CV_AUDIT_F_SECURITY, .agent = agent,
			       .agent_kind = "operator", .patients = pats, .npatients = 1 };
	if (cv_audit_record(s, &e) != CV_OK)
		fprintf(stderr, "carevault: warning: the erasure could not be recorded in the audit trail\n");
}

static int erase(patient_cmd_t *c, char *err, size_t errlen)
{
	cv_key_t *master = NULL;
	cv_store_t *s = NULL;
	char owner[33];
	int64_t count = 0, now = cv_time_now_us();
	if (cv_cli_open_store(&c->cfg, 1, &master, &s, err, errlen))
		return -1;
	char ledger[CV_PATH_MAX + 32];
	snprintf(ledger, sizeof ledger, "%s/%s", c->cfg.data_dir, CV_LEDGER_FILE);
	/* the ledger line first: a crash after the erasure must not lose it (an extra line for an
	 * erasure that then failed only erases the patient from a restored backup) */
	cv_rc rc = cv_store_erase_check(s, c->id, owner);
	bool refused = !rc && (cv_cli_audit_intent(s, "patient-erasure-started", "crypto-shredding of the patient's keys",
						   c->id) || cv_ledger_append(ledger, owner, now, err, errlen));
	if (refused) {
		cv_store_close(s);
		cv_key_free(master);
		return -1;
	}
	if (!rc)
		rc = cv_store_erase(s, c->id, now, &count, owner);
	if (rc != CV_E_NOTFOUND && rc != CV_E_GONE)
		record(s, c->id, rc == CV_OK);
	int ret = rc ? -1 : 0;
	if (rc == CV_E_NOTFOUND)
		snprintf(err, errlen, "no data of this patient is stored (no key of theirs exists)");
	else if (rc == CV_E_GONE)
		snprintf(err, errlen, "this patient was erased already");
	else if (rc)
		snprintf(err, errlen, "the erasure failed: %s; nothing was changed", cv_rc_str(rc));
	else
		printf("erased: %lld resources made unreadable; the patient's keys are destroyed\n", (long long)count);
	if (!rc && cv_store_legacy_pending(s))
		fprintf(stderr, "carevault patient erase: warning: this store still holds data written before per-patient "
				"keys; the patient's part of it becomes unreadable when you run 'carevault keys rotate-data' "
				"(run it now)\n");
	cv_store_close(s);
	cv_key_free(master);
	return ret;
}

static cv_rc print_line(void *arg, const uint8_t owner[CV_OWNER_BYTES], int64_t at_us)
{
	char hex[2 * CV_OWNER_BYTES + 1];
	(void)arg;
	cv_crypto_hex(owner, CV_OWNER_BYTES, hex);
	printf("%s %lld\n", hex, (long long)at_us);
	return CV_OK;
}

/* `patient ledger`: the erasure ledger rebuilt from the store (every node's erasures). */
static int ledger(patient_cmd_t *c, char *err, size_t errlen)
{
	cv_key_t *master = NULL;
	cv_store_t *s = NULL;
	if (cv_cli_options(&c->cfg, c->argc, c->argv, 2, NULL, NULL, err, errlen) ||
	    cv_cli_open_store(&c->cfg, 1, &master, &s, err, errlen))
		return -1;
	cv_rc rc = cv_store_erasures(s, print_line, NULL);
	if (rc)
		snprintf(err, errlen, "cannot read the erasures: %s", cv_rc_str(rc));
	cv_store_close(s);
	cv_key_free(master);
	return rc ? -1 : 0;
}

int cv_cli_patient(int argc, char **argv)
{
	patient_cmd_t c;
	char err[512] = "";
	memset(&c, 0, sizeof c);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "ledger") == 0) {
		c.argc = argc;
		c.argv = argv;
		cv_log_set_level(CV_LOG_WARN);
		if (ledger(&c, err, sizeof err)) {
			fprintf(stderr, "carevault patient ledger: %s\n", err);
			return 1;
		}
		return 0;
	}
	if (strcmp(argv[1], "erase") != 0) {
		fprintf(stderr, "carevault patient: unknown command (erase, ledger)\n");
		return 2;
	}
	if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (parse_args(&c, argc, argv, err, sizeof err)) {
		fprintf(stderr, "carevault patient erase: %s\n", err);
		return 2;
	}
	cv_log_set_level(CV_LOG_WARN);
	if (erase(&c, err, sizeof err)) {
		fprintf(stderr, "carevault patient erase: %s\n", err);
		return 1;
	}
	return 0;
}
