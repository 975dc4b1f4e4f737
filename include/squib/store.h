/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/store.h - the snapshot store: memory images as content-addressed,
 * zstd-compressed, de-duplicated chunks in a local directory or on S3.
 *
 * A store holds, under its prefix (docs/FORMAT.md part "Snapshot store"):
 *
 *   chunks/<64 hex>        one chunk: a zstd frame of the chunk's bytes,
 *                          named by the SHA-256 of those (uncompressed) bytes
 *   deltas/<64 hex>.<64 hex>  one delta chunk: a zstd frame of the chunk's
 *                          bytes compressed against its base's (a plain
 *                          chunk, the second name) as a raw prefix
 *   images/<32 hex>        an image: a memory file's manifest (geometry,
 *                          present pages, digests) and its chunk map, named by
 *                          the memory file's id
 *   images/<32 hex>.state  the state file that pairs with that memory file
 *   leases/<16 hex>        a push in progress; gc/<16 hex>: a gc in progress
 *                          (docs/DESIGN.md "Snapshot store": the gc protocol)
 *
 * The chunk map covers the guest's memory as the memory file (and for a Diff
 * its chain) reads it: chunk_size-aligned windows of guest-physical addresses
 * clipped to each region. A window of zeros is "zero" and never stored. A
 * Diff's image maps the same resolved memory, so it shares its parent's chunk
 * ids except where pages changed: a chain costs only its changed chunks and a
 * rebase is a map merge. Every chunk read is checked against its name.
 *
 * Store URLs: "s3://BUCKET/PREFIX" (the prefix may be empty; endpoint,
 * region and credentials from AWS_ENDPOINT_URL, AWS_REGION (default
 * us-east-1), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; path-style), or a
 * directory: "file:///abs/dir" or a plain path.
 *
 * Errors: 0 or a negative SQUIB_E_* with the detail's msg naming the object:
 * a missing object is SQUIB_E_IO with ENOENT; the network or server failing
 * after the retries is SQUIB_E_IO (EIO, ETIMEDOUT, ECONNREFUSED, EACCES for
 * 401/403) naming the HTTP status; a chunk whose bytes do not hash to its
 * name, or an image or chunk that does not decode, is SQUIB_E_CRC_MISMATCH or
 * SQUIB_E_ENCODING; a bad URL is SQUIB_E_INVALID_PATH.
 *
 * Thread-safety: a struct squib_store may be used by any number of threads at
 * once (each backend call is independent); push, pull and gc use their own
 * worker threads internally. Images and buffers belong to the caller.
 */
#ifndef SQUIB_STORE_H
#define SQUIB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/api.h>
#include <squib/error.h>
#include <squib/memfile.h>
#include <squib/progress.h>
#include <squib/save.h>
#include <squib/state.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the image format ---------------------------------------------------- */

/* "SQUIBIMG" as the 8 bytes on the wire. */
#define SQUIB_STORE_IMAGE_MAGIC		0x474D494249555153ULL
#define SQUIB_STORE_IMAGE_VERSION_MAJOR 1
/* Minor 1: the image lists delta windows and their bases (docs/FORMAT.md
 * §S.2). An image without deltas is written as 1.0, which every 1.x reader
 * reads. */
#define SQUIB_STORE_IMAGE_VERSION_MINOR 1

#define SQUIB_STORE_HASH_SIZE 32 /* SHA-256 */
/* Chunk sizes: powers of two from 64 KiB to 16 MiB, at least the page size. */
#define SQUIB_STORE_MIN_CHUNK_SHIFT 16u
#define SQUIB_STORE_MAX_CHUNK_SHIFT 24u
/* The default, chosen by measurement (docs/DESIGN.md "Snapshot store"). */
#define SQUIB_STORE_DEFAULT_CHUNK_SHIFT 16u
#define SQUIB_STORE_DEFAULT_ZSTD_LEVEL	3
/* Most chunks an image may map (2^22: 1 TiB of RAM in 256 KiB chunks). */
#define SQUIB_STORE_MAX_CHUNKS (1ull << 22)

/* One chunk's name; all zero = a window of zeros (not stored). */
struct squib_store_hash {
	uint8_t b[SQUIB_STORE_HASH_SIZE];
};

/*
 * An image. `manifest` is the memory file's, exactly (layout incl. kind, id,
 * parent id, regions, extents, file size; flags and digests), so a pull
 * rebuilds the memory file's tail byte for byte. chunks[k] names window k
 * (squib_store_chunk_window). bases (NULL: every chunk is plain) gives each
 * window's delta base: zero for a plain chunk (chunks/<name>), else the
 * plain chunk the window's delta (deltas/<name>.<base>) is compressed
 * against - never itself a delta, so a window reads at most two objects.
 */
