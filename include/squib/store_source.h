/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib/store_source.h - lazy restore from the snapshot store: a page source
 * (squib/page_source.h) over one store image, for the userfaultfd pager and
 * `serve --from`, with a bounded on-disk chunk cache shared between restores
 * on one host, and a parallel working-set prefetch.
 *
 * A read of pages fetches the chunk(s) holding them: from the process's
 * small memory of decompressed chunks, else from the disk cache (checked:
 * an entry that fails is deleted and fetched again, never served), else
 * from the store (then queued to the cache's writer thread). A read of a
 * whole window the memory does not hold takes the disk cache's entry
 * straight into the reader's buffer, checked there before the read returns.
 * Every chunk from the store is verified against its SHA-256 name before a
 * byte of it is served or cached. A chunk is fetched at most once at a time:
 * a second reader of a chunk being fetched waits for that fetch (in-flight
 * de-duplication). A read entering a new window that the disk cache did not
 * serve also queues the next few windows to the source's read-ahead threads
 * (never blocking the reader); a disk cache's read has no latency worth
 * hiding, so a warm restore reads nothing ahead, and a working-set
 * prefetch installs what the disk cache holds on its own thread, as demand
 * reads go (its pool of fetching threads takes over at the first chunk
 * fetched from the store).
 *
 * An image maps the memory it reads as: a Diff's chunk map already holds
 * its parent's chunk ids where pages did not change (squib/store.h), so one
 * image is all a restore needs. A page is present when its chunk is not a
 * zero chunk (zero chunks are installed as zero pages, never fetched).
 *
 * Failure: a chunk that cannot be fetched after the store's retries, or
 * whose bytes do not hash to its name, fails the read with an error naming
 * the chunk's key, its window and the store's URL (SQUIB_E_IO with the
 * errno, SQUIB_E_CRC_MISMATCH, SQUIB_E_ENCODING). The pager then leaves the
 * fault unresolved and keeps the error (squib/pager.h): the owner stops the
 * guest for good, as when a handler dies. Wrong memory is never served.
 *
 * The disk cache (docs/FORMAT.md S.6): DIR/<64 hex> per chunk, its content
 * decompressed behind a header with a CRC-64 over its name and content
 * (SHA-256 checked as well when the directory is not private), written by
 * a writer thread (a bounded queue: read-ahead and prefetch wait a bounded
 * time for room, demand faults never wait and drop an entry past twice the
 * bound)
 * to a hidden temp and renamed (readers see whole files or none); DIR/.lock serialises eviction
 * across processes (flock). Least recently used entries (by mtime, set on every hit) are evicted
 * down to 3/4 of the bound once a process has seen the total pass it; each process rescans after
 * adding 1/16 of the bound, so with P processes filling at once the directory can pass the bound by
 * P/16 of it for a moment. Safe for any number of processes and threads.
 *
 * Thread-safety: the source's read and present may be called from any
 * number of threads at once (the pager calls them one at a time);
 * squib_store_source_prefetch from one thread at a time, concurrently with
 * reads; stats from any thread. The store must stay open until the source
 * is released (the page source's release; squib_pager_free does it).
 */
#ifndef SQUIB_STORE_SOURCE_H
#define SQUIB_STORE_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include <squib/api.h>
#include <squib/error.h>
#include <squib/page_source.h>
#include <squib/store.h>
#include <squib/workset.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The disk cache's default bound (4 GiB) and the default memory of decompressed chunks. */
#define SQUIB_STORE_CACHE_DEFAULT_BYTES	  (4ull << 30)
#define SQUIB_STORE_SOURCE_DEFAULT_MEMORY (64ull << 20)

struct squib_store_source_options {
	const char *cache_dir; /* the disk cache (created); NULL: none */
	uint64_t cache_bytes;  /* its bound; 0: SQUIB_STORE_CACHE_DEFAULT_BYTES */
	uint64_t memory_bytes; /* decompressed chunks kept; 0: the default (at least 4 chunks) */
	uint32_t prefetch_workers; /* parallel fetches of a prefetch; 0: the store's workers */
};

struct squib_store_source_stats {
	uint64_t chunks_fetched; /* from the store */
	uint64_t bytes_fetched;	 /* compressed bytes from the store */
	uint64_t cache_hits;	 /* chunks read from the disk cache */
	uint64_t cache_corrupt;	 /* cache entries that failed their check: deleted, refetched */
	uint64_t memory_hits;	 /* reads served from decompressed chunks in memory */
	uint64_t waits;		 /* reads that waited for another thread's fetch of the chunk */
	uint64_t errors;	 /* failed chunk fetches */
	uint64_t cache_evicted;	 /* cache entries this process evicted */
};

struct squib_store_source;

/*
 * Open image `id` of store s as a page source into *out (page_size and
 * page_count of the image's RAM range; its release frees the source).
 * *handle (may be NULL) is for prefetch, stats and the layout; it is valid
 * until the page source is released. Errors: the image's (squib/store.h),
 * the cache directory's (SQUIB_E_IO naming it), SQUIB_E_NOMEM.
 */
SQUIB_API int squib_store_source_open(struct squib_store *s, const uint8_t id[SQUIB_MEMORY_ID_SIZE],
				      const struct squib_store_source_options *opts,
				      struct squib_page_source *out,
				      struct squib_store_source **handle,
				      struct squib_error_detail *d);

/* The image's layout (kind, ids, page size, regions; a Diff's own extents). */
SQUIB_API const struct squib_memory_layout *
squib_store_source_layout(const struct squib_store_source *ss);

/* What installs pages (e.g. squib_pager_prefetch on the pager serving the source). */
typedef int (*squib_store_install_fn)(void *ctx, const struct squib_ws_run *runs, uint64_t n,
				      uint64_t *installed, struct squib_error_detail *d);

/*
 * Working-set prefetch: fetch the chunks of runs[0..n) (in the runs' order)
 * with prefetch_workers threads, and as each chunk arrives call install
 * for its pages, so installing holds the pager only for a copy. Demand
 * faults meanwhile fetch their chunk at once on the pager's thread (never
 * queued behind the prefetch). *installed (may be NULL): what install said.
 * Errors: a chunk's (as a read's), install's; SQUIB_E_INVALID_ARGUMENT for
 * runs past the RAM range. A failed prefetch leaves the rest to faults.
 */
SQUIB_API int squib_store_source_prefetch(struct squib_store_source *ss,
					  const struct squib_ws_run *runs, uint64_t n,
					  squib_store_install_fn install, void *ctx,
					  uint64_t *installed, struct squib_error_detail *d);

SQUIB_API void squib_store_source_stats(const struct squib_store_source *ss,
					struct squib_store_source_stats *out);

/*
 * The default cache directory, malloc'd: $SQUIB_CACHE_DIR, else
 * $XDG_CACHE_HOME/squib-snapshot/chunks, else $HOME/.cache/squib-snapshot/chunks.
 * SQUIB_E_INVALID_PATH when none of them is set.
 */
SQUIB_API int squib_store_default_cache_dir(char **out, struct squib_error_detail *d);

/* "URL/ID" (ID: the image's 32 hex digits, the last path element) into a
 * malloc'd *url and id. SQUIB_E_INVALID_ARGUMENT naming the rule. */
SQUIB_API int squib_store_split_ref(const char *ref, char **url, uint8_t id[SQUIB_MEMORY_ID_SIZE],
				    struct squib_error_detail *d);

#ifdef __cplusplus
}
#endif
#endif /* SQUIB_STORE_SOURCE_H */
