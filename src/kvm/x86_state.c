/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Capture and restore of x86 vCPU and VM state through KVM, into and out of
 * the state model (squib/state.h). The orders follow Firecracker's, whose
 * comments explain them: KVM_GET_MP_STATE may run pending APIC events, so it
 * comes first; KVM_GET_LAPIC and the other getters may adjust internal
 * state, so vCPU events come last; on restore, CPUID precedes everything
 * that KVM validates against it, special registers precede the LAPIC (APIC
 * base) and MSRs (EFER), and events come last.
 */
#include "kvm_internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../x86_codec.h"

_Static_assert(sizeof(struct kvm_regs) == sizeof(struct squib_x86_regs), "kvm_regs layout");
_Static_assert(offsetof(struct kvm_regs, rip) == offsetof(struct squib_x86_regs, rip),
	       "kvm_regs order");
_Static_assert(sizeof(struct kvm_vcpu_events) == SQUIB_X86_EVENTS_SIZE, "events size");
_Static_assert(sizeof(struct kvm_lapic_state) == SQUIB_X86_LAPIC_SIZE, "lapic size");
_Static_assert(sizeof(struct kvm_pic_state) == SQUIB_X86_PIC_SIZE, "pic size");
_Static_assert(sizeof(struct kvm_ioapic_state) == SQUIB_X86_IOAPIC_SIZE, "ioapic size");
_Static_assert(sizeof(struct kvm_pit_state2) == SQUIB_X86_PIT_SIZE, "pit size");
_Static_assert(KVM_MAX_XCRS == SQUIB_X86_MAX_XCRS, "xcr count");

#define CPUID_MAX SQUIB_X86_MAX_CPUID

/* ---- conversions --------------------------------------------------------------- */

static void seg_out(struct squib_x86_segment *o, const struct kvm_segment *k)
{
	*o = (struct squib_x86_segment){k->base,    k->limit, k->selector, k->type,
					k->present, k->dpl,   k->db,	   k->s,
					k->l,	    k->g,     k->avl,	   k->unusable};
}

static void seg_in(struct kvm_segment *k, const struct squib_x86_segment *o)
{
	memset(k, 0, sizeof(*k));
	k->base = o->base;
	k->limit = o->limit;
	k->selector = o->selector;
	k->type = o->type;
	k->present = o->present;
	k->dpl = o->dpl;
	k->db = o->db;
	k->s = o->s;
	k->l = o->l;
	k->g = o->g;
	k->avl = o->avl;
	k->unusable = o->unusable;
}

static void sregs_out(struct squib_x86_sregs *o, const struct kvm_sregs *k)
{
	seg_out(&o->cs, &k->cs);
	seg_out(&o->ds, &k->ds);
	seg_out(&o->es, &k->es);
	seg_out(&o->fs, &k->fs);
	seg_out(&o->gs, &k->gs);
	seg_out(&o->ss, &k->ss);
	seg_out(&o->tr, &k->tr);
	seg_out(&o->ldt, &k->ldt);
	o->gdt = (struct squib_x86_dtable){k->gdt.base, k->gdt.limit};
	o->idt = (struct squib_x86_dtable){k->idt.base, k->idt.limit};
	o->cr0 = k->cr0;
	o->cr2 = k->cr2;
	o->cr3 = k->cr3;
	o->cr4 = k->cr4;
	o->cr8 = k->cr8;
	o->efer = k->efer;
	o->apic_base = k->apic_base;
	memcpy(o->interrupt_bitmap, k->interrupt_bitmap, sizeof(o->interrupt_bitmap));
}

static void sregs_in(struct kvm_sregs *k, const struct squib_x86_sregs *o)
{
	memset(k, 0, sizeof(*k));
	seg_in(&k->cs, &o->cs);
	seg_in(&k->ds, &o->ds);
	seg_in(&k->es, &o->es);
	seg_in(&k->fs, &o->fs);
	seg_in(&k->gs, &o->gs);
	seg_in(&k->ss, &o->ss);
	seg_in(&k->tr, &o->tr);
	seg_in(&k->ldt, &o->ldt);
	k->gdt.base = o->gdt.base;
	k->gdt.limit = o->gdt.limit;
	k->idt.base = o->idt.base;
	k->idt.limit = o->idt.limit;
	k->cr0 = o->cr0;
	k->cr2 = o->cr2;
	k->cr3 = o->cr3;
	k->cr4 = o->cr4;
	k->cr8 = o->cr8;
	k->efer = o->efer;
	k->apic_base = o->apic_base;
	memcpy(k->interrupt_bitmap, o->interrupt_bitmap, sizeof(k->interrupt_bitmap));
}

/* ---- MSRs -------------------------------------------------------------------------- */

static int msr_index_list(struct squib_kvm_vm *vm, struct kvm_msr_list **out,
			  struct squib_error_detail *d)
{
	struct kvm_msr_list probe = {.nmsrs = 0}, *l;

