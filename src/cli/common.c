/*
 * common.c - what several subcommands share: opening a data directory's store.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/time.h"

#include "audit/audit.h"
#include "crypto/crypto.h"

void cv_cli_master_cfg(const cv_config_t *cfg, cv_master_cfg_t *out)
{
	*out = (cv_master_cfg_t){ .source = cfg->master_key_source, .file = cfg->master_key_file,
				  .retired_file = cfg->master_key_retired[0] ? cfg->master_key_retired : NULL,
				  .pkcs11_module = cfg->pkcs11_module, .pkcs11_token = cfg->pkcs11_token,
				  .pkcs11_label = cfg->pkcs11_key_label, .pkcs11_pin_file = cfg->pkcs11_pin_file };
}

cv_rc cv_cli_master_load(const cv_config_t *cfg, cv_key_t **master, char *err, size_t errlen)
{
	cv_master_cfg_t mc;
	cv_cli_master_cfg(cfg, &mc);
	return cv_master_load(&mc, master, err, errlen);
}

int cv_cli_open_store(const cv_config_t *cfg, unsigned read_conns, cv_key_t **master, cv_store_t **store, char *err,
		      size_t errlen)
{
	cv_rc rc = cv_crypto_init(err, errlen);
	if (!rc)
		rc = cv_cli_master_load(cfg, master, err, errlen);
	if (!rc)
		rc = cv_store_open(cfg->data_dir, cfg->store_url, read_conns, *master, store, err, errlen);
	if (rc && *master) { /* the key does not outlive a failure: callers free it only with the store */
		cv_key_free(*master);
		*master = NULL;
	}
	return rc ? -1 : 0;
}

/* The event of an operator's change. */
static cv_audit_event_t change_event(const char *subtype, char action, const char *target, bool ok, char agent[64])
{
	snprintf(agent, 64, "operator-uid-%u", (unsigned)getuid());
	return (cv_audit_event_t){ .type = CV_AUDIT_SECURITY, .subtype = subtype, .action = action, .outcome = ok ? 0 : 4,
				   .flags = CV_AUDIT_F_SECURITY, .agent = agent, .agent_kind = "operator", .target = target };
}

int cv_cli_audit_change(cv_store_t *s, const char *subtype, char action, const char *target, bool ok)
{
	char agent[64];
	cv_audit_event_t e = change_event(subtype, action, target, ok, agent);
	if (cv_audit_record(s, &e) == CV_OK)
		return 0;
	fprintf(stderr, "carevault: warning: the change could not be recorded in the audit trail\n");
	return -1;
}

int cv_cli_audit_intent(cv_store_t *s, const char *subtype, const char *detail, const char *patient)
{
	char agent[64];
	const char *pats[1] = { patient };
	cv_audit_event_t e = change_event(subtype, 'E', NULL, true, agent);
	e.detail = detail;
	e.patients = patient ? pats : NULL;
	e.npatients = patient ? 1 : 0;
	if (cv_audit_record(s, &e) == CV_OK)
		return 0;
	fprintf(stderr, "carevault: the change could not be recorded in the audit trail: nothing was changed\n");
	return -1;
}

static cv_rc change_record(void *arg, const cv_store_write_t *w, cv_store_write_t **rec)
{
	cv_cli_change_t *c = arg;
	const cv_store_write_t *m = cv_store_version_of(w, c->type);
	*rec = NULL;
	if (!m)
		return CV_OK;
	cv_audit_event_t e = change_event(c->subtype, c->action, c->target ? c->target : m->id, true, c->agent);
	cv_store_write_t *r = cv_pool_alloc(&c->pool, sizeof *r);
	cv_rc rc = r ? cv_audit_build(&e, &c->pool, r) : CV_E_NOMEM;
	if (!rc)
		*rec = c->rec = r;
	return rc;
}

void cv_cli_change_begin(cv_cli_change_t *c, const char *subtype, char action, const char *type, const char *target)
{
	*c = (cv_cli_change_t){ .subtype = subtype, .type = type, .target = target, .action = action };
	cv_pool_init(&c->pool, 0);
	cv_store_companion_set(change_record, c);
}

int cv_cli_change_end(cv_cli_change_t *c, cv_store_t *s, bool ok, const char *target)
{
	cv_store_companion_clear();
	bool recorded = c->rec && c->rec->result == CV_OK;
	cv_pool_release(&c->pool);
	if (ok && recorded)
		return 0;
	return cv_cli_audit_change(s, c->subtype, c->action, target, ok);
}

void cv_cli_progress(cv_cli_progress_t *p, uint64_t done, uint64_t total, bool last)
{
	int64_t now = cv_time_mono_us();
	if (!p->started_us) {
		p->started_us = now;
		p->tty = isatty(STDERR_FILENO);
	}
	if (!last && now - p->printed_us < (p->tty ? 200000 : 5000000))
		return;
	p->printed_us = now;
	double secs = (double)(now - p->started_us) / 1e6, rate = secs > 0 ? (double)done / secs : 0;
	unsigned pct = total ? (unsigned)(done * 100 / total) : 100;
	if (pct > 100)
		pct = 100;
	int left = rate > 0 && total > done ? (int)((double)(total - done) / rate) : 0;
	if (p->tty) {
		char bar[31];
		memset(bar, '#', pct * 30 / 100);
		memset(bar + pct * 30 / 100, '.', 30 - pct * 30 / 100);
		bar[30] = '\0';
		fprintf(stderr, "\r%s [%s] %3u%%  %llu/%llu %s  %.0f/s  ETA %d:%02d   %s", p->what, bar, pct,
			(unsigned long long)done, (unsigned long long)total, p->unit, rate, left / 60, left % 60,
			last ? "\n" : "");
	} else {
		fprintf(stderr, "%s: %u%% %llu/%llu %s %.0f/s eta %ds\n", p->what, pct, (unsigned long long)done,
			(unsigned long long)total, p->unit, rate, left);
	}
}

int cv_cli_options(cv_config_t *cfg, int argc, char **argv, int from, cv_cli_own_fn own, void *arg, char *err,
		   size_t errlen)
{
	cv_config_defaults(cfg);
	if (cv_config_load_env(cfg, err, errlen))
		return -1;
	for (int i = from; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int took = own ? own(arg, a, v) : 0;
		if (took > 0) {
			i += took - 1;
			continue;
		}
		if (strncmp(a, "--", 2) != 0 || !v) {
			snprintf(err, errlen, "%s: expected --OPTION VALUE (see --help)", a);
			return -1;
		}
		i++;
		if (strcmp(a, "--config") == 0 ? cv_config_load_file(cfg, v, err, errlen) : cv_config_set(cfg, a + 2, v, err, errlen))
			return -1;
	}
	cv_config_finish(cfg);
	return 0;
}
