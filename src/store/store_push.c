/* SPDX-License-Identifier: Apache-2.0 */
/*
 * push: a pair (and a Diff's older pairs) into the store. The reading
 * thread walks the chunk windows of the memory as its chain reads it,
 * hashes each window and skips zero windows and ids it met already; a
 * worker pool asks the store for each new id (HEAD) and compresses and
 * uploads only those it lacks. Then the state file, then the image: the
 * image is the commit point (docs/DESIGN.md "Snapshot store").
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <squib/describe.h>
#include <squib/envelope.h>
#include <squib/store.h>

#include "../memlayout.h"
#include "store_internal.h"

struct push {
	struct squib_store *s;
	struct squib_store_push_stats *st;
	struct squib_store_idset seen;
	/* chunks the store held when the push began, name -> base (read-only) */
	struct squib_store_idmap known;
	pthread_mutex_t mu;		 /* guards put */
	struct squib_store_idmap put;	 /* chunks this push uploaded -> base */
	struct squib_store_image parent; /* the layer's parent image (a Diff), for delta refs */
	const struct squib_progress *progress;
	uint64_t done, total;
	struct squib_store_lease *lease;
	uint64_t refreshed_ns; /* when the lease was last renewed */
};

/* The push's lease renewed every few minutes, so a gc never takes it for dead
 * however long the push reads (docs/DESIGN.md §17, case 6). */
#define PUSH_LEASE_REFRESH_NS (300ull * 1000000000ull)

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int keep_lease(struct push *p, struct squib_error_detail *d)
{
	uint64_t now = mono_ns();
	int r;

	if (now - p->refreshed_ns < PUSH_LEASE_REFRESH_NS)
		return 0;
	if (!(r = squib_store_lease_check(p->s, p->lease, d)))
		p->refreshed_ns = now;
	return r;
}

struct chunk_job {
	struct push *p;
	struct squib_store_hash id;
	struct squib_store_hash ref; /* the parent's plain chunk of the window, or zero */
	size_t len;
	uint8_t data[];
};

static int upload_chunk(void *arg, struct squib_error_detail *d)
{
	struct chunk_job *j = arg;
	struct squib_store_hash base;
	size_t n = 0;
	bool have;
	int r = 0;

	if (!d) { /* the pool failed: only free */
		free(j);
		return 0;
	}
	/* Listed under this push's lease: a gc cannot remove it before the image is up. */
	have = squib_store_idmap_get(&j->p->known, &j->id, NULL);
	if (have) {
		__atomic_fetch_add(&j->p->st->chunks_reused, 1, __ATOMIC_RELAXED);
	} else if (!(r = squib_store_chunk_upload(j->p->s, &j->id, j->data, j->len, &j->ref, &base,
						  &n, d))) {
		pthread_mutex_lock(&j->p->mu);
		if (squib_store_idmap_put(&j->p->put, &j->id, &base))
			r = squib_fail(d, SQUIB_E_NOMEM);
		pthread_mutex_unlock(&j->p->mu);
		__atomic_fetch_add(&j->p->st->chunks_put, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&j->p->st->bytes_put, n, __ATOMIC_RELAXED);
		if (!squib_store_hash_is_zero(&base))
			__atomic_fetch_add(&j->p->st->deltas_put, 1, __ATOMIC_RELAXED);
	}
	free(j);
	return r;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return !p[0] && !memcmp(p, p + 1, n - 1);
}

/* Read window k's bytes through the chain into buf. */
static int read_window(const struct squib_memfile_chain *c, const struct squib_memory_layout *l,
		       uint32_t shift, uint64_t k, uint8_t *buf, uint64_t *len,
		       struct squib_error_detail *d)
{
	uint64_t ga, off;
	uint32_t region;
	int r;

	if ((r = squib_store_chunk_window(l, shift, k, &region, &ga, &off, len)))
		return squib_fail(d, r);
	for (uint64_t o = 0; o < *len; o += l->page_size)
		if ((r = squib_memfile_chain_read_page(c, ga + o, buf + o, d)))
			return r;
	return 0;
}

