/* SPDX-License-Identifier: Apache-2.0 */
/* vCPU capture/restore through mock backends: upstream vcpu_save.rs tests plus ordering,
 * error propagation, the as-saved PSCI policy and bad input. */
#include "testutil.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/envelope.h>
#include <squib/state.h>
#include <squib/sysreg.h>
#include <squib/vcpu.h>

#define KEY_SCTLR 1u
#define KEY_TTBR0 2u
#define KEY_TTBR1 3u
#define KEY_MAIR 4u
#define LOG_MAX 256
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ==== mock vCPU source ==================================================== */

enum mock_op { OP_NONE = 0, OP_GP, OP_FP, OP_SYSREG, OP_MPIDR, OP_PSCI };

struct mock_source {
	uint64_t mpidr;
	enum squib_psci_state psci;
	struct squib_arm64_gp_regs gp;
	struct squib_arm64_fp_regs fp;
	bool has[SQUIB_SYSREG_KEY_MAX + 1]; /* readable registers, by key */
	uint64_t val[SQUIB_SYSREG_KEY_MAX + 1];
	/* Failure injection: op (and for OP_SYSREG the key) returning fail_rc. */
	enum mock_op fail_op;
	uint64_t fail_key;
	int fail_rc;
	bool fail_with_message;
	/* What was called: one letter per op (G F S M P), and the sysreg keys asked for. */
	char log[LOG_MAX];
	size_t nlog;
	uint64_t asked[SQUIB_SYSREG_COUNT + 8];
	size_t nasked;
};

static void mlog(char *log, size_t *n, char c)
{
	if (*n + 1 < LOG_MAX) {
		log[(*n)++] = c;
		log[*n] = '\0';
	}
}

static int src_fail(struct mock_source *m, enum mock_op op, uint64_t key,
		    struct squib_error_detail *d)
{
	if (m->fail_op != op || (op == OP_SYSREG && m->fail_key != key))
		return 0;
	if (m->fail_with_message)
		return squib_fail_msg(d, m->fail_rc, "mock source exploded");
	return m->fail_rc;
}

static int src_mpidr(void *ctx, uint64_t *mpidr, struct squib_error_detail *d)
{
	struct mock_source *m = ctx;

	mlog(m->log, &m->nlog, 'M');
	*mpidr = m->mpidr;
	return src_fail(m, OP_MPIDR, 0, d);
}

static int src_gp(void *ctx, struct squib_arm64_gp_regs *regs, struct squib_error_detail *d)
{
	struct mock_source *m = ctx;

	mlog(m->log, &m->nlog, 'G');
	*regs = m->gp;
	return src_fail(m, OP_GP, 0, d);
}

static int src_fp(void *ctx, struct squib_arm64_fp_regs *regs, struct squib_error_detail *d)
{
	struct mock_source *m = ctx;

	mlog(m->log, &m->nlog, 'F');
	*regs = m->fp;
	return src_fail(m, OP_FP, 0, d);
}

static int src_sysreg(void *ctx, const struct squib_sysreg_info *reg, uint64_t *value,
		      bool *readable, struct squib_error_detail *d)
{
	struct mock_source *m = ctx;
	int rc;

	mlog(m->log, &m->nlog, 'S');
	if (m->nasked < ARRAY_SIZE(m->asked))
		m->asked[m->nasked++] = reg->key;
	if ((rc = src_fail(m, OP_SYSREG, reg->key, d)))
		return rc;
	if (reg->key <= SQUIB_SYSREG_KEY_MAX && m->has[reg->key]) {
		*value = m->val[reg->key];
		*readable = true;
	}
	return 0;
}

static int src_psci(void *ctx, enum squib_psci_state *state, struct squib_error_detail *d)
{
	struct mock_source *m = ctx;

	mlog(m->log, &m->nlog, 'P');
	*state = m->psci;
	return src_fail(m, OP_PSCI, 0, d);
}

static const struct squib_arm64_vcpu_source_ops mock_source_ops = {
	.name = "mock-source",
	.mpidr = src_mpidr,
	.read_gp_regs = src_gp,
	.read_fp_regs = src_fp,
	.read_sysreg = src_sysreg,
	.psci_state = src_psci,
};

static struct squib_arm64_vcpu_source source_of(struct mock_source *m)
{
	return (struct squib_arm64_vcpu_source){.ops = &mock_source_ops, .ctx = m};
}

static void source_set(struct mock_source *m, uint64_t key, uint64_t value)
{
	m->has[key] = true;
	m->val[key] = value;
}

/* ==== mock vCPU target ==================================================== */

struct mock_target {
	bool gp_set, fp_set, psci_set;
	struct squib_arm64_gp_regs gp;
	struct squib_arm64_fp_regs fp;
	enum squib_psci_state psci;
	uint64_t keys[64]; /* sysreg writes in call order */
	uint64_t vals[64];
	size_t nsys;
	char log[LOG_MAX];
	size_t nlog;
	uint64_t fail_key; /* write_sysreg of this key fails with fail_rc (0: none) */
	int fail_rc;
};

static int tgt_gp(void *ctx, const struct squib_arm64_gp_regs *regs, struct squib_error_detail *d)
{
	struct mock_target *m = ctx;

	(void)d;
	mlog(m->log, &m->nlog, 'G');
	m->gp = *regs;
	m->gp_set = true;
	return 0;
}

static int tgt_fp(void *ctx, const struct squib_arm64_fp_regs *regs, struct squib_error_detail *d)
{
	struct mock_target *m = ctx;

	(void)d;
	mlog(m->log, &m->nlog, 'F');
	m->fp = *regs;
	m->fp_set = true;
	return 0;
}

static int tgt_sysreg(void *ctx, const struct squib_sysreg_info *reg, uint64_t value,
		      struct squib_error_detail *d)
{
	struct mock_target *m = ctx;

	mlog(m->log, &m->nlog, 'S');
	if (m->fail_key && reg->key == m->fail_key)
		return squib_fail_msg(d, m->fail_rc, "mock target refused");
	if (m->nsys < ARRAY_SIZE(m->keys)) {
		m->keys[m->nsys] = reg->key;
		m->vals[m->nsys++] = value;
	}
	return 0;
}

static int tgt_psci(void *ctx, enum squib_psci_state state, struct squib_error_detail *d)
{
	struct mock_target *m = ctx;

	(void)d;
	mlog(m->log, &m->nlog, 'P');
	m->psci = state;
	m->psci_set = true;
	return 0;
}

static const struct squib_arm64_vcpu_target_ops mock_target_ops = {
	.name = "mock-target",
	.write_gp_regs = tgt_gp,
	.write_fp_regs = tgt_fp,
	.write_sysreg = tgt_sysreg,
	.set_psci_state = tgt_psci,
};

static struct squib_arm64_vcpu_target target_of(struct mock_target *m)
{
	return (struct squib_arm64_vcpu_target){.ops = &mock_target_ops, .ctx = m};
}

/* The value the target received for key, or fail the test. */
static uint64_t target_value(const struct mock_target *m, uint64_t key)
{
	for (size_t i = 0; i < m->nsys; i++)
		if (m->keys[i] == key)
			return m->vals[i];
	fail_msg("key %llu was not written", (unsigned long long)key);
	return 0;
}

