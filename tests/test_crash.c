/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The crash matrix: a save runs in a forked child that is killed (SIGKILL,
 * from the atomic writer's hook) before every one of its I/O steps, or has
 * that one step fail with EIO or ENOSPC; then the parent loads the pair and
 * checks it is byte for byte the old pair or the new one (the new memory
 * file's random id aside), never a mix, and exactly the one the step implies.
 * Plus the recovery's own crash points, a real full filesystem (tmpfs), and
 * upstream's fault-injection integration tests.
 *
 * No test VM (whose vCPUs are threads) may be alive in this process when it
 * forks: each child builds its own.
 */
#include "savetest.h"

#include "pair.h" /* tests/support: memory files from this process's memory */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/crc64.h>
#include <squib/envelope.h>
#include <squib/memfile.h>

#define KiB	  1024ull
#define MiB	  (1024ull * 1024)
#define GPA	  0x80000000ull
#define MAX_STEPS 128

enum variant { BASE, OLD, NEW };
enum mode { DRY, KILL, FAIL };
enum outcome { ABSENT, OLD_PAIR, NEW_PAIR };

struct bytes {
	uint8_t *p;
	size_t n;
};

struct step_rec {
	enum squib_io_step step;
	char path[64];
};

/* What a child reports through its pipe after the save returned. */
struct child_result {
	int rc;
	int os_errno;
	bool memory_published, state_published;
};

struct env {
	struct savetest_dir t;
	char *base_state, *base_mem;
	uint8_t base_id[SQUIB_MEMORY_ID_SIZE];
	enum squib_snapshot_kind kind;
	bool has_old;
	bool by_parent_state; /* a Diff names its parent by state file, as `run --diff` does */
	struct bytes old_state, old_mem; /* the pair before the save */
	struct bytes ref_state, ref_mem; /* the pair the save produces (one random id) */
	int steps;
	struct step_rec step[MAX_STEPS];
	int mem_rename, state_rename; /* step indices */
	int matrix;		      /* trials run */
};

static uint64_t hp(void)
{
	return (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ---- deterministic VMs (no cmocka: also built in children) ------------------------------ */

static struct squib_testvm_config vm_config(void)
{
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 64 * KiB, 2);

	c.region_count = 2;
	c.regions[1] = (struct squib_mem_region){GPA + MiB, 32 * KiB};
	c.track_dirty_pages = c.with_tracker = true;
	return c;
}

/* Drop what the tracker saw so far (the fill of a base image). */
static int clear_tracker(struct squib_testvm *vm)
{
	for (uint32_t i = 0; i < 2; i++) {
		const struct squib_vm_region *r = squib_testvm_region(vm, i);
		struct squib_dirty_bitmap *bm = NULL;
		int rc = squib_dirty_bitmap_new(r->guest_addr, r->size, hp(), &bm, NULL);

		if (!rc)
			rc = squib_tracker_set_harvest(squib_testvm_trackers(vm), bm, NULL);
		squib_dirty_bitmap_free(bm);
		if (rc)
			return rc;
	}
	return 0;
}

static int make_vm(enum squib_snapshot_kind kind, enum variant v, struct squib_testvm **out)
{
	struct squib_testvm_config c = vm_config();
	int rc = squib_testvm_new(&c, out);

	if (rc)
		return rc;
	if (v == BASE || kind == SQUIB_SNAPSHOT_DIFF)
		squib_testvm_fill(*out, 0xba5e, 1);
	else
		squib_testvm_fill(*out, v == OLD ? 0x01d : 0x4e3, v == OLD ? 1 : 2);
	if (v == BASE || kind == SQUIB_SNAPSHOT_FULL || (rc = clear_tracker(*out)))
		return rc;
	if (v == OLD)
		return squib_testvm_write(*out, GPA + 3 * hp(), 0x33, hp());
	if ((rc = squib_testvm_write(*out, GPA + 1 * hp(), 0x11, hp())) ||
	    (rc = squib_testvm_write(*out, GPA + 5 * hp(), 0x55, 2 * hp())))
		return rc;
	return squib_testvm_write(*out, GPA + MiB + 2 * hp(), 0x22, hp());
}

static struct squib_save_request request(const struct env *e, const struct squib_io_hooks *h)
{
	struct squib_save_request r = SQUIB_SAVE_REQUEST_INIT(e->t.state, e->t.mem);

	r.kind = e->kind;
	r.parent_memory_id = e->kind == SQUIB_SNAPSHOT_DIFF ? e->base_id : NULL;
	if (e->kind == SQUIB_SNAPSHOT_DIFF && e->by_parent_state) {
		r.parent_memory_id = NULL;
		r.parent_state_path = e->base_state;
	}
	r.hooks = h;
	return r;
}

/* ---- the child ------------------------------------------------------------------------------- */

struct hook_ctx {
	enum mode mode;
	int at, err, n, fd;
};

static int child_hook(void *ctx, enum squib_io_step step, const char *path)
{
	struct hook_ctx *h = ctx;
	int i = h->n++;

	if (h->mode == DRY) {
		struct step_rec r = {.step = step};
		const char *b = strrchr(path, '/');

		snprintf(r.path, sizeof(r.path), "%s", b ? b + 1 : path);
		if (write(h->fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(3);
	}
	if (i == h->at && h->mode == KILL)
		kill(getpid(), SIGKILL);
	return i == h->at && h->mode == FAIL ? -h->err : 0;
}

/* What a child runs: the operation under test, with the trial's hooks; fills r. */
typedef void (*child_body)(const void *arg, const struct squib_io_hooks *h, struct child_result *r);

/* In the forked child: the body with the hook of the trial, its result to the pipe, exit. */
static void child(child_body body, const void *arg, enum mode mode, int at, int err, int fd)
{
	struct hook_ctx hc = {mode, at, err, 0, fd};
	struct squib_io_hooks h = {&hc, child_hook};
	struct child_result r = {0};

	body(arg, &h, &r);
	if (mode != DRY && write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(3);
	_exit(0);
}

/* Fork a body; collect what it wrote to the pipe (the steps of a dry run, else its result);
 * return its wait status. */
static int fork_trial(child_body body, const void *arg, enum mode mode, int at, int err,
		      struct step_rec *steps, int *nsteps, struct child_result *res)
{
	int fds[2], status;
	pid_t pid;
	size_t got = 0;
	ssize_t n;
	uint8_t buf[MAX_STEPS * sizeof(struct step_rec)];

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		child(body, arg, mode, at, err, fds[1]);
	}
	close(fds[1]);
	while ((n = read(fds[0], buf + got, sizeof(buf) - got)) > 0)
		got += (size_t)n;
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (mode == DRY) {
		*nsteps = (int)(got / sizeof(struct step_rec));
		memcpy(steps, buf, got);
	} else if (res) {
		*res = (struct child_result){.rc = 1};
		if (got == sizeof(*res))
			memcpy(res, buf, sizeof(*res));
	}
	return status;
}

static void save_body(const void *arg, const struct squib_io_hooks *h, struct child_result *r)
{
	const struct env *e = arg;
	struct squib_save_request req = request(e, h);
	struct squib_testvm *vm = NULL;
	struct squib_save_report rep;
	struct squib_error_detail d = {0};
	struct squib_vm v;

	if (make_vm(e->kind, NEW, &vm))
		_exit(2);
	v = squib_testvm_vm(vm);
	r->rc = squib_save(&v, &req, &rep, &d);
	r->os_errno = d.os_errno;
	r->memory_published = rep.memory_published;
	r->state_published = rep.state_published;
	squib_testvm_free(vm);
}

/* Fork a save; collect what it wrote to the pipe; return its wait status. */
static int run_child(struct env *e, enum mode mode, int at, int err, struct child_result *res)
{
	return fork_trial(save_body, e, mode, at, err, e->step, &e->steps, res);
}

/* ---- set-up ---------------------------------------------------------------------------------- */

static void read_or_empty(const char *path, struct bytes *b)
{
	free(b->p);
	*b = (struct bytes){0};
	if (squib_test_exists(path))
		savetest_read(path, &b->p, &b->n);
}

static void write_or_remove(const char *path, const struct bytes *b)
{
	unlink(path);
	if (b->p)
		assert_int_equal(squib_test_write_file(path, b->p, b->n), 0);
}

/* Put the old pair back and remove every temp. */
static void restore_old(struct env *e)
{
	write_or_remove(e->t.state, &e->old_state);
	write_or_remove(e->t.mem, &e->old_mem);
	savetest_remove_temps(&e->t);
}

static void save_in_parent(enum squib_snapshot_kind kind, enum variant v,
			   const struct squib_save_request *req, struct squib_save_report *rep)
{
	struct squib_testvm *vm = NULL;

	assert_int_equal(make_vm(kind, v, &vm), 0);
	savetest_save_ok(vm, req, rep);
	squib_testvm_free(vm);
}

static int find(const struct env *e, enum squib_io_step s, const char *name)
{
	for (int i = 0; i < e->steps; i++)
		if (e->step[i].step == s && !strcmp(e->step[i].path, name))
			return i;
	fail_msg("no %s of %s among %d steps", squib_io_step_name(s), name, e->steps);
	return -1;
}

static struct env *env_new_as(enum squib_snapshot_kind kind, bool has_old, bool by_parent_state)
{
	struct env *e = calloc(1, sizeof(*e));
	struct squib_save_report rep;
	struct squib_save_request req;

	assert_non_null(e);
	savetest_dir_init(&e->t);
	e->kind = kind;
	e->has_old = has_old;
	e->by_parent_state = by_parent_state;
	e->base_state = squib_test_path(e->t.dir, "base.snap");
	e->base_mem = squib_test_path(e->t.dir, "base.mem");
	req = (struct squib_save_request)SQUIB_SAVE_REQUEST_INIT(e->base_state, e->base_mem);
	save_in_parent(kind, BASE, &req, &rep);
	memcpy(e->base_id, rep.memory_id, sizeof(e->base_id));
	if (has_old) {
		req = request(e, NULL);
		save_in_parent(kind, OLD, &req, NULL);
	}
	read_or_empty(e->t.state, &e->old_state);
	read_or_empty(e->t.mem, &e->old_mem);
	/* The dry run: count and name the steps, and keep its pair as the reference. */
	assert_true(WIFEXITED(run_child(e, DRY, -1, 0, NULL)));
	read_or_empty(e->t.state, &e->ref_state);
	read_or_empty(e->t.mem, &e->ref_mem);
	assert_non_null(e->ref_state.p);
	assert_non_null(e->ref_mem.p);
	e->mem_rename = find(e, SQUIB_IO_RENAME, "x.mem");
	e->state_rename = find(e, SQUIB_IO_RENAME, "x.snap");
	restore_old(e);
	return e;
}

static struct env *env_new(enum squib_snapshot_kind kind, bool has_old)
{
	return env_new_as(kind, has_old, false);
}

static void env_free(struct env *e)
{
	savetest_dir_free(&e->t);
	free(e->base_state);
	free(e->base_mem);
	free(e->old_state.p);
	free(e->old_mem.p);
	free(e->ref_state.p);
	free(e->ref_mem.p);
	free(e);
}

/* ---- classification -------------------------------------------------------------------------- */

static bool same(const struct bytes *a, const struct bytes *b)
{
	return a->n == b->n && (a->n == 0 || !memcmp(a->p, b->p, a->n));
}

/* The reference memory file with another id: footer id and footer CRC patched. */
static bool is_ref_mem(const struct env *e, const struct bytes *m, uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	const size_t foot = SQUIB_MEMFILE_FOOTER_SIZE;
	struct bytes want = {malloc(e->ref_mem.n), e->ref_mem.n};
	uint8_t *f;
	uint64_t crc;
	bool eq;

	assert_non_null(want.p);
	if (m->n != e->ref_mem.n || m->n < foot) {
		free(want.p);
		return false;
	}
	memcpy(want.p, e->ref_mem.p, want.n);
	f = want.p + want.n - foot;
	memcpy(id, m->p + m->n - foot + 24, SQUIB_MEMORY_ID_SIZE);
	memcpy(f + 24, id, SQUIB_MEMORY_ID_SIZE);
	crc = squib_crc64(0, f, foot - 8);
	for (int i = 0; i < 8; i++)
		f[foot - 8 + i] = (uint8_t)(crc >> (8 * i));
	eq = same(&want, m);
	free(want.p);
	return eq;
}

/* The reference state file naming memory id `id` instead. */
static bool is_ref_state(const struct env *e, const struct bytes *s,
			 const uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	struct squib_microvm_state st;
	struct bytes want = {0};
	bool eq;

	assert_int_equal(
	    squib_state_decode(e->ref_state.p, e->ref_state.n, SQUIB_ARCH_ANY, &st, NULL, NULL), 0);
	memcpy(st.memory->id, id, SQUIB_MEMORY_ID_SIZE);
	assert_int_equal(squib_state_encode(&st, &want.p, &want.n, NULL), 0);
	eq = same(&want, s);
	free(want.p);
	squib_state_free(&st);
	return eq;
}

/* Which pair is on disk: the old one, the new one, or (first save) none; fails on anything else. */
static enum outcome classify(const struct env *e, int trial)
{
	struct bytes s = {0}, m = {0};
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	enum outcome o = ABSENT;

	read_or_empty(e->t.state, &s);
	read_or_empty(e->t.mem, &m);
	if (!e->has_old && !s.p && !m.p)
		o = ABSENT;
	else if (e->has_old && same(&s, &e->old_state) && same(&m, &e->old_mem))
		o = OLD_PAIR;
	else if (s.p && m.p && is_ref_mem(e, &m, id) && is_ref_state(e, &s, id))
		o = NEW_PAIR;
	else
		fail_msg("trial %d: the pair on disk is neither the old nor the new one", trial);
	free(s.p);
	free(m.p);
	return o;
}

/* Load into a fresh VM: the old or new pair loads, no pair is ENOENT; no temp survives a good pair.
 */
static void load_and_check(const struct env *e, enum outcome o, int trial)
{
	struct squib_testvm_config c = vm_config();
	struct squib_testvm *rvm = savetest_restore_vm(&c);
	struct squib_vm v = squib_testvm_vm(rvm);
	const char *chain[] = {e->base_mem};
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(e->t.state, e->t.mem);
	struct squib_load_result res;
	struct squib_error_detail d;
	int rc;

	lr.chain = chain;
	lr.chain_len = e->kind == SQUIB_SNAPSHOT_DIFF;
	rc = squib_load(&v, &lr, &res, &d);
	if (o == ABSENT) {
		assert_int_equal(rc, SQUIB_E_IO);
		assert_int_equal(d.os_errno, ENOENT);
	} else if (rc) {
		fail_msg("trial %d: load failed: %s", trial, savetest_message(&d));
	} else {
		assert_int_equal(savetest_temps(&e->t), 0);
		squib_load_result_free(&res);
	}
	squib_testvm_free(rvm);
}

/*
 * Stopped before step `at`, or with step `at` failed: the pair is the new one
 * exactly when the memory rename ran (a failed rename did not), whatever
 * happened after it; before that it is the old one (or none, for a first save).
 */
static enum outcome expected(const struct env *e, int at)
{
	if (at > e->mem_rename)
		return NEW_PAIR;
	return e->has_old ? OLD_PAIR : ABSENT;
}

static const char *trial_name(const struct env *e, enum mode mode, int at, int err)
{
	static char buf[128];

	snprintf(buf, sizeof(buf), "%s before step %d (%s %s)",
		 mode == KILL ? "SIGKILL"
		 : err == EIO ? "EIO"
			      : "ENOSPC",
		 at, at < e->steps ? squib_io_step_name(e->step[at].step) : "none",
		 at < e->steps ? e->step[at].path : "");
	return buf;
}

static void check_child(const struct env *e, enum mode mode, int at, int err, int status,
			const struct child_result *r)
{
	if (mode == KILL && at < e->steps) {
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		return;
	}
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	if (at >= e->steps) {
		assert_int_equal(r->rc, 0);
		return;
	}
	/* The injected error is reported, with its errno. */
	if (r->rc >= 0 || r->os_errno != err)
		fail_msg("%s: the save returned %d (errno %d)", trial_name(e, mode, at, err), r->rc,
			 r->os_errno);
	assert_int_equal(r->memory_published, at > e->mem_rename);
}

/* One run of the save stopped at `at`; then the load, then the pair on disk. */
static void trial(struct env *e, enum mode mode, int at, int err)
{
	struct child_result r;
	enum outcome want = expected(e, at);
	int status, id = e->matrix++;

	restore_old(e);
	status = run_child(e, mode, at, err, &r);
	check_child(e, mode, at, err, status, &r);
	load_and_check(e, want, id);
	if (classify(e, id) != want)
		fail_msg("trial %d, %s: the pair is the %s one", id, trial_name(e, mode, at, err),
			 want == NEW_PAIR ? "old (or no)" : "new");
}

/* Every step killed, and failed once with EIO and once with ENOSPC; the last "step" is none. */
static int run_matrix_as(enum squib_snapshot_kind kind, bool has_old, bool by_parent_state)
{
	struct env *e = env_new_as(kind, has_old, by_parent_state);
	int trials;

	for (int at = 0; at <= e->steps; at++)
		trial(e, KILL, at, 0);
	for (int at = 0; at < e->steps; at++) {
		trial(e, FAIL, at, EIO);
		trial(e, FAIL, at, ENOSPC);
	}
	printf("crash matrix (%s%s%s): %d steps x {SIGKILL, EIO, ENOSPC}: %d trials, memory rename "
	       "at step %d, state rename at step %d\n",
	       kind == SQUIB_SNAPSHOT_FULL ? "full" : "diff", has_old ? "" : ", first save",
	       by_parent_state ? ", parent by state file" : "", e->steps, e->matrix, e->mem_rename,
	       e->state_rename);
	fflush(stdout);
	assert_int_equal(e->matrix, 3 * e->steps + 1);
	trials = e->matrix;
	env_free(e);
	return trials;
}

static void run_matrix(enum squib_snapshot_kind kind, bool has_old)
{
	run_matrix_as(kind, has_old, false);
}

static void test_should_keep_the_old_or_the_new_full_pair_at_every_step(void **state)
{
	(void)state;
	run_matrix(SQUIB_SNAPSHOT_FULL, true);
}

static void test_should_keep_the_old_or_the_new_diff_pair_at_every_step(void **state)
{
	(void)state;
	run_matrix(SQUIB_SNAPSHOT_DIFF, true);
}

static void test_should_leave_no_pair_or_the_new_pair_when_a_first_save_stops(void **state)
{
	(void)state;
	run_matrix(SQUIB_SNAPSHOT_FULL, false);
}

/* ---- recovery
 * ------------------------------------------------------------------------------------ */

struct load_kill {
	int at, n;
};

static int load_hook(void *ctx, enum squib_io_step step, const char *path)
{
	struct load_kill *k = ctx;

	(void)step;
	(void)path;
	if (k->n++ == k->at)
		kill(getpid(), SIGKILL);
	return 0;
}

/* Load in a child whose recovery is killed before its step `at`; returns the steps it saw. */
static int load_killed_at(const struct env *e, int at)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct load_kill k = {at, 0};
		struct squib_io_hooks h = {&k, load_hook};
		struct squib_testvm_config c = vm_config();
		struct squib_testvm *rvm = NULL;
		struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(e->t.state, e->t.mem);
		struct squib_load_result res;
		struct squib_vm v;

		c.no_memory = true;
		c.with_tracker = false;
		c.region_count = 0;
		if (squib_testvm_new(&c, &rvm))
			_exit(2);
		v = squib_testvm_vm(rvm);
		lr.hooks = &h;
		_exit(squib_load(&v, &lr, &res, NULL) ? 1 : 100 + k.n);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		return -1;
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) >= 100);
	return WEXITSTATUS(status) - 100;
}

/* Killed between the two renames: the new memory, the old state, and STATE.tmp naming the new
 * memory. Load rolls forward, and so does a load killed at any step of the roll-forward. */
static void test_should_roll_forward_a_save_killed_between_the_renames(void **state)
{
	struct env *e = env_new(SQUIB_SNAPSHOT_FULL, true);
	struct squib_testvm_config c = vm_config();
	struct squib_testvm *rvm;
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(e->t.state, e->t.mem);
	struct squib_load_result res;
	struct bytes s = {0};
	int steps;

	(void)state;
	restore_old(e);
	assert_true(WIFSIGNALED(run_child(e, KILL, e->state_rename, 0, NULL)));
	read_or_empty(e->t.state, &s);
	assert_true(same(&s, &e->old_state));
	assert_int_equal(squib_test_temps(e->t.state, NULL), 1);
	assert_int_equal(squib_test_temps(e->t.mem, NULL), 0);
	/* The roll-forward's own steps: the two locks, memory dir sync, rename, state dir sync. */
	steps = load_killed_at(e, 1000);
	assert_int_equal(steps, 5);
	for (int at = 0; at < steps; at++) {
		restore_old(e);
		assert_true(WIFSIGNALED(run_child(e, KILL, e->state_rename, 0, NULL)));
		assert_int_equal(load_killed_at(e, at), -1);
		savetest_load_ok(&c, &lr, &rvm, &res);
		assert_true(res.recovery == SQUIB_RECOVERY_ROLLED_FORWARD ||
			    (at > 3 && res.recovery == SQUIB_RECOVERY_NONE));
		assert_int_equal(classify(e, at), NEW_PAIR);
		assert_int_equal(savetest_temps(&e->t), 0);
		squib_load_result_free(&res);
		squib_testvm_free(rvm);
	}
	/* And with no crash in the load: rolled forward, temp gone. */
	restore_old(e);
	assert_true(WIFSIGNALED(run_child(e, KILL, e->state_rename, 0, NULL)));
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_int_equal(res.recovery, SQUIB_RECOVERY_ROLLED_FORWARD);
	assert_int_equal(savetest_layer_files(&e->t), 0);
	assert_int_equal(classify(e, 0), NEW_PAIR);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	free(s.p);
	env_free(e);
}

/* A state temp that does not bind the memory in place is no recovery: the mismatch names both ids.
 */
static void test_should_report_a_mismatch_that_no_temp_explains(void **state)
{
	struct env *e = env_new(SQUIB_SNAPSHOT_FULL, true);
	struct squib_testvm_config c = vm_config();
	struct squib_testvm *rvm;
	struct squib_vm v;
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(e->t.state, e->t.mem);
	struct squib_load_result res;
	struct squib_error_detail d;
	uint8_t a[SQUIB_MEMORY_ID_SIZE], b[SQUIB_MEMORY_ID_SIZE];
	char ha[33], hb[33];

	(void)state;
	restore_old(e);
	assert_true(WIFSIGNALED(run_child(e, KILL, e->state_rename, 0, NULL)));
	char *temp = savetest_state_temp(&e->t);

	assert_non_null(temp);
	savetest_state_memory_id(e->t.state, a);
	savetest_state_memory_id(temp, b);
	/* Damage the temp: its CRC fails, so it cannot be trusted to complete the pair. */
	{
		struct bytes tmp = {0};

		read_or_empty(temp, &tmp);
		tmp.p[tmp.n / 2] ^= 1;
		assert_int_equal(squib_test_write_file(temp, tmp.p, tmp.n), 0);
		free(tmp.p);
	}
	squib_memfile_id_hex(a, ha);
	squib_memfile_id_hex(b, hb);
	rvm = savetest_restore_vm(&c); /* vCPU threads: only once no more forks follow */
	v = squib_testvm_vm(rvm);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d.msg, ha));
	assert_non_null(strstr(d.msg, hb));
	assert_non_null(strstr(d.msg, "SQUIB_E_CRC_MISMATCH"));
	assert_true(squib_test_exists(temp)); /* nothing removed */
	assert_string_equal(squib_testvm_log(rvm), "");
	squib_testvm_free(rvm);
	/* Without recovery even an intact temp is not used. */
	restore_old(e);
	assert_true(WIFSIGNALED(run_child(e, KILL, e->state_rename, 0, NULL)));
	rvm = savetest_restore_vm(&c);
	v = squib_testvm_vm(rvm);
	lr.no_recovery = true;
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_PAIR_MISMATCH);
	assert_int_equal(squib_test_temps(e->t.state, NULL), 1);
	squib_testvm_free(rvm);
	free(temp);
	env_free(e);
}

