/*
 * fuzz_archive.c - the retention archive reader (audit/archive.c): an
 * archive lives outside the server for years and may have been tampered
 * with, so verify --archive reads whatever the file holds. Never crashes
 * nor leaks; a file it finds whole has a consistent verdict (its records
 * follow its base, its head is 64 hex digits). The first byte picks whether
 * a format-1 file may verify.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "audit/audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	bool accept_v1 = data[0] & 1;
	int fd = memfd_create("archive", MFD_CLOEXEC);
	assert(fd >= 0);
	size_t off = 1;
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);
		assert(n > 0);
		off += (size_t)n;
	}
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	cv_audit_verdict_t v;
	if (cv_audit_verify_archive_as(path, NULL, accept_v1, &v) == CV_OK && v.ok) {
		assert(v.base >= 0 && v.records >= 1);
		assert(strlen(v.head) == 64 && strspn(v.head, "0123456789abcdef") == 64);
		assert(strstr(v.what, "the archive is whole") == v.what);
	} else {
		assert(!v.ok && v.what[0]);
	}
	close(fd);
	return 0;
}
