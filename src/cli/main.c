/*
 * main.c - the carevault command: init, serve, version.
 *
 * `init` makes a data directory (0700) with the master key, a development TLS
 * certificate, the store and the bootstrap administrator token; `serve` runs
 * the HTTPS server on it until SIGTERM/SIGINT, then drains and exits 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "auth/auth.h"
#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "crypto/crypto.h"
#include "fhir/fhir.h"
#include "model/model.h"
#include "net/admin.h"
#include "net/health.h"
#include "net/login.h"
#include "net/oauth.h"
#include "net/server.h"
#include "net/tls.h"
#include "net/authorize.h"
#include "auth/idkey.h"
#include "store/store.h"

#define ERRLEN 4096
#define DRAIN_GRACE_S 30

static const cv_route_t routes[] = {
	{ "GET", "/.well-known/smart-configuration", CV_ACT_AUTH_TOKEN, cv_oauth_smart_configuration },
	{ "GET", "/fhir/.well-known/smart-configuration", CV_ACT_AUTH_TOKEN, cv_oauth_smart_configuration },
	{ "GET", "/.well-known/openid-configuration", CV_ACT_AUTH_TOKEN, cv_oauth_openid_configuration },
	{ "GET", "/fhir/.well-known/openid-configuration", CV_ACT_AUTH_TOKEN, cv_oauth_openid_configuration },
	{ "GET", "/.well-known/oauth-authorization-server", CV_ACT_AUTH_TOKEN, cv_oauth_server_metadata },
	{ "GET", "/.well-known/oauth-authorization-server/fhir", CV_ACT_AUTH_TOKEN, cv_oauth_server_metadata },
	{ "GET", "/.well-known/jwks.json", CV_ACT_AUTH_TOKEN, cv_oauth_jwks },
	{ "POST", "/auth/token", CV_ACT_AUTH_TOKEN, cv_oauth_token },
	{ "POST", "/auth/introspect", CV_ACT_AUTH_TOKEN, cv_oauth_introspect },
	{ "POST", "/auth/revoke", CV_ACT_AUTH_TOKEN, cv_oauth_revoke },
	{ "GET", "/auth/authorize", CV_ACT_AUTH_TOKEN, cv_authorize_get },
	{ "POST", "/auth/authorize", CV_ACT_AUTH_TOKEN, cv_authorize_post },
	{ "GET", "/healthz", CV_ACT_PUBLIC_HEALTH, cv_health_live },
	{ "GET", "/readyz", CV_ACT_PUBLIC_HEALTH, cv_health_ready },
	{ "GET", "/fhir/metadata", CV_ACT_PUBLIC_META, cv_fhir_metadata },
	{ "GET", "/fhir/_history", CV_ACT_FHIR_HISTORY, cv_fhir_history_system },
	{ "POST", "/fhir", CV_ACT_FHIR_BUNDLE, cv_fhir_bundle },
	{ "GET", "/fhir/{type}/_history", CV_ACT_FHIR_HISTORY, cv_fhir_history_type },
	{ "GET", "/fhir/{type}", CV_ACT_FHIR_SEARCH, cv_fhir_search_type },
	{ "POST", "/fhir/{type}/_search", CV_ACT_FHIR_SEARCH, cv_fhir_search_type },
	{ "PUT", "/fhir/{type}", CV_ACT_FHIR_UPDATE, cv_fhir_update_conditional },
	{ "DELETE", "/fhir/{type}", CV_ACT_FHIR_DELETE, cv_fhir_delete_conditional },
	{ "POST", "/fhir/{type}", CV_ACT_FHIR_CREATE, cv_fhir_create },
	{ "GET", "/fhir/{type}/{id}/_history", CV_ACT_FHIR_HISTORY, cv_fhir_history_instance },
	{ "GET", "/fhir/{type}/{id}/$everything", CV_ACT_FHIR_SEARCH, cv_fhir_everything },
	{ "POST", "/fhir/{type}/{id}/$break-glass", CV_ACT_BREAK_GLASS, cv_fhir_break_glass },
	{ "GET", "/fhir/{type}/{id}/$access-report", CV_ACT_ACCESS_REPORT, cv_fhir_access_report },
	{ "GET", "/fhir/{type}/{id}/_history/{vid}", CV_ACT_FHIR_VREAD, cv_fhir_vread },
	{ "GET", "/fhir/{type}/{id}", CV_ACT_FHIR_READ, cv_fhir_read },
	{ "PUT", "/fhir/{type}/{id}", CV_ACT_FHIR_UPDATE, cv_fhir_update },
	{ "DELETE", "/fhir/{type}/{id}", CV_ACT_FHIR_DELETE, cv_fhir_delete },
	{ "POST", "/auth/login", CV_ACT_AUTH_LOGIN, cv_login },
	{ "GET", "/auth/session", CV_ACT_AUTH_SESSION, cv_login_session },
	{ "GET", "/auth/sessions", CV_ACT_AUTH_SESSION, cv_login_sessions },
	{ "POST", "/auth/logout", CV_ACT_AUTH_SESSION, cv_logout },
	{ "POST", "/auth/logout-all", CV_ACT_AUTH_SESSION, cv_logout_all },
	{ "GET", "/admin/users", CV_ACT_ADMIN_USERS, cv_admin_users_list },
	{ "POST", "/admin/users", CV_ACT_ADMIN_USERS, cv_admin_users_create },
	{ "GET", "/admin/users/{id}", CV_ACT_ADMIN_USERS, cv_admin_user_read },
	{ "POST", "/admin/users/{id}/{action}", CV_ACT_ADMIN_USERS, cv_admin_user_action },
	{ "GET", "/admin/clients", CV_ACT_ADMIN_CLIENTS, cv_admin_clients_list },
	{ "POST", "/admin/clients", CV_ACT_ADMIN_CLIENTS, cv_admin_clients_create },
	{ "GET", "/admin/clients/{id}", CV_ACT_ADMIN_CLIENTS, cv_admin_client_read },
	{ "POST", "/admin/clients/{id}/{action}", CV_ACT_ADMIN_CLIENTS, cv_admin_client_action },
	{ "GET", "/admin/erasures", CV_ACT_ADMIN_ERASURES, cv_admin_erasures_list },
	{ "POST", "/admin/erasures", CV_ACT_ADMIN_ERASURES, cv_admin_erasures_create },
	{ "GET", "/admin/erasures/{id}", CV_ACT_ADMIN_ERASURES, cv_admin_erasure_read },
	{ "POST", "/admin/erasures/{id}/{action}", CV_ACT_ADMIN_ERASURES, cv_admin_erasure_action },
};

static int fail(const char *what, const char *err)
{
	fprintf(stderr, "carevault: %s%s%s\n", what, err && err[0] ? ": " : "", err ? err : "");
	return 1;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: carevault <command> [options]\n\n"
		"commands:\n"
		"  init     create a data directory: master key, TLS certificate, store, bootstrap token\n"
		"  serve    serve the FHIR R4 API over HTTPS\n"
		"  import   load transaction Bundles or NDJSON files (resumable, with progress)\n"
		"  user     add, list, disable, enable user accounts; reset MFA; revoke sessions\n"
		"  client   register OAuth clients (backend services); list, disable, enable\n"
		"  audit    verify, export, archive the audit trail; sign a checkpoint\n"
		"  patient  erase a patient for good (crypto-shredding of their data keys)\n"
		"  keys     the keys' state; rotate the master key while serving\n"
		"  backup   an encrypted, authenticated backup, made while serving\n"
		"  restore  check a backup, restore it into a new data directory (erasures applied)\n"
		"  version  print the version\n"
		"  migrate-store  copy an embedded store into PostgreSQL (sealed data stays sealed)\n\n"
		"Run 'carevault <command> --help' for a command's options.\n");
}

static int is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/* ---- init ---------------------------------------------------------------- */

