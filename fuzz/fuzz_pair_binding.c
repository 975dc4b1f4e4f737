/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz the pair binding: a state file's memory section against a memory
 * file's footer and manifest, both hostile. The pair is written as
 * DIR/pair.snap and DIR/pair.mem and checked as the tools check it:
 * squib_describe (the footer compared with the memory section),
 * squib_verify (footer, manifest, bounds, binding, digests) and
 * squib_load_check (what restore checks before it opens KVM).
 *
 * Input: bytes 0..3 the state's length (le32, modulo 64 KiB), then the state,
 * then the memory file. The state's CRC trailer is always recomputed, so the
 * fuzzer works on content rather than on CRCs (the CRC check itself is
 * fuzz_state_decode's); the memory file's CRCs are fixed when its first byte
 * has bit 0 set.
 *
 * Invariants: no crash, no leak, no out-of-bounds access; a pair verify
 * finds bound (pair binding ok) is one squib_load_check accepts, and the
 * other way round.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <squib/crc64.h>
#include <squib/describe.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/verify.h>

#include "../src/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STATE (64u << 10)

static char snap[256], mem[256], dir[] = "/tmp/fuzz-pair-XXXXXX";

/* The pair's directory goes with the process (libFuzzer exits through exit()). */
static void cleanup(void)
{
	unlink(snap);
	unlink(mem);
	rmdir(dir);
}

static void fix_mem_crcs(uint8_t *buf, size_t len)
{
	uint8_t *foot = buf + len - SQUIB_MEMFILE_FOOTER_SIZE;
	uint64_t off = squib_get_le64(foot + 88), mlen = squib_get_le64(foot + 96);

	if (off <= len && mlen <= len - off)
		squib_put_le64(foot + 112, squib_crc64(0, buf + off, (size_t)mlen));
	squib_put_le64(foot + 4088, squib_crc64(0, foot, 4088));
}

static void write_file(const char *path, const uint8_t *p, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (!f || (len && fwrite(p, 1, len, f) != len) || fclose(f))
		abort();
}

static void init(void)
{
	if (!mkdtemp(dir))
		abort();
	snprintf(snap, sizeof(snap), "%s/pair.snap", dir);
	snprintf(mem, sizeof(mem), "%s/pair.mem", dir);
	atexit(cleanup);
}

static void check(void)
{
	struct squib_verify_options o = {0};
	struct squib_load_request req = SQUIB_LOAD_REQUEST_INIT(snap, mem);
	struct squib_verify_report r;
	struct squib_description desc;
	bool bound = false;
	int lrc;

	if (squib_describe(snap, &desc, NULL) == 0)
		squib_description_free(&desc);
	req.no_recovery = true;
	lrc = squib_load_check(&req, SQUIB_ARCH_ANY, NULL, NULL);
	o.memory_path = mem;
	if (squib_verify(snap, &o, &r, NULL) == 0) {
		bound = r.checks[SQUIB_CHECK_PAIR_BINDING].status == SQUIB_CHECK_OK &&
			r.checks[SQUIB_CHECK_COMPATIBILITY].status == SQUIB_CHECK_OK;
		squib_verify_report_free(&r);
	}
	/* A diff needs its chain to load, which verify does not ask for. */
	if (bound && lrc && lrc != SQUIB_E_INVALID_ARGUMENT)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t slen;
	uint8_t *buf;

	if (size < 4 || size > MAX_STATE + (1u << 20))
		return 0;
	if (!snap[0])
		init();
	slen = squib_get_le32(data) % MAX_STATE;
	if (slen > size - 4)
		return 0;
	if (!(buf = malloc(size)))
		return 0;
	memcpy(buf, data, size);
	if (slen >= 8)
		squib_put_le64(buf + 4 + slen - 8, squib_crc64(0, buf + 4, slen - 8));
	if (size - 4 - slen >= SQUIB_MEMFILE_FOOTER_SIZE && (buf[4 + slen] & 1))
		fix_mem_crcs(buf + 4 + slen, size - 4 - slen);
	write_file(snap, buf + 4, slen);
	write_file(mem, buf + 4 + slen, size - 4 - slen);
	check();
	free(buf);
	return 0;
}
