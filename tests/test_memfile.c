/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memory file: upstream memory.rs and the integration property sweep
 * (I-SNAP-2), sparse full snapshots of real anonymous memory, the manifest in
 * the state file, layered reads, rebase, and every kind of damaged file.
 * Real memory, real files in a temp directory, real system calls.
 */
#include "sparse.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/crc64.h>
#include <squib/dirty.h>
#include <squib/envelope.h>
#include <squib/memfile.h>
#include <squib/state.h>

#include "../src/populated.h"
#include "../src/util.h"

#define MiB (1024ull * 1024)

struct fx {
	char *dir;
	uint64_t hp; /* host page size: the file page of upstream's tests */
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = squib_test_tmpdir();
	f->hp = (uint64_t)sysconf(_SC_PAGESIZE);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	squib_test_rmtree(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ----------------------------------------------------------------- */

static const char *message(const struct squib_error_detail *d)
{
	static char buf[1024];

	squib_error_message(d->code, d, buf, sizeof(buf));
	return buf;
}

static char *path_in(struct fx *f, const char *name)
{
	return squib_test_path(f->dir, name);
}

/* Private anonymous memory, huge pages off so "touched" means exactly the pages written. */
static uint8_t *map_anon(uint64_t size)
{
	void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	assert_true(p != MAP_FAILED);
	madvise(p, (size_t)size, MADV_NOHUGEPAGE);
	return p;
}

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u; /* Numerical Recipes, as upstream's sweep */
	return *s;
}

static void fill_pattern(uint8_t *p, uint64_t len, uint32_t seed)
{
	for (uint64_t i = 0; i < len; i++)
		p[i] = (uint8_t)(((i * 131) ^ seed) % 251 + 1); /* never zero */
}

static struct squib_memfile_source one_region(const void *host, uint64_t guest, uint64_t size,
					      uint64_t ps, struct squib_memfile_source_region *r)
{
	*r = (struct squib_memfile_source_region){guest, size, host};
	return (struct squib_memfile_source){r, 1, ps};
}

static void pread_exact(const char *path, void *buf, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static struct squib_dirty_bitmap *bitmap(uint64_t start, uint64_t size, uint64_t ps)
{
	struct squib_dirty_bitmap *bm = NULL;

	assert_int_equal(squib_dirty_bitmap_new(start, size, ps, &bm, NULL), 0);
	return bm;
}

static void save_full(const char *path, const struct squib_memfile_source *src, bool digests,
		      struct squib_memfile_manifest *m)
{
	struct squib_memfile_write_options o = {.digests = digests};
	struct squib_error_detail d;

	if (squib_memfile_save_full(path, src, &o, m, &d))
		fail_msg("save_full: %s (%s)", message(&d), d.msg);
}

static void save_diff(const char *path, const struct squib_memfile_source *src,
		      const uint8_t *parent, struct squib_dirty_bitmap **bms, bool digests,
		      struct squib_memfile_manifest *m)
{
	struct squib_memfile_write_options o = {.digests = digests};
	struct squib_error_detail d;

	if (squib_memfile_save_diff(path, src, parent, (const struct squib_dirty_bitmap *const *)bms,
				    src->region_count, &o, m, &d))
		fail_msg("save_diff: %s (%s)", message(&d), d.msg);
}

static struct squib_memfile *open_ok(const char *path)
{
	struct squib_memfile *m = NULL;
	struct squib_error_detail d;

	if (squib_memfile_open(path, &m, &d))
		fail_msg("open %s: %s (%s)", path, message(&d), d.msg);
	return m;
}

/* Expected file size for a manifest of r regions and e extents. */
static uint64_t size_for(uint64_t ram, uint64_t r, uint64_t e, bool digests)
{
	uint64_t m = 16 * r + (16 + (digests ? 8 : 0)) * e;

	return ram + (m + 4095) / 4096 * 4096 + 4096;
}

/* ---- upstream memory.rs --------------------------------------------------------- */

static void test_should_write_full_dump_dense(void **state)
{
	struct fx *f = *state;
	struct squib_memfile_source_region r;
	struct squib_memfile_source src;
	struct squib_memfile_manifest m;
	char *path = path_in(f, "full.mem");
	uint8_t *mem = map_anon(64 * 1024), *back = malloc(64 * 1024);
	struct squib_memfile *mf;

	fill_pattern(mem, 64 * 1024, 7);
	src = one_region(mem, 0x80000000, 64 * 1024, f->hp, &r);
	save_full(path, &src, false, &m);
	assert_int_equal(m.layout.kind, SQUIB_MEMORY_FULL);
	assert_int_equal(m.layout.extent_count, 1);
	assert_int_equal(m.layout.extents[0].first_page, 0);
	assert_int_equal(m.layout.present_pages, 64 * 1024 / f->hp);
	assert_int_equal(file_size(path), size_for(64 * 1024, 1, 1, false));
	assert_int_equal(m.layout.file_size, file_size(path));
	/* The RAM range is the dump itself, at offset 0. */
	pread_exact(path, back, 64 * 1024, 0);
	assert_memory_equal(back, mem, 64 * 1024);
	mf = open_ok(path);
	assert_true(squib_memory_layout_equal(&squib_memfile_manifest(mf)->layout, &m.layout));
	for (uint64_t off = 0; off < 64 * 1024; off += f->hp) {
		assert_int_equal(squib_memfile_read_page(mf, 0x80000000 + off, back, NULL), 0);
		assert_memory_equal(back, mem + off, f->hp);
	}
	squib_memfile_close(mf);
	squib_memfile_manifest_release(&m);
	munmap(mem, 64 * 1024);
	free(back);
	free(path);
}

static void test_should_write_diff_only_dirty_pages(void **state)
{
	struct fx *f = *state;
	uint64_t ps = f->hp, ram = 4 * ps;
	uint8_t parent[16] = {0xAA}, *mem = map_anon(ram), *page = malloc(ps), *zero = calloc(1, ps);
	struct squib_dirty_bitmap *bm = bitmap(0x1000000, ram, ps);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0x1000000, ram, ps, &r);
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	char *path = path_in(f, "diff.mem");
	struct squib_memfile *mf;

	fill_pattern(mem, ram, 3);
	squib_dirty_bitmap_set_by_index(bm, 1);
	squib_dirty_bitmap_set_by_index(bm, 3);
	save_diff(path, &src, parent, &bm, false, &m);
	assert_int_equal(m.layout.present_pages, 2); /* 2 pages written */
	assert_int_equal(m.layout.kind, SQUIB_MEMORY_DIFF);
	assert_memory_equal(m.layout.parent_id, parent, 16);
	assert_int_equal(m.layout.extent_count, 2);
	assert_int_equal(m.layout.ram_size, ram);
	assert_int_equal(squib_dirty_bitmap_count(bm), 2); /* read, not drained */
	/* Pages 0 and 2 are zero on disk (holes); 1 and 3 keep the pattern. */
	for (uint64_t p = 0; p < 4; p++) {
		pread_exact(path, page, ps, p * ps);
		assert_memory_equal(page, p % 2 ? mem + p * ps : zero, ps);
	}
	mf = open_ok(path);
	assert_false(squib_memfile_page_present(mf, 0));
	assert_true(squib_memfile_page_present(mf, 3));
	assert_int_equal(squib_memfile_read_page(mf, 0x1000000 + ps, page, &d), 0);
	assert_memory_equal(page, mem + ps, ps);
	/* A diff does not know its clean pages. */
	assert_int_equal(squib_memfile_read_page(mf, 0x1000000, page, &d), SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, ENODATA);
	assert_non_null(strstr(d.msg, "read it through its chain"));
	squib_memfile_close(mf);
	squib_memfile_manifest_release(&m);
	squib_dirty_bitmap_free(bm);
	munmap(mem, ram);
	free(page);
	free(zero);
	free(path);
}

static void test_should_write_whole_bitmap_block_when_granule_is_coarser(void **state)
{
	struct fx *f = *state;
	uint64_t ram = 4 * MiB, block = 2 * MiB;
	uint8_t parent[16] = {1}, *mem = map_anon(ram), *back = malloc(ram), *zero = calloc(1, block);
	struct squib_dirty_bitmap *bm = bitmap(0x80000000, ram, block);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0x80000000, ram, f->hp, &r);
	struct squib_memfile_manifest m;
	char *path = path_in(f, "coarse.mem");

	fill_pattern(mem, ram, 9);
	squib_dirty_bitmap_set_by_index(bm, 1);
	save_diff(path, &src, parent, &bm, false, &m);
	assert_int_equal(m.layout.present_pages, block / f->hp); /* 512 pages at 4 KiB */
	assert_int_equal(m.layout.extent_count, 1);
	assert_int_equal(m.layout.extents[0].first_page, block / f->hp);
	pread_exact(path, back, ram, 0);
	assert_memory_equal(back, zero, block);
	assert_memory_equal(back + block, mem + block, block);
	squib_memfile_manifest_release(&m);
	squib_dirty_bitmap_free(bm);
	munmap(mem, ram);
	free(back);
	free(zero);
	free(path);
}

/* ---- I-SNAP-2: a diff holds exactly the dirty pages --------------------------- */

struct geometry {
	uint64_t ps;	   /* file page */
	uint64_t bps;	   /* bitmap page */
	uint32_t nregions; /* regions of `size` bytes, 1 MiB apart in guest space */
	uint64_t size;
};

/* Dirty a random non-empty proper subset of bitmap pages; some get rewritten with zeros. */
static uint64_t dirty_random(uint32_t *seed, uint8_t *mem, const struct geometry *g,
			     struct squib_dirty_bitmap **bms, uint8_t *expect_present)
{
	uint64_t bits = g->size / g->bps, total = bits * g->nregions, ndirty = 0, ratio = g->bps / g->ps;

	memset(expect_present, 0, (size_t)(g->size / g->ps * g->nregions));
	while (ndirty == 0 || ndirty == total) {
		ndirty = 0;
		for (uint32_t i = 0; i < g->nregions; i++)
			squib_dirty_bitmap_clear(bms[i]);
		for (uint64_t b = 0; b < total; b++)
			if (lcg(seed) % 3 == 0)
				ndirty++, squib_dirty_bitmap_set_by_index(bms[b / bits], b % bits);
	}
	for (uint64_t b = 0; b < total; b++) {
		uint8_t pattern = (uint8_t)(0x80 | (lcg(seed) & 0x7F));

		if (!squib_dirty_bitmap_test_by_index(bms[b / bits], b % bits))
			continue;
		memset(expect_present + b * ratio, 1, (size_t)ratio);
		memset(mem + b * g->bps, lcg(seed) % 5 == 0 ? 0 : pattern, (size_t)g->bps);
	}
	return ndirty * ratio;
}