/* One window: hash, dedup, queue the upload. */
static int push_window(struct push *p, struct chunk_job *j, struct squib_store_hash *slot,
		       struct squib_error_detail *d)
{
	bool added = false;
	int r;

	p->st->chunks++;
	p->done += j->len;
	if (p->progress)
		p->progress->fn(p->progress->ctx, p->done, p->total);
	if (all_zero(j->data, j->len)) {
		p->st->chunks_zero++;
		memset(slot, 0, sizeof(*slot));
		return 0;
	}
	p->st->bytes_present += j->len;
	if ((r = squib_store_hash(j->data, j->len, &j->id, d)))
		return r;
	if (squib_store_hash_is_zero(&j->id)) /* 2^-256, but then it cannot be named */
		return squib_fail_msg(d, SQUIB_E_ENCODING, "a chunk hashes to zero");
	*slot = j->id;
	if (squib_store_idset_add(&p->seen, &j->id, &added))
		return squib_fail(d, SQUIB_E_NOMEM);
	if (!added) { /* the workers add to it too */
		__atomic_fetch_add(&p->st->chunks_reused, 1, __ATOMIC_RELAXED);
		return 0;
	}
	return 1; /* the caller hands j to the pool */
}

static int map_chunks(struct push *p, const struct squib_memfile_chain *c,
		      struct squib_store_image *im, struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &im->manifest.layout;
	size_t cap = (size_t)1 << im->chunk_shift;
	struct squib_store_pool *pool;
	struct chunk_job *j = NULL;
	int r, r2;

	if ((r = squib_store_pool_start(p->s->opts.workers, 2 * p->s->opts.workers, upload_chunk,
					&pool, d)))
		return r;
	for (uint64_t k = 0; !r && k < im->chunk_count; k++) {
		if (!j && !(j = malloc(sizeof(*j) + cap))) {
			r = squib_fail(d, SQUIB_E_NOMEM);
			break;
		}
		j->p = p;
		squib_store_delta_ref(&p->parent, k, &j->ref);
		if ((r = keep_lease(p, d)) ||
		    (r = read_window(c, l, im->chunk_shift, k, j->data, &j->len, d)) ||
		    (r = push_window(p, j, &im->chunks[k], d)) <= 0)
			continue;
		if ((r = squib_store_pool_submit(pool, j, d)))
			break;
		j = NULL;
	}
	free(j);
	r2 = squib_store_pool_finish(pool, r ? NULL : d);
	if (!r && !r2)
		r2 = squib_store_fill_bases(im, &p->put, &p->known, d);
	return r ? r : r2;
}

/* A Diff layer's parent image, when its windows are this image's (the same
 * regions and chunk size): its chunks are the delta references. */
static int parent_for(struct push *p, const struct squib_store_image *im,
		      struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &im->manifest.layout, *pl;
	int r;

	squib_store_image_release(&p->parent);
	if (l->kind != SQUIB_MEMORY_DIFF || p->s->opts.no_delta)
		return 0;
	/* Pushed just before this layer, or found in the store. */
	if ((r = squib_store_image_get(p->s, l->parent_id, &p->parent, d)))
		return r;
	pl = &p->parent.manifest.layout;
	if (p->parent.chunk_shift != im->chunk_shift || p->parent.chunk_count != im->chunk_count ||
	    pl->region_count != l->region_count ||
	    memcmp(pl->regions, l->regions, l->region_count * sizeof(*l->regions)))
		squib_store_image_release(&p->parent);
	return 0;
}

int squib_store_manifest_copy(struct squib_memfile_manifest *dst,
			      const struct squib_memfile_manifest *src)
{
	memset(dst, 0, sizeof(*dst));
	if (squib_memory_layout_copy(&dst->layout, &src->layout))
		return SQUIB_E_NOMEM;
	dst->flags = src->flags;
	dst->version = src->version;
	if (src->digests && src->layout.extent_count) {
		dst->digests = malloc(src->layout.extent_count * sizeof(uint64_t));
		if (!dst->digests) {
			squib_memfile_manifest_release(dst);
			return SQUIB_E_NOMEM;
		}
		memcpy(dst->digests, src->digests, src->layout.extent_count * sizeof(uint64_t));
	}
	return 0;
}

