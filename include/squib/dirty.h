/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/dirty.h - dirty-page bitmap, adaptive tracking granularity, tracked region.
 *
 * A Diff snapshot writes only the pages written since the last checkpoint.
 * Three objects record which ones:
 *
 *   squib_dirty_bitmap         one bit per tracking page of [ram_start, ram_start + ram_size),
 *                              set lock-free from any thread, drained by the snapshot writer;
 *   squib_adaptive_controller  per-2 MiB-block fault counters that decide when a region steps
 *                              down from coarse (2 MiB) to fine (host page) tracking;
 *   squib_tracked_region       a bitmap plus a controller; it switches the bitmap's granule
 *                              without losing a bit (upstream could lose one, see below).
 *
 * Where the bits come from is the caller's business. Upstream (HVF) sets them
 * from stage-2 write-protection faults; on KVM the kernel dirty log is the
 * primary source and a bitmap here is the shadow it is collected into. Writes
 * the VMM itself makes to guest memory (device DMA) fault nowhere, so the VMM
 * must record them with squib_dirty_bitmap_set_range() or
 * squib_tracked_region_mark_range() (upstream never did, its issue 12).
 *
 * Memory orders (upstream §8.6) and why they suffice:
 *
 *   set, set_by_index, set_range   load, relaxed (skip words that have the bits), then
 *                                  fetch_or, relaxed
 *   test, test_by_index            load, acquire
 *   drain, drain_into, drain_merge load, relaxed (skip clean words), then exchange(0), acquire
 *   fold_into_finer, merge         load of the source, acquire; fetch_or into the target, relaxed
 *   count                          load, relaxed
 *   clear                          store(0), relaxed
 *   controller fault counter       fetch_add, relaxed; tick takes it with exchange(0), acquire
 *   region active bitmap           seq_cst; the switch protocol is described at
 *                                  squib_tracked_region below and in src/dirty.c
 *
 * Every bit lives in one 64-bit word and every change to a word is a single
 * atomic operation, so the word's modification order serialises all sets and
 * drains: no set is lost to a concurrent set, each set bit is reported by
 * exactly one drain, and a bit set after a drain took its word survives for
 * the next drain. (A set that finds its bit already there and writes nothing
 * takes effect at that read, as a fetch_or there would.) That needs atomicity
 * only, hence relaxed sets.
 * A bit does not publish the page's contents: whoever reads the page after
 * a drain must be ordered after the guest's or device's write by its own
 * means (upstream: the vCPU pause/resume around a save, a full barrier). The
 * acquire on test and drain costs nothing on x86 and pairs with any setter
 * that does publish with release, such as the region's in-flight exit.
 *
 * Errors: geometry problems are SQUIB_E_INVALID_PATH with upstream's exact
 * message (upstream reuses InvalidPath for any rejected configuration),
 * NULL pointers SQUIB_E_INVALID_ARGUMENT, allocation failure SQUIB_E_NOMEM.
 * Functions that cannot fail return a value instead and treat a NULL object
 * as empty (false, 0).
 */
#ifndef SQUIB_DIRTY_H
#define SQUIB_DIRTY_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Faults per coarse block per window above which a region steps down (strictly greater). */
#define SQUIB_DEFAULT_STEP_DOWN_THRESHOLD 32u
/* Minimum time between two controller evaluations: 100 ms. */
#define SQUIB_ADAPTIVE_WINDOW_NS (100ull * 1000 * 1000)
/* The coarse tracking page, and the unit the controller counts faults in: 2 MiB. */
#define SQUIB_TRACKING_PAGE_COARSE (2ull * 1024 * 1024)
/*
 * Largest bitmap accepted, in pages (an 8 GiB bitmap; 256 TiB of RAM at 4 KiB).
 * Ours, not upstream's: it bounds the allocation a geometry can ask for.
 */
#define SQUIB_DIRTY_MAX_PAGES (1ull << 36)

enum squib_tracking_granule {
	SQUIB_GRANULE_COARSE = 0, /* SQUIB_TRACKING_PAGE_COARSE */
	SQUIB_GRANULE_FINE = 1,   /* the host page, sysconf(_SC_PAGESIZE) */
};

/*
 * Page size of a granule: 2 MiB, or the host page for FINE (never a
 * hard-coded 4 KiB or 16 KiB). 0 for an unknown value.
 * Thread-safety: reentrant.
 */