struct squib_store_image {
	struct squib_memfile_manifest manifest;
	uint32_t chunk_shift;
	uint64_t chunk_count;
	struct squib_store_hash *chunks;
	struct squib_store_hash *bases;
};

/* Free what the image owns and zero it. Safe on a zeroed image. */
SQUIB_API void squib_store_image_release(struct squib_store_image *im);

/* The number of chunk windows the regions need at this chunk size (0 when
 * they need more than SQUIB_STORE_MAX_CHUNKS or the shift is out of range). */
SQUIB_API uint64_t squib_store_chunk_count(const struct squib_memory_layout *l,
					   uint32_t chunk_shift);

/* Window k: guest-physical [*guest_addr, +*len) in region *region, whose file
 * offset (in the memory file's RAM range) is *file_off. SQUIB_E_INVALID_ARGUMENT
 * when k is not a window of the layout. */
SQUIB_API int squib_store_chunk_window(const struct squib_memory_layout *l, uint32_t chunk_shift,
				       uint64_t k, uint32_t *region, uint64_t *guest_addr,
				       uint64_t *file_off, uint64_t *len);

/* Encode to the wire (docs/FORMAT.md §S.2) into a new heap buffer. Validates
 * first (SQUIB_E_INVALID_ARGUMENT naming the rule). */
SQUIB_API int squib_store_image_encode(const struct squib_store_image *im, uint8_t **out,
				       size_t *len, struct squib_error_detail *d);

/* Strict decode (§S.3 check order). *out owns its arrays on success and is
 * zeroed on failure. Encoding a decoded image gives back the input. */
SQUIB_API int squib_store_image_decode(const uint8_t *buf, size_t len,
				       struct squib_store_image *out, struct squib_error_detail *d);

/* ---- chunks -------------------------------------------------------------- */

/* SHA-256 of len bytes (OpenSSL's EVP). */
SQUIB_API int squib_store_hash(const void *buf, size_t len, struct squib_store_hash *out,
			       struct squib_error_detail *d);
SQUIB_API bool squib_store_hash_is_zero(const struct squib_store_hash *h);
/* 64 lowercase hex digits. */
SQUIB_API void squib_store_hash_hex(const struct squib_store_hash *h,
				    char out[2 * SQUIB_STORE_HASH_SIZE + 1]);

/* A chunk object: one zstd frame of len bytes at `level` (content size recorded). */
SQUIB_API int squib_store_chunk_encode(const void *buf, size_t len, int level, uint8_t **out,
				       size_t *out_len, struct squib_error_detail *d);

/*
 * Decode a chunk object that must hold exactly len bytes hashing to *want,
 * into buf: SQUIB_E_ENCODING when it is not one zstd frame of len bytes,
 * SQUIB_E_CRC_MISMATCH (both hashes in the message) when its bytes hash to
 * anything else. buf holds garbage on failure.
 */
SQUIB_API int squib_store_chunk_decode(const uint8_t *obj, size_t obj_len,
				       const struct squib_store_hash *want, void *buf, size_t len,
				       struct squib_error_detail *d);

/* ---- backends ------------------------------------------------------------ */

struct squib_store;

struct squib_store_options {
	uint32_t workers;     /* parallel requests of push/pull/gc; 0: 8 */
	uint32_t retries;     /* S3: attempts after the first on 5xx, timeouts, resets; 0: 4 */
	uint32_t backoff_ms;  /* S3: first back-off, doubled per retry (+ jitter); 0: 100 */
	uint32_t timeout_ms;  /* S3: per request; 0: 60000 */
	int zstd_level;	      /* push; 0: SQUIB_STORE_DEFAULT_ZSTD_LEVEL */
	uint32_t chunk_shift; /* push; 0: SQUIB_STORE_DEFAULT_CHUNK_SHIFT */
	/* S3: an object of more bytes is PUT as a multipart upload in parts of this
	 * size (at least 5 MiB, S3's minimum part); 0: 64 MiB */
	uint64_t multipart_bytes;
	/* push, save: store every changed window whole, never as a delta against
	 * its parent's chunk (for measurements; deltas are on by default) */
	bool no_delta;
};

/* Open the store at url. S3: the environment is read here; nothing is sent. */
SQUIB_API int squib_store_open(const char *url, const struct squib_store_options *opts,
			       struct squib_store **out, struct squib_error_detail *d);
SQUIB_API void squib_store_close(struct squib_store *s);

