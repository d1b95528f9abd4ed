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

/* The zone suffix of a time: Z, +hh:mm, -hh:mm or nothing (UTC). */
static int zone(const char **p, int *off)
{
	*off = 0;
	if (**p == 'Z') {
		(*p)++;
	} else if (**p == '+' || **p == '-') {
		int sign = **p == '-' ? -1 : 1, oh, om;
		(*p)++;
		if (digits(p, 2, &oh) || *(*p)++ != ':' || digits(p, 2, &om) || oh > 14 || om > 59)
			return -1;
		*off = sign * (oh * 3600 + om * 60);
	}
	return 0;
}

/* Seconds since the epoch of a UTC calendar time; -1 in *ok if the fields
 * name no real day (timegm would roll 2013-02-30 over into March). */
static int64_t civil(int y, int mo, int d, int h, int mi, int se, int *ok)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
			 .tm_sec = se };
	time_t t = timegm(&tm);
	*ok = tm.tm_mday == d && tm.tm_mon == mo - 1;
	return (int64_t)t;
}

/* The time part "hh:mm[:ss[.fff]]" after a 'T': start and length of the range in microseconds. */
static int clock_part(const char **p, int *h, int *mi, int *se, int64_t *frac, int64_t *span)
{
	if (digits(p, 2, h) || *(*p)++ != ':' || digits(p, 2, mi) || *h > 23 || *mi > 59)
		return -1;
	*se = 0;
	*frac = 0;
	*span = 60 * 1000000LL;
	if (**p != ':')
		return 0;
	(*p)++;
	if (digits(p, 2, se) || *se > 60)
		return -1;
	*span = 1000000;
	if (**p != '.')
		return 0;
	(*p)++;
	int64_t scale = 100000;
	int nd = 0;
	while (**p >= '0' && **p <= '9') {
		if (nd < 6) {
			*frac += (**p - '0') * scale;
			*span = scale;
			scale /= 10;
		}
		(*p)++;
		nd++;
	}
	return nd ? 0 : -1;
}

cv_rc cv_time_range(const char *s, int64_t *lo, int64_t *hi, int *precision)
{
	int y, mo = 1, d = 1, h = 0, mi = 0, se = 0, off = 0, ok, prec = 1;
	int64_t frac = 0, span = 0;
	const char *p = s;
	if (!s || digits(&p, 4, &y))
		return CV_E_INVALID;
	if (*p == '-') {
		p++;
		prec = 2;
		if (digits(&p, 2, &mo) || mo < 1 || mo > 12)
			return CV_E_INVALID;
		if (*p == '-') {
			p++;
			prec = 3;
			if (digits(&p, 2, &d) || d < 1 || d > 31)
				return CV_E_INVALID;
		}
	}
	if (*p == 'T' && prec == 3) {
		p++;
		prec = 4;
		if (clock_part(&p, &h, &mi, &se, &frac, &span) || zone(&p, &off))
			return CV_E_INVALID;
	}
	if (*p)
		return CV_E_INVALID;
	int64_t start = civil(y, mo, d, h, mi, se > 59 ? 59 : se, &ok);
	if (!ok)
		return CV_E_INVALID;
	int64_t end_s;
	if (prec == 1)
		end_s = civil(y + 1, 1, 1, 0, 0, 0, &ok);
	else if (prec == 2)
		end_s = civil(mo == 12 ? y + 1 : y, mo == 12 ? 1 : mo + 1, 1, 0, 0, 0, &ok);
	else if (prec == 3)
		end_s = start + 86400;
	else
		end_s = 0;
	*lo = (start - off) * 1000000 + frac;
	*hi = prec == 4 ? *lo + span - 1 : (end_s - off) * 1000000 - 1;
	if (precision)
		*precision = prec;
	return CV_OK;
}
