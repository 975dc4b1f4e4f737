/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the undo-log reader of the in-place rebase (FORMAT §M.8,
 * src/memfile_undo.c): the input, after one flags byte, is written as
 * BASE.undo beside a 64 KiB BASE (no valid footer: what an interrupted rebase
 * leaves), and squib_undo_recover_locked reads it and rolls BASE back, as a
 * load or a rebase of BASE would. Real files in a private directory (tmpfs
 * when /dev/shm exists), the real lock.
 *
 * Flags: bit 0 makes the trailing CRC-64 right, bit 1 makes data_bytes agree
 * with the file's size (so the size and range checks, the base check and the
 * roll-back itself are reached, not just the CRC).
 *
 * Invariants: no crash, no leak, no out-of-bounds access; a failure has an
 * error code in the detail; a roll-back that succeeds removed the log and
 * left BASE exactly old_size bytes long.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squib/atomic.h>
#include <squib/crc64.h>

#include "../src/atomic_internal.h"
#include "../src/memfile_internal.h"
#include "../src/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE_SIZE (64u * 1024u)
#define HEADER	  80u
#define RANGE	  24u

static char dir[64], base[96], undo[112];

/* The directory goes with the process (the lock file is removed by each unlock). */
static void cleanup(void)
{
	unlink(undo);
	unlink(base);
	rmdir(dir);
}

static void setup_once(void)
{
	if (dir[0])
		return;
	snprintf(dir, sizeof(dir), "%s/fuzz-undo-XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(dir))
		abort();
	snprintf(base, sizeof(base), "%s/b.mem", dir);
	snprintf(undo, sizeof(undo), "%s/b.mem.undo", dir);
	atexit(cleanup);
}

static void put(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || (len && pwrite(fd, buf, len, 0) != (ssize_t)len))
		abort();
	close(fd);
}

/* data_bytes = what the file's size leaves for data, given range_count and the tail. */
static void fix_sizes(uint8_t *b, size_t len)
{
	uint64_t ram = squib_get_le64(b + 48), old = squib_get_le64(b + 56);
	uint64_t n = squib_get_le64(b + 64), fixed = HEADER + 8;

	if (n > len / RANGE || old < ram)
		return;
	fixed += n * RANGE + (old - ram);
	if (old - ram <= len && fixed <= len)
		squib_put_le64(b + 72, len - fixed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t base_bytes[BASE_SIZE];
	struct squib_error_detail d;
	struct squib_dest_lock l;
	uint8_t *log;
	size_t len;
	bool rolled;
	int rc;

	if (size < 1 || size > (1u << 20))
		return 0;
	setup_once();
	len = size - 1;
	if (!(log = malloc(len ? len : 1)))
		return 0;
	memcpy(log, data + 1, len);
	if ((data[0] & 2) && len >= HEADER + 8)
		fix_sizes(log, len);
	if ((data[0] & 1) && len >= 8)
		squib_put_le64(log + len - 8, squib_crc64(0, log, len - 8));
	memset(base_bytes, 0x5a, sizeof(base_bytes));
	put(base, base_bytes, sizeof(base_bytes));
	put(undo, log, len);
	memset(&d, 0, sizeof(d));
	if (squib_dest_lock(&l, base, NULL, &d))
		abort();
	rc = squib_undo_recover_locked(&l, NULL, NULL, &rolled, &d);
	squib_dest_unlock(&l);
	if (rc == 0) {
		struct stat st;

		if (!rolled || access(undo, F_OK) == 0 || stat(base, &st) ||
		    (uint64_t)st.st_size != squib_get_le64(log + 56))
			abort();
	} else if (d.code == 0 || rolled) {
		abort();
	}
	unlink(undo);
	free(log);
	return 0;
}
