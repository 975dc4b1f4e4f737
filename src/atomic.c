/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file-safety layer (squib/atomic.h; docs/DESIGN.md §4): a destination
 * checked and locked through its directory fd, a temp no one else can name
 * or pre-create, fsync, renameat, fsync of the directory. Unlike upstream, the
 * directory fsync makes the rename itself durable (upstream defect 4), a bare
 * file name works against "." (defect 5), and the temp is no longer the
 * predictable, shared "dest.tmp" opened O_TRUNC that two writers could both
 * write and a planted link could redirect.
 */
#include <squib/atomic.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/state.h>

#include "atomic_internal.h"
#include "util.h"

#define TEMP_SUFFIX  ".tmp"
#define LOCK_SUFFIX  ".squib-lock"
#define RANDOM_BYTES 8
/* A lock file removed by its holder between our open and our flock: retry. */
#define LOCK_TRIES 64
/* Fresh random temp names tried when one exists (only a plant can make it so). */
#define TEMP_TRIES 8

const char *squib_io_step_name(enum squib_io_step step)
{
	switch (step) {
	case SQUIB_IO_OPEN:
		return "open";
	case SQUIB_IO_WRITE:
		return "write";
	case SQUIB_IO_FSYNC:
		return "fsync";
	case SQUIB_IO_CLOSE:
		return "close";
	case SQUIB_IO_RENAME:
		return "rename";
	case SQUIB_IO_FSYNC_DIR:
		return "fsync_dir";
	case SQUIB_IO_LOCK:
		return "lock";
	case SQUIB_IO_UNLINK:
		return "unlink";
	default:
		return "unknown";
	}
}

int squib_hook(const struct squib_io_hooks *hooks, enum squib_io_step step, const char *path)
{
	int r;

	if (!hooks || !hooks->before)
		return 0;
	r = hooks->before(hooks->ctx, step, path);
	if (r >= 0)
		return 0;
	return r == INT_MIN ? -EIO : r; /* -INT_MIN would overflow */
}

/* ---- names ------------------------------------------------------------------------ */

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

enum squib_temp_kind squib_temp_kind_of(const char *entry, const char *name)
{
	size_t nl = strlen(name), el = strlen(entry), hex;

	if (el < nl + 1 + 16 + sizeof(TEMP_SUFFIX) - 1 || strncmp(entry, name, nl) ||
	    entry[nl] != '.' || strcmp(entry + el - (sizeof(TEMP_SUFFIX) - 1), TEMP_SUFFIX))
		return SQUIB_TEMP_NONE;
	hex = el - nl - 1 - (sizeof(TEMP_SUFFIX) - 1);
	if ((hex != 2 * RANDOM_BYTES && hex != 2 * SQUIB_MEMORY_ID_SIZE) ||
	    !is_hex(entry + nl + 1, hex))
		return SQUIB_TEMP_NONE;
	return hex == 2 * RANDOM_BYTES ? SQUIB_TEMP_ORDINARY : SQUIB_TEMP_PAIR;
}

/* Is `name` itself some destination's temp or lock name? Writing one would
 * replace a file another writer or a recovery owns. */
static bool is_layer_name(const char *name)
{
	size_t n = strlen(name), ls = sizeof(LOCK_SUFFIX) - 1, ts = sizeof(TEMP_SUFFIX) - 1;

	if (name[0] == '.' && n > ls && !strcmp(name + n - ls, LOCK_SUFFIX))
		return true;
	if (n <= ts || strcmp(name + n - ts, TEMP_SUFFIX))
		return false;
	for (size_t h = 2 * RANDOM_BYTES; h <= 2 * SQUIB_MEMORY_ID_SIZE; h += 2 * RANDOM_BYTES)
		if (n > ts + h + 1 && name[n - ts - h - 1] == '.' && is_hex(name + n - ts - h, h))
			return true;
	return false;
}

int squib_temp_name(const char *name, const uint8_t *id, size_t id_len, char *buf, size_t len,
		    struct squib_error_detail *d)
{
	size_t at = (size_t)snprintf(buf, len, "%s.", name);

