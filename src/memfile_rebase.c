/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Rebase: apply a chain of diffs onto its full base, into a new file
 * (atomically published) or in place (behind an undo log, memfile_undo.c),
 * optionally publishing a rewritten state file with the result as a pair
 * (the save's protocol, pair.c). docs/DESIGN.md §7 has the case analysis.
 */
#include "memfile_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/envelope.h>
#include <squib/load.h>

#include "chain_internal.h"
#include "pair.h"
#include "util.h"

/* Largest single copy_file_range request and the pread/pwrite bounce buffer. */
#define COPY_CHUNK (1ull << 30)
/* ... and while progress is reported, so that reports come often enough. */
#define COPY_CHUNK_PROGRESS (64ull << 20)
#define BOUNCE_SIZE ((size_t)SQUIB_MEMFILE_MAX_WRITE)

struct rebase {
	struct squib_chain *chain;  /* the base, then the diffs: who holds each page */
	struct squib_memfile *base; /* layer 0 of the chain */
	size_t n;		    /* diffs */
	struct squib_memfile_rebase_options opts;
	int out_fd;	      /* where pages go: the temp, or base opened O_RDWR */
	const char *out_name; /* for hooks and messages */
	uint8_t *bounce;      /* pread/pwrite fallback buffer, made on first use */
	struct squib_memfile_manifest result;
	struct squib_microvm_state state; /* opts.state_path's, rewritten for the result */
	struct squib_atomic_writer state_w;
	/* Held from before the recovery to the end: the file written (the output, or the
	 * base in place) and the state; a second writer of either fails busy. */
	struct squib_dest_lock target_lock, state_lock;
	struct squib_progress_run run;
	struct squib_error_detail *d;
};

/* The caller's fault-injection hook: 0 to go on, or a negative errno. */
static int before(const struct rebase *rb, enum squib_io_step step)
{
	const struct squib_io_hooks *h = rb->opts.hooks;
	int r;

	if (!h || !h->before)
		return 0;
	r = h->before(h->ctx, step, rb->out_name);
	return r >= 0 ? 0 : r == INT_MIN ? -EIO : r;
}

/* ---- opening and checking every input -------------------------------------- */

/* Diff i (0: the oldest). */
static struct squib_memfile *diff(const struct rebase *rb, size_t i)
{
	return squib_chain_memfile(rb->chain, i + 1);
}

/* The chain, checked as each file opens (base read-write in place). */
static int open_inputs(struct rebase *rb, const char *base, const char *const *diffs, bool rw)
{
	struct squib_memfile *m;
	int rc = squib_chain_new(rb->n + 1, &rb->chain, rb->d);

	if (!rc && !(rc = squib_memfile_open_flags(base, rw ? O_RDWR : O_RDONLY, &m, rb->d)) &&
	    !(rc = squib_chain_add(rb->chain, squib_chain_layer_file(m, true), rb->d)))
		rb->base = m;
	for (size_t i = 0; !rc && i < rb->n; i++)
		if (!(rc = squib_memfile_open(diffs[i], &m, rb->d)))
			rc = squib_chain_add(rb->chain, squib_chain_layer_file(m, true), rb->d);
	return rc ? rc : squib_chain_seal(rb->chain, rb->d);
}

static bool has_digests(const struct squib_memfile *m)
{
	return m->m.flags & SQUIB_MEMFILE_FLAG_DIGESTS;
}

/* Digests, when a diff has them, are checked before a byte is copied. */
static int verify_inputs(struct rebase *rb)
{
	int rc;

	for (size_t i = 0; i < rb->n; i++)
		if (has_digests(diff(rb, i)) &&
		    (rc = squib_memfile_verify_digests_run(diff(rb, i), &rb->run, rb->d)))
			return rc;
	return 0;
}

/* ---- runs of the chain: the merged manifest, the undo log, the copy ---------------- */

/* Extents of the pages some layer at or above `from` supplies, coalesced. */
struct runs_job {
	struct rebase *rb;
	uint32_t from;
	struct squib_memory_layout *l;
	uint64_t cap;
};

static int add_run(void *ctx, const struct squib_chain_run *r)
{
	struct runs_job *j = ctx;
	struct squib_memory_layout *l = j->l;
	struct squib_page_extent *last = l->extent_count ? &l->extents[l->extent_count - 1] : NULL;

	if (r->owner == SQUIB_CHAIN_ZERO || r->owner < j->from)
		return 0;
	if (last && last->first_page + last->page_count == r->first_page) {
		last->page_count += r->page_count;
		return 0;
	}
	if (l->extent_count == SQUIB_MEMORY_MAX_EXTENTS)
		return squib_fail_msg(j->rb->d, SQUIB_E_SIZE_LIMIT_EXCEEDED,
				      "the merged image has more than %llu extents",
				      SQUIB_MEMORY_MAX_EXTENTS);
	if (l->extent_count == j->cap) {
		uint64_t cap = j->cap ? 2 * j->cap : 64;
		struct squib_page_extent *v = realloc(l->extents, (size_t)cap * sizeof(*v));

		if (!v)
			return squib_fail(j->rb->d, SQUIB_E_NOMEM);
		l->extents = v;
		j->cap = cap;
	}
	l->extents[l->extent_count++] = (struct squib_page_extent){r->first_page, r->page_count};
	return 0;
}

/* Into l: the pages of every layer (from 0) or of the diffs only (from 1). */
static int owned_extents(struct rebase *rb, struct squib_memory_layout *l, uint32_t from)
{
	struct runs_job j = {rb, from, l, 0};

	return squib_chain_for_each_run(rb->chain, 0, squib_chain_page_count(rb->chain), add_run,
					&j);
}

static uint64_t extent_bytes(const struct squib_memory_layout *l)
{
	uint64_t pages = 0;

	for (uint64_t i = 0; i < l->extent_count; i++)
		pages += l->extents[i].page_count;
	return pages * l->page_size;
}

/* Everything the rebase will read or copy, for progress reports: each page is copied once. */
static uint64_t work_bytes(const struct rebase *rb, const struct squib_memory_layout *copied)
{
	uint64_t total = extent_bytes(copied);

	for (size_t i = 0; i < rb->n; i++)
		if (has_digests(diff(rb, i)))
			total += extent_bytes(&diff(rb, i)->m.layout);
	if (rb->opts.digests)
		total += extent_bytes(&rb->result.layout);
	return total;
}

static void close_inputs(struct rebase *rb)
{
	squib_chain_free(rb->chain);
	free(rb->bounce);
}

/* Full image, id of the newest diff (whose state file must keep pairing). */
static int merged_manifest(struct rebase *rb)
{
	const struct squib_memory_layout *b = &rb->base->m.layout;
	struct squib_memory_layout *l = &rb->result.layout;

	l->kind = SQUIB_MEMORY_FULL;
	memcpy(l->id, diff(rb, rb->n - 1)->m.layout.id, SQUIB_MEMORY_ID_SIZE);
	l->page_size = b->page_size;
	l->region_count = b->region_count;
	if (!(l->regions = malloc(b->region_count * sizeof(*l->regions))))
		return squib_fail(rb->d, SQUIB_E_NOMEM);
	memcpy(l->regions, b->regions, b->region_count * sizeof(*l->regions));
	rb->result.flags = rb->opts.digests ? SQUIB_MEMFILE_FLAG_DIGESTS : 0;
	return owned_extents(rb, l, 0);
}

/* ---- copying pages ------------------------------------------------------------- */

static int copy_bounce(struct rebase *rb, int in, uint64_t from, uint64_t off, uint64_t len)
{
	if (!rb->bounce && !(rb->bounce = malloc(BOUNCE_SIZE)))
		return -ENOMEM;
	while (len) {
		size_t n = len < BOUNCE_SIZE ? (size_t)len : BOUNCE_SIZE;
		int e = squib_pread_all(in, rb->bounce, n, from);

		if (!e)
			e = squib_pwrite_all(rb->out_fd, rb->bounce, n, off);
		if (e)
			return e;
		from += n;
		off += n;
		len -= n;
		squib_progress_advance(&rb->run, n);
	}
	return 0;
}

/* Bytes [from, from + len) of `in` to [off, off + len) of the output (the
 * same offsets unless `in` is packed). Errors that mean "not between these
 * files" switch to pread/pwrite for good. */
static int copy_range(struct rebase *rb, int in, uint64_t from, uint64_t off, uint64_t len)
{
	uint64_t chunk = rb->run.p ? COPY_CHUNK_PROGRESS : COPY_CHUNK;

	while (len && !rb->opts.no_copy_file_range) {
		loff_t src = (loff_t)from, dst = (loff_t)off;
		ssize_t n = copy_file_range(in, &src, rb->out_fd, &dst,
					    (size_t)(len < chunk ? len : chunk), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			      errno == EOPNOTSUPP || errno == ENOTSUP)) {
			rb->opts.no_copy_file_range = true;
			break;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the input ends before its manifest says */
		from += (uint64_t)n;
		off += (uint64_t)n;
		len -= (uint64_t)n;
		squib_progress_advance(&rb->run, (uint64_t)n);
	}
	return len ? copy_bounce(rb, in, from, off, len) : 0;
}

struct copy_job {
	struct rebase *rb;
	uint32_t from; /* 0: into a new file; 1: in place (the base's pages stay) */
};

/* Where page `page` of `in` is stored: its fixed offset, or its place in a
 * packed diff. A run owned by a layer lies inside one of its extents (they
 * are coalesced), so its bytes are contiguous in either layout. */
static int source_offset(const struct squib_memfile *in, const struct squib_chain_run *r,
			 uint64_t *from)
{
	const struct squib_memory_layout *l = &in->m.layout;
	int64_t i;

	*from = r->first_page * l->page_size;
	if (!(in->m.flags & SQUIB_MEMFILE_FLAG_PACKED))
		return 0;
	i = squib_memfile_find_extent(l, r->first_page);
	if (i < 0 ||
	    r->first_page + r->page_count > l->extents[i].first_page + l->extents[i].page_count)
		return -ENODATA; /* cannot happen for a run the chain built */
	*from = in->packed_at[i] + (r->first_page - l->extents[i].first_page) * l->page_size;
	return 0;
}

/* One run from its owner, the newest layer holding it. */
static int copy_run(void *ctx, const struct squib_chain_run *r)
{
	const struct copy_job *j = ctx;
	struct rebase *rb = j->rb;
	const struct squib_memfile *in;
	uint64_t off, len, from;
	int e;

	if (r->owner == SQUIB_CHAIN_ZERO || r->owner < j->from)
		return 0;
	in = squib_chain_memfile(rb->chain, r->owner);
	off = r->first_page * in->m.layout.page_size;
	len = r->page_count * in->m.layout.page_size;
	if (!(e = source_offset(in, r, &from)) && !(e = before(rb, SQUIB_IO_WRITE)))
		e = copy_range(rb, in->fd, from, off, len);
	if (e)
		return squib_memfile_io_error(
		    rb->d, -e, "copying %" PRIu64 " bytes at offset %" PRIu64 " from %s to %s", len,
		    off, in->path, rb->out_name);
	return 0;
}

/* Every page once, from the newest layer holding it (in place: those a diff holds). */
static int copy_pages(struct rebase *rb, bool in_place)
{
	struct copy_job j = {rb, in_place ? 1 : 0};

	return squib_chain_for_each_run(rb->chain, 0, squib_chain_page_count(rb->chain), copy_run,
					&j);
}

/* ---- manifest, footer, sync ---------------------------------------------------- */

/* Digests of the merged image, read back from what was written. */
static int merged_digests(struct rebase *rb, int fd)
{
	struct squib_memory_layout *l = &rb->result.layout;
	int rc;

	if (!rb->opts.digests || !l->extent_count)
		return 0;
	if (!(rb->result.digests = calloc((size_t)l->extent_count, sizeof(uint64_t))))
		return squib_fail(rb->d, SQUIB_E_NOMEM);
	for (uint64_t i = 0; i < l->extent_count; i++)
		if ((rc = squib_memfile_crc_range_run(fd, l->extents[i].first_page * l->page_size,
						      l->extents[i].page_count * l->page_size,
						      &rb->result.digests[i], &rb->run, rb->d)))
			return rc;
	return 0;
}

static int write_tail(struct rebase *rb, uint64_t magic)
{
	uint8_t *tail = NULL;
	size_t len = 0;
	int rc = squib_memfile_encode_tail(&rb->result, magic, &tail, &len, rb->d), e;

	if (rc)
		return rc;
	e = before(rb, SQUIB_IO_WRITE);
	if (!e)
		e = squib_pwrite_all(rb->out_fd, tail, len, rb->result.layout.ram_size);
	free(tail);
	return e ? squib_memfile_io_error(rb->d, -e, "writing the manifest of %s", rb->out_name)
		 : 0;
}

static int sync_out(struct rebase *rb)
{
	int e = before(rb, SQUIB_IO_FSYNC);

	if (!e && fdatasync(rb->out_fd) < 0)
		e = -errno;
	return e ? squib_memfile_io_error(rb->d, -e, "syncing %s", rb->out_name) : 0;
}

/* ---- the state file, published with the result as a pair ------------------------ */

/* The state must describe the newest diff exactly: only that diff's state belongs with the result.
 */
static int load_state(struct rebase *rb)
{
	const char *path = rb->opts.state_path;
	const struct squib_memfile *newest = diff(rb, rb->n - 1);
	int rc = squib_state_load_file(path, SQUIB_ARCH_ANY, &rb->state, NULL, rb->d);

	if (rc)
		return rc;
	if (!rb->state.memory)
		return squib_fail_msg(rb->d, SQUIB_E_PAIR_MISMATCH,
				      "state file %s has no memory section, so nothing says it "
				      "belongs with the newest diff %s",
				      path, newest->path);
	if (squib_memfile_check_layout(newest, rb->state.memory, rb->d))
		return squib_fail_msg(rb->d, SQUIB_E_PAIR_MISMATCH,
				      "state file %s describes memory file %s, not the newest diff "
				      "%s (id %s)%s",
				      path, squib_id_hex(rb->state.memory->id).s, newest->path,
				      squib_id_hex(newest->m.layout.id).s,
				      rb->state.memory->kind == SQUIB_MEMORY_FULL
					  ? ": it already describes a full file (rebased already?)"
					  : "");
	return 0;
}

/* STATE.tmp describing the result, durable and closed (PREPARED). */
static int prepare_state(struct rebase *rb)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = squib_state_set_memory(&rb->state, &rb->result.layout, rb->d);

	if (!rc)
		rc = squib_state_encode(&rb->state, &buf, &len, rb->d);
	if (!rc) {
		const struct squib_atomic_options o = {.hooks = rb->opts.hooks,
						       .lock = &rb->state_lock,
						       .pair_id = rb->result.layout.id};

		rc = squib_atomic_open_ex(&rb->state_w, rb->opts.state_path, &o, rb->d);
	}
	if (!rc)
		rc = squib_atomic_write(&rb->state_w, buf, len, rb->d);
	if (!rc)
		rc = squib_atomic_prepare(&rb->state_w, rb->d);
	free(buf);
	return rc;
}

