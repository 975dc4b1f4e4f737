/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The save orchestrator: quiesce, capture, harvest, write both temps,
 * resume, sync, publish memory then state, reset tracking. squib/save.h has
 * the steps; docs/DESIGN.md "Saving and loading a pair" the crash analysis.
 */
#include <squib/save.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/dirty.h>
#include <squib/envelope.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/track.h>

#include "live.h"
#include "memfile_internal.h"
#include "memlayout.h"
#include "pair.h"
#include "save_internal.h"

struct save {
	const struct squib_vm *vm;
	const struct squib_save_request *req;
	struct squib_save_report *rep;
	struct squib_error_detail *d;
	uint64_t page_size;
	uint8_t parent_id[SQUIB_MEMORY_ID_SIZE];
	struct squib_memory_layout *parent_layout; /* from parent_state_path, for geometry */
	struct squib_microvm_state state;
	struct squib_memfile_source_region *src;
	uint32_t region_count;
	struct squib_tracker_set *set;
	struct squib_dirty_bitmap **bitmaps;
	uint32_t harvested; /* bitmaps[0..harvested) hold pages taken from the trackers */
	struct squib_dest_lock mem_lock, state_lock; /* held from before recovery to the end */
	uint8_t memory_id[SQUIB_MEMORY_ID_SIZE];     /* the new file's; names the state temp */
	struct squib_atomic_writer mem_w, state_w;
	struct squib_memfile_manifest manifest;
	bool paused;
	uint64_t paused_at;
	struct squib_live *live; /* a live save's capture, from its pause to its end */
	const struct squib_save_sink *sink; /* NULL: the file pair */
	uint8_t *state_buf;		    /* sink: the encoded state */
	size_t state_len;
};

const char *squib_snapshot_kind_name(enum squib_snapshot_kind kind)
{
	switch (kind) {
	case SQUIB_SNAPSHOT_FULL:
		return "full";
	case SQUIB_SNAPSHOT_DIFF:
		return "diff";
	}
	return "unknown";
}

/* ---- the request ---------------------------------------------------------------- */

static uint64_t host_page(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? (uint64_t)ps : 4096;
}

static int check_paths(const struct squib_save_request *r, struct squib_error_detail *d)
{
	if (!r->state_path || !r->memory_path || !*r->state_path || !*r->memory_path)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "state and memory paths are required");
	if (!strcmp(r->state_path, r->memory_path))
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				      "state and memory paths are the same file: %s",
				      r->state_path);
	return 0; /* a path named like the other's temp: the file-safety layer refuses it */
}

static int check_request(struct save *s)
{
	const struct squib_save_request *r = s->req;
	int rc;

	if (!r)
		return squib_fail_msg(s->d, SQUIB_E_INVALID_ARGUMENT, "NULL save request");
	if ((rc = squib_vm_check(s->vm, s->d)) || (!s->sink && (rc = check_paths(r, s->d))))
		return rc;
	if (r->kind != SQUIB_SNAPSHOT_FULL && r->kind != SQUIB_SNAPSHOT_DIFF)
		return squib_fail_msg(s->d, SQUIB_E_INVALID_ARGUMENT, "unknown snapshot kind %d",
				      (int)r->kind);
	s->page_size = r->page_size ? r->page_size : host_page();
	if (s->sink && r->packed) /* a store image maps chunks; it has no file layout */
		return squib_fail_msg(s->d, SQUIB_E_INVALID_ARGUMENT,
				      "packed applies to memory files, not to a save into a store");
	if (s->sink && r->kind == SQUIB_SNAPSHOT_DIFF && !r->parent_memory_id)
		return squib_fail_msg(s->d, SQUIB_E_INVALID_ARGUMENT,
				      "a Diff into a store needs its parent's memory id");
	if (r->kind == SQUIB_SNAPSHOT_DIFF && !r->parent_memory_id && !r->parent_state_path)
		return squib_fail_msg(s->d, SQUIB_E_INVALID_ARGUMENT,
				      "a Diff snapshot needs its parent: parent_memory_id or "
				      "parent_state_path");
	if (r->kind == SQUIB_SNAPSHOT_FULL && r->packed)
		return squib_fail_msg(s->d, SQUIB_E_INVALID_ARGUMENT,
				      "only a Diff can be packed: a Full stays mappable");
	return squib_mem_check_page_size(s->page_size, SQUIB_E_INVALID_PATH, s->d);
}

