/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The loader: recovery, the state file, the pair check, guest memory by
 * backend (COPY or FILE), then the VM's restore. squib/load.h has the order.
 */
#include <squib/load.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/memfile.h>

#include "load_internal.h"
#include "memfile_internal.h"
#include "chain_internal.h"
#include "pair.h"

/* ---- guest memory ------------------------------------------------------------------ */

void squib_guest_memory_free(struct squib_guest_memory *m)
{
	if (!m)
		return;
	squib_pager_free(m->pager);	   /* stops serving before the memory goes away */
	squib_uffd_remote_free(m->remote); /* likewise: unregisters, then closes */
	for (uint32_t i = 0; m->regions && i < m->region_count; i++)
		if (m->regions[i].host)
			munmap(m->regions[i].host, (size_t)m->regions[i].size);
	free(m->regions);
	free(m);
}

void squib_guest_memory_release(struct squib_guest_memory *g)
{
	if (!g)
		return;
	squib_pager_stop(g->pager); /* the pager stays for its statistics */
	squib_uffd_remote_free(g->remote);
	g->remote = NULL;
}

static int check_chain_shape(const struct squib_memfile *top, size_t n,
			     struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &squib_memfile_manifest(top)->layout;

	if (l->kind == SQUIB_MEMORY_FULL && n)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "%s is a full memory file: it takes no chain (%zu given)",
				      top->path, n);
	if (l->kind == SQUIB_MEMORY_DIFF && !n)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "%s is a diff of memory file %s: pass its chain (the full "
				      "base first, then diffs oldest first)",
				      top->path, squib_id_hex(l->parent_id).s);
	return 0;
}

/* Chain chain[0..n) and top (owned by c from here on) over it, into c (new, room for n + 1). */
static int chain_up(struct squib_chain *c, struct squib_memfile *top, const char *const *chain,
		    size_t n, struct squib_error_detail *d)
{
	int rc = 0;

	for (size_t i = 0; !rc && i < n; i++) {
		struct squib_memfile *m;

		if (!chain[i])
			rc = squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "chain[%zu] is NULL", i);
		else if (!(rc = squib_memfile_open(chain[i], &m, d)))
			rc = squib_chain_add(c, squib_chain_layer_file(m, true), d);
	}
	if (rc) {
		squib_memfile_close(top);
		return rc;
	}
	rc = squib_chain_add(c, squib_chain_layer_file(top, true), d);
	return rc ? rc : squib_chain_seal(c, d);
}

static int map_anon(struct squib_vm_region *r, struct squib_error_detail *d)
{
	void *p = mmap(NULL, (size_t)r->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return squib_memfile_io_error(d, errno, "mapping %" PRIu64 " bytes of guest memory",
					      r->size);
	r->host = p;
	return 0;
}

struct copy_job {
	const struct squib_chain *c;
	struct squib_guest_memory *g;
	struct squib_error_detail *d;
	uint32_t region;    /* the region the last run ended in */
	uint64_t region_at; /* its first page */
};

/* One run's pages from its owner into the regions they belong to, in bounded reads. */
static int copy_run(void *ctx, const struct squib_chain_run *r)
{
	struct copy_job *j = ctx;
	uint64_t ps = j->g->page_size, page = r->first_page, end = page + r->page_count;

	if (r->owner == SQUIB_CHAIN_ZERO)
		return 0; /* anonymous memory is zero already */
	while (page < end) {
		uint64_t n, in;
		int rc;

		while (page >= j->region_at + j->g->regions[j->region].size / ps)
			j->region_at += j->g->regions[j->region++].size / ps;
		in = page - j->region_at;
		n = j->g->regions[j->region].size / ps - in;
		if (n > end - page)
			n = end - page;
		if (n > SQUIB_MEMFILE_MAX_WRITE / ps)
			n = SQUIB_MEMFILE_MAX_WRITE / ps;
		if ((rc = squib_chain_read_layer(j->c, r->owner, page, n,
						 (uint8_t *)j->g->regions[j->region].host + in * ps,
						 j->d)))
			return rc;
		j->g->pages_read += n;
		page += n;
	}
	return 0;
}

/* COPY: every page some layer holds, once, from the newest layer holding it. */
static int copy_chain(const struct squib_chain *c, struct squib_guest_memory *g,
		      struct squib_error_detail *d)
{
	struct copy_job j = {c, g, d, 0, 0};

	return squib_chain_for_each_run(c, 0, squib_chain_page_count(c), copy_run, &j);
}

static int map_file(const struct squib_memfile *m, uint32_t i, struct squib_vm_region *r,
		    struct squib_error_detail *d)
{
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);
	void *p;

	if (m->region_off[i] % hp)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "region %u of %s starts at file offset %" PRIu64
				      ", not a multiple of the host page (%" PRIu64
				      "): use the COPY backend",
				      i, m->path, m->region_off[i], hp);
	p = mmap(NULL, (size_t)r->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, m->fd,
		 (off_t)m->region_off[i]);
	if (p == MAP_FAILED)
		return squib_memfile_io_error(d, errno, "mapping region %u of %s", i, m->path);
	r->host = p;
	return 0;
}

