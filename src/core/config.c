/* config.c - option table, parsing of values, file and environment sources. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

typedef enum { OPT_PATH, OPT_STR, OPT_LISTEN, OPT_UINT, OPT_SIZE, OPT_LEVEL, OPT_BOOL, OPT_ORIGIN } opt_kind;

typedef struct opt {
	const char *name;   /* flag and config-file key */
	opt_kind kind;      /* how the value is parsed */
	size_t offset;      /* field in cv_config_t */
	size_t size;        /* field size (strings) */
	uint64_t max;       /* largest number accepted */
	const char *def;    /* default, for --help */
	const char *help;   /* meaning, for --help */
} opt_t;

#define F(field) offsetof(cv_config_t, field), sizeof(((cv_config_t *)0)->field)

static const opt_t options[] = {
	{ "data", OPT_PATH, F(data_dir), 0, "./data", "data directory (master key, store, TLS files)" },
	{ "listen", OPT_LISTEN, F(listen_addr), 0, "127.0.0.1:8443", "address and port to serve HTTPS on" },
	{ "cert", OPT_PATH, F(cert_file), 0, "DATA/tls/cert.pem", "TLS certificate chain (PEM)" },
	{ "key", OPT_PATH, F(key_file), 0, "DATA/tls/key.pem", "TLS private key (PEM)" },
	{ "store", OPT_STR, F(store_url), 0, "(embedded)", "store: empty for the embedded SQLite store" },
	{ "master-key-source", OPT_STR, F(master_key_source), 0, "file",
	  "where the master key lives: file, env ($CAREVAULT_MASTER_KEY, 64 hex digits) or pkcs11 (a token)" },
	{ "master-key", OPT_PATH, F(master_key_file), 0, "DATA/master.key", "the master key file (source file)" },
	{ "master-key-retired", OPT_PATH, F(master_key_retired), 0, "(none)",
	  "retired master key versions read with it (restoring backups older than a rotation)" },
	{ "pkcs11-module", OPT_PATH, F(pkcs11_module), 0, "(none)", "PKCS#11 module (source pkcs11), e.g. libsofthsm2.so" },
	{ "pkcs11-token", OPT_STR, F(pkcs11_token), 0, "(none)", "label of the token holding the master key" },
	{ "pkcs11-key-label", OPT_STR, F(pkcs11_key_label), 0, "carevault-master", "label of its key objects" },
	{ "pkcs11-pin-file", OPT_PATH, F(pkcs11_pin_file), 0, "$CAREVAULT_PKCS11_PIN",
	  "file (0600) holding the token's user PIN" },
	{ "public-url", OPT_ORIGIN, F(public_url), 0, "(from Host)",
	  "https://host[:port] clients use to reach this server (behind a proxy): the FHIR base, OAuth issuer and audience" },
	{ "threads", OPT_UINT, F(threads), 256, "cores", "HTTP worker threads" },
	{ "key-cache", OPT_UINT, F(key_cache), 1000000, "4096",
	  "most unwrapped data keys (one per patient) kept in memory; more are unwrapped again on use" },
	{ "max-body", OPT_SIZE, F(max_body), 1ull << 30, "16M", "largest request body" },
	{ "max-header", OPT_SIZE, F(max_header), 1u << 20, "16K", "largest total of request headers" },
	{ "max-url", OPT_SIZE, F(max_url), 1u << 20, "8K", "longest request target" },
	{ "max-connections", OPT_UINT, F(max_connections), 1000000, "4096", "most open connections" },
	{ "max-conn-per-ip", OPT_UINT, F(max_conn_per_ip), 1000000, "0", "most connections from one address (0: no limit)" },
	{ "idle-timeout", OPT_UINT, F(idle_timeout), 86400, "30", "seconds a silent connection is kept" },
	{ "request-timeout", OPT_UINT, F(request_timeout), 86400, "60", "seconds a request body may take" },
	{ "max-json-depth", OPT_UINT, F(max_json_depth), 1000, "64", "deepest JSON nesting accepted" },
	{ "history-max-count", OPT_UINT, F(history_max_count), 100000, "1000", "largest _count on history" },
	{ "search-default-count", OPT_UINT, F(search_default_count), 10000, "50", "search page size without _count" },
	{ "search-max-count", OPT_UINT, F(search_max_count), 10000, "1000", "largest _count on search" },
	{ "session-idle", OPT_UINT, F(session_idle), 86400, "900", "seconds a portal session may stay unused" },
	{ "session-absolute", OPT_UINT, F(session_absolute), 604800, "43200", "seconds a portal session lasts at most" },
	{ "access-token-life", OPT_UINT, F(access_token_life), 3600, "300", "seconds an OAuth access token lasts (1 to 3600)" },
	{ "break-glass-minutes", OPT_UINT, F(break_glass_minutes), 1440, "60",
	  "minutes a break-glass declaration lasts (1 to 1440)" },
	{ "log-level", OPT_LEVEL, F(log_level), 0, "info", "debug, info, warn or error" },
	{ "access-log", OPT_BOOL, F(access_log), 0, "true", "one JSON line per request" },
	{ "outbound-ca-file", OPT_PATH, F(outbound_ca_file), 0, "(system CAs)",
	  "CAs (PEM) trusted for outbound https (JWKS URLs, audit sinks, alert webhook)" },
	{ "audit-retention-days", OPT_UINT, F(audit_retention_days), 36500, "2192",
	  "audit records older than this (six years) are archived by carevault audit archive" },
	{ "audit-checkpoint-records", OPT_UINT, F(audit_checkpoint_records), 10000000, "1000",
	  "sign a checkpoint of the audit chain every N records" },
	{ "audit-checkpoint-seconds", OPT_UINT, F(audit_checkpoint_seconds), 86400, "60",
	  "or every T seconds (when there are new records)" },
	{ "audit-checkpoint-file", OPT_PATH, F(audit_checkpoint_file), 0, "DATA/audit-checkpoints.jsonl",
	  "file the signed checkpoints are appended to (keep a copy off this machine)" },
	{ "audit-checkpoint-syslog", OPT_BOOL, F(audit_checkpoint_syslog), 0, "false", "send checkpoints to syslog too" },
	{ "audit-checkpoint-url", OPT_STR, F(audit_checkpoint_url), 0, "(none)", "https URL checkpoints are POSTed to" },
	{ "alert-webhook-url", OPT_STR, F(alert_webhook_url), 0, "(none)", "https URL security alerts are POSTed to" },
	{ "alert-failed-logins", OPT_UINT, F(alert_failed_logins), 1000000, "10",
	  "alert on this many failed logins of one account in 15 minutes (0: off)" },
	{ "alert-patients-per-hour", OPT_UINT, F(alert_patients_per_hour), 100000000, "100",
	  "alert when one user reads this many distinct patients in an hour (0: off)" },
	{ "alert-resources-per-hour", OPT_UINT, F(alert_resources_per_hour), 1000000000, "10000",
	  "alert when one user or client receives this many resources in an hour: bulk export (0: off)" },
	{ "alert-denied-per-hour", OPT_UINT, F(alert_denied_per_hour), 1000000, "20",
	  "alert on this many refused accesses of one user in an hour: outside their relationships (0: off)" },
};

