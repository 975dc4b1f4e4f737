/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The VM interface (squib/vm.h): required ops, the all-or-nothing quiesce,
 * the restore order, memory region checks; on the test VM and on a bare
 * ops table that records calls.
 */
#include "testutil.h"
#include "testvm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/vm.h>

#define GPA 0x80000000ull

static struct squib_testvm *new_vm(struct squib_testvm_config *c)
{
	struct squib_testvm *vm = NULL;

	assert_int_equal(squib_testvm_new(c, &vm), 0);
	return vm;
}

static void test_should_name_the_first_missing_op(void **state)
{
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 65536, 1);
	struct squib_testvm *vm = new_vm(&c);
	struct squib_vm v = squib_testvm_vm(vm);
	struct squib_vm_ops ops = *v.ops;
	struct squib_vm broken = {&ops, v.ctx};
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_vm_check(&v, &d), 0);
	ops.restore_vcpus = NULL;
	assert_int_equal(squib_vm_check(&broken, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_string_equal(d.msg, "VM ops \"testvm\" lack the required op restore_vcpus");
	assert_int_equal(squib_vm_pause(&broken, 0, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_vm_arch(&broken), SQUIB_ARCH_ANY);
	ops = *v.ops;
	ops.trackers = NULL; /* optional */
	assert_int_equal(squib_vm_check(&broken, &d), 0);
	assert_null(squib_vm_trackers(&broken));
	assert_int_equal(squib_vm_check(NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_vm_arch(&v), SQUIB_ARCH_AARCH64);
	squib_testvm_free(vm);
}

static void test_should_pause_and_resume_every_vcpu(void **state)
{
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 65536, 4);
	struct squib_testvm *vm = new_vm(&c);
	struct squib_vm v = squib_testvm_vm(vm);
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_vm_pause(&v, 0, &d), 0);
	for (uint32_t i = 0; i < 4; i++)
		assert_true(squib_testvm_vcpu_paused(vm, i));
	assert_int_equal(squib_vm_resume(&v, &d), 0);
	for (uint32_t i = 0; i < 4; i++) {
		assert_false(squib_testvm_vcpu_paused(vm, i));
		assert_int_equal(squib_testvm_vcpu_pauses(vm, i), 1);
		assert_int_equal(squib_testvm_vcpu_resumes(vm, i), 1);
	}
	squib_testvm_free(vm);
}

/* A short timeout: the protocol, not the 1 s default (test_save covers that). */
static void test_should_resume_the_others_when_one_vcpu_never_acks(void **state)
{
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 65536, 4);
	struct squib_testvm *vm;
	struct squib_vm v;
	struct squib_error_detail d;

	(void)state;
	c.stuck_vcpu = 3;
	vm = new_vm(&c);
	v = squib_testvm_vm(vm);
	assert_int_equal(squib_vm_pause(&v, 50, &d), SQUIB_E_QUIESCE_TIMEOUT);
	assert_string_equal(d.msg, "vCPU 3 did not ack the pause within 50 ms");
	for (uint32_t i = 0; i < 4; i++) {
		assert_false(squib_testvm_vcpu_paused(vm, i));
		assert_false(squib_testvm_vcpu_pause_pending(vm, i));
		assert_int_equal(squib_testvm_vcpu_pauses(vm, i), squib_testvm_vcpu_resumes(vm, i));
	}
	assert_int_equal(squib_testvm_vcpu_pauses(vm, 3), 0);
	squib_testvm_free(vm);
}

/* ---- a bare ops table ------------------------------------------------------------ */

struct bare {
	char log[256];
	int fail_begin;	  /* vCPU whose pause_begin fails; -1 none */
	const char *fail; /* restore op that fails */
	struct squib_vm_region regions[3];
	uint32_t nregions;
	struct squib_tracker_set set;
};

static void bare_log(struct bare *b, char op, uint32_t i)
{
	size_t n = strlen(b->log);

	snprintf(b->log + n, sizeof(b->log) - n, "%c%u ", op, i);
}

static enum squib_arch bare_arch(void *ctx)
{
	(void)ctx;
	return SQUIB_ARCH_X86_64;
}

static uint32_t bare_count(void *ctx)
{
	(void)ctx;
	return 3;
}

static int bare_begin(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	struct bare *b = ctx;

	bare_log(b, 'b', i);
	return (int)i == b->fail_begin ? squib_fail_msg(d, SQUIB_E_CAPTURE, "kick failed") : 0;
}

static int bare_wait(void *ctx, uint32_t i, const struct timespec *dl, struct squib_error_detail *d)
{
	(void)dl;
	(void)d;
	bare_log(ctx, 'w', i);
	return 0;
}

static int bare_resume(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	(void)d;
	bare_log(ctx, 'r', i);
	return 0;
}

static int bare_capture(void *ctx, struct squib_microvm_state *s, struct squib_error_detail *d)
{
	(void)ctx;
	(void)d;
	s->vm_info.mem_size_mib = 1;
	return 0;
}

static int bare_restore(struct bare *b, const char *what, struct squib_error_detail *d)
{
	size_t n = strlen(b->log);

	snprintf(b->log + n, sizeof(b->log) - n, "%s ", what);
	return b->fail && !strcmp(b->fail, what) ? squib_fail(d, SQUIB_E_CAPTURE) : 0;
}

