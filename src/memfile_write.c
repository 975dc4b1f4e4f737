/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Memory file writers: full (every non-zero page of process memory, holes
 * elsewhere) and diff (exactly the dirty pages). Both write page data at the
 * page's fixed offset, or for a packed diff back to back, gathering pages
 * whose file offsets continue into one pwritev of up to
 * SQUIB_MEMFILE_MAX_WRITE bytes, then append the manifest and footer in one write.
 */
#include "memfile_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "populated.h" /* a platform hook: no platform header in this file */
#include "util.h"

/* Pages gathered into one pwritev (IOV_MAX is 1024 on Linux). */
#define WRITE_IOV 1024

struct writer {
	struct squib_atomic_writer *aw;
	const struct squib_memfile_source *src;
	uint64_t ps;			  /* file page size */
	struct squib_mem_region *regions; /* guest geometry, copied from src */
	uint64_t *first_page;		  /* file page index where each region starts */
	struct squib_extent_list ext;
	/* The pending gathered write: len bytes from iov[0..niov) to file offset off. */
	struct iovec *iov; /* WRITE_IOV entries, on the heap: a VMM thread's stack may be small */
	int niov;
	uint64_t off;
	size_t len;
	bool packed;			   /* pages back to back from offset 0 (diff only) */
	uint64_t cursor;		   /* packed: the file offset of the next page */
	struct squib_populated *populated; /* NULL: every page is read */
	enum squib_memfile_detect detect;
	const uint8_t *id;			   /* the caller's id, or NULL */
	const struct squib_memfile_populated *pop; /* the caller's populated ranges, or NULL */
	/* pop's claim path (live saves): the block claimed now, if any. */
	bool claiming, claimed;
	uint32_t claim_region;
	uint64_t claim_block;
	const uint8_t *direct;
	uint64_t staged[SQUIB_MEMFILE_CLAIM_MAX_PAGES / 64];
	struct squib_memfile_write_stats st;
	struct squib_error_detail *d;
};

/* ---- setup ----------------------------------------------------------------- */

/* The atomic writer's fault-injection hook, for page writes that bypass
 * squib_atomic_pwrite (whose errors would be SQUIB_E_IO, not MEMORY_IO). */
static int before_write(const struct writer *wr)
{
	const struct squib_io_hooks *h = wr->aw->hooks;
	int r;

	if (!h || !h->before)
		return 0;
	r = h->before(h->ctx, SQUIB_IO_WRITE, wr->aw->temp);
	return r >= 0 ? 0 : r == INT_MIN ? -EIO : r;
}

static int check_source(const struct squib_memfile_source *src, struct squib_error_detail *d)
{
	if (!src || (src->region_count && !src->regions))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL memory source");
	for (uint32_t i = 0; i < src->region_count; i++) {
		const struct squib_memfile_source_region *r = &src->regions[i];

		if (!r->host || r->size > UINTPTR_MAX - (uintptr_t)r->host)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "region %u: host mapping %p of 0x%" PRIx64
					      " bytes is not addressable",
					      i, r->host, r->size);
	}
	return 0;
}

/* Copy the geometry and check it: upstream rejects bad geometry as InvalidPath. */
static int writer_init(struct writer *wr, struct squib_atomic_writer *aw,
		       const struct squib_memfile_source *src, bool digests,
		       struct squib_error_detail *d)
{
	uint32_t n;
	int rc;

