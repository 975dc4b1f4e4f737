/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dirty tracking with mprotect(PROT_READ) and a SIGSEGV handler: the portable
 * analogue of upstream's hv_vm_protect scheme (upstream-crate.md §8.1), with
 * squib_tracked_region's adaptive 2 MiB -> host-page granule.
 *
 * The invariant everything rests on: a writable tracking unit has its dirty
 * bit set. The handler sets the bit *before* granting write on the unit, and
 * harvest takes the bits and re-protects their units in a window in which no
 * handler grants anything.
 *
 * The window (per region, Dekker's pattern as in src/dirty.c):
 *
 *   handler                                  harvest / stop
 *   H1 slot->inflight += 1      (seq_cst)    W1 range->busy = 1           (seq_cst)
 *   H2 range still in the slot? (seq_cst)    W2 wait slot->inflight == 0  (seq_cst)
 *   H3 busy?                    (seq_cst)    W3 drain the bits, mprotect their units
 *      yes: inflight -= 1, yield, return        PROT_READ (stop: all PROT_READ|WRITE)
 *           (the write re-faults)            W4 range->busy = 0 (harvest only)
 *   H4 mark the bit, grant write on its unit
 *   H5 slot->inflight -= 1      (release)
 *
 * Either H3 reads busy = 1, or W2 sees the handler's H1 and waits for H5. So
 * no unit becomes writable between W1 and W4: W3 leaves every unit it drained
 * protected, and every unit still writable after W3 kept its bit (granted
 * before W1 and not drained). A write after W3 faults and is marked for the
 * next round. The bit a handler sets is never coarser than its grant is
 * wide: the handler reads the unit size *after* marking, and a granule switch
 * folds the old bits into the new bitmap widened (see squib_tracked_region).
 */
#include <squib/track.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../track_internal.h"

_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2, "the handler needs lock-free pointers");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "the handler needs lock-free 64-bit atomics");

/*
 * Harvest re-protects dirty units one mprotect per run; past this many runs
 * one mprotect of the whole region is cheaper (and it merges the VMAs that
 * fine-grained grants split, which keeps the process under vm.max_map_count).
 */
#define MAX_PROTECT_RUNS 256

/* One region under tracking: what the handler reads. Immutable but for busy. */
struct fault_range {
	uintptr_t start;
	uintptr_t end;
	uint64_t gpa;
	struct squib_tracked_region *region;
	struct squib_dirty_hooks hooks; /* tests stretch the mark-to-grant window */
	_Atomic int busy;		/* a harvest or stop window: grant nothing */
};

/* ==== the registry: the library's one global mutable state ================= */

struct fault_slot {
	_Atomic(struct fault_range *) range;
	/* Filters read before entering; the authoritative range is range's own. */
	_Atomic uintptr_t start;
	_Atomic uintptr_t end;
	_Atomic uint64_t inflight; /* handlers inside this slot */
};

/* A range stopped lately: a fault inside one may have raced the stop. */
struct stopped_range {
	_Atomic uintptr_t start;
	_Atomic uintptr_t end;
};

static struct {
	struct fault_slot slot[SQUIB_FAULT_MAX_RANGES];
	/*
	 * The action ours replaced. Two buffers: a re-install (someone replaced
	 * ours, see install_handler) fills the idle one, then publishes it, so a
	 * handler still running with the other reads a stable copy.
	 */
	struct sigaction prev_buf[2];
	_Atomic(const struct sigaction *) previous;
	/* The last SQUIB_FAULT_MAX_RANGES stopped ranges, a ring indexed by stops. */
	struct stopped_range stopped[SQUIB_FAULT_MAX_RANGES];
	_Atomic uint64_t stops;
	pthread_mutex_t lock; /* registration only; the handler never takes it */
} registry = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Per thread, the last fault retried because it found no range (see forward_or_retry). */
struct retried {
	uintptr_t addr;
	uint64_t stops;
};

/* initial-exec: the first touch of the TLS block must not call malloc in a handler. */
static __thread __attribute__((tls_model("initial-exec"))) struct retried last_retry;

