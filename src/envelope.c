/* SPDX-License-Identifier: Apache-2.0 */
/* State file envelope: header, sections, CRC-64/Jones trailer (docs/FORMAT.md). */
#include <squib/envelope.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/atomic.h>
#include <squib/crc64.h>
#include <squib/input.h>

#include "input_internal.h"
#include "memlayout.h"
#include "util.h"
#include "wire.h"
#include "x86_codec.h"

struct squib_version squib_format_version(void)
{
	struct squib_version v = {SQUIB_FORMAT_VERSION_MAJOR, SQUIB_FORMAT_VERSION_MINOR,
				  SQUIB_FORMAT_VERSION_PATCH};
	return v;
}

uint64_t squib_arch_magic(enum squib_arch arch)
{
	switch (arch) {
	case SQUIB_ARCH_AARCH64:
		return SQUIB_MAGIC_AARCH64;
	case SQUIB_ARCH_X86_64:
		return SQUIB_MAGIC_X86_64;
	default:
		return 0;
	}
}

enum squib_arch squib_arch_from_magic(uint64_t magic)
{
	if (magic == SQUIB_MAGIC_AARCH64)
		return SQUIB_ARCH_AARCH64;
	if (magic == SQUIB_MAGIC_X86_64)
		return SQUIB_ARCH_X86_64;
	return SQUIB_ARCH_ANY;
}

enum squib_arch squib_host_arch(void)
{
#if defined(__aarch64__)
	return SQUIB_ARCH_AARCH64;
#else
	return SQUIB_ARCH_X86_64;
#endif
}

/* ====================================================================== */
/* Encoding                                                                */
/* ====================================================================== */

/* Offsets inside the 24-byte header. */
#define HDR_OFF_MAJOR	    8
#define HDR_OFF_RESERVED    14
#define HDR_OFF_PAYLOAD_LEN 16

/* mpidr, x[31], sp, pc, pstate, v[32] (lo, hi), fpsr, fpcr: all u64. */
#define VCPU_REG_WORDS (1 + 31 + 3 + 64 + 2)

struct encoder {
	struct squib_wire_writer w;
	const struct squib_microvm_state *s;
	const struct squib_device_state **devs; /* canonical order */
	struct squib_sysreg_value *scratch;	/* sorted copy of one vCPU's sysregs */
	struct squib_error_detail *d;
};

static bool is_known_tag(uint32_t tag)
{
	return (tag >= SQUIB_SECTION_VM_INFO && tag <= SQUIB_SECTION_MMDS) ||
	       tag == SQUIB_SECTION_VCPU_X86_64 || tag == SQUIB_SECTION_X86_VM ||
	       tag == SQUIB_SECTION_MEMORY;
}

static const char *section_name(uint32_t tag)
{
	switch (tag) {
	case SQUIB_SECTION_VM_INFO:
		return "VM_INFO";
	case SQUIB_SECTION_VCPU_ARM64:
		return "VCPU_ARM64";
	case SQUIB_SECTION_GIC:
		return "GIC";
	case SQUIB_SECTION_DEVICE:
		return "DEVICE";
	case SQUIB_SECTION_MMDS:
		return "MMDS";
	case SQUIB_SECTION_VCPU_X86_64:
		return "VCPU_X86_64";
	case SQUIB_SECTION_X86_VM:
		return "X86_VM";
	case SQUIB_SECTION_MEMORY:
		return "MEMORY";
	default:
		return "unknown";
	}
}

static int check_str(const char *s, const char *what, struct squib_error_detail *d)
{
	if (s && !squib_utf8_valid((const uint8_t *)s, strlen(s)))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "%s is not valid UTF-8", what);
	return 0;
}

static int check_vm_info(const struct squib_vm_info *vi, struct squib_error_detail *d)
{
	int rc;

	if ((rc = check_str(vi->cpu_template, "vm_info.cpu_template", d)) ||
	    (rc = check_str(vi->kernel_image_path, "vm_info.kernel_image_path", d)) ||
	    (rc = check_str(vi->initrd_path, "vm_info.initrd_path", d)))
		return rc;
	return check_str(vi->boot_args, "vm_info.boot_args", d);
}

static int check_x86(const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	int rc;

	if (s->vcpu_count && !s->x86_vcpus)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "x86_64 state with %u vCPUs has no x86_vcpus", s->vcpu_count);
	for (uint32_t i = 0; i < s->vcpu_count; i++)
		if ((rc = squib_x86_check_vcpu(&s->x86_vcpus[i], i, d)))
			return rc;
	return 0;
}

static int check_vcpus(const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	if (s->vcpu_count > SQUIB_STATE_MAX_VCPUS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "%u vCPUs (at most %d)",
				      s->vcpu_count, SQUIB_STATE_MAX_VCPUS);
	if (s->arch == SQUIB_ARCH_X86_64)
		return check_x86(s, d);
	if (s->x86_vm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "x86_vm in an aarch64 state");
	if (s->vcpu_count && !s->arm64_vcpus)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "arm64_vcpus is NULL");
	for (uint32_t i = 0; i < s->vcpu_count; i++) {
		const struct squib_arm64_vcpu *v = &s->arm64_vcpus[i];
		if ((unsigned)v->psci_state > SQUIB_PSCI_ON_PENDING)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "vCPU %u: invalid psci_state %d", i,
					      (int)v->psci_state);
		if (v->sys_reg_count > SQUIB_STATE_MAX_SYSREGS ||
		    (v->sys_reg_count && !v->sys_regs))
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "vCPU %u: bad sysreg array (%u entries)", i,
					      v->sys_reg_count);
	}
	return 0;
}

static int check_devices(const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	int rc;

	if (s->device_count > SQUIB_STATE_MAX_DEVICES || (s->device_count && !s->devices))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "bad device array (%u entries)",
				      s->device_count);
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct squib_device_state *dev = &s->devices[i];
		if ((rc = check_str(dev->kind, "device kind", d)) ||
		    (rc = check_str(dev->id, "device id", d)))
			return rc;
		if (dev->blob_len && !dev->blob)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "device %u: blob is NULL", i);
	}
	return 0;
}

/* Extras must already be canonical: decode produces them that way, and the
 * relative order of equal tags cannot be recovered by sorting. */
