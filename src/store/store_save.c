/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Save a running VM straight into the store (squib_store_save): the save
 * orchestrator's protocol (src/save.c) with a sink that, while the vCPUs are
 * paused, copies the guest's memory window by window into a bounded queue;
 * a worker pool hashes, compresses and uploads while the next windows are
 * read. After the resume the sink waits for the pool, then PUTs the state
 * and - the commit point - the image (docs/DESIGN.md "Saving into the store").
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <squib/store.h>

#include "../memfile_internal.h"
#include "../memlayout.h"
#include "../save_internal.h"
#include "store_internal.h"

struct ssave {
	struct squib_store *s;
	struct squib_store_push_stats *st;
	struct squib_store_lease lease;
	/* Chunks known to be in the store, name -> base (read-only while the pool
	 * runs): the listing (a Full) or the parent's map (a Diff, which HEADs the
	 * rest). */
	struct squib_store_idmap known;
	bool listed;
	pthread_mutex_t mu; /* guards seen and put */
	struct squib_store_idset seen;
	struct squib_store_idmap put;	 /* names this save uploaded or HEADed -> base */
	struct squib_store_image parent; /* Diff */
	struct squib_store_image im;
	struct squib_store_pool *pool;
	uint64_t buffer_bytes;
};

struct save_job {
	struct ssave *ss;
	struct squib_store_hash *slot; /* im.chunks[k]: one job per slot */
	struct squib_store_hash ref;   /* the parent's plain chunk of the window, or zero */
	size_t len;
	uint8_t data[];
};

/* ---- the workers ----------------------------------------------------------- */

/* Where name is now (base: its delta's, NULL: plain), for the image's base map. */
static int record(struct ssave *ss, const struct squib_store_hash *name,
		  const struct squib_store_hash *base, struct squib_error_detail *d)
{
	static const struct squib_store_hash zero;
	int r;

	pthread_mutex_lock(&ss->mu);
	r = squib_store_idmap_put(&ss->put, name, base ? base : &zero);
	pthread_mutex_unlock(&ss->mu);
	return r ? squib_fail(d, SQUIB_E_NOMEM) : 0;
}

/* Is the chunk to be uploaded? Not when the store has it or this save sent it. */
static int chunk_is_new(struct ssave *ss, const struct squib_store_hash *h, bool *fresh,
			struct squib_error_detail *d)
{
	char key[SQUIB_STORE_KEY_MAX];
	bool added = false, have = false;
	int r;

	*fresh = false;
	if (squib_store_idmap_get(&ss->known, h, NULL))
		return 0;
	pthread_mutex_lock(&ss->mu);
	r = squib_store_idset_add(&ss->seen, h, &added);
	pthread_mutex_unlock(&ss->mu);
	if (r)
		return squib_fail(d, SQUIB_E_NOMEM);
	if (!added)
		return 0;
	squib_store_chunk_key(h, key);
	/* Under our lease a gc cannot remove what the HEAD finds. */
	if (!ss->listed && (r = squib_store_head(ss->s, key, &have, NULL, NULL, d)))
		return r;
	*fresh = !have;
	return have ? record(ss, h, NULL, d) : 0;
}

static int save_chunk(void *arg, struct squib_error_detail *d)
{
	struct save_job *j = arg;
	struct ssave *ss = j->ss;
	struct squib_store_hash base;
	size_t n = 0;
	bool fresh = false;
	int r;

	if (!d) {
		free(j);
		return 0;
	}
	if (!(r = squib_store_hash(j->data, j->len, j->slot, d)) &&
	    squib_store_hash_is_zero(j->slot))
		r = squib_fail_msg(d, SQUIB_E_ENCODING, "a chunk hashes to zero");
	if (!r)
		r = chunk_is_new(ss, j->slot, &fresh, d);
	if (!r && !fresh)
		__atomic_fetch_add(&ss->st->chunks_reused, 1, __ATOMIC_RELAXED);
	if (!r && fresh &&
	    !(r = squib_store_chunk_upload(ss->s, j->slot, j->data, j->len, &j->ref, &base, &n,
					   d)) &&
	    !(r = record(ss, j->slot, &base, d))) {
		__atomic_fetch_add(&ss->st->chunks_put, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&ss->st->bytes_put, n, __ATOMIC_RELAXED);
		if (!squib_store_hash_is_zero(&base))
			__atomic_fetch_add(&ss->st->deltas_put, 1, __ATOMIC_RELAXED);
	}
	free(j);
	return r;
}

