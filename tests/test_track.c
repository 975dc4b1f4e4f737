/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dirty trackers on real memory: the generic interface and the tracker set,
 * VMM marks, userfaultfd write-protect (real userfaultfd, real PAGEMAP_SCAN),
 * and mprotect + SIGSEGV (real faults). Crash forwarding runs in a re-executed
 * child, so the child starts with no handler of ours and a known previous one.
 * The threaded cases are in test_track_concurrency.c.
 */
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/track.h>

#define GPA_A	    0x80000000ull
#define GPA_B	    0x80800000ull
#define REGION_SIZE (8ull << 20) /* four 2 MiB blocks */
#define BLOCK	    (2ull << 20)

static uint64_t page_size(void)
{
	return (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t pages_per_region(void)
{
	return REGION_SIZE / page_size();
}

static uint64_t pages_per_block(void)
{
	return BLOCK / page_size();
}

static uint8_t *map_mem(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

static void unmap_mem(void *p, size_t size)
{
	assert_int_equal(munmap(p, size), 0);
}

/* A bitmap over [gpa, gpa + size) at the host page. */
static struct squib_dirty_bitmap *new_dst(uint64_t gpa, uint64_t size)
{
	struct squib_dirty_bitmap *bm = NULL;

	assert_int_equal(squib_dirty_bitmap_new(gpa, size, page_size(), &bm, NULL), 0);
	return bm;
}

static void write_page(uint8_t *mem, uint64_t page, uint8_t value)
{
	((volatile uint8_t *)mem)[page * page_size() + 7] = value;
}

static uint8_t read_page(const uint8_t *mem, uint64_t page)
{
	return ((const volatile uint8_t *)mem)[page * page_size() + 7];
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Drain dst and assert it held exactly the n pages of want (any order, no duplicates). */
static void expect_pages(struct squib_dirty_bitmap *dst, uint64_t *want, size_t n)
{
	uint64_t *got = NULL;
	size_t count = 0;

	if (n)
		qsort(want, n, sizeof(*want), cmp_u64);
	assert_int_equal(squib_dirty_bitmap_drain_alloc(dst, &got, &count, NULL), 0);
	for (size_t i = 0; i < count && i < n; i++)
		if (got[i] != want[i])
			fail_msg("page %zu: reported %llu, expected %llu", i,
				 (unsigned long long)got[i], (unsigned long long)want[i]);
	assert_int_equal(count, n);
	free(got);
}

static void expect_none(struct squib_dirty_bitmap *dst)
{
	expect_pages(dst, NULL, 0);
}

/* Every page of the 2 MiB blocks holding the n pages of touched, for a dst at the host page. */
static size_t blocks_of(const uint64_t *touched, size_t n, uint64_t *out)
{
	uint8_t seen[REGION_SIZE / BLOCK] = {0};
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		seen[touched[i] / pages_per_block()] = 1;
	for (uint64_t b = 0; b < REGION_SIZE / BLOCK; b++)
		for (uint64_t p = 0; seen[b] && p < pages_per_block(); p++)
			out[k++] = b * pages_per_block() + p;
	return k;
}

static struct squib_memory_map one_region(struct squib_guest_region *r, uint64_t gpa, void *hva)
{
	*r = (struct squib_guest_region){gpa, REGION_SIZE, hva, 0};
	return (struct squib_memory_map){r, 1};
}

/* The uffd-wp tracker, or a skip where the kernel has no userfaultfd at all. */
static struct squib_tracker *uffd_tracker(const struct squib_memory_map *map)
{
	struct squib_tracker *t = NULL;
	struct squib_error_detail d;
	int rc = squib_tracker_uffd_wp_new(map, &t, &d);

	if (rc == SQUIB_E_IO && d.os_errno == ENOSYS) {
		fprintf(stderr, "!!!!! SKIPPED: this kernel has no userfaultfd (ENOSYS) !!!!!\n");
		skip();
	}
	assert_int_equal(rc, 0);
	assert_string_equal(squib_tracker_name(t), "uffd-wp");
	return t;
}

static struct squib_tracker *fault_tracker(const struct squib_memory_map *map,
					   const struct squib_tracked_region_options *opts)
{
	struct squib_tracker *t = NULL;

	assert_int_equal(squib_tracker_fault_new(map, opts, &t, NULL), 0);
	assert_string_equal(squib_tracker_name(t), "fault");
	return t;
}

static struct squib_tracker *marks_tracker(const struct squib_memory_map *map)
{
	struct squib_tracker *t = NULL;

	assert_int_equal(squib_tracker_vmm_marks_new(map, &t, NULL), 0);
	assert_string_equal(squib_tracker_name(t), "vmm-marks");
	return t;
}

/* ---- memory maps and the state machine ---------------------------------- */

typedef int (*new_fn)(const struct squib_memory_map *map, struct squib_tracker **out,
		      struct squib_error_detail *d);

static void expect_map_rejected(new_fn make, const struct squib_guest_region *r, size_t n,
				const char *what)
{
	struct squib_memory_map map = {r, n};
	struct squib_tracker *t = (struct squib_tracker *)&t;
	struct squib_error_detail d;

	assert_int_equal(make(&map, &t, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_null(t);
	assert_non_null(strstr(d.msg, what));
}

static void test_should_reject_bad_memory_maps(void **state)
{
	uint64_t ps = page_size();
	struct squib_guest_region bad_size[] = {{GPA_A, ps + 1, NULL, 0}};
	struct squib_guest_region empty[] = {{GPA_A, 0, NULL, 0}};
	struct squib_guest_region bad_gpa[] = {{GPA_A + 1, ps, NULL, 0}};
	struct squib_guest_region wraps[] = {{UINT64_MAX - ps + 1, 2 * ps, NULL, 0}};
	struct squib_guest_region overlap[] = {{GPA_A, 2 * ps, NULL, 0}, {GPA_A + ps, ps, NULL, 0}};
	struct squib_guest_region ok[] = {{GPA_A, ps, NULL, 0}};
	struct squib_tracker *t = NULL;

	(void)state;
	expect_map_rejected(squib_tracker_vmm_marks_new, bad_size, 1, "multiples of the host page");
	expect_map_rejected(squib_tracker_vmm_marks_new, empty, 1, "non-empty");
	expect_map_rejected(squib_tracker_vmm_marks_new, bad_gpa, 1, "multiples of the host page");
	expect_map_rejected(squib_tracker_vmm_marks_new, wraps, 1, "overflows");
	expect_map_rejected(squib_tracker_vmm_marks_new, overlap, 2, "overlap");
	expect_map_rejected(squib_tracker_vmm_marks_new, ok, 0, "1..64 regions");
	expect_map_rejected(squib_tracker_vmm_marks_new, ok, SQUIB_TRACK_MAX_REGIONS + 1,
			    "1..64 regions");
	assert_int_equal(squib_tracker_vmm_marks_new(NULL, &t, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracker_vmm_marks_new(&(struct squib_memory_map){ok, 1}, NULL, NULL),
			 SQUIB_E_INVALID_ARGUMENT);
	/* VMM marks need no mapping, so a NULL hva is fine there. */
	t = marks_tracker(&(struct squib_memory_map){ok, 1});
	squib_tracker_free(t);
}

static int fault_new_default(const struct squib_memory_map *map, struct squib_tracker **out,
			     struct squib_error_detail *d)
{
	return squib_tracker_fault_new(map, NULL, out, d);
}

static void test_should_require_a_host_mapping_for_memory_trackers(void **state)
{
	uint8_t *mem = map_mem(2 * REGION_SIZE);
	uint64_t ps = page_size();
	struct squib_guest_region no_hva[] = {{GPA_A, ps, NULL, 0}};
	struct squib_guest_region odd_hva[] = {{GPA_A, ps, mem + 1, 0}};
	struct squib_guest_region hva_overlap[] = {{GPA_A, 2 * ps, mem, 0},
						   {GPA_B, ps, mem + ps, 0}};
	new_fn makers[] = {fault_new_default, squib_tracker_uffd_wp_new};

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		expect_map_rejected(makers[i], no_hva, 1, "hva");
		expect_map_rejected(makers[i], odd_hva, 1, "hva");
		expect_map_rejected(makers[i], hva_overlap, 2, "overlap in host memory");
	}
	unmap_mem(mem, 2 * REGION_SIZE);
}

static void test_should_enforce_the_tracker_state_machine(void **state)
{
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, NULL);
	struct squib_tracker *t = marks_tracker(&map);
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);

	(void)state;
	assert_false(squib_tracker_is_active(t));
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracker_give_back(t, dst, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracker_reset_after_commit(t, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracker_stop(t, NULL), 0); /* stopping a stopped tracker: no-op */
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	assert_true(squib_tracker_is_active(t));
	assert_int_equal(squib_tracker_start(t, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracker_harvest(t, NULL, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracker_harvest(NULL, dst, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracker_stop(t, NULL), 0);
	assert_false(squib_tracker_is_active(t));
	assert_int_equal(squib_tracker_start(t, NULL), 0); /* restartable */
	squib_tracker_free(t);				   /* stops it */
	squib_dirty_bitmap_free(dst);
}

static void test_should_reject_a_bitmap_that_a_region_straddles(void **state)
{
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, NULL);
	struct squib_tracker *t = marks_tracker(&map);
	struct squib_dirty_bitmap *half = new_dst(GPA_A, REGION_SIZE / 2);
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	assert_int_equal(squib_tracker_harvest(t, half, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "straddles"));
	assert_int_equal(squib_tracker_give_back(t, half, NULL), SQUIB_E_INVALID_ARGUMENT);
	squib_tracker_free(t);
	squib_dirty_bitmap_free(half);
}

/* ---- VMM marks ----------------------------------------------------------- */

static void test_should_report_vmm_marks_by_guest_range(void **state)
{
	struct squib_guest_region r[2] = {{GPA_B, REGION_SIZE, NULL, 1},
					  {GPA_A, REGION_SIZE, NULL, 0}};
	struct squib_memory_map map = {r, 2};
	struct squib_tracker *t = marks_tracker(&map);
	struct squib_dirty_bitmap *a = new_dst(GPA_A, REGION_SIZE);
	struct squib_dirty_bitmap *all = new_dst(GPA_A, 2 * REGION_SIZE);
	uint64_t ps = page_size(), n = pages_per_region();
	uint64_t want_a[] = {3, 4, n - 1};
	uint64_t want_all[] = {5, n, n + 1};

	(void)state;
	/* Regions are sorted by gpa whatever the order they came in. */
	assert_int_equal(squib_tracker_region(t, 0)->gpa, GPA_A);
	assert_int_equal(squib_tracker_mark_write(t, GPA_A, 1), 0); /* stopped: dropped */
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	/* Two bytes across a page boundary mark both pages. */
	assert_int_equal(squib_tracker_mark_write(t, GPA_A + 4 * ps - 1, 2), 2);
	/* A write across the edge between the regions, and one past the map's end. */
	assert_int_equal(squib_tracker_mark_write(t, GPA_B - 1, 2), 2);
	assert_int_equal(squib_tracker_mark_write(t, GPA_B + REGION_SIZE, ps), 0);
	assert_int_equal(squib_tracker_mark_write(t, GPA_A + 4 * ps, 1), 0); /* already dirty */
	/* Harvest only region A: region B's page waits for a bitmap that covers it. */
	assert_int_equal(squib_tracker_harvest(t, a, NULL), 0);
	expect_pages(a, want_a, 3);
	assert_int_equal(squib_tracker_mark_write(t, GPA_A + 5 * ps, ps), 1);
	assert_int_equal(squib_tracker_mark_write(t, GPA_B + ps, 1), 1);
	assert_int_equal(squib_tracker_harvest(t, all, NULL), 0);
	expect_pages(all, want_all, 3);
	assert_int_equal(squib_tracker_harvest(t, all, NULL), 0);
	expect_none(all);
	squib_tracker_free(t);
	squib_dirty_bitmap_free(a);
	squib_dirty_bitmap_free(all);
}

static void test_should_ignore_marks_for_other_tracker_kinds(void **state)
{
	uint8_t *mem = map_mem(REGION_SIZE);
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, mem);
	struct squib_tracker *t = fault_tracker(&map, NULL);

	(void)state;
	assert_int_equal(squib_tracker_mark_write(t, GPA_A, 1), 0);
	assert_int_equal(squib_tracker_mark_write(NULL, GPA_A, 1), 0);
	assert_int_equal(squib_tracker_fault_tick(NULL, NULL), SQUIB_E_INVALID_ARGUMENT);
	squib_tracker_free(t);
	unmap_mem(mem, REGION_SIZE);
}

/* ---- userfaultfd write-protect -------------------------------------------- */

static void test_should_report_exactly_the_written_pages_with_uffd_wp(void **state)
{
	uint8_t *mem = map_mem(REGION_SIZE);
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, mem);
	struct squib_tracker *t = uffd_tracker(&map);
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);
	uint64_t n = pages_per_region();
	/* Populated before start: pages 0..63; the rest has never been touched. */
	uint64_t want[] = {0, 1, 2, 40, 64, 65, 700, n - 1};

	(void)state;
	memset(mem, 0xaa, 64 * page_size());
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		write_page(mem, want[i], (uint8_t)i);
	/* Reads, of populated and of never-touched pages, are not writes. */
	assert_int_equal(read_page(mem, 10), 0xaa);
	assert_int_equal(read_page(mem, 300), 0);
	assert_int_equal(read_page(mem, n - 2), 0);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	expect_pages(dst, want, sizeof(want) / sizeof(want[0]));
	assert_int_equal(read_page(mem, 700), 6); /* the writes landed */
	squib_tracker_free(t);
	squib_dirty_bitmap_free(dst);
	unmap_mem(mem, REGION_SIZE);
}

static void test_should_report_only_new_writes_after_a_harvest_with_uffd_wp(void **state)
{
	uint8_t *mem = map_mem(REGION_SIZE);
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, mem);
	struct squib_tracker *t = uffd_tracker(&map);
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);
	uint64_t first[] = {1, 2, 3, 1000};
	uint64_t second[] = {3, 4, 1500};

	(void)state;
	write_page(mem, 9, 1); /* before start: not reported */
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	for (size_t i = 0; i < 4; i++)
		write_page(mem, first[i], 1);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	expect_pages(dst, first, 4);
	for (size_t i = 0; i < 3; i++)
		write_page(mem, second[i], 2);
	write_page(mem, 4, 3); /* twice in one round: once */
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	expect_pages(dst, second, 3);
	assert_int_equal(squib_tracker_reset_after_commit(t, NULL), 0);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	expect_none(dst);
	/* After stop the memory is plain memory again; a restart forgets what came before. */
	assert_int_equal(squib_tracker_stop(t, NULL), 0);
	write_page(mem, 20, 1);
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	write_page(mem, 21, 1);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	expect_pages(dst, (uint64_t[]){21}, 1);
	squib_tracker_free(t);
	squib_dirty_bitmap_free(dst);
	unmap_mem(mem, REGION_SIZE);
}

/* The kernel writing into tracked memory for the VMM (read(2) into a guest buffer) counts too. */
static void test_should_report_pages_the_kernel_writes_with_uffd_wp(void **state)
{
	uint8_t *mem = map_mem(REGION_SIZE);
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, mem);
	struct squib_tracker *t = uffd_tracker(&map);
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);
	uint64_t ps = page_size();
	char buf[64];
	int fds[2];

	(void)state;
	memset(buf, 0x5a, sizeof(buf));
	write_page(mem, 3, 1); /* populated before start */
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	/* Page 3 was populated, page 200 never touched: the kernel's copy faults on both. */
	assert_int_equal(write(fds[1], buf, sizeof(buf)), sizeof(buf));
	assert_int_equal(read(fds[0], mem + 3 * ps + 100, sizeof(buf)), sizeof(buf));
	assert_int_equal(write(fds[1], buf, sizeof(buf)), sizeof(buf));
	assert_int_equal(read(fds[0], mem + 200 * ps, sizeof(buf)), sizeof(buf));
	assert_int_equal(mem[200 * ps + 63], 0x5a);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	expect_pages(dst, (uint64_t[]){3, 200}, 2);
	close(fds[0]);
	close(fds[1]);
	squib_tracker_free(t);
	squib_dirty_bitmap_free(dst);
	unmap_mem(mem, REGION_SIZE);
}

