/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gc and the push leases that make it safe (docs/DESIGN.md "Snapshot store",
 * the case analysis). Each side first announces itself with an object of
 * its own (a push: leases/<random>; a gc: gc/<random>) and then lists the
 * other side's: on a store with read-after-write consistency at least one
 * of two racing parties sees the other, so a gc never sweeps while a push
 * that may reuse or upload chunks runs. Ages are measured on the server's
 * clock: "now" is the mtime the server gave our own announcement.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "../util.h"
#include "store_internal.h"

/* A lease or marker older than this (no refresh) belongs to a dead process. */
#define STORE_LEASE_TTL_S  3600
#define STORE_LEASE_WAIT_S 60

static int announce(struct squib_store *s, const char *dir, char key[SQUIB_STORE_KEY_MAX],
		    int64_t *now, struct squib_error_detail *d)
{
	char body[128];
	uint64_t rnd = 0;
	bool have = false;
	int r;

	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "getrandom");
	snprintf(key, SQUIB_STORE_KEY_MAX, "%s/%016" PRIx64, dir, rnd);
	snprintf(body, sizeof(body), "pid %ld\n", (long)getpid());
	if ((r = squib_store_put(s, key, body, strlen(body), d)) ||
	    (r = squib_store_head(s, key, &have, NULL, now, d)))
		return r;
	return have ? 0 : squib_fail_msg(d, SQUIB_E_IO, "%s vanished right after its upload", key);
}

struct others {
	struct squib_store *s;
	const char *mine;
	int64_t now;
	bool reap; /* remove stale ones */
	uint64_t live, reaped;
	struct squib_error_detail *d;
};

static int on_other(void *ctx, const struct squib_store_object *o)
{
	struct others *c = ctx;

	if (!strcmp(o->key, c->mine))
		return 0;
	if (o->mtime >= c->now - STORE_LEASE_TTL_S) {
		c->live++;
		return 0;
	}
	if (!c->reap)
		return 0;
	c->reaped++;
	return squib_store_delete(c->s, o->key, c->d);
}

static int count_others(struct others *c, const char *prefix)
{
	return squib_store_list(c->s, prefix, on_other, c, c->d);
}

int squib_store_lease_take(struct squib_store *s, struct squib_store_lease *l,
			   struct squib_error_detail *d)
{
	/* Back off 50 ms doubling to 1 s: a short gc costs a push little. */
	for (unsigned waited_ms = 0, step = 50;;
	     waited_ms += step, step = step < 500 ? 2 * step : 1000) {
		struct others c = {.s = s, .mine = "", .d = d};
		int r;

		if ((r = announce(s, "leases", l->key, &c.now, d)))
			return r;
		l->held = true;
		if ((r = count_others(&c, "gc/")) || !c.live)
			return r;
		squib_store_lease_drop(s, l);
		if (waited_ms >= STORE_LEASE_WAIT_S * 1000u)
			return squib_fail_msg(d, SQUIB_E_BUSY, "%s: a gc is running (waited %u s)",
					      s->url, waited_ms / 1000);
		usleep(step * 1000u);
	}
}

int squib_store_lease_check(struct squib_store *s, struct squib_store_lease *l,
			    struct squib_error_detail *d)
{
	char body[64];
	bool have = false;
	int r;

	if ((r = squib_store_head(s, l->key, &have, NULL, NULL, d)))
		return r;
	if (!have)
		return squib_fail_msg(d, SQUIB_E_BUSY,
				      "%s: this push's lease %s expired and was removed by a gc; "
				      "push again",
				      s->url, l->key);
	snprintf(body, sizeof(body), "pid %ld\n", (long)getpid());
	return squib_store_put(s, l->key, body, strlen(body), d); /* refresh */
}

void squib_store_lease_drop(struct squib_store *s, struct squib_store_lease *l)
{
	if (l->held)
		squib_store_delete(s, l->key, NULL);
	l->held = false;
}

/* ---- gc ------------------------------------------------------------------- */

struct gc {
	struct squib_store *s;
	struct squib_store_idset live;	     /* plain chunks: mapped, or a mapped delta's base */
	struct squib_store_idset live_delta; /* mapped deltas: squib_store_delta_pair_id */
	struct squib_store_gc_stats *st;
	bool dry_run;
	struct squib_error_detail *d;
};