static void check_diff_exact(const char *path, const struct squib_memfile_manifest *m,
			     const struct geometry *g, const uint8_t *mem,
			     const uint8_t *expect_present, uint64_t expect_pages)
{
	uint64_t pages = g->size / g->ps * g->nregions, extents = 0;
	uint8_t *page = malloc(g->ps), *zero = calloc(1, g->ps);
	struct squib_memfile *mf = open_ok(path);
	struct squib_error_detail d;

	assert_int_equal(m->layout.present_pages, expect_pages);
	for (uint64_t p = 0; p < pages; p++) {
		uint64_t guest = (p * g->ps / g->size) * MiB * 64 + p * g->ps % g->size;

		extents += expect_present[p] && (p == 0 || !expect_present[p - 1]);
		assert_int_equal(squib_memfile_page_present(mf, p), expect_present[p]);
		pread_exact(path, page, g->ps, p * g->ps);
		assert_memory_equal(page, expect_present[p] ? mem + p * g->ps : zero, g->ps);
		if (expect_present[p]) {
			assert_int_equal(squib_memfile_read_page(mf, guest, page, &d), 0);
			assert_memory_equal(page, mem + p * g->ps, g->ps);
		} else {
			assert_int_equal(squib_memfile_read_page(mf, guest, page, &d), SQUIB_E_MEMORY_IO);
		}
	}
	assert_int_equal(m->layout.extent_count, extents); /* coalesced exactly */
	assert_int_equal(file_size(path), size_for(g->size * g->nregions, g->nregions, extents, false));
	squib_memfile_close(mf);
	free(page);
	free(zero);
}

static void sweep_geometry(struct fx *f, const struct geometry *g, uint32_t *seed)
{
	uint64_t ram = g->size * g->nregions;
	uint8_t *mem = map_anon(ram), *present = malloc((size_t)(ram / g->ps)), parent[16] = {7};
	struct squib_memfile_source_region r[4];
	struct squib_dirty_bitmap *bms[4];
	struct squib_memfile_source src = {r, g->nregions, g->ps};
	char *path = path_in(f, "sweep.mem");

	for (uint32_t i = 0; i < g->nregions; i++) {
		/* Guest regions 64 MiB apart, host back to back: file offsets != guest offsets. */
		r[i] = (struct squib_memfile_source_region){i * 64 * MiB, g->size, mem + i * g->size};
		bms[i] = bitmap(i * 64 * MiB, g->size, g->bps);
	}
	for (int trial = 0; trial < 12; trial++) {
		struct squib_memfile_manifest m;
		uint64_t expect;

		fill_pattern(mem, ram, lcg(seed));
		expect = dirty_random(seed, mem, g, bms, present);
		save_diff(path, &src, parent, bms, false, &m);
		check_diff_exact(path, &m, g, mem, present, expect);
		squib_memfile_manifest_release(&m);
	}
	for (uint32_t i = 0; i < g->nregions; i++)
		squib_dirty_bitmap_free(bms[i]);
	munmap(mem, ram);
	free(present);
	free(path);
}

static void test_should_hold_exactly_the_dirty_pages_over_random_patterns(void **state)
{
	struct fx *f = *state;
	const struct geometry geometries[] = {
		{16384, 16384, 1, 128 * 1024}, /* upstream's three shapes */
		{4096, 4096, 1, 64 * 1024},
		{16384, 16384, 1, 512 * 1024},
		{4096, 16384, 1, 256 * 1024}, /* bitmap granule coarser than the file page */
		{4096, 8192, 3, 96 * 1024},   /* several regions */
		{4096, 65536, 2, 256 * 1024}, /* both */
	};
	uint32_t seed = 0x5EEDC0DE;

	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(geometries); i++)
		sweep_geometry(f, &geometries[i], &seed);
}

static void test_should_keep_a_page_rewritten_with_zeros_in_a_diff(void **state)
{
	struct fx *f = *state;
	uint64_t ps = f->hp, ram = 8 * ps;
	uint8_t parent[16] = {9}, *mem = map_anon(ram), *page = malloc(ps);
	struct squib_dirty_bitmap *bm = bitmap(0, ram, ps);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0, ram, ps, &r);
	struct squib_memfile_manifest m;
	char *path = path_in(f, "zeros.mem");
	struct squib_memfile *mf;

	memset(mem + 5 * ps, 0, ps); /* the guest cleared page 5 */
	squib_dirty_bitmap_set_by_index(bm, 5);
	save_diff(path, &src, parent, &bm, false, &m);
	assert_int_equal(m.layout.present_pages, 1);
	assert_int_equal(m.layout.extents[0].first_page, 5);
	mf = open_ok(path);
	memset(page, 0xEE, ps);
	assert_int_equal(squib_memfile_read_page(mf, 5 * ps, page, NULL), 0);
	for (uint64_t i = 0; i < ps; i++)
		assert_int_equal(page[i], 0);
	squib_memfile_close(mf);
	squib_memfile_manifest_release(&m);
	squib_dirty_bitmap_free(bm);
	munmap(mem, ram);
	free(page);
	free(path);
}

/* ---- sparse full snapshots of real memory ------------------------------------------ */

static uint64_t resident_pages(const void *addr, uint64_t len, uint64_t hp)
{
	uint64_t n = len / hp, count = 0;
	unsigned char *vec = malloc((size_t)n);

	assert_non_null(vec);
	assert_int_equal(mincore((void *)addr, (size_t)len, vec), 0);
	for (uint64_t i = 0; i < n; i++)
		count += vec[i] & 1;
	free(vec);
	return count;
}

struct touched {
	uint64_t off, len;
};

static const struct touched touched_runs[] = {
	{0, 1 * MiB}, {300 * MiB + 4096 * 3, 2 * MiB}, {777 * MiB, 64 * 1024}, {1024 * MiB - 512 * 1024, 512 * 1024},
};

static uint64_t touch_runs(uint8_t *mem)
{
	uint64_t total = 0;

	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(touched_runs); i++) {
		fill_pattern(mem + touched_runs[i].off, touched_runs[i].len, (uint32_t)i);
		total += touched_runs[i].len;
	}
	return total;
}

static void check_sparse_content(const char *path, const uint8_t *mem)
{
	struct squib_memfile *mf = open_ok(path);
	uint8_t *back = malloc(2 * MiB);
	uint8_t zero[64] = {0};

	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(touched_runs); i++) {
		pread_exact(path, back, touched_runs[i].len, touched_runs[i].off);
		assert_memory_equal(back, mem + touched_runs[i].off, touched_runs[i].len);
	}
	/* Untouched pages are holes: zero through the reader and absent from the manifest. */
	assert_int_equal(squib_memfile_read_page(mf, 0x40000000 + 500 * MiB, back, NULL), 0);
	assert_memory_equal(back, zero, sizeof(zero));
	assert_false(squib_memfile_page_present(mf, 500 * MiB / 4096));
	squib_memfile_close(mf);
	free(back);
}

static void sparse_full_with(struct fx *f, enum squib_memfile_detect detect)
{
	const uint64_t ram = 1024 * MiB;
	uint8_t *mem = map_anon(ram);
	uint64_t touched = touch_runs(mem), before, after;
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0x40000000, ram, 4096, &r);
	struct squib_memfile_write_options o = {.detect = detect};
	struct squib_memfile_write_stats st;
	struct squib_memfile_manifest m;
	struct squib_atomic_writer w;
	struct squib_error_detail d;
	char *path = path_in(f, "sparse.mem");
	struct stat sb;

	/* Populated but all zero: read (it is populated), found zero, skipped. */
	memset(mem + 600 * MiB, 0, 4096);
	before = resident_pages(mem, ram, f->hp);
	assert_int_equal(squib_atomic_open(&w, path, NULL, &d), 0);
	assert_int_equal(squib_memfile_write_full(&w, &src, &o, &m, &st, &d), 0);
	assert_int_equal(squib_atomic_commit(&w, &d), 0);
	after = resident_pages(mem, ram, f->hp);
	/* Never-touched pages were not even read: reading would have mapped them. */
	assert_int_equal(after, before);
	assert_int_equal(before, touched / f->hp + 1);
	assert_int_equal(st.detect, detect);
	assert_int_equal(st.pages_written, touched / 4096);
	assert_int_equal(m.layout.present_pages, touched / 4096);
	assert_int_equal(st.pages_zero, 1);
	assert_int_equal(st.pages_unpopulated, ram / 4096 - touched / 4096 - 1);
	assert_int_equal(stat(path, &sb), 0);
	assert_true((uint64_t)sb.st_blocks * 512 <= touched + 1 * MiB);
	assert_true((uint64_t)sb.st_blocks * 512 >= touched);
	check_sparse_content(path, mem);
	squib_memfile_manifest_release(&m);
	munmap(mem, ram);
	unlink(path);
	free(path);
}

/* Does the PAGEMAP_SCAN ioctl work here (Linux 6.7+, not under qemu-user)? If not,
 * one loud line says what goes untested. */
static bool scan_available(const char *what)
{
	struct squib_populated *p;
	int rc;

	assert_int_equal(squib_populated_open(&p), 0);
	rc = squib_populated_probe(p, SQUIB_DETECT_PAGEMAP_SCAN);
	squib_populated_close(p);
	if (rc)
		fprintf(stderr, "*** SKIP: no PAGEMAP_SCAN here (%s): %s not tested ***\n",
			strerror(-rc), what);
	return rc == 0;
}

static void test_should_write_sparse_full_snapshot_without_reading_untouched_pages(void **state)
{
	struct fx *f = *state;

	if (scan_available("the sparse write through PAGEMAP_SCAN"))
		sparse_full_with(f, SQUIB_DETECT_PAGEMAP_SCAN);
	sparse_full_with(f, SQUIB_DETECT_PAGEMAP_READ);
}

