/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live Full snapshots against stop-the-world ones, in the same run, on the
 * library-only writer VM (tests/support/writervm.c: a writer thread keeps
 * storing 8-byte counters at random places of the first 256 MiB of RAM):
 *
 *   downtime   the guest's pause (squib_save_report.ns.paused), at 256 MiB,
 *              1 GiB and 4 GiB of RAM with 256 MiB written (goal for live:
 *              <= 5 ms, whatever the RAM size)
 *   progress   the writer's stores per second from the save's start to its
 *              durable pair, against the same writer undisturbed (measured
 *              just before)
 *   total      time to a durable pair, live / stop-the-world (goal <= 1.3); also
 *              for a live save whose writer is held paused ("live, held":
 *              stay_paused, resumed afterwards), which is the mechanism's own
 *              cost without the running guest's claim on the machine's CPUs
 *
 * Files go to $SQUIB_BENCH_DIR (default /var/tmp), each run a new file after
 * the previous one is deleted and the disk is idle (sync). RUNS runs per
 * figure; best and median.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <squib/save.h>

#include "../tests/support/writervm.c"
#include "benchutil.h"

#define MiB	(1ull << 20)
#define GiB	(1ull << 30)
#define WRITTEN (256 * MiB)
#define RUNS	3

struct figures {
	double paused_ms[RUNS], total_ms[RUNS], progress[RUNS];
	uint64_t on_write;
	bool live;
};

static void die(const char *what, const struct squib_error_detail *d)
{
	fprintf(stderr, "bench_live: %s: %s (%s)\n", what, squib_error_name(d->code), d->msg);
	exit(1);
}

/* Stores per second over about 200 ms, nobody saving. */
static double undisturbed_rate(struct writervm *vm)
{
	uint64_t s0 = writervm_stores(vm), t0 = now_ns(), s1, t1;
	struct timespec ts = {0, 200 * 1000 * 1000};

	nanosleep(&ts, NULL);
	s1 = writervm_stores(vm);
	t1 = now_ns();
	return (double)(s1 - s0) * 1e9 / (double)(t1 - t0);
}

/* held: a live save with the writer kept paused (stay_paused, resumed after): the
 * mechanism's own cost, without the running guest's claim on the CPUs. */
static void one_run(struct writervm *vm, const char *st, const char *mem, bool live, bool held,
		    int r, struct figures *f)
{
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(st, mem);
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct squib_vm v = writervm_vm(vm);
	double base = undisturbed_rate(vm);
	uint64_t s0, t0;

	unlink(mem);
	unlink(st);
	sync();
	req.live = live;
	req.stay_paused = held;
	s0 = writervm_stores(vm);
	t0 = now_ns();
	if (squib_save(&v, &req, &rep, &d))
		die(live ? "live save" : "save", &d);
	f->progress[r] = (double)(writervm_stores(vm) - s0) * 1e9 / (double)(now_ns() - t0) / base;
	if (held && squib_vm_resume(&v, &d))
		die("resume", &d);
	f->paused_ms[r] = (double)rep.ns.paused / 1e6;
	f->total_ms[r] = (double)rep.ns.total / 1e6;
	f->on_write += rep.live_pages_on_write;
	f->live = rep.live;
}

static double median(double *v)
{
	qsort(v, RUNS, sizeof(v[0]), cmp_double);
	return v[RUNS / 2];
}

static void print(const char *mode, struct figures *f)
{
	double p = median(f->paused_ms), t = median(f->total_ms), g = median(f->progress);

	printf("  %-15s guest paused best %8.2f ms median %8.2f ms | durable pair best %7.0f "
	       "ms median %7.0f ms | guest progress %5.1f %% of undisturbed",
	       mode, f->paused_ms[0], p, f->total_ms[0], t, g * 100);
	if (f->on_write)
		printf(" | %" PRIu64 " pages copied on write per run", f->on_write / RUNS);
	printf("\n");
}

static void ram_size(const char *dir, uint64_t ram)
{
	struct writervm_config c = {
	    .ram = ram, .span = WRITTEN, .fill = WRITTEN, .writers = 1, .tracker = true};
	char st[4096], mem[4096];
	struct figures stw = {0}, live = {0}, held = {0};
	struct writervm *vm;

	snprintf(st, sizeof(st), "%s/bench_live.snap", dir);
	snprintf(mem, sizeof(mem), "%s/bench_live.mem", dir);
	if (writervm_new(&c, &vm)) {
		fprintf(stderr, "bench_live: cannot map %" PRIu64 " MiB\n", (uint64_t)(ram / MiB));
		exit(1);
	}
	for (int r = 0; r < RUNS; r++) {
		one_run(vm, st, mem, false, false, r, &stw);
		one_run(vm, st, mem, true, false, r, &live);
		one_run(vm, st, mem, true, true, r, &held);
	}
	writervm_free(vm);
	unlink(st);
	unlink(mem);
	printf("Full of %" PRIu64 " MiB RAM, %" PRIu64 " MiB written, a writer thread running:\n",
	       (uint64_t)(ram / MiB), (uint64_t)(WRITTEN / MiB));
	print("stop-the-world", &stw);
	print(live.live ? "live" : "live (FELL BACK)", &live);
	print("live, held", &held);
	printf("  ratios: downtime live/stw %.4f (live %.2f ms, goal <= 5 ms) | durable pair "
	       "live/stw %.2f (goal <= 1.3), with the writer held paused %.2f\n",
	       median(live.paused_ms) / median(stw.paused_ms), median(live.paused_ms),
	       median(live.total_ms) / median(stw.total_ms),
	       median(held.total_ms) / median(stw.total_ms));
}

int main(int argc, char **argv)
{
	const char *dir = getenv("SQUIB_BENCH_DIR");
	static const uint64_t sizes[] = {256 * MiB, 1 * GiB, 4 * GiB};
	size_t n = argc > 1 ? (size_t)atoi(argv[1]) : 3;

	if (!dir || !*dir)
		dir = "/var/tmp";
	printf("bench_live: live Full snapshots vs stop-the-world (%d runs each, files in %s)\n",
	       RUNS, dir);
	for (size_t i = 0; i < n && i < 3; i++)
		ram_size(dir, sizes[i]);
	return 0;
}
