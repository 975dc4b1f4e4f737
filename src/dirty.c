/* SPDX-License-Identifier: Apache-2.0 */
/* Dirty-page bitmap, adaptive granularity controller and tracked region (upstream dirty.rs). */
#include <squib/dirty.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Marking must never take a lock (it runs in vCPU exit paths), and calloc's
 * zero bytes must be clean words: both need atomics that are plain integers.
 */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");

#define WORD_BITS 64u

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint64_t div_ceil(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}

/* The host page, the fine granule; 0 if the system reports something unusable. */
static uint64_t host_page_size(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? (uint64_t)ps : 0;
}

uint64_t squib_tracking_granule_page_size(enum squib_tracking_granule granule)
{
	switch (granule) {
	case SQUIB_GRANULE_COARSE:
		return SQUIB_TRACKING_PAGE_COARSE;
	case SQUIB_GRANULE_FINE:
		return host_page_size();
	default:
		return 0;
	}
}

/* ==== bitmap ============================================================== */

struct squib_dirty_bitmap {
	uint64_t ram_start;
	uint64_t ram_size;
	uint64_t page_size;
	uint64_t page_count;
	size_t word_count;
	unsigned int page_shift;
	_Atomic uint64_t words[];
};

/* upstream's checks, in upstream's order and words */
static int check_geometry(uint64_t ram_start, uint64_t ram_size, uint64_t page_size,
			  struct squib_error_detail *d)
{
	if (!is_pow2(page_size))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "page_size must be a power of two: %" PRIu64, page_size);
	if (ram_size == 0)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "dirty bitmap requires a non-empty RAM range");
	if (ram_size > UINT64_MAX - ram_start)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "RAM range overflows: start=0x%" PRIx64 ", size=0x%" PRIx64,
				      ram_start, ram_size);
	return 0;
}

static int check_size(uint64_t page_count, struct squib_error_detail *d)
{
	uint64_t words = div_ceil(page_count, WORD_BITS);

	if (words > (SIZE_MAX - sizeof(struct squib_dirty_bitmap)) / sizeof(uint64_t))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "bitmap word count exceeds usize::MAX (page_count=%" PRIu64 ")",
				      page_count);
	if (page_count > SQUIB_DIRTY_MAX_PAGES)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "dirty bitmap too large: page_count=%" PRIu64 " (limit %llu)",
				      page_count, SQUIB_DIRTY_MAX_PAGES);
	return 0;
}

int squib_dirty_bitmap_new(uint64_t ram_start, uint64_t ram_size, uint64_t page_size,
			   struct squib_dirty_bitmap **out, struct squib_error_detail *d)
{
	struct squib_dirty_bitmap *bm;
	uint64_t page_count;
	size_t words;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "out is NULL");
	*out = NULL;
	rc = check_geometry(ram_start, ram_size, page_size, d);
	if (rc)
		return rc;
	page_count = div_ceil(ram_size, page_size);
	rc = check_size(page_count, d);
	if (rc)
		return rc;
	words = (size_t)div_ceil(page_count, WORD_BITS);
	/* calloc's zero bytes are a valid clean word: the atomics are lock-free plain integers. */
	bm = calloc(1, sizeof(*bm) + words * sizeof(bm->words[0]));
	if (!bm)
		return squib_fail(d, SQUIB_E_NOMEM);
	bm->ram_start = ram_start;
	bm->ram_size = ram_size;
	bm->page_size = page_size;
	bm->page_count = page_count;
	bm->word_count = words;
	bm->page_shift = (unsigned int)__builtin_ctzll(page_size);
	*out = bm;
	return 0;
}

void squib_dirty_bitmap_free(struct squib_dirty_bitmap *bm)
{
	free(bm);
}

uint64_t squib_dirty_bitmap_ram_start(const struct squib_dirty_bitmap *bm)
{
	return bm ? bm->ram_start : 0;
}

uint64_t squib_dirty_bitmap_ram_size(const struct squib_dirty_bitmap *bm)
{
	return bm ? bm->ram_size : 0;
}

uint64_t squib_dirty_bitmap_page_size(const struct squib_dirty_bitmap *bm)
{
	return bm ? bm->page_size : 0;
}

uint64_t squib_dirty_bitmap_page_count(const struct squib_dirty_bitmap *bm)
{
	return bm ? bm->page_count : 0;
}

