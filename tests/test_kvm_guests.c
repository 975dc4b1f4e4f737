/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Guests that use what kernels use (tests/guests/irq_guest.S): the LAPIC
 * timer (periodic, or TSC deadline), the PIT through the PIC, kvmclock,
 * SSE/AVX registers and IPIs between 2 vCPUs, snapshotted mid-flight over
 * and over, each snapshot restored by a fresh process after the one that
 * saved it was SIGKILLed.
 *
 * A generation is one child process: it boots the guest (the first) or
 * loads the previous generation's pair, lets every vCPU report a few timer
 * interrupts, pauses to read the guest's counters, resumes, and saves the
 * next pair while the guest runs (interrupts pending or in service, timers
 * armed, vCPUs halted or running). The parent SIGKILLs it once it reported
 * and checks what the guest saw: the guest itself checks that kvmclock never
 * goes backwards and that its vector registers keep their values (a failure
 * is a distinct report, never a triple fault); the parent checks that every
 * vCPU continued, the ping-pong of IPIs lost none and doubled none (doubles
 * are counted only inside the nested TCG VM, where they happen without any
 * snapshot: see check_ipis), the timers neither stopped nor fired more
 * often than their periods allow, and that the guest clock gained no more
 * than the restored process ran (the downtime between save and restore is
 * not added). Some generations wait extra long before restoring, so a clock
 * that took the downtime would show.
 *
 * The loop runs for a time budget (SQUIB_GUESTS_SECONDS per test, default
 * 20; the pause test half that) up to 400 generations and prints the count.
 * Skipped (exit 77, one line on stderr) only when /dev/kvm does not exist.
 */
#include "testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <squib/kvm.h>
#include <squib/load.h>
#include <squib/save.h>
#include <squib/state.h>
#include <squib/vm.h>

#define RAM_SIZE     (4u << 20)
#define TABLES	     0x1000ull
#define CODE	     0x10000ull
#define PAGES	     0x20000ull /* vCPU i's parameter and counter page at PAGES + i * PAGE */
#define IDTS	     0x30000ull
#define PVCLOCKS     0x38000ull
#define PATTERNS     0x3a000ull
#define STACKS	     0x40000ull
#define PAGE	     4096ull
#define PORT_COUNTER 0x3f0
#define VCPUS	     2u
#define WAIT_MS	     20000u /* safety net for a broken run, not a measurement */

#define PERIOD_NS   4000000ull /* LAPIC timer: 4 ms (KVM's APIC bus runs at 1 GHz) */
#define PIT_DIVISOR 11932u     /* 1.193182 MHz / 11932: 10 ms */
#define PIT_NS	    10000000ull
#define MAX_GENS    400u
#define SLOW_EVERY  16u /* every 16th restore waits SLOW_MS first */
#define SLOW_MS	    300u
#define FAIL_MARK   0xfa110000u
#define SKEW(ns)    ((ns) + (ns) / 4) /* see check_clock */
/* Without PVCLOCK_TSC_STABLE_BIT (nested TCG) a vCPU's kvmclock may step back
 * a little (the guest keeps the last value, as Linux does): KVM's per-vCPU
 * clock runs off the host's between its updates, so the step grows with the
 * time between them, which a loaded machine stretches (8.4 ms seen in a CI
 * run under 6.1). A restore that set the clock back would step by a whole
 * generation, so the bound is a quarter of the generation's run, at least
 * 5 ms. */
#define MAX_BACKSTEP_NS(ran_ns) ((ran_ns) / 4 > 5000000ull ? (ran_ns) / 4 : 5000000ull)

enum {
	C_LOOPS,
	C_TICKS,
	C_PIT,
	C_IPI_RECV,
	C_IPI_SENT,
	C_CLOCK,
	C_FAIL,
	C_AVX,
	C_DETAIL,
	C_READS,
	C_DOUBLED,
	C_BACKSTEPS,
	C_MAX_BACKSTEP,
	C_COUNT
};
#define COUNTERS_AT 256u

static const char *const counter_names[C_COUNT] = {
    "loops", "ticks",  "pit",	"ipi_recv", "ipi_sent",	 "clock",	"fail",
    "avx",   "detail", "reads", "doubled",  "backsteps", "max_backstep"};

