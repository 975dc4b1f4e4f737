/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Saving a running VM straight into the snapshot store (squib_store_save),
 * with the library's test VM (tests/support/testvm.h): a Full and a Diff
 * into a directory store and into Ceph RGW (`make test-store`), pulled back
 * as ordinary pairs and read byte for byte; a save whose commit fails
 * leaves only unreferenced chunks, which gc removes, and gives its pages
 * back to the trackers; saves racing a gc loop (threads, many iterations)
 * with garbage chunks the next save reuses: every image stays pullable.
 */
#include "pair.h"
#include "savetest.h"
#include "testutil.h"
#include "testvm.h"
#include "writervm.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <squib/guest_memory.h>
#include <squib/memfile.h>
#include <squib/store.h>

#define GPA0  0x0ull
#define SIZE0 (4ull << 20)
#define GPA1  0x10000000ull
#define SIZE1 (2ull << 20)
#define CHUNK (1ull << SQUIB_STORE_DEFAULT_CHUNK_SHIFT)

struct fx {
	char *dir, *store, *out;
	struct squib_testvm_config cfg;
	struct squib_testvm *vm;
};

static const char *msg_of(const struct squib_error_detail *d)
{
	static char buf[2048];

	squib_error_message(d->code, d, buf, sizeof(buf));
	snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), " [%s]", d->msg);
	return buf;
}

/* Two regions (4 MiB at 0, 2 MiB at 256 MiB), every third page patterned, tracked. */
static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	f->dir = squib_test_tmpdir();
	f->store = squib_test_path(f->dir, "store");
	f->out = squib_test_path(f->dir, "out");
	mkdir(f->store, 0700);
	mkdir(f->out, 0700);
	f->cfg = squib_testvm_config_simple(GPA0, SIZE0, 2);
	f->cfg.region_count = 2;
	f->cfg.regions[1] = (struct squib_mem_region){GPA1, SIZE1};
	f->cfg.track_dirty_pages = true;
	f->cfg.with_tracker = true;
	f->vm = savetest_vm(&f->cfg);
	squib_testvm_fill(f->vm, 11, 3);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	squib_testvm_free(f->vm);
	squib_test_rmtree(f->dir);
	free(f->dir);
	free(f->store);
	free(f->out);
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

static void save_ok(struct squib_store *s, struct squib_testvm *vm,
		    const struct squib_store_save_request *req, struct squib_store_save_report *rep)
{
	struct squib_vm v = squib_testvm_vm(vm);
	struct squib_error_detail d;

	if (squib_store_save(s, &v, req, rep, &d))
		fail_msg("store save: %s", msg_of(&d));
	assert_true(rep->save.state_published);
	assert_true(rep->save.resumed);
}

static char *mem_path(const char *dir, const uint8_t *id)
{
	char hex[2 * SQUIB_MEMORY_ID_SIZE + 1], name[64];

	squib_memfile_id_hex(id, hex);
	snprintf(name, sizeof(name), "%s.mem", hex);
	return squib_test_path(dir, name);
}

/* Pull id into dir and check every page of the chain ending at it against
 * the VM's memory copy `want` (regions back to back). */
static void assert_pulls(struct squib_store *s, const uint8_t *id, const uint8_t *parent,
			 const char *dir, const uint8_t *want)
{
	uint64_t ps = squib_test_page_size(), o = 0;
	char *paths[2] = {NULL, NULL};
	struct squib_memfile_chain *c;
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	uint8_t *page = malloc(ps);
	char *state = NULL;
	size_t n = 0;

	if (squib_store_pull(s, id, dir, NULL, NULL, &state, &d))
		fail_msg("pull: %s", msg_of(&d));
	if (parent)
		paths[n++] = mem_path(dir, parent);
	paths[n++] = mem_path(dir, id);
	for (size_t i = 0; i < n; i++) { /* each file's own digests check out */
		if (squib_memfile_verify(paths[i], true, &m, &d))
			fail_msg("verify %s: %s", paths[i], msg_of(&d));
		squib_memfile_manifest_release(&m);
	}
	if (squib_memfile_chain_open((const char *const *)paths, n, &c, &d))
		fail_msg("chain: %s", msg_of(&d));
	for (uint64_t ga = GPA0; ga < GPA0 + SIZE0; ga += ps, o += ps) {
		assert_int_equal(squib_memfile_chain_read_page(c, ga, page, &d), 0);
		assert_memory_equal(page, want + o, ps);
	}
	for (uint64_t ga = GPA1; ga < GPA1 + SIZE1; ga += ps, o += ps) {
		assert_int_equal(squib_memfile_chain_read_page(c, ga, page, &d), 0);
		assert_memory_equal(page, want + o, ps);
	}
	squib_memfile_chain_close(c);
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(state);
	free(page);
}

