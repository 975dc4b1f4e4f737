/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The KVM dirty log as a squib/track.h tracker (see squib_tracker_kvm_new).
 *
 * Manual-protect mode (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, enabled by
 * squib_kvm_vm_new when offered): KVM_GET_DIRTY_LOG only copies the bitmap;
 * the pages stay writable until KVM_CLEAR_DIRTY_LOG clears their bits and
 * write-protects them again. Harvest ORs what GET returned into dst first
 * and then clears exactly those bits: a write between the two re-dirties a
 * page whose bit is cleared only if it was set already, and the write itself
 * happened before the clear re-protected the page, so it is in dst; a write
 * after the clear faults and sets the bit for the next harvest. If the clear
 * fails, the bits stay in the log as well as in dst: reported twice, never
 * lost. Classic mode: GET_DIRTY_LOG fetches, clears and re-protects in one
 * call.
 *
 * INITIALLY_SET: a slot that starts logging has every bit set and nothing
 * protected, so start clears the whole slot once; earlier writes are then
 * not reported, as the interface wants.
 */
#include "kvm_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../track_internal.h"

struct kvm_track {
	struct squib_kvm_vm *vm;
	struct track_map map;
	struct track_bits given_back;
	uint64_t *words; /* one slot's bitmap, sized for the largest */
	size_t nwords;
};

static uint64_t slot_pages(const struct kvm_track *t, const struct squib_guest_region *r)
{
	return r->size / t->map.host_page;
}

/* The VM's index of a slot id (slots are never removed, so it exists). */
static uint32_t slot_index(const struct squib_kvm_vm *vm, uint32_t id)
{
	uint32_t i = 0;

	while (i < vm->slot_count && vm->slots[i].id != id)
		i++;
	return i;
}

/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with these flags (they apply to slots that start logging
 * later). */
static int set_manual_protect(struct squib_kvm_vm *vm, uint64_t flags, struct squib_error_detail *d)
{
	struct kvm_enable_cap ec = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = {flags}};

	if (kvm_ioctl(vm->vm_fd, KVM_ENABLE_CAP, &ec))
		return kvm_fail_ioctl(d, "KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2)");
	return 0;
}

/*
 * Turn logging on or off for r's slot. *fresh (on only): the slot started
 * logging with a clear bitmap although the VM uses INITIALLY_SET. That is
 * done while the VM has no vCPU yet (a restore target): nothing can map the
 * slot in the guest, so there is nothing to write-protect, and starting
 * clear spares the start's one KVM_CLEAR_DIRTY_LOG of the whole slot
 * (~2.4 ms per GiB here). The VM's flags are set back right after.
 */
static int set_logging(struct kvm_track *t, const struct squib_guest_region *r, bool on,
		       bool *fresh, struct squib_error_detail *d)
{
	struct squib_kvm_vm *vm = t->vm;
	uint64_t mp = vm->manual_protect;
	uint32_t i, flags;
	int rc = 0;

	kvm_lock(&vm->ctl);
	i = slot_index(vm, r->slot);
	flags = vm->slots[i].flags & ~(uint32_t)KVM_MEM_LOG_DIRTY_PAGES;
	if (fresh)
		*fresh = on && !vm->vcpus_created && (mp & KVM_DIRTY_LOG_INITIALLY_SET);
	if (fresh && *fresh)
		rc = set_manual_protect(vm, mp & ~(uint64_t)KVM_DIRTY_LOG_INITIALLY_SET, d);
	if (!rc)
		rc = kvm_slot_set_flags(vm, i, flags | (on ? KVM_MEM_LOG_DIRTY_PAGES : 0), d);
	if (fresh && *fresh) {
		int back = set_manual_protect(vm, mp, rc ? NULL : d);

		rc = rc ? rc : back;
	}
	kvm_unlock(&vm->ctl);
	return rc;
}

/* KVM_CLEAR_DIRTY_LOG of the bits set in t->words, over the whole slot. */
static int clear_log(struct kvm_track *t, const struct squib_guest_region *r,
		     struct squib_error_detail *d)
{
	struct kvm_clear_dirty_log c = {
	    .slot = r->slot,
	    .num_pages = (uint32_t)slot_pages(t, r),
	    .first_page = 0,
	    .dirty_bitmap = t->words,
	};

	if (kvm_ioctl(t->vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c))
		return kvm_fail_ioctl(d, "KVM_CLEAR_DIRTY_LOG");
	return 0;
}

static int arm_region(struct kvm_track *t, const struct squib_guest_region *r,
		      struct squib_error_detail *d)
{
	bool fresh = false;
	int rc = set_logging(t, r, true, &fresh, d);

	if (rc || fresh || !(t->vm->manual_protect & KVM_DIRTY_LOG_INITIALLY_SET))
		return rc;
	memset(t->words, 0xff, t->nwords * sizeof(*t->words));
	if ((rc = clear_log(t, r, d)))
		set_logging(t, r, false, NULL, NULL);
	return rc;
}

