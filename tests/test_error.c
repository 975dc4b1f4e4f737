/* SPDX-License-Identifier: Apache-2.0 */
/* Wire-stable error messages: upstream error.rs tests plus every variant's exact text. */
#include "testutil.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <squib/error.h>

static const char *render(int code, const struct squib_error_detail *d)
{
	static char buf[SQUIB_ERROR_TEXT_MAX];
	int n = squib_error_message(code, d, buf, sizeof(buf));

	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	return buf;
}

static void test_should_render_quiesce_timeout_with_stable_message(void **state)
{
	(void)state;
	assert_string_equal(render(SQUIB_E_QUIESCE_TIMEOUT, NULL),
			    "a vCPU did not ack quiesce within the timeout");
}

static void test_should_format_magic_mismatch_with_hex(void **state)
{
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_fail_magic(&d, 0xdeadbeef, 0x07101984AAAA0000ULL),
			 SQUIB_E_MAGIC_MISMATCH);
	assert_int_equal(d.code, SQUIB_E_MAGIC_MISMATCH);
	assert_string_equal(render(d.code, &d),
			    "snapshot magic mismatch (file: 0xdeadbeef, expected: 0x7101984aaaa0000)");
}

static void test_should_format_zero_magic_like_rust(void **state)
{
	struct squib_error_detail d;

	(void)state;
	squib_fail_magic(&d, 0, 0x0710198486640000ULL);
	assert_string_equal(render(d.code, &d),
			    "snapshot magic mismatch (file: 0x0, expected: 0x710198486640000)");
}

static void test_should_format_version_mismatch_as_semver(void **state)
{
	struct squib_error_detail d;
	struct squib_version found = {2, 0, 0}, expected = {1, 0, 0};

	(void)state;
	assert_int_equal(squib_fail_version(&d, found, expected), SQUIB_E_VERSION_MISMATCH);
	assert_string_equal(render(d.code, &d),
			    "snapshot version 2.0.0 is incompatible with squib's 1.0.0");
}

static void test_should_render_parameterless_variants_exactly(void **state)
{
	(void)state;
	assert_string_equal(render(SQUIB_E_CRC_MISMATCH, NULL), "snapshot CRC64 mismatch");
	assert_string_equal(render(SQUIB_E_TOO_SHORT, NULL),
			    "snapshot file is too short to contain a CRC trailer");
	assert_string_equal(render(SQUIB_E_INCOMPATIBLE, NULL),
			    "snapshot is from a different VMM (sysreg or GIC blob shape mismatch)");
}

static void test_should_render_busy_with_the_path_it_names(void **state)
{
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_fail_msg(&d, SQUIB_E_BUSY, "%s is being written", "/s/x.mem"),
			 SQUIB_E_BUSY);
	assert_string_equal(render(d.code, &d), "snapshot file busy: /s/x.mem is being written");
	assert_string_equal(squib_error_name(SQUIB_E_BUSY), "SQUIB_E_BUSY");
}

static void test_should_classify_io_errors_under_io_variant(void **state)
{
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_fail_errno(&d, SQUIB_E_IO, ENOENT), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_string_equal(render(d.code, &d),
			    "snapshot I/O error: No such file or directory (os error 2)");
	squib_fail_errno(&d, SQUIB_E_MEMORY_IO, ENOSPC);
	assert_string_equal(render(d.code, &d),
			    "memory file I/O error: No space left on device (os error 28)");
}

static void test_should_route_atomic_commit_failure_into_dedicated_variant(void **state)
{
	struct squib_error_detail d;
	const char *m;

	(void)state;
	squib_fail_errno(&d, SQUIB_E_ATOMIC_COMMIT_FAILED, EXDEV);
	m = render(d.code, &d);
	assert_true(strncmp(m, "atomic commit (rename) failed:", 30) == 0);
	assert_string_equal(m, "atomic commit (rename) failed: Invalid cross-device link (os error 18)");
}

static void test_should_describe_cross_fs_with_paths(void **state)
{
	struct squib_error_detail d;

	(void)state;
	squib_fail_cross_fs(&d, "/mnt/a/x.snap", "/tmp");
	assert_string_equal(render(d.code, &d),
			    "snapshot temp-file path is on a different filesystem from the destination "
			    "(dest=\"/mnt/a/x.snap\", temp_dir=\"/tmp\"); rename(2) cannot be atomic "
			    "across mounts");
}

static void test_should_escape_cross_fs_paths_like_rust_debug(void **state)
{
	struct squib_error_detail d;

	(void)state;
	squib_fail_cross_fs(&d, "a\"b\\c\nd\x01", ".");
	assert_non_null(strstr(render(d.code, &d), "(dest=\"a\\\"b\\\\c\\nd\\u{1}\", temp_dir=\".\")"));
}

