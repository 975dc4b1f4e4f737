/* SPDX-License-Identifier: Apache-2.0 */
/* The dirty-tracker interface, the tracker set (union + give-back), and the VMM-marks tracker. */
#include <squib/track.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "track_internal.h"

/* ==== memory map ========================================================== */

static uint64_t host_page(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? (uint64_t)ps : 4096;
}

static int check_region(const struct squib_guest_region *r, size_t i, uint64_t page, bool need_hva,
			struct squib_error_detail *d)
{
	if (r->size == 0 || r->size % page || r->gpa % page)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "region %zu: gpa 0x%" PRIx64 " size 0x%" PRIx64
				      " must be non-empty multiples of the host page (%" PRIu64 ")",
				      i, r->gpa, r->size, page);
	if (r->size > UINT64_MAX - r->gpa)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "region %zu: gpa range overflows", i);
	if (need_hva && (!r->hva || (uintptr_t)r->hva % page))
		return squib_fail_msg(
		    d, SQUIB_E_INVALID_ARGUMENT,
		    "region %zu: hva must be a non-NULL host-page-aligned address", i);
	if (need_hva && r->size > UINTPTR_MAX - (uintptr_t)r->hva)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "region %zu: host range overflows", i);
	return 0;
}

/* Insertion sort by gpa: at most SQUIB_TRACK_MAX_REGIONS entries. */
static void sort_by_gpa(struct squib_guest_region *r, size_t n)
{
	for (size_t i = 1; i < n; i++) {
		struct squib_guest_region x = r[i];
		size_t j = i;

		for (; j > 0 && r[j - 1].gpa > x.gpa; j--)
			r[j] = r[j - 1];
		r[j] = x;
	}
}

static bool host_overlap(const struct squib_guest_region *a, const struct squib_guest_region *b)
{
	uintptr_t a0 = (uintptr_t)a->hva, b0 = (uintptr_t)b->hva;

	return a0 < b0 + b->size && b0 < a0 + a->size;
}

static int check_overlaps(const struct track_map *m, bool need_hva, struct squib_error_detail *d)
{
	for (size_t i = 1; i < m->count; i++)
		if (m->r[i].gpa < m->r[i - 1].gpa + m->r[i - 1].size)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "regions at gpa 0x%" PRIx64 " and 0x%" PRIx64
					      " overlap",
					      m->r[i - 1].gpa, m->r[i].gpa);
	for (size_t i = 0; need_hva && i < m->count; i++)
		for (size_t j = i + 1; j < m->count; j++)
			if (host_overlap(&m->r[i], &m->r[j]))
				return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
						      "regions at gpa 0x%" PRIx64 " and 0x%" PRIx64
						      " overlap in host memory",
						      m->r[i].gpa, m->r[j].gpa);
	return 0;
}

int track_map_init(struct track_map *m, const struct squib_memory_map *map, bool need_hva,
		   struct squib_error_detail *d)
{
	int rc;

	if (!m || !map || !map->regions)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL memory map");
	if (map->count == 0 || map->count > SQUIB_TRACK_MAX_REGIONS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "memory map needs 1..%u regions, has %zu",
				      SQUIB_TRACK_MAX_REGIONS, map->count);
	m->host_page = host_page();
	m->count = map->count;
	for (size_t i = 0; i < map->count; i++) {
		rc = check_region(&map->regions[i], i, m->host_page, need_hva, d);
		if (rc)
			return rc;
		m->r[i] = map->regions[i];
	}
	sort_by_gpa(m->r, m->count);
	return check_overlaps(m, need_hva, d);
}

enum track_overlap track_region_overlap(const struct squib_guest_region *r,
					const struct squib_dirty_bitmap *bm)
{
	uint64_t b0 = squib_dirty_bitmap_ram_start(bm);
	uint64_t b1 =
	    b0 + squib_dirty_bitmap_ram_size(bm); /* cannot overflow: checked at creation */
	uint64_t r1 = r->gpa + r->size;

	if (r1 <= b0 || r->gpa >= b1)
		return TRACK_OUTSIDE;
	if (r->gpa >= b0 && r1 <= b1)
		return TRACK_INSIDE;
	return TRACK_STRADDLES;
}

/* ==== moving bits between ranges =========================================== */

/*
 * Consecutive source pages, marked in dst with one set_range per run rather
 * than one per page (a KVM log or a 2 MiB coarse page is mostly runs).
 */
