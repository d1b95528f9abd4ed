/*
 * common.c - what several subcommands share: opening a data directory's store.
 */
#include "cli/cli.h"

#include <stdio.h>

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
