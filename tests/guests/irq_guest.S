/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Interrupt guest (64-bit, position independent): the state a kernel keeps
 * in the LAPIC, PIC, PIT, kvmclock and vector registers, checked by the
 * guest itself on every pass of its main loop.
 *
 * In:  %rdi = this vCPU's page (parameter block, then the counters below);
 *             it becomes the GS base, so the handlers find it
 *      %rsp = this vCPU's stack (one page)
 * Parameter block (written by the host before the first entry):
 *   +0  vCPU index (= x2APIC id)      +8  timer mode: 0 periodic, 1 TSC deadline
 *   +16 periodic: initial count (APIC bus cycles, divide by 1);
 *       TSC deadline: TSC cycles to the next deadline
 *   +24 pvclock area (32 bytes)       +32 vector pattern (16 x 32 bytes)
 *   +40 IDT page                      +48 PIT divisor (0: no PIT, no PIC)
 *   +56 report port                   +64 1: use AVX when CPUID offers it
 *   +72 the other vCPU's page
 * Counters (written by the guest, read by the host):
 *   +256 main-loop passes   +264 LAPIC timer interrupts   +272 PIT interrupts
 *   +280 IPIs received      +288 IPIs sent                +296 last kvmclock ns
 *   +304 failure code       +312 1: AVX (YMM) checked, 0: SSE (XMM) only (not
 *                            asked for, or no AVX in CPUID), 2: SSE only (CPUID
 *                            has AVX, but it raised #UD)
 *   +320 failure detail (RIP or the offending value)
 *   +328 kvmclock reads     +336 IPIs received twice (dropped, not counted above)
 *   +344 kvmclock reads below the last one without PVCLOCK_TSC_STABLE_BIT
 *   +352 the largest such step back (ns)
 *
 * Each vCPU turns on its x2APIC, loads an IDT (every vector it does not
 * expect is a failure), starts its LAPIC timer (periodic, or TSC deadline
 * re-armed by the handler), registers kvmclock (MSR_KVM_SYSTEM_TIME_NEW) and
 * loads xmm0..14 (ymm0..14 with AVX) from the pattern. vCPU 0 with a PIT
 * divisor also programs the PIC (IRQ 0 -> vector 0x30, LINT0 ExtINT) and
 * PIT channel 0 (rate generator). vCPU 0 sends vector 0x40 to vCPU 1
 * whenever its previous one was answered (as many answers as pings); vCPU
 * 1's handler answers with vector 0x41 to vCPU 0 (ping-pong: a lost IPI
 * stops it for good; one delivered twice is counted, not answered). The
 * IPI and received counts are sequence numbers: a handler takes the
 * sender's count as the number of the IPI it got.
 *
 * Main loop: 64 kvmclock reads, each at least the previous one (per vCPU;
 * without PVCLOCK_TSC_STABLE_BIT KVM's per-vCPU clocks may step back a
 * little, which Linux hides by keeping the last value: so does this guest,
 * counting the steps and the largest one);
 * the vector registers compared with the pattern; the ping; a report of the
 * timer count to the report port when it changed; then sti; hlt until the
 * next interrupt. The timer handler spins a little before its EOI, so a
 * pause finds interrupts in service too.
 *
 * A failure is reported, never a triple fault: the code goes to +304, the
 * value 0xfa110000 | code is written to the report port, and the vCPU halts
 * with interrupts off. Codes: 1 the clock went backwards, 2 a vector
 * register changed (+320: its number, + 16 for an upper half), 3 an unexpected vector or exception (+320 its RIP),
 * 4 the pvclock page never became stable.
 */
	.code64
	.text
	.globl _start
