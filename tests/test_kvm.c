/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The KVM runner on real /dev/kvm: tiny guests (the .S files in tests/guests)
 * entered in long mode, port-I/O devices, pause/resume and its timeout, x86
 * state capture -> file format -> restore into a fresh VM, and the dirty-log
 * tracker. Waits have generous time limits that only stop a broken run;
 * nothing here asserts on time.
 *
 * Skipped (exit 77, one line on stderr) only when /dev/kvm does not exist.
 */
#include "testutil.h"
#include "kvm_blocker.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <squib/envelope.h>
#include <squib/kvm.h>
#include <squib/state.h>
#include <squib/track.h>

#include "../src/linux/uffd.h"

#define RAM_SIZE     (4u << 20)
#define TABLES	     0x1000ull	 /* GDT, PML4, PDPT, PD: 0x1000..0x4fff */
#define CODE	     0x10000ull	 /* the guest program */
#define COUNTERS     0x20000ull	 /* vCPU i's counter at COUNTERS + i * PAGE */
#define PARAMS	     0x30000ull	 /* the page writer's parameter block */
#define STACKS	     0x40000ull	 /* vCPU i's stack top at STACKS + (i + 1) * PAGE (unused) */
#define TARGET	     0x100000ull /* the page writer's 256 target pages */
#define TARGET_PAGES 256u
#define PAGE	     4096ull
#define PORT_CONSOLE 0xe9
#define PORT_COUNTER 0x3f0
#define WAIT_MS	     10000u /* safety net for a broken run, not a measurement */

#define GUEST_MAGIC "SQGUEST1"

/* ---- guests ------------------------------------------------------------------ */

struct guest {
	uint8_t *code;
	size_t len;
	uint64_t report_offset; /* of the OUT instruction */
	uint64_t report_mask;
};

static void load_guest(const char *name, struct guest *g)
{
	const char *dir = getenv("SQUIB_GUESTS");
	char path[4096];
	int r;

	snprintf(path, sizeof(path), "%s/%s.bin", dir ? dir : "tests/guests", name);
	r = squib_test_read_file(path, &g->code, &g->len);
	if (r)
		fail_msg("%s: %s (build the squib_guests target)", path, strerror(-r));
	assert_true(g->len > 32);
	assert_memory_equal(g->code + 8, GUEST_MAGIC, 8);
	memcpy(&g->report_offset, g->code + 16, 8);
	memcpy(&g->report_mask, g->code + 24, 8);
	assert_true(g->report_offset < g->len);
}

/* ---- a VM with RAM, the two built-in devices and a guest ----------------------- */

struct tvm {
	struct squib_kvm_vm *vm;
	struct squib_kvm_counter *counter;
	struct squib_kvm_console *console;
	uint32_t vcpus;
};

static void tvm_new_ram(struct tvm *t, uint32_t vcpus, bool irqchip, uint32_t pause_timeout_ms,
			enum squib_kvm_dirty_log_mode mode, void *ram)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_error_detail d;
	int rc;

	memset(t, 0, sizeof(*t));
	cfg.vcpu_count = vcpus;
	cfg.irqchip = irqchip;
	cfg.pause_timeout_ms = pause_timeout_ms;
	cfg.dirty_log = mode;
	rc = squib_kvm_vm_new(&cfg, &t->vm, &d);
	if (rc)
		fail_msg("squib_kvm_vm_new: %s", d.msg);
	t->vcpus = vcpus;
	assert_int_equal(squib_kvm_vm_add_ram(t->vm, 0, RAM_SIZE, ram, NULL, &d), 0);
	assert_int_equal(squib_kvm_vm_add_console(t->vm, PORT_CONSOLE, &t->console, &d), 0);
}

static void tvm_new_mode(struct tvm *t, uint32_t vcpus, bool irqchip, uint32_t pause_timeout_ms,
			 enum squib_kvm_dirty_log_mode mode)
{
	tvm_new_ram(t, vcpus, irqchip, pause_timeout_ms, mode, NULL);
}

static void tvm_new(struct tvm *t, uint32_t vcpus, bool irqchip, uint32_t pause_timeout_ms)
{
	tvm_new_mode(t, vcpus, irqchip, pause_timeout_ms, SQUIB_KVM_DIRTY_LOG_AUTO);
}

static void tvm_add_counter(struct tvm *t)
{
	struct squib_error_detail d;

	assert_int_equal(squib_kvm_vm_add_counter(t->vm, PORT_COUNTER, &t->counter, &d), 0);
}

static void tvm_load(struct tvm *t, const struct guest *g)
{
	struct squib_error_detail d;

	assert_int_equal(squib_kvm_vm_write(t->vm, CODE, g->code, g->len, &d), 0);
}

/* Every vCPU enters the program at CODE with its own counter page. */
static void tvm_boot(struct tvm *t, uint64_t rdi, uint64_t rsi0, uint64_t rsi_stride)
{
	struct squib_kvm_boot b;
	struct squib_error_detail d;
	int rc;

	memset(&b, 0, sizeof(b));
	b.tables_gpa = TABLES;
	b.map_size = RAM_SIZE;
	for (uint32_t i = 0; i < t->vcpus; i++)
		b.entry[i] = (struct squib_kvm_entry){CODE, STACKS + (i + 1) * PAGE, rdi,
						      rsi0 + i * rsi_stride, PORT_COUNTER};
	rc = squib_kvm_vm_boot_long_mode(t->vm, &b, &d);
	if (rc)
		fail_msg("boot: %s", d.msg);
}

static void counter_vm(struct tvm *t, const struct guest *g, uint32_t vcpus, bool irqchip,
		       uint32_t pause_timeout_ms)
{
	tvm_new(t, vcpus, irqchip, pause_timeout_ms);
	tvm_add_counter(t);
	tvm_load(t, g);
	tvm_boot(t, 0, COUNTERS, PAGE);
}

static void tvm_start(struct tvm *t)
{
	struct squib_error_detail d;

	assert_int_equal(squib_kvm_vm_start(t->vm, &d), 0);
}

static void tvm_pause(struct tvm *t)
{
	struct squib_error_detail d;
	int rc = squib_kvm_vm_pause(t->vm, &d);

	if (rc)
		fail_msg("pause: %s (%s)", squib_error_name(rc), d.msg);
}

static void tvm_resume(struct tvm *t)
{
	assert_int_equal(squib_kvm_vm_resume(t->vm, NULL), 0);
}

static uint64_t guest_u64(struct tvm *t, uint64_t gpa)
{
	volatile uint64_t *p = squib_kvm_vm_gpa_to_hva(t->vm, gpa, 8);

	assert_non_null((void *)p);
	return *p;
}

