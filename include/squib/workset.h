/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/workset.h - the working-set file: the pages a restore faulted in,
 * in first-fault order, so the next restore can install them in bulk
 * (REAP-style record and prefetch; squib_pager_recorded records one,
 * squib_pager_prefetch installs one).
 *
 * The set is a list of page runs over the RAM range of one memory file
 * (pages numbered as in squib/pager.h). The byte format is in docs/FORMAT.md
 * ("Working-set file"): little-endian, versioned, CRC-64/Jones, at most
 * SQUIB_WS_SIZE_LIMIT bytes. Decoding is strict and canonical: a decoded set
 * encodes back to the same bytes.
 *
 * Thread-safety: every function is reentrant; a struct squib_workset belongs
 * to its caller (no internal locking).
 */
#ifndef SQUIB_WORKSET_H
#define SQUIB_WORKSET_H

#include <squib/api.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/state.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SQUIB_WS_MAGIC_BYTES   "SQUIBWS\0" /* 8 bytes, NUL included */
#define SQUIB_WS_VERSION_MAJOR 1
#define SQUIB_WS_VERSION_MINOR 0
#define SQUIB_WS_HEADER_SIZE   56 /* magic .. run_count */
#define SQUIB_WS_RUN_SIZE      16
#define SQUIB_WS_TRAILER_SIZE  8
#define SQUIB_WS_SIZE_LIMIT    (64ull << 20)
/* Most runs a file within the size limit can hold. */
#define SQUIB_WS_MAX_RUNS                                                                          \
	((SQUIB_WS_SIZE_LIMIT - SQUIB_WS_HEADER_SIZE - SQUIB_WS_TRAILER_SIZE) / SQUIB_WS_RUN_SIZE)

/* Pages [first_page, first_page + page_count). */
struct squib_ws_run {
	uint64_t first_page;
	uint64_t page_count;
};

struct squib_workset {
	uint64_t page_size;  /* bytes per page (the memory file's) */
	uint64_t page_count; /* pages in the RAM range it is for */
	uint8_t
	    memory_id[SQUIB_MEMORY_ID_SIZE]; /* memory file it was recorded on (zero: unbound) */
	uint64_t run_count;
	struct squib_ws_run *runs; /* first-fault order; owned (free with squib_workset_free) */
};

/*
 * Encode ws into a fresh buffer (*out, free() it; *len bytes). Refuses
 * (SQUIB_E_INVALID_ARGUMENT) a set decode would refuse: the same structure
 * checks, so every encoded set decodes. SQUIB_E_SIZE_LIMIT_EXCEEDED past
 * SQUIB_WS_MAX_RUNS runs.
 */
SQUIB_API int squib_workset_encode(const struct squib_workset *ws, uint8_t **out, size_t *len,
				   struct squib_error_detail *d);

/*
 * Decode buf[0..len) into *out (owned by the caller from here; zeroed on
 * failure). Checks, in this order: size limit (SQUIB_E_SIZE_LIMIT_EXCEEDED),
 * shorter than an empty set (SQUIB_E_TOO_SHORT), CRC (SQUIB_E_CRC_MISMATCH),
 * magic (SQUIB_E_MAGIC_MISMATCH), version (SQUIB_E_VERSION_MISMATCH: major
 * must be ours, minor not newer), then structure (SQUIB_E_ENCODING: flags,
 * page size, run_count against the length, each run).
 */
SQUIB_API int squib_workset_decode(const uint8_t *buf, size_t len, struct squib_workset *out,
				   struct squib_error_detail *d);

/* Encode and publish atomically (squib_atomic_write_file: temp, fsync, rename). */
SQUIB_API int squib_workset_write(const char *path, const struct squib_workset *ws,
				  struct squib_error_detail *d);

/* Read at most SQUIB_WS_SIZE_LIMIT + 1 bytes of path and decode them. */
SQUIB_API int squib_workset_read(const char *path, struct squib_workset *out,
				 struct squib_error_detail *d);

/*
 * Does ws belong to a memory file with this page size, page count and id?
 * 0, or SQUIB_E_PAIR_MISMATCH naming the first difference (page size, page
 * count, then the id; an all-zero ws->memory_id matches any id). A restorer
 * calls this before prefetching a set read from a file.
 */
SQUIB_API int squib_workset_check_fits(const struct squib_workset *ws, uint64_t page_size,
				       uint64_t page_count,
				       const uint8_t memory_id[SQUIB_MEMORY_ID_SIZE],
				       struct squib_error_detail *d);

/* Pages the runs cover, counting overlaps twice. */
SQUIB_API uint64_t squib_workset_pages(const struct squib_workset *ws);

/* Free the runs and zero *ws. NULL is a no-op. */
SQUIB_API void squib_workset_free(struct squib_workset *ws);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_WORKSET_H */
