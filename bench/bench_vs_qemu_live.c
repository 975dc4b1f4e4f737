/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Our half of bench/vs-qemu.sh's background-snapshot comparison. Run with no
 * arguments (as scripts/run-bench.sh runs every bench_* binary) it only
 * prints a note.
 *
 *   bench_vs_qemu_live RAMFILE OUTDIR RUNS
 *       For each of stop-the-world and live: RUNS squib_save() Full pairs
 *       (after one untimed warm-up) of a VM whose 1 GiB of anonymous RAM holds
 *       RAMFILE's non-zero pages (copied in outside the timing, as in
 *       bench_vs_qemu's anon mode) while a writer thread keeps storing into its
 *       first 64 KiB (tests/support/writervm.c): the guest runs, as QEMU's does
 *       in its background snapshot. Each run starts from a quiet disk (the
 *       previous pair deleted, sync()). Prints each run, then
 *       "RESULT vm MODE TOTAL_MS DOWNTIME_MS STATE" with the medians: total =
 *       until the pair is durable (squib_save's own figure), downtime = the
 *       guest's pause.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/save.h>

#include "../tests/support/writervm.c"
#include "benchutil.h"

#define RAM_SIZE (1ull << 30)
#define PAGE	 4096ull
#define MAX_RUNS 99

static void fail(const char *what)
{
	perror(what);
	exit(1);
}

/* RAMFILE's non-zero pages in fresh anonymous memory. */
static uint8_t *load(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	const uint8_t *file;
	uint8_t *ram;

	if (fd < 0)
		fail(path);
	file = mmap(NULL, RAM_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (file == MAP_FAILED || ram == MAP_FAILED)
		fail("mmap");
	for (uint64_t off = 0; off < RAM_SIZE; off += PAGE) {
		uint64_t acc = 0;

		for (uint64_t i = 0; i < PAGE; i += 8) {
			uint64_t v;

			memcpy(&v, file + off + i, 8);
			acc |= v;
		}
		if (acc)
			memcpy(ram + off, file + off, PAGE);
	}
	munmap((void *)file, RAM_SIZE);
	return ram;
}

static void one(const char *ramfile, const char *st, const char *mem, bool live, double *total,
		double *down)
{
	struct writervm_config c = {
	    .ram = RAM_SIZE, .host = load(ramfile), .span = 64 * 1024, .writers = 1};
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(st, mem);
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct writervm *vm;
	struct squib_vm v;

	if (writervm_new(&c, &vm))
		fail("writervm");
	v = writervm_vm(vm);
	unlink(st);
	unlink(mem);
	sync();
	req.live = live;
	if (squib_save(&v, &req, &rep, &d)) {
		fprintf(stderr, "bench_vs_qemu_live: save: %s (%s)\n", squib_error_name(d.code),
			d.msg);
		exit(1);
	}
	if (live && !rep.live) {
		fprintf(stderr, "bench_vs_qemu_live: live save fell back (errno %d)\n",
			rep.live_errno);
		exit(1);
	}
	*total = (double)rep.ns.total / 1e6;
	*down = (double)rep.ns.paused / 1e6;
	writervm_free(vm);
	munmap(c.host, RAM_SIZE);
}

static void mode(const char *ramfile, const char *dir, int runs, bool live)
{
	const char *name = live ? "live" : "stw";
	double total[MAX_RUNS], down[MAX_RUNS], t, dn;
	char st[4096], mem[4096];

	snprintf(st, sizeof(st), "%s/ours-vm-%s.snap", dir, name);
	snprintf(mem, sizeof(mem), "%s/ours-vm-%s.mem", dir, name);
	one(ramfile, st, mem, live, &t, &dn);
	printf("ours vm-%-5s warm-up: %9.2f ms, guest paused %8.2f ms (not counted)\n", name, t,
	       dn);
	for (int i = 0; i < runs; i++) {
		one(ramfile, st, mem, live, &total[i], &down[i]);
		printf("ours vm-%-5s run %d:   %9.2f ms, guest paused %8.2f ms\n", name, i + 1,
		       total[i], down[i]);
	}
	qsort(total, (size_t)runs, sizeof(double), cmp_double);
	qsort(down, (size_t)runs, sizeof(double), cmp_double);
	printf("RESULT vm %s %.2f %.3f %s\n", name, total[(runs - 1) / 2], down[(runs - 1) / 2],
	       st);
}

int main(int argc, char **argv)
{
	int runs;

	if (argc == 1) {
		printf("bench_vs_qemu_live: helper of bench/vs-qemu.sh (QEMU's background "
		       "snapshot against our live save); nothing to do without arguments\n");
		return 0;
	}
	if (argc != 4 || (runs = atoi(argv[3])) < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "usage: bench_vs_qemu_live RAMFILE OUTDIR RUNS (1..%d)\n",
			MAX_RUNS);
		return 2;
	}
	mode(argv[1], argv[2], runs, false);
	mode(argv[1], argv[2], runs, true);
	return 0;
}