/* The store's URL as given (for messages). */
SQUIB_API const char *squib_store_url(const struct squib_store *s);

/* One listed object; keys are relative to the store's prefix. */
struct squib_store_object {
	const char *key;
	uint64_t size;
	int64_t mtime; /* seconds since the epoch, the server's clock */
};

/* Return non-zero from a list callback to stop listing with that value. */
typedef int (*squib_store_list_fn)(void *ctx, const struct squib_store_object *o);

/* Whole object: put durably (dir: temp + fsync + rename + directory fsync). */
SQUIB_API int squib_store_put(struct squib_store *s, const char *key, const void *buf, size_t len,
			      struct squib_error_detail *d);
/* Whole object into a new heap buffer; larger than max_len: SQUIB_E_SIZE_LIMIT_EXCEEDED. */
SQUIB_API int squib_store_get(struct squib_store *s, const char *key, size_t max_len, uint8_t **buf,
			      size_t *len, struct squib_error_detail *d);
/* Exactly len bytes at off (a short object: SQUIB_E_IO, EIO). */
SQUIB_API int squib_store_get_range(struct squib_store *s, const char *key, uint64_t off,
				    size_t len, void *buf, struct squib_error_detail *d);
/* *exists, and when it does its size and mtime (either may be NULL). */
SQUIB_API int squib_store_head(struct squib_store *s, const char *key, bool *exists, uint64_t *size,
			       int64_t *mtime, struct squib_error_detail *d);
/* Every object whose key starts with prefix, in key order. */
SQUIB_API int squib_store_list(struct squib_store *s, const char *prefix, squib_store_list_fn fn,
			       void *ctx, struct squib_error_detail *d);
/* Remove; a missing object is not an error. */
SQUIB_API int squib_store_delete(struct squib_store *s, const char *key,
				 struct squib_error_detail *d);

/* ---- push, pull, ls, gc -------------------------------------------------- */

struct squib_store_push_stats {
	uint64_t chunks;	/* windows mapped (all images pushed) */
	uint64_t chunks_zero;	/* of which zero */
	uint64_t chunks_reused; /* found in the store (or earlier in this push) */
	uint64_t chunks_put;	/* uploaded */
	uint64_t bytes_present; /* non-zero chunk bytes read */
	uint64_t bytes_put;	/* compressed bytes uploaded (chunks) */
	uint64_t images_put;
	uint64_t images_skipped; /* already in the store */
	uint64_t deltas_put;	 /* of chunks_put: stored as deltas (deltas/<name>.<base>) */
};

/*
 * Push one pair: state_path (its MEMORY section names the memory file at
 * memory_path, checked like a load does) and, for a Diff, its older layers:
 * chain_states[0..n) the older pairs' state files, the full base first, with
 * their memory files at chain_mems[i] (NULL: STATE with .mem). Every layer
 * becomes an image (parents first); chunks the store has are not uploaded;
 * an image the store has is not pushed again. Holds a lease for the push
 * (waits up to 60 s while a gc runs). progress (may be NULL): bytes read.
 */
SQUIB_API int squib_store_push(struct squib_store *s, const char *state_path,
			       const char *memory_path, const char *const *chain_states,
			       const char *const *chain_mems, size_t n,
			       const struct squib_progress *progress,
			       struct squib_store_push_stats *stats, struct squib_error_detail *d);

struct squib_store_pull_stats {
	uint64_t images;
	uint64_t chunks_fetched;
	uint64_t bytes_fetched; /* compressed */
	uint64_t bytes_written; /* page data */
};

/*
 * Materialise image `id` and (a Diff) its chain as ordinary pairs in dir:
 * DIR/<id hex>.snap and DIR/<id hex>.mem each, published as a save publishes
 * a pair (memory, then state; crash-safe). paths (may be NULL) receives the
 * newest pair's state path (malloc'd). Pairs already in dir that verify are
 * kept.
 */
SQUIB_API int squib_store_pull(struct squib_store *s, const uint8_t id[SQUIB_MEMORY_ID_SIZE],
			       const char *dir, const struct squib_progress *progress,
			       struct squib_store_pull_stats *stats, char **state_path,
			       struct squib_error_detail *d);

/* Read and decode images/<id hex>. */
SQUIB_API int squib_store_image_get(struct squib_store *s, const uint8_t id[SQUIB_MEMORY_ID_SIZE],
				    struct squib_store_image *out, struct squib_error_detail *d);

/* Each image's id, in key order. */
typedef int (*squib_store_image_fn)(void *ctx, const uint8_t id[SQUIB_MEMORY_ID_SIZE]);
SQUIB_API int squib_store_images(struct squib_store *s, squib_store_image_fn fn, void *ctx,
				 struct squib_error_detail *d);

