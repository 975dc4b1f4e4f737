/* SPDX-License-Identifier: Apache-2.0 */
/* The VM interface: op checks, quiesce with rollback, restore order. */
#include <squib/vm.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>

static const char *vm_name(const struct squib_vm *vm)
{
	return vm->ops->name ? vm->ops->name : "VM";
}

/* Call an op of the VM (its ctx first) under the backend rule of squib/error.h. */
#define VM_OP(vm, d, op, ...)                                                                      \
	(squib_error_clear(d),                                                                     \
	 squib_backend_rc((vm)->ops->op((vm)->ctx, __VA_ARGS__), (d), "%s: %s", vm_name(vm), #op))

int squib_vm_check(const struct squib_vm *vm, struct squib_error_detail *d)
{
	const struct squib_vm_ops *o = vm ? vm->ops : NULL;

	if (!o)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM or VM ops");
	const struct {
		bool present;
		const char *name;
	} req[] = {
	    {o->arch != NULL, "arch"},
	    {o->vcpu_count != NULL, "vcpu_count"},
	    {o->pause_begin != NULL, "pause_begin"},
	    {o->pause_wait != NULL, "pause_wait"},
	    {o->resume != NULL, "resume"},
	    {o->capture != NULL, "capture"},
	    {o->restore_irqchip != NULL, "restore_irqchip"},
	    {o->restore_vcpus != NULL, "restore_vcpus"},
	    {o->restore_devices != NULL, "restore_devices"},
	    {o->get_memory != NULL, "get_memory"},
	    {o->set_memory != NULL, "set_memory"},
	};

	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
		if (!req[i].present)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "VM ops \"%s\" lack the required op %s",
					      o->name ? o->name : "?", req[i].name);
	return 0;
}

enum squib_arch squib_vm_arch(const struct squib_vm *vm)
{
	if (squib_vm_check(vm, NULL))
		return SQUIB_ARCH_ANY;
	return vm->ops->arch(vm->ctx);
}

/* ---- quiesce ---------------------------------------------------------------- */

static void deadline_after(uint32_t ms, struct timespec *dl)
{
	clock_gettime(CLOCK_MONOTONIC, dl);
	dl->tv_sec += ms / 1000;
	dl->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (dl->tv_nsec >= 1000000000L) {
		dl->tv_sec++;
		dl->tv_nsec -= 1000000000L;
	}
}

/* Resume vCPUs [0, n): each is tried; the first error is returned. */
static int resume_first(const struct squib_vm *vm, uint32_t n, struct squib_error_detail *d)
{
	int first = 0;

	for (uint32_t i = 0; i < n; i++) {
		int rc = VM_OP(vm, first ? NULL : d, resume, i, first ? NULL : d);

		if (rc && !first)
			first = rc;
	}
	return first;
}

static int wait_all(const struct squib_vm *vm, uint32_t n, const struct timespec *dl,
		    uint32_t timeout_ms, struct squib_error_detail *d)
{
	for (uint32_t i = 0; i < n; i++) {
		int rc = VM_OP(vm, d, pause_wait, i, dl, d);

		if (rc == SQUIB_E_QUIESCE_TIMEOUT)
			return squib_fail_msg(d, rc, "vCPU %u did not ack the pause within %u ms",
					      i, timeout_ms);
		if (rc)
			return rc;
	}
	return 0;
}

int squib_vm_pause(const struct squib_vm *vm, uint32_t timeout_ms, struct squib_error_detail *d)
{
	struct timespec dl;
	uint32_t n, asked;
	int rc = squib_vm_check(vm, d);

	if (rc)
		return rc;
	if (!timeout_ms)
		timeout_ms = SQUIB_QUIESCE_TIMEOUT_MS;
	n = vm->ops->vcpu_count(vm->ctx);
	deadline_after(timeout_ms, &dl);
	/* Ask all first, so the vCPUs stop in parallel and share one deadline. */
	for (asked = 0; asked < n && !rc; asked++)
		rc = VM_OP(vm, d, pause_begin, asked, d);
	if (!rc)
		rc = wait_all(vm, n, &dl, timeout_ms, d);
	if (rc)
		resume_first(vm, asked, NULL); /* all or nothing */
	return rc;
}

int squib_vm_resume(const struct squib_vm *vm, struct squib_error_detail *d)
{
	int rc = squib_vm_check(vm, d);

	return rc ? rc : resume_first(vm, vm->ops->vcpu_count(vm->ctx), d);
}

/* ---- state ------------------------------------------------------------------ */

int squib_vm_capture(const struct squib_vm *vm, struct squib_microvm_state *s,
		     struct squib_error_detail *d)
{
	int rc = squib_vm_check(vm, d);

	if (rc)
		return rc;
	if (!s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL state");
	squib_state_init(s, vm->ops->arch(vm->ctx));
	rc = VM_OP(vm, d, capture, s, d);
	if (!rc && s->memory)
		rc = squib_fail_msg(d, SQUIB_E_CAPTURE, "VM capture set a memory description");
	if (!rc && s->arch != vm->ops->arch(vm->ctx))
		rc = squib_fail_msg(
		    d, SQUIB_E_CAPTURE, "VM capture produced an %s state for an %s VM",
		    squib_arch_name(s->arch), squib_arch_name(vm->ops->arch(vm->ctx)));
	return rc;
}

int squib_vm_restore(const struct squib_vm *vm, const struct squib_microvm_state *s,
		     struct squib_error_detail *d)
{
	int rc = squib_vm_check(vm, d);

	if (rc)
		return rc;
	if (!s)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL state");
	/* A vCPU's timer and interrupt state refer to the controller: it goes first. */
	if ((rc = VM_OP(vm, d, restore_irqchip, s, d)))
		return rc;
	if ((rc = VM_OP(vm, d, restore_vcpus, s, d)))
		return rc;
	return VM_OP(vm, d, restore_devices, s, d);
}

/* ---- memory ----------------------------------------------------------------- */

static int check_regions(const struct squib_vm_region *r, uint32_t n, struct squib_error_detail *d)
{
	if (!r || n == 0 || n > SQUIB_VM_MAX_REGIONS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "VM memory must have 1..%u regions (has %u)",
				      SQUIB_VM_MAX_REGIONS, r ? n : 0);
	for (uint32_t i = 0; i < n; i++) {
		if (!r[i].size || !r[i].host || r[i].size > UINT64_MAX - r[i].guest_addr)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "VM memory region %u (guest 0x%" PRIx64
					      ", size 0x%" PRIx64
					      ") is empty, unmapped or overflows",
					      i, r[i].guest_addr, r[i].size);
		if (i && r[i].guest_addr < r[i - 1].guest_addr + r[i - 1].size)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "VM memory region %u (guest 0x%" PRIx64
					      ") overlaps or precedes region %u",
					      i, r[i].guest_addr, i - 1);
	}
	return 0;
}