struct run {
	struct squib_dirty_bitmap *dst;
	uint64_t base;	/* guest-physical address of source page 0 */
	uint64_t page;	/* source page size */
	uint64_t limit; /* bytes from base the source covers: a trailing partial page is clipped */
	uint64_t first; /* first page of the pending run */
	uint64_t len;	/* its length in pages; 0: none pending */
	uint64_t newly;
};

static void run_flush(struct run *r)
{
	uint64_t off = r->first * r->page, bytes = r->len * r->page;

	if (!r->len)
		return;
	if (bytes > r->limit - off)
		bytes = r->limit - off;
	r->newly += squib_dirty_bitmap_set_range(r->dst, r->base + off, bytes);
	r->len = 0;
}

static void run_add(struct run *r, uint64_t page)
{
	if (r->len && page == r->first + r->len) {
		r->len++;
		return;
	}
	run_flush(r);
	r->first = page;
	r->len = 1;
}

static int run_add_cb(void *ctx, uint64_t page)
{
	run_add(ctx, page);
	return 0;
}

static struct run run_of(struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src)
{
	return (struct run){.dst = dst,
			    .base = squib_dirty_bitmap_ram_start(src),
			    .page = squib_dirty_bitmap_page_size(src),
			    .limit = squib_dirty_bitmap_ram_size(src)};
}

static bool same_range(const struct squib_dirty_bitmap *a, const struct squib_dirty_bitmap *b)
{
	return squib_dirty_bitmap_ram_start(a) == squib_dirty_bitmap_ram_start(b) &&
	       squib_dirty_bitmap_ram_size(a) == squib_dirty_bitmap_ram_size(b);
}

void track_drain_into(struct squib_dirty_bitmap *dst, struct squib_dirty_bitmap *src)
{
	struct run r;

	if (same_range(dst, src)) {
		squib_dirty_bitmap_drain_merge(dst, src, NULL);
		return;
	}
	r = run_of(dst, src);
	squib_dirty_bitmap_drain_into(src, run_add_cb, &r, NULL);
	run_flush(&r);
}

/* The src pages [*first, *last] that overlap dst's range; false when none do. */
static bool overlap_pages(const struct squib_dirty_bitmap *dst,
			  const struct squib_dirty_bitmap *src, uint64_t *first, uint64_t *last)
{
	uint64_t s0 = squib_dirty_bitmap_ram_start(src), s1 = s0 + squib_dirty_bitmap_ram_size(src);
	uint64_t d0 = squib_dirty_bitmap_ram_start(dst), d1 = d0 + squib_dirty_bitmap_ram_size(dst);
	uint64_t lo = s0 > d0 ? s0 : d0, hi = s1 < d1 ? s1 : d1;

	if (lo >= hi)
		return false;
	*first = (lo - s0) >> squib_dirty_bitmap_page_shift(src);
	*last = (hi - 1 - s0) >> squib_dirty_bitmap_page_shift(src);
	return true;
}

void track_or_overlap(struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src)
{
	uint64_t first, last;
	struct run r;

	if (same_range(dst, src)) {
		squib_dirty_bitmap_merge(dst, src, NULL);
		return;
	}
	if (!overlap_pages(dst, src, &first, &last))
		return;
	/* Give-back runs once per failed Diff: a test per page is cheap enough. */
	r = run_of(dst, src);
	for (uint64_t p = first; p <= last; p++)
		if (squib_dirty_bitmap_test_by_index(src, p))
			run_add(&r, p);
	run_flush(&r);
}

uint64_t squib_dirty_bitmap_or_words(struct squib_dirty_bitmap *dst, uint64_t gpa,
				     uint64_t page_size, const uint64_t *words, uint64_t nbits)
{
	struct run r = {dst, gpa, page_size, 0, 0, 0, 0};

	if (!dst || !words || !page_size || (page_size & (page_size - 1)))
		return 0;
	/* Bits past 2^64 stand for no address. */
	if (nbits > (UINT64_MAX - gpa) / page_size)
		nbits = (UINT64_MAX - gpa) / page_size;
	r.limit = nbits * page_size;
	for (uint64_t w = 0; w < (nbits + 63) / 64; w++) {
		uint64_t bits = words[w];

		if (w == nbits / 64)
			bits &= (1ull << (nbits % 64)) - 1; /* the tail of the last word */
		for (; bits; bits &= bits - 1)
			run_add(&r, w * 64 + (uint64_t)__builtin_ctzll(bits));
	}
	run_flush(&r);
	return r.newly;
}

