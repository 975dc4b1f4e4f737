/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The 1 GiB counter-guest VM that bench_restore and bench_lazy snapshot and
 * restore (header-only, like benchutil.h): 1 vCPU, 1 GiB of RAM, the
 * counter guest booted in long mode, 256 MiB of non-zero data written by
 * the VMM in 1 MiB runs 3 MiB apart from 16 MiB (clear of the page tables,
 * code, counters and stacks). Errors end the program (a benchmark has no
 * one to report them to).
 */
#ifndef SQUIB_BENCHKVM_H
#define SQUIB_BENCHKVM_H

#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/kvm.h>

#include "benchutil.h"

#define BK_RAM	     (1ull << 30)
#define BK_PAGE	     4096ull
#define BK_TABLES    0x1000ull
#define BK_CODE	     0x10000ull
#define BK_COUNTERS  0x20000ull
#define BK_STACKS    0x40000ull
#define BK_FILL_BASE (16ull << 20)
#define BK_FILL_RUN  (1ull << 20)
#define BK_FILL_STEP (3ull << 20)
#define BK_FILL_RUNS 256u /* 256 MiB */
#define BK_PORT	     0x3f0
#define BK_WAIT_MS   10000u

struct bk_vm {
	struct squib_kvm_vm *vm;
	struct squib_kvm_counter *counter;
	struct squib_kvm_adapter *adapter;
	struct squib_vm v;
};

/* Exit with `what` and the error when rc is not 0. */
static inline void bk_check(int rc, const char *what, const struct squib_error_detail *d)
{
	if (rc) {
		fprintf(stderr, "%s: %s: %s (%s)\n", program_invocation_short_name, what,
			squib_error_name(rc), d->msg);
		exit(1);
	}
}

/* Sorts v; its median. */
static inline double bk_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static inline double bk_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

/* The directory of the guest binaries: $SQUIB_GUESTS, else tests/guests next to argv0. */
static inline void bk_guest_dir(const char *argv0, char *out, size_t cap)
{
	const char *env = getenv("SQUIB_GUESTS");
	char self[4096];

	snprintf(self, sizeof(self), "%s", argv0);
	if (env)
		snprintf(out, cap, "%s", env);
	else
		snprintf(out, cap, "%s/tests/guests", dirname(self));
}

/* A VM with the counter device and the adapter; RAM of its own or (restore target) none. */
static inline void bk_vm_new(struct bk_vm *k, bool with_ram, bool track)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_adapter_config acfg = {track, "/squib/bench/counter.bin", "bench"};
	struct squib_error_detail d;

	memset(k, 0, sizeof(*k));
	bk_check(squib_kvm_vm_new(&cfg, &k->vm, &d), "vm_new", &d);
	if (with_ram)
		bk_check(squib_kvm_vm_add_ram(k->vm, 0, BK_RAM, NULL, NULL, &d), "add_ram", &d);
	bk_check(squib_kvm_vm_add_counter(k->vm, BK_PORT, &k->counter, &d), "add_counter", &d);
	bk_check(squib_kvm_adapter_new(k->vm, &acfg, &k->adapter, &d), "adapter", &d);
	k->v = squib_kvm_adapter_vm(k->adapter);
}

static inline void bk_vm_free(struct bk_vm *k)
{
	squib_kvm_adapter_free(k->adapter);
	squib_kvm_vm_free(k->vm);
	memset(k, 0, sizeof(*k));
}

/* The 256 MiB of non-zero data (every 8 bytes derived from their address). */
static inline void bk_fill(struct bk_vm *k)
{
	for (uint32_t i = 0; i < BK_FILL_RUNS; i++) {
		uint64_t gpa = BK_FILL_BASE + i * BK_FILL_STEP;
		uint8_t *p = squib_kvm_vm_gpa_to_hva(k->vm, gpa, BK_FILL_RUN);

		if (!p) {
			fprintf(stderr, "%s: gpa 0x%llx not mapped\n",
				program_invocation_short_name, (unsigned long long)gpa);
			exit(1);
		}
		for (uint64_t off = 0; off < BK_FILL_RUN; off += 8) {
			uint64_t v = (gpa + off) * 0x9E3779B97F4A7C15ull | 1;

			memcpy(p + off, &v, 8);
		}
	}
}

/* Fill, load counter.bin from guest_dir, boot in long mode, start, wait for a first report. */
static inline void bk_boot_counter(struct bk_vm *k, const char *guest_dir)
{
	static uint8_t buf[65536];
	struct squib_error_detail d;
	struct squib_kvm_boot b;
	char path[4200];
	FILE *f;
	size_t n;

	bk_fill(k);
	snprintf(path, sizeof(path), "%s/counter.bin", guest_dir);
	if (!(f = fopen(path, "rb"))) {
		fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, path,
			strerror(errno));
		exit(1);
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	bk_check(squib_kvm_vm_write(k->vm, BK_CODE, buf, n, &d), "write guest", &d);
	memset(&b, 0, sizeof(b));
	b.tables_gpa = BK_TABLES;
	b.map_size = BK_RAM;
	b.entry[0] =
	    (struct squib_kvm_entry){BK_CODE, BK_STACKS + BK_PAGE, 0, BK_COUNTERS, BK_PORT};
	bk_check(squib_kvm_vm_boot_long_mode(k->vm, &b, &d), "boot", &d);
	bk_check(squib_kvm_vm_start(k->vm, &d), "start", &d);
	bk_check(squib_kvm_counter_wait(k->counter, 0, 1, BK_WAIT_MS, NULL, &d), "counter", &d);
}

#endif