/* ---- the reader (vCPUs paused) --------------------------------------------- */

static bool page_zero(const uint8_t *p, size_t n)
{
	return !p[0] && !memcmp(p, p + 1, n - 1);
}

/* Is page p (of region i) in the memory file: a Full's non-zero pages, a Diff's dirty ones. */
static bool page_present(const struct squib_save_sink_memory *m, uint32_t i, uint64_t p,
			 const uint8_t *host)
{
	const struct squib_dirty_bitmap *bm;

	if (m->kind == SQUIB_SNAPSHOT_FULL)
		return !page_zero(host, (size_t)m->src->page_size);
	bm = m->bitmaps[i];
	return squib_dirty_bitmap_test_by_index(
	    bm, p / (squib_dirty_bitmap_page_size(bm) / m->src->page_size));
}

/* Window k: its present pages into the extent list; *read: its bytes must be (re)hashed. */
static int window_extents(const struct squib_save_sink_memory *m, struct squib_extent_list *ext,
			  uint32_t i, uint64_t ga, uint64_t off, uint64_t len, bool *read)
{
	const struct squib_memfile_source_region *r = &m->src->regions[i];
	uint64_t ps = m->src->page_size, p0 = (ga - r->guest_addr) / ps, n = len / ps, run = 0;
	const uint8_t *base = (const uint8_t *)r->host + (ga - r->guest_addr);
	int rc;

	*read = false;
	for (uint64_t q = 0; q <= n; q++) {
		if (q < n && page_present(m, i, p0 + q, base + q * ps)) {
			*read = true;
			continue;
		}
		if (run < q &&
		    (rc = squib_extent_list_add(ext, off / ps + run, q - run, base + run * ps,
						(size_t)((q - run) * ps))))
			return rc;
		run = q + 1;
	}
	return 0;
}

static int queue_window(struct ssave *ss, uint64_t k, const uint8_t *host, uint64_t len,
			struct squib_error_detail *d)
{
	struct save_job *j;
	int r;

	ss->st->chunks++;
	if (page_zero(host, (size_t)len)) {
		ss->st->chunks_zero++;
		memset(&ss->im.chunks[k], 0, sizeof(ss->im.chunks[k]));
		return 0;
	}
	ss->st->bytes_present += len;
	if (!(j = malloc(sizeof(*j) + len)))
		return squib_fail(d, SQUIB_E_NOMEM);
	*j = (struct save_job){.ss = ss, .slot = &ss->im.chunks[k], .len = (size_t)len};
	/* A Diff's changed window: a delta against the parent's bytes of it (§S.5). */
	squib_store_delta_ref(&ss->parent, k, &j->ref);
	memcpy(j->data, host, (size_t)len);
	/* No longer the parent's id: zero until the worker names the new bytes. */
	memset(j->slot, 0, sizeof(*j->slot));
	if ((r = squib_store_pool_submit(ss->pool, j, d)))
		free(j);
	return r;
}

static int read_windows(struct ssave *ss, const struct squib_save_sink_memory *m,
			struct squib_extent_list *ext, struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &ss->im.manifest.layout;
	int r = 0;

	for (uint64_t k = 0; !r && k < ss->im.chunk_count; k++) {
		uint64_t ga, off, len;
		uint32_t i;
		bool read;

		if ((r = squib_store_chunk_window(l, ss->im.chunk_shift, k, &i, &ga, &off, &len)))
			return squib_fail(d, r);
		if ((r = window_extents(m, ext, i, ga, off, len, &read)))
			return r == SQUIB_E_SIZE_LIMIT_EXCEEDED
				   ? squib_fail_msg(d, r, "more than %llu extents",
						    SQUIB_MEMORY_MAX_EXTENTS)
				   : squib_fail(d, r);
		if (read) {
			r = queue_window(ss, k,
					 (const uint8_t *)m->src->regions[i].host +
					     (ga - m->src->regions[i].guest_addr),
					 len, d);
			continue;
		}
		/* A Full's window without a non-zero page is zero (its slot is); a
		 * Diff's clean window keeps its parent's id, unread. */
		ss->st->chunks++;
		if (squib_store_hash_is_zero(&ss->im.chunks[k]))
			ss->st->chunks_zero++;
		else /* the workers add to it too */
			__atomic_fetch_add(&ss->st->chunks_reused, 1, __ATOMIC_RELAXED);
	}
	return r;
}

