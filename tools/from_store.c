/* SPDX-License-Identifier: Apache-2.0 */
/* `--from URL/ID` (serve, restore): an image in a snapshot store as the memory's source,
 * through the host's chunk cache (squib/store_source.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <squib/store.h>
#include <squib/store_source.h>

#include "cli.h"

#define CLI_MAX_CACHE_SIZE (1ull << 50)

int cli_from_option(const char *cmd, int argc, char **argv, int *i, struct cli_from *f)
{
	const char *v;
	char *end;
	int r;

	if ((r = cli_option_value(argc, argv, i, "--from", &f->ref)) ||
	    (r = cli_option_value(argc, argv, i, "--cache", &f->cache))) {
		if (r < 0)
			fprintf(stderr, "squib-snapshot: %s: %s needs a value\n", cmd, argv[*i]);
		return r;
	}
	if (!(r = cli_option_value(argc, argv, i, "--cache-size", &v)))
		return 0;
	errno = 0;
	if (r > 0)
		f->cache_size = strtoull(v, &end, 10);
	if (r < 0 || errno || end == v || *end || v[0] == '-' || f->cache_size < (1u << 20) ||
	    f->cache_size > CLI_MAX_CACHE_SIZE) {
		fprintf(stderr,
			"squib-snapshot: %s: --cache-size needs bytes from 1048576 to 2^50\n", cmd);
		return -1;
	}
	return 1;
}

int cli_from_open(const struct cli_from *f, struct squib_store **store,
		  struct squib_page_source *src, struct squib_store_source **ss,
		  struct squib_error_detail *d)
{
	struct squib_store_source_options o = {.cache_bytes = f->cache_size};
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	char *url = NULL, *cache = NULL;
	int rc;

	*store = NULL;
	if ((rc = squib_store_split_ref(f->ref, &url, id, d)))
		return rc;
	if (!f->cache)
		rc = squib_store_default_cache_dir(&cache, d);
	o.cache_dir = f->cache && !strcmp(f->cache, "none") ? NULL : f->cache ? f->cache : cache;
	if (!rc && !(rc = squib_store_open(url, NULL, store, d)) &&
	    (rc = squib_store_source_open(*store, id, &o, src, ss, d))) {
		squib_store_close(*store);
		*store = NULL;
	}
	free(url);
	free(cache);
	return rc;
}

void cli_from_print_stats(const struct squib_store_source *ss)
{
	struct squib_store_source_stats st;

	squib_store_source_stats(ss, &st);
	printf("store: %" PRIu64 " chunks fetched (%" PRIu64 " bytes), %" PRIu64
	       " from the cache, %" PRIu64 " cache entries refetched, %" PRIu64
	       " waits on a fetch in flight, %" PRIu64 " evicted\n",
	       st.chunks_fetched, st.bytes_fetched, st.cache_hits, st.cache_corrupt, st.waits,
	       st.cache_evicted);
	fflush(stdout);
}
