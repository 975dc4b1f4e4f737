/* SPDX-License-Identifier: Apache-2.0 */
/* `squib-snapshot store ls|gc URL`: list a snapshot store's images; collect its garbage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/snapshot.h>

#include "cli.h"

static void store_usage(FILE *out)
{
	fprintf(out,
		"usage: squib-snapshot store ls URL\n"
		"       squib-snapshot store gc URL [--dry-run]\n\n"
		"ls   one line per image: its id, kind (and parent), RAM and present bytes, and\n"
		"     how many chunks it maps (and of those, how many are zero and how many\n"
		"     are deltas against another chunk).\n"
		"gc   removes every chunk (plain or delta) no image maps, keeping the bases of\n"
		"     the deltas images map. It announces itself (gc/<random>) and\n"
		"     refuses to run while a push holds a lease (leases/<random>); a push\n"
		"     waits while a gc runs (docs/DESIGN.md, \"Snapshot store\"). Leases and\n"
		"     gc markers untouched for an hour are taken for dead and removed.\n"
		"     --dry-run counts what it would remove.\n\n"
		"exit status: 0 done; 2 an image fails its check; 1 otherwise (BUSY included).\n");
}

struct ls_ctx {
	struct squib_store *s;
	struct squib_error_detail *d;
};

static int ls_one(void *arg, const uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	struct ls_ctx *c = arg;
	struct squib_store_image im;
	uint64_t zero = 0, delta = 0;
	char hex[33], parent[33];
	int r;

	if ((r = squib_store_image_get(c->s, id, &im, c->d)))
		return r;
	for (uint64_t k = 0; k < im.chunk_count; k++) {
		zero += squib_store_hash_is_zero(&im.chunks[k]);
		delta += im.bases && !squib_store_hash_is_zero(&im.bases[k]);
	}
	squib_memfile_id_hex(id, hex);
	squib_memfile_id_hex(im.manifest.layout.parent_id, parent);
	printf(
	    "%s %s%s%s ram %llu present %llu chunks %llu (%llu zero, %llu delta) of %u KiB\n", hex,
	    im.manifest.layout.kind == SQUIB_MEMORY_DIFF ? "diff parent " : "full",
	    im.manifest.layout.kind == SQUIB_MEMORY_DIFF ? parent : "", "",
	    (unsigned long long)im.manifest.layout.ram_size,
	    (unsigned long long)(im.manifest.layout.present_pages * im.manifest.layout.page_size),
	    (unsigned long long)im.chunk_count, (unsigned long long)zero, (unsigned long long)delta,
	    (1u << im.chunk_shift) >> 10);
	squib_store_image_release(&im);
	return 0;
}

static int store_gc(struct squib_store *s, bool dry, struct squib_error_detail *d)
{
	struct squib_store_gc_stats st;
	int r = squib_store_gc(s, dry, &st, d);

	if (!r)
		printf("images %llu, live chunks %llu, %s %llu chunks (%llu bytes), stale "
		       "leases removed %llu, partial objects removed %llu\n",
		       (unsigned long long)st.images, (unsigned long long)st.chunks_live,
		       dry ? "would remove" : "removed", (unsigned long long)st.chunks_deleted,
		       (unsigned long long)st.bytes_deleted, (unsigned long long)st.leases_expired,
		       (unsigned long long)st.partial_deleted);
	return r;
}

static int store_run(int argc, char **argv)
{
	const char *verb = argc > 1 ? argv[1] : NULL, *url = argc > 2 ? argv[2] : NULL;
	bool dry = argc == 4 && !strcmp(argv[3], "--dry-run");
	struct squib_error_detail d;
	struct squib_store *s;
	int r;

	if (!verb || !url || (strcmp(verb, "ls") && strcmp(verb, "gc")) ||
	    argc > (strcmp(verb, "gc") ? 3 : 4) || (argc == 4 && !dry)) {
		fprintf(stderr, "squib-snapshot: store: bad usage\n");
		store_usage(stderr);
		return CLI_EXIT_ERROR;
	}
	if (!(r = squib_store_open(url, NULL, &s, &d))) {
		struct ls_ctx c = {s, &d};

		r = !strcmp(verb, "ls") ? squib_store_images(s, ls_one, &c, &d)
					: store_gc(s, dry, &d);
		squib_store_close(s);
	}
	if (r)
		cli_error("store", url, r, &d);
	if (!r && (fflush(stdout) || ferror(stdout)))
		r = SQUIB_E_IO;
	return cli_exit_code(r);
}

const struct cli_command cli_cmd_store = {
    .name = "store",
    .summary = "list a snapshot store's images (ls), remove unused chunks (gc)",
    .run = store_run,
    .usage = store_usage,
};
