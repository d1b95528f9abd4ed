/*
 * audit.h - the audit trail: an AuditEvent for every access, allowed or
 * denied, hash-chained in the store, with signed checkpoints copied outside
 * it, and alerts for the patterns of insiders and intruders.
 *
 * How a request is recorded (DESIGN.md invariant 2):
 * - handlers note what they touched (cv_audit_resource, cv_audit_patient)
 *   and what kind of event it was (cv_audit_kind) on the exchange;
 * - a FHIR write puts its record in the same store transaction as the write
 *   (cv_audit_attach): no data write commits without its record;
 * - net/ asks for the record of every other audited request once the
 *   handler is done (cv_audit_request) and answers only once it is durable:
 *   a read is never answered without its record. The committer's group
 *   commits keep that to one fsync for many requests.
 *
 * Records are FHIR AuditEvents shaped as IHE Basic Audit Log Patterns (BALP):
 * type "rest" with the RESTful interaction as subtype for FHIR interactions,
 * DICOM codes for logins (110114), security alerts (110113), exports
 * (110106) and application activity (110100); the agent (account or client,
 * role, network address), the entities (resources, the patient, the query),
 * the purpose of use, and the outcome. They hold PHI (queries, references),
 * so their bodies are sealed like resources; the chain covers the stored,
 * sealed bytes.
 */
#ifndef CV_AUDIT_AUDIT_H
#define CV_AUDIT_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/exchange.h"
#include "core/rc.h"
#include "crypto/crypto.h"
#include "store/store.h"

/* ---- one record ------------------------------------------------------------ */

typedef enum {
	CV_AUDIT_REST,        /* a FHIR interaction (subtype: the restful-interaction code) */
	CV_AUDIT_LOGIN,       /* user authentication: login, logout, MFA (DICOM 110114) */
	CV_AUDIT_SECURITY,    /* tokens, user and client administration, break-glass (DICOM 110113 no;
	                         carevault's "security" type) */
	CV_AUDIT_ALERT,       /* a security alert (DICOM 110113) */
	CV_AUDIT_EXPORT,      /* data exported in bulk (DICOM 110106) */
	CV_AUDIT_APPLICATION, /* start, stop, configuration and key changes (DICOM 110100) */
} cv_audit_type;

/* The code systems of a record's type and subtype codes. */
#define CV_AUDIT_SYS_DCM "http://dicom.nema.org/resources/ontology/DCM"
#define CV_AUDIT_SYS_EVENT_TYPE "http://terminology.hl7.org/CodeSystem/audit-event-type" /* "rest" */
#define CV_AUDIT_SYS_INTERACTION "http://hl7.org/fhir/restful-interaction" /* a REST record's subtype */
#define CV_AUDIT_SYS_SUBTYPE "https://carevault.dev/fhir/CodeSystem/audit-subtype" /* any other's */

#define CV_AUDIT_ENTITIES_MAX 100  /* resources named in one record (nres counts them all) */
#define CV_AUDIT_PATIENTS_MAX 1000 /* patients named (and searchable) in one record */

/* What one record says. Strings are the caller's; NULL leaves a field out. */
typedef struct cv_audit_event {
	cv_audit_type type;
	const char *subtype;          /* "read", "search-type", "login", "login-failed", "token-issued", ... */
	char action;                  /* 'C', 'R', 'U', 'D', 'E' */
	unsigned status;              /* the HTTP status answered (0: none) */
	int outcome;                  /* 0, 4, 8, 12 (cv_audit_outcome) */
	const char *outcome_text;     /* why it failed, no PHI ("denied by policy: ...") */
	unsigned flags;               /* CV_AUDIT_F_* */
	int64_t at_us;                /* 0: now */
	/* who */
	const char *agent;            /* account or client id, "bootstrap-admin", "anonymous", "cli" */
	const char *agent_kind;       /* "user", "client", "admin", "anonymous", "operator" */
	const char *role;             /* the person's role */
	const char *link;             /* "Practitioner/<id>" or "Patient/<id>" */
	const char *client;           /* the app (OAuth client) acting for the person */
	const char *address;          /* the network address */
	const char *request_id;
	/* what */
	const char *method;           /* HTTP method and route pattern, for the record's description */
	const char *route;
	const char *query;            /* the query string (PHI: sealed with the record) */
	const char *const *entities;  /* "Type/id" or "Type/id/_history/v" */
	size_t nentities;
	const char *const *patients;  /* patient ids */
	size_t npatients;
	const char *const *glass;     /* those of them reached through break-glass alone */
	size_t nglass;
	int64_t nres;                 /* resources delivered or changed (may exceed nentities) */
	const char *target;           /* an administered account or client id */
	/* why */
	const char *purpose;          /* a v3 ActReason code: TREAT, ETREAT, HPAYMT, HOPERAT, PATRQT */
	const char *reason;           /* a stated reason (break-glass): PHI, sealed */
	const char *detail;           /* an alert's description, no PHI */
} cv_audit_event_t;