/* ---- one generation (a child: no cmocka) --------------------------------------------- */

struct gen {
	int rc;
	char msg[600];
	uint64_t at_start[VCPUS][C_COUNT]; /* as restored (zero for the first) */
	uint64_t at_check[VCPUS][C_COUNT]; /* after running, paused */
	uint32_t last_report[VCPUS];
	uint64_t saved_clock;		    /* kvmclock in the loaded state (KVM_GET_CLOCK) */
	uint64_t t_start, t_check, t_saved; /* CLOCK_MONOTONIC ns */
	uint64_t paused_ns;
	uint32_t tsc_khz;
	char loaded[600]; /* the loaded vCPU state's interrupt side, for a failure message */
};

struct vmh {
	struct squib_kvm_vm *vm;
	struct squib_kvm_counter *counter;
	struct squib_kvm_adapter *adapter;
	struct squib_vm v;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A generation's VM is never freed (its child is SIGKILLed); the pause test's is. */
static void vmh_free(struct vmh *h)
{
	squib_kvm_adapter_free(h->adapter);
	squib_kvm_vm_free(h->vm);
	memset(h, 0, sizeof(*h));
}

static int vmh_new(struct vmh *h, bool with_ram, struct squib_error_detail *d)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_adapter_config acfg = {false, "/squib/guests/irq_guest.bin", "irq"};
	int rc;

	memset(h, 0, sizeof(*h));
	cfg.vcpu_count = VCPUS;
	if ((rc = squib_kvm_vm_new(&cfg, &h->vm, d)) ||
	    (with_ram && (rc = squib_kvm_vm_add_ram(h->vm, 0, RAM_SIZE, NULL, NULL, d))) ||
	    (rc = squib_kvm_vm_add_counter(h->vm, PORT_COUNTER, &h->counter, d)) ||
	    (rc = squib_kvm_adapter_new(h->vm, &acfg, &h->adapter, d)))
		return rc;
	h->v = squib_kvm_adapter_vm(h->adapter);
	return 0;
}

