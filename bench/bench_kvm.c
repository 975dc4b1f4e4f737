/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the KVM runner's snapshot steps cost, on whatever /dev/kvm this runs:
 *
 * 1. creating a 2-vCPU VM with irqchip and 128 MiB of RAM;
 * 2. pausing 2 running vCPUs (counter guest), and resuming;
 * 3. capturing their x86 state, encoding and decoding it (bytes too);
 * 4. restoring it into a fresh VM (VM creation not counted);
 * 5. the dirty log: starting the tracker on a 1 GiB slot (INITIALLY_SET:
 *    one clear of every page), harvesting it with nothing written, and
 *    harvesting 64 MiB after the page-writer guest wrote ~10,000 of its pages.
 *
 * Median of RUNS. Guest binaries come from $SQUIB_GUESTS, else from
 * tests/guests next to this program (the build directory).
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <squib/envelope.h>
#include <squib/kvm.h>
#include <squib/track.h>

#define RUNS	     21
#define RAM	     (128ull << 20)
#define PAGE	     4096ull
#define CODE	     0x10000ull
#define COUNTERS     0x20000ull
#define PARAMS	     0x30000ull
#define TARGET	     (16ull << 20)
#define TARGET_PAGES 16384ull /* 64 MiB */
#define PORT	     0x3f0
#define BIG_GPA	     (1ull << 32)
#define BIG	     (1ull << 30)

static char guest_dir[4096];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static double median_us(uint64_t *ns, int n)
{
	qsort(ns, (size_t)n, sizeof(*ns), cmp_u64);
	return (double)ns[n / 2] / 1000.0;
}

static void check(int rc, const char *what, const struct squib_error_detail *d)
{
	if (rc) {
		fprintf(stderr, "bench_kvm: %s: %s (%s)\n", what, squib_error_name(rc), d->msg);
		exit(1);
	}
}

static void load(struct squib_kvm_vm *vm, const char *name)
{
	char path[4200];
	static uint8_t buf[65536];
	struct squib_error_detail d;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s.bin", guest_dir, name);
	if (!(f = fopen(path, "rb"))) {
		fprintf(stderr, "bench_kvm: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	check(squib_kvm_vm_write(vm, CODE, buf, n, &d), "write guest", &d);
}

static struct squib_kvm_vm *new_vm(struct squib_kvm_counter **counter)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_error_detail d;
	struct squib_kvm_vm *vm;

	cfg.vcpu_count = 2;
	check(squib_kvm_vm_new(&cfg, &vm, &d), "vm_new", &d);
	check(squib_kvm_vm_add_ram(vm, 0, RAM, NULL, NULL, &d), "add_ram", &d);
	check(squib_kvm_vm_add_counter(vm, PORT, counter, &d), "add_counter", &d);
	return vm;
}

static void boot(struct squib_kvm_vm *vm, uint64_t rdi, uint64_t rsi, uint64_t stride)
{
	struct squib_kvm_boot b;
	struct squib_error_detail d;

	memset(&b, 0, sizeof(b));
	b.tables_gpa = 0x1000;
	b.map_size = RAM;
	for (int i = 0; i < 2; i++)
		b.entry[i] =
		    (struct squib_kvm_entry){CODE, 0, rdi, rsi + (uint64_t)i * stride, PORT};
	check(squib_kvm_vm_boot_long_mode(vm, &b, &d), "boot", &d);
}

static void bench_create(void)
{
	uint64_t ns[RUNS];

	for (int r = 0; r < RUNS; r++) {
		struct squib_kvm_counter *c;
		uint64_t t0 = now_ns();
		struct squib_kvm_vm *vm = new_vm(&c);

		ns[r] = now_ns() - t0;
		squib_kvm_vm_free(vm);
	}
	printf("create VM (2 vCPUs, irqchip, 128 MiB)  %9.1f us\n", median_us(ns, RUNS));
}

/* Pause/resume, capture, encode/decode, restore, on the counter guest. */
static void bench_state(void)
{
	uint64_t pause[RUNS], resume[RUNS], cap[RUNS], enc[RUNS], dec[RUNS], rest[RUNS];
	struct squib_kvm_counter *c;
	struct squib_kvm_vm *vm = new_vm(&c);
	struct squib_microvm_state s, back;
	struct squib_error_detail d;
	uint8_t *buf = NULL;
	size_t len = 0;

	load(vm, "counter");
	boot(vm, 0, COUNTERS, PAGE);
	check(squib_kvm_vm_start(vm, &d), "start", &d);
	check(squib_kvm_counter_wait(c, 1, 2, 10000, NULL, &d), "first reports", &d);
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = now_ns(), t1, t2, t3, t4;

		check(squib_kvm_vm_pause(vm, &d), "pause", &d);
		t1 = now_ns();
		check(squib_kvm_vm_capture(vm, &s, &d), "capture", &d);
		t2 = now_ns();
		free(buf);
		check(squib_state_encode(&s, &buf, &len, &d), "encode", &d);
		t3 = now_ns();
		check(squib_state_decode(buf, len, SQUIB_ARCH_X86_64, &back, NULL, &d), "decode",
		      &d);
		t4 = now_ns();
		squib_state_free(&back);
		check(squib_kvm_vm_resume(vm, &d), "resume", &d);
		resume[r] = now_ns() - t4;
		pause[r] = t1 - t0;
		cap[r] = t2 - t1;
		enc[r] = t3 - t2;
		dec[r] = t4 - t3;
		if (r < RUNS - 1)
			squib_state_free(&s);
		usleep(2000);
	}
	squib_kvm_vm_free(vm);
	for (int r = 0; r < RUNS; r++) {
		struct squib_kvm_vm *fresh = new_vm(&c);
		uint64_t t0 = now_ns();

		check(squib_kvm_vm_restore(fresh, &s, &d), "restore", &d);
		rest[r] = now_ns() - t0;
		squib_kvm_vm_free(fresh);
	}
	printf("pause 2 running vCPUs                   %9.1f us\n", median_us(pause, RUNS));
	printf("resume                                  %9.1f us\n", median_us(resume, RUNS));
	printf("capture x86 state, 2 vCPUs + VM         %9.1f us\n", median_us(cap, RUNS));
	printf("encode state file (%zu bytes)        %9.1f us\n", len, median_us(enc, RUNS));
	printf("decode state file                       %9.1f us\n", median_us(dec, RUNS));
	printf("restore into a fresh VM                 %9.1f us\n", median_us(rest, RUNS));
	squib_state_free(&s);
	free(buf);
}

