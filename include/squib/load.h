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
 * Guest memory and its backends (COPY, FILE, LAZY, UFFD), pre-warm and
 * prefetch: squib/guest_memory.h.
 *
 * Thread-safety: one load (or save) per VM and per pair at a time. Recovery
 * renames and unlinks files next to the pair: never run a load while a save
 * to the same paths is in progress (the VMM serialises them).
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
#include <squib/guest_memory.h>
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
