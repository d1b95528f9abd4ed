/*
 * trail.c - the audit trail of one server: the checkpoint key, signed
 * checkpoints copied to sinks outside the database, alerts, and the
 * background thread that makes them (audit.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "audit/alerts.h"
#include "audit/audit.h"
#include "audit/post.h"
#include "core/log.h"
#include "core/time.h"
#include "model/json.h"

#define META_SIGN_KEY "key.audit-sign"  /* the Ed25519 seed, wrapped by the master key */
#define META_PUBKEY "audit.pubkey"      /* its public key, plain: verification needs no secret */
#define WEBHOOK_QUEUE 64                 /* alerts waiting for the webhook */

struct cv_audit {
	cv_store_t *store;
	cv_audit_config_t cfg;
	cv_key_t *sign;                       /* the checkpoint key's seed */
	uint8_t pub[CV_SIGN_PUBLIC_BYTES];
	pthread_t thread;
	bool running;
	pthread_mutex_t mu;                   /* guards stop, the queue and last_* */
	pthread_cond_t cond;
	bool stop;
	char *queue[WEBHOOK_QUEUE];           /* alert documents for the webhook */
	size_t nqueue;
	int64_t last_pos;                     /* the last checkpoint signed */
	int64_t last_us;
	cv_alerts_t *alerts;                  /* detection state */
};

/* ---- the key -------------------------------------------------------------- */

/* The wrapped checkpoint key, made on first start by one node only: nodes
 * starting together on one database race for a claim, the winner makes the
 * key, the others wait for it (every node must sign with the same key). */
static cv_rc stored_sign_key(cv_audit_t *a, const cv_key_t *master, cv_buf_t *blob)
{
	for (int attempt = 0; attempt < 100; attempt++) {
		cv_rc rc = cv_store_meta_get(a->store, META_SIGN_KEY, blob);
		if (rc != CV_E_NOTFOUND)
			return rc;
		cv_store_write_t claim = { .op = CV_STORE_CLAIM, .name = "audit.sign-init",
					   .updated_us = cv_time_now_us() };
		rc = cv_store_write_sync(a->store, &claim);
		if (rc == CV_OK) {
			rc = cv_crypto_key_wrap_new(master, META_SIGN_KEY, 3, blob);
			cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = META_SIGN_KEY,
					       .body = (const uint8_t *)blob->data, .body_len = blob->len };
			return rc ? rc : cv_store_write_sync(a->store, &w);
		}
		if (rc != CV_E_CONFLICT)
			return rc;
		usleep(100000); /* another node is making it */
	}
	return CV_E_BUSY;
}

static cv_rc load_sign_key(cv_audit_t *a, const cv_key_t *master, char *err, size_t errlen)
{
	cv_buf_t blob;
	cv_buf_init(&blob, 4096);
	cv_rc rc = stored_sign_key(a, master, &blob);
	if (!rc)
		rc = cv_crypto_key_unwrap(master, META_SIGN_KEY, (const uint8_t *)blob.data, blob.len, &a->sign);
	cv_buf_release(&blob);
	if (rc) {
		snprintf(err, errlen, "cannot load the audit checkpoint key: %s", cv_rc_str(rc));
		return rc;
	}
	cv_crypto_sign_public(a->sign, a->pub);
	cv_buf_t have;
	cv_buf_init(&have, 64);
	rc = cv_store_meta_get(a->store, META_PUBKEY, &have);
	if (rc == CV_E_NOTFOUND || (!rc && (have.len != sizeof a->pub || memcmp(have.data, a->pub, sizeof a->pub)))) {
		cv_store_write_t w = { .op = CV_STORE_PUT_META, .name = META_PUBKEY, .body = a->pub,
				       .body_len = sizeof a->pub };
		rc = cv_store_write_sync(a->store, &w);
	}
	cv_buf_release(&have);
	if (rc)
		snprintf(err, errlen, "cannot record the audit public key: %s", cv_rc_str(rc));
	return rc;
}


cv_rc cv_audit_new(cv_store_t *s, const cv_key_t *master, const cv_audit_config_t *cfg, cv_audit_t **out,
		   char *err, size_t errlen)
{
	cv_audit_t *a = calloc(1, sizeof *a);
	if (!a)
		return CV_E_NOMEM;
	a->store = s;
	a->cfg = *cfg;
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cond, NULL);
	cv_rc rc = load_sign_key(a, master, err, errlen);
	cv_store_checkpoint_t last;
	cv_rc lrc = rc ? rc : cv_store_audit_last_checkpoint(s, &last); /* where signing resumes */
	if (!rc && !lrc) {
		a->last_pos = last.pos;
		a->last_us = last.at_us;
	}
	if (!rc && lrc != CV_E_NOTFOUND)
		rc = lrc;
	if (!rc)
		rc = cv_alerts_new(&a->alerts);
	if (rc) {
		if (!err[0])
			snprintf(err, errlen, "cannot start the audit trail: %s", cv_rc_str(rc));
		cv_audit_free(a);
		return rc;
	}
	*out = a;
	return CV_OK;
}

