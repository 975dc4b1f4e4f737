/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Port-I/O devices: the table, exit dispatch, device blobs in the state, and
 * the two built-in devices (console, counter report). The table is only
 * written before start, so vCPU threads read it without a lock; each device
 * guards its registers with its own mutex.
 */
#include "kvm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../util.h"

/* ---- the table ------------------------------------------------------------------ */

static int check_device(const struct squib_kvm_vm *vm, const char *id, uint16_t port,
			uint16_t count, const struct squib_kvm_device_ops *ops,
			struct squib_error_detail *d)
{
	if (!id || !*id || strlen(id) >= KVM_DEVICE_ID_MAX || !ops || !ops->io || !ops->kind ||
	    !count || (uint32_t)port + count > 0x10000)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "bad device (id, ports or ops)");
	if (vm->started)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "add_device after start");
	if (vm->device_count >= SQUIB_KVM_MAX_DEVICES)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "more than %d devices",
				      SQUIB_KVM_MAX_DEVICES);
	for (uint32_t i = 0; i < vm->device_count; i++) {
		const struct kvm_device *o = &vm->devices[i];
		if (port < o->port + o->count && o->port < port + count)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "ports 0x%x..0x%x of %s overlap %s", port,
					      port + count - 1, id, o->id);
	}
	return 0;
}

int squib_kvm_vm_add_device(struct squib_kvm_vm *vm, const char *id, uint16_t port, uint16_t count,
			    const struct squib_kvm_device_ops *ops, void *ctx,
			    struct squib_error_detail *d)
{
	struct kvm_device *dev;
	int rc;

	if (!vm) {
		if (ops && ops->free)
			ops->free(ctx);
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM");
	}
	kvm_lock(&vm->ctl);
	if ((rc = check_device(vm, id, port, count, ops, d))) {
		kvm_unlock(&vm->ctl);
		if (ops && ops->free)
			ops->free(ctx);
		return rc;
	}
	dev = &vm->devices[vm->device_count++];
	squib_strlcpy(dev->id, id, sizeof(dev->id));
	dev->port = port;
	dev->count = count;
	dev->ops = ops;
	dev->ctx = ctx;
	kvm_unlock(&vm->ctl);
	return 0;
}

void kvm_devices_free(struct squib_kvm_vm *vm)
{
	for (uint32_t i = 0; i < vm->device_count; i++)
		if (vm->devices[i].ops->free)
			vm->devices[i].ops->free(vm->devices[i].ctx);
	vm->device_count = 0;
}

static struct kvm_device *device_at(struct squib_kvm_vm *vm, uint16_t port)
{
	for (uint32_t i = 0; i < vm->device_count; i++) {
		struct kvm_device *dev = &vm->devices[i];
		if (port >= dev->port && port - dev->port < dev->count)
			return dev;
	}
	return NULL;
}

int kvm_dispatch_io(struct squib_kvm_vm *vm, struct kvm_vcpu *c)
{
	struct kvm_run *run = c->run;
	bool write = run->io.direction == KVM_EXIT_IO_OUT;
	struct kvm_device *dev = device_at(vm, run->io.port);
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		int rc;

		if (!write)
			memset(data, 0xff, run->io.size); /* an empty bus reads all ones */
		if (!dev)
			continue;
		rc = dev->ops->io(dev->ctx, c->index, run->io.port, write, data, run->io.size);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- blobs in the state ------------------------------------------------------------ */

int kvm_devices_save(struct squib_kvm_vm *vm, struct squib_microvm_state *s,
		     struct squib_error_detail *d)
{
	for (uint32_t i = 0; i < vm->device_count; i++) {
		struct kvm_device *dev = &vm->devices[i];
		uint8_t *blob = NULL;
		size_t len = 0;
		int rc;

		if (!dev->ops->save)
			continue;
		if ((rc = dev->ops->save(dev->ctx, &blob, &len)))
			return squib_fail_msg(d, rc, "device %s: save failed", dev->id);
		rc = squib_state_add_device(s, dev->ops->kind, dev->id, dev->port, blob, len);
		free(blob);
		if (rc)
			return squib_fail_msg(d, rc, "device %s: cannot add to the state", dev->id);
	}
	return 0;
}

static const struct squib_device_state *find_state_device(const struct squib_microvm_state *s,
							  const struct kvm_device *dev)
{
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct squib_device_state *sd = &s->devices[i];
		if (sd->mmio_slot == dev->port && sd->id && strcmp(sd->id, dev->id) == 0 &&
		    sd->kind && strcmp(sd->kind, dev->ops->kind) == 0)
			return sd;
	}
	return NULL;
}

