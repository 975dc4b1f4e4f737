/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pager under concurrency (run under TSan too: the name ends in
 * _concurrency): threads faulting the same pages at once, a thread removing
 * ranges (MADV_DONTNEED) while others read, a thread reading statistics all
 * the while. Real userfaultfd; skipped loudly without it.
 */
#include "pair.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <squib/memfile.h>
#include <squib/pager.h>

#define PAGES	512
#define READERS 4
#define ROUNDS	3

static bool uffd_missing(void)
{
	long fd = syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd >= 0) {
		close((int)fd);
		return false;
	}
	return errno == ENOSYS && access("/dev/userfaultfd", F_OK) != 0;
}

struct shared {
	uint8_t *mem;
	const uint8_t *want;
	uint64_t ps;
	const struct squib_pager *pager;
	atomic_bool done;
	atomic_uint_fast64_t bad;
};

/* Every reader walks all pages in the same order: they fault the same pages at once. */
static void *reader(void *arg)
{
	struct shared *s = arg;

	for (int r = 0; r < ROUNDS; r++)
		for (uint64_t k = 0; k < PAGES; k++)
			if (memcmp(s->mem + k * s->ps, s->want + k * s->ps, s->ps))
				atomic_fetch_add(&s->bad, 1);
	return NULL;
}

/* Drops ranges while the readers run: they must read the file's content again. */
static void *remover(void *arg)
{
	struct shared *s = arg;
	uint64_t k = 0;

	while (!atomic_load(&s->done)) {
		madvise(s->mem + k * s->ps, 8 * s->ps, MADV_DONTNEED);
		k = (k + 37) % (PAGES - 8);
		usleep(200);
	}
	return NULL;
}

static void *stats_reader(void *arg)
{
	struct shared *s = arg;
	struct squib_pager_stats st;

	while (!atomic_load(&s->done)) {
		squib_pager_stats(s->pager, &st);
		if (st.pages_present > st.page_count)
			atomic_fetch_add(&s->bad, 1);
		usleep(100);
	}
	return NULL;
}

static void test_should_serve_concurrent_faults_and_removes(void **state)
{
	char *dir = squib_test_tmpdir(), *path = squib_test_path(dir, "c.mem");
	uint64_t ps = squib_test_page_size();
	uint8_t *want = squib_test_guest_ram(PAGES * ps, 77);
	struct squib_memfile *m;
	struct squib_page_source src;
	struct squib_pager_region r;
	struct squib_pager *p;
	struct squib_pager_stats st;
	struct squib_error_detail d;
	struct shared s;
	pthread_t rd[READERS], rm, sr;

	(void)state;
	if (uffd_missing()) {
		fprintf(stderr,
			"*** SKIP: userfaultfd does not exist (ENOSYS): pager not tested ***\n");
		skip();
	}
	for (uint64_t k = 0; k < PAGES; k += 3)
		memset(want + k * ps, 0, ps);
	squib_test_save_full(path, want, PAGES * ps, false, NULL);
	assert_int_equal(squib_memfile_open(path, &m, &d), 0);
	assert_int_equal(squib_page_source_file(m, &src, &d), 0);
	memset(&s, 0, sizeof(s));
	s.mem = mmap(NULL, PAGES * ps, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(s.mem != MAP_FAILED);
	s.want = want;
	s.ps = ps;
	r = (struct squib_pager_region){s.mem, PAGES * ps, 0};
	assert_int_equal(squib_pager_start(&r, 1, src, NULL, &p, &d), 0);
	s.pager = p;
	assert_int_equal(pthread_create(&rm, NULL, remover, &s), 0);
	assert_int_equal(pthread_create(&sr, NULL, stats_reader, &s), 0);
	for (int i = 0; i < READERS; i++)
		assert_int_equal(pthread_create(&rd[i], NULL, reader, &s), 0);
	for (int i = 0; i < READERS; i++)
		pthread_join(rd[i], NULL);
	atomic_store(&s.done, true);
	pthread_join(rm, NULL);
	pthread_join(sr, NULL);
	assert_int_equal(atomic_load(&s.bad), 0);
	assert_memory_equal(s.mem, want, PAGES * ps);
	squib_pager_stats(p, &st);
	assert_int_equal(st.errors, 0);
	assert_int_equal(squib_pager_error(p, NULL), 0);
	assert_true(st.faults > 0);
	squib_pager_free(p);
	squib_memfile_close(m);
	munmap(s.mem, PAGES * ps);
	munmap(want, PAGES * ps);
	squib_test_rmtree(dir);
	free(path);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_serve_concurrent_faults_and_removes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
