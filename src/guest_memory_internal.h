/* SPDX-License-Identifier: Apache-2.0 */
/* Guest memory internals: the struct, the backend table (not installed). */
#ifndef SQUIB_GUEST_MEMORY_INTERNAL_H
#define SQUIB_GUEST_MEMORY_INTERNAL_H

#include <squib/chain.h>
#include <squib/guest_memory.h>

/*
 * A memory backend. open maps every region with `map`, then calls
 * `populate` once; release calls `stop`, free calls `destroy` before the
 * regions are unmapped. A NULL op does nothing.
 */
struct squib_gm_backend {
	enum squib_memory_backend id;
	bool full_only;	    /* a Diff is refused (the file itself is mapped) */
	bool file_optional; /* may run without a memory file (its handler has it) */
	/* Map region i into g->regions[i].host; c is NULL without a memory file. */
	int (*map)(struct squib_guest_memory *g, uint32_t i, const struct squib_chain *c,
		   struct squib_error_detail *d);
	/* Fill or start serving the mapped regions; may take the chain (*c = NULL). */
	int (*populate)(struct squib_guest_memory *g, struct squib_chain **c,
			const struct squib_lazy_options *lazy, struct squib_error_detail *d);
	/* Stop serving, keep the mappings and what statistics need (release). */
	void (*stop)(struct squib_guest_memory *g);
	/* Free what serves the memory (free, before the unmap). */
	void (*destroy)(struct squib_guest_memory *g);
	/* Why the memory can no longer be served, or 0. */
	int (*error)(const struct squib_guest_memory *g, struct squib_error_detail *d);
	/* Install sorted pages[0..count) before the VM runs (pre-warm); NULL: the
	 * memory is complete already (COPY, FILE). */
	int (*install)(struct squib_guest_memory *g, const uint64_t *pages, size_t count,
		       struct squib_error_detail *d);
};

/* The backend b, or NULL for an unknown value. */
const struct squib_gm_backend *squib_gm_backend(enum squib_memory_backend b);

struct squib_guest_memory {
	const struct squib_gm_backend *ops;
	uint32_t region_count;
	struct squib_vm_region *regions; /* host = the mapping */
	uint64_t page_size;		 /* the memory file's */
	uint64_t page_count;		 /* pages in the RAM range */
	uint8_t memory_id[SQUIB_MEMORY_ID_SIZE];
	struct squib_guest_memory_stats stats;
	struct squib_pager *pager;	  /* LAZY */
	struct squib_uffd_remote *remote; /* UFFD */
};

/* The host address of source page `page`, or NULL past the memory (backends.c). */
volatile const uint8_t *squib_gm_page_addr(const struct squib_guest_memory *g, uint64_t page);

/*
 * The memory file at memory_path, bound to layout (NULL: any), fit for
 * backend, over chain[0..n): the chain with it as the newest layer.
 * (squib_guest_memory_open and squib_load_check.)
 */
int squib_gm_open_chain(const char *memory_path, const char *const *chain, size_t n,
			const struct squib_memory_layout *layout, enum squib_memory_backend backend,
			struct squib_chain **out, struct squib_error_detail *d);

#endif /* SQUIB_GUEST_MEMORY_INTERNAL_H */
