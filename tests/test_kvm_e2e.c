/* SPDX-License-Identifier: Apache-2.0 */
/*
 * End to end on real /dev/kvm: the KVM runner behind the squib/vm.h adapter,
 * saved with squib_save() and restored with squib_load() into a fresh VM.
 *
 * I-SNAP-1: a forked child runs a 2-vCPU counter guest and saves a Full pair
 * while it runs; the parent kills the child, then loads the pair (COPY, FILE
 * and LAZY backends: LAZY is the userfaultfd pager) into a new VM and checks
 * memory, counters, device state, and the pager's statistics. A pager that
 * fails under a running guest stops it for good (squib_kvm_vm_fail).
 * Also: stay-paused loads, snapshots of a paused and of a running guest,
 * an aarch64 state refused by the x86_64 VM (I-SNAP-3), and a Diff on KVM
 * with guest and VMM writes (I-SNAP-2).
 *
 * Waits have generous limits that only stop a broken run; nothing asserts
 * on time. Skipped (exit 77, one line on stderr) only when /dev/kvm does not
 * exist.
 */
#include "testutil.h"
#include "kvm_blocker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <squib/kvm.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/pager.h>
#include <squib/save.h>
#include <squib/state.h>
#include <squib/track.h>
#include <squib/vm.h>

#include "spawn.h"
#include "savetest.h"
#include "testvm.h"

#define RAM_SIZE     (4u << 20)
#define TABLES	     0x1000ull	/* GDT, PML4, PDPT, PD: 0x1000..0x4fff */
#define CODE	     0x10000ull /* the guest program */
#define COUNTERS     0x20000ull /* vCPU i's counter at COUNTERS + i * PAGE */
#define PARAMS	     0x30000ull /* the page writer's parameter block */
#define STACKS	     0x40000ull
#define TARGET	     0x100000ull /* the page writer's target pages */
#define TARGET_PAGES 256u
#define PAGE	     4096ull
#define PORT_CONSOLE 0xe9
#define PORT_COUNTER 0x3f0
#define WAIT_MS	     10000u /* safety net for a broken run, not a measurement */
#define VCPUS	     2u

#define GUEST_MAGIC "SQGUEST1"

/* ---- guests and VMs (no cmocka: a forked child uses these too) ------------------- */

struct guest {
	uint8_t *code;
	size_t len;
	uint64_t report_mask;
};

static void load_guest(const char *name, struct guest *g)
{
	const char *dir = getenv("SQUIB_GUESTS");
	char path[4096];
	int r;

	snprintf(path, sizeof(path), "%s/%s.bin", dir ? dir : "tests/guests", name);
	r = squib_test_read_file(path, &g->code, &g->len);
	if (r)
		fail_msg("%s: %s (build the squib_guests target)", path, strerror(-r));
	assert_true(g->len > 32);
	assert_memory_equal(g->code + 8, GUEST_MAGIC, 8);
	memcpy(&g->report_mask, g->code + 24, 8);
}

struct kvm {
	struct squib_kvm_vm *vm;
	struct squib_kvm_counter *counter;
	struct squib_kvm_adapter *adapter;
	struct squib_vm v;
};

static void kvm_free(struct kvm *k)
{
	squib_kvm_adapter_free(k->adapter);
	squib_kvm_vm_free(k->vm);
	memset(k, 0, sizeof(*k));
}

/* A VM with the console and the counter device; RAM only when with_ram. */
static int kvm_new(struct kvm *k, uint32_t vcpus, bool with_ram, bool track,
		   struct squib_error_detail *d)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_adapter_config acfg = {track, "/squib/e2e/counter.bin", "e2e"};
	int rc;

	memset(k, 0, sizeof(*k));
	cfg.vcpu_count = vcpus;
	if ((rc = squib_kvm_vm_new(&cfg, &k->vm, d)) ||
	    (with_ram && (rc = squib_kvm_vm_add_ram(k->vm, 0, RAM_SIZE, NULL, NULL, d))) ||
	    (rc = squib_kvm_vm_add_console(k->vm, PORT_CONSOLE, NULL, d)) ||
	    (rc = squib_kvm_vm_add_counter(k->vm, PORT_COUNTER, &k->counter, d)) ||
	    (rc = squib_kvm_adapter_new(k->vm, &acfg, &k->adapter, d))) {
		kvm_free(k);
		return rc;
	}
	k->v = squib_kvm_adapter_vm(k->adapter);
	return 0;
}

/* Every vCPU enters the guest at CODE with rdi, rsi0 + i * stride, the counter port. */
static int kvm_boot(struct kvm *k, const struct guest *g, uint32_t vcpus, uint64_t rdi,
		    uint64_t rsi0, uint64_t stride, struct squib_error_detail *d)
{
	struct squib_kvm_boot b;
	int rc;

	memset(&b, 0, sizeof(b));
	b.tables_gpa = TABLES;
	b.map_size = RAM_SIZE;
	for (uint32_t i = 0; i < vcpus; i++)
		b.entry[i] = (struct squib_kvm_entry){CODE, STACKS + (i + 1) * PAGE, rdi,
						      rsi0 + i * stride, PORT_COUNTER};
	if ((rc = squib_kvm_vm_write(k->vm, CODE, g->code, g->len, d)))
		return rc;
	return squib_kvm_vm_boot_long_mode(k->vm, &b, d);
}

/* A running 2-vCPU counter guest whose every vCPU has reported at least twice. */
static int counter_guest(struct kvm *k, const struct guest *g, bool track,
			 struct squib_error_detail *d)
{
	int rc = kvm_new(k, VCPUS, true, track, d);

	if (rc)
		return rc;
	if (!(rc = kvm_boot(k, g, VCPUS, 0, COUNTERS, PAGE, d)) &&
	    !(rc = squib_kvm_vm_start(k->vm, d)))
		for (uint32_t i = 0; !rc && i < VCPUS; i++)
			rc = squib_kvm_counter_wait(k->counter, i, 2, WAIT_MS, NULL, d);
	if (rc)
		kvm_free(k);
	return rc;
}

static uint64_t counter_in(const uint8_t *ram, uint32_t vcpu)
{
	uint64_t v;

	memcpy(&v, ram + COUNTERS + vcpu * PAGE, 8);
	return v;
}

/* What the saver observed in its pair, sent to the parent. */
struct saved {
	int rc;
	char msg[600];
	uint64_t counter[VCPUS]; /* in the memory file */
	uint64_t last[VCPUS];	 /* the counter device's registers in the state file */
	uint64_t reports[VCPUS];
	uint64_t after[VCPUS]; /* a report the saver's guest made after the save */
	uint64_t paused_ns, total_ns, mem_bytes;
};

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The counter device's registers from the state file. */
static int read_device(const char *state_path, struct saved *s, struct squib_error_detail *d)
{
	struct squib_microvm_state st;
	int rc = squib_load_state_only(state_path, SQUIB_ARCH_X86_64, &st, NULL, d);

	for (uint32_t i = 0; !rc && i < st.device_count; i++) {
		const struct squib_device_state *dev = &st.devices[i];

		if (strcmp(dev->kind, "squib-counter"))
			continue;
		if (dev->blob_len != 8 + 16 * VCPUS) {
			rc = squib_fail_msg(d, SQUIB_E_ENCODING, "counter blob of %zu bytes",
					    (size_t)dev->blob_len);
			break;
		}
		for (uint32_t v = 0; v < VCPUS; v++) {
			s->last[v] = le64(dev->blob + 8 + 16 * v);
			s->reports[v] = le64(dev->blob + 16 + 16 * v);
		}
	}
	squib_state_free(&st);
	return rc;
}

/* The saved counters from the memory file (COPY-loaded on its own). */
static int read_counters(const char *mem_path, uint64_t *out, struct squib_error_detail *d)
{
	struct squib_guest_memory *g = NULL;
	int rc = squib_guest_memory_open(mem_path, NULL, 0, NULL, SQUIB_BACKEND_COPY, &g, d);

	for (uint32_t i = 0; !rc && i < VCPUS; i++)
		out[i] = counter_in(squib_guest_memory_region(g, 0)->host, i);
	squib_guest_memory_free(g);
	return rc;
}

/* The saver: run, save Full while running, report, keep running until killed. */
static void saver_child(int fd, const struct guest *g, const char *state, const char *mem)
{
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(state, mem);
	struct squib_save_report rep;
	struct squib_error_detail d = {0};
	struct saved s;
	struct kvm k;

	memset(&s, 0, sizeof(s));
	s.rc = counter_guest(&k, g, false, &d);
	if (!s.rc)
		s.rc = squib_save(&k.v, &req, &rep, &d);
	s.paused_ns = rep.ns.paused;
	s.total_ns = rep.ns.total;
	s.mem_bytes = rep.memory_bytes_written;
	if (!s.rc && !rep.resumed)
		s.rc = squib_fail_msg(&d, SQUIB_E_INVALID_ARGUMENT, "the save did not resume");
	if (!s.rc)
		s.rc = read_counters(mem, s.counter, &d);
	if (!s.rc)
		s.rc = read_device(state, &s, &d);
	/* The guest goes on after the save: two more reports per vCPU. */
	for (uint32_t i = 0; !s.rc && i < VCPUS; i++)
		s.rc = squib_kvm_counter_wait(k.counter, i, s.reports[i] + 2, WAIT_MS, &s.after[i],
					      &d);
	if (s.rc)
		snprintf(s.msg, sizeof(s.msg), "%s: %s", squib_error_name(s.rc), d.msg);
	if (write(fd, &s, sizeof(s)) != (ssize_t)sizeof(s))
		_exit(3);
	for (;;)
		pause(); /* running until the parent kills us */
}

