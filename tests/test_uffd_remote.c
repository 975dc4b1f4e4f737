/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Uffd backend (squib/uffd_remote.h): the handshake codec, the transport
 * over real sockets, and both ends over real userfaultfd with the handler in
 * another process (fork) - the library's handler and the `serve` CLI. Without
 * userfaultfd (ENOSYS) the tests that need it print one SKIP line.
 */
#include "pair.h"
#include "spawn.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <squib/kvm.h>
#include <squib/load.h>
#include <squib/memfile.h>
#include <squib/pager.h>
#include <squib/uffd_remote.h>

#define FC_EXAMPLE                                                                                 \
	"[{\"base_host_virt_addr\":140187227951104,\"size\":134217728,\"offset\":0,"               \
	"\"page_size\":4096,\"page_size_kib\":4096}]"

/* ---- helpers ------------------------------------------------------------------------------ */

#define SKIP_WITHOUT_UFFD()                                                                        \
	do {                                                                                       \
		if (squib_test_uffd_missing("Uffd backend"))                                       \
			skip();                                                                    \
	} while (0)

static uint64_t ps(void)
{
	return squib_test_page_size();
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&t, NULL);
}

/* Parse s; the code, and the detail's message in msg. */
static int parse(const char *s, struct squib_uffd_mapping **m, uint32_t *n, char *msg, size_t len)
{
	struct squib_error_detail d;
	size_t k;
	int rc;

	memset(&d, 0, sizeof(d));
	rc = squib_uffd_handshake_parse(s, strlen(s), m, n, &d);
	k = strnlen(d.msg, sizeof(d.msg));
	if (k >= len)
		k = len - 1;
	memcpy(msg, d.msg, k);
	msg[k] = '\0';
	return rc;
}

/* s must be refused with SQUIB_E_ENCODING and a message holding want1 and want2 (if not NULL). */
static void refused(const char *s, const char *want1, const char *want2)
{
	struct squib_uffd_mapping *m = (void *)1;
	uint32_t n = 7;
	char msg[512];
	int rc = parse(s, &m, &n, msg, sizeof(msg));

	if (rc != SQUIB_E_ENCODING)
		fail_msg("accepted or wrong code %d for %s", rc, s);
	assert_null(m);
	assert_int_equal(n, 0);
	if (want1 && !strstr(msg, want1))
		fail_msg("message '%s' lacks '%s' (input %s)", msg, want1, s);
	if (want2 && !strstr(msg, want2))
		fail_msg("message '%s' lacks '%s' (input %s)", msg, want2, s);
}

static char *region(char *buf, size_t len, uint64_t base, uint64_t size, uint64_t off)
{
	snprintf(buf, len,
		 "{\"base_host_virt_addr\":%llu,\"size\":%llu,\"offset\":%llu,\"page_size\":4096}",
		 (unsigned long long)base, (unsigned long long)size, (unsigned long long)off);
	return buf;
}

/* ---- parse ---------------------------------------------------------------------------------- */

static void test_should_parse_firecrackers_example(void **state)
{
	struct squib_uffd_mapping *m;
	uint32_t n;
	char msg[256];

	(void)state;
	assert_int_equal(parse(FC_EXAMPLE, &m, &n, msg, sizeof(msg)), 0);
	assert_int_equal(n, 1);
	assert_int_equal(m[0].base_host_virt_addr, 140187227951104ull);
	assert_int_equal(m[0].size, 134217728);
	assert_int_equal(m[0].offset, 0);
	assert_int_equal(m[0].page_size, 4096);
	free(m);
}

static void test_should_parse_any_field_order_and_ignore_unknown_fields(void **state)
{
	const char *s = " [ {\"page_size\": 4096, \"offset\": 8192, \"future\": {\"x\": [1, 2]},\n"
			"\"size\": 4096, \"base_host_virt_addr\": 1048576, \"name\": \"ram\"},"
			"{\"size\":8192,\"page_size_kib\":4096,\"base_host_virt_addr\":2097152,"
			"\"offset\":0,\"page_size\":4096} ] ";
	struct squib_uffd_mapping *m;
	uint32_t n;
	char msg[256];

	(void)state;
	assert_int_equal(parse(s, &m, &n, msg, sizeof(msg)), 0);
	assert_int_equal(n, 2);
	assert_int_equal(m[0].base_host_virt_addr, 1048576);
	assert_int_equal(m[0].offset, 8192);
	assert_int_equal(m[0].size, 4096);
	assert_int_equal(m[1].base_host_virt_addr, 2097152);
	assert_int_equal(m[1].size, 8192);
	free(m);
}

static void test_should_check_page_size_kib(void **state)
{
	struct squib_uffd_mapping *m;
	uint32_t n;
	char msg[256];

	(void)state;
	/* Absent: fine (it is deprecated). */
	assert_int_equal(parse("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,"
			       "\"page_size\":4096}]",
			       &m, &n, msg, sizeof(msg)),
			 0);
	free(m);
	/* Present and in bytes like page_size: fine (Firecracker's actual content). */
	assert_int_equal(parse(FC_EXAMPLE, &m, &n, msg, sizeof(msg)), 0);
	free(m);
	/* Present in KiB (what its name says) or anything else: refused. */
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096,"
		"\"page_size_kib\":4}]",
		"region 0", "page_size_kib");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096,"
		"\"page_size_kib\":\"4096\"}]",
		"page_size_kib", "not an integer");
}

static void test_should_refuse_missing_fields_naming_region_and_field(void **state)
{
	static const char *const names[] = {"base_host_virt_addr", "size", "offset", "page_size"};
	char ok[160], s[512];

	(void)state;
	region(ok, sizeof(ok), 4096, 4096, 0);
	for (size_t k = 0; k < 4; k++) {
		char obj[160] = "{";

		for (size_t j = 0; j < 4; j++) {
			char f[64];

			if (j == k)
				continue;
			snprintf(f, sizeof(f), "%s\"%s\":%d", strlen(obj) > 1 ? "," : "", names[j],
				 j == 3	  ? 4096
				 : j == 1 ? 4096
				 : j == 0 ? 1 << 20
					  : 0);
			strcat(obj, f);
		}
		strcat(obj, "}");
		snprintf(s, sizeof(s), "[%s,%s]", ok, obj);
		refused(s, "region 1", names[k]);
		refused(s, "missing", NULL);
	}
}

static void test_should_refuse_wrong_types_and_negative_and_huge_numbers(void **state)
{
	(void)state;
	refused("[{\"base_host_virt_addr\":\"4096\",\"size\":4096,\"offset\":0,"
		"\"page_size\":4096}]",
		"region 0: base_host_virt_addr", "not an integer");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096.0,\"offset\":0,\"page_size\":4096}]",
		"region 0: size", "not an integer");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":null,\"page_size\":4096}]",
		"region 0: offset", "not an integer");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":true}]",
		"region 0: page_size", "not an integer");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":-4096,"
		"\"page_size\":4096}]",
		"region 0: offset", "negative");
	/* Above INT64_MAX (a u64 Firecracker could in theory write): refused, not wrapped. */
	refused("[{\"base_host_virt_addr\":18446744073709547520,\"size\":4096,\"offset\":0,"
		"\"page_size\":4096}]",
		"above 2^63-1", "column");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096,"
		"\"size\":8192}]",
		"invalid JSON", "duplicate");
}

static void test_should_refuse_bad_structure(void **state)
{
	char big[SQUIB_UFFD_MAX_REGIONS * 120 + 256], r[160];
	size_t o = 0;

	(void)state;
	refused("{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096}",
		"not a JSON array", NULL);
	refused("[]", "0 regions", NULL);
	refused("[1]", "region 0", "not a JSON object");
	refused("", "invalid JSON", NULL);
	refused("[{\"size\":", "invalid JSON", NULL);
	refused(FC_EXAMPLE "x", "invalid JSON", NULL);
	/* One region too many. */
	big[o++] = '[';
	for (uint32_t i = 0; i <= SQUIB_UFFD_MAX_REGIONS; i++) {
		region(r, sizeof(r), (uint64_t)(i + 1) << 20, 4096, (uint64_t)i * 4096);
		o += (size_t)snprintf(big + o, sizeof(big) - o, "%s%s", i ? "," : "", r);
	}
	snprintf(big + o, sizeof(big) - o, "]");
	refused(big, "257 regions", NULL);
}

static void test_should_refuse_bad_geometry(void **state)
{
	char a[160], b[160], s[400];

	(void)state;
	snprintf(s, sizeof(s), "[%s,%s]", region(a, sizeof(a), 1 << 20, 16384, 0),
		 region(b, sizeof(b), (1 << 20) + 8192, 4096, 16384));
	refused(s, "region 1", "overlaps region 0");
	snprintf(s, sizeof(s), "[%s,%s]", region(a, sizeof(a), 1 << 20, 16384, 0),
		 region(b, sizeof(b), (1 << 20) + 16384, 4096, 16384));
	{ /* touching is fine */
		struct squib_uffd_mapping *m;
		uint32_t n;
		char msg[256];

		assert_int_equal(parse(s, &m, &n, msg, sizeof(msg)), 0);
		free(m);
	}
	refused("[{\"base_host_virt_addr\":1048576,\"size\":6000,\"offset\":0,\"page_size\":4096}]",
		"region 0: size", "not a multiple of page_size");
	refused("[{\"base_host_virt_addr\":1048577,\"size\":4096,\"offset\":0,\"page_size\":4096}]",
		"region 0: base_host_virt_addr", "not a multiple");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":100,\"page_size\":4096}]",
		"region 0: offset", "not a multiple");
	refused("[{\"base_host_virt_addr\":4096,\"size\":0,\"offset\":0,\"page_size\":4096}]",
		"region 0: size", "zero");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":3000}]",
		"region 0: page_size", "power of two");
	refused("[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":0}]",
		"region 0: page_size", NULL);
	refused("[{\"base_host_virt_addr\":9223372036854771712,\"size\":9223372036854771712,"
		"\"offset\":0,\"page_size\":4096}]",
		"region 0: base_host_virt_addr", "+ size exceeds 2^63");
	refused("[{\"base_host_virt_addr\":4096,\"size\":9223372036854771712,"
		"\"offset\":9223372036854771712,\"page_size\":4096}]",
		"region 0: offset", "+ size exceeds 2^63");
}

static void test_should_refuse_an_oversized_message(void **state)
{
	size_t len = SQUIB_UFFD_HANDSHAKE_MAX + 1;
	char *s = malloc(len);
	struct squib_uffd_mapping *m;
	struct squib_error_detail d;
	uint32_t n;

	(void)state;
	assert_non_null(s);
	memset(s, ' ', len);
	memcpy(s, FC_EXAMPLE, strlen(FC_EXAMPLE));
	assert_int_equal(squib_uffd_handshake_parse(s, len, &m, &n, &d),
			 SQUIB_E_SIZE_LIMIT_EXCEEDED);
	assert_int_equal(d.limit, SQUIB_UFFD_HANDSHAKE_MAX);
	/* The same bytes one short of the limit are fine (trailing whitespace). */
	assert_int_equal(squib_uffd_handshake_parse(s, len - 1, &m, &n, &d), 0);
	free(m);
	free(s);
}

