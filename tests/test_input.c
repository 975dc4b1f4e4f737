/* SPDX-License-Identifier: Apache-2.0 */
/* Opening input files: FIFOs, directories and devices refused at once, the path named. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <squib/input.h>

static void test_should_open_a_regular_file_with_its_stat(void **state)
{
	char *dir = squib_test_tmpdir(), *p = squib_test_path(dir, "in");
	struct squib_error_detail d;
	struct stat st;
	int fd, fl;

	(void)state;
	assert_int_equal(squib_test_write_file(p, "abc", 3), 0);
	fd = squib_input_open(p, O_RDONLY, SQUIB_E_IO, &st, &d);
	assert_true(fd >= 0);
	assert_int_equal(st.st_size, 3);
	fl = fcntl(fd, F_GETFL);
	assert_false(fl & O_NONBLOCK);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	close(fd);
	squib_test_rmtree(dir);
	free(p);
	free(dir);
}

/* No writer ever opens the FIFO: a blocking open would hang this test forever. */
static void test_should_refuse_a_fifo_without_blocking(void **state)
{
	char *dir = squib_test_tmpdir(), *p = squib_test_path(dir, "fifo");
	struct squib_error_detail d;

	(void)state;
	assert_int_equal(mkfifo(p, 0600), 0);
	assert_int_equal(squib_input_open(p, O_RDONLY, SQUIB_E_MEMORY_IO, NULL, &d),
			 SQUIB_E_MEMORY_IO);
	assert_int_equal(d.os_errno, EINVAL);
	assert_non_null(strstr(d.msg, p));
	assert_non_null(strstr(d.msg, "is a FIFO, not a regular file"));
	squib_test_rmtree(dir);
	free(p);
	free(dir);
}

static void test_should_name_a_directory_socket_and_device(void **state)
{
	char *dir = squib_test_tmpdir(), *sp = squib_test_path(dir, "sock");
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct squib_error_detail d;
	int s = socket(AF_UNIX, SOCK_STREAM, 0);

	(void)state;
	assert_int_equal(squib_input_open(dir, O_RDONLY, SQUIB_E_IO, NULL, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, EISDIR);
	assert_non_null(strstr(d.msg, "is a directory"));
	/* /dev/null is a character device on every Linux system. */
	assert_int_equal(squib_input_open("/dev/null", O_RDONLY, SQUIB_E_IO, NULL, &d), SQUIB_E_IO);
	assert_string_equal(d.msg, "/dev/null is a character device, not a regular file");
	/* A bound socket cannot be opened at all (ENXIO); the path is still named. */
	assert_true(s >= 0);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sp);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(squib_input_open(sp, O_RDONLY, SQUIB_E_IO, NULL, &d), SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENXIO);
	assert_non_null(strstr(d.msg, sp));
	close(s);
	squib_test_rmtree(dir);
	free(sp);
	free(dir);
}

static void test_should_name_the_path_of_a_missing_file(void **state)
{
	struct squib_error_detail d;
	char msg[1024];

	(void)state;
	assert_int_equal(squib_input_open("/nonexistent/x.snap", O_RDONLY, SQUIB_E_IO, NULL, &d),
			 SQUIB_E_IO);
	assert_int_equal(d.os_errno, ENOENT);
	assert_string_equal(d.msg, "opening /nonexistent/x.snap");
	/* The upstream text is unchanged; the path rides in the detail. */
	squib_error_message(SQUIB_E_IO, &d, msg, sizeof(msg));
	assert_string_equal(msg, "snapshot I/O error: No such file or directory (os error 2)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_should_open_a_regular_file_with_its_stat),
	    cmocka_unit_test(test_should_refuse_a_fifo_without_blocking),
	    cmocka_unit_test(test_should_name_a_directory_socket_and_device),
	    cmocka_unit_test(test_should_name_the_path_of_a_missing_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