/* A vCPU as upstream VcpuState::new(mpidr) makes it (PSCI Off, no sysregs). */
static void vcpu_new(struct squib_arm64_vcpu *v, uint64_t mpidr)
{
	memset(v, 0, sizeof(*v));
	v->mpidr = mpidr;
	v->psci_state = SQUIB_PSCI_OFF;
}

/* Restore v as vCPU index with the upstream policy and return the PSCI state set. */
static enum squib_psci_state restored_psci(const struct squib_arm64_vcpu *v, uint32_t index,
					   enum squib_psci_restore policy)
{
	struct mock_target m = {0};
	struct squib_arm64_vcpu_target t = target_of(&m);

	assert_int_equal(squib_restore_arm64_vcpu_state(&t, v, index, policy, NULL), 0);
	assert_true(m.psci_set);
	return m.psci;
}

/* ==== upstream vcpu_save.rs tests ========================================= */

static void test_should_round_trip_curated_sysregs_via_capture_and_restore(void **state)
{
	struct mock_source src = {.mpidr = 0x42, .psci = SQUIB_PSCI_ON};
	struct squib_arm64_vcpu_source s = source_of(&src);
	struct mock_target tgt = {0};
	struct squib_arm64_vcpu_target t = target_of(&tgt);
	struct squib_arm64_vcpu v;

	(void)state;
	source_set(&src, KEY_SCTLR, 0xCAFEBEEF);
	source_set(&src, KEY_TTBR0, 0xDEADBEAD);
	assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, NULL), 0);
	assert_int_equal(v.mpidr, 0x42);
	assert_int_equal(v.sys_reg_count, 2);

	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 0, SQUIB_PSCI_RESTORE_NORMALIZE, NULL),
			 0);
	assert_int_equal(tgt.nsys, 2);
	assert_int_equal(target_value(&tgt, KEY_SCTLR), 0xCAFEBEEF);
	assert_int_equal(target_value(&tgt, KEY_TTBR0), 0xDEADBEAD);
	squib_arm64_vcpu_release(&v);
}

static void test_should_skip_sys_regs_the_source_returns_none_for(void **state)
{
	struct mock_source src = {0}; /* no sysregs populated */
	struct squib_arm64_vcpu_source s = source_of(&src);
	struct squib_arm64_vcpu v;

	(void)state;
	assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, NULL), 0);
	assert_int_equal(v.sys_reg_count, 0);
	assert_null(v.sys_regs);
	assert_int_equal(src.nasked, SQUIB_SYSREG_COUNT); /* every one was asked */
	squib_arm64_vcpu_release(&v);
}

static void test_should_normalize_psci_state_on_restore_for_bsp_only(void **state)
{
	struct squib_arm64_vcpu v;

	(void)state;
	vcpu_new(&v, 0);
	v.psci_state = SQUIB_PSCI_OFF; /* saved Off, but the BSP is restored On */
	assert_int_equal(restored_psci(&v, 0, SQUIB_PSCI_RESTORE_NORMALIZE), SQUIB_PSCI_ON);
}

static void test_should_normalize_psci_state_to_off_for_secondaries(void **state)
{
	struct squib_arm64_vcpu v;

	(void)state;
	vcpu_new(&v, 1);
	v.psci_state = SQUIB_PSCI_ON; /* saved On, but a secondary is restored Off */
	assert_int_equal(restored_psci(&v, 1, SQUIB_PSCI_RESTORE_NORMALIZE), SQUIB_PSCI_OFF);
	v.psci_state = SQUIB_PSCI_ON_PENDING;
	assert_int_equal(restored_psci(&v, 7, SQUIB_PSCI_RESTORE_NORMALIZE), SQUIB_PSCI_OFF);
}

static void test_should_reject_unknown_sys_reg_keys_on_restore(void **state)
{
	struct squib_arm64_vcpu v;
	struct mock_target tgt = {0};
	struct squib_arm64_vcpu_target t = target_of(&tgt);
	struct squib_error_detail d;

	(void)state;
	vcpu_new(&v, 0);
	/* A key beyond the curated list: emulates a future-version state file. */
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&v, UINT64_MAX, 0x1234), 0);
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 0, SQUIB_PSCI_RESTORE_NORMALIZE, &d),
			 SQUIB_E_INCOMPATIBLE);
	assert_int_equal(d.code, SQUIB_E_INCOMPATIBLE);
	assert_non_null(strstr(d.msg, "18446744073709551615"));
	assert_int_equal(tgt.nsys, 0);
	assert_false(tgt.psci_set);
	squib_arm64_vcpu_release(&v);
}

static void test_should_provide_normalized_psci_helper(void **state)
{
	(void)state;
	assert_int_equal(squib_normalized_psci_state(0), SQUIB_PSCI_ON);
	assert_int_equal(squib_normalized_psci_state(1), SQUIB_PSCI_OFF);
	assert_int_equal(squib_normalized_psci_state(31), SQUIB_PSCI_OFF);
	assert_int_equal(squib_normalized_psci_state(UINT32_MAX), SQUIB_PSCI_OFF);
}

/* ==== ordering ============================================================= */

static void test_should_keep_writes_made_before_an_unknown_key(void **state)
{
	struct squib_arm64_vcpu v;
	struct mock_target tgt = {0};
	struct squib_arm64_vcpu_target t = target_of(&tgt);

	(void)state;
	vcpu_new(&v, 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&v, KEY_SCTLR, 0x11), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&v, KEY_TTBR0, 0x22), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&v, SQUIB_SYSREG_KEY_MAX + 1, 0x33), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&v, UINT64_MAX, 0x44), 0);
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 0, SQUIB_PSCI_RESTORE_NORMALIZE, NULL),
			 SQUIB_E_INCOMPATIBLE);
	/* Upstream's partial restore: GP, FP and the two known keys went in, PSCI did not. */
	assert_string_equal(tgt.log, "GFSS");
	assert_true(tgt.gp_set);
	assert_true(tgt.fp_set);
	assert_int_equal(tgt.nsys, 2);
	assert_int_equal(target_value(&tgt, KEY_SCTLR), 0x11);
	assert_int_equal(target_value(&tgt, KEY_TTBR0), 0x22);
	assert_false(tgt.psci_set);
	squib_arm64_vcpu_release(&v);
}

static void test_should_write_sysregs_in_ascending_key_order(void **state)
{
	static const uint64_t inserted[] = {40, 3, 47, 1, 22, 9, 33, 2};
	struct squib_arm64_vcpu v;
	struct mock_target tgt = {0};
	struct squib_arm64_vcpu_target t = target_of(&tgt);

	(void)state;
	vcpu_new(&v, 0);
	for (size_t i = 0; i < ARRAY_SIZE(inserted); i++)
		assert_int_equal(squib_arm64_vcpu_set_sysreg(&v, inserted[i], inserted[i] * 100), 0);
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 0, SQUIB_PSCI_RESTORE_NORMALIZE, NULL),
			 0);
	assert_int_equal(tgt.nsys, ARRAY_SIZE(inserted));
	for (size_t i = 1; i < tgt.nsys; i++)
		assert_true(tgt.keys[i - 1] < tgt.keys[i]);
	for (size_t i = 0; i < tgt.nsys; i++)
		assert_int_equal(tgt.vals[i], tgt.keys[i] * 100);
	/* GP and FP first, PSCI last. */
	assert_string_equal(tgt.log, "GFSSSSSSSSP");
	squib_arm64_vcpu_release(&v);
}