/* The outcome code of an HTTP status: 0 (< 400), 4 (4xx), 8 (5xx). */
int cv_audit_outcome(unsigned status);

/* Builds the store write of a record: w gets op AUDIT, the record's stored
 * form as body and the search keys (all in pool). */
cv_rc cv_audit_build(const cv_audit_event_t *e, cv_pool_t *pool, cv_store_write_t *w);

/* Appends the AuditEvent JSON of e, with its id and time, to out. */
cv_rc cv_audit_json(const cv_audit_event_t *e, const char *id, int64_t at_us, cv_buf_t *out);

/* ---- the stored form (record.c) ---------------------------------------------
 * A record is stored as its event's fields in a compact binary encoding, not
 * as the AuditEvent JSON: a read's record is about a tenth of the bytes to
 * seal, hash, write and fsync. The JSON is rendered when the trail is read
 * (cv_audit_search, cv_audit_render). Records stored before hold the JSON
 * and are served as they are. */

/* Appends e's stored form to out. */
cv_rc cv_audit_encode(const cv_audit_event_t *e, cv_buf_t *out);

/* Parses a stored form (strings NUL-terminated copies in pool).
 * CV_E_INVALID when p does not hold exactly one well-formed record. */
cv_rc cv_audit_decode(const uint8_t *p, size_t len, cv_pool_t *pool, cv_audit_event_t *e);

/* The AuditEvent JSON of an opened row (in pool, or the row's own body for
 * records stored as JSON). */
cv_rc cv_audit_render(const cv_store_audit_row_t *r, cv_pool_t *pool, const char **json, size_t *len);

/* cv_store_audit_search with each row's body rendered as AuditEvent JSON
 * (NUL-terminated). */
cv_rc cv_audit_search(cv_store_t *s, const cv_store_audit_query_t *q, cv_pool_t *pool, cv_store_audit_fn fn,
		      void *arg);

/* The search key of a patient, a resource reference or an agent, as the
 * store indexes it (for cv_store_audit_query_t.keys). */
const char *cv_audit_key_patient(cv_pool_t *pool, const char *patient_id);
const char *cv_audit_key_entity(cv_pool_t *pool, const char *reference);
const char *cv_audit_key_app(cv_pool_t *pool, const char *client_id); /* an app acting for a person */

/* ---- what a request touched (handlers) ----------------------------------- */

/* A resource a refused request asked for (Type/id), with the patients of its
 * compartments: the record says what was refused (nothing was shown, so it
 * does not count in nres). */
void cv_audit_asked(cv_exchange_t *ex, const char *type, const char *id, const char *const *patients,
		    size_t npatients);

/* A resource shown or changed, with the patients whose compartments it is in. */
void cv_audit_resource(cv_exchange_t *ex, const char *type, const char *id, int64_t version,
		       const char *const *patients, size_t npatients);

/* A patient the request concerned without a resource being shown. */
void cv_audit_patient(cv_exchange_t *ex, const char *patient_id);

/* The policy refused (the record is flagged denied). */
void cv_audit_denied(cv_exchange_t *ex);

/* The access relied on break-glass. */
void cv_audit_break_glass(cv_exchange_t *ex);
/* A patient the request reached through break-glass alone (of a search over
 * several, which ones the emergency was about: their entities carry the BTG
 * label, and only their access reports say so). */
void cv_audit_glass_patient(cv_exchange_t *ex, const char *patient_id);

/* A non-FHIR event: its type, subtype and action (logins, tokens, administration). */
void cv_audit_kind(cv_exchange_t *ex, cv_audit_type type, const char *subtype, char action);

/* Who the event is about when the request has no principal (a login, a
 * token request): an account or client id, its role and linked resource. */
void cv_audit_agent(cv_exchange_t *ex, const char *id, const char *role, const char *link);

/* An account or client the request administered, or the account a login named. */
void cv_audit_target(cv_exchange_t *ex, const char *id);

/* A stated reason (break-glass; sealed with the record). */
void cv_audit_reason(cv_exchange_t *ex, const char *reason);

/* The record of ex as it stands, for a write's transaction: flags it
 * CV_AUDIT_F_*, status and outcome as given (the write's, should it
 * commit). The write is remembered: if it commits, the request needs no
 * other record. */
cv_rc cv_audit_attach(cv_exchange_t *ex, unsigned status, cv_store_write_t **out);