static void init_usage(FILE *out)
{
	fprintf(out,
		"usage: carevault init --data DIR [--cert FILE --key FILE] [--store URL] [--master-key-source S ...]\n\n"
		"Creates DIR (mode 0700, must not exist or be empty) with:\n"
		"  master.key        32 random bytes (0600): wraps the store's data keys. Back it up apart from the data.\n"
		"  tls/cert.pem      a self-signed ECDSA P-256 certificate for localhost, unless --cert/--key\n"
		"  tls/key.pem       its private key (0600); with --cert/--key, copies of the given files\n"
		"  store.db          the encrypted embedded store; with --store postgresql://... (or\n"
		"                    CAREVAULT_STORE) the store is that PostgreSQL database instead\n"
		"  bootstrap-token   the first administrator's bearer token (0600; the server keeps only its hash)\n"
		"  erasures          the erasure ledger (0600, empty): keep a copy with the master key\n"
		"The master key can live elsewhere (docs/OPERATIONS.md, \"Where the master key lives\"):\n"
		"  --master-key FILE                 another file instead of DIR/master.key\n"
		"  --master-key-source env           $CAREVAULT_MASTER_KEY (64 hex digits), set by you\n"
		"  --master-key-source pkcs11 --pkcs11-module SO --pkcs11-token LABEL [--pkcs11-pin-file FILE]\n"
		"                                    an AES-256 key made in the token, never leaving it\n"
		"Serve and every other command then take the same options (or CAREVAULT_* variables).\n");
}

