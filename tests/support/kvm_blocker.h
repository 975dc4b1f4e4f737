/* SPDX-License-Identifier: Apache-2.0 */
/* A KVM port device that holds a vCPU outside KVM_RUN, for quiesce-timeout tests. */
#ifndef SQUIB_TEST_KVM_BLOCKER_H
#define SQUIB_TEST_KVM_BLOCKER_H

#include <pthread.h>
#include <stdbool.h>

#include <squib/kvm.h>

/*
 * A cmocka fixture: blocker_setup puts a blocking blocker in *state, the
 * test hands it the VM (and adapter) it registers the device on, and
 * blocker_teardown releases the blocker, frees the adapter and the VM
 * (joining the vCPU threads) and only then the blocker. cmocka runs the
 * teardown after a failed assertion too, so no vCPU thread of a failed test
 * goes on calling into a blocker that is gone.
 */
struct blocker {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool blocking;			   /* hold vCPUs in the device while set */
	bool entered;			   /* a vCPU has reached the device */
	struct squib_kvm_adapter *adapter; /* freed by the teardown, or NULL */
	struct squib_kvm_vm *vm;	   /* freed by the teardown, or NULL */
};

/* Device ops whose io callback blocks while ctx (a struct blocker) has blocking set. */
extern const struct squib_kvm_device_ops blocker_ops;

int blocker_setup(void **state);
int blocker_teardown(void **state);

/* Wait until a vCPU sits in the device. */
void blocker_wait_entered(struct blocker *b);

/* Stop holding vCPUs (they complete their port I/O and run on). */
void blocker_release(struct blocker *b);

#endif
