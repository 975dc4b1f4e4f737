/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/guest_memory.h - the guest RAM of a restored VM, by backend.
 *
 * One module owns guest memory: opening it over a memory file (and its
 * chain, squib/chain.h), mapping and filling it through a table of backends
 * (map / populate / stop), pre-warming the boot-critical pages, prefetching
 * a working set, recording one. squib_load (squib/load.h) uses it; a tool or
 * a VMM that restores memory without squib_load uses it directly.
 *
 * Memory backends:
 *   COPY   anonymous memory, filled eagerly with the present pages, each
 *          read once from the newest layer of the chain holding it
 *          (squib/chain.h); absent pages stay zero
 *   FILE   the full memory file's RAM range mapped MAP_PRIVATE (copy on write);
 *          a Diff is refused: rebase the chain first (squib_memfile_rebase).
 *          Never rebase in place or truncate a file a VM maps.
 *   LAZY   anonymous memory filled on demand by a userfaultfd pager thread
 *          (squib/pager.h) reading the file (a Diff: its chain); the pager
 *          is owned by the squib_guest_memory (squib_guest_memory_pager: statistics)
 *          and stopped before the memory is unmapped. Never falls back to
 *          another backend: no userfaultfd is SQUIB_E_IO with the errno.
 *   UFFD   anonymous memory registered with a userfaultfd that is handed
 *          to an external page-fault handler over a Unix socket, in
 *          Firecracker's Uffd handshake (squib/uffd_remote.h); the VMM never
 *          reads page data. The memory path may be NULL (the handler has the
 *          file): the regions then come from the state's memory section and
 *          the pair is not checked here (`squib-snapshot serve --state`
 *          checks it). When the handler dies, lazy.remote.on_lost is called
 *          from a watcher thread: stop the vCPUs there and never resume them.
 *
 * Lazy backends, before the VM is handed the memory (squib_load step 6):
 *   pre-warm  each vCPU's instruction and stack pages, and the page-table
 *             pages that translate them (squib/prewarm.h), are installed
 *             (LAZY: squib_pager_prefetch; UFFD: touched, so the handler
 *             serves them) - unless lazy.no_prewarm
 *   prefetch  LAZY: a recorded working set (squib/workset.h) is installed
 *             in bulk; it must have been recorded on the same memory file
 *             (or be unbound) and have its geometry
 *
 * Thread-safety: a squib_guest_memory is owned by one thread (open, free,
 * release, prewarm, prefetch); the memory it maps may be used from any
 * thread; squib_guest_memory_error may be called from any thread.
 */
#ifndef SQUIB_GUEST_MEMORY_H
#define SQUIB_GUEST_MEMORY_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/pager.h>
#include <squib/prewarm.h>
#include <squib/state.h>
#include <squib/uffd_remote.h>
#include <squib/vm.h>
#include <squib/workset.h>

