/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk cache of lazy restores: a directory of chunks, DIR/<64 hex>, shared
 * by every process on the host. An entry is the chunk's content, decompressed
 * and verified against its SHA-256 name when it came from the store, behind
 * a header with a CRC-64 over the name and the content (docs/FORMAT.md S.6):
 * a warm fault then costs a read and a CRC, not a decompression and a
 * SHA-256. The CRC catches rot, torn or truncated entries and an entry under
 * another chunk's name; it does not stop a deliberate forger, so the source
 * also checks the SHA-256 when the directory is not private (another user
 * could write it). An entry is written to a hidden temp and renamed, so a
 * reader sees a whole file or none; readers take no lock (an entry evicted
 * under a reader stays readable through its open fd). An entry failing its
 * check is never served: it is dropped and fetched again. Eviction (least
 * recently used by mtime, bumped on hits) runs under flock(DIR/.lock) so two
 * processes do not both delete down to the low mark. No fsync: a lost
 * entry is only a refetch.
 *
 * Writes are queued to one writer thread (squib_store_cache_put_async), so a
 * fetch never waits for create, write and rename. The queue is bounded, and
 * who meets it full decides what happens. A fill (read-ahead, a prefetch's
 * pool) waits for room: from a fast store the fills come faster than one
 * writer creates entries, and dropping them left about half of a cold
 * restore's chunks uncached, so the next restore was not warm either. The
 * wait is bounded (a writer that makes no room for FILL_WAIT_MS is stuck on
 * its disk: the entry is dropped). A demand fault never waits: it queues up
 * to twice the bound - room the fills cannot take - and only then drops.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <squib/crc64.h>

#include "../util.h"
#include "store_cache.h"
#include "store_internal.h"

#define TMP_PREFIX    ".tmp-"
#define TMP_STALE_S   600 /* a temp this old is a crashed writer's */
#define MTIME_BUMP_S  60  /* the LRU's resolution */
#define ENTRY_MAGIC   "SQCHUNK1"
#define ENTRY_HEADER  24 /* magic, length, CRC-64 (docs/FORMAT.md S.6) */
#define LOW_MARK(max) ((max) / 4 * 3)
#define QUEUE_BYTES   (32u << 20) /* entries waiting for the writer: fills wait for room */
#define QUEUE_HARD    (2 * QUEUE_BYTES) /* demand entries beyond it are dropped */
#define FILL_WAIT_MS  200

struct write_job {
	struct squib_store_hash h;
	uint8_t *buf;
	size_t len;
	struct write_job *next;
};

struct squib_store_cache {
	int dir_fd, lock_fd;
	uint64_t max_bytes;
	pthread_mutex_t mu;
	uint64_t added; /* bytes put since the last scan */
	uint64_t total; /* the directory's bytes at the last scan, plus added */
	uint64_t seq, evicted;
	bool private_dir; /* ours, not group- or world-writable */
	/* The writer's queue (under mu). */
	pthread_cond_t work, room; /* room: the writer finished an entry; CLOCK_MONOTONIC */
	pthread_t writer;
	bool writer_up, stopping;
	struct write_job *head, *tail;
	uint64_t queued, dropped;
};

struct entry {
	struct timespec mtime;
	uint64_t size;
	char name[2 * SQUIB_STORE_HASH_SIZE + 1];
};

/* mkdir -p for the cache's own directory; 0 or an errno. */
static int make_dirs(const char *dir)
{
	char *p = strdup(dir);
	int e = 0;

	if (!p)
		return ENOMEM;
	for (char *s = p + 1; !e && *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) && errno != EEXIST)
			e = errno;
		*s = '/';
	}
	if (!e && mkdir(p, 0700) && errno != EEXIST)
		e = errno;
	free(p);
	return e;
}

