/*
 * record.h - the internal records auth/ keeps in the store ("~Session",
 * "~Token", "~Grant"...): small JSON bodies, sealed at rest like resources,
 * versioned, so compare-and-set on the version makes "use once" and "change
 * once" safe across threads and nodes.
 */
#ifndef CV_AUTH_RECORD_H
#define CV_AUTH_RECORD_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "core/rc.h"
#include "store/store.h"

/* Reads the current body of type/id as a JSON object into *out (NULL when
 * there is none or it was deleted; *version is then the tombstone's or 0).
 * The decrypted text is wiped once parsed. */
cv_rc cv_record_read(cv_store_t *s, const char *type, const char *id, json_object **out, int64_t *version);

/* Writes version expect + 1 of type/id with body o (a tombstone when o is
 * NULL) and waits for it to be durable. CV_E_CONFLICT when the current
 * version is not expect (0: the record must not exist). */
cv_rc cv_record_put(cv_store_t *s, const char *type, const char *id, int64_t expect, json_object *o);

/* Members of a record body: a string ("" when absent), an integer (0), a boolean (false). */
const char *cv_record_str(json_object *o, const char *key);
int64_t cv_record_int(json_object *o, const char *key);
bool cv_record_bool(json_object *o, const char *key);

#endif