static void test_should_read_every_page_of_a_shared_mapping(void **state)
{
	struct fx *f = *state;
	uint64_t ram = 64 * f->hp;
	uint8_t *mem = mmap(NULL, ram, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0, ram, f->hp, &r);
	struct squib_memfile_write_options o = {.detect = SQUIB_DETECT_AUTO};
	struct squib_memfile_write_stats st;
	struct squib_memfile_manifest m;
	struct squib_atomic_writer w;
	char *path = path_in(f, "shared.mem");

	/* Shared memory keeps its pages in the page cache: no PTE does not mean zero. */
	assert_true(mem != MAP_FAILED);
	fill_pattern(mem + 10 * f->hp, f->hp, 1);
	madvise(mem, ram, MADV_DONTNEED); /* drop our PTEs; the data stays in shmem */
	assert_int_equal(squib_atomic_open(&w, path, NULL, NULL), 0);
	assert_int_equal(squib_memfile_write_full(&w, &src, &o, &m, &st, NULL), 0);
	assert_int_equal(squib_atomic_commit(&w, NULL), 0);
	assert_int_equal(st.pages_unpopulated, 0);
	assert_int_equal(st.pages_zero, 63);
	assert_int_equal(m.layout.present_pages, 1);
	assert_int_equal(m.layout.extents[0].first_page, 10);
	squib_memfile_manifest_release(&m);
	munmap(mem, ram);
	free(path);
}

static void test_should_produce_the_same_manifest_with_every_detection_method(void **state)
{
	static const enum squib_memfile_detect methods[] = {
		SQUIB_DETECT_AUTO, SQUIB_DETECT_PAGEMAP_SCAN, SQUIB_DETECT_PAGEMAP_READ,
		SQUIB_DETECT_NONE};
	struct fx *f = *state;
	uint64_t ram = 16 * MiB;
	uint8_t *mem = map_anon(ram);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0, ram, 16384, &r);
	struct squib_memory_layout first = {0};
	char *path = path_in(f, "methods.mem");

	/* Scattered 4 KiB touches under 16 KiB file pages: the file page rounds outwards. */
	for (uint64_t off = 4096; off < ram; off += 5 * 4096 + 4096 * (off % 3))
		mem[off + 17] = 1;
	bool scan = scan_available("the manifest through PAGEMAP_SCAN");

	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(methods); i++) {
		struct squib_memfile_write_options o = {.detect = methods[i]};
		struct squib_memfile_write_stats st;
		struct squib_memfile_manifest m;
		struct squib_atomic_writer w;

		if (methods[i] == SQUIB_DETECT_PAGEMAP_SCAN && !scan)
			continue;
		assert_int_equal(squib_atomic_open(&w, path, NULL, NULL), 0);
		assert_int_equal(squib_memfile_write_full(&w, &src, &o, &m, &st, NULL), 0);
		squib_atomic_abort(&w);
		/* AUTO takes the first method that works: scan, else read. */
		if (methods[i] == SQUIB_DETECT_AUTO)
			assert_int_equal(st.detect, scan ? SQUIB_DETECT_PAGEMAP_SCAN
							 : SQUIB_DETECT_PAGEMAP_READ);
		else
			assert_int_equal(st.detect, methods[i]);
		if (i == 0) {
			assert_int_equal(squib_memory_layout_copy(&first, &m.layout), 0);
		} else {
			memcpy(first.id, m.layout.id, 16); /* ids are fresh each time */
			assert_true(squib_memory_layout_equal(&first, &m.layout));
		}
		squib_memfile_manifest_release(&m);
	}
	assert_false(squib_test_exists(path));
	squib_memory_layout_release(&first);
	munmap(mem, ram);
	free(path);
}

/* ---- publication, hooks, digests, pairing --------------------------------------- */

static void test_should_prepare_without_publishing_until_asked(void **state)
{
	struct fx *f = *state;
	uint64_t ram = 8 * f->hp;
	uint8_t *mem = map_anon(ram);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0, ram, f->hp, &r);
	struct squib_memfile_manifest m;
	struct squib_atomic_writer w;
	char *path = path_in(f, "pair.mem");

	fill_pattern(mem, ram, 5);
	assert_int_equal(squib_atomic_open(&w, path, NULL, NULL), 0);
	assert_int_equal(squib_memfile_write_full(&w, &src, NULL, &m, NULL, NULL), 0);
	assert_int_equal(squib_atomic_prepare(&w, NULL), 0);
	assert_false(squib_test_exists(path)); /* durable but not yet visible */
	assert_int_equal(squib_test_temps(path, NULL), 1);
	assert_int_equal(squib_atomic_publish(&w, NULL), 0);
	assert_true(squib_test_exists(path));
	assert_int_equal(squib_test_layer_files(path, NULL), 0);
	squib_memfile_manifest_release(&m);
	/* Dropped after writing: nothing is left behind. */
	assert_int_equal(squib_atomic_open(&w, path, NULL, NULL), 0);
	assert_int_equal(squib_memfile_write_full(&w, &src, NULL, &m, NULL, NULL), 0);
	squib_atomic_abort(&w);
	assert_int_equal(squib_test_layer_files(path, NULL), 0);
	squib_memfile_manifest_release(&m);
	munmap(mem, ram);
	free(path);
}

struct fail_nth {
	enum squib_io_step step;
	int n; /* fail the n-th call of step (1-based) */
	int seen;
};

static int fail_nth_before(void *ctx, enum squib_io_step step, const char *path)
{
	struct fail_nth *h = ctx;

	(void)path;
	return step == h->step && ++h->seen == h->n ? -ENOSPC : 0;
}

static void test_should_report_write_failures_as_memory_io(void **state)
{
	struct fx *f = *state;
	uint64_t ram = 8 * f->hp;
	uint8_t *mem = map_anon(ram);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0, ram, f->hp, &r);
	struct fail_nth fn = {SQUIB_IO_WRITE, 0, 0};
	struct squib_io_hooks hooks = {&fn, fail_nth_before};
	struct squib_memfile_manifest m;
	struct squib_atomic_writer w;
	struct squib_error_detail d;
	char *path = path_in(f, "fail.mem");

	fill_pattern(mem, ram, 5);
	for (fn.n = 1; fn.n <= 2; fn.n++) { /* the page data, then the manifest and footer */
		fn.seen = 0;
		assert_int_equal(squib_atomic_open(&w, path, &hooks, &d), 0);
		assert_int_equal(squib_memfile_write_full(&w, &src, NULL, &m, NULL, &d),
				 SQUIB_E_MEMORY_IO);
		assert_int_equal(d.os_errno, ENOSPC);
		assert_null(m.layout.regions); /* nothing handed out on failure */
		squib_atomic_abort(&w);
	}
	assert_false(squib_test_exists(path));
	munmap(mem, ram);
	free(path);
}

/* A packed diff of no pages: a manifest and a footer only, read over its parent. */
static void test_should_read_an_empty_packed_diff_over_its_parent(void **state)
{
	struct fx *f = *state;
	uint64_t ram = 4 * f->hp;
	uint8_t *mem = map_anon(ram), *page = malloc(f->hp);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0, ram, f->hp, &r);
	struct squib_dirty_bitmap *bm = bitmap(0, ram, f->hp);
	struct squib_memfile_write_options o = {.packed = true};
	struct squib_memfile_manifest fm, dm;
	struct squib_memfile_chain *c;
	struct squib_memfile *mf;
	struct squib_error_detail d;
	char *paths[2] = {path_in(f, "base.mem"), path_in(f, "empty-packed.mem")};

	fill_pattern(mem, ram, 3);
	save_full(paths[0], &src, false, &fm);
	assert_int_equal(squib_memfile_save_diff(paths[1], &src, fm.layout.id,
						 (const struct squib_dirty_bitmap *const *)&bm, 1,
						 &o, &dm, &d),
			 0);
	assert_int_equal(file_size(paths[1]), 4096 + 4096);
	mf = open_ok(paths[1]);
	assert_int_equal(squib_memfile_read_page(mf, 0, page, &d), SQUIB_E_MEMORY_IO);
	squib_memfile_close(mf);
	assert_int_equal(squib_memfile_chain_open((const char *const *)paths, 2, &c, &d), 0);
	for (uint64_t p = 0; p < 4; p++) {
		assert_int_equal(squib_memfile_chain_read_page(c, p * f->hp, page, &d), 0);
		assert_memory_equal(page, mem + p * f->hp, f->hp);
	}
	squib_memfile_chain_close(c);
	squib_memfile_manifest_release(&fm);
	squib_memfile_manifest_release(&dm);
	squib_dirty_bitmap_free(bm);
	munmap(mem, ram);
	free(page);
	free(paths[0]);
	free(paths[1]);
}

/* A packed diff into a "full disk" (RLIMIT_FSIZE): the gathered write is cut short, the
 * retry fails with EFBIG, and the writer reports it as MEMORY_IO without a manifest. */
static void test_should_report_a_full_disk_in_the_middle_of_a_packed_write(void **state)
{
	struct fx *f = *state;
	uint64_t ram = 16 * f->hp;
	uint8_t *mem = map_anon(ram), parent[16] = {1};
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0, ram, f->hp, &r);
	struct squib_dirty_bitmap *bm = bitmap(0, ram, f->hp);
	struct squib_memfile_write_options o = {.packed = true};
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	struct rlimit old, lim;
	char *path = path_in(f, "full-disk.mem");
	void (*was)(int) = signal(SIGXFSZ, SIG_IGN);
	int rc;

	fill_pattern(mem, ram, 7);
	for (uint64_t p = 0; p < 16; p += 2) /* 8 scattered pages: one gathered write */
		squib_dirty_bitmap_set_by_index(bm, p);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 5 * f->hp + 100;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	rc = squib_memfile_save_diff(path, &src, parent,
				     (const struct squib_dirty_bitmap *const *)&bm, 1, &o, &m, &d);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, was);
	assert_int_equal(rc, SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, EFBIG);
	assert_null(m.layout.extents);
	assert_false(squib_test_exists(path));
	/* Without the limit the same write goes through and reads back. */
	assert_int_equal(squib_memfile_save_diff(path, &src, parent,
						 (const struct squib_dirty_bitmap *const *)&bm, 1,
						 &o, &m, &d),
			 0);
	assert_int_equal(file_size(path), 8 * f->hp + 4096 + 4096);
	squib_memfile_manifest_release(&m);
	squib_dirty_bitmap_free(bm);
	munmap(mem, ram);
	free(path);
}

