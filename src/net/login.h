/*
 * login.h - portal login and one's own sessions (auth/session does the work).
 * ex->app must be the cv_fhir_t (its store and configuration).
 *
 *   POST /auth/login        {"username","password"[,"code"|"recovery_code"]} → 200, session cookie
 *   GET  /auth/session      the session: who, its CSRF token, when it started
 *   GET  /auth/sessions     one's active sessions
 *   POST /auth/logout       ends this session (needs X-CSRF-Token)
 *   POST /auth/logout-all   ends every session and token of the account (needs X-CSRF-Token)
 */
#ifndef CV_NET_LOGIN_H
#define CV_NET_LOGIN_H

#include <stdint.h>

#include "core/exchange.h"

void cv_login(cv_exchange_t *ex);

/* Sets the session cookie (__Host-, Secure, HttpOnly, SameSite=Strict, Path=/). */
void cv_login_set_cookie(cv_exchange_t *ex, const char *token, unsigned max_age);

/* Adds Retry-After: seconds (a throttled login). */
void cv_login_retry_after(cv_exchange_t *ex, int64_t seconds);
void cv_login_session(cv_exchange_t *ex);
void cv_login_sessions(cv_exchange_t *ex);
void cv_logout(cv_exchange_t *ex);
void cv_logout_all(cv_exchange_t *ex);

#endif
