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

/* ==== bitmap helpers for implementations =================================== */

uint64_t squib_dirty_bitmap_or_words(struct squib_dirty_bitmap *dst, uint64_t gpa,
				     uint64_t page_size, const uint64_t *words, uint64_t nbits)
{
	return track_or_words(dst, gpa, page_size, words, nbits);
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