static int check_extras(const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	if (s->extra_section_count > SQUIB_STATE_MAX_EXTRA_SECTIONS ||
	    (s->extra_section_count && !s->extra_sections))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "bad extra section array (%u entries)",
				      s->extra_section_count);
	for (uint32_t i = 0; i < s->extra_section_count; i++) {
		const struct squib_raw_section *x = &s->extra_sections[i];
		if (is_known_tag(x->tag) || x->flags != SQUIB_SECTION_FLAG_SKIPPABLE ||
		    (x->len && !x->bytes) || (i && x->tag < x[-1].tag))
			return squib_fail_msg(
				d, SQUIB_E_INVALID_ARGUMENT,
				"extra section %u (tag 0x%04x, flags 0x%04x) is not a "
				"skippable unknown section in tag order",
				i, x->tag, x->flags);
	}
	return 0;
}

static int check_state(const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	int rc;

	if (s->arch != SQUIB_ARCH_AARCH64 && s->arch != SQUIB_ARCH_X86_64)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "state architecture must be aarch64 or x86_64");
	if ((rc = check_vm_info(&s->vm_info, d)) || (rc = check_vcpus(s, d)) ||
	    (rc = check_devices(s, d)) || (rc = check_extras(s, d)))
		return rc;
	if (s->gic.size && !s->gic.bytes)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "gic.bytes is NULL");
	if (s->memory &&
	    (rc = squib_memory_layout_validate(s->memory, SQUIB_E_INVALID_ARGUMENT, d)))
		return rc;
	if (s->mmds)
		return check_str(s->mmds->data_json, "mmds.data_json", d);
	return 0;
}

static int device_ptr_cmp(const void *a, const void *b)
{
	return squib_device_compare(*(const struct squib_device_state *const *)a,
				    *(const struct squib_device_state *const *)b);
}

static int sort_devices(struct encoder *e)
{
	const struct squib_microvm_state *s = e->s;

	if (!s->device_count)
		return 0;
	e->devs = malloc(s->device_count * sizeof(*e->devs));
	if (!e->devs)
		return squib_fail(e->d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < s->device_count; i++)
		e->devs[i] = &s->devices[i];
	qsort(e->devs, s->device_count, sizeof(*e->devs), device_ptr_cmp);
	for (uint32_t i = 1; i < s->device_count; i++)
		if (squib_device_compare(e->devs[i - 1], e->devs[i]) == 0)
			return squib_fail_msg(e->d, SQUIB_E_INVALID_ARGUMENT,
					      "duplicate device (mmio_slot %u, id \"%s\")",
					      e->devs[i]->mmio_slot,
					      e->devs[i]->id ? e->devs[i]->id : "");
	return 0;
}

static int sysreg_cmp(const void *a, const void *b)
{
	uint64_t ka = ((const struct squib_sysreg_value *)a)->key;
	uint64_t kb = ((const struct squib_sysreg_value *)b)->key;

	return ka < kb ? -1 : ka > kb;
}

static bool sysregs_ascending(const struct squib_sysreg_value *r, uint32_t n)
{
	for (uint32_t i = 1; i < n; i++)
		if (r[i - 1].key >= r[i].key)
			return false;
	return true;
}

/* The vCPU's sysregs in ascending key order: the array itself when it already
 * is (the usual case), else a sorted copy in the scratch buffer. */
static int sorted_sysregs(struct encoder *e, uint32_t idx, const struct squib_sysreg_value **out)
{
	const struct squib_arm64_vcpu *v = &e->s->arm64_vcpus[idx];

	*out = v->sys_regs;
	if (sysregs_ascending(v->sys_regs, v->sys_reg_count))
		return 0;
	if (!e->scratch && !(e->scratch = malloc(SQUIB_STATE_MAX_SYSREGS * sizeof(*e->scratch))))
		return squib_fail(e->d, SQUIB_E_NOMEM);
	memcpy(e->scratch, v->sys_regs, v->sys_reg_count * sizeof(*e->scratch));
	qsort(e->scratch, v->sys_reg_count, sizeof(*e->scratch), sysreg_cmp);
	if (!sysregs_ascending(e->scratch, v->sys_reg_count))
		return squib_fail_msg(e->d, SQUIB_E_INVALID_ARGUMENT,
				      "vCPU %u: duplicate sysreg key", idx);
	*out = e->scratch;
	return 0;
}

static void put_header(struct squib_wire_writer *w, uint64_t magic)
{
	squib_wire_put_u64(w, magic);
	squib_wire_put_u16(w, SQUIB_FORMAT_VERSION_MAJOR);
	squib_wire_put_u16(w, SQUIB_FORMAT_VERSION_MINOR);
	squib_wire_put_u16(w, SQUIB_FORMAT_VERSION_PATCH);
	squib_wire_put_u16(w, 0);
	squib_wire_put_u64(w, 0); /* payload_len, patched at the end */
}

static int put_vm_info(struct encoder *e)
{
	const struct squib_vm_info *vi = &e->s->vm_info;
	size_t sec = squib_wire_section_begin(&e->w, SQUIB_SECTION_VM_INFO, 0);

	squib_wire_put_u64(&e->w, vi->mem_size_mib);
	squib_wire_put_bool(&e->w, vi->smt);
	squib_wire_put_str(&e->w, vi->cpu_template);
	squib_wire_put_str(&e->w, vi->kernel_image_path);
	squib_wire_put_bool(&e->w, vi->initrd_path != NULL);
	if (vi->initrd_path)
		squib_wire_put_str(&e->w, vi->initrd_path);
	squib_wire_put_str(&e->w, vi->boot_args);
	squib_wire_put_bool(&e->w, vi->track_dirty_pages);
	squib_wire_section_end(&e->w, sec);
	return 0;
}

/* The fixed register block, gathered into one array and stored in one pass. */
static void put_vcpu_regs(struct squib_wire_writer *w, const struct squib_arm64_vcpu *v)
{
	uint64_t r[VCPU_REG_WORDS];
	uint8_t *p;
	size_t n = 0;

	r[n++] = v->mpidr;
	for (int i = 0; i < 31; i++)
		r[n++] = v->regs.x[i];
	r[n++] = v->regs.sp;
	r[n++] = v->regs.pc;
	r[n++] = v->regs.pstate;
	for (int i = 0; i < 32; i++) {
		r[n++] = v->fp_regs.v[i].lo;
		r[n++] = v->fp_regs.v[i].hi;
	}
	r[n++] = v->fp_regs.fpsr;
	r[n++] = v->fp_regs.fpcr;
	p = squib_wire_put_space(w, sizeof(r));
	for (size_t i = 0; p && i < VCPU_REG_WORDS; i++)
		squib_put_le64(p + 8 * i, r[i]);
}

