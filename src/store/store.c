/* SPDX-License-Identifier: Apache-2.0 */
/* Store URLs, the dispatch to a backend, object names. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <squib/store.h>

#include "../memlayout.h"
#include "../util.h"
#include "store_internal.h"

static void fill_defaults(struct squib_store_options *o)
{
	if (!o->workers)
		o->workers = 8;
	if (!o->retries)
		o->retries = 4;
	if (!o->backoff_ms)
		o->backoff_ms = 100;
	if (!o->timeout_ms)
		o->timeout_ms = 60000;
	if (!o->zstd_level)
		o->zstd_level = SQUIB_STORE_DEFAULT_ZSTD_LEVEL;
	if (!o->chunk_shift)
		o->chunk_shift = SQUIB_STORE_DEFAULT_CHUNK_SHIFT;
	if (!o->multipart_bytes)
		o->multipart_bytes = 64ull << 20;
}

static int check_options(const struct squib_store_options *o, struct squib_error_detail *d)
{
	if (o->workers > 256 || o->retries > 100)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "store: workers %" PRIu32 " (at most 256), retries %" PRIu32
				      " (at most 100)",
				      o->workers, o->retries);
	if (o->chunk_shift < SQUIB_STORE_MIN_CHUNK_SHIFT ||
	    o->chunk_shift > SQUIB_STORE_MAX_CHUNK_SHIFT)
		return squib_fail_msg(
		    d, SQUIB_E_INVALID_ARGUMENT, "store: chunk shift %" PRIu32 " not in %u..%u",
		    o->chunk_shift, SQUIB_STORE_MIN_CHUNK_SHIFT, SQUIB_STORE_MAX_CHUNK_SHIFT);
	if (o->multipart_bytes < (5ull << 20))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "store: multipart parts of %" PRIu64
				      " bytes (S3's minimum is 5 MiB)",
				      o->multipart_bytes);
	if (o->zstd_level < -7 || o->zstd_level > 19)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "store: zstd level %d",
				      o->zstd_level);
	return 0;
}

/* "s3://BUCKET/PREFIX": bucket and prefix (without leading or trailing '/'). */
static int open_s3(struct squib_store *s, const char *rest, struct squib_error_detail *d)
{
	const char *slash = strchr(rest, '/');
	size_t blen = slash ? (size_t)(slash - rest) : strlen(rest);
	char *bucket = strndup(rest, blen), *prefix;
	int r;

	prefix = strdup(slash ? slash + 1 : "");
	if (!bucket || !prefix) {
		free(bucket);
		free(prefix);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	for (size_t n = strlen(prefix); n && prefix[n - 1] == '/'; n--)
		prefix[n - 1] = '\0';
	if (!blen || strspn(bucket, "abcdefghijklmnopqrstuvwxyz0123456789.-") != blen ||
	    (prefix[0] && !squib_store_key_ok(prefix)))
		r = squib_fail_msg(d, SQUIB_E_INVALID_PATH,
				   "store URL %s: expected s3://BUCKET/PREFIX", s->url);
	else
		r = squib_store_s3_open(bucket, prefix, &s->opts, &s->be, d);
	s->ops = &squib_store_s3_ops;
	free(bucket);
	free(prefix);
	return r;
}

static int open_backend(struct squib_store *s, const char *url, struct squib_error_detail *d)
{
	if (!strncmp(url, "s3://", 5))
		return open_s3(s, url + 5, d);
	s->ops = &squib_store_dir_ops;
	if (!strncmp(url, "file://", 7)) {
		if (url[7] != '/')
			return squib_fail_msg(d, SQUIB_E_INVALID_PATH,
					      "store URL %s: expected file:///ABSOLUTE/PATH", url);
		return squib_store_dir_open(url + 7, &s->be, d);
	}
	if (strstr(url, "://"))
		return squib_fail_msg(
		    d, SQUIB_E_INVALID_PATH,
		    "store URL %s: unknown scheme (s3://, file:// or a directory)", url);
	return squib_store_dir_open(url, &s->be, d);
}

int squib_store_open(const char *url, const struct squib_store_options *opts,
		     struct squib_store **out, struct squib_error_detail *d)
{
	struct squib_store *s;
	int r;

	*out = NULL;
	if (!url || !*url)
		return squib_fail_msg(d, SQUIB_E_INVALID_PATH, "empty store URL");
	if (!(s = calloc(1, sizeof(*s))) || !(s->url = strdup(url))) {
		free(s);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	if (opts)
		s->opts = *opts;
	fill_defaults(&s->opts);
	if ((r = check_options(&s->opts, d)) || (r = open_backend(s, url, d))) {
		s->be = NULL;
		squib_store_close(s);
		return r;
	}
	*out = s;
	return 0;
}

void squib_store_close(struct squib_store *s)
{
	if (!s)
		return;
	if (s->be)
		s->ops->close(s->be);
	free(s->url);
	free(s);
}

const char *squib_store_url(const struct squib_store *s)
{
	return s->url;
}

bool squib_store_key_ok(const char *key)
{
	if (!key[0] || key[0] == '/' || strstr(key, "..") || strstr(key, "//"))
		return false;
	for (const char *p = key; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/",
			    *p))
			return false;
	return true;
}

static int bad_key(const char *key, struct squib_error_detail *d)
{
	return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "store: bad object key '%.80s'", key);
}

