/*
 * it_ops.c: black-box tests of the operator's side of posternd (SPEC
 * sections 5 and 6, issue 5): every control-socket command against a
 * live daemon whose queue is in a known state, posternctl's tables,
 * --json and exit codes, hostile control clients, the escalation hook
 * (its JSON and environment, its retry, its durability across SIGKILL),
 * the contrib open-case-http hook, and the Prometheus endpoint.
 *
 * Each test runs its own posternd, dnsmasq and fakemx sinks on its own
 * 127.0.0.x addresses and ports (see harness.h), so tests run in
 * parallel.  The known states come from the sinks' scripts: a sink that
 * answers 451 at the final dot keeps a message deferred (retry.initial is
 * 600 s, so only a flush brings the next attempt), one that answers 550
 * at RCPT fails it.  Hooks are shell scripts written into the test's dir
 * that record their stdin and environment there.  Every check polls its
 * condition with a deadline; nothing waits on a fixed sleep except the
 * short "nothing happens" windows, which are named as such.
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "../support/harness.h"

#define IT_TIMEOUT	180	/* s per test: ASan daemons on 2 cores */
#define IT_WAIT		60	/* s, one polled condition */
#define IT_QUIET_MS	2000	/* ms, a window in which nothing may happen */
#define IT_SENDER	"alice@snd.test"
#define IT_MX_OK	"127.0.0.21"	/* mx.ok.test */
#define IT_MX_SND	"127.0.0.22"	/* mx.snd.test: receives DSNs */
#define IT_MX_FAIL	"127.0.0.23"	/* mx.fail.test: answers 550 */
#define IT_METRICS_ADDR	"127.0.0.60"	/* metrics.listen, on mx_port */
#define IT_PYTHON	"/usr/bin/python3"
#define IT_CURL		"/usr/bin/curl"
/* No retry comes on its own during a test: flush triggers each attempt. */
#define IT_RETRY_SLOW	"initial = 600; max_interval = 1200; factor = 2.0;"
#define IT_DEFER_RULE	"dot:451 4.3.0 try later"
#define IT_FAIL_RULE	"rcpt:550 5.1.1 no such user"

static const char *const it_dns_records[] = {
	"--mx-host=ok.test,mx.ok.test,10",
	"--host-record=mx.ok.test," IT_MX_OK,
	"--mx-host=snd.test,mx.snd.test,10",
	"--host-record=mx.snd.test," IT_MX_SND,
	"--mx-host=fail.test,mx.fail.test,10",
	"--host-record=mx.fail.test," IT_MX_FAIL,
	NULL
};

static long
it_now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void
it_sleep_ms(long ms)
{
	struct timespec	ts;

	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000;
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* A harness with one plain listener, the test CA and dnsmasq. */
static struct harness *
it_new(void)
{
	struct harness	*h;

	h = harness_new();
	cr_assert(h != NULL, "harness_new");
	cr_assert(h->err[0] == '\0', "harness_new: %s", harness_err(h));
	cr_assert(harness_listen(h, NULL, "none", "none") == 0,
	    "listen: %s", harness_err(h));
	/* The CA file that delivery.ca_file names; inbound stays plain. */
	cr_assert(harness_use_tls(h) == 0, "certs: %s", harness_err(h));
	h->tls = false;
	cr_assert(harness_dns_start(h, it_dns_records) == 0, "dnsmasq: %s",
	    harness_err(h));
	return (h);
}

/* A fakemx on addr with args; returns its index. */
static int
it_mx(struct harness *h, const char *addr, const char *const *args)
{
	int	idx = harness_mx_start(h, addr, args);

	cr_assert(idx >= 0, "fakemx on %s: %s", addr, harness_err(h));
	return (idx);
}

/* A fakemx on addr with one --rule. */
static int
it_mx_rule(struct harness *h, const char *addr, const char *rule)
{
	const char	*args[] = { "--rule", rule, NULL };

	return (it_mx(h, addr, args));
}

/*
 * Write the configuration (delivery pointed at the test's dnsmasq and
 * sinks, slow retries, top-level statements in extra) without starting.
 */
static void
it_conf(struct harness *h, const char *extra)
{
	char	d[1024];

	snprintf(d, sizeof(d), "dns_servers = [ \"127.0.0.1:%d\" ];\n"
	    "  port = %d;\n  ca_file = \"%s\";\n  connect_timeout = 10;\n"
	    "  pool_size = 5;\n  max_per_destination = 5;",
	    harness_dns_port(h), harness_mx_port(h), h->ca_path);
	harness_set_delivery(h, d);
	harness_set_retry(h, IT_RETRY_SLOW);
	if (extra != NULL)
		harness_append_conf(h, extra);
}

static void
it_start(struct harness *h, const char *extra)
{
	it_conf(h, extra);
	HARNESS_START(h);
}

/* A message of a few hundred octets. */
static void
it_body(char *buf, size_t len, const char *to, const char *msgid)
{
	snprintf(buf, len,
	    "From: Alice <" IT_SENDER ">\r\n"
	    "To: <%s>\r\n"
	    "Subject: operator test\r\n"
	    "Message-ID: <%s>\r\n"
	    "\r\n"
	    "This message is part of the postern operator tests.\r\n"
	    "It stays in the queue until the test lets it go.\r\n", to,
	    msgid);
}

/* Submit one message on session c; its queue id goes to qid (9 bytes). */
static void
it_submit(struct smtpc *c, const char *const *rcpts, size_t nrcpt,
    const char *msgid, char *qid)
{
	char	body[2048];
	int	code;

	it_body(body, sizeof(body), rcpts[0], msgid);
	code = smtpc_submit(c, IT_SENDER, rcpts, nrcpt, body, qid);
	cr_assert(code == 250, "submit %s: got %d \"%s\", want 250", msgid,
	    code, smtpc_last(c));
}

/* Submit one message to rcpt in a session of its own. */
static void
it_submit_one(struct harness *h, const char *rcpt, const char *msgid,
    char *qid)
{
	const char	*rcpts[1] = { rcpt };
	struct smtpc	*c;

	c = harness_session_ehlo(h, 0);
	cr_assert(c != NULL, "session: %s", harness_err(h));
	it_submit(c, rcpts, 1, msgid, qid);
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);
}

/* A control request built from fmt; the reply, never NULL. */
static json_t *
it_ctl(struct harness *h, const char *fmt, ...)
{
	char	 req[1024];
	va_list	 ap;
	json_t	*r;

	va_start(ap, fmt);
	vsnprintf(req, sizeof(req), fmt, ap);
	va_end(ap);
	r = harness_control(h, req);
	cr_assert(r != NULL, "control %s: %s", req, harness_err(h));
	cr_assert(json_is_object(r), "control %s: reply is not an object",
	    req);
	return (r);
}

/* The reply as compact JSON in a static buffer, for messages. */
static const char *
it_dump(json_t *o)
{
	static char	 buf[4096];
	char		*s = json_dumps(o, JSON_COMPACT);

	strlcpy(buf, s != NULL ? s : "(null)", sizeof(buf));
	free(s);
	return (buf);
}

/* A request that must succeed; returns the reply (caller decrefs). */
static json_t *
it_ctl_ok(struct harness *h, const char *req)
{
	json_t	*r = it_ctl(h, "%s", req);

	cr_assert(json_is_true(json_object_get(r, "ok")), "%s: got %s, "
	    "want ok:true", req, it_dump(r));
	return (r);
}

/* A request that must fail with an error containing want. */
static void
it_ctl_err(struct harness *h, const char *req, const char *want)
{
	json_t		*r = it_ctl(h, "%s", req);
	const char	*err = json_string_value(json_object_get(r, "error"));

	cr_assert(json_is_false(json_object_get(r, "ok")), "%s: got %s, "
	    "want ok:false", req, it_dump(r));
	cr_assert(err != NULL && strstr(err, want) != NULL, "%s: error got "
	    "%s, want it to contain \"%s\"", req, it_dump(r), want);
	json_decref(r);
}

/* An integer at group.key of o, or -1. */
static long long
it_int2(json_t *o, const char *group, const char *key)
{
	json_t	*g = group != NULL ? json_object_get(o, group) : o, *v;

	if (!json_is_object(g) || !json_is_integer(v = json_object_get(g,
	    key)))
		return (-1);
	return ((long long)json_integer_value(v));
}

static const char *
it_str(json_t *o, const char *key)
{
	const char	*s = json_string_value(json_object_get(o, key));

	return (s != NULL ? s : "");
}

/* The entry of qid in "queue", or NULL (caller decrefs). */
static json_t *
it_queue_entry(struct harness *h, const char *qid)
{
	json_t	*r, *m, *found = NULL;
	size_t	 i;

	r = it_ctl(h, "{\"cmd\":\"queue\",\"limit\":100000}");
	json_array_foreach(json_object_get(r, "messages"), i, m) {
		if (strcmp(it_str(m, "id"), qid) == 0) {
			found = json_incref(m);
			break;
		}
	}
	json_decref(r);
	return (found);
}

/* Poll until qid has had n attempts and is no longer active. */
static void
it_wait_attempts(struct harness *h, const char *qid, int n)
{
	long	 deadline = it_now_ms() + IT_WAIT * 1000L;
	json_t	*m = NULL;

	for (;;) {
		json_decref(m);
		m = it_queue_entry(h, qid);
		cr_assert(m != NULL, "%s left the queue; log:\n%s", qid,
		    harness_log_tail(h, 20));
		if (it_int2(m, NULL, "attempts") >= n &&
		    strcmp(it_str(m, "state"), "active") != 0)
			break;
		cr_assert(it_now_ms() < deadline, "%s: after %d s got %s, "
		    "want attempts >= %d; log:\n%s", qid, IT_WAIT, it_dump(m),
		    n, harness_log_tail(h, 20));
		it_sleep_ms(100);
	}
	json_decref(m);
}

/* Poll stats until group.key == want. */
static void
it_wait_stat(struct harness *h, const char *group, const char *key,
    long long want)
{
	long		 deadline = it_now_ms() + IT_WAIT * 1000L;
	long long	 got;
	json_t		*r;

	for (;;) {
		r = it_ctl(h, "{\"cmd\":\"stats\"}");
		got = it_int2(r, group, key);
		json_decref(r);
		if (got == want)
			return;
		cr_assert(it_now_ms() < deadline, "stats %s.%s: got %lld "
		    "after %d s, want %lld; log:\n%s", group, key, got,
		    IT_WAIT, want, harness_log_tail(h, 20));
		it_sleep_ms(100);
	}
}

/* Whether qid's queue file is still somewhere under the spool. */
static bool
it_spool_has(struct harness *h, const char *qid)
{
	char	*f = harness_spool_read(h, qid, NULL);

	free(f);
	return (f != NULL);
}

/* Poll until qid's queue file is gone. */
static void
it_wait_spool_gone(struct harness *h, const char *qid)
{
	long	deadline = it_now_ms() + IT_WAIT * 1000L;

	while (it_spool_has(h, qid)) {
		cr_assert(it_now_ms() < deadline, "%s: queue file still in "
		    "%s after %d s; log:\n%s", qid, h->spool_dir, IT_WAIT,
		    harness_log_tail(h, 20));
		it_sleep_ms(100);
	}
}

/* How many messages at sink idx carry Message-ID <msgid>. */
static int
it_sink_count(struct harness *h, int idx, const char *msgid)
{
	char	needle[256], *eml;
	int	i, n, found = 0;

	snprintf(needle, sizeof(needle), "Message-ID: <%s>", msgid);
	n = harness_mx_messages(h, idx);
	for (i = 1; i <= n; i++) {
		if ((eml = harness_mx_read(h, idx, i, "eml", NULL)) == NULL)
			continue;
		if (strstr(eml, needle) != NULL)
			found++;
		free(eml);
	}
	return (found);
}