static void test_should_round_trip_encode_and_parse(void **state)
{
	struct squib_uffd_mapping in[3] = {{0x7f0000000000ull, 128 << 20, 0, 4096},
					   {0x7f1000000000ull, 4096, 128 << 20, 4096},
					   {0x1000, 1 << 20, (128 << 20) + 4096, 4096}};
	struct squib_uffd_mapping *out;
	struct squib_error_detail d;
	uint32_t n;
	char *json;
	size_t len;

	(void)state;
	assert_int_equal(squib_uffd_handshake_encode(in, 3, &json, &len, &d), 0);
	/* Firecracker's field order and its deprecated field, compact. */
	assert_non_null(strstr(json, "{\"base_host_virt_addr\":139637976727552,\"size\":134217728,"
				     "\"offset\":0,\"page_size\":4096,\"page_size_kib\":4096}"));
	assert_int_equal(json[0], '[');
	assert_int_equal(squib_uffd_handshake_parse(json, len, &out, &n, &d), 0);
	assert_int_equal(n, 3);
	assert_memory_equal(in, out, sizeof(in));
	free(out);
	free(json);
	/* What the parser refuses is not encoded. */
	in[1].base_host_virt_addr = in[0].base_host_virt_addr + 4096;
	assert_int_equal(squib_uffd_handshake_encode(in, 3, &json, &len, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "overlaps"));
	assert_null(json);
}

/* ---- transport ------------------------------------------------------------------------------ */

