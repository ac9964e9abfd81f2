/*
 * harness.c: per-test posternd fixture for the integration tests.
 *
 * Everything a test touches lives in its own mkdtemp dir, so Criterion may
 * run tests in parallel: ports come from bind(0), and the two "dead" ports
 * the delivery side is pointed at (smarthost TCP, DNS UDP) stay bound by us
 * for the whole test, so no other test's daemon can take them and nothing
 * ever answers there: accepted mail stays queued, deferred.
 *
 * Readiness is judged without talking SMTP (a probe session would count
 * against the per-IP and total caps some tests measure): a listener is up
 * when /proc/net/tcp{,6} shows its port in LISTEN state, and the control
 * socket when connect() on it succeeds.  The daemon child gets
 * PR_SET_PDEATHSIG so a test killed by its Criterion timeout takes its
 * daemon with it; an atexit hook does the same for tests that fail an
 * assertion, and keeps their dir for the post-mortem.
 *
 * The delivery peers (dnsmasq, fakemx) are children of the test too, with
 * the same PR_SET_PDEATHSIG, stopped by harness_free() and killed by the
 * atexit hook.  Every fakemx of a test listens on the TCP port that the
 * test holds bound on 127.0.0.1 (smarthost_port): no other test can be
 * given that port, so sinks of parallel tests never collide even when
 * they use the same 127.0.0.x address.
 */
#include "compat.h"

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

/* Seconds; ASan daemons are slow. */
#define HARNESS_START_TIMEOUT	30
#define HARNESS_STOP_TIMEOUT	30
#define HARNESS_CONTROL_TIMEOUT	30000	/* ms */
#define HARNESS_CONTROL_MAX	(64 * 1024 * 1024)
#define HARNESS_PEER_TIMEOUT	30	/* s, a peer to be ready */
#define HARNESS_DNSMASQ		"/usr/sbin/dnsmasq"
#define HARNESS_DNS_ARGS_MAX	64

static struct harness	*harness_live;
static bool		 harness_atexit_set;

static void
harness_seterr(struct harness *h, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(h->err, sizeof(h->err), fmt, ap);
	va_end(ap);
}

const char *
harness_err(const struct harness *h)
{
	return (h->err);
}

const char *
harness_builddir(void)
{
	const char	*p = getenv("POSTERN_BUILDDIR");

	return (p != NULL && *p != '\0' ? p : "/work/build-dev");
}

const char *
harness_srcdir(void)
{
	const char	*p = getenv("POSTERN_SRCDIR");

	return (p != NULL && *p != '\0' ? p : "/work/main");
}

const char *
harness_posternd(void)
{
	static char	path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/src/posternd", harness_builddir());
	return (path);
}

static long
harness_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void
harness_sleep_ms(long ms)
{
	struct timespec	ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int
harness_rm_cb(const char *path, const struct stat *sb, int flag,
    struct FTW *ftw)
{
	remove(path);
	return (0);
}

static void
harness_rmtree(const char *dir)
{
	nftw(dir, harness_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Reap without waiting; true when the daemon is gone. */
static bool
harness_reap(struct harness *h)
{
	int	status;
	pid_t	r;

	if (h->pid <= 0)
		return (true);
	r = waitpid(h->pid, &status, WNOHANG);
	if (r == h->pid || (r == -1 && errno == ECHILD)) {
		h->exit_status = r == h->pid ? status : -1;
		h->pid = -1;
		return (true);
	}
	return (false);
}

/* SIGKILL and reap a peer process; *pid becomes -1. */
static void
harness_peer_kill(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGKILL);
		waitpid(*pid, NULL, 0);
	}
	*pid = -1;
}

static void
harness_atexit(void)
{
	struct harness	*h;
	size_t		 i;

	for (h = harness_live; h != NULL; h = h->next) {
		if (h->freed)
			continue;
		harness_peer_kill(&h->dns_pid);
		for (i = 0; i < h->nmx; i++)
			harness_peer_kill(&h->mx[i].pid);
		if (h->pid > 0) {
			kill(h->pid, SIGKILL);
			waitpid(h->pid, NULL, 0);
			h->pid = -1;
		}
		fprintf(stderr, "harness: test did not finish; kept %s\n"
		    "harness: last log lines:\n%s\n", h->dir,
		    harness_log_tail(h, 30));
	}
}

/* Bind a socket of type on addr:0 and return its fd and port. */
static int
harness_bind_any(const char *addr, int type, int *port)
{
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		 slen;
	int			 fd;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, addr, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		slen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, addr, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		slen = sizeof(*sin6);
	} else
		return (-1);
	if ((fd = socket(ss.ss_family, type | SOCK_CLOEXEC, 0)) == -1)
		return (-1);
	if (bind(fd, (struct sockaddr *)&ss, slen) == -1 ||
	    getsockname(fd, (struct sockaddr *)&ss, &slen) == -1) {
		close(fd);
		return (-1);
	}
	*port = ntohs(ss.ss_family == AF_INET ? sin->sin_port :
	    sin6->sin6_port);
	return (fd);
}

