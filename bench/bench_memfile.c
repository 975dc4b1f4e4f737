/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Memory file benchmarks, with their baselines measured in the same run:
 *
 *   full   1 GiB region, 256 MiB of non-zero data in 2 MiB runs scattered over
 *          it, the rest never touched: write_full alone and with fsync +
 *          publish, against memcpy of the same 256 MiB;
 *   diff   1 GiB, 1 % of its 4 KiB pages dirty at random: write_diff + fsync +
 *          publish, against upstream's 50 ms budget;
 *   rebase a diff like that onto a full file like that: in place (saves the
 *          base's bytes the diff overwrites to an undo log, then copies the
 *          diff's pages), and into a new file (copies everything); then the
 *          same onto a dense base (all of the 1 GiB non-zero).
 *
 * Files go to $SQUIB_BENCH_DIR (default /var/tmp: a disk, not tmpfs) and are
 * deleted afterwards. Each figure is the best and the median of RUNS runs;
 * every run writes a new file, like a real snapshot does, after the previous
 * one is deleted and the disk is idle (sync), so no run pays for another.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <squib/memfile.h>

#include "benchutil.h"

#define GiB (1ull << 30)
#define MiB (1ull << 20)
#define RAM_BASE 0x40000000ull
#define TOUCHED (256 * MiB)
#define RUN_LEN (2 * MiB)
#define PAGE 4096ull
#define RUNS 5
#define DIFF_BUDGET_MS 50.0

/* Sorts runs in place; returns the best. */
static double report(const char *name, double *runs, int n, double bytes)
{
	qsort(runs, (size_t)n, sizeof(runs[0]), cmp_double);
	printf("%-44s best %9.2f ms   median %9.2f ms", name, runs[0], runs[n / 2]);
	if (bytes > 0)
		printf("   %6.2f GB/s", bytes / (runs[0] * 1e6));
	printf("\n");
	return runs[0];
}

static void die(const char *what, const struct squib_error_detail *d)
{
	char msg[1024];

	squib_error_message(d->code, d, msg, sizeof(msg));
	fprintf(stderr, "bench_memfile: %s: %s (%s)\n", what, msg, d->msg);
	exit(1);
}

/*
 * Start each run from a quiet disk: the previous run's file deleted and all
 * writeback done. Otherwise a run pays for its predecessor: the rename that
 * replaces the old file frees its extents, and with `discard` mounts those
 * discards land in the next journal commit, our fsync.
 */
static void quiesce(const char *path)
{
	unlink(path);
	sync();
}

static uint8_t *map_ram(void)
{
	void *p = mmap(NULL, GiB, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		perror("bench_memfile: mmap");
		exit(1);
	}
	return p;
}

static uint64_t lcg64(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 17;
}

/* 128 distinct 2 MiB slots of the 512, filled with non-zero bytes. */
static void touch_runs(uint8_t *ram, uint64_t *slots)
{
	uint8_t used[GiB / RUN_LEN] = {0};
	uint64_t seed = 42;

	for (uint64_t i = 0; i < TOUCHED / RUN_LEN; i++) {
		uint64_t s;

		do
			s = lcg64(&seed) % (GiB / RUN_LEN);
		while (used[s]);
		used[s] = 1;
		slots[i] = s;
		for (uint64_t off = 0; off < RUN_LEN; off += 8)
			*(uint64_t *)(ram + s * RUN_LEN + off) = (s << 32 | off) | 1;
	}
}

static double bench_memcpy(const uint8_t *ram, const uint64_t *slots)
{
	uint8_t *dst = malloc(TOUCHED);
	double runs[RUNS];

	memset(dst, 1, TOUCHED); /* fault it in outside the timing */
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = now_ns();

		for (uint64_t i = 0; i < TOUCHED / RUN_LEN; i++)
			memcpy(dst + i * RUN_LEN, ram + slots[i] * RUN_LEN, RUN_LEN);
		runs[r] = (double)(now_ns() - t0) / 1e6;
	}
	free(dst);
	return report("memcpy of the 256 MiB (baseline)", runs, RUNS, (double)TOUCHED);
}

/* One full snapshot into path; returns ms. durable: fsync + rename + dir fsync. */
static double full_once(const struct squib_memfile_source *src, const char *path, bool durable,
			struct squib_memfile_manifest *m)
{
	struct squib_memfile_write_stats st;
	struct squib_atomic_writer w;
	struct squib_error_detail d;
	uint64_t t0;
	double ms;