/* Send bytes with the fds attached (nfd 0: none). */
static void send_with_fds(int s, const void *buf, size_t len, const int *fds, int nfd)
{
	union {
		char b[CMSG_SPACE(4 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {(void *)buf, len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (nfd) {
		struct cmsghdr *c;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE((size_t)nfd * sizeof(int));
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN((size_t)nfd * sizeof(int));
		memcpy(CMSG_DATA(c), fds, (size_t)nfd * sizeof(int));
	}
	assert_int_equal(sendmsg(s, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

/* Initialised, as a VMM sends it (Firecracker calls UFFDIO_API before registering). */
static int new_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	struct uffdio_api api = {.api = UFFD_API};

	assert_true(fd >= 0);
	assert_int_equal(ioctl(fd, UFFDIO_API, &api), 0);
	return fd;
}

struct splitter {
	int sock, uffd;
	const char *msg;
};

/* The message in 4 pieces, 20 ms apart; the fd rides on the first. */
static void *send_split(void *arg)
{
	struct splitter *s = arg;
	size_t len = strlen(s->msg), cut[5] = {0, 3, 40, len - 2, len};

	for (int i = 0; i < 4; i++) {
		send_with_fds(s->sock, s->msg + cut[i], cut[i + 1] - cut[i], &s->uffd, i ? 0 : 1);
		sleep_ms(20);
	}
	return NULL;
}

static void test_should_receive_a_message_split_over_several_writes(void **state)
{
	struct squib_uffd_peer p;
	struct squib_error_detail d;
	struct splitter s;
	pthread_t t;
	int sv[2];

	(void)state;
	SKIP_WITHOUT_UFFD();
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	s = (struct splitter){sv[1], new_uffd(), FC_EXAMPLE};
	assert_int_equal(pthread_create(&t, NULL, send_split, &s), 0);
	assert_int_equal(squib_uffd_receive(sv[0], 2000, &p, &d), 0);
	pthread_join(t, NULL);
	assert_int_equal(p.n, 1);
	assert_int_equal(p.mappings[0].size, 134217728);
	assert_true(p.uffd >= 0 && p.uffd != s.uffd);
	assert_int_equal(p.pid, getpid());
	assert_true(fcntl(p.uffd, F_GETFD) & FD_CLOEXEC);
	squib_uffd_peer_close(&p);
	squib_uffd_peer_close(&p); /* harmless twice */
	close(s.uffd);
	close(sv[1]);
}

/* Receive on sv[0] what was sent on sv[1]; expect rc and a message part. */
static void receive_fails(int sv[2], int timeout_ms, int want_rc, const char *want)
{
	struct squib_uffd_peer p;
	struct squib_error_detail d;
	int rc;

	memset(&d, 0, sizeof(d));
	rc = squib_uffd_receive(sv[0], timeout_ms, &p, &d);
	assert_int_equal(rc, want_rc);
	if (want && !strstr(d.msg, want))
		fail_msg("message '%s' lacks '%s'", d.msg, want);
	assert_int_equal(p.uffd, -1);
	assert_int_equal(p.conn_fd, -1);
	assert_null(p.mappings);
	close(sv[1]);
}

static void test_should_refuse_a_message_without_a_userfaultfd(void **state)
{
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_with_fds(sv[1], FC_EXAMPLE, strlen(FC_EXAMPLE), NULL, 0);
	receive_fails(sv, 2000, SQUIB_E_ENCODING, "no userfaultfd received");
}

static void test_should_refuse_two_fds_or_one_that_is_no_userfaultfd(void **state)
{
	int sv[2], pf[2];

	(void)state;
	SKIP_WITHOUT_UFFD();
	assert_int_equal(pipe2(pf, O_CLOEXEC), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_with_fds(sv[1], FC_EXAMPLE, strlen(FC_EXAMPLE), pf, 2);
	receive_fails(sv, 2000, SQUIB_E_ENCODING, "2 fds received");
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_with_fds(sv[1], FC_EXAMPLE, strlen(FC_EXAMPLE), pf, 1);
	receive_fails(sv, 2000, SQUIB_E_ENCODING, "not a userfaultfd");
	close(pf[0]);
	close(pf[1]);
}

/* Before, a substring of the fd's /proc link decided: a file named "userfaultfd" passed and
 * so did an uninitialised userfaultfd. Now the fd is asked with ioctls. */
static void test_should_recognise_a_userfaultfd_by_ioctl_not_by_name(void **state)
{
	char *dir = squib_test_tmpdir(), *p = squib_test_path(dir, "userfaultfd");
	int sv[2], fd, raw, ep;

	(void)state;
	SKIP_WITHOUT_UFFD();
	assert_int_equal(squib_test_write_file(p, "x", 1), 0);
	assert_true((fd = open(p, O_RDONLY | O_CLOEXEC)) >= 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_with_fds(sv[1], FC_EXAMPLE, strlen(FC_EXAMPLE), &fd, 1);
	receive_fails(sv, 2000, SQUIB_E_ENCODING, "not a userfaultfd");
	assert_true((ep = epoll_create1(EPOLL_CLOEXEC)) >= 0); /* EINVAL for UFFDIO_API too */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_with_fds(sv[1], FC_EXAMPLE, strlen(FC_EXAMPLE), &ep, 1);
	receive_fails(sv, 2000, SQUIB_E_ENCODING, "not a userfaultfd");
	assert_true((raw = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)) >= 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_with_fds(sv[1], FC_EXAMPLE, strlen(FC_EXAMPLE), &raw, 1);
	receive_fails(sv, 2000, SQUIB_E_ENCODING, "never initialised");
	close(fd);
	close(ep);
	close(raw);
	squib_test_rmtree(dir);
	free(p);
	free(dir);
}

static void test_should_report_a_socket_closed_before_the_handshake(void **state)
{
	int sv[2];

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	close(sv[1]);
	sv[1] = -1;
	receive_fails(sv, 2000, SQUIB_E_IO, "the VMM closed the socket before the handshake");
	/* Half a message, then EOF. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_with_fds(sv[1], FC_EXAMPLE, 20, NULL, 0);
	shutdown(sv[1], SHUT_WR);
	receive_fails(sv, 2000, SQUIB_E_ENCODING, "in the middle of the handshake");
	/* Bytes that are no JSON at all, then EOF: the parser says why. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	send_with_fds(sv[1], "hello", 5, NULL, 0);
	shutdown(sv[1], SHUT_WR);
	receive_fails(sv, 2000, SQUIB_E_ENCODING, "invalid JSON");
}

static void test_should_time_out_and_refuse_endless_messages(void **state)
{
	struct squib_error_detail d;
	struct squib_uffd_peer p;
	char *junk = malloc(SQUIB_UFFD_HANDSHAKE_MAX + 100);
	int64_t t0;
	int sv[2];

	(void)state;
	assert_non_null(junk);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	t0 = now_ms();
	assert_int_equal(squib_uffd_receive(sv[0], 100, &p, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ETIMEDOUT);
	assert_true(now_ms() - t0 < 2000);
	close(sv[1]);
	/* "[" and whitespace never complete: the size limit ends it. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	memset(junk, ' ', SQUIB_UFFD_HANDSHAKE_MAX + 100);
	junk[0] = '[';
	send_with_fds(sv[1], junk, SQUIB_UFFD_HANDSHAKE_MAX + 100, NULL, 0);
	receive_fails(sv, 2000, SQUIB_E_SIZE_LIMIT_EXCEEDED, NULL);
	free(junk);
}

/* ---- listen / connect ---------------------------------------------------------------------- */

struct dir {
	char *dir, *sock, *mem, *state;
};

static int setup(void **state)
{
	struct dir *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->dir = squib_test_tmpdir();
	f->sock = squib_test_path(f->dir, "uffd.sock");
	f->mem = squib_test_path(f->dir, "ram.mem");
	f->state = squib_test_path(f->dir, "ram.snap");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct dir *f = *state;

	squib_test_rmtree(f->dir);
	free(f->dir);
	free(f->sock);
	free(f->mem);
	free(f->state);
	free(f);
	return 0;
}

static void test_should_replace_only_a_stale_socket(void **state)
{
	struct dir *f = *state;
	struct squib_error_detail d;
	int a, b;

	/* A live listener is not replaced. */
	assert_int_equal(squib_uffd_listen(f->sock, &a, &d), 0);
	assert_int_equal(squib_uffd_listen(f->sock, &b, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "another handler is listening"));
	assert_int_equal(b, -1);
	/* Its listener gone, the socket file is stale: replaced. */
	close(a);
	assert_int_equal(squib_uffd_listen(f->sock, &b, &d), 0);
	close(b);
	unlink(f->sock);
	/* Any other file is left alone. */
	assert_int_equal(squib_test_write_file(f->sock, "data", 4), 0);
	assert_int_equal(squib_uffd_listen(f->sock, &a, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "is not a socket"));
	assert_int_equal(squib_test_exists(f->sock), 1);
}

static void test_should_refuse_a_missing_socket_naming_its_path(void **state)
{
	struct dir *f = *state;
	struct squib_uffd_remote_options o = {.connect_timeout_ms = 100};
	struct squib_uffd_remote_region r;
	struct squib_uffd_remote *u = (void *)1;
	struct squib_error_detail d;
	uint8_t *mem;
	int64_t t0;

	SKIP_WITHOUT_UFFD();
	mem = mmap(NULL, 4 * ps(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(mem != MAP_FAILED);
	r = (struct squib_uffd_remote_region){mem, 4 * ps(), 0};
	t0 = now_ms();
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), &o, &u, &d),
			 SQUIB_E_INVALID_PATH);
	assert_true(now_ms() - t0 < 2000);
	assert_null(u);
	assert_non_null(strstr(d.msg, f->sock));
	assert_non_null(strstr(d.msg, "no uffd handler socket"));
	/* Nothing stays registered: the memory is plain anonymous memory again. */
	mem[0] = 1;
	assert_int_equal(mem[ps()], 0);
	/* Hugepages are refused up front. */
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, 2 << 20, &o, &u, &d),
			 SQUIB_E_INVALID_ARGUMENT);
	assert_non_null(strstr(d.msg, "hugepages are not supported"));
	munmap(mem, 4 * ps());
}

/* ---- both ends: a handler in a child process ---------------------------------------------- */

enum handler_mode {
	SERVE,		 /* serve with the pager until the VMM hangs up; stats to the pipe */
	ACCEPT_AND_HANG, /* take the uffd, serve nothing, wait to be killed */
	ACCEPT_AND_EXIT, /* a grandchild keeps the connection; the listener exits */
	MINIMAL,	 /* Firecracker's example handler's way: one recv, page by page */
};

struct handler {
	pid_t pid;
	int rd; /* from the child: 1 byte when listening, then its report */
};

struct report {
	int ok;
	int vmm_pid;
	struct squib_pager_stats st;
};

static void write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/* Wait (at most 10 s) for the VMM to hang up. */
static void wait_hangup(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLRDHUP};

	poll(&p, 1, 10000);
}

static int child_serve(struct squib_uffd_peer *peer, const char *mem, struct report *rep)
{
	struct squib_pager_region r[4];
	struct squib_page_source src;
	struct squib_memfile *m;
	struct squib_pager *pg;

	if (peer->n > 4 || squib_memfile_open(mem, &m, NULL) ||
	    squib_page_source_file(m, &src, NULL))
		return 1;
	for (uint32_t i = 0; i < peer->n; i++)
		r[i] = (struct squib_pager_region){
		    (void *)(uintptr_t)peer->mappings[i].base_host_virt_addr,
		    peer->mappings[i].size, peer->mappings[i].offset / ps()};
	if (squib_pager_attach(peer->uffd, r, peer->n, src, NULL, &pg, NULL))
		return 1;
	peer->uffd = -1;
	wait_hangup(peer->conn_fd);
	squib_pager_stop(pg);
	squib_pager_stats(pg, &rep->st);
	rep->ok = squib_pager_error(pg, NULL) == 0;
	squib_pager_free(pg);
	squib_memfile_close(m);
	return 0;
}

/* One page from the raw RAM range of the memory file at the faulting address. */
static int minimal_copy(int uffd, int memfd, uint64_t base, uint64_t addr, uint8_t *page)
{
	uint64_t pg = (addr - base) / ps() * ps();
	struct uffdio_copy c = {.dst = base + pg, .src = (uint64_t)(uintptr_t)page, .len = ps()};

	if (pread(memfd, page, ps(), (off_t)pg) != (ssize_t)ps())
		return -1;
	return ioctl(uffd, UFFDIO_COPY, &c) && errno != EEXIST ? -1 : 0;
}

/*
 * As Firecracker's example handlers do it (uffd_utils.rs): one recv into 1 KiB
 * must bring the whole message and the fd; every fault is served with one
 * UFFDIO_COPY of one page; no library code on this side.
 */
static int child_minimal(int lfd, const char *mem, int wr)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	char buf[1025];
	struct iovec iov = {buf, sizeof(buf) - 1};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = ctl.b,
			    .msg_controllen = sizeof(ctl.b)};
	struct pollfd pf[2];
	unsigned long long base;
	int c, uffd, memfd, served = 0;
	uint8_t *page;
	ssize_t n;

	/* squib_uffd_listen's fd is non-blocking: wait for the VMM first. */
	pf[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
	if (poll(pf, 1, 5000) != 1 || (c = accept(lfd, NULL, NULL)) < 0 ||
	    (n = recvmsg(c, &mh, 0)) <= 0 || !CMSG_FIRSTHDR(&mh))
		return 10;
	buf[n] = '\0';
	if (buf[n - 1] != ']' || sscanf(buf, "[{\"base_host_virt_addr\":%llu,", &base) != 1)
		return 10;
	memcpy(&uffd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
	if ((memfd = open(mem, O_RDONLY)) < 0 || !(page = malloc(ps())))
		return 11;
	pf[0] = (struct pollfd){.fd = uffd, .events = POLLIN};
	pf[1] = (struct pollfd){.fd = c, .events = POLLRDHUP};
	while (poll(pf, 2, 10000) > 0 && !pf[1].revents) {
		struct uffd_msg m;

		if (read(uffd, &m, sizeof(m)) != sizeof(m) || m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		if (minimal_copy(uffd, memfd, base, m.arg.pagefault.address, page))
			return 12;
		served++;
	}
	write_all(wr, &served, sizeof(served));
	return 0;
}

static void child_main(const char *sock, const char *mem, enum handler_mode mode, int wr)
{
	struct report rep = {0};
	struct squib_uffd_peer peer;
	int lfd, rc = 1;

	if (squib_uffd_listen(sock, &lfd, NULL))
		_exit(2);
	write_all(wr, "L", 1);
	if (mode == MINIMAL)
		_exit(child_minimal(lfd, mem, wr));
	if (squib_uffd_accept(lfd, 5000, &peer, NULL))
		_exit(3);
	rep.vmm_pid = peer.pid;
	if (mode == SERVE) {
		rc = child_serve(&peer, mem, &rep);
		write_all(wr, &rep, sizeof(rep));
	} else if (mode == ACCEPT_AND_HANG) {
		for (;;)
			pause();
	} else {
		pid_t g = fork();

		if (g == 0) {
			for (;;)
				pause(); /* holds conn_fd and the uffd */
		}
		write_all(wr, &g, sizeof(g));
		rc = 0;
	}
	squib_uffd_peer_close(&peer);
	_exit(rc);
}

static int read_timeout(int fd, void *buf, size_t len, int ms)
{
	size_t got = 0;
	int64_t end = now_ms() + ms;

	while (got < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int left = (int)(end - now_ms());
		ssize_t n;

		if (left <= 0 || poll(&p, 1, left) <= 0)
			return -1;
		if ((n = read(fd, (char *)buf + got, len - got)) <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static void handler_start(struct handler *h, const char *sock, const char *mem,
			  enum handler_mode mode)
{
	int pf[2];
	char c;

	assert_int_equal(pipe2(pf, O_CLOEXEC), 0);
	fflush(NULL);
	h->pid = fork();
	assert_true(h->pid >= 0);
	if (!h->pid) {
		close(pf[0]);
		child_main(sock, mem, mode, pf[1]);
	}
	close(pf[1]);
	h->rd = pf[0];
	assert_int_equal(read_timeout(h->rd, &c, 1, 5000), 0);
}

/* Wait for the child's exit (at most 10 s); its status. */
static int handler_wait(struct handler *h)
{
	int64_t end = now_ms() + 10000;
	int st = 0;

	while (waitpid(h->pid, &st, WNOHANG) == 0) {
		if (now_ms() > end) {
			kill(h->pid, SIGKILL);
			waitpid(h->pid, &st, 0);
			fail_msg("handler child did not exit");
		}
		sleep_ms(5);
	}
	close(h->rd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void *anon(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	assert_true(p != MAP_FAILED);
	madvise(p, size, MADV_NOHUGEPAGE);
	return p;
}

/* RAM of `pages` pages with every `zero_every`-th page cleared (a hole in the file). */
static uint8_t *pattern_ram(uint64_t pages, uint64_t zero_every, uint64_t *zeros)
{
	uint8_t *m = squib_test_guest_ram(pages * ps(), 0x5eed);

	*zeros = 0;
	for (uint64_t k = 0; k < pages; k += zero_every) {
		memset(m + k * ps(), 0, ps());
		(*zeros)++;
	}
	return m;
}

/* Two regions of 40 and 24 pages: a memory file of both, back to back. */
#define R0_PAGES 40
#define R1_PAGES 24

static void save_two_regions(const char *path, const uint8_t *ram)
{
	struct squib_memfile_source_region r[2] = {
	    {0, R0_PAGES * ps(), ram}, {1ull << 32, R1_PAGES * ps(), ram + R0_PAGES * ps()}};
	struct squib_memfile_source src = {r, 2, ps()};
	struct squib_memfile_manifest m;
	struct squib_error_detail d;

	assert_int_equal(squib_memfile_save_full(path, &src, NULL, &m, &d), 0);
	squib_memfile_manifest_release(&m);
}

static void test_should_serve_guest_memory_from_another_process(void **state)
{
	struct dir *f = *state;
	uint64_t pages = R0_PAGES + R1_PAGES, zeros;
	uint8_t *want, *m0, *m1;
	struct squib_uffd_remote_region r[2];
	struct squib_uffd_remote *u;
	struct squib_error_detail d;
	struct handler h;
	struct report rep;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 5, &zeros);
	save_two_regions(f->mem, want);
	handler_start(&h, f->sock, f->mem, SERVE);
	m0 = anon(R0_PAGES * ps());
	m1 = anon(R1_PAGES * ps());
	r[0] = (struct squib_uffd_remote_region){m0, R0_PAGES * ps(), 0};
	r[1] = (struct squib_uffd_remote_region){m1, R1_PAGES * ps(), R0_PAGES * ps()};
	assert_int_equal(squib_uffd_remote_start(f->sock, r, 2, ps(), NULL, &u, &d), 0);
	assert_int_equal(squib_uffd_remote_peer_pid(u), h.pid);
	/* Reading faults every page in through the child's pager. */
	assert_memory_equal(m0, want, R0_PAGES * ps());
	assert_memory_equal(m1, want + R0_PAGES * ps(), R1_PAGES * ps());
	assert_int_equal(squib_uffd_remote_error(u, &d), 0);
	squib_uffd_remote_free(u); /* hang-up: the child stops */
	assert_int_equal(read_timeout(h.rd, &rep, sizeof(rep), 10000), 0);
	assert_int_equal(handler_wait(&h), 0);
	assert_true(rep.ok);
	assert_int_equal(rep.vmm_pid, getpid());
	/* Zero pages were installed without a read; every present page read once. */
	assert_int_equal(rep.st.pages_zeroed, zeros);
	assert_int_equal(rep.st.pages_copied, pages - zeros);
	assert_int_equal(rep.st.bytes_read, (pages - zeros) * ps());
	assert_true(rep.st.faults >= 2 && rep.st.faults < pages);
	munmap(m0, R0_PAGES * ps());
	munmap(m1, R1_PAGES * ps());
	munmap(want, pages * ps());
}

static void test_should_work_with_a_handler_written_like_firecrackers_examples(void **state)
{
	struct dir *f = *state;
	uint64_t pages = 48, zeros;
	struct squib_uffd_remote_region r;
	struct squib_uffd_remote *u;
	struct squib_error_detail d;
	struct handler h;
	uint8_t *want, *m;
	int served = 0;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 6, &zeros);
	assert_int_equal(squib_test_write_file(f->mem, want, pages * ps()),
			 0); /* raw, as Firecracker's */
	handler_start(&h, f->sock, f->mem, MINIMAL);
	m = anon(pages * ps());
	r = (struct squib_uffd_remote_region){m, pages * ps(), 0};
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), NULL, &u, &d), 0);
	assert_memory_equal(m, want, pages * ps());
	squib_uffd_remote_free(u);
	assert_int_equal(read_timeout(h.rd, &served, sizeof(served), 10000), 0);
	assert_int_equal(handler_wait(&h), 0);
	assert_int_equal(served, pages);
	munmap(m, pages * ps());
	munmap(want, pages * ps());
}

/* ---- the handler's death ----------------------------------------------------------------- */

struct lost {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int calls, code;
	char msg[SQUIB_DETAIL_MSG_MAX];
};

static void on_lost(void *ctx, int code, const struct squib_error_detail *d)
{
	struct lost *l = ctx;

	pthread_mutex_lock(&l->lock);
	l->calls++;
	l->code = code;
	snprintf(l->msg, sizeof(l->msg), "%s", d->msg);
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

/* Wait at most ms for on_lost; the number of calls. */
static int wait_lost(struct lost *l, int ms)
{
	struct timespec until;
	int calls;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&l->lock);
	while (!l->calls && pthread_cond_timedwait(&l->cond, &l->lock, &until) == 0)
		;
	calls = l->calls;
	pthread_mutex_unlock(&l->lock);
	return calls;
}

struct blocked {
	volatile uint8_t *addr;
	atomic_int done;
	uint8_t value;
};

static void *touch(void *arg)
{
	struct blocked *b = arg;

	b->value = *b->addr; /* blocks: nobody serves this page */
	atomic_store(&b->done, 1);
	return NULL;
}

/* A VMM whose handler never serves, with a thread blocked on a page. */
struct stuck {
	struct lost l;
	struct blocked b;
	pthread_t t;
	uint8_t *mem;
	struct squib_uffd_remote *u;
};

static void stuck_start(struct stuck *s, const char *sock)
{
	struct squib_uffd_remote_options o = {.on_lost = on_lost, .ctx = &s->l};
	struct squib_uffd_remote_region r;
	struct squib_error_detail d;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->l.lock, NULL);
	pthread_cond_init(&s->l.cond, NULL);
	s->mem = anon(16 * ps());
	r = (struct squib_uffd_remote_region){s->mem, 16 * ps(), 0};
	assert_int_equal(squib_uffd_remote_start(sock, &r, 1, ps(), &o, &s->u, &d), 0);
	s->b.addr = s->mem + 3 * ps();
	assert_int_equal(pthread_create(&s->t, NULL, touch, &s->b), 0);
	sleep_ms(100);
	assert_int_equal(atomic_load(&s->b.done), 0); /* really blocked */
}

/* Within 2 s: on_lost once and the error set; free then unblocks the thread (reading zeros). */
static void stuck_expect_lost(struct stuck *s, int pid, const char *how)
{
	struct squib_error_detail d;
	struct timespec until;
	char pidtext[32];

	assert_int_equal(wait_lost(&s->l, 2000), 1);
	assert_int_equal(s->l.code, SQUIB_E_MEMORY_IO);
	snprintf(pidtext, sizeof(pidtext), "(pid %d)", pid);
	if (!strstr(s->l.msg, pidtext) || !strstr(s->l.msg, how) ||
	    !strstr(s->l.msg, "guest memory can no longer be served"))
		fail_msg("unexpected loss message '%s'", s->l.msg);
	assert_int_equal(squib_uffd_remote_error(s->u, &d), SQUIB_E_MEMORY_IO);
	assert_string_equal(d.msg, s->l.msg);
	assert_int_equal(atomic_load(&s->b.done), 0);
	squib_uffd_remote_free(s->u);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 2;
	assert_int_equal(pthread_timedjoin_np(s->t, NULL, &until), 0);
	assert_int_equal(s->b.value, 0);
	assert_int_equal(s->l.calls, 1);
	munmap(s->mem, 16 * ps());
	pthread_cond_destroy(&s->l.cond);
	pthread_mutex_destroy(&s->l.lock);
}

static void test_should_detect_a_killed_handler_within_two_seconds(void **state)
{
	struct dir *f = *state;
	struct handler h;
	struct stuck s;

	SKIP_WITHOUT_UFFD();
	handler_start(&h, f->sock, f->mem, ACCEPT_AND_HANG);
	stuck_start(&s, f->sock);
	assert_int_equal(squib_uffd_remote_error(s.u, NULL), 0);
	kill(h.pid, SIGKILL);
	assert_int_equal(handler_wait(&h), 128 + SIGKILL);
	stuck_expect_lost(&s, h.pid, "exited");
}

static void test_should_detect_a_handler_pid_exit_while_its_socket_stays_open(void **state)
{
	struct dir *f = *state;
	struct handler h;
	struct stuck s;
	pid_t g = -1;

	SKIP_WITHOUT_UFFD();
	handler_start(&h, f->sock, f->mem, ACCEPT_AND_EXIT);
	stuck_start(&s, f->sock);
	assert_int_equal(read_timeout(h.rd, &g, sizeof(g), 5000), 0);
	assert_int_equal(handler_wait(&h), 0);
	/* Only the pidfd can tell: the grandchild still holds the connection. */
	stuck_expect_lost(&s, h.pid, "exited");
	kill(g, SIGKILL);
}

static void test_should_detect_a_handler_closing_its_socket(void **state)
{
	struct squib_uffd_peer peer;
	struct squib_error_detail d;
	struct dir *f = *state;
	struct stuck s;
	int lfd;

	SKIP_WITHOUT_UFFD();
	/* The handler is this very process: its pid never exits, only the socket hangs up. */
	assert_int_equal(squib_uffd_listen(f->sock, &lfd, &d), 0);
	{
		struct squib_uffd_remote_options o = {.on_lost = on_lost};
		struct squib_uffd_remote_region r;

		memset(&s, 0, sizeof(s));
		pthread_mutex_init(&s.l.lock, NULL);
		pthread_cond_init(&s.l.cond, NULL);
		o.ctx = &s.l;
		s.mem = anon(16 * ps());
		r = (struct squib_uffd_remote_region){s.mem, 16 * ps(), 0};
		/* Connect first (the backlog holds it), accept afterwards. */
		assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), &o, &s.u, &d), 0);
	}
	assert_int_equal(squib_uffd_accept(lfd, 2000, &peer, &d), 0);
	assert_int_equal(peer.pid, getpid());
	/* Stray bytes from a handler are ignored. */
	assert_int_equal(write(peer.conn_fd, "hello", 5), 5);
	sleep_ms(50);
	assert_int_equal(squib_uffd_remote_error(s.u, NULL), 0);
	s.b.addr = s.mem + 3 * ps();
	assert_int_equal(pthread_create(&s.t, NULL, touch, &s.b), 0);
	squib_uffd_peer_close(&peer);
	close(lfd);
	stuck_expect_lost(&s, getpid(), "closed its socket");
}

/* ---- a handler of another uid is not trusted with the uffd ---------------------------- */

#define OTHER_UID 65534 /* nobody */

/* In a forked child: become OTHER_UID for good (false: not possible here). */
static bool become_other(void)
{
	return !setgroups(0, NULL) && !setresgid(OTHER_UID, OTHER_UID, OTHER_UID) &&
	       !setresuid(OTHER_UID, OTHER_UID, OTHER_UID);
}

/* Another uid needs root (to switch to it) and a tmpdir it can walk through. */
static bool other_uid_missing(const struct dir *f)
{
	if (geteuid() != 0) {
		print_message("*** SKIP: not root: no process of another uid can be made here: "
			      "SO_PEERCRED checks not tested ***\n");
		return true;
	}
	assert_int_equal(chmod(f->dir, 0711), 0);
	return false;
}

/* A listener that binds sock as root and listens as OTHER_UID; its exit: 1 if the VMM's
 * connection brought any byte, 0 if it closed without one, else a failure. */
static void foreign_listener(const char *sock, struct handler *h)
{
	int pf[2];
	char c;

	assert_int_equal(pipe2(pf, O_CLOEXEC), 0);
	fflush(NULL);
	if (!(h->pid = fork())) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), conn;
		struct pollfd p = {.fd = s, .events = POLLIN};

		strcpy(sa.sun_path, sock);
		unlink(sock);
		/* SO_PEERCRED reports who called listen(). */
		if (bind(s, (struct sockaddr *)&sa, sizeof(sa)) || !become_other() || listen(s, 4))
			_exit(20);
		write_all(pf[1], "L", 1);
		if (poll(&p, 1, 5000) != 1 || (conn = accept(s, NULL, NULL)) < 0)
			_exit(21);
		p = (struct pollfd){.fd = conn, .events = POLLIN};
		if (poll(&p, 1, 5000) != 1)
			_exit(22);
		_exit(recv(conn, &c, 1, 0) > 0 ? 1 : 0);
	}
	assert_true(h->pid > 0);
	close(pf[1]);
	h->rd = pf[0];
	assert_int_equal(read_timeout(h->rd, &c, 1, 5000), 0);
}

