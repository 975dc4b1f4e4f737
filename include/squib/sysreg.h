/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/sysreg.h - the curated arm64 system-register table.
 *
 * Wire keys 1..47 are the upstream crate's SysReg constants; key 0 is reserved
 * ("unknown"). The table is append-only: a new register takes the next key and
 * existing keys never change meaning. This is the one place that lists them.
 *
 * Thread-safety: read-only data; safe from any thread.
 */
#ifndef SQUIB_SYSREG_H
#define SQUIB_SYSREG_H

#include <squib/api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum squib_sysreg_group {
	SQUIB_SYSREG_GROUP_BOOT = 0,  /* keys 1-10 */
	SQUIB_SYSREG_GROUP_ID,        /* 11-18 */
	SQUIB_SYSREG_GROUP_TIMER,     /* 19-25 */
	SQUIB_SYSREG_GROUP_PMU,       /* 26-32 */
	SQUIB_SYSREG_GROUP_EXCEPTION, /* 33-36 */
	SQUIB_SYSREG_GROUP_MEMORY,    /* 37-41: memory model / TLB */
	SQUIB_SYSREG_GROUP_FPSIMD,    /* 42-44 */
	SQUIB_SYSREG_GROUP_DEBUG,     /* 45-47 */
};

struct squib_sysreg_info {
	uint64_t key;       /* wire key in squib_arm64_vcpu.sys_regs */
	const char *name;   /* upstream variant name, e.g. "SctlrEl1" */
	const char *arch_name; /* architectural name, e.g. "SCTLR_EL1" */
	enum squib_sysreg_group group;
	/* op0, op1, CRn, CRm, op2 (for KVM ARM64_SYS_REG); from the Arm ARM. */
	uint8_t op0, op1, crn, crm, op2;
};

#define SQUIB_SYSREG_COUNT 47
#define SQUIB_SYSREG_KEY_MIN 1
#define SQUIB_SYSREG_KEY_MAX 47

/* The table in canonical (ascending key) order; *count receives its length. */
SQUIB_API const struct squib_sysreg_info *squib_sysreg_table(size_t *count);

/* Entry for a wire key, or NULL for 0 and unknown keys (upstream from_encoded). */
SQUIB_API const struct squib_sysreg_info *squib_sysreg_by_key(uint64_t key);

/* Entry by upstream or architectural name (exact match), or NULL. */
SQUIB_API const struct squib_sysreg_info *squib_sysreg_by_name(const char *name);

SQUIB_API const char *squib_sysreg_group_name(enum squib_sysreg_group group);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_SYSREG_H */