int squib_store_put(struct squib_store *s, const char *key, const void *buf, size_t len,
		    struct squib_error_detail *d)
{
	return squib_store_key_ok(key) ? s->ops->put(s->be, key, buf, len, d) : bad_key(key, d);
}

int squib_store_get(struct squib_store *s, const char *key, size_t max_len, uint8_t **buf,
		    size_t *len, struct squib_error_detail *d)
{
	*buf = NULL;
	*len = 0;
	return squib_store_key_ok(key) ? s->ops->get(s->be, key, max_len, buf, len, d)
				       : bad_key(key, d);
}

int squib_store_get_range(struct squib_store *s, const char *key, uint64_t off, size_t len,
			  void *buf, struct squib_error_detail *d)
{
	if (!len)
		return 0;
	return squib_store_key_ok(key) ? s->ops->get_range(s->be, key, off, len, buf, d)
				       : bad_key(key, d);
}

int squib_store_head(struct squib_store *s, const char *key, bool *exists, uint64_t *size,
		     int64_t *mtime, struct squib_error_detail *d)
{
	uint64_t sz = 0;
	int64_t mt = 0;
	int r;

	*exists = false;
	if (!squib_store_key_ok(key))
		return bad_key(key, d);
	r = s->ops->head(s->be, key, exists, &sz, &mt, d);
	if (size)
		*size = sz;
	if (mtime)
		*mtime = mt;
	return r;
}

int squib_store_list(struct squib_store *s, const char *prefix, squib_store_list_fn fn, void *ctx,
		     struct squib_error_detail *d)
{
	if (prefix[0] && !squib_store_key_ok(prefix))
		return bad_key(prefix, d);
	return s->ops->list(s->be, prefix, fn, ctx, d);
}

int squib_store_delete(struct squib_store *s, const char *key, struct squib_error_detail *d)
{
	return squib_store_key_ok(key) ? s->ops->del(s->be, key, d) : bad_key(key, d);
}

void squib_store_image_key(const uint8_t id[SQUIB_MEMORY_ID_SIZE], bool state,
			   char key[SQUIB_STORE_KEY_MAX])
{
	char hex[2 * SQUIB_MEMORY_ID_SIZE + 1];

	squib_mem_id_hex(id, hex);
	snprintf(key, SQUIB_STORE_KEY_MAX, "images/%s%s", hex, state ? ".state" : "");
}

void squib_store_chunk_key(const struct squib_store_hash *h, char key[SQUIB_STORE_KEY_MAX])
{
	char hex[2 * SQUIB_STORE_HASH_SIZE + 1];

	squib_store_hash_hex(h, hex);
	snprintf(key, SQUIB_STORE_KEY_MAX, "chunks/%s", hex);
}

int squib_store_parse_id(const char *hex, uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	if (strlen(hex) != 2 * SQUIB_MEMORY_ID_SIZE)
		return SQUIB_E_INVALID_ARGUMENT;
	for (size_t i = 0; i < 2 * SQUIB_MEMORY_ID_SIZE; i++) {
		const char *x = "0123456789abcdef", *p = strchr(x, hex[i]);

		if (!hex[i] || !p)
			return SQUIB_E_INVALID_ARGUMENT;
		if (i % 2 == 0)
			id[i / 2] = (uint8_t)((p - x) << 4);
		else
			id[i / 2] |= (uint8_t)(p - x);
	}
	return squib_mem_id_is_zero(id) ? SQUIB_E_INVALID_ARGUMENT : 0;
}