static void
it_wait_sink_msgid(struct harness *h, int idx, const char *msgid)
{
	long	deadline = it_now_ms() + IT_WAIT * 1000L;

	while (it_sink_count(h, idx, msgid) == 0) {
		cr_assert(it_now_ms() < deadline, "sink %d: no <%s> after "
		    "%d s; log:\n%s", idx, msgid, IT_WAIT,
		    harness_log_tail(h, 30));
		it_sleep_ms(100);
	}
}

#define IT_WAIT_QUEUE(h, n)						\
	cr_assert(harness_wait_queue_count((h), (n), IT_WAIT),		\
	    "queue: got %d messages after %d s, want %d; log:\n%s",	\
	    harness_queue_count(h), IT_WAIT, (n),			\
	    harness_log_tail((h), 30))

#define IT_WAIT_LOG(h, re)						\
	cr_assert(harness_log_wait((h), (re), IT_WAIT),			\
	    "no log line matching /%s/ after %d s; log:\n%s", (re),	\
	    IT_WAIT, harness_log_tail((h), 30))

/*
 * posternctl.
 */

static const char *
it_posternctl_path(void)
{
	static char	path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/src/posternctl", harness_builddir());
	return (path);
}

/*
 * Run posternctl with the NULL-terminated arguments that follow out and
 * outlen (stdout and stderr both into out); returns its exit status, or
 * -1 when it did not exit normally.
 */
static int
it_posternctl(char *out, size_t outlen, ...)
{
	const char	*argv[32];
	va_list		 ap;
	size_t		 n = 0;
	int		 st;

	argv[n++] = it_posternctl_path();
	va_start(ap, outlen);
	while (n < nitems(argv) - 1 &&
	    (argv[n] = va_arg(ap, const char *)) != NULL)
		n++;
	va_end(ap);
	argv[n] = NULL;
	st = harness_run(argv, NULL, out, outlen, 60);
	if (st == -1 || !WIFEXITED(st))
		return (-1);
	return (WEXITSTATUS(st));
}

/*
 * Prometheus text checked by tests/support/promparse.py (prometheus_client's
 * parser plus its own rules): 0 when it passes, with its verdict in out.
 */
static int
it_promparse(const char *text, char *out, size_t outlen)
{
	char		 script[PATH_MAX];
	const char	*argv[] = { IT_PYTHON, script, NULL };
	int		 st;

	snprintf(script, sizeof(script), "%s/tests/support/promparse.py",
	    harness_srcdir());
	st = harness_run(argv, text, out, outlen, 60);
	return (st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

/* Whether the exposition has the sample line "name value". */
static bool
it_prom_has(const char *text, const char *line)
{
	size_t		 len = strlen(line);
	const char	*p = text;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[len] == '\n')
			return (true);
		p += len;
	}
	return (false);
}

/*
 * Raw control-socket clients, for what harness_control cannot send.
 */

