/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading a window's chunk, plain or delta (docs/FORMAT.md §S.4): a plain
 * chunk is chunks/<name>; a delta is deltas/<name>.<base>, a zstd frame
 * compressed against its base's bytes, and its base is always a plain chunk
 * (the writers never make a delta's base a delta), so a window costs at most
 * two GETs. Both objects pass §S.4's checks: the base hashes to its name
 * before it is used as a reference, the delta's output to the window's.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "store_internal.h"

/* The largest object a window of len bytes may be. */
static size_t object_max(size_t len)
{
	return ZSTD_compressBound(len) + 64;
}

int squib_store_chunk_fetch(struct squib_store *s, void *dctx, const struct squib_store_hash *name,
			    uint8_t *buf, size_t len, uint64_t *got, struct squib_error_detail *d)
{
	char key[SQUIB_STORE_KEY_MAX];
	uint8_t *obj = NULL;
	size_t n = 0;
	int r;

	squib_store_chunk_key(name, key);
	if (!(r = squib_store_get(s, key, object_max(len), &obj, &n, d)) &&
	    !(r = squib_store_chunk_decode_in(dctx, obj, n, name, buf, len, d)) && got)
		*got += n;
	free(obj);
	return r;
}

int squib_store_delta_fetch(struct squib_store *s, void *dctx, const struct squib_store_hash *name,
			    const struct squib_store_hash *base, const uint8_t *ref, uint8_t *buf,
			    size_t len, uint64_t *got, struct squib_error_detail *d)
{
	char key[SQUIB_STORE_KEY_MAX];
	uint8_t *obj = NULL;
	size_t n = 0;
	int r;

	squib_store_delta_key(name, base, key);
	if (!(r = squib_store_get(s, key, object_max(len), &obj, &n, d)) &&
	    !(r = squib_store_delta_decode_in(dctx, obj, n, name, ref, len, buf, len, d)) && got)
		*got += n;
	free(obj);
	return r;
}

int squib_store_window_fetch(struct squib_store *s, void *dctx, const struct squib_store_hash *name,
			     const struct squib_store_hash *base, uint8_t *buf, size_t len,
			     uint64_t *got, struct squib_error_detail *d)
{
	char hex[2 * SQUIB_STORE_HASH_SIZE + 1], m[sizeof(d->msg)];
	uint8_t *ref;
	int r;

	if (!base || squib_store_hash_is_zero(base))
		return squib_store_chunk_fetch(s, dctx, name, buf, len, got, d);
	if (!(ref = malloc(len ? len : 1)))
		return squib_fail(d, SQUIB_E_NOMEM);
	if ((r = squib_store_chunk_fetch(s, dctx, base, ref, len, got, d)) && d) {
		/* Say whose base it is: the base alone is a chunk no image may name. */
		squib_store_hash_hex(name, hex);
		snprintf(m, sizeof(m), "the base of delta %s: %.300s", hex, d->msg);
		memcpy(d->msg, m, sizeof(d->msg));
	}
	if (!r)
		r = squib_store_delta_fetch(s, dctx, name, base, ref, buf, len, got, d);
	free(ref);
	return r;
}

int squib_store_delta_pair_id(const struct squib_store_hash *name,
			      const struct squib_store_hash *base, struct squib_store_hash *out)
{
	uint8_t two[2 * SQUIB_STORE_HASH_SIZE];

	memcpy(two, name->b, SQUIB_STORE_HASH_SIZE);
	memcpy(two + SQUIB_STORE_HASH_SIZE, base->b, SQUIB_STORE_HASH_SIZE);
	return squib_store_hash(two, sizeof(two), out, NULL);
}

/* One compression context and one decompression context per uploading thread,
 * freed when it exits: a context costs an allocation of ~1 MiB per use otherwise. */
static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;

struct thread_ctx {
	ZSTD_CCtx *c;
	ZSTD_DCtx *d;
};

static void ctx_free(void *p)
{
	struct thread_ctx *t = p;

	ZSTD_freeCCtx(t->c);
	ZSTD_freeDCtx(t->d);
	free(t);
}

static void ctx_init(void)
{
	if (pthread_key_create(&ctx_key, ctx_free))
		ctx_key = (pthread_key_t)-1;
}

/* This thread's contexts (members NULL when allocation failed: the one-off paths). */
static struct thread_ctx *thread_ctx(void)
{
	static struct thread_ctx none;
	struct thread_ctx *t;

	pthread_once(&ctx_once, ctx_init);
	if (ctx_key == (pthread_key_t)-1)
		return &none;
	if ((t = pthread_getspecific(ctx_key)))
		return t;
	if (!(t = calloc(1, sizeof(*t))))
		return &none;
	t->c = ZSTD_createCCtx();
	t->d = ZSTD_createDCtx();
	if (pthread_setspecific(ctx_key, t)) {
		ctx_free(t);
		return &none;
	}
	return t;
}

void *squib_store_thread_dctx(void)
{
	return thread_ctx()->d;
}

/* ---- writing (push and save) ---------------------------------------------- */

int squib_store_chunk_upload(struct squib_store *s, const struct squib_store_hash *name,
			     const uint8_t *data, size_t len, const struct squib_store_hash *ref,
			     struct squib_store_hash *base, size_t *put_bytes,
			     struct squib_error_detail *d)
{
	char key[SQUIB_STORE_KEY_MAX];
	uint8_t *obj = NULL, *dobj = NULL, *rbuf = NULL;
	size_t n = 0, dn = 0;
	int r;

	struct thread_ctx *t = thread_ctx();

	memset(base, 0, sizeof(*base));
	if ((r = squib_store_chunk_encode_in(t->c, data, len, s->opts.zstd_level, &obj, &n, d)))
		return r;
	/* The reference is read back from the store, checked against its name: the
	 * delta must decode against exactly the bytes a reader will fetch. Any
	 * failure there only costs the delta (the plain chunk is stored). */
	if (!s->opts.no_delta && ref && !squib_store_hash_is_zero(ref) &&
	    memcmp(ref->b, name->b, sizeof(name->b)) && (rbuf = malloc(len ? len : 1)) &&
	    !squib_store_chunk_fetch(s, t->d, ref, rbuf, len, NULL, NULL) &&
	    !squib_store_delta_encode_in(t->c, data, len, rbuf, len, s->opts.zstd_level, &dobj, &dn,
					 NULL) &&
	    squib_store_delta_pays(dn, n)) {
		*base = *ref;
		free(obj);
		obj = dobj;
		n = dn;
		dobj = NULL;
	}
	free(rbuf);
	free(dobj);
	if (squib_store_hash_is_zero(base))
		squib_store_chunk_key(name, key);
	else
		squib_store_delta_key(name, base, key);
	if (!(r = squib_store_put(s, key, obj, n, d)))
		*put_bytes = n;
	free(obj);
	return r;
}

/* name -> base, a plain chunk (zero) winning over any delta of the same name. */
static int know(struct squib_store_idmap *m, const struct squib_store_hash *name,
		const struct squib_store_hash *base)
{
	struct squib_store_hash had;

	if (squib_store_idmap_get(m, name, &had) && squib_store_hash_is_zero(&had))
		return 0;
	return squib_store_idmap_put(m, name, base);
}

int squib_store_known_add_image(struct squib_store_idmap *m, const struct squib_store_image *im)
{
	static const struct squib_store_hash zero;

	for (uint64_t k = 0; k < im->chunk_count; k++) {
		const struct squib_store_hash *base = squib_store_image_base(im, k);

		if (squib_store_hash_is_zero(&im->chunks[k]))
			continue;
		if (know(m, &im->chunks[k], base) ||
		    (!squib_store_hash_is_zero(base) && know(m, base, &zero)))
			return SQUIB_E_NOMEM;
	}
	return 0;
}

struct listing {
	struct squib_store_idmap *m;
	struct squib_store_idmap deltas; /* name -> base, kept when the base is listed */
};

static int on_listed(void *ctx, const struct squib_store_object *o)
{
	static const struct squib_store_hash zero;
	struct listing *l = ctx;
	struct squib_store_hash h, base;

	if (!squib_store_parse_chunk_key(o->key, &h))
		return know(l->m, &h, &zero) ? SQUIB_E_NOMEM : 0;
	if (!squib_store_parse_delta_key(o->key, &h, &base))
		return squib_store_idmap_put(&l->deltas, &h, &base) ? SQUIB_E_NOMEM : 0;
	return 0;
}

int squib_store_known_list(struct squib_store *s, struct squib_store_idmap *m,
			   struct squib_error_detail *d)
{
	struct listing l = {.m = m};
	int r;

	/* One LIST per 1000 objects instead of a HEAD per chunk. A delta counts only
	 * with its base listed: one left by a gc cut short may have lost it. */
	if (!(r = squib_store_list(s, "chunks/", on_listed, &l, d)))
		r = squib_store_list(s, "deltas/", on_listed, &l, d);
	for (size_t i = 0; !r && i < l.deltas.cap; i++) {
		struct squib_store_hash had;

		/* The base must be listed as a plain chunk (m maps it to zero), not
		 * merely known as another delta added by this loop: depth 1. */
		if (!squib_store_hash_is_zero(&l.deltas.k[i]) &&
		    squib_store_idmap_get(m, &l.deltas.v[i], &had) &&
		    squib_store_hash_is_zero(&had) && know(m, &l.deltas.k[i], &l.deltas.v[i]))
			r = squib_fail(d, SQUIB_E_NOMEM);
	}
	squib_store_idmap_free(&l.deltas);
	return r;
}

int squib_store_fill_bases(struct squib_store_image *im, const struct squib_store_idmap *put,
			   const struct squib_store_idmap *known, struct squib_error_detail *d)
{
	if (!im->bases && im->chunk_count &&
	    !(im->bases = calloc(im->chunk_count, sizeof(*im->bases))))
		return squib_fail(d, SQUIB_E_NOMEM);
	for (uint64_t k = 0; k < im->chunk_count; k++) {
		if (squib_store_hash_is_zero(&im->chunks[k])) {
			memset(&im->bases[k], 0, sizeof(im->bases[k]));
			continue;
		}
		if (!squib_store_idmap_get(put, &im->chunks[k], &im->bases[k]) &&
		    !squib_store_idmap_get(known, &im->chunks[k], &im->bases[k])) {
			char hex[2 * SQUIB_STORE_HASH_SIZE + 1];

			squib_store_hash_hex(&im->chunks[k], hex);
			return squib_fail_msg(d, SQUIB_E_IO,
					      "chunk %s is neither in the store nor uploaded", hex);
		}
	}
	return 0;
}