/* The VM's RAM, regions back to back (malloc'd). */
static uint8_t *ram_copy(struct squib_testvm *vm)
{
	uint8_t *c = malloc(SIZE0 + SIZE1);

	memcpy(c, squib_testvm_host(vm, GPA0), SIZE0);
	memcpy(c + SIZE0, squib_testvm_host(vm, GPA1), SIZE1);
	return c;
}

static void full_then_diff(struct fx *f, const char *url)
{
	struct squib_store *s = open_store(url);
	/* A queue of 2 windows per worker: the reader waits on the uploads. */
	struct squib_store_save_request full = {
	    .kind = SQUIB_SNAPSHOT_FULL, .digests = true, .buffer_bytes = 1};
	struct squib_store_save_report r1, r2;
	uint8_t base_id[SQUIB_MEMORY_ID_SIZE], *want;
	uint64_t ps = squib_test_page_size();

	save_ok(s, f->vm, &full, &r1);
	memcpy(base_id, r1.save.memory_id, sizeof(base_id));
	assert_int_equal(r1.store.chunks, (SIZE0 + SIZE1) / CHUNK);
	assert_int_equal(r1.store.chunks_zero, 0);
	assert_int_equal(r1.store.images_put, 1);
	assert_int_equal(r1.store.bytes_present, SIZE0 + SIZE1);
	want = ram_copy(f->vm);
	assert_pulls(s, base_id, NULL, f->out, want);
	free(want);

	/* Three pages in three windows (one in each region, two in one window), one
	 * window zeroed whole: the Diff reads exactly those windows. */
	squib_testvm_write(f->vm, GPA0 + 5 * CHUNK + 3 * ps, 0xa5, ps);
	squib_testvm_write(f->vm, GPA0 + 5 * CHUNK + 7 * ps, 0x5a, 2 * ps);
	squib_testvm_write(f->vm, GPA1 + 9 * ps, 0x11, ps);
	squib_testvm_write(f->vm, GPA0 + 20 * CHUNK, 0, CHUNK);
	struct squib_store_save_request diff = {
	    .kind = SQUIB_SNAPSHOT_DIFF, .parent_memory_id = base_id, .digests = true};
	save_ok(s, f->vm, &diff, &r2);
	assert_int_equal(r2.save.kind, SQUIB_SNAPSHOT_DIFF);
	assert_memory_equal(r2.save.parent_id, base_id, sizeof(base_id));
	assert_int_equal(r2.store.bytes_present, 2 * CHUNK); /* the zeroed one is not stored */
	assert_int_equal(r2.store.chunks_zero, 1);
	assert_int_equal(r2.store.chunks_put, 2);
	/* A few pages of a window changed: each stored as a delta against the
	 * parent's chunk of it (docs/FORMAT.md §S.4), a fraction of a page each. */
	assert_int_equal(r2.store.deltas_put, 2);
	assert_true(r2.store.bytes_put < 2 * ps);
	assert_int_equal(r2.store.chunks_reused, r2.store.chunks - 3);
	assert_int_equal(r2.save.pages_written, 4 + CHUNK / ps);
	want = ram_copy(f->vm);
	assert_pulls(s, r2.save.memory_id, base_id, f->out, want);
	free(want);
	squib_store_close(s);
}

static void test_should_save_a_full_and_a_diff_into_a_directory_store(void **state)
{
	struct fx *f = *state;

	full_then_diff(f, f->store);
}

/* Live into the store: writer threads keep rewriting RAM while the windows
 * are read from the view of the pause instant; the pulled image is that
 * instant byte for byte, and the writers ran on (they were not paused). */