static int
it_raw_connect(struct harness *h)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strlcpy(sun.sun_path, h->control_path, sizeof(sun.sun_path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(fd != -1, "socket: %s", strerror(errno));
	cr_assert(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0,
	    "connect %s: %s", h->control_path, strerror(errno));
	return (fd);
}

static void
it_raw_send(int fd, const void *buf, size_t len)
{
	const char	*p = buf;
	ssize_t		 n;

	while (len > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		/* The daemon may close early on a hostile line. */
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

static void
it_raw_str(int fd, const char *s)
{
	it_raw_send(fd, s, strlen(s));
}

/*
 * Read one line (without its LF) into buf within timeout_ms: 1 a line,
 * 0 EOF before a line, -1 timeout or error.
 */
static int
it_raw_line(int fd, char *buf, size_t buflen, int timeout_ms)
{
	long		deadline = it_now_ms() + timeout_ms;
	size_t		len = 0;
	struct pollfd	pfd;
	ssize_t		n;
	char		ch;

	for (;;) {
		long	left = deadline - it_now_ms();

		pfd.fd = fd;
		pfd.events = POLLIN;
		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
			return (-1);
		n = read(fd, &ch, 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == ECONNRESET)
			return (0);
		if (n < 0)
			return (-1);
		if (n == 0)
			return (0);
		if (ch == '\n') {
			buf[len] = '\0';
			return (1);
		}
		if (len + 1 < buflen)
			buf[len++] = ch;
	}
}

/* A raw reply line parsed; asserts one arrives. */
static json_t *
it_raw_reply(int fd, const char *what)
{
	char		 line[8192];
	json_t		*r;
	json_error_t	 jerr;

	cr_assert(it_raw_line(fd, line, sizeof(line), 30000) == 1,
	    "%s: no reply line", what);
	r = json_loads(line, 0, &jerr);
	cr_assert(json_is_object(r), "%s: reply is not a JSON object: %s",
	    what, line);
	return (r);
}

/*
 * Peers started by the test itself (the HTTP listener): they die with the
 * test process (PR_SET_PDEATHSIG) and are stopped by it_peer_stop.
 */
static pid_t
it_spawn(const char *const *argv, const char *logpath)
{
	pid_t	pid;
	int	fd;

	pid = fork();
	cr_assert(pid != -1, "fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if ((fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600))
		    != -1) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if ((fd = open("/dev/null", O_RDONLY)) != -1)
			dup2(fd, 0);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return (pid);
}

static void
it_peer_stop(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
}

/* Write a file of the test dir (mode), returning its path in path. */
static void
it_write_file(struct harness *h, const char *name, const char *text,
    mode_t mode, char *path, size_t pathlen)
{
	FILE	*fp;

	snprintf(path, pathlen, "%s/%s", h->dir, name);
	fp = fopen(path, "w");
	cr_assert(fp != NULL, "%s: %s", path, strerror(errno));
	fputs(text, fp);
	cr_assert(fclose(fp) == 0, "%s: %s", path, strerror(errno));
	cr_assert(chmod(path, mode) == 0, "chmod %s: %s", path,
	    strerror(errno));
}

/* Contents of dir/name, malloc'd, or NULL. */
static char *
it_read_file(struct harness *h, const char *name)
{
	char	 path[PATH_MAX], *buf;
	FILE	*fp;
	long	 len;

	snprintf(path, sizeof(path), "%s/%s", h->dir, name);
	if ((fp = fopen(path, "r")) == NULL)
		return (NULL);
	fseek(fp, 0, SEEK_END);
	len = ftell(fp);
	rewind(fp);
	buf = calloc(1, (size_t)(len > 0 ? len : 0) + 1);
	cr_assert(buf != NULL);
	if (len > 0 && fread(buf, 1, (size_t)len, fp) != (size_t)len) {
		free(buf);
		buf = NULL;
	}
	fclose(fp);
	return (buf);
}

static bool
it_file_exists(struct harness *h, const char *name)
{
	char	path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s", h->dir, name);
	return (access(path, F_OK) == 0);
}

static void
it_wait_file(struct harness *h, const char *name)
{
	long	deadline = it_now_ms() + IT_WAIT * 1000L;

	while (!it_file_exists(h, name)) {
		cr_assert(it_now_ms() < deadline, "no %s/%s after %d s; "
		    "log:\n%s", h->dir, name, IT_WAIT,
		    harness_log_tail(h, 30));
		it_sleep_ms(100);
	}
}

/* How many times the recording hook ran (hook.count), 0 if never. */
static int
it_hook_runs(struct harness *h)
{
	char	*s = it_read_file(h, "hook.count");
	int	 n = s != NULL ? atoi(s) : 0;

	free(s);
	return (n);
}

/*
 * A hook that records run N's stdin as hook.N.json and its environment as
 * hook.N.env, then does tail (shell statements; it ends with an exit).
 * Files appear by rename, so a test that sees one sees all of it.
 */
static void
it_hook_script(struct harness *h, const char *tail, char *path,
    size_t pathlen)
{
	char	text[2048];

	snprintf(text, sizeof(text),
	    "#!/bin/sh\n"
	    "d=%s\n"
	    "n=$(cat \"$d/hook.count\" 2>/dev/null || echo 0)\n"
	    "n=$((n + 1))\n"
	    "echo $n > \"$d/hook.count.tmp\"\n"
	    "mv \"$d/hook.count.tmp\" \"$d/hook.count\"\n"
	    "env > \"$d/hook.$n.env.tmp\"\n"
	    "mv \"$d/hook.$n.env.tmp\" \"$d/hook.$n.env\"\n"
	    "cat > \"$d/hook.$n.json.tmp\"\n"
	    "mv \"$d/hook.$n.json.tmp\" \"$d/hook.$n.json\"\n"
	    "%s\n", h->dir, tail);
	it_write_file(h, "hook.sh", text, 0700, path, pathlen);
}

/* The escalation block for command with timeout. */
static void
it_escalation_conf(char *buf, size_t len, const char *command, int timeout)
{
	snprintf(buf, len, "escalation = {\n  command = \"%s\";\n"
	    "  events = [ \"failed\", \"expired\" ];\n  timeout = %d;\n};",
	    command, timeout);
}

/* "YYYY-MM-DDTHH:MM:SSZ" as seconds since the epoch, or -1. */
static time_t
it_iso8601(const char *s)
{
	struct tm	 tm;
	const char	*end;

	memset(&tm, 0, sizeof(tm));
	end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (end == NULL || *end != '\0')
		return (-1);
	return (timegm(&tm));
}

/*
 * The known state shared by the control tests: ok.test's sink answers 451
 * at every final dot, snd.test's sink takes the bounces.  m[0] and m[1]
 * go to one recipient of ok.test each; m[2] to good@ok.test and
 * bad@ok.test, and bad is refused 550 at RCPT (failed, bounced), good
 * deferred.  Returns once all three are deferred after one attempt and
 * the bounce has been delivered; then m[1] is held.
 */
struct it_state {
	struct harness	*h;
	int		 ok, snd;
	char		 m[3][9];
	time_t		 t0;		/* wall clock before the daemon */
};

static void
it_known_state(struct it_state *s, const char *extra)
{
	const char	*okargs[] = { "--rule",
			    "rcpt=bad@ok.test:550 5.1.1 no such user",
			    "--rule", IT_DEFER_RULE, NULL };
	const char	*r0[] = { "bob@ok.test" }, *r1[] = { "carol@ok.test" },
			*r2[] = { "good@ok.test", "bad@ok.test" };
	struct smtpc	*c;
	json_t		*r;
	char		 req[128];
	int		 i;

	memset(s, 0, sizeof(*s));
	s->t0 = time(NULL);
	s->h = it_new();
	s->ok = it_mx(s->h, IT_MX_OK, okargs);
	s->snd = it_mx(s->h, IT_MX_SND, NULL);
	it_start(s->h, extra);
	c = harness_session_ehlo(s->h, 0);
	cr_assert(c != NULL, "session: %s", harness_err(s->h));
	it_submit(c, r0, 1, "m0@client.test", s->m[0]);
	it_submit(c, r1, 1, "m1@client.test", s->m[1]);
	it_submit(c, r2, 2, "m2@client.test", s->m[2]);
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);
	for (i = 0; i < 3; i++)
		it_wait_attempts(s->h, s->m[i], 1);
	/* The bounce for bad@ok.test: delivered, so the queue holds 3. */
	cr_assert(harness_mx_wait_messages(s->h, s->snd, 1, IT_WAIT),
	    "no DSN at snd.test; log:\n%s", harness_log_tail(s->h, 30));
	IT_WAIT_QUEUE(s->h, 3);
	snprintf(req, sizeof(req), "{\"cmd\":\"hold\",\"id\":\"%s\"}",
	    s->m[1]);
	r = it_ctl_ok(s->h, req);
	cr_assert_str_eq(it_str(r, "id"), s->m[1], "hold reply id: got %s, "
	    "want %s", it_dump(r), s->m[1]);
	json_decref(r);
}

/*
 * Control commands.
 */

Test(it_ops, stats_fields_in_known_state, .timeout = IT_TIMEOUT)
{
	static const char *const groups[][6] = {
		{ "queue", "total", "active", "deferred", "held",
		    "oldest_age_s" },
		{ "messages", "received", "delivered", "failed", "expired",
		    NULL },
		{ "connections_in", "current", "total", NULL },
		{ "pool", "size", "in_use", "idle", "waiting", NULL },
		{ "tls_out", "sessions", "verified", "plaintext", NULL },
		{ "dkim", "signed", "errors", NULL },
		{ "escalations", "sent", "failed", "pending", NULL },
	};
	static const struct {
		const char	*group, *key;
		long long	 want;
	} exact[] = {
		{ "queue", "total", 3 },
		{ "queue", "active", 0 },
		{ "queue", "deferred", 2 },
		{ "queue", "held", 1 },
		/* Three accepted, plus the bounce generated for bad@. */
		{ "messages", "received", 4 },
		/* The bounce. */
		{ "messages", "delivered", 1 },
		{ "messages", "failed", 1 },
		{ "messages", "expired", 0 },
		{ "connections_in", "current", 0 },
		{ "connections_in", "total", 1 },
		{ "pool", "size", 5 },
		{ "pool", "in_use", 0 },
		{ "pool", "waiting", 0 },
		{ "tls_out", "verified", 0 },
		{ "tls_out", "plaintext", 0 },
		{ "dkim", "signed", 0 },
		{ "dkim", "errors", 0 },
		{ "escalations", "sent", 0 },
		{ "escalations", "failed", 0 },
		{ "escalations", "pending", 0 },
	};
	struct it_state	 s;
	json_t		*r;
	long long	 v, elapsed;
	size_t		 i, k;

	it_known_state(&s, NULL);
	/* The session's end is counted once its QUIT is through. */
	it_wait_stat(s.h, "connections_in", "current", 0);
	r = it_ctl_ok(s.h, "{\"cmd\":\"stats\"}");
	elapsed = (long long)(time(NULL) - s.t0) + 1;
	for (i = 0; i < nitems(groups); i++) {
		cr_assert(json_is_object(json_object_get(r, groups[i][0])),
		    "stats: no object \"%s\" in %s", groups[i][0], it_dump(r));
		for (k = 1; k < nitems(groups[i]) && groups[i][k] != NULL;
		    k++) {
			v = it_int2(r, groups[i][0], groups[i][k]);
			cr_assert(v >= 0, "stats: %s.%s missing or not a "
			    "non-negative integer in %s", groups[i][0],
			    groups[i][k], it_dump(r));
		}
	}
	for (i = 0; i < nitems(exact); i++) {
		v = it_int2(r, exact[i].group, exact[i].key);
		cr_assert_eq(v, exact[i].want, "stats %s.%s: got %lld, want "
		    "%lld; stats %s", exact[i].group, exact[i].key, v,
		    exact[i].want, it_dump(r));
	}
	v = it_int2(r, NULL, "uptime_s");
	cr_assert(v >= 0 && v <= elapsed, "uptime_s: got %lld, want 0..%lld",
	    v, elapsed);
	v = it_int2(r, "queue", "oldest_age_s");
	cr_assert(v >= 0 && v <= elapsed, "queue.oldest_age_s: got %lld, "
	    "want 0..%lld", v, elapsed);
	/* Opportunistic TLS to sinks that offer STARTTLS: every session. */
	v = it_int2(r, "tls_out", "sessions");
	cr_assert(v >= 1, "tls_out.sessions: got %lld, want >= 1", v);
	v = it_int2(r, "pool", "idle");
	cr_assert(v <= 5, "pool.idle: got %lld, want <= pool.size 5", v);
	json_decref(r);
	harness_free(s.h);
}

Test(it_ops, queue_listing_fields, .timeout = IT_TIMEOUT)
{
	static const char *const keys[] = { "id", "age_s", "size", "sender",
		"recipients_pending", "attempts", "next_attempt_s",
		"last_error", "state" };
	struct it_state	 s;
	json_t		*r, *msgs, *m;
	long long	 elapsed, size;
	char		 re[256];
	const char	*k;
	json_t		*v;
	size_t		 i, j;
	bool		 seen[3] = { false, false, false };

	it_known_state(&s, NULL);
	r = it_ctl_ok(s.h, "{\"cmd\":\"queue\"}");
	elapsed = (long long)(time(NULL) - s.t0) + 1;
	msgs = json_object_get(r, "messages");
	cr_assert_eq(json_array_size(msgs), 3, "queue: got %zu messages, "
	    "want 3: %s", json_array_size(msgs), it_dump(r));
	cr_assert(json_object_get(r, "next_cursor") == NULL, "queue: "
	    "next_cursor with everything listed: %s", it_dump(r));
	json_array_foreach(msgs, i, m) {
		const char	*id = it_str(m, "id");
		int		 which = -1;

		for (j = 0; j < nitems(keys); j++)
			cr_assert(json_object_get(m, keys[j]) != NULL,
			    "queue entry without \"%s\": %s", keys[j],
			    it_dump(m));
		/* Nothing more than SPEC 5 lists. */
		json_object_foreach(m, k, v) {
			bool	known = false;

			for (j = 0; j < nitems(keys); j++)
				if (strcmp(k, keys[j]) == 0)
					known = true;
			cr_assert(known, "queue entry has unexpected key "
			    "\"%s\": %s", k, it_dump(m));
		}
		for (j = 0; j < 3; j++)
			if (strcmp(id, s.m[j]) == 0)
				which = (int)j;
		cr_assert(which >= 0, "queue lists unknown id %s", id);
		cr_assert(!seen[which], "queue lists %s twice", id);
		seen[which] = true;
		cr_assert(it_int2(m, NULL, "age_s") >= 0 &&
		    it_int2(m, NULL, "age_s") <= elapsed, "%s age_s: got "
		    "%lld, want 0..%lld", id, it_int2(m, NULL, "age_s"),
		    elapsed);
		/* The size the daemon logged when it accepted the message. */
		size = it_int2(m, NULL, "size");
		snprintf(re, sizeof(re), "%s: from=<alice@snd\\.test>, "
		    "size=%lld,", id, size);
		cr_assert(size > 200 && harness_log_grep(s.h, re), "%s size: "
		    "got %lld, not the size= of its log line; log:\n%s", id,
		    size, harness_log_tail(s.h, 40));
		cr_assert_str_eq(it_str(m, "sender"), IT_SENDER, "%s sender: "
		    "got %s, want " IT_SENDER, id, it_str(m, "sender"));
		cr_assert_eq(it_int2(m, NULL, "recipients_pending"), 1, "%s "
		    "recipients_pending: got %lld, want 1", id,
		    it_int2(m, NULL, "recipients_pending"));
		cr_assert_eq(it_int2(m, NULL, "attempts"), 1, "%s attempts: "
		    "got %lld, want 1", id, it_int2(m, NULL, "attempts"));
		cr_assert(strstr(it_str(m, "last_error"), "451 4.3.0 try "
		    "later") != NULL, "%s last_error: got \"%s\", want the "
		    "sink's 451", id, it_str(m, "last_error"));
		if (which == 1) {
			cr_assert_str_eq(it_str(m, "state"), "held", "%s "
			    "state: got %s, want held", id,
			    it_str(m, "state"));
			cr_assert_eq(it_int2(m, NULL, "next_attempt_s"), 0,
			    "held %s next_attempt_s: got %lld, want 0", id,
			    it_int2(m, NULL, "next_attempt_s"));
		} else {
			cr_assert_str_eq(it_str(m, "state"), "deferred",
			    "%s state: got %s, want deferred", id,
			    it_str(m, "state"));
			/* retry.initial = 600 s, +-10% jitter. */
			cr_assert(it_int2(m, NULL, "next_attempt_s") >=
			    540 - elapsed && it_int2(m, NULL,
			    "next_attempt_s") <= 660, "%s next_attempt_s: got "
			    "%lld, want 600 +-10%%", id,
			    it_int2(m, NULL, "next_attempt_s"));
		}
	}
	json_decref(r);
	/* limit bounds the page and offers the cursor. */
	r = it_ctl_ok(s.h, "{\"cmd\":\"queue\",\"limit\":2}");
	cr_assert_eq(json_array_size(json_object_get(r, "messages")), 2,
	    "queue limit 2: %s", it_dump(r));
	cr_assert(json_is_string(json_object_get(r, "next_cursor")),
	    "queue limit 2: no next_cursor: %s", it_dump(r));
	json_decref(r);
	harness_free(s.h);
}

Test(it_ops, show_envelope_and_recipients, .timeout = IT_TIMEOUT)
{
	struct it_state	 s;
	json_t		*r, *rcpts, *x, *hist, *cl;
	const char	*addr, *remote;
	time_t		 q;
	size_t		 i;
	int		 seen_good = 0, seen_bad = 0;

	it_known_state(&s, NULL);
	r = it_ctl(s.h, "{\"cmd\":\"show\",\"id\":\"%s\"}", s.m[2]);
	cr_assert(json_is_true(json_object_get(r, "ok")), "show: %s",
	    it_dump(r));
	cr_assert_str_eq(it_str(r, "id"), s.m[2], "show id: got %s, want %s",
	    it_str(r, "id"), s.m[2]);
	cr_assert_str_eq(it_str(r, "sender"), IT_SENDER, "show sender: %s",
	    it_dump(r));
	cr_assert_str_eq(it_str(r, "state"), "deferred", "show state: %s",
	    it_dump(r));
	cr_assert_eq(it_int2(r, NULL, "attempts"), 1, "show attempts: %s",
	    it_dump(r));
	cr_assert_eq(it_int2(r, NULL, "recipients_pending"), 1,
	    "show recipients_pending: %s", it_dump(r));
	q = it_iso8601(it_str(r, "queued_at"));
	cr_assert(q >= s.t0 - 1 && q <= time(NULL) + 1, "show queued_at: got "
	    "\"%s\", want an ISO 8601 time during the test",
	    it_str(r, "queued_at"));
	cl = json_object_get(r, "client");
	cr_assert_str_eq(it_str(cl, "address"), "127.0.0.1", "show client: "
	    "%s", it_dump(r));
	cr_assert_str_eq(it_str(cl, "helo"), "client.test", "show client "
	    "helo: %s", it_dump(r));
	rcpts = json_object_get(r, "recipients");
	cr_assert_eq(json_array_size(rcpts), 2, "show recipients: %s",
	    it_dump(r));
	json_array_foreach(rcpts, i, x) {
		addr = it_str(x, "address");
		if (strcmp(addr, "good@ok.test") == 0) {
			seen_good++;
			cr_assert_str_eq(it_str(x, "status"), "pending",
			    "good@ok.test: %s", it_dump(x));
		} else if (strcmp(addr, "bad@ok.test") == 0) {
			seen_bad++;
			remote = it_str(x, "remote");
			cr_assert_str_eq(it_str(x, "status"), "failed",
			    "bad@ok.test: %s", it_dump(x));
			cr_assert_str_eq(it_str(x, "dsn"), "5.1.1",
			    "bad@ok.test dsn: %s", it_dump(x));
			cr_assert(strstr(it_str(x, "reply"), "550 5.1.1 no "
			    "such user") != NULL, "bad@ok.test reply: %s",
			    it_dump(x));
			cr_assert(strncmp(remote, "mx.ok.test[" IT_MX_OK "]",
			    strlen("mx.ok.test[" IT_MX_OK "]")) == 0,
			    "bad@ok.test remote: %s", it_dump(x));
		} else
			cr_assert_fail("show: unknown recipient %s", addr);
	}
	cr_assert(seen_good == 1 && seen_bad == 1, "show recipients: %s",
	    it_dump(rcpts));
	/* The attempt history: the one attempt and its error. */
	hist = json_object_get(r, "history");
	cr_assert_eq(json_array_size(hist), 1, "show history: got %s, want "
	    "one attempt", it_dump(hist));
	x = json_array_get(hist, 0);
	cr_assert_eq(it_int2(x, NULL, "attempt"), 1, "history[0]: %s",
	    it_dump(x));
	cr_assert(strstr(it_str(x, "error"), "451 4.3.0") != NULL,
	    "history[0] error: %s", it_dump(x));
	cr_assert(it_iso8601(it_str(x, "next_attempt")) > q, "history[0] "
	    "next_attempt: %s", it_dump(x));
	json_decref(r);
	/* The held one says so. */
	r = it_ctl(s.h, "{\"cmd\":\"show\",\"id\":\"%s\"}", s.m[1]);
	cr_assert_str_eq(it_str(r, "state"), "held", "show of the held "
	    "message: %s", it_dump(r));
	json_decref(r);
	it_ctl_err(s.h, "{\"cmd\":\"show\",\"id\":\"00000001\"}",
	    "no such message");
	it_ctl_err(s.h, "{\"cmd\":\"show\"}", "queue id");
	harness_free(s.h);
}

Test(it_ops, queue_paging_250_messages, .timeout = IT_TIMEOUT)
{
	const char	*rcpts[1] = { "bob@ok.test" };
	char		(*ids)[9], msgid[64], cursor[16] = "", out[65536];
	char		 last[16] = "";
	struct smtpc	*c;
	struct harness	*h;
	json_t		*r, *msgs, *m;
	size_t		 i, total = 0, pages = 0;
	int		 k, n = 250, st;
	bool		*seen;

	h = it_new();
	/* ok.test answers 451 to everything: all stay deferred. */
	(void)it_mx_rule(h, IT_MX_OK, IT_DEFER_RULE);
	it_start(h, NULL);
	ids = calloc((size_t)n, sizeof(*ids));
	seen = calloc((size_t)n, sizeof(*seen));
	cr_assert(ids != NULL && seen != NULL);
	c = harness_session_ehlo(h, 0);
	cr_assert(c != NULL, "session: %s", harness_err(h));
	for (k = 0; k < n; k++) {
		snprintf(msgid, sizeof(msgid), "page-%d@client.test", k);
		it_submit(c, rcpts, 1, msgid, ids[k]);
	}
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);
	IT_WAIT_QUEUE(h, n);

	/* Pages of 100: 100, 100, 50; next_cursor on the full ones only. */
	for (;;) {
		if (cursor[0] == '\0')
			r = it_ctl(h, "{\"cmd\":\"queue\",\"limit\":100}");
		else
			r = it_ctl(h, "{\"cmd\":\"queue\",\"limit\":100,"
			    "\"cursor\":\"%s\"}", cursor);
		cr_assert(json_is_true(json_object_get(r, "ok")), "queue "
		    "page %zu: %s", pages, it_dump(r));
		msgs = json_object_get(r, "messages");
		cr_assert_eq(json_array_size(msgs), pages < 2 ? 100 : 50,
		    "page %zu: got %zu messages, want %d", pages,
		    json_array_size(msgs), pages < 2 ? 100 : 50);
		json_array_foreach(msgs, i, m) {
			const char	*id = it_str(m, "id");
			bool		 found = false;

			/* Queue-id order, across pages too. */
			cr_assert(strcmp(last, id) < 0, "page %zu: %s after "
			    "%s, want ascending ids", pages, id, last);
			strlcpy(last, id, sizeof(last));
			for (k = 0; k < n; k++) {
				if (strcmp(ids[k], id) == 0) {
					cr_assert(!seen[k], "%s listed twice",
					    id);
					seen[k] = found = true;
					break;
				}
			}
			cr_assert(found, "page %zu lists unknown id %s", pages,
			    id);
			total++;
		}
		pages++;
		if (json_object_get(r, "next_cursor") == NULL) {
			json_decref(r);
			break;
		}
		cr_assert(pages < 3, "page %zu has a next_cursor: %s", pages,
		    it_dump(r));
		strlcpy(cursor, it_str(r, "next_cursor"), sizeof(cursor));
		/* The cursor is where the page ended. */
		cr_assert_str_eq(cursor, last, "next_cursor: got %s, want the "
		    "page's last id %s", cursor, last);
		json_decref(r);
	}
	cr_assert_eq(pages, 3, "pages: got %zu, want 3", pages);
	cr_assert_eq(total, (size_t)n, "listed: got %zu, want %d", total, n);

	/* Bad paging arguments are errors, not crashes. */
	it_ctl_err(h, "{\"cmd\":\"queue\",\"limit\":0}", "limit");
	it_ctl_err(h, "{\"cmd\":\"queue\",\"limit\":-5}", "limit");
	it_ctl_err(h, "{\"cmd\":\"queue\",\"limit\":\"10\"}", "limit");
	it_ctl_err(h, "{\"cmd\":\"queue\",\"limit\":10000000000}", "limit");
	it_ctl_err(h, "{\"cmd\":\"queue\",\"cursor\":\"../x\"}", "cursor");
	it_ctl_err(h, "{\"cmd\":\"queue\",\"cursor\":7}", "cursor");

	/* posternctl pages the same way. */
	st = it_posternctl(out, sizeof(out), "-s", h->control_path, "queue",
	    "--limit", "100", NULL);
	cr_assert_eq(st, 0, "posternctl queue --limit 100: exit %d:\n%s", st,
	    out);
	cr_assert(strstr(out, "-- 100 messages (more: use --cursor") != NULL,
	    "posternctl queue --limit 100: no \"more\" footer:\n%.2000s", out);
	st = it_posternctl(out, sizeof(out), "-s", h->control_path, "queue",
	    "--limit", "100", "--cursor", ids[0], NULL);
	cr_assert_eq(st, 0, "posternctl queue --cursor: exit %d:\n%.2000s",
	    st, out);
	cr_assert(strstr(out, ids[0]) == NULL, "posternctl queue --cursor "
	    "%s lists the cursor itself:\n%.2000s", ids[0], out);
	free(ids);
	free(seen);
	harness_free(h);
}

Test(it_ops, flush_retries_now, .timeout = IT_TIMEOUT)
{
	struct harness	*h;
	json_t		*r, *m;
	char		 a[9], b[9];
	int		 ok2;

	h = it_new();
	(void)it_mx_rule(h, IT_MX_OK, IT_DEFER_RULE);
	it_start(h, NULL);
	it_submit_one(h, "bob@ok.test", "flush-a@client.test", a);
	it_submit_one(h, "bob@ok.test", "flush-b@client.test", b);
	it_wait_attempts(h, a, 1);
	it_wait_attempts(h, b, 1);
	/* The destination recovers: a new sink there that accepts. */
	cr_assert(harness_mx_stop(h, 0) == 0, "stop sink: %s",
	    harness_err(h));
	ok2 = it_mx(h, IT_MX_OK, NULL);

	it_ctl_err(h, "{\"cmd\":\"flush\",\"id\":\"../x\"}", "queue id");
	it_ctl_err(h, "{\"cmd\":\"flush\",\"id\":\"00000001\"}",
	    "no such message");
	r = it_ctl(h, "{\"cmd\":\"flush\",\"id\":\"%s\"}", a);
	cr_assert(json_is_true(json_object_get(r, "ok")) &&
	    it_int2(r, NULL, "flushed") == 1, "flush %s: got %s, want ok and "
	    "flushed 1", a, it_dump(r));
	json_decref(r);
	it_wait_sink_msgid(h, ok2, "flush-a@client.test");
	IT_WAIT_QUEUE(h, 1);
	/* Only a was retried: b still waits for its retry time. */
	it_sleep_ms(IT_QUIET_MS);
	cr_assert_eq(it_sink_count(h, ok2, "flush-b@client.test"), 0,
	    "flush of %s delivered %s too", a, b);
	m = it_queue_entry(h, b);
	cr_assert(m != NULL && it_int2(m, NULL, "attempts") == 1 &&
	    it_int2(m, NULL, "next_attempt_s") > 60, "%s after flush of %s: "
	    "got %s, want one attempt, next in minutes", b, a,
	    m != NULL ? it_dump(m) : "gone");
	json_decref(m);

	r = it_ctl_ok(h, "{\"cmd\":\"flush\"}");
	cr_assert_eq(it_int2(r, NULL, "flushed"), 1, "flush all: got %s, "
	    "want flushed 1", it_dump(r));
	json_decref(r);
	it_wait_sink_msgid(h, ok2, "flush-b@client.test");
	IT_WAIT_QUEUE(h, 0);
	cr_assert_eq(harness_mx_messages(h, ok2), 2, "sink: got %d messages, "
	    "want 2", harness_mx_messages(h, ok2));
	it_wait_spool_gone(h, a);
	it_wait_spool_gone(h, b);
	harness_free(h);
}

Test(it_ops, hold_and_release, .timeout = IT_TIMEOUT)
{
	struct harness	*h;
	json_t		*r, *m;
	char		 a[9], req[128];
	int		 ok2;

	h = it_new();
	(void)it_mx_rule(h, IT_MX_OK, IT_DEFER_RULE);
	it_start(h, NULL);
	it_submit_one(h, "bob@ok.test", "hold@client.test", a);
	it_wait_attempts(h, a, 1);

	snprintf(req, sizeof(req), "{\"cmd\":\"release\",\"id\":\"%s\"}", a);
	it_ctl_err(h, req, "not held");
	snprintf(req, sizeof(req), "{\"cmd\":\"hold\",\"id\":\"%s\"}", a);
	json_decref(it_ctl_ok(h, req));
	it_ctl_err(h, req, "already held");
	it_ctl_err(h, "{\"cmd\":\"hold\",\"id\":\"00000001\"}",
	    "no such message");

	/* The destination accepts now, but a held message stays put. */
	cr_assert(harness_mx_stop(h, 0) == 0, "stop sink: %s",
	    harness_err(h));
	ok2 = it_mx(h, IT_MX_OK, NULL);
	r = it_ctl_ok(h, "{\"cmd\":\"flush\"}");
	cr_assert_eq(it_int2(r, NULL, "flushed"), 0, "flush all with the "
	    "only message held: got %s, want flushed 0", it_dump(r));
	json_decref(r);
	r = it_ctl(h, "{\"cmd\":\"flush\",\"id\":\"%s\"}", a);
	cr_assert_eq(it_int2(r, NULL, "flushed"), 0, "flush of the held "
	    "message: got %s, want flushed 0", it_dump(r));
	json_decref(r);
	it_sleep_ms(IT_QUIET_MS);
	cr_assert_eq(harness_mx_messages(h, ok2), 0, "a held message was "
	    "delivered");
	m = it_queue_entry(h, a);
	cr_assert(m != NULL, "the held message left the queue");
	cr_assert_str_eq(it_str(m, "state"), "held", "state: got %s",
	    it_dump(m));
	json_decref(m);

	/* Held is durable: it survives a restart. */
	cr_assert(harness_stop(h) == 0, "stop: %s", harness_err(h));
	cr_assert(harness_restart(h) == 0, "restart: %s", harness_err(h));
	m = it_queue_entry(h, a);
	cr_assert(m != NULL, "the held message is gone after a restart");
	cr_assert_str_eq(it_str(m, "state"), "held", "state after restart: "
	    "got %s, want held", it_dump(m));
	json_decref(m);
	it_sleep_ms(IT_QUIET_MS);
	cr_assert_eq(harness_mx_messages(h, ok2), 0, "a held message was "
	    "delivered after a restart");

	snprintf(req, sizeof(req), "{\"cmd\":\"release\",\"id\":\"%s\"}", a);
	r = it_ctl_ok(h, req);
	cr_assert_str_eq(it_str(r, "id"), a, "release reply: %s", it_dump(r));
	json_decref(r);
	it_wait_sink_msgid(h, ok2, "hold@client.test");
	IT_WAIT_QUEUE(h, 0);
	it_ctl_err(h, req, "no such message");
	IT_WAIT_LOG(h, "held by operator");
	IT_WAIT_LOG(h, "released by operator");
	harness_free(h);
}

Test(it_ops, delete_removes_without_bounce, .timeout = IT_TIMEOUT)
{
	struct harness	*h;
	json_t		*r;
	char		 a[9], b[9], req[128];
	int		 snd;

	h = it_new();
	(void)it_mx_rule(h, IT_MX_OK, IT_DEFER_RULE);
	snd = it_mx(h, IT_MX_SND, NULL);
	it_start(h, NULL);
	it_submit_one(h, "bob@ok.test", "delete@client.test", a);
	it_submit_one(h, "carol@ok.test", "keep@client.test", b);
	it_wait_attempts(h, a, 1);
	it_wait_attempts(h, b, 1);
	cr_assert(it_spool_has(h, a), "no queue file of %s before delete", a);

	snprintf(req, sizeof(req), "{\"cmd\":\"delete\",\"id\":\"%s\"}", a);
	r = it_ctl_ok(h, req);
	cr_assert_str_eq(it_str(r, "id"), a, "delete reply: %s", it_dump(r));
	json_decref(r);
	/* The reply comes once the removal is durable. */
	cr_assert(!harness_queue_has(h, a), "%s still listed after delete",
	    a);
	it_wait_spool_gone(h, a);
	r = it_ctl(h, "{\"cmd\":\"show\",\"id\":\"%s\"}", a);
	cr_assert(json_is_false(json_object_get(r, "ok")), "show after "
	    "delete: %s", it_dump(r));
	json_decref(r);
	it_ctl_err(h, req, "no such message");
	/* The other message is untouched. */
	cr_assert(harness_queue_has(h, b) && it_spool_has(h, b),
	    "delete of %s touched %s", a, b);
	/* No bounce: nothing reaches the sender's domain. */
	json_decref(it_ctl_ok(h, "{\"cmd\":\"flush\"}"));
	it_wait_attempts(h, b, 2);
	it_sleep_ms(IT_QUIET_MS);
	cr_assert_eq(harness_mx_messages(h, snd), 0, "delete sent a bounce "
	    "to snd.test");
	IT_WAIT_LOG(h, "removed by operator");
	/* And a restart does not bring it back. */
	cr_assert(harness_stop(h) == 0, "stop: %s", harness_err(h));
	cr_assert(harness_restart(h) == 0, "restart: %s", harness_err(h));
	cr_assert(!harness_queue_has(h, a), "%s is back after a restart", a);
	cr_assert(harness_queue_has(h, b), "%s is lost after a restart", b);
	harness_free(h);
}

/* Control "metrics": the text parses, and its queue gauges are right. */
Test(it_ops, metrics_command_parses, .timeout = IT_TIMEOUT)
{
	struct it_state	 s;
	json_t		*r;
	const char	*text;
	char		 out[262144];
	int		 rc;

	it_known_state(&s, NULL);
	r = it_ctl_ok(s.h, "{\"cmd\":\"metrics\"}");
	text = it_str(r, "text");
	rc = it_promparse(text, out, sizeof(out));
	cr_assert_eq(rc, 0, "promparse: exit %d: %.2000s\ntext:\n%.4000s", rc,
	    out, text);
	cr_assert(strstr(out, "\"name\": \"postern_queue_messages\"") != NULL,
	    "promparse found no postern_queue_messages:\n%.2000s", out);
	cr_assert(it_prom_has(text,
	    "postern_queue_messages{state=\"deferred\"} 2"),
	    "deferred gauge:\n%s", text);
	cr_assert(it_prom_has(text, "postern_queue_messages{state=\"held\"} 1"),
	    "held gauge:\n%s", text);
	cr_assert(it_prom_has(text, "postern_messages_failed_total 1"),
	    "failed counter:\n%s", text);
	cr_assert(it_prom_has(text,
	    "postern_destination_failures_total{domain=\"ok.test\"} 1"),
	    "ok.test failures:\n%s", text);
	cr_assert(it_prom_has(text,
	    "postern_destination_deferrals_total{domain=\"ok.test\"} 3"),
	    "ok.test deferrals (3 recipients deferred once):\n%s", text);
	json_decref(r);
	harness_free(s.h);
}

/*
 * reload, as SIGHUP: a metrics.listen added to the file comes up, a broken
 * file is refused and the daemon keeps its configuration and serves on.
 */
Test(it_ops, reload_like_sighup, .timeout = IT_TIMEOUT)
{
	struct harness	*h;
	char		 extra[256], url[128], out[262144];
	const char	*curl[] = { IT_CURL, "-sS", "--max-time", "10", url,
			    NULL };
	int		 st;

	h = it_new();
	(void)it_mx(h, IT_MX_OK, NULL);
	it_start(h, NULL);
	snprintf(url, sizeof(url), "http://%s:%d/metrics", IT_METRICS_ADDR,
	    harness_mx_port(h));
	st = harness_run(curl, NULL, out, sizeof(out), 30);
	cr_assert(!WIFEXITED(st) || WEXITSTATUS(st) != 0, "metrics answer "
	    "before they are configured:\n%.500s", out);

	snprintf(extra, sizeof(extra), "metrics = { listen = \"%s:%d\"; };",
	    IT_METRICS_ADDR, harness_mx_port(h));
	harness_append_conf(h, extra);
	cr_assert(harness_write_conf(h) == 0, "conf: %s", harness_err(h));
	json_decref(it_ctl_ok(h, "{\"cmd\":\"reload\"}"));
	IT_WAIT_LOG(h, "configuration reloaded");
	IT_WAIT_LOG(h, "metrics on http://");
	st = harness_run(curl, NULL, out, sizeof(out), 30);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "curl %s after "
	    "reload: status %d:\n%.500s", url, st, out);
	cr_assert(it_prom_has(out, "postern_queue_messages{state=\"held\"} 0"),
	    "no queue gauge at %s:\n%.2000s", url, out);

	/* A broken file: refused, the old configuration and endpoint stay. */
	harness_append_conf(h, "no_such_key = 1;");
	cr_assert(harness_write_conf(h) == 0, "conf: %s", harness_err(h));
	json_decref(it_ctl_ok(h, "{\"cmd\":\"reload\"}"));
	IT_WAIT_LOG(h, "reload failed: keeping the current configuration");
	st = harness_run(curl, NULL, out, sizeof(out), 30);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "curl after a "
	    "failed reload: status %d:\n%.500s", st, out);
	cr_assert(harness_still_serves(h, 0), "SMTP after a failed reload");

	/* SIGHUP does the same: the same log lines, counted twice now. */
	free(h->extra);
	h->extra = NULL;
	snprintf(extra, sizeof(extra), "metrics = { listen = \"%s:%d\"; };",
	    IT_METRICS_ADDR, harness_mx_port(h));
	harness_append_conf(h, extra);
	cr_assert(harness_write_conf(h) == 0, "conf: %s", harness_err(h));
	cr_assert(harness_signal(h, SIGHUP) == 0, "SIGHUP: %s",
	    harness_err(h));
	{
		long	deadline = it_now_ms() + IT_WAIT * 1000L;

		while (harness_log_count(h, "configuration reloaded") < 2) {
			cr_assert(it_now_ms() < deadline, "SIGHUP: no second "
			    "\"configuration reloaded\"; log:\n%s",
			    harness_log_tail(h, 20));
			it_sleep_ms(100);
		}
	}
	cr_assert_eq(harness_log_count(h, "reloading configuration"), 3,
	    "reloads logged: got %d, want 3 (2 control, 1 SIGHUP)",
	    harness_log_count(h, "reloading configuration"));
	harness_free(h);
}