_start:
	jmp	entry
	.balign	8
	.ascii	"SQGUEST1"
	.quad	0
	.quad	0

	.equ	P_INDEX, 0
	.equ	P_MODE, 8
	.equ	P_TIMER, 16
	.equ	P_PVCLOCK, 24
	.equ	P_PATTERN, 32
	.equ	P_IDT, 40
	.equ	P_PIT, 48
	.equ	P_PORT, 56
	.equ	P_AVX, 64
	.equ	P_PEER, 72
	.equ	C_LOOPS, 256
	.equ	C_TICKS, 264
	.equ	C_PIT, 272
	.equ	C_IPI_RECV, 280
	.equ	C_IPI_SENT, 288
	.equ	C_CLOCK, 296
	.equ	C_FAIL, 304
	.equ	C_AVX, 312
	.equ	C_DETAIL, 320
	.equ	C_READS, 328
	.equ	C_DOUBLED, 336
	.equ	C_BACKSTEPS, 344
	.equ	C_MAX_BACKSTEP, 352

	.equ	MSR_APIC_BASE, 0x1b
	.equ	MSR_TSC_DEADLINE, 0x6e0
	.equ	MSR_GS_BASE, 0xc0000101
	.equ	MSR_KVM_SYSTEM_TIME_NEW, 0x4b564d01
	.equ	X2APIC_TPR, 0x808
	.equ	X2APIC_EOI, 0x80b
	.equ	X2APIC_SVR, 0x80f
	.equ	X2APIC_ICR, 0x830
	.equ	X2APIC_LVTT, 0x832
	.equ	X2APIC_LVT0, 0x835
	.equ	X2APIC_TMICT, 0x838
	.equ	X2APIC_TDCR, 0x83e
	.equ	VEC_TIMER, 0x20
	.equ	VEC_PIT, 0x30
	.equ	VEC_PIC_SPURIOUS, 0x37
	.equ	VEC_PING, 0x40
	.equ	VEC_PONG, 0x41
	.equ	VEC_SPURIOUS, 0xff

entry:
	/* GS base = this vCPU's page */
	movq	%rdi, %rax
	movq	%rdi, %rdx
	shrq	$32, %rdx
	movl	$MSR_GS_BASE, %ecx
	wrmsr
	call	setup_idt
	call	setup_apic
	call	setup_pvclock
	call	setup_vectors
	cmpq	$0, %gs:P_INDEX
	jne	1f
	cmpq	$0, %gs:P_PIT
	je	1f
	call	setup_pic_pit
1:	call	start_timer
	xorq	%r12, %r12		/* the last timer count reported */
	sti

main_loop:
	movl	$64, %r13d
1:	call	check_clock
	decl	%r13d
	jnz	1b
	call	check_vectors
	incq	%gs:C_LOOPS
	cmpq	$0, %gs:P_INDEX
	jne	2f
	movq	%gs:P_PEER, %rax
	cmpq	$0, C_LOOPS(%rax)
	je	2f			/* vCPU 1 has not set up its LAPIC and IDT yet */
	movq	%gs:C_IPI_SENT, %rax
	cmpq	%gs:C_IPI_RECV, %rax
	jne	2f			/* the last ping is not answered yet */
	movl	$1, %edx		/* vCPU 1's x2APIC id */
	movl	$VEC_PING, %eax
	cli
	incq	%gs:C_IPI_SENT
	movl	$X2APIC_ICR, %ecx
	wrmsr
	sti
2:	movq	%gs:C_TICKS, %rax
	cmpq	%rax, %r12
	je	3f
	movq	%rax, %r12
	movq	%gs:P_PORT, %rdx
	outl	%eax, %dx
3:	sti
	hlt
	jmp	main_loop

/* ---- failures ------------------------------------------------------------------- */

/* %eax = code, %rbx = detail */
fail:
	cli
	movq	%rax, %gs:C_FAIL
	movq	%rbx, %gs:C_DETAIL
	orl	$0xfa110000, %eax
	movq	%gs:P_PORT, %rdx
	outl	%eax, %dx
1:	hlt
	jmp	1b

/* An unexpected vector: detail = vector << 56 | the word on top of the
 * frame (RIP, or the exception's error code). Exceptions 0..31 each have a
 * 16-byte stub pushing its number; any other vector reads as 0xff. */
unexpected:
	pushq	$0xff
unexpected_common:
	popq	%rbx
	shlq	$56, %rbx
	movq	(%rsp), %rax
	movl	%eax, %eax
	orq	%rax, %rbx
	movl	$3, %eax
	jmp	fail

	.balign	16