int kvm_devices_restore(struct squib_kvm_vm *vm, const struct squib_microvm_state *s,
			struct squib_error_detail *d)
{
	for (uint32_t i = 0; i < vm->device_count; i++) {
		struct kvm_device *dev = &vm->devices[i];
		const struct squib_device_state *sd;
		int rc;

		if (!dev->ops->restore)
			continue;
		if (!(sd = find_state_device(s, dev)))
			return squib_fail_msg(d, SQUIB_E_INCOMPATIBLE,
					      "device %s (%s, port 0x%x) is not in the state",
					      dev->id, dev->ops->kind, dev->port);
		if ((rc = dev->ops->restore(dev->ctx, sd->blob, sd->blob_len)))
			return squib_fail_msg(d, rc, "device %s: its blob does not restore",
					      dev->id);
	}
	return 0;
}

/* ---- console ---------------------------------------------------------------------- */

struct squib_kvm_console {
	pthread_mutex_t lock;
	uint64_t total; /* bytes ever written; the ring holds the last min(total, RING) */
	uint8_t ring[SQUIB_KVM_CONSOLE_RING];
};

static int console_io(void *ctx, uint32_t vcpu, uint16_t port, bool is_write, uint8_t *data,
		      uint32_t size)
{
	struct squib_kvm_console *c = ctx;

	(void)vcpu;
	(void)port;
	if (!is_write) {
		memset(data, 0, size);
		data[0] = 0xe9; /* the Bochs debug port's "present" answer */
		return 0;
	}
	kvm_lock(&c->lock);
	c->ring[c->total++ % SQUIB_KVM_CONSOLE_RING] = data[0];
	kvm_unlock(&c->lock);
	return 0;
}

/* Under c->lock: the held bytes, oldest first. */
static size_t console_copy(const struct squib_kvm_console *c, uint8_t *out, size_t cap)
{
	size_t held = c->total < SQUIB_KVM_CONSOLE_RING ? (size_t)c->total : SQUIB_KVM_CONSOLE_RING;
	size_t n = held < cap ? held : cap;
	uint64_t first = c->total - n;

	for (size_t i = 0; i < n; i++)
		out[i] = c->ring[(first + i) % SQUIB_KVM_CONSOLE_RING];
	return n;
}

static int console_save(void *ctx, uint8_t **blob, size_t *len)
{
	struct squib_kvm_console *c = ctx;
	uint8_t *b = malloc(12 + SQUIB_KVM_CONSOLE_RING);
	size_t n;

	if (!b)
		return SQUIB_E_NOMEM;
	kvm_lock(&c->lock);
	squib_put_le64(b, c->total);
	n = console_copy(c, b + 12, SQUIB_KVM_CONSOLE_RING);
	kvm_unlock(&c->lock);
	squib_put_le32(b + 8, (uint32_t)n);
	*blob = b;
	*len = 12 + n;
	return 0;
}

static int console_restore(void *ctx, const uint8_t *blob, size_t len)
{
	struct squib_kvm_console *c = ctx;
	uint64_t total;
	uint32_t n;

	if (len < 12)
		return SQUIB_E_ENCODING;
	total = squib_get_le64(blob);
	n = squib_get_le32(blob + 8);
	if (n > SQUIB_KVM_CONSOLE_RING || len != 12 + (size_t)n || n > total ||
	    (n < SQUIB_KVM_CONSOLE_RING && n != total))
		return SQUIB_E_ENCODING;
	kvm_lock(&c->lock);
	c->total = total;
	for (uint32_t i = 0; i < n; i++)
		c->ring[(total - n + i) % SQUIB_KVM_CONSOLE_RING] = blob[12 + i];
	kvm_unlock(&c->lock);
	return 0;
}

static void console_free(void *ctx)
{
	struct squib_kvm_console *c = ctx;

	pthread_mutex_destroy(&c->lock);
	free(c);
}

static const struct squib_kvm_device_ops console_ops = {
    .kind = "squib-console",
    .io = console_io,
    .save = console_save,
    .restore = console_restore,
    .free = console_free,
};

int squib_kvm_vm_add_console(struct squib_kvm_vm *vm, uint16_t port, struct squib_kvm_console **out,
			     struct squib_error_detail *d)
{
	struct squib_kvm_console *c = calloc(1, sizeof(*c));
	int rc;

