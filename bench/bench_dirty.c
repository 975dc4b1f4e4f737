/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Dirty bitmap micro-benchmarks: upstream's three (benches/dirty_bitmap.rs,
 * RAM at 0x4000_0000, 1 GiB, 2 MiB pages: 512 bits in 8 words) plus a 1 GiB
 * bitmap at 4 KiB granule with 1 % of its pages dirty (the P6 budget case:
 * a Diff save of 1 GiB with 1 % dirty in <= 50 ms).
 *
 * Each figure is the best and the median of RUNS runs; a run times many
 * iterations and divides, because one iteration is shorter than the clock's
 * resolution. Plain printf; no I/O.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <squib/dirty.h>

#include "benchutil.h"

#define RAM_BASE 0x40000000ull
#define RAM_SIZE (1ull << 30)
#define PAGE_2M (2ull << 20)
#define PAGE_4K 4096ull
#define RUNS 11

/* Something the compiler cannot prove unused, so no measured call is optimised away. */
static volatile uint64_t sink;

static void report(const char *name, double *runs, const char *unit)
{
	qsort(runs, RUNS, sizeof(runs[0]), cmp_double);
	printf("%-40s best %10.2f %s   median %10.2f %s\n", name, runs[0], unit, runs[RUNS / 2],
	       unit);
}

static struct squib_dirty_bitmap *new_bitmap(uint64_t page_size)
{
	struct squib_dirty_bitmap *bm = NULL;

	if (squib_dirty_bitmap_new(RAM_BASE, RAM_SIZE, page_size, &bm, NULL)) {
		fprintf(stderr, "bench_dirty: cannot build a bitmap\n");
		exit(1);
	}
	return bm;
}

static int count_page(void *ctx, uint64_t page)
{
	(*(uint64_t *)ctx) += page | 1;
	return 0;
}

/* 1. The first 64 blocks (upstream says "random"; they are not), already set after the first. */
static void bench_set_64x_2mib(void)
{
	enum { ITERS = 200000 };
	struct squib_dirty_bitmap *bm = new_bitmap(PAGE_2M);
	double runs[RUNS];

	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = now_ns(), n = 0;

		for (int it = 0; it < ITERS; it++)
			for (uint64_t i = 0; i < 64; i++)
				n += squib_dirty_bitmap_set(bm, RAM_BASE + i * PAGE_2M);
		runs[r] = (double)(now_ns() - t0) / ITERS;
		sink += n;
	}
	report("set_dirty_64x_2mib", runs, "ns/iter");
	squib_dirty_bitmap_free(bm);
}

/* 2. drain_into over a bitmap with 64 dirty blocks; many bitmaps are prepared untimed. */
static void bench_drain_after_64_dirty_2mib(void)
{
	enum { BATCH = 4096 };
	static struct squib_dirty_bitmap *bms[BATCH];
	double runs[RUNS];

	for (int b = 0; b < BATCH; b++)
		bms[b] = new_bitmap(PAGE_2M);
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0, n = 0;

		for (int b = 0; b < BATCH; b++)
			for (uint64_t i = 0; i < 64; i++)
				squib_dirty_bitmap_set_by_index(bms[b], i);
		t0 = now_ns();
		for (int b = 0; b < BATCH; b++)
			squib_dirty_bitmap_drain_into(bms[b], count_page, &n, NULL);
		runs[r] = (double)(now_ns() - t0) / BATCH;
		sink += n;
	}
	report("drain_after_64_dirty_2mib", runs, "ns/iter");
	for (int b = 0; b < BATCH; b++)
		squib_dirty_bitmap_free(bms[b]);
}

/* 3. Draining a clean 1 GiB / 2 MiB bitmap: 8 words to look at. */
static void bench_drain_clean_1gib_2mib(void)
{
	enum { ITERS = 1000000 };
	struct squib_dirty_bitmap *bm = new_bitmap(PAGE_2M);
	double runs[RUNS];

	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = now_ns(), n = 0;

		for (int it = 0; it < ITERS; it++)
			squib_dirty_bitmap_drain_into(bm, count_page, &n, NULL);
		runs[r] = (double)(now_ns() - t0) / ITERS;
		sink += n;
	}
	report("drain_clean_1gib_2mib", runs, "ns/iter");
	squib_dirty_bitmap_free(bm);
}

static uint64_t xorshift64(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* 4. 1 GiB at 4 KiB (262144 pages, 32 KiB of bitmap): set 1 % at random, then drain. */
static void bench_1pct_1gib_4kib(void)
{
	enum { PAGES = (int)(RAM_SIZE / PAGE_4K), DIRTY = PAGES / 100 };
	static uint64_t addrs[DIRTY];
	struct squib_dirty_bitmap *bm = new_bitmap(PAGE_4K);
	double set_runs[RUNS], drain_runs[RUNS], clean_runs[RUNS];
	uint64_t seed = 0x9e3779b97f4a7c15ull;

	for (int i = 0; i < DIRTY; i++)
		addrs[i] = RAM_BASE + (xorshift64(&seed) % PAGES) * PAGE_4K;
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = now_ns(), t1, t2, n = 0;

		for (int i = 0; i < DIRTY; i++)
			n += squib_dirty_bitmap_set(bm, addrs[i]);
		t1 = now_ns();
		squib_dirty_bitmap_drain_into(bm, count_page, &n, NULL);
		t2 = now_ns();
		squib_dirty_bitmap_drain_into(bm, count_page, &n, NULL);
		clean_runs[r] = (double)(now_ns() - t2) / 1000.0;
		set_runs[r] = (double)(t1 - t0) / 1000.0;
		drain_runs[r] = (double)(t2 - t1) / 1000.0;
		sink += n;
	}
	report("set_1pct_random_1gib_4kib (2621 pages)", set_runs, "us   ");
	report("drain_1pct_dirty_1gib_4kib", drain_runs, "us   ");
	report("drain_clean_1gib_4kib", clean_runs, "us   ");
	squib_dirty_bitmap_free(bm);
}

int main(void)
{
	printf("dirty bitmap, RAM 0x%llx + 1 GiB; best and median of %d runs\n", RAM_BASE, RUNS);
	bench_set_64x_2mib();
	bench_drain_after_64_dirty_2mib();
	bench_drain_clean_1gib_2mib();
	bench_1pct_1gib_4kib();
	return 0;
}
