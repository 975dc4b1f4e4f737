/* SPDX-License-Identifier: Apache-2.0 */
/* File-descriptor helpers shared by the writers (internal). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
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

/*
 * Parent directory as a heap string, like dirname(3) but without touching the
 * input: "/a/b" -> "/a", "/b" -> "/", "a//b/" -> "a", and "." when there is no
 * directory part at all.
 */
char *squib_dir_of(const char *path)
{
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		n--;
	while (n > 0 && path[n - 1] != '/')
		n--;
	if (n == 0)
		return strdup(".");
	while (n > 1 && path[n - 1] == '/')
		n--;
	return strndup(path, n);
}
