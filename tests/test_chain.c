/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memory chain (squib/chain.h): the owner map of a real 3-layer chain,
 * its runs, reads, the one base-must-be-FULL and link messages through every
 * entry point (chain, loader, rebase), a layer that is not a file, hostile
 * manifests, and a COPY load that reads each page once (/proc/self/io).
 */
#include "pair.h"
#include "savetest.h"
#include "testutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <squib/chain.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/page_source.h>

#define PAGES 64

/* base: every page but the zero pages 60..63; diff1 and diff2 over it. */
static const uint64_t D1[] = {1, 2, 5, 6, 7};
static const uint64_t D2[] = {2, 3, 6, 61};
#define N1	  (sizeof(D1) / sizeof(D1[0]))
#define N2	  (sizeof(D2) / sizeof(D2[0]))
#define ZERO_FROM 60

struct fixture {
	char *dir;
	char *paths[3]; /* base, diff1, diff2 */
	uint64_t ps;
	uint8_t *mem; /* the RAM as the newest diff saw it */
};

static bool listed(const uint64_t *v, size_t n, uint64_t page)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == page)
			return true;
	return false;
}

/* The owner the construction implies: the newest layer that wrote the page. */
static uint32_t expected_owner(uint64_t page)
{
	if (listed(D2, N2, page))
		return 2;
	if (listed(D1, N1, page))
		return 1;
	return page < ZERO_FROM ? 0 : SQUIB_CHAIN_ZERO;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct squib_memfile_manifest m0, m1;
	static const char *names[] = {"base.mem", "diff1.mem", "diff2.mem"};

	f->dir = squib_test_tmpdir();
	f->ps = squib_test_page_size();
	for (int i = 0; i < 3; i++)
		f->paths[i] = squib_test_path(f->dir, names[i]);
	f->mem = squib_test_guest_ram(PAGES * f->ps, 1);
	memset(f->mem + ZERO_FROM * f->ps, 0, (PAGES - ZERO_FROM) * f->ps);
	squib_test_save_full(f->paths[0], f->mem, PAGES * f->ps, true, &m0);
	for (size_t i = 0; i < N1; i++)
		squib_test_fill_page(f->mem, D1[i], 2);
	squib_test_save_diff(f->paths[1], f->mem, PAGES * f->ps, m0.layout.id, D1, N1, true, &m1);
	for (size_t i = 0; i < N2; i++)
		squib_test_fill_page(f->mem, D2[i], 3);
	squib_test_save_diff(f->paths[2], f->mem, PAGES * f->ps, m1.layout.id, D2, N2, false, NULL);
	squib_memfile_manifest_release(&m0);
	squib_memfile_manifest_release(&m1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	munmap(f->mem, PAGES * f->ps);
	squib_test_rmtree(f->dir);
	for (int i = 0; i < 3; i++)
		free(f->paths[i]);
	free(f->dir);
	free(f);
	return 0;
}

static struct squib_chain *open3(const struct fixture *f)
{
	struct squib_chain *c = NULL;
	struct squib_error_detail d;

	assert_int_equal(squib_chain_open((const char *const *)f->paths, 3, &c, &d), 0);
	return c;
}

/* ---- the owner map and reads ----------------------------------------------------------- */

static void test_should_map_every_page_to_the_newest_layer_holding_it(void **state)
{
	struct fixture *f = *state;
	struct squib_chain *c = open3(f);
	uint64_t present = 0;

	assert_int_equal(squib_chain_layer_count(c), 3);
	assert_int_equal(squib_chain_page_count(c), PAGES);
	for (uint64_t p = 0; p < PAGES; p++) {
		assert_int_equal(squib_chain_owner(c, p), expected_owner(p));
		present += expected_owner(p) != SQUIB_CHAIN_ZERO;
	}
	assert_int_equal(squib_chain_present_pages(c), present);
	assert_int_equal(squib_chain_owner(c, PAGES), SQUIB_CHAIN_ZERO); /* past the RAM */
	assert_string_equal(squib_chain_layer_name(c, 1), f->paths[1]);
	assert_memory_equal(squib_chain_layout(c)->id, squib_chain_layer_manifest(c, 2)->layout.id,
			    SQUIB_MEMORY_ID_SIZE);
	squib_chain_free(c);
}

static void test_should_read_the_memory_the_newest_diff_saw(void **state)
{
	struct fixture *f = *state;
	struct squib_chain *c = open3(f);
	uint8_t *buf = malloc(PAGES * f->ps), *page = malloc(f->ps);
	struct squib_error_detail d;

	memset(buf, 0xEE, PAGES * f->ps); /* zero runs must be written, not left */
	assert_int_equal(squib_chain_read(c, 0, PAGES, buf, &d), 0);
	assert_memory_equal(buf, f->mem, PAGES * f->ps);
	for (uint64_t p = 0; p < PAGES; p += 7) {
		assert_int_equal(
		    squib_chain_read_page(c, SQUIB_TEST_GUEST_BASE + p * f->ps, page, &d), 0);
		assert_memory_equal(page, f->mem + p * f->ps, f->ps);
	}
	assert_int_equal(squib_chain_read(c, PAGES - 1, 2, buf, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_chain_read_page(c, SQUIB_TEST_GUEST_BASE + 1, page, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	free(buf);
	free(page);
	squib_chain_free(c);
}

struct walk {
	const struct squib_chain *c;
	uint64_t next, runs;
	uint32_t last_owner;
};

static int check_run(void *ctx, const struct squib_chain_run *r)
{
	struct walk *w = ctx;

	assert_int_equal(r->first_page, w->next); /* contiguous, in page order */
	assert_true(r->page_count > 0);
	if (w->runs)
		assert_int_not_equal(r->owner, w->last_owner); /* maximal */
	for (uint64_t p = r->first_page; p < r->first_page + r->page_count; p++)
		assert_int_equal(squib_chain_owner(w->c, p), r->owner);
	w->next += r->page_count;
	w->last_owner = r->owner;
	w->runs++;
	return 0;
}

static int stop_at_second(void *ctx, const struct squib_chain_run *r)
{
	(void)r;
	return ++*(int *)ctx == 2 ? 42 : 0;
}

static void test_should_walk_maximal_runs_of_one_owner(void **state)
{
	struct fixture *f = *state;
	struct squib_chain *c = open3(f);
	struct walk w = {c, 0, 0, 0};
	int calls = 0;

	assert_int_equal(squib_chain_for_each_run(c, 0, PAGES, check_run, &w), 0);
	assert_int_equal(w.next, PAGES);
	w = (struct walk){c, 3, 0, 0}; /* clipped to a range starting inside a run */
	assert_int_equal(squib_chain_for_each_run(c, 3, 59, check_run, &w), 0);
	assert_int_equal(w.next, 62);
	assert_int_equal(squib_chain_for_each_run(c, 0, PAGES, stop_at_second, &calls), 42);
	assert_int_equal(calls, 2);
	assert_int_equal(squib_chain_for_each_run(c, 1, PAGES, check_run, &w),
			 SQUIB_E_INVALID_ARGUMENT);
	squib_chain_free(c);
}

static void test_should_read_a_run_only_from_a_layer_holding_it(void **state)
{
	struct fixture *f = *state;
	struct squib_chain *c = open3(f);
	uint8_t *buf = malloc(3 * f->ps);
	struct squib_error_detail d;

	assert_int_equal(squib_chain_read_layer(c, 1, 5, 3, buf, &d), 0); /* pages 5..7 of diff1 */
	assert_int_equal(squib_chain_read_layer(c, 1, 4, 2, buf, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, f->paths[1]));
	assert_int_equal(squib_chain_read_layer(c, 3, 0, 1, buf, &d), SQUIB_E_INVALID_ARGUMENT);
	free(buf);
	squib_chain_free(c);
}

/* ---- the chain's rules, one message each, through every entry point -------------------- */

static void assert_base_message(const struct squib_error_detail *d, const char *base)
{
	char want[512];

	snprintf(want, sizeof(want), "chain base %s (id ", base);
	assert_int_equal(d->code, SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d->msg, want));
	assert_non_null(strstr(d->msg, ", not a full memory file"));
}

static void test_should_refuse_a_base_that_is_not_full_with_one_message(void **state)
{
	struct fixture *f = *state;
	const char *diff_first[] = {f->paths[1], f->paths[2]};
	struct squib_memfile_chain *mc = NULL;
	struct squib_guest_memory *g = NULL;
	struct squib_chain *c = NULL;
	struct squib_error_detail d;

	assert_int_equal(squib_chain_open(diff_first, 2, &c, &d), SQUIB_E_PAIR_MISMATCH);
	assert_null(c);
	assert_base_message(&d, f->paths[1]);
	assert_int_equal(squib_memfile_chain_open(diff_first, 1, &mc, &d), SQUIB_E_PAIR_MISMATCH);
	assert_base_message(&d, f->paths[1]);
	/* The loader and the rebase give the chain's message, not one of their own. */
	assert_int_equal(
	    squib_guest_memory_open(f->paths[2], diff_first, 1, NULL, SQUIB_BACKEND_COPY, &g, &d),
	    SQUIB_E_PAIR_MISMATCH);
	assert_null(g);
	assert_base_message(&d, f->paths[1]);
	assert_int_equal(squib_memfile_rebase(f->paths[1], diff_first + 1, 1, NULL, NULL, NULL, &d),
			 SQUIB_E_PAIR_MISMATCH);
	assert_base_message(&d, f->paths[1]);
}

static void test_should_refuse_a_broken_link_with_one_message(void **state)
{
	struct fixture *f = *state;
	const char *skip[] = {f->paths[0], f->paths[2]};
	struct squib_guest_memory *g = NULL;
	struct squib_chain *c = NULL;
	struct squib_error_detail d;
	char *out = squib_test_path(f->dir, "out.mem");
	char want[1024];

	snprintf(want, sizeof(want), "diff %s has parent id ", f->paths[2]);
	assert_int_equal(squib_chain_open(skip, 2, &c, &d), SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d.msg, want));
	assert_int_equal(
	    squib_guest_memory_open(f->paths[2], skip, 1, NULL, SQUIB_BACKEND_COPY, &g, &d),
	    SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d.msg, want));
	assert_int_equal(squib_memfile_rebase(f->paths[0], skip + 1, 1, out, NULL, NULL, &d),
			 SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d.msg, want));
	free(out);
	/* A full file above the base: not a diff. */
	skip[1] = f->paths[0];
	assert_int_equal(squib_chain_open(skip, 2, &c, &d), SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d.msg, "is a full memory file, not a diff to apply on"));
}

