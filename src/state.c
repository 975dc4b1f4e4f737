/* SPDX-License-Identifier: Apache-2.0 */
/* The in-memory microVM state: ownership, canonical ordering, verify_compatible. */
#include <squib/state.h>

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "x86_codec.h"

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

void squib_state_init(struct squib_microvm_state *s, enum squib_arch arch)
{
	memset(s, 0, sizeof(*s));
	s->arch = arch;
}

static void vm_info_free(struct squib_vm_info *vi)
{
	free(vi->cpu_template);
	free(vi->kernel_image_path);
	free(vi->initrd_path);
	free(vi->boot_args);
}

static void device_release(struct squib_device_state *dev)
{
	free(dev->kind);
	free(dev->id);
	free(dev->blob);
}

static void devices_free(struct squib_device_state *devs, uint32_t n)
{
	for (uint32_t i = 0; devs && i < n; i++)
		device_release(&devs[i]);
	free(devs);
}

static void mmds_free(struct squib_mmds_state *m)
{
	if (m)
		free(m->data_json);
	free(m);
}

static void x86_vcpu_release(struct squib_x86_vcpu *v)
{
	free(v->cpuid);
	free(v->msrs);
	free(v->xsave);
}

void squib_state_free(struct squib_microvm_state *s)
{
	if (!s)
		return;
	vm_info_free(&s->vm_info);
	for (uint32_t i = 0; s->arm64_vcpus && i < s->vcpu_count; i++)
		free(s->arm64_vcpus[i].sys_regs);
	free(s->arm64_vcpus);
	for (uint32_t i = 0; s->x86_vcpus && i < s->vcpu_count; i++)
		x86_vcpu_release(&s->x86_vcpus[i]);
	free(s->x86_vcpus);
	free(s->x86_vm);
	free(s->gic.bytes);
	devices_free(s->devices, s->device_count);
	mmds_free(s->mmds);
	for (uint32_t i = 0; s->extra_sections && i < s->extra_section_count; i++)
		free(s->extra_sections[i].bytes);
	free(s->extra_sections);
	squib_memory_layout_release(s->memory);
	free(s->memory);
	squib_state_init(s, s->arch);
}

/* ---- equality ---------------------------------------------------------- */

/* NULL and "" are the same value for the non-optional string fields. */
static bool str_equal(const char *a, const char *b)
{
	return strcmp(or_empty(a), or_empty(b)) == 0;
}

