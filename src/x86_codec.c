/* SPDX-License-Identifier: Apache-2.0 */
/* x86_64 vCPU and VM sections of the state file (docs/FORMAT.md §2.3). */
#include "x86_codec.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define REG_WORDS      18 /* struct squib_x86_regs */
#define SEGMENT_BYTES  23 /* base 8, limit 4, selector 2, nine u8 */
#define DTABLE_BYTES   10 /* base 8, limit 2 */
#define SREGS_BYTES    (8 * SEGMENT_BYTES + 2 * DTABLE_BYTES + 7 * 8 + 4 * 8)
#define DEBUGREG_WORDS 7
#define XCR_BYTES      12
#define CPUID_BYTES    28
#define MSR_BYTES      12

_Static_assert(sizeof(struct squib_x86_regs) == REG_WORDS * 8, "regs are u64 only");
_Static_assert(sizeof(struct squib_x86_debugregs) == DEBUGREG_WORDS * 8, "debugregs are u64 only");
_Static_assert(REG_WORDS * 8 + SREGS_BYTES + DEBUGREG_WORDS * 8 + SQUIB_X86_EVENTS_SIZE + 8 ==
		   SQUIB_X86_VCPU_FIXED_BYTES,
	       "fixed vCPU part");

/* ---- canonical order ----------------------------------------------------- */

int squib_x86_xcr_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct squib_x86_xcr *)a)->xcr,
		 y = ((const struct squib_x86_xcr *)b)->xcr;

	return x < y ? -1 : x > y;
}

int squib_x86_cpuid_cmp(const void *a, const void *b)
{
	const struct squib_x86_cpuid_entry *x = a, *y = b;

	if (x->function != y->function)
		return x->function < y->function ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

int squib_x86_msr_cmp(const void *a, const void *b)
{
	uint32_t x = ((const struct squib_x86_msr *)a)->index;
	uint32_t y = ((const struct squib_x86_msr *)b)->index;

	return x < y ? -1 : x > y;
}

static bool strictly_ascending(const void *arr, uint32_t n, size_t size,
			       int (*cmp)(const void *, const void *))
{
	const uint8_t *p = arr;

	for (uint32_t i = 1; i < n; i++)
		if (cmp(p + (i - 1) * size, p + i * size) >= 0)
			return false;
	return true;
}

/*
 * The array itself when already strictly ascending (the usual case), else a
 * sorted heap copy in *copy. Equal keys cannot be ordered: INVALID_ARGUMENT.
 */
static int sorted_view(const void *arr, uint32_t n, size_t size,
		       int (*cmp)(const void *, const void *), const char *what, uint32_t idx,
		       void **copy, const void **out, struct squib_error_detail *d)
{
	*out = arr;
	if (strictly_ascending(arr, n, size, cmp))
		return 0;
	if (!(*copy = malloc((size_t)n * size)))
		return squib_fail(d, SQUIB_E_NOMEM);
	memcpy(*copy, arr, (size_t)n * size);
	qsort(*copy, n, size, cmp);
	if (!strictly_ascending(*copy, n, size, cmp))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "x86 vCPU %u: duplicate %s", idx,
				      what);
	*out = *copy;
	return 0;
}

/* ---- encoder --------------------------------------------------------------- */

int squib_x86_check_vcpu(const struct squib_x86_vcpu *v, uint32_t idx, struct squib_error_detail *d)
{
	if (v->mp_state > SQUIB_X86_MAX_MP_STATE)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "x86 vCPU %u: mp_state %u", idx,
				      v->mp_state);
	if (v->xcr_count > SQUIB_X86_MAX_XCRS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "x86 vCPU %u: %u XCRs", idx,
				      v->xcr_count);
	if (v->cpuid_count > SQUIB_X86_MAX_CPUID || (v->cpuid_count && !v->cpuid))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "x86 vCPU %u: bad CPUID array (%u entries)", idx,
				      v->cpuid_count);
	if (v->msr_count > SQUIB_X86_MAX_MSRS || (v->msr_count && !v->msrs))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "x86 vCPU %u: bad MSR array (%u entries)", idx, v->msr_count);
	if (v->xsave_size &&
	    (v->xsave_size < SQUIB_X86_XSAVE_MIN || v->xsave_size > SQUIB_X86_XSAVE_MAX ||
	     v->xsave_size % 4 || !v->xsave))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "x86 vCPU %u: bad XSAVE area (%u bytes)", idx, v->xsave_size);
	return 0;
}