	*wr = (struct writer){.aw = aw, .src = src, .d = d};
	if (!aw || aw->phase != SQUIB_ATOMIC_OPEN)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "atomic writer is not open");
	if ((rc = check_source(src, d)) ||
	    (rc = squib_mem_check_page_size(src->page_size, SQUIB_E_INVALID_PATH, d)))
		return rc;
	n = src->region_count;
	wr->ps = src->page_size;
	wr->regions = calloc(n ? n : 1, sizeof(*wr->regions));
	wr->first_page = calloc(n ? n : 1, sizeof(*wr->first_page));
	wr->iov = calloc(WRITE_IOV, sizeof(*wr->iov));
	if (!wr->regions || !wr->first_page || !wr->iov)
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < n; i++) {
		wr->regions[i] =
		    (struct squib_mem_region){src->regions[i].guest_addr, src->regions[i].size};
		wr->first_page[i] =
		    i ? wr->first_page[i - 1] + wr->regions[i - 1].size / wr->ps : 0;
	}
	wr->ext.with_digests = digests;
	return squib_mem_check_regions(wr->regions, n, wr->ps, NULL, SQUIB_E_INVALID_PATH, d);
}

static void writer_free(struct writer *wr)
{
	free(wr->regions);
	free(wr->first_page);
	free(wr->iov);
	squib_extent_list_free(&wr->ext);
	squib_populated_close(wr->populated);
}

#define SQUIB_WRITEBACK_MIN (1u << 20)

/* ---- page data --------------------------------------------------------------- */

/*
 * Start writeback of a large run now, so the disk works while we copy the next
 * runs; the final fsync then waits for less. Only a hint (durability still comes
 * from squib_atomic_prepare's fsync), so its errors are ignored. Small runs are
 * left to the fsync: a syscall per scattered page would cost more than it saves.
 */
static void start_writeback(int fd, uint64_t off, size_t len)
{
	if (len >= SQUIB_WRITEBACK_MIN)
		(void)sync_file_range(fd, (off64_t)off, (off64_t)len, SYNC_FILE_RANGE_WRITE);
}

