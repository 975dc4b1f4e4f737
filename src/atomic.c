/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash-safe publication of one file: write dest.tmp, fsync, close, rename onto
 * dest, fsync the parent directory. Unlike upstream, the directory fsync makes
 * the rename itself durable (upstream defect 4), and a bare file name checks
 * "." instead of stat-ing "" (defect 5).
 */
#include <squib/atomic.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

const char *squib_io_step_name(enum squib_io_step step)
{
	switch (step) {
	case SQUIB_IO_OPEN: return "open";
	case SQUIB_IO_WRITE: return "write";
	case SQUIB_IO_FSYNC: return "fsync";
	case SQUIB_IO_CLOSE: return "close";
	case SQUIB_IO_RENAME: return "rename";
	case SQUIB_IO_FSYNC_DIR: return "fsync_dir";
	case SQUIB_IO_UNLINK: return "unlink";
	default: return "unknown";
	}
}

int squib_atomic_derive_temp_path(const char *dest, char *buf, size_t len)
{
	size_t n;

	if (!dest || !*dest)
		return SQUIB_E_INVALID_PATH;
	n = strlen(dest);
	if (!buf || len < n + sizeof(SQUIB_TEMP_SUFFIX))
		return SQUIB_E_INVALID_PATH;
	memcpy(buf, dest, n);
	memcpy(buf + n, SQUIB_TEMP_SUFFIX, sizeof(SQUIB_TEMP_SUFFIX));
	return 0;
}

static int stat_dev(const char *dir, dev_t *dev, struct squib_error_detail *d)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return squib_fail_errno(d, SQUIB_E_IO, errno);
	*dev = st.st_dev;
	return 0;
}

int squib_atomic_check_same_fs(const char *dest, const char *temp, struct squib_error_detail *d)
{
	char *dest_dir, *temp_dir;
	dev_t a = 0, b = 0;
	int rc;

	if (!dest || !temp)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL path");
	dest_dir = squib_dir_of(dest);
	temp_dir = squib_dir_of(temp);
	if (!dest_dir || !temp_dir)
		rc = squib_fail(d, SQUIB_E_NOMEM);
	else if ((rc = stat_dev(dest_dir, &a, d)) == 0 && (rc = stat_dev(temp_dir, &b, d)) == 0 &&
		 a != b)
		rc = squib_fail_cross_fs(d, dest, temp_dir);
	free(dest_dir);
	free(temp_dir);
	return rc;
}

/* Frees the strings and marks the writer CLOSED; the caller has dealt with fd/temp. */
static void release(struct squib_atomic_writer *w)
{
	free(w->dest);
	free(w->temp);
	free(w->dir);
	*w = (struct squib_atomic_writer){.fd = -1, .phase = SQUIB_ATOMIC_CLOSED};
}

void squib_atomic_abort(struct squib_atomic_writer *w)
{
	if (!w)
		return;
	if (w->phase == SQUIB_ATOMIC_OPEN && w->fd >= 0)
		close(w->fd);
	if (w->phase != SQUIB_ATOMIC_CLOSED && w->temp)
		unlink(w->temp); /* best effort, like upstream's UnlinkOnDrop */
	release(w);
}

/* 0 to run the step, or the negative errno the hook wants it to fail with. */
static int before(const struct squib_atomic_writer *w, enum squib_io_step step, const char *path)
{
	int r;

	if (!w->hooks || !w->hooks->before)
		return 0;
	r = w->hooks->before(w->hooks->ctx, step, path);
	if (r >= 0)
		return 0;
	return r == INT_MIN ? -EIO : r; /* -INT_MIN would overflow */
}

static int set_paths(struct squib_atomic_writer *w, const char *dest, struct squib_error_detail *d)
{
	size_t n = strlen(dest) + sizeof(SQUIB_TEMP_SUFFIX);

	w->dest = strdup(dest);
	w->temp = malloc(n);
	w->dir = squib_dir_of(dest);
	if (!w->dest || !w->temp || !w->dir)
		return squib_fail(d, SQUIB_E_NOMEM);
	return squib_atomic_derive_temp_path(dest, w->temp, n);
}

static int open_temp(struct squib_atomic_writer *w, struct squib_error_detail *d)
{
	int e = before(w, SQUIB_IO_OPEN, w->temp);

	if (!e) {
		/* O_TRUNC: a stale temp left by a crash is reused from empty. */
		do
			w->fd = open(w->temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
		while (w->fd < 0 && errno == EINTR);
		if (w->fd < 0)
			e = -errno;
	}
	if (e)
		return squib_fail_errno(d, SQUIB_E_IO, -e);
	w->phase = SQUIB_ATOMIC_OPEN;
	return 0;
}

int squib_atomic_open(struct squib_atomic_writer *w, const char *dest,
		      const struct squib_io_hooks *hooks, struct squib_error_detail *d)
{
	int rc;

	if (!w || !dest)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL writer or destination");
	*w = (struct squib_atomic_writer){.fd = -1, .phase = SQUIB_ATOMIC_CLOSED};
	/* A trailing slash names a directory; "dir/" + ".tmp" would be a hidden file in it. */
	if (!*dest || dest[strlen(dest) - 1] == '/')
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "destination \"%s\" is not a file name", dest);
	w->hooks = hooks;
	rc = set_paths(w, dest, d);
	if (!rc)
		rc = squib_atomic_check_same_fs(w->dest, w->temp, d);
	if (!rc)
		rc = open_temp(w, d);
	if (rc)
		release(w);
	return rc;
}