	if (!c || pthread_mutex_init(&c->lock, NULL)) {
		free(c);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	rc = squib_kvm_vm_add_device(vm, "console", port, 1, &console_ops, c, d);
	if (!rc && out)
		*out = c;
	return rc;
}

size_t squib_kvm_console_read(struct squib_kvm_console *c, char *buf, size_t cap)
{
	size_t n;

	if (!c || !buf || !cap)
		return 0;
	kvm_lock(&c->lock);
	n = console_copy(c, (uint8_t *)buf, cap - 1);
	kvm_unlock(&c->lock);
	buf[n] = '\0';
	return n;
}

/* ---- counter report ---------------------------------------------------------------- */

#define COUNTER_BLOB_VERSION 1u

struct counter_slot {
	uint64_t last;
	uint64_t reports;
};

struct squib_kvm_counter {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast on every report */
	uint32_t vcpus;
	struct counter_slot slot[SQUIB_KVM_MAX_VCPUS];
};

static int counter_io(void *ctx, uint32_t vcpu, uint16_t port, bool is_write, uint8_t *data,
		      uint32_t size)
{
	struct squib_kvm_counter *c = ctx;
	uint32_t v = 0;

	(void)port;
	if (!is_write) {
		memset(data, 0, size);
		return 0;
	}
	memcpy(&v, data, size < 4 ? size : 4);
	kvm_lock(&c->lock);
	if (vcpu < c->vcpus) {
		c->slot[vcpu].last = v;
		c->slot[vcpu].reports++;
	}
	pthread_cond_broadcast(&c->cond);
	kvm_unlock(&c->lock);
	return 0;
}

static int counter_save(void *ctx, uint8_t **blob, size_t *len)
{
	struct squib_kvm_counter *c = ctx;
	size_t n = 8 + 16 * (size_t)c->vcpus;
	uint8_t *b = malloc(n);

	if (!b)
		return SQUIB_E_NOMEM;
	squib_put_le32(b, COUNTER_BLOB_VERSION);
	squib_put_le32(b + 4, c->vcpus);
	kvm_lock(&c->lock);
	for (uint32_t i = 0; i < c->vcpus; i++) {
		squib_put_le64(b + 8 + 16 * i, c->slot[i].last);
		squib_put_le64(b + 16 + 16 * i, c->slot[i].reports);
	}
	kvm_unlock(&c->lock);
	*blob = b;
	*len = n;
	return 0;
}

static int counter_restore(void *ctx, const uint8_t *blob, size_t len)
{
	struct squib_kvm_counter *c = ctx;

	if (len != 8 + 16 * (size_t)c->vcpus || squib_get_le32(blob) != COUNTER_BLOB_VERSION ||
	    squib_get_le32(blob + 4) != c->vcpus)
		return SQUIB_E_ENCODING;
	kvm_lock(&c->lock);
	for (uint32_t i = 0; i < c->vcpus; i++) {
		c->slot[i].last = squib_get_le64(blob + 8 + 16 * i);
		c->slot[i].reports = squib_get_le64(blob + 16 + 16 * i);
	}
	pthread_cond_broadcast(&c->cond);
	kvm_unlock(&c->lock);
	return 0;
}

static void counter_free(void *ctx)
{
	struct squib_kvm_counter *c = ctx;

	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static const struct squib_kvm_device_ops counter_ops = {
    .kind = "squib-counter",
    .io = counter_io,
    .save = counter_save,
    .restore = counter_restore,
    .free = counter_free,
};

static struct squib_kvm_counter *counter_alloc(uint32_t vcpus)
{
	struct squib_kvm_counter *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;

	if (!c)
		return NULL;
	c->vcpus = vcpus;
	if (pthread_condattr_init(&ca)) {
		free(c);
		return NULL;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (pthread_cond_init(&c->cond, &ca)) {
		pthread_condattr_destroy(&ca);
		free(c);
		return NULL;
	}
	pthread_condattr_destroy(&ca);
	if (pthread_mutex_init(&c->lock, NULL)) {
		pthread_cond_destroy(&c->cond);
		free(c);
		return NULL;
	}
	return c;
}

int squib_kvm_vm_add_counter(struct squib_kvm_vm *vm, uint16_t port, struct squib_kvm_counter **out,
			     struct squib_error_detail *d)
{
	struct squib_kvm_counter *c;
	int rc;

	if (!vm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM");
	if (!(c = counter_alloc(vm->cfg.vcpu_count)))
		return squib_fail(d, SQUIB_E_NOMEM);
	rc = squib_kvm_vm_add_device(vm, "counter", port, 1, &counter_ops, c, d);
	if (!rc && out)
		*out = c;
	return rc;
}

bool squib_kvm_counter_get(struct squib_kvm_counter *c, uint32_t vcpu, uint64_t *last,
			   uint64_t *reports)
{
	if (!c || vcpu >= c->vcpus)
		return false;
	kvm_lock(&c->lock);
	if (last)
		*last = c->slot[vcpu].last;
	if (reports)
		*reports = c->slot[vcpu].reports;
	kvm_unlock(&c->lock);
	return true;
}

int squib_kvm_counter_wait(struct squib_kvm_counter *c, uint32_t vcpu, uint64_t min_reports,
			   uint32_t timeout_ms, uint64_t *last, struct squib_error_detail *d)
{
	struct timespec deadline = kvm_deadline_after_ms(timeout_ms);
	int err = 0;

	if (!c || vcpu >= c->vcpus)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "bad counter or vCPU");
	kvm_lock(&c->lock);
	while (c->slot[vcpu].reports < min_reports && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&c->cond, &c->lock, &deadline);
	if (last)
		*last = c->slot[vcpu].last;
	err = c->slot[vcpu].reports < min_reports ? ETIMEDOUT : 0;
	kvm_unlock(&c->lock);
	return err ? squib_fail_errno(d, SQUIB_E_IO, err) : 0;
}