/* The parent's id, from the request or from the parent's state file. */
static int resolve_parent(struct save *s)
{
	const struct squib_save_request *r = s->req;
	struct squib_microvm_state ps;
	int rc;

	if (r->kind != SQUIB_SNAPSHOT_DIFF)
		return 0;
	if (r->parent_state_path && !s->sink) {
		if ((rc = squib_state_load_file(r->parent_state_path, SQUIB_ARCH_ANY, &ps, NULL,
						s->d))) {
			squib_state_free(&ps);
			return rc;
		}
		if (!ps.memory || (r->parent_memory_id &&
				   memcmp(ps.memory->id, s->parent_id, SQUIB_MEMORY_ID_SIZE))) {
			squib_state_free(&ps);
			return squib_fail_msg(s->d, SQUIB_E_PAIR_MISMATCH,
					      "parent state %s does not name the parent memory id "
					      "%s",
					      r->parent_state_path, squib_id_hex(s->parent_id).s);
		}
		memcpy(s->parent_id, ps.memory->id, SQUIB_MEMORY_ID_SIZE);
		s->parent_layout = ps.memory; /* keep it; the rest goes */
		ps.memory = NULL;
		squib_state_free(&ps);
	}
	if (squib_mem_id_is_zero(s->parent_id))
		return squib_fail_msg(s->d, SQUIB_E_INVALID_ARGUMENT, "parent memory id is zero");
	memcpy(s->rep->parent_id, s->parent_id, SQUIB_MEMORY_ID_SIZE);
	return 0;
}

/* A diff saved over the very file it applies on would destroy its own parent. */
static int check_not_own_parent(struct save *s)
{
	struct squib_memfile_manifest m;

	if (s->sink || s->req->kind != SQUIB_SNAPSHOT_DIFF ||
	    squib_memfile_verify(s->req->memory_path, false, &m, NULL))
		return 0;
	if (!memcmp(m.layout.id, s->parent_id, SQUIB_MEMORY_ID_SIZE)) {
		squib_memfile_manifest_release(&m);
		return squib_fail_msg(s->d, SQUIB_E_INVALID_PATH,
				      "the diff would replace its own parent %s (id %s): save it "
				      "to another path",
				      s->req->memory_path, squib_id_hex(s->parent_id).s);
	}
	squib_memfile_manifest_release(&m);
	return 0;
}

/*
 * Both destinations locked for the whole save (a second save of either fails
 * busy), then a save that crashed between its renames left what a recovery
 * needs: use it first. Then the new memory file's id, which names the state temp.
 */
static int lock_and_recover(struct save *s)
{
	enum squib_recovery_action a = SQUIB_RECOVERY_NONE;
	int rc;

	if (s->sink) /* no files: nothing to lock or recover */
		return squib_memfile_new_id(s->memory_id, s->d);
	rc = squib_dest_lock(&s->mem_lock, s->req->memory_path, s->req->hooks, s->d);
	if (!rc)
		rc = squib_dest_lock(&s->state_lock, s->req->state_path, s->req->hooks, s->d);
	if (rc)
		return rc;
	/* An unrecoverable pair is about to be replaced anyway: its error does not matter. */
	squib_pair_recover_locked(&s->state_lock, &s->mem_lock, s->req->hooks, &a, NULL);
	s->rep->recovered = a == SQUIB_RECOVERY_ROLLED_FORWARD;
	return squib_memfile_new_id(s->memory_id, s->d);
}