	for (size_t i = 0; i < id_len && at < len; i++, at += 2)
		snprintf(buf + at, len - at, "%02x", id[i]);
	if (at >= len || (size_t)snprintf(buf + at, len - at, TEMP_SUFFIX) >= len - at)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH, "no room for a temp name of %s",
				      name);
	return 0;
}

int squib_temps(int dir_fd, const char *name, unsigned int kinds, bool remove)
{
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), n = 0;
	struct dirent *e;
	DIR *dir;

	if (fd < 0 || !(dir = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0; /* nothing found is what a later scan will see too */
	}
	while ((e = readdir(dir)))
		if (squib_temp_kind_of(e->d_name, name) & kinds) {
			n++;
			if (remove)
				unlinkat(dir_fd, e->d_name, 0);
		}
	closedir(dir);
	return n;
}

int squib_open_own_file(int dir_fd, const char *name)
{
	struct stat st;
	int fd, e = 0;

	do
		fd =
		    openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		e = errno;
	else if (!S_ISREG(st.st_mode))
		e = EINVAL;
	else if (st.st_uid != geteuid() || st.st_nlink != 1)
		e = EPERM;
	if (e) {
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* ---- the destination ------------------------------------------------------------------ */

static const char *kind_name(mode_t m)
{
	return S_ISDIR(m)    ? "a directory"
	       : S_ISCHR(m)  ? "a character device"
	       : S_ISBLK(m)  ? "a block device"
	       : S_ISFIFO(m) ? "a FIFO"
	       : S_ISSOCK(m) ? "a socket"
	       : S_ISLNK(m)  ? "a symbolic link"
			     : "not a regular file";
}

/* *st of an existing regular destination (st_mode 0 when there is none); anything else there is
 * refused. */
static int stat_dest(int dir_fd, const char *name, const char *dest, struct stat *st,
		     struct squib_error_detail *d)
{
	if (fstatat(dir_fd, name, st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno != ENOENT)
			return squib_fail_errno(d, SQUIB_E_IO, errno);
		memset(st, 0, sizeof(*st));
		return 0;
	}
	if (S_ISREG(st->st_mode))
		return 0;
	return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
			      "%.400s is %s, not a regular file: refusing to replace it", dest,
			      kind_name(st->st_mode));
}

static int check_name(const char *dest, const char *name, struct squib_error_detail *d)
{
	if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "destination \"%.400s\" is not a file name", dest);
	if (strlen(name) > SQUIB_DEST_NAME_MAX)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "destination name is longer than %d bytes: no room for its "
				      "temp name beside it",
				      SQUIB_DEST_NAME_MAX);
	if (is_layer_name(name))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "%.400s is named like a squib temp or lock file", dest);
	return 0;
}

static int split_dest(struct squib_dest_lock *l, const char *dest, struct squib_error_detail *d)
{
	const char *slash = strrchr(dest, '/');
	size_t n;

	/* A trailing slash names a directory. */
	if (!*dest || dest[strlen(dest) - 1] == '/')
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "destination \"%.400s\" is not a file name", dest);
	l->dest = strdup(dest);
	l->dir = squib_dir_of(dest);
	l->name = strdup(slash ? slash + 1 : dest);
	if (!l->dest || !l->dir || !l->name)
		return squib_fail(d, SQUIB_E_NOMEM);
	n = strlen(l->name) + sizeof(LOCK_SUFFIX) + 1;
	if (!(l->lock_name = malloc(n)))
		return squib_fail(d, SQUIB_E_NOMEM);
	snprintf(l->lock_name, n, ".%s" LOCK_SUFFIX, l->name);
	return check_name(dest, l->name, d);
}

