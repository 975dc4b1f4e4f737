/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Progress reports of the long memory-file operations: digest checks and
 * rebase (squib_memfile_verify_digests_ex, squib_memfile_rebase_ex).
 */
#include "pair.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <squib/memfile.h>
#include <squib/progress.h>

#define PAGES 64

struct recorder {
	uint64_t calls;
	uint64_t done;
	uint64_t total;
	bool backwards;	    /* done decreased */
	bool total_changed; /* total differed between calls */
	bool past_total;    /* done > total */
};

static void record(void *ctx, uint64_t done, uint64_t total)
{
	struct recorder *r = ctx;

	if (r->calls && done < r->done)
		r->backwards = true;
	if (r->calls && total != r->total)
		r->total_changed = true;
	if (done > total)
		r->past_total = true;
	r->calls++;
	r->done = done;
	r->total = total;
}

static void assert_well_formed(const struct recorder *r, uint64_t expected_total)
{
	assert_true(r->calls > 0);
	assert_false(r->backwards);
	assert_false(r->total_changed);
	assert_false(r->past_total);
	assert_int_equal(r->total, expected_total);
	assert_int_equal(r->done, expected_total);
}

struct chain {
	char *dir;
	char *base, *diff1, *diff2;
	uint64_t ps;
	uint64_t base_bytes, diff1_bytes, diff2_bytes;
	uint64_t diffs_union_bytes; /* the pages some diff holds, each once */
	uint8_t *mem;
};

/* base: every page; diff1: pages 1, 2, 10; diff2: pages 2, 40..43. Digests everywhere. */
static void make_chain(struct chain *c)
{
	static const uint64_t d1[] = {1, 2, 10}, d2[] = {2, 40, 41, 42, 43};
	struct squib_memfile_manifest m0, m1, m2;

	c->dir = squib_test_tmpdir();
	c->ps = squib_test_page_size();
	c->base = squib_test_path(c->dir, "base.mem");
	c->diff1 = squib_test_path(c->dir, "diff1.mem");
	c->diff2 = squib_test_path(c->dir, "diff2.mem");
	c->mem = squib_test_guest_ram(PAGES * c->ps, 1);
	squib_test_save_full(c->base, c->mem, PAGES * c->ps, true, &m0);
	for (size_t i = 0; i < 3; i++)
		squib_test_fill_page(c->mem, d1[i], 2);
	squib_test_save_diff(c->diff1, c->mem, PAGES * c->ps, m0.layout.id, d1, 3, true, &m1);
	for (size_t i = 0; i < 5; i++)
		squib_test_fill_page(c->mem, d2[i], 3);
	squib_test_save_diff(c->diff2, c->mem, PAGES * c->ps, m1.layout.id, d2, 5, true, &m2);
	c->base_bytes = m0.layout.present_pages * c->ps;
	c->diff1_bytes = m1.layout.present_pages * c->ps;
	c->diff2_bytes = m2.layout.present_pages * c->ps;
	c->diffs_union_bytes = c->diff1_bytes;
	for (size_t i = 0; i < 5; i++) {
		bool in_d1 = false;

		for (size_t k = 0; k < 3; k++)
			in_d1 |= d1[k] == d2[i];
		c->diffs_union_bytes += in_d1 ? 0 : c->ps;
	}
	squib_memfile_manifest_release(&m0);
	squib_memfile_manifest_release(&m1);
	squib_memfile_manifest_release(&m2);
}

static void free_chain(struct chain *c)
{
	munmap(c->mem, PAGES * c->ps);
	squib_test_rmtree(c->dir);
	free(c->base);
	free(c->diff1);
	free(c->diff2);
	free(c->dir);
}

static void test_should_report_digest_progress_up_to_the_present_bytes(void **state)
{
	struct recorder rec = {0};
	struct squib_progress p = {&rec, record};
	struct squib_memfile *mf = NULL;
	struct chain c;

	(void)state;
	make_chain(&c);
	assert_int_equal(squib_memfile_open(c.base, &mf, NULL), 0);
	assert_int_equal(squib_memfile_verify_digests_ex(mf, &p, NULL), 0);
	assert_well_formed(&rec, PAGES * c.ps);
	squib_memfile_close(mf);
	free_chain(&c);
}

static void test_should_fail_digests_the_same_with_progress(void **state)
{
	struct recorder rec = {0};
	struct squib_progress p = {&rec, record};
	struct squib_error_detail d1, d2;
	struct squib_memfile *mf = NULL;
	struct chain c;

	(void)state;
	make_chain(&c);
	squib_test_xor_byte(c.base, (int64_t)(5 * c.ps + 17), 0x01);
	assert_int_equal(squib_memfile_open(c.base, &mf, NULL), 0);
	assert_int_equal(squib_memfile_verify_digests_ex(mf, &p, &d1), SQUIB_E_CRC_MISMATCH);
	assert_int_equal(squib_memfile_verify_digests(mf, &d2), SQUIB_E_CRC_MISMATCH);
	assert_string_equal(d1.msg, d2.msg);
	assert_true(rec.calls > 0); /* the pages read before the mismatch were reported */
	squib_memfile_close(mf);
	free_chain(&c);
}