unsigned int squib_dirty_bitmap_page_shift(const struct squib_dirty_bitmap *bm)
{
	return bm ? bm->page_shift : 0;
}

bool squib_dirty_bitmap_page_index_of(const struct squib_dirty_bitmap *bm, uint64_t addr,
				      uint64_t *page)
{
	if (!bm || addr < bm->ram_start || addr - bm->ram_start >= bm->ram_size)
		return false;
	if (page)
		*page = (addr - bm->ram_start) >> bm->page_shift;
	return true;
}

/* Bits of word w that stand for real pages: all but the tail of the last word. */
static uint64_t valid_mask(const struct squib_dirty_bitmap *bm, size_t w)
{
	unsigned int tail = (unsigned int)(bm->page_count % WORD_BITS);

	if (w + 1 < bm->word_count || tail == 0)
		return ~0ull;
	return (1ull << tail) - 1;
}

/* Bits lo..hi (inclusive, 0..63) of a word. */
static uint64_t bit_span(unsigned int lo, unsigned int hi)
{
	return (~0ull >> (63 - hi)) & (~0ull << lo);
}

/*
 * OR mask into word w; how many of its bits were clean before. A word that
 * already has them all is only read: re-marking a dirty page (a hot page, a
 * device rewriting a buffer) then costs no write to a shared cache line, and
 * is the same as a fetch_or at the moment of the read that found them set.
 */
static uint64_t or_word(struct squib_dirty_bitmap *bm, size_t w, uint64_t mask)
{
	uint64_t old = atomic_load_explicit(&bm->words[w], memory_order_relaxed);

	if ((old & mask) == mask)
		return 0;
	old = atomic_fetch_or_explicit(&bm->words[w], mask, memory_order_relaxed);
	return (uint64_t)__builtin_popcountll(mask & ~old);
}

/* Set pages first..last (inclusive, both < page_count); how many were clean. */
static uint64_t set_span(struct squib_dirty_bitmap *bm, uint64_t first, uint64_t last)
{
	size_t w_first = (size_t)(first / WORD_BITS), w_last = (size_t)(last / WORD_BITS);
	uint64_t newly = 0;

	for (size_t w = w_first; w <= w_last; w++) {
		unsigned int lo = w == w_first ? (unsigned int)(first % WORD_BITS) : 0;
		unsigned int hi = w == w_last ? (unsigned int)(last % WORD_BITS) : WORD_BITS - 1;

		newly += or_word(bm, w, bit_span(lo, hi));
	}
	return newly;
}

bool squib_dirty_bitmap_set_by_index(struct squib_dirty_bitmap *bm, uint64_t page)
{
	if (!bm || page >= bm->page_count)
		return false;
	return or_word(bm, (size_t)(page / WORD_BITS), 1ull << (page % WORD_BITS)) != 0;
}

bool squib_dirty_bitmap_set(struct squib_dirty_bitmap *bm, uint64_t addr)
{
	uint64_t page;

	if (!squib_dirty_bitmap_page_index_of(bm, addr, &page))
		return false;
	return squib_dirty_bitmap_set_by_index(bm, page);
}

uint64_t squib_dirty_bitmap_set_range(struct squib_dirty_bitmap *bm, uint64_t addr, uint64_t len)
{
	uint64_t end, lo, hi;

	if (!bm || len == 0)
		return 0;
	/* A range running past 2^64 is clipped there; the region always ends below it. */
	end = len > UINT64_MAX - addr ? UINT64_MAX : addr + len;
	lo = addr > bm->ram_start ? addr : bm->ram_start;
	hi = end < bm->ram_start + bm->ram_size ? end : bm->ram_start + bm->ram_size;
	if (lo >= hi)
		return 0;
	return set_span(bm, (lo - bm->ram_start) >> bm->page_shift,
			(hi - 1 - bm->ram_start) >> bm->page_shift);
}

bool squib_dirty_bitmap_test_by_index(const struct squib_dirty_bitmap *bm, uint64_t page)
{
	uint64_t word;

	if (!bm || page >= bm->page_count)
		return false;
	word = atomic_load_explicit(&bm->words[page / WORD_BITS], memory_order_acquire);
	return (word >> (page % WORD_BITS)) & 1;
}

bool squib_dirty_bitmap_test(const struct squib_dirty_bitmap *bm, uint64_t addr)
{
	uint64_t page;

	if (!squib_dirty_bitmap_page_index_of(bm, addr, &page))
		return false;
	return squib_dirty_bitmap_test_by_index(bm, page);
}