	/* The first call fails with E2BIG and says how many there are. */
	if (kvm_ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) && errno != E2BIG)
		return kvm_fail_ioctl(d, "KVM_GET_MSR_INDEX_LIST");
	if (probe.nmsrs > SQUIB_X86_MAX_MSRS)
		return squib_fail_msg(d, SQUIB_E_CAPTURE, "KVM lists %u MSRs (at most %d kept)",
				      probe.nmsrs, SQUIB_X86_MAX_MSRS);
	if (!(l = malloc(sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]))))
		return squib_fail(d, SQUIB_E_NOMEM);
	l->nmsrs = probe.nmsrs;
	if (kvm_ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, l)) {
		free(l);
		return kvm_fail_ioctl(d, "KVM_GET_MSR_INDEX_LIST");
	}
	*out = l;
	return 0;
}

/* Keep the listed MSRs that KVM_GET_MSRS reads on vCPU 0 (done once per VM). */
static int find_readable_msrs(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	struct kvm_msr_list *l = NULL;
	struct kvm_msrs *one;
	int rc;

	if (vm->msrs)
		return 0;
	if ((rc = msr_index_list(vm, &l, d)))
		return rc;
	one = kvm_msrs_alloc(1);
	vm->msrs = malloc((l->nmsrs ? l->nmsrs : 1) * sizeof(*vm->msrs));
	if (!one || !vm->msrs) {
		free(one);
		free(l);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	for (uint32_t i = 0; i < l->nmsrs; i++) {
		memset(one->entries, 0, sizeof(one->entries[0]));
		one->nmsrs = 1;
		one->entries[0].index = l->indices[i];
		if (kvm_ioctl(vm->vcpus[0].fd, KVM_GET_MSRS, one) == 1)
			vm->msrs[vm->msr_count++] = l->indices[i];
	}
	free(one);
	free(l);
	return 0;
}

static int capture_msrs(struct squib_kvm_vm *vm, struct kvm_vcpu *c, struct squib_x86_vcpu *v,
			struct squib_error_detail *d)
{
	struct kvm_msrs *b = kvm_msrs_alloc(vm->msr_count);
	struct squib_x86_msr *m = calloc(vm->msr_count ? vm->msr_count : 1, sizeof(*m));
	int n, rc = 0;

	if (!b || !m) {
		rc = squib_fail(d, SQUIB_E_NOMEM);
		goto out;
	}
	for (uint32_t i = 0; i < vm->msr_count; i++)
		b->entries[i].index = vm->msrs[i];
	n = kvm_ioctl(c->fd, KVM_GET_MSRS, b);
	if (n != (int)vm->msr_count) {
		rc = n < 0 ? kvm_fail_ioctl(d, "KVM_GET_MSRS")
			   : squib_fail_msg(d, SQUIB_E_CAPTURE, "KVM_GET_MSRS read %d of %u", n,
					    vm->msr_count);
		goto out;
	}
	for (uint32_t i = 0; i < vm->msr_count; i++)
		m[i] = (struct squib_x86_msr){b->entries[i].index, b->entries[i].data};
	if ((rc = squib_x86_vcpu_set_msrs(v, m, vm->msr_count)))
		rc = squib_fail_msg(d, SQUIB_E_CAPTURE, "KVM_GET_MSRS: %u MSRs, some twice",
				    vm->msr_count);
out:
	free(b);
	free(m);
	return rc;
}

/* The fresh vCPU's value of one MSR; false if KVM cannot read it. */
static bool read_msr(struct kvm_vcpu *c, uint32_t index, uint64_t *value)
{
	struct kvm_msrs *one = kvm_msrs_alloc(1);
	bool ok;

	if (!one)
		return false;
	one->entries[0].index = index;
	ok = kvm_ioctl(c->fd, KVM_GET_MSRS, one) == 1;
	if (ok)
		*value = one->entries[0].data;
	free(one);
	return ok;
}

/*
 * The guest TSC and kvm-clock move together: kvm-clock is computed from the
 * TSC, and the guest's clocksource watchdog compares the two. A state holds
 * them as one pair — capture reads the TSC of every vCPU right after its
 * final KVM_GET_CLOCK and takes the clock the guest sees at that TSC
 * (pair_tsc_with_clock) — and a restore sets the pair only when the vCPUs
 * start (kvm_apply_restored_clock): the clock, then each TSC as far on as the
 * clock ran meanwhile (cycles at the vCPU's TSC rate). Set at restore time,
 * the two ran on separately until the guest did, and any difference between
 * the host's time and its TSC rate (a nested TCG host has one) became skew.
 * The TSC is written only there: KVM takes a host write within a second of
 * the previous one as a synchronisation and keeps the old offset, so an early
 * write could not be corrected later.
 */
#define MSR_IA32_TSC	      0x10u
#define MSR_IA32_TSC_DEADLINE 0x6e0u

static int set_tsc(struct squib_kvm_vm *vm, uint32_t i, struct squib_error_detail *d)
{
	struct kvm_vcpu *c = &vm->vcpus[i];
	struct kvm_msrs *m = kvm_msrs_alloc(2);
	struct kvm_clock_data now;
	int khz = vm->tsc_khz[i] ? (int)vm->tsc_khz[i] : kvm_ioctl(c->fd, KVM_GET_TSC_KHZ, NULL);
	int rc = 0;

	memset(&now, 0, sizeof(now));
	if (!m)
		return squib_fail(d, SQUIB_E_NOMEM);
	if (kvm_ioctl(vm->vm_fd, KVM_GET_CLOCK, &now)) {
		free(m);
		return kvm_fail_ioctl(d, "KVM_GET_CLOCK");
	}
	m->entries[0].index = MSR_IA32_TSC;
	m->entries[0].data = vm->tsc_saved[i];
	if (khz > 0 && now.clock > vm->clock_saved)
		m->entries[0].data += (uint64_t)((unsigned __int128)(now.clock - vm->clock_saved) *
						 (unsigned)khz / 1000000u);
	/* KVM arms a TSC deadline against the guest TSC of the moment: after the TSC. */
	m->entries[1].index = MSR_IA32_TSC_DEADLINE;
	m->entries[1].data = vm->deadline_saved[i];
	m->nmsrs = vm->deadline_saved[i] ? 2 : 1;
	if (kvm_ioctl(c->fd, KVM_SET_MSRS, m) != (int)m->nmsrs)
		rc = kvm_fail_ioctl(d, "KVM_SET_MSRS(IA32_TSC, IA32_TSC_DEADLINE)");
	free(m);
	return rc;
}

int kvm_apply_restored_clock(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	struct kvm_clock_data clock;
	int rc = 0;

	if (!vm->clock_pending)
		return 0;
	/* A plain value (flags 0): KVM neither adds the time elapsed since the save
	 * (KVM_CLOCK_REALTIME) nor checks the host TSC; guest time resumes where it stopped. */
	memset(&clock, 0, sizeof(clock));
	clock.clock = vm->clock_saved;
	if (kvm_ioctl(vm->vm_fd, KVM_SET_CLOCK, &clock))
		return kvm_fail_ioctl(d, "KVM_SET_CLOCK");
	for (uint32_t i = 0; !rc && i < vm->cfg.vcpu_count; i++)
		if (vm->tsc_pending[i] && !(rc = set_tsc(vm, i, d)))
			vm->tsc_pending[i] = false;
	if (!rc)
		vm->clock_pending = false;
	return rc;
}

static uint64_t *tsc_slot(struct squib_x86_vcpu *v)
{
	for (uint32_t i = 0; i < v->msr_count; i++)
		if (v->msrs[i].index == MSR_IA32_TSC)
			return &v->msrs[i].value;
	return NULL;
}

/*
 * What vCPU `i` itself reads as kvm-clock at guest TSC `tsc`: its
 * pvclock page (struct pvclock_vcpu_time_info at the gpa of
 * MSR_KVM_SYSTEM_TIME_NEW) extrapolated as the guest does. Without KVM's
 * master clock (KVM_CLOCK_TSC_STABLE clear: the host's clocksource is not a
 * stable TSC, as in a nested TCG VM) KVM_GET_CLOCK derives the clock from the
 * host's monotonic clock, which drifts from the guest's TSC-extrapolated view
 * between pvclock updates (0.5 ms was seen); a restore that sets the KVM
 * value then makes guest time jump by that much against the TSC. QEMU reads
 * the page for the same reason. Without a master clock every vCPU has its own
 * page and they differ by milliseconds under nested TCG: the capture takes the
 * latest of them, so no vCPU's time goes back after a restore (vCPU 0's alone
 * put the clock 6 ms behind what vCPU 1 had read, on Debian 12's 6.1 kvm_amd).
 * false: no enabled, readable page.
 */
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01u

static bool guest_kvmclock(struct squib_kvm_vm *vm, uint32_t i, uint64_t tsc, uint64_t *ns)
{
	uint64_t msr, stamp, sys, delta;
	const uint8_t *pv;
	uint32_t version, mul;
	int8_t shift;

	if (!read_msr(&vm->vcpus[i], MSR_KVM_SYSTEM_TIME_NEW, &msr) || !(msr & 1) ||
	    !(pv = squib_kvm_vm_gpa_to_hva(vm, msr & ~1ull, 32)))
		return false;
	memcpy(&version, pv, 4);
	memcpy(&stamp, pv + 8, 8);
	memcpy(&sys, pv + 16, 8);
	memcpy(&mul, pv + 24, 4);
	memcpy(&shift, pv + 28, 1);
	if ((version & 1) || tsc < stamp || shift > 31 || shift < -31)
		return false;
	delta = shift < 0 ? (tsc - stamp) >> -shift : (tsc - stamp) << shift;
	*ns = sys + (uint64_t)(((unsigned __int128)delta * mul) >> 32);
	return true;
}

/* See above: x's clock and every vCPU's TSC read back to back. */
static int pair_tsc_with_clock(struct squib_kvm_vm *vm, struct squib_microvm_state *out,
			       struct squib_x86_vm_state *x, struct squib_error_detail *d)
{
	struct kvm_clock_data clock;
	uint64_t guest_ns, latest = 0;
	bool seen = false;

	memset(&clock, 0, sizeof(clock));
	if (kvm_ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock))
		return kvm_fail_ioctl(d, "KVM_GET_CLOCK");
	for (uint32_t i = 0; i < vm->cfg.vcpu_count; i++) {
		uint64_t *tsc = tsc_slot(&out->x86_vcpus[i]);

		if (tsc && !read_msr(&vm->vcpus[i], MSR_IA32_TSC, tsc))
			return kvm_fail_ioctl(d, "KVM_GET_MSRS(IA32_TSC)");
	}
	for (uint32_t i = 0; i < vm->cfg.vcpu_count && !(clock.flags & KVM_CLOCK_TSC_STABLE); i++) {
		uint64_t *tsc = tsc_slot(&out->x86_vcpus[i]);

		if (tsc && guest_kvmclock(vm, i, *tsc, &guest_ns) && (!seen || guest_ns > latest)) {
			latest = guest_ns;
			seen = true;
		}
	}
	if (seen)
		clock.clock = latest;
	x->clock =
	    (struct squib_x86_clock){clock.clock, clock.flags, clock.realtime, clock.host_tsc};
	return 0;
}

