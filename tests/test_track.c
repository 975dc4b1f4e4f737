/* SPDX-License-Identifier: Apache-2.0 */
/* Dirty trackers: the generic interface, the tracker set, VMM marks. */
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

/* A bitmap over [gpa, gpa + size) at the host page. */
static struct squib_dirty_bitmap *new_dst(uint64_t gpa, uint64_t size)
{
	struct squib_dirty_bitmap *bm = NULL;

	assert_int_equal(squib_dirty_bitmap_new(gpa, size, page_size(), &bm, NULL), 0);
	return bm;
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

static struct squib_memory_map one_region(struct squib_guest_region *r, uint64_t gpa, void *hva)
{
	*r = (struct squib_guest_region){gpa, REGION_SIZE, hva, 0};
	return (struct squib_memory_map){r, 1};
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

/* ---- give-back and the union -------------------------------------------- */

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_reject_bad_memory_maps),
	    cmocka_unit_test(test_should_enforce_the_tracker_state_machine),
	    cmocka_unit_test(test_should_reject_a_bitmap_that_a_region_straddles),
	    cmocka_unit_test(test_should_report_vmm_marks_by_guest_range),
	    cmocka_unit_test(test_should_give_back_to_every_tracker_when_one_harvest_fails),
	    cmocka_unit_test(test_should_or_raw_words_like_a_kvm_dirty_log),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
