/*
 * admin.h - the admin API for accounts (policy action admin.users) and OAuth
 * clients (admin.clients): the administrator only. ex->app must be the
 * cv_fhir_t (for its store and JSON limits). Bodies and answers are JSON (application/json); errors are
 * OperationOutcomes. Answers that show an enrolment (the otpauth URI and the
 * recovery codes) are marked no-store.
 *
 *   GET  /admin/users                  the accounts
 *   POST /admin/users                  {"username","role","password"[,"patient"|"practitioner"][,"mfa"]}
 *   GET  /admin/users/{id}             one account
 *   POST /admin/users/{id}/{action}    disable | enable | revoke-sessions | reset-mfa
 *
 *   GET  /admin/clients                the registered OAuth clients
 *   POST /admin/clients                {"name","type"[,"redirect_uris"][,"scope"][,"jwks"|"jwks_url"]}
 *                                      (a confidential client's client_secret is shown this once;
 *                                      a jwks_url is fetched before the answer, and a failed
 *                                      fetch is a 422 that says why, never quoting the response)
 *   GET  /admin/clients/{id}           one client
 *   POST /admin/clients/{id}/{action}  disable | enable
 *
 *   GET  /admin/erasures                the erasure requests (policy action admin.erasures)
 *   POST /admin/erasures                {"patient","reason"}: a request (202), pending for a day
 *   GET  /admin/erasures/{id}           one request
 *   POST /admin/erasures/{id}/{action}  approve (by another administrator than the requester: the
 *                                      patient's keys are destroyed, store.h cv_store_erase) | reject
 *
 * A client is shown as {"client_id","name","type","redirect_uris","scope",
 * "disabled","created_us"[,"jwks_keys"][,"jwks_url","jwks_fetched_us"]}: never its secret's hash, and of a
 * backend client's JWKS only the number of keys.
 */
#ifndef CV_NET_ADMIN_H
#define CV_NET_ADMIN_H

#include "core/exchange.h"

void cv_admin_users_list(cv_exchange_t *ex);
void cv_admin_users_create(cv_exchange_t *ex);
void cv_admin_user_read(cv_exchange_t *ex);
void cv_admin_user_action(cv_exchange_t *ex);

void cv_admin_clients_list(cv_exchange_t *ex);
void cv_admin_clients_create(cv_exchange_t *ex);
void cv_admin_client_read(cv_exchange_t *ex);
void cv_admin_client_action(cv_exchange_t *ex);

void cv_admin_erasures_list(cv_exchange_t *ex);
void cv_admin_erasures_create(cv_exchange_t *ex);
void cv_admin_erasure_read(cv_exchange_t *ex);
void cv_admin_erasure_action(cv_exchange_t *ex);

#endif