/* ---- mprotect + SIGSEGV --------------------------------------------------- */

static void test_should_report_the_touched_blocks_with_the_fault_tracker(void **state)
{
	uint8_t *mem = map_mem(REGION_SIZE);
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, mem);
	struct squib_tracker *t = fault_tracker(&map, NULL);
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);
	uint64_t ppb = pages_per_block();
	/* Blocks 0 and 2 written (block 2 twice); block 1 only read, block 3 untouched. */
	uint64_t touched[] = {5, 2 * ppb, 2 * ppb + ppb - 1};
	uint64_t *want = calloc(REGION_SIZE / page_size(), sizeof(*want));
	size_t n;

	(void)state;
	memset(mem, 0x55, REGION_SIZE);
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	assert_int_equal(squib_tracker_fault_granule(t, 0), SQUIB_GRANULE_COARSE);
	for (size_t i = 0; i < 3; i++)
		write_page(mem, touched[i], (uint8_t)(i + 1));
	assert_int_equal(read_page(mem, ppb + 1), 0x55);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	/* The coarse granule over-reports exactly the touched 2 MiB blocks, nothing else. */
	n = blocks_of(touched, 3, want);
	assert_int_equal(n, 2 * ppb);
	expect_pages(dst, want, n);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(read_page(mem, touched[i]), i + 1);
	squib_tracker_free(t);
	free(want);
	squib_dirty_bitmap_free(dst);
	unmap_mem(mem, REGION_SIZE);
}

