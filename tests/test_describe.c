/* SPDX-License-Identifier: Apache-2.0 */
/*
 * describe: upstream load.rs describe tests, the exact human text of demo.snap,
 * damaged and truncated files, either architecture, and the CLI.
 */
#include "pair.h"
#include "spawn.h"
#include "testutil.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/snapshot.h>

#include "../src/util.h"

/* ---- helpers ---- */

static uint8_t *read_fixture(const char *name, size_t *len)
{
	char *path = squib_test_fixture(name);
	uint8_t *buf;

	assert_int_equal(squib_test_read_file(path, &buf, len), 0);
	free(path);
	return buf;
}

static char *read_fixture_text(const char *name)
{
	size_t len;
	uint8_t *buf = read_fixture(name, &len);
	char *s = malloc(len + 1);

	assert_non_null(s);
	memcpy(s, buf, len);
	s[len] = '\0';
	free(buf);
	return s;
}

/* A copy of fixture `name` in a fresh temp dir under `as`; heap path. */
static char *copy_fixture(const char *dir, const char *name, const char *as)
{
	size_t len;
	uint8_t *buf = read_fixture(name, &len);
	char *path = squib_test_path(dir, as);

	assert_int_equal(squib_test_write_file(path, buf, len), 0);
	free(buf);
	return path;
}

/* Recompute the CRC trailer after editing a file. */
static void refresh_crc(uint8_t *buf, size_t len)
{
	uint64_t crc = squib_crc64(0, buf, len - SQUIB_STATE_TRAILER_SIZE);

	for (int i = 0; i < 8; i++)
		buf[len - 8 + i] = (uint8_t)(crc >> (8 * i));
}

static char *human(const struct squib_description *desc)
{
	char *s = NULL;

	assert_int_equal(squib_describe_human(desc, &s), 0);
	assert_non_null(s);
	return s;
}

static json_t *json_of(const struct squib_description *desc)
{
	char *s = NULL;
	json_error_t err;
	json_t *j;

	assert_int_equal(squib_describe_json(desc, &s), 0);
	j = json_loads(s, 0, &err);
	if (!j)
		fail_msg("describe JSON does not parse: %s\n%s", err.text, s);
	free(s);
	return j;
}

static void assert_contains(const char *hay, const char *needle)
{
	if (!strstr(hay, needle))
		fail_msg("expected to find \"%s\" in:\n%s", needle, hay);
}

static void describe_fixture(const char *name, struct squib_description *desc)
{
	char *path = squib_test_fixture(name);
	struct squib_error_detail d;

	assert_int_equal(squib_describe(path, desc, &d), 0);
	free(path);
}

/* Describe `path` with the current directory set to the fixture directory, so
 * the text shows the path exactly as given (as the committed expectation does). */
static void describe_in_fixture_dir(const char *path, struct squib_description *desc)
{
	char *dir = squib_test_fixture("");
	int here = open(".", O_RDONLY | O_DIRECTORY);

	assert_true(here >= 0);
	assert_int_equal(chdir(dir), 0);
	assert_int_equal(squib_describe(path, desc, NULL), 0);
	assert_int_equal(fchdir(here), 0);
	close(here);
	free(dir);
}

/* ---- upstream load.rs ---- */

static void test_should_describe_state_file_in_human_form(void **state)
{
	struct squib_description desc;
	char *text;

	(void)state;
	describe_fixture("demo.snap", &desc);
	text = human(&desc);
	assert_contains(text, "\n  vcpu_count:          2\n");
	assert_contains(text, "\n  mem_size_mib:        256\n");
	assert_contains(text, "\n  crc_ok:              yes\n");
	free(text);
	squib_description_free(&desc);
}

static void test_should_describe_state_file_in_json_form(void **state)
{
	static const char *const keys[] = {
		"state_path",           "magic",
		"version",              "expected_version",
		"vcpu_count",           "mem_size_mib",
		"track_dirty_pages",    "devices",
		"mmds_present",         "inferred_memory_path",
		"inferred_memory_exists", "inferred_memory_size",
		"memory",               "crc_ok",
	};
	struct squib_description desc;
	json_t *j;

	(void)state;
	describe_fixture("demo.snap", &desc);
	j = json_of(&desc);
	assert_int_equal(json_integer_value(json_object_get(j, "vcpu_count")), 2);
	assert_int_equal(json_integer_value(json_object_get(j, "mem_size_mib")), 256);
	assert_true(json_is_true(json_object_get(j, "crc_ok")));
	assert_string_equal(json_string_value(json_object_get(j, "magic")), "0x07101984aaaa0000");
	assert_string_equal(json_string_value(json_object_get(j, "version")),
			    json_string_value(json_object_get(j, "expected_version")));
	assert_int_equal(json_object_size(j), sizeof(keys) / sizeof(keys[0]));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!json_object_get(j, keys[i]))
			fail_msg("JSON lacks key %s", keys[i]);
	assert_true(json_is_null(json_object_get(j, "memory"))); /* no MEMORY section */
	json_decref(j);
	squib_description_free(&desc);
}