/* ---- checkpoints ----------------------------------------------------------- */

void cv_audit_checkpoint_message(const cv_store_checkpoint_t *c, char out[160])
{
	char hex[2 * CV_AUDIT_HASH_BYTES + 1];
	cv_crypto_hex(c->hash, CV_AUDIT_HASH_BYTES, hex);
	snprintf(out, 160, "carevault audit checkpoint 1\n%lld\n%s\n%lld\n", (long long)c->pos, hex,
		 (long long)c->at_us);
}

cv_rc cv_audit_checkpoint_line(const cv_store_checkpoint_t *c, cv_buf_t *out)
{
	char hash[65], key[65], sig[129], when[40];
	cv_crypto_hex(c->hash, sizeof c->hash, hash);
	cv_crypto_hex(c->key, sizeof c->key, key);
	cv_crypto_hex(c->sig, sizeof c->sig, sig);
	cv_time_format_instant(c->at_us, when, sizeof when);
	return cv_buf_printf(out, "{\"pos\":%lld,\"at\":\"%s\",\"at_us\":%lld,\"hash\":\"%s\",\"key\":\"%s\",\"sig\":\"%s\"}",
			     (long long)c->pos, when, (long long)c->at_us, hash, key, sig);
}

/* The readable "at" (not signed) must say what the signed at_us says. */
static int at_matches(json_object *o, int64_t at_us)
{
	char when[40];
	int bad = 0;
	const char *at = cv_json_member_string(o, "at", &bad);
	cv_time_format_instant(at_us, when, sizeof when);
	return !bad && (!at || strcmp(at, when) == 0);
}

cv_rc cv_audit_checkpoint_parse(const char *line, size_t len, cv_store_checkpoint_t *out)
{
	cv_json_limits_t lim;
	cv_pool_t pool;
	json_object *o = NULL;
	const char *err;
	int bad = 0;
	memset(out, 0, sizeof *out);
	if (len > 4096)
		return CV_E_INVALID;
	cv_json_limits_default(&lim);
	lim.max_depth = 4;
	cv_pool_init(&pool, 0);
	cv_rc rc = CV_E_INVALID;
	if (cv_json_parse(line, len, &lim, &pool, &o, &err) == CV_OK && json_object_is_type(o, json_type_object) && cv_json_member_int(o, "pos", &out->pos) && out->pos > 0 &&
	    cv_json_member_int(o, "at_us", &out->at_us) && out->at_us > 0 &&
	    !cv_crypto_unhex(cv_json_member_string(o, "hash", &bad), out->hash, sizeof out->hash) &&
	    !cv_crypto_unhex(cv_json_member_string(o, "key", &bad), out->key, sizeof out->key) &&
	    !cv_crypto_unhex(cv_json_member_string(o, "sig", &bad), out->sig, sizeof out->sig) && at_matches(o, out->at_us))
		rc = CV_OK;
	json_object_put(o);
	cv_pool_release(&pool);
	return rc;
}

