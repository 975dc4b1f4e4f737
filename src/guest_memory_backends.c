/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest-memory backends (squib/guest_memory.h): how each maps the
 * regions, fills or serves them, stops and is torn down. One table; adding
 * a backend is adding a row.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "chain_internal.h"
#include "guest_memory_internal.h"
#include "memfile_internal.h"

/* ---- mapping ---------------------------------------------------------------------------- */

/* Private anonymous memory, never touched (COPY, LAZY, UFFD). */
static int map_anon(struct squib_guest_memory *g, uint32_t i, const struct squib_chain *c,
		    struct squib_error_detail *d)
{
	struct squib_vm_region *r = &g->regions[i];
	void *p = mmap(NULL, (size_t)r->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	(void)c;
	if (p == MAP_FAILED)
		return squib_memfile_io_error(d, errno, "mapping %" PRIu64 " bytes of guest memory",
					      r->size);
	r->host = p;
	return 0;
}

/* FILE: the full file's region mapped copy-on-write. */
static int map_file(struct squib_guest_memory *g, uint32_t i, const struct squib_chain *c,
		    struct squib_error_detail *d)
{
	const struct squib_memfile *m = squib_chain_memfile(c, squib_chain_layer_count(c) - 1);
	uint64_t hp = (uint64_t)sysconf(_SC_PAGESIZE);
	struct squib_vm_region *r = &g->regions[i];
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

/* ---- COPY: each page read once, from its owner ---------------------------------------- */

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
		j->g->stats.pages_read += n;
		page += n;
	}
	return 0;
}

static int copy_populate(struct squib_guest_memory *g, struct squib_chain **c,
			 const struct squib_lazy_options *lazy, struct squib_error_detail *d)
{
	struct copy_job j = {*c, g, d, 0, 0};

	(void)lazy;
	return squib_chain_for_each_run(*c, 0, squib_chain_page_count(*c), copy_run, &j);
}

/* ---- LAZY: the in-process pager over the chain ---------------------------------------- */

static int lazy_populate(struct squib_guest_memory *g, struct squib_chain **c,
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

static void lazy_stop(struct squib_guest_memory *g)
{
	squib_pager_stop(g->pager); /* the pager stays for its statistics */
}

static void lazy_destroy(struct squib_guest_memory *g)
{
	squib_pager_free(g->pager);
	g->pager = NULL;
}

static int lazy_error(const struct squib_guest_memory *g, struct squib_error_detail *d)
{
	return g->pager ? squib_pager_error(g->pager, d) : 0;
}

/* Sorted page numbers -> coalesced runs; n runs into runs (as many as pages at most). */
static uint64_t to_runs(const uint64_t *pages, size_t count, struct squib_ws_run *runs)
{
	uint64_t n = 0;

	for (size_t i = 0; i < count; i++) {
		if (n && runs[n - 1].first_page + runs[n - 1].page_count == pages[i])
			runs[n - 1].page_count++;
		else
			runs[n++] = (struct squib_ws_run){pages[i], 1};
	}
	return n;
}

static int lazy_install(struct squib_guest_memory *g, const uint64_t *pages, size_t count,
			struct squib_error_detail *d)
{
	struct squib_ws_run *runs = calloc(count ? count : 1, sizeof(*runs));
	uint64_t installed = 0;
	int rc;

	if (!runs)
		return squib_fail(d, SQUIB_E_NOMEM);
	rc = squib_pager_prefetch(g->pager, runs, to_runs(pages, count, runs), &installed, d);
	free(runs);
	return rc;
}

/* ---- UFFD: hand the memory to an external page-fault handler -------------------------- */

static int uffd_populate(struct squib_guest_memory *g, struct squib_chain **c,
			 const struct squib_lazy_options *lazy, struct squib_error_detail *d)
{
	struct squib_uffd_remote_region *r;
	uint64_t off = 0;
	int rc;

	(void)c; /* the handler reads the file, not us */
	if (!lazy || !lazy->uffd_socket)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "the UFFD backend needs the page-fault handler's socket "
				      "(lazy.uffd_socket)");
	if (!(r = calloc(g->region_count, sizeof(*r))))
		return squib_fail(d, SQUIB_E_NOMEM);
	/* RAM starts at file offset 0, regions back to back: Firecracker's `offset`. */
	for (uint32_t i = 0; i < g->region_count; i++) {
		r[i] =
		    (struct squib_uffd_remote_region){g->regions[i].host, g->regions[i].size, off};
		off += g->regions[i].size;
	}
	rc = squib_uffd_remote_start(lazy->uffd_socket, r, g->region_count, g->page_size,
				     &lazy->remote, &g->remote, d);
	free(r);
	return rc;
}

/* Unregisters, then closes: the memory stays, unserved pages read as zeros. */
static void uffd_stop(struct squib_guest_memory *g)
{
	squib_uffd_remote_free(g->remote);
	g->remote = NULL;
}

static int uffd_error(const struct squib_guest_memory *g, struct squib_error_detail *d)
{
	return g->remote ? squib_uffd_remote_error(g->remote, d) : 0;
}

/* The handler serves what we read: a read fault installs the page. */
static int uffd_install(struct squib_guest_memory *g, const uint64_t *pages, size_t count,
			struct squib_error_detail *d)
{
	(void)d;
	for (size_t i = 0; i < count; i++) {
		volatile const uint8_t *a = squib_gm_page_addr(g, pages[i]);

		if (a)
			(void)*a;
	}
	return 0;
}

/* ---- addresses ----------------------------------------------------------------------- */

volatile const uint8_t *squib_gm_page_addr(const struct squib_guest_memory *g, uint64_t page)
{
	uint64_t off = page * g->page_size, base = 0;

	for (uint32_t i = 0; i < g->region_count; i++) {
		if (off < base + g->regions[i].size)
			return (volatile const uint8_t *)g->regions[i].host + (off - base);
		base += g->regions[i].size;
	}
	return NULL;
}

/* ---- the table -------------------------------------------------------------------------- */

static const struct squib_gm_backend backends[] = {
    {.id = SQUIB_BACKEND_COPY, .map = map_anon, .populate = copy_populate},
    {.id = SQUIB_BACKEND_FILE, .full_only = true, .map = map_file},
    {.id = SQUIB_BACKEND_LAZY,
     .map = map_anon,
     .populate = lazy_populate,
     .stop = lazy_stop,
     .destroy = lazy_destroy,
     .error = lazy_error,
     .install = lazy_install},
    {.id = SQUIB_BACKEND_UFFD,
     .file_optional = true,
     .map = map_anon,
     .populate = uffd_populate,
     .stop = uffd_stop,
     .destroy = uffd_stop,
     .error = uffd_error,
     .install = uffd_install},
};

const struct squib_gm_backend *squib_gm_backend(enum squib_memory_backend b)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (backends[i].id == b)
			return &backends[i];
	return NULL;
}