/* ---- a layer that is not a file --------------------------------------------------------- */

/* A memory file held in memory, as a snapshot store would hold an object. */
struct mem_layer {
	uint8_t *bytes;
	size_t len;
	struct squib_memfile_manifest m;
	uint64_t reads;
};

static const struct squib_memfile_manifest *ml_manifest(void *ctx)
{
	return &((struct mem_layer *)ctx)->m;
}

static const char *ml_name(void *ctx)
{
	(void)ctx;
	return "mem://base";
}

static int ml_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		   struct squib_error_detail *d)
{
	struct mem_layer *l = ctx;
	uint64_t ps = l->m.layout.page_size;

	(void)d;
	assert_true((first + count) * ps <= l->m.layout.ram_size);
	memcpy(buf, l->bytes + first * ps, (size_t)(count * ps));
	l->reads++;
	return 0;
}

static void ml_release(void *ctx)
{
	struct mem_layer *l = ctx;

	squib_memfile_manifest_release(&l->m);
	free(l->bytes);
	free(l);
}

static const struct squib_chain_layer_ops mem_ops = {ml_manifest, ml_name, ml_read, ml_release};

static struct mem_layer *mem_layer_of(const char *path)
{
	struct mem_layer *l = calloc(1, sizeof(*l));

	assert_int_equal(squib_test_read_file(path, &l->bytes, &l->len), 0);
	assert_int_equal(squib_memfile_parse(l->bytes, l->len, &l->m, NULL), 0);
	return l;
}