static void test_should_verify_per_extent_digests_on_demand(void **state)
{
	struct fx *f = *state;
	uint64_t ram = 16 * f->hp;
	uint8_t *mem = map_anon(ram), byte;
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0, ram, f->hp, &r);
	struct squib_memfile_manifest m, back;
	struct squib_error_detail d;
	char *path = path_in(f, "digests.mem");
	struct squib_memfile *mf;
	int fd;

	fill_pattern(mem + 2 * f->hp, 3 * f->hp, 1);
	fill_pattern(mem + 9 * f->hp, 4 * f->hp, 2);
	save_full(path, &src, true, &m);
	assert_int_equal(m.flags, SQUIB_MEMFILE_FLAG_DIGESTS);
	assert_int_equal(m.layout.extent_count, 2);
	assert_int_equal(m.digests[1], squib_crc64(0, mem + 9 * f->hp, 4 * f->hp));
	assert_int_equal(file_size(path), size_for(ram, 1, 2, true));
	mf = open_ok(path);
	assert_int_equal(squib_memfile_verify_digests(mf, &d), 0);
	squib_memfile_close(mf);
	/* One byte of page data changed behind the manifest's back. */
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	byte = 0;
	assert_int_equal(pwrite(fd, &byte, 1, (off_t)(10 * f->hp + 5)), 1);
	close(fd);
	mf = open_ok(path); /* the manifest is intact */
	assert_int_equal(squib_memfile_verify_digests(mf, &d), SQUIB_E_CRC_MISMATCH);
	assert_non_null(strstr(d.msg, "extent 1 (pages 9 +4)"));
	squib_memfile_close(mf);
	/* The one-call form: structure only, then digests too. */
	assert_int_equal(squib_memfile_verify(path, false, &back, &d), 0);
	assert_true(squib_memory_layout_equal(&back.layout, &m.layout));
	assert_int_equal(back.digests[1], m.digests[1]);
	squib_memfile_manifest_release(&back);
	assert_int_equal(squib_memfile_verify(path, true, &back, &d), SQUIB_E_CRC_MISMATCH);
	assert_null(back.layout.extents);
	squib_memfile_manifest_release(&m);
	/* Without digests there is nothing to verify. */
	save_full(path, &src, false, &m);
	mf = open_ok(path);
	assert_int_equal(squib_memfile_verify_digests(mf, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_memfile_close(mf);
	squib_memfile_manifest_release(&m);
	munmap(mem, ram);
	free(path);
}

static void test_should_pair_with_the_state_file_through_its_memory_section(void **state)
{
	struct fx *f = *state;
	uint64_t ram = 16 * f->hp;
	uint8_t *mem = map_anon(ram);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0x80000000, ram, f->hp, &r);
	struct squib_microvm_state s, back;
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	char *path = path_in(f, "x.mem"), *snap = path_in(f, "x.snap"), a[33], b[33];
	struct squib_memfile *mf;

	fill_pattern(mem + 3 * f->hp, f->hp, 4);
	save_full(path, &src, true, &m);
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_set_gic(&s, "g", 1), 0);
	assert_int_equal(squib_state_set_memory(&s, &m.layout, &d), 0);
	assert_int_equal(squib_state_save_file(snap, &s, &d), 0);
	assert_int_equal(squib_state_load_file(snap, SQUIB_ARCH_AARCH64, &back, NULL, &d), 0);
	assert_true(squib_state_equal(&s, &back));
	mf = open_ok(path);
	assert_int_equal(squib_memfile_check_layout(mf, back.memory, &d), 0);
	/* Another memory file with the same geometry does not pair. */
	back.memory->id[0] ^= 1;
	assert_int_equal(squib_memfile_check_layout(mf, back.memory, &d), SQUIB_E_PAIR_MISMATCH);
	squib_memfile_id_hex(back.memory->id, a);
	squib_memfile_id_hex(m.layout.id, b);
	assert_non_null(strstr(d.msg, a));
	assert_non_null(strstr(d.msg, b));
	assert_non_null(strstr(message(&d), "snapshot pair mismatch: "));
	back.memory->id[0] ^= 1;
	back.memory->extents[0].page_count = 1; /* same id, other content */
	back.memory->extents[0].first_page = 4;
	assert_int_equal(squib_memfile_check_layout(mf, back.memory, &d), SQUIB_E_PAIR_MISMATCH);
	squib_memfile_close(mf);
	squib_state_free(&back);
	squib_state_free(&s);
	squib_memfile_manifest_release(&m);
	munmap(mem, ram);
	free(path);
	free(snap);
}

/* ---- configuration rejected (upstream InvalidPath) ----------------------------- */

static int full_rc(struct fx *f, const struct squib_memfile_source *src,
		   struct squib_error_detail *d)
{
	struct squib_memfile_manifest m;
	char *path = path_in(f, "bad.mem");
	int rc = squib_memfile_save_full(path, src, NULL, &m, d);

	assert_false(squib_test_exists(path));
	free(path);
	return rc;
}

static void test_should_reject_bad_geometry(void **state)
{
	struct fx *f = *state;
	uint8_t *mem = map_anon(4 * MiB);
	struct squib_memfile_source_region r[2] = {{0, 1 * MiB, mem}, {2 * MiB, 1 * MiB, mem + MiB}};
	struct squib_memfile_source src = {r, 2, 4096};
	struct squib_error_detail d;

	src.page_size = 0;
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_PATH);
	assert_string_equal(message(&d), "invalid snapshot path: page_size must be a power of two: 0");
	src.page_size = 3000;
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "power of two: 3000"));
	src.page_size = 2048;
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_PATH);
	src.page_size = 4096;
	src.region_count = 0;
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "no regions"));
	src.region_count = 2;
	r[1].guest_addr = 512 * 1024; /* overlaps region 0 */
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "overlaps region 0"));
	r[1].guest_addr = UINT64_MAX - 4095; /* end past 2^64 */
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "overflows"));
	r[1].guest_addr = 2 * MiB + 100; /* unaligned */
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_PATH);
	r[1].guest_addr = 2 * MiB;
	r[1].size = 0;
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_PATH);
	r[1].size = 1ull << 48; /* 256 TiB plus region 0: past the RAM limit */
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "RAM size 0x1000000100000 exceeds"));
	r[1].size = 1 * MiB;
	r[1].host = NULL;
	assert_int_equal(full_rc(f, &src, &d), SQUIB_E_INVALID_ARGUMENT);
	munmap(mem, 4 * MiB);
}

static void test_should_reject_mismatched_diff_bitmaps(void **state)
{
	struct fx *f = *state;
	uint64_t ram = 4 * MiB;
	uint8_t *mem = map_anon(ram), parent[16] = {1}, zero_id[16] = {0};
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0x80000000, ram, 16384, &r);
	struct squib_dirty_bitmap *bm;
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	char *path = path_in(f, "d.mem");

	bm = bitmap(0x80000000, 2 * MiB, 16384);
	assert_int_equal(squib_memfile_save_diff(path, &src, parent,
						 (const struct squib_dirty_bitmap *const *)&bm, 1,
						 NULL, &m, &d),
			 SQUIB_E_INVALID_PATH);
	assert_string_equal(message(&d), "invalid snapshot path: diff bitmap covers 2097152 bytes, "
					 "memory file expects 4194304");
	squib_dirty_bitmap_free(bm);
	bm = bitmap(0x80000000, ram, 4096);
	assert_int_equal(squib_memfile_save_diff(path, &src, parent,
						 (const struct squib_dirty_bitmap *const *)&bm, 1,
						 NULL, &m, &d),
			 SQUIB_E_INVALID_PATH);
	assert_string_equal(message(&d), "invalid snapshot path: diff bitmap page (4096) must be a "
					 "multiple of memory-file page (16384)");
	squib_dirty_bitmap_free(bm);
	bm = bitmap(0x90000000, ram, 16384);
	assert_int_equal(squib_memfile_save_diff(path, &src, parent,
						 (const struct squib_dirty_bitmap *const *)&bm, 1,
						 NULL, &m, &d),
			 SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "diff bitmap starts at 0x90000000"));
	assert_int_equal(squib_memfile_save_diff(path, &src, parent,
						 (const struct squib_dirty_bitmap *const *)&bm, 0,
						 NULL, &m, &d),
			 SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "one dirty bitmap per memory region (1 regions, 0 bitmaps)"));
	squib_dirty_bitmap_free(bm);
	bm = bitmap(0x80000000, ram, 16384);
	assert_int_equal(squib_memfile_save_diff(path, &src, zero_id,
						 (const struct squib_dirty_bitmap *const *)&bm, 1,
						 NULL, &m, &d),
			 SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "parent's id"));
	assert_false(squib_test_exists(path));
	squib_dirty_bitmap_free(bm);
	munmap(mem, ram);
	free(path);
}

/* ---- damaged files ------------------------------------------------------------- */

/* A small valid file in memory: 2 regions, digests, 3 extents. */
static uint8_t *small_file(struct fx *f, size_t *len, struct squib_memfile_manifest *m)
{
	uint8_t *mem = map_anon(32 * 4096), *buf;
	struct squib_memfile_source_region r[2] = {{0x0, 16 * 4096, mem},
						   {0x100000, 16 * 4096, mem + 16 * 4096}};
	struct squib_memfile_source src = {r, 2, 4096};
	char *path = path_in(f, "small.mem");

	fill_pattern(mem + 4096, 2 * 4096, 1);
	fill_pattern(mem + 10 * 4096, 8 * 4096, 2); /* crosses into region 1 */
	fill_pattern(mem + 30 * 4096, 4096, 3);
	save_full(path, &src, true, m);
	assert_int_equal(m->layout.extent_count, 3);
	assert_int_equal(squib_test_read_file(path, &buf, len), 0);
	munmap(mem, 32 * 4096);
	free(path);
	return buf;
}

static int parse_rc(const uint8_t *buf, size_t len, struct squib_error_detail *d)
{
	struct squib_memfile_manifest m;
	int rc = squib_memfile_parse(buf, len, &m, d);

	if (rc) {
		assert_null(m.layout.regions);
		assert_null(m.digests);
	}
	squib_memfile_manifest_release(&m);
	return rc;
}

