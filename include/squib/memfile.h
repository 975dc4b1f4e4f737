/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/memfile.h - the memory file (<id>.mem): guest RAM, its manifest, its footer.
 *
 *   offset 0                 RAM range: the regions back to back, ram_size bytes;
 *                            byte k of region i is guest byte guest_addr[i] + k.
 *                            Pages not written are holes (they read as zeros).
 *                            (A PACKED diff stores only its present pages here,
 *                            back to back in extent order: present_pages pages.)
 *   offset ram_size          manifest (PACKED: present_pages * page_size): regions, present-page
 * extents, optional per-extent CRC-64 digests; zero-padded to 4 KiB offset file_size - 4096 footer:
 * magic, version, ids, kind, geometry, where the manifest is and its CRC, then the footer's CRC
 *
 * docs/FORMAT.md, part "Memory file", gives every byte. The RAM range is raw at
 * offset 0, so a full file can be mmap-ed as guest memory directly; the footer
 * is found from the file size. Which pages are present is recorded in the
 * manifest, so nothing here depends on SEEK_DATA/SEEK_HOLE.
 *
 * A FULL file holds every page of RAM that is not zero; absent pages read as
 * zeros. A DIFF file holds exactly the pages dirtied since its parent (zeros
 * included: a page the guest cleared is data in a diff); its absent pages are
 * unknown, so it is read layered over its parent chain (squib_memfile_chain)
 * or merged into its base (squib_memfile_rebase).
 *
 * Errors: a rejected configuration (geometry, bitmaps) is SQUIB_E_INVALID_PATH
 * like upstream; memory-file I/O is SQUIB_E_MEMORY_IO with the errno; ids that
 * do not chain are SQUIB_E_PAIR_MISMATCH. Reading a file checks, in the state
 * file's order: size (SQUIB_E_TOO_SHORT: shorter than the footer), footer CRC
 * (SQUIB_E_CRC_MISMATCH), magic (SQUIB_E_MAGIC_MISMATCH), version
 * (SQUIB_E_VERSION_MISMATCH: same major, minor not newer), footer structure
 * (SQUIB_E_ENCODING), manifest CRC (SQUIB_E_CRC_MISMATCH), manifest structure
 * (SQUIB_E_ENCODING). Every failure fills d->msg with the detail, also for
 * codes whose rendered message does not show it.
 *
 * Thread-safety: writers and rebase are single-threaded calls on objects the
 * caller owns. An open squib_memfile or squib_memfile_chain is read-only after
 * open: any number of threads may read pages from it at once (pread). The
 * guest must not run while a writer reads its memory.
 */
#ifndef SQUIB_MEMFILE_H
#define SQUIB_MEMFILE_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/atomic.h>
#include <squib/dirty.h>
#include <squib/error.h>
#include <squib/progress.h>
#include <squib/state.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "SQUIBMEM" as the 8 bytes on disk; not the state file's magic. */
#define SQUIB_MEMFILE_MAGIC 0x4D454D4249555153ULL
/* "SQUIBRBS": the footer of a file whose in-place rebase did not finish. */
#define SQUIB_MEMFILE_MAGIC_REBASING 0x5342524249555153ULL

#define SQUIB_MEMFILE_VERSION_MAJOR 1
/* The newest minor this library reads. It writes 1.0.0 unless a file uses a
 * 1.1 feature (FLAG_PACKED), so that 1.0 readers keep reading what they can. */
#define SQUIB_MEMFILE_VERSION_MINOR 1
#define SQUIB_MEMFILE_VERSION_PATCH 0

#define SQUIB_MEMFILE_FOOTER_SIZE 4096u
/* Footer flag: the manifest carries one CRC-64/Jones digest per extent. */
#define SQUIB_MEMFILE_FLAG_DIGESTS 0x1u
/*
 * Footer flag (version 1.1, diffs only): the file is PACKED. Its present pages
 * are stored back to back from offset 0 in extent order, not at their fixed
 * offsets, and the manifest follows them at present_pages * page_size. Written
 * in one sequential run; it cannot be mmap-ed as guest memory (FILE restore
 * maps only full files anyway): read it through a chain or rebase it.
 */
