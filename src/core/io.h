/*
 * io.h - file descriptor helpers.
 */
#ifndef CV_CORE_IO_H
#define CV_CORE_IO_H

#include <stddef.h>

#include "core/rc.h"

/* Writes all n bytes of p to fd (retrying short writes and EINTR); CV_E_IO
 * (errno set) when it cannot. */
cv_rc cv_write_all(int fd, const void *p, size_t n);

#endif
