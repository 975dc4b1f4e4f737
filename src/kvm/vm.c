/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The KVM VM object: /dev/kvm, KVM_CREATE_VM, in-kernel irqchip and PIT,
 * dirty-log mode, the kick signal's handler, RAM memslots. Construction is a
 * ladder; squib_kvm_vm_free unwinds whatever rungs were reached, in reverse.
 */
#include "kvm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../util.h"

/* Below 4 GiB, above any RAM the tests map; what kvmtool and QEMU use. */
#define KVM_TSS_ADDR 0xfffbd000ul

int kvm_fail_ioctl(struct squib_error_detail *d, const char *name)
{
	char buf[128];
	int err = errno;

	return squib_fail_msg(d, SQUIB_E_CAPTURE, "%s: %s", name,
			      strerror_r(err, buf, sizeof(buf)));
}

int kvm_ioctl(int fd, unsigned long req, void *arg)
{
	int rc;

	do
		rc = ioctl(fd, req, arg);
	while (rc < 0 && errno == EINTR);
	return rc;
}

struct timespec kvm_deadline_after_ms(uint32_t ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

struct kvm_cpuid2 *kvm_cpuid_alloc(uint32_t n)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (size_t)n * sizeof(c->entries[0]));

	if (c)
		c->nent = n;
	return c;
}

struct kvm_msrs *kvm_msrs_alloc(uint32_t n)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + (size_t)n * sizeof(m->entries[0]));

	if (m)
		m->nmsrs = n;
	return m;
}

bool squib_kvm_available(const char *device_path)
{
	return access(device_path ? device_path : "/dev/kvm", F_OK) == 0;
}

/* ---- the kick signal -------------------------------------------------------- */

static void kick_handler(int sig)
{
	(void)sig; /* interrupting KVM_RUN is all it is for */
}

/* Install the no-op handler unless the signal already has one (see kvm.h). */
static int install_kick_handler(int sig, struct squib_error_detail *d)
{
	struct sigaction cur, sa;

	if (sigaction(sig, NULL, &cur))
		return squib_fail_errno(d, SQUIB_E_IO, errno);
	if (!(cur.sa_flags & SA_SIGINFO) &&
	    (cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN)) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = kick_handler;
		sigemptyset(&sa.sa_mask);
		if (sigaction(sig, &sa, NULL))
			return squib_fail_errno(d, SQUIB_E_IO, errno);
	}
	return 0;
}

/* ---- construction ------------------------------------------------------------- */

static int check_config(const struct squib_kvm_config *cfg, struct squib_error_detail *d)
{
	int sig = cfg->kick_signal;

	if (cfg->vcpu_count < 1 || cfg->vcpu_count > SQUIB_KVM_MAX_VCPUS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "vcpu_count %u (1..%d)",
				      cfg->vcpu_count, SQUIB_KVM_MAX_VCPUS);
	if (sig < 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP || sig == SIGSEGV)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "kick_signal %d", sig);
	if ((unsigned)cfg->dirty_log > SQUIB_KVM_DIRTY_LOG_CLASSIC)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "dirty_log mode %d",
				      (int)cfg->dirty_log);
	return 0;
}

static int init_sync(struct squib_kvm_vm *vm)
{
	pthread_condattr_t ca;
	int rc;

	if (pthread_condattr_init(&ca))
		return SQUIB_E_NOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (rc)
		return SQUIB_E_NOMEM;
	if (pthread_mutex_init(&vm->lock, NULL)) {
		pthread_cond_destroy(&vm->cond);
		return SQUIB_E_NOMEM;
	}
	if (pthread_mutex_init(&vm->ctl, NULL)) {
		pthread_mutex_destroy(&vm->lock);
		pthread_cond_destroy(&vm->cond);
		return SQUIB_E_NOMEM;
	}
	return 0;
}

static int open_kvm(struct squib_kvm_vm *vm, const char *path, struct squib_error_detail *d)
{
	int api, size;

	vm->kvm_fd = open(path, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return squib_fail_errno_msg(d, SQUIB_E_IO, errno, "opening %s", path);
	api = kvm_ioctl(vm->kvm_fd, KVM_GET_API_VERSION, NULL);
	if (api != KVM_API_VERSION)
		return squib_fail_msg(d, SQUIB_E_CAPTURE, "KVM_GET_API_VERSION: %d (need %d)", api,
				      KVM_API_VERSION);
	size = kvm_ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, NULL);
	if (size < (int)sizeof(struct kvm_run))
		return kvm_fail_ioctl(d, "KVM_GET_VCPU_MMAP_SIZE");
	vm->run_size = (size_t)size;
	vm->vm_fd = kvm_ioctl(vm->kvm_fd, KVM_CREATE_VM, NULL);
	if (vm->vm_fd < 0)
		return kvm_fail_ioctl(d, "KVM_CREATE_VM");
	return 0;
}

static int set_tss(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	if (kvm_ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (void *)KVM_TSS_ADDR))
		return kvm_fail_ioctl(d, "KVM_SET_TSS_ADDR");
	return 0;
}