/* The pattern vCPU v's vector registers hold: 15 registers of 32 distinct bytes. */
static void pattern(uint32_t v, uint8_t *out)
{
	for (uint32_t i = 0; i < 15 * 32; i++)
		out[i] = (uint8_t)(i * 7 + v * 101 + 1);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

/*
 * AVX, except inside the nested TCG VM (scripts/kvm-vm.sh): QEMU 7.2's TCG
 * raises #UD for VEX instructions in a nested guest now and then (the same
 * instruction passing a moment earlier), so the vector registers are
 * checked as SSE (xmm0-14) there.
 */
static uint64_t use_avx(void)
{
	const char *s = getenv("SQUIB_KVM_NESTED_TCG");

	return !(s && strcmp(s, "1") == 0);
}

/* The guest's code, parameter blocks and patterns, then long mode. */
static int boot(struct vmh *h, const uint8_t *code, size_t len, int mode, uint32_t tsc_khz,
		struct squib_error_detail *d)
{
	struct squib_kvm_boot b;
	uint8_t page[PAGE], pat[15 * 32];
	int rc;

	memset(&b, 0, sizeof(b));
	b.tables_gpa = TABLES;
	b.map_size = RAM_SIZE;
	if ((rc = squib_kvm_vm_write(h->vm, CODE, code, len, d)))
		return rc;
	for (uint32_t i = 0; i < VCPUS; i++) {
		memset(page, 0, sizeof(page));
		put64(page + 0, i);
		put64(page + 8, (uint64_t)mode);
		put64(page + 16, mode ? (uint64_t)tsc_khz * (PERIOD_NS / 1000000) : PERIOD_NS);
		put64(page + 24, PVCLOCKS + i * 64);
		put64(page + 32, PATTERNS + i * sizeof(pat));
		put64(page + 40, IDTS + i * PAGE);
		put64(page + 48, i == 0 ? PIT_DIVISOR : 0);
		put64(page + 56, PORT_COUNTER);
		put64(page + 64, use_avx());
		put64(page + 72, PAGES + (VCPUS - 1 - i) * PAGE);
		pattern(i, pat);
		if ((rc = squib_kvm_vm_write(h->vm, PAGES + i * PAGE, page, sizeof(page), d)) ||
		    (rc = squib_kvm_vm_write(h->vm, PATTERNS + i * sizeof(pat), pat, sizeof(pat),
					     d)))
			return rc;
		b.entry[i] =
		    (struct squib_kvm_entry){CODE, STACKS + (i + 1) * PAGE, PAGES + i * PAGE, 0, 0};
	}
	return squib_kvm_vm_boot_long_mode(h->vm, &b, d);
}

/* KVM's TSC rate for the guest, from a capture of the VM not yet started. */
static int tsc_khz_of(struct vmh *h, uint32_t *khz, struct squib_error_detail *d)
{
	struct squib_microvm_state s;
	int rc = squib_kvm_vm_capture(h->vm, &s, d);

	if (rc)
		return rc;
	*khz = s.x86_vcpus[0].tsc_khz;
	squib_state_free(&s);
	return *khz ? 0 : squib_fail_msg(d, SQUIB_E_CAPTURE, "KVM_GET_TSC_KHZ gave nothing");
}

static void read_counters(struct vmh *h, uint64_t out[VCPUS][C_COUNT])
{
	const uint8_t *ram = squib_kvm_vm_gpa_to_hva(h->vm, 0, RAM_SIZE);

	for (uint32_t v = 0; v < VCPUS; v++)
		memcpy(out[v], ram + PAGES + v * PAGE + COUNTERS_AT, C_COUNT * 8);
}

/* Every vCPU reports `more` more timer interrupts (or fails, which also ends the wait). */
static int wait_reports(struct vmh *h, uint64_t more, struct squib_error_detail *d)
{
	for (uint32_t v = 0; v < VCPUS; v++) {
		uint64_t reports = 0, last = 0;
		int rc;

		squib_kvm_counter_get(h->counter, v, NULL, &reports);
		rc = squib_kvm_counter_wait(h->counter, v, reports + more, WAIT_MS, &last, d);
		if ((last & 0xffff0000u) == FAIL_MARK)
			return squib_fail_msg(d, SQUIB_E_CAPTURE, "vCPU %u reported failure 0x%llx",
					      v, (unsigned long long)last);
		if (rc)
			return squib_fail_msg(d, rc, "vCPU %u: no timer report within %u ms", v,
					      WAIT_MS);
	}
	return 0;
}

static bool lapic_bit(const uint8_t *lapic, unsigned base, unsigned vec)
{
	uint32_t w;

	memcpy(&w, lapic + base + (vec / 32) * 16, 4);
	return w >> (vec % 32) & 1;
}

/* rip, MP state, the pending injection and the IRR/ISR bits of the guest's vectors. */
static void describe_loaded(const struct squib_microvm_state *s, char *out, size_t cap)
{
	static const unsigned vecs[] = {0x20, 0x30, 0x40, 0x41};
	size_t n = 0;

	for (uint32_t v = 0; v < s->vcpu_count && n < cap; v++) {
		const struct squib_x86_vcpu *c = &s->x86_vcpus[v];

		n += (size_t)snprintf(
		    out + n, cap - n, "vCPU %u rip 0x%llx mp %u irq inj %u nr 0x%x bitmap %d;", v,
		    (unsigned long long)c->regs.rip, c->mp_state, c->events[8], c->events[9],
		    (c->sregs.interrupt_bitmap[0] | c->sregs.interrupt_bitmap[1] |
		     c->sregs.interrupt_bitmap[2] | c->sregs.interrupt_bitmap[3]) != 0);
		for (size_t i = 0; i < 4 && n < cap; i++)
			n += (size_t)snprintf(out + n, cap - n, " 0x%x:%c%c", vecs[i],
					      lapic_bit(c->lapic, 0x200, vecs[i]) ? 'P' : '-',
					      lapic_bit(c->lapic, 0x100, vecs[i]) ? 'S' : '-');
		if (n < cap)
			n += (size_t)snprintf(out + n, cap - n, "\n");
	}
}

static int start_gen(struct vmh *h, const char *const *prev, const uint8_t *code, size_t len,
		     int mode, struct gen *g, struct squib_error_detail *d)
{
	struct squib_load_request req;
	struct squib_load_result res;
	int rc;

	if (!prev) {
		if ((rc = vmh_new(h, true, d)) || (rc = tsc_khz_of(h, &g->tsc_khz, d)) ||
		    (rc = boot(h, code, len, mode, g->tsc_khz, d)))
			return rc;
		g->t_start = now_ns();
		return squib_kvm_vm_start(h->vm, d);
	}
	if ((rc = vmh_new(h, false, d)))
		return rc;
	req = SQUIB_LOAD_REQUEST_INIT(prev[0], prev[1]);
	req.backend = SQUIB_BACKEND_COPY;
	req.stay_paused = true;
	g->t_start = now_ns(); /* before KVM_SET_CLOCK: the guest clock runs from there */
	if ((rc = squib_load(&h->v, &req, &res, d)))
		return rc;
	read_counters(h, g->at_start);
	g->saved_clock = res.state.x86_vm ? res.state.x86_vm->clock.clock : 0;
	describe_loaded(&res.state, g->loaded, sizeof(g->loaded));
	/* res owns the RAM the VM runs on: kept until this process is killed */
	return squib_vm_resume(&h->v, d);
}

static int run_gen(const char *const *prev, const char *const *next, const uint8_t *code,
		   size_t len, int mode, struct gen *g, struct squib_error_detail *d)
{
	struct squib_save_request sreq = SQUIB_SAVE_REQUEST_INIT(next[0], next[1]);
	struct squib_save_report rep;
	struct vmh h;
	int rc;

	if ((rc = start_gen(&h, prev, code, len, mode, g, d)))
		return rc;
	if ((rc = wait_reports(&h, 4, d)) || (rc = squib_vm_pause(&h.v, 0, d))) {
		read_counters(&h, g->at_check); /* what the guest saw, for the message */
		return rc;
	}
	g->t_check = now_ns();
	read_counters(&h, g->at_check);
	for (uint32_t v = 0; v < VCPUS; v++) {
		uint64_t last = 0;

		squib_kvm_counter_get(h.counter, v, &last, NULL);
		g->last_report[v] = (uint32_t)last;
	}
	if ((rc = squib_vm_resume(&h.v, d)) || (rc = wait_reports(&h, 1, d)))
		return rc;
	rc = squib_save(&h.v, &sreq, &rep, d); /* mid-flight: the guest runs */
	g->t_saved = now_ns();
	g->paused_ns = rep.ns.paused;
	return rc; /* the VM keeps running until the parent kills this process */
}

static void child(int fd, const char *const *prev, const char *const *next, const uint8_t *code,
		  size_t len, int mode)
{
	struct squib_error_detail d = {0};
	struct gen g;

	memset(&g, 0, sizeof(g));
	g.rc = run_gen(prev, next, code, len, mode, &g, &d);
	if (g.rc)
		snprintf(g.msg, sizeof(g.msg), "%s: %s", squib_error_name(g.rc), d.msg);
	if (write(fd, &g, sizeof(g)) != (ssize_t)sizeof(g))
		_exit(3);
	for (;;)
		pause();
}

/* ---- the parent's checks --------------------------------------------------------------- */

struct totals {
	uint64_t gens, ticks, pit, ipis, doubles, backsteps, max_backstep, clock_ns, max_paused_ns,
	    max_downtime_ns, max_gain_ns;
	uint64_t slow_downtime_ns, slow_gain_ns, slow_ran_ns;
	uint64_t avx;
};

static void dump(const struct gen *g)
{
	print_message("  loaded (P: IRR, S: ISR): %s", g->loaded);
	for (uint32_t v = 0; v < VCPUS; v++)
		for (int k = 0; k < C_COUNT; k++)
			print_message("  vCPU %u %-8s %llu -> %llu\n", v, counter_names[k],
				      (unsigned long long)g->at_start[v][k],
				      (unsigned long long)g->at_check[v][k]);
}

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			dump(g);                                                                   \
			fail_msg(__VA_ARGS__);                                                     \
		}                                                                                  \
	} while (0)