static void test_should_chain_a_layer_that_is_not_a_file(void **state)
{
	struct fixture *f = *state;
	struct mem_layer *base = mem_layer_of(f->paths[0]);
	struct squib_memfile *d1, *d2;
	struct squib_chain_layer layers[3];
	struct squib_page_source src;
	struct squib_chain *c = NULL;
	uint8_t *buf = malloc(PAGES * f->ps);

	assert_int_equal(squib_memfile_open(f->paths[1], &d1, NULL), 0);
	assert_int_equal(squib_memfile_open(f->paths[2], &d2, NULL), 0);
	layers[0] = (struct squib_chain_layer){&mem_ops, base};
	layers[1] = squib_chain_layer_file(d1, true);
	layers[2] = squib_chain_layer_file(d2, true);
	assert_int_equal(squib_chain_open_layers(layers, 3, &c, NULL), 0);
	assert_int_equal(squib_page_source_chain(c, &src, NULL), 0);
	assert_int_equal(src.page_count, PAGES);
	assert_false(src.ops->present(src.ctx, ZERO_FROM)); /* no layer holds it */
	assert_true(src.ops->present(src.ctx, 61));
	assert_int_equal(src.ops->read(src.ctx, 0, PAGES, buf, NULL), 0);
	assert_memory_equal(buf, f->mem, PAGES * f->ps);
	/* The base layer was read once per run it owns, never for pages a diff replaced. */
	assert_true(base->reads > 0 && base->reads <= N1 + N2 + 1);
	squib_chain_free(c);
	free(buf);
}