/* ==== per-region bitmaps =================================================== */

int track_bits_init(struct track_bits *b, const struct track_map *m, struct squib_error_detail *d)
{
	memset(b, 0, sizeof(*b));
	for (size_t i = 0; i < m->count; i++) {
		int rc =
		    squib_dirty_bitmap_new(m->r[i].gpa, m->r[i].size, m->host_page, &b->bm[i], d);

		if (rc) {
			track_bits_destroy(b);
			return rc;
		}
		b->count = i + 1;
	}
	return 0;
}

void track_bits_destroy(struct track_bits *b)
{
	for (size_t i = 0; i < b->count; i++)
		squib_dirty_bitmap_free(b->bm[i]);
	b->count = 0;
}

uint64_t track_bits_mark(struct track_bits *b, uint64_t gpa, uint64_t len)
{
	uint64_t newly = 0;

	for (size_t i = 0; i < b->count; i++)
		newly += squib_dirty_bitmap_set_range(b->bm[i], gpa, len);
	return newly;
}

static bool region_inside(const struct squib_dirty_bitmap *region_bm,
			  const struct squib_dirty_bitmap *outer)
{
	struct squib_guest_region r = {squib_dirty_bitmap_ram_start(region_bm),
				       squib_dirty_bitmap_ram_size(region_bm), NULL, 0};

	return track_region_overlap(&r, outer) == TRACK_INSIDE;
}

void track_bits_drain(struct track_bits *b, struct squib_dirty_bitmap *dst)
{
	for (size_t i = 0; i < b->count; i++)
		if (region_inside(b->bm[i], dst))
			track_drain_into(dst, b->bm[i]);
}

void track_bits_give_back(struct track_bits *b, const struct squib_dirty_bitmap *src)
{
	for (size_t i = 0; i < b->count; i++)
		if (region_inside(b->bm[i], src))
			track_or_overlap(b->bm[i], src);
}

void track_bits_clear(struct track_bits *b)
{
	for (size_t i = 0; i < b->count; i++)
		squib_dirty_bitmap_clear(b->bm[i]);
}

/* ==== the generic tracker ================================================== */

struct squib_tracker {
	const struct squib_tracker_ops *ops;
	void *ctx;
	pthread_mutex_t lock; /* serialises the control calls */
	_Atomic bool active;  /* written under lock; read lock-free by is_active */
	struct track_map map;
};

static bool ops_complete(const struct squib_tracker_ops *ops)
{
	return ops && ops->start && ops->harvest && ops->give_back && ops->stop && ops->free;
}

int squib_tracker_new(const struct squib_tracker_ops *ops, void *ctx,
		      const struct squib_memory_map *map, struct squib_tracker **out,
		      struct squib_error_detail *d)
{
	struct squib_tracker *t = NULL;
	int rc = 0;

	if (!ops_complete(ops) || !out)
		rc = squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				    "NULL or incomplete ops, or NULL out");
	else if (!(t = calloc(1, sizeof(*t))))
		rc = squib_fail(d, SQUIB_E_NOMEM);
	else if (!(rc = track_map_init(&t->map, map, false, d)) &&
		 pthread_mutex_init(&t->lock, NULL))
		rc = squib_fail(d, SQUIB_E_NOMEM);
	if (rc) {
		free(t);
		if (ops && ops->free)
			ops->free(ctx); /* the tracker owns ctx from the call on */
		if (out)
			*out = NULL;
		return rc;
	}
	t->ops = ops;
	t->ctx = ctx;
	atomic_init(&t->active, false);
	*out = t;
	return 0;
}

