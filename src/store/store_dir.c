/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The directory backend: key "a/b" is the file DIR/a/b. A put writes a
 * hidden temp beside it (".b.<random>.tmp", O_EXCL), fsyncs, renames over
 * the name and fsyncs the directory, so a reader sees the old object or
 * the whole new one, never a torn one, and a crash leaves at worst a temp
 * that listing ignores. No lock: two puts of one key (the same chunk
 * from two pushes) both succeed and the last rename wins.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util.h"
#include "store_internal.h"

struct dir_be {
	char *root;
};

/* 0, or -errno (-EIO at an early end of file). */
static int pread_exact(int fd, void *buf, size_t len, uint64_t off)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

int squib_store_dir_open(const char *dir, void **be, struct squib_error_detail *d)
{
	struct dir_be *b = calloc(1, sizeof(*b));

	if (!b || !(b->root = strdup(dir))) {
		free(b);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	for (size_t n = strlen(b->root); n > 1 && b->root[n - 1] == '/'; n--)
		b->root[n - 1] = '\0';
	*be = b;
	return 0;
}

static void dir_close(void *be)
{
	struct dir_be *b = be;

	free(b->root);
	free(b);
}

static int path_of(const struct dir_be *b, const char *key, char *out, size_t n,
		   struct squib_error_detail *d)
{
	if ((size_t)snprintf(out, n, "%s/%s", b->root, key) >= n)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH, "store path too long: %s/%s",
				      b->root, key);
	return 0;
}

static int io_err(struct squib_error_detail *d, int e, const char *what, const char *path)
{
	return squib_fail_errno_msg(d, SQUIB_E_IO, e, "%s %s", what, path);
}

/* mkdir -p of path's parent directories, the store's root included. */
static int make_parents(char *path, struct squib_error_detail *d)
{
	for (char *p = path + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		int e = mkdir(path, 0755) && errno != EEXIST ? errno : 0;
		*p = '/';
		if (e)
			return io_err(d, e, "creating directory of", path);
	}
	return 0;
}

static int write_temp(int dfd, const char *tmp, const void *buf, size_t len, const char *path,
		      struct squib_error_detail *d)
{
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	int e;

	if (fd < 0)
		return io_err(d, errno, "creating a temp of", path);
	e = -squib_fd_write_all(fd, buf, len, 0);
	if (!e && fsync(fd))
		e = errno;
	if (close(fd) && !e)
		e = errno;
	if (e) {
		unlinkat(dfd, tmp, 0);
		return io_err(d, e, "writing", path);
	}
	return 0;
}

static int dir_put(void *be, const char *key, const void *buf, size_t len,
		   struct squib_error_detail *d)
{
	char path[4096], tmp[512];
	const char *name;
	uint64_t rnd = 0;
	int dfd, r;
	char *dir;

	if ((r = path_of(be, key, path, sizeof(path), d)) || (r = make_parents(path, d)))
		return r;
	name = strrchr(path, '/') + 1;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		return io_err(d, errno, "getrandom for a temp of", path);
	snprintf(tmp, sizeof(tmp), ".%s.%016llx.tmp", name, (unsigned long long)rnd);
	if (!(dir = squib_dir_of(path)))
		return squib_fail(d, SQUIB_E_NOMEM);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (dfd < 0)
		return io_err(d, errno, "opening the directory of", path);
	if (!(r = write_temp(dfd, tmp, buf, len, path, d))) {
		if (renameat(dfd, tmp, dfd, name)) {
			r = io_err(d, errno, "renaming a temp onto", path);
			unlinkat(dfd, tmp, 0);
		} else if (fsync(dfd)) {
			r = io_err(d, errno, "syncing the directory of", path);
		}
	}
	close(dfd);
	return r;
}

static int dir_get(void *be, const char *key, size_t max_len, uint8_t **buf, size_t *len,
		   struct squib_error_detail *d)
{
	char path[4096];
	struct stat st;
	uint8_t *p;
	int fd, r;

	if ((r = path_of(be, key, path, sizeof(path), d)))
		return r;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return io_err(d, errno, "opening", path);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		r = io_err(d, S_ISREG(st.st_mode) ? errno : EINVAL, "reading", path);
	} else if ((uint64_t)st.st_size > max_len) {
		r = squib_fail_limit(d, max_len);
	} else if (!(p = malloc(st.st_size ? (size_t)st.st_size : 1))) {
		r = squib_fail(d, SQUIB_E_NOMEM);
	} else if ((r = pread_exact(fd, p, (size_t)st.st_size, 0))) {
		free(p);
		r = io_err(d, -r, "reading", path);
	} else {
		*buf = p;
		*len = (size_t)st.st_size;
	}
	close(fd);
	return r;
}

static int dir_get_range(void *be, const char *key, uint64_t off, size_t len, void *buf,
			 struct squib_error_detail *d)
{
	char path[4096];
	int fd, r;

	if ((r = path_of(be, key, path, sizeof(path), d)))
		return r;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return io_err(d, errno, "opening", path);
	if ((r = pread_exact(fd, buf, len, off)))
		r = io_err(d, -r, "reading", path);
	close(fd);
	return r;
}

static int dir_head(void *be, const char *key, bool *exists, uint64_t *size, int64_t *mtime,
		    struct squib_error_detail *d)
{
	char path[4096];
	struct stat st;
	int r;

	if ((r = path_of(be, key, path, sizeof(path), d)))
		return r;
	if (lstat(path, &st)) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		return io_err(d, errno, "stat of", path);
	}
	if (!S_ISREG(st.st_mode))
		return io_err(d, EINVAL, "not a regular file:", path);
	*exists = true;
	*size = (uint64_t)st.st_size;
	*mtime = st.st_mtim.tv_sec;
	return 0;
}

