/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memory chain (squib/chain.h): layers checked as they are added, the
 * owner map built once, reads by run. The chain's rules live here and only
 * here: loading, rebasing, the chain reader and the file page source all go
 * through it.
 */
#include <squib/chain.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chain_internal.h"
#include "memfile_internal.h"

struct squib_chain {
	struct squib_chain_layer *layers; /* [0] the full base, then diffs oldest first */
	size_t n, cap;
	struct squib_chain_run *runs; /* the owner map: sorted, disjoint, owned runs only */
	uint64_t nruns;
	uint64_t page_count, present;
	uint64_t *region_off; /* file offset of each region's first byte */
};

/* ---- file layers ---------------------------------------------------------------------- */

static const struct squib_memfile_manifest *file_manifest(void *ctx)
{
	return &((struct squib_memfile *)ctx)->m;
}

static const char *file_name(void *ctx)
{
	return ((struct squib_memfile *)ctx)->path;
}

static int file_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		     struct squib_error_detail *d)
{
	return squib_memfile_read_pages(ctx, first, count, buf, d);
}

static void file_close(void *ctx)
{
	squib_memfile_close(ctx);
}

static const struct squib_chain_layer_ops file_owned_ops = {
    .manifest = file_manifest, .name = file_name, .read = file_read, .release = file_close};
static const struct squib_chain_layer_ops file_borrowed_ops = {
    .manifest = file_manifest, .name = file_name, .read = file_read, .release = NULL};

struct squib_chain_layer squib_chain_layer_file(struct squib_memfile *m, bool own)
{
	return (struct squib_chain_layer){own ? &file_owned_ops : &file_borrowed_ops, m};
}

struct squib_memfile *squib_chain_memfile(const struct squib_chain *c, size_t i)
{
	const struct squib_chain_layer *l;

	if (!c || i >= c->n)
		return NULL;
	l = &c->layers[i];
	return l->ops == &file_owned_ops || l->ops == &file_borrowed_ops ? l->ctx : NULL;
}

/* ---- the chain's rules ---------------------------------------------------------------- */

static const struct squib_memory_layout *layout_of(const struct squib_chain_layer *l)
{
	return &l->ops->manifest(l->ctx)->layout;
}

static const char *name_of(const struct squib_chain_layer *l)
{
	return l->ops->name(l->ctx);
}

static int check_base(const struct squib_chain_layer *base, struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = layout_of(base);
	char id[33], parent[33];

	if (l->kind == SQUIB_MEMORY_FULL)
		return 0;
	squib_mem_id_hex(l->id, id);
	squib_mem_id_hex(l->parent_id, parent);
	return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
			      "chain base %s (id %s) is a diff of %s, not a full memory file",
			      name_of(base), id, parent);
}

static bool same_geometry(const struct squib_memory_layout *a, const struct squib_memory_layout *b)
{
	return a->page_size == b->page_size && a->region_count == b->region_count &&
	       !memcmp(a->regions, b->regions, a->region_count * sizeof(*a->regions));
}

/* `diff` may be read over `below`: a DIFF of it, with its geometry. */
static int check_link(const struct squib_chain_layer *below, const struct squib_chain_layer *diff,
		      struct squib_error_detail *d)
{
	const struct squib_memory_layout *b = layout_of(below), *l = layout_of(diff);
	char parent[33], cur[33];

	squib_mem_id_hex(l->parent_id, parent);
	squib_mem_id_hex(b->id, cur);
	if (l->kind != SQUIB_MEMORY_DIFF)
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "%s is a full memory file, not a diff to apply on %s (id %s)",
				      name_of(diff), name_of(below), cur);
	if (memcmp(l->parent_id, b->id, SQUIB_MEMORY_ID_SIZE))
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "diff %s has parent id %s, but %s has id %s", name_of(diff),
				      parent, name_of(below), cur);
	if (!same_geometry(b, l))
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "diff %s (parent %s) has another geometry than %s (id %s): "
				      "page size %" PRIu64 " vs %" PRIu64 ", %u vs %u regions",
				      name_of(diff), parent, name_of(below), cur, l->page_size,
				      b->page_size, l->region_count, b->region_count);
	return 0;
}

/* ---- building ------------------------------------------------------------------------- */

