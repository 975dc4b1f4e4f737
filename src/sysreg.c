/* SPDX-License-Identifier: Apache-2.0 */
/* The curated arm64 system-register table (upstream squib-arch sysregs.rs, keys 1..47). */
#include <squib/sysreg.h>

#include <string.h>

#include "util.h"

#define G(g) SQUIB_SYSREG_GROUP_##g

/*
 * Index i holds key i + 1, so by_key is a bounds check and an index. The
 * (op0, op1, CRn, CRm, op2) encodings come from the Arm ARM, not from upstream
 * (which only ran on HVF register enums); KVM's ARM64_SYS_REG needs them.
 */
static const struct squib_sysreg_info sysreg_table[] = {
	/* Boot / translation setup */
	{1, "SctlrEl1", "SCTLR_EL1", G(BOOT), 3, 0, 1, 0, 0},
	{2, "Ttbr0El1", "TTBR0_EL1", G(BOOT), 3, 0, 2, 0, 0},
	{3, "Ttbr1El1", "TTBR1_EL1", G(BOOT), 3, 0, 2, 0, 1},
	{4, "MairEl1", "MAIR_EL1", G(BOOT), 3, 0, 10, 2, 0},
	{5, "AmairEl1", "AMAIR_EL1", G(BOOT), 3, 0, 10, 3, 0},
	{6, "TcrEl1", "TCR_EL1", G(BOOT), 3, 0, 2, 0, 2},
	{7, "SpEl1", "SP_EL1", G(BOOT), 3, 4, 4, 1, 0},
	{8, "ElrEl1", "ELR_EL1", G(BOOT), 3, 0, 4, 0, 1},
	{9, "SpsrEl1", "SPSR_EL1", G(BOOT), 3, 0, 4, 0, 0},
	{10, "VbarEl1", "VBAR_EL1", G(BOOT), 3, 0, 12, 0, 0},
	/* ID registers (read-only on the guest side) */
	{11, "IdAa64Mmfr0El1", "ID_AA64MMFR0_EL1", G(ID), 3, 0, 0, 7, 0},
	{12, "IdAa64Mmfr1El1", "ID_AA64MMFR1_EL1", G(ID), 3, 0, 0, 7, 1},
	{13, "IdAa64Pfr0El1", "ID_AA64PFR0_EL1", G(ID), 3, 0, 0, 4, 0},
	{14, "IdAa64Pfr1El1", "ID_AA64PFR1_EL1", G(ID), 3, 0, 0, 4, 1},
	{15, "IdAa64Dfr0El1", "ID_AA64DFR0_EL1", G(ID), 3, 0, 0, 5, 0},
	{16, "IdAa64Isar0El1", "ID_AA64ISAR0_EL1", G(ID), 3, 0, 0, 6, 0},
	{17, "IdAa64Isar1El1", "ID_AA64ISAR1_EL1", G(ID), 3, 0, 0, 6, 1},
	{18, "MpidrEl1", "MPIDR_EL1", G(ID), 3, 0, 0, 0, 5},
	/* Generic timer */
	{19, "CntvCtlEl0", "CNTV_CTL_EL0", G(TIMER), 3, 3, 14, 3, 1},
	{20, "CntvCvalEl0", "CNTV_CVAL_EL0", G(TIMER), 3, 3, 14, 3, 2},
	{21, "CntvOffEl2", "CNTVOFF_EL2", G(TIMER), 3, 4, 14, 0, 3},
	{22, "CntFrqEl0", "CNTFRQ_EL0", G(TIMER), 3, 3, 14, 0, 0},
	{23, "CntKctlEl1", "CNTKCTL_EL1", G(TIMER), 3, 0, 14, 1, 0},
	{24, "CntpCtlEl0", "CNTP_CTL_EL0", G(TIMER), 3, 3, 14, 2, 1},
	{25, "CntpCvalEl0", "CNTP_CVAL_EL0", G(TIMER), 3, 3, 14, 2, 2},
	/* PMU */
	{26, "PmCcntrEl0", "PMCCNTR_EL0", G(PMU), 3, 3, 9, 13, 0},
	{27, "PmCcfiltrEl0", "PMCCFILTR_EL0", G(PMU), 3, 3, 14, 15, 7},
	{28, "PmUserEnrEl0", "PMUSERENR_EL0", G(PMU), 3, 3, 9, 14, 0},
	{29, "PmCrEl0", "PMCR_EL0", G(PMU), 3, 3, 9, 12, 0},
	{30, "PmCntEnSetEl0", "PMCNTENSET_EL0", G(PMU), 3, 3, 9, 12, 1},
	{31, "PmOvsSetEl0", "PMOVSSET_EL0", G(PMU), 3, 3, 9, 14, 3},
	{32, "PmSelrEl0", "PMSELR_EL0", G(PMU), 3, 3, 9, 12, 5},
	/* Exception syndrome */
	{33, "EsrEl1", "ESR_EL1", G(EXCEPTION), 3, 0, 5, 2, 0},
	{34, "FarEl1", "FAR_EL1", G(EXCEPTION), 3, 0, 6, 0, 0},
	{35, "Afsr0El1", "AFSR0_EL1", G(EXCEPTION), 3, 0, 5, 1, 0},
	{36, "Afsr1El1", "AFSR1_EL1", G(EXCEPTION), 3, 0, 5, 1, 1},
	/* Memory model / TLB / thread IDs */
	{37, "ContextIdrEl1", "CONTEXTIDR_EL1", G(MEMORY), 3, 0, 13, 0, 1},
	{38, "TpidrEl0", "TPIDR_EL0", G(MEMORY), 3, 3, 13, 0, 2},
	{39, "TpidrroEl0", "TPIDRRO_EL0", G(MEMORY), 3, 3, 13, 0, 3},
	{40, "TpidrEl1", "TPIDR_EL1", G(MEMORY), 3, 0, 13, 0, 4},
	{41, "ParEl1", "PAR_EL1", G(MEMORY), 3, 0, 7, 4, 0},
	/* FP/SIMD control */
	{42, "Fpcr", "FPCR", G(FPSIMD), 3, 3, 4, 4, 0},
	{43, "Fpsr", "FPSR", G(FPSIMD), 3, 3, 4, 4, 1},
	{44, "CpacrEl1", "CPACR_EL1", G(FPSIMD), 3, 0, 1, 0, 2},
	/* Debug */
	{45, "MdscrEl1", "MDSCR_EL1", G(DEBUG), 2, 0, 0, 2, 2},
	{46, "OslarEl1", "OSLAR_EL1", G(DEBUG), 2, 0, 1, 0, 4},
	{47, "OsdlrEl1", "OSDLR_EL1", G(DEBUG), 2, 0, 1, 3, 4},
};

