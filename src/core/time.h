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

#endif