uint64_t squib_dirty_bitmap_count(const struct squib_dirty_bitmap *bm)
{
	uint64_t n = 0;

	for (size_t w = 0; bm && w < bm->word_count; w++) {
		uint64_t word = atomic_load_explicit(&bm->words[w], memory_order_relaxed);

		n += (uint64_t)__builtin_popcountll(word & valid_mask(bm, w));
	}
	return n;
}

/*
 * Take word w for a drain. A clean word is only read: exchanging it would
 * write the cache line for nothing, and a bit set after that read is as
 * good as one set after an exchange (the next drain gets it).
 */
static uint64_t take_word(struct squib_dirty_bitmap *bm, size_t w)
{
	if (!atomic_load_explicit(&bm->words[w], memory_order_relaxed))
		return 0;
	return atomic_exchange_explicit(&bm->words[w], 0, memory_order_acquire) & valid_mask(bm, w);
}

/* Hand back bits a drain took but did not deliver. */
static void give_back(struct squib_dirty_bitmap *bm, size_t w, uint64_t bits)
{
	if (bits)
		atomic_fetch_or_explicit(&bm->words[w], bits, memory_order_relaxed);
}

static int drain_word(struct squib_dirty_bitmap *bm, size_t w, squib_dirty_page_fn fn, void *ctx,
		      uint64_t *n)
{
	uint64_t bits = take_word(bm, w);

	while (bits) {
		int rc = fn(ctx, (uint64_t)w * WORD_BITS + (uint64_t)__builtin_ctzll(bits));

		if (rc) {
			give_back(bm, w, bits);
			return rc;
		}
		bits &= bits - 1;
		(*n)++;
	}
	return 0;
}

int squib_dirty_bitmap_drain_into(struct squib_dirty_bitmap *bm, squib_dirty_page_fn fn,
				  void *ctx, uint64_t *drained)
{
	uint64_t n = 0;
	int rc = 0;

	if (!bm || !fn)
		rc = SQUIB_E_INVALID_ARGUMENT;
	for (size_t w = 0; !rc && w < bm->word_count; w++)
		rc = drain_word(bm, w, fn, ctx, &n);
	if (drained)
		*drained = n;
	return rc;
}

struct page_buf {
	uint64_t *pages;
	size_t cap;
	size_t n;
};

/* Positive: "full", distinct from every SQUIB_E_* code. */
#define BUF_FULL 1

static int buf_push(void *ctx, uint64_t page)
{
	struct page_buf *b = ctx;

	if (b->n == b->cap)
		return BUF_FULL;
	b->pages[b->n++] = page;
	return 0;
}

size_t squib_dirty_bitmap_drain(struct squib_dirty_bitmap *bm, uint64_t *pages, size_t cap)
{
	struct page_buf b = {pages, pages ? cap : 0, 0};

	squib_dirty_bitmap_drain_into(bm, buf_push, &b, NULL);
	return b.n;
}

struct page_vec {
	struct page_buf buf;
	size_t limit; /* page_count: the array never needs more */
};

static int vec_push(void *ctx, uint64_t page)
{
	struct page_vec *v = ctx;

	if (v->buf.n == v->buf.cap) {
		size_t cap = v->buf.cap < v->limit / 2 ? v->buf.cap * 2 : v->limit;
		uint64_t *p = cap > v->buf.cap ? realloc(v->buf.pages, cap * sizeof(*p)) : NULL;

		if (!p)
			return SQUIB_E_NOMEM;
		v->buf.pages = p;
		v->buf.cap = cap;
	}
	return buf_push(&v->buf, page);
}

int squib_dirty_bitmap_drain_alloc(struct squib_dirty_bitmap *bm, uint64_t **pages, size_t *n,
				   struct squib_error_detail *d)
{
	struct page_vec v = {{NULL, 0, 0}, 0};
	int rc;

