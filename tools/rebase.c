/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `squib-snapshot rebase --base MEM --diff MEM... (--out PATH | --in-place) [--state STATE]`:
 * merge a chain of memory diffs into one full memory file.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/snapshot.h>

#include "cli.h"

static void rebase_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot rebase --base MEM --diff MEM [--diff MEM ...]\n"
		"                             (--out PATH | --in-place) [--state STATE]\n"
		"                             [--digests] [--progress | --no-progress]\n\n"
		"Applies the diffs, oldest first, onto the full memory file MEM given as --base.\n"
		"The result is a full memory file holding the newest copy of every page, with\n"
		"the newest diff's id, so that diff's state file pairs with it. Each diff's\n"
		"parent id must be the id of the file below it, and every layer must have the\n"
		"same page size and regions; every input is checked (digests included) before\n"
		"anything is written. One of --out and --in-place is required.\n\n"
		"  --base MEM      the full memory file at the bottom of the chain\n"
		"  --diff MEM      a diff memory file; repeat it, oldest first\n"
		"  --out PATH      write the result to PATH, atomically; PATH must not be one\n"
		"                  of the inputs (nor a link to one). The inputs are not\n"
		"                  modified\n"
		"  --in-place      rebase the base itself. The bytes about to be overwritten\n"
		"                  are first saved to MEM.undo (needs free space for the\n"
		"                  base's pages the diffs replace); a failure or a crash is\n"
		"                  rolled back from it (at once, or by the next load or\n"
		"                  rebase of MEM). Never do that to a file a running VM maps\n"
		"  --state STATE   publish STATE rewritten to describe the result (kind full,\n"
		"                  no parent, the merged manifest) as a pair with it: memory\n"
		"                  first, then state, as a save does; a crash in between is\n"
		"                  completed by the next load of the pair. STATE must\n"
		"                  describe the newest diff.\n"
		"  --digests       record a digest per extent in the result\n"
		"  --progress      always draw a progress bar on stderr\n"
		"  --no-progress   never draw it (default: on a terminal, for 64 MiB or more)\n\n"
		"exit status: 0 rebased; 2 an input's digest does not match its pages, or the\n"
		"             files do not belong together (a wrong parent or geometry, a\n"
		"             STATE that does not describe the newest diff); 1 otherwise:\n"
		"             unreadable input, bad usage.\n");
}

struct rebase_args {
	const char *base;
	const char **diffs;
	size_t n;
	const char *out;
	const char *state;
	bool in_place;
	bool digests;
	enum cli_progress_mode progress;
};

static int usage_error(const char *what, const char *arg)
{
	fprintf(stderr, "squib-snapshot: rebase: %s", what);
	if (arg) {
		fputs(" '", stderr);
		cli_put_text(stderr, arg);
		fputc('\'', stderr);
	}
	fputc('\n', stderr);
	return -1;
}

/* One path-valued option: 1 taken, 0 not this option, -1 error (reported). */
static int path_option(int argc, char **argv, int *i, const char *name, const char **slot,
		       bool once)
{
	const char *v = NULL;
	int r = cli_option_value(argc, argv, i, name, &v);

	if (r < 0)
		return usage_error("missing value for", name);
	if (!r)
		return 0;
	if (once && *slot)
		return usage_error("more than one", name);
	*slot = v;
	return 1;
}

static int parse_args(int argc, char **argv, struct rebase_args *a)
{
	memset(a, 0, sizeof(*a));
	a->diffs = calloc((size_t)argc, sizeof(*a->diffs));
	if (!a->diffs)
		return usage_error("out of memory", NULL);
	for (int i = 1; i < argc; i++) {
		const char *diff = NULL;
		int r;

		if ((r = path_option(argc, argv, &i, "--base", &a->base, true)) ||
		    (r = path_option(argc, argv, &i, "--out", &a->out, true)) ||
		    (r = path_option(argc, argv, &i, "--state", &a->state, true)) ||
		    (r = path_option(argc, argv, &i, "--diff", &diff, false))) {
			if (r < 0)
				return -1;
			if (diff)
				a->diffs[a->n++] = diff;
		} else if (!strcmp(argv[i], "--digests")) {
			a->digests = true;
		} else if (!strcmp(argv[i], "--in-place")) {
			a->in_place = true;
		} else if (!cli_progress_option(argv[i], &a->progress)) {
			return usage_error(argv[i][0] == '-' ? "unknown option"
							       : "unexpected argument",
					   argv[i]);
		}
	}
	if (!a->base)
		return usage_error("missing --base", NULL);
	if (!a->n)
		return usage_error("missing --diff", NULL);
	if (!a->out && !a->in_place)
		return usage_error("missing --out PATH or --in-place", NULL);
	if (a->out && a->in_place)
		return usage_error("--out and --in-place exclude each other", NULL);
	return 0;
}

static void print_result(const struct rebase_args *a, const struct squib_memfile_manifest *m)
{
	const struct squib_memory_layout *l = &m->layout;
	char id[33];

	squib_memfile_id_hex(l->id, id);
	cli_put_text(stdout, a->out ? a->out : a->base);
	printf(": full, id %s, %llu present pages (%llu bytes), file %llu bytes%s\n", id,
	       (unsigned long long)l->present_pages,
	       (unsigned long long)(l->present_pages * l->page_size),
	       (unsigned long long)l->file_size,
	       (m->flags & SQUIB_MEMFILE_FLAG_DIGESTS) ? ", digests" : "");
	if (a->state) {
		cli_put_text(stdout, a->state);
		fputs(": memory section updated\n", stdout);
	}
}

static int rebase_chain(const struct rebase_args *a)
{
	struct squib_memfile_rebase_options opts = {.digests = a->digests, .state_path = a->state};
	struct squib_memfile_manifest result;
	struct squib_error_detail d;
	struct cli_progress bar;
	const struct squib_progress *progress;
	int r, status = CLI_EXIT_OK;

	progress = cli_progress_start(&bar, "rebase", a->progress);
	r = squib_memfile_rebase_ex(a->base, a->diffs, a->n, a->out, &opts, progress, &result, &d);
	cli_progress_end(&bar);
	if (r) {
		cli_error("rebase", NULL, r, &d);
		status = cli_exit_code(r);
	} else {
		print_result(a, &result);
	}
	squib_memfile_manifest_release(&result);
	if (status == CLI_EXIT_OK && (fflush(stdout) || ferror(stdout))) {
		squib_fail_errno(&d, SQUIB_E_IO, errno);
		cli_error("rebase", "stdout", SQUIB_E_IO, &d);
		status = CLI_EXIT_ERROR;
	}
	return status;
}

static int rebase_run(int argc, char **argv)
{
	struct rebase_args a;
	int status;

	if (parse_args(argc, argv, &a)) {
		free(a.diffs);
		rebase_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	status = rebase_chain(&a);
	free(a.diffs);
	return status;
}

const struct cli_command cli_cmd_rebase = {
	.name = "rebase",
	.summary = "merge memory diffs into their full base (and update a state file)",
	.run = rebase_run,
	.usage = rebase_usage,
};