#undef F

void cv_config_defaults(cv_config_t *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	snprintf(cfg->data_dir, sizeof cfg->data_dir, "./data");
	snprintf(cfg->listen_addr, sizeof cfg->listen_addr, "127.0.0.1");
	cfg->listen_port = 8443;
	cfg->max_body = 16u << 20;
	cfg->max_header = 16u << 10;
	cfg->max_url = 8u << 10;
	cfg->max_connections = 4096;
	cfg->idle_timeout = 30;
	cfg->request_timeout = 60;
	cfg->max_json_depth = 64;
	cfg->history_max_count = 1000;
	cfg->search_default_count = 50;
	cfg->search_max_count = 1000;
	cfg->session_idle = 900;
	cfg->session_absolute = 43200;
	cfg->access_token_life = 300;
	cfg->break_glass_minutes = 60;
	cfg->audit_retention_days = 2192;
	cfg->audit_checkpoint_records = 1000;
	cfg->audit_checkpoint_seconds = 60;
	cfg->alert_failed_logins = 10;
	cfg->alert_patients_per_hour = 100;
	cfg->alert_resources_per_hour = 10000;
	cfg->alert_denied_per_hour = 20;
	cfg->log_level = CV_LOG_INFO;
	cfg->access_log = 1;
}

cv_rc cv_parse_size(const char *s, uint64_t max, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)s[0]))
		return CV_E_INVALID;
	errno = 0;
	char *end = NULL;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return CV_E_INVALID;
	unsigned shift = 0;
	if (*end == 'K' || *end == 'k')
		shift = 10;
	else if (*end == 'M' || *end == 'm')
		shift = 20;
	else if (*end == 'G' || *end == 'g')
		shift = 30;
	if (shift)
		end++;
	if (*end || (shift && v > (UINT64_MAX >> shift)))
		return CV_E_INVALID;
	v <<= shift;
	if (v > max)
		return CV_E_INVALID;
	*out = v;
	return CV_OK;
}