/*
 * KVM_SET_MSRS stops at the first MSR it refuses. Some readable MSRs cannot
 * be written in every configuration (MSR_KVM_ASYNC_PF_INT without an
 * in-kernel LAPIC, say) even with the value they already hold; such an MSR
 * is skipped when the fresh vCPU holds the saved value already. Any other
 * refusal fails the restore.
 */
static int set_msr_list(struct kvm_vcpu *c, const struct squib_x86_msr *m, uint32_t count,
			struct squib_error_detail *d)
{
	struct kvm_msrs *b = kvm_msrs_alloc(count);
	uint32_t done = 0;
	uint64_t cur;
	int n, rc = 0;

	if (!b)
		return squib_fail(d, SQUIB_E_NOMEM);
	while (!rc && done < count) {
		b->nmsrs = count - done;
		for (uint32_t i = 0; i < b->nmsrs; i++) {
			b->entries[i].index = m[done + i].index;
			b->entries[i].data = m[done + i].value;
		}
		n = kvm_ioctl(c->fd, KVM_SET_MSRS, b);
		if (n < 0)
			rc = kvm_fail_ioctl(d, "KVM_SET_MSRS");
		else if ((done += (uint32_t)n) == count)
			break;
		else if (!read_msr(c, m[done].index, &cur) || cur != m[done].value)
			rc = squib_fail_msg(d, SQUIB_E_CAPTURE, "KVM_SET_MSRS refused MSR 0x%x",
					    m[done].index);
		else
			done++; /* refused, but already holding the saved value */
	}
	free(b);
	return rc;
}