/*
 * Interrupts neither stopped nor came more often than their period allows.
 * The timers are host hrtimers started by the restore, so the bound is the
 * host time this process ran (kvmclock in the nested TCG VM runs up to 2x
 * off the host's clock between KVM's clock updates), plus what the state
 * may hold: one pending and one in service, and the report in flight.
 */
static void check_rates(const struct gen *g, uint32_t n, uint64_t ran_ns)
{
	uint64_t pit = g->at_check[0][C_PIT] - g->at_start[0][C_PIT];

	for (uint32_t v = 0; v < VCPUS; v++) {
		uint64_t ticks = g->at_check[v][C_TICKS] - g->at_start[v][C_TICKS];

		CHECK(g->at_check[v][C_MAX_BACKSTEP] <= MAX_BACKSTEP_NS(ran_ns),
		      "gen %u vCPU %u: kvmclock stepped back by %llu ns in a %llu ns run", n, v,
		      (unsigned long long)g->at_check[v][C_MAX_BACKSTEP],
		      (unsigned long long)ran_ns);
		/* 4 reports, each a new count; one may have been made before the restore */
		CHECK(ticks >= 3, "gen %u vCPU %u: %llu timer interrupts", n, v,
		      (unsigned long long)ticks);
		CHECK(ticks <= ran_ns / PERIOD_NS + 3,
		      "gen %u vCPU %u: %llu timer interrupts in %llu ns (period %llu)", n, v,
		      (unsigned long long)ticks, (unsigned long long)ran_ns, PERIOD_NS);
	}
	CHECK(pit <= ran_ns / PIT_NS + 3, "gen %u: %llu PIT interrupts in %llu ns", n,
	      (unsigned long long)pit, (unsigned long long)ran_ns);
}

