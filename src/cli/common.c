/*
 * common.c - what several subcommands share: opening a data directory's store.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <unistd.h>

#include "audit/audit.h"
#include "crypto/crypto.h"

int cv_cli_open_store(const cv_config_t *cfg, unsigned read_conns, cv_key_t **master, cv_store_t **store, char *err,
		      size_t errlen)
{
	char kpath[CV_PATH_MAX + 32];
	snprintf(kpath, sizeof kpath, "%s/master.key", cfg->data_dir);
	cv_rc rc = cv_crypto_init(err, errlen);
	if (!rc)
		rc = cv_crypto_master_load(kpath, master, err, errlen);
	if (!rc)
		rc = cv_store_open(cfg->data_dir, cfg->store_url, read_conns, *master, store, err, errlen);
	return rc ? -1 : 0;
}

int cv_cli_audit_change(cv_store_t *s, const char *subtype, char action, const char *target, bool ok)
{
	char agent[64];
	snprintf(agent, sizeof agent, "operator-uid-%u", (unsigned)getuid());
	cv_audit_event_t e = { .type = CV_AUDIT_SECURITY, .subtype = subtype, .action = action, .outcome = ok ? 0 : 4,
			       .flags = CV_AUDIT_F_SECURITY, .agent = agent, .agent_kind = "operator", .target = target };
	if (cv_audit_record(s, &e) == CV_OK)
		return 0;
	fprintf(stderr, "carevault: warning: the change could not be recorded in the audit trail\n");
	return -1;
}