/* Memory through `publish`, then (with a state) the state, by the pair protocol. */
static int publish(struct rebase *rb, squib_publish_fn publish_memory, void *ctx,
		   bool *memory_published)
{
	struct squib_pair_outcome o = {0};
	int rc;

	if (!rb->opts.state_path) {
		rc = publish_memory(ctx, rb->d);
		*memory_published = rc == 0 || rc == SQUIB_E_IO;
		return rc;
	}
	rc = prepare_state(rb);
	if (rc) {
		*memory_published = false;
		return rc;
	}
	rc = squib_pair_publish(publish_memory, ctx, &rb->state_w, &o, rb->d);
	*memory_published = o.memory_published;
	return rc;
}

/* ---- into a new file ------------------------------------------------------------ */

static int build_new(struct rebase *rb)
{
	int rc;

	if (ftruncate(rb->out_fd, (off_t)rb->base->m.layout.ram_size) < 0)
		return squib_memfile_io_error(rb->d, errno, "sizing %s", rb->out_name);
	if ((rc = copy_pages(rb, false)))
		return rc;
	/* The temp is open read-write: read back through the fd, never its name again. */
	if ((rc = merged_digests(rb, rb->out_fd)))
		return rc;
	return write_tail(rb, SQUIB_MEMFILE_MAGIC);
}

