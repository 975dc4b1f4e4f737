/* SPDX-License-Identifier: Apache-2.0 */
/*
 * squib_load(): upstream load.rs and the round trips of integration.rs
 * (full, diff, host_dev_name, the diff property sweep of I-SNAP-2), the
 * architecture check both ways (I-SNAP-3), the CRC check (I-SNAP-5), the pair
 * check, the memory backends, and squib_load_state_only. Real files, real
 * memory, the test VM.
 */
#include "savetest.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/envelope.h>
#include <squib/memfile.h>
#include <squib/pager.h>
#include <squib/uffd_remote.h>
#include <squib/workset.h>

#define KiB 1024ull
#define MiB (1024ull * 1024)
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

/* A Full pair of a filled VM at the fixture's paths; the VM is returned for comparison. */
static struct squib_testvm *saved_pair(struct savetest_dir *t, struct squib_testvm_config *c)
{
	struct squib_testvm *vm = savetest_vm(c);
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);

	squib_testvm_fill(vm, 0x5eed, 3);
	savetest_save_ok(vm, &req, NULL);
	return vm;
}

/* The restored state without its memory section equals the captured template. */
static void assert_restored_is_template(struct squib_testvm *src, struct squib_testvm *dst)
{
	const struct squib_microvm_state *r = squib_testvm_restored(dst);
	struct squib_microvm_state copy;
	uint8_t *buf;
	size_t len;

	assert_non_null(r);
	assert_non_null(r->memory);
	assert_int_equal(squib_state_encode(r, &buf, &len, NULL), 0);
	assert_int_equal(squib_state_decode(buf, len, SQUIB_ARCH_ANY, &copy, NULL, NULL), 0);
	free(buf);
	assert_int_equal(squib_state_set_memory(&copy, NULL, NULL), 0);
	assert_true(squib_state_equal(&copy, squib_testvm_template(src)));
	squib_state_free(&copy);
}

/* ---- upstream load.rs and integration.rs ------------------------------------------------------
 */

static void test_should_round_trip_save_then_load(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 256 * KiB, 2);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm;
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_load_result res;

	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_int_equal(res.state.vcpu_count, 2);
	assert_int_equal(res.header.version.major, 1);
	assert_int_equal(res.header.version.minor, 0);
	assert_int_equal(res.recovery, SQUIB_RECOVERY_NONE);
	assert_int_equal(squib_guest_memory_backend(res.memory), SQUIB_BACKEND_COPY);
	savetest_assert_memory_equal(res.memory, vm);
	assert_restored_is_template(vm, rvm);
	assert_string_equal(squib_testvm_log(rvm), "set_memory,irqchip,vcpus,devices");
	/* The VM uses the loaded memory. */
	assert_ptr_equal(squib_testvm_region(rvm, 0)->host,
			 squib_guest_memory_region(res.memory, 0)->host);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

/* integration.rs full_round_trip: one vCPU in PSCI On, a 64-byte GIC, mem_size_mib 4, 16 KiB. */
static void test_should_round_trip_a_full_snapshot(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = savetest_vm(&c), *rvm;
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(t->state, t->mem);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_load_result res;

	squib_testvm_template(vm)->vm_info.mem_size_mib = 4;
	squib_testvm_fill(vm, 1, 1);
	savetest_save_ok(vm, &req, NULL);
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_int_equal(res.state.vcpu_count, 1);
	assert_int_equal(res.state.vm_info.mem_size_mib, 4);
	assert_int_equal(res.state.arm64_vcpus[0].psci_state, SQUIB_PSCI_ON);
	assert_int_equal(res.state.gic.size, 64);
	assert_int_equal(res.state.memory->ram_size, 16 * KiB);
	savetest_assert_memory_equal(res.memory, vm);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

/* integration.rs diff_round_trip: 64 KiB, page 2 dirty: only page 2 is 0xAB. */
static void test_should_round_trip_a_diff_writing_only_dirty_pages(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 64 * KiB, 1);
	char *base = squib_test_path(t->dir, "base.mem"),
	     *bsnap = squib_test_path(t->dir, "base.snap");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(bsnap, base);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	const char *chain[] = {base};
	struct squib_testvm *vm, *rvm;
	struct squib_save_report rep;
	struct squib_load_result res;
	const uint8_t *g;

	c.track_dirty_pages = c.with_tracker = true;
	vm = savetest_vm(&c);
	savetest_save_ok(vm, &req, NULL);
	assert_int_equal(squib_testvm_write(vm, GPA + 2 * hp(), 0xab, hp()), 0);
	req = (struct squib_save_request){.state_path = t->state,
					  .memory_path = t->mem,
					  .kind = SQUIB_SNAPSHOT_DIFF,
					  .parent_state_path = bsnap};
	savetest_save_ok(vm, &req, &rep);
	assert_int_equal(rep.pages_written, 1);
	lr.chain = chain;
	lr.chain_len = 1;
	savetest_load_ok(&c, &lr, &rvm, &res);
	g = squib_guest_memory_region(res.memory, 0)->host;
	for (uint64_t i = 0; i < 64 * KiB; i++)
		assert_int_equal(g[i], i / hp() == 2 ? 0xab : 0);
	assert_int_equal(savetest_gm_stats(res.memory).pages_read, 1); /* the base holds no page */
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	free(base);
	free(bsnap);
}