/* ---- the VM ----------------------------------------------------------------------- */

static int pause_vm(struct save *s)
{
	uint64_t t = squib_now_ns();
	int rc = squib_vm_pause(s->vm, s->req->quiesce_timeout_ms, s->d);

	s->rep->ns.pause = squib_now_ns() - t;
	if (!rc) {
		s->paused = true;
		s->paused_at = squib_now_ns();
	}
	return rc;
}

static void resume_vm(struct save *s)
{
	if (!s->paused || s->req->stay_paused)
		return;
	/* A resume failure is the VMM's to see; the snapshot's outcome stands. */
	s->rep->resumed = squib_vm_resume(s->vm, NULL) == 0;
	s->paused = false;
	s->rep->ns.paused = squib_now_ns() - s->paused_at;
}

static int check_diff_source(struct save *s)
{
	if (s->req->kind != SQUIB_SNAPSHOT_DIFF) {
		/* A Full is a checkpoint too: the next Diff starts from it. */
		s->set = squib_vm_trackers(s->vm);
		return 0;
	}
	if (!s->state.vm_info.track_dirty_pages)
		return squib_fail_msg(s->d, SQUIB_E_INVALID_PATH,
				      "Diff snapshot requested but vm_info.track_dirty_pages is "
				      "false");
	if (!(s->set = squib_vm_trackers(s->vm)))
		return squib_fail_msg(s->d, SQUIB_E_INVALID_PATH,
				      "Diff snapshot requires track_dirty_pages=true and a dirty "
				      "bitmap");
	return 0;
}

static int capture(struct save *s)
{
	uint64_t t = squib_now_ns();
	int rc = squib_vm_capture(s->vm, &s->state, s->d);

	s->rep->ns.capture = squib_now_ns() - t;
	if (!rc)
		rc = check_diff_source(s);
	/* Upstream's rule: an incompatible state never creates a file. */
	return rc ? rc : squib_state_verify_compatible(&s->state, s->d);
}

static bool same_geometry(const struct save *s, const struct squib_memory_layout *l)
{
	if (l->page_size != s->page_size || l->region_count != s->region_count)
		return false;
	for (uint32_t i = 0; i < s->region_count; i++)
		if (l->regions[i].guest_addr != s->src[i].guest_addr ||
		    l->regions[i].size != s->src[i].size)
			return false;
	return true;
}

static int get_memory(struct save *s)
{
	const struct squib_vm_region *r;
	uint32_t n;
	int rc = squib_vm_get_memory(s->vm, &r, &n, s->d);

	if (rc)
		return rc;
	if (!(s->src = calloc(n, sizeof(*s->src))))
		return squib_fail(s->d, SQUIB_E_NOMEM);
	s->region_count = n;
	for (uint32_t i = 0; i < n; i++)
		s->src[i] =
		    (struct squib_memfile_source_region){r[i].guest_addr, r[i].size, r[i].host};
	if (s->parent_layout && !same_geometry(s, s->parent_layout))
		return squib_fail_msg(
		    s->d, SQUIB_E_PAIR_MISMATCH,
		    "the VM's memory (%u regions, page %" PRIu64
		    ") is not the geometry of parent %s (%u regions, page %" PRIu64 ")",
		    n, s->page_size, squib_id_hex(s->parent_id).s, s->parent_layout->region_count,
		    s->parent_layout->page_size);
	return 0;
}

/* One bitmap per region at the file's page: what the diff writer takes. A
 * Full harvests too (and drops the pages once durable), so that the next
 * Diff holds only what changed since this snapshot. */
