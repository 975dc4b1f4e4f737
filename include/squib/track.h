/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/track.h - dirty-page sources behind one interface, and their union.
 *
 * A Diff snapshot needs every guest page written since the last checkpoint.
 * Writes reach guest memory by several roads, and each road needs its own
 * tracker:
 *
 *   guest writes through KVM     KVM's dirty log (a later tracker; see "KVM" below)
 *   VMM writes (device DMA)      squib_tracker_vmm_marks_new: the VMM reports them by
 *                                guest range (upstream never tracked these, its §17 item 12)
 *   VMM-process writes, caught   squib_tracker_uffd_wp_new: userfaultfd write-protect in
 *   by the kernel                async mode, harvested with the PAGEMAP_SCAN ioctl
 *   the same, caught in          squib_tracker_fault_new: mprotect + SIGSEGV, the portable
 *   user space                   analogue of upstream's hv_vm_protect scheme (2 MiB granule
 *                                stepping down to the host page when a block is hot)
 *
 * Every tracker is a struct squib_tracker: an ops table (the C form of a
 * trait) and its context, over a memory map of guest regions. The Diff's
 * dirty set is the union of all trackers, built with a squib_tracker_set.
 *
 * The round protocol (Firecracker's, see docs/DESIGN.md "Dirty tracking"):
 *
 *   start                   tracking begins; earlier writes are forgotten
 *   harvest(dst)            OR every page written since the previous harvest (or start)
 *                           into dst and re-arm tracking for it, atomically per page:
 *                           a write that lands after the harvest took a page is
 *                           reported by the next harvest, never lost
 *   ...write the Diff from dst...
 *   give_back(dst)          the Diff failed: OR dst back, so the next harvest reports it
 *   reset_after_commit      the Diff is durable: the tracker may start a clean session
 *                           (the fault tracker goes back to its coarse granule)
 *   stop                    tracking ends; free releases the tracker
 *
 * Addressing. A bitmap handed to harvest or give_back is a squib_dirty_bitmap
 * over guest-physical addresses at any page size (the Diff writer's choice);
 * a page that a tracker reports at a finer or coarser granule marks every dst
 * page it overlaps, so nothing is lost and coarse trackers over-report only
 * inside their own unit. Each region of the tracker's map must lie wholly
 * inside dst's range or wholly outside it (SQUIB_E_INVALID_ARGUMENT for a
 * region that straddles an edge); regions outside are left untouched, so a
 * writer may harvest region by region or all RAM at once.
 *
 * KVM. The interface is shaped for the dirty log in manual-protect mode: a
 * region is a memslot (squib_guest_region.slot), harvest is KVM_GET_DIRTY_LOG
 * into a per-slot bitmap at host-page granularity followed by
 * KVM_CLEAR_DIRTY_LOG of the bits it returned (the re-arm), then
 * squib_dirty_bitmap_or_words() into dst at slot.gpa; give_back ORs into a
 * host-page bitmap the next harvest drains first (KVM cannot re-dirty a page).
 *
 * Errors: 0 or a negative SQUIB_E_*: misuse (NULL, bad map, wrong state, a
 * straddling region) is SQUIB_E_INVALID_ARGUMENT with a message; an OS call
 * that fails is SQUIB_E_IO with its errno in the detail; SQUIB_E_NOMEM.
 * A failing harvest may already have moved some pages into dst (re-armed):
 * give dst back, as squib_tracker_set_harvest does, and nothing is lost;
 * every page not yet moved stays with the tracker.
 *
 * Thread-safety: the control calls (start, harvest, give_back,
 * reset_after_commit, stop) on one tracker serialise on a mutex inside it, so
 * a harvester thread and a controller thread may share a tracker. Guest and
 * VMM writes to tracked memory, and squib_tracker_mark_write(), may run on
 * any thread at any time and are lock-free. _free needs exclusive access.
 *
 * Global state: the fault tracker needs a process-wide SIGSEGV handler, so
 * src/linux/track_fault.c keeps the library's one global registry (see
 * squib_tracker_fault_new). Nothing else here is global.
 */
#ifndef SQUIB_TRACK_H
#define SQUIB_TRACK_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/dirty.h>
#include <squib/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most regions one tracker covers (KVM's default memslot count is 509; a microVM uses a few). */
#define SQUIB_TRACK_MAX_REGIONS 64u
/* Most trackers in one set. */
#define SQUIB_TRACKER_SET_MAX 8u

/* ==== memory map ========================================================== */

