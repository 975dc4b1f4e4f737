/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib_save(): upstream save.rs and the save half of integration.rs, the
 * quiesce protocol (a vCPU that never acks), I-SNAP-6, the order of the
 * publication steps, and the dirty-tracking contract (reset only once the
 * pair is durable, pages given back on failure). Real files in a temp
 * directory, real anonymous guest memory, the test VM.
 */
#include "savetest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/describe.h>
#include <squib/envelope.h>
#include <squib/memfile.h>
#include <squib/save.h>

#define KiB 1024ull
#define GPA 0x80000000ull

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
	struct savetest_dir *t = *state;

	savetest_dir_free(t);
	free(t);
	return 0;
}

static uint64_t hp(void)
{
	return (uint64_t)sysconf(_SC_PAGESIZE);
}

static uint64_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static void assert_running(struct squib_testvm *vm, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		assert_false(squib_testvm_vcpu_paused(vm, i));
		assert_false(squib_testvm_vcpu_pause_pending(vm, i));
		assert_int_equal(squib_testvm_vcpu_pauses(vm, i), squib_testvm_vcpu_resumes(vm, i));
	}
}

static struct squib_testvm_config tracked(uint64_t size, uint32_t vcpus)
{
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, size, vcpus);

	c.track_dirty_pages = true;
	c.with_tracker = true;
	return c;
}

static struct squib_memfile_manifest verify_mem(const char *path)
{
	struct squib_memfile_manifest m;
	struct squib_error_detail d;

	if (squib_memfile_verify(path, true, &m, &d))
		fail_msg("memory file %s: %s", path, savetest_message(&d));
	return m;
}

/* ---- upstream save.rs ----------------------------------------------------------------- */

static void test_should_save_full_snapshot_pair_atomically(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 2);
	struct squib_testvm *vm = savetest_vm(&c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_save_report rep;
	struct squib_memfile_manifest m;
	uint8_t id[SQUIB_MEMORY_ID_SIZE];

	squib_testvm_fill(vm, 7, 1);
	savetest_save_ok(vm, &req, &rep);
	assert_true(squib_test_exists(t->state));
	assert_true(squib_test_exists(t->mem));
	assert_int_equal(savetest_layer_files(t), 0);
	m = verify_mem(t->mem);
	assert_int_equal(m.layout.ram_size, 32 * KiB);
	assert_int_equal(m.layout.kind, SQUIB_MEMORY_FULL);
	assert_int_equal(file_size(t->mem), m.layout.file_size);
	/* The state names exactly this memory file. */
	savetest_state_memory_id(t->state, id);
	assert_memory_equal(id, m.layout.id, SQUIB_MEMORY_ID_SIZE);
	assert_memory_equal(rep.memory_id, m.layout.id, SQUIB_MEMORY_ID_SIZE);
	assert_int_equal(rep.kind, SQUIB_SNAPSHOT_FULL);
	assert_int_equal(rep.pages_written, 32 * KiB / hp());
	assert_int_equal(rep.memory_bytes_written, 32 * KiB);
	assert_int_equal(rep.state_file_size, file_size(t->state));
	assert_true(rep.memory_published && rep.state_published && rep.resumed);
	assert_false(rep.recovered);
	assert_running(vm, 2);
	assert_int_equal(squib_testvm_vcpu_pauses(vm, 0), 1);
	squib_memfile_manifest_release(&m);
	squib_testvm_free(vm);
}

static void test_should_reject_diff_without_dirty_bitmap(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 1);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	static const uint8_t parent[SQUIB_MEMORY_ID_SIZE] = {1};
	struct squib_testvm *vm;
	struct squib_error_detail d;
	struct squib_vm v;

	c.track_dirty_pages = true; /* but no tracker: no dirty source */
	vm = savetest_vm(&c);
	v = squib_testvm_vm(vm);
	req.kind = SQUIB_SNAPSHOT_DIFF;
	req.parent_memory_id = parent;
	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_INVALID_PATH);
	assert_string_equal(savetest_message(&d),
			    "invalid snapshot path: Diff snapshot requires track_dirty_pages=true "
			    "and a dirty bitmap");
	savetest_assert_no_files(t);
	assert_running(vm, 1);
	squib_testvm_free(vm);
}

