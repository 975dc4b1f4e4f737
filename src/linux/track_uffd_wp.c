/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dirty tracking with userfaultfd write-protect in async mode, harvested with
 * the PAGEMAP_SCAN ioctl (Linux >= 6.7).
 *
 * start     UFFDIO_REGISTER (MODE_WP) each region, then UFFDIO_WRITEPROTECT it
 *           all: present pages get the uffd-wp bit, empty ones a marker
 *           (WP_UNPOPULATED), so every page's next write is caught.
 * a write   faults; WP_ASYNC makes the kernel clear the bit and retry the
 *           write itself: no message, no handler thread.
 * harvest   PAGEMAP_SCAN(PAGE_IS_WRITTEN, WP_MATCHING): written = no uffd-wp
 *           bit; the kernel reports those pages and sets the bit again under the
 *           page-table lock, so a racing write is reported now or next time.
 * give_back ORs into a host-page bitmap per region that the next harvest
 *           drains first: a page cannot be made "written" again by hand.
 */
#include <squib/track.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../track_internal.h"
#include "pagemap_scan.h"
#include "uffd.h"

/*
 * The build machine's headers (6.1) predate these; the values are the
 * kernel's uapi (include/uapi/linux/userfaultfd.h and fs.h, Linux 6.7+),
 * and the kernel decides at run time whether it knows them.
 */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

/*
 * Output slots per PAGEMAP_SCAN call (12 KiB, allocated once). The kernel
 * merges adjacent written pages into one slot, and a full buffer only means
 * another call from walk_end.
 */
#define SCAN_VEC_LEN 512

struct uffd_wp {
	int uffd;
	int pagemap;
	struct track_map map;
	struct track_bits given_back;
	struct page_region vec[SCAN_VEC_LEN];
};

static int uffd_open_api(struct uffd_wp *u, struct squib_error_detail *d)
{
	struct uffdio_api api = {.api = UFFD_API,
				 .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED};

	u->uffd = squib_uffd_open(true);
	if (u->uffd < 0)
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno,
					    "opening a userfaultfd (syscall, then /dev/userfaultfd)");
	/* EINVAL here: the kernel does not know WP_ASYNC (before 6.7). */
	if (ioctl(u->uffd, UFFDIO_API, &api))
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno,
					    "UFFDIO_API with WP_ASYNC (Linux 6.7+)");
	u->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (u->pagemap < 0)
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "opening /proc/self/pagemap");
	return 0;
}

static struct uffdio_range host_range(const struct squib_guest_region *r)
{
	return (struct uffdio_range){(uintptr_t)r->hva, r->size};
}

static int unregister_region(struct uffd_wp *u, const struct squib_guest_region *r)
{
	struct uffdio_range range = host_range(r);

	/* Unregistering also drops every uffd-wp bit and marker in the range. */
	return ioctl(u->uffd, UFFDIO_UNREGISTER, &range) ? errno : 0;
}

static int arm_region(struct uffd_wp *u, const struct squib_guest_region *r)
{
	struct uffdio_register reg = {.range = host_range(r), .mode = UFFDIO_REGISTER_MODE_WP};
	struct uffdio_writeprotect wp = {.range = host_range(r),
					 .mode = UFFDIO_WRITEPROTECT_MODE_WP};
	int err;

	if (ioctl(u->uffd, UFFDIO_REGISTER, &reg))
		return errno;
	if (ioctl(u->uffd, UFFDIO_WRITEPROTECT, &wp)) {
		err = errno;
		unregister_region(u, r);
		return err;
	}
	return 0;
}

/*
 * One PAGEMAP_SCAN from *addr to end that reports written pages and
 * re-protects them; *addr advances to where the kernel stopped (a full vec).
 */
static int scan_once(struct uffd_wp *u, uint64_t *addr, uint64_t end, long *n)
{
	struct pm_scan_arg arg = {
	    .size = sizeof(arg),
	    .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
	    .start = *addr,
	    .end = end,
	    .vec = (uintptr_t)u->vec,
	    .vec_len = SCAN_VEC_LEN,
	    .category_mask = PAGE_IS_WRITTEN,
	    .return_mask = PAGE_IS_WRITTEN,
	};

	*n = ioctl(u->pagemap, PAGEMAP_SCAN, &arg);
	if (*n < 0)
		return errno;
	/* A walk that made no progress would loop forever; the kernel never does that. */
	if (arg.walk_end <= *addr || arg.walk_end > end)
		return EPROTO;
	*addr = arg.walk_end;
	return 0;
}

