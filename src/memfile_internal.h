/* SPDX-License-Identifier: Apache-2.0 */
/* Memory-file internals shared by the format, writer, reader and rebase (not installed). */
#ifndef SQUIB_MEMFILE_INTERNAL_H
#define SQUIB_MEMFILE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"
#include <sys/types.h>

#include <squib/memfile.h>
#include <squib/progress.h>

#include "memlayout.h"

/* The footer's fields as stored (docs/FORMAT.md §M.3). */
struct squib_memfile_footer {
	uint64_t magic;
	struct squib_version version;
	uint32_t flags;
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	uint8_t parent_id[SQUIB_MEMORY_ID_SIZE];
	uint32_t kind;
	uint32_t region_count;
	uint64_t page_size;
	uint64_t ram_size;
	uint64_t present_pages;
	uint64_t manifest_offset;
	uint64_t manifest_length;
	uint64_t extent_count;
	uint64_t manifest_crc;
	uint64_t file_size;
};

/* ---- format (memfile_format.c) ------------------------------------------ */

/*
 * Footer checks up to the manifest: CRC, magic, version, then every field
 * against file_size. On success the manifest sits at f->manifest_offset and
 * its area (padding included) runs to file_size - 4096.
 */
int squib_memfile_footer_parse(const uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE], uint64_t file_size,
			       struct squib_memfile_footer *f, struct squib_error_detail *d);

/* SQUIB_E_TOO_SHORT for a file of `size` bytes (shorter than a footer). */
int squib_memfile_too_short(uint64_t size, struct squib_error_detail *d);

/* The manifest area (`len` = file_size - 4096 - ram_size bytes) into *out,
 * then the whole layout validated. *out is released on failure. */
int squib_memfile_manifest_parse(const uint8_t *area, size_t len,
				 const struct squib_memfile_footer *f,
				 struct squib_memfile_manifest *out, struct squib_error_detail *d);

/* Bytes of page data before the manifest: ram_size, or for a PACKED file
 * present_pages * page_size (where the manifest starts). */
uint64_t squib_memfile_data_bytes(const struct squib_memfile_manifest *m);

/* Size of the manifest area between the page data and the footer. */
uint64_t squib_memfile_area_bytes(const struct squib_memfile_footer *f);

/*
 * Complete a manifest whose layout has kind, ids, page size, regions and
 * extents (and digests when flags say so): present_pages, ram_size,
 * file_size, manifest_crc and version. Then encode the manifest area and
 * footer (magic `magic`) into a new buffer of *len bytes, to be written at
 * offset ram_size. SQUIB_E_NOMEM, or the layout's validation error
 * (SQUIB_E_INVALID_ARGUMENT).
 */
int squib_memfile_encode_tail(struct squib_memfile_manifest *m, uint64_t magic, uint8_t **buf,
			      size_t *len, struct squib_error_detail *d);

/* Just the footer of a completed manifest. */
void squib_memfile_encode_footer(const struct squib_memfile_manifest *m, uint64_t magic,
				 uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE]);

/* A CRC-valid footer (magic SQUIBMEM or SQUIBRBS): its id into id, true.
 * Anything else (torn, another format): false. */
bool squib_memfile_footer_id(const uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE],
			     uint8_t id[SQUIB_MEMORY_ID_SIZE]);

/* ---- the undo log of an in-place rebase (memfile_undo.c) ----------------- */

/*
 * Write and publish BASE.undo: the bytes of `base` that pages
 * [first_page, +page_count) of `over` (sorted, disjoint) and the tail will
 * overwrite, with the base's id and new_id, the id it is rebased to. Durable
 * (fsync, rename, directory fsync) when it returns 0; nothing published
 * otherwise. Hooks: the atomic writer's, on the log's path.
 */
int squib_undo_write(const struct squib_memfile *base, const struct squib_page_extent *over,
		     uint64_t count, const uint8_t new_id[SQUIB_MEMORY_ID_SIZE],
		     const struct squib_io_hooks *hooks, struct squib_error_detail *d);

