/* SPDX-License-Identifier: Apache-2.0 */
/* Dirty tracking: upstream dirty.rs tests plus the C API's own cases. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/dirty.h>

#define REGION_BASE 0x80000000ull
#define REGION_SIZE 0x10000000ull /* 256 MiB */
#define PAGE_2M (2ull * 1024 * 1024)
#define PAGE_16K (16ull * 1024)

static struct squib_dirty_bitmap *new_bitmap(uint64_t start, uint64_t size, uint64_t page)
{
	struct squib_dirty_bitmap *bm = NULL;

	assert_int_equal(squib_dirty_bitmap_new(start, size, page, &bm, NULL), 0);
	assert_non_null(bm);
	return bm;
}

/* The region of the upstream tests at 2 MiB. */
static struct squib_dirty_bitmap *region_2m(void)
{
	return new_bitmap(REGION_BASE, REGION_SIZE, PAGE_2M);
}

static const char *message(const struct squib_error_detail *d)
{
	static char buf[SQUIB_DETAIL_MSG_MAX + 64];

	squib_error_message(d->code, d, buf, sizeof(buf));
	return buf;
}

static void assert_new_fails(uint64_t start, uint64_t size, uint64_t page, const char *msg)
{
	struct squib_dirty_bitmap *bm = (struct squib_dirty_bitmap *)&bm;
	struct squib_error_detail d;

	assert_int_equal(squib_dirty_bitmap_new(start, size, page, &bm, &d), SQUIB_E_INVALID_PATH);
	assert_null(bm);
	assert_int_equal(d.code, SQUIB_E_INVALID_PATH);
	assert_string_equal(message(&d), msg);
}

static int count_page(void *ctx, uint64_t page)
{
	(void)page;
	(*(int *)ctx)++;
	return 0;
}

static void test_should_count_pages_with_2mib_default(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();

	(void)state;
	assert_int_equal(squib_dirty_bitmap_page_count(bm), 128);
	assert_int_equal(squib_dirty_bitmap_page_size(bm), PAGE_2M);
	assert_int_equal(squib_dirty_bitmap_page_shift(bm), 21);
	assert_int_equal(squib_dirty_bitmap_ram_start(bm), REGION_BASE);
	assert_int_equal(squib_dirty_bitmap_ram_size(bm), REGION_SIZE);
	squib_dirty_bitmap_free(bm);
}

static void test_should_track_a_dirty_page_at_an_aligned_address(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();
	uint64_t target = REGION_BASE + 5 * PAGE_2M;

	(void)state;
	assert_false(squib_dirty_bitmap_test(bm, target));
	assert_true(squib_dirty_bitmap_set(bm, target));
	assert_true(squib_dirty_bitmap_test(bm, target));
	assert_false(squib_dirty_bitmap_set(bm, target)); /* reports the transition only once */
	squib_dirty_bitmap_free(bm);
}

static void test_should_round_an_unaligned_address_into_its_page(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();
	uint64_t aligned = REGION_BASE + 3 * PAGE_2M, page = 0;

	(void)state;
	assert_true(squib_dirty_bitmap_set(bm, aligned + 0x1234));
	assert_true(squib_dirty_bitmap_test(bm, aligned));
	assert_true(squib_dirty_bitmap_test_by_index(bm, 3));
	assert_true(squib_dirty_bitmap_page_index_of(bm, aligned + 0x1234, &page));
	assert_int_equal(page, 3);
	assert_false(squib_dirty_bitmap_test_by_index(bm, 2));
	assert_false(squib_dirty_bitmap_test_by_index(bm, 4));
	squib_dirty_bitmap_free(bm);
}

static void test_should_reject_addresses_outside_the_tracked_range(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();
	uint64_t page = 42;

	(void)state;
	assert_false(squib_dirty_bitmap_set(bm, REGION_BASE - 1));
	assert_false(squib_dirty_bitmap_set(bm, REGION_BASE + REGION_SIZE));
	assert_false(squib_dirty_bitmap_set_by_index(bm, 128));
	assert_false(squib_dirty_bitmap_test(bm, REGION_BASE - 1));
	assert_false(squib_dirty_bitmap_test_by_index(bm, 128));
	assert_false(squib_dirty_bitmap_page_index_of(bm, REGION_BASE + REGION_SIZE, &page));
	assert_int_equal(page, 42);
	assert_int_equal(squib_dirty_bitmap_count(bm), 0);
	squib_dirty_bitmap_free(bm);
}

static void test_should_drain_dirty_pages_in_index_order(void **state)
{
	static const uint64_t marks[] = {3, 100, 0, 64};
	struct squib_dirty_bitmap *bm = region_2m();
	uint64_t pages[8];

	(void)state;
	for (size_t i = 0; i < 4; i++)
		assert_true(squib_dirty_bitmap_set_by_index(bm, marks[i]));
	/* Ascending without sorting: the drain walks words and bits in order. */
	assert_int_equal(squib_dirty_bitmap_drain(bm, pages, 8), 4);
	assert_int_equal(pages[0], 0);
	assert_int_equal(pages[1], 3);
	assert_int_equal(pages[2], 64);
	assert_int_equal(pages[3], 100);
	assert_false(squib_dirty_bitmap_test(bm, REGION_BASE));
	assert_int_equal(squib_dirty_bitmap_drain(bm, pages, 8), 0);
	squib_dirty_bitmap_free(bm);
}

static void test_should_drain_into_callback_without_allocation(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();
	uint64_t drained = 0;
	int calls = 0;

	(void)state;
	squib_dirty_bitmap_set_by_index(bm, 0);
	squib_dirty_bitmap_set_by_index(bm, 127);
	assert_int_equal(squib_dirty_bitmap_drain_into(bm, count_page, &calls, &drained), 0);
	assert_int_equal(calls, 2);
	assert_int_equal(drained, 2);
	assert_int_equal(squib_dirty_bitmap_count(bm), 0);
	squib_dirty_bitmap_free(bm);
}

static void test_should_reject_non_power_of_two_page_size(void **state)
{
	(void)state;
	assert_new_fails(REGION_BASE, REGION_SIZE, 3000,
			 "invalid snapshot path: page_size must be a power of two: 3000");
	assert_new_fails(REGION_BASE, REGION_SIZE, 0,
			 "invalid snapshot path: page_size must be a power of two: 0");
}

