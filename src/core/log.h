/*
 * log.h - structured, PHI-free logging as JSON lines on stderr.
 *
 * A log line is an event name plus typed fields. Callers pass only values that
 * carry no PHI: route patterns, status codes, ids of requests and principals,
 * counts, durations. Nothing from a request body or a query string is logged.
 * Thread-safe: each line is written with one write(2).
 */
#ifndef CV_CORE_LOG_H
#define CV_CORE_LOG_H

#include <stdint.h>

typedef enum { CV_LOG_DEBUG, CV_LOG_INFO, CV_LOG_WARN, CV_LOG_ERROR } cv_log_level;

typedef enum { CV_LF_STR, CV_LF_INT } cv_log_field_kind;

typedef struct cv_log_field {
	const char *key;        /* field name */
	cv_log_field_kind kind; /* which of s / i holds the value */
	const char *s;          /* string value (escaped on output) */
	int64_t i;              /* integer value */
} cv_log_field_t;

#define CV_LS(k, v) ((cv_log_field_t){ .key = (k), .kind = CV_LF_STR, .s = (v) })
#define CV_LI(k, v) ((cv_log_field_t){ .key = (k), .kind = CV_LF_INT, .i = (int64_t)(v) })

/* Lines below this level are dropped. Set once at start-up. */
void cv_log_set_level(cv_log_level lvl);

/* Sends lines to fd instead of stderr (tests). */
void cv_log_set_fd(int fd);

/* Writes {"ts":..,"level":..,"event":event, fields...}. */
void cv_log(cv_log_level lvl, const char *event, const cv_log_field_t *fields, int nfields);

/* Convenience: an event with one message string (no PHI in msg!). */
void cv_log_msg(cv_log_level lvl, const char *event, const char *msg);

#endif