static int open_dir(struct squib_dest_lock *l, struct squib_error_detail *d)
{
	do
		l->dir_fd = open(l->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	while (l->dir_fd < 0 && errno == EINTR);
	return l->dir_fd < 0 ? squib_fail_errno(d, SQUIB_E_IO, errno) : 0;
}

static int busy(const struct squib_dest_lock *l, struct squib_error_detail *d)
{
	return squib_fail_msg(
	    d, SQUIB_E_BUSY, "%.400s is being written by another process (it holds %.300s%s%.300s)",
	    l->dest, strcmp(l->dir, ".") ? l->dir : "", strcmp(l->dir, ".") ? "/" : "",
	    l->lock_name);
}

/* One attempt: 1 locked, 0 the file we locked is no longer the lock (retry), or an error. */
static int lock_once(struct squib_dest_lock *l, struct squib_error_detail *d)
{
	struct stat st, now;
	int fd, e;

	do
		fd = openat(l->dir_fd, l->lock_name,
			    O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
			    SQUIB_FILE_MODE_PRIVATE);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return squib_fail_errno(d, SQUIB_E_IO, errno);
	if (fstat(fd, &st) < 0)
		st.st_mode = 0;
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "the lock file %.300s of %.400s is %s", l->lock_name, l->dest,
				      kind_name(st.st_mode));
	}
	while ((e = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EINTR)
		;
	if (e < 0) {
		e = errno;
		close(fd);
		return e == EWOULDBLOCK ? busy(l, d) : squib_fail_errno(d, SQUIB_E_IO, e);
	}
	/* The holder before us unlinks the lock file before it lets go: ours must still be the one
	 * named. */
	if (fstatat(l->dir_fd, l->lock_name, &now, AT_SYMLINK_NOFOLLOW) == 0 &&
	    now.st_ino == st.st_ino && now.st_dev == st.st_dev) {
		l->fd = fd;
		return 1;
	}
	close(fd);
	return 0;
}

static int take_lock(struct squib_dest_lock *l, struct squib_error_detail *d)
{
	char path[PATH_MAX + NAME_MAX + 2];
	int e, r = 0;

	snprintf(path, sizeof(path), "%s/%s", l->dir, l->lock_name);
	if ((e = squib_hook(l->hooks, SQUIB_IO_LOCK, path)))
		return squib_fail_errno(d, SQUIB_E_IO, -e);
	for (int i = 0; i < LOCK_TRIES && r == 0; i++)
		r = lock_once(l, d);
	return r == 1 ? 0 : r == 0 ? busy(l, d) : r;
}

void squib_dest_unlock(struct squib_dest_lock *l)
{
	if (!l)
		return;
	/* A zero-initialised lock (dest NULL) holds nothing, whatever its fds say. */
	if (l->dest && l->fd >= 0) {
		/* Unlinked while still held, so a waiter that opened it sees it go and retries. */
		unlinkat(l->dir_fd, l->lock_name, 0);
		close(l->fd);
	}
	if (l->dest && l->dir_fd >= 0)
		close(l->dir_fd);
	free(l->dest);
	free(l->dir);
	free(l->name);
	free(l->lock_name);
	*l = (struct squib_dest_lock){.dir_fd = -1, .fd = -1};
}

int squib_dest_lock(struct squib_dest_lock *l, const char *dest, const struct squib_io_hooks *hooks,
		    struct squib_error_detail *d)
{
	struct stat st;
	int rc;

	if (!l || !dest)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL lock or destination");
	*l = (struct squib_dest_lock){.dir_fd = -1, .fd = -1, .hooks = hooks};
	rc = split_dest(l, dest, d);
	if (!rc)
		rc = open_dir(l, d);
	if (!rc)
		rc = stat_dest(l->dir_fd, l->name, l->dest, &st, d);
	if (!rc)
		rc = take_lock(l, d);
	if (rc)
		squib_dest_unlock(l);
	else /* no writer of this name is alive: what its temps held is garbage */
		squib_temps(l->dir_fd, l->name, SQUIB_TEMP_ORDINARY, true);
	return rc;
}

/* ---- the writer ------------------------------------------------------------------------- */

int squib_atomic_check_same_fs(const char *dest, const char *temp, struct squib_error_detail *d)
{
	char *dest_dir, *temp_dir;
	struct stat a, b;
	int rc = 0;

	if (!dest || !temp)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL path");
	dest_dir = squib_dir_of(dest);
	temp_dir = squib_dir_of(temp);
	if (!dest_dir || !temp_dir)
		rc = squib_fail(d, SQUIB_E_NOMEM);
	else if (stat(dest_dir, &a) < 0 || stat(temp_dir, &b) < 0)
		rc = squib_fail_errno(d, SQUIB_E_IO, errno);
	else if (a.st_dev != b.st_dev)
		rc = squib_fail_cross_fs(d, dest, temp_dir);
	free(dest_dir);
	free(temp_dir);
	return rc;
}