static void spin_until_idle(_Atomic uint64_t *inflight)
{
	for (unsigned int spins = 0; atomic_load_explicit(inflight, memory_order_seq_cst); spins++)
		if (spins >= 64)
			sched_yield(); /* the handler may be preempted inside its window */
}

/* ==== the handler ========================================================== */

/* Grant write on the unit holding addr: the active granule's page, clipped to the range. */
static int grant_unit(struct fault_range *r, uintptr_t addr)
{
	uint64_t unit = squib_tracked_region_page_size(r->region);
	uintptr_t lo = r->start + ((addr - r->start) & ~(uintptr_t)(unit - 1));
	uintptr_t hi = r->end - lo > unit ? lo + unit : r->end;

	return mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE);
}

/*
 * Mark and grant. If the kernel refuses the split a page-sized grant needs
 * (ENOMEM at vm.max_map_count), widen to the 2 MiB block, then to the whole
 * range, marking each wider unit first so the invariant holds.
 */
static bool mark_and_grant(struct fault_range *r, uintptr_t addr)
{
	uint64_t gpa = r->gpa + (addr - r->start);
	uintptr_t block =
	    r->start + ((addr - r->start) & ~(uintptr_t)(SQUIB_TRACKING_PAGE_COARSE - 1));
	uintptr_t block_end = r->end - block > SQUIB_TRACKING_PAGE_COARSE
				  ? block + SQUIB_TRACKING_PAGE_COARSE
				  : r->end;

	squib_tracked_region_mark_dirty(r->region, gpa);
	if (r->hooks.in_marker_window)
		r->hooks.in_marker_window(r->hooks.ctx, SQUIB_DIRTY_MARKER_MARKED);
	if (grant_unit(r, addr) == 0)
		return true;
	squib_tracked_region_mark_range(r->region, r->gpa + (block - r->start), block_end - block);
	if (mprotect((void *)block, block_end - block, PROT_READ | PROT_WRITE) == 0)
		return true;
	squib_tracked_region_mark_range(r->region, r->gpa, r->end - r->start);
	return mprotect((void *)r->start, r->end - r->start, PROT_READ | PROT_WRITE) == 0;
}

enum verdict { NOT_OURS, HANDLED, RETRY };

/* H1..H5 on one slot. */
static enum verdict try_slot(struct fault_slot *s, uintptr_t addr)
{
	struct fault_range *r = atomic_load_explicit(&s->range, memory_order_acquire);
	enum verdict v = NOT_OURS;

	if (!r || addr < atomic_load_explicit(&s->start, memory_order_relaxed) ||
	    addr >= atomic_load_explicit(&s->end, memory_order_relaxed))
		return NOT_OURS;
	atomic_fetch_add_explicit(&s->inflight, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&s->range, memory_order_seq_cst) == r && addr >= r->start &&
	    addr < r->end) {
		if (atomic_load_explicit(&r->busy, memory_order_seq_cst))
			v = RETRY;
		else
			v = mark_and_grant(r, addr) ? HANDLED : NOT_OURS;
	}
	atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_release);
	return v;
}

/*
 * The default action for SIGSEGV, as if ours had never been installed. A
 * faulting access (SIG_IGN cannot ignore one either) just returns: it faults
 * again and the kernel kills the process with SIGSEGV at the right address.
 * A signal sent with kill/raise is raised again, to be delivered on return.
 */
static void default_action(int sig, const siginfo_t *info)
{
	struct sigaction dfl = {.sa_handler = SIG_DFL};

	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
	if (info->si_code <= 0)
		raise(sig);
}

/* Run the handler that was there before ours, as the kernel would have. */
static void forward(int sig, siginfo_t *info, void *uctx)
{
	const struct sigaction *p = atomic_load_explicit(&registry.previous, memory_order_acquire);

	if (!p)
		default_action(sig, info);
	else if (p->sa_flags & SA_SIGINFO)
		p->sa_sigaction(sig, info, uctx);
	else if (p->sa_handler != SIG_DFL && p->sa_handler != SIG_IGN)
		p->sa_handler(sig);
	else
		default_action(sig, info);
}