/* IPIs the guest received twice so far (its counters: they carry across snapshots). */
static uint64_t doubled(const uint64_t c[VCPUS][C_COUNT])
{
	return c[0][C_DOUBLED] + c[1][C_DOUBLED];
}

/*
 * Inside the nested TCG VM an IPI is delivered twice now and then, with no
 * snapshot involved (test_should_keep_ipis_and_timers_across_pauses counts
 * them in a VM that only runs and pauses): KVM and QEMU's emulated SVM, not
 * this library. There doubles are counted and printed; elsewhere none may
 * happen.
 */
static bool nested_tcg(void)
{
	const char *s = getenv("SQUIB_KVM_NESTED_TCG");

	return s && strcmp(s, "1") == 0;
}

static void check_ipis(const struct gen *g, uint32_t n, uint64_t *doubles)
{
	const uint64_t *a = g->at_check[0], *b = g->at_check[1];
	uint64_t more = doubled(g->at_check) - doubled(g->at_start);

	/* Liveness: an IPI arrived somewhere. A loaded nested-TCG run may fit just one
	 * half of a round trip into a generation; a lost IPI stops both vCPUs' counts. */
	CHECK(a[C_IPI_RECV] + b[C_IPI_RECV] >
		  g->at_start[0][C_IPI_RECV] + g->at_start[1][C_IPI_RECV],
	      "gen %u: the IPI ping-pong stopped", n);
	/* one in flight at most: a ping not yet received, or its answer */
	CHECK(a[C_IPI_SENT] - a[C_IPI_RECV] <= 1 && b[C_IPI_RECV] == b[C_IPI_SENT] &&
		  b[C_IPI_RECV] - a[C_IPI_RECV] <= 1 && a[C_IPI_SENT] - b[C_IPI_RECV] <= 1,
	      "gen %u: IPIs out of step: vCPU 0 sent %llu got %llu, vCPU 1 got %llu sent %llu", n,
	      (unsigned long long)a[C_IPI_SENT], (unsigned long long)a[C_IPI_RECV],
	      (unsigned long long)b[C_IPI_RECV], (unsigned long long)b[C_IPI_SENT]);
	CHECK(nested_tcg() || more == 0,
	      "gen %u: %llu IPIs doubled: vCPU 0 sent %llu got %llu, vCPU 1 got %llu sent %llu", n,
	      (unsigned long long)more, (unsigned long long)a[C_IPI_SENT],
	      (unsigned long long)a[C_IPI_RECV], (unsigned long long)b[C_IPI_RECV],
	      (unsigned long long)b[C_IPI_SENT]);
	*doubles += more;
}