static int mark_image(void *ctx, const uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	struct gc *g = ctx;
	struct squib_store_image im;
	bool added;
	int r;

	if ((r = squib_store_image_get(g->s, id, &im, g->d)))
		return r; /* a damaged image stops the gc: never sweep what it may map */
	g->st->images++;
	/* Keys only: a delta's base is in the image, never read from the delta. */
	for (uint64_t k = 0; !r && k < im.chunk_count; k++) {
		const struct squib_store_hash *base = squib_store_image_base(&im, k);
		struct squib_store_hash pair;

		if (squib_store_hash_is_zero(&im.chunks[k]))
			continue;
		if (squib_store_hash_is_zero(base)) {
			if (squib_store_idset_add(&g->live, &im.chunks[k], &added))
				r = squib_fail(g->d, SQUIB_E_NOMEM);
		} else if ((r = squib_store_delta_pair_id(&im.chunks[k], base, &pair))) {
			r = squib_fail(g->d, r);
		} else if (squib_store_idset_add(&g->live, base, &added) ||
			   squib_store_idset_add(&g->live_delta, &pair, &added)) {
			r = squib_fail(g->d, SQUIB_E_NOMEM);
		}
	}
	squib_store_image_release(&im);
	return r;
}

static int sweep_chunk(void *ctx, const struct squib_store_object *o)
{
	struct gc *g = ctx;
	struct squib_store_hash h, base, pair;
	bool live;

	if (!squib_store_parse_chunk_key(o->key, &h))
		live = squib_store_idset_has(&g->live, &h);
	else if (!squib_store_parse_delta_key(o->key, &h, &base) &&
		 !squib_store_delta_pair_id(&h, &base, &pair))
		live = squib_store_idset_has(&g->live_delta, &pair);
	else
		return 0; /* not ours: leave it */
	if (live) {
		g->st->chunks_live++;
		return 0;
	}
	g->st->chunks_deleted++;
	g->st->bytes_deleted += o->size;
	return g->dry_run ? 0 : squib_store_delete(g->s, o->key, g->d);
}

static int gc_locked(struct gc *g, int64_t now, const char *marker)
{
	struct others c = {.s = g->s, .mine = marker, .now = now, .reap = true, .d = g->d};
	int r;

	if ((r = count_others(&c, "leases/")))
		return r;
	if (c.live)
		return squib_fail_msg(g->d, SQUIB_E_BUSY,
				      "%s: %" PRIu64 " push(es) in progress; gc again later",
				      g->s->url, c.live);
	if ((r = count_others(&c, "gc/")))
		return r;
	if (c.live)
		return squib_fail_msg(g->d, SQUIB_E_BUSY, "%s: another gc is running", g->s->url);
	g->st->leases_expired = c.reaped;
	/* No push is alive, and a writer's partial object is minutes old at most. */
	if (g->s->ops->reap_partial && !g->dry_run &&
	    (r = g->s->ops->reap_partial(g->s->be, now - STORE_LEASE_TTL_S, &g->st->partial_deleted,
					 g->d)))
		return r;
	if ((r = squib_store_images(g->s, mark_image, g, g->d)))
		return r;
	if ((r = squib_store_list(g->s, "chunks/", sweep_chunk, g, g->d)))
		return r;
	return squib_store_list(g->s, "deltas/", sweep_chunk, g, g->d);
}

int squib_store_gc(struct squib_store *s, bool dry_run, struct squib_store_gc_stats *stats,
		   struct squib_error_detail *d)
{
	struct squib_store_gc_stats local = {0};
	struct gc g = {.s = s, .st = stats ? stats : &local, .dry_run = dry_run, .d = d};
	char marker[SQUIB_STORE_KEY_MAX];
	int64_t now = 0;
	int r;

	memset(g.st, 0, sizeof(*g.st));
	if ((r = announce(s, "gc", marker, &now, d)))
		return r;
	r = gc_locked(&g, now, marker);
	squib_store_delete(s, marker, NULL);
	squib_store_idset_free(&g.live);
	squib_store_idset_free(&g.live_delta);
	return r;
}
