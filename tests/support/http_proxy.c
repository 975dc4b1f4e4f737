/* SPDX-License-Identifier: Apache-2.0 */
/* A forwarding, 503-injecting, killable HTTP proxy for outage tests (http_proxy.h). */
#include "http_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define REQ_MAX (32u << 20)

/* One request's head and body (by Content-Length) into buf; its length or -1. */
static ssize_t read_request(int fd, char *buf, size_t cap)
{
	size_t n = 0, need = 0;

	for (;;) {
		ssize_t k = read(fd, buf + n, cap - 1 - n);
		char *end, *cl;

		if (k <= 0)
			return -1;
		n += (size_t)k;
		buf[n] = '\0';
		if (!need && (end = strstr(buf, "\r\n\r\n"))) {
			/* curl waits for "100 Continue" (or a second) before a PUT's body */
			if (strcasestr(buf, "\r\nExpect: 100-continue") &&
			    write(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 25)
				return -1;
			cl = strcasestr(buf, "\r\nContent-Length:");
			need = (size_t)(end + 4 - buf) +
			       (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
		}
		if (need && n >= need)
			return (ssize_t)n;
		if (n >= cap - 1)
			return -1;
	}
}

/* Forward one request and relay the upstream's answer to its end (the upstream
 * is asked to close after it). */
static void relay(int client, char *req, ssize_t len, uint16_t port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char buf[65536];
	ssize_t k;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (up < 0 || connect(up, (struct sockaddr *)&a, sizeof(a)) ||
	    write(up, req, (size_t)len) != len)
		goto out;
	while ((k = read(up, buf, sizeof(buf))) > 0)
		if (write(client, buf, (size_t)k) != k)
			break;
out:
	if (up >= 0)
		close(up);
}

/* Make the request one-shot: "Connection: close" so the upstream ends its answer with EOF. */
static ssize_t close_after(char *req, ssize_t n)
{
	char *end = strstr(req, "\r\n\r\n"), *hdr;
	static const char add[] = "\r\nConnection: close";

	if (!end || (size_t)n + sizeof(add) >= REQ_MAX)
		return n;
	if ((hdr = strcasestr(req, "\r\nConnection:")) && hdr < end)
		return n;
	memmove(end + sizeof(add) - 1, end, (size_t)(req + n - end));
	memcpy(end, add, sizeof(add) - 1);
	return n + (ssize_t)sizeof(add) - 1;
}

static void answer_503(int c)
{
	static const char body[] = "<?xml version=\"1.0\"?><Error><Code>SlowDown</Code></Error>";
	char head[160];

	snprintf(head, sizeof(head),
		 "HTTP/1.1 503 Slow Down\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
		 sizeof(body) - 1);
	if (write(c, head, strlen(head)) < 0 || write(c, body, sizeof(body) - 1) < 0)
		return;
}

/* Is this request line new, and the every-th new one? (Its retries then go through.) */
static int first_attempt(struct squib_test_proxy *p, const char *req, int every)
{
	size_t n = strcspn(req, "\r");

	for (int i = 0; i < p->n_seen; i++)
		if (strlen(p->seen[i]) == n && !strncmp(p->seen[i], req, n))
			return 0;
	if (p->n_seen == SQUIB_TEST_PROXY_SEEN_MAX)
		return 0;
	p->seen[p->n_seen++] = strndup(req, n);
	return p->n_seen % every == 0;
}

/* Note the request; should it be answered 503? */
static int inject(struct squib_test_proxy *p, const char *req)
{
	const char *end = strstr(req, "\r\n\r\n");
	int every = __atomic_load_n(&p->every, __ATOMIC_ACQUIRE), first;

	pthread_mutex_lock(&p->mu);
	snprintf(p->last, sizeof(p->last), "%.*s", end ? (int)(end - req) : 0, req);
	first = every > 0 && first_attempt(p, req, every); /* lines kept only when asked */
	pthread_mutex_unlock(&p->mu);
	return !p->upstream || __atomic_load_n(&p->fail, __ATOMIC_ACQUIRE) || first;
}

static void *proxy_main(void *arg)
{
	struct squib_test_proxy *p = arg;
	char *req = malloc(REQ_MAX);

	while (req && !__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE)) {
		int c = accept(p->lfd, NULL, NULL);
		ssize_t n;

		if (c < 0)
			continue;
		if ((n = read_request(c, req, REQ_MAX - 64)) > 0) {
			__atomic_fetch_add(&p->requests, 1, __ATOMIC_RELAXED);
			if (inject(p, req)) {
				__atomic_fetch_add(&p->failed, 1, __ATOMIC_RELAXED);
				answer_503(c);
			} else {
				relay(c, req, close_after(req, n), p->upstream);
			}
		}
		close(c);
	}
	free(req);
	return NULL;
}

void squib_test_proxy_start(struct squib_test_proxy *p, uint16_t upstream)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);

	memset(p, 0, sizeof(*p));
	p->upstream = upstream;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(p->lfd >= 0);
	assert_int_equal(bind(p->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(p->lfd, 64), 0);
	assert_int_equal(getsockname(p->lfd, (struct sockaddr *)&a, &al), 0);
	p->port = ntohs(a.sin_port);
	pthread_mutex_init(&p->mu, NULL);
	assert_int_equal(pthread_create(&p->thr, NULL, proxy_main, p), 0);
}

void squib_test_proxy_fail_every(struct squib_test_proxy *p, int n)
{
	__atomic_store_n(&p->every, n, __ATOMIC_RELEASE);
}

void squib_test_proxy_fail(struct squib_test_proxy *p, int on)
{
	__atomic_store_n(&p->fail, on, __ATOMIC_RELEASE);
}

void squib_test_proxy_kill(struct squib_test_proxy *p)
{
	if (p->lfd < 0)
		return;
	__atomic_store_n(&p->stop, 1, __ATOMIC_RELEASE);
	shutdown(p->lfd, SHUT_RDWR);
	pthread_join(p->thr, NULL);
	close(p->lfd);
	p->lfd = -1;
}

void squib_test_proxy_free(struct squib_test_proxy *p)
{
	squib_test_proxy_kill(p);
	for (int i = 0; i < p->n_seen; i++)
		free(p->seen[i]);
	p->n_seen = 0;
	pthread_mutex_destroy(&p->mu);
}