static void test_should_not_send_the_uffd_to_a_handler_of_another_uid(void **state)
{
	const uint32_t trusted = OTHER_UID;
	struct squib_uffd_remote_options o = {.connect_timeout_ms = 1000};
	struct dir *f = *state;
	struct squib_uffd_remote_region r;
	struct squib_uffd_remote *u = NULL;
	struct squib_error_detail d;
	struct handler h;
	uint8_t *mem;

	SKIP_WITHOUT_UFFD();
	if (other_uid_missing(f))
		skip();
	mem = anon(4 * ps());
	r = (struct squib_uffd_remote_region){mem, 4 * ps(), 0};
	foreign_listener(f->sock, &h);
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), &o, &u, &d),
			 SQUIB_E_INVALID_PATH);
	assert_null(u);
	if (!strstr(d.msg, "runs as uid 65534") || !strstr(d.msg, "the uffd is not sent to") ||
	    !strstr(d.msg, f->sock))
		fail_msg("unexpected message '%s'", d.msg);
	assert_int_equal(handler_wait(&h), 0); /* not one byte reached it */
	/* Named in handler_uids, it is trusted. */
	o.handler_uids = &trusted;
	o.handler_uid_count = 1;
	foreign_listener(f->sock, &h);
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), &o, &u, &d), 0);
	assert_int_equal(handler_wait(&h), 1);
	squib_uffd_remote_free(u);
	munmap(mem, 4 * ps());
}

/* ---- the `serve` CLI --------------------------------------------------------------------- */