struct harness *
harness_new(void)
{
	struct harness	*h;
	struct passwd	*pw;
	char		 tmpl[] = "/tmp/postern-it-XXXXXX";

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return (NULL);
	h->pid = -1;
	h->dns_pid = -1;
	h->hold_fds[0] = h->hold_fds[1] = -1;
	if (mkdtemp(tmpl) == NULL) {
		free(h);
		return (NULL);
	}
	strlcpy(h->dir, tmpl, sizeof(h->dir));
	snprintf(h->conf_path, sizeof(h->conf_path), "%s/postern.conf",
	    h->dir);
	snprintf(h->log_path, sizeof(h->log_path), "%s/posternd.log", h->dir);
	snprintf(h->spool_dir, sizeof(h->spool_dir), "%s/spool", h->dir);
	snprintf(h->control_path, sizeof(h->control_path),
	    "%s/control.sock", h->dir);
	snprintf(h->users_path, sizeof(h->users_path), "%s/users", h->dir);
	snprintf(h->cert_dir, sizeof(h->cert_dir), "%s/certs", h->dir);
	snprintf(h->ca_path, sizeof(h->ca_path), "%s/ca.pem", h->cert_dir);
	strlcpy(h->hostname, "relay.test", sizeof(h->hostname));
	pw = getpwuid(getuid());
	h->user = strdup(pw != NULL ? pw->pw_name : "root");
	/*
	 * Bound but never listening/reading: connects are refused and DNS
	 * queries time out, for the whole life of the test.
	 */
	h->hold_fds[0] = harness_bind_any("127.0.0.1", SOCK_STREAM,
	    &h->smarthost_port);
	h->hold_fds[1] = harness_bind_any("127.0.0.1", SOCK_DGRAM,
	    &h->dns_port);
	if (h->hold_fds[0] == -1 || h->hold_fds[1] == -1) {
		/* Leave it to the caller's assertion; keep the dir. */
		harness_seterr(h, "cannot bind loopback ports: %s",
		    strerror(errno));
	}
	/* An empty log file keeps the grep helpers simple before start. */
	close(open(h->log_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	h->next = harness_live;
	harness_live = h;
	if (!harness_atexit_set) {
		atexit(harness_atexit);
		harness_atexit_set = true;
	}
	return (h);
}

/* Offset of the first raw control byte (not LF or TAB) in the log, or -1. */
static long
harness_log_ctrl(struct harness *h)
{
	FILE	*fp;
	long	 off = 0;
	int	 ch;

	if ((fp = fopen(h->log_path, "r")) == NULL)
		return (-1);
	while ((ch = getc(fp)) != EOF) {
		if ((ch < 0x20 && ch != '\n' && ch != '\t') || ch == 0x7f) {
			fclose(fp);
			return (off);
		}
		off++;
	}
	fclose(fp);
	return (-1);
}

/* Whether a peer's log (dir-relative path) has a sanitizer report. */
static bool
harness_file_has_sanitizer(const char *path)
{
	static const char	*needles[] = { "ERROR: AddressSanitizer",
				    "ERROR: LeakSanitizer", "runtime error:" };
	char			 line[1024];
	FILE			*fp;
	size_t			 i;
	bool			 found = false;

	if ((fp = fopen(path, "r")) == NULL)
		return (false);
	while (!found && fgets(line, sizeof(line), fp) != NULL)
		for (i = 0; i < nitems(needles); i++)
			if (strstr(line, needles[i]) != NULL)
				found = true;
	fclose(fp);
	return (found);
}

void
harness_free(struct harness *h)
{
	char	path[PATH_MAX];
	long	bad;
	size_t	i;

	if (h == NULL)
		return;
	if (h->pid > 0)
		harness_stop(h);
	(void)harness_dns_stop(h);
	for (i = 0; i < h->nmx; i++) {
		(void)harness_mx_stop(h, (int)i);
		snprintf(path, sizeof(path), "%s/fakemx.log", h->mx[i].dir);
		if (harness_file_has_sanitizer(path))
			cr_assert_fail("sanitizer report in %s", path);
	}
	/*
	 * A sanitizer report from the daemon fails the test that ran it
	 * (the daemon's stderr is its log, which the test never prints); the
	 * assertion leaves the dir and the atexit hook shows the tail.
	 */
	if (harness_log_grep(h, "ERROR: (AddressSanitizer|LeakSanitizer)|"
	    "runtime error:"))
		cr_assert_fail("sanitizer report in %s", h->log_path);
	if ((bad = harness_log_ctrl(h)) != -1)
		cr_assert_fail("raw control character in %s at offset %ld "
		    "(SECURITY-CASES 0 (c): peer text must be escaped)",
		    h->log_path, bad);
	if (h->hold_fds[0] != -1)
		close(h->hold_fds[0]);
	if (h->hold_fds[1] != -1)
		close(h->hold_fds[1]);
	h->hold_fds[0] = h->hold_fds[1] = -1;
	if (getenv("POSTERN_KEEP_TMP") == NULL)
		harness_rmtree(h->dir);
	free(h->relay_networks);
	free(h->limits);
	free(h->extra);
	free(h->user);
	free(h->delivery);
	free(h->tls_policy);
	free(h->retry);
	h->relay_networks = h->limits = h->extra = h->user = NULL;
	h->delivery = h->tls_policy = h->retry = NULL;
	/* Stays on the live list (marked) so the atexit walk stays valid. */
	h->freed = true;
}

int
harness_listen(struct harness *h, const char *address, const char *tls,
    const char *auth)
{
	struct harness_listener	*l;
	int			 fd, port, tries;

	if (h->nlisteners == HARNESS_MAX_LISTENERS) {
		harness_seterr(h, "too many listeners");
		return (-1);
	}
	if (address == NULL)
		address = "127.0.0.1";
	/*
	 * A port released by close() may come straight back from the next
	 * bind(0): never hand out one this test already uses.
	 */
	for (tries = 0;; tries++) {
		size_t	i;
		bool	dup = false;

		if ((fd = harness_bind_any(address, SOCK_STREAM, &port))
		    == -1) {
			harness_seterr(h, "no free port on %s: %s", address,
			    strerror(errno));
			return (-1);
		}
		close(fd);
		for (i = 0; i < h->nlisteners; i++)
			if (h->listeners[i].port == port)
				dup = true;
		if (port == h->smarthost_port || port == h->dns_port)
			dup = true;
		if (!dup)
			break;
		if (tries == 50) {
			harness_seterr(h, "no distinct free port on %s",
			    address);
			return (-1);
		}
	}
	l = &h->listeners[h->nlisteners];
	strlcpy(l->address, address, sizeof(l->address));
	l->port = port;
	strlcpy(l->tls, tls != NULL ? tls : "none", sizeof(l->tls));
	strlcpy(l->auth, auth != NULL ? auth : "none", sizeof(l->auth));
	if (strcmp(l->tls, "none") != 0 && harness_use_tls(h) == -1)
		return (-1);
	return ((int)h->nlisteners++);
}

int
harness_port(const struct harness *h, int idx)
{
	return (h->listeners[idx].port);
}

const char *
harness_address(const struct harness *h, int idx)
{
	return (h->listeners[idx].address);
}

static void
harness_replace(char **slot, const char *v)
{
	free(*slot);
	*slot = v != NULL ? strdup(v) : NULL;
}

void
harness_set_relay_networks(struct harness *h, const char *v)
{
	harness_replace(&h->relay_networks, v);
}

void
harness_set_limits(struct harness *h, const char *v)
{
	harness_replace(&h->limits, v);
}

void
harness_set_user(struct harness *h, const char *v)
{
	harness_replace(&h->user, v);
}

void
harness_set_delivery(struct harness *h, const char *v)
{
	harness_replace(&h->delivery, v);
}

void
harness_set_tls_policy(struct harness *h, const char *v)
{
	harness_replace(&h->tls_policy, v);
}

void
harness_set_retry(struct harness *h, const char *v)
{
	harness_replace(&h->retry, v);
}

void
harness_append_conf(struct harness *h, const char *v)
{
	char	*n;

	if (h->extra == NULL) {
		h->extra = strdup(v);
		return;
	}
	if (asprintf(&n, "%s\n%s", h->extra, v) == -1)
		return;
	free(h->extra);
	h->extra = n;
}

static bool
harness_file_exists(const char *path)
{
	struct stat	sb;

	return (stat(path, &sb) == 0);
}

int
harness_run(const char *const *argv, const char *stdin_data, char *out,
    size_t outlen, int timeout_s)
{
	int	 in[2], op[2], status, devnull;
	size_t	 got = 0;
	ssize_t	 n;
	pid_t	 pid;
	long	 deadline;
	char	 sink[4096];
	struct pollfd pfd;

	if (pipe2(in, O_CLOEXEC) == -1)
		return (-1);
	if (pipe2(op, O_CLOEXEC) == -1) {
		close(in[0]);
		close(in[1]);
		return (-1);
	}
	if ((pid = fork()) == -1)
		return (-1);
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(op[1], 1);
		dup2(op[1], 2);
		if (stdin_data == NULL &&
		    (devnull = open("/dev/null", O_RDONLY)) != -1)
			dup2(devnull, 0);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(in[0]);
	close(op[1]);
	if (stdin_data != NULL) {
		signal(SIGPIPE, SIG_IGN);
		/* The program may not read stdin at all: ignore EPIPE. */
		(void)!write(in[1], stdin_data, strlen(stdin_data));
	}
	close(in[1]);
	deadline = harness_now_ms() + (long)timeout_s * 1000;
	for (;;) {
		pfd.fd = op[0];
		pfd.events = POLLIN;
		if (poll(&pfd, 1, (int)(deadline - harness_now_ms() > 0 ?
		    deadline - harness_now_ms() : 0)) <= 0) {
			kill(pid, SIGKILL);
			break;
		}
		if (got + 1 < outlen)
			n = read(op[0], out + got, outlen - 1 - got);
		else
			n = read(op[0], sink, sizeof(sink));
		if (n <= 0)
			break;
		if (got + 1 < outlen)
			got += (size_t)n;
	}
	if (outlen > 0)
		out[got] = '\0';
	close(op[0]);
	if (waitpid(pid, &status, 0) == -1)
		return (-1);
	return (status);
}

int
harness_hash_password(const char *password, char *hash, size_t hashlen,
    char *err, size_t errlen)
{
	const char	*argv[] = { harness_posternd(), "--hash-password",
			    NULL };
	char		 out[4096], *in, *line, *save;
	int		 status;

	if (asprintf(&in, "%s\n", password) == -1)
		return (-1);
	status = harness_run(argv, in, out, sizeof(out), 30);
	free(in);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, errlen, "posternd --hash-password: status %d: %s",
		    status, out);
		return (-1);
	}
	for (line = strtok_r(out, "\r\n", &save); line != NULL;
	    line = strtok_r(NULL, "\r\n", &save)) {
		if (line[0] == '$') {
			strlcpy(hash, line, hashlen);
			return (0);
		}
	}
	snprintf(err, errlen, "posternd --hash-password printed no hash");
	return (-1);
}