int squib_chain_new(size_t n, struct squib_chain **out, struct squib_error_detail *d)
{
	struct squib_chain *c;

	*out = NULL;
	if (!n || n > SQUIB_CHAIN_MAX_LAYERS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "a chain has a base and at most %u layers in all (%zu given)",
				      SQUIB_CHAIN_MAX_LAYERS, n);
	if (!(c = calloc(1, sizeof(*c))) || !(c->layers = calloc(n, sizeof(*c->layers)))) {
		free(c);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	c->cap = n;
	*out = c;
	return 0;
}

static void release_layer(const struct squib_chain_layer *l)
{
	if (l->ops && l->ops->release)
		l->ops->release(l->ctx);
}

int squib_chain_add(struct squib_chain *c, struct squib_chain_layer layer,
		    struct squib_error_detail *d)
{
	const struct squib_memfile_manifest *m;
	int rc;

	if (!layer.ops || !layer.ops->manifest || !layer.ops->name || !layer.ops->read) {
		release_layer(&layer);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "chain: incomplete layer");
	}
	if (c->n == c->cap || c->runs) {
		release_layer(&layer);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "chain: no room for a layer");
	}
	c->layers[c->n++] = layer; /* owned from here on */
	if (!(m = layer.ops->manifest(layer.ctx)))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "chain: %s has no manifest",
				      name_of(&layer));
	/* A layer need not come from squib_memfile_open: its manifest is checked here. */
	if ((rc = squib_memory_layout_validate(&m->layout, SQUIB_E_ENCODING, d)))
		return rc;
	return c->n == 1 ? check_base(&layer, d) : check_link(&c->layers[c->n - 2], &layer, d);
}

void squib_chain_free(struct squib_chain *c)
{
	if (!c)
		return;
	for (size_t i = c->n; i-- > 0;)
		release_layer(&c->layers[i]);
	free(c->layers);
	free(c->runs);
	free(c->region_off);
	free(c);
}

/* ---- the owner map -------------------------------------------------------------------- */

/* Runs under construction: appended in page order, touching runs of one owner merged. */
struct run_list {
	struct squib_chain_run *v;
	uint64_t n;
};

static void push(struct run_list *l, uint64_t first, uint64_t count, uint32_t owner)
{
	struct squib_chain_run *last = l->n ? &l->v[l->n - 1] : NULL;

	if (!count)
		return;
	if (last && last->owner == owner && last->first_page + last->page_count == first)
		last->page_count += count;
	else
		l->v[l->n++] = (struct squib_chain_run){first, count, owner};
}

/*
 * The runs `old` with layer `owner`'s extents laid over them (the newer
 * layer wins). An extent adds itself and splits at most one old run, so
 * out has room for old->n + 2 * extents.
 */
static void overlay(const struct run_list *old, const struct squib_memory_layout *l, uint32_t owner,
		    struct run_list *out)
{
	uint64_t i = 0, j = 0;
	struct squib_chain_run cur = {0};
	bool have = false;

	while (j < l->extent_count || have || i < old->n) {
		const struct squib_page_extent *e = j < l->extent_count ? &l->extents[j] : NULL;
		uint64_t e_end = e ? e->first_page + e->page_count : 0;

		if (!have && i < old->n) {
			cur = old->v[i++];
			have = true;
		}
		if (have && (!e || cur.first_page + cur.page_count <= e->first_page)) {
			push(out, cur.first_page, cur.page_count, cur.owner);
			have = false;
		} else if (!have || cur.first_page >= e_end) {
			push(out, e->first_page, e->page_count, owner);
			j++;
		} else { /* cur overlaps e: keep what lies outside it */
			if (cur.first_page < e->first_page)
				push(out, cur.first_page, e->first_page - cur.first_page,
				     cur.owner);
			if (cur.first_page + cur.page_count > e_end) {
				cur.page_count = cur.first_page + cur.page_count - e_end;
				cur.first_page = e_end;
			} else {
				have = false;
			}
		}
	}
}

static int build_owner_map(struct squib_chain *c, struct squib_error_detail *d)
{
	struct run_list cur = {NULL, 0};

	for (size_t i = 0; i < c->n; i++) {
		const struct squib_memory_layout *l = layout_of(&c->layers[i]);
		struct run_list next = {
		    calloc((size_t)(cur.n + 2 * l->extent_count + 1), sizeof(*next.v)), 0};

		if (!next.v) {
			free(cur.v);
			return squib_fail(d, SQUIB_E_NOMEM);
		}
		overlay(&cur, l, (uint32_t)i, &next);
		free(cur.v);
		cur = next;
	}
	c->runs = cur.v;
	c->nruns = cur.n;
	for (uint64_t k = 0; k < cur.n; k++)
		c->present += cur.v[k].page_count;
	return 0;
}

