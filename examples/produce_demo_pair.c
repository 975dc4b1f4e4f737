/* SPDX-License-Identifier: Apache-2.0 */
/*
 * produce_demo_pair [BASE]: write a small, fixed snapshot pair, BASE.snap and
 * BASE.mem (BASE's own extension, if any, is replaced; default /tmp/demo), with
 * the library. The content is upstream's examples/produce_demo_pair.rs: an
 * aarch64 microVM with two vCPUs, a block and a net device, a GIC blob and an
 * MMDS store. The output is deterministic: tests/fixtures/demo.{snap,mem} are
 * this program's output (scripts/gen-fixtures.sh).
 *
 * The memory file is, for now, plain dense RAM (64 KiB, byte i = i mod 256).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <squib/snapshot.h>

#define DEMO_RAM_SIZE (64u * 1024u)
#define DEMO_KERNEL_ENTRY 0x80080000ULL /* DRAM_BASE + 512 KiB */
#define DEMO_FDT_ADDR 0x8fe00000ULL
#define DEMO_BOOT_PSTATE 0x3c5ULL /* EL1h, DAIF masked */

static const char demo_mmds_json[] = "{\"latest\":{\"meta-data\":{\"instance-id\":\"demo\"}}}";

static int set_sysreg(struct squib_arm64_vcpu *v, const char *name, uint64_t value)
{
	const struct squib_sysreg_info *info = squib_sysreg_by_name(name);

	if (!info)
		return SQUIB_E_INVALID_ARGUMENT;
	return squib_arm64_vcpu_set_sysreg(v, info->key, value);
}

/* One vCPU with a few recognisable register values; the BSP (mpidr 0) is On at
 * the kernel entry, the secondary is Off and parked. */
static int add_vcpu(struct squib_microvm_state *s, uint64_t mpidr, enum squib_psci_state psci)
{
	struct squib_arm64_vcpu *v;
	int r = squib_state_add_arm64_vcpu(s, mpidr, &v);

	if (r)
		return r;
	v->psci_state = psci;
	v->regs.pstate = DEMO_BOOT_PSTATE;
	if (psci == SQUIB_PSCI_ON) {
		v->regs.pc = DEMO_KERNEL_ENTRY;
		v->regs.x[0] = DEMO_FDT_ADDR;
		v->regs.sp = 0x80ff0000ULL;
	}
	v->fp_regs.fpcr = 0x03000000ULL; /* default-NaN + flush-to-zero */
	v->fp_regs.v[0].lo = 0x0123456789abcdefULL;
	v->fp_regs.v[0].hi = 0xfedcba9876543210ULL + mpidr;
	r = set_sysreg(v, "SCTLR_EL1", 0x30d00800ULL);
	if (!r)
		r = set_sysreg(v, "TCR_EL1", 0x00000032b5193519ULL);
	if (!r)
		r = set_sysreg(v, "MPIDR_EL1", 0x80000000ULL | mpidr);
	if (!r)
		r = set_sysreg(v, "VBAR_EL1", 0xffff800008010800ULL);
	return r;
}

static int build_vm_info(struct squib_vm_info *vm)
{
	int r = 0;

	vm->mem_size_mib = 256;
	vm->smt = false;
	vm->track_dirty_pages = false;
	r |= squib_state_set_string(&vm->cpu_template, "V1N1");
	r |= squib_state_set_string(&vm->kernel_image_path, "/var/lib/squib/vmlinux");
	r |= squib_state_set_string(&vm->initrd_path, "/var/lib/squib/initrd.cpio");
	r |= squib_state_set_string(&vm->boot_args,
				    "console=ttyAMA0 panic=1 reboot=k root=/dev/vda");
	return r ? SQUIB_E_NOMEM : 0;
}

static int build_demo_state(struct squib_microvm_state *s)
{
	static const uint8_t block_blob[] = {0xA1, 0xA2, 0xA3, 0xA4};
	static const uint8_t net_blob[] = {0xB1, 0xB2};
	uint8_t gic[128];
	int r;

	for (size_t i = 0; i < sizeof(gic); i++)
		gic[i] = (uint8_t)i;
	squib_state_init(s, SQUIB_ARCH_AARCH64);
	r = build_vm_info(&s->vm_info);
	if (!r)
		r = add_vcpu(s, 0x0, SQUIB_PSCI_ON);
	if (!r)
		r = add_vcpu(s, 0x100, SQUIB_PSCI_OFF);
	if (!r)
		r = squib_state_add_device(s, "virtio-block", "rootfs", 0, block_blob,
					   sizeof(block_blob));
	if (!r)
		r = squib_state_add_device(s, "virtio-net", "eth0", 1, net_blob, sizeof(net_blob));
	if (!r)
		r = squib_state_set_gic(s, gic, sizeof(gic));
	if (!r)
		r = squib_state_set_mmds(s, demo_mmds_json, true, 3600);
	return r;
}

/* BASE with its extension (if any) replaced by `ext`, like Rust's with_extension. */
static char *with_extension(const char *base, const char *ext)
{
	char *mem = NULL, *out = NULL;
	size_t stem_len = strlen(base);

	if (squib_infer_memory_path(base, &mem))
		return NULL;
	if (mem)
		stem_len = strlen(mem) - strlen(".mem");
	if (asprintf(&out, "%.*s.%s", (int)stem_len, mem ? mem : base, ext) < 0)
		out = NULL;
	free(mem);
	return out;
}

static int report(int r, const char *path, const struct squib_error_detail *d)
{
	char msg[SQUIB_ERROR_TEXT_MAX];
	struct stat st;

	if (r) {
		squib_error_format(r, d, msg, sizeof(msg));
		fprintf(stderr, "produce_demo_pair: %s: %s\n", path, msg);
		return 1;
	}
	if (stat(path, &st) == 0)
		printf("wrote %s (%lld bytes)\n", path, (long long)st.st_size);
	return 0;
}

static int write_pair(const char *snap, const char *mem)
{
	struct squib_microvm_state s;
	struct squib_error_detail d;
	uint8_t *ram = malloc(DEMO_RAM_SIZE);
	int r, rc;

	if (!ram)
		return report(SQUIB_E_NOMEM, mem, NULL);
	for (size_t i = 0; i < DEMO_RAM_SIZE; i++)
		ram[i] = (uint8_t)(i % 256);
	r = build_demo_state(&s);
	if (r)
		squib_fail(&d, r);
	else
		r = squib_state_save_file(snap, &s, &d);
	rc = report(r, snap, &d);
	if (!rc)
		rc = report(squib_atomic_write_file(mem, ram, DEMO_RAM_SIZE, NULL, &d), mem, &d);
	squib_state_free(&s);
	free(ram);
	return rc;
}

int main(int argc, char **argv)
{
	const char *base = argc > 1 ? argv[1] : "/tmp/demo";
	char *snap, *mem;
	int rc;

	if (argc > 2 || !*base || base[0] == '-') {
		fprintf(stderr, "usage: produce_demo_pair [BASE]  (writes BASE.snap, BASE.mem)\n");
		return 2;
	}
	snap = with_extension(base, "snap");
	mem = with_extension(base, "mem");
	rc = snap && mem ? write_pair(snap, mem) : 1;
	if (!snap || !mem)
		fprintf(stderr, "produce_demo_pair: out of memory\n");
	free(snap);
	free(mem);
	return rc;
}
