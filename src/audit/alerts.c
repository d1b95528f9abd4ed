/*
 * alerts.c - detection of the patterns of alerts.h.
 */
#include "audit/alerts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define AGENTS_MAX 8192       /* agents tracked at once (a power of two) */
#define PATIENTS_MAX 4096     /* distinct patients remembered per agent */
#define SCAN_BATCH 2000       /* records read per query */
#define SCAN_MAX 200000       /* records read per scan */
#define MINUTES 60

enum { K_FAILED, K_PATIENTS, K_BULK, K_DENIED, K_COUNT };
static const char *const kind_names[K_COUNT] = { "failed-logins", "many-patients", "bulk-export",
						  "outside-relationships" };

typedef struct bucket {
	int64_t minute;
	uint32_t res, denied, failed;
} bucket_t;

typedef struct seen {
	uint8_t k[CV_AUDIT_KEY_BYTES];
	int64_t minute;
} seen_t;

typedef struct agent {
	char *id;
	int64_t last_minute;
	bucket_t b[MINUTES];
	seen_t *pats;             /* distinct patients, at most PATIENTS_MAX */
	size_t npats;
	int64_t alerted[K_COUNT]; /* the hour of the last alert of each kind, + 1 */
} agent_t;

struct cv_alerts {
	int64_t after;            /* the last record read */
	agent_t *agents[AGENTS_MAX];
	size_t nagents;
};

cv_rc cv_alerts_new(cv_alerts_t **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? CV_OK : CV_E_NOMEM;
}

cv_rc cv_alerts_begin(cv_alerts_t *al, cv_store_t *s)
{
	uint8_t hash[CV_AUDIT_HASH_BYTES];
	return cv_store_audit_head(s, &al->after, hash);
}

static void agent_free(agent_t *g)
{
	if (g) {
		free(g->id);
		free(g->pats);
		free(g);
	}
}

void cv_alerts_free(cv_alerts_t *al)
{
	if (!al)
		return;
	for (size_t i = 0; i < AGENTS_MAX; i++)
		agent_free(al->agents[i]);
	free(al);
}

static size_t slot_of(const char *id)
{
	uint64_t h = 1469598103934665603ULL;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	return (size_t)(h & (AGENTS_MAX - 1));
}

/* Forgets the agents idle for over an hour (when the table fills). */
static void forget_idle(cv_alerts_t *al, int64_t minute)
{
	agent_t *keep[AGENTS_MAX] = { 0 };
	size_t n = 0;
	for (size_t i = 0; i < AGENTS_MAX; i++) {
		agent_t *g = al->agents[i];
		if (g && g->last_minute > minute - MINUTES)
			keep[n++] = g;
		else
			agent_free(g);
		al->agents[i] = NULL;
	}
	al->nagents = 0;
	for (size_t i = 0; i < n; i++) {
		size_t s = slot_of(keep[i]->id);
		while (al->agents[s])
			s = (s + 1) & (AGENTS_MAX - 1);
		al->agents[s] = keep[i];
		al->nagents++;
	}
}

static agent_t *agent_get(cv_alerts_t *al, const char *id, int64_t minute)
{
	size_t s = slot_of(id);
	for (size_t i = 0; i < AGENTS_MAX && al->agents[s]; i++, s = (s + 1) & (AGENTS_MAX - 1))
		if (strcmp(al->agents[s]->id, id) == 0)
			return al->agents[s];
	if (al->nagents >= AGENTS_MAX * 3 / 4) {
		forget_idle(al, minute);
		if (al->nagents >= AGENTS_MAX * 3 / 4)
			return NULL;
		return agent_get(al, id, minute);
	}
	agent_t *g = calloc(1, sizeof *g);
	if (!g || !(g->id = strdup(id))) {
		free(g);
		return NULL;
	}
	al->agents[s] = g;
	al->nagents++;
	return g;
}

static bucket_t *bucket(agent_t *g, int64_t minute)
{
	bucket_t *b = &g->b[minute % MINUTES];
	if (b->minute != minute)
		*b = (bucket_t){ .minute = minute };
	return b;
}

/* Sums over the buckets of the last `span` minutes. */
static uint64_t sum(const agent_t *g, int64_t minute, int span, int field)
{
	uint64_t n = 0;
	for (int i = 0; i < MINUTES; i++) {
		const bucket_t *b = &g->b[i];
		if (b->minute > minute - span && b->minute <= minute)
			n += field == 0 ? b->res : field == 1 ? b->denied : b->failed;
	}
	return n;
}

/* Notes a patient; returns how many distinct ones in the last hour. */
static size_t note_patient(agent_t *g, const uint8_t *k, int64_t minute)
{
	size_t live = 0, at = g->npats;
	for (size_t i = 0; i < g->npats; i++) {
		if (memcmp(g->pats[i].k, k, CV_AUDIT_KEY_BYTES) == 0)
			at = i;
		else if (g->pats[i].minute > minute - MINUTES)
			live++;
	}
	if (at == g->npats && g->npats == PATIENTS_MAX) { /* full: drop those older than an hour */
		size_t n = 0;
		for (size_t i = 0; i < g->npats; i++)
			if (g->pats[i].minute > minute - MINUTES)
				g->pats[n++] = g->pats[i];
		g->npats = n;
		at = n < PATIENTS_MAX ? n : PATIENTS_MAX - 1;
	}
	if (!g->pats && !(g->pats = calloc(PATIENTS_MAX, sizeof *g->pats)))
		return live;
	if (at == g->npats)
		g->npats++;
	memcpy(g->pats[at].k, k, CV_AUDIT_KEY_BYTES);
	g->pats[at].minute = minute;
	return live + 1;
}

