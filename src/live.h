/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live memory capture for squib_save's live mode: a platform hook (internal,
 * not installed). The portable core (src/save.c) calls it through this header
 * only; Linux implements it in src/linux/live.c with userfaultfd.
 *
 * Guest RAM is write-protected with a userfaultfd in synchronous mode (a
 * write waits for our handler thread), and a *view* of the same size per
 * region is registered with the same userfaultfd for missing faults. The
 * view is guest memory at the pause instant, filled on demand:
 *
 *   begin (the guest runs)   register and protect all RAM, start the handler;
 *                            a guest write only lifts its page's protection
 *   freeze (the guest is     protect again just the pages that lost their
 *   paused)                  protection since begin: PAGEMAP_SCAN finds them
 *                            (present or swapped, no uffd-wp bit), so the
 *                            pause costs what the guest wrote meanwhile, not
 *                            its RAM size (without PAGEMAP_SCAN, Linux < 6.7,
 *                            all RAM is protected again)
 *   after the freeze         a guest write first: the handler copies its small
 *                            batch (64 KiB) into the view (UFFDIO_COPY), then lifts
 *                            the protection, so the write lands after the copy;
 *                            a Full's writer claims each 2 MiB block (the claim
 *                            path of squib_live_populated): pages still protected
 *                            are written straight from guest RAM, unchanged since,
 *                            those copied first from the view; a guest write to
 *                            the claimed block waits until the block is written,
 *                            then the release lifts the block's protection. Other
 *                            readers (a Diff, a store sink) read the view: a
 *                            missing page's 2 MiB batch is copied in on demand
 *
 * A page written through the claim path is never in the view: each page is
 * read once (a view read of one fails the capture rather than loop).
 *
 * Which pages had data at the pause: exactly those still protected when the
 * handler reaches them (pagemap's uffd-wp bit), since the freeze protected
 * every page with data and only the handler lifts the bit, after the copy.
 * Empty pages get no bit (no WP_UNPOPULATED markers: their cost grows with
 * RAM size) and are served as zeros, whatever the guest put there later.
 * shmem and hugetlbfs get markers for empty pages anyway: copied, also right.
 *
 * KVM's own writes (the vCPU through its page tables, kvmclock, steal time)
 * are get_user_pages faults on the same host pages: the userfaultfd is opened
 * without UFFD_USER_MODE_ONLY so that they wait for the handler too.
 *
 * Memory served by another userfaultfd (a lazy restore's pager, the uffd-wp
 * dirty tracker, an external handler) cannot be registered twice: begin fails
 * with SQUIB_E_BUSY and the errno EBUSY, and the caller saves stop-the-world.
 * A page the guest discards (MADV_DONTNEED) during the save reads as zeros in
 * the image, as in guest RAM.
 *
 * Thread-safety: begin, freeze, view, error and end on one thread (the
 * save's); the handler thread is internal.
 */
#ifndef SQUIB_LIVE_H
#define SQUIB_LIVE_H

#include <stdint.h>

#include <squib/error.h>
#include <squib/memfile.h>

struct squib_live;

struct squib_live_stats {
	uint64_t wp_faults;	     /* guest writes that waited for the handler */
	uint64_t view_faults;	     /* writer reads that waited for the handler */
	uint64_t pages_copied;	     /* guest pages copied into the view */
	uint64_t pages_copied_on_wp; /* of which because the guest wrote them first */
	uint64_t pages_zero;	     /* view pages served as zeros (empty at the pause) */
	uint64_t pages_direct;	     /* written straight from guest RAM (the claim path) */
	uint64_t wp_deferred;	     /* guest writes left waiting for the writer's block */
	uint64_t max_wp_wait_ns;     /* the longest a guest write waited (handler side) */
};

/*
 * While the guest runs: protect the regions, map their views, start the
 * handler. 0; SQUIB_E_BUSY (errno EBUSY) when another userfaultfd serves the
 * memory; SQUIB_E_IO with the errno (no userfaultfd, memory uffd-wp cannot
 * protect); SQUIB_E_NOMEM. Nothing is left protected or mapped on failure.
 */
int squib_live_begin(const struct squib_memfile_source_region *regions, uint32_t count,
		     struct squib_live **out, struct squib_error_detail *d);

/* With the VM paused: from here on the view is this instant's. 0, or the
 * error (end the capture and save stop-the-world). */
int squib_live_freeze(struct squib_live *l, struct squib_error_detail *d);

/* The regions with host = the view: what the memory-file writer reads. */
const struct squib_memfile_source_region *squib_live_view(const struct squib_live *l);

/* After the freeze: the pages that had data then (as view addresses), for
 * squib_memfile_write_full_walk; NULL when unknown (Linux < 6.7: read all). */
struct squib_memfile_populated;
const struct squib_memfile_populated *squib_live_populated(const struct squib_live *l);

/* 0, or the handler's first error (the view may then be wrong: discard the image). */
int squib_live_error(const struct squib_live *l, struct squib_error_detail *d);

/*
 * Lift every protection left (a save that stopped halfway leaves some), stop
 * the handler, unmap the views, free. Guest threads waiting on a write are
 * released. st (may be NULL) gets the counters. NULL l is a no-op.
 */
void squib_live_end(struct squib_live *l, struct squib_live_stats *st);

#endif
