/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The loader: recovery, the state file, the pair check, guest memory
 * (squib/guest_memory.h, by backend), then the VM's restore. squib/load.h
 * has the order.
 */
#include <squib/load.h>

#include <string.h>

#include <squib/memfile.h>

#include "chain_internal.h"
#include "guest_memory_internal.h"
#include "pair.h"

/* ---- the state file ------------------------------------------------------------------- */

static int check_arch(const struct squib_microvm_state *s, enum squib_arch want,
		      struct squib_error_detail *d)
{
	if (want == SQUIB_ARCH_ANY || s->arch == want)
		return 0;
	return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE, "the state file is for %s, the target is %s",
			      squib_arch_name(s->arch), squib_arch_name(want));
}

static int load_state(const char *path, enum squib_arch want, struct squib_microvm_state *out,
		      struct squib_envelope_header *hdr, struct squib_error_detail *d)
{
	/* Either magic decodes, so a foreign architecture is Incompatible, not a misread. */
	int rc = squib_state_load_file(path, SQUIB_ARCH_ANY, out, hdr, d);

	if (!rc)
		rc = check_arch(out, want, d);
	return rc ? rc : squib_state_verify_compatible(out, d);
}

int squib_load_state_only(const char *state_path, enum squib_arch expected,
			  struct squib_microvm_state *out, struct squib_envelope_header *hdr,
			  struct squib_error_detail *d)
{
	if (!state_path || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "NULL argument to load_state_only");
	return load_state(state_path, expected, out, hdr, d);
}

static int no_memory_section(const struct squib_load_request *req, struct squib_error_detail *d)
{
	return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
			      "state file %s describes no memory file, so it cannot pair with %s",
			      req->state_path,
			      req->memory_path ? req->memory_path : "a page-fault handler");
}

int squib_load_check(const struct squib_load_request *req, enum squib_arch expected,
		     uint32_t *vcpus, struct squib_error_detail *d)
{
	enum squib_recovery_action action;
	struct squib_microvm_state s;
	struct squib_chain *c = NULL;
	int rc = 0;

	if (!req || !req->state_path || (req->chain_len && !req->chain))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to load_check");
	if (!req->no_recovery && req->memory_path)
		rc = squib_pair_recover(req->state_path, req->memory_path, req->hooks, &action, d);
	squib_state_init(&s, expected);
	if (!rc)
		rc = load_state(req->state_path, expected, &s, NULL, d);
	if (!rc && vcpus)
		*vcpus = s.vcpu_count;
	if (!rc && req->memory_path && !s.memory)
		rc = no_memory_section(req, d);
	if (!rc && req->memory_path)
		rc = squib_gm_open_chain(req->memory_path, req->chain, req->chain_len, s.memory,
					 req->backend, &c, d);
	squib_chain_free(c);
	squib_state_free(&s);
	return rc;
}

/* ---- load ------------------------------------------------------------------------------- */

void squib_load_result_free(struct squib_load_result *r)
{
	if (!r)
		return;
	squib_state_free(&r->state);
	squib_guest_memory_free(r->memory);
	r->memory = NULL;
}

static int check_load_request(const struct squib_vm *vm, const struct squib_load_request *req,
			      struct squib_error_detail *d)
{
	int rc = squib_vm_check(vm, d);

	if (rc)
		return rc;
	if (!req || !req->state_path || (req->chain_len && !req->chain) ||
	    (!req->memory_path && req->backend != SQUIB_BACKEND_UFFD))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "a load needs a state path and a memory path (only the UFFD "
				      "backend may leave the memory file to its handler)");
	if (!squib_gm_backend(req->backend))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "unknown memory backend %d",
				      (int)req->backend);
	return 0;
}

/* The pair, and every older layer of a Diff: one of them may be the base of an
 * in-place rebase that did not commit. */
static int recover(const struct squib_load_request *req, struct squib_load_result *out,
		   struct squib_error_detail *d)
{
	int rc = 0;

	for (size_t i = 0; !rc && i < req->chain_len; i++)
		rc = squib_memfile_rebase_recover(req->chain[i], req->hooks, NULL, d);
	if (!rc && req->memory_path)
		rc = squib_pair_recover(req->state_path, req->memory_path, req->hooks,
					&out->recovery, d);
	return rc;
}

static int open_memory(const struct squib_load_request *req, struct squib_load_result *out,
		       struct squib_error_detail *d)
{
	uint64_t t = squib_now_ns();
	int rc;

	if (!out->state.memory)
		return no_memory_section(req, d);
	rc = squib_guest_memory_open_lazy(req->memory_path, req->chain, req->chain_len,
					  out->state.memory, req->backend, req->lazy, &out->memory,
					  d);
	out->ns.memory = squib_now_ns() - t;
	return rc;
}

/* Lazy backends: boot-critical pages, then the working set, before the VM has the memory. */
static int warm_memory(const struct squib_load_request *req, struct squib_load_result *out,
		       struct squib_error_detail *d)
{
	uint64_t t = squib_now_ns();
	int rc = 0;

	if (!req->lazy || !req->lazy->no_prewarm)
		rc = squib_guest_memory_prewarm(out->memory, &out->state, d);
	if (!rc && req->lazy && req->lazy->prefetch)
		rc = squib_guest_memory_prefetch(out->memory, req->lazy->prefetch, d);
	out->ns.prewarm = squib_now_ns() - t;
	return rc;
}

static int restore(const struct squib_vm *vm, const struct squib_load_request *req,
		   struct squib_load_result *out, bool *given, struct squib_error_detail *d)
{
	uint64_t t = squib_now_ns();
	uint32_t n;
	const struct squib_vm_region *r = squib_guest_memory_regions(out->memory, &n);
	int rc = squib_vm_set_memory(vm, r, n, d);

	*given = rc == 0;
	if (!rc)
		rc = squib_vm_restore(vm, &out->state, d);
	if (!rc && !req->stay_paused)
		rc = squib_vm_resume(vm, d);
	out->ns.restore = squib_now_ns() - t;
	return rc;
}

int squib_load(const struct squib_vm *vm, const struct squib_load_request *req,
	       struct squib_load_result *out, struct squib_error_detail *d)
{
	uint64_t t0 = squib_now_ns(), t;
	bool given = false;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL load result");
	memset(out, 0, sizeof(*out));
	if ((rc = check_load_request(vm, req, d)))
		return rc;
	if (!req->no_recovery)
		rc = recover(req, out, d);
	out->ns.recovery = squib_now_ns() - t0;
	t = squib_now_ns();
	if (!rc)
		rc = load_state(req->state_path, squib_vm_arch(vm), &out->state, &out->header, d);
	out->ns.state_read = squib_now_ns() - t;
	if (!rc)
		rc = open_memory(req, out, d);
	if (!rc)
		rc = warm_memory(req, out, d);
	if (!rc)
		rc = restore(vm, req, out, &given, d);
	if (rc) {
		struct squib_guest_memory *keep = given ? out->memory : NULL;

		if (given)
			out->memory = NULL; /* the VM uses it: the caller frees it after the VM */
		squib_load_result_free(out);
		out->memory = keep;
	}
	out->ns.total = squib_now_ns() - t0;
	return rc;
}
