/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/pager.h - lazy restore: an in-process userfaultfd pager (Linux).
 *
 * Guest RAM is private anonymous memory the caller maps (unpopulated) and
 * hands to squib_pager_start, which registers it with a userfaultfd in
 * MISSING mode (UFFD_FEATURE_EVENT_REMOVE requested) and starts one pager
 * thread. The thread polls the uffd and an eventfd (shutdown) and resolves
 * every missing-page fault from a page source:
 *
 *   absent page  UFFDIO_ZEROPAGE over the absent run around the fault
 *                (inside the batch window); the source is not read
 *   present page one source read + one UFFDIO_COPY of the contiguous present
 *                run holding the fault, inside the window of batch_bytes
 *                (default 64 KiB) aligned to the region start
 *
 * EEXIST (a page is already there, e.g. two threads faulted on it) is fine:
 * the copy continues after that page and the faulting range is woken
 * (UFFDIO_WAKE). EAGAIN (a remove event is queued) makes the thread drain
 * the uffd's events and retry. UFFD_EVENT_REMOVE (madvise(MADV_DONTNEED) on
 * the memory) makes the range missing again; its next faults are served
 * from the source again, so the memory keeps reading as the snapshot (not
 * as zeros: a balloon that wants zeros must not use this pager).
 *
 * The thread runs until squib_pager_stop, also once every page is present
 * (a later remove makes pages missing again). squib_pager_stats().complete
 * says whether every page is currently present.
 *
 * Beyond faults (see "prefetch, record, background fill" below): the owner
 * can install pages before they are touched (squib_pager_prefetch, e.g. a
 * working set recorded with options.record on an earlier restore), and the
 * thread can fill the remaining pages while no fault waits
 * (options.background_fill). Faults are always served first.
 *
 * Source errors: the failing fault is left unresolved (its thread stays
 * blocked), the error is counted (stats.errors) and the first one is kept
 * (squib_pager_error); the pager keeps serving other faults. The owner must
 * treat the memory as lost and stop the pager: stop unregisters the memory
 * and closes the uffd, which wakes every blocked thread; from then on the
 * memory is plain anonymous memory and unserved pages read as zeros.
 * Never use guest memory after its pager failed except to tear it down.
 * A background-fill failure is such an error too (and ends the fill); a
 * failed prefetch is only returned to its caller (nothing was lost).
 *
 * Thread-safety: start, stop and free are called by the owner, one at a
 * time. squib_pager_stats, squib_pager_error and squib_pager_recorded may
 * be called from any thread at any time before squib_pager_free.
 * squib_pager_prefetch(_all) may be called from any number of threads at
 * once, concurrently with faults, but must have returned before stop or
 * free is called. The memory may be read and written by any number of
 * threads at once while the pager runs. A page source's present and read
 * are called from the pager thread and from prefetching threads, but never
 * concurrently (one lock per pager); release only from squib_pager_free.
 */
#ifndef SQUIB_PAGER_H
#define SQUIB_PAGER_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/error.h>
#include <squib/page_source.h>
#include <squib/workset.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Page sources (what the pager reads from) are in squib/page_source.h. */

/* ---- the pager ------------------------------------------------------------ */

/* One mapping to serve: `host` private anonymous, size bytes, not yet touched;
 * its first byte is source page first_page. */
struct squib_pager_region {
	void *host;
	uint64_t size;
	uint64_t first_page;
};

