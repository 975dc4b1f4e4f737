/* SPDX-License-Identifier: Apache-2.0 */
/* The state model: upstream state.rs tests plus ordering, ownership and equality. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include <squib/envelope.h>
#include <squib/state.h>
#include <squib/sysreg.h>

static const uint8_t gic3[3] = {1, 2, 3};

/* One vCPU and a 3-byte GIC: the smallest state verify_compatible accepts. */
static void make_compatible(struct squib_microvm_state *s)
{
	squib_state_init(s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_arm64_vcpu(s, 0, NULL), 0);
	assert_int_equal(squib_state_set_gic(s, gic3, sizeof(gic3)), 0);
	assert_int_equal(squib_state_verify_compatible(s, NULL), 0);
}

/* encode -> decode, asserting the copy equals the original. */
static void assert_round_trips(const struct squib_microvm_state *s,
			       struct squib_microvm_state *copy)
{
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	assert_int_equal(squib_state_encode(s, &buf, &len, &d), 0);
	assert_int_equal(squib_state_decode(buf, len, s->arch, copy, NULL, &d), 0);
	free(buf);
	assert_true(squib_state_equal(s, copy));
}

static void test_should_round_trip_default_microvm_state(void **state)
{
	struct squib_microvm_state s, copy;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_round_trips(&s, &copy);
	assert_int_equal(copy.vcpu_count, 0);
	assert_null(copy.mmds);
	squib_state_free(&copy);
}

static void test_should_sort_device_states_by_slot_then_id(void **state)
{
	struct squib_microvm_state s;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_device(&s, "virtio-net", "eth0", 2, "n", 1), 0);
	assert_int_equal(squib_state_add_device(&s, "virtio-block", "rootfs", 0, "r", 1), 0);
	assert_int_equal(squib_state_add_device(&s, "virtio-block", "data", 1, NULL, 0), 0);
	assert_int_equal(s.device_count, 3);
	assert_string_equal(s.devices[0].id, "rootfs");
	assert_string_equal(s.devices[1].id, "data");
	assert_string_equal(s.devices[2].id, "eth0");
	assert_int_equal(s.devices[2].blob_len, 1);
	assert_memory_equal(s.devices[2].blob, "n", 1);
	squib_state_free(&s);
}

static void test_should_order_same_slot_devices_bytewise_then_shorter_first(void **state)
{
	struct squib_microvm_state s;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_device(&s, "k", "b", 4, NULL, 0), 0);
	assert_int_equal(squib_state_add_device(&s, "k", "ab", 4, NULL, 0), 0);
	assert_int_equal(squib_state_add_device(&s, "k", "a", 4, NULL, 0), 0);
	assert_int_equal(squib_state_add_device(&s, "k", "\xc3\xa9", 4, NULL, 0), 0);
	assert_int_equal(squib_state_add_device(&s, "k", "Z", 4, NULL, 0), 0);
	assert_string_equal(s.devices[0].id, "Z");
	assert_string_equal(s.devices[1].id, "a");
	assert_string_equal(s.devices[2].id, "ab");
	assert_string_equal(s.devices[3].id, "b");
	assert_string_equal(s.devices[4].id, "\xc3\xa9"); /* 0xc3 sorts after ASCII */
	squib_state_free(&s);
}

static void test_should_reject_duplicate_device(void **state)
{
	struct squib_microvm_state s;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_device(&s, "virtio-block", "rootfs", 0, NULL, 0), 0);
	assert_int_equal(squib_state_add_device(&s, "virtio-net", "rootfs", 0, "x", 1),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_state_add_device(&s, "virtio-block", "rootfs", 1, NULL, 0), 0);
	assert_int_equal(s.device_count, 2);
	assert_string_equal(s.devices[0].kind, "virtio-block");
	squib_state_free(&s);
}

