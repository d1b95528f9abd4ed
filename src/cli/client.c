/*
 * client.c - `carevault client`: register OAuth clients and list, disable or
 * enable them (auth/client): backend services (SMART Backend Services,
 * client_credentials with a private_key_jwt assertion) with system/ scopes
 * on every type, and public or confidential SMART apps with their redirect
 * URIs (a confidential client's secret is printed once). A backend client
 * with all of cruds is how scripts and imports reach the API with a token of
 * its own.
 */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/client.h"
#include "core/log.h"

#define JWKS_FILE_MAX CV_CLIENT_JWKS_MAX

typedef struct client_cmd {
	cv_config_t cfg;
	const char *verb;
	const char *name, *type, *scope, *jwks_file, *jwks_url, *id;
	const char *redirects[CV_CLIENT_REDIRECTS];
	size_t nredirects;
	cv_key_t *master;
	cv_store_t *store;
} client_cmd_t;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: carevault client add --data DIR --name NAME --type backend --jwks-file FILE --scope \"SCOPES\"\n"
		"       carevault client add --data DIR --name NAME --type backend --jwks-url URL --scope \"SCOPES\"\n"
		"       carevault client add --data DIR --name NAME --type public|confidential --redirect-uri URI\n"
		"                            [--redirect-uri URI]... --scope \"SCOPES\"\n"
		"       carevault client list --data DIR\n"
		"       carevault client disable|enable --data DIR --id CLIENT_ID\n\n"
		"A backend client (SMART Backend Services) gets tokens from POST /auth/token with\n"
		"grant_type=client_credentials and a JWT assertion signed (RS384 or ES384) by a key of its\n"
		"JWKS file (public keys only), or of the JWKS at an https:// URL: fetched now (it must hold\n"
		"a usable key) and again when an assertion names a key it does not have, at most once every\n"
		"5 minutes (key rotation); no redirect is followed, and the server's certificate is checked\n"
		"against the system CAs or those of --outbound-ca-file. Its scopes are system/ ones only,\n"
		"SMART v2 (system/*.cruds, system/*.rs) or v1 (system/*.read, system/*.write, system/*.*).\n"
		"A public or confidential client (a SMART app) needs at least one exact redirect URI\n"
		"(https://, or http://localhost; no fragment), at most %d. Its scopes are patient/ or user/\n"
		"ones and named ones (launch/patient openid fhirUser offline_access ...), never system/ ones.\n"
		"Prints client_id: <id>, and for a confidential client client_secret: <secret>, shown this\n"
		"once (only its hash is kept).\n"
		"disable stops the client's tokens at once.\n"
		"Every command takes --store URL, --config FILE and --outbound-ca-file FILE as serve does.\n",
		CV_CLIENT_REDIRECTS);
}

static int bad(const char *msg)
{
	fprintf(stderr, "carevault client: %s\n", msg);
	return 2;
}

static const char **slot_of(client_cmd_t *c, const char *a)
{
	return strcmp(a, "--name") == 0	     ? &c->name
	       : strcmp(a, "--type") == 0      ? &c->type
	       : strcmp(a, "--scope") == 0     ? &c->scope
	       : strcmp(a, "--jwks-file") == 0 ? &c->jwks_file
	       : strcmp(a, "--jwks-url") == 0  ? &c->jwks_url
	       : strcmp(a, "--id") == 0	     ? &c->id
					       : NULL;
}

static int parse_args(client_cmd_t *c, int argc, char **argv, char *err, size_t errlen)
{
	cv_config_defaults(&c->cfg);
	if (cv_config_load_env(&c->cfg, err, errlen))
		return -1;
	for (int i = 2; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char **slot = slot_of(c, a);
		if (!v) {
			snprintf(err, errlen, "%s needs a value (see carevault client --help)", a);
			return -1;
		} else if (slot) {
			*slot = v;
		} else if (strcmp(a, "--redirect-uri") == 0) {
			if (c->nredirects == CV_CLIENT_REDIRECTS) {
				snprintf(err, errlen, "at most %d --redirect-uri", CV_CLIENT_REDIRECTS);
				return -1;
			}
			c->redirects[c->nredirects++] = v;
		} else if (strncmp(a, "--", 2) == 0) { /* --data, --store, --config, --outbound-ca-file, the master key's */
			if (strcmp(a, "--config") == 0 ? cv_config_load_file(&c->cfg, v, err, errlen)
						       : cv_config_set(&c->cfg, a + 2, v, err, errlen))
				return -1;
		} else {
			snprintf(err, errlen, "unknown option %s (see carevault client --help)", a);
			return -1;
		}
	}
	cv_config_finish(&c->cfg);
	return 0;
}

