/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib_verify: every check on good pairs, and each kind of damage landing on
 * the check that names it (with the right class: CORRUPT or FAILED).
 */
#include "pair.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <squib/snapshot.h>

#include "../src/util.h"

#define PAGES 32

struct fx {
	char *dir;
	uint64_t ps;
	uint64_t ram;
	uint8_t *mem;
	char *snap, *memf;
	struct squib_memfile_manifest m;
};

/* A good pair with digests: <dir>/a.snap + <dir>/a.mem. */
static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = squib_test_tmpdir();
	f->ps = squib_test_page_size();
	f->ram = PAGES * f->ps;
	f->mem = squib_test_guest_ram(f->ram, 11);
	memset(f->mem + 4 * f->ps, 0, 3 * f->ps); /* a hole: two extents */
	squib_test_save_pair(f->dir, "a", f->mem, f->ram, true, &f->snap, &f->memf, &f->m);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	squib_memfile_manifest_release(&f->m);
	munmap(f->mem, f->ram);
	squib_test_rmtree(f->dir);
	free(f->snap);
	free(f->memf);
	free(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ---- */

static void verify(const char *state_path, const char *mem, struct squib_verify_report *r)
{
	struct squib_verify_options o = {.memory_path = mem};

	assert_int_equal(squib_verify(state_path, &o, r, NULL), 0);
}

static void expect(const struct squib_verify_report *r, enum squib_check_id id,
		   enum squib_check_status status, const char *in_detail)
{
	const struct squib_check_result *c = &r->checks[id];

	if (c->status != status)
		fail_msg("%s: status %s (%d), expected %d; detail: %s", squib_check_name(id),
			 squib_check_status_name(c->status), c->status, status,
			 c->detail ? c->detail : "(none)");
	if (in_detail && (!c->detail || !strstr(c->detail, in_detail)))
		fail_msg("%s: detail \"%s\" lacks \"%s\"", squib_check_name(id),
			 c->detail ? c->detail : "(none)", in_detail);
}

static void expect_range(const struct squib_verify_report *r, enum squib_check_id first,
			 enum squib_check_id last, enum squib_check_status status,
			 const char *in_detail)
{
	for (int id = first; id <= (int)last; id++)
		expect(r, id, status, in_detail);
}

/* Rewrite a state file's CRC trailer after editing it. */
static void refresh_crc(const char *path)
{
	uint8_t *buf;
	size_t len;

	assert_int_equal(squib_test_read_file(path, &buf, &len), 0);
	squib_put_le64(buf + len - 8, squib_crc64(0, buf, len - 8));
	assert_int_equal(squib_test_write_file(path, buf, len), 0);
	free(buf);
}

/* ---- good pairs ---- */

static void test_should_pass_every_check_of_a_good_pair(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;
	char id[33];

	verify(f->snap, NULL, &r);
	expect_range(&r, 0, SQUIB_CHECK_COUNT - 1, SQUIB_CHECK_OK, NULL);
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_OK);
	assert_string_equal(r.memory_path, f->memf);
	squib_memfile_id_hex(f->m.layout.id, id);
	expect(&r, SQUIB_CHECK_PAIR_BINDING, SQUIB_CHECK_OK, id);
	expect(&r, SQUIB_CHECK_STATE_MAGIC, SQUIB_CHECK_OK, "aarch64");
	expect(&r, SQUIB_CHECK_STATE_VERSION, SQUIB_CHECK_OK, "1.0.0");
	expect(&r, SQUIB_CHECK_MEMORY_MANIFEST, SQUIB_CHECK_OK, "1 region, 2 extents, digests");
	expect(&r, SQUIB_CHECK_MANIFEST_BOUNDS, SQUIB_CHECK_OK, "29 of 32 pages present");
	expect(&r, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_OK, "2 extents");
	squib_verify_report_free(&r);
}