/* I-SNAP-6: the documented fault message, and not a single file. */
static void test_should_reject_diff_when_track_dirty_is_false(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = tracked(32 * KiB, 1);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	static const uint8_t parent[SQUIB_MEMORY_ID_SIZE] = {1};
	struct squib_save_report rep;
	struct squib_testvm *vm;
	struct squib_error_detail d;
	struct squib_vm v;

	c.track_dirty_pages = false; /* a tracker runs, but the VM config says no */
	vm = savetest_vm(&c);
	v = squib_testvm_vm(vm);
	req.kind = SQUIB_SNAPSHOT_DIFF;
	req.parent_memory_id = parent;
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_INVALID_PATH);
	assert_string_equal(savetest_message(&d),
			    "invalid snapshot path: Diff snapshot requested but "
			    "vm_info.track_dirty_pages is false");
	savetest_assert_no_files(t);
	assert_false(rep.memory_published || rep.state_published);
	assert_running(vm, 1);
	squib_testvm_free(vm);
}

static void test_should_save_diff_only_dirty_pages(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = tracked(32 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c), *rvm;
	char *base = squib_test_path(t->dir, "base.mem"),
	     *bsnap = squib_test_path(t->dir, "base.snap");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(bsnap, base);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	const char *chain[] = {base};
	struct squib_save_report rep;
	struct squib_load_result res;
	const uint8_t *g;

	savetest_save_ok(vm, &req, &rep); /* all-zero base */
	assert_int_equal(rep.pages_written, 0);
	assert_int_equal(squib_testvm_write(vm, GPA + 16 * KiB, 9, 16 * KiB), 0);
	req = (struct squib_save_request){.state_path = t->state,
					  .memory_path = t->mem,
					  .kind = SQUIB_SNAPSHOT_DIFF,
					  .page_size = 16 * KiB,
					  .parent_state_path = bsnap};
	/* The parent's geometry had the host page: a 16 KiB diff does not apply on it. */
	{
		struct squib_vm v = squib_testvm_vm(vm);
		struct squib_error_detail d;

		assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_PAIR_MISMATCH);
		savetest_assert_no_files(t);
	}
	req.page_size = 0;
	savetest_save_ok(vm, &req, &rep);
	assert_int_equal(rep.kind, SQUIB_SNAPSHOT_DIFF);
	assert_int_equal(rep.pages_written, 16 * KiB / hp());
	lr.chain = chain;
	lr.chain_len = 1;
	savetest_load_ok(&c, &lr, &rvm, &res);
	g = squib_guest_memory_region(res.memory, 0)->host;
	for (uint64_t i = 0; i < 32 * KiB; i++)
		assert_int_equal(g[i], i < 16 * KiB ? 0 : 9);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	free(base);
	free(bsnap);
}

/* A packed Diff through squib_save: the memory file says so, the pair loads over its chain. */
static void test_should_save_a_packed_diff_and_load_it_over_its_chain(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = tracked(32 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c), *rvm;
	char *base = squib_test_path(t->dir, "base.mem"),
	     *bsnap = squib_test_path(t->dir, "base.snap");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(bsnap, base);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	const char *chain[] = {base};
	struct squib_memfile_manifest m;
	struct squib_save_report rep;
	struct squib_load_result res;
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);
	const uint8_t *g;

	req.packed = true; /* a Full cannot be packed: nothing is written */
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "only a Diff can be packed"));
	req.packed = false;
	assert_int_equal(squib_testvm_write(vm, GPA, 3, 8 * KiB), 0);
	savetest_save_ok(vm, &req, &rep);
	assert_int_equal(squib_testvm_write(vm, GPA + 24 * KiB, 9, 4 * KiB), 0);
	req = (struct squib_save_request){.state_path = t->state,
					  .memory_path = t->mem,
					  .kind = SQUIB_SNAPSHOT_DIFF,
					  .parent_state_path = bsnap,
					  .packed = true};
	savetest_save_ok(vm, &req, &rep);
	assert_int_equal(squib_memfile_verify(t->mem, false, &m, &d), 0);
	assert_true(m.flags & SQUIB_MEMFILE_FLAG_PACKED);
	assert_int_equal(m.layout.file_size, rep.pages_written * hp() + 4096 + 4096);
	assert_int_equal(rep.memory_file_size, m.layout.file_size);
	squib_memfile_manifest_release(&m);
	lr.chain = chain;
	lr.chain_len = 1;
	savetest_load_ok(&c, &lr, &rvm, &res);
	g = squib_guest_memory_region(res.memory, 0)->host;
	for (uint64_t i = 0; i < 32 * KiB; i++)
		assert_int_equal(g[i], i < 8 * KiB ? 3 : i >= 24 * KiB && i < 28 * KiB ? 9 : 0);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	free(base);
	free(bsnap);
}

