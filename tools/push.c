/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot push STATE --to URL`: a pair (and a Diff's chain) into a snapshot store. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/snapshot.h>

#include "cli.h"

#define PUSH_MAX_CHAIN 256

static void push_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot push STATE --to URL [--mem MEM] [--chain STATE ...]\n"
		"                           [--workers N] [--progress | --no-progress]\n\n"
		"Uploads the pair STATE + MEM into the snapshot store at URL as an image named\n"
		"by the memory file's id: its memory in content-addressed chunks (zstd, named\n"
		"by their SHA-256; zero chunks and chunks the store has are not uploaded), its\n"
		"state file beside it. A Diff is pushed with its chain: give the older pairs'\n"
		"state files with --chain, the full base first (their memory files are STATE\n"
		"with .mem); images already in the store are not pushed again. Prints the\n"
		"image's URL, which `pull` takes.\n\n"
		"  --to URL        s3://BUCKET/PREFIX (AWS_ENDPOINT_URL, AWS_REGION,\n"
		"                  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), file:///DIR or DIR\n"
		"  --mem MEM       the memory file (default: STATE with .mem)\n"
		"  --chain STATE   an older pair of a Diff; repeat it, oldest (the full) first\n"
		"  --workers N     parallel uploads (default 8)\n"
		"  --progress      always draw a progress bar on stderr\n"
		"  --no-progress   never draw it (default: on a terminal, for 64 MiB or more)\n\n"
		"exit status: 0 pushed; 2 an input fails an integrity check (CRC, digest, pair\n"
		"             binding); 1 otherwise: bad usage, unreadable input, the store.\n");
}

struct push_args {
	const char *state, *mem, *to;
	const char *chain[PUSH_MAX_CHAIN];
	size_t n;
	uint32_t workers;
	enum cli_progress_mode progress;
};

static int push_parse(int argc, char **argv, struct push_args *a)
{
	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		const char *v = NULL;
		int r;

		if ((r = cli_option_value(argc, argv, &i, "--to", &a->to)) ||
		    (r = cli_option_value(argc, argv, &i, "--mem", &a->mem))) {
			if (r < 0)
				return -1;
		} else if ((r = cli_option_value(argc, argv, &i, "--chain", &v))) {
			if (r < 0 || a->n == PUSH_MAX_CHAIN)
				return -1;
			a->chain[a->n++] = v;
		} else if ((r = cli_option_value(argc, argv, &i, "--workers", &v))) {
			if (r < 0 || cli_parse_count(v, 1, 256, &a->workers))
				return -1;
		} else if (cli_progress_option(argv[i], &a->progress)) {
			continue;
		} else if (argv[i][0] == '-' || a->state) {
			return -1;
		} else {
			a->state = argv[i];
		}
	}
	return a->state && a->to ? 0 : -1;
}

static void print_push(const struct push_args *a, const char *mem,
		       const struct squib_store_push_stats *st)
{
	struct squib_memfile_manifest m;
	char id[33];

	if (!squib_memfile_verify(mem, false, &m, NULL)) {
		squib_memfile_id_hex(m.layout.id, id);
		cli_put_text(stdout, a->to);
		printf("/%s\n", id);
		squib_memfile_manifest_release(&m);
	}
	printf("images: %llu pushed, %llu already there; chunks: %llu mapped, %llu zero, %llu "
	       "found in the store, %llu uploaded (%llu bytes compressed from %llu present)\n",
	       (unsigned long long)st->images_put, (unsigned long long)st->images_skipped,
	       (unsigned long long)st->chunks, (unsigned long long)st->chunks_zero,
	       (unsigned long long)st->chunks_reused, (unsigned long long)st->chunks_put,
	       (unsigned long long)st->bytes_put, (unsigned long long)st->bytes_present);
}

static int push_run(int argc, char **argv)
{
	struct squib_store_options o = {0};
	struct squib_store_push_stats st;
	struct squib_error_detail d;
	struct squib_store *s = NULL;
	struct cli_progress bar;
	struct push_args a;
	char *mem = NULL;
	int r;

	if (push_parse(argc, argv, &a)) {
		fprintf(stderr, "squib-snapshot: push: bad usage\n");
		push_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	o.workers = a.workers;
	if (cli_mem_path("push", a.state, &a.mem, &mem))
		return CLI_EXIT_ERROR;
	if ((r = squib_store_open(a.to, &o, &s, &d))) {
		cli_error("push", a.to, r, &d);
		free(mem);
		return cli_exit_code(r);
	}
	r = squib_store_push(s, a.state, a.mem, a.chain, NULL, a.n,
			     cli_progress_start(&bar, "push", a.progress), &st, &d);
	cli_progress_end(&bar);
	if (r)
		cli_error("push", a.state, r, &d);
	else
		print_push(&a, a.mem, &st);
	squib_store_close(s);
	free(mem);
	return cli_exit_code(r);
}

const struct cli_command cli_cmd_push = {
    .name = "push",
    .summary = "upload a pair (and a Diff's chain) into a snapshot store",
    .run = push_run,
    .usage = push_usage,
};
