/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Direct Linux boot (squib/kvm.h, squib_kvm_vm_boot_linux): a bzImage
 * entered at its 64-bit entry point, as the x86 boot protocol
 * (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol") allows a boot
 * loader that sets up boot_params itself. The offsets below are the
 * protocol's; the decompressor builds its own page tables, GDT and stack and
 * relocates itself, so what the loader provides is small: the zero page, an
 * identity map covering the kernel, zero page and command line, a 64-bit
 * code segment, interrupts off.
 */
#include "kvm_internal.h"

#include <stdlib.h>
#include <string.h>

#include "../util.h"

#define ZERO_PAGE   0x7000ull
#define BOOT_STACK  0x8ff0ull /* below the tables; the decompressor soon takes its own */
#define TABLES	    0x9000ull /* 7 pages: GDT, PML4, PDPT, 4 PDs */
#define CMDLINE	    0x20000ull
#define KERNEL_BASE 0x100000ull /* "loaded high": the protected-mode part at 1 MiB */
#define EBDA_START  0x9fc00ull
#define MAP_SIZE    (4ull << 30)
#define DECOMP_BASE (16ull << 20) /* LOAD_PHYSICAL_ADDR: where the decompressed kernel goes */
#define PAGE	    4096ull

/* Setup header fields (offsets in the image and in boot_params alike). */
#define HDR_SETUP_SECTS	  0x1f1
#define HDR_BOOT_FLAG	  0x1fe
#define HDR_JUMP	  0x200
#define HDR_MAGIC	  0x202
#define HDR_VERSION	  0x206
#define HDR_LOADER_TYPE	  0x210
#define HDR_LOADFLAGS	  0x211
#define HDR_CODE32_START  0x214
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE  0x21c
#define HDR_CMD_LINE_PTR  0x228
#define HDR_INITRD_MAX	  0x22c
#define HDR_XLOADFLAGS	  0x236
#define HDR_CMDLINE_SIZE  0x238
#define HDR_INIT_SIZE	  0x260
#define BP_E820_ENTRIES	  0x1e8
#define BP_E820_TABLE	  0x2d0
#define LOADED_HIGH	  0x01
#define XLF_KERNEL_64	  0x01
#define E820_RAM	  1
#define MSR_MISC_ENABLE	  0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MISC_FAST_STRING  0x1ull
#define MTRR_ENABLE_WB	  ((1ull << 11) | 6) /* MTRRs on, default type write-back */

/* What the loader learns from the image and decides. */
struct linux_layout {
	uint64_t ram_end;
	size_t setup_len; /* real-mode part, skipped */
	size_t hdr_end;	  /* the setup header is [0x1f1, hdr_end) */
	uint64_t initrd_gpa;
	uint32_t cmdline_max; /* bytes including the NUL */
};

static int bad_image(struct squib_error_detail *d, const char *why)
{
	return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "not a bootable bzImage: %s", why);
}

static int parse_header(const uint8_t *k, size_t len, struct linux_layout *lo,
			struct squib_error_detail *d)
{
	uint32_t sects;

	if (len < 0x1000)
		return bad_image(d, "shorter than 4 KiB");
	if (squib_get_le16(k + HDR_BOOT_FLAG) != 0xaa55 || memcmp(k + HDR_MAGIC, "HdrS", 4))
		return bad_image(d, "no boot flag or HdrS magic");
	if (squib_get_le16(k + HDR_VERSION) < 0x020c)
		return bad_image(d, "boot protocol older than 2.12");
	if (!(squib_get_le16(k + HDR_XLOADFLAGS) & XLF_KERNEL_64))
		return bad_image(d, "no 64-bit entry point (XLF_KERNEL_64)");
	sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
	lo->setup_len = (size_t)(sects + 1) * 512;
	lo->hdr_end = HDR_MAGIC + k[HDR_JUMP + 1];
	if (lo->setup_len >= len || lo->hdr_end > 0x290 || lo->hdr_end > lo->setup_len)
		return bad_image(d, "setup sectors or header length out of range");
	lo->cmdline_max = squib_get_le32(k + HDR_CMDLINE_SIZE) + 1;
	if (lo->cmdline_max > 0x10000)
		lo->cmdline_max = 0x10000;
	return 0;
}

/* The initrd at the top of RAM (and below initrd_addr_max), clear of the kernel. */
static int place(const struct squib_kvm_linux *l, struct linux_layout *lo,
		 struct squib_error_detail *d)
{
	uint64_t top = lo->ram_end, init_size = squib_get_le32(l->kernel + HDR_INIT_SIZE);
	uint64_t max = (uint64_t)squib_get_le32(l->kernel + HDR_INITRD_MAX) + 1;
	uint64_t kernel_end = DECOMP_BASE + init_size;

	if (kernel_end < KERNEL_BASE + l->kernel_len)
		kernel_end = KERNEL_BASE + l->kernel_len;
	if (top > max)
		top = max;
	lo->initrd_gpa = (top - l->initrd_len) & ~(PAGE - 1);
	if (l->initrd_len > top || lo->initrd_gpa < kernel_end)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "%llu MiB of RAM cannot hold the kernel (up to 0x%llx once "
				      "decompressed) and a %zu-byte initrd",
				      (unsigned long long)(lo->ram_end >> 20),
				      (unsigned long long)kernel_end, l->initrd_len);
	if (l->cmdline && strlen(l->cmdline) >= lo->cmdline_max)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "the command line is longer than the kernel's %u bytes",
				      lo->cmdline_max - 1);
	return 0;
}

