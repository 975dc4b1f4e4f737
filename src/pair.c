/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pair recovery: after a save stopped between its two renames, the new
 * memory file sits next to the old state file and the new state waits in
 * STATE.tmp. Roll it forward, or say exactly why the pair does not match.
 * docs/DESIGN.md "Saving and loading a pair" has the protocol.
 */
#include <squib/load.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <squib/envelope.h>
#include <squib/memfile.h>

#include "memfile_internal.h"
#include "memlayout.h"
#include "pair.h"
#include "util.h"

/* ---- shared helpers ------------------------------------------------------------ */

uint64_t squib_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

char *squib_temp_path_of(const char *path)
{
	size_t n = strlen(path) + sizeof(SQUIB_TEMP_SUFFIX);
	char *t = malloc(n);

	if (t && squib_atomic_derive_temp_path(path, t, n)) {
		free(t);
		t = NULL;
	}
	return t;
}

int squib_hook(const struct squib_io_hooks *hooks, enum squib_io_step step, const char *path)
{
	int r;

	if (!hooks || !hooks->before)
		return 0;
	r = hooks->before(hooks->ctx, step, path);
	return r >= 0 ? 0 : r == INT_MIN ? -EIO : r;
}

int squib_hooked_fsync_dir(const struct squib_io_hooks *hooks, const char *dir,
			   struct squib_error_detail *d)
{
	int e = squib_hook(hooks, SQUIB_IO_FSYNC_DIR, dir);

	return e ? squib_fail_errno(d, SQUIB_E_IO, -e) : squib_fsync_dir(dir, d);
}

bool squib_path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

struct squib_id_hex squib_id_hex(const uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	struct squib_id_hex h;

	squib_mem_id_hex(id, h.s);
	return h;
}

/* ---- publication ---------------------------------------------------------------- */

int squib_publish_writer(void *writer, struct squib_error_detail *d)
{
	return squib_atomic_publish(writer, d);
}

int squib_pair_publish(squib_publish_fn publish_memory, void *ctx,
		       struct squib_atomic_writer *state, struct squib_pair_outcome *out,
		       struct squib_error_detail *d)
{
	int rc = publish_memory(ctx, d);

	*out = (struct squib_pair_outcome){.memory_published = rc == 0 || rc == SQUIB_E_IO};
	if (rc == 0) {
		/* From here the temp is what a recovery needs: never unlinked. */
		rc = squib_atomic_publish_keep(state, d);
		out->state_published = rc == 0 || rc == SQUIB_E_IO;
	} else if (out->memory_published) {
		squib_atomic_forget(state); /* the memory's directory did not sync */
	} else {
		squib_atomic_abort(state);
	}
	return rc;
}

/* ---- recovery ------------------------------------------------------------------ */

struct recovery {
	const char *state_path, *memory_path;
	char *state_tmp, *memory_tmp;
	const struct squib_io_hooks *hooks;
	struct squib_memfile *mem; /* the memory file in place (id B) */
	struct squib_microvm_state state;
	int state_rc; /* 0, or why the state file did not load */
	bool state_missing;
	struct squib_error_detail scratch; /* errors that only decide, never reported */
};

static void recovery_release(struct recovery *r)
{
	squib_memfile_close(r->mem);
	squib_state_free(&r->state);
	free(r->state_tmp);
	free(r->memory_tmp);
}

static void remove_stale(const char *path)
{
	unlink(path); /* best effort: a stale temp is garbage, and the next save truncates it */
}

/* Does STATE.tmp complete the pair: CRC-valid, and its MEMORY section is the file in place? */
static bool temp_binds(struct recovery *r, char *why, size_t why_len)
{
	struct squib_microvm_state tmp;
	int rc;

	if (!squib_path_exists(r->state_tmp)) {
		snprintf(why, why_len, "no %s", r->state_tmp);
		return false;
	}
	rc = squib_state_load_file(r->state_tmp, SQUIB_ARCH_ANY, &tmp, NULL, &r->scratch);
	if (!rc && !tmp.memory)
		rc = squib_fail_msg(&r->scratch, SQUIB_E_PAIR_MISMATCH, "it names no memory file");
	if (!rc)
		rc = squib_memfile_check_layout(r->mem, tmp.memory, &r->scratch);
	if (rc)
		snprintf(why, why_len, "%s does not complete it (%s: %.300s)", r->state_tmp,
			 squib_error_name(rc), r->scratch.msg);
	squib_state_free(&tmp);
	return rc == 0;
}

/*
 * Is STATE.tmp a rebase's, describing the result of rebasing this pair's
 * chain (another file, published under another name, or the chain's base in
 * place)? It names the same id (a rebase keeps the newest diff's) with
 * another layout; a save's names a fresh id. It completes that other pair
 * once its memory is published, so this pair's recovery must not remove it.
 */
static bool pending_rebase(struct recovery *r)
{
	struct squib_microvm_state tmp;
	bool pending;

	if (squib_state_load_file(r->state_tmp, SQUIB_ARCH_ANY, &tmp, NULL, &r->scratch))
		return false;
	pending = tmp.memory &&
		  !memcmp(tmp.memory->id, r->state.memory->id, SQUIB_MEMORY_ID_SIZE) &&
		  !squib_memory_layout_equal(tmp.memory, r->state.memory);
	squib_state_free(&tmp);
	return pending;
}

