/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The snapshot store (squib/store.h): the image codec, push and pull through
 * a directory store and through a real S3 server (Ceph's RADOS Gateway,
 * started by scripts/ceph-rgw-start.sh: `make test-store`), de-duplication,
 * corruption and missing chunks, 5xx answers (a real HTTP server on a real
 * socket that answers 503, and a proxy in front of the gateway that injects
 * them), gc.
 */
#include "http_proxy.h"
#include "pair.h"
#include "spawn.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <squib/crc64.h>
#include <squib/envelope.h>
#include <squib/store.h>

#include "../src/store/store_internal.h"

#define RAM (8ull << 20)

struct fx {
	char *dir, *store, *out;
	uint8_t *mem;
	char *state, *memf;
	struct squib_memfile_manifest m;
};

static const char *msg_of(const struct squib_error_detail *d)
{
	static char buf[2048];

	squib_error_message(d->code, d, buf, sizeof(buf));
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " [%s]", d->msg);
	return buf;
}

#define OK(call)                                                                                   \
	do {                                                                                       \
		struct squib_error_detail d_;                                                      \
		int r_ = (call);                                                                   \
		(void)d_;                                                                          \
		if (r_)                                                                            \
			fail_msg("%s: %d", #call, r_);                                             \
	} while (0)

/* 8 MiB of patterned RAM, one 1 MiB stretch of zeros; saved as a full pair with digests. */
static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->dir = squib_test_tmpdir();
	f->store = squib_test_path(f->dir, "store");
	f->out = squib_test_path(f->dir, "out");
	mkdir(f->store, 0700);
	mkdir(f->out, 0700);
	f->mem = squib_test_guest_ram(RAM, 7);
	memset(f->mem + (2u << 20), 0, 1u << 20);
	squib_test_save_pair(f->dir, "base", f->mem, RAM, true, &f->state, &f->memf, &f->m);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	squib_test_rmtree(f->dir);
	munmap(f->mem, RAM);
	squib_memfile_manifest_release(&f->m);
	free(f->dir);
	free(f->store);
	free(f->out);
	free(f->state);
	free(f->memf);
	free(f);
	return 0;
}

static struct squib_store *open_store(const char *url)
{
	struct squib_store_options o = {.workers = 4, .retries = 2, .backoff_ms = 10};
	struct squib_error_detail d;
	struct squib_store *s = NULL;

	if (squib_store_open(url, &o, &s, &d))
		fail_msg("open %s: %s", url, msg_of(&d));
	return s;
}

static void push_ok(struct squib_store *s, const char *state, const char *mem,
		    const char *const *chain, size_t n, struct squib_store_push_stats *st)
{
	struct squib_error_detail d;

	if (squib_store_push(s, state, mem, chain, NULL, n, NULL, st, &d))
		fail_msg("push %s: %s", state, msg_of(&d));
}

static char *pull_ok(struct squib_store *s, const uint8_t *id, const char *dir,
		     struct squib_store_pull_stats *st)
{
	struct squib_error_detail d;
	char *state = NULL;

	if (squib_store_pull(s, id, dir, NULL, st, &state, &d))
		fail_msg("pull: %s", msg_of(&d));
	assert_non_null(state);
	return state;
}

static void assert_same_file(const char *a, const char *b)
{
	uint8_t *x, *y;
	size_t nx, ny;

	assert_int_equal(squib_test_read_file(a, &x, &nx), 0);
	assert_int_equal(squib_test_read_file(b, &y, &ny), 0);
	assert_int_equal(nx, ny);
	assert_memory_equal(x, y, nx);
	free(x);
	free(y);
}

static char *mem_of(const char *state)
{
	char *m = strdup(state);

	strcpy(strrchr(m, '.'), ".mem");
	return m;
}

static const uint8_t *id_of(const struct fx *f)
{
	return f->m.layout.id;
}

/* Push, pull into another directory: the same two files byte for byte, digests good. */
static void round_trip(struct fx *f, const char *url)
{
	struct squib_store *s = open_store(url);
	struct squib_store_push_stats st;
	struct squib_store_pull_stats pst;
	struct squib_error_detail d;
	char *state, *mem;

	push_ok(s, f->state, f->memf, NULL, 0, &st);
	assert_int_equal(st.images_put, 1);
	assert_int_equal(st.chunks, RAM >> SQUIB_STORE_DEFAULT_CHUNK_SHIFT);
	assert_int_equal(st.chunks_zero, (1u << 20) >> SQUIB_STORE_DEFAULT_CHUNK_SHIFT);
	assert_int_equal(st.chunks_put + st.chunks_reused, st.chunks - st.chunks_zero);
	assert_true(st.chunks_put > 0);
	assert_true(st.bytes_put < st.bytes_present); /* the pattern compresses */
	state = pull_ok(s, id_of(f), f->out, &pst);
	mem = mem_of(state);
	assert_same_file(state, f->state);
	assert_same_file(mem, f->memf);
	if (squib_memfile_verify(mem, true, NULL, &d))
		fail_msg("verify %s: %s", mem, msg_of(&d));
	assert_int_equal(pst.images, 1);
	assert_int_equal(pst.chunks_fetched, st.chunks - st.chunks_zero);
	free(state);
	free(mem);
	squib_store_close(s);
}

static void test_should_round_trip_a_pair_through_a_directory_store(void **state)
{
	struct fx *f = *state;

	round_trip(f, f->store);
}

static void test_should_upload_nothing_new_when_pushing_again(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	struct squib_store_push_stats st;
	char *copy_state, *copy_mem;

	push_ok(s, f->state, f->memf, NULL, 0, &st);
	push_ok(s, f->state, f->memf, NULL, 0, &st);
	assert_int_equal(st.images_skipped, 1);
	assert_int_equal(st.images_put, 0);
	assert_int_equal(st.chunks_put, 0);
	/* The same memory saved again (a new id): a new image, no new chunk. */
	squib_test_save_pair(f->dir, "copy", f->mem, RAM, false, &copy_state, &copy_mem, NULL);
	push_ok(s, copy_state, copy_mem, NULL, 0, &st);
	assert_int_equal(st.images_put, 1);
	assert_int_equal(st.chunks_put, 0);
	assert_int_equal(st.chunks_reused, st.chunks - st.chunks_zero);
	free(copy_state);
	free(copy_mem);
	squib_store_close(s);
}

