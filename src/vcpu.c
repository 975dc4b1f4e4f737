/* SPDX-License-Identifier: Apache-2.0 */
/* vCPU, GIC, MMDS and device capture/restore through backend ops (upstream vcpu_save.rs). */
#include <squib/vcpu.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- calling a backend ---------------------------------------------------- */

static const char *backend_name(const char *name, const char *fallback)
{
	return name ? name : fallback;
}

#define CALL_OP(d, ops, fallback, op, ...)                                                         \
	(squib_error_clear(d), squib_backend_rc((ops)->op(__VA_ARGS__), (d), "%s: %s",             \
						backend_name((ops)->name, (fallback)), #op))

/* Put "what: " in front of the message of a failure already recorded in d. */
static void add_context(struct squib_error_detail *d, const char *what)
{
	char msg[SQUIB_DETAIL_MSG_MAX + 64];

	if (!d || !d->msg[0])
		return;
	snprintf(msg, sizeof(msg), "%s: %s", what, d->msg);
	squib_strlcpy(d->msg, msg, sizeof(d->msg));
}

static bool psci_valid(enum squib_psci_state p)
{
	switch (p) {
	case SQUIB_PSCI_ON:
	case SQUIB_PSCI_OFF:
	case SQUIB_PSCI_ON_PENDING:
		return true;
	}
	return false;
}

static int check_arm64_state(const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	if (!s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL state");
	if (s->arch != SQUIB_ARCH_AARCH64)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "state architecture is %s, not aarch64",
				      squib_arch_name(s->arch));
	if (s->vcpu_count && !s->arm64_vcpus)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "state has %" PRIu32 " vCPUs and no array",
				      s->vcpu_count);
	return 0;
}

/* ---- arm64 vCPU ----------------------------------------------------------- */

#define VCPU_SOURCE "vCPU source"
#define VCPU_TARGET "vCPU target"

enum squib_psci_state squib_normalized_psci_state(uint32_t vcpu_index)
{
	return vcpu_index == 0 ? SQUIB_PSCI_ON : SQUIB_PSCI_OFF;
}

int squib_psci_restore_state(enum squib_psci_restore policy, uint32_t vcpu_index,
			     enum squib_psci_state saved, enum squib_psci_state *out)
{
	if (!out || !psci_valid(saved))
		return SQUIB_E_INVALID_ARGUMENT;
	switch (policy) {
	case SQUIB_PSCI_RESTORE_NORMALIZE:
		*out = squib_normalized_psci_state(vcpu_index);
		return 0;
	case SQUIB_PSCI_RESTORE_AS_SAVED:
		*out = saved;
		return 0;
	}
	return SQUIB_E_INVALID_ARGUMENT;
}

static int check_vcpu_source(const struct squib_arm64_vcpu_source *src,
			     struct squib_error_detail *d)
{
	const struct squib_arm64_vcpu_source_ops *o = src ? src->ops : NULL;

	if (!o)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL vCPU source");
	if (!o->mpidr || !o->read_gp_regs || !o->read_fp_regs || !o->read_sysreg || !o->psci_state)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "vCPU source %s lacks an op",
				      backend_name(o->name, "(unnamed)"));
	return 0;
}

static int check_vcpu_target(const struct squib_arm64_vcpu_target *t,
			     struct squib_error_detail *d)
{
	const struct squib_arm64_vcpu_target_ops *o = t ? t->ops : NULL;

	if (!o)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL vCPU target");
	if (!o->write_gp_regs || !o->write_fp_regs || !o->write_sysreg || !o->set_psci_state)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "vCPU target %s lacks an op",
				      backend_name(o->name, "(unnamed)"));
	return 0;
}

void squib_arm64_vcpu_release(struct squib_arm64_vcpu *v)
{
	if (!v)
		return;
	free(v->sys_regs);
	memset(v, 0, sizeof(*v));
}