static void test_should_reject_save_when_state_is_incompatible(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 0);
	struct squib_testvm *vm = savetest_vm(&c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);

	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_INCOMPATIBLE);
	savetest_assert_no_files(t);
	squib_testvm_free(vm);
}

static void test_should_keep_existing_pair_when_save_fails_during_state_validation(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);
	uint8_t *s0, *m0, *s1, *m1;
	size_t sl0, ml0, sl1, ml1;

	squib_testvm_fill(vm, 1, 2);
	savetest_save_ok(vm, &req, NULL);
	savetest_read(t->state, &s0, &sl0);
	savetest_read(t->mem, &m0, &ml0);
	squib_testvm_template(vm)->vm_info.smt = true;
	squib_testvm_fill(vm, 2, 1);
	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_INCOMPATIBLE);
	savetest_read(t->state, &s1, &sl1);
	savetest_read(t->mem, &m1, &ml1);
	assert_int_equal(sl0, sl1);
	assert_int_equal(ml0, ml1);
	assert_memory_equal(s0, s1, sl0);
	assert_memory_equal(m0, m1, ml0);
	assert_int_equal(savetest_layer_files(t), 0);
	assert_running(vm, 1);
	free(s0);
	free(m0);
	free(s1);
	free(m1);
	squib_testvm_free(vm);
}

/* ---- paths ------------------------------------------------------------------------------ */

/* Upstream's cross-filesystem test really tests a missing directory: open fails, nothing stays. */
static void test_should_reject_a_missing_directory_without_creating_files(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c);
	char *missing = squib_test_path(t->dir, "no/such/dir/x.snap");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(missing, t->mem);
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);

	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	savetest_assert_no_files(t);
	req = (struct squib_save_request)SQUIB_SAVE_REQUEST_INIT(t->state, missing);
	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_IO);
	savetest_assert_no_files(t);
	assert_running(vm, 1);
	free(missing);
	squib_testvm_free(vm);
}

static void test_should_reject_paths_that_cannot_form_a_pair(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->state);
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);

	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_INVALID_PATH);
	{
		char *temp = squib_test_path(t->dir, "x.snap.0123456789abcdef.tmp");

		req.memory_path = temp; /* named like a temp of the state */
		assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_INVALID_PATH);
		assert_false(squib_test_exists(temp));
		free(temp);
	}
	req.memory_path = NULL;
	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_INVALID_PATH);
	req = (struct squib_save_request)SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	req.kind = SQUIB_SNAPSHOT_DIFF; /* no parent */
	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	req.kind = SQUIB_SNAPSHOT_FULL;
	req.page_size = 3000;
	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_INVALID_PATH);
	assert_int_equal(squib_save(NULL, &req, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(squib_save(&v, NULL, NULL, &d), SQUIB_E_INVALID_ARGUMENT);
	savetest_assert_no_files(t);
	assert_int_equal(squib_testvm_vcpu_pauses(vm, 0), 0); /* refused before the pause */
	squib_testvm_free(vm);
}

/* The memory on another filesystem (/dev/shm, tmpfs) than the state: each file is
 * published in its own directory, both directories are synced, and the pair loads. */
static void test_should_save_a_pair_split_over_two_filesystems(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 64 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c), *rvm;
	char shm[] = "/dev/shm/squib-save-XXXXXX";
	char *mem;
	struct squib_save_request req;
	struct squib_load_request lr;
	struct squib_load_result res;

	if (!mkdtemp(shm)) {
		fprintf(stderr, "SKIP: /dev/shm is not available (%s)\n", strerror(errno));
		squib_testvm_free(vm);
		skip();
	}
	mem = squib_test_path(shm, "x.mem");
	req = (struct squib_save_request)SQUIB_SAVE_REQUEST_INIT(t->state, mem);
	lr = (struct squib_load_request)SQUIB_LOAD_REQUEST_INIT(t->state, mem);
	squib_testvm_fill(vm, 3, 3);
	savetest_save_ok(vm, &req, NULL);
	savetest_load_ok(&c, &lr, &rvm, &res);
	savetest_assert_memory_equal(res.memory, vm);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	squib_test_rmtree(shm);
	free(mem);
}