static cv_rc set_listen(cv_config_t *cfg, const char *v)
{
	const char *colon = strrchr(v, ':');
	if (!colon || colon == v || (size_t)(colon - v) >= sizeof cfg->listen_addr)
		return CV_E_INVALID;
	uint64_t port;
	if (cv_parse_size(colon + 1, 65535, &port) || port == 0)
		return CV_E_INVALID;
	const char *host = v;
	size_t hlen = (size_t)(colon - v);
	if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') {
		host++;
		hlen -= 2;
	}
	snprintf(cfg->listen_addr, sizeof cfg->listen_addr, "%.*s", (int)hlen, host);
	cfg->listen_port = (uint16_t)port;
	return CV_OK;
}

static cv_rc set_level(int *field, const char *v)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	for (int i = 0; i < 4; i++) {
		if (strcmp(v, names[i]) == 0) {
			*field = i;
			return CV_OK;
		}
	}
	return CV_E_INVALID;
}

static cv_rc set_bool(int *field, const char *v)
{
	if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on"))
		*field = 1;
	else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off"))
		*field = 0;
	else
		return CV_E_INVALID;
	return CV_OK;
}

/* "https://host[:port]": an origin, nothing after it. */
static cv_rc set_origin(char *field, size_t size, const char *v)
{
	const char *host = strncmp(v, "https://", 8) == 0 ? v + 8 : NULL;
	size_t n = host ? strlen(host) : 0;
	if (!host || n == 0 || n > 255 || strlen(v) >= size ||
	    strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != n)
		return CV_E_INVALID;
	snprintf(field, size, "%s", v);
	return CV_OK;
}

static cv_rc set_value(cv_config_t *cfg, const opt_t *o, const char *v)
{
	char *field = (char *)cfg + o->offset;
	uint64_t n;
	switch (o->kind) {
	case OPT_PATH:
	case OPT_STR:
		if (strlen(v) >= o->size || (o->kind == OPT_PATH && !v[0]))
			return CV_E_INVALID;
		snprintf(field, o->size, "%s", v);
		return CV_OK;
	case OPT_LISTEN:
		return set_listen(cfg, v);
	case OPT_UINT:
		if (cv_parse_size(v, o->max, &n))
			return CV_E_INVALID;
		*(unsigned *)(void *)field = (unsigned)n;
		return CV_OK;
	case OPT_SIZE:
		if (cv_parse_size(v, o->max, &n))
			return CV_E_INVALID;
		*(size_t *)(void *)field = (size_t)n;
		return CV_OK;
	case OPT_LEVEL:
		return set_level((int *)(void *)field, v);
	case OPT_BOOL:
		return set_bool((int *)(void *)field, v);
	case OPT_ORIGIN:
		return v[0] ? set_origin(field, o->size, v) : (field[0] = '\0', CV_OK);
	}
	return CV_E_INVALID;
}

