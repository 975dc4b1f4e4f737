/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot run GUEST STATE`: boot a guest on KVM and snapshot it while it runs. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/input.h>
#include <squib/load.h>
#include <squib/save.h>

#include "cli.h"

#define RUN_MAX_GUEST (CLI_GUEST_COUNTERS - CLI_GUEST_CODE)

static void run_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot run GUEST STATE [--mem PATH] [--vcpus N] [--reports N]\n"
		"                          [--diff STATE2 [--diff-mem PATH]] [--hold]\n\n"
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
		"  --hold        after the saves keep the guest running and wait to be killed\n"
		"                (prints \"holding: ...\" once the saved files are in place)\n\n"
		"Every \"saved ...\" line is printed (and flushed) once its pair is in place.\n\n"
		"exit status: 0 saved; 1 otherwise (no /dev/kvm, bad guest, failed save).\n"
		"With --hold it does not exit on its own after a successful run.\n",
		SQUIB_KVM_MAX_VCPUS);
}

struct run_args {
	const char *guest, *state, *mem, *diff, *diff_mem;
	uint32_t vcpus, reports;
	bool hold;
};

static int parse_args(int argc, char **argv, struct run_args *a)
{
	const char *v;

	memset(a, 0, sizeof(*a));
	a->vcpus = 2;
	a->reports = 2;
	for (int i = 1; i < argc; i++) {
		int r;

		if ((r = cli_option_value(argc, argv, &i, "--mem", &a->mem))) {
			if (r < 0)
				return fprintf(stderr, "squib-snapshot: run: --mem needs a PATH\n"),
				       -1;
		} else if ((r = cli_option_value(argc, argv, &i, "--vcpus", &v))) {
			if (r < 0 || cli_parse_count(v, 1, SQUIB_KVM_MAX_VCPUS, &a->vcpus))
				return fprintf(stderr, "squib-snapshot: run: bad --vcpus\n"), -1;
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
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return fprintf(stderr, "squib-snapshot: run: unknown option '%s'\n",
				       argv[i]),
			       -1;
		} else if (!a->guest) {
			a->guest = argv[i];
		} else if (!a->state) {
			a->state = argv[i];
		} else {
			return fprintf(stderr, "squib-snapshot: run: too many arguments\n"), -1;
		}
	}
	if (!a->state)
		return fprintf(stderr, "squib-snapshot: run: needs GUEST and STATE\n"), -1;
	if (a->diff_mem && !a->diff)
		return fprintf(stderr, "squib-snapshot: run: --diff-mem needs --diff\n"), -1;
	return 0;
}

static int read_guest(const char *path, uint8_t **buf, size_t *len, struct squib_error_detail *d)
{
	int fd = squib_input_open(path, O_RDONLY, SQUIB_E_IO, NULL, d);
	FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
	size_t n;

	if (fd < 0)
		return fd;
	if (!f) {
		close(fd);
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "reading %s", path);
	}
	if (!(*buf = malloc(RUN_MAX_GUEST + 1))) {
		fclose(f);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	n = fread(*buf, 1, RUN_MAX_GUEST + 1, f);
	fclose(f);
	if (!n || n > RUN_MAX_GUEST) {
		free(*buf);
		*buf = NULL;
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "the guest must be 1..%llu bytes",
				      (unsigned long long)RUN_MAX_GUEST);
	}
	*len = n;
	return 0;
}

static int boot(struct cli_vm *c, const struct run_args *a, const uint8_t *code, size_t len,
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
	if ((rc = squib_kvm_vm_write(c->vm, CLI_GUEST_CODE, code, len, d)) ||
	    (rc = squib_kvm_vm_boot_long_mode(c->vm, &b, d)) || (rc = squib_kvm_vm_start(c->vm, d)))
		return rc;
	return cli_vm_wait_reports(c, a->reports, d);
}

/* The counters as the memory file holds them (a Diff: over its base, chain). */
static int print_saved(const char *mem, const char *base, uint32_t vcpus,
		       struct squib_error_detail *d)
{
	const char *const chain[1] = {base};
	struct squib_guest_memory *g = NULL;
	int rc = squib_guest_memory_open(mem, base ? chain : NULL, base ? 1 : 0, NULL,
					 SQUIB_BACKEND_COPY, &g, d);

	for (uint32_t i = 0; !rc && i < vcpus; i++) {
		uint64_t v;

		memcpy(&v, (uint8_t *)g->regions[0].host + CLI_GUEST_COUNTERS + i * 4096ull, 8);
		printf("vCPU %u: saved counter %llu\n", i, (unsigned long long)v);
	}
	squib_guest_memory_free(g);
	return rc;
}

/* With --diff: N more reports, then a Diff over the Full pair, and its counters. */
static int save_diff(struct cli_vm *c, const struct run_args *a, struct squib_error_detail *d)
{
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(a->diff, a->diff_mem);
	struct squib_save_report rep;
	int rc;

	req.kind = SQUIB_SNAPSHOT_DIFF;
	req.parent_state_path = a->state;
	if ((rc = cli_vm_wait_reports(c, a->reports, d)) || (rc = squib_save(&c->v, &req, &rep, d)))
		return rc;
	printf("saved %s and %s: diff over %s, %llu pages (%llu KiB of page data), "
	       "guest paused %llu us, save took %llu us\n",
	       a->diff, a->diff_mem, a->state, (unsigned long long)rep.pages_written,
	       (unsigned long long)(rep.memory_bytes_written >> 10),
	       (unsigned long long)(rep.ns.paused / 1000),
	       (unsigned long long)(rep.ns.total / 1000));
	rc = print_saved(a->diff_mem, a->mem, a->vcpus, d);
	fflush(stdout);
	return rc;
}

/* Boot, save the Full pair (and the Diff), print; with --hold, wait to be killed. */
static int run_vm(const struct run_args *a, const uint8_t *code, size_t len, const char **what,
		  struct squib_error_detail *d)
{
	struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(a->state, a->mem);
	struct squib_save_report rep;
	struct cli_vm c;
	int rc = cli_vm_new(&c, a->vcpus, true, a->diff != NULL, d);

	*what = NULL; /* the VM: the detail names /dev/kvm */
	if (rc)
		return rc;
	*what = a->state;
	if (!(rc = boot(&c, a, code, len, d)) && !(rc = squib_save(&c.v, &req, &rep, d))) {
		printf("saved %s and %s: full, %llu KiB of page data, guest paused %llu us, "
		       "save took %llu us\n",
		       a->state, a->mem, (unsigned long long)(rep.memory_bytes_written >> 10),
		       (unsigned long long)(rep.ns.paused / 1000),
		       (unsigned long long)(rep.ns.total / 1000));
		rc = print_saved(a->mem, NULL, a->vcpus, d);
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
	uint8_t *code = NULL;
	char *mem_default = NULL, *diff_mem_default = NULL;
	const char *what = NULL;
	size_t len = 0;
	int rc;

	if (parse_args(argc, argv, &a)) {
		run_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	if (!a.mem && !(a.mem = mem_default = cli_default_mem_path(a.state)))
		return CLI_EXIT_ERROR;
	if (a.diff && !a.diff_mem &&
	    !(a.diff_mem = diff_mem_default = cli_default_mem_path(a.diff))) {
		free(mem_default);
		return CLI_EXIT_ERROR;
	}
	if ((rc = read_guest(a.guest, &code, &len, &d))) {
		cli_error("run", a.guest, rc, &d);
	} else if ((rc = run_vm(&a, code, len, &what, &d))) {
		cli_error("run", what, rc, &d);
	}
	free(code);
	free(mem_default);
	free(diff_mem_default);
	return rc ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

const struct cli_command cli_cmd_run = {
    .name = "run",
    .summary =
	"boot a counter-protocol guest on KVM and save a Full pair (and a Diff) while it runs",
    .run = run_run,
    .usage = run_usage,
};