static void test_should_describe_devices_in_json_form(void **state)
{
	struct squib_description desc;
	json_t *j, *devs, *dev;

	(void)state;
	describe_fixture("demo.snap", &desc);
	j = json_of(&desc);
	devs = json_object_get(j, "devices");
	assert_int_equal(json_array_size(devs), 2);
	dev = json_array_get(devs, 1);
	assert_string_equal(json_string_value(json_object_get(dev, "kind")), "virtio-net");
	assert_string_equal(json_string_value(json_object_get(dev, "id")), "eth0");
	assert_int_equal(json_integer_value(json_object_get(dev, "mmio_slot")), 1);
	assert_int_equal(json_object_size(dev), 3);
	assert_true(json_is_true(json_object_get(j, "mmds_present")));
	assert_int_equal(json_integer_value(json_object_get(j, "inferred_memory_size")), 65536);
	json_decref(j);
	squib_description_free(&desc);
}

static void test_should_describe_corrupt_file_with_crc_warning(void **state)
{
	char *dir = squib_test_tmpdir(), *path = copy_fixture(dir, "demo.snap", "demo.snap");
	struct squib_description desc;
	uint8_t *buf;
	size_t len;
	char *text;
	json_t *j;

	(void)state;
	assert_int_equal(squib_test_read_file(path, &buf, &len), 0);
	buf[len - 1] ^= 0xff;
	assert_int_equal(squib_test_write_file(path, buf, len), 0);
	assert_int_equal(squib_describe(path, &desc, NULL), 0);
	assert_false(desc.crc_ok);
	assert_true(desc.body_ok);
	assert_int_equal(desc.vcpu_count, 2);
	text = human(&desc);
	assert_contains(text, "\n  crc_ok:              NO\n");
	j = json_of(&desc);
	assert_true(json_is_false(json_object_get(j, "crc_ok")));
	assert_null(json_object_get(j, "body_error"));
	json_decref(j);
	free(text);
	free(buf);
	squib_description_free(&desc);
	squib_test_rmtree(dir);
	free(path);
	free(dir);
}

static void expect_inferred(const char *state_path, const char *expected)
{
	char *out = (char *)1;

	assert_int_equal(squib_infer_memory_path(state_path, &out), 0);
	if (!expected && out)
		fail_msg("infer(\"%s\") = \"%s\", expected none", state_path, out);
	if (expected && (!out || strcmp(out, expected)))
		fail_msg("infer(\"%s\") = \"%s\", expected \"%s\"", state_path,
			 out ? out : "(none)", expected);
	free(out);
}

static void test_should_infer_memory_path_from_state_path(void **state)
{
	(void)state;
	expect_inferred("/tmp/x.snap", "/tmp/x.mem");
	expect_inferred("/tmp/x.snapshot", "/tmp/x.mem");
	expect_inferred("/tmp/x.bin", "/tmp/x.mem");
	expect_inferred("a.tar.gz", "a.tar.mem");
	expect_inferred("dir/x", NULL);
	expect_inferred("/tmp/no_extension", NULL);
	expect_inferred(".snap", NULL);
	expect_inferred("dir/.snap", NULL);
	expect_inferred("foo.", "foo.mem");
}

/* The rule every command follows: an explicit path as given, else the inferred one, else an error.
 */
static void test_should_pick_the_memory_path_by_one_rule(void **state)
{
	struct squib_error_detail d;
	char *out = NULL;

	(void)state;
	assert_int_equal(squib_mem_path_for_state("/tmp/x.snap", NULL, &out, &d), 0);
	assert_string_equal(out, "/tmp/x.mem");
	free(out);
	assert_int_equal(squib_mem_path_for_state("/tmp/x.snap", "/other/y", &out, &d), 0);
	assert_string_equal(out, "/other/y");
	free(out);
	/* An explicit path also where none could be inferred. */
	assert_int_equal(squib_mem_path_for_state("/tmp/vm", "/tmp/vm.mem", &out, &d), 0);
	assert_string_equal(out, "/tmp/vm.mem");
	free(out);
	assert_int_equal(squib_mem_path_for_state("/tmp/vm", NULL, &out, &d), SQUIB_E_INVALID_PATH);
	assert_null(out);
	assert_non_null(strstr(d.msg, "/tmp/vm"));
	assert_non_null(strstr(d.msg, "no extension"));
	assert_int_equal(squib_mem_path_for_state("/tmp/x.snap", "", &out, &d),
			 SQUIB_E_INVALID_PATH);
	assert_int_equal(squib_mem_path_for_state(NULL, NULL, &out, &d), SQUIB_E_INVALID_ARGUMENT);
}

static void test_should_infer_memory_path_like_rust_at_the_edges(void **state)
{
	(void)state;
	expect_inferred("", NULL);
	expect_inferred("/", NULL);
	expect_inferred(".", NULL);
	expect_inferred("..", NULL);
	expect_inferred("a/..", NULL);
	expect_inferred("./.", NULL);
	expect_inferred("x.d/file", NULL);
	expect_inferred("dir/x.snap/", "dir/x.mem");
	expect_inferred("dir/x.snap/.", "dir/x.mem");
	expect_inferred("dir//x.snap", "dir//x.mem");
	expect_inferred("..snap", "..mem");
	expect_inferred(".snap.bak", ".snap.mem");
	expect_inferred("a..", "a..mem");
}

static void test_should_report_missing_memory_file(void **state)
{
	char *dir = squib_test_tmpdir(), *path = copy_fixture(dir, "demo.snap", "x.snap");
	struct squib_description desc;
	char *text;

	(void)state;
	assert_int_equal(squib_describe(path, &desc, NULL), 0);
	assert_false(desc.inferred_memory_exists);
	assert_false(desc.has_inferred_memory_size);
	text = human(&desc);
	assert_contains(text, "x.mem (MISSING)\n");
	free(text);
	squib_description_free(&desc);
	squib_test_rmtree(dir);
	free(path);
	free(dir);
}

