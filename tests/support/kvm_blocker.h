/* SPDX-License-Identifier: Apache-2.0 */
/* A KVM port device that holds a vCPU outside KVM_RUN, for quiesce-timeout tests. */
#ifndef SQUIB_TEST_KVM_BLOCKER_H
#define SQUIB_TEST_KVM_BLOCKER_H

#include <pthread.h>
#include <stdbool.h>

#include <squib/kvm.h>

struct blocker {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool blocking; /* hold vCPUs in the device while set */
	bool entered;  /* a vCPU has reached the device */
};

/* Device ops whose io callback blocks while ctx (a struct blocker) has blocking set. */
extern const struct squib_kvm_device_ops blocker_ops;

#endif