static void put_u64s(struct squib_wire_writer *w, const uint64_t *v, size_t n)
{
	uint8_t *p = squib_wire_put_space(w, n * 8);

	for (size_t i = 0; p && i < n; i++)
		squib_put_le64(p + 8 * i, v[i]);
}

static void put_segment(struct squib_wire_writer *w, const struct squib_x86_segment *s)
{
	const uint8_t flags[9] = {s->type, s->present, s->dpl, s->db,	   s->s,
				  s->l,	   s->g,       s->avl, s->unusable};

	squib_wire_put_u64(w, s->base);
	squib_wire_put_u32(w, s->limit);
	squib_wire_put_u16(w, s->selector);
	squib_wire_put_bytes(w, flags, sizeof(flags));
}

static void put_sregs(struct squib_wire_writer *w, const struct squib_x86_sregs *s)
{
	const struct squib_x86_segment *seg[] = {&s->cs, &s->ds, &s->es, &s->fs,
						 &s->gs, &s->ss, &s->tr, &s->ldt};
	const uint64_t cr[] = {s->cr0, s->cr2, s->cr3, s->cr4, s->cr8, s->efer, s->apic_base};

	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(seg); i++)
		put_segment(w, seg[i]);
	squib_wire_put_u64(w, s->gdt.base);
	squib_wire_put_u16(w, s->gdt.limit);
	squib_wire_put_u64(w, s->idt.base);
	squib_wire_put_u16(w, s->idt.limit);
	put_u64s(w, cr, SQUIB_ARRAY_SIZE(cr));
	put_u64s(w, s->interrupt_bitmap, 4);
}

static void put_fixed(struct squib_wire_writer *w, const struct squib_x86_vcpu *v)
{
	put_u64s(w, (const uint64_t *)&v->regs, REG_WORDS);
	put_sregs(w, &v->sregs);
	put_u64s(w, (const uint64_t *)&v->debugregs, DEBUGREG_WORDS);
	squib_wire_put_bytes(w, v->events, SQUIB_X86_EVENTS_SIZE);
	squib_wire_put_u32(w, v->mp_state);
	squib_wire_put_u32(w, v->tsc_khz);
	squib_wire_put_bool(w, v->has_lapic);
	if (v->has_lapic)
		squib_wire_put_bytes(w, v->lapic, SQUIB_X86_LAPIC_SIZE);
}

static void put_xcrs(struct squib_wire_writer *w, const struct squib_x86_xcr *x, uint32_t n)
{
	squib_wire_put_u32(w, n);
	for (uint32_t i = 0; i < n; i++) {
		squib_wire_put_u32(w, x[i].xcr);
		squib_wire_put_u64(w, x[i].value);
	}
}

static void put_cpuid(struct squib_wire_writer *w, const struct squib_x86_cpuid_entry *e,
		      uint32_t n)
{
	squib_wire_put_u32(w, n);
	for (uint32_t i = 0; i < n; i++) {
		const uint32_t f[7] = {e[i].function, e[i].index, e[i].flags, e[i].eax,
				       e[i].ebx,      e[i].ecx,	  e[i].edx};
		uint8_t *p = squib_wire_put_space(w, CPUID_BYTES);

		for (int k = 0; p && k < 7; k++)
			squib_put_le32(p + 4 * k, f[k]);
	}
}

static void put_msrs(struct squib_wire_writer *w, const struct squib_x86_msr *m, uint32_t n)
{
	uint8_t *p;

	squib_wire_put_u32(w, n);
	p = squib_wire_put_space(w, (size_t)n * MSR_BYTES);
	for (uint32_t i = 0; p && i < n; i++) {
		squib_put_le32(p + MSR_BYTES * i, m[i].index);
		squib_put_le64(p + MSR_BYTES * i + 4, m[i].value);
	}
}

int squib_x86_put_vcpu(struct squib_wire_writer *w, const struct squib_x86_vcpu *v, uint32_t idx,
		       struct squib_error_detail *d)
{
	void *cx = NULL, *cc = NULL, *cm = NULL;
	const void *xcrs, *cpuid, *msrs;
	int rc;