static int do_write(struct squib_atomic_writer *w, const void *buf, size_t len, off_t off,
		    struct squib_error_detail *d)
{
	int e;

	if (!w || w->phase != SQUIB_ATOMIC_OPEN)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "atomic writer is not open");
	if (!buf && len)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL buffer");
	e = before(w, SQUIB_IO_WRITE, w->temp);
	if (!e)
		e = squib_fd_write_all(w->fd, buf, len, off);
	return e ? squib_fail_errno(d, SQUIB_E_IO, -e) : 0;
}

int squib_atomic_write(struct squib_atomic_writer *w, const void *buf, size_t len,
		       struct squib_error_detail *d)
{
	return do_write(w, buf, len, -1, d);
}

int squib_atomic_pwrite(struct squib_atomic_writer *w, const void *buf, size_t len, off_t off,
			struct squib_error_detail *d)
{
	if (off < 0 || len > (uint64_t)INT64_MAX - (uint64_t)off)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "bad offset %lld",
				      (long long)off);
	return do_write(w, buf, len, off, d);
}

int squib_atomic_prepare(struct squib_atomic_writer *w, struct squib_error_detail *d)
{
	int e;

	if (!w || w->phase != SQUIB_ATOMIC_OPEN)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "atomic writer is not open");
	/* fsync is never retried: after a failure the dirty pages may already be dropped. */
	e = before(w, SQUIB_IO_FSYNC, w->temp);
	if (!e && fsync(w->fd) < 0)
		e = -errno;
	if (!e) {
		e = before(w, SQUIB_IO_CLOSE, w->temp);
		/* Linux frees the fd even when close reports an error, so close exactly once. */
		if (close(w->fd) < 0 && !e)
			e = -errno;
		w->fd = -1;
	}
	if (e) {
		squib_atomic_abort(w);
		return squib_fail_errno(d, SQUIB_E_IO, -e);
	}
	w->phase = SQUIB_ATOMIC_PREPARED;
	return 0;
}

static int fsync_dir_errno(const char *dir)
{
	int fd, e = 0;

	do
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		e = -errno;
	close(fd);
	return e;
}

int squib_fsync_dir(const char *dir, struct squib_error_detail *d)
{
	int e;

	if (!dir)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL directory");
	e = fsync_dir_errno(dir);
	return e ? squib_fail_errno(d, SQUIB_E_IO, -e) : 0;
}

void squib_atomic_forget(struct squib_atomic_writer *w)
{
	if (w && w->phase == SQUIB_ATOMIC_PREPARED)
		release(w); /* the temp is durable and closed: leave it where it is */
	else
		squib_atomic_abort(w);
}

static int publish(struct squib_atomic_writer *w, bool keep, struct squib_error_detail *d)
{
	int e;

	if (!w || w->phase != SQUIB_ATOMIC_PREPARED)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "atomic writer is not prepared");
	e = before(w, SQUIB_IO_RENAME, w->dest);
	if (!e && rename(w->temp, w->dest) < 0)
		e = -errno;
	if (e) {
		if (keep)
			squib_atomic_forget(w);
		else
			squib_atomic_abort(w);
		return squib_fail_errno(d, SQUIB_E_ATOMIC_COMMIT_FAILED, -e);
	}
	/* The temp name is gone now; a failure from here on must not unlink anything. */
	e = before(w, SQUIB_IO_FSYNC_DIR, w->dir);
	if (!e)
		e = fsync_dir_errno(w->dir);
	release(w);
	return e ? squib_fail_errno(d, SQUIB_E_IO, -e) : 0;
}

int squib_atomic_publish(struct squib_atomic_writer *w, struct squib_error_detail *d)
{
	return publish(w, false, d);
}

int squib_atomic_publish_keep(struct squib_atomic_writer *w, struct squib_error_detail *d)
{
	return publish(w, true, d);
}

int squib_atomic_commit(struct squib_atomic_writer *w, struct squib_error_detail *d)
{
	int rc = squib_atomic_prepare(w, d);

	return rc ? rc : squib_atomic_publish(w, d);
}

int squib_atomic_write_file(const char *dest, const void *buf, size_t len,
			    const struct squib_io_hooks *hooks, struct squib_error_detail *d)
{
	struct squib_atomic_writer w;
	int rc = squib_atomic_open(&w, dest, hooks, d);

	if (rc)
		return rc;
	rc = squib_atomic_write(&w, buf, len, d);
	if (rc) {
		squib_atomic_abort(&w);
		return rc;
	}
	return squib_atomic_commit(&w, d);
}
