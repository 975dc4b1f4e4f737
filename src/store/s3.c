/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The S3 backend: libcurl, SigV4 signed by libcurl (CURLOPT_AWS_SIGV4),
 * path-style URLs (ENDPOINT/BUCKET/PREFIX/KEY), payloads unsigned
 * (x-amz-content-sha256: UNSIGNED-PAYLOAD: chunks are verified by their
 * names anyway, and hashing every upload twice costs CPU). Each thread
 * borrows an easy handle from a small free list, so connections are kept
 * alive across requests. Retries with exponential back-off and jitter on
 * 5xx, 429, timeouts and broken connections; 4xx other than 429 fail at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "../util.h"
#include "store_internal.h"

#define S3_MAX_HANDLES 64

struct s3_be {
	char *endpoint, *bucket, *prefix, *sigv4, *userpwd;
	char *token_header; /* "x-amz-security-token: ..." (AWS_SESSION_TOKEN), or NULL */
	struct squib_store_options opts;
	pthread_mutex_t mu;
	CURL *free_handles[S3_MAX_HANDLES];
	unsigned n_free;
};

static char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return strdup(v && *v ? v : dflt);
}

static int s3_init_creds(struct s3_be *b, struct squib_error_detail *d)
{
	const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
	const char *tok = getenv("AWS_SESSION_TOKEN");
	char *region = env_or("AWS_REGION", "us-east-1"), *dflt = NULL;
	int r = 0;

	if (!ak || !*ak || !sk || !*sk)
		r = squib_fail_msg(
		    d, SQUIB_E_INVALID_ARGUMENT,
		    "S3 store: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set");
	else if (!region || asprintf(&b->sigv4, "aws:amz:%s:s3", region) < 0 ||
		 asprintf(&b->userpwd, "%s:%s", ak, sk) < 0 ||
		 asprintf(&dflt, "https://s3.%s.amazonaws.com", region) < 0 ||
		 !(b->endpoint = env_or("AWS_ENDPOINT_URL", dflt)) ||
		 /* temporary credentials: the token goes in a header that SigV4 signs */
		 (tok && *tok && asprintf(&b->token_header, "x-amz-security-token: %s", tok) < 0))
		r = squib_fail(d, SQUIB_E_NOMEM);
	for (size_t n = b->endpoint ? strlen(b->endpoint) : 0; n && b->endpoint[n - 1] == '/'; n--)
		b->endpoint[n - 1] = '\0';
	free(region);
	free(dflt);
	return r;
}

static void s3_close(void *be)
{
	struct s3_be *b = be;

	for (unsigned i = 0; i < b->n_free; i++)
		curl_easy_cleanup(b->free_handles[i]);
	pthread_mutex_destroy(&b->mu);
	free(b->endpoint);
	free(b->bucket);
	free(b->prefix);
	free(b->sigv4);
	free(b->userpwd);
	free(b->token_header);
	free(b);
	curl_global_cleanup();
}

int squib_store_s3_open(const char *bucket, const char *prefix,
			const struct squib_store_options *opts, void **be,
			struct squib_error_detail *d)
{
	struct s3_be *b = calloc(1, sizeof(*b));
	int r;

	if (!b)
		return squib_fail(d, SQUIB_E_NOMEM);
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		free(b);
		return squib_fail_msg(d, SQUIB_E_IO, "S3 store: curl_global_init failed");
	}
	pthread_mutex_init(&b->mu, NULL);
	b->opts = *opts;
	if (!(b->bucket = strdup(bucket)) || !(b->prefix = strdup(prefix)))
		r = squib_fail(d, SQUIB_E_NOMEM);
	else
		r = s3_init_creds(b, d);
	if (r) {
		s3_close(b);
		return r;
	}
	*be = b;
	return 0;
}

static CURL *handle_get(struct s3_be *b)
{
	CURL *h = NULL;

	pthread_mutex_lock(&b->mu);
	if (b->n_free)
		h = b->free_handles[--b->n_free];
	pthread_mutex_unlock(&b->mu);
	return h ? h : curl_easy_init();
}