static void test_should_reject_zero_size_range(void **state)
{
	(void)state;
	assert_new_fails(REGION_BASE, 0, PAGE_2M,
			 "invalid snapshot path: dirty bitmap requires a non-empty RAM range");
}

static void test_should_reject_a_range_that_overflows(void **state)
{
	struct squib_dirty_bitmap *bm = NULL;

	(void)state;
	assert_new_fails(UINT64_MAX - 0xfff, 0x1000, PAGE_16K,
			 "invalid snapshot path: RAM range overflows: start=0xfffffffffffff000, "
			 "size=0x1000");
	/* Ending exactly at the last byte is fine. */
	assert_int_equal(squib_dirty_bitmap_new(UINT64_MAX - 0xfff, 0xfff, PAGE_16K, &bm, NULL), 0);
	assert_int_equal(squib_dirty_bitmap_page_count(bm), 1);
	assert_true(squib_dirty_bitmap_set(bm, UINT64_MAX - 1));
	squib_dirty_bitmap_free(bm);
}

static void test_should_reject_a_bitmap_above_the_size_limit(void **state)
{
	(void)state;
	assert_new_fails(0, UINT64_MAX, 1,
			 "invalid snapshot path: dirty bitmap too large: "
			 "page_count=18446744073709551615 (limit 68719476736)");
}

static void test_should_fold_coarse_bits_into_fine_bitmap(void **state)
{
	struct squib_dirty_bitmap *coarse = region_2m();
	struct squib_dirty_bitmap *fine = new_bitmap(REGION_BASE, REGION_SIZE, PAGE_16K);

	(void)state;
	squib_dirty_bitmap_set_by_index(coarse, 2); /* 2 MiB block 2: fine pages 256..383 */
	assert_int_equal(squib_dirty_bitmap_fold_into_finer(coarse, fine, NULL), 0);
	assert_true(squib_dirty_bitmap_test(fine, REGION_BASE + 2 * PAGE_2M));
	assert_true(squib_dirty_bitmap_test(fine, REGION_BASE + 2 * PAGE_2M + 100 * PAGE_16K));
	assert_false(squib_dirty_bitmap_test(fine, REGION_BASE + PAGE_2M));
	assert_int_equal(squib_dirty_bitmap_count(fine), 128);
	assert_true(squib_dirty_bitmap_test_by_index(fine, 256));
	assert_true(squib_dirty_bitmap_test_by_index(fine, 383));
	assert_false(squib_dirty_bitmap_test_by_index(fine, 255));
	assert_false(squib_dirty_bitmap_test_by_index(fine, 384));
	assert_true(squib_dirty_bitmap_test_by_index(coarse, 2)); /* the fold does not clear */
	squib_dirty_bitmap_free(coarse);
	squib_dirty_bitmap_free(fine);
}

static void assert_fold_fails(const struct squib_dirty_bitmap *coarse,
			      struct squib_dirty_bitmap *fine, const char *msg)
{
	struct squib_error_detail d;

	assert_int_equal(squib_dirty_bitmap_fold_into_finer(coarse, fine, &d),
			 SQUIB_E_INVALID_PATH);
	assert_string_equal(message(&d), msg);
}

static void test_should_reject_fold_with_mismatched_ranges(void **state)
{
	struct squib_dirty_bitmap *coarse = region_2m();
	struct squib_dirty_bitmap *fine = new_bitmap(REGION_BASE + PAGE_16K, REGION_SIZE, PAGE_16K);

	(void)state;
	assert_fold_fails(coarse, fine,
			  "invalid snapshot path: fold_into_finer requires identical ranges");
	squib_dirty_bitmap_free(coarse);
	squib_dirty_bitmap_free(fine);
}

static void test_should_reject_fold_when_target_is_not_finer(void **state)
{
	struct squib_dirty_bitmap *a = region_2m(), *b = region_2m();
	struct squib_dirty_bitmap *fine = new_bitmap(REGION_BASE, REGION_SIZE, PAGE_16K);

	(void)state;
	assert_fold_fails(a, b,
			  "invalid snapshot path: fold_into_finer expects a strictly smaller page "
			  "size");
	assert_fold_fails(fine, a,
			  "invalid snapshot path: fold_into_finer expects a strictly smaller page "
			  "size");
	squib_dirty_bitmap_free(a);
	squib_dirty_bitmap_free(b);
	squib_dirty_bitmap_free(fine);
}

static void test_should_track_a_partial_trailing_page(void **state)
{
	/* 3 full 2 MiB pages and one byte: 4 pages, the last one a byte long. */
	struct squib_dirty_bitmap *bm = new_bitmap(REGION_BASE, 3 * PAGE_2M + 1, PAGE_2M);
	struct squib_dirty_bitmap *fine = new_bitmap(REGION_BASE, 3 * PAGE_2M + 1, PAGE_16K);
	uint64_t pages[8];

	(void)state;
	assert_int_equal(squib_dirty_bitmap_page_count(bm), 4);
	assert_true(squib_dirty_bitmap_set(bm, REGION_BASE + 3 * PAGE_2M));
	assert_false(squib_dirty_bitmap_set(bm, REGION_BASE + 3 * PAGE_2M + 1));
	assert_false(squib_dirty_bitmap_set_by_index(bm, 4));
	/* The fold stops at the fine bitmap's last page, which is also partial. */
	assert_int_equal(squib_dirty_bitmap_fold_into_finer(bm, fine, NULL), 0);
	assert_int_equal(squib_dirty_bitmap_count(fine), 1);
	assert_true(squib_dirty_bitmap_test_by_index(fine, 3 * 128));
	assert_int_equal(squib_dirty_bitmap_drain(bm, pages, 8), 1);
	assert_int_equal(pages[0], 3);
	squib_dirty_bitmap_free(bm);
	squib_dirty_bitmap_free(fine);
}