	if (!bm || !pages || !n)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL bitmap or output");
	*pages = NULL;
	*n = 0;
	v.limit = (size_t)bm->page_count;
	/* Size for what is dirty now; later sets only cost a doubling. */
	v.buf.cap = (size_t)squib_dirty_bitmap_count(bm) + 16;
	if (v.buf.cap > v.limit)
		v.buf.cap = v.limit;
	v.buf.pages = malloc(v.buf.cap * sizeof(uint64_t));
	if (!v.buf.pages)
		return squib_fail(d, SQUIB_E_NOMEM);
	rc = squib_dirty_bitmap_drain_into(bm, vec_push, &v, NULL);
	if (rc) {
		/* The pages already delivered go back too, so the bitmap keeps them all. */
		for (size_t i = 0; i < v.buf.n; i++)
			squib_dirty_bitmap_set_by_index(bm, v.buf.pages[i]);
		free(v.buf.pages);
		return squib_fail(d, rc);
	}
	if (v.buf.n == 0) {
		free(v.buf.pages);
		v.buf.pages = NULL;
	}
	*pages = v.buf.pages;
	*n = v.buf.n;
	return 0;
}

/* Mark in dst every page holding a byte of src page `page` (same range, any page sizes). */
static void widen_page(struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src,
		       uint64_t page)
{
	uint64_t lo = page << src->page_shift;
	/* Cannot overflow: lo is a multiple of page_size below ram_size < 2^64. */
	uint64_t hi = lo + (src->page_size - 1);

	if (hi >= src->ram_size)
		hi = src->ram_size - 1; /* the partial trailing page */
	set_span(dst, lo >> dst->page_shift, hi >> dst->page_shift);
}

/* OR the bits of src word w (already read or taken) into dst. */
static void merge_bits(struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src,
		       size_t w, uint64_t bits)
{
	if (dst->page_size == src->page_size) {
		if (bits)
			or_word(dst, w, bits);
		return;
	}
	for (; bits; bits &= bits - 1)
		widen_page(dst, src, (uint64_t)w * WORD_BITS + (uint64_t)__builtin_ctzll(bits));
}

static void merge_all(struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src)
{
	for (size_t w = 0; w < src->word_count; w++) {
		uint64_t bits = atomic_load_explicit(&src->words[w], memory_order_acquire);

		merge_bits(dst, src, w, bits & valid_mask(src, w));
	}
}

static bool same_range(const struct squib_dirty_bitmap *a, const struct squib_dirty_bitmap *b)
{
	return a->ram_start == b->ram_start && a->ram_size == b->ram_size;
}

int squib_dirty_bitmap_fold_into_finer(const struct squib_dirty_bitmap *coarse,
				       struct squib_dirty_bitmap *fine,
				       struct squib_error_detail *d)
{
	if (!coarse || !fine)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL bitmap");
	if (!same_range(coarse, fine))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "fold_into_finer requires identical ranges");
	if (fine->page_size >= coarse->page_size)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "fold_into_finer expects a strictly smaller page size");
	if (coarse->page_size % fine->page_size)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "coarse page must be a multiple of fine page");
	merge_all(fine, coarse);
	return 0;
}

static int check_merge(const struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src,
		       struct squib_error_detail *d)
{
	if (!dst || !src)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL bitmap");
	if (!same_range(dst, src))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH, "merge requires identical ranges");
	return 0;
}

int squib_dirty_bitmap_merge(struct squib_dirty_bitmap *dst, const struct squib_dirty_bitmap *src,
			     struct squib_error_detail *d)
{
	int rc = check_merge(dst, src, d);

	if (!rc && dst != src)
		merge_all(dst, src);
	return rc;
}

int squib_dirty_bitmap_drain_merge(struct squib_dirty_bitmap *dst, struct squib_dirty_bitmap *src,
				   struct squib_error_detail *d)
{
	int rc = check_merge(dst, src, d);

	if (rc || dst == src)
		return rc;
	for (size_t w = 0; w < src->word_count; w++)
		merge_bits(dst, src, w, take_word(src, w));
	return 0;
}

void squib_dirty_bitmap_clear(struct squib_dirty_bitmap *bm)
{
	for (size_t w = 0; bm && w < bm->word_count; w++)
		atomic_store_explicit(&bm->words[w], 0, memory_order_relaxed);
}

/* ==== adaptive controller ================================================= */

struct squib_adaptive_controller {
	uint32_t threshold;
	uint64_t block_count;
	struct squib_dirty_clock clock;
	pthread_mutex_t lock; /* serialises evaluations and guards last_tick_ns */
	uint64_t last_tick_ns;
	_Atomic int granule; /* written under lock, read lock-free */
	_Atomic uint32_t faults[];
};