/*
 * squib_memfile_rebase_recover with the base's lock held (squib/atomic.h),
 * and, when `state` (may be NULL) is a held state lock, the state temp the
 * rebase prepared (STATE.<new id>.tmp) removed once the log is known to be
 * this base's and before the log goes (so that a crash in between cannot
 * leave that temp without the log that says it is garbage).
 */
int squib_undo_recover_locked(const struct squib_dest_lock *base,
			      const struct squib_io_hooks *hooks,
			      const struct squib_dest_lock *state, bool *rolled_back,
			      struct squib_error_detail *d);

/* Is there an undo log of base, or a temp of one (no lock: only to decide whether to take one)? */
bool squib_undo_present(const char *base);

/*
 * The in-place rebase's commit, under the base's lock: unlink BASE.undo (hook
 * SQUIB_IO_UNLINK), fsync its directory. 0; SQUIB_E_IO when unlinked but the
 * directory did not sync; SQUIB_E_ATOMIC_COMMIT_FAILED when the log is still there.
 */
int squib_undo_discard(const struct squib_dest_lock *base, const struct squib_io_hooks *hooks,
		       struct squib_error_detail *d);

/* ---- growable extent list (memfile_format.c) ---------------------------- */

/* Extents appended in ascending page order; touching runs merge. */
struct squib_extent_list {
	struct squib_page_extent *v;
	uint64_t *digests; /* parallel to v when tracking digests, else NULL */
	uint64_t n, cap;
	bool with_digests;
};

/*
 * Append pages [first, first + count) whose bytes are data[0, len) (read only
 * when digests are kept: a run that touches the previous extent continues
 * that extent's CRC, which is what CRC-64/Jones with init 0 and no final XOR
 * allows). SQUIB_E_SIZE_LIMIT_EXCEEDED past SQUIB_MEMORY_MAX_EXTENTS,
 * SQUIB_E_NOMEM; the list is unchanged then.
 */
int squib_extent_list_add(struct squib_extent_list *l, uint64_t first, uint64_t count,
			  const void *data, size_t len);
void squib_extent_list_free(struct squib_extent_list *l);

/* ---- I/O helpers (memfile_format.c) ------------------------------------- */

/* pread/pwrite all of it, retrying EINTR and short transfers; 0 or -errno
 * (-EIO for an unexpected end of file). */
int squib_pread_all(int fd, void *buf, size_t len, uint64_t off);
/* pwrite all of buf at off; 0 or -errno. */
static inline int squib_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	return squib_fd_write_all(fd, buf, len, (off_t)off);
}

