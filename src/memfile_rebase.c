/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rebase: apply a chain of diffs onto its full base, into a new file
 * (atomically published) or in place (a footer that never claims pages the
 * file lacks, at every point a crash can stop it).
 */
#include "memfile_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

/* Largest single copy_file_range request and the pread/pwrite bounce buffer. */
#define COPY_CHUNK (1ull << 30)
/* ... and while progress is reported, so that reports come often enough. */
#define COPY_CHUNK_PROGRESS (64ull << 20)
#define BOUNCE_SIZE ((size_t)SQUIB_MEMFILE_MAX_WRITE)

struct rebase {
	struct squib_memfile *base;
	struct squib_memfile **diffs;
	size_t n;
	struct squib_memfile_rebase_options opts;
	int out_fd;	      /* where pages go: the temp, or base opened O_RDWR */
	const char *out_name; /* for hooks and messages */
	uint8_t *bounce;      /* pread/pwrite fallback buffer, made on first use */
	struct squib_memfile_manifest result;
	struct squib_progress_run run;
	struct squib_error_detail *d;
};

/* The caller's fault-injection hook: 0 to go on, or a negative errno. */
static int before(const struct rebase *rb, enum squib_io_step step)
{
	const struct squib_io_hooks *h = rb->opts.hooks;
	int r;

	if (!h || !h->before)
		return 0;
	r = h->before(h->ctx, step, rb->out_name);
	return r >= 0 ? 0 : r == INT_MIN ? -EIO : r;
}

/* ---- opening and checking every input -------------------------------------- */

static int open_inputs(struct rebase *rb, const char *base, const char *const *diffs, bool rw)
{
	int rc = squib_memfile_open_flags(base, rw ? O_RDWR : O_RDONLY, &rb->base, rb->d);

	if (rc)
		return rc;
	if (rb->base->m.layout.kind != SQUIB_MEMORY_FULL)
		return squib_fail_msg(rb->d, SQUIB_E_PAIR_MISMATCH,
				      "rebase base %s is a diff, not a full memory file", base);
	if (!(rb->diffs = calloc(rb->n, sizeof(*rb->diffs))))
		return squib_fail(rb->d, SQUIB_E_NOMEM);
	for (size_t i = 0; i < rb->n; i++) {
		struct squib_memfile *below = i ? rb->diffs[i - 1] : rb->base;

		if ((rc = squib_memfile_open(diffs[i], &rb->diffs[i], rb->d)) ||
		    (rc = squib_memfile_check_link(below, rb->diffs[i], rb->d)))
			return rc;
	}
	return 0;
}

static bool has_digests(const struct squib_memfile *m)
{
	return m->m.flags & SQUIB_MEMFILE_FLAG_DIGESTS;
}

/* Digests, when a diff has them, are checked before a byte is copied. */
static int verify_inputs(struct rebase *rb)
{
	int rc;

	for (size_t i = 0; i < rb->n; i++)
		if (has_digests(rb->diffs[i]) &&
		    (rc = squib_memfile_verify_digests_run(rb->diffs[i], &rb->run, rb->d)))
			return rc;
	return 0;
}

static uint64_t extent_bytes(const struct squib_memory_layout *l)
{
	uint64_t pages = 0;

	for (uint64_t i = 0; i < l->extent_count; i++)
		pages += l->extents[i].page_count;
	return pages * l->page_size;
}

/* Everything the rebase will read or copy, for progress reports. */
static uint64_t work_bytes(const struct rebase *rb, bool into_new_file)
{
	uint64_t total = into_new_file ? extent_bytes(&rb->base->m.layout) : 0;

	for (size_t i = 0; i < rb->n; i++) {
		uint64_t b = extent_bytes(&rb->diffs[i]->m.layout);

		total += has_digests(rb->diffs[i]) ? 2 * b : b;
	}
	if (rb->opts.digests)
		total += extent_bytes(&rb->result.layout);
	return total;
}

static void close_inputs(struct rebase *rb)
{
	squib_memfile_close(rb->base);
	for (size_t i = 0; rb->diffs && i < rb->n; i++)
		squib_memfile_close(rb->diffs[i]);
	free(rb->diffs);
	free(rb->bounce);
}