SQUIB_API uint64_t squib_tracking_granule_page_size(enum squib_tracking_granule granule);

/* ==== squib_dirty_bitmap ================================================== */

/*
 * One bit per page, LSB first: page p is bit p % 64 of word p / 64. Bits at
 * or past page_count are never set, and every reader masks them out.
 *
 * Thread-safety: everything but _new and _free may run concurrently on one
 * bitmap from any number of threads (see the memory orders above); _free
 * needs exclusive access.
 */
struct squib_dirty_bitmap;

/*
 * Bitmap over [ram_start, ram_start + ram_size) at page_size. Rejected with
 * SQUIB_E_INVALID_PATH, in upstream's order and wording:
 *   page_size not a power of two, 0 included  "page_size must be a power of two: N"
 *   ram_size == 0                             "dirty bitmap requires a non-empty RAM range"
 *   ram_start + ram_size overflows            "RAM range overflows: start=0x.., size=0x.."
 *   the words do not fit in memory's size     "bitmap word count exceeds usize::MAX (page_count=N)"
 *   more than SQUIB_DIRTY_MAX_PAGES pages     "dirty bitmap too large: page_count=N (limit M)"
 * page_count = ceil(ram_size / page_size): a partial trailing page is
 * tracked. ram_start need not be aligned. All pages start clean.
 */
SQUIB_API int squib_dirty_bitmap_new(uint64_t ram_start, uint64_t ram_size, uint64_t page_size,
				     struct squib_dirty_bitmap **out, struct squib_error_detail *d);
SQUIB_API void squib_dirty_bitmap_free(struct squib_dirty_bitmap *bm);

SQUIB_API uint64_t squib_dirty_bitmap_ram_start(const struct squib_dirty_bitmap *bm);
SQUIB_API uint64_t squib_dirty_bitmap_ram_size(const struct squib_dirty_bitmap *bm);
SQUIB_API uint64_t squib_dirty_bitmap_page_size(const struct squib_dirty_bitmap *bm);
SQUIB_API uint64_t squib_dirty_bitmap_page_count(const struct squib_dirty_bitmap *bm);
/* log2(page_size): page = (addr - ram_start) >> shift. */
SQUIB_API unsigned int squib_dirty_bitmap_page_shift(const struct squib_dirty_bitmap *bm);

/* Index of the page holding addr into *page; false when addr is outside the range. */
SQUIB_API bool squib_dirty_bitmap_page_index_of(const struct squib_dirty_bitmap *bm, uint64_t addr,
						uint64_t *page);

/*
 * Mark the page holding addr (or page index `page`) dirty. True only when this
 * call turned the bit from 0 to 1; false when it was already set or addr/page
 * is out of range. Lock-free; safe in a vCPU exit path.
 */
SQUIB_API bool squib_dirty_bitmap_set(struct squib_dirty_bitmap *bm, uint64_t addr);
SQUIB_API bool squib_dirty_bitmap_set_by_index(struct squib_dirty_bitmap *bm, uint64_t page);

/*
 * Mark every page that the byte range [addr, addr + len) touches, for writes
 * the VMM makes itself. The part of the range outside the bitmap is ignored
 * (so a VMM may offer one write to every region's bitmap); len 0 marks
 * nothing. Returns how many pages this call turned from clean to dirty.
 * One fetch_or per 64 pages.
 */
SQUIB_API uint64_t squib_dirty_bitmap_set_range(struct squib_dirty_bitmap *bm, uint64_t addr,
						uint64_t len);

/* Is the page dirty? False when out of range. Does not clear. */
SQUIB_API bool squib_dirty_bitmap_test(const struct squib_dirty_bitmap *bm, uint64_t addr);
SQUIB_API bool squib_dirty_bitmap_test_by_index(const struct squib_dirty_bitmap *bm, uint64_t page);

/* Number of dirty pages (popcount); a moment's estimate under concurrent sets. */
SQUIB_API uint64_t squib_dirty_bitmap_count(const struct squib_dirty_bitmap *bm);

/*
 * Called once per drained page, in ascending order. Return 0 to go on; any
 * other value (a negative SQUIB_E_* by convention) stops the drain: that page
 * and every page not yet reported stay dirty, and drain_into returns the value.
 */
typedef int (*squib_dirty_page_fn)(void *ctx, uint64_t page);