static void test_should_reject_zero_vcpu_state(void **state)
{
	struct squib_microvm_state s;
	struct squib_error_detail d;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_set_gic(&s, gic3, sizeof(gic3)), 0);
	assert_int_equal(squib_state_verify_compatible(&s, &d), SQUIB_E_INCOMPATIBLE);
	assert_int_equal(d.code, SQUIB_E_INCOMPATIBLE);
	squib_state_free(&s);
}

static void test_should_reject_smt_enabled(void **state)
{
	struct squib_microvm_state s;

	(void)state;
	make_compatible(&s);
	s.vm_info.smt = true;
	assert_int_equal(squib_state_verify_compatible(&s, NULL), SQUIB_E_INCOMPATIBLE);
	squib_state_free(&s);
}

static void test_should_reject_empty_gic_blob(void **state)
{
	struct squib_microvm_state s;

	(void)state;
	make_compatible(&s);
	assert_int_equal(squib_state_set_gic(&s, NULL, 0), 0);
	assert_int_equal(squib_state_verify_compatible(&s, NULL), SQUIB_E_INCOMPATIBLE);
	squib_state_free(&s);
}

static void test_should_reject_gic_length_mismatch(void **state)
{
	struct squib_microvm_state s;

	(void)state;
	make_compatible(&s);
	s.gic.len = 99;
	assert_int_equal(s.gic.size, 3);
	assert_int_equal(squib_state_verify_compatible(&s, NULL), SQUIB_E_INCOMPATIBLE);
	squib_state_free(&s);
}

/* Each refusal says which shape did not match (the fixed text cannot). */
static void test_should_say_which_shape_is_incompatible(void **state)
{
	struct squib_microvm_state s;
	struct squib_error_detail d;

	(void)state;
	make_compatible(&s);
	s.vm_info.smt = true;
	assert_int_equal(squib_state_verify_compatible(&s, &d), SQUIB_E_INCOMPATIBLE);
	assert_string_equal(d.msg, "SMT is enabled in the VM info");
	s.vm_info.smt = false;
	s.gic.len = 99;
	assert_int_equal(squib_state_verify_compatible(&s, &d), SQUIB_E_INCOMPATIBLE);
	assert_string_equal(d.msg, "GIC blob shape: 3 bytes, declared length 99");
	squib_state_free(&s);
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_set_gic(&s, gic3, sizeof(gic3)), 0);
	assert_int_equal(squib_state_verify_compatible(&s, &d), SQUIB_E_INCOMPATIBLE);
	assert_string_equal(d.msg, "0 vCPUs (1..32)");
	squib_state_free(&s);
	squib_state_init(&s, SQUIB_ARCH_X86_64);
	assert_int_equal(squib_state_add_x86_vcpu(&s, NULL), 0);
	assert_int_equal(squib_state_verify_compatible(&s, &d), SQUIB_E_INCOMPATIBLE);
	assert_string_equal(d.msg, "x86_64 state without an x86 VM section");
	squib_state_free(&s);
}

static void test_should_accept_32_vcpus_and_reject_33(void **state)
{
	struct squib_microvm_state s;

	(void)state;
	make_compatible(&s);
	for (uint64_t i = 1; i < 32; i++)
		assert_int_equal(squib_state_add_arm64_vcpu(&s, i, NULL), 0);
	assert_int_equal(s.vcpu_count, 32);
	assert_int_equal(squib_state_verify_compatible(&s, NULL), 0);
	assert_int_equal(squib_state_add_arm64_vcpu(&s, 32, NULL), 0);
	assert_int_equal(squib_state_verify_compatible(&s, NULL), SQUIB_E_INCOMPATIBLE);
	squib_state_free(&s);
}

