/*
 * server.c - the HTTPS server and the request pipeline (libmicrohttpd with
 * GnuTLS, epoll, a thread pool, suspend/resume for writes waiting on their
 * durable commit).
 *
 * A response is queued only once the whole request has arrived (a later call
 * of the access handler than the first): queued on the first call,
 * libmicrohttpd answers "Connection: close" and keep-alive is lost.
 * Bounds: URL, header bytes, body bytes (413 as soon as it is exceeded),
 * connections (total, per address), an idle timeout, and a per-request
 * deadline that a reaper thread enforces even on a client that drips bytes
 * (slowloris) by shutting the socket down, which libmicrohttpd then closes.
 */
#include "net/server.h"

#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "audit/audit.h"
#include "core/log.h"
#include "core/time.h"
#include "crypto/crypto.h"
#include "fhir/fhir.h"
#include "net/router.h"
#include "net/tls.h"

#define REQ_POOL_CAP (256u << 20)

/* A connection, tracked for the reaper. */
typedef struct track {
	struct track *prev, *next;
	int fd;               /* the socket */
	_Atomic int64_t deadline; /* monotonic µs after which it is shut down; 0: none */
} track_t;

struct cv_server {
	const cv_config_t *cfg;
	const cv_route_t *routes;
	size_t nroutes;
	void *app;
	const cv_auth_t *auth;
	struct MHD_Daemon *d;
	char *cert_pem, *key_pem;
	struct sockaddr_storage addr;
	pthread_mutex_t mu;       /* guards conns, stopping */
	pthread_cond_t cond;      /* wakes the reaper on stop */
	track_t *conns;
	int stopping;
	pthread_t reaper;
	atomic_uint active;       /* requests in flight */
	atomic_int draining;      /* stopping: new requests get 503 and Connection: close */
};

/* One request. */
typedef struct req {
	cv_server_t *srv;
	struct MHD_Connection *conn;
	cv_pool_t pool;
	cv_exchange_t ex;
	cv_buf_t body;
	const cv_route_t *route;
	int64_t t0;               /* monotonic µs at the request line */
	size_t uri_len;           /* request target length, query included */
	bool encoded_nul;         /* it holds %00: decoded, the path or a parameter would be cut there */
	int started;              /* the access handler has seen it */
	int ran;                  /* the pipeline has run */
	int answered;             /* a response was queued */
	int audited;              /* the request's audit record was asked for */
	cv_store_write_t *record; /* that record, while it is written */
	pthread_mutex_t mu;       /* guards woken, suspended */
	int woken, suspended;
	unsigned status;
	size_t bytes;
	char rid[33];
} req_t;

/* ---- connection tracking and the reaper -------------------------------- */

#define PROCESSING_WINDOW_US (600LL * 1000000) /* the most a handler may take, once the request is in */
#define TRIM_EVERY_US (5LL * 1000000)          /* how often idle memory is given back */

/* Moves a connection's deadline. No lock: the entry lives until the close
 * notification, which libmicrohttpd delivers on this connection's own thread
 * after its last request callback; the reaper reads it atomically. */
static void track_deadline(struct MHD_Connection *c, int64_t in_us)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	track_t *t = ci ? ci->socket_context : NULL;
	if (t)
		atomic_store(&t->deadline, cv_time_mono_us() + in_us);
}

static int64_t idle_window(const cv_server_t *srv)
{
	return ((int64_t)srv->cfg->idle_timeout + srv->cfg->request_timeout) * 1000000;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
			  enum MHD_ConnectionNotificationCode code)
{
	cv_server_t *srv = cls;
	track_t *t = *socket_ctx;
	pthread_mutex_lock(&srv->mu);
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		t = calloc(1, sizeof *t);
		if (t && ci) {
			t->fd = ci->connect_fd;
			atomic_store(&t->deadline, cv_time_mono_us() + idle_window(srv));
			t->next = srv->conns;
			if (srv->conns)
				srv->conns->prev = t;
			srv->conns = t;
		}
		*socket_ctx = t;
	} else if (t) {
		if (t->prev)
			t->prev->next = t->next;
		else
			srv->conns = t->next;
		if (t->next)
			t->next->prev = t->prev;
		free(t);
		*socket_ctx = NULL;
	}
	pthread_mutex_unlock(&srv->mu);
}

