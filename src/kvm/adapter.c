/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A squib_kvm_vm behind the squib/vm.h ops, so squib_save() and squib_load()
 * drive the real hypervisor (squib/kvm.h, "the squib/vm.h adapter").
 */
#include "kvm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct squib_kvm_adapter {
	struct squib_kvm_vm *vm;
	bool track_dirty_pages;
	char *kernel_image_path;
	char *boot_args;
	uint32_t pause_mask; /* vCPUs asked to pause and not resumed since */
	struct squib_vm_region regions[SQUIB_KVM_MAX_SLOTS];
	struct squib_tracker *kvm_tracker;
	struct squib_tracker *vmm_tracker;
	struct squib_tracker_set set;
};

/* ---- trackers ------------------------------------------------------------------ */

static void free_trackers(struct squib_kvm_adapter *a)
{
	struct squib_tracker_set init = SQUIB_TRACKER_SET_INIT;

	if (a->kvm_tracker && squib_tracker_is_active(a->kvm_tracker))
		squib_tracker_stop(a->kvm_tracker, NULL);
	if (a->vmm_tracker && squib_tracker_is_active(a->vmm_tracker))
		squib_tracker_stop(a->vmm_tracker, NULL);
	squib_tracker_free(a->kvm_tracker);
	squib_tracker_free(a->vmm_tracker);
	a->kvm_tracker = a->vmm_tracker = NULL;
	a->set = init;
}

/* The dirty log plus VMM marks over the VM's RAM, started. */
static int start_trackers(struct squib_kvm_adapter *a, struct squib_error_detail *d)
{
	struct squib_memory_map map = squib_kvm_vm_memory_map(a->vm);
	int rc;

	if (!a->track_dirty_pages || !map.count || a->kvm_tracker)
		return 0;
	if ((rc = squib_tracker_kvm_new(a->vm, &a->kvm_tracker, d)) ||
	    (rc = squib_tracker_vmm_marks_new(&map, &a->vmm_tracker, d)) ||
	    (rc = squib_tracker_start(a->kvm_tracker, d)) ||
	    (rc = squib_tracker_start(a->vmm_tracker, d)) ||
	    (rc = squib_tracker_set_add(&a->set, a->kvm_tracker, d)) ||
	    (rc = squib_tracker_set_add(&a->set, a->vmm_tracker, d)))
		free_trackers(a);
	return rc;
}

/* ---- ops ------------------------------------------------------------------------- */

static enum squib_arch op_arch(void *ctx)
{
	(void)ctx;
	return SQUIB_ARCH_X86_64;
}

static uint32_t op_vcpu_count(void *ctx)
{
	struct squib_kvm_adapter *a = ctx;

	return squib_kvm_vm_vcpu_count(a->vm);
}

static int check_vcpu(struct squib_kvm_adapter *a, uint32_t i, struct squib_error_detail *d)
{
	if (i >= squib_kvm_vm_vcpu_count(a->vm))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "no vCPU %u", i);
	return 0;
}

static int op_pause_begin(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	struct squib_kvm_adapter *a = ctx;
	int rc = check_vcpu(a, i, d);

	if (rc)
		return rc;
	if (!a->pause_mask)
		kvm_pause_request(a->vm, true);
	a->pause_mask |= 1u << i;
	return 0;
}

static int op_pause_wait(void *ctx, uint32_t i, const struct timespec *dl,
			 struct squib_error_detail *d)
{
	struct squib_kvm_adapter *a = ctx;
	int rc = check_vcpu(a, i, d);

	if (rc)
		return rc;
	if ((rc = kvm_pause_wait_vcpu(a->vm, i, dl)) == ECANCELED)
		return squib_kvm_vm_error(a->vm, d);
	if (rc)
		return squib_fail_msg(d, SQUIB_E_QUIESCE_TIMEOUT,
				      "KVM vCPU %u did not acknowledge the pause in time", i);
	return 0;
}

static int op_resume(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	struct squib_kvm_adapter *a = ctx;
	int rc = check_vcpu(a, i, d);

	if (rc)
		return rc;
	a->pause_mask &= ~(1u << i);
	if (a->pause_mask)
		return 0;
	if (!kvm_vm_started(a->vm))
		return squib_kvm_vm_start(a->vm, d);
	kvm_pause_request(a->vm, false);
	return squib_kvm_vm_error(a->vm, d);
}

static int op_capture(void *ctx, struct squib_microvm_state *s, struct squib_error_detail *d)
{
	struct squib_kvm_adapter *a = ctx;
	int rc;

	squib_state_free(s);
	if ((rc = squib_kvm_vm_capture(a->vm, s, d)))
		return rc;
	s->vm_info.track_dirty_pages = a->track_dirty_pages;
	if ((rc = squib_state_set_string(&s->vm_info.kernel_image_path, a->kernel_image_path)) ||
	    (rc = squib_state_set_string(&s->vm_info.boot_args, a->boot_args)))
		return squib_fail(d, rc);
	return 0;
}