/* I-NET-3: the virtio-net blob [1][u32 LE len]["vmnet-shared-en0-1234"] in slot 1, byte for byte.
 */
static void test_should_round_trip_host_dev_name(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm;
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	const char *name = SQUIB_TESTVM_HOST_DEV_NAME;
	size_t n = strlen(name);
	uint8_t want[64] = {1, (uint8_t)n, 0, 0, 0};
	const struct squib_microvm_state *r;
	struct squib_load_result res;

	memcpy(want + 5, name, n);
	savetest_load_ok(&c, &lr, &rvm, &res);
	r = squib_testvm_restored(rvm);
	assert_int_equal(r->device_count, 2);
	assert_string_equal(r->devices[1].kind, "virtio-net");
	assert_int_equal(r->devices[1].mmio_slot, 1);
	assert_int_equal(r->devices[1].blob_len, 5 + n);
	assert_memory_equal(r->devices[1].blob, want, 5 + n);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

static uint32_t lcg(uint32_t *s)
{
	*s = *s * 1664525u + 1013904223u;
	return *s;
}

/* One trial: a random non-empty proper subset of pages dirty with a high-bit pattern. */
static void sweep_trial(struct savetest_dir *t, uint64_t ram, uint64_t ps, uint32_t *seed)
{
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, ram, 1);
	uint64_t pages = ram / ps, ndirty = 0;
	uint8_t pattern = (uint8_t)(0x80 | (lcg(seed) & 0x7f)), dirty[128] = {0};
	char *base = squib_test_path(t->dir, "base.mem"),
	     *bsnap = squib_test_path(t->dir, "base.snap");
	struct squib_save_request req = {
	    .state_path = bsnap, .memory_path = base, .page_size = ps, .kind = SQUIB_SNAPSHOT_FULL};
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	const char *chain[] = {base};
	struct squib_testvm *vm, *rvm;
	struct squib_save_report rep;
	struct squib_load_result res;

	while (ndirty == 0 || ndirty == pages) {
		ndirty = 0;
		for (uint64_t p = 0; p < pages; p++)
			ndirty += dirty[p] = lcg(seed) >> 31;
	}
	c.track_dirty_pages = c.with_tracker = true;
	vm = savetest_vm(&c);
	savetest_save_ok(vm, &req, NULL);
	for (uint64_t p = 0; p < pages; p++)
		if (dirty[p])
			assert_int_equal(squib_testvm_write(vm, GPA + p * ps, pattern, ps), 0);
	req = (struct squib_save_request){.state_path = t->state,
					  .memory_path = t->mem,
					  .kind = SQUIB_SNAPSHOT_DIFF,
					  .page_size = ps,
					  .parent_state_path = bsnap};
	savetest_save_ok(vm, &req, &rep);
	assert_int_equal(rep.pages_written, ndirty); /* I-SNAP-2: exactly the dirty pages */
	lr.chain = chain;
	lr.chain_len = 1;
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_int_equal(res.state.memory->present_pages, ndirty);
	for (uint64_t i = 0; i < ram; i++)
		assert_int_equal(
		    ((const uint8_t *)squib_guest_memory_region(res.memory, 0)->host)[i],
		    dirty[i / ps] ? pattern : 0);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	free(base);
	free(bsnap);
}

static void test_should_hold_exactly_the_dirty_pages_over_random_patterns(void **state)
{
	static const struct {
		uint64_t ram, ps;
	} shapes[] = {{128 * KiB, 16 * KiB}, {64 * KiB, 4 * KiB}, {512 * KiB, 16 * KiB}};
	uint32_t seed = 0x5EEDC0DE;

	for (size_t s = 0; s < 3; s++)
		for (int trial = 0; trial < 12; trial++)
			sweep_trial(*state, shapes[s].ram, shapes[s].ps, &seed);
}

static void test_should_surface_truncated_file_as_too_short(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm = savetest_restore_vm(&c);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_vm v = squib_testvm_vm(rvm);
	struct squib_load_result res;
	struct squib_error_detail d;

	assert_int_equal(truncate(t->state, 3), 0);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_TOO_SHORT);
	assert_null(res.memory);
	assert_string_equal(squib_testvm_log(rvm), ""); /* the VM was not touched */
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

/* ---- invariants
 * ------------------------------------------------------------------------------------ */

