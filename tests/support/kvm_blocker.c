/* SPDX-License-Identifier: Apache-2.0 */
#include "kvm_blocker.h"

#include <stdlib.h>

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

int blocker_setup(void **state)
{
	struct blocker *b = calloc(1, sizeof(*b));

	if (!b)
		return -1;
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->blocking = true;
	*state = b;
	return 0;
}

int blocker_teardown(void **state)
{
	struct blocker *b = *state;

	blocker_release(b);
	squib_kvm_adapter_free(b->adapter);
	squib_kvm_vm_free(b->vm);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
	return 0;
}

void blocker_wait_entered(struct blocker *b)
{
	pthread_mutex_lock(&b->lock);
	while (!b->entered)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
}

void blocker_release(struct blocker *b)
{
	pthread_mutex_lock(&b->lock);
	b->blocking = false;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}
