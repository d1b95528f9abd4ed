/* time.c - clocks and the time formats FHIR and HTTP need. */
#define _GNU_SOURCE
#include "core/time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t cv_time_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t cv_time_mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Splits us into whole seconds and milliseconds, rounding toward the past
 * (so instants before 1970 format correctly). */
static time_t floor_secs(int64_t us, int *ms)
{
	int64_t s = us / 1000000, rem = us % 1000000;
	if (rem < 0) {
		s--;
		rem += 1000000;
	}
	if (ms)
		*ms = (int)(rem / 1000);
	return (time_t)s;
}

char *cv_time_format_instant(int64_t us, char *out, size_t outlen)
{
	int ms;
	time_t secs = floor_secs(us, &ms);
	struct tm tm;
	if (outlen < 25 || !gmtime_r(&secs, &tm) || tm.tm_year + 1900 < 1 || tm.tm_year + 1900 > 9999) {
		if (outlen)
			out[0] = '\0';
		return out;
	}
	snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
	return out;
}

char *cv_time_format_http(int64_t us, char *out, size_t outlen)
{
	time_t secs = floor_secs(us, NULL);
	struct tm tm;
	if (!gmtime_r(&secs, &tm) || strftime(out, outlen, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0) {
		if (outlen)
			out[0] = '\0';
	}
	return out;
}

static int digits(const char **p, int n, int *val)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*val = v;
	return 0;
}

cv_rc cv_time_parse(const char *s, int64_t *us)
{
	struct tm tm = { .tm_mday = 1 };
	int y, mo = 1, d = 1, h = 0, mi = 0, se = 0, frac_us = 0, off = 0;
	const char *p = s;
	if (digits(&p, 4, &y))
		return CV_E_INVALID;
	if (*p == '-') {
		p++;
		if (digits(&p, 2, &mo) || mo < 1 || mo > 12)
			return CV_E_INVALID;
		if (*p == '-') {
			p++;
			if (digits(&p, 2, &d) || d < 1 || d > 31)
				return CV_E_INVALID;
		}
	}
	if (*p == 'T') {
		p++;
		if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
		    digits(&p, 2, &se) || h > 23 || mi > 59 || se > 60)
			return CV_E_INVALID;
		if (*p == '.') {
			p++;
			int scale = 100000, nd = 0;
			while (*p >= '0' && *p <= '9') {
				if (scale) {
					frac_us += (*p - '0') * scale;
					scale /= 10;
				}
				p++;
				nd++;
			}
			if (!nd)
				return CV_E_INVALID;
		}
		if (*p == 'Z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p == '-' ? -1 : 1, oh, om;
			p++;
			if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 14 || om > 59)
				return CV_E_INVALID;
			off = sign * (oh * 3600 + om * 60);
		} else {
			return CV_E_INVALID;
		}
	}
	if (*p)
		return CV_E_INVALID;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	time_t t = timegm(&tm);
	*us = ((int64_t)t - off) * 1000000 + frac_us;
	return CV_OK;
}