static int kvm_track_start(void *ctx, struct squib_error_detail *d)
{
	struct kvm_track *t = ctx;

	track_bits_clear(&t->given_back);
	for (size_t i = 0; i < t->map.count; i++) {
		int rc = arm_region(t, &t->map.r[i], d);

		if (rc) {
			while (i--)
				set_logging(t, &t->map.r[i], false, NULL, NULL);
			return rc;
		}
	}
	return 0;
}

static int harvest_region(struct kvm_track *t, const struct squib_guest_region *r,
			  struct squib_dirty_bitmap *dst, struct squib_error_detail *d)
{
	struct kvm_dirty_log log = {.slot = r->slot, .dirty_bitmap = t->words};
	uint64_t pages = slot_pages(t, r);

	memset(t->words, 0, t->nwords * sizeof(*t->words));
	if (kvm_ioctl(t->vm->vm_fd, KVM_GET_DIRTY_LOG, &log))
		return kvm_fail_ioctl(d, "KVM_GET_DIRTY_LOG");
	squib_dirty_bitmap_or_words(dst, r->gpa, t->map.host_page, t->words, pages);
	if (!t->vm->manual_protect)
		return 0; /* GET cleared and re-protected already */
	return clear_log(t, r, d);
}

static int kvm_track_harvest(void *ctx, struct squib_dirty_bitmap *dst,
			     struct squib_error_detail *d)
{
	struct kvm_track *t = ctx;

	track_bits_drain(&t->given_back, dst);
	for (size_t i = 0; i < t->map.count; i++) {
		int rc;

		if (track_region_overlap(&t->map.r[i], dst) != TRACK_INSIDE)
			continue;
		if ((rc = harvest_region(t, &t->map.r[i], dst, d)))
			return rc; /* what was OR-ed in is in dst; the rest stays logged */
	}
	return 0;
}

static int kvm_track_give_back(void *ctx, const struct squib_dirty_bitmap *src,
			       struct squib_error_detail *d)
{
	struct kvm_track *t = ctx;

	(void)d;
	track_bits_give_back(&t->given_back, src);
	return 0;
}

static int kvm_track_stop(void *ctx, struct squib_error_detail *d)
{
	struct kvm_track *t = ctx;
	int first = 0;

	for (size_t i = 0; i < t->map.count; i++) {
		int rc = set_logging(t, &t->map.r[i], false, NULL, first ? NULL : d);

		if (rc && !first)
			first = rc;
	}
	return first;
}

static void kvm_track_free(void *ctx)
{
	struct kvm_track *t = ctx;

	if (!t)
		return;
	track_bits_destroy(&t->given_back);
	free(t->words);
	free(t);
}

static const struct squib_tracker_ops kvm_track_ops = {
    .name = "kvm-dirty-log",
    .start = kvm_track_start,
    .harvest = kvm_track_harvest,
    .give_back = kvm_track_give_back,
    .reset_after_commit = NULL, /* harvest re-armed every page it reported */
    .stop = kvm_track_stop,
    .free = kvm_track_free,
};

static int alloc_words(struct kvm_track *t, struct squib_error_detail *d)
{
	uint64_t most = 0;

	for (size_t i = 0; i < t->map.count; i++)
		if (slot_pages(t, &t->map.r[i]) > most)
			most = slot_pages(t, &t->map.r[i]);
	if (most > UINT32_MAX) /* KVM_CLEAR_DIRTY_LOG counts pages in a u32 */
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT, "a slot of %llu pages",
				      (unsigned long long)most);
	t->nwords = (size_t)((most + 63) / 64);
	if (!(t->words = calloc(t->nwords, sizeof(*t->words))))
		return squib_fail(d, SQUIB_E_NOMEM);
	return 0;
}

int squib_tracker_kvm_new(struct squib_kvm_vm *vm, struct squib_tracker **out,
			  struct squib_error_detail *d)
{
	struct squib_memory_map map;
	struct kvm_track *t;
	int rc;

	if (!vm || !out)
		return squib_fail_msg(d, SQUIB_E_INVALID_ARGUMENT,
				      "NULL argument to tracker_kvm_new");
	*out = NULL;
	if (!(t = calloc(1, sizeof(*t))))
		return squib_fail(d, SQUIB_E_NOMEM);
	t->vm = vm;
	kvm_lock(&vm->ctl);
	map = squib_kvm_vm_memory_map(vm);
	rc = track_map_init(&t->map, &map, true, d);
	kvm_unlock(&vm->ctl);
	if (!rc)
		rc = track_bits_init(&t->given_back, &t->map, d);
	if (!rc)
		rc = alloc_words(t, d);
	if (rc) {
		kvm_track_free(t);
		return rc;
	}
	map.regions = t->map.r; /* the validated copy: the VM's array may grow */
	map.count = t->map.count;
	return squib_tracker_new(&kvm_track_ops, t, &map, out, d);
}