#define SQUIB_MEMFILE_FLAG_PACKED 0x2u

/* Largest single write of page data (runs of present pages are coalesced up to it). */
#define SQUIB_MEMFILE_MAX_WRITE (8u << 20)

/* ---- manifest ------------------------------------------------------------ */

/*
 * What a memory file holds. `layout` is exactly what the state file's MEMORY
 * section records (squib_state_set_memory(s, &m.layout, d) stores it).
 */
struct squib_memfile_manifest {
	struct squib_memory_layout layout;
	uint32_t flags;		  /* SQUIB_MEMFILE_FLAG_* */
	uint64_t *digests;	  /* layout.extent_count entries with FLAG_DIGESTS, else NULL */
	uint64_t manifest_crc;	  /* CRC-64/Jones of the manifest bytes */
	struct squib_version version; /* of the file read; ours for one written */
};

/* Free everything the manifest owns and zero it. Safe on a zeroed manifest. */
SQUIB_API void squib_memfile_manifest_release(struct squib_memfile_manifest *m);

/* id as 32 lowercase hex digits (the form error messages use). */
SQUIB_API void squib_memfile_id_hex(const uint8_t id[SQUIB_MEMORY_ID_SIZE],
				    char out[2 * SQUIB_MEMORY_ID_SIZE + 1]);

/*
 * Parse the footer and manifest of a whole memory file held in memory (the
 * buffer entry point of the reader, for tools and fuzzing). Checks everything
 * squib_memfile_open checks except the page data. *out owns its arrays on
 * success and is zeroed on failure.
 */
SQUIB_API int squib_memfile_parse(const uint8_t *file, size_t len,
				  struct squib_memfile_manifest *out, struct squib_error_detail *d);

/* ---- writers ------------------------------------------------------------- */

/* One guest RAM region as this process sees it. */
struct squib_memfile_source_region {
	uint64_t guest_addr;
	uint64_t size;
	const void *host; /* the region's size bytes in this process */
};

/* The guest RAM to write: regions in ascending guest order, and the file's page size. */
struct squib_memfile_source {
	const struct squib_memfile_source_region *regions;
	uint32_t region_count;
	uint64_t page_size;
};

/*
 * How the full writer finds pages this process never populated, so that it
 * can leave them as holes without reading (and so faulting in) them. Only
 * private anonymous mappings not registered with userfaultfd qualify: there
 * an unpopulated page is a zero page by definition. Other mappings (shared,
 * file-backed, uffd-missing) are read in full, whatever is chosen here.
 */
enum squib_memfile_detect {
	SQUIB_DETECT_AUTO = 0,	   /* PAGEMAP_SCAN, else pagemap reads, else none */
	SQUIB_DETECT_PAGEMAP_SCAN, /* the PAGEMAP_SCAN ioctl (Linux 6.7+) only */
	SQUIB_DETECT_PAGEMAP_READ, /* reading /proc/self/pagemap entries only */
	SQUIB_DETECT_NONE,	   /* read every page */
};

struct squib_memfile_write_options {
	bool digests; /* record a CRC-64/Jones digest per extent */
	enum squib_memfile_detect detect;
	/* The new file's id (non-zero, fresh per file); NULL: a random one. A
	 * save draws it first, to name its state temp after it (squib/atomic.h). */
	const uint8_t *id;
	/* Diff writer only: write a PACKED file (SQUIB_MEMFILE_FLAG_PACKED,
	 * version 1.1.0): the dirty pages back to back in one sequential run.
	 * The full writer refuses it (SQUIB_E_INVALID_ARGUMENT). */
	bool packed;
};

/* What a writer did (for tests, benchmarks and logs). */
struct squib_memfile_write_stats {
	enum squib_memfile_detect detect; /* the method actually used (full writer) */
	uint64_t pages_written;
	uint64_t pages_unpopulated; /* skipped without being read */
	uint64_t pages_zero;	    /* read, found all zero, skipped */
	uint64_t write_calls;	    /* pwrite calls for page data */
};