static bool is_entry_name(const char *n)
{
	size_t i = 0;

	for (; n[i]; i++)
		if (!((n[i] >= '0' && n[i] <= '9') || (n[i] >= 'a' && n[i] <= 'f')))
			return false;
	return i == 2 * SQUIB_STORE_HASH_SIZE;
}

static int by_mtime(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Read the directory's entries (and remove stale temps). NULL on ENOMEM or a bad dir. */
static struct entry *scan(int dir_fd, size_t *n, uint64_t *total)
{
	int fd = dup(dir_fd);
	DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
	struct entry *v = NULL;
	size_t cap = 0;
	struct dirent *de;
	struct stat st;

	*n = 0;
	*total = 0;
	if (!dir) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	rewinddir(dir);
	while ((de = readdir(dir))) {
		if (fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
			continue;
		if (!strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX))) {
			if (time(NULL) - st.st_mtim.tv_sec > TMP_STALE_S)
				unlinkat(dir_fd, de->d_name, 0);
			continue;
		}
		if (!is_entry_name(de->d_name))
			continue;
		if (*n == cap) {
			struct entry *w = realloc(v, (cap = cap ? 2 * cap : 256) * sizeof(*v));

			if (!w)
				break;
			v = w;
		}
		v[*n].mtime = st.st_mtim;
		v[*n].size = (uint64_t)st.st_size;
		memcpy(v[*n].name, de->d_name, sizeof(v[*n].name));
		*total += v[(*n)++].size;
	}
	closedir(dir);
	return v ? v : calloc(1, sizeof(*v));
}

/* Under the directory's lock: rescan, and evict the oldest down to the low mark. */
static void evict(struct squib_store_cache *c)
{
	struct entry *v;
	uint64_t total, gone = 0;
	size_t n;

	if (flock(c->lock_fd, LOCK_EX))
		return;
	if ((v = scan(c->dir_fd, &n, &total))) {
		if (total > c->max_bytes) {
			qsort(v, n, sizeof(*v), by_mtime);
			for (size_t i = 0; i < n && total > LOW_MARK(c->max_bytes); i++)
				if (!unlinkat(c->dir_fd, v[i].name, 0)) {
					total -= v[i].size;
					gone++;
				}
		}
		free(v);
		pthread_mutex_lock(&c->mu);
		c->total = total;
		c->added = 0;
		c->evicted += gone;
		pthread_mutex_unlock(&c->mu);
	}
	flock(c->lock_fd, LOCK_UN);
}

int squib_store_cache_open(const char *dir, uint64_t max_bytes, struct squib_store_cache **out,
			   struct squib_error_detail *d)
{
	struct squib_store_cache *c = calloc(1, sizeof(*c));
	int e = c ? make_dirs(dir) : ENOMEM;
	pthread_condattr_t ca;
	struct stat st;