exception_stubs:
	.rept	32
	.balign	16
	pushq	$(. - exception_stubs) / 16
	jmp	unexpected_common
	.endr

/* ---- IDT ------------------------------------------------------------------------ */

/* Entry %ecx of the IDT at %rdi -> handler %rsi (interrupt gate, CS 0x08). */
set_gate:
	movq	%rcx, %r8
	shlq	$4, %r8
	addq	%rdi, %r8
	movq	%rsi, %rax
	andl	$0xffff, %eax
	orl	$(0x08 << 16), %eax
	movl	%eax, (%r8)
	movq	%rsi, %rax
	shrq	$16, %rax
	shll	$16, %eax
	orl	$0x8e00, %eax
	movl	%eax, 4(%r8)
	movq	%rsi, %rax
	shrq	$32, %rax
	movq	%rax, 8(%r8)
	ret

setup_idt:
	movq	%gs:P_IDT, %rdi
	leaq	unexpected(%rip), %rsi
	xorl	%ecx, %ecx
1:	call	set_gate
	incl	%ecx
	cmpl	$256, %ecx
	jne	1b
	xorl	%ecx, %ecx
	leaq	exception_stubs(%rip), %rsi
2:	call	set_gate
	addq	$16, %rsi
	incl	%ecx
	cmpl	$32, %ecx
	jne	2b
	movl	$VEC_TIMER, %ecx
	leaq	timer_handler(%rip), %rsi
	call	set_gate
	movl	$VEC_PIT, %ecx
	leaq	pit_handler(%rip), %rsi
	call	set_gate
	movl	$VEC_PIC_SPURIOUS, %ecx
	leaq	iret_only(%rip), %rsi
	call	set_gate
	movl	$VEC_PING, %ecx
	leaq	ping_handler(%rip), %rsi
	call	set_gate
	movl	$VEC_PONG, %ecx
	leaq	pong_handler(%rip), %rsi
	call	set_gate
	movl	$VEC_SPURIOUS, %ecx
	leaq	iret_only(%rip), %rsi
	call	set_gate
	subq	$16, %rsp
	movw	$(256 * 16 - 1), (%rsp)
	movq	%rdi, 2(%rsp)
	lidt	(%rsp)
	addq	$16, %rsp
	ret

/* ---- LAPIC (x2APIC), PIC, PIT ---------------------------------------------------- */

/* wrmsr %ecx <- %rax (high half 0) */
wrmsr0:
	xorl	%edx, %edx
	wrmsr
	ret

setup_apic:
	movl	$MSR_APIC_BASE, %ecx
	rdmsr
	orl	$0xc00, %eax		/* enabled, x2APIC */
	wrmsr
	movl	$X2APIC_SVR, %ecx
	movl	$(0x100 | VEC_SPURIOUS), %eax
	call	wrmsr0
	movl	$X2APIC_TPR, %ecx
	xorl	%eax, %eax
	call	wrmsr0
	movl	$X2APIC_LVT0, %ecx
	movl	$0x10000, %eax		/* masked */
	cmpq	$0, %gs:P_INDEX
	jne	1f
	cmpq	$0, %gs:P_PIT
	je	1f
	movl	$0x700, %eax		/* ExtINT: the PIC's interrupts */
1:	call	wrmsr0
	movl	$X2APIC_TDCR, %ecx
	movl	$0xb, %eax		/* divide by 1 */
	jmp	wrmsr0

.macro outb_to port, value
	movb	$\value, %al
	outb	%al, $\port
.endm

setup_pic_pit:
	outb_to	0x20, 0x11
	outb_to	0x21, VEC_PIT
	outb_to	0x21, 0x04
	outb_to	0x21, 0x01
	outb_to	0xa0, 0x11
	outb_to	0xa1, 0x38
	outb_to	0xa1, 0x02
	outb_to	0xa1, 0x01
	outb_to	0x21, 0xfe		/* only IRQ 0 */
	outb_to	0xa1, 0xff
	outb_to	0x43, 0x34		/* channel 0, lo/hi, rate generator */
	movq	%gs:P_PIT, %rax
	outb	%al, $0x40
	movb	%ah, %al
	outb	%al, $0x40
	ret

