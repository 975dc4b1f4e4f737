/* SPDX-License-Identifier: Apache-2.0 */
/* State file envelope: header, sections, CRC-64/Jones trailer (docs/FORMAT.md). */
#include <squib/envelope.h>

struct squib_version squib_format_version(void)
{
	struct squib_version v = {SQUIB_FORMAT_VERSION_MAJOR, SQUIB_FORMAT_VERSION_MINOR,
				  SQUIB_FORMAT_VERSION_PATCH};
	return v;
}

uint64_t squib_arch_magic(enum squib_arch arch)
{
	switch (arch) {
	case SQUIB_ARCH_AARCH64:
		return SQUIB_MAGIC_AARCH64;
	case SQUIB_ARCH_X86_64:
		return SQUIB_MAGIC_X86_64;
	default:
		return 0;
	}
}

enum squib_arch squib_arch_from_magic(uint64_t magic)
{
	if (magic == SQUIB_MAGIC_AARCH64)
		return SQUIB_ARCH_AARCH64;
	if (magic == SQUIB_MAGIC_X86_64)
		return SQUIB_ARCH_X86_64;
	return SQUIB_ARCH_ANY;
}

enum squib_arch squib_host_arch(void)
{
#if defined(__aarch64__)
	return SQUIB_ARCH_AARCH64;
#else
	return SQUIB_ARCH_X86_64;
#endif
}