/* ---- the image ------------------------------------------------------------- */

/* The layout's geometry from the VM's regions; a Diff's must be its parent's. */
static int geometry(struct ssave *ss, const struct squib_save_sink_memory *m,
		    struct squib_error_detail *d)
{
	struct squib_memory_layout *l = &ss->im.manifest.layout;
	const struct squib_memory_layout *pl = &ss->parent.manifest.layout;
	uint32_t shift = ss->s->opts.chunk_shift;
	char hex[2 * SQUIB_MEMORY_ID_SIZE + 1];

	l->page_size = m->src->page_size;
	l->region_count = m->src->region_count;
	if (!(l->regions = calloc(l->region_count ? l->region_count : 1, sizeof(*l->regions))))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < l->region_count; i++)
		l->regions[i] = (struct squib_mem_region){m->src->regions[i].guest_addr,
							  m->src->regions[i].size};
	if (m->kind == SQUIB_SNAPSHOT_DIFF) {
		squib_mem_id_hex(pl->id, hex);
		if (pl->page_size != l->page_size || pl->region_count != l->region_count ||
		    memcmp(pl->regions, l->regions, l->region_count * sizeof(*l->regions)))
			return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
					      "the VM's memory is not the geometry of its parent's "
					      "image %s",
					      hex);
		shift = ss->parent.chunk_shift;
	}
	while ((1ull << shift) < l->page_size)
		shift++;
	ss->im.chunk_shift = shift;
	if (!(ss->im.chunk_count = squib_store_chunk_count(l, shift)))
		return squib_fail_msg(d, SQUIB_E_SIZE_LIMIT_EXCEEDED,
				      "memory too large for the store: more than %llu chunks",
				      (unsigned long long)SQUIB_STORE_MAX_CHUNKS);
	if (!(ss->im.chunks = calloc(ss->im.chunk_count, sizeof(*ss->im.chunks))))
		return squib_fail(d, SQUIB_E_NOMEM);
	if (m->kind == SQUIB_SNAPSHOT_DIFF)
		memcpy(ss->im.chunks, ss->parent.chunks,
		       ss->im.chunk_count * sizeof(*ss->im.chunks));
	return 0;
}

/* Kind, ids, extents: the manifest a file save would have written, completed. */
static int finish_manifest(struct ssave *ss, const struct squib_save_sink_memory *m,
			   struct squib_extent_list *ext, struct squib_error_detail *d)
{
	struct squib_memfile_manifest *mf = &ss->im.manifest;
	uint8_t *tail = NULL;
	size_t len = 0;
	int r;

	mf->layout.kind = m->kind == SQUIB_SNAPSHOT_DIFF ? SQUIB_MEMORY_DIFF : SQUIB_MEMORY_FULL;
	memcpy(mf->layout.id, m->id, SQUIB_MEMORY_ID_SIZE);
	if (m->parent_id)
		memcpy(mf->layout.parent_id, m->parent_id, SQUIB_MEMORY_ID_SIZE);
	mf->layout.extent_count = ext->n;
	mf->layout.extents = ext->v;
	mf->digests = ext->digests;
	mf->flags = ext->with_digests ? SQUIB_MEMFILE_FLAG_DIGESTS : 0;
	*ext = (struct squib_extent_list){0};
	r = squib_memfile_encode_tail(mf, SQUIB_MEMFILE_MAGIC, &tail, &len, d);
	free(tail);
	return r;
}

/* Windows the reader may copy ahead of the uploads: the guest resumes once the
 * last window is queued, so this bounds both the memory held and the downtime. */
static uint32_t queue_depth(const struct ssave *ss)
{
	uint64_t n = ss->buffer_bytes >> ss->im.chunk_shift, min = 2ull * ss->s->opts.workers;

	if (n > ss->im.chunk_count)
		n = ss->im.chunk_count;
	return (uint32_t)(n > min ? n : min);
}

static int sink_memory(void *ctx, const struct squib_save_sink_memory *m,
		       struct squib_memfile_manifest *out, uint64_t *pages,
		       struct squib_error_detail *d)
{
	struct ssave *ss = ctx;
	struct squib_extent_list ext = {.with_digests = m->digests};
	int r;