/* Raises an alert once per agent, kind and hour (and once across nodes). */
static void raise_once(cv_audit_t *a, cv_store_t *s, agent_t *g, int kind, int64_t minute, const char *detail)
{
	int64_t hour = minute / 60;
	if (g->alerted[kind] == hour + 1)
		return;
	char name[300];
	snprintf(name, sizeof name, "alert.%s.%s.%lld", kind_names[kind], g->id, (long long)hour);
	cv_store_write_t claim = { .op = CV_STORE_CLAIM, .name = name, .updated_us = hour * 3600 * 1000000LL };
	cv_rc rc = cv_store_write_sync(s, &claim);
	if (rc == CV_OK && cv_audit_alert(a, kind_names[kind], g->id, detail) != CV_OK)
		rc = CV_E_STORAGE; /* claimed but not recorded: the log line and webhook went out; not again */
	if (rc == CV_OK || rc == CV_E_CONFLICT || rc == CV_E_STORAGE)
		g->alerted[kind] = hour + 1; /* raised here, or by another node (its claim) */
}

typedef struct scan {
	cv_alerts_t *al;
	cv_audit_t *a;
	cv_store_t *s;
	const cv_audit_config_t *cfg;
	size_t rows;
} scan_t;

static void check(scan_t *sc, agent_t *g, int64_t minute)
{
	char detail[160];
	uint64_t n;
	if (sc->cfg->alert_failed_logins && (n = sum(g, minute, 15, 2)) >= sc->cfg->alert_failed_logins) {
		snprintf(detail, sizeof detail, "%llu failed logins in 15 minutes", (unsigned long long)n);
		raise_once(sc->a, sc->s, g, K_FAILED, minute, detail);
	}
	if (sc->cfg->alert_resources_per_hour && (n = sum(g, minute, MINUTES, 0)) >= sc->cfg->alert_resources_per_hour) {
		snprintf(detail, sizeof detail, "%llu resources received in an hour", (unsigned long long)n);
		raise_once(sc->a, sc->s, g, K_BULK, minute, detail);
	}
	if (sc->cfg->alert_denied_per_hour && (n = sum(g, minute, MINUTES, 1)) >= sc->cfg->alert_denied_per_hour) {
		snprintf(detail, sizeof detail, "%llu accesses refused in an hour", (unsigned long long)n);
		raise_once(sc->a, sc->s, g, K_DENIED, minute, detail);
	}
}

static cv_rc one_row(void *arg, const cv_store_audit_row_t *r)
{
	scan_t *sc = arg;
	sc->al->after = r->pos;
	sc->rows++;
	if (r->flags & CV_AUDIT_F_ALERT)
		return CV_OK;
	int64_t minute = r->at_us / 60000000;
	agent_t *g = agent_get(sc->al, r->agent, minute);
	if (!g)
		return CV_OK;
	g->last_minute = minute;
	bucket_t *b = bucket(g, minute);
	bool rest_read = strcmp(r->kind, "rest") == 0 && r->outcome == 0 && (r->action == 'R' || r->action == 'E');
	if (rest_read)
		b->res += (uint32_t)(r->nres > 0 ? r->nres : 0);
	if ((r->flags & CV_AUDIT_F_DENIED) && strcmp(r->agent, "anonymous") != 0)
		b->denied++; /* a caller's refusals; a missing or expired credential is no relationship probed */
	if (strcmp(r->kind, "110114") == 0 && (strcmp(r->subtype, "login-failed") == 0 || strcmp(r->subtype, "mfa-failed") == 0))
		b->failed++;
	size_t distinct = 0;
	for (int64_t i = 0; rest_read && i < r->npat && (size_t)(i + 1) * CV_AUDIT_KEY_BYTES <= r->keys_len; i++)
		distinct = note_patient(g, r->keys + i * CV_AUDIT_KEY_BYTES, minute);
	if (sc->cfg->alert_patients_per_hour && distinct >= sc->cfg->alert_patients_per_hour) {
		char detail[160];
		snprintf(detail, sizeof detail, "%zu distinct patients read in an hour", distinct);
		raise_once(sc->a, sc->s, g, K_PATIENTS, minute, detail);
	}
	check(sc, g, minute);
	return CV_OK;
}

void cv_alerts_scan(cv_alerts_t *al, cv_audit_t *a, cv_store_t *s, const cv_audit_config_t *cfg)
{
	scan_t sc = { .al = al, .a = a, .s = s, .cfg = cfg };
	for (size_t total = 0; total < SCAN_MAX;) {
		cv_pool_t pool;
		cv_pool_init(&pool, 0);
		sc.rows = 0;
		cv_rc rc = cv_store_audit_scan(s, al->after, SCAN_BATCH, false, &pool, one_row, &sc);
		cv_pool_release(&pool);
		total += sc.rows;
		if (rc) {
			cv_log(CV_LOG_WARN, "audit.alerts", (cv_log_field_t[]){ CV_LS("rc", cv_rc_str(rc)) }, 1);
			return;
		}
		if (sc.rows < SCAN_BATCH)
			return;
	}
}