/* Guest memory for layout l (the newest layer's: its id is the memory's), nothing mapped yet. */
static int new_guest_memory(const struct squib_memory_layout *l, enum squib_memory_backend backend,
			    struct squib_guest_memory **out, struct squib_error_detail *d)
{
	struct squib_guest_memory *g = calloc(1, sizeof(*g));

	if (!g || !(g->regions = calloc(l->region_count, sizeof(*g->regions)))) {
		free(g);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	g->backend = backend;
	g->region_count = l->region_count;
	g->page_size = l->page_size;
	g->page_count = l->ram_size / l->page_size;
	memcpy(g->memory_id, l->id, sizeof(g->memory_id));
	for (uint32_t i = 0; i < l->region_count; i++)
		g->regions[i] =
		    (struct squib_vm_region){l->regions[i].guest_addr, l->regions[i].size, NULL};
	*out = g;
	return 0;
}

/* LAZY: the pager takes the chain (*c becomes NULL) and serves the regions. */
static int start_pager(struct squib_chain **c, struct squib_guest_memory *g,
		       const struct squib_lazy_options *lazy, struct squib_error_detail *d)
{
	struct squib_pager_region *r = calloc(g->region_count, sizeof(*r));
	struct squib_page_source src;
	uint64_t first = 0;
	int rc;

	if (!r)
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < g->region_count; i++) {
		r[i] = (struct squib_pager_region){g->regions[i].host, g->regions[i].size, first};
		first += g->regions[i].size / g->page_size;
	}
	rc = squib_page_source_chain_owned(*c, &src, d);
	*c = NULL; /* the source owns it now, also on failure */
	if (!rc)
		rc = squib_pager_start(r, g->region_count, src, lazy ? &lazy->pager : NULL,
				       &g->pager, d);
	free(r);
	return rc;
}

/* *c is NULL for UFFD without a memory file (the handler has it). */
static int fill(struct squib_chain **c, struct squib_guest_memory *g,
		const struct squib_lazy_options *lazy, struct squib_error_detail *d)
{
	size_t top = *c ? squib_chain_layer_count(*c) - 1 : 0;
	int rc = 0;

	for (uint32_t i = 0; !rc && i < g->region_count; i++)
		rc = g->backend == SQUIB_BACKEND_FILE
			 ? map_file(squib_chain_memfile(*c, top), i, &g->regions[i], d)
			 : map_anon(&g->regions[i], d);
	if (!rc && g->backend == SQUIB_BACKEND_COPY)
		rc = copy_chain(*c, g, d);
	if (!rc && g->backend == SQUIB_BACKEND_LAZY)
		rc = start_pager(c, g, lazy, d);
	if (!rc && g->backend == SQUIB_BACKEND_UFFD)
		rc = squib_load_start_remote(g, lazy, d);
	return rc;
}