static void test_should_report_present_memory_file_with_size(void **state)
{
	struct squib_description desc;
	char *text;

	(void)state;
	describe_fixture("demo.snap", &desc);
	assert_true(desc.inferred_memory_exists);
	text = human(&desc);
	assert_contains(text, "demo.mem (65536 bytes)\n");
	free(text);
	squib_description_free(&desc);
}

static void test_should_omit_memory_line_without_extension(void **state)
{
	char *dir = squib_test_tmpdir(), *path = copy_fixture(dir, "demo.snap", "noext");
	struct squib_description desc;
	char *text;
	json_t *j;

	(void)state;
	assert_int_equal(squib_describe(path, &desc, NULL), 0);
	assert_null(desc.inferred_memory_path);
	text = human(&desc);
	assert_null(strstr(text, "memory file:"));
	j = json_of(&desc);
	assert_true(json_is_null(json_object_get(j, "inferred_memory_path")));
	assert_true(json_is_null(json_object_get(j, "inferred_memory_size")));
	json_decref(j);
	free(text);
	squib_description_free(&desc);
	squib_test_rmtree(dir);
	free(path);
	free(dir);
}

static void test_should_surface_truncated_file_as_too_short(void **state)
{
	char *dir = squib_test_tmpdir(), *path = squib_test_path(dir, "short.snap");
	struct squib_description desc;
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_test_write_file(path, "abc", 3), 0);
	assert_int_equal(squib_describe(path, &desc, &d), SQUIB_E_TOO_SHORT);
	assert_int_equal(d.code, SQUIB_E_TOO_SHORT);
	squib_test_rmtree(dir);
	free(path);
	free(dir);
}

/* ---- the MEMORY section ---- */

#define MEM_PAGES 16

struct mem_pair {
	char *dir, *snap, *mem;
	uint8_t *ram;
	uint64_t ps;
	struct squib_memfile_manifest m;
};

/* <dir>/p.snap describing <dir>/p.mem, a full file of 16 pages, 3 of them zero. */
static void make_pair(struct mem_pair *p)
{
	p->dir = squib_test_tmpdir();
	p->ps = squib_test_page_size();
	p->ram = squib_test_guest_ram(MEM_PAGES * p->ps, 5);
	memset(p->ram + 2 * p->ps, 0, 3 * p->ps);
	squib_test_save_pair(p->dir, "p", p->ram, MEM_PAGES * p->ps, false, &p->snap, &p->mem,
			     &p->m);
}

static void free_pair(struct mem_pair *p)
{
	squib_memfile_manifest_release(&p->m);
	munmap(p->ram, MEM_PAGES * p->ps);
	squib_test_rmtree(p->dir);
	free(p->snap);
	free(p->mem);
	free(p->dir);
}

static char *line(const char *name, const char *value)
{
	char *s;

	int pad = (int)(SQUIB_DESCRIBE_VALUE_COLUMN - 3 - strlen(name));

	if (asprintf(&s, "\n  %s:%*s%s\n", name, pad, "", value) < 0)
		fail_msg("asprintf failed");
	return s;
}

static void assert_line(const char *text, const char *name, const char *value)
{
	char *l = line(name, value);

	assert_contains(text, l);
	free(l);
}

static void test_should_describe_the_memory_section_in_human_form(void **state)
{
	struct squib_description desc;
	struct mem_pair p;
	char id[33], num[32], *text, *mem_line;

	(void)state;
	make_pair(&p);
	assert_int_equal(squib_describe(p.snap, &desc, NULL), 0);
	assert_true(desc.has_memory);
	assert_int_equal(desc.memory.kind, SQUIB_MEMORY_FULL);
	assert_memory_equal(desc.memory.id, p.m.layout.id, SQUIB_MEMORY_ID_SIZE);
	assert_int_equal(desc.memory.present_pages, MEM_PAGES - 3);
	assert_int_equal(desc.memory.present_bytes, (MEM_PAGES - 3) * p.ps);
	assert_int_equal(desc.memory.extent_count, 2);
	assert_int_equal(desc.memory_match, SQUIB_MEMORY_MATCH_YES);
	assert_null(desc.memory_match_detail);
	text = human(&desc);
	squib_memfile_id_hex(p.m.layout.id, id);
	/* The new lines follow "memory file:", in order, values at column 23. */
	mem_line = strstr(text, "\n  memory file:");
	assert_non_null(mem_line);
	assert_true(strstr(text, "\n  memory kind:") > mem_line);
	assert_line(text, "memory kind", "full");
	assert_line(text, "memory id", id);
	assert_line(text, "memory parent id", "none");
	snprintf(num, sizeof(num), "%llu", (unsigned long long)p.ps);
	assert_line(text, "memory page size", num);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)(MEM_PAGES * p.ps));
	assert_line(text, "memory ram size", num);
	assert_line(text, "present pages", "13");
	snprintf(num, sizeof(num), "%llu", (unsigned long long)(13 * p.ps));
	assert_line(text, "present bytes", num);
	assert_line(text, "memory file match", "yes");
	assert_true(strstr(text, "\n  crc_ok:") > strstr(text, "\n  memory file match:"));
	free(text);
	squib_description_free(&desc);
	free_pair(&p);
}

