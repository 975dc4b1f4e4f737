/* SPDX-License-Identifier: Apache-2.0 */
/*
 * State file encode/decode cost for a large but realistic state: 32 vCPUs with
 * all 47 sysregs, 16 devices, a 64 KiB GIC blob and 64 KiB of MMDS JSON.
 * Prints best and median of N runs in microseconds, next to a memcpy of the
 * same number of bytes measured in the same run (so machines can be compared
 * by ratio) and the CRC alone (which both directions pay once).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <squib/snapshot.h>

#include "benchutil.h"

#define RUNS	  200
#define BLOB_SIZE (64 * 1024)

static double now_us(void)
{
	return (double)now_ns() / 1e3;
}

struct stats {
	double best, median;
};

static struct stats summarize(double *t, int n)
{
	struct stats s;

	qsort(t, (size_t)n, sizeof(*t), cmp_double);
	s.best = t[0];
	s.median = t[n / 2];
	return s;
}

static int check(int rc, const char *what)
{
	if (rc) {
		fprintf(stderr, "bench_state: %s failed: %s\n", what, squib_error_name(rc));
		exit(1);
	}
	return rc;
}

static void build_state(struct squib_microvm_state *s)
{
	static uint8_t blob[BLOB_SIZE];
	char *json = malloc(BLOB_SIZE + 1);

	if (!json)
		exit(1);
	squib_state_init(s, SQUIB_ARCH_AARCH64);
	s->vm_info.mem_size_mib = 8192;
	check(squib_state_set_string(&s->vm_info.kernel_image_path, "/var/lib/vm/vmlinux"), "set");
	check(squib_state_set_string(&s->vm_info.boot_args, "console=ttyS0 reboot=k panic=1"),
	      "set");
	for (uint64_t c = 0; c < 32; c++) {
		struct squib_arm64_vcpu *v;
		check(squib_state_add_arm64_vcpu(s, c, &v), "add vcpu");
		for (int i = 0; i < 31; i++)
			v->regs.x[i] = c * 1000 + (uint64_t)i;
		for (uint64_t k = SQUIB_SYSREG_KEY_MIN; k <= SQUIB_SYSREG_KEY_MAX; k++)
			check(squib_arm64_vcpu_set_sysreg(v, k, k * 0x9E3779B97F4A7C15ULL),
			      "sysreg");
	}
	for (size_t i = 0; i < BLOB_SIZE; i++)
		blob[i] = (uint8_t)(i * 131);
	check(squib_state_set_gic(s, blob, BLOB_SIZE), "gic");
	for (uint32_t i = 0; i < 16; i++) {
		char id[16];
		snprintf(id, sizeof(id), "dev%u", i);
		check(squib_state_add_device(s, "virtio-block", id, i, blob, 512), "device");
	}
	memset(json, 'a', BLOB_SIZE);
	json[0] = '"';
	json[BLOB_SIZE - 1] = '"';
	json[BLOB_SIZE] = '\0';
	check(squib_state_set_mmds(s, json, true, 21600), "mmds");
	free(json);
}

static void report(const char *name, double *t, double memcpy_median)
{
	struct stats st = summarize(t, RUNS);

	printf("%-22s best %9.1f us   median %9.1f us   (%.1fx memcpy)\n", name, st.best, st.median,
	       st.median / memcpy_median);
}

int main(void)
{
	static double t_enc[RUNS], t_dec[RUNS], t_crc[RUNS], t_cpy[RUNS];
	struct squib_microvm_state s, out;
	struct squib_error_detail d;
	volatile uint64_t sink = 0;
	uint8_t *file = NULL, *copy;
	size_t len = 0;
	double memcpy_median;

	build_state(&s);
	check(squib_state_encode(&s, &file, &len, &d), "encode");
	copy = malloc(len);
	if (!copy)
		return 1;
	for (int r = 0; r < RUNS; r++) {
		uint8_t *buf;
		size_t n;
		double t0 = now_us();
		check(squib_state_encode(&s, &buf, &n, &d), "encode");
		t_enc[r] = now_us() - t0;
		free(buf);

		t0 = now_us();
		check(squib_state_decode(file, len, SQUIB_ARCH_AARCH64, &out, NULL, &d), "decode");
		t_dec[r] = now_us() - t0;
		squib_state_free(&out);

		t0 = now_us();
		sink += squib_crc64(0, file, len);
		t_crc[r] = now_us() - t0;

		t0 = now_us();
		memcpy(copy, file, len);
		sink += copy[r % len];
		t_cpy[r] = now_us() - t0;
	}
	memcpy_median = summarize(t_cpy, RUNS).median;
	printf("state file: 32 vCPUs x 47 sysregs, 16 devices, 64 KiB GIC, 64 KiB MMDS\n");
	printf("file size: %zu bytes; %d runs; crc64 implementation: %s\n", len, RUNS,
	       squib_crc64_impl());
	report("encode", t_enc, memcpy_median);
	report("decode", t_dec, memcpy_median);
	report("crc64 alone", t_crc, memcpy_median);
	report("memcpy (baseline)", t_cpy, memcpy_median);
	/* Medians are taken after report() sorted the arrays. */
	printf("without the CRC (median difference): encode %.1f us, decode %.1f us\n",
	       t_enc[RUNS / 2] - t_crc[RUNS / 2], t_dec[RUNS / 2] - t_crc[RUNS / 2]);
	squib_state_free(&s);
	free(copy);
	free(file);
	(void)sink;
	return 0;
}