int
harness_add_user(struct harness *h, const char *name, const char *password,
    const char *domains)
{
	char	hash[512], err[600];
	FILE	*fp;
	int	fd;

	if (harness_hash_password(password, hash, sizeof(hash), err,
	    sizeof(err)) == -1) {
		harness_seterr(h, "%s", err);
		return (-1);
	}
	fd = open(h->users_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	    0640);
	if (fd == -1 || (fp = fdopen(fd, "a")) == NULL) {
		harness_seterr(h, "%s: %s", h->users_path, strerror(errno));
		if (fd != -1)
			close(fd);
		return (-1);
	}
	if (domains != NULL)
		fprintf(fp, "%s:%s:%s\n", name, hash, domains);
	else
		fprintf(fp, "%s:%s\n", name, hash);
	fclose(fp);
	chmod(h->users_path, 0640);
	h->have_users = true;
	return (0);
}

/*
 * Used only while gen-certs.sh is missing or broken, so the TLS tests can
 * still run: the same file names and subjectAltNames.
 */
static const char harness_certs_fallback[] =
    "set -e; cd \"$1\"; "
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
    "-days 30 -subj /CN=postern-test-ca "
    "-addext basicConstraints=critical,CA:TRUE "
    "-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null; "
    "for n in server wrongname; do "
    "  if [ $n = server ]; then san='DNS:localhost,DNS:mx.ok.test,"
    "IP:127.0.0.1'; else san='DNS:wrong.test'; fi; "
    "  openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr "
    "-subj /CN=$n 2>/dev/null; "
    "  printf 'subjectAltName=%s\\n' \"$san\" > $n.ext; "
    "  openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key "
    "-CAcreateserial -days 30 -extfile $n.ext -out $n.pem 2>/dev/null; "
    "done; "
    "openssl req -x509 -newkey rsa:2048 -nodes -keyout selfsigned.key "
    "-out selfsigned.pem -days 30 -subj /CN=localhost "
    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null; "
    "chmod 0600 *.key";

int
harness_use_tls(struct harness *h)
{
	char		 script[PATH_MAX], server[300], out[4096];
	const char	*argv[] = { "/bin/sh", script, h->cert_dir, NULL };
	const char	*fb[] = { "/bin/sh", "-c", harness_certs_fallback,
			    "sh", h->cert_dir, NULL };
	int		 status;

	h->tls = true;
	snprintf(server, sizeof(server), "%s/server.pem", h->cert_dir);
	if (harness_file_exists(server))
		return (0);
	mkdir(h->cert_dir, 0700);
	snprintf(script, sizeof(script), "%s/tests/support/gen-certs.sh",
	    harness_srcdir());
	status = harness_run(argv, NULL, out, sizeof(out), 120);
	if (harness_file_exists(server))
		return (0);
	fprintf(stderr, "harness: gen-certs.sh did not make server.pem "
	    "(status %d: %.200s); using the built-in fallback\n", status, out);
	status = harness_run(fb, NULL, out, sizeof(out), 120);
	if (!harness_file_exists(server)) {
		harness_seterr(h, "cannot make certificates: %s", out);
		return (-1);
	}
	return (0);
}

int
harness_set_conf_text(struct harness *h, const char *text)
{
	FILE	*fp;

	if ((fp = fopen(h->conf_path, "w")) == NULL) {
		harness_seterr(h, "%s: %s", h->conf_path, strerror(errno));
		return (-1);
	}
	fputs(text, fp);
	fclose(fp);
	h->raw_conf = true;
	return (0);
}

int
harness_write_conf(struct harness *h)
{
	FILE	*fp;
	size_t	 i;

	if ((fp = fopen(h->conf_path, "w")) == NULL) {
		harness_seterr(h, "%s: %s", h->conf_path, strerror(errno));
		return (-1);
	}
	fprintf(fp, "# generated by tests/support/harness.c\n"
	    "hostname = \"%s\";\n"
	    "user = \"%s\";\n"
	    "spool_dir = \"%s\";\n"
	    "control_socket = \"%s\";\n",
	    h->hostname, h->user, h->spool_dir, h->control_path);
	fprintf(fp, "listen = (\n");
	for (i = 0; i < h->nlisteners; i++)
		fprintf(fp, "  { address = \"%s\"; port = %d; tls = \"%s\"; "
		    "auth = \"%s\"; }%s\n", h->listeners[i].address,
		    h->listeners[i].port, h->listeners[i].tls,
		    h->listeners[i].auth, i + 1 < h->nlisteners ? "," : "");
	fprintf(fp, ");\n");
	if (h->tls)
		fprintf(fp, "tls = {\n  cert = \"%s/server.pem\";\n"
		    "  key = \"%s/server.key\";\n};\n", h->cert_dir,
		    h->cert_dir);
	if (h->have_users)
		fprintf(fp, "auth = { users_file = \"%s\"; };\n",
		    h->users_path);
	if (h->relay_networks != NULL)
		fprintf(fp, "relay_networks = %s;\n", h->relay_networks);
	if (h->limits != NULL)
		fprintf(fp, "limits = {\n  %s\n};\n", h->limits);
	if (h->delivery != NULL)
		fprintf(fp, "delivery = {\n  %s\n};\n", h->delivery);
	else
		fprintf(fp, "delivery = {\n"
		    "  smarthost = \"[127.0.0.1]:%d\";\n"
		    "  dns_servers = [ \"127.0.0.1:%d\" ];\n"
		    "};\n", h->smarthost_port, h->dns_port);
	if (h->tls_policy != NULL)
		fprintf(fp, "tls_policy = (\n  %s\n);\n", h->tls_policy);
	if (h->retry != NULL)
		fprintf(fp, "retry = {\n  %s\n};\n", h->retry);
	if (h->extra != NULL)
		fprintf(fp, "%s\n", h->extra);
	if (fclose(fp) != 0) {
		harness_seterr(h, "%s: %s", h->conf_path, strerror(errno));
		return (-1);
	}
	return (0);
}