/* Appends the line to the checkpoint file (made 0600) and syncs it. */
static void sink_file(const cv_audit_t *a, const char *line, size_t len)
{
	int fd = open(a->cfg.checkpoint_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	/* one write of the line and its newline: appends from several processes do not interleave */
	int ok = fd >= 0 && write(fd, line, len + 1) == (ssize_t)(len + 1) && fsync(fd) == 0;
	if (!ok)
		cv_log(CV_LOG_ERROR, "audit.checkpoint_file", (cv_log_field_t[]){ CV_LS("error", strerror(errno)) }, 1);
	if (fd >= 0)
		close(fd);
}

static void sinks(const cv_audit_t *a, const cv_store_checkpoint_t *c)
{
	cv_buf_t line;
	cv_buf_init(&line, 4096);
	if (cv_audit_checkpoint_line(c, &line)) {
		cv_buf_release(&line);
		return;
	}
	if (a->cfg.checkpoint_file && a->cfg.checkpoint_file[0] && !cv_buf_puts(&line, "\n"))
		sink_file(a, line.data, line.len - 1);
	if (line.len && line.data[line.len - 1] == '\n')
		line.data[--line.len] = '\0';
	if (a->cfg.checkpoint_syslog)
		syslog(LOG_AUTHPRIV | LOG_NOTICE, "carevault audit checkpoint %s", line.data);
	char why[256] = "";
	if (a->cfg.checkpoint_url && a->cfg.checkpoint_url[0] &&
	    cv_audit_post(a->cfg.checkpoint_url, a->cfg.ca_file, line.data, line.len, why, sizeof why))
		cv_log(CV_LOG_WARN, "audit.checkpoint_url", (cv_log_field_t[]){ CV_LS("error", why) }, 1);
	cv_buf_release(&line);
}

/* Signs msg for c with the audit key: fills c's key and sig. */
static void sign_message(cv_audit_t *a, const char *msg, cv_store_checkpoint_t *c)
{
	memcpy(c->key, a->pub, sizeof c->key);
	cv_crypto_sign(a->sign, msg, strlen(msg), c->sig);
}

void cv_audit_sign(cv_audit_t *a, cv_store_checkpoint_t *c)
{
	char msg[160];
	cv_audit_checkpoint_message(c, msg);
	sign_message(a, msg, c);
}

void cv_audit_base_message(const cv_store_checkpoint_t *c, char out[160])
{
	char hex[2 * CV_AUDIT_HASH_BYTES + 1];
	cv_crypto_hex(c->hash, CV_AUDIT_HASH_BYTES, hex);
	snprintf(out, 160, "carevault audit base 1\n%lld\n%s\n%lld\n", (long long)c->pos, hex, (long long)c->at_us);
}

void cv_audit_sign_base(cv_audit_t *a, cv_store_checkpoint_t *c)
{
	char msg[160];
	cv_audit_base_message(c, msg);
	sign_message(a, msg, c);
}

void cv_audit_archive_message(int64_t first, const uint8_t prev[CV_AUDIT_HASH_BYTES], const cv_store_checkpoint_t *end,
			      char out[320])
{
	char phex[2 * CV_AUDIT_HASH_BYTES + 1], hex[2 * CV_AUDIT_HASH_BYTES + 1];
	cv_crypto_hex(prev, CV_AUDIT_HASH_BYTES, phex);
	cv_crypto_hex(end->hash, CV_AUDIT_HASH_BYTES, hex);
	snprintf(out, 320, "carevault audit archive 2\n%lld\n%s\n%lld\n%s\n%lld\n", (long long)first, phex,
		 (long long)end->pos, hex, (long long)end->at_us);
}

void cv_audit_sign_archive(cv_audit_t *a, int64_t first, const uint8_t prev[CV_AUDIT_HASH_BYTES],
			   cv_store_checkpoint_t *end)
{
	char msg[320];
	cv_audit_archive_message(first, prev, end, msg);
	sign_message(a, msg, end);
}

cv_store_t *cv_audit_store(cv_audit_t *a)
{
	return a->store;
}

cv_rc cv_audit_checkpoint_now(cv_audit_t *a)
{
	cv_store_checkpoint_t c = { .at_us = cv_time_now_us() };
	cv_rc rc = cv_store_audit_head(a->store, &c.pos, c.hash);
	pthread_mutex_lock(&a->mu);
	int64_t last = a->last_pos;
	pthread_mutex_unlock(&a->mu);
	if (rc || c.pos <= last)
		return rc;
	cv_audit_sign(a, &c);
	cv_store_write_t w = { .op = CV_STORE_CHECKPOINT, .checkpoint = &c };
	rc = cv_store_write_sync(a->store, &w);
	if (rc)
		return rc;
	pthread_mutex_lock(&a->mu);
	a->last_pos = c.pos;
	a->last_us = c.at_us;
	pthread_mutex_unlock(&a->mu);
	sinks(a, &c);
	cv_log(CV_LOG_INFO, "audit.checkpoint", (cv_log_field_t[]){ CV_LI("records", c.pos) }, 1);
	return CV_OK;
}

/* A checkpoint when N records or T seconds have passed since the last. */
static void maybe_checkpoint(cv_audit_t *a)
{
	int64_t pos = 0;
	uint8_t hash[CV_AUDIT_HASH_BYTES];
	if (cv_store_audit_head(a->store, &pos, hash))
		return;
	pthread_mutex_lock(&a->mu);
	int64_t last = a->last_pos, last_us = a->last_us;
	pthread_mutex_unlock(&a->mu);
	int64_t now = cv_time_now_us();
	if (pos > last && (pos - last >= a->cfg.checkpoint_records || now - last_us >= a->cfg.checkpoint_seconds * 1000000))
		cv_audit_checkpoint_now(a);
}

/* ---- records and alerts ----------------------------------------------------- */

cv_rc cv_audit_record(cv_store_t *s, const cv_audit_event_t *e)
{
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	cv_store_write_t w;
	cv_rc rc = cv_audit_build(e, &pool, &w);
	if (!rc)
		rc = cv_store_write_sync(s, &w);
	cv_pool_release(&pool);
	return rc;
}

/* Queues an alert document for the webhook (the oldest goes when full). */
static void queue_webhook(cv_audit_t *a, char *doc)
{
	pthread_mutex_lock(&a->mu);
	if (a->nqueue == WEBHOOK_QUEUE) {
		free(a->queue[0]);
		memmove(a->queue, a->queue + 1, (WEBHOOK_QUEUE - 1) * sizeof a->queue[0]);
		a->nqueue--;
	}
	a->queue[a->nqueue++] = doc;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->mu);
}