/* The record of ex committed with the internal record it administers,
 * written by a layer that does not know the request (an account by auth/,
 * an erasure request): between begin and end, the next write on this thread
 * of a version of internal type `type` (alone or in a group) carries ex's
 * record with `status` (cv_audit_attach), and with target_from_write, that
 * version's id as the target (an id made by the write); no type: no write
 * carries it (yet). store.h, "a write's companion". */
typedef struct cv_audit_companion {
	cv_exchange_t *ex;
	unsigned status;
	const char *type;
	bool target_from_write;
} cv_audit_companion_t;
void cv_audit_companion_begin(cv_audit_companion_t *c);
void cv_audit_companion_end(void);

/* The record that the request's change starts, for a change that takes more
 * than one transaction (an erasure: its ledger line, its keys, its request):
 * the request's record as it stands with subtype and action 'E', outcome
 * still 0 and no status, committed in store s before the change's first
 * write. The request's own record (its outcome) still follows. */
cv_rc cv_audit_intent(cv_exchange_t *ex, cv_store_t *s, const char *subtype);

/* The record of one entry of a batch, for its own write's transaction
 * (the batch as a whole gets its record too): interaction subtype and
 * action, the status it will answer, the resource and its patients. */
cv_rc cv_audit_attach_entry(cv_exchange_t *ex, const char *subtype, char action, unsigned status, const char *type,
			    const char *id, int64_t version, const char *const *patients, size_t npatients,
			    cv_store_write_t **out);

/* ---- the trail (one per server) -------------------------------------------- */

typedef struct cv_audit_config {
	int64_t checkpoint_records;      /* sign a checkpoint every N records ... */
	int64_t checkpoint_seconds;      /* ... or T seconds (when there are new ones) */
	const char *checkpoint_file;     /* append checkpoints to this file ("" none) */
	bool checkpoint_syslog;          /* and send them to syslog */
	const char *checkpoint_url;      /* and POST them to this https URL ("" none) */
	const char *webhook_url;         /* POST alerts here ("" none) */
	const char *ca_file;             /* CAs for those URLs ("" system) */
	unsigned alert_failed_logins;    /* failed logins of one account or address in 15 minutes */
	unsigned alert_patients_per_hour;  /* patients one user reads in an hour */
	unsigned alert_resources_per_hour; /* resources one user or client receives in an hour (bulk export) */
	unsigned alert_denied_per_hour;  /* refused accesses of one user in an hour (outside relationships) */
	const char *site;                /* this node's name in records */
} cv_audit_config_t;

typedef struct cv_audit cv_audit_t;

/* Loads (or creates, on first start) the Ed25519 checkpoint key, wrapped by
 * master in the store, and its public key (meta "audit.pubkey", plain, for
 * verification without keys). */
cv_rc cv_audit_new(cv_store_t *s, const cv_key_t *master, const cv_audit_config_t *cfg, cv_audit_t **out,
		   char *err, size_t errlen);

/* Starts the background work: checkpoints and alert detection. */
cv_rc cv_audit_start(cv_audit_t *a);

/* Stops it (a last checkpoint is signed) and frees a (NULL is fine). */
void cv_audit_free(cv_audit_t *a);

/* The record net/ writes once a request's handler is done: *out NULL when
 * the request needs none (not an audited route, or its write carried it). */
cv_rc cv_audit_request(cv_audit_t *a, cv_exchange_t *ex, cv_store_write_t **out);

/* True for a route whose requests are recorded (everything but health,
 * metadata, discovery documents and static files). */
bool cv_audit_route(const char *route);

/* Writes one record now and waits until it is durable (the CLI's events,
 * alerts). */
cv_rc cv_audit_record(cv_store_t *s, const cv_audit_event_t *e);

/* Signs and stores a checkpoint of the chain as it is, and copies it to the
 * sinks; CV_OK when there was nothing new to sign. */
cv_rc cv_audit_checkpoint_now(cv_audit_t *a);

/* Raises an alert: a record (type ALERT), a log line and the webhook. kind:
 * "break-glass", "failed-logins", "many-patients", "bulk-export",
 * "outside-relationships"; agent: whom it is about; detail: no PHI. */
cv_rc cv_audit_alert(cv_audit_t *a, const char *kind, const char *agent, const char *detail);

/* Signs c (pos, at_us and hash set) with the audit key: fills key and sig. */
void cv_audit_sign(cv_audit_t *a, cv_store_checkpoint_t *c);

/* The same for the base the chain starts from after retention: signed
 * with its own message, so that no ordinary checkpoint can stand in for
 * a base (and let records before it be deleted unnoticed). */
void cv_audit_sign_base(cv_audit_t *a, cv_store_checkpoint_t *c);
void cv_audit_base_message(const cv_store_checkpoint_t *c, char out[160]);