static void test_should_bound_vcpus_at_decoder_limit(void **state)
{
	struct squib_microvm_state s;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	for (uint64_t i = 0; i < SQUIB_STATE_MAX_VCPUS; i++)
		assert_int_equal(squib_state_add_arm64_vcpu(&s, i, NULL), 0);
	assert_int_equal(squib_state_add_arm64_vcpu(&s, 999, NULL), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(s.vcpu_count, SQUIB_STATE_MAX_VCPUS);
	assert_int_equal(s.arm64_vcpus[SQUIB_STATE_MAX_VCPUS - 1].mpidr, SQUIB_STATE_MAX_VCPUS - 1);
	squib_state_free(&s);
}

static void test_should_apply_x86_rules_without_gic(void **state)
{
	struct squib_microvm_state s;
	struct squib_x86_vm_state vm;
	struct squib_arm64_vcpu *v;
	struct squib_x86_vcpu *x;

	(void)state;
	memset(&vm, 0, sizeof(vm));
	squib_state_init(&s, SQUIB_ARCH_X86_64);
	assert_int_equal(squib_state_add_arm64_vcpu(&s, 0, &v), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_state_set_x86_vm(&s, &vm), 0);
	assert_int_equal(squib_state_verify_compatible(&s, NULL),
			 SQUIB_E_INCOMPATIBLE); /* 0 vCPUs */
	assert_int_equal(squib_state_add_x86_vcpu(&s, &x), 0);
	assert_ptr_equal(x, &s.x86_vcpus[0]);
	assert_int_equal(x->mp_state, 0);
	assert_false(x->has_lapic);
	/* No GIC needed on x86_64, but the VM state (clock, irqchip) is. */
	assert_int_equal(squib_state_verify_compatible(&s, NULL), 0);
	assert_int_equal(squib_state_set_x86_vm(&s, NULL), 0);
	assert_null(s.x86_vm);
	assert_int_equal(squib_state_verify_compatible(&s, NULL), SQUIB_E_INCOMPATIBLE);
	assert_int_equal(squib_state_set_x86_vm(&s, &vm), 0);
	s.vm_info.smt = true;
	assert_int_equal(squib_state_verify_compatible(&s, NULL), SQUIB_E_INCOMPATIBLE);
	s.vm_info.smt = false;
	while (s.vcpu_count < SQUIB_MAX_VCPUS)
		assert_int_equal(squib_state_add_x86_vcpu(&s, NULL), 0);
	assert_int_equal(squib_state_verify_compatible(&s, NULL), 0);
	assert_int_equal(squib_state_add_x86_vcpu(&s, NULL), 0);
	assert_int_equal(squib_state_verify_compatible(&s, NULL), SQUIB_E_INCOMPATIBLE);
	squib_state_free(&s);
	assert_null(s.x86_vcpus);
	assert_null(s.x86_vm);
	assert_int_equal(s.arch, SQUIB_ARCH_X86_64);
	squib_state_init(&s, SQUIB_ARCH_ANY);
	assert_int_equal(squib_state_verify_compatible(&s, NULL), SQUIB_E_INVALID_ARGUMENT);
}

/* One x86 vCPU with arrays and VM state: equality sees every field. */
static void make_x86(struct squib_microvm_state *s)
{
	static const struct squib_x86_msr msrs[] = {{0x10, 1}, {0x174, 2}};
	static const struct squib_x86_cpuid_entry cpuid[] = {{0, 0, 0, 0xd, 1, 2, 3}};
	struct squib_x86_vm_state vm;
	uint8_t xsave[SQUIB_X86_XSAVE_MIN];
	struct squib_x86_vcpu *v;

	memset(&vm, 0, sizeof(vm));
	memset(xsave, 0x33, sizeof(xsave));
	squib_state_init(s, SQUIB_ARCH_X86_64);
	assert_int_equal(squib_state_add_x86_vcpu(s, &v), 0);
	assert_int_equal(squib_x86_vcpu_set_msrs(v, msrs, 2), 0);
	assert_int_equal(squib_x86_vcpu_set_cpuid(v, cpuid, 1), 0);
	assert_int_equal(squib_x86_vcpu_set_xsave(v, xsave, sizeof(xsave)), 0);
	assert_int_equal(squib_state_set_x86_vm(s, &vm), 0);
}

static void test_should_compare_every_x86_field_in_equal(void **state)
{
	struct squib_microvm_state a, b, copy;
	struct squib_x86_vcpu *v;

	(void)state;
	make_x86(&a);
	make_x86(&b);
	v = &b.x86_vcpus[0];
	assert_true(squib_state_equal(&a, &b));
	v->sregs.ldt.avl = 1;
	assert_false(squib_state_equal(&a, &b));
	v->sregs.ldt.avl = 0;
	v->sregs.idt.limit = 1;
	assert_false(squib_state_equal(&a, &b));
	v->sregs.idt.limit = 0;
	v->regs.rflags = 2;
	assert_false(squib_state_equal(&a, &b));
	v->regs.rflags = 0;
	v->lapic[5] = 1; /* ignored without a LAPIC */
	assert_true(squib_state_equal(&a, &b));
	v->has_lapic = true;
	assert_false(squib_state_equal(&a, &b));
	v->has_lapic = false;
	v->msrs[1].value = 3;
	assert_false(squib_state_equal(&a, &b));
	v->msrs[1].value = 2;
	v->cpuid[0].edx = 4;
	assert_false(squib_state_equal(&a, &b));
	v->cpuid[0].edx = 3;
	v->xsave[4095] = 0;
	assert_false(squib_state_equal(&a, &b));
	v->xsave[4095] = 0x33;
	v->xcr_count = 1;
	assert_false(squib_state_equal(&a, &b));
	v->xcr_count = 0;
	b.x86_vm->clock.flags = 2;
	assert_false(squib_state_equal(&a, &b));
	b.x86_vm->clock.flags = 0;
	b.x86_vm->has_pit = true;
	assert_false(squib_state_equal(&a, &b));
	b.x86_vm->has_pit = false;
	assert_true(squib_state_equal(&a, &b));
	/* Setters store canonical order and refuse duplicate keys. */
	assert_int_equal(squib_x86_vcpu_set_xcrs(v, (struct squib_x86_xcr[]){{1, 3}, {0, 7}}, 2),
			 0);
	assert_int_equal(v->xcrs[0].xcr, 0);
	assert_int_equal(v->xcrs[1].value, 3);
	assert_int_equal(squib_x86_vcpu_set_xcrs(v, (struct squib_x86_xcr[]){{1, 3}, {1, 7}}, 2),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(v->xcr_count, 2); /* unchanged */
	assert_int_equal(squib_x86_vcpu_set_msrs(v, (struct squib_x86_msr[]){{9, 1}, {9, 2}}, 2),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(v->msr_count, 2);
	assert_int_equal(squib_x86_vcpu_set_xcrs(v, NULL, 0), 0);
	assert_true(squib_state_equal(&a, &b));
	assert_round_trips(&b, &copy);
	squib_state_free(&copy);
	assert_int_equal(squib_state_set_x86_vm(&b, NULL), 0);
	assert_false(squib_state_equal(&a, &b));
	squib_state_free(&a);
	squib_state_free(&b);
}

static void test_should_create_vcpu_like_upstream_new(void **state)
{
	struct squib_microvm_state s;
	struct squib_arm64_vcpu *v, zero;

	(void)state;
	memset(&zero, 0, sizeof(zero));
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_arm64_vcpu(&s, 0x80000001, &v), 0);
	assert_ptr_equal(v, &s.arm64_vcpus[0]);
	assert_int_equal(v->mpidr, 0x80000001);
	assert_int_equal(v->psci_state, SQUIB_PSCI_OFF);
	assert_int_equal(v->sys_reg_count, 0);
	assert_null(v->sys_regs);
	assert_memory_equal(&v->regs, &zero.regs, sizeof(zero.regs));
	assert_memory_equal(&v->fp_regs, &zero.fp_regs, sizeof(zero.fp_regs));
	squib_state_free(&s);
}

static void test_should_keep_sysregs_sorted_on_insert_and_replace(void **state)
{
	struct squib_microvm_state s;
	struct squib_arm64_vcpu *v;
	static const uint64_t keys[] = {20, 1, 47, 7, 1000, 0};
	uint64_t val;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_arm64_vcpu(&s, 0, &v), 0);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		assert_int_equal(squib_arm64_vcpu_set_sysreg(v, keys[i], keys[i] * 10), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(v, 7, 0xCAFEBEEF), 0);
	assert_int_equal(v->sys_reg_count, 6);
	for (uint32_t i = 1; i < v->sys_reg_count; i++)
		assert_true(v->sys_regs[i - 1].key < v->sys_regs[i].key);
	assert_int_equal(v->sys_regs[0].key, 0);
	assert_int_equal(v->sys_regs[5].key, 1000);
	assert_true(squib_arm64_vcpu_get_sysreg(v, 7, &val));
	assert_int_equal(val, 0xCAFEBEEF);
	assert_true(squib_arm64_vcpu_get_sysreg(v, 47, &val));
	assert_int_equal(val, 470);
	assert_false(squib_arm64_vcpu_get_sysreg(v, 2, &val));
	assert_false(squib_arm64_vcpu_get_sysreg(v, UINT64_MAX, NULL));
	squib_state_free(&s);
}

static void test_should_bound_sysregs_per_vcpu(void **state)
{
	struct squib_microvm_state s;
	struct squib_arm64_vcpu *v;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_arm64_vcpu(&s, 0, &v), 0);
	/* Descending keys: every insert goes to the front. */
	for (uint64_t k = SQUIB_STATE_MAX_SYSREGS; k > 0; k--)
		assert_int_equal(squib_arm64_vcpu_set_sysreg(v, k, k), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(v, 0, 0), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(v, 5, 55), 0); /* replace still works */
	assert_int_equal(v->sys_reg_count, SQUIB_STATE_MAX_SYSREGS);
	assert_int_equal(v->sys_regs[0].key, 1);
	assert_int_equal(v->sys_regs[4].value, 55);
	squib_state_free(&s);
}