/* serve --socket sock --mem mem [--state st] [--batch 4096 when one_page] [--mode all]. */
static void cli_start_mode(struct squib_test_bg *c, const char *sock, const char *mem,
			   const char *st, bool one_page, bool all)
{
	char *argv[12] = {squib_test_cli_path(), "serve", "--socket",
			  (char *)sock,		 "--mem", (char *)mem};
	int k = 6;

	if (all) {
		argv[k++] = "--mode";
		argv[k++] = "all";
	}
	if (st) {
		argv[k++] = "--state";
		argv[k++] = (char *)st;
	}
	if (one_page) {
		argv[k++] = "--batch";
		argv[k++] = "4096";
	}
	argv[k] = NULL;
	squib_test_bg_start(NULL, argv, c);
}

static void cli_start_ex(struct squib_test_bg *c, const char *sock, const char *mem, const char *st,
			 bool one_page)
{
	cli_start_mode(c, sock, mem, st, one_page, false);
}

static void cli_start(struct squib_test_bg *c, const char *sock, const char *mem, const char *st)
{
	cli_start_ex(c, sock, mem, st, false);
}

/* Wait (at most 5 s) until stdout holds `text`. */
static void cli_wait_for(struct squib_test_bg *c, const char *text)
{
	squib_test_bg_wait_for(c, text, 5000);
}

/* Complete lines of s holding text. */
static int lines_with(const char *s, const char *text)
{
	int n = 0;

	for (const char *at = s; (at = strstr(at, text)) && strchr(at, '\n'); n++)
		at = strchr(at, '\n') + 1;
	return n;
}

/* Wait (at most 5 s) until n complete lines of stderr hold `text`. */
static void cli_wait_err_n(struct squib_test_bg *c, const char *text, int n)
{
	int64_t until = now_ms() + 5000;

	for (;;) {
		squib_test_bg_pump(c);
		if (lines_with(c->ebuf, text) >= n)
			return;
		if (now_ms() > until)
			fail_msg("stderr lacks %d lines with '%s' after 5 s: '%s' (stdout '%s')", n,
				 text, c->ebuf, c->obuf);
		sleep_ms(5);
	}
}

static void cli_wait_err(struct squib_test_bg *c, const char *text)
{
	cli_wait_err_n(c, text, 1);
}

/* Wait (at most 10 s) for the exit; its status, with all output read. */
static int cli_finish(struct squib_test_bg *c)
{
	return squib_test_bg_finish(c, 10000);
}

/* The VMM: memory of `pages` pages through `serve`, compared with want. */
static void vmm_read_through_serve(const char *sock, const uint8_t *want, uint64_t pages,
				   struct squib_test_bg *c)
{
	struct squib_uffd_remote_region r;
	struct squib_uffd_remote *u;
	struct squib_error_detail d;
	uint8_t *mem = anon(pages * ps());
	char line[128];

	r = (struct squib_uffd_remote_region){mem, pages * ps(), 0};
	assert_int_equal(squib_uffd_remote_start(sock, &r, 1, ps(), NULL, &u, &d), 0);
	snprintf(line, sizeof(line), "serving pid %d: 1 regions, %llu MiB", (int)getpid(),
		 (unsigned long long)((pages * ps()) >> 20));
	cli_wait_for(c, line);
	assert_memory_equal(mem, want, pages * ps());
	assert_int_equal(squib_uffd_remote_error(u, &d), 0);
	squib_uffd_remote_free(u);
	munmap(mem, pages * ps());
}

static void test_should_serve_a_memory_file_with_the_cli(void **state)
{
	struct dir *f = *state;
	struct squib_error_detail d;
	uint64_t pages = 512, zeros;
	uint8_t *want;
	struct squib_test_bg c;
	char stats[160];
	int lfd;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 3, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	cli_start(&c, f->sock, f->mem, NULL);
	cli_wait_for(&c, "listening on ");
	/* A second handler on the same path is refused; its probe does not disturb serve. */
	assert_int_equal(squib_uffd_listen(f->sock, &lfd, &d), SQUIB_E_INVALID_PATH);
	assert_non_null(strstr(d.msg, "another handler is listening"));
	vmm_read_through_serve(f->sock, want, pages, &c);
	assert_int_equal(cli_finish(&c), 0);
	assert_non_null(strstr(c.obuf, "stopped: the VMM hung up"));
	snprintf(stats, sizeof(stats), "pages copied %llu, pages zeroed %llu, bytes read %llu,",
		 (unsigned long long)(pages - zeros), (unsigned long long)zeros,
		 (unsigned long long)((pages - zeros) * ps()));
	if (!strstr(c.obuf, stats))
		fail_msg("stats '%s' not in '%s'", stats, c.obuf);
	assert_non_null(strstr(c.obuf, "median "));
	if (c.elen)
		fail_msg("stderr: '%s'", c.ebuf);
	assert_int_equal(squib_test_exists(f->sock), 0); /* removed on exit */
	munmap(want, pages * ps());
}

/* Run `serve` with argv[2..] to its exit (it fails before listening); its status. */
static int cli_refused(struct squib_test_bg *c, char **args)
{
	char *argv[16] = {squib_test_cli_path(), "serve"};
	int k = 2;

	while (*args && k < 15)
		argv[k++] = *args++;
	argv[k] = NULL;
	squib_test_bg_start(NULL, argv, c);
	return cli_finish(c);
}

/* serve --chain: a Diff over its older layers, read lazily; --mem from --state's path. */
static void test_should_serve_a_chain_of_diffs_with_the_cli(void **state)
{
	static const uint64_t first[] = {1, 2, 9}, second[] = {2, 40, 41};
	struct dir *f = *state;
	struct squib_memfile_manifest m0, m1, m2;
	char *base = squib_test_path(f->dir, "base.mem"), *d1 = squib_test_path(f->dir, "d1.mem");
	char *d2 = squib_test_path(f->dir, "d2.mem"), *d2s = squib_test_path(f->dir, "d2.snap");
	uint64_t pages = 64, zeros;
	struct squib_test_bg c;
	uint8_t *want;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 6, &zeros);
	squib_test_save_full(base, want, pages * ps(), false, &m0);
	for (size_t i = 0; i < 3; i++)
		squib_test_fill_page(want, first[i], 61);
	squib_test_save_diff(d1, want, pages * ps(), m0.layout.id, first, 3, false, &m1);
	for (size_t i = 0; i < 3; i++)
		squib_test_fill_page(want, second[i], 62);
	squib_test_save_diff(d2, want, pages * ps(), m1.layout.id, second, 3, false, &m2);
	squib_test_save_state(d2s, &m2.layout);
	/* A Diff alone cannot be served; layers in the wrong order do not chain (exit 2). */
	assert_int_equal(cli_refused(&c, (char *[]){"--socket", f->sock, "--mem", d2, NULL}), 1);
	assert_non_null(strstr(c.ebuf, "d2.mem"));
	assert_int_equal(cli_refused(&c, (char *[]){"--socket", f->sock, "--state", d2s, "--chain",
						    d1, "--chain", base, NULL}),
			 2);
	assert_non_null(strstr(c.ebuf, "snapshot pair mismatch"));
	{
		char *argv[] = {squib_test_cli_path(),
				"serve",
				"--socket",
				f->sock,
				"--state",
				d2s,
				"--chain",
				base,
				"--chain",
				d1,
				NULL};

		squib_test_bg_start(NULL, argv, &c);
	}
	cli_wait_for(&c, "listening on ");
	vmm_read_through_serve(f->sock, want, pages, &c);
	assert_int_equal(cli_finish(&c), 0);
	assert_non_null(strstr(c.obuf, "stopped: the VMM hung up"));
	if (c.elen)
		fail_msg("stderr: '%s'", c.ebuf);
	squib_memfile_manifest_release(&m0);
	squib_memfile_manifest_release(&m1);
	squib_memfile_manifest_release(&m2);
	munmap(want, pages * ps());
	free(base);
	free(d1);
	free(d2);
	free(d2s);
}

/* --mode all: every page is installed as soon as the VMM connects; its reads then fault nothing. */
static void test_should_install_every_page_with_mode_all(void **state)
{
	struct dir *f = *state;
	struct squib_uffd_remote_region r;
	struct squib_uffd_remote *u;
	struct squib_error_detail d;
	uint64_t pages = 256, zeros;
	uint8_t *want, *mem;
	struct squib_test_bg c;
	char stats[160];

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 5, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	cli_start_mode(&c, f->sock, f->mem, NULL, false, true);
	cli_wait_for(&c, "listening on ");
	mem = anon(pages * ps());
	r = (struct squib_uffd_remote_region){mem, pages * ps(), 0};
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), NULL, &u, &d), 0);
	cli_wait_for(&c, "installed all pages: 256 by this fill");
	assert_memory_equal(mem, want, pages * ps());
	squib_uffd_remote_free(u);
	munmap(mem, pages * ps());
	assert_int_equal(cli_finish(&c), 0);
	/* Installed by the fill, none by a fault: holes zeroed without a read. */
	snprintf(stats, sizeof(stats),
		 "faults 0, pages copied %llu, pages zeroed %llu, bytes read %llu,",
		 (unsigned long long)(pages - zeros), (unsigned long long)zeros,
		 (unsigned long long)((pages - zeros) * ps()));
	if (!strstr(c.obuf, stats))
		fail_msg("stats '%s' not in '%s'", stats, c.obuf);
	munmap(want, pages * ps());
}

static void test_should_serve_with_a_matching_state_and_refuse_another(void **state)
{
	struct dir *f = *state;
	uint64_t pages = 64, zeros;
	char *st = NULL, *mem = NULL, *other = NULL;
	uint8_t *want;
	struct squib_test_bg c;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 4, &zeros);
	squib_test_save_pair(f->dir, "a", want, pages * ps(), false, &st, &mem, NULL);
	squib_test_save_pair(f->dir, "b", want, pages * ps(), false, &other, NULL, NULL);
	cli_start(&c, f->sock, mem, st);
	cli_wait_for(&c, "listening on ");
	vmm_read_through_serve(f->sock, want, pages, &c);
	assert_int_equal(cli_finish(&c), 0);
	/* b.snap names b.mem: refused before listening, one line on stderr, exit 2 (integrity). */
	cli_start(&c, f->sock, mem, other);
	assert_int_equal(cli_finish(&c), 2);
	assert_non_null(strstr(c.ebuf, "pair mismatch"));
	assert_int_equal(squib_test_count_lines(c.ebuf), 1);
	assert_null(strstr(c.obuf, "listening"));
	free(st);
	free(mem);
	free(other);
	munmap(want, pages * ps());
}

static void test_should_serve_a_raw_firecracker_memory_file(void **state)
{
	struct dir *f = *state;
	uint64_t pages = 96, zeros;
	uint8_t *want;
	struct squib_test_bg c;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 7, &zeros);
	assert_int_equal(squib_test_write_file(f->mem, want, pages * ps()), 0);
	cli_start_ex(&c, f->sock, f->mem, NULL, ps() == 4096);
	cli_wait_for(&c, "listening on ");
	vmm_read_through_serve(f->sock, want, pages, &c);
	assert_int_equal(cli_finish(&c), 0);
	/* No manifest: every page is read, none zero-filled; --batch 4096: one page per fault. */
	assert_non_null(strstr(c.obuf, "pages zeroed 0,"));
	if (ps() == 4096)
		assert_non_null(strstr(c.obuf, "faults 96, pages copied 96, pages zeroed 0, "
					       "bytes read 393216, batches 96,"));
	munmap(want, pages * ps());
}

