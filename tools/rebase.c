/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `squib-snapshot rebase --base MEM --diff MEM... [--out PATH] [--state STATE]`:
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
		"usage: squib-snapshot rebase --base MEM --diff MEM [--diff MEM ...] [--out PATH]\n"
		"                             [--state STATE] [--digests]\n"
		"                             [--progress | --no-progress]\n\n"
		"Applies the diffs, oldest first, onto the full memory file MEM given as --base.\n"
		"The result is a full memory file holding the newest copy of every page, with\n"
		"the newest diff's id, so that diff's state file pairs with it. Each diff's\n"
		"parent id must be the id of the file below it, and every layer must have the\n"
		"same page size and regions; every input is checked (digests included) before\n"
		"anything is written.\n\n"
		"  --base MEM      the full memory file at the bottom of the chain\n"
		"  --diff MEM      a diff memory file; repeat it, oldest first\n"
		"  --out PATH      write the result to PATH, atomically (PATH may be the base);\n"
		"                  the inputs are not modified. Without --out the base is\n"
		"                  rebased in place: never do that to a file a running VM maps\n"
		"  --state STATE   then rewrite STATE's memory section to describe the result\n"
		"                  (kind full, no parent, the merged manifest, the file size),\n"
		"                  atomically. STATE must describe the newest diff.\n"
		"  --digests       record a digest per extent in the result\n"
		"  --progress      always draw a progress bar on stderr\n"
		"  --no-progress   never draw it (default: on a terminal, for 64 MiB or more)\n\n"
		"exit status: 0 rebased; 2 an input's digest does not match its pages;\n"
		"             1 otherwise: wrong parent or geometry, unreadable input,\n"
		"               bad usage.\n");
}

struct rebase_args {
	const char *base;
	const char **diffs;
	size_t n;
	const char *out;
	const char *state;
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
	return 0;
}

/*
 * The state to rewrite must describe the newest diff: the rebased image keeps
 * that diff's id, and only that diff's state belongs with it. Checked before
 * anything is written.
 */
static int load_state(const struct rebase_args *a, struct squib_microvm_state *st)
{
	struct squib_memfile_manifest newest;
	struct squib_error_detail d;
	char want[33], have[33];
	int r = squib_state_load_file(a->state, SQUIB_ARCH_ANY, st, NULL, &d);

	if (r) {
		cli_error("rebase", a->state, r, &d);
		return -1;
	}
	if (!st->memory) {
		squib_fail_msg(&d, SQUIB_E_PAIR_MISMATCH,
			       "the state has no memory section, so nothing says it belongs with "
			       "the newest diff");
		cli_error("rebase", a->state, SQUIB_E_PAIR_MISMATCH, &d);
		return -1;
	}
	r = squib_memfile_verify(a->diffs[a->n - 1], false, &newest, &d);
	if (r) {
		cli_error("rebase", a->diffs[a->n - 1], r, &d);
		return -1;
	}
	squib_memfile_id_hex(st->memory->id, want);
	squib_memfile_id_hex(newest.layout.id, have);
	squib_memfile_manifest_release(&newest);
	if (strcmp(want, have)) {
		squib_fail_msg(&d, SQUIB_E_PAIR_MISMATCH,
			       "the state describes memory file %s, the newest diff is %s", want,
			       have);
		cli_error("rebase", a->state, SQUIB_E_PAIR_MISMATCH, &d);
		return -1;
	}
	return 0;
}

static int rewrite_state(const struct rebase_args *a, struct squib_microvm_state *st,
			 const struct squib_memfile_manifest *result)
{
	struct squib_error_detail d;
	int r = squib_state_set_memory(st, &result->layout, &d);

	if (!r)
		r = squib_state_save_file(a->state, st, &d);
	if (r) {
		cli_error("rebase", a->state, r, &d);
		fprintf(stderr, "squib-snapshot: rebase: the memory file was rebased, but the "
				"state file still describes the newest diff\n");
		return -1;
	}
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
	struct squib_memfile_rebase_options opts = {.digests = a->digests};
	struct squib_memfile_manifest result;
	struct squib_microvm_state st;
	struct squib_error_detail d;
	struct cli_progress bar;
	const struct squib_progress *progress;
	int r, status = CLI_EXIT_OK;

	squib_state_init(&st, SQUIB_ARCH_ANY);
	if (a->state && load_state(a, &st)) {
		squib_state_free(&st);
		return CLI_EXIT_ERROR;
	}
	progress = cli_progress_start(&bar, "rebase", a->progress);
	r = squib_memfile_rebase_ex(a->base, a->diffs, a->n, a->out, &opts, progress, &result, &d);
	cli_progress_end(&bar);
	if (r) {
		cli_error("rebase", NULL, r, &d);
		status = r == SQUIB_E_CRC_MISMATCH ? CLI_EXIT_INTEGRITY : CLI_EXIT_ERROR;
	} else if (a->state && rewrite_state(a, &st, &result)) {
		status = CLI_EXIT_ERROR;
	} else {
		print_result(a, &result);
	}
	squib_memfile_manifest_release(&result);
	squib_state_free(&st);
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