static void test_should_round_trip_populated_mmds_state(void **state)
{
	static const char *json = "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-12345\","
				  "\"tags\":[1,2,{\"k\":null}],\"unicode\":\"caf\xc3\xa9\"}}}";
	struct squib_microvm_state s, copy;

	(void)state;
	make_compatible(&s);
	assert_int_equal(squib_state_set_mmds(&s, json, true, 3600), 0);
	assert_round_trips(&s, &copy);
	assert_non_null(copy.mmds);
	assert_string_equal(copy.mmds->data_json, json);
	assert_true(copy.mmds->has_token_ttl);
	assert_int_equal(copy.mmds->token_ttl_seconds, 3600);
	squib_state_free(&copy);

	assert_int_equal(squib_state_set_mmds(&s, NULL, false, 77), 0);
	assert_string_equal(s.mmds->data_json, "null");
	assert_round_trips(&s, &copy);
	assert_false(copy.mmds->has_token_ttl);
	squib_state_free(&copy);
	squib_state_free(&s);
}

static void test_should_round_trip_psci_state(void **state)
{
	static const enum squib_psci_state all[] = {SQUIB_PSCI_ON, SQUIB_PSCI_OFF,
						    SQUIB_PSCI_ON_PENDING};
	struct squib_microvm_state s, copy;

	(void)state;
	make_compatible(&s);
	for (size_t i = 1; i < 3; i++)
		assert_int_equal(squib_state_add_arm64_vcpu(&s, i, NULL), 0);
	for (size_t i = 0; i < 3; i++)
		s.arm64_vcpus[i].psci_state = all[i];
	assert_round_trips(&s, &copy);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(copy.arm64_vcpus[i].psci_state, all[i]);
	squib_state_free(&copy);
	squib_state_free(&s);
	assert_string_equal(squib_psci_state_name(SQUIB_PSCI_ON), "On");
	assert_string_equal(squib_psci_state_name(SQUIB_PSCI_OFF), "Off");
	assert_string_equal(squib_psci_state_name(SQUIB_PSCI_ON_PENDING), "OnPending");
}