/* Every saved MSR but the TSC, which waits for the start (see above). */
static int restore_msrs(struct squib_kvm_vm *vm, struct kvm_vcpu *c, const struct squib_x86_vcpu *v,
			struct squib_error_detail *d)
{
	struct squib_x86_msr *m = calloc(v->msr_count ? v->msr_count : 1, sizeof(*m));
	uint32_t n = 0;
	int rc;

	if (!m)
		return squib_fail(d, SQUIB_E_NOMEM);
	vm->tsc_pending[c->index] = false;
	vm->deadline_saved[c->index] = 0;
	for (uint32_t i = 0; i < v->msr_count; i++) {
		if (v->msrs[i].index == MSR_IA32_TSC_DEADLINE) {
			vm->deadline_saved[c->index] = v->msrs[i].value;
			continue;
		}
		if (v->msrs[i].index != MSR_IA32_TSC) {
			m[n++] = v->msrs[i];
			continue;
		}
		vm->tsc_pending[c->index] = true;
		vm->tsc_saved[c->index] = v->msrs[i].value;
		vm->tsc_khz[c->index] = v->tsc_khz;
	}
	rc = set_msr_list(c, m, n, d);
	free(m);
	return rc;
}

/* ---- CPUID --------------------------------------------------------------------- */

/*
 * The table is asked for with exactly as many entries as the vCPU was given:
 * Debian 12's 6.1 kernel (6.1.192) answers KVM_GET_CPUID2 without writing
 * nent back, so a larger buffer came back as the table followed by zeroed
 * entries, which the state model refuses as duplicates of leaf 0.
 */