static void test_should_reject_every_single_bit_flip_in_the_footer(void **state)
{
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	size_t len;
	uint8_t *buf = small_file(*state, &len, &m);

	assert_int_equal(parse_rc(buf, len, &d), 0);
	for (size_t i = len - 4096; i < len; i++)
		for (int bit = 0; bit < 8; bit++) {
			buf[i] ^= (uint8_t)(1u << bit);
			/* CRC-64 catches every single-bit error in the footer. */
			assert_int_equal(parse_rc(buf, len, &d), SQUIB_E_CRC_MISMATCH);
			buf[i] ^= (uint8_t)(1u << bit);
		}
	assert_non_null(strstr(d.msg, "memory file footer CRC"));
	assert_int_equal(parse_rc(buf, len, &d), 0);
	squib_memfile_manifest_release(&m);
	free(buf);
}

static void test_should_reject_truncation_at_every_length(void **state)
{
	struct fx *f = *state;
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	struct squib_memfile *mf;
	char *path = path_in(f, "cut.mem");
	size_t len;
	uint8_t *buf = small_file(f, &len, &m);

	for (size_t n = 0; n < len; n++) {
		int rc = parse_rc(buf, n, &d);

		/* 4096 zero bytes (a hole) pass as a CRC-valid footer with magic 0. */
		if (n < 4096)
			assert_int_equal(rc, SQUIB_E_TOO_SHORT);
		else if (rc != SQUIB_E_CRC_MISMATCH && !(rc == SQUIB_E_MAGIC_MISMATCH &&
							  d.magic_found == 0))
			/* Once seen under qemu-user in a loaded CI run, never reproduced: say what. */
			fail_msg("cut at %zu of %zu: rc %d magic 0x%016" PRIx64 " crc(window) 0x%016" PRIx64
				 " (%s)", n, len, rc, d.magic_found, squib_crc64(0, buf + n - 4096, 4096),
				 d.msg);
	}
	/* Through real files, at a spread of lengths, and one byte too long. */
	for (size_t n = 0; n <= len; n += n < 8192 ? 509 : 4093) {
		assert_int_equal(squib_test_write_file(path, buf, n), 0);
		assert_int_not_equal(squib_memfile_open(path, &mf, &d), 0);
		assert_null(mf);
	}
	buf = realloc(buf, len + 1);
	buf[len] = 0;
	assert_int_equal(squib_test_write_file(path, buf, len + 1), 0);
	assert_int_equal(squib_memfile_open(path, &mf, &d), SQUIB_E_CRC_MISMATCH);
	squib_memfile_manifest_release(&m);
	free(buf);
	free(path);
}

/* Footer field offsets (FORMAT.md §M.3), for edits that keep the CRC right. */
#define FOOT(len) ((len) - 4096)

static void refoot(uint8_t *buf, size_t len)
{
	squib_put_le64(buf + len - 8, squib_crc64(0, buf + FOOT(len), 4088));
}

static void remanifest(uint8_t *buf, size_t len)
{
	uint64_t off = squib_get_le64(buf + FOOT(len) + 88), mlen = squib_get_le64(buf + FOOT(len) + 96);

	squib_put_le64(buf + FOOT(len) + 112, squib_crc64(0, buf + off, mlen));
	refoot(buf, len);
}

struct footer_edit {
	const char *name;
	size_t off; /* in the footer */
	int width;  /* bytes, little-endian */
	uint64_t value;
	int code;
	const char *fragment;
};

static const struct footer_edit footer_edits[] = {
	{"magic", 0, 8, 0x0710198486640000ULL, SQUIB_E_MAGIC_MISMATCH, "memory file footer magic"},
	{"rebasing magic", 0, 8, SQUIB_MEMFILE_MAGIC_REBASING, SQUIB_E_ENCODING, "in-place rebase was interrupted"},
	{"major", 8, 2, 2, SQUIB_E_VERSION_MISMATCH, ""},
	{"minor", 10, 2, 2, SQUIB_E_VERSION_MISMATCH, ""},
	{"reserved", 14, 2, 1, SQUIB_E_ENCODING, "reserved field at offset 14"},
	{"footer size", 16, 4, 8192, SQUIB_E_ENCODING, "footer_size 8192"},
	{"flags", 20, 4, 5, SQUIB_E_ENCODING, "undefined flag bits 0x00000004"},
	{"packed in 1.0", 20, 4, 2, SQUIB_E_ENCODING, "flag PACKED in a version 1.0 file"},
	{"kind", 56, 4, 3, SQUIB_E_ENCODING, "kind 3"},
	{"region count 0", 60, 4, 0, SQUIB_E_ENCODING, "region_count 0"},
	{"region count big", 60, 4, 1025, SQUIB_E_ENCODING, "region_count 1025"},
	{"page size", 64, 8, 3000, SQUIB_E_ENCODING, "page_size 3000"},
	{"ram size", 72, 8, 3 * 4096 + 7, SQUIB_E_ENCODING, "ram_size"},
	{"present pages", 80, 8, 33, SQUIB_E_ENCODING, "present_pages 33 exceeds"},
	{"manifest offset", 88, 8, 4096, SQUIB_E_ENCODING, "manifest_offset 4096"},
	{"manifest length", 96, 8, 112, SQUIB_E_ENCODING, "manifest_length 112"},
	{"extent count", 104, 8, 1ull << 40, SQUIB_E_ENCODING, "extent_count"},
	{"manifest crc", 112, 8, 1, SQUIB_E_CRC_MISMATCH, "manifest CRC"},
	{"file size", 120, 8, 1, SQUIB_E_ENCODING, "records a file size of 1 bytes"},
	{"reserved tail", 2000, 1, 1, SQUIB_E_ENCODING, "reserved byte at offset 2000"},
	{"present vs extents", 80, 8, 10, SQUIB_E_ENCODING, "present_pages 10 but the extents hold 11"},
	{"full with parent", 40, 1, 1, SQUIB_E_ENCODING, "a full memory file has a parent id"},
	{"zero id", 24, 8, 0, SQUIB_E_ENCODING, NULL},
};

static void test_should_explain_each_malformed_footer_field(void **state)
{
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	size_t len;
	uint8_t *buf = small_file(*state, &len, &m), *copy = malloc(len);

	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(footer_edits); i++) {
		const struct footer_edit *e = &footer_edits[i];

		memcpy(copy, buf, len);
		for (int b = 0; b < e->width; b++)
			copy[FOOT(len) + e->off + b] = (uint8_t)(e->value >> (8 * b));
		if (!e->fragment) /* the whole id: 16 zero bytes */
			memset(copy + FOOT(len) + e->off, 0, 16);
		refoot(copy, len);
		print_message("  %-20s %s\n", e->name,
			      parse_rc(copy, len, &d) ? message(&d) : "(accepted!)");
		assert_int_equal(parse_rc(copy, len, &d), e->code);
		if (e->fragment && !strstr(d.msg, e->fragment))
			fail_msg("%s: \"%s\" lacks \"%s\"", e->name, d.msg, e->fragment);
	}
	squib_memfile_manifest_release(&m);
	free(copy);
	free(buf);
}

struct manifest_edit {
	const char *name;
	size_t off; /* from the manifest start: regions 0..31, extents 32..79, digests 80..103 */
	uint64_t value;
	const char *fragment;
};

static const struct manifest_edit manifest_edits[] = {
	{"region misaligned", 16, 0x100800, "not aligned"},
	{"region overlaps", 16, 0x8000, "overlaps region 0"},
	{"region size", 24, 8 * 4096, "ram_size"},
	{"extents unsorted", 48, 0, "overlaps or precedes"},
	{"extents touching", 48, 3, "touches the previous one"},
	{"extent empty", 56, 0, "extent 1 is empty"},
	{"extent past RAM", 72, 3, "runs past the 32 pages"},
	{"present count", 56, 7, "present_pages 11 but the extents hold 10"},
	{"padding", 200, 1, "padding byte at offset"},
};

/* Every manifest edit on a file whose manifest starts at `at`. */
static void check_manifest_edits(const uint8_t *buf, size_t len, uint64_t at)
{
	struct squib_error_detail d;
	uint8_t *copy = malloc(len);

	/* A flipped manifest bit is caught by the manifest CRC. */
	memcpy(copy, buf, len);
	copy[at + 40] ^= 4;
	assert_int_equal(parse_rc(copy, len, &d), SQUIB_E_CRC_MISMATCH);
	assert_non_null(strstr(d.msg, "manifest CRC"));
	/* Consistent CRCs over inconsistent content: the structure rules speak. */
	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(manifest_edits); i++) {
		const struct manifest_edit *e = &manifest_edits[i];

		memcpy(copy, buf, len);
		squib_put_le64(copy + at + e->off, e->value);
		if (e->off == 200)
			copy[at + 200] = 1;
		remanifest(copy, len);
		assert_int_equal(parse_rc(copy, len, &d), SQUIB_E_ENCODING);
		print_message("  %-20s %s\n", e->name, message(&d));
		if (!strstr(d.msg, e->fragment))
			fail_msg("%s: \"%s\" lacks \"%s\"", e->name, d.msg, e->fragment);
	}
	free(copy);
}

static void test_should_explain_each_malformed_manifest_entry(void **state)
{
	struct squib_memfile_manifest m;
	size_t len;
	uint8_t *buf = small_file(*state, &len, &m);

	check_manifest_edits(buf, len, 32 * 4096);
	squib_memfile_manifest_release(&m);
	free(buf);
}

/* ---- packed diffs ---------------------------------------------------------------- */