static void test_should_mark_every_page_a_byte_range_touches(void **state)
{
	struct squib_dirty_bitmap *bm = new_bitmap(REGION_BASE, REGION_SIZE, PAGE_16K);

	(void)state;
	/* Two bytes straddling the boundary of pages 9 and 10. */
	assert_int_equal(squib_dirty_bitmap_set_range(bm, REGION_BASE + 10 * PAGE_16K - 1, 2), 2);
	assert_true(squib_dirty_bitmap_test_by_index(bm, 9));
	assert_true(squib_dirty_bitmap_test_by_index(bm, 10));
	/* Pages 8..200 cross four words; 9 and 10 were already dirty. */
	assert_int_equal(squib_dirty_bitmap_set_range(bm, REGION_BASE + 8 * PAGE_16K + 5,
						      192 * PAGE_16K),
			 193 - 2);
	assert_false(squib_dirty_bitmap_test_by_index(bm, 7));
	assert_true(squib_dirty_bitmap_test_by_index(bm, 200));
	assert_false(squib_dirty_bitmap_test_by_index(bm, 201));
	assert_int_equal(squib_dirty_bitmap_count(bm), 193);
	assert_int_equal(squib_dirty_bitmap_set_range(bm, REGION_BASE, 0), 0);
	squib_dirty_bitmap_free(bm);
}

static void test_should_clip_a_byte_range_to_the_tracked_range(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();

	(void)state;
	/* Starts below the region: only page 0 is in it. */
	assert_int_equal(squib_dirty_bitmap_set_range(bm, REGION_BASE - 100, 101), 1);
	/* Runs past the end (and past 2^64): only the last page. */
	assert_int_equal(squib_dirty_bitmap_set_range(bm, REGION_BASE + REGION_SIZE - 1, UINT64_MAX),
			 1);
	assert_true(squib_dirty_bitmap_test_by_index(bm, 127));
	/* Entirely outside. */
	assert_int_equal(squib_dirty_bitmap_set_range(bm, 0, REGION_BASE), 0);
	assert_int_equal(squib_dirty_bitmap_set_range(bm, REGION_BASE + REGION_SIZE, 1), 0);
	/* The whole region and more. */
	assert_int_equal(squib_dirty_bitmap_set_range(bm, 0, UINT64_MAX), 126);
	assert_int_equal(squib_dirty_bitmap_count(bm), 128);
	squib_dirty_bitmap_free(bm);
}

static void test_should_count_dirty_pages(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();

	(void)state;
	assert_int_equal(squib_dirty_bitmap_count(bm), 0);
	for (uint64_t p = 0; p < 128; p += 3)
		squib_dirty_bitmap_set_by_index(bm, p);
	assert_int_equal(squib_dirty_bitmap_count(bm), 43);
	squib_dirty_bitmap_clear(bm);
	assert_int_equal(squib_dirty_bitmap_count(bm), 0);
	assert_false(squib_dirty_bitmap_test_by_index(bm, 0));
	squib_dirty_bitmap_free(bm);
}

static void test_should_drain_a_bounded_buffer_in_instalments(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();
	uint64_t pages[3];

	(void)state;
	for (uint64_t p = 60; p < 65; p++)
		squib_dirty_bitmap_set_by_index(bm, p);
	assert_int_equal(squib_dirty_bitmap_drain(bm, pages, 3), 3);
	assert_int_equal(pages[0], 60);
	assert_int_equal(pages[2], 62);
	/* 63 shared a word with the delivered pages and was given back; 64 was never taken. */
	assert_int_equal(squib_dirty_bitmap_count(bm), 2);
	assert_int_equal(squib_dirty_bitmap_drain(bm, pages, 3), 2);
	assert_int_equal(pages[0], 63);
	assert_int_equal(pages[1], 64);
	assert_int_equal(squib_dirty_bitmap_drain(bm, NULL, 3), 0);
	squib_dirty_bitmap_free(bm);
}

struct stop_at {
	uint64_t stop;
	int seen;
};

static int stop_at_page(void *ctx, uint64_t page)
{
	struct stop_at *s = ctx;

	if (page == s->stop)
		return SQUIB_E_MEMORY_IO;
	s->seen++;
	return 0;
}

static void test_should_keep_undelivered_pages_when_the_callback_fails(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();
	struct stop_at s = {5, 0};
	uint64_t drained = 99;

	(void)state;
	for (uint64_t p = 1; p < 128; p *= 2) /* 1 2 4 8 16 32 64 */
		squib_dirty_bitmap_set_by_index(bm, p);
	squib_dirty_bitmap_set_by_index(bm, 5);
	assert_int_equal(squib_dirty_bitmap_drain_into(bm, stop_at_page, &s, &drained),
			 SQUIB_E_MEMORY_IO);
	assert_int_equal(drained, 3); /* 1 2 4 */
	assert_int_equal(s.seen, 3);
	assert_int_equal(squib_dirty_bitmap_count(bm), 5); /* 5 8 16 32 64 */
	assert_true(squib_dirty_bitmap_test_by_index(bm, 5));
	assert_false(squib_dirty_bitmap_test_by_index(bm, 4));
	squib_dirty_bitmap_free(bm);
}

static void test_should_drain_into_an_allocated_array(void **state)
{
	struct squib_dirty_bitmap *bm = new_bitmap(REGION_BASE, REGION_SIZE, PAGE_16K);
	uint64_t *pages = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(squib_dirty_bitmap_drain_alloc(bm, &pages, &n, NULL), 0);
	assert_null(pages);
	assert_int_equal(n, 0);
	for (uint64_t p = 3; p < 16384; p += 7)
		squib_dirty_bitmap_set_by_index(bm, p);
	assert_int_equal(squib_dirty_bitmap_drain_alloc(bm, &pages, &n, NULL), 0);
	assert_int_equal(n, 16383 / 7 + 1);
	for (size_t i = 1; i < n; i++)
		assert_true(pages[i - 1] < pages[i]);
	assert_int_equal(pages[n - 1], 16383);
	assert_int_equal(squib_dirty_bitmap_count(bm), 0);
	free(pages);
	squib_dirty_bitmap_free(bm);
}

static void test_should_or_a_same_geometry_bitmap_in(void **state)
{
	struct squib_dirty_bitmap *dst = region_2m(), *src = region_2m();

	(void)state;
	squib_dirty_bitmap_set_by_index(dst, 1);
	squib_dirty_bitmap_set_by_index(src, 1);
	squib_dirty_bitmap_set_by_index(src, 70);
	assert_int_equal(squib_dirty_bitmap_merge(dst, src, NULL), 0);
	assert_int_equal(squib_dirty_bitmap_count(dst), 2);
	assert_true(squib_dirty_bitmap_test_by_index(dst, 70));
	assert_int_equal(squib_dirty_bitmap_count(src), 2); /* merge leaves src alone */
	assert_int_equal(squib_dirty_bitmap_merge(dst, dst, NULL), 0);
	assert_int_equal(squib_dirty_bitmap_count(dst), 2);
	squib_dirty_bitmap_free(dst);
	squib_dirty_bitmap_free(src);
}

