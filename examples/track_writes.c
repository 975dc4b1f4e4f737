/* SPDX-License-Identifier: Apache-2.0 */
/*
 * track_writes: the dirty trackers of squib/track.h over one anonymous
 * "guest RAM" mapping, as a VMM without KVM's dirty log would use them.
 *
 *   vmm-marks  the VMM reports its own writes (device DMA) by guest range
 *   uffd-wp    the kernel catches every write to the memory (userfaultfd
 *              write-protect, Linux >= 6.7), syscalls writing into it included
 *   fault      mprotect + SIGSEGV: user-space stores only, at 2 MiB blocks
 *              until a block is hot (it over-reports inside its unit)
 *
 * Each tracker runs two rounds: write some pages, harvest them into a dirty
 * bitmap (which re-arms tracking), check what it reported. Last, vmm-marks
 * and uffd-wp in one squib_tracker_set: the harvest is their union. A
 * tracker this kernel cannot run (no userfaultfd, WP_ASYNC or PAGEMAP_SCAN)
 * is skipped with one line. Walk-through: docs/EMBEDDING.md.
 *
 * Exit status: 0 every tracker that ran reported what was written, 2 a
 * library call failed or a report was wrong (the message on stderr).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/dirty.h>
#include <squib/error.h>
#include <squib/track.h>

#define RAM_GPA	  0x80000000ull
#define RAM_PAGES 64u

enum kind { VMM_MARKS, UFFD_WP, FAULT };

struct ram {
	uint8_t *host;
	uint64_t psz;
	struct squib_guest_region region;
	struct squib_memory_map map;
};

static int fail(const char *what, int rc, const struct squib_error_detail *d)
{
	char text[SQUIB_ERROR_TEXT_MAX];

	squib_error_format(rc, d, text, sizeof(text));
	fprintf(stderr, "track_writes: %s: %s [%s]\n", what, text, squib_error_name(rc));
	return 2;
}

/* A kernel without the feature: the one failure the example accepts. */
static bool unavailable(int rc, const struct squib_error_detail *d)
{
	int e = d->os_errno;

	return rc == SQUIB_E_IO &&
	       (e == ENOSYS || e == EPERM || e == EINVAL || e == ENOTTY || e == EOPNOTSUPP);
}

static int ram_map(struct ram *r)
{
	r->psz = (uint64_t)sysconf(_SC_PAGESIZE);
	r->host = mmap(NULL, RAM_PAGES * r->psz, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r->host == MAP_FAILED) {
		perror("track_writes: mmap");
		return 2;
	}
	r->region = (struct squib_guest_region){RAM_GPA, RAM_PAGES * r->psz, r->host, 0};
	r->map = (struct squib_memory_map){&r->region, 1};
	return 0;
}

static int tracker_new(enum kind k, struct ram *r, struct squib_tracker **t,
		       struct squib_error_detail *d)
{
	if (k == VMM_MARKS)
		return squib_tracker_vmm_marks_new(&r->map, t, d);
	if (k == UFFD_WP)
		return squib_tracker_uffd_wp_new(&r->map, t, d);
	return squib_tracker_fault_new(&r->map, NULL, t, d);
}

/* The guest (or a device model) writes page p; only the VMM-marks tracker
 * needs telling, the others see the store itself. */
static void write_page(struct ram *r, struct squib_tracker *t, enum kind k, uint64_t p)
{
	r->host[p * r->psz] = (uint8_t)(p + 1);
	if (k == VMM_MARKS)
		squib_tracker_mark_write(t, RAM_GPA + p * r->psz, 1);
}

/* Harvest t into a fresh host-page bitmap and check: every written page
 * reported, and (exact) nothing else. */
static int harvest_check(struct squib_tracker *t, const struct ram *r, const uint64_t *pages,
			 size_t n, bool exact)
{
	struct squib_dirty_bitmap *bm = NULL;
	struct squib_error_detail d = {0};
	uint64_t count;
	int rc;

	if ((rc = squib_dirty_bitmap_new(RAM_GPA, RAM_PAGES * r->psz, r->psz, &bm, &d)) ||
	    (rc = squib_tracker_harvest(t, bm, &d))) {
		squib_dirty_bitmap_free(bm);
		return fail("harvest", rc, &d);
	}
	count = squib_dirty_bitmap_count(bm);
	for (size_t i = 0; i < n; i++)
		if (!squib_dirty_bitmap_test_by_index(bm, pages[i])) {
			fprintf(stderr, "track_writes: %s lost page %llu\n", squib_tracker_name(t),
				(unsigned long long)pages[i]);
			count = 0;
		}
	squib_dirty_bitmap_free(bm);
	if (!count || (exact && count != n)) {
		fprintf(stderr, "track_writes: %s reported %llu pages, wrote %zu\n",
			squib_tracker_name(t), (unsigned long long)count, n);
		return 2;
	}
	printf("track_writes: %s: wrote %zu pages, harvest reported %llu\n", squib_tracker_name(t),
	       n, (unsigned long long)count);
	return 0;
}

