/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot restore and create latency on whatever /dev/kvm this runs:
 *
 * 1. a 1-vCPU VM with 1 GiB of RAM, 256 MiB of it filled with non-zero data
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

#include "benchutil.h"

#define RUNS	  5
#define SAVES	  3
#define RAM	  (1ull << 30)
#define PAGE	  4096ull
#define TABLES	  0x1000ull
#define CODE	  0x10000ull
#define COUNTERS  0x20000ull
#define STACKS	  0x40000ull
#define FILL_BASE (16ull << 20)
#define FILL_RUN  (1ull << 20)
#define FILL_STEP (3ull << 20)
#define FILL_RUNS 256u /* 256 MiB */
#define PORT	  0x3f0
#define WAIT_MS	  10000u

static char guest_dir[4096];
static char dir[4096];

struct vmk {
	struct squib_kvm_vm *vm;
	struct squib_kvm_counter *counter;
	struct squib_kvm_adapter *adapter;
	struct squib_vm v;
};

static void check(int rc, const char *what, const struct squib_error_detail *d)
{
	if (rc) {
		fprintf(stderr, "bench_restore: %s: %s (%s)\n", what, squib_error_name(rc), d->msg);
		exit(1);
	}
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static double ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static void vmk_new(struct vmk *k, bool with_ram, bool track)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_adapter_config acfg = {track, "/squib/bench/counter.bin", "bench"};
	struct squib_error_detail d;

	memset(k, 0, sizeof(*k));
	check(squib_kvm_vm_new(&cfg, &k->vm, &d), "vm_new", &d);
	if (with_ram)
		check(squib_kvm_vm_add_ram(k->vm, 0, RAM, NULL, NULL, &d), "add_ram", &d);
	check(squib_kvm_vm_add_counter(k->vm, PORT, &k->counter, &d), "add_counter", &d);
	check(squib_kvm_adapter_new(k->vm, &acfg, &k->adapter, &d), "adapter", &d);
	k->v = squib_kvm_adapter_vm(k->adapter);
}

static void vmk_free(struct vmk *k)
{
	squib_kvm_adapter_free(k->adapter);
	squib_kvm_vm_free(k->vm);
	memset(k, 0, sizeof(*k));
}

