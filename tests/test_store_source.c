/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy restore from the snapshot store (squib/store_source.h): the store
 * page source under the real userfaultfd pager and under `serve --from`
 * with a real userfaultfd client, through a directory store and (with
 * `make test-store`) through Ceph's RADOS Gateway. Corruption and outages
 * (a flipped byte, a missing chunk, 503s, the server gone mid-restore) must
 * end in an error naming the chunk with the faulting access still blocked:
 * never a wrong byte. The disk cache: a corrupt entry is refetched, and two
 * processes share one cache under a bound that forces eviction.
 */
#include "http_proxy.h"
#include "pair.h"
#include "spawn.h"
#include "testutil.h"

#include <errno.h>
#include <dirent.h>
#include <pthread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <squib/pager.h>
#include <squib/store.h>
#include <squib/crc64.h>
#include <squib/store_source.h>
#include <squib/uffd_remote.h>

#define RAM	(8ull << 20)
#define CHUNK	(1ull << SQUIB_STORE_DEFAULT_CHUNK_SHIFT)
#define NONZERO ((RAM - (1ull << 20)) / CHUNK) /* chunks holding data */
#define WAIT_MS 60000 /* a bound on waiting for an outcome, never a timing assertion */

struct fx {
	char *dir, *store, *cache, *sock;
	uint8_t *mem;
	char *state, *memf;
	struct squib_memfile_manifest m;
	char *url; /* the store under test (dir path or s3://) */
	char *
	    endpoint; /* AWS_ENDPOINT_URL as it was: a failed outage test must not leak its proxy */
};

static const char *msg_of(const struct squib_error_detail *d)
{
	static char buf[2048];

	squib_error_message(d->code, d, buf, sizeof(buf));
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " [%s]", d->msg);
	return buf;
}

static uint64_t ps(void)
{
	return squib_test_page_size();
}

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* 8 MiB of patterned RAM with a 1 MiB stretch of zeros, saved as a full pair. */
static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->dir = squib_test_tmpdir();
	f->store = squib_test_path(f->dir, "store");
	f->cache = squib_test_path(f->dir, "cache");
	f->sock = squib_test_path(f->dir, "sock");
	mkdir(f->store, 0700);
	f->mem = squib_test_guest_ram(RAM, 11);
	memset(f->mem + (2u << 20), 0, 1u << 20);
	squib_test_save_pair(f->dir, "base", f->mem, RAM, false, &f->state, &f->memf, &f->m);
	f->url = strdup(f->store);
	f->endpoint = getenv("AWS_ENDPOINT_URL") ? strdup(getenv("AWS_ENDPOINT_URL")) : NULL;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	if (f->endpoint)
		setenv("AWS_ENDPOINT_URL", f->endpoint, 1);
	free(f->endpoint);
	squib_test_rmtree(f->dir);
	munmap(f->mem, RAM);
	squib_memfile_manifest_release(&f->m);
	free(f->dir);
	free(f->store);
	free(f->cache);
	free(f->sock);
	free(f->state);
	free(f->memf);
	free(f->url);
	free(f);
	return 0;
}

static struct squib_store *open_store(const char *url)
{
	struct squib_store_options o = {
	    .workers = 4, .retries = 2, .backoff_ms = 10, .timeout_ms = 10000};
	struct squib_error_detail d;
	struct squib_store *s = NULL;

	if (squib_store_open(url, &o, &s, &d))
		fail_msg("open %s: %s", url, msg_of(&d));
	return s;
}

static void push(struct squib_store *s, const char *state, const char *mem,
		 const char *const *chain, size_t n)
{
	struct squib_error_detail d;

	if (squib_store_push(s, state, mem, chain, NULL, n, NULL, NULL, &d))
		fail_msg("push %s: %s", state, msg_of(&d));
}

/* ---- a lazy restore through the pager --------------------------------------------- */

struct lazy {
	struct squib_store_source *ss;
	struct squib_pager *p;
	uint8_t *ram;
	uint64_t size;
};