static void test_should_refuse_a_hostile_manifest_from_any_layer(void **state)
{
	struct fixture *f = *state;
	struct squib_error_detail d;
	struct squib_chain *c = NULL;
	struct squib_chain_layer l;
	struct mem_layer *m;

	/* Extents out of order (overlapping once sorted). */
	m = mem_layer_of(f->paths[1]);
	m->m.layout.kind = SQUIB_MEMORY_FULL;
	memset(m->m.layout.parent_id, 0, SQUIB_MEMORY_ID_SIZE);
	m->m.layout.extents[0].first_page = m->m.layout.extents[1].first_page;
	l = (struct squib_chain_layer){&mem_ops, m};
	assert_int_equal(squib_chain_open_layers(&l, 1, &c, &d), SQUIB_E_ENCODING);
	assert_null(c);
	/* An extent past the RAM range, present pages to match. */
	m = mem_layer_of(f->paths[0]);
	m->m.layout.extents[m->m.layout.extent_count - 1].page_count += 1u << 30;
	m->m.layout.present_pages += 1u << 30;
	l = (struct squib_chain_layer){&mem_ops, m};
	assert_int_equal(squib_chain_open_layers(&l, 1, &c, &d), SQUIB_E_ENCODING);
	/* A RAM range of 2^48 bytes and no extent: refused by the file size, never mapped
	 * page by page. */
	m = mem_layer_of(f->paths[0]);
	m->m.layout.regions[0].size = 1ull << 47;
	m->m.layout.ram_size = 1ull << 47;
	l = (struct squib_chain_layer){&mem_ops, m};
	assert_int_equal(squib_chain_open_layers(&l, 1, &c, &d), SQUIB_E_ENCODING);
	/* An incomplete layer, and too many layers: refused, every layer released. */
	l = (struct squib_chain_layer){NULL, NULL};
	assert_int_equal(squib_chain_open_layers(&l, 1, &c, &d), SQUIB_E_INVALID_ARGUMENT);
	{
		struct squib_chain_layer *many = calloc(SQUIB_CHAIN_MAX_LAYERS + 1, sizeof(*many));

		assert_int_equal(squib_chain_open_layers(many, SQUIB_CHAIN_MAX_LAYERS + 1, &c, &d),
				 SQUIB_E_INVALID_ARGUMENT);
		free(many);
	}
}

/* ---- COPY reads each page once ---------------------------------------------------------- */

/* Bytes this process has read through read(2)/pread(2) so far (rchar); 0: no accounting. */
static uint64_t bytes_read(void)
{
	FILE *io = fopen("/proc/self/io", "r");
	char line[128];
	uint64_t v = 0;

	if (!io) {
		fprintf(stderr, "SKIP-LINE: /proc/self/io is missing (no task I/O accounting): the "
				"byte count is not checked\n");
		return 0;
	}
	while (fgets(line, sizeof(line), io))
		if (sscanf(line, "rchar: %" SCNu64, &v) == 1)
			break;
	fclose(io);
	return v;
}

static void test_should_read_each_page_once_in_a_copy_load(void **state)
{
	struct fixture *f = *state;
	uint64_t all[PAGES], before, after, tails = 0, owned = PAGES * f->ps;
	struct squib_memfile_manifest m[3];
	struct squib_guest_memory *g = NULL;
	uint8_t *mem = squib_test_guest_ram(PAGES * f->ps, 7);
	char *paths[3];

	/* Three layers that each hold every page: copying every layer would read 3x. */
	for (uint64_t p = 0; p < PAGES; p++)
		all[p] = p;
	for (int i = 0; i < 3; i++) {
		char name[32];

		snprintf(name, sizeof(name), "all%d.mem", i);
		paths[i] = squib_test_path(f->dir, name);
		squib_test_fill_page(mem, (uint64_t)i, 9 + (uint32_t)i);
		if (!i)
			squib_test_save_full(paths[i], mem, owned, false, &m[i]);
		else
			squib_test_save_diff(paths[i], mem, owned, m[i - 1].layout.id, all, PAGES,
					     false, &m[i]);
		tails += m[i].layout.file_size - m[i].layout.ram_size;
	}
	before = bytes_read();
	assert_int_equal(squib_guest_memory_open(paths[2], (const char *const *)paths, 2, NULL,
						 SQUIB_BACKEND_COPY, &g, NULL),
			 0);
	after = bytes_read();
	assert_int_equal(savetest_gm_stats(g).pages_read, PAGES);
	assert_memory_equal(squib_guest_memory_region(g, 0)->host, mem, owned);
	if (before) { /* the pages once, plus each file's tail and type check */
		assert_true(after - before >= owned);
		assert_true(after - before <= owned + tails + 3 * 4096);
	}
	squib_guest_memory_free(g);
	for (int i = 0; i < 3; i++) {
		squib_memfile_manifest_release(&m[i]);
		free(paths[i]);
	}
	munmap(mem, owned);
}

