/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib_kvm_vm_dump: what a stuck guest is doing, in one screen of text.
 * Read through the same ioctls a capture uses, so the VM must be quiet
 * (paused, failed or never started) while it runs; a running VM is paused
 * for the dump and resumed after it.
 */
#include "kvm_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSR_IA32_TSC	      0x10u
#define MSR_IA32_TSC_DEADLINE 0x6e0u
#define STACK_SCAN	      1024u /* bytes of stack looked at */
#define CR0_PG		      (1ull << 31)

static uint32_t apic_reg(const struct kvm_lapic_state *l, uint32_t off)
{
	uint32_t v;

	memcpy(&v, l->regs + off, sizeof(v));
	return v;
}

/* An 8 x 32-bit APIC bit array (ISR, TMR, IRR) as the vectors set in it. */
static void apic_vectors(FILE *out, const char *name, const struct kvm_lapic_state *l, uint32_t off)
{
	fprintf(out, " %s:", name);
	for (uint32_t w = 0; w < 8; w++) {
		uint32_t bits = apic_reg(l, off + w * 0x10);

		for (uint32_t b = 0; b < 32; b++)
			if (bits & (1u << b))
				fprintf(out, " 0x%02x", w * 32 + b);
	}
}

static void dump_lapic(FILE *out, struct kvm_vcpu *c)
{
	struct kvm_lapic_state l;

	if (kvm_ioctl(c->fd, KVM_GET_LAPIC, &l)) {
		fprintf(out, "  lapic: KVM_GET_LAPIC failed\n");
		return;
	}
	fprintf(out,
		"  lapic: id 0x%x tpr 0x%x ppr 0x%x svr 0x%x esr 0x%x lvtt 0x%x lint0 0x%x "
		"lint1 0x%x lvterr 0x%x tmict %u tmcct %u tdcr 0x%x\n ",
		apic_reg(&l, 0x20) >> 24, apic_reg(&l, 0x80), apic_reg(&l, 0xa0),
		apic_reg(&l, 0xf0), apic_reg(&l, 0x280), apic_reg(&l, 0x320), apic_reg(&l, 0x350),
		apic_reg(&l, 0x360), apic_reg(&l, 0x370), apic_reg(&l, 0x380), apic_reg(&l, 0x390),
		apic_reg(&l, 0x3e0));
	apic_vectors(out, "irr", &l, 0x200);
	apic_vectors(out, " isr", &l, 0x100);
	apic_vectors(out, " tmr", &l, 0x180);
	fputc('\n', out);
}

static void dump_msrs(FILE *out, struct kvm_vcpu *c)
{
	struct kvm_msrs *m = kvm_msrs_alloc(2);

	if (!m)
		return;
	m->entries[0].index = MSR_IA32_TSC;
	m->entries[1].index = MSR_IA32_TSC_DEADLINE;
	if (kvm_ioctl(c->fd, KVM_GET_MSRS, m) == 2)
		fprintf(out, "  tsc %llu tsc_deadline %llu\n",
			(unsigned long long)m->entries[0].data,
			(unsigned long long)m->entries[1].data);
	free(m);
}

static void dump_events(FILE *out, struct kvm_vcpu *c)
{
	struct kvm_vcpu_events e;
	struct kvm_mp_state mp;

	if (kvm_ioctl(c->fd, KVM_GET_MP_STATE, &mp) == 0)
		fprintf(out, "  mp_state %u (0 runnable, 3 halted)", mp.mp_state);
	if (kvm_ioctl(c->fd, KVM_GET_VCPU_EVENTS, &e) == 0)
		fprintf(out,
			" exception %u/%u irq injected %u nr 0x%x soft %u shadow %u nmi "
			"injected %u pending %u masked %u",
			e.exception.injected, e.exception.nr, e.interrupt.injected, e.interrupt.nr,
			e.interrupt.soft, e.interrupt.shadow, e.nmi.injected, e.nmi.pending,
			e.nmi.masked);
	fputc('\n', out);
}

/* Guest-virtual to host pointer through the vCPU's page tables; NULL if unmapped. */
static const uint8_t *guest_ptr(struct squib_kvm_vm *vm, struct kvm_vcpu *c, uint64_t gva,
				uint64_t len)
{
	struct kvm_translation t = {.linear_address = gva};

	if (kvm_ioctl(c->fd, KVM_TRANSLATE, &t) || !t.valid)
		return NULL;
	return squib_kvm_vm_gpa_to_hva(vm, t.physical_address, len);
}

/*
 * The words on the stack that look like kernel text addresses (the upper 2 GiB),
 * nearest first: the call chain a symbol table turns into a backtrace.
 */
static void dump_stack_words(FILE *out, struct squib_kvm_vm *vm, struct kvm_vcpu *c, uint64_t rsp)
{
	uint32_t shown = 0;

	fprintf(out, "  stack words that may be return addresses:");
	for (uint64_t a = rsp & ~7ull; a < rsp + STACK_SCAN && shown < 40; a += 8) {
		const uint8_t *p = guest_ptr(vm, c, a, 8);
		uint64_t w;

		if (!p)
			break;
		memcpy(&w, p, 8);
		if (w >> 31 == 0x1ffffffffull) {
			fprintf(out, "%s[rsp+0x%llx] 0x%llx", shown % 3 ? " " : "\n   ",
				(unsigned long long)(a - rsp), (unsigned long long)w);
			shown++;
		}
	}
	fputc('\n', out);
}