static void test_should_walk_the_sysreg_table_in_canonical_order_on_capture(void **state)
{
	struct mock_source src = {.mpidr = 3, .psci = SQUIB_PSCI_ON};
	struct squib_arm64_vcpu_source s = source_of(&src);
	const struct squib_sysreg_info *table;
	struct squib_arm64_vcpu v;
	char expect[LOG_MAX];
	size_t count, n = 0;

	(void)state;
	table = squib_sysreg_table(&count);
	for (size_t i = 0; i < count; i++)
		source_set(&src, table[i].key, ~table[i].key);
	assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, NULL), 0);
	/* Every table entry, in table order, asked exactly once. */
	assert_int_equal(src.nasked, count);
	for (size_t i = 0; i < count; i++)
		assert_int_equal(src.asked[i], table[i].key);
	/* GP, FP, the table, then mpidr and PSCI, as upstream. */
	expect[n++] = 'G';
	expect[n++] = 'F';
	for (size_t i = 0; i < count; i++)
		expect[n++] = 'S';
	expect[n++] = 'M';
	expect[n++] = 'P';
	expect[n] = '\0';
	assert_string_equal(src.log, expect);
	/* Stored ascending under the wire keys. */
	assert_int_equal(v.sys_reg_count, count);
	for (uint32_t i = 0; i < v.sys_reg_count; i++) {
		assert_int_equal(v.sys_regs[i].key, table[i].key);
		assert_int_equal(v.sys_regs[i].value, ~table[i].key);
	}
	squib_arm64_vcpu_release(&v);
}

/* ==== register files and PSCI policy ==================================== */

static void test_should_round_trip_register_files_mpidr_and_psci(void **state)
{
	struct mock_source src = {.mpidr = 0x80000101, .psci = SQUIB_PSCI_ON_PENDING};
	struct squib_arm64_vcpu_source s = source_of(&src);
	struct mock_target tgt = {0};
	struct squib_arm64_vcpu_target t = target_of(&tgt);
	struct squib_arm64_vcpu v;

	(void)state;
	for (int i = 0; i < 31; i++)
		src.gp.x[i] = 0x1000 + (uint64_t)i;
	src.gp.sp = 0x5F5F;
	src.gp.pc = 0x40080000;
	src.gp.pstate = 0x3C5;
	for (int i = 0; i < 32; i++) {
		src.fp.v[i].lo = 0xA000 + (uint64_t)i;
		src.fp.v[i].hi = 0xB000 + (uint64_t)i;
	}
	src.fp.fpsr = 0x11;
	src.fp.fpcr = 0x22;
	assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, NULL), 0);
	assert_int_equal(v.mpidr, 0x80000101);
	assert_int_equal(v.psci_state, SQUIB_PSCI_ON_PENDING);
	assert_memory_equal(&v.regs, &src.gp, sizeof(v.regs));
	assert_memory_equal(&v.fp_regs, &src.fp, sizeof(v.fp_regs));

	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 2, SQUIB_PSCI_RESTORE_AS_SAVED, NULL),
			 0);
	assert_memory_equal(&tgt.gp, &src.gp, sizeof(tgt.gp));
	assert_memory_equal(&tgt.fp, &src.fp, sizeof(tgt.fp));
	assert_int_equal(tgt.psci, SQUIB_PSCI_ON_PENDING);
	squib_arm64_vcpu_release(&v);
	assert_null(v.sys_regs);
	squib_arm64_vcpu_release(NULL); /* a no-op */
}

static void test_should_restore_the_saved_psci_state_with_the_as_saved_policy(void **state)
{
	static const enum squib_psci_state all[] = {SQUIB_PSCI_ON, SQUIB_PSCI_OFF,
						    SQUIB_PSCI_ON_PENDING};
	struct squib_arm64_vcpu v;
	enum squib_psci_state out;

	(void)state;
	vcpu_new(&v, 0);
	/* A live guest's secondaries stay On and its offline BSP stays Off (upstream §17.9). */
	for (size_t i = 0; i < ARRAY_SIZE(all); i++) {
		v.psci_state = all[i];
		assert_int_equal(restored_psci(&v, 0, SQUIB_PSCI_RESTORE_AS_SAVED), all[i]);
		assert_int_equal(restored_psci(&v, 1, SQUIB_PSCI_RESTORE_AS_SAVED), all[i]);
		assert_int_equal(restored_psci(&v, 31, SQUIB_PSCI_RESTORE_AS_SAVED), all[i]);
	}
	/* The policy function itself. */
	assert_int_equal(squib_psci_restore_state(SQUIB_PSCI_RESTORE_NORMALIZE, 3, SQUIB_PSCI_ON, &out),
			 0);
	assert_int_equal(out, SQUIB_PSCI_OFF);
	assert_int_equal(squib_psci_restore_state(SQUIB_PSCI_RESTORE_AS_SAVED, 3, SQUIB_PSCI_ON, &out),
			 0);
	assert_int_equal(out, SQUIB_PSCI_ON);
	assert_int_equal(squib_psci_restore_state((enum squib_psci_restore)7, 0, SQUIB_PSCI_ON, &out),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_psci_restore_state(SQUIB_PSCI_RESTORE_AS_SAVED, 0,
						  (enum squib_psci_state)9, &out),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_psci_restore_state(SQUIB_PSCI_RESTORE_AS_SAVED, 0, SQUIB_PSCI_ON, NULL),
			 SQUIB_E_INVALID_ARGUMENT);
}

/* ==== errors ================================================================ */

static void test_should_propagate_a_source_error_and_leave_no_partial_vcpu(void **state)
{
	static const enum mock_op ops[] = {OP_GP, OP_FP, OP_SYSREG, OP_MPIDR, OP_PSCI};
	struct squib_error_detail d;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		struct mock_source src = {.mpidr = 1, .psci = SQUIB_PSCI_ON};
		struct squib_arm64_vcpu_source s = source_of(&src);
		struct squib_arm64_vcpu v;

		source_set(&src, KEY_SCTLR, 1);
		source_set(&src, KEY_TTBR0, 2);
		src.fail_op = ops[i];
		src.fail_key = KEY_TTBR1; /* after two readable registers */
		src.fail_rc = SQUIB_E_CAPTURE;
		src.fail_with_message = true;
		memset(&v, 0x5A, sizeof(v));
		assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, &d), SQUIB_E_CAPTURE);
		assert_int_equal(d.code, SQUIB_E_CAPTURE);
		assert_non_null(strstr(d.msg, "mock source exploded"));
		/* Nothing half-built is handed back. */
		assert_int_equal(v.sys_reg_count, 0);
		assert_null(v.sys_regs);
		assert_int_equal(v.mpidr, 0);
	}
}

