/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy restore from the store (squib/store_source.h): a page source over one
 * image. Pages map to chunk windows (squib_store_chunk_window's numbering);
 * a read takes each window's decompressed chunk from a small table of
 * chunks, which holds the ones being fetched (readers of the same chunk wait
 * for the one fetch) and the last few fetched (least recently used go
 * first). A fetch tries the disk cache, then the store; every chunk is
 * checked against its name before it enters the table.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include <squib/store_source.h>

#include "../util.h"
#include "store_cache.h"
#include "store_internal.h"

enum chunk_state { FETCHING, READY, FAILED };

#define DCTX_KEPT 16
/* Chunk buffers kept for reuse: a freed 64 KiB buffer goes back to the kernel (heap
 * trim), and the next one's first write faults its pages in again. */
#define SPARE_KEPT 32
/* Read-ahead of demand faults the disk cache did not serve: the next windows,
 * fetched by up to RA_THREADS threads (a cold store's GETs overlap), at most
 * RA_QUEUE windows waiting. */
#define RA_WINDOWS 8
#define RA_THREADS 8
#define RA_QUEUE   32

struct chunk {
	struct squib_store_hash h;
	enum chunk_state state;
	uint8_t *buf;
	size_t len;
	uint32_t refs;
	bool cached; /* READY from the disk cache, not the store */
	int err;
	struct squib_error_detail d;
	struct chunk *next;	     /* in its bucket */
	struct chunk *older, *newer; /* in the idle list (READY, unreferenced) */
};

struct region_map {
	uint64_t ram_off, size, guest_addr, first_k;
};

struct squib_store_source {
	struct squib_store *s;
	struct squib_store_image im;
	struct region_map *regions;
	struct squib_store_cache *cache;
	uint64_t page_size, chunk_bytes;
	uint32_t workers;
	size_t keep; /* unreferenced READY chunks kept */
	pthread_mutex_t mu;
	pthread_cond_t changed;
	struct chunk **buckets; /* by the hash's first bytes */
	size_t mask;
	struct chunk *oldest, *newest; /* idle READY chunks, least recently used first */
	ZSTD_DCtx *dctx[DCTX_KEPT];    /* idle decompression contexts, reused */
	size_t dctx_idle;
	uint8_t *spare[SPARE_KEPT]; /* chunk buffers (chunk_bytes each), reused */
	size_t spare_n;
	/* Read-ahead (under mu): queued windows, its threads, the last demand window. */
	uint64_t ra_q[RA_QUEUE], ra_last;
	size_t ra_head, ra_n;
	pthread_t ra_th[RA_THREADS];
	uint32_t ra_threads, prefetching;
	bool ra_stop;
	pthread_cond_t ra_work;
	size_t ready_idle;
	struct squib_store_source_stats st;
};

/* ---- pages and windows --------------------------------------------------------- */

/* The window holding RAM byte off, and off's place in it; false past the RAM range. */
static bool window_of(const struct squib_store_source *ss, uint64_t off, uint64_t *k, uint64_t *in,
		      uint64_t *left)
{
	const struct squib_memory_layout *l = &ss->im.manifest.layout;
	uint32_t lo = 0, hi = l->region_count;
	uint32_t sh = ss->im.chunk_shift;

	while (hi - lo > 1) { /* the last region starting at or before off */
		uint32_t mid = lo + (hi - lo) / 2;

		if (ss->regions[mid].ram_off <= off)
			lo = mid;
		else
			hi = mid;
	}
	const struct region_map *r = &ss->regions[lo];
	if (off < r->ram_off || off - r->ram_off >= r->size)
		return false;
	uint64_t ga = r->guest_addr + (off - r->ram_off);
	uint64_t w = (ga >> sh) << sh, start = w > r->guest_addr ? w : r->guest_addr;
	uint64_t end = r->guest_addr + r->size, wend = w + (1ull << sh);

	*k = r->first_k + (ga >> sh) - (r->guest_addr >> sh);
	*in = ga - start;
	*left = (wend < end && wend > w ? wend : end) - ga;
	return true;
}

static bool src_present(void *ctx, uint64_t page)
{
	struct squib_store_source *ss = ctx;
	uint64_t k, in, left;

	return window_of(ss, page * ss->page_size, &k, &in, &left) &&
	       !squib_store_hash_is_zero(&ss->im.chunks[k]);
}

/* ---- the chunk table --------------------------------------------------------- */

static struct chunk **bucket(struct squib_store_source *ss, const struct squib_store_hash *h)
{
	uint64_t x;

	memcpy(&x, h->b, sizeof(x)); /* a SHA-256: its bytes are already uniform */
	return &ss->buckets[x & ss->mask];
}

static struct chunk *find(struct squib_store_source *ss, const struct squib_store_hash *h)
{
	for (struct chunk *c = *bucket(ss, h); c; c = c->next)
		if (!memcmp(c->h.b, h->b, sizeof(h->b)))
			return c;
	return NULL;
}

static void idle_remove(struct squib_store_source *ss, struct chunk *c)
{
	*(c->older ? &c->older->newer : &ss->oldest) = c->newer;
	*(c->newer ? &c->newer->older : &ss->newest) = c->older;
	c->older = c->newer = NULL;
	ss->ready_idle--;
}

static void idle_add(struct squib_store_source *ss, struct chunk *c)
{
	c->older = ss->newest;
	c->newer = NULL;
	*(ss->newest ? &ss->newest->newer : &ss->oldest) = c;
	ss->newest = c;
	ss->ready_idle++;
}

static void unlink_chunk(struct squib_store_source *ss, struct chunk *c)
{
	for (struct chunk **p = bucket(ss, &c->h); *p; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	if (c->buf && ss->spare_n < SPARE_KEPT)
		ss->spare[ss->spare_n++] = c->buf;
	else
		free(c->buf);
	free(c);
}

/* A chunk buffer (chunk_bytes): a spare one, else a new one. Under mu. */
static uint8_t *chunk_buf(struct squib_store_source *ss)
{
	return ss->spare_n ? ss->spare[--ss->spare_n] : malloc(ss->chunk_bytes);
}

static void put_locked(struct squib_store_source *ss, struct chunk *c)
{
	if (--c->refs)
		return;
	if (c->state == FAILED) {
		unlink_chunk(ss, c);
		return;
	}
	idle_add(ss, c);
	while (ss->ready_idle > ss->keep) { /* drop the least recently used */
		struct chunk *old = ss->oldest;

		idle_remove(ss, old);
		unlink_chunk(ss, old);
	}
}

static void put(struct squib_store_source *ss, struct chunk *c)
{
	pthread_mutex_lock(&ss->mu);
	put_locked(ss, c);
	pthread_mutex_unlock(&ss->mu);
}

/* ---- fetching one chunk -------------------------------------------------------- */

/* The error names the chunk, its window and where it came from. */
static int chunk_error(struct squib_store_source *ss, uint64_t k, int r,
		       struct squib_error_detail *d)
{
	char key[SQUIB_STORE_KEY_MAX], m[1024]; /* cut to the detail's size */
	uint64_t ga = 0, off, len;
	uint32_t region;

	if (squib_store_hash_is_zero(squib_store_image_base(&ss->im, k)))
		squib_store_chunk_key(&ss->im.chunks[k], key);
	else
		squib_store_delta_key(&ss->im.chunks[k], squib_store_image_base(&ss->im, k), key);
	squib_store_chunk_window(&ss->im.manifest.layout, ss->im.chunk_shift, k, &region, &ga, &off,
				 &len);
	/* The backend's message names the object and URL already; a decode's names the hash. */
	if (strstr(d->msg, squib_store_url(ss->s)))
		snprintf(m, sizeof(m), "chunk window %" PRIu64 " (guest 0x%" PRIx64 "): %.600s", k,
			 ga, d->msg);
	else
		snprintf(m, sizeof(m),
			 "%s of %.200s (window %" PRIu64 ", guest 0x%" PRIx64 "): %.600s", key,
			 squib_store_url(ss->s), k, ga, d->msg);
	squib_strlcpy(d->msg, m, sizeof(d->msg));
	d->code = r;
	return r;
}

/* An idle decompression context of the source's, or a new one (NULL: a one-off). */
static ZSTD_DCtx *take_dctx(struct squib_store_source *ss)
{
	ZSTD_DCtx *dc = NULL;

	pthread_mutex_lock(&ss->mu);
	if (ss->dctx_idle)
		dc = ss->dctx[--ss->dctx_idle];
	pthread_mutex_unlock(&ss->mu);
	return dc ? dc : ZSTD_createDCtx();
}

static void give_dctx(struct squib_store_source *ss, ZSTD_DCtx *dc)
{
	pthread_mutex_lock(&ss->mu);
	if (dc && ss->dctx_idle < DCTX_KEPT) {
		ss->dctx[ss->dctx_idle++] = dc;
		dc = NULL;
	}
	pthread_mutex_unlock(&ss->mu);
	ZSTD_freeDCtx(dc);
}

/* Chunk k from the disk cache into buf: 0, or 1 (no usable entry: a bad one is dropped). */
static int from_cache(struct squib_store_source *ss, const struct squib_store_hash *h, uint8_t *buf,
		      size_t len)
{
	struct squib_store_hash got;
	int r = squib_store_cache_get(ss->cache, h, buf, len);

	/* Another user could write the directory: the CRC is no defence, the name is. */
	if (!r && !squib_store_cache_private(ss->cache) &&
	    (squib_store_hash(buf, len, &got, NULL) || memcmp(got.b, h->b, sizeof(got.b))))
		r = -1;
	if (r > 0)
		return 1;
	pthread_mutex_lock(&ss->mu);
	r ? ss->st.cache_corrupt++ : ss->st.cache_hits++;
	pthread_mutex_unlock(&ss->mu);
	if (r)
		squib_store_cache_drop(ss->cache, h); /* never served: fetched again */
	return r ? 1 : 0;
}

/* Hand a checked base chunk's bytes to the cache's writer thread (a copy: it frees
 * it); never waits for room (a demand fault may be behind it). */
static void cache_put(struct squib_store_source *ss, const struct squib_store_hash *h,
		      const uint8_t *buf, size_t len)
{
	uint8_t *copy;

	if (ss->cache && (copy = malloc(len))) {
		memcpy(copy, buf, len);
		squib_store_cache_put_async(ss->cache, h, copy, len, false);
	}
}

/* A delta window's base (a plain chunk) into ref: the disk cache, else the
 * store, and then the cache (the parent's windows are often its base). */
static int fetch_base(struct squib_store_source *ss, ZSTD_DCtx *dc,
		      const struct squib_store_hash *base, uint8_t *ref, size_t len, uint64_t *n,
		      struct squib_error_detail *d)
{
	int r;

	if (ss->cache && !from_cache(ss, base, ref, len))
		return 0;
	if (!(r = squib_store_chunk_fetch(ss->s, dc, base, ref, len, n, d)))
		cache_put(ss, base, ref, len);
	return r;
}

/* Chunk k's bytes into buf (len bytes): the disk cache, else the store (a
 * delta: its base, then the delta; *stored: it came from the store, the cache
 * wants it). The cache holds the decompressed bytes by name, so a warm read
 * of a delta window costs what a plain one does. */
static int fetch(struct squib_store_source *ss, uint64_t k, uint8_t *buf, size_t len, bool *stored,
		 struct squib_error_detail *d)
{
	const struct squib_store_hash *h = &ss->im.chunks[k];
	const struct squib_store_hash *base = squib_store_image_base(&ss->im, k);
	bool delta = !squib_store_hash_is_zero(base);
	uint8_t *ref = NULL;
	ZSTD_DCtx *dc;
	uint64_t n = 0;
	int r;

	*stored = false;
	if (ss->cache && !from_cache(ss, h, buf, len))
		return 0;
	dc = take_dctx(ss);
	if (!delta)
		r = squib_store_chunk_fetch(ss->s, dc, h, buf, len, &n, d);
	else if (!(ref = malloc(len)))
		r = squib_fail(d, SQUIB_E_NOMEM);
	else if (!(r = fetch_base(ss, dc, base, ref, len, &n, d)))
		r = squib_store_delta_fetch(ss->s, dc, h, base, ref, buf, len, &n, d);
	give_dctx(ss, dc);
	free(ref);
	if (r)
		return chunk_error(ss, k, r, d);
	*stored = true;
	pthread_mutex_lock(&ss->mu);
	ss->st.chunks_fetched++;
	ss->st.bytes_fetched += n;
	pthread_mutex_unlock(&ss->mu);
	return 0;
}

/*
 * Fetch a chunk this thread put in the table as FETCHING; publish the outcome; then queue a
 * chunk from the store to the disk cache. After publishing: a fill (read-ahead, a
 * prefetch's pool) may wait for room in the cache's queue, and a demand read waiting for
 * this chunk must not wait with it. The chunk is still referenced: READY, its buffer stays.
 */
static int fetch_into(struct squib_store_source *ss, struct chunk *c, uint64_t k, bool fill,
		      struct squib_error_detail *d)
{
	struct squib_error_detail local;
	bool stored = false;
	uint8_t *copy;
	int r;

	if (!d)
		d = &local;
	memset(d, 0, sizeof(*d));
	r = c->buf ? fetch(ss, k, c->buf, c->len, &stored, d) : squib_fail(d, SQUIB_E_NOMEM);
	pthread_mutex_lock(&ss->mu);
	c->state = r ? FAILED : READY;
	c->cached = !r && !stored;
	c->err = r;
	c->d = *d;
	ss->st.errors += r != 0;
	pthread_cond_broadcast(&ss->changed);
	pthread_mutex_unlock(&ss->mu);
	/* The writer thread writes and frees the copy; the table owns buf. */
	if (!r && stored && ss->cache && (copy = malloc(c->len))) {
		memcpy(copy, c->buf, c->len);
		squib_store_cache_put_async(ss->cache, &c->h, copy, c->len, fill);
	}
	return r;
}

/*
 * Under mu: chunk k's entry, referenced - the one in the table, or a new FETCHING one that
 * this thread must fetch (*mine). NULL: no memory.
 */
static struct chunk *enter_locked(struct squib_store_source *ss, uint64_t k, uint64_t len,
				  bool *mine)
{
	struct chunk *c = find(ss, &ss->im.chunks[k]);

	if ((*mine = !c)) {
		if (!(c = calloc(1, sizeof(*c))))
			return NULL;
		*c =
		    (struct chunk){.h = ss->im.chunks[k], .state = FETCHING, .len = len, .refs = 1};
		c->next = *bucket(ss, &c->h);
		*bucket(ss, &c->h) = c;
		c->buf = len <= ss->chunk_bytes ? chunk_buf(ss) : NULL;
	} else if (!c->refs++ && c->state == READY) {
		idle_remove(ss, c);
	}
	return c;
}

/* Chunk k (not a zero chunk), referenced: READY, or its error. fill: for a prefetch's pool
 * (fetch_into). */
static int get(struct squib_store_source *ss, uint64_t k, uint64_t len, bool fill,
	       struct chunk **out, struct squib_error_detail *d)
{
	struct chunk *c;
	bool mine;
	int r;

	pthread_mutex_lock(&ss->mu);
	if (!(c = enter_locked(ss, k, len, &mine))) {
		pthread_mutex_unlock(&ss->mu);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	if (!mine) {
		if (c->state == FETCHING)
			ss->st.waits++;
		else if (c->state == READY)
			ss->st.memory_hits++;
		while (c->state == FETCHING)
			pthread_cond_wait(&ss->changed, &ss->mu);
		r = c->err;
		if (r && d)
			*d = c->d;
		if (r)
			put_locked(ss, c);
		pthread_mutex_unlock(&ss->mu);
		*out = r ? NULL : c;
		return r;
	}
	pthread_mutex_unlock(&ss->mu);
	if ((r = fetch_into(ss, c, k, fill, d))) {
		put(ss, c);
		c = NULL;
	}
	*out = c;
	return r;
}

/* ---- read-ahead of demand faults -------------------------------------------------- */

static void *ra_main(void *arg)
{
	struct squib_store_source *ss = arg;
	uint64_t k, ga, off, len;
	uint32_t region;
	struct chunk *c;
	bool mine;

	pthread_mutex_lock(&ss->mu);
	while (!ss->ra_stop) {
		if (!ss->ra_n) {
			pthread_cond_wait(&ss->ra_work, &ss->mu);
			continue;
		}
		k = ss->ra_q[ss->ra_head];
		ss->ra_head = (ss->ra_head + 1) % RA_QUEUE;
		ss->ra_n--;
		/* Into the table under the same lock as off the queue: a demand read finds the
		 * window in one or the other, never reads it beside this thread. */
		c = squib_store_chunk_window(&ss->im.manifest.layout, ss->im.chunk_shift, k,
					     &region, &ga, &off, &len)
			? NULL
			: enter_locked(ss, k, len, &mine);
		pthread_mutex_unlock(&ss->mu);
		/* A failure is left to the demand fault that needs the chunk (it tries again). */
		if (c && mine)
			fetch_into(ss, c, k, true, NULL);
		if (c)
			put(ss, c);
		pthread_mutex_lock(&ss->mu);
	}
	pthread_mutex_unlock(&ss->mu);
	return NULL;
}

static bool ra_queued(const struct squib_store_source *ss, uint64_t k)
{
	for (size_t i = 0; i < ss->ra_n; i++)
		if (ss->ra_q[(ss->ra_head + i) % RA_QUEUE] == k)
			return true;
	return false;
}

/* A demand read entered window k: queue the next windows not here yet (never blocks). */
static void readahead(struct squib_store_source *ss, uint64_t k)
{
	unsigned added;

	pthread_mutex_lock(&ss->mu);
	if (k == ss->ra_last || ss->prefetching || ss->ra_stop) {
		pthread_mutex_unlock(&ss->mu);
		return;
	}
	ss->ra_last = k;
	added = 0;
	while (ss->ra_threads < ss->workers && ss->ra_threads < RA_THREADS &&
	       !pthread_create(&ss->ra_th[ss->ra_threads], NULL, ra_main, ss))
		ss->ra_threads++;
	for (uint64_t j = k + 1; j <= k + RA_WINDOWS && j < ss->im.chunk_count; j++) {
		if (ss->ra_n == RA_QUEUE)
			break;
		if (squib_store_hash_is_zero(&ss->im.chunks[j]) || find(ss, &ss->im.chunks[j]) ||
		    ra_queued(ss, j))
			continue;
		ss->ra_q[(ss->ra_head + ss->ra_n++) % RA_QUEUE] = j;
		added++;
	}
	while (added--) /* one thread per window: a broadcast woke all of them for one */
		pthread_cond_signal(&ss->ra_work);
	pthread_mutex_unlock(&ss->mu);
}

/* Take window k off the read-ahead queue (a demand read is reading it). Under mu. */
static void ra_unqueue(struct squib_store_source *ss, uint64_t k)
{
	for (size_t i = 0; i < ss->ra_n; i++) {
		if (ss->ra_q[(ss->ra_head + i) % RA_QUEUE] != k)
			continue;
		for (; i + 1 < ss->ra_n; i++)
			ss->ra_q[(ss->ra_head + i) % RA_QUEUE] =
			    ss->ra_q[(ss->ra_head + i + 1) % RA_QUEUE];
		ss->ra_n--;
		return;
	}
}

static void ra_stop(struct squib_store_source *ss)
{
	pthread_mutex_lock(&ss->mu);
	ss->ra_stop = true;
	pthread_cond_broadcast(&ss->ra_work);
	pthread_mutex_unlock(&ss->mu);
	for (uint32_t i = 0; i < ss->ra_threads; i++)
		pthread_join(ss->ra_th[i], NULL);
	ss->ra_threads = 0;
}

/* ---- the page source ------------------------------------------------------------ */

/*
 * A read of all of window k (len bytes) that the table does not hold: straight from the
 * disk cache into the reader's buffer, checked there (from_cache: the pager installs
 * nothing before the read returns 0) - no chunk buffer to fill and then copy out of, the
 * second copy a warm fault made that a local file's does not. True when served; false
 * (the chunk is in the table or being fetched, a prefetch is running, or the cache has no
 * good entry): the table's way, which fetches it from the store once.
 */
static bool from_cache_direct(struct squib_store_source *ss, uint64_t k, uint8_t *out, uint64_t len)
{
	const struct squib_store_hash *h = &ss->im.chunks[k];
	bool held;

	if (!ss->cache)
		return false;
	pthread_mutex_lock(&ss->mu);
	/* While a prefetch runs its pool will want the chunk too: through the table, once. */
	if (!(held = find(ss, h) != NULL || ss->prefetching))
		ra_unqueue(ss, k); /* or a read-ahead thread would read it again */
	pthread_mutex_unlock(&ss->mu);
	return !held && !from_cache(ss, h, out, len);
}

static int src_read(void *ctx, uint64_t first, uint64_t count, void *buf,
		    struct squib_error_detail *d)
{
	struct squib_store_source *ss = ctx;
	uint64_t off = first * ss->page_size, end = (first + count) * ss->page_size;
	uint8_t *out = buf;

	while (off < end) {
		uint64_t k, in, left, n;
		struct chunk *c;
		int r;

		if (!window_of(ss, off, &k, &in, &left))
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "page %" PRIu64 " is past the image's RAM",
					      off / ss->page_size);
		n = left < end - off ? left : end - off;
		if (squib_store_hash_is_zero(&ss->im.chunks[k])) {
			memset(out, 0, n);
		} else if (!in && n == left && from_cache_direct(ss, k, out, n)) {
			/* No read-ahead: it hides a store's latency, and a disk cache's read
			 * has little. Ahead, on other threads, it cost more than it saved:
			 * wakeups, waits, a copy through the table - ~1.6x the CPU of a warm
			 * restore without it (bench_store_lazy, DESIGN.md). */
		} else {
			if ((r = get(ss, k, in + left, false, &c, d)))
				return r;
			/* After the demand's own fetch: read-ahead must not delay it. Not
			 * after a chunk the disk cache served (a part of a window, e.g. a
			 * prefetch's run ending in it): as above, no latency to hide. */
			if (!c->cached)
				readahead(ss, k);
			memcpy(out, c->buf + in, n);
			put(ss, c);
		}
		out += n;
		off += n;
	}
	return 0;
}

static void src_release(void *ctx)
{
	struct squib_store_source *ss = ctx;

	if (!ss)
		return;
	ra_stop(ss);
	for (size_t i = 0; ss->buckets && i <= ss->mask; i++)
		while (ss->buckets[i])
			unlink_chunk(ss, ss->buckets[i]);
	free(ss->buckets);
	while (ss->spare_n)
		free(ss->spare[--ss->spare_n]);
	while (ss->dctx_idle)
		ZSTD_freeDCtx(ss->dctx[--ss->dctx_idle]);
	squib_store_cache_close(ss->cache);
	squib_store_image_release(&ss->im);
	free(ss->regions);
	pthread_mutex_destroy(&ss->mu);
	pthread_cond_destroy(&ss->changed);
	pthread_cond_destroy(&ss->ra_work);
	free(ss);
}

static const struct squib_page_source_ops store_source_ops = {src_present, src_read, src_release};

/* ---- opening ------------------------------------------------------------------ */

static int map_regions(struct squib_store_source *ss, struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &ss->im.manifest.layout;
	uint64_t off = 0, k = 0;

	if (!(ss->regions = calloc(l->region_count, sizeof(*ss->regions))))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < l->region_count; i++) {
		const struct squib_mem_region *r = &l->regions[i];

		ss->regions[i] = (struct region_map){off, r->size, r->guest_addr, k};
		k += ((r->guest_addr + r->size - 1) >> ss->im.chunk_shift) -
		     (r->guest_addr >> ss->im.chunk_shift) + 1;
		off += r->size;
	}
	return 0;
}

static int open_cache(struct squib_store_source *ss, const struct squib_store_source_options *o,
		      struct squib_error_detail *d)
{
	if (!o || !o->cache_dir)
		return 0;
	return squib_store_cache_open(
	    o->cache_dir, o->cache_bytes ? o->cache_bytes : SQUIB_STORE_CACHE_DEFAULT_BYTES,
	    &ss->cache, d);
}

static void set_limits(struct squib_store_source *ss, const struct squib_store_source_options *o)
{
	uint64_t mem = o && o->memory_bytes ? o->memory_bytes : SQUIB_STORE_SOURCE_DEFAULT_MEMORY;

	ss->chunk_bytes = 1ull << ss->im.chunk_shift;
	ss->keep = (size_t)(mem / ss->chunk_bytes);
	if (ss->keep < 4)
		ss->keep = 4;
	ss->workers = o && o->prefetch_workers ? o->prefetch_workers : ss->s->opts.workers;
	if (ss->workers > 256)
		ss->workers = 256;
}

int squib_store_source_open(struct squib_store *s, const uint8_t id[SQUIB_MEMORY_ID_SIZE],
			    const struct squib_store_source_options *opts,
			    struct squib_page_source *out, struct squib_store_source **handle,
			    struct squib_error_detail *d)
{
	struct squib_store_source *ss;
	int r;

	if (handle)
		*handle = NULL;
	if (!s || !id || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument");
	memset(out, 0, sizeof(*out));
	if (!(ss = calloc(1, sizeof(*ss))))
		return squib_fail(d, SQUIB_E_NOMEM);
	ss->s = s;
	pthread_mutex_init(&ss->mu, NULL);
	pthread_cond_init(&ss->changed, NULL);
	pthread_cond_init(&ss->ra_work, NULL);
	ss->ra_last = UINT64_MAX;
	if ((r = squib_store_image_get(s, id, &ss->im, d)) || (r = map_regions(ss, d)) ||
	    (r = open_cache(ss, opts, d))) {
		src_release(ss);
		return r;
	}
	set_limits(ss, opts);
	/* Idle chunks plus those in flight (one per thread): short chains. */
	for (ss->mask = 255; ss->mask < 2 * (ss->keep + ss->workers); ss->mask = 2 * ss->mask + 1)
		;
	if (!(ss->buckets = calloc(ss->mask + 1, sizeof(*ss->buckets)))) {
		src_release(ss);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	ss->page_size = ss->im.manifest.layout.page_size;
	*out = (struct squib_page_source){&store_source_ops, ss, ss->page_size,
					  ss->im.manifest.layout.ram_size / ss->page_size};
	if (handle)
		*handle = ss;
	return 0;
}

const struct squib_memory_layout *squib_store_source_layout(const struct squib_store_source *ss)
{
	return ss ? &ss->im.manifest.layout : NULL;
}

void squib_store_source_stats(const struct squib_store_source *ss,
			      struct squib_store_source_stats *out)
{
	struct squib_store_source *m = (struct squib_store_source *)ss;

	pthread_mutex_lock(&m->mu);
	*out = m->st;
	pthread_mutex_unlock(&m->mu);
	out->cache_evicted = m->cache ? squib_store_cache_evicted(m->cache) : 0;
}

/* ---- working-set prefetch -------------------------------------------------------- */

/* A piece of a run inside one window. */
struct piece {
	struct squib_ws_run run;
	uint64_t k, len; /* its window, the window's bytes */
	bool fetch;	 /* a non-zero window: fetched by the pool (once: others wait) */
};

struct prefetch_job {
	struct squib_store_source *ss;
	uint64_t k, len;
};

static int prefetch_one(void *arg, struct squib_error_detail *d)
{
	struct prefetch_job *j = arg;
	struct chunk *c;

	/* A failure is the driver's to report when it reaches the chunk. */
	if (d && !get(j->ss, j->k, j->len, true, &c, NULL))
		put(j->ss, c);
	free(j);
	return 0;
}

static int add_piece(struct piece **v, size_t *n, size_t *cap, const struct piece *p)
{
	if (*n == *cap) {
		struct piece *w = realloc(*v, (*cap = *cap ? 2 * *cap : 64) * sizeof(**v));

		if (!w)
			return SQUIB_E_NOMEM;
		*v = w;
	}
	(*v)[(*n)++] = *p;
	return 0;
}

/* The runs cut at window boundaries, in order; each window's first piece fetches it. */
static int cut_runs(struct squib_store_source *ss, const struct squib_ws_run *runs, uint64_t n,
		    struct piece **out, size_t *count, struct squib_error_detail *d)
{
	uint64_t pages = ss->im.manifest.layout.ram_size / ss->page_size;
	size_t cap = 0;
	int r = 0;

	*out = NULL;
	*count = 0;
	for (uint64_t i = 0; !r && i < n; i++) {
		const struct squib_ws_run *w = &runs[i];

		if (w->first_page > pages || w->page_count > pages - w->first_page)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "working-set run %" PRIu64 " is past the RAM range",
					      i);
		for (uint64_t p = w->first_page; !r && p < w->first_page + w->page_count;) {
			uint64_t k, in, left, np;
			struct piece pc;

			window_of(ss, p * ss->page_size, &k, &in, &left);
			np = left / ss->page_size;
			if (np > w->first_page + w->page_count - p)
				np = w->first_page + w->page_count - p;
			/* Every non-zero piece is queued: a window met again later (runs
			 * ending mid-window) may have left the table by then, and the
			 * pool, not the installing thread, should fetch it again. */
			pc = (struct piece){
			    {p, np}, k, in + left, !squib_store_hash_is_zero(&ss->im.chunks[k])};
			if ((r = add_piece(out, count, &cap, &pc)))
				squib_fail(d, r);
			p += np;
		}
	}
	return r;
}

/* Queue the pool's fetches of pieces [*next, upto). */
static int queue_fetches(struct squib_store_source *ss, struct squib_store_pool *pool,
			 const struct piece *v, size_t *next, size_t upto,
			 struct squib_error_detail *d)
{
	for (; *next < upto; (*next)++) {
		struct prefetch_job *j;
		int r;

		if (!v[*next].fetch)
			continue;
		if (!(j = malloc(sizeof(*j))))
			return squib_fail(d, SQUIB_E_NOMEM);
		*j = (struct prefetch_job){ss, v[*next].k, v[*next].len};
		if ((r = squib_store_pool_submit(pool, j, d))) {
			free(j);
			return r;
		}
	}
	return 0;
}

/* Chunk k referenced if it is READY now (never waits, never fetches). */
static bool peek(struct squib_store_source *ss, uint64_t k, struct chunk **out)
{
	struct chunk *c;

	pthread_mutex_lock(&ss->mu);
	if ((c = find(ss, &ss->im.chunks[k])) && c->state == READY) {
		if (!c->refs++)
			idle_remove(ss, c);
	} else {
		c = NULL;
	}
	pthread_mutex_unlock(&ss->mu);
	*out = c;
	return c != NULL;
}

/*
 * Install pieces [*i, ...): the first once its chunk is here, then the ones after it whose
 * chunks are here already, up to INSTALL_BATCH of them in one call (an install has a fixed
 * cost). The chunks are held while installing, so they stay.
 */
#define INSTALL_BATCH 16
static int install_batch(struct squib_store_source *ss, const struct piece *v, size_t count,
			 size_t *i, squib_store_install_fn install, void *ctx, uint64_t *installed,
			 struct squib_error_detail *d)
{
	struct chunk *held[INSTALL_BATCH] = {0};
	struct squib_ws_run runs[INSTALL_BATCH];
	uint64_t got = 0;
	size_t n = 0;
	int r = 0;

	for (; *i < count && n < INSTALL_BATCH; (*i)++, n++) {
		const struct piece *pc = &v[*i];

		runs[n] = pc->run;
		if (squib_store_hash_is_zero(&ss->im.chunks[pc->k]))
			continue;
		if (!n)
			r = get(ss, pc->k, pc->len, false, &held[n], d);
		else if (!peek(ss, pc->k, &held[n]))
			break;
		if (r)
			break;
	}
	if (!r)
		r = install(ctx, runs, n, &got, d);
	*installed += got;
	for (size_t j = 0; j < n; j++)
		if (held[j])
			put(ss, held[j]);
	return r;
}

/*
 * Install pieces [*i, ...) the way demand reads go, on this thread, while the disk cache
 * holds every chunk: install's reads take a whole window's entry straight into the
 * pager's buffer (from_cache_direct). The pool would read each entry into the chunk table
 * on another thread and install would copy it out - a wakeup and a copy per window that a
 * warm cache's read (no latency to hide) does not repay on a few CPUs. Returns at the
 * first batch that fetched from the store: the rest is the pool's.
 */
static int install_warm(struct squib_store_source *ss, const struct piece *v, size_t count,
			size_t *i, squib_store_install_fn install, void *ctx, uint64_t *installed,
			struct squib_error_detail *d)
{
	struct squib_ws_run runs[INSTALL_BATCH];
	uint64_t fetched, before = 0;
	int r = 0;

	for (fetched = before; !r && *i < count && fetched == before;) {
		uint64_t got = 0;
		size_t n = 0;

		for (; *i < count && n < INSTALL_BATCH; (*i)++)
			runs[n++] = v[*i].run;
		pthread_mutex_lock(&ss->mu);
		before = ss->st.chunks_fetched;
		pthread_mutex_unlock(&ss->mu);
		r = install(ctx, runs, n, &got, d);
		*installed += got;
		pthread_mutex_lock(&ss->mu);
		fetched = ss->st.chunks_fetched;
		pthread_mutex_unlock(&ss->mu);
	}
	return r;
}

int squib_store_source_prefetch(struct squib_store_source *ss, const struct squib_ws_run *runs,
				uint64_t n, squib_store_install_fn install, void *ctx,
				uint64_t *installed, struct squib_error_detail *d)
{
	struct squib_store_pool *pool = NULL;
	/* Fetched ahead of the installs, bounded so they stay in the chunk table. */
	size_t ahead = ss ? ss->keep / 2 : 0, count = 0, next = 0;
	struct piece *v = NULL;
	uint64_t got = 0;
	int r, r2;

	if (installed)
		*installed = 0;
	if (!ss || !install || (n && !runs))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument");
	if ((r = cut_runs(ss, runs, n, &v, &count, d)) ||
	    (ss->cache && (r = install_warm(ss, v, count, &next, install, ctx, &got, d))) ||
	    next == count ||
	    (r = squib_store_pool_start(ss->workers, 4 * ss->workers, prefetch_one, &pool, d))) {
		free(v);
		if (installed)
			*installed = got;
		return r;
	}
	if (ahead > 16 * (size_t)ss->workers)
		ahead = 16 * (size_t)ss->workers;
	pthread_mutex_lock(&ss->mu);
	ss->prefetching++; /* the pool reads ahead: demand faults do not add their own */
	pthread_mutex_unlock(&ss->mu);
	for (size_t i = next; !r && i < count;) {
		r = queue_fetches(ss, pool, v, &next, i + ahead < count ? i + ahead : count, d);
		if (!r)
			r = install_batch(ss, v, count, &i, install, ctx, &got, d);
	}
	r2 = squib_store_pool_finish(pool, NULL);
	pthread_mutex_lock(&ss->mu);
	ss->prefetching--;
	pthread_mutex_unlock(&ss->mu);
	free(v);
	if (installed)
		*installed = got;
	return r ? r : r2;
}

/* ---- naming -------------------------------------------------------------------------- */

int squib_store_default_cache_dir(char **out, struct squib_error_detail *d)
{
	const char *v;
	int n = -1;

	*out = NULL;
	if ((v = getenv("SQUIB_CACHE_DIR")) && *v)
		n = asprintf(out, "%s", v);
	else if ((v = getenv("XDG_CACHE_HOME")) && *v == '/')
		n = asprintf(out, "%s/squib-snapshot/chunks", v);
	else if ((v = getenv("HOME")) && *v == '/')
		n = asprintf(out, "%s/.cache/squib-snapshot/chunks", v);
	else
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "no chunk cache directory: SQUIB_CACHE_DIR, XDG_CACHE_HOME "
				      "and HOME are unset");
	if (n < 0) {
		*out = NULL;
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	return 0;
}

int squib_store_split_ref(const char *ref, char **url, uint8_t id[SQUIB_MEMORY_ID_SIZE],
			  struct squib_error_detail *d)
{
	const char *slash = ref ? strrchr(ref, '/') : NULL;

	*url = NULL;
	if (!slash || slash == ref || squib_store_parse_id(slash + 1, id))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "'%.300s' is not URL/ID (a store URL, then the image's 32 "
				      "hex digits)",
				      ref ? ref : "(null)");
	if (!(*url = strndup(ref, (size_t)(slash - ref))))
		return squib_fail(d, SQUIB_E_NOMEM);
	return 0;
}