	quiesce(path);
	t0 = now_ns();
	if (squib_atomic_open(&w, path, NULL, &d) ||
	    squib_memfile_write_full(&w, src, NULL, m, &st, &d))
		die("write_full", &d);
	if (durable && squib_atomic_commit(&w, &d))
		die("commit", &d);
	ms = (double)(now_ns() - t0) / 1e6;
	if (!durable)
		squib_atomic_abort(&w);
	if (st.pages_written * PAGE != TOUCHED) {
		fprintf(stderr, "bench_memfile: wrote %" PRIu64 " pages\n", st.pages_written);
		exit(1);
	}
	return ms;
}

static double bench_full(const struct squib_memfile_source *src, const char *path, bool durable,
			 struct squib_memfile_manifest *keep)
{
	double runs[RUNS];

	for (int r = 0; r < RUNS; r++) {
		struct squib_memfile_manifest m;

		runs[r] = full_once(src, path, durable, &m);
		if (keep && r == RUNS - 1)
			*keep = m;
		else
			squib_memfile_manifest_release(&m);
	}
	return report(durable ? "full 1 GiB / 256 MiB touched, with fsync" :
			     "full 1 GiB / 256 MiB touched, no fsync",
		      runs, RUNS, (double)TOUCHED);
}

/* 1 % of the 4 KiB pages, written (so populated) and marked dirty. */
static struct squib_dirty_bitmap *dirty_one_percent(uint8_t *ram, uint64_t seed)
{
	struct squib_dirty_bitmap *bm = NULL;
	uint64_t pages = GiB / PAGE, want = pages / 100, n = 0;

	if (squib_dirty_bitmap_new(RAM_BASE, GiB, PAGE, &bm, NULL))
		exit(1);
	while (n < want) {
		uint64_t p = lcg64(&seed) % pages;

		if (squib_dirty_bitmap_set_by_index(bm, p)) {
			memset(ram + p * PAGE, (int)(n % 255) + 1, PAGE);
			n++;
		}
	}
	return bm;
}

static double diff_once(const struct squib_memfile_source *src, const char *path,
			const uint8_t *parent, const struct squib_dirty_bitmap *bm,
			struct squib_memfile_manifest *m)
{
	struct squib_atomic_writer w;
	struct squib_error_detail d;
	uint64_t t0;

	quiesce(path);
	t0 = now_ns();
	if (squib_atomic_open(&w, path, NULL, &d) ||
	    squib_memfile_write_diff(&w, src, parent, &bm, 1, NULL, m, NULL, &d) ||
	    squib_atomic_commit(&w, &d))
		die("write_diff", &d);
	return (double)(now_ns() - t0) / 1e6;
}

static double bench_diff(uint8_t *ram, const struct squib_memfile_source *src, const char *path,
			 const uint8_t *parent, struct squib_memfile_manifest *keep)
{
	double runs[RUNS], best;

	for (int r = 0; r < RUNS; r++) {
		struct squib_dirty_bitmap *bm = dirty_one_percent(ram, 7 + (uint64_t)r);
		struct squib_memfile_manifest m;

		runs[r] = diff_once(src, path, parent, bm, &m);
		if (r == RUNS - 1)
			*keep = m;
		else
			squib_memfile_manifest_release(&m);
		squib_dirty_bitmap_free(bm);
	}
	best = report("diff 1 GiB, 1 % of 4 KiB pages, with fsync", runs, RUNS,
		      (double)(GiB / PAGE / 100 * PAGE));
	printf("%-44s %.2fx of upstream's %.0f ms budget (best)\n", "", best / DIFF_BUDGET_MS,
	       DIFF_BUDGET_MS);
	return best;
}

/* A fresh full file and a 1 % diff on it (not timed): rebase in place consumes them. */
static void make_pair(uint8_t *ram, const struct squib_memfile_source *src, const char *full,
		      const char *diff, uint64_t seed)
{
	struct squib_memfile_manifest fm, dm;
	struct squib_dirty_bitmap *bm;
	struct squib_error_detail d;

	if (squib_memfile_save_full(full, src, NULL, &fm, &d))
		die("save_full", &d);
	bm = dirty_one_percent(ram, seed);
	if (squib_memfile_save_diff(diff, src, fm.layout.id,
				    (const struct squib_dirty_bitmap *const *)&bm, 1, NULL, &dm, &d))
		die("save_diff", &d);
	squib_dirty_bitmap_free(bm);
	squib_memfile_manifest_release(&fm);
	squib_memfile_manifest_release(&dm);
}

