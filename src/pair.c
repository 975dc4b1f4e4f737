/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pair recovery: an in-place rebase of the memory file that did not commit is
 * rolled back first (memfile_undo.c). Then, after a save stopped between its
 * two renames, the new memory file (id B) sits next to the old state file and
 * the new state waits in STATE.<B in hex>.tmp. Roll it forward, or say exactly
 * why the pair does not match. Under both destinations' locks, so no save runs
 * meanwhile. docs/DESIGN.md "Saving and loading a pair" has the protocol.
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

#include "atomic_internal.h"
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
	struct squib_dest_lock *sl, *ml; /* held: state, memory */
	const struct squib_io_hooks *hooks;
	char tmp_name[NAME_MAX + 1]; /* STATE.<B>.tmp */
	char tmp_path[PATH_MAX + NAME_MAX + 2];
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
}

/* Every temp of both destinations (the state's pair temps only with `pair`): under both locks,
 * no writer of either is alive. */
static int remove_temps(struct recovery *r, bool pair)
{
	return squib_temps(r->sl->dir_fd, r->sl->name,
			   SQUIB_TEMP_ORDINARY | (pair ? SQUIB_TEMP_PAIR : 0), true) +
	       squib_temps(r->ml->dir_fd, r->ml->name, SQUIB_TEMP_ORDINARY, true);
}

/* The state temp named by B, read only if it is a regular file of ours with one link. */
static int load_temp(struct recovery *r, struct squib_microvm_state *tmp)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int fd = squib_open_own_file(r->sl->dir_fd, r->tmp_name), rc;

	if (fd < 0)
		return squib_fail_msg(&r->scratch, SQUIB_E_IO, "%s",
				      errno == ENOENT  ? "it does not exist"
				      : errno == EPERM ? "it is not a file this user made"
				      : errno == ELOOP ? "it is a symbolic link"
						       : "it is not a regular file");
	rc = squib_state_read_fd(fd, &buf, &len, &r->scratch);
	close(fd);
	if (!rc)
		rc = squib_state_decode(buf, len, SQUIB_ARCH_ANY, tmp, NULL, &r->scratch);
	free(buf);
	return rc;
}

/* Does STATE.<B>.tmp complete the pair: ours, CRC-valid, and its MEMORY section is the file in
 * place? */
static bool temp_binds(struct recovery *r, char *why, size_t why_len)
{
	struct squib_microvm_state tmp;
	int rc;

	squib_state_init(&tmp, SQUIB_ARCH_ANY);
	rc = load_temp(r, &tmp);
	if (!rc && !tmp.memory)
		rc = squib_fail_msg(&r->scratch, SQUIB_E_PAIR_MISMATCH, "it names no memory file");
	if (!rc)
		rc = squib_memfile_check_layout(r->mem, tmp.memory, &r->scratch);
	if (rc)
		snprintf(why, why_len, "%.150s does not complete it (%s: %.250s)", r->tmp_path,
			 squib_error_name(rc), r->scratch.msg);
	squib_state_free(&tmp);
	return rc == 0;
}

/* fsync the memory's directory (the memory rename must be durable before the
 * state names it), rename STATE.<B>.tmp over the state, fsync the state's directory. */
static int roll_forward(struct recovery *r, struct squib_error_detail *d)
{
	int e = squib_hooked_fsync_dir_fd(r->hooks, r->ml->dir_fd, r->ml->dir);

	if (e)
		return squib_fail_errno(d, SQUIB_E_IO, -e);
	e = squib_hook(r->hooks, SQUIB_IO_RENAME, r->sl->dest);
	if (!e && renameat(r->sl->dir_fd, r->tmp_name, r->sl->dir_fd, r->sl->name) < 0)
		e = -errno;
	if (e)
		return squib_fail_errno(d, SQUIB_E_ATOMIC_COMMIT_FAILED, -e);
	e = squib_hooked_fsync_dir_fd(r->hooks, r->sl->dir_fd, r->sl->dir);
	return e ? squib_fail_errno(d, SQUIB_E_IO, -e) : 0;
}