/*
 * Drain without allocating: take each word with exchange(0) and report its
 * set bits to fn in ascending page order. *drained (may be NULL) receives the
 * number of pages fn accepted. Returns 0, fn's stopping value, or
 * SQUIB_E_INVALID_ARGUMENT.
 */
SQUIB_API int squib_dirty_bitmap_drain_into(struct squib_dirty_bitmap *bm, squib_dirty_page_fn fn,
					    void *ctx, uint64_t *drained);

/*
 * Drain at most cap page indices, ascending, into pages[]. Pages that do not
 * fit stay dirty, so a return equal to cap means "call again".
 */
SQUIB_API size_t squib_dirty_bitmap_drain(struct squib_dirty_bitmap *bm, uint64_t *pages,
					  size_t cap);

/*
 * Drain every dirty page into a new ascending array *pages of *n entries,
 * released with free(3) (NULL when *n is 0). The array never exceeds
 * page_count entries. On SQUIB_E_NOMEM nothing is drained that was not given
 * back: the bitmap keeps every page.
 */
SQUIB_API int squib_dirty_bitmap_drain_alloc(struct squib_dirty_bitmap *bm, uint64_t **pages,
					     size_t *n, struct squib_error_detail *d);

/*
 * Upstream's step-down fold: for every dirty page of `coarse` (read, not
 * cleared) mark each `fine` page inside it. SQUIB_E_INVALID_PATH unless the
 * ranges are identical ("fold_into_finer requires identical ranges"), fine's
 * page is smaller ("fold_into_finer expects a strictly smaller page size")
 * and divides coarse's ("coarse page must be a multiple of fine page"; always
 * true for two powers of two, kept for parity).
 */
SQUIB_API int squib_dirty_bitmap_fold_into_finer(const struct squib_dirty_bitmap *coarse,
						 struct squib_dirty_bitmap *fine,
						 struct squib_error_detail *d);

/*
 * dst |= src, src unchanged: used to give harvested bits back when a Diff
 * save fails and to union bitmaps (the KVM log with the VMM-side one). The
 * ranges must be identical ("merge requires identical ranges",
 * SQUIB_E_INVALID_PATH); the page sizes may differ. Equal page sizes OR whole
 * words; otherwise every byte of a dirty src page makes the dst page holding
 * it dirty, so a coarser dst over-approximates and nothing is ever lost.
 */
SQUIB_API int squib_dirty_bitmap_merge(struct squib_dirty_bitmap *dst,
				       const struct squib_dirty_bitmap *src,
				       struct squib_error_detail *d);

/*
 * Like merge, but drains src (exchange(0) per word) as it goes: each dirty
 * src page ends up either in dst or, when set after its word was taken,
 * still in src. dst == src is a no-op.
 */
SQUIB_API int squib_dirty_bitmap_drain_merge(struct squib_dirty_bitmap *dst,
					     struct squib_dirty_bitmap *src,
					     struct squib_error_detail *d);

/* Forget every dirty bit (a drain that reports nothing). */
SQUIB_API void squib_dirty_bitmap_clear(struct squib_dirty_bitmap *bm);

/* ==== squib_adaptive_controller =========================================== */

/*
 * Time source, injectable for tests. now_ns returns monotonic nanoseconds; a
 * NULL clock (or now_ns) means CLOCK_MONOTONIC.
 */
struct squib_dirty_clock {
	uint64_t (*now_ns)(void *ctx);
	void *ctx;
};

/*
 * Decides when a region should step down from coarse to fine tracking. One
 * fault counter per 2 MiB block; the decision looks at the hottest block,
 * never the sum, so many lukewarm blocks do not step a region down.
 *
 * State machine: COARSE -(tick: window elapsed and max block count > threshold)-> FINE.
 * FINE is terminal for the tracking session. Only reset_to_coarse() leaves it,
 * and only at a clean checkpoint (see there).
 *
 * Thread-safety: record_fault and granule are lock-free and may run from any
 * thread at any time; tick, tick_at and reset_to_coarse serialise on an
 * internal mutex; _free needs exclusive access.
 */
struct squib_adaptive_controller;

/*
 * Controller for block_count 2 MiB blocks (at most SQUIB_DIRTY_MAX_PAGES,
 * else SQUIB_E_INVALID_PATH) stepping down above `threshold` faults per
 * block per window (SQUIB_DEFAULT_STEP_DOWN_THRESHOLD upstream). The clock
 * is copied; the window starts now.
 */