/*
 * Full snapshot of process memory into the temp of an OPEN atomic writer
 * (squib_atomic_open on the destination). Writes every page holding a
 * non-zero byte; never-populated and all-zero pages stay holes. Then appends
 * the manifest and footer (kind FULL, a fresh random id, no parent). The
 * writer is left OPEN: the caller makes the file durable and visible with
 * squib_atomic_prepare() + squib_atomic_publish() (or commit), in the order
 * its save needs, or drops it with squib_atomic_abort(). On failure the
 * writer is also left OPEN for the caller to abort.
 *
 * *out (required) receives the manifest; stats and opts may be NULL.
 */
SQUIB_API int squib_memfile_write_full(struct squib_atomic_writer *w,
				       const struct squib_memfile_source *src,
				       const struct squib_memfile_write_options *opts,
				       struct squib_memfile_manifest *out,
				       struct squib_memfile_write_stats *stats,
				       struct squib_error_detail *d);

/*
 * Diff snapshot: writes exactly the pages the bitmaps mark dirty, whatever
 * their content, and records parent_id (the id of the file this diff applies
 * on, from its manifest). bitmaps[i] covers region i: the same start and size
 * ("diff bitmap covers X bytes, memory file expects Y"), at a page size that
 * is a multiple of the file's ("diff bitmap page (B) must be a multiple of
 * memory-file page (T)"); a dirty bitmap page marks every file page in it.
 * The bitmaps are only read (harvest them first, squib/dirty.h). Otherwise as
 * squib_memfile_write_full.
 */
SQUIB_API int
squib_memfile_write_diff(struct squib_atomic_writer *w, const struct squib_memfile_source *src,
			 const uint8_t parent_id[SQUIB_MEMORY_ID_SIZE],
			 const struct squib_dirty_bitmap *const *bitmaps, uint32_t bitmap_count,
			 const struct squib_memfile_write_options *opts,
			 struct squib_memfile_manifest *out,
			 struct squib_memfile_write_stats *stats, struct squib_error_detail *d);

/* Convenience: open an atomic writer on path, write, commit (publish) it. */
SQUIB_API int squib_memfile_save_full(const char *path, const struct squib_memfile_source *src,
				      const struct squib_memfile_write_options *opts,
				      struct squib_memfile_manifest *out,
				      struct squib_error_detail *d);
SQUIB_API int squib_memfile_save_diff(const char *path, const struct squib_memfile_source *src,
				      const uint8_t parent_id[SQUIB_MEMORY_ID_SIZE],
				      const struct squib_dirty_bitmap *const *bitmaps,
				      uint32_t bitmap_count,
				      const struct squib_memfile_write_options *opts,
				      struct squib_memfile_manifest *out,
				      struct squib_error_detail *d);

/* ---- reader -------------------------------------------------------------- */

struct squib_memfile;

/*
 * Open and verify: footer CRC, magic, version, every footer field against the
 * real file size, manifest CRC, regions, extents (sorted, disjoint, coalesced,
 * in bounds, adding up to present_pages). Page data is not read; digests are
 * checked by squib_memfile_verify_digests.
 */
SQUIB_API int squib_memfile_open(const char *path, struct squib_memfile **out,
				 struct squib_error_detail *d);
SQUIB_API void squib_memfile_close(struct squib_memfile *m);

SQUIB_API const struct squib_memfile_manifest *
squib_memfile_manifest(const struct squib_memfile *m);

/* Is file page `page` (0 = the first page of the RAM range) present? */
SQUIB_API bool squib_memfile_page_present(const struct squib_memfile *m, uint64_t page);

/*
 * Read the page_size bytes of the page at guest_addr (page-aligned, inside a
 * region; else SQUIB_E_INVALID_ARGUMENT). A page absent from a FULL file
 * reads as zeros; absent from a DIFF it is SQUIB_E_MEMORY_IO with ENODATA
 * (its content is in an older layer: read through a chain).
 */
