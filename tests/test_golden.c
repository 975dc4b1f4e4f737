/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Golden state files (tests/fixtures/): each decodes, re-encodes byte for byte,
 * carries the format version this build writes, and is exactly what its
 * builder (tests/support/fixtures.c, examples/produce_demo_pair.c) produces now.
 * A format change without regenerated fixtures fails here.
 */
#include "fixtures.h"
#include "spawn.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include <squib/memfile.h>
#include <squib/snapshot.h>

#define REGENERATE "run scripts/gen-fixtures.sh BUILD_DIR, review the diff and commit it"

static const char *const golden_files[] = {"demo.snap", "minimal.snap", "maximal.snap", "x86.snap"};

static uint8_t *read_fixture(const char *name, size_t *len)
{
	char *path = squib_test_fixture(name);
	uint8_t *buf;
	int r = squib_test_read_file(path, &buf, len);

	if (r)
		fail_msg("%s: %s (%s)", path, strerror(-r), REGENERATE);
	free(path);
	return buf;
}

static void assert_same_bytes(const char *what, const uint8_t *a, size_t alen, const uint8_t *b,
			      size_t blen)
{
	size_t i = 0;

	while (i < alen && i < blen && a[i] == b[i])
		i++;
	if (alen != blen || i != alen)
		fail_msg("%s: %zu vs %zu bytes, first difference at offset %zu; if the format "
			 "changed on purpose, " REGENERATE,
			 what, alen, blen, i);
}

static void test_should_carry_the_format_version_this_build_writes(void **state)
{
	struct squib_version v = squib_format_version();

	(void)state;
	for (size_t i = 0; i < sizeof(golden_files) / sizeof(golden_files[0]); i++) {
		struct squib_envelope_header hdr;
		size_t len;
		uint8_t *buf = read_fixture(golden_files[i], &len);

		assert_int_equal(squib_envelope_parse_header(buf, len, &hdr, NULL), 0);
		if (hdr.version.major != v.major || hdr.version.minor != v.minor ||
		    hdr.version.patch != v.patch)
			fail_msg("%s has format version %u.%u.%u but this build writes "
				 "%u.%u.%u: " REGENERATE,
				 golden_files[i], hdr.version.major, hdr.version.minor,
				 hdr.version.patch, v.major, v.minor, v.patch);
		free(buf);
	}
}

static void test_should_decode_and_re_encode_every_fixture_byte_for_byte(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(golden_files) / sizeof(golden_files[0]); i++) {
		struct squib_microvm_state s;
		struct squib_error_detail d;
		char msg[1024];
		size_t len, out_len;
		uint8_t *buf = read_fixture(golden_files[i], &len), *out;
		int r = squib_state_decode(buf, len, SQUIB_ARCH_ANY, &s, NULL, &d);

		if (r) {
			squib_error_message(r, &d, msg, sizeof(msg));
			fail_msg("%s does not decode: %s (%s)", golden_files[i], msg, REGENERATE);
		}
		assert_int_equal(squib_state_encode(&s, &out, &out_len, NULL), 0);
		assert_same_bytes(golden_files[i], buf, len, out, out_len);
		squib_state_free(&s);
		free(out);
		free(buf);
	}
}

static void test_should_match_what_the_fixture_builders_produce(void **state)
{
	size_t n;
	const struct squib_fixture *t = squib_fixture_table(&n);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		struct squib_microvm_state built, decoded;
		size_t len, out_len;
		uint8_t *buf = read_fixture(t[i].file, &len), *out;

		assert_int_equal(t[i].build(&built), 0);
		assert_int_equal(squib_state_encode(&built, &out, &out_len, NULL), 0);
		assert_same_bytes(t[i].file, buf, len, out, out_len);
		assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_ANY, &decoded, NULL, NULL),
				 0);
		assert_true(squib_state_equal(&built, &decoded));
		squib_state_free(&built);
		squib_state_free(&decoded);
		free(out);
		free(buf);
	}
}

static void compare_with_fixture(const char *dir, const char *name)
{
	char *path = squib_test_path(dir, name);
	uint8_t *made, *golden;
	size_t made_len, golden_len;

	assert_int_equal(squib_test_read_file(path, &made, &made_len), 0);
	golden = read_fixture(name, &golden_len);
	assert_same_bytes(name, golden, golden_len, made, made_len);
	free(made);
	free(golden);
	free(path);
}