cv_rc cv_audit_alert(cv_audit_t *a, const char *kind, const char *agent, const char *detail)
{
	cv_audit_event_t e = { .type = CV_AUDIT_ALERT, .subtype = kind, .action = 'E', .outcome = 0,
			       .flags = CV_AUDIT_F_ALERT | CV_AUDIT_F_SECURITY, .agent = agent, .agent_kind = "user",
			       .detail = detail };
	cv_rc rc = cv_audit_record(a->store, &e);
	cv_log(CV_LOG_WARN, "security alert", (cv_log_field_t[]){ CV_LS("alert", kind), CV_LS("agent", agent),
								 CV_LS("detail", detail), CV_LS("recorded", rc ? "no" : "yes") }, 4);
	cv_audit_webhook(a, kind, agent, detail);
	return rc;
}

void cv_audit_webhook(cv_audit_t *a, const char *kind, const char *agent, const char *detail)
{
	if (a && a->cfg.webhook_url && a->cfg.webhook_url[0]) {
		cv_buf_t b;
		cv_buf_init(&b, 8192);
		char when[40];
		cv_time_format_instant(cv_time_now_us(), when, sizeof when);
		cv_rc brc = cv_buf_printf(&b, "{\"alert\":\"%s\",\"at\":\"%s\",\"agent\":\"", kind, when);
		if (!brc)
			brc = cv_buf_json_escape(&b, agent);
		if (!brc)
			brc = cv_buf_puts(&b, "\",\"detail\":\"");
		if (!brc)
			brc = cv_buf_json_escape(&b, detail);
		if (!brc)
			brc = cv_buf_puts(&b, "\"}");
		char *doc = brc ? NULL : strdup(b.data);
		cv_buf_release(&b);
		if (doc)
			queue_webhook(a, doc);
	}
}

/* Sends the queued alert documents (outside the lock). */
static void send_webhooks(cv_audit_t *a)
{
	for (;;) {
		pthread_mutex_lock(&a->mu);
		char *doc = a->nqueue ? a->queue[0] : NULL;
		if (doc) {
			memmove(a->queue, a->queue + 1, (a->nqueue - 1) * sizeof a->queue[0]);
			a->nqueue--;
		}
		pthread_mutex_unlock(&a->mu);
		if (!doc)
			return;
		char why[256] = "";
		if (cv_audit_post(a->cfg.webhook_url, a->cfg.ca_file, doc, strlen(doc), why, sizeof why))
			cv_log(CV_LOG_WARN, "audit.webhook", (cv_log_field_t[]){ CV_LS("error", why) }, 1);
		free(doc);
	}
}

/* ---- the background thread ------------------------------------------------ */

static void *trail_main(void *arg)
{
	cv_audit_t *a = arg;
	int64_t next_scan = 0;
	pthread_mutex_lock(&a->mu);
	while (!a->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		if (!a->nqueue)
			pthread_cond_timedwait(&a->cond, &a->mu, &ts);
		if (a->stop)
			break;
		pthread_mutex_unlock(&a->mu);
		send_webhooks(a);
		maybe_checkpoint(a);
		int64_t now = cv_time_mono_us();
		if (now >= next_scan) {
			cv_alerts_scan(a->alerts, a, a->store, &a->cfg);
			next_scan = now + 2000000;
		}
		pthread_mutex_lock(&a->mu);
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

cv_rc cv_audit_start(cv_audit_t *a)
{
	if (cv_alerts_begin(a->alerts, a->store))
		return CV_E_STORAGE;
	if (pthread_create(&a->thread, NULL, trail_main, a) != 0)
		return CV_E_INTERNAL;
	a->running = true;
	return CV_OK;
}

void cv_audit_free(cv_audit_t *a)
{
	if (!a)
		return;
	if (a->running) {
		pthread_mutex_lock(&a->mu);
		a->stop = true;
		pthread_cond_signal(&a->cond);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->thread, NULL);
		send_webhooks(a);
		if (cv_audit_checkpoint_now(a))
			cv_log_msg(CV_LOG_WARN, "audit.checkpoint", "the last checkpoint could not be written");
	}
	for (size_t i = 0; i < a->nqueue; i++)
		free(a->queue[i]);
	cv_alerts_free(a->alerts);
	cv_key_free(a->sign);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cond);
	free(a);
}
