/* SPDX-License-Identifier: Apache-2.0 */
/* Opening input files: never blocking, regular files only (squib/input.h). */
#include <squib/input.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <unistd.h>

#include <squib/envelope.h>
#include <squib/memfile.h>
#include <squib/workset.h>

#include "input_internal.h"
#include "util.h"

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

/* ---- telling squib's files apart ---------------------------------------------------- */

static uint64_t le64_at(int fd, uint64_t off, bool *ok)
{
	uint8_t b[8];
	ssize_t n;

	do
		n = pread(fd, b, sizeof(b), (off_t)off);
	while (n < 0 && errno == EINTR);
	*ok = n == (ssize_t)sizeof(b);
	return *ok ? squib_get_le64(b) : 0;
}

static bool is_kind(int fd, uint64_t size, enum squib_input_kind k)
{
	uint64_t m;
	bool ok;

	switch (k) {
	case SQUIB_INPUT_STATE:
		m = le64_at(fd, 0, &ok);
		return ok && squib_arch_from_magic(m) != SQUIB_ARCH_ANY;
	case SQUIB_INPUT_MEMORY:
		if (size < SQUIB_MEMFILE_FOOTER_SIZE)
			return false;
		m = le64_at(fd, size - SQUIB_MEMFILE_FOOTER_SIZE, &ok);
		return ok && (m == SQUIB_MEMFILE_MAGIC || m == SQUIB_MEMFILE_MAGIC_REBASING);
	case SQUIB_INPUT_WORKSET:
		m = le64_at(fd, 0, &ok);
		return ok && m == squib_get_le64((const uint8_t *)SQUIB_WS_MAGIC_BYTES);
	default:
		return false;
	}
}

static const char *kind_name(enum squib_input_kind k)
{
	switch (k) {
	case SQUIB_INPUT_STATE:
		return "state file";
	case SQUIB_INPUT_MEMORY:
		return "memory file";
	case SQUIB_INPUT_WORKSET:
		return "working-set file";
	default:
		return "file";
	}
}

int squib_input_expect(int fd, uint64_t size, const char *path, enum squib_input_kind want,
		       struct squib_error_detail *d)
{
	static const enum squib_input_kind kinds[] = {SQUIB_INPUT_STATE, SQUIB_INPUT_MEMORY,
						      SQUIB_INPUT_WORKSET};

	if (is_kind(fd, size, want))
		return 0;
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (kinds[i] != want && is_kind(fd, size, kinds[i]))
			return squib_fail_msg(d, SQUIB_E_INVALID_PATH, "%s is a squib %s, not a %s",
					      path, kind_name(kinds[i]), kind_name(want));
	return 0;
}
