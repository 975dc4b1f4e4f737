/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot verify STATE [--mem PATH]`: check a snapshot pair, one line per check. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/snapshot.h>

#include "cli.h"

/* Column where each check's result starts ("state structure: " is the longest label). */
#define VERIFY_VALUE_COLUMN 18

static void verify_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot verify STATE [--mem PATH] [--no-digests] [--json]\n"
		"                             [--progress | --no-progress]\n\n"
		"Checks a snapshot pair without restoring it and prints one line per check:\n"
		"\"ok\", \"FAIL: reason\" or \"skipped: reason\".\n\n"
		"  state file, state crc, state magic, state version, state structure,\n"
		"  compatibility      the state file: readable, CRC, magic, version, content,\n"
		"                     restorable (vCPU count, GIC, smt)\n"
		"  memory file, memory footer, memory manifest, manifest bounds\n"
		"                     the memory file: opens, footer and manifest intact,\n"
		"                     every extent inside the RAM range and the file's size\n"
		"  pair binding       the state's memory section (id, kind, parent, geometry,\n"
		"                     extents) is what the memory file holds\n"
		"  extent digests     the pages against their digests, when the file has them\n\n"
		"A state without a memory section skips the memory checks (not a failure),\n"
		"unless --mem names a memory file: that fails the memory file check (the\n"
		"file cannot be checked against the state).\n\n"
		"  --mem PATH      the memory file (default: STATE with its last extension\n"
		"                  replaced by .mem, as describe shows it); never ignored\n"
		"  --json          print the report as a JSON object: state_path, memory_path,\n"
		"                  checks (name, status ok|skipped|failed|corrupt, code,\n"
		"                  detail) and result; a failure to verify at all prints\n"
		"                  {\"error\": {...}} as describe --json does\n"
		"  --no-digests    do not read the pages to check their digests\n"
		"  --progress      always draw a progress bar on stderr while checking digests\n"
		"  --no-progress   never draw it (default: on a terminal, for 64 MiB or more)\n\n"
		"exit status: 0 every check ok or skipped;\n"
		"             2 an integrity failure: a CRC or digest that does not match, or a\n"
		"               memory file that is not the state's (pair binding);\n"
		"             1 otherwise: unreadable, missing or malformed input, bad usage.\n");
}

struct verify_args {
	const char *state;
	int json;
	struct squib_verify_options opts;
	enum cli_progress_mode progress;
};

static int parse_args(int argc, char **argv, struct verify_args *a)
{
	int options = 1;

	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		int r = 0;

		if (options && !strcmp(argv[i], "--")) {
			options = 0;
			continue;
		}
		if (options &&
		    (r = cli_option_value(argc, argv, &i, "--mem", &a->opts.memory_path))) {
			if (r < 0) {
				fprintf(stderr, "squib-snapshot: verify: --mem needs a PATH\n");
				return -1;
			}
		} else if (options && !strcmp(argv[i], "--json")) {
			a->json = 1;
		} else if (options && !strcmp(argv[i], "--no-digests")) {
			a->opts.skip_digests = true;
		} else if (options && cli_progress_option(argv[i], &a->progress)) {
			continue;
		} else if (options && argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "squib-snapshot: verify: unknown option '%s'\n", argv[i]);
			return -1;
		} else if (a->state) {
			fprintf(stderr, "squib-snapshot: verify: more than one STATE\n");
			return -1;
		} else {
			a->state = argv[i];
		}
	}
	if (!a->state)
		fprintf(stderr, "squib-snapshot: verify: missing STATE\n");
	return a->state ? 0 : -1;
}

/* "name:" padded to the value column, then ok [(note)] / FAIL: reason / skipped: reason. */
static void print_check(enum squib_check_id id, const struct squib_check_result *c)
{
	int n = printf("%s:", squib_check_name(id));

	printf("%*s%s", n > 0 && n < VERIFY_VALUE_COLUMN ? VERIFY_VALUE_COLUMN - n : 1, "",
	       squib_check_status_name(c->status));
	if (c->detail) {
		fputs(c->status == SQUIB_CHECK_OK ? " (" : ": ", stdout);
		cli_put_text(stdout, c->detail);
		if (c->status == SQUIB_CHECK_OK)
			fputc(')', stdout);
	}
	fputc('\n', stdout);
}

/* One line per check, or the JSON object. */
static int print_report(const struct verify_args *a, const struct squib_verify_report *report,
			struct squib_error_detail *d)
{
	char *text = NULL;
	int r;

	if (!a->json) {
		for (int id = 0; id < SQUIB_CHECK_COUNT; id++)
			print_check(id, &report->checks[id]);
	} else if ((r = squib_verify_report_json(a->state, report, &text))) {
		return squib_fail(d, r);
	} else {
		puts(text);
		free(text);
	}
	return fflush(stdout) || ferror(stdout) ? squib_fail_errno(d, SQUIB_E_IO, errno) : 0;
}

static int verify_run(int argc, char **argv)
{
	struct squib_verify_report report;
	struct squib_error_detail d;
	struct cli_progress bar;
	struct verify_args a;
	enum squib_check_status worst;
	int r;

	if (parse_args(argc, argv, &a)) {
		verify_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	a.opts.progress = cli_progress_start(&bar, "digests", a.progress);
	r = squib_verify(a.state, &a.opts, &report, &d);
	cli_progress_end(&bar);
	if (r)
		return cli_fail("verify", a.state, a.json, r, &d);
	r = print_report(&a, &report, &d);
	worst = squib_verify_worst(&report);
	squib_verify_report_free(&report);
	if (r)
		return cli_fail("verify", "stdout", 0, r, &d);
	return worst == SQUIB_CHECK_CORRUPT  ? CLI_EXIT_INTEGRITY
	       : worst == SQUIB_CHECK_FAILED ? CLI_EXIT_ERROR
					     : CLI_EXIT_OK;
}

const struct cli_command cli_cmd_verify = {
	.name = "verify",
	.summary = "check a snapshot pair: CRCs, pair binding, digests (exit 2 if corrupt)",
	.run = verify_run,
	.usage = verify_usage,
};