static void lazy_start(struct squib_store *s, const uint8_t *id, const char *cache,
		       uint64_t cache_bytes, struct lazy *lz)
{
	struct squib_store_source_options o = {.cache_dir = cache, .cache_bytes = cache_bytes};
	struct squib_page_source src;
	struct squib_error_detail d;
	struct squib_pager_region r;

	if (squib_store_source_open(s, id, &o, &src, &lz->ss, &d))
		fail_msg("source: %s", msg_of(&d));
	assert_int_equal(src.page_size, ps());
	lz->size = src.page_count * ps();
	lz->ram = mmap(NULL, lz->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(lz->ram != MAP_FAILED);
	r = (struct squib_pager_region){lz->ram, lz->size, 0};
	if (squib_pager_start(&r, 1, src, NULL, &lz->p, &d))
		fail_msg("pager: %s", msg_of(&d));
}

static void lazy_free(struct lazy *lz)
{
	squib_pager_free(lz->p);
	munmap(lz->ram, lz->size);
}

static void assert_no_pager_error(const struct lazy *lz)
{
	struct squib_error_detail d;

	if (squib_pager_error(lz->p, &d))
		fail_msg("pager error: %s", msg_of(&d));
}

static void test_should_restore_lazily_through_the_pager_byte_for_byte(void **state)
{
	struct fx *f = *state;
	struct squib_store *s;
	struct squib_store_source_stats st;
	struct lazy lz;

	if (squib_test_uffd_missing("lazy restore from the store"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	lazy_start(s, f->m.layout.id, NULL, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, RAM);
	assert_no_pager_error(&lz);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.chunks_fetched, NONZERO); /* each once, zero chunks never */
	assert_int_equal(st.errors, 0);
	lazy_free(&lz);
	squib_store_close(s);
}

/* A Diff's image maps its parent's chunks where pages did not change: one image serves it. */
static void test_should_restore_a_diff_from_its_image_alone(void **state)
{
	struct fx *f = *state;
	const uint64_t pages[] = {3, 700, 1900};
	char *dstate = squib_test_path(f->dir, "diff.snap"),
	     *dmem = squib_test_path(f->dir, "diff.mem");
	const char *chain[1] = {f->state};
	struct squib_memfile_manifest dm;
	struct squib_store *s;
	struct lazy lz;

	if (squib_test_uffd_missing("lazy restore of a diff"))
		skip();
	s = open_store(f->url);
	for (size_t i = 0; i < 3; i++)
		squib_test_fill_page(f->mem, pages[i], 77);
	squib_test_save_diff(dmem, f->mem, RAM, f->m.layout.id, pages, 3, false, &dm);
	squib_test_save_state(dstate, &dm.layout);
	push(s, dstate, dmem, chain, 1);
	lazy_start(s, dm.layout.id, NULL, 0, &lz);
	assert_int_equal(squib_store_source_layout(lz.ss)->kind, SQUIB_MEMORY_DIFF);
	assert_memory_equal(lz.ram, f->mem, RAM);
	assert_no_pager_error(&lz);
	lazy_free(&lz);
	squib_memfile_manifest_release(&dm);
	squib_store_close(s);
	free(dstate);
	free(dmem);
}

static int install_pager(void *ctx, const struct squib_ws_run *runs, uint64_t n,
			 uint64_t *installed, struct squib_error_detail *d)
{
	return squib_pager_prefetch(ctx, runs, n, installed, d);
}

/* Scattered runs, the way a guest touches memory; every page they name is then present. */
static void prefetch_and_check(struct fx *f, struct lazy *lz)
{
	const struct squib_ws_run runs[] = {{1800, 40}, {5, 3}, {512, 300}, {100, 1}, {1500, 64}};
	struct squib_pager_stats ps0, ps1;
	struct squib_error_detail d;
	uint64_t got = 0, want = 0;

	for (size_t i = 0; i < 5; i++)
		want += runs[i].page_count;
	if (squib_store_source_prefetch(lz->ss, runs, 5, install_pager, lz->p, &got, &d))
		fail_msg("prefetch: %s", msg_of(&d));
	assert_int_equal(got, want);
	squib_pager_stats(lz->p, &ps0);
	for (size_t i = 0; i < 5; i++)
		assert_memory_equal(lz->ram + runs[i].first_page * ps(),
				    f->mem + runs[i].first_page * ps(), runs[i].page_count * ps());
	squib_pager_stats(lz->p, &ps1);
	assert_int_equal(ps1.faults, ps0.faults); /* all there: no fault */
	assert_int_equal(ps1.pages_prefetched, want);
	assert_memory_equal(lz->ram, f->mem, RAM); /* the rest on demand */
	assert_no_pager_error(lz);
}

static void test_should_prefetch_a_working_set_in_parallel(void **state)
{
	struct fx *f = *state;
	struct squib_store *s;
	struct lazy lz;

	if (squib_test_uffd_missing("working-set prefetch from the store"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	prefetch_and_check(f, &lz);
	lazy_free(&lz);
	squib_store_close(s);
}

/* ---- failures: the faulting access stays blocked, the error names the chunk -------- */

struct toucher {
	const volatile uint8_t *addr;
	uint8_t value;
	int done; /* __atomic */
	pthread_t thr;
};

static void *touch_main(void *arg)
{
	struct toucher *t = arg;

	t->value = *t->addr;
	__atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Touch page `page` on another thread; wait for the pager's error; the access is still
 * blocked then (never served a wrong byte). Its detail into d. */
static int touch_until_error(struct lazy *lz, uint64_t page, struct squib_error_detail *d)
{
	struct toucher t = {.addr = lz->ram + page * ps()};
	int64_t until = now_ms() + WAIT_MS;
	int rc;

	assert_int_equal(pthread_create(&t.thr, NULL, touch_main, &t), 0);
	while (!(rc = squib_pager_error(lz->p, d)) && now_ms() < until)
		usleep(2000);
	if (!rc)
		fail_msg("no pager error after %d ms", WAIT_MS);
	assert_int_equal(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE), 0);
	squib_pager_stop(lz->p); /* the owner's part: the memory is lost; this wakes it */
	pthread_join(t.thr, NULL);
	return rc;
}

/* Window k's chunk key and, for a directory store, its file. */
static void chunk_of(struct fx *f, struct squib_store *s, uint64_t k, char key[96], char **path)
{
	struct squib_store_image im;
	struct squib_error_detail d;
	char hex[65];

	if (squib_store_image_get(s, f->m.layout.id, &im, &d))
		fail_msg("image: %s", msg_of(&d));
	squib_store_hash_hex(&im.chunks[k], hex);
	snprintf(key, 96, "chunks/%s", hex);
	if (path)
		assert_true(asprintf(path, "%s/%s", f->store, key) > 0);
	squib_store_image_release(&im);
}

static void assert_names(const struct squib_error_detail *d, const char *key, const char *url)
{
	if (!strstr(d->msg, key) || !strstr(d->msg, url))
		fail_msg("'%s' does not name %s of %s", d->msg, key, url);
}

/* Change one byte of window k's stored chunk (get, flip, put back). */
static void flip_chunk(struct squib_store *s, const char *key)
{
	struct squib_error_detail d;
	uint8_t *obj;
	size_t n;

	if (squib_store_get(s, key, 1u << 24, &obj, &n, &d))
		fail_msg("get %s: %s", key, msg_of(&d));
	obj[n / 2] ^= 0x20;
	if (squib_store_put(s, key, obj, n, &d))
		fail_msg("put %s: %s", key, msg_of(&d));
	free(obj);
}

static void flipped_byte(struct fx *f)
{
	struct squib_error_detail d;
	struct squib_store *s = open_store(f->url);
	struct lazy lz;
	char key[96];

	push(s, f->state, f->memf, NULL, 0);
	chunk_of(f, s, 5, key, NULL);
	flip_chunk(s, key);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, 5 * CHUNK); /* windows before it are fine */
	assert_true(touch_until_error(&lz, 5 * CHUNK / ps() + 1, &d) < 0);
	assert_true(d.code == SQUIB_E_CRC_MISMATCH || d.code == SQUIB_E_ENCODING);
	assert_names(&d, key, f->url);
	lazy_free(&lz);
	squib_store_close(s);
}

static void test_should_stop_on_a_flipped_byte_in_a_chunk(void **state)
{
	if (squib_test_uffd_missing("a corrupt chunk under the pager"))
		skip();
	flipped_byte(*state);
}

static void missing_chunk(struct fx *f)
{
	struct squib_error_detail d;
	struct squib_store *s = open_store(f->url);
	struct lazy lz;
	char key[96];

	push(s, f->state, f->memf, NULL, 0);
	chunk_of(f, s, 9, key, NULL);
	if (squib_store_delete(s, key, &d))
		fail_msg("delete: %s", msg_of(&d));
	lazy_start(s, f->m.layout.id, NULL, 0, &lz);
	assert_int_equal(touch_until_error(&lz, 9 * CHUNK / ps(), &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_names(&d, key, f->url);
	lazy_free(&lz);
	squib_store_close(s);
}

static void test_should_stop_on_a_missing_chunk(void **state)
{
	if (squib_test_uffd_missing("a missing chunk under the pager"))
		skip();
	missing_chunk(*state);
}

/* A Diff whose changed windows are deltas: read cold (base, then delta; the
 * base enters the cache too), then warm from the cache alone; a delta whose
 * base is gone stops the restore naming the base. */
static void test_should_restore_delta_windows_cold_warm_and_stop_on_a_missing_base(void **state)
{
	struct fx *f = *state;
	const uint64_t pages[] = {3, 700, 1900};
	char *dstate = squib_test_path(f->dir, "diff.snap"),
	     *dmem = squib_test_path(f->dir, "diff.mem");
	const char *chain[1] = {f->state};
	struct squib_store_source_stats st;
	struct squib_memfile_manifest dm;
	struct squib_store_image im;
	struct squib_error_detail d;
	struct squib_store *s;
	struct lazy lz;
	uint64_t k = 3 * ps() / CHUNK, deltas = 0;
	char key[96], hex[65];

	if (squib_test_uffd_missing("lazy restore of delta windows"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	for (size_t i = 0; i < 3; i++)
		squib_test_fill_page(f->mem, pages[i], 78);
	squib_test_save_diff(dmem, f->mem, RAM, f->m.layout.id, pages, 3, false, &dm);
	squib_test_save_state(dstate, &dm.layout);
	push(s, dstate, dmem, chain, 1);
	if (squib_store_image_get(s, dm.layout.id, &im, &d))
		fail_msg("image: %s", msg_of(&d));
	for (uint64_t j = 0; im.bases && j < im.chunk_count; j++)
		deltas += !squib_store_hash_is_zero(&im.bases[j]);
	/* Page 700's window was zero in the base: nothing to delta against, plain. */
	assert_int_equal(deltas, 2);
	assert_false(squib_store_hash_is_zero(&im.bases[k]));

	lazy_start(s, dm.layout.id, f->cache, 0, &lz); /* cold */
	assert_memory_equal(lz.ram, f->mem, RAM);
	assert_no_pager_error(&lz);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.cache_hits, 0);
	lazy_free(&lz);
	lazy_start(s, dm.layout.id, f->cache, 0, &lz); /* warm: nothing from the store */
	assert_memory_equal(lz.ram, f->mem, RAM);
	assert_no_pager_error(&lz);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.chunks_fetched, 0);
	assert_int_equal(st.cache_hits, NONZERO + 1); /* page 700 filled a zero window */
	lazy_free(&lz);

	/* The base of window k's delta gone (no cache): the restore stops on it. */
	squib_store_hash_hex(&im.bases[k], hex);
	snprintf(key, sizeof(key), "chunks/%s", hex);
	if (squib_store_delete(s, key, &d))
		fail_msg("delete: %s", msg_of(&d));
	lazy_start(s, dm.layout.id, NULL, 0, &lz);
	assert_int_equal(touch_until_error(&lz, 3, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_names(&d, key, f->url);
	lazy_free(&lz);
	squib_store_image_release(&im);
	squib_memfile_manifest_release(&dm);
	squib_store_close(s);
	free(dstate);
	free(dmem);
}

/* ---- the disk cache ---------------------------------------------------------------- */

static void test_should_refetch_a_corrupt_cache_entry(void **state)
{
	struct fx *f = *state;
	struct squib_store_source_stats st;
	struct squib_store *s;
	struct lazy lz;
	char key[96], *entry, *other, *from;

	if (squib_test_uffd_missing("the chunk cache"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, RAM);
	lazy_free(&lz);
	/* A flipped bit in an entry's header, one in its content, a whole entry of
	 * another chunk under this one's name and a FIFO: each is dropped and fetched again. */
	chunk_of(f, s, 2, key, NULL);
	assert_true(asprintf(&entry, "%s/%s", f->cache, key + 7) > 0);
	squib_test_xor_byte(entry, 20, 0x01);
	chunk_of(f, s, 3, key, NULL);
	other = squib_test_path(f->cache, key + 7);
	squib_test_xor_byte(other, 24 + 5000, 0x80);
	chunk_of(f, s, 4, key, NULL);
	from = squib_test_path(f->cache, key + 7);
	chunk_of(f, s, 5, key, NULL);
	free(other);
	other = squib_test_path(f->cache, key + 7);
	assert_int_equal(rename(from, other), 0);
	/* A FIFO under an entry's name (a shared directory's writer could plant one):
	 * refused without blocking the pager. */
	chunk_of(f, s, 6, key, NULL);
	free(from);
	from = squib_test_path(f->cache, key + 7);
	assert_int_equal(unlink(from), 0);
	assert_int_equal(mkfifo(from, 0600), 0);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, RAM);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.cache_corrupt, 4);	/* window 4's entry is just missing now */
	assert_int_equal(st.chunks_fetched, 5); /* only the bad entries */
	assert_int_equal(st.cache_hits, NONZERO - 5);
	lazy_free(&lz);
	/* ... and the entry was written again, whole */
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, RAM);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.chunks_fetched, 0);
	lazy_free(&lz);
	free(entry);
	free(other);
	free(from);
	squib_store_close(s);
}

/* A warm restore reads each entry once, straight into the pager's buffer: nothing
 * through the chunk table, no read-ahead (a disk cache's read has no latency to hide). */
static void test_should_read_each_entry_of_a_warm_cache_once(void **state)
{
	struct fx *f = *state;
	struct squib_store_source_stats st;
	struct squib_store *s;
	struct lazy lz;

	if (squib_test_uffd_missing("the chunk cache"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, RAM); /* fills the cache (written by the release) */
	lazy_free(&lz);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, RAM);
	assert_no_pager_error(&lz);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.cache_hits, NONZERO);
	assert_int_equal(st.chunks_fetched, 0);
	assert_int_equal(st.cache_corrupt, 0);
	assert_int_equal(st.memory_hits, 0);
	assert_int_equal(st.waits, 0);
	lazy_free(&lz);
	squib_store_close(s);
}

/* A prefetch over a warm cache reads each entry once, straight into the pager's buffer as
 * demand reads do: nothing through the chunk table (whose pool threads would read it there
 * and the installs copy it out). */
static void test_should_prefetch_from_a_warm_cache_without_the_chunk_table(void **state)
{
	struct fx *f = *state;
	struct squib_ws_run run = {0, RAM / ps()};
	struct squib_store_source_stats st;
	struct squib_pager_stats pst;
	struct squib_error_detail d;
	struct squib_store *s;
	uint64_t got = 0;
	struct lazy lz;

	if (squib_test_uffd_missing("the chunk cache"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	if (squib_store_source_prefetch(lz.ss, &run, 1, install_pager, lz.p, &got, &d))
		fail_msg("prefetch: %s", msg_of(&d)); /* cold: the pool fetches */
	lazy_free(&lz);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	if (squib_store_source_prefetch(lz.ss, &run, 1, install_pager, lz.p, &got, &d))
		fail_msg("prefetch: %s", msg_of(&d));
	assert_int_equal(got, RAM / ps());
	squib_pager_stats(lz.p, &pst);
	assert_memory_equal(lz.ram, f->mem, RAM);
	assert_no_pager_error(&lz);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.cache_hits, NONZERO);
	assert_int_equal(st.chunks_fetched, 0);
	assert_int_equal(st.memory_hits, 0);
	assert_int_equal(st.waits, 0);
	assert_int_equal(pst.faults, 0); /* all installed by the prefetch */
	lazy_free(&lz);
	squib_store_close(s);
}

/* Entries in the cache directory (64 hex digits; not temps or the lock). */
static uint64_t cache_entries(const char *cache)
{
	DIR *dir = opendir(cache);
	struct dirent *de;
	uint64_t n = 0;

	assert_non_null(dir);
	while ((de = readdir(dir)))
		n += strlen(de->d_name) == 64 && strspn(de->d_name, "0123456789abcdef") == 64;
	closedir(dir);
	return n;
}

/* RAM of a cold restore that fills the cache faster than its writer writes entries. */
#define BIG_RAM (128ull << 20)

/*
 * One cold restore that touches every chunk leaves every chunk cached when the cache can
 * hold them: from a directory store, fetches (the read-ahead threads' above all) come
 * faster than one writer creates entries, and a queue that dropped what did not fit left
 * about half of them out, so the next restore was not warm.
 */
static void one_cold_pass_fills_the_cache(void **state, bool prefetch)
{
	struct fx *f = *state;
	struct squib_store_source_stats st;
	struct squib_memfile_manifest m;
	char *bstate, *bmem;
	struct squib_store *s;
	uint8_t *mem;
	struct lazy lz;

	if (squib_test_uffd_missing("the chunk cache"))
		skip();
	mem = squib_test_guest_ram(BIG_RAM, 23);
	squib_test_save_pair(f->dir, "big", mem, BIG_RAM, false, &bstate, &bmem, &m);
	s = open_store(f->url);
	push(s, bstate, bmem, NULL, 0);
	unlink(bmem); /* only the store's copy is needed now */
	lazy_start(s, m.layout.id, f->cache, 0, &lz);
	if (prefetch) {
		struct squib_ws_run run = {0, BIG_RAM / ps()};
		struct squib_error_detail d;
		uint64_t got = 0;

		if (squib_store_source_prefetch(lz.ss, &run, 1, install_pager, lz.p, &got, &d))
			fail_msg("prefetch: %s", msg_of(&d));
		assert_int_equal(got, BIG_RAM / ps());
	}
	assert_memory_equal(lz.ram, mem, BIG_RAM);
	assert_no_pager_error(&lz);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.chunks_fetched, BIG_RAM / CHUNK);
	lazy_free(&lz); /* writes what is still queued */
	assert_int_equal(cache_entries(f->cache), BIG_RAM / CHUNK);
	/* ... so the next restore is warm: nothing from the store */
	lazy_start(s, m.layout.id, f->cache, 0, &lz);
	assert_memory_equal(lz.ram, mem, BIG_RAM);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.chunks_fetched, 0);
	assert_int_equal(st.cache_hits, BIG_RAM / CHUNK);
	lazy_free(&lz);
	squib_store_close(s);
	squib_memfile_manifest_release(&m);
	munmap(mem, BIG_RAM);
	free(bstate);
	free(bmem);
}

static void test_should_cache_every_chunk_of_one_cold_restore_on_demand(void **state)
{
	one_cold_pass_fills_the_cache(state, false);
}

static void test_should_cache_every_chunk_of_one_cold_prefetched_restore(void **state)
{
	one_cold_pass_fills_the_cache(state, true);
}

/* An entry with a right CRC over wrong content: a writer of the cache directory could
 * forge one. In a directory others can write, the source checks SHA-256 as well. */
static void test_should_check_sha256_of_entries_in_a_shared_cache_directory(void **state)
{
	struct fx *f = *state;
	struct squib_store_source_stats st;
	struct squib_store_image im;
	struct squib_error_detail d;
	uint8_t hd[24], crc[8];
	struct squib_store *s;
	struct lazy lz;
	char hex[65], *entry;
	FILE *fp;

	if (squib_test_uffd_missing("the chunk cache"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, RAM); /* fills the cache */
	lazy_free(&lz);
	assert_int_equal(chmod(f->cache, 0770), 0);
	if (squib_store_image_get(s, f->m.layout.id, &im, &d))
		fail_msg("image: %s", msg_of(&d));
	squib_store_hash_hex(&im.chunks[2], hex);
	entry = squib_test_path(f->cache, hex);
	/* Window 3's bytes under window 2's name, with the CRC the format asks for. */
	uint64_t c = squib_crc64(squib_crc64(0, im.chunks[2].b, 32), f->mem + 3 * CHUNK, CHUNK);
	memcpy(hd, "SQCHUNK1", 8);
	for (int i = 0; i < 8; i++) {
		hd[8 + i] = (uint8_t)(CHUNK >> (8 * i));
		crc[i] = (uint8_t)(c >> (8 * i));
	}
	memcpy(hd + 16, crc, 8);
	assert_non_null(fp = fopen(entry, "wb"));
	assert_int_equal(fwrite(hd, 1, 24, fp), 24);
	assert_int_equal(fwrite(f->mem + 3 * CHUNK, 1, CHUNK, fp), CHUNK);
	assert_int_equal(fclose(fp), 0);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, RAM);
	squib_store_source_stats(lz.ss, &st);
	assert_int_equal(st.cache_corrupt, 1);
	assert_int_equal(st.chunks_fetched, 1);
	assert_int_equal(st.cache_hits, NONZERO - 1);
	lazy_free(&lz);
	squib_store_image_release(&im);
	free(entry);
	squib_store_close(s);
}

/* Bytes of the cache's entries; fails on a left-over temp. */
static uint64_t cache_bytes(const char *dir, int *entries)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t n = 0;

	assert_non_null(d);
	*entries = 0;
	while ((e = readdir(d))) {
		char *p;

		if (!strncmp(e->d_name, ".tmp-", 5))
			fail_msg("a temp was left in the cache: %s", e->d_name);
		if (e->d_name[0] == '.')
			continue;
		p = squib_test_path(dir, e->d_name);
		n += squib_test_file_size(p);
		(*entries)++;
		free(p);
	}
	closedir(d);
	return n;
}

/* A child: read every page through its own source three times, in a shuffled order. */
static int reader_child(struct fx *f, uint64_t bound, unsigned seed)
{
	struct squib_store_source_options o = {
	    .cache_dir = f->cache, .cache_bytes = bound, .memory_bytes = 4 * CHUNK};
	uint64_t pages = RAM / ps();
	struct squib_page_source src;
	struct squib_error_detail d;
	struct squib_store *s;
	uint8_t *buf = malloc(ps());
	int bad = 0;

	if (squib_store_open(f->url, NULL, &s, &d) ||
	    squib_store_source_open(s, f->m.layout.id, &o, &src, NULL, &d))
		return 2;
	srand(seed);
	for (int round = 0; round < 3 && !bad; round++)
		for (uint64_t i = 0; i < pages / 8 && !bad; i++) {
			uint64_t p = (uint64_t)rand() % pages;

			if (!src.ops->present(src.ctx, p))
				bad = memcmp(f->mem + p * ps(), (uint8_t[65536]){0}, ps()) != 0;
			else
				bad = src.ops->read(src.ctx, p, 1, buf, &d) ||
				      memcmp(buf, f->mem + p * ps(), ps());
		}
	src.ops->release(src.ctx);
	squib_store_close(s);
	free(buf);
	return bad;
}

static void test_should_share_one_bounded_cache_between_processes(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->url);
	uint64_t bound = 2ull << 20, held;
	pid_t kids[3];
	int entries;

	push(s, f->state, f->memf, NULL, 0);
	squib_store_close(s);
	for (int i = 0; i < 3; i++) {
		if (!(kids[i] = fork()))
			_exit(reader_child(f, bound, 17u + (unsigned)i));
		assert_true(kids[i] > 0);
	}
	for (int i = 0; i < 3; i++) {
		int st;

		assert_int_equal(waitpid(kids[i], &st, 0), kids[i]);
		assert_true(WIFEXITED(st));
		if (WEXITSTATUS(st))
			fail_msg("reader %d failed (%d): a wrong byte or an error", i,
				 WEXITSTATUS(st));
	}
	held = cache_bytes(f->cache, &entries);
	assert_true(entries > 0);
	/* The bound, passed at most by 1/16 of it per process while they fill at once. */
	if (held > bound + 3 * (bound / 16) + 3 * CHUNK)
		fail_msg("cache holds %llu bytes, bound %llu", (unsigned long long)held,
			 (unsigned long long)bound);
}