/* chunks_*: chunk objects, plain and delta alike. */
struct squib_store_gc_stats {
	uint64_t images;
	uint64_t chunks_live;
	uint64_t chunks_deleted;
	uint64_t bytes_deleted;
	uint64_t leases_expired; /* stale leases and gc markers removed */
	/* partial objects of writers that died, over an hour old, removed (a
	 * directory store's temps; on S3 a bucket lifecycle rule aborts stale
	 * multipart uploads, docs/DESIGN.md) */
	uint64_t partial_deleted;
};

/*
 * Mark and sweep: delete every chunk no image maps. Safe against concurrent
 * pushes (docs/DESIGN.md: a gc marker and push leases exclude each other);
 * SQUIB_E_BUSY while a push holds a live lease. dry_run: count, delete nothing.
 */
SQUIB_API int squib_store_gc(struct squib_store *s, bool dry_run,
			     struct squib_store_gc_stats *stats, struct squib_error_detail *d);

/* ---- saving a running VM straight into the store ------------------------ */

struct squib_store_save_request {
	enum squib_snapshot_kind kind;
	/* Diff: the id of the image it applies on, in this store (the memory the
	 * VM's trackers were reset at: the last save's report.memory_id). */
	const uint8_t *parent_memory_id;
	bool stay_paused;	     /* as squib_save_request */
	uint64_t page_size;	     /* 0: the host's */
	uint32_t quiesce_timeout_ms; /* 0: SQUIB_QUIESCE_TIMEOUT_MS */
	bool digests;		     /* per-extent digests in the manifest */
	/* Memory for windows read but not yet uploaded: the guest resumes once
	 * the last window is queued, so a buffer that holds the present memory
	 * makes the downtime a copy; a small one makes it the upload.
	 * 0: SQUIB_STORE_SAVE_BUFFER. At least 2 windows per worker. */
	uint64_t buffer_bytes;
	/* Live (squib_save_request.live): the guest resumes right after the
	 * capture and the windows are read from a view of the pause instant, so
	 * the downtime is neither the copy nor the upload. Where a live save is
	 * not possible (squib/save.h), the save runs paused and report.save.live
	 * is false with live_errno saying why. */
	bool live;
};

#define SQUIB_STORE_SAVE_BUFFER (256ull << 20)

struct squib_store_save_report {
	/* The save's phases and outcome: memory_write is the time the guest's
	 * memory took to read into the upload queue (paused); publish the wait
	 * for the last uploads and the state and image PUTs (running).
	 * state_published: the image is in the store. */
	struct squib_save_report save;
	/* chunks: windows mapped; bytes_present: bytes read and hashed (a Diff
	 * reads only the windows its dirty pages touch); chunks_reused: non-zero
	 * windows not uploaded (the parent's, or already in the store). */
	struct squib_store_push_stats store;
};

/*
 * Save a running VM straight into the store: quiesce, capture and harvest as
 * squib_save does (squib/save.h), then, with the vCPUs paused, read the
 * guest's memory window by window into a bounded queue that a pool of
 * opts.workers threads hashes, compresses and uploads (chunks the store
 * holds are not uploaded); resume; wait for the uploads; PUT the state
 * object; then - the commit point - the image. No local file is written.
 *
 * A Full maps every window. A Diff starts from its parent's chunk map
 * (images/<parent id>: same geometry and chunk size, else
 * SQUIB_E_PAIR_MISMATCH) and reads only the windows that hold a dirty page;
 * the other windows keep the parent's ids without being read or hashed. Its
 * image is the memory file a file Diff would have been (kind, parent,
 * extents of the dirty pages), so `pull` materialises an ordinary chain.
 *
 * Crash-safety: the image is PUT only after every chunk it maps is durable
 * in the store, under a push lease (gc cannot sweep meanwhile); a save that
 * fails or dies leaves at most unreferenced chunks and a state object, which
 * gc removes. On failure the harvested pages go back to the trackers (the
 * next Diff holds them); on success the trackers are reset.
 *
 * Thread-safety: as squib_save (one save per VM at a time); the store may be
 * shared with other threads.
 */
SQUIB_API int squib_store_save(struct squib_store *s, const struct squib_vm *vm,
			       const struct squib_store_save_request *req,
			       struct squib_store_save_report *report,
			       struct squib_error_detail *d);

/* Parse 32 hex digits. */
SQUIB_API int squib_store_parse_id(const char *hex, uint8_t id[SQUIB_MEMORY_ID_SIZE]);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_STORE_H */