/* Whether /proc/net/tcp or tcp6 shows port in LISTEN state. */
static bool
harness_port_listening(int port)
{
	static const char	*files[] = { "/proc/net/tcp",
				    "/proc/net/tcp6" };
	char			 line[512], local[128];
	unsigned int		 lport, st;
	char			*colon;
	FILE			*fp;
	size_t			 i;
	bool			 found = false;

	for (i = 0; i < nitems(files) && !found; i++) {
		if ((fp = fopen(files[i], "r")) == NULL)
			continue;
		while (fgets(line, sizeof(line), fp) != NULL) {
			if (sscanf(line, " %*s %127s %*s %x", local, &st) != 2)
				continue;
			if ((colon = strrchr(local, ':')) == NULL)
				continue;
			if (sscanf(colon + 1, "%x", &lport) != 1)
				continue;
			if ((int)lport == port && st == 0x0A) {
				found = true;
				break;
			}
		}
		fclose(fp);
	}
	return (found);
}

static int
harness_unix_connect(const char *path)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path))
		return (-1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return (-1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		close(fd);
		return (-1);
	}
	return (fd);
}

static bool
harness_ready(struct harness *h)
{
	size_t	i;
	int	fd;

	/*
	 * Sockets accept into their backlog before the event loop runs:
	 * first wait for the line the daemon logs from inside its loop (a
	 * probe connection every poll would pile up in the control socket's
	 * backlog and count against its client cap).
	 */
	if (harness_log_count(h, "posternd\\[[0-9]+\\]: ready: ") <=
	    h->ready_base)
		return (false);
	for (i = 0; i < h->nlisteners; i++)
		if (!harness_port_listening(h->listeners[i].port))
			return (false);
	if (h->control_path[0] != '\0') {
		if ((fd = harness_unix_connect(h->control_path)) == -1)
			return (false);
		close(fd);
	}
	return (true);
}

