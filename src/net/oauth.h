/*
 * oauth.h - the OAuth 2.0 endpoints besides authorization (net/authorize)
 * and the metadata documents. ex->app must be the cv_fhir_t.
 *
 *   GET  /.well-known/smart-configuration (and under /fhir)   SMART App Launch 2.x
 *   GET  /.well-known/openid-configuration (and under /fhir)  OpenID Connect discovery
 *   GET  /.well-known/oauth-authorization-server              RFC 8414
 *   GET  /.well-known/jwks.json                               the id-token key (RS256)
 *   POST /auth/token       grant_type=authorization_code (code, redirect_uri,
 *                          code_verifier, client auth), refresh_token
 *                          (refresh_token[, scope], client auth), or
 *                          client_credentials (private_key_jwt assertion, scope)
 *   POST /auth/introspect  token=...  (RFC 7662; a confidential app or a backend service)
 *   POST /auth/revoke      token=...  (RFC 7009; any app, for its own tokens)
 *
 * Errors are RFC 6749 JSON ({"error","error_description"}): 400
 * invalid_request / invalid_grant / unsupported_grant_type / invalid_scope,
 * 401 invalid_client. One description covers every way a credential can be
 * wrong: nothing that helps an attacker.
 */
#ifndef CV_NET_OAUTH_H
#define CV_NET_OAUTH_H

#include "core/exchange.h"

void cv_oauth_smart_configuration(cv_exchange_t *ex);
void cv_oauth_token(cv_exchange_t *ex);
void cv_oauth_introspect(cv_exchange_t *ex);
void cv_oauth_revoke(cv_exchange_t *ex);
void cv_oauth_openid_configuration(cv_exchange_t *ex);
void cv_oauth_server_metadata(cv_exchange_t *ex);
void cv_oauth_jwks(cv_exchange_t *ex);

#endif