static void test_should_refuse_a_handshake_that_does_not_fit_the_memory_file(void **state)
{
	struct squib_uffd_remote_options o;
	struct dir *f = *state;
	uint64_t pages = 32, zeros;
	struct squib_uffd_remote_region r;
	struct squib_error_detail d;
	struct stuck s;
	uint8_t *want;
	struct squib_test_bg c;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 4, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	cli_start(&c, f->sock, f->mem, NULL);
	cli_wait_for(&c, "listening on ");
	/* A VMM with half the file's RAM: serve refuses, the VMM learns it lost its handler. */
	memset(&s, 0, sizeof(s));
	pthread_mutex_init(&s.l.lock, NULL);
	pthread_cond_init(&s.l.cond, NULL);
	s.mem = anon(16 * ps());
	o = (struct squib_uffd_remote_options){.on_lost = on_lost, .ctx = &s.l};
	r = (struct squib_uffd_remote_region){s.mem, 16 * ps(), 0};
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), &o, &s.u, &d), 0);
	s.b.addr = s.mem;
	assert_int_equal(pthread_create(&s.t, NULL, touch, &s.b), 0);
	/* Refused with one line naming the VMM; serve itself goes on waiting for a fitting one. */
	cli_wait_err(&c, "refused a connection from pid ");
	if (!strstr(c.ebuf, "handshake region 0: 65536 bytes at offset 0; the memory file's "
			    "region 0 is 131072 bytes") &&
	    ps() == 4096)
		fail_msg("unexpected error '%s'", c.ebuf);
	stuck_expect_lost(&s, c.pid, "closed its socket");
	kill(c.pid, SIGTERM);
	assert_int_equal(cli_finish(&c), 0);
	assert_int_equal(squib_test_count_lines(c.ebuf), 1);
	assert_non_null(strstr(c.obuf, "stopped: signal before a VMM connected"));
	munmap(want, pages * ps());
}

static void test_should_stop_serve_on_sigterm_before_a_vmm_connects(void **state)
{
	struct dir *f = *state;
	uint64_t zeros;
	uint8_t *want;
	struct squib_test_bg c;

	want = pattern_ram(8, 4, &zeros);
	squib_test_save_full(f->mem, want, 8 * ps(), false, NULL);
	cli_start(&c, f->sock, f->mem, NULL);
	cli_wait_for(&c, "listening on ");
	kill(c.pid, SIGTERM);
	assert_int_equal(cli_finish(&c), 0);
	assert_non_null(strstr(c.obuf, "stopped: signal before a VMM connected"));
	assert_int_equal(squib_test_exists(f->sock), 0);
	munmap(want, 8 * ps());
}

/* A blocking client connection to sock. */
static int connect_to(const char *sock)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(s >= 0);
	assert_true(strlen(sock) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, sock);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		fail_msg("connect %s: %s", sock, strerror(errno));
	return s;
}

/* SIGTERM while a client is in the middle of its handshake, SIGINT while a VMM is served. */
static void test_should_stop_serve_on_a_signal_during_a_handshake_and_while_serving(void **state)
{
	struct dir *f = *state;
	uint64_t pages = 8, zeros;
	struct squib_uffd_remote_region r;
	struct squib_uffd_remote *u;
	struct squib_error_detail d;
	struct squib_test_bg c;
	uint8_t *want, *mem;
	int64_t t0;
	int half;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 4, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	cli_start(&c, f->sock, f->mem, NULL);
	cli_wait_for(&c, "listening on ");
	half = connect_to(f->sock);
	send_with_fds(half, FC_EXAMPLE, 20, NULL, 0); /* and then nothing */
	sleep_ms(50);
	t0 = now_ms();
	kill(c.pid, SIGTERM);
	assert_int_equal(squib_test_bg_finish(&c, 2000), 0); /* liveness bound; aim 100 ms */
	print_message("stopped %lld ms after SIGTERM during a handshake\n",
		      (long long)(now_ms() - t0));
	assert_non_null(strstr(c.obuf, "stopped: signal before a VMM connected"));
	assert_int_equal(squib_test_exists(f->sock), 0);
	close(half);
	cli_start(&c, f->sock, f->mem, NULL);
	cli_wait_for(&c, "listening on ");
	mem = anon(pages * ps());
	r = (struct squib_uffd_remote_region){mem, pages * ps(), 0};
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), NULL, &u, &d), 0);
	cli_wait_for(&c, "serving pid ");
	assert_memory_equal(mem, want, pages * ps());
	t0 = now_ms();
	kill(c.pid, SIGINT);
	assert_int_equal(squib_test_bg_finish(&c, 2000), 0);
	print_message("stopped %lld ms after SIGINT while serving\n", (long long)(now_ms() - t0));
	assert_non_null(strstr(c.obuf, "stopped: signal\n"));
	assert_int_equal(squib_test_exists(f->sock), 0);
	squib_uffd_remote_free(u);
	munmap(mem, pages * ps());
	munmap(want, pages * ps());
}

static void test_should_report_cli_usage_errors(void **state)
{
	char *help[] = {squib_test_cli_path(), "serve", "--help", NULL};
	char *bad[] = {squib_test_cli_path(),
		       "serve",
		       "--socket",
		       "x.sock",
		       "--batch",
		       "0",
		       "--mem",
		       "m",
		       NULL};
	char *none[] = {squib_test_cli_path(), "serve", "--mem", "m", NULL};
	struct dir *f = *state;
	struct squib_test_proc p;
	struct squib_test_bg c;

	cli_start(&c, f->sock, "/nonexistent/ram.mem", NULL);
	assert_int_equal(cli_finish(&c), 1);
	assert_non_null(strstr(c.ebuf, "/nonexistent/ram.mem"));
	assert_int_equal(squib_test_count_lines(c.ebuf), 1);
	squib_test_spawn(NULL, help, &p);
	assert_int_equal(p.status, 0);
	assert_non_null(strstr(
	    p.out, "usage: squib-snapshot serve --socket PATH (--mem MEMFILE | --state STATE)"));
	squib_test_proc_free(&p);
	squib_test_spawn(NULL, bad, &p);
	assert_int_equal(p.status, 1);
	assert_non_null(strstr(p.err, "--batch needs a byte count"));
	squib_test_proc_free(&p);
	squib_test_spawn(NULL, none, &p);
	assert_int_equal(p.status, 1);
	assert_non_null(strstr(p.err, "--socket and --mem (or --state) are required"));
	squib_test_proc_free(&p);
}

/* ---- `serve` against bad, silent and foreign clients ------------------------------------- */

/* serve --socket --mem plus extra arguments (NULL-terminated, at most 8). */
static void cli_start_args(struct squib_test_bg *c, const struct dir *f, char *const *extra)
{
	char *argv[16] = {squib_test_cli_path(), "serve", "--socket", f->sock, "--mem", f->mem};
	int k = 6;

	for (; *extra && k < 15; extra++)
		argv[k++] = *extra;
	argv[k] = NULL;
	squib_test_bg_start(NULL, argv, c);
}

/* Every line of s holds `want`. */
static void every_line_has(const char *s, const char *want)
{
	for (const char *l = s; *l;) {
		const char *e = strchr(l, '\n');
		size_t n = e ? (size_t)(e - l) : strlen(l);

		if (!memmem(l, n, want, strlen(want)))
			fail_msg("line '%.*s' lacks '%s'", (int)n, l, want);
		l += n + (e != NULL);
	}
}

static void test_should_serve_the_vmm_after_garbage_bad_fds_and_a_silent_client(void **state)
{
	struct dir *f = *state;
	uint64_t pages = 64, zeros;
	char *named = squib_test_path(f->dir, "userfaultfd"), who[96];
	int silent, bad[4], pf[2], file;
	struct squib_test_bg c;
	uint8_t *want;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 4, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	cli_start(&c, f->sock, f->mem, NULL);
	cli_wait_for(&c, "listening on ");
	/* Silent until the end (its 5 s handshake timeout): it must hold up nobody. */
	silent = connect_to(f->sock);
	/* One garbage byte, the connection kept open. */
	bad[0] = connect_to(f->sock);
	send_with_fds(bad[0], "x", 1, NULL, 0);
	/* A whole handshake without a fd, with a regular file whose name says userfaultfd, with
	 * a pipe. */
	bad[1] = connect_to(f->sock);
	send_with_fds(bad[1], FC_EXAMPLE, strlen(FC_EXAMPLE), NULL, 0);
	assert_true((file = open(named, O_CREAT | O_RDWR | O_CLOEXEC, 0600)) >= 0);
	bad[2] = connect_to(f->sock);
	send_with_fds(bad[2], FC_EXAMPLE, strlen(FC_EXAMPLE), &file, 1);
	assert_int_equal(pipe2(pf, O_CLOEXEC), 0);
	bad[3] = connect_to(f->sock);
	send_with_fds(bad[3], FC_EXAMPLE, strlen(FC_EXAMPLE), pf, 1);
	cli_wait_err(&c, "invalid JSON");
	cli_wait_err(&c, "no userfaultfd received");
	cli_wait_err_n(&c, "is not a userfaultfd", 2);
	assert_null(strstr(c.obuf, "serving"));
	/* The real VMM is served at once, the silent client still connected. */
	vmm_read_through_serve(f->sock, want, pages, &c);
	assert_int_equal(cli_finish(&c), 0);
	assert_non_null(strstr(c.obuf, "stopped: the VMM hung up"));
	/* The silent one was told when serving began; one line per refused client, each naming
	 * it. */
	snprintf(who, sizeof(who), "already serving pid %d", (int)getpid());
	assert_non_null(strstr(c.ebuf, who));
	assert_int_equal(squib_test_count_lines(c.ebuf), 5);
	snprintf(who, sizeof(who), "refused a connection from pid %d (uid %u)", (int)getpid(),
		 (unsigned)geteuid());
	every_line_has(c.ebuf, who);
	assert_int_equal(squib_test_exists(f->sock), 0);
	for (int i = 0; i < 4; i++)
		close(bad[i]);
	close(silent);
	close(file);
	close(pf[0]);
	close(pf[1]);
	free(named);
	munmap(want, pages * ps());
}

/* More silent connections than serve keeps pending: the oldest make room, the VMM gets in. */
static void test_should_serve_a_vmm_behind_a_flood_of_silent_connections(void **state)
{
	enum { FLOOD = SQUIB_UFFD_MAX_PENDING + 8 };
	struct dir *f = *state;
	uint64_t pages = 16, zeros;
	struct squib_test_bg c;
	int flood[FLOOD];
	uint8_t *want;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 3, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	cli_start(&c, f->sock, f->mem, NULL);
	cli_wait_for(&c, "listening on ");
	for (int i = 0; i < FLOOD; i++)
		flood[i] = connect_to(f->sock);
	cli_wait_err(&c, "connections without a handshake: the oldest is dropped");
	vmm_read_through_serve(f->sock, want, pages, &c);
	assert_int_equal(cli_finish(&c), 0);
	/* Each flooding connection refused once: 8 dropped for room, the rest when serving began.
	 */
	assert_int_equal(squib_test_count_lines(c.ebuf), FLOOD);
	for (int i = 0; i < FLOOD; i++)
		close(flood[i]);
	munmap(want, pages * ps());
}