/* Gives memory freed by finished requests back to the system when the
 * server is quiet (called with srv->mu held; drops it meanwhile): request pools come and go in 8 KiB blocks on every HTTP
 * thread's malloc arena, and glibc keeps what it can reuse. */
static void trim_when_quiet(cv_server_t *srv, int64_t now, int64_t *last)
{
	if (now - *last < TRIM_EVERY_US || atomic_load(&srv->active) != 0)
		return;
	*last = now;
	pthread_mutex_unlock(&srv->mu); /* trimming takes a while: do not hold up new connections */
	malloc_trim(0);
	pthread_mutex_lock(&srv->mu);
}

static void *reaper_main(void *arg)
{
	cv_server_t *srv = arg;
	int64_t last_trim = cv_time_mono_us();
	pthread_mutex_lock(&srv->mu);
	while (!srv->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		pthread_cond_timedwait(&srv->cond, &srv->mu, &ts);
		int64_t now = cv_time_mono_us();
		for (track_t *t = srv->conns; t; t = t->next) {
			int64_t d = atomic_load(&t->deadline);
			if (d && now > d) {
				shutdown(t->fd, SHUT_RDWR);
				atomic_store(&t->deadline, 0);
				cv_log(CV_LOG_INFO, "net.deadline", (cv_log_field_t[]){ CV_LS("action", "closed") }, 1);
			}
		}
		trim_when_quiet(srv, now, &last_trim);
	}
	pthread_mutex_unlock(&srv->mu);
	return NULL;
}

/* ---- request lifecycle ------------------------------------------------- */

