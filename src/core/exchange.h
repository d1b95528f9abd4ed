/*
 * exchange.h - one HTTP request and its response, as handlers see them.
 *
 * net/ fills the request side (method, path, query, headers through a
 * callback, body, principal, pool) and sends the response side (status,
 * headers, body) once the handler is finished. A handler that must wait (a
 * write waiting for its durable commit) sets `pending` and, when the wait is
 * over, calls ex->resume(ex) from any thread; net/ then calls ex->cont(ex) on
 * one of its own threads to finish the response.
 * Everything is allocated from ex->pool, released after the response is sent.
 */
#ifndef CV_CORE_EXCHANGE_H
#define CV_CORE_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/pool.h"
#include "core/rc.h"

typedef enum {
	CV_PRINCIPAL_NONE,   /* not authenticated */
	CV_PRINCIPAL_ADMIN,  /* the bootstrap administrator */
	CV_PRINCIPAL_USER,   /* a person: logged in to the portal (session cookie), or through an app (access token) */
	CV_PRINCIPAL_CLIENT, /* a backend service with an OAuth access token (system/ scopes) */
} cv_principal_kind;

/* Who is calling, as established by auth/. Strings live in the request's pool. */
typedef struct cv_principal {
	cv_principal_kind kind; /* what sort of caller */
	const char *id;         /* stable id for logs and audit ("bootstrap-admin", an account id), never a secret */
	const char *role;       /* USER: "patient", "nurse", ... */
	const char *link;       /* USER: "Patient/<id>", "Practitioner/<id>" or "" */
	const char *session;    /* USER with a cookie: the session's record id (a hash, not the cookie) */
	const char *csrf;       /* USER with a cookie: the session's CSRF token, required on state changes */
	const char *scope;      /* token: the granted scopes (auth/scope syntax) */
	const char *client;     /* token: the OAuth client it was issued to */
	const char *patient;    /* USER with a token: the launch patient's id, or NULL */
} cv_principal_t;

#define CV_EX_MAX_HEADERS 16
#define CV_EX_MAX_PARAMS 32

typedef struct cv_param {
	const char *name;  /* decoded name */
	const char *value; /* decoded value */
} cv_param_t;

typedef struct cv_exchange cv_exchange_t;

struct cv_exchange {
	/* request */
	const char *method;       /* "GET", "POST", ... */
	const char *path;         /* decoded path, no query string */
	const char *route;        /* the route pattern matched ("/fhir/{type}/{id}"), for logs */
	const char *args[4];      /* path captures ({type}, {id}, {vid}) in order */
	cv_param_t params[CV_EX_MAX_PARAMS]; /* query parameters in order */
	size_t nparams;
	const char *(*header)(cv_exchange_t *ex, const char *name); /* request header or NULL */
	void *net;                /* net/'s connection state */
	const char *body;         /* request body (NUL-terminated), or NULL */
	size_t body_len;
	const char *base_url;     /* "https://host:port/fhir" as the client addressed us */
	cv_principal_t principal; /* who is calling */
	const char *request_id;   /* X-Request-Id value */
	const char *peer;         /* the client's address ("203.0.113.7"), for throttling */
	cv_pool_t *pool;          /* the request's memory */
	void *app;                /* the server context handlers need (fhir/'s cv_fhir_t) */
	void *access;             /* policy/'s rules for this principal, made on first use (fhir/) */
	bool access_made;         /* `access` was made (NULL then means unrestricted) */
	const char *decision;     /* why the last access decision went as it did (for the access log), or NULL */
	void *audit;              /* audit/'s note of what the request touched and how (cv_audit_note) */
	/* response */
	unsigned status;          /* HTTP status; 0 until set */
	const char *content_type; /* of the body */
	const char *resp_hdr[CV_EX_MAX_HEADERS][2]; /* extra headers (name, value) */
	size_t nresp_hdr;
	cv_buf_t resp;            /* the response body */
	bool no_store;            /* body may hold PHI: Cache-Control: no-store */
	/* asynchronous completion */
	bool pending;                          /* the handler will finish later */
	void (*resume)(cv_exchange_t *ex);     /* set by net/: call when the wait is over */
	void (*cont)(cv_exchange_t *ex);       /* set by the handler: finishes the response */
	void *cont_arg;                        /* the handler's state for cont */
};

/* Adds a response header (the strings must live as long as the exchange). */
cv_rc cv_exchange_add_header(cv_exchange_t *ex, const char *name, const char *value);

/* The first query parameter named name, or NULL. */
const char *cv_exchange_param(const cv_exchange_t *ex, const char *name);

/* The value of the parameter named name among p[0..n) (the last one), or
 * NULL; *dup is set when it is there more than once. */
const char *cv_param_unique(const cv_param_t *p, size_t n, const char *name, int *dup);

/* The length of this server's origin ("https://host:port") at the start of
 * ex->base_url (which ends in "/fhir"). */
size_t cv_exchange_origin_len(const cv_exchange_t *ex);

#endif