/* Every page of the chain base+diff in dir equals mem. */
static void assert_chain_reads(const char *base_mem, const char *diff_mem, const uint8_t *mem)
{
	const char *paths[2] = {base_mem, diff_mem};
	uint64_t ps = squib_test_page_size();
	struct squib_memfile_chain *c;
	struct squib_error_detail d;
	uint8_t *page = malloc(ps);

	if (squib_memfile_chain_open(paths, 2, &c, &d))
		fail_msg("chain: %s", msg_of(&d));
	for (uint64_t o = 0; o < RAM; o += ps) {
		assert_int_equal(
		    squib_memfile_chain_read_page(c, SQUIB_TEST_GUEST_BASE + o, page, &d), 0);
		if (memcmp(page, mem + o, ps))
			fail_msg("page at offset %llu differs", (unsigned long long)o);
	}
	squib_memfile_chain_close(c);
	free(page);
}

static void test_should_push_a_diff_as_its_changed_chunks_and_pull_its_chain(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	const uint64_t pages[] = {10, 11, 1500};
	struct squib_store_push_stats st;
	struct squib_memfile_manifest dm;
	const char *chain[1] = {f->state};
	char *dstate = squib_test_path(f->dir, "diff.snap"),
	     *dmem = squib_test_path(f->dir, "diff.mem");
	char *pulled, *pulled_mem, *base_mem;

	push_ok(s, f->state, f->memf, NULL, 0, &st);
	for (size_t i = 0; i < 3; i++)
		squib_test_fill_page(f->mem, pages[i], 99);
	squib_test_save_diff(dmem, f->mem, RAM, id_of(f), pages, 3, false, &dm);
	squib_test_save_state(dstate, &dm.layout);
	push_ok(s, dstate, dmem, chain, 1, &st);
	assert_int_equal(st.images_skipped, 1); /* the base */
	assert_int_equal(st.images_put, 1);
	assert_int_equal(st.chunks_put, 2); /* pages 10-11 share a window; 1500 is in another */
	pulled = pull_ok(s, dm.layout.id, f->out, NULL);
	pulled_mem = mem_of(pulled);
	base_mem = squib_test_path(f->out, "");
	free(base_mem);
	{
		char hex[33];

		squib_memfile_id_hex(id_of(f), hex);
		base_mem = malloc(strlen(f->out) + 40);
		sprintf(base_mem, "%s/%s.mem", f->out, hex);
	}
	assert_same_file(pulled, dstate);
	assert_same_file(pulled_mem, dmem);
	assert_same_file(base_mem, f->memf);
	assert_chain_reads(base_mem, pulled_mem, f->mem);
	squib_memfile_manifest_release(&dm);
	free(pulled);
	free(pulled_mem);
	free(base_mem);
	free(dstate);
	free(dmem);
	squib_store_close(s);
}

/* The path of the first non-zero chunk of the fixture's image in a directory store. */
static char *first_chunk(struct fx *f, struct squib_store *s, struct squib_store_hash *h)
{
	struct squib_store_image im;
	struct squib_error_detail d;
	char hex[65], *p;

	if (squib_store_image_get(s, id_of(f), &im, &d))
		fail_msg("image: %s", msg_of(&d));
	*h = im.chunks[0];
	assert_false(squib_store_hash_is_zero(h));
	squib_store_hash_hex(h, hex);
	p = malloc(strlen(f->store) + 80);
	sprintf(p, "%s/chunks/%s", f->store, hex);
	squib_store_image_release(&im);
	return p;
}

static void assert_nothing_pulled(struct fx *f)
{
	char hex[33], path[4096];

	squib_memfile_id_hex(id_of(f), hex);
	snprintf(path, sizeof(path), "%s/%s.mem", f->out, hex);
	assert_false(squib_test_exists(path));
	snprintf(path, sizeof(path), "%s/%s.snap", f->out, hex);
	assert_false(squib_test_exists(path));
	assert_int_equal(squib_test_temps(path, NULL), 0);
}

static int pull_fails(struct squib_store *s, struct fx *f, struct squib_error_detail *d)
{
	char *st = NULL;
	int r = squib_store_pull(s, id_of(f), f->out, NULL, NULL, &st, d);

	assert_null(st);
	return r;
}

/* The store holds fixed-offset files: a packed diff is refused before anything is uploaded. */
static void test_should_refuse_to_push_a_packed_diff(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	const uint64_t pages[] = {10, 1500};
	struct squib_memfile_write_options o = {.packed = true};
	struct squib_store_push_stats st = {0};
	struct squib_memfile_manifest dm;
	struct squib_error_detail d;
	const char *chain[1] = {f->state};
	char *dstate = squib_test_path(f->dir, "packed.snap"),
	     *dmem = squib_test_path(f->dir, "packed.mem");

	push_ok(s, f->state, f->memf, NULL, 0, &st);
	squib_test_save_diff_ex(dmem, f->mem, RAM, id_of(f), pages, 2, &o, &dm);
	squib_test_save_state(dstate, &dm.layout);
	assert_int_equal(squib_store_push(s, dstate, dmem, chain, NULL, 1, NULL, &st, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "is a packed diff"));
	assert_int_equal(st.images_put, 0);
	squib_memfile_manifest_release(&dm);
	squib_store_close(s);
	free(dstate);
	free(dmem);
}

static void test_should_refuse_a_chunk_whose_bytes_changed(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	struct squib_store_hash h;
	struct squib_error_detail d;
	uint8_t *other = malloc(1u << SQUIB_STORE_DEFAULT_CHUNK_SHIFT), *obj;
	char hex[65], *path;
	size_t n;

	push_ok(s, f->state, f->memf, NULL, 0, NULL);
	path = first_chunk(f, s, &h);
	squib_store_hash_hex(&h, hex);
	/* A flipped byte in the compressed object. */
	squib_test_xor_byte(path, (int64_t)(squib_test_file_size(path) / 2), 0x40);
	assert_true(pull_fails(s, f, &d) < 0);
	assert_true(d.code == SQUIB_E_ENCODING || d.code == SQUIB_E_CRC_MISMATCH);
	assert_non_null(strstr(d.msg, hex));
	assert_nothing_pulled(f);
	/* A well-formed object of other bytes under the name: the hash catches it. */
	memcpy(other, f->mem, 1u << SQUIB_STORE_DEFAULT_CHUNK_SHIFT);
	other[12345] ^= 1;
	assert_int_equal(
	    squib_store_chunk_encode(other, 1u << SQUIB_STORE_DEFAULT_CHUNK_SHIFT, 3, &obj, &n, &d),
	    0);
	assert_int_equal(squib_test_write_file(path, obj, n), 0);
	assert_int_equal(pull_fails(s, f, &d), SQUIB_E_CRC_MISMATCH);
	assert_non_null(strstr(d.msg, hex));
	assert_nothing_pulled(f);
	free(obj);
	free(other);
	free(path);
	squib_store_close(s);
}