static void test_should_render_message_carrying_variants(void **state)
{
	struct squib_error_detail d;

	(void)state;
	squib_fail_msg(&d, SQUIB_E_INVALID_PATH, "Diff snapshot requested but %s is false",
		       "vm_info.track_dirty_pages");
	assert_string_equal(render(d.code, &d), "invalid snapshot path: Diff snapshot requested but "
						"vm_info.track_dirty_pages is false");
	squib_fail_msg(&d, SQUIB_E_ENCODING, "section 0x%04x truncated", 2);
	assert_string_equal(render(d.code, &d), "snapshot encoding error: section 0x0002 truncated");
	squib_fail_msg(&d, SQUIB_E_CAPTURE, "hv_vcpu_get_reg failed");
	assert_string_equal(render(d.code, &d),
			    "snapshot capture/restore failure: hv_vcpu_get_reg failed");
	squib_fail_limit(&d, 10000000);
	assert_string_equal(render(d.code, &d), "snapshot exceeds 10000000 byte deserialization limit");
}

static void test_should_truncate_like_snprintf(void **state)
{
	char small[8];
	int n;

	(void)state;
	n = squib_error_message(SQUIB_E_CRC_MISMATCH, NULL, small, sizeof(small));
	assert_int_equal(n, (int)strlen("snapshot CRC64 mismatch"));
	assert_string_equal(small, "snapsho");
	assert_int_equal(squib_error_message(SQUIB_E_CRC_MISMATCH, NULL, NULL, 0), n);
}

static void test_should_name_every_code_distinctly(void **state)
{
	(void)state;
	for (int c = SQUIB_E_BUSY; c <= SQUIB_E_QUIESCE_TIMEOUT; c++) {
		assert_string_not_equal(squib_error_name(c), "SQUIB_E_UNKNOWN");
		for (int o = c + 1; o <= SQUIB_E_QUIESCE_TIMEOUT; o++)
			assert_string_not_equal(squib_error_name(c), squib_error_name(o));
	}
	assert_string_equal(squib_error_name(-1), "SQUIB_E_UNKNOWN");
	assert_string_equal(render(-42, NULL), "unknown squib error -42");
}

static void test_should_accept_null_detail_in_fail_helpers(void **state)
{
	(void)state;
	assert_int_equal(squib_fail(NULL, SQUIB_E_TOO_SHORT), SQUIB_E_TOO_SHORT);
	assert_int_equal(squib_fail_msg(NULL, SQUIB_E_ENCODING, "x"), SQUIB_E_ENCODING);
	assert_int_equal(squib_fail_cross_fs(NULL, "a", "b"), SQUIB_E_ATOMIC_COMMIT_CROSS_FS);
}

static const char *formatted(int code, const struct squib_error_detail *d)
{
	static char buf[SQUIB_ERROR_TEXT_MAX];
	int n = squib_error_format(code, d, buf, sizeof(buf));

	assert_true(n > 0);
	assert_int_equal((size_t)n, strlen(buf));
	return buf;
}

static void test_should_format_the_message_with_the_detail_it_lacks(void **state)
{
	struct squib_error_detail d;
	char small[16];

	(void)state;
	squib_fail_errno_msg(&d, SQUIB_E_IO, ENOENT, "opening /x/vm.snap");
	assert_string_equal(formatted(d.code, &d), "snapshot I/O error: No such file or directory "
						   "(os error 2) (opening /x/vm.snap)");
	/* The wire text alone stays what it was. */
	assert_string_equal(render(d.code, &d),
			    "snapshot I/O error: No such file or directory (os error 2)");
	/* A message that carries the detail does not repeat it. */
	squib_fail_msg(&d, SQUIB_E_INVALID_PATH, "no memory section");
	assert_string_equal(formatted(d.code, &d), "invalid snapshot path: no memory section");
	squib_fail(&d, SQUIB_E_CRC_MISMATCH);
	assert_string_equal(formatted(d.code, &d), "snapshot CRC64 mismatch");
	assert_string_equal(formatted(SQUIB_E_NOMEM, NULL), "out of memory");
	/* snprintf's contract: the full length, a cut but terminated text. */
	squib_fail_errno_msg(&d, SQUIB_E_IO, EIO, "reading x");
	assert_int_equal(
	    squib_error_format(d.code, &d, small, sizeof(small)),
	    (int)strlen("snapshot I/O error: Input/output error (os error 5) (reading x)"));
	assert_string_equal(small, "snapshot I/O er");
}