static void test_should_rescale_when_merging_across_page_sizes(void **state)
{
	struct squib_dirty_bitmap *coarse = region_2m();
	struct squib_dirty_bitmap *fine = new_bitmap(REGION_BASE, REGION_SIZE, PAGE_16K);

	(void)state;
	/* Fine into coarse: any dirty fine page dirties its whole block. */
	squib_dirty_bitmap_set_by_index(fine, 128 * 5 + 17);
	squib_dirty_bitmap_set_by_index(fine, 128 * 5 + 18);
	squib_dirty_bitmap_set_by_index(fine, 128 * 127 + 127);
	assert_int_equal(squib_dirty_bitmap_merge(coarse, fine, NULL), 0);
	assert_int_equal(squib_dirty_bitmap_count(coarse), 2);
	assert_true(squib_dirty_bitmap_test_by_index(coarse, 5));
	assert_true(squib_dirty_bitmap_test_by_index(coarse, 127));
	/* Coarse into fine: every fine page of the block; drain_merge empties the source. */
	squib_dirty_bitmap_clear(fine);
	assert_int_equal(squib_dirty_bitmap_drain_merge(fine, coarse, NULL), 0);
	assert_int_equal(squib_dirty_bitmap_count(fine), 256);
	assert_true(squib_dirty_bitmap_test_by_index(fine, 128 * 5));
	assert_true(squib_dirty_bitmap_test_by_index(fine, 128 * 6 - 1));
	assert_int_equal(squib_dirty_bitmap_count(coarse), 0);
	squib_dirty_bitmap_free(coarse);
	squib_dirty_bitmap_free(fine);
}

static void test_should_reject_merge_with_mismatched_ranges(void **state)
{
	struct squib_dirty_bitmap *a = region_2m();
	struct squib_dirty_bitmap *b = new_bitmap(REGION_BASE, REGION_SIZE - PAGE_2M, PAGE_2M);
	struct squib_error_detail d;

	(void)state;
	squib_dirty_bitmap_set_by_index(b, 0);
	assert_int_equal(squib_dirty_bitmap_merge(a, b, &d), SQUIB_E_INVALID_PATH);
	assert_string_equal(message(&d), "invalid snapshot path: merge requires identical ranges");
	assert_int_equal(squib_dirty_bitmap_drain_merge(a, b, &d), SQUIB_E_INVALID_PATH);
	assert_int_equal(squib_dirty_bitmap_count(b), 1);
	assert_int_equal(squib_dirty_bitmap_count(a), 0);
	squib_dirty_bitmap_free(a);
	squib_dirty_bitmap_free(b);
}

static void test_should_treat_null_arguments_as_errors_or_empty(void **state)
{
	struct squib_dirty_bitmap *bm = region_2m();
	struct squib_error_detail d;
	uint64_t *pages = NULL;
	size_t n = 0;

	(void)state;
	assert_int_equal(squib_dirty_bitmap_new(0, 1, 1, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_false(squib_dirty_bitmap_set(NULL, 0));
	assert_false(squib_dirty_bitmap_test(NULL, 0));
	assert_int_equal(squib_dirty_bitmap_set_range(NULL, 0, 1), 0);
	assert_int_equal(squib_dirty_bitmap_count(NULL), 0);
	assert_int_equal(squib_dirty_bitmap_page_count(NULL), 0);
	assert_int_equal(squib_dirty_bitmap_drain(NULL, NULL, 0), 0);
	assert_int_equal(squib_dirty_bitmap_drain_into(NULL, count_page, NULL, NULL),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_dirty_bitmap_drain_into(bm, NULL, NULL, NULL),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_dirty_bitmap_drain_alloc(NULL, &pages, &n, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_dirty_bitmap_merge(bm, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_dirty_bitmap_fold_into_finer(NULL, bm, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	squib_dirty_bitmap_clear(NULL);
	squib_dirty_bitmap_free(NULL);
	squib_dirty_bitmap_free(bm);
}

/* ---- adaptive controller ------------------------------------------------ */

#define MS (1000ull * 1000)
#define T0 (1000 * MS) /* the fake clock's start: any value, not 0 */

struct fake_clock {
	uint64_t now;
};

static uint64_t fake_now(void *ctx)
{
	return ((struct fake_clock *)ctx)->now;
}

static struct squib_adaptive_controller *new_ctrl(uint64_t blocks, uint32_t threshold,
						  struct fake_clock *fc)
{
	struct squib_dirty_clock clock = {fake_now, fc};
	struct squib_adaptive_controller *ctrl = NULL;

	fc->now = T0;
	assert_int_equal(squib_adaptive_controller_new(blocks, threshold, &clock, &ctrl, NULL), 0);
	assert_non_null(ctrl);
	return ctrl;
}

static void faults(struct squib_adaptive_controller *ctrl, uint64_t block, int n)
{
	for (int i = 0; i < n; i++)
		squib_adaptive_controller_record_fault(ctrl, block);
}

static void test_should_step_down_when_one_block_exceeds_threshold(void **state)
{
	struct fake_clock fc;
	struct squib_adaptive_controller *ctrl = new_ctrl(128, 2, &fc);

	(void)state;
	assert_int_equal(squib_adaptive_controller_granule(ctrl), SQUIB_GRANULE_COARSE);
	faults(ctrl, 0, 10);
	fc.now = T0 + 200 * MS;
	assert_int_equal(squib_adaptive_controller_tick(ctrl), SQUIB_GRANULE_FINE);
	assert_int_equal(squib_adaptive_controller_granule(ctrl), SQUIB_GRANULE_FINE);
	squib_adaptive_controller_free(ctrl);
}

static void test_should_not_tick_before_the_window_elapses(void **state)
{
	struct fake_clock fc;
	struct squib_adaptive_controller *ctrl = new_ctrl(4, 2, &fc);

	(void)state;
	faults(ctrl, 1, 10);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 100 * MS - 1),
			 SQUIB_GRANULE_COARSE);
	/* Nothing was reset: the same faults decide once the window is over (at exactly 100 ms). */
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 100 * MS),
			 SQUIB_GRANULE_FINE);
	squib_adaptive_controller_free(ctrl);
}

static void test_should_require_strictly_more_faults_than_the_threshold(void **state)
{
	struct fake_clock fc;
	struct squib_adaptive_controller *ctrl = new_ctrl(4, 4, &fc);

	(void)state;
	faults(ctrl, 3, 4);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 100 * MS),
			 SQUIB_GRANULE_COARSE);
	faults(ctrl, 3, 5);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 200 * MS),
			 SQUIB_GRANULE_FINE);
	squib_adaptive_controller_free(ctrl);
}