/* ---- the VM ------------------------------------------------------------------------------- */

static void test_should_time_out_quiesce_when_a_vcpu_never_acks(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 3);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_save_report rep;
	struct squib_testvm *vm;
	struct squib_error_detail d;
	struct squib_vm v;

	c.stuck_vcpu = 1;
	vm = savetest_vm(&c);
	v = squib_testvm_vm(vm);
	/* The default, upstream's 1 s. */
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_QUIESCE_TIMEOUT);
	assert_string_equal(savetest_message(&d),
			    "a vCPU did not ack quiesce within the timeout (vCPU 1 did not ack the "
			    "pause within 1000 ms)");
	savetest_assert_no_files(t);
	assert_string_equal(squib_testvm_log(vm), ""); /* never captured */
	/* The others paused and were resumed; the stuck one's request was withdrawn. */
	assert_int_equal(squib_testvm_vcpu_pauses(vm, 0), 1);
	assert_int_equal(squib_testvm_vcpu_pauses(vm, 1), 0);
	assert_running(vm, 3);
	assert_false(rep.resumed); /* the quiesce resumed them itself */
	squib_testvm_free(vm);
}

static void test_should_stay_paused_when_asked_also_on_failure(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 2);
	struct squib_testvm *vm = savetest_vm(&c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);

	req.stay_paused = true;
	savetest_save_ok(vm, &req, &rep);
	assert_false(rep.resumed);
	assert_true(squib_testvm_vcpu_paused(vm, 0) && squib_testvm_vcpu_paused(vm, 1));
	assert_int_equal(squib_vm_resume(&v, &d), 0);
	assert_running(vm, 2);
	squib_testvm_fail_op(vm, "capture");
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_CAPTURE);
	assert_true(squib_testvm_vcpu_paused(vm, 0) && squib_testvm_vcpu_paused(vm, 1));
	req.stay_paused = false;
	assert_int_equal(squib_vm_resume(&v, &d), 0);
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_CAPTURE);
	assert_running(vm, 2);
	assert_true(rep.resumed);
	squib_testvm_free(vm);
}

/* A backend's -EINTR is an I/O error with its errno, not "unknown squib error -4". */
static void test_should_report_a_backend_errno_as_an_io_error(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 2);
	struct squib_testvm *vm = savetest_vm(&c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);

	squib_testvm_fail_op_rc(vm, "capture", -EINTR);
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_IO);
	assert_int_equal(d.code, SQUIB_E_IO);
	assert_int_equal(d.os_errno, EINTR);
	assert_string_equal(savetest_message(&d), "snapshot I/O error: Interrupted system call "
						  "(os error 4) (testvm: capture)");
	savetest_assert_no_files(t);
	assert_running(vm, 2);
	/* A value that is neither: the backend's bug, named. */
	squib_testvm_fail_op_rc(vm, "capture", 7);
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_CAPTURE);
	assert_string_equal(d.msg,
			    "testvm: capture returned 7, neither a SQUIB_E_* code nor -errno");
	savetest_assert_no_files(t);
	squib_testvm_free(vm);
}

/* ---- publication order -------------------------------------------------------------------- */

#define MAX_STEPS 256

struct recorder {
	int n;
	enum squib_io_step step[MAX_STEPS];
	char path[MAX_STEPS][64];
	int fail_at; /* -1: none */
	int fail_errno;
};

static int record(void *ctx, enum squib_io_step step, const char *path)
{
	struct recorder *r = ctx;
	const char *base = strrchr(path, '/');
	int i = r->n;

	if (r->n < MAX_STEPS) {
		r->step[r->n] = step;
		snprintf(r->path[r->n], sizeof(r->path[0]), "%s", base ? base + 1 : path);
		r->n++;
	}
	return i == r->fail_at ? -r->fail_errno : 0;
}

static int find_step(const struct recorder *r, enum squib_io_step s, const char *path)
{
	for (int i = 0; i < r->n; i++)
		if (r->step[i] == s && (!path || !strcmp(r->path[i], path)))
			return i;
	return -1;
}

/* The first step s on a temp of `name` (NAME.<hex>.tmp, hex_len digits). */
static int find_temp_step(const struct recorder *r, enum squib_io_step s, const char *name,
			  size_t hex_len)
{
	size_t n = strlen(name);

	for (int i = 0; i < r->n; i++)
		if (r->step[i] == s && !strncmp(r->path[i], name, n) && r->path[i][n] == '.' &&
		    strlen(r->path[i]) == n + 1 + hex_len + 4 &&
		    !strcmp(r->path[i] + n + 1 + hex_len, ".tmp"))
			return i;
	return -1;
}