static int check_backend(enum squib_memory_backend b, struct squib_error_detail *d)
{
	if (b != SQUIB_BACKEND_COPY && b != SQUIB_BACKEND_FILE && b != SQUIB_BACKEND_LAZY &&
	    b != SQUIB_BACKEND_UFFD)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "unknown memory backend %d",
				      (int)b);
	return 0;
}

static int check_file_backend(const struct squib_memfile *top, enum squib_memory_backend b,
			      struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &top->m.layout;

	if (b != SQUIB_BACKEND_FILE || l->kind == SQUIB_MEMORY_FULL)
		return 0;
	return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
			      "%s is a diff (parent %s): the FILE backend maps only a full memory "
			      "file; rebase the chain first (squib_memfile_rebase) or use COPY",
			      top->path, squib_id_hex(l->parent_id).s);
}

/* UFFD with no memory file: the regions come from the state's layout. */
static int open_without_file(const struct squib_memory_layout *layout,
			     const struct squib_lazy_options *lazy, struct squib_guest_memory **out,
			     struct squib_error_detail *d)
{
	struct squib_chain *none = NULL;
	int rc = squib_memory_layout_validate(layout, SQUIB_E_INVALID_ARGUMENT, d);

	if (!rc)
		rc = new_guest_memory(layout, SQUIB_BACKEND_UFFD, out, d);
	if (!rc && (rc = fill(&none, *out, lazy, d))) {
		squib_guest_memory_free(*out);
		*out = NULL;
	}
	return rc;
}

/* The memory file bound to layout (NULL: any), over its chain: the newest layer of *out. */
static int open_checked(const char *memory_path, const char *const *chain, size_t n,
			const struct squib_memory_layout *layout, enum squib_memory_backend backend,
			struct squib_chain **out, struct squib_error_detail *d)
{
	struct squib_memfile *top = NULL;
	struct squib_chain *c = NULL;
	int rc;

	*out = NULL;
	if ((rc = squib_memfile_open(memory_path, &top, d)))
		return rc;
	if ((layout && (rc = squib_memfile_check_layout(top, layout, d))) ||
	    (rc = check_file_backend(top, backend, d)) || (rc = check_chain_shape(top, n, d)) ||
	    (rc = squib_chain_new(n + 1, &c, d))) {
		squib_memfile_close(top);
		return rc;
	}
	if ((rc = chain_up(c, top, chain, n, d)))
		squib_chain_free(c);
	else
		*out = c;
	return rc;
}

int squib_guest_memory_open(const char *memory_path, const char *const *chain, size_t n,
			    const struct squib_memory_layout *layout,
			    enum squib_memory_backend backend, struct squib_guest_memory **out,
			    struct squib_error_detail *d)
{
	return squib_guest_memory_open_lazy(memory_path, chain, n, layout, backend, NULL, out, d);
}

int squib_guest_memory_open_lazy(const char *memory_path, const char *const *chain, size_t n,
				 const struct squib_memory_layout *layout,
				 enum squib_memory_backend backend,
				 const struct squib_lazy_options *lazy,
				 struct squib_guest_memory **out, struct squib_error_detail *d)
{
	struct squib_chain *c = NULL;
	int rc;

	if (!out || (n && !chain) ||
	    (!memory_path && (backend != SQUIB_BACKEND_UFFD || !layout || n)))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "NULL argument to guest_memory_open");
	*out = NULL;
	if ((rc = check_backend(backend, d)))
		return rc;
	if (!memory_path)
		return open_without_file(layout, lazy, out, d);
	rc = open_checked(memory_path, chain, n, layout, backend, &c, d);
	if (!rc)
		rc = new_guest_memory(squib_chain_layout(c), backend, out, d);
	if (!rc && (rc = fill(&c, *out, lazy, d))) {
		squib_guest_memory_free(*out);
		*out = NULL;
	}
	squib_chain_free(c);
	return rc;
}

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
		rc = open_checked(req->memory_path, req->chain, req->chain_len, s.memory,
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
	return check_backend(req->backend, d);
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
	int rc = squib_vm_set_memory(vm, out->memory->regions, out->memory->region_count, d);

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