static int put_vcpu(struct encoder *e, uint32_t idx)
{
	const struct squib_arm64_vcpu *v = &e->s->arm64_vcpus[idx];
	const struct squib_sysreg_value *regs;
	size_t sec;
	uint8_t *p;
	int rc = sorted_sysregs(e, idx, &regs);

	if (rc)
		return rc;
	sec = squib_wire_section_begin(&e->w, SQUIB_SECTION_VCPU_ARM64, 0);
	put_vcpu_regs(&e->w, v);
	squib_wire_put_u8(&e->w, (uint8_t)v->psci_state);
	squib_wire_put_u32(&e->w, v->sys_reg_count);
	p = squib_wire_put_space(&e->w, (size_t)v->sys_reg_count * 16);
	for (uint32_t i = 0; p && i < v->sys_reg_count; i++) {
		squib_put_le64(p + 16 * i, regs[i].key);
		squib_put_le64(p + 16 * i + 8, regs[i].value);
	}
	squib_wire_section_end(&e->w, sec);
	return 0;
}

static int put_vcpus(struct encoder *e)
{
	int rc = 0;

	if (e->s->arch != SQUIB_ARCH_AARCH64)
		return 0;
	for (uint32_t i = 0; !rc && i < e->s->vcpu_count; i++)
		rc = put_vcpu(e, i);
	return rc;
}

static int put_x86_vcpus(struct encoder *e)
{
	int rc = 0;

	if (e->s->arch != SQUIB_ARCH_X86_64)
		return 0;
	for (uint32_t i = 0; !rc && i < e->s->vcpu_count; i++) {
		size_t sec = squib_wire_section_begin(&e->w, SQUIB_SECTION_VCPU_X86_64, 0);

		rc = squib_x86_put_vcpu(&e->w, &e->s->x86_vcpus[i], i, e->d);
		squib_wire_section_end(&e->w, sec);
	}
	return rc;
}

static int put_x86_vm(struct encoder *e)
{
	size_t sec;

	if (!e->s->x86_vm)
		return 0;
	sec = squib_wire_section_begin(&e->w, SQUIB_SECTION_X86_VM, 0);
	squib_x86_put_vm(&e->w, e->s->x86_vm);
	squib_wire_section_end(&e->w, sec);
	return 0;
}

/* x86_64 has no GIC: the section is written there only when it carries
 * something, so an empty x86_64 GIC state has exactly one encoding. */
static int put_gic(struct encoder *e)
{
	const struct squib_gic_state *g = &e->s->gic;
	size_t sec;

	if (e->s->arch != SQUIB_ARCH_AARCH64 && !g->len && !g->size)
		return 0;
	sec = squib_wire_section_begin(&e->w, SQUIB_SECTION_GIC, 0);
	squib_wire_put_u64(&e->w, g->len);
	squib_wire_put_blob(&e->w, g->bytes, g->size);
	squib_wire_section_end(&e->w, sec);
	return 0;
}

static int put_devices(struct encoder *e)
{
	for (uint32_t i = 0; i < e->s->device_count; i++) {
		const struct squib_device_state *dev = e->devs[i];
		size_t sec = squib_wire_section_begin(&e->w, SQUIB_SECTION_DEVICE, 0);

		squib_wire_put_str(&e->w, dev->kind);
		squib_wire_put_str(&e->w, dev->id);
		squib_wire_put_u32(&e->w, dev->mmio_slot);
		squib_wire_put_blob(&e->w, dev->blob, dev->blob_len);
		squib_wire_section_end(&e->w, sec);
	}
	return 0;
}

static int put_mmds(struct encoder *e)
{
	const struct squib_mmds_state *m = e->s->mmds;
	size_t sec;

	if (!m)
		return 0;
	sec = squib_wire_section_begin(&e->w, SQUIB_SECTION_MMDS, 0);
	squib_wire_put_str(&e->w, m->data_json);
	squib_wire_put_bool(&e->w, m->has_token_ttl);
	if (m->has_token_ttl)
		squib_wire_put_u32(&e->w, m->token_ttl_seconds);
	squib_wire_section_end(&e->w, sec);
	return 0;
}

_Static_assert(sizeof(struct squib_mem_region) == 16, "region is two u64");
_Static_assert(sizeof(struct squib_page_extent) == 16, "extent is two u64");

/* u64 pairs (regions, extents) in one reservation: a manifest can hold
 * hundreds of thousands of them. */
static void put_pairs(struct squib_wire_writer *w, const uint64_t *pairs, uint64_t n)
{
	uint8_t *p = squib_wire_put_space(w, (size_t)n * 16);

	for (uint64_t i = 0; p && i < 2 * n; i++)
		squib_put_le64(p + 8 * i, pairs[i]);
}

static int put_memory(struct encoder *e)
{
	const struct squib_memory_layout *m = e->s->memory;
	size_t sec;

	if (!m)
		return 0;
	sec = squib_wire_section_begin(&e->w, SQUIB_SECTION_MEMORY, 0);
	squib_wire_put_u8(&e->w, (uint8_t)m->kind);
	squib_wire_put_bytes(&e->w, m->id, SQUIB_MEMORY_ID_SIZE);
	squib_wire_put_bytes(&e->w, m->parent_id, SQUIB_MEMORY_ID_SIZE);
	squib_wire_put_u64(&e->w, m->page_size);
	squib_wire_put_u64(&e->w, m->ram_size);
	squib_wire_put_u64(&e->w, m->file_size);
	squib_wire_put_u64(&e->w, m->present_pages);
	squib_wire_put_u32(&e->w, m->region_count);
	/* The structs are two uint64_t each, so they are already u64 pairs. */
	put_pairs(&e->w, (const uint64_t *)m->regions, m->region_count);
	/* validate bounds extent_count by 2^24, so it fits the u32 field. */
	squib_wire_put_u32(&e->w, (uint32_t)m->extent_count);
	put_pairs(&e->w, (const uint64_t *)m->extents, m->extent_count);
	squib_wire_section_end(&e->w, sec);
	return 0;
}

/* Extra (unknown, skippable) sections with tag < `below`, starting at index i. */
static uint32_t put_extras_below(struct encoder *e, uint32_t i, uint32_t below)
{
	const struct squib_microvm_state *s = e->s;

	for (; i < s->extra_section_count && s->extra_sections[i].tag < below; i++) {
		const struct squib_raw_section *x = &s->extra_sections[i];
		size_t sec = squib_wire_section_begin(&e->w, x->tag, x->flags);

		squib_wire_put_bytes(&e->w, x->bytes, x->len);
		squib_wire_section_end(&e->w, sec);
	}
	return i;
}