/* Both temps durable before either rename; memory renamed before state; each directory synced. */
static void test_should_publish_memory_before_state_after_both_are_durable(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 64 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c);
	struct recorder r = {.fail_at = -1};
	struct squib_io_hooks h = {&r, record};
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	const char *dir = strrchr(t->dir, '/') + 1;
	int mem_rename, state_rename;

	struct squib_save_report rep;
	char id[33], state_temp[64];

	req.hooks = &h;
	squib_testvm_fill(vm, 5, 2);
	savetest_save_ok(vm, &req, &rep);
	mem_rename = find_step(&r, SQUIB_IO_RENAME, "x.mem");
	state_rename = find_step(&r, SQUIB_IO_RENAME, "x.snap");
	assert_true(mem_rename >= 0 && state_rename > mem_rename);
	/* Both destinations locked first, for the whole save. */
	assert_int_equal(find_step(&r, SQUIB_IO_LOCK, ".x.mem.squib-lock"), 0);
	assert_int_equal(find_step(&r, SQUIB_IO_LOCK, ".x.snap.squib-lock"), 1);
	assert_true(find_temp_step(&r, SQUIB_IO_OPEN, "x.mem", 16) == 2);
	/* The state temp is named after the new memory id: recovery finds it by name. */
	squib_memfile_id_hex(rep.memory_id, id);
	snprintf(state_temp, sizeof(state_temp), "x.snap.%s.tmp", id);
	assert_true(find_step(&r, SQUIB_IO_OPEN, state_temp) == 3); /* both open before any write */
	assert_true(find_temp_step(&r, SQUIB_IO_FSYNC, "x.mem", 16) < mem_rename);
	assert_true(find_step(&r, SQUIB_IO_FSYNC, state_temp) < mem_rename);
	assert_true(find_step(&r, SQUIB_IO_CLOSE, state_temp) < mem_rename);
	assert_int_equal(r.step[mem_rename + 1], SQUIB_IO_FSYNC_DIR);
	assert_string_equal(r.path[mem_rename + 1], dir);
	assert_int_equal(r.step[state_rename + 1], SQUIB_IO_FSYNC_DIR);
	assert_int_equal(state_rename + 2, r.n); /* the directory sync is the last step */
	squib_testvm_free(vm);
}

/* ---- dirty tracking ----------------------------------------------------------------------------
 */

static bool temp_exists(const char *path)
{
	return squib_test_temps(path, NULL) > 0;
}

/* A tracker that records when it is reset and what it is given back. */
struct probe {
	const char *state, *mem; /* the pair being saved */
	int resets, give_backs;
	bool durable_at_reset;
};

static int probe_start(void *ctx, struct squib_error_detail *d)
{
	(void)ctx;
	(void)d;
	return 0;
}

static int probe_harvest(void *ctx, struct squib_dirty_bitmap *dst, struct squib_error_detail *d)
{
	(void)ctx;
	(void)dst;
	(void)d;
	return 0;
}

static int probe_give_back(void *ctx, const struct squib_dirty_bitmap *src,
			   struct squib_error_detail *d)
{
	struct probe *p = ctx;

	(void)src;
	(void)d;
	p->give_backs++;
	return 0;
}

static int probe_reset(void *ctx, struct squib_error_detail *d)
{
	struct probe *p = ctx;
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	struct squib_memfile_manifest m;

	(void)d;
	p->resets++;
	/* Durable and in place: both names carry the new pair, no temp is left. */
	savetest_state_memory_id(p->state, id);
	m = verify_mem(p->mem);
	p->durable_at_reset = !memcmp(id, m.layout.id, SQUIB_MEMORY_ID_SIZE) &&
			      !temp_exists(p->state) && !temp_exists(p->mem);
	squib_memfile_manifest_release(&m);
	return 0;
}

static int probe_stop(void *ctx, struct squib_error_detail *d)
{
	(void)ctx;
	(void)d;
	return 0;
}

static void probe_free(void *ctx)
{
	(void)ctx;
}

static const struct squib_tracker_ops probe_ops = {
    "probe", probe_start, probe_harvest, probe_give_back, probe_reset, probe_stop, probe_free};