static int rebase_new(struct rebase *rb, const char *out_path, struct squib_dest_lock *lock)
{
	const struct squib_atomic_options o = {.hooks = rb->opts.hooks, .lock = lock};
	struct squib_atomic_writer w;
	bool published;
	int rc = squib_atomic_open_ex(&w, out_path, &o, rb->d);

	if (rc)
		return rc;
	rb->out_fd = w.fd;
	rb->out_name = w.temp;
	rc = build_new(rb);
	if (!rc)
		rc = squib_atomic_prepare(&w, rb->d);
	if (!rc)
		rc = publish(rb, squib_publish_writer, &w, &published);
	squib_atomic_abort(&w); /* a no-op once published */
	return rc;
}

/* ---- in place ---------------------------------------------------------------------- */

/*
 * The base's bytes change only while BASE.undo holds their old values: (1)
 * the footer is marked "rebase in progress" (CRC-valid, refused by every
 * reader); (2) the diffs' pages are copied; (3) the merged manifest and
 * footer are written over the old tail, and the file is cut to its new size.
 * Each is synced. Until (3) is complete the last 4096 bytes are the marked
 * footer, old manifest bytes or a torn new footer: refused (magic or CRC).
 * Never truncate to ram_size first: the file would end in guest RAM, and a
 * guest can write bytes that look like a footer.
 */