static const char *ex_header(cv_exchange_t *ex, const char *name)
{
	req_t *r = ex->net;
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

static void ex_resume(cv_exchange_t *ex)
{
	req_t *r = ex->net;
	pthread_mutex_lock(&r->mu);
	r->woken = 1;
	if (r->suspended) {
		r->suspended = 0;
		MHD_resume_connection(r->conn);
	}
	pthread_mutex_unlock(&r->mu);
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	cv_server_t *srv = cls;
	uint8_t id[16];
	req_t *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->srv = srv;
	r->conn = c;
	r->t0 = cv_time_mono_us();
	r->uri_len = strlen(uri);
	r->encoded_nul = strstr(uri, "%00") != NULL;
	cv_crypto_random(id, sizeof id);
	cv_crypto_hex(id, sizeof id, r->rid);
	cv_pool_init(&r->pool, REQ_POOL_CAP);
	cv_buf_init(&r->body, srv->cfg->max_body);
	pthread_mutex_init(&r->mu, NULL);
	cv_exchange_t *ex = &r->ex;
	ex->pool = &r->pool;
	ex->net = r;
	ex->header = ex_header;
	ex->resume = ex_resume;
	ex->request_id = r->rid;
	ex->app = srv->app;
	ex->route = "-";
	cv_buf_init(&ex->resp, 512u << 20);
	atomic_fetch_add(&srv->active, 1);
	track_deadline(c, (int64_t)srv->cfg->request_timeout * 1000000);
	return r;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	cv_server_t *srv = cls;
	req_t *r = *req_cls;
	if (!r)
		return;
	if (srv->cfg->access_log)
		cv_log(CV_LOG_INFO, "access", (cv_log_field_t[]){
			CV_LS("request_id", r->rid), CV_LS("method", r->ex.method ? r->ex.method : "-"),
			CV_LS("route", r->ex.route), CV_LI("status", r->status), CV_LI("bytes", r->bytes),
			CV_LI("us", cv_time_mono_us() - r->t0),
			CV_LS("caller", r->ex.principal.id ? r->ex.principal.id : "-"),
			CV_LS("policy", r->ex.decision ? r->ex.decision : "-"),
			CV_LI("break_glass", cv_access_broke_glass(r->ex.access)),
			CV_LI("completed", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) }, 10);
	cv_buf_release(&r->body);
	cv_buf_release(&r->ex.resp);
	cv_pool_release(&r->pool);
	pthread_mutex_destroy(&r->mu);
	free(r);
	*req_cls = NULL;
	atomic_fetch_sub(&srv->active, 1);
	track_deadline(c, idle_window(srv));
}

/* ---- responses ---------------------------------------------------------- */

/* The handler set this header itself (its value then replaces the default). */
static int handler_sets(const req_t *r, const char *name)
{
	for (size_t i = 0; i < r->ex.nresp_hdr; i++)
		if (r->ex.resp_hdr[i][1] && strcasecmp(r->ex.resp_hdr[i][0], name) == 0)
			return 1;
	return 0;
}

static int add_headers(struct MHD_Response *resp, req_t *r, size_t body_len)
{
	static const char *const fixed[][2] = {
		{ "Strict-Transport-Security", "max-age=63072000; includeSubDomains" },
		{ "X-Content-Type-Options", "nosniff" },
		{ "Referrer-Policy", "no-referrer" },
		{ "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
					     "form-action 'none'" },
		{ "X-Frame-Options", "DENY" },
		{ "Cache-Control", "no-store" },
	};
	int ok = 1;
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		if (!handler_sets(r, fixed[i][0]))
			ok &= MHD_add_response_header(resp, fixed[i][0], fixed[i][1]) == MHD_YES;
	ok &= MHD_add_response_header(resp, "X-Request-Id", r->rid) == MHD_YES;
	if (body_len && r->ex.content_type)
		ok &= MHD_add_response_header(resp, "Content-Type", r->ex.content_type) == MHD_YES;
	for (size_t i = 0; i < r->ex.nresp_hdr; i++)
		if (r->ex.resp_hdr[i][1])
			ok &= MHD_add_response_header(resp, r->ex.resp_hdr[i][0], r->ex.resp_hdr[i][1]) == MHD_YES;
	return ok;
}

static enum MHD_Result send_response(req_t *r)
{
	cv_exchange_t *ex = &r->ex;
	if (!ex->status) {
		cv_log(CV_LOG_ERROR, "net.no_status", (cv_log_field_t[]){ CV_LS("route", ex->route) }, 1);
		cv_fhir_error(ex, 500, "exception", "the server could not complete the request");
	}
	size_t len = 0;
	char *data = cv_buf_take(&ex->resp, &len);
	struct MHD_Response *resp = MHD_create_response_from_buffer(len, data ? data : (void *)"",
								    data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(data);
		return MHD_NO;
	}
	if (!add_headers(resp, r, len)) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	r->status = ex->status;
	r->bytes = len;
	r->answered = 1;
	/* the client has request-timeout seconds to take the response */
	track_deadline(r->conn, (int64_t)r->srv->cfg->request_timeout * 1000000);
	enum MHD_Result res = MHD_queue_response(r->conn, ex->status, resp);
	MHD_destroy_response(resp);
	return res;
}

/* Answers at once with an error (and libmicrohttpd closes the connection
 * when the request was not read to its end). */
static enum MHD_Result reject(req_t *r, unsigned status, const char *code, const char *msg)
{
	cv_fhir_error(&r->ex, status, code, "%s", msg);
	return send_response(r);
}

/* ---- the pipeline ------------------------------------------------------- */

/* Finds the route; 404 or 405 (with Allow) when there is none. */
static int route(req_t *r, const char *path, const char *method)
{
	cv_server_t *srv = r->srv;
	char allow[128] = "";
	size_t used = 0;
	for (size_t i = 0; i < srv->nroutes; i++) {
		const char *args[4] = { 0 };
		if (!cv_route_match(srv->routes[i].pattern, path, args, &r->pool))
			continue;
		if (strcmp(srv->routes[i].method, method) == 0) {
			r->route = &srv->routes[i];
			r->ex.route = r->route->pattern;
			memcpy(r->ex.args, args, sizeof args);
			return 1;
		}
		if (!strstr(allow, srv->routes[i].method) && used + 10 < sizeof allow) {
			int n = snprintf(allow + used, sizeof allow - used, "%s%s", used ? ", " : "",
					 srv->routes[i].method);
			used += n > 0 ? (size_t)n : 0;
		}
	}
	if (used) {
		cv_exchange_add_header(&r->ex, "Allow", cv_pool_strdup(&r->pool, allow));
		cv_fhir_error(&r->ex, 405, "not-supported", "this method is not allowed here; see the Allow header");
	} else {
		cv_fhir_error(&r->ex, 404, "not-found", "no such endpoint");
	}
	return 0;
}

static enum MHD_Result add_param(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	cv_exchange_t *ex = cls;
	if (ex->nparams >= CV_EX_MAX_PARAMS) {
		ex->nparams = CV_EX_MAX_PARAMS + 1;
		return MHD_NO;
	}
	ex->params[ex->nparams].name = key;
	ex->params[ex->nparams].value = value ? value : "";
	ex->nparams++;
	return MHD_YES;
}

/* The FHIR base URL: from public-url when it is set (behind a proxy, so that
 * the OAuth issuer and audiences cannot be chosen by a Host header), else
 * from the request's Host. */
static const char *base_url(req_t *r)
{
	if (r->srv->cfg->public_url[0])
		return cv_pool_printf(&r->pool, "%s/fhir", r->srv->cfg->public_url);
	const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
	if (!host || !*host || strlen(host) > 255 ||
	    strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != strlen(host))
		host = "localhost";
	return cv_pool_printf(&r->pool, "https://%s/fhir", host);
}

/* The client's address as text, for throttling; "-" when unknown. */
static const char *peer_text(req_t *r)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char host[NI_MAXHOST];
	if (!ci || !ci->client_addr)
		return "-";
	socklen_t len = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	if (getnameinfo(ci->client_addr, len, host, sizeof host, NULL, 0, NI_NUMERICHOST) != 0)
		return "-";
	const char *p = cv_pool_strdup(&r->pool, host);
	return p ? p : "-";
}