static uint64_t monotonic_ns(void *ctx)
{
	struct timespec ts;

	(void)ctx;
	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t ctrl_now(const struct squib_adaptive_controller *ctrl)
{
	return ctrl->clock.now_ns(ctrl->clock.ctx);
}

int squib_adaptive_controller_new(uint64_t block_count, uint32_t threshold,
				  const struct squib_dirty_clock *clock,
				  struct squib_adaptive_controller **out,
				  struct squib_error_detail *d)
{
	struct squib_adaptive_controller *ctrl;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "out is NULL");
	*out = NULL;
	if (block_count > SQUIB_DIRTY_MAX_PAGES)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "adaptive controller block count too large: %" PRIu64 " (limit %llu)",
				      block_count, SQUIB_DIRTY_MAX_PAGES);
	ctrl = calloc(1, sizeof(*ctrl) + (size_t)block_count * sizeof(ctrl->faults[0]));
	if (!ctrl)
		return squib_fail(d, SQUIB_E_NOMEM);
	if (pthread_mutex_init(&ctrl->lock, NULL)) {
		free(ctrl);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	ctrl->threshold = threshold;
	ctrl->block_count = block_count;
	ctrl->clock.now_ns = clock && clock->now_ns ? clock->now_ns : monotonic_ns;
	ctrl->clock.ctx = clock && clock->now_ns ? clock->ctx : NULL;
	ctrl->last_tick_ns = ctrl_now(ctrl);
	atomic_init(&ctrl->granule, SQUIB_GRANULE_COARSE);
	*out = ctrl;
	return 0;
}

void squib_adaptive_controller_free(struct squib_adaptive_controller *ctrl)
{
	if (!ctrl)
		return;
	pthread_mutex_destroy(&ctrl->lock);
	free(ctrl);
}

uint64_t squib_adaptive_controller_block_count(const struct squib_adaptive_controller *ctrl)
{
	return ctrl ? ctrl->block_count : 0;
}

uint32_t squib_adaptive_controller_threshold(const struct squib_adaptive_controller *ctrl)
{
	return ctrl ? ctrl->threshold : 0;
}

enum squib_tracking_granule
squib_adaptive_controller_granule(const struct squib_adaptive_controller *ctrl)
{
	if (!ctrl)
		return SQUIB_GRANULE_COARSE;
	return (enum squib_tracking_granule)atomic_load_explicit(&ctrl->granule,
								 memory_order_acquire);
}

void squib_adaptive_controller_record_fault(struct squib_adaptive_controller *ctrl,
					    uint64_t block)
{
	if (ctrl && block < ctrl->block_count)
		atomic_fetch_add_explicit(&ctrl->faults[block], 1, memory_order_relaxed);
}

/* Zero every counter; the largest count seen. Caller holds ctrl->lock. */
static uint32_t take_max_faults(struct squib_adaptive_controller *ctrl)
{
	uint32_t max = 0;

	for (uint64_t b = 0; b < ctrl->block_count; b++) {
		uint32_t n = atomic_exchange_explicit(&ctrl->faults[b], 0, memory_order_acquire);

		if (n > max)
			max = n;
	}
	return max;
}

enum squib_tracking_granule squib_adaptive_controller_tick_at(struct squib_adaptive_controller *ctrl,
							      uint64_t now_ns)
{
	if (!ctrl)
		return SQUIB_GRANULE_COARSE;
	pthread_mutex_lock(&ctrl->lock);
	/* A clock that went backwards is treated as "window not over", not as a huge elapsed time. */
	if (now_ns >= ctrl->last_tick_ns && now_ns - ctrl->last_tick_ns >= SQUIB_ADAPTIVE_WINDOW_NS) {
		/* The hottest block, not the sum: many lukewarm blocks must not step down. */
		uint32_t max = take_max_faults(ctrl);

		ctrl->last_tick_ns = now_ns;
		if (max > ctrl->threshold)
			atomic_store_explicit(&ctrl->granule, SQUIB_GRANULE_FINE,
					      memory_order_release);
	}
	pthread_mutex_unlock(&ctrl->lock);
	return squib_adaptive_controller_granule(ctrl);
}

enum squib_tracking_granule squib_adaptive_controller_tick(struct squib_adaptive_controller *ctrl)
{
	if (!ctrl)
		return SQUIB_GRANULE_COARSE;
	return squib_adaptive_controller_tick_at(ctrl, ctrl_now(ctrl));
}