#undef G

_Static_assert(SQUIB_ARRAY_SIZE(sysreg_table) == SQUIB_SYSREG_COUNT, "sysreg table size");
_Static_assert(SQUIB_SYSREG_KEY_MAX - SQUIB_SYSREG_KEY_MIN + 1 == SQUIB_SYSREG_COUNT,
	       "sysreg keys are dense");

const struct squib_sysreg_info *squib_sysreg_table(size_t *count)
{
	if (count)
		*count = SQUIB_ARRAY_SIZE(sysreg_table);
	return sysreg_table;
}

const struct squib_sysreg_info *squib_sysreg_by_key(uint64_t key)
{
	if (key < SQUIB_SYSREG_KEY_MIN || key > SQUIB_SYSREG_KEY_MAX)
		return NULL;
	return &sysreg_table[key - SQUIB_SYSREG_KEY_MIN];
}

const struct squib_sysreg_info *squib_sysreg_by_name(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < SQUIB_ARRAY_SIZE(sysreg_table); i++) {
		const struct squib_sysreg_info *r = &sysreg_table[i];
		if (!strcmp(r->name, name) || !strcmp(r->arch_name, name))
			return r;
	}
	return NULL;
}

const char *squib_sysreg_group_name(enum squib_sysreg_group group)
{
	switch (group) {
	case SQUIB_SYSREG_GROUP_BOOT:
		return "boot";
	case SQUIB_SYSREG_GROUP_ID:
		return "id";
	case SQUIB_SYSREG_GROUP_TIMER:
		return "timer";
	case SQUIB_SYSREG_GROUP_PMU:
		return "pmu";
	case SQUIB_SYSREG_GROUP_EXCEPTION:
		return "exception";
	case SQUIB_SYSREG_GROUP_MEMORY:
		return "memory";
	case SQUIB_SYSREG_GROUP_FPSIMD:
		return "fpsimd";
	case SQUIB_SYSREG_GROUP_DEBUG:
		return "debug";
	}
	return "unknown";
}