static struct squib_tracker *add_probe(struct squib_testvm *vm, struct probe *p)
{
	const struct squib_vm_region *r = squib_testvm_region(vm, 0);
	struct squib_guest_region g = {r->guest_addr, r->size, r->host, 0};
	struct squib_memory_map map = {&g, 1};
	struct squib_tracker *tr = NULL;

	assert_int_equal(squib_tracker_new(&probe_ops, p, &map, &tr, NULL), 0);
	assert_int_equal(squib_tracker_start(tr, NULL), 0);
	assert_int_equal(squib_tracker_set_add(squib_testvm_trackers(vm), tr, NULL), 0);
	return tr;
}

static void test_should_reset_tracking_only_after_the_pair_is_durable(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = tracked(64 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c);
	struct probe p = {0};
	struct squib_tracker *tr = add_probe(vm, &p);
	struct recorder r = {.fail_at = -1};
	struct squib_io_hooks h = {&r, record};
	char *base = squib_test_path(t->dir, "base.mem"),
	     *bsnap = squib_test_path(t->dir, "base.snap");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(bsnap, base);
	uint8_t parent[SQUIB_MEMORY_ID_SIZE];
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);

	p.state = bsnap;
	p.mem = base;
	savetest_save_ok(vm, &req, &rep); /* a Full checkpoint resets too */
	assert_int_equal(p.resets, 1);
	assert_true(p.durable_at_reset);
	p.state = t->state;
	p.mem = t->mem;
	memcpy(parent, rep.memory_id, sizeof(parent));
	req = (struct squib_save_request){.state_path = t->state,
					  .memory_path = t->mem,
					  .kind = SQUIB_SNAPSHOT_DIFF,
					  .parent_memory_id = parent,
					  .hooks = &h};
	squib_testvm_write(vm, GPA, 0x11, hp());
	/* Fail at every step of the save once: never a reset, always a give-back. */
	savetest_save_ok(vm, &req, &rep);
	assert_int_equal(p.resets, 2);
	assert_true(p.durable_at_reset);
	struct recorder first = r;

	for (int i = 0, n = r.n, backs = 0; i < n; i++) {
		/* The locks come before the harvest: failing there gives nothing back. */
		bool harvested = first.step[i] != SQUIB_IO_LOCK;

		/* Start each from a clean directory state: no recovery steps in the count. */
		savetest_remove_temps(t);
		squib_testvm_write(vm, GPA, 0x11, hp()); /* the same steps as the first save */
		r = (struct recorder){.fail_at = i, .fail_errno = EIO};
		if (squib_save(&v, &req, NULL, &d) >= 0)
			fail_msg("step %d of %d did not fail", i, n);
		assert_int_equal(p.resets, 2);
		backs += harvested;
		assert_int_equal(p.give_backs, backs);
	}
	squib_testvm_free(vm);
	squib_tracker_free(tr);
	free(base);
	free(bsnap);
}

/* A failed Diff gives its pages back: the next Diff holds them. */
static void test_should_give_harvested_pages_back_when_the_save_fails(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = tracked(64 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c), *rvm;
	char *base = squib_test_path(t->dir, "base.mem"),
	     *bsnap = squib_test_path(t->dir, "base.snap");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(bsnap, base);
	struct recorder r = {.fail_errno = ENOSPC};
	struct squib_io_hooks h = {&r, record};
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	const char *chain[] = {base};
	uint8_t parent[SQUIB_MEMORY_ID_SIZE];
	struct squib_save_report rep;
	struct squib_load_result res;
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);

	squib_testvm_fill(vm, 9, 1);
	savetest_save_ok(vm, &req, &rep);
	memcpy(parent, rep.memory_id, sizeof(parent));
	req = (struct squib_save_request){.state_path = t->state,
					  .memory_path = t->mem,
					  .kind = SQUIB_SNAPSHOT_DIFF,
					  .parent_memory_id = parent,
					  .hooks = &h};
	assert_int_equal(squib_testvm_write(vm, GPA + 2 * hp(), 0xab, hp()), 0);
	r.fail_at = 4; /* lock, lock, open, open, the first page write: ENOSPC */
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, ENOSPC);
	savetest_assert_no_files(t);
	assert_int_equal(squib_testvm_write(vm, GPA + 5 * hp(), 0xcd, hp()), 0);
	r = (struct recorder){.fail_at = -1};
	savetest_save_ok(vm, &req, &rep);
	assert_int_equal(rep.pages_written, 2); /* page 2 came back, page 5 is new */
	lr.chain = chain;
	lr.chain_len = 1;
	savetest_load_ok(&c, &lr, &rvm, &res);
	savetest_assert_memory_equal(res.memory, vm);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	free(base);
	free(bsnap);
}