static int dir_empty_or_absent(const char *dir, char *err, size_t errlen)
{
	if (mkdir(dir, 0700) == 0)
		return 1;
	if (errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return 0;
	}
	char probe[CV_PATH_MAX + 32];
	snprintf(probe, sizeof probe, "%s/master.key", dir);
	if (access(probe, F_OK) == 0) {
		snprintf(err, errlen, "%s is already initialised (it has a master.key)", dir);
		return 0;
	}
	return chmod(dir, 0700) == 0;
}

static cv_rc copy_file(const char *from, const char *to, mode_t mode, char *err, size_t errlen)
{
	char *pem = NULL;
	cv_rc rc = cv_tls_read_pem(from, 0, &pem, err, errlen);
	if (rc)
		return rc;
	int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	size_t len = strlen(pem);
	if (fd < 0 || write(fd, pem, len) != (ssize_t)len || fsync(fd) != 0) {
		snprintf(err, errlen, "cannot write %s", to);
		rc = CV_E_IO;
	}
	if (fd >= 0)
		close(fd);
	cv_crypto_wipe(pem, len);
	free(pem);
	return rc;
}

cv_rc cv_cli_init_tls(const char *dir, const char *cert, const char *key, char *err, size_t errlen)
{
	char tls[CV_PATH_MAX + 8], cpath[CV_PATH_MAX + 32], kpath[CV_PATH_MAX + 32];
	snprintf(tls, sizeof tls, "%s/tls", dir);
	snprintf(cpath, sizeof cpath, "%s/cert.pem", tls);
	snprintf(kpath, sizeof kpath, "%s/key.pem", tls);
	if (mkdir(tls, 0700) != 0) {
		snprintf(err, errlen, "cannot create %s: %s", tls, strerror(errno));
		return CV_E_IO;
	}
	if (!cert)
		return cv_tls_generate_dev_cert(cpath, kpath, err, errlen);
	cv_rc rc = copy_file(cert, cpath, 0644, err, errlen);
	return rc ? rc : copy_file(key, kpath, 0600, err, errlen);
}

