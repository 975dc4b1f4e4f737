/* SPDX-License-Identifier: Apache-2.0 */
/*
 * COPY load of a chain: a 1 GiB Full base (every page data) and 3 Diffs over
 * it, loaded with squib_guest_memory_open(COPY) RUNS times (page cache warm).
 * Two shapes of diff: 25 % of the 4 KiB pages each, scattered (the worst
 * case for the owner map: a run every page or two), and 10 % of the 2 MiB
 * blocks each (a guest touching a few areas). Printed per shape: wall and
 * CPU time (best, median), the bytes read (/proc/self/io rchar), and the
 * bytes a load that copies every layer over the last would read.
 *
 * Files go to $SQUIB_BENCH_DIR (default /var/tmp) and are deleted.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <squib/guest_memory.h>
#include <squib/memfile.h>

#include "benchutil.h"

#define GiB	 (1ull << 30)
#define PAGE	 4096ull
#define RAM_BASE 0x40000000ull
#define DIFFS	 3
#define RUNS	 5

static void die(const char *what, const struct squib_error_detail *d)
{
	fprintf(stderr, "bench_chain: %s: %s\n", what, d ? d->msg : "failed");
	exit(1);
}

static uint64_t rchar(void)
{
	FILE *f = fopen("/proc/self/io", "r");
	char line[128];
	uint64_t v = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "rchar: %" SCNu64, &v) == 1)
			break;
	if (f)
		fclose(f);
	return v;
}

static double cpu_ms(void)
{
	struct rusage u;

	getrusage(RUSAGE_SELF, &u);
	return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e3 +
	       (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e3;
}

/* Diff i of a shape: which pages it dirties (and writes). */
static bool dirty(bool scattered, int i, uint64_t page)
{
	uint64_t h = (scattered ? page : page / 512) * 2654435761u;

	return scattered ? (h >> (4 + i)) % 4 == 0 : (h >> (4 + i)) % 10 == 0;
}

static void save_diff(uint8_t *ram, const struct squib_memfile_source *src, const char *path,
		      bool scattered, int i, struct squib_memfile_manifest *m)
{
	struct squib_dirty_bitmap *bm = NULL;
	const uint8_t *parent = m->layout.id;
	struct squib_memfile_manifest next;
	struct squib_error_detail d;

	if (squib_dirty_bitmap_new(RAM_BASE, GiB, PAGE, &bm, &d))
		die("bitmap", &d);
	for (uint64_t p = 0; p < GiB / PAGE; p++)
		if (dirty(scattered, i, p)) {
			squib_dirty_bitmap_set_by_index(bm, p);
			ram[p * PAGE] ^= (uint8_t)(i + 1);
		}
	if (squib_memfile_save_diff(path, src, parent,
				    (const struct squib_dirty_bitmap *const *)&bm, 1, NULL, &next,
				    &d))
		die("save_diff", &d);
	squib_dirty_bitmap_free(bm);
	squib_memfile_manifest_release(m);
	*m = next;
}

/* The chain in paths[0..DIFFS]; returns the bytes every layer holds, summed. */
static uint64_t make_chain(char paths[][512], bool scattered)
{
	uint8_t *ram = mmap(NULL, GiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct squib_memfile_source_region r = {RAM_BASE, GiB, ram};
	struct squib_memfile_source src = {&r, 1, PAGE};
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	uint64_t all;

	if (ram == MAP_FAILED)
		die("mmap", NULL);
	for (uint64_t p = 0; p < GiB / PAGE; p++)
		ram[p * PAGE] = (uint8_t)(p % 251 + 1);
	if (squib_memfile_save_full(paths[0], &src, NULL, &m, &d))
		die("save_full", &d);
	all = m.layout.present_pages * PAGE;
	for (int i = 1; i <= DIFFS; i++) {
		save_diff(ram, &src, paths[i], scattered, i, &m);
		all += m.layout.present_pages * PAGE;
	}
	squib_memfile_manifest_release(&m);
	munmap(ram, GiB);
	return all;
}

static void load_runs(char paths[][512], double *wall, double *cpu, uint64_t *bytes,
		      uint64_t *pages)
{
	const char *chain[DIFFS] = {paths[0], paths[1], paths[2]};

	for (int r = 0; r < RUNS; r++) {
		struct squib_guest_memory *g = NULL;
		struct squib_guest_memory_stats st;
		struct squib_error_detail d;
		uint64_t b0 = rchar(), t0 = now_ns();
		double c0 = cpu_ms();

		if (squib_guest_memory_open(paths[DIFFS], chain, DIFFS, NULL, SQUIB_BACKEND_COPY,
					    &g, &d))
			die("load", &d);
		wall[r] = (double)(now_ns() - t0) / 1e6;
		cpu[r] = cpu_ms() - c0;
		*bytes = rchar() - b0;
		squib_guest_memory_stats(g, &st);
		*pages = st.pages_read;
		squib_guest_memory_free(g);
	}
	qsort(wall, RUNS, sizeof(*wall), cmp_double);
	qsort(cpu, RUNS, sizeof(*cpu), cmp_double);
}

static void shape(const char *dir, bool scattered)
{
	char paths[DIFFS + 1][512];
	double wall[RUNS], cpu[RUNS];
	uint64_t bytes = 0, pages = 0, every;

	for (int i = 0; i <= DIFFS; i++)
		snprintf(paths[i], sizeof(paths[i]), "%s/bench_chain.%d.%ld.mem", dir, i,
			 (long)getpid());
	every = make_chain(paths, scattered);
	load_runs(paths, wall, cpu, &bytes, &pages);
	printf("COPY 1 GiB + %d diffs (%s): wall best %.1f median %.1f ms, CPU best %.1f median "
	       "%.1f ms\n",
	       DIFFS, scattered ? "25 % of 4 KiB pages each" : "10 % of 2 MiB blocks each", wall[0],
	       wall[RUNS / 2], cpu[0], cpu[RUNS / 2]);
	printf("    read %.1f MiB (%" PRIu64 " pages, each once); every layer over the last: "
	       "%.1f MiB\n",
	       (double)bytes / (1 << 20), pages, (double)every / (1 << 20));
	for (int i = 0; i <= DIFFS; i++)
		unlink(paths[i]);
}

int main(void)
{
	const char *dir = getenv("SQUIB_BENCH_DIR") ? getenv("SQUIB_BENCH_DIR") : "/var/tmp";

	shape(dir, true);
	shape(dir, false);
	return 0;
}