/* I-SNAP-5: a flipped bit anywhere in the state file is a CRC mismatch, the VM untouched. */
static void test_should_reject_a_bit_flipped_state_with_a_crc_mismatch(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm = savetest_restore_vm(&c);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_vm v = squib_testvm_vm(rvm);
	struct squib_load_result res;
	struct squib_error_detail d;
	uint8_t *buf;
	size_t len;

	savetest_read(t->state, &buf, &len);
	for (size_t i = 0; i < len; i++) {
		buf[i] ^= (uint8_t)(1u << (i % 8));
		assert_int_equal(squib_test_write_file(t->state, buf, len), 0);
		if (squib_load(&v, &lr, &res, &d) != SQUIB_E_CRC_MISMATCH)
			fail_msg("flip in byte %zu: %s", i, savetest_message(&d));
		buf[i] ^= (uint8_t)(1u << (i % 8));
	}
	assert_string_equal(squib_testvm_log(rvm), "");
	assert_int_equal(squib_test_write_file(t->state, buf, len), 0);
	assert_int_equal(squib_load(&v, &lr, &res, &d), 0);
	squib_load_result_free(&res);
	free(buf);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

/* A memory file written for an x86_64 state (the format has no x86 vCPUs yet). */
static void write_x86_pair(struct savetest_dir *t)
{
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c);
	struct squib_microvm_state s;
	uint8_t *buf;
	size_t len;

	assert_int_equal(squib_state_load_file(t->state, SQUIB_ARCH_ANY, &s, NULL, NULL), 0);
	for (uint32_t i = 0; i < s.vcpu_count; i++)
		free(s.arm64_vcpus[i].sys_regs);
	free(s.arm64_vcpus);
	s.arm64_vcpus = NULL;
	s.vcpu_count = 0;
	s.arch = SQUIB_ARCH_X86_64;
	free(s.gic.bytes);
	s.gic = (struct squib_gic_state){0};
	assert_int_equal(squib_state_encode(&s, &buf, &len, NULL), 0);
	assert_int_equal(squib_test_write_file(t->state, buf, len), 0);
	free(buf);
	squib_state_free(&s);
	squib_testvm_free(vm);
}

/* I-SNAP-3, one way: a state of the other architecture is Incompatible, cleanly. */
static void test_should_refuse_an_x86_state_on_an_aarch64_vm(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *rvm = savetest_restore_vm(&c);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_vm v = squib_testvm_vm(rvm);
	struct squib_load_result res;
	struct squib_error_detail d;

	write_x86_pair(t);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_INCOMPATIBLE);
	assert_string_equal(d.msg, "the state file is for x86_64, the target is aarch64");
	assert_string_equal(squib_testvm_log(rvm), "");
	assert_null(res.memory);
	squib_testvm_free(rvm);
}

/* I-SNAP-3, the other way; and an x86_64 VM cannot save yet (no vCPU section in 1.0). */
static void test_should_refuse_an_aarch64_state_on_an_x86_vm(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *xvm;
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	char *snap = squib_test_path(t->dir, "y.snap"), *mem = squib_test_path(t->dir, "y.mem");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(snap, mem);
	struct squib_load_result res;
	struct squib_error_detail d;
	struct squib_vm v;

	c.arch = SQUIB_ARCH_X86_64;
	xvm = savetest_restore_vm(&c);
	v = squib_testvm_vm(xvm);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_INCOMPATIBLE);
	assert_string_equal(d.msg, "the state file is for aarch64, the target is x86_64");
	assert_string_equal(squib_testvm_log(xvm), "");
	squib_testvm_free(xvm);
	c.no_memory = false;
	xvm = savetest_vm(&c);
	v = squib_testvm_vm(xvm);
	assert_int_equal(squib_save(&v, &req, NULL, &d), SQUIB_E_INCOMPATIBLE);
	assert_false(squib_test_exists(snap) || squib_test_exists(mem));
	squib_testvm_free(xvm);
	squib_testvm_free(vm);
	free(snap);
	free(mem);
}

/* upstream test_should_reject_load_on_incompatible_state: 0 vCPUs with a valid CRC. */
static void test_should_reject_load_on_incompatible_state(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm = savetest_restore_vm(&c);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_vm v = squib_testvm_vm(rvm);
	struct squib_microvm_state s;
	struct squib_load_result res;
	struct squib_error_detail d;

	assert_int_equal(squib_state_load_file(t->state, SQUIB_ARCH_ANY, &s, NULL, NULL), 0);
	s.vcpu_count = 0;
	assert_int_equal(squib_state_save_file(t->state, &s, NULL), 0);
	s.vcpu_count = 1;
	squib_state_free(&s);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_INCOMPATIBLE);
	assert_string_equal(squib_testvm_log(rvm), "");
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

/* ---- the pair
 * -------------------------------------------------------------------------------------- */

static void test_should_report_a_mismatched_pair_with_both_ids(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm = savetest_restore_vm(&c);
	char *snap2 = squib_test_path(t->dir, "y.snap"), *mem2 = squib_test_path(t->dir, "y.mem");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(snap2, mem2);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, mem2);
	struct squib_vm v = squib_testvm_vm(rvm);
	struct squib_save_report rep;
	struct squib_load_result res;
	struct squib_error_detail d;
	uint8_t a[SQUIB_MEMORY_ID_SIZE];
	char ha[33], hb[33];

	savetest_save_ok(vm, &req, &rep);
	savetest_state_memory_id(t->state, a);
	squib_memfile_id_hex(a, ha);
	squib_memfile_id_hex(rep.memory_id, hb);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d.msg, ha));
	assert_non_null(strstr(d.msg, hb));
	assert_string_equal(squib_testvm_log(rvm), "");
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	free(snap2);
	free(mem2);
}

