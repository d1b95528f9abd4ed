/*
 * alerts.h - finding the insider and intruder patterns in the trail (private
 * to audit/).
 *
 * The trail's thread reads the records written since its last look (every
 * node's: the chain is shared), without opening them: agent, flags, counts
 * and blinded patient keys are enough. Per agent it keeps one-minute counts
 * for the last hour and the distinct patients seen, and raises an alert when
 * a threshold of the configuration is passed:
 *   failed-logins          failed logins or MFA codes of one account (or of
 *                          unknown names) in 15 minutes
 *   many-patients          distinct patients one agent read in an hour
 *   bulk-export            resources one agent received in an hour
 *   outside-relationships  accesses refused by the policy in an hour
 * Each alert is raised once per agent and hour, across nodes (a claim in the
 * store decides which node raises it).
 */
#ifndef CV_AUDIT_ALERTS_H
#define CV_AUDIT_ALERTS_H

#include "audit/audit.h"

typedef struct cv_alerts cv_alerts_t;

cv_rc cv_alerts_new(cv_alerts_t **out);

/* Starts reading at the trail's current head. */
cv_rc cv_alerts_begin(cv_alerts_t *al, cv_store_t *s);

/* Reads the new records and raises what they show. */
void cv_alerts_scan(cv_alerts_t *al, cv_audit_t *a, cv_store_t *s, const cv_audit_config_t *cfg);

void cv_alerts_free(cv_alerts_t *al);

#endif
