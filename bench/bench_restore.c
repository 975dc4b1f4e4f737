/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot restore and create latency on whatever /dev/kvm this runs:
 *
 * 1. a 1-vCPU VM with 1 GiB of BK_RAM, 256 MiB of it filled with non-zero data
 *    by the VMM (256 runs of 1 MiB, 3 MiB apart, from 16 MiB), running the
 *    counter guest; a Full pair saved with squib_save;
 * 2. create: Full and Diff saves of the running guest (fsync included), the
 *    Diff after the VMM wrote ~1 % of the pages (the guest its counter page);
 * 3. restore: squib_load with stay_paused into a fresh VM (VM creation not
 *    counted) per memory backend, up to where the first KVM_RUN would be
 *    issued, with the load report's phases; and the state decode alone.
 *
 * Median of RUNS. Files go to $SQUIB_BENCH_DIR, else /var/tmp, and are
 * removed. Guest binaries come from $SQUIB_GUESTS, else from tests/guests
 * next to this program (the build directory). The page cache is warm: the
 * pair was just written.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/kvm.h>
#include <squib/load.h>
#include <squib/save.h>
#include <squib/track.h>

#include "benchkvm.h"

#define RUNS  5
#define SAVES 3

static char guest_dir[4096];
static char dir[4096];

/* The VMM rewrites ~1 % of all pages, spread over the BK_RAM, and reports them. */
static uint64_t dirty_one_percent(struct bk_vm *k, uint8_t byte)
{
	struct squib_tracker *t = squib_kvm_adapter_vmm_tracker(k->adapter);
	uint8_t buf[BK_PAGE];
	struct squib_error_detail d;
	uint64_t pages = 0;

	memset(buf, byte, sizeof(buf));
	for (uint64_t gpa = 1ull << 20; gpa < BK_RAM; gpa += 100 * BK_PAGE, pages++) {
		bk_check(squib_kvm_vm_write(k->vm, gpa, buf, sizeof(buf), &d), "VMM write", &d);
		if (t)
			squib_tracker_mark_write(t, gpa, BK_PAGE);
	}
	return pages;
}

static void print_save(const char *what, const struct squib_save_report *r)
{
	printf("  %-5s save: total %8.2f ms | pause %.3f capture %.3f memory-write %.2f "
	       "state-write %.3f sync %.2f publish %.3f ms | guest paused %.2f ms | "
	       "%llu pages, %.1f MiB data\n",
	       what, bk_ms(r->ns.total), bk_ms(r->ns.pause), bk_ms(r->ns.capture),
	       bk_ms(r->ns.memory_write), bk_ms(r->ns.state_write), bk_ms(r->ns.sync),
	       bk_ms(r->ns.publish), bk_ms(r->ns.paused), (unsigned long long)r->pages_written,
	       (double)r->memory_bytes_written / (1024.0 * 1024.0));
}

static void path_in(char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", dir, name);
}

static const char *backend_name(enum squib_memory_backend b)
{
	return b == SQUIB_BACKEND_COPY ? "COPY" : b == SQUIB_BACKEND_FILE ? "FILE" : "LAZY";
}