void squib_adaptive_controller_reset_to_coarse(struct squib_adaptive_controller *ctrl)
{
	if (!ctrl)
		return;
	pthread_mutex_lock(&ctrl->lock);
	take_max_faults(ctrl);
	ctrl->last_tick_ns = ctrl_now(ctrl);
	atomic_store_explicit(&ctrl->granule, SQUIB_GRANULE_COARSE, memory_order_release);
	pthread_mutex_unlock(&ctrl->lock);
}

/* ==== tracked region ====================================================== */

/*
 * Switching the granule without losing a bit
 * ------------------------------------------
 * Markers (vCPU fault paths, device threads) set bits in the *active*
 * generation; a switch (tick_adaptive, reset_after_checkpoint) makes another
 * generation active and moves the old one's bits into it. Upstream's hazard:
 * a marker reads the old bitmap, the switcher swaps and folds, the marker
 * sets its bit in the old bitmap, and the bit is never seen again.
 *
 * Marker (gen_enter / set / gen_leave):
 *   M1  g = active                       (acquire)
 *   M2  g->inflight += 1                 (seq_cst)
 *   M3  if active != g: g->inflight -= 1, retry from M1
 *   M4  set the bit in g->bm             (relaxed fetch_or)
 *   M5  g->inflight -= 1                 (release)
 *
 * Switcher (switch_to, under r->lock, so there is one switcher at a time):
 *   S1  active = next                    (seq_cst)
 *   S2  wait until prev->inflight == 0   (seq_cst loads)
 *   S3  drain prev->bm into next->bm     (exchange per word)
 *
 * Claim: every bit a marker sets at M4 in prev ends up in next.
 * M2, M3, S1 and S2 are seq_cst, so they sit in one total order S that agrees
 * with each object's modification order. A marker that reaches M4 on prev
 * read, at M3, the store that made prev active, not S1; so M3 precedes S1
 * in S, and M2 < M3 < S1 < every S2 load. Each S2 load therefore reads that
 * marker's increment or a later value of the counter, and S2 can only finish
 * by reading a value at or after the marker's M5 decrement. M5 is a release
 * and the S2 load an acquire (later read-modify-writes of the counter
 * continue M5's release sequence), so M4 happens before S3, and S3's
 * exchange of the word reads the bit. This is Dekker's pattern, which is why
 * both sides need seq_cst: with acquire/release alone M3 could still read
 * prev while S2 misses M2.
 * A marker whose M3 comes after S1 sees active != prev and moves on to next
 * without touching prev->bm. So once S2 is done nobody writes prev->bm until
 * prev is made active again, and S3 may leave it clean for that reuse.
 *
 * Memory safety: a marker may still hold prev from M1 long after the switch
 * (it was preempted between M1 and M2). It then increments prev->inflight and
 * re-checks. So a generation must outlive every marker: the region has
 * exactly two, coarse and fine, embedded in it and freed only with it, and a
 * switch reuses the idle one. The fine bitmap is allocated at the first step
 * down and then kept, so memory stays bounded however often the granule
 * flips. Reuse makes ABA possible (prev may be active again by the time a
 * stale marker reaches M3), and it is harmless: a marker that sees its
 * generation active at M3 is counted in inflight before any later switch
 * away from it can pass S2, which is all the argument above needs.
 *
 * Progress: markers never block; one retries only if a switch published
 * between its M1 and M3. A switcher waits only for markers already between M2
 * and M5, a few instructions each, and yields the CPU while it does.
 */

struct dirty_gen {
	/* Own cache line: every marker writes it, and the region header is read-mostly. */
	_Alignas(64) _Atomic uint64_t inflight;
	struct squib_dirty_bitmap *bm; /* written under r->lock before the gen is published */
};

struct squib_tracked_region {
	_Atomic(struct dirty_gen *) active;
	uint64_t ram_start;
	uint64_t ram_size;
	uint64_t fine_page_size;
	struct squib_adaptive_controller *ctrl;
	struct squib_dirty_hooks hooks;
	pthread_mutex_t lock; /* serialises switches, harvests and merges */
	struct dirty_gen gen[2]; /* indexed by enum squib_tracking_granule */
};

static void hook(const struct squib_tracked_region *r, enum squib_dirty_marker_step step)
{
	if (r->hooks.in_marker_window)
		r->hooks.in_marker_window(r->hooks.ctx, step);
}