/* SQUIB_E_MEMORY_IO with errno e (positive) and a message saying what failed. */
int squib_memfile_io_error(struct squib_error_detail *d, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fill id with random bytes (getrandom), never all zero. */
int squib_memfile_new_id(uint8_t id[SQUIB_MEMORY_ID_SIZE], struct squib_error_detail *d);

/* CRC-64 of `len` bytes of fd at off, read in bounded chunks. */
int squib_memfile_crc_range(int fd, uint64_t off, uint64_t len, uint64_t *crc,
			    struct squib_error_detail *d);

/* ---- progress ------------------------------------------------------------ */

/* One operation's running report to a caller's squib_progress (p NULL: none). */
struct squib_progress_run {
	const struct squib_progress *p;
	uint64_t done, total;
};

/* `n` more bytes done: report (done is clamped to total). */
static inline void squib_progress_advance(struct squib_progress_run *r, uint64_t n)
{
	if (!r || !r->p || !r->p->fn)
		return;
	r->done = n > r->total - r->done ? r->total : r->done + n;
	r->p->fn(r->p->ctx, r->done, r->total);
}

/* squib_memfile_crc_range, advancing `run` (may be NULL) after every chunk. */
int squib_memfile_crc_range_run(int fd, uint64_t off, uint64_t len, uint64_t *crc,
				struct squib_progress_run *run, struct squib_error_detail *d);

/* ---- a caller's populated ranges (memfile_write.c) ------------------------ */

/*
 * A caller that knows which pages of its source hold data walks them for the
 * Full writer instead of pagemap (a live save's view, src/live.h: a
 * userfaultfd-filled mapping whose page tables say nothing). walk reports
 * region `region`'s ranges in ascending order through fn, as
 * squib_populated_walk does (absolute host addresses of the source region,
 * fn's non-zero return stops the walk and is returned); pages it never
 * reports are written as holes, unread.
 */
struct squib_memfile_populated {
	int (*walk)(void *ctx, uint32_t region, int (*fn)(void *fctx, uint64_t start, uint64_t end),
		    void *fctx);
	void *ctx;
	/*
	 * Optional (NULL: the walked ranges are read from the source). A live
	 * save's claim path: the writer claims each aligned block of claim_bytes
	 * (a multiple of the file page, file page == claim_page) before reading
	 * it, and releases it once its bytes are written (flushed). claim
	 * returns, for the block at byte offset off of the region, a pointer
	 * `direct` to the same bytes elsewhere (guest RAM) and a bitmap `staged`
	 * (claim_bytes / claim_page bits) of the pages to read from the source
	 * instead; 0 or a negative errno. Only one block is claimed at a time.
	 */
	int (*claim)(void *ctx, uint32_t region, uint64_t off, const uint8_t **direct,
		     uint64_t *staged);
	int (*release)(void *ctx);
	uint64_t claim_bytes, claim_page;
};

/* The largest claim block the writer accepts (staged bitmap words on its stack). */
#define SQUIB_MEMFILE_CLAIM_MAX_PAGES 512u

/* squib_memfile_write_full with the populated ranges from pop (NULL: pagemap). */
int squib_memfile_write_full_walk(struct squib_atomic_writer *w,
				  const struct squib_memfile_source *src,
				  const struct squib_memfile_write_options *opts,
				  const struct squib_memfile_populated *pop,
				  struct squib_memfile_manifest *out,
				  struct squib_memfile_write_stats *stats,
				  struct squib_error_detail *d);

/* ---- reader (memfile_read.c) -------------------------------------------- */

struct squib_memfile {
	int fd;
	char *path;
	uint64_t *region_off; /* file offset of each region's first byte */
	uint64_t *packed_at;  /* PACKED: file offset of each extent's first page (NULL if none) */
	struct squib_memfile_manifest m;
};

/* File offset of the first page of extent i (fixed: first_page * page_size). */
uint64_t squib_memfile_extent_offset(const struct squib_memfile *m, uint64_t i);

/* Read file pages [first, first + count) into buf: at their fixed offsets, or
 * through a packed file's index (a page it does not hold: SQUIB_E_MEMORY_IO,
 * ENODATA). I/O errors are SQUIB_E_MEMORY_IO naming the file and offset. */
int squib_memfile_read_pages(const struct squib_memfile *m, uint64_t first, uint64_t count,
			     void *buf, struct squib_error_detail *d);

/* Open path with open(2) flags (O_RDONLY, or O_RDWR for an in-place rebase)
 * and verify footer and manifest. */
int squib_memfile_open_flags(const char *path, int flags, struct squib_memfile **out,
			     struct squib_error_detail *d);

/* squib_memfile_verify_digests, advancing `run` (may be NULL; its total is the caller's). */
int squib_memfile_verify_digests_run(const struct squib_memfile *m, struct squib_progress_run *run,
				     struct squib_error_detail *d);

/* Index of the extent holding page, or -1. */
int64_t squib_memfile_find_extent(const struct squib_memory_layout *l, uint64_t page);

/* File page of the page-aligned guest address addr inside a region of l
 * (region_off: each region's file offset); else SQUIB_E_INVALID_ARGUMENT. */
int squib_memfile_guest_page(const struct squib_memory_layout *l, const uint64_t *region_off,
			     uint64_t addr, uint64_t *page, struct squib_error_detail *d);

#endif /* SQUIB_MEMFILE_INTERNAL_H */