static void test_should_match_what_produce_demo_pair_writes(void **state)
{
	const char *build = getenv("SQUIB_BUILD_DIR");
	char *dir = squib_test_tmpdir(), *prog, *base = squib_test_path(dir, "demo");
	struct squib_test_proc p;

	(void)state;
	if (!build || !*build)
		fail_msg("SQUIB_BUILD_DIR is not set (run through ctest)");
	prog = squib_test_path(build, "produce_demo_pair");
	squib_test_spawn(NULL, (char *[]){prog, base, NULL}, &p);
	if (p.status != 0)
		fail_msg("produce_demo_pair exited %d: %s", p.status, p.err);
	compare_with_fixture(dir, "demo.snap");
	compare_with_fixture(dir, "demo.mem");
	squib_test_proc_free(&p);
	squib_test_rmtree(dir);
	free(prog);
	free(base);
	free(dir);
}

static void test_should_describe_demo_memory_file_as_dense_pattern(void **state)
{
	size_t len;
	uint8_t *mem = read_fixture("demo.mem", &len);

	(void)state;
	assert_int_equal(len, 65536);
	for (size_t i = 0; i < len; i++)
		assert_int_equal(mem[i], i % 256);
	free(mem);
}

/* ---- memory files ---------------------------------------------------------------------- */

static const char *const golden_mems[] = {SQUIB_FIXTURE_MEM_FULL, SQUIB_FIXTURE_MEM_DIFF,
					  SQUIB_FIXTURE_MEM_PACKED};

static void test_should_match_what_the_memory_file_builder_writes(void **state)
{
	char *dir = squib_test_tmpdir();

	(void)state;
	assert_int_equal(squib_fixture_write_memfiles(dir), 0);
	for (size_t i = 0; i < sizeof(golden_mems) / sizeof(golden_mems[0]); i++)
		compare_with_fixture(dir, golden_mems[i]);
	squib_test_rmtree(dir);
	free(dir);
}

/* Old (1.0.0) files still load; a packed diff (1.1.0) reads as its fixed-offset twin. */
static void test_should_decode_every_memory_file_fixture(void **state)
{
	static const uint8_t want[4] = {0xcd, 0xab, 0xef, 0x01};
	static const uint16_t minor[3] = {0, 0, 1};
	static const uint32_t flags[3] = {0, SQUIB_MEMFILE_FLAG_DIGESTS,
					  SQUIB_MEMFILE_FLAG_DIGESTS | SQUIB_MEMFILE_FLAG_PACKED};
	uint8_t page[4096];

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		struct squib_memfile_manifest m;
		struct squib_error_detail d;
		size_t len;
		uint8_t *buf = read_fixture(golden_mems[i], &len);

		if (squib_memfile_parse(buf, len, &m, &d))
			fail_msg("%s does not decode: %s (%s)", golden_mems[i], d.msg, REGENERATE);
		assert_int_equal(m.version.minor, minor[i]);
		assert_int_equal(m.flags, flags[i]);
		squib_memfile_manifest_release(&m);
		free(buf);
	}
	for (size_t k = 1; k < 3; k++) {
		char *paths[2] = {squib_test_fixture(golden_mems[0]),
				  squib_test_fixture(golden_mems[k])};
		struct squib_memfile_chain *c;
		struct squib_error_detail d;

		if (squib_memfile_chain_open((const char *const *)paths, 2, &c, &d))
			fail_msg("chain over %s: %s", golden_mems[k], d.msg);
		for (uint64_t p = 0; p < 4; p++) {
			assert_int_equal(
			    squib_memfile_chain_read_page(c, 0x80000000ull + p * 4096, page, &d),
			    0);
			for (size_t b = 0; b < sizeof(page); b++)
				assert_int_equal(page[b], want[p]);
		}
		assert_int_equal(squib_memfile_verify(paths[1], true, NULL, &d), 0);
		squib_memfile_chain_close(c);
		free(paths[0]);
		free(paths[1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_carry_the_format_version_this_build_writes),
	    cmocka_unit_test(test_should_decode_and_re_encode_every_fixture_byte_for_byte),
	    cmocka_unit_test(test_should_match_what_the_fixture_builders_produce),
	    cmocka_unit_test(test_should_match_what_produce_demo_pair_writes),
	    cmocka_unit_test(test_should_describe_demo_memory_file_as_dense_pattern),
	    cmocka_unit_test(test_should_match_what_the_memory_file_builder_writes),
	    cmocka_unit_test(test_should_decode_every_memory_file_fixture),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
