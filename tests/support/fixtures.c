/* SPDX-License-Identifier: Apache-2.0 */
/* Content of the golden state files (see fixtures.h). Change only together with
 * scripts/gen-fixtures.sh: the committed files must stay what this builds. */
#include "fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/dirty.h>
#include <squib/envelope.h>
#include <squib/memfile.h>
#include <squib/sysreg.h>

#define MAXIMAL_VCPUS 32
#define MAXIMAL_DEVICES 16
#define MAXIMAL_GIC_SIZE (64u * 1024u)

/* splitmix64: distinctive, well-spread, reproducible values. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void fill_bytes(uint8_t *p, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(mix(seed + i / 8) >> (8 * (i % 8)));
}

static int set_vm_info(struct squib_vm_info *vm, uint64_t mib, const char *tmpl, const char *kernel,
		       const char *initrd, const char *args)
{
	vm->mem_size_mib = mib;
	if (squib_state_set_string(&vm->cpu_template, tmpl) ||
	    squib_state_set_string(&vm->kernel_image_path, kernel) ||
	    squib_state_set_string(&vm->initrd_path, initrd) ||
	    squib_state_set_string(&vm->boot_args, args))
		return SQUIB_E_NOMEM;
	return 0;
}

int squib_fixture_minimal(struct squib_microvm_state *s)
{
	static const uint8_t gic[1] = {0x5a};
	struct squib_arm64_vcpu *v;
	int r;

	squib_state_init(s, SQUIB_ARCH_AARCH64);
	r = squib_state_add_arm64_vcpu(s, 0, &v);
	if (!r)
		r = squib_state_set_gic(s, gic, sizeof(gic));
	return r;
}

static void fill_regs(struct squib_arm64_vcpu *v, uint64_t seed)
{
	for (int r = 0; r < 31; r++)
		v->regs.x[r] = mix(seed + (uint64_t)r);
	v->regs.sp = mix(seed + 31);
	v->regs.pc = mix(seed + 32);
	v->regs.pstate = mix(seed + 33) & 0xf00003ffULL;
	for (int r = 0; r < 32; r++) {
		v->fp_regs.v[r].lo = mix(seed + 100 + 2 * (uint64_t)r);
		v->fp_regs.v[r].hi = mix(seed + 101 + 2 * (uint64_t)r);
	}
	v->fp_regs.fpsr = mix(seed + 200) & 0xf800009fULL;
	v->fp_regs.fpcr = mix(seed + 201) & 0x07ff9f00ULL;
}

/* vCPU i of the maximal fixture: MPIDR Aff1 = i / 8, Aff0 = i % 8. */
static int add_maximal_vcpu(struct squib_microvm_state *s, uint32_t i)
{
	static const enum squib_psci_state psci[] = {SQUIB_PSCI_ON, SQUIB_PSCI_OFF,
						     SQUIB_PSCI_ON_PENDING};
	uint64_t seed = 0x1000ULL * (i + 1);
	struct squib_arm64_vcpu *v;
	size_t n;
	const struct squib_sysreg_info *t = squib_sysreg_table(&n);
	int r = squib_state_add_arm64_vcpu(s, ((uint64_t)(i / 8) << 8) | (i % 8), &v);

	if (r)
		return r;
	fill_regs(v, seed);
	v->psci_state = psci[i % 3];
	/* Insert in descending key order: the library keeps them ascending. */
	for (size_t k = n; k-- > 0 && !r;)
		r = squib_arm64_vcpu_set_sysreg(v, t[k].key, mix(seed + 500 + t[k].key));
	return r;
}

static int add_maximal_device(struct squib_microvm_state *s, uint32_t i)
{
	static const char *const kinds[] = {"virtio-block", "virtio-net", "virtio-vsock",
					    "virtio-balloon", "virtio-rng"};
	size_t blob_len = 61u * i; /* device 0 has an empty blob */
	uint8_t *blob = malloc(blob_len + 1);
	char id[32];
	int r;

	if (!blob)
		return SQUIB_E_NOMEM;
	fill_bytes(blob, blob_len, 0x2000ULL * (i + 1));
	if (i == 7)
		snprintf(id, sizeof(id), "dr\xc3\xafve-%02u", i); /* "drïve-07": UTF-8 */
	else
		snprintf(id, sizeof(id), "dev%02u", i);
	/* Slots descending with the index, so insertion order is not the file order. */
	r = squib_state_add_device(s, kinds[i % 5], id, MAXIMAL_DEVICES - 1 - i, blob, blob_len);
	free(blob);
	return r;
}

static int add_extra_section(struct squib_microvm_state *s)
{
	static const char text[] = "a section from a newer writer; readers may skip it";
	struct squib_raw_section *sec = calloc(1, sizeof(*sec));

	if (!sec)
		return SQUIB_E_NOMEM;
	sec->bytes = malloc(sizeof(text) - 1);
	if (!sec->bytes) {
		free(sec);
		return SQUIB_E_NOMEM;
	}
	memcpy(sec->bytes, text, sizeof(text) - 1);
	sec->tag = SQUIB_FIXTURE_EXTRA_TAG;
	sec->flags = SQUIB_SECTION_FLAG_SKIPPABLE;
	sec->len = sizeof(text) - 1;
	s->extra_sections = sec;
	s->extra_section_count = 1;
	return 0;
}