static void test_should_describe_the_memory_section_in_json_form(void **state)
{
	struct squib_description desc;
	struct mem_pair p;
	json_t *j, *m;
	char id[33];

	(void)state;
	make_pair(&p);
	assert_int_equal(squib_describe(p.snap, &desc, NULL), 0);
	j = json_of(&desc);
	m = json_object_get(j, "memory");
	assert_true(json_is_object(m));
	squib_memfile_id_hex(p.m.layout.id, id);
	assert_string_equal(json_string_value(json_object_get(m, "kind")), "full");
	assert_string_equal(json_string_value(json_object_get(m, "id")), id);
	assert_true(json_is_null(json_object_get(m, "parent_id")));
	assert_int_equal(json_integer_value(json_object_get(m, "page_size")), p.ps);
	assert_int_equal(json_integer_value(json_object_get(m, "ram_size")), MEM_PAGES * p.ps);
	assert_int_equal(json_integer_value(json_object_get(m, "file_size")), p.m.layout.file_size);
	assert_int_equal(json_integer_value(json_object_get(m, "region_count")), 1);
	assert_int_equal(json_integer_value(json_object_get(m, "extent_count")), 2);
	assert_int_equal(json_integer_value(json_object_get(m, "present_pages")), 13);
	assert_int_equal(json_integer_value(json_object_get(m, "present_bytes")), 13 * p.ps);
	assert_string_equal(json_string_value(json_object_get(m, "file_match")), "yes");
	assert_true(json_is_null(json_object_get(m, "file_match_detail")));
	assert_int_equal(json_object_size(m), 12);
	json_decref(j);
	squib_description_free(&desc);
	free_pair(&p);
}

static void test_should_show_a_diffs_parent_id(void **state)
{
	static const uint64_t dirty[] = {7};
	struct squib_memfile_manifest dm;
	struct squib_description desc;
	struct mem_pair p;
	char *snap, *mem, *text, parent[33];
	json_t *j;

	(void)state;
	make_pair(&p);
	snap = squib_test_path(p.dir, "d.snap");
	mem = squib_test_path(p.dir, "d.mem");
	squib_test_save_diff(mem, p.ram, MEM_PAGES * p.ps, p.m.layout.id, dirty, 1, false, &dm);
	squib_test_save_state(snap, &dm.layout);
	assert_int_equal(squib_describe(snap, &desc, NULL), 0);
	text = human(&desc);
	squib_memfile_id_hex(p.m.layout.id, parent);
	assert_line(text, "memory kind", "diff");
	assert_line(text, "memory parent id", parent);
	assert_line(text, "memory file match", "yes");
	j = json_of(&desc);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "memory"),
							      "parent_id")),
			    parent);
	json_decref(j);
	free(text);
	squib_description_free(&desc);
	squib_memfile_manifest_release(&dm);
	free(snap);
	free(mem);
	free_pair(&p);
}

static void test_should_say_when_the_memory_file_is_another_snapshots(void **state)
{
	struct squib_memfile_manifest other;
	struct squib_description desc;
	struct mem_pair p;
	char want[33], have[33], *text;
	json_t *j;

	(void)state;
	make_pair(&p);
	squib_test_save_full(p.mem, p.ram, MEM_PAGES * p.ps, false, &other); /* a new id */
	assert_int_equal(squib_describe(p.snap, &desc, NULL), 0);
	assert_int_equal(desc.memory_match, SQUIB_MEMORY_MATCH_NO);
	squib_memfile_id_hex(p.m.layout.id, want);
	squib_memfile_id_hex(other.layout.id, have);
	assert_contains(desc.memory_match_detail, want);
	assert_contains(desc.memory_match_detail, have);
	text = human(&desc);
	assert_contains(text, "\n  memory file match:   NO (memory file has id ");
	j = json_of(&desc);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "memory"),
							      "file_match")),
			    "no");
	json_decref(j);
	free(text);
	squib_description_free(&desc);
	squib_memfile_manifest_release(&other);
	free_pair(&p);
}

/* The footer says "diff" (with a parent) where the state says "full", same id. */
static void test_should_say_when_the_memory_file_is_of_another_kind(void **state)
{
	struct squib_description desc;
	struct mem_pair p;
	uint8_t *buf, *foot;
	size_t len;

	(void)state;
	make_pair(&p);
	assert_int_equal(squib_test_read_file(p.mem, &buf, &len), 0);
	foot = buf + len - SQUIB_MEMFILE_FOOTER_SIZE;
	foot[40] = 0x77;		/* parent_id */
	squib_put_le32(foot + 56, 2); /* kind diff */
	squib_put_le64(foot + 4088, squib_crc64(0, foot, 4088));
	assert_int_equal(squib_test_write_file(p.mem, buf, len), 0);
	assert_int_equal(squib_describe(p.snap, &desc, NULL), 0);
	assert_int_equal(desc.memory_match, SQUIB_MEMORY_MATCH_NO);
	assert_string_equal(desc.memory_match_detail,
			    "memory file is a diff file, the state expects a full file");
	squib_description_free(&desc);
	free(buf);
	free_pair(&p);
}

