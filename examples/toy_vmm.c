/* SPDX-License-Identifier: Apache-2.0 */
/*
 * toy_vmm [DIR]: the smallest VMM the save and load orchestrators accept,
 * written from the public headers alone. Guest RAM is anonymous memory, the
 * one "vCPU" is a flag, the device models are empty. It takes a Full
 * snapshot, writes two pages, takes a Diff of them with its own dirty
 * tracker, then restores the chain with the COPY and LAZY backends and the
 * Full with the FILE backend (which maps one file). Last it rebases the chain
 * into one full file and restores that with FILE too, checking every byte
 * each time. DIR (default: a new directory under /tmp, removed afterwards)
 * receives the five files. Walk-through: docs/EMBEDDING.md.
 *
 * Exit status: 0 every restore matched, 1 usage, 2 a library call failed or
 * a byte differed (the message on stderr).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <squib/error.h>
#include <squib/guest_memory.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/save.h>
#include <squib/state.h>
#include <squib/track.h>
#include <squib/vm.h>

#define RAM_GPA	 0x80000000ull /* arm64 DRAM base: the state says aarch64 */
#define RAM_SIZE (1u << 20)    /* vm_info.mem_size_mib = 1 */
#define DIRTY_A	 3u	       /* the pages written between the Full and the Diff */
#define DIRTY_B	 7u

struct toy {
	struct squib_vm_region ram;
	bool have_ram;
	bool paused;
	struct squib_tracker *tracker; /* NULL on the restore side */
	struct squib_tracker_set set;
};

/* ---- the ops ------------------------------------------------------------------------- */

static enum squib_arch toy_arch(void *ctx)
{
	(void)ctx;
	return SQUIB_ARCH_AARCH64;
}

static uint32_t toy_vcpu_count(void *ctx)
{
	(void)ctx;
	return 1;
}

/* A real VMM kicks the vCPU thread out of KVM_RUN here; ours never runs. */
static int toy_pause_begin(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	(void)i, (void)d;
	((struct toy *)ctx)->paused = true;
	return 0;
}

static int toy_pause_wait(void *ctx, uint32_t i, const struct timespec *dl,
			  struct squib_error_detail *d)
{
	(void)ctx, (void)i, (void)dl, (void)d;
	return 0;
}

static int toy_resume(void *ctx, uint32_t i, struct squib_error_detail *d)
{
	(void)i, (void)d;
	((struct toy *)ctx)->paused = false;
	return 0;
}

/* The state verify_compatible accepts: one arm64 vCPU, a GIC blob, and
 * track_dirty_pages, without which a Diff is refused. */
static int toy_capture(void *ctx, struct squib_microvm_state *s, struct squib_error_detail *d)
{
	static const uint8_t gic[64];
	struct squib_arm64_vcpu *v;
	int rc;

	(void)ctx;
	s->vm_info.mem_size_mib = RAM_SIZE >> 20;
	s->vm_info.track_dirty_pages = true;
	if ((rc = squib_state_set_string(&s->vm_info.kernel_image_path, "/toy/vmlinux")) ||
	    (rc = squib_state_add_arm64_vcpu(s, 0, &v)) ||
	    (rc = squib_state_set_gic(s, gic, sizeof(gic))))
		return squib_fail_msg(d, rc, "toy: capture");
	v->regs.pc = RAM_GPA;
	v->psci_state = SQUIB_PSCI_ON;
	return 0;
}

static int toy_restore_nothing(void *ctx, const struct squib_microvm_state *s,
			       struct squib_error_detail *d)
{
	(void)ctx, (void)s, (void)d;
	return 0;
}

static int toy_get_memory(void *ctx, const struct squib_vm_region **r, uint32_t *n,
			  struct squib_error_detail *d)
{
	struct toy *t = ctx;

	if (!t->have_ram)
		return -ENOMEM; /* a backend's -errno: the library reports SQUIB_E_IO */
	(void)d;
	*r = &t->ram;
	*n = 1;
	return 0;
}

/* The memory stays the caller's (the load result): only remember where it is. */
static int toy_set_memory(void *ctx, const struct squib_vm_region *r, uint32_t n,
			  struct squib_error_detail *d)
{
	struct toy *t = ctx;

	if (n != 1)
		return squib_fail_msg(d, SQUIB_E_CAPTURE, "toy: %u regions, expected 1", n);
	t->ram = r[0];
	t->have_ram = true;
	return 0;
}

static struct squib_tracker_set *toy_trackers(void *ctx)
{
	struct toy *t = ctx;

	return t->tracker ? &t->set : NULL;
}