/* Who is calling: a bearer token, else a session cookie, else nobody. */
static cv_rc authenticate(req_t *r, const char *authz)
{
	cv_exchange_t *ex = &r->ex;
	if (authz)
		return cv_auth_bearer(r->srv->auth, authz, &r->pool, &ex->principal);
	return cv_auth_cookie(r->srv->auth, ex_header(ex, "Cookie"), &r->pool, &ex->principal);
}

static int safe_method(const char *m)
{
	return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

/* A create, update or delete of an AuditEvent (searching by POST is a read). */
static bool audit_write(const req_t *r)
{
	cv_action a = r->route->action;
	return (a == CV_ACT_FHIR_CREATE || a == CV_ACT_FHIR_UPDATE || a == CV_ACT_FHIR_DELETE) &&
	       cv_fhir_is_audit(&r->ex);
}

static void authorize(req_t *r)
{
	cv_exchange_t *ex = &r->ex;
	const char *reason = NULL;
	const char *authz = ex_header(ex, "Authorization");
	cv_rc rc = authenticate(r, authz);
	const cv_principal_t nobody = { .kind = CV_PRINCIPAL_NONE };
	const cv_fhir_t *f = ex->app;
	int public_route = cv_policy_decide(f ? f->policy : NULL, &nobody, r->route->action, ex->args[0], NULL, NULL) == CV_OK;
	if (!rc && !public_route && !safe_method(ex->method) &&
	    cv_auth_csrf(&ex->principal, ex_header(ex, "X-CSRF-Token"))) {
		/* a cookie-authenticated change without its CSRF token: another site's form */
		cv_fhir_error(ex, 403, "forbidden", "a change made with a session cookie needs its X-CSRF-Token header");
		return;
	}
	if (!rc && audit_write(r)) {
		/* nobody writes the trail, whatever they may do elsewhere: the method, not the caller, is refused */
		ex->decision = "the audit trail is written by this server only";
		cv_fhir_audit_readonly(ex);
		return;
	}
	if (!rc)
		rc = cv_policy_decide(f ? f->policy : NULL, &ex->principal, r->route->action, ex->args[0], ex->args[1], &reason);
	else if (public_route)
		rc = CV_OK; /* a public route: a bad credential does not matter */
	ex->decision = reason;
	if ((rc == CV_E_UNAUTH || rc == CV_E_DENIED) && ex->route && strncmp(ex->route, "/fhir", 5) == 0)
		cv_fhir_audit_refused(ex, ex->args[0], ex->args[1], NULL, NULL); /* what was asked for, in the record */
	if (rc && rc != CV_E_UNAUTH && rc != CV_E_DENIED) {
		/* the credential could not be checked (the store did not answer): not a refusal */
		cv_exchange_add_header(ex, "Retry-After", "1");
		cv_fhir_fail(ex, rc, NULL, "the credential could not be checked; try again");
	} else if (rc == CV_E_UNAUTH) {
		cv_exchange_add_header(ex, "WWW-Authenticate", authz ? "Bearer realm=\"carevault\", "
					"error=\"invalid_token\"" : "Bearer realm=\"carevault\"");
		cv_fhir_error(ex, 401, "login", "authentication required: send Authorization: Bearer <token>");
	} else if (rc) {
		cv_fhir_error(ex, 403, "forbidden", "not permitted");
	} else {
		r->route->handler(ex);
	}
}

/* Paths a browser app on another origin may call with a bearer token (CORS):
 * the FHIR API, the metadata, and the token, revocation and introspection
 * endpoints. Not the sign-in pages, the portal login, sessions or the admin
 * API, which work with the session cookie. "*" allows no credentials: a
 * browser sends no cookie with such a request (nor would SameSite=Strict). */
static int cors_path(const char *path)
{
	return strncmp(path, "/fhir", 5) == 0 || strncmp(path, "/.well-known/", 13) == 0 ||
	       strcmp(path, "/auth/token") == 0 || strcmp(path, "/auth/revoke") == 0 ||
	       strcmp(path, "/auth/introspect") == 0;
}

/* CORS headers; for a preflight (OPTIONS with Access-Control-Request-Method)
 * the whole answer, 204. Returns 1 when the request was a preflight. */
static int cors(req_t *r, const char *path, const char *method)
{
	cv_exchange_t *ex = &r->ex;
	if (!cors_path(path))
		return 0;
	cv_exchange_add_header(ex, "Access-Control-Allow-Origin", "*");
	if (strcmp(method, "OPTIONS") != 0 || !ex_header(ex, "Access-Control-Request-Method")) {
		cv_exchange_add_header(ex, "Access-Control-Expose-Headers",
				       "Location, Content-Location, ETag, Last-Modified, WWW-Authenticate, X-Request-Id");
		return 0;
	}
	cv_exchange_add_header(ex, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE");
	cv_exchange_add_header(ex, "Access-Control-Allow-Headers",
			       "Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist, "
			       "If-Modified-Since, X-Request-Id");
	cv_exchange_add_header(ex, "Access-Control-Max-Age", "600");
	ex->status = 204;
	return 1;
}

static void run_pipeline(req_t *r, const char *url, const char *method)
{
	cv_exchange_t *ex = &r->ex;
	r->ran = 1;
	ex->method = method;
	ex->path = url;
	ex->body = r->body.data;
	ex->body_len = r->body.len;
	ex->base_url = base_url(r);
	ex->peer = peer_text(r);
	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_param, ex);
	if (ex->nparams > CV_EX_MAX_PARAMS)
		return cv_fhir_error(ex, 400, "too-costly", "too many query parameters (at most %d)",
				     CV_EX_MAX_PARAMS);
	if (cors(r, url, method))
		return;
	if (route(r, url, method))
		authorize(r);
}

/* ---- the audit stage ---------------------------------------------------- */

static void record_done(cv_store_write_t *w)
{
	req_t *r = w->arg;
	r->ex.resume(&r->ex);
}

/* No answer without its record: a request whose record could not be made
 * durable answers 503, whatever the handler had. */
static void unrecorded(cv_exchange_t *ex, cv_rc rc)
{
	cv_log(CV_LOG_ERROR, "audit.write_failed", (cv_log_field_t[]){ CV_LS("request_id", ex->request_id),
		CV_LS("route", ex->route), CV_LS("rc", cv_rc_str(rc)) }, 3);
	ex->nresp_hdr = 0;
	cv_buf_reset(&ex->resp);
	cv_exchange_add_header(ex, "Retry-After", "1");
	cv_fhir_error(ex, 503, "transient", "the access could not be recorded in the audit trail, so it is not "
		      "answered; retry");
}

static void record_written(cv_exchange_t *ex)
{
	req_t *r = ex->net;
	ex->pending = 0;
	if (r->record->result)
		unrecorded(ex, r->record->result);
}

/* Writes the request's audit record (DESIGN.md invariant 2); 1 when the
 * answer waits for it. A benchmark-only build (CV_BENCH_NO_AUDIT) skips
 * it, to measure what it costs. */
static int audit(req_t *r)
{
	cv_exchange_t *ex = &r->ex;
	const cv_fhir_t *f = ex->app;
	r->audited = 1;
#ifdef CV_BENCH_NO_AUDIT
	return 0;
#endif
	if (!f || !f->audit)
		return 0;
	if (cv_access_broke_glass(ex->access))
		cv_audit_break_glass(ex);
	cv_rc rc = cv_audit_request(f->audit, ex, &r->record);
	if (!rc && !r->record)
		return 0;
	if (!rc) {
		r->record->done = record_done;
		r->record->arg = r;
		ex->cont = record_written;
		ex->pending = 1;
		rc = cv_store_submit(f->store, r->record);
	}
	if (rc) {
		ex->pending = 0;
		unrecorded(ex, rc);
	}
	return ex->pending;
}

/* Sends the response once the handler and the audit record are done, or
 * suspends the connection while they wait. */
static enum MHD_Result proceed(req_t *r)
{
	for (;;) {
		while (r->ex.pending) {
			pthread_mutex_lock(&r->mu);
			if (!r->woken) {
				r->suspended = 1;
				MHD_suspend_connection(r->conn);
				pthread_mutex_unlock(&r->mu);
				return MHD_YES;
			}
			r->woken = 0;
			pthread_mutex_unlock(&r->mu);
			r->ex.cont(&r->ex);
		}
		if (r->audited || !audit(r))
			break;
	}
	return send_response(r);
}

typedef struct hdr_scan {
	size_t total;  /* bytes of names and values */
	int bad;       /* a NUL, CR or LF inside a name or value */
} hdr_scan_t;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
				   const char *value, size_t value_size)
{
	hdr_scan_t *h = cls;
	h->total += key_size + value_size + 4;
	if (strlen(key) != key_size || (value && (strlen(value) != value_size || strpbrk(value, "\r\n"))))
		h->bad = 1;
	return MHD_YES;
}