static int create_irqchip(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	struct kvm_pit_config pit = {.flags = 0};

	if (!vm->cfg.irqchip)
		return 0;
	if (kvm_ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, NULL))
		return kvm_fail_ioctl(d, "KVM_CREATE_IRQCHIP");
	if (kvm_ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit))
		return kvm_fail_ioctl(d, "KVM_CREATE_PIT2");
	return 0;
}

int kvm_vm_realize(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	int rc;

	if (!vm->irqchip_created) {
		if ((rc = create_irqchip(vm, d)))
			return rc;
		vm->irqchip_created = true;
	}
	if (!vm->vcpus_created) {
		if ((rc = kvm_vcpus_create(vm, d)))
			return rc;
		vm->vcpus_created = true;
	}
	return 0;
}

/* Manual-protect dirty log when offered and wanted, with INITIALLY_SET in AUTO mode. */
static int enable_dirty_log_mode(struct squib_kvm_vm *vm, struct squib_error_detail *d)
{
	int cap = kvm_ioctl(vm->vm_fd, KVM_CHECK_EXTENSION,
			    (void *)(uintptr_t)KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	struct kvm_enable_cap ec = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2};
	uint64_t want = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;

	if (vm->cfg.dirty_log == SQUIB_KVM_DIRTY_LOG_CLASSIC || cap <= 0 ||
	    !(cap & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		return 0;
	if (vm->cfg.dirty_log == SQUIB_KVM_DIRTY_LOG_AUTO)
		want |= KVM_DIRTY_LOG_INITIALLY_SET;
	ec.args[0] = (uint64_t)cap & want;
	if (kvm_ioctl(vm->vm_fd, KVM_ENABLE_CAP, &ec))
		return kvm_fail_ioctl(d, "KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2)");
	vm->manual_protect = ec.args[0];
	return 0;
}

static void probe_xsave(struct squib_kvm_vm *vm)
{
	int size = kvm_ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_XSAVE2);

	if (size >= (int)sizeof(struct kvm_xsave))
		vm->xsave_size = (uint32_t)size;
	else if (kvm_ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, (void *)(uintptr_t)KVM_CAP_XSAVE) > 0)
		vm->xsave_size = sizeof(struct kvm_xsave);
}

int squib_kvm_vm_new(const struct squib_kvm_config *cfg, struct squib_kvm_vm **out,
		     struct squib_error_detail *d)
{
	struct squib_kvm_vm *vm;
	int rc;

	if (!cfg || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL argument to vm_new");
	*out = NULL;
	if ((rc = check_config(cfg, d)))
		return rc;
	if (!(vm = calloc(1, sizeof(*vm))))
		return squib_fail(d, SQUIB_E_NOMEM);
	vm->cfg = *cfg;
	vm->cfg.device_path = NULL; /* the caller's string need not outlive us */
	if (!vm->cfg.kick_signal)
		vm->cfg.kick_signal = SIGRTMIN;
	if (!vm->cfg.pause_timeout_ms)
		vm->cfg.pause_timeout_ms = SQUIB_KVM_DEFAULT_PAUSE_TIMEOUT_MS;
	vm->kvm_fd = vm->vm_fd = -1;
	for (uint32_t i = 0; i < SQUIB_KVM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = -1;
	if (init_sync(vm)) {
		free(vm);
		return squib_fail(d, SQUIB_E_NOMEM);
	}
	rc = open_kvm(vm, cfg->device_path ? cfg->device_path : "/dev/kvm", d);
	if (!rc && !(rc = install_kick_handler(vm->cfg.kick_signal, d)) && !(rc = set_tss(vm, d)) &&
	    !(rc = enable_dirty_log_mode(vm, d)))
		probe_xsave(vm); /* the irqchip and the vCPUs come later: kvm_vm_realize */
	if (rc) {
		squib_kvm_vm_free(vm);
		return rc;
	}
	*out = vm;
	return 0;
}

void squib_kvm_vm_free(struct squib_kvm_vm *vm)
{
	if (!vm)
		return;
	kvm_vcpus_destroy(vm); /* joins the threads first */
	kvm_devices_free(vm);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd); /* the memslots go with the VM */
	for (uint32_t i = 0; i < vm->slot_count; i++)
		if (vm->slots[i].owned)
			munmap(vm->slots[i].hva, vm->slots[i].size);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	free(vm->msrs);
	free(vm->fail_detail);
	pthread_mutex_destroy(&vm->ctl);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	free(vm);
}

uint32_t squib_kvm_vm_vcpu_count(const struct squib_kvm_vm *vm)
{
	return vm ? vm->cfg.vcpu_count : 0;
}

uint64_t squib_kvm_vm_dirty_log_flags(const struct squib_kvm_vm *vm)
{
	return vm ? vm->manual_protect : 0;
}

/* ---- RAM ---------------------------------------------------------------------- */

static int check_ram_range(const struct squib_kvm_vm *vm, uint64_t gpa, uint64_t size, void *hva,
			   struct squib_error_detail *d)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (!size || gpa % page || size % page || ((uintptr_t)hva % page) || gpa + size < gpa)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "RAM [0x%llx, +0x%llx) at %p is not host-page aligned",
				      (unsigned long long)gpa, (unsigned long long)size, hva);
	if (vm->slot_count >= SQUIB_KVM_MAX_SLOTS)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "more than %d RAM regions",
				      SQUIB_KVM_MAX_SLOTS);
	for (uint32_t i = 0; i < vm->slot_count; i++) {
		const struct kvm_slot *s = &vm->slots[i];
		if (gpa < s->gpa + s->size && s->gpa < gpa + size)
			return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
					      "RAM at 0x%llx overlaps the region at 0x%llx",
					      (unsigned long long)gpa, (unsigned long long)s->gpa);
	}
	return 0;
}