/* ---- checks on a restored VM (cmocka) ---------------------------------------------- */

struct pair {
	char *dir, *state, *mem;
};

static void pair_new(struct pair *p)
{
	p->dir = squib_test_tmpdir();
	p->state = squib_test_path(p->dir, "vm.snap");
	p->mem = squib_test_path(p->dir, "vm.mem");
}

static void pair_free(struct pair *p)
{
	squib_test_rmtree(p->dir);
	free(p->dir);
	free(p->state);
	free(p->mem);
}

static void must(int rc, const struct squib_error_detail *d, const char *what)
{
	if (rc)
		fail_msg("%s: %s (%s)", what, squib_error_name(rc), d->msg);
}

/* The guest RAM the VM runs on equals the memory file's RAM range. */
static void assert_ram_is_file(struct kvm *k, const char *mem)
{
	struct squib_guest_memory *g = NULL;
	struct squib_error_detail d;
	const uint8_t *ram = squib_kvm_vm_gpa_to_hva(k->vm, 0, RAM_SIZE);

	assert_non_null(ram);
	must(squib_guest_memory_open(mem, NULL, 0, NULL, SQUIB_BACKEND_COPY, &g, &d), &d,
	     "memory file");
	assert_int_equal(squib_guest_memory_region_count(g), 1);
	assert_int_equal(squib_guest_memory_region(g, 0)->size, RAM_SIZE);
	assert_true(memcmp(ram, squib_guest_memory_region(g, 0)->host, RAM_SIZE) == 0);
	squib_guest_memory_free(g);
}

/* Load the pair into a fresh VM, paused. */
static void load_paused(struct kvm *k, const struct pair *p, enum squib_memory_backend b,
			bool track, struct squib_load_result *res)
{
	struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(p->state, p->mem);
	struct squib_error_detail d;

	must(kvm_new(k, VCPUS, false, track, &d), &d, "target VM");
	req.backend = b;
	req.stay_paused = true;
	must(squib_load(&k->v, &req, res, &d), &d, "squib_load");
	assert_non_null(res->memory);
	assert_int_equal(squib_guest_memory_backend(res->memory), b);
}

/* Paused: the counters in memory and the device do not move. */
static void assert_stays_paused(struct kvm *k)
{
	struct squib_kvm_vcpu_status st;
	const uint8_t *ram = squib_kvm_vm_gpa_to_hva(k->vm, 0, RAM_SIZE);
	uint64_t c[VCPUS], r[VCPUS];

	for (uint32_t i = 0; i < VCPUS; i++) {
		c[i] = counter_in(ram, i);
		assert_true(squib_kvm_counter_get(k->counter, i, NULL, &r[i]));
	}
	usleep(20000); /* a paused guest makes no progress, however long we look */
	for (uint32_t i = 0; i < VCPUS; i++) {
		uint64_t now;

		assert_int_equal(counter_in(ram, i), c[i]);
		assert_true(squib_kvm_counter_get(k->counter, i, NULL, &now));
		assert_int_equal(now, r[i]);
		assert_int_equal(squib_kvm_vm_vcpu_status(k->vm, i, &st), 0);
		assert_true(st.state == SQUIB_KVM_VCPU_IDLE || st.state == SQUIB_KVM_VCPU_PAUSED);
	}
}

/*
 * Resume, let every vCPU report three more times, pause, and check that
 * each counter went on from its saved value: never backwards, and by as
 * much as the reports made since (one per 1024 increments, give or take the
 * report the pause may have caught in flight).
 */
static void assert_continues(struct kvm *k, const uint64_t *saved, const uint64_t *saved_reports,
			     uint64_t mask)
{
	const uint8_t *ram = squib_kvm_vm_gpa_to_hva(k->vm, 0, RAM_SIZE);
	struct squib_error_detail d;

	must(squib_vm_resume(&k->v, &d), &d, "resume");
	for (uint32_t i = 0; i < VCPUS; i++)
		must(squib_kvm_counter_wait(k->counter, i, saved_reports[i] + 3, WAIT_MS, NULL, &d),
		     &d, "reports after the restore");
	must(squib_vm_pause(&k->v, 0, &d), &d, "pause");
	for (uint32_t i = 0; i < VCPUS; i++) {
		uint64_t c = counter_in(ram, i), r;
		int64_t steps, reports;

		assert_true(squib_kvm_counter_get(k->counter, i, NULL, &r));
		assert_true(c >= saved[i] + 3 * (mask + 1) - (mask + 1));
		steps = (int64_t)(c / (mask + 1)) - (int64_t)(saved[i] / (mask + 1));
		reports = (int64_t)r - (int64_t)saved_reports[i];
		if (steps - reports > 1 || steps - reports < -1)
			fail_msg("vCPU %u: counter %llu -> %llu (%lld report steps), %lld reports",
				 i, (unsigned long long)saved[i], (unsigned long long)c,
				 (long long)steps, (long long)reports);
	}
	must(squib_vm_resume(&k->v, &d), &d, "resume");
}

/* ---- the LAZY backend's pager ------------------------------------------------------------ */

static void pager_stats(const struct squib_load_result *res, struct squib_pager_stats *s)
{
	assert_non_null(squib_guest_memory_pager(res->memory));
	squib_pager_stats(squib_guest_memory_pager(res->memory), s);
	assert_int_equal(squib_pager_error(squib_guest_memory_pager(res->memory), NULL), 0);
}

/* Pages present in either layer of a base + diff chain. */
static uint64_t present_in_chain(const char *base, const char *diff)
{
	struct squib_memfile *m[2];
	struct squib_error_detail d;
	uint64_t n = 0;

	must(squib_memfile_open(base, &m[0], &d), &d, "base");
	must(squib_memfile_open(diff, &m[1], &d), &d, "diff");
	for (uint64_t pg = 0; pg < RAM_SIZE / PAGE; pg++)
		n += squib_memfile_page_present(m[0], pg) || squib_memfile_page_present(m[1], pg);
	squib_memfile_close(m[0]);
	squib_memfile_close(m[1]);
	return n;
}

/*
 * After one thread read every page of a paused VM's RAM through the pager:
 * every present page of the file was copied once, every other page zeroed
 * without a read (bytes read = pages copied), nothing is missing any more.
 */
static void assert_pager_served_all_once(const struct squib_load_result *res, uint64_t present)
{
	struct squib_pager_stats s;
	uint64_t pages = RAM_SIZE / PAGE;

	pager_stats(res, &s);
	print_message("  pager: %llu faults, %llu copied, %llu zeroed, %llu bytes read, "
		      "median %.1f us, p99 %.1f us\n",
		      (unsigned long long)s.faults, (unsigned long long)s.pages_copied,
		      (unsigned long long)s.pages_zeroed, (unsigned long long)s.bytes_read,
		      s.median_us, s.p99_us);
	assert_true(s.faults > 0);
	assert_true(s.faults < pages); /* batches: several pages per fault */
	assert_int_equal(s.pages_copied, present);
	assert_int_equal(s.pages_copied + s.pages_zeroed, pages);
	assert_int_equal(s.bytes_read, s.pages_copied * PAGE);
	assert_int_equal(s.errors, 0);
	assert_true(s.complete);
}

/* ---- I-SNAP-1 -------------------------------------------------------------------------- */

static void test_should_restore_a_pair_saved_by_a_killed_process_into_a_fresh_vm(void **state)
{
	static const enum squib_memory_backend backends[] = {SQUIB_BACKEND_COPY, SQUIB_BACKEND_FILE,
							     SQUIB_BACKEND_LAZY};
	static const char *const names[] = {"COPY", "FILE", "LAZY"};
	struct guest g;
	struct saved s;
	struct pair p;
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	(void)state;
	load_guest("counter", &g);
	pair_new(&p);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		saver_child(fds[1], &g, p.state, p.mem);
		_exit(2);
	}
	close(fds[1]);
	n = read(fds[0], &s, sizeof(s));
	close(fds[0]);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(n, (ssize_t)sizeof(s));
	if (s.rc)
		fail_msg("saver: %s", s.msg);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	print_message(
	    "  full save of a running 2-vCPU guest: %llu KiB RAM data, guest paused %llu us, "
	    "save %llu us\n",
	    (unsigned long long)(s.mem_bytes >> 10), (unsigned long long)(s.paused_ns / 1000),
	    (unsigned long long)(s.total_ns / 1000));
	for (uint32_t i = 0; i < VCPUS; i++) {
		/* Memory and device were captured at one instant, and the saver went on. */
		uint64_t steps = s.counter[i] / (g.report_mask + 1);

		assert_true(s.counter[i] > 0);
		assert_true(s.reports[i] >= 2);
		assert_true(steps == s.reports[i] || steps == s.reports[i] + 1);
		assert_true(s.after[i] > (s.last[i] & 0xffffffffu) ||
			    s.after[i] < (s.last[i] & 0xffffffffu) /* 32-bit wrap */);
	}
	for (size_t b = 0; b < 3; b++) {
		struct squib_load_result res;
		struct kvm k;

		load_paused(&k, &p, backends[b], false, &res);
		print_message("  load (%s): memory %llu us, restore %llu us, total %llu us\n",
			      names[b], (unsigned long long)(res.ns.memory / 1000),
			      (unsigned long long)(res.ns.restore / 1000),
			      (unsigned long long)(res.ns.total / 1000));
		assert_ram_is_file(&k, p.mem);
		if (backends[b] == SQUIB_BACKEND_LAZY)
			assert_pager_served_all_once(&res, res.state.memory->present_pages);
		for (uint32_t i = 0; i < VCPUS; i++) {
			uint64_t last, reports;

			assert_true(squib_kvm_counter_get(k.counter, i, &last, &reports));
			assert_int_equal(last, s.last[i]);
			assert_int_equal(reports, s.reports[i]);
			assert_int_equal(res.state.x86_vcpus[i].regs.rsi, COUNTERS + i * PAGE);
		}
		assert_string_equal(res.state.vm_info.kernel_image_path, "/squib/e2e/counter.bin");
		assert_stays_paused(&k);
		assert_continues(&k, s.counter, s.reports, g.report_mask);
		kvm_free(&k);
		squib_load_result_free(&res);
	}
	pair_free(&p);
	free(g.code);
}