int
harness_start_args(struct harness *h, const char *const *extra)
{
	const char	*argv[32];
	size_t		 n = 0;
	pid_t		 pid, parent = getpid();
	int		 fd;

	if (h->pid > 0) {
		harness_seterr(h, "daemon already running");
		return (-1);
	}
	if (!h->raw_conf && !h->no_conf_arg && harness_write_conf(h) == -1)
		return (-1);
	h->ready_base = harness_log_count(h, "posternd\\[[0-9]+\\]: ready: ");
	if (access(harness_posternd(), X_OK) == -1) {
		harness_seterr(h, "%s: %s (build it first)",
		    harness_posternd(), strerror(errno));
		return (-1);
	}
	argv[n++] = harness_posternd();
	argv[n++] = "-f";
	if (!h->no_conf_arg) {
		argv[n++] = "-c";
		argv[n++] = h->conf_path;
	}
	while (extra != NULL && *extra != NULL && n < nitems(argv) - 1)
		argv[n++] = *extra++;
	argv[n] = NULL;
	fflush(stderr);
	if ((pid = fork()) == -1) {
		harness_seterr(h, "fork: %s", strerror(errno));
		return (-1);
	}
	if (pid == 0) {
		/* Only async-signal-safe calls: the test may have threads. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		fd = open(h->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd == -1)
			_exit(125);
		dup2(fd, 1);
		dup2(fd, 2);
		if ((fd = open("/dev/null", O_RDONLY)) != -1)
			dup2(fd, 0);
		if (chdir(h->dir) == -1)
			_exit(124);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	h->pid = pid;
	return (harness_wait_ready(h, HARNESS_START_TIMEOUT));
}

int
harness_wait_ready(struct harness *h, int timeout_s)
{
	long	deadline = harness_now_ms() + (long)timeout_s * 1000;

	for (;;) {
		if (harness_reap(h)) {
			harness_seterr(h, "posternd exited "
			    "(status 0x%x); log:\n%s", h->exit_status,
			    harness_log_tail(h, 30));
			return (-1);
		}
		if (harness_ready(h))
			return (0);
		if (harness_now_ms() > deadline)
			break;
		harness_sleep_ms(50);
	}
	harness_seterr(h, "posternd not ready after %d s; log:\n%s",
	    timeout_s, harness_log_tail(h, 30));
	return (-1);
}

bool
harness_port_is_listening(int port)
{
	return (harness_port_listening(port));
}

int
harness_start(struct harness *h)
{
	return (harness_start_args(h, NULL));
}

int
harness_wait_exit(struct harness *h, int timeout_s)
{
	long	deadline = harness_now_ms() + (long)timeout_s * 1000;

	while (!harness_reap(h)) {
		if (harness_now_ms() > deadline) {
			harness_seterr(h, "posternd still running after %d s",
			    timeout_s);
			return (-1);
		}
		harness_sleep_ms(20);
	}
	return (0);
}

int
harness_stop(struct harness *h)
{
	if (h->pid <= 0) {
		harness_seterr(h, "daemon not running");
		return (-1);
	}
	kill(h->pid, SIGTERM);
	if (harness_wait_exit(h, HARNESS_STOP_TIMEOUT) == 0)
		return (0);
	kill(h->pid, SIGKILL);
	waitpid(h->pid, &h->exit_status, 0);
	h->pid = -1;
	harness_seterr(h, "posternd ignored SIGTERM for %d s; killed",
	    HARNESS_STOP_TIMEOUT);
	return (-1);
}

int
harness_kill9(struct harness *h)
{
	if (h->pid <= 0) {
		harness_seterr(h, "daemon not running");
		return (-1);
	}
	kill(h->pid, SIGKILL);
	waitpid(h->pid, &h->exit_status, 0);
	h->pid = -1;
	return (0);
}

int
harness_restart(struct harness *h)
{
	if (h->pid > 0 && harness_stop(h) == -1)
		return (-1);
	return (harness_start(h));
}

int
harness_signal(struct harness *h, int sig)
{
	if (h->pid <= 0) {
		harness_seterr(h, "daemon not running");
		return (-1);
	}
	return (kill(h->pid, sig));
}

bool
harness_is_running(struct harness *h)
{
	return (!harness_reap(h));
}

/* Call fn on every log line until it returns true; returns that. */
static int
harness_log_scan(struct harness *h, const char *regex, bool count_all)
{
	regex_t	 re;
	FILE	*fp;
	char	*line = NULL;
	size_t	 cap = 0;
	int	 n = 0;

	if (regcomp(&re, regex, REG_EXTENDED | REG_NOSUB) != 0) {
		harness_seterr(h, "bad regex %s", regex);
		return (-1);
	}
	if ((fp = fopen(h->log_path, "r")) == NULL) {
		regfree(&re);
		return (0);
	}
	while (getline(&line, &cap, fp) != -1) {
		if (regexec(&re, line, 0, NULL, 0) == 0) {
			n++;
			if (!count_all)
				break;
		}
	}
	free(line);
	fclose(fp);
	regfree(&re);
	return (n);
}

bool
harness_log_grep(struct harness *h, const char *regex)
{
	return (harness_log_scan(h, regex, false) > 0);
}

int
harness_log_count(struct harness *h, const char *regex)
{
	return (harness_log_scan(h, regex, true));
}

bool
harness_log_wait(struct harness *h, const char *regex, int timeout_s)
{
	long	deadline = harness_now_ms() + (long)timeout_s * 1000;

	for (;;) {
		if (harness_log_grep(h, regex))
			return (true);
		if (harness_now_ms() > deadline)
			return (false);
		harness_sleep_ms(50);
	}
}

const char *
harness_log_tail(struct harness *h, int nlines)
{
	static char	 buf[8192];
	char		*all = NULL, *p;
	size_t		 cap = 0, len;
	FILE		*fp;
	int		 seen = 0;

	buf[0] = '\0';
	if ((fp = fopen(h->log_path, "r")) == NULL)
		return (buf);
	len = getdelim(&all, &cap, '\0', fp) > 0 ? strlen(all) : 0;
	fclose(fp);
	if (len == 0) {
		free(all);
		return ("(log empty)");
	}
	for (p = all + len - 1; p > all; p--)
		if (*p == '\n' && p != all + len - 1 && ++seen == nlines) {
			p++;
			break;
		}
	len = strlen(p);
	if (len >= sizeof(buf))
		p += len - (sizeof(buf) - 1);
	strlcpy(buf, p, sizeof(buf));
	free(all);
	return (buf);
}

json_t *
harness_control(struct harness *h, const char *request)
{
	json_t		*reply;
	json_error_t	 jerr;
	char		*buf = NULL, *nl, *req;
	size_t		 len = 0, cap = 0;
	ssize_t		 n;
	long		 deadline;
	struct pollfd	 pfd;
	int		 fd, left;

	if ((fd = harness_unix_connect(h->control_path)) == -1) {
		harness_seterr(h, "control connect %s: %s", h->control_path,
		    strerror(errno));
		return (NULL);
	}
	if (asprintf(&req, "%s\n", request) == -1) {
		close(fd);
		return (NULL);
	}
	n = send(fd, req, strlen(req), MSG_NOSIGNAL);
	free(req);
	if (n < 0) {
		harness_seterr(h, "control send: %s", strerror(errno));
		close(fd);
		return (NULL);
	}
	deadline = harness_now_ms() + HARNESS_CONTROL_TIMEOUT;
	for (;;) {
		if (buf != NULL && (nl = memchr(buf, '\n', len)) != NULL) {
			*nl = '\0';
			break;
		}
		if (len + 65536 + 1 > cap) {
			if (cap >= HARNESS_CONTROL_MAX) {
				harness_seterr(h, "control reply too long");
				goto fail;
			}
			cap = cap == 0 ? 131072 : cap * 2;
			if ((nl = realloc(buf, cap)) == NULL)
				goto fail;
			buf = nl;
		}
		left = (int)(deadline - harness_now_ms());
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (left <= 0 || poll(&pfd, 1, left) <= 0) {
			harness_seterr(h, "control reply timed out for %s",
			    request);
			goto fail;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0) {
			if (len > 0) {
				/* A reply without its newline: take it. */
				break;
			}
			harness_seterr(h, "control: EOF without a reply to %s",
			    request);
			goto fail;
		}
		len += (size_t)n;
		buf[len] = '\0';
	}
	close(fd);
	if (buf == NULL)
		return (NULL);
	buf[cap - 1] = '\0';
	if ((reply = json_loads(buf, 0, &jerr)) == NULL)
		harness_seterr(h, "control: bad JSON (%s): %.300s", jerr.text,
		    buf);
	free(buf);
	return (reply);
fail:
	close(fd);
	free(buf);
	return (NULL);
}

int
harness_queue_ids(struct harness *h, char (*ids)[9], size_t max)
{
	json_t		*r, *msgs, *m, *id;
	size_t		 i, n = 0;

	r = harness_control(h, "{\"cmd\":\"queue\",\"limit\":100000}");
	if (r == NULL)
		return (-1);
	if (!json_is_true(json_object_get(r, "ok")) ||
	    !json_is_array(msgs = json_object_get(r, "messages"))) {
		char	*dump = json_dumps(r, JSON_COMPACT);

		harness_seterr(h, "queue reply: %.500s", dump ? dump : "?");
		free(dump);
		json_decref(r);
		return (-1);
	}
	json_array_foreach(msgs, i, m) {
		id = json_object_get(m, "id");
		if (!json_is_string(id))
			continue;
		if (n < max && ids != NULL)
			strlcpy(ids[n], json_string_value(id), 9);
		n++;
	}
	json_decref(r);
	return ((int)n);
}

int
harness_queue_count(struct harness *h)
{
	return (harness_queue_ids(h, NULL, 0));
}

bool
harness_queue_has(struct harness *h, const char *id)
{
	char	(*ids)[9];
	int	 n, i;
	bool	 found = false;

	if ((ids = calloc(100000, sizeof(*ids))) == NULL)
		return (false);
	n = harness_queue_ids(h, ids, 100000);
	for (i = 0; i < n && i < 100000; i++)
		if (strcmp(ids[i], id) == 0) {
			found = true;
			break;
		}
	free(ids);
	return (found);
}

/* Depth-bounded search for a regular file whose name starts with id. */
static bool
harness_find_file(const char *dir, const char *id, char *out, size_t outlen,
    int depth)
{
	DIR		*d;
	struct dirent	*de;
	struct stat	 sb;
	char		 path[PATH_MAX];
	bool		 found = false;

	if (depth > 4 || (d = opendir(dir)) == NULL)
		return (false);
	while (!found && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &sb) == -1)
			continue;
		if (S_ISDIR(sb.st_mode))
			found = harness_find_file(path, id, out, outlen,
			    depth + 1);
		else if (S_ISREG(sb.st_mode) &&
		    strncmp(de->d_name, id, strlen(id)) == 0) {
			strlcpy(out, path, outlen);
			found = true;
		}
	}
	closedir(d);
	return (found);
}

char *
harness_spool_read(struct harness *h, const char *id, size_t *lenp)
{
	char		 path[PATH_MAX];
	char		*buf = NULL;
	size_t		 cap = 0, len = 0;
	ssize_t		 n;
	int		 fd;

	snprintf(path, sizeof(path), "%s/queue/%s", h->spool_dir, id);
	if (!harness_file_exists(path) &&
	    !harness_find_file(h->spool_dir, id, path, sizeof(path), 0)) {
		harness_seterr(h, "no spool file for %s under %s", id,
		    h->spool_dir);
		return (NULL);
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		harness_seterr(h, "%s: %s", path, strerror(errno));
		return (NULL);
	}
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap == 0 ? 65536 : cap * 2;
			buf = realloc(buf, cap);
			if (buf == NULL) {
				close(fd);
				return (NULL);
			}
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return (buf);
}