static bool opt_str_equal(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool bytes_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool vm_info_equal(const struct squib_vm_info *a, const struct squib_vm_info *b)
{
	return a->mem_size_mib == b->mem_size_mib && a->smt == b->smt &&
	       str_equal(a->cpu_template, b->cpu_template) &&
	       str_equal(a->kernel_image_path, b->kernel_image_path) &&
	       opt_str_equal(a->initrd_path, b->initrd_path) &&
	       str_equal(a->boot_args, b->boot_args) &&
	       a->track_dirty_pages == b->track_dirty_pages;
}

/* The register blocks are all uint64_t (no padding), so memcmp is exact for them;
 * the vCPU struct as a whole has padding and pointers, hence field by field. */
static bool vcpu_equal(const struct squib_arm64_vcpu *a, const struct squib_arm64_vcpu *b)
{
	if (a->mpidr != b->mpidr || a->psci_state != b->psci_state ||
	    a->sys_reg_count != b->sys_reg_count)
		return false;
	if (memcmp(&a->regs, &b->regs, sizeof(a->regs)) != 0 ||
	    memcmp(&a->fp_regs, &b->fp_regs, sizeof(a->fp_regs)) != 0)
		return false;
	for (uint32_t i = 0; i < a->sys_reg_count; i++)
		if (a->sys_regs[i].key != b->sys_regs[i].key ||
		    a->sys_regs[i].value != b->sys_regs[i].value)
			return false;
	return true;
}

static bool device_equal(const struct squib_device_state *a, const struct squib_device_state *b)
{
	return a->mmio_slot == b->mmio_slot && str_equal(a->kind, b->kind) &&
	       str_equal(a->id, b->id) && bytes_equal(a->blob, a->blob_len, b->blob, b->blob_len);
}

static bool mmds_equal(const struct squib_mmds_state *a, const struct squib_mmds_state *b)
{
	if (!a || !b)
		return a == b;
	if (a->has_token_ttl != b->has_token_ttl)
		return false;
	if (a->has_token_ttl && a->token_ttl_seconds != b->token_ttl_seconds)
		return false;
	return str_equal(a->data_json, b->data_json);
}

static bool extra_equal(const struct squib_raw_section *a, const struct squib_raw_section *b)
{
	return a->tag == b->tag && a->flags == b->flags &&
	       bytes_equal(a->bytes, a->len, b->bytes, b->len);
}

/* ---- x86_64: field by field, the structs have padding ------------------- */

static bool x86_segment_equal(const struct squib_x86_segment *a, const struct squib_x86_segment *b)
{
	return a->base == b->base && a->limit == b->limit && a->selector == b->selector &&
	       a->type == b->type && a->present == b->present && a->dpl == b->dpl &&
	       a->db == b->db && a->s == b->s && a->l == b->l && a->g == b->g && a->avl == b->avl &&
	       a->unusable == b->unusable;
}

static bool x86_dtable_equal(const struct squib_x86_dtable *a, const struct squib_x86_dtable *b)
{
	return a->base == b->base && a->limit == b->limit;
}

static bool x86_sregs_equal(const struct squib_x86_sregs *a, const struct squib_x86_sregs *b)
{
	const struct squib_x86_segment *sa[] = {&a->cs, &a->ds, &a->es, &a->fs,
						&a->gs, &a->ss, &a->tr, &a->ldt};
	const struct squib_x86_segment *sb[] = {&b->cs, &b->ds, &b->es, &b->fs,
						&b->gs, &b->ss, &b->tr, &b->ldt};

	for (size_t i = 0; i < sizeof(sa) / sizeof(sa[0]); i++)
		if (!x86_segment_equal(sa[i], sb[i]))
			return false;
	return x86_dtable_equal(&a->gdt, &b->gdt) && x86_dtable_equal(&a->idt, &b->idt) &&
	       a->cr0 == b->cr0 && a->cr2 == b->cr2 && a->cr3 == b->cr3 && a->cr4 == b->cr4 &&
	       a->cr8 == b->cr8 && a->efer == b->efer && a->apic_base == b->apic_base &&
	       memcmp(a->interrupt_bitmap, b->interrupt_bitmap, sizeof(a->interrupt_bitmap)) == 0;
}

static bool x86_arrays_equal(const struct squib_x86_vcpu *a, const struct squib_x86_vcpu *b)
{
	if (a->xcr_count != b->xcr_count || a->cpuid_count != b->cpuid_count ||
	    a->msr_count != b->msr_count)
		return false;
	for (uint32_t i = 0; i < a->xcr_count; i++)
		if (a->xcrs[i].xcr != b->xcrs[i].xcr || a->xcrs[i].value != b->xcrs[i].value)
			return false;
	for (uint32_t i = 0; i < a->cpuid_count; i++) {
		const struct squib_x86_cpuid_entry *x = &a->cpuid[i], *y = &b->cpuid[i];
		if (x->function != y->function || x->index != y->index || x->flags != y->flags ||
		    x->eax != y->eax || x->ebx != y->ebx || x->ecx != y->ecx || x->edx != y->edx)
			return false;
	}
	for (uint32_t i = 0; i < a->msr_count; i++)
		if (a->msrs[i].index != b->msrs[i].index || a->msrs[i].value != b->msrs[i].value)
			return false;
	return bytes_equal(a->xsave, a->xsave_size, b->xsave, b->xsave_size);
}

/* Arrays compare in stored order; decoded states hold them in canonical order. */
static bool x86_vcpu_equal(const struct squib_x86_vcpu *a, const struct squib_x86_vcpu *b)
{
	if (memcmp(&a->regs, &b->regs, sizeof(a->regs)) != 0 ||
	    memcmp(&a->debugregs, &b->debugregs, sizeof(a->debugregs)) != 0 ||
	    !x86_sregs_equal(&a->sregs, &b->sregs))
		return false;
	if (memcmp(a->events, b->events, sizeof(a->events)) != 0 || a->mp_state != b->mp_state ||
	    a->tsc_khz != b->tsc_khz || a->has_lapic != b->has_lapic)
		return false;
	if (a->has_lapic && memcmp(a->lapic, b->lapic, sizeof(a->lapic)) != 0)
		return false;
	return x86_arrays_equal(a, b);
}

static bool x86_vm_equal(const struct squib_x86_vm_state *a, const struct squib_x86_vm_state *b)
{
	if (!a || !b)
		return a == b;
	if (a->clock.clock != b->clock.clock || a->clock.flags != b->clock.flags ||
	    a->clock.realtime != b->clock.realtime || a->clock.host_tsc != b->clock.host_tsc)
		return false;
	if (a->has_irqchip != b->has_irqchip || a->has_pit != b->has_pit)
		return false;
	if (a->has_irqchip && (memcmp(a->pic_master, b->pic_master, sizeof(a->pic_master)) ||
			       memcmp(a->pic_slave, b->pic_slave, sizeof(a->pic_slave)) ||
			       memcmp(a->ioapic, b->ioapic, sizeof(a->ioapic))))
		return false;
	return !a->has_pit || memcmp(a->pit, b->pit, sizeof(a->pit)) == 0;
}

static bool vcpus_equal(const struct squib_microvm_state *a, const struct squib_microvm_state *b)
{
	if (a->vcpu_count != b->vcpu_count)
		return false;
	for (uint32_t i = 0; i < a->vcpu_count; i++) {
		if (a->arch == SQUIB_ARCH_AARCH64 &&
		    !vcpu_equal(&a->arm64_vcpus[i], &b->arm64_vcpus[i]))
			return false;
		if (a->arch == SQUIB_ARCH_X86_64 &&
		    !x86_vcpu_equal(&a->x86_vcpus[i], &b->x86_vcpus[i]))
			return false;
	}
	return a->arch != SQUIB_ARCH_X86_64 || x86_vm_equal(a->x86_vm, b->x86_vm);
}

bool squib_state_equal(const struct squib_microvm_state *a, const struct squib_microvm_state *b)
{
	if (a == b)
		return true;
	if (!a || !b || a->arch != b->arch || !vm_info_equal(&a->vm_info, &b->vm_info))
		return false;
	if (!vcpus_equal(a, b))
		return false;
	if (a->gic.len != b->gic.len ||
	    !bytes_equal(a->gic.bytes, a->gic.size, b->gic.bytes, b->gic.size))
		return false;
	if (a->device_count != b->device_count || !mmds_equal(a->mmds, b->mmds))
		return false;
	for (uint32_t i = 0; i < a->device_count; i++)
		if (!device_equal(&a->devices[i], &b->devices[i]))
			return false;
	if (a->extra_section_count != b->extra_section_count)
		return false;
	for (uint32_t i = 0; i < a->extra_section_count; i++)
		if (!extra_equal(&a->extra_sections[i], &b->extra_sections[i]))
			return false;
	return squib_memory_layout_equal(a->memory, b->memory);
}

/* ---- setters ----------------------------------------------------------- */

int squib_state_set_string(char **field, const char *value)
{
	char *copy = NULL;

	if (!field)
		return SQUIB_E_INVALID_ARGUMENT;
	if (value && !(copy = strdup(value)))
		return SQUIB_E_NOMEM;
	free(*field);
	*field = copy;
	return 0;
}

int squib_state_add_arm64_vcpu(struct squib_microvm_state *s, uint64_t mpidr,
			       struct squib_arm64_vcpu **out)
{
	struct squib_arm64_vcpu *v;

	if (!s || s->arch != SQUIB_ARCH_AARCH64 || s->vcpu_count >= SQUIB_STATE_MAX_VCPUS)
		return SQUIB_E_INVALID_ARGUMENT;
	v = realloc(s->arm64_vcpus, (s->vcpu_count + 1) * sizeof(*v));
	if (!v)
		return SQUIB_E_NOMEM;
	s->arm64_vcpus = v;
	v = &v[s->vcpu_count++];
	memset(v, 0, sizeof(*v));
	v->mpidr = mpidr;
	v->psci_state = SQUIB_PSCI_OFF;
	if (out)
		*out = v;
	return 0;
}

int squib_state_add_x86_vcpu(struct squib_microvm_state *s, struct squib_x86_vcpu **out)
{
	struct squib_x86_vcpu *v;

	if (!s || s->arch != SQUIB_ARCH_X86_64 || s->vcpu_count >= SQUIB_STATE_MAX_VCPUS)
		return SQUIB_E_INVALID_ARGUMENT;
	v = realloc(s->x86_vcpus, (s->vcpu_count + 1) * sizeof(*v));
	if (!v)
		return SQUIB_E_NOMEM;
	s->x86_vcpus = v;
	v = &v[s->vcpu_count++];
	memset(v, 0, sizeof(*v));
	if (out)
		*out = v;
	return 0;
}

/*
 * Replace *dst (n_dst entries) with a heap copy of n entries of `size`
 * bytes, sorted by cmp (NULL: kept in order). Equal keys are refused.
 */
static int replace_array(void **dst, uint32_t *n_dst, const void *src, uint32_t n, size_t size,
			 int (*cmp)(const void *, const void *))
{
	uint8_t *copy = NULL;

	if (n && !src)
		return SQUIB_E_INVALID_ARGUMENT;
	if (n) {
		copy = malloc((size_t)n * size);
		if (!copy)
			return SQUIB_E_NOMEM;
		memcpy(copy, src, (size_t)n * size);
	}
	if (n && cmp) {
		qsort(copy, n, size, cmp);
		for (uint32_t i = 1; i < n; i++)
			if (cmp(copy + (i - 1) * size, copy + i * size) == 0) {
				free(copy);
				return SQUIB_E_INVALID_ARGUMENT;
			}
	}
	free(*dst);
	*dst = copy;
	*n_dst = n;
	return 0;
}

int squib_x86_vcpu_set_msrs(struct squib_x86_vcpu *v, const struct squib_x86_msr *msrs,
			    uint32_t n)
{
	if (!v || n > SQUIB_X86_MAX_MSRS)
		return SQUIB_E_INVALID_ARGUMENT;
	return replace_array((void **)&v->msrs, &v->msr_count, msrs, n, sizeof(*msrs),
			     squib_x86_msr_cmp);
}

int squib_x86_vcpu_set_cpuid(struct squib_x86_vcpu *v, const struct squib_x86_cpuid_entry *e,
			     uint32_t n)
{
	if (!v || n > SQUIB_X86_MAX_CPUID)
		return SQUIB_E_INVALID_ARGUMENT;
	return replace_array((void **)&v->cpuid, &v->cpuid_count, e, n, sizeof(*e),
			     squib_x86_cpuid_cmp);
}

int squib_x86_vcpu_set_xcrs(struct squib_x86_vcpu *v, const struct squib_x86_xcr *x, uint32_t n)
{
	struct squib_x86_xcr sorted[SQUIB_X86_MAX_XCRS];

	if (!v || n > SQUIB_X86_MAX_XCRS || (n && !x))
		return SQUIB_E_INVALID_ARGUMENT;
	if (n)
		memcpy(sorted, x, n * sizeof(*x));
	qsort(sorted, n, sizeof(*sorted), squib_x86_xcr_cmp);
	for (uint32_t i = 1; i < n; i++)
		if (sorted[i - 1].xcr == sorted[i].xcr)
			return SQUIB_E_INVALID_ARGUMENT;
	if (n)
		memcpy(v->xcrs, sorted, n * sizeof(*x));
	v->xcr_count = n;
	return 0;
}

int squib_x86_vcpu_set_xsave(struct squib_x86_vcpu *v, const void *bytes, uint32_t size)
{
	if (!v || (size && (size < SQUIB_X86_XSAVE_MIN || size > SQUIB_X86_XSAVE_MAX || size % 4)))
		return SQUIB_E_INVALID_ARGUMENT;
	return replace_array((void **)&v->xsave, &v->xsave_size, bytes, size, 1, NULL);
}

int squib_state_set_x86_vm(struct squib_microvm_state *s, const struct squib_x86_vm_state *vm)
{
	struct squib_x86_vm_state *copy = NULL;

	if (!s || s->arch != SQUIB_ARCH_X86_64)
		return SQUIB_E_INVALID_ARGUMENT;
	if (vm) {
		copy = malloc(sizeof(*copy));
		if (!copy)
			return SQUIB_E_NOMEM;
		*copy = *vm;
	}
	free(s->x86_vm);
	s->x86_vm = copy;
	return 0;
}

/* First index whose key is >= key (keys are ascending). */
static uint32_t sysreg_lower_bound(const struct squib_arm64_vcpu *v, uint64_t key)
{
	uint32_t lo = 0, hi = v->sys_reg_count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (v->sys_regs[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int squib_arm64_vcpu_set_sysreg(struct squib_arm64_vcpu *v, uint64_t key, uint64_t value)
{
	struct squib_sysreg_value *regs;
	uint32_t i;

	if (!v)
		return SQUIB_E_INVALID_ARGUMENT;
	i = sysreg_lower_bound(v, key);
	if (i < v->sys_reg_count && v->sys_regs[i].key == key) {
		v->sys_regs[i].value = value;
		return 0;
	}
	if (v->sys_reg_count >= SQUIB_STATE_MAX_SYSREGS)
		return SQUIB_E_INVALID_ARGUMENT;
	regs = realloc(v->sys_regs, (v->sys_reg_count + 1) * sizeof(*regs));
	if (!regs)
		return SQUIB_E_NOMEM;
	memmove(&regs[i + 1], &regs[i], (v->sys_reg_count - i) * sizeof(*regs));
	regs[i].key = key;
	regs[i].value = value;
	v->sys_regs = regs;
	v->sys_reg_count++;
	return 0;
}

bool squib_arm64_vcpu_get_sysreg(const struct squib_arm64_vcpu *v, uint64_t key, uint64_t *value)
{
	uint32_t i;

	if (!v)
		return false;
	i = sysreg_lower_bound(v, key);
	if (i >= v->sys_reg_count || v->sys_regs[i].key != key)
		return false;
	if (value)
		*value = v->sys_regs[i].value;
	return true;
}

int squib_state_set_gic(struct squib_microvm_state *s, const void *bytes, size_t size)
{
	uint8_t *copy = NULL;

	if (!s || (size && !bytes))
		return SQUIB_E_INVALID_ARGUMENT;
	if (size) {
		copy = malloc(size);
		if (!copy)
			return SQUIB_E_NOMEM;
		memcpy(copy, bytes, size);
	}
	free(s->gic.bytes);
	s->gic.bytes = copy;
	s->gic.size = size;
	s->gic.len = size;
	return 0;
}

/* (slot, id) order; ids compare like memcmp, a prefix sorting first. NULL id = "". */
static int device_key_compare(uint32_t slot_a, const char *id_a, uint32_t slot_b, const char *id_b)
{
	const char *ia = or_empty(id_a), *ib = or_empty(id_b);
	size_t la = strlen(ia), lb = strlen(ib);
	int c;

	if (slot_a != slot_b)
		return slot_a < slot_b ? -1 : 1;
	c = memcmp(ia, ib, la < lb ? la : lb);
	if (c)
		return c;
	return la < lb ? -1 : la > lb;
}

int squib_device_compare(const struct squib_device_state *a, const struct squib_device_state *b)
{
	return device_key_compare(a->mmio_slot, a->id, b->mmio_slot, b->id);
}

/* Sorted position for (slot, id), or -1 if a device with that key exists. */
static long device_insert_pos(const struct squib_microvm_state *s, uint32_t slot, const char *id)
{
	uint32_t lo = 0, hi = s->device_count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct squib_device_state *m = &s->devices[mid];
		int c = device_key_compare(m->mmio_slot, m->id, slot, id);

		if (c == 0)
			return -1;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int device_fill(struct squib_device_state *dev, const char *kind, const char *id,
		       uint32_t mmio_slot, const void *blob, size_t blob_len)
{
	memset(dev, 0, sizeof(*dev));
	dev->mmio_slot = mmio_slot;
	dev->kind = strdup(or_empty(kind));
	dev->id = strdup(or_empty(id));
	if (blob_len)
		dev->blob = malloc(blob_len);
	if (!dev->kind || !dev->id || (blob_len && !dev->blob)) {
		device_release(dev);
		return SQUIB_E_NOMEM;
	}
	if (blob_len)
		memcpy(dev->blob, blob, blob_len);
	dev->blob_len = blob_len;
	return 0;
}

int squib_state_add_device(struct squib_microvm_state *s, const char *kind, const char *id,
			   uint32_t mmio_slot, const void *blob, size_t blob_len)
{
	struct squib_device_state dev;
	struct squib_device_state *devs;
	long pos;
	int rc;

	if (!s || (blob_len && !blob) || s->device_count >= SQUIB_STATE_MAX_DEVICES)
		return SQUIB_E_INVALID_ARGUMENT;
	pos = device_insert_pos(s, mmio_slot, id);
	if (pos < 0)
		return SQUIB_E_INVALID_ARGUMENT;
	rc = device_fill(&dev, kind, id, mmio_slot, blob, blob_len);
	if (rc)
		return rc;
	devs = realloc(s->devices, (s->device_count + 1) * sizeof(*devs));
	if (!devs) {
		device_release(&dev);
		return SQUIB_E_NOMEM;
	}
	memmove(&devs[pos + 1], &devs[pos], (s->device_count - (size_t)pos) * sizeof(*devs));
	devs[pos] = dev;
	s->devices = devs;
	s->device_count++;
	return 0;
}

int squib_state_set_mmds(struct squib_microvm_state *s, const char *data_json, bool has_ttl,
			 uint32_t ttl_seconds)
{
	char *json;

	if (!s)
		return SQUIB_E_INVALID_ARGUMENT;
	json = strdup(data_json ? data_json : "null");
	if (!json)
		return SQUIB_E_NOMEM;
	if (!s->mmds && !(s->mmds = calloc(1, sizeof(*s->mmds)))) {
		free(json);
		return SQUIB_E_NOMEM;
	}
	free(s->mmds->data_json);
	s->mmds->data_json = json;
	s->mmds->has_token_ttl = has_ttl;
	s->mmds->token_ttl_seconds = has_ttl ? ttl_seconds : 0;
	return 0;
}

int squib_state_set_memory(struct squib_microvm_state *s, const struct squib_memory_layout *layout,
			   struct squib_error_detail *d)
{
	struct squib_memory_layout *copy = NULL;
	int rc;

	if (!s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL state");
	if (layout) {
		if ((rc = squib_memory_layout_validate(layout, SQUIB_E_INVALID_ARGUMENT, d)))
			return rc;
		if (!(copy = malloc(sizeof(*copy))))
			return squib_fail(d, SQUIB_E_NOMEM);
		if (squib_memory_layout_copy(copy, layout)) {
			free(copy);
			return squib_fail(d, SQUIB_E_NOMEM);
		}
	}
	squib_memory_layout_release(s->memory);
	free(s->memory);
	s->memory = copy;
	return 0;
}

/* ---- verify_compatible ------------------------------------------------- */

int squib_state_verify_compatible(const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	if (!s || (s->arch != SQUIB_ARCH_AARCH64 && s->arch != SQUIB_ARCH_X86_64))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "state has no architecture");
	if (s->vcpu_count == 0 || s->vcpu_count > SQUIB_MAX_VCPUS)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE, "%" PRIu32 " vCPUs (1..%d)",
				      s->vcpu_count, SQUIB_MAX_VCPUS);
	if (s->vm_info.smt)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE, "SMT is enabled in the VM info");
	/* KVM x86 restores the clock and interrupt controllers from the VM state. */
	if (s->arch == SQUIB_ARCH_X86_64 && !s->x86_vm)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
				      "x86_64 state without an x86 VM section");
	/* The GIC rules are the arm64 interrupt controller's; x86_64 has none. */
	if (s->arch == SQUIB_ARCH_AARCH64 && (s->gic.size == 0 || s->gic.len != s->gic.size))
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
				      "GIC blob shape: %zu bytes, declared length %" PRIu64,
				      s->gic.size, s->gic.len);
	return 0;
}

const char *squib_arch_name(enum squib_arch arch)
{
	switch (arch) {
	case SQUIB_ARCH_ANY:
		return "any";
	case SQUIB_ARCH_AARCH64:
		return "aarch64";
	case SQUIB_ARCH_X86_64:
		return "x86_64";
	}
	return "unknown";
}

const char *squib_psci_state_name(enum squib_psci_state p)
{
	switch (p) {
	case SQUIB_PSCI_ON:
		return "On";
	case SQUIB_PSCI_OFF:
		return "Off";
	case SQUIB_PSCI_ON_PENDING:
		return "OnPending";
	}
	return "Unknown";
}
