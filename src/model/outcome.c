/*
 * outcome.c - issue lists and their OperationOutcome JSON.
 */
#include "model/outcome.h"

#include <stdarg.h>
#include <stdio.h>

#define OUTCOME_DEFAULT_MAX 100

static const char *const severity_names[] = { "fatal", "error", "warning", "information" };

void cv_outcome_init(cv_outcome_t *oo, cv_pool_t *pool, size_t max)
{
	oo->pool = pool;
	oo->head = oo->tail = NULL;
	oo->count = 0;
	oo->max = max ? max : OUTCOME_DEFAULT_MAX;
	oo->truncated = false;
}

cv_rc cv_outcome_add(cv_outcome_t *oo, cv_severity sev, const char *code, const char *expression,
		     const char *fmt, ...)
{
	if (oo->count >= oo->max) {
		oo->truncated = true;
		return CV_OK;
	}
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	cv_issue_t *is = cv_pool_alloc(oo->pool, sizeof *is);
	if (!is)
		return CV_E_NOMEM;
	is->severity = sev;
	is->code = cv_pool_strdup(oo->pool, code);
	is->diagnostics = cv_pool_strdup(oo->pool, msg);
	is->expression = expression ? cv_pool_strdup(oo->pool, expression) : NULL;
	if (!is->code || !is->diagnostics || (expression && !is->expression))
		return CV_E_NOMEM;
	if (oo->tail)
		oo->tail->next = is;
	else
		oo->head = is;
	oo->tail = is;
	oo->count++;
	return CV_OK;
}

size_t cv_outcome_errors(const cv_outcome_t *oo)
{
	size_t n = 0;
	for (const cv_issue_t *is = oo->head; is; is = is->next)
		n += is->severity == CV_SEV_ERROR || is->severity == CV_SEV_FATAL;
	return n;
}

static cv_rc string_field(cv_buf_t *out, const char *name, const char *value)
{
	cv_rc rc = cv_buf_printf(out, ",\"%s\":\"", name);
	if (!rc)
		rc = cv_buf_json_escape(out, value);
	if (!rc)
		rc = cv_buf_puts(out, "\"");
	return rc;
}

static cv_rc issue_json(cv_buf_t *out, const cv_issue_t *is, int first)
{
	cv_rc rc = cv_buf_printf(out, "%s{\"severity\":\"%s\"", first ? "" : ",", severity_names[is->severity]);
	if (!rc)
		rc = string_field(out, "code", is->code);
	if (!rc && is->diagnostics)
		rc = string_field(out, "diagnostics", is->diagnostics);
	if (!rc && is->expression) {
		rc = cv_buf_puts(out, ",\"expression\":[\"");
		if (!rc)
			rc = cv_buf_json_escape(out, is->expression);
		if (!rc)
			rc = cv_buf_puts(out, "\"]");
	}
	if (!rc)
		rc = cv_buf_puts(out, "}");
	return rc;
}

cv_rc cv_outcome_to_json(const cv_outcome_t *oo, cv_buf_t *out)
{
	cv_rc rc = cv_buf_puts(out, "{\"resourceType\":\"OperationOutcome\",\"issue\":[");
	int first = 1;
	for (const cv_issue_t *is = oo->head; !rc && is; is = is->next, first = 0)
		rc = issue_json(out, is, first);
	if (!rc && oo->truncated)
		rc = cv_buf_printf(out, "%s{\"severity\":\"information\",\"code\":\"informational\",\"diagnostics\":"
					"\"more issues were found; only the first %zu are listed\"}", first ? "" : ",",
				   oo->max);
	if (!rc && first && !oo->truncated)
		rc = cv_buf_puts(out, "{\"severity\":\"information\",\"code\":\"informational\"}");
	if (!rc)
		rc = cv_buf_puts(out, "]}");
	return rc;
}