static void test_should_use_the_hottest_block_not_the_sum(void **state)
{
	struct fake_clock fc;
	struct squib_adaptive_controller *ctrl = new_ctrl(128, 4, &fc);

	(void)state;
	for (uint64_t b = 0; b < 64; b++)
		faults(ctrl, b, 1);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 100 * MS),
			 SQUIB_GRANULE_COARSE);
	squib_adaptive_controller_free(ctrl);
}

static void test_should_start_counting_afresh_after_each_evaluation(void **state)
{
	struct fake_clock fc;
	struct squib_adaptive_controller *ctrl = new_ctrl(4, 4, &fc);

	(void)state;
	faults(ctrl, 0, 3);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 100 * MS),
			 SQUIB_GRANULE_COARSE);
	faults(ctrl, 0, 3); /* 6 in all, but only 3 in this window */
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 150 * MS),
			 SQUIB_GRANULE_COARSE);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 200 * MS),
			 SQUIB_GRANULE_COARSE);
	squib_adaptive_controller_free(ctrl);
}

static void test_should_stay_fine_through_quiet_windows(void **state)
{
	struct fake_clock fc;
	struct squib_adaptive_controller *ctrl = new_ctrl(4, 0, &fc);

	(void)state;
	faults(ctrl, 2, 1);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 100 * MS),
			 SQUIB_GRANULE_FINE);
	for (uint64_t t = 2; t < 10; t++)
		assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + t * 100 * MS),
				 SQUIB_GRANULE_FINE);
	squib_adaptive_controller_free(ctrl);
}

static void test_should_ignore_faults_outside_the_blocks(void **state)
{
	struct fake_clock fc;
	struct squib_adaptive_controller *ctrl = new_ctrl(4, 0, &fc);

	(void)state;
	squib_adaptive_controller_record_fault(ctrl, 4);
	squib_adaptive_controller_record_fault(ctrl, UINT64_MAX);
	squib_adaptive_controller_record_fault(NULL, 0);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 100 * MS),
			 SQUIB_GRANULE_COARSE);
	squib_adaptive_controller_free(ctrl);
}

static void test_should_treat_a_clock_going_backwards_as_no_time_passed(void **state)
{
	struct fake_clock fc;
	struct squib_adaptive_controller *ctrl = new_ctrl(4, 0, &fc);

	(void)state;
	faults(ctrl, 0, 5);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 - 1), SQUIB_GRANULE_COARSE);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, 0), SQUIB_GRANULE_COARSE);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 100 * MS),
			 SQUIB_GRANULE_FINE);
	squib_adaptive_controller_free(ctrl);
}

static void test_should_reset_to_coarse_at_a_clean_checkpoint(void **state)
{
	struct fake_clock fc;
	struct squib_adaptive_controller *ctrl = new_ctrl(4, 2, &fc);

	(void)state;
	faults(ctrl, 0, 3);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 100 * MS),
			 SQUIB_GRANULE_FINE);
	faults(ctrl, 1, 3); /* evidence from the old session... */
	fc.now = T0 + 150 * MS;
	squib_adaptive_controller_reset_to_coarse(ctrl);
	assert_int_equal(squib_adaptive_controller_granule(ctrl), SQUIB_GRANULE_COARSE);
	/* 110 ms after the last evaluation but 60 ms after the reset: the window restarted. */
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 210 * MS),
			 SQUIB_GRANULE_COARSE);
	/* The window is over, and the old session's faults are gone. */
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 250 * MS),
			 SQUIB_GRANULE_COARSE);
	faults(ctrl, 1, 3);
	assert_int_equal(squib_adaptive_controller_tick_at(ctrl, T0 + 350 * MS),
			 SQUIB_GRANULE_FINE);
	squib_adaptive_controller_free(ctrl);
}