/* First call: the request line and headers are in; check their bounds. */
static enum MHD_Result begin(req_t *r, const char *version)
{
	const cv_config_t *cfg = r->srv->cfg;
	hdr_scan_t hdr = { 0 };
	r->started = 1;
	if (r->uri_len > cfg->max_url)
		return reject(r, 414, "too-costly", "the URL is too long");
	if (r->encoded_nul)
		return reject(r, 400, "structure", "the URL holds an encoded NUL character (%00)");
	MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_header, &hdr);
	if (hdr.total > cfg->max_header)
		return reject(r, 431, "too-costly", "the request headers are too large");
	if (hdr.bad)
		return reject(r, 400, "structure", "a request header holds a NUL, CR or LF character");
	if (strcmp(version, MHD_HTTP_VERSION_1_1) == 0 &&
	    !MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST))
		return reject(r, 400, "structure", "an HTTP/1.1 request needs a Host header");
	const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
	if (cl && strtoull(cl, NULL, 10) > cfg->max_body)
		return reject(r, 413, "too-costly", "the request body is larger than this server accepts");
	return MHD_YES;
}

static enum MHD_Result take_body(req_t *r, const char *data, size_t *size)
{
	const cv_config_t *cfg = r->srv->cfg;
	if (cv_time_mono_us() - r->t0 > (int64_t)cfg->request_timeout * 1000000)
		return reject(r, 408, "timeout", "the request took too long to arrive");
	cv_rc rc = cv_buf_append(&r->body, data, *size);
	*size = 0;
	if (rc == CV_E_LIMIT)
		return reject(r, 413, "too-costly", "the request body is larger than this server accepts");
	if (rc)
		return reject(r, 503, "transient", "the server is short of memory; retry");
	return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				 const char *version, const char *data, size_t *size, void **req_cls)
{
	req_t *r = *req_cls;
	if (!r)
		return MHD_NO;
	if (r->answered) {
		*size = 0; /* discard the rest of a rejected body */
		return MHD_YES;
	}
	if (!r->started)
		return begin(r, version);
	if (*size)
		return take_body(r, data, size);
	if (!r->ran && atomic_load(&r->srv->draining)) {
		r->ran = 1;
		cv_exchange_add_header(&r->ex, "Connection", "close");
		cv_fhir_error(&r->ex, 503, "transient", "the server is shutting down; retry");
	} else if (!r->ran) {
		/* the whole request is here: the deadline was for the client's sending; the
		 * server's own work gets its own, longer bound (a large transaction under load) */
		track_deadline(c, PROCESSING_WINDOW_US);
		run_pipeline(r, url, method);
	}
	else if (r->ex.pending) {
		pthread_mutex_lock(&r->mu);
		int woken = r->woken;
		r->woken = 0;
		pthread_mutex_unlock(&r->mu);
		if (woken)
			r->ex.cont(&r->ex);
	}
	return proceed(r);
}

