/* SPDX-License-Identifier: Apache-2.0 */
#include "savetest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/envelope.h>

void savetest_dir_init(struct savetest_dir *t)
{
	t->dir = squib_test_tmpdir();
	t->state = squib_test_path(t->dir, "x.snap");
	t->mem = squib_test_path(t->dir, "x.mem");
}

void savetest_dir_free(struct savetest_dir *t)
{
	squib_test_rmtree(t->dir);
	free(t->dir);
	free(t->state);
	free(t->mem);
}

const char *savetest_message(const struct squib_error_detail *d)
{
	static char buf[SQUIB_ERROR_TEXT_MAX];

	squib_error_format(d->code, d, buf, sizeof(buf));
	return buf;
}

struct squib_testvm *savetest_vm(const struct squib_testvm_config *cfg)
{
	struct squib_testvm *vm = NULL;

	assert_int_equal(squib_testvm_new(cfg, &vm), 0);
	return vm;
}

struct squib_testvm *savetest_restore_vm(const struct squib_testvm_config *cfg)
{
	struct squib_testvm_config c = *cfg;

	c.no_memory = true;
	c.with_tracker = false;
	c.region_count = 0;
	c.stuck_vcpu = -1;
	return savetest_vm(&c);
}

void savetest_save_ok(struct squib_testvm *vm, const struct squib_save_request *req,
		      struct squib_save_report *rep)
{
	struct squib_vm v = squib_testvm_vm(vm);
	struct squib_error_detail d;

	if (squib_save(&v, req, rep, &d))
		fail_msg("save: %s", savetest_message(&d));
}

void savetest_load_ok(const struct squib_testvm_config *cfg, const struct squib_load_request *req,
		      struct squib_testvm **rvm, struct squib_load_result *res)
{
	struct squib_vm v;
	struct squib_error_detail d;

	*rvm = savetest_restore_vm(cfg);
	v = squib_testvm_vm(*rvm);
	if (squib_load(&v, req, res, &d))
		fail_msg("load: %s", savetest_message(&d));
}

void savetest_assert_memory_equal(const struct squib_guest_memory *g, struct squib_testvm *vm)
{
	uint32_t n;
	const struct squib_vm_region *gr = squib_guest_memory_regions(g, &n);

	assert_non_null(g);
	for (uint32_t i = 0; i < n; i++) {
		const struct squib_vm_region *r = squib_testvm_region(vm, i);

		assert_non_null(r);
		assert_int_equal(gr[i].guest_addr, r->guest_addr);
		assert_int_equal(gr[i].size, r->size);
		assert_memory_equal(gr[i].host, r->host, r->size);
	}
	assert_null(squib_testvm_region(vm, n));
}

struct squib_guest_memory_stats savetest_gm_stats(const struct squib_guest_memory *g)
{
	struct squib_guest_memory_stats s;

	assert_non_null(g);
	squib_guest_memory_stats(g, &s);
	return s;
}

uint8_t *savetest_gm_host(const struct squib_guest_memory *g, uint32_t i)
{
	const struct squib_vm_region *r = squib_guest_memory_region(g, i);

	assert_non_null(r);
	return r->host;
}

void savetest_read(const char *path, uint8_t **buf, size_t *len)
{
	if (squib_test_read_file(path, buf, len))
		fail_msg("cannot read %s", path);
}

void savetest_assert_no_files(const struct savetest_dir *t)
{
	assert_false(squib_test_exists(t->state));
	assert_false(squib_test_exists(t->mem));
	assert_int_equal(savetest_layer_files(t), 0);
}

int savetest_temps(const struct savetest_dir *t)
{
	return squib_test_temps(t->state, NULL) + squib_test_temps(t->mem, NULL);
}

int savetest_layer_files(const struct savetest_dir *t)
{
	return squib_test_layer_files(t->state, NULL) + squib_test_layer_files(t->mem, NULL);
}

char *savetest_state_temp(const struct savetest_dir *t)
{
	char *p;

	squib_test_temps(t->state, &p);
	return p;
}

void savetest_state_memory_id(const char *state_path, uint8_t id[SQUIB_MEMORY_ID_SIZE])
{
	struct squib_microvm_state s;

	assert_int_equal(squib_state_load_file(state_path, SQUIB_ARCH_ANY, &s, NULL, NULL), 0);
	assert_non_null(s.memory);
	memcpy(id, s.memory->id, SQUIB_MEMORY_ID_SIZE);
	squib_state_free(&s);
}

void savetest_remove_temps(const struct savetest_dir *t)
{
	const char *paths[] = {t->state, t->mem};
	char *p;

	for (int i = 0; i < 2; i++)
		while (squib_test_temps(paths[i], &p)) {
			assert_int_equal(unlink(p), 0);
			free(p);
		}
}