static void test_should_compare_every_field_in_equal(void **state)
{
	struct squib_microvm_state a, b;

	(void)state;
	make_compatible(&a);
	make_compatible(&b);
	assert_true(squib_state_equal(&a, &b));
	/* NULL and "" are the same for non-optional strings, not for initrd_path. */
	assert_int_equal(squib_state_set_string(&b.vm_info.boot_args, ""), 0);
	assert_true(squib_state_equal(&a, &b));
	assert_int_equal(squib_state_set_string(&b.vm_info.initrd_path, ""), 0);
	assert_false(squib_state_equal(&a, &b));
	assert_int_equal(squib_state_set_string(&b.vm_info.initrd_path, NULL), 0);
	assert_true(squib_state_equal(&a, &b));

	b.arm64_vcpus[0].fp_regs.v[31].hi = 1;
	assert_false(squib_state_equal(&a, &b));
	b.arm64_vcpus[0].fp_regs.v[31].hi = 0;
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&b.arm64_vcpus[0], 1, 0), 0);
	assert_false(squib_state_equal(&a, &b));
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&a.arm64_vcpus[0], 1, 0), 0);
	assert_true(squib_state_equal(&a, &b));

	b.gic.len = 4;
	assert_false(squib_state_equal(&a, &b));
	b.gic.len = 3;
	assert_int_equal(squib_state_set_mmds(&b, "{}", false, 0), 0);
	assert_false(squib_state_equal(&a, &b));
	assert_int_equal(squib_state_set_mmds(&a, "{}", false, 5), 0); /* ttl ignored when absent */
	assert_true(squib_state_equal(&a, &b));
	assert_int_equal(squib_state_add_device(&a, "k", "i", 0, "x", 1), 0);
	assert_int_equal(squib_state_add_device(&b, "k", "i", 0, "y", 1), 0);
	assert_false(squib_state_equal(&a, &b));
	b.devices[0].blob[0] = 'x';
	assert_true(squib_state_equal(&a, &b));
	b.arch = SQUIB_ARCH_X86_64;
	assert_false(squib_state_equal(&a, &b));
	b.arch = SQUIB_ARCH_AARCH64;
	squib_state_free(&a);
	squib_state_free(&b);
}