static const struct {
	uint16_t tag;
	int (*put)(struct encoder *e);
} known_sections[] = {
	{SQUIB_SECTION_VM_INFO, put_vm_info},
	{SQUIB_SECTION_VCPU_ARM64, put_vcpus},
	{SQUIB_SECTION_GIC, put_gic},
	{SQUIB_SECTION_DEVICE, put_devices},
	{SQUIB_SECTION_MMDS, put_mmds},
	{SQUIB_SECTION_VCPU_X86_64, put_x86_vcpus},
	{SQUIB_SECTION_X86_VM, put_x86_vm},
	{SQUIB_SECTION_MEMORY, put_memory},
};

static int put_sections(struct encoder *e)
{
	uint32_t x = 0;
	int rc;

	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(known_sections); i++) {
		x = put_extras_below(e, x, known_sections[i].tag);
		if ((rc = known_sections[i].put(e)))
			return rc;
	}
	put_extras_below(e, x, UINT32_MAX);
	return 0;
}

static int finish_file(struct encoder *e)
{
	squib_wire_patch_u64(&e->w, HDR_OFF_PAYLOAD_LEN, e->w.len - SQUIB_STATE_HEADER_SIZE);
	if (!e->w.err)
		squib_wire_put_u64(&e->w, squib_crc64(0, e->w.buf, e->w.len));
	if (e->w.err == SQUIB_E_SIZE_LIMIT_EXCEEDED)
		return squib_fail_limit(e->d, SQUIB_STATE_SIZE_LIMIT);
	if (e->w.err)
		return squib_fail(e->d, e->w.err);
	return 0;
}

int squib_state_encode(const struct squib_microvm_state *s, uint8_t **out, size_t *out_len,
		       struct squib_error_detail *d)
{
	struct encoder e = {.s = s, .d = d};
	int rc;

	if (!s || !out || !out_len)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to encode");
	*out = NULL;
	*out_len = 0;
	if ((rc = check_state(s, d)) || (rc = sort_devices(&e)))
		goto done;
	squib_wire_writer_init(&e.w, SQUIB_STATE_SIZE_LIMIT);
	put_header(&e.w, squib_arch_magic(s->arch));
	if (!(rc = put_sections(&e)) && !(rc = finish_file(&e)))
		*out = squib_wire_writer_take(&e.w, out_len);
	squib_wire_writer_free(&e.w);
done:
	free(e.devs);
	free(e.scratch);
	return rc;
}

/* ====================================================================== */
/* Decoding                                                                */
/* ====================================================================== */

struct section {
	uint16_t tag;
	uint16_t flags;
	size_t off; /* of the section header, in the file */
	struct squib_wire_reader body;
};

struct decoder {
	struct squib_microvm_state *s;
	struct squib_error_detail *d;
	struct squib_wire_reader payload;
	uint32_t count[SQUIB_SECTION_MEMORY + 1]; /* known sections seen, by tag */
	uint32_t extra_count;
	bool unknown_mandatory;
	uint16_t unknown_tag; /* the first unknown mandatory section, for the message */
	size_t unknown_off;
	/* Entries filled so far by the content pass. */
	uint32_t vcpus, devices, extras;
};

static int next_section(struct squib_wire_reader *r, struct section *sec)
{
	const uint8_t *h;
	uint32_t len;

	sec->off = r->pos;
	if (squib_wire_remaining(r) < SQUIB_SECTION_HEADER_SIZE)
		return squib_fail_msg(
			r->d, SQUIB_E_ENCODING,
			"truncated section header at offset %zu: needs %u bytes, %zu left", r->pos,
			SQUIB_SECTION_HEADER_SIZE, squib_wire_remaining(r));
	squib_wire_get_bytes(r, SQUIB_SECTION_HEADER_SIZE, "section header", &h);
	sec->tag = squib_get_le16(h);
	sec->flags = squib_get_le16(h + 2);
	len = squib_get_le32(h + 4);
	if (len > squib_wire_remaining(r))
		return squib_fail_msg(
			r->d, SQUIB_E_ENCODING,
			"section 0x%04x at offset %zu: length %u exceeds the %zu bytes "
			"left",
			sec->tag, sec->off, len, squib_wire_remaining(r));
	return squib_wire_get_sub(r, len, "section", &sec->body);
}

/* ---- pass 1: framing, counts and presence ---------------------------- */

/* The architecture a section belongs to; ANY for sections of both. */
static enum squib_arch section_arch(uint16_t tag)
{
	switch (tag) {
	case SQUIB_SECTION_VCPU_ARM64:
		return SQUIB_ARCH_AARCH64;
	case SQUIB_SECTION_VCPU_X86_64:
	case SQUIB_SECTION_X86_VM:
		return SQUIB_ARCH_X86_64;
	default:
		return SQUIB_ARCH_ANY;
	}
}

static int count_known(struct decoder *c, const struct section *sec)
{
	uint32_t n = ++c->count[sec->tag];
	const char *name = section_name(sec->tag);
	enum squib_arch arch = section_arch(sec->tag);

	if (sec->flags)
		return squib_fail_msg(c->d, SQUIB_E_ENCODING,
				      "%s section at offset %zu has flags 0x%04x (must be 0)", name,
				      sec->off, sec->flags);
	if (arch != SQUIB_ARCH_ANY && arch != c->s->arch)
		return squib_fail_msg(c->d, SQUIB_E_ENCODING, "%s section at offset %zu in an %s file",
				      name, sec->off, squib_arch_name(c->s->arch));
	switch (sec->tag) {
	case SQUIB_SECTION_VCPU_ARM64:
	case SQUIB_SECTION_VCPU_X86_64:
		if (n > SQUIB_STATE_MAX_VCPUS)
			return squib_fail_msg(c->d, SQUIB_E_ENCODING,
					      "more than %d %s sections (offset %zu)",
					      SQUIB_STATE_MAX_VCPUS, name, sec->off);
		return 0;
	case SQUIB_SECTION_DEVICE:
		if (n > SQUIB_STATE_MAX_DEVICES)
			return squib_fail_msg(c->d, SQUIB_E_ENCODING,
					      "more than %d DEVICE sections (offset %zu)",
					      SQUIB_STATE_MAX_DEVICES, sec->off);
		return 0;
	default: /* VM_INFO, GIC, MMDS, X86_VM, MEMORY: singletons */
		if (n > 1)
			return squib_fail_msg(c->d, SQUIB_E_ENCODING,
					      "duplicate %s section at offset %zu", name, sec->off);
		return 0;
	}
}

