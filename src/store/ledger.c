/*
 * ledger.c - the erasure ledger, DATA/erasures (decision 0009): one line per
 * erasure, "<owner> <time>", the owner being the blinded name of the erased
 * patient's keys (32 hex digits; no patient id), the time in microseconds.
 * It is kept with the master key, apart from backups: `carevault restore`
 * applies it, so that a backup taken before an erasure does not bring the
 * patient back.
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LINE_MAX_LEN 128
#define CV_PATH_LEN 1024

cv_rc cv_ledger_create(const char *dir, char *err, size_t errlen)
{
	char path[CV_PATH_LEN + 32];
	snprintf(path, sizeof path, "%s/%s", dir, CV_LEDGER_FILE);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "cannot create %.200s: %.60s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return CV_E_IO;
	}
	close(fd);
	return CV_OK;
}

cv_rc cv_ledger_append(const char *path, const char *owner_hex, int64_t at_us, char *err, size_t errlen)
{
	char line[80];
	int n = snprintf(line, sizeof line, "%s %lld\n", owner_hex, (long long)at_us);
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	int ok = fd >= 0 && write(fd, line, (size_t)n) == n && fsync(fd) == 0;
	if (fd >= 0)
		close(fd);
	if (!ok)
		snprintf(err, errlen, "the ledger %.200s could not be written (%.60s): add the line '%s %lld' to it by hand",
			 path, strerror(errno), owner_hex, (long long)at_us);
	return ok ? CV_OK : CV_E_IO;
}

/* One line: 32 hex digits, a space, a decimal time. */
static cv_rc parse_line(char *line, uint8_t owner[CV_OWNER_BYTES], int64_t *at)
{
	char *sp = strchr(line, ' '), *end = NULL;
	if (!sp || sp - line != 2 * CV_OWNER_BYTES)
		return CV_E_INVALID;
	*sp = '\0';
	if (cv_crypto_unhex(line, owner, CV_OWNER_BYTES))
		return CV_E_INVALID;
	errno = 0;
	long long v = strtoll(sp + 1, &end, 10);
	if (errno || end == sp + 1 || *end || v < 0)
		return CV_E_INVALID;
	*at = v;
	return CV_OK;
}

cv_rc cv_ledger_each(const char *path, cv_ledger_fn fn, void *arg, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "cannot read the erasure ledger %.200s: %.60s", path, strerror(errno));
		return CV_E_IO;
	}
	char line[LINE_MAX_LEN];
	cv_rc rc = CV_OK;
	for (unsigned n = 1; !rc && fgets(line, sizeof line, f); n++) {
		uint8_t owner[CV_OWNER_BYTES];
		int64_t at;
		size_t len = strlen(line);
		if (len && line[len - 1] == '\n')
			line[--len] = '\0';
		if (len == 0)
			continue;
		rc = parse_line(line, owner, &at);
		if (rc)
			snprintf(err, errlen, "the erasure ledger %.200s: line %u is not '<32 hex digits> <time>'", path, n);
		else
			rc = fn(arg, owner, at);
	}
	fclose(f);
	return rc;
}