/* Reads the JWKS file (at most JWKS_FILE_MAX bytes) into a heap string. */
static char *read_jwks(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *buf = f ? malloc(JWKS_FILE_MAX + 1) : NULL;
	size_t n = buf ? fread(buf, 1, JWKS_FILE_MAX + 1, f) : 0;
	if (f)
		fclose(f);
	if (!buf || n > JWKS_FILE_MAX) {
		snprintf(err, errlen, "cannot read %s (or it is over %u bytes)", path, JWKS_FILE_MAX);
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static int cmd_add(client_cmd_t *c, char *err, size_t errlen)
{
	char secret[CV_CLIENT_SECRET_MAX];
	cv_client_t cl;
	if (!c->name || !c->type || !c->scope) {
		snprintf(err, errlen, "--name, --type and --scope are required");
		return -1;
	}
	if (c->jwks_url && c->jwks_file) {
		snprintf(err, errlen, "give --jwks-file or --jwks-url, not both");
		return -1;
	}
	char *jwks = c->jwks_file ? read_jwks(c->jwks_file, err, errlen) : NULL;
	if (c->jwks_file && !jwks)
		return -1;
	int ret = -1;
	cv_cli_change_t ch; /* the client and its record commit together */
	cv_rc rc = CV_E_INTERNAL;
	if (!cv_cli_open_store(&c->cfg, 1, &c->master, &c->store, err, errlen)) {
		cv_cli_change_begin(&ch, "client-created", 'C', CV_CLIENT_TYPE, NULL);
		rc = cv_client_create(c->store,
				      &(cv_client_new_t){ .name = c->name, .type = c->type, .redirects = c->redirects,
							  .nredirects = c->nredirects, .scope = c->scope, .jwks = jwks,
							  .jwks_url = c->jwks_url, .ca_file = c->cfg.outbound_ca_file },
				      &cl, secret, err, errlen);
		cv_cli_change_end(&ch, c->store, rc == CV_OK, rc ? NULL : cl.id);
	}
	if (!rc) {
		printf("client_id: %s\n", cl.id);
		if (secret[0])
			printf("client_secret: %s\n", secret);
		cv_client_release(&cl);
		ret = 0;
	}
	free(jwks);
	return ret;
}

static cv_rc list_one(void *arg, const cv_client_t *cl)
{
	(void)arg;
	printf("%s  %-24s %-12s %-8s %s\n", cl->id, cl->name, cv_client_type_name(cl->type),
	       cl->disabled ? "disabled" : "enabled", cl->scope);
	return CV_OK;
}

static int cmd_list(client_cmd_t *c, char *err, size_t errlen)
{
	if (cv_cli_open_store(&c->cfg, 1, &c->master, &c->store, err, errlen))
		return -1;
	cv_rc rc = cv_client_each(c->store, list_one, NULL);
	if (rc)
		snprintf(err, errlen, "cannot list the clients: %s", cv_rc_str(rc));
	return rc ? -1 : 0;
}

static int cmd_switch(client_cmd_t *c, char *err, size_t errlen)
{
	if (!c->id) {
		snprintf(err, errlen, "--id CLIENT_ID is required");
		return -1;
	}
	if (cv_cli_open_store(&c->cfg, 1, &c->master, &c->store, err, errlen))
		return -1;
	char subtype[40];
	snprintf(subtype, sizeof subtype, "client-%.30s", c->verb);
	cv_cli_change_t ch;
	cv_cli_change_begin(&ch, subtype, 'U', CV_CLIENT_TYPE, c->id);
	cv_rc rc = cv_client_set_disabled(c->store, c->id, strcmp(c->verb, "disable") == 0);
	cv_cli_change_end(&ch, c->store, rc == CV_OK, c->id);
	if (rc)
		snprintf(err, errlen, rc == CV_E_NOTFOUND ? "no such client" : "cannot update the client: %s",
			 cv_rc_str(rc));
	else
		printf("%s: done\n", c->verb);
	return rc ? -1 : 0;
}

int cv_cli_client(int argc, char **argv)
{
	static const char *const verbs[] = { "add", "list", "disable", "enable" };
	client_cmd_t c;
	char err[512] = "";
	memset(&c, 0, sizeof c);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if (strcmp(argv[1], verbs[i]) == 0)
			c.verb = verbs[i];
	if (!c.verb)
		return bad("unknown command (add, list, disable, enable)");
	if (parse_args(&c, argc, argv, err, sizeof err))
		return bad(err);
	cv_log_set_level(CV_LOG_WARN);
	int ret = strcmp(c.verb, "add") == 0	? cmd_add(&c, err, sizeof err)
		  : strcmp(c.verb, "list") == 0 ? cmd_list(&c, err, sizeof err)
						: cmd_switch(&c, err, sizeof err);
	cv_store_close(c.store);
	cv_key_free(c.master);
	if (ret) {
		fprintf(stderr, "carevault client %s: %s\n", c.verb, err);
		return 1;
	}
	return 0;
}