static void test_should_release_everything_and_keep_arch_on_free(void **state)
{
	struct squib_microvm_state s, empty;

	(void)state;
	make_compatible(&s);
	assert_int_equal(squib_state_set_string(&s.vm_info.kernel_image_path, "/vmlinux"), 0);
	assert_int_equal(squib_state_set_string(&s.vm_info.initrd_path, "/initrd"), 0);
	assert_int_equal(squib_state_add_device(&s, "k", "i", 0, "x", 1), 0);
	assert_int_equal(squib_state_set_mmds(&s, "{}", true, 1), 0);
	squib_state_free(&s);
	squib_state_init(&empty, SQUIB_ARCH_AARCH64);
	assert_int_equal(s.arch, SQUIB_ARCH_AARCH64);
	assert_true(squib_state_equal(&s, &empty));
	assert_null(s.arm64_vcpus);
	squib_state_free(&s); /* idempotent */
	squib_state_free(NULL);
}

static void test_should_copy_and_replace_strings(void **state)
{
	char buf[8] = "abc";
	char *field = NULL;

	(void)state;
	assert_int_equal(squib_state_set_string(&field, buf), 0);
	buf[0] = 'X';
	assert_string_equal(field, "abc");
	assert_int_equal(squib_state_set_string(&field, "second"), 0);
	assert_string_equal(field, "second");
	assert_int_equal(squib_state_set_string(&field, NULL), 0);
	assert_null(field);
	assert_int_equal(squib_state_set_string(NULL, "x"), SQUIB_E_INVALID_ARGUMENT);
}