static void test_should_refuse_a_memory_file_of_the_wrong_size(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm = savetest_restore_vm(&c);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_vm v = squib_testvm_vm(rvm);
	struct squib_load_result res;
	struct squib_error_detail d;
	struct stat st;

	assert_int_equal(stat(t->mem, &st), 0);
	assert_int_equal(truncate(t->mem, st.st_size + 4096), 0);
	assert_true(squib_load(&v, &lr, &res, &d) < 0);
	assert_int_equal(truncate(t->mem, 100), 0);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_TOO_SHORT);
	assert_int_equal(unlink(t->mem), 0);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_string_equal(squib_testvm_log(rvm), "");
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

static void test_should_refuse_a_state_that_describes_no_memory_file(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm = savetest_restore_vm(&c);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_vm v = squib_testvm_vm(rvm);
	struct squib_load_result res;
	struct squib_error_detail d;

	assert_int_equal(squib_state_save_file(t->state, squib_testvm_template(vm), NULL), 0);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_PAIR_MISMATCH);
	assert_non_null(strstr(d.msg, "describes no memory file"));
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

/* ---- backends
 * -------------------------------------------------------------------------------------- */

static void test_should_map_a_full_memory_file_copy_on_write(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 256 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm;
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_load_result res;
	uint8_t *before, *after;
	size_t lb, la;

	savetest_read(t->mem, &before, &lb);
	lr.backend = SQUIB_BACKEND_FILE;
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_int_equal(squib_guest_memory_backend(res.memory), SQUIB_BACKEND_FILE);
	assert_int_equal(savetest_gm_stats(res.memory).pages_read, 0);
	savetest_assert_memory_equal(res.memory, vm);
	memset(squib_guest_memory_region(res.memory, 0)->host, 0x77, 8192); /* the guest writes */
	savetest_read(t->mem, &after, &la);
	assert_int_equal(la, lb);
	assert_memory_equal(before, after, lb); /* MAP_PRIVATE: the file is untouched */
	squib_load_result_free(&res);
	free(before);
	free(after);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

/* LAZY: a userfaultfd pager serves the memory; a full pair, then a diff over its base. */
static void test_should_load_a_full_pair_and_a_diff_lazily(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 256 * KiB, 1);
	char *base = squib_test_path(t->dir, "lbase.mem"),
	     *bsnap = squib_test_path(t->dir, "lbase.snap");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(bsnap, base);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(bsnap, base);
	const char *chain[] = {base};
	struct squib_pager_stats st;
	struct squib_testvm *vm, *rvm;
	struct squib_load_result res;

	if (squib_test_uffd_missing("lazy backends"))
		skip();
	c.region_count = 2; /* the second region's pages start past the first's in the file */
	c.regions[1] = (struct squib_mem_region){.guest_addr = GPA + 1024 * MiB, .size = 192 * KiB};
	c.track_dirty_pages = c.with_tracker = true;
	vm = savetest_vm(&c);
	squib_testvm_fill(vm, 0x1a2, 3);
	savetest_save_ok(vm, &req, NULL);
	lr.backend = SQUIB_BACKEND_LAZY;
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_int_equal(squib_guest_memory_backend(res.memory), SQUIB_BACKEND_LAZY);
	assert_non_null(squib_guest_memory_pager(res.memory));
	assert_int_equal(savetest_gm_stats(res.memory).pages_read, 0);
	assert_int_equal(squib_guest_memory_region_count(res.memory), 2);
	savetest_assert_memory_equal(res.memory, vm);
	squib_pager_stats(squib_guest_memory_pager(res.memory), &st);
	assert_true(st.faults > 0);
	assert_int_equal(squib_pager_error(squib_guest_memory_pager(res.memory), NULL), 0);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);

	req = (struct squib_save_request){.state_path = t->state,
					  .memory_path = t->mem,
					  .kind = SQUIB_SNAPSHOT_DIFF,
					  .parent_state_path = bsnap};
	squib_testvm_write(vm, GPA + 5 * hp(), 0x42, 3 * hp());
	squib_testvm_write(vm, GPA + 1024 * MiB + 7 * hp(), 0x43, 2 * hp());
	savetest_save_ok(vm, &req, NULL);
	lr = (struct squib_load_request)SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	lr.chain = chain;
	lr.chain_len = 1;
	lr.backend = SQUIB_BACKEND_LAZY;
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_non_null(squib_guest_memory_pager(res.memory));
	savetest_assert_memory_equal(res.memory, vm);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	free(base);
	free(bsnap);
}

/* Read one byte of every 5th page of every region (a fixed "working set"). */
static void touch_pattern(const struct squib_guest_memory *g)
{
	for (uint32_t i = 0; i < squib_guest_memory_region_count(g); i++) {
		const struct squib_vm_region *r = squib_guest_memory_region(g, i);

		for (uint64_t off = 0; off < r->size; off += 5 * hp())
			(void)*(volatile const uint8_t *)((const uint8_t *)r->host + off);
	}
}