cv_rc cv_config_set(cv_config_t *cfg, const char *name, const char *value, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
		if (strcmp(options[i].name, name) != 0)
			continue;
		if (set_value(cfg, &options[i], value) == CV_OK)
			return CV_OK;
		snprintf(err, errlen, "bad value for %s (expected %s)", name,
			 options[i].kind == OPT_LISTEN ? "ADDRESS:PORT" :
			 options[i].kind == OPT_LEVEL ? "debug, info, warn or error" :
			 options[i].kind == OPT_BOOL ? "true or false" :
			 options[i].kind == OPT_UINT || options[i].kind == OPT_SIZE ? "a number in range" :
			 options[i].kind == OPT_ORIGIN ? "https://host[:port], nothing after it" :
			 "a non-empty path");
		return CV_E_INVALID;
	}
	snprintf(err, errlen, "unknown option '%s' (see --help)", name);
	return CV_E_INVALID;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

cv_rc cv_config_load_file(cv_config_t *cfg, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "cannot read config file %s: %s", path, strerror(errno));
		return CV_E_IO;
	}
	cv_rc rc = CV_OK;
	char line[2048];
	int lineno = 0;
	while (!rc && fgets(line, sizeof line, f)) {
		lineno++;
		char *s = trim(line);
		if (!*s || *s == '#')
			continue;
		char *eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, errlen, "%s:%d: expected 'name = value'", path, lineno);
			rc = CV_E_INVALID;
			break;
		}
		*eq = '\0';
		char sub[512];
		rc = cv_config_set(cfg, trim(s), trim(eq + 1), sub, sizeof sub);
		if (rc)
			snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
	}
	fclose(f);
	if (!rc)
		snprintf(cfg->config_file, sizeof cfg->config_file, "%s", path);
	return rc;
}

/* The environment variable of an option: "max-body" → "CAREVAULT_MAX_BODY". */
static void env_name(const char *opt, char *var, size_t cap)
{
	size_t n = (size_t)snprintf(var, cap, "CAREVAULT_");
	for (const char *p = opt; *p && n < cap - 1; p++)
		var[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
	var[n] = '\0';
}

cv_rc cv_config_load_env(cv_config_t *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
		char var[64];
		env_name(options[i].name, var, sizeof var);
		const char *v = getenv(var);
		if (!v)
			continue;
		char sub[512];
		if (cv_config_set(cfg, options[i].name, v, sub, sizeof sub)) {
			snprintf(err, errlen, "%s: %s", var, sub);
			return CV_E_INVALID;
		}
	}
	return CV_OK;
}

void cv_config_finish(cv_config_t *cfg)
{
	if (!cfg->cert_file[0])
		snprintf(cfg->cert_file, sizeof cfg->cert_file, "%.1000s/tls/cert.pem", cfg->data_dir);
	if (!cfg->key_file[0])
		snprintf(cfg->key_file, sizeof cfg->key_file, "%.1000s/tls/key.pem", cfg->data_dir);
	if (!cfg->master_key_file[0])
		snprintf(cfg->master_key_file, sizeof cfg->master_key_file, "%.1000s/master.key", cfg->data_dir);
	if (!cfg->audit_checkpoint_file[0])
		snprintf(cfg->audit_checkpoint_file, sizeof cfg->audit_checkpoint_file, "%.900s/audit-checkpoints.jsonl",
			 cfg->data_dir);
	if (!cfg->threads) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->threads = n > 0 && n < 256 ? (unsigned)n : 2;
	}
}

void cv_config_print_help(FILE *out)
{
	fprintf(out, "Options (flag --NAME VALUE, environment CAREVAULT_NAME, or 'NAME = VALUE' in the config file):\n");
	for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
		char var[64];
		env_name(options[i].name, var, sizeof var);
		fprintf(out, "  --%-18s %-28s %s (default %s)\n", options[i].name, var, options[i].help, options[i].def);
	}
	fprintf(out, "  --config FILE        CAREVAULT_CONFIG             config file (default DATA/carevault.conf if present)\n");
}