SQUIB_API int squib_memfile_read_page(const struct squib_memfile *m, uint64_t guest_addr, void *buf,
				      struct squib_error_detail *d);

/* Recompute every extent's digest: SQUIB_E_CRC_MISMATCH naming the first bad
 * extent; SQUIB_E_INVALID_ARGUMENT when the file has no digests. */
SQUIB_API int squib_memfile_verify_digests(const struct squib_memfile *m,
					   struct squib_error_detail *d);

/* The same, reporting progress (may be NULL) in bytes read: the total is the
 * bytes of every extent, present_pages * page_size. */
SQUIB_API int squib_memfile_verify_digests_ex(const struct squib_memfile *m,
					      const struct squib_progress *progress,
					      struct squib_error_detail *d);

/* Open, verify and close in one call: what `squib_memfile_open` checks, plus
 * the digests when check_digests is set and the file has them. *out (may be
 * NULL) receives a copy of the manifest. */
SQUIB_API int squib_memfile_verify(const char *path, bool check_digests,
				   struct squib_memfile_manifest *out,
				   struct squib_error_detail *d);

/* The state file's MEMORY section against this file: SQUIB_E_PAIR_MISMATCH
 * (both ids in hex) unless every field and extent agrees. */
SQUIB_API int squib_memfile_check_layout(const struct squib_memfile *m,
					 const struct squib_memory_layout *l,
					 struct squib_error_detail *d);

/* ---- layered reads ------------------------------------------------------- */

struct squib_memfile_chain;

/*
 * Open paths[0] (a FULL base) and paths[1..n) (DIFFs, oldest first) as one
 * memory: each diff's parent_id must be the id of the layer below it
 * (SQUIB_E_PAIR_MISMATCH otherwise, both ids in hex) and every layer must
 * have the same regions and page size (SQUIB_E_PAIR_MISMATCH).
 */
SQUIB_API int squib_memfile_chain_open(const char *const *paths, size_t n,
				       struct squib_memfile_chain **out,
				       struct squib_error_detail *d);
SQUIB_API void squib_memfile_chain_close(struct squib_memfile_chain *c);

/* The newest layer holding the page supplies it; a page no layer holds is zero. */
SQUIB_API int squib_memfile_chain_read_page(const struct squib_memfile_chain *c,
					    uint64_t guest_addr, void *buf,
					    struct squib_error_detail *d);

/* ---- rebase -------------------------------------------------------------- */

struct squib_memfile_rebase_options {
	bool digests;		/* record digests in the result */
	bool no_copy_file_range; /* copy with pread/pwrite only */
	/*
	 * A state file to publish with the result as a pair (NULL: none). It
	 * must describe the newest diff exactly (its MEMORY section is that
	 * file's layout); it is rewritten to describe the result (kind full, no
	 * parent, the merged manifest) and published with the save's pair
	 * protocol (squib/save.h): memory first, then state; a crash in
	 * between is rolled forward by squib_pair_recover(state_path, result).
	 * It must not be one of the memory files.
	 */
	const char *state_path;
	/* Fault injection (NULL in production): the atomic writers' hooks (the
	 * result's temp, the state's temp, the undo log); in place also
	 * before(SQUIB_IO_WRITE or SQUIB_IO_FSYNC, base) ahead of each footer
	 * write, copy, truncate and sync of the base, and
	 * before(SQUIB_IO_UNLINK, BASE.undo) at the commit. */
	const struct squib_io_hooks *hooks;
};