static int bare_irqchip(void *ctx, const struct squib_microvm_state *s,
			struct squib_error_detail *d)
{
	(void)s;
	return bare_restore(ctx, "irqchip", d);
}

static int bare_vcpus(void *ctx, const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	(void)s;
	return bare_restore(ctx, "vcpus", d);
}

static int bare_devices(void *ctx, const struct squib_microvm_state *s,
			struct squib_error_detail *d)
{
	(void)s;
	return bare_restore(ctx, "devices", d);
}

static int bare_get_memory(void *ctx, const struct squib_vm_region **r, uint32_t *n,
			   struct squib_error_detail *d)
{
	struct bare *b = ctx;

	(void)d;
	*r = b->regions;
	*n = b->nregions;
	return 0;
}

static int bare_set_memory(void *ctx, const struct squib_vm_region *r, uint32_t n,
			   struct squib_error_detail *d)
{
	(void)ctx;
	(void)r;
	(void)n;
	(void)d;
	return 0;
}

static struct squib_tracker_set *bare_trackers(void *ctx)
{
	return &((struct bare *)ctx)->set;
}

static const struct squib_vm_ops bare_ops = {
    "bare",	     bare_arch,	      bare_count,    bare_begin, bare_wait,
    bare_resume,     bare_capture,    bare_irqchip,  bare_vcpus, bare_devices,
    bare_get_memory, bare_set_memory, bare_trackers,
};

static void test_should_withdraw_every_request_when_a_pause_cannot_start(void **state)
{
	struct bare b = {.fail_begin = 1};
	struct squib_vm v = {&bare_ops, &b};
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(squib_vm_pause(&v, 0, &d), SQUIB_E_CAPTURE);
	assert_string_equal(b.log, "b0 b1 r0 r1 "); /* vCPU 2 was never asked */
	b = (struct bare){.fail_begin = -1};
	assert_int_equal(squib_vm_pause(&v, 0, &d), 0);
	assert_string_equal(b.log, "b0 b1 b2 w0 w1 w2 "); /* all asked before any wait */
}

static void test_should_restore_the_interrupt_controller_first_and_stop_at_a_failure(void **state)
{
	struct bare b = {.fail_begin = -1};
	struct squib_vm v = {&bare_ops, &b};
	struct squib_microvm_state s;
	struct squib_error_detail d;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_X86_64);
	assert_int_equal(squib_vm_restore(&v, &s, &d), 0);
	assert_string_equal(b.log, "irqchip vcpus devices ");
	b = (struct bare){.fail_begin = -1, .fail = "irqchip"};
	assert_int_equal(squib_vm_restore(&v, &s, &d), SQUIB_E_CAPTURE);
	assert_string_equal(b.log, "irqchip ");
	assert_int_equal(squib_vm_restore(&v, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	/* Capture initialises the state for the VM's architecture. */
	assert_int_equal(squib_vm_capture(&v, &s, &d), 0);
	assert_int_equal(s.arch, SQUIB_ARCH_X86_64);
	assert_int_equal(s.vm_info.mem_size_mib, 1);
	squib_state_free(&s);
}

static void test_should_check_the_memory_regions(void **state)
{
	static uint8_t host[3][4096];
	struct bare b = {.fail_begin = -1};
	struct squib_vm v = {&bare_ops, &b};
	const struct squib_vm_region *r;
	struct squib_error_detail d;
	uint32_t n;

	(void)state;
	assert_int_equal(squib_vm_get_memory(&v, &r, &n, &d), SQUIB_E_INVALID_ARGUMENT); /* none */
	b.nregions = 2;
	b.regions[0] = (struct squib_vm_region){0x1000, 0x1000, host[0]};
	b.regions[1] = (struct squib_vm_region){0x2000, 0x1000, host[1]};
	assert_int_equal(squib_vm_get_memory(&v, &r, &n, &d), 0);
	assert_int_equal(n, 2);
	b.regions[1].guest_addr = 0x1800; /* overlaps */
	assert_int_equal(squib_vm_get_memory(&v, &r, &n, &d), SQUIB_E_INVALID_ARGUMENT);
	b.regions[1] = (struct squib_vm_region){0x3000, 0x1000, NULL}; /* unmapped */
	assert_int_equal(squib_vm_set_memory(&v, b.regions, 2, &d), SQUIB_E_INVALID_ARGUMENT);
	b.regions[1] = (struct squib_vm_region){UINT64_MAX - 10, 0x1000, host[2]}; /* overflows */
	assert_int_equal(squib_vm_set_memory(&v, b.regions, 2, &d), SQUIB_E_INVALID_ARGUMENT);
	/* An empty tracker set is no dirty source. */
	assert_null(squib_vm_trackers(&v));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_name_the_first_missing_op),
	    cmocka_unit_test(test_should_pause_and_resume_every_vcpu),
	    cmocka_unit_test(test_should_resume_the_others_when_one_vcpu_never_acks),
	    cmocka_unit_test(test_should_withdraw_every_request_when_a_pause_cannot_start),
	    cmocka_unit_test(
		test_should_restore_the_interrupt_controller_first_and_stop_at_a_failure),
	    cmocka_unit_test(test_should_check_the_memory_regions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