/* fsync the memory's directory (the memory rename must be durable before the
 * state names it), rename STATE.tmp over the state, fsync the state's directory. */
static int roll_forward(struct recovery *r, struct squib_error_detail *d)
{
	char *mdir = squib_dir_of(r->memory_path), *sdir = squib_dir_of(r->state_path);
	int rc = (!mdir || !sdir) ? squib_fail(d, SQUIB_E_NOMEM) : 0;
	int e;

	if (!rc)
		rc = squib_hooked_fsync_dir(r->hooks, mdir, d);
	if (!rc) {
		e = squib_hook(r->hooks, SQUIB_IO_RENAME, r->state_path);
		if (!e && rename(r->state_tmp, r->state_path) < 0)
			e = -errno;
		if (e)
			rc = squib_fail_errno(d, SQUIB_E_ATOMIC_COMMIT_FAILED, -e);
	}
	if (!rc)
		rc = squib_hooked_fsync_dir(r->hooks, sdir, d);
	free(mdir);
	free(sdir);
	return rc;
}

static int mismatch(struct recovery *r, const char *why, struct squib_error_detail *d)
{
	struct squib_id_hex b = squib_id_hex(squib_memfile_manifest(r->mem)->layout.id);

	if (r->state_missing)
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "no state file %s for memory file %s (id %s); %s",
				      r->state_path, r->memory_path, b.s, why);
	if (!memcmp(r->state.memory->id, squib_memfile_manifest(r->mem)->layout.id,
		    SQUIB_MEMORY_ID_SIZE))
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "state file %s names memory file %s, and %s has that id but "
				      "not that layout (a rebase's result?); %s",
				      r->state_path, b.s, r->memory_path, why);
	return squib_fail_msg(
	    d, SQUIB_E_PAIR_MISMATCH, "state file %s names memory file %s, but %s has id %s; %s",
	    r->state_path, squib_id_hex(r->state.memory->id).s, r->memory_path, b.s, why);
}

/* An in-place rebase of the memory file that did not commit is undone; the
 * state temp it prepared names what was never published. */
static int roll_back_rebase(struct recovery *r, enum squib_recovery_action *action,
			    struct squib_error_detail *d)
{
	bool rolled = false;
	int rc = squib_undo_recover(r->memory_path, r->hooks, r->state_tmp, &rolled, d);

	if (!rc && rolled)
		*action = SQUIB_RECOVERY_ROLLED_BACK;
	return rc;
}

static int recover(struct recovery *r, enum squib_recovery_action *action,
		   struct squib_error_detail *d)
{
	char why[SQUIB_DETAIL_MSG_MAX];
	int rc;

	/* A memory file that does not verify is the loader's to report. */
	if (squib_memfile_open(r->memory_path, &r->mem, &r->scratch))
		return 0;
	r->state_rc =
	    squib_state_load_file(r->state_path, SQUIB_ARCH_ANY, &r->state, NULL, &r->scratch);
	r->state_missing = r->state_rc == SQUIB_E_IO && r->scratch.os_errno == ENOENT;
	if (r->state_rc && !r->state_missing)
		return 0; /* damaged: not something a crash leaves; the loader reports it */
	if (!r->state_missing && !r->state.memory)
		return 0; /* a state-only file: the loader reports it */
	if (!r->state_missing &&
	    !squib_memfile_check_layout(r->mem, r->state.memory, &r->scratch)) {
		remove_stale(r->memory_tmp);
		if (!pending_rebase(r))
			remove_stale(r->state_tmp);
		*action = SQUIB_RECOVERY_CLEANED;
		return 0;
	}
	if (!temp_binds(r, why, sizeof(why)))
		return r->state_missing ? 0 : mismatch(r, why, d);
	if ((rc = roll_forward(r, d)))
		return rc;
	remove_stale(r->memory_tmp);
	*action = SQUIB_RECOVERY_ROLLED_FORWARD;
	return 0;
}

int squib_pair_recover(const char *state_path, const char *memory_path,
		       const struct squib_io_hooks *hooks, enum squib_recovery_action *action,
		       struct squib_error_detail *d)
{
	enum squib_recovery_action dummy;
	struct recovery *r;
	int rc;

	if (!action)
		action = &dummy;
	*action = SQUIB_RECOVERY_NONE;
	if (!state_path || !memory_path || !*state_path || !*memory_path)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "recovery needs both paths");
	/* The scratch detail is large: keep it off the stack. */
	if (!(r = calloc(1, sizeof(*r))))
		return squib_fail(d, SQUIB_E_NOMEM);
	r->state_path = state_path;
	r->memory_path = memory_path;
	r->hooks = hooks;
	r->state_tmp = squib_temp_path_of(state_path);
	r->memory_tmp = squib_temp_path_of(memory_path);
	if (!r->state_tmp || !r->memory_tmp)
		rc = squib_fail(d, SQUIB_E_NOMEM);
	/* After a roll-back the memory is the old file again and the state was never touched. */
	else if (!(rc = roll_back_rebase(r, action, d)) && *action == SQUIB_RECOVERY_NONE &&
		 (squib_path_exists(r->state_tmp) || squib_path_exists(r->memory_tmp)))
		rc = recover(r, action, d);
	recovery_release(r);
	free(r);
	return rc;
}