/* ---- serve --from: Firecracker's protocol, a real userfaultfd client --------------- */

static char *cli_path(void)
{
	const char *cli = getenv("SQUIB_CLI");

	if (!cli || !*cli) {
		fprintf(stderr, "SKIP: no CLI in this build (SQUIB_CLI is empty)\n");
		return NULL;
	}
	return (char *)cli;
}

static char *ref_of(const struct fx *f, const uint8_t *id)
{
	char hex[33], *ref;

	squib_memfile_id_hex(id, hex);
	assert_true(asprintf(&ref, "%s/%s", f->url, hex) > 0);
	return ref;
}

static void serve_start(struct fx *f, const char *ref, struct squib_test_bg *c)
{
	char *argv[] = {cli_path(), "serve",  "--socket",     f->sock,	   "--from", (char *)ref,
			"--cache",  f->cache, "--cache-size", "100000000", NULL};

	squib_test_bg_start(NULL, argv, c);
	squib_test_bg_wait_for(c, "listening on ", WAIT_MS);
}

static struct squib_uffd_remote *vmm_connect(struct fx *f, uint8_t **mem)
{
	struct squib_uffd_remote_region r;
	struct squib_uffd_remote *u;
	struct squib_error_detail d;

	*mem = mmap(NULL, RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(*mem != MAP_FAILED);
	r = (struct squib_uffd_remote_region){*mem, RAM, 0};
	if (squib_uffd_remote_start(f->sock, &r, 1, ps(), NULL, &u, &d))
		fail_msg("uffd_remote_start: %s", msg_of(&d));
	return u;
}

static void test_should_serve_from_the_store_with_the_cli(void **state)
{
	struct fx *f = *state;
	struct squib_test_bg c;
	struct squib_uffd_remote *u;
	struct squib_store *s;
	uint8_t *mem;
	char *ref;

	if (!cli_path() || squib_test_uffd_missing("serve --from"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	squib_store_close(s);
	ref = ref_of(f, f->m.layout.id);
	serve_start(f, ref, &c);
	u = vmm_connect(f, &mem);
	assert_memory_equal(mem, f->mem, RAM);
	squib_uffd_remote_free(u);
	munmap(mem, RAM);
	assert_int_equal(squib_test_bg_finish(&c, WAIT_MS), 0);
	assert_non_null(strstr(c.obuf, "stopped: the VMM hung up"));
	assert_non_null(strstr(c.obuf, "store: 112 chunks fetched"));
	free(ref);
}

static void test_should_end_serve_with_the_chunk_named_when_a_chunk_is_bad(void **state)
{
	struct fx *f = *state;
	struct squib_test_bg c;
	struct squib_uffd_remote *u;
	struct squib_error_detail d;
	struct squib_store *s;
	struct toucher t;
	uint8_t *mem;
	char key[96], *ref;
	int rc;

	if (!cli_path() || squib_test_uffd_missing("serve --from, a bad chunk"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	chunk_of(f, s, 7, key, NULL);
	flip_chunk(s, key);
	ref = ref_of(f, f->m.layout.id);
	serve_start(f, ref, &c);
	u = vmm_connect(f, &mem);
	assert_memory_equal(mem, f->mem, 7 * CHUNK);
	t = (struct toucher){.addr = mem + 7 * CHUNK};
	assert_int_equal(pthread_create(&t.thr, NULL, touch_main, &t), 0);
	rc = squib_test_bg_finish(&c, WAIT_MS);
	assert_true(rc == 1 || rc == 2); /* 2: its bytes hash elsewhere; 1: not a zstd frame */
	if (!strstr(c.ebuf, key))
		fail_msg("serve's error does not name %s: %s", key, c.ebuf);
	/* the handler is gone: the VMM learns it; the access never completed */
	for (int64_t until = now_ms() + WAIT_MS;
	     !squib_uffd_remote_error(u, &d) && now_ms() < until;)
		usleep(2000);
	assert_true(squib_uffd_remote_error(u, &d) < 0);
	assert_int_equal(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE), 0);
	squib_uffd_remote_free(u); /* unregisters: the toucher wakes (on a zero page) */
	pthread_join(t.thr, NULL);
	munmap(mem, RAM);
	squib_store_close(s);
	free(ref);
}

/* ---- against Ceph RGW (`make test-store`) ----------------------------------------- */

/* A fresh prefix of SQUIB_TEST_S3_URL into f->url; false (one loud line): no server. */
static bool use_s3(struct fx *f, const char *what)
{
	static int n;
	const char *base = getenv("SQUIB_TEST_S3_URL");

	if (!base || !*base) {
		fprintf(stderr,
			"SKIP %s: no S3 server (SQUIB_TEST_S3_URL unset; `make test-store` "
			"starts Ceph RGW and sets it)\n",
			what);
		return false;
	}
	free(f->url);
	assert_true(asprintf(&f->url, "%s/lazy%ld-%d", base, (long)getpid(), n++) > 0);
	return true;
}

static void test_should_restore_lazily_from_ceph_rgw(void **state)
{
	struct fx *f = *state;
	struct squib_store *s;
	struct lazy lz;

	if (squib_test_uffd_missing("lazy restore from RGW") || !use_s3(f, "lazy restore"))
		skip();
	s = open_store(f->url);
	push(s, f->state, f->memf, NULL, 0);
	lazy_start(s, f->m.layout.id, f->cache, 0, &lz);
	prefetch_and_check(f, &lz);
	lazy_free(&lz);
	squib_store_close(s);
}

static void test_should_stop_on_bad_and_missing_chunks_from_ceph_rgw(void **state)
{
	struct fx *f = *state;

	if (squib_test_uffd_missing("corruption on RGW") || !use_s3(f, "corruption on RGW"))
		skip();
	flipped_byte(f);
	missing_chunk(f);
}

/* The proxy in front of RGW as the store's endpoint; the old endpoint into *old. */
static struct squib_store *via_proxy(struct fx *f, struct squib_test_proxy *px, char **old)
{
	char ep[64];
	unsigned port;

	*old = strdup(getenv("AWS_ENDPOINT_URL"));
	assert_int_equal(sscanf(*old, "http://127.0.0.1:%u", &port), 1);
	squib_test_proxy_start(px, (uint16_t)port);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", px->port);
	setenv("AWS_ENDPOINT_URL", ep, 1);
	return open_store(f->url);
}

static void outage(struct fx *f, bool kill)
{
	struct squib_test_proxy px;
	struct squib_error_detail d;
	struct squib_store *s;
	struct lazy lz;
	char *old, key[96];
	int rc;

	s = via_proxy(f, &px, &old);
	push(s, f->state, f->memf, NULL, 0);
	lazy_start(s, f->m.layout.id, NULL, 0, &lz);
	assert_memory_equal(lz.ram, f->mem, 20 * CHUNK); /* half-way through the restore */
	chunk_of(f, s, 60, key, NULL); /* windows 32-47 are zeros: never fetched */
	if (kill)
		squib_test_proxy_kill(&px);
	else
		squib_test_proxy_fail(&px, 1);
	rc = touch_until_error(&lz, 60 * CHUNK / ps(), &d);
	assert_int_equal(rc, SQUIB_E_IO);
	assert_names(&d, key, f->url);
	if (kill)
		assert_int_equal(d.os_errno, ECONNREFUSED);
	else if (!strstr(d.msg, "HTTP 503"))
		fail_msg("no HTTP 503 in '%s'", d.msg);
	fprintf(stderr, "%s: %s\n", kill ? "server killed" : "503 injected", d.msg);
	lazy_free(&lz);
	squib_store_close(s);
	squib_test_proxy_kill(&px);
	setenv("AWS_ENDPOINT_URL", old, 1);
	free(old);
}

static void test_should_stop_on_injected_5xx_from_ceph_rgw(void **state)
{
	if (squib_test_uffd_missing("5xx on RGW") || !use_s3(*state, "5xx on RGW"))
		skip();
	outage(*state, false);
}

static void test_should_stop_when_the_server_dies_mid_restore(void **state)
{
	if (squib_test_uffd_missing("server killed") || !use_s3(*state, "server killed"))
		skip();
	outage(*state, true);
}

static void test_should_serve_from_ceph_rgw_with_the_cli(void **state)
{
	if (!cli_path() || squib_test_uffd_missing("serve --from RGW") ||
	    !use_s3(*state, "serve --from RGW"))
		skip();
	test_should_serve_from_the_store_with_the_cli(state);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(test_should_restore_lazily_through_the_pager_byte_for_byte),
	    T(test_should_restore_a_diff_from_its_image_alone),
	    T(test_should_prefetch_a_working_set_in_parallel),
	    T(test_should_stop_on_a_flipped_byte_in_a_chunk),
	    T(test_should_stop_on_a_missing_chunk),
	    T(test_should_restore_delta_windows_cold_warm_and_stop_on_a_missing_base),
	    T(test_should_refetch_a_corrupt_cache_entry),
	    T(test_should_read_each_entry_of_a_warm_cache_once),
	    T(test_should_prefetch_from_a_warm_cache_without_the_chunk_table),
	    T(test_should_cache_every_chunk_of_one_cold_restore_on_demand),
	    T(test_should_cache_every_chunk_of_one_cold_prefetched_restore),
	    T(test_should_check_sha256_of_entries_in_a_shared_cache_directory),
	    T(test_should_share_one_bounded_cache_between_processes),
	    T(test_should_serve_from_the_store_with_the_cli),
	    T(test_should_end_serve_with_the_chunk_named_when_a_chunk_is_bad),
	    T(test_should_restore_lazily_from_ceph_rgw),
	    T(test_should_stop_on_bad_and_missing_chunks_from_ceph_rgw),
	    T(test_should_stop_on_injected_5xx_from_ceph_rgw),
	    T(test_should_stop_when_the_server_dies_mid_restore),
	    T(test_should_serve_from_ceph_rgw_with_the_cli),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
