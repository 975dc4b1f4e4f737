/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fixed pool of worker threads over a bounded queue: the producer (the
 * thread reading pages) blocks while `depth` jobs wait, which bounds the
 * memory a push or pull holds to about (threads + depth) jobs. The first
 * job that fails stops the pool: later submits fail with its error and
 * queued jobs are dropped (each job owns and frees itself in fn).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

struct squib_store_pool {
	pthread_mutex_t mu;
	pthread_cond_t changed;
	void **q;
	uint32_t depth, head, count, running, nthreads;
	bool closing;
	int err;
	struct squib_error_detail detail;
	squib_store_job_fn fn;
	pthread_t *threads;
};

static void *worker(void *arg)
{
	struct squib_store_pool *p = arg;
	struct squib_error_detail d;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		void *job;
		bool failed;
		int r;

		while (!p->count && !p->closing)
			pthread_cond_wait(&p->changed, &p->mu);
		if (!p->count)
			break;
		job = p->q[p->head];
		p->head = (p->head + 1) % p->depth;
		p->count--;
		p->running++;
		failed = p->err != 0;
		pthread_cond_broadcast(&p->changed);
		pthread_mutex_unlock(&p->mu);
		memset(&d, 0, sizeof(d));
		/* After a failure the job still runs fn, told to only free itself. */
		r = p->fn(job, failed ? NULL : &d);
		pthread_mutex_lock(&p->mu);
		p->running--;
		if (r && !p->err) {
			p->err = r;
			p->detail = d;
		}
		pthread_cond_broadcast(&p->changed);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int squib_store_pool_start(uint32_t n, uint32_t depth, squib_store_job_fn fn,
			   struct squib_store_pool **out, struct squib_error_detail *d)
{
	struct squib_store_pool *p = calloc(1, sizeof(*p));

	*out = NULL;
	if (!p || !(p->q = calloc(depth, sizeof(void *))) ||
	    !(p->threads = calloc(n, sizeof(pthread_t)))) {
		if (p)
			free(p->q);
		free(p);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->changed, NULL);
	p->depth = depth;
	p->fn = fn;
	for (; p->nthreads < n; p->nthreads++)
		if (pthread_create(&p->threads[p->nthreads], NULL, worker, p))
			break;
	if (!p->nthreads) {
		squib_store_pool_finish(p, NULL);
		return squib_fail_msg(d, SQUIB_E_NOMEM, "store: no worker thread could start");
	}
	*out = p;
	return 0;
}

int squib_store_pool_submit(struct squib_store_pool *p, void *job, struct squib_error_detail *d)
{
	int r;

	pthread_mutex_lock(&p->mu);
	while (p->count == p->depth && !p->err)
		pthread_cond_wait(&p->changed, &p->mu);
	if (!(r = p->err)) {
		p->q[(p->head + p->count) % p->depth] = job;
		p->count++;
		pthread_cond_broadcast(&p->changed);
	} else if (d) {
		*d = p->detail;
	}
	pthread_mutex_unlock(&p->mu);
	return r;
}

int squib_store_pool_finish(struct squib_store_pool *p, struct squib_error_detail *d)
{
	int r;

	pthread_mutex_lock(&p->mu);
	p->closing = true;
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->mu);
	for (uint32_t i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	r = p->err;
	if (r && d)
		*d = p->detail;
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->changed);
	free(p->q);
	free(p->threads);
	free(p);
	return r;
}
