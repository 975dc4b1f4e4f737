/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live Full snapshots of a KVM guest against stop-the-world ones, in the same
 * run: benchkvm.h's 1 GiB counter-guest VM (256 MiB of data, one vCPU
 * incrementing its counter in guest RAM all the time). For each kind, RUNS
 * Full pairs into $SQUIB_BENCH_DIR (default /var/tmp), each from a quiet disk:
 *
 *   downtime   the guest's pause (squib_save_report.ns.paused)
 *   progress   the counter's increments per second from the save's start to
 *              its durable pair, against the same guest undisturbed (measured
 *              just before each save)
 *   total      time to a durable pair, live / stop-the-world; also for a live
 *              save with the vCPU held paused ("live, held"): the mechanism's
 *              own cost without the running guest's claim on the CPUs
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <squib/save.h>

#include "benchkvm.h"

#define RUNS 3

static uint64_t counter(struct bk_vm *k)
{
	const uint64_t *c = squib_kvm_vm_gpa_to_hva(k->vm, BK_COUNTERS, 8);

	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

static double rate(struct bk_vm *k)
{
	struct timespec ts = {0, 200 * 1000 * 1000};
	uint64_t c0 = counter(k), t0 = now_ns();

	nanosleep(&ts, NULL);
	return (double)(counter(k) - c0) * 1e9 / (double)(now_ns() - t0);
}

struct fig {
	double down[RUNS], total[RUNS], progress[RUNS];
};

/* held: the vCPU kept paused through a live save (stay_paused, resumed after). */
static void one(struct bk_vm *k, const char *st, const char *mem, bool live, bool held, int r,
		struct fig *f)
{
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(st, mem);
	struct squib_save_report rep;
	struct squib_error_detail d;
	double base = rate(k);
	uint64_t c0, t0;

	unlink(st);
	unlink(mem);
	sync();
	req.live = live;
	req.stay_paused = held;
	c0 = counter(k);
	t0 = now_ns();
	bk_check(squib_save(&k->v, &req, &rep, &d), live ? "live save" : "save", &d);
	f->progress[r] = (double)(counter(k) - c0) * 1e9 / (double)(now_ns() - t0) / base;
	if (held)
		bk_check(squib_vm_resume(&k->v, &d), "resume", &d);
	if (live && !rep.live) {
		fprintf(stderr, "bench_live_kvm: the live save fell back (errno %d)\n",
			rep.live_errno);
		exit(1);
	}
	f->down[r] = bk_ms(rep.ns.paused);
	f->total[r] = bk_ms(rep.ns.total);
}

static void print(const char *name, struct fig *f)
{
	double down = bk_median(f->down, RUNS), total = bk_median(f->total, RUNS);

	printf("  %-15s guest paused median %9.2f ms | durable pair median %7.0f ms | guest "
	       "progress %5.1f %% of undisturbed\n",
	       name, down, total, bk_median(f->progress, RUNS) * 100);
}

int main(int argc, char **argv)
{
	const char *dir = getenv("SQUIB_BENCH_DIR");
	char guests[4096], st[4096], mem[4096];
	struct fig stw, live, held;
	struct bk_vm k;

	(void)argc;
	if (!squib_kvm_available(NULL)) {
		printf("bench_live_kvm: no /dev/kvm here: skipped (bench_live measures the "
		       "library VM)\n");
		return 0;
	}
	if (!dir || !*dir)
		dir = "/var/tmp";
	snprintf(st, sizeof(st), "%s/bench_live_kvm.snap", dir);
	snprintf(mem, sizeof(mem), "%s/bench_live_kvm.mem", dir);
	bk_guest_dir(argv[0], guests, sizeof(guests));
	bk_vm_new(&k, true, true);
	bk_boot_counter(&k, guests);
	for (int r = 0; r < RUNS; r++) {
		one(&k, st, mem, false, false, r, &stw);
		one(&k, st, mem, true, false, r, &live);
		one(&k, st, mem, true, true, r, &held);
	}
	bk_vm_free(&k);
	unlink(st);
	unlink(mem);
	printf("bench_live_kvm: Full of a 1 GiB KVM counter guest (256 MiB of data), %d runs "
	       "each:\n",
	       RUNS);
	print("stop-the-world", &stw);
	print("live", &live);
	print("live, held", &held);
	printf("  ratios: downtime live/stw %.4f | durable pair live/stw %.2f (goal <= 1.3), with "
	       "the vCPU held paused %.2f\n",
	       bk_median(live.down, RUNS) / bk_median(stw.down, RUNS),
	       bk_median(live.total, RUNS) / bk_median(stw.total, RUNS),
	       bk_median(held.total, RUNS) / bk_median(stw.total, RUNS));
	return 0;
}