	if ((rc = sorted_view(v->xcrs, v->xcr_count, sizeof(*v->xcrs), squib_x86_xcr_cmp, "XCR",
			      idx, &cx, &xcrs, d)) ||
	    (rc = sorted_view(v->cpuid, v->cpuid_count, sizeof(*v->cpuid), squib_x86_cpuid_cmp,
			      "CPUID entry", idx, &cc, &cpuid, d)) ||
	    (rc = sorted_view(v->msrs, v->msr_count, sizeof(*v->msrs), squib_x86_msr_cmp, "MSR",
			      idx, &cm, &msrs, d)))
		goto out;
	put_fixed(w, v);
	put_xcrs(w, xcrs, v->xcr_count);
	put_cpuid(w, cpuid, v->cpuid_count);
	put_msrs(w, msrs, v->msr_count);
	squib_wire_put_blob(w, v->xsave, v->xsave_size);
out:
	free(cx);
	free(cc);
	free(cm);
	return rc;
}

void squib_x86_put_vm(struct squib_wire_writer *w, const struct squib_x86_vm_state *vm)
{
	squib_wire_put_u64(w, vm->clock.clock);
	squib_wire_put_u32(w, vm->clock.flags);
	squib_wire_put_u64(w, vm->clock.realtime);
	squib_wire_put_u64(w, vm->clock.host_tsc);
	squib_wire_put_bool(w, vm->has_irqchip);
	if (vm->has_irqchip) {
		squib_wire_put_bytes(w, vm->pic_master, SQUIB_X86_PIC_SIZE);
		squib_wire_put_bytes(w, vm->pic_slave, SQUIB_X86_PIC_SIZE);
		squib_wire_put_bytes(w, vm->ioapic, SQUIB_X86_IOAPIC_SIZE);
	}
	squib_wire_put_bool(w, vm->has_pit);
	if (vm->has_pit)
		squib_wire_put_bytes(w, vm->pit, SQUIB_X86_PIT_SIZE);
}

/* ---- decoder --------------------------------------------------------------- */

static void get_u64s(const uint8_t *p, uint64_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = squib_get_le64(p + 8 * i);
}

static const uint8_t *get_segment(const uint8_t *p, struct squib_x86_segment *s)
{
	s->base = squib_get_le64(p);
	s->limit = squib_get_le32(p + 8);
	s->selector = squib_get_le16(p + 12);
	p += 14;
	s->type = p[0];
	s->present = p[1];
	s->dpl = p[2];
	s->db = p[3];
	s->s = p[4];
	s->l = p[5];
	s->g = p[6];
	s->avl = p[7];
	s->unusable = p[8];
	return p + 9;
}

static void get_sregs(const uint8_t *p, struct squib_x86_sregs *s)
{
	struct squib_x86_segment *seg[] = {&s->cs, &s->ds, &s->es, &s->fs,
					   &s->gs, &s->ss, &s->tr, &s->ldt};
	uint64_t cr[7];

	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(seg); i++)
		p = get_segment(p, seg[i]);
	s->gdt.base = squib_get_le64(p);
	s->gdt.limit = squib_get_le16(p + 8);
	s->idt.base = squib_get_le64(p + 10);
	s->idt.limit = squib_get_le16(p + 18);
	p += 2 * DTABLE_BYTES;
	get_u64s(p, cr, 7);
	s->cr0 = cr[0];
	s->cr2 = cr[1];
	s->cr3 = cr[2];
	s->cr4 = cr[3];
	s->cr8 = cr[4];
	s->efer = cr[5];
	s->apic_base = cr[6];
	get_u64s(p + 56, s->interrupt_bitmap, 4);
}

static int get_fixed(struct squib_wire_reader *r, uint32_t idx, struct squib_x86_vcpu *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = squib_wire_get_bytes(r, SQUIB_X86_VCPU_FIXED_BYTES, "x86 vCPU registers", &p)))
		return rc;
	get_u64s(p, (uint64_t *)&v->regs, REG_WORDS);
	p += REG_WORDS * 8;
	get_sregs(p, &v->sregs);
	p += SREGS_BYTES;
	get_u64s(p, (uint64_t *)&v->debugregs, DEBUGREG_WORDS);
	p += DEBUGREG_WORDS * 8;
	memcpy(v->events, p, SQUIB_X86_EVENTS_SIZE);
	p += SQUIB_X86_EVENTS_SIZE;
	v->mp_state = squib_get_le32(p);
	v->tsc_khz = squib_get_le32(p + 4);
	if (v->mp_state > SQUIB_X86_MAX_MP_STATE)
		return squib_fail_msg(r->d, SQUIB_E_ENCODING,
				      "x86 vCPU %u: invalid mp_state %u at offset %zu", idx,
				      v->mp_state, r->pos - 8);
	return 0;
}

