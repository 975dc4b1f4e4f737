/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/load.h - restore a VM from a state/memory file pair; pair recovery.
 *
 * squib_load() runs, in order:
 *
 *   1. pair recovery (squib_pair_recover, unless disabled): a save that
 *      crashed between its two renames left the new memory file next to the
 *      old state file, and the new state in STATE.<B>.tmp; roll it forward
 *   2. read and verify the state file, in the state file's check order (size
 *      limit, too short, CRC, magic, version, structure); either architecture
 *      decodes here
 *   3. architecture: a state of another architecture than the VM's is
 *      SQUIB_E_INCOMPATIBLE (I-SNAP-3), never a misread
 *   4. verify_compatible (SQUIB_E_INCOMPATIBLE)
 *   5. the pair: the state's MEMORY section must describe the memory file
 *      exactly (id, kind, parent, geometry, pages, size: SQUIB_E_PAIR_MISMATCH
 *      with both ids in hex); for a Diff, the chain below it must link up
 *   6. guest memory, by the chosen backend (struct squib_guest_memory)
 *   7. the VM: set_memory, then restore (interrupt controller before vCPUs,
 *      then devices), then resume unless stay_paused
 *
 * Nothing is handed to the VM before step 6 has succeeded, so a refused pair
 * leaves the VM untouched.
 *
 * Memory backends:
 *   COPY   anonymous memory, filled eagerly with the present pages (for a Diff
 *          every layer of the chain, oldest first); absent pages stay zero
 *   FILE   the full memory file's RAM range mapped MAP_PRIVATE (copy on write);
 *          a Diff is refused: rebase the chain first (squib_memfile_rebase).
 *          Never rebase in place or truncate a file a VM maps.
 *   LAZY   anonymous memory filled on demand by a userfaultfd pager thread
 *          (squib/pager.h) reading the file (a Diff: its chain); the pager
 *          is owned by the squib_guest_memory (g->pager: statistics, error)
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
 * Lazy backends, before the VM is handed the memory (step 6 above):
 *   pre-warm  each vCPU's instruction and stack pages, and the page-table
 *             pages that translate them (squib/prewarm.h), are installed
 *             (LAZY: squib_pager_prefetch; UFFD: touched, so the handler
 *             serves them) - unless lazy.no_prewarm
 *   prefetch  LAZY: a recorded working set (squib/workset.h) is installed
 *             in bulk; it must have been recorded on the same memory file
 *             (or be unbound) and have its geometry
 *
 * Thread-safety: one load (or save) per VM and per pair at a time. Recovery
 * renames and unlinks files next to the pair: never run a load while a save
 * to the same paths is in progress (the VMM serialises them). A
 * squib_guest_memory is owned by one thread; the memory it maps may be used
 * from any thread.
 */
#ifndef SQUIB_LOAD_H
#define SQUIB_LOAD_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/atomic.h>
#include <squib/envelope.h>
#include <squib/error.h>
#include <squib/pager.h>
#include <squib/prewarm.h>
#include <squib/state.h>
#include <squib/uffd_remote.h>
#include <squib/workset.h>
#include <squib/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- pair recovery ------------------------------------------------------- */

enum squib_recovery_action {
	SQUIB_RECOVERY_NONE = 0,       /* nothing to do: no temps, or a file is missing */
	SQUIB_RECOVERY_CLEANED,	       /* the pair was good; stale temps were removed */
	SQUIB_RECOVERY_ROLLED_FORWARD, /* STATE.<B>.tmp bound the memory file: renamed over the state */
	SQUIB_RECOVERY_ROLLED_BACK,    /* an in-place rebase of the memory file that did not
					  commit was undone (MEM.undo); its state temp removed */
};

/*
 * Make the pair (state_path, memory_path) consistent after a crashed or
 * failed save or rebase. Without any temp of either name beside them
 * (squib/atomic.h) and without an undo log of the memory file it returns at
 * once, writing nothing. Otherwise it takes both destinations' locks
 * (SQUIB_E_BUSY while a save or rebase of the pair runs; a lock that cannot
 * be made at all, e.g. a read-only directory, means nothing can be fixed: 0).
 * Under them it first rolls back an in-place rebase of the memory file that
 * did not commit (squib_memfile_rebase_recover; its errors are returned) and
 * removes the state temp that rebase prepared. Then, with A the state file's
 * MEMORY section and B the memory file (its footer and manifest):
 *
 *   A describes B exactly (the id and every field, squib_memfile_check_layout)
 *                     the pair is good; remove every temp of both names,
 *                     except a rebase's state temp (same id, another layout:
 *                     it completes the rebased pair)
 *   otherwise, or no state file, and STATE.<B's id in hex>.tmp is a regular
 *   file of this user with one link (not a symlink, FIFO or hard link),
 *   decodes (CRC valid) and its MEMORY section describes B exactly
 *                     roll forward: rename it over the state, fsync the
 *                     directories, then remove the other temps
 *   otherwise         SQUIB_E_PAIR_MISMATCH naming both ids in hex and why
 *                     the temp does not complete the pair; nothing is touched
 *
 * The whole layout, not the id alone, decides: a rebase's result keeps the
 * newest diff's id, so "same id" does not mean "this pair".
 *
 * A state file or memory file that cannot be read or verified is left for
 * the loader to report (SQUIB_RECOVERY_NONE, return 0): a crash never produces one,
 * since both are only ever replaced by rename. hooks (may be NULL) are called
 * before each lock (SQUIB_IO_LOCK), the rename (SQUIB_IO_RENAME, state path)
 * and the directory fsyncs (SQUIB_IO_FSYNC_DIR), as in squib/atomic.h.
 * *action may be NULL.
 */