/* small_file's pages as a packed diff: 11 pages back to back, then the manifest. */
static uint8_t *small_packed(struct fx *f, size_t *len, struct squib_memfile_manifest *m,
			     uint8_t **ram)
{
	uint8_t *mem = map_anon(32 * 4096), *buf;
	struct squib_memfile_source_region r[2] = {{0x0, 16 * 4096, mem},
						   {0x100000, 16 * 4096, mem + 16 * 4096}};
	struct squib_memfile_source src = {r, 2, 4096};
	struct squib_memfile_write_options o = {.digests = true, .packed = true};
	struct squib_dirty_bitmap *bms[2] = {bitmap(0x0, 16 * 4096, 4096),
					     bitmap(0x100000, 16 * 4096, 4096)};
	static const uint64_t pages[] = {1, 2, 10, 11, 12, 13, 14, 15, 16, 17, 30};
	uint8_t parent[16] = {9, 9, 9};
	struct squib_error_detail d;
	char *path = path_in(f, "packed.mem");

	fill_pattern(mem, 32 * 4096, 5);
	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(pages); i++)
		squib_dirty_bitmap_set_by_index(bms[pages[i] / 16], pages[i] % 16);
	if (squib_memfile_save_diff(path, &src, parent, (const struct squib_dirty_bitmap *const *)bms,
				    2, &o, m, &d))
		fail_msg("packed diff: %s", d.msg);
	assert_int_equal(m->layout.extent_count, 3);
	assert_int_equal(squib_test_read_file(path, &buf, len), 0);
	assert_int_equal(*len, 11 * 4096 + 4096 + 4096);
	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(pages); i++) /* the pages, in order, at 0 */
		assert_memory_equal(buf + i * 4096, mem + pages[i] * 4096, 4096);
	for (int i = 0; i < 2; i++)
		squib_dirty_bitmap_free(bms[i]);
	*ram = mem;
	free(path);
	return buf;
}

static void test_should_write_a_packed_diff_back_to_back(void **state)
{
	struct fx *f = *state;
	struct squib_memfile_manifest m;
	struct squib_memfile *mf;
	struct squib_error_detail d;
	char *path = path_in(f, "packed.mem");
	uint8_t *ram, page[4096];
	size_t len;
	uint8_t *buf = small_packed(f, &len, &m, &ram);

	assert_int_equal(squib_get_le16(buf + FOOT(len) + 10), 1); /* version 1.1 */
	assert_int_equal(squib_get_le32(buf + FOOT(len) + 20), 3); /* DIGESTS | PACKED */
	assert_int_equal(squib_get_le64(buf + FOOT(len) + 88), 11 * 4096);
	mf = open_ok(path);
	assert_int_equal(squib_memfile_verify_digests(mf, &d), 0);
	for (uint64_t p = 0; p < 32; p++) {
		int rc = squib_memfile_read_page(mf, p < 16 ? p * 4096 : 0x100000 + (p - 16) * 4096,
						 page, &d);

		if (!squib_memfile_page_present(mf, p)) {
			assert_int_equal(rc, SQUIB_E_MEMORY_IO);
			continue;
		}
		assert_int_equal(rc, 0);
		assert_memory_equal(page, ram + p * 4096, 4096);
	}
	squib_memfile_close(mf);
	/* A damaged packed page fails its extent's digest. */
	buf[3 * 4096] ^= 1;
	assert_int_equal(squib_test_write_file(path, buf, len), 0);
	mf = open_ok(path);
	assert_int_equal(squib_memfile_verify_digests(mf, &d), SQUIB_E_CRC_MISMATCH);
	squib_memfile_close(mf);
	squib_memfile_manifest_release(&m);
	munmap(ram, 32 * 4096);
	free(buf);
	free(path);
}

static const struct footer_edit packed_footer_edits[] = {
	{"packed in 1.0", 10, 2, 0, SQUIB_E_ENCODING, "flag PACKED in a version 1.0 file"},
	{"packed full", 56, 4, 1, SQUIB_E_ENCODING, "a full file is packed"},
	{"offset fixed", 88, 8, 32 * 4096, SQUIB_E_ENCODING, "is not present_pages * page_size"},
	{"offset short", 88, 8, 10 * 4096, SQUIB_E_ENCODING, "is not present_pages * page_size"},
	{"present more", 80, 8, 12, SQUIB_E_ENCODING, "is not present_pages * page_size"},
	{"present fewer", 80, 8, 3, SQUIB_E_ENCODING, "is not present_pages * page_size"},
	{"not packed", 20, 4, 1, SQUIB_E_ENCODING, "manifest_offset 45056 is not ram_size"},
	{"minor 2", 10, 2, 2, SQUIB_E_VERSION_MISMATCH, ""},
};

static void test_should_reject_hostile_packed_manifests(void **state)
{
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	size_t len;
	uint8_t *ram, *buf = small_packed(*state, &len, &m, &ram), *copy = malloc(len);

	assert_int_equal(parse_rc(buf, len, &d), 0);
	/* unsorted, overlapping, touching, empty, out-of-bounds, miscounted extents */
	check_manifest_edits(buf, len, 11 * 4096);
	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(packed_footer_edits); i++) {
		const struct footer_edit *e = &packed_footer_edits[i];

		memcpy(copy, buf, len);
		for (int b = 0; b < e->width; b++)
			copy[FOOT(len) + e->off + b] = (uint8_t)(e->value >> (8 * b));
		refoot(copy, len);
		print_message("  %-20s %s\n", e->name,
			      parse_rc(copy, len, &d) ? message(&d) : "(accepted!)");
		assert_int_equal(parse_rc(copy, len, &d), e->code);
		if (e->fragment[0] && !strstr(d.msg, e->fragment))
			fail_msg("%s: \"%s\" lacks \"%s\"", e->name, d.msg, e->fragment);
	}
	/* Truncated: a page short at the front (the offsets would pass the manifest). */
	assert_int_equal(parse_rc(buf + 4096, len - 4096, &d), SQUIB_E_ENCODING);
	assert_non_null(strstr(d.msg, "records a file size"));
	for (size_t n = 0; n < len; n += 997)
		assert_int_not_equal(parse_rc(buf, n, &d), 0);
	squib_memfile_manifest_release(&m);
	munmap(ram, 32 * 4096);
	free(copy);
	free(buf);
}

static void test_should_refuse_to_pack_a_full_file(void **state)
{
	struct fx *f = *state;
	uint8_t *mem = map_anon(16 * 4096);
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = one_region(mem, 0, 16 * 4096, 4096, &r);
	struct squib_memfile_write_options o = {.packed = true};
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	char *path = path_in(f, "full-packed.mem");

	assert_int_equal(squib_memfile_save_full(path, &src, &o, &m, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "only a diff can be packed"));
	assert_int_equal(access(path, F_OK), -1);
	munmap(mem, 16 * 4096);
	free(path);
}