static void test_should_report_only_new_writes_after_a_harvest_with_the_fault_tracker(void **state)
{
	uint8_t *mem = map_mem(REGION_SIZE);
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, mem);
	struct squib_tracker *t = fault_tracker(&map, NULL);
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);
	uint64_t ppb = pages_per_block();
	uint64_t round1[] = {0}, round2[] = {3 * ppb + 2};
	uint64_t *want = calloc(REGION_SIZE / page_size(), sizeof(*want));
	size_t n;

	(void)state;
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	write_page(mem, round1[0], 1);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	n = blocks_of(round1, 1, want);
	expect_pages(dst, want, n);
	/* The harvest re-protected block 0: a write there counts again, so does a new block. */
	write_page(mem, round2[0], 2);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	n = blocks_of(round2, 1, want);
	expect_pages(dst, want, n);
	write_page(mem, 1, 3);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	n = blocks_of(round1, 1, want);
	expect_pages(dst, want, n);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	expect_none(dst);
	/* Stopped: the memory is writable without faults and nothing is recorded. */
	assert_int_equal(squib_tracker_stop(t, NULL), 0);
	write_page(mem, 2, 4);
	assert_int_equal(read_page(mem, 2), 4);
	squib_tracker_free(t);
	free(want);
	squib_dirty_bitmap_free(dst);
	unmap_mem(mem, REGION_SIZE);
}