static int harvest(struct save *s)
{
	int rc;

	if (!s->set)
		return 0;
	if (!(s->bitmaps = calloc(s->region_count, sizeof(*s->bitmaps))))
		return squib_fail(s->d, SQUIB_E_NOMEM);
	for (uint32_t i = 0; i < s->region_count; i++) {
		rc = squib_dirty_bitmap_new(s->src[i].guest_addr, s->src[i].size, s->page_size,
					    &s->bitmaps[i], s->d);
		/* A failing set harvest gives this bitmap back itself. */
		if (!rc)
			rc = squib_tracker_set_harvest(s->set, s->bitmaps[i], s->d);
		if (rc)
			return rc;
		s->harvested = i + 1;
	}
	return 0;
}

static void give_back(struct save *s)
{
	for (uint32_t i = 0; i < s->harvested; i++)
		squib_tracker_set_give_back(s->set, s->bitmaps[i], NULL);
	s->harvested = 0;
}

/* ---- the files ----------------------------------------------------------------------- */

static int open_temps(struct save *s)
{
	struct squib_atomic_options mo = {.hooks = s->req->hooks, .lock = &s->mem_lock};
	struct squib_atomic_options so = {
	    .hooks = s->req->hooks, .lock = &s->state_lock, .pair_id = s->memory_id};
	int rc;

	if (s->sink)
		return 0;
	rc = squib_atomic_open_ex(&s->mem_w, s->req->memory_path, &mo, s->d);

	return rc ? rc : squib_atomic_open_ex(&s->state_w, s->req->state_path, &so, s->d);
}

static void live_fallback(struct save *s, const struct squib_error_detail *ld)
{
	s->rep->live_errno = ld->os_errno ? ld->os_errno : EINVAL;
	squib_live_end(s->live, NULL);
	s->live = NULL;
}

/*
 * A live save, before the pause: protect guest RAM while the guest still
 * runs (squib_live_begin). When that is not possible here the save goes on
 * stop-the-world and the report says why.
 */