static int count_unknown(struct decoder *c, const struct section *sec)
{
	if (!(sec->flags & SQUIB_SECTION_FLAG_SKIPPABLE)) {
		if (!c->unknown_mandatory) {
			c->unknown_tag = sec->tag;
			c->unknown_off = sec->off;
		}
		c->unknown_mandatory = true;
		return 0;
	}
	if (++c->extra_count > SQUIB_STATE_MAX_EXTRA_SECTIONS)
		return squib_fail_msg(c->d, SQUIB_E_ENCODING,
				      "more than %d unknown skippable sections (offset %zu)",
				      SQUIB_STATE_MAX_EXTRA_SECTIONS, sec->off);
	return 0;
}

static int scan_section(struct decoder *c, const struct section *sec, uint16_t prev_tag)
{
	if (sec->tag < prev_tag)
		return squib_fail_msg(c->d, SQUIB_E_ENCODING,
				      "section 0x%04x at offset %zu is out of order (after 0x%04x)",
				      sec->tag, sec->off, prev_tag);
	if (sec->flags & ~SQUIB_SECTION_FLAG_SKIPPABLE)
		return squib_fail_msg(c->d, SQUIB_E_ENCODING,
				      "section 0x%04x at offset %zu has undefined flag bits 0x%04x",
				      sec->tag, sec->off, sec->flags);
	return is_known_tag(sec->tag) ? count_known(c, sec) : count_unknown(c, sec);
}

static int scan_sections(struct decoder *c)
{
	struct squib_wire_reader r = c->payload;
	struct section sec;
	uint16_t prev = 0;
	int rc;

	while (squib_wire_remaining(&r)) {
		if ((rc = next_section(&r, &sec)) || (rc = scan_section(c, &sec, prev)))
			return rc;
		prev = sec.tag;
	}
	if (!c->count[SQUIB_SECTION_VM_INFO])
		return squib_fail_msg(c->d, SQUIB_E_ENCODING, "missing VM_INFO section");
	if (c->s->arch == SQUIB_ARCH_AARCH64 && !c->count[SQUIB_SECTION_GIC])
		return squib_fail_msg(c->d, SQUIB_E_ENCODING,
				      "missing GIC section (required in aarch64 files)");
	return 0;
}

/* Arrays are sized from sections that pass 1 saw complete in the buffer, so
 * allocation stays proportional to the input. Zeroed entries are safe to free. */
static int alloc_arrays(struct decoder *c)
{
	struct squib_microvm_state *s = c->s;
	uint32_t na = c->count[SQUIB_SECTION_VCPU_ARM64], nx = c->count[SQUIB_SECTION_VCPU_X86_64];
	uint32_t nd = c->count[SQUIB_SECTION_DEVICE];

	/* count_known lets only the file's own architecture's vCPUs through. */
	if (na && !(s->arm64_vcpus = calloc(na, sizeof(*s->arm64_vcpus))))
		return squib_fail(c->d, SQUIB_E_NOMEM);
	if (nx && !(s->x86_vcpus = calloc(nx, sizeof(*s->x86_vcpus))))
		return squib_fail(c->d, SQUIB_E_NOMEM);
	s->vcpu_count = na + nx;
	if (nd && !(s->devices = calloc(nd, sizeof(*s->devices))))
		return squib_fail(c->d, SQUIB_E_NOMEM);
	s->device_count = nd;
	if (c->extra_count &&
	    !(s->extra_sections = calloc(c->extra_count, sizeof(*s->extra_sections))))
		return squib_fail(c->d, SQUIB_E_NOMEM);
	s->extra_section_count = c->extra_count;
	return 0;
}

/* ---- pass 2: content ---------------------------------------------------- */

static int decode_vm_info(struct squib_wire_reader *r, struct squib_vm_info *vi)
{
	bool has_initrd;
	int rc;

	if ((rc = squib_wire_get_u64(r, "vm_info.mem_size_mib", &vi->mem_size_mib)) ||
	    (rc = squib_wire_get_bool(r, "vm_info.smt", &vi->smt)) ||
	    (rc = squib_wire_get_str(r, "vm_info.cpu_template", &vi->cpu_template)) ||
	    (rc = squib_wire_get_str(r, "vm_info.kernel_image_path", &vi->kernel_image_path)) ||
	    (rc = squib_wire_get_opt(r, "vm_info.initrd_path", &has_initrd)))
		return rc;
	if (has_initrd && (rc = squib_wire_get_str(r, "vm_info.initrd_path", &vi->initrd_path)))
		return rc;
	if ((rc = squib_wire_get_str(r, "vm_info.boot_args", &vi->boot_args)))
		return rc;
	return squib_wire_get_bool(r, "vm_info.track_dirty_pages", &vi->track_dirty_pages);
}

static void parse_vcpu_regs(const uint8_t *p, struct squib_arm64_vcpu *v)
{
	v->mpidr = squib_get_le64(p);
	p += 8;
	for (int i = 0; i < 31; i++, p += 8)
		v->regs.x[i] = squib_get_le64(p);
	v->regs.sp = squib_get_le64(p);
	v->regs.pc = squib_get_le64(p + 8);
	v->regs.pstate = squib_get_le64(p + 16);
	p += 24;
	for (int i = 0; i < 32; i++, p += 16) {
		v->fp_regs.v[i].lo = squib_get_le64(p);
		v->fp_regs.v[i].hi = squib_get_le64(p + 8);
	}
	v->fp_regs.fpsr = squib_get_le64(p);
	v->fp_regs.fpcr = squib_get_le64(p + 8);
}

static int sysreg_order_error(struct squib_wire_reader *r, uint32_t idx, size_t at, uint64_t key,
			      uint64_t prev)
{
	return squib_fail_msg(r->d, SQUIB_E_ENCODING,
			      "vCPU %u: sysreg key 0x%" PRIx64 " at offset %zu is not above 0x%" PRIx64,
			      idx, key, at, prev);
}

static int decode_sysregs(struct squib_wire_reader *r, uint32_t idx, struct squib_arm64_vcpu *v)
{
	size_t at = r->pos;
	const uint8_t *p;
	uint32_t n;
	int rc;

	if ((rc = squib_wire_get_u32(r, "vCPU sysreg_count", &n)))
		return rc;
	if (n > SQUIB_STATE_MAX_SYSREGS)
		return squib_fail_msg(r->d, SQUIB_E_ENCODING,
				      "vCPU %u: sysreg_count %u at offset %zu exceeds %d", idx, n,
				      at, SQUIB_STATE_MAX_SYSREGS);
	if ((rc = squib_wire_get_bytes(r, (size_t)n * 16, "vCPU sysreg entries", &p)) || !n)
		return rc;
	if (!(v->sys_regs = malloc((size_t)n * sizeof(*v->sys_regs))))
		return squib_fail(r->d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < n; i++, p += 16) {
		v->sys_regs[i].key = squib_get_le64(p);
		v->sys_regs[i].value = squib_get_le64(p + 8);
		if (i && v->sys_regs[i].key <= v->sys_regs[i - 1].key)
			return sysreg_order_error(r, idx, at + 4 + (size_t)i * 16,
						  v->sys_regs[i].key, v->sys_regs[i - 1].key);
	}
	v->sys_reg_count = n;
	return 0;
}

