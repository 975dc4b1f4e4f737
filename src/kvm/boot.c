/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Direct entry into 64-bit long mode: GDT, identity page tables with 2 MiB
 * pages (accessed/dirty bits preset so the CPU never writes them), and the
 * control registers, set through KVM_SET_SREGS on every vCPU.
 */
#include "kvm_internal.h"

#include <string.h>

#define PAGE	4096ull
#define MAP_MAX (4ull << 30)
#define HUGE	(2ull << 20)

#define PTE_P  (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_A  (1ull << 5)
#define PTE_D  (1ull << 6)
#define PTE_PS (1ull << 7)

#define GDT_CODE64 0x00AF9B000000FFFFull /* P, DPL 0, S, exec/read accessed, L, G */
#define GDT_DATA   0x00CF93000000FFFFull /* P, DPL 0, S, read/write accessed, D/B, G */
#define SEL_CODE   0x08
#define SEL_DATA   0x10

#define CR0_PE	       (1ull << 0)
#define CR0_MP	       (1ull << 1)
#define CR0_ET	       (1ull << 4)
#define CR0_NE	       (1ull << 5)
#define CR0_WP	       (1ull << 16)
#define CR0_PG	       (1ull << 31)
#define CR4_PAE	       (1ull << 5)
#define CR4_OSFXSR     (1ull << 9)
#define CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME       (1ull << 8)
#define EFER_LMA       (1ull << 10)

static int check_boot(struct squib_kvm_vm *vm, const struct squib_kvm_boot *b, uint8_t **tables,
		      struct squib_error_detail *d)
{
	uint64_t pages;

	if (vm->started)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "boot after start");
	if (!b->map_size || b->map_size % HUGE || b->map_size > MAP_MAX || b->tables_gpa % PAGE)
		return squib_fail_msg(
		    d, SQUIB_E_INVALID_ARGUMENT, "identity map of 0x%llx bytes, tables at 0x%llx",
		    (unsigned long long)b->map_size, (unsigned long long)b->tables_gpa);
	pages = SQUIB_KVM_TABLE_PAGES(b->map_size);
	*tables = squib_kvm_vm_gpa_to_hva(vm, b->tables_gpa, pages * PAGE);
	if (!*tables)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "the %llu table pages at 0x%llx are not in one RAM region",
				      (unsigned long long)pages, (unsigned long long)b->tables_gpa);
	return 0;
}

/* Page 0: GDT; 1: PML4; 2: PDPT; 3..: one PD per GiB. */
static void write_tables(uint8_t *t, uint64_t gpa, uint64_t map_size)
{
	uint64_t *gdt = (uint64_t *)t, *pml4 = (uint64_t *)(t + PAGE);
	uint64_t *pdpt = (uint64_t *)(t + 2 * PAGE), *pd = (uint64_t *)(t + 3 * PAGE);
	uint64_t huge_pages = map_size / HUGE;

	memset(t, 0, SQUIB_KVM_TABLE_PAGES(map_size) * PAGE);
	gdt[SEL_CODE / 8] = GDT_CODE64;
	gdt[SEL_DATA / 8] = GDT_DATA;
	pml4[0] = (gpa + 2 * PAGE) | PTE_P | PTE_RW | PTE_A;
	for (uint64_t i = 0; i < (huge_pages + 511) / 512; i++)
		pdpt[i] = (gpa + (3 + i) * PAGE) | PTE_P | PTE_RW | PTE_A;
	for (uint64_t i = 0; i < huge_pages; i++)
		pd[i] = (i * HUGE) | PTE_P | PTE_RW | PTE_A | PTE_D | PTE_PS;
}

static struct kvm_segment flat_segment(uint16_t selector, bool code)
{
	struct kvm_segment s = {
	    .base = 0,
	    .limit = 0xffffffff,
	    .selector = selector,
	    .type = code ? 11 : 3, /* accessed, as in the GDT */
	    .present = 1,
	    .s = 1,
	    .g = 1,
	};

	if (code)
		s.l = 1;
	else
		s.db = 1;
	return s;
}

static void long_mode_sregs(struct kvm_sregs *s, uint64_t tables_gpa)
{
	struct kvm_segment data = flat_segment(SEL_DATA, false);

	s->cs = flat_segment(SEL_CODE, true);
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	/* A busy 64-bit TSS and an LDT, as VMX entry checks want; never loaded by the guest. */
	s->tr = (struct kvm_segment){.limit = 0x67, .type = 11, .present = 1};
	s->ldt = (struct kvm_segment){.limit = 0xffff, .type = 2, .present = 1};
	s->gdt.base = tables_gpa;
	s->gdt.limit = 3 * 8 - 1;
	s->idt.base = 0;
	s->idt.limit = 0; /* any exception triple-faults: a SHUTDOWN exit, not silence */
	s->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	s->cr3 = tables_gpa + PAGE;
	s->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	s->efer = EFER_LME | EFER_LMA;
}

static int boot_vcpu(struct kvm_vcpu *c, const struct squib_kvm_entry *e, uint64_t tables_gpa,
		     struct squib_error_detail *d)
{
	struct kvm_mp_state mp = {KVM_MP_STATE_RUNNABLE};
	struct kvm_regs regs = {.rip = e->rip,
				.rsp = e->rsp,
				.rdi = e->rdi,
				.rsi = e->rsi,
				.rdx = e->rdx,
				.rflags = 0x2};
	struct kvm_sregs s;

	if (kvm_ioctl(c->fd, KVM_GET_SREGS, &s))
		return kvm_fail_ioctl(d, "KVM_GET_SREGS");
	long_mode_sregs(&s, tables_gpa);
	if (kvm_ioctl(c->fd, KVM_SET_SREGS, &s))
		return kvm_fail_ioctl(d, "KVM_SET_SREGS");
	if (kvm_ioctl(c->fd, KVM_SET_REGS, &regs))
		return kvm_fail_ioctl(d, "KVM_SET_REGS");
	/* With an in-kernel LAPIC the APs would otherwise wait for INIT/SIPI. */
	if (kvm_ioctl(c->fd, KVM_SET_MP_STATE, &mp))
		return kvm_fail_ioctl(d, "KVM_SET_MP_STATE");
	return 0;
}

int squib_kvm_vm_boot_long_mode(struct squib_kvm_vm *vm, const struct squib_kvm_boot *b,
				struct squib_error_detail *d)
{
	uint8_t *tables;
	int rc;

	if (!vm || !b)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to boot");
	kvm_lock(&vm->ctl);
	if (!(rc = kvm_vm_realize(vm, d)) && !(rc = check_boot(vm, b, &tables, d))) {
		write_tables(tables, b->tables_gpa, b->map_size);
		for (uint32_t i = 0; !rc && i < vm->cfg.vcpu_count; i++)
			rc = boot_vcpu(&vm->vcpus[i], &b->entry[i], b->tables_gpa, d);
	}
	kvm_unlock(&vm->ctl);
	return rc;
}