/*
 * Is STATE.<A>.tmp, A the id the state names, a rebase's: the state
 * describing the result of rebasing this pair's chain (published under
 * another name, or the chain's base rebased in place)? It names the same id
 * (a rebase keeps the newest diff's) with another layout; a save's names a
 * fresh id. It completes that other pair once its memory is published, so
 * this pair's recovery must not remove it.
 */
static bool pending_rebase(struct recovery *r)
{
	struct squib_microvm_state tmp;
	bool pending;

	if (squib_temp_name(r->sl->name, r->state.memory->id, SQUIB_MEMORY_ID_SIZE, r->tmp_name,
			    sizeof(r->tmp_name), &r->scratch))
		return false;
	squib_state_init(&tmp, SQUIB_ARCH_ANY);
	pending = !load_temp(r, &tmp) && tmp.memory &&
		  !memcmp(tmp.memory->id, r->state.memory->id, SQUIB_MEMORY_ID_SIZE) &&
		  !squib_memory_layout_equal(tmp.memory, r->state.memory);
	squib_state_free(&tmp);
	return pending;
}

static int mismatch(struct recovery *r, const char *why, struct squib_error_detail *d)
{
	struct squib_id_hex b = squib_id_hex(squib_memfile_manifest(r->mem)->layout.id);

	if (r->state_missing)
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "no state file %s for memory file %s (id %s); %s",
				      r->sl->dest, r->ml->dest, b.s, why);
	if (!memcmp(r->state.memory->id, squib_memfile_manifest(r->mem)->layout.id,
		    SQUIB_MEMORY_ID_SIZE))
		return squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH,
				      "state file %s names memory file %s, and %s has that id but "
				      "not that layout (a rebase's result?); %s",
				      r->sl->dest, b.s, r->ml->dest, why);
	return squib_fail_msg(
	    d, SQUIB_E_PAIR_MISMATCH, "state file %s names memory file %s, but %s has id %s; %s",
	    r->sl->dest, squib_id_hex(r->state.memory->id).s, r->ml->dest, b.s, why);
}

/* The pair in place: 1 to go on deciding, 0 when it is the loader's to report. */
static int read_pair(struct recovery *r)
{
	/* A memory file that does not verify is the loader's to report. */
	if (squib_memfile_open(r->ml->dest, &r->mem, &r->scratch))
		return 0;
	r->state_rc =
	    squib_state_load_file(r->sl->dest, SQUIB_ARCH_ANY, &r->state, NULL, &r->scratch);
	r->state_missing = r->state_rc == SQUIB_E_IO && r->scratch.os_errno == ENOENT;
	if (r->state_rc && !r->state_missing)
		return 0; /* damaged: not something a crash leaves; the loader reports it */
	return r->state_missing || r->state.memory; /* a state-only file: the loader's */
}

static int recover(struct recovery *r, enum squib_recovery_action *action,
		   struct squib_error_detail *d)
{
	const uint8_t *b;
	char why[SQUIB_DETAIL_MSG_MAX];
	int rc;

	if (!read_pair(r))
		return 0;
	b = squib_memfile_manifest(r->mem)->layout.id;
	/* The whole layout decides: a rebase's result keeps the newest diff's id. */
	if (!r->state_missing &&
	    !squib_memfile_check_layout(r->mem, r->state.memory, &r->scratch)) {
		if (remove_temps(r, !pending_rebase(r)))
			*action = SQUIB_RECOVERY_CLEANED;
		return 0;
	}
	if ((rc = squib_temp_name(r->sl->name, b, SQUIB_MEMORY_ID_SIZE, r->tmp_name,
				  sizeof(r->tmp_name), d)))
		return rc;
	snprintf(r->tmp_path, sizeof(r->tmp_path), "%s/%s", r->sl->dir, r->tmp_name);
	if (!temp_binds(r, why, sizeof(why)))
		return r->state_missing ? 0 : mismatch(r, why, d);
	if ((rc = roll_forward(r, d)))
		return rc;
	remove_temps(r, true);
	*action = SQUIB_RECOVERY_ROLLED_FORWARD;
	return 0;
}