static void test_should_refuse_a_diff_over_its_own_parent(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = tracked(32 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct squib_vm v = squib_testvm_vm(vm);
	uint8_t *m0, *m1;
	size_t l0, l1;

	savetest_save_ok(vm, &req, &rep);
	savetest_read(t->mem, &m0, &l0);
	req.kind = SQUIB_SNAPSHOT_DIFF;
	req.parent_state_path = t->state;
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "replace its own parent"));
	savetest_read(t->mem, &m1, &l1);
	assert_int_equal(l0, l1);
	assert_memory_equal(m0, m1, l0);
	free(m0);
	free(m1);
	squib_testvm_free(vm);
}

/* ---- integration: describe and devices
 * ----------------------------------------------------------- */

static void test_should_describe_the_state_after_save(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_description desc;
	char *human = NULL;

	squib_testvm_template(vm)->vm_info.mem_size_mib = 4; /* upstream's integration value */
	savetest_save_ok(vm, &req, NULL);
	assert_int_equal(squib_describe(t->state, &desc, NULL), 0);
	assert_int_equal(squib_describe_human(&desc, &human), 0);
	assert_non_null(strstr(human, "vcpu_count:          1"));
	assert_non_null(strstr(human, "mem_size_mib:        4"));
	assert_non_null(strstr(human, "crc_ok:              yes"));
	assert_true(desc.inferred_memory_exists);
	assert_int_equal(desc.inferred_memory_size, file_size(t->mem));
	assert_int_equal(desc.device_count, 2);
	assert_true(desc.mmds_present);
	free(human);
	squib_description_free(&desc);
	squib_testvm_free(vm);
}

/* State and memory are private whatever the umask; a replaced pair keeps its modes. */
static void test_should_create_the_pair_0600_and_keep_a_replaced_pairs_modes(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 32 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	mode_t old = umask(0);
	struct stat s, m;

	squib_testvm_fill(vm, 3, 1);
	savetest_save_ok(vm, &req, NULL);
	assert_int_equal(stat(t->state, &s), 0);
	assert_int_equal(stat(t->mem, &m), 0);
	assert_int_equal(s.st_mode & 0777, 0600);
	assert_int_equal(m.st_mode & 0777, 0600);
	assert_int_equal(chmod(t->state, 0640), 0);
	assert_int_equal(chmod(t->mem, 0400), 0);
	savetest_save_ok(vm, &req, NULL);
	umask(old);
	assert_int_equal(stat(t->state, &s), 0);
	assert_int_equal(stat(t->mem, &m), 0);
	assert_int_equal(s.st_mode & 0777, 0640);
	assert_int_equal(m.st_mode & 0777, 0400);
	assert_int_equal(savetest_layer_files(t), 0);
	squib_testvm_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(test_should_save_full_snapshot_pair_atomically),
	    T(test_should_create_the_pair_0600_and_keep_a_replaced_pairs_modes),
	    T(test_should_reject_diff_without_dirty_bitmap),
	    T(test_should_reject_diff_when_track_dirty_is_false),
	    T(test_should_save_diff_only_dirty_pages),
	    T(test_should_save_a_packed_diff_and_load_it_over_its_chain),
	    T(test_should_reject_save_when_state_is_incompatible),
	    T(test_should_keep_existing_pair_when_save_fails_during_state_validation),
	    T(test_should_reject_a_missing_directory_without_creating_files),
	    T(test_should_reject_paths_that_cannot_form_a_pair),
	    T(test_should_save_a_pair_split_over_two_filesystems),
	    T(test_should_time_out_quiesce_when_a_vcpu_never_acks),
	    T(test_should_stay_paused_when_asked_also_on_failure),
	    T(test_should_report_a_backend_errno_as_an_io_error),
	    T(test_should_publish_memory_before_state_after_both_are_durable),
	    T(test_should_reset_tracking_only_after_the_pair_is_durable),
	    T(test_should_give_harvested_pages_back_when_the_save_fails),
	    T(test_should_refuse_a_diff_over_its_own_parent),
	    T(test_should_describe_the_state_after_save),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