static void test_should_refuse_to_track_host_memory_twice(void **state)
{
	uint8_t *mem = map_mem(2 * REGION_SIZE);
	struct squib_guest_region r1, r2;
	struct squib_memory_map m1 = one_region(&r1, GPA_A, mem);
	struct squib_memory_map m2 = one_region(&r2, GPA_B, mem + page_size());
	struct squib_tracker *a = fault_tracker(&m1, NULL), *b = fault_tracker(&m2, NULL);
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_tracker_start(a, NULL), 0);
	/* b's range overlaps a's in host memory: one handler could not tell them apart. */
	assert_int_equal(squib_tracker_start(b, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "already tracked"));
	assert_false(squib_tracker_is_active(b));
	write_page(mem, 3, 1); /* a still tracks */
	assert_int_equal(squib_tracker_stop(a, NULL), 0);
	assert_int_equal(squib_tracker_start(b, NULL), 0);
	squib_tracker_free(a);
	squib_tracker_free(b);
	unmap_mem(mem, 2 * REGION_SIZE);
}

struct fake_clock {
	uint64_t now;
};

static uint64_t fake_now(void *ctx)
{
	return ((struct fake_clock *)ctx)->now;
}

static void test_should_step_down_to_host_pages_when_one_block_is_hot(void **state)
{
	uint8_t *mem = map_mem(REGION_SIZE);
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, mem);
	struct fake_clock clk = {1000};
	struct squib_dirty_clock clock = {fake_now, &clk};
	struct squib_tracked_region_options opts = {4, &clock, NULL};
	struct squib_tracker *t = fault_tracker(&map, &opts);
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);
	uint64_t ppb = pages_per_block();
	uint64_t fine[] = {ppb + 3, ppb + 9, 40};

	(void)state;
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	/* Five faults on block 1, one per round: each harvest re-protects the block. */
	for (int i = 0; i < 5; i++) {
		write_page(mem, ppb, (uint8_t)i);
		assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
		assert_int_equal(squib_dirty_bitmap_count(dst), ppb);
		squib_dirty_bitmap_clear(dst);
	}
	/* The window has not elapsed: still coarse. */
	assert_int_equal(squib_tracker_fault_granule(t, 0), SQUIB_GRANULE_COARSE);
	clk.now += SQUIB_ADAPTIVE_WINDOW_NS;
	assert_int_equal(squib_tracker_fault_tick(t, NULL), 0);
	assert_int_equal(squib_tracker_fault_granule(t, 0), SQUIB_GRANULE_FINE);
	/* Fine: each written host page alone, in the hot block and elsewhere. */
	for (size_t i = 0; i < 3; i++)
		write_page(mem, fine[i], 9);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	expect_pages(dst, fine, 3);
	write_page(mem, ppb + 3, 10);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	expect_pages(dst, (uint64_t[]){ppb + 3}, 1);
	/* A durable Diff ends the session: back to coarse. */
	assert_int_equal(squib_tracker_reset_after_commit(t, NULL), 0);
	assert_int_equal(squib_tracker_fault_granule(t, 0), SQUIB_GRANULE_COARSE);
	write_page(mem, 2 * ppb, 11);
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	assert_int_equal(squib_dirty_bitmap_count(dst), ppb);
	assert_true(squib_dirty_bitmap_test_by_index(dst, 2 * ppb + ppb - 1));
	squib_tracker_free(t);
	squib_dirty_bitmap_free(dst);
	unmap_mem(mem, REGION_SIZE);
}