/* pwritev all of iov[0..n) at off, retrying EINTR and short writes (iov is consumed). */
static int pwritev_all(int fd, struct iovec *iov, int n, uint64_t off)
{
	while (n) {
		ssize_t w = pwritev(fd, iov, n, (off_t)off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		off += (uint64_t)w;
		while (n && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int flush(struct writer *wr)
{
	int e;

	if (!wr->len)
		return 0;
	e = wr->claimed ? 0 : before_write(wr);
	if (!e)
		e = wr->niov == 1
			? squib_pwrite_all(wr->aw->fd, wr->iov[0].iov_base, wr->len, wr->off)
			: pwritev_all(wr->aw->fd, wr->iov, wr->niov, wr->off);
	if (e)
		return squib_memfile_io_error(wr->d, -e,
					      "write of %zu bytes at offset %" PRIu64 " of %.400s",
					      wr->len, wr->off, wr->aw->temp);
	wr->st.write_calls++;
	start_writeback(wr->aw->fd, wr->off, wr->len);
	wr->len = 0;
	wr->niov = 0;
	return 0;
}

/* Queue bytes for writing: they join the pending write when their file offset
 * continues it (and extend its last piece when the memory does too). */
static int queue_write(struct writer *wr, const uint8_t *ptr, uint64_t off, uint64_t len)
{
	int rc;

	while (len) {
		struct iovec *last = wr->niov ? &wr->iov[wr->niov - 1] : NULL;
		size_t take;

		if (!wr->len || wr->off + wr->len != off || wr->len >= SQUIB_MEMFILE_MAX_WRITE ||
		    ((uint8_t *)last->iov_base + last->iov_len != ptr && wr->niov == WRITE_IOV)) {
			if ((rc = flush(wr)))
				return rc;
			wr->off = off;
			last = NULL;
		}
		take = SQUIB_MEMFILE_MAX_WRITE - wr->len;
		take = take < len ? take : (size_t)len;
		if (last && (uint8_t *)last->iov_base + last->iov_len == ptr)
			last->iov_len += take;
		else
			wr->iov[wr->niov++] = (struct iovec){(void *)ptr, take};
		wr->len += take;
		ptr += take;
		off += take;
		len -= take;
	}
	return 0;
}

/* Pages [p, p + n) of region i are present: record and write them (read at base). */
static int emit_from(struct writer *wr, const uint8_t *base, uint32_t i, uint64_t p, uint64_t n)
{
	const uint8_t *ptr = base + p * wr->ps;
	uint64_t page = wr->first_page[i] + p;
	int rc = squib_extent_list_add(&wr->ext, page, n, ptr, (size_t)(n * wr->ps));

	if (rc == SQUIB_E_SIZE_LIMIT_EXCEEDED)
		return squib_fail_msg(wr->d, SQUIB_E_SIZE_LIMIT_EXCEEDED,
				      "more than %llu extents in one memory file",
				      SQUIB_MEMORY_MAX_EXTENTS);
	if (rc)
		return squib_fail(wr->d, rc);
	wr->st.pages_written += n;
	if (wr->packed) {
		wr->cursor += n * wr->ps;
		return queue_write(wr, ptr, wr->cursor - n * wr->ps, n * wr->ps);
	}
	return queue_write(wr, ptr, page * wr->ps, n * wr->ps);
}

static int emit(struct writer *wr, uint32_t i, uint64_t p, uint64_t n)
{
	return emit_from(wr, wr->src->regions[i].host, i, p, n);
}

/* All-zero check, 256 bytes at a time so a non-zero page costs one block. */
static bool page_is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i += 256) {
		uint64_t acc = 0;

		for (size_t j = 0; j < 256; j += 8) {
			uint64_t v;

			memcpy(&v, p + i + j, sizeof(v));
			acc |= v;
		}
		if (acc)
			return false;
	}
	return true;
}

/* Read pages [p0, p1) of region i at base and emit the non-zero runs. */
static int emit_nonzero(struct writer *wr, const uint8_t *base, uint32_t i, uint64_t p0,
			uint64_t p1)
{
	uint64_t run = p0;
	int rc;

	for (uint64_t p = p0; p < p1; p++) {
		if (!page_is_zero(base + p * wr->ps, (size_t)wr->ps))
			continue;
		wr->st.pages_zero++;
		if (run < p && (rc = emit_from(wr, base, i, run, p - run)))
			return rc;
		run = p + 1;
	}
	return run < p1 ? emit_from(wr, base, i, run, p1 - run) : 0;
}

/* ---- full: the claim path (live saves) ----------------------------------------- */

/* The claimed block's bytes are in the file (flushed): hand it back. */
static int unclaim(struct writer *wr)
{
	int rc, e;

	if (!wr->claimed)
		return 0;
	rc = flush(wr);
	wr->claimed = false;
	e = wr->pop->release(wr->pop->ctx);
	if (rc)
		return rc;
	return e ? squib_memfile_io_error(wr->d, -e, "live save: releasing a written block") : 0;
}

static int claim_block(struct writer *wr, uint32_t i, uint64_t blk)
{
	int rc;

	if (wr->claimed && wr->claim_region == i && wr->claim_block == blk)
		return 0;
	if ((rc = unclaim(wr)))
		return rc;
	/* The fault-injection hook runs before the block is claimed, not in its
	 * flushes: a hook that waits for the guest must not hold guest writes. */
	if ((rc = before_write(wr)))
		return squib_memfile_io_error(wr->d, -rc, "write to %.400s", wr->aw->temp);
	rc = wr->pop->claim(wr->pop->ctx, i, blk * wr->pop->claim_bytes, &wr->direct, wr->staged);
	if (rc)
		return squib_memfile_io_error(
		    wr->d, -rc, "live save: claiming block %" PRIu64 " of region %u", blk, i);
	wr->claimed = true;
	wr->claim_region = i;
	wr->claim_block = blk;
	return 0;
}

static bool staged(const struct writer *wr, uint64_t k)
{
	return (wr->staged[k / 64] >> (k % 64)) & 1;
}

/* Pages [p0, p1) of region i, block by block: each run from the source
 * (staged) or from the direct mapping, as the claim says. */
static int emit_claimed(struct writer *wr, uint32_t i, uint64_t p0, uint64_t p1)
{
	uint64_t bp = wr->pop->claim_bytes / wr->ps;
	const uint8_t *src = wr->src->regions[i].host;
	int rc;

	while (p0 < p1) {
		uint64_t blk = p0 / bp, end = (blk + 1) * bp < p1 ? (blk + 1) * bp : p1;

		if ((rc = claim_block(wr, i, blk)))
			return rc;
		while (p0 < end) {
			bool st = staged(wr, p0 - blk * bp);
			uint64_t q = p0 + 1;

			while (q < end && staged(wr, q - blk * bp) == st)
				q++;
			if ((rc = emit_nonzero(wr, st ? src : wr->direct, i, p0, q)))
				return rc;
			p0 = q;
		}
	}
	return 0;
}

/* ---- full: populated ranges --------------------------------------------------- */

struct region_walk {
	struct writer *wr;
	uint32_t i;
	uint64_t next; /* first page of the region not yet handled */
	int rc;	       /* a SQUIB_E_* from emitting, which stops the walk */
};

/* A populated host range: its file pages (rounded outwards, since a file page
 * may be larger than a host page) are read; the pages skipped to get there
 * were never populated. */
static int on_populated(void *ctx, uint64_t start, uint64_t end)
{
	struct region_walk *w = ctx;
	const struct squib_memfile_source_region *r = &w->wr->src->regions[w->i];
	uint64_t h = (uintptr_t)r->host, ps = w->wr->ps, p0, p1;

	start = start > h ? start - h : 0;
	end = end < h + r->size ? end - h : r->size;
	if (start >= end)
		return 0;
	p0 = start / ps;
	p1 = (end + ps - 1) / ps;
	if (p0 < w->next)
		p0 = w->next;
	if (p0 >= p1)
		return 0;
	w->wr->st.pages_unpopulated += p0 - w->next;
	w->next = p1;
	w->rc = w->wr->claiming ? emit_claimed(w->wr, w->i, p0, p1)
				: emit_nonzero(w->wr, r->host, w->i, p0, p1);
	return w->rc ? 1 : 0;
}

static int full_region_walk(struct writer *wr, uint32_t i)
{
	const struct squib_memfile_source_region *r = &wr->src->regions[i];
	struct region_walk w = {wr, i, 0, 0};
	uint64_t pages = r->size / wr->ps;
	int e = wr->pop ? wr->pop->walk(wr->pop->ctx, i, on_populated, &w)
			: squib_populated_walk(wr->populated, wr->detect, r->host, (size_t)r->size,
					       on_populated, &w);
	int u = unclaim(wr); /* always: the claimer waits for it */

	if (w.rc)
		return w.rc;
	if (u)
		return u;
	if (e)
		return squib_memfile_io_error(wr->d, -e, "scanning populated pages of region %u",
					      i);
	wr->st.pages_unpopulated += pages - w.next;
	return 0;
}

static int full_region(struct writer *wr, uint32_t i)
{
	const struct squib_memfile_source_region *r = &wr->src->regions[i];
	bool skippable = false;

	if (wr->pop)
		return full_region_walk(wr, i);
	if (wr->detect != SQUIB_DETECT_NONE &&
	    squib_populated_region_skippable(r->host, (size_t)r->size, &skippable) < 0)
		skippable = false; /* no smaps: read everything, which is always right */
	if (!skippable)
		return emit_nonzero(wr, r->host, i, 0, r->size / wr->ps);
	return full_region_walk(wr, i);
}

/* Open the platform hook and settle the method: AUTO falls back scan -> read
 * -> none; an explicit method that does not work here is an error. */
static int choose_detect(struct writer *wr, enum squib_memfile_detect want)
{
	static const enum squib_memfile_detect order[] = {SQUIB_DETECT_PAGEMAP_SCAN,
							  SQUIB_DETECT_PAGEMAP_READ};
	int e;

	wr->detect = SQUIB_DETECT_NONE;
	if (want == SQUIB_DETECT_NONE)
		return 0;
	e = squib_populated_open(&wr->populated);
	for (size_t k = 0; !e && k < SQUIB_ARRAY_SIZE(order); k++) {
		if (want != SQUIB_DETECT_AUTO && want != order[k])
			continue;
		if (!(e = squib_populated_probe(wr->populated, order[k]))) {
			wr->detect = order[k];
			return 0;
		}
		if (want == SQUIB_DETECT_AUTO)
			e = 0;
	}
	if (want == SQUIB_DETECT_AUTO)
		return 0;
	return squib_memfile_io_error(wr->d, e ? -e : EINVAL,
				      "populated-page detection method %d is not available", want);
}

/* ---- diff: dirty bitmaps ------------------------------------------------------ */

static int check_bitmap(const struct writer *wr, uint32_t i, const struct squib_dirty_bitmap *bm)
{
	const struct squib_mem_region *r = &wr->regions[i];
	uint64_t bps;

	if (!bm)
		return squib_fail_msg(wr->d, SQUIB_E_INVALID_ARGUMENT, "bitmap %u is NULL", i);
	bps = squib_dirty_bitmap_page_size(bm);
	/* Upstream's two checks and messages, per region. */
	if (squib_dirty_bitmap_ram_size(bm) != r->size)
		return squib_fail_msg(wr->d, SQUIB_E_INVALID_PATH,
				      "diff bitmap covers %" PRIu64
				      " bytes, memory file expects %" PRIu64,
				      squib_dirty_bitmap_ram_size(bm), r->size);
	if (bps < wr->ps || bps % wr->ps)
		return squib_fail_msg(wr->d, SQUIB_E_INVALID_PATH,
				      "diff bitmap page (%" PRIu64
				      ") must be a multiple of memory-file page (%" PRIu64 ")",
				      bps, wr->ps);
	/* Ours: upstream never compared starts, so a bitmap of another region passed. */
	if (squib_dirty_bitmap_ram_start(bm) != r->guest_addr)
		return squib_fail_msg(wr->d, SQUIB_E_INVALID_PATH,
				      "diff bitmap starts at 0x%" PRIx64
				      ", memory region %u at 0x%" PRIx64,
				      squib_dirty_bitmap_ram_start(bm), i, r->guest_addr);
	return 0;
}

static int diff_region(struct writer *wr, uint32_t i, const struct squib_dirty_bitmap *bm)
{
	uint64_t ratio = squib_dirty_bitmap_page_size(bm) / wr->ps;
	uint64_t pages = wr->regions[i].size / wr->ps;
	uint64_t bits = squib_dirty_bitmap_page_count(bm);
	int rc;

	for (uint64_t b = 0; b < bits; b++) {
		uint64_t p0 = b * ratio, n;

		if (!squib_dirty_bitmap_test_by_index(bm, b))
			continue;
		/* A partial trailing bitmap page covers only the pages that exist. */
		n = pages - p0 < ratio ? pages - p0 : ratio;
		if ((rc = emit(wr, i, p0, n)))
			return rc;
	}
	return 0;
}

/* ---- finishing ------------------------------------------------------------------ */

/* Move the geometry and extents into *out, then write manifest and footer. */
static int finish(struct writer *wr, enum squib_memory_kind kind, const uint8_t *parent,
		  struct squib_memfile_manifest *out)
{
	struct squib_memory_layout *l = &out->layout;
	uint8_t *tail = NULL;
	size_t len = 0;
	int rc, e;

	memset(out, 0, sizeof(*out));
	if ((rc = flush(wr)))
		return rc;
	if (wr->id && !squib_mem_id_is_zero(wr->id))
		memcpy(l->id, wr->id, SQUIB_MEMORY_ID_SIZE);
	else if ((rc = squib_memfile_new_id(l->id, wr->d)))
		return rc;
	l->kind = kind;
	if (parent)
		memcpy(l->parent_id, parent, SQUIB_MEMORY_ID_SIZE);
	l->page_size = wr->ps;
	l->region_count = wr->src->region_count;
	l->regions = wr->regions;
	wr->regions = NULL;
	l->extent_count = wr->ext.n;
	l->extents = wr->ext.v;
	out->digests = wr->ext.digests;
	out->flags = (wr->ext.with_digests ? SQUIB_MEMFILE_FLAG_DIGESTS : 0) |
		     (wr->packed ? SQUIB_MEMFILE_FLAG_PACKED : 0);
	wr->ext = (struct squib_extent_list){0};
	if ((rc = squib_memfile_encode_tail(out, SQUIB_MEMFILE_MAGIC, &tail, &len, wr->d)))
		return rc;
	e = before_write(wr);
	if (!e)
		e = squib_pwrite_all(wr->aw->fd, tail, len, squib_memfile_data_bytes(out));
	free(tail);
	if (e)
		return squib_memfile_io_error(
		    wr->d, -e, "write of the manifest and footer of %.400s", wr->aw->temp);
	return 0;
}

static int truncate_to_ram(struct writer *wr)
{
	uint64_t ram = 0;

	if (wr->packed)
		return 0; /* no holes: the pages and the tail are written back to back */
	for (uint32_t i = 0; i < wr->src->region_count; i++)
		ram += wr->regions[i].size;
	/* Holes everywhere first: pages never written read back as zeros. */
	if (ftruncate(wr->aw->fd, (off_t)ram) < 0)
		return squib_memfile_io_error(wr->d, errno, "extending %.400s to %" PRIu64 " bytes",
					      wr->aw->temp, ram);
	return 0;
}

static int done(struct writer *wr, int rc, struct squib_memfile_manifest *out,
		struct squib_memfile_write_stats *stats)
{
	if (rc && out)
		squib_memfile_manifest_release(out);
	if (stats)
		*stats = wr->st;
	writer_free(wr);
	return rc;
}

int squib_memfile_write_full(struct squib_atomic_writer *w, const struct squib_memfile_source *src,
			     const struct squib_memfile_write_options *opts,
			     struct squib_memfile_manifest *out,
			     struct squib_memfile_write_stats *stats, struct squib_error_detail *d)
{
	return squib_memfile_write_full_walk(w, src, opts, NULL, out, stats, d);
}

int squib_memfile_write_full_walk(struct squib_atomic_writer *w,
				  const struct squib_memfile_source *src,
				  const struct squib_memfile_write_options *opts,
				  const struct squib_memfile_populated *pop,
				  struct squib_memfile_manifest *out,
				  struct squib_memfile_write_stats *stats,
				  struct squib_error_detail *d)
{
	struct squib_memfile_write_options o =
	    opts ? *opts : (struct squib_memfile_write_options){0};
	struct writer wr;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL manifest");
	memset(out, 0, sizeof(*out));
	if (o.packed)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "only a diff can be packed: a full file stays mappable");
	if ((rc = writer_init(&wr, w, src, o.digests, d)) || (rc = choose_detect(&wr, o.detect)) ||
	    (rc = truncate_to_ram(&wr)))
		return done(&wr, rc, out, stats);
	wr.id = o.id;
	wr.pop = pop;
	wr.claiming = pop && pop->claim && pop->release && pop->claim_page == wr.ps &&
		      pop->claim_bytes && pop->claim_bytes % wr.ps == 0 &&
		      pop->claim_bytes / wr.ps <= SQUIB_MEMFILE_CLAIM_MAX_PAGES;
	wr.st.detect = wr.detect;
	for (uint32_t i = 0; !rc && i < src->region_count; i++)
		rc = full_region(&wr, i);
	if (!rc)
		rc = finish(&wr, SQUIB_MEMORY_FULL, NULL, out);
	return done(&wr, rc, out, stats);
}

static int check_bitmaps(struct writer *wr, const uint8_t *parent_id,
			 const struct squib_dirty_bitmap *const *bitmaps, uint32_t count)
{
	int rc;

	if (!parent_id || squib_mem_id_is_zero(parent_id))
		return squib_fail_msg(wr->d, SQUIB_E_INVALID_PATH, "a diff needs its parent's id");
	if (!bitmaps || count != wr->src->region_count)
		return squib_fail_msg(wr->d, SQUIB_E_INVALID_PATH,
				      "a diff needs one dirty bitmap per memory region "
				      "(%u regions, %u bitmaps)",
				      wr->src->region_count, bitmaps ? count : 0);
	for (uint32_t i = 0; i < count; i++)
		if ((rc = check_bitmap(wr, i, bitmaps[i])))
			return rc;
	return 0;
}

int squib_memfile_write_diff(struct squib_atomic_writer *w, const struct squib_memfile_source *src,
			     const uint8_t parent_id[SQUIB_MEMORY_ID_SIZE],
			     const struct squib_dirty_bitmap *const *bitmaps, uint32_t bitmap_count,
			     const struct squib_memfile_write_options *opts,
			     struct squib_memfile_manifest *out,
			     struct squib_memfile_write_stats *stats, struct squib_error_detail *d)
{
	bool digests = opts && opts->digests;
	struct writer wr;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL manifest");
	memset(out, 0, sizeof(*out));
	rc = writer_init(&wr, w, src, digests, d);
	wr.packed = opts && opts->packed;
	if (rc || (rc = check_bitmaps(&wr, parent_id, bitmaps, bitmap_count)) ||
	    (rc = truncate_to_ram(&wr)))
		return done(&wr, rc, out, stats);
	wr.id = opts ? opts->id : NULL;
	for (uint32_t i = 0; !rc && i < src->region_count; i++)
		rc = diff_region(&wr, i, bitmaps[i]);
	if (!rc)
		rc = finish(&wr, SQUIB_MEMORY_DIFF, parent_id, out);
	return done(&wr, rc, out, stats);
}

/* ---- whole-file convenience ------------------------------------------------------ */

static int commit_or_abort(struct squib_atomic_writer *w, int rc,
			   struct squib_memfile_manifest *out, struct squib_error_detail *d)
{
	if (!rc)
		rc = squib_atomic_commit(w, d);
	else
		squib_atomic_abort(w);
	if (rc)
		squib_memfile_manifest_release(out);
	return rc;
}

int squib_memfile_save_full(const char *path, const struct squib_memfile_source *src,
			    const struct squib_memfile_write_options *opts,
			    struct squib_memfile_manifest *out, struct squib_error_detail *d)
{
	struct squib_atomic_writer w;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL manifest");
	memset(out, 0, sizeof(*out));
	if ((rc = squib_atomic_open(&w, path, NULL, d)))
		return rc;
	rc = squib_memfile_write_full(&w, src, opts, out, NULL, d);
	return commit_or_abort(&w, rc, out, d);
}

int squib_memfile_save_diff(const char *path, const struct squib_memfile_source *src,
			    const uint8_t parent_id[SQUIB_MEMORY_ID_SIZE],
			    const struct squib_dirty_bitmap *const *bitmaps, uint32_t bitmap_count,
			    const struct squib_memfile_write_options *opts,
			    struct squib_memfile_manifest *out, struct squib_error_detail *d)
{
	struct squib_atomic_writer w;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL manifest");
	memset(out, 0, sizeof(*out));
	if ((rc = squib_atomic_open(&w, path, NULL, d)))
		return rc;
	rc =
	    squib_memfile_write_diff(&w, src, parent_id, bitmaps, bitmap_count, opts, out, NULL, d);
	return commit_or_abort(&w, rc, out, d);
}