static void handle_put(struct s3_be *b, CURL *h)
{
	pthread_mutex_lock(&b->mu);
	if (b->n_free < S3_MAX_HANDLES) {
		b->free_handles[b->n_free++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&b->mu);
	if (h)
		curl_easy_cleanup(h);
}

struct s3_req {
	const char *method; /* GET PUT HEAD DELETE POST */
	const char *key;    /* relative to the prefix; NULL: the bucket (a list) */
	const char *query;  /* after '?', or NULL */
	const uint8_t *body;
	size_t body_len, sent;
	bool range;
	uint64_t range_off;
	size_t max_len; /* GET: most bytes accepted */
	/* results */
	uint8_t *buf;
	size_t len, cap;
	bool overflow;
	long status;
	int64_t mtime;
	uint64_t size;
	char etag[128]; /* the answer's ETag, quotes kept */
	char err[CURL_ERROR_SIZE];
};

static size_t on_body(char *p, size_t sz, size_t n, void *ctx)
{
	struct s3_req *q = ctx;
	size_t len = sz * n, keep = q->max_len;

	if (q->len + len > keep) {
		q->overflow = true;
		return 0;
	}
	if (q->len + len > q->cap) {
		size_t cap = q->cap ? q->cap : 4096;
		uint8_t *nb;

		while (cap < q->len + len)
			cap *= 2;
		if (cap > keep)
			cap = keep;
		if (!(nb = realloc(q->buf, cap)))
			return 0;
		q->buf = nb;
		q->cap = cap;
	}
	memcpy(q->buf + q->len, p, len);
	q->len += len;
	return len;
}

static size_t on_read(char *p, size_t sz, size_t n, void *ctx)
{
	struct s3_req *q = ctx;
	size_t len = sz * n, left = q->body_len - q->sent;

	if (len > left)
		len = left;
	memcpy(p, q->body + q->sent, len);
	q->sent += len;
	return len;
}

/* The ETag of an answer (a multipart upload's parts are named by theirs). */
static size_t on_header(char *p, size_t sz, size_t n, void *ctx)
{
	struct s3_req *q = ctx;
	size_t len = sz * n, v;

	if (len > 5 && !strncasecmp(p, "ETag:", 5)) {
		for (v = 5; v < len && (p[v] == ' ' || p[v] == '\t'); v++)
			;
		while (len > v && (p[len - 1] == '\r' || p[len - 1] == '\n' || p[len - 1] == ' '))
			len--;
		snprintf(q->etag, sizeof(q->etag), "%.*s", (int)(len - v), p + v);
	}
	return sz * n;
}

static int make_url(const struct s3_be *b, const struct s3_req *q, char **url)
{
	return asprintf(url, "%s/%s%s%s%s%s%s%s", b->endpoint, b->bucket,
			q->key && (b->prefix[0] || q->key[0]) ? "/" : "", q->key ? b->prefix : "",
			q->key && b->prefix[0] ? "/" : "", q->key ? q->key : "",
			q->query ? "?" : "", q->query ? q->query : "") < 0
		   ? -1
		   : 0;
}

static struct curl_slist *make_headers(const struct s3_be *b, const struct s3_req *q)
{
	struct curl_slist *h = NULL, *t;
	char range[80];

	h = curl_slist_append(h, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (h && b->token_header && !(h = curl_slist_append(h, b->token_header)))
		return NULL;
	/* A POST too: else curl adds a form Content-Type after signing. */
	if (h && (q->body || !strcmp(q->method, "POST")) &&
	    (t = curl_slist_append(h, "Content-Type: application/octet-stream")))
		h = t;
	if (h && q->range) {
		snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, q->range_off,
			 q->range_off + q->max_len - 1);
		if ((t = curl_slist_append(h, range)))
			h = t;
	}
	return h;
}

static void set_method(CURL *h, struct s3_req *q)
{
	if (!strcmp(q->method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, q);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
	} else if (!strcmp(q->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(h, CURLOPT_FILETIME, 1L);
	} else if (!strcmp(q->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body ? (const char *)q->body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
	} else if (!strcmp(q->method, "DELETE")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "DELETE");
	} else {
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
}

static CURLcode perform_once(struct s3_be *b, CURL *h, struct s3_req *q, const char *url,
			     struct curl_slist *hdrs)
{
	curl_off_t size = 0;
	CURLcode rc;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, b->sigv4);
	curl_easy_setopt(h, CURLOPT_USERPWD, b->userpwd);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)b->opts.timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, q);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, q->err);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, q);
	set_method(h, q);
	q->err[0] = q->etag[0] = '\0';
	rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &q->status);
	if (!rc && !strcmp(q->method, "HEAD")) {
		curl_off_t ft = -1;

		curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &size);
		curl_easy_getinfo(h, CURLINFO_FILETIME_T, &ft);
		q->size = size > 0 ? (uint64_t)size : 0;
		q->mtime = ft;
	}
	return rc;
}

