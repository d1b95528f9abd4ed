/*
 * negotiate.c - media types, ETags and version ids from HTTP text.
 */
#define _GNU_SOURCE
#include "fhir/negotiate.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A media range or _format value we can answer with. */
static int json_media(const char *s, size_t n)
{
	static const char *const ok[] = { "application/fhir+json", "application/json",
					  "application/json+fhir", "application/*", "*/*", "json" };
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (strlen(ok[i]) == n && strncasecmp(s, ok[i], n) == 0)
			return 1;
	return 0;
}

/* Length of the media type at s (up to ';' or ','), trimmed; *start gets its start. */
static size_t media_len(const char *s, const char **start)
{
	while (*s == ' ' || *s == '\t')
		s++;
	*start = s;
	size_t n = strcspn(s, ";,");
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	return n;
}

int cv_http_accepts_json(const char *accept)
{
	while (accept && *accept) {
		const char *m;
		size_t n = media_len(accept, &m);
		if (json_media(m, n))
			return 1;
		accept = strchr(accept, ',');
		if (accept)
			accept++;
	}
	return 0;
}

int cv_http_format_json(const char *format)
{
	const char *m;
	size_t n = media_len(format, &m);
	return json_media(m, n) && !strchr(format, ',');
}

int cv_http_content_type_json(const char *ct)
{
	const char *m;
	size_t n = ct ? media_len(ct, &m) : 0;
	int ok = n && ((n == 21 && strncasecmp(m, "application/fhir+json", n) == 0) ||
		       (n == 16 && strncasecmp(m, "application/json", n) == 0) ||
		       (n == 21 && strncasecmp(m, "application/json+fhir", n) == 0));
	const char *cs = ok ? strcasestr(ct, "charset=") : NULL;
	if (cs && strncasecmp(cs + 8, "utf-8", 5) != 0 && strncasecmp(cs + 8, "\"utf-8\"", 7) != 0)
		ok = 0;
	return ok;
}

int cv_http_parse_version(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (!isdigit((unsigned char)s[0]) || *end || errno || v < 1)
		return 0;
	*out = v;
	return 1;
}

int64_t cv_http_parse_etag(const char *h)
{
	char num[24];
	int64_t v;
	if (!h)
		return 0;
	if (strncmp(h, "W/", 2) == 0)
		h += 2;
	size_t n = strlen(h);
	if (n < 3 || h[0] != '"' || h[n - 1] != '"' || n - 2 >= sizeof num)
		return -1;
	memcpy(num, h + 1, n - 2);
	num[n - 2] = '\0';
	return cv_http_parse_version(num, &v) ? v : -1;
}