/*
 * One guest RAM region: guest-physical [gpa, gpa + size), mapped by the VMM
 * at hva. gpa and size are multiples of the host page; hva is host-page
 * aligned. Trackers that never touch memory (VMM marks) accept hva NULL.
 * slot is the KVM memslot id, carried for the KVM tracker; the others ignore it.
 */
struct squib_guest_region {
	uint64_t gpa;
	uint64_t size;
	void *hva;
	uint32_t slot;
};

/*
 * A tracker's regions: 1..SQUIB_TRACK_MAX_REGIONS, no two overlapping in
 * guest-physical space (nor, when mapped, in host-virtual space). Copied at
 * creation; any order.
 */
struct squib_memory_map {
	const struct squib_guest_region *regions;
	size_t count;
};

/* ==== the tracker interface =============================================== */

/*
 * The ops every dirty source implements. ctx is the implementation's. The
 * generic layer checks arguments and state before calling, serialises the
 * calls on one tracker, and guarantees that each region of the map lies
 * wholly inside or wholly outside the bitmap passed to harvest/give_back.
 *
 *   start               arm tracking for every region; earlier writes are not reported
 *   harvest             OR into dst the pages written since the last harvest in the
 *                       regions inside dst, and re-arm them; loses nothing on failure
 *   give_back           OR src's pages in the regions inside src into the tracker, so
 *                       the next harvest reports them again
 *   reset_after_commit  the harvested Diff is durable (may be NULL: nothing to do)
 *   stop                disarm; writes are no longer tracked; start may follow
 *   free                release ctx (called once, after stop if the tracker ran)
 *
 * Each op returns 0, a negative SQUIB_E_*, or -errno (reported as SQUIB_E_IO
 * with that errno): the backend rule of squib/error.h (squib_backend_rc).
 */
struct squib_tracker_ops {
	const char *name;
	int (*start)(void *ctx, struct squib_error_detail *d);
	int (*harvest)(void *ctx, struct squib_dirty_bitmap *dst, struct squib_error_detail *d);
	int (*give_back)(void *ctx, const struct squib_dirty_bitmap *src,
			 struct squib_error_detail *d);
	int (*reset_after_commit)(void *ctx, struct squib_error_detail *d);
	int (*stop)(void *ctx, struct squib_error_detail *d);
	void (*free)(void *ctx);
};

struct squib_tracker;

/*
 * Wrap an implementation. ops must outlive the tracker; ctx is owned by it
 * from here on (ops->free is called on it even when this fails). The map is
 * validated and copied. The tracker starts stopped.
 */
SQUIB_API int squib_tracker_new(const struct squib_tracker_ops *ops, void *ctx,
				const struct squib_memory_map *map, struct squib_tracker **out,
				struct squib_error_detail *d);

/* Stop (if running, errors ignored) and release. NULL is a no-op. */
SQUIB_API void squib_tracker_free(struct squib_tracker *t);

/* "vmm-marks", "uffd-wp", "fault", or the implementation's name. */
SQUIB_API const char *squib_tracker_name(const struct squib_tracker *t);
SQUIB_API bool squib_tracker_is_active(const struct squib_tracker *t);
/* The validated copy of the map (regions in ascending gpa order). */
SQUIB_API size_t squib_tracker_region_count(const struct squib_tracker *t);
SQUIB_API const struct squib_guest_region *squib_tracker_region(const struct squib_tracker *t,
								size_t i);
/* The implementation's context, for code that built it with squib_tracker_new. */
SQUIB_API void *squib_tracker_ctx(const struct squib_tracker *t);

/* SQUIB_E_INVALID_ARGUMENT when already active. */
SQUIB_API int squib_tracker_start(struct squib_tracker *t, struct squib_error_detail *d);
/* SQUIB_E_INVALID_ARGUMENT when not active. */
SQUIB_API int squib_tracker_harvest(struct squib_tracker *t, struct squib_dirty_bitmap *dst,
				    struct squib_error_detail *d);
/* SQUIB_E_INVALID_ARGUMENT when not active (bits given to a stopped tracker would vanish). */
SQUIB_API int squib_tracker_give_back(struct squib_tracker *t, const struct squib_dirty_bitmap *src,
				      struct squib_error_detail *d);
SQUIB_API int squib_tracker_reset_after_commit(struct squib_tracker *t,
					       struct squib_error_detail *d);
/* Stopping a stopped tracker is a no-op. */
SQUIB_API int squib_tracker_stop(struct squib_tracker *t, struct squib_error_detail *d);

/* ==== the union ============================================================ */

