/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What dirty tracking costs the writer, and what a harvest costs.
 *
 * 1. The first write to each page of 64 MiB after tracking is armed, in
 *    µs/page, for: no tracking, uffd-wp (async), mprotect + SIGSEGV at the
 *    2 MiB granule, and at the host page (the fault tracker stepped down).
 *    Twice: on resident memory (a running guest's RAM: tracking is all of
 *    the cost) and on never-touched memory (the write also allocates the
 *    page). Ratios are against no tracking in the same scenario, same run.
 * 2. Harvest of 1 GiB of resident memory with 1 % of its pages written
 *    (every 100th page), in ms per GiB: uffd-wp's PAGEMAP_SCAN, the same
 *    with nothing written (the scan's floor), and the fault tracker at the
 *    host page (drain + one mprotect per dirty run).
 *
 * Best and median of RUNS runs, each on a fresh mapping. Skips uffd-wp
 * figures where userfaultfd is missing (printed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <squib/track.h>

#include "benchutil.h"

#define GPA	     0x40000000ull
#define WRITE_SIZE   (64ull << 20)
#define HARVEST_SIZE (1ull << 30)
#define RUNS	     7

enum mode { NONE, UFFD, FAULT_2M, FAULT_PAGE, MODES };

static const char *const mode_name[MODES] = {
    "no tracking", "uffd-wp async", "mprotect+SIGSEGV 2 MiB", "mprotect+SIGSEGV host page"};

static uint64_t page;

static double median(double *runs)
{
	qsort(runs, RUNS, sizeof(runs[0]), cmp_double);
	return runs[RUNS / 2];
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_track: %s failed (%d)\n", what, rc);
	exit(1);
}

static uint8_t *map_mem(uint64_t size, int populate)
{
	uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap", -errno);
	if (populate)
		memset(p, 1, size);
	return p;
}

/* A fake clock, so the fault tracker can be stepped down on demand. */
static uint64_t fake_ns;

static uint64_t fake_now(void *ctx)
{
	(void)ctx;
	return fake_ns;
}

static struct squib_tracker *fault_tracker(struct squib_memory_map *map, int fine)
{
	static const struct squib_dirty_clock clock = {fake_now, NULL};
	struct squib_tracked_region_options opts = {0, &clock, NULL};
	struct squib_tracker *t = NULL;
	int rc;

	if (!fine)
		opts.step_down_threshold = UINT32_MAX;
	rc = squib_tracker_fault_new(map, &opts, &t, NULL);
	if (rc)
		die("squib_tracker_fault_new", rc);
	return t;
}

/* Step a started fault tracker down: one fault (threshold 0), a window, a harvest. */
static void step_down(struct squib_tracker *t, uint8_t *mem, struct squib_dirty_bitmap *dst)
{
	((volatile uint8_t *)mem)[0] = 2;
	fake_ns += SQUIB_ADAPTIVE_WINDOW_NS;
	if (squib_tracker_harvest(t, dst, NULL) ||
	    squib_tracker_fault_granule(t, 0) != SQUIB_GRANULE_FINE)
		die("step-down", -1);
	squib_dirty_bitmap_clear(dst);
}

/* A started tracker for the mode (NULL for NONE, or when uffd is missing). */
static struct squib_tracker *armed(enum mode m, struct squib_memory_map *map, uint8_t *mem,
				   struct squib_dirty_bitmap *dst)
{
	struct squib_tracker *t = NULL;
	struct squib_error_detail d;
	int rc = 0;

	if (m == NONE)
		return NULL;
	if (m == UFFD)
		rc = squib_tracker_uffd_wp_new(map, &t, &d);
	else
		t = fault_tracker(map, m == FAULT_PAGE);
	if (rc && d.os_errno == ENOSYS)
		return NULL;
	if (rc)
		die("squib_tracker_uffd_wp_new", rc);
	rc = squib_tracker_start(t, NULL);
	if (rc)
		die("squib_tracker_start", rc);
	if (m == FAULT_PAGE)
		step_down(t, mem, dst);
	return t;
}

/* µs per page for the first write to every page of WRITE_SIZE, one run. */
static double first_write_run(enum mode m, int populate, int *skipped)
{
	uint8_t *mem = map_mem(WRITE_SIZE, populate);
	struct squib_guest_region r = {GPA, WRITE_SIZE, mem, 0};
	struct squib_memory_map map = {&r, 1};
	struct squib_dirty_bitmap *dst = NULL;
	struct squib_tracker *t;
	uint64_t t0, pages = WRITE_SIZE / page;
	double us;

	if (squib_dirty_bitmap_new(GPA, WRITE_SIZE, page, &dst, NULL))
		die("bitmap", -1);
	t = armed(m, &map, mem, dst);
	*skipped = m != NONE && !t;
	t0 = now_ns();
	for (uint64_t p = 0; p < pages; p++)
		((volatile uint8_t *)mem)[p * page + 1] = 3;
	us = (double)(now_ns() - t0) / 1000.0 / (double)pages;
	squib_tracker_free(t);
	squib_dirty_bitmap_free(dst);
	munmap(mem, WRITE_SIZE);
	return us;
}

static void bench_first_write(int populate)
{
	double med[MODES], runs[RUNS];

	printf("\nfirst write to each page of 64 MiB, %s memory (µs/page; ratio to no tracking)\n",
	       populate ? "resident" : "never-touched");
	for (int m = 0; m < MODES; m++) {
		int skipped = 0;

		for (int i = 0; i < RUNS; i++)
			runs[i] = first_write_run((enum mode)m, populate, &skipped);
		if (skipped) {
			printf("  %-28s skipped: no userfaultfd\n", mode_name[m]);
			continue;
		}
		med[m] = median(runs);
		printf("  %-28s best %8.3f  median %8.3f  x%.1f\n", mode_name[m], runs[0], med[m],
		       med[m] / med[NONE]);
	}
}

/* Write every 100th page; the 1 % a harvest then finds. */
static void dirty_one_percent(uint8_t *mem, uint64_t size, uint8_t v)
{
	for (uint64_t p = 0; p < size / page; p += 100)
		((volatile uint8_t *)mem)[p * page + 2] = v;
}

/* ms for one harvest of HARVEST_SIZE after dirtying 1 % (or nothing), median of RUNS. */
static void bench_harvest(const char *name, struct squib_tracker *t, uint8_t *mem, int dirty)
{
	struct squib_dirty_bitmap *dst = NULL;
	double runs[RUNS];
	uint64_t expect = dirty ? (HARVEST_SIZE / page + 99) / 100 : 0;

	if (squib_dirty_bitmap_new(GPA, HARVEST_SIZE, page, &dst, NULL))
		die("bitmap", -1);
	for (int i = 0; i < RUNS; i++) {
		uint64_t t0;

		if (dirty)
			dirty_one_percent(mem, HARVEST_SIZE, (uint8_t)i);
		t0 = now_ns();
		if (squib_tracker_harvest(t, dst, NULL))
			die("harvest", -1);
		runs[i] = (double)(now_ns() - t0) / 1e6;
		if (squib_dirty_bitmap_count(dst) != expect)
			die("harvest count", (int)squib_dirty_bitmap_count(dst));
		squib_dirty_bitmap_clear(dst);
	}
	printf("  %-40s best %8.3f  median %8.3f ms/GiB\n", name, runs[0], median(runs));
	squib_dirty_bitmap_free(dst);
}

static void bench_harvests(void)
{
	uint8_t *mem = map_mem(HARVEST_SIZE, 1);
	struct squib_guest_region r = {GPA, HARVEST_SIZE, mem, 0};
	struct squib_memory_map map = {&r, 1};
	struct squib_dirty_bitmap *dst = NULL;
	struct squib_tracker *t;

	printf("\nharvest of 1 GiB of resident memory (%llu pages)\n",
	       (unsigned long long)(HARVEST_SIZE / page));
	if (squib_dirty_bitmap_new(GPA, HARVEST_SIZE, page, &dst, NULL))
		die("bitmap", -1);
	t = armed(UFFD, &map, mem, dst);
	if (t) {
		bench_harvest("uffd-wp PAGEMAP_SCAN, 1 % written", t, mem, 1);
		bench_harvest("uffd-wp PAGEMAP_SCAN, nothing written", t, mem, 0);
		squib_tracker_free(t);
	} else {
		printf("  uffd-wp skipped: no userfaultfd\n");
	}
	t = armed(FAULT_PAGE, &map, mem, dst);
	/* The first round grants page by page; time the steady state from the second on. */
	dirty_one_percent(mem, HARVEST_SIZE, 9);
	squib_tracker_harvest(t, dst, NULL);
	squib_dirty_bitmap_clear(dst);
	bench_harvest("mprotect+SIGSEGV host page, 1 % written", t, mem, 1);
	squib_tracker_free(t);
	squib_dirty_bitmap_free(dst);
	munmap(mem, HARVEST_SIZE);
}

int main(void)
{
	page = (uint64_t)sysconf(_SC_PAGESIZE);
	printf("dirty trackers; host page %llu bytes; best and median of %d runs\n",
	       (unsigned long long)page, RUNS);
	bench_first_write(1);
	bench_first_write(0);
	bench_harvests();
	return 0;
}
