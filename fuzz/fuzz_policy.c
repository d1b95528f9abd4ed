/*
 * fuzz_policy.c - the access rules' parsers on hostile input: the first line
 * is a scope list (granular queries are parsed and matched against the
 * resource), the rest a JSON document used both as a resource (a backend
 * client's decision, billing's reduced view of a Patient) and as an array of
 * Consents (provisions, actors, purposes, labels, periods). Never crashes;
 * billing's view of a Patient keeps only the elements billing may see.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/time.h"
#include "model/json.h"
#include "model/model.h"
#include "model/searchparam.h"
#include "policy/consent.h"
#include "policy/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cv_model_t *model;
static cv_sp_registry_t *reg;
static cv_policy_t *pol;

static void init_once(void)
{
	char err[256];
	size_t failed = 0;
	if (pol)
		return;
	if (cv_model_new(&model) || cv_sp_registry_new(model, &reg, &failed, err, sizeof err) ||
	    cv_policy_new(NULL, model, reg, 60000000, &pol))
		abort();
}

static void as_resource(cv_pool_t *pool, const char *scopes, json_object *res)
{
	json_object *rt;
	if (!json_object_is_type(res, json_type_object) || !json_object_object_get_ex(res, "resourceType", &rt) ||
	    !json_object_is_type(rt, json_type_string) || !cv_model_is_resource(model, json_object_get_string(rt)))
		return;
	const char *type = json_object_get_string(rt);
	cv_principal_t svc = { .kind = CV_PRINCIPAL_CLIENT, .id = "svc", .client = "svc", .scope = scopes };
	cv_access_t *a;
	cv_verdict v;
	if (cv_access_new(pol, &svc, pool, &a) == CV_OK)
		(void)cv_access_check(a, CV_ACT_FHIR_READ, type, res, &v, NULL);
	cv_principal_t bill = { .kind = CV_PRINCIPAL_USER, .id = "b", .role = "billing", .session = "s" };
	if (strcmp(type, "Patient") == 0 && cv_access_new(pol, &bill, pool, &a) == CV_OK && cv_access_view(a, type, res)) {
		json_object_object_foreach(res, key, val)
		{
			(void)val;
			const char *k = key[0] == '_' ? key + 1 : key;
			assert(!strcmp(k, "resourceType") || !strcmp(k, "id") || !strcmp(k, "meta") ||
			       !strcmp(k, "identifier") || !strcmp(k, "name") || !strcmp(k, "birthDate") ||
			       !strcmp(k, "address"));
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	init_once();
	const uint8_t *nl = memchr(data, '\n', size);
	size_t sl = nl ? (size_t)(nl - data) : size;
	char *scopes = malloc(sl + 1);
	if (!scopes)
		return 0;
	memcpy(scopes, data, sl);
	scopes[sl] = '\0';
	cv_pool_t pool;
	cv_pool_init(&pool, 0);
	json_object *doc = NULL;
	const char *err;
	cv_json_limits_t lim;
	cv_json_limits_default(&lim);
	const char *body = nl ? (const char *)nl + 1 : "";
	if (cv_json_parse(body, size - (nl ? sl + 1 : sl), &lim, &pool, &doc, &err) == CV_OK) {
		cv_json_pool_own(&pool, doc);
		as_resource(&pool, scopes, doc);
		const char *orgs[] = { "Organization/o1" };
		json_object *meta, *labels = NULL;
		if (json_object_is_type(doc, json_type_object) && json_object_object_get_ex(doc, "meta", &meta))
			json_object_object_get_ex(meta, "security", &labels);
		cv_consent_access_t ca = { .practitioner = "Practitioner/x", .orgs = orgs, .norgs = 1, .purpose = "TREAT",
					   .labels = labels, .now_us = cv_time_now_us() };
		(void)cv_consent_denies(doc, &ca, &pool);
	}
	cv_pool_release(&pool);
	free(scopes);
	return 0;
}
