/* SPDX-License-Identifier: Apache-2.0 */
/* The snapshot store's internals: the backend ops interface (not installed). */
#ifndef SQUIB_STORE_INTERNAL_H
#define SQUIB_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <squib/store.h>

/* Object size bounds: a chunk object never exceeds its zstd bound of the
 * largest chunk; an image or state is bounded by its decoder's limits. */
#define SQUIB_STORE_IMAGE_MAX_BYTES (640ull << 20)
#define SQUIB_STORE_STATE_MAX_BYTES (256ull << 20)

/*
 * One backend. Every op returns 0 or a negative SQUIB_E_* with the detail
 * filled; all may be called from several threads at once (a backend keeps
 * per-thread connections itself). Keys are relative to the store's prefix.
 */
/* squib_store_chunk_decode through dctx (a ZSTD_DCtx the caller reuses; NULL: a new one). */
int squib_store_chunk_decode_in(void *dctx, const uint8_t *obj, size_t obj_len,
				const struct squib_store_hash *want, void *buf, size_t len,
				struct squib_error_detail *d);

struct squib_store_ops {
	int (*put)(void *be, const char *key, const void *buf, size_t len,
		   struct squib_error_detail *d);
	int (*get)(void *be, const char *key, size_t max_len, uint8_t **buf, size_t *len,
		   struct squib_error_detail *d);
	int (*get_range)(void *be, const char *key, uint64_t off, size_t len, void *buf,
			 struct squib_error_detail *d);
	int (*head)(void *be, const char *key, bool *exists, uint64_t *size, int64_t *mtime,
		    struct squib_error_detail *d);
	int (*list)(void *be, const char *prefix, squib_store_list_fn fn, void *ctx,
		    struct squib_error_detail *d);
	int (*del)(void *be, const char *key, struct squib_error_detail *d);
	/* Optional: remove what writers that died left half-written, last
	 * modified before `before` (the server's clock); counts them. */
	int (*reap_partial)(void *be, int64_t before, uint64_t *reaped,
			    struct squib_error_detail *d);
	void (*close)(void *be);
};

struct squib_store {
	const struct squib_store_ops *ops;
	void *be;
	char *url;
	struct squib_store_options opts; /* defaults filled in */
};

/* Backends: open from the URL's parts. */
int squib_store_dir_open(const char *dir, void **be, struct squib_error_detail *d);
int squib_store_s3_open(const char *bucket, const char *prefix,
			const struct squib_store_options *opts, void **be,
			struct squib_error_detail *d);
extern const struct squib_store_ops squib_store_dir_ops;
extern const struct squib_store_ops squib_store_s3_ops;

/* "images/<32 hex>" and "images/<32 hex>.state" and "chunks/<64 hex>" and
 * "deltas/<64 hex>.<64 hex>". */
#define SQUIB_STORE_KEY_MAX 160
void squib_store_image_key(const uint8_t id[SQUIB_MEMORY_ID_SIZE], bool state,
			   char key[SQUIB_STORE_KEY_MAX]);
void squib_store_chunk_key(const struct squib_store_hash *h, char key[SQUIB_STORE_KEY_MAX]);
void squib_store_delta_key(const struct squib_store_hash *name, const struct squib_store_hash *base,
			   char key[SQUIB_STORE_KEY_MAX]);

/* "chunks/<64 hex>" into *h: 0, or -1 for any other key. */
int squib_store_parse_chunk_key(const char *key, struct squib_store_hash *h);
/* "deltas/<64 hex>.<64 hex>" (two distinct non-zero names): 0, or -1. */
int squib_store_parse_delta_key(const char *key, struct squib_store_hash *name,
				struct squib_store_hash *base);

/* ---- delta chunks (store_delta.c, docs/FORMAT.md §S.4) -------------------- */

struct squib_store_idmap;

/* A delta object: one zstd frame of len bytes compressed with ref (the base's
 * ref_len bytes) as a raw-content prefix. */
int squib_store_delta_encode(const void *buf, size_t len, const void *ref, size_t ref_len,
			     int level, uint8_t **out, size_t *out_len,
			     struct squib_error_detail *d);