static void test_should_default_to_upstream_threshold_and_monotonic_clock(void **state)
{
	struct squib_adaptive_controller *ctrl = NULL;
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(SQUIB_DEFAULT_STEP_DOWN_THRESHOLD, 32);
	assert_int_equal(SQUIB_ADAPTIVE_WINDOW_NS, 100 * MS);
	assert_int_equal(squib_adaptive_controller_new(1, SQUIB_DEFAULT_STEP_DOWN_THRESHOLD, NULL,
						       &ctrl, NULL),
			 0);
	assert_int_equal(squib_adaptive_controller_threshold(ctrl), 32);
	assert_int_equal(squib_adaptive_controller_block_count(ctrl), 1);
	/* No fault was counted, so whether or not 100 ms passed the answer is COARSE. */
	assert_int_equal(squib_adaptive_controller_tick(ctrl), SQUIB_GRANULE_COARSE);
	squib_adaptive_controller_free(ctrl);
	assert_int_equal(squib_adaptive_controller_new(SQUIB_DIRTY_MAX_PAGES + 1, 1, NULL, &ctrl, &d),
			 SQUIB_E_INVALID_PATH);
	assert_null(ctrl);
	assert_int_equal(squib_adaptive_controller_new(1, 1, NULL, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_adaptive_controller_tick(NULL), SQUIB_GRANULE_COARSE);
	squib_adaptive_controller_free(NULL);
}

/* ---- tracked region ----------------------------------------------------- */

static uint64_t host_page(void)
{
	return (uint64_t)sysconf(_SC_PAGESIZE);
}

static struct squib_tracked_region *new_region(uint32_t threshold, struct fake_clock *fc)
{
	struct squib_dirty_clock clock = {fake_now, fc};
	struct squib_tracked_region_options opts = {threshold, &clock, NULL};
	struct squib_tracked_region *r = NULL;

	fc->now = T0;
	assert_int_equal(squib_tracked_region_new(REGION_BASE, REGION_SIZE, &opts, &r, NULL), 0);
	assert_non_null(r);
	return r;
}

/* Advance the fake clock past the window and tick; the granule the region now tracks at. */
static enum squib_tracking_granule tick_after_window(struct squib_tracked_region *r,
						     struct fake_clock *fc)
{
	enum squib_tracking_granule g = (enum squib_tracking_granule)-1;

	fc->now += 2 * SQUIB_ADAPTIVE_WINDOW_NS;
	assert_int_equal(squib_tracked_region_tick_adaptive(r, &g, NULL), 0);
	assert_int_equal(g, squib_tracked_region_granule(r));
	return g;
}

/* Harvest the region into a fresh bitmap at `page`; caller frees. */
static struct squib_dirty_bitmap *harvest(struct squib_tracked_region *r, uint64_t page)
{
	struct squib_dirty_bitmap *dst = new_bitmap(REGION_BASE, REGION_SIZE, page);

	assert_int_equal(squib_tracked_region_harvest(r, dst, NULL), 0);
	return dst;
}

static void test_should_use_the_host_page_as_the_fine_granule(void **state)
{
	(void)state;
	assert_int_equal(squib_tracking_granule_page_size(SQUIB_GRANULE_FINE), host_page());
	assert_int_equal(squib_tracking_granule_page_size(SQUIB_GRANULE_COARSE), PAGE_2M);
	assert_int_equal(squib_tracking_granule_page_size((enum squib_tracking_granule)7), 0);
}

static void test_should_start_coarse_with_one_fault_block_per_2mib(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(SQUIB_DEFAULT_STEP_DOWN_THRESHOLD, &fc);

	(void)state;
	assert_int_equal(squib_tracked_region_granule(r), SQUIB_GRANULE_COARSE);
	assert_int_equal(squib_tracked_region_page_size(r), PAGE_2M);
	assert_int_equal(squib_tracked_region_ram_start(r), REGION_BASE);
	assert_int_equal(squib_tracked_region_ram_size(r), REGION_SIZE);
	/* 33 faults in the last block step down: block 127 is counted. */
	for (int i = 0; i < 33; i++)
		squib_tracked_region_mark_dirty(r, REGION_BASE + REGION_SIZE - 1);
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_FINE);
	squib_tracked_region_free(r);
}

static void test_should_promote_to_fine_when_one_block_exceeds_threshold(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(2, &fc);
	struct squib_dirty_bitmap *got;

	(void)state;
	assert_int_equal(squib_tracked_region_granule(r), SQUIB_GRANULE_COARSE);
	for (int i = 0; i < 10; i++)
		squib_tracked_region_mark_dirty(r, REGION_BASE);
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_FINE);
	assert_int_equal(squib_tracked_region_page_size(r), host_page());
	/* The coarse bit was folded: every fine page of block 0 is dirty, nothing else. */
	got = harvest(r, host_page());
	assert_int_equal(squib_dirty_bitmap_count(got), PAGE_2M / host_page());
	assert_true(squib_dirty_bitmap_test(got, REGION_BASE + PAGE_2M - 1));
	assert_false(squib_dirty_bitmap_test(got, REGION_BASE + PAGE_2M));
	squib_dirty_bitmap_free(got);
	squib_tracked_region_free(r);
}

static void test_should_not_promote_when_faults_are_spread_uniformly_across_blocks(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(4, &fc);

	(void)state;
	for (uint64_t block = 0; block < 64; block++)
		squib_tracked_region_mark_dirty(r, REGION_BASE + block * PAGE_2M);
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_COARSE);
	assert_int_equal(squib_tracked_region_page_size(r), PAGE_2M);
	squib_tracked_region_free(r);
}

static void test_should_not_switch_before_the_window_elapses(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(2, &fc);
	enum squib_tracking_granule g;

	(void)state;
	for (int i = 0; i < 10; i++)
		squib_tracked_region_mark_dirty(r, REGION_BASE);
	fc.now = T0 + SQUIB_ADAPTIVE_WINDOW_NS - 1;
	assert_int_equal(squib_tracked_region_tick_adaptive(r, &g, NULL), 0);
	assert_int_equal(g, SQUIB_GRANULE_COARSE);
	assert_int_equal(squib_tracked_region_page_size(r), PAGE_2M);
	fc.now = T0 + SQUIB_ADAPTIVE_WINDOW_NS;
	assert_int_equal(squib_tracked_region_tick_adaptive(r, &g, NULL), 0);
	assert_int_equal(g, SQUIB_GRANULE_FINE);
	squib_tracked_region_free(r);
}

static void test_should_count_a_fault_even_when_the_bit_is_already_set(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(2, &fc);

	(void)state;
	assert_true(squib_tracked_region_mark_dirty(r, REGION_BASE + 7 * PAGE_2M));
	assert_false(squib_tracked_region_mark_dirty(r, REGION_BASE + 7 * PAGE_2M + 1));
	assert_false(squib_tracked_region_mark_dirty(r, REGION_BASE + 7 * PAGE_2M + 2));
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_FINE);
	squib_tracked_region_free(r);
}

static void test_should_ignore_marks_outside_the_region(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(0, &fc);
	struct squib_dirty_bitmap *got;

	(void)state;
	assert_false(squib_tracked_region_mark_dirty(r, REGION_BASE - 1));
	assert_false(squib_tracked_region_mark_dirty(r, REGION_BASE + REGION_SIZE));
	assert_false(squib_tracked_region_mark_dirty(NULL, REGION_BASE));
	/* With threshold 0 a single counted fault would step down. */
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_COARSE);
	got = harvest(r, PAGE_2M);
	assert_int_equal(squib_dirty_bitmap_count(got), 0);
	squib_dirty_bitmap_free(got);
	squib_tracked_region_free(r);
}

static void test_should_mark_device_writes_without_counting_faults(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(0, &fc);
	struct squib_dirty_bitmap *got;

	(void)state;
	assert_int_equal(squib_tracked_region_mark_range(r, REGION_BASE + PAGE_2M - 1, 2), 2);
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_COARSE);
	got = harvest(r, PAGE_2M);
	assert_int_equal(squib_dirty_bitmap_count(got), 2);
	assert_true(squib_dirty_bitmap_test_by_index(got, 0));
	assert_true(squib_dirty_bitmap_test_by_index(got, 1));
	squib_dirty_bitmap_free(got);
	assert_int_equal(squib_tracked_region_mark_range(NULL, REGION_BASE, 1), 0);
	squib_tracked_region_free(r);
}

