/*
 * time.h - clocks and FHIR time formats.
 */
#ifndef CV_CORE_TIME_H
#define CV_CORE_TIME_H

#include <stddef.h>
#include <stdint.h>
#include "core/rc.h"

/* Wall-clock time in microseconds since the Unix epoch (UTC). */
int64_t cv_time_now_us(void);

/* Monotonic time in microseconds, for durations. */
int64_t cv_time_mono_us(void);

/* Formats us as a FHIR instant with milliseconds, "2026-11-22T21:39:41.123Z".
 * out needs 25 bytes; returns out (empty string if too small). */
char *cv_time_format_instant(int64_t us, char *out, size_t outlen);

/* Formats us as an RFC 7231 HTTP date, "Sun, 22 Nov 2026 21:39:41 GMT" (30 bytes). */
char *cv_time_format_http(int64_t us, char *out, size_t outlen);

/* Parses a FHIR instant or dateTime with at least second precision and a zone,
 * or a date/partial date (taken as its start, UTC), into microseconds.
 * CV_E_INVALID if the text is not such a value. */
cv_rc cv_time_parse(const char *s, int64_t *us);

/* Parses a FHIR date, dateTime or instant of any precision (as search
 * values are written too: "2013", "2013-01", "2013-01-14", "2013-01-14T10:00",
 * "...T10:00:00", "...T10:00:00.123", each with an optional zone; no zone
 * means UTC) into the range it denotes: lo is its first and hi its last
 * microsecond ("2013-01" covers all of January 2013). *precision gets 1 (year),
 * 2 (month), 3 (day) or 4 (time). CV_E_INVALID if the text is not such a value
 * or names a day that does not exist. */
cv_rc cv_time_range(const char *s, int64_t *lo, int64_t *hi, int *precision);

#endif
