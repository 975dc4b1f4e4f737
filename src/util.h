/* SPDX-License-Identifier: Apache-2.0 */
/* Small internal helpers shared by the library's modules (not installed). */
#ifndef SQUIB_UTIL_H
#define SQUIB_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#define SQUIB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Copy with truncation; always NUL-terminates when size > 0. Returns strlen(src). */
static inline size_t squib_strlcpy(char *dst, const char *src, size_t size)
{
	size_t n = strlen(src);

	if (size) {
		size_t c = n < size - 1 ? n : size - 1;
		memcpy(dst, src, c);
		dst[c] = '\0';
	}
	return n;
}

/* Little-endian loads and stores; the file formats are little-endian on every host. */
static inline uint16_t squib_get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t squib_get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static inline uint64_t squib_get_le64(const uint8_t *p)
{
	return (uint64_t)squib_get_le32(p) | ((uint64_t)squib_get_le32(p + 4) << 32);
}

static inline void squib_put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void squib_put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void squib_put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Write all of buf, retrying EINTR and short writes; off < 0 means write(2) at
 * the file position, otherwise pwrite(2) at off. 0 or -errno. (src/fdio.c) */
int squib_fd_write_all(int fd, const void *buf, size_t len, off_t off);

/* Parent directory of a path as a heap string ("." when there is none), like
 * dirname(3) without touching the input. NULL on allocation failure. (src/fdio.c) */
char *squib_dir_of(const char *path);

#endif /* SQUIB_UTIL_H */