static int capture_cpuid(struct kvm_vcpu *c, struct squib_x86_vcpu *v, struct squib_error_detail *d)
{
	uint32_t n = c->cpuid_nent ? c->cpuid_nent : CPUID_MAX;
	struct kvm_cpuid2 *b = kvm_cpuid_alloc(n);
	struct squib_x86_cpuid_entry *e = calloc(n, sizeof(*e));
	int rc = 0;

	if (!b || !e) {
		rc = squib_fail(d, SQUIB_E_NOMEM);
		goto out;
	}
	if (kvm_ioctl(c->fd, KVM_GET_CPUID2, b)) {
		rc = kvm_fail_ioctl(d, "KVM_GET_CPUID2");
		goto out;
	}
	if (b->nent > n) {
		rc = squib_fail_msg(d, SQUIB_E_CAPTURE, "KVM_GET_CPUID2: %u entries in room for %u",
				    b->nent, n);
		goto out;
	}
	for (uint32_t i = 0; i < b->nent; i++) {
		const struct kvm_cpuid_entry2 *k = &b->entries[i];
		e[i] = (struct squib_x86_cpuid_entry){k->function, k->index, k->flags, k->eax,
						      k->ebx,	   k->ecx,   k->edx};
	}
	if ((rc = squib_x86_vcpu_set_cpuid(v, e, b->nent)))
		rc = squib_fail_msg(d, SQUIB_E_CAPTURE,
				    "KVM_GET_CPUID2: %u entries, some (function, index) twice",
				    b->nent);
out:
	free(b);
	free(e);
	return rc;
}

static int restore_cpuid(struct kvm_vcpu *c, const struct squib_x86_vcpu *v,
			 struct squib_error_detail *d)
{
	struct kvm_cpuid2 *b = kvm_cpuid_alloc(v->cpuid_count);
	int rc = 0;

	if (!b)
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < v->cpuid_count; i++) {
		const struct squib_x86_cpuid_entry *e = &v->cpuid[i];
		struct kvm_cpuid_entry2 *k = &b->entries[i];

		k->function = e->function;
		k->index = e->index;
		k->flags = e->flags;
		k->eax = e->eax;
		k->ebx = e->ebx;
		k->ecx = e->ecx;
		k->edx = e->edx;
	}
	if (kvm_ioctl(c->fd, KVM_SET_CPUID2, b))
		rc = kvm_fail_ioctl(d, "KVM_SET_CPUID2");
	else
		c->cpuid_nent = v->cpuid_count;
	free(b);
	return rc;
}

/* ---- XSAVE and XCRs ------------------------------------------------------------- */

static int capture_xsave(struct squib_kvm_vm *vm, struct kvm_vcpu *c, struct squib_x86_vcpu *v,
			 struct squib_error_detail *d)
{
	bool big = vm->xsave_size > sizeof(struct kvm_xsave);
	uint8_t *buf;
	int rc;

	if (!vm->xsave_size)
		return 0;
	if (!(buf = calloc(1, vm->xsave_size)))
		return squib_fail(d, SQUIB_E_NOMEM);
	if (kvm_ioctl(c->fd, big ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, buf))
		rc = kvm_fail_ioctl(d, big ? "KVM_GET_XSAVE2" : "KVM_GET_XSAVE");
	else if ((rc = squib_x86_vcpu_set_xsave(v, buf, vm->xsave_size)))
		squib_fail_msg(d, rc, "XSAVE area of %u bytes", vm->xsave_size);
	free(buf);
	return rc;
}

/* KVM reads its own XSAVE size from the buffer; pad a smaller saved area. */
static int restore_xsave(struct squib_kvm_vm *vm, struct kvm_vcpu *c,
			 const struct squib_x86_vcpu *v, struct squib_error_detail *d)
{
	uint8_t *buf;
	int rc = 0;

	if (!v->xsave_size)
		return 0;
	if (!(buf = calloc(1, vm->xsave_size)))
		return squib_fail(d, SQUIB_E_NOMEM);
	memcpy(buf, v->xsave, v->xsave_size);
	if (kvm_ioctl(c->fd, KVM_SET_XSAVE, buf))
		rc = kvm_fail_ioctl(d, "KVM_SET_XSAVE");
	free(buf);
	return rc;
}

static int capture_xcrs(struct kvm_vcpu *c, struct squib_x86_vcpu *v, struct squib_error_detail *d)
{
	struct squib_x86_xcr xcrs[SQUIB_X86_MAX_XCRS];
	struct kvm_xcrs x;
	int rc;

	memset(&x, 0, sizeof(x));
	if (kvm_ioctl(c->fd, KVM_GET_XCRS, &x))
		return kvm_fail_ioctl(d, "KVM_GET_XCRS");
	if (x.nr_xcrs > SQUIB_X86_MAX_XCRS)
		return squib_fail_msg(d, SQUIB_E_CAPTURE, "KVM_GET_XCRS: %u XCRs", x.nr_xcrs);
	for (uint32_t i = 0; i < x.nr_xcrs; i++)
		xcrs[i] = (struct squib_x86_xcr){x.xcrs[i].xcr, x.xcrs[i].value};
	if ((rc = squib_x86_vcpu_set_xcrs(v, xcrs, x.nr_xcrs)))
		return squib_fail_msg(d, SQUIB_E_CAPTURE, "KVM_GET_XCRS: duplicate XCR");
	return 0;
}

static int restore_xcrs(struct kvm_vcpu *c, const struct squib_x86_vcpu *v,
			struct squib_error_detail *d)
{
	struct kvm_xcrs x;