/* ---- stay paused; paused and running snapshots ------------------------------------------ */

static void save_pair(struct kvm *k, const struct pair *p, bool stay_paused, uint64_t *counters,
		      uint64_t *reports)
{
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(p->state, p->mem);
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct saved s;

	req.stay_paused = stay_paused;
	must(squib_save(&k->v, &req, &rep, &d), &d, "squib_save");
	assert_int_equal(rep.resumed, !stay_paused);
	assert_true(rep.state_published);
	must(read_counters(p->mem, counters, &d), &d, "counters");
	must(read_device(p->state, &s, &d), &d, "device");
	memcpy(reports, s.reports, sizeof(s.reports));
}

static void test_should_keep_a_loaded_vm_paused_until_resumed(void **state)
{
	uint64_t c[VCPUS], r[VCPUS];
	struct squib_load_result res;
	struct squib_error_detail d;
	struct kvm k, t;
	struct guest g;
	struct pair p;

	(void)state;
	load_guest("counter", &g);
	pair_new(&p);
	must(counter_guest(&k, &g, false, &d), &d, "counter guest");
	save_pair(&k, &p, false, c, r);
	kvm_free(&k);
	load_paused(&t, &p, SQUIB_BACKEND_COPY, false, &res);
	assert_stays_paused(&t);
	assert_stays_paused(&t); /* still, on a second look */
	assert_continues(&t, c, r, g.report_mask);
	kvm_free(&t);
	squib_load_result_free(&res);
	pair_free(&p);
	free(g.code);
}

static void test_should_restore_snapshots_of_a_paused_and_of_a_running_guest(void **state)
{
	uint64_t c[2][VCPUS], r[2][VCPUS];
	struct squib_error_detail d;
	struct pair p[2];
	struct guest g;
	struct kvm k;

	(void)state;
	load_guest("counter", &g);
	pair_new(&p[0]);
	pair_new(&p[1]);
	must(counter_guest(&k, &g, false, &d), &d, "counter guest");
	save_pair(&k, &p[0], false, c[0], r[0]); /* running */
	for (uint32_t i = 0; i < VCPUS; i++)
		must(squib_kvm_counter_wait(k.counter, i, r[0][i] + 2, WAIT_MS, NULL, &d), &d,
		     "reports after the save");
	must(squib_vm_pause(&k.v, 0, &d), &d, "VMM pause");
	save_pair(&k, &p[1], true, c[1], r[1]); /* paused by the VMM, and left so */
	assert_true(squib_kvm_vm_is_paused(k.vm));
	for (uint32_t i = 0; i < VCPUS; i++) {
		assert_int_equal(counter_in(squib_kvm_vm_gpa_to_hva(k.vm, 0, RAM_SIZE), i),
				 c[1][i]);
		assert_true(c[1][i] > c[0][i]);
	}
	kvm_free(&k);
	for (int n = 0; n < 2; n++) {
		struct squib_load_result res;
		struct kvm t;

		load_paused(&t, &p[n], n ? SQUIB_BACKEND_FILE : SQUIB_BACKEND_COPY, false, &res);
		assert_ram_is_file(&t, p[n].mem);
		assert_continues(&t, c[n], r[n], g.report_mask);
		kvm_free(&t);
		squib_load_result_free(&res);
		pair_free(&p[n]);
	}
	free(g.code);
}

/* ---- lazy restore: the guest faults its pages in ------------------------------------------ */

/* Load the pair LAZY into a fresh VM, paused, with or without the boot-page pre-warm. */
static void load_lazy_paused(struct kvm *k, const struct pair *p, bool prewarm,
			     struct squib_load_result *res)
{
	struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(p->state, p->mem);
	struct squib_lazy_options lazy;
	struct squib_error_detail d;

	memset(&lazy, 0, sizeof(lazy));
	lazy.no_prewarm = !prewarm;
	must(kvm_new(k, VCPUS, false, false, &d), &d, "target VM");
	req.backend = SQUIB_BACKEND_LAZY;
	req.stay_paused = true;
	req.lazy = &lazy;
	must(squib_load(&k->v, &req, res, &d), &d, "squib_load");
}

/*
 * Loaded LAZY and resumed without the VMM touching guest RAM: the vCPUs'
 * own accesses (KVM's kernel-mode faults) are what the pager serves. The
 * counters continue, only the pages the guest used became present, and
 * nothing absent was read (bytes read are whole copied pages, at most one
 * per page installed or found already there). Without the pre-warm nothing
 * is present before resume, so every page the guest used was a fault; with
 * it (squib_load's default) the boot pages are there before it runs.
 */
static void guest_faults_its_pages_in(bool prewarm)
{
	uint64_t c[VCPUS], r[VCPUS];
	struct squib_load_result res;
	struct squib_pager_stats s0, s;
	struct squib_error_detail d;
	struct kvm k, t;
	struct guest g;
	struct pair p;

	load_guest("counter", &g);
	pair_new(&p);
	must(counter_guest(&k, &g, false, &d), &d, "counter guest");
	save_pair(&k, &p, false, c, r);
	kvm_free(&k);
	load_lazy_paused(&t, &p, prewarm, &res);
	pager_stats(&res, &s0);
	if (prewarm) {
		assert_true(savetest_gm_stats(res.memory).pages_prewarmed > 0);
		/* (walking the saved page tables faults them in: a fault or so before resume) */
		assert_true(s0.pages_present > 0);
	} else {
		assert_int_equal(savetest_gm_stats(res.memory).pages_prewarmed, 0);
		assert_int_equal(s0.pages_present, 0); /* the load itself touched nothing */
	}
	assert_continues(&t, c, r, g.report_mask);
	must(squib_vm_pause(&t.v, 0, &d), &d, "pause");
	pager_stats(&res, &s);
	print_message("  guest-driven, %s: %llu pages present before resume (%llu pre-warmed), "
		      "%llu faults in all; %llu copied, %llu zeroed, %llu already there, "
		      "%llu of %llu pages present\n",
		      prewarm ? "pre-warmed" : "no pre-warm", (unsigned long long)s0.pages_present,
		      (unsigned long long)savetest_gm_stats(res.memory).pages_prewarmed,
		      (unsigned long long)s.faults, (unsigned long long)s.pages_copied,
		      (unsigned long long)s.pages_zeroed, (unsigned long long)s.pages_existing,
		      (unsigned long long)s.pages_present, (unsigned long long)s.page_count);
	assert_true(s.faults > 0); /* the counter pages are not boot pages */
	assert_true(s.pages_copied > 0);
	assert_true(s.pages_present < s.page_count / 4); /* lazy: most pages never touched */
	assert_int_equal(s.bytes_read % PAGE, 0);
	assert_true(s.bytes_read >= s.pages_copied * PAGE);
	assert_true(s.bytes_read <= (s.pages_copied + s.pages_existing) * PAGE);
	assert_true(s.pages_copied <= res.state.memory->present_pages);
	kvm_free(&t);
	squib_load_result_free(&res);
	pair_free(&p);
	free(g.code);
}

static void test_should_restore_lazily_with_the_guest_faulting_its_pages_in(void **state)
{
	(void)state;
	guest_faults_its_pages_in(false);
}

static void test_should_restore_lazily_with_the_boot_pages_prewarmed(void **state)
{
	(void)state;
	guest_faults_its_pages_in(true);
}

/*
 * The memory file loses its data under a lazily restored guest (truncated:
 * every read fails), as when a page server dies. The vCPUs block on pages
 * the pager cannot serve; the VMM sees the pager's error, fails the VM and
 * stops the pager: within a bound every vCPU is out for good, the guest made
 * no report, and resume and a save return the pager's error.
 */
static void test_should_stop_a_lazily_restored_guest_for_good_when_its_pager_fails(void **state)
{
	uint64_t c[VCPUS], r[VCPUS];
	struct squib_save_request req;
	struct squib_load_result res;
	struct squib_error_detail d, pd;
	struct squib_pager *pg;
	struct timespec t0, t1;
	struct kvm k, t;
	struct guest g;
	struct pair p, p2;
	int rc = 0;

	(void)state;
	load_guest("counter", &g);
	pair_new(&p);
	pair_new(&p2);
	must(counter_guest(&k, &g, false, &d), &d, "counter guest");
	save_pair(&k, &p, false, c, r);
	kvm_free(&k);
	load_paused(&t, &p, SQUIB_BACKEND_LAZY, false, &res);
	pg = squib_guest_memory_pager(res.memory);
	assert_int_equal(truncate(p.mem, 0), 0);
	must(squib_vm_resume(&t.v, &d), &d, "resume");
	for (int i = 0; i < 2000 && !(rc = squib_pager_error(pg, &pd)); i++)
		usleep(1000); /* liveness bound: the first fault fails at once */
	assert_int_equal(rc, SQUIB_E_MEMORY_IO);
	print_message("  pager error: %s\n", pd.msg);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	must(squib_kvm_vm_fail(t.vm, rc, &pd, &d), &d, "fail");
	squib_pager_stop(pg);
	must(squib_kvm_vm_wait_stopped(t.vm, 2000, &d), &d, "every vCPU out within 2 s");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message(
	    "  VM stopped %lld us after the failure was seen\n",
	    (long long)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000));
	for (uint32_t i = 0; i < VCPUS; i++) {
		struct squib_kvm_vcpu_status st;
		uint64_t reports;

		assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, i, &st), 0);
		assert_int_equal(st.state, SQUIB_KVM_VCPU_FAILED);
		assert_true(squib_kvm_counter_get(t.counter, i, NULL, &reports));
		assert_int_equal(reports, r[i]);
	}
	assert_int_equal(squib_vm_resume(&t.v, &d), SQUIB_E_MEMORY_IO);
	assert_string_equal(d.msg, pd.msg);
	req = SQUIB_SAVE_REQUEST_INIT(p2.state, p2.mem);
	assert_int_equal(squib_save(&t.v, &req, NULL, &d), SQUIB_E_MEMORY_IO);
	assert_false(squib_test_exists(p2.state));
	assert_false(squib_test_exists(p2.mem));
	kvm_free(&t);
	squib_load_result_free(&res);
	pair_free(&p);
	pair_free(&p2);
	free(g.code);
}