/* An in-place rebase of the memory file that did not commit is undone; the
 * state temp it prepared names what was never published. */
static int roll_back_rebase(struct recovery *r, enum squib_recovery_action *action,
			    struct squib_error_detail *d)
{
	bool rolled = false;
	int rc = squib_undo_recover_locked(r->ml, r->hooks, r->sl, &rolled, d);

	if (!rc && rolled)
		*action = SQUIB_RECOVERY_ROLLED_BACK;
	return rc;
}

int squib_pair_recover_locked(struct squib_dest_lock *state_lock,
			      struct squib_dest_lock *memory_lock,
			      const struct squib_io_hooks *hooks,
			      enum squib_recovery_action *action, struct squib_error_detail *d)
{
	struct recovery *r;
	int rc;

	*action = SQUIB_RECOVERY_NONE;
	/* The scratch detail is large: keep it off the stack. */
	if (!(r = calloc(1, sizeof(*r))))
		return squib_fail(d, SQUIB_E_NOMEM);
	r->sl = state_lock;
	r->ml = memory_lock;
	r->hooks = hooks;
	rc = roll_back_rebase(r, action, d);
	/* After a roll-back the memory is the old file again and the state was never touched;
	 * without temps there is nothing to complete (a pair about to be made may not match). */
	if (!rc && *action == SQUIB_RECOVERY_NONE &&
	    squib_temps(state_lock->dir_fd, state_lock->name, SQUIB_TEMP_ORDINARY | SQUIB_TEMP_PAIR,
			false) +
		squib_temps(memory_lock->dir_fd, memory_lock->name, SQUIB_TEMP_ORDINARY, false))
		rc = recover(r, action, d);
	recovery_release(r);
	free(r);
	return rc;
}

/* Any temp a save of this pair can leave (looked for without a lock: only to decide whether to take
 * one). */
static bool any_temps(const char *state_path, const char *memory_path)
{
	const char *paths[2] = {state_path, memory_path};
	bool found = false;

	for (int i = 0; i < 2 && !found; i++) {
		char *dir = squib_dir_of(paths[i]);
		const char *slash = strrchr(paths[i], '/');
		int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;

		if (fd >= 0) {
			found = squib_temps(fd, slash ? slash + 1 : paths[i],
					    SQUIB_TEMP_ORDINARY | SQUIB_TEMP_PAIR, false) > 0;
			close(fd);
		}
		free(dir);
	}
	return found;
}

int squib_pair_recover(const char *state_path, const char *memory_path,
		       const struct squib_io_hooks *hooks, enum squib_recovery_action *action,
		       struct squib_error_detail *d)
{
	enum squib_recovery_action dummy;
	struct squib_dest_lock sl, ml;
	int rc;

	if (!action)
		action = &dummy;
	*action = SQUIB_RECOVERY_NONE;
	if (!state_path || !memory_path || !*state_path || !*memory_path)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "recovery needs both paths");
	if (!any_temps(state_path, memory_path) && !squib_undo_present(memory_path))
		return 0; /* nothing a save or a rebase left behind */
	rc = squib_dest_lock(&sl, state_path, hooks, d);
	if (!rc && (rc = squib_dest_lock(&ml, memory_path, hooks, d)))
		squib_dest_unlock(&sl);
	if (rc) /* a save is running (busy); otherwise nothing here can be fixed by us */
		return rc == SQUIB_E_BUSY ? rc : 0;
	rc = squib_pair_recover_locked(&sl, &ml, hooks, action, d);
	squib_dest_unlock(&ml);
	squib_dest_unlock(&sl);
	return rc;
}