static void test_should_reject_out_of_range_reads(void **state)
{
	struct fx *f = *state;
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	char *path = path_in(f, "small.mem");
	uint8_t page[4096];
	size_t len;
	struct squib_memfile *mf;

	free(small_file(f, &len, &m));
	mf = open_ok(path);
	assert_int_equal(squib_memfile_read_page(mf, 0x100, page, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "not aligned"));
	assert_int_equal(squib_memfile_read_page(mf, 0x20000, page, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "outside every memory region"));
	assert_int_equal(squib_memfile_read_page(mf, 0x110000, page, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_memfile_read_page(mf, 0x10F000, page, &d), 0); /* last page */
	squib_memfile_close(mf);
	squib_memfile_manifest_release(&m);
	free(path);
}

/* ---- chains and rebase ------------------------------------------------------------- */

struct chain_fx {
	uint8_t *mem;
	struct squib_memfile_source_region r[2];
	struct squib_memfile_source src;
	struct squib_dirty_bitmap *bms[2];
	char *paths[4];
	struct squib_memfile_manifest m[4];
};

#define CHAIN_REGION (1 * MiB)

/* full -> diff -> diff -> diff over two regions; mem ends as the final memory. */
static void build_chain(struct fx *f, struct chain_fx *c, bool digests)
{
	static const char *names[4] = {"c0.mem", "c1.mem", "c2.mem", "c3.mem"};
	uint32_t seed = 0xC0FFEE;

	c->mem = map_anon(2 * CHAIN_REGION);
	c->r[0] = (struct squib_memfile_source_region){0x0, CHAIN_REGION, c->mem};
	c->r[1] = (struct squib_memfile_source_region){0x40000000, CHAIN_REGION, c->mem + CHAIN_REGION};
	c->src = (struct squib_memfile_source){c->r, 2, 4096};
	for (int i = 0; i < 2; i++)
		c->bms[i] = bitmap(c->r[i].guest_addr, CHAIN_REGION, 8192);
	for (uint64_t p = 0; p < 2 * CHAIN_REGION / 4096; p += 3)
		fill_pattern(c->mem + p * 4096, 4096, (uint32_t)p);
	for (int k = 0; k < 4; k++) {
		c->paths[k] = path_in(f, names[k]);
		if (k == 0) {
			save_full(c->paths[0], &c->src, digests, &c->m[0]);
			continue;
		}
		for (int n = 0; n < 40; n++) { /* rewrite random 4 KiB pages, zeros included */
			uint64_t p = lcg(&seed) % (2 * CHAIN_REGION / 4096);

			memset(c->mem + p * 4096, n % 4 ? (int)(lcg(&seed) | 1) & 0xFF : 0, 4096);
			squib_dirty_bitmap_set(c->bms[p * 4096 / CHAIN_REGION],
					       c->r[p * 4096 / CHAIN_REGION].guest_addr + p * 4096 % CHAIN_REGION);
		}
		save_diff(c->paths[k], &c->src, c->m[k - 1].layout.id, c->bms, digests, &c->m[k]);
		for (int i = 0; i < 2; i++)
			squib_dirty_bitmap_clear(c->bms[i]); /* the harvest */
	}
}

static void free_chain(struct chain_fx *c)
{
	for (int k = 0; k < 4; k++) {
		squib_memfile_manifest_release(&c->m[k]);
		free(c->paths[k]);
	}
	for (int i = 0; i < 2; i++)
		squib_dirty_bitmap_free(c->bms[i]);
	munmap(c->mem, 2 * CHAIN_REGION);
}

/* The file's RAM range equals the final memory byte for byte. */
static void assert_image_is_final_memory(const char *path, const struct chain_fx *c)
{
	uint8_t *back = malloc(2 * CHAIN_REGION);

	pread_exact(path, back, 2 * CHAIN_REGION, 0);
	assert_memory_equal(back, c->mem, 2 * CHAIN_REGION);
	free(back);
}

static void assert_file_equals(const char *path, const uint8_t *want, size_t len)
{
	uint8_t *buf;
	size_t n;

	assert_int_equal(squib_test_read_file(path, &buf, &n), 0);
	assert_int_equal(n, len);
	assert_memory_equal(buf, want, len);
	free(buf);
}

static bool has_page(const struct squib_memory_layout *l, uint64_t p)
{
	for (uint64_t i = 0; i < l->extent_count; i++)
		if (p - l->extents[i].first_page < l->extents[i].page_count)
			return true;
	return false;
}

static void assert_merged_manifest(const struct squib_memfile_manifest *r, const struct chain_fx *c)
{
	uint64_t pages = 2 * CHAIN_REGION / 4096;

	assert_int_equal(r->layout.kind, SQUIB_MEMORY_FULL);
	assert_memory_equal(r->layout.id, c->m[3].layout.id, 16);
	for (int i = 0; i < 16; i++)
		assert_int_equal(r->layout.parent_id[i], 0);
	for (uint64_t p = 0; p < pages; p++) {
		bool any = false;

		for (int k = 0; k < 4; k++)
			any |= has_page(&c->m[k].layout, p);
		assert_int_equal(has_page(&r->layout, p), any);
	}
}

static void test_should_read_a_chain_as_the_final_memory(void **state)
{
	struct chain_fx c;
	struct squib_memfile_chain *ch;
	struct squib_error_detail d;
	uint8_t page[4096];

	build_chain(*state, &c, false);
	if (squib_memfile_chain_open((const char *const *)c.paths, 4, &ch, &d))
		fail_msg("chain: %s", d.msg);
	for (uint64_t off = 0; off < 2 * CHAIN_REGION; off += 4096) {
		uint64_t guest = c.r[off / CHAIN_REGION].guest_addr + off % CHAIN_REGION;

		assert_int_equal(squib_memfile_chain_read_page(ch, guest, page, &d), 0);
		assert_memory_equal(page, c.mem + off, 4096);
	}
	squib_memfile_chain_close(ch);
	/* Only a prefix of the chain: an older memory, still consistent. */
	assert_int_equal(squib_memfile_chain_open((const char *const *)c.paths, 2, &ch, &d), 0);
	squib_memfile_chain_close(ch);
	free_chain(&c);
}

static void test_should_rebase_a_chain_into_a_new_file(void **state)
{
	struct fx *f = *state;
	struct squib_memfile_rebase_options o = {.digests = true};
	struct squib_memfile_manifest r;
	struct squib_error_detail d;
	struct chain_fx c;
	char *out = path_in(f, "merged.mem");
	uint8_t *before;
	size_t before_len;
	struct squib_memfile *mf;

	build_chain(f, &c, true);
	assert_int_equal(squib_test_read_file(c.paths[0], &before, &before_len), 0);
	if (squib_memfile_rebase(c.paths[0], (const char *const *)c.paths + 1, 3, out, &o, &r, &d))
		fail_msg("rebase: %s", d.msg);
	assert_image_is_final_memory(out, &c);
	assert_merged_manifest(&r, &c);
	assert_int_equal(file_size(out), r.layout.file_size);
	mf = open_ok(out);
	assert_true(squib_memory_layout_equal(&squib_memfile_manifest(mf)->layout, &r.layout));
	assert_int_equal(squib_memfile_verify_digests(mf, &d), 0);
	squib_memfile_close(mf);
	assert_file_equals(c.paths[0], before, before_len); /* the inputs are untouched */
	squib_memfile_manifest_release(&r);
	free(before);
	free(out);
	free_chain(&c);
}

static void rebase_in_place_with(struct fx *f, bool no_cfr)
{
	struct squib_memfile_rebase_options o = {.no_copy_file_range = no_cfr};
	struct squib_memfile_manifest r;
	struct squib_error_detail d;
	struct chain_fx c;
	struct squib_memfile *mf;

	build_chain(f, &c, false);
	if (squib_memfile_rebase(c.paths[0], (const char *const *)c.paths + 1, 3, NULL, &o, &r, &d))
		fail_msg("rebase: %s", d.msg);
	assert_image_is_final_memory(c.paths[0], &c);
	assert_merged_manifest(&r, &c);
	assert_int_equal(file_size(c.paths[0]), r.layout.file_size);
	mf = open_ok(c.paths[0]);
	assert_true(squib_memory_layout_equal(&squib_memfile_manifest(mf)->layout, &r.layout));
	squib_memfile_close(mf);
	squib_memfile_manifest_release(&r);
	free_chain(&c);
}

static void test_should_rebase_a_chain_in_place(void **state)
{
	rebase_in_place_with(*state, false);
	rebase_in_place_with(*state, true); /* the pread/pwrite fallback */
}

/* The output must not be an input: by name, through a hard link or a symlink. */
static void test_should_refuse_an_output_that_is_one_of_the_inputs(void **state)
{
	struct fx *f = *state;
	struct squib_error_detail d;
	struct chain_fx c;
	char *hard = path_in(f, "hard.mem"), *soft = path_in(f, "soft.mem");
	const char *outs[3];
	uint8_t *before;
	size_t len;

	build_chain(f, &c, false);
	assert_int_equal(link(c.paths[2], hard), 0);
	assert_int_equal(symlink(c.paths[0], soft), 0);
	outs[0] = c.paths[0];
	outs[1] = hard;
	outs[2] = soft;
	assert_int_equal(squib_test_read_file(c.paths[0], &before, &len), 0);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(squib_memfile_rebase(c.paths[0], (const char *const *)c.paths + 1,
						      3, outs[i], NULL, NULL, &d),
				 SQUIB_E_INVALID_PATH);
		/* A symlink is refused as the output whatever it points to. */
		if (!strstr(d.msg, i == 2 ? "symbolic link" : "(the same file)"))
			fail_msg("output %zu: \"%s\"", i, d.msg);
	}
	assert_file_equals(c.paths[0], before, len);
	assert_int_equal(squib_test_exists(hard) && squib_test_exists(soft), 1);
	unlink(hard);
	unlink(soft);
	free(before);
	free(hard);
	free(soft);
	free_chain(&c);
}

/* The file a rebase writes is locked first: busy while another writer holds it, before
 * an input is read (out) or a byte of the base is changed (in place). */
static void test_should_fail_a_rebase_busy_while_its_output_is_being_written(void **state)
{
	struct fx *f = *state;
	struct squib_error_detail d;
	struct squib_dest_lock held;
	struct chain_fx c;
	char *out = path_in(f, "merged.mem");
	uint8_t *before;
	size_t before_len;

	build_chain(f, &c, false);
	assert_int_equal(squib_dest_lock(&held, out, NULL, &d), 0);
	assert_int_equal(
	    squib_memfile_rebase(c.paths[0], (const char *const *)c.paths + 1, 3, out, NULL, NULL, &d),
	    SQUIB_E_BUSY);
	assert_non_null(strstr(d.msg, out));
	assert_false(squib_test_exists(out));
	assert_int_equal(squib_test_temps(out, NULL), 0);
	squib_dest_unlock(&held);
	assert_int_equal(squib_test_read_file(c.paths[0], &before, &before_len), 0);
	assert_int_equal(squib_dest_lock(&held, c.paths[0], NULL, &d), 0);
	assert_int_equal(
	    squib_memfile_rebase(c.paths[0], (const char *const *)c.paths + 1, 3, NULL, NULL, NULL, &d),
	    SQUIB_E_BUSY);
	assert_file_equals(c.paths[0], before, before_len);
	squib_dest_unlock(&held);
	assert_int_equal(squib_test_layer_files(c.paths[0], NULL), 0);
	free(before);
	free(out);
	free_chain(&c);
}

static void assert_pair_mismatch_names(const struct squib_error_detail *d, const uint8_t *a,
				       const uint8_t *b)
{
	char ha[33], hb[33];

	squib_memfile_id_hex(a, ha);
	squib_memfile_id_hex(b, hb);
	assert_int_equal(d->code, SQUIB_E_PAIR_MISMATCH);
	if (!strstr(d->msg, ha) || !strstr(d->msg, hb))
		fail_msg("\"%s\" lacks %s or %s", d->msg, ha, hb);
}

static void test_should_refuse_a_diff_whose_parent_is_not_the_base(void **state)
{
	struct squib_memfile_chain *ch = NULL;
	struct squib_error_detail d;
	struct chain_fx c;
	const char *skip[2], *order[3];
	uint8_t *before;
	size_t len;

	build_chain(*state, &c, false);
	assert_int_equal(squib_test_read_file(c.paths[0], &before, &len), 0);
	/* diff 2 applied straight onto the base: its parent is diff 1. */
	skip[0] = c.paths[2];
	assert_int_equal(squib_memfile_rebase(c.paths[0], skip, 1, NULL, NULL, NULL, &d),
			 SQUIB_E_PAIR_MISMATCH);
	assert_pair_mismatch_names(&d, c.m[2].layout.parent_id, c.m[0].layout.id);
	assert_file_equals(c.paths[0], before, len); /* refused before writing anything */
	/* Out of order. */
	order[0] = c.paths[1];
	order[1] = c.paths[3];
	order[2] = c.paths[2];
	assert_int_equal(squib_memfile_rebase(c.paths[0], order, 3, NULL, NULL, NULL, &d),
			 SQUIB_E_PAIR_MISMATCH);
	assert_pair_mismatch_names(&d, c.m[3].layout.parent_id, c.m[1].layout.id);
	assert_file_equals(c.paths[0], before, len);
	/* The chain reader applies the same rule; a diff cannot be a base. */
	skip[0] = c.paths[0];
	skip[1] = c.paths[2];
	assert_int_equal(squib_memfile_chain_open(skip, 2, &ch, &d), SQUIB_E_PAIR_MISMATCH);
	assert_null(ch);
	assert_int_equal(squib_memfile_chain_open((const char *const *)c.paths + 1, 1, &ch, &d),
			 SQUIB_E_PAIR_MISMATCH);
	assert_int_equal(squib_memfile_rebase(c.paths[1], skip + 1, 1, NULL, NULL, NULL, &d),
			 SQUIB_E_PAIR_MISMATCH);
	free(before);
	free_chain(&c);
}

static void test_should_refuse_a_diff_of_another_geometry(void **state)
{
	struct fx *f = *state;
	struct squib_memfile_source_region r;
	struct squib_memfile_source src;
	struct squib_memfile_manifest m;
	struct squib_dirty_bitmap *bm;
	struct squib_error_detail d;
	struct chain_fx c;
	char *odd = path_in(f, "odd.mem");
	const char *diffs[1] = {odd};

	build_chain(f, &c, false);
	/* Claims the base as parent, but covers one region with 16 KiB pages. */
	src = one_region(c.mem, 0x0, CHAIN_REGION, 16384, &r);
	bm = bitmap(0x0, CHAIN_REGION, 16384);
	squib_dirty_bitmap_set_by_index(bm, 3);
	save_diff(odd, &src, c.m[0].layout.id, &bm, false, &m);
	assert_int_equal(squib_memfile_rebase(c.paths[0], diffs, 1, NULL, NULL, NULL, &d),
			 SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d.msg, "another geometry"));
	assert_pair_mismatch_names(&d, m.layout.parent_id, c.m[0].layout.id);
	squib_memfile_manifest_release(&m);
	squib_dirty_bitmap_free(bm);
	free(odd);
	free_chain(&c);
}