static void dump_regs(FILE *out, const struct kvm_regs *r)
{
	fprintf(out,
		"  rip 0x%llx rsp 0x%llx rflags 0x%llx (IF %u) rax 0x%llx rcx 0x%llx rdx 0x%llx "
		"rdi 0x%llx\n",
		(unsigned long long)r->rip, (unsigned long long)r->rsp,
		(unsigned long long)r->rflags, (unsigned)(r->rflags >> 9) & 1,
		(unsigned long long)r->rax, (unsigned long long)r->rcx, (unsigned long long)r->rdx,
		(unsigned long long)r->rdi);
}

static void dump_vcpu(FILE *out, struct squib_kvm_vm *vm, struct kvm_vcpu *c)
{
	struct kvm_regs r;
	struct kvm_sregs sr;
	bool have_regs, paging = false;

	kvm_lock(&vm->lock);
	fprintf(out, "vcpu %u: exits %llu (io %llu), last exit reason %u\n", c->index,
		(unsigned long long)c->exits, (unsigned long long)c->io_exits, c->exit_reason);
	kvm_unlock(&vm->lock);
	if ((have_regs = kvm_ioctl(c->fd, KVM_GET_REGS, &r) == 0))
		dump_regs(out, &r);
	if (kvm_ioctl(c->fd, KVM_GET_SREGS, &sr) == 0) {
		fprintf(out, "  cr0 0x%llx cr3 0x%llx cr4 0x%llx efer 0x%llx apic_base 0x%llx\n",
			(unsigned long long)sr.cr0, (unsigned long long)sr.cr3,
			(unsigned long long)sr.cr4, (unsigned long long)sr.efer,
			(unsigned long long)sr.apic_base);
		paging = sr.cr0 & CR0_PG;
	}
	dump_events(out, c);
	if (have_regs && paging)
		dump_stack_words(out, vm, c, r.rsp);
	if (vm->cfg.irqchip)
		dump_lapic(out, c);
	dump_msrs(out, c);
}

static void dump_pic(FILE *out, const char *name, const struct kvm_pic_state *p)
{
	fprintf(out,
		"%s: irr 0x%02x imr 0x%02x isr 0x%02x base 0x%02x last_irr 0x%02x "
		"auto_eoi %u elcr 0x%02x init_state %u\n",
		name, p->irr, p->imr, p->isr, p->irq_base, p->last_irr, p->auto_eoi, p->elcr,
		p->init_state);
}

static void dump_ioapic(FILE *out, const struct kvm_ioapic_state *io)
{
	fprintf(out, "ioapic: irr 0x%x, unmasked pins:", io->irr);
	for (int i = 0; i < KVM_IOAPIC_NUM_PINS; i++)
		if (!io->redirtbl[i].fields.mask)
			fprintf(out, " %d->0x%02x%s", i, io->redirtbl[i].fields.vector,
				io->redirtbl[i].fields.remote_irr ? " (remote irr)" : "");
	fputc('\n', out);
}

static void dump_pit(FILE *out, struct squib_kvm_vm *vm)
{
	struct kvm_pit_state2 p;

	if (kvm_ioctl(vm->vm_fd, KVM_GET_PIT2, &p))
		return;
	fprintf(out, "pit: flags 0x%x", p.flags);
	for (int i = 0; i < 3; i++)
		fprintf(out, " ch%d count %u mode %u gate %u", i, p.channels[i].count,
			p.channels[i].mode, p.channels[i].gate);
	fputc('\n', out);
}

static void dump_chips(FILE *out, struct squib_kvm_vm *vm)
{
	static const char *const names[] = {"pic master", "pic slave"};
	struct kvm_irqchip chip;

	for (uint32_t i = 0; i < 3; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = i;
		if (kvm_ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &chip))
			continue;
		if (i < 2)
			dump_pic(out, names[i], &chip.chip.pic);
		else
			dump_ioapic(out, &chip.chip.ioapic);
	}
	dump_pit(out, vm);
}

int squib_kvm_vm_dump(struct squib_kvm_vm *vm, FILE *out, struct squib_error_detail *d)
{
	bool paused = false;
	int rc = 0;

	if (!vm || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to dump");
	if (!kvm_vcpus_quiet(vm)) {
		if ((rc = squib_kvm_vm_pause(vm, d)))
			return rc;
		paused = true;
	}
	kvm_lock(&vm->ctl);
	for (uint32_t i = 0; vm->vcpus_created && i < vm->cfg.vcpu_count; i++)
		dump_vcpu(out, vm, &vm->vcpus[i]);
	if (vm->irqchip_created && vm->cfg.irqchip)
		dump_chips(out, vm);
	kvm_unlock(&vm->ctl);
	fflush(out);
	return paused ? squib_kvm_vm_resume(vm, d) : 0;
}
