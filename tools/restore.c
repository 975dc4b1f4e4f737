/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot restore STATE`: load a pair into a fresh KVM VM and run it. */
#include <stdlib.h>
#include <string.h>

#include <squib/load.h>
#include <squib/pager.h>

#include "cli.h"

static void restore_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot restore STATE [--mem PATH] [--mem-backend copy|file|uffd]\n"
		"                              [--chain MEM ...] [--paused] [--reports N]\n\n"
		"Loads a pair saved by `run` (the counter-protocol guest) into a fresh VM on\n"
		"/dev/kvm and prints each vCPU's counter as restored. Then, unless --paused,\n"
		"resumes the guest, waits until every vCPU has reported N more times, pauses\n"
		"it and prints the counters again.\n\n"
		"  --mem PATH           the memory file (default: STATE with its extension\n"
		"                       replaced by .mem)\n"
		"  --mem-backend copy   read the pages into anonymous memory (default)\n"
		"  --mem-backend file   map the memory file copy-on-write (a Full file only)\n"
		"  --mem-backend uffd   lazy: anonymous memory filled on first touch by an\n"
		"                       in-process userfaultfd pager reading the file (or the\n"
		"                       chain); prints the pager's statistics at the end\n"
		"  --chain MEM          a Diff's older layer (copy and uffd backends): the Full\n"
		"                       base first, then older diffs oldest first; repeat it\n"
		"  --paused             restore and stop: the guest never runs\n"
		"  --reports N          reports per vCPU to wait for (default 2)\n\n"
		"exit status: 0 restored (and ran); 1 otherwise (e.g. an aarch64 state:\n"
		"Incompatible; with uffd, a pager error: the guest is stopped for good).\n");
}

#define RESTORE_MAX_CHAIN 16

struct restore_args {
	const char *state, *mem;
	const char *chain[RESTORE_MAX_CHAIN];
	size_t chain_len;
	enum squib_memory_backend backend;
	/* uffd backend options (--uffd-sock, --record-ws, --prefetch-ws) go here. */
	bool paused;
	uint32_t reports;
};

static const char *backend_name(enum squib_memory_backend b)
{
	switch (b) {
	case SQUIB_BACKEND_COPY:
		return "copy";
	case SQUIB_BACKEND_FILE:
		return "file";
	case SQUIB_BACKEND_LAZY:
		return "uffd";
	case SQUIB_BACKEND_UFFD:
		return "uffd, external handler";
	}
	return "?";
}

static int parse_args(int argc, char **argv, struct restore_args *a)
{
	const char *v;

	memset(a, 0, sizeof(*a));
	a->reports = 2;
	for (int i = 1; i < argc; i++) {
		int r;

		if ((r = cli_option_value(argc, argv, &i, "--mem", &a->mem))) {
			if (r < 0)
				return fprintf(stderr,
					       "squib-snapshot: restore: --mem needs a PATH\n"),
				       -1;
		} else if ((r = cli_option_value(argc, argv, &i, "--mem-backend", &v))) {
			if (r > 0 && !strcmp(v, "copy"))
				a->backend = SQUIB_BACKEND_COPY;
			else if (r > 0 && !strcmp(v, "file"))
				a->backend = SQUIB_BACKEND_FILE;
			else if (r > 0 && !strcmp(v, "uffd"))
				a->backend = SQUIB_BACKEND_LAZY;
			else
				return fprintf(stderr, "squib-snapshot: restore: --mem-backend is "
						       "copy, file or uffd\n"),
				       -1;
		} else if ((r = cli_option_value(argc, argv, &i, "--chain", &v))) {
			if (r < 0 || a->chain_len == RESTORE_MAX_CHAIN)
				return fprintf(stderr,
					       "squib-snapshot: restore: --chain needs a MEM "
					       "(at most %d)\n",
					       RESTORE_MAX_CHAIN),
				       -1;
			a->chain[a->chain_len++] = v;
		} else if ((r = cli_option_value(argc, argv, &i, "--reports", &v))) {
			if (r < 0 || cli_parse_count(v, 1, 1000000, &a->reports))
				return fprintf(stderr, "squib-snapshot: restore: bad --reports\n"),
				       -1;
		} else if (!strcmp(argv[i], "--paused")) {
			a->paused = true;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			return fprintf(stderr, "squib-snapshot: restore: unknown option '%s'\n",
				       argv[i]),
			       -1;
		} else if (!a->state) {
			a->state = argv[i];
		} else {
			return fprintf(stderr, "squib-snapshot: restore: more than one STATE\n"),
			       -1;
		}
	}
	if (!a->state)
		return fprintf(stderr, "squib-snapshot: restore: missing STATE\n"), -1;
	return 0;
}

/* As many vCPUs as the state has (the load refuses a state that does not fit). */
static uint32_t vcpus_of(const char *state)
{
	struct squib_microvm_state s;
	struct squib_error_detail d;
	uint32_t n = 1;

	if (!squib_load_state_only(state, SQUIB_ARCH_ANY, &s, NULL, &d) && s.vcpu_count &&
	    s.vcpu_count <= SQUIB_KVM_MAX_VCPUS)
		n = s.vcpu_count;
	squib_state_free(&s);
	return n;
}

/* ---- the uffd backend: watch the pager while the guest runs ---- */

#define RESTORE_POLL_MS 100u

/*
 * The pager failed: the guest can never get the page it waits for. Stop it
 * for good (kicked, RAM revoked), then stop the pager, which unregisters the
 * memory and so wakes a vCPU blocked on that page; it leaves KVM_RUN and the
 * VM can be freed.
 */
static int fail_on_pager_error(struct cli_vm *c, struct squib_pager *p, int code,
			       struct squib_error_detail *d)
{
	struct squib_error_detail why = *d, ignored;

	squib_kvm_vm_fail(c->vm, code, &why, &ignored);
	squib_pager_stop(p);
	squib_kvm_vm_wait_stopped(c->vm, CLI_GUEST_WAIT_MS, &ignored);
	*d = why;
	snprintf(d->msg, sizeof(d->msg), "the guest was stopped: the uffd pager failed: %.400s",
		 why.msg);
	return code;
}

/* 0, or the pager's error (the VM then stopped for good). No pager: 0. */
static int check_pager(struct cli_vm *c, struct squib_pager *p, struct squib_error_detail *d)
{
	int rc = p ? squib_pager_error(p, d) : 0;

	return rc ? fail_on_pager_error(c, p, rc, d) : 0;
}

/* cli_vm_wait_reports in short slices, looking at the pager between them. */
static int wait_reports(struct cli_vm *c, struct squib_pager *p, uint64_t reports,
			struct squib_error_detail *d)
{
	uint32_t n = squib_kvm_vm_vcpu_count(c->vm);
	int rc = 0;

	for (uint32_t i = 0; !rc && i < n; i++) {
		uint64_t want = 0;
		uint32_t waited = 0;

		squib_kvm_counter_get(c->counter, i, NULL, &want);
		want += reports;
		do {
			int prc;

			rc = squib_kvm_counter_wait(c->counter, i, want, RESTORE_POLL_MS, NULL, d);
			waited += RESTORE_POLL_MS;
			if (rc && (prc = check_pager(c, p, d)))
				return prc;
		} while (rc && waited < CLI_GUEST_WAIT_MS);
	}
	return rc;
}

static void print_pager_stats(const struct squib_pager *p)
{
	struct squib_pager_stats s;

	squib_pager_stats(p, &s);
	printf("pager: %llu faults, %llu pages copied, %llu zeroed, %llu already there, "
	       "%llu bytes read, %llu of %llu pages present; service median %.1f us, "
	       "p99 %.1f us\n",
	       (unsigned long long)s.faults, (unsigned long long)s.pages_copied,
	       (unsigned long long)s.pages_zeroed, (unsigned long long)s.pages_existing,
	       (unsigned long long)s.bytes_read, (unsigned long long)s.pages_present,
	       (unsigned long long)s.page_count, s.median_us, s.p99_us);
}

static int run_restored(struct cli_vm *c, const struct restore_args *a, struct squib_pager *p,
			struct squib_error_detail *d)
{
	struct squib_error_detail pd;
	int rc = 0, prc;

	if (a->paused)
		printf("paused: the guest was not resumed\n");
	else if (!(rc = squib_vm_resume(&c->v, d)) && !(rc = wait_reports(c, p, a->reports, d)))
		rc = squib_vm_pause(&c->v, 0, d);
	/* Whatever failed, a pager error explains it best, and a vCPU blocked on
	 * it must be released before the VM can be freed. */
	if ((prc = check_pager(c, p, &pd))) {
		*d = pd;
		return prc;
	}
	if (rc || a->paused)
		return rc;
	printf("resumed; after %u more reports per vCPU:\n", a->reports);
	cli_vm_print_counters(c, stdout);
	return 0;
}

static int restore_vm(struct cli_vm *c, const struct restore_args *a, struct squib_error_detail *d)
{
	struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(a->state, a->mem);
	struct squib_load_result res;
	struct squib_pager *p;
	int rc;

	req.backend = a->backend;
	req.chain = a->chain_len ? a->chain : NULL;
	req.chain_len = a->chain_len;
	req.stay_paused = true;
	if ((rc = squib_load(&c->v, &req, &res, d))) {
		cli_vm_free(c);
		squib_guest_memory_free(res.memory);
		return rc;
	}
	p = res.memory->pager;
	printf("restored %s (%s backend, %u vCPUs) in %llu us\n", a->state,
	       backend_name(a->backend), squib_kvm_vm_vcpu_count(c->vm),
	       (unsigned long long)(res.ns.total / 1000));
	cli_vm_print_counters(c, stdout);
	rc = run_restored(c, a, p, d);
	if (p)
		print_pager_stats(p);
	cli_vm_free(c);
	squib_load_result_free(&res);
	return rc;
}

static int restore_run(int argc, char **argv)
{
	struct squib_error_detail d;
	struct restore_args a;
	struct cli_vm c;
	char *mem_default = NULL;
	int rc;

	if (parse_args(argc, argv, &a)) {
		restore_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	if (!a.mem && !(a.mem = mem_default = cli_default_mem_path(a.state)))
		return CLI_EXIT_ERROR;
	rc = cli_vm_new(&c, vcpus_of(a.state), false, false, &d);
	if (!rc)
		rc = restore_vm(&c, &a, &d);
	if (rc)
		cli_error("restore", a.state, rc, &d);
	free(mem_default);
	return rc ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

const struct cli_command cli_cmd_restore = {
    .name = "restore",
    .summary = "load a pair saved by run into a fresh KVM VM and let it run (or --paused)",
    .run = restore_run,
    .usage = restore_usage,
};
