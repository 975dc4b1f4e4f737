/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The KVM runner on real /dev/kvm: tiny guests (the .S files in tests/guests)
 * entered in long mode, port-I/O devices, pause/resume and its timeout.
 * Waits have generous time limits that only stop a broken run; nothing here
 * asserts on time.
 *
 * Skipped (exit 77, one line on stderr) only when /dev/kvm does not exist.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <squib/envelope.h>
#include <squib/kvm.h>
#include <squib/state.h>
#include <squib/track.h>

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

static void tvm_new(struct tvm *t, uint32_t vcpus, bool irqchip, uint32_t pause_timeout_ms)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_error_detail d;
	int rc;

	memset(t, 0, sizeof(*t));
	cfg.vcpu_count = vcpus;
	cfg.irqchip = irqchip;
	cfg.pause_timeout_ms = pause_timeout_ms;
	rc = squib_kvm_vm_new(&cfg, &t->vm, &d);
	if (rc)
		fail_msg("squib_kvm_vm_new: %s", d.msg);
	t->vcpus = vcpus;
	assert_int_equal(squib_kvm_vm_add_ram(t->vm, 0, RAM_SIZE, NULL, NULL, &d), 0);
	assert_int_equal(squib_kvm_vm_add_console(t->vm, PORT_CONSOLE, &t->console, &d), 0);
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

/* ---- the quiesce timeout -------------------------------------------------------- */

struct blocker {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool blocking;
	bool entered;
};

/* Holds the vCPU thread in the device (outside KVM_RUN) while blocking is set. */
static int blocker_io(void *ctx, uint32_t vcpu, uint16_t port, bool is_write, uint8_t *data,
		      uint32_t size)
{
	struct blocker *b = ctx;

	(void)vcpu;
	(void)port;
	(void)is_write;
	(void)data;
	(void)size;
	pthread_mutex_lock(&b->lock);
	b->entered = true;
	pthread_cond_broadcast(&b->cond);
	while (b->blocking)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static const struct squib_kvm_device_ops blocker_ops = {
    .kind = "test-blocker",
    .io = blocker_io,
};

static void test_should_time_out_when_a_vcpu_does_not_acknowledge(void **state)
{
	struct blocker b = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, true, false};
	struct squib_kvm_vcpu_status st[2];
	struct squib_error_detail d;
	char msg[256];
	struct guest g;
	struct tvm t;

	(void)state;
	load_guest("counter", &g);
	tvm_new(&t, 2, true, 50);
	assert_int_equal(
	    squib_kvm_vm_add_device(t.vm, "blocker", PORT_COUNTER, 1, &blocker_ops, &b, &d), 0);
	tvm_load(&t, &g);
	tvm_boot(&t, 0, COUNTERS, PAGE);
	tvm_start(&t);
	pthread_mutex_lock(&b.lock);
	while (!b.entered)
		pthread_cond_wait(&b.cond, &b.lock);
	pthread_mutex_unlock(&b.lock);
	/* A vCPU sits in the device: it cannot acknowledge. */
	assert_int_equal(squib_kvm_vm_pause(t.vm, &d), SQUIB_E_QUIESCE_TIMEOUT);
	squib_error_message(d.code, &d, msg, sizeof(msg));
	assert_string_equal(msg, "a vCPU did not ack quiesce within the timeout");
	assert_non_null(strstr(d.msg, "did not ack within 50 ms"));
	assert_false(squib_kvm_vm_is_paused(t.vm));
	assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, 0, &st[0]), 0);
	assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, 1, &st[1]), 0);
	assert_true(st[0].state == SQUIB_KVM_VCPU_RUNNING || st[1].state == SQUIB_KVM_VCPU_RUNNING);
	/* Released, the vCPU completes its OUT and acknowledges. */
	pthread_mutex_lock(&b.lock);
	b.blocking = false;
	pthread_cond_broadcast(&b.cond);
	pthread_mutex_unlock(&b.lock);
	tvm_pause(&t);
	assert_true(squib_kvm_vm_is_paused(t.vm));
	tvm_resume(&t);
	squib_kvm_vm_free(t.vm);
	free(g.code);
}

/* ---- capture, the file format, restore ------------------------------------------- */

/* ---- the dirty log ---------------------------------------------------------------- */

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_run_counter_guest_and_see_counters_advance),
		cmocka_unit_test(test_should_pause_and_resume_every_vcpu),
		cmocka_unit_test(test_should_time_out_when_a_vcpu_does_not_acknowledge),
		cmocka_unit_test(test_should_refuse_misuse),
	};

	if (!squib_kvm_available(NULL)) {
		fprintf(stderr,
			"*** SKIPPED test_kvm: /dev/kvm does not exist on this machine ***\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