static void test_should_report_a_silent_client_after_the_handshake_timeout(void **state)
{
	char *extra[] = {"--handshake-timeout", "200", NULL};
	struct dir *f = *state;
	uint64_t pages = 16, zeros;
	struct squib_test_bg c;
	uint8_t *want;
	int silent;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 3, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	cli_start_args(&c, f, extra);
	cli_wait_for(&c, "listening on ");
	silent = connect_to(f->sock);
	cli_wait_err(&c, "no uffd handshake within 200 ms");
	/* Dropped by serve: the client sees EOF. */
	{
		char b;
		struct pollfd p = {.fd = silent, .events = POLLIN};

		assert_int_equal(poll(&p, 1, 5000), 1);
		assert_int_equal(recv(silent, &b, 1, 0), 0);
	}
	vmm_read_through_serve(f->sock, want, pages, &c);
	assert_int_equal(cli_finish(&c), 0);
	assert_int_equal(squib_test_count_lines(c.ebuf), 1);
	close(silent);
	munmap(want, pages * ps());
}

static void test_should_create_the_socket_0600_under_umask_000(void **state)
{
	struct dir *f = *state;
	uint64_t zeros;
	struct squib_test_bg c;
	struct stat st;
	uint8_t *want;
	mode_t old;

	want = pattern_ram(8, 4, &zeros);
	squib_test_save_full(f->mem, want, 8 * ps(), false, NULL);
	old = umask(0);
	cli_start(&c, f->sock, f->mem, NULL);
	umask(old);
	cli_wait_for(&c, "listening on ");
	assert_int_equal(lstat(f->sock, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	if ((st.st_mode & 07777) != 0600)
		fail_msg("socket mode 0%o under umask 000, not 0600",
			 (unsigned)(st.st_mode & 07777));
	kill(c.pid, SIGTERM);
	assert_int_equal(cli_finish(&c), 0);
	assert_int_equal(squib_test_exists(f->sock), 0);
	munmap(want, 8 * ps());
}

/* A child of OTHER_UID connects and sends a handshake; its exit: 0 connected, else the
 * errno of connect. */
static int other_uid_client(const char *sock)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	pid_t pid;
	int st;

	strcpy(sa.sun_path, sock);
	fflush(NULL);
	if (!(pid = fork())) {
		int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (!become_other())
			_exit(200);
		if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
			_exit(errno);
		/* serve may refuse it before the send: EPIPE then, which is fine. */
		send(s, FC_EXAMPLE, strlen(FC_EXAMPLE), MSG_NOSIGNAL);
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static void test_should_refuse_a_peer_of_another_uid(void **state)
{
	char *allow_other[] = {"--allow-uid", "4242", NULL}, want_msg[160];
	struct dir *f = *state;
	uint64_t pages = 16, zeros;
	struct squib_test_bg c;
	struct stat st;
	uint8_t *want;
	mode_t old;

	SKIP_WITHOUT_UFFD();
	if (other_uid_missing(f))
		skip();
	want = pattern_ram(pages, 3, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	/* By default the socket's mode alone keeps another user out, whatever the umask. */
	old = umask(0);
	cli_start(&c, f->sock, f->mem, NULL);
	umask(old);
	cli_wait_for(&c, "listening on ");
	assert_int_equal(other_uid_client(f->sock), EACCES);
	kill(c.pid, SIGTERM);
	assert_int_equal(cli_finish(&c), 0);
	assert_int_equal(c.elen, 0);
	/* With --allow-uid the socket is 0666: SO_PEERCRED refuses a uid not allowed, before
	 * reading its handshake, and serve goes on to serve the real VMM. */
	cli_start_args(&c, f, allow_other);
	cli_wait_for(&c, "listening on ");
	assert_int_equal(lstat(f->sock, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0666);
	assert_int_equal(other_uid_client(f->sock), 0);
	snprintf(want_msg, sizeof(want_msg), "(uid %u): ", OTHER_UID);
	cli_wait_err(&c, want_msg);
	snprintf(want_msg, sizeof(want_msg), "runs as uid %u, not uid %u or an allowed one",
		 OTHER_UID, (unsigned)geteuid());
	assert_non_null(strstr(c.ebuf, want_msg));
	vmm_read_through_serve(f->sock, want, pages, &c);
	assert_int_equal(cli_finish(&c), 0);
	assert_int_equal(squib_test_count_lines(c.ebuf), 1);
	munmap(want, pages * ps());
}

/* The VMM as OTHER_UID, keeping only CAP_SYS_PTRACE (a userfaultfd that sees KVM's
 * kernel-mode faults needs it): 0 when its memory through serve equals want. */
static int other_uid_vmm(const char *sock, const uint8_t *want, uint64_t pages)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct cap[2] = {{0}};
	struct squib_uffd_remote_region r;
	struct squib_uffd_remote *u;
	uint8_t *mem;
	int rc;

	cap[0].effective = cap[0].permitted = 1u << CAP_SYS_PTRACE;
	if (prctl(PR_SET_KEEPCAPS, 1) || !become_other() || syscall(SYS_capset, &h, cap))
		return 200;
	mem = mmap(NULL, pages * ps(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return 201;
	r = (struct squib_uffd_remote_region){mem, pages * ps(), 0};
	if (squib_uffd_remote_start(sock, &r, 1, ps(), NULL, &u, NULL))
		return 202;
	rc = memcmp(mem, want, pages * ps()) ? 203 : 0;
	squib_uffd_remote_free(u);
	return rc;
}

static void test_should_serve_a_vmm_of_an_allowed_uid(void **state)
{
	char *allow[] = {"--allow-uid", "65534", NULL}, line[96];
	struct dir *f = *state;
	uint64_t pages = 32, zeros;
	struct squib_test_bg c;
	uint8_t *want;
	pid_t pid;
	int st;

	SKIP_WITHOUT_UFFD();
	if (other_uid_missing(f))
		skip();
	want = pattern_ram(pages, 3, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	cli_start_args(&c, f, allow);
	cli_wait_for(&c, "listening on ");
	fflush(NULL);
	if (!(pid = fork()))
		_exit(other_uid_vmm(f->sock, want, pages));
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	snprintf(line, sizeof(line), "serving pid %d: 1 regions", (int)pid);
	assert_int_equal(cli_finish(&c), 0);
	assert_non_null(strstr(c.obuf, line));
	assert_int_equal(c.elen, 0);
	munmap(want, pages * ps());
}

static void test_should_stop_serve_on_sigterm_during_a_huge_prefetch(void **state)
{
	struct dir *f = *state;
	uint64_t pages = 4096, zeros, runs = 1u << 17;
	char *ws_path = squib_test_path(f->dir, "huge.ws");
	char *extra[] = {"--prefetch-ws", ws_path, NULL};
	struct squib_workset ws = {.page_size = ps(), .page_count = pages, .run_count = runs};
	struct squib_uffd_remote_region r;
	struct squib_uffd_remote *u;
	struct squib_error_detail d;
	struct squib_test_bg c;
	uint8_t *want, *mem;
	int64_t t0;

	SKIP_WITHOUT_UFFD();
	want = pattern_ram(pages, 3, &zeros);
	squib_test_save_full(f->mem, want, pages * ps(), false, NULL);
	/* 128 Ki runs over the whole memory: 512 Mi page visits if runs are not merged first, and a
	 * merge that stays cheap next to the 2 s bound under a sanitizer on a loaded machine. */
	assert_non_null(ws.runs = calloc(runs, sizeof(*ws.runs)));
	for (uint64_t i = 0; i < runs; i++)
		ws.runs[i] = (struct squib_ws_run){0, pages};
	assert_int_equal(squib_workset_write(ws_path, &ws, &d), 0);
	free(ws.runs);
	cli_start_args(&c, f, extra);
	cli_wait_for(&c, "listening on ");
	mem = anon(pages * ps());
	r = (struct squib_uffd_remote_region){mem, pages * ps(), 0};
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), NULL, &u, &d), 0);
	cli_wait_for(&c, "serving pid ");
	sleep_ms(50);
	t0 = now_ms();
	kill(c.pid, SIGTERM);
	/* A liveness bound, not a measurement: 100 ms is the aim. */
	assert_int_equal(squib_test_bg_finish(&c, 2000), 0);
	print_message("serve exited %lld ms after SIGTERM%s\n", (long long)(now_ms() - t0),
		      strstr(c.obuf, "--prefetch-ws: stopped by a signal") ? " during the prefetch"
									   : "");
	/* The prefetch was cut short, or (a faster prefetch) had ended before the signal. */
	assert_true(strstr(c.obuf, "serve --prefetch-ws: stopped by a signal after ") ||
		    strstr(c.obuf, "prefetched the working set: "));
	assert_non_null(strstr(c.obuf, "stopped: signal"));
	assert_int_equal(squib_test_exists(f->sock), 0);
	/* (mem is not read: a page the stopped prefetch did not install would block on the uffd
	 * until free unregisters it.) */
	squib_uffd_remote_free(u);
	munmap(mem, pages * ps());
	free(ws_path);
	munmap(want, pages * ps());
}

static void test_should_check_every_path_before_listening(void **state)
{
	struct dir *f = *state;
	char *sub = squib_test_path(f->dir, "nodir/ws.ws"),
	     *bogus = squib_test_path(f->dir, "no.ws");
	char *cases[][3] = {{"--record-ws", sub, sub},
			    {"--record-ws", f->dir, "is not a regular file"},
			    {"--record-ws", f->mem, "names an input"},
			    {"--prefetch-ws", bogus, bogus},
			    {"--state", bogus, bogus}};
	uint64_t zeros;
	uint8_t *want = pattern_ram(8, 4, &zeros);

	squib_test_save_full(f->mem, want, 8 * ps(), false, NULL);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *extra[] = {cases[i][0], cases[i][1], NULL};
		struct squib_test_bg c;

		cli_start_args(&c, f, extra);
		assert_int_equal(squib_test_bg_finish(&c, 5000), 1);
		if (!strstr(c.ebuf, cases[i][1]) || !strstr(c.ebuf, cases[i][2]))
			fail_msg("%s %s: stderr '%s'", cases[i][0], cases[i][1], c.ebuf);
		assert_int_equal(squib_test_count_lines(c.ebuf), 1);
		assert_null(strstr(c.obuf, "listening"));
		assert_int_equal(squib_test_exists(f->sock), 0);
	}
	/* A good relative path (no directory part: its directory is the working one). */
	{
		char *argv[] = {
		    squib_test_cli_path(), "serve",  "--socket", f->sock, "--mem", f->mem,
		    "--record-ws",	   "rel.ws", NULL};
		struct squib_test_bg c;

		squib_test_bg_start(f->dir, argv, &c);
		cli_wait_for(&c, "listening on ");
		kill(c.pid, SIGTERM);
		assert_int_equal(cli_finish(&c), 0);
		assert_int_equal(c.elen, 0);
	}
	free(sub);
	free(bogus);
	munmap(want, 8 * ps());
}

/* ---- a KVM guest whose memory `serve` provides --------------------------------------------- */

#define KVM_RAM	     (4ull << 20) /* the CLI's guest: tools/cli.h */
#define KVM_COUNTERS 0x20000ull
#define KVM_PORT     0x3f0
#define KVM_CONSOLE  0xe9
#define KVM_WAIT_MS  10000u /* safety net for a broken run, not a measurement */

static bool kvm_missing(void)
{
	if (squib_kvm_available(NULL))
		return false;
	fprintf(stderr, "*** SKIP: /dev/kvm does not exist on this machine: KVM over the Uffd "
			"backend not tested ***\n");
	return true;
}

/* `squib-snapshot run` saves a 1-vCPU counter guest's Full pair at f->state / f->mem. */
static void kvm_pair(struct dir *f)
{
	const char *build = getenv("SQUIB_BUILD_DIR");
	char guest[4096],
	    *argv[] = {
		squib_test_cli_path(), "run", guest, f->state, "--mem", f->mem, "--vcpus", "1",
		"--reports",	       "2",   NULL};
	struct squib_test_proc p;

	snprintf(guest, sizeof(guest), "%s/tests/guests/counter.bin", build ? build : "build");
	squib_test_spawn(NULL, argv, &p);
	if (p.status)
		fail_msg("run failed (%d): %s", p.status, p.err);
	squib_test_proc_free(&p);
}

/* A VM shaped like the CLI's (1 vCPU, irqchip, console, counter), RAM = mem, restored. */
static void kvm_restore(struct squib_kvm_vm **vm, struct squib_kvm_counter **counter, uint8_t *mem,
			const char *state)
{
	struct squib_kvm_config cfg = SQUIB_KVM_CONFIG_INIT;
	struct squib_microvm_state st;
	struct squib_error_detail d;

	assert_int_equal(squib_kvm_vm_new(&cfg, vm, &d), 0);
	assert_int_equal(squib_kvm_vm_add_ram(*vm, 0, KVM_RAM, mem, NULL, &d), 0);
	assert_int_equal(squib_kvm_vm_add_console(*vm, KVM_CONSOLE, NULL, &d), 0);
	assert_int_equal(squib_kvm_vm_add_counter(*vm, KVM_PORT, counter, &d), 0);
	assert_int_equal(squib_load_state_only(state, SQUIB_ARCH_X86_64, &st, NULL, &d), 0);
	if (squib_kvm_vm_restore(*vm, &st, &d))
		fail_msg("restore: %s", d.msg);
	squib_state_free(&st);
}

static void test_should_run_a_kvm_guest_whose_memory_serve_provides(void **state)
{
	struct dir *f = *state;
	struct squib_uffd_remote_region r;
	struct squib_kvm_counter *counter;
	struct squib_uffd_remote *u;
	struct squib_error_detail d;
	struct squib_kvm_vm *vm;
	uint64_t before = 0, saved, now;
	uint8_t *mem;
	struct squib_test_bg c;

	SKIP_WITHOUT_UFFD();
	if (kvm_missing())
		skip();
	kvm_pair(f);
	cli_start(&c, f->sock, f->mem, f->state);
	cli_wait_for(&c, "listening on ");
	mem = anon(KVM_RAM);
	r = (struct squib_uffd_remote_region){mem, KVM_RAM, 0};
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), NULL, &u, &d), 0);
	kvm_restore(&vm, &counter, mem, f->state);
	assert_true(squib_kvm_counter_get(counter, 0, NULL, &before));
	/* Every page the guest touches is a kernel-mode fault (get_user_pages) served by serve. */
	assert_int_equal(squib_kvm_vm_start(vm, &d), 0);
	if (squib_kvm_counter_wait(counter, 0, before + 2, KVM_WAIT_MS, NULL, &d))
		fail_msg("the restored guest did not continue: %s (serve: %s%s)", d.msg, c.obuf,
			 c.ebuf);
	assert_int_equal(squib_kvm_vm_pause(vm, &d), 0);
	memcpy(&now, mem + KVM_COUNTERS, 8);
	squib_kvm_vm_free(vm);
	assert_int_equal(squib_uffd_remote_error(u, &d), 0);
	squib_uffd_remote_free(u);
	assert_int_equal(cli_finish(&c), 0);
	/* The counter went on from the saved one (I-SNAP-1 over the Uffd backend). */
	{
		struct squib_memfile *m;

		assert_int_equal(squib_memfile_open(f->mem, &m, &d), 0);
		assert_int_equal(squib_memfile_read_page(m, KVM_COUNTERS, mem, &d), 0);
		memcpy(&saved, mem, 8);
		squib_memfile_close(m);
	}
	assert_true(now > saved);
	assert_null(strstr(c.obuf, "faults 0,"));
	munmap(mem, KVM_RAM);
}