/*
 * The guest clock ran at most while this process ran: from the value the
 * state holds (KVM_GET_CLOCK at capture, at or after the guest's last read),
 * no downtime added. The bound allows 25% more (SKEW): inside the nested TCG
 * VM kvmclock drifts from the host's clock between KVM's clock updates.
 */
static void check_clock(const struct gen *g, uint32_t n, uint64_t ran_ns)
{
	for (uint32_t v = 0; n && v < VCPUS; v++) {
		uint64_t gained = g->at_check[v][C_CLOCK] - g->saved_clock;

		CHECK(g->at_start[v][C_CLOCK] <= g->saved_clock &&
			  g->at_check[v][C_CLOCK] > g->saved_clock,
		      "gen %u vCPU %u: guest clock %llu before the save, state %llu, now %llu", n,
		      v, (unsigned long long)g->at_start[v][C_CLOCK],
		      (unsigned long long)g->saved_clock,
		      (unsigned long long)g->at_check[v][C_CLOCK]);
		CHECK(
		    gained <= SKEW(ran_ns) + 20000000ull,
		    "gen %u vCPU %u: the guest clock gained %llu ns in a process that ran %llu ns",
		    n, v, (unsigned long long)gained, (unsigned long long)ran_ns);
	}
}

static void check_gen(const struct gen *g, uint32_t n, uint64_t prev_saved, struct totals *t)
{
	uint64_t clock_ns = g->at_check[0][C_CLOCK] - g->at_start[0][C_CLOCK];
	uint64_t ran_ns = g->t_check - g->t_start;
	uint64_t gained = n ? g->at_check[0][C_CLOCK] - g->saved_clock : clock_ns;

	for (uint32_t v = 0; v < VCPUS; v++) {
		CHECK(g->at_check[v][C_FAIL] == 0 && (g->last_report[v] & 0xffff0000u) != FAIL_MARK,
		      "gen %u vCPU %u: the guest failed with code %llu (detail 0x%llx)", n, v,
		      (unsigned long long)g->at_check[v][C_FAIL],
		      (unsigned long long)g->at_check[v][C_DETAIL]);
		CHECK(g->at_check[v][C_LOOPS] > g->at_start[v][C_LOOPS] &&
			  g->at_check[v][C_CLOCK] > g->at_start[v][C_CLOCK],
		      "gen %u vCPU %u did not continue", n, v);
		CHECK(g->at_check[v][C_AVX] == g->at_check[0][C_AVX], "AVX on one vCPU only");
	}
	check_clock(g, n, ran_ns);
	check_rates(g, n, ran_ns);
	check_ipis(g, n, &t->doubles);
	t->gens++;
	t->ticks += g->at_check[0][C_TICKS] - g->at_start[0][C_TICKS];
	t->pit += g->at_check[0][C_PIT] - g->at_start[0][C_PIT];
	t->ipis += g->at_check[0][C_IPI_RECV] - g->at_start[0][C_IPI_RECV];
	t->clock_ns += clock_ns;
	t->avx = g->at_check[0][C_AVX];
	t->backsteps = g->at_check[0][C_BACKSTEPS] + g->at_check[1][C_BACKSTEPS];
	for (uint32_t v = 0; v < VCPUS; v++)
		if (g->at_check[v][C_MAX_BACKSTEP] > t->max_backstep)
			t->max_backstep = g->at_check[v][C_MAX_BACKSTEP];
	if (g->paused_ns > t->max_paused_ns)
		t->max_paused_ns = g->paused_ns;
	if (n && g->t_start - prev_saved > t->max_downtime_ns)
		t->max_downtime_ns = g->t_start - prev_saved;
	if (n && gained > ran_ns && gained - ran_ns > t->max_gain_ns)
		t->max_gain_ns = gained - ran_ns;
	if (n && n % SLOW_EVERY == 0) {
		t->slow_downtime_ns = g->t_start - prev_saved;
		t->slow_gain_ns = gained;
		t->slow_ran_ns = ran_ns;
	}
}