int squib_capture_arm64_vcpu_state(const struct squib_arm64_vcpu_source *src,
				   struct squib_arm64_vcpu *out, struct squib_error_detail *d)
{
	const struct squib_arm64_vcpu_source_ops *o;
	const struct squib_sysreg_info *table;
	struct squib_arm64_vcpu v;
	size_t count;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL vCPU");
	memset(out, 0, sizeof(*out));
	if ((rc = check_vcpu_source(src, d)))
		return rc;
	o = src->ops;
	memset(&v, 0, sizeof(v));
	if ((rc = CALL_OP(d, o, VCPU_SOURCE, read_gp_regs, src->ctx, &v.regs, d)) ||
	    (rc = CALL_OP(d, o, VCPU_SOURCE, read_fp_regs, src->ctx, &v.fp_regs, d)))
		goto fail;
	table = squib_sysreg_table(&count);
	for (size_t i = 0; i < count; i++) {
		uint64_t value = 0;
		bool readable = false;

		rc = CALL_OP(d, o, VCPU_SOURCE, read_sysreg, src->ctx, &table[i], &value, &readable,
			     d);
		if (rc) {
			add_context(d, table[i].arch_name);
			goto fail;
		}
		if (readable && (rc = squib_arm64_vcpu_set_sysreg(&v, table[i].key, value))) {
			squib_fail_msg(d, rc, "storing %s", table[i].arch_name);
			goto fail;
		}
	}
	if ((rc = CALL_OP(d, o, VCPU_SOURCE, mpidr, src->ctx, &v.mpidr, d)) ||
	    (rc = CALL_OP(d, o, VCPU_SOURCE, psci_state, src->ctx, &v.psci_state, d)))
		goto fail;
	if (!psci_valid(v.psci_state)) {
		rc = squib_fail_msg(d, SQUIB_E_CAPTURE, "%s: psci_state returned unknown state %d",
				    backend_name(o->name, VCPU_SOURCE), (int)v.psci_state);
		goto fail;
	}
	*out = v;
	return 0;
fail:
	squib_arm64_vcpu_release(&v);
	return rc;
}

/* Everything restore checks before its first write; *psci receives the state to set. */
static int check_vcpu_for_restore(const struct squib_arm64_vcpu *v, uint32_t vcpu_index,
				  enum squib_psci_restore policy, enum squib_psci_state *psci,
				  struct squib_error_detail *d)
{
	if (!v)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL vCPU");
	if (v->sys_reg_count && !v->sys_regs)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "vCPU %" PRIu32 " has %" PRIu32 " sysregs and no array",
				      vcpu_index, v->sys_reg_count);
	for (uint32_t i = 1; i < v->sys_reg_count; i++)
		if (v->sys_regs[i - 1].key >= v->sys_regs[i].key)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "vCPU %" PRIu32 " sysreg keys are not strictly ascending "
					      "(%" PRIu64 " then %" PRIu64 ")",
					      vcpu_index, v->sys_regs[i - 1].key, v->sys_regs[i].key);
	if (squib_psci_restore_state(policy, vcpu_index, v->psci_state, psci))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "vCPU %" PRIu32 ": PSCI policy %d or saved PSCI state %d is unknown",
				      vcpu_index, (int)policy, (int)v->psci_state);
	return 0;
}

/* The writes of a restore; the vCPU and target have been checked. */
static int write_vcpu(const struct squib_arm64_vcpu_target *t, const struct squib_arm64_vcpu *v,
		      uint32_t vcpu_index, enum squib_psci_state psci, struct squib_error_detail *d)
{
	const struct squib_arm64_vcpu_target_ops *o = t->ops;
	int rc;

	if ((rc = CALL_OP(d, o, VCPU_TARGET, write_gp_regs, t->ctx, &v->regs, d)) ||
	    (rc = CALL_OP(d, o, VCPU_TARGET, write_fp_regs, t->ctx, &v->fp_regs, d)))
		return rc;
	for (uint32_t i = 0; i < v->sys_reg_count; i++) {
		const struct squib_sysreg_value *sr = &v->sys_regs[i];
		const struct squib_sysreg_info *info = squib_sysreg_by_key(sr->key);

		/* Upstream: Incompatible at once; what was written stays written. */
		if (!info)
			return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
					      "vCPU %" PRIu32 ": saved sysreg key %" PRIu64
					      " is not in this build's table",
					      vcpu_index, sr->key);
		rc = CALL_OP(d, o, VCPU_TARGET, write_sysreg, t->ctx, info, sr->value, d);
		if (rc) {
			add_context(d, info->arch_name);
			return rc;
		}
	}
	return CALL_OP(d, o, VCPU_TARGET, set_psci_state, t->ctx, psci, d);
}

int squib_restore_arm64_vcpu_state(const struct squib_arm64_vcpu_target *t,
				   const struct squib_arm64_vcpu *v, uint32_t vcpu_index,
				   enum squib_psci_restore policy, struct squib_error_detail *d)
{
	enum squib_psci_state psci;
	int rc;

