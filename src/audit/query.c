/*
 * query.c - parsing the audit trail's search parameters (query.h).
 */
#include "audit/query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "core/time.h"

#define ID_MAX 128

static int valid_id(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n <= ID_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") == n;
}

/* "Type/id" with a resource-type-like type and a FHIR id. */
static int valid_reference(const char *s)
{
	const char *slash = strchr(s, '/');
	if (!slash || slash == s || slash - s > 64 || !valid_id(slash + 1) || strchr(slash + 1, '/'))
		return 0;
	for (const char *p = s; p < slash; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
			return 0;
	return s[0] >= 'A' && s[0] <= 'Z';
}

/* The code of "[system|]code". */
static const char *code_of(const char *v)
{
	const char *bar = strrchr(v, '|');
	return bar ? bar + 1 : v;
}

/* The system a type (is_type) or subtype code belongs to: REST records'
 * subtypes are FHIR's restful interactions, every other one is carevault's. */
static const char *system_of(bool is_type, const char *code)
{
	static const char *const rest[] = { "read", "vread", "update", "patch", "delete", "history", "history-instance",
					    "history-type", "history-system", "create", "search", "search-type",
					    "search-system", "search-compartment", "capabilities", "transaction", "batch",
					    "operation" };
	if (is_type)
		return strcmp(code, "rest") == 0 ? CV_AUDIT_SYS_EVENT_TYPE : CV_AUDIT_SYS_DCM;
	for (size_t i = 0; i < sizeof rest / sizeof rest[0]; i++)
		if (strcmp(code, rest[i]) == 0)
			return CV_AUDIT_SYS_INTERACTION;
	return CV_AUDIT_SYS_SUBTYPE;
}

/* type= or subtype=[system|]code: the code; a system other than the code's
 * matches nothing (no stored code has a '|'). */
static const char *token_code(bool is_type, const char *v, cv_pool_t *pool)
{
	const char *code = code_of(v);
	if (code == v || (size_t)(code - 1 - v) == 0)
		return cv_pool_strdup(pool, code);
	size_t slen = (size_t)(code - 1 - v);
	const char *sys = system_of(is_type, code);
	bool same = strlen(sys) == slen && strncmp(v, sys, slen) == 0;
	if (!is_type && strcmp(code, "other") == 0) /* a subtype no one named: either system's records */
		same = same || (strlen(CV_AUDIT_SYS_INTERACTION) == slen && strncmp(v, CV_AUDIT_SYS_INTERACTION, slen) == 0);
	return same ? cv_pool_strdup(pool, code) : "|no-such-system";
}

static cv_rc add_key(cv_store_audit_query_t *q, const char *key, char *why, size_t whylen)
{
	if (!key)
		return CV_E_NOMEM;
	if (q->nkeys >= CV_AUDIT_QUERY_KEYS) {
		snprintf(why, whylen, "at most %d patient and entity criteria", CV_AUDIT_QUERY_KEYS);
		return CV_E_INVALID;
	}
	q->keys[q->nkeys++] = key;
	return CV_OK;
}

/* date=[prefix]value: narrows [from, to]. */
static cv_rc date_param(cv_store_audit_query_t *q, const char *v, char *why, size_t whylen)
{
	static const char *const prefixes[] = { "eq", "ge", "gt", "le", "lt" };
	int which = 0;
	for (int i = 0; i < 5; i++)
		if (strncmp(v, prefixes[i], 2) == 0) {
			which = i;
			v += 2;
			break;
		}
	int64_t lo, hi;
	int precision;
	if (cv_time_range(v, &lo, &hi, &precision)) {
		snprintf(why, whylen, "date takes [eq|ge|gt|le|lt] and a FHIR date, dateTime or instant");
		return CV_E_INVALID;
	}
	int64_t from = which == 0 || which == 1 ? lo : which == 2 ? hi + 1 : 0;
	int64_t to = which == 0 || which == 3 ? hi : which == 4 ? lo - 1 : 0;
	if ((which == 0 || which == 3 || which == 4) && to == 0)
		to = -1; /* an upper bound at the epoch itself: 0 would mean none (no record is that old) */
	if (from && (!q->from_us || from > q->from_us))
		q->from_us = from;
	if (to && (!q->to_us || to < q->to_us))
		q->to_us = to;
	return CV_OK;
}

static int is_true(const char *v)
{
	return strcmp(v, "true") == 0;
}

/* One parameter. */
static cv_rc param(const cv_param_t *p, unsigned count_max, cv_pool_t *pool, cv_store_audit_query_t *q, char *why,
		   size_t whylen)
{
	const char *k = p->name, *v = p->value;
	if (strcmp(k, "patient") == 0) {
		const char *id = strncmp(v, "Patient/", 8) == 0 ? v + 8 : v;
		if (valid_id(id))
			return add_key(q, cv_audit_key_patient(pool, id), why, whylen);
	} else if (strcmp(k, "entity") == 0) {
		if (valid_reference(v))
			return add_key(q, cv_audit_key_entity(pool, v), why, whylen);
	} else if (strcmp(k, "agent") == 0) {
		if (!q->agent && valid_id(v) && (q->agent = cv_pool_strdup(pool, v)) &&
		    (q->agent_key = cv_audit_key_app(pool, v)))
			return CV_OK;
	} else if (strcmp(k, "date") == 0) {
		return date_param(q, v, why, whylen);
	} else if (strcmp(k, "action") == 0) {
		if (!q->action && strlen(v) == 1 && strchr("CRUDE", v[0])) {
			q->action = v[0];
			return CV_OK;
		}
	} else if (strcmp(k, "outcome") == 0) {
		if (q->outcome < 0 && (!strcmp(v, "0") || !strcmp(v, "4") || !strcmp(v, "8") || !strcmp(v, "12"))) {
			q->outcome = (int)strtol(v, NULL, 10);
			return CV_OK;
		}
	} else if (strcmp(k, "type") == 0 || strcmp(k, "subtype") == 0) {
		const char **slot = k[0] == 't' ? &q->kind : &q->subtype;
		if (!*slot && valid_id(code_of(v)) && (*slot = token_code(k[0] == 't', v, pool)))
			return CV_OK;
	} else if (strcmp(k, "break-glass") == 0 || strcmp(k, "alert") == 0 || strcmp(k, "denied") == 0) {
		if (is_true(v)) {
			q->flags |= k[0] == 'b' ? CV_AUDIT_F_BREAK_GLASS : k[0] == 'a' ? CV_AUDIT_F_ALERT : CV_AUDIT_F_DENIED;
			return CV_OK;
		}
	} else if (strcmp(k, "_count") == 0) {
		char *end;
		long c = strtol(v, &end, 10);
		if (*v && !*end && c >= 1) {
			q->limit = c > (long)count_max ? count_max : (unsigned)c;
			return CV_OK;
		}
	} else if (strcmp(k, "_cursor") == 0) {
		char *end;
		long long c = strtoll(v, &end, 10);
		if (*v && !*end && c >= 1) {
			q->before_pos = c;
			return CV_OK;
		}
	} else if (strcmp(k, "_format") == 0 || strcmp(k, "_pretty") == 0) {
		return CV_OK;
	} else {
		snprintf(why, whylen, "unknown search parameter '%.40s' for AuditEvent: use patient, entity, agent, date, "
			 "action, outcome, type, subtype, break-glass, alert, denied, _count", k);
		return CV_E_INVALID;
	}
	snprintf(why, whylen, "the value of '%.40s' is not valid here (or the parameter is repeated)", k);
	return CV_E_INVALID;
}

/* Whether one of the first i parameters is called name. */
static bool named_before(const cv_param_t *params, size_t i, const char *name)
{
	for (size_t j = 0; j < i; j++)
		if (strcmp(params[j].name, name) == 0)
			return true;
	return false;
}

cv_rc cv_audit_query_parse(const cv_param_t *params, size_t n, unsigned count_default, unsigned count_max,
			   cv_pool_t *pool, cv_store_audit_query_t *q, char *why, size_t whylen)
{
	memset(q, 0, sizeof *q);
	q->outcome = -1;
	q->limit = count_default;
	cv_rc rc = CV_OK;
	for (size_t i = 0; !rc && i < n; i++)
		if ((strcmp(params[i].name, "_count") == 0 || strcmp(params[i].name, "_cursor") == 0) &&
		    named_before(params, i, params[i].name)) {
			snprintf(why, whylen, "'%s' is repeated", params[i].name);
			rc = CV_E_INVALID;
		}
	for (size_t i = 0; !rc && i < n; i++)
		rc = param(&params[i], count_max, pool, q, why, whylen);
	if (!rc && q->from_us && q->to_us && q->from_us > q->to_us) {
		snprintf(why, whylen, "the date range is empty");
		rc = CV_E_INVALID;
	}
	return rc;
}