/*
 * Hostile control clients: none stops the daemon or the other clients.
 */
Test(it_ops, control_rejects_bad_requests, .timeout = IT_TIMEOUT)
{
	static const char *const bad_json[] = {
		"this is not json",
		"{\"cmd\":\"stats\"",
		"{\"cmd\":\"st\\u0000ats\"}",
		"\xff\xfe{}",
	};
	static const char *const not_request[] = {
		"[1,2,3]",
		"\"stats\"",
		"{}",
		"{\"cmd\":5}",
		"{\"cmd\":null}",
	};
	/* Ids that must never reach the spool as a path. */
	static const char *const bad_ids[] = {
		"\"../x\"", "\"../../../../etc/passwd\"", "\"/etc/passwd\"",
		"\"0000000g\"", "\"abcdef12\"", "\"0000000A/\"",
		"\"123456789\"", "\"1234567\"", "\"\"", "\"00000000\"",
		"\"0000000A\\u0000x\"", "12345678", "null", "[\"0000000A\"]",
		"{\"id\":\"0000000A\"}",
	};
	static const char *const id_cmds[] = { "show", "hold", "release",
		"delete", "flush" };
	struct harness	*h;
	json_t		*r;
	char		 req[256], line[8192];
	size_t		 i, j;
	int		 fd;

	h = harness_new();
	cr_assert(h != NULL && h->err[0] == '\0', "harness_new");
	cr_assert(harness_listen(h, NULL, "none", "none") == 0, "listen: %s",
	    harness_err(h));
	HARNESS_START(h);

	/* One connection: each bad line gets its error, the next works. */
	fd = it_raw_connect(h);
	for (i = 0; i < nitems(bad_json); i++) {
		it_raw_send(fd, bad_json[i], strlen(bad_json[i]));
		it_raw_send(fd, "\n", 1);
		r = it_raw_reply(fd, bad_json[i]);
		cr_assert(json_is_false(json_object_get(r, "ok")) &&
		    strstr(it_str(r, "error"), "not valid JSON") != NULL,
		    "line %zu: got %s, want the not-JSON error", i,
		    it_dump(r));
		json_decref(r);
	}
	for (i = 0; i < nitems(not_request); i++) {
		it_raw_send(fd, not_request[i], strlen(not_request[i]));
		it_raw_send(fd, "\n", 1);
		r = it_raw_reply(fd, not_request[i]);
		cr_assert(json_is_false(json_object_get(r, "ok")) &&
		    json_is_string(json_object_get(r, "error")),
		    "%s: got %s, want an error", not_request[i], it_dump(r));
		json_decref(r);
	}
	it_raw_str(fd, "{\"cmd\":\"stats\",\"cmd\":\"queue\"}\n");
	r = it_raw_reply(fd, "duplicate keys");
	cr_assert(json_is_false(json_object_get(r, "ok")), "duplicate cmd: "
	    "got %s, want an error", it_dump(r));
	json_decref(r);
	it_raw_str(fd, "{\"cmd\":\"format-disk\"}\n");
	r = it_raw_reply(fd, "unknown command");
	cr_assert(json_is_false(json_object_get(r, "ok")) &&
	    strstr(it_str(r, "error"), "unknown command") != NULL,
	    "unknown cmd: got %s", it_dump(r));
	json_decref(r);
	/* Two requests in one write: two replies, in order. */
	it_raw_str(fd, "{\"cmd\":\"stats\"}\n{\"cmd\":\"queue\"}\n");
	r = it_raw_reply(fd, "pipelined stats");
	cr_assert(json_is_object(json_object_get(r, "queue")), "first of two: "
	    "got %s, want stats", it_dump(r));
	json_decref(r);
	r = it_raw_reply(fd, "pipelined queue");
	cr_assert(json_is_array(json_object_get(r, "messages")), "second of "
	    "two: got %s, want queue", it_dump(r));
	json_decref(r);
	close(fd);

	for (i = 0; i < nitems(id_cmds); i++) {
		for (j = 0; j < nitems(bad_ids); j++) {
			snprintf(req, sizeof(req), "{\"cmd\":\"%s\",\"id\":%s}",
			    id_cmds[i], bad_ids[j]);
			r = it_ctl(h, "%s", req);
			cr_assert(json_is_false(json_object_get(r, "ok")) &&
			    json_is_string(json_object_get(r, "error")),
			    "%s: got %s, want an error", req, it_dump(r));
			json_decref(r);
		}
	}
	/* Nothing was created next to the spool by a ../ id. */
	snprintf(line, sizeof(line), "%s/x", h->dir);
	cr_assert(access(line, F_OK) == -1, "%s exists", line);
	cr_assert(harness_still_serves(h, 0), "SMTP after bad control ids");
	harness_free(h);
}