	if ((rc = check_vcpu_target(t, d)) ||
	    (rc = check_vcpu_for_restore(v, vcpu_index, policy, &psci, d)))
		return rc;
	return write_vcpu(t, v, vcpu_index, psci, d);
}

/* ---- the restore sequencer ---------------------------------------------- */

void squib_restore_session_init(struct squib_restore_session *rs, enum squib_psci_restore psci)
{
	if (!rs)
		return;
	memset(rs, 0, sizeof(*rs));
	rs->psci = psci;
}

int squib_restore_session_mark_vcpu_started(struct squib_restore_session *rs)
{
	if (!rs)
		return SQUIB_E_INVALID_ARGUMENT;
	if (rs->vcpus_started < UINT32_MAX)
		rs->vcpus_started++;
	return 0;
}

static int check_not_started(const struct squib_restore_session *rs, const char *what,
			     struct squib_error_detail *d)
{
	if (!rs)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL restore session");
	if (rs->vcpus_started)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
				      "%s restore after a vCPU started running", what);
	return 0;
}

/* ---- vCPUs of a state ----------------------------------------------------- */

int squib_capture_vcpus(const struct squib_arm64_vcpu_source *srcs, uint32_t n,
			struct squib_microvm_state *s, struct squib_error_detail *d)
{
	struct squib_arm64_vcpu *vcpus;
	char what[32];
	int rc;

	if ((rc = check_arm64_state(s, d)))
		return rc;
	if (!srcs || n == 0 || n > SQUIB_STATE_MAX_VCPUS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "%" PRIu32 " vCPU sources (1..%d, non-NULL)", n,
				      SQUIB_STATE_MAX_VCPUS);
	vcpus = calloc(n, sizeof(*vcpus));
	if (!vcpus)
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < n; i++) {
		if ((rc = squib_capture_arm64_vcpu_state(&srcs[i], &vcpus[i], d))) {
			snprintf(what, sizeof(what), "vCPU %" PRIu32, i);
			add_context(d, what);
			while (i--)
				squib_arm64_vcpu_release(&vcpus[i]);
			free(vcpus);
			return rc;
		}
	}
	for (uint32_t i = 0; i < s->vcpu_count; i++)
		free(s->arm64_vcpus[i].sys_regs);
	free(s->arm64_vcpus);
	s->arm64_vcpus = vcpus;
	s->vcpu_count = n;
	return 0;
}

int squib_restore_vcpus(const struct squib_restore_session *rs,
			const struct squib_arm64_vcpu_target *targets, uint32_t n,
			const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	enum squib_psci_state psci;
	int rc;

	if ((rc = check_not_started(rs, "vCPU", d)) || (rc = check_arm64_state(s, d)))
		return rc;
	if (n && !targets)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL vCPU targets");
	if (n != s->vcpu_count)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
				      "the snapshot has %" PRIu32 " vCPUs, the VM %" PRIu32,
				      s->vcpu_count, n);
	/* Check everything first, so a bad vCPU 3 does not leave vCPUs 0..2 written. */
	for (uint32_t i = 0; i < n; i++)
		if ((rc = check_vcpu_target(&targets[i], d)) ||
		    (rc = check_vcpu_for_restore(&s->arm64_vcpus[i], i, rs->psci, &psci, d)))
			return rc;
	for (uint32_t i = 0; i < n; i++) {
		const struct squib_arm64_vcpu *v = &s->arm64_vcpus[i];

		(void)squib_psci_restore_state(rs->psci, i, v->psci_state, &psci); /* checked */
		if ((rc = write_vcpu(&targets[i], v, i, psci, d)))
			return rc;
	}
	return 0;
}

/* ---- GIC ------------------------------------------------------------------ */

#define GIC_SOURCE "GIC source"
#define GIC_TARGET "GIC target"

int squib_capture_gic(const struct squib_gic_source *src, struct squib_microvm_state *s,
		      struct squib_error_detail *d)
{
	uint8_t *blob = NULL;
	size_t len = 0;
	int rc;

	if ((rc = check_arm64_state(s, d)))
		return rc;
	if (!src || !src->ops || !src->ops->capture)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL GIC source or op");
	rc = CALL_OP(d, src->ops, GIC_SOURCE, capture, src->ctx, &blob, &len, d);
	if (!rc && (!blob || len == 0))
		rc = squib_fail_msg(d, SQUIB_E_CAPTURE, "%s: capture returned an empty GIC blob",
				    backend_name(src->ops->name, GIC_SOURCE));
	if (rc) {
		free(blob);
		return rc;
	}
	free(s->gic.bytes);
	s->gic.bytes = blob;
	s->gic.size = len;
	s->gic.len = len;
	return 0;
}

