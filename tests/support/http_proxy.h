/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A tiny HTTP/1.1 proxy on 127.0.0.1 in front of an S3 server, for outage
 * tests: it forwards each request (one per connection), answers 503 to
 * everything while told to (or to the first attempt of every n-th distinct
 * request, so a client's retries get through), and can be killed (its socket
 * closed: new connections are refused), as a server that dies mid-restore.
 * Without an upstream it is a server that answers 503 to everything.
 */
#ifndef SQUIB_TEST_HTTP_PROXY_H
#define SQUIB_TEST_HTTP_PROXY_H

#include <pthread.h>
#include <stdint.h>

#define SQUIB_TEST_PROXY_SEEN_MAX 4096

struct squib_test_proxy {
	int lfd;
	uint16_t port, upstream;
	int fail;			       /* __atomic: answer 503 */
	int every;			       /* __atomic: see squib_test_proxy_fail_every */
	int stop;			       /* __atomic */
	int requests, failed;		       /* __atomic */
	pthread_mutex_t mu;		       /* guards the two below */
	char last[4096];		       /* the last request's head */
	char *seen[SQUIB_TEST_PROXY_SEEN_MAX]; /* distinct request lines (fail_every) */
	int n_seen;
	pthread_t thr;
};

/* Listen on a free port of 127.0.0.1 and forward to 127.0.0.1:upstream
 * (0: no upstream, every request is answered 503). */
void squib_test_proxy_start(struct squib_test_proxy *p, uint16_t upstream);
/* 503 to the first attempt of every n-th distinct request line (its retries
 * are forwarded); 0: off. */
void squib_test_proxy_fail_every(struct squib_test_proxy *p, int n);
/* 503 to every request from now on (true), or forward again (false). */
void squib_test_proxy_fail(struct squib_test_proxy *p, int on);
/* Stop and close: connections are refused from here on. Idempotent. What
 * was seen stays readable until squib_test_proxy_free. */
void squib_test_proxy_kill(struct squib_test_proxy *p);
/* Kill, and free what was seen. */
void squib_test_proxy_free(struct squib_test_proxy *p);

#endif