static int decode_vcpu(struct decoder *c, struct squib_wire_reader *r)
{
	uint32_t idx = c->vcpus++;
	struct squib_arm64_vcpu *v = &c->s->arm64_vcpus[idx];
	const uint8_t *p;
	size_t at;
	uint8_t psci;
	int rc;

	if ((rc = squib_wire_get_bytes(r, VCPU_REG_WORDS * 8, "vCPU registers", &p)))
		return rc;
	parse_vcpu_regs(p, v);
	at = r->pos;
	if ((rc = squib_wire_get_u8(r, "vCPU psci_state", &psci)))
		return rc;
	if (psci > SQUIB_PSCI_ON_PENDING)
		return squib_fail_msg(c->d, SQUIB_E_ENCODING,
				      "vCPU %u: invalid psci_state %u at offset %zu", idx, psci,
				      at);
	v->psci_state = (enum squib_psci_state)psci;
	return decode_sysregs(r, idx, v);
}

static int decode_gic(struct decoder *c, struct section *sec)
{
	struct squib_gic_state *g = &c->s->gic;
	int rc;

	if ((rc = squib_wire_get_u64(&sec->body, "gic.len", &g->len)) ||
	    (rc = squib_wire_get_blob(&sec->body, "gic.bytes", &g->bytes, &g->size)))
		return rc;
	/* The encoder omits an empty x86_64 GIC; accepting one would give a file
	 * that does not re-encode to itself. */
	if (c->s->arch != SQUIB_ARCH_AARCH64 && !g->len && !g->size)
		return squib_fail_msg(c->d, SQUIB_E_ENCODING,
				      "empty GIC section at offset %zu in an x86_64 file",
				      sec->off);
	return 0;
}

static int check_device_order(struct decoder *c, const struct section *sec, uint32_t idx)
{
	const struct squib_device_state *prev = &c->s->devices[idx - 1], *dev = prev + 1;
	int cmp = squib_device_compare(prev, dev);

	if (cmp < 0)
		return 0;
	if (cmp == 0)
		return squib_fail_msg(c->d, SQUIB_E_ENCODING,
				      "duplicate device (mmio_slot %u, id \"%.64s\") at offset %zu",
				      dev->mmio_slot, dev->id, sec->off);
	return squib_fail_msg(c->d, SQUIB_E_ENCODING,
			      "device at offset %zu (mmio_slot %u, id \"%.64s\") is out of order "
			      "after (mmio_slot %u, id \"%.64s\")",
			      sec->off, dev->mmio_slot, dev->id, prev->mmio_slot, prev->id);
}

static int decode_device(struct decoder *c, struct section *sec)
{
	uint32_t idx = c->devices++;
	struct squib_device_state *dev = &c->s->devices[idx];
	struct squib_wire_reader *r = &sec->body;
	int rc;

	if ((rc = squib_wire_get_str(r, "device.kind", &dev->kind)) ||
	    (rc = squib_wire_get_str(r, "device.id", &dev->id)) ||
	    (rc = squib_wire_get_u32(r, "device.mmio_slot", &dev->mmio_slot)) ||
	    (rc = squib_wire_get_blob(r, "device.blob", &dev->blob, &dev->blob_len)))
		return rc;
	return idx ? check_device_order(c, sec, idx) : 0;
}

static int decode_mmds(struct decoder *c, struct squib_wire_reader *r)
{
	struct squib_mmds_state *m = calloc(1, sizeof(*m));
	int rc;

	if (!m)
		return squib_fail(c->d, SQUIB_E_NOMEM);
	c->s->mmds = m;
	if ((rc = squib_wire_get_str(r, "mmds.data_json", &m->data_json)) ||
	    (rc = squib_wire_get_opt(r, "mmds.token_ttl_seconds", &m->has_token_ttl)))
		return rc;
	if (!m->has_token_ttl)
		return 0;
	return squib_wire_get_u32(r, "mmds.token_ttl_seconds", &m->token_ttl_seconds);
}

/* `n` u64 pairs (n already bounded by the caller) into a new array. */
static int get_pairs(struct squib_wire_reader *r, uint64_t n, const char *what, uint64_t **out)
{
	const uint8_t *p;
	uint64_t *v;
	int rc;

	*out = NULL;
	/* Bytes first, so the allocation never exceeds what the file holds. */
	if ((rc = squib_wire_get_bytes(r, (size_t)n * 16, what, &p)) || !n)
		return rc;
	if (!(v = malloc((size_t)n * 16)))
		return squib_fail(r->d, SQUIB_E_NOMEM);
	for (uint64_t i = 0; i < 2 * n; i++)
		v[i] = squib_get_le64(p + 8 * i);
	*out = v;
	return 0;
}

static int decode_memory_fields(struct squib_wire_reader *r, struct squib_memory_layout *m)
{
	const uint8_t *ids;
	uint8_t kind;
	int rc;

	if ((rc = squib_wire_get_u8(r, "memory.kind", &kind)) ||
	    (rc = squib_wire_get_bytes(r, 2 * SQUIB_MEMORY_ID_SIZE, "memory ids", &ids)) ||
	    (rc = squib_wire_get_u64(r, "memory.page_size", &m->page_size)) ||
	    (rc = squib_wire_get_u64(r, "memory.ram_size", &m->ram_size)) ||
	    (rc = squib_wire_get_u64(r, "memory.file_size", &m->file_size)) ||
	    (rc = squib_wire_get_u64(r, "memory.present_pages", &m->present_pages)))
		return rc;
	m->kind = (enum squib_memory_kind)kind;
	memcpy(m->id, ids, SQUIB_MEMORY_ID_SIZE);
	memcpy(m->parent_id, ids + SQUIB_MEMORY_ID_SIZE, SQUIB_MEMORY_ID_SIZE);
	return 0;
}