static cv_rc write_token(const char *dir, const char *token, char *err, size_t errlen)
{
	char path[CV_PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/bootstrap-token", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	size_t len = strlen(token);
	int ok = fd >= 0 && write(fd, token, len) == (ssize_t)len && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	if (!ok) {
		snprintf(err, errlen, "cannot write %s", path);
		return CV_E_IO;
	}
	return CV_OK;
}

static cv_rc init_store(const cv_config_t *cfg, char *err, size_t errlen)
{
	char token[CV_TOKEN_MAX];
	cv_key_t *master = NULL;
	cv_store_t *s = NULL;
	cv_master_cfg_t mc;
	cv_cli_master_cfg(cfg, &mc);
	cv_rc rc = cv_master_create(&mc, err, errlen);
	if (!rc)
		rc = cv_master_load(&mc, &master, err, errlen);
	if (!rc)
		rc = cv_store_open(cfg->data_dir, cfg->store_url, 1, master, &s, err, errlen);
	if (!rc) {
		rc = cv_auth_bootstrap_create(s, token, sizeof token);
		if (rc)
			snprintf(err, errlen, "cannot store the bootstrap credential: %s", cv_rc_str(rc));
	}
	if (!rc)
		rc = write_token(cfg->data_dir, token, err, errlen);
	cv_crypto_wipe(token, sizeof token);
	cv_store_close(s);
	cv_key_free(master);
	return rc;
}

/* Removes what a failed init created (only the files init makes), so that
 * running it again after fixing the cause works. */
static void init_undo(const char *dir)
{
	static const char *const made[] = { "bootstrap-token", "erasures", "store.db", "store.db-wal", "store.db-shm",
					    "tls/cert.pem", "tls/key.pem", "tls", "master.key" };
	char path[CV_PATH_MAX + 32];
	for (size_t i = 0; i < sizeof made / sizeof made[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, made[i]);
		if (unlink(path) != 0)
			rmdir(path);
	}
	rmdir(dir); /* only if empty: it may have existed before */
}

/* The master key options init takes (as serve does). */
static int master_option(const char *a)
{
	static const char *const names[] = { "--master-key-source", "--master-key", "--pkcs11-module", "--pkcs11-token",
					     "--pkcs11-key-label", "--pkcs11-pin-file" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (strcmp(a, names[i]) == 0)
			return 1;
	return 0;
}

static int cmd_init(int argc, char **argv)
{
	const char *dir = NULL, *cert = NULL, *key = NULL, *store = getenv("CAREVAULT_STORE");
	char err[ERRLEN] = "";
	cv_config_t cfg;
	cv_config_defaults(&cfg);
	if (cv_config_load_env(&cfg, err, sizeof err))
		return fail("init", err);
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			init_usage(stdout);
			return 0;
		}
		const char **slot = strcmp(argv[i], "--data") == 0 ? &dir : strcmp(argv[i], "--cert") == 0 ? &cert
				  : strcmp(argv[i], "--key") == 0 ? &key : strcmp(argv[i], "--store") == 0 ? &store : NULL;
		if (i + 1 < argc && master_option(argv[i])) {
			if (cv_config_set(&cfg, argv[i] + 2, argv[i + 1], err, sizeof err))
				return fail("init", err);
			i++;
			continue;
		}
		if (!slot || i + 1 >= argc) {
			init_usage(stderr);
			return 2;
		}
		*slot = argv[++i];
	}
	if (!dir || !!cert != !!key) {
		init_usage(stderr);
		return 2;
	}
	if (strlen(dir) > CV_PATH_MAX - 64)
		return fail("init", "the data directory path is too long");
	if (cv_config_set(&cfg, "data", dir, err, sizeof err) || (store && cv_config_set(&cfg, "store", store, err, sizeof err)))
		return fail("init", err);
	cv_config_finish(&cfg);
	cv_rc rc = cv_crypto_init(err, sizeof err);
	if (!rc && !dir_empty_or_absent(dir, err, sizeof err))
		return fail("init failed", err);
	if (!rc)
		rc = cv_cli_init_tls(dir, cert, key, err, sizeof err);
	if (!rc)
		rc = cv_ledger_create(dir, err, sizeof err);
	if (!rc)
		rc = init_store(&cfg, err, sizeof err);
	if (rc) {
		init_undo(dir);
		return fail("init failed", err);
	}
	printf("initialised %s\n"
	       "  a bootstrap bearer token is in %s/bootstrap-token (keep it secret; it stops working\n"
	       "  when the first administrator account is made with carevault user add --role admin)\n"
	       "  serve with: carevault serve --data %s\n", dir, dir, dir);
	return 0;
}

/* ---- serve --------------------------------------------------------------- */

static void serve_usage(FILE *out)
{
	fprintf(out, "usage: carevault serve [--data DIR] [--listen ADDR:PORT] [--config FILE] [--OPTION VALUE]...\n\n"
		     "Serves the FHIR R4 API at https://ADDR:PORT/fhir until SIGTERM or SIGINT, then lets\n"
		     "requests in flight finish and exits 0. Later sources win: defaults, the config file,\n"
		     "the environment, flags.\n\n");
	cv_config_print_help(out);
}

/* Config file path: --config, CAREVAULT_CONFIG, or DATA/carevault.conf when present. */
static cv_rc load_config_file(cv_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
	const char *path = getenv("CAREVAULT_CONFIG");
	char def[CV_PATH_MAX + 32];
	for (int i = 1; i + 1 < argc; i++) {
		if (strcmp(argv[i], "--config") == 0)
			path = argv[i + 1];
		if (strcmp(argv[i], "--data") == 0)
			cv_config_set(cfg, "data", argv[i + 1], err, errlen);
	}
	if (!path) {
		snprintf(def, sizeof def, "%s/carevault.conf", cfg->data_dir);
		if (access(def, F_OK) != 0)
			return CV_OK;
		path = def;
	}
	return cv_config_load_file(cfg, path, err, errlen);
}