/* ---- the merged manifest ------------------------------------------------------ */

static int extent_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct squib_page_extent *)a)->first_page;
	uint64_t y = ((const struct squib_page_extent *)b)->first_page;

	return x < y ? -1 : x > y;
}

/* Sort, then merge overlapping or touching extents in place; returns the count. */
static uint64_t coalesce(struct squib_page_extent *v, uint64_t n)
{
	uint64_t out = 0;

	qsort(v, (size_t)n, sizeof(*v), extent_cmp);
	for (uint64_t i = 0; i < n; i++) {
		struct squib_page_extent *last = out ? &v[out - 1] : NULL;
		uint64_t end = v[i].first_page + v[i].page_count;

		if (last && v[i].first_page <= last->first_page + last->page_count) {
			if (end > last->first_page + last->page_count)
				last->page_count = end - last->first_page;
		} else {
			v[out++] = v[i];
		}
	}
	return out;
}

static int union_extents(struct rebase *rb, struct squib_memory_layout *l)
{
	uint64_t total = rb->base->m.layout.extent_count, at;

	for (size_t i = 0; i < rb->n; i++)
		total += rb->diffs[i]->m.layout.extent_count;
	if (total && !(l->extents = malloc((size_t)total * sizeof(*l->extents))))
		return squib_fail(rb->d, SQUIB_E_NOMEM);
	at = rb->base->m.layout.extent_count;
	if (at)
		memcpy(l->extents, rb->base->m.layout.extents, (size_t)at * sizeof(*l->extents));
	for (size_t i = 0; i < rb->n; i++) {
		const struct squib_memory_layout *dl = &rb->diffs[i]->m.layout;

		if (dl->extent_count)
			memcpy(l->extents + at, dl->extents, (size_t)dl->extent_count * sizeof(*l->extents));
		at += dl->extent_count;
	}
	l->extent_count = total ? coalesce(l->extents, total) : 0;
	if (l->extent_count > SQUIB_MEMORY_MAX_EXTENTS)
		return squib_fail_msg(rb->d, SQUIB_E_SIZE_LIMIT_EXCEEDED,
				      "the merged image has more than %llu extents",
				      SQUIB_MEMORY_MAX_EXTENTS);
	return 0;
}

/* Full image, id of the newest diff (whose state file must keep pairing). */
static int merged_manifest(struct rebase *rb)
{
	const struct squib_memory_layout *b = &rb->base->m.layout;
	struct squib_memory_layout *l = &rb->result.layout;

	l->kind = SQUIB_MEMORY_FULL;
	memcpy(l->id, rb->diffs[rb->n - 1]->m.layout.id, SQUIB_MEMORY_ID_SIZE);
	l->page_size = b->page_size;
	l->region_count = b->region_count;
	if (!(l->regions = malloc(b->region_count * sizeof(*l->regions))))
		return squib_fail(rb->d, SQUIB_E_NOMEM);
	memcpy(l->regions, b->regions, b->region_count * sizeof(*l->regions));
	rb->result.flags = rb->opts.digests ? SQUIB_MEMFILE_FLAG_DIGESTS : 0;
	return union_extents(rb, l);
}

/* ---- copying pages ------------------------------------------------------------- */

static int copy_bounce(struct rebase *rb, int in, uint64_t off, uint64_t len)
{
	if (!rb->bounce && !(rb->bounce = malloc(BOUNCE_SIZE)))
		return -ENOMEM;
	while (len) {
		size_t n = len < BOUNCE_SIZE ? (size_t)len : BOUNCE_SIZE;
		int e = squib_pread_all(in, rb->bounce, n, off);

		if (!e)
			e = squib_pwrite_all(rb->out_fd, rb->bounce, n, off);
		if (e)
			return e;
		off += n;
		len -= n;
		squib_progress_advance(&rb->run, n);
	}
	return 0;
}

/* Bytes [off, off + len) of `in` to the same offsets of the output. Errors
 * that mean "not between these files" switch to pread/pwrite for good. */
