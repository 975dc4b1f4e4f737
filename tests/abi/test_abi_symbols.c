/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A program that defines functions named like the library's internals (QEMU
 * has its own kvm_ioctl), linked against the installed archives
 * (test_abi_symbols_static) and the shared libraries (test_abi_symbols_shared):
 * it links without a duplicate symbol, and the library still calls its own.
 * Only public headers and public libraries here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include <squib/snapshot.h>
#ifdef SQUIB_TEST_KVM
#include <squib/kvm.h>
#endif

static int own_calls;

/* Names the library exported before it hid its internals, with signatures of our own. */
int kvm_ioctl(int fd, unsigned long req, void *arg);
int kvm_vcpus_create(void);
int track_map_init(void);
int track_bits_init(void);
const void *track_ops(const void *t);

int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	(void)fd;
	(void)req;
	(void)arg;
	own_calls++;
	return 12; /* KVM_API_VERSION: the library would carry on if it called this one */
}

int kvm_vcpus_create(void)
{
	return ++own_calls;
}

int track_map_init(void)
{
	return ++own_calls;
}

int track_bits_init(void)
{
	return ++own_calls;
}

const void *track_ops(const void *t)
{
	own_calls++;
	return t;
}

static void test_should_call_our_own_functions_by_those_names(void **state)
{
	(void)state;
	own_calls = 0;
	assert_int_equal(track_map_init(), 1);
	assert_int_equal(track_bits_init(), 2);
	assert_int_equal(kvm_vcpus_create(), 3);
	assert_ptr_equal(track_ops(&own_calls), &own_calls);
	assert_int_equal(kvm_ioctl(-1, 0, NULL), 12);
	assert_int_equal(own_calls, 5);
}

/* squib_tracker_vmm_marks_new validates its map with the library's track_map_init. */
static void test_should_keep_the_library_on_its_own_tracker_helpers(void **state)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	struct squib_guest_region r = {0, 4 * page, NULL, 0};
	struct squib_memory_map map = {&r, 1};
	struct squib_tracker *t = NULL;
	struct squib_error_detail d;

	(void)state;
	own_calls = 0;
	assert_int_equal(squib_tracker_vmm_marks_new(&map, &t, &d), 0);
	assert_int_equal(squib_tracker_start(t, &d), 0);
	assert_int_equal(squib_tracker_mark_write(t, page, 2 * page), 2);
	assert_int_equal(squib_tracker_stop(t, &d), 0);
	squib_tracker_free(t);
	assert_int_equal(own_calls, 0);
}

#ifdef SQUIB_TEST_KVM
/* /dev/null is no KVM: the library's kvm_ioctl gets ENOTTY, ours would have said 12. */
static void test_should_keep_the_library_on_its_own_kvm_ioctl(void **state)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_vm *vm = NULL;
	struct squib_error_detail d;

	(void)state;
	own_calls = 0;
	cfg.device_path = "/dev/null";
	assert_int_equal(squib_kvm_vm_new(&cfg, &vm, &d), SQUIB_E_CAPTURE);
	assert_null(vm);
	assert_int_equal(own_calls, 0);
}
#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_call_our_own_functions_by_those_names),
	    cmocka_unit_test(test_should_keep_the_library_on_its_own_tracker_helpers),
#ifdef SQUIB_TEST_KVM
	    cmocka_unit_test(test_should_keep_the_library_on_its_own_kvm_ioctl),
#endif
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
