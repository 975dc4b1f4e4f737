/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot restore STATE`: load a pair into a fresh KVM VM and run it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/load.h>
#include <squib/pager.h>
#include <squib/uffd_remote.h>
#include <squib/workset.h>

#include "cli.h"

static void restore_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot restore STATE [--mem PATH] [--mem-backend copy|file|uffd]\n"
		"                              [--chain MEM ...] [--paused] [--reports N]\n"
		"                              [--uffd-sock PATH] [--record-ws FILE]\n"
		"                              [--prefetch-ws FILE] [--background-fill]\n"
		"                              [--no-prewarm] [--handler-uid UID]...\n"
		"                              [--console PATH]\n"
		"       squib-snapshot restore --from URL/ID [--cache DIR|none]\n"
		"                              [--cache-size BYTES] [--prefetch-ws FILE]\n"
		"                              [--record-ws FILE] [--paused] [--reports N]\n"
		"                              [--no-prewarm] [--console PATH]\n\n"
		"Loads a pair saved by `run` (the counter-protocol guest) into a fresh VM on\n"
		"/dev/kvm and prints each vCPU's counter as restored. Then, unless --paused,\n"
		"resumes the guest, waits until every vCPU has reported N more times, pauses\n"
		"it and prints the counters again. A Linux guest's pair (saved by\n"
		"`run --kernel`) restores with its UART: the console continues on stdout, a\n"
		"report is a console line, and the time from the start of the restore to\n"
		"the first console line is printed.\n\n"
		"  --mem PATH           the memory file (default: STATE with its extension\n"
		"                       replaced by .mem)\n"
		"  --mem-backend copy   read the pages into anonymous memory (default)\n"
		"  --mem-backend file   map the memory file copy-on-write (a Full file only)\n"
		"  --mem-backend uffd   lazy: anonymous memory filled on first touch by an\n"
		"                       in-process userfaultfd pager reading the file (or the\n"
		"                       chain); prints the pager's statistics at the end\n"
		"  --uffd-sock PATH     uffd with an external page-fault handler listening at\n"
		"                       PATH (e.g. `squib-snapshot serve`, or a handler written\n"
		"                       for Firecracker): the memory is handed over in\n"
		"                       Firecracker's Uffd handshake; the memory file is not\n"
		"                       opened unless --mem is given. If the handler dies, the\n"
		"                       guest is stopped for good and restore exits 1\n"
		"  --handler-uid UID    --uffd-sock: also trust a handler running as UID\n"
		"                       (repeatable). By default only a handler of restore's\n"
		"                       own uid (or root) is sent the guest's memory; the\n"
		"                       listener's uid is checked before anything is sent\n"
		"  --record-ws FILE     uffd: write the pages the guest faulted in (the working\n"
		"                       set) to FILE at the end\n"
		"  --prefetch-ws FILE   uffd: install FILE's working set before the guest runs\n"
		"  --background-fill    uffd: install the remaining pages while the pager idles;\n"
		"                       once all are present the pager unregisters the memory\n"
		"                       and ends\n"
		"  --no-prewarm         lazy backends: do not install the vCPUs' boot pages (RIP,\n"
		"                       stack and their page tables) before the guest runs\n"
		"  --from URL/ID        restore image ID of the snapshot store at URL lazily:\n"
		"                       its state is fetched, and a `serve --from` child serves\n"
		"                       the guest's memory (Uffd backend), fetching chunks on\n"
		"                       demand through the host's chunk cache (--cache,\n"
		"                       --cache-size: as serve's). --prefetch-ws fetches and\n"
		"                       installs FILE's working set in parallel. A chunk that\n"
		"                       cannot be fetched or fails its check ends serve with\n"
		"                       an error naming it: the guest is stopped for good\n"
		"                       (exit 1), never run on wrong memory\n"
		"  --chain MEM          a Diff's older layer (copy and uffd backends): the Full\n"
		"                       base first, then older diffs oldest first; repeat it\n"
		"  --paused             restore and stop: the guest never runs\n"
		"  --reports N          reports per vCPU to wait for (default 2)\n"
		"  --console PATH       a Linux guest's console output to PATH, not stdout\n\n"
		"exit status: 0 restored (and ran); 2 the pair fails an integrity check (a\n"
		"CRC or digest, or a memory file that is not the state's); 1 otherwise (e.g.\n"
		"an aarch64 state: Incompatible; with uffd, a pager error or the handler's\n"
		"death: the guest is stopped for good).\n");
}

#define RESTORE_MAX_CHAIN 16

struct restore_args {
	const char *state, *mem;
	const char *chain[RESTORE_MAX_CHAIN];
	size_t chain_len;
	enum squib_memory_backend backend;
	const char *uffd_sock, *record_ws, *prefetch_ws;
	uint32_t handler_uids[SQUIB_UFFD_MAX_ALLOW_UIDS];
	uint32_t handler_uid_count;
	bool background_fill, no_prewarm;
	bool backend_given; /* --mem-backend on the command line */
	bool paused;
	uint32_t reports;
	const char *console;
	uint64_t start_ns;    /* CLOCK_MONOTONIC when the restore began */
	struct cli_from from; /* --from, --cache, --cache-size */
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

/* One of the lazy backends' options at argv[*i]: 1 taken, 0 not one, -1 bad. */
static int lazy_option(int argc, char **argv, int *i, struct restore_args *a)
{
	static const char *const names[] = {"--uffd-sock", "--record-ws", "--prefetch-ws"};
	const char **dst[] = {&a->uffd_sock, &a->record_ws, &a->prefetch_ws};
	const char *v;
	uint32_t uid;
	int r;

	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		r = cli_option_value(argc, argv, i, names[k], dst[k]);

		if (r < 0)
			return fprintf(stderr, "squib-snapshot: restore: %s needs a PATH\n",
				       names[k]),
			       -1;
		if (r)
			return 1;
	}
	if ((r = cli_from_option("restore", argc, argv, i, &a->from)))
		return r;
	if ((r = cli_option_value(argc, argv, i, "--handler-uid", &v))) {
		/* (uid_t)-1 means "no uid" to the kernel: never a peer's. */
		if (r < 0 || cli_parse_count(v, 0, UINT32_MAX - 1, &uid))
			return fprintf(stderr, "squib-snapshot: restore: --handler-uid needs a uid "
					       "(0 to 4294967294)\n"),
			       -1;
		if (a->handler_uid_count == SQUIB_UFFD_MAX_ALLOW_UIDS)
			return fprintf(stderr,
				       "squib-snapshot: restore: --handler-uid: at most %d uids\n",
				       SQUIB_UFFD_MAX_ALLOW_UIDS),
			       -1;
		a->handler_uids[a->handler_uid_count++] = uid;
		return 1;
	}
	if (!strcmp(argv[*i], "--background-fill"))
		return a->background_fill = true, 1;
	if (!strcmp(argv[*i], "--no-prewarm"))
		return a->no_prewarm = true, 1;
	return 0;
}

/* --uffd-sock selects the external handler; the in-process pager's options need it absent. */
static int check_lazy_args(struct restore_args *a)
{
	bool pager_opt = a->record_ws || a->prefetch_ws || a->background_fill;

	if (a->uffd_sock && !a->backend_given)
		a->backend = SQUIB_BACKEND_LAZY; /* --uffd-sock alone implies uffd */
	if ((a->uffd_sock || pager_opt || a->no_prewarm) && a->backend != SQUIB_BACKEND_LAZY)
		return fprintf(stderr, "squib-snapshot: restore: --uffd-sock, --record-ws, "
				       "--prefetch-ws, --background-fill and --no-prewarm need "
				       "--mem-backend uffd\n"),
		       -1;
	if (a->handler_uid_count && !a->uffd_sock)
		return fprintf(stderr,
			       "squib-snapshot: restore: --handler-uid needs --uffd-sock\n"),
		       -1;
	if (a->uffd_sock && pager_opt)
		return fprintf(stderr, "squib-snapshot: restore: --record-ws, --prefetch-ws and "
				       "--background-fill belong to the in-process pager, not to "
				       "--uffd-sock (the handler has the pages)\n"),
		       -1;
	if (a->uffd_sock)
		a->backend = SQUIB_BACKEND_UFFD;
	return 0;
}

/* --from: the state comes from the store and the memory from a `serve --from` child. */
static int check_from_args(struct restore_args *a)
{
	if (a->state || a->mem || a->chain_len || a->uffd_sock || a->handler_uid_count ||
	    a->background_fill || (a->backend_given && a->backend != SQUIB_BACKEND_LAZY))
		return fprintf(stderr, "squib-snapshot: restore: --from takes the state and memory "
				       "from the store: no STATE, --mem, --chain, --uffd-sock, "
				       "--handler-uid, --background-fill or --mem-backend other "
				       "than uffd\n"),
		       -1;
	a->backend = SQUIB_BACKEND_UFFD;
	return 0;
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
		} else if ((r = lazy_option(argc, argv, &i, a)) < 0) {
			return -1;
		} else if (r) {
			continue;
		} else if ((r = cli_option_value(argc, argv, &i, "--mem-backend", &v))) {
			a->backend_given = true;
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
		} else if ((r = cli_option_value(argc, argv, &i, "--console", &a->console))) {
			if (r < 0)
				return fprintf(stderr,
					       "squib-snapshot: restore: --console needs a PATH\n"),
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
	if (a->from.ref)
		return check_from_args(a);
	if (a->from.cache || a->from.cache_size)
		return fprintf(stderr, "squib-snapshot: restore: --cache and --cache-size go with "
				       "--from\n"),
		       -1;
	if (!a->state)
		return fprintf(stderr, "squib-snapshot: restore: missing STATE\n"), -1;
	return check_lazy_args(a);
}

/* The pair checked before KVM is opened, so a bad file is reported as itself; the VM
 * gets as many vCPUs as the state has (the load refuses a state that does not fit). */
static int check_pair(const struct restore_args *a, uint32_t *vcpus, struct squib_error_detail *d)
{
	struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(a->state, a->mem);
	int rc;

	req.backend = a->backend;
	req.chain = a->chain_len ? a->chain : NULL;
	req.chain_len = a->chain_len;
	rc = squib_load_check(&req, SQUIB_ARCH_X86_64, vcpus, d);
	if (!rc && (*vcpus == 0 || *vcpus > SQUIB_KVM_MAX_VCPUS))
		*vcpus = 1;
	return rc;
}

/* ---- the lazy backends: watch the memory while the guest runs ---- */

#define RESTORE_POLL_MS 100u

/*
 * The memory failed: the guest can never get the page it waits for. Stop it
 * for good (kicked, RAM revoked), then stop serving, which unregisters the
 * memory and so wakes a vCPU blocked on that page into the revoked RAM; it
 * leaves KVM_RUN without reading a zero page, and the VM can be freed.
 */
static int fail_on_memory_error(struct cli_vm *c, struct squib_guest_memory *g, int code,
				struct squib_error_detail *d)
{
	struct squib_error_detail why = *d, ignored;

	squib_kvm_vm_fail(c->vm, code, &why, &ignored);
	squib_guest_memory_release(g);
	squib_kvm_vm_wait_stopped(c->vm, CLI_GUEST_WAIT_MS, &ignored);
	*d = why;
	snprintf(d->msg, sizeof(d->msg), "the guest was stopped: %s: %.400s",
		 squib_guest_memory_backend(g) == SQUIB_BACKEND_UFFD
		     ? "the page-fault handler is gone"
		     : "the uffd pager failed",
		 why.msg);
	return code;
}

/* 0, or the memory's error (the VM then stopped for good). */
static int check_memory(struct cli_vm *c, struct squib_guest_memory *g,
			struct squib_error_detail *d)
{
	int rc = squib_guest_memory_error(g, d);

	return rc ? fail_on_memory_error(c, g, rc, d) : 0;
}

/* cli_vm_wait_reports in short slices, looking at the memory between them. */
static int wait_reports(struct cli_vm *c, struct squib_guest_memory *g, uint64_t reports,
			struct squib_error_detail *d)
{
	uint32_t n = squib_kvm_vm_vcpu_count(c->vm);
	int rc = 0;

	for (uint32_t i = 0; !rc && i < n; i++) {
		uint64_t want = cli_vm_reports(c, i) + reports;
		uint32_t waited = 0;

		do {
			int prc;

			rc = cli_vm_wait_until(c, i, want, RESTORE_POLL_MS, d);
			waited += RESTORE_POLL_MS;
			if (rc && (prc = check_memory(c, g, d)))
				return prc;
		} while (rc && waited < cli_vm_wait_ms(c));
	}
	if (rc)
		cli_vm_dump_stuck(c, "restore");
	return rc;
}

static void print_pager_stats(const struct squib_pager *p)
{
	struct squib_pager_stats s;

	squib_pager_stats(p, &s);
	printf("pager: %llu faults, %llu pages copied, %llu zeroed, %llu already there, "
	       "%llu prefetched, %llu filled, %llu bytes read, %llu of %llu pages present; "
	       "service median %.1f us, p99 %.1f us%s\n",
	       (unsigned long long)s.faults, (unsigned long long)s.pages_copied,
	       (unsigned long long)s.pages_zeroed, (unsigned long long)s.pages_existing,
	       (unsigned long long)s.pages_prefetched, (unsigned long long)s.pages_filled,
	       (unsigned long long)s.bytes_read, (unsigned long long)s.pages_present,
	       (unsigned long long)s.page_count, s.median_us, s.p99_us,
	       s.released ? "; released: every page present, memory unregistered" : "");
}

/* A Linux guest: the first console line after the resume, timed from the start. */
static int first_line(struct cli_vm *c, const struct restore_args *a, struct squib_guest_memory *g,
		      struct squib_error_detail *d)
{
	int rc;

	if (c->kind != CLI_GUEST_KIND_LINUX)
		return 0;
	if (!(rc = wait_reports(c, g, 1, d))) {
		printf("first console line %.1f ms after the restore began\n",
		       (double)(cli_now_ns() - a->start_ns) / 1e6);
		fflush(stdout);
	}
	return rc;
}

static int run_restored(struct cli_vm *c, const struct restore_args *a,
			struct squib_guest_memory *g, struct squib_error_detail *d)
{
	struct squib_error_detail pd;
	int rc = 0, prc;

	if (a->paused)
		printf("paused: the guest was not resumed\n");
	else if (!(rc = squib_vm_resume(&c->v, d)) && !(rc = first_line(c, a, g, d)) &&
		 !(rc = wait_reports(c, g, a->reports - (c->kind == CLI_GUEST_KIND_LINUX), d)))
		rc = squib_vm_pause(&c->v, 0, d);
	/* Whatever failed, a memory error explains it best, and a vCPU blocked on
	 * it must be released before the VM can be freed. */
	if ((prc = check_memory(c, g, &pd))) {
		*d = pd;
		return prc;
	}
	if (rc || a->paused)
		return rc;
	printf("resumed; after %u more reports per vCPU:\n", a->reports);
	cli_vm_print_counters(c, stdout);
	return 0;
}

/* --record-ws: the pages the guest faulted in, bound to the memory file. */
static int record_ws(const struct squib_guest_memory *g, const char *path,
		     struct squib_error_detail *d)
{
	struct squib_workset ws;
	int rc = squib_guest_memory_recorded(g, &ws, d);

	if (!rc && !(rc = squib_workset_write(path, &ws, d)))
		printf("recorded working set: %llu runs, %llu pages -> %s\n",
		       (unsigned long long)ws.run_count,
		       (unsigned long long)squib_workset_pages(&ws), path);
	squib_workset_free(&ws);
	return rc;
}

static void lazy_options(const struct restore_args *a, const struct squib_workset *ws,
			 struct squib_lazy_options *lz)
{
	memset(lz, 0, sizeof(*lz));
	lz->pager.record = a->record_ws != NULL;
	lz->pager.background_fill = a->background_fill;
	/* A fill that finishes ends the pager: the memory becomes ordinary memory. */
	lz->pager.release_when_complete = a->background_fill;
	lz->prefetch = a->prefetch_ws ? ws : NULL;
	lz->no_prewarm = a->no_prewarm;
	lz->uffd_socket = a->uffd_sock;
	lz->remote.handler_uids = a->handler_uid_count ? a->handler_uids : NULL;
	lz->remote.handler_uid_count = a->handler_uid_count;
	if (a->from.ref) /* serve --from fetches the image before it listens */
		lz->remote.connect_timeout_ms = 60000;
}

static void print_restored(struct cli_vm *c, const struct restore_args *a,
			   const struct squib_load_result *res)
{
	struct squib_guest_memory_stats gs;

	squib_guest_memory_stats(res->memory, &gs);
	printf("restored %s (%s backend, %u vCPUs) in %llu us\n",
	       a->from.ref ? a->from.ref : a->state, backend_name(a->backend),
	       squib_kvm_vm_vcpu_count(c->vm), (unsigned long long)(res->ns.total / 1000));
	if (a->backend == SQUIB_BACKEND_LAZY || a->backend == SQUIB_BACKEND_UFFD)
		printf("before the guest ran: %llu boot pages pre-warmed, %llu working-set pages "
		       "prefetched (%llu us)\n",
		       (unsigned long long)gs.pages_prewarmed,
		       (unsigned long long)gs.pages_prefetched,
		       (unsigned long long)(res->ns.prewarm / 1000));
	if (squib_guest_memory_remote(res->memory))
		printf("page-fault handler: pid %d\n",
		       squib_uffd_remote_peer_pid(squib_guest_memory_remote(res->memory)));
}

static int restore_vm(struct cli_vm *c, const struct restore_args *a,
		      const struct squib_workset *ws, struct squib_error_detail *d)
{
	struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(a->state, a->mem);
	struct squib_lazy_options lz;
	struct squib_load_result res;
	int rc;

	lazy_options(a, ws, &lz);
	req.backend = a->backend;
	req.chain = a->chain_len ? a->chain : NULL;
	req.chain_len = a->chain_len;
	req.stay_paused = true;
	req.lazy = &lz;
	rc = squib_load(&c->v, &req, &res, d);
	if (rc) {
		cli_vm_free(c);
		squib_guest_memory_free(res.memory);
		return rc;
	}
	print_restored(c, a, &res);
	cli_vm_print_counters(c, stdout);
	fflush(stdout); /* a script or a test waits for these lines while the guest runs */
	rc = run_restored(c, a, res.memory, d);
	if (squib_guest_memory_pager(res.memory))
		print_pager_stats(squib_guest_memory_pager(res.memory));
	if (!rc && a->record_ws)
		rc = record_ws(res.memory, a->record_ws, d);
	cli_vm_free(c);
	squib_load_result_free(&res);
	return rc;
}

static int restore_files(struct restore_args *a);

/* --from: a private state file and socket, the handler a `serve --from` child. */
static int restore_from(struct restore_args *a)
{
	struct squib_error_detail d;
	struct cli_from_restore r;
	int rc, code;

	memset(&d, 0, sizeof(d));
	if ((rc = cli_from_restore_start(&r, &a->from, a->prefetch_ws, a->record_ws, &d))) {
		cli_error("restore", a->from.ref, rc, &d);
		cli_from_restore_finish(&r, true);
		return cli_exit_code(rc);
	}
	a->state = r.state;
	a->uffd_sock = r.sock;
	a->prefetch_ws = a->record_ws = NULL; /* serve's */
	code = restore_files(a);
	if (cli_from_restore_finish(&r, code != CLI_EXIT_OK) && code == CLI_EXIT_OK) {
		fprintf(stderr, "squib-snapshot: restore: serve --from failed\n");
		code = CLI_EXIT_ERROR;
	}
	return code;
}

/* Restore the pair a names (the state, its memory file or handler); the exit code. */
static int restore_files(struct restore_args *a)
{
	struct squib_error_detail d;
	struct squib_workset ws = {0};
	struct cli_vm_shape shape;
	struct cli_vm c;
	char *mem_default = NULL;
	int rc;

	/* With an external handler the memory file is the handler's, unless named. */
	if (a->backend != SQUIB_BACKEND_UFFD &&
	    cli_mem_path("restore", a->state, &a->mem, &mem_default))
		return CLI_EXIT_ERROR;
	cli_state_shape(a->state, &shape); /* the guest's kind; check_pair sets the vCPUs */
	if ((rc = check_pair(a, &shape.vcpus, &d)))
		cli_error("restore", a->state, rc, &d);
	else if (a->prefetch_ws && (rc = squib_workset_read(a->prefetch_ws, &ws, &d)))
		cli_error("restore", a->prefetch_ws, rc, &d);
	else if ((shape.console_fd = cli_console_open(a->console)) < 0)
		rc = SQUIB_E_IO;
	else if ((rc = cli_vm_new(&c, &shape, &d)))
		cli_error("restore", NULL, rc, &d); /* the detail names /dev/kvm */
	else if ((rc = restore_vm(&c, a, &ws, &d)))
		cli_error("restore", a->from.ref ? a->from.ref : a->state, rc, &d);
	if (shape.console_fd > 2)
		close(shape.console_fd);
	squib_workset_free(&ws);
	free(mem_default);
	return cli_exit_code(rc);
}

static int restore_run(int argc, char **argv)
{
	struct restore_args a;

	if (parse_args(argc, argv, &a)) {
		restore_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	a.start_ns = cli_now_ns();
	return a.from.ref ? restore_from(&a) : restore_files(&a);
}

const struct cli_command cli_cmd_restore = {
    .name = "restore",
    .summary = "load a pair saved by run into a fresh KVM VM and let it run (or --paused)",
    .run = restore_run,
    .usage = restore_usage,
};