static void test_should_name_the_register_and_op_of_a_failure(void **state)
{
	struct mock_source src = {0};
	struct squib_arm64_vcpu_source s = source_of(&src);
	struct squib_arm64_vcpu v;
	struct squib_error_detail d;
	char msg[SQUIB_DETAIL_MSG_MAX + 64];

	(void)state;
	/* A backend that fails without a message: the library names it, the op and the register. */
	src.fail_op = OP_SYSREG;
	src.fail_key = KEY_MAIR;
	src.fail_rc = SQUIB_E_CAPTURE;
	assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, &d), SQUIB_E_CAPTURE);
	assert_string_equal(d.msg, "MAIR_EL1: mock-source: read_sysreg failed");
	squib_error_message(d.code, &d, msg, sizeof(msg));
	assert_string_equal(msg,
			    "snapshot capture/restore failure: MAIR_EL1: mock-source: read_sysreg failed");
	/* A backend's own SQUIB_E_* passes through unchanged. */
	src.fail_rc = SQUIB_E_IO;
	assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, &d), SQUIB_E_IO);
	assert_int_equal(d.code, SQUIB_E_IO);
}

static void test_should_turn_a_backend_errno_into_an_io_error(void **state)
{
	static const int errnos[] = {EIO, EINTR, EPERM};
	struct squib_error_detail d;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(errnos); i++) {
		struct mock_source src = {0};
		struct squib_arm64_vcpu_source s = source_of(&src);
		struct squib_arm64_vcpu v;

		src.fail_op = OP_FP;
		src.fail_rc = -errnos[i];
		assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, &d), SQUIB_E_IO);
		assert_int_equal(d.code, SQUIB_E_IO);
		assert_int_equal(d.os_errno, errnos[i]);
		assert_non_null(strstr(d.msg, "read_fp_regs"));
		assert_null(v.sys_regs);
	}
}

static void test_should_turn_a_foreign_backend_code_into_a_capture_error(void **state)
{
	static const int foreign[] = {1, 4096, -1019, -1500, -5000};
	struct squib_error_detail d;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(foreign); i++) {
		struct mock_source src = {0};
		struct squib_arm64_vcpu_source s = source_of(&src);
		struct squib_arm64_vcpu v;

		src.fail_op = OP_FP;
		src.fail_rc = foreign[i];
		assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, &d), SQUIB_E_CAPTURE);
		assert_int_equal(d.code, SQUIB_E_CAPTURE);
		assert_non_null(strstr(d.msg, "read_fp_regs returned"));
		assert_null(v.sys_regs);
	}
}

static void test_should_refuse_an_unknown_psci_state_from_the_source(void **state)
{
	struct mock_source src = {.psci = (enum squib_psci_state)5};
	struct squib_arm64_vcpu_source s = source_of(&src);
	struct squib_arm64_vcpu v;
	struct squib_error_detail d;

	(void)state;
	source_set(&src, KEY_SCTLR, 1);
	assert_int_equal(squib_capture_arm64_vcpu_state(&s, &v, &d), SQUIB_E_CAPTURE);
	assert_non_null(strstr(d.msg, "unknown state 5"));
	assert_null(v.sys_regs);
	assert_int_equal(v.sys_reg_count, 0);
}

static void test_should_stop_at_a_target_error(void **state)
{
	struct squib_arm64_vcpu v;
	struct mock_target tgt = {.fail_key = KEY_TTBR0, .fail_rc = SQUIB_E_CAPTURE};
	struct squib_arm64_vcpu_target t = target_of(&tgt);
	struct squib_error_detail d;

	(void)state;
	vcpu_new(&v, 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&v, KEY_SCTLR, 1), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&v, KEY_TTBR0, 2), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(&v, KEY_TTBR1, 3), 0);
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 0, SQUIB_PSCI_RESTORE_AS_SAVED, &d),
			 SQUIB_E_CAPTURE);
	assert_string_equal(d.msg, "TTBR0_EL1: mock target refused");
	assert_string_equal(tgt.log, "GFSS");
	assert_int_equal(tgt.nsys, 1);
	assert_false(tgt.psci_set);
	squib_arm64_vcpu_release(&v);
}