int squib_restore_gic_blob(struct squib_restore_session *rs, const struct squib_gic_target *t,
			   const void *blob, size_t len, struct squib_error_detail *d)
{
	int rc;

	if ((rc = check_not_started(rs, "GIC", d)))
		return rc;
	if (!t || !t->ops || !t->ops->restore)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL GIC target or op");
	if (len && !blob)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL GIC blob of %zu bytes", len);
	if (len == 0)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE, "empty GIC blob");
	if ((rc = CALL_OP(d, t->ops, GIC_TARGET, restore, t->ctx, blob, len, d)))
		return rc;
	rs->gic_restored = true;
	return 0;
}

int squib_restore_gic(struct squib_restore_session *rs, const struct squib_gic_target *t,
		      const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	int rc;

	if ((rc = check_not_started(rs, "GIC", d)) || (rc = check_arm64_state(s, d)))
		return rc;
	if (s->gic.len != s->gic.size)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
				      "GIC blob declares %" PRIu64 " bytes and holds %zu", s->gic.len,
				      s->gic.size);
	return squib_restore_gic_blob(rs, t, s->gic.bytes, s->gic.size, d);
}

/* ---- MMDS ----------------------------------------------------------------- */

#define MMDS_SOURCE "MMDS source"
#define MMDS_TARGET "MMDS target"

static bool mmds_target_ok(const struct squib_mmds_target *t)
{
	return t->ops && t->ops->restore;
}

int squib_capture_mmds(const struct squib_mmds_source *src, struct squib_microvm_state *s,
		       struct squib_error_detail *d)
{
	struct squib_mmds_state m, *copy = NULL;
	bool enabled = false;
	int rc;

	if (!s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL state");
	if (!src || !src->ops || !src->ops->capture)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL MMDS source or op");
	memset(&m, 0, sizeof(m));
	rc = CALL_OP(d, src->ops, MMDS_SOURCE, capture, src->ctx, &enabled, &m, d);
	if (!rc && enabled) {
		if (!m.data_json && !(m.data_json = strdup("null")))
			rc = squib_fail(d, SQUIB_E_NOMEM);
		else if (!(copy = malloc(sizeof(*copy))))
			rc = squib_fail(d, SQUIB_E_NOMEM);
	}
	if (rc || !enabled) {
		free(m.data_json);
		if (rc)
			return rc;
	} else {
		if (!m.has_token_ttl)
			m.token_ttl_seconds = 0;
		*copy = m;
	}
	if (s->mmds)
		free(s->mmds->data_json);
	free(s->mmds);
	s->mmds = copy;
	return 0;
}

int squib_restore_mmds(const struct squib_mmds_target *t, const struct squib_microvm_state *s,
		       struct squib_error_detail *d)
{
	if (!s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL state");
	if (t && !mmds_target_ok(t))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "MMDS target lacks its op");
	if (!s->mmds)
		return 0; /* nothing saved: the live store stays as it is */
	if (!t)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE, "the snapshot has MMDS, the VM has none");
	return CALL_OP(d, t->ops, MMDS_TARGET, restore, t->ctx, s->mmds, d);
}

/* ---- devices -------------------------------------------------------------- */

#define DEVICE_SOURCE "device source"
#define DEVICE_TARGET "device target"

static bool same_device_key(uint32_t slot_a, const char *id_a, uint32_t slot_b, const char *id_b)
{
	return slot_a == slot_b && strcmp(id_a ? id_a : "", id_b ? id_b : "") == 0;
}

int squib_capture_devices(const struct squib_device_source *srcs, size_t n,
			  struct squib_microvm_state *s, struct squib_error_detail *d)
{
	struct squib_microvm_state tmp;
	struct squib_device_state *old;
	uint32_t old_count;
	int rc = 0;