Test(it_ops, control_long_line_and_silent_client, .timeout = IT_TIMEOUT)
{
	struct harness	*h;
	json_t		*r;
	char		*big, line[8192];
	size_t		 biglen = 70 * 1024;
	long		 t0, waited;
	int		 fd, silent, partial, rc;

	h = harness_new();
	cr_assert(h != NULL && h->err[0] == '\0', "harness_new");
	cr_assert(harness_listen(h, NULL, "none", "none") == 0, "listen: %s",
	    harness_err(h));
	HARNESS_START(h);

	/* A silent client and one stuck mid-line connect first. */
	silent = it_raw_connect(h);
	partial = it_raw_connect(h);
	it_raw_str(partial, "{\"cmd\":\"st");
	t0 = it_now_ms();

	/* A line over 64 KiB without its newline: an error, then closed. */
	big = malloc(biglen + 1);
	cr_assert(big != NULL);
	memset(big, 'x', biglen);
	big[biglen] = '\0';
	fd = it_raw_connect(h);
	it_raw_send(fd, big, biglen);
	rc = it_raw_line(fd, line, sizeof(line), 30000);
	cr_assert_eq(rc, 1, "over-long line: no reply (rc %d)", rc);
	cr_assert(strstr(line, "\"ok\":false") != NULL &&
	    strstr(line, "too long") != NULL, "over-long line: got %s", line);
	cr_assert_eq(it_raw_line(fd, line, sizeof(line), 30000), 0,
	    "over-long line: the connection stays open");
	close(fd);

	/* The same with its newline, as one JSON string that is too long. */
	fd = it_raw_connect(h);
	memcpy(big, "{\"cmd\":\"", 8);
	memcpy(big + biglen - 3, "\"}\n", 3);
	it_raw_send(fd, big, biglen);
	rc = it_raw_line(fd, line, sizeof(line), 30000);
	cr_assert_eq(rc, 1, "over-long request: no reply (rc %d)", rc);
	cr_assert(strstr(line, "\"ok\":false") != NULL, "over-long request: "
	    "got %s", line);
	close(fd);
	free(big);

	/* Meanwhile other clients are served at once. */
	r = it_ctl_ok(h, "{\"cmd\":\"stats\"}");
	json_decref(r);
	cr_assert(harness_still_serves(h, 0), "SMTP with silent control "
	    "clients");

	/* The partial line still completes into a reply. */
	it_raw_str(partial, "ats\"}\n");
	r = it_raw_reply(partial, "completed partial line");
	cr_assert(json_is_true(json_object_get(r, "ok")), "partial line "
	    "completed: got %s", it_dump(r));
	json_decref(r);
	close(partial);

	/* The silent one is dropped after the idle timeout (60 s). */
	rc = it_raw_line(silent, line, sizeof(line), 90000);
	waited = (it_now_ms() - t0) / 1000;
	cr_assert_eq(rc, 0, "silent client: got %d, want EOF within 90 s",
	    rc);
	cr_assert(waited >= 55, "silent client dropped after %ld s, want "
	    "about 60", waited);
	close(silent);
	json_decref(it_ctl_ok(h, "{\"cmd\":\"stats\"}"));
	cr_assert(harness_is_running(h), "daemon exited");
	harness_free(h);
}