/* Killed before the memory rename: the old pair is good, and recovery removes both temps. */
static void test_should_remove_stale_temps_once_the_pair_is_known_good(void **state)
{
	struct env *e = env_new(SQUIB_SNAPSHOT_FULL, true);
	enum squib_recovery_action a;
	struct squib_error_detail d;

	(void)state;
	restore_old(e);
	assert_true(WIFSIGNALED(run_child(e, KILL, e->mem_rename, 0, NULL)));
	assert_int_equal(squib_test_temps(e->t.state, NULL), 1);
	assert_int_equal(squib_test_temps(e->t.mem, NULL), 1);
	assert_int_equal(squib_pair_recover(e->t.state, e->t.mem, NULL, &a, &d), 0);
	assert_int_equal(a, SQUIB_RECOVERY_CLEANED);
	assert_int_equal(savetest_layer_files(&e->t), 0);
	assert_int_equal(classify(e, 0), OLD_PAIR);
	assert_int_equal(squib_pair_recover(e->t.state, e->t.mem, NULL, &a, &d), 0);
	assert_int_equal(a, SQUIB_RECOVERY_NONE); /* nothing left to do */
	assert_int_equal(squib_pair_recover(NULL, e->t.mem, NULL, &a, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_pair_recover(e->t.state, "", NULL, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	env_free(e);
}

/* A save that finds a half-published pair rolls it forward before it overwrites the temps. */
static void test_should_recover_before_saving_over_a_half_published_pair(void **state)
{
	struct env *e = env_new(SQUIB_SNAPSHOT_FULL, true);
	struct squib_testvm *vm = NULL;
	struct squib_save_request req = request(e, NULL);
	struct squib_save_report rep;

	(void)state;
	restore_old(e);
	assert_true(WIFSIGNALED(run_child(e, KILL, e->state_rename, 0, NULL)));
	assert_int_equal(make_vm(e->kind, OLD, &vm), 0);
	savetest_save_ok(vm, &req, &rep);
	assert_true(rep.recovered);
	assert_int_equal(savetest_layer_files(&e->t), 0);
	squib_testvm_free(vm);
	env_free(e);
}

/* ---- upstream integration.rs fault injection
 * ------------------------------------------------------- */

static void test_should_leave_the_previous_pair_intact_when_the_first_rename_fails(void **state)
{
	struct env *e = env_new(SQUIB_SNAPSHOT_FULL, true);
	struct child_result r;
	struct bytes s = {0}, m = {0};

	(void)state;
	restore_old(e);
	assert_true(WIFEXITED(run_child(e, FAIL, e->mem_rename, EIO, &r)));
	assert_int_equal(r.rc, SQUIB_E_ATOMIC_COMMIT_FAILED);
	assert_false(r.memory_published || r.state_published);
	read_or_empty(e->t.state, &s);
	read_or_empty(e->t.mem, &m);
	assert_true(same(&s, &e->old_state) && same(&m, &e->old_mem));
	assert_int_equal(savetest_layer_files(&e->t), 0);
	free(s.p);
	free(m.p);
	env_free(e);
}

static void test_should_complete_the_pair_when_the_second_rename_fails(void **state)
{
	struct env *e = env_new(SQUIB_SNAPSHOT_FULL, true);
	struct child_result r;
	struct bytes s = {0};

	(void)state;
	restore_old(e);
	assert_true(WIFEXITED(run_child(e, FAIL, e->state_rename, EIO, &r)));
	assert_int_equal(r.rc, SQUIB_E_ATOMIC_COMMIT_FAILED);
	assert_true(r.memory_published);
	assert_false(r.state_published);
	read_or_empty(e->t.state, &s);
	assert_true(same(&s, &e->old_state)); /* upstream left this mismatched pair for good */
	assert_int_equal(squib_test_temps(e->t.state, NULL), 1);
	load_and_check(e, NEW_PAIR, 0);
	assert_int_equal(classify(e, 0), NEW_PAIR);
	free(s.p);
	env_free(e);
}

/* ---- a real full filesystem
 * ---------------------------------------------------------------------------- */

static void test_should_keep_the_previous_pair_on_a_full_filesystem(void **state)
{
	struct savetest_dir t;
	char *mnt, *snap, *mem;
	struct squib_testvm_config small = squib_testvm_config_simple(GPA, 64 * KiB, 1);
	struct squib_testvm_config big = squib_testvm_config_simple(GPA, 512 * KiB, 1);
	struct squib_testvm *vm, *rvm;
	struct squib_save_request req;
	struct squib_load_request lr;
	struct squib_load_result res;
	struct squib_error_detail d;
	struct bytes s0 = {0}, m0 = {0}, s1 = {0}, m1 = {0};
	struct squib_vm v;
	int rc;

	(void)state;
	savetest_dir_init(&t);
	mnt = squib_test_path(t.dir, "mnt");
	snap = squib_test_path(mnt, "x.snap");
	mem = squib_test_path(mnt, "x.mem");
	assert_int_equal(mkdir(mnt, 0700), 0);
	if (mount("squib-test", mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k") < 0) {
		printf(
		    "SKIP: cannot mount a 256 KiB tmpfs (%s): the real out-of-space test did not "
		    "run\n",
		    strerror(errno));
		savetest_dir_free(&t);
		free(mnt);
		free(snap);
		free(mem);
		skip();
	}
	req = (struct squib_save_request)SQUIB_SAVE_REQUEST_INIT(snap, mem);
	lr = (struct squib_load_request)SQUIB_LOAD_REQUEST_INIT(snap, mem);
	vm = savetest_vm(&small);
	squib_testvm_fill(vm, 1, 1);
	savetest_save_ok(vm, &req, NULL);
	squib_testvm_free(vm);
	read_or_empty(snap, &s0);
	read_or_empty(mem, &m0);
	vm = savetest_vm(&big); /* 512 KiB of data into what is left of 256 KiB */
	squib_testvm_fill(vm, 2, 1);
	v = squib_testvm_vm(vm);
	rc = squib_save(&v, &req, NULL, &d);
	assert_int_equal(rc, SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, ENOSPC);
	squib_testvm_free(vm);
	read_or_empty(snap, &s1);
	read_or_empty(mem, &m1);
	assert_true(same(&s0, &s1) && same(&m0, &m1));
	assert_int_equal(squib_test_layer_files(snap, NULL) + squib_test_layer_files(mem, NULL), 0);
	savetest_load_ok(&small, &lr, &rvm, &res); /* and it still loads */
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	assert_int_equal(umount2(mnt, MNT_DETACH), 0);
	free(s0.p);
	free(m0.p);
	free(s1.p);
	free(m1.p);
	savetest_dir_free(&t);
	free(mnt);
	free(snap);
	free(mem);
}

/* ---- the rebase matrix ----------------------------------------------------------------------
 *
 * The chain base.mem (Full) <- d.mem (Diff, with its state d.snap) is rebased by a forked child
 * that is killed before each of its I/O steps, or has one step fail with EIO or ENOSPC; four
 * commands: --out merged.mem, --in-place, and each with --state d.snap. Then the parent runs
 * what a load runs (the pair recovery of the new pair, which first rolls back an in-place
 * rebase that did not commit) and compares every file byte for byte with the files before the
 * rebase and with the files the rebase produces (it is deterministic: the result keeps d.mem's
 * id): the old files or the new ones, never a mix, and the new ones exactly when the commit
 * step (the rename of merged.mem, or the removal of base.mem.undo) ran. The pair (or chain)
 * that should be there is then loaded.
 */

enum rb_cmd { RB_OUT, RB_IN_PLACE, RB_OUT_STATE, RB_IN_PLACE_STATE, RB_CMD_COUNT };

static const char *const rb_cmd_name[RB_CMD_COUNT] = {"--out", "--in-place", "--out --state",
						      "--in-place --state"};

struct rb_env {
	struct savetest_dir t;
	enum rb_cmd cmd;
	char *base_state, *base_mem, *d_state, *d_mem, *out, *undo;
	struct bytes old_base, old_d_state, old_d_mem; /* before */
	struct bytes ref_target, ref_d_state;	       /* after the dry run */
	int steps, commit, matrix;
	struct step_rec step[MAX_STEPS];
};

static bool rb_in_place(const struct rb_env *e)
{
	return e->cmd == RB_IN_PLACE || e->cmd == RB_IN_PLACE_STATE;
}

static bool rb_state(const struct rb_env *e)
{
	return e->cmd == RB_OUT_STATE || e->cmd == RB_IN_PLACE_STATE;
}

static const char *rb_target(const struct rb_env *e)
{
	return rb_in_place(e) ? e->base_mem : e->out;
}

static void rebase_body(const void *arg, const struct squib_io_hooks *h, struct child_result *r)
{
	const struct rb_env *e = arg;
	struct squib_memfile_rebase_options o = {.state_path = rb_state(e) ? e->d_state : NULL,
						 .hooks = h};
	const char *diffs[1] = {e->d_mem};
	struct squib_error_detail d = {0};

	r->rc = squib_memfile_rebase(e->base_mem, diffs, 1, rb_in_place(e) ? NULL : e->out, &o,
				     NULL, &d);
	r->os_errno = d.os_errno;
}

/* Files in dir named PREFIX*SUFFIX (temps: NAME.<hex>.tmp; lock files: .NAME.squib-lock);
 * removed with `remove`. */
static int litter(const char *dir, const char *prefix, const char *suffix, bool remove)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(dp);
	while ((de = readdir(dp))) {
		size_t l = strlen(de->d_name), pl = strlen(prefix), sl = strlen(suffix);

		if (l <= pl + sl || strncmp(de->d_name, prefix, pl) ||
		    strcmp(de->d_name + l - sl, suffix))
			continue;
		n++;
		if (remove)
			assert_int_equal(unlinkat(dirfd(dp), de->d_name, 0), 0);
	}
	closedir(dp);
	return n;
}

/* Does a temp of d.snap exist (the rebase's state temp)? */
static bool rb_state_temp(const struct rb_env *e)
{
	return litter(e->t.dir, "d.snap.", ".tmp", false) > 0;
}

/* Every file as it was before the rebase; no temp, no log. */
static void rb_restore(const struct rb_env *e)
{
	write_or_remove(e->base_mem, &e->old_base);
	write_or_remove(e->d_state, &e->old_d_state);
	write_or_remove(e->d_mem, &e->old_d_mem);
	unlink(e->out);
	unlink(e->undo);
	litter(e->t.dir, "", ".tmp", true);
}

static int rb_find(const struct rb_env *e, enum squib_io_step s, const char *name)
{
	for (int i = 0; i < e->steps; i++)
		if (e->step[i].step == s && !strcmp(e->step[i].path, name))
			return i;
	fail_msg("no %s of %s among %d steps", squib_io_step_name(s), name, e->steps);
	return -1;
}

static struct rb_env *rb_env_new(enum rb_cmd cmd)
{
	struct rb_env *e = calloc(1, sizeof(*e));
	struct squib_save_request req;
	struct squib_save_report rep;

	assert_non_null(e);
	savetest_dir_init(&e->t);
	e->cmd = cmd;
	e->base_state = squib_test_path(e->t.dir, "base.snap");
	e->base_mem = squib_test_path(e->t.dir, "base.mem");
	e->d_state = squib_test_path(e->t.dir, "d.snap");
	e->d_mem = squib_test_path(e->t.dir, "d.mem");
	e->out = squib_test_path(e->t.dir, "merged.mem");
	e->undo = squib_memfile_undo_path(e->base_mem);
	req = (struct squib_save_request)SQUIB_SAVE_REQUEST_INIT(e->base_state, e->base_mem);
	save_in_parent(SQUIB_SNAPSHOT_FULL, BASE, &req, &rep);
	req = (struct squib_save_request)SQUIB_SAVE_REQUEST_INIT(e->d_state, e->d_mem);
	req.kind = SQUIB_SNAPSHOT_DIFF;
	req.parent_memory_id = rep.memory_id;
	save_in_parent(SQUIB_SNAPSHOT_DIFF, NEW, &req, NULL);
	read_or_empty(e->base_mem, &e->old_base);
	read_or_empty(e->d_state, &e->old_d_state);
	read_or_empty(e->d_mem, &e->old_d_mem);
	assert_true(WIFEXITED(fork_trial(rebase_body, e, DRY, -1, 0, e->step, &e->steps, NULL)));
	read_or_empty(rb_target(e), &e->ref_target);
	read_or_empty(e->d_state, &e->ref_d_state);
	assert_non_null(e->ref_target.p);
	assert_false(same(&e->ref_target, &e->old_base));
	assert_true(same(&e->ref_d_state, &e->old_d_state) != rb_state(e));
	e->commit = rb_in_place(e) ? rb_find(e, SQUIB_IO_UNLINK, "base.mem.undo")
				   : rb_find(e, SQUIB_IO_RENAME, "merged.mem");
	rb_restore(e);
	return e;
}

static void rb_env_free(struct rb_env *e)
{
	struct bytes *b[] = {&e->old_base, &e->old_d_state, &e->old_d_mem, &e->ref_target,
			     &e->ref_d_state};

	for (size_t i = 0; i < sizeof(b) / sizeof(b[0]); i++)
		free(b[i]->p);
	free(e->base_state);
	free(e->base_mem);
	free(e->d_state);
	free(e->d_mem);
	free(e->out);
	free(e->undo);
	savetest_dir_free(&e->t);
	free(e);
}

/* What a load of the new pair (or of the old chain) runs first. */
static void rb_recover(const struct rb_env *e, int trial)
{
	struct squib_error_detail d;
	int rc = rb_state(e)	  ? squib_pair_recover(e->d_state, rb_target(e), NULL, NULL, &d)
		 : rb_in_place(e) ? squib_memfile_rebase_recover(e->base_mem, NULL, NULL, &d)
				  : 0;

	if (rc)
		fail_msg("trial %d: recovery failed: %s", trial, savetest_message(&d));
	assert_false(squib_test_exists(e->undo));
}

/* The old files or the new ones, byte for byte; fails on anything else. */
static enum outcome rb_classify(const struct rb_env *e, int trial)
{
	struct bytes base = {0}, ds = {0}, dm = {0}, out = {0};
	enum outcome o = ABSENT;

	read_or_empty(e->base_mem, &base);
	read_or_empty(e->d_state, &ds);
	read_or_empty(e->d_mem, &dm);
	read_or_empty(e->out, &out);
	if (!same(&dm, &e->old_d_mem))
		fail_msg("trial %d: the diff changed", trial);
	if (same(&base, &e->old_base) && same(&ds, &e->old_d_state) && !out.p)
		o = OLD_PAIR;
	else if (same(rb_in_place(e) ? &base : &out, &e->ref_target) &&
		 same(&ds, &e->ref_d_state) &&
		 (rb_in_place(e) ? !out.p : same(&base, &e->old_base)))
		o = NEW_PAIR;
	else
		fail_msg("trial %d (%s): the files are neither the old nor the new ones", trial,
			 rb_cmd_name[e->cmd]);
	free(base.p);
	free(ds.p);
	free(dm.p);
	free(out.p);
	return o;
}

/* The old chain loads as before; the new pair loads (with --state), or the result verifies. */
static void rb_load(const struct rb_env *e, enum outcome o, int trial)
{
	struct squib_testvm_config c = vm_config();
	const char *chain[] = {e->base_mem};
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(e->d_state, e->d_mem);
	struct squib_load_result res;
	struct squib_error_detail d;
	struct squib_testvm *rvm;
	struct squib_vm v;
	int rc;

	if (o == NEW_PAIR && !rb_state(e)) {
		assert_int_equal(squib_memfile_verify(rb_target(e), true, NULL, NULL), 0);
		return;
	}
	if (o == NEW_PAIR) {
		lr.memory_path = rb_target(e);
	} else {
		lr.chain = chain;
		lr.chain_len = 1;
	}
	rvm = savetest_restore_vm(&c);
	v = squib_testvm_vm(rvm);
	rc = squib_load(&v, &lr, &res, &d);
	if (rc)
		fail_msg("trial %d (%s): load failed: %s", trial, rb_cmd_name[e->cmd],
			 savetest_message(&d));
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
}

static void rb_trial(struct rb_env *e, enum mode mode, int at, int err)
{
	struct child_result r;
	enum outcome want = at > e->commit ? NEW_PAIR : OLD_PAIR, got;
	int status, id = e->matrix++;

	rb_restore(e);
	status = fork_trial(rebase_body, e, mode, at, err, e->step, &e->steps, &r);
	if (mode == KILL && at < e->steps) {
		assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	} else {
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		if (at >= e->steps)
			assert_int_equal(r.rc, 0);
		else if (r.rc >= 0 || r.os_errno != err)
			fail_msg("trial %d: the rebase returned %d (errno %d)", id, r.rc,
				 r.os_errno);
	}
	rb_recover(e, id);
	got = rb_classify(e, id);
	if (got != want)
		fail_msg("trial %d (%s), %s before step %d (%s %s): the %s files", id,
			 rb_cmd_name[e->cmd], mode == KILL ? "SIGKILL" : strerror(err), at,
			 at < e->steps ? squib_io_step_name(e->step[at].step) : "none",
			 at < e->steps ? e->step[at].path : "", want == NEW_PAIR ? "old" : "new");
	rb_load(e, got, id);
}

static int rb_matrix(enum rb_cmd cmd)
{
	struct rb_env *e = rb_env_new(cmd);
	int trials;

	for (int at = 0; at <= e->steps; at++)
		rb_trial(e, KILL, at, 0);
	for (int at = 0; at < e->steps; at++) {
		rb_trial(e, FAIL, at, EIO);
		rb_trial(e, FAIL, at, ENOSPC);
	}
	printf("crash matrix (rebase %s): %d steps x {SIGKILL, EIO, ENOSPC}: %d trials, commit at "
	       "step %d (%s %s)\n",
	       rb_cmd_name[cmd], e->steps, e->matrix, e->commit,
	       squib_io_step_name(e->step[e->commit].step), e->step[e->commit].path);
	fflush(stdout);
	assert_int_equal(e->matrix, 3 * e->steps + 1);
	trials = e->matrix;
	rb_env_free(e);
	return trials;
}

static void test_should_keep_the_old_or_the_new_file_when_a_rebase_out_stops(void **state)
{
	(void)state;
	rb_matrix(RB_OUT);
}

static void test_should_keep_the_old_or_the_new_base_when_an_in_place_rebase_stops(void **state)
{
	(void)state;
	rb_matrix(RB_IN_PLACE);
}

static void test_should_keep_the_old_or_the_new_pair_when_a_rebase_with_state_stops(void **state)
{
	(void)state;
	rb_matrix(RB_OUT_STATE);
	rb_matrix(RB_IN_PLACE_STATE);
}

static void recover_body(const void *arg, const struct squib_io_hooks *h, struct child_result *r)
{
	const struct rb_env *e = arg;
	struct squib_error_detail d = {0};

	r->rc = squib_pair_recover(e->d_state, e->base_mem, h, NULL, &d);
	r->os_errno = d.os_errno;
}

/* An in-place --state rebase killed just before its commit leaves a complete new base, a
 * complete STATE.tmp and the undo log. The roll-back (a load's recovery), itself killed before
 * each of its steps, is rolled back again by the next one: the old files, byte for byte. */
static void test_should_roll_back_again_after_a_roll_back_is_killed(void **state)
{
	struct rb_env *e = rb_env_new(RB_IN_PLACE_STATE);
	struct step_rec steps[MAX_STEPS];
	int nsteps = 0, at;

	(void)state;
	for (at = 0;; at++) {
		rb_restore(e);
		assert_true(WIFSIGNALED(fork_trial(rebase_body, e, KILL, e->commit, 0, e->step,
						   &e->steps, NULL)));
		assert_true(squib_test_exists(e->undo) && rb_state_temp(e));
		if (at == 0) { /* the roll-back's own steps */
			assert_true(WIFEXITED(
			    fork_trial(recover_body, e, DRY, -1, 0, steps, &nsteps, NULL)));
			assert_true(nsteps >= 4);
			assert_int_equal(steps[nsteps - 2].step, SQUIB_IO_UNLINK);
			assert_int_equal(rb_classify(e, at), OLD_PAIR);
			continue;
		}
		if (at > nsteps)
			break;
		assert_true(WIFSIGNALED(
		    fork_trial(recover_body, e, KILL, at - 1, 0, steps, &nsteps, NULL)));
		rb_recover(e, at);
		assert_int_equal(rb_classify(e, at), OLD_PAIR);
		assert_false(rb_state_temp(e));
	}
	printf("roll-back killed before each of its %d steps, then recovered: the old files\n",
	       nsteps);
	rb_env_free(e);
}

/* A base whose undo log no longer belongs to it (a save renamed another file over it since) is
 * not "rolled back": the log is refused and nothing is touched. */
static void test_should_not_apply_an_undo_log_to_another_file(void **state)
{
	struct rb_env *e = rb_env_new(RB_IN_PLACE);
	struct squib_error_detail d;
	struct bytes other = {0}, now = {0};
	bool rolled = true;

	(void)state;
	rb_restore(e);
	assert_true(WIFSIGNALED(
	    fork_trial(rebase_body, e, KILL, e->commit, 0, e->step, &e->steps, NULL)));
	{ /* a valid memory file of another snapshot */
		struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(e->t.state, e->t.mem);

		save_in_parent(SQUIB_SNAPSHOT_FULL, OLD, &req, NULL);
	}
	read_or_empty(e->t.mem, &other);
	write_or_remove(e->base_mem, &other);
	assert_int_equal(squib_memfile_rebase_recover(e->base_mem, NULL, &rolled, &d),
			 SQUIB_E_PAIR_MISMATCH);
	assert_false(rolled);
	assert_non_null(strstr(d.msg, "it was not applied"));
	read_or_empty(e->base_mem, &now);
	assert_true(same(&now, &other));
	assert_true(squib_test_exists(e->undo));
	free(other.p);
	free(now.p);
	rb_env_free(e);
}

/* Load (d.snap, mem) with the chain [base] when chained; 0 or the error code. */
static int rb_try_load(const struct rb_env *e, const char *mem, bool chained)
{
	struct squib_testvm_config c = vm_config();
	const char *chain[] = {e->base_mem};
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(e->d_state, mem);
	struct squib_testvm *rvm = savetest_restore_vm(&c);
	struct squib_vm v = squib_testvm_vm(rvm);
	struct squib_load_result res;
	struct squib_error_detail d;
	int rc;

	lr.chain = chained ? chain : NULL;
	lr.chain_len = chained;
	rc = squib_load(&v, &lr, &res, &d);
	if (!rc)
		squib_load_result_free(&res);
	squib_testvm_free(rvm);
	return rc;
}

/* A rebase --state stopped between its commit and the state's rename: loading the old pair
 * first (it still loads after --out; after --in-place its chain is gone) must not remove the
 * STATE.tmp that completes the new pair, and a load of the new pair then rolls it forward. */
static void test_should_complete_a_rebased_pair_after_its_old_pair_was_loaded(void **state)
{
	(void)state;
	for (enum rb_cmd cmd = RB_OUT_STATE; cmd <= RB_IN_PLACE_STATE; cmd++) {
		struct rb_env *e = rb_env_new(cmd);
		int at = rb_find(e, SQUIB_IO_RENAME, "d.snap");

		rb_restore(e);
		assert_true(WIFSIGNALED(
		    fork_trial(rebase_body, e, KILL, at, 0, e->step, &e->steps, NULL)));
		if (cmd == RB_OUT_STATE)
			assert_int_equal(rb_try_load(e, e->d_mem, true), 0);
		else
			assert_int_equal(rb_try_load(e, e->d_mem, true), SQUIB_E_PAIR_MISMATCH);
		assert_true(rb_state_temp(e));
		assert_int_equal(rb_try_load(e, rb_target(e), false), 0);
		assert_int_equal(rb_classify(e, 0), NEW_PAIR);
		assert_false(rb_state_temp(e));
		rb_env_free(e);
	}
}

/* `run`'s saves: its Full (the full matrices above) and its Diff, which names its parent by the
 * Full's state file. */
static void test_should_keep_the_old_or_the_new_pair_when_runs_diff_save_stops(void **state)
{
	(void)state;
	run_matrix_as(SQUIB_SNAPSHOT_DIFF, true, true);
	run_matrix_as(SQUIB_SNAPSHOT_DIFF, false, true);
}

/* ---- rebase on a real full filesystem ------------------------------------------------------ */

#define TF_PAGES 512 /* 2 MiB of RAM */

struct tmpfs_rebase {
	struct savetest_dir t;
	char *mnt, *base, *diff, *out, *undo, *filler, *snap;
	struct bytes before;
	uint8_t *ram;
};

static uint64_t free_bytes(const char *dir)
{
	struct statvfs v;

	assert_int_equal(statvfs(dir, &v), 0);
	return (uint64_t)v.f_bavail * v.f_frsize;
}

/* A 512 KiB tmpfs holding a sparse base (32 of 512 pages, with its state); the diff outside
 * it rewrites 8 of those pages and fills 128 holes: 512 KiB that cannot fit. */
static bool tmpfs_rebase_init(struct tmpfs_rebase *x)
{
	static uint64_t pages[8 + 128];
	struct squib_memfile_manifest fm, dm;
	uint64_t ps = hp();

	savetest_dir_init(&x->t);
	x->mnt = squib_test_path(x->t.dir, "mnt");
	x->base = squib_test_path(x->mnt, "base.mem");
	x->snap = squib_test_path(x->mnt, "d.snap");
	x->out = squib_test_path(x->mnt, "merged.mem");
	x->filler = squib_test_path(x->mnt, "filler");
	x->diff = squib_test_path(x->t.dir, "d.mem");
	x->undo = squib_memfile_undo_path(x->base);
	assert_int_equal(mkdir(x->mnt, 0700), 0);
	if (mount("squib-test", x->mnt, "tmpfs", MS_NOSUID | MS_NODEV, "size=512k") < 0) {
		printf("SKIP: cannot mount a 512 KiB tmpfs (%s): the real out-of-space rebase test "
		       "did not run\n",
		       strerror(errno));
		return false;
	}
	x->ram = mmap(NULL, TF_PAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	assert_true(x->ram != MAP_FAILED);
	for (uint64_t p = 0; p < 32; p++)
		squib_test_fill_page(x->ram, p, 7);
	squib_test_save_full(x->base, x->ram, TF_PAGES * ps, false, &fm);
	for (uint64_t i = 0; i < 8 + 128; i++) {
		pages[i] = i < 8 ? i : 64 + (i - 8);
		squib_test_fill_page(x->ram, pages[i], 9);
	}
	squib_test_save_diff(x->diff, x->ram, TF_PAGES * ps, fm.layout.id, pages, 8 + 128, false,
			     &dm);
	squib_test_save_state(x->snap, &dm.layout);
	read_or_empty(x->base, &x->before);
	squib_memfile_manifest_release(&fm);
	squib_memfile_manifest_release(&dm);
	return true;
}

static void tmpfs_rebase_free(struct tmpfs_rebase *x)
{
	if (x->ram)
		munmap(x->ram, TF_PAGES * hp());
	if (x->before.p)
		assert_int_equal(umount2(x->mnt, MNT_DETACH), 0);
	free(x->before.p);
	free(x->mnt);
	free(x->base);
	free(x->snap);
	free(x->out);
	free(x->filler);
	free(x->diff);
	free(x->undo);
	savetest_dir_free(&x->t);
}

/* Fails with ENOSPC; the base is byte for byte the old one, nothing is left behind. */
static void rebase_out_of_space(struct tmpfs_rebase *x, const char *out, const char *state)
{
	struct squib_memfile_rebase_options o = {.state_path = state};
	const char *diffs[1] = {x->diff};
	struct squib_error_detail d;
	struct bytes now = {0};
	uint64_t before = free_bytes(x->mnt);

	int rc = squib_memfile_rebase(x->base, diffs, 1, out, &o, NULL, &d);

	if (rc >= 0 || d.os_errno != ENOSPC)
		fail_msg("rebase %s: %d, errno %d (%s)", out ? "--out" : "--in-place", rc,
			 d.os_errno, savetest_message(&d));
	printf("tmpfs full, rebase %s%s: %s\n", out ? "--out" : "--in-place",
	       state ? " --state" : "", d.msg);
	read_or_empty(x->base, &now);
	assert_true(same(&now, &x->before));
	assert_false(squib_test_exists(x->undo) || squib_test_exists(x->out));
	assert_int_equal(litter(x->mnt, "", ".tmp", false) + litter(x->mnt, ".", "-lock", false), 0);
	/* The holes the rebase filled were punched back: the space is free again. */
	assert_int_equal(free_bytes(x->mnt), before);
	assert_int_equal(squib_memfile_verify(x->base, false, NULL, NULL), 0);
	free(now.p);
}

static void test_should_keep_the_base_when_a_rebase_runs_out_of_space(void **state)
{
	struct tmpfs_rebase x = {0};
	uint64_t room;
	int fd;

	(void)state;
	if (!tmpfs_rebase_init(&x)) {
		tmpfs_rebase_free(&x);
		skip();
	}
	rebase_out_of_space(&x, x.out, NULL);	   /* the new file does not fit */
	rebase_out_of_space(&x, NULL, NULL);	   /* the log fits; the copy into holes does not */
	rebase_out_of_space(&x, NULL, x.snap);	   /* the same, publishing a pair */
	room = free_bytes(x.mnt);		   /* now leave less than the log needs */
	fd = open(x.filler, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(posix_fallocate(fd, 0, (off_t)(room - 16 * KiB)), 0);
	close(fd);
	rebase_out_of_space(&x, NULL, NULL);	   /* refused before the base is touched */
	tmpfs_rebase_free(&x);
}

/* ---- planted state temps ------------------------------------------------------------ */

/* Recovery reads STATE.<B>.tmp only if it is a regular file of this user with one link:
 * a symlink, another user's file, a hard link or a FIFO planted there is no recovery (and
 * the FIFO does not hang it). The genuine temp then rolls forward. */
static void test_should_not_roll_forward_a_state_temp_someone_planted(void **state)
{
	struct env *e = env_new(SQUIB_SNAPSHOT_FULL, true);
	char *temp, *real = squib_test_path(e->t.dir, "real-temp");
	static const char *const why[] = {"symbolic link", "not a file this user made",
					  "not a file this user made", "not a regular file"};
	enum squib_recovery_action a;
	struct squib_error_detail d;
	struct bytes s = {0}, genuine = {0};

	(void)state;
	restore_old(e);
	assert_true(WIFSIGNALED(run_child(e, KILL, e->state_rename, 0, NULL)));
	temp = savetest_state_temp(&e->t);
	assert_non_null(temp);
	read_or_empty(temp, &genuine);
	assert_int_equal(rename(temp, real), 0);
	for (int k = 0; k < 4; k++) {
		if (k == 0)
			assert_int_equal(symlink(real, temp), 0);
		else if (k == 1) {
			assert_int_equal(squib_test_write_file(temp, genuine.p, genuine.n), 0);
			assert_int_equal(chown(temp, 65534, 65534), 0);
		} else if (k == 2)
			assert_int_equal(link(real, temp), 0);
		else
			assert_int_equal(mkfifo(temp, 0600), 0);
		assert_int_equal(squib_pair_recover(e->t.state, e->t.mem, NULL, &a, &d),
				 SQUIB_E_PAIR_MISMATCH);
		if (!strstr(d.msg, why[k]))
			fail_msg("case %d: \"%s\" does not say %s", k, d.msg, why[k]);
		read_or_empty(e->t.state, &s);
		assert_true(same(&s, &e->old_state)); /* nothing renamed */
		assert_int_equal(unlink(temp), 0);
	}
	assert_int_equal(rename(real, temp), 0);
	assert_int_equal(squib_pair_recover(e->t.state, e->t.mem, NULL, &a, &d), 0);
	assert_int_equal(a, SQUIB_RECOVERY_ROLLED_FORWARD);
	assert_int_equal(classify(e, 0), NEW_PAIR);
	assert_int_equal(savetest_layer_files(&e->t), 0);
	free(s.p);
	free(genuine.p);
	free(temp);
	free(real);
	env_free(e);
}

/* ---- saves that race ---------------------------------------------------------------- */

static void race_save_child(const struct env *e, uint32_t seed, int go)
{
	struct squib_testvm_config c = vm_config();
	struct squib_save_request req = request(e, NULL);
	struct squib_testvm *vm = NULL;
	struct squib_error_detail d = {0};
	struct squib_vm v;
	char ch;
	int rc;

	if (read(go, &ch, 1) != 0 || squib_testvm_new(&c, &vm))
		_exit(3);
	squib_testvm_fill(vm, seed, 1);
	v = squib_testvm_vm(vm);
	rc = squib_save(&v, &req, NULL, &d);
	squib_testvm_free(vm);
	if (rc == SQUIB_E_BUSY && (strstr(d.msg, e->t.state) || strstr(d.msg, e->t.mem)))
		_exit(1);
	_exit(rc ? 2 : 0);
}

/* Does the loaded memory hold what a VM filled with `seed` holds? */
static bool memory_is(const struct squib_guest_memory *g, uint32_t seed)
{
	struct squib_testvm_config c = vm_config();
	struct squib_testvm *vm = savetest_vm(&c);
	bool eq = true;

	squib_testvm_fill(vm, seed, 1);
	for (uint32_t i = 0; i < squib_guest_memory_region_count(g); i++)
		eq = eq && !memcmp(squib_guest_memory_region(g, i)->host,
				   squib_testvm_region(vm, i)->host,
				   squib_guest_memory_region(g, i)->size);
	squib_testvm_free(vm);
	return eq;
}

/* One trial: `n` saves of the pair released at once; the pair on disk is one whole save's. */
static void save_race_trial(struct env *e, int n, bool same_input, int *won, int *busy)
{
	struct squib_testvm_config c = vm_config();
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(e->t.state, e->t.mem);
	struct squib_load_result res;
	struct squib_testvm *rvm;
	int go[2], ok[8] = {0}, matches = 0;
	pid_t pid[8];

	restore_old(e);
	assert_int_equal(pipe(go), 0);
	for (int i = 0; i < n; i++) {
		assert_true((pid[i] = fork()) >= 0);
		if (pid[i] == 0) {
			close(go[1]);
			race_save_child(e, same_input ? 100 : 100 + (uint32_t)i, go[0]);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int i = 0, st; i < n; i++) {
		assert_int_equal(waitpid(pid[i], &st, 0), pid[i]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) <= 1);
		ok[i] = WEXITSTATUS(st) == 0;
		*won += ok[i];
		*busy += !ok[i];
	}
	assert_int_equal(savetest_layer_files(&e->t), 0);
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_int_equal(res.recovery, SQUIB_RECOVERY_NONE);
	for (int i = 0; i < n; i++)
		if (memory_is(res.memory, same_input ? 100 : 100 + (uint32_t)i)) {
			assert_true(ok[i] || same_input);
			matches++;
		}
	assert_int_equal(matches, same_input ? n : 1);
	squib_load_result_free(&res);
	squib_testvm_free(rvm); /* no VM alive at the next fork */
}

static void save_race(int n, int trials)
{
	struct env *e = env_new(SQUIB_SNAPSHOT_FULL, true);
	int won = 0, busy = 0;

	for (int t = 0; t < trials; t++)
		save_race_trial(e, n, t % 2, &won, &busy);
	printf("save race: %d saves x %d trials of one pair: %d published, %d busy, 0 mixed\n", n,
	       trials, won, busy);
	env_free(e);
}

static void test_should_publish_one_whole_pair_when_two_saves_race(void **state)
{
	(void)state;
	save_race(2, 12);
}

static void test_should_publish_one_whole_pair_when_eight_saves_race(void **state)
{
	(void)state;
	save_race(8, 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_keep_the_old_or_the_new_full_pair_at_every_step),
	    cmocka_unit_test(test_should_keep_the_old_or_the_new_diff_pair_at_every_step),
	    cmocka_unit_test(test_should_leave_no_pair_or_the_new_pair_when_a_first_save_stops),
	    cmocka_unit_test(test_should_roll_forward_a_save_killed_between_the_renames),
	    cmocka_unit_test(test_should_report_a_mismatch_that_no_temp_explains),
	    cmocka_unit_test(test_should_remove_stale_temps_once_the_pair_is_known_good),
	    cmocka_unit_test(test_should_recover_before_saving_over_a_half_published_pair),
	    cmocka_unit_test(
		test_should_leave_the_previous_pair_intact_when_the_first_rename_fails),
	    cmocka_unit_test(test_should_complete_the_pair_when_the_second_rename_fails),
	    cmocka_unit_test(test_should_keep_the_previous_pair_on_a_full_filesystem),
	    cmocka_unit_test(test_should_keep_the_old_or_the_new_file_when_a_rebase_out_stops),
	    cmocka_unit_test(
		test_should_keep_the_old_or_the_new_base_when_an_in_place_rebase_stops),
	    cmocka_unit_test(
		test_should_keep_the_old_or_the_new_pair_when_a_rebase_with_state_stops),
	    cmocka_unit_test(test_should_keep_the_old_or_the_new_pair_when_runs_diff_save_stops),
	    cmocka_unit_test(test_should_roll_back_again_after_a_roll_back_is_killed),
	    cmocka_unit_test(test_should_complete_a_rebased_pair_after_its_old_pair_was_loaded),
	    cmocka_unit_test(test_should_not_apply_an_undo_log_to_another_file),
	    cmocka_unit_test(test_should_keep_the_base_when_a_rebase_runs_out_of_space),
	    cmocka_unit_test(test_should_not_roll_forward_a_state_temp_someone_planted),
	    cmocka_unit_test(test_should_publish_one_whole_pair_when_two_saves_race),
	    cmocka_unit_test(test_should_publish_one_whole_pair_when_eight_saves_race),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
