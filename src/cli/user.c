/*
 * user.c - `carevault user`: add, list, disable, enable, reset-mfa and
 * revoke-sessions for the accounts of a data directory (auth/account).
 *
 * The password comes on standard input only (--password-stdin), never on
 * the command line where `ps` and shell history would keep it. For staff
 * roles (and patients given --mfa) a TOTP seed is made at once: the
 * otpauth:// URI and ten recovery codes are printed once, for the
 * administrator to hand over (with --qr FILE, the URI as a QR code in SVG).
 */
#define _GNU_SOURCE
#include "cli/cli.h"

#include <fcntl.h>
#include <sodium.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/account.h"
#include "auth/totp.h"
#include "auth/users.h"
#include "core/config.h"
#include "core/log.h"
#include "crypto/crypto.h"
#include "store/store.h"

#define PASSWORD_INPUT_MAX 1024

typedef struct user_cmd {
	cv_config_t cfg;
	const char *verb;
	const char *username;
	const char *role;
	const char *patient;
	const char *practitioner;
	const char *qr_file;
	int password_stdin;
	int mfa;
	int all;                  /* revoke-sessions --all */
	cv_key_t *master;
	cv_store_t *store;
} user_cmd_t;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: carevault user add --data DIR --username NAME --role ROLE\n"
		"                          [--patient ID | --practitioner ID] --password-stdin [--mfa] [--qr FILE]\n"
		"       carevault user list --data DIR\n"
		"       carevault user disable|enable|reset-mfa|revoke-sessions --data DIR --username NAME\n"
		"       carevault user revoke-sessions --data DIR --all\n\n"
		"Roles: patient (linked to its Patient), nurse and doctor (linked to their Practitioner),\n"
		"admin, billing, auditor, researcher (optionally linked to a Practitioner).\n"
		"The password is read from standard input (one line): at least 12 characters, not a common\n"
		"or breached password, not containing the user name. Staff accounts always get TOTP MFA\n"
		"(patients with --mfa): the otpauth:// URI and ten recovery codes are printed once.\n"
		"disable stops the user's sessions and tokens at once; enable lets them log in again;\n"
		"reset-mfa makes a new TOTP seed and recovery codes; revoke-sessions ends every session\n"
		"and token of the user, or with --all of every user (incident response: everyone signs in\n"
		"again). Every command takes --store URL, --config FILE and the master key options as serve\n"
		"does.\n");
}

static int bad(const char *msg)
{
	fprintf(stderr, "carevault user: %s\n", msg);
	return 2;
}

static int parse_args(user_cmd_t *u, int argc, char **argv, char *err, size_t errlen)
{
	cv_config_defaults(&u->cfg);
	if (cv_config_load_env(&u->cfg, err, errlen))
		return -1;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char **slot = strcmp(a, "--username") == 0	 ? &u->username
				    : strcmp(a, "--role") == 0		 ? &u->role
				    : strcmp(a, "--patient") == 0	 ? &u->patient
				    : strcmp(a, "--practitioner") == 0 ? &u->practitioner
				    : strcmp(a, "--qr") == 0		 ? &u->qr_file
									 : NULL;
		if (strcmp(a, "--password-stdin") == 0) {
			u->password_stdin = 1;
		} else if (strcmp(a, "--mfa") == 0) {
			u->mfa = 1;
		} else if (strcmp(a, "--all") == 0) {
			u->all = 1;
		} else if (slot && v) {
			*slot = v;
			i++;
		} else if (strncmp(a, "--", 2) == 0 && v) { /* --data, --store, --config, the master key options */
			cv_rc rc = strcmp(a, "--config") == 0 ? cv_config_load_file(&u->cfg, v, err, errlen)
							       : cv_config_set(&u->cfg, a + 2, v, err, errlen);
			if (rc)
				return -1;
			i++;
		} else {
			snprintf(err, errlen, "unknown option or missing value: %s (see carevault user --help)", a);
			return -1;
		}
	}
	cv_config_finish(&u->cfg);
	if (!u->cfg.data_dir[0]) {
		snprintf(err, errlen, "--data DIR is required");
		return -1;
	}
	if (u->all && strcmp(u->verb, "revoke-sessions") != 0) {
		snprintf(err, errlen, "--all goes with revoke-sessions only");
		return -1;
	}
	if (strcmp(u->verb, "list") != 0 && !u->username && !u->all) {
		snprintf(err, errlen, "--username NAME is required");
		return -1;
	}
	return 0;
}

static int open_store(user_cmd_t *u, char *err, size_t errlen)
{
	return cv_cli_open_store(&u->cfg, 1, &u->master, &u->store, err, errlen);
}