	*out = NULL;
	if (!e && (c->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		e = errno;
	if (!e &&
	    (c->lock_fd = openat(c->dir_fd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		e = errno;
		close(c->dir_fd);
	}
	if (e) {
		free(c);
		return squib_fail_errno_msg(d, SQUIB_E_IO, e, "chunk cache %.300s: %s", dir,
					    strerror(e));
	}
	c->max_bytes = max_bytes;
	c->private_dir = !fstat(c->dir_fd, &st) && st.st_uid == geteuid() && !(st.st_mode & 022);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->work, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->room, &ca);
	pthread_condattr_destroy(&ca);
	evict(c); /* learn the size; trim a directory that a larger bound filled */
	*out = c;
	return 0;
}

void squib_store_cache_close(struct squib_store_cache *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_signal(&c->work);
	pthread_cond_broadcast(&c->room);
	pthread_mutex_unlock(&c->mu);
	if (c->writer_up) /* it writes what is queued, then ends */
		pthread_join(c->writer, NULL);
	close(c->lock_fd);
	close(c->dir_fd);
	pthread_cond_destroy(&c->work);
	pthread_cond_destroy(&c->room);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* An entry's header and content from its byte `done` on: a readv or writev that stopped
 * part-way resumes there. */
static void entry_iov(struct iovec iov[2], uint8_t *hd, uint8_t *content, size_t clen, size_t done)
{
	size_t in = done > ENTRY_HEADER ? done - ENTRY_HEADER : 0;

	iov[0] = (struct iovec){hd + (done < ENTRY_HEADER ? done : ENTRY_HEADER),
				done < ENTRY_HEADER ? ENTRY_HEADER - done : 0};
	iov[1] = (struct iovec){content + in, clen - in};
}

/* The header and the content in one readv (a warm fault's syscalls are a good share of its
 * cost); 0, or -1 at an early end of file or an error. */
static int read_entry(int fd, uint8_t *hd, uint8_t *buf, size_t len)
{
	for (size_t done = 0; done < ENTRY_HEADER + len;) {
		struct iovec iov[2];
		ssize_t n;

		entry_iov(iov, hd, buf, len, done);
		n = readv(fd, iov, 2);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

/* The check of an entry: CRC-64 over the chunk's name, then its bytes (an entry renamed to
 * another chunk's name fails too). */
static uint64_t entry_crc(const struct squib_store_hash *h, const uint8_t *buf, size_t len)
{
	return squib_crc64(squib_crc64(0, h->b, sizeof(h->b)), buf, len);
}

static int check_entry(int fd, const struct squib_store_hash *h, uint8_t *buf, size_t len)
{
	uint8_t hd[ENTRY_HEADER];
	struct stat st;

	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != ENTRY_HEADER + len ||
	    read_entry(fd, hd, buf, len))
		return -1;
	if (memcmp(hd, ENTRY_MAGIC, 8) || squib_get_le64(hd + 8) != len ||
	    squib_get_le64(hd + 16) != entry_crc(h, buf, len))
		return -1;
	/* Recently used: evicted last. Bumped at most once a minute - an mtime
	 * write per hit would dirty the inode on every warm fault. */
	if (time(NULL) - st.st_mtim.tv_sec > MTIME_BUMP_S)
		futimens(fd, NULL);
	return 0;
}

int squib_store_cache_get(struct squib_store_cache *c, const struct squib_store_hash *h,
			  uint8_t *buf, size_t len)
{
	char name[2 * SQUIB_STORE_HASH_SIZE + 1];
	int fd, r;

	squib_store_hash_hex(h, name);
	/* O_NONBLOCK: a FIFO planted under an entry's name must not hang the pager
	 * (check_entry then refuses anything but a regular file). */
	if ((fd = openat(c->dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0)
		return errno == ENOENT ? 1 : -1;
	r = check_entry(fd, h, buf, len);
	close(fd);
	return r;
}

bool squib_store_cache_private(const struct squib_store_cache *c)
{
	return c->private_dir;
}

static bool write_temp(int dir_fd, const char *tmp, const struct squib_store_hash *h,
		       const uint8_t *content, size_t clen)
{
	int fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	size_t len = ENTRY_HEADER + clen;
	uint8_t hd[ENTRY_HEADER];
	bool ok = fd >= 0;

	memcpy(hd, ENTRY_MAGIC, 8);
	squib_put_le64(hd + 8, clen);
	squib_put_le64(hd + 16, entry_crc(h, content, clen));
	for (size_t done = 0; ok && done < len;) {
		struct iovec iov[2];
		ssize_t n;

		entry_iov(iov, hd, (uint8_t *)content, clen, done);
		n = writev(fd, iov, 2);

		if (n < 0 && errno == EINTR)
			continue;
		ok = n > 0;
		done += ok ? (size_t)n : 0;
	}
	if (fd >= 0 && close(fd))
		ok = false;
	return ok;
}

void squib_store_cache_put(struct squib_store_cache *c, const struct squib_store_hash *h,
			   const uint8_t *buf, size_t len)
{
	char name[2 * SQUIB_STORE_HASH_SIZE + 1], tmp[128];
	bool full;

	squib_store_hash_hex(h, name);
	pthread_mutex_lock(&c->mu);
	snprintf(tmp, sizeof(tmp), TMP_PREFIX "%ld-%llu-%s", (long)getpid(),
		 (unsigned long long)c->seq++, name);
	pthread_mutex_unlock(&c->mu);
	if (!write_temp(c->dir_fd, tmp, h, buf, len) || renameat(c->dir_fd, tmp, c->dir_fd, name)) {
		unlinkat(c->dir_fd, tmp, 0);
		return;
	}
	pthread_mutex_lock(&c->mu);
	c->added += len;
	c->total += len;
	/* Other processes fill it too: rescan after 1/16 of the bound. */
	full = c->total > c->max_bytes || c->added > c->max_bytes / 16;
	pthread_mutex_unlock(&c->mu);
	if (full)
		evict(c);
}

static void *writer_main(void *arg)
{
	struct squib_store_cache *c = arg;
	struct write_job *j;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->head && !c->stopping)
			pthread_cond_wait(&c->work, &c->mu);
		if (!(j = c->head))
			break;
		if (!(c->head = j->next))
			c->tail = NULL;
		pthread_mutex_unlock(&c->mu);
		squib_store_cache_put(c, &j->h, j->buf, j->len);
		free(j->buf);
		pthread_mutex_lock(&c->mu);
		c->queued -= j->len;
		pthread_cond_broadcast(&c->room);
		free(j);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* A fill's wait for room in the queue, until the deadline. Under mu. */
static void wait_for_room(struct squib_store_cache *c, size_t len)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += FILL_WAIT_MS / 1000;
	until.tv_nsec += (FILL_WAIT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	/* An entry larger than the whole queue is queued alone. */
	while (c->queued && c->queued + len > QUEUE_BYTES && !c->stopping)
		if (pthread_cond_timedwait(&c->room, &c->mu, &until) == ETIMEDOUT)
			break;
}

void squib_store_cache_put_async(struct squib_store_cache *c, const struct squib_store_hash *h,
				 uint8_t *buf, size_t len, bool fill)
{
	struct write_job *j = malloc(sizeof(*j));
	bool keep;

	pthread_mutex_lock(&c->mu);
	if (j && !c->writer_up && !c->stopping && !pthread_create(&c->writer, NULL, writer_main, c))
		c->writer_up = true;
	if (j && c->writer_up && fill)
		wait_for_room(c, len);
	keep = j && c->writer_up && !c->stopping &&
	       (c->queued + len <= (fill ? QUEUE_BYTES : QUEUE_HARD) || !c->queued);
	if (keep) {
		*j = (struct write_job){*h, buf, len, NULL};
		*(c->tail ? &c->tail->next : &c->head) = j;
		c->tail = j;
		c->queued += len;
		pthread_cond_signal(&c->work);
	} else {
		c->dropped++;
	}
	pthread_mutex_unlock(&c->mu);
	if (!keep) {
		free(j);
		free(buf);
	}
}

uint64_t squib_store_cache_dropped(struct squib_store_cache *c)
{
	uint64_t n;

	pthread_mutex_lock(&c->mu);
	n = c->dropped;
	pthread_mutex_unlock(&c->mu);
	return n;
}

void squib_store_cache_drop(struct squib_store_cache *c, const struct squib_store_hash *h)
{
	char name[2 * SQUIB_STORE_HASH_SIZE + 1];

	squib_store_hash_hex(h, name);
	unlinkat(c->dir_fd, name, 0);
}

uint64_t squib_store_cache_evicted(struct squib_store_cache *c)
{
	uint64_t n;

	pthread_mutex_lock(&c->mu);
	n = c->evicted;
	pthread_mutex_unlock(&c->mu);
	return n;
}