/* ---- the loop ------------------------------------------------------------------------- */

static uint64_t budget_ns(void)
{
	const char *s = getenv("SQUIB_GUESTS_SECONDS");
	long v = s ? strtol(s, NULL, 10) : 20;

	return (uint64_t)(v > 0 ? v : 20) * 1000000000ull;
}

static void load_guest(uint8_t **code, size_t *len)
{
	const char *dir = getenv("SQUIB_GUESTS");
	char path[4096];
	int r;

	snprintf(path, sizeof(path), "%s/irq_guest.bin", dir ? dir : "tests/guests");
	if ((r = squib_test_read_file(path, code, len)))
		fail_msg("%s: %s (build the squib_guests target)", path, strerror(-r));
	assert_true(*len > 32);
	assert_memory_equal(*code + 8, "SQGUEST1", 8);
}

static void one_gen(const char *const *prev, const char *const *next, const uint8_t *code,
		    size_t len, int mode, struct gen *g)
{
	int fds[2], status;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		child(fds[1], prev, next, code, len, mode);
		_exit(2);
	}
	close(fds[1]);
	n = read(fds[0], g, sizeof(*g));
	close(fds[0]);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(n, (ssize_t)sizeof(*g));
	if (g->rc) {
		dump(g);
		fail_msg("generation: %s", g->msg);
	}
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static void run_generations(int mode, const char *what)
{
	char *dir = squib_test_tmpdir();
	char *paths[2][2];
	uint64_t deadline = now_ns() + budget_ns(), prev_saved = 0;
	struct totals t;
	uint8_t *code;
	size_t len;
	struct gen g;

	load_guest(&code, &len);
	memset(&t, 0, sizeof(t));
	for (int i = 0; i < 2; i++) {
		paths[i][0] = squib_test_path(dir, i ? "b.snap" : "a.snap");
		paths[i][1] = squib_test_path(dir, i ? "b.mem" : "a.mem");
	}
	for (uint32_t n = 0; n < MAX_GENS && (n < 2 || now_ns() < deadline); n++) {
		if (n && n % SLOW_EVERY == 0)
			usleep(SLOW_MS * 1000); /* a long downtime the clock must not show */
		one_gen(n ? (const char *const *)paths[(n + 1) % 2] : NULL,
			(const char *const *)paths[n % 2], code, len, mode, &g);
		check_gen(&g, n, prev_saved, &t);
		prev_saved = g.t_saved;
	}
	print_message("  %s: %llu generations (save mid-flight, SIGKILL, restore in a fresh "
		      "process); %s checked; guest time %.2f s: %llu timer interrupts (%.0f%% of "
		      "the periods), %llu PIT (%.0f%%), %llu IPI round trips (%llu doubled); "
		      "longest pause %.1f "
		      "ms; longest downtime %.1f ms, the clock never gained more than %.1f ms over "
		      "the process's run time (a %.0f ms downtime: guest clock +%.1f ms in a "
		      "%.1f ms run); kvmclock stepped back %llu times (unstable TSC), at most "
		      "%.1f us\n",
		      what, (unsigned long long)t.gens,
		      t.avx == 1   ? "AVX (ymm0-14)"
		      : t.avx == 2 ? "SSE (xmm0-14; CPUID has AVX but VEX code raised #UD)"
		      : use_avx()  ? "SSE (xmm0-14; no AVX in CPUID)"
				   : "SSE (xmm0-14; AVX not used under nested TCG)",
		      t.clock_ns / 1e9, (unsigned long long)t.ticks,
		      100.0 * t.ticks * PERIOD_NS / (double)(t.clock_ns ? t.clock_ns : 1),
		      (unsigned long long)t.pit,
		      100.0 * t.pit * PIT_NS / (double)(t.clock_ns ? t.clock_ns : 1),
		      (unsigned long long)t.ipis, (unsigned long long)t.doubles,
		      t.max_paused_ns / 1e6, t.max_downtime_ns / 1e6, t.max_gain_ns / 1e6,
		      t.slow_downtime_ns / 1e6, t.slow_gain_ns / 1e6, t.slow_ran_ns / 1e6,
		      (unsigned long long)t.backsteps, t.max_backstep / 1e3);
	assert_true(t.gens >= 2);
	for (int i = 0; i < 2; i++) {
		free(paths[i][0]);
		free(paths[i][1]);
	}
	free(code);
	squib_test_rmtree(dir);
	free(dir);
}