	if (!v->xcr_count)
		return 0;
	memset(&x, 0, sizeof(x));
	x.nr_xcrs = v->xcr_count;
	for (uint32_t i = 0; i < v->xcr_count; i++) {
		x.xcrs[i].xcr = v->xcrs[i].xcr;
		x.xcrs[i].value = v->xcrs[i].value;
	}
	if (kvm_ioctl(c->fd, KVM_SET_XCRS, &x))
		return kvm_fail_ioctl(d, "KVM_SET_XCRS");
	return 0;
}

/* ---- one vCPU --------------------------------------------------------------------- */

static int capture_basics(struct squib_kvm_vm *vm, struct kvm_vcpu *c, struct squib_x86_vcpu *v,
			  struct squib_error_detail *d)
{
	struct kvm_mp_state mp;
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (kvm_ioctl(c->fd, KVM_GET_MP_STATE, &mp))
		return kvm_fail_ioctl(d, "KVM_GET_MP_STATE");
	v->mp_state = mp.mp_state;
	if (kvm_ioctl(c->fd, KVM_GET_REGS, &regs))
		return kvm_fail_ioctl(d, "KVM_GET_REGS");
	memcpy(&v->regs, &regs, sizeof(regs));
	if (kvm_ioctl(c->fd, KVM_GET_SREGS, &sregs))
		return kvm_fail_ioctl(d, "KVM_GET_SREGS");
	sregs_out(&v->sregs, &sregs);
	return capture_xsave(vm, c, v, d);
}

static int capture_debug_lapic_tsc(struct squib_kvm_vm *vm, struct kvm_vcpu *c,
				   struct squib_x86_vcpu *v, struct squib_error_detail *d)
{
	struct kvm_debugregs dbg;
	int khz;

	if (kvm_ioctl(c->fd, KVM_GET_DEBUGREGS, &dbg))
		return kvm_fail_ioctl(d, "KVM_GET_DEBUGREGS");
	memcpy(v->debugregs.db, dbg.db, sizeof(dbg.db));
	v->debugregs.dr6 = dbg.dr6;
	v->debugregs.dr7 = dbg.dr7;
	v->debugregs.flags = dbg.flags;
	if (vm->cfg.irqchip) {
		if (kvm_ioctl(c->fd, KVM_GET_LAPIC, v->lapic))
			return kvm_fail_ioctl(d, "KVM_GET_LAPIC");
		v->has_lapic = true;
	}
	khz = kvm_ioctl(c->fd, KVM_GET_TSC_KHZ, NULL);
	v->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
	return 0;
}

static int capture_vcpu(struct squib_kvm_vm *vm, struct kvm_vcpu *c, struct squib_x86_vcpu *v,
			struct squib_error_detail *d)
{
	int rc;

	if ((rc = capture_basics(vm, c, v, d)) || (rc = capture_xcrs(c, v, d)) ||
	    (rc = capture_debug_lapic_tsc(vm, c, v, d)) || (rc = capture_cpuid(c, v, d)) ||
	    (rc = capture_msrs(vm, c, v, d)))
		return rc;
	if (kvm_ioctl(c->fd, KVM_GET_VCPU_EVENTS, v->events))
		return kvm_fail_ioctl(d, "KVM_GET_VCPU_EVENTS");
	return 0;
}

static int restore_tsc_khz(struct kvm_vcpu *c, const struct squib_x86_vcpu *v,
			   struct squib_error_detail *d)
{
	int khz = kvm_ioctl(c->fd, KVM_GET_TSC_KHZ, NULL);

	if (!v->tsc_khz || khz == (int)v->tsc_khz)
		return 0;
	if (kvm_ioctl(c->fd, KVM_SET_TSC_KHZ, (void *)(uintptr_t)v->tsc_khz))
		return kvm_fail_ioctl(d, "KVM_SET_TSC_KHZ");
	return 0;
}

static int restore_basics(struct kvm_vcpu *c, const struct squib_x86_vcpu *v,
			  struct squib_error_detail *d)
{
	struct kvm_mp_state mp = {v->mp_state};
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	int rc;

	if ((rc = restore_cpuid(c, v, d)) || (rc = restore_tsc_khz(c, v, d)))
		return rc;
	if (kvm_ioctl(c->fd, KVM_SET_MP_STATE, &mp)) /* as saved: no normalisation */
		return kvm_fail_ioctl(d, "KVM_SET_MP_STATE");
	memcpy(&regs, &v->regs, sizeof(regs));
	if (kvm_ioctl(c->fd, KVM_SET_REGS, &regs))
		return kvm_fail_ioctl(d, "KVM_SET_REGS");
	sregs_in(&sregs, &v->sregs);
	if (kvm_ioctl(c->fd, KVM_SET_SREGS, &sregs))
		return kvm_fail_ioctl(d, "KVM_SET_SREGS");
	return 0;
}

static int restore_vcpu(struct squib_kvm_vm *vm, struct kvm_vcpu *c, const struct squib_x86_vcpu *v,
			struct squib_error_detail *d)
{
	struct kvm_debugregs dbg;
	int rc;