static void harvest(struct squib_tracker *tr, struct squib_dirty_bitmap *bm, uint64_t *ns)
{
	struct squib_error_detail d;
	uint64_t t0 = now_ns();

	check(squib_tracker_harvest(tr, bm, &d), "harvest", &d);
	*ns = now_ns() - t0;
}

/* 1 GiB slot: tracker start (clears the INITIALLY_SET log), empty harvest. */
static void bench_big_slot(void)
{
	uint64_t start[RUNS], empty[RUNS];
	struct squib_kvm_counter *c;
	struct squib_kvm_vm *vm = new_vm(&c);
	struct squib_dirty_bitmap *bm;
	struct squib_tracker *tr;
	struct squib_error_detail d;

	check(squib_kvm_vm_add_ram(vm, BIG_GPA, BIG, NULL, NULL, &d), "add 1 GiB", &d);
	check(squib_dirty_bitmap_new(BIG_GPA, BIG, PAGE, &bm, &d), "bitmap", &d);
	check(squib_tracker_kvm_new(vm, &tr, &d), "tracker", &d);
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = now_ns();

		check(squib_tracker_start(tr, &d), "tracker start", &d);
		start[r] = now_ns() - t0;
		harvest(tr, bm, &empty[r]);
		check(squib_tracker_stop(tr, &d), "tracker stop", &d);
	}
	printf("dirty log start, 1 GiB slot (clear all) %9.1f us  (dirty log flags 0x%llx)\n",
	       median_us(start, RUNS), (unsigned long long)squib_kvm_vm_dirty_log_flags(vm));
	printf("harvest 1 GiB slot, nothing written     %9.1f us\n", median_us(empty, RUNS));
	squib_tracker_free(tr);
	squib_dirty_bitmap_free(bm);
	squib_kvm_vm_free(vm);
}

/* The page writer dirties ~10,000 of 16,384 pages; one harvest of the RAM slot. */
static void bench_dirty_harvest(void)
{
	const uint64_t params[4] = {TARGET, TARGET_PAGES - 1, TARGET_PAGES, 0};
	uint64_t ns[5], dirty = 0;
	struct squib_error_detail d;

	for (int r = 0; r < 5; r++) {
		struct squib_kvm_counter *c;
		struct squib_kvm_vm *vm = new_vm(&c);
		struct squib_dirty_bitmap *bm;
		struct squib_tracker *tr;

		load(vm, "page_writer");
		check(squib_kvm_vm_write(vm, PARAMS, params, sizeof(params), &d), "params", &d);
		boot(vm, PARAMS, 12345 + (uint64_t)r, 0);
		check(squib_dirty_bitmap_new(0, RAM, PAGE, &bm, &d), "bitmap", &d);
		check(squib_tracker_kvm_new(vm, &tr, &d), "tracker", &d);
		check(squib_tracker_start(tr, &d), "tracker start", &d);
		check(squib_kvm_vm_start(vm, &d), "start", &d);
		/* Both vCPUs run the writer on the same block; wait for both. */
		check(squib_kvm_counter_wait(c, 0, 1, 60000, NULL, &d), "writer 0", &d);
		check(squib_kvm_counter_wait(c, 1, 1, 60000, NULL, &d), "writer 1", &d);
		check(squib_kvm_vm_pause(vm, &d), "pause", &d);
		harvest(tr, bm, &ns[r]);
		dirty = squib_dirty_bitmap_count(bm);
		squib_tracker_free(tr);
		squib_dirty_bitmap_free(bm);
		squib_kvm_vm_free(vm);
	}
	printf("harvest 128 MiB slot, %llu pages dirty  %9.1f us  (%.1f ns per dirty page)\n",
	       (unsigned long long)dirty, median_us(ns, 5),
	       median_us(ns, 5) * 1000.0 / (double)dirty);
}

int main(int argc, char **argv)
{
	const char *env = getenv("SQUIB_GUESTS");
	char self[4096];

	(void)argc;
	if (!squib_kvm_available(NULL)) {
		printf("bench_kvm: /dev/kvm does not exist; nothing measured\n");
		return 0;
	}
	snprintf(self, sizeof(self), "%s", argv[0]);
	if (env)
		snprintf(guest_dir, sizeof(guest_dir), "%s", env);
	else
		snprintf(guest_dir, sizeof(guest_dir), "%s/tests/guests", dirname(self));
	bench_create();
	bench_state();
	bench_big_slot();
	bench_dirty_harvest();
	return 0;
}