static int get_lapic(struct squib_wire_reader *r, struct squib_x86_vcpu *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = squib_wire_get_opt(r, "x86 vCPU lapic", &v->has_lapic)) || !v->has_lapic)
		return rc;
	if ((rc = squib_wire_get_bytes(r, SQUIB_X86_LAPIC_SIZE, "x86 vCPU lapic", &p)))
		return rc;
	memcpy(v->lapic, p, SQUIB_X86_LAPIC_SIZE);
	return 0;
}

/*
 * A u32 count (at most max) and a view of count * size bytes after it.
 * The bytes are checked before anything is allocated.
 */
struct array_kind {
	const char *count; /* name of the count field */
	const char *entries;
	uint32_t max;
	size_t size; /* bytes per entry */
};

static const struct array_kind xcr_kind = {"xcr_count", "x86 vCPU XCRs", SQUIB_X86_MAX_XCRS,
					   XCR_BYTES};
static const struct array_kind cpuid_kind = {"cpuid_count", "x86 vCPU CPUID entries",
					     SQUIB_X86_MAX_CPUID, CPUID_BYTES};
static const struct array_kind msr_kind = {"msr_count", "x86 vCPU MSRs", SQUIB_X86_MAX_MSRS,
					   MSR_BYTES};

static int get_counted_array(struct squib_wire_reader *r, uint32_t idx, const struct array_kind *k,
			     uint32_t *n, const uint8_t **p)
{
	size_t at = r->pos;
	int rc = squib_wire_get_u32(r, k->count, n);

	if (rc)
		return rc;
	if (*n > k->max)
		return squib_fail_msg(r->d, SQUIB_E_ENCODING,
				      "x86 vCPU %u: %s %u at offset %zu exceeds %u", idx, k->count,
				      *n, at, k->max);
	return squib_wire_get_bytes(r, (size_t)*n * k->size, k->entries, p);
}

static int order_error(struct squib_wire_reader *r, uint32_t idx, const char *what, size_t at)
{
	return squib_fail_msg(r->d, SQUIB_E_ENCODING,
			      "x86 vCPU %u: %s at offset %zu is not above the previous one", idx,
			      what, at);
}

static int get_xcrs(struct squib_wire_reader *r, uint32_t idx, struct squib_x86_vcpu *v)
{
	const uint8_t *p;
	uint32_t n;
	int rc = get_counted_array(r, idx, &xcr_kind, &n, &p);

	if (rc)
		return rc;
	for (uint32_t i = 0; i < n; i++) {
		v->xcrs[i].xcr = squib_get_le32(p + XCR_BYTES * i);
		v->xcrs[i].value = squib_get_le64(p + XCR_BYTES * i + 4);
		if (i && v->xcrs[i].xcr <= v->xcrs[i - 1].xcr)
			return order_error(r, idx, "XCR", r->pos - (size_t)(n - i) * XCR_BYTES);
	}
	v->xcr_count = n;
	return 0;
}

static int get_cpuid(struct squib_wire_reader *r, uint32_t idx, struct squib_x86_vcpu *v)
{
	const uint8_t *p;
	uint32_t n;
	int rc = get_counted_array(r, idx, &cpuid_kind, &n, &p);

	if (rc || !n)
		return rc;
	if (!(v->cpuid = malloc((size_t)n * sizeof(*v->cpuid))))
		return squib_fail(r->d, SQUIB_E_NOMEM);
	v->cpuid_count = n;
	for (uint32_t i = 0; i < n; i++, p += CPUID_BYTES) {
		struct squib_x86_cpuid_entry *e = &v->cpuid[i];

		e->function = squib_get_le32(p);
		e->index = squib_get_le32(p + 4);
		e->flags = squib_get_le32(p + 8);
		e->eax = squib_get_le32(p + 12);
		e->ebx = squib_get_le32(p + 16);
		e->ecx = squib_get_le32(p + 20);
		e->edx = squib_get_le32(p + 24);
		if (i && squib_x86_cpuid_cmp(e - 1, e) >= 0)
			return order_error(r, idx, "CPUID entry",
					   r->pos - (size_t)(n - i) * CPUID_BYTES);
	}
	return 0;
}

