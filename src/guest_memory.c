/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guest memory (squib/guest_memory.h): opening over the memory chain, the
 * lifecycle, the accessors. What each backend does is in the backend table
 * (guest_memory_backends.c); pre-warm, prefetch and record are in
 * guest_memory_warm.c.
 */
#include <squib/guest_memory.h>

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "chain_internal.h"
#include "guest_memory_internal.h"
#include "memfile_internal.h"
#include "pair.h"

/* ---- lifecycle -------------------------------------------------------------------------- */

void squib_guest_memory_free(struct squib_guest_memory *g)
{
	if (!g)
		return;
	if (g->ops && g->ops->destroy)
		g->ops->destroy(g); /* stops serving before the memory goes away */
	for (uint32_t i = 0; g->regions && i < g->region_count; i++)
		if (g->regions[i].host)
			munmap(g->regions[i].host, (size_t)g->regions[i].size);
	free(g->regions);
	free(g);
}

void squib_guest_memory_release(struct squib_guest_memory *g)
{
	if (g && g->ops->stop)
		g->ops->stop(g);
}

int squib_guest_memory_error(const struct squib_guest_memory *g, struct squib_error_detail *d)
{
	return g && g->ops->error ? g->ops->error(g, d) : 0;
}

/* Guest memory for layout l (the newest layer's: its id is the memory's), nothing mapped yet. */
static int new_guest_memory(const struct squib_memory_layout *l, const struct squib_gm_backend *b,
			    struct squib_guest_memory **out, struct squib_error_detail *d)
{
	struct squib_guest_memory *g = calloc(1, sizeof(*g));

	if (!g || !(g->regions = calloc(l->region_count, sizeof(*g->regions)))) {
		free(g);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	g->ops = b;
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

/* Map every region, then populate; *c (NULL without a memory file) may be taken. */
static int fill(struct squib_chain **c, struct squib_guest_memory *g,
		const struct squib_lazy_options *lazy, struct squib_error_detail *d)
{
	int rc = 0;

	for (uint32_t i = 0; !rc && i < g->region_count; i++)
		rc = g->ops->map(g, i, *c, d);
	if (!rc && g->ops->populate)
		rc = g->ops->populate(g, c, lazy, d);
	return rc;
}

/* ---- opening ---------------------------------------------------------------------------- */

static int check_chain_shape(const struct squib_memfile *top, size_t n,
			     struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &top->m.layout;

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

static int check_full_only(const struct squib_memfile *top, const struct squib_gm_backend *b,
			   struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &top->m.layout;

	if (!b || !b->full_only || l->kind == SQUIB_MEMORY_FULL)
		return 0;
	return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
			      "%s is a diff (parent %s): the FILE backend maps only a full memory "
			      "file; rebase the chain first (squib_memfile_rebase) or use COPY",
			      top->path, squib_id_hex(l->parent_id).s);
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

static int check_backend(enum squib_memory_backend b, struct squib_error_detail *d)
{
	if (!squib_gm_backend(b))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "unknown memory backend %d",
				      (int)b);
	return 0;
}

int squib_gm_open_chain(const char *memory_path, const char *const *chain, size_t n,
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
	    (rc = check_full_only(top, squib_gm_backend(backend), d)) ||
	    (rc = check_chain_shape(top, n, d)) || (rc = squib_chain_new(n + 1, &c, d))) {
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
	const struct squib_gm_backend *b = squib_gm_backend(backend);
	struct squib_chain *c = NULL;
	int rc;

	if (!out || (n && !chain) || (!memory_path && (!b || !b->file_optional || !layout || n)))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "NULL argument to guest_memory_open");
	*out = NULL;
	if ((rc = check_backend(backend, d)))
		return rc;
	/* Without a memory file (UFFD: the handler has it) the regions come from the state. */
	if (memory_path)
		rc = squib_gm_open_chain(memory_path, chain, n, layout, backend, &c, d);
	else
		rc = squib_memory_layout_validate(layout, SQUIB_E_INVALID_ARGUMENT, d);
	if (!rc)
		rc = new_guest_memory(c ? squib_chain_layout(c) : layout, b, out, d);
	if (!rc && (rc = fill(&c, *out, lazy, d))) {
		squib_guest_memory_free(*out);
		*out = NULL;
	}
	squib_chain_free(c);
	return rc;
}

/* ---- accessors -------------------------------------------------------------------------- */

enum squib_memory_backend squib_guest_memory_backend(const struct squib_guest_memory *g)
{
	return g ? g->ops->id : SQUIB_BACKEND_COPY;
}

const struct squib_vm_region *squib_guest_memory_regions(const struct squib_guest_memory *g,
							 uint32_t *n)
{
	if (n)
		*n = g ? g->region_count : 0;
	return g ? g->regions : NULL;
}

uint32_t squib_guest_memory_region_count(const struct squib_guest_memory *g)
{
	return g ? g->region_count : 0;
}

const struct squib_vm_region *squib_guest_memory_region(const struct squib_guest_memory *g,
							uint32_t i)
{
	return g && i < g->region_count ? &g->regions[i] : NULL;
}

uint64_t squib_guest_memory_page_size(const struct squib_guest_memory *g)
{
	return g ? g->page_size : 0;
}

uint64_t squib_guest_memory_page_count(const struct squib_guest_memory *g)
{
	return g ? g->page_count : 0;
}

const uint8_t *squib_guest_memory_id(const struct squib_guest_memory *g)
{
	return g ? g->memory_id : NULL;
}

void squib_guest_memory_stats(const struct squib_guest_memory *g,
			      struct squib_guest_memory_stats *out)
{
	if (!out)
		return;
	if (g)
		*out = g->stats;
	else
		memset(out, 0, sizeof(*out));
}

struct squib_pager *squib_guest_memory_pager(const struct squib_guest_memory *g)
{
	return g ? g->pager : NULL;
}

struct squib_uffd_remote *squib_guest_memory_remote(const struct squib_guest_memory *g)
{
	return g ? g->remote : NULL;
}