/*
 * Apply diffs[0..n) (oldest first) onto the FULL file at base: the result is
 * a FULL file whose manifest is the union of all present pages and whose id
 * is the last diff's id (so that diff's state file still pairs with it), with
 * no parent. Every file is verified and the chain checked (each diff's parent
 * is the id the base has at that point; same regions and page size, else
 * SQUIB_E_PAIR_MISMATCH) before anything is written. Only present extents are
 * copied (copy_file_range, falling back to pread/pwrite).
 *
 * The file to be written is locked (squib_dest_lock: SQUIB_E_BUSY while
 * another writer holds it, SQUIB_E_INVALID_PATH if it is not a regular
 * file) before the work: out_path before any input is read, base in place
 * once it opened.
 *
 * out_path non-NULL: the result is built in out_path's temp and published
 * atomically; the inputs are not modified. out_path must not be one of the
 * inputs (the same file: compared by device and inode, through symlinks and
 * hard links): SQUIB_E_INVALID_PATH.
 *
 * out_path NULL: base is rebased in place, crash-safe by an undo log. Any
 * interrupted in-place rebase of base is rolled back first
 * (squib_memfile_rebase_recover). Then the bytes about to be overwritten
 * (the old bytes of every page a diff holds, holes recorded as holes, and
 * the old manifest and footer) are written to BASE.undo and published
 * atomically; the footer is replaced by a "rebase in progress" footer and
 * synced; the pages are copied and synced; the new manifest and footer are
 * written over the old tail, the file is cut to its new size and synced;
 * removing BASE.undo (and syncing its directory) commits. A failure rolls
 * the base back before returning; after a crash, the next
 * squib_memfile_rebase_recover (every squib_load and squib_pair_recover of
 * the file, and every in-place rebase of it, run one) does. So the base is
 * either the old file, byte for byte, or the rebased one. The log costs the
 * bytes of the base's pages that the diffs overwrite: with too little space
 * the rebase fails before the base is touched. Never rebase in place a file
 * a running VM maps.
 *
 * result (may be NULL) receives the merged manifest.
 *
 * Rebase takes file layers only (paths), not any squib/chain.h layer: it
 * copies between files with copy_file_range, rewrites the base file in place
 * behind an undo log, and reads digests from the files' manifests. A chain
 * holding another kind of layer (a store image) is materialised first
 * (squib_store_pull writes a memory file) or loaded with COPY or LAZY, which
 * read any layer.
 */
SQUIB_API int squib_memfile_rebase(const char *base, const char *const *diffs, size_t n,
				   const char *out_path,
				   const struct squib_memfile_rebase_options *opts,
				   struct squib_memfile_manifest *result,
				   struct squib_error_detail *d);

/* The undo log of an in-place rebase of base: base + ".undo", heap string (NULL: no memory). */
#define SQUIB_MEMFILE_UNDO_SUFFIX ".undo"
SQUIB_API char *squib_memfile_undo_path(const char *base);

/*
 * Roll back an in-place rebase of base that did not commit: when BASE.undo
 * exists and verifies (size, CRC), every byte it recorded is written back,
 * the file cut to its old size and synced, and the log removed; a stale
 * temp of BASE.undo (a log never published) is removed. *rolled_back (may be
 * NULL) says whether a log was applied. A log that does not verify is
 * SQUIB_E_ENCODING, one whose base now has another id (replaced since)
 * SQUIB_E_PAIR_MISMATCH; neither touches anything; a log that is not a
 * regular file of this user with one link is SQUIB_E_MEMORY_IO. It runs
 * under base's lock (squib/atomic.h): SQUIB_E_BUSY while a rebase or save of
 * base runs. With no log nor temp of one it returns at once, writing
 * nothing. Idempotent: a crash during the roll-back is rolled back again.
 * Hooks as for the rebase.
 */
SQUIB_API int squib_memfile_rebase_recover(const char *base, const struct squib_io_hooks *hooks,
					   bool *rolled_back, struct squib_error_detail *d);

/*
 * squib_memfile_rebase reporting progress (may be NULL) in bytes: the total
 * is what the diffs' digest checks read (diffs that carry digests), plus the
 * bytes copied (the base's extents too when out_path is given), plus what
 * the result's digests read when opts->digests is set. It is known once every
 * input is open and checked, before the first byte is read or copied.
 */
SQUIB_API int squib_memfile_rebase_ex(const char *base, const char *const *diffs, size_t n,
				      const char *out_path,
				      const struct squib_memfile_rebase_options *opts,
				      const struct squib_progress *progress,
				      struct squib_memfile_manifest *result,
				      struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_MEMFILE_H */