/*
 * Non-owning list of trackers whose union is the Diff's dirty set. A plain
 * caller-owned struct: SQUIB_TRACKER_SET_INIT, then add.
 *
 *   harvest      harvest every active tracker into dst; if one fails, give dst
 *                back to every active tracker (so nothing any of them handed
 *                over is lost) and return that tracker's error
 *   give_back    the Diff written from dst failed: give dst back to every
 *                active tracker; every tracker is tried, the first error returned
 *   reset_after_commit   every active tracker; the first error returned
 *
 * Giving the whole union to every tracker over-reports in the next round
 * (each tracker then also reports pages another saw), but a page stays
 * dirty as long as any tracker of the set is still active.
 */
struct squib_tracker_set {
	struct squib_tracker *trackers[SQUIB_TRACKER_SET_MAX];
	size_t count;
};

#define SQUIB_TRACKER_SET_INIT                                                                     \
	{                                                                                          \
		{NULL}, 0                                                                          \
	}

/* SQUIB_E_INVALID_ARGUMENT when full, NULL or already present. */
SQUIB_API int squib_tracker_set_add(struct squib_tracker_set *set, struct squib_tracker *t,
				    struct squib_error_detail *d);
SQUIB_API int squib_tracker_set_harvest(struct squib_tracker_set *set,
					struct squib_dirty_bitmap *dst,
					struct squib_error_detail *d);
SQUIB_API int squib_tracker_set_give_back(struct squib_tracker_set *set,
					  const struct squib_dirty_bitmap *src,
					  struct squib_error_detail *d);
SQUIB_API int squib_tracker_set_reset_after_commit(struct squib_tracker_set *set,
						   struct squib_error_detail *d);

/* ==== bitmap helpers for implementations ================================== */

/*
 * OR a raw bitmap into dst: bit i of words (LSB first, word i / 64) stands for
 * guest-physical [gpa + i * page_size, + page_size), for i < nbits. The layout
 * of KVM_GET_DIRTY_LOG on a little-endian host. Pages outside dst are
 * ignored. Returns the number of dst pages this call turned dirty.
 */
SQUIB_API uint64_t squib_dirty_bitmap_or_words(struct squib_dirty_bitmap *dst, uint64_t gpa,
					       uint64_t page_size, const uint64_t *words,
					       uint64_t nbits);

/* ==== VMM marks ============================================================ */

/*
 * Writes the VMM makes into guest memory itself (device DMA, virtio used
 * rings) fault nowhere: the VMM reports them with squib_tracker_mark_write.
 * One host-page bitmap per region; harvest drains it (Firecracker's
 * VMM-side bitmap). hva may be NULL in the map.
 */
SQUIB_API int squib_tracker_vmm_marks_new(const struct squib_memory_map *map,
					  struct squib_tracker **out, struct squib_error_detail *d);

/*
 * Report a VMM write to guest-physical [gpa, gpa + len): every host page it
 * touches in any region. Parts outside the map are ignored, and so is the
 * whole call while the tracker is stopped (start forgets earlier writes
 * anyway). Returns the pages newly marked; 0 also when t is not a VMM-marks
 * tracker. Lock-free; any thread. Report the write after making it: a
 * harvest that runs between the two reports the page in the next round.
 */
SQUIB_API uint64_t squib_tracker_mark_write(struct squib_tracker *t, uint64_t gpa, uint64_t len);

/* ==== userfaultfd write-protect (Linux >= 6.7) ============================ */

/*
 * Memory the VMM process writes itself, tracked by the kernel: each region
 * (anonymous, shmem or hugetlbfs memory mapped read-write at hva) is
 * registered with userfaultfd in write-protect mode with
 * UFFD_FEATURE_WP_ASYNC (the kernel resolves the write fault itself, no
 * handler thread) and UFFD_FEATURE_WP_UNPOPULATED (never-touched pages are
 * protected too, so their first write counts). harvest runs the PAGEMAP_SCAN
 * ioctl with PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC over the
 * PAGE_IS_WRITTEN category, which reports the written pages and
 * write-protects them again under the page-table lock: a concurrent write
 * is either reported now or faults into the next round. Pages never touched
 * or only read are not reported. Granularity: the host page (a THP is split
 * by the kernel on its first tracked write).
 *
 * Fails with SQUIB_E_IO and the errno of the call that failed: ENOSYS when
 * the kernel has no userfaultfd, EPERM when neither the syscall
 * (vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE) nor /dev/userfaultfd
 * is allowed, EINVAL from UFFDIO_API when the kernel lacks WP_ASYNC.
 * start fails with EINVAL/EPERM from UFFDIO_REGISTER for memory uffd-wp
 * cannot track, and from PAGEMAP_SCAN on a kernel older than 6.7 (ENOTTY).
 *
 * Caveats: the VMM must not register the same memory with another
 * userfaultfd, and memory discarded with MADV_DONTNEED while tracked reads
 * back as zeros without being reported (report such discards as VMM marks).
 */
