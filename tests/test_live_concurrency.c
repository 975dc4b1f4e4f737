/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live saves (squib_save_request.live) of a VM whose writer threads keep
 * rewriting its RAM: the memory file equals a copy of RAM taken at the pause
 * instant, byte for byte; dirty tracking carries the writes made during the
 * live save into the next Diff; a save that fails halfway publishes nothing
 * and leaves RAM writable and unregistered; memory another userfaultfd
 * serves is saved stop-the-world. Real userfaultfd, real files.
 */
#include "savetest.h"
#include "writervm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/guest_memory.h>
#include <squib/memfile.h>
#include <squib/save.h>

#define MiB (1ull << 20)

/* Stores the writers make while the save is under way: the hook below
 * holds the save's first memory write until they are done, so the guest
 * provably writes while its memory is being saved. */
#define STORES_DURING_SAVE 20000u

struct hold {
	struct writervm *vm;
	int writes;  /* memory-file writes seen */
	int fail_at; /* fail this write (1-based) with -ENOSPC; 0: never */
	int kill_at; /* raise SIGINT before this write (1-based); 0: never */
	bool held;
};

static int before(void *ctx, enum squib_io_step step, const char *path)
{
	struct hold *h = ctx;

	if (step != SQUIB_IO_WRITE || !strstr(path, ".mem."))
		return 0;
	if (!h->held) {
		h->held = true;
		writervm_wait_stores(h->vm, STORES_DURING_SAVE);
	}
	if (++h->writes == h->kill_at)
		raise(SIGINT); /* Ctrl-C halfway: the default action ends the process */
	return h->writes == h->fail_at ? -ENOSPC : 0;
}

/* qemu-user (make test-arm64) has no userfaultfd: one loud line, then skip. */
#define SKIP_WITHOUT_UFFD()                                                                        \
	do {                                                                                       \
		if (squib_test_uffd_missing("live saves"))                                         \
			skip();                                                                    \
	} while (0)

static int setup(void **state)
{
	struct savetest_dir *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	savetest_dir_init(t);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	savetest_dir_free(*state);
	free(*state);
	return 0;
}

static struct writervm *new_vm(bool tracker)
{
	struct writervm_config c = {.ram = 32 * MiB,
				    .span = 24 * MiB,
				    .fill = 16 * MiB,
				    .writers = 2,
				    .tracker = tracker,
				    .copy_at_capture = true};
	struct writervm *vm;

	assert_int_equal(writervm_new(&c, &vm), 0);
	return vm;
}

static void save_live(struct writervm *vm, const char *st, const char *mem,
		      enum squib_snapshot_kind kind, const char *parent,
		      struct squib_save_report *rep)
{
	struct hold h = {.vm = vm};
	struct squib_io_hooks hooks = {&h, before};
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(st, mem);
	struct squib_vm v = writervm_vm(vm);
	struct squib_error_detail d;

	req.kind = kind;
	req.parent_state_path = parent;
	req.live = true;
	req.digests = true;
	req.hooks = &hooks;
	if (squib_save(&v, &req, rep, &d))
		fail_msg("live save of %s: %s", mem, savetest_message(&d));
	assert_true(h.held);
}

/* The layers (chain: base first; n 0 for a Full) restored into fresh memory equal want. */
static void assert_image(const char *mem, const char *const *chain, size_t n, const uint8_t *want,
			 uint64_t size)
{
	struct squib_guest_memory *g;
	struct squib_error_detail d;
	const struct squib_vm_region *r;

	if (squib_memfile_verify(mem, true, NULL, &d))
		fail_msg("verify %s: %s", mem, savetest_message(&d));
	if (squib_guest_memory_open(mem, chain, n, NULL, SQUIB_BACKEND_COPY, &g, &d))
		fail_msg("open %s: %s", mem, savetest_message(&d));
	r = squib_guest_memory_region(g, 0);
	assert_int_equal(r->size, size);
	for (uint64_t off = 0; off < size; off += 4096)
		if (memcmp((const uint8_t *)r->host + off, want + off, 4096))
			fail_msg("%s: page at 0x%llx differs from the pause instant", mem,
				 (unsigned long long)off);
	squib_guest_memory_free(g);
}

/* Another userfaultfd registers the RAM for write-protect: only when nobody holds it. */
static bool ram_registrable(uint8_t *ram, uint64_t size)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg = {.range = {(uintptr_t)ram, size},
				      .mode = UFFDIO_REGISTER_MODE_WP};
	bool ok;

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, UFFDIO_API, &api), 0);
	ok = ioctl(fd, UFFDIO_REGISTER, &reg) == 0;
	if (ok)
		assert_int_equal(ioctl(fd, UFFDIO_UNREGISTER, &reg.range), 0);
	close(fd);
	return ok;
}

static void test_should_save_exactly_the_pause_instant_while_writers_run(void **state)
{
	struct savetest_dir *t = *state;
	struct writervm *vm;
	struct squib_save_report rep;

	SKIP_WITHOUT_UFFD();
	vm = new_vm(false);
	save_live(vm, t->state, t->mem, SQUIB_SNAPSHOT_FULL, NULL, &rep);
	assert_true(rep.live);
	assert_true(rep.resumed && rep.state_published);
	/* The writers hit protected pages: their pages were copied first. */
	assert_true(rep.live_write_faults > 0);
	assert_true(rep.live_pages_on_write > 0);
	assert_image(t->mem, NULL, 0, writervm_pause_copy(vm), 32 * MiB);
	/* Unprotected and unregistered afterwards; the writers still run. */
	assert_true(ram_registrable(writervm_ram(vm), 32 * MiB));
	writervm_wait_stores(vm, 1000);
	writervm_free(vm);
}

