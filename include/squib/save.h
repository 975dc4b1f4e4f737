/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/save.h - snapshot a running VM into a state/memory file pair.
 *
 * squib_save() drives a struct squib_vm (squib/vm.h):
 *
 *    1. check the request; for a Diff, resolve the parent memory id
 *    2. lock both destinations for the whole save (squib_dest_lock: another
 *       writer of either path makes this save fail SQUIB_E_BUSY, before the
 *       pause); under the locks recover the pair a crashed save left, so this
 *       save cannot destroy what a recovery needs; draw the new memory id
 *    3. pause every vCPU (quiesce timeout, default 1 s: SQUIB_E_QUIESCE_TIMEOUT,
 *       the VM keeps running)
 *    4. capture the state; a Diff then needs vm_info.track_dirty_pages
 *       (InvalidPath "Diff snapshot requested but vm_info.track_dirty_pages is
 *       false", I-SNAP-6) and an active dirty tracker (InvalidPath "Diff snapshot
 *       requires track_dirty_pages=true and a dirty bitmap"); then
 *       verify_compatible. No file exists before this point.
 *    5. Diff: harvest the VM's tracker set into one bitmap per region
 *    6. open both temps (squib/atomic.h: MEM.<random hex>.tmp, and
 *       STATE.<new memory id in hex>.tmp, the name recovery looks for)
 *    7. write the memory file (full or diff) into its temp, put its manifest
 *       in the state's MEMORY section, write the state into its temp
 *    8. resume the vCPUs (unless stay_paused): the image is complete, the rest
 *       is durability, and the trackers see every later write. A live save
 *       (req.live) resumes them before step 7 instead, once guest RAM is
 *       write-protected, and writes the memory from a view of the pause
 *    9. fsync and close both temps
 *   10. publish: rename the memory temp -> memory path and fsync its
 *       directory, then the state temp -> state path and fsync its directory;
 *       release the locks
 *   11. the pair is durable: reset the trackers (squib_tracker_set_reset_after_commit)
 *
 * Any failure gives the harvested pages back to the trackers (the next Diff
 * contains them), resumes the vCPUs (unless stay_paused) and leaves the
 * previous pair: up to the memory rename both temps are unlinked and the
 * destination files are untouched. Past the memory rename the new memory
 * file is in place; the state temp is then kept (never unlinked), and the next
 * squib_load (or save) rolls the pair forward to the new one. The pair on
 * disk is therefore always the old one or the new one, after a failure as
 * after a crash at any step; docs/DESIGN.md "Saving and loading a pair"
 * has the case analysis.
 *
 * If the pair was published but resetting the trackers then fails, that
 * error is returned with report.state_published set: the snapshot is in
 * place, only the next Diff may hold more pages than needed.
 *
 * Errors: 0 or a negative SQUIB_E_*, with the detail filled. Invalid requests
 * are SQUIB_E_INVALID_ARGUMENT (or InvalidPath where upstream used it);
 * memory-file I/O is SQUIB_E_MEMORY_IO, state-file I/O SQUIB_E_IO, a failed
 * rename SQUIB_E_ATOMIC_COMMIT_FAILED.
 *
 * Thread-safety: one save (or load) per VM and per destination pair at a
 * time; the function keeps no state between calls. Saves of distinct VMs to
 * distinct paths may run concurrently.
 */
#ifndef SQUIB_SAVE_H
#define SQUIB_SAVE_H

#include <squib/api.h>
#include <stdbool.h>
#include <stdint.h>

#include <squib/atomic.h>
#include <squib/error.h>
#include <squib/state.h>
#include <squib/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

enum squib_snapshot_kind {
	SQUIB_SNAPSHOT_FULL = 1,
	SQUIB_SNAPSHOT_DIFF = 2,
};

struct squib_save_request {
	const char *state_path;	 /* the .snap destination */
	const char *memory_path; /* the .mem destination */
	enum squib_snapshot_kind kind;
	/*
	 * Diff only, one of the two (both must agree when both are given): the id
	 * of the memory file this diff applies on, or the parent's state file (its
	 * MEMORY section names the id, and its geometry must be this VM's).
	 */
	const uint8_t *parent_memory_id; /* SQUIB_MEMORY_ID_SIZE bytes, or NULL */
	const char *parent_state_path;	 /* or NULL */
	bool stay_paused;		 /* leave the vCPUs paused afterwards (also on failure) */
	uint64_t page_size;		 /* memory-file page; 0: sysconf(_SC_PAGESIZE) */
	uint32_t quiesce_timeout_ms;	 /* 0: SQUIB_QUIESCE_TIMEOUT_MS */
	bool digests;			 /* record per-extent digests in the memory file */
	/* Fault injection for tests (NULL in production): called before every open,
	 * write, fsync, close, rename and directory fsync of both files. */
	const struct squib_io_hooks *hooks;
	/*
	 * Diff only: write the memory file PACKED (squib/memfile.h
	 * SQUIB_MEMFILE_FLAG_PACKED): the dirty pages back to back, one
	 * sequential write, instead of at their fixed offsets. Read by COPY and
	 * LAZY loads, rebase and verify; FILE restore maps only a full file
	 * either way. Default off (fixed offsets). A Full with it set is
	 * SQUIB_E_INVALID_ARGUMENT.
	 */
	bool packed;
	/*
	 * Live: the guest runs while its memory is written (docs/DESIGN.md "Live
	 * snapshots"). At the pause guest RAM is write-protected with a
	 * userfaultfd (synchronous mode) and the vCPUs resume as soon as the
	 * state is captured; the memory file is then written from a view of the
	 * pause instant, into which a handler thread copies each page before the
	 * guest (or KVM on its behalf) may change it. The image is exactly the
	 * memory at the pause; the steps after the write (sync, publish, tracker
	 * reset) and the crash-safety protocol are unchanged. Guest RAM must be
	 * private anonymous or shmem memory that no other userfaultfd serves (a
	 * lazily restored guest whose pager still runs, the uffd-wp tracker):
	 * otherwise the save runs stop-the-world and says why in the report
	 * (live false, live_errno set). Writes during a live save reach the dirty
	 * trackers as usual, so the next Diff holds them.
	 */
	bool live;
};

/* Time spent per phase, in nanoseconds (CLOCK_MONOTONIC). */
struct squib_save_timings {
	uint64_t pause;
	uint64_t capture;
	uint64_t memory_write;
	uint64_t state_write;
	uint64_t sync;	  /* fsync + close of both temps */
	uint64_t publish; /* both renames and directory fsyncs */
	uint64_t paused;  /* from the pause to the resume (the guest's downtime) */
	uint64_t total;
};

struct squib_save_report {
	enum squib_snapshot_kind kind;
	uint8_t memory_id[SQUIB_MEMORY_ID_SIZE]; /* the new memory file's id */
	uint8_t parent_id[SQUIB_MEMORY_ID_SIZE]; /* Diff: its parent's id; else zero */
	/* Pages of data in the memory file (upstream reported 0 for a Full). */
	uint64_t pages_written;
	uint64_t page_size;
	uint64_t memory_bytes_written; /* page data: pages_written * page_size */
	uint64_t memory_file_size;     /* including the manifest and footer */
	uint64_t state_file_size;
	bool recovered;	       /* step 2 rolled a half-published pair forward */
	bool memory_published; /* the memory rename happened */
	bool state_published;  /* the state rename happened: the new pair is in place */
	bool resumed;	       /* the vCPUs were resumed */
	struct squib_save_timings ns;
	/* Live saves (req.live): */
	bool live;		      /* the memory was written while the guest ran */
	int live_errno;		      /* live requested but not possible: why (EBUSY, ...) */
	uint64_t live_pages_on_write; /* pages copied because the guest wrote them first */
	uint64_t live_write_faults;   /* guest writes that waited for a copy */
};

/* SQUIB_SAVE_REQUEST_INIT: a Full save to the given paths with every default. */
#define SQUIB_SAVE_REQUEST_INIT(state, mem)                                                        \
	((struct squib_save_request){                                                              \
	    .state_path = (state), .memory_path = (mem), .kind = SQUIB_SNAPSHOT_FULL})

/* The name of a kind: "full", "diff", or "unknown". */
SQUIB_API const char *squib_snapshot_kind_name(enum squib_snapshot_kind kind);

/*
 * Save the VM into the pair named by req. report (may be NULL) is filled
 * also on failure, as far as the save got: memory_published/state_published
 * then say what reached the destination names.
 */
SQUIB_API int squib_save(const struct squib_vm *vm, const struct squib_save_request *req,
			 struct squib_save_report *report, struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_SAVE_H */