SQUIB_API int squib_tracker_uffd_wp_new(const struct squib_memory_map *map,
					struct squib_tracker **out, struct squib_error_detail *d);

/* ==== mprotect + SIGSEGV ===================================================== */

/*
 * The portable analogue of upstream's hv_vm_protect scheme, on memory mapped
 * PROT_READ | PROT_WRITE at hva (nobody else may change its protection while
 * it is tracked):
 *
 *   start/harvest  write permission is stripped (mprotect PROT_READ): all of each
 *                  region at start, the units harvest found dirty afterwards
 *   write fault    the SIGSEGV handler records the page with
 *                  squib_tracked_region_mark_dirty, grants PROT_READ | PROT_WRITE
 *                  back on the tracking unit (2 MiB, or the host page after
 *                  step-down), and returns: the write then completes
 *   harvest        also ticks each region's adaptive controller (the only place
 *                  besides squib_tracker_fault_tick; never the handler); a region
 *                  whose hottest 2 MiB block took more than the threshold of faults
 *                  in a window steps down to the host page until reset_after_commit
 *
 * Limitation: only user-space stores fault into the handler. A system call
 * that writes into protected memory (read(2), recv(2), io_uring) fails with
 * EFAULT instead, so memory the kernel writes on the VMM's behalf must be
 * tracked with the uffd-wp tracker, which sees those writes too.
 *
 * Invariant: a writable unit always has its dirty bit set. harvest takes the
 * bits and re-protects in a window where the handler grants nothing (a
 * thread faulting then retries until the window closes), so a write after
 * the harvest is never lost. Over-reporting is bounded by the unit: at the
 * coarse granule, the whole 2 MiB block (counted from the region's start) of
 * each written page.
 *
 * The registry (the library's one global mutable state, here because a
 * signal handler has no context argument): a fixed table of
 * SQUIB_FAULT_MAX_RANGES host ranges, each slot a pointer plus an in-flight
 * counter. The handler only loads and increments atomics and calls
 * mprotect: it is lock-free and async-signal-safe. Registration serialises on
 * a mutex the handler never takes. Each start makes the handler the SIGSEGV
 * action (sigaction, SA_SIGINFO | SA_ONSTACK | SA_RESTART) unless it already
 * is, remembering the action it replaces; it is never removed, since another
 * library may have chained after it. A handler installed later must chain to
 * the one it replaced, or tracking faults reach it instead. A fault outside
 * every tracked range goes to the replaced action (its sa_sigaction or
 * sa_handler, called with our signal mask), or, for SIG_DFL and SIG_IGN, the
 * default action is restored and the access faults again, so a real crash
 * still kills the process with SIGSEGV. A fault in a range stopped lately is
 * retried once before it is treated as real: it may have raced the stop.
 *
 * opts: threshold, clock (inject one in tests) and hooks of each region's
 * squib_tracked_region; NULL for SQUIB_TRACKED_REGION_OPTIONS_INIT. The
 * hooks are also called, in the handler, with SQUIB_DIRTY_MARKER_MARKED
 * between marking a page and granting write on it (a test hook: it runs in
 * signal context and must be async-signal-safe).
 */
#define SQUIB_FAULT_MAX_RANGES 64u

SQUIB_API int squib_tracker_fault_new(const struct squib_memory_map *map,
				      const struct squib_tracked_region_options *opts,
				      struct squib_tracker **out, struct squib_error_detail *d);

/*
 * Tick every region's adaptive controller without harvesting, for a VMM that
 * wants step-down decisions between rare harvests (from a timer thread, say:
 * it may run concurrently with every other call but _free, and a step-down
 * it triggers loses no bit). SQUIB_E_INVALID_ARGUMENT unless t is a fault
 * tracker.
 */
SQUIB_API int squib_tracker_fault_tick(struct squib_tracker *t, struct squib_error_detail *d);

/* The granule region i (in the map's gpa order) tracks at; COARSE for a bad t or i. */
SQUIB_API enum squib_tracking_granule squib_tracker_fault_granule(const struct squib_tracker *t,
								  size_t i);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_TRACK_H */
