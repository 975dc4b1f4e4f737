/* SPDX-License-Identifier: Apache-2.0 */

#include "pair.h"

#include "fixtures.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/dirty.h>
#include <squib/envelope.h>

static const char *message(const struct squib_error_detail *d, char *buf, size_t len)
{
	squib_error_message(d->code, d, buf, len);
	return buf;
}

uint64_t squib_test_page_size(void)
{
	return (uint64_t)sysconf(_SC_PAGESIZE);
}

void squib_test_fill_page(uint8_t *mem, uint64_t page, uint32_t seed)
{
	uint64_t ps = squib_test_page_size();
	uint8_t *p = mem + page * ps;

	for (uint64_t i = 0; i < ps; i++)
		p[i] = (uint8_t)(((i * 131) ^ (seed + page * 7)) % 251 + 1);
}

uint8_t *squib_test_guest_ram(uint64_t size, uint32_t seed)
{
	void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		fail_msg("mmap of %llu bytes: %s", (unsigned long long)size, strerror(errno));
	madvise(p, (size_t)size, MADV_NOHUGEPAGE);
	for (uint64_t pg = 0; pg < size / squib_test_page_size(); pg++)
		squib_test_fill_page(p, pg, seed);
	return p;
}

static struct squib_memfile_source source(const uint8_t *mem, uint64_t size,
					  struct squib_memfile_source_region *r)
{
	*r = (struct squib_memfile_source_region){SQUIB_TEST_GUEST_BASE, size, mem};
	return (struct squib_memfile_source){r, 1, squib_test_page_size()};
}

void squib_test_save_full(const char *path, const uint8_t *mem, uint64_t size, bool digests,
			  struct squib_memfile_manifest *out)
{
	struct squib_memfile_write_options o = {.digests = digests};
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = source(mem, size, &r);
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	char msg[1024];

	if (squib_memfile_save_full(path, &src, &o, &m, &d))
		fail_msg("save_full %s: %s (%s)", path, message(&d, msg, sizeof(msg)), d.msg);
	if (out)
		*out = m;
	else
		squib_memfile_manifest_release(&m);
}

void squib_test_save_diff(const char *path, const uint8_t *mem, uint64_t size,
			  const uint8_t parent[SQUIB_MEMORY_ID_SIZE], const uint64_t *pages,
			  size_t n, bool digests, struct squib_memfile_manifest *out)
{
	struct squib_memfile_write_options o = {.digests = digests};

	squib_test_save_diff_ex(path, mem, size, parent, pages, n, &o, out);
}

void squib_test_save_diff_ex(const char *path, const uint8_t *mem, uint64_t size,
			     const uint8_t parent[SQUIB_MEMORY_ID_SIZE], const uint64_t *pages,
			     size_t n, const struct squib_memfile_write_options *opts,
			     struct squib_memfile_manifest *out)
{
	struct squib_memfile_write_options o = *opts;
	struct squib_memfile_source_region r;
	struct squib_memfile_source src = source(mem, size, &r);
	struct squib_dirty_bitmap *bm = NULL;
	struct squib_memfile_manifest m;
	struct squib_error_detail d;
	char msg[1024];

	if (squib_dirty_bitmap_new(SQUIB_TEST_GUEST_BASE, size, squib_test_page_size(), &bm, &d))
		fail_msg("bitmap: %s", message(&d, msg, sizeof(msg)));
	for (size_t i = 0; i < n; i++)
		squib_dirty_bitmap_set_by_index(bm, pages[i]);
	const struct squib_dirty_bitmap *const *bms = (const struct squib_dirty_bitmap *const *)&bm;

	if (squib_memfile_save_diff(path, &src, parent, bms, 1, &o, &m, &d))
		fail_msg("save_diff %s: %s (%s)", path, message(&d, msg, sizeof(msg)), d.msg);
	squib_dirty_bitmap_free(bm);
	if (out)
		*out = m;
	else
		squib_memfile_manifest_release(&m);
}

void squib_test_save_state(const char *path, const struct squib_memory_layout *l)
{
	struct squib_microvm_state s;
	struct squib_error_detail d;
	char msg[1024];

	if (squib_fixture_minimal(&s))
		fail_msg("building the minimal state failed");
	if (squib_state_set_memory(&s, l, &d) || squib_state_save_file(path, &s, &d))
		fail_msg("saving state %s: %s", path, message(&d, msg, sizeof(msg)));
	squib_state_free(&s);
}

void squib_test_save_pair(const char *dir, const char *stem, const uint8_t *mem, uint64_t size,
			  bool digests, char **state_path, char **mem_path,
			  struct squib_memfile_manifest *out)
{
	struct squib_memfile_manifest m;
	char *snap = NULL, *memf = NULL;

	if (asprintf(&snap, "%s/%s.snap", dir, stem) < 0 ||
	    asprintf(&memf, "%s/%s.mem", dir, stem) < 0)
		fail_msg("asprintf failed");
	squib_test_save_full(memf, mem, size, digests, &m);
	squib_test_save_state(snap, &m.layout);
	if (out)
		*out = m;
	else
		squib_memfile_manifest_release(&m);
	if (state_path)
		*state_path = snap;
	else
		free(snap);
	if (mem_path)
		*mem_path = memf;
	else
		free(memf);
}

uint64_t squib_test_file_size(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0)
		fail_msg("stat %s: %s", path, strerror(errno));
	return (uint64_t)st.st_size;
}

void squib_test_xor_byte(const char *path, int64_t off, uint8_t mask)
{
	uint64_t at = off < 0 ? squib_test_file_size(path) - (uint64_t)(-off) : (uint64_t)off;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t b = 0;

	if (fd < 0 || pread(fd, &b, 1, (off_t)at) != 1)
		fail_msg("reading byte %llu of %s", (unsigned long long)at, path);
	b ^= mask;
	if (pwrite(fd, &b, 1, (off_t)at) != 1)
		fail_msg("writing byte %llu of %s", (unsigned long long)at, path);
	close(fd);
}

void squib_test_save_x86_state(const char *path, const struct squib_memory_layout *l)
{
	struct squib_microvm_state s;
	struct squib_x86_vm_state vm;
	struct squib_error_detail d;
	struct squib_x86_vcpu *v;

	memset(&vm, 0, sizeof(vm));
	squib_state_init(&s, SQUIB_ARCH_X86_64);
	assert_int_equal(squib_state_set_x86_vm(&s, &vm), 0);
	assert_int_equal(squib_state_add_x86_vcpu(&s, &v), 0);
	assert_int_equal(squib_state_set_memory(&s, l, &d), 0);
	assert_int_equal(squib_state_save_file(path, &s, &d), 0);
	squib_state_free(&s);
}
