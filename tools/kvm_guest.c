/* SPDX-License-Identifier: Apache-2.0 */
/* The KVM counter-protocol guest shared by `run` and `restore` (cli.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

char *cli_default_mem_path(const char *state)
{
	const char *slash = strrchr(state, '/');
	const char *dot = strrchr(state, '.');
	size_t stem = dot && (!slash || dot > slash + 1) ? (size_t)(dot - state) : strlen(state);
	char *out = malloc(stem + sizeof(".mem"));

	if (out) {
		memcpy(out, state, stem);
		memcpy(out + stem, ".mem", sizeof(".mem"));
	}
	return out;
}

int cli_parse_count(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

void cli_vm_free(struct cli_vm *c)
{
	squib_kvm_adapter_free(c->adapter);
	squib_kvm_vm_free(c->vm);
	memset(c, 0, sizeof(*c));
}

int cli_vm_new(struct cli_vm *c, uint32_t vcpus, bool with_ram, bool track,
	       struct squib_error_detail *d)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_adapter_config acfg = {track, NULL, NULL};
	int rc;

	memset(c, 0, sizeof(*c));
	cfg.vcpu_count = vcpus;
	if ((rc = squib_kvm_vm_new(&cfg, &c->vm, d)) ||
	    (with_ram && (rc = squib_kvm_vm_add_ram(c->vm, 0, CLI_GUEST_RAM, NULL, NULL, d))) ||
	    (rc = squib_kvm_vm_add_console(c->vm, CLI_GUEST_CONSOLE, NULL, d)) ||
	    (rc = squib_kvm_vm_add_counter(c->vm, CLI_GUEST_PORT, &c->counter, d)) ||
	    (rc = squib_kvm_adapter_new(c->vm, &acfg, &c->adapter, d))) {
		cli_vm_free(c);
		return rc;
	}
	c->v = squib_kvm_adapter_vm(c->adapter);
	return 0;
}

int cli_vm_wait_reports(struct cli_vm *c, uint64_t reports, struct squib_error_detail *d)
{
	uint32_t n = squib_kvm_vm_vcpu_count(c->vm);
	int rc = 0;

	for (uint32_t i = 0; !rc && i < n; i++) {
		uint64_t now = 0;

		squib_kvm_counter_get(c->counter, i, NULL, &now);
		rc = squib_kvm_counter_wait(c->counter, i, now + reports, CLI_GUEST_WAIT_MS, NULL,
					    d);
	}
	return rc;
}

void cli_vm_print_counters(struct cli_vm *c, FILE *out)
{
	uint32_t n = squib_kvm_vm_vcpu_count(c->vm);

	for (uint32_t i = 0; i < n; i++) {
		const volatile uint64_t *p =
		    squib_kvm_vm_gpa_to_hva(c->vm, CLI_GUEST_COUNTERS + i * 4096ull, 8);
		uint64_t reports = 0;

		squib_kvm_counter_get(c->counter, i, NULL, &reports);
		fprintf(out, "vCPU %u: counter %llu, reports %llu\n", i,
			(unsigned long long)(p ? *p : 0), (unsigned long long)reports);
	}
}