/* Reads one line (the password) from stdin into out; strips the line end. */
static int read_password(char *out, size_t cap)
{
	size_t n = 0;
	int c;
	while (n + 1 < cap && (c = fgetc(stdin)) != EOF && c != '\n')
		out[n++] = (char)c;
	if (n + 1 >= cap)
		return -1;
	if (n && out[n - 1] == '\r')
		n--;
	out[n] = '\0';
	return 0;
}

/* The link from --patient / --practitioner: "Type/id". */
static int make_link(user_cmd_t *u, char *link, size_t cap, char *err, size_t errlen)
{
	if (u->patient && u->practitioner) {
		snprintf(err, errlen, "give --patient or --practitioner, not both");
		return -1;
	}
	link[0] = '\0';
	if (u->patient)
		snprintf(link, cap, "Patient/%s", u->patient);
	else if (u->practitioner)
		snprintf(link, cap, "Practitioner/%s", u->practitioner);
	return 0;
}

/* Prints the enrolment once and writes the URI as a QR code (SVG) to the --qr file. */
static int show_enrolment(user_cmd_t *u, const cv_users_enrolment_t *enr, char *err, size_t errlen)
{
	printf("otpauth: %s\n\nrecovery codes (each works once):\n", enr->uri);
	for (int i = 0; i < CV_TOTP_RECOVERY_COUNT; i++)
		printf("  %s\n", enr->codes[i]);
	if (!u->qr_file)
		return 0;
	cv_buf_t svg;
	cv_buf_init(&svg, 1u << 20);
	cv_rc rc = cv_totp_qr_svg(enr->uri, &svg);
	int fd = rc ? -1 : open(u->qr_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	int ok = fd >= 0 && write(fd, svg.data, svg.len) == (ssize_t)svg.len && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	if (svg.data)
		sodium_memzero(svg.data, svg.len);
	cv_buf_release(&svg);
	if (!ok)
		snprintf(err, errlen, "cannot write the QR code to %s", u->qr_file);
	return ok ? 0 : -1;
}

/* An administrator account retired the bootstrap token (in the store, with the
 * account); its file, useless now, goes too. */
static void retire_bootstrap_file(const user_cmd_t *u)
{
	char path[CV_PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/bootstrap-token", u->cfg.data_dir);
	if (unlink(path) == 0 || errno == ENOENT)
		printf("bootstrap token: retired (administrators log in; scripts use a backend client)\n");
}

static int cmd_add(user_cmd_t *u, char *err, size_t errlen)
{
	char link[CV_LINK_MAX + 16], pw[PASSWORD_INPUT_MAX];
	cv_account_t a;
	cv_users_enrolment_t enr;
	int ret = -1;
	memset(&a, 0, sizeof a);
	memset(&enr, 0, sizeof enr);
	pw[0] = '\0';
	if (!u->password_stdin) {
		snprintf(err, errlen, "give the password on standard input with --password-stdin");
		return -1;
	}
	if (make_link(u, link, sizeof link, err, errlen))
		return -1;
	if (read_password(pw, sizeof pw)) {
		snprintf(err, errlen, "the password line is too long");
		goto out;
	}
	if (open_store(u, err, errlen))
		goto out;
	cv_users_new_t n = { .username = u->username, .role = u->role, .link = link, .password = pw, .mfa = u->mfa };
	cv_cli_change_t ch; /* the account and its record commit together */
	cv_cli_change_begin(&ch, "user-created", 'C', CV_ACCOUNT_TYPE, NULL);
	cv_rc rc = cv_users_create(u->store, &n, &a, &enr, err, errlen);
	cv_cli_change_end(&ch, u->store, rc == CV_OK, rc ? NULL : a.id);
	if (rc)
		goto out;
	printf("user_id: %s\n", a.id);
	if (a.role == CV_ROLE_ADMIN)
		retire_bootstrap_file(u);
	if (enr.enrolled && show_enrolment(u, &enr, err, errlen))
		goto out;
	ret = 0;
out:
	sodium_memzero(pw, sizeof pw);
	cv_users_enrolment_wipe(&enr);
	cv_account_release(&a);
	return ret;
}

static cv_rc list_one(void *arg, const cv_account_t *a)
{
	(void)arg;
	printf("%s  %-24s %-10s %-8s mfa:%-3s %s\n", a->id, a->username, cv_role_name(a->role),
	       a->disabled ? "disabled" : "enabled", a->mfa ? "yes" : "no", a->link[0] ? a->link : "-");
	return CV_OK;
}

static int cmd_list(user_cmd_t *u, char *err, size_t errlen)
{
	if (open_store(u, err, errlen))
		return -1;
	cv_rc rc = cv_account_each(u->store, list_one, NULL);
	if (rc)
		snprintf(err, errlen, "cannot list the accounts: %s", cv_rc_str(rc));
	return rc ? -1 : 0;
}

typedef struct names {
	char **v;
	size_t n, cap;
} names_t;

static cv_rc collect_name(void *arg, const cv_account_t *a)
{
	names_t *nm = arg;
	if (nm->n == nm->cap) {
		size_t cap = nm->cap ? 2 * nm->cap : 64;
		char **more = realloc(nm->v, cap * sizeof *more);
		if (!more)
			return CV_E_NOMEM;
		nm->v = more;
		nm->cap = cap;
	}
	return (nm->v[nm->n] = strdup(a->username)) ? (nm->n++, CV_OK) : CV_E_NOMEM;
}

/* revoke-sessions --all: every account's sessions and tokens end (its epoch moves). */
static int cmd_revoke_all(user_cmd_t *u, char *err, size_t errlen)
{
	names_t nm = { 0 };
	unsigned done = 0;
	if (open_store(u, err, errlen))
		return -1;
	if (cv_cli_audit_intent(u->store, "user-revoke-sessions-all-started", "every account's sessions and tokens",
				NULL)) {
		snprintf(err, errlen, "no session was revoked");
		return -1;
	}
	cv_rc rc = cv_account_each(u->store, collect_name, &nm);
	for (size_t i = 0; !rc && i < nm.n; i++) {
		cv_users_enrolment_t enr;
		rc = cv_users_apply(u->store, nm.v[i], false, CV_USERS_REVOKE_SESSIONS, &enr, NULL);
		cv_users_enrolment_wipe(&enr);
		done += rc == CV_OK;
	}
	for (size_t i = 0; i < nm.n; i++)
		free(nm.v[i]);
	free(nm.v);
	cv_cli_audit_change(u->store, "user-revoke-sessions-all", 'U', NULL, rc == CV_OK);
	if (rc) {
		snprintf(err, errlen, "stopped after %u accounts: %s (run it again)", done, cv_rc_str(rc));
		return -1;
	}
	printf("revoke-sessions: every session and token of %u accounts ended\n", done);
	return 0;
}

/* disable, enable, reset-mfa, revoke-sessions (retried on a concurrent change). */
static int cmd_change(user_cmd_t *u, char *err, size_t errlen)
{
	cv_users_action act;
	cv_users_enrolment_t enr;
	if (cv_users_action_parse(u->verb, &act) || open_store(u, err, errlen))
		return -1;
	char subtype[40];
	snprintf(subtype, sizeof subtype, "user-%.30s", u->verb);
	cv_cli_change_t ch;
	cv_cli_change_begin(&ch, subtype, 'U', CV_ACCOUNT_TYPE, NULL);
	cv_rc rc = cv_users_apply(u->store, u->username, false, act, &enr, NULL);
	cv_account_t who;
	bool known = cv_account_find(u->store, u->username, &who) == CV_OK;
	cv_cli_change_end(&ch, u->store, rc == CV_OK, known ? who.id : NULL);
	if (known)
		cv_account_release(&who);
	int ret = -1;
	if (rc == CV_E_NOTFOUND)
		snprintf(err, errlen, "no such user");
	else if (rc)
		snprintf(err, errlen, "cannot update the account: %s", cv_rc_str(rc));
	else if (act == CV_USERS_RESET_MFA)
		ret = show_enrolment(u, &enr, err, errlen);
	else
		ret = printf("%s: done\n", u->verb) < 0 ? -1 : 0;
	cv_users_enrolment_wipe(&enr);
	return ret;
}

int cv_cli_user(int argc, char **argv)
{
	static const char *const verbs[] = { "add", "list", "disable", "enable", "reset-mfa", "revoke-sessions" };
	user_cmd_t u;
	char err[512] = "";
	memset(&u, 0, sizeof u);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
		if (strcmp(argv[1], verbs[i]) == 0)
			u.verb = verbs[i];
	if (!u.verb)
		return bad("unknown command (add, list, disable, enable, reset-mfa, revoke-sessions)");
	if (parse_args(&u, argc, argv, err, sizeof err))
		return bad(err);
	cv_log_set_level(CV_LOG_WARN);
	int ret = strcmp(u.verb, "add") == 0	? cmd_add(&u, err, sizeof err)
		  : strcmp(u.verb, "list") == 0 ? cmd_list(&u, err, sizeof err)
		  : u.all			? cmd_revoke_all(&u, err, sizeof err)
						: cmd_change(&u, err, sizeof err);
	cv_store_close(u.store);
	cv_key_free(u.master);
	if (ret) {
		fprintf(stderr, "carevault user %s: %s\n", u.verb, err);
		return 1;
	}
	return 0;
}
