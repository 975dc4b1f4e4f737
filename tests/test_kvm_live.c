/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live saves of a KVM guest: the counter guest keeps incrementing its
 * counters (KVM writes them into guest RAM through the vCPU's page tables)
 * while squib_save writes its memory. The memory file equals a copy of guest
 * RAM taken at the pause instant (by a capture op that wraps the adapter's),
 * the guest's writes during the save waited for the live handler, and the
 * pair restores into a fresh VM that carries on counting from the saved
 * values. Then a Diff over the live Full restores as a chain.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/guest_memory.h>
#include <squib/kvm.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/save.h>

#include "savetest.h"
#include "spawn.h"

#define RAM_SIZE (4u << 20)
#define TABLES	 0x1000ull
#define CODE	 0x10000ull
#define STACKS	 0x40000ull
#define PAGE	 4096ull
/* The counters sit in RAM's last 2 MiB: the writer reaches them last, so the
 * guest's writes to them meet protected pages while the hook below holds it. */
#define COUNTERS     (RAM_SIZE - 4 * PAGE)
#define PORT_COUNTER 0x3f0
#define VCPUS	     2u
#define WAIT_MS	     20000u /* safety net for a broken run, not a measurement */

struct kvm {
	struct squib_kvm_vm *vm;
	struct squib_kvm_counter *counter;
	struct squib_kvm_adapter *adapter;
	struct squib_vm v;
};

static void must(int rc, const struct squib_error_detail *d, const char *what)
{
	if (rc)
		fail_msg("%s: %s (%s)", what, squib_error_name(rc), d->msg);
}

static void kvm_free(struct kvm *k)
{
	squib_kvm_adapter_free(k->adapter);
	squib_kvm_vm_free(k->vm);
	memset(k, 0, sizeof(*k));
}

static void kvm_new(struct kvm *k, bool with_ram)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_adapter_config acfg = {true, "/squib/live/counter.bin", "live"};
	struct squib_error_detail d;

	memset(k, 0, sizeof(*k));
	cfg.vcpu_count = VCPUS;
	must(squib_kvm_vm_new(&cfg, &k->vm, &d), &d, "vm");
	if (with_ram)
		must(squib_kvm_vm_add_ram(k->vm, 0, RAM_SIZE, NULL, NULL, &d), &d, "ram");
	must(squib_kvm_vm_add_counter(k->vm, PORT_COUNTER, &k->counter, &d), &d, "counter");
	must(squib_kvm_adapter_new(k->vm, &acfg, &k->adapter, &d), &d, "adapter");
	k->v = squib_kvm_adapter_vm(k->adapter);
}

static void boot_counter_guest(struct kvm *k)
{
	const char *dir = getenv("SQUIB_GUESTS");
	struct squib_kvm_boot b;
	struct squib_error_detail d;
	char path[4096];
	uint8_t *code;
	size_t len;

	snprintf(path, sizeof(path), "%s/counter.bin", dir ? dir : "tests/guests");
	if (squib_test_read_file(path, &code, &len))
		fail_msg("%s: cannot read it (build the squib_guests target)", path);
	kvm_new(k, true);
	memset(&b, 0, sizeof(b));
	b.tables_gpa = TABLES;
	b.map_size = RAM_SIZE;
	for (uint32_t i = 0; i < VCPUS; i++)
		b.entry[i] = (struct squib_kvm_entry){CODE, STACKS + (i + 1) * PAGE, 0,
						      COUNTERS + i * PAGE, PORT_COUNTER};
	must(squib_kvm_vm_write(k->vm, CODE, code, len, &d), &d, "code");
	free(code);
	must(squib_kvm_vm_boot_long_mode(k->vm, &b, &d), &d, "boot");
	must(squib_kvm_vm_start(k->vm, &d), &d, "start");
	for (uint32_t i = 0; i < VCPUS; i++)
		must(squib_kvm_counter_wait(k->counter, i, 2, WAIT_MS, NULL, &d), &d, "reports");
}

static uint64_t counter_at(const uint8_t *ram, uint32_t i)
{
	uint64_t v;

	memcpy(&v, ram + COUNTERS + i * PAGE, 8);
	return v;
}

/* ---- the adapter, with RAM copied at the pause instant ---------------------------- */

struct copying {
	struct squib_vm inner;
	struct squib_vm_ops ops;
	struct kvm *k;
	uint8_t *copy; /* RAM when capture ran: every vCPU paused */
};

static int copying_capture(void *ctx, struct squib_microvm_state *s, struct squib_error_detail *d)
{
	struct copying *c = ctx;

	memcpy(c->copy, squib_kvm_vm_gpa_to_hva(c->k->vm, 0, RAM_SIZE), RAM_SIZE);
	return c->inner.ops->capture(c->inner.ctx, s, d);
}

#define FORWARD(name, ret, params, args)                                                           \
	static ret copying_##name params                                                           \
	{                                                                                          \
		struct copying *c = ctx;                                                           \
		return c->inner.ops->name args;                                                    \
	}
FORWARD(arch, enum squib_arch, (void *ctx), (c->inner.ctx))
FORWARD(vcpu_count, uint32_t, (void *ctx), (c->inner.ctx))
FORWARD(pause_begin, int, (void *ctx, uint32_t i, struct squib_error_detail *d),
	(c->inner.ctx, i, d))
FORWARD(pause_wait, int,
	(void *ctx, uint32_t i, const struct timespec *dl, struct squib_error_detail *d),
	(c->inner.ctx, i, dl, d))
FORWARD(resume, int, (void *ctx, uint32_t i, struct squib_error_detail *d), (c->inner.ctx, i, d))
FORWARD(get_memory, int,
	(void *ctx, const struct squib_vm_region **r, uint32_t *n, struct squib_error_detail *d),
	(c->inner.ctx, r, n, d))
FORWARD(trackers, struct squib_tracker_set *, (void *ctx), (c->inner.ctx))

static struct squib_vm copying_vm(struct copying *c, struct kvm *k)
{
	c->inner = k->v;
	c->k = k;
	c->ops = *k->v.ops;
	c->ops.arch = copying_arch;
	c->ops.vcpu_count = copying_vcpu_count;
	c->ops.pause_begin = copying_pause_begin;
	c->ops.pause_wait = copying_pause_wait;
	c->ops.resume = copying_resume;
	c->ops.capture = copying_capture;
	c->ops.get_memory = copying_get_memory;
	c->ops.trackers = copying_trackers;
	c->copy = malloc(RAM_SIZE);
	assert_non_null(c->copy);
	return (struct squib_vm){&c->ops, c};
}

/* ---- the save ------------------------------------------------------------------------ */

/* Holds the save's first memory write until every vCPU reported twice more:
 * the guest provably writes its counters while the memory is being saved. */
struct hold {
	struct kvm *k;
	bool held;
	int rc;
};

static int hold_before(void *ctx, enum squib_io_step step, const char *path)
{
	struct hold *h = ctx;
	struct squib_error_detail d;

	if (step != SQUIB_IO_WRITE || h->held || !strstr(path, ".mem."))
		return 0;
	h->held = true;
	for (uint32_t i = 0; !h->rc && i < VCPUS; i++) {
		uint64_t r = 0;

		squib_kvm_counter_get(h->k->counter, i, NULL, &r);
		h->rc = squib_kvm_counter_wait(h->k->counter, i, r + 2, WAIT_MS, NULL, &d);
	}
	return h->rc ? -ETIMEDOUT : 0;
}

static void save_live(struct kvm *k, struct copying *c, const char *st, const char *mem,
		      const char *parent, struct squib_save_report *rep)
{
	struct hold h = {.k = k};
	struct squib_io_hooks hooks = {&h, hold_before};
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(st, mem);
	struct squib_vm v = copying_vm(c, k);
	struct squib_error_detail d;

	req.live = true;
	req.hooks = &hooks;
	if (parent) {
		req.kind = SQUIB_SNAPSHOT_DIFF;
		req.parent_state_path = parent;
	}
	must(squib_save(&v, &req, rep, &d), &d, "live save");
	assert_true(h.held);
	assert_true(rep->live);
	print_message("  live %s: guest paused %llu us, save %llu us, %llu guest writes waited, "
		      "%llu pages copied on write\n",
		      parent ? "diff" : "full", (unsigned long long)(rep->ns.paused / 1000),
		      (unsigned long long)(rep->ns.total / 1000),
		      (unsigned long long)rep->live_write_faults,
		      (unsigned long long)rep->live_pages_on_write);
}

static void assert_image(const char *mem, const char *const *chain, size_t n, const uint8_t *want)
{
	struct squib_guest_memory *g;
	struct squib_error_detail d;

	must(squib_guest_memory_open(mem, chain, n, NULL, SQUIB_BACKEND_COPY, &g, &d), &d, mem);
	assert_int_equal(squib_guest_memory_region(g, 0)->size, RAM_SIZE);
	for (uint64_t off = 0; off < RAM_SIZE; off += PAGE)
		if (memcmp((const uint8_t *)squib_guest_memory_region(g, 0)->host + off, want + off,
			   PAGE))
			fail_msg("%s: page 0x%llx is not the pause instant's", mem,
				 (unsigned long long)off);
	squib_guest_memory_free(g);
}

/* Load the chain into a fresh VM and let it count: it goes on from `saved`. */
static void assert_restores_and_counts(struct savetest_dir *t, const char *st, const char *mem,
				       const char *const *chain, size_t n, const uint8_t *saved)
{
	struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(st, mem);
	struct squib_load_result res;
	struct squib_error_detail d;
	struct kvm k;
	const uint8_t *ram;

	(void)t;
	kvm_new(&k, false);
	req.chain = chain;
	req.chain_len = n;
	req.stay_paused = true;
	must(squib_load(&k.v, &req, &res, &d), &d, "squib_load");
	ram = squib_kvm_vm_gpa_to_hva(k.vm, 0, RAM_SIZE);
	assert_memory_equal(ram, saved, RAM_SIZE);
	must(squib_vm_resume(&k.v, &d), &d, "resume");
	for (uint32_t i = 0; i < VCPUS; i++) {
		uint64_t r = 0;

		squib_kvm_counter_get(k.counter, i, NULL, &r);
		must(squib_kvm_counter_wait(k.counter, i, r + 2, WAIT_MS, NULL, &d), &d,
		     "reports after the restore");
	}
	must(squib_vm_pause(&k.v, 0, &d), &d, "pause");
	for (uint32_t i = 0; i < VCPUS; i++)
		assert_true(counter_at(ram, i) > counter_at(saved, i));
	kvm_free(&k);
	squib_load_result_free(&res);
}

static void test_should_save_a_running_kvm_guest_live_exactly_and_restore_it(void **state)
{
	struct savetest_dir *t = *state;
	struct squib_save_report rep;
	struct copying full = {0}, diff = {0};
	char *dst = squib_test_path(t->dir, "d.snap"), *dmem = squib_test_path(t->dir, "d.mem");
	const char *chain[1] = {t->mem};
	struct kvm k;

	boot_counter_guest(&k);
	save_live(&k, &full, t->state, t->mem, NULL, &rep);
	/* KVM's writes to the counter pages waited for the handler's copy. */
	assert_true(rep.live_write_faults >= 1);
	assert_true(rep.live_pages_on_write >= 1);
	assert_image(t->mem, NULL, 0, full.copy);
	for (uint32_t i = 0; i < VCPUS; i++)
		assert_true(counter_at(full.copy, i) > 0);
	/* The guest counts on past the save: protection is gone. */
	for (uint32_t i = 0; i < VCPUS; i++) {
		struct squib_error_detail d;
		uint64_t r = 0;

		squib_kvm_counter_get(k.counter, i, NULL, &r);
		must(squib_kvm_counter_wait(k.counter, i, r + 2, WAIT_MS, NULL, &d), &d, "after");
	}
	/* A Diff over the live Full (KVM's dirty log saw the writes during it). */
	save_live(&k, &diff, dst, dmem, t->state, &rep);
	assert_true(rep.pages_written >= VCPUS);
	assert_image(dmem, chain, 1, diff.copy);
	kvm_free(&k);
	assert_restores_and_counts(t, t->state, t->mem, NULL, 0, full.copy);
	assert_restores_and_counts(t, dst, dmem, chain, 1, diff.copy);
	free(full.copy);
	free(diff.copy);
	free(dst);
	free(dmem);
}

/* The CLI: run --live saves a Full and a Diff live, and the chain restores and counts on. */
static void test_should_run_save_live_and_restore_from_the_cli(void **state)
{
	struct savetest_dir *t = *state;
	const char *cli = getenv("SQUIB_CLI"), *dir = getenv("SQUIB_GUESTS");
	char guest[4096], *dst = squib_test_path(t->dir, "d.snap");
	struct squib_test_proc p;

	if (!cli || !*cli) {
		fprintf(stderr, "*** SKIP: no CLI in this build: run --live not tested ***\n");
		free(dst);
		skip();
	}
	snprintf(guest, sizeof(guest), "%s/counter.bin", dir ? dir : "tests/guests");
	{
		char *const run[] = {(char *)cli, "run",    guest, t->state,
				     "--live",	  "--diff", dst,   NULL};
		squib_test_spawn(NULL, run, &p);
	}
	if (p.status)
		fail_msg("run --live: exit %d: %s", p.status, p.err);
	/* Both saves ran live: one "live: guest paused" line each. */
	assert_non_null(strstr(p.out, "live: guest paused"));
	assert_non_null(strstr(strstr(p.out, "live: guest paused") + 1, "live: guest paused"));
	assert_null(strstr(p.out, "not possible"));
	squib_test_proc_free(&p);
	{
		char *const restore[] = {(char *)cli, "restore", dst, "--chain", t->mem, NULL};
		squib_test_spawn(NULL, restore, &p);
	}
	if (p.status)
		fail_msg("restore: exit %d: %s", p.status, p.err);
	assert_non_null(strstr(p.out, "resumed; after"));
	squib_test_proc_free(&p);
	free(dst);
}

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(
		test_should_save_a_running_kvm_guest_live_exactly_and_restore_it, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_run_save_live_and_restore_from_the_cli,
					    setup, teardown),
	};

	if (!squib_kvm_available(NULL)) {
		fprintf(stderr,
			"*** SKIPPED test_kvm_live: /dev/kvm does not exist on this machine ***\n");
		return 77;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