static void test_should_refuse_bad_input_without_calling_the_backend(void **state)
{
	static const struct squib_arm64_vcpu_source_ops no_sysreg = {
		.mpidr = src_mpidr, .read_gp_regs = src_gp, .read_fp_regs = src_fp,
		.psci_state = src_psci};
	static const struct squib_arm64_vcpu_target_ops no_psci = {
		.write_gp_regs = tgt_gp, .write_fp_regs = tgt_fp, .write_sysreg = tgt_sysreg};
	struct mock_source src = {0};
	struct squib_arm64_vcpu_source s = source_of(&src), s_bad = {.ops = &no_sysreg, .ctx = &src},
				       s_null = {0};
	struct mock_target tgt = {0};
	struct squib_arm64_vcpu_target t = target_of(&tgt), t_bad = {.ops = &no_psci, .ctx = &tgt},
				       t_null = {0};
	struct squib_sysreg_value unsorted[2] = {{KEY_TTBR0, 1}, {KEY_SCTLR, 2}};
	struct squib_sysreg_value dup[2] = {{KEY_SCTLR, 1}, {KEY_SCTLR, 2}};
	struct squib_arm64_vcpu v, out;
	struct squib_error_detail d;

	(void)state;
	/* Capture. */
	assert_int_equal(squib_capture_arm64_vcpu_state(NULL, &out, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_arm64_vcpu_state(&s_null, &out, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_arm64_vcpu_state(&s_bad, &out, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "lacks an op"));
	assert_int_equal(squib_capture_arm64_vcpu_state(&s, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(src.nlog, 0);

	/* Restore. */
	vcpu_new(&v, 0);
	assert_int_equal(squib_restore_arm64_vcpu_state(NULL, &v, 0, 0, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_restore_arm64_vcpu_state(&t_null, &v, 0, 0, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_restore_arm64_vcpu_state(&t_bad, &v, 0, 0, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, NULL, 0, 0, &d), SQUIB_E_INVALID_ARGUMENT);
	v.sys_reg_count = 2; /* count without an array */
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 0, 0, &d), SQUIB_E_INVALID_ARGUMENT);
	v.sys_regs = unsorted;
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 0, 0, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "strictly ascending"));
	v.sys_regs = dup;
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 0, 0, &d), SQUIB_E_INVALID_ARGUMENT);
	vcpu_new(&v, 0);
	v.psci_state = (enum squib_psci_state)3;
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 1, SQUIB_PSCI_RESTORE_NORMALIZE, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	vcpu_new(&v, 0);
	assert_int_equal(squib_restore_arm64_vcpu_state(&t, &v, 0, (enum squib_psci_restore)2, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(d.code, SQUIB_E_INVALID_ARGUMENT);
	/* The target was never touched. */
	assert_int_equal(tgt.nlog, 0);
}

/* ==== mock GIC, MMDS and devices =========================================== */

/* A blob source: hands back a malloc()ed copy of bytes, or fails after allocating. */
struct mock_blob_source {
	const uint8_t *bytes;
	size_t len;
	int fail_rc;
	bool null_blob; /* report len bytes but no buffer */
	int calls;
};

static int blob_capture(void *ctx, uint8_t **blob, size_t *len, struct squib_error_detail *d)
{
	struct mock_blob_source *m = ctx;

	m->calls++;
	*len = m->len;
	if (m->null_blob)
		return 0;
	*blob = malloc(m->len ? m->len : 1);
	if (!*blob)
		return squib_fail(d, SQUIB_E_NOMEM);
	if (m->len)
		memcpy(*blob, m->bytes, m->len);
	/* On failure the buffer is left for the library to free (ASan checks it does). */
	return m->fail_rc ? squib_fail_msg(d, m->fail_rc, "mock blob source failed") : 0;
}

/* A blob target: keeps a copy of what it was given. */
struct mock_blob_target {
	uint8_t bytes[256];
	size_t len;
	int calls;
	int order; /* value of *counter at the call, to check call order */
	int *counter;
	int fail_rc;
};

static int blob_restore(void *ctx, const uint8_t *blob, size_t len, struct squib_error_detail *d)
{
	struct mock_blob_target *m = ctx;

	m->calls++;
	if (m->counter)
		m->order = (*m->counter)++;
	if (m->fail_rc)
		return squib_fail_msg(d, m->fail_rc, "mock blob target failed");
	assert_true(len <= sizeof(m->bytes));
	if (len)
		memcpy(m->bytes, blob, len);
	m->len = len;
	return 0;
}

static const struct squib_gic_source_ops mock_gic_source_ops = {"mock-gic", blob_capture};
static const struct squib_gic_target_ops mock_gic_target_ops = {"mock-gic", blob_restore};
static const struct squib_device_source_ops mock_dev_source_ops = {"mock-dev", blob_capture};
static const struct squib_device_target_ops mock_dev_target_ops = {"mock-dev", blob_restore};

struct mock_mmds {
	bool enabled;
	const char *json; /* NULL: leave data_json NULL */
	bool has_ttl;
	uint32_t ttl;
	int fail_rc;
	/* target side */
	char live[128];
	int calls;
};

static int mmds_capture(void *ctx, bool *enabled, struct squib_mmds_state *out,
			struct squib_error_detail *d)
{
	struct mock_mmds *m = ctx;

	m->calls++;
	*enabled = m->enabled;
	if (m->json && !(out->data_json = strdup(m->json)))
		return squib_fail(d, SQUIB_E_NOMEM);
	out->has_token_ttl = m->has_ttl;
	out->token_ttl_seconds = m->ttl;
	return m->fail_rc ? squib_fail_msg(d, m->fail_rc, "mock MMDS failed") : 0;
}

static int mmds_restore(void *ctx, const struct squib_mmds_state *st, struct squib_error_detail *d)
{
	struct mock_mmds *m = ctx;

	(void)d;
	m->calls++;
	assert_non_null(st);
	snprintf(m->live, sizeof(m->live), "%s|%d|%u", st->data_json, st->has_token_ttl,
		 st->token_ttl_seconds);
	return 0;
}

static const struct squib_mmds_source_ops mock_mmds_source_ops = {"mock-mmds", mmds_capture};
static const struct squib_mmds_target_ops mock_mmds_target_ops = {"mock-mmds", mmds_restore};

static const uint8_t gic64[64] = {0x47, 0x49, 0x43, 1, 2, 3, 4, 5, 6, 7, 8, 9};

/* ==== GIC and the restore session ========================================== */

static void test_should_capture_and_restore_the_gic_blob(void **state)
{
	struct mock_blob_source src = {.bytes = gic64, .len = sizeof(gic64)};
	struct squib_gic_source gs = {&mock_gic_source_ops, &src};
	struct mock_blob_target tgt = {0};
	struct squib_gic_target gt = {&mock_gic_target_ops, &tgt};
	struct squib_restore_session rs;
	struct squib_microvm_state s;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_arm64_vcpu(&s, 0, NULL), 0);
	assert_int_equal(squib_capture_gic(&gs, &s, NULL), 0);
	assert_int_equal(s.gic.size, sizeof(gic64));
	assert_int_equal(s.gic.len, sizeof(gic64));
	assert_memory_equal(s.gic.bytes, gic64, sizeof(gic64));
	assert_int_equal(squib_state_verify_compatible(&s, NULL), 0);

	squib_restore_session_init(&rs, SQUIB_PSCI_RESTORE_NORMALIZE);
	assert_false(rs.gic_restored);
	assert_int_equal(squib_restore_gic(&rs, &gt, &s, NULL), 0);
	assert_true(rs.gic_restored);
	assert_int_equal(tgt.calls, 1);
	assert_int_equal(tgt.len, sizeof(gic64));
	assert_memory_equal(tgt.bytes, gic64, sizeof(gic64));
	/* Restoring again before any vCPU runs is allowed. */
	assert_int_equal(squib_restore_gic_blob(&rs, &gt, gic64, 3, NULL), 0);
	assert_int_equal(tgt.len, 3);
	squib_state_free(&s);
}

static void test_should_refuse_gic_restore_after_a_vcpu_started(void **state)
{
	struct mock_blob_target tgt = {0};
	struct squib_gic_target gt = {&mock_gic_target_ops, &tgt};
	struct mock_target vt = {0};
	struct squib_arm64_vcpu_target vtarget = target_of(&vt);
	struct squib_restore_session rs;
	struct squib_microvm_state s;
	struct squib_error_detail d;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_arm64_vcpu(&s, 0, NULL), 0);
	assert_int_equal(squib_state_set_gic(&s, gic64, sizeof(gic64)), 0);
	squib_restore_session_init(&rs, SQUIB_PSCI_RESTORE_AS_SAVED);
	assert_int_equal(squib_restore_session_mark_vcpu_started(&rs), 0);
	assert_int_equal(rs.vcpus_started, 1);

	assert_int_equal(squib_restore_gic(&rs, &gt, &s, &d), SQUIB_E_INCOMPATIBLE);
	assert_int_equal(d.code, SQUIB_E_INCOMPATIBLE);
	assert_non_null(strstr(d.msg, "after a vCPU started"));
	assert_int_equal(squib_restore_gic_blob(&rs, &gt, gic64, sizeof(gic64), &d),
			 SQUIB_E_INCOMPATIBLE);
	/* Restoring vCPU registers is refused too. */
	assert_int_equal(squib_restore_vcpus(&rs, &vtarget, 1, &s, &d), SQUIB_E_INCOMPATIBLE);
	/* No backend was called and nothing is recorded as restored. */
	assert_int_equal(tgt.calls, 0);
	assert_int_equal(vt.nlog, 0);
	assert_false(rs.gic_restored);
	assert_int_equal(squib_restore_session_mark_vcpu_started(NULL), SQUIB_E_INVALID_ARGUMENT);
	squib_state_free(&s);
}

