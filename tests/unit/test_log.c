/*
 * test_log.c: log.c's syslog path.  posternd hands lines to syslog(3) only
 * while something listens on /dev/log (probed at most once a second), so
 * that a machine without syslogd does not pay a socket per line; these
 * tests check that lines still reach a syslogd that is there, including
 * one that appears after the daemon started.  They run in a child in its
 * own mount namespace with a tmpfs on /dev, where the test's own socket is
 * /dev/log; skipped where unshare(CLONE_NEWNS) is not permitted.
 */
#include "compat.h"

#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "log.h"

#define TL_SKIP		77

/* A datagram socket bound at /dev/log, or -1. */
static int
tl_syslogd(void)
{
	struct sockaddr_un	sun;
	int			fd;

	if ((fd = socket(AF_UNIX, SOCK_DGRAM, 0)) == -1)
		return (-1);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy(sun.sun_path, "/dev/log", sizeof(sun.sun_path));
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(fd);
		return (-1);
	}
	return (fd);
}

/* The next datagram within two seconds into buf, or -1. */
static ssize_t
tl_recv(int fd, char *buf, size_t size)
{
	struct pollfd	pfd = { .fd = fd, .events = POLLIN };
	ssize_t		n;

	if (poll(&pfd, 1, 2000) != 1)
		return (-1);
	if ((n = recv(fd, buf, size - 1, 0)) >= 0)
		buf[n] = '\0';
	return (n);
}

/*
 * In a child: a private /dev with no syslogd; lines logged now must not
 * fail; then a syslogd appears and, after the probe interval, a line must
 * reach it in the usual form.  The datagram goes back over out.
 */
static int
tl_child(int out)
{
	char	buf[4096];
	int	fd, i;

	if (unshare(CLONE_NEWNS) == -1)
		return (TL_SKIP);
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1 ||
	    mount("tmpfs", "/dev", "tmpfs", 0, "size=1m") == -1)
		return (TL_SKIP);
	log_init("test_log", false, false);
	for (i = 0; i < 100; i++)
		log_info("nobody listens %d", i);
	if ((fd = tl_syslogd()) == -1)
		return (2);
	/* Past the probe interval, so that the next line probes again. */
	usleep(1200 * 1000);
	log_warnx("hello %d", 42);
	if (tl_recv(fd, buf, sizeof(buf)) <= 0)
		return (3);
	if (write(out, buf, strlen(buf)) == -1)
		return (5);
	/* Lines keep going while it listens. */
	log_info("second line");
	if (tl_recv(fd, buf, sizeof(buf)) <= 0 ||
	    strstr(buf, "second line") == NULL)
		return (4);
	return (0);
}

Test(log, syslog_reached_when_it_listens)
{
	char	buf[4096];
	pid_t	pid;
	ssize_t	n;
	int	p[2], st;

	cr_assert_eq(pipe(p), 0);
	if ((pid = fork()) == 0) {
		close(p[0]);
		_exit(tl_child(p[1]));
	}
	cr_assert_gt(pid, 0);
	close(p[1]);
	n = read(p[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(p[0]);
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "child died");
	if (WEXITSTATUS(st) == TL_SKIP)
		cr_skip_test("no mount namespace here");
	cr_assert_eq(WEXITSTATUS(st), 0, "child step %d failed (got \"%s\")",
	    WEXITSTATUS(st), buf);
	/* LOG_MAIL | LOG_WARNING, the ident with the pid, Postfix's prefix. */
	cr_expect(strncmp(buf, "<20>", 4) == 0, "%s", buf);
	cr_expect_not_null(strstr(buf, "test_log["), "%s", buf);
	cr_expect_not_null(strstr(buf, "]: warning: hello 42"), "%s", buf);
}