static int op_restore_irqchip(void *ctx, const struct squib_microvm_state *s,
			      struct squib_error_detail *d)
{
	return kvm_restore_vm_step(((struct squib_kvm_adapter *)ctx)->vm, s, d);
}

static int op_restore_vcpus(void *ctx, const struct squib_microvm_state *s,
			    struct squib_error_detail *d)
{
	return kvm_restore_vcpus_step(((struct squib_kvm_adapter *)ctx)->vm, s, d);
}

static int op_restore_devices(void *ctx, const struct squib_microvm_state *s,
			      struct squib_error_detail *d)
{
	return kvm_restore_devices_step(((struct squib_kvm_adapter *)ctx)->vm, s, d);
}

static int op_get_memory(void *ctx, const struct squib_vm_region **r, uint32_t *n,
			 struct squib_error_detail *d)
{
	struct squib_kvm_adapter *a = ctx;
	struct squib_memory_map map = squib_kvm_vm_memory_map(a->vm);

	if (!map.count)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "the KVM VM has no RAM");
	for (size_t i = 0; i < map.count; i++)
		a->regions[i] = (struct squib_vm_region){map.regions[i].gpa, map.regions[i].size,
							 map.regions[i].hva};
	*r = a->regions;
	*n = (uint32_t)map.count;
	return 0;
}

static int op_set_memory(void *ctx, const struct squib_vm_region *r, uint32_t n,
			 struct squib_error_detail *d)
{
	struct squib_kvm_adapter *a = ctx;
	int rc = 0;

	if (squib_kvm_vm_memory_map(a->vm).count || kvm_vm_started(a->vm))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "set_memory needs a KVM VM without RAM that never ran");
	if (n > SQUIB_KVM_MAX_SLOTS)
		return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE, "%u RAM regions (at most %d)", n,
				      SQUIB_KVM_MAX_SLOTS);
	/* A failure part-way leaves slots pointing at the caller's memory: the VM
	 * is then unusable, as squib_load documents (discard it before the memory). */
	for (uint32_t i = 0; !rc && i < n; i++)
		rc = squib_kvm_vm_add_ram(a->vm, r[i].guest_addr, r[i].size, r[i].host, NULL, d);
	return rc ? rc : start_trackers(a, d);
}

static struct squib_tracker_set *op_trackers(void *ctx)
{
	struct squib_kvm_adapter *a = ctx;

	return a->kvm_tracker ? &a->set : NULL;
}

static const struct squib_vm_ops adapter_ops = {
    .name = "kvm",
    .arch = op_arch,
    .vcpu_count = op_vcpu_count,
    .pause_begin = op_pause_begin,
    .pause_wait = op_pause_wait,
    .resume = op_resume,
    .capture = op_capture,
    .restore_irqchip = op_restore_irqchip,
    .restore_vcpus = op_restore_vcpus,
    .restore_devices = op_restore_devices,
    .get_memory = op_get_memory,
    .set_memory = op_set_memory,
    .trackers = op_trackers,
};

/* ---- lifecycle ---------------------------------------------------------------------- */

int squib_kvm_adapter_new(struct squib_kvm_vm *vm, const struct squib_kvm_adapter_config *cfg,
			  struct squib_kvm_adapter **out, struct squib_error_detail *d)
{
	struct squib_kvm_adapter *a;
	struct squib_tracker_set init = SQUIB_TRACKER_SET_INIT;
	int rc;

	if (!vm || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to adapter_new");
	*out = NULL;
	if (!(a = calloc(1, sizeof(*a))))
		return squib_fail(d, SQUIB_E_NOMEM);
	a->vm = vm;
	a->set = init;
	if (cfg) {
		a->track_dirty_pages = cfg->track_dirty_pages;
		if ((cfg->kernel_image_path &&
		     !(a->kernel_image_path = strdup(cfg->kernel_image_path))) ||
		    (cfg->boot_args && !(a->boot_args = strdup(cfg->boot_args)))) {
			squib_kvm_adapter_free(a);
			return squib_fail(d, SQUIB_E_NOMEM);
		}
	}
	if ((rc = start_trackers(a, d))) {
		squib_kvm_adapter_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void squib_kvm_adapter_free(struct squib_kvm_adapter *a)
{
	if (!a)
		return;
	free_trackers(a);
	free(a->kernel_image_path);
	free(a->boot_args);
	free(a);
}

struct squib_vm squib_kvm_adapter_vm(struct squib_kvm_adapter *a)
{
	return (struct squib_vm){&adapter_ops, a};
}

struct squib_tracker *squib_kvm_adapter_vmm_tracker(struct squib_kvm_adapter *a)
{
	return a ? a->vmm_tracker : NULL;
}