/*
 * posternctl: tables by default, raw JSON with --json, exit status 0 ok,
 * 1 daemon error, 2 cannot reach (naming the socket).
 */
Test(it_ops, posternctl_output_and_exit_codes, .timeout = IT_TIMEOUT)
{
	struct it_state	 s;
	json_t		*r;
	json_error_t	 jerr;
	char		 out[262144], missing[PATH_MAX], line[512];
	int		 st;
	const char	*sock;

	it_known_state(&s, NULL);
	sock = s.h->control_path;

	/* queue: a mailq-like table. */
	st = it_posternctl(out, sizeof(out), "-s", sock, "queue", NULL);
	cr_assert_eq(st, 0, "queue: exit %d:\n%s", st, out);
	cr_assert(strncmp(out, "Queue ID", 8) == 0 && strstr(out, "Sender") &&
	    strstr(out, "Last error"), "queue: no header:\n%s", out);
	snprintf(line, sizeof(line), "%s ", s.m[1]);
	cr_assert(strstr(out, line) != NULL, "queue: no row for %s:\n%s",
	    s.m[1], out);
	cr_assert(strstr(out, " held ") != NULL && strstr(out, " deferred ") !=
	    NULL, "queue: states missing:\n%s", out);
	cr_assert(strstr(out, IT_SENDER) && strstr(out, "451 4.3.0 try later"),
	    "queue: sender or last error missing:\n%s", out);
	cr_assert(strstr(out, "-- 3 messages\n") != NULL, "queue: footer:\n%s",
	    out);

	/* --json: the raw reply, one JSON line. */
	st = it_posternctl(out, sizeof(out), "-s", sock, "--json", "queue",
	    NULL);
	cr_assert_eq(st, 0, "--json queue: exit %d:\n%s", st, out);
	r = json_loads(out, 0, &jerr);
	cr_assert(r != NULL, "--json queue: not JSON (%s):\n%s", jerr.text,
	    out);
	cr_assert(json_is_true(json_object_get(r, "ok")) &&
	    json_array_size(json_object_get(r, "messages")) == 3,
	    "--json queue: %s", it_dump(r));
	json_decref(r);

	/* stats: grouped, with the failure counted. */
	st = it_posternctl(out, sizeof(out), "-s", sock, "stats", NULL);
	cr_assert_eq(st, 0, "stats: exit %d:\n%s", st, out);
	cr_assert(strncmp(out, "uptime: ", 8) == 0, "stats:\n%s", out);
	cr_assert(strstr(out, "\nqueue:\n") && strstr(out, "\nmessages:\n") &&
	    strstr(out, "\nescalations:\n") && strstr(out, "\npool:\n"),
	    "stats: groups missing:\n%s", out);
	cr_assert(strstr(out, "  held               1\n") != NULL &&
	    strstr(out, "  failed             1\n") != NULL,
	    "stats: held 1 / failed 1 missing:\n%s", out);
	st = it_posternctl(out, sizeof(out), "-s", sock, "--json", "stats",
	    NULL);
	r = json_loads(out, 0, &jerr);
	cr_assert(st == 0 && r != NULL && it_int2(r, "queue", "held") == 1,
	    "--json stats: exit %d:\n%s", st, out);
	json_decref(r);

	/* show: envelope and recipient lines. */
	st = it_posternctl(out, sizeof(out), "-s", sock, "show", s.m[2], NULL);
	cr_assert_eq(st, 0, "show: exit %d:\n%s", st, out);
	cr_assert(strstr(out, "recipients:\n") && strstr(out, "good@ok.test")
	    && strstr(out, "bad@ok.test") && strstr(out, "550 5.1.1"),
	    "show:\n%s", out);
	cr_assert(strstr(out, "client.address") != NULL, "show: no client "
	    "lines:\n%s", out);

	/* A daemon error: exit 1 with its message. */
	st = it_posternctl(out, sizeof(out), "-s", sock, "show", "00000001",
	    NULL);
	cr_assert_eq(st, 1, "show of an unknown id: exit %d, want 1:\n%s", st,
	    out);
	cr_assert(strstr(out, "no such message") != NULL, "show of an unknown "
	    "id:\n%s", out);
	st = it_posternctl(out, sizeof(out), "-s", sock, "--json", "show",
	    "00000001", NULL);
	cr_assert_eq(st, 1, "--json show of an unknown id: exit %d:\n%s", st,
	    out);
	cr_assert(strstr(out, "\"ok\":false") != NULL, "--json error:\n%s",
	    out);
	st = it_posternctl(out, sizeof(out), "-s", sock, "hold", "../x", NULL);
	cr_assert_eq(st, 1, "hold ../x: exit %d, want 1:\n%s", st, out);
	st = it_posternctl(out, sizeof(out), "-s", sock, "hold", s.m[1], NULL);
	cr_assert_eq(st, 1, "hold of a held message: exit %d, want 1:\n%s", st,
	    out);

	/* The other commands, through the config file's socket (-c). */
	st = it_posternctl(out, sizeof(out), "-c", s.h->conf_path, "release",
	    s.m[1], NULL);
	cr_assert_eq(st, 0, "-c release: exit %d:\n%s", st, out);
	cr_assert(strstr(out, "release: ok") != NULL, "release:\n%s", out);
	st = it_posternctl(out, sizeof(out), "-s", sock, "hold", s.m[1], NULL);
	cr_assert_eq(st, 0, "hold: exit %d:\n%s", st, out);
	st = it_posternctl(out, sizeof(out), "-s", sock, "flush", s.m[0],
	    NULL);
	cr_assert(st == 0 && strstr(out, "flushed 1 messages") != NULL,
	    "flush: exit %d:\n%s", st, out);
	it_wait_attempts(s.h, s.m[0], 2);
	st = it_posternctl(out, sizeof(out), "-s", sock, "delete", s.m[1],
	    NULL);
	cr_assert(st == 0 && strstr(out, "delete: ok") != NULL,
	    "delete: exit %d:\n%s", st, out);
	IT_WAIT_QUEUE(s.h, 2);
	st = it_posternctl(out, sizeof(out), "-s", sock, "reload", NULL);
	cr_assert(st == 0 && strstr(out, "reload: ok") != NULL,
	    "reload: exit %d:\n%s", st, out);
	IT_WAIT_LOG(s.h, "configuration reloaded");
	st = it_posternctl(out, sizeof(out), "-s", sock, "metrics", NULL);
	cr_assert_eq(st, 0, "metrics: exit %d:\n%.2000s", st, out);
	{
		char	pout[262144];
		int	rc = it_promparse(out, pout, sizeof(pout));

		cr_assert_eq(rc, 0, "posternctl metrics does not parse: "
		    "%.2000s", pout);
	}

	/* Usage errors are 2 as well. */
	st = it_posternctl(out, sizeof(out), "-s", sock, "show", NULL);
	cr_assert_eq(st, 2, "show without an id: exit %d, want 2:\n%s", st,
	    out);
	st = it_posternctl(out, sizeof(out), "-s", sock, "frobnicate", NULL);
	cr_assert_eq(st, 2, "unknown command: exit %d, want 2:\n%s", st, out);

	/* Cannot reach: exit 2, naming the socket. */
	snprintf(missing, sizeof(missing), "%s/no/such.sock", s.h->dir);
	st = it_posternctl(out, sizeof(out), "-s", missing, "stats", NULL);
	cr_assert_eq(st, 2, "missing socket: exit %d, want 2:\n%s", st, out);
	cr_assert(strstr(out, missing) != NULL, "missing socket: the message "
	    "does not name %s:\n%s", missing, out);
	/* A dead daemon's stale socket: refused, still 2. */
	cr_assert(harness_kill9(s.h) == 0, "kill: %s", harness_err(s.h));
	st = it_posternctl(out, sizeof(out), "-s", sock, "queue", NULL);
	cr_assert_eq(st, 2, "dead daemon: exit %d, want 2:\n%s", st, out);
	cr_assert(strstr(out, sock) != NULL, "dead daemon: the message does "
	    "not name %s:\n%s", sock, out);
	cr_assert(harness_restart(s.h) == 0, "restart: %s", harness_err(s.h));
	harness_free(s.h);
}