static void test_should_keep_fine_writes_when_reset_folds_back_to_coarse(void **state)
{
	uint8_t *mem = map_mem(REGION_SIZE);
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, mem);
	struct fake_clock clk = {0};
	struct squib_dirty_clock clock = {fake_now, &clk};
	struct squib_tracked_region_options opts = {0, &clock, NULL};
	struct squib_tracker *t = fault_tracker(&map, &opts);
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);
	uint64_t ppb = pages_per_block();

	(void)state;
	assert_int_equal(squib_tracker_start(t, NULL), 0);
	write_page(mem, 0, 1); /* threshold 0: one fault is hot */
	clk.now += SQUIB_ADAPTIVE_WINDOW_NS;
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	assert_int_equal(squib_tracker_fault_granule(t, 0), SQUIB_GRANULE_FINE);
	squib_dirty_bitmap_clear(dst);
	/* A fine write, then the reset: the page's bit is widened to its block, not lost. */
	write_page(mem, ppb + 1, 2);
	assert_int_equal(squib_tracker_reset_after_commit(t, NULL), 0);
	write_page(mem, ppb + 1, 3); /* still writable: no fault, the bit covers it */
	assert_int_equal(squib_tracker_harvest(t, dst, NULL), 0);
	assert_int_equal(squib_dirty_bitmap_count(dst), ppb);
	assert_true(squib_dirty_bitmap_test_by_index(dst, ppb + 1));
	squib_tracker_free(t);
	squib_dirty_bitmap_free(dst);
	unmap_mem(mem, REGION_SIZE);
}

/* ---- give-back and the union ---------------------------------------------- */