static struct dirty_gen *gen_enter(struct squib_tracked_region *r)
{
	for (;;) {
		struct dirty_gen *g = atomic_load_explicit(&r->active, memory_order_acquire);

		hook(r, SQUIB_DIRTY_MARKER_LOADED);
		atomic_fetch_add_explicit(&g->inflight, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&r->active, memory_order_seq_cst) == g) {
			hook(r, SQUIB_DIRTY_MARKER_JOINED);
			return g;
		}
		atomic_fetch_sub_explicit(&g->inflight, 1, memory_order_release);
	}
}

static void gen_leave(struct dirty_gen *g)
{
	atomic_fetch_sub_explicit(&g->inflight, 1, memory_order_release);
}

static void wait_for_markers(struct dirty_gen *g)
{
	for (unsigned int spins = 0; atomic_load_explicit(&g->inflight, memory_order_seq_cst);
	     spins++) {
		if (spins >= 64)
			sched_yield(); /* the marker may have been preempted inside its window */
	}
}

/* Caller holds r->lock. next->bm exists and is clean (fresh, or drained by the last switch). */
static void switch_to(struct squib_tracked_region *r, struct dirty_gen *next)
{
	struct dirty_gen *prev = atomic_load_explicit(&r->active, memory_order_relaxed);

	atomic_store_explicit(&r->active, next, memory_order_seq_cst);
	wait_for_markers(prev);
	/* Same range by construction, so this cannot fail. */
	squib_dirty_bitmap_drain_merge(next->bm, prev->bm, NULL);
}

/* The generation for a granule, building its bitmap the first time. Caller holds r->lock. */
static int gen_for(struct squib_tracked_region *r, enum squib_tracking_granule g,
		   struct dirty_gen **out, struct squib_error_detail *d)
{
	struct dirty_gen *gen = &r->gen[g == SQUIB_GRANULE_FINE];
	uint64_t page = g == SQUIB_GRANULE_FINE ? r->fine_page_size : SQUIB_TRACKING_PAGE_COARSE;
	int rc = 0;

	if (!gen->bm)
		rc = squib_dirty_bitmap_new(r->ram_start, r->ram_size, page, &gen->bm, d);
	*out = gen;
	return rc;
}

static struct dirty_gen *active_gen(const struct squib_tracked_region *r)
{
	return atomic_load_explicit(&r->active, memory_order_acquire);
}

/* The host page must be a power of two below, hence dividing, the coarse page. */
static int check_fine_page(uint64_t page, struct squib_error_detail *d)
{
	if (is_pow2(page) && page < SQUIB_TRACKING_PAGE_COARSE)
		return 0;
	return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
			      "host page size %" PRIu64 " cannot be the fine tracking granule", page);
}

static int region_init(struct squib_tracked_region *r, uint64_t ram_start, uint64_t ram_size,
		       const struct squib_tracked_region_options *opts,
		       struct squib_error_detail *d)
{
	struct dirty_gen *coarse;
	int rc;

	r->ram_start = ram_start;
	r->ram_size = ram_size;
	r->fine_page_size = host_page_size();
	if (opts->hooks)
		r->hooks = *opts->hooks;
	rc = gen_for(r, SQUIB_GRANULE_COARSE, &coarse, d);
	if (!rc)
		rc = check_fine_page(r->fine_page_size, d);
	if (!rc)
		rc = squib_adaptive_controller_new(squib_dirty_bitmap_page_count(coarse->bm),
						   opts->step_down_threshold, opts->clock,
						   &r->ctrl, d);
	if (!rc && pthread_mutex_init(&r->lock, NULL))
		rc = squib_fail(d, SQUIB_E_NOMEM);
	atomic_init(&r->active, coarse);
	return rc;
}

int squib_tracked_region_new(uint64_t ram_start, uint64_t ram_size,
			     const struct squib_tracked_region_options *opts,
			     struct squib_tracked_region **out, struct squib_error_detail *d)
{
	static const struct squib_tracked_region_options defaults = SQUIB_TRACKED_REGION_OPTIONS_INIT;
	struct squib_tracked_region *r;
	int rc;