static bool recently_stopped(uintptr_t addr)
{
	for (unsigned int i = 0; i < SQUIB_FAULT_MAX_RANGES; i++) {
		const struct stopped_range *s = &registry.stopped[i];

		if (addr >= atomic_load_explicit(&s->start, memory_order_relaxed) &&
		    addr < atomic_load_explicit(&s->end, memory_order_relaxed))
			return true;
	}
	return false;
}

/*
 * In no range now, but maybe ours: the access faulted on a protected page
 * and, before this handler looked, a stop made the page writable and
 * unregistered its range. Such a fault is retried once; if the same address
 * faults again with no stop in between, it is real. Only addresses in a
 * recently stopped range qualify, so everyone else's faults go straight on.
 */
static void forward_or_retry(int sig, siginfo_t *info, void *uctx, uintptr_t addr)
{
	uint64_t stops = atomic_load_explicit(&registry.stops, memory_order_acquire);

	if (info->si_code == SEGV_ACCERR && recently_stopped(addr) &&
	    (last_retry.addr != addr || last_retry.stops != stops)) {
		last_retry.addr = addr;
		last_retry.stops = stops;
		return;
	}
	last_retry.addr = 0;
	forward(sig, info, uctx);
}

static void on_segv(int sig, siginfo_t *info, void *uctx)
{
	int saved_errno = errno; /* mprotect and sched_yield may change it */
	uintptr_t addr = (uintptr_t)info->si_addr;
	enum verdict v = NOT_OURS;

	/* si_code <= 0: sent by kill/raise/sigqueue, whatever si_addr says. */
	for (unsigned int i = 0; info->si_code > 0 && v == NOT_OURS && i < SQUIB_FAULT_MAX_RANGES;
	     i++)
		v = try_slot(&registry.slot[i], addr);
	if (v == RETRY)
		syscall(SYS_sched_yield); /* let the harvest finish its window */
	else if (v == NOT_OURS)
		forward_or_retry(sig, info, uctx, addr);
	errno = saved_errno;
}

/* ==== registration ========================================================= */

/*
 * Make ours the SIGSEGV action, chaining to the current one, unless it
 * already is. Checked at every start rather than once: a test framework
 * or a library may have put its own handler back since (cmocka does around
 * every test), and then ours must go on top again. Caller holds registry.lock.
 */
static int install_handler(struct squib_error_detail *d)
{
	struct sigaction sa = {.sa_sigaction = on_segv,
			       .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART};
	const struct sigaction *prev =
	    atomic_load_explicit(&registry.previous, memory_order_relaxed);
	struct sigaction *idle =
	    prev == &registry.prev_buf[0] ? &registry.prev_buf[1] : &registry.prev_buf[0];

	/* Read the action we replace first, so it is in place before the first forward. */
	if (sigaction(SIGSEGV, NULL, idle))
		return squib_fail_errno(d, SQUIB_E_IO, errno);
	if ((idle->sa_flags & SA_SIGINFO) && idle->sa_sigaction == on_segv)
		return 0;
	atomic_store_explicit(&registry.previous, idle, memory_order_release);
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL))
		return squib_fail_errno(d, SQUIB_E_IO, errno);
	return 0;
}

static bool slot_overlaps(const struct fault_slot *s, const struct fault_range *r)
{
	struct fault_range *o = atomic_load_explicit(&s->range, memory_order_relaxed);

	return o && o->start < r->end && r->start < o->end;
}