static int copy_range(struct rebase *rb, int in, uint64_t off, uint64_t len)
{
	uint64_t chunk = rb->run.p ? COPY_CHUNK_PROGRESS : COPY_CHUNK;

	while (len && !rb->opts.no_copy_file_range) {
		loff_t src = (loff_t)off, dst = (loff_t)off;
		ssize_t n = copy_file_range(in, &src, rb->out_fd, &dst,
					    (size_t)(len < chunk ? len : chunk), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			      errno == EOPNOTSUPP || errno == ENOTSUP)) {
			rb->opts.no_copy_file_range = true;
			break;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the input ends before its manifest says */
		off += (uint64_t)n;
		len -= (uint64_t)n;
		squib_progress_advance(&rb->run, (uint64_t)n);
	}
	return len ? copy_bounce(rb, in, off, len) : 0;
}

static int copy_layer(struct rebase *rb, const struct squib_memfile *layer)
{
	const struct squib_memory_layout *l = &layer->m.layout;

	for (uint64_t i = 0; i < l->extent_count; i++) {
		uint64_t off = l->extents[i].first_page * l->page_size;
		uint64_t len = l->extents[i].page_count * l->page_size;
		int e = before(rb, SQUIB_IO_WRITE);

		if (!e)
			e = copy_range(rb, layer->fd, off, len);
		if (e)
			return squib_memfile_io_error(rb->d, -e,
						      "copying %" PRIu64 " bytes at offset %" PRIu64
						      " from %s to %s",
						      len, off, layer->path, rb->out_name);
	}
	return 0;
}

static int copy_diffs(struct rebase *rb)
{
	int rc = 0;

	for (size_t i = 0; !rc && i < rb->n; i++) /* oldest first: newer pages win */
		rc = copy_layer(rb, rb->diffs[i]);
	return rc;
}

/* ---- manifest, footer, sync ---------------------------------------------------- */

/* Digests of the merged image, read back from what was written. */
static int merged_digests(struct rebase *rb, int fd)
{
	struct squib_memory_layout *l = &rb->result.layout;
	int rc;

	if (!rb->opts.digests || !l->extent_count)
		return 0;
	if (!(rb->result.digests = calloc((size_t)l->extent_count, sizeof(uint64_t))))
		return squib_fail(rb->d, SQUIB_E_NOMEM);
	for (uint64_t i = 0; i < l->extent_count; i++)
		if ((rc = squib_memfile_crc_range_run(fd, l->extents[i].first_page * l->page_size,
						      l->extents[i].page_count * l->page_size,
						      &rb->result.digests[i], &rb->run, rb->d)))
			return rc;
	return 0;
}

static int write_tail(struct rebase *rb, uint64_t magic)
{
	uint8_t *tail = NULL;
	size_t len = 0;
	int rc = squib_memfile_encode_tail(&rb->result, magic, &tail, &len, rb->d), e;

	if (rc)
		return rc;
	e = before(rb, SQUIB_IO_WRITE);
	if (!e)
		e = squib_pwrite_all(rb->out_fd, tail, len, rb->result.layout.ram_size);
	free(tail);
	return e ? squib_memfile_io_error(rb->d, -e, "writing the manifest of %s", rb->out_name) : 0;
}

static int sync_out(struct rebase *rb)
{
	int e = before(rb, SQUIB_IO_FSYNC);

	if (!e && fdatasync(rb->out_fd) < 0)
		e = -errno;
	return e ? squib_memfile_io_error(rb->d, -e, "syncing %s", rb->out_name) : 0;
}

/* ---- into a new file ------------------------------------------------------------ */

static int build_new(struct rebase *rb)
{
	int rc;

	if (ftruncate(rb->out_fd, (off_t)rb->base->m.layout.ram_size) < 0)
		return squib_memfile_io_error(rb->d, errno, "sizing %s", rb->out_name);
	if ((rc = copy_layer(rb, rb->base)) || (rc = copy_diffs(rb)))
		return rc;
	/* The temp is open read-write: read back through the fd, never its name again. */
	if ((rc = merged_digests(rb, rb->out_fd)))
		return rc;
	return write_tail(rb, SQUIB_MEMFILE_MAGIC);
}