/*
 * The escalation hook.
 */

/* The JSON of hook run n, parsed; asserts it is there. */
static json_t *
it_hook_json(struct harness *h, int n)
{
	char		 name[64], *text;
	json_t		*j;
	json_error_t	 jerr;

	snprintf(name, sizeof(name), "hook.%d.json", n);
	it_wait_file(h, name);
	text = it_read_file(h, name);
	cr_assert(text != NULL, "cannot read %s", name);
	j = json_loads(text, 0, &jerr);
	cr_assert(json_is_object(j), "hook run %d stdin is not a JSON object "
	    "(%s): %s", n, jerr.text, text);
	free(text);
	return (j);
}

/*
 * The event of SPEC 6, key by key and in order, for qid whose recipients
 * rcpts (all of fail.test) failed with the sink's 550 at attempt
 * attempts (-1: not checked, see the re-run tests).
 */
static void
it_check_event(json_t *j, const char *qid, const char *msgid,
    const char *const *rcpts, size_t nrcpt, time_t t0, int attempts)
{
	static const char *const keys[] = { "event", "queue_id",
		"message_id", "sender", "recipients", "attempts", "queued_at",
		"failed_at", "hostname" };
	static const char *const rkeys[] = { "address", "dsn", "reply",
		"remote" };
	const char	*k;
	json_t		*v, *x, *list;
	char		 want[256];
	time_t		 q, f, now = time(NULL);
	size_t		 i, j2;

	i = 0;
	json_object_foreach(j, k, v) {
		cr_assert(i < nitems(keys), "hook event: extra key \"%s\": %s",
		    k, it_dump(j));
		cr_assert_str_eq(k, keys[i], "hook event key %zu: got \"%s\", "
		    "want \"%s\" (SPEC 6 order): %s", i, k, keys[i],
		    it_dump(j));
		i++;
	}
	cr_assert_eq(i, nitems(keys), "hook event: %zu keys, want %zu: %s", i,
	    nitems(keys), it_dump(j));
	cr_assert_str_eq(it_str(j, "event"), "failed", "event: %s",
	    it_dump(j));
	cr_assert_str_eq(it_str(j, "queue_id"), qid, "queue_id: %s",
	    it_dump(j));
	snprintf(want, sizeof(want), "<%s>", msgid);
	cr_assert_str_eq(it_str(j, "message_id"), want, "message_id: got %s, "
	    "want %s", it_str(j, "message_id"), want);
	cr_assert_str_eq(it_str(j, "sender"), IT_SENDER, "sender: %s",
	    it_dump(j));
	cr_assert(json_is_integer(json_object_get(j, "attempts")),
	    "attempts: got %s, want an integer", it_dump(j));
	cr_assert(attempts < 0 || it_int2(j, NULL, "attempts") == attempts,
	    "attempts: got %s, want %d", it_dump(j), attempts);
	cr_assert_str_eq(it_str(j, "hostname"), "relay.test", "hostname: %s",
	    it_dump(j));
	q = it_iso8601(it_str(j, "queued_at"));
	f = it_iso8601(it_str(j, "failed_at"));
	cr_assert(q >= t0 - 1 && q <= now + 1, "queued_at: got \"%s\", want "
	    "an ISO 8601 UTC time during the test", it_str(j, "queued_at"));
	cr_assert(f >= q && f <= now + 1, "failed_at: got \"%s\", want "
	    "queued_at..now", it_str(j, "failed_at"));
	list = json_object_get(j, "recipients");
	cr_assert_eq(json_array_size(list), nrcpt, "recipients: got %s, want "
	    "%zu", it_dump(list), nrcpt);
	json_array_foreach(list, i, x) {
		j2 = 0;
		json_object_foreach(x, k, v) {
			cr_assert(j2 < nitems(rkeys) &&
			    strcmp(k, rkeys[j2]) == 0 && json_is_string(v),
			    "recipient %zu key %zu: got \"%s\", want \"%s\" "
			    "(a string): %s", i, j2, k,
			    j2 < nitems(rkeys) ? rkeys[j2] : "(none)",
			    it_dump(x));
			j2++;
		}
		cr_assert_eq(j2, nitems(rkeys), "recipient %zu: %s", i,
		    it_dump(x));
		cr_assert_str_eq(it_str(x, "address"), rcpts[i], "recipient "
		    "%zu address: %s", i, it_dump(x));
		cr_assert_str_eq(it_str(x, "dsn"), "5.1.1", "recipient %zu "
		    "dsn: %s", i, it_dump(x));
		cr_assert_str_eq(it_str(x, "reply"), "550 5.1.1 no such user",
		    "recipient %zu reply: %s", i, it_dump(x));
		cr_assert_str_eq(it_str(x, "remote"), "mx.fail.test["
		    IT_MX_FAIL "]", "recipient %zu remote (SPEC: "
		    "host[addr]): %s", i, it_dump(x));
	}
}

/*
 * The hook's environment: PATH, POSTERN_EVENT, POSTERN_QUEUE_ID, and
 * nothing of the daemon's (the shell adds PWD and may add SHLVL, _).
 */
static void
it_check_env(struct harness *h, int n, const char *qid)
{
	char	 name[64], want[64], *env, *line, *save;
	bool	 path = false, ev = false, id = false;

	snprintf(name, sizeof(name), "hook.%d.env", n);
	it_wait_file(h, name);
	env = it_read_file(h, name);
	cr_assert(env != NULL, "cannot read %s", name);
	snprintf(want, sizeof(want), "POSTERN_QUEUE_ID=%s", qid);
	for (line = strtok_r(env, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strcmp(line, "PATH=/usr/bin:/bin") == 0)
			path = true;
		else if (strcmp(line, "POSTERN_EVENT=failed") == 0)
			ev = true;
		else if (strcmp(line, want) == 0)
			id = true;
		else
			cr_assert(strncmp(line, "PWD=", 4) == 0 ||
			    strncmp(line, "OLDPWD=", 7) == 0 ||
			    strncmp(line, "SHLVL=", 6) == 0 ||
			    strncmp(line, "_=", 2) == 0, "hook environment "
			    "has \"%s\", want only PATH and POSTERN_*", line);
	}
	cr_assert(path && ev && id, "hook environment: PATH %d, "
	    "POSTERN_EVENT=failed %d, %s %d", path, ev, want, id);
	free(env);
}

/* Start a test whose fail.test sink refuses every RCPT with 550. */
static struct harness *
it_fail_setup(const char *hook_tail, int timeout, const char *more_conf,
    char *hook, size_t hooklen)
{
	struct harness	*h;
	char		 conf[PATH_MAX + 1024], esc[PATH_MAX + 128];

	h = it_new();
	(void)it_mx_rule(h, IT_MX_FAIL, IT_FAIL_RULE);
	(void)it_mx(h, IT_MX_SND, NULL);
	it_hook_script(h, hook_tail, hook, hooklen);
	it_escalation_conf(esc, sizeof(esc), hook, timeout);
	snprintf(conf, sizeof(conf), "%s\n%s", esc,
	    more_conf != NULL ? more_conf : "");
	it_start(h, conf);
	return (h);
}

Test(it_ops, hook_gets_spec_json_and_env, .timeout = IT_TIMEOUT)
{
	const char	*rcpts[] = { "x@fail.test", "y@fail.test" };
	struct harness	*h;
	struct smtpc	*c;
	char		 hook[PATH_MAX], qid[9];
	json_t		*j;
	time_t		 t0 = time(NULL);

	h = it_fail_setup("exit 0", 10, NULL, hook, sizeof(hook));
	c = harness_session_ehlo(h, 0);
	cr_assert(c != NULL, "session: %s", harness_err(h));
	it_submit(c, rcpts, 2, "hook@client.test", qid);
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);

	j = it_hook_json(h, 1);
	it_check_event(j, qid, "hook@client.test", rcpts, 2, t0, 1);
	json_decref(j);
	it_check_env(h, 1, qid);
	IT_WAIT_LOG(h, "escalation event=failed, runs=1, status=sent");
	it_wait_stat(h, "escalations", "sent", 1);
	it_wait_stat(h, "escalations", "pending", 0);
	it_wait_stat(h, "escalations", "failed", 0);
	it_wait_stat(h, "messages", "failed", 1);
	/* Done: the message and its file are gone, and it ran once. */
	IT_WAIT_QUEUE(h, 0);
	it_wait_spool_gone(h, qid);
	it_sleep_ms(IT_QUIET_MS);
	cr_assert_eq(it_hook_runs(h), 1, "hook runs: got %d, want 1",
	    it_hook_runs(h));
	harness_free(h);
}

/*
 * A failing run is retried.  The daemon's first retry comes after 30 s;
 * a restart re-runs a pending escalation at once, which is what this
 * checks (together with durability across a clean stop).
 */
Test(it_ops, hook_failure_retried_after_restart, .timeout = IT_TIMEOUT)
{
	const char	*rcpts[] = { "x@fail.test" };
	struct harness	*h;
	char		 hook[PATH_MAX], qid[9];
	json_t		*j1, *j2;
	const char	*k;
	json_t		*v;
	time_t		 t0 = time(NULL);

	h = it_fail_setup("[ \"$n\" -eq 1 ] && exit 1\nexit 0", 5, NULL,
	    hook, sizeof(hook));
	it_submit_one(h, rcpts[0], "retry@client.test", qid);
	j1 = it_hook_json(h, 1);
	it_check_event(j1, qid, "retry@client.test", rcpts, 1, t0, 1);
	IT_WAIT_LOG(h, "escalation event=failed, runs=1, status=deferred");
	it_wait_stat(h, "escalations", "failed", 1);
	it_wait_stat(h, "escalations", "pending", 1);
	it_wait_stat(h, "escalations", "sent", 0);
	/* Delivery is over, the escalation is not: the file stays. */
	IT_WAIT_QUEUE(h, 0);
	cr_assert(it_spool_has(h, qid), "%s: queue file removed while its "
	    "escalation is pending", qid);
	cr_assert_eq(it_hook_runs(h), 1, "hook runs before the restart: got "
	    "%d, want 1", it_hook_runs(h));

	cr_assert(harness_stop(h) == 0, "stop: %s", harness_err(h));
	cr_assert(it_spool_has(h, qid), "%s: queue file removed at shutdown "
	    "with its escalation pending", qid);
	cr_assert(harness_restart(h) == 0, "restart: %s", harness_err(h));
	j2 = it_hook_json(h, 2);
	it_check_event(j2, qid, "retry@client.test", rcpts, 1, t0, 1);
	/*
	 * The same event again.  Not compared: failed_at (the re-run sends
	 * the time of the restart; the journal keeps no failure time).
	 */
	json_object_foreach(j1, k, v) {
		if (strcmp(k, "failed_at") == 0)
			continue;
		cr_assert(json_equal(v, json_object_get(j2, k)), "re-run "
		    "after restart: \"%s\" got %s, first run had %s", k,
		    it_dump(json_object_get(j2, k)), it_dump(v));
	}
	IT_WAIT_LOG(h, "escalation event=failed, runs=1, status=sent");
	it_wait_stat(h, "escalations", "sent", 1);
	it_wait_stat(h, "escalations", "pending", 0);
	it_wait_spool_gone(h, qid);
	IT_WAIT_QUEUE(h, 0);
	it_sleep_ms(IT_QUIET_MS);
	cr_assert_eq(it_hook_runs(h), 2, "hook runs: got %d, want 2",
	    it_hook_runs(h));
	/* Only one bounce for the one failure, restart or not. */
	cr_assert_eq(harness_mx_messages(h, 1), 1, "DSNs at snd.test: got "
	    "%d, want 1", harness_mx_messages(h, 1));
	json_decref(j1);
	json_decref(j2);
	harness_free(h);
}