static cv_rc load_config(cv_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
	cv_config_defaults(cfg);
	cv_rc rc = load_config_file(cfg, argc, argv, err, errlen);
	if (!rc)
		rc = cv_config_load_env(cfg, err, errlen);
	for (int i = 1; !rc && i < argc; i += 2) {
		if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) {
			snprintf(err, errlen, "expected --OPTION VALUE at '%s' (see carevault serve --help)", argv[i]);
			return CV_E_INVALID;
		}
		if (strcmp(argv[i], "--config") != 0)
			rc = cv_config_set(cfg, argv[i] + 2, argv[i + 1], err, errlen);
	}
	if (!rc)
		cv_config_finish(cfg);
	return rc;
}

static cv_rc check_data_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		snprintf(err, errlen, "data directory %s: %s (create it with carevault init --data %s)", dir,
			 strerror(errno), dir);
		return CV_E_IO;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is not a directory", dir);
		return CV_E_INVALID;
	}
	if (st.st_mode & 077) {
		snprintf(err, errlen, "data directory %s is open to group or others: run chmod 700 %s", dir, dir);
		return CV_E_DENIED;
	}
	char marker[CV_PATH_MAX + 64];
	snprintf(marker, sizeof marker, "%s/%s", dir, CV_RESTORE_MARKER);
	if (access(marker, F_OK) == 0) { /* erasures may not be applied yet: never serve it */
		snprintf(err, errlen, "%s holds an unfinished restore: remove the directory and run carevault restore again",
			 dir);
		return CV_E_CONFLICT;
	}
	return CV_OK;
}

typedef struct app {
	cv_key_t *master;
	cv_model_t *model;
	cv_store_t *store;
	cv_auth_t *auth;
	cv_fhir_t fhir;
	int fhir_ready;
	cv_audit_t *audit;
	cv_server_t *srv;
	const cv_config_t *cfg;
} app_t;

/* The audit trail's settings from the configuration. */
static cv_audit_config_t audit_config(const cv_config_t *cfg)
{
	return (cv_audit_config_t){ .checkpoint_records = cfg->audit_checkpoint_records ? cfg->audit_checkpoint_records : 1,
				    .checkpoint_seconds = cfg->audit_checkpoint_seconds ? cfg->audit_checkpoint_seconds : 1,
				    .checkpoint_file = cfg->audit_checkpoint_file,
				    .checkpoint_syslog = cfg->audit_checkpoint_syslog,
				    .checkpoint_url = cfg->audit_checkpoint_url, .webhook_url = cfg->alert_webhook_url,
				    .ca_file = cfg->outbound_ca_file, .alert_failed_logins = cfg->alert_failed_logins,
				    .alert_patients_per_hour = cfg->alert_patients_per_hour,
				    .alert_resources_per_hour = cfg->alert_resources_per_hour,
				    .alert_denied_per_hour = cfg->alert_denied_per_hour };
}

/* An application event of the server itself (start, stop) in the trail,
 * with a digest of the configuration in effect: a change between two
 * starts shows as a different digest. */
static cv_rc app_event(cv_store_t *s, const cv_config_t *cfg, const char *subtype)
{
	uint8_t digest[32];
	char hex[65], detail[160];
	cv_crypto_sha256(cfg, sizeof *cfg, digest); /* the struct is zeroed before it is filled: stable bytes */
	cv_crypto_hex(digest, sizeof digest, hex);
	snprintf(detail, sizeof detail, "carevault %s, configuration sha256:%.16s", CV_VERSION, hex);
	cv_audit_event_t e = { .type = CV_AUDIT_APPLICATION, .subtype = subtype, .action = 'E',
			       .flags = CV_AUDIT_F_SECURITY, .agent = "carevault", .agent_kind = "operator",
			       .detail = detail };
	return cv_audit_record(s, &e);
}