static void test_should_say_when_the_memory_file_is_missing_or_unreadable(void **state)
{
	struct squib_description desc;
	struct mem_pair p;
	char *text;
	json_t *j;

	(void)state;
	make_pair(&p);
	squib_test_xor_byte(p.mem, -10, 0x01); /* the footer CRC */
	assert_int_equal(squib_describe(p.snap, &desc, NULL), 0);
	assert_int_equal(desc.memory_match, SQUIB_MEMORY_MATCH_UNREADABLE);
	assert_contains(desc.memory_match_detail, "memory file footer CRC");
	text = human(&desc);
	assert_contains(text, "\n  memory file match:   UNREADABLE (snapshot CRC64 mismatch (");
	free(text);
	squib_description_free(&desc);
	assert_int_equal(remove(p.mem), 0);
	assert_int_equal(squib_describe(p.snap, &desc, NULL), 0);
	assert_int_equal(desc.memory_match, SQUIB_MEMORY_MATCH_MISSING);
	text = human(&desc);
	assert_contains(text, "p.mem (MISSING)\n");
	assert_line(text, "memory file match", "MISSING");
	j = json_of(&desc);
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "memory"),
							      "file_match")),
			    "missing");
	json_decref(j);
	free(text);
	squib_description_free(&desc);
	free_pair(&p);
}

static void test_should_not_check_the_memory_file_of_a_buffer(void **state)
{
	struct squib_description desc;
	struct mem_pair p;
	uint8_t *buf;
	size_t len;
	char *text;

	(void)state;
	make_pair(&p);
	assert_int_equal(squib_test_read_file(p.snap, &buf, &len), 0);
	assert_int_equal(squib_describe_buffer(buf, len, p.snap, &desc, NULL), 0);
	assert_true(desc.has_memory);
	assert_int_equal(desc.memory_match, SQUIB_MEMORY_MATCH_UNCHECKED);
	text = human(&desc);
	assert_line(text, "memory file match", "not checked");
	free(text);
	squib_description_free(&desc);
	free(buf);
	free_pair(&p);
}

/* ---- the exact text ---- */

static void test_should_match_committed_human_text_of_demo(void **state)
{
	struct squib_description desc;
	char *expected = read_fixture_text("demo.describe.txt");
	char *text;

	(void)state;
	describe_in_fixture_dir("demo.snap", &desc);
	text = human(&desc);
	assert_string_equal(text, expected);
	free(text);
	free(expected);
	squib_description_free(&desc);
}

/* ---- damaged, truncated and foreign files ---- */

static void flip_every_bit(const char *fixture)
{
	size_t len;
	uint8_t *buf = read_fixture(fixture, &len);

	for (size_t bit = 0; bit < 8 * len; bit++) {
		struct squib_description desc;
		int r;

		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		r = squib_describe_buffer(buf, len, "flip.snap", &desc, NULL);
		if (r || desc.crc_ok)
			fail_msg("%s bit %zu: describe returned %d, crc_ok %d", fixture, bit, r,
				 !r && desc.crc_ok);
		squib_description_free(&desc);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	free(buf);
}

static void test_should_report_crc_failure_for_every_bit_flip_of_demo(void **state)
{
	(void)state;
	flip_every_bit("demo.snap");
}

static void test_should_report_crc_failure_for_every_bit_flip_of_minimal(void **state)
{
	(void)state;
	flip_every_bit("minimal.snap");
}

static void test_should_never_report_crc_ok_for_a_truncated_file(void **state)
{
	size_t len;
	uint8_t *buf = read_fixture("demo.snap", &len);

	(void)state;
	for (size_t n = 0; n < len; n++) {
		struct squib_description desc;
		int r = squib_describe_buffer(buf, n, "cut.snap", &desc, NULL);

		if (r == 0 && !desc.crc_ok) {
			squib_description_free(&desc);
			continue;
		}
		if (r != SQUIB_E_TOO_SHORT)
			fail_msg("truncated to %zu of %zu bytes: describe returned %d%s", n, len, r,
				 r ? "" : " with crc_ok");
	}
	free(buf);
}

static void test_should_describe_header_and_body_error_when_body_is_damaged(void **state)
{
	size_t len;
	uint8_t *buf = read_fixture("demo.snap", &len);
	struct squib_description desc;
	char *text;
	json_t *j;

	(void)state;
	/* A reserved flag bit of the first section, without fixing the CRC. */
	buf[SQUIB_STATE_HEADER_SIZE + 3] ^= 0x80;
	assert_int_equal(squib_describe_buffer(buf, len, "bad.snap", &desc, NULL), 0);
	assert_false(desc.crc_ok);
	assert_false(desc.body_ok);
	assert_int_equal(desc.magic, SQUIB_MAGIC_AARCH64);
	assert_contains(desc.body_error, "snapshot encoding error: ");
	text = human(&desc);
	assert_contains(text, "\n  magic:               0x07101984aaaa0000\n");
	assert_contains(text, "\n  body_error:          snapshot encoding error: ");
	assert_contains(text, "\n  crc_ok:              NO\n");
	assert_null(strstr(text, "vcpu_count:"));
	assert_null(strstr(text, "devices:"));
	j = json_of(&desc);
	assert_true(json_is_null(json_object_get(j, "vcpu_count")));
	assert_true(json_is_null(json_object_get(j, "mem_size_mib")));
	assert_true(json_is_null(json_object_get(j, "track_dirty_pages")));
	assert_true(json_is_null(json_object_get(j, "devices")));
	assert_true(json_is_null(json_object_get(j, "mmds_present")));
	assert_string_equal(json_string_value(json_object_get(j, "body_error")), desc.body_error);
	assert_true(json_is_null(json_object_get(j, "memory")));
	assert_int_equal(json_object_size(j), 15);
	json_decref(j);
	free(text);
	free(buf);
	squib_description_free(&desc);
}

static void test_should_describe_x86_state_file(void **state)
{
	struct squib_description desc;
	char *text;

	(void)state;
	describe_fixture("x86.snap", &desc);
	assert_true(desc.crc_ok);
	assert_int_equal(desc.arch, SQUIB_ARCH_X86_64);
	assert_int_equal(desc.magic, SQUIB_MAGIC_X86_64);
	assert_int_equal(desc.vcpu_count, 0);
	assert_int_equal(desc.device_count, 2);
	text = human(&desc);
	assert_contains(text, "\n  magic:               0x0710198486640000\n");
	assert_contains(text, "\n    - virtio-block: rootfs (slot 0)\n");
	free(text);
	squib_description_free(&desc);
}

static void test_should_describe_maximal_state_file(void **state)
{
	struct squib_description desc;
	char *text;

	(void)state;
	describe_fixture("maximal.snap", &desc);
	assert_true(desc.crc_ok);
	assert_int_equal(desc.vcpu_count, 32);
	assert_int_equal(desc.device_count, 16);
	assert_true(desc.track_dirty_pages);
	for (uint32_t i = 1; i < desc.device_count; i++)
		assert_true(desc.devices[i - 1].mmio_slot <= desc.devices[i].mmio_slot);
	text = human(&desc);
	assert_contains(text, "\n  mem_size_mib:        1048576\n");
	free(text);
	squib_description_free(&desc);
}

static void test_should_describe_state_without_vcpus(void **state)
{
	struct squib_microvm_state s;
	struct squib_description desc;
	uint8_t *buf;
	size_t len;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_encode(&s, &buf, &len, NULL), 0);
	assert_int_equal(squib_describe_buffer(buf, len, "empty.snap", &desc, NULL), 0);
	assert_true(desc.crc_ok);
	assert_int_equal(desc.vcpu_count, 0);
	squib_description_free(&desc);
	squib_state_free(&s);
	free(buf);
}