/*
 * REAP's record and prefetch through squib_load: restore 1 records the pages
 * its touches fault in, the set goes through a file, restore 2 prefetches it
 * before the VM runs and the same touches take (almost) no faults.
 */
static void test_should_prefetch_a_recorded_working_set_and_cut_the_faults(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 512 * KiB, 1);
	struct squib_lazy_options lz = {.no_prewarm = true};
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	char *wsp = squib_test_path(t->dir, "x.ws");
	struct squib_workset ws, back;
	struct squib_pager_stats s1, s2;
	struct squib_vm v;
	struct squib_error_detail d;
	struct squib_testvm *vm, *rvm;
	struct squib_load_result res;

	if (squib_test_uffd_missing("lazy backends"))
		skip();
	vm = saved_pair(t, &c);
	lz.pager.record = true;
	lz.pager.batch_bytes = hp(); /* one page per fault: the set is exactly the touches */
	lr.backend = SQUIB_BACKEND_LAZY;
	lr.lazy = &lz;
	savetest_load_ok(&c, &lr, &rvm, &res);
	touch_pattern(res.memory);
	squib_pager_stats(squib_guest_memory_pager(res.memory), &s1);
	assert_true(s1.faults >= 512 * KiB / hp() / 5);
	assert_int_equal(squib_guest_memory_recorded(res.memory, &ws, &d), 0);
	assert_memory_equal(ws.memory_id, res.state.memory->id, SQUIB_MEMORY_ID_SIZE);
	assert_int_equal(squib_workset_pages(&ws), s1.pages_copied + s1.pages_zeroed);
	assert_int_equal(squib_workset_write(wsp, &ws, &d), 0);
	squib_workset_free(&ws);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);

	assert_int_equal(squib_workset_read(wsp, &back, &d), 0);
	lz.pager.record = false;
	lz.prefetch = &back;
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_true(savetest_gm_stats(res.memory).pages_prefetched >= s1.faults);
	touch_pattern(res.memory);
	squib_pager_stats(squib_guest_memory_pager(res.memory), &s2);
	assert_true(s2.faults * 10 <= s1.faults); /* >= 90 % fewer (here: none) */
	assert_int_equal(s2.faults, 0);
	savetest_assert_memory_equal(res.memory, vm);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);

	/* A set recorded on another memory file is refused before the VM is touched. */
	back.memory_id[0] ^= 1;
	rvm = savetest_restore_vm(&c);
	v = squib_testvm_vm(rvm);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_PAIR_MISMATCH);
	assert_null(res.memory);
	squib_testvm_free(rvm);
	squib_workset_free(&back);
	squib_testvm_free(vm);
	free(wsp);
}

/*
 * A large set is installed by several threads, its runs cut between them
 * (up to 4; here as many as the CPUs): every page once, none left to fault.
 */
static void test_should_prefetch_a_large_working_set_on_several_threads(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 64 * MiB, 1);
	struct squib_ws_run runs[] = {{15000, 1000}, {0, 5000}, {6000, 7000}, {16383, 1}};
	struct squib_workset ws = {.run_count = 4, .runs = runs};
	struct squib_lazy_options lz = {.no_prewarm = true, .prefetch = &ws};
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_testvm *vm, *rvm;
	struct squib_load_result res;
	struct squib_pager_stats st;

	if (squib_test_uffd_missing("lazy backends"))
		skip();
	ws.page_size = hp();
	ws.page_count = 64 * MiB / hp();
	vm = saved_pair(t, &c);
	lr.backend = SQUIB_BACKEND_LAZY;
	lr.lazy = &lz;
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_int_equal(savetest_gm_stats(res.memory).pages_prefetched, 13001);
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++)
		for (uint64_t k = 0; k < runs[i].page_count; k++)
			(void)*(
			    volatile const uint8_t
				*)((const uint8_t *)squib_guest_memory_region(res.memory, 0)->host +
				   (runs[i].first_page + k) * hp());
	squib_pager_stats(squib_guest_memory_pager(res.memory), &st);
	assert_int_equal(st.faults, 0);
	assert_int_equal(st.pages_prefetched, 13001);
	savetest_assert_memory_equal(res.memory, vm);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

/* The handler side, in a forked child: serve the memory file until the VMM hangs up. */
/* A handler that takes the memory and dies after 300 ms without serving a page. */
static void dying_handler_child(const char *sock, const char *mem, int ready)
{
	struct squib_uffd_peer peer;
	int lfd;

	(void)mem;
	if (squib_uffd_listen(sock, &lfd, NULL) || write(ready, "L", 1) != 1 ||
	    squib_uffd_accept(lfd, 5000, &peer, NULL))
		_exit(2);
	usleep(300000);
	_exit(0);
}

