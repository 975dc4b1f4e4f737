/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot run GUEST STATE`: boot a guest on KVM and snapshot it while it runs. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/input.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/save.h>
#include <squib/store.h>

#include "cli.h"

#define RUN_MAX_GUEST	  (CLI_GUEST_COUNTERS - CLI_GUEST_CODE)
#define RUN_MAX_IMAGE	  (512ull << 20) /* a kernel or an initrd */
#define RUN_LINUX_RAM_MIB 256u
#define RUN_LINUX_READY	  "squib-count"
#define RUN_LINUX_CMDLINE                                                                          \
	"console=ttyS0 acpi=off pci=off nokaslr 8250.nr_uarts=1 i8042.noaux i8042.nokbd "          \
	"i8042.nomux panic=0 initcall_blacklist=cmos_init"

static void run_usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: squib-snapshot run GUEST STATE [--mem PATH] [--vcpus N] [--reports N]\n"
	    "                          [--diff STATE2 [--diff-mem PATH] [--packed]] [--live] "
	    "[--hold]\n"
	    "       squib-snapshot run GUEST --to URL [--with-diff] [--vcpus N] [--reports N]\n"
	    "                          [--live] [--hold]\n"
	    "       squib-snapshot run --kernel BZIMAGE [--initrd FILE] [--cmdline TEXT]\n"
	    "                          [--ram MiB] [--ready TEXT] [--console PATH]\n"
	    "                          [--boot-timeout SEC] STATE\n"
	    "                          [--mem PATH] [--reports N] [--diff STATE2 ...] [--live]\n"
	    "                          [--hold]\n\n"
	    "Boots GUEST, a flat x86-64 binary (the protocol of tests/guests/counter.S:\n"
	    "entered in 64-bit mode at 0x10000 with %%rsi = the vCPU's counter page at\n"
	    "0x20000 + i * 4 KiB and %%rdx = the counter-report port 0x3f0), on /dev/kvm with\n"
	    "4 MiB of RAM, lets every vCPU report N times, saves a Full snapshot pair while\n"
	    "the guest runs, prints the saved counters and exits.\n\n"
	    "  --mem PATH    the memory file (default: STATE with its extension replaced\n"
	    "                by .mem)\n"
	    "  --vcpus N     1..%d vCPUs (default 2)\n"
	    "  --reports N   reports per vCPU before the save (default 2), and before the\n"
	    "                Diff with --diff\n"
	    "  --diff STATE2 with dirty-page tracking on: after the Full save let every\n"
	    "                vCPU report N more times, then save a Diff pair over STATE\n"
	    "                (the pages dirtied since about the Full save) and print its\n"
	    "                counters (read through the chain: STATE's memory file, then\n"
	    "                the Diff's)\n"
	    "  --diff-mem PATH  the Diff's memory file (default: STATE2 with its extension\n"
	    "                replaced by .mem)\n"
	    "  --packed      write the Diff's memory file packed: its pages back to back\n"
	    "                in one sequential write (restore --chain reads it with\n"
	    "                --mem-backend copy or uffd; rebase the chain for file)\n"
	    "  --live        save live: the guest is paused only to capture its state and\n"
	    "                write-protect its RAM (userfaultfd), then runs while the\n"
	    "                memory is written; the image is still the pause instant's.\n"
	    "                Prints a \"live: ...\" line after each \"saved ...\" line\n"
	    "  --to URL      save straight into the snapshot store at URL (s3://BUCKET/PREFIX\n"
	    "                or a directory; no local file) instead of STATE; prints the\n"
	    "                image ids that pull, serve --from and restore --from take\n"
	    "  --with-diff   with --to: N more reports, then a Diff over the Full, also\n"
	    "                into the store\n"
	    "  --hold        after the saves keep the guest running and wait to be killed\n"
	    "                (prints \"holding: ...\" once the saved files are in place)\n\n"
	    "With --kernel it boots a Linux bzImage instead (64-bit boot protocol, one\n"
	    "vCPU, in-kernel irqchip and PIT, a 16550 UART at 0x3f8/IRQ 4 as the console,\n"
	    "whose output goes to stdout), waits for a console line containing the ready\n"
	    "TEXT, then for N more console lines (a report is a console line), and saves.\n"
	    "  --initrd FILE  an initramfs\n"
	    "  --cmdline TEXT the kernel command line (default: \"%s\")\n"
	    "  --ram MiB      guest RAM (default %u)\n"
	    "  --ready TEXT   the console text that says the guest runs its workload\n"
	    "                 (default \"%s\")\n"
	    "  --console PATH the console output to PATH instead of stdout\n"
	    "  --boot-timeout SEC  give up when no ready line came within SEC seconds\n"
	    "                 (default %u), printing the vCPU's and the interrupt\n"
	    "                 controllers' state to stderr\n\n"
	    "Every \"saved ...\" line is printed (and flushed) once its pair is in place.\n\n"
	    "exit status: 0 saved; 1 otherwise (no /dev/kvm, bad guest, failed save).\n"
	    "With --hold it does not exit on its own after a successful run.\n",
	    SQUIB_KVM_MAX_VCPUS, RUN_LINUX_CMDLINE, RUN_LINUX_RAM_MIB, RUN_LINUX_READY,
	    CLI_LINUX_BOOT_MS / 1000);
}

struct run_args {
	const char *guest, *state, *mem, *diff, *diff_mem, *to;
	const char *kernel, *initrd, *cmdline, *ready, *console; /* the Linux guest */
	uint32_t vcpus, reports, ram_mib, boot_s;
	bool hold, vcpus_given, packed, live, with_diff;
};

/* A Linux guest's options at argv[*i]: 1 taken, 0 not one, -1 bad. */
static int linux_option(int argc, char **argv, int *i, struct run_args *a)
{
	static const char *const names[] = {"--kernel", "--initrd", "--cmdline", "--ready",
					    "--console"};
	const char **dst[] = {&a->kernel, &a->initrd, &a->cmdline, &a->ready, &a->console};
	const char *v;
	int r;

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		if ((r = cli_option_value(argc, argv, i, names[k], dst[k])) < 0)
			return fprintf(stderr, "squib-snapshot: run: %s needs a value\n", names[k]),
			       -1;
		if (r)
			return 1;
	}
	if ((r = cli_option_value(argc, argv, i, "--boot-timeout", &v))) {
		if (r < 0 || cli_parse_count(v, 1, CLI_LINUX_BOOT_MS / 1000, &a->boot_s))
			return fprintf(stderr,
				       "squib-snapshot: run: bad --boot-timeout (1..%u s)\n",
				       CLI_LINUX_BOOT_MS / 1000),
			       -1;
		return 1;
	}
	if (!(r = cli_option_value(argc, argv, i, "--ram", &v)))
		return 0;
	if (r < 0 || cli_parse_count(v, 32, 1u << 20, &a->ram_mib))
		return fprintf(stderr, "squib-snapshot: run: bad --ram (MiB, at least 32)\n"), -1;
	return 1;
}

/* The positionals and options fit together (GUEST or --kernel, ...). */
static int check_args(struct run_args *a)
{
	if (a->kernel && a->guest && !a->state) {
		a->state = a->guest; /* GUEST was taken before --kernel was seen */
		a->guest = NULL;
	}
	if (a->kernel && a->guest)
		return fprintf(stderr, "squib-snapshot: run: GUEST or --kernel, not both\n"), -1;
	if (a->to && a->state)
		return fprintf(stderr, "squib-snapshot: run: STATE or --to URL, not both\n"), -1;
	if (a->to && (a->mem || a->diff || a->diff_mem || a->packed))
		return fprintf(stderr, "squib-snapshot: run: --to saves into the store: no --mem, "
				       "--diff, --diff-mem or --packed (--with-diff for a Diff)\n"),
		       -1;
	if (a->with_diff && !a->to)
		return fprintf(stderr, "squib-snapshot: run: --with-diff needs --to\n"), -1;
	if (!a->state && !a->to)
		return fprintf(stderr, "squib-snapshot: run: needs GUEST (or --kernel) and "
				       "STATE (or --to URL)\n"),
		       -1;
	if (a->kernel && !a->vcpus_given)
		a->vcpus = 1;
	if (a->diff_mem && !a->diff)
		return fprintf(stderr, "squib-snapshot: run: --diff-mem needs --diff\n"), -1;
	if (a->packed && !a->diff)
		return fprintf(stderr, "squib-snapshot: run: --packed needs --diff\n"), -1;
	return 0;
}

static int parse_args(int argc, char **argv, struct run_args *a)
{
	const char *v;

	memset(a, 0, sizeof(*a));
	a->vcpus = 2;
	a->reports = 2;
	a->ram_mib = RUN_LINUX_RAM_MIB;
	a->cmdline = RUN_LINUX_CMDLINE;
	a->ready = RUN_LINUX_READY;
	a->boot_s = CLI_LINUX_BOOT_MS / 1000;
	for (int i = 1; i < argc; i++) {
		int r;

		if ((r = linux_option(argc, argv, &i, a))) {
			if (r < 0)
				return -1;
		} else if ((r = cli_option_value(argc, argv, &i, "--mem", &a->mem))) {
			if (r < 0)
				return fprintf(stderr, "squib-snapshot: run: --mem needs a PATH\n"),
				       -1;
		} else if ((r = cli_option_value(argc, argv, &i, "--vcpus", &v))) {
			if (r < 0 || cli_parse_count(v, 1, SQUIB_KVM_MAX_VCPUS, &a->vcpus))
				return fprintf(stderr, "squib-snapshot: run: bad --vcpus\n"), -1;
			a->vcpus_given = true;
		} else if ((r = cli_option_value(argc, argv, &i, "--reports", &v))) {
			if (r < 0 || cli_parse_count(v, 0, 1000000, &a->reports))
				return fprintf(stderr, "squib-snapshot: run: bad --reports\n"), -1;
		} else if ((r = cli_option_value(argc, argv, &i, "--diff-mem", &a->diff_mem))) {
			if (r < 0)
				return fprintf(stderr,
					       "squib-snapshot: run: --diff-mem needs a PATH\n"),
				       -1;
		} else if ((r = cli_option_value(argc, argv, &i, "--diff", &a->diff))) {
			if (r < 0)
				return fprintf(stderr,
					       "squib-snapshot: run: --diff needs a STATE\n"),
				       -1;
		} else if (!strcmp(argv[i], "--hold")) {
			a->hold = true;
		} else if ((r = cli_option_value(argc, argv, &i, "--to", &a->to))) {
			if (r < 0)
				return fprintf(stderr, "squib-snapshot: run: --to needs a URL\n"),
				       -1;
		} else if (!strcmp(argv[i], "--with-diff")) {
			a->with_diff = true;
		} else if (!strcmp(argv[i], "--packed")) {
			a->packed = true;
		} else if (!strcmp(argv[i], "--live")) {
			a->live = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return fprintf(stderr, "squib-snapshot: run: unknown option '%s'\n",
				       argv[i]),
			       -1;
		} else if (!a->guest && !a->kernel) {
			a->guest = argv[i];
		} else if (!a->state) {
			a->state = argv[i];
		} else {
			return fprintf(stderr, "squib-snapshot: run: too many arguments\n"), -1;
		}
	}
	return check_args(a);
}

/* The whole file, 1..max bytes. */
static int read_file(const char *path, uint64_t max, uint8_t **buf, size_t *len,
		     struct squib_error_detail *d)
{
	struct stat st;
	int fd = squib_input_open(path, O_RDONLY, SQUIB_E_IO, &st, d);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
	size_t n = 0;

	*buf = NULL;
	if (fd < 0)
		return fd;
	if (!f) {
		close(fd);
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "reading %s", path);
	}
	if (st.st_size > 0 && (uint64_t)st.st_size <= max && (*buf = malloc((size_t)st.st_size)))
		n = fread(*buf, 1, (size_t)st.st_size, f);
	fclose(f);
	if (!n || !*buf) {
		free(*buf);
		*buf = NULL;
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "%s must be 1..%llu bytes", path,
				      (unsigned long long)max);
	}
	*len = n;
	return 0;
}

/* What run boots: the counter guest's code, or a kernel and its initrd. */
struct run_images {
	uint8_t *code, *kernel, *initrd;
	size_t code_len, kernel_len, initrd_len;
};

static void free_images(struct run_images *im)
{
	free(im->code);
	free(im->kernel);
	free(im->initrd);
}

/* *what: the file that could not be read. */
static int read_images(const struct run_args *a, struct run_images *im, const char **what,
		       struct squib_error_detail *d)
{
	int rc;

	memset(im, 0, sizeof(*im));
	*what = a->kernel ? a->kernel : a->guest;
	if (!a->kernel)
		return read_file(a->guest, RUN_MAX_GUEST, &im->code, &im->code_len, d);
	if ((rc = read_file(a->kernel, RUN_MAX_IMAGE, &im->kernel, &im->kernel_len, d)))
		return rc;
	*what = a->initrd;
	return a->initrd ? read_file(a->initrd, RUN_MAX_IMAGE, &im->initrd, &im->initrd_len, d) : 0;
}

static int boot_counter(struct cli_vm *c, const struct run_args *a, const struct run_images *im,
			struct squib_error_detail *d)
{
	struct squib_kvm_boot b;
	int rc;

	memset(&b, 0, sizeof(b));
	b.tables_gpa = CLI_GUEST_TABLES;
	b.map_size = CLI_GUEST_RAM;
	for (uint32_t i = 0; i < a->vcpus; i++)
		b.entry[i] = (struct squib_kvm_entry){
		    CLI_GUEST_CODE, 0, 0, CLI_GUEST_COUNTERS + i * 4096ull, CLI_GUEST_PORT};
	if ((rc = squib_kvm_vm_write(c->vm, CLI_GUEST_CODE, im->code, im->code_len, d)) ||
	    (rc = squib_kvm_vm_boot_long_mode(c->vm, &b, d)))
		return rc;
	return squib_kvm_vm_start(c->vm, d);
}

/* kvm_pvm's /dev/kvm (no kvm_amd or kvm_intel beside it) runs PVM-aware guest kernels only. */
static bool kvm_is_pvm(void)
{
	return access("/sys/module/kvm_pvm", F_OK) == 0 &&
	       access("/sys/module/kvm_amd", F_OK) != 0 &&
	       access("/sys/module/kvm_intel", F_OK) != 0;
}

/* Until a console line contains the ready text (the counter keeps printing such lines). */
static int wait_ready(struct cli_vm *c, const struct run_args *a, uint64_t t0,
		      struct squib_error_detail *d)
{
	struct squib_kvm_uart_info info;
	uint32_t limit = a->boot_s * 1000u;

	squib_kvm_uart_get(c->uart, &info);
	while (!strstr(info.last_line, a->ready)) {
		uint64_t waited = (cli_now_ns() - t0) / 1000000u;

		if (waited >= limit) {
			cli_vm_dump_stuck(c, "run");
			if (kvm_is_pvm())
				fprintf(stderr,
					"squib-snapshot: run: this /dev/kvm is kvm_pvm, which "
					"boots PVM-aware kernels only (a stock kernel never "
					"does): use kvm_amd or kvm_intel, e.g. inside "
					"scripts/kvm-vm.sh\n");
			return squib_fail_errno_msg(d, SQUIB_E_IO, ETIMEDOUT,
						    "no console line with '%s' in %u s", a->ready,
						    a->boot_s);
		}
		/* A timeout here is the check above on the next turn. */
		(void)squib_kvm_uart_wait_lines(c->uart, info.lines + 1, limit - (uint32_t)waited,
						&info, NULL);
	}
	printf("booted: '%s' on the console %.1f ms after the boot began\n", info.last_line,
	       (double)(cli_now_ns() - t0) / 1e6);
	fflush(stdout);
	return 0;
}

static int boot_linux(struct cli_vm *c, const struct run_args *a, const struct run_images *im,
		      struct squib_error_detail *d)
{
	struct squib_kvm_linux l = {im->kernel, im->kernel_len, im->initrd, im->initrd_len,
				    a->cmdline};
	uint64_t t0 = cli_now_ns();
	int rc;

	if ((rc = squib_kvm_vm_boot_linux(c->vm, &l, d)) || (rc = squib_kvm_vm_start(c->vm, d)))
		return rc;
	return wait_ready(c, a, t0, d);
}

static int boot(struct cli_vm *c, const struct run_args *a, const struct run_images *im,
		struct squib_error_detail *d)
{
	int rc = a->kernel ? boot_linux(c, a, im, d) : boot_counter(c, a, im, d);

	return rc ? rc : cli_vm_wait_reports(c, a->reports, d);
}

/* A Linux guest: the console's last line as the saved state holds it. */
static int print_saved_console(const char *state, struct squib_error_detail *d)
{
	struct squib_microvm_state s;
	struct squib_kvm_uart_info info;
	int rc = squib_load_state_only(state, SQUIB_ARCH_ANY, &s, NULL, d);

	if (!rc && cli_state_console(&s, &info))
		rc = squib_fail_msg(d, SQUIB_E_ENCODING, "no UART in the saved state");
	if (!rc) {
		printf("saved console: %llu lines, %llu bytes, last '",
		       (unsigned long long)info.lines, (unsigned long long)info.bytes);
		cli_put_text(stdout, info.last_line);
		printf("'\n");
	}
	squib_state_free(&s);
	return rc;
}

/* The counters as the memory file holds them (a Diff: over its base, chain). */
static int print_saved(const struct run_args *a, const char *state, const char *mem,
		       const char *base, struct squib_error_detail *d)
{
	const char *const chain[1] = {base};
	struct squib_guest_memory *g = NULL;
	int rc;

	if (a->kernel)
		return print_saved_console(state, d);
	rc = squib_guest_memory_open(mem, base ? chain : NULL, base ? 1 : 0, NULL,
				     SQUIB_BACKEND_COPY, &g, d);
	for (uint32_t i = 0; !rc && i < a->vcpus; i++) {
		uint64_t v;

		memcpy(&v,
		       (uint8_t *)squib_guest_memory_region(g, 0)->host + CLI_GUEST_COUNTERS +
			   i * 4096ull,
		       8);
		printf("vCPU %u: saved counter %llu\n", i, (unsigned long long)v);
	}
	squib_guest_memory_free(g);
	return rc;
}

/* With --live: whether the save ran live, and what the guest's writes cost it. */
static void print_live(const struct run_args *a, const struct squib_save_report *rep)
{
	if (!a->live)
		return;
	if (rep->live)
		printf("live: guest paused %llu us, %llu guest writes waited for a copy (%llu "
		       "pages)\n",
		       (unsigned long long)(rep->ns.paused / 1000),
		       (unsigned long long)rep->live_write_faults,
		       (unsigned long long)rep->live_pages_on_write);
	else
		printf("live: not possible here (%s), saved stop-the-world\n",
		       strerror(rep->live_errno));
}

/* With --diff: N more reports, then a Diff over the Full pair, and its counters. */
static int save_diff(struct cli_vm *c, const struct run_args *a, struct squib_error_detail *d)
{
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(a->diff, a->diff_mem);
	struct squib_save_report rep;
	int rc;

	req.kind = SQUIB_SNAPSHOT_DIFF;
	req.parent_state_path = a->state;
	req.packed = a->packed;
	req.live = a->live;
	if ((rc = cli_vm_wait_reports(c, a->reports, d)) || (rc = squib_save(&c->v, &req, &rep, d)))
		return rc;
	printf("saved %s and %s: diff over %s, %llu pages (%llu KiB of page data), "
	       "guest paused %llu us, save took %llu us\n",
	       a->diff, a->diff_mem, a->state, (unsigned long long)rep.pages_written,
	       (unsigned long long)(rep.memory_bytes_written >> 10),
	       (unsigned long long)(rep.ns.paused / 1000),
	       (unsigned long long)(rep.ns.total / 1000));
	print_live(a, &rep);
	rc = print_saved(a, a->diff, a->diff_mem, a->mem, d);
	fflush(stdout);
	return rc;
}

/* One save into the store (--to), its line: the id names the image in the store. */
static int save_to_store(struct cli_vm *c, const struct run_args *a, struct squib_store *s,
			 const uint8_t *parent, uint8_t id[SQUIB_MEMORY_ID_SIZE],
			 struct squib_error_detail *d)
{
	struct squib_store_save_request req = {
	    .kind = parent ? SQUIB_SNAPSHOT_DIFF : SQUIB_SNAPSHOT_FULL,
	    .parent_memory_id = parent,
	    .live = a->live};
	struct squib_store_save_report rep;
	char hex[2 * SQUIB_MEMORY_ID_SIZE + 1];
	int rc;

	if ((rc = squib_store_save(s, &c->v, &req, &rep, d)))
		return rc;
	memcpy(id, rep.save.memory_id, SQUIB_MEMORY_ID_SIZE);
	squib_memfile_id_hex(id, hex);
	printf("saved into %s: image %s (%s), %llu chunks, %llu uploaded, %llu reused, "
	       "%llu zero; guest paused %llu us, save took %llu us\n",
	       squib_store_url(s), hex, parent ? "diff" : "full",
	       (unsigned long long)rep.store.chunks, (unsigned long long)rep.store.chunks_put,
	       (unsigned long long)rep.store.chunks_reused,
	       (unsigned long long)rep.store.chunks_zero,
	       (unsigned long long)(rep.save.ns.paused / 1000),
	       (unsigned long long)(rep.save.ns.total / 1000));
	print_live(a, &rep.save);
	fflush(stdout);
	return 0;
}

/* --to: the Full (and with --with-diff the Diff) into the store. */
static int save_into_store(struct cli_vm *c, const struct run_args *a, const char **what,
			   struct squib_error_detail *d)
{
	uint8_t full[SQUIB_MEMORY_ID_SIZE], diff[SQUIB_MEMORY_ID_SIZE];
	struct squib_store *s = NULL;
	int rc;

	*what = a->to;
	if ((rc = squib_store_open(a->to, NULL, &s, d)))
		return rc;
	if (!(rc = save_to_store(c, a, s, NULL, full, d)) && a->with_diff &&
	    !(rc = cli_vm_wait_reports(c, a->reports, d)))
		rc = save_to_store(c, a, s, full, diff, d);
	squib_store_close(s);
	return rc;
}

static int new_vm(struct cli_vm *c, const struct run_args *a, int console_fd,
		  struct squib_error_detail *d)
{
	struct cli_vm_shape sh = {a->kernel ? CLI_GUEST_KIND_LINUX : CLI_GUEST_KIND_COUNTER,
				  a->vcpus, a->kernel ? (uint64_t)a->ram_mib << 20 : CLI_GUEST_RAM,
				  a->diff != NULL || a->with_diff, console_fd};

	return cli_vm_new(c, &sh, d);
}

/* Boot, save the Full pair (and the Diff), print; with --hold, wait to be killed. */
static int run_vm(const struct run_args *a, const struct run_images *im, int console_fd,
		  const char **what, struct squib_error_detail *d)
{
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(a->state, a->mem);
	struct squib_save_report rep;
	struct cli_vm c;
	int rc = new_vm(&c, a, console_fd, d);

	*what = NULL; /* the VM: the detail names /dev/kvm */
	req.live = a->live;
	if (rc)
		return rc;
	*what = a->state;
	if (!(rc = boot(&c, a, im, d)) && a->to) {
		rc = save_into_store(&c, a, what, d);
	} else if (!rc && !(rc = squib_save(&c.v, &req, &rep, d))) {
		printf("saved %s and %s: full, %llu KiB of page data, guest paused %llu us, "
		       "save took %llu us\n",
		       a->state, a->mem, (unsigned long long)(rep.memory_bytes_written >> 10),
		       (unsigned long long)(rep.ns.paused / 1000),
		       (unsigned long long)(rep.ns.total / 1000));
		print_live(a, &rep);
		rc = print_saved(a, a->state, a->mem, NULL, d);
		fflush(stdout);
	}
	if (!rc && a->diff)
		rc = save_diff(&c, a, d);
	if (!rc && a->hold) {
		printf("holding: the guest keeps running (pid %ld); kill me to stop it\n",
		       (long)getpid());
		fflush(stdout);
		for (;;)
			pause();
	}
	cli_vm_free(&c);
	return rc;
}

static int run_run(int argc, char **argv)
{
	struct squib_error_detail d;
	struct run_args a;
	struct run_images im = {0};
	char *mem_default = NULL, *diff_mem_default = NULL;
	const char *what = NULL;
	int rc, console_fd;

	if (parse_args(argc, argv, &a)) {
		run_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	if (a.state && cli_mem_path("run", a.state, &a.mem, &mem_default))
		return CLI_EXIT_ERROR;
	if (a.diff && cli_mem_path("run", a.diff, &a.diff_mem, &diff_mem_default)) {
		free(mem_default);
		return CLI_EXIT_ERROR;
	}
	if ((console_fd = cli_console_open(a.kernel ? a.console : NULL)) < 0)
		rc = SQUIB_E_IO;
	else if ((rc = read_images(&a, &im, &what, &d)))
		cli_error("run", what, rc, &d);
	else if ((rc = run_vm(&a, &im, console_fd, &what, &d)))
		cli_error("run", what, rc, &d);
	if (console_fd > 2)
		close(console_fd);
	free_images(&im);
	free(mem_default);
	free(diff_mem_default);
	return cli_exit_code(rc);
}

const struct cli_command cli_cmd_run = {
    .name = "run",
    .summary =
	"boot a counter-protocol guest on KVM and save a Full pair (and a Diff) while it runs",
    .run = run_run,
    .usage = run_usage,
};