/* The same for an archive's end: its message binds the archive's first
 * record and the hash it follows to the end (pos, hash), so that neither
 * the start nor the end of an archive can be cut (no checkpoint, base or
 * other archive's end stands in for it). */
void cv_audit_sign_archive(cv_audit_t *a, int64_t first, const uint8_t prev[CV_AUDIT_HASH_BYTES],
			   cv_store_checkpoint_t *end);
void cv_audit_archive_message(int64_t first, const uint8_t prev[CV_AUDIT_HASH_BYTES], const cv_store_checkpoint_t *end,
			      char out[320]);

/* The store of the trail. */
cv_store_t *cv_audit_store(cv_audit_t *a);

/* Sends an alert to the webhook only (its record and log line are the
 * caller's: break-glass). a NULL is fine. */
void cv_audit_webhook(cv_audit_t *a, const char *kind, const char *agent, const char *detail);

/* ---- checking ------------------------------------------------------------- */

/* A checkpoint as a line of text (the file and syslog sinks, exports):
 * {"pos":N,"at":"...","at_us":N,"hash":"hex","key":"hex","sig":"hex"} */
cv_rc cv_audit_checkpoint_line(const cv_store_checkpoint_t *c, cv_buf_t *out);

/* Parses such a line. CV_E_INVALID when it is not one. */
cv_rc cv_audit_checkpoint_parse(const char *line, size_t len, cv_store_checkpoint_t *out);

/* The message a checkpoint's signature covers. */
void cv_audit_checkpoint_message(const cv_store_checkpoint_t *c, char out[160]);

/* What verification found. */
typedef struct cv_audit_verdict {
	bool ok;
	int64_t records;       /* records in the chain (after the base) */
	int64_t base;          /* records before it were archived (retention) */
	int64_t checkpoints;   /* checkpoints checked (store and file) */
	int64_t bad_pos;       /* the first bad record's position (when named) */
	bool named;            /* bad_pos names a position (it may be 0 or below: a record put there) */
	char head[65];         /* the head hash, hex */
	char what[400];        /* what is wrong, or a summary */
} cv_audit_verdict_t;

/* Walks the chain from its start and every checkpoint in the store and in
 * the file at checkpoints_path (NULL: none): an edited, inserted, deleted,
 * moved or truncated record is named. progress may be NULL. */
cv_rc cv_audit_verify(cv_store_t *s, const char *checkpoints_path, void (*progress)(void *arg, int64_t done),
		      void *arg, cv_audit_verdict_t *out);

/* The same, with the public key the operator kept (`carevault audit
 * pubkey`, 32 bytes): the store's recorded key must be it, and every
 * checkpoint signed by it. pinned NULL: the store's own key. */
cv_rc cv_audit_verify_key(cv_store_t *s, const char *checkpoints_path, const uint8_t *pinned,
			  void (*progress)(void *arg, int64_t done), void *arg, cv_audit_verdict_t *out);

/* ---- retention ------------------------------------------------------------- */

#define CV_AUDIT_META_BASE "audit.base" /* the signed checkpoint the chain starts after */

/* What an archive run did. */
typedef struct cv_audit_archived {
	int64_t first, last;   /* the records archived (0, 0: none were old enough) */
	char what[300];        /* a summary, or what went wrong */
} cv_audit_archived_t;

/* Retention: writes the records older than before_us (from the start of
 * the chain, in order) to the new file at path (0600, synced): a header,
 * one line per record as stored (sealed), and a checkpoint of the last one
 * signed with the audit key; reads the file back and verifies it; only
 * then removes those records from the store and records the signed
 * checkpoint as the chain's new base, in one transaction. */
cv_rc cv_audit_archive(cv_audit_t *a, int64_t before_us, const char *path, cv_audit_archived_t *out);

/* Verifies an archive file on its own: the chain inside it, and its signed
 * end, which covers its first record too (pub NULL: with the key the file
 * names; else that key must have signed it). out->base is the position
 * before its first record, out->records how many it holds, out->head the
 * last one's hash. A file of format 1 (made before the end covered the
 * start: any checkpoint line could end it) is not whole. */
cv_rc cv_audit_verify_archive(const char *path, const uint8_t *pub, cv_audit_verdict_t *out);
/* The same; with accept_v1, a format-1 file verifies as far as it can, with
 * what it cannot show in out->what. */
cv_rc cv_audit_verify_archive_as(const char *path, const uint8_t *pub, bool accept_v1, cv_audit_verdict_t *out);

/* One record line of an archive, parsed (strings and bytes in pool). */
cv_rc cv_audit_archive_parse_row(const char *line, size_t len, cv_pool_t *pool, cv_store_audit_row_t *out);

#endif