int squib_vm_get_memory(const struct squib_vm *vm, const struct squib_vm_region **regions,
			uint32_t *count, struct squib_error_detail *d)
{
	int rc = squib_vm_check(vm, d);

	if (rc)
		return rc;
	if (!regions || !count)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL output");
	*regions = NULL;
	*count = 0;
	if ((rc = VM_OP(vm, d, get_memory, regions, count, d)))
		return rc;
	return check_regions(*regions, *count, d);
}

int squib_vm_set_memory(const struct squib_vm *vm, const struct squib_vm_region *regions,
			uint32_t count, struct squib_error_detail *d)
{
	int rc = squib_vm_check(vm, d);

	if (!rc)
		rc = check_regions(regions, count, d);
	return rc ? rc : VM_OP(vm, d, set_memory, regions, count, d);
}

struct squib_tracker_set *squib_vm_trackers(const struct squib_vm *vm)
{
	struct squib_tracker_set *set;

	if (squib_vm_check(vm, NULL) || !vm->ops->trackers)
		return NULL;
	set = vm->ops->trackers(vm->ctx);
	if (!set || set->count > SQUIB_TRACKER_SET_MAX)
		return NULL;
	for (size_t i = 0; i < set->count; i++)
		if (squib_tracker_is_active(set->trackers[i]))
			return set;
	return NULL;
}