start_timer:
	cmpq	$0, %gs:P_MODE
	jne	1f
	movl	$X2APIC_LVTT, %ecx
	movl	$(VEC_TIMER | 1 << 17), %eax	/* periodic */
	call	wrmsr0
	movl	$X2APIC_TMICT, %ecx
	movq	%gs:P_TIMER, %rax
	jmp	wrmsr0
1:	movl	$X2APIC_LVTT, %ecx
	movl	$(VEC_TIMER | 2 << 17), %eax	/* TSC deadline */
	call	wrmsr0
	/* fall through */
arm_deadline:
	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	addq	%gs:P_TIMER, %rax
	movq	%rax, %rdx
	shrq	$32, %rdx
	movl	$MSR_TSC_DEADLINE, %ecx
	wrmsr
	ret

.macro save_regs
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%r8
.endm
.macro restore_regs
	popq	%r8
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rax
.endm

eoi:
	movl	$X2APIC_EOI, %ecx
	xorl	%eax, %eax
	jmp	wrmsr0

timer_handler:
	save_regs
	incq	%gs:C_TICKS
	cmpq	$0, %gs:P_MODE
	je	1f
	call	arm_deadline
1:	movl	$2000, %ecx		/* in service for a while */
2:	pause
	decl	%ecx
	jnz	2b
	call	eoi
	restore_regs
	iretq

pit_handler:
	save_regs
	incq	%gs:C_PIT
	movb	$0x20, %al		/* non-specific EOI to the PIC */
	outb	%al, $0x20
	restore_regs
	iretq

/* Pings and pongs carry sequence numbers in the senders' counters: an IPI
 * whose number is not newer than the last one taken was delivered twice,
 * and is counted in C_DOUBLED and otherwise ignored. */
ping_handler:				/* on vCPU 1: answer vCPU 0 */
	save_regs
	movq	%gs:P_PEER, %rax
	movq	C_IPI_SENT(%rax), %rax	/* vCPU 0's latest ping */
	cmpq	%gs:C_IPI_RECV, %rax
	ja	1f
	incq	%gs:C_DOUBLED
	jmp	2f
1:	movq	%rax, %gs:C_IPI_RECV
	movq	%rax, %gs:C_IPI_SENT
	xorl	%edx, %edx
	movl	$VEC_PONG, %eax
	movl	$X2APIC_ICR, %ecx
	wrmsr
2:	call	eoi
	restore_regs
	iretq

pong_handler:				/* on vCPU 0 */
	save_regs
	movq	%gs:P_PEER, %rax
	movq	C_IPI_SENT(%rax), %rax	/* vCPU 1's latest pong */
	cmpq	%gs:C_IPI_RECV, %rax
	ja	1f
	incq	%gs:C_DOUBLED
	jmp	2f
1:	movq	%rax, %gs:C_IPI_RECV
2:	call	eoi
	restore_regs
	iretq

iret_only:
	iretq

/* ---- kvmclock ------------------------------------------------------------------- */

setup_pvclock:
	movq	%gs:P_PVCLOCK, %rax
	orq	$1, %rax		/* enable */
	movq	%rax, %rdx
	shrq	$32, %rdx
	movl	$MSR_KVM_SYSTEM_TIME_NEW, %ecx
	wrmsr
	ret

/* %rax = kvmclock ns (pvclock protocol: even version, unchanged across the read) */
read_clock:
	movq	%gs:P_PVCLOCK, %rsi
	movl	$1000000, %r9d
1:	decl	%r9d
	jz	4f
	movl	(%rsi), %r8d		/* version */
	testl	$1, %r8d
	jnz	1b
	lfence
	rdtsc
	shlq	$32, %rdx
	orq	%rdx, %rax
	subq	8(%rsi), %rax		/* - tsc_timestamp */
	movsbl	28(%rsi), %ecx		/* tsc_shift */
	testl	%ecx, %ecx
	js	2f
	shlq	%cl, %rax
	jmp	3f
