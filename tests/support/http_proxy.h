/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A tiny HTTP/1.1 proxy on 127.0.0.1 in front of an S3 server, for outage
 * tests: it forwards each request (one per connection), answers 503 to
 * everything while told to, and can be killed (its socket closed: new
 * connections are refused), as a server that dies mid-restore.
 */
#ifndef SQUIB_TEST_HTTP_PROXY_H
#define SQUIB_TEST_HTTP_PROXY_H

#include <pthread.h>
#include <stdint.h>

struct squib_test_proxy {
	int lfd;
	uint16_t port, upstream;
	int fail;	      /* __atomic: answer 503 */
	int stop;	      /* __atomic */
	int requests, failed; /* __atomic */
	pthread_t thr;
};

/* Listen on a free port of 127.0.0.1 and forward to 127.0.0.1:upstream. */
void squib_test_proxy_start(struct squib_test_proxy *p, uint16_t upstream);
/* 503 to every request from now on (true), or forward again (false). */
void squib_test_proxy_fail(struct squib_test_proxy *p, int on);
/* Stop and close: connections are refused from here on. Idempotent. */
void squib_test_proxy_kill(struct squib_test_proxy *p);

#endif