void squib_tracker_free(struct squib_tracker *t)
{
	if (!t)
		return;
	squib_tracker_stop(t, NULL);
	t->ops->free(t->ctx);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

const char *squib_tracker_name(const struct squib_tracker *t)
{
	return t && t->ops->name ? t->ops->name : "";
}

bool squib_tracker_is_active(const struct squib_tracker *t)
{
	return t && atomic_load_explicit(&t->active, memory_order_acquire);
}

size_t squib_tracker_region_count(const struct squib_tracker *t)
{
	return t ? t->map.count : 0;
}

const struct squib_guest_region *squib_tracker_region(const struct squib_tracker *t, size_t i)
{
	return t && i < t->map.count ? &t->map.r[i] : NULL;
}

void *squib_tracker_ctx(const struct squib_tracker *t)
{
	return t ? t->ctx : NULL;
}

const struct squib_tracker_ops *track_ops(const struct squib_tracker *t)
{
	return t ? t->ops : NULL;
}

/* Every region must be wholly inside or wholly outside bm. Caller holds t->lock. */
static int check_bitmap(const struct squib_tracker *t, const struct squib_dirty_bitmap *bm,
			struct squib_error_detail *d)
{
	if (!bm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL bitmap");
	for (size_t i = 0; i < t->map.count; i++)
		if (track_region_overlap(&t->map.r[i], bm) == TRACK_STRADDLES)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "region at gpa 0x%" PRIx64 " (0x%" PRIx64
					      " bytes) straddles the bitmap's range",
					      t->map.r[i].gpa, t->map.r[i].size);
	return 0;
}

/* Call an op of the tracker (ctx first, d last) under the backend rule of squib/error.h. */
#define TRACKER_OP(t, d, op, ...)                                                                  \
	(squib_error_clear(d),                                                                     \
	 squib_backend_rc((t)->ops->op((t)->ctx, ##__VA_ARGS__, (d)), (d), "%s tracker: %s",       \
			  (t)->ops->name ? (t)->ops->name : "?", #op))

static int check_state(const struct squib_tracker *t, bool want_active,
		       struct squib_error_detail *d)
{
	if (atomic_load_explicit(&t->active, memory_order_relaxed) == want_active)
		return 0;
	return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "%s tracker is %s", t->ops->name,
			      want_active ? "not started" : "already started");
}

int squib_tracker_start(struct squib_tracker *t, struct squib_error_detail *d)
{
	int rc;

	if (!t)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "tracker is NULL");
	pthread_mutex_lock(&t->lock);
	rc = check_state(t, false, d);
	if (!rc)
		rc = TRACKER_OP(t, d, start);
	if (!rc)
		atomic_store_explicit(&t->active, true, memory_order_release);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int squib_tracker_harvest(struct squib_tracker *t, struct squib_dirty_bitmap *dst,
			  struct squib_error_detail *d)
{
	int rc;

	if (!t)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "tracker is NULL");
	pthread_mutex_lock(&t->lock);
	rc = check_state(t, true, d);
	if (!rc)
		rc = check_bitmap(t, dst, d);
	if (!rc)
		rc = TRACKER_OP(t, d, harvest, dst);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int squib_tracker_give_back(struct squib_tracker *t, const struct squib_dirty_bitmap *src,
			    struct squib_error_detail *d)
{
	int rc;

	if (!t)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "tracker is NULL");
	pthread_mutex_lock(&t->lock);
	rc = check_state(t, true, d);
	if (!rc)
		rc = check_bitmap(t, src, d);
	if (!rc)
		rc = TRACKER_OP(t, d, give_back, src);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int squib_tracker_reset_after_commit(struct squib_tracker *t, struct squib_error_detail *d)
{
	int rc;

	if (!t)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "tracker is NULL");
	pthread_mutex_lock(&t->lock);
	rc = check_state(t, true, d);
	if (!rc && t->ops->reset_after_commit)
		rc = TRACKER_OP(t, d, reset_after_commit);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int squib_tracker_stop(struct squib_tracker *t, struct squib_error_detail *d)
{
	int rc = 0;

	if (!t)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "tracker is NULL");
	pthread_mutex_lock(&t->lock);
	if (atomic_load_explicit(&t->active, memory_order_relaxed)) {
		rc = TRACKER_OP(t, d, stop);
		/* Inactive even on failure: the implementation disarms what it can. */
		atomic_store_explicit(&t->active, false, memory_order_release);
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

/* ==== the tracker set ====================================================== */

int squib_tracker_set_add(struct squib_tracker_set *set, struct squib_tracker *t,
			  struct squib_error_detail *d)
{
	if (!set || !t || set->count > SQUIB_TRACKER_SET_MAX)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL set or tracker");
	if (set->count == SQUIB_TRACKER_SET_MAX)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "tracker set is full (%u)",
				      SQUIB_TRACKER_SET_MAX);
	for (size_t i = 0; i < set->count; i++)
		if (set->trackers[i] == t)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "tracker already in the set");
	set->trackers[set->count++] = t;
	return 0;
}

static bool set_valid(const struct squib_tracker_set *set)
{
	return set && set->count <= SQUIB_TRACKER_SET_MAX;
}

int squib_tracker_set_give_back(struct squib_tracker_set *set, const struct squib_dirty_bitmap *src,
				struct squib_error_detail *d)
{
	int first = 0;

	if (!set_valid(set) || !src)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "NULL or corrupt set, or NULL bitmap");
	/* Every tracker gets the whole union: one failing must not keep bits from the others. */
	for (size_t i = 0; i < set->count; i++) {
		int rc;

		if (!squib_tracker_is_active(set->trackers[i]))
			continue;
		rc = squib_tracker_give_back(set->trackers[i], src, first ? NULL : d);
		if (rc && !first)
			first = rc;
	}
	return first;
}

int squib_tracker_set_harvest(struct squib_tracker_set *set, struct squib_dirty_bitmap *dst,
			      struct squib_error_detail *d)
{
	if (!set_valid(set) || !dst)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "NULL or corrupt set, or NULL bitmap");
	for (size_t i = 0; i < set->count; i++) {
		int rc;

		if (!squib_tracker_is_active(set->trackers[i]))
			continue;
		rc = squib_tracker_harvest(set->trackers[i], dst, d);
		if (rc) {
			/* The trackers before this one handed their bits over: return them all. */
			squib_tracker_set_give_back(set, dst, NULL);
			return rc;
		}
	}
	return 0;
}