/* ---- packed diffs: every reader, byte for byte against fixed offsets ------------------- */

struct twin {
	char *fixed[3], *packed[3]; /* the same base; diffs of the same pages, two layouts */
	uint8_t *mem;		    /* the final memory */
};

static void save_twins(const struct fixture *f, struct twin *t)
{
	struct squib_memfile_write_options fo = {.digests = true},
					   po = {.digests = true, .packed = true};
	struct squib_memfile_manifest base, mf[2], mp[2];
	const uint64_t *pages[2] = {D1, D2};
	size_t n[2] = {N1, N2};
	char name[32];

	t->mem = squib_test_guest_ram(PAGES * f->ps, 1);
	memset(t->mem + ZERO_FROM * f->ps, 0, (PAGES - ZERO_FROM) * f->ps);
	t->fixed[0] = squib_test_path(f->dir, "twin0.mem");
	t->packed[0] = squib_test_path(f->dir, "twin0.mem");
	squib_test_save_full(t->fixed[0], t->mem, PAGES * f->ps, false, &base);
	for (int k = 0; k < 2; k++) {
		for (size_t i = 0; i < n[k]; i++)
			squib_test_fill_page(t->mem, pages[k][i], 20 + (uint32_t)k);
		snprintf(name, sizeof(name), "twin%d.fixed.mem", k + 1);
		t->fixed[k + 1] = squib_test_path(f->dir, name);
		snprintf(name, sizeof(name), "twin%d.packed.mem", k + 1);
		t->packed[k + 1] = squib_test_path(f->dir, name);
		squib_test_save_diff_ex(t->fixed[k + 1], t->mem, PAGES * f->ps,
					k ? mf[0].layout.id : base.layout.id, pages[k], n[k], &fo,
					&mf[k]);
		squib_test_save_diff_ex(t->packed[k + 1], t->mem, PAGES * f->ps,
					k ? mp[0].layout.id : base.layout.id, pages[k], n[k], &po,
					&mp[k]);
		/* Same pages, same digests; the packed file holds only them. */
		assert_int_equal(mp[k].flags,
				 SQUIB_MEMFILE_FLAG_PACKED | SQUIB_MEMFILE_FLAG_DIGESTS);
		assert_int_equal(mp[k].version.minor, 1);
		assert_int_equal(mf[k].version.minor, 0);
		assert_int_equal(mp[k].layout.extent_count, mf[k].layout.extent_count);
		assert_memory_equal(mp[k].layout.extents, mf[k].layout.extents,
				    mf[k].layout.extent_count * sizeof(*mf[k].layout.extents));
		assert_memory_equal(mp[k].digests, mf[k].digests,
				    mf[k].layout.extent_count * sizeof(uint64_t));
		assert_int_equal(mp[k].layout.file_size,
				 mf[k].layout.file_size - (PAGES - n[k]) * f->ps);
	}
	squib_memfile_manifest_release(&base);
	for (int k = 0; k < 2; k++) {
		squib_memfile_manifest_release(&mf[k]);
		squib_memfile_manifest_release(&mp[k]);
	}
}

static void free_twins(const struct fixture *f, struct twin *t)
{
	for (int i = 0; i < 3; i++) {
		free(t->fixed[i]);
		free(t->packed[i]);
	}
	munmap(t->mem, PAGES * f->ps);
}

/* Load the chain with a backend and compare every byte with the final memory. */
static void assert_loads(const struct fixture *f, char *const *paths, enum squib_memory_backend b,
			 const uint8_t *want)
{
	struct squib_guest_memory *g = NULL;
	struct squib_error_detail d;

	if (squib_guest_memory_open(paths[2], (const char *const *)paths, 2, NULL, b, &g, &d))
		fail_msg("load (backend %d): %s", (int)b, d.msg);
	assert_memory_equal(squib_guest_memory_region(g, 0)->host, want, PAGES * f->ps);
	squib_guest_memory_free(g);
}