static int set_region(struct squib_kvm_vm *vm, const struct kvm_slot *s,
		      struct squib_error_detail *d)
{
	struct kvm_userspace_memory_region r = {
	    .slot = s->id,
	    .flags = s->flags,
	    .guest_phys_addr = s->gpa,
	    .memory_size = s->size,
	    .userspace_addr = (uintptr_t)s->hva,
	};

	if (kvm_ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r))
		return kvm_fail_ioctl(d, "KVM_SET_USER_MEMORY_REGION");
	return 0;
}

/* Insert keeping gpa order, and refresh the memory-map view. */
static void insert_slot(struct squib_kvm_vm *vm, const struct kvm_slot *s)
{
	uint32_t i = vm->slot_count;

	while (i && vm->slots[i - 1].gpa > s->gpa) {
		vm->slots[i] = vm->slots[i - 1];
		i--;
	}
	vm->slots[i] = *s;
	vm->slot_count++;
	for (i = 0; i < vm->slot_count; i++)
		vm->regions[i] = (struct squib_guest_region){vm->slots[i].gpa, vm->slots[i].size,
							     vm->slots[i].hva, vm->slots[i].id};
}

int squib_kvm_vm_add_ram(struct squib_kvm_vm *vm, uint64_t gpa, uint64_t size, void *hva,
			 uint32_t *slot, struct squib_error_detail *d)
{
	struct kvm_slot s = {.gpa = gpa, .size = size, .hva = hva};
	int rc;

	if (!vm)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "NULL VM");
	kvm_lock(&vm->ctl);
	rc = vm->started ? squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "add_ram after start")
			 : check_ram_range(vm, gpa, size, hva, d);
	if (!rc && !hva) {
		s.hva = mmap(NULL, size, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		s.owned = s.hva != MAP_FAILED;
		rc = s.owned ? 0 : squib_fail_errno(d, SQUIB_E_IO, errno);
	}
	if (!rc) {
		s.id = vm->slot_count; /* ids are never reused: slots are never removed */
		rc = set_region(vm, &s, d);
		if (rc && s.owned)
			munmap(s.hva, size);
	}
	if (!rc) {
		insert_slot(vm, &s);
		if (slot)
			*slot = s.id;
	}
	kvm_unlock(&vm->ctl);
	return rc;
}

static const struct kvm_slot *find_slot(const struct squib_kvm_vm *vm, uint64_t gpa, uint64_t len)
{
	for (uint32_t i = 0; i < vm->slot_count; i++) {
		const struct kvm_slot *s = &vm->slots[i];
		if (gpa >= s->gpa && gpa - s->gpa <= s->size && len <= s->size - (gpa - s->gpa))
			return s;
	}
	return NULL;
}

void *squib_kvm_vm_gpa_to_hva(struct squib_kvm_vm *vm, uint64_t gpa, uint64_t len)
{
	const struct kvm_slot *s = vm ? find_slot(vm, gpa, len) : NULL;

	return s ? (uint8_t *)s->hva + (gpa - s->gpa) : NULL;
}

struct squib_memory_map squib_kvm_vm_memory_map(const struct squib_kvm_vm *vm)
{
	struct squib_memory_map m = {NULL, 0};

	if (vm) {
		m.regions = vm->regions;
		m.count = vm->slot_count;
	}
	return m;
}

int squib_kvm_vm_write(struct squib_kvm_vm *vm, uint64_t gpa, const void *src, size_t len,
		       struct squib_error_detail *d)
{
	void *dst = squib_kvm_vm_gpa_to_hva(vm, gpa, len);

	if (!dst || (len && !src))
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "guest range [0x%llx, +0x%zx) is not inside one RAM region",
				      (unsigned long long)gpa, len);
	if (len)
		memcpy(dst, src, len);
	return 0;
}

int kvm_slot_set_flags(struct squib_kvm_vm *vm, uint32_t slot_index, uint32_t flags,
		       struct squib_error_detail *d)
{
	struct kvm_slot s = vm->slots[slot_index];
	int rc;

	s.flags = flags;
	if ((rc = set_region(vm, &s, d)))
		return rc;
	vm->slots[slot_index].flags = flags;
	return 0;
}
