/*
 * fhir.h - the FHIR R4 REST layer: interactions on resources.
 *
 * Handlers take a cv_exchange_t whose route captures hold the resource type,
 * id and version id, and fill in its response: FHIR JSON or an
 * OperationOutcome. Writes complete asynchronously (ex->pending) once the
 * store has made them durable. cv_fhir_t is the shared, read-only context.
 */
#ifndef CV_FHIR_FHIR_H
#define CV_FHIR_FHIR_H

#include <stdarg.h>

#include "core/config.h"
#include "core/exchange.h"
#include "model/json.h"
#include "model/model.h"
#include "model/searchparam.h"
#include "policy/policy.h"
#include "store/store.h"

typedef struct cv_fhir {
	cv_store_t *store;          /* where resources live */
	const cv_model_t *model;    /* the R4 definitions */
	cv_sp_registry_t *search;   /* the R4 search parameters */
	const cv_config_t *cfg;     /* frozen configuration */
	cv_json_limits_t limits;    /* bounds on request JSON */
	char *capability;           /* the CapabilityStatement JSON, built once */
	struct cv_idkey *idkey;     /* the OpenID Connect id-token signing key (the server loads it) */
	cv_policy_t *policy;        /* the resource-level access decisions */
	struct cv_audit *audit;     /* the audit trail (alerts; NULL in tools that serve nothing) */
	size_t capability_len;
} cv_fhir_t;

/* Builds the context (and the CapabilityStatement). */
cv_rc cv_fhir_init(cv_fhir_t *f, cv_store_t *s, const cv_model_t *m, const cv_config_t *cfg);

/* Releases what cv_fhir_init made. */
void cv_fhir_release(cv_fhir_t *f);

/* Interactions. Route captures: args[0] type, args[1] id, args[2] version id. */
void cv_fhir_metadata(cv_exchange_t *ex);
void cv_fhir_create(cv_exchange_t *ex);
void cv_fhir_read(cv_exchange_t *ex);
void cv_fhir_vread(cv_exchange_t *ex);
void cv_fhir_update(cv_exchange_t *ex);
void cv_fhir_delete(cv_exchange_t *ex);
void cv_fhir_history_instance(cv_exchange_t *ex);
void cv_fhir_history_type(cv_exchange_t *ex);
void cv_fhir_history_system(cv_exchange_t *ex);
void cv_fhir_search_type(cv_exchange_t *ex);
void cv_fhir_everything(cv_exchange_t *ex);
void cv_fhir_break_glass(cv_exchange_t *ex);
void cv_fhir_access_report(cv_exchange_t *ex); /* GET /fhir/Patient/{id}/$access-report */

/* The audit trail through the API (fhir/auditevent.c): AuditEvent reads
 * and searches go to the trail, and every write of one answers 405. */
bool cv_fhir_is_audit(const cv_exchange_t *ex);
void cv_fhir_audit_read(cv_exchange_t *ex);
void cv_fhir_audit_search(cv_exchange_t *ex);
void cv_fhir_audit_readonly(cv_exchange_t *ex);  /* POST /fhir/Patient/{id}/$break-glass */   /* GET /fhir/Patient/{id}/$everything */  /* GET /fhir/{type}, POST /fhir/{type}/_search */

/* Brings the search index up to date: when the store's index was built by
 * another version of the extraction rules (or never, after an upgrade or a
 * store copy), reindexes every current resource. progress may be NULL. */
cv_rc cv_fhir_reindex(cv_fhir_t *f, void (*progress)(void *arg, uint64_t done), void *arg);

/* The index entries of a resource about to be written (in pool). */
cv_rc cv_fhir_index(const cv_fhir_t *f, json_object *obj, cv_pool_t *pool, const cv_ix_entry_t **out, size_t *n);

/* Request checks shared by the interactions; each answers the exchange itself
 * (406, 404) and returns 0 when the request cannot go on. */
int cv_fhir_negotiate(cv_exchange_t *ex);   /* Accept / _format allow FHIR JSON */
int cv_fhir_type_ok(cv_exchange_t *ex);     /* args[0] is a known resource type */
int cv_fhir_id_ok(cv_exchange_t *ex);       /* args[1] is a syntactically valid id */

/* Parses the request body as a JSON object with a resourceType (checking
 * Content-Type); answers 400/415 itself and returns 0 when it is not one. */
int cv_fhir_parse_body(cv_exchange_t *ex, json_object **out);

/* True if id is a valid FHIR id (1 to 64 of A-Z a-z 0-9 - .). */
int cv_fhir_valid_id(const char *id);

/* Sets id and meta.versionId / meta.lastUpdated (keeping the rest of meta). */
cv_rc cv_fhir_stamp(json_object *obj, const char *id, int64_t version, int64_t us);

/* Runs the search `query` (URL query syntax: "identifier=a%7Cb&active=true")
 * on `type` (as acc may see it; NULL: everything) and puts the logical ids of up to max matches in ids; *n gets how
 * many were found, max + 1 meaning "more than max". CV_E_INVALID with issues
 * in oo for a bad query. */