/* Wait for the vCPU's report number n (counted since its counter device began). */
static uint64_t wait_report(struct tvm *t, uint32_t vcpu, uint64_t n)
{
	struct squib_error_detail d;
	uint64_t last = 0;
	int rc = squib_kvm_counter_wait(t->counter, vcpu, n, WAIT_MS, &last, &d);

	if (rc) {
		struct squib_kvm_vcpu_status st;
		squib_kvm_vm_vcpu_status(t->vm, vcpu, &st);
		fail_msg("vCPU %u: no report %llu (state %d, exit %u, error %d)", vcpu,
			 (unsigned long long)n, st.state, st.exit_reason, st.error);
	}
	return last;
}

static uint64_t reports_of(struct tvm *t, uint32_t vcpu)
{
	uint64_t n = 0;

	assert_true(squib_kvm_counter_get(t->counter, vcpu, NULL, &n));
	return n;
}

/* ---- running and pausing -------------------------------------------------------- */

static void test_should_run_counter_guest_and_see_counters_advance(void **state)
{
	struct guest g;
	struct tvm t;

	(void)state;
	load_guest("counter", &g);
	counter_vm(&t, &g, 2, true, 0);
	tvm_start(&t);
	for (uint32_t i = 0; i < 2; i++) {
		uint64_t first = wait_report(&t, i, 1);
		uint64_t later = wait_report(&t, i, reports_of(&t, i) + 3);
		struct squib_kvm_vcpu_status st;

		assert_int_equal(first % (g.report_mask + 1), 0);
		assert_int_equal(later % (g.report_mask + 1), 0);
		assert_true(later > first);
		/* Each report is an I/O exit; the one being served may not be counted yet. */
		assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, i, &st), 0);
		assert_true(st.io_exits + 1 >= 4);
		assert_int_not_equal(st.state, SQUIB_KVM_VCPU_FAILED);
	}
	squib_kvm_vm_free(t.vm);
	free(g.code);
}

static void test_should_pause_and_resume_every_vcpu(void **state)
{
	uint64_t mem[2], reports[2];
	struct guest g;
	struct tvm t;

	(void)state;
	load_guest("counter", &g);
	counter_vm(&t, &g, 2, true, 0);
	tvm_start(&t);
	wait_report(&t, 0, 1);
	wait_report(&t, 1, 1);
	tvm_pause(&t);
	assert_true(squib_kvm_vm_is_paused(t.vm));
	tvm_pause(&t); /* a second pause is a no-op */
	for (uint32_t i = 0; i < 2; i++) {
		struct squib_kvm_vcpu_status st;

		assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, i, &st), 0);
		assert_int_equal(st.state, SQUIB_KVM_VCPU_PAUSED);
		mem[i] = guest_u64(&t, COUNTERS + i * PAGE);
		reports[i] = reports_of(&t, i);
	}
	usleep(20000); /* paused vCPUs make no progress, however long we look */
	for (uint32_t i = 0; i < 2; i++) {
		assert_int_equal(guest_u64(&t, COUNTERS + i * PAGE), mem[i]);
		assert_int_equal(reports_of(&t, i), reports[i]);
	}
	tvm_resume(&t);
	assert_false(squib_kvm_vm_is_paused(t.vm));
	for (uint32_t i = 0; i < 2; i++) {
		assert_true(wait_report(&t, i, reports[i] + 1) > mem[i]);
		assert_true(guest_u64(&t, COUNTERS + i * PAGE) > mem[i]);
	}
	squib_kvm_vm_free(t.vm);
	free(g.code);
}

/* Pausing right after a port-I/O exit completes the OUT first: RIP is never
 * left on an OUT that already ran (else a restore would execute it twice).
 * RIP may sit on an OUT that has not run yet (the vCPU was interrupted just
 * before it; seen under host load): then the device has not seen its value. */
static void test_should_complete_port_io_before_acknowledging_a_pause(void **state)
{
	struct squib_microvm_state s;
	struct squib_error_detail d;
	struct guest g;
	struct tvm t;

	(void)state;
	load_guest("counter", &g);
	counter_vm(&t, &g, 2, true, 0);
	tvm_start(&t);
	for (int round = 0; round < 20; round++) {
		wait_report(&t, 0, reports_of(&t, 0) + 1);
		tvm_pause(&t);
		assert_int_equal(squib_kvm_vm_capture(t.vm, &s, &d), 0);
		for (uint32_t i = 0; i < 2; i++) {
			uint64_t rip = s.x86_vcpus[i].regs.rip, last = 0;

			assert_true(rip >= CODE && rip < CODE + g.len);
			if (rip != CODE + g.report_offset)
				continue;
			assert_true(squib_kvm_counter_get(t.counter, i, &last, NULL));
			assert_int_not_equal(last,
					     guest_u64(&t, COUNTERS + i * PAGE) & 0xffffffffu);
		}
		squib_state_free(&s);
		tvm_resume(&t);
	}
	squib_kvm_vm_free(t.vm);
	free(g.code);
}

/* ---- the quiesce timeout -------------------------------------------------------- */

static void test_should_time_out_when_a_vcpu_does_not_acknowledge(void **state)
{
	struct blocker *b = *state;
	struct squib_kvm_vcpu_status st[2];
	struct squib_error_detail d;
	char msg[256];
	struct guest g;
	struct tvm t;

	load_guest("counter", &g);
	tvm_new(&t, 2, true, 50);
	b->vm = t.vm; /* the teardown frees it, after releasing the blocker */
	assert_int_equal(
	    squib_kvm_vm_add_device(t.vm, "blocker", PORT_COUNTER, 1, &blocker_ops, b, &d), 0);
	tvm_load(&t, &g);
	tvm_boot(&t, 0, COUNTERS, PAGE);
	tvm_start(&t);
	blocker_wait_entered(b);
	/* A vCPU sits in the device: it cannot acknowledge. */
	assert_int_equal(squib_kvm_vm_pause(t.vm, &d), SQUIB_E_QUIESCE_TIMEOUT);
	squib_error_message(d.code, &d, msg, sizeof(msg));
	assert_string_equal(msg, "a vCPU did not ack quiesce within the timeout");
	assert_non_null(strstr(d.msg, "did not ack within 50 ms"));
	assert_false(squib_kvm_vm_is_paused(t.vm));
	assert_int_equal(squib_kvm_vm_capture(t.vm, &(struct squib_microvm_state){0}, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, 0, &st[0]), 0);
	assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, 1, &st[1]), 0);
	assert_true(st[0].state == SQUIB_KVM_VCPU_RUNNING || st[1].state == SQUIB_KVM_VCPU_RUNNING);
	/* Released, the vCPU completes its OUT and acknowledges. */
	blocker_release(b);
	tvm_pause(&t);
	assert_true(squib_kvm_vm_is_paused(t.vm));
	tvm_resume(&t);
	free(g.code);
}

/* ---- capture, the file format, restore ------------------------------------------- */