static void test_should_pass_a_diff_pair(void **state)
{
	static const uint64_t dirty[] = {3, 9, 10};
	struct fx *f = *state;
	struct squib_memfile_manifest dm;
	struct squib_verify_report r;
	char *snap = squib_test_path(f->dir, "d.snap"), *mem = squib_test_path(f->dir, "d.mem");

	squib_test_save_diff(mem, f->mem, f->ram, f->m.layout.id, dirty, 3, false, &dm);
	squib_test_save_state(snap, &dm.layout);
	verify(snap, NULL, &r);
	expect_range(&r, 0, SQUIB_CHECK_PAIR_BINDING, SQUIB_CHECK_OK, NULL);
	expect(&r, SQUIB_CHECK_MEMORY_FOOTER, SQUIB_CHECK_OK, "diff");
	expect(&r, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_SKIPPED, "records no digests");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_OK);
	squib_verify_report_free(&r);
	squib_memfile_manifest_release(&dm);
	free(snap);
	free(mem);
}

static void test_should_skip_memory_checks_without_a_memory_section(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;
	char *snap = squib_test_path(f->dir, "plain.snap");

	(void)f;
	squib_test_save_state(snap, NULL);
	verify(snap, NULL, &r);
	expect_range(&r, 0, SQUIB_CHECK_COMPATIBILITY, SQUIB_CHECK_OK, NULL);
	expect(&r, SQUIB_CHECK_STATE_STRUCTURE, SQUIB_CHECK_OK, "no memory section");
	expect_range(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_SKIPPED,
		     "the state has no memory section");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_OK);
	assert_null(r.memory_path);
	squib_verify_report_free(&r);
	free(snap);
}

/* An explicit memory file is never ignored: without a section to check it against, it fails. */
static void test_should_fail_a_named_memory_file_the_state_cannot_pair_with(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;
	char *snap = squib_test_path(f->dir, "plain.snap");

	squib_test_save_state(snap, NULL);
	verify(snap, f->memf, &r);
	expect_range(&r, 0, SQUIB_CHECK_COMPATIBILITY, SQUIB_CHECK_OK, NULL);
	expect(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_FAILED, "the state has no memory section");
	expect(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_FAILED, f->memf);
	assert_int_equal(r.checks[SQUIB_CHECK_MEMORY_FILE].code, SQUIB_E_INVALID_PATH);
	expect_range(&r, SQUIB_CHECK_MEMORY_FOOTER, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_SKIPPED,
		     "the state has no memory section");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_FAILED);
	squib_verify_report_free(&r);
	free(snap);
}

static void test_should_skip_digests_when_asked(void **state)
{
	struct fx *f = *state;
	struct squib_verify_options o = {.skip_digests = true};
	struct squib_verify_report r;

	squib_test_xor_byte(f->memf, (int64_t)f->ps, 0x40); /* would fail the digest */
	assert_int_equal(squib_verify(f->snap, &o, &r, NULL), 0);
	expect(&r, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_SKIPPED, "not requested");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_OK);
	squib_verify_report_free(&r);
}

struct progress_seen {
	uint64_t calls, done, total;
};

static void seen(void *ctx, uint64_t done, uint64_t total)
{
	struct progress_seen *p = ctx;

	p->calls++;
	p->done = done;
	p->total = total;
}

static void test_should_report_digest_progress(void **state)
{
	struct fx *f = *state;
	struct progress_seen ps = {0};
	struct squib_progress p = {&ps, seen};
	struct squib_verify_options o = {.progress = &p};
	struct squib_verify_report r;

	assert_int_equal(squib_verify(f->snap, &o, &r, NULL), 0);
	assert_true(ps.calls > 0);
	assert_int_equal(ps.total, f->m.layout.present_pages * f->ps);
	assert_int_equal(ps.done, ps.total);
	squib_verify_report_free(&r);
}

/* ---- the state file ---- */

static void test_should_report_a_flipped_state_bit_as_corrupt(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	squib_test_xor_byte(f->snap, -3, 0x04); /* in the CRC trailer */
	verify(f->snap, NULL, &r);
	expect(&r, SQUIB_CHECK_STATE_CRC, SQUIB_CHECK_CORRUPT, "snapshot CRC64 mismatch");
	assert_int_equal(r.checks[SQUIB_CHECK_STATE_CRC].code, SQUIB_E_CRC_MISMATCH);
	/* The rest still runs on the bytes as they are. */
	expect_range(&r, SQUIB_CHECK_STATE_MAGIC, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_OK, NULL);
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_CORRUPT);
	squib_verify_report_free(&r);
}