/* The image skeleton for a memory file: its manifest, an all-zero map. */
static int image_for(const struct squib_store *s, const struct squib_memfile *m,
		     struct squib_store_image *im, struct squib_error_detail *d)
{
	const struct squib_memfile_manifest *mf = squib_memfile_manifest(m);
	uint32_t shift = s->opts.chunk_shift;

	memset(im, 0, sizeof(*im));
	/* Pull rebuilds fixed-offset files; a packed diff's state records its packed size. */
	if (mf->flags & SQUIB_MEMFILE_FLAG_PACKED) {
		char id[2 * SQUIB_MEMORY_ID_SIZE + 1];

		squib_memfile_id_hex(mf->layout.id, id);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "memory file %s is a packed diff: the store holds "
				      "fixed-offset memory files (rebase the chain, or save the "
				      "diff without packing)",
				      id);
	}
	while ((1ull << shift) < mf->layout.page_size)
		shift++;
	if (shift > SQUIB_STORE_MAX_CHUNK_SHIFT ||
	    !(im->chunk_count = squib_store_chunk_count(&mf->layout, shift)))
		return squib_fail_msg(d, SQUIB_E_SIZE_LIMIT_EXCEEDED,
				      "memory too large for the store: more than %llu chunks",
				      (unsigned long long)SQUIB_STORE_MAX_CHUNKS);
	im->chunk_shift = shift;
	if (squib_store_manifest_copy(&im->manifest, mf) ||
	    !(im->chunks = calloc(im->chunk_count, sizeof(*im->chunks)))) {
		squib_store_image_release(im);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	return 0;
}

/* The state file's bytes, decoded and checked against the memory file. */
static int read_pair(const char *state_path, const struct squib_memfile *m, uint8_t **buf,
		     size_t *len, struct squib_error_detail *d)
{
	struct squib_microvm_state st;
	int r;

	if ((r = squib_state_read_file(state_path, buf, len, d)))
		return r;
	squib_state_init(&st, SQUIB_ARCH_ANY);
	if (!(r = squib_state_decode(*buf, *len, SQUIB_ARCH_ANY, &st, NULL, d))) {
		if (!st.memory)
			r = squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
					   "%s has no MEMORY section: it pairs with no memory file",
					   state_path);
		else
			r = squib_memfile_check_layout(m, st.memory, d);
	}
	squib_state_free(&st);
	if (r) {
		free(*buf);
		*buf = NULL;
	}
	return r;
}

int squib_store_publish(struct squib_store *s, struct squib_store_lease *lease,
			const struct squib_store_image *im, const uint8_t *state, size_t state_len,
			struct squib_error_detail *d)
{
	char key[SQUIB_STORE_KEY_MAX];
	uint8_t *buf;
	size_t len;
	int r;

	squib_store_image_key(im->manifest.layout.id, true, key);
	if ((r = squib_store_put(s, key, state, state_len, d)))
		return r;
	if ((r = squib_store_image_encode(im, &buf, &len, d)))
		return r;
	squib_store_image_key(im->manifest.layout.id, false, key);
	if (!(r = squib_store_lease_check(s, lease, d)))
		r = squib_store_put(s, key, buf, len, d);
	free(buf);
	return r;
}

/* Is this memory file's image (and its state) in the store already? An image of
 * another memory file under the id (a rebase keeps the newest diff's id) is refused. */
static int image_present(struct squib_store *s, const struct squib_memory_layout *l, bool *have,
			 struct squib_error_detail *d)
{
	char key[SQUIB_STORE_KEY_MAX], hex[2 * SQUIB_MEMORY_ID_SIZE + 1];
	struct squib_store_image im;
	int r;

	squib_store_image_key(l->id, false, key);
	if ((r = squib_store_head(s, key, have, NULL, NULL, d)) || !*have)
		return r;
	if ((r = squib_store_image_get(s, l->id, &im, d)))
		return r;
	*have = squib_memory_layout_equal(&im.manifest.layout, l);
	squib_store_image_release(&im);
	squib_mem_id_hex(l->id, hex);
	if (!*have)
		return squib_fail_msg(
		    d, SQUIB_E_PAIR_MISMATCH,
		    "the store holds another memory file's image under id %s (a "
		    "rebase keeps the newest diff's id): push it to another store",
		    hex);
	squib_store_image_key(l->id, true, key);
	return squib_store_head(s, key, have, NULL, NULL, d);
}

