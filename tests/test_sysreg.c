/* SPDX-License-Identifier: Apache-2.0 */
/* The curated sysreg table: upstream squib-arch sysregs.rs tests plus groups and lookups. */
#include "testutil.h"

#include <string.h>

#include <squib/sysreg.h>

static const struct squib_sysreg_info *table(size_t *n)
{
	const struct squib_sysreg_info *t = squib_sysreg_table(n);

	assert_non_null(t);
	return t;
}

static void test_should_return_unique_registers(void **state)
{
	size_t n;
	const struct squib_sysreg_info *t = table(&n);

	(void)state;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++) {
			assert_string_not_equal(t[i].name, t[j].name);
			assert_string_not_equal(t[i].arch_name, t[j].arch_name);
			assert_false(t[i].op0 == t[j].op0 && t[i].op1 == t[j].op1 &&
				     t[i].crn == t[j].crn && t[i].crm == t[j].crm &&
				     t[i].op2 == t[j].op2);
		}
}

static void test_should_be_non_empty_and_below_two_hundred(void **state)
{
	size_t n;

	(void)state;
	table(&n);
	assert_int_equal(n, SQUIB_SYSREG_COUNT);
	assert_int_equal(n, 47);
	assert_in_range(n, 30, 200);
}

static void test_should_start_with_boot_setup(void **state)
{
	const struct squib_sysreg_info *t = table(NULL);

	(void)state;
	assert_string_equal(t[0].arch_name, "SCTLR_EL1");
	assert_string_equal(t[0].name, "SctlrEl1");
	assert_int_equal(t[0].key, 1);
}

static void test_should_round_trip_key_through_by_key(void **state)
{
	size_t n;
	const struct squib_sysreg_info *t = table(&n);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(t[i].key, i + 1);
		assert_ptr_equal(squib_sysreg_by_key(t[i].key), &t[i]);
	}
}

static void test_should_reject_zero_and_out_of_range_keys(void **state)
{
	(void)state;
	assert_null(squib_sysreg_by_key(0));
	assert_null(squib_sysreg_by_key(48));
	assert_null(squib_sysreg_by_key(1000000));
	assert_null(squib_sysreg_by_key(UINT64_MAX));
	assert_non_null(squib_sysreg_by_key(SQUIB_SYSREG_KEY_MAX));
}

static void test_should_assign_distinct_wire_keys(void **state)
{
	size_t n;
	const struct squib_sysreg_info *t = table(&n);

	(void)state;
	for (size_t i = 0; i < n; i++) {
		assert_in_range(t[i].key, SQUIB_SYSREG_KEY_MIN, SQUIB_SYSREG_KEY_MAX);
		for (size_t j = i + 1; j < n; j++)
			assert_true(t[i].key < t[j].key);
	}
}

static void test_should_place_each_key_block_in_its_group(void **state)
{
	static const struct {
		uint64_t first, last;
		enum squib_sysreg_group group;
		const char *name;
	} blocks[] = {
		{1, 10, SQUIB_SYSREG_GROUP_BOOT, "boot"},
		{11, 18, SQUIB_SYSREG_GROUP_ID, "id"},
		{19, 25, SQUIB_SYSREG_GROUP_TIMER, "timer"},
		{26, 32, SQUIB_SYSREG_GROUP_PMU, "pmu"},
		{33, 36, SQUIB_SYSREG_GROUP_EXCEPTION, "exception"},
		{37, 41, SQUIB_SYSREG_GROUP_MEMORY, "memory"},
		{42, 44, SQUIB_SYSREG_GROUP_FPSIMD, "fpsimd"},
		{45, 47, SQUIB_SYSREG_GROUP_DEBUG, "debug"},
	};

	(void)state;
	for (size_t b = 0; b < sizeof(blocks) / sizeof(blocks[0]); b++) {
		assert_string_equal(squib_sysreg_group_name(blocks[b].group), blocks[b].name);
		for (uint64_t k = blocks[b].first; k <= blocks[b].last; k++)
			assert_int_equal(squib_sysreg_by_key(k)->group, blocks[b].group);
	}
	assert_string_equal(squib_sysreg_group_name((enum squib_sysreg_group)99), "unknown");
}

static void test_should_find_registers_by_either_name(void **state)
{
	const struct squib_sysreg_info *r;

	(void)state;
	r = squib_sysreg_by_name("CntvCtlEl0");
	assert_non_null(r);
	assert_int_equal(r->key, 19);
	assert_ptr_equal(squib_sysreg_by_name("CNTV_CTL_EL0"), r);
	assert_ptr_equal(squib_sysreg_by_name("OSDLR_EL1"), squib_sysreg_by_key(47));
	assert_null(squib_sysreg_by_name("sctlr_el1"));
	assert_null(squib_sysreg_by_name(""));
	assert_null(squib_sysreg_by_name(NULL));
}

/* Spot checks of the (op0, op1, CRn, CRm, op2) encodings against the Arm ARM. */
static void test_should_carry_architectural_encodings(void **state)
{
	const struct squib_sysreg_info *r;

	(void)state;
	r = squib_sysreg_by_name("SP_EL1");
	assert_true(r->op0 == 3 && r->op1 == 4 && r->crn == 4 && r->crm == 1 && r->op2 == 0);
	r = squib_sysreg_by_name("PMCCFILTR_EL0");
	assert_true(r->op0 == 3 && r->op1 == 3 && r->crn == 14 && r->crm == 15 && r->op2 == 7);
	r = squib_sysreg_by_name("MDSCR_EL1");
	assert_true(r->op0 == 2 && r->op1 == 0 && r->crn == 0 && r->crm == 2 && r->op2 == 2);
	r = squib_sysreg_by_name("MPIDR_EL1");
	assert_true(r->op0 == 3 && r->op1 == 0 && r->crn == 0 && r->crm == 0 && r->op2 == 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_should_return_unique_registers),
		cmocka_unit_test(test_should_be_non_empty_and_below_two_hundred),
		cmocka_unit_test(test_should_start_with_boot_setup),
		cmocka_unit_test(test_should_round_trip_key_through_by_key),
		cmocka_unit_test(test_should_reject_zero_and_out_of_range_keys),
		cmocka_unit_test(test_should_assign_distinct_wire_keys),
		cmocka_unit_test(test_should_place_each_key_block_in_its_group),
		cmocka_unit_test(test_should_find_registers_by_either_name),
		cmocka_unit_test(test_should_carry_architectural_encodings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