cv_rc cv_fhir_search_ids(cv_fhir_t *f, cv_access_t *acc, cv_pool_t *pool, const char *type, const char *query,
			 const char *base_url, const char **ids, size_t max, size_t *n, cv_outcome_t *oo);

/* The same, from decoded parameters. */
cv_rc cv_fhir_search_ids_params(cv_fhir_t *f, cv_access_t *acc, cv_pool_t *pool, const char *type,
				const cv_param_t *params, size_t np, const char *base_url, const char **ids, size_t max,
				size_t *n, cv_outcome_t *oo);

/* The access rules for this request's principal (NULL: unrestricted); answers
 * the exchange itself (503) and returns 0 when they cannot be read. */
int cv_fhir_access(cv_exchange_t *ex, cv_access_t **out);

/* Parses a stored body. pool given: the tree is released with it; NULL: the
 * caller owns it (json_object_put, or hand it to a pool). */
/* Notes for the audit trail that version v of type/id was shown or changed
 * (obj: its parsed body, or NULL to parse it when its patients are not
 * remembered). */
void cv_fhir_audit_shown(cv_exchange_t *ex, const cv_store_version_t *v, const char *id, json_object *obj);

/* Notes the patients of stored version v of id (a tombstone: of the version
 * it deleted) for the audit trail, without naming the resource. */
void cv_fhir_audit_patients_of(cv_exchange_t *ex, const cv_store_version_t *v, const char *id);
/* A refused request's record names what it asked for: type/id (and the id
 * of a Patient) and the patients of v (the version the handler read), or of
 * obj (a refused create's content). With neither (a request refused before
 * its handler), the store is not read: the refusal costs nothing more and
 * takes no longer whether the resource exists or not. Nothing of it reaches
 * the caller. */
void cv_fhir_audit_refused(cv_exchange_t *ex, const char *type, const char *id, const cv_store_version_t *v,
			   json_object *obj);
/* Notes that the request relied on break-glass (when it did), and which of
 * pats (a resource's patients) it reached through the grant. */
void cv_fhir_audit_glass(cv_exchange_t *ex, cv_access_t *acc, const char *const *pats, size_t n);

cv_rc cv_fhir_parse_stored(const cv_store_version_t *v, cv_pool_t *pool, json_object **out);

/* The text a conditional create's claim is named after: type and criteria,
 * and for a restricted caller (the exchange's access made and not NULL) its
 * principal, so that another caller's claim on criteria matching what this
 * one cannot see never shows through as a 409. In the exchange's pool. */
const char *cv_fhir_claim_text(cv_exchange_t *ex, const char *type, const char *criteria);

/* Decides whether acc may see version v of type/id (v->type) for act:
 * parses it (into *obj, in the exchange's pool, when obj is not NULL and v
 * is not a tombstone); a tombstone is visible when the version before it was. */
cv_rc cv_fhir_visible(cv_exchange_t *ex, cv_access_t *acc, cv_action act, const char *id,
		      const cv_store_version_t *v, json_object **obj, cv_verdict *out);

/* Conditional update and delete: PUT / DELETE /fhir/{type}?criteria. */
void cv_fhir_update_conditional(cv_exchange_t *ex);
void cv_fhir_delete_conditional(cv_exchange_t *ex);

/* POST /fhir with a transaction or batch Bundle. */
void cv_fhir_bundle(cv_exchange_t *ex);

/* Runs a transaction Bundle outside HTTP (bulk import), as POST /fhir would,
 * with `extra` (a PUT_META write, or NULL) committed in the same database
 * transaction; waits for the commit. *status gets the HTTP status the request
 * would have had, out the response body (transaction-response or
 * OperationOutcome). Call from a thread that may block. */
cv_rc cv_fhir_transaction_sync(cv_fhir_t *f, const char *body, size_t len, cv_store_write_t *extra, cv_pool_t *pool,
			       unsigned *status, cv_buf_t *out);

/* The one mapping from cv_rc to an HTTP status. */
unsigned cv_fhir_status(cv_rc rc);

/* Answers with status and an OperationOutcome of one error issue of FHIR
 * issue type `code`; diagnostics must not hold PHI. */
void cv_fhir_error(cv_exchange_t *ex, unsigned status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Answers with status and the outcome's issues as an OperationOutcome. */
void cv_fhir_outcome(cv_exchange_t *ex, unsigned status, const cv_outcome_t *oo);

/* Answers with the status for rc and an OperationOutcome (the outcome's issues
 * when oo is not NULL, else one issue with `what`). */
void cv_fhir_fail(cv_exchange_t *ex, cv_rc rc, const cv_outcome_t *oo, const char *what);

/* What a write touching an erased patient's data is told (410). */
#define CV_FHIR_ERASED_TEXT "this data belongs to a patient whose records were erased: it can no longer be " \
			    "read or written"

#endif