static bool retryable(CURLcode rc, long status)
{
	if (rc == CURLE_OK)
		return status >= 500 || status == 429;
	return rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT ||
	       rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR || rc == CURLE_GOT_NOTHING ||
	       rc == CURLE_PARTIAL_FILE || rc == CURLE_HTTP2 || rc == CURLE_SSL_CONNECT_ERROR;
}

static void backoff(const struct s3_be *b, unsigned attempt)
{
	uint64_t ms = (uint64_t)b->opts.backoff_ms << (attempt < 10 ? attempt : 10);
	uint32_t jitter = 0;

	if (getrandom(&jitter, sizeof(jitter), 0) == sizeof(jitter))
		ms += jitter % (ms / 2 + 1);
	if (ms > 20000)
		ms = 20000;
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* The S3 error code in an error body ("<Code>NoSuchKey</Code>"), or "". */
static void error_code(const struct s3_req *q, char *out, size_t n)
{
	char body[1024];
	const char *a, *e;

	out[0] = '\0';
	if (!q->buf || !q->len)
		return;
	snprintf(body, sizeof(body), "%.*s",
		 (int)(q->len < sizeof(body) ? q->len : sizeof(body) - 1), (const char *)q->buf);
	if (!(a = strstr(body, "<Code>")) || !(e = strstr(a, "</Code>")))
		return;
	a += 6;
	snprintf(out, n, " (%.*s)", (int)(e - a < 64 ? e - a : 64), a);
}

static int result(const struct s3_be *b, struct s3_req *q, CURLcode rc, unsigned attempts,
		  struct squib_error_detail *d)
{
	char code[80] = "";
	int e;

	if (rc == CURLE_WRITE_ERROR && q->overflow && q->status >= 200 && q->status < 300)
		return squib_fail_msg(d, SQUIB_E_SIZE_LIMIT_EXCEEDED,
				      "s3://%s/%s%s%s: larger than %zu bytes", b->bucket, b->prefix,
				      b->prefix[0] ? "/" : "", q->key ? q->key : "", q->max_len);
	if ((rc == CURLE_OK || rc == CURLE_WRITE_ERROR) && q->status >= 200 && q->status < 300)
		return rc == CURLE_OK ? 0 : squib_fail(d, SQUIB_E_NOMEM);
	if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && q->status >= 300)) {
		e = rc == CURLE_OPERATION_TIMEDOUT ? ETIMEDOUT
		    : rc == CURLE_COULDNT_CONNECT  ? ECONNREFUSED
						   : EIO;
		return squib_fail_errno_msg(
		    d, SQUIB_E_IO, e, "%s s3://%s/%s%s%s: %s (after %u attempts)", q->method,
		    b->bucket, b->prefix, b->prefix[0] ? "/" : "", q->key ? q->key : "",
		    q->err[0] ? q->err : curl_easy_strerror(rc), attempts);
	}
	error_code(q, code, sizeof(code));
	e = q->status == 404 ? ENOENT : q->status == 401 || q->status == 403 ? EACCES : EIO;
	return squib_fail_errno_msg(d, SQUIB_E_IO, e,
				    "%s s3://%s/%s%s%s: HTTP %ld%s (after %u attempts)", q->method,
				    b->bucket, b->prefix, b->prefix[0] ? "/" : "",
				    q->key ? q->key : "", q->status, code, attempts);
}