/* Caller holds registry.lock. */
static int claim_slot(struct fault_range *r, struct squib_error_detail *d)
{
	struct fault_slot *free_slot = NULL;

	for (unsigned int i = 0; i < SQUIB_FAULT_MAX_RANGES; i++) {
		struct fault_slot *s = &registry.slot[i];

		if (slot_overlaps(s, r))
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "host range 0x%" PRIxPTR "..0x%" PRIxPTR
					      " is already tracked by another fault tracker",
					      r->start, r->end);
		if (!free_slot && !atomic_load_explicit(&s->range, memory_order_relaxed))
			free_slot = s;
	}
	if (!free_slot)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "fault tracker registry is full (%u ranges)",
				      SQUIB_FAULT_MAX_RANGES);
	atomic_store_explicit(&free_slot->start, r->start, memory_order_relaxed);
	atomic_store_explicit(&free_slot->end, r->end, memory_order_relaxed);
	atomic_store_explicit(&free_slot->range, r, memory_order_release);
	return 0;
}

static int register_range(struct fault_range *r, struct squib_error_detail *d)
{
	int rc;

	pthread_mutex_lock(&registry.lock);
	rc = install_handler(d);
	if (!rc)
		rc = claim_slot(r, d);
	pthread_mutex_unlock(&registry.lock);
	return rc;
}

/* After this returns no handler uses r, and none will. */
static void unregister_range(struct fault_range *r)
{
	pthread_mutex_lock(&registry.lock);
	for (unsigned int i = 0; i < SQUIB_FAULT_MAX_RANGES; i++) {
		struct fault_slot *s = &registry.slot[i];

		if (atomic_load_explicit(&s->range, memory_order_relaxed) != r)
			continue;
		struct stopped_range *ring;
		uint64_t n;

		atomic_store_explicit(&s->range, NULL, memory_order_seq_cst);
		spin_until_idle(&s->inflight);
		n = atomic_load_explicit(&registry.stops, memory_order_relaxed);
		ring = &registry.stopped[n % SQUIB_FAULT_MAX_RANGES];
		atomic_store_explicit(&ring->start, r->start, memory_order_relaxed);
		atomic_store_explicit(&ring->end, r->end, memory_order_relaxed);
		atomic_store_explicit(&registry.stops, n + 1, memory_order_release);
	}
	pthread_mutex_unlock(&registry.lock);
}

/* The slot holding r; the caller keeps r registered meanwhile. */
static struct fault_slot *slot_of(const struct fault_range *r)
{
	for (unsigned int i = 0; i < SQUIB_FAULT_MAX_RANGES; i++)
		if (atomic_load_explicit(&registry.slot[i].range, memory_order_acquire) == r)
			return &registry.slot[i];
	return NULL;
}

/* W1 + W2: from here until close_window no handler grants write in r. */
static void open_window(struct fault_range *r)
{
	struct fault_slot *s = slot_of(r);

	atomic_store_explicit(&r->busy, 1, memory_order_seq_cst);
	if (s)
		spin_until_idle(&s->inflight);
}

static void close_window(struct fault_range *r)
{
	atomic_store_explicit(&r->busy, 0, memory_order_seq_cst);
}

/* ==== the tracker ========================================================== */

struct fault_tracker {
	struct track_map map;
	struct fault_range range[SQUIB_TRACK_MAX_REGIONS];
	/* Per region, host-page bitmaps a harvest drains the region into first. */
	struct track_bits scratch;
};

static int protect(uintptr_t lo, uintptr_t hi, int prot)
{
	return mprotect((void *)lo, hi - lo, prot) ? errno : 0;
}

/* Re-protect the units of the drained pages, run by run, and OR them into dst. */
struct reprotect {
	struct fault_range *r;
	struct squib_dirty_bitmap *dst;
	uint64_t page;
	uint64_t first, len; /* pending run, in host pages from the range's start */
	unsigned int runs;
	bool whole; /* too many runs, or one failed: protect the whole region at the end */
};

static void reprotect_flush(struct reprotect *p)
{
	uintptr_t lo = p->r->start + p->first * p->page;
	uintptr_t hi = lo + p->len * p->page;

	if (!p->len)
		return;
	squib_dirty_bitmap_set_range(p->dst, p->r->gpa + (lo - p->r->start), hi - lo);
	if (!p->whole && (++p->runs > MAX_PROTECT_RUNS || protect(lo, hi, PROT_READ)))
		p->whole = true;
	p->len = 0;
}