static void test_should_reject_valid_crc_file_with_bad_magic(void **state)
{
	size_t len;
	uint8_t *buf = read_fixture("demo.snap", &len);
	struct squib_description desc;
	struct squib_error_detail d;

	(void)state;
	buf[7] ^= 0x40;
	refresh_crc(buf, len);
	assert_int_equal(squib_describe_buffer(buf, len, "m.snap", &desc, &d),
			 SQUIB_E_MAGIC_MISMATCH);
	assert_int_equal(d.magic_found, SQUIB_MAGIC_AARCH64 ^ (0x40ULL << 56));
	free(buf);
}

static void test_should_reject_valid_crc_file_with_newer_minor_version(void **state)
{
	size_t len;
	uint8_t *buf = read_fixture("demo.snap", &len);
	struct squib_description desc;
	struct squib_error_detail d;

	(void)state;
	buf[10] = (uint8_t)(SQUIB_FORMAT_VERSION_MINOR + 1); /* minor, u16 LE at 10 */
	refresh_crc(buf, len);
	assert_int_equal(squib_describe_buffer(buf, len, "v.snap", &desc, &d),
			 SQUIB_E_VERSION_MISMATCH);
	free(buf);
}

static void test_should_show_expected_version_only_when_it_differs(void **state)
{
	size_t len;
	uint8_t *buf = read_fixture("demo.snap", &len);
	struct squib_version v = squib_format_version();
	struct squib_description desc;
	char *text, want[128];

	(void)state;
	snprintf(want, sizeof(want),
		 "\n  version:             %u.%u.7\n  expected (squib):    %u.%u.%u\n", v.major,
		 v.minor, v.major, v.minor, v.patch);
	assert_int_equal(squib_describe_buffer(buf, len, "same.snap", &desc, NULL), 0);
	text = human(&desc);
	assert_null(strstr(text, "expected (squib):"));
	free(text);
	squib_description_free(&desc);
	buf[12] = 7; /* patch, u16 LE at 12: accepted, but not ours */
	refresh_crc(buf, len);
	assert_int_equal(squib_describe_buffer(buf, len, "patch.snap", &desc, NULL), 0);
	text = human(&desc);
	assert_contains(text, want);
	free(text);
	squib_description_free(&desc);
	free(buf);
}

static void test_should_reject_a_file_over_the_size_limit(void **state)
{
	size_t len = SQUIB_STATE_SIZE_LIMIT + 1;
	uint8_t *buf = calloc(1, len);
	struct squib_description desc;
	struct squib_error_detail d;

	(void)state;
	assert_non_null(buf);
	assert_int_equal(squib_describe_buffer(buf, len, "big.snap", &desc, &d),
			 SQUIB_E_SIZE_LIMIT_EXCEEDED);
	assert_int_equal(d.limit, SQUIB_STATE_SIZE_LIMIT);
	free(buf);
}

static void test_should_escape_control_characters_in_human_form(void **state)
{
	size_t len;
	uint8_t *buf = read_fixture("demo.snap", &len);
	struct squib_description desc;
	char *text;

	(void)state;
	assert_int_equal(squib_describe_buffer(buf, len, "a\nb\x1b[2J.snap", &desc, NULL), 0);
	text = human(&desc);
	assert_contains(text, "snapshot: a\\x0ab\\x1b[2J.snap\n");
	free(text);
	squib_description_free(&desc);
	free(buf);
}