struct smtpc *
harness_session(struct harness *h, int idx)
{
	struct smtpc	*c;
	char		 err[256];

	c = smtpc_connect(h->listeners[idx].address, h->listeners[idx].port,
	    err, sizeof(err));
	if (c == NULL) {
		harness_seterr(h, "%s", err);
		return (NULL);
	}
	if (!smtpc_expect(c, "220")) {
		harness_seterr(h, "greeting: got \"%s\"", smtpc_last(c));
		smtpc_close(c);
		return (NULL);
	}
	return (c);
}

struct smtpc *
harness_session_ehlo(struct harness *h, int idx)
{
	struct smtpc	*c;

	if ((c = harness_session(h, idx)) == NULL)
		return (NULL);
	if (smtpc_ehlo(c, "client.test") != 250) {
		harness_seterr(h, "EHLO: got \"%s\"", smtpc_last(c));
		smtpc_close(c);
		return (NULL);
	}
	return (c);
}

bool
harness_still_serves(struct harness *h, int idx)
{
	struct smtpc	*c;
	bool		 ok;

	if ((c = harness_session(h, idx)) == NULL)
		return (false);
	ok = smtpc_cmd_expect(c, "QUIT", "221");
	if (!ok)
		harness_seterr(h, "QUIT: got \"%s\"", smtpc_last(c));
	smtpc_close(c);
	return (ok);
}

bool
harness_log_has_queued(struct harness *h)
{
	return (harness_log_grep(h, "[0-9A-F]{8}: from=<") ||
	    harness_log_grep(h, "queued as"));
}

/*
 * Delivery peers: dnsmasq and fakemx.
 */

/*
 * Fork and exec argv as a peer of the test: killed with the test
 * (PR_SET_PDEATHSIG), stdout+stderr appended to logpath, cwd = h->dir.
 */
static pid_t
harness_spawn(struct harness *h, const char *const *argv, const char *logpath)
{
	extern char	**environ;
	char		**envp;
	size_t		  n = 0, i;
	pid_t		  pid, parent = getpid();
	int		  fd;

	/*
	 * Without Criterion's BXFI_MAP: a peer that happens to link
	 * libcriterion (the ASan build keeps it) would otherwise take itself
	 * for a test worker and abort at start.
	 */
	for (i = 0; environ[i] != NULL; i++)
		;
	if ((envp = calloc(i + 1, sizeof(*envp))) == NULL) {
		harness_seterr(h, "calloc: %s", strerror(errno));
		return (-1);
	}
	for (i = 0; environ[i] != NULL; i++)
		if (strncmp(environ[i], "BXFI_", 5) != 0)
			envp[n++] = environ[i];
	envp[n] = NULL;
	fflush(stderr);
	if ((pid = fork()) == -1) {
		harness_seterr(h, "fork: %s", strerror(errno));
		free(envp);
		return (-1);
	}
	if (pid == 0) {
		/* Only async-signal-safe calls: the test may have threads. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(126);
		fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd == -1)
			_exit(125);
		dup2(fd, 1);
		dup2(fd, 2);
		if ((fd = open("/dev/null", O_RDONLY)) != -1)
			dup2(fd, 0);
		if (chdir(h->dir) == -1)
			_exit(124);
		execve(argv[0], (char *const *)argv, envp);
		_exit(127);
	}
	free(envp);
	return (pid);
}

/* SIGTERM, up to 10 s to exit, then SIGKILL; *pid becomes -1. */
static void
harness_peer_stop(pid_t *pid)
{
	long	deadline = harness_now_ms() + 10000;

	if (*pid <= 0)
		return;
	kill(*pid, SIGTERM);
	while (waitpid(*pid, NULL, WNOHANG) == 0) {
		if (harness_now_ms() > deadline) {
			harness_peer_kill(pid);
			return;
		}
		harness_sleep_ms(20);
	}
	*pid = -1;
}

/* Whether a peer process has exited (reaped here, status in *status). */
static bool
harness_peer_exited(pid_t pid, int *status)
{
	pid_t	r;

	*status = -1;
	r = waitpid(pid, status, WNOHANG);
	return (r == pid || (r == -1 && errno == ECHILD));
}

/* Whether a DNS server answers on 127.0.0.1:port (any reply counts). */
static bool
harness_dns_probe(int port)
{
	/* id 0x7e57, RD, one question: probe.test IN A. */
	static const unsigned char	 q[] = { 0x7e, 0x57, 0x01, 0x00, 0, 1,
					    0, 0, 0, 0, 0, 0, 5, 'p', 'r', 'o',
					    'b', 'e', 4, 't', 'e', 's', 't',
					    0, 0, 1, 0, 1 };
	unsigned char			 r[512];
	struct sockaddr_in		 sin;
	struct pollfd			 pfd;
	ssize_t				 n;
	int				 fd;
	bool				 ok = false;

	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
		return (false);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    send(fd, q, sizeof(q), 0) == (ssize_t)sizeof(q)) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 200) == 1 &&
		    (n = recv(fd, r, sizeof(r), 0)) >= 12 && r[0] == q[0] &&
		    r[1] == q[1])
			ok = true;
	}
	close(fd);
	return (ok);
}

/*
 * A port of 127.0.0.1 free for UDP and for TCP, as dnsmasq binds both: a
 * loopback crowded with TIME_WAIT and client sockets often has the TCP
 * side of a free UDP port taken.  Refused candidates stay bound while we
 * look further, so the kernel offers other ones.
 */
static int
harness_dns_free_port(int *portp)
{
	struct sockaddr_in	 sin;
	int			 held[256], nheld = 0, fd, tfd, port, rc = -1;

	while (nheld < (int)nitems(held)) {
		if ((fd = harness_bind_any("127.0.0.1", SOCK_DGRAM, &port))
		    == -1)
			break;
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)port);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (tfd != -1 && bind(tfd, (struct sockaddr *)&sin,
		    sizeof(sin)) == 0) {
			close(tfd);
			close(fd);
			*portp = port;
			rc = 0;
			break;
		}
		if (tfd != -1)
			close(tfd);
		held[nheld++] = fd;
	}
	while (nheld > 0)
		close(held[--nheld]);
	return (rc);
}