int main(int argc, char **argv)
{
	static const enum squib_memory_backend backends[] = {SQUIB_BACKEND_COPY, SQUIB_BACKEND_FILE,
							     SQUIB_BACKEND_LAZY};
	const char *base = getenv("SQUIB_BENCH_DIR");
	char fs[4200], fm[4200], ds[4200], dm[4200];
	struct squib_save_report rep;
	struct squib_error_detail d;
	double file_ms = 0;
	struct bk_vm k;

	(void)argc;
	if (!squib_kvm_available(NULL)) {
		printf("bench_restore: /dev/kvm does not exist; nothing measured\n");
		return 0;
	}
	bk_guest_dir(argv[0], guest_dir, sizeof(guest_dir));
	snprintf(dir, sizeof(dir), "%s/squib-rbench-XXXXXX", base ? base : "/var/tmp");
	if (!mkdtemp(dir)) {
		fprintf(stderr, "bench_restore: mkdtemp %s: %s\n", dir, strerror(errno));
		return 1;
	}
	path_in(fs, sizeof(fs), "full.snap");
	path_in(fm, sizeof(fm), "full.mem");
	path_in(ds, sizeof(ds), "diff.snap");
	path_in(dm, sizeof(dm), "diff.mem");

	/* ---- the source VM: 1 GiB, 256 MiB of data, the counter guest running */
	bk_vm_new(&k, true, true);
	bk_boot_counter(&k, guest_dir);
	printf("bench_restore: 1 vCPU, 1 GiB RAM, %u MiB non-zero (VMM-filled), counter guest "
	       "running; files in %s (page cache warm)\n",
	       BK_FILL_RUNS, dir);

	/* ---- create: Full, then Diff after ~1 % of the pages were dirtied */
	printf("snapshot create (squib_save of the running guest, fsync included; %d rounds):\n",
	       SAVES);
	{
		double full_t[SAVES], diff_t[SAVES], full_p[SAVES], diff_p[SAVES];
		uint64_t dirtied = 0;

		for (int r = 0; r < SAVES; r++) {
			struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(fs, fm);

			bk_check(squib_save(&k.v, &req, &rep, &d), "full save", &d);
			print_save("Full", &rep);
			full_t[r] = bk_ms(rep.ns.total);
			full_p[r] = bk_ms(rep.ns.paused);
			dirtied = dirty_one_percent(&k, (uint8_t)(0x40 + r));
			req = SQUIB_SAVE_REQUEST_INIT(ds, dm);
			req.kind = SQUIB_SNAPSHOT_DIFF;
			req.parent_state_path = fs;
			bk_check(squib_save(&k.v, &req, &rep, &d), "diff save", &d);
			print_save("Diff", &rep);
			diff_t[r] = bk_ms(rep.ns.total);
			diff_p[r] = bk_ms(rep.ns.paused);
		}
		printf("  median Full: total %.2f ms, guest paused %.2f ms\n",
		       bk_median(full_t, SAVES), bk_median(full_p, SAVES));
		printf("  median Diff: total %.2f ms, guest paused %.2f ms (VMM dirtied %llu of "
		       "%llu pages, + the guest's counter page)\n",
		       bk_median(diff_t, SAVES), bk_median(diff_p, SAVES),
		       (unsigned long long)dirtied, (unsigned long long)(BK_RAM / BK_PAGE));
	}
	/* The Full pair the restores load: saved last, left paused. */
	{
		struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(fs, fm);

		req.stay_paused = true;
		bk_check(squib_save(&k.v, &req, &rep, &d), "full save", &d);
	}
	bk_vm_free(&k);

	/* ---- restore */
	{
		double t[RUNS];

		for (int r = 0; r < RUNS; r++) {
			struct squib_microvm_state st;
			uint64_t t0 = now_ns();

			bk_check(squib_load_state_only(fs, SQUIB_ARCH_X86_64, &st, NULL, &d),
				 "state only", &d);
			t[r] = bk_ms(now_ns() - t0);
			squib_state_free(&st);
		}
		printf("restore (squib_load, stay paused, into a fresh 1-vCPU VM; VM creation not "
		       "counted; median of %d):\n",
		       RUNS);
		printf("  state decode only (squib_load_state_only): %.3f ms (state file %llu "
		       "bytes)\n",
		       bk_median(t, RUNS), (unsigned long long)rep.state_file_size);
	}
	for (size_t bi = 0; bi < sizeof(backends) / sizeof(backends[0]); bi++) {
		double tot[RUNS], wall[RUNS], rd[RUNS], mem[RUNS], rs[RUNS], rec[RUNS];
		int rc = 0;

		for (int r = 0; r < RUNS; r++) {
			struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(fs, fm);
			struct squib_load_result res;
			uint64_t t0;

			memset(&res, 0, sizeof(res));
			req.backend = backends[bi];
			req.stay_paused = true;
			bk_vm_new(&k, false, false);
			t0 = now_ns();
			rc = squib_load(&k.v, &req, &res, &d);
			wall[r] = bk_ms(now_ns() - t0);
			if (rc) {
				bk_vm_free(&k);
				squib_load_result_free(&res);
				break;
			}
			tot[r] = bk_ms(res.ns.total);
			rec[r] = bk_ms(res.ns.recovery);
			rd[r] = bk_ms(res.ns.state_read);
			mem[r] = bk_ms(res.ns.memory);
			rs[r] = bk_ms(res.ns.restore);
			bk_vm_free(&k);
			squib_load_result_free(&res);
		}
		if (rc) {
			printf("  %s: not measured: squib_load failed: %s (%s)\n",
			       backend_name(backends[bi]), squib_error_name(rc), d.msg);
			continue;
		}
		printf("  %s: %8.3f ms wall (report total %.3f) | recovery %.3f, state read+decode "
		       "%.3f, memory setup %.3f, set_memory+irqchip/vCPU/device restore %.3f ms\n",
		       backend_name(backends[bi]), bk_median(wall, RUNS), bk_median(tot, RUNS),
		       bk_median(rec, RUNS), bk_median(rd, RUNS), bk_median(mem, RUNS),
		       bk_median(rs, RUNS));
		if (backends[bi] == SQUIB_BACKEND_FILE)
			file_ms = bk_median(wall, RUNS);
	}
	if (file_ms > 0)
		printf(
		    "  FILE restore vs goals: %.2fx the 1 ms goal; %.2fx Firecracker's published "
		    "< 8 ms x86 restore target (reference only: other host, other VM)\n",
		    file_ms / 1.0, file_ms / 8.0);

	unlink(fs);
	unlink(fm);
	unlink(ds);
	unlink(dm);
	if (rmdir(dir))
		fprintf(stderr, "bench_restore: rmdir %s: %s\n", dir, strerror(errno));
	return 0;
}