/* ---- start and stop ----------------------------------------------------- */

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	/* only the format, never the arguments: they may hold request data */
	char msg[256];
	size_t n = strcspn(fmt, "\n");
	snprintf(msg, sizeof msg, "%.*s", (int)(n < 255 ? n : 255), fmt);
	cv_log_msg(CV_LOG_WARN, "net.mhd", msg);
}

static cv_rc check_routes(const cv_route_t *routes, size_t n, char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (routes[i].action <= CV_ACT_UNSET || routes[i].action >= CV_ACT_COUNT || !routes[i].handler) {
			snprintf(err, errlen, "route %s %s has no policy action: every route must name one",
				 routes[i].method, routes[i].pattern);
			return CV_E_INVALID;
		}
	}
	return CV_OK;
}

static cv_rc listen_addr(cv_server_t *srv, int *ipv6, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai = NULL;
	char port[8];
	snprintf(port, sizeof port, "%u", srv->cfg->listen_port);
	if (getaddrinfo(srv->cfg->listen_addr, port, &hints, &ai) != 0 || !ai) {
		snprintf(err, errlen, "listen address '%s' is not a numeric IPv4 or IPv6 address",
			 srv->cfg->listen_addr);
		return CV_E_INVALID;
	}
	memcpy(&srv->addr, ai->ai_addr, ai->ai_addrlen);
	*ipv6 = ai->ai_family == AF_INET6;
	freeaddrinfo(ai);
	return CV_OK;
}