int
harness_dns_start(struct harness *h, const char *const *args)
{
	const char	*argv[HARNESS_DNS_ARGS_MAX + 16];
	char		 portarg[32], logpath[PATH_MAX];
	size_t		 n, i;
	long		 deadline;
	pid_t		 pid;
	int		 attempt, port, status = -1;

	if (h->dns_pid > 0) {
		harness_seterr(h, "dnsmasq already running");
		return (-1);
	}
	if (access(HARNESS_DNSMASQ, X_OK) == -1) {
		harness_seterr(h, "%s: %s (Debian dnsmasq-base)",
		    HARNESS_DNSMASQ, strerror(errno));
		return (-1);
	}
	for (i = 0; args != NULL && args[i] != NULL; i++)
		;
	if (i > HARNESS_DNS_ARGS_MAX) {
		harness_seterr(h, "too many dnsmasq arguments");
		return (-1);
	}
	snprintf(logpath, sizeof(logpath), "%s/dnsmasq.log", h->dir);
	/*
	 * The port comes from the kernel and goes straight to dnsmasq; if
	 * another test takes it in between, dnsmasq exits and we try again.
	 */
	for (attempt = 0; attempt < 5; attempt++) {
		if (harness_dns_free_port(&port) == -1) {
			harness_seterr(h, "no port free for both UDP and TCP: "
			    "%s", strerror(errno));
			return (-1);
		}
		snprintf(portarg, sizeof(portarg), "--port=%d", port);
		n = 0;
		argv[n++] = HARNESS_DNSMASQ;
		argv[n++] = "--keep-in-foreground";
		argv[n++] = "--no-resolv";
		argv[n++] = "--no-hosts";
		argv[n++] = "--conf-file=/dev/null";
		argv[n++] = "--bind-interfaces";
		argv[n++] = "--listen-address=127.0.0.1";
		argv[n++] = portarg;
		argv[n++] = "--pid-file=";
		argv[n++] = "--log-facility=-";
		argv[n++] = "--log-queries";
		argv[n++] = "--local=/test/";
		for (i = 0; args != NULL && args[i] != NULL; i++)
			argv[n++] = args[i];
		argv[n] = NULL;
		if ((pid = harness_spawn(h, argv, logpath)) == -1)
			return (-1);
		h->dns_pid = pid;
		deadline = harness_now_ms() + HARNESS_PEER_TIMEOUT * 1000L;
		for (;;) {
			if (harness_peer_exited(pid, &status)) {
				h->dns_pid = -1;
				break;
			}
			if (harness_dns_probe(port)) {
				h->dnsmasq_port = port;
				return (0);
			}
			if (harness_now_ms() > deadline) {
				harness_peer_kill(&h->dns_pid);
				harness_seterr(h, "dnsmasq does not answer on "
				    "port %d after %d s (see %s)", port,
				    HARNESS_PEER_TIMEOUT, logpath);
				return (-1);
			}
			harness_sleep_ms(20);
		}
	}
	harness_seterr(h, "dnsmasq exited at start %d times, last status "
	    "0x%x (see %s)", attempt, status, logpath);
	return (-1);
}

int
harness_dns_port(const struct harness *h)
{
	return (h->dnsmasq_port);
}

int
harness_dns_stop(struct harness *h)
{
	if (h->dns_pid <= 0)
		return (-1);
	harness_peer_stop(&h->dns_pid);
	return (0);
}

int
harness_mx_port(const struct harness *h)
{
	return (h->smarthost_port);
}