static void test_should_keep_dirty_tracking_across_a_live_full(void **state)
{
	struct savetest_dir *t = *state;
	struct writervm *vm;
	struct squib_save_report rep;
	char *dstate = NULL, *dmem = NULL;
	const char *chain[1] = {t->mem};

	SKIP_WITHOUT_UFFD();
	vm = new_vm(true);
	assert_true(asprintf(&dstate, "%s/d.snap", t->dir) > 0);
	assert_true(asprintf(&dmem, "%s/d.mem", t->dir) > 0);
	save_live(vm, t->state, t->mem, SQUIB_SNAPSHOT_FULL, NULL, &rep);
	assert_true(rep.live);
	assert_image(t->mem, NULL, 0, writervm_pause_copy(vm), 32 * MiB);
	writervm_wait_stores(vm, STORES_DURING_SAVE);
	/* The Diff (live too) over it: base + diff = RAM at the Diff's pause. */
	save_live(vm, dstate, dmem, SQUIB_SNAPSHOT_DIFF, t->state, &rep);
	assert_true(rep.live);
	assert_true(rep.pages_written > 0);
	assert_image(dmem, chain, 1, writervm_pause_copy(vm), 32 * MiB);
	writervm_free(vm);
	unlink(dstate);
	unlink(dmem);
	free(dstate);
	free(dmem);
}

static void test_should_publish_nothing_and_unprotect_when_failing_halfway(void **state)
{
	struct savetest_dir *t = *state;
	struct hold h = {.fail_at = 2};
	struct squib_io_hooks hooks = {&h, before};
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct writervm *vm;
	struct squib_vm v;

	SKIP_WITHOUT_UFFD();
	vm = h.vm = new_vm(true);
	v = writervm_vm(vm);
	req.live = true;
	req.hooks = &hooks;
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, ENOSPC);
	assert_true(rep.live && rep.resumed);
	assert_false(rep.memory_published || rep.state_published);
	savetest_assert_no_files(t);
	assert_int_equal(savetest_temps(t), 0);
	assert_true(ram_registrable(writervm_ram(vm), 32 * MiB));
	writervm_wait_stores(vm, STORES_DURING_SAVE); /* the guest runs */
	writervm_free(vm);
}

/* The child: a live save that Ctrl-C interrupts at its second memory write. */
static void interrupted_child(const struct savetest_dir *t)
{
	struct writervm_config c = {
	    .ram = 32 * MiB, .span = 24 * MiB, .fill = 16 * MiB, .writers = 2};
	struct writervm *vm;
	struct hold h = {.kill_at = 2};
	struct squib_io_hooks hooks = {&h, before};
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_vm v;

	if (writervm_new(&c, &vm))
		_exit(3);
	h.vm = vm;
	v = writervm_vm(vm);
	req.live = true;
	req.hooks = &hooks;
	squib_save(&v, &req, NULL, NULL);
	_exit(4); /* not reached: SIGINT ended the process */
}

static void test_should_publish_nothing_when_interrupted_halfway(void **state)
{
	struct savetest_dir *t = *state;
	struct writervm *vm;
	struct squib_save_report rep;
	struct stat st;
	int status;
	pid_t pid;

	SKIP_WITHOUT_UFFD();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		interrupted_child(t);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
	assert_int_equal(stat(t->state, &st), -1);
	assert_int_equal(stat(t->mem, &st), -1);
	/* The paths are free again: the next live save publishes the pause instant. */
	savetest_remove_temps(t);
	vm = new_vm(false);
	save_live(vm, t->state, t->mem, SQUIB_SNAPSHOT_FULL, NULL, &rep);
	assert_true(rep.live);
	assert_image(t->mem, NULL, 0, writervm_pause_copy(vm), 32 * MiB);
	writervm_free(vm);
}

static void test_should_save_stop_the_world_when_another_userfaultfd_serves_ram(void **state)
{
	struct savetest_dir *t = *state;
	struct writervm *vm = new_vm(false);
	struct squib_guest_region g = {WRITERVM_GPA, 32 * MiB, writervm_ram(vm), 0};
	struct squib_memory_map map = {&g, 1};
	struct squib_tracker *wp;
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_vm v = writervm_vm(vm);
	struct squib_save_report rep;
	struct squib_error_detail d;

	if (squib_tracker_uffd_wp_new(&map, &wp, &d) || squib_tracker_start(wp, &d)) {
		fprintf(
		    stderr,
		    "*** SKIP: no uffd-wp tracker here (%s): live save beside it not tested ***\n",
		    savetest_message(&d));
		writervm_free(vm);
		skip();
	}
	req.live = true;
	if (squib_save(&v, &req, &rep, &d))
		fail_msg("save: %s", savetest_message(&d));
	assert_false(rep.live);
	assert_int_equal(rep.live_errno, EBUSY);
	assert_image(t->mem, NULL, 0, writervm_pause_copy(vm), 32 * MiB);
	squib_tracker_free(wp);
	writervm_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_should_save_exactly_the_pause_instant_while_writers_run, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_keep_dirty_tracking_across_a_live_full,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_publish_nothing_and_unprotect_when_failing_halfway, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_publish_nothing_when_interrupted_halfway,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_save_stop_the_world_when_another_userfaultfd_serves_ram, setup,
		teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