static unsigned pool_threads(const cv_config_t *cfg)
{
	long n = cfg->threads ? (long)cfg->threads : sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > 256 ? 256 : (unsigned)n;
}

static cv_rc start_daemon(cv_server_t *srv, int ipv6, char *err, size_t errlen)
{
	const cv_config_t *cfg = srv->cfg;
	unsigned flags = MHD_USE_TLS | MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC |
			 MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0);
	/* per-connection memory: room for the request line and headers, plus a
	 * little for libmicrohttpd's own bookkeeping and the body read buffer */
	size_t mem = cfg->max_header + cfg->max_url + 4096;
	srv->d = MHD_start_daemon(flags, cfg->listen_port, NULL, NULL, on_access, srv,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_log, srv,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&srv->addr,
		MHD_OPTION_HTTPS_MEM_CERT, srv->cert_pem,
		MHD_OPTION_HTTPS_MEM_KEY, srv->key_pem,
		MHD_OPTION_HTTPS_PRIORITIES, cv_tls_priorities,
		MHD_OPTION_THREAD_POOL_SIZE, pool_threads(cfg),
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->max_conn_per_ip,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->idle_timeout,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem,
		MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
		MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
		MHD_OPTION_END);
	if (!srv->d) {
		snprintf(err, errlen, "cannot listen on %s:%u (in use, or not an address of this machine?)",
			 cfg->listen_addr, cfg->listen_port);
		return CV_E_IO;
	}
	return CV_OK;
}