SQUIB_API int squib_adaptive_controller_new(uint64_t block_count, uint32_t threshold,
					    const struct squib_dirty_clock *clock,
					    struct squib_adaptive_controller **out,
					    struct squib_error_detail *d);
SQUIB_API void squib_adaptive_controller_free(struct squib_adaptive_controller *ctrl);

SQUIB_API uint64_t
squib_adaptive_controller_block_count(const struct squib_adaptive_controller *ctrl);
SQUIB_API uint32_t
squib_adaptive_controller_threshold(const struct squib_adaptive_controller *ctrl);
enum squib_tracking_granule SQUIB_API
squib_adaptive_controller_granule(const struct squib_adaptive_controller *ctrl);

/* Count one fault in block `block`; an out-of-range block is ignored. Wraps at 2^32. */
SQUIB_API void squib_adaptive_controller_record_fault(struct squib_adaptive_controller *ctrl,
						      uint64_t block);

/*
 * Evaluate at time now_ns (tick() reads the controller's clock). Before
 * SQUIB_ADAPTIVE_WINDOW_NS has passed since the last evaluation (or if now_ns
 * went backwards) nothing changes and the counters keep accumulating.
 * Otherwise every counter is taken and zeroed, the window restarts at now_ns,
 * and a COARSE controller whose hottest block saw more than `threshold`
 * faults becomes FINE. The counts cover the whole time since the previous
 * evaluation (no rate normalisation, as upstream). Returns the granule.
 */
SQUIB_API enum squib_tracking_granule
squib_adaptive_controller_tick(struct squib_adaptive_controller *ctrl);
SQUIB_API enum squib_tracking_granule
squib_adaptive_controller_tick_at(struct squib_adaptive_controller *ctrl, uint64_t now_ns);

/*
 * Back to COARSE with zeroed counters and a fresh window. Only at a clean
 * checkpoint: a Diff save has just harvested the region's bits and the
 * tracking session starts over (upstream: "ramping back up requires a clean
 * checkpoint"). Called at any other time it throws away the hot-block
 * evidence. Upstream has no such call.
 */
SQUIB_API void squib_adaptive_controller_reset_to_coarse(struct squib_adaptive_controller *ctrl);

/* ==== squib_tracked_region ================================================ */

/*
 * One RAM region under dirty tracking: a bitmap at the current granule plus a
 * controller fed by mark_dirty. Coarse is SQUIB_TRACKING_PAGE_COARSE, fine is
 * the host page; the region starts coarse and tick_adaptive() steps it down.
 *
 * Switching granule without losing a bit. Upstream swaps in a new bitmap after
 * folding the old one into it; a vCPU that fetched the old bitmap just before
 * the swap sets its bit there after the fold, and the bit is gone (§8.5,
 * §17 item 7). Here each bitmap is a generation with an in-flight counter. A
 * marker announces itself on the active generation, re-checks that it is
 * still active (else it backs off and retries), sets its bit and leaves. The
 * switcher publishes the new generation, waits until the old one has no
 * marker in flight, and only then moves the old bits over with an OR. A
 * marker either got in before that wait (the fold sees its bit) or finds,
 * re-checking, that it came too late (it marks the new generation). The two
 * generations (coarse and fine) are reused, never freed before the region, so
 * a marker holding a stale pointer touches live memory. The argument is
 * spelled out in src/dirty.c.
 *
 * Thread-safety: mark_dirty, mark_range, granule and page_size are lock-free
 * (a marker only retries while a switch is being published) and may run from
 * any number of vCPU or device threads. tick_adaptive, harvest, merge and
 * reset_after_checkpoint serialise on an internal mutex and may block for as
 * long as an in-flight marker takes to finish one bit. _free needs exclusive
 * access.
 */
struct squib_tracked_region;

/*
 * Test hook, like squib_io_hooks: a mark calls in_marker_window(ctx, step)
 * at the two points where upstream's design (or a half-done fix) loses a
 * bit, so that a stress test can stretch them (yield, sleep) and make
 * switches land inside. Production passes NULL.
 */