int squib_store_image_get(struct squib_store *s, const uint8_t id[SQUIB_MEMORY_ID_SIZE],
			  struct squib_store_image *out, struct squib_error_detail *d)
{
	char key[SQUIB_STORE_KEY_MAX];
	uint8_t *buf;
	size_t len;
	int r;

	memset(out, 0, sizeof(*out));
	squib_store_image_key(id, false, key);
	if ((r = squib_store_get(s, key, SQUIB_STORE_IMAGE_MAX_BYTES, &buf, &len, d)))
		return r;
	r = squib_store_image_decode(buf, len, out, d);
	free(buf);
	if (!r && memcmp(out->manifest.layout.id, id, SQUIB_MEMORY_ID_SIZE)) {
		squib_store_image_release(out);
		r = squib_fail_msg(d, SQUIB_E_PAIR_MISMATCH, "%s holds an image of another id",
				   key);
	}
	if (r && d && !strstr(d->msg, key)) {
		char m[SQUIB_DETAIL_MSG_MAX];

		snprintf(m, sizeof(m), "%.60s: %.400s", key, d->msg);
		squib_strlcpy(d->msg, m, sizeof(d->msg));
	}
	return r;
}

struct images_ctx {
	squib_store_image_fn fn;
	void *ctx;
};

static int on_image(void *ctx, const struct squib_store_object *o)
{
	struct images_ctx *c = ctx;
	uint8_t id[SQUIB_MEMORY_ID_SIZE];

	if (strlen(o->key) != 7 + 2 * SQUIB_MEMORY_ID_SIZE || squib_store_parse_id(o->key + 7, id))
		return 0; /* a state file or a stranger */
	return c->fn(c->ctx, id);
}

int squib_store_images(struct squib_store *s, squib_store_image_fn fn, void *ctx,
		       struct squib_error_detail *d)
{
	struct images_ctx c = {fn, ctx};

	return squib_store_list(s, "images/", on_image, &c, d);
}

/* 64 lowercase hex digits into a non-zero *h: 0, or -1. */
static int parse_hash(const char *hex, struct squib_store_hash *h)
{
	for (size_t i = 0; i < 2 * SQUIB_STORE_HASH_SIZE; i++) {
		const char *x = "0123456789abcdef", *p = strchr(x, hex[i]);

		if (!hex[i] || !p)
			return -1;
		h->b[i / 2] = (uint8_t)(i % 2 ? h->b[i / 2] | (p - x) : (p - x) << 4);
	}
	return squib_store_hash_is_zero(h) ? -1 : 0;
}

int squib_store_parse_chunk_key(const char *key, struct squib_store_hash *h)
{
	if (strncmp(key, "chunks/", 7) || strlen(key + 7) != 2 * SQUIB_STORE_HASH_SIZE)
		return -1;
	return parse_hash(key + 7, h);
}

void squib_store_delta_key(const struct squib_store_hash *name, const struct squib_store_hash *base,
			   char key[SQUIB_STORE_KEY_MAX])
{
	char a[2 * SQUIB_STORE_HASH_SIZE + 1], b[2 * SQUIB_STORE_HASH_SIZE + 1];

	squib_store_hash_hex(name, a);
	squib_store_hash_hex(base, b);
	snprintf(key, SQUIB_STORE_KEY_MAX, "deltas/%s.%s", a, b);
}

int squib_store_parse_delta_key(const char *key, struct squib_store_hash *name,
				struct squib_store_hash *base)
{
	const size_t hx = 2 * SQUIB_STORE_HASH_SIZE;

	if (strncmp(key, "deltas/", 7) || strlen(key + 7) != 2 * hx + 1 || key[7 + hx] != '.' ||
	    parse_hash(key + 7, name) || parse_hash(key + 8 + hx, base) ||
	    !memcmp(name->b, base->b, sizeof(name->b)))
		return -1;
	return 0;
}