static void handler_child(const char *sock, const char *mem, int ready)
{
	struct squib_pager_region r[4];
	struct squib_page_source src;
	struct squib_uffd_peer peer;
	struct squib_memfile *m;
	struct squib_pager *pg;
	struct pollfd p;
	int lfd;

	if (squib_uffd_listen(sock, &lfd, NULL) || write(ready, "L", 1) != 1 ||
	    squib_uffd_accept(lfd, 5000, &peer, NULL) || peer.n > 4 ||
	    squib_memfile_open(mem, &m, NULL) || squib_page_source_file(m, &src, NULL))
		_exit(2);
	for (uint32_t i = 0; i < peer.n; i++)
		r[i] = (struct squib_pager_region){
		    (void *)(uintptr_t)peer.mappings[i].base_host_virt_addr, peer.mappings[i].size,
		    peer.mappings[i].offset / peer.mappings[i].page_size};
	if (squib_pager_attach(peer.uffd, r, peer.n, src, NULL, &pg, NULL))
		_exit(3);
	peer.uffd = -1;
	p = (struct pollfd){.fd = peer.conn_fd, .events = POLLRDHUP};
	poll(&p, 1, 10000);
	squib_pager_free(pg);
	_exit(0);
}

/* Fork a handler child running fn; returns once it listens. *rd: a pipe end to close. */
static pid_t fork_handler(void (*fn)(const char *, const char *, int), const char *sock,
			  const char *mem, int *rd)
{
	int pfd[2];
	char ch;
	pid_t pid;

	assert_int_equal(pipe(pfd), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		close(pfd[0]);
		fn(sock, mem, pfd[1]);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &ch, 1), 1);
	*rd = pfd[0];
	return pid;
}

/*
 * UFFD: the VMM never opens the memory file; the regions come from the state,
 * an external handler serves every page, and the memory equals the snapshot.
 */
static void test_should_load_through_an_external_handler_without_the_memory_file(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 256 * KiB, 1);
	char *sock = squib_test_path(t->dir, "h.sock");
	struct squib_lazy_options lz = {.uffd_socket = sock};
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, NULL);
	struct squib_testvm *vm, *rvm;
	struct squib_load_result res;
	struct squib_error_detail d;
	struct squib_vm v;
	int rd, st;
	pid_t pid;

	if (squib_test_uffd_missing("lazy backends"))
		skip();
	c.region_count = 2;
	c.regions[1] = (struct squib_mem_region){.guest_addr = GPA + 1024 * MiB, .size = 128 * KiB};
	vm = saved_pair(t, &c);
	pid = fork_handler(handler_child, sock, t->mem, &rd);
	lr.backend = SQUIB_BACKEND_UFFD;
	lr.lazy = &lz;
	savetest_load_ok(&c, &lr, &rvm, &res);
	assert_int_equal(squib_guest_memory_backend(res.memory), SQUIB_BACKEND_UFFD);
	assert_non_null(squib_guest_memory_remote(res.memory));
	assert_null(squib_guest_memory_pager(res.memory));
	assert_int_equal(squib_uffd_remote_peer_pid(squib_guest_memory_remote(res.memory)), pid);
	savetest_assert_memory_equal(res.memory, vm);
	assert_int_equal(squib_uffd_remote_error(squib_guest_memory_remote(res.memory), &d), 0);
	squib_load_result_free(&res); /* hangs up: the handler exits */
	squib_testvm_free(rvm);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

	/* Without a handler listening: a clear error naming the socket, nothing given to the VM. */
	lz.remote.connect_timeout_ms = 50;
	rvm = savetest_restore_vm(&c);
	v = squib_testvm_vm(rvm);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(savetest_message(&d), "h.sock"));
	assert_null(res.memory);
	/* Only UFFD may leave the memory file out. */
	lr.backend = SQUIB_BACKEND_LAZY;
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_INVALID_ARGUMENT);
	squib_testvm_free(rvm);
	close(rd);
	squib_testvm_free(vm);
	free(sock);
}

/*
 * The handler dies while the load pre-warms the boot pages (its touch waits
 * for a page that never comes): the load fails with the loss, never hangs.
 */
static void test_should_fail_a_load_whose_handler_dies_during_the_prewarm(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 1 * MiB, 1);
	char *sock = squib_test_path(t->dir, "d.sock");
	struct squib_lazy_options lz = {.uffd_socket = sock};
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, NULL);
	struct squib_testvm *vm, *rvm;
	struct squib_load_result res;
	struct squib_error_detail d;
	struct timespec t0, t1;
	struct squib_vm v;
	int rd, st;
	pid_t pid;

	if (squib_test_uffd_missing("lazy backends"))
		skip();
	vm = saved_pair(t, &c); /* the test VM's PC lies inside its 1 MiB: a page to pre-warm */
	pid = fork_handler(dying_handler_child, sock, NULL, &rd);
	lr.backend = SQUIB_BACKEND_UFFD;
	lr.lazy = &lz;
	rvm = savetest_restore_vm(&c);
	v = squib_testvm_vm(rvm);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_MEMORY_IO);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_non_null(strstr(savetest_message(&d), "exited"));
	assert_null(res.memory);
	/* Liveness bound, not a measurement: 300 ms of handler life + detection. */
	assert_true(t1.tv_sec - t0.tv_sec < 3);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	squib_testvm_free(rvm);
	close(rd);
	squib_testvm_free(vm);
	free(sock);
}