static void test_should_name_a_missing_chunk(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	struct squib_store_hash h;
	struct squib_error_detail d;
	char hex[65], *path;

	push_ok(s, f->state, f->memf, NULL, 0, NULL);
	path = first_chunk(f, s, &h);
	squib_store_hash_hex(&h, hex);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(pull_fails(s, f, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_non_null(strstr(d.msg, hex));
	assert_nothing_pulled(f);
	free(path);
	squib_store_close(s);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int decode_with_crc(uint8_t *buf, size_t len)
{
	struct squib_store_image im;
	struct squib_error_detail d;
	int r;

	put_le64(buf + len - 8, squib_crc64(0, buf, len - 8));
	r = squib_store_image_decode(buf, len, &im, &d);
	if (r) {
		assert_int_equal(d.code, r);
		assert_null(im.chunks);
	}
	squib_store_image_release(&im);
	return r;
}

static void test_should_decode_an_image_strictly_in_its_check_order(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	struct squib_store_image im;
	struct squib_error_detail d;
	uint8_t *buf, *enc, *copy;
	size_t len, elen;
	char key[80], hex[33];

	push_ok(s, f->state, f->memf, NULL, 0, NULL);
	squib_memfile_id_hex(id_of(f), hex);
	snprintf(key, sizeof(key), "images/%s", hex);
	assert_int_equal(squib_store_get(s, key, 1u << 30, &buf, &len, &d), 0);
	assert_int_equal(squib_store_image_decode(buf, len, &im, &d), 0);
	assert_true(squib_memory_layout_equal(&im.manifest.layout, &f->m.layout));
	assert_int_equal(squib_store_image_encode(&im, &enc, &elen, &d), 0);
	assert_int_equal(elen, len);
	assert_memory_equal(enc, buf, len); /* canonical */
	squib_store_image_release(&im);
	copy = malloc(len);
	assert_int_equal(squib_store_image_decode(buf, 100, &im, &d), SQUIB_E_TOO_SHORT);
	memcpy(copy, buf, len);
	copy[200] ^= 1;
	assert_int_equal(squib_store_image_decode(copy, len, &im, &d), SQUIB_E_CRC_MISMATCH);
	memcpy(copy, buf, len);
	copy[0] ^= 1;
	assert_int_equal(decode_with_crc(copy, len), SQUIB_E_MAGIC_MISMATCH);
	memcpy(copy, buf, len);
	copy[8] = 2; /* major */
	assert_int_equal(decode_with_crc(copy, len), SQUIB_E_VERSION_MISMATCH);
	memcpy(copy, buf, len);
	copy[104] ^= 1; /* chunk_count: the size no longer matches */
	assert_int_equal(decode_with_crc(copy, len), SQUIB_E_ENCODING);
	memcpy(copy, buf, len);
	copy[60] = 17; /* chunk shift: the map has the wrong number of windows */
	assert_int_equal(decode_with_crc(copy, len), SQUIB_E_ENCODING);
	memcpy(copy, buf, len);
	copy[128 + 16 + 8] ^= 1; /* the first extent's page count: present pages disagree */
	assert_int_equal(decode_with_crc(copy, len), SQUIB_E_ENCODING);
	assert_int_equal(decode_with_crc(buf, len), 0);
	free(copy);
	free(enc);
	free(buf);
	squib_store_image_release(&im);
	squib_store_close(s);
}

/* ---- delta chunks ----------------------------------------------------------- */

/* A base pushed, then a diff changing one page in each of two windows; returns
 * the diff's image (its id in dm). */
struct delta_fx {
	struct squib_memfile_manifest dm;
	char *dstate, *dmem;
	struct squib_store_image im; /* the diff's */
	uint64_t k;		     /* a delta window of it */
};

static void push_delta_diff(struct fx *f, struct squib_store *s, const char *name,
			    const uint64_t *pages, size_t n, uint32_t seed, const uint8_t *parent,
			    const char *const *chain, size_t chain_n, struct delta_fx *x,
			    struct squib_store_push_stats *st)
{
	struct squib_error_detail d;
	char file[64];

	snprintf(file, sizeof(file), "%s.snap", name);
	x->dstate = squib_test_path(f->dir, file);
	snprintf(file, sizeof(file), "%s.mem", name);
	x->dmem = squib_test_path(f->dir, file);
	for (size_t i = 0; i < n; i++)
		squib_test_fill_page(f->mem, pages[i], seed);
	squib_test_save_diff(x->dmem, f->mem, RAM, parent, pages, n, false, &x->dm);
	squib_test_save_state(x->dstate, &x->dm.layout);
	push_ok(s, x->dstate, x->dmem, chain, chain_n, st);
	if (squib_store_image_get(s, x->dm.layout.id, &x->im, &d))
		fail_msg("image: %s", msg_of(&d));
	x->k = pages[0] * squib_test_page_size() >> x->im.chunk_shift;
}

static void delta_fx_free(struct delta_fx *x)
{
	squib_memfile_manifest_release(&x->dm);
	squib_store_image_release(&x->im);
	free(x->dstate);
	free(x->dmem);
}

static char *object_path(struct fx *f, const struct squib_store_hash *name,
			 const struct squib_store_hash *base)
{
	char hex[65], bhex[65], *p = malloc(strlen(f->store) + 200);

	squib_store_hash_hex(name, hex);
	if (base) {
		squib_store_hash_hex(base, bhex);
		sprintf(p, "%s/deltas/%s.%s", f->store, hex, bhex);
	} else {
		sprintf(p, "%s/chunks/%s", f->store, hex);
	}
	return p;
}

static void pull_diff_ok(struct squib_store *s, struct fx *f, const uint8_t *id, const char *dmem)
{
	char *pulled = pull_ok(s, id, f->out, NULL), *pulled_mem = mem_of(pulled);

	assert_same_file(pulled_mem, dmem);
	free(pulled);
	free(pulled_mem);
}

/* Remove the pulled diff pair: the base's stays, so a pull reads only the diff's windows. */
static void unpull(struct fx *f, const uint8_t *id)
{
	char hex[33], path[4096];

	squib_memfile_id_hex(id, hex);
	snprintf(path, sizeof(path), "%s/%s.mem", f->out, hex);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s.snap", f->out, hex);
	unlink(path);
}

static void test_should_store_a_changed_window_as_a_delta_of_depth_one(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	const uint64_t pages1[] = {10, 1500}, pages2[] = {12};
	const char *chain1[1] = {f->state};
	struct squib_store_push_stats st, bst;
	struct squib_store_image base;
	struct squib_error_detail d;
	struct delta_fx x1, x2;
	const char *chain2[2];
	char *plain, *delta;
	uint8_t *buf;
	size_t len;
	char key[80], hex[33];

	push_ok(s, f->state, f->memf, NULL, 0, &bst);
	if (squib_store_image_get(s, id_of(f), &base, &d))
		fail_msg("image: %s", msg_of(&d));
	push_delta_diff(f, s, "d1", pages1, 2, 99, id_of(f), chain1, 1, &x1, &st);
	assert_int_equal(st.chunks_put, 2);
	assert_int_equal(st.deltas_put, 2); /* one page of sixteen changed: a delta pays */
	assert_true(st.bytes_put < 2 * (uint64_t)squib_test_page_size());
	/* The delta's base is the parent's chunk of the window, named in the image. */
	assert_non_null(x1.im.bases);
	assert_memory_equal(&x1.im.bases[x1.k], &base.chunks[x1.k], SQUIB_STORE_HASH_SIZE);
	delta = object_path(f, &x1.im.chunks[x1.k], &x1.im.bases[x1.k]);
	plain = object_path(f, &x1.im.chunks[x1.k], NULL);
	assert_true(squib_test_exists(delta));
	assert_false(squib_test_exists(plain));
	free(delta);
	free(plain);
	/* A 1.1 image (it has a base map); the base's has none: 1.0. */
	squib_memfile_id_hex(x1.dm.layout.id, hex);
	snprintf(key, sizeof(key), "images/%s", hex);
	OK(squib_store_get(s, key, 1u << 30, &buf, &len, &d));
	assert_int_equal(buf[10], 1);
	free(buf);
	squib_memfile_id_hex(id_of(f), hex);
	snprintf(key, sizeof(key), "images/%s", hex);
	OK(squib_store_get(s, key, 1u << 30, &buf, &len, &d));
	assert_int_equal(buf[10], 0);
	free(buf);

	/* A diff of the diff, changing the same window again: its delta is against
	 * the plain base chunk, never against the first diff's delta (depth 1). */
	chain2[0] = f->state;
	chain2[1] = x1.dstate;
	push_delta_diff(f, s, "d2", pages2, 1, 55, x1.dm.layout.id, chain2, 2, &x2, &st);
	assert_int_equal(x2.k, x1.k);
	assert_int_equal(st.deltas_put, 1);
	assert_memory_equal(&x2.im.bases[x2.k], &base.chunks[x2.k], SQUIB_STORE_HASH_SIZE);
	pull_diff_ok(s, f, x2.dm.layout.id, x2.dmem);
	pull_diff_ok(s, f, x1.dm.layout.id, x1.dmem);

	/* The same memory pushed as a Full under a new id: every window is in the
	 * store already, the delta windows as deltas - reused from the listing
	 * (a delta counts with its base listed), nothing uploaded. */
	{
		char *cstate, *cmem, *pulled, *pulled_mem;
		struct squib_memfile_manifest cm;
		struct squib_store_image cim;

		squib_test_save_pair(f->dir, "copy", f->mem, RAM, false, &cstate, &cmem, &cm);
		push_ok(s, cstate, cmem, NULL, 0, &st);
		assert_int_equal(st.chunks_put, 0);
		assert_int_equal(st.chunks_reused, st.chunks - st.chunks_zero);
		OK(squib_store_image_get(s, cm.layout.id, &cim, &d));
		assert_non_null(cim.bases);
		assert_memory_equal(&cim.bases[x2.k], &base.chunks[x2.k], SQUIB_STORE_HASH_SIZE);
		pulled = pull_ok(s, cm.layout.id, f->out, NULL);
		pulled_mem = mem_of(pulled);
		assert_same_file(pulled_mem, cmem);
		squib_store_image_release(&cim);
		squib_memfile_manifest_release(&cm);
		free(pulled);
		free(pulled_mem);
		free(cstate);
		free(cmem);
	}

	/* Without deltas (the option), the same window is stored whole. */
	{
		struct squib_store_options o = {.workers = 2, .no_delta = true};
		char *other = squib_test_path(f->dir, "plainstore");
		struct squib_store *p;

		OK(squib_store_open(other, &o, &p, &d));
		push_ok(p, x1.dstate, x1.dmem, chain1, 1, &st);
		assert_int_equal(st.deltas_put, 0);
		squib_store_close(p);
		free(other);
	}
	delta_fx_free(&x1);
	delta_fx_free(&x2);
	squib_store_image_release(&base);
	squib_store_close(s);
}

/* Rewrite image `id` in the store with window k's base replaced. */
static void set_base(struct squib_store *s, const uint8_t *id, uint64_t k,
		     const struct squib_store_hash *base)
{
	struct squib_store_image im;
	struct squib_error_detail d;
	char key[80], hex[33];
	uint8_t *buf;
	size_t len;

	OK(squib_store_image_get(s, id, &im, &d));
	im.bases[k] = *base;
	OK(squib_store_image_encode(&im, &buf, &len, &d));
	squib_memfile_id_hex(id, hex);
	snprintf(key, sizeof(key), "images/%s", hex);
	OK(squib_store_put(s, key, buf, len, &d));
	free(buf);
	squib_store_image_release(&im);
}

static void test_should_refuse_a_delta_whose_base_is_missing_corrupt_wrong_or_a_delta(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	const uint64_t pages[] = {10, 1500};
	const char *chain[1] = {f->state};
	struct squib_error_detail d;
	struct delta_fx x;
	struct squib_store_hash b, other, n2;
	size_t wlen = (size_t)1 << SQUIB_STORE_DEFAULT_CHUNK_SHIFT, n;
	uint8_t *win = malloc(wlen), *ref = malloc(wlen), *obj;
	char hex[65], *base_path, *delta_path, *p2, *saved;
	char *pulled = NULL;

	push_ok(s, f->state, f->memf, NULL, 0, NULL);
	push_delta_diff(f, s, "d1", pages, 2, 99, id_of(f), chain, 1, &x, NULL);
	pull_diff_ok(s, f, x.dm.layout.id, x.dmem); /* the base's pair stays in out/ */
	unpull(f, x.dm.layout.id);
	b = x.im.bases[x.k];
	squib_store_hash_hex(&b, hex);
	base_path = object_path(f, &b, NULL);
	delta_path = object_path(f, &x.im.chunks[x.k], &b);
	saved = squib_test_path(f->dir, "saved-base");
	assert_int_equal(rename(base_path, saved), 0);

	/* The base missing: the pull names it and leaves nothing. */
	assert_int_equal(squib_store_pull(s, x.dm.layout.id, f->out, NULL, NULL, &pulled, &d),
			 SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_non_null(strstr(d.msg, hex));
	assert_null(pulled);

	/* The base's object holding other (well-formed) bytes: its hash catches it. */
	memcpy(ref, f->mem + x.k * wlen, wlen);
	ref[7] ^= 1;
	OK(squib_store_chunk_encode(ref, wlen, 3, &obj, &n, &d));
	assert_int_equal(squib_test_write_file(base_path, obj, n), 0);
	free(obj);
	assert_int_equal(squib_store_pull(s, x.dm.layout.id, f->out, NULL, NULL, &pulled, &d),
			 SQUIB_E_CRC_MISMATCH);
	assert_non_null(strstr(d.msg, hex));
	assert_int_equal(rename(saved, base_path), 0);
	pull_diff_ok(s, f, x.dm.layout.id, x.dmem); /* whole again: it reads */
	unpull(f, x.dm.layout.id);

	/* The delta against the wrong base: the image names another plain chunk
	 * and the delta object is there under that pair - its bytes come out wrong. */
	other = x.im.chunks[x.k + 1];
	assert_false(squib_store_hash_is_zero(&other));
	p2 = object_path(f, &x.im.chunks[x.k], &other);
	{
		uint8_t *o2;
		size_t n2len;

		assert_int_equal(squib_test_read_file(delta_path, &o2, &n2len), 0);
		assert_int_equal(squib_test_write_file(p2, o2, n2len), 0);
		free(o2);
	}
	set_base(s, x.dm.layout.id, x.k, &other);
	{
		int r = squib_store_pull(s, x.dm.layout.id, f->out, NULL, NULL, &pulled, &d);

		assert_true(r == SQUIB_E_ENCODING || r == SQUIB_E_CRC_MISMATCH);
	}
	assert_null(pulled);
	free(p2);

	/* Depth 2 refused: window k's base named as the first delta (a delta
	 * itself, no plain chunk of that name), with a genuine delta against its
	 * bytes stored. A reader that chased deltas would read it; the store's
	 * rule is that a base is a plain chunk, so the read fails on the base. */
	memcpy(win, f->mem + x.k * wlen, wlen); /* the delta's bytes (its name) */
	memcpy(ref, win, wlen);
	ref[100] ^= 0x5a; /* the next version of the window */
	OK(squib_store_hash(ref, wlen, &n2, &d));
	OK(squib_store_delta_encode(ref, wlen, win, wlen, 3, &obj, &n, &d));
	p2 = object_path(f, &n2, &x.im.chunks[x.k]);
	assert_int_equal(squib_test_write_file(p2, obj, n), 0);
	free(obj);
	{
		struct squib_store_image im;
		char key[80], ihex[33];
		uint8_t *buf;
		size_t len;

		OK(squib_store_image_get(s, x.dm.layout.id, &im, &d));
		im.bases[x.k] = im.chunks[x.k];
		im.chunks[x.k] = n2;
		OK(squib_store_image_encode(&im, &buf, &len, &d));
		squib_memfile_id_hex(x.dm.layout.id, ihex);
		snprintf(key, sizeof(key), "images/%s", ihex);
		OK(squib_store_put(s, key, buf, len, &d));
		free(buf);
		squib_store_hash_hex(&im.bases[x.k], hex);
		squib_store_image_release(&im);
	}
	assert_int_equal(squib_store_pull(s, x.dm.layout.id, f->out, NULL, NULL, &pulled, &d),
			 SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_non_null(strstr(d.msg, hex)); /* the base that is no plain chunk */
	assert_null(pulled);
	free(p2);
	free(saved);
	free(base_path);
	free(delta_path);
	free(win);
	free(ref);
	delta_fx_free(&x);
	squib_store_close(s);
}

/* gc marks from the images alone: a delta's base lives as long as an image maps the delta. */
static void test_should_gc_keep_the_bases_of_live_deltas_and_sweep_dead_deltas(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	const uint64_t pages[] = {10, 1500};
	const char *chain[1] = {f->state};
	struct squib_store_gc_stats gs;
	struct squib_error_detail d;
	struct delta_fx x;
	char key[80], hex[33], *base_path, *delta_path;

	push_ok(s, f->state, f->memf, NULL, 0, NULL);
	push_delta_diff(f, s, "d1", pages, 2, 99, id_of(f), chain, 1, &x, NULL);
	base_path = object_path(f, &x.im.bases[x.k], NULL);
	delta_path = object_path(f, &x.im.chunks[x.k], &x.im.bases[x.k]);
	OK(squib_store_gc(s, false, &gs, &d));
	assert_int_equal(gs.chunks_deleted, 0);
	/* The base image gone: window k's plain chunk is mapped by no image, only
	 * named as the diff's base - it stays, and the diff's windows still read. */
	squib_memfile_id_hex(id_of(f), hex);
	snprintf(key, sizeof(key), "images/%s", hex);
	OK(squib_store_delete(s, key, &d));
	OK(squib_store_gc(s, false, &gs, &d));
	assert_int_equal(gs.images, 1);
	assert_true(squib_test_exists(base_path));
	assert_true(squib_test_exists(delta_path));
	{
		size_t wlen = (size_t)1 << x.im.chunk_shift;
		uint8_t *buf = malloc(wlen);

		OK(squib_store_window_fetch(s, NULL, &x.im.chunks[x.k], &x.im.bases[x.k], buf, wlen,
					    NULL, &d));
		assert_memory_equal(buf, f->mem + x.k * wlen, wlen);
		free(buf);
	}
	/* The diff gone too: its deltas and their bases go. */
	squib_memfile_id_hex(x.dm.layout.id, hex);
	snprintf(key, sizeof(key), "images/%s", hex);
	OK(squib_store_delete(s, key, &d));
	OK(squib_store_gc(s, false, &gs, &d));
	assert_int_equal(gs.images, 0);
	assert_int_equal(gs.chunks_live, 0);
	assert_false(squib_test_exists(base_path));
	assert_false(squib_test_exists(delta_path));
	free(base_path);
	free(delta_path);
	delta_fx_free(&x);
	squib_store_close(s);
}

/* The 1.1 image's own rules, on a real image with two deltas (windows 0 and 23). */
static void test_should_decode_a_delta_list_strictly(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	const uint64_t pages[] = {10, 1500};
	const char *chain[1] = {f->state};
	struct squib_error_detail d;
	struct squib_store_image im;
	struct delta_fx x;
	uint8_t *buf, *copy;
	size_t len, list;
	char key[80], hex[33];

	push_ok(s, f->state, f->memf, NULL, 0, NULL);
	push_delta_diff(f, s, "d1", pages, 2, 99, id_of(f), chain, 1, &x, NULL);
	squib_memfile_id_hex(x.dm.layout.id, hex);
	snprintf(key, sizeof(key), "images/%s", hex);
	OK(squib_store_get(s, key, 1u << 30, &buf, &len, &d));
	assert_int_equal(decode_with_crc(buf, len), 0);
	assert_int_equal(buf[10], 1);  /* minor */
	assert_int_equal(buf[120], 2); /* delta_count */
	list = len - 8 - 2 * 40;       /* (u64 window, 32-byte base) x 2 */
	assert_int_equal(buf[list], 0);
	assert_int_equal(buf[list + 40], 1500 * squib_test_page_size() >> x.im.chunk_shift);
	copy = malloc(len);
#define MUTATE(stmt, want)                                                                         \
	do {                                                                                       \
		memcpy(copy, buf, len);                                                            \
		stmt;                                                                              \
		assert_int_equal(decode_with_crc(copy, len), want);                                \
	} while (0)
	MUTATE(copy[10] = 2, SQUIB_E_VERSION_MISMATCH); /* not this reader's minor */
	MUTATE(copy[10] = 0, SQUIB_E_ENCODING);		/* a 1.0 image with deltas */
	MUTATE(copy[120] = 0, SQUIB_E_ENCODING);	/* a 1.1 image without */
	MUTATE(copy[120] = 3, SQUIB_E_ENCODING);	/* the size no longer matches */
	MUTATE(copy[list + 40] = 0, SQUIB_E_ENCODING);	/* windows not ascending */
	MUTATE(put_le64(copy + list + 40, x.im.chunk_count), SQUIB_E_ENCODING); /* no window */
	MUTATE(memset(copy + list + 8, 0, 32), SQUIB_E_ENCODING);		/* a zero base */
	MUTATE(memcpy(copy + list + 8, &x.im.chunks[0], 32), SQUIB_E_ENCODING); /* its own base */
	/* A base on a zero window (the fixture's 1 MiB of zeros starts at window 32). */
	assert_true(squib_store_hash_is_zero(&x.im.chunks[32]));
	MUTATE(put_le64(copy + list + 40, 32), SQUIB_E_ENCODING);
	MUTATE((void)0, 0);
#undef MUTATE
	/* An image whose bases are all zero encodes as 1.0, without the list. */
	OK(squib_store_image_decode(buf, len, &im, &d));
	memset(im.bases, 0, im.chunk_count * sizeof(*im.bases));
	free(copy);
	OK(squib_store_image_encode(&im, &copy, &len, &d));
	assert_int_equal(copy[10], 0);
	assert_int_equal(len, list + 8);
	squib_store_image_release(&im);
	free(copy);
	free(buf);
	delta_fx_free(&x);
	squib_store_close(s);
}

static void test_should_gc_chunks_no_image_maps_and_wait_for_pushes(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	struct squib_store_push_stats st, st2;
	struct squib_store_gc_stats gs;
	struct squib_memfile_manifest om;
	struct squib_error_detail d;
	uint8_t *other = squib_test_guest_ram(RAM, 1234);
	char key[80], hex[33], *ostate, *omem, *pulled;

	push_ok(s, f->state, f->memf, NULL, 0, &st);
	squib_test_save_pair(f->dir, "other", other, RAM, false, &ostate, &omem, &om);
	push_ok(s, ostate, omem, NULL, 0, &st2);
	assert_int_equal(st2.chunks_put, RAM >> SQUIB_STORE_DEFAULT_CHUNK_SHIFT);
	/* A push in progress: gc refuses. */
	assert_int_equal(squib_store_put(s, "leases/00000000000000aa", "x", 1, &d), 0);
	assert_int_equal(squib_store_gc(s, false, &gs, &d), SQUIB_E_BUSY);
	/* Two hours old on the store's clock: its push died; gc removes it and runs. */
	{
		char lease[4096];
		struct timespec old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};

		snprintf(lease, sizeof(lease), "%s/leases/00000000000000aa", f->store);
		assert_int_equal(utimensat(AT_FDCWD, lease, old, 0), 0);
		OK(squib_store_gc(s, false, &gs, &d));
		assert_int_equal(gs.leases_expired, 1);
		assert_false(squib_test_exists(lease));
	}
	/* Nothing to sweep while both images exist. */
	OK(squib_store_gc(s, false, &gs, &d));
	assert_int_equal(gs.images, 2);
	assert_int_equal(gs.chunks_deleted, 0);
	/* The other image removed: its chunks go, the fixture's stay. */
	squib_memfile_id_hex(om.layout.id, hex);
	snprintf(key, sizeof(key), "images/%s", hex);
	OK(squib_store_delete(s, key, &d));
	OK(squib_store_gc(s, true, &gs, &d));
	assert_int_equal(gs.chunks_deleted, st2.chunks_put);
	OK(squib_store_gc(s, false, &gs, &d));
	assert_int_equal(gs.images, 1);
	assert_int_equal(gs.chunks_deleted, st2.chunks_put);
	assert_int_equal(gs.chunks_live, st.chunks_put);
	OK(squib_store_gc(s, false, &gs, &d));
	assert_int_equal(gs.chunks_deleted, 0);
	pulled = pull_ok(s, id_of(f), f->out, NULL);
	free(pulled);
	squib_memfile_manifest_release(&om);
	munmap(other, RAM);
	free(ostate);
	free(omem);
	squib_store_close(s);
}

/* ---- a server that answers 503, and a fault-injecting proxy (support/http_proxy.h) ---- */

static void test_should_retry_5xx_then_fail_with_a_clear_error(void **state)
{
	struct fx *f = *state;
	struct squib_store_options o = {.workers = 2, .retries = 3, .backoff_ms = 5};
	char url[64], *old = getenv("AWS_ENDPOINT_URL") ? strdup(getenv("AWS_ENDPOINT_URL")) : NULL;
	struct squib_error_detail d;
	struct squib_store *s;
	struct squib_test_proxy h;

	squib_test_proxy_start(&h, 0); /* no upstream: 503 to everything */
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", h.port);
	setenv("AWS_ENDPOINT_URL", url, 1);
	if (!getenv("AWS_ACCESS_KEY_ID"))
		setenv("AWS_ACCESS_KEY_ID", "test", 1), setenv("AWS_SECRET_ACCESS_KEY", "test", 1);
	setenv("AWS_SESSION_TOKEN", "tok/en+123", 1); /* temporary credentials */
	OK(squib_store_open("s3://bucket/prefix", &o, &s, &d));
	unsetenv("AWS_SESSION_TOKEN");
	assert_int_equal(squib_store_push(s, f->state, f->memf, NULL, NULL, 0, NULL, NULL, &d),
			 SQUIB_E_IO);
	assert_int_equal(d.os_errno, EIO);
	if (!strstr(d.msg, "HTTP 503 (SlowDown) (after 4 attempts)"))
		fail_msg("message: %s", d.msg);
	assert_non_null(strstr(d.msg, "s3://bucket/prefix/leases/"));
	squib_store_close(s);
	squib_test_proxy_kill(&h);
	assert_int_equal(h.requests, 4); /* the lease's PUT, tried 1 + 3 times */
	/* The session token is sent, and signed (curl's SigV4 signs every header given). */
	assert_non_null(strcasestr(h.last, "\r\nx-amz-security-token: tok/en+123"));
	assert_non_null(strstr(h.last, "SignedHeaders="));
	assert_non_null(strstr(strstr(h.last, "SignedHeaders="), "x-amz-security-token"));
	squib_test_proxy_free(&h);
	if (old)
		setenv("AWS_ENDPOINT_URL", old, 1);
	else
		unsetenv("AWS_ENDPOINT_URL");
	free(old);
}

/* ---- the CLI ---------------------------------------------------------------------- */

static void cli(struct squib_test_proc *p, int want, char *const argv[])
{
	squib_test_spawn(NULL, argv, p);
	if (p->status != want)
		fail_msg("%s %s: exit %d, want %d; stdout: %s stderr: %s", argv[1],
			 argv[2] ? argv[2] : "", p->status, want, p->out, p->err);
}

static void test_should_push_list_pull_verify_and_gc_through_the_cli(void **state)
{
	struct fx *f = *state;
	char *bin, hex[33], url[4096], *pulled;
	struct squib_test_proc p;

	bin = squib_test_cli_path_or_skip();
	squib_memfile_id_hex(id_of(f), hex);
	snprintf(url, sizeof(url), "%s/%s", f->store, hex);
	cli(&p, 0, (char *const[]){bin, "push", f->state, "--to", f->store, NULL});
	assert_non_null(strstr(p.out, url)); /* the image's URL, for pull */
	squib_test_proc_free(&p);
	cli(&p, 0, (char *const[]){bin, "store", "ls", f->store, NULL});
	assert_non_null(strstr(p.out, hex));
	assert_non_null(strstr(p.out, " full "));
	squib_test_proc_free(&p);
	cli(&p, 0, (char *const[]){bin, "pull", url, f->out, NULL});
	squib_test_proc_free(&p);
	pulled = malloc(strlen(f->out) + 48);
	sprintf(pulled, "%s/%s.snap", f->out, hex);
	cli(&p, 0, (char *const[]){bin, "verify", pulled, NULL});
	assert_null(strstr(p.out, "FAIL"));
	squib_test_proc_free(&p);
	cli(&p, 0, (char *const[]){bin, "store", "gc", f->store, NULL});
	assert_non_null(strstr(p.out, "removed 0 chunks"));
	squib_test_proc_free(&p);
	/* A missing image: a clear error, exit 1. */
	snprintf(url, sizeof(url), "%s/%s", f->store, "0123456789abcdef0123456789abcdef");
	cli(&p, 1, (char *const[]){bin, "pull", url, f->out, NULL});
	assert_non_null(strstr(p.err, "images/0123456789abcdef0123456789abcdef"));
	squib_test_proc_free(&p);
	free(pulled);
}

/* A pull SIGKILLed at any point leaves no pair or a whole one; the next pull completes it. */
static void test_should_leave_no_torn_pair_when_a_pull_is_killed(void **state)
{
	struct fx *f = *state;
	const uint64_t big = 64ull << 20;
	uint8_t *mem;
	char *bin, *st, *mf, url[4096], hex[33], snap[4096], memp[4096];
	struct squib_memfile_manifest m;
	struct squib_store *s;
	struct squib_test_proc p;
	int whole = 0;

	bin = squib_test_cli_path_or_skip();
	mem = squib_test_guest_ram(big, 3);
	s = open_store(f->store);
	squib_test_save_pair(f->dir, "big", mem, big, false, &st, &mf, &m);
	push_ok(s, st, mf, NULL, 0, NULL);
	squib_memfile_id_hex(m.layout.id, hex);
	snprintf(url, sizeof(url), "%s/%s", f->store, hex);
	snprintf(snap, sizeof(snap), "%s/%s.snap", f->out, hex);
	snprintf(memp, sizeof(memp), "%s/%s.mem", f->out, hex);
	for (int delay_ms = 1; delay_ms <= 4096; delay_ms *= 2) {
		struct squib_test_bg b;
		struct squib_error_detail d;

		unlink(snap);
		unlink(memp);
		squib_test_bg_start(NULL, (char *const[]){bin, "pull", url, f->out, NULL}, &b);
		usleep((useconds_t)delay_ms * 1000);
		kill(b.pid, SIGKILL);
		squib_test_bg_finish(&b, 30000);
		if (squib_test_exists(snap)) { /* published: it must be the whole pair */
			if (squib_store_pull(s, m.layout.id, f->out, NULL, NULL, NULL, &d) ||
			    squib_memfile_verify(memp, false, NULL, &d))
				fail_msg("after a kill at %d ms: %s", delay_ms, msg_of(&d));
			whole++;
		}
	}
	cli(&p, 0, (char *const[]){bin, "pull", url, f->out, NULL});
	squib_test_proc_free(&p);
	assert_same_file(snap, st);
	assert_same_file(memp, mf);
	fprintf(stderr, "killed pulls: %d of 13 had published the pair\n", whole);
	squib_memfile_manifest_release(&m);
	munmap(mem, big);
	free(st);
	free(mf);
	squib_store_close(s);
}

/* ---- against a real S3 server: Ceph RGW (`make test-store` starts one) ---- */

static void test_should_round_trip_and_dedup_through_ceph_rgw(void **state)
{
	struct fx *f = *state;
	struct squib_store_push_stats st;
	struct squib_store_gc_stats gs;
	struct squib_error_detail d;
	struct squib_store *s;
	char *url = squib_test_s3_url("S3 round trip", "t");

	if (!url)
		skip();
	round_trip(f, url);
	s = open_store(url);
	push_ok(s, f->state, f->memf, NULL, 0, &st);
	assert_int_equal(st.images_skipped, 1);
	assert_int_equal(st.chunks_put, 0);
	OK(squib_store_gc(s, false, &gs, &d));
	assert_int_equal(gs.images, 1);
	assert_int_equal(gs.chunks_deleted, 0);
	assert_int_equal(gs.chunks_live, (RAM - (1u << 20)) >> SQUIB_STORE_DEFAULT_CHUNK_SHIFT);
	squib_store_close(s);
	free(url);
}

static void test_should_refuse_changed_and_missing_chunks_on_ceph_rgw(void **state)
{
	struct fx *f = *state;
	struct squib_store_image im;
	struct squib_error_detail d;
	struct squib_store *s;
	char key[80], hex[65], *url = squib_test_s3_url("S3 corruption", "t");
	uint8_t *obj;
	size_t n;

	if (!url)
		skip();
	s = open_store(url);
	push_ok(s, f->state, f->memf, NULL, 0, NULL);
	OK(squib_store_image_get(s, id_of(f), &im, &d));
	squib_store_hash_hex(&im.chunks[0], hex);
	snprintf(key, sizeof(key), "chunks/%s", hex);
	OK(squib_store_get(s, key, 1u << 24, &obj, &n, &d));
	obj[n / 2] ^= 0x10;
	OK(squib_store_put(s, key, obj, n, &d));
	assert_true(pull_fails(s, f, &d) < 0);
	assert_true(d.code == SQUIB_E_ENCODING || d.code == SQUIB_E_CRC_MISMATCH);
	assert_non_null(strstr(d.msg, hex));
	OK(squib_store_delete(s, key, &d));
	assert_int_equal(pull_fails(s, f, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_non_null(strstr(d.msg, "HTTP 404"));
	assert_non_null(strstr(d.msg, hex));
	assert_nothing_pulled(f);
	free(obj);
	squib_store_image_release(&im);
	squib_store_close(s);
	free(url);
}

static void test_should_ride_out_injected_5xx_from_ceph_rgw(void **state)
{
	struct fx *f = *state;
	char *url = squib_test_s3_url("S3 5xx injection", "t"), ep[64], *old;
	struct squib_store_push_stats st;
	struct squib_test_proxy h;
	struct squib_store *s;
	char *pulled;
	unsigned port;

	if (!url)
		skip();
	old = strdup(getenv("AWS_ENDPOINT_URL"));
	assert_int_equal(sscanf(old, "http://127.0.0.1:%u", &port), 1);
	squib_test_proxy_start(&h, (uint16_t)port);
	squib_test_proxy_fail_every(&h, 3); /* every third request: 503 */
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", h.port);
	setenv("AWS_ENDPOINT_URL", ep, 1);
	s = open_store(url);
	push_ok(s, f->state, f->memf, NULL, 0, &st);
	pulled = pull_ok(s, id_of(f), f->out, NULL);
	assert_same_file(pulled, f->state);
	assert_true(h.failed > 5);
	fprintf(stderr, "5xx injection: %d of %d requests answered 503, push and pull succeeded\n",
		h.failed, h.requests);
	squib_store_close(s);
	squib_test_proxy_free(&h);
	setenv("AWS_ENDPOINT_URL", old, 1);
	free(old);
	free(pulled);
	free(url);
}

/* Above multipart_bytes a PUT goes in parts (5 MiB, 5 MiB, 2 MiB + 1 byte here),
 * through a proxy that answers 503 to the first attempt of every second request. */
static void test_should_put_a_large_object_in_parts_on_ceph_rgw(void **state)
{
	struct squib_store_options o = {
	    .workers = 2, .retries = 3, .backoff_ms = 5, .multipart_bytes = 5u << 20};
	char *url = squib_test_s3_url("S3 multipart", "t"), ep[64], *old;
	size_t n = (12u << 20) + 1, got_n = 0;
	uint8_t *big = malloc(n), *got = NULL;
	struct squib_error_detail d;
	struct squib_store *s;
	struct squib_test_proxy h;
	int parts = 0, creates = 0, completes = 0;
	unsigned port;

	(void)state;
	if (!url) {
		free(big);
		skip();
	}
	for (size_t i = 0; i < n; i++)
		big[i] = (uint8_t)(i * 2654435761u >> 13);
	old = strdup(getenv("AWS_ENDPOINT_URL"));
	assert_int_equal(sscanf(old, "http://127.0.0.1:%u", &port), 1);
	squib_test_proxy_start(&h, (uint16_t)port);
	squib_test_proxy_fail_every(&h, 2);
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%u", h.port);
	setenv("AWS_ENDPOINT_URL", ep, 1);
	OK(squib_store_open(url, &o, &s, &d));
	OK(squib_store_put(s, "images/big", big, n, &d));
	OK(squib_store_get(s, "images/big", n, &got, &got_n, &d));
	assert_int_equal(got_n, n);
	assert_memory_equal(got, big, n);
	squib_store_close(s);
	squib_test_proxy_kill(&h);
	for (int i = 0; i < h.n_seen; i++) {
		parts += strstr(h.seen[i], "PUT ") && strstr(h.seen[i], "?partNumber=") != NULL;
		creates += strstr(h.seen[i], "POST ") && strstr(h.seen[i], "?uploads=") != NULL;
		completes += strstr(h.seen[i], "POST ") && strstr(h.seen[i], "?uploadId=") != NULL;
	}
	assert_int_equal(parts, 3);
	assert_int_equal(creates, 1);
	assert_int_equal(completes, 1);
	assert_true(h.failed >= 3);
	fprintf(stderr, "multipart: 3 parts, %d of %d requests answered 503\n", h.failed,
		h.requests);
	squib_test_proxy_free(&h);
	setenv("AWS_ENDPOINT_URL", old, 1);
	free(old);
	free(big);
	free(got);
	free(url);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_should_round_trip_a_pair_through_a_directory_store,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_upload_nothing_new_when_pushing_again,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_push_a_diff_as_its_changed_chunks_and_pull_its_chain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_refuse_to_push_a_packed_diff, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_refuse_a_chunk_whose_bytes_changed, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_name_a_missing_chunk, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_decode_an_image_strictly_in_its_check_order,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_store_a_changed_window_as_a_delta_of_depth_one, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_refuse_a_delta_whose_base_is_missing_corrupt_wrong_or_a_delta, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_gc_keep_the_bases_of_live_deltas_and_sweep_dead_deltas, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_should_decode_a_delta_list_strictly, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_gc_chunks_no_image_maps_and_wait_for_pushes,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_retry_5xx_then_fail_with_a_clear_error,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_push_list_pull_verify_and_gc_through_the_cli, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_leave_no_torn_pair_when_a_pull_is_killed,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_round_trip_and_dedup_through_ceph_rgw,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_refuse_changed_and_missing_chunks_on_ceph_rgw, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_ride_out_injected_5xx_from_ceph_rgw, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_put_a_large_object_in_parts_on_ceph_rgw,
					    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