static void test_should_report_rebase_progress_into_a_new_file(void **state)
{
	struct squib_memfile_rebase_options o = {.digests = true};
	struct recorder rec = {0};
	struct squib_progress p = {&rec, record};
	struct squib_memfile_manifest r;
	const char *diffs[2];
	struct chain c;
	char *out;

	(void)state;
	make_chain(&c);
	out = squib_test_path(c.dir, "out.mem");
	diffs[0] = c.diff1;
	diffs[1] = c.diff2;
	assert_int_equal(squib_memfile_rebase_ex(c.base, diffs, 2, out, &o, &p, &r, NULL), 0);
	/* Diff digests checked, every page of the result copied once (from the newest layer
	 * holding it), the result digested. */
	assert_well_formed(&rec, c.diff1_bytes + c.diff2_bytes + 2 * r.layout.present_pages * c.ps);
	assert_int_equal(r.layout.present_pages * c.ps, c.base_bytes); /* the base has them all */
	squib_memfile_manifest_release(&r);
	free(out);
	free_chain(&c);
}

static void test_should_report_rebase_progress_in_place(void **state)
{
	struct recorder rec = {0};
	struct squib_progress p = {&rec, record};
	const char *diffs[2];
	struct chain c;

	(void)state;
	make_chain(&c);
	diffs[0] = c.diff1;
	diffs[1] = c.diff2;
	assert_int_equal(squib_memfile_rebase_ex(c.base, diffs, 2, NULL, NULL, &p, NULL, NULL), 0);
	/* In place the base's pages stay where they are: the diffs' digests are checked, and
	 * each page a diff holds is copied once (page 2, in both diffs, from the newer). */
	assert_well_formed(&rec, c.diff1_bytes + c.diff2_bytes + c.diffs_union_bytes);
	assert_true(c.diffs_union_bytes < c.diff1_bytes + c.diff2_bytes);
	free_chain(&c);
}

static void test_should_rebase_the_same_with_and_without_progress(void **state)
{
	struct recorder rec = {0};
	struct squib_progress p = {&rec, record};
	struct squib_memfile_manifest a, b;
	uint8_t *x, *y;
	size_t xl, yl;
	const char *diffs[2];
	char *out_a, *out_b;
	struct chain c;

	(void)state;
	make_chain(&c);
	out_a = squib_test_path(c.dir, "a.mem");
	out_b = squib_test_path(c.dir, "b.mem");
	diffs[0] = c.diff1;
	diffs[1] = c.diff2;
	assert_int_equal(squib_memfile_rebase(c.base, diffs, 2, out_a, NULL, &a, NULL), 0);
	assert_int_equal(squib_memfile_rebase_ex(c.base, diffs, 2, out_b, NULL, &p, &b, NULL), 0);
	assert_true(squib_memory_layout_equal(&a.layout, &b.layout));
	assert_int_equal(squib_test_read_file(out_a, &x, &xl), 0);
	assert_int_equal(squib_test_read_file(out_b, &y, &yl), 0);
	assert_int_equal(xl, yl);
	assert_memory_equal(x, y, xl);
	assert_true(rec.calls > 0);
	free(x);
	free(y);
	squib_memfile_manifest_release(&a);
	squib_memfile_manifest_release(&b);
	free(out_a);
	free(out_b);
	free_chain(&c);
}

static void test_should_report_nothing_when_a_rebase_input_is_refused(void **state)
{
	struct recorder rec = {0};
	struct squib_progress p = {&rec, record};
	struct squib_error_detail d;
	const char *diffs[1];
	struct chain c;

	(void)state;
	make_chain(&c);
	diffs[0] = c.diff2; /* skips diff1: wrong parent */
	assert_int_equal(squib_memfile_rebase_ex(c.base, diffs, 1, NULL, NULL, &p, NULL, &d),
			 SQUIB_E_PAIR_MISMATCH);
	assert_int_equal(rec.calls, 0);
	assert_non_null(strstr(d.msg, "has parent id"));
	free_chain(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_report_digest_progress_up_to_the_present_bytes),
		cmocka_unit_test(test_should_fail_digests_the_same_with_progress),
		cmocka_unit_test(test_should_report_rebase_progress_into_a_new_file),
		cmocka_unit_test(test_should_report_rebase_progress_in_place),
		cmocka_unit_test(test_should_rebase_the_same_with_and_without_progress),
		cmocka_unit_test(test_should_report_nothing_when_a_rebase_input_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