cv_rc cv_server_start(const cv_config_t *cfg, const cv_route_t *routes, size_t nroutes, void *app,
		      const cv_auth_t *auth, cv_server_t **out, char *err, size_t errlen)
{
	int ipv6 = 0;
	cv_rc rc = check_routes(routes, nroutes, err, errlen);
	if (rc)
		return rc;
	cv_server_t *srv = calloc(1, sizeof *srv);
	if (!srv)
		return CV_E_NOMEM;
	srv->cfg = cfg;
	srv->routes = routes;
	srv->nroutes = nroutes;
	srv->app = app;
	srv->auth = auth;
	pthread_mutex_init(&srv->mu, NULL);
	pthread_cond_init(&srv->cond, NULL);
	rc = cv_tls_read_pem(cfg->cert_file, 0, &srv->cert_pem, err, errlen);
	if (!rc)
		rc = cv_tls_read_pem(cfg->key_file, 1, &srv->key_pem, err, errlen);
	if (!rc)
		rc = listen_addr(srv, &ipv6, err, errlen);
	if (!rc)
		rc = start_daemon(srv, ipv6, err, errlen);
	if (!rc && pthread_create(&srv->reaper, NULL, reaper_main, srv) != 0) {
		snprintf(err, errlen, "cannot start the reaper thread");
		rc = CV_E_INTERNAL;
		MHD_stop_daemon(srv->d);
	}
	if (rc) {
		if (srv->key_pem)
			cv_crypto_wipe(srv->key_pem, strlen(srv->key_pem));
		free(srv->key_pem);
		free(srv->cert_pem);
		free(srv);
		return rc;
	}
	*out = srv;
	return CV_OK;
}

unsigned cv_server_active(const cv_server_t *srv)
{
	return atomic_load(&srv->active);
}

void cv_server_stop(cv_server_t *srv, unsigned grace_s)
{
	if (!srv)
		return;
	/* no new connections, no new requests on kept-alive ones; then wait
	 * for those in flight (suspended ones included) to finish */
	MHD_socket ls = MHD_quiesce_daemon(srv->d);
	if (ls != MHD_INVALID_SOCKET)
		close(ls);
	atomic_store(&srv->draining, 1);
	int64_t until = cv_time_mono_us() + (int64_t)grace_s * 1000000;
	while (atomic_load(&srv->active) && cv_time_mono_us() < until)
		usleep(10000);
	pthread_mutex_lock(&srv->mu);
	srv->stopping = 1;
	pthread_cond_signal(&srv->cond);
	pthread_mutex_unlock(&srv->mu);
	pthread_join(srv->reaper, NULL);
	MHD_stop_daemon(srv->d);
	cv_crypto_wipe(srv->key_pem, strlen(srv->key_pem));
	free(srv->key_pem);
	free(srv->cert_pem);
	pthread_mutex_destroy(&srv->mu);
	pthread_cond_destroy(&srv->cond);
	free(srv);
}
