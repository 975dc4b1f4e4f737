/* SPDX-License-Identifier: Apache-2.0 */
/* The on-disk chunk cache of lazy restores (store_cache.c; squib/store_source.h). */
#ifndef SQUIB_STORE_CACHE_H
#define SQUIB_STORE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <squib/store.h>

struct squib_store_cache;

/* Create dir (and its parents) if needed; open it. SQUIB_E_IO naming dir. */
int squib_store_cache_open(const char *dir, uint64_t max_bytes, struct squib_store_cache **out,
			   struct squib_error_detail *d);
void squib_store_cache_close(struct squib_store_cache *c);

/* Chunk h (exactly len bytes) into buf, checked (its CRC-64, FORMAT.md S.6):
 * 0; 1 when the cache has no entry; -1 when the entry fails its check or
 * cannot be read (the caller drops it). buf holds garbage unless 0. */
int squib_store_cache_get(struct squib_store_cache *c, const struct squib_store_hash *h,
			  uint8_t *buf, size_t len);

/* Whether the directory is this user's and not group/world-writable: if not,
 * the CRC is no defence against another writer and readers check SHA-256. */
bool squib_store_cache_private(const struct squib_store_cache *c);

/* Chunk h's verified content as an entry. Best effort (a full disk is not
 * the restore's failure): temp + rename; then evicts if the bound is passed. */
void squib_store_cache_put(struct squib_store_cache *c, const struct squib_store_hash *h,
			   const uint8_t *buf, size_t len);

/* squib_store_cache_put on the cache's writer thread; takes buf (malloc'd).
 * A fill (read-ahead, prefetch) waits a bounded time for room in the
 * writer's queue; anything else (a demand fault) never waits: it has room
 * beyond what fills may take, and past that the entry is dropped (counted).
 * squib_store_cache_close writes what is queued first. */
void squib_store_cache_put_async(struct squib_store_cache *c, const struct squib_store_hash *h,
				 uint8_t *buf, size_t len, bool fill);

/* Entries dropped because the writer's queue was full (or the writer stuck). */
uint64_t squib_store_cache_dropped(struct squib_store_cache *c);

/* Delete chunk h's entry (it failed its check). */
void squib_store_cache_drop(struct squib_store_cache *c, const struct squib_store_hash *h);

/* Entries this process evicted. */
uint64_t squib_store_cache_evicted(struct squib_store_cache *c);

#endif /* SQUIB_STORE_CACHE_H */