/* Layer `n` of paths (0 = the full base): its pair, read through paths[0..n]. */
static int push_layer(struct push *p, struct squib_store_lease *lease, const char *state_path,
		      const char *const *paths, size_t n, struct squib_error_detail *d)
{
	struct squib_memfile_chain *c = NULL;
	struct squib_store_image im = {0};
	struct squib_memfile *m;
	uint8_t *state = NULL;
	size_t state_len = 0;
	bool have = false;
	int r;

	if ((r = squib_memfile_open(paths[n], &m, d)))
		return r;
	if (!(r = read_pair(state_path, m, &state, &state_len, d)) &&
	    !(r = image_present(p->s, &squib_memfile_manifest(m)->layout, &have, d)) && !have &&
	    !(r = image_for(p->s, m, &im, d)) && !(r = parent_for(p, &im, d)) &&
	    !(r = squib_memfile_chain_open(paths, n + 1, &c, d)))
		r = map_chunks(p, c, &im, d);
	if (!r && have) {
		p->st->images_skipped++;
		p->done += squib_memfile_manifest(m)->layout.ram_size;
	} else if (!r) {
		if (!(r = squib_store_publish(p->s, lease, &im, state, state_len, d)))
			p->st->images_put++;
	}
	squib_memfile_chain_close(c);
	squib_memfile_close(m);
	squib_store_image_release(&im);
	free(state);
	return r;
}

static int layer_paths(const char *const *chain_states, const char *const *chain_mems, size_t n,
		       const char *memory_path, char ***out, struct squib_error_detail *d)
{
	char **v = calloc(n + 1, sizeof(*v));
	int r = 0;

	*out = v;
	if (!v)
		return squib_fail(d, SQUIB_E_NOMEM);
	for (size_t i = 0; !r && i < n; i++) /* the one memory-path rule (squib/describe.h) */
		r = squib_mem_path_for_state(chain_states[i], chain_mems ? chain_mems[i] : NULL,
					     &v[i], d);
	if (!r && !(v[n] = strdup(memory_path)))
		r = squib_fail(d, SQUIB_E_NOMEM);
	return r;
}

int squib_store_push(struct squib_store *s, const char *state_path, const char *memory_path,
		     const char *const *chain_states, const char *const *chain_mems, size_t n,
		     const struct squib_progress *progress, struct squib_store_push_stats *stats,
		     struct squib_error_detail *d)
{
	struct squib_store_push_stats local = {0};
	struct push p = {.s = s, .st = stats ? stats : &local, .progress = progress};
	struct squib_store_lease lease = {0};
	char **paths = NULL;
	int r;

	memset(p.st, 0, sizeof(*p.st));
	if (!state_path || !memory_path || (n && !chain_states))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "push: NULL argument");
	pthread_mutex_init(&p.mu, NULL);
	r = layer_paths(chain_states, chain_mems, n, memory_path, &paths, d);
	for (size_t i = 0; !r && i <= n; i++) {
		struct squib_memfile *m;

		if (!(r = squib_memfile_open(paths[i], &m, d))) {
			p.total += squib_memfile_manifest(m)->layout.ram_size;
			squib_memfile_close(m);
		}
	}
	if (!r)
		r = squib_store_lease_take(s, &lease, d);
	p.lease = &lease;
	p.refreshed_ns = mono_ns();
	if (!r)
		r = squib_store_known_list(s, &p.known, d);
	for (size_t i = 0; !r && i <= n; i++)
		r = push_layer(&p, &lease, i < n ? chain_states[i] : state_path,
			       (const char *const *)paths, i, d);
	squib_store_lease_drop(s, &lease);
	squib_store_idset_free(&p.seen);
	squib_store_idmap_free(&p.known);
	squib_store_idmap_free(&p.put);
	squib_store_image_release(&p.parent);
	pthread_mutex_destroy(&p.mu);
	for (size_t i = 0; paths && i <= n; i++)
		free(paths[i]);
	free(paths);
	return r;
}
