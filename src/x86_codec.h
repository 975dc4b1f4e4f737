/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The x86_64 sections of the state file (internal, not installed):
 * VCPU_X86_64 (0x0010, one per vCPU) and X86_VM (0x0011). Layouts are in
 * docs/FORMAT.md §2.3. The envelope frames the sections; these functions
 * write and read their content.
 */
#ifndef SQUIB_X86_CODEC_H
#define SQUIB_X86_CODEC_H

#include <stdint.h>

#include <squib/error.h>
#include <squib/state.h>

#include "wire.h"

/* Fixed part of a VCPU_X86_64 section, before the LAPIC option byte. */
#define SQUIB_X86_VCPU_FIXED_BYTES 564u
/* Content of an X86_VM section without irqchip and PIT. */
#define SQUIB_X86_VM_MIN_BYTES 30u

/* qsort comparators of the canonical orders: XCRs by xcr, CPUID entries by
 * (function, index), MSRs by index. */
int squib_x86_xcr_cmp(const void *a, const void *b);
int squib_x86_cpuid_cmp(const void *a, const void *b);
int squib_x86_msr_cmp(const void *a, const void *b);

/* Everything the encoder needs to refuse up front (SQUIB_E_INVALID_ARGUMENT). */
int squib_x86_check_vcpu(const struct squib_x86_vcpu *v, uint32_t idx,
			 struct squib_error_detail *d);

/* Write one vCPU's content (arrays in canonical order; duplicates are
 * SQUIB_E_INVALID_ARGUMENT, allocation failure SQUIB_E_NOMEM). */
int squib_x86_put_vcpu(struct squib_wire_writer *w, const struct squib_x86_vcpu *v, uint32_t idx,
		       struct squib_error_detail *d);
void squib_x86_put_vm(struct squib_wire_writer *w, const struct squib_x86_vm_state *vm);

/* Read one section's content (r covers exactly the content; the caller
 * checks that all of it was consumed). SQUIB_E_ENCODING or SQUIB_E_NOMEM. */
int squib_x86_get_vcpu(struct squib_wire_reader *r, uint32_t idx, struct squib_x86_vcpu *v);
int squib_x86_get_vm(struct squib_wire_reader *r, struct squib_x86_vm_state *vm);

#endif /* SQUIB_X86_CODEC_H */
