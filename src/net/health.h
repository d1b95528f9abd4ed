/*
 * health.h - /healthz (the process answers) and /readyz (and its store does).
 * ex->app must be the cv_fhir_t.
 */
#ifndef CV_NET_HEALTH_H
#define CV_NET_HEALTH_H

#include "core/exchange.h"

void cv_health_live(cv_exchange_t *ex);
void cv_health_ready(cv_exchange_t *ex);

#endif
