/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Page-writer guest (64-bit, position independent, no stack, no interrupts).
 *
 * In:  %rdi = parameter block: +0 base address, +8 page mask (pages - 1,
 *             pages a power of two), +16 number of writes (>= 1), +24 result
 *      %rsi = seed (non-zero)
 *      %rdx = report port
 * x starts at the seed; each write steps x with xorshift64 (x ^= x << 13;
 * x ^= x >> 7; x ^= x << 17) and stores x at base + ((x & mask) << 12).
 * Then it stores the last x at +24 of the parameter block, writes its low 32
 * bits to the report port and halts for good. So the pages written are
 * exactly the chosen target pages plus the parameter block's page.
 */
	.code64
	.text
	.globl _start
_start:
	jmp	entry
	.balign	8
	.ascii	"SQGUEST1"
	.quad	report - _start
	.quad	0

entry:
	movq	0(%rdi), %r8
	movq	8(%rdi), %r9
	movq	16(%rdi), %rcx
	movq	%rsi, %rax
1:	movq	%rax, %r10
	shlq	$13, %r10
	xorq	%r10, %rax
	movq	%rax, %r10
	shrq	$7, %r10
	xorq	%r10, %rax
	movq	%rax, %r10
	shlq	$17, %r10
	xorq	%r10, %rax
	movq	%rax, %r11
	andq	%r9, %r11
	shlq	$12, %r11
	movq	%rax, (%r8, %r11)
	decq	%rcx
	jnz	1b
	movq	%rax, 24(%rdi)
report:
	outl	%eax, %dx
2:	hlt
	jmp	2b
