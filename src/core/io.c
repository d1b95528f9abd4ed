/* io.c - file descriptor helpers (see io.h). */
#include "core/io.h"

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

cv_rc cv_write_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return CV_E_IO;
		b += w;
		n -= (size_t)w;
	}
	return CV_OK;
}