/* ---- the external handler (`serve`) dies under a running guest ----------------------- */

/* What on_lost saw; it fails the VM right there (any thread may). */
struct lost {
	struct squib_kvm_vm *vm;
	int code;
	struct squib_error_detail d;
	int called; /* atomic */
};

static void on_lost_fail_vm(void *ctx, int code, const struct squib_error_detail *d)
{
	struct lost *l = ctx;

	l->code = code;
	l->d = *d;
	squib_kvm_vm_fail(l->vm, code, d, NULL);
	__atomic_store_n(&l->called, 1, __ATOMIC_SEQ_CST);
}

/* `squib-snapshot serve` in the background, quiet; its pid. */
static pid_t start_serve(const char *sock, const struct pair *p)
{
	const char *cli_path = squib_test_cli_path();
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 1);
		dup2(null, 2);
		execl(cli_path, cli_path, "serve", "--socket", sock, "--mem", p->mem, "--state",
		      p->state, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static bool page_populated(struct kvm *k, uint64_t gpa)
{
	unsigned char v = 0;

	assert_int_equal(mincore(squib_kvm_vm_gpa_to_hva(k->vm, gpa, PAGE), PAGE, &v), 0);
	return v & 1;
}

/*
 * The UFFD backend with `squib-snapshot serve` as the handler. The handler
 * is stopped (SIGSTOP), the guest resumed: its vCPUs block on their counter
 * pages. The handler is killed: on_lost fails the VM, freeing the connection
 * unregisters the memory and wakes the faults into PROT_NONE, and within 2 s
 * every vCPU is out for good, the counter pages never populated (no zeros
 * read), no report made, and resume returns the handler's loss.
 */
static void test_should_stop_the_guest_for_good_when_the_external_handler_dies(void **state)
{
	uint64_t c[VCPUS], r[VCPUS];
	struct squib_load_request req;
	struct squib_lazy_options lazy;
	struct squib_load_result res;
	struct squib_error_detail d;
	struct timespec t0, t1;
	struct lost lost;
	struct kvm k, t;
	struct guest g;
	struct pair p;
	char *sock;
	pid_t serve;
	int status;

	(void)state;
	load_guest("counter", &g);
	pair_new(&p);
	sock = squib_test_path(p.dir, "h.sock");
	must(counter_guest(&k, &g, false, &d), &d, "counter guest");
	save_pair(&k, &p, false, c, r);
	kvm_free(&k);
	serve = start_serve(sock, &p);
	must(kvm_new(&t, VCPUS, false, false, &d), &d, "target VM");
	memset(&lost, 0, sizeof(lost));
	lost.vm = t.vm;
	memset(&lazy, 0, sizeof(lazy));
	lazy.uffd_socket = sock;
	lazy.remote.on_lost = on_lost_fail_vm;
	lazy.remote.ctx = &lost;
	req = SQUIB_LOAD_REQUEST_INIT(p.state, p.mem);
	req.backend = SQUIB_BACKEND_UFFD;
	req.stay_paused = true;
	req.lazy = &lazy;
	must(squib_load(&t.v, &req, &res, &d), &d, "squib_load (UFFD, serve)");
	assert_int_equal(kill(serve, SIGSTOP), 0);
	/* kill() only queues the stop: wait until every thread of the handler has stopped,
	 * or its pager could still serve the counter pages the guest asks for first. */
	assert_int_equal(waitpid(serve, &status, WUNTRACED), serve);
	assert_true(WIFSTOPPED(status));
	must(squib_vm_resume(&t.v, &d), &d, "resume");
	usleep(50000); /* the vCPUs reach their counter pages at once, and wait */
	for (uint32_t i = 0; i < VCPUS; i++) {
		uint64_t reports;

		assert_true(squib_kvm_counter_get(t.counter, i, NULL, &reports));
		assert_int_equal(reports, r[i]);
		assert_false(page_populated(&t, COUNTERS + i * PAGE));
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(kill(serve, SIGKILL), 0);
	assert_int_equal(waitpid(serve, &status, 0), serve);
	for (int i = 0; i < 2000 && !__atomic_load_n(&lost.called, __ATOMIC_SEQ_CST); i++)
		usleep(1000); /* liveness bound: the watcher sees the hang-up at once */
	assert_true(__atomic_load_n(&lost.called, __ATOMIC_SEQ_CST));
	/* Wake the faults: unregister by freeing the connection (the memory stays). */
	squib_guest_memory_release(res.memory);
	must(squib_kvm_vm_wait_stopped(t.vm, 2000, &d), &d, "every vCPU out within 2 s");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message(
	    "  handler killed -> VM stopped for good in %lld us: %s\n",
	    (long long)((t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000),
	    lost.d.msg);
	assert_int_equal(lost.code, SQUIB_E_MEMORY_IO);
	for (uint32_t i = 0; i < VCPUS; i++) {
		struct squib_kvm_vcpu_status st;
		uint64_t reports;

		assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, i, &st), 0);
		assert_int_equal(st.state, SQUIB_KVM_VCPU_FAILED);
		assert_true(squib_kvm_counter_get(t.counter, i, NULL, &reports));
		assert_int_equal(reports, r[i]);
		assert_false(page_populated(&t, COUNTERS + i * PAGE));
	}
	assert_int_equal(squib_vm_resume(&t.v, &d), SQUIB_E_MEMORY_IO);
	assert_string_equal(d.msg, lost.d.msg);
	kvm_free(&t);
	squib_load_result_free(&res);
	free(sock);
	pair_free(&p);
	free(g.code);
}

/* ---- I-SNAP-3 ----------------------------------------------------------------------------- */

static void assert_refused(const char *state_path, const char *mem_path)
{
	struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(state_path, mem_path);
	struct squib_load_result res;
	struct squib_error_detail d;
	struct kvm t;

	must(kvm_new(&t, VCPUS, false, false, &d), &d, "target VM");
	for (int b = 0; b < 2; b++) {
		req.backend = b ? SQUIB_BACKEND_FILE : SQUIB_BACKEND_COPY;
		assert_int_equal(squib_load(&t.v, &req, &res, &d), SQUIB_E_INCOMPATIBLE);
		assert_non_null(strstr(d.msg, "aarch64"));
		assert_null(res.memory);
		/* The VM was not touched: no RAM, never started. */
		assert_int_equal(squib_kvm_vm_memory_map(t.vm).count, 0);
	}
	kvm_free(&t);
}

static void test_should_refuse_an_aarch64_state_on_the_kvm_vm(void **state)
{
	struct squib_testvm_config cfg = squib_testvm_config_simple(0, 1 << 20, 2);
	struct squib_save_request areq;
	struct squib_error_detail d;
	struct squib_testvm *arm;
	struct squib_vm av;
	struct pair p;
	char *demo_snap = squib_test_fixture("demo.snap"),
	     *demo_mem = squib_test_fixture("demo.mem");
	uint8_t *buf;
	size_t len;

	(void)state;
	pair_new(&p);
	/* An aarch64 pair the library writes. */
	assert_int_equal(squib_testvm_new(&cfg, &arm), 0);
	av = squib_testvm_vm(arm);
	squib_testvm_fill(arm, 7, 3);
	areq = SQUIB_SAVE_REQUEST_INIT(p.state, p.mem);
	must(squib_save(&av, &areq, NULL, &d), &d, "aarch64 save");
	squib_testvm_free(arm);
	assert_refused(p.state, p.mem);
	/* The committed demo pair (copied: the load may recover pairs in place). */
	assert_int_equal(squib_test_read_file(demo_snap, &buf, &len), 0);
	assert_int_equal(squib_test_write_file(p.state, buf, len), 0);
	free(buf);
	assert_int_equal(squib_test_read_file(demo_mem, &buf, &len), 0);
	assert_int_equal(squib_test_write_file(p.mem, buf, len), 0);
	free(buf);
	assert_refused(p.state, p.mem);
	free(demo_snap);
	free(demo_mem);
	pair_free(&p);
}

/* ---- I-SNAP-2 on KVM ------------------------------------------------------------------------ */

static uint64_t xorshift64(uint64_t x)
{
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

/* The VMM's own writes: pages the guest never touches. */
static const uint64_t vmm_pages[] = {0x200000ull, 0x201000ull, 0x3ff000ull};

/* The VMM writes a page through its mapping and reports it (the KVM log cannot see it). */
static void vmm_write(struct kvm *k, uint64_t gpa, int byte)
{
	uint8_t buf[PAGE];
	struct squib_error_detail d;
	struct squib_tracker *t = squib_kvm_adapter_vmm_tracker(k->adapter);

	assert_non_null(t);
	memset(buf, byte, sizeof(buf));
	must(squib_kvm_vm_write(k->vm, gpa, buf, sizeof(buf), &d), &d, "VMM write");
	assert_int_equal(squib_tracker_mark_write(t, gpa, PAGE), 1);
}

/* Guest RAM of the VM equals memory set up from mem (with its chain). */
static void assert_ram_equals(const uint8_t *ram, const char *mem, const char *const *chain,
			      size_t n)
{
	struct squib_guest_memory *g = NULL;
	struct squib_error_detail d;

	must(squib_guest_memory_open(mem, chain, n, NULL, SQUIB_BACKEND_COPY, &g, &d), &d,
	     "memory");
	assert_true(memcmp(ram, squib_guest_memory_region(g, 0)->host, RAM_SIZE) == 0);
	squib_guest_memory_free(g);
}

/*
 * The pages KVM also logs when a guest reaches them for the first time since
 * logging started (test_kvm.c, add_first_touches): under two-dimensional
 * paging the code page and the three table pages (PML4, PDPT, PD) its walks
 * read, for certain; under shadow paging the code page, perhaps.
 */
static void want_first_touches(bool *must, bool *may)
{
	if (!squib_test_kvm_tdp()) {
		may[CODE >> 12] = true;
		return;
	}
	must[CODE >> 12] = true;
	for (uint64_t p = 1; p <= 3; p++)
		must[(TABLES >> 12) + p] = true;
}

static void test_should_save_exactly_the_guest_and_vmm_pages_in_a_diff_and_restore_it(void **state)
{
	const uint64_t seed = 0x9E3779B97F4A7C15ull;
	const uint32_t writes = 64;
	const uint64_t params[4] = {TARGET, TARGET_PAGES - 1, writes, 0};
	bool want[RAM_SIZE / PAGE] = {false}, may[RAM_SIZE / PAGE] = {false};
	struct squib_save_request full, diff;
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct squib_memfile *m;
	struct pair p0, p1;
	struct squib_memfile_manifest man = {0};
	struct squib_microvm_state ds;
	char *rebased, *rebased_state;
	uint8_t *final;
	uint64_t x = seed, wanted = 0;
	struct guest g;
	struct kvm k;

	(void)state;
	load_guest("page_writer", &g);
	pair_new(&p0);
	pair_new(&p1);
	rebased = squib_test_path(p1.dir, "rebased.mem");
	rebased_state = squib_test_path(p1.dir, "rebased.snap");
	for (uint32_t i = 0; i < writes; i++) {
		x = xorshift64(x);
		want[(TARGET >> 12) + (x & (TARGET_PAGES - 1))] = true;
	}
	want[PARAMS >> 12] = true; /* the guest's own bookkeeping: its result word */
	want_first_touches(want, may);
	for (size_t i = 0; i < sizeof(vmm_pages) / sizeof(vmm_pages[0]); i++)
		want[vmm_pages[i] >> 12] = true;
	/* Full checkpoint of the booted, never-run guest; the save's resume starts it. */
	must(kvm_new(&k, 1, true, true, &d), &d, "VM");
	must(squib_kvm_vm_write(k.vm, PARAMS, params, sizeof(params), &d), &d, "params");
	must(kvm_boot(&k, &g, 1, PARAMS, seed, 0, &d), &d, "boot");
	assert_non_null(squib_vm_trackers(&k.v));
	full = SQUIB_SAVE_REQUEST_INIT(p0.state, p0.mem);
	must(squib_save(&k.v, &full, &rep, &d), &d, "full save");
	assert_true(rep.resumed);
	must(squib_kvm_counter_wait(k.counter, 0, 1, WAIT_MS, NULL, &d), &d, "page writer");
	for (size_t i = 0; i < sizeof(vmm_pages) / sizeof(vmm_pages[0]); i++)
		vmm_write(&k, vmm_pages[i], 0x40 + (int)i);
	diff = SQUIB_SAVE_REQUEST_INIT(p1.state, p1.mem);
	diff.kind = SQUIB_SNAPSHOT_DIFF;
	diff.parent_state_path = p0.state;
	diff.stay_paused = true;
	must(squib_save(&k.v, &diff, &rep, &d), &d, "diff save");
	must(squib_memfile_open(p1.mem, &m, &d), &d, "diff file");
	for (uint64_t pg = 0; pg < RAM_SIZE / PAGE; pg++) {
		bool present = squib_memfile_page_present(m, pg);

		if (present && may[pg])
			want[pg] = true; /* the perhaps-logged first touch was logged */
		if (present != want[pg])
			print_error("page 0x%llx: in the diff %d, written %d\n",
				    (unsigned long long)(pg * PAGE), present, want[pg]);
		wanted += want[pg];
	}
	print_message("  diff: %llu pages (%llu expected)\n", (unsigned long long)rep.pages_written,
		      (unsigned long long)wanted);
	assert_int_equal(rep.pages_written, wanted);
	for (uint64_t pg = 0; pg < RAM_SIZE / PAGE; pg++)
		assert_int_equal(squib_memfile_page_present(m, pg), want[pg]);
	squib_memfile_close(m);
	/* The chain and its rebase both equal the final memory. */
	assert_non_null(final = malloc(RAM_SIZE));
	memcpy(final, squib_kvm_vm_gpa_to_hva(k.vm, 0, RAM_SIZE), RAM_SIZE);
	assert_ram_equals(final, p1.mem, (const char *const[]){p0.mem}, 1);
	must(
	    squib_memfile_rebase(p0.mem, (const char *const[]){p1.mem}, 1, rebased, NULL, &man, &d),
	    &d, "rebase");
	assert_ram_equals(final, rebased, NULL, 0);
	/* The rebased file is a Full with the diff's id: a state naming it pairs with it. */
	must(squib_load_state_only(p1.state, SQUIB_ARCH_X86_64, &ds, NULL, &d), &d, "diff state");
	assert_int_equal(ds.memory->kind, SQUIB_MEMORY_DIFF);
	must(squib_state_set_memory(&ds, &man.layout, &d), &d, "set memory");
	must(squib_state_save_file(rebased_state, &ds, &d), &d, "rebased state");
	squib_state_free(&ds);
	squib_memfile_manifest_release(&man);
	kvm_free(&k);
	/* Both restore: the diff with its chain (COPY), the rebased file (FILE). */
	for (int b = 0; b < 2; b++) {
		struct squib_load_request req =
		    SQUIB_LOAD_REQUEST_INIT(b ? rebased_state : p1.state, b ? rebased : p1.mem);
		struct squib_load_result res;
		struct squib_kvm_vcpu_status st;
		uint64_t reports;
		struct kvm t;

		req.chain = b ? NULL : (const char *const[]){p0.mem};
		req.chain_len = b ? 0 : 1;
		req.backend = b ? SQUIB_BACKEND_FILE : SQUIB_BACKEND_COPY;
		req.stay_paused = true;
		must(kvm_new(&t, 1, false, true, &d), &d, "target VM");
		must(squib_load(&t.v, &req, &res, &d), &d, "load");
		assert_true(memcmp(squib_kvm_vm_gpa_to_hva(t.vm, 0, RAM_SIZE), final, RAM_SIZE) ==
			    0);
		assert_true(squib_kvm_counter_get(t.counter, 0, NULL, &reports));
		assert_int_equal(reports, 1);
		/* Resumed, the guest sits in its HLT loop again: no failure, no new report. */
		must(squib_vm_resume(&t.v, &d), &d, "resume");
		must(squib_vm_pause(&t.v, 0, &d), &d, "pause");
		assert_int_equal(squib_kvm_vm_vcpu_status(t.vm, 0, &st), 0);
		assert_int_not_equal(st.state, SQUIB_KVM_VCPU_FAILED);
		assert_true(squib_kvm_counter_get(t.counter, 0, NULL, &reports));
		assert_int_equal(reports, 1);
		kvm_free(&t);
		squib_load_result_free(&res);
	}
	free(final);
	free(rebased);
	free(rebased_state);
	pair_free(&p0);
	pair_free(&p1);
	free(g.code);
}

/* A restored VM tracks from its load on: its first Diff names the loaded pair as parent and
 * holds exactly the pages written since (the counters, one VMM page); the chain restores. */
static void test_should_save_a_diff_of_a_restored_vm_and_restore_the_chain(void **state)
{
	const uint64_t vmm_page = 0x300000ull;
	uint64_t c0[VCPUS], r0[VCPUS], c1[VCPUS], r1[VCPUS];
	struct squib_save_request req;
	struct squib_save_report rep;
	struct squib_load_result res, res2;
	struct squib_load_request lr;
	struct squib_error_detail d;
	struct squib_memfile *m;
	struct kvm k, t, u;
	struct guest g;
	struct pair p0, p1;
	struct saved s;

	(void)state;
	load_guest("counter", &g);
	pair_new(&p0);
	pair_new(&p1);
	must(counter_guest(&k, &g, true, &d), &d, "counter guest");
	save_pair(&k, &p0, false, c0, r0);
	kvm_free(&k);
	/* Restored with tracking: run, let the VMM write a page, save a Diff over p0. */
	load_paused(&t, &p0, SQUIB_BACKEND_FILE, true, &res);
	assert_non_null(squib_vm_trackers(&t.v));
	must(squib_vm_resume(&t.v, &d), &d, "resume");
	for (uint32_t i = 0; i < VCPUS; i++)
		must(squib_kvm_counter_wait(t.counter, i, r0[i] + 2, WAIT_MS, NULL, &d), &d,
		     "reports");
	vmm_write(&t, vmm_page, 0x77);
	req = SQUIB_SAVE_REQUEST_INIT(p1.state, p1.mem);
	req.kind = SQUIB_SNAPSHOT_DIFF;
	req.parent_state_path = p0.state;
	req.stay_paused = true;
	must(squib_save(&t.v, &req, &rep, &d), &d, "diff of the restored VM");
	/* Under two-dimensional paging also the three table pages: the first walk after the
	 * restore is a write at the nested level (test_kvm.c, add_first_touches). Not the code
	 * page: the FILE backend maps the memory file private, so a fetch leaves its host page
	 * read-only and KVM maps it read-only, logging nothing. */
	assert_int_equal(rep.pages_written, VCPUS + 1 + (squib_test_kvm_tdp() ? 3 : 0));
	must(squib_memfile_open(p1.mem, &m, &d), &d, "diff file");
	for (uint32_t i = 0; i < VCPUS; i++)
		assert_true(squib_memfile_page_present(m, (COUNTERS >> 12) + i));
	assert_true(squib_memfile_page_present(m, vmm_page >> 12));
	squib_memfile_close(m);
	assert_ram_equals(squib_kvm_vm_gpa_to_hva(t.vm, 0, RAM_SIZE), p1.mem,
			  (const char *const[]){p0.mem}, 1);
	must(read_device(p1.state, &s, &d), &d, "device");
	for (uint32_t i = 0; i < VCPUS; i++) {
		c1[i] = counter_in(squib_kvm_vm_gpa_to_hva(t.vm, 0, RAM_SIZE), i);
		r1[i] = s.reports[i];
		assert_true(c1[i] > c0[i]);
	}
	kvm_free(&t);
	squib_load_result_free(&res);
	/* The chain into a third VM (COPY, then LAZY): it goes on from the Diff's counters. */
	for (int b = 0; b < 2; b++) {
		lr = SQUIB_LOAD_REQUEST_INIT(p1.state, p1.mem);
		lr.chain = (const char *const[]){p0.mem};
		lr.chain_len = 1;
		lr.stay_paused = true;
		lr.backend = b ? SQUIB_BACKEND_LAZY : SQUIB_BACKEND_COPY;
		must(kvm_new(&u, VCPUS, false, false, &d), &d, "third VM");
		must(squib_load(&u.v, &lr, &res2, &d), &d, "load the chain");
		if (b) {
			assert_ram_equals(squib_kvm_vm_gpa_to_hva(u.vm, 0, RAM_SIZE), p1.mem,
					  (const char *const[]){p0.mem}, 1);
			assert_pager_served_all_once(&res2, present_in_chain(p0.mem, p1.mem));
		}
		assert_int_equal(*(uint8_t *)squib_kvm_vm_gpa_to_hva(u.vm, vmm_page, 1), 0x77);
		assert_continues(&u, c1, r1, g.report_mask);
		kvm_free(&u);
		squib_load_result_free(&res2);
	}
	pair_free(&p0);
	pair_free(&p1);
	free(g.code);
}

/* ---- the CLI: run and restore ----------------------------------------------------------- */

static void cli(const char *dir, char *const *args, struct squib_test_proc *p)
{
	char *argv[12];
	const char *path = squib_test_cli_path();
	size_t n = 0;

	argv[n++] = (char *)path;
	while (*args && n < 11)
		argv[n++] = *args++;
	argv[n] = NULL;
	squib_test_spawn(dir, argv, p);
}

static void test_should_run_save_and_restore_a_guest_from_the_cli(void **state)
{
	const char *dir_guests = getenv("SQUIB_GUESTS");
	struct squib_test_proc p;
	char guest[4096], line[64];
	struct pair pr;
	unsigned long long saved[VCPUS];

	(void)state;
	snprintf(guest, sizeof(guest), "%s/counter.bin", dir_guests ? dir_guests : "tests/guests");
	pair_new(&pr);
	cli(pr.dir, (char *[]){"run", guest, "vm.snap", NULL}, &p);
	if (p.status)
		fail_msg("run: %s", p.err);
	assert_non_null(strstr(p.out, "saved vm.snap and vm.mem: full"));
	for (uint32_t i = 0; i < VCPUS; i++) {
		const char *at;

		snprintf(line, sizeof(line), "vCPU %u: saved counter ", i);
		assert_non_null(at = strstr(p.out, line));
		saved[i] = strtoull(at + strlen(line), NULL, 10);
		assert_true(saved[i] > 0);
	}
	squib_test_proc_free(&p);
	for (int b = 0; b < 5; b++) {
		static const char *const backend[] = {"copy", "file", "copy", "uffd", "uffd"};
		char *const copy[] = {"restore", "vm.snap", "--mem-backend", "copy", NULL};
		char *const file[] = {"restore", "vm.snap", "--mem-backend=file", NULL};
		char *const paused[] = {"restore", "vm.snap", "--paused", NULL};
		char *const uffd[] = {"restore", "vm.snap", "--mem-backend", "uffd", NULL};
		char *const uffd_paused[] = {"restore", "vm.snap", "--mem-backend=uffd", "--paused",
					     NULL};
		char *const *const argv[] = {copy, file, paused, uffd, uffd_paused};
		bool stays = b == 2 || b == 4;

		cli(pr.dir, argv[b], &p);
		if (p.status)
			fail_msg("restore: %s", p.err);
		snprintf(line, sizeof(line), "(%s backend, 2 vCPUs)", backend[b]);
		assert_non_null(strstr(p.out, line));
		for (uint32_t i = 0; i < VCPUS; i++) {
			snprintf(line, sizeof(line), "vCPU %u: counter %llu,", i, saved[i]);
			assert_non_null(strstr(p.out, line));
		}
		assert_non_null(strstr(p.out, stays ? "paused: the guest was not resumed"
						    : "resumed; after 2 more reports per vCPU"));
		/* Only the lazy backend has a pager, and the counters it printed were faults. */
		assert_true((strstr(p.out, "pager: ") != NULL) == (b >= 3));
		if (b >= 3) {
			unsigned long long faults =
			    strtoull(strstr(p.out, "pager: ") + 7, NULL, 10);

			assert_true(faults > 0);
		}
		squib_test_proc_free(&p);
	}
	/* The committed aarch64 demo pair: refused, exit 1, naming both architectures. */
	{
		char *snap = squib_test_fixture("demo.snap"), *mem = squib_test_fixture("demo.mem");

		cli(pr.dir, (char *[]){"restore", snap, "--mem", mem, NULL}, &p);
		assert_int_equal(p.status, 1);
		assert_non_null(
		    strstr(p.err, "the state file is for aarch64, the target is x86_64"));
		squib_test_proc_free(&p);
		free(snap);
		free(mem);
	}
	/* Backends are named copy, file and uffd: anything else is a usage error. */
	cli(pr.dir, (char *[]){"restore", "vm.snap", "--mem-backend", "lazy", NULL}, &p);
	assert_int_equal(p.status, 1);
	assert_non_null(strstr(p.err, "--mem-backend is copy, file or uffd"));
	squib_test_proc_free(&p);
	pair_free(&pr);
}

/* The "pager: N faults" figure of a restore's output. */
static unsigned long long pager_faults(const char *out)
{
	const char *at = strstr(out, "pager: ");

	if (!at)
		fail_msg("no pager statistics in '%s'", out);
	return strtoull(at + 7, NULL, 10);
}

/* A Full pair of the running counter guest saved by `run` into a new directory. */
static void cli_saved_pair(struct pair *pr)
{
	const char *dir_guests = getenv("SQUIB_GUESTS");
	struct squib_test_proc p;
	char guest[4096];

	snprintf(guest, sizeof(guest), "%s/counter.bin", dir_guests ? dir_guests : "tests/guests");
	pair_new(pr);
	cli(pr->dir, (char *[]){"run", guest, "vm.snap", NULL}, &p);
	if (p.status)
		fail_msg("run: %s", p.err);
	squib_test_proc_free(&p);
}

/*
 * REAP on KVM: restore 1 records the pages the guest faulted in, restore 2
 * prefetches them before the guest runs and the guest takes at least 90 %
 * fewer faults (here: none). Pre-warm is off in both, so the set is all the
 * guest's own doing.
 */
static void test_should_record_a_working_set_and_prefetch_it_from_the_cli(void **state)
{
	struct squib_test_proc p;
	unsigned long long on_demand, prefetched;
	struct pair pr;

	(void)state;
	cli_saved_pair(&pr);
	cli(pr.dir,
	    (char *[]){"restore", "vm.snap", "--mem-backend", "uffd", "--no-prewarm", "--record-ws",
		       "vm.ws", NULL},
	    &p);
	if (p.status)
		fail_msg("restore --record-ws: %s", p.err);
	on_demand = pager_faults(p.out);
	assert_true(on_demand > 0);
	assert_non_null(strstr(p.out, "recorded working set: "));
	squib_test_proc_free(&p);

	cli(pr.dir,
	    (char *[]){"restore", "vm.snap", "--mem-backend", "uffd", "--no-prewarm",
		       "--prefetch-ws", "vm.ws", NULL},
	    &p);
	if (p.status)
		fail_msg("restore --prefetch-ws: %s", p.err);
	assert_non_null(strstr(p.out, "resumed; after 2 more reports per vCPU"));
	prefetched = pager_faults(p.out);
	if (prefetched * 10 > on_demand)
		fail_msg("prefetch left %llu of %llu faults: '%s'", prefetched, on_demand, p.out);
	assert_null(strstr(p.out, " 0 working-set pages prefetched"));
	squib_test_proc_free(&p);

	/* A background fill racing the guest's faults: the guest still continues. */
	cli(pr.dir,
	    (char *[]){"restore", "vm.snap", "--mem-backend", "uffd", "--background-fill", NULL},
	    &p);
	if (p.status)
		fail_msg("restore --background-fill: %s", p.err);
	assert_non_null(strstr(p.out, "resumed; after 2 more reports per vCPU"));
	squib_test_proc_free(&p);

	/* Options of the in-process pager need its backend. */
	cli(pr.dir, (char *[]){"restore", "vm.snap", "--prefetch-ws", "vm.ws", NULL}, &p);
	assert_int_equal(p.status, 1);
	assert_non_null(strstr(p.err, "need --mem-backend uffd"));
	squib_test_proc_free(&p);
	pair_free(&pr);
}

/* serve --socket --mem --state [opt value] in the background, listening. */
static void serve_bg(const struct pair *pr, char *opt, char *value, struct squib_test_bg *b)
{
	char *argv[] = {squib_test_cli_path(), "serve", "--socket", "h.sock", "--mem", "vm.mem",
			"--state", "vm.snap", opt, value, NULL};

	squib_test_bg_start(pr->dir, argv, b);
	squib_test_bg_wait_for(b, "listening on h.sock", 5000);
}

/* I-SNAP-1 through the CLI pair: `serve` holds the pages, `restore --uffd-sock` runs the guest on.
 */
static void test_should_restore_through_serve_from_the_cli(void **state)
{
	struct squib_test_proc p;
	struct squib_test_bg h;
	struct pair pr;

	(void)state;
	cli_saved_pair(&pr);
	serve_bg(&pr, NULL, NULL, &h);
	cli(pr.dir, (char *[]){"restore", "vm.snap", "--uffd-sock", "h.sock", NULL}, &p);
	if (p.status)
		fail_msg("restore --uffd-sock: %s", p.err);
	assert_non_null(strstr(p.out, "(uffd, external handler backend, 2 vCPUs)"));
	assert_non_null(strstr(p.out, "resumed; after 2 more reports per vCPU"));
	squib_test_proc_free(&p);
	assert_int_equal(squib_test_bg_finish(&h, 5000), 0);
	assert_non_null(strstr(h.obuf, "stopped: the VMM hung up"));
	assert_null(strstr(h.obuf, "pages copied 0,")); /* it did serve the guest's pages */
	pair_free(&pr);
}

/* restore --handler-uid: a `serve` running as another uid (65534) is refused by default, nothing
 * sent to it, and trusted with the flag. */
static void test_should_trust_a_handler_of_another_uid_only_with_handler_uid(void **state)
{
	char *argv[] = {squib_test_cli_path(), "serve", "--socket", "h.sock", "--mem", "vm.mem",
			"--state", "vm.snap", "--allow-uid", "0", NULL};
	struct squib_test_proc p;
	struct squib_test_bg h;
	struct pair pr;

	(void)state;
	if (geteuid() != 0) {
		print_message("*** SKIP: not root: no serve of another uid: restore --handler-uid "
			      "untested ***\n");
		skip();
	}
	cli_saved_pair(&pr);
	assert_int_equal(chown(pr.dir, 65534, 65534), 0);
	assert_int_equal(chown(pr.mem, 65534, 65534), 0);
	assert_int_equal(chown(pr.state, 65534, 65534), 0);
	squib_test_bg_start_as(pr.dir, argv, 65534, &h);
	squib_test_bg_wait_for(&h, "listening on h.sock", 5000);
	cli(pr.dir, (char *[]){"restore", "vm.snap", "--uffd-sock", "h.sock", NULL}, &p);
	assert_int_equal(p.status, 1);
	if (!strstr(p.err, "the uffd is not sent to h.sock"))
		fail_msg("restore refused for another reason: %s", p.err);
	squib_test_proc_free(&p);
	/* serve is still there after the refusal: it was sent nothing. */
	cli(pr.dir,
	    (char *[]){"restore", "vm.snap", "--uffd-sock", "h.sock", "--handler-uid", "65534",
		       NULL},
	    &p);
	if (p.status)
		fail_msg("restore --handler-uid 65534: %s", p.err);
	assert_non_null(strstr(p.out, "(uffd, external handler backend, 2 vCPUs)"));
	assert_non_null(strstr(p.out, "resumed; after 2 more reports per vCPU"));
	squib_test_proc_free(&p);
	assert_int_equal(squib_test_bg_finish(&h, 5000), 0);
	assert_null(strstr(h.obuf, "pages copied 0,"));
	pair_free(&pr);
}

/* The handler's own record and prefetch: the second restore takes fewer faults (3 -> 0 here). */
static void test_should_record_and_prefetch_a_working_set_in_serve(void **state)
{
	char *restore[] = {"restore", "vm.snap", "--uffd-sock", "h.sock", "--no-prewarm", NULL};
	unsigned long long first, second;
	struct squib_test_proc p;
	struct squib_test_bg h;
	struct pair pr;
	const char *at;

	(void)state;
	cli_saved_pair(&pr);
	serve_bg(&pr, "--record-ws", "h.ws", &h);
	cli(pr.dir, restore, &p);
	if (p.status)
		fail_msg("restore --uffd-sock: %s", p.err);
	squib_test_proc_free(&p);
	assert_int_equal(squib_test_bg_finish(&h, 5000), 0);
	assert_non_null(strstr(h.obuf, "recorded working set: "));
	assert_non_null(at = strstr(h.obuf, "faults "));
	first = strtoull(at + 7, NULL, 10);
	assert_true(first > 0);

	/*
	 * Fewer, not "none": Firecracker's protocol has no acknowledgement, so the VMM may
	 * touch a page before serve's prefetch (right after the handshake) installs it. Here
	 * it is 3 -> 0 in a normal build, but the VMM has won the whole race (all three pages)
	 * about once in 20 runs when it and serve share one CPU, so the race is run up to
	 * three times: a prefetch that never installs anything still fails all three. The
	 * >= 90 % cut is asserted where the prefetch is ordered before the guest runs
	 * (in-process: test_should_record_a_working_set_and_prefetch_it_from_the_cli).
	 */
	second = first;
	for (int attempt = 1; attempt <= 3 && second >= first; attempt++) {
		serve_bg(&pr, "--prefetch-ws", "h.ws", &h);
		cli(pr.dir, restore, &p);
		if (p.status)
			fail_msg("restore --uffd-sock: %s", p.err);
		assert_non_null(strstr(p.out, "resumed; after 2 more reports per vCPU"));
		squib_test_proc_free(&p);
		assert_int_equal(squib_test_bg_finish(&h, 5000), 0);
		assert_non_null(strstr(h.obuf, "prefetched the working set: "));
		assert_non_null(at = strstr(h.obuf, "faults "));
		second = strtoull(at + 7, NULL, 10);
		printf("  prefetch attempt %d: %llu -> %llu faults\n", attempt, first, second);
	}
	if (second >= first)
		fail_msg("prefetch left %llu of %llu faults, three times: '%s'", second, first,
			 h.obuf);
	pair_free(&pr);
}

/*
 * The handler is SIGKILLed under a running guest: restore stops the guest for
 * good and exits 1 with the reason within 2 s (the watcher sees the hang-up;
 * the CLI looks every 100 ms), never hangs.
 */
static void test_should_stop_the_guest_when_serve_is_killed_from_the_cli(void **state)
{
	char *argv[] = {squib_test_cli_path(), "restore", "vm.snap", "--uffd-sock", "h.sock",
			"--reports",	       "1000000", NULL};
	struct squib_test_bg h, vmm;
	struct pair pr;

	(void)state;
	cli_saved_pair(&pr);
	serve_bg(&pr, NULL, NULL, &h);
	squib_test_bg_start(pr.dir, argv, &vmm);
	squib_test_bg_wait_for(&vmm, "page-fault handler: pid", 5000);
	assert_int_equal(kill(h.pid, SIGKILL), 0);
	assert_int_equal(squib_test_bg_finish(&h, 2000), 128 + SIGKILL);
	assert_int_equal(squib_test_bg_finish(&vmm, 2000), 1);
	if (!strstr(vmm.ebuf, "the guest was stopped: the page-fault handler is gone"))
		fail_msg("stderr: '%s'", vmm.ebuf);
	assert_null(strstr(vmm.obuf, "resumed; after"));
	pair_free(&pr);
}

/* run --diff [--packed]: a Full pair, N more reports, a Diff over it; restore --chain goes on. */
static void run_diff_and_restore_the_chain(bool packed)
{
	const char *dir_guests = getenv("SQUIB_GUESTS");
	struct squib_test_proc p;
	char guest[4096], line[64];
	const char *diff_line;
	struct pair pr;
	unsigned long long full[VCPUS], diff[VCPUS];

	snprintf(guest, sizeof(guest), "%s/counter.bin", dir_guests ? dir_guests : "tests/guests");
	pair_new(&pr);
	cli(pr.dir,
	    (char *[]){"run", guest, "full.snap", "--diff", "diff.snap", "--diff-mem", "d.mem",
		       "--reports", "3", packed ? "--packed" : NULL, NULL},
	    &p);
	if (p.status)
		fail_msg("run: %s", p.err);
	assert_non_null(strstr(p.out, "saved full.snap and full.mem: full"));
	assert_non_null(diff_line =
			    strstr(p.out, "saved diff.snap and d.mem: diff over full.snap"));
	for (uint32_t i = 0; i < VCPUS; i++) {
		const char *at;

		snprintf(line, sizeof(line), "vCPU %u: saved counter ", i);
		assert_non_null(at = strstr(p.out, line));
		assert_true(at < diff_line);
		full[i] = strtoull(at + strlen(line), NULL, 10);
		assert_non_null(at = strstr(diff_line, line));
		diff[i] = strtoull(at + strlen(line), NULL, 10);
		assert_true(full[i] > 0);
		assert_true(diff[i] > full[i]);
	}
	squib_test_proc_free(&p);
	/* The Diff holds only what changed; it pairs with its state and restores over its base. */
	cli(pr.dir, (char *[]){"verify", "diff.snap", "--mem", "d.mem", NULL}, &p);
	if (p.status)
		fail_msg("verify: %s%s", p.out, p.err);
	assert_non_null(strstr(p.out, "memory footer:    ok (diff"));
	/* --packed: version 1.1, pages back to back (the manifest says so, verify too) */
	assert_int_equal(strstr(p.out, ", packed") != NULL, packed);
	assert_int_equal(strstr(p.out, "version 1.1.0") != NULL, packed);
	squib_test_proc_free(&p);
	for (int b = 0; b < 2; b++) {
		cli(pr.dir,
		    (char *[]){"restore", "diff.snap", "--mem", "d.mem", "--chain", "full.mem",
			       "--mem-backend", b ? "uffd" : "copy", NULL},
		    &p);
		if (p.status)
			fail_msg("restore: %s", p.err);
		for (uint32_t i = 0; i < VCPUS; i++) {
			snprintf(line, sizeof(line), "vCPU %u: counter %llu,", i, diff[i]);
			assert_non_null(strstr(p.out, line));
		}
		assert_non_null(strstr(p.out, "resumed; after 2 more reports per vCPU"));
		assert_true((strstr(p.out, "pager: ") != NULL) == (b == 1));
		squib_test_proc_free(&p);
	}
	/* Without its base the Diff is refused; --diff-mem alone is a usage error. */
	cli(pr.dir, (char *[]){"restore", "diff.snap", "--mem", "d.mem", NULL}, &p);
	assert_int_equal(p.status, 1);
	squib_test_proc_free(&p);
	if (packed)
		cli(pr.dir, (char *[]){"run", guest, "x.snap", "--packed", NULL}, &p);
	else
		cli(pr.dir, (char *[]){"run", guest, "x.snap", "--diff-mem", "x.mem", NULL}, &p);
	assert_int_equal(p.status, 1);
	assert_non_null(
	    strstr(p.err, packed ? "--packed needs --diff" : "--diff-mem needs --diff"));
	squib_test_proc_free(&p);
	pair_free(&pr);
}

static void test_should_run_save_a_full_and_a_diff_and_restore_the_chain_from_the_cli(void **state)
{
	(void)state;
	run_diff_and_restore_the_chain(false);
}

/* The same with a packed Diff: restore --chain reads it with COPY and through serve (uffd). */
static void test_should_run_save_a_packed_diff_and_restore_the_chain_from_the_cli(void **state)
{
	(void)state;
	run_diff_and_restore_the_chain(true);
}

/* ---- the quiesce timeout and misuse through the adapter ------------------------------------ */

static void test_should_roll_back_a_save_when_a_kvm_vcpu_does_not_acknowledge(void **state)
{
	struct blocker *b = *state;
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_save_request req;
	struct squib_save_report rep;
	struct squib_kvm_adapter *a;
	struct squib_error_detail d;
	struct squib_kvm_vm *vm;
	struct squib_vm v;
	struct guest g;
	struct pair p;

	load_guest("counter", &g);
	pair_new(&p);
	cfg.vcpu_count = VCPUS;
	must(squib_kvm_vm_new(&cfg, &vm, &d), &d, "VM");
	b->vm = vm; /* the teardown frees it (and the adapter), after releasing the blocker */
	must(squib_kvm_vm_add_ram(vm, 0, RAM_SIZE, NULL, NULL, &d), &d, "RAM");
	must(squib_kvm_vm_add_device(vm, "blocker", PORT_COUNTER, 1, &blocker_ops, b, &d), &d,
	     "device");
	must(squib_kvm_adapter_new(vm, NULL, &a, &d), &d, "adapter");
	b->adapter = a;
	v = squib_kvm_adapter_vm(a);
	{
		struct kvm k = {vm, NULL, a, v};

		must(kvm_boot(&k, &g, VCPUS, 0, COUNTERS, PAGE, &d), &d, "boot");
	}
	must(squib_kvm_vm_start(vm, &d), &d, "start");
	blocker_wait_entered(b);
	/* A vCPU sits in the device: the save times out, resumes the rest, writes nothing. */
	req = SQUIB_SAVE_REQUEST_INIT(p.state, p.mem);
	req.quiesce_timeout_ms = 50;
	assert_int_equal(squib_save(&v, &req, &rep, &d), SQUIB_E_QUIESCE_TIMEOUT);
	assert_non_null(strstr(d.msg, "did not ack the pause within 50 ms"));
	assert_false(rep.memory_published);
	assert_false(squib_test_exists(p.state));
	assert_false(squib_test_exists(p.mem));
	assert_false(squib_kvm_vm_is_paused(vm));
	/* Released, the same save succeeds. */
	blocker_release(b);
	req.quiesce_timeout_ms = WAIT_MS;
	must(squib_save(&v, &req, &rep, &d), &d, "save");
	assert_true(rep.state_published && rep.resumed);
	assert_false(squib_kvm_vm_is_paused(vm));
	pair_free(&p);
	free(g.code);
}

static void test_should_refuse_adapter_misuse(void **state)
{
	struct squib_vm_region r = {0, RAM_SIZE, NULL};
	struct squib_save_request req;
	struct squib_error_detail d;
	struct squib_kvm_adapter *a;
	struct kvm k;
	struct pair p;

	(void)state;
	pair_new(&p);
	assert_int_equal(squib_kvm_adapter_new(NULL, NULL, &a, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_null(squib_kvm_adapter_vmm_tracker(NULL));
	squib_kvm_adapter_free(NULL);
	must(kvm_new(&k, 1, true, false, &d), &d, "VM");
	/* Untracked: no trackers, and a Diff is refused (I-SNAP-6) before any file exists. */
	assert_null(squib_vm_trackers(&k.v));
	assert_null(squib_kvm_adapter_vmm_tracker(k.adapter));
	req = SQUIB_SAVE_REQUEST_INIT(p.state, p.mem);
	req.kind = SQUIB_SNAPSHOT_DIFF;
	req.parent_memory_id = (const uint8_t[SQUIB_MEMORY_ID_SIZE]){1};
	assert_int_not_equal(squib_save(&k.v, &req, NULL, &d), 0);
	assert_non_null(strstr(d.msg, "track_dirty_pages"));
	assert_false(squib_test_exists(p.mem));
	/* A VM that has RAM takes no more through set_memory. */
	r.host = squib_kvm_vm_gpa_to_hva(k.vm, 0, RAM_SIZE);
	assert_int_equal(squib_vm_set_memory(&k.v, &r, 1, &d), SQUIB_E_INVALID_ARGUMENT);
	assert_int_equal(k.v.ops->pause_begin(k.v.ctx, VCPUS + 5, &d), SQUIB_E_INVALID_ARGUMENT);
	kvm_free(&k);
	pair_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_restore_a_pair_saved_by_a_killed_process_into_a_fresh_vm),
	    cmocka_unit_test(test_should_keep_a_loaded_vm_paused_until_resumed),
	    cmocka_unit_test(test_should_restore_lazily_with_the_guest_faulting_its_pages_in),
	    cmocka_unit_test(test_should_restore_lazily_with_the_boot_pages_prewarmed),
	    cmocka_unit_test(
		test_should_stop_a_lazily_restored_guest_for_good_when_its_pager_fails),
	    cmocka_unit_test(test_should_stop_the_guest_for_good_when_the_external_handler_dies),
	    cmocka_unit_test(test_should_restore_snapshots_of_a_paused_and_of_a_running_guest),
	    cmocka_unit_test(test_should_refuse_an_aarch64_state_on_the_kvm_vm),
	    cmocka_unit_test(
		test_should_save_exactly_the_guest_and_vmm_pages_in_a_diff_and_restore_it),
	    cmocka_unit_test(test_should_save_a_diff_of_a_restored_vm_and_restore_the_chain),
	    cmocka_unit_test(
		test_should_run_save_a_full_and_a_diff_and_restore_the_chain_from_the_cli),
	    cmocka_unit_test(test_should_run_save_a_packed_diff_and_restore_the_chain_from_the_cli),
	    cmocka_unit_test(test_should_run_save_and_restore_a_guest_from_the_cli),
	    cmocka_unit_test(test_should_record_a_working_set_and_prefetch_it_from_the_cli),
	    cmocka_unit_test(test_should_restore_through_serve_from_the_cli),
	    cmocka_unit_test(test_should_trust_a_handler_of_another_uid_only_with_handler_uid),
	    cmocka_unit_test(test_should_record_and_prefetch_a_working_set_in_serve),
	    cmocka_unit_test(test_should_stop_the_guest_when_serve_is_killed_from_the_cli),
	    cmocka_unit_test_setup_teardown(
		test_should_roll_back_a_save_when_a_kvm_vcpu_does_not_acknowledge, blocker_setup,
		blocker_teardown),
	    cmocka_unit_test(test_should_refuse_adapter_misuse),
	};

	if (!squib_kvm_available(NULL)) {
		fprintf(stderr,
			"*** SKIPPED test_kvm_e2e: /dev/kvm does not exist on this machine ***\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