/*
 * Harvest one region into dst. The pages of each call are OR-ed in before
 * the next: they are already re-protected, so they must not be lost if a
 * later call fails.
 */
static int scan_region(struct uffd_wp *u, const struct squib_guest_region *r,
		       struct squib_dirty_bitmap *dst)
{
	uint64_t hva = (uintptr_t)r->hva, addr = hva, end = hva + r->size;

	while (addr < end) {
		long n;
		int err = scan_once(u, &addr, end, &n);

		if (err)
			return err;
		for (long i = 0; i < n; i++)
			squib_dirty_bitmap_set_range(dst, r->gpa + (u->vec[i].start - hva),
						     u->vec[i].end - u->vec[i].start);
	}
	return 0;
}

static int uffd_start(void *ctx, struct squib_error_detail *d)
{
	struct uffd_wp *u = ctx;

	track_bits_clear(&u->given_back);
	for (size_t i = 0; i < u->map.count; i++) {
		int err = arm_region(u, &u->map.r[i]);

		if (err) {
			while (i--)
				unregister_region(u, &u->map.r[i]);
			return squib_fail_errno(d, SQUIB_E_IO, err);
		}
	}
	return 0;
}

static int uffd_harvest(void *ctx, struct squib_dirty_bitmap *dst, struct squib_error_detail *d)
{
	struct uffd_wp *u = ctx;

	track_bits_drain(&u->given_back, dst);
	for (size_t i = 0; i < u->map.count; i++) {
		int err;

		if (track_region_overlap(&u->map.r[i], dst) != TRACK_INSIDE)
			continue;
		err = scan_region(u, &u->map.r[i], dst);
		if (err) {
			/* Pages already reported are in dst; the unscanned rest stay written. */
			return squib_fail_errno(d, SQUIB_E_IO, err);
		}
	}
	return 0;
}

static int uffd_give_back(void *ctx, const struct squib_dirty_bitmap *src,
			  struct squib_error_detail *d)
{
	struct uffd_wp *u = ctx;

	(void)d;
	track_bits_give_back(&u->given_back, src);
	return 0;
}

static int uffd_stop(void *ctx, struct squib_error_detail *d)
{
	struct uffd_wp *u = ctx;
	int first = 0;

	for (size_t i = 0; i < u->map.count; i++) {
		int err = unregister_region(u, &u->map.r[i]);

		if (err && !first)
			first = err;
	}
	return first ? squib_fail_errno(d, SQUIB_E_IO, first) : 0;
}

static void uffd_free(void *ctx)
{
	struct uffd_wp *u = ctx;

	if (!u)
		return;
	if (u->uffd >= 0)
		close(u->uffd);
	if (u->pagemap >= 0)
		close(u->pagemap);
	track_bits_destroy(&u->given_back);
	free(u);
}

static const struct squib_tracker_ops uffd_wp_ops = {
    .name = "uffd-wp",
    .start = uffd_start,
    .harvest = uffd_harvest,
    .give_back = uffd_give_back,
    .reset_after_commit = NULL, /* harvest re-armed every page it reported */
    .stop = uffd_stop,
    .free = uffd_free,
};

int squib_tracker_uffd_wp_new(const struct squib_memory_map *map, struct squib_tracker **out,
			      struct squib_error_detail *d)
{
	struct uffd_wp *u;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "out is NULL");
	*out = NULL;
	u = calloc(1, sizeof(*u));
	if (!u)
		return squib_fail(d, SQUIB_E_NOMEM);
	u->uffd = -1;
	u->pagemap = -1;
	rc = track_map_init(&u->map, map, true, d);
	if (!rc)
		rc = track_bits_init(&u->given_back, &u->map, d);
	if (!rc)
		rc = uffd_open_api(u, d);
	if (rc) {
		uffd_free(u);
		return rc;
	}
	return squib_tracker_new(&uffd_wp_ops, u, map, out, d);
}