static void test_should_emit_valid_json_for_a_non_utf8_path(void **state)
{
	size_t len;
	uint8_t *buf = read_fixture("demo.snap", &len);
	struct squib_description desc;
	json_t *j;

	(void)state;
	assert_int_equal(squib_describe_buffer(buf, len, "caf\xe9.snap", &desc, NULL), 0);
	j = json_of(&desc);
	assert_string_equal(json_string_value(json_object_get(j, "state_path")),
			    "caf\xef\xbf\xbd.snap");
	assert_string_equal(json_string_value(json_object_get(j, "inferred_memory_path")),
			    "caf\xef\xbf\xbd.mem");
	json_decref(j);
	squib_description_free(&desc);
	free(buf);
}

/* ---- the CLI ---- */

static void run_cli(const char *cwd, const char *a1, const char *a2, const char *a3,
		    struct squib_test_proc *p)
{
	char *argv[] = {squib_test_cli_path_or_skip(), (char *)a1, (char *)a2, (char *)a3, NULL};

	squib_test_spawn(cwd, argv, p);
}

static void test_should_print_exact_human_text_from_cli(void **state)
{
	char *dir = squib_test_fixture("");
	char *expected = read_fixture_text("demo.describe.txt");
	struct squib_test_proc p;

	(void)state;
	run_cli(dir, "describe", "demo.snap", NULL, &p);
	assert_int_equal(p.status, 0);
	assert_string_equal(p.out, expected);
	assert_string_equal(p.err, "");
	squib_test_proc_free(&p);
	free(expected);
	free(dir);
}

static void test_should_print_valid_json_from_cli(void **state)
{
	char *dir = squib_test_fixture("");
	struct squib_test_proc p;
	json_error_t err;
	json_t *j;

	(void)state;
	run_cli(dir, "describe", "--json", "demo.snap", &p);
	assert_int_equal(p.status, 0);
	j = json_loads(p.out, 0, &err);
	if (!j)
		fail_msg("CLI JSON does not parse: %s\n%s", err.text, p.out);
	assert_string_equal(json_string_value(json_object_get(j, "state_path")), "demo.snap");
	assert_string_equal(json_string_value(json_object_get(j, "inferred_memory_path")),
			    "demo.mem");
	assert_true(json_is_true(json_object_get(j, "crc_ok")));
	json_decref(j);
	squib_test_proc_free(&p);
	free(dir);
}

static void test_should_exit_2_for_a_bit_flipped_copy(void **state)
{
	char *dir = squib_test_tmpdir(), *path = copy_fixture(dir, "demo.snap", "demo.snap");
	struct squib_test_proc p;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(squib_test_read_file(path, &buf, &len), 0);
	buf[len / 2] ^= 0x10;
	assert_int_equal(squib_test_write_file(path, buf, len), 0);
	run_cli(NULL, "describe", path, NULL, &p);
	assert_int_equal(p.status, 2);
	assert_contains(p.out, "\n  crc_ok:              NO\n");
	assert_string_equal(p.err, "");
	squib_test_proc_free(&p);
	free(buf);
	squib_test_rmtree(dir);
	free(path);
	free(dir);
}

/*
 * Garbage — bytes with no known magic whose body does not decode either — is
 * refused (exit 1, one line) whether or not its CRC trailer happens to be right.
 */
static void expect_garbage_refused(bool good_crc)
{
	char *dir = squib_test_tmpdir(), *path = squib_test_path(dir, "garbage.snap");
	struct squib_test_proc p;
	uint8_t buf[100];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 131 + 7);
	if (good_crc)
		refresh_crc(buf, sizeof(buf));
	assert_int_equal(squib_test_write_file(path, buf, sizeof(buf)), 0);
	run_cli(NULL, "describe", path, NULL, &p);
	assert_int_equal(p.status, 1);
	assert_string_equal(p.out, "");
	assert_int_equal(squib_test_count_lines(p.err), 1);
	assert_true(strncmp(p.err, "squib-snapshot: describe: ", 26) == 0);
	assert_contains(p.err, path);
	assert_contains(p.err, ": snapshot magic mismatch (file: ");
	squib_test_proc_free(&p);
	squib_test_rmtree(dir);
	free(path);
	free(dir);
}

static void test_should_exit_1_with_one_line_for_garbage(void **state)
{
	(void)state;
	expect_garbage_refused(true);
}

static void test_should_exit_1_for_garbage_with_a_wrong_crc(void **state)
{
	(void)state;
	expect_garbage_refused(false);
}

/* A flipped magic bit leaves a damaged snapshot, not garbage: still crc_ok NO, exit 2. */
static void test_should_exit_2_when_only_the_magic_is_damaged(void **state)
{
	char *dir = squib_test_tmpdir(), *path = copy_fixture(dir, "demo.snap", "demo.snap");
	struct squib_test_proc p;
	uint8_t *buf;
	size_t len;

	(void)state;
	assert_int_equal(squib_test_read_file(path, &buf, &len), 0);
	buf[3] ^= 0x01;
	assert_int_equal(squib_test_write_file(path, buf, len), 0);
	run_cli(NULL, "describe", path, NULL, &p);
	assert_int_equal(p.status, 2);
	assert_contains(p.out, "\n  vcpu_count:          2\n");
	assert_contains(p.out, "\n  crc_ok:              NO\n");
	squib_test_proc_free(&p);
	squib_test_rmtree(dir);
	free(path);
	free(buf);
	free(dir);
}