int squib_chain_seal(struct squib_chain *c, struct squib_error_detail *d)
{
	const struct squib_memory_layout *l;

	if (!c->n || c->n != c->cap || c->runs)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "chain: not every layer added");
	l = layout_of(&c->layers[c->n - 1]);
	c->page_count = l->ram_size / l->page_size;
	if (!(c->region_off = calloc(l->region_count, sizeof(*c->region_off))))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 1; i < l->region_count; i++)
		c->region_off[i] = c->region_off[i - 1] + l->regions[i - 1].size;
	return build_owner_map(c, d);
}

/* ---- opening -------------------------------------------------------------------------- */

int squib_chain_open_layers(const struct squib_chain_layer *layers, size_t n,
			    struct squib_chain **out, struct squib_error_detail *d)
{
	struct squib_chain *c = NULL;
	size_t i = 0;
	int rc;

	if (!out || !layers)
		rc = squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "a chain needs at least a base");
	else
		rc = squib_chain_new(n, &c, d);
	for (; !rc && i < n; i++)
		rc = squib_chain_add(c, layers[i], d);
	for (; layers && i < n; i++) /* the layers not taken are released all the same */
		release_layer(&layers[i]);
	if (!rc)
		rc = squib_chain_seal(c, d);
	if (rc) {
		squib_chain_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int squib_chain_open(const char *const *paths, size_t n, struct squib_chain **out,
		     struct squib_error_detail *d)
{
	struct squib_chain *c = NULL;
	int rc;

	if (!out || !paths || !n)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "a chain needs at least a base");
	*out = NULL;
	rc = squib_chain_new(n, &c, d);
	for (size_t i = 0; !rc && i < n; i++) {
		struct squib_memfile *m;

		if (!paths[i])
			rc = squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "chain[%zu] is NULL", i);
		else if (!(rc = squib_memfile_open(paths[i], &m, d)))
			rc = squib_chain_add(c, squib_chain_layer_file(m, true), d);
	}
	if (!rc)
		rc = squib_chain_seal(c, d);
	if (rc) {
		squib_chain_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

/* ---- geometry and lookups ------------------------------------------------------------- */

size_t squib_chain_layer_count(const struct squib_chain *c)
{
	return c ? c->n : 0;
}

const struct squib_memfile_manifest *squib_chain_layer_manifest(const struct squib_chain *c,
								size_t i)
{
	return c && i < c->n ? c->layers[i].ops->manifest(c->layers[i].ctx) : NULL;
}

const char *squib_chain_layer_name(const struct squib_chain *c, size_t i)
{
	return c && i < c->n ? name_of(&c->layers[i]) : NULL;
}

const struct squib_memory_layout *squib_chain_layout(const struct squib_chain *c)
{
	return c && c->n ? layout_of(&c->layers[c->n - 1]) : NULL;
}

uint64_t squib_chain_page_count(const struct squib_chain *c)
{
	return c ? c->page_count : 0;
}

uint64_t squib_chain_present_pages(const struct squib_chain *c)
{
	return c ? c->present : 0;
}

/* Index of the first run ending after page (nruns: none). */
static uint64_t run_after(const struct squib_chain *c, uint64_t page)
{
	uint64_t lo = 0, hi = c->nruns;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (c->runs[mid].first_page + c->runs[mid].page_count <= page)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint32_t squib_chain_owner(const struct squib_chain *c, uint64_t page)
{
	uint64_t i;

	if (!c)
		return SQUIB_CHAIN_ZERO;
	i = run_after(c, page);
	return i < c->nruns && c->runs[i].first_page <= page ? c->runs[i].owner : SQUIB_CHAIN_ZERO;
}

static int check_range(const struct squib_chain *c, uint64_t first, uint64_t count,
		       struct squib_error_detail *d)
{
	if (!c)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL chain");
	if (first > c->page_count || count > c->page_count - first)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "pages %" PRIu64 " +%" PRIu64 " lie past the chain's %" PRIu64
				      " pages",
				      first, count, c->page_count);
	return 0;
}

int squib_chain_for_each_run(const struct squib_chain *c, uint64_t first, uint64_t count,
			     squib_chain_run_fn fn, void *ctx)
{
	uint64_t pos = first, end = first + count, i;
	int rc;

	if (!fn || (rc = check_range(c, first, count, NULL)))
		return SQUIB_E_INVALID_ARGUMENT;
	for (i = run_after(c, first); pos < end;) {
		struct squib_chain_run r = {pos, 0, SQUIB_CHAIN_ZERO};
		uint64_t stop = end;

		if (i < c->nruns && c->runs[i].first_page <= pos) {
			r.owner = c->runs[i].owner;
			if (c->runs[i].first_page + c->runs[i].page_count < stop)
				stop = c->runs[i].first_page + c->runs[i].page_count;
			i++;
		} else if (i < c->nruns && c->runs[i].first_page < stop) {
			stop = c->runs[i].first_page;
		}
		r.page_count = stop - pos;
		if ((rc = fn(ctx, &r)))
			return rc;
		pos = stop;
	}
	return 0;
}

/* ---- reading -------------------------------------------------------------------------- */

/* A layer's read under the backend rule (squib/error.h): -errno becomes SQUIB_E_IO. */
static int layer_read(const struct squib_chain_layer *l, uint64_t first, uint64_t count, void *buf,
		      struct squib_error_detail *d)
{
	int rc;

	squib_error_clear(d);
	rc = l->ops->read(l->ctx, first, count, buf, d);
	return rc ? squib_backend_rc(rc, d, "chain: reading pages %" PRIu64 " +%" PRIu64 " of %s",
				     first, count, name_of(l))
		  : 0;
}

int squib_chain_read_layer(const struct squib_chain *c, uint32_t layer, uint64_t first,
			   uint64_t count, void *buf, struct squib_error_detail *d)
{
	const struct squib_memory_layout *l;
	int64_t e;
	int rc;

	if ((rc = check_range(c, first, count, d)))
		return rc;
	if (layer >= c->n || !buf || !count)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "chain: no layer %u or no pages",
				      layer);
	l = layout_of(&c->layers[layer]);
	e = squib_memfile_find_extent(l, first);
	if (e < 0 || first + count > l->extents[e].first_page + l->extents[e].page_count)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "pages %" PRIu64 " +%" PRIu64 " are not all in %s", first,
				      count, name_of(&c->layers[layer]));
	return layer_read(&c->layers[layer], first, count, buf, d);
}

