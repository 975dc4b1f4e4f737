/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live memory capture for squib_save's live mode (internal, not installed).
 *
 * While the VM is paused, squib_live_begin write-protects every region of
 * guest RAM with a userfaultfd (synchronous write-protect mode: a write
 * waits for our handler) and maps a *view* of the same size per region,
 * registered with the same userfaultfd for missing faults. The view is the
 * guest memory of the pause instant, filled on demand by one handler thread:
 *
 *   the writer reads a view page    missing fault: the handler copies its batch
 *                                   (2 MiB) from guest RAM, which is still
 *                                   write-protected and so unchanged, into the
 *                                   view (UFFDIO_COPY; pages that were empty at
 *                                   the pause get the zero page), then lifts the
 *                                   write protection of those guest pages
 *   the guest writes a page first   write-protect fault: the handler copies the
 *                                   page's small batch (64 KiB) into the view
 *                                   the same way before lifting the protection,
 *                                   so the write then lands in guest RAM only
 *
 * A page is copied once (a done bit per host page, the handler's alone), always
 * before its protection goes, so the view holds exactly the pause instant. The
 * memory-file writer reads the view instead of guest RAM and never knows.
 *
 * "Empty at the pause" comes from /proc/self/pagemap taken at begin (private
 * anonymous memory only: elsewhere every page is copied). Such a page is not
 * protected (no WP_UNPOPULATED markers: their cost grows with RAM size), so the
 * guest may fill it freely - the view serves zeros for it whatever happens.
 *
 * KVM's own writes (the vCPU through its page tables, kvmclock, steal time)
 * are get_user_pages faults on the same host pages: the userfaultfd is opened
 * without UFFD_USER_MODE_ONLY so that they wait for the handler too.
 *
 * Memory served by another userfaultfd (a lazy restore's pager, the uffd-wp
 * dirty tracker, an external handler) cannot be registered twice: begin fails
 * with SQUIB_E_BUSY and the errno EBUSY, and the caller saves stop-the-world.
 *
 * Thread-safety: begin, view, finish and end on one thread (the save's); the
 * handler thread is internal.
 */
#ifndef SQUIB_LINUX_LIVE_H
#define SQUIB_LINUX_LIVE_H

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
	uint64_t max_wp_wait_ns;     /* the longest a guest write waited (handler side) */
};

/*
 * With the VM paused: protect the regions, map their views, start the
 * handler. 0; SQUIB_E_BUSY (errno EBUSY) when another userfaultfd serves the
 * memory; SQUIB_E_IO with the errno (no userfaultfd, memory uffd-wp cannot
 * protect); SQUIB_E_NOMEM. Nothing is left protected or mapped on failure.
 */
int squib_live_begin(const struct squib_memfile_source_region *regions, uint32_t count,
		     struct squib_live **out, struct squib_error_detail *d);

/* The regions with host = the view: what the memory-file writer reads. */
const struct squib_memfile_source_region *squib_live_view(const struct squib_live *l);

/* 0, or the handler's first error (the view may then be wrong: discard the image). */
int squib_live_error(const struct squib_live *l, struct squib_error_detail *d);

/*
 * Lift every protection left (a save that stopped halfway leaves some), stop
 * the handler, unmap the views, free. Guest threads waiting on a write are
 * released. st (may be NULL) gets the counters. NULL l is a no-op.
 */
void squib_live_end(struct squib_live *l, struct squib_live_stats *st);

#endif