static int decode_memory_arrays(struct squib_wire_reader *r, struct squib_memory_layout *m)
{
	size_t at = r->pos;
	uint64_t *v = NULL;
	uint32_t n;
	int rc;

	if ((rc = squib_wire_get_u32(r, "memory.region_count", &n)))
		return rc;
	if (n > SQUIB_MEMORY_MAX_REGIONS)
		return squib_fail_msg(r->d, SQUIB_E_ENCODING,
				      "memory.region_count %u at offset %zu exceeds %u", n, at,
				      SQUIB_MEMORY_MAX_REGIONS);
	m->region_count = n;
	rc = get_pairs(r, n, "memory regions", &v);
	m->regions = (struct squib_mem_region *)v; /* two u64 per struct, no padding */
	v = NULL;
	if (rc || (rc = squib_wire_get_u32(r, "memory.extent_count", &n)))
		return rc;
	m->extent_count = n;
	rc = get_pairs(r, n, "memory extents", &v);
	m->extents = (struct squib_page_extent *)v;
	return rc;
}

static int decode_memory(struct decoder *c, struct section *sec)
{
	struct squib_memory_layout *m = calloc(1, sizeof(*m));
	char msg[SQUIB_DETAIL_MSG_MAX];
	int rc;

	if (!m)
		return squib_fail(c->d, SQUIB_E_NOMEM);
	c->s->memory = m;
	if ((rc = decode_memory_fields(&sec->body, m)) ||
	    (rc = decode_memory_arrays(&sec->body, m)) ||
	    (rc = squib_wire_expect_end(&sec->body, "MEMORY section")))
		return rc;
	rc = squib_memory_layout_validate(m, SQUIB_E_ENCODING, c->d);
	if (rc && c->d) { /* say where: the rule's text alone names no offset */
		squib_strlcpy(msg, c->d->msg, sizeof(msg));
		squib_fail_msg(c->d, rc, "MEMORY section at offset %zu: %s", sec->off, msg);
	}
	return rc;
}

static int decode_x86_vm(struct decoder *c, struct squib_wire_reader *r)
{
	if (!(c->s->x86_vm = calloc(1, sizeof(*c->s->x86_vm))))
		return squib_fail(c->d, SQUIB_E_NOMEM);
	return squib_x86_get_vm(r, c->s->x86_vm);
}

/* An unknown section: kept verbatim when skippable, ignored otherwise (the
 * caller reports it once everything else has been checked). */
static int keep_extra(struct decoder *c, struct section *sec)
{
	struct squib_raw_section *x;
	size_t n = squib_wire_remaining(&sec->body);

	if (!(sec->flags & SQUIB_SECTION_FLAG_SKIPPABLE))
		return 0;
	x = &c->s->extra_sections[c->extras++];
	x->tag = sec->tag;
	x->flags = sec->flags;
	x->len = (uint32_t)n;
	if (n && !(x->bytes = malloc(n)))
		return squib_fail(c->d, SQUIB_E_NOMEM);
	if (n)
		memcpy(x->bytes, sec->body.buf + sec->body.pos, n);
	sec->body.pos = sec->body.end;
	return 0;
}

static int decode_section(struct decoder *c, struct section *sec)
{
	char what[32];
	int rc;

	switch (sec->tag) {
	case SQUIB_SECTION_VM_INFO:
		rc = decode_vm_info(&sec->body, &c->s->vm_info);
		break;
	case SQUIB_SECTION_VCPU_ARM64:
		rc = decode_vcpu(c, &sec->body);
		break;
	case SQUIB_SECTION_GIC:
		rc = decode_gic(c, sec);
		break;
	case SQUIB_SECTION_DEVICE:
		rc = decode_device(c, sec);
		break;
	case SQUIB_SECTION_MMDS:
		rc = decode_mmds(c, &sec->body);
		break;
	case SQUIB_SECTION_VCPU_X86_64:
		rc = squib_x86_get_vcpu(&sec->body, c->vcpus, &c->s->x86_vcpus[c->vcpus]);
		c->vcpus++;
		break;
	case SQUIB_SECTION_X86_VM:
		rc = decode_x86_vm(c, &sec->body);
		break;
	case SQUIB_SECTION_MEMORY:
		return decode_memory(c, sec);
	default:
		return keep_extra(c, sec);
	}
	if (rc)
		return rc;
	snprintf(what, sizeof(what), "%s section", section_name(sec->tag));
	return squib_wire_expect_end(&sec->body, what);
}

static int decode_payload(struct decoder *c)
{
	struct squib_wire_reader r = c->payload;
	struct section sec;
	int rc;

	if ((rc = scan_sections(c)) || (rc = alloc_arrays(c)))
		return rc;
	while (squib_wire_remaining(&r))
		if ((rc = next_section(&r, &sec)) || (rc = decode_section(c, &sec)))
			return rc;
	if (c->unknown_mandatory)
		return squib_fail_msg(c->d, SQUIB_E_INCOMPATIBLE,
				      "unknown mandatory section, tag %u at offset %zu",
				      c->unknown_tag, c->unknown_off);
	return 0;
}

/* ---- header and entry points ------------------------------------------- */

int squib_envelope_parse_header(const uint8_t *buf, size_t len, struct squib_envelope_header *hdr,
				struct squib_error_detail *d)
{
	if (!hdr || (!buf && len))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to parse_header");
	if (len < SQUIB_STATE_HEADER_SIZE)
		return squib_fail(d, SQUIB_E_TOO_SHORT);
	hdr->magic = squib_get_le64(buf);
	hdr->version.major = squib_get_le16(buf + HDR_OFF_MAJOR);
	hdr->version.minor = squib_get_le16(buf + HDR_OFF_MAJOR + 2);
	hdr->version.patch = squib_get_le16(buf + HDR_OFF_MAJOR + 4);
	hdr->payload_len = squib_get_le64(buf + HDR_OFF_PAYLOAD_LEN);
	return 0;
}

static int check_magic(uint64_t magic, enum squib_arch expected, struct squib_error_detail *d)
{
	if (expected == SQUIB_ARCH_ANY) {
		if (squib_arch_from_magic(magic) == SQUIB_ARCH_ANY)
			return squib_fail_magic(d, magic, squib_arch_magic(squib_host_arch()));
		return 0;
	}
	if (magic != squib_arch_magic(expected))
		return squib_fail_magic(d, magic, squib_arch_magic(expected));
	return 0;
}

/* Same major, minor not newer than ours; the patch level never matters. */
static int check_version(struct squib_version v, struct squib_error_detail *d)
{
	if (v.major != SQUIB_FORMAT_VERSION_MAJOR || v.minor > SQUIB_FORMAT_VERSION_MINOR)
		return squib_fail_version(d, v, squib_format_version());
	return 0;
}

