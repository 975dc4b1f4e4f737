/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `restore --from URL/ID` on real /dev/kvm: the counter guest saved by `run`,
 * pushed to a directory store (no server needed, so this runs inside the
 * TCG test VM of `make test-kvm-vm` as well), restored lazily through a
 * `serve --from` child and the chunk cache, with a working set recorded and
 * prefetched; a chunk with a flipped byte stops the guest for good (exit 1)
 * with serve's error naming the chunk. Skipped (exit 77, one line) only
 * when /dev/kvm does not exist.
 */
#include "spawn.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/kvm.h>
#include <squib/store.h>

struct fx {
	char *dir, *guest, *ref, *key;
};

static void cli(const char *dir, char *const *args, struct squib_test_proc *p)
{
	char *argv[16];
	const char *path = getenv("SQUIB_CLI");
	size_t n = 0;

	if (!path || !*path)
		fail_msg("SQUIB_CLI is not set (run through ctest)");
	argv[n++] = (char *)path;
	while (*args && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;
	squib_test_spawn(dir, argv, p);
}

/* The counter guest run, saved, and pushed to DIR/store; its URL/ID. */
static int setup(void **state)
{
	const char *guests = getenv("SQUIB_GUESTS");
	struct fx *f = calloc(1, sizeof(*f));
	struct squib_test_proc p;
	const char *at;

	f->dir = squib_test_tmpdir();
	assert_true(asprintf(&f->guest, "%s/counter.bin", guests ? guests : "tests/guests") > 0);
	cli(f->dir, (char *[]){"run", f->guest, "vm.snap", NULL}, &p);
	if (p.status)
		fail_msg("run: %s", p.err);
	squib_test_proc_free(&p);
	cli(f->dir, (char *[]){"push", "vm.snap", "--to", "store", NULL}, &p);
	if (p.status || !(at = strstr(p.out, "store/")))
		fail_msg("push: %s %s", p.out, p.err);
	f->ref = strndup(at, strcspn(at, "\n"));
	squib_test_proc_free(&p);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	squib_test_rmtree(f->dir);
	free(f->dir);
	free(f->guest);
	free(f->ref);
	free(f->key);
	free(f);
	return 0;
}

static unsigned long long pager_faults(const char *out)
{
	const char *at = strstr(out, "faults ");

	if (!at)
		fail_msg("no serve statistics in '%s'", out);
	return strtoull(at + 7, NULL, 10);
}

static void test_should_restore_a_guest_lazily_from_a_store(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;
	unsigned long long on_demand, prefetched;

	cli(f->dir,
	    (char *[]){"restore", "--from", f->ref, "--cache", "cache", "--no-prewarm",
		       "--record-ws", "vm.ws", NULL},
	    &p);
	if (p.status)
		fail_msg("restore --from: %s %s", p.out, p.err);
	assert_non_null(strstr(p.out, "(uffd, external handler backend, 2 vCPUs)"));
	assert_non_null(strstr(p.out, "resumed; after 2 more reports per vCPU"));
	assert_non_null(strstr(p.out, "recorded working set: "));
	assert_null(strstr(p.out, "store: 0 chunks fetched"));
	on_demand = pager_faults(p.out);
	assert_true(on_demand > 0);
	squib_test_proc_free(&p);
	/* Again, warm: every chunk from the cache, the working set prefetched. */
	cli(f->dir,
	    (char *[]){"restore", "--from", f->ref, "--cache", "cache", "--no-prewarm",
		       "--prefetch-ws", "vm.ws", NULL},
	    &p);
	if (p.status)
		fail_msg("restore --from --prefetch-ws: %s %s", p.out, p.err);
	assert_non_null(strstr(p.out, "resumed; after 2 more reports per vCPU"));
	assert_non_null(strstr(p.out, "store: 0 chunks fetched"));
	assert_non_null(strstr(p.out, "prefetched the working set: "));
	/* serve prefetches while the guest runs (no ready signal in Firecracker's protocol):
	 * how many faults the guest still takes is a race, so only the outcome is checked. */
	prefetched = pager_faults(p.out);
	fprintf(stderr, "guest faults: %llu on demand, %llu with the working set prefetched\n",
		on_demand, prefetched);
	squib_test_proc_free(&p);
}

static void test_should_stop_the_guest_for_good_on_a_bad_chunk(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;
	char *chunks = squib_test_path(f->dir, "store/chunks"), *cmd;

	/* Every stored chunk changed: whichever the guest needs first is refused. */
	assert_true(asprintf(&cmd,
			     "for c in %s/*; do printf '\\377' | dd of=$c bs=1 seek=8 "
			     "conv=notrunc status=none; done",
			     chunks) > 0);
	assert_int_equal(system(cmd), 0);
	cli(f->dir, (char *[]){"restore", "--from", f->ref, "--cache", "none", NULL}, &p);
	assert_int_equal(p.status, 1);
	assert_non_null(strstr(p.err, "squib-snapshot: serve: "));
	assert_non_null(strstr(p.err, "chunks/"));
	assert_non_null(strstr(p.err, "guest memory can no longer be served"));
	assert_null(strstr(p.out, "resumed; after"));
	squib_test_proc_free(&p);
	free(cmd);
	free(chunks);
}

/* The 32-hex id on the "saved into ...: image ID (kind)" line of that kind. */
static char *saved_id(const char *out, const char *kind)
{
	char tail[32];
	const char *at = out;

	snprintf(tail, sizeof(tail), " (%s), ", kind);
	while ((at = strstr(at, ": image ")))
		if (!strncmp((at += 8) + 32, tail, strlen(tail)))
			return strndup(at, 32);
	fail_msg("no saved %s image in '%s'", kind, out);
	return NULL;
}

/* `run --to DIR --with-diff --live`: a Full and a Diff straight into the store,
 * no local file; the Diff restores lazily and runs on, and both pull and verify. */
static void test_should_save_a_running_guest_straight_into_a_store(void **state)
{
	struct fx *f = *state;
	struct squib_test_proc p;
	char *full, *diff, *ref, *state_path, *pulled;

	cli(f->dir, (char *[]){"run", f->guest, "--to", "direct", "--with-diff", "--live", NULL},
	    &p);
	if (p.status)
		fail_msg("run --to: %s %s", p.out, p.err);
	assert_non_null(strstr(p.out, "saved into direct: image "));
	full = saved_id(p.out, "full");
	diff = saved_id(p.out, "diff");
	assert_string_not_equal(full, diff);
	assert_null(strstr(p.out, "live: not possible"));
	squib_test_proc_free(&p);
	assert_true(asprintf(&ref, "direct/%s", diff) > 0);
	cli(f->dir, (char *[]){"restore", "--from", ref, "--cache", "none", "--no-prewarm", NULL},
	    &p);
	if (p.status)
		fail_msg("restore --from %s: %s %s", ref, p.out, p.err);
	assert_non_null(strstr(p.out, "resumed; after 2 more reports per vCPU"));
	squib_test_proc_free(&p);
	pulled = squib_test_path(f->dir, "pulled");
	assert_int_equal(mkdir(pulled, 0700), 0);
	free(pulled);
	cli(f->dir, (char *[]){"pull", ref, "pulled", NULL}, &p);
	if (p.status)
		fail_msg("pull %s: %s %s", ref, p.out, p.err);
	squib_test_proc_free(&p);
	assert_true(asprintf(&state_path, "pulled/%s.snap", diff) > 0);
	cli(f->dir, (char *[]){"verify", state_path, NULL}, &p);
	if (p.status)
		fail_msg("verify %s: %s %s", state_path, p.out, p.err);
	squib_test_proc_free(&p);
	free(state_path);
	free(ref);
	free(full);
	free(diff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_should_restore_a_guest_lazily_from_a_store, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_stop_the_guest_for_good_on_a_bad_chunk,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_save_a_running_guest_straight_into_a_store, setup, teardown),
	};

	if (access("/dev/kvm", R_OK | W_OK)) {
		fprintf(
		    stderr,
		    "*** SKIPPED test_kvm_store: /dev/kvm does not exist on this machine ***\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