static const struct squib_vm_ops toy_ops = {
    .name = "toy",
    .arch = toy_arch,
    .vcpu_count = toy_vcpu_count,
    .pause_begin = toy_pause_begin,
    .pause_wait = toy_pause_wait,
    .resume = toy_resume,
    .capture = toy_capture,
    .restore_irqchip = toy_restore_nothing,
    .restore_vcpus = toy_restore_nothing,
    .restore_devices = toy_restore_nothing,
    .get_memory = toy_get_memory,
    .set_memory = toy_set_memory,
    .trackers = toy_trackers,
};

/* ---- the program ------------------------------------------------------------------------ */

static int fail(const char *what, int rc, const struct squib_error_detail *d)
{
	char text[SQUIB_ERROR_TEXT_MAX];

	squib_error_format(rc, d, text, sizeof(text));
	fprintf(stderr, "toy_vmm: %s: %s [%s]\n", what, text, squib_error_name(rc));
	return 2;
}

static uint8_t expected_byte(uint64_t page, bool diff)
{
	return diff && (page == DIRTY_A || page == DIRTY_B) ? 0xab : (uint8_t)(page * 7 + 1);
}

/* The VMM writes guest RAM itself (as device DMA would), so it reports each
 * write to the VMM-marks tracker; KVM's dirty log would see guest writes. */
static void guest_write_page(struct toy *t, uint64_t page, uint64_t psz, uint8_t byte)
{
	memset((uint8_t *)t->ram.host + page * psz, byte, psz);
	squib_tracker_mark_write(t->tracker, t->ram.guest_addr + page * psz, psz);
}

static int boot(struct toy *t, uint64_t psz, struct squib_error_detail *d)
{
	struct squib_guest_region g = {RAM_GPA, RAM_SIZE, NULL, 0};
	struct squib_memory_map map = {&g, 1};
	struct squib_tracker_set none = SQUIB_TRACKER_SET_INIT;
	void *p = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int rc;

	if (p == MAP_FAILED)
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "mmap guest RAM");
	t->ram = (struct squib_vm_region){RAM_GPA, RAM_SIZE, p};
	t->have_ram = true;
	t->set = none;
	g.hva = p;
	if ((rc = squib_tracker_vmm_marks_new(&map, &t->tracker, d)) ||
	    (rc = squib_tracker_start(t->tracker, d)) ||
	    (rc = squib_tracker_set_add(&t->set, t->tracker, d)))
		return rc;
	for (uint64_t i = 0; i < RAM_SIZE / psz; i++)
		guest_write_page(t, i, psz, (uint8_t)(i * 7 + 1));
	return 0;
}

static int check_ram(const struct toy *t, uint64_t psz, bool diff, const char *backend)
{
	const uint8_t *ram = t->ram.host;

	for (uint64_t i = 0; i < RAM_SIZE; i++)
		if (ram[i] != expected_byte(i / psz, diff)) {
			fprintf(stderr, "toy_vmm: %s: byte %#llx is %#x, expected %#x\n", backend,
				(unsigned long long)i, ram[i], expected_byte(i / psz, diff));
			return 2;
		}
	printf("toy_vmm: %s restore: %u bytes match\n", backend, RAM_SIZE);
	return 0;
}

/* What a restore loads: the Full pair alone, the Diff over its base (a
 * chain), or the Diff's state with the rebased file (one full file). */
enum pick { FULL, DIFF_CHAIN, DIFF_REBASED };

/* Restore into a fresh VM that owns no RAM: the load result provides it. */
static int restore(const char *dir, enum pick pick, enum squib_memory_backend backend,
		   const char *name, uint64_t psz)
{
	static const char *const mems[] = {"full.mem", "diff.mem", "rebased.mem"};
	char snap[4096], mem[4096], base[4096];
	const char *chain[] = {base};
	struct toy t = {0};
	struct squib_vm vm = {&toy_ops, &t};
	struct squib_load_result res = {0};
	struct squib_error_detail d = {0};
	struct squib_load_request req;
	int rc;

	snprintf(snap, sizeof(snap), "%s/%s.snap", dir, pick == FULL ? "full" : "diff");
	snprintf(mem, sizeof(mem), "%s/%s", dir, mems[pick]);
	snprintf(base, sizeof(base), "%s/full.mem", dir);
	req = SQUIB_LOAD_REQUEST_INIT(snap, mem);
	req.chain = pick == DIFF_CHAIN ? chain : NULL;
	req.chain_len = pick == DIFF_CHAIN ? 1 : 0;
	req.backend = backend;
	if ((rc = squib_load(&vm, &req, &res, &d))) {
		/* Unprivileged userfaultfd may be switched off: the one case
		 * the example accepts, and says so. */
		if (backend == SQUIB_BACKEND_LAZY && rc == SQUIB_E_IO &&
		    (d.os_errno == EPERM || d.os_errno == ENOSYS)) {
			fprintf(stderr, "toy_vmm: SKIP lazy restore: userfaultfd unavailable\n");
			return 0;
		}
		return fail(name, rc, &d);
	}
	rc = check_ram(&t, psz, pick != FULL, name);
	squib_load_result_free(&res);
	return rc;
}