static int rebase_new(struct rebase *rb, const char *out_path, struct squib_dest_lock *lock)
{
	const struct squib_atomic_options o = {.hooks = rb->opts.hooks, .lock = lock};
	struct squib_atomic_writer w;
	int rc = squib_atomic_open_ex(&w, out_path, &o, rb->d);

	if (rc)
		return rc;
	rb->out_fd = w.fd;
	rb->out_name = w.temp;
	rc = build_new(rb);
	if (!rc)
		return squib_atomic_commit(&w, rb->d);
	squib_atomic_abort(&w);
	return rc;
}

/* ---- in place ---------------------------------------------------------------------- */

/*
 * Three durable steps, so a crash anywhere leaves a file that does not claim
 * pages it lacks: (1) the footer is marked "rebase in progress" (CRC-valid,
 * refused by every reader); (2) the diffs' pages are copied; (3) the merged
 * manifest and footer are written over the old tail, and the file is cut to
 * its new size. Until (3) is complete the last 4096 bytes are the marked
 * footer, old manifest bytes or a torn new footer: refused (magic or CRC).
 */
static int rebase_in_place(struct rebase *rb)
{
	const struct squib_memfile_manifest *old = &rb->base->m;
	uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE];
	int rc, e;

	rb->out_fd = rb->base->fd;
	rb->out_name = rb->base->path;
	squib_memfile_encode_footer(old, SQUIB_MEMFILE_MAGIC_REBASING, foot);
	e = before(rb, SQUIB_IO_WRITE);
	if (!e)
		e = squib_pwrite_all(rb->out_fd, foot, sizeof(foot),
				     old->layout.file_size - sizeof(foot));
	if (e)
		return squib_memfile_io_error(rb->d, -e, "marking %s as being rebased", rb->out_name);
	if ((rc = sync_out(rb)) || (rc = copy_diffs(rb)) || (rc = sync_out(rb)) ||
	    (rc = merged_digests(rb, rb->out_fd)) || (rc = write_tail(rb, SQUIB_MEMFILE_MAGIC)))
		return rc;
	/* Only now drop what is left of a longer old tail. Never truncate to
	 * ram_size first: the file would end in guest RAM, and a guest can
	 * write bytes that look like a footer. */
	if (ftruncate(rb->out_fd, (off_t)rb->result.layout.file_size) < 0)
		return squib_memfile_io_error(rb->d, errno, "truncating %s", rb->out_name);
	return sync_out(rb);
}

int squib_memfile_rebase_ex(const char *base, const char *const *diffs, size_t n,
			    const char *out_path, const struct squib_memfile_rebase_options *opts,
			    const struct squib_progress *progress,
			    struct squib_memfile_manifest *result, struct squib_error_detail *d)
{
	struct rebase rb = {.n = n, .out_fd = -1, .run = {.p = progress}, .d = d};
	struct squib_dest_lock lock = {.dir_fd = -1, .fd = -1};
	int rc;

	if (result)
		memset(result, 0, sizeof(*result));
	if (!base || !diffs || !n)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "rebase needs a base and a diff");
	if (opts)
		rb.opts = *opts;
	/* The file written is checked and locked before the work: an output before
	 * any input is read, a base in place once it opened as a memory file. */
	rc = out_path ? squib_dest_lock(&lock, out_path, rb.opts.hooks, d) : 0;
	if (!rc)
		rc = open_inputs(&rb, base, diffs, out_path == NULL);
	if (!rc && !out_path)
		rc = squib_dest_lock(&lock, base, rb.opts.hooks, d);
	if (!rc)
		rc = merged_manifest(&rb);
	if (!rc) {
		rb.run.total = work_bytes(&rb, out_path != NULL);
		if (!(rc = verify_inputs(&rb)))
			rc = out_path ? rebase_new(&rb, out_path, &lock) : rebase_in_place(&rb);
	}
	close_inputs(&rb);
	squib_dest_unlock(&lock);
	if (!rc && result)
		*result = rb.result;
	else
		squib_memfile_manifest_release(&rb.result);
	return rc;
}

int squib_memfile_rebase(const char *base, const char *const *diffs, size_t n,
			 const char *out_path, const struct squib_memfile_rebase_options *opts,
			 struct squib_memfile_manifest *result, struct squib_error_detail *d)
{
	return squib_memfile_rebase_ex(base, diffs, n, out_path, opts, NULL, result, d);
}