enum squib_dirty_marker_step {
	SQUIB_DIRTY_MARKER_LOADED = 0, /* read the active bitmap, not yet announced in it */
	SQUIB_DIRTY_MARKER_JOINED,     /* announced and re-checked; bit not yet set */
	/*
	 * Bit set, not yet acted on. Called by the fault tracker (squib/track.h)
	 * between marking a page and granting write on it, never by the region.
	 */
	SQUIB_DIRTY_MARKER_MARKED,
};

struct squib_dirty_hooks {
	void *ctx;
	void (*in_marker_window)(void *ctx, enum squib_dirty_marker_step step);
};

struct squib_tracked_region_options {
	uint32_t step_down_threshold;
	const struct squib_dirty_clock *clock; /* NULL: CLOCK_MONOTONIC */
	const struct squib_dirty_hooks *hooks; /* NULL: none; copied */
};

#define SQUIB_TRACKED_REGION_OPTIONS_INIT {SQUIB_DEFAULT_STEP_DOWN_THRESHOLD, NULL, NULL}

/*
 * Region over [ram_start, ram_start + ram_size), coarse, with a controller of
 * one block per coarse page. opts NULL means SQUIB_TRACKED_REGION_OPTIONS_INIT.
 * Errors are those of squib_dirty_bitmap_new, plus SQUIB_E_INVALID_PATH when
 * the host page cannot serve as the fine granule.
 */
SQUIB_API int squib_tracked_region_new(uint64_t ram_start, uint64_t ram_size,
				       const struct squib_tracked_region_options *opts,
				       struct squib_tracked_region **out,
				       struct squib_error_detail *d);
SQUIB_API void squib_tracked_region_free(struct squib_tracked_region *r);

SQUIB_API uint64_t squib_tracked_region_ram_start(const struct squib_tracked_region *r);
SQUIB_API uint64_t squib_tracked_region_ram_size(const struct squib_tracked_region *r);
/* Granule of the active bitmap, and its page size. */
SQUIB_API enum squib_tracking_granule
squib_tracked_region_granule(const struct squib_tracked_region *r);
SQUIB_API uint64_t squib_tracked_region_page_size(const struct squib_tracked_region *r);

/*
 * The vCPU fault path: count a fault on the 2 MiB block holding addr (at any
 * granule, so the counters keep their meaning after step-down, and even when
 * the bit was already set), then set the bit in the active bitmap. True when
 * the bit went from 0 to 1; false, with no fault counted, for an address
 * outside the region.
 */
SQUIB_API bool squib_tracked_region_mark_dirty(struct squib_tracked_region *r, uint64_t addr);

/* set_range on the active bitmap, for writes the VMM makes; counts no fault. */
SQUIB_API uint64_t squib_tracked_region_mark_range(struct squib_tracked_region *r, uint64_t addr,
						   uint64_t len);

/*
 * Tick the controller; if it now wants a different granule than the active
 * bitmap has, build (once; it is kept) a bitmap at that granule and switch to
 * it losslessly. *granule (may be NULL) receives the active granule. Returns
 * 0, or the error of building the bitmap, in which case tracking goes on at
 * the old granule and the next tick tries again.
 */
SQUIB_API int squib_tracked_region_tick_adaptive(struct squib_tracked_region *r,
						 enum squib_tracking_granule *granule,
						 struct squib_error_detail *d);

/*
 * Checkpoint harvest: drain the active bitmap into dst, a caller-owned bitmap
 * over the same range at any page size (squib_dirty_bitmap_drain_merge), so
 * dst is a stable view to write a Diff from. Pages marked meanwhile stay in
 * the region for the next harvest. If the save fails, give the bits back
 * with squib_tracked_region_merge(r, dst).
 */
SQUIB_API int squib_tracked_region_harvest(struct squib_tracked_region *r,
					   struct squib_dirty_bitmap *dst,
					   struct squib_error_detail *d);

/* OR src (same range, any page size) into the active bitmap. */
SQUIB_API int squib_tracked_region_merge(struct squib_tracked_region *r,
					 const struct squib_dirty_bitmap *src,
					 struct squib_error_detail *d);

/*
 * After a clean checkpoint (the harvested Diff is durable): reset the
 * controller to COARSE and switch the bitmap back to coarse. Bits marked since
 * the harvest are folded into the coarse bitmap, widened to their 2 MiB block,
 * so even a misplaced call loses nothing; it only over-approximates.
 */
SQUIB_API int squib_tracked_region_reset_after_checkpoint(struct squib_tracked_region *r,
							  struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_DIRTY_H */