static void check_captured(const struct squib_microvm_state *s, const struct guest *g,
			   uint32_t vcpus, bool irqchip)
{
	struct squib_error_detail d;

	assert_int_equal(s->arch, SQUIB_ARCH_X86_64);
	assert_int_equal(s->vcpu_count, vcpus);
	assert_int_equal(s->vm_info.mem_size_mib, RAM_SIZE >> 20);
	assert_non_null(s->x86_vm);
	assert_int_equal(s->x86_vm->has_irqchip, irqchip);
	assert_int_equal(s->x86_vm->has_pit, irqchip);
	for (uint32_t i = 0; i < vcpus; i++) {
		const struct squib_x86_vcpu *v = &s->x86_vcpus[i];

		assert_true(v->regs.rip >= CODE && v->regs.rip < CODE + g->len);
		assert_int_equal(v->regs.rsi, COUNTERS + i * PAGE);
		assert_int_equal(v->sregs.cr3, TABLES + PAGE);
		assert_true(v->sregs.efer & (1u << 10)); /* LMA */
		assert_int_equal(v->sregs.cs.l, 1);
		assert_int_equal(v->has_lapic, irqchip);
		assert_true(v->xsave_size >= SQUIB_X86_XSAVE_MIN);
		assert_true(v->cpuid_count > 0);
		assert_true(v->msr_count > 0);
		assert_int_equal(v->mp_state, 0); /* RUNNABLE */
	}
	assert_int_equal(s->device_count, 2); /* console and counter */
	assert_int_equal(squib_state_verify_compatible(s, &d), 0);
}

/* encode -> decode -> equal, and re-encoding is byte-identical. */
static uint8_t *encode_round_trip(const struct squib_microvm_state *s, size_t *len)
{
	struct squib_microvm_state back;
	struct squib_error_detail d;
	uint8_t *buf, *again;
	size_t len2;

	assert_int_equal(squib_state_encode(s, &buf, len, &d), 0);
	assert_int_equal(squib_state_decode(buf, *len, SQUIB_ARCH_X86_64, &back, NULL, &d), 0);
	assert_true(squib_state_equal(s, &back));
	assert_int_equal(squib_state_encode(&back, &again, &len2, &d), 0);
	assert_int_equal(*len, len2);
	assert_memory_equal(buf, again, len2);
	squib_state_free(&back);
	free(again);
	return buf;
}

static void test_should_capture_x86_state_and_round_trip_it_through_the_format(void **state)
{
	struct squib_microvm_state s;
	struct squib_error_detail d;
	struct guest g;
	struct tvm t;
	uint8_t *buf;
	size_t len;

	(void)state;
	load_guest("counter", &g);
	counter_vm(&t, &g, 2, true, 0);
	tvm_start(&t);
	wait_report(&t, 0, 2);
	wait_report(&t, 1, 2);
	tvm_pause(&t);
	assert_int_equal(squib_kvm_vm_capture(t.vm, &s, &d), 0);
	check_captured(&s, &g, 2, true);
	buf = encode_round_trip(&s, &len);
	print_message("  2-vCPU x86 state file: %zu bytes, %u MSRs, %u CPUID entries, "
		      "XSAVE %u bytes\n",
		      len, s.x86_vcpus[0].msr_count, s.x86_vcpus[0].cpuid_count,
		      s.x86_vcpus[0].xsave_size);
	squib_state_free(&s);
	free(buf);
	tvm_resume(&t);
	squib_kvm_vm_free(t.vm);
	free(g.code);
}

/* The saved RAM as a restore backend would give it: a file (here a memfd)
 * mapped MAP_PRIVATE, so the guest's writes never reach the file. */
static void *map_ram_file(const uint8_t *ram, int *fd)
{
	void *p;

	*fd = memfd_create("squib-test-ram", MFD_CLOEXEC);
	assert_true(*fd >= 0);
	assert_int_equal(write(*fd, ram, RAM_SIZE), RAM_SIZE);
	p = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, *fd, 0);
	assert_true(p != MAP_FAILED);
	return p;
}

/*
 * Run, pause, capture, copy RAM, encode; destroy the VM; decode into a new
 * VM object, give it the RAM (copied into its own memory, or as a mapped
 * file the caller provides), restore, run: each vCPU's counter carries on
 * from its saved value, neither from zero nor backwards.
 */
static void restore_continues_counting(bool irqchip, bool mapped)
{
	void *mapping = NULL;
	int fd = -1;
	uint64_t saved[2], saved_reports[2];
	struct squib_microvm_state s;
	struct squib_error_detail d;
	struct guest g;
	struct tvm t;
	uint8_t *ram, *file;
	size_t len;
	int rc;

	load_guest("counter", &g);
	counter_vm(&t, &g, 2, irqchip, 0);
	tvm_start(&t);
	wait_report(&t, 0, 3);
	wait_report(&t, 1, 3);
	tvm_pause(&t);
	assert_int_equal(squib_kvm_vm_capture(t.vm, &s, &d), 0);
	check_captured(&s, &g, 2, irqchip);
	ram = malloc(RAM_SIZE);
	assert_non_null(ram);
	memcpy(ram, squib_kvm_vm_gpa_to_hva(t.vm, 0, RAM_SIZE), RAM_SIZE);
	for (uint32_t i = 0; i < 2; i++) {
		saved[i] = guest_u64(&t, COUNTERS + i * PAGE);
		saved_reports[i] = reports_of(&t, i);
		assert_true(saved[i] > 0);
	}
	file = encode_round_trip(&s, &len);
	squib_state_free(&s);
	squib_kvm_vm_free(t.vm);

	assert_int_equal(squib_state_decode(file, len, SQUIB_ARCH_X86_64, &s, NULL, &d), 0);
	if (mapped)
		mapping = map_ram_file(ram, &fd);
	tvm_new_ram(&t, 2, irqchip, 0, SQUIB_KVM_DIRTY_LOG_AUTO, mapping);
	tvm_add_counter(&t);
	if (mapped)
		assert_ptr_equal(squib_kvm_vm_gpa_to_hva(t.vm, 0, 1), mapping);
	else
		assert_int_equal(squib_kvm_vm_write(t.vm, 0, ram, RAM_SIZE, &d), 0);
	rc = squib_kvm_vm_restore(t.vm, &s, &d);
	if (rc)
		fail_msg("restore: %s (%s)", squib_error_name(rc), d.msg);
	assert_int_equal(reports_of(&t, 0), saved_reports[0]); /* the device blob came back */
	tvm_start(&t);
	for (uint32_t i = 0; i < 2; i++) {
		uint64_t next = wait_report(&t, i, saved_reports[i] + 1);

		assert_true(next >= saved[i]); /* not zero, not backwards */
		assert_int_equal(next % (g.report_mask + 1), 0);
		assert_true(guest_u64(&t, COUNTERS + i * PAGE) >= next);
	}
	squib_state_free(&s);
	squib_kvm_vm_free(t.vm);
	if (mapped) {
		uint64_t in_file = 0;

		/* MAP_PRIVATE: the guest's writes stayed out of the file. */
		assert_int_equal(pread(fd, &in_file, 8, COUNTERS), 8);
		assert_int_equal(in_file, saved[0]);
		munmap(mapping, RAM_SIZE);
		close(fd);
	}
	free(file);
	free(ram);
	free(g.code);
}