/* LAZY pre-warms the vCPUs' boot pages before the VM runs (test VM: MMU off, so PC is physical). */
static void test_should_prewarm_the_boot_pages_of_a_lazy_load(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 1 * MiB, 1);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_pager_stats st, after;
	struct squib_testvm *vm, *rvm;
	struct squib_load_result res;
	uint64_t pc;

	if (squib_test_uffd_missing("lazy backends"))
		skip();
	vm = saved_pair(t, &c);
	lr.backend = SQUIB_BACKEND_LAZY;
	savetest_load_ok(&c, &lr, &rvm, &res);
	pc = res.state.arm64_vcpus[0].regs.pc; /* inside RAM; SP (0) is not */
	assert_int_equal(savetest_gm_stats(res.memory).prewarm.vcpus, res.state.vcpu_count);
	assert_true(savetest_gm_stats(res.memory).prewarm.translated >= 1);
	assert_true(savetest_gm_stats(res.memory).pages_prewarmed >= 1);
	squib_pager_stats(squib_guest_memory_pager(res.memory), &st);
	assert_true(st.pages_prefetched >= 1);
	assert_int_equal(st.faults, 0);
	/* The PC page is there already: reading it takes no fault. */
	(void)*(volatile const uint8_t *)((const uint8_t *)squib_guest_memory_region(res.memory, 0)
					      ->host +
					  (pc - GPA));
	squib_pager_stats(squib_guest_memory_pager(res.memory), &after);
	assert_int_equal(after.faults, 0);
	savetest_assert_memory_equal(res.memory, vm);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);

	/* no_prewarm: nothing installed before the VM's own faults. */
	{
		struct squib_lazy_options lz = {.no_prewarm = true};

		lr.lazy = &lz;
		savetest_load_ok(&c, &lr, &rvm, &res);
		assert_int_equal(savetest_gm_stats(res.memory).pages_prewarmed, 0);
		squib_pager_stats(squib_guest_memory_pager(res.memory), &st);
		assert_int_equal(st.pages_prefetched, 0);
		squib_load_result_free(&res);
		squib_testvm_free(rvm);
	}
	squib_testvm_free(vm);
}

static void test_should_refuse_a_diff_with_the_file_backend_or_without_its_chain(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 64 * KiB, 1);
	char *base = squib_test_path(t->dir, "base.mem"),
	     *bsnap = squib_test_path(t->dir, "base.snap");
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(bsnap, base);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	const char *chain[] = {base};
	struct squib_testvm *vm, *rvm;
	struct squib_load_result res;
	struct squib_error_detail d;
	struct squib_vm v;

	c.track_dirty_pages = c.with_tracker = true;
	vm = savetest_vm(&c);
	rvm = savetest_restore_vm(&c);
	v = squib_testvm_vm(rvm);
	savetest_save_ok(vm, &req, NULL);
	req = (struct squib_save_request){.state_path = t->state,
					  .memory_path = t->mem,
					  .kind = SQUIB_SNAPSHOT_DIFF,
					  .parent_state_path = bsnap};
	squib_testvm_write(vm, GPA, 1, hp());
	savetest_save_ok(vm, &req, NULL);
	lr.chain = chain;
	lr.chain_len = 1;
	lr.backend = SQUIB_BACKEND_FILE;
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "rebase the chain first"));
	lr.backend = SQUIB_BACKEND_COPY;
	lr.chain_len = 0; /* a diff without its chain */
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "pass its chain"));
	assert_string_equal(squib_testvm_log(rvm), "");
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	free(base);
	free(bsnap);
}

/* A chain of three layers, each with its own pages; a wrong chain is refused. */
static void test_should_read_a_diff_through_its_chain(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 128 * KiB, 1);
	char *p[3][2];
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	const char *chain[2], *bad[2];
	struct squib_testvm *vm, *rvm;
	struct squib_load_result res;
	struct squib_error_detail d;
	struct squib_vm v;

	c.track_dirty_pages = c.with_tracker = true;
	vm = savetest_vm(&c);
	squib_testvm_fill(vm, 3, 2);
	for (int i = 0; i < 3; i++) {
		struct squib_save_request req = {.kind =
						     i ? SQUIB_SNAPSHOT_DIFF : SQUIB_SNAPSHOT_FULL};
		char name[16];

		snprintf(name, sizeof(name), "l%d.snap", i);
		p[i][0] = squib_test_path(t->dir, name);
		snprintf(name, sizeof(name), "l%d.mem", i);
		p[i][1] = squib_test_path(t->dir, name);
		req.state_path = p[i][0];
		req.memory_path = p[i][1];
		req.parent_state_path = i ? p[i - 1][0] : NULL;
		squib_testvm_write(vm, GPA + (uint64_t)(i + 1) * 3 * hp(), 0x10 + i, 2 * hp());
		savetest_save_ok(vm, &req, NULL);
	}
	chain[0] = bad[1] = p[0][1];
	chain[1] = bad[0] = p[1][1];
	lr = (struct squib_load_request)SQUIB_LOAD_REQUEST_INIT(p[2][0], p[2][1]);
	lr.chain = chain;
	lr.chain_len = 2;
	savetest_load_ok(&c, &lr, &rvm, &res);
	savetest_assert_memory_equal(res.memory, vm);
	squib_load_result_free(&res);
	v = squib_testvm_vm(rvm);
	lr.chain = bad;
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_PAIR_MISMATCH);
	lr.chain = chain;
	lr.chain_len = 1; /* the middle layer missing */
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_PAIR_MISMATCH);
	lr = (struct squib_load_request)SQUIB_LOAD_REQUEST_INIT(p[0][0], p[0][1]);
	lr.chain = chain;
	lr.chain_len = 1; /* a full file takes no chain */
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "takes no chain"));
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
	for (int i = 0; i < 3; i++) {
		free(p[i][0]);
		free(p[i][1]);
	}
}

