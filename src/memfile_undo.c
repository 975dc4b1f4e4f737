/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The undo log of an in-place rebase, BASE.undo: the bytes the rebase is
 * about to overwrite, published atomically before the first of them changes
 * and removed once the rebased file is durable. Its removal is the rebase's
 * commit point: a log still present means "roll back". docs/DESIGN.md §7
 * has the case analysis, docs/FORMAT.md part "Undo log" the bytes.
 */
#include "memfile_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/crc64.h>

#include "atomic_internal.h"
#include "pair.h"

#define UNDO_MAGIC   0x444E554249555153ULL /* "SQUIBUND" */
#define UNDO_VERSION 1u
#define UNDO_HEADER  80u
#define UNDO_RANGE   24u
#define UNDO_DATA    0u
#define UNDO_HOLE    1u
#define UNDO_CHUNK   ((size_t)SQUIB_MEMFILE_MAX_WRITE)

struct undo_range {
	uint64_t off, len;
	uint32_t kind;
};

struct undo_header {
	uint8_t old_id[SQUIB_MEMORY_ID_SIZE], new_id[SQUIB_MEMORY_ID_SIZE];
	uint64_t ram_size, old_size, range_count, data_bytes;
};

struct range_list {
	struct undo_range *v;
	uint64_t n, cap;
};

char *squib_memfile_undo_path(const char *base)
{
	size_t n = strlen(base) + sizeof(SQUIB_MEMFILE_UNDO_SUFFIX);
	char *p = malloc(n);

	if (p) {
		memcpy(p, base, n - sizeof(SQUIB_MEMFILE_UNDO_SUFFIX));
		memcpy(p + n - sizeof(SQUIB_MEMFILE_UNDO_SUFFIX), SQUIB_MEMFILE_UNDO_SUFFIX,
		       sizeof(SQUIB_MEMFILE_UNDO_SUFFIX));
	}
	return p;
}

/* ---- which bytes: the overwritten pages, split by whether the base holds them ---- */