	if ((rc = restore_basics(c, v, d)) || (rc = restore_xsave(vm, c, v, d)) ||
	    (rc = restore_xcrs(c, v, d)))
		return rc;
	memset(&dbg, 0, sizeof(dbg));
	memcpy(dbg.db, v->debugregs.db, sizeof(dbg.db));
	dbg.dr6 = v->debugregs.dr6;
	dbg.dr7 = v->debugregs.dr7;
	dbg.flags = v->debugregs.flags;
	if (kvm_ioctl(c->fd, KVM_SET_DEBUGREGS, &dbg))
		return kvm_fail_ioctl(d, "KVM_SET_DEBUGREGS");
	if (v->has_lapic && kvm_ioctl(c->fd, KVM_SET_LAPIC, (void *)v->lapic))
		return kvm_fail_ioctl(d, "KVM_SET_LAPIC");
	if ((rc = restore_msrs(vm, c, v, d)))
		return rc;
	if (kvm_ioctl(c->fd, KVM_SET_VCPU_EVENTS, (void *)v->events))
		return kvm_fail_ioctl(d, "KVM_SET_VCPU_EVENTS");
	return 0;
}

/* ---- the VM ------------------------------------------------------------------------ */

static int get_chip(struct squib_kvm_vm *vm, uint32_t id, void *dst, size_t size,
		    struct squib_error_detail *d)
{
	struct kvm_irqchip chip;

	memset(&chip, 0, sizeof(chip));
	chip.chip_id = id;
	if (kvm_ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip))
		return kvm_fail_ioctl(d, "KVM_GET_IRQCHIP");
	memcpy(dst, &chip.chip, size);
	return 0;
}

static int set_chip(struct squib_kvm_vm *vm, uint32_t id, const void *src, size_t size,
		    struct squib_error_detail *d)
{
	struct kvm_irqchip chip;

	memset(&chip, 0, sizeof(chip));
	chip.chip_id = id;
	memcpy(&chip.chip, src, size);
	if (kvm_ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &chip))
		return kvm_fail_ioctl(d, "KVM_SET_IRQCHIP");
	return 0;
}

static int capture_vm(struct squib_kvm_vm *vm, struct squib_x86_vm_state *x,
		      struct squib_error_detail *d)
{
	struct kvm_clock_data clock;
	int rc;

	memset(&clock, 0, sizeof(clock));
	if (kvm_ioctl(vm->vm_fd, KVM_GET_CLOCK, &clock))
		return kvm_fail_ioctl(d, "KVM_GET_CLOCK");
	x->clock =
	    (struct squib_x86_clock){clock.clock, clock.flags, clock.realtime, clock.host_tsc};
	if (!vm->cfg.irqchip)
		return 0;
	if ((rc = get_chip(vm, KVM_IRQCHIP_PIC_MASTER, x->pic_master, SQUIB_X86_PIC_SIZE, d)) ||
	    (rc = get_chip(vm, KVM_IRQCHIP_PIC_SLAVE, x->pic_slave, SQUIB_X86_PIC_SIZE, d)) ||
	    (rc = get_chip(vm, KVM_IRQCHIP_IOAPIC, x->ioapic, SQUIB_X86_IOAPIC_SIZE, d)))
		return rc;
	x->has_irqchip = true;
	if (kvm_ioctl(vm->vm_fd, KVM_GET_PIT2, x->pit))
		return kvm_fail_ioctl(d, "KVM_GET_PIT2");
	x->has_pit = true;
	return 0;
}

/* The clock waits for the vCPUs to start (kvm_apply_restored_clock). */
static int restore_vm(struct squib_kvm_vm *vm, const struct squib_x86_vm_state *x,
		      struct squib_error_detail *d)
{
	int rc;

	vm->clock_pending = true;
	vm->clock_saved = x->clock.clock;
	if (x->has_irqchip &&
	    ((rc = set_chip(vm, KVM_IRQCHIP_PIC_MASTER, x->pic_master, SQUIB_X86_PIC_SIZE, d)) ||
	     (rc = set_chip(vm, KVM_IRQCHIP_PIC_SLAVE, x->pic_slave, SQUIB_X86_PIC_SIZE, d)) ||
	     (rc = set_chip(vm, KVM_IRQCHIP_IOAPIC, x->ioapic, SQUIB_X86_IOAPIC_SIZE, d))))
		return rc;
	if (x->has_pit && kvm_ioctl(vm->vm_fd, KVM_SET_PIT2, (void *)x->pit))
		return kvm_fail_ioctl(d, "KVM_SET_PIT2");
	return 0;
}

/* ---- entry points ------------------------------------------------------------------ */

static uint64_t ram_mib(const struct squib_kvm_vm *vm)
{
	uint64_t total = 0;

	for (uint32_t i = 0; i < vm->slot_count; i++)
		total += vm->slots[i].size;
	return total >> 20;
}

static int capture_all(struct squib_kvm_vm *vm, struct squib_microvm_state *out,
		       struct squib_error_detail *d)
{
	struct squib_x86_vm_state x;
	int rc;

