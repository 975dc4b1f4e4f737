/* SPDX-License-Identifier: Apache-2.0 */
/* `--from URL/ID` (serve, restore): an image in a snapshot store as the memory's source,
 * through the host's chunk cache (squib/store_source.h). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squib/load.h>

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

/* ---- restore --from: the state fetched, a `serve --from` child as the handler ---- */

/* images/<id>.state into path, checked to describe image id. */
static int fetch_state(struct squib_store *s, const uint8_t *id, const char *path,
		       struct squib_error_detail *d)
{
	char hex[2 * SQUIB_MEMORY_ID_SIZE + 1], key[96];
	struct squib_microvm_state st;
	uint8_t *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	squib_memfile_id_hex(id, hex);
	snprintf(key, sizeof(key), "images/%s.state", hex);
	if ((rc = squib_store_get(s, key, 256u << 20, &buf, &len, d)))
		return rc;
	if (!(f = fopen(path, "wbx")) || fwrite(buf, 1, len, f) != len || fclose(f)) {
		free(buf);
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "writing %.300s", path);
	}
	free(buf);
	if ((rc = squib_load_state_only(path, SQUIB_ARCH_ANY, &st, NULL, d)))
		return rc;
	if (!st.memory || memcmp(st.memory->id, id, SQUIB_MEMORY_ID_SIZE))
		rc = squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH, "%s does not describe image %s", key,
				    hex);
	squib_state_free(&st);
	return rc;
}

static int spawn_serve(struct cli_from_restore *r, const struct cli_from *f, const char *prefetch,
		       const char *record, struct squib_error_detail *d)
{
	char size[32],
	    *argv[16] = {"/proc/self/exe", "serve", "--socket", r->sock, "--from", (char *)f->ref};
	int n = 6, e;

	snprintf(size, sizeof(size), "%" PRIu64, f->cache_size);
	if (f->cache) {
		argv[n++] = "--cache";
		argv[n++] = (char *)f->cache;
	}
	if (f->cache_size) {
		argv[n++] = "--cache-size";
		argv[n++] = size;
	}
	if (prefetch) {
		argv[n++] = "--prefetch-ws";
		argv[n++] = (char *)prefetch;
	}
	if (record) {
		argv[n++] = "--record-ws";
		argv[n++] = (char *)record;
	}
	argv[n] = NULL;
	fflush(stdout);
	if ((e = posix_spawn(&r->pid, argv[0], NULL, NULL, argv, environ)))
		return squib_fail_errno_msg(d, SQUIB_E_IO, e, "starting serve --from: %s",
					    strerror(e));
	return 0;
}

int cli_from_restore_start(struct cli_from_restore *r, const struct cli_from *f,
			   const char *prefetch, const char *record, struct squib_error_detail *d)
{
	const char *tmp = getenv("TMPDIR");
	struct squib_store *s = NULL;
	uint8_t id[SQUIB_MEMORY_ID_SIZE];
	char *url = NULL;
	int rc;

	memset(r, 0, sizeof(*r));
	r->pid = -1;
	if (asprintf(&r->dir, "%s/squib-from.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
		return squib_fail(d, SQUIB_E_NOMEM);
	if (!mkdtemp(r->dir))
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "mkdtemp %.300s", r->dir);
	if (asprintf(&r->state, "%s/state", r->dir) < 0 ||
	    asprintf(&r->sock, "%s/sock", r->dir) < 0)
		return squib_fail(d, SQUIB_E_NOMEM);
	if (!(rc = squib_store_split_ref(f->ref, &url, id, d)) &&
	    !(rc = squib_store_open(url, NULL, &s, d)) && !(rc = fetch_state(s, id, r->state, d)))
		rc = spawn_serve(r, f, prefetch, record, d);
	squib_store_close(s);
	free(url);
	return rc;
}

int cli_from_restore_finish(struct cli_from_restore *r, bool failed)
{
	int st = 0, bad = 0;

	if (r->pid > 0) {
		/* A restore that failed before its VMM connected leaves serve waiting. */
		if (failed)
			kill(r->pid, SIGTERM);
		while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR)
			;
		bad = !(WIFEXITED(st) && !WEXITSTATUS(st));
	}
	if (r->state)
		unlink(r->state);
	if (r->sock)
		unlink(r->sock);
	if (r->dir)
		rmdir(r->dir);
	free(r->state);
	free(r->sock);
	free(r->dir);
	memset(r, 0, sizeof(*r));
	return bad;
}