static int reprotect_page(void *ctx, uint64_t page)
{
	struct reprotect *p = ctx;

	if (p->len && page == p->first + p->len) {
		p->len++;
		return 0;
	}
	reprotect_flush(p);
	p->first = page;
	p->len = 1;
	return 0;
}

/*
 * W3 for one region. Failing to re-protect the whole region leaves units
 * writable whose bits went to dst; marking the whole region again keeps
 * the invariant (the next round over-reports it) and the error is returned.
 */
static int harvest_range(struct fault_range *r, struct squib_dirty_bitmap *scratch,
			 struct squib_dirty_bitmap *dst)
{
	struct reprotect p = {r, dst, squib_dirty_bitmap_page_size(scratch), 0, 0, 0, false};
	int err = 0;

	squib_tracked_region_harvest(r->region, scratch, NULL); /* same range: cannot fail */
	squib_dirty_bitmap_drain_into(scratch, reprotect_page, &p, NULL);
	reprotect_flush(&p);
	if (p.whole)
		err = protect(r->start, r->end, PROT_READ);
	if (err)
		squib_tracked_region_mark_range(r->region, r->gpa, r->end - r->start);
	return err;
}

static int fault_harvest(void *ctx, struct squib_dirty_bitmap *dst, struct squib_error_detail *d)
{
	struct fault_tracker *f = ctx;
	int first = 0;

	for (size_t i = 0; i < f->map.count; i++) {
		struct fault_range *r = &f->range[i];
		int err;

		/* Tick outside the window: a step-down's fold needs no protection change. */
		squib_tracked_region_tick_adaptive(r->region, NULL, NULL);
		if (track_region_overlap(&f->map.r[i], dst) != TRACK_INSIDE)
			continue;
		open_window(r);
		err = harvest_range(r, f->scratch.bm[i], dst);
		close_window(r);
		if (err && !first)
			first = err;
	}
	return first ? squib_fail_errno(d, SQUIB_E_IO, first) : 0;
}

static int fault_give_back(void *ctx, const struct squib_dirty_bitmap *src,
			   struct squib_error_detail *d)
{
	struct fault_tracker *f = ctx;

	(void)d;
	/*
	 * Through the scratch bitmap (idle between harvests): the region's own
	 * merge wants an identical range. mark_range counts no fault, so given
	 * back pages do not push the region towards step-down.
	 */
	for (size_t i = 0; i < f->map.count; i++) {
		struct squib_dirty_bitmap *s = f->scratch.bm[i];

		if (track_region_overlap(&f->map.r[i], src) != TRACK_INSIDE)
			continue;
		track_or_overlap(s, src);
		squib_tracked_region_merge(f->range[i].region, s, NULL);
		squib_dirty_bitmap_clear(s);
	}
	return 0;
}

static int fault_reset_after_commit(void *ctx, struct squib_error_detail *d)
{
	struct fault_tracker *f = ctx;

	/*
	 * Back to the coarse granule: a clean checkpoint ends the session that
	 * stepped down. Fine bits set since the harvest are folded in widened,
	 * and the grants they stand for are at most as wide, so nothing is lost.
	 */
	for (size_t i = 0; i < f->map.count; i++) {
		int rc = squib_tracked_region_reset_after_checkpoint(f->range[i].region, d);

		if (rc)
			return rc;
	}
	return 0;
}

/* Writable again, then out of the registry; a fault that raced this is retried (forward_or_retry).
 */
static int disarm(struct fault_range *r)
{
	int err;

	atomic_store_explicit(&r->busy, 1, memory_order_seq_cst);
	err = protect(r->start, r->end, PROT_READ | PROT_WRITE);
	unregister_range(r);
	return err;
}

static int fault_stop(void *ctx, struct squib_error_detail *d)
{
	struct fault_tracker *f = ctx;
	int first = 0;

	for (size_t i = 0; i < f->map.count; i++) {
		int err = disarm(&f->range[i]);

		if (err && !first)
			first = err;
	}
	return first ? squib_fail_errno(d, SQUIB_E_IO, first) : 0;
}