static void test_should_restore_into_a_fresh_vm_and_continue_counting(void **state)
{
	(void)state;
	restore_continues_counting(true, false);
}

/* Also: the RAM is a caller's mapping of a file, as a restore backend provides. */
static void test_should_restore_without_an_irqchip_into_a_mapped_file(void **state)
{
	(void)state;
	restore_continues_counting(false, true);
}

static void capture_paused(struct tvm *t, const struct guest *g, struct squib_microvm_state *s)
{
	struct squib_error_detail d;

	counter_vm(t, g, 2, true, 0);
	tvm_start(t);
	wait_report(t, 0, 1);
	tvm_pause(t);
	assert_int_equal(squib_kvm_vm_capture(t->vm, s, &d), 0);
}

static void expect_restore(struct squib_microvm_state *s, uint32_t vcpus, bool irqchip, int code,
			   const char *fragment)
{
	struct squib_error_detail d;
	struct tvm t;

	tvm_new(&t, vcpus, irqchip, 0);
	tvm_add_counter(&t);
	assert_int_equal(squib_kvm_vm_restore(t.vm, s, &d), code);
	if (!strstr(d.msg, fragment))
		fail_msg("\"%s\" lacks \"%s\"", d.msg, fragment);
	squib_kvm_vm_free(t.vm);
}