static void test_should_track_at_the_host_page_after_stepping_down(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(0, &fc);
	uint64_t hp = host_page(), addr = REGION_BASE + 9 * PAGE_2M + 3 * hp + 5;
	struct squib_dirty_bitmap *got;

	(void)state;
	squib_tracked_region_mark_dirty(r, REGION_BASE);
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_FINE);
	squib_dirty_bitmap_free(harvest(r, hp)); /* take block 0's folded pages away */
	assert_true(squib_tracked_region_mark_dirty(r, addr));
	assert_false(squib_tracked_region_mark_dirty(r, addr - 5));
	got = harvest(r, hp);
	assert_int_equal(squib_dirty_bitmap_count(got), 1);
	assert_true(squib_dirty_bitmap_test(got, addr));
	squib_dirty_bitmap_free(got);
	squib_tracked_region_free(r);
}

static void test_should_harvest_at_a_requested_granule(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(0, &fc);
	struct squib_dirty_bitmap *fine, *coarse, *again;

	(void)state;
	squib_tracked_region_mark_dirty(r, REGION_BASE + 4 * PAGE_2M + 77);
	fine = harvest(r, PAGE_16K); /* coarse bits widen to every 16 KiB page of the block */
	assert_int_equal(squib_dirty_bitmap_count(fine), 128);
	assert_true(squib_dirty_bitmap_test_by_index(fine, 4 * 128));
	again = harvest(r, PAGE_2M); /* the harvest drained the region */
	assert_int_equal(squib_dirty_bitmap_count(again), 0);
	/* Fine tracking harvested into a coarse bitmap marks the enclosing block. */
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_FINE);
	squib_dirty_bitmap_free(harvest(r, PAGE_2M));
	squib_tracked_region_mark_dirty(r, REGION_BASE + 100 * PAGE_2M + host_page());
	coarse = harvest(r, PAGE_2M);
	assert_int_equal(squib_dirty_bitmap_count(coarse), 1);
	assert_true(squib_dirty_bitmap_test_by_index(coarse, 100));
	squib_dirty_bitmap_free(fine);
	squib_dirty_bitmap_free(coarse);
	squib_dirty_bitmap_free(again);
	squib_tracked_region_free(r);
}

static void test_should_give_harvested_bits_back_when_a_save_fails(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(SQUIB_DEFAULT_STEP_DOWN_THRESHOLD, &fc);
	struct squib_dirty_bitmap *first, *second;
	struct squib_dirty_bitmap *other = new_bitmap(REGION_BASE + 1, REGION_SIZE, PAGE_2M);
	struct squib_error_detail d;

	(void)state;
	squib_tracked_region_mark_dirty(r, REGION_BASE + 2 * PAGE_2M);
	squib_tracked_region_mark_dirty(r, REGION_BASE + 50 * PAGE_2M);
	first = harvest(r, PAGE_2M);
	/* The write failed: give the bits back, then mark one more page. */
	assert_int_equal(squib_tracked_region_merge(r, first, NULL), 0);
	squib_tracked_region_mark_dirty(r, REGION_BASE + 3 * PAGE_2M);
	second = harvest(r, PAGE_2M);
	assert_int_equal(squib_dirty_bitmap_count(second), 3);
	assert_true(squib_dirty_bitmap_test_by_index(second, 2));
	assert_true(squib_dirty_bitmap_test_by_index(second, 50));
	assert_true(squib_dirty_bitmap_test_by_index(second, 3));
	assert_int_equal(squib_tracked_region_merge(r, other, &d), SQUIB_E_INVALID_PATH);
	assert_int_equal(squib_tracked_region_harvest(r, other, &d), SQUIB_E_INVALID_PATH);
	squib_dirty_bitmap_free(first);
	squib_dirty_bitmap_free(second);
	squib_dirty_bitmap_free(other);
	squib_tracked_region_free(r);
}

static void test_should_reset_to_coarse_after_checkpoint(void **state)
{
	struct fake_clock fc;
	struct squib_tracked_region *r = new_region(2, &fc);
	uint64_t hp = host_page();
	struct squib_dirty_bitmap *saved, *got;

	(void)state;
	for (int i = 0; i < 3; i++)
		squib_tracked_region_mark_dirty(r, REGION_BASE);
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_FINE);
	saved = harvest(r, hp); /* the checkpoint's Diff */
	/* A page written after the harvest but before the reset... */
	squib_tracked_region_mark_dirty(r, REGION_BASE + 20 * PAGE_2M + hp);
	assert_int_equal(squib_tracked_region_reset_after_checkpoint(r, NULL), 0);
	assert_int_equal(squib_tracked_region_granule(r), SQUIB_GRANULE_COARSE);
	assert_int_equal(squib_tracked_region_page_size(r), PAGE_2M);
	/* ...is kept, widened to its 2 MiB block. */
	got = harvest(r, hp);
	assert_int_equal(squib_dirty_bitmap_count(got), PAGE_2M / hp);
	assert_true(squib_dirty_bitmap_test(got, REGION_BASE + 20 * PAGE_2M));
	squib_dirty_bitmap_free(got);
	/* The new session starts with clean counters; it can step down again. */
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_COARSE);
	for (int i = 0; i < 3; i++)
		squib_tracked_region_mark_dirty(r, REGION_BASE + 5 * PAGE_2M);
	assert_int_equal(tick_after_window(r, &fc), SQUIB_GRANULE_FINE);
	/* The fine bitmap is reused clean: only block 5 (folded) is dirty. */
	got = harvest(r, PAGE_2M);
	assert_int_equal(squib_dirty_bitmap_count(got), 1);
	assert_true(squib_dirty_bitmap_test_by_index(got, 5));
	squib_dirty_bitmap_free(got);
	squib_dirty_bitmap_free(saved);
	squib_tracked_region_free(r);
}