	if ((rc = find_readable_msrs(vm, d)))
		return rc;
	out->vm_info.mem_size_mib = ram_mib(vm);
	for (uint32_t i = 0; i < vm->cfg.vcpu_count; i++) {
		struct squib_x86_vcpu *v;

		if ((rc = squib_state_add_x86_vcpu(out, &v)))
			return squib_fail_msg(d, rc, "adding vCPU %u to the state", i);
		if ((rc = capture_vcpu(vm, &vm->vcpus[i], v, d)))
			return rc;
	}
	memset(&x, 0, sizeof(x));
	if ((rc = capture_vm(vm, &x, d)) || (rc = pair_tsc_with_clock(vm, out, &x, d)))
		return rc;
	if ((rc = squib_state_set_x86_vm(out, &x)))
		return squib_fail_msg(d, rc, "setting the VM-wide x86 state");
	return kvm_devices_save(vm, out, d);
}

int squib_kvm_vm_capture(struct squib_kvm_vm *vm, struct squib_microvm_state *out,
			 struct squib_error_detail *d)
{
	int rc;

	if (!vm || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to capture");
	squib_state_init(out, SQUIB_ARCH_X86_64);
	kvm_lock(&vm->ctl);
	if (!kvm_vcpus_quiet(vm))
		rc = squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "capture needs a paused VM");
	else if (!(rc = kvm_vm_realize(vm, d)) && !(rc = kvm_apply_restored_clock(vm, d)))
		rc = capture_all(vm, out, d);
	kvm_unlock(&vm->ctl);
	if (rc)
		squib_state_free(out);
	return rc;
}

static int check_vcpu_fits(const struct squib_kvm_vm *vm, const struct squib_x86_vcpu *v,
			   uint32_t i, struct squib_error_detail *d)
{
	if (v->has_lapic != vm->cfg.irqchip)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE, "vCPU %u: LAPIC %s, VM irqchip %s",
				      i, v->has_lapic ? "saved" : "absent",
				      vm->cfg.irqchip ? "present" : "absent");
	if (v->xsave_size > vm->xsave_size)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
				      "vCPU %u: XSAVE area of %u bytes, this host's is %u", i,
				      v->xsave_size, vm->xsave_size);
	return 0;
}

static int check_fits(const struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
		      struct squib_error_detail *d)
{
	int rc;

	if (vm->started)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "restore into a started VM");
	if (s->arch != SQUIB_ARCH_X86_64 || !s->x86_vm || !s->x86_vcpus ||
	    s->vcpu_count != vm->cfg.vcpu_count)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
				      "state (%s, %u vCPUs%s) does not fit a %u-vCPU x86_64 VM",
				      squib_arch_name(s->arch), s->vcpu_count,
				      s->x86_vm ? "" : ", no VM state", vm->cfg.vcpu_count);
	if (s->x86_vm->has_irqchip != vm->cfg.irqchip || s->x86_vm->has_pit != vm->cfg.irqchip)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE, "irqchip/PIT presence differs");
	for (uint32_t i = 0; i < s->vcpu_count; i++)
		if ((rc = check_vcpu_fits(vm, &s->x86_vcpus[i], i, d)))
			return rc;
	return 0;
}

int squib_kvm_vm_restore(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
			 struct squib_error_detail *d)
{
	int rc;

	if (!vm || !s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to restore");
	kvm_lock(&vm->ctl);
	rc = check_fits(vm, s, d);
	if (!rc)
		rc = kvm_vm_realize(vm, d);
	if (!rc)
		rc = restore_vm(vm, s->x86_vm, d);
	for (uint32_t i = 0; !rc && i < vm->cfg.vcpu_count; i++)
		rc = restore_vcpu(vm, &vm->vcpus[i], &s->x86_vcpus[i], d);
	if (!rc)
		rc = kvm_devices_restore(vm, s, d);
	kvm_unlock(&vm->ctl);
	return rc;
}

int kvm_restore_vm_step(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
			struct squib_error_detail *d)
{
	int rc;

	kvm_lock(&vm->ctl);
	rc = check_fits(vm, s, d);
	if (!rc)
		rc = kvm_vm_realize(vm, d);
	if (!rc)
		rc = restore_vm(vm, s->x86_vm, d);
	kvm_unlock(&vm->ctl);
	return rc;
}

int kvm_restore_vcpus_step(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
			   struct squib_error_detail *d)
{
	int rc;

	kvm_lock(&vm->ctl);
	rc = check_fits(vm, s, d);
	if (!rc)
		rc = kvm_vm_realize(vm, d);
	for (uint32_t i = 0; !rc && i < vm->cfg.vcpu_count; i++)
		rc = restore_vcpu(vm, &vm->vcpus[i], &s->x86_vcpus[i], d);
	kvm_unlock(&vm->ctl);
	return rc;
}

int kvm_restore_devices_step(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
			     struct squib_error_detail *d)
{
	int rc;

	kvm_lock(&vm->ctl);
	rc = check_fits(vm, s, d);
	if (!rc)
		rc = kvm_devices_restore(vm, s, d);
	kvm_unlock(&vm->ctl);
	return rc;
}