static int check_header(const uint8_t *body, size_t len, enum squib_arch expected,
			struct squib_envelope_header *h, struct squib_error_detail *d)
{
	uint16_t reserved = squib_get_le16(body + HDR_OFF_RESERVED);
	int rc;

	if ((rc = squib_envelope_parse_header(body, len, h, d)) ||
	    (rc = check_magic(h->magic, expected, d)) || (rc = check_version(h->version, d)))
		return rc;
	if (reserved)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "reserved header field at offset %d is 0x%04x (must be 0)",
				      HDR_OFF_RESERVED, reserved);
	if (h->payload_len != len - SQUIB_STATE_HEADER_SIZE)
		return squib_fail_msg(d, SQUIB_E_ENCODING,
				      "header payload_len %" PRIu64 " but %zu payload bytes present",
				      h->payload_len, len - SQUIB_STATE_HEADER_SIZE);
	return 0;
}

int squib_state_decode_body(const uint8_t *body, size_t len, enum squib_arch expected,
			    struct squib_microvm_state *out, struct squib_envelope_header *hdr,
			    struct squib_error_detail *d)
{
	struct squib_envelope_header h;
	struct decoder c = {.s = out, .d = d};
	int rc;

	if (!out || (!body && len))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to decode");
	squib_state_init(out, expected);
	if (len > SQUIB_STATE_SIZE_LIMIT)
		return squib_fail_limit(d, SQUIB_STATE_SIZE_LIMIT);
	if (len < SQUIB_STATE_HEADER_SIZE)
		return squib_fail(d, SQUIB_E_TOO_SHORT);
	if ((rc = check_header(body, len, expected, &h, d)))
		return rc;
	if (hdr)
		*hdr = h;
	out->arch = squib_arch_from_magic(h.magic);
	squib_wire_reader_init(&c.payload, body, len, d);
	c.payload.pos = SQUIB_STATE_HEADER_SIZE;
	if ((rc = decode_payload(&c))) {
		squib_state_free(out);
		squib_state_init(out, expected);
	}
	return rc;
}

int squib_state_decode(const uint8_t *buf, size_t len, enum squib_arch expected,
		       struct squib_microvm_state *out, struct squib_envelope_header *hdr,
		       struct squib_error_detail *d)
{
	if (!out || (!buf && len))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to decode");
	squib_state_init(out, expected);
	if (len > SQUIB_STATE_SIZE_LIMIT)
		return squib_fail_limit(d, SQUIB_STATE_SIZE_LIMIT);
	if (len < SQUIB_STATE_HEADER_SIZE + SQUIB_STATE_TRAILER_SIZE)
		return squib_fail(d, SQUIB_E_TOO_SHORT);
	/* CRC first: a magic or version mismatch means nothing on corrupted bytes. */
	if (squib_crc64(0, buf, len) != 0)
		return squib_fail(d, SQUIB_E_CRC_MISMATCH);
	return squib_state_decode_body(buf, len - SQUIB_STATE_TRAILER_SIZE, expected, out, hdr, d);
}

/* ====================================================================== */
/* Files                                                                   */
/* ====================================================================== */

/* Make room for at least one more byte, never past `max` in total. */
static int grow_read_buffer(uint8_t **buf, size_t *cap, size_t max)
{
	size_t ncap = *cap > max / 2 ? max : *cap * 2;
	uint8_t *b = realloc(*buf, ncap);

	if (!b)
		return SQUIB_E_NOMEM;
	*buf = b;
	*cap = ncap;
	return 0;
}

/* Read until EOF or limit+1 bytes, whichever comes first, so an oversized (or
 * endless) file costs at most limit+1 bytes. `hint` (the size fstat reported)
 * only sizes the first allocation. */
static int read_bounded(int fd, size_t hint, uint8_t **out, size_t *out_len,
			struct squib_error_detail *d)
{
	const size_t max = (size_t)SQUIB_STATE_SIZE_LIMIT + 1;
	size_t cap = hint && hint < max ? hint + 1 : 65536, off = 0;
	uint8_t *buf = malloc(cap);
	int rc = buf ? 0 : SQUIB_E_NOMEM;

	while (!rc && off < max) {
		ssize_t n;
		if (off == cap && (rc = grow_read_buffer(&buf, &cap, max)))
			break;
		n = read(fd, buf + off, cap - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rc = squib_fail_errno(d, SQUIB_E_IO, errno);
		else if (n == 0)
			break;
		else
			off += (size_t)n;
	}
	if (!rc && off > SQUIB_STATE_SIZE_LIMIT)
		rc = squib_fail_limit(d, SQUIB_STATE_SIZE_LIMIT);
	if (rc == SQUIB_E_NOMEM)
		squib_fail(d, rc);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*out_len = off;
	return 0;
}

int squib_state_read_file(const char *path, uint8_t **buf, size_t *len,
			  struct squib_error_detail *d)
{
	struct stat st;
	size_t hint = 0;
	int fd, rc;

	if (!path || !buf || !len)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to read_file");
	*buf = NULL;
	*len = 0;
	if ((fd = squib_input_open(path, O_RDONLY, SQUIB_E_IO, &st, d)) < 0)
		return fd;
	if (st.st_size > 0)
		hint = (size_t)st.st_size;
	rc = squib_input_expect(fd, (uint64_t)st.st_size, path, SQUIB_INPUT_STATE, d);
	if (!rc && (rc = read_bounded(fd, hint, buf, len, d)) == SQUIB_E_IO && d)
		snprintf(d->msg, sizeof(d->msg), "reading %s", path);
	close(fd);
	return rc;
}

int squib_state_read_fd(int fd, uint8_t **buf, size_t *len, struct squib_error_detail *d)
{
	struct stat st;

	if (fd < 0 || !buf || !len)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "bad argument to read_fd");
	*buf = NULL;
	*len = 0;
	return read_bounded(fd, fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size : 0, buf,
			    len, d);
}

int squib_state_load_file(const char *path, enum squib_arch expected,
			  struct squib_microvm_state *out, struct squib_envelope_header *hdr,
			  struct squib_error_detail *d)
{
	uint8_t *buf;
	size_t len;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to load_file");
	squib_state_init(out, expected);
	if ((rc = squib_state_read_file(path, &buf, &len, d)))
		return rc;
	rc = squib_state_decode(buf, len, expected, out, hdr, d);
	free(buf);
	return rc;
}

int squib_state_save_file(const char *path, const struct squib_microvm_state *s,
			  struct squib_error_detail *d)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = squib_state_encode(s, &buf, &len, d);

	if (rc == 0)
		rc = squib_atomic_write_file(path, buf, len, NULL, d);
	free(buf);
	return rc;
}