static void
test_should_keep_a_periodic_lapic_timer_pit_kvmclock_vectors_and_ipis_across_killed_restores(
    void **state)
{
	(void)state;
	run_generations(0, "LAPIC periodic");
}

static void
test_should_keep_a_tsc_deadline_timer_pit_kvmclock_vectors_and_ipis_across_killed_restores(
    void **state)
{
	(void)state;
	run_generations(1, "LAPIC TSC deadline");
}

/*
 * The same guest paused and resumed many times in one process (no save):
 * the IPI ping-pong and the timers must come through the pause protocol
 * alone, which every save uses.
 */
static void test_should_keep_ipis_and_timers_across_pauses(void **state)
{
	struct squib_error_detail d = {0};
	uint64_t deadline = now_ns() + budget_ns() / 2;
	struct gen gen, *g = &gen;
	struct vmh h;
	uint8_t *code;
	size_t len;
	uint64_t doubles = 0, unpaused, unpaused_ipis;
	uint32_t n = 0;
	int rc;

	(void)state;
	load_guest(&code, &len);
	memset(g, 0, sizeof(*g));
	rc = start_gen(&h, NULL, code, len, 0, g, &d);
	if (rc)
		fail_msg("start: %s", d.msg);
	/* First only running: doubles seen here owe nothing to pauses or snapshots. */
	while (now_ns() < deadline - budget_ns() / 4)
		if ((rc = wait_reports(&h, 4, &d)))
			fail_msg("running: %s", d.msg);
	if ((rc = squib_vm_pause(&h.v, 0, &d)))
		fail_msg("pause: %s", d.msg);
	read_counters(&h, g->at_check);
	unpaused = doubled(g->at_check);
	unpaused_ipis = g->at_check[0][C_IPI_RECV];
	if ((rc = squib_vm_resume(&h.v, &d)))
		fail_msg("resume: %s", d.msg);
	for (; n < MAX_GENS && (n < 2 || now_ns() < deadline); n++) {
		memcpy(g->at_start, g->at_check, sizeof(g->at_start));
		if ((rc = wait_reports(&h, 2, &d)) || (rc = squib_vm_pause(&h.v, 0, &d)))
			fail_msg("cycle %u: %s", n, d.msg);
		read_counters(&h, g->at_check);
		check_ipis(g, n, &doubles);
		for (uint32_t v = 0; v < VCPUS; v++)
			CHECK(g->at_check[v][C_FAIL] == 0, "cycle %u vCPU %u: guest failure %llu",
			      n, v, (unsigned long long)g->at_check[v][C_FAIL]);
		if ((rc = squib_vm_resume(&h.v, &d)))
			fail_msg("resume: %s", d.msg);
	}
	print_message("  running only: %llu IPI round trips, %llu doubled; then %u pause/resume "
		      "cycles: %llu IPI round trips in all, %llu more doubled, %llu timer "
		      "interrupts\n",
		      (unsigned long long)unpaused_ipis, (unsigned long long)unpaused, n,
		      (unsigned long long)g->at_check[0][C_IPI_RECV], (unsigned long long)doubles,
		      (unsigned long long)g->at_check[0][C_TICKS]);
	assert_true(nested_tcg() || unpaused == 0);
	vmh_free(&h);
	free(code);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_keep_ipis_and_timers_across_pauses),
	    cmocka_unit_test(
		test_should_keep_a_periodic_lapic_timer_pit_kvmclock_vectors_and_ipis_across_killed_restores),
	    cmocka_unit_test(
		test_should_keep_a_tsc_deadline_timer_pit_kvmclock_vectors_and_ipis_across_killed_restores),
	};

	if (!squib_kvm_available(NULL)) {
		fprintf(
		    stderr,
		    "*** SKIPPED test_kvm_guests: /dev/kvm does not exist on this machine ***\n");
		return 77;
	}
	if (squib_test_kvm_pvm_skips("test_kvm_guests"))
		return 77;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