SQUIB_API int squib_pair_recover(const char *state_path, const char *memory_path,
				 const struct squib_io_hooks *hooks,
				 enum squib_recovery_action *action, struct squib_error_detail *d);

/* ---- guest memory ---------------------------------------------------------- */

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
 * memory file, in its order. Owned by the caller of squib_load, who frees it
 * once the VM no longer uses the memory.
 */
struct squib_guest_memory {
	enum squib_memory_backend backend;
	uint32_t region_count;
	struct squib_vm_region *regions; /* host = the mapping */
	uint64_t page_size;		 /* the memory file's */
	uint64_t page_count;		 /* pages in the RAM range */
	uint8_t
	    memory_id[SQUIB_MEMORY_ID_SIZE]; /* the newest layer's id (zero: UFFD without a file) */
	uint64_t pages_read;		     /* COPY: pages copied in; FILE, LAZY: 0 */
	struct squib_pager *pager;	     /* LAZY: serves the regions' faults; else NULL */
	struct squib_uffd_remote *remote;    /* UFFD: the handler's connection; else NULL */
	uint64_t pages_prewarmed;	     /* boot-critical pages installed (or touched) */
	uint64_t pages_prefetched; /* working-set pages installed by squib_guest_memory_prefetch */
	struct squib_prewarm_report prewarm;
};

/* Stop and free the pager (LAZY) or the handler connection (UFFD), munmap
 * every region, free. NULL is a no-op. */
SQUIB_API void squib_guest_memory_free(struct squib_guest_memory *m);

/*
 * Stop serving the memory, keeping the mappings: stop the pager (LAZY) or
 * drop the handler's connection (UFFD; g->remote becomes NULL, so read its
 * error first). Either unregisters the memory, which wakes every thread
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
 * too. Before the VM runs. Fills g->pages_prewarmed and g->prewarm. If the
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

/* ---- load ------------------------------------------------------------------ */

struct squib_load_request {
	const char *state_path;
	const char *memory_path;
	/* A Diff's older layers: the full base first, then diffs oldest first. */
	const char *const *chain;
	size_t chain_len;
	enum squib_memory_backend backend;
	bool stay_paused; /* do not resume the vCPUs after the restore */
	bool no_recovery; /* skip step 1: report a half-published pair as a mismatch */
	const struct squib_io_hooks *hooks;    /* recovery's rename and fsync (tests); NULL */
	const struct squib_lazy_options *lazy; /* LAZY, UFFD; NULL: defaults */
};

/* Time per phase in nanoseconds. */
struct squib_load_timings {
	uint64_t recovery;
	uint64_t state_read; /* read, decode, checks */
	uint64_t memory;     /* pair check and backend set-up */
	uint64_t prewarm;    /* lazy backends: boot-critical pages and the working set */
	uint64_t restore;    /* set_memory + restore + resume */
	uint64_t total;
};

struct squib_load_result {
	struct squib_microvm_state state;    /* the decoded state (owned; squib_load_result_free) */
	struct squib_envelope_header header; /* version = the file's format version */
	struct squib_guest_memory *memory;   /* the VM's guest RAM: keep while the VM runs */
	enum squib_recovery_action recovery;
	struct squib_load_timings ns;
};

#define SQUIB_LOAD_REQUEST_INIT(state, mem)                                                        \
	((struct squib_load_request){.state_path = (state), .memory_path = (mem)})

/*
 * Restore vm from the pair. On success *out owns the state and the guest
 * memory (release with squib_load_result_free once the VM is gone). On
 * failure the state is freed and out->memory is NULL, except when the VM
 * had already been handed the memory (set_memory succeeded, a restore op
 * failed): the VM is then in an undefined state, stays paused, and
 * out->memory is kept for the caller to free once the VM is discarded.
 */
SQUIB_API int squib_load(const struct squib_vm *vm, const struct squib_load_request *req,
			 struct squib_load_result *out, struct squib_error_detail *d);

/* Free the state and the guest memory; the struct itself is the caller's. */
SQUIB_API void squib_load_result_free(struct squib_load_result *r);

/*
 * The state file alone (upstream load(): no memory file, no VM, no
 * recovery): read, decode for `expected` (SQUIB_ARCH_ANY: either; another
 * architecture is SQUIB_E_INCOMPATIBLE), verify_compatible. *out must be
 * freed with squib_state_free, also on failure; hdr may be NULL.
 */
SQUIB_API int squib_load_state_only(const char *state_path, enum squib_arch expected,
				    struct squib_microvm_state *out,
				    struct squib_envelope_header *hdr,
				    struct squib_error_detail *d);

/*
 * Everything squib_load checks before it needs a VM, without one: pair
 * recovery (unless req->no_recovery), the state file (decoded for
 * `expected`, compatible), and when req->memory_path is set the memory file
 * bound to the state's memory section, over req->chain, fit for
 * req->backend. Nothing is mapped. A tool calls it before it opens a
 * hypervisor, so that a bad file is reported as itself and not as a missing
 * /dev/kvm. *vcpus (may be NULL) gets the state's vCPU count.
 */
SQUIB_API int squib_load_check(const struct squib_load_request *req, enum squib_arch expected,
			       uint32_t *vcpus, struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_LOAD_H */