struct read_job {
	const struct squib_chain *c;
	uint64_t first;
	uint8_t *buf;
	struct squib_error_detail *d;
};

static int read_run(void *ctx, const struct squib_chain_run *r)
{
	const struct read_job *j = ctx;
	const struct squib_chain_layer *l;
	uint64_t ps = layout_of(&j->c->layers[0])->page_size;
	uint8_t *at = j->buf + (r->first_page - j->first) * ps;

	if (r->owner == SQUIB_CHAIN_ZERO) {
		memset(at, 0, (size_t)(r->page_count * ps));
		return 0;
	}
	l = &j->c->layers[r->owner];
	return layer_read(l, r->first_page, r->page_count, at, j->d);
}

int squib_chain_read(const struct squib_chain *c, uint64_t first, uint64_t count, void *buf,
		     struct squib_error_detail *d)
{
	struct read_job j = {c, first, buf, d};
	int rc;

	if ((rc = check_range(c, first, count, d)))
		return rc;
	if (!buf)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to chain_read");
	return squib_chain_for_each_run(c, first, count, read_run, &j);
}

int squib_chain_read_page(const struct squib_chain *c, uint64_t guest_addr, void *buf,
			  struct squib_error_detail *d)
{
	uint64_t page;
	int rc;

	if (!c || !buf)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "NULL argument to chain_read_page");
	/* Every layer has the base's geometry, so one translation serves all. */
	if ((rc = squib_memfile_guest_page(squib_chain_layout(c), c->region_off, guest_addr, &page,
					   d)))
		return rc;
	return squib_chain_read(c, page, 1, buf, d);
}

/* ---- the chain reader of squib/memfile.h: a chain of local files -------------------- */

struct squib_memfile_chain {
	struct squib_chain *chain;
};

int squib_memfile_chain_open(const char *const *paths, size_t n, struct squib_memfile_chain **out,
			     struct squib_error_detail *d)
{
	struct squib_memfile_chain *mc;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "a chain needs at least a base");
	*out = NULL;
	if (!(mc = calloc(1, sizeof(*mc))))
		return squib_fail(d, SQUIB_E_NOMEM);
	if ((rc = squib_chain_open(paths, n, &mc->chain, d))) {
		free(mc);
		return rc;
	}
	*out = mc;
	return 0;
}

void squib_memfile_chain_close(struct squib_memfile_chain *c)
{
	if (!c)
		return;
	squib_chain_free(c->chain);
	free(c);
}

int squib_memfile_chain_read_page(const struct squib_memfile_chain *c, uint64_t guest_addr,
				  void *buf, struct squib_error_detail *d)
{
	return squib_chain_read_page(c ? c->chain : NULL, guest_addr, buf, d);
}

const struct squib_chain *squib_memfile_chain_get(const struct squib_memfile_chain *c)
{
	return c ? c->chain : NULL;
}