static void test_should_report_given_back_pages_again(void **state)
{
	uint8_t *mem_u = map_mem(REGION_SIZE), *mem_f = map_mem(REGION_SIZE);
	struct squib_guest_region ru, rf, rm;
	struct squib_memory_map mu = one_region(&ru, GPA_A, mem_u);
	struct squib_memory_map mf = one_region(&rf, GPA_A, mem_f);
	struct squib_memory_map mm = one_region(&rm, GPA_A, NULL);
	struct squib_tracker *t[3] = {uffd_tracker(&mu), fault_tracker(&mf, NULL),
				      marks_tracker(&mm)};
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);
	struct squib_dirty_bitmap *diff = new_dst(GPA_A, REGION_SIZE);
	uint64_t ps = page_size();

	(void)state;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(squib_tracker_start(t[i], NULL), 0);
		/* Round 1: page 7 is written and harvested, then the Diff "fails". */
		write_page(mem_u, 7, 1);
		write_page(mem_f, 7, 1);
		squib_tracker_mark_write(t[i], GPA_A + 7 * ps, 1);
		assert_int_equal(squib_tracker_harvest(t[i], diff, NULL), 0);
		assert_true(squib_dirty_bitmap_test_by_index(diff, 7));
		assert_int_equal(squib_tracker_give_back(t[i], diff, NULL), 0);
		squib_dirty_bitmap_clear(diff);
		/* Round 2: page 7 is reported again though nobody wrote it, next to a new write. */
		write_page(mem_u, 9, 2);
		write_page(mem_f, 9, 2);
		squib_tracker_mark_write(t[i], GPA_A + 9 * ps, 1);
		assert_int_equal(squib_tracker_harvest(t[i], dst, NULL), 0);
		assert_true(squib_dirty_bitmap_test_by_index(dst, 7));
		assert_true(squib_dirty_bitmap_test_by_index(dst, 9));
		if (i != 1) /* exact trackers: nothing else */
			assert_int_equal(squib_dirty_bitmap_count(dst), 2);
		squib_dirty_bitmap_clear(dst);
		/* Round 3: given back once, reported once. */
		assert_int_equal(squib_tracker_harvest(t[i], dst, NULL), 0);
		assert_int_equal(squib_dirty_bitmap_count(dst), 0);
		squib_tracker_free(t[i]);
	}
	squib_dirty_bitmap_free(dst);
	squib_dirty_bitmap_free(diff);
	unmap_mem(mem_u, REGION_SIZE);
	unmap_mem(mem_f, REGION_SIZE);
}

static void test_should_harvest_the_union_of_several_trackers(void **state)
{
	uint8_t *mem_a = map_mem(REGION_SIZE), *mem_b = map_mem(REGION_SIZE);
	struct squib_guest_region ra, rb, both[2];
	struct squib_memory_map ma = one_region(&ra, GPA_A, mem_a);
	struct squib_memory_map mb = one_region(&rb, GPA_B, mem_b);
	struct squib_memory_map mab = {both, 2};
	struct squib_tracker *uffd, *fault, *marks;
	struct squib_tracker_set set = SQUIB_TRACKER_SET_INIT;
	struct squib_dirty_bitmap *all = new_dst(GPA_A, 2 * REGION_SIZE);
	uint64_t ps = page_size(), n = pages_per_region(), ppb = pages_per_block();
	uint64_t *want = calloc(2 * n, sizeof(*want));
	size_t k = 0;

	(void)state;
	both[0] = ra;
	both[1] = rb;
	uffd = uffd_tracker(&ma);	  /* the VMM process's own writes to region A */
	fault = fault_tracker(&mb, NULL); /* region B through mprotect */
	marks = marks_tracker(&mab);	  /* device DMA anywhere */
	assert_int_equal(squib_tracker_set_add(&set, uffd, NULL), 0);
	assert_int_equal(squib_tracker_set_add(&set, fault, NULL), 0);
	assert_int_equal(squib_tracker_set_add(&set, marks, NULL), 0);
	assert_int_equal(squib_tracker_set_add(&set, marks, NULL), SQUIB_E_INVALID_ARGUMENT);
	for (size_t i = 0; i < set.count; i++)
		assert_int_equal(squib_tracker_start(set.trackers[i], NULL), 0);
	write_page(mem_a, 3, 1);
	write_page(mem_b, 1, 1);
	squib_tracker_mark_write(marks, GPA_A + 3 * ps, ps); /* overlaps the uffd write */
	squib_tracker_mark_write(marks, GPA_A + 11 * ps, ps);
	squib_tracker_mark_write(marks, GPA_B + 3 * ppb * ps, 1);
	assert_int_equal(squib_tracker_set_harvest(&set, all, NULL), 0);
	want[k++] = 3;
	want[k++] = 11;
	for (uint64_t p = 0; p < ppb; p++) /* region B's block 0, through the fault tracker */
		want[k++] = n + p;
	want[k++] = n + 3 * ppb;
	expect_pages(all, want, k);
	assert_int_equal(squib_tracker_set_reset_after_commit(&set, NULL), 0);
	assert_int_equal(squib_tracker_set_harvest(&set, all, NULL), 0);
	expect_none(all);
	for (size_t i = 0; i < set.count; i++)
		squib_tracker_free(set.trackers[i]);
	free(want);
	squib_dirty_bitmap_free(all);
	unmap_mem(mem_a, REGION_SIZE);
	unmap_mem(mem_b, REGION_SIZE);
}

/*
 * A tracker shaped like KVM's dirty log in manual-protect mode: a raw
 * per-slot word bitmap at the host page, OR-ed in with or_words. It can be
 * told to fail its harvest.
 */
struct fake_kvm {
	uint64_t gpa;
	uint64_t words[REGION_SIZE / 4096 / 64];
	uint64_t nbits;
	struct squib_dirty_bitmap *given_back;
	int fail_harvest;
	int harvests;
};

static int kvm_start(void *ctx, struct squib_error_detail *d)
{
	(void)ctx;
	(void)d;
	return 0;
}

