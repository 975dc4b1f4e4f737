/* SPDX-License-Identifier: Apache-2.0 */
/* File-descriptor helpers shared by the writers (internal). */
#include <errno.h>
#include <unistd.h>

#include "util.h"

int squib_fd_write_all(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = off < 0 ? write(fd, p, len) : pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* no progress and no error: do not spin */
		p += n;
		len -= (size_t)n;
		if (off >= 0)
			off += n;
	}
	return 0;
}