static void test_should_stop_when_a_restore_op_fails_and_keep_the_memory_it_was_given(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 1);
	struct squib_testvm *vm = saved_pair(t, &c), *rvm = savetest_restore_vm(&c);
	struct squib_load_request lr = SQUIB_LOAD_REQUEST_INIT(t->state, t->mem);
	struct squib_vm v = squib_testvm_vm(rvm);
	struct squib_load_result res;
	struct squib_error_detail d;

	squib_testvm_fail_op(rvm, "irqchip");
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_CAPTURE);
	assert_string_equal(squib_testvm_log(rvm), "set_memory,irqchip"); /* no vCPU after it */
	assert_non_null(res.memory);					  /* the VM holds it */
	assert_ptr_equal(squib_testvm_region(rvm, 0)->host,
			 squib_guest_memory_region(res.memory, 0)->host);
	squib_load_result_free(&res);
	squib_testvm_free(rvm);
	rvm = savetest_restore_vm(&c);
	v = squib_testvm_vm(rvm);
	squib_testvm_fail_op(rvm, "set_memory");
	assert_int_equal(squib_load(&v, &lr, &res, &d), SQUIB_E_CAPTURE);
	assert_null(res.memory);
	squib_testvm_free(rvm);
	squib_testvm_free(vm);
}

static void test_should_load_the_state_alone(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_testvm_config c = squib_testvm_config_simple(GPA, 16 * KiB, 2);
	struct squib_testvm *vm = saved_pair(t, &c);
	struct squib_envelope_header h;
	struct squib_microvm_state s;
	struct squib_error_detail d;

	assert_int_equal(squib_load_state_only(t->state, SQUIB_ARCH_ANY, &s, &h, &d), 0);
	assert_int_equal(s.vcpu_count, 2);
	assert_int_equal(h.version.major, 1);
	assert_non_null(s.memory);
	squib_state_free(&s);
	assert_int_equal(squib_load_state_only(t->state, SQUIB_ARCH_AARCH64, &s, NULL, &d), 0);
	squib_state_free(&s);
	assert_int_equal(squib_load_state_only(t->state, SQUIB_ARCH_X86_64, &s, NULL, &d),
			 SQUIB_E_INCOMPATIBLE);
	squib_state_free(&s);
	assert_true(squib_load_state_only(t->mem, SQUIB_ARCH_ANY, &s, NULL, &d) < 0);
	squib_state_free(&s);
	assert_int_equal(squib_load_state_only(NULL, SQUIB_ARCH_ANY, &s, NULL, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	squib_testvm_free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	    T(test_should_round_trip_save_then_load),
	    T(test_should_round_trip_a_full_snapshot),
	    T(test_should_round_trip_a_diff_writing_only_dirty_pages),
	    T(test_should_round_trip_host_dev_name),
	    T(test_should_hold_exactly_the_dirty_pages_over_random_patterns),
	    T(test_should_surface_truncated_file_as_too_short),
	    T(test_should_reject_a_bit_flipped_state_with_a_crc_mismatch),
	    T(test_should_refuse_an_x86_state_on_an_aarch64_vm),
	    T(test_should_refuse_an_aarch64_state_on_an_x86_vm),
	    T(test_should_reject_load_on_incompatible_state),
	    T(test_should_report_a_mismatched_pair_with_both_ids),
	    T(test_should_refuse_a_memory_file_of_the_wrong_size),
	    T(test_should_refuse_a_state_that_describes_no_memory_file),
	    T(test_should_map_a_full_memory_file_copy_on_write),
	    T(test_should_load_a_full_pair_and_a_diff_lazily),
	    T(test_should_prefetch_a_recorded_working_set_and_cut_the_faults),
	    T(test_should_prefetch_a_large_working_set_on_several_threads),
	    T(test_should_load_through_an_external_handler_without_the_memory_file),
	    T(test_should_fail_a_load_whose_handler_dies_during_the_prewarm),
	    T(test_should_prewarm_the_boot_pages_of_a_lazy_load),
	    T(test_should_refuse_a_diff_with_the_file_backend_or_without_its_chain),
	    T(test_should_read_a_diff_through_its_chain),
	    T(test_should_stop_when_a_restore_op_fails_and_keep_the_memory_it_was_given),
	    T(test_should_load_the_state_alone),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
