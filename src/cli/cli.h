/*
 * cli.h - subcommands of the carevault binary that live outside main.c.
 */
#ifndef CV_CLI_CLI_H
#define CV_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"
#include "crypto/crypto.h"
#include "store/store.h"

/* Loads DIR/master.key and opens the store of cfg (embedded or cfg->store_url).
 * Returns 0, or -1 with err set. The caller closes the store and frees the key. */
int cv_cli_open_store(const cv_config_t *cfg, unsigned read_conns, cv_key_t **master, cv_store_t **store, char *err,
		      size_t errlen);

/* `carevault import`: argv[0] is "import". Returns the exit code. */
int cv_cli_import(int argc, char **argv);

/* `carevault user`: argv[0] is "user". Returns the exit code. */
int cv_cli_user(int argc, char **argv);

/* `carevault client`: argv[0] is "client". Returns the exit code. */
int cv_cli_client(int argc, char **argv);

/* `carevault patient erase`: argv[0] is "patient". Returns the exit code. */
int cv_cli_patient(int argc, char **argv);

/* `carevault audit`: argv[0] is "audit". Returns the exit code. */
int cv_cli_audit(int argc, char **argv);

/* Records an operator's change made with the command line (user, client)
 * in the audit trail: subtype, action, the account or client changed, and
 * whether it worked. Returns 0, or -1 (and says so on stderr). */
int cv_cli_audit_change(cv_store_t *s, const char *subtype, char action, const char *target, bool ok);

#endif