struct squib_pager_options {
	/* Largest batch per fault in bytes (0: 64 KiB); rounded down to whole
	 * source pages, at least one. The window is aligned to it. */
	uint64_t batch_bytes;
	/* Remember every fault-driven install, in order (squib_pager_recorded). */
	bool record;
	/* While no fault waits, install the remaining pages in growing chunks:
	 * one pass over the regions in page order; pages removed behind it
	 * stay lazy. */
	bool background_fill;
	/* Largest background chunk in bytes (0: 2 MiB; at most 64 MiB, at
	 * least one page); chunks start at one batch (or this, if smaller)
	 * and double after each chunk. */
	uint64_t fill_max_bytes;
	/* Once every page is present and nothing is pending, unregister the
	 * memory and end the thread ("until every page is present"): from then
	 * on it is ordinary anonymous memory - a later MADV_DONTNEED reads
	 * zeros, as anonymous memory does, instead of the snapshot again - and
	 * the VM's faults no longer go through userfaultfd. With background_fill
	 * it makes a restore that finishes on its own. Not for an attached uffd
	 * (the registrations are its creator's): SQUIB_E_INVALID_ARGUMENT. */
	bool release_when_complete;
};

/* Service-latency histogram bucket count (see squib_pager_stats). */
#define SQUIB_PAGER_HIST_BUCKETS 160

/* pages_copied, pages_zeroed, bytes_read and batches count every install,
 * whatever drove it; pages_prefetched and pages_filled say how many of the
 * installed pages came from prefetch and background fill; faults counts
 * fault messages only. */
struct squib_pager_stats {
	uint64_t faults;	 /* page-fault messages served (not failed) */
	uint64_t pages_copied;	 /* installed by UFFDIO_COPY */
	uint64_t pages_zeroed;	 /* installed by UFFDIO_ZEROPAGE */
	uint64_t bytes_read;	 /* from the source */
	uint64_t batches;	 /* source reads (one per copied run or chunk) */
	uint64_t pages_existing; /* EEXIST: already present */
	uint64_t eagain;	 /* retries after EAGAIN */
	uint64_t removes;	 /* UFFD_EVENT_REMOVE events */
	uint64_t errors;	 /* failed source reads or ioctls (faults, fill) */
	uint64_t pages_present;	 /* now, as far as the pager knows */
	uint64_t page_count;
	bool complete;		   /* pages_present == page_count, every install counted */
	uint64_t pages_prefetched; /* installed by squib_pager_prefetch(_all) */
	uint64_t pages_filled;	   /* installed by the background fill */
	bool fill_done;		   /* the background fill finished its pass (or is off) */
	bool released;		   /* release_when_complete happened: the thread has ended */
	/* Service time per fault (message read -> resolved), microseconds. */
	double median_us, p99_us, max_us;
};

struct squib_pager;

/*
 * Register regions[0..n) (copied; page-aligned, multiples of the source
 * page) and start the pager thread. The pager owns src from here on, also
 * on failure (src.ops->release is called). opts may be NULL. Errors:
 * SQUIB_E_INVALID_ARGUMENT (geometry), SQUIB_E_IO with the errno when
 * userfaultfd is not available (ENOSYS, EPERM) or refuses a feature or
 * registration, SQUIB_E_NOMEM.
 */
SQUIB_API int squib_pager_start(const struct squib_pager_region *regions, uint32_t n,
				struct squib_page_source src,
				const struct squib_pager_options *opts, struct squib_pager **out,
				struct squib_error_detail *d);

/*
 * Serve a userfaultfd another process created and registered (the external
 * handler of squib/uffd_remote.h; Firecracker's Uffd backend). Its creator
 * did UFFDIO_API with UFFD_FEATURE_EVENT_REMOVE and registered every region
 * in MISSING mode. regions[i].host are addresses in the creator's address
 * space: they are never dereferenced here (UFFDIO_COPY and UFFDIO_ZEROPAGE
 * write into the uffd's own mm). The pager owns uffd (closed by stop, or
 * here on failure) and src; stop does not unregister (the creator owns the
 * registrations). Once the creator's process is gone the ioctls fail
 * (ESRCH): the owner stops the pager when its peer hangs up.
 */
SQUIB_API int squib_pager_attach(int uffd, const struct squib_pager_region *regions, uint32_t n,
				 struct squib_page_source src,
				 const struct squib_pager_options *opts, struct squib_pager **out,
				 struct squib_error_detail *d);

/* Stop and join the thread, unregister the memory (not for an attached
 * uffd), close the fds (idempotent). */