static void test_should_stop_a_kvm_guest_whose_handler_was_killed(void **state)
{
	struct dir *f = *state;
	struct squib_uffd_remote_options o;
	struct squib_uffd_remote_region r;
	struct squib_kvm_counter *counter;
	struct squib_error_detail d;
	struct squib_kvm_vm *vm;
	uint64_t before = 0, after = 0;
	struct stuck s;
	struct squib_test_bg c;
	int rc;

	SKIP_WITHOUT_UFFD();
	if (kvm_missing())
		skip();
	kvm_pair(f);
	cli_start(&c, f->sock, f->mem, f->state);
	cli_wait_for(&c, "listening on ");
	memset(&s, 0, sizeof(s));
	pthread_mutex_init(&s.l.lock, NULL);
	pthread_cond_init(&s.l.cond, NULL);
	s.mem = anon(KVM_RAM);
	o = (struct squib_uffd_remote_options){.on_lost = on_lost, .ctx = &s.l};
	r = (struct squib_uffd_remote_region){s.mem, KVM_RAM, 0};
	assert_int_equal(squib_uffd_remote_start(f->sock, &r, 1, ps(), &o, &s.u, &d), 0);
	kvm_restore(&vm, &counter, s.mem, f->state);
	assert_true(squib_kvm_counter_get(counter, 0, NULL, &before));
	cli_wait_for(&c, "serving pid");
	kill(c.pid, SIGKILL);
	assert_int_equal(cli_finish(&c), 128 + SIGKILL);
	/* The vCPU blocks on its first page; the loss is reported within 2 s. */
	assert_int_equal(squib_kvm_vm_start(vm, &d), 0);
	assert_int_equal(wait_lost(&s.l, 2000), 1);
	assert_int_equal(squib_uffd_remote_error(s.u, &d), SQUIB_E_MEMORY_IO);
	/* Let the vCPU reach its first page and block there (not a measurement). */
	sleep_ms(200);
	/*
	 * What the VMM does on the loss (squib/uffd_remote.h, on_lost): a vCPU blocked on
	 * the page inside the kernel does not acknowledge a pause here (KVM's emulator
	 * faults on a guest page-table read: a kernel-mode fault, which only a fatal signal
	 * interrupts), and unregistering alone would let the access complete on a zero page.
	 * So: revoke the guest's access for good, then wake the fault by unregistering.
	 */
	{
		struct squib_error_detail why = d;

		assert_int_equal(squib_kvm_vm_fail(vm, SQUIB_E_MEMORY_IO, &why, &d), 0);
	}
	squib_uffd_remote_free(s.u);
	if ((rc = squib_kvm_vm_wait_stopped(vm, 2000, &d)))
		fail_msg("vCPUs still running after fail + unregister: %s (%s)",
			 squib_error_name(rc), d.msg);
	assert_int_equal(squib_kvm_vm_error(vm, &d), SQUIB_E_MEMORY_IO);
	assert_int_equal(squib_kvm_vm_resume(vm, &d), SQUIB_E_MEMORY_IO);
	/* The guest made no progress (no report) on memory nobody could serve. */
	assert_true(squib_kvm_counter_get(counter, 0, NULL, &after));
	assert_int_equal(after, before);
	squib_kvm_vm_free(vm);
	munmap(s.mem, KVM_RAM);
	pthread_cond_destroy(&s.l.cond);
	pthread_mutex_destroy(&s.l.lock);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_parse_firecrackers_example),
	    cmocka_unit_test(test_should_parse_any_field_order_and_ignore_unknown_fields),
	    cmocka_unit_test(test_should_check_page_size_kib),
	    cmocka_unit_test(test_should_refuse_missing_fields_naming_region_and_field),
	    cmocka_unit_test(test_should_refuse_wrong_types_and_negative_and_huge_numbers),
	    cmocka_unit_test(test_should_refuse_bad_structure),
	    cmocka_unit_test(test_should_refuse_bad_geometry),
	    cmocka_unit_test(test_should_refuse_an_oversized_message),
	    cmocka_unit_test(test_should_round_trip_encode_and_parse),
	    cmocka_unit_test(test_should_receive_a_message_split_over_several_writes),
	    cmocka_unit_test(test_should_refuse_a_message_without_a_userfaultfd),
	    cmocka_unit_test(test_should_refuse_two_fds_or_one_that_is_no_userfaultfd),
	    cmocka_unit_test(test_should_recognise_a_userfaultfd_by_ioctl_not_by_name),
	    cmocka_unit_test(test_should_report_a_socket_closed_before_the_handshake),
	    cmocka_unit_test(test_should_time_out_and_refuse_endless_messages),
	    cmocka_unit_test_setup_teardown(test_should_replace_only_a_stale_socket, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_refuse_a_missing_socket_naming_its_path,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_serve_guest_memory_from_another_process,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_work_with_a_handler_written_like_firecrackers_examples, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_should_detect_a_killed_handler_within_two_seconds,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_detect_a_handler_pid_exit_while_its_socket_stays_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_not_send_the_uffd_to_a_handler_of_another_uid, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_detect_a_handler_closing_its_socket, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_install_every_page_with_mode_all, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_serve_a_chain_of_diffs_with_the_cli, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_serve_a_memory_file_with_the_cli, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_serve_with_a_matching_state_and_refuse_another, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_serve_a_raw_firecracker_memory_file, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_refuse_a_handshake_that_does_not_fit_the_memory_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_stop_serve_on_sigterm_before_a_vmm_connects,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_stop_serve_on_a_signal_during_a_handshake_and_while_serving, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(test_should_report_cli_usage_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_serve_the_vmm_after_garbage_bad_fds_and_a_silent_client, setup,
		teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_report_a_silent_client_after_the_handshake_timeout, setup, teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_serve_a_vmm_behind_a_flood_of_silent_connections, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_create_the_socket_0600_under_umask_000,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_refuse_a_peer_of_another_uid, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_serve_a_vmm_of_an_allowed_uid, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(
		test_should_stop_serve_on_sigterm_during_a_huge_prefetch, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_check_every_path_before_listening, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_should_run_a_kvm_guest_whose_memory_serve_provides,
					    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_should_stop_a_kvm_guest_whose_handler_was_killed,
					    setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
