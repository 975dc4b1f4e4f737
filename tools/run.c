/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot run GUEST STATE`: boot a guest on KVM and snapshot it while it runs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <squib/load.h>
#include <squib/save.h>

#include "cli.h"

#define RUN_MAX_GUEST (CLI_GUEST_COUNTERS - CLI_GUEST_CODE)

static void run_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot run GUEST STATE [--mem PATH] [--vcpus N] [--reports N]\n\n"
		"Boots GUEST, a flat x86-64 binary (the protocol of tests/guests/counter.S:\n"
		"entered in 64-bit mode at 0x10000 with %%rsi = the vCPU's counter page at\n"
		"0x20000 + i * 4 KiB and %%rdx = the counter-report port 0x3f0), on /dev/kvm with\n"
		"4 MiB of RAM, lets every vCPU report N times, saves a Full snapshot pair while\n"
		"the guest runs, prints the saved counters and exits.\n\n"
		"  --mem PATH    the memory file (default: STATE with its extension replaced\n"
		"                by .mem)\n"
		"  --vcpus N     1..%d vCPUs (default 2)\n"
		"  --reports N   reports per vCPU before the save (default 2)\n\n"
		"exit status: 0 saved; 1 otherwise (no /dev/kvm, bad guest, failed save).\n",
		SQUIB_KVM_MAX_VCPUS);
}

struct run_args {
	const char *guest, *state, *mem;
	uint32_t vcpus, reports;
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
	return 0;
}

static int read_guest(const char *path, uint8_t **buf, size_t *len, struct squib_error_detail *d)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f)
		return squib_fail_errno(d, SQUIB_E_IO, errno);
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

/* The counters as the memory file holds them. */
static int print_saved(const char *mem, uint32_t vcpus, struct squib_error_detail *d)
{
	struct squib_guest_memory *g = NULL;
	int rc = squib_guest_memory_open(mem, NULL, 0, NULL, SQUIB_BACKEND_COPY, &g, d);

	for (uint32_t i = 0; !rc && i < vcpus; i++) {
		uint64_t v;

		memcpy(&v, (uint8_t *)g->regions[0].host + CLI_GUEST_COUNTERS + i * 4096ull, 8);
		printf("vCPU %u: saved counter %llu\n", i, (unsigned long long)v);
	}
	squib_guest_memory_free(g);
	return rc;
}

static int run_run(int argc, char **argv)
{
	struct squib_save_report rep;
	struct squib_error_detail d;
	struct run_args a;
	struct cli_vm c;
	uint8_t *code = NULL;
	char *mem_default = NULL;
	size_t len = 0;
	int rc;

	if (parse_args(argc, argv, &a)) {
		run_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	if (!a.mem && !(a.mem = mem_default = cli_default_mem_path(a.state)))
		return CLI_EXIT_ERROR;
	if ((rc = read_guest(a.guest, &code, &len, &d))) {
		cli_error("run", a.guest, rc, &d);
		free(mem_default);
		return CLI_EXIT_ERROR;
	}
	rc = cli_vm_new(&c, a.vcpus, true, &d);
	if (!rc) {
		struct squib_save_request req = SQUIB_SAVE_REQUEST_INIT(a.state, a.mem);

		if (!(rc = boot(&c, &a, code, len, &d)))
			rc = squib_save(&c.v, &req, &rep, &d);
		cli_vm_free(&c);
	}
	if (!rc) {
		printf("saved %s and %s: full, %llu KiB of page data, guest paused %llu us\n",
		       a.state, a.mem, (unsigned long long)(rep.memory_bytes_written >> 10),
		       (unsigned long long)(rep.ns.paused / 1000));
		rc = print_saved(a.mem, a.vcpus, &d);
	}
	if (rc)
		cli_error("run", a.state, rc, &d);
	free(code);
	free(mem_default);
	return rc ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

const struct cli_command cli_cmd_run = {
    .name = "run",
    .summary = "boot a counter-protocol guest on KVM and save a Full pair while it runs",
    .run = run_run,
    .usage = run_usage,
};