	if ((r = geometry(ss, m, d)) ||
	    (r = squib_store_pool_start(ss->s->opts.workers, queue_depth(ss), save_chunk, &ss->pool,
					d)))
		goto out;
	if ((r = read_windows(ss, m, &ext, d)) || (r = finish_manifest(ss, m, &ext, d)))
		goto out;
	*pages = ss->im.manifest.layout.present_pages;
	if (squib_store_manifest_copy(out, &ss->im.manifest))
		r = squib_fail(d, SQUIB_E_NOMEM);
out:
	squib_extent_list_free(&ext);
	return r;
}

/* Every chunk durable, then the state and (the commit point) the image. */
static int sink_commit(void *ctx, const uint8_t *state, size_t len, struct squib_error_detail *d)
{
	struct ssave *ss = ctx;
	int r = squib_store_pool_finish(ss->pool, d);

	ss->pool = NULL;
	if (!r && !(r = squib_store_fill_bases(&ss->im, &ss->put, &ss->known, d)) &&
	    !(r = squib_store_publish(ss->s, &ss->lease, &ss->im, state, len, d)))
		ss->st->images_put++;
	return r;
}

/* ---- the whole --------------------------------------------------------------- */

/* Before the pause: the lease, then what the store holds (parent's map or a listing). */
static int prepare(struct ssave *ss, enum squib_snapshot_kind kind, const uint8_t *parent,
		   struct squib_error_detail *d)
{
	int r;

	if (kind == SQUIB_SNAPSHOT_DIFF &&
	    (r = squib_store_image_get(ss->s, parent, &ss->parent, d)))
		return r;
	if ((r = squib_store_lease_take(ss->s, &ss->lease, d)))
		return r;
	if (kind != SQUIB_SNAPSHOT_DIFF) {
		ss->listed = true;
		return squib_store_known_list(ss->s, &ss->known, d);
	}
	/* Under our lease, what the parent maps (its deltas' bases too) stays. */
	return squib_store_known_add_image(&ss->known, &ss->parent) ? squib_fail(d, SQUIB_E_NOMEM)
								    : 0;
}

static int check_args(struct squib_store *s, const struct squib_vm *vm,
		      const struct squib_store_save_request *req, const uint8_t *parent,
		      struct squib_error_detail *d)
{
	if (!s || !vm || !req)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "store save: NULL argument");
	if (req->kind == SQUIB_SNAPSHOT_DIFF && squib_mem_id_is_zero(parent))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "a Diff into a store needs its parent's memory id");
	return 0;
}

int squib_store_save(struct squib_store *s, const struct squib_vm *vm,
		     const struct squib_store_save_request *req,
		     struct squib_store_save_report *report, struct squib_error_detail *d)
{
	struct squib_store_save_report local;
	struct squib_store_save_report *rep = report ? report : &local;
	struct ssave ss = {.s = s, .st = &rep->store};

	ss.buffer_bytes = req && req->buffer_bytes ? req->buffer_bytes : SQUIB_STORE_SAVE_BUFFER;
	const struct squib_save_sink sink = {sink_memory, sink_commit, &ss};
	struct squib_save_request sr = {0};
	uint8_t parent[SQUIB_MEMORY_ID_SIZE] = {0};
	int r;

	/* Copied before the report is cleared: the id may live in the last report. */
	if (req && req->parent_memory_id)
		memcpy(parent, req->parent_memory_id, sizeof(parent));
	memset(rep, 0, sizeof(*rep));
	if ((r = check_args(s, vm, req, parent, d)))
		return r;
	sr = (struct squib_save_request){.kind = req->kind,
					 .parent_memory_id = parent,
					 .stay_paused = req->stay_paused,
					 .page_size = req->page_size,
					 .quiesce_timeout_ms = req->quiesce_timeout_ms,
					 .digests = req->digests,
					 .live = req->live};
	pthread_mutex_init(&ss.mu, NULL);
	if (!(r = prepare(&ss, req->kind, parent, d)))
		r = squib_save_to_sink(vm, &sr, &sink, &rep->save, d);
	if (ss.pool) /* a failure after the reading began: let the queue drain */
		squib_store_pool_finish(ss.pool, NULL);
	squib_store_lease_drop(s, &ss.lease);
	squib_store_idmap_free(&ss.known);
	squib_store_idmap_free(&ss.put);
	squib_store_idset_free(&ss.seen);
	squib_store_image_release(&ss.parent);
	squib_store_image_release(&ss.im);
	pthread_mutex_destroy(&ss.mu);
	return r;
}