static int kvm_harvest(void *ctx, struct squib_dirty_bitmap *dst, struct squib_error_detail *d)
{
	struct fake_kvm *k = ctx;

	k->harvests++;
	if (k->fail_harvest)
		return squib_fail_errno(d, SQUIB_E_IO, EIO);
	squib_dirty_bitmap_drain_merge(dst, k->given_back, NULL);
	/* GET_DIRTY_LOG, then CLEAR_DIRTY_LOG of what it returned. */
	squib_dirty_bitmap_or_words(dst, k->gpa, page_size(), k->words, k->nbits);
	memset(k->words, 0, sizeof(k->words));
	return 0;
}

static int kvm_give_back(void *ctx, const struct squib_dirty_bitmap *src,
			 struct squib_error_detail *d)
{
	return squib_dirty_bitmap_merge(((struct fake_kvm *)ctx)->given_back, src, d);
}

static int kvm_stop(void *ctx, struct squib_error_detail *d)
{
	(void)ctx;
	(void)d;
	return 0;
}

static void kvm_free(void *ctx)
{
	squib_dirty_bitmap_free(((struct fake_kvm *)ctx)->given_back);
}

static const struct squib_tracker_ops fake_kvm_ops = {
    "fake-kvm", kvm_start, kvm_harvest, kvm_give_back, NULL, kvm_stop, kvm_free,
};

static void test_should_give_back_to_every_tracker_when_one_harvest_fails(void **state)
{
	struct squib_guest_region r;
	struct squib_memory_map map = one_region(&r, GPA_A, NULL);
	struct fake_kvm kvm = {.gpa = GPA_A, .nbits = REGION_SIZE / 4096};
	struct squib_tracker *marks = marks_tracker(&map), *k = NULL;
	struct squib_tracker_set set = SQUIB_TRACKER_SET_INIT;
	struct squib_dirty_bitmap *dst = new_dst(GPA_A, REGION_SIZE);
	struct squib_error_detail d;
	uint64_t ps = page_size();

	(void)state;
	if (ps != 4096)
		skip(); /* the fake log's word array is sized for 4 KiB pages */
	kvm.given_back = new_dst(GPA_A, REGION_SIZE);
	assert_int_equal(squib_tracker_new(&fake_kvm_ops, &kvm, &map, &k, NULL), 0);
	assert_string_equal(squib_tracker_name(k), "fake-kvm");
	assert_ptr_equal(squib_tracker_ctx(k), &kvm);
	assert_int_equal(squib_tracker_set_add(&set, marks, NULL), 0);
	assert_int_equal(squib_tracker_set_add(&set, k, NULL), 0);
	assert_int_equal(squib_tracker_start(marks, NULL), 0);
	assert_int_equal(squib_tracker_start(k, NULL), 0);
	squib_tracker_mark_write(marks, GPA_A + 2 * ps, 1);
	kvm.words[0] = 1ull << 5 | 1ull << 6;
	kvm.fail_harvest = 1;
	/* marks handed page 2 over, then the log failed: page 2 goes back to everyone. */
	assert_int_equal(squib_tracker_set_harvest(&set, dst, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, EIO);
	squib_dirty_bitmap_clear(dst);
	kvm.fail_harvest = 0;
	assert_int_equal(squib_tracker_set_harvest(&set, dst, NULL), 0);
	expect_pages(dst, (uint64_t[]){2, 5, 6}, 3);
	/* A Diff written from the union fails: every tracker gets all of it back. */
	kvm.words[1] = 1;
	assert_int_equal(squib_tracker_set_harvest(&set, dst, NULL), 0);
	assert_int_equal(squib_tracker_set_give_back(&set, dst, NULL), 0);
	squib_dirty_bitmap_clear(dst);
	assert_int_equal(squib_tracker_harvest(marks, dst, NULL), 0);
	expect_pages(dst, (uint64_t[]){64}, 1);
	assert_int_equal(squib_tracker_harvest(k, dst, NULL), 0);
	expect_pages(dst, (uint64_t[]){64}, 1);
	assert_int_equal(kvm.harvests, 4);
	squib_tracker_free(marks);
	squib_tracker_free(k);
	squib_dirty_bitmap_free(dst);
}

static void test_should_or_raw_words_like_a_kvm_dirty_log(void **state)
{
	struct squib_dirty_bitmap *fine = NULL, *coarse = NULL;
	uint64_t words[2] = {0x3ull | 1ull << 63, 0xffull};

	(void)state;
	assert_int_equal(squib_dirty_bitmap_new(GPA_A, 1ull << 20, 4096, &fine, NULL), 0);
	assert_int_equal(squib_dirty_bitmap_new(GPA_A, 1ull << 20, 1ull << 16, &coarse, NULL), 0);
	/*
	 * 4 KiB bits from GPA_A - 4 KiB, 68 of them: bit 0 is outside the range,
	 * bits 1, 63..67 are pages 0, 62..66; bits 68..71 are past nbits.
	 */
	assert_int_equal(squib_dirty_bitmap_or_words(fine, GPA_A - 4096, 4096, words, 68), 6);
	expect_pages(fine, (uint64_t[]){0, 62, 63, 64, 65, 66}, 6);
	/* At 64 KiB dst pages they land in pages 0, 3 and 4. */
	assert_int_equal(squib_dirty_bitmap_or_words(coarse, GPA_A - 4096, 4096, words, 68), 3);
	assert_true(squib_dirty_bitmap_test_by_index(coarse, 0));
	assert_true(squib_dirty_bitmap_test_by_index(coarse, 3));
	assert_true(squib_dirty_bitmap_test_by_index(coarse, 4));
	assert_int_equal(squib_dirty_bitmap_or_words(coarse, GPA_A, 4096, words, 0), 0);
	assert_int_equal(squib_dirty_bitmap_or_words(coarse, GPA_A, 3, words, 64), 0);
	assert_int_equal(squib_dirty_bitmap_or_words(NULL, GPA_A, 4096, words, 64), 0);
	/* A log reaching past 2^64 stops there. */
	assert_int_equal(squib_dirty_bitmap_or_words(coarse, UINT64_MAX - 4095, 4096, words, 128),
			 0);
	squib_dirty_bitmap_free(fine);
	squib_dirty_bitmap_free(coarse);
}

/* ---- crashes are not swallowed (in a fresh child process) ------------------- */

static char *self_exe;

/* Child: a fault tracker runs, then a write to an unrelated read-only mapping. */
static void crash_child(int chain)
{
	uint8_t *tracked = map_mem(REGION_SIZE);
	uint8_t *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct squib_guest_region r = {GPA_A, REGION_SIZE, tracked, 0};
	struct squib_memory_map map = {&r, 1};
	struct squib_tracker *t = NULL;

	if (chain) {
		/* A previous handler of the application's own: it must be the one that runs. */
		struct sigaction sa = {.sa_handler = _exit};

		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, &sa, NULL))
			_exit(3);
	}
	if (ro == MAP_FAILED || squib_tracker_fault_new(&map, NULL, &t, NULL) ||
	    squib_tracker_start(t, NULL))
		_exit(2);
	tracked[0] = 1; /* a tracked fault, handled */
	((volatile uint8_t *)ro)[0] = 1;
	_exit(0); /* reached only if the crash was swallowed */
}

