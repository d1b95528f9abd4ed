/*
 * outcome.h - lists of issues, and their FHIR OperationOutcome form.
 *
 * Validators and handlers add issues (severity, FHIR issue-type code,
 * diagnostics, expression) to a cv_outcome_t that lives in the request pool.
 * Diagnostics say what was wrong and how to fix it; they never echo values
 * from the input (they may be PHI), only element names and positions.
 */
#ifndef CV_MODEL_OUTCOME_H
#define CV_MODEL_OUTCOME_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/pool.h"
#include "core/rc.h"

typedef enum { CV_SEV_FATAL, CV_SEV_ERROR, CV_SEV_WARNING, CV_SEV_INFORMATION } cv_severity;

typedef struct cv_issue {
	struct cv_issue *next;
	cv_severity severity;
	const char *code;        /* FHIR IssueType: "structure", "required", "value", "invalid", ... */
	const char *diagnostics; /* human text, no PHI */
	const char *expression;  /* FHIRPath location such as "Patient.name[0].given[1]", or NULL */
} cv_issue_t;

typedef struct cv_outcome {
	cv_pool_t *pool;   /* where issues are allocated */
	cv_issue_t *head;  /* first issue */
	cv_issue_t *tail;  /* last issue */
	size_t count;      /* issues held */
	size_t max;        /* most issues kept; more set `truncated` */
	bool truncated;    /* issues were dropped past max */
} cv_outcome_t;

/* Prepares an empty outcome allocating from pool, keeping at most max issues (0: 100). */
void cv_outcome_init(cv_outcome_t *oo, cv_pool_t *pool, size_t max);

/* Adds an issue. expression may be NULL. CV_E_NOMEM if the pool is exhausted. */
cv_rc cv_outcome_add(cv_outcome_t *oo, cv_severity sev, const char *code, const char *expression,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Number of issues of severity error or fatal. */
size_t cv_outcome_errors(const cv_outcome_t *oo);

/* Appends the OperationOutcome resource as JSON to out. */
cv_rc cv_outcome_to_json(const cv_outcome_t *oo, cv_buf_t *out);

#endif