static void test_should_keep_the_ends_of_a_long_path(void **state)
{
	struct squib_error_detail d;
	char dest[1200], want[SQUIB_DETAIL_PATH_MAX];
	size_t keep = (SQUIB_DETAIL_PATH_MAX - 4) / 2;

	(void)state;
	memset(dest, 'a', sizeof(dest) - 1);
	dest[0] = '/';
	memcpy(dest + sizeof(dest) - 1 - 9, "/vm.state", 9);
	dest[sizeof(dest) - 1] = '\0';
	squib_fail_cross_fs(&d, dest, "/tmp");
	assert_int_equal(strlen(d.path_a), 2 * keep + 3);
	snprintf(want, sizeof(want), "%.*s...%s", (int)keep, dest, dest + strlen(dest) - keep);
	assert_string_equal(d.path_a, want);
	assert_string_equal(d.path_b, "/tmp");
	/* A path that fits is kept whole, and a cut never splits a UTF-8 character. */
	memset(dest, 0, sizeof(dest));
	for (size_t i = 0; i + 2 < 600; i += 2)
		memcpy(dest + i, "\xc3\xa9", 2); /* é */
	squib_fail_cross_fs(&d, dest, dest);
	assert_int_equal(strlen(d.path_a) % 2, 1); /* whole characters + "..." */
	assert_non_null(strstr(d.path_a, "\xc3\xa9...\xc3\xa9"));
	assert_true(strlen(d.path_a) < SQUIB_DETAIL_PATH_MAX);
}

static void test_should_stay_a_small_fixed_size_detail(void **state)
{
	(void)state;
	/* Two 4 KiB paths made it 8752 bytes, zeroed on every served page fault. */
	assert_true(sizeof(struct squib_error_detail) <= 1088);
}

static void test_should_apply_the_backend_rule_in_one_place(void **state)
{
	static const int foreign[] = {1, 4096, -1019, -1500, -5000};
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_backend_rc(0, &d, "x"), 0);
	/* -errno: SQUIB_E_IO with the errno and what failed. */
	squib_error_clear(&d);
	assert_int_equal(squib_backend_rc(-EINTR, &d, "vm: %s", "capture"), SQUIB_E_IO);
	assert_int_equal(d.os_errno, EINTR);
	assert_string_equal(
	    formatted(d.code, &d),
	    "snapshot I/O error: Interrupted system call (os error 4) (vm: capture)");
	/* A SQUIB_E_* the backend filled is kept as it is... */
	squib_error_clear(&d);
	squib_fail_msg(&d, SQUIB_E_CAPTURE, "KVM_GET_REGS: Bad address");
	assert_int_equal(squib_backend_rc(SQUIB_E_CAPTURE, &d, "vm: capture"), SQUIB_E_CAPTURE);
	assert_string_equal(d.msg, "KVM_GET_REGS: Bad address");
	/* ...one it did not fill names the op. */
	squib_error_clear(&d);
	assert_int_equal(squib_backend_rc(SQUIB_E_BUSY, &d, "vm: capture"), SQUIB_E_BUSY);
	assert_int_equal(d.code, SQUIB_E_BUSY);
	assert_string_equal(d.msg, "vm: capture failed");
	for (size_t i = 0; i < sizeof(foreign) / sizeof(foreign[0]); i++) {
		squib_error_clear(&d);
		assert_int_equal(squib_backend_rc(foreign[i], &d, "vm: capture"), SQUIB_E_CAPTURE);
		assert_non_null(strstr(d.msg, "vm: capture returned"));
	}
	assert_int_equal(squib_backend_rc(-EIO, NULL, "x"), SQUIB_E_IO);
	squib_error_clear(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_render_quiesce_timeout_with_stable_message),
		cmocka_unit_test(test_should_format_magic_mismatch_with_hex),
		cmocka_unit_test(test_should_format_zero_magic_like_rust),
		cmocka_unit_test(test_should_format_version_mismatch_as_semver),
		cmocka_unit_test(test_should_render_parameterless_variants_exactly),
		cmocka_unit_test(test_should_classify_io_errors_under_io_variant),
		cmocka_unit_test(test_should_render_busy_with_the_path_it_names),
		cmocka_unit_test(test_should_route_atomic_commit_failure_into_dedicated_variant),
		cmocka_unit_test(test_should_describe_cross_fs_with_paths),
		cmocka_unit_test(test_should_escape_cross_fs_paths_like_rust_debug),
		cmocka_unit_test(test_should_render_message_carrying_variants),
		cmocka_unit_test(test_should_truncate_like_snprintf),
		cmocka_unit_test(test_should_name_every_code_distinctly),
		cmocka_unit_test(test_should_accept_null_detail_in_fail_helpers),
		cmocka_unit_test(test_should_format_the_message_with_the_detail_it_lacks),
		cmocka_unit_test(test_should_keep_the_ends_of_a_long_path),
		cmocka_unit_test(test_should_stay_a_small_fixed_size_detail),
		cmocka_unit_test(test_should_apply_the_backend_rule_in_one_place),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