static struct squib_dest_lock *lock_of(struct squib_atomic_writer *w)
{
	return w->held ? w->held : &w->own;
}

/* Frees the strings, releases an own lock and marks the writer CLOSED; fd and temp are dealt with.
 */
static void release(struct squib_atomic_writer *w)
{
	free(w->dest);
	free(w->temp);
	free(w->dir);
	free(w->temp_name);
	squib_dest_unlock(&w->own);
	*w = (struct squib_atomic_writer){.fd = -1, .phase = SQUIB_ATOMIC_CLOSED};
	w->own = (struct squib_dest_lock){.dir_fd = -1, .fd = -1};
}

void squib_atomic_abort(struct squib_atomic_writer *w)
{
	if (!w)
		return;
	if (w->phase == SQUIB_ATOMIC_OPEN && w->fd >= 0)
		close(w->fd);
	if (w->phase != SQUIB_ATOMIC_CLOSED && w->temp_name)
		unlinkat(lock_of(w)->dir_fd, w->temp_name, 0); /* ours: created O_EXCL */
	release(w);
}

static int before(const struct squib_atomic_writer *w, enum squib_io_step step, const char *path)
{
	return squib_hook(w->hooks, step, path);
}

/* The temp's name (from the pair id, or fresh random bytes) and its path beside dest. */
static int name_temp(struct squib_atomic_writer *w, const uint8_t *pair_id,
		     struct squib_error_detail *d)
{
	const char *name = lock_of(w)->name;
	uint8_t rnd[RANDOM_BYTES];
	size_t n = strlen(name) + 2 * SQUIB_MEMORY_ID_SIZE + sizeof(TEMP_SUFFIX) + 1,
	       prefix = (size_t)(strrchr(w->dest, '/') ? strrchr(w->dest, '/') - w->dest + 1 : 0);
	int rc;

	if (!pair_id && getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return squib_fail_errno(d, SQUIB_E_IO, errno ? errno : EIO);
	free(w->temp_name);
	free(w->temp);
	w->temp = malloc(prefix + n);
	if (!(w->temp_name = malloc(n)) || !w->temp)
		return squib_fail(d, SQUIB_E_NOMEM);
	rc = squib_temp_name(name, pair_id ? pair_id : rnd,
			     pair_id ? SQUIB_MEMORY_ID_SIZE : sizeof(rnd), w->temp_name, n, d);
	if (!rc)
		snprintf(w->temp, prefix + n, "%.*s%s", (int)prefix, w->dest, w->temp_name);
	return rc;
}

/* A replaced file's mode carries over, narrowed by an explicit mode, never widened;
 * its group bits only if the new file can keep the old group. */
static int keep_mode(struct squib_atomic_writer *w, const struct stat *old, mode_t want,
		     struct squib_error_detail *d)
{
	mode_t m = old->st_mode & 0777 & (want ? want : 0777);
	struct stat st;