static void test_should_save_the_pause_instant_live_while_writers_run(void **state)
{
	struct fx *f = *state;
	const uint64_t ram = 16ull << 20;
	struct writervm_config c = {.ram = ram,
				    .span = 12ull << 20,
				    .fill = 8ull << 20,
				    .writers = 2,
				    .copy_at_capture = true};
	struct squib_store_save_request req = {.kind = SQUIB_SNAPSHOT_FULL, .live = true};
	struct squib_store_save_report rep;
	struct squib_store *s;
	struct squib_guest_memory *g;
	struct squib_error_detail d;
	struct writervm *vm;
	struct squib_vm v;
	char *mem, *st = NULL;

	if (squib_test_uffd_missing("live saves into a store"))
		skip();
	assert_int_equal(writervm_new(&c, &vm), 0);
	v = writervm_vm(vm);
	s = open_store(f->store);
	if (squib_store_save(s, &v, &req, &rep, &d))
		fail_msg("live store save: %s", msg_of(&d));
	assert_true(rep.save.live);
	assert_true(rep.save.resumed && rep.save.state_published);
	printf("live into a store: pause %llu us capture %llu us paused %llu us, %llu write faults "
	       "waited\n",
	       (unsigned long long)(rep.save.ns.pause / 1000),
	       (unsigned long long)(rep.save.ns.capture / 1000),
	       (unsigned long long)(rep.save.ns.paused / 1000),
	       (unsigned long long)rep.save.live_write_faults);
	writervm_wait_stores(vm, 1000); /* running, not left paused */
	if (squib_store_pull(s, rep.save.memory_id, f->out, NULL, NULL, &st, &d))
		fail_msg("pull: %s", msg_of(&d));
	mem = mem_path(f->out, rep.save.memory_id);
	if (squib_guest_memory_open(mem, NULL, 0, NULL, SQUIB_BACKEND_COPY, &g, &d))
		fail_msg("open %s: %s", mem, msg_of(&d));
	assert_int_equal(squib_guest_memory_region(g, 0)->size, ram);
	assert_memory_equal(squib_guest_memory_region(g, 0)->host, writervm_pause_copy(vm), ram);
	squib_guest_memory_free(g);
	writervm_free(vm);
	squib_store_close(s);
	free(mem);
	free(st);
}

