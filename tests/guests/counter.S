/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Counter guest (64-bit, position independent, no stack, no interrupts).
 *
 * In:  %rsi = address of this vCPU's 64-bit counter (its own page)
 *      %rdx = counter-report port
 * Each iteration increments the counter in memory; every 1024th value is
 * written (low 32 bits) to the report port. Four instructions per
 * iteration: at ~1 us per instruction (nested KVM) a report every ~4 ms.
 * The counter is reloaded from memory on every iteration, so a restored
 * memory image carries on from its saved value.
 *
 * Header (read by the tests): offset 8 holds the magic "SQGUEST1", offset 16
 * the offset of the OUT instruction, 24 the report mask.
 */
	.code64
	.text
	.globl _start
_start:
	jmp	entry
	.balign	8
	.ascii	"SQGUEST1"
	.quad	report - _start
	.quad	REPORT_MASK
	.equ	REPORT_MASK, 1023

entry:
1:	movq	(%rsi), %rax
	incq	%rax
	movq	%rax, (%rsi)
	testl	$REPORT_MASK, %eax
	jnz	1b
report:
	outl	%eax, %dx
	jmp	1b
