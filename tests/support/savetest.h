/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the save, load and crash tests (cmocka; not for forked children). */
#ifndef SQUIB_SAVETEST_H
#define SQUIB_SAVETEST_H

#include "testutil.h"
#include "testvm.h"

#include <squib/load.h>
#include <squib/save.h>

/* A temp directory with the pair's paths in it. */
struct savetest_dir {
	char *dir;
	char *state, *mem; /* x.snap, x.mem */
};

void savetest_dir_init(struct savetest_dir *t);
void savetest_dir_free(struct savetest_dir *t);

/* squib_error_format of a detail (static buffer). */
const char *savetest_message(const struct squib_error_detail *d);

/* A test VM or a failed test. */
struct squib_testvm *savetest_vm(const struct squib_testvm_config *cfg);

/* A restore target matching cfg's architecture and vCPUs (no memory of its own). */
struct squib_testvm *savetest_restore_vm(const struct squib_testvm_config *cfg);

/* Save or fail the test with the message. */
void savetest_save_ok(struct squib_testvm *vm, const struct squib_save_request *req,
		      struct squib_save_report *rep);

/* Load into a fresh restore VM (COPY, no chain) or fail; *rvm receives the VM. */
void savetest_load_ok(const struct squib_testvm_config *cfg, const struct squib_load_request *req,
		      struct squib_testvm **rvm, struct squib_load_result *res);

/* The guest memory of a load equals the VM's RAM, region by region. */
void savetest_assert_memory_equal(const struct squib_guest_memory *g, struct squib_testvm *vm);

/* The memory's fill statistics (squib_guest_memory_stats) as a value. */
struct squib_guest_memory_stats savetest_gm_stats(const struct squib_guest_memory *g);

/* Host address of region i of g (fails the test past the last). */
uint8_t *savetest_gm_host(const struct squib_guest_memory *g, uint32_t i);

/* Read a whole file or fail. */
void savetest_read(const char *path, uint8_t **buf, size_t *len);

/* Neither file, temp nor lock of the pair exists. */
void savetest_assert_no_files(const struct savetest_dir *t);

/* Temps of either file beside them (squib/atomic.h names). */
int savetest_temps(const struct savetest_dir *t);

/* Temps and lock files of either. */
int savetest_layer_files(const struct savetest_dir *t);

/* Unlink every temp of either (what a crash or failure left). */
void savetest_remove_temps(const struct savetest_dir *t);

/* The path of the state's temp (heap), NULL when there is none. */
char *savetest_state_temp(const struct savetest_dir *t);

/* The memory id a state file names (fails the test if none). */
void savetest_state_memory_id(const char *state_path, uint8_t id[SQUIB_MEMORY_ID_SIZE]);

#endif