/* The two encoders through cctx (a ZSTD_CCtx the caller reuses; NULL: a new one). */
int squib_store_chunk_encode_in(void *cctx, const void *buf, size_t len, int level, uint8_t **out,
				size_t *out_len, struct squib_error_detail *d);
int squib_store_delta_encode_in(void *cctx, const void *buf, size_t len, const void *ref,
				size_t ref_len, int level, uint8_t **out, size_t *out_len,
				struct squib_error_detail *d);
/* squib_store_chunk_decode_in of a delta object against ref: the same checks. */
int squib_store_delta_decode_in(void *dctx, const uint8_t *obj, size_t obj_len,
				const struct squib_store_hash *want, const void *ref,
				size_t ref_len, void *buf, size_t len,
				struct squib_error_detail *d);
/* GET chunks/<name> and decode it (len bytes) into buf; *got += object bytes. */
int squib_store_chunk_fetch(struct squib_store *s, void *dctx, const struct squib_store_hash *name,
			    uint8_t *buf, size_t len, uint64_t *got, struct squib_error_detail *d);
/* GET deltas/<name>.<base> and decode it against ref (the base's len bytes). */
int squib_store_delta_fetch(struct squib_store *s, void *dctx, const struct squib_store_hash *name,
			    const struct squib_store_hash *base, const uint8_t *ref, uint8_t *buf,
			    size_t len, uint64_t *got, struct squib_error_detail *d);
/* The calling worker thread's decompression context (freed when the thread
 * exits; NULL when it could not be made): for pool jobs only. */
void *squib_store_thread_dctx(void);
/* A window's bytes: its plain chunk (base zero or NULL), or its base then its
 * delta (at most two objects; a base is always a plain chunk). */
int squib_store_window_fetch(struct squib_store *s, void *dctx, const struct squib_store_hash *name,
			     const struct squib_store_hash *base, uint8_t *buf, size_t len,
			     uint64_t *got, struct squib_error_detail *d);
/* Is a delta worth storing? Only when it is under half the plain chunk: a
 * read of it costs a second object (its base). */
static inline bool squib_store_delta_pays(size_t delta_len, size_t plain_len)
{
	return 2 * delta_len < plain_len;
}
/* Image window k's base, zero for a plain chunk (bases NULL: all plain). */
static inline const struct squib_store_hash *
squib_store_image_base(const struct squib_store_image *im, uint64_t k)
{
	static const struct squib_store_hash zero;

	return im->bases ? &im->bases[k] : &zero;
}
/* Upload window bytes named *name: a delta against ref's bytes (ref non-zero,
 * deltas on, and the delta pays), else plain. *base: the delta's base, or
 * zero for a plain chunk; *put_bytes: the object's size. */
int squib_store_chunk_upload(struct squib_store *s, const struct squib_store_hash *name,
			     const uint8_t *data, size_t len, const struct squib_store_hash *ref,
			     struct squib_store_hash *base, size_t *put_bytes,
			     struct squib_error_detail *d);
/* What a writer may map without uploading, name -> base (zero: plain): an
 * image's chunks and bases, or the store's listing (chunks/ and deltas/). */
int squib_store_known_add_image(struct squib_store_idmap *m, const struct squib_store_image *im);
int squib_store_known_list(struct squib_store *s, struct squib_store_idmap *m,
			   struct squib_error_detail *d);
/* im->bases (allocated if NULL) from where each mapped name is: put (this
 * writer's uploads) first, then known. SQUIB_E_IO for a name in neither. */
int squib_store_fill_bases(struct squib_store_image *im, const struct squib_store_idmap *put,
			   const struct squib_store_idmap *known, struct squib_error_detail *d);
/* The base a writer makes window k's delta against (zero: none, store it
 * plain): the parent image's chunk of the window when that is plain, its base
 * when it is a delta - so a base is never a delta (depth 1, §S.5). parent:
 * zeroed when there is none or its windows are not the new image's. */
static inline void squib_store_delta_ref(const struct squib_store_image *parent, uint64_t k,
					 struct squib_store_hash *ref)
{
	const struct squib_store_hash *base;