static void test_should_refuse_a_state_that_does_not_fit_and_name_failing_ioctls(void **state)
{
	struct squib_microvm_state s;
	struct squib_x86_msr *m;
	struct squib_error_detail d;
	struct guest g;
	struct tvm t;

	(void)state;
	load_guest("counter", &g);
	capture_paused(&t, &g, &s);
	/* Restoring into a VM that already ran is misuse. */
	assert_int_equal(squib_kvm_vm_restore(t.vm, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_kvm_vm_free(t.vm);
	expect_restore(&s, 1, true, SQUIB_E_INCOMPATIBLE, "does not fit a 1-vCPU");
	expect_restore(&s, 2, false, SQUIB_E_INCOMPATIBLE, "irqchip");
	/* KVM refuses an MSR it does not know: SQUIB_E_CAPTURE naming the ioctl. */
	m = &s.x86_vcpus[1].msrs[s.x86_vcpus[1].msr_count - 1];
	m->index = 0x4b564dff; /* past every KVM paravirtual MSR */
	expect_restore(&s, 2, true, SQUIB_E_CAPTURE, "KVM_SET_MSRS refused MSR 0x4b564dff");
	/* CR0.PG without CR0.PE: KVM_SET_SREGS fails with EINVAL, errno text included. */
	s.x86_vcpus[0].sregs.cr0 = 1ull << 31;
	expect_restore(&s, 2, true, SQUIB_E_CAPTURE, "KVM_SET_SREGS: Invalid argument");
	squib_state_free(&s);
	free(g.code);
}

/* ---- the dirty log ---------------------------------------------------------------- */

static uint64_t xorshift64(uint64_t x)
{
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

/* The page writer's pages, as the guest computes them, plus its parameter page. */
static void expected_pages(uint64_t seed, uint32_t writes, struct squib_dirty_bitmap *bm,
			   uint64_t *last)
{
	uint64_t x = seed;

	for (uint32_t i = 0; i < writes; i++) {
		x = xorshift64(x);
		squib_dirty_bitmap_set(bm, TARGET + ((x & (TARGET_PAGES - 1)) << 12));
	}
	squib_dirty_bitmap_set(bm, PARAMS);
	*last = x;
}

static struct squib_dirty_bitmap *ram_bitmap(void)
{
	struct squib_dirty_bitmap *bm;

	assert_int_equal(squib_dirty_bitmap_new(0, RAM_SIZE, PAGE, &bm, NULL), 0);
	return bm;
}

/*
 * What KVM's log holds besides the guest's stores, for these guests
 * (docs/DESIGN.md, "What the dirty log reports"). Under two-dimensional
 * paging (squib_test_kvm_tdp), on the first harvest, the pages the guest
 * reached for the first time since logging started: its code page and the
 * three table pages its walks read (PML4, PDPT, PD; the GDT page is never
 * read in 64-bit mode), because KVM maps a page writable at its first
 * fault, an instruction fetch or a table walk included, and logs it; on
 * any later harvest the table pages may be back: the CPU accesses the
 * guest's page tables with write operations at the nested level, and a
 * walk follows a TLB miss, which a test cannot time (walked_tables). Under
 * shadow paging the tables never show (the CPU walks KVM's shadow tables),
 * and the code page may: kvm_amd with npt=0 maps it writable at its first
 * fault since the guest's own entry is dirty already (our preset bits),
 * kvm_pvm did not. must gets what has to be in the first harvest, may what
 * can be.
 */
static void add_first_touches(struct squib_dirty_bitmap *must, struct squib_dirty_bitmap *may)
{
	if (!squib_test_kvm_tdp()) {
		squib_dirty_bitmap_set(may, CODE);
		return;
	}
	squib_dirty_bitmap_set(must, CODE);
	for (uint64_t p = 1; p <= 3; p++)
		squib_dirty_bitmap_set(must, TABLES + p * PAGE);
}

static struct squib_dirty_bitmap *walked_tables(void)
{
	struct squib_dirty_bitmap *bm = ram_bitmap();

	if (squib_test_kvm_tdp())
		for (uint64_t p = 1; p <= 3; p++)
			squib_dirty_bitmap_set(bm, TABLES + p * PAGE);
	return bm;
}

/* got holds every page of want, and besides them only pages of maybe (NULL: none). */
static void assert_same_pages(struct squib_dirty_bitmap *got, struct squib_dirty_bitmap *want,
			      struct squib_dirty_bitmap *maybe)
{
	uint32_t wrong = 0;

	for (uint64_t p = 0; p < RAM_SIZE / PAGE; p++) {
		bool g = squib_dirty_bitmap_test_by_index(got, p);
		bool w = squib_dirty_bitmap_test_by_index(want, p);

		if (g == w || (g && maybe && squib_dirty_bitmap_test_by_index(maybe, p)))
			continue;
		print_error("page 0x%llx: reported %d, written %d\n",
			    (unsigned long long)(p * PAGE), g, w);
		wrong++;
	}
	if (wrong)
		fail_msg("%u pages differ", wrong);
}

static void run_page_writer(struct tvm *t, uint64_t seed, uint32_t writes)
{
	const uint64_t params[4] = {TARGET, TARGET_PAGES - 1, writes, 0};
	struct squib_error_detail d;
	struct guest g;

	load_guest("page_writer", &g);
	tvm_load(t, &g);
	assert_int_equal(squib_kvm_vm_write(t->vm, PARAMS, params, sizeof(params), &d), 0);
	tvm_boot(t, PARAMS, seed, 0);
	free(g.code);
}

static void exact_pages(enum squib_kvm_dirty_log_mode mode, uint64_t want_flags)
{
	const uint64_t seed = 0x9E3779B97F4A7C15ull;
	const uint32_t writes = 64;
	struct squib_dirty_bitmap *got = ram_bitmap(), *want = ram_bitmap(), *maybe = ram_bitmap();
	struct squib_tracker *tr;
	struct squib_error_detail d;
	uint64_t last;
	struct tvm t;

	tvm_new_mode(&t, 1, true, 0, mode);
	assert_int_equal(squib_kvm_vm_dirty_log_flags(t.vm), want_flags);
	tvm_add_counter(&t);
	run_page_writer(&t, seed, writes);
	expected_pages(seed, writes, want, &last);
	add_first_touches(want, maybe);
	assert_int_equal(squib_tracker_kvm_new(t.vm, &tr, &d), 0);
	assert_string_equal(squib_tracker_name(tr), "kvm-dirty-log");
	/* The VMM wrote code, tables and parameters before start: not reported. */
	assert_int_equal(squib_tracker_start(tr, &d), 0);
	tvm_start(&t);
	assert_int_equal(wait_report(&t, 0, 1), last & 0xffffffffu);
	assert_int_equal(guest_u64(&t, PARAMS + 24), last);
	tvm_pause(&t); /* halted already; the pause orders our reads after its writes */
	assert_int_equal(squib_tracker_harvest(tr, got, &d), 0);
	print_message("  page writer: %llu pages reported for %u writes\n",
		      (unsigned long long)squib_dirty_bitmap_count(got), writes);
	assert_same_pages(got, want, maybe);
	/* Harvested pages are re-armed: nothing new. */
	squib_dirty_bitmap_clear(got);
	assert_int_equal(squib_tracker_harvest(tr, got, &d), 0);
	assert_int_equal(squib_dirty_bitmap_count(got), 0);
	/* A failed save gives its pages back; the next harvest reports them again. */
	assert_int_equal(squib_tracker_give_back(tr, want, &d), 0);
	assert_int_equal(squib_tracker_harvest(tr, got, &d), 0);
	assert_same_pages(got, want, NULL);
	assert_int_equal(squib_tracker_stop(tr, &d), 0);
	squib_tracker_free(tr);
	squib_kvm_vm_free(t.vm);
	squib_dirty_bitmap_free(got);
	squib_dirty_bitmap_free(want);
	squib_dirty_bitmap_free(maybe);
}

/* This machine offers KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with INITIALLY_SET
 * (the capability answers 3); all three modes must report the same pages. */
#define MANUAL_PROTECT 1ull /* KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE */
#define INITIALLY_SET  2ull /* KVM_DIRTY_LOG_INITIALLY_SET */

static void test_should_report_exactly_the_pages_the_guest_wrote(void **state)
{
	(void)state;
	exact_pages(SQUIB_KVM_DIRTY_LOG_AUTO, MANUAL_PROTECT | INITIALLY_SET);
}

static void test_should_report_exactly_the_written_pages_without_initially_set(void **state)
{
	(void)state;
	exact_pages(SQUIB_KVM_DIRTY_LOG_MANUAL, MANUAL_PROTECT);
}

static void test_should_report_exactly_the_written_pages_with_the_classic_log(void **state)
{
	(void)state;
	exact_pages(SQUIB_KVM_DIRTY_LOG_CLASSIC, 0);
}

/* Writes the VMM makes through its own mapping are not guest stores: the KVM
 * log does not see them (a VMM-marks tracker must), and harvested pages stay
 * clean until the guest writes them again. */
static void test_should_not_report_vmm_writes_or_harvested_pages(void **state)
{
	struct squib_dirty_bitmap *got = ram_bitmap();
	struct squib_tracker *tr;
	struct squib_error_detail d;
	struct tvm t;

	(void)state;
	tvm_new(&t, 1, true, 0);
	tvm_add_counter(&t);
	run_page_writer(&t, 7, 16);
	assert_int_equal(squib_tracker_kvm_new(t.vm, &tr, &d), 0);
	assert_int_equal(squib_tracker_start(tr, &d), 0);
	tvm_start(&t);
	wait_report(&t, 0, 1);
	tvm_pause(&t);
	assert_int_equal(squib_tracker_harvest(tr, got, &d), 0);
	assert_true(squib_dirty_bitmap_count(got) > 1);
	assert_true(squib_dirty_bitmap_test(got, PARAMS));
	squib_dirty_bitmap_clear(got);
	memset(squib_kvm_vm_gpa_to_hva(t.vm, TARGET, 16 * PAGE), 0x5a, 16 * PAGE);
	assert_int_equal(squib_tracker_harvest(tr, got, &d), 0);
	assert_int_equal(squib_dirty_bitmap_count(got), 0);
	/* Stopped and started again: earlier writes are forgotten. */
	assert_int_equal(squib_tracker_stop(tr, &d), 0);
	assert_int_equal(squib_tracker_start(tr, &d), 0);
	assert_int_equal(squib_tracker_harvest(tr, got, &d), 0);
	assert_int_equal(squib_dirty_bitmap_count(got), 0);
	squib_tracker_free(tr);
	tvm_resume(&t);
	squib_kvm_vm_free(t.vm);
	squib_dirty_bitmap_free(got);
}

/* Harvests while both vCPUs count: each round reports exactly the two counter
 * pages, because each vCPU stored to its counter after the previous harvest
 * (a report two reports later than the harvest proves 1024 stores since). */
static void test_should_harvest_exactly_the_counter_pages_while_vcpus_run(void **state)
{
	struct squib_dirty_bitmap *got = ram_bitmap(), *want = ram_bitmap(), *first = ram_bitmap();
	struct squib_dirty_bitmap *walked = walked_tables(), *maybe = ram_bitmap();
	struct squib_tracker *tr;
	struct squib_error_detail d;
	struct guest g;
	struct tvm t;

	(void)state;
	load_guest("counter", &g);
	counter_vm(&t, &g, 2, true, 0);
	squib_dirty_bitmap_set(want, COUNTERS);
	squib_dirty_bitmap_set(want, COUNTERS + PAGE);
	assert_int_equal(squib_dirty_bitmap_merge(first, want, &d), 0);
	add_first_touches(first, maybe);
	assert_int_equal(squib_tracker_kvm_new(t.vm, &tr, &d), 0);
	assert_int_equal(squib_tracker_start(tr, &d), 0);
	tvm_start(&t);
	for (int round = 0; round < 5; round++) {
		for (uint32_t i = 0; i < 2; i++)
			wait_report(&t, i, reports_of(&t, i) + 2);
		squib_dirty_bitmap_clear(got);
		assert_int_equal(squib_tracker_harvest(tr, got, &d), 0);
		if (round == 0)
			assert_same_pages(got, first, maybe);
		else
			assert_same_pages(got, want, walked);
	}
	tvm_pause(&t);
	assert_int_equal(squib_tracker_stop(tr, &d), 0);
	squib_tracker_free(tr);
	squib_kvm_vm_free(t.vm);
	squib_dirty_bitmap_free(got);
	squib_dirty_bitmap_free(want);
	squib_dirty_bitmap_free(first);
	squib_dirty_bitmap_free(walked);
	squib_dirty_bitmap_free(maybe);
	free(g.code);
}

/* ---- a vCPU blocked on a page nobody serves --------------------------------------------- */

/*
 * A minimal page server over guest RAM registered with a userfaultfd in
 * MISSING mode (kernel-mode faults included: KVM's get_user_pages): it
 * zero-fills every faulting page except `withheld`, whose faults it only
 * counts, as a dead page server would.
 */
struct withholder {
	int uffd, stop;
	uint8_t *ram;
	uint64_t withheld; /* gpa */
	pthread_t thread;
	uint64_t served, withheld_faults; /* atomics */
};

static void withholder_serve(struct withholder *w, const struct uffd_msg *m)
{
	uint64_t at = m->arg.pagefault.address & ~(PAGE - 1);
	struct uffdio_zeropage z = {.range = {at, PAGE}};

	if (at == (uint64_t)(uintptr_t)w->ram + w->withheld) {
		__atomic_add_fetch(&w->withheld_faults, 1, __ATOMIC_SEQ_CST);
		return;
	}
	if (ioctl(w->uffd, UFFDIO_ZEROPAGE, &z) && errno != EEXIST)
		fail_msg("UFFDIO_ZEROPAGE: %s", strerror(errno));
	__atomic_add_fetch(&w->served, 1, __ATOMIC_SEQ_CST);
}

static void *withholder_thread(void *arg)
{
	struct withholder *w = arg;
	struct pollfd fds[2] = {{w->uffd, POLLIN, 0}, {w->stop, POLLIN, 0}};
	struct uffd_msg m;

	while (poll(fds, 2, -1) >= 0 && !(fds[1].revents & POLLIN)) {
		while (read(w->uffd, &m, sizeof(m)) == (ssize_t)sizeof(m))
			if (m.event == UFFD_EVENT_PAGEFAULT)
				withholder_serve(w, &m);
	}
	return NULL;
}

/* Register [ram, ram + RAM_SIZE) (its untouched pages fault from now on) and serve it. */
static void withholder_start(struct withholder *w, uint8_t *ram, uint64_t withheld)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg = {.range = {(uint64_t)(uintptr_t)ram, RAM_SIZE},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};

	memset(w, 0, sizeof(*w));
	w->ram = ram;
	w->withheld = withheld;
	w->uffd = squib_uffd_open(false);
	if (w->uffd < 0)
		fail_msg("userfaultfd: %s", strerror(errno));
	assert_int_equal(ioctl(w->uffd, UFFDIO_API, &api), 0);
	assert_int_equal(ioctl(w->uffd, UFFDIO_REGISTER, &reg), 0);
	w->stop = eventfd(0, EFD_CLOEXEC);
	assert_true(w->stop >= 0);
	assert_int_equal(pthread_create(&w->thread, NULL, withholder_thread, w), 0);
}

/* Stop serving; closing the uffd unregisters the memory and wakes blocked faults. */
static void withholder_stop(struct withholder *w)
{
	assert_int_equal(eventfd_write(w->stop, 1), 0);
	pthread_join(w->thread, NULL);
	close(w->stop);
	close(w->uffd);
}

/* Is the page at gpa populated? (Reading it could block on the uffd.) */
static bool resident(const uint8_t *ram, uint64_t gpa)
{
	unsigned char v = 0;

	assert_int_equal(mincore((void *)(ram + gpa), PAGE, &v), 0);
	return v & 1;
}

static void wait_withheld_fault(struct withholder *w)
{
	for (int i = 0; i < (int)WAIT_MS && !__atomic_load_n(&w->withheld_faults, __ATOMIC_SEQ_CST);
	     i++)
		usleep(1000);
	assert_true(__atomic_load_n(&w->withheld_faults, __ATOMIC_SEQ_CST) > 0);
}

/*
 * A 2-vCPU counter guest on uffd-registered RAM whose vCPU 1 counter page is
 * never served: vCPU 0 counts, vCPU 1 sits in KVM_RUN, inside KVM's fault
 * path, waiting on the userfaultfd.
 */
struct blocked {
	struct guest g;
	struct tvm t;
	struct withholder w;
	uint8_t *ram;
};

#define WITHHELD (COUNTERS + PAGE)

static void blocked_vm(struct blocked *b, uint32_t pause_timeout_ms)
{
	struct squib_kvm_vcpu_status st;

	load_guest("counter", &b->g);
	b->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(b->ram != MAP_FAILED);
	/* Small pages only: since Linux 6.7 a 4 MiB anonymous mapping is 2 MiB aligned, and a
	 * transparent huge page would populate the counter pages with the code and tables. */
	assert_int_equal(madvise(b->ram, RAM_SIZE, MADV_NOHUGEPAGE), 0);
	tvm_new_ram(&b->t, 2, true, pause_timeout_ms, SQUIB_KVM_DIRTY_LOG_AUTO, b->ram);
	tvm_add_counter(&b->t);
	tvm_load(&b->t, &b->g);
	tvm_boot(&b->t, 0, COUNTERS, PAGE); /* code and tables are present; the counters are not */
	withholder_start(&b->w, b->ram, WITHHELD);
	tvm_start(&b->t);
	wait_report(&b->t, 0, 2);
	wait_withheld_fault(&b->w);
	assert_int_equal(reports_of(&b->t, 1), 0);
	assert_int_equal(squib_kvm_vm_vcpu_status(b->t.vm, 1, &st), 0);
	assert_int_equal(st.state, SQUIB_KVM_VCPU_RUNNING);
}

static void blocked_free(struct blocked *b)
{
	squib_kvm_vm_free(b->t.vm);
	munmap(b->ram, RAM_SIZE);
	free(b->g.code);
}

static long long us_since(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (long long)(t1.tv_sec - t0->tv_sec) * 1000000 + (t1.tv_nsec - t0->tv_nsec) / 1000;
}

/* counter.S's loop starts with the load of the counter, 16 bytes (movq 3, incq 3,
 * movq 3, testl 5, jnz 2) before its report OUT. */
static uint64_t counter_load_offset(const struct guest *g)
{
	return g->report_offset - 16;
}

/*
 * Why squib_kvm_vm_fail revokes the RAM: waking the blocked access by
 * unregistering alone (the pause request still in force, the kick pending)
 * lets it complete on a zero page the server never sent; only then does the
 * vCPU stop. Where the kick was not enough (the pause timed out) this shows
 * what the guest got: vCPU 1's first access is the load of its counter.
 */
static void unregister_alone(struct blocked *b)
{
	struct squib_microvm_state s;
	struct squib_error_detail d;
	uint64_t rip, rax;
	bool mapped;

	withholder_stop(&b->w);
	tvm_pause(&b->t); /* the request was still in force: now every vCPU acknowledges */
	mapped = resident(b->ram, WITHHELD);
	assert_int_equal(squib_kvm_vm_capture(b->t.vm, &s, &d), 0);
	rip = s.x86_vcpus[1].regs.rip - CODE;
	rax = s.x86_vcpus[1].regs.rax;
	print_message("  unregistering alone: withheld page %s, vCPU 1 at code +%llu (its report "
		      "OUT at +%llu), rax %llu, counter in memory %llu\n",
		      mapped ? "mapped (zero page)" : "still unpopulated", (unsigned long long)rip,
		      (unsigned long long)b->g.report_offset, (unsigned long long)rax,
		      (unsigned long long)guest_u64(&b->t, WITHHELD));
	assert_true(rip < b->g.len);
	/* The fault was resolved with a zero page the server never sent, and the load retired on
	 * it (kvm_pvm emulates the access: rip past the load) or retires on it at the next entry
	 * (kvm_amd saw the pause request before re-entering the guest: rip on the load). */
	if (mapped)
		assert_true(rip == counter_load_offset(&b->g) ||
			    rip == counter_load_offset(&b->g) + 3);
	squib_state_free(&s);
}

/*
 * Pausing such a VM returns within its timeout, whatever the host does. On
 * x86 with hardware paging KVM faults guest memory in interruptibly and the
 * kick gets the vCPU out (pause succeeds); under kvm_pvm the access is
 * emulated and waits in handle_userfault, deaf to the kick: the pause times
 * out (squib_kvm_vm_fail is the way out, next test). Either way the page
 * stays missing and vCPU 1 never reported.
 */
static void
test_should_return_from_pause_in_time_while_a_vcpu_waits_for_a_missing_page(void **state)
{
	struct squib_error_detail d;
	struct timespec t0;
	struct blocked b;
	int rc;

	(void)state;
	blocked_vm(&b, 200);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rc = squib_kvm_vm_pause(b.t.vm, &d);
	print_message("  pause with vCPU 1 blocked on a missing page: %s after %lld us\n",
		      rc ? squib_error_name(rc) : "paused", us_since(&t0));
	assert_true(rc == 0 || rc == SQUIB_E_QUIESCE_TIMEOUT);
	for (uint32_t i = 0; !rc && i < 2; i++) {
		struct squib_kvm_vcpu_status st;

		assert_int_equal(squib_kvm_vm_vcpu_status(b.t.vm, i, &st), 0);
		assert_int_equal(st.state, SQUIB_KVM_VCPU_PAUSED);
	}
	assert_false(resident(b.ram, WITHHELD));
	assert_int_equal(reports_of(&b.t, 1), 0);
	if (rc)
		unregister_alone(&b);
	/* Free needs every vCPU thread out: fail, then wake the fault as a pager's stop does. */
	assert_int_equal(squib_kvm_vm_fail(b.t.vm, SQUIB_E_IO, NULL, &d), 0);
	if (!rc)
		withholder_stop(&b.w);
	assert_int_equal(squib_kvm_vm_wait_stopped(b.t.vm, WAIT_MS, &d), 0);
	blocked_free(&b);
}

/*
 * squib_kvm_vm_fail, then the memory's owner wakes the fault (closing the
 * uffd unregisters the RAM, as squib_pager_stop does): every vCPU leaves
 * KVM_RUN for good, the guest never read or wrote the page it waited for
 * (not even as a zero page: it stays unpopulated) and made no report, and
 * every later control call returns the failure.
 */
static void test_should_stop_a_vcpu_blocked_on_a_missing_page_for_good_with_fail(void **state)
{
	struct squib_error_detail why, d;
	struct squib_microvm_state s;
	struct timespec t0;
	struct blocked b;

	(void)state;
	blocked_vm(&b, 0);
	memset(&why, 0, sizeof(why));
	snprintf(why.msg, sizeof(why.msg), "page server died");
	assert_int_equal(squib_kvm_vm_fail(b.t.vm, SQUIB_E_MEMORY_IO, &why, &d), 0);
	/* A second failure changes nothing. */
	assert_int_equal(squib_kvm_vm_fail(b.t.vm, SQUIB_E_IO, NULL, &d), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	withholder_stop(&b.w);
	assert_int_equal(squib_kvm_vm_wait_stopped(b.t.vm, WAIT_MS, &d), 0);
	print_message("  fail + unregister: every vCPU out of KVM_RUN %lld us later\n",
		      us_since(&t0));
	for (uint32_t i = 0; i < 2; i++) {
		struct squib_kvm_vcpu_status st;

		assert_int_equal(squib_kvm_vm_vcpu_status(b.t.vm, i, &st), 0);
		assert_int_equal(st.state, SQUIB_KVM_VCPU_FAILED);
		print_message("  vCPU %u: last exit %u, error %d\n", i, st.exit_reason, st.error);
	}
	usleep(20000); /* a stopped guest makes no progress, however long we look */
	assert_false(resident(b.ram, WITHHELD));
	assert_int_equal(reports_of(&b.t, 1), 0);
	assert_int_equal(squib_kvm_vm_error(b.t.vm, &d), SQUIB_E_MEMORY_IO);
	assert_string_equal(d.msg, "page server died");
	assert_int_equal(squib_kvm_vm_resume(b.t.vm, &d), SQUIB_E_MEMORY_IO);
	assert_int_equal(squib_kvm_vm_pause(b.t.vm, &d), SQUIB_E_MEMORY_IO);
	assert_string_equal(d.msg, "page server died");
	assert_int_equal(squib_kvm_vm_start(b.t.vm, &d), SQUIB_E_MEMORY_IO);
	assert_false(squib_kvm_vm_is_paused(b.t.vm));
	/* Post-mortem: vCPU 1 still sits on the load of its counter, which never completed. */
	assert_int_equal(squib_kvm_vm_capture(b.t.vm, &s, &d), 0);
	print_message("  vCPU 1 stopped at code +%llu (its counter load at +%llu)\n",
		      (unsigned long long)(s.x86_vcpus[1].regs.rip - CODE),
		      (unsigned long long)counter_load_offset(&b.g));
	assert_int_equal(s.x86_vcpus[1].regs.rip, CODE + counter_load_offset(&b.g));
	assert_true(s.x86_vcpus[0].regs.rip >= CODE && s.x86_vcpus[0].regs.rip < CODE + b.g.len);
	squib_state_free(&s);
	blocked_free(&b);
}

static void test_should_refuse_fail_misuse(void **state)
{
	struct squib_error_detail d;
	struct tvm t;

	(void)state;
	assert_int_equal(squib_kvm_vm_fail(NULL, SQUIB_E_IO, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	tvm_new(&t, 1, true, 0);
	assert_int_equal(squib_kvm_vm_fail(t.vm, 0, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_kvm_vm_error(t.vm, &d), 0);
	assert_int_equal(squib_kvm_vm_wait_stopped(t.vm, 10, &d), SQUIB_E_INVALID_ARGUMENT);
	/* Failed before start: it never starts, and nothing waits. */
	assert_int_equal(squib_kvm_vm_fail(t.vm, SQUIB_E_IO, NULL, &d), 0);
	assert_int_equal(squib_kvm_vm_wait_stopped(t.vm, 10, &d), 0);
	assert_int_equal(squib_kvm_vm_start(t.vm, &d), SQUIB_E_IO);
	squib_kvm_vm_free(t.vm);
}

/* ---- misuse ---------------------------------------------------------------------- */

static void test_should_refuse_misuse(void **state)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_vm *vm;
	struct squib_error_detail d;
	struct squib_kvm_boot b;
	struct guest g;
	struct tvm t;

	(void)state;
	cfg.vcpu_count = 0;
	assert_int_equal(squib_kvm_vm_new(&cfg, &vm, &d), SQUIB_E_INVALID_ARGUMENT);
	cfg.vcpu_count = SQUIB_KVM_MAX_VCPUS + 1;
	assert_int_equal(squib_kvm_vm_new(&cfg, &vm, &d), SQUIB_E_INVALID_ARGUMENT);
	cfg.vcpu_count = 1;
	cfg.device_path = "/nonexistent/kvm";
	assert_int_equal(squib_kvm_vm_new(&cfg, &vm, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);

	load_guest("counter", &g);
	tvm_new(&t, 1, true, 0);
	assert_int_equal(squib_kvm_vm_add_ram(t.vm, RAM_SIZE - PAGE, PAGE, NULL, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT); /* overlaps */
	assert_int_equal(squib_kvm_vm_add_ram(t.vm, RAM_SIZE + 1, PAGE, NULL, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT); /* unaligned */
	assert_int_equal(squib_kvm_vm_add_console(t.vm, PORT_CONSOLE, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT); /* port taken */
	assert_int_equal(squib_kvm_vm_write(t.vm, RAM_SIZE - 4, "12345678", 8, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_null(squib_kvm_vm_gpa_to_hva(t.vm, RAM_SIZE, 1));
	memset(&b, 0, sizeof(b));
	b.tables_gpa = RAM_SIZE - PAGE; /* the tables would leave RAM */
	b.map_size = RAM_SIZE;
	assert_int_equal(squib_kvm_vm_boot_long_mode(t.vm, &b, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_kvm_vm_pause(t.vm, &d), SQUIB_E_INVALID_ARGUMENT);
	tvm_add_counter(&t);
	tvm_load(&t, &g);
	tvm_boot(&t, 0, COUNTERS, PAGE);
	tvm_start(&t);
	assert_int_equal(squib_kvm_vm_start(t.vm, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_kvm_vm_add_ram(t.vm, RAM_SIZE, PAGE, NULL, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT); /* after start */
	squib_kvm_vm_free(t.vm);
	free(g.code);
}

/* The console device keeps what the guest wrote, and its blob restores. */
static void test_should_keep_console_output_in_its_device_blob(void **state)
{
	static const uint8_t hello[] = {
	    0x66, 0xba, 0xe9, 0x00,	       /* mov $0xe9, %dx */
	    0xb0, 'h',	0xee, 0xb0, 'i', 0xee, /* mov $'h', %al; out; mov $'i', %al; out */
	    0xf4, 0xeb, 0xfd,		       /* hlt; jmp hlt */
	};
	struct squib_microvm_state s;
	struct squib_error_detail d;
	struct squib_kvm_vcpu_status st;
	char out[16];
	struct tvm t;

	(void)state;
	tvm_new(&t, 1, false, 0);
	assert_int_equal(squib_kvm_vm_write(t.vm, CODE, hello, sizeof(hello), &d), 0);
	tvm_boot(&t, 0, 0, 0);
	tvm_start(&t);
	/* Without an irqchip HLT exits to us and the vCPU parks as HALTED. */
	for (int i = 0; i < 10000; i++) {
		assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, 0, &st), 0);
		if (st.state == SQUIB_KVM_VCPU_HALTED)
			break;
		usleep(1000);
	}
	assert_int_equal(st.state, SQUIB_KVM_VCPU_HALTED);
	assert_int_equal(squib_kvm_console_read(t.console, out, sizeof(out)), 2);
	assert_string_equal(out, "hi");
	tvm_pause(&t); /* a halted vCPU counts as acknowledged */
	assert_int_equal(squib_kvm_vm_capture(t.vm, &s, &d), 0);
	assert_int_equal(s.device_count, 1);
	assert_string_equal(s.devices[0].kind, "squib-console");
	assert_int_equal(s.devices[0].mmio_slot, PORT_CONSOLE);
	assert_int_equal(s.devices[0].blob_len, 12 + 2);
	squib_kvm_vm_free(t.vm);
	tvm_new(&t, 1, false, 0);
	if (squib_kvm_vm_restore(t.vm, &s, &d))
		fail_msg("restore: %s", d.msg);
	assert_int_equal(squib_kvm_console_read(t.console, out, sizeof(out)), 2);
	assert_string_equal(out, "hi");
	squib_kvm_vm_free(t.vm);
	squib_state_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_run_counter_guest_and_see_counters_advance),
	    cmocka_unit_test(test_should_pause_and_resume_every_vcpu),
	    cmocka_unit_test(test_should_complete_port_io_before_acknowledging_a_pause),
	    cmocka_unit_test_setup_teardown(test_should_time_out_when_a_vcpu_does_not_acknowledge,
					    blocker_setup, blocker_teardown),
	    cmocka_unit_test(test_should_capture_x86_state_and_round_trip_it_through_the_format),
	    cmocka_unit_test(test_should_restore_into_a_fresh_vm_and_continue_counting),
	    cmocka_unit_test(test_should_restore_without_an_irqchip_into_a_mapped_file),
	    cmocka_unit_test(test_should_refuse_a_state_that_does_not_fit_and_name_failing_ioctls),
	    cmocka_unit_test(test_should_report_exactly_the_pages_the_guest_wrote),
	    cmocka_unit_test(test_should_report_exactly_the_written_pages_without_initially_set),
	    cmocka_unit_test(test_should_report_exactly_the_written_pages_with_the_classic_log),
	    cmocka_unit_test(test_should_not_report_vmm_writes_or_harvested_pages),
	    cmocka_unit_test(test_should_harvest_exactly_the_counter_pages_while_vcpus_run),
	    cmocka_unit_test(
		test_should_return_from_pause_in_time_while_a_vcpu_waits_for_a_missing_page),
	    cmocka_unit_test(test_should_stop_a_vcpu_blocked_on_a_missing_page_for_good_with_fail),
	    cmocka_unit_test(test_should_refuse_fail_misuse),
	    cmocka_unit_test(test_should_refuse_misuse),
	    cmocka_unit_test(test_should_keep_console_output_in_its_device_blob),
	};

	if (!squib_kvm_available(NULL)) {
		fprintf(stderr,
			"*** SKIPPED test_kvm: /dev/kvm does not exist on this machine ***\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
