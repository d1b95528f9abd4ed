/*
 * cli.h - subcommands of the carevault binary that live outside main.c.
 */
#ifndef CV_CLI_CLI_H
#define CV_CLI_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "crypto/crypto.h"
#include "store/store.h"

/* The master key's source as cfg says (crypto.h, "the master key"). */
void cv_cli_master_cfg(const cv_config_t *cfg, cv_master_cfg_t *out);

/* Loads the master key from the source cfg names. */
cv_rc cv_cli_master_load(const cv_config_t *cfg, cv_key_t **master, char *err, size_t errlen);

/* Loads the master key (cfg's source: DATA/master.key by default) and opens the store of cfg (embedded or cfg->store_url).
 * Returns 0, or -1 with err set. The caller closes the store and frees the key. */
int cv_cli_open_store(const cv_config_t *cfg, unsigned read_conns, cv_key_t **master, cv_store_t **store, char *err,
		      size_t errlen);

/* `carevault import`: argv[0] is "import". Returns the exit code. */
int cv_cli_import(int argc, char **argv);

/* `carevault user`: argv[0] is "user". Returns the exit code. */
int cv_cli_user(int argc, char **argv);

/* `carevault client`: argv[0] is "client". Returns the exit code. */
int cv_cli_client(int argc, char **argv);

/* A command's own options: how many arguments it took at name (1: a flag,
 * 2: an option and its value), or 0 when it is not one of its own. */
typedef int (*cv_cli_own_fn)(void *arg, const char *name, const char *value);

/* Reads the configuration (defaults, environment) and argv[from..]: the
 * command's own options through own, --config FILE, and every other
 * --OPTION VALUE as a configuration option (--data, --store, the master
 * key's ...). Returns 0, or -1 with err set. */
int cv_cli_options(cv_config_t *cfg, int argc, char **argv, int from, cv_cli_own_fn own, void *arg, char *err,
		   size_t errlen);

/* A progress bar on stderr (a terminal: redrawn 5 times a second; else a
 * line every 5 s): what, a bar, percent, counts, rate and time left. */
typedef struct cv_cli_progress {
	const char *what, *unit;
	bool tty;
	int64_t started_us, printed_us;
} cv_cli_progress_t;
void cv_cli_progress(cv_cli_progress_t *p, uint64_t done, uint64_t total, bool last);

/* A file restore makes in a new data directory first and removes last:
 * serve refuses a directory that holds it (erasures not applied yet). */
#define CV_RESTORE_MARKER "restore-unfinished"

/* `carevault backup` / `carevault restore`: argv[0] is the command. */
int cv_cli_backup(int argc, char **argv);
int cv_cli_restore(int argc, char **argv);

/* The TLS files of a new data directory: a development certificate for
 * localhost, or copies of cert and key (cli/main.c). */
cv_rc cv_cli_init_tls(const char *dir, const char *cert, const char *key, char *err, size_t errlen);

/* Moves what a store made before per-patient keys sealed under its single
 * data key to its patients' keys, shredding erased patients' part (the
 * data key rotation's re-encryption, cli/keys.c). 0, or -1 with err set. */
int cv_cli_migrate_legacy(cv_store_t *s, const cv_config_t *cfg, uint64_t *resealed, char *err, size_t errlen);

/* `carevault keys`: argv[0] is "keys". Returns the exit code. */
int cv_cli_keys(int argc, char **argv);

/* `carevault patient erase`: argv[0] is "patient". Returns the exit code. */
int cv_cli_patient(int argc, char **argv);

/* `carevault audit`: argv[0] is "audit". Returns the exit code. */
int cv_cli_audit(int argc, char **argv);

/* Records an operator's change made with the command line (user, client)
 * in the audit trail: subtype, action, the account or client changed, and
 * whether it worked. Returns 0, or -1 (and says so on stderr). */
int cv_cli_audit_change(cv_store_t *s, const char *subtype, char action, const char *target, bool ok);

/* An operator's change that takes more than one transaction (a key
 * rotation, an erasure, a retention archive): the record that it starts
 * (subtype; detail without PHI; patient when it is about one) commits
 * before its first write, so that no part of it is ever unrecorded; its
 * outcome is recorded after it. -1 (said on stderr): refuse the change. */
int cv_cli_audit_intent(cv_store_t *s, const char *subtype, const char *detail, const char *patient);

/* A change the command makes through auth/ (an account, a client), its
 * record committed with the write (store.h, "a write's companion"):
 * begin before the call that writes the version of internal type `type`;
 * end after it, with its outcome and target (NULL: the id written), writes
 * the record of a change that failed (or that did not carry its record). */
typedef struct cv_cli_change {
	const char *subtype, *type, *target;
	char action;
	char agent[64];
	cv_pool_t pool;
	cv_store_write_t *rec;
} cv_cli_change_t;
void cv_cli_change_begin(cv_cli_change_t *c, const char *subtype, char action, const char *type, const char *target);
int cv_cli_change_end(cv_cli_change_t *c, cv_store_t *s, bool ok, const char *target);

#endif