struct count_steps {
	int n[SQUIB_IO_STEP_COUNT];
};

static int count_before(void *ctx, enum squib_io_step step, const char *path)
{
	(void)path;
	((struct count_steps *)ctx)->n[step]++;
	return 0;
}

/* Every step of an in-place rebase failed once with ENOSPC: the base is the old
 * file byte for byte (rolled back before the call returns), or, once the undo
 * log is gone, the merged one; no undo log is left either way. */
static void test_should_roll_back_an_in_place_rebase_that_fails(void **state)
{
	struct count_steps all = {{0}};
	struct squib_io_hooks counting = {&all, count_before};
	struct squib_memfile_rebase_options o = {.hooks = &counting};
	struct squib_error_detail d;
	struct chain_fx c;
	int trials = 0;

	build_chain(*state, &c, false);
	assert_int_equal(squib_memfile_rebase(c.paths[0], (const char *const *)c.paths + 1, 3, NULL,
					      &o, NULL, &d),
			 0);
	free_chain(&c);
	assert_int_equal(all.n[SQUIB_IO_UNLINK], 1);
	for (int step = 0; step < SQUIB_IO_STEP_COUNT; step++) {
		for (int n = 1; n <= all.n[step]; n++) {
			struct fail_nth fn = {(enum squib_io_step)step, n, 0};
			struct squib_io_hooks hooks = {&fn, fail_nth_before};
			char *undo;
			uint8_t *before;
			size_t len;
			int rc;

			/* Of the many page writes, the first and last few and every 16th
			 * (test_crash.c fails every step of a smaller rebase). */
			if (step == SQUIB_IO_WRITE && n > 4 && n % 16 && n <= all.n[step] - 4)
				continue;
			trials++;
			o.hooks = &hooks;
			build_chain(*state, &c, false);
			undo = squib_memfile_undo_path(c.paths[0]);
			assert_int_equal(squib_test_read_file(c.paths[0], &before, &len), 0);
			rc = squib_memfile_rebase(c.paths[0], (const char *const *)c.paths + 1, 3,
						  NULL, &o, NULL, &d);
			assert_true(rc < 0);
			assert_int_equal(d.os_errno, ENOSPC);
			if (step == SQUIB_IO_FSYNC_DIR && rc == SQUIB_E_IO && n == all.n[step])
				assert_image_is_final_memory(c.paths[0], &c); /* committed */
			else
				assert_file_equals(c.paths[0], before, len);
			assert_false(squib_test_exists(undo));
			free(undo);
			free(before);
			free_chain(&c);
		}
	}
	printf("in-place rebase: %d of its steps failed once with ENOSPC\n", trials);
}

static void test_should_refuse_to_rebase_without_diffs(void **state)
{
	struct squib_error_detail d;
	struct chain_fx c;

	build_chain(*state, &c, false);
	assert_int_equal(squib_memfile_rebase(c.paths[0], NULL, 0, NULL, NULL, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	free_chain(&c);
}

/* docs/FORMAT.md §M.7, built from the tables there rather than by the library. */
static void test_should_accept_the_documented_example(void **state)
{
	static const uint8_t id[16] = {0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
				       0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
	uint8_t *file = calloc(1, 24576), *foot = file + 0x5000;
	struct squib_memfile_manifest m;
	struct squib_error_detail d;

	(void)state;
	memset(file + 0x1000, 0xAB, 0x2000);
	squib_put_le64(file + 0x4000, 0x80000000);
	squib_put_le64(file + 0x4008, 0x4000);
	squib_put_le64(file + 0x4010, 1);
	squib_put_le64(file + 0x4018, 2);
	memcpy(foot, "SQUIBMEM", 8);
	squib_put_le16(foot + 8, 1);
	squib_put_le32(foot + 16, 4096);
	memcpy(foot + 24, id, 16);
	squib_put_le32(foot + 56, 1);
	squib_put_le32(foot + 60, 1);
	squib_put_le64(foot + 64, 4096);
	squib_put_le64(foot + 72, 0x4000);
	squib_put_le64(foot + 80, 2);
	squib_put_le64(foot + 88, 0x4000);
	squib_put_le64(foot + 96, 32);
	squib_put_le64(foot + 104, 1);
	squib_put_le64(foot + 112, squib_crc64(0, file + 0x4000, 32));
	squib_put_le64(foot + 120, 24576);
	squib_put_le64(foot + 4088, squib_crc64(0, foot, 4088));
	/* The CRCs printed in the example. */
	assert_int_equal(squib_get_le64(foot + 112), 0xBB908CB295DCEB76ULL);
	assert_int_equal(squib_get_le64(foot + 4088), 0x298E0D8B536865F6ULL);
	assert_int_equal(squib_memfile_parse(file, 24576, &m, &d), 0);
	assert_int_equal(m.layout.kind, SQUIB_MEMORY_FULL);
	assert_memory_equal(m.layout.id, id, 16);
	assert_int_equal(m.layout.regions[0].guest_addr, 0x80000000);
	assert_int_equal(m.layout.extents[0].first_page, 1);
	assert_int_equal(m.layout.present_pages, 2);
	assert_int_equal(m.layout.file_size, 24576);
	assert_int_equal(squib_memory_layout_validate(&m.layout, SQUIB_E_ENCODING, &d), 0);
	squib_memfile_manifest_release(&m);
	free(file);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

/* An 8 KiB file whose manifest claims 1 TiB present: refused at open, before any page
 * is read (before: verify read zeros for hours, rebase wrote them until the disk filled). */
static void test_should_refuse_a_sparse_file_claiming_more_present_pages_than_it_holds(void **state)
{
	char *dir = squib_test_tmpdir(), *p = squib_test_path(dir, "huge.mem");
	struct squib_memfile_manifest m, got;
	struct squib_memfile *mf = NULL;
	struct squib_error_detail d;

	(void)state;
	squib_test_write_sparse_memfile(p, 1ull << 40, 8192, &m);
	assert_int_equal(squib_memfile_open(p, &mf, &d), SQUIB_E_MEMORY_IO);
	assert_null(mf);
	assert_non_null(strstr(d.msg, p));
	assert_non_null(strstr(d.msg, "bytes of present pages, but more than"));
	assert_non_null(strstr(d.msg, "holes"));
	assert_int_equal(squib_memfile_verify(p, true, &got, &d), SQUIB_E_MEMORY_IO);
	squib_memfile_manifest_release(&m);
	squib_test_rmtree(dir);
	free(p);
	free(dir);
}

/* A few holes inside present extents (a filesystem storing zero blocks as holes) are
 * tolerated up to the slack: the bound is on the work, not on the layout. */
static void test_should_open_a_file_with_a_few_holes_in_present_pages(void **state)
{
	char *dir = squib_test_tmpdir(), *p = squib_test_path(dir, "holey.mem");
	struct squib_memfile_manifest m;
	struct squib_memfile *mf = NULL;
	struct squib_error_detail d;

	(void)state;
	squib_test_write_sparse_memfile(p, 16ull << 20, 8192, &m);
	assert_int_equal(squib_memfile_open(p, &mf, &d), 0);
	assert_int_equal(squib_memfile_manifest(mf)->layout.present_pages,
			 (16ull << 20) / m.layout.page_size);
	squib_memfile_close(mf);
	squib_memfile_manifest_release(&m);
	squib_test_rmtree(dir);
	free(p);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_should_write_full_dump_dense),
	    cmocka_unit_test(
		test_should_refuse_a_sparse_file_claiming_more_present_pages_than_it_holds),
	    cmocka_unit_test(test_should_open_a_file_with_a_few_holes_in_present_pages),
	    T(test_should_write_diff_only_dirty_pages),
	    T(test_should_write_whole_bitmap_block_when_granule_is_coarser),
	    T(test_should_hold_exactly_the_dirty_pages_over_random_patterns),
	    T(test_should_keep_a_page_rewritten_with_zeros_in_a_diff),
	    T(test_should_write_sparse_full_snapshot_without_reading_untouched_pages),
	    T(test_should_read_every_page_of_a_shared_mapping),
	    T(test_should_produce_the_same_manifest_with_every_detection_method),
	    T(test_should_prepare_without_publishing_until_asked),
	    T(test_should_report_write_failures_as_memory_io),
	    T(test_should_verify_per_extent_digests_on_demand),
	    T(test_should_pair_with_the_state_file_through_its_memory_section),
	    T(test_should_reject_bad_geometry),
	    T(test_should_reject_mismatched_diff_bitmaps),
	    T(test_should_reject_every_single_bit_flip_in_the_footer),
	    T(test_should_reject_truncation_at_every_length),
	    T(test_should_explain_each_malformed_footer_field),
	    T(test_should_explain_each_malformed_manifest_entry),
	    T(test_should_write_a_packed_diff_back_to_back),
	    T(test_should_reject_hostile_packed_manifests),
	    T(test_should_refuse_to_pack_a_full_file),
	    T(test_should_report_a_full_disk_in_the_middle_of_a_packed_write),
	    T(test_should_read_an_empty_packed_diff_over_its_parent),
	    T(test_should_reject_out_of_range_reads),
	    T(test_should_read_a_chain_as_the_final_memory),
	    T(test_should_rebase_a_chain_into_a_new_file),
	    T(test_should_rebase_a_chain_in_place),
	    T(test_should_refuse_an_output_that_is_one_of_the_inputs),
	    T(test_should_refuse_a_diff_whose_parent_is_not_the_base),
	    T(test_should_refuse_a_diff_of_another_geometry),
	    T(test_should_roll_back_an_in_place_rebase_that_fails),
	    T(test_should_refuse_to_rebase_without_diffs),
	    T(test_should_accept_the_documented_example),
	    T(test_should_fail_a_rebase_busy_while_its_output_is_being_written),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