	if ((m & 070) && (fstat(w->fd, &st) < 0 || st.st_gid != old->st_gid) &&
	    fchown(w->fd, (uid_t)-1, old->st_gid) < 0)
		m &= (mode_t)~070;
	return fchmod(w->fd, m) < 0 ? squib_fail_errno(d, SQUIB_E_IO, errno) : 0;
}

static int open_temp(struct squib_atomic_writer *w, const struct squib_atomic_options *o,
		     mode_t mode, struct squib_error_detail *d)
{
	int e, rc = name_temp(w, o->pair_id, d);

	for (int i = 0; !rc; i++) {
		if ((e = before(w, SQUIB_IO_OPEN, w->temp)))
			return squib_fail_errno(d, SQUIB_E_IO, -e);
		w->fd = openat(lock_of(w)->dir_fd, w->temp_name,
			       O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (w->fd >= 0)
			return 0;
		e = errno;
		/* Only a plant can take a fresh random name: draw another. A pair's
		 * name is its memory id, fresh too: a plant there is refused. */
		if (e != EEXIST || o->pair_id || i + 1 == TEMP_TRIES)
			return squib_fail_errno(d, SQUIB_E_IO, e);
		rc = name_temp(w, NULL, d);
	}
	return rc;
}

static int create_temp(struct squib_atomic_writer *w, const struct squib_atomic_options *o,
		       const struct stat *old, struct squib_error_detail *d)
{
	mode_t mode = old->st_mode ? SQUIB_FILE_MODE_PRIVATE
				   : (o->mode ? o->mode & 0777 : SQUIB_FILE_MODE_PRIVATE);
	int rc = open_temp(w, o, mode, d);

	if (rc)
		return rc;
	w->phase = SQUIB_ATOMIC_OPEN;
	return old->st_mode ? keep_mode(w, old, o->mode, d) : 0;
}

static int take_dest(struct squib_atomic_writer *w, const char *dest,
		     const struct squib_atomic_options *o, struct squib_error_detail *d)
{
	if (!o->lock)
		return squib_dest_lock(&w->own, dest, o->hooks, d);
	if (o->lock->fd < 0 || !o->lock->dest || strcmp(o->lock->dest, dest))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "the lock given is not held on %.400s", dest);
	w->held = o->lock;
	return 0;
}

int squib_atomic_open_ex(struct squib_atomic_writer *w, const char *dest,
			 const struct squib_atomic_options *opts, struct squib_error_detail *d)
{
	const struct squib_atomic_options none = {0}, *o = opts ? opts : &none;
	struct stat old;
	int rc;

	if (!w || !dest)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL writer or destination");
	*w = (struct squib_atomic_writer){.fd = -1, .phase = SQUIB_ATOMIC_CLOSED};
	w->own = (struct squib_dest_lock){.dir_fd = -1, .fd = -1};
	w->hooks = o->hooks;
	rc = take_dest(w, dest, o, d);
	if (!rc && (!(w->dest = strdup(dest)) || !(w->dir = strdup(lock_of(w)->dir))))
		rc = squib_fail(d, SQUIB_E_NOMEM);
	/* Under the lock: the mode to keep is the one no other writer can change now. */
	if (!rc)
		rc = stat_dest(lock_of(w)->dir_fd, lock_of(w)->name, dest, &old, d);
	if (!rc)
		rc = create_temp(w, o, &old, d);
	if (rc)
		squib_atomic_abort(w);
	return rc;
}

int squib_atomic_open(struct squib_atomic_writer *w, const char *dest,
		      const struct squib_io_hooks *hooks, struct squib_error_detail *d)
{
	const struct squib_atomic_options o = {.hooks = hooks};

	return squib_atomic_open_ex(w, dest, &o, d);
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

int squib_hooked_fsync_dir_fd(const struct squib_io_hooks *hooks, int dir_fd, const char *path)
{
	int e = squib_hook(hooks, SQUIB_IO_FSYNC_DIR, path);

	return e ? e : fsync(dir_fd) < 0 ? -errno : 0;
}

int squib_fsync_dir(const char *dir, struct squib_error_detail *d)
{
	int fd, e;

	if (!dir)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL directory");
	do
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return squib_fail_errno(d, SQUIB_E_IO, errno);
	e = fsync(fd) < 0 ? errno : 0;
	close(fd);
	return e ? squib_fail_errno(d, SQUIB_E_IO, e) : 0;
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
	struct squib_dest_lock *l;
	int e;

	if (!w || w->phase != SQUIB_ATOMIC_PREPARED)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "atomic writer is not prepared");
	l = lock_of(w);
	e = before(w, SQUIB_IO_RENAME, w->dest);
	if (!e && renameat(l->dir_fd, w->temp_name, l->dir_fd, l->name) < 0)
		e = -errno;
	if (e) {
		if (keep)
			squib_atomic_forget(w);
		else
			squib_atomic_abort(w);
		return squib_fail_errno(d, SQUIB_E_ATOMIC_COMMIT_FAILED, -e);
	}
	/* The temp name is gone now; a failure from here on must not unlink anything. */
	e = squib_hooked_fsync_dir_fd(w->hooks, l->dir_fd, w->dir);
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
