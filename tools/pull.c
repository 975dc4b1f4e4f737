/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot pull URL DIR`: an image of a snapshot store back into ordinary pairs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/snapshot.h>

#include "cli.h"

static void pull_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot pull URL DIR [--workers N] [--progress | --no-progress]\n\n"
		"Materialises the image at URL (the store's URL followed by /ID, as `push`\n"
		"prints it) as an ordinary pair in DIR: DIR/ID.snap and DIR/ID.mem, byte for\n"
		"byte the pushed files. A Diff brings its chain (one pair per image, the full\n"
		"base first). Every chunk is checked against its SHA-256 name; each pair is\n"
		"published as a save publishes one (memory, then state; crash-safe). Pairs\n"
		"already in DIR that pair with their image are kept. Prints the state files,\n"
		"oldest first; `verify` accepts them and `restore` loads them (a Diff with\n"
		"--chain DIR/BASE.mem ...).\n\n"
		"  --workers N     parallel downloads (default 8)\n"
		"  --progress      always draw a progress bar on stderr\n"
		"  --no-progress   never draw it (default: on a terminal, for 64 MiB or more)\n\n"
		"exit status: 0 pulled; 2 a chunk or image fails its check (hash, CRC), or the\n"
		"             state does not describe the image; 1 otherwise.\n");
}

/* "STORE/ID" into the store URL (malloc'd) and the id. */
static int split_url(const char *url, char **store, uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	const char *slash = strrchr(url, '/');

	if (!slash || slash == url || squib_store_parse_id(slash + 1, id))
		return -1;
	*store = strndup(url, (size_t)(slash - url));
	return *store ? 0 : -1;
}

static int print_chain(struct squib_store *s, const uint8_t *id, const char *dir)
{
	struct squib_store_image im;
	char hex[33];

	if (squib_store_image_get(s, id, &im, NULL))
		return -1;
	if (im.manifest.layout.kind == SQUIB_MEMORY_DIFF)
		print_chain(s, im.manifest.layout.parent_id, dir);
	squib_memfile_id_hex(id, hex);
	cli_put_text(stdout, dir);
	printf("/%s.snap (%s)\n", hex,
	       im.manifest.layout.kind == SQUIB_MEMORY_DIFF ? "diff" : "full");
	squib_store_image_release(&im);
	return 0;
}

static int pull_run(int argc, char **argv)
{
	struct squib_store_options o = {0};
	const char *url = NULL, *dir = NULL, *v;
	enum cli_progress_mode pm = CLI_PROGRESS_AUTO;
	struct squib_store_pull_stats st;
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	struct squib_error_detail d;
	struct squib_store *s = NULL;
	char *store = NULL, *state = NULL;
	struct cli_progress bar;
	int r;

	for (int i = 1; i < argc; i++) {
		if ((r = cli_option_value(argc, argv, &i, "--workers", &v))) {
			if (r < 0 || cli_parse_count(v, 1, 256, &o.workers))
				url = dir = NULL, i = argc;
		} else if (!cli_progress_option(argv[i], &pm)) {
			if (!url)
				url = argv[i];
			else if (!dir)
				dir = argv[i];
			else
				url = NULL;
		}
	}
	if (!url || !dir || split_url(url, &store, id)) {
		fprintf(stderr,
			"squib-snapshot: pull: expected URL (STORE/ID, 32 hex digits) and DIR\n");
		pull_usage(stderr);
		free(store);
		return CLI_EXIT_ERROR;
	}
	if (!(r = squib_store_open(store, &o, &s, &d))) {
		r = squib_store_pull(s, id, dir, cli_progress_start(&bar, "pull", pm), &st, &state,
				     &d);
		cli_progress_end(&bar);
	}
	if (r) {
		cli_error("pull", url, r, &d);
	} else {
		print_chain(s, id, dir);
		printf(
		    "images: %llu pulled; chunks: %llu fetched (%llu bytes), %llu bytes of pages "
		    "written\n",
		    (unsigned long long)st.images, (unsigned long long)st.chunks_fetched,
		    (unsigned long long)st.bytes_fetched, (unsigned long long)st.bytes_written);
	}
	squib_store_close(s);
	free(store);
	free(state);
	return cli_exit_code(r);
}

const struct cli_command cli_cmd_pull = {
    .name = "pull",
    .summary = "materialise an image of a snapshot store as pairs in a directory",
    .run = pull_run,
    .usage = pull_usage,
};
