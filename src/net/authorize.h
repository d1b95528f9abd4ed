/*
 * authorize.h - the OAuth 2.0 authorization endpoint of the SMART App Launch
 * (standalone launch): sign-in with password and second factor, then a
 * consent screen where the person may untick scopes and, for staff, choose
 * the patient; it ends in a redirect to the app with a one-time code.
 * ex->app must be the cv_fhir_t.
 *
 *   GET  /auth/authorize?response_type=code&client_id&redirect_uri&scope&state
 *        &aud=<FHIR base>&code_challenge&code_challenge_method=S256[&nonce]
 *   POST /auth/authorize   the sign-in form (step=login) or the consent form
 *                          (step=consent), application/x-www-form-urlencoded
 *
 * The pages are server-rendered HTML without scripts, sent with a strict
 * Content-Security-Policy (frame-ancestors 'none': the consent screen cannot
 * be framed and clicked through) and Cache-Control: no-store. Every step
 * checks the whole request again (nothing is kept between steps but the
 * session): an unknown client or a redirect URI not registered exactly gets
 * an error page and no redirect; any other error goes back to the app as
 * RFC 6749 error parameters with its state. A POST must come from this
 * origin (its Origin header, which browsers send with every POST; without
 * it the POST is refused), and the consent form carries the session's CSRF
 * token.
 */
#ifndef CV_NET_AUTHORIZE_H
#define CV_NET_AUTHORIZE_H

#include "core/exchange.h"

void cv_authorize_get(cv_exchange_t *ex);
void cv_authorize_post(cv_exchange_t *ex);

#endif