static void put_e820(uint8_t *bp, uint32_t i, uint64_t addr, uint64_t size, uint32_t type)
{
	uint8_t *e = bp + BP_E820_TABLE + 20 * i;

	squib_put_le64(e, addr);
	squib_put_le64(e + 8, size);
	squib_put_le32(e + 16, type);
}

static void build_zero_page(uint8_t *bp, const struct squib_kvm_linux *l,
			    const struct linux_layout *lo)
{
	memset(bp, 0, PAGE);
	memcpy(bp + HDR_SETUP_SECTS, l->kernel + HDR_SETUP_SECTS, lo->hdr_end - HDR_SETUP_SECTS);
	bp[HDR_LOADER_TYPE] = 0xff; /* "undefined" loader: no assigned id */
	bp[HDR_LOADFLAGS] |= LOADED_HIGH;
	squib_put_le32(bp + HDR_CODE32_START, (uint32_t)KERNEL_BASE);
	squib_put_le32(bp + HDR_CMD_LINE_PTR, (uint32_t)CMDLINE);
	if (l->initrd_len) {
		squib_put_le32(bp + HDR_RAMDISK_IMAGE, (uint32_t)lo->initrd_gpa);
		squib_put_le32(bp + HDR_RAMDISK_SIZE, (uint32_t)l->initrd_len);
	}
	/* Low memory up to the EBDA, then everything from 1 MiB: the PC's map. */
	put_e820(bp, 0, 0, EBDA_START, E820_RAM);
	put_e820(bp, 1, KERNEL_BASE, lo->ram_end - KERNEL_BASE, E820_RAM);
	bp[BP_E820_ENTRIES] = 2;
}

static int write_images(struct squib_kvm_vm *vm, const struct squib_kvm_linux *l,
			const struct linux_layout *lo, struct squib_error_detail *d)
{
	const char *cmd = l->cmdline ? l->cmdline : "";
	uint8_t zp[PAGE];
	int rc;

	build_zero_page(zp, l, lo);
	if ((rc = squib_kvm_vm_write(vm, ZERO_PAGE, zp, sizeof(zp), d)) ||
	    (rc = squib_kvm_vm_write(vm, CMDLINE, cmd, strlen(cmd) + 1, d)) ||
	    (rc = squib_kvm_vm_write(vm, KERNEL_BASE, l->kernel + lo->setup_len,
				     l->kernel_len - lo->setup_len, d)))
		return rc;
	if (l->initrd_len)
		rc = squib_kvm_vm_write(vm, lo->initrd_gpa, l->initrd, l->initrd_len, d);
	return rc;
}

/* The MSRs a BIOS leaves set; KVM's reset values have MTRRs off (all uncached). */
static int set_boot_msrs(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	struct kvm_msrs *m = kvm_msrs_alloc(2);
	int rc = 0;

	if (!m)
		return squib_fail(d, SQUIB_E_NOMEM);
	m->entries[0].index = MSR_MISC_ENABLE;
	m->entries[0].data = MISC_FAST_STRING;
	m->entries[1].index = MSR_MTRR_DEF_TYPE;
	m->entries[1].data = MTRR_ENABLE_WB;
	kvm_lock(&vm->ctl);
	for (uint32_t i = 0; !rc && i < vm->cfg.vcpu_count; i++)
		if (kvm_ioctl(vm->vcpus[i].fd, KVM_SET_MSRS, m) != 2)
			rc = kvm_fail_ioctl(d, "KVM_SET_MSRS");
	kvm_unlock(&vm->ctl);
	free(m);
	return rc;
}

static uint64_t ram_end_at_zero(struct squib_kvm_vm *vm)
{
	struct squib_memory_map map = squib_kvm_vm_memory_map(vm);

	return map.count && map.regions[0].gpa == 0 ? map.regions[0].size : 0;
}

int squib_kvm_vm_boot_linux(struct squib_kvm_vm *vm, const struct squib_kvm_linux *l,
			    struct squib_error_detail *d)
{
	struct linux_layout lo;
	struct squib_kvm_boot b;
	int rc;

	if (!vm || !l || !l->kernel || (l->initrd_len && !l->initrd))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to boot_linux");
	if (vm->cfg.vcpu_count != 1)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "boot_linux starts one vCPU (no ACPI or MP tables for more)");
	memset(&lo, 0, sizeof(lo));
	if (!(lo.ram_end = ram_end_at_zero(vm)) || lo.ram_end < DECOMP_BASE * 2)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "Linux needs RAM from gpa 0, at least 32 MiB");
	if ((rc = parse_header(l->kernel, l->kernel_len, &lo, d)) || (rc = place(l, &lo, d)) ||
	    (rc = write_images(vm, l, &lo, d)))
		return rc;
	memset(&b, 0, sizeof(b));
	b.tables_gpa = TABLES;
	b.map_size = MAP_SIZE;
	for (uint32_t i = 0; i < vm->cfg.vcpu_count; i++)
		b.entry[i] = (struct squib_kvm_entry){
		    .rip = KERNEL_BASE + 0x200, .rsp = BOOT_STACK, .rsi = ZERO_PAGE};
	if ((rc = squib_kvm_vm_boot_long_mode(vm, &b, d)))
		return rc;
	return set_boot_msrs(vm, d);
}