SQUIB_API void squib_pager_stop(struct squib_pager *p);

/* Stop, release the source, free. NULL is a no-op. The memory is not unmapped. */
SQUIB_API void squib_pager_free(struct squib_pager *p);

/* A snapshot of the counters (consistent with each other). */
SQUIB_API void squib_pager_stats(const struct squib_pager *p, struct squib_pager_stats *out);

/* 0, or the first error the pager met (its detail into d, may be NULL). */
SQUIB_API int squib_pager_error(const struct squib_pager *p, struct squib_error_detail *d);

/* ---- prefetch, record, background fill ------------------------------------ */

/*
 * Install the pages of runs[0..n) now, without waiting for faults (working
 * set prefetch, pre-warm, "fault all"), on the calling thread while the
 * pager thread keeps serving faults. Runs may come in any order, overlap or
 * hold pages already present (skipped); pages no region maps are skipped.
 * Present pages: one source read + one UFFDIO_COPY per contiguous run, in
 * chunks of at most 1 MiB (a fault waits at most one chunk's source read);
 * absent pages: UFFDIO_ZEROPAGE, no read. Installed ranges are woken.
 * EEXIST is fine; EAGAIN (a remove is in flight) is retried for up to about
 * a second, then the chunk is left to faults. *installed (may be NULL): the
 * pages this call installed. Counted in stats.pages_prefetched, never in
 * faults; not recorded. Overlapping and touching runs are merged first, so
 * the cost is O(n log n) plus the pages, never runs x pages; the merged runs
 * keep the order of the first run that touched each. Between chunks (and
 * every 64 Ki pages found present) the stop function, if set, is asked:
 * true ends the prefetch with SQUIB_E_IO, os_errno ECANCELED.
 * Errors: SQUIB_E_INVALID_ARGUMENT (NULL pager, runs NULL with n > 0, a run
 * past the source's pages or overflowing, a stopped pager; nothing is
 * installed then), SQUIB_E_NOMEM, the source's read error, SQUIB_E_MEMORY_IO
 * with the errno of a failed ioctl (ESRCH: an attached uffd's process is
 * gone). A failed prefetch leaves the remaining pages to faults; it is not
 * the pager's error (squib_pager_error) since no memory was lost.
 */
SQUIB_API int squib_pager_prefetch(struct squib_pager *p, const struct squib_ws_run *runs,
				   uint64_t n, uint64_t *installed, struct squib_error_detail *d);

/*
 * Make squib_pager_prefetch(_all) ask stop(ctx) between chunks, so that a
 * long prefetch ends soon after, e.g., a SIGTERM (stop reads a flag the
 * handler set, or polls a signalfd). NULL: never stop. Set it before any
 * prefetch starts; stop is called on the prefetching thread.
 */
SQUIB_API void squib_pager_set_prefetch_stop(struct squib_pager *p, bool (*stop)(void *ctx),
					     void *ctx);

/* Every page of every region (serve --mode all; Firecracker's fault_all). */
SQUIB_API int squib_pager_prefetch_all(struct squib_pager *p, uint64_t *installed,
				       struct squib_error_detail *d);

/*
 * The fault-driven installs so far (options.record), in order, as a working
 * set: the pages each fault installed (its batch, copy or zero run, less
 * pages already there) are a run, merged with the previous run when they
 * continue it; a page installed again after a remove appears again.
 * page_size and page_count are the source's, memory_id is zero (the caller
 * binds it). Prefetched and background-filled pages are not recorded. *out
 * is the caller's (squib_workset_free). Recording stops at
 * SQUIB_WS_MAX_RUNS runs (the prefix is kept). Errors:
 * SQUIB_E_INVALID_ARGUMENT (NULL, or record was off), SQUIB_E_NOMEM (also
 * when the record could not grow: its prefix would be misleading).
 */
SQUIB_API int squib_pager_recorded(const struct squib_pager *p, struct squib_workset *out,
				   struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_PAGER_H */