/* Register, then strip write: a write in between is simply not tracked yet. */
static int arm(struct fault_range *r, struct squib_error_detail *d)
{
	int rc = register_range(r, d), err;

	if (rc)
		return rc;
	err = protect(r->start, r->end, PROT_READ);
	if (err) {
		disarm(r);
		return squib_fail_errno(d, SQUIB_E_IO, err);
	}
	return 0;
}

static int fault_start(void *ctx, struct squib_error_detail *d)
{
	struct fault_tracker *f = ctx;

	for (size_t i = 0; i < f->map.count; i++) {
		struct fault_range *r = &f->range[i];
		int rc;

		/* A new session: earlier bits, and a stepped-down granule, are the old one's. */
		squib_tracked_region_reset_after_checkpoint(r->region, NULL);
		squib_tracked_region_harvest(r->region, f->scratch.bm[i], NULL);
		squib_dirty_bitmap_clear(f->scratch.bm[i]);
		atomic_store_explicit(&r->busy, 0, memory_order_relaxed);
		rc = arm(r, d);
		if (rc) {
			while (i--)
				disarm(&f->range[i]);
			return rc;
		}
	}
	return 0;
}

static void fault_free(void *ctx)
{
	struct fault_tracker *f = ctx;

	if (!f)
		return;
	for (size_t i = 0; i < f->map.count; i++)
		squib_tracked_region_free(f->range[i].region);
	track_bits_destroy(&f->scratch);
	free(f);
}

static const struct squib_tracker_ops fault_ops = {
    .name = "fault",
    .start = fault_start,
    .harvest = fault_harvest,
    .give_back = fault_give_back,
    .reset_after_commit = fault_reset_after_commit,
    .stop = fault_stop,
    .free = fault_free,
};

static int build_ranges(struct fault_tracker *f, const struct squib_tracked_region_options *opts,
			struct squib_error_detail *d)
{
	for (size_t i = 0; i < f->map.count; i++) {
		const struct squib_guest_region *g = &f->map.r[i];
		struct fault_range *r = &f->range[i];
		int rc = squib_tracked_region_new(g->gpa, g->size, opts, &r->region, d);

		if (rc)
			return rc;
		r->start = (uintptr_t)g->hva;
		r->end = r->start + g->size;
		r->gpa = g->gpa;
		if (opts && opts->hooks)
			r->hooks = *opts->hooks;
		atomic_init(&r->busy, 0);
	}
	return 0;
}

int squib_tracker_fault_new(const struct squib_memory_map *map,
			    const struct squib_tracked_region_options *opts,
			    struct squib_tracker **out, struct squib_error_detail *d)
{
	struct fault_tracker *f;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "out is NULL");
	*out = NULL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return squib_fail(d, SQUIB_E_NOMEM);
	rc = track_map_init(&f->map, map, true, d);
	if (!rc)
		rc = track_bits_init(&f->scratch, &f->map, d);
	if (!rc)
		rc = build_ranges(f, opts, d);
	if (rc) {
		fault_free(f);
		return rc;
	}
	return squib_tracker_new(&fault_ops, f, map, out, d);
}

static struct fault_tracker *fault_of(const struct squib_tracker *t)
{
	return track_ops(t) == &fault_ops ? squib_tracker_ctx(t) : NULL;
}

int squib_tracker_fault_tick(struct squib_tracker *t, struct squib_error_detail *d)
{
	struct fault_tracker *f = fault_of(t);

	if (!f)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "not a fault tracker");
	for (size_t i = 0; i < f->map.count; i++) {
		int rc = squib_tracked_region_tick_adaptive(f->range[i].region, NULL, d);

		if (rc)
			return rc;
	}
	return 0;
}

enum squib_tracking_granule squib_tracker_fault_granule(const struct squib_tracker *t, size_t i)
{
	struct fault_tracker *f = fault_of(t);

	if (!f || i >= f->map.count)
		return SQUIB_GRANULE_COARSE;
	return squib_tracked_region_granule(f->range[i].region);
}