static void write_guest(struct vmk *k)
{
	char path[4200];
	static uint8_t buf[65536];
	struct squib_error_detail d;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/counter.bin", guest_dir);
	if (!(f = fopen(path, "rb"))) {
		fprintf(stderr, "bench_restore: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	check(squib_kvm_vm_write(k->vm, CODE, buf, n, &d), "write guest", &d);
}

/* 256 MiB of non-zero data in 1 MiB runs, clear of the tables, code and stacks. */
static void fill(struct vmk *k)
{
	for (uint32_t i = 0; i < FILL_RUNS; i++) {
		uint64_t gpa = FILL_BASE + i * FILL_STEP;
		uint8_t *p = squib_kvm_vm_gpa_to_hva(k->vm, gpa, FILL_RUN);

		if (!p) {
			fprintf(stderr, "bench_restore: gpa 0x%llx not mapped\n",
				(unsigned long long)gpa);
			exit(1);
		}
		for (uint64_t off = 0; off < FILL_RUN; off += 8) {
			uint64_t v = (gpa + off) * 0x9E3779B97F4A7C15ull | 1;

			memcpy(p + off, &v, 8);
		}
	}
}

/* The VMM rewrites ~1 % of all pages, spread over the RAM, and reports them. */
static uint64_t dirty_one_percent(struct vmk *k, uint8_t byte)
{
	struct squib_tracker *t = squib_kvm_adapter_vmm_tracker(k->adapter);
	uint8_t buf[PAGE];
	struct squib_error_detail d;
	uint64_t pages = 0;

	memset(buf, byte, sizeof(buf));
	for (uint64_t gpa = 1ull << 20; gpa < RAM; gpa += 100 * PAGE, pages++) {
		check(squib_kvm_vm_write(k->vm, gpa, buf, sizeof(buf), &d), "VMM write", &d);
		if (t)
			squib_tracker_mark_write(t, gpa, PAGE);
	}
	return pages;
}

static void print_save(const char *what, const struct squib_save_report *r)
{
	printf("  %-5s save: total %8.2f ms | pause %.3f capture %.3f memory-write %.2f "
	       "state-write %.3f sync %.2f publish %.3f ms | guest paused %.2f ms | "
	       "%llu pages, %.1f MiB data\n",
	       what, ms(r->ns.total), ms(r->ns.pause), ms(r->ns.capture), ms(r->ns.memory_write),
	       ms(r->ns.state_write), ms(r->ns.sync), ms(r->ns.publish), ms(r->ns.paused),
	       (unsigned long long)r->pages_written,
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
	const char *env = getenv("SQUIB_GUESTS"), *base = getenv("SQUIB_BENCH_DIR");
	char self[4096], fs[4200], fm[4200], ds[4200], dm[4200];
	struct squib_save_report rep;
	struct squib_error_detail d;
	double file_ms = 0;
	struct vmk k;

	(void)argc;
	if (!squib_kvm_available(NULL)) {
		printf("bench_restore: /dev/kvm does not exist; nothing measured\n");
		return 0;
	}
	snprintf(self, sizeof(self), "%s", argv[0]);
	if (env)
		snprintf(guest_dir, sizeof(guest_dir), "%s", env);
	else
		snprintf(guest_dir, sizeof(guest_dir), "%s/tests/guests", dirname(self));
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
	{
		struct squib_kvm_boot b;

		vmk_new(&k, true, true);
		fill(&k);
		write_guest(&k);
		memset(&b, 0, sizeof(b));
		b.tables_gpa = TABLES;
		b.map_size = RAM;
		b.entry[0] = (struct squib_kvm_entry){CODE, STACKS + PAGE, 0, COUNTERS, PORT};
		check(squib_kvm_vm_boot_long_mode(k.vm, &b, &d), "boot", &d);
		check(squib_kvm_vm_start(k.vm, &d), "start", &d);
		check(squib_kvm_counter_wait(k.counter, 0, 1, WAIT_MS, NULL, &d), "counter", &d);
	}
	printf("bench_restore: 1 vCPU, 1 GiB RAM, %u MiB non-zero (VMM-filled), counter guest "
	       "running; files in %s (page cache warm)\n",
	       FILL_RUNS, dir);

	/* ---- create: Full, then Diff after ~1 % of the pages were dirtied */
	printf("snapshot create (squib_save of the running guest, fsync included; %d rounds):\n",
	       SAVES);
	{
		double full_t[SAVES], diff_t[SAVES], full_p[SAVES], diff_p[SAVES];
		uint64_t dirtied = 0;

		for (int r = 0; r < SAVES; r++) {
			struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(fs, fm);

			check(squib_save(&k.v, &req, &rep, &d), "full save", &d);
			print_save("Full", &rep);
			full_t[r] = ms(rep.ns.total);
			full_p[r] = ms(rep.ns.paused);
			dirtied = dirty_one_percent(&k, (uint8_t)(0x40 + r));
			req = SQUIB_SAVE_REQUEST_INIT(ds, dm);
			req.kind = SQUIB_SNAPSHOT_DIFF;
			req.parent_state_path = fs;
			check(squib_save(&k.v, &req, &rep, &d), "diff save", &d);
			print_save("Diff", &rep);
			diff_t[r] = ms(rep.ns.total);
			diff_p[r] = ms(rep.ns.paused);
		}
		printf("  median Full: total %.2f ms, guest paused %.2f ms\n",
		       median(full_t, SAVES), median(full_p, SAVES));
		printf("  median Diff: total %.2f ms, guest paused %.2f ms (VMM dirtied %llu of "
		       "%llu pages, + the guest's counter page)\n",
		       median(diff_t, SAVES), median(diff_p, SAVES), (unsigned long long)dirtied,
		       (unsigned long long)(RAM / PAGE));
	}
	/* The Full pair the restores load: saved last, left paused. */
	{
		struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(fs, fm);

		req.stay_paused = true;
		check(squib_save(&k.v, &req, &rep, &d), "full save", &d);
	}
	vmk_free(&k);

	/* ---- restore */
	{
		double t[RUNS];

		for (int r = 0; r < RUNS; r++) {
			struct squib_microvm_state st;
			uint64_t t0 = now_ns();

			check(squib_load_state_only(fs, SQUIB_ARCH_X86_64, &st, NULL, &d),
			      "state only", &d);
			t[r] = ms(now_ns() - t0);
			squib_state_free(&st);
		}
		printf("restore (squib_load, stay paused, into a fresh 1-vCPU VM; VM creation not "
		       "counted; median of %d):\n",
		       RUNS);
		printf("  state decode only (squib_load_state_only): %.3f ms (state file %llu "
		       "bytes)\n",
		       median(t, RUNS), (unsigned long long)rep.state_file_size);
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
			vmk_new(&k, false, false);
			t0 = now_ns();
			rc = squib_load(&k.v, &req, &res, &d);
			wall[r] = ms(now_ns() - t0);
			if (rc) {
				vmk_free(&k);
				squib_load_result_free(&res);
				break;
			}
			tot[r] = ms(res.ns.total);
			rec[r] = ms(res.ns.recovery);
			rd[r] = ms(res.ns.state_read);
			mem[r] = ms(res.ns.memory);
			rs[r] = ms(res.ns.restore);
			vmk_free(&k);
			squib_load_result_free(&res);
		}
		if (rc) {
			printf("  %s: not measured: squib_load failed: %s (%s)\n",
			       backend_name(backends[bi]), squib_error_name(rc), d.msg);
			continue;
		}
		printf("  %s: %8.3f ms wall (report total %.3f) | recovery %.3f, state read+decode "
		       "%.3f, memory setup %.3f, set_memory+irqchip/vCPU/device restore %.3f ms\n",
		       backend_name(backends[bi]), median(wall, RUNS), median(tot, RUNS),
		       median(rec, RUNS), median(rd, RUNS), median(mem, RUNS), median(rs, RUNS));
		if (backends[bi] == SQUIB_BACKEND_FILE)
			file_ms = median(wall, RUNS);
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
