/*
 * exchange.c - small helpers on the request/response exchange.
 */
#include "core/exchange.h"

#include <string.h>

cv_rc cv_exchange_add_header(cv_exchange_t *ex, const char *name, const char *value)
{
	if (ex->nresp_hdr >= CV_EX_MAX_HEADERS)
		return CV_E_LIMIT;
	ex->resp_hdr[ex->nresp_hdr][0] = name;
	ex->resp_hdr[ex->nresp_hdr][1] = value;
	ex->nresp_hdr++;
	return CV_OK;
}

const char *cv_exchange_param(const cv_exchange_t *ex, const char *name)
{
	for (size_t i = 0; i < ex->nparams; i++)
		if (strcmp(ex->params[i].name, name) == 0)
			return ex->params[i].value;
	return NULL;
}

const char *cv_param_unique(const cv_param_t *p, size_t n, const char *name, int *dup)
{
	const char *v = NULL;
	for (size_t i = 0; i < n; i++)
		if (strcmp(p[i].name, name) == 0) {
			if (v)
				*dup = 1;
			v = p[i].value;
		}
	return v;
}

size_t cv_exchange_origin_len(const cv_exchange_t *ex)
{
	size_t n = strlen(ex->base_url);
	return n >= 5 && strcmp(ex->base_url + n - 5, "/fhir") == 0 ? n - 5 : n;
}
