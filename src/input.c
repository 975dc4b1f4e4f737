/* SPDX-License-Identifier: Apache-2.0 */
/* Opening input files: never blocking, regular files only (squib/input.h). */
#include <squib/input.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* "a FIFO", "a directory", ...: what a non-regular file is, for messages. */
static const char *kind_of(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFDIR:
		return "a directory";
	case S_IFIFO:
		return "a FIFO";
	case S_IFCHR:
		return "a character device";
	case S_IFBLK:
		return "a block device";
	case S_IFSOCK:
		return "a socket";
	default:
		return "not a regular file";
	}
}

int squib_input_open(const char *path, int access, int code, struct stat *st,
		     struct squib_error_detail *d)
{
	struct stat tmp;
	int fd, fl;

	if (!path)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL input path");
	if (!st)
		st = &tmp;
	do
		fd = open(path, (access & O_ACCMODE) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return squib_fail_errno_msg(d, code, errno, "opening %s", path);
	if (fstat(fd, st) < 0) {
		int e = errno;

		close(fd);
		return squib_fail_errno_msg(d, code, e, "stat of %s", path);
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return squib_fail_errno_msg(d, code, S_ISDIR(st->st_mode) ? EISDIR : EINVAL,
					    "%s is %s, not a regular file", path,
					    kind_of(st->st_mode));
	}
	/* Ignored by regular files on Linux, but a read should mean what it says everywhere. */
	if ((fl = fcntl(fd, F_GETFL)) >= 0 && (fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}