static cv_rc app_open(app_t *a, const cv_config_t *cfg, char *err, size_t errlen)
{
	a->cfg = cfg;
	cv_rc rc = check_data_dir(cfg->data_dir, err, errlen);
	if (!rc)
		rc = cv_crypto_init(err, errlen);
	if (!rc)
		rc = cv_cli_master_load(cfg, &a->master, err, errlen);
	if (!rc && (rc = cv_model_new(&a->model)))
		snprintf(err, errlen, "cannot load the FHIR model: %s", cv_rc_str(rc));
	cv_store_set_key_cache(cfg->key_cache ? cfg->key_cache : CV_STORE_KEY_CACHE);
	if (!rc)
		rc = cv_store_open(cfg->data_dir, cfg->store_url, cfg->threads * 2, a->master, &a->store, err, errlen);
	if (!rc && (rc = cv_auth_new(a->store, &a->auth)))
		snprintf(err, errlen, "cannot load credentials: %s", cv_rc_str(rc));
	if (!rc)
		cv_auth_session_limits(a->auth, cfg->session_idle, cfg->session_absolute);
	if (!rc && (rc = cv_fhir_init(&a->fhir, a->store, a->model, cfg)))
		snprintf(err, errlen, "cannot build the capability statement: %s", cv_rc_str(rc));
	a->fhir_ready = !rc;
	if (!rc && (rc = cv_idkey_load(a->store, &a->fhir.idkey)))
		snprintf(err, errlen, "cannot load the id-token signing key: %s", cv_rc_str(rc));
	if (!rc && (rc = cv_fhir_reindex(&a->fhir, NULL, NULL)))
		snprintf(err, errlen, "cannot bring the search index up to date: %s", cv_rc_str(rc));
	cv_audit_config_t acfg = audit_config(cfg);
	if (!rc)
		rc = cv_audit_new(a->store, a->master, &acfg, &a->audit, err, errlen);
	if (!rc && (rc = app_event(a->store, cfg, "start")))
		snprintf(err, errlen, "cannot write to the audit trail: %s", cv_rc_str(rc));
	if (!rc && (rc = cv_audit_start(a->audit)))
		snprintf(err, errlen, "cannot start the audit trail's work: %s", cv_rc_str(rc));
	a->fhir.audit = a->audit;
	if (!rc)
		rc = cv_server_start(cfg, routes, sizeof routes / sizeof routes[0], &a->fhir, a->auth, &a->srv,
				     err, errlen);
	return rc;
}

static void app_close(app_t *a)
{
	cv_server_stop(a->srv, DRAIN_GRACE_S);
	if (a->audit && app_event(a->store, a->cfg, "stop"))
		cv_log_msg(CV_LOG_WARN, "audit", "the stop could not be recorded");
	cv_audit_free(a->audit);
	if (a->fhir_ready) {
		cv_idkey_free(a->fhir.idkey);
		cv_fhir_release(&a->fhir);
	}
	cv_auth_free(a->auth);
	cv_store_close(a->store);
	cv_model_free(a->model);
	cv_key_free(a->master);
}

static int cmd_serve(int argc, char **argv)
{
	cv_config_t cfg;
	char err[ERRLEN] = "";
	app_t a = { 0 };
	for (int i = 1; i < argc; i++)
		if (is_help(argv[i])) {
			serve_usage(stdout);
			return 0;
		}
	if (load_config(&cfg, argc, argv, err, sizeof err))
		return fail("configuration", err);
	cv_log_set_level((cv_log_level)cfg.log_level);
	/* block the stop signals before any thread starts, then wait for them here */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (app_open(&a, &cfg, err, sizeof err)) {
		app_close(&a);
		return fail("cannot serve", err);
	}
	/* loading the FHIR model parses a large JSON blob and frees it: give
	 * that memory back to the system before serving */
	malloc_trim(0);
	char port[8];
	snprintf(port, sizeof port, "%u", cfg.listen_port);
	cv_log(CV_LOG_INFO, "listening", (cv_log_field_t[]){ CV_LS("addr", cfg.listen_addr), CV_LS("port", port),
		CV_LS("base", "/fhir"), CV_LI("threads", cfg.threads) }, 4);
	int sig = 0;
	sigwait(&stop, &sig);
	cv_log(CV_LOG_INFO, "stopping", (cv_log_field_t[]){ CV_LI("signal", sig),
		CV_LI("in_flight", cv_server_active(a.srv)) }, 2);
	app_close(&a);
	cv_log_msg(CV_LOG_INFO, "stopped", "drained");
	return 0;
}