	if (!s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL state");
	if ((n && !srcs) || n > SQUIB_STATE_MAX_DEVICES)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "%zu device sources (0..%d, non-NULL)",
				      n, SQUIB_STATE_MAX_DEVICES);
	/* Every source well-formed and every key unique before any backend runs. */
	for (size_t i = 0; i < n; i++) {
		const struct squib_device_source *a = &srcs[i];

		if (!a->ops || !a->ops->capture || !a->kind || !a->id)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "device source %zu lacks its op, kind or id", i);
		for (size_t j = 0; j < i; j++)
			if (same_device_key(a->mmio_slot, a->id, srcs[j].mmio_slot, srcs[j].id))
				return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
						      "two devices with id \"%s\" in slot %" PRIu32,
						      a->id, a->mmio_slot);
	}
	squib_state_init(&tmp, s->arch);
	for (size_t i = 0; i < n && !rc; i++) {
		const struct squib_device_source *a = &srcs[i];
		uint8_t *blob = NULL;
		size_t len = 0;

		rc = CALL_OP(d, a->ops, DEVICE_SOURCE, capture, a->ctx, &blob, &len, d);
		if (!rc && len && !blob)
			rc = squib_fail_msg(d, SQUIB_E_CAPTURE, "%s: capture returned NULL for %zu bytes",
					    backend_name(a->ops->name, DEVICE_SOURCE), len);
		if (!rc && (rc = squib_state_add_device(&tmp, a->kind, a->id, a->mmio_slot, blob, len)))
			squib_fail(d, rc);
		if (rc)
			add_context(d, a->id);
		free(blob);
	}
	if (!rc) {
		/* Swap the new list in; tmp then releases the old one. */
		old = s->devices;
		old_count = s->device_count;
		s->devices = tmp.devices;
		s->device_count = tmp.device_count;
		tmp.devices = old;
		tmp.device_count = old_count;
	}
	squib_state_free(&tmp);
	return rc;
}

/* Index of the target for a saved device, or n. */
static size_t find_target(const struct squib_device_target *targets, size_t n,
			  const struct squib_device_state *dev)
{
	for (size_t j = 0; j < n; j++)
		if (same_device_key(targets[j].mmio_slot, targets[j].id, dev->mmio_slot, dev->id))
			return j;
	return n;
}

static int check_device_targets(const struct squib_device_target *targets, size_t n,
				const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	for (size_t i = 0; i < n; i++) {
		const struct squib_device_target *t = &targets[i];

		if (!t->ops || !t->ops->restore || !t->kind || !t->id)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "device target %zu lacks its op, kind or id", i);
		for (size_t j = 0; j < i; j++)
			if (same_device_key(t->mmio_slot, t->id, targets[j].mmio_slot, targets[j].id))
				return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
						      "two device targets with id \"%s\" in slot %" PRIu32,
						      t->id, t->mmio_slot);
	}
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct squib_device_state *dev = &s->devices[i];
		size_t j = find_target(targets, n, dev);

		if (dev->blob_len && !dev->blob)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "saved device %" PRIu32 " has a length and no blob", i);
		if (j == n)
			return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
					      "saved device \"%s\" in slot %" PRIu32 " has no target",
					      dev->id ? dev->id : "", dev->mmio_slot);
		if (strcmp(targets[j].kind, dev->kind ? dev->kind : "") != 0)
			return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
					      "device \"%s\" in slot %" PRIu32 " was saved as %s, is %s",
					      targets[j].id, dev->mmio_slot, dev->kind ? dev->kind : "",
					      targets[j].kind);
	}
	/* Every saved device has its own target; any target left over has no saved state. */
	for (size_t j = 0; n > s->device_count && j < n; j++) {
		bool saved = false;

		for (uint32_t i = 0; i < s->device_count && !saved; i++)
			saved = same_device_key(targets[j].mmio_slot, targets[j].id,
						s->devices[i].mmio_slot, s->devices[i].id);
		if (!saved)
			return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
					      "device \"%s\" in slot %" PRIu32 " is not in the snapshot",
					      targets[j].id, targets[j].mmio_slot);
	}
	return 0;
}

int squib_restore_devices(const struct squib_device_target *targets, size_t n,
			  const struct squib_microvm_state *s, struct squib_error_detail *d)
{
	int rc;

	if (!s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL state");
	if ((n && !targets) || n > SQUIB_STATE_MAX_DEVICES)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "%zu device targets (0..%d, non-NULL)",
				      n, SQUIB_STATE_MAX_DEVICES);
	if (s->device_count && !s->devices)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "state has devices and no array");
	if ((rc = check_device_targets(targets, n, s, d)))
		return rc;
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct squib_device_state *dev = &s->devices[i];
		const struct squib_device_target *t = &targets[find_target(targets, n, dev)];

		rc = CALL_OP(d, t->ops, DEVICE_TARGET, restore, t->ctx, dev->blob, dev->blob_len, d);
		if (rc) {
			add_context(d, t->id);
			return rc;
		}
	}
	return 0;
}