/*
 * A pending escalation survives SIGKILL: the first run sleeps, the daemon
 * is killed while it runs, and after the restart the hook runs again and
 * completes; then the message file is removed.
 */
Test(it_ops, hook_pending_survives_sigkill, .timeout = IT_TIMEOUT)
{
	const char	*rcpts[] = { "x@fail.test" };
	struct harness	*h;
	char		 hook[PATH_MAX], qid[9], *pid;
	json_t		*j;
	pid_t		 orphan;
	time_t		 t0 = time(NULL);

	h = it_fail_setup("if [ \"$n\" -eq 1 ]; then\n"
	    "  echo $$ > \"$d/hook.1.pid.tmp\"\n"
	    "  mv \"$d/hook.1.pid.tmp\" \"$d/hook.1.pid\"\n"
	    "  sleep 60\nfi\n"
	    "touch \"$d/hook.$n.done\"\nexit 0", 120, NULL, hook,
	    sizeof(hook));
	it_submit_one(h, rcpts[0], "kill@client.test", qid);
	it_wait_file(h, "hook.1.pid");
	it_wait_stat(h, "escalations", "pending", 1);
	cr_assert(harness_kill9(h) == 0, "kill: %s", harness_err(h));
	/* The orphaned first run leads its own process group: end it. */
	pid = it_read_file(h, "hook.1.pid");
	cr_assert(pid != NULL, "no hook.1.pid");
	orphan = (pid_t)atol(pid);
	free(pid);
	cr_assert(orphan > 1, "hook.1.pid: %ld", (long)orphan);
	kill(-orphan, SIGKILL);
	cr_assert(!it_file_exists(h, "hook.1.done"), "the first run "
	    "completed");
	cr_assert(it_spool_has(h, qid), "%s: no queue file after SIGKILL",
	    qid);

	cr_assert(harness_restart(h) == 0, "restart: %s", harness_err(h));
	j = it_hook_json(h, 2);
	/* attempts is 0 after a restart (see the test above). */
	it_check_event(j, qid, "kill@client.test", rcpts, 1, t0, 1);
	json_decref(j);
	it_check_env(h, 2, qid);
	it_wait_file(h, "hook.2.done");
	IT_WAIT_LOG(h, "escalation event=failed, runs=1, status=sent");
	it_wait_stat(h, "escalations", "sent", 1);
	it_wait_stat(h, "escalations", "pending", 0);
	it_wait_spool_gone(h, qid);
	IT_WAIT_QUEUE(h, 0);
	it_sleep_ms(IT_QUIET_MS);
	cr_assert_eq(it_hook_runs(h), 2, "hook runs: got %d, want 2",
	    it_hook_runs(h));
	harness_free(h);
}

/*
 * The "done when": a destination answers 550; posternctl queue
 * shows nothing stuck, posternctl stats shows the failure, the contrib
 * curl hook posted the case to a local HTTP listener, and the metrics
 * endpoint shows the counters (and parses).
 */

/* An HTTP listener that records each POST as req.N.body / .headers. */
static const char it_httpsink[] =
    "import http.server, os, sys\n"
    "out = sys.argv[1]\n"
    "n = [0]\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_POST(self):\n"
    "        n[0] += 1\n"
    "        body = self.rfile.read(int(self.headers.get("
    "\"Content-Length\", \"0\")))\n"
    "        base = os.path.join(out, \"req.%d\" % n[0])\n"
    "        with open(base + \".headers.tmp\", \"w\") as f:\n"
    "            f.write(\"PATH %s\\n\" % self.path)\n"
    "            for k, v in self.headers.items():\n"
    "                f.write(\"%s: %s\\n\" % (k, v))\n"
    "        os.rename(base + \".headers.tmp\", base + \".headers\")\n"
    "        with open(base + \".body.tmp\", \"wb\") as f:\n"
    "            f.write(body)\n"
    "        os.rename(base + \".body.tmp\", base + \".body\")\n"
    "        self.send_response(201)\n"
    "        self.send_header(\"Content-Length\", \"2\")\n"
    "        self.end_headers()\n"
    "        self.wfile.write(b\"{}\")\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "s = http.server.HTTPServer((\"127.0.0.1\", 0), H)\n"
    "with open(os.path.join(out, \"http.port.tmp\"), \"w\") as f:\n"
    "    f.write(str(s.server_address[1]))\n"
    "os.rename(os.path.join(out, \"http.port.tmp\"),\n"
    "    os.path.join(out, \"http.port\"))\n"
    "s.serve_forever()\n";

Test(it_ops, done_when_550_contrib_hook_metrics, .timeout = IT_TIMEOUT)
{
	const char	*rcpts[] = { "bob@fail.test" };
	struct harness	*h;
	char		 script[PATH_MAX], wrapper[PATH_MAX], casecf[PATH_MAX];
	char		 text[2 * PATH_MAX + 256], esc[PATH_MAX + 128];
	char		 conf[PATH_MAX + 1024], qid[9];
	char		 logpath[PATH_MAX], url[128], out[262144];
	char		 pout[262144], want[256], *port, *hdrs, *body, *sec;
	const char	*py[] = { IT_PYTHON, script, NULL, NULL };
	const char	*curl[] = { IT_CURL, "-sS", "--max-time", "10", url,
			    NULL };
	json_t		*j;
	json_error_t	 jerr;
	pid_t		 http;
	time_t		 t0 = time(NULL);
	int		 st;

	h = it_new();
	(void)it_mx_rule(h, IT_MX_FAIL, IT_FAIL_RULE);
	(void)it_mx(h, IT_MX_SND, NULL);

	/* The case API: a local HTTP listener. */
	it_write_file(h, "httpsink.py", it_httpsink, 0600, script,
	    sizeof(script));
	py[2] = h->dir;
	snprintf(logpath, sizeof(logpath), "%s/httpsink.log", h->dir);
	http = it_spawn(py, logpath);
	it_wait_file(h, "http.port");
	port = it_read_file(h, "http.port");
	cr_assert(port != NULL && atoi(port) > 0, "http.port");

	/* contrib/hooks/open-case-http with its configuration file. */
	snprintf(text, sizeof(text), "url=http://127.0.0.1:%d/cases\n"
	    "token=tok-ops-5\ntimeout=10\n", atoi(port));
	free(port);
	it_write_file(h, "open-case.conf", text, 0600, casecf,
	    sizeof(casecf));
	/* posternd passes no environment: a wrapper names the file. */
	snprintf(text, sizeof(text), "#!/bin/sh\n"
	    "POSTERN_CASE_CONFIG=%s\nexport POSTERN_CASE_CONFIG\n"
	    "exec %s/contrib/hooks/open-case-http\n", casecf,
	    harness_srcdir());
	it_write_file(h, "open-case", text, 0700, wrapper, sizeof(wrapper));
	it_escalation_conf(esc, sizeof(esc), wrapper, 20);
	snprintf(conf, sizeof(conf), "%s\nmetrics = { listen = \"%s:%d\"; };",
	    esc, IT_METRICS_ADDR, harness_mx_port(h));
	it_start(h, conf);

	it_submit_one(h, rcpts[0], "done-when@client.test", qid);

	/* The case arrived: the SPEC 6 event, with the hook's headers. */
	it_wait_file(h, "req.1.body");
	body = it_read_file(h, "req.1.body");
	cr_assert(body != NULL, "req.1.body");
	j = json_loads(body, 0, &jerr);
	cr_assert(j != NULL, "posted body is not JSON (%s): %s", jerr.text,
	    body);
	it_check_event(j, qid, "done-when@client.test", rcpts, 1, t0, 1);
	json_decref(j);
	free(body);
	hdrs = it_read_file(h, "req.1.headers");
	cr_assert(hdrs != NULL, "req.1.headers");
	snprintf(want, sizeof(want), "Idempotency-Key: postern-%s-failed\n",
	    qid);
	cr_assert(strstr(hdrs, "PATH /cases\n") &&
	    strstr(hdrs, "Authorization: Bearer tok-ops-5\n") &&
	    strstr(hdrs, "Content-Type: application/json\n") &&
	    strstr(hdrs, want), "posted headers:\n%s", hdrs);
	free(hdrs);
	IT_WAIT_LOG(h, "escalation event=failed, runs=1, status=sent");

	/* posternctl queue: nothing stuck. */
	IT_WAIT_QUEUE(h, 0);
	it_wait_spool_gone(h, qid);
	st = it_posternctl(out, sizeof(out), "-s", h->control_path, "queue",
	    NULL);
	cr_assert(st == 0 && strcmp(out, "Mail queue is empty\n") == 0,
	    "posternctl queue: exit %d:\n%s", st, out);
	/* posternctl stats: the failure, and the escalation sent. */
	st = it_posternctl(out, sizeof(out), "-s", h->control_path, "stats",
	    NULL);
	cr_assert_eq(st, 0, "posternctl stats: exit %d:\n%s", st, out);
	sec = strstr(out, "\nmessages:\n");
	cr_assert(sec != NULL && strstr(sec, "  failed             1\n") !=
	    NULL, "posternctl stats: messages.failed 1 missing:\n%s", out);
	sec = strstr(out, "\nescalations:\n");
	cr_assert(sec != NULL && strstr(sec, "  sent               1\n") !=
	    NULL, "posternctl stats: escalations.sent 1 missing:\n%s", out);

	/* curl the metrics endpoint: the counters, and it parses. */
	snprintf(url, sizeof(url), "http://%s:%d/metrics", IT_METRICS_ADDR,
	    harness_mx_port(h));
	st = harness_run(curl, NULL, out, sizeof(out), 30);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "curl %s: status "
	    "%d:\n%.500s", url, st, out);
	st = it_promparse(out, pout, sizeof(pout));
	cr_assert_eq(st, 0, "promparse: %.2000s\ntext:\n%.4000s", pout, out);
	cr_assert(it_prom_has(out, "postern_messages_failed_total 1") &&
	    it_prom_has(out, "postern_escalations_sent_total 1") &&
	    it_prom_has(out, "postern_escalations_pending 0") &&
	    it_prom_has(out,
	    "postern_deliveries_total{outcome=\"bounced\"} 1") &&
	    it_prom_has(out,
	    "postern_destination_failures_total{domain=\"fail.test\"} 1") &&
	    it_prom_has(out, "postern_queue_messages{state=\"deferred\"} 0"),
	    "metrics at %s:\n%s", url, out);
	it_peer_stop(http);
	harness_free(h);
}
