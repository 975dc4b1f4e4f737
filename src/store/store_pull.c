/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pull: images back into ordinary pairs. The memory file is rebuilt in the
 * temp of an atomic writer: each chunk window holding present pages is
 * fetched by the worker pool, checked against its name, and its present
 * pages written at their file offsets; then the manifest and footer
 * (the memory file's own encoder, so the tail is byte for byte the pushed
 * file's). The state file is the pushed bytes. Both are published with the
 * save's pair protocol under both destinations' locks: memory, then state.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/envelope.h>
#include <squib/store.h>

#include "../memfile_internal.h"
#include "../memlayout.h"
#include "../pair.h"
#include "../util.h"
#include "store_internal.h"

#define MAX_CHAIN 1024

struct pull {
	struct squib_store *s;
	struct squib_store_pull_stats *st;
	const struct squib_progress *progress;
	uint64_t done, total;
};

struct fetch_job {
	struct pull *p;
	const struct squib_store_image *im;
	int fd;
	uint64_t k;
	uint8_t buf[]; /* the window's bytes */
};

/* The first extent ending after page a (extents are sorted). */
static uint64_t first_extent_after(const struct squib_memory_layout *l, uint64_t a)
{
	uint64_t lo = 0, hi = l->extent_count;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;
		const struct squib_page_extent *e = &l->extents[mid];

		if (e->first_page + e->page_count <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Write the present pages of window bytes [off, off + len) from buf (NULL: zeros). */
static int write_present(int fd, const struct squib_memory_layout *l, uint64_t off, uint64_t len,
			 const uint8_t *buf, uint64_t *written, struct squib_error_detail *d)
{
	uint64_t a = off / l->page_size, b = (off + len) / l->page_size;
	static const uint8_t zeros[65536];

	for (uint64_t i = first_extent_after(l, a); i < l->extent_count; i++) {
		const struct squib_page_extent *e = &l->extents[i];
		uint64_t p0 = e->first_page > a ? e->first_page : a;
		uint64_t p1 = e->first_page + e->page_count < b ? e->first_page + e->page_count : b;

		if (e->first_page >= b)
			break;
		for (uint64_t o = p0 * l->page_size; o < p1 * l->page_size;) {
			uint64_t n = p1 * l->page_size - o;
			int e2;

			if (!buf && n > sizeof(zeros))
				n = sizeof(zeros);
			e2 = squib_fd_write_all(fd, buf ? buf + (o - off) : zeros, n, (off_t)o);
			if (e2)
				return squib_memfile_io_error(d, -e2, "writing pulled pages");
			*written += n;
			o += n;
		}
	}
	return 0;
}

static bool window_present(const struct squib_memory_layout *l, uint64_t off, uint64_t len)
{
	uint64_t i = first_extent_after(l, off / l->page_size);

	return i < l->extent_count && l->extents[i].first_page < (off + len) / l->page_size;
}

static int fetch_chunk(void *arg, struct squib_error_detail *d)
{
	struct fetch_job *j = arg;
	const struct squib_memory_layout *l = &j->im->manifest.layout;
	uint64_t ga, off, len, w = 0, n = 0;
	uint32_t region;
	int r;

	if (!d) {
		free(j);
		return 0;
	}
	squib_store_chunk_window(l, j->im->chunk_shift, j->k, &region, &ga, &off, &len);
	/* A delta window: its base, then the delta (bytes_fetched counts both). */
	if (!(r = squib_store_window_fetch(j->p->s, squib_store_thread_dctx(), &j->im->chunks[j->k],
					   squib_store_image_base(j->im, j->k), j->buf, len, &n,
					   d)) &&
	    !(r = write_present(j->fd, l, off, len, j->buf, &w, d))) {
		__atomic_fetch_add(&j->p->st->chunks_fetched, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&j->p->st->bytes_fetched, n, __ATOMIC_RELAXED);
		__atomic_fetch_add(&j->p->st->bytes_written, w, __ATOMIC_RELAXED);
	}
	free(j);
	return r;
}

static int fill_window(struct pull *p, struct squib_store_pool *pool,
		       const struct squib_store_image *im, int fd, uint64_t k,
		       struct squib_error_detail *d)
{
	const struct squib_memory_layout *l = &im->manifest.layout;
	uint64_t ga, off, len, w = 0;
	struct fetch_job *j;
	uint32_t region;
	int r;

	if ((r = squib_store_chunk_window(l, im->chunk_shift, k, &region, &ga, &off, &len)))
		return squib_fail(d, r);
	p->done += len;
	if (p->progress)
		p->progress->fn(p->progress->ctx, p->done, p->total);
	if (!window_present(l, off, len))
		return 0;
	if (squib_store_hash_is_zero(&im->chunks[k])) {
		r = write_present(fd, l, off, len, NULL, &w, d);
		/* the workers add to it too */
		__atomic_fetch_add(&p->st->bytes_written, w, __ATOMIC_RELAXED);
		return r;
	}
	if (!(j = malloc(sizeof(*j) + len)))
		return squib_fail(d, SQUIB_E_NOMEM);
	*j = (struct fetch_job){.p = p, .im = im, .fd = fd, .k = k};
	if ((r = squib_store_pool_submit(pool, j, d)))
		free(j);
	return r;
}

static int fill_memory(struct pull *p, const struct squib_store_image *im, int fd,
		       struct squib_error_detail *d)
{
	struct squib_store_pool *pool;
	int r, r2;

	if (ftruncate(fd, (off_t)im->manifest.layout.ram_size))
		return squib_memfile_io_error(d, errno, "sizing the pulled memory file");
	if ((r = squib_store_pool_start(p->s->opts.workers, 2 * p->s->opts.workers, fetch_chunk,
					&pool, d)))
		return r;
	for (uint64_t k = 0; !r && k < im->chunk_count; k++)
		r = fill_window(p, pool, im, fd, k, d);
	r2 = squib_store_pool_finish(pool, r ? NULL : d);
	return r ? r : r2;
}

/* The manifest and footer at ram_size, from the image's manifest. */
static int write_tail(int fd, const struct squib_store_image *im, struct squib_error_detail *d)
{
	struct squib_memfile_manifest m = {0};
	uint8_t *buf = NULL;
	size_t len = 0;
	int r, e;

	m.flags = im->manifest.flags;
	if (squib_memory_layout_copy(&m.layout, &im->manifest.layout) ||
	    (im->manifest.digests &&
	     !(m.digests = malloc(m.layout.extent_count * sizeof(uint64_t))))) {
		squib_memfile_manifest_release(&m);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	if (m.digests)
		memcpy(m.digests, im->manifest.digests, m.layout.extent_count * sizeof(uint64_t));
	if (!(r = squib_memfile_encode_tail(&m, SQUIB_MEMFILE_MAGIC, &buf, &len, d)) &&
	    (e = squib_fd_write_all(fd, buf, len, (off_t)m.layout.ram_size)))
		r = squib_memfile_io_error(d, -e, "writing the pulled memory file's tail");
	if (!r && m.layout.file_size != im->manifest.layout.file_size)
		r = squib_fail_msg(d, SQUIB_E_ENCODING,
				   "pulled file size differs from the image's");
	free(buf);
	squib_memfile_manifest_release(&m);
	return r;
}

/* The pushed state bytes, decoded and describing exactly this image. */
static int get_state(struct pull *p, const struct squib_store_image *im, uint8_t **buf, size_t *len,
		     struct squib_error_detail *d)
{
	char key[SQUIB_STORE_KEY_MAX];
	struct squib_microvm_state st;
	int r;

	squib_store_image_key(im->manifest.layout.id, true, key);
	if ((r = squib_store_get(p->s, key, SQUIB_STORE_STATE_MAX_BYTES, buf, len, d)))
		return r;
	squib_state_init(&st, SQUIB_ARCH_ANY);
	if (!(r = squib_state_decode(*buf, *len, SQUIB_ARCH_ANY, &st, NULL, d)) &&
	    (!st.memory || !squib_memory_layout_equal(st.memory, &im->manifest.layout)))
		r = squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				   "%s does not describe the image's memory file", key);
	squib_state_free(&st);
	if (r) {
		free(*buf);
		*buf = NULL;
	}
	return r;
}

/* Both files into their temps, then published as a pair (both locks held). */
static int write_pair(struct pull *p, const struct squib_store_image *im, const uint8_t *state,
		      size_t state_len, struct squib_dest_lock *sl, struct squib_dest_lock *ml,
		      struct squib_error_detail *d)
{
	struct squib_atomic_options mo = {.lock = ml}, so = {.lock = sl};
	struct squib_atomic_writer mw = {.fd = -1}, sw = {.fd = -1};
	struct squib_pair_outcome out;
	int r;

	so.pair_id = im->manifest.layout.id;
	if ((r = squib_atomic_open_ex(&mw, ml->dest, &mo, d)))
		return r;
	if ((r = fill_memory(p, im, mw.fd, d)) || (r = write_tail(mw.fd, im, d)) ||
	    (r = squib_atomic_prepare(&mw, d))) {
		squib_atomic_abort(&mw);
		return r;
	}
	if ((r = squib_atomic_open_ex(&sw, sl->dest, &so, d)) ||
	    (r = squib_atomic_write(&sw, state, state_len, d)) ||
	    (r = squib_atomic_prepare(&sw, d))) {
		squib_atomic_abort(&sw);
		squib_atomic_abort(&mw);
		return r;
	}
	return squib_pair_publish(squib_publish_writer, &mw, &sw, &out, d);
}

/* DIR/<id>.snap and DIR/<id>.mem (malloc'd). */
static int pair_paths(const char *dir, const uint8_t *id, char **state, char **mem)
{
	char hex[2 * SQUIB_MEMORY_ID_SIZE + 1];

	squib_mem_id_hex(id, hex);
	*state = *mem = NULL;
	if (asprintf(state, "%s/%s.snap", dir, hex) < 0)
		*state = NULL;
	if (asprintf(mem, "%s/%s.mem", dir, hex) < 0)
		*mem = NULL;
	return *state && *mem ? 0 : SQUIB_E_NOMEM;
}

/* A pair already in dir that pairs with the image: keep it. */
static bool pair_present(const char *state_path, const char *mem_path,
			 const struct squib_store_image *im)
{
	struct squib_microvm_state st;
	struct squib_memfile *m;
	bool ok = false;

	if (squib_memfile_open(mem_path, &m, NULL))
		return false;
	squib_state_init(&st, SQUIB_ARCH_ANY);
	if (!squib_state_load_file(state_path, SQUIB_ARCH_ANY, &st, NULL, NULL) && st.memory &&
	    squib_memory_layout_equal(st.memory, &im->manifest.layout))
		ok = !squib_memfile_check_layout(m, st.memory, NULL);
	squib_state_free(&st);
	squib_memfile_close(m);
	return ok;
}

static int materialise(struct pull *p, const struct squib_store_image *im, const char *dir,
		       char **state_out, struct squib_error_detail *d)
{
	struct squib_dest_lock sl = {.fd = -1, .dir_fd = -1}, ml = {.fd = -1, .dir_fd = -1};
	char *state_path, *mem_path;
	uint8_t *state = NULL;
	size_t state_len = 0;
	int r;

	if (pair_paths(dir, im->manifest.layout.id, &state_path, &mem_path)) {
		r = squib_fail(d, SQUIB_E_NOMEM);
	} else if (pair_present(state_path, mem_path, im)) {
		r = 0;
		p->done += im->manifest.layout.ram_size;
	} else if (!(r = get_state(p, im, &state, &state_len, d)) &&
		   !(r = squib_dest_lock(&ml, mem_path, NULL, d)) &&
		   !(r = squib_dest_lock(&sl, state_path, NULL, d))) {
		r = write_pair(p, im, state, state_len, &sl, &ml, d);
	}
	squib_dest_unlock(&sl);
	squib_dest_unlock(&ml);
	if (!r)
		p->st->images++;
	if (!r && state_out) {
		free(*state_out);
		*state_out = state_path;
		state_path = NULL;
	}
	free(state);
	free(state_path);
	free(mem_path);
	return r;
}

/* The image and its ancestors, the full base first. */
static int get_chain(struct squib_store *s, const uint8_t *id, struct squib_store_image **out,
		     size_t *n, struct squib_error_detail *d)
{
	struct squib_store_image *v = calloc(MAX_CHAIN, sizeof(*v));
	uint8_t want[SQUIB_MEMORY_ID_SIZE];
	size_t k = 0;
	int r = 0;

	*out = v;
	*n = 0;
	if (!v)
		return squib_fail(d, SQUIB_E_NOMEM);
	memcpy(want, id, sizeof(want));
	for (; !r && k < MAX_CHAIN; k++) {
		if ((r = squib_store_image_get(s, want, &v[k], d)))
			break;
		if (v[k].manifest.layout.kind == SQUIB_MEMORY_FULL) {
			k++;
			break;
		}
		memcpy(want, v[k].manifest.layout.parent_id, sizeof(want));
	}
	*n = k;
	if (!r && (k == MAX_CHAIN && v[k - 1].manifest.layout.kind != SQUIB_MEMORY_FULL))
		r = squib_fail_msg(d, SQUIB_E_SIZE_LIMIT_EXCEEDED, "chain longer than %d images",
				   MAX_CHAIN);
	for (size_t i = 0; !r && i < k / 2; i++) { /* newest first -> base first */
		struct squib_store_image t = v[i];

		v[i] = v[k - 1 - i];
		v[k - 1 - i] = t;
	}
	return r;
}

int squib_store_pull(struct squib_store *s, const uint8_t id[SQUIB_MEMORY_ID_SIZE], const char *dir,
		     const struct squib_progress *progress, struct squib_store_pull_stats *stats,
		     char **state_path, struct squib_error_detail *d)
{
	struct squib_store_pull_stats local = {0};
	struct pull p = {.s = s, .st = stats ? stats : &local, .progress = progress};
	struct squib_store_image *chain;
	size_t n = 0;
	int r;

	memset(p.st, 0, sizeof(*p.st));
	if (state_path)
		*state_path = NULL;
	if (!(r = get_chain(s, id, &chain, &n, d)))
		for (size_t i = 0; i < n; i++)
			p.total += chain[i].manifest.layout.ram_size;
	for (size_t i = 0; !r && i < n; i++)
		r = materialise(&p, &chain[i], dir, state_path, d);
	for (size_t i = 0; chain && i < MAX_CHAIN; i++)
		squib_store_image_release(&chain[i]);
	free(chain);
	if (r && state_path) {
		free(*state_path);
		*state_path = NULL;
	}
	return r;
}