static int snapshot(struct toy *t, const char *dir, uint64_t psz)
{
	char snap[4096], mem[4096], parent[4096];
	struct squib_vm vm = {&toy_ops, t};
	struct squib_error_detail d = {0};
	struct squib_save_request req;
	struct squib_save_report rep;
	int rc;

	snprintf(snap, sizeof(snap), "%s/full.snap", dir);
	snprintf(mem, sizeof(mem), "%s/full.mem", dir);
	req = SQUIB_SAVE_REQUEST_INIT(snap, mem);
	if ((rc = squib_save(&vm, &req, &rep, &d)))
		return fail("full save", rc, &d);
	/* The Full reset the tracker: from here it sees only these two pages. */
	guest_write_page(t, DIRTY_A, psz, 0xab);
	guest_write_page(t, DIRTY_B, psz, 0xab);
	snprintf(parent, sizeof(parent), "%s", snap);
	snprintf(snap, sizeof(snap), "%s/diff.snap", dir);
	snprintf(mem, sizeof(mem), "%s/diff.mem", dir);
	req = SQUIB_SAVE_REQUEST_INIT(snap, mem);
	req.kind = SQUIB_SNAPSHOT_DIFF;
	req.parent_state_path = parent;
	if ((rc = squib_save(&vm, &req, &rep, &d)))
		return fail("diff save", rc, &d);
	printf("toy_vmm: diff holds %llu pages\n", (unsigned long long)rep.pages_written);
	return rep.pages_written == 2 ? 0 : fail("diff save", SQUIB_E_CAPTURE, NULL);
}

/* FILE maps one memory file, so a chain is first merged into one full file.
 * The Diff's state is rewritten to describe the result (kind full, the
 * merged manifest, the same id) and published with it as a pair; the memory
 * files read are not modified. So the chain loads above come first. */
static int rebase(const char *dir)
{
	char base[4096], diff[4096], out[4096], snap[4096];
	const char *diffs[] = {diff};
	struct squib_memfile_rebase_options o = {.state_path = snap};
	struct squib_memfile_manifest m;
	struct squib_error_detail d = {0};
	int rc;

	snprintf(base, sizeof(base), "%s/full.mem", dir);
	snprintf(diff, sizeof(diff), "%s/diff.mem", dir);
	snprintf(out, sizeof(out), "%s/rebased.mem", dir);
	snprintf(snap, sizeof(snap), "%s/diff.snap", dir);
	if ((rc = squib_memfile_rebase(base, diffs, 1, out, &o, &m, &d)))
		return fail("rebase", rc, &d);
	printf("toy_vmm: rebased the chain: %llu present pages\n",
	       (unsigned long long)m.layout.present_pages);
	squib_memfile_manifest_release(&m);
	return 0;
}

static void cleanup(const char *dir)
{
	static const char *const names[] = {"full.snap", "full.mem", "diff.snap", "diff.mem",
					    "rebased.mem"};
	char path[4096];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

int main(int argc, char **argv)
{
	char tmpl[] = "/tmp/toy_vmm.XXXXXX";
	const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
	uint64_t psz = (uint64_t)sysconf(_SC_PAGESIZE);
	struct squib_error_detail d = {0};
	struct toy t = {0};
	int rc;

	if (argc > 2 || !dir) {
		fprintf(stderr, "usage: toy_vmm [DIR]\n");
		return 1;
	}
	if ((rc = boot(&t, psz, &d)))
		rc = fail("boot", rc, &d);
	if (!rc)
		rc = snapshot(&t, dir, psz);
	squib_tracker_free(t.tracker);
	if (t.ram.host)
		munmap(t.ram.host, RAM_SIZE);
	if (!rc)
		rc = restore(dir, DIFF_CHAIN, SQUIB_BACKEND_COPY, "copy (diff over full)", psz);
	if (!rc)
		rc = restore(dir, DIFF_CHAIN, SQUIB_BACKEND_LAZY, "lazy (diff over full)", psz);
	/* FILE maps one memory file: a Full, or a chain rebased into one. */
	if (!rc)
		rc = restore(dir, FULL, SQUIB_BACKEND_FILE, "file (full)", psz);
	if (!rc)
		rc = rebase(dir);
	if (!rc)
		rc = restore(dir, DIFF_REBASED, SQUIB_BACKEND_FILE, "file (rebased chain)", psz);
	if (argc == 1)
		cleanup(dir);
	if (!rc)
		printf("toy_vmm: ok\n");
	return rc;
}