int squib_tracker_set_reset_after_commit(struct squib_tracker_set *set,
					 struct squib_error_detail *d)
{
	int first = 0;

	if (!set_valid(set))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL or corrupt set");
	for (size_t i = 0; i < set->count; i++) {
		int rc;

		if (!squib_tracker_is_active(set->trackers[i]))
			continue;
		rc = squib_tracker_reset_after_commit(set->trackers[i], first ? NULL : d);
		if (rc && !first)
			first = rc;
	}
	return first;
}

/* ==== VMM marks ============================================================ */

struct vmm_marks {
	_Atomic bool recording; /* marks while stopped are dropped */
	struct track_bits bits;
};

static int marks_start(void *ctx, struct squib_error_detail *d)
{
	struct vmm_marks *m = ctx;

	(void)d;
	track_bits_clear(&m->bits); /* a new session: earlier writes are not this session's */
	atomic_store_explicit(&m->recording, true, memory_order_release);
	return 0;
}

static int marks_harvest(void *ctx, struct squib_dirty_bitmap *dst, struct squib_error_detail *d)
{
	struct vmm_marks *m = ctx;

	(void)d;
	track_bits_drain(&m->bits, dst);
	return 0;
}

static int marks_give_back(void *ctx, const struct squib_dirty_bitmap *src,
			   struct squib_error_detail *d)
{
	struct vmm_marks *m = ctx;

	(void)d;
	track_bits_give_back(&m->bits, src);
	return 0;
}

static int marks_stop(void *ctx, struct squib_error_detail *d)
{
	struct vmm_marks *m = ctx;

	(void)d;
	atomic_store_explicit(&m->recording, false, memory_order_release);
	return 0;
}

static void marks_free(void *ctx)
{
	struct vmm_marks *m = ctx;

	if (!m)
		return;
	track_bits_destroy(&m->bits);
	free(m);
}

static const struct squib_tracker_ops vmm_marks_ops = {
    .name = "vmm-marks",
    .start = marks_start,
    .harvest = marks_harvest,
    .give_back = marks_give_back,
    .reset_after_commit = NULL, /* harvest already drained; nothing kept for give-back */
    .stop = marks_stop,
    .free = marks_free,
};

int squib_tracker_vmm_marks_new(const struct squib_memory_map *map, struct squib_tracker **out,
				struct squib_error_detail *d)
{
	struct vmm_marks *m;
	struct track_map tm;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "out is NULL");
	*out = NULL;
	rc = track_map_init(&tm, map, false, d);
	if (rc)
		return rc;
	m = calloc(1, sizeof(*m));
	if (!m)
		return squib_fail(d, SQUIB_E_NOMEM);
	atomic_init(&m->recording, false);
	rc = track_bits_init(&m->bits, &tm, d);
	if (rc) {
		free(m);
		return rc;
	}
	return squib_tracker_new(&vmm_marks_ops, m, map, out, d);
}

uint64_t squib_tracker_mark_write(struct squib_tracker *t, uint64_t gpa, uint64_t len)
{
	struct vmm_marks *m;

	if (!t || t->ops != &vmm_marks_ops)
		return 0;
	m = t->ctx;
	if (!atomic_load_explicit(&m->recording, memory_order_acquire))
		return 0;
	return track_bits_mark(&m->bits, gpa, len);
}
