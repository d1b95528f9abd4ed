/*
 * config.h - the server configuration: defaults, then a config file, then
 * environment variables (CAREVAULT_*), then command-line flags; later ones win.
 *
 * A cv_config_t is filled once at start-up and frozen: threads read it only.
 * The config file holds `key = value` lines (# comments), with the keys of
 * the table in config.c (the same names as the long flags without "--").
 */
#ifndef CV_CORE_CONFIG_H
#define CV_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/rc.h"

#define CV_PATH_MAX 1024

typedef struct cv_config {
	char data_dir[CV_PATH_MAX];   /* data directory (key, store, TLS, tokens) */
	char config_file[CV_PATH_MAX];/* config file read, or "" */
	char listen_addr[64];         /* address to bind, "127.0.0.1" */
	uint16_t listen_port;         /* port, 8443 */
	char cert_file[CV_PATH_MAX];  /* TLS certificate (PEM); default DATA/tls/cert.pem */
	char key_file[CV_PATH_MAX];   /* TLS private key (PEM); default DATA/tls/key.pem */
	char store_url[CV_PATH_MAX];  /* "" = embedded SQLite in the data dir */
	char master_key_source[16];   /* "file" (""), "env", "pkcs11" */
	char master_key_file[CV_PATH_MAX]; /* default DATA/master.key */
	char master_key_retired[CV_PATH_MAX]; /* retired versions read with it, "" none */
	char pkcs11_module[CV_PATH_MAX];   /* the PKCS#11 module (.so) */
	char pkcs11_token[64];        /* the token's label */
	char pkcs11_key_label[64];    /* its key objects' label, "" = carevault-master */
	char pkcs11_pin_file[CV_PATH_MAX]; /* the PIN's file, "" = $CAREVAULT_PKCS11_PIN */
	char public_url[300];         /* "https://host[:port]" clients use; "" = from each request's Host */
	unsigned threads;             /* HTTP worker threads; 0 = one per core */
	unsigned key_cache;           /* most cached data keys; 0 = CV_STORE_KEY_CACHE */
	size_t max_body;              /* request body bytes, 16 MiB */
	size_t max_header;            /* total request header bytes, 16 KiB */
	size_t max_url;               /* request target bytes, 8 KiB */
	unsigned max_connections;     /* open connections, 4096 */
	unsigned max_conn_per_ip;     /* open connections from one address, 0 = no limit */
	unsigned idle_timeout;        /* seconds a connection may stay silent, 30 */
	unsigned request_timeout;     /* seconds a request body may take to arrive, 60 */
	unsigned max_json_depth;      /* JSON nesting, 64 */
	unsigned history_max_count;   /* largest _count on history, 1000 */
	unsigned search_default_count; /* search page size when _count is absent, 50 */
	unsigned search_max_count;    /* largest _count on search, 1000 */
	unsigned session_idle;        /* seconds a portal session may stay unused, 900 */
	unsigned session_absolute;    /* seconds a portal session lasts at most, 43200 */
	unsigned access_token_life;   /* seconds an OAuth access token lasts, 300 */
	unsigned break_glass_minutes; /* minutes a break-glass declaration lasts, 60 */
	int log_level;                /* cv_log_level */
	int access_log;               /* 1: one JSON line per request */
	char outbound_ca_file[CV_PATH_MAX]; /* CAs (PEM) for outbound https (JWKS URLs); "" = system bundle */
	unsigned audit_retention_days;      /* audit records older than this are archived by `audit archive`, 2192 */
	unsigned audit_checkpoint_records;  /* sign a checkpoint of the audit chain every N records, 1000 ... */
	unsigned audit_checkpoint_seconds;  /* ... or every T seconds, 60 */
	char audit_checkpoint_file[CV_PATH_MAX]; /* checkpoints appended here; default DATA/audit-checkpoints.jsonl */
	int audit_checkpoint_syslog;        /* 1: checkpoints to syslog too */
	char audit_checkpoint_url[300];     /* checkpoints POSTed here (https), "" = not */
	char alert_webhook_url[300];        /* security alerts POSTed here (https), "" = not */
	unsigned alert_failed_logins;       /* failed logins of one account in 15 minutes, 10 (0: off) */
	unsigned alert_patients_per_hour;   /* distinct patients one user reads in an hour, 100 (0: off) */
	unsigned alert_resources_per_hour;  /* resources one agent receives in an hour, 10000 (0: off) */
	unsigned alert_denied_per_hour;     /* refused accesses of one agent in an hour, 20 (0: off) */
} cv_config_t;

/* Fills cfg with the defaults. */
void cv_config_defaults(cv_config_t *cfg);

/* Sets one option by name ("listen", "max-body", ...). CV_E_INVALID with a
 * message in err for an unknown name or a bad value. */
cv_rc cv_config_set(cv_config_t *cfg, const char *name, const char *value, char *err, size_t errlen);

/* Reads a config file of `name = value` lines. CV_E_IO if it cannot be read. */
cv_rc cv_config_load_file(cv_config_t *cfg, const char *path, char *err, size_t errlen);

/* Applies CAREVAULT_<NAME> environment variables (dashes as underscores). */
cv_rc cv_config_load_env(cv_config_t *cfg, char *err, size_t errlen);

/* Fills derived defaults (cert/key paths under the data dir, threads). */
void cv_config_finish(cv_config_t *cfg);

/* Prints the option table (name, env variable, default, meaning) for --help. */
void cv_config_print_help(FILE *out);

/* Parses a decimal unsigned number with optional K/M/G suffix; CV_E_INVALID if not one. */
cv_rc cv_parse_size(const char *s, uint64_t max, uint64_t *out);

#endif