static void test_should_name_architectures(void **state)
{
	(void)state;
	assert_string_equal(squib_arch_name(SQUIB_ARCH_AARCH64), "aarch64");
	assert_string_equal(squib_arch_name(SQUIB_ARCH_X86_64), "x86_64");
	assert_string_equal(squib_arch_name(SQUIB_ARCH_ANY), "any");
}

static void test_should_compare_and_free_the_memory_description(void **state)
{
	struct squib_mem_region regions[1] = {{0x80000000, 8 * 4096}};
	struct squib_page_extent extents[2] = {{0, 1}, {4, 2}};
	struct squib_memory_layout l = {
		.kind = SQUIB_MEMORY_DIFF,
		.id = {1},
		.parent_id = {2},
		.page_size = 4096,
		.ram_size = 8 * 4096,
		.file_size = 8 * 4096 + 4096 + 4096,
		.present_pages = 3,
		.region_count = 1,
		.regions = regions,
		.extent_count = 2,
		.extents = extents,
	};
	struct squib_microvm_state a, b;

	(void)state;
	make_compatible(&a);
	make_compatible(&b);
	assert_int_equal(squib_state_set_memory(&a, &l, NULL), 0);
	assert_false(squib_state_equal(&a, &b)); /* present vs absent */
	assert_int_equal(squib_state_set_memory(&b, &l, NULL), 0);
	assert_true(squib_state_equal(&a, &b));
	b.memory->extents[1].first_page = 5; /* one extent differs */
	assert_false(squib_state_equal(&a, &b));
	b.memory->extents[1].first_page = 4;
	b.memory->parent_id[0] = 3; /* another parent */
	assert_false(squib_state_equal(&a, &b));
	/* Replacing copies again; freeing releases every array (ASan checks). */
	assert_int_equal(squib_state_set_memory(&b, &l, NULL), 0);
	assert_true(squib_state_equal(&a, &b));
	squib_state_free(&a);
	squib_state_free(&b);
	assert_null(a.memory);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_round_trip_default_microvm_state),
	    cmocka_unit_test(test_should_sort_device_states_by_slot_then_id),
	    cmocka_unit_test(test_should_order_same_slot_devices_bytewise_then_shorter_first),
	    cmocka_unit_test(test_should_reject_duplicate_device),
	    cmocka_unit_test(test_should_reject_zero_vcpu_state),
	    cmocka_unit_test(test_should_reject_smt_enabled),
	    cmocka_unit_test(test_should_reject_empty_gic_blob),
	    cmocka_unit_test(test_should_reject_gic_length_mismatch),
	    cmocka_unit_test(test_should_say_which_shape_is_incompatible),
	    cmocka_unit_test(test_should_accept_32_vcpus_and_reject_33),
	    cmocka_unit_test(test_should_bound_vcpus_at_decoder_limit),
	    cmocka_unit_test(test_should_apply_x86_rules_without_gic),
	    cmocka_unit_test(test_should_compare_every_x86_field_in_equal),
	    cmocka_unit_test(test_should_create_vcpu_like_upstream_new),
	    cmocka_unit_test(test_should_keep_sysregs_sorted_on_insert_and_replace),
	    cmocka_unit_test(test_should_bound_sysregs_per_vcpu),
	    cmocka_unit_test(test_should_round_trip_populated_mmds_state),
	    cmocka_unit_test(test_should_round_trip_psci_state),
	    cmocka_unit_test(test_should_compare_every_field_in_equal),
	    cmocka_unit_test(test_should_release_everything_and_keep_arch_on_free),
	    cmocka_unit_test(test_should_copy_and_replace_strings),
	    cmocka_unit_test(test_should_name_architectures),
	    cmocka_unit_test(test_should_compare_and_free_the_memory_description),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