static int range_add(struct range_list *l, uint64_t off, uint64_t len, uint32_t kind)
{
	struct undo_range *last = l->n ? &l->v[l->n - 1] : NULL;

	if (last && last->kind == kind && last->off + last->len == off) {
		last->len += len;
		return 0;
	}
	if (l->n == l->cap) {
		uint64_t cap = l->cap ? 2 * l->cap : 16;
		struct undo_range *v = realloc(l->v, (size_t)cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = (struct undo_range){off, len, kind};
	return 0;
}

/* Index of the first extent of b that ends after page. */
static uint64_t first_ending_after(const struct squib_memory_layout *b, uint64_t page)
{
	uint64_t lo = 0, hi = b->extent_count;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (b->extents[mid].first_page + b->extents[mid].page_count <= page)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Pages [p, end): runs the base holds (their bytes are kept) and holes (punched back). */
static int split(struct range_list *out, const struct squib_memory_layout *b, uint64_t p,
		 uint64_t end)
{
	uint64_t i = first_ending_after(b, p), ps = b->page_size;

	while (p < end) {
		const struct squib_page_extent *e = i < b->extent_count ? &b->extents[i] : NULL;
		uint64_t stop;
		uint32_t kind = UNDO_HOLE;
		int e2;

		if (e && e->first_page <= p) {
			stop = e->first_page + e->page_count;
			kind = UNDO_DATA;
			i++;
		} else {
			stop = e ? e->first_page : end;
		}
		if (stop > end)
			stop = end;
		if ((e2 = range_add(out, p * ps, (stop - p) * ps, kind)))
			return e2;
		p = stop;
	}
	return 0;
}

/* ---- writing the log ------------------------------------------------------------ */

struct undo_writer {
	struct squib_atomic_writer w;
	uint64_t crc;
	uint8_t *buf; /* UNDO_CHUNK bytes */
	struct squib_error_detail *d;
};

static int put(struct undo_writer *u, const void *p, size_t n)
{
	u->crc = squib_crc64(u->crc, p, n);
	return squib_atomic_write(&u->w, p, n, u->d);
}

/* len bytes of fd at off, appended through the bounce buffer. */
static int put_from(struct undo_writer *u, int fd, const char *name, uint64_t off, uint64_t len)
{
	while (len) {
		size_t n = len < UNDO_CHUNK ? (size_t)len : UNDO_CHUNK;
		int e = squib_pread_all(fd, u->buf, n, off), rc;

		if (e)
			return squib_memfile_io_error(u->d, -e, "reading %s for its undo log",
						      name);
		if ((rc = put(u, u->buf, n)))
			return rc;
		off += n;
		len -= n;
	}
	return 0;
}

static int put_header(struct undo_writer *u, const struct undo_header *h,
		      const struct range_list *r)
{
	size_t n = UNDO_HEADER + (size_t)r->n * UNDO_RANGE;
	uint8_t *b = calloc(1, n), *p;
	int rc;

	if (!b)
		return squib_fail(u->d, SQUIB_E_NOMEM);
	squib_put_le64(b, UNDO_MAGIC);
	squib_put_le32(b + 8, UNDO_VERSION);
	memcpy(b + 16, h->old_id, SQUIB_MEMORY_ID_SIZE);
	memcpy(b + 32, h->new_id, SQUIB_MEMORY_ID_SIZE);
	squib_put_le64(b + 48, h->ram_size);
	squib_put_le64(b + 56, h->old_size);
	squib_put_le64(b + 64, h->range_count);
	squib_put_le64(b + 72, h->data_bytes);
	p = b + UNDO_HEADER;
	for (uint64_t i = 0; i < r->n; i++, p += UNDO_RANGE) {
		squib_put_le64(p, r->v[i].off);
		squib_put_le64(p + 8, r->v[i].len);
		squib_put_le32(p + 16, r->v[i].kind);
	}
	rc = put(u, b, n);
	free(b);
	return rc;
}

static int put_all(struct undo_writer *u, const struct squib_memfile *base,
		   const struct undo_header *h, const struct range_list *r)
{
	uint8_t crc[8];
	int rc = put_header(u, h, r);

	if (!rc)
		rc = put_from(u, base->fd, base->path, h->ram_size, h->old_size - h->ram_size);
	for (uint64_t i = 0; !rc && i < r->n; i++)
		if (r->v[i].kind == UNDO_DATA)
			rc = put_from(u, base->fd, base->path, r->v[i].off, r->v[i].len);
	if (rc)
		return rc;
	squib_put_le64(crc, u->crc);
	return squib_atomic_write(&u->w, crc, sizeof(crc), u->d);
}

static int plan(const struct squib_memfile *base, const struct squib_page_extent *over,
		uint64_t count, struct range_list *r, struct undo_header *h,
		struct squib_error_detail *d)
{
	const struct squib_memory_layout *b = &base->m.layout;

	for (uint64_t i = 0; i < count; i++)
		if (split(r, b, over[i].first_page, over[i].first_page + over[i].page_count))
			return squib_fail(d, SQUIB_E_NOMEM);
	memcpy(h->old_id, b->id, SQUIB_MEMORY_ID_SIZE);
	h->ram_size = b->ram_size;
	h->old_size = b->file_size;
	h->range_count = r->n;
	for (uint64_t i = 0; i < r->n; i++)
		if (r->v[i].kind == UNDO_DATA)
			h->data_bytes += r->v[i].len;
	return 0;
}

int squib_undo_write(const struct squib_memfile *base, const struct squib_page_extent *over,
		     uint64_t count, const uint8_t new_id[SQUIB_MEMORY_ID_SIZE],
		     const struct squib_io_hooks *hooks, struct squib_error_detail *d)
{
	struct undo_writer u = {.d = d};
	struct range_list r = {0};
	struct undo_header h;
	char *path = squib_memfile_undo_path(base->path);
	int rc;

	memset(&h, 0, sizeof(h));
	memcpy(h.new_id, new_id, SQUIB_MEMORY_ID_SIZE);
	rc = path ? plan(base, over, count, &r, &h, d) : squib_fail(d, SQUIB_E_NOMEM);
	if (!rc && !(u.buf = malloc(UNDO_CHUNK)))
		rc = squib_fail(d, SQUIB_E_NOMEM);
	if (!rc && !(rc = squib_atomic_open(&u.w, path, hooks, d))) {
		rc = put_all(&u, base, &h, &r);
		if (!rc)
			rc = squib_atomic_commit(&u.w, d);
		else
			squib_atomic_abort(&u.w);
	}
	if (rc == SQUIB_E_IO && d) { /* the atomic writer's: keep its operation and path */
		char what[SQUIB_DETAIL_MSG_MAX];

		squib_strlcpy(what, d->msg, sizeof(what));
		rc = squib_memfile_io_error(d, d->os_errno, "undo log: %s", what);
	}
	free(u.buf);
	free(r.v);
	free(path);
	return rc;
}

/* The log's name in the base's directory: NAME.undo. */
static int undo_name(const struct squib_dest_lock *l, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s%s", l->name, SQUIB_MEMFILE_UNDO_SUFFIX);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int squib_undo_discard(const struct squib_dest_lock *base, const struct squib_io_hooks *hooks,
		       struct squib_error_detail *d)
{
	char name[NAME_MAX + 1], path[PATH_MAX];
	int e = undo_name(base, name, sizeof(name));

	snprintf(path, sizeof(path), "%s/%s", base->dir, name);
	if (!e)
		e = squib_hook(hooks, SQUIB_IO_UNLINK, path);
	if (!e && unlinkat(base->dir_fd, name, 0) < 0)
		e = -errno;
	if (e)
		return squib_fail_errno_msg(d, SQUIB_E_ATOMIC_COMMIT_FAILED, -e, "unlink of %.400s",
					    path);
	e = squib_hooked_fsync_dir_fd(hooks, base->dir_fd, base->dir);
	/* SQUIB_E_IO: gone, not durable */
	return e ? squib_fail_errno_msg(d, SQUIB_E_IO, -e, "fsync of directory %.400s", base->dir)
		 : 0;
}

/* ---- reading the log back ---------------------------------------------------------- */

struct undo {
	const char *path;
	int fd;
	uint64_t size;
	struct undo_header h;
	struct undo_range *r;
	uint8_t *buf; /* UNDO_CHUNK bytes */
	struct squib_error_detail *d;
};

static int bad_log(struct undo *u, const char *what)
{
	return squib_fail_msg(u->d, SQUIB_E_ENCODING, "undo log %s: %s; nothing was rolled back",
			      u->path, what);
}

static int read_at(struct undo *u, void *buf, size_t n, uint64_t off)
{
	int e = squib_pread_all(u->fd, buf, n, off);

	return e ? squib_memfile_io_error(u->d, -e, "reading undo log %s", u->path) : 0;
}

/* Header sizes against the log's real size, before anything is allocated. */
static int check_header(struct undo *u, const uint8_t b[UNDO_HEADER])
{
	struct undo_header *h = &u->h;
	uint64_t room = u->size - UNDO_HEADER - 8, tail;

	if (squib_get_le64(b) != UNDO_MAGIC || squib_get_le32(b + 8) != UNDO_VERSION)
		return bad_log(u, "not an undo log of this version");
	memcpy(h->old_id, b + 16, SQUIB_MEMORY_ID_SIZE);
	memcpy(h->new_id, b + 32, SQUIB_MEMORY_ID_SIZE);
	h->ram_size = squib_get_le64(b + 48);
	h->old_size = squib_get_le64(b + 56);
	h->range_count = squib_get_le64(b + 64);
	h->data_bytes = squib_get_le64(b + 72);
	if (h->old_size < h->ram_size || h->old_size - h->ram_size < SQUIB_MEMFILE_FOOTER_SIZE)
		return bad_log(u, "the old file size leaves no room for a footer");
	tail = h->old_size - h->ram_size;
	if (h->range_count > room / UNDO_RANGE || tail > room - h->range_count * UNDO_RANGE ||
	    h->data_bytes != room - h->range_count * UNDO_RANGE - tail)
		return bad_log(u, "its size does not match its header");
	return 0;
}

static int check_ranges(struct undo *u, const uint8_t *p)
{
	uint64_t data = 0;

	for (uint64_t i = 0; i < u->h.range_count; i++, p += UNDO_RANGE) {
		struct undo_range *r = &u->r[i];

		*r = (struct undo_range){squib_get_le64(p), squib_get_le64(p + 8),
					 squib_get_le32(p + 16)};
		if (r->kind > UNDO_HOLE || !r->len || r->off > u->h.ram_size ||
		    r->len > u->h.ram_size - r->off)
			return bad_log(u, "a range lies outside the RAM range");
		if (r->kind == UNDO_DATA)
			data += r->len;
	}
	return data == u->h.data_bytes ? 0 : bad_log(u, "the ranges do not add up to its data");
}

/* The CRC-64 of everything before the last 8 bytes. */
static int check_crc(struct undo *u)
{
	uint64_t crc = 0, off = 0, end = u->size - 8;
	uint8_t want[8];
	int rc;

	while (off < end) {
		size_t n = end - off < UNDO_CHUNK ? (size_t)(end - off) : UNDO_CHUNK;

		if ((rc = read_at(u, u->buf, n, off)))
			return rc;
		crc = squib_crc64(crc, u->buf, n);
		off += n;
	}
	if ((rc = read_at(u, want, 8, end)))
		return rc;
	return crc == squib_get_le64(want) ? 0 : bad_log(u, "CRC mismatch");
}

static int load_log(struct undo *u)
{
	uint8_t head[UNDO_HEADER], *ranges = NULL;
	struct stat st;
	int rc;

	if (fstat(u->fd, &st) < 0)
		return squib_memfile_io_error(u->d, errno, "stat of undo log %s", u->path);
	u->size = (uint64_t)st.st_size;
	if (!S_ISREG(st.st_mode) || u->size < UNDO_HEADER + 8)
		return bad_log(u, "too short");
	if ((rc = read_at(u, head, UNDO_HEADER, 0)) || (rc = check_header(u, head)))
		return rc;
	if (!(u->buf = malloc(UNDO_CHUNK)) ||
	    !(u->r = calloc((size_t)u->h.range_count + 1, sizeof(*u->r))) ||
	    !(ranges = malloc((size_t)u->h.range_count * UNDO_RANGE + 1)))
		return squib_fail(u->d, SQUIB_E_NOMEM);
	rc = read_at(u, ranges, (size_t)u->h.range_count * UNDO_RANGE, UNDO_HEADER);
	if (!rc)
		rc = check_ranges(u, ranges);
	free(ranges);
	return rc ? rc : check_crc(u);
}

/* ---- rolling back ---------------------------------------------------------------- */

/*
 * The log must be this file's: a base whose footer is intact and names
 * neither the old nor the new id was replaced since (a save renamed a new
 * file over it), and the log must not be applied to it. A torn footer is
 * what an interrupted rebase leaves: apply.
 */
static int check_base(struct undo *u, int bfd, const char *base)
{
	uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE], id[SQUIB_MEMORY_ID_SIZE];
	struct stat st;

	if (fstat(bfd, &st) < 0)
		return squib_memfile_io_error(u->d, errno, "stat of %s", base);
	if ((uint64_t)st.st_size < u->h.ram_size + SQUIB_MEMFILE_FOOTER_SIZE ||
	    squib_pread_all(bfd, foot, sizeof(foot), (uint64_t)st.st_size - sizeof(foot)) ||
	    !squib_memfile_footer_id(foot, id) || !memcmp(id, u->h.old_id, SQUIB_MEMORY_ID_SIZE) ||
	    !memcmp(id, u->h.new_id, SQUIB_MEMORY_ID_SIZE))
		return 0;
	return squib_fail_msg(u->d, SQUIB_E_PAIR_MISMATCH,
			      "undo log %s was written for memory file %s (rebased to %s), but %s "
			      "now has id %s; it was not applied",
			      u->path, squib_id_hex(u->h.old_id).s, squib_id_hex(u->h.new_id).s,
			      base, squib_id_hex(id).s);
}

/* A hole of the old base: punched back, or written as zeros where punching is not supported. */
static int restore_hole(struct undo *u, int bfd, const struct undo_range *r)
{
	uint64_t off = r->off, len = r->len;

	if (!fallocate(bfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len))
		return 0;
	if (errno != EOPNOTSUPP && errno != ENOSYS)
		return -errno;
	memset(u->buf, 0, UNDO_CHUNK);
	while (len) {
		size_t n = len < UNDO_CHUNK ? (size_t)len : UNDO_CHUNK;
		int e = squib_pwrite_all(bfd, u->buf, n, off);

		if (e)
			return e;
		off += n;
		len -= n;
	}
	return 0;
}

/* len bytes of the log at from, written into the base at to. */
static int restore_bytes(struct undo *u, int bfd, uint64_t from, uint64_t to, uint64_t len)
{
	while (len) {
		size_t n = len < UNDO_CHUNK ? (size_t)len : UNDO_CHUNK;
		int e = squib_pread_all(u->fd, u->buf, n, from);

		if (!e)
			e = squib_pwrite_all(bfd, u->buf, n, to);
		if (e)
			return e;
		from += n;
		to += n;
		len -= n;
	}
	return 0;
}

/* Every range, then the old tail, the old size, fsync. Idempotent: a crash here is rolled back
 * again. The old tail goes in before the cut, so the file never ends in guest RAM. */
static int apply(struct undo *u, int bfd, const char *base, const struct squib_io_hooks *hooks)
{
	uint64_t tail = u->h.old_size - u->h.ram_size;
	uint64_t at = UNDO_HEADER + u->h.range_count * UNDO_RANGE + tail;
	int e = 0;

	for (uint64_t i = 0; !e && i < u->h.range_count; i++) {
		const struct undo_range *r = &u->r[i];

		if (!(e = squib_hook(hooks, SQUIB_IO_WRITE, base)))
			e = r->kind == UNDO_HOLE ? restore_hole(u, bfd, r)
						 : restore_bytes(u, bfd, at, r->off, r->len);
		at += r->kind == UNDO_DATA ? r->len : 0;
	}
	if (!e && !(e = squib_hook(hooks, SQUIB_IO_WRITE, base)))
		e = restore_bytes(u, bfd, at - u->h.data_bytes - tail, u->h.ram_size, tail);
	if (!e && !(e = squib_hook(hooks, SQUIB_IO_WRITE, base)) &&
	    ftruncate(bfd, (off_t)u->h.old_size) < 0)
		e = -errno;
	if (!e && !(e = squib_hook(hooks, SQUIB_IO_FSYNC, base)) && fsync(bfd) < 0)
		e = -errno;
	return e ? squib_memfile_io_error(u->d, -e, "rolling %s back from %s", base, u->path) : 0;
}

static int roll_back(struct undo *u, const struct squib_dest_lock *base,
		     const struct squib_io_hooks *hooks, const struct squib_dest_lock *state)
{
	char garbage[NAME_MAX + 1];
	int bfd, rc;

	do
		bfd = openat(base->dir_fd, base->name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	while (bfd < 0 && errno == EINTR);
	if (bfd < 0)
		return squib_memfile_io_error(u->d, errno, "opening %s to roll back its rebase",
					      base->dest);
	rc = check_base(u, bfd, base->dest);
	/* The state temp the rebase prepared (named by the new id) goes before the log: once
	 * the log is gone nothing says that temp is garbage. */
	if (!rc && state &&
	    !squib_temp_name(state->name, u->h.new_id, SQUIB_MEMORY_ID_SIZE, garbage,
			     sizeof(garbage), NULL))
		unlinkat(state->dir_fd, garbage, 0);
	if (!rc)
		rc = apply(u, bfd, base->dest, hooks);
	close(bfd);
	return rc ? rc : squib_undo_discard(base, hooks, u->d);
}

int squib_undo_recover_locked(const struct squib_dest_lock *base,
			      const struct squib_io_hooks *hooks,
			      const struct squib_dest_lock *state, bool *rolled_back,
			      struct squib_error_detail *d)
{
	char name[NAME_MAX + 1], path[PATH_MAX];
	struct undo u = {.path = path, .d = d};
	int rc;

	*rolled_back = false;
	if (undo_name(base, name, sizeof(name)))
		return 0; /* no log can have that name */
	snprintf(path, sizeof(path), "%s/%s", base->dir, name);
	/* Under the base's lock no rebase of it runs: a log's temps are a dead one's. */
	squib_temps(base->dir_fd, name, SQUIB_TEMP_ORDINARY, true);
	if ((u.fd = squib_open_own_file(base->dir_fd, name)) < 0)
		return errno == ENOENT ? 0
				       : squib_memfile_io_error(d, errno,
								"opening undo log %s (it must be a "
								"regular file of this user)",
								path);
	rc = load_log(&u);
	if (!rc)
		rc = roll_back(&u, base, hooks, state);
	*rolled_back = rc == 0;
	close(u.fd);
	free(u.buf);
	free(u.r);
	return rc;
}

bool squib_undo_present(const char *base)
{
	char *path = squib_memfile_undo_path(base), *dir = squib_dir_of(base);
	const char *slash = strrchr(path ? path : "", '/');
	struct stat st;
	bool found = false;
	int fd;

	if (path && dir) {
		found = lstat(path, &st) == 0;
		if (!found && (fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
			found = squib_temps(fd, slash ? slash + 1 : path, SQUIB_TEMP_ORDINARY,
					    false) > 0;
			close(fd);
		}
	}
	free(path);
	free(dir);
	return found;
}

int squib_memfile_rebase_recover(const char *base, const struct squib_io_hooks *hooks,
				 bool *rolled_back, struct squib_error_detail *d)
{
	struct squib_dest_lock l;
	bool dummy;
	int rc;

	if (!rolled_back)
		rolled_back = &dummy;
	*rolled_back = false;
	if (!base || !*base)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL or empty memory path");
	if (!squib_undo_present(base))
		return 0;
	/* A rebase of base running now holds this lock: SQUIB_E_BUSY, never a roll-back
	 * under its feet. */
	if ((rc = squib_dest_lock(&l, base, hooks, d)))
		return rc;
	rc = squib_undo_recover_locked(&l, hooks, NULL, rolled_back, d);
	squib_dest_unlock(&l);
	return rc;
}