static int rewrite_base(struct rebase *rb)
{
	const struct squib_memfile_manifest *old = &rb->base->m;
	uint8_t foot[SQUIB_MEMFILE_FOOTER_SIZE];
	int rc, e;

	squib_memfile_encode_footer(old, SQUIB_MEMFILE_MAGIC_REBASING, foot);
	e = before(rb, SQUIB_IO_WRITE);
	if (!e)
		e = squib_pwrite_all(rb->out_fd, foot, sizeof(foot),
				     old->layout.file_size - sizeof(foot));
	if (e)
		return squib_memfile_io_error(rb->d, -e, "marking %s as being rebased",
					      rb->out_name);
	if ((rc = sync_out(rb)) || (rc = copy_pages(rb, true)) || (rc = sync_out(rb)) ||
	    (rc = merged_digests(rb, rb->out_fd)) || (rc = write_tail(rb, SQUIB_MEMFILE_MAGIC)))
		return rc;
	e = before(rb, SQUIB_IO_WRITE);
	if (!e && ftruncate(rb->out_fd, (off_t)rb->result.layout.file_size) < 0)
		e = -errno;
	if (e)
		return squib_memfile_io_error(rb->d, -e, "truncating %s", rb->out_name);
	return sync_out(rb);
}

/* The undo log: the old bytes of every page a diff holds, and the old tail. */
static int write_undo(struct rebase *rb)
{
	struct squib_memory_layout over = {0};
	int rc = owned_extents(rb, &over, 1);

	if (!rc)
		rc = squib_undo_write(rb->base, over.extents, over.extent_count,
				      rb->result.layout.id, rb->opts.hooks, rb->d);
	free(over.extents);
	return rc;
}

