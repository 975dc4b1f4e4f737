/* SPDX-License-Identifier: Apache-2.0 */

#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/linux/uffd.h"

char *squib_test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *tmpl;

	if (!base || !*base)
		base = "/tmp";
	if (asprintf(&tmpl, "%s/squib-test-XXXXXX", base) < 0)
		fail_msg("asprintf failed");
	if (!mkdtemp(tmpl))
		fail_msg("mkdtemp(%s): %s", tmpl, strerror(errno));
	return tmpl;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

void squib_test_rmtree(const char *path)
{
	if (path)
		nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char *squib_test_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		fail_msg("asprintf failed");
	return p;
}

char *squib_test_fixture(const char *name)
{
	const char *dir = getenv("SQUIB_FIXTURES");

	return squib_test_path(dir && *dir ? dir : "tests/fixtures", name);
}

int squib_test_read_file(const char *path, uint8_t **buf, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	uint8_t *b;
	size_t off = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	b = malloc((size_t)st.st_size + 1);
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	while (off < (size_t)st.st_size) {
		ssize_t r = read(fd, b + off, (size_t)st.st_size - off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int e = r < 0 ? errno : EIO;
			free(b);
			close(fd);
			return -e;
		}
		off += (size_t)r;
	}
	close(fd);
	*buf = b;
	*len = off;
	return 0;
}

int squib_test_write_file(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	size_t off = 0;

	if (fd < 0)
		return -errno;
	while (off < len) {
		ssize_t w = write(fd, (const char *)buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		off += (size_t)w;
	}
	return close(fd) < 0 ? -errno : 0;
}

int squib_test_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* 0 not the layer's, 1 a lock, 16 or 32: a temp with that many hex digits. */
static size_t layer_kind(const char *entry, const char *name)
{
	size_t nl = strlen(name), el = strlen(entry), hex;

	if (entry[0] == '.' && !strncmp(entry + 1, name, nl) &&
	    !strcmp(entry + 1 + nl, ".squib-lock"))
		return 1;
	if (el < nl + 6 || strncmp(entry, name, nl) || entry[nl] != '.' ||
	    strcmp(entry + el - 4, ".tmp"))
		return 0;
	hex = el - nl - 5;
	for (size_t i = 0; i < hex; i++)
		if (!strchr("0123456789abcdef", entry[nl + 1 + i]))
			return 0;
	return hex == 16 || hex == 32 ? hex : 0;
}

static int scan_layer_files(const char *path, int min_kind, char **temp)
{
	const char *slash = strrchr(path, '/');
	char dir[4096];
	size_t best = 0;
	struct dirent *e;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
	if (temp)
		*temp = NULL;
	if (!(d = opendir(dir)))
		return 0;
	while ((e = readdir(d))) {
		size_t k = layer_kind(e->d_name, slash ? slash + 1 : path);

		n += k != 0 && (int)k >= min_kind;
		if (temp && k > 1 && k > best) {
			best = k;
			free(*temp);
			*temp = squib_test_path(dir, e->d_name);
		}
	}
	closedir(d);
	return n;
}

int squib_test_layer_files(const char *path, char **temp)
{
	return scan_layer_files(path, 1, temp);
}

int squib_test_temps(const char *path, char **temp)
{
	return scan_layer_files(path, 2, temp);
}

int squib_test_uffd_missing(const char *what)
{
	/* The library's own opener: where its syscall is ENOSYS it does not try
	 * /dev/userfaultfd, which may still exist (qemu-user on a host that has one). */
	int fd = squib_uffd_open(false);

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno != ENOSYS)
		return 0;
	fprintf(stderr,
		"*** SKIP: userfaultfd does not exist on this kernel (ENOSYS): %s not "
		"tested ***\n",
		what);
	return 1;
}

static bool param_is_yes(const char *path)
{
	char c = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return false;
	if (fread(&c, 1, 1, f) != 1)
		c = 0;
	fclose(f);
	return c == 'Y' || c == 'y' || c == '1';
}

bool squib_test_kvm_tdp(void)
{
	return param_is_yes("/sys/module/kvm_amd/parameters/npt") ||
	       param_is_yes("/sys/module/kvm_intel/parameters/ept");
}

bool squib_test_kvm_pvm_skips(const char *what)
{
	if (access("/sys/module/kvm_pvm", F_OK) != 0 || access("/sys/module/kvm_amd", F_OK) == 0 ||
	    access("/sys/module/kvm_intel", F_OK) == 0)
		return false;
	fprintf(
	    stderr,
	    "*** SKIPPED %s: /dev/kvm is kvm_pvm, which delivers no interrupt through a guest IDT "
	    "(PVM-aware guests only); make test-kvm-vm runs it under kvm_amd ***\n",
	    what);
	return true;
}

char *squib_test_s3_url(const char *what, const char *tag)
{
	static atomic_int n; /* a fresh prefix per call, within the process */
	const char *base = getenv("SQUIB_TEST_S3_URL");
	char *url;

	if (!base || !*base) {
		fprintf(stderr,
			"SKIP %s: no S3 server (SQUIB_TEST_S3_URL unset; `make test-store` "
			"starts Ceph RGW and sets it)\n",
			what);
		return NULL;
	}
	if (asprintf(&url, "%s/%s%ld-%d", base, tag, (long)getpid(), atomic_fetch_add(&n, 1)) < 0)
		fail_msg("out of memory");
	return url;
}

/* Line-buffered stdout in every test program: inside scripts/kvm-vm.sh's VM
 * stdout is a pipe, and a hung test must show the last line it printed. */
__attribute__((constructor)) static void line_buffered_stdout(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
}