	memset(ref, 0, sizeof(*ref));
	if (!parent->chunks || k >= parent->chunk_count)
		return;
	base = squib_store_image_base(parent, k);
	*ref = squib_store_hash_is_zero(base) ? parent->chunks[k] : *base;
}
/* One id for the pair (name, base): SHA-256 of the two names (gc's live set). */
int squib_store_delta_pair_id(const struct squib_store_hash *name,
			      const struct squib_store_hash *base, struct squib_store_hash *out);

/* Is a key well-formed (printable, no "..", no leading '/')? */
bool squib_store_key_ok(const char *key);

/* ---- a set of chunk ids (store_idset.c); zero-initialised = empty ------- */

struct squib_store_idset {
	struct squib_store_hash *v;
	size_t n, cap;
};
/* Add a non-zero id; *added says whether it was new. SQUIB_E_NOMEM. */
int squib_store_idset_add(struct squib_store_idset *s, const struct squib_store_hash *h,
			  bool *added);
bool squib_store_idset_has(const struct squib_store_idset *s, const struct squib_store_hash *h);
void squib_store_idset_free(struct squib_store_idset *s);

/* A map of chunk names to their bases (zero: plain): where a writer found or
 * put each name. Not locked. */
struct squib_store_idmap {
	struct squib_store_hash *k, *v;
	size_t n, cap;
};
/* Set (or overwrite) name -> base. SQUIB_E_NOMEM. */
int squib_store_idmap_put(struct squib_store_idmap *m, const struct squib_store_hash *name,
			  const struct squib_store_hash *base);
/* name's base into *base (may be NULL): true when the name is in the map. */
bool squib_store_idmap_get(const struct squib_store_idmap *m, const struct squib_store_hash *name,
			   struct squib_store_hash *base);
void squib_store_idmap_free(struct squib_store_idmap *m);

/* ---- a small worker pool (store_pool.c) ---------------------------------- */

struct squib_store_pool;
typedef int (*squib_store_job_fn)(void *job, struct squib_error_detail *d);

/* n threads running fn on submitted jobs; at most `depth` jobs queued. Once
 * a job failed, fn is called with d == NULL for the rest: it must then only
 * free the job. */
int squib_store_pool_start(uint32_t n, uint32_t depth, squib_store_job_fn fn,
			   struct squib_store_pool **out, struct squib_error_detail *d);
/* Queue a job (blocks while the queue is full). Fails with the first job
 * error once one failed (the job is then not queued: the caller frees it). */
int squib_store_pool_submit(struct squib_store_pool *p, void *job, struct squib_error_detail *d);
/* Wait for every job, stop the threads, free; the first job error (its detail). */
int squib_store_pool_finish(struct squib_store_pool *p, struct squib_error_detail *d);

/* ---- the gc protocol's two sides (store_gc.c) ---------------------------- */

struct squib_store_lease {
	char key[SQUIB_STORE_KEY_MAX];
	bool held;
};
int squib_store_lease_take(struct squib_store *s, struct squib_store_lease *l,
			   struct squib_error_detail *d);
/* Still ours (not expired and removed by a gc)? SQUIB_E_BUSY otherwise. */
int squib_store_lease_check(struct squib_store *s, struct squib_store_lease *l,
			    struct squib_error_detail *d);
void squib_store_lease_drop(struct squib_store *s, struct squib_store_lease *l);

/* ---- shared by push and save (store_push.c) ------------------------------ */

/* A deep copy of a manifest (layout and digests). SQUIB_E_NOMEM. */
int squib_store_manifest_copy(struct squib_memfile_manifest *dst,
			      const struct squib_memfile_manifest *src);

/* Commit an image whose chunks are all durable: the state object, then (after
 * checking the lease is still ours) the image object - the commit point. */
int squib_store_publish(struct squib_store *s, struct squib_store_lease *lease,
			const struct squib_store_image *im, const uint8_t *state, size_t state_len,
			struct squib_error_detail *d);

#endif /* SQUIB_STORE_INTERNAL_H */