static int dir_del(void *be, const char *key, struct squib_error_detail *d)
{
	char path[4096];
	int r;

	if ((r = path_of(be, key, path, sizeof(path), d)))
		return r;
	if (unlink(path) && errno != ENOENT)
		return io_err(d, errno, "removing", path);
	return 0;
}

/* Keys collected by a walk, sorted before the callbacks run. */
struct key_list {
	struct squib_store_object *v;
	size_t n, cap;
};

static void key_list_free(struct key_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free((char *)l->v[i].key);
	free(l->v);
}

static int key_list_add(struct key_list *l, const char *key, const struct stat *st)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 256;
		struct squib_store_object *v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return SQUIB_E_NOMEM;
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n].key = strdup(key)))
		return SQUIB_E_NOMEM;
	l->v[l->n].size = (uint64_t)st->st_size;
	l->v[l->n].mtime = st->st_mtim.tv_sec;
	l->n++;
	return 0;
}

/* The directory root/rel (path: its name, 4096 bytes); *dir NULL if it does not exist. */
static int open_rel(const struct dir_be *b, const char *rel, char *path, DIR **dir,
		    struct squib_error_detail *d)
{
	snprintf(path, 4096, "%s%s%s", b->root, rel[0] ? "/" : "", rel);
	if ((*dir = opendir(path)) || errno == ENOENT || errno == ENOTDIR)
		return 0;
	return io_err(d, errno, "listing", path);
}

/* Every regular file under root/rel (hidden names, i.e. temps, skipped) whose
 * key starts with prefix; depth-bounded (keys have at most 4 levels). */
static int walk(const struct dir_be *b, const char *rel, const char *prefix, int depth,
		struct key_list *out, struct squib_error_detail *d)
{
	char path[4096], key[4096];
	struct dirent *e;
	int r = 0;
	DIR *dir;

	if ((r = open_rel(b, rel, path, &dir, d)) || !dir)
		return r;
	while (!r && (errno = 0, e = readdir(dir))) {
		struct stat st;

		if (e->d_name[0] == '.' ||
		    (size_t)snprintf(key, sizeof(key), "%s%s%s", rel, rel[0] ? "/" : "",
				     e->d_name) >= sizeof(key) ||
		    fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		if (S_ISDIR(st.st_mode) && depth < 4 &&
		    !strncmp(key, prefix,
			     strlen(key) < strlen(prefix) ? strlen(key) : strlen(prefix)))
			r = walk(b, key, prefix, depth + 1, out, d);
		else if (S_ISREG(st.st_mode) && !strncmp(key, prefix, strlen(prefix)) &&
			 key_list_add(out, key, &st))
			r = squib_fail(d, SQUIB_E_NOMEM);
	}
	if (!r && errno)
		r = io_err(d, errno, "listing", path);
	closedir(dir);
	return r;
}

static int by_key(const void *a, const void *b)
{
	return strcmp(((const struct squib_store_object *)a)->key,
		      ((const struct squib_store_object *)b)->key);
}

static int dir_list(void *be, const char *prefix, squib_store_list_fn fn, void *ctx,
		    struct squib_error_detail *d)
{
	struct key_list l = {0};
	int r = walk(be, "", prefix, 0, &l, d);

	if (!r && l.n)
		qsort(l.v, l.n, sizeof(*l.v), by_key);
	for (size_t i = 0; !r && i < l.n; i++)
		r = fn(ctx, &l.v[i]);
	key_list_free(&l);
	return r;
}

/* A put's hidden temp (".NAME.<16 hex>.tmp"): never an object, never listed. */
static bool is_temp(const char *name)
{
	size_t n = strlen(name);

	return name[0] == '.' && n > 5 && !strcmp(name + n - 4, ".tmp");
}

/* Temps older than `before` in rel and below: a put killed between its
 * create and its rename leaves one, and no reader or lister ever sees it. */
static int reap_dir(const struct dir_be *b, const char *rel, int depth, int64_t before,
		    uint64_t *reaped, struct squib_error_detail *d)
{
	char path[4096], sub[4096];
	struct dirent *e;
	int r = 0;
	DIR *dir;

	if ((r = open_rel(b, rel, path, &dir, d)) || !dir)
		return r;
	while (!r && (e = readdir(dir))) {
		struct stat st;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
		    fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		if (S_ISDIR(st.st_mode) && e->d_name[0] != '.' && depth < 4 &&
		    (size_t)snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "",
				     e->d_name) < sizeof(sub))
			r = reap_dir(b, sub, depth + 1, before, reaped, d);
		else if (S_ISREG(st.st_mode) && is_temp(e->d_name) && st.st_mtime < before) {
			if (!unlinkat(dirfd(dir), e->d_name, 0))
				(*reaped)++;
			else if (errno != ENOENT)
				r = io_err(d, errno, "removing a stale temp in", path);
		}
	}
	closedir(dir);
	return r;
}

static int dir_reap_partial(void *be, int64_t before, uint64_t *reaped,
			    struct squib_error_detail *d)
{
	return reap_dir(be, "", 0, before, reaped, d);
}

const struct squib_store_ops squib_store_dir_ops = {
    .put = dir_put,
    .get = dir_get,
    .get_range = dir_get_range,
    .head = dir_head,
    .list = dir_list,
    .del = dir_del,
    .reap_partial = dir_reap_partial,
    .close = dir_close,
};