static int s3_request(struct s3_be *b, struct s3_req *q, struct squib_error_detail *d)
{
	struct curl_slist *hdrs = make_headers(b, q);
	CURL *h = handle_get(b);
	CURLcode rc = CURLE_OK;
	char *url = NULL;
	unsigned attempt;
	int r;

	if (!hdrs || !h || make_url(b, q, &url)) {
		curl_slist_free_all(hdrs);
		if (h)
			curl_easy_cleanup(h);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	for (attempt = 0;; attempt++) {
		q->len = q->sent = 0;
		q->overflow = false;
		q->status = 0;
		rc = perform_once(b, h, q, url, hdrs);
		if (!retryable(rc, q->status) || attempt >= b->opts.retries)
			break;
		backoff(b, attempt);
	}
	r = result(b, q, rc, attempt + 1, d);
	if (rc == CURLE_OK)
		handle_put(b, h);
	else
		curl_easy_cleanup(h); /* a broken connection is not kept */
	curl_slist_free_all(hdrs);
	free(url);
	return r;
}

static int s3_put_multipart(struct s3_be *b, const char *key, const uint8_t *buf, size_t len,
			    struct squib_error_detail *d);

static int s3_put(void *be, const char *key, const void *buf, size_t len,
		  struct squib_error_detail *d)
{
	struct s3_be *b = be;

	if (len > b->opts.multipart_bytes)
		return s3_put_multipart(b, key, buf, len, d);
	struct s3_req q = {
	    .method = "PUT", .key = key, .body = buf, .body_len = len, .max_len = 65536};
	int r = s3_request(be, &q, d);

	free(q.buf);
	return r;
}

static int s3_get(void *be, const char *key, size_t max_len, uint8_t **buf, size_t *len,
		  struct squib_error_detail *d)
{
	struct s3_req q = {.method = "GET", .key = key, .max_len = max_len ? max_len : 1};
	int r = s3_request(be, &q, d);

	if (r) {
		free(q.buf);
		return r;
	}
	*buf = q.buf ? q.buf : malloc(1);
	*len = q.len;
	return *buf ? 0 : squib_fail(d, SQUIB_E_NOMEM);
}

static int s3_get_range(void *be, const char *key, uint64_t off, size_t len, void *buf,
			struct squib_error_detail *d)
{
	struct s3_req q = {
	    .method = "GET", .key = key, .range = true, .range_off = off, .max_len = len};
	int r = s3_request(be, &q, d);

	if (!r && (q.status != 206 || q.len != len))
		r = squib_fail_errno_msg(d, SQUIB_E_IO, EIO,
					 "GET %s bytes %" PRIu64 "+%zu: HTTP %ld with %zu bytes",
					 key, off, len, q.status, q.len);
	if (!r)
		memcpy(buf, q.buf, len);
	free(q.buf);
	return r;
}

static int s3_head(void *be, const char *key, bool *exists, uint64_t *size, int64_t *mtime,
		   struct squib_error_detail *d)
{
	struct s3_req q = {.method = "HEAD", .key = key, .max_len = 65536};
	int r = s3_request(be, &q, d);

	free(q.buf);
	if (r && q.status == 404)
		return 0;
	if (!r) {
		*exists = true;
		*size = q.size;
		*mtime = q.mtime;
	}
	return r;
}

static int s3_del(void *be, const char *key, struct squib_error_detail *d)
{
	struct s3_req q = {.method = "DELETE", .key = key, .max_len = 65536};
	struct squib_error_detail scratch;
	int r = s3_request(be, &q, d ? d : &scratch);

	free(q.buf);
	if (r && q.status == 404)
		return 0;
	return r;
}

/* The text of <tag>...</tag> inside [p, end), or NULL. */
static const char *xml_field(const char *p, const char *end, const char *tag, size_t *len)
{
	char open[32], close[32];
	const char *a, *e;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	if (!(a = strstr(p, open)) || a >= end)
		return NULL;
	a += strlen(open);
	if (!(e = strstr(a, close)) || e > end)
		return NULL;
	*len = (size_t)(e - a);
	return a;
}

static int64_t parse_time(const char *s, size_t n)
{
	struct tm tm = {0};
	char buf[40];

	snprintf(buf, sizeof(buf), "%.*s", (int)(n < 39 ? n : 39), s);
	if (!strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return (int64_t)timegm(&tm);
}

/* One <Contents> entry to the callback (keys outside the store's naming skipped). */
static int list_entry(const struct s3_be *b, const char *p, const char *end, squib_store_list_fn fn,
		      void *ctx)
{
	size_t kl = 0, sl = 0, tl = 0, pl = strlen(b->prefix);
	const char *k = xml_field(p, end, "Key", &kl), *sz = xml_field(p, end, "Size", &sl);
	const char *t = xml_field(p, end, "LastModified", &tl);
	struct squib_store_object o;
	char key[1024];

	if (!k || !sz || !t || kl >= sizeof(key))
		return 0;
	memcpy(key, k, kl);
	key[kl] = '\0';
	if (pl && (strncmp(key, b->prefix, pl) || key[pl] != '/'))
		return 0;
	o.key = key + (pl ? pl + 1 : 0);
	if (!squib_store_key_ok(o.key))
		return 0;
	o.size = strtoull(sz, NULL, 10);
	o.mtime = parse_time(t, tl);
	return fn(ctx, &o);
}

/* One page of ListObjectsV2; *token (malloc'd) the next page's, or NULL. */
static int list_page(struct s3_be *b, CURL *esc, const char *full, char **token,
		     squib_store_list_fn fn, void *ctx, struct squib_error_detail *d)
{
	char *ep = curl_easy_escape(esc, full, 0), *et = NULL, *query = NULL;
	struct s3_req q = {.method = "GET", .max_len = 64u << 20};
	const char *p, *end, *v;
	size_t n;
	int r;

	if (*token)
		et = curl_easy_escape(esc, *token, 0);
	/* SigV4's canonical query: parameters sorted, values escaped (curl 7.88 signs it as given).
	 */
	if (!ep || (*token && !et) ||
	    asprintf(&query, "%s%s%slist-type=2&prefix=%s", et ? "continuation-token=" : "",
		     et ? et : "", et ? "&" : "", ep) < 0)
		query = NULL;
	curl_free(ep);
	curl_free(et);
	free(*token);
	*token = NULL;
	if (!query)
		return squib_fail(d, SQUIB_E_NOMEM);
	q.query = query;
	r = s3_request(b, &q, d);
	free(query);
	if (!r && (!q.buf || q.len == q.cap) && !(q.buf = realloc(q.buf, q.len + 1)))
		r = squib_fail(d, SQUIB_E_NOMEM);
	if (r) {
		free(q.buf);
		return r;
	}
	q.buf[q.len] = '\0';
	end = (const char *)q.buf + q.len;
	for (p = (const char *)q.buf; !r && (p = strstr(p, "<Contents>")); p += 10) {
		const char *e = strstr(p, "</Contents>");

		r = list_entry(b, p, e ? e : end, fn, ctx);
	}
	if (!r && (v = xml_field((const char *)q.buf, end, "IsTruncated", &n)) && n == 4 &&
	    !memcmp(v, "true", 4) &&
	    (v = xml_field((const char *)q.buf, end, "NextContinuationToken", &n)) &&
	    !(*token = strndup(v, n)))
		r = squib_fail(d, SQUIB_E_NOMEM);
	free(q.buf);
	return r;
}

static int s3_list(void *be, const char *prefix, squib_store_list_fn fn, void *ctx,
		   struct squib_error_detail *d)
{
	struct s3_be *b = be;
	char *full = NULL, *token = NULL;
	CURL *esc = curl_easy_init();
	int r = 0;

	if (!esc || asprintf(&full, "%s%s%s", b->prefix, b->prefix[0] ? "/" : "", prefix) < 0) {
		if (esc)
			curl_easy_cleanup(esc);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	do
		r = list_page(b, esc, full, &token, fn, ctx, d);
	while (!r && token);
	free(token);
	free(full);
	curl_easy_cleanup(esc);
	return r;
}

/* ---- multipart upload ------------------------------------------------------ */

/* S3's limits: parts of at least 5 MiB (but the last), at most 10,000 of them. */
#define S3_MIN_PART  (5ull << 20)
#define S3_MAX_PARTS 10000u

/* One request whose answer must not be an <Error> (Complete answers 200 with one). */
static int mp_request(struct s3_be *b, struct s3_req *q, struct squib_error_detail *d)
{
	char code[80] = "";
	int r = s3_request(b, q, d);

	if (!r && q->buf && q->len && memmem(q->buf, q->len, "<Error>", 7)) {
		error_code(q, code, sizeof(code));
		r = squib_fail_errno_msg(d, SQUIB_E_IO, EIO, "%s s3://%s/%s%s%s?%s: error%s",
					 q->method, b->bucket, b->prefix, b->prefix[0] ? "/" : "",
					 q->key, q->query, code);
	}
	return r;
}

/* CreateMultipartUpload: the upload id, URL-escaped (malloc'd). */
static int mp_create(struct s3_be *b, const char *key, char **eid, struct squib_error_detail *d)
{
	struct s3_req q = {.method = "POST", .key = key, .query = "uploads=", .max_len = 65536};
	const char *v = NULL;
	CURL *esc = NULL;
	size_t n = 0;
	int r = mp_request(b, &q, d);

	*eid = NULL;
	if (!r && (!q.buf || !(q.buf = realloc(q.buf, q.len + 1))))
		r = squib_fail(d, SQUIB_E_NOMEM);
	if (!r) {
		q.buf[q.len] = '\0';
		v = xml_field((const char *)q.buf, (const char *)q.buf + q.len, "UploadId", &n);
	}
	if (!r && (!v || !n))
		r = squib_fail_errno_msg(d, SQUIB_E_IO, EIO,
					 "POST s3://%s/%s: no UploadId in the answer", b->bucket,
					 key);
	if (!r) {
		char *id = strndup(v, n), *e = NULL;

		if (id && (esc = curl_easy_init()) && (e = curl_easy_escape(esc, id, 0)))
			*eid = strdup(e);
		curl_free(e);
		free(id);
		if (!*eid)
			r = squib_fail(d, SQUIB_E_NOMEM);
	}
	if (esc)
		curl_easy_cleanup(esc);
	free(q.buf);
	return r;
}

/* UploadPart, each in order; etags[i] the part's ETag. */
static int mp_parts(struct s3_be *b, const char *key, const char *eid, const uint8_t *buf,
		    size_t len, size_t part, char (*etags)[128], struct squib_error_detail *d)
{
	int r = 0;

	for (size_t i = 0, off = 0; !r && off < len; i++, off += part) {
		struct s3_req q = {.method = "PUT",
				   .key = key,
				   .body = buf + off,
				   .body_len = len - off < part ? len - off : part,
				   .max_len = 65536};
		char *query = NULL;

		/* SigV4's canonical query: sorted by name (partNumber < uploadId). */
		if (asprintf(&query, "partNumber=%zu&uploadId=%s", i + 1, eid) < 0)
			return squib_fail(d, SQUIB_E_NOMEM);
		q.query = query;
		if (!(r = s3_request(b, &q, d)) && !q.etag[0])
			r = squib_fail_errno_msg(d, SQUIB_E_IO, EIO,
						 "PUT s3://%s/%s part %zu: no ETag in the answer",
						 b->bucket, key, i + 1);
		memcpy(etags[i], q.etag, sizeof(etags[i]));
		free(q.buf);
		free(query);
	}
	return r;
}

static int mp_complete(struct s3_be *b, const char *key, const char *eid, size_t nparts,
		       char (*etags)[128], struct squib_error_detail *d)
{
	size_t cap = 128 + nparts * 200, n;
	char *xml = malloc(cap), *query = NULL;
	struct s3_req q = {.method = "POST", .key = key, .max_len = 65536};
	int r;

	if (!xml || asprintf(&query, "uploadId=%s", eid) < 0) {
		free(xml);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	n = (size_t)snprintf(xml, cap, "<CompleteMultipartUpload>");
	for (size_t i = 0; i < nparts; i++)
		n += (size_t)snprintf(xml + n, cap - n,
				      "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>",
				      i + 1, etags[i]);
	n += (size_t)snprintf(xml + n, cap - n, "</CompleteMultipartUpload>");
	q.query = query;
	q.body = (const uint8_t *)xml;
	q.body_len = n;
	r = mp_request(b, &q, d);
	free(q.buf);
	free(query);
	free(xml);
	return r;
}

/*
 * A large object in parts (b->opts.multipart_bytes each, more when 10,000
 * would not hold it): create, upload the parts in order, complete. The
 * object appears whole at the complete or not at all; any failure aborts the
 * upload so no part is left behind.
 */
static int s3_put_multipart(struct s3_be *b, const char *key, const uint8_t *buf, size_t len,
			    struct squib_error_detail *d)
{
	size_t part = (size_t)b->opts.multipart_bytes, nparts;
	char(*etags)[128] = NULL, *eid = NULL;
	int r;

	if (part < S3_MIN_PART)
		part = S3_MIN_PART;
	if (len / part >= S3_MAX_PARTS)
		part = len / (S3_MAX_PARTS - 1);
	nparts = (len + part - 1) / part;
	if (!(etags = calloc(nparts, sizeof(*etags))))
		return squib_fail(d, SQUIB_E_NOMEM);
	if (!(r = mp_create(b, key, &eid, d)) &&
	    !(r = mp_parts(b, key, eid, buf, len, part, etags, d)))
		r = mp_complete(b, key, eid, nparts, etags, d);
	if (r && eid) {
		struct s3_req q = {.method = "DELETE", .key = key, .max_len = 65536};
		char *query = NULL;

		if (asprintf(&query, "uploadId=%s", eid) >= 0) {
			struct squib_error_detail scratch;

			q.query = query;
			s3_request(b, &q, &scratch); /* AbortMultipartUpload: best effort */
			free(q.buf);
			free(query);
		}
	}
	free(eid);
	free(etags);
	return r;
}

const struct squib_store_ops squib_store_s3_ops = {
    .put = s3_put,
    .get = s3_get,
    .get_range = s3_get_range,
    .head = s3_head,
    .list = s3_list,
    .del = s3_del,
    .close = s3_close,
};