static void test_should_refuse_an_unknown_magic(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	squib_test_xor_byte(f->snap, 7, 0x40);
	refresh_crc(f->snap);
	verify(f->snap, NULL, &r);
	expect(&r, SQUIB_CHECK_STATE_CRC, SQUIB_CHECK_OK, NULL);
	expect(&r, SQUIB_CHECK_STATE_MAGIC, SQUIB_CHECK_FAILED, "snapshot magic mismatch");
	expect(&r, SQUIB_CHECK_STATE_VERSION, SQUIB_CHECK_OK, NULL);
	expect(&r, SQUIB_CHECK_STATE_STRUCTURE, SQUIB_CHECK_SKIPPED, "magic");
	expect_range(&r, SQUIB_CHECK_COMPATIBILITY, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_SKIPPED,
		     "the state did not decode");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_FAILED);
	squib_verify_report_free(&r);
}

static void test_should_refuse_a_newer_minor_version(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	squib_test_xor_byte(f->snap, 10, 0x01); /* minor 0 -> 1 */
	refresh_crc(f->snap);
	verify(f->snap, NULL, &r);
	expect(&r, SQUIB_CHECK_STATE_VERSION, SQUIB_CHECK_FAILED, "1.1.0");
	assert_int_equal(r.checks[SQUIB_CHECK_STATE_VERSION].code, SQUIB_E_VERSION_MISMATCH);
	expect(&r, SQUIB_CHECK_STATE_STRUCTURE, SQUIB_CHECK_SKIPPED, "version");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_FAILED);
	squib_verify_report_free(&r);
}

static void test_should_report_a_structure_error_with_a_good_crc(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	squib_test_xor_byte(f->snap, SQUIB_STATE_HEADER_SIZE + 3, 0x80); /* a reserved flag bit */
	refresh_crc(f->snap);
	verify(f->snap, NULL, &r);
	expect(&r, SQUIB_CHECK_STATE_STRUCTURE, SQUIB_CHECK_FAILED, "snapshot encoding error: ");
	expect(&r, SQUIB_CHECK_COMPATIBILITY, SQUIB_CHECK_SKIPPED, NULL);
	expect(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_SKIPPED, "the state did not decode");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_FAILED);
	squib_verify_report_free(&r);
}

static void test_should_report_an_incompatible_state(void **state)
{
	struct fx *f = *state;
	struct squib_microvm_state s;
	struct squib_verify_report r;

	squib_state_init(&s, SQUIB_ARCH_AARCH64); /* no vCPUs, no GIC */
	assert_int_equal(squib_state_set_memory(&s, &f->m.layout, NULL), 0);
	assert_int_equal(squib_state_save_file(f->snap, &s, NULL), 0);
	verify(f->snap, NULL, &r);
	expect(&r, SQUIB_CHECK_COMPATIBILITY, SQUIB_CHECK_FAILED, NULL);
	assert_int_equal(r.checks[SQUIB_CHECK_COMPATIBILITY].code, SQUIB_E_INCOMPATIBLE);
	expect_range(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_OK, NULL);
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_FAILED);
	squib_verify_report_free(&r);
	squib_state_free(&s);
}

static void test_should_report_a_missing_state_file(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;
	char *snap = squib_test_path(f->dir, "nope.snap");

	verify(snap, NULL, &r);
	expect(&r, SQUIB_CHECK_STATE_FILE, SQUIB_CHECK_FAILED, "No such file or directory");
	expect_range(&r, SQUIB_CHECK_STATE_CRC, SQUIB_CHECK_COMPATIBILITY, SQUIB_CHECK_SKIPPED,
		     NULL);
	expect_range(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_SKIPPED,
		     "the state did not decode");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_FAILED);
	squib_verify_report_free(&r);
	free(snap);
}

static void test_should_report_a_truncated_state_file(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	assert_int_equal(squib_test_write_file(f->snap, "\0\0\0\0\0\0\0\0\0\0", 10), 0);
	verify(f->snap, NULL, &r);
	expect(&r, SQUIB_CHECK_STATE_FILE, SQUIB_CHECK_FAILED, "too short");
	assert_int_equal(r.checks[SQUIB_CHECK_STATE_FILE].code, SQUIB_E_TOO_SHORT);
	squib_verify_report_free(&r);
}

