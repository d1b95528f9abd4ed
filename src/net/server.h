/*
 * server.h - the HTTPS server: libmicrohttpd over GnuTLS, running the
 * request pipeline for every request:
 *   limits → request id → route → auth (bearer) → policy → handler → response
 * with security headers on every response and one JSON access-log line per
 * request (route pattern, never the query string; no PHI).
 */
#ifndef CV_NET_SERVER_H
#define CV_NET_SERVER_H

#include <stddef.h>

#include "auth/auth.h"
#include "core/config.h"
#include "core/exchange.h"
#include "core/rc.h"
#include "policy/policy.h"

/* A route: method, path pattern ("/fhir/{type}/{id}"; {x} captures one
 * segment; earlier routes win), the policy action it needs, and its handler. */
typedef struct cv_route {
	const char *method;
	const char *pattern;
	cv_action action;
	void (*handler)(cv_exchange_t *ex);
} cv_route_t;

typedef struct cv_server cv_server_t;

/* Starts serving. Every route must have an action (else CV_E_INVALID: deny
 * by default is checked at start). app is handed to handlers as ex->app. */
cv_rc cv_server_start(const cv_config_t *cfg, const cv_route_t *routes, size_t nroutes, void *app,
		      const cv_auth_t *auth, cv_server_t **out, char *err, size_t errlen);

/* Stops accepting connections, lets in-flight requests finish (at most
 * `grace_s` seconds), closes everything and frees the server. */
void cv_server_stop(cv_server_t *srv, unsigned grace_s);

/* Requests being processed right now. */
unsigned cv_server_active(const cv_server_t *srv);

#endif