static void rebase_into(const struct fixture *f, char *const *paths, const char *name,
			uint8_t **out, size_t *len)
{
	char *dst = squib_test_path(f->dir, name);
	struct squib_error_detail d;

	if (squib_memfile_rebase(paths[0], (const char *const *)paths + 1, 2, dst, NULL, NULL, &d))
		fail_msg("rebase: %s", d.msg);
	assert_int_equal(squib_test_read_file(dst, out, len), 0);
	free(dst);
}

static void test_should_read_a_packed_diff_like_a_fixed_offset_one_everywhere(void **state)
{
	struct fixture *f = *state;
	struct twin t;
	struct squib_chain *c;
	uint8_t *a, *b, *page = malloc(f->ps);
	size_t alen, blen;
	struct squib_error_detail d;

	save_twins(f, &t);
	/* verify, digests included (they cover the packed bytes) */
	for (int k = 1; k < 3; k++)
		assert_int_equal(squib_memfile_verify(t.packed[k], true, NULL, &d), 0);
	/* the chain reader, page by page */
	assert_int_equal(squib_chain_open((const char *const *)t.packed, 3, &c, &d), 0);
	for (uint64_t p = 0; p < PAGES; p++) {
		assert_int_equal(squib_chain_read(c, p, 1, page, &d), 0);
		assert_memory_equal(page, t.mem + p * f->ps, f->ps);
	}
	squib_chain_free(c);
	/* COPY, and LAZY through the pager and the file page source */
	assert_loads(f, t.packed, SQUIB_BACKEND_COPY, t.mem);
	if (!squib_test_uffd_missing("LAZY load of a packed chain"))
		assert_loads(f, t.packed, SQUIB_BACKEND_LAZY, t.mem);
	/* rebase: the same RAM range as the fixed-offset chain's, byte for byte */
	rebase_into(f, t.fixed, "twin.fixed.out", &a, &alen);
	rebase_into(f, t.packed, "twin.packed.out", &b, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, PAGES * f->ps);
	assert_memory_equal(a, t.mem, PAGES * f->ps);
	free(b);
	/* and in place (the undo log records the base's bytes, the diffs are only read) */
	if (squib_memfile_rebase(t.packed[0], (const char *const *)t.packed + 1, 2, NULL, NULL,
				 NULL, &d))
		fail_msg("rebase in place: %s", d.msg);
	assert_int_equal(squib_test_read_file(t.packed[0], &b, &blen), 0);
	assert_int_equal(blen, alen);
	assert_memory_equal(a, b, PAGES * f->ps + 4096); /* RAM and manifest; ids differ */
	free(a);
	free(b);
	free(page);
	free_twins(f, &t);
}

static void test_should_refuse_a_packed_diff_for_the_file_backend(void **state)
{
	struct fixture *f = *state;
	struct squib_guest_memory *g = NULL;
	struct squib_error_detail d;
	struct twin t;

	save_twins(f, &t);
	assert_int_equal(squib_guest_memory_open(t.packed[2], (const char *const *)t.packed, 2,
						 NULL, SQUIB_BACKEND_FILE, &g, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "FILE backend maps only a full memory file"));
	assert_null(g);
	free_twins(f, &t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_map_every_page_to_the_newest_layer_holding_it),
	    cmocka_unit_test(test_should_read_the_memory_the_newest_diff_saw),
	    cmocka_unit_test(test_should_walk_maximal_runs_of_one_owner),
	    cmocka_unit_test(test_should_read_a_run_only_from_a_layer_holding_it),
	    cmocka_unit_test(test_should_refuse_a_base_that_is_not_full_with_one_message),
	    cmocka_unit_test(test_should_refuse_a_broken_link_with_one_message),
	    cmocka_unit_test(test_should_chain_a_layer_that_is_not_a_file),
	    cmocka_unit_test(test_should_refuse_a_hostile_manifest_from_any_layer),
	    cmocka_unit_test(test_should_read_each_page_once_in_a_copy_load),
	    cmocka_unit_test(test_should_read_a_packed_diff_like_a_fixed_offset_one_everywhere),
	    cmocka_unit_test(test_should_refuse_a_packed_diff_for_the_file_backend),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
