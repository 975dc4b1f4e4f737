/* SPDX-License-Identifier: Apache-2.0 */
#include "kvm_blocker.h"

static int blocker_io(void *ctx, uint32_t vcpu, uint16_t port, bool is_write, uint8_t *data,
		      uint32_t size)
{
	struct blocker *b = ctx;

	(void)vcpu;
	(void)port;
	(void)is_write;
	(void)data;
	(void)size;
	pthread_mutex_lock(&b->lock);
	b->entered = true;
	pthread_cond_broadcast(&b->cond);
	while (b->blocking)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

const struct squib_kvm_device_ops blocker_ops = {
    .kind = "test-blocker",
    .io = blocker_io,
};