static int set_maximal_gic(struct squib_microvm_state *s)
{
	uint8_t *gic = malloc(MAXIMAL_GIC_SIZE);
	int r;

	if (!gic)
		return SQUIB_E_NOMEM;
	fill_bytes(gic, MAXIMAL_GIC_SIZE, 0x3000);
	r = squib_state_set_gic(s, gic, MAXIMAL_GIC_SIZE);
	free(gic);
	return r;
}

int squib_fixture_maximal(struct squib_microvm_state *s)
{
	static const char mmds[] =
		"{\"latest\":{\"meta-data\":{\"instance-id\":\"i-maximal\",\"local-ipv4\":"
		"\"10.0.0.2\",\"tags\":[\"a\",\"b\"]},\"user-data\":\"#!/bin/sh\\necho hi\\n\"}}";
	int r;

	squib_state_init(s, SQUIB_ARCH_AARCH64);
	s->vm_info.track_dirty_pages = true;
	r = set_vm_info(&s->vm_info, 1ULL << 20, "T2CL", "/var/lib/squib/vmlinux-6.6-maximal",
			"/var/lib/squib/initrd-maximal.cpio",
			"console=ttyAMA0 panic=1 reboot=k root=/dev/vda rw quiet "
			"squib.note=\"\xc3\xbcnic\xc3\xb6"
			"de\"");
	for (uint32_t i = 0; i < MAXIMAL_VCPUS && !r; i++)
		r = add_maximal_vcpu(s, i);
	for (uint32_t i = 0; i < MAXIMAL_DEVICES && !r; i++)
		r = add_maximal_device(s, i);
	if (!r)
		r = set_maximal_gic(s);
	if (!r)
		r = squib_state_set_mmds(s, mmds, true, 21600);
	if (!r)
		r = add_extra_section(s);
	return r;
}

int squib_fixture_x86(struct squib_microvm_state *s)
{
	static const uint8_t blk[] = {0x01, 0x02, 0x03};
	static const uint8_t net[] = {0x0a, 0x0b};
	int r;

	squib_state_init(s, SQUIB_ARCH_X86_64);
	r = set_vm_info(&s->vm_info, 512, "", "/var/lib/squib/bzImage", NULL,
			"console=ttyS0 reboot=k panic=1 root=/dev/vda");
	if (!r)
		r = squib_state_add_device(s, "virtio-block", "rootfs", 0, blk, sizeof(blk));
	if (!r)
		r = squib_state_add_device(s, "virtio-net", "eth0", 1, net, sizeof(net));
	return r;
}

const struct squib_fixture *squib_fixture_table(size_t *count)
{
	static const struct squib_fixture table[] = {
		{"minimal.snap", squib_fixture_minimal},
		{"maximal.snap", squib_fixture_maximal},
		{"x86.snap", squib_fixture_x86},
	};

	*count = sizeof(table) / sizeof(table[0]);
	return table;
}

/* ---- golden memory files ---------------------------------------------------------------- */

static int write_mem(const char *dir, const char *name, uint8_t *ram, uint8_t first_id,
		     const uint8_t *parent, const uint64_t *pages, size_t n, bool packed)
{
	struct squib_memfile_source_region r = {0x80000000ull, 4 * 4096, ram};
	struct squib_memfile_source src = {&r, 1, 4096};
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	struct squib_memfile_write_options o = {
	    .id = id, .digests = parent != NULL, .packed = packed};
	struct squib_dirty_bitmap *bm = NULL;
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	char *path = NULL;
	int rc;

	for (int i = 0; i < SQUIB_MEMORY_ID_SIZE; i++)
		id[i] = (uint8_t)(first_id + i);
	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return SQUIB_E_NOMEM;
	if (!parent) {
		rc = squib_memfile_save_full(path, &src, &o, &m, &d);
	} else if (!(rc = squib_dirty_bitmap_new(r.guest_addr, r.size, 4096, &bm, &d))) {
		for (size_t i = 0; i < n; i++)
			squib_dirty_bitmap_set_by_index(bm, pages[i]);
		rc = squib_memfile_save_diff(path, &src, parent,
					     (const struct squib_dirty_bitmap *const *)&bm, 1, &o,
					     &m, &d);
		squib_dirty_bitmap_free(bm);
	}
	if (rc)
		fprintf(stderr, "squib-gen-fixtures: %s: %s\n", name, d.msg);
	else
		printf("wrote %s\n", path);
	squib_memfile_manifest_release(&m);
	free(path);
	return rc;
}

int squib_fixture_write_memfiles(const char *dir)
{
	static const uint64_t pages[] = {0, 2, 3};
	uint8_t *ram = aligned_alloc(4096, 4 * 4096), parent[SQUIB_MEMORY_ID_SIZE];
	int rc;

	if (!ram)
		return SQUIB_E_NOMEM;
	memset(ram, 0, 4 * 4096);
	for (int i = 0; i < SQUIB_MEMORY_ID_SIZE; i++)
		parent[i] = (uint8_t)(0x10 + i);
	memset(ram + 4096, 0xab, 2 * 4096);
	rc = write_mem(dir, SQUIB_FIXTURE_MEM_FULL, ram, 0x10, NULL, NULL, 0, false);
	memset(ram, 0xcd, 4096);
	memset(ram + 2 * 4096, 0xef, 4096);
	memset(ram + 3 * 4096, 0x01, 4096);
	if (!rc)
		rc = write_mem(dir, SQUIB_FIXTURE_MEM_DIFF, ram, 0x20, parent, pages, 3, false);
	if (!rc)
		rc = write_mem(dir, SQUIB_FIXTURE_MEM_PACKED, ram, 0x30, parent, pages, 3, true);
	free(ram);
	return rc;
}