/* Two rounds: the harvest re-arms, so round two reports round two's page only. */
static int rounds(enum kind k, struct ram *r, struct squib_tracker *t)
{
	static const uint64_t first[] = {2, 5, 40}, second[] = {9};
	bool exact = k != FAULT; /* the fault tracker marks its whole 2 MiB unit */
	int rc;

	for (size_t i = 0; i < 3; i++)
		write_page(r, t, k, first[i]);
	if ((rc = harvest_check(t, r, first, 3, exact)))
		return rc;
	write_page(r, t, k, second[0]);
	return harvest_check(t, r, second, 1, exact);
}

static int run_one(enum kind k, const char *name)
{
	struct ram r;
	struct squib_tracker *t = NULL;
	struct squib_error_detail d = {0};
	int rc;

	if ((rc = ram_map(&r)))
		return rc;
	if ((rc = tracker_new(k, &r, &t, &d)) || (rc = squib_tracker_start(t, &d))) {
		if (k != VMM_MARKS && unavailable(rc, &d)) {
			fprintf(stderr, "track_writes: SKIP %s: not on this kernel (%s)\n", name,
				strerror(d.os_errno));
			rc = 0;
		} else {
			rc = fail(name, rc, &d);
		}
	} else {
		rc = rounds(k, &r, t);
		squib_tracker_stop(t, NULL);
	}
	squib_tracker_free(t);
	munmap(r.host, RAM_PAGES * r.psz);
	return rc;
}

/* The Diff's dirty set is the union of a set's trackers: DMA the VMM
 * reports, stores the kernel saw. */
static int run_set(void)
{
	static const uint64_t both[] = {1, 7};
	struct ram r;
	struct squib_tracker *marks = NULL, *wp = NULL;
	struct squib_tracker_set set = SQUIB_TRACKER_SET_INIT;
	struct squib_dirty_bitmap *bm = NULL;
	struct squib_error_detail d = {0};
	int rc;

	if ((rc = ram_map(&r)))
		return rc;
	if ((rc = squib_tracker_uffd_wp_new(&r.map, &wp, &d)) ||
	    (rc = squib_tracker_start(wp, &d))) {
		rc = unavailable(rc, &d) ? 0 : fail("uffd-wp in a set", rc, &d);
		goto out;
	}
	if ((rc = squib_tracker_vmm_marks_new(&r.map, &marks, &d)) ||
	    (rc = squib_tracker_start(marks, &d)) || (rc = squib_tracker_set_add(&set, wp, &d)) ||
	    (rc = squib_tracker_set_add(&set, marks, &d)) ||
	    (rc = squib_dirty_bitmap_new(RAM_GPA, RAM_PAGES * r.psz, r.psz, &bm, &d))) {
		rc = fail("tracker set", rc, &d);
		goto out;
	}
	squib_tracker_mark_write(marks, RAM_GPA + both[0] * r.psz, r.psz); /* a DMA */
	r.host[both[1] * r.psz] = 1;					   /* a store */
	if ((rc = squib_tracker_set_harvest(&set, bm, &d)))
		rc = fail("set harvest", rc, &d);
	else if (squib_dirty_bitmap_count(bm) != 2 || !squib_dirty_bitmap_test_by_index(bm, 1) ||
		 !squib_dirty_bitmap_test_by_index(bm, 7))
		rc = fail("set harvest: not the union", SQUIB_E_CAPTURE, NULL);
	else
		printf(
		    "track_writes: set of vmm-marks + uffd-wp: harvest is the union (2 pages)\n");
out:
	squib_dirty_bitmap_free(bm);
	squib_tracker_free(marks);
	squib_tracker_free(wp);
	munmap(r.host, RAM_PAGES * r.psz);
	return rc;
}

int main(void)
{
	int rc = run_one(VMM_MARKS, "vmm-marks");

	if (!rc)
		rc = run_one(UFFD_WP, "uffd-wp");
	if (!rc)
		rc = run_one(FAULT, "fault");
	if (!rc)
		rc = run_set();
	if (!rc)
		printf("track_writes: ok\n");
	return rc;
}