/* ---- the memory file ---- */

static void test_should_report_a_missing_memory_file(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	assert_int_equal(remove(f->memf), 0);
	verify(f->snap, NULL, &r);
	expect_range(&r, 0, SQUIB_CHECK_COMPATIBILITY, SQUIB_CHECK_OK, NULL);
	expect(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_FAILED, "No such file or directory");
	expect(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_FAILED, f->memf);
	assert_int_equal(r.checks[SQUIB_CHECK_MEMORY_FILE].code, SQUIB_E_MEMORY_IO);
	expect_range(&r, SQUIB_CHECK_MEMORY_FOOTER, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_SKIPPED,
		     "no memory file to check");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_FAILED);
	squib_verify_report_free(&r);
}

static void test_should_refuse_a_directory_as_memory_file(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	verify(f->snap, f->dir, &r);
	expect(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_FAILED, "not a regular file");
	squib_verify_report_free(&r);
}

static void test_should_fail_when_no_memory_path_can_be_inferred(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;
	char *snap = squib_test_path(f->dir, "noext");

	squib_test_save_state(snap, &f->m.layout);
	verify(snap, NULL, &r);
	expect(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_FAILED, "no memory file path");
	assert_null(r.memory_path);
	expect(&r, SQUIB_CHECK_PAIR_BINDING, SQUIB_CHECK_SKIPPED, NULL);
	squib_verify_report_free(&r);
	/* An explicit path settles it. */
	verify(snap, f->memf, &r);
	expect_range(&r, 0, SQUIB_CHECK_COUNT - 1, SQUIB_CHECK_OK, NULL);
	squib_verify_report_free(&r);
	free(snap);
}

static void test_should_report_another_snapshots_memory_file_with_both_ids(void **state)
{
	struct fx *f = *state;
	struct squib_memfile_manifest other;
	struct squib_verify_report r;
	char *mem = squib_test_path(f->dir, "b.mem");
	char want[33], have[33];

	squib_test_save_pair(f->dir, "b", f->mem, f->ram, true, NULL, NULL, &other);
	verify(f->snap, mem, &r);
	squib_memfile_id_hex(f->m.layout.id, want);
	squib_memfile_id_hex(other.layout.id, have);
	expect_range(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_MANIFEST_BOUNDS, SQUIB_CHECK_OK,
		     NULL);
	expect(&r, SQUIB_CHECK_PAIR_BINDING, SQUIB_CHECK_CORRUPT, want);
	expect(&r, SQUIB_CHECK_PAIR_BINDING, SQUIB_CHECK_CORRUPT, have);
	assert_int_equal(r.checks[SQUIB_CHECK_PAIR_BINDING].code, SQUIB_E_PAIR_MISMATCH);
	expect(&r, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_OK, NULL); /* b.mem itself is intact */
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_CORRUPT);
	squib_verify_report_free(&r);
	squib_memfile_manifest_release(&other);
	free(mem);
}

static void test_should_report_a_corrupt_memory_footer(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	squib_test_xor_byte(f->memf, -100, 0x01); /* reserved footer bytes */
	verify(f->snap, NULL, &r);
	expect(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_OK, NULL);
	expect(&r, SQUIB_CHECK_MEMORY_FOOTER, SQUIB_CHECK_CORRUPT, "memory file footer CRC");
	expect_range(&r, SQUIB_CHECK_MEMORY_MANIFEST, SQUIB_CHECK_EXTENT_DIGESTS,
		     SQUIB_CHECK_SKIPPED, "the memory footer is not valid");
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_CORRUPT);
	squib_verify_report_free(&r);
}

static void test_should_report_a_corrupt_memory_manifest(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	squib_test_xor_byte(f->memf, (int64_t)f->ram + 20, 0x01); /* the extent list */
	verify(f->snap, NULL, &r);
	expect(&r, SQUIB_CHECK_MEMORY_FOOTER, SQUIB_CHECK_OK, NULL);
	expect(&r, SQUIB_CHECK_MEMORY_MANIFEST, SQUIB_CHECK_CORRUPT, "manifest");
	expect_range(&r, SQUIB_CHECK_MANIFEST_BOUNDS, SQUIB_CHECK_EXTENT_DIGESTS,
		     SQUIB_CHECK_SKIPPED, "the memory manifest is not valid");
	squib_verify_report_free(&r);
}