static int get_msrs(struct squib_wire_reader *r, uint32_t idx, struct squib_x86_vcpu *v)
{
	const uint8_t *p;
	uint32_t n;
	int rc = get_counted_array(r, idx, &msr_kind, &n, &p);

	if (rc || !n)
		return rc;
	if (!(v->msrs = malloc((size_t)n * sizeof(*v->msrs))))
		return squib_fail(r->d, SQUIB_E_NOMEM);
	v->msr_count = n;
	for (uint32_t i = 0; i < n; i++, p += MSR_BYTES) {
		v->msrs[i].index = squib_get_le32(p);
		v->msrs[i].value = squib_get_le64(p + 4);
		if (i && v->msrs[i].index <= v->msrs[i - 1].index)
			return order_error(r, idx, "MSR", r->pos - (size_t)(n - i) * MSR_BYTES);
	}
	return 0;
}

static int get_xsave(struct squib_wire_reader *r, uint32_t idx, struct squib_x86_vcpu *v)
{
	size_t at = r->pos, n;
	int rc = squib_wire_get_blob(r, "x86 vCPU xsave", &v->xsave, &n);

	if (rc)
		return rc;
	v->xsave_size = (uint32_t)n;
	if (n && (n < SQUIB_X86_XSAVE_MIN || n > SQUIB_X86_XSAVE_MAX || n % 4))
		return squib_fail_msg(r->d, SQUIB_E_ENCODING,
				      "x86 vCPU %u: XSAVE area of %zu bytes at offset %zu (must "
				      "be 0 or %u..%u, a multiple of 4)",
				      idx, n, at, SQUIB_X86_XSAVE_MIN, SQUIB_X86_XSAVE_MAX);
	return 0;
}

int squib_x86_get_vcpu(struct squib_wire_reader *r, uint32_t idx, struct squib_x86_vcpu *v)
{
	int rc;

	if ((rc = get_fixed(r, idx, v)) || (rc = get_lapic(r, v)) || (rc = get_xcrs(r, idx, v)) ||
	    (rc = get_cpuid(r, idx, v)) || (rc = get_msrs(r, idx, v)))
		return rc;
	return get_xsave(r, idx, v);
}

static int get_fixed_bytes(struct squib_wire_reader *r, const char *what, uint8_t *dst, size_t n)
{
	const uint8_t *p;
	int rc = squib_wire_get_bytes(r, n, what, &p);

	if (!rc)
		memcpy(dst, p, n);
	return rc;
}

int squib_x86_get_vm(struct squib_wire_reader *r, struct squib_x86_vm_state *vm)
{
	int rc;

	if ((rc = squib_wire_get_u64(r, "x86_vm.clock", &vm->clock.clock)) ||
	    (rc = squib_wire_get_u32(r, "x86_vm.clock_flags", &vm->clock.flags)) ||
	    (rc = squib_wire_get_u64(r, "x86_vm.realtime", &vm->clock.realtime)) ||
	    (rc = squib_wire_get_u64(r, "x86_vm.host_tsc", &vm->clock.host_tsc)) ||
	    (rc = squib_wire_get_opt(r, "x86_vm.irqchip", &vm->has_irqchip)))
		return rc;
	if (vm->has_irqchip &&
	    ((rc = get_fixed_bytes(r, "x86_vm.pic_master", vm->pic_master, SQUIB_X86_PIC_SIZE)) ||
	     (rc = get_fixed_bytes(r, "x86_vm.pic_slave", vm->pic_slave, SQUIB_X86_PIC_SIZE)) ||
	     (rc = get_fixed_bytes(r, "x86_vm.ioapic", vm->ioapic, SQUIB_X86_IOAPIC_SIZE))))
		return rc;
	if ((rc = squib_wire_get_opt(r, "x86_vm.pit", &vm->has_pit)) || !vm->has_pit)
		return rc;
	return get_fixed_bytes(r, "x86_vm.pit", vm->pit, SQUIB_X86_PIT_SIZE);
}