	if (!out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "out is NULL");
	*out = NULL;
	/* aligned_alloc: the generations' counters are cache-line aligned. */
	r = aligned_alloc(_Alignof(struct squib_tracked_region), sizeof(*r));
	if (!r)
		return squib_fail(d, SQUIB_E_NOMEM);
	memset(r, 0, sizeof(*r));
	rc = region_init(r, ram_start, ram_size, opts ? opts : &defaults, d);
	if (rc) {
		squib_adaptive_controller_free(r->ctrl);
		squib_dirty_bitmap_free(r->gen[0].bm);
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void squib_tracked_region_free(struct squib_tracked_region *r)
{
	if (!r)
		return;
	pthread_mutex_destroy(&r->lock);
	squib_adaptive_controller_free(r->ctrl);
	squib_dirty_bitmap_free(r->gen[0].bm);
	squib_dirty_bitmap_free(r->gen[1].bm);
	free(r);
}

uint64_t squib_tracked_region_ram_start(const struct squib_tracked_region *r)
{
	return r ? r->ram_start : 0;
}

uint64_t squib_tracked_region_ram_size(const struct squib_tracked_region *r)
{
	return r ? r->ram_size : 0;
}

enum squib_tracking_granule squib_tracked_region_granule(const struct squib_tracked_region *r)
{
	if (!r)
		return SQUIB_GRANULE_COARSE;
	return active_gen(r) == &r->gen[SQUIB_GRANULE_FINE] ? SQUIB_GRANULE_FINE
							    : SQUIB_GRANULE_COARSE;
}

uint64_t squib_tracked_region_page_size(const struct squib_tracked_region *r)
{
	return r ? squib_dirty_bitmap_page_size(active_gen(r)->bm) : 0;
}

bool squib_tracked_region_mark_dirty(struct squib_tracked_region *r, uint64_t addr)
{
	struct dirty_gen *g;
	bool newly;

	if (!r || addr < r->ram_start || addr - r->ram_start >= r->ram_size)
		return false;
	/* Counted in 2 MiB blocks at either granule, so the threshold keeps its meaning. */
	squib_adaptive_controller_record_fault(r->ctrl,
					       (addr - r->ram_start) / SQUIB_TRACKING_PAGE_COARSE);
	g = gen_enter(r);
	newly = squib_dirty_bitmap_set(g->bm, addr);
	gen_leave(g);
	return newly;
}

uint64_t squib_tracked_region_mark_range(struct squib_tracked_region *r, uint64_t addr,
					 uint64_t len)
{
	struct dirty_gen *g;
	uint64_t newly;

	if (!r)
		return 0;
	g = gen_enter(r);
	newly = squib_dirty_bitmap_set_range(g->bm, addr, len);
	gen_leave(g);
	return newly;
}

int squib_tracked_region_tick_adaptive(struct squib_tracked_region *r,
				       enum squib_tracking_granule *granule,
				       struct squib_error_detail *d)
{
	struct dirty_gen *want;
	int rc;

	if (!r)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "region is NULL");
	pthread_mutex_lock(&r->lock);
	rc = gen_for(r, squib_adaptive_controller_tick(r->ctrl), &want, d);
	if (!rc && want != active_gen(r))
		switch_to(r, want);
	pthread_mutex_unlock(&r->lock);
	if (granule)
		*granule = squib_tracked_region_granule(r);
	return rc;
}

int squib_tracked_region_harvest(struct squib_tracked_region *r, struct squib_dirty_bitmap *dst,
				 struct squib_error_detail *d)
{
	int rc;

	if (!r)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "region is NULL");
	/* Under the lock the active generation cannot change (nor its bitmap be drained by a switch). */
	pthread_mutex_lock(&r->lock);
	rc = squib_dirty_bitmap_drain_merge(dst, active_gen(r)->bm, d);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int squib_tracked_region_merge(struct squib_tracked_region *r, const struct squib_dirty_bitmap *src,
			       struct squib_error_detail *d)
{
	int rc;

	if (!r)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "region is NULL");
	pthread_mutex_lock(&r->lock);
	rc = squib_dirty_bitmap_merge(active_gen(r)->bm, src, d);
	pthread_mutex_unlock(&r->lock);
	return rc;
}

int squib_tracked_region_reset_after_checkpoint(struct squib_tracked_region *r,
						struct squib_error_detail *d)
{
	struct dirty_gen *coarse;

	if (!r)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "region is NULL");
	coarse = &r->gen[SQUIB_GRANULE_COARSE]; /* its bitmap is built at creation */
	pthread_mutex_lock(&r->lock);
	squib_adaptive_controller_reset_to_coarse(r->ctrl);
	if (coarse != active_gen(r))
		switch_to(r, coarse);
	pthread_mutex_unlock(&r->lock);
	return 0;
}