/* Run this test binary again as a crash child; its wait status. */
static int run_crash_child(const char *mode)
{
	pid_t pid = fork();
	int status = 0;

	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = {self_exe, (char *)mode, NULL};

		/* A sanitizer's own SEGV handler would report and exit: keep the default action. */
		setenv("ASAN_OPTIONS", "handle_segv=0:allow_user_segv_handler=1", 1);
		setenv("TSAN_OPTIONS", "handle_segv=0", 1);
		execv(self_exe, argv);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static void test_should_not_swallow_a_real_crash(void **state)
{
	int status = run_crash_child("--crash-child");

	(void)state;
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGSEGV);
}

static void test_should_forward_a_foreign_fault_to_the_previous_handler(void **state)
{
	int status = run_crash_child("--crash-child-chained");

	(void)state;
	/* The application's handler is _exit: called with the signal number as status. */
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), SIGSEGV);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_reject_bad_memory_maps),
	    cmocka_unit_test(test_should_require_a_host_mapping_for_memory_trackers),
	    cmocka_unit_test(test_should_enforce_the_tracker_state_machine),
	    cmocka_unit_test(test_should_reject_a_bitmap_that_a_region_straddles),
	    cmocka_unit_test(test_should_report_vmm_marks_by_guest_range),
	    cmocka_unit_test(test_should_ignore_marks_for_other_tracker_kinds),
	    cmocka_unit_test(test_should_report_exactly_the_written_pages_with_uffd_wp),
	    cmocka_unit_test(test_should_report_only_new_writes_after_a_harvest_with_uffd_wp),
	    cmocka_unit_test(test_should_report_pages_the_kernel_writes_with_uffd_wp),
	    cmocka_unit_test(test_should_report_the_touched_blocks_with_the_fault_tracker),
	    cmocka_unit_test(
		test_should_report_only_new_writes_after_a_harvest_with_the_fault_tracker),
	    cmocka_unit_test(test_should_refuse_to_track_host_memory_twice),
	    cmocka_unit_test(test_should_step_down_to_host_pages_when_one_block_is_hot),
	    cmocka_unit_test(test_should_keep_fine_writes_when_reset_folds_back_to_coarse),
	    cmocka_unit_test(test_should_report_given_back_pages_again),
	    cmocka_unit_test(test_should_harvest_the_union_of_several_trackers),
	    cmocka_unit_test(test_should_give_back_to_every_tracker_when_one_harvest_fails),
	    cmocka_unit_test(test_should_or_raw_words_like_a_kvm_dirty_log),
	    cmocka_unit_test(test_should_not_swallow_a_real_crash),
	    cmocka_unit_test(test_should_forward_a_foreign_fault_to_the_previous_handler),
	};

	if (argc == 2 && strcmp(argv[1], "--crash-child") == 0)
		crash_child(0);
	if (argc == 2 && strcmp(argv[1], "--crash-child-chained") == 0)
		crash_child(1);
	self_exe = realpath("/proc/self/exe", NULL);
	if (!self_exe)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