/* The undo log's size, taken just before the commit removes it. */
static int undo_size_hook(void *ctx, enum squib_io_step step, const char *path)
{
	struct stat st;

	if (step == SQUIB_IO_UNLINK && stat(path, &st) == 0)
		*(uint64_t *)ctx = (uint64_t)st.st_size;
	return 0;
}

static double rebase_once(const char *full, const char *diff, const char *out,
			  uint64_t *undo_bytes)
{
	const char *diffs[1] = {diff};
	struct squib_io_hooks h = {undo_bytes, undo_size_hook};
	struct squib_memfile_rebase_options o = {.hooks = &h};
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	uint64_t t0;

	if (out)
		unlink(out);
	sync();
	t0 = now_ns();
	if (squib_memfile_rebase(full, diffs, 1, out, &o, &m, &d))
		die(out ? "rebase into a new file" : "rebase in place", &d);
	squib_memfile_manifest_release(&m);
	return (double)(now_ns() - t0) / 1e6;
}

static void bench_rebase(uint8_t *ram, const struct squib_memfile_source *src, const char *full,
			 const char *diff, const char *merged, const char *base, double base_bytes)
{
	double in_place[RUNS], new_file[RUNS];
	uint64_t undo = 0;
	char name[2][64];

	for (int r = 0; r < RUNS; r++) {
		make_pair(ram, src, full, diff, 100 + (uint64_t)r);
		new_file[r] = rebase_once(full, diff, merged, &undo);
		in_place[r] = rebase_once(full, diff, NULL, &undo);
	}
	snprintf(name[0], sizeof(name[0]), "rebase 1 %% diff onto %s, in place", base);
	snprintf(name[1], sizeof(name[1]), "rebase 1 %% diff onto %s, new file", base);
	report(name[0], in_place, RUNS, (double)(GiB / PAGE / 100 * PAGE));
	printf("%-44s undo log %.2f MiB\n", "", (double)undo / (double)MiB);
	report(name[1], new_file, RUNS, base_bytes);
}

/* Every page of the 1 GiB non-zero: the base a rebase into a new file copies in full. */
static void touch_all(uint8_t *ram)
{
	for (uint64_t off = 0; off < GiB; off += PAGE)
		*(uint64_t *)(ram + off) = off | 1;
}

static char *bench_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/squib-bench-%d-%s", dir, (int)getpid(), name) < 0)
		exit(1);
	return p;
}

int main(void)
{
	const char *dir = getenv("SQUIB_BENCH_DIR");
	uint64_t slots[TOUCHED / RUN_LEN];
	struct squib_memfile_manifest full_m, diff_m;
	uint8_t *ram = map_ram();
	struct squib_memfile_source_region r = {RAM_BASE, GiB, ram};
	struct squib_memfile_source src = {&r, 1, PAGE};
	char *full, *diff, *merged;
	double cp, nosync, synced;

	if (!dir || !*dir)
		dir = "/var/tmp";
	full = bench_path(dir, "full.mem");
	diff = bench_path(dir, "diff.mem");
	merged = bench_path(dir, "merged.mem");
	printf("bench_memfile: files in %s, %d runs each\n", dir, RUNS);
	touch_runs(ram, slots);
	cp = bench_memcpy(ram, slots);
	nosync = bench_full(&src, full, false, NULL);
	synced = bench_full(&src, full, true, &full_m);
	printf("%-44s %.2fx memcpy without fsync, %.2fx with (best)\n", "", nosync / cp,
	       synced / cp);
	bench_diff(ram, &src, diff, full_m.layout.id, &diff_m);
	bench_rebase(ram, &src, full, diff, merged, "sparse full", (double)TOUCHED);
	touch_all(ram);
	bench_rebase(ram, &src, full, diff, merged, "dense full", (double)GiB);
	squib_memfile_manifest_release(&full_m);
	squib_memfile_manifest_release(&diff_m);
	unlink(full);
	unlink(diff);
	unlink(merged);
	free(full);
	free(diff);
	free(merged);
	munmap(ram, GiB);
	return 0;
}