int
harness_mx_start(struct harness *h, const char *addr,
    const char *const *args)
{
	struct harness_mx	*m;
	const char		*argv[64];
	char			 bin[PATH_MAX], listen[96], cert[PATH_MAX],
				 key[PATH_MAX], ready[PATH_MAX],
				 logpath[PATH_MAX];
	size_t			 n = 0, i;
	long			 deadline;
	bool			 has_cert = false, was_tls;
	pid_t			 pid;
	int			 status;

	if (h->nmx == HARNESS_MAX_MX) {
		harness_seterr(h, "too many fakemx instances");
		return (-1);
	}
	snprintf(bin, sizeof(bin), "%s/tests/support/fakemx",
	    harness_builddir());
	if (access(bin, X_OK) == -1) {
		harness_seterr(h, "%s: %s (make tests/support/fakemx)", bin,
		    strerror(errno));
		return (-1);
	}
	for (i = 0; args != NULL && args[i] != NULL; i++)
		if (strcmp(args[i], "--cert") == 0)
			has_cert = true;
	if (i > nitems(argv) - 10) {
		harness_seterr(h, "too many fakemx arguments");
		return (-1);
	}
	if (!has_cert) {
		/* Certificates only: the daemon's inbound TLS stays as set. */
		was_tls = h->tls;
		if (harness_use_tls(h) == -1)
			return (-1);
		h->tls = was_tls;
	}
	m = &h->mx[h->nmx];
	memset(m, 0, sizeof(*m));
	m->pid = -1;
	strlcpy(m->addr, addr, sizeof(m->addr));
	snprintf(ready, sizeof(ready), "%s/mx-%zu", h->dir, h->nmx);
	strlcpy(m->dir, ready, sizeof(m->dir));
	if (mkdir(m->dir, 0755) == -1 && errno != EEXIST) {
		harness_seterr(h, "mkdir %s: %s", m->dir, strerror(errno));
		return (-1);
	}
	snprintf(listen, sizeof(listen), "%s:%d", addr, harness_mx_port(h));
	snprintf(cert, sizeof(cert), "%s/server.pem", h->cert_dir);
	snprintf(key, sizeof(key), "%s/server.key", h->cert_dir);
	snprintf(ready, sizeof(ready), "%s/ready", m->dir);
	snprintf(logpath, sizeof(logpath), "%s/fakemx.log", m->dir);
	argv[n++] = bin;
	argv[n++] = "--listen";
	argv[n++] = listen;
	argv[n++] = "--dir";
	argv[n++] = m->dir;
	if (!has_cert) {
		argv[n++] = "--cert";
		argv[n++] = cert;
		argv[n++] = "--key";
		argv[n++] = key;
	}
	for (i = 0; args != NULL && args[i] != NULL; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	unlink(ready);
	if ((pid = harness_spawn(h, argv, logpath)) == -1)
		return (-1);
	m->pid = pid;
	h->nmx++;
	deadline = harness_now_ms() + HARNESS_PEER_TIMEOUT * 1000L;
	while (!harness_file_exists(ready)) {
		if (harness_peer_exited(pid, &status)) {
			m->pid = -1;
			harness_seterr(h, "fakemx on %s exited at start, "
			    "status 0x%x (see %s)", listen, status, logpath);
			return (-1);
		}
		if (harness_now_ms() > deadline) {
			harness_peer_kill(&m->pid);
			harness_seterr(h, "fakemx on %s not ready after %d s",
			    listen, HARNESS_PEER_TIMEOUT);
			return (-1);
		}
		harness_sleep_ms(20);
	}
	return ((int)(h->nmx - 1));
}

int
harness_mx_stop(struct harness *h, int idx)
{
	if (idx < 0 || (size_t)idx >= h->nmx || h->mx[idx].pid <= 0)
		return (-1);
	harness_peer_stop(&h->mx[idx].pid);
	return (0);
}

const char *
harness_mx_dir(const struct harness *h, int idx)
{
	return (h->mx[idx].dir);
}

int
harness_mx_messages(struct harness *h, int idx)
{
	char		 path[PATH_MAX];
	DIR		*d;
	struct dirent	*de;
	size_t		 len;
	int		 n = 0;

	snprintf(path, sizeof(path), "%s/msgs", h->mx[idx].dir);
	if ((d = opendir(path)) == NULL)
		return (0);
	while ((de = readdir(d)) != NULL) {
		len = strlen(de->d_name);
		if (len == 11 && strspn(de->d_name, "0123456789") == 6 &&
		    strcmp(de->d_name + 6, ".json") == 0)
			n++;
	}
	closedir(d);
	return (n);
}

bool
harness_mx_wait_messages(struct harness *h, int idx, int n, int timeout_s)
{
	long	deadline = harness_now_ms() + (long)timeout_s * 1000;

	for (;;) {
		if (harness_mx_messages(h, idx) >= n)
			return (true);
		if (harness_now_ms() > deadline)
			return (false);
		harness_sleep_ms(50);
	}
}

/* A whole file, malloc'd and NUL-terminated, or NULL. */
static char *
harness_read_file(const char *path, size_t *lenp)
{
	char	*buf = NULL, *nb;
	size_t	 cap = 0, len = 0;
	ssize_t	 n;
	int	 fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return (NULL);
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap == 0 ? 65536 : cap * 2;
			if ((nb = realloc(buf, cap)) == NULL) {
				free(buf);
				close(fd);
				return (NULL);
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return (buf);
}

char *
harness_mx_read(struct harness *h, int idx, int n, const char *ext,
    size_t *len)
{
	char	path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/msgs/%06d.%s", h->mx[idx].dir, n,
	    ext);
	return (harness_read_file(path, len));
}

json_t *
harness_mx_json(struct harness *h, int idx, int n)
{
	char		path[PATH_MAX];
	json_error_t	jerr;

	snprintf(path, sizeof(path), "%s/msgs/%06d.json", h->mx[idx].dir, n);
	return (json_load_file(path, 0, &jerr));
}

json_t *
harness_mx_stats(struct harness *h, int idx)
{
	char		path[PATH_MAX];
	json_error_t	jerr;

	snprintf(path, sizeof(path), "%s/stats.json", h->mx[idx].dir);
	return (json_load_file(path, 0, &jerr));
}

long long
harness_mx_stat(struct harness *h, int idx, const char *key)
{
	json_t		*st, *v;
	long long	 n = -1;

	if ((st = harness_mx_stats(h, idx)) == NULL)
		return (-1);
	if (json_is_integer(v = json_object_get(st, key)))
		n = (long long)json_integer_value(v);
	json_decref(st);
	return (n);
}

bool
harness_mx_has_file(const struct harness *h, int idx, const char *name)
{
	char	path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", h->mx[idx].dir, name);
	return (harness_file_exists(path));
}

bool
harness_wait_queue_count(struct harness *h, int n, int timeout_s)
{
	long	deadline = harness_now_ms() + (long)timeout_s * 1000;

	for (;;) {
		if (harness_queue_count(h) == n)
			return (true);
		if (harness_now_ms() > deadline)
			return (false);
		harness_sleep_ms(100);
	}
}

/* Skip the (possibly compressed) name at *off of a DNS message. */
static int
harness_dns_skip_name(const unsigned char *m, size_t len, size_t *off)
{
	size_t	o = *off;

	while (o < len) {
		if (m[o] == 0) {
			*off = o + 1;
			return (0);
		}
		if ((m[o] & 0xc0) == 0xc0) {
			if (o + 2 > len)
				return (-1);
			*off = o + 2;
			return (0);
		}
		if ((m[o] & 0xc0) != 0)
			return (-1);
		o += 1 + (size_t)m[o];
	}
	return (-1);
}

int
harness_dns_txt(struct harness *h, const char *name, char *out,
    size_t outlen, int *nstrings)
{
	unsigned char		 q[512], r[4096];
	struct sockaddr_in	 sin;
	struct pollfd		 pfd;
	const char		*p, *dot;
	size_t			 qlen, off, rdend, ll, i, olen = 0;
	ssize_t			 n;
	unsigned int		 qd, an, type, rdlen, k;
	int			 fd, found = 0, tries, nstr = 0;
	uint16_t		 id = (uint16_t)(getpid() ^ harness_now_ms());

	if (outlen > 0)
		out[0] = '\0';
	if (h->dnsmasq_port == 0) {
		harness_seterr(h, "dns_txt: dnsmasq not started");
		return (-1);
	}
	/* Header: id, RD, one question. */
	memset(q, 0, 12);
	q[0] = id >> 8;
	q[1] = id & 0xff;
	q[2] = 0x01;
	q[5] = 1;
	qlen = 12;
	for (p = name; *p != '\0'; p = *dot == '.' ? dot + 1 : dot) {
		if ((dot = strchr(p, '.')) == NULL)
			dot = p + strlen(p);
		ll = (size_t)(dot - p);
		if (ll == 0 || ll > 63 || qlen + ll + 1 + 5 > sizeof(q)) {
			harness_seterr(h, "dns_txt: bad name %s", name);
			return (-1);
		}
		q[qlen++] = (unsigned char)ll;
		memcpy(q + qlen, p, ll);
		qlen += ll;
	}
	q[qlen++] = 0;
	q[qlen++] = 0;
	q[qlen++] = 16;		/* TXT */
	q[qlen++] = 0;
	q[qlen++] = 1;		/* IN */
	if ((fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1) {
		harness_seterr(h, "dns_txt: socket: %s", strerror(errno));
		return (-1);
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)h->dnsmasq_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		harness_seterr(h, "dns_txt: connect: %s", strerror(errno));
		close(fd);
		return (-1);
	}
	n = -1;
	for (tries = 0; tries < 5; tries++) {
		if (send(fd, q, qlen, 0) != (ssize_t)qlen)
			break;
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 1000) == 1 &&
		    (n = recv(fd, r, sizeof(r), 0)) >= 12 && r[0] == q[0] &&
		    r[1] == q[1])
			break;
		n = -1;
	}
	close(fd);
	if (n < 12) {
		harness_seterr(h, "dns_txt %s: no answer from 127.0.0.1:%d",
		    name, h->dnsmasq_port);
		return (-1);
	}
	if ((r[2] & 0x02) != 0) {
		harness_seterr(h, "dns_txt %s: truncated answer", name);
		return (-1);
	}
	if ((r[3] & 0x0f) == 3)		/* NXDOMAIN */
		return (0);
	if ((r[3] & 0x0f) != 0) {
		harness_seterr(h, "dns_txt %s: rcode %d", name, r[3] & 0x0f);
		return (-1);
	}
	qd = (unsigned int)r[4] << 8 | r[5];
	an = (unsigned int)r[6] << 8 | r[7];
	off = 12;
	for (k = 0; k < qd; k++)
		if (harness_dns_skip_name(r, (size_t)n, &off) == -1 ||
		    (off += 4) > (size_t)n)
			goto bad;
	for (k = 0; k < an; k++) {
		if (harness_dns_skip_name(r, (size_t)n, &off) == -1 ||
		    off + 10 > (size_t)n)
			goto bad;
		type = (unsigned int)r[off] << 8 | r[off + 1];
		rdlen = (unsigned int)r[off + 8] << 8 | r[off + 9];
		off += 10;
		if ((rdend = off + rdlen) > (size_t)n)
			goto bad;
		if (type == 16 && found++ == 0) {
			for (i = off; i < rdend; i += 1 + (size_t)r[i]) {
				if (i + 1 + r[i] > rdend)
					goto bad;
				if (olen + r[i] + 1 > outlen) {
					harness_seterr(h, "dns_txt %s: record "
					    "longer than %zu", name, outlen);
					return (-1);
				}
				memcpy(out + olen, r + i + 1, r[i]);
				olen += r[i];
				out[olen] = '\0';
				nstr++;
			}
		}
		off = rdend;
	}
	if (nstrings != NULL)
		*nstrings = nstr;
	return (found);
bad:
	harness_seterr(h, "dns_txt %s: malformed answer", name);
	return (-1);
}