2:	negl	%ecx
	shrq	%cl, %rax
3:	movl	24(%rsi), %ecx		/* tsc_to_system_mul */
	mulq	%rcx
	shrdq	$32, %rdx, %rax
	addq	16(%rsi), %rax		/* + system_time */
	lfence
	cmpl	(%rsi), %r8d
	jne	1b
	ret
4:	movl	$4, %eax
	movl	(%rsi), %ebx
	jmp	fail

check_clock:
	call	read_clock
	incq	%gs:C_READS
	cmpq	%gs:C_CLOCK, %rax
	jb	1f
	movq	%rax, %gs:C_CLOCK
	ret
1:	movq	%rax, %rbx
	testb	$1, 29(%rsi)		/* flags: PVCLOCK_TSC_STABLE_BIT */
	jnz	2f
	incq	%gs:C_BACKSTEPS
	movq	%gs:C_CLOCK, %rax
	subq	%rbx, %rax
	cmpq	%gs:C_MAX_BACKSTEP, %rax
	jbe	3f
	movq	%rax, %gs:C_MAX_BACKSTEP
3:	ret
2:	movl	$1, %eax
	jmp	fail

/* ---- vector registers ----------------------------------------------------------- */

setup_vectors:
	cmpq	$0, %gs:P_AVX
	je	1f
	movl	$1, %eax
	cpuid
	movl	%ecx, %eax
	andl	$((1 << 26) | (1 << 28)), %eax	/* XSAVE, AVX */
	cmpl	$((1 << 26) | (1 << 28)), %eax
	jne	1f
	movq	%cr4, %rax
	orq	$(1 << 18), %rax	/* OSXSAVE */
	movq	%rax, %cr4
	xorl	%ecx, %ecx
	xorl	%edx, %edx
	movl	$7, %eax		/* x87, SSE, AVX */
	xsetbv
	movq	$1, %gs:C_AVX
	/* Probe: a #UD here sets C_AVX to 2. QEMU 7.2's TCG raises #UD for
	 * VEX code in a nested guest now and then, the same instruction
	 * passing a moment earlier: the host asks for no AVX there. */
	movq	%gs:P_IDT, %rdi
	movl	$6, %ecx
	leaq	avx_ud(%rip), %rsi
	call	set_gate
	vinsertf128 $1, %xmm0, %ymm0, %ymm0	/* 6 bytes: avx_ud skips them */
	movl	$6, %ecx
	leaq	exception_stubs + 6 * 16(%rip), %rsi
	call	set_gate
1:	movq	%gs:P_PATTERN, %rsi
	cmpq	$1, %gs:C_AVX
	jne	2f
	/* VEX only in register forms; legacy SSE writes keep the upper halves. */
	.irp	r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14
	movdqa	(\r * 32 + 16)(%rsi), %xmm15
	vinsertf128 $1, %xmm15, %ymm\r, %ymm\r
	movdqa	(\r * 32)(%rsi), %xmm\r
	.endr
	ret
2:	.irp	r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14
	movdqa	(\r * 32)(%rsi), %xmm\r
	.endr
	ret

check_vectors:
	movq	%gs:P_PATTERN, %rsi
	cmpq	$1, %gs:C_AVX
	jne	2f
	.irp	r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14
	vextractf128 $1, %ymm\r, %xmm15
	pcmpeqb	(\r * 32 + 16)(%rsi), %xmm15
	pmovmskb %xmm15, %eax
	movl	$(\r + 16), %ebx
	cmpl	$0xffff, %eax
	jne	1f
	.endr
2:	.irp	r, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14
	movdqa	(\r * 32)(%rsi), %xmm15
	pcmpeqb	%xmm\r, %xmm15
	pmovmskb %xmm15, %eax
	movl	$\r, %ebx
	cmpl	$0xffff, %eax
	jne	1f
	.endr
	ret
1:	movl	$2, %eax
	jmp	fail

avx_ud:
	addq	$6, (%rsp)
	movq	$2, %gs:C_AVX
	iretq