/* squib_publish_fn of an in-place rebase: removing the undo log commits. */
static int discard_undo(void *ctx, struct squib_error_detail *d)
{
	const struct rebase *rb = ctx;

	return squib_undo_discard(&rb->target_lock, rb->opts.hooks, d);
}

static int rebase_in_place(struct rebase *rb)
{
	bool published = false;
	int rc;

	rb->out_fd = rb->base->fd;
	rb->out_name = rb->base->path;
	/* A log whose directory did not sync fails too: it is in place, and removed below. */
	rc = write_undo(rb);
	if (!rc)
		rc = rewrite_base(rb);
	if (!rc)
		rc = publish(rb, discard_undo, rb, &published);
	/* Not committed: the old bytes go back now (else at the next recovery). */
	if (rc && !published)
		squib_undo_recover_locked(&rb->target_lock, rb->opts.hooks,
					  rb->opts.state_path ? &rb->state_lock : NULL, &published,
					  NULL);
	return rc;
}

/* ---- the whole ------------------------------------------------------------------- */

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* path (itself, or what it links to) must not be any memory file this rebase reads. */
static int not_an_input(const struct rebase *rb, const char *path, const char *what)
{
	struct stat p, l, in;

	if (!path)
		return 0;
	if (stat(path, &p) < 0 && lstat(path, &p) < 0)
		return 0; /* it does not exist yet */
	if (lstat(path, &l) < 0)
		l = p;
	for (size_t i = 0; i <= rb->n; i++) {
		const struct squib_memfile *m = squib_chain_memfile(rb->chain, i);

		if (fstat(m->fd, &in) == 0 && (same_file(&p, &in) || same_file(&l, &in)))
			return squib_fail_msg(rb->d, SQUIB_E_INVALID_PATH,
					      "%s %s is the input %s (the same file): write the "
					      "result elsewhere, or rebase the base --in-place",
					      what, path, m->path);
	}
	return 0;
}

static int check_outputs(const struct rebase *rb, const char *out_path)
{
	int rc = not_an_input(rb, out_path, "the output");
	struct stat a, b;

	if (!rc)
		rc = not_an_input(rb, rb->opts.state_path, "the state file");
	if (!rc && out_path && rb->opts.state_path && stat(out_path, &a) == 0 &&
	    stat(rb->opts.state_path, &b) == 0 && same_file(&a, &b))
		rc = squib_fail_msg(rb->d, SQUIB_E_INVALID_PATH,
				    "the output %s and the state file %s are the same file",
				    out_path, rb->opts.state_path);
	if (!rc && out_path && rb->opts.state_path && !strcmp(out_path, rb->opts.state_path))
		rc = squib_fail_msg(rb->d, SQUIB_E_INVALID_PATH,
				    "the output and the state file are both %s", out_path);
	return rc;
}