static void test_should_reject_a_bad_region(void **state)
{
	struct squib_tracked_region *r = (struct squib_tracked_region *)&r;
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_tracked_region_new(REGION_BASE, 0, NULL, &r, &d),
			 SQUIB_E_INVALID_PATH);
	assert_null(r);
	assert_string_equal(message(&d),
			    "invalid snapshot path: dirty bitmap requires a non-empty RAM range");
	assert_int_equal(squib_tracked_region_new(REGION_BASE, REGION_SIZE, NULL, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracked_region_tick_adaptive(NULL, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracked_region_harvest(NULL, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracked_region_merge(NULL, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracked_region_reset_after_checkpoint(NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_tracked_region_page_size(NULL), 0);
	squib_tracked_region_free(NULL);
	/* Defaults: upstream threshold, real clock; a fresh region is coarse and clean. */
	assert_int_equal(squib_tracked_region_new(REGION_BASE, REGION_SIZE, NULL, &r, NULL), 0);
	assert_int_equal(squib_tracked_region_granule(r), SQUIB_GRANULE_COARSE);
	assert_int_equal(squib_tracked_region_harvest(r, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_tracked_region_free(r);
}

struct hook_log {
	int calls;
	enum squib_dirty_marker_step steps[4];
};

static void log_step(void *ctx, enum squib_dirty_marker_step step)
{
	struct hook_log *log = ctx;

	if (log->calls < 4)
		log->steps[log->calls] = step;
	log->calls++;
}

static void test_should_call_the_marker_hook_in_both_windows(void **state)
{
	struct hook_log log = {0, {0}};
	struct squib_dirty_hooks hooks = {&log, log_step};
	struct squib_tracked_region_options opts = {SQUIB_DEFAULT_STEP_DOWN_THRESHOLD, NULL, &hooks};
	struct squib_tracked_region *r = NULL;

	(void)state;
	assert_int_equal(squib_tracked_region_new(REGION_BASE, REGION_SIZE, &opts, &r, NULL), 0);
	assert_true(squib_tracked_region_mark_dirty(r, REGION_BASE));
	assert_int_equal(log.calls, 2);
	assert_int_equal(log.steps[0], SQUIB_DIRTY_MARKER_LOADED);
	assert_int_equal(log.steps[1], SQUIB_DIRTY_MARKER_JOINED);
	assert_int_equal(squib_tracked_region_mark_range(r, REGION_BASE, PAGE_2M + 1), 1);
	assert_int_equal(log.calls, 4);
	/* Outside the region nothing is joined, so the hook is not called. */
	assert_false(squib_tracked_region_mark_dirty(r, REGION_BASE - 1));
	assert_int_equal(log.calls, 4);
	squib_tracked_region_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_count_pages_with_2mib_default),
		cmocka_unit_test(test_should_track_a_dirty_page_at_an_aligned_address),
		cmocka_unit_test(test_should_round_an_unaligned_address_into_its_page),
		cmocka_unit_test(test_should_reject_addresses_outside_the_tracked_range),
		cmocka_unit_test(test_should_drain_dirty_pages_in_index_order),
		cmocka_unit_test(test_should_drain_into_callback_without_allocation),
		cmocka_unit_test(test_should_reject_non_power_of_two_page_size),
		cmocka_unit_test(test_should_reject_zero_size_range),
		cmocka_unit_test(test_should_reject_a_range_that_overflows),
		cmocka_unit_test(test_should_reject_a_bitmap_above_the_size_limit),
		cmocka_unit_test(test_should_fold_coarse_bits_into_fine_bitmap),
		cmocka_unit_test(test_should_reject_fold_with_mismatched_ranges),
		cmocka_unit_test(test_should_reject_fold_when_target_is_not_finer),
		cmocka_unit_test(test_should_track_a_partial_trailing_page),
		cmocka_unit_test(test_should_mark_every_page_a_byte_range_touches),
		cmocka_unit_test(test_should_clip_a_byte_range_to_the_tracked_range),
		cmocka_unit_test(test_should_count_dirty_pages),
		cmocka_unit_test(test_should_drain_a_bounded_buffer_in_instalments),
		cmocka_unit_test(test_should_keep_undelivered_pages_when_the_callback_fails),
		cmocka_unit_test(test_should_drain_into_an_allocated_array),
		cmocka_unit_test(test_should_or_a_same_geometry_bitmap_in),
		cmocka_unit_test(test_should_rescale_when_merging_across_page_sizes),
		cmocka_unit_test(test_should_reject_merge_with_mismatched_ranges),
		cmocka_unit_test(test_should_treat_null_arguments_as_errors_or_empty),
		cmocka_unit_test(test_should_step_down_when_one_block_exceeds_threshold),
		cmocka_unit_test(test_should_not_tick_before_the_window_elapses),
		cmocka_unit_test(test_should_require_strictly_more_faults_than_the_threshold),
		cmocka_unit_test(test_should_use_the_hottest_block_not_the_sum),
		cmocka_unit_test(test_should_start_counting_afresh_after_each_evaluation),
		cmocka_unit_test(test_should_stay_fine_through_quiet_windows),
		cmocka_unit_test(test_should_ignore_faults_outside_the_blocks),
		cmocka_unit_test(test_should_treat_a_clock_going_backwards_as_no_time_passed),
		cmocka_unit_test(test_should_reset_to_coarse_at_a_clean_checkpoint),
		cmocka_unit_test(test_should_default_to_upstream_threshold_and_monotonic_clock),
		cmocka_unit_test(test_should_use_the_host_page_as_the_fine_granule),
		cmocka_unit_test(test_should_start_coarse_with_one_fault_block_per_2mib),
		cmocka_unit_test(test_should_promote_to_fine_when_one_block_exceeds_threshold),
		cmocka_unit_test(test_should_not_promote_when_faults_are_spread_uniformly_across_blocks),
		cmocka_unit_test(test_should_not_switch_before_the_window_elapses),
		cmocka_unit_test(test_should_count_a_fault_even_when_the_bit_is_already_set),
		cmocka_unit_test(test_should_ignore_marks_outside_the_region),
		cmocka_unit_test(test_should_mark_device_writes_without_counting_faults),
		cmocka_unit_test(test_should_track_at_the_host_page_after_stepping_down),
		cmocka_unit_test(test_should_harvest_at_a_requested_granule),
		cmocka_unit_test(test_should_give_harvested_bits_back_when_a_save_fails),
		cmocka_unit_test(test_should_reset_to_coarse_after_checkpoint),
		cmocka_unit_test(test_should_reject_a_bad_region),
		cmocka_unit_test(test_should_call_the_marker_hook_in_both_windows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