static void test_should_refuse_empty_mismatched_or_failed_gic_blobs(void **state)
{
	struct mock_blob_source src = {.bytes = gic64, .len = 0};
	struct squib_gic_source gs = {&mock_gic_source_ops, &src};
	struct mock_blob_target tgt = {0};
	struct squib_gic_target gt = {&mock_gic_target_ops, &tgt};
	struct squib_restore_session rs;
	struct squib_microvm_state s, x86;
	struct squib_error_detail d;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_set_gic(&s, gic64, 3), 0);
	/* An empty blob from the source: Capture, the old blob stays. */
	assert_int_equal(squib_capture_gic(&gs, &s, &d), SQUIB_E_CAPTURE);
	assert_non_null(strstr(d.msg, "empty GIC blob"));
	src.len = 8;
	src.null_blob = true;
	assert_int_equal(squib_capture_gic(&gs, &s, &d), SQUIB_E_CAPTURE);
	/* A failing source that allocated first: its error, the buffer freed, the old blob stays. */
	src.null_blob = false;
	src.fail_rc = SQUIB_E_IO;
	assert_int_equal(squib_capture_gic(&gs, &s, &d), SQUIB_E_IO);
	assert_string_equal(d.msg, "mock blob source failed");
	assert_int_equal(s.gic.size, 3);
	assert_memory_equal(s.gic.bytes, gic64, 3);

	squib_restore_session_init(&rs, SQUIB_PSCI_RESTORE_NORMALIZE);
	s.gic.len = 99; /* verify_compatible's length rule */
	assert_int_equal(squib_restore_gic(&rs, &gt, &s, &d), SQUIB_E_INCOMPATIBLE);
	assert_int_equal(squib_restore_gic_blob(&rs, &gt, gic64, 0, &d), SQUIB_E_INCOMPATIBLE);
	assert_int_equal(squib_restore_gic_blob(&rs, &gt, NULL, 4, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_restore_gic_blob(NULL, &gt, gic64, 4, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_restore_gic_blob(&rs, NULL, gic64, 4, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(tgt.calls, 0);
	/* A failing target: its error, and the session does not count the GIC as restored. */
	tgt.fail_rc = SQUIB_E_CAPTURE;
	assert_int_equal(squib_restore_gic_blob(&rs, &gt, gic64, 4, &d), SQUIB_E_CAPTURE);
	assert_false(rs.gic_restored);

	/* The GIC is arm64's. */
	squib_state_init(&x86, SQUIB_ARCH_X86_64);
	src.fail_rc = 0;
	assert_int_equal(squib_capture_gic(&gs, &x86, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_gic(NULL, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_gic(&gs, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_state_free(&s);
}

/* ==== all vCPUs of a state ================================================= */

static void test_should_capture_all_vcpus_or_none(void **state)
{
	struct mock_source src[3] = {{.mpidr = 0x0, .psci = SQUIB_PSCI_ON},
				     {.mpidr = 0x1, .psci = SQUIB_PSCI_ON},
				     {.mpidr = 0x2, .psci = SQUIB_PSCI_OFF}};
	struct squib_arm64_vcpu_source srcs[3];
	struct squib_microvm_state s;
	struct squib_arm64_vcpu *old;
	struct squib_error_detail d;

	(void)state;
	for (int i = 0; i < 3; i++) {
		srcs[i] = source_of(&src[i]);
		source_set(&src[i], KEY_SCTLR, 0x100 + (uint64_t)i);
	}
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_arm64_vcpu(&s, 99, &old), 0);
	assert_int_equal(squib_arm64_vcpu_set_sysreg(old, KEY_MAIR, 7), 0);

	/* vCPU 2 fails: the state keeps its one old vCPU, nothing half-captured. */
	src[2].fail_op = OP_SYSREG;
	src[2].fail_key = KEY_TTBR0;
	src[2].fail_rc = SQUIB_E_CAPTURE;
	src[2].fail_with_message = true;
	assert_int_equal(squib_capture_vcpus(srcs, 3, &s, &d), SQUIB_E_CAPTURE);
	assert_string_equal(d.msg, "vCPU 2: TTBR0_EL1: mock source exploded");
	assert_int_equal(s.vcpu_count, 1);
	assert_int_equal(s.arm64_vcpus[0].mpidr, 99);
	assert_int_equal(s.arm64_vcpus[0].sys_reg_count, 1);

	src[2].fail_op = OP_NONE;
	assert_int_equal(squib_capture_vcpus(srcs, 3, &s, &d), 0);
	assert_int_equal(s.vcpu_count, 3);
	for (uint32_t i = 0; i < 3; i++) {
		uint64_t v;

		assert_int_equal(s.arm64_vcpus[i].mpidr, i);
		assert_true(squib_arm64_vcpu_get_sysreg(&s.arm64_vcpus[i], KEY_SCTLR, &v));
		assert_int_equal(v, 0x100 + i);
	}
	assert_int_equal(s.arm64_vcpus[2].psci_state, SQUIB_PSCI_OFF);

	/* Bad input. */
	assert_int_equal(squib_capture_vcpus(srcs, 0, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_vcpus(NULL, 1, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_vcpus(srcs, SQUIB_STATE_MAX_VCPUS + 1, &s, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_vcpus(srcs, 1, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(s.vcpu_count, 3);
	squib_state_free(&s);
}

static void test_should_restore_all_vcpus_under_the_session_policy(void **state)
{
	struct mock_target tgt[3];
	struct squib_arm64_vcpu_target targets[3];
	struct squib_restore_session rs;
	struct squib_microvm_state s;
	struct squib_arm64_vcpu *v;
	struct squib_error_detail d;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	for (uint64_t i = 0; i < 3; i++) {
		assert_int_equal(squib_state_add_arm64_vcpu(&s, i, &v), 0);
		v->psci_state = SQUIB_PSCI_ON; /* a live guest: every CPU online */
		assert_int_equal(squib_arm64_vcpu_set_sysreg(v, KEY_SCTLR, 0x200 + i), 0);
	}
	memset(tgt, 0, sizeof(tgt));
	for (int i = 0; i < 3; i++)
		targets[i] = target_of(&tgt[i]);

	/* Upstream's normalisation: BSP On, secondaries Off. */
	squib_restore_session_init(&rs, SQUIB_PSCI_RESTORE_NORMALIZE);
	assert_int_equal(squib_restore_vcpus(&rs, targets, 3, &s, &d), 0);
	assert_int_equal(tgt[0].psci, SQUIB_PSCI_ON);
	assert_int_equal(tgt[1].psci, SQUIB_PSCI_OFF);
	assert_int_equal(tgt[2].psci, SQUIB_PSCI_OFF);
	for (int i = 0; i < 3; i++)
		assert_int_equal(target_value(&tgt[i], KEY_SCTLR), 0x200 + (uint64_t)i);

	/* As saved (KVM): every vCPU stays On. */
	memset(tgt, 0, sizeof(tgt));
	squib_restore_session_init(&rs, SQUIB_PSCI_RESTORE_AS_SAVED);
	assert_int_equal(squib_restore_vcpus(&rs, targets, 3, &s, &d), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(tgt[i].psci, SQUIB_PSCI_ON);

	/* Another vCPU count is a different machine. */
	memset(tgt, 0, sizeof(tgt));
	assert_int_equal(squib_restore_vcpus(&rs, targets, 2, &s, &d), SQUIB_E_INCOMPATIBLE);
	assert_non_null(strstr(d.msg, "3 vCPUs"));
	/* A malformed last vCPU is found before the first one is written. */
	s.arm64_vcpus[2].psci_state = (enum squib_psci_state)4;
	assert_int_equal(squib_restore_vcpus(&rs, targets, 3, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	for (int i = 0; i < 3; i++)
		assert_int_equal(tgt[i].nlog, 0);
	assert_int_equal(squib_restore_vcpus(&rs, NULL, 3, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_restore_vcpus(NULL, targets, 3, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_state_free(&s);
}

/* ==== MMDS ================================================================== */

static void test_should_round_trip_mmds_through_source_and_target(void **state)
{
	static const char json[] = "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-1\"}}}";
	struct mock_mmds src = {.enabled = true, .json = json, .has_ttl = true, .ttl = 3600};
	struct squib_mmds_source ms = {&mock_mmds_source_ops, &src};
	struct mock_mmds tgt = {0};
	struct squib_mmds_target mt = {&mock_mmds_target_ops, &tgt};
	struct squib_microvm_state s;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_capture_mmds(&ms, &s, NULL), 0);
	assert_non_null(s.mmds);
	assert_string_equal(s.mmds->data_json, json);
	assert_true(s.mmds->has_token_ttl);
	assert_int_equal(s.mmds->token_ttl_seconds, 3600);
	assert_int_equal(squib_restore_mmds(&mt, &s, NULL), 0);
	assert_int_equal(tgt.calls, 1);
	assert_string_equal(tgt.live,
			    "{\"latest\":{\"meta-data\":{\"ami-id\":\"ami-1\"}}}|1|3600");

	/* Enabled with no JSON is the empty store; a TTL without its flag is dropped (V1). */
	src.json = NULL;
	src.has_ttl = false;
	assert_int_equal(squib_capture_mmds(&ms, &s, NULL), 0);
	assert_string_equal(s.mmds->data_json, "null");
	assert_false(s.mmds->has_token_ttl);
	assert_int_equal(s.mmds->token_ttl_seconds, 0);
	squib_state_free(&s);
}

static void test_should_leave_the_mmds_target_untouched_without_saved_mmds(void **state)
{
	struct mock_mmds tgt = {.live = "live store"};
	struct squib_mmds_target mt = {&mock_mmds_target_ops, &tgt};
	struct squib_mmds_target broken = {0};
	struct squib_microvm_state s;
	struct squib_error_detail d;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64); /* no MMDS saved */
	assert_int_equal(squib_restore_mmds(&mt, &s, &d), 0);
	assert_int_equal(tgt.calls, 0);
	assert_string_equal(tgt.live, "live store");
	/* A VM without MMDS needs no target for such a state... */
	assert_int_equal(squib_restore_mmds(NULL, &s, &d), 0);
	/* ...but cannot take a state that has MMDS. */
	assert_int_equal(squib_state_set_mmds(&s, "{}", false, 0), 0);
	assert_int_equal(squib_restore_mmds(NULL, &s, &d), SQUIB_E_INCOMPATIBLE);
	assert_int_equal(squib_restore_mmds(&broken, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_restore_mmds(&mt, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(tgt.calls, 0);
	squib_state_free(&s);
}

static void test_should_drop_mmds_when_the_source_reports_it_off(void **state)
{
	struct mock_mmds src = {.enabled = false, .json = "{\"stale\":1}"};
	struct squib_mmds_source ms = {&mock_mmds_source_ops, &src};
	struct squib_microvm_state s;
	struct squib_error_detail d;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_set_mmds(&s, "{\"old\":true}", true, 60), 0);
	/* A failing source (after handing over a string): its error, the state unchanged. */
	src.enabled = true;
	src.fail_rc = SQUIB_E_CAPTURE;
	assert_int_equal(squib_capture_mmds(&ms, &s, &d), SQUIB_E_CAPTURE);
	assert_string_equal(d.msg, "mock MMDS failed");
	assert_string_equal(s.mmds->data_json, "{\"old\":true}");
	/* Off: the state loses its MMDS (and the stray string is freed). */
	src.enabled = false;
	src.fail_rc = 0;
	assert_int_equal(squib_capture_mmds(&ms, &s, &d), 0);
	assert_null(s.mmds);
	assert_int_equal(squib_capture_mmds(NULL, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_mmds(&ms, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_state_free(&s);
}

/* ==== devices =============================================================== */

/* Upstream integration test host_dev_name_round_trips_through_save_restore:
 * [1][u32 LE length]["vmnet-shared-en0-1234"] in slot 1. */
static size_t host_dev_name_blob(uint8_t *out)
{
	static const char name[] = "vmnet-shared-en0-1234";
	uint32_t n = (uint32_t)strlen(name);

	out[0] = 1;
	out[1] = (uint8_t)n;
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)(n >> 16);
	out[4] = (uint8_t)(n >> 24);
	memcpy(out + 5, name, n);
	return 5 + n;
}

static void test_should_round_trip_host_dev_name_device_blob(void **state)
{
	static const uint8_t block_blob[] = {0xB1, 0x0C, 0x00, 0xFF};
	uint8_t net_blob[64];
	size_t net_len = host_dev_name_blob(net_blob);
	struct mock_blob_source net_src = {.bytes = net_blob, .len = net_len};
	struct mock_blob_source blk_src = {.bytes = block_blob, .len = sizeof(block_blob)};
	struct mock_blob_source empty_src = {.len = 0};
	const struct squib_device_source srcs[] = {
		{&mock_dev_source_ops, &net_src, "virtio-net", "eth0", 1},
		{&mock_dev_source_ops, &empty_src, "virtio-vsock", "vsock", 2},
		{&mock_dev_source_ops, &blk_src, "virtio-block", "rootfs", 0},
	};
	int counter = 0;
	struct mock_blob_target net_tgt = {.counter = &counter}, blk_tgt = {.counter = &counter},
				empty_tgt = {.counter = &counter};
	const struct squib_device_target targets[] = {
		{&mock_dev_target_ops, &empty_tgt, "virtio-vsock", "vsock", 2},
		{&mock_dev_target_ops, &net_tgt, "virtio-net", "eth0", 1},
		{&mock_dev_target_ops, &blk_tgt, "virtio-block", "rootfs", 0},
	};
	struct squib_microvm_state s, loaded;
	uint8_t *file;
	size_t file_len;

	(void)state;
	assert_int_equal(net_len, 26);
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_capture_devices(srcs, 3, &s, NULL), 0);
	assert_int_equal(s.device_count, 3);
	assert_string_equal(s.devices[0].id, "rootfs"); /* sorted by slot */
	assert_string_equal(s.devices[1].kind, "virtio-net");
	assert_int_equal(s.devices[1].mmio_slot, 1);
	assert_int_equal(s.devices[1].blob_len, net_len);
	assert_memory_equal(s.devices[1].blob, net_blob, net_len);
	assert_int_equal(s.devices[2].blob_len, 0);

	/* Through the state file and back, then into the targets. */
	assert_int_equal(squib_state_encode(&s, &file, &file_len, NULL), 0);
	assert_int_equal(squib_state_decode(file, file_len, SQUIB_ARCH_AARCH64, &loaded, NULL, NULL),
			 0);
	free(file);
	assert_int_equal(squib_restore_devices(targets, 3, &loaded, NULL), 0);
	assert_int_equal(net_tgt.len, net_len);
	assert_memory_equal(net_tgt.bytes, net_blob, net_len); /* byte for byte */
	assert_int_equal(blk_tgt.len, sizeof(block_blob));
	assert_memory_equal(blk_tgt.bytes, block_blob, sizeof(block_blob));
	assert_int_equal(empty_tgt.calls, 1);
	assert_int_equal(empty_tgt.len, 0);
	/* Restored in the state's (slot, id) order, whatever the targets' order. */
	assert_int_equal(blk_tgt.order, 0);
	assert_int_equal(net_tgt.order, 1);
	assert_int_equal(empty_tgt.order, 2);
	squib_state_free(&loaded);
	squib_state_free(&s);
}

static void test_should_capture_devices_all_or_nothing(void **state)
{
	static const uint8_t b[] = {1, 2, 3};
	struct mock_blob_source ok = {.bytes = b, .len = sizeof(b)};
	struct mock_blob_source bad = {.bytes = b, .len = sizeof(b), .fail_rc = SQUIB_E_CAPTURE};
	struct squib_device_source srcs[] = {
		{&mock_dev_source_ops, &ok, "virtio-block", "rootfs", 0},
		{&mock_dev_source_ops, &bad, "virtio-net", "eth0", 1},
	};
	struct squib_microvm_state s;
	struct squib_error_detail d;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_device(&s, "virtio-rng", "rng", 7, "r", 1), 0);
	/* The second capture fails: the state keeps its old device list. */
	assert_int_equal(squib_capture_devices(srcs, 2, &s, &d), SQUIB_E_CAPTURE);
	assert_string_equal(d.msg, "eth0: mock blob source failed");
	assert_int_equal(s.device_count, 1);
	assert_string_equal(s.devices[0].id, "rng");
	/* Duplicate keys are refused before any backend runs. */
	ok.calls = bad.calls = 0;
	srcs[1].id = "rootfs";
	srcs[1].mmio_slot = 0;
	assert_int_equal(squib_capture_devices(srcs, 2, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(ok.calls + bad.calls, 0);
	srcs[1].kind = NULL;
	assert_int_equal(squib_capture_devices(srcs, 2, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_devices(NULL, 2, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_capture_devices(srcs, 2, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(s.device_count, 1);
	/* Zero sources: a VM without devices. */
	assert_int_equal(squib_capture_devices(NULL, 0, &s, &d), 0);
	assert_int_equal(s.device_count, 0);
	squib_state_free(&s);
}

static void test_should_refuse_device_targets_that_do_not_match_the_snapshot(void **state)
{
	struct mock_blob_target t0 = {0}, t1 = {0};
	struct squib_device_target targets[2] = {
		{&mock_dev_target_ops, &t0, "virtio-block", "rootfs", 0},
		{&mock_dev_target_ops, &t1, "virtio-net", "eth0", 1},
	};
	struct squib_microvm_state s;
	struct squib_error_detail d;

	(void)state;
	squib_state_init(&s, SQUIB_ARCH_AARCH64);
	assert_int_equal(squib_state_add_device(&s, "virtio-block", "rootfs", 0, "a", 1), 0);
	assert_int_equal(squib_state_add_device(&s, "virtio-net", "eth0", 1, "b", 1), 0);
	/* A saved device without a target. */
	assert_int_equal(squib_restore_devices(targets, 1, &s, &d), SQUIB_E_INCOMPATIBLE);
	assert_non_null(strstr(d.msg, "\"eth0\" in slot 1 has no target"));
	/* Same key, other kind. */
	targets[1].kind = "virtio-vsock";
	assert_int_equal(squib_restore_devices(targets, 2, &s, &d), SQUIB_E_INCOMPATIBLE);
	assert_non_null(strstr(d.msg, "saved as virtio-net, is virtio-vsock"));
	targets[1].kind = "virtio-net";
	/* Same id in another slot is another device. */
	targets[1].mmio_slot = 2;
	assert_int_equal(squib_restore_devices(targets, 2, &s, &d), SQUIB_E_INCOMPATIBLE);
	targets[1].mmio_slot = 1;
	/* A target the snapshot does not have. */
	{
		struct squib_device_target three[3] = {targets[0], targets[1], targets[1]};

		three[2].id = "eth1";
		assert_int_equal(squib_restore_devices(three, 3, &s, &d), SQUIB_E_INCOMPATIBLE);
		assert_non_null(strstr(d.msg, "\"eth1\" in slot 1 is not in the snapshot"));
		three[2].id = "eth0"; /* duplicate target key */
		assert_int_equal(squib_restore_devices(three, 3, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	}
	assert_int_equal(squib_restore_devices(NULL, 2, &s, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_restore_devices(targets, 2, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	/* None of that reached a backend. */
	assert_int_equal(t0.calls + t1.calls, 0);
	/* A failing target stops the restore with its error and the device named. */
	t0.fail_rc = SQUIB_E_CAPTURE;
	assert_int_equal(squib_restore_devices(targets, 2, &s, &d), SQUIB_E_CAPTURE);
	assert_string_equal(d.msg, "rootfs: mock blob target failed");
	assert_int_equal(t1.calls, 0);
	squib_state_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* upstream vcpu_save.rs */
		cmocka_unit_test(test_should_round_trip_curated_sysregs_via_capture_and_restore),
		cmocka_unit_test(test_should_skip_sys_regs_the_source_returns_none_for),
		cmocka_unit_test(test_should_normalize_psci_state_on_restore_for_bsp_only),
		cmocka_unit_test(test_should_normalize_psci_state_to_off_for_secondaries),
		cmocka_unit_test(test_should_reject_unknown_sys_reg_keys_on_restore),
		cmocka_unit_test(test_should_provide_normalized_psci_helper),
		/* ordering */
		cmocka_unit_test(test_should_keep_writes_made_before_an_unknown_key),
		cmocka_unit_test(test_should_write_sysregs_in_ascending_key_order),
		cmocka_unit_test(test_should_walk_the_sysreg_table_in_canonical_order_on_capture),
		/* register files and PSCI policy */
		cmocka_unit_test(test_should_round_trip_register_files_mpidr_and_psci),
		cmocka_unit_test(test_should_restore_the_saved_psci_state_with_the_as_saved_policy),
		/* errors */
		cmocka_unit_test(test_should_propagate_a_source_error_and_leave_no_partial_vcpu),
		cmocka_unit_test(test_should_name_the_register_and_op_of_a_failure),
		cmocka_unit_test(test_should_turn_a_backend_errno_into_an_io_error),
		cmocka_unit_test(test_should_turn_a_foreign_backend_code_into_a_capture_error),
		cmocka_unit_test(test_should_refuse_an_unknown_psci_state_from_the_source),
		cmocka_unit_test(test_should_stop_at_a_target_error),
		cmocka_unit_test(test_should_refuse_bad_input_without_calling_the_backend),
		/* GIC and the restore session */
		cmocka_unit_test(test_should_capture_and_restore_the_gic_blob),
		cmocka_unit_test(test_should_refuse_gic_restore_after_a_vcpu_started),
		cmocka_unit_test(test_should_refuse_empty_mismatched_or_failed_gic_blobs),
		/* all vCPUs of a state */
		cmocka_unit_test(test_should_capture_all_vcpus_or_none),
		cmocka_unit_test(test_should_restore_all_vcpus_under_the_session_policy),
		/* MMDS */
		cmocka_unit_test(test_should_round_trip_mmds_through_source_and_target),
		cmocka_unit_test(test_should_leave_the_mmds_target_untouched_without_saved_mmds),
		cmocka_unit_test(test_should_drop_mmds_when_the_source_reports_it_off),
		/* devices */
		cmocka_unit_test(test_should_round_trip_host_dev_name_device_blob),
		cmocka_unit_test(test_should_capture_devices_all_or_nothing),
		cmocka_unit_test(test_should_refuse_device_targets_that_do_not_match_the_snapshot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
