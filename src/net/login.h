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

#include "auth/session.h"
#include "core/exchange.h"

void cv_login(cv_exchange_t *ex);

/* Tries a login (auth/session) for ex and wipes in->password. On
 * CV_LOGIN_OK the new session's cookie is set (__Host-, Secure, HttpOnly,
 * SameSite=Strict, Path=/) and info is the session; on CV_LOGIN_THROTTLED
 * Retry-After is set. The caller answers: CV_OK unless the store failed. */
cv_rc cv_login_attempt(cv_exchange_t *ex, cv_login_t *in, cv_login_result *res, cv_session_info_t *info);
void cv_login_session(cv_exchange_t *ex);
void cv_login_sessions(cv_exchange_t *ex);
void cv_logout(cv_exchange_t *ex);
void cv_logout_all(cv_exchange_t *ex);

#endif