static void prepare_live(struct save *s)
{
	struct squib_error_detail ld = {0};
	struct squib_memfile_source_region *src;
	const struct squib_vm_region *r;
	uint32_t n;

	if (!s->req->live || squib_vm_get_memory(s->vm, &r, &n, &ld)) {
		s->rep->live_errno = s->req->live ? EINVAL : 0;
		return;
	}
	if (!(src = calloc(n, sizeof(*src)))) {
		s->rep->live_errno = ENOMEM;
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		src[i] =
		    (struct squib_memfile_source_region){r[i].guest_addr, r[i].size, r[i].host};
	if (squib_live_begin(src, n, &s->live, &ld))
		live_fallback(s, &ld);
	free(src);
}

/* Paused and captured: freeze the view at this instant and let the guest run. */
static void go_live(struct save *s)
{
	struct squib_error_detail ld = {0};
	const struct squib_memfile_source_region *v;

	if (!s->live)
		return;
	v = squib_live_view(s->live);
	for (uint32_t i = 0; i < s->region_count; i++)
		if (v[i].guest_addr != s->src[i].guest_addr || v[i].size != s->src[i].size) {
			ld.os_errno = ESTALE; /* the VM's memory changed since begin */
			live_fallback(s, &ld);
			return;
		}
	if (squib_live_freeze(s->live, &ld)) {
		live_fallback(s, &ld);
		return;
	}
	s->rep->live = true;
	resume_vm(s);
}

/* The view served every page the writer read, or the image is void. */
static int end_live(struct save *s, int rc)
{
	struct squib_live_stats st;

	if (!s->live)
		return rc;
	if (!rc)
		rc = squib_live_error(s->live, s->d);
	squib_live_end(s->live, &st);
	s->live = NULL;
	s->rep->live_pages_on_write = st.pages_copied_on_wp;
	s->rep->live_write_faults = st.wp_faults;
	return rc;
}

static int sink_memory(struct save *s, const struct squib_memfile_source *src,
		       struct squib_memfile_write_stats *st)
{
	const struct squib_save_sink_memory m = {
	    .src = src,
	    .kind = s->req->kind,
	    .parent_id = s->req->kind == SQUIB_SNAPSHOT_DIFF ? s->parent_id : NULL,
	    .bitmaps = (const struct squib_dirty_bitmap *const *)s->bitmaps,
	    .id = s->memory_id,
	    .digests = s->req->digests};

	if (m.kind == SQUIB_SNAPSHOT_DIFF &&
	    !m.bitmaps) /* check_diff_source makes this impossible */
		return squib_fail_msg(s->d, SQUIB_E_INVALID_ARGUMENT, "a Diff without bitmaps");
	return s->sink->memory(s->sink->ctx, &m, &s->manifest, &st->pages_written, s->d);
}

static int write_memory(struct save *s)
{
	const struct squib_memfile_source src = {s->live ? squib_live_view(s->live) : s->src,
						 s->region_count, s->page_size};
	const struct squib_memfile_write_options o = {
	    .digests = s->req->digests, .id = s->memory_id, .packed = s->req->packed};
	struct squib_memfile_write_stats st = {0};
	uint64_t t = squib_now_ns();
	int rc;

	if (s->sink)
		rc = sink_memory(s, &src, &st);
	else if (s->req->kind == SQUIB_SNAPSHOT_FULL)
		rc = squib_memfile_write_full_walk(&s->mem_w, &src, &o,
						   s->live ? squib_live_populated(s->live) : NULL,
						   &s->manifest, &st, s->d);
	else
		rc = squib_memfile_write_diff(&s->mem_w, &src, s->parent_id,
					      (const struct squib_dirty_bitmap *const *)s->bitmaps,
					      s->region_count, &o, &s->manifest, &st, s->d);
	s->rep->ns.memory_write = squib_now_ns() - t;
	if (rc)
		return rc;
	s->rep->pages_written = st.pages_written;
	s->rep->page_size = s->page_size;
	s->rep->memory_bytes_written = st.pages_written * s->page_size;
	s->rep->memory_file_size = s->manifest.layout.file_size;
	memcpy(s->rep->memory_id, s->manifest.layout.id, SQUIB_MEMORY_ID_SIZE);
	return 0;
}

static int write_state(struct save *s)
{
	uint64_t t = squib_now_ns();
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = squib_state_set_memory(&s->state, &s->manifest.layout, s->d);

	if (!rc)
		rc = squib_state_encode(&s->state, &buf, &len, s->d);
	if (!rc && s->sink) { /* the sink's commit sends it once the guest runs again */
		s->state_buf = buf;
		s->state_len = len;
		buf = NULL;
	} else if (!rc) {
		rc = squib_atomic_write(&s->state_w, buf, len, s->d);
	}
	free(buf);
	s->rep->ns.state_write = squib_now_ns() - t;
	if (!rc)
		s->rep->state_file_size = len;
	return rc;
}

/* Both temps durable before either name changes. A failure unlinks the temp
 * that failed; the caller's cleanup aborts the other. */
static int sync_temps(struct save *s)
{
	uint64_t t = squib_now_ns();
	int rc;

	if (s->sink)
		return 0;
	rc = squib_atomic_prepare(&s->mem_w, s->d);

	if (!rc)
		rc = squib_atomic_prepare(&s->state_w, s->d);
	s->rep->ns.sync = squib_now_ns() - t;
	return rc;
}

/*
 * Memory first, then state. Until the memory rename nothing is visible. Once
 * it happened, STATE.<B>.tmp (durable, naming the new memory B) is never unlinked:
 * if anything after fails, recovery rolls the pair forward.
 */
static int publish(struct save *s)
{
	uint64_t t = squib_now_ns();
	struct squib_pair_outcome o = {0};
	int rc;

	if (s->sink) {
		rc = s->sink->commit(s->sink->ctx, s->state_buf, s->state_len, s->d);
		o.memory_published = o.state_published = rc == 0;
	} else {
		rc = squib_pair_publish(squib_publish_writer, &s->mem_w, &s->state_w, &o, s->d);
	}

	s->rep->memory_published = o.memory_published;
	s->rep->state_published = o.state_published;
	s->rep->ns.publish = squib_now_ns() - t;
	return rc;
}

/* ---- the whole --------------------------------------------------------------------------- */

static void release(struct save *s)
{
	squib_atomic_abort(&s->mem_w);
	squib_atomic_abort(&s->state_w);
	squib_dest_unlock(&s->state_lock);
	squib_dest_unlock(&s->mem_lock);
	squib_memfile_manifest_release(&s->manifest);
	for (uint32_t i = 0; s->bitmaps && i < s->region_count; i++)
		squib_dirty_bitmap_free(s->bitmaps[i]);
	free(s->bitmaps);
	free(s->src);
	free(s->state_buf);
	squib_state_free(&s->state);
	if (s->parent_layout) {
		squib_memory_layout_release(s->parent_layout);
		free(s->parent_layout);
	}
}

/* Everything up to complete temps, with the VM paused. */
static int snapshot(struct save *s)
{
	int rc;

	prepare_live(s);
	rc = pause_vm(s);
	if (!rc)
		rc = capture(s);
	if (!rc)
		rc = get_memory(s);
	if (!rc)
		rc = harvest(s);
	if (!rc)
		go_live(s); /* live: the guest runs from here on */
	if (!rc)
		rc = open_temps(s);
	if (!rc)
		rc = write_memory(s);
	rc = end_live(s, rc);
	if (!rc)
		rc = write_state(s);
	resume_vm(s); /* the image is complete (or abandoned): the guest may run */
	return rc;
}

static int save_run(const struct squib_vm *vm, const struct squib_save_request *req,
		    const struct squib_save_sink *sink, struct squib_save_report *report,
		    struct squib_error_detail *d)
{
	struct squib_save_report dummy;
	struct save s = {
	    .vm = vm, .req = req, .rep = report ? report : &dummy, .d = d, .sink = sink};
	uint64_t t0 = squib_now_ns();
	int rc;

	/* Copied before the report is cleared: the id may live in the last report. */
	if (req && req->parent_memory_id)
		memcpy(s.parent_id, req->parent_memory_id, SQUIB_MEMORY_ID_SIZE);
	*s.rep = (struct squib_save_report){.kind = req ? req->kind : 0};
	s.mem_w = s.state_w = (struct squib_atomic_writer){.fd = -1};
	s.mem_lock = s.state_lock = (struct squib_dest_lock){.dir_fd = -1, .fd = -1};
	squib_state_init(&s.state, SQUIB_ARCH_ANY);
	rc = check_request(&s);
	if (!rc)
		rc = resolve_parent(&s);
	if (!rc)
		rc = check_not_own_parent(&s);
	if (!rc)
		rc = lock_and_recover(&s);
	if (!rc)
		rc = snapshot(&s);
	if (!rc)
		rc = sync_temps(&s);
	if (!rc)
		rc = publish(&s);
	if (rc)
		give_back(&s); /* the next Diff contains these pages again */
	else if (s.set)
		rc = squib_tracker_set_reset_after_commit(s.set, d); /* the pair is durable */
	release(&s);
	s.rep->ns.total = squib_now_ns() - t0;
	return rc;
}

int squib_save(const struct squib_vm *vm, const struct squib_save_request *req,
	       struct squib_save_report *report, struct squib_error_detail *d)
{
	return save_run(vm, req, NULL, report, d);
}

int squib_save_to_sink(const struct squib_vm *vm, const struct squib_save_request *req,
		       const struct squib_save_sink *sink, struct squib_save_report *report,
		       struct squib_error_detail *d)
{
	if (!sink || !sink->memory || !sink->commit)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL save sink");
	return save_run(vm, req, sink, report, d);
}
