/* SPDX-License-Identifier: Apache-2.0 */
/* The KVM guests shared by `run` and `restore` (cli.h): the counter-protocol guest and Linux. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <squib/load.h>

#include "cli.h"

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

static int add_devices(struct cli_vm *c, const struct cli_vm_shape *sh,
		       struct squib_error_detail *d)
{
	int rc;

	if (sh->kind == CLI_GUEST_KIND_LINUX)
		return squib_kvm_vm_add_uart(c->vm, CLI_LINUX_UART_PORT, CLI_LINUX_UART_IRQ,
					     sh->console_fd, &c->uart, d);
	rc = squib_kvm_vm_add_console(c->vm, CLI_GUEST_CONSOLE, NULL, d);
	return rc ? rc : squib_kvm_vm_add_counter(c->vm, CLI_GUEST_PORT, &c->counter, d);
}

int cli_vm_new(struct cli_vm *c, const struct cli_vm_shape *sh, struct squib_error_detail *d)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_kvm_adapter_config acfg = {sh->track, NULL, NULL};
	int rc;

	memset(c, 0, sizeof(*c));
	c->kind = sh->kind;
	cfg.vcpu_count = sh->vcpus;
	if ((rc = squib_kvm_vm_new(&cfg, &c->vm, d)) ||
	    (sh->ram && (rc = squib_kvm_vm_add_ram(c->vm, 0, sh->ram, NULL, NULL, d))) ||
	    (rc = add_devices(c, sh, d)) ||
	    (rc = squib_kvm_adapter_new(c->vm, &acfg, &c->adapter, d))) {
		cli_vm_free(c);
		return rc;
	}
	c->v = squib_kvm_adapter_vm(c->adapter);
	return 0;
}

uint64_t cli_vm_reports(struct cli_vm *c, uint32_t i)
{
	struct squib_kvm_uart_info info;
	uint64_t n = 0;

	if (c->kind == CLI_GUEST_KIND_COUNTER) {
		squib_kvm_counter_get(c->counter, i, NULL, &n);
		return n;
	}
	squib_kvm_uart_get(c->uart, &info);
	return info.lines;
}

int cli_vm_wait_until(struct cli_vm *c, uint32_t i, uint64_t want, uint32_t timeout_ms,
		      struct squib_error_detail *d)
{
	if (c->kind == CLI_GUEST_KIND_COUNTER)
		return squib_kvm_counter_wait(c->counter, i, want, timeout_ms, NULL, d);
	return squib_kvm_uart_wait_lines(c->uart, want, timeout_ms, NULL, d);
}

uint32_t cli_vm_wait_ms(const struct cli_vm *c)
{
	return c->kind == CLI_GUEST_KIND_LINUX ? CLI_LINUX_WAIT_MS : CLI_GUEST_WAIT_MS;
}

int cli_vm_wait_reports(struct cli_vm *c, uint64_t reports, struct squib_error_detail *d)
{
	uint32_t n = squib_kvm_vm_vcpu_count(c->vm);
	int rc = 0;

	for (uint32_t i = 0; !rc && i < n; i++)
		rc = cli_vm_wait_until(c, i, cli_vm_reports(c, i) + reports, cli_vm_wait_ms(c), d);
	return rc;
}

void cli_vm_print_counters(struct cli_vm *c, FILE *out)
{
	uint32_t n = squib_kvm_vm_vcpu_count(c->vm);
	struct squib_kvm_uart_info info;

	if (c->kind == CLI_GUEST_KIND_LINUX) {
		squib_kvm_uart_get(c->uart, &info);
		fprintf(out, "console: %llu lines, %llu bytes, last '", (unsigned long long)info.lines,
			(unsigned long long)info.bytes);
		cli_put_text(out, info.last_line);
		fprintf(out, "'\n");
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		const volatile uint64_t *p =
		    squib_kvm_vm_gpa_to_hva(c->vm, CLI_GUEST_COUNTERS + i * 4096ull, 8);
		uint64_t reports = 0;

		squib_kvm_counter_get(c->counter, i, NULL, &reports);
		fprintf(out, "vCPU %u: counter %llu, reports %llu\n", i,
			(unsigned long long)(p ? *p : 0), (unsigned long long)reports);
	}
}

int cli_state_console(const struct squib_microvm_state *s, struct squib_kvm_uart_info *info)
{
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct squib_device_state *dev = &s->devices[i];

		if (dev->kind && !strcmp(dev->kind, "uart-16550"))
			return squib_kvm_uart_blob_info(dev->blob, dev->blob_len, info) ? -1 : 0;
	}
	return -1;
}

void cli_state_shape(const char *state_path, struct cli_vm_shape *sh)
{
	struct squib_microvm_state s;
	struct squib_error_detail d;
	struct squib_kvm_uart_info info;

	memset(sh, 0, sizeof(*sh));
	sh->vcpus = 1;
	sh->console_fd = 1;
	if (!squib_load_state_only(state_path, SQUIB_ARCH_ANY, &s, NULL, &d)) {
		if (s.vcpu_count && s.vcpu_count <= SQUIB_KVM_MAX_VCPUS)
			sh->vcpus = s.vcpu_count;
		if (!cli_state_console(&s, &info))
			sh->kind = CLI_GUEST_KIND_LINUX;
	}
	squib_state_free(&s);
}

int cli_console_open(const char *path)
{
	int fd;

	if (!path)
		return 1;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fprintf(stderr, "squib-snapshot: %s: %s\n", path, strerror(errno));
	return fd;
}

uint64_t cli_now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}