/* The files written locked, then a crashed earlier run finished: rolled back in place, rolled
 * forward as a pair. */
static int lock_and_recover(struct rebase *rb, const char *base, const char *out_path)
{
	const struct squib_io_hooks *h = rb->opts.hooks;
	enum squib_recovery_action a;
	struct stat st;
	bool rolled;
	int rc;

	/* A base that is not there is the memory file's error, not the lock's. */
	if (!out_path && stat(base, &st) < 0)
		return squib_memfile_io_error(rb->d, errno, "opening %s", base);
	rc = squib_dest_lock(&rb->target_lock, out_path ? out_path : base, h, rb->d);

	if (!rc && rb->opts.state_path)
		rc = squib_dest_lock(&rb->state_lock, rb->opts.state_path, h, rb->d);
	if (rc)
		return rc;
	if (rb->opts.state_path)
		return squib_pair_recover_locked(&rb->state_lock, &rb->target_lock, h, &a, rb->d);
	return out_path ? 0 : squib_undo_recover_locked(&rb->target_lock, h, NULL, &rolled, rb->d);
}

/* The progress total: the pages copied are all of the result's, or in place the diffs'. */
static int copied_bytes(struct rebase *rb, bool into_new_file)
{
	struct squib_memory_layout over = {.page_size = rb->base->m.layout.page_size};
	int rc = into_new_file ? 0 : owned_extents(rb, &over, 1);

	if (!rc)
		rb->run.total = work_bytes(rb, into_new_file ? &rb->result.layout : &over);
	free(over.extents);
	return rc;
}

/* Everything checked before a byte is written. */
static int prepare(struct rebase *rb, const char *base, const char *const *diffs,
		   const char *out_path)
{
	int rc = lock_and_recover(rb, base, out_path);

	if (!rc)
		rc = open_inputs(rb, base, diffs, out_path == NULL);
	if (!rc)
		rc = merged_manifest(rb);
	/* A state that is no state file is named as such before it is compared with the inputs. */
	if (!rc && rb->opts.state_path)
		rc = load_state(rb);
	if (!rc)
		rc = check_outputs(rb, out_path);
	if (!rc)
		rc = copied_bytes(rb, out_path != NULL);
	if (!rc)
		rc = verify_inputs(rb);
	return rc;
}

int squib_memfile_rebase_ex(const char *base, const char *const *diffs, size_t n,
			    const char *out_path, const struct squib_memfile_rebase_options *opts,
			    const struct squib_progress *progress,
			    struct squib_memfile_manifest *result, struct squib_error_detail *d)
{
	struct rebase rb = {.n = n, .out_fd = -1, .run = {.p = progress}, .d = d};
	int rc;

	if (result)
		memset(result, 0, sizeof(*result));
	if (!base || !diffs || !n)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "rebase needs a base and a diff");
	if (opts)
		rb.opts = *opts;
	rb.state_w = (struct squib_atomic_writer){.fd = -1};
	rb.target_lock = rb.state_lock = (struct squib_dest_lock){.dir_fd = -1, .fd = -1};
	squib_state_init(&rb.state, SQUIB_ARCH_ANY);
	rc = prepare(&rb, base, diffs, out_path);
	if (!rc)
		rc = out_path ? rebase_new(&rb, out_path, &rb.target_lock) : rebase_in_place(&rb);
	squib_atomic_abort(&rb.state_w);
	squib_state_free(&rb.state);
	close_inputs(&rb);
	squib_dest_unlock(&rb.state_lock);
	squib_dest_unlock(&rb.target_lock);
	if (!rc && result)
		*result = rb.result;
	else
		squib_memfile_manifest_release(&rb.result);
	return rc;
}

int squib_memfile_rebase(const char *base, const char *const *diffs, size_t n, const char *out_path,
			 const struct squib_memfile_rebase_options *opts,
			 struct squib_memfile_manifest *result, struct squib_error_detail *d)
{
	return squib_memfile_rebase_ex(base, diffs, n, out_path, opts, NULL, result, d);
}
