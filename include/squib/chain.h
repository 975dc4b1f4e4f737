/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/chain.h - the memory chain: a FULL base and the DIFFs taken after it
 * (oldest first), read as one memory. The one place the chain's rules live:
 *
 *   - the base (layer 0) must be FULL: SQUIB_E_PAIR_MISMATCH "chain base B
 *     (id I) is a diff of P, not a full memory file";
 *   - each later layer must be a DIFF whose parent_id is the id of the layer
 *     below, with the same page size and regions: SQUIB_E_PAIR_MISMATCH
 *     ("X is a full memory file, not a diff to apply on B (id I)", "diff X
 *     has parent id P, but B has id I", "diff X (parent P) has another
 *     geometry than B (id I): ...");
 *   - the newest layer holding a page supplies it; a page no layer holds is
 *     zero (the base is FULL: what it lacks is zero).
 *
 * Opening a chain checks each layer as it is added (so the first bad layer
 * is the one reported, in chain order), then builds the owner map once: the
 * sorted runs of pages with one owner (a layer index, or SQUIB_CHAIN_ZERO).
 * It costs O(layers x extents) time and at most three runs per extent, never
 * a byte per page, so a hostile manifest claiming a huge RAM buys nothing.
 * Loading (COPY), rebasing and the pager's file source walk these runs: each
 * page is read once, from its owner.
 *
 * A layer is an ops struct (manifest, name, read, release), so a layer need
 * not be a local file: a snapshot store serves layers read by range from an
 * object (docs/DESIGN.md, "The memory chain"). The chain validates every
 * layer's manifest itself (squib_memory_layout_validate), whatever produced
 * it. squib_chain_layer_file wraps an open memory file.
 *
 * Errors: as above; SQUIB_E_INVALID_ARGUMENT for NULL or out-of-range
 * arguments and more than SQUIB_CHAIN_MAX_LAYERS layers; SQUIB_E_ENCODING
 * for a layer whose manifest is malformed; SQUIB_E_NOMEM; a layer's read
 * errors (file layers: SQUIB_E_MEMORY_IO with the errno, naming the file
 * and offset).
 *
 * Thread-safety: an open chain is read-only: any number of threads may read
 * from it and walk it at once; a layer's read must allow that (pread does).
 * Open and free are single-threaded.
 */
#ifndef SQUIB_CHAIN_H
#define SQUIB_CHAIN_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/memfile.h>
#include <squib/state.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most layers in one chain (a base and 65533 diffs). */
#define SQUIB_CHAIN_MAX_LAYERS 65534u
/* The owner of a page no layer holds: it reads as zeros. */
#define SQUIB_CHAIN_ZERO UINT32_MAX

/* ---- layers ---------------------------------------------------------------- */

/*
 * One memory image of a chain. Pages are numbered over the RAM range as in
 * a memory file (page k: bytes [k * page_size, +page_size)).
 */
struct squib_chain_layer_ops {
	/* The layer's manifest (kind, ids, geometry, present extents); borrowed,
	 * valid until release. */
	const struct squib_memfile_manifest *(*manifest)(void *ctx);
	/* What messages call it (a path, a URL). */
	const char *(*name)(void *ctx);
	/* Read pages [first, first + count), all present in this layer, into buf:
	 * 0, a SQUIB_E_*, or -errno (SQUIB_E_IO with that errno: squib/error.h's
	 * backend rule). Called from any thread, concurrently. */
	int (*read)(void *ctx, uint64_t first, uint64_t count, void *buf,
		    struct squib_error_detail *d);
	/* Free ctx; NULL: nothing to free. Called once, by the chain. */
	void (*release)(void *ctx);
};

struct squib_chain_layer {
	const struct squib_chain_layer_ops *ops;
	void *ctx;
};

/* A layer over an open memory file. own: the chain closes it (its release);
 * else the file must outlive the chain. Pages are read with pread. */
SQUIB_API struct squib_chain_layer squib_chain_layer_file(struct squib_memfile *m, bool own);

/* ---- opening --------------------------------------------------------------- */

struct squib_chain;

/*
 * Open paths[0] (a FULL base) and paths[1..n) (DIFFs, oldest first) as
 * memory files (squib_memfile_open: every check) and chain them. A chain of
 * one is a FULL file alone.
 */
SQUIB_API int squib_chain_open(const char *const *paths, size_t n, struct squib_chain **out,
			       struct squib_error_detail *d);

/* Chain layers[0..n) (base first). The chain owns every layer from here on,
 * also on failure (their release is called). */
SQUIB_API int squib_chain_open_layers(const struct squib_chain_layer *layers, size_t n,
				      struct squib_chain **out, struct squib_error_detail *d);

/* Release every layer, free. NULL is a no-op. */
SQUIB_API void squib_chain_free(struct squib_chain *c);

/* ---- geometry and the owner map ------------------------------------------ */

SQUIB_API size_t squib_chain_layer_count(const struct squib_chain *c);
/* Layer i's manifest and name (i < layer count, else NULL). */
SQUIB_API const struct squib_memfile_manifest *
squib_chain_layer_manifest(const struct squib_chain *c, size_t i);
SQUIB_API const char *squib_chain_layer_name(const struct squib_chain *c, size_t i);
/* The newest layer's layout: the chain's id, page size, regions, ram_size. */
SQUIB_API const struct squib_memory_layout *squib_chain_layout(const struct squib_chain *c);
/* Pages in the RAM range (ram_size / page_size). */
SQUIB_API uint64_t squib_chain_page_count(const struct squib_chain *c);
/* Pages some layer holds (the rest read as zeros). */
SQUIB_API uint64_t squib_chain_present_pages(const struct squib_chain *c);

/* The layer supplying page (the newest holding it), or SQUIB_CHAIN_ZERO
 * (also for a page past the RAM range). O(log runs). */
SQUIB_API uint32_t squib_chain_owner(const struct squib_chain *c, uint64_t page);

/* A run of pages with one owner (a layer index or SQUIB_CHAIN_ZERO). */
struct squib_chain_run {
	uint64_t first_page;
	uint64_t page_count;
	uint32_t owner;
};

/*
 * Call fn for every maximal run of one owner over pages [first, first +
 * count), in page order, zero runs included, clipped to the range. A
 * non-zero return of fn ends the walk and is returned.
 * SQUIB_E_INVALID_ARGUMENT (returned, nothing called) for a range past the
 * RAM range.
 */
typedef int (*squib_chain_run_fn)(void *ctx, const struct squib_chain_run *run);
SQUIB_API int squib_chain_for_each_run(const struct squib_chain *c, uint64_t first, uint64_t count,
				       squib_chain_run_fn fn, void *ctx);

/* ---- reading -------------------------------------------------------------- */

/* Pages [first, first + count) into buf (count * page_size bytes): each run
 * from its owner with one read, zero runs as zeros. */
SQUIB_API int squib_chain_read(const struct squib_chain *c, uint64_t first, uint64_t count,
			       void *buf, struct squib_error_detail *d);

/* The page_size bytes of the page at guest_addr (page-aligned, inside a
 * region; else SQUIB_E_INVALID_ARGUMENT). */
SQUIB_API int squib_chain_read_page(const struct squib_chain *c, uint64_t guest_addr, void *buf,
				    struct squib_error_detail *d);

/* Pages [first, first + count) from layer `layer`, which must hold them all
 * in one of its extents (as every run it owns does; else
 * SQUIB_E_INVALID_ARGUMENT). */
SQUIB_API int squib_chain_read_layer(const struct squib_chain *c, uint32_t layer, uint64_t first,
				     uint64_t count, void *buf, struct squib_error_detail *d);

/* The chain under a squib_memfile_chain (squib/memfile.h: the same layer over
 * local files), borrowed: valid until squib_memfile_chain_close. */
SQUIB_API const struct squib_chain *squib_memfile_chain_get(const struct squib_memfile_chain *c);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_CHAIN_H */