static void test_should_refuse_a_plain_dense_memory_file(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;
	char *dense = squib_test_fixture("demo.mem");

	verify(f->snap, dense, &r);
	expect(&r, SQUIB_CHECK_MEMORY_FILE, SQUIB_CHECK_OK, NULL);
	assert_true(r.checks[SQUIB_CHECK_MEMORY_FOOTER].status >= SQUIB_CHECK_FAILED);
	expect(&r, SQUIB_CHECK_PAIR_BINDING, SQUIB_CHECK_SKIPPED, NULL);
	squib_verify_report_free(&r);
	free(dense);
}

static void test_should_report_digest_corruption_in_the_ram_range(void **state)
{
	struct fx *f = *state;
	struct squib_verify_report r;

	squib_test_xor_byte(f->memf, (int64_t)(20 * f->ps + 5), 0x10);
	verify(f->snap, NULL, &r);
	expect_range(&r, 0, SQUIB_CHECK_PAIR_BINDING, SQUIB_CHECK_OK, NULL);
	expect(&r, SQUIB_CHECK_EXTENT_DIGESTS, SQUIB_CHECK_CORRUPT, "extent 1");
	assert_int_equal(r.checks[SQUIB_CHECK_EXTENT_DIGESTS].code, SQUIB_E_CRC_MISMATCH);
	assert_int_equal(squib_verify_worst(&r), SQUIB_CHECK_CORRUPT);
	squib_verify_report_free(&r);
}

/* ---- API edges ---- */

static void test_should_name_every_check_and_status(void **state)
{
	(void)state;
	for (int id = 0; id < SQUIB_CHECK_COUNT; id++)
		assert_string_not_equal(squib_check_name(id), "unknown");
	assert_string_equal(squib_check_name(SQUIB_CHECK_PAIR_BINDING), "pair binding");
	assert_string_equal(squib_check_name(SQUIB_CHECK_COUNT), "unknown");
	assert_string_equal(squib_check_status_name(SQUIB_CHECK_OK), "ok");
	assert_string_equal(squib_check_status_name(SQUIB_CHECK_SKIPPED), "skipped");
	assert_string_equal(squib_check_status_name(SQUIB_CHECK_FAILED), "FAIL");
	assert_string_equal(squib_check_status_name(SQUIB_CHECK_CORRUPT), "FAIL");
}

static void test_should_refuse_null_arguments(void **state)
{
	struct squib_verify_report r;
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_verify(NULL, NULL, &r, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_verify("x.snap", NULL, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_verify_report_free(NULL);
	assert_int_equal(squib_verify_worst(NULL), SQUIB_CHECK_OK);
}

int main(void)
{
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_should_pass_every_check_of_a_good_pair),
		T(test_should_pass_a_diff_pair),
		T(test_should_skip_memory_checks_without_a_memory_section),
		T(test_should_fail_a_named_memory_file_the_state_cannot_pair_with),
		T(test_should_skip_digests_when_asked),
		T(test_should_report_digest_progress),
		T(test_should_report_a_flipped_state_bit_as_corrupt),
		T(test_should_refuse_an_unknown_magic),
		T(test_should_refuse_a_newer_minor_version),
		T(test_should_report_a_structure_error_with_a_good_crc),
		T(test_should_report_an_incompatible_state),
		T(test_should_report_a_missing_state_file),
		T(test_should_report_a_truncated_state_file),
		T(test_should_report_a_missing_memory_file),
		T(test_should_refuse_a_directory_as_memory_file),
		T(test_should_fail_when_no_memory_path_can_be_inferred),
		T(test_should_report_another_snapshots_memory_file_with_both_ids),
		T(test_should_report_a_corrupt_memory_footer),
		T(test_should_report_a_corrupt_memory_manifest),
		T(test_should_refuse_a_plain_dense_memory_file),
		T(test_should_report_digest_corruption_in_the_ram_range),
		cmocka_unit_test(test_should_name_every_check_and_status),
		cmocka_unit_test(test_should_refuse_null_arguments),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