static void test_should_refuse_a_diff_of_an_unknown_parent_or_other_geometry(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	struct squib_testvm_config small = squib_testvm_config_simple(GPA0, SIZE0, 1);
	struct squib_store_save_request full = {.kind = SQUIB_SNAPSHOT_FULL};
	struct squib_store_save_report rep;
	uint8_t nobody[SQUIB_MEMORY_ID_SIZE] = {1, 2, 3};
	struct squib_store_save_request diff = {.kind = SQUIB_SNAPSHOT_DIFF,
						.parent_memory_id = nobody};
	struct squib_testvm *other;
	struct squib_vm v = squib_testvm_vm(f->vm);
	struct squib_error_detail d;

	assert_int_equal(squib_store_save(s, &v, &diff, &rep, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	diff.parent_memory_id = NULL;
	assert_int_equal(squib_store_save(s, &v, &diff, &rep, &d), SQUIB_E_INVALID_ARGUMENT);
	save_ok(s, f->vm, &full, &rep);
	small.track_dirty_pages = small.with_tracker = true;
	other = savetest_vm(&small);
	v = squib_testvm_vm(other);
	diff.parent_memory_id = rep.save.memory_id;
	assert_int_equal(squib_store_save(s, &v, &diff, &rep, &d), SQUIB_E_PAIR_MISMATCH);
	assert_false(squib_testvm_vcpu_paused(other, 0));
	squib_testvm_free(other);
	squib_store_close(s);
}

static int count_objects(void *ctx, const struct squib_store_object *o)
{
	(void)o;
	(*(int *)ctx)++;
	return 0;
}

static int objects(struct squib_store *s, const char *prefix)
{
	struct squib_error_detail d;
	int n = 0;

	assert_int_equal(squib_store_list(s, prefix, count_objects, &n, &d), 0);
	return n;
}

/* Replace the store's directory `name` by a file (a put under it fails), or back. */
static void block_dir(struct fx *f, const char *name, bool block)
{
	char *p = squib_test_path(f->store, name), *keep;
	FILE *fp;

	assert_true(asprintf(&keep, "%s.keep", p) > 0);
	if (block) {
		assert_int_equal(rename(p, keep), 0);
		assert_non_null(fp = fopen(p, "w"));
		fclose(fp);
	} else {
		assert_int_equal(unlink(p), 0);
		assert_int_equal(rename(keep, p), 0);
	}
	free(keep);
	free(p);
}

/* The commit fails (images/ is a file): the chunks are up, no image, no
 * lease; gc removes exactly those chunks and keeps the earlier image's. */
static void test_should_leave_only_unreferenced_chunks_when_a_save_fails(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	struct squib_store_save_request full = {.kind = SQUIB_SNAPSHOT_FULL};
	struct squib_store_save_report rep, ok;
	struct squib_store_gc_stats gs;
	struct squib_vm v = squib_testvm_vm(f->vm);
	struct squib_error_detail d;
	int before;

	save_ok(s, f->vm, &full, &ok);
	before = objects(s, "chunks/");
	squib_testvm_fill(f->vm, 12, 2);
	block_dir(f, "images", true);
	assert_true(squib_store_save(s, &v, &full, &rep, &d) < 0);
	block_dir(f, "images", false);
	assert_false(rep.save.state_published);
	assert_true(rep.save.resumed);
	assert_true(rep.store.chunks_put > 0);
	assert_int_equal(objects(s, "chunks/"), before + (int)rep.store.chunks_put);
	assert_int_equal(objects(s, "images/"), 2); /* the first image and its state */
	assert_int_equal(objects(s, "leases/"), 0);
	assert_int_equal(squib_store_gc(s, false, &gs, &d), 0);
	assert_int_equal(gs.images, 1);
	assert_int_equal(gs.chunks_deleted, rep.store.chunks_put);
	assert_int_equal(objects(s, "chunks/"), before);
	squib_store_close(s);
}

/* Age every entry of store/dir (leases, planted temps) by two hours. */
static void age_dir(struct fx *f, const char *dir)
{
	char *p = squib_test_path(f->store, dir);
	struct timespec old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
	struct dirent *e;
	DIR *dp = opendir(p);

	assert_non_null(dp);
	while ((e = readdir(dp)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			assert_int_equal(utimensat(dirfd(dp), e->d_name, old, AT_SYMLINK_NOFOLLOW), 0);
	closedir(dp);
	free(p);
}

static void plant(struct fx *f, const char *key)
{
	char *p = squib_test_path(f->store, key);

	assert_int_equal(squib_test_write_file(p, "x", 1), 0);
	free(p);
}

static int count_temps(struct fx *f, const char *dir)
{
	char *p = squib_test_path(f->store, dir);
	struct dirent *e;
	DIR *dp = opendir(p);
	int n = 0;

	assert_non_null(dp);
	while ((e = readdir(dp)))
		n += e->d_name[0] == '.' && strstr(e->d_name, ".tmp") != NULL;
	closedir(dp);
	free(p);
	return n;
}

static char *self_exe;

/* The child (this program with --save-big URL): a 64 MiB VM of incompressible
 * bytes saved into the store (1,024 chunks, each a temp, fsync and rename),
 * to be killed halfway. */
static void save_big_then_exit(const char *url)
{
	struct squib_testvm_config cfg = squib_testvm_config_simple(GPA0, 64ull << 20, 1);
	struct squib_store_save_request full = {.kind = SQUIB_SNAPSHOT_FULL};
	struct squib_store_save_report rep;
	struct squib_error_detail d;
	struct squib_testvm *vm = savetest_vm(&cfg);
	struct squib_vm v = squib_testvm_vm(vm);
	uint64_t *w = (uint64_t *)(void *)squib_testvm_host(vm, GPA0), x = 88172645463325252ull;
	struct squib_store *s = open_store(url);

	for (size_t i = 0; i < (64ull << 20) / 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		w[i] = x;
	}
	_exit(squib_store_save(s, &v, &full, &rep, &d) ? 2 : 0);
}

/* SIGKILL in the middle of a save: no image, the earlier image still pulls,
 * gc refuses while the dead save's lease is young, and once it is stale gc
 * removes the lease, every chunk the save uploaded and the temps it left;
 * a fresh temp (a live writer's) stays. The next save works. */
static void test_should_leave_nothing_gc_cannot_clear_when_a_save_is_killed(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	struct squib_store_save_request full = {.kind = SQUIB_SNAPSHOT_FULL};
	struct squib_store_save_report ok, again;
	struct squib_store_gc_stats gs;
	struct squib_error_detail d;
	int before, after, status;
	uint8_t *want;
	pid_t pid;

	save_ok(s, f->vm, &full, &ok);
	want = ram_copy(f->vm);
	before = objects(s, "chunks/");
	/* A fresh process (fork and exec): one that forked a threaded test and
	 * started its own threads is undefined behaviour, and TSan kills it. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execv(self_exe, (char *[]){self_exe, "--save-big", f->store, NULL});
		_exit(127);
	}
	while (objects(s, "chunks/") < before + 8) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			fail_msg("the saving child ended before it was killed (status 0x%x)", status);
		usleep(500);
	}
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* 8 of 1,024 uploads seen: a save that finished first would be a broken test */
	assert_true(WIFSIGNALED(status));
	after = objects(s, "chunks/");
	assert_true(after > before && after < before + 1024);
	assert_int_equal(objects(s, "images/"), 2); /* the first image and its state */
	assert_int_equal(objects(s, "leases/"), 1); /* the dead save's */
	assert_pulls(s, ok.save.memory_id, NULL, f->out, want);

	assert_int_equal(squib_store_gc(s, false, &gs, &d), SQUIB_E_BUSY);
	assert_int_equal(objects(s, "chunks/"), after);
	/* A temp of a put killed before its rename, and one of a live writer's put. */
	plant(f, "chunks/.0123.00000000000000aa.tmp");
	age_dir(f, "leases");
	age_dir(f, "chunks");
	plant(f, "chunks/.4567.00000000000000bb.tmp");
	assert_int_equal(squib_store_gc(s, false, &gs, &d), 0);
	assert_int_equal(gs.leases_expired, 1);
	assert_int_equal(gs.images, 1);
	assert_int_equal(gs.chunks_deleted, (uint64_t)(after - before));
	assert_true(gs.partial_deleted >= 1);
	assert_int_equal(count_temps(f, "chunks"), 1); /* the fresh one */
	assert_int_equal(objects(s, "chunks/"), before);
	assert_int_equal(objects(s, "leases/"), 0);
	assert_pulls(s, ok.save.memory_id, NULL, f->out, want);
	squib_testvm_fill(f->vm, 13, 2);
	save_ok(s, f->vm, &full, &again);
	free(want);
	want = ram_copy(f->vm);
	assert_pulls(s, again.save.memory_id, NULL, f->out, want);
	free(want);
	squib_store_close(s);
}

/* An upload fails (chunks/ is a file): the save fails with the VM running and
 * its harvested pages go back to the trackers, so the next Diff holds them. */
static void test_should_give_pages_back_when_a_save_fails(void **state)
{
	struct fx *f = *state;
	struct squib_store *s = open_store(f->store);
	struct squib_store_save_request full = {.kind = SQUIB_SNAPSHOT_FULL};
	struct squib_store_save_report rep, base;
	struct squib_vm v = squib_testvm_vm(f->vm);
	struct squib_error_detail d;
	uint64_t ps = squib_test_page_size();
	uint8_t *want;

	save_ok(s, f->vm, &full, &base);
	struct squib_store_save_request diff = {.kind = SQUIB_SNAPSHOT_DIFF,
						.parent_memory_id = base.save.memory_id};
	squib_testvm_write(f->vm, GPA0 + 2 * CHUNK, 0x42, ps);
	block_dir(f, "chunks", true);
	assert_true(squib_store_save(s, &v, &diff, &rep, &d) < 0);
	assert_false(rep.save.state_published);
	assert_true(rep.save.resumed);
	block_dir(f, "chunks", false);
	squib_testvm_write(f->vm, GPA1 + 4 * CHUNK, 0x43, ps);
	save_ok(s, f->vm, &diff, &rep);
	assert_int_equal(rep.save.pages_written, 2);
	assert_int_equal(rep.store.chunks_put, 2);
	want = ram_copy(f->vm);
	assert_pulls(s, rep.save.memory_id, base.save.memory_id, f->out, want);
	free(want);
	squib_store_close(s);
}

/* ---- saves racing gc --------------------------------------------------------- */

#define RACE_ROUNDS 25

struct race {
	struct fx *f;
	struct squib_store *s;
	int rounds;
	uint8_t ids[RACE_ROUNDS][SQUIB_MEMORY_ID_SIZE];
	uint8_t *want[RACE_ROUNDS];
	int done; /* atomic */
	int gcs, busy, deleted, failed;
	struct squib_error_detail gc_err;
};

/* Garbage the next save will find listed and reuse: the chunk of the bytes
 * about to be written, PUT without an image (as a crashed push leaves it). */
static void put_garbage(struct squib_store *s, const uint8_t *bytes)
{
	char key[96], hex[65];
	struct squib_store_hash h;
	struct squib_error_detail d;
	uint8_t *obj;
	size_t n;

	assert_int_equal(squib_store_hash(bytes, CHUNK, &h, &d), 0);
	assert_int_equal(squib_store_chunk_encode(bytes, CHUNK, 1, &obj, &n, &d), 0);
	squib_store_hash_hex(&h, hex);
	snprintf(key, sizeof(key), "chunks/%s", hex);
	assert_int_equal(squib_store_put(s, key, obj, n, &d), 0);
	free(obj);
}

static void *gc_loop(void *arg)
{
	struct race *r = arg;

	while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE)) {
		struct squib_store_gc_stats gs;
		struct squib_error_detail d;
		int rc = squib_store_gc(r->s, false, &gs, &d);

		if (rc == SQUIB_E_BUSY) {
			r->busy++;
		} else if (rc) {
			r->failed++;
			r->gc_err = d;
		} else {
			r->gcs++;
			r->deleted += (int)gs.chunks_deleted;
		}
		/* A gc that never stops starves saves (each waits a second per marker it
		 * meets); a short pause between gcs keeps them overlapping. */
		usleep(20000);
	}
	return NULL;
}

static void race(struct fx *f, const char *url, int rounds)
{
	struct race r = {.f = f, .s = open_store(url), .rounds = rounds};
	struct squib_store_save_request full = {.kind = SQUIB_SNAPSHOT_FULL};
	struct squib_store_save_report rep;
	uint8_t *bytes = malloc(CHUNK);
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, gc_loop, &r), 0);
	for (int i = 0; i < rounds; i++) {
		for (uint64_t k = 0; k < CHUNK; k++)
			bytes[k] = (uint8_t)(i * 131 + k * 7 + (k >> 9));
		put_garbage(r.s, bytes);
		memcpy(squib_testvm_host(f->vm, GPA0 + (uint64_t)(i % 8) * CHUNK), bytes, CHUNK);
		save_ok(r.s, f->vm, &full, &rep);
		memcpy(r.ids[i], rep.save.memory_id, SQUIB_MEMORY_ID_SIZE);
		r.want[i] = ram_copy(f->vm);
	}
	__atomic_store_n(&r.done, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	if (r.failed)
		fail_msg("gc failed %d times: %s", r.failed, msg_of(&r.gc_err));
	fprintf(stderr, "race %s: %d saves, %d gcs completed (%d chunks swept), %d refused busy\n",
		url, rounds, r.gcs, r.deleted, r.busy);
	struct squib_store_gc_stats gs;
	struct squib_error_detail d;

	assert_int_equal(squib_store_gc(r.s, false, &gs, &d), 0); /* nothing running now */
	assert_int_equal(gs.images, (uint64_t)rounds);
	for (int i = 0; i < rounds; i++) {
		char *dir = squib_test_path(f->out, "x");

		squib_test_rmtree(dir);
		mkdir(dir, 0700);
		assert_pulls(r.s, r.ids[i], NULL, dir, r.want[i]);
		free(r.want[i]);
		free(dir);
	}
	free(bytes);
	squib_store_close(r.s);
}

static void test_should_keep_every_saved_image_pullable_while_gc_races(void **state)
{
	struct fx *f = *state;

	race(f, f->store, RACE_ROUNDS);
}

/* ---- against Ceph RGW (`make test-store`) -------------------------------------- */

static void test_should_save_a_full_and_a_diff_into_ceph_rgw(void **state)
{
	char *url = squib_test_s3_url("store save into S3", "save");

	if (!url)
		skip();
	full_then_diff(*state, url);
	free(url);
}

static void test_should_keep_every_saved_image_pullable_while_gc_races_on_ceph_rgw(void **state)
{
	char *url = squib_test_s3_url("save/gc race on S3", "save");

	if (!url)
		skip();
	race(*state, url, 12);
	free(url);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_should_save_a_full_and_a_diff_into_a_directory_store, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_save_the_pause_instant_live_while_writers_run, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_refuse_a_diff_of_an_unknown_parent_or_other_geometry, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_leave_only_unreferenced_chunks_when_a_save_fails, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_give_pages_back_when_a_save_fails, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_leave_nothing_gc_cannot_clear_when_a_save_is_killed, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_keep_every_saved_image_pullable_while_gc_races, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_save_a_full_and_a_diff_into_ceph_rgw, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_keep_every_saved_image_pullable_while_gc_races_on_ceph_rgw, setup,
		teardown),
	};

	if (argc == 3 && !strcmp(argv[1], "--save-big"))
		save_big_then_exit(argv[2]);
	if (!(self_exe = realpath("/proc/self/exe", NULL)))
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