/* ---- migrate-store ------------------------------------------------------- */

static void migrate_usage(FILE *out)
{
	fprintf(out, "usage: carevault migrate-store --from DIR --to postgresql://USER@HOST/DB\n\n"
		     "Copies the embedded store of data directory DIR into an empty PostgreSQL database,\n"
		     "byte for byte: bodies stay sealed and the wrapped keys are copied, so DIR's master.key\n"
		     "opens the copy and the database never sees plaintext. Then verifies counts and a\n"
		     "SHA-256 over every version. Stop the server first. The password comes from\n"
		     "PGPASSWORD or ~/.pgpass, never the URL. Afterwards serve with --store URL.\n");
}

static void show_progress(void *arg, uint64_t done, uint64_t total)
{
	unsigned pct = total ? (unsigned)(done * 100 / total) : 100;
	char bar[41];
	memset(bar, '#', pct * 40 / 100);
	memset(bar + pct * 40 / 100, '.', 40 - pct * 40 / 100);
	bar[40] = '\0';
	fprintf(stderr, "\rcopying [%s] %3u%% %llu/%llu versions", bar, pct, (unsigned long long)done,
		(unsigned long long)total);
	if (done >= total)
		fputc('\n', stderr);
}

static int cmd_migrate(int argc, char **argv)
{
	const char *from = NULL, *to = NULL;
	char err[ERRLEN] = "";
	for (int i = 1; i < argc; i++) {
		if (is_help(argv[i])) {
			migrate_usage(stdout);
			return 0;
		}
		const char **slot = strcmp(argv[i], "--from") == 0 ? &from : strcmp(argv[i], "--to") == 0 ? &to : NULL;
		if (!slot || i + 1 >= argc) {
			migrate_usage(stderr);
			return 2;
		}
		*slot = argv[++i];
	}
	if (!from || !to) {
		migrate_usage(stderr);
		return 2;
	}
	if (check_data_dir(from, err, sizeof err))
		return fail("migrate-store", err);
	if (cv_store_copy(from, to, show_progress, NULL, err, sizeof err))
		return fail("migrate-store failed", err);
	printf("%s\n", err);
	return 0;
}

/* No core dump, ever: it would hold unwrapped keys and PHI. The process is
 * made non-dumpable (no core, no ptrace by the same user, /proc/PID/mem and
 * environ root-only) and its core size limit 0, before any key is loaded. */
static void no_core_dumps(void)
{
	struct rlimit none = { 0, 0 };
	if (setrlimit(RLIMIT_CORE, &none) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
		fprintf(stderr, "carevault: cannot disable core dumps: refusing to run\n");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	umask(077);
	no_core_dumps();
	if (argc < 2 || is_help(argv[1])) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "init") == 0)
		return cmd_init(argc - 1, argv + 1);
	if (strcmp(argv[1], "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	if (strcmp(argv[1], "migrate-store") == 0)
		return cmd_migrate(argc - 1, argv + 1);
	if (strcmp(argv[1], "import") == 0)
		return cv_cli_import(argc - 1, argv + 1);
	if (strcmp(argv[1], "user") == 0)
		return cv_cli_user(argc - 1, argv + 1);
	if (strcmp(argv[1], "client") == 0)
		return cv_cli_client(argc - 1, argv + 1);
	if (strcmp(argv[1], "audit") == 0)
		return cv_cli_audit(argc - 1, argv + 1);
	if (strcmp(argv[1], "patient") == 0)
		return cv_cli_patient(argc - 1, argv + 1);
	if (strcmp(argv[1], "keys") == 0)
		return cv_cli_keys(argc - 1, argv + 1);
	if (strcmp(argv[1], "backup") == 0)
		return cv_cli_backup(argc - 1, argv + 1);
	if (strcmp(argv[1], "restore") == 0)
		return cv_cli_restore(argc - 1, argv + 1);
	if (strcmp(argv[1], "version") == 0) {
		if (argc > 2 && is_help(argv[2])) {
			printf("usage: carevault version\n\nPrints the version.\n");
			return 0;
		}
		printf("carevault %s (FHIR 4.0.1)\n", CV_VERSION);
		return 0;
	}
	usage(stderr);
	return 2;
}