static void test_should_exit_1_for_a_nonexistent_path(void **state)
{
	struct squib_test_proc p;

	(void)state;
	run_cli(NULL, "describe", "/nonexistent/squib/x.snap", NULL, &p);
	assert_int_equal(p.status, 1);
	assert_string_equal(p.err, "squib-snapshot: describe: /nonexistent/squib/x.snap: snapshot "
				   "I/O error: No such file or directory (os error 2) (opening "
				   "/nonexistent/squib/x.snap)\n");
	squib_test_proc_free(&p);
}

static void test_should_exit_1_on_bad_usage(void **state)
{
	struct squib_test_proc p;

	(void)state;
	run_cli(NULL, "describe", NULL, NULL, &p);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "usage: squib-snapshot describe");
	squib_test_proc_free(&p);
	run_cli(NULL, "describe", "a.snap", "--bogus", &p);
	assert_int_equal(p.status, 1);
	assert_contains(p.err, "unknown option '--bogus'");
	squib_test_proc_free(&p);
	run_cli(NULL, "describe", "a.snap", "b.snap", &p);
	assert_int_equal(p.status, 1);
	squib_test_proc_free(&p);
}

static void test_should_print_help_and_version(void **state)
{
	struct squib_test_proc p;

	(void)state;
	run_cli(NULL, "describe", "--help", NULL, &p);
	assert_int_equal(p.status, 0);
	assert_contains(p.out, "usage: squib-snapshot describe PATH [--json]");
	squib_test_proc_free(&p);
	run_cli(NULL, "version", "--help", NULL, &p);
	assert_int_equal(p.status, 0);
	assert_contains(p.out, "usage: squib-snapshot version");
	squib_test_proc_free(&p);
	run_cli(NULL, "version", NULL, NULL, &p);
	assert_int_equal(p.status, 0);
	assert_true(strncmp(p.out, "1.0.0\n", 6) == 0);
	squib_test_proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_describe_state_file_in_human_form),
		cmocka_unit_test(test_should_describe_state_file_in_json_form),
		cmocka_unit_test(test_should_describe_devices_in_json_form),
		cmocka_unit_test(test_should_describe_corrupt_file_with_crc_warning),
		cmocka_unit_test(test_should_infer_memory_path_from_state_path),
		cmocka_unit_test(test_should_pick_the_memory_path_by_one_rule),
		cmocka_unit_test(test_should_infer_memory_path_like_rust_at_the_edges),
		cmocka_unit_test(test_should_report_missing_memory_file),
		cmocka_unit_test(test_should_report_present_memory_file_with_size),
		cmocka_unit_test(test_should_omit_memory_line_without_extension),
		cmocka_unit_test(test_should_surface_truncated_file_as_too_short),
		cmocka_unit_test(test_should_describe_the_memory_section_in_human_form),
		cmocka_unit_test(test_should_describe_the_memory_section_in_json_form),
		cmocka_unit_test(test_should_show_a_diffs_parent_id),
		cmocka_unit_test(test_should_say_when_the_memory_file_is_another_snapshots),
		cmocka_unit_test(test_should_say_when_the_memory_file_is_of_another_kind),
		cmocka_unit_test(test_should_say_when_the_memory_file_is_missing_or_unreadable),
		cmocka_unit_test(test_should_not_check_the_memory_file_of_a_buffer),
		cmocka_unit_test(test_should_match_committed_human_text_of_demo),
		cmocka_unit_test(test_should_report_crc_failure_for_every_bit_flip_of_demo),
		cmocka_unit_test(test_should_report_crc_failure_for_every_bit_flip_of_minimal),
		cmocka_unit_test(test_should_never_report_crc_ok_for_a_truncated_file),
		cmocka_unit_test(test_should_describe_header_and_body_error_when_body_is_damaged),
		cmocka_unit_test(test_should_describe_x86_state_file),
		cmocka_unit_test(test_should_describe_maximal_state_file),
		cmocka_unit_test(test_should_describe_state_without_vcpus),
		cmocka_unit_test(test_should_reject_valid_crc_file_with_bad_magic),
		cmocka_unit_test(test_should_reject_valid_crc_file_with_newer_minor_version),
		cmocka_unit_test(test_should_show_expected_version_only_when_it_differs),
		cmocka_unit_test(test_should_reject_a_file_over_the_size_limit),
		cmocka_unit_test(test_should_escape_control_characters_in_human_form),
		cmocka_unit_test(test_should_emit_valid_json_for_a_non_utf8_path),
		cmocka_unit_test(test_should_print_exact_human_text_from_cli),
		cmocka_unit_test(test_should_print_valid_json_from_cli),
		cmocka_unit_test(test_should_exit_2_for_a_bit_flipped_copy),
		cmocka_unit_test(test_should_exit_1_with_one_line_for_garbage),
		cmocka_unit_test(test_should_exit_1_for_garbage_with_a_wrong_crc),
		cmocka_unit_test(test_should_exit_2_when_only_the_magic_is_damaged),
		cmocka_unit_test(test_should_exit_1_for_a_nonexistent_path),
		cmocka_unit_test(test_should_exit_1_on_bad_usage),
		cmocka_unit_test(test_should_print_help_and_version),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
