/*
 * oauth.h - the OAuth 2.0 token endpoint for SMART Backend Services and the
 * SMART configuration document. ex->app must be the cv_fhir_t.
 *
 *   GET  /.well-known/smart-configuration, /fhir/.well-known/smart-configuration
 *   POST /auth/token   grant_type=client_credentials, client_assertion_type=
 *                      urn:ietf:params:oauth:client-assertion-type:jwt-bearer,
 *                      client_assertion=<JWT signed RS384|ES384>, scope=<system scopes>
 *
 * Errors are RFC 6749 JSON ({"error","error_description"}): 400
 * invalid_request / unsupported_grant_type / invalid_scope, 401 invalid_client
 * (one description for every assertion failure: nothing that helps an attacker).
 */
#ifndef CV_NET_OAUTH_H
#define CV_NET_OAUTH_H

#include "core/exchange.h"

void cv_oauth_smart_configuration(cv_exchange_t *ex);
void cv_oauth_token(cv_exchange_t *ex);

#endif