#ifdef __cplusplus
extern "C" {
#endif

enum squib_memory_backend {
	SQUIB_BACKEND_COPY = 0,
	SQUIB_BACKEND_FILE = 1,
	SQUIB_BACKEND_LAZY = 2, /* userfaultfd pager (squib/pager.h) */
	SQUIB_BACKEND_UFFD = 3, /* external page-fault handler (squib/uffd_remote.h) */
};

/* Options of the lazy backends (LAZY, UFFD); zero-initialised = defaults. */
struct squib_lazy_options {
	struct squib_pager_options pager;	 /* LAZY: batch, record, background fill */
	const struct squib_workset *prefetch;	 /* LAZY: installed before the VM runs; NULL */
	bool no_prewarm;			 /* skip the boot-critical pages */
	const char *uffd_socket;		 /* UFFD: the handler's socket (backend_path) */
	struct squib_uffd_remote_options remote; /* UFFD: connect timeout, on_lost */
};

/*
 * Guest RAM set up for a restored VM: one host mapping per region of the
 * memory file, in its order (opaque: the accessors below). Owned by the
 * caller of squib_load, who frees it once the VM no longer uses the memory.
 */
struct squib_guest_memory;

/* What was done to fill the memory (squib_guest_memory_stats). */
struct squib_guest_memory_stats {
	uint64_t pages_read;	   /* COPY: pages copied in (each once); FILE, LAZY, UFFD: 0 */
	uint64_t pages_prewarmed;  /* boot-critical pages installed (or touched) */
	uint64_t pages_prefetched; /* working-set pages installed by squib_guest_memory_prefetch */
	struct squib_prewarm_report prewarm;
};

SQUIB_API enum squib_memory_backend squib_guest_memory_backend(const struct squib_guest_memory *g);
/* The regions (host = the mapping), *n (may be NULL) their count; the array
 * is the memory's, valid until it is freed (what squib_vm_set_memory takes). */
SQUIB_API const struct squib_vm_region *
squib_guest_memory_regions(const struct squib_guest_memory *g, uint32_t *n);
SQUIB_API uint32_t squib_guest_memory_region_count(const struct squib_guest_memory *g);
/* Region i, or NULL past the last. */
SQUIB_API const struct squib_vm_region *
squib_guest_memory_region(const struct squib_guest_memory *g, uint32_t i);
/* The memory file's page size, and the pages of the RAM range. */
SQUIB_API uint64_t squib_guest_memory_page_size(const struct squib_guest_memory *g);
SQUIB_API uint64_t squib_guest_memory_page_count(const struct squib_guest_memory *g);
/* The newest layer's id (all zero: UFFD without a memory file). */
SQUIB_API const uint8_t *squib_guest_memory_id(const struct squib_guest_memory *g);
SQUIB_API void squib_guest_memory_stats(const struct squib_guest_memory *g,
					struct squib_guest_memory_stats *out);
/* LAZY: the pager serving the regions' faults (statistics, errors); else NULL. */
SQUIB_API struct squib_pager *squib_guest_memory_pager(const struct squib_guest_memory *g);
/* UFFD: the handler's connection until squib_guest_memory_release; else NULL. */
SQUIB_API struct squib_uffd_remote *squib_guest_memory_remote(const struct squib_guest_memory *g);

/* Stop and free the pager (LAZY) or the handler connection (UFFD), munmap
 * every region, free. NULL is a no-op. */
SQUIB_API void squib_guest_memory_free(struct squib_guest_memory *m);

/*
 * Stop serving the memory, keeping the mappings: stop the pager (LAZY) or
 * drop the handler's connection (UFFD; squib_guest_memory_remote becomes
 * NULL, so read its error first). Either unregisters the memory, which wakes every thread
 * blocked on a missing page; unserved pages then read as zeros. For a VMM
 * whose memory failed: revoke the guest's access first (the KVM runner's
 * squib_kvm_vm_fail), then release, so a blocked vCPU leaves without
 * reading a page the snapshot never had. Other backends: no-op.
 */
SQUIB_API void squib_guest_memory_release(struct squib_guest_memory *g);

/*
 * Set up guest memory from a verified memory file without a VM (tools,
 * tests): chain (may be NULL, n 0) lists the older layers of a Diff, the
 * full base first, then diffs oldest first; memory_path is the newest layer.
 * layout (may be NULL) is the state file's description, checked against the
 * memory file first.
 */
SQUIB_API int squib_guest_memory_open(const char *memory_path, const char *const *chain, size_t n,
				      const struct squib_memory_layout *layout,
				      enum squib_memory_backend backend,
				      struct squib_guest_memory **out,
				      struct squib_error_detail *d);

/* The same with the lazy backends' options (lazy may be NULL). For UFFD,
 * memory_path may be NULL if layout is given. */
SQUIB_API int squib_guest_memory_open_lazy(const char *memory_path, const char *const *chain,
					   size_t n, const struct squib_memory_layout *layout,
					   enum squib_memory_backend backend,
					   const struct squib_lazy_options *lazy,
					   struct squib_guest_memory **out,
					   struct squib_error_detail *d);

/*
 * Install (LAZY) or touch (UFFD) the boot-critical pages of the state's
 * vCPUs; for COPY and FILE a no-op. Page tables are read through the guest
 * memory itself, so walking them faults them in - they are boot-critical
 * too. Before the VM runs. Fills the stats' pages_prewarmed and prewarm. If the
 * pager fails or the handler dies meanwhile, the memory is released
 * (squib_guest_memory_release) and that error returned: never hangs.
 */
SQUIB_API int squib_guest_memory_prewarm(struct squib_guest_memory *g,
					 const struct squib_microvm_state *s,
					 struct squib_error_detail *d);

/*
 * LAZY: install a working set's pages in bulk. The set must have this
 * memory's page size and page count, and its memory_id must be zero or
 * this memory's id (squib_workset_check_fits: SQUIB_E_PAIR_MISMATCH
 * otherwise; a set is recorded for one snapshot). Other backends:
 * SQUIB_E_INVALID_ARGUMENT.
 */
SQUIB_API int squib_guest_memory_prefetch(struct squib_guest_memory *g,
					  const struct squib_workset *ws,
					  struct squib_error_detail *d);

/* 0, or why the memory can no longer be served: the pager's first error
 * (LAZY) or the handler's loss (UFFD); other backends: 0. Any thread. */
SQUIB_API int squib_guest_memory_error(const struct squib_guest_memory *g,
				       struct squib_error_detail *d);

/* LAZY with lazy.pager.record: the pages faulted in so far, bound to this
 * memory (memory_id set), ready for squib_workset_write. */
SQUIB_API int squib_guest_memory_recorded(const struct squib_guest_memory *g,
					  struct squib_workset *out, struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_GUEST_MEMORY_H */
