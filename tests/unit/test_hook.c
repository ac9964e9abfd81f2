/*
 * test_hook.c: the escalation hook against real child processes on a real
 * event loop.  Each test writes small sh hooks (mode 0755) into its own
 * temp dir; the hooks record what they got (stdin, environment, argv, cwd,
 * open fds, pids) into files there, which the test then checks: exactly
 * SPEC 6's JSON and two POSTERN_* variables, retries with the same bytes,
 * the process group killed at the timeout and by hook_free(), a child that
 * never reads stdin not blocking the loop, no inherited fds, spawn errors
 * counted as failures, and the stats counters.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>
#include <jansson.h>

#include "hook.h"
#include "log.h"
#include "stats.h"
#include "util.h"

#define TH_LOG_MAX	64

struct th {
	struct event_base	*base;
	char			 dir[64];
	char			 cmd[128];
	struct hook		*hook;
	int			 ndone;
	uint64_t		 cookies[64];
	int			 runs_at_done;	/* "count" file when done ran */
	bool			 free_in_done;
	int			 ticks;
	char			*log[TH_LOG_MAX];
	int			 nlog;
};

static struct th	th;

static void
th_sink(int prio, const char *line, void *arg)
{
	if (th.nlog < TH_LOG_MAX)
		th.log[th.nlog++] = strdup(line);
}

static bool
th_logged(const char *needle)
{
	int	i;

	for (i = 0; i < th.nlog; i++)
		if (strstr(th.log[i], needle) != NULL)
			return (true);
	return (false);
}

static void
th_dump_log(void)
{
	int	i;

	for (i = 0; i < th.nlog; i++)
		cr_log_info("log: %s", th.log[i]);
}

static char *
th_path(const char *name)
{
	static char	buf[4][256];
	static int	n;
	char		*p = buf[n++ % 4];

	snprintf(p, 256, "%s/%s", th.dir, name);
	return (p);
}

/* Read a whole file (also /proc, whose size is 0) into a NUL-terminated
 * buffer, or NULL. */
static char *
th_slurp(const char *path, size_t *lenp)
{
	FILE	*f;
	char	*buf = NULL;
	size_t	 len = 0, cap = 0, n;

	if ((f = fopen(path, "r")) == NULL)
		return (NULL);
	do {
		if (cap - len < 4096) {
			cap += 65536;
			buf = realloc(buf, cap + 1);
			cr_assert_not_null(buf);
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
	} while (n > 0);
	fclose(f);
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return (buf);
}

static int
th_read_int(const char *name)
{
	char	*s = th_slurp(th_path(name), NULL);
	int	 v;

	if (s == NULL)
		return (-1);
	v = atoi(s);
	free(s);
	return (v);
}

/* Write a hook script (sh body; @D@ stands for the temp dir), mode mode. */
static void
th_script_mode(const char *name, const char *body, mode_t mode)
{
	char		*path = th_path(name);
	FILE		*f;
	const char	*p;

	cr_assert_not_null(f = fopen(path, "w"));
	fputs("#!/bin/sh\n", f);
	for (p = body; *p != '\0'; p++) {
		if (strncmp(p, "@D@", 3) == 0) {
			fputs(th.dir, f);
			p += 2;
		} else
			fputc(*p, f);
	}
	fclose(f);
	cr_assert_eq(chmod(path, mode), 0);
}

static void
th_script(const char *name, const char *body)
{
	th_script_mode(name, body, 0755);
}

static void
th_setup(void)
{
	memset(&th, 0, sizeof(th));
	strlcpy(th.dir, "/tmp/test_hook.XXXXXX", sizeof(th.dir));
	cr_assert_not_null(mkdtemp(th.dir));
	snprintf(th.cmd, sizeof(th.cmd), "%s/hook", th.dir);
	th.base = event_base_new();
	cr_assert_not_null(th.base);
	stats_init();
	log_set_sink(th_sink, NULL);
	log_set_debug(true);
}

static void
th_teardown(void)
{
	char	cmd[128];
	int	i;

	hook_free(th.hook);
	th.hook = NULL;
	if (th.base != NULL)
		event_base_free(th.base);
	for (i = 0; i < th.nlog; i++)
		free(th.log[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", th.dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", th.dir);
}

static void
th_new(int timeout_s, int retry_s)
{
	char	err[256] = "";

	th.hook = hook_new(th.base, th.cmd, timeout_s, retry_s, err,
	    sizeof(err));
	cr_assert_not_null(th.hook, "hook_new: %s", err);
}

static void
th_done(uint64_t cookie, void *arg)
{
	cr_assert_eq(arg, &th, "done arg: got %p, want %p", arg, (void *)&th);
	if (th.ndone < (int)nitems(th.cookies))
		th.cookies[th.ndone] = cookie;
	th.ndone++;
	th.runs_at_done = th_read_int("count");
	if (th.free_in_done) {
		hook_free(th.hook);
		th.hook = NULL;
	}
}

/* Run the loop until pred() holds or secs pass; true if pred held. */
struct th_wait {
	bool	(*pred)(void);
	bool	 met;
};

static void
th_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct th_wait	*w = arg;

	th.ticks++;
	if (w->pred()) {
		w->met = true;
		event_base_loopbreak(th.base);
	}
}

static void
th_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(th.base);
}

static bool
th_run_until(bool (*pred)(void), int secs)
{
	struct th_wait	 w = { pred, false };
	struct event	*poll, *deadline;
	struct timeval	 tick = { 0, 50 * 1000 }, dl = { secs, 0 };

	if (pred())
		return (true);
	poll = event_new(th.base, -1, EV_PERSIST, th_poll_cb, &w);
	deadline = evtimer_new(th.base, th_deadline_cb, NULL);
	event_add(poll, &tick);
	evtimer_add(deadline, &dl);
	event_base_dispatch(th.base);
	event_free(poll);
	event_free(deadline);
	if (!w.met)
		th_dump_log();
	return (w.met);
}

static bool
th_one_done(void)
{
	return (th.ndone >= 1);
}

static bool
th_pid_file(void)
{
	return (th_read_int("bgpid") > 0 && th_read_int("pid") > 0);
}

/* A process that is gone, or a zombie nobody has reaped yet. */
static bool
th_pid_is_dead(int pid)
{
	char	 path[64], *stat, *rp;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if ((stat = th_slurp(path, NULL)) == NULL)
		return (true);
	rp = strrchr(stat, ')');
	cr_assert_not_null(rp);
	if (rp[2] == 'Z') {
		free(stat);
		return (true);
	}
	cr_log_info("pid %d still alive: %s", pid, stat);
	free(stat);
	return (false);
}

/* Whether pid is dead or a zombie within secs seconds. */
static bool
th_wait_dead(int pid, double secs)
{
	double	end = util_monotonic() + secs;

	while (!th_pid_is_dead(pid)) {
		if (util_monotonic() > end)
			return (false);
		usleep(10000);
	}
	return (true);
}

static const struct hook_rcpt th_rcpts[] = {
	{ "b@example.net", "5.1.1", "550 5.1.1 no such user",
	    "mx.example.net[192.0.2.10]" },
	/* OUT-37: quote and newline inside a quoted local part. */
	{ "\"a\\\"b\nc\"@x", "4.4.7", "421 4.4.2 timed \"out\"\r\n\t\\",
	    "" },
	/* A reply in Latin-1, not UTF-8; a UTF-8 address. */
	{ "j\xc3\xbcrgen@example.de", "5.7.1", "550 caf\xe9 \xff",
	    "mx.example.de[2001:db8::1]" },
};

static struct hook_event
th_event(qid_t id, const char *event)
{
	struct hook_event	ev = {
		.id = id,
		.event = event,
		.message_id = "<m1@example.com>",
		.sender = "a@example.com",
		.rcpts = th_rcpts,
		.nrcpts = nitems(th_rcpts),
		.attempts = 3,
		.queued_at = 1795600800,	/* 2026-11-25T10:00:00Z */
		.failed_at = 1795600992,	/* 2026-11-25T10:03:12Z */
		.hostname = "relay.example.com",
	};

	return (ev);
}

static void
th_assert_str(json_t *o, const char *key, const char *want)
{
	json_t		*v = json_object_get(o, key);
	const char	*got;

	cr_assert(json_is_string(v), "%s: not a string", key);
	got = json_string_value(v);
	cr_assert_str_eq(got, want, "%s: got \"%s\", want \"%s\"", key, got,
	    want);
}

/* Check a parsed event against SPEC 6: every key, every value, no more. */
static void
th_assert_event(json_t *o, const char *qid, const char *event)
{
	static const char *const rcpt_want[][4] = {
		{ "b@example.net", "5.1.1", "550 5.1.1 no such user",
		    "mx.example.net[192.0.2.10]" },
		{ "\"a\\\"b\nc\"@x", "4.4.7", "421 4.4.2 timed \"out\"\r\n\t\\",
		    "" },
		{ "j\xc3\xbcrgen@example.de", "5.7.1",
		    "550 caf\xef\xbf\xbd \xef\xbf\xbd",
		    "mx.example.de[2001:db8::1]" },
	};
	static const char *const rkeys[] = { "address", "dsn", "reply",
	    "remote" };
	json_t	*rcpts, *r;
	size_t	 i, k;

	cr_assert(json_is_object(o));
	cr_assert_eq(json_object_size(o), 9, "keys: got %zu, want 9",
	    json_object_size(o));
	th_assert_str(o, "event", event);
	th_assert_str(o, "queue_id", qid);
	th_assert_str(o, "message_id", "<m1@example.com>");
	th_assert_str(o, "sender", "a@example.com");
	th_assert_str(o, "queued_at", "2026-11-25T10:00:00Z");
	th_assert_str(o, "failed_at", "2026-11-25T10:03:12Z");
	th_assert_str(o, "hostname", "relay.example.com");
	cr_assert(json_is_integer(json_object_get(o, "attempts")));
	cr_assert_eq(json_integer_value(json_object_get(o, "attempts")), 3);
	rcpts = json_object_get(o, "recipients");
	cr_assert(json_is_array(rcpts));
	cr_assert_eq(json_array_size(rcpts), nitems(rcpt_want));
	for (i = 0; i < nitems(rcpt_want); i++) {
		r = json_array_get(rcpts, i);
		cr_assert(json_is_object(r));
		cr_assert_eq(json_object_size(r), 4);
		for (k = 0; k < 4; k++)
			th_assert_str(r, rkeys[k], rcpt_want[i][k]);
	}
}

TestSuite(hook, .init = th_setup, .fini = th_teardown, .timeout = 60);

Test(hook, event_json_is_spec_object)
{
	struct hook_event	 ev = th_event(0x4F2A9C1B, "failed");
	struct hook_rcpt	 one = { "b@example.net", "5.1.1",
	    "550 5.1.1 no such user", "mx.example.net[192.0.2.10]" };
	json_error_t		 jerr;
	json_t			*o;
	char			*s;
	const char		*want =
	    "{\"event\":\"failed\",\"queue_id\":\"4F2A9C1B\","
	    "\"message_id\":\"<m1@example.com>\",\"sender\":\"a@example.com\","
	    "\"recipients\":[{\"address\":\"b@example.net\",\"dsn\":\"5.1.1\","
	    "\"reply\":\"550 5.1.1 no such user\","
	    "\"remote\":\"mx.example.net[192.0.2.10]\"}],"
	    "\"attempts\":3,\"queued_at\":\"2026-11-25T10:00:00Z\","
	    "\"failed_at\":\"2026-11-25T10:03:12Z\","
	    "\"hostname\":\"relay.example.com\"}";

	/* Every key and value, with the hostile recipients. */
	s = hook_event_json(&ev);
	cr_assert_not_null(s);
	cr_assert_null(strchr(s, '\n'), "raw newline in %s", s);
	o = json_loads(s, 0, &jerr);
	cr_assert_not_null(o, "parse: %s in %s", jerr.text, s);
	th_assert_event(o, "4F2A9C1B", "failed");
	json_decref(o);
	free(s);

	/* Byte for byte, compact, in SPEC order. */
	ev.rcpts = &one;
	ev.nrcpts = 1;
	s = hook_event_json(&ev);
	cr_assert_str_eq(s, want, "got %s\nwant %s", s, want);
	free(s);

	/* NULL strings are "", no recipients is []. */
	ev.message_id = NULL;
	ev.sender = NULL;
	ev.rcpts = NULL;
	ev.nrcpts = 0;
	ev.event = "expired";
	s = hook_event_json(&ev);
	o = json_loads(s, 0, &jerr);
	cr_assert_not_null(o, "parse: %s in %s", jerr.text, s);
	th_assert_str(o, "event", "expired");
	th_assert_str(o, "message_id", "");
	th_assert_str(o, "sender", "");
	cr_assert_eq(json_array_size(json_object_get(o, "recipients")), 0);
	json_decref(o);
	free(s);
}

Test(hook, new_refuses_bad_arguments)
{
	static const struct {
		const char	*cmd;	/* '@': in the temp dir */
		int		 timeout, retry;
		const char	*want;	/* in err */
	} cases[] = {
		{ "relative", 30, 30, "not an absolute path" },
		{ "@gw", 30, 30, "writable by group or others" },
		{ "@ow", 30, 30, "writable by group or others" },
		{ "@noexec", 30, 30, "not executable" },
		{ "@dir", 30, 30, "not a regular file" },
		{ "@ok", 0, 30, "timeout" },
		{ "@ok", 86401, 30, "timeout" },
		{ "@ok", 30, 0, "retry" },
		{ "@ok", 30, HOOK_RETRY_MAX + 1, "retry" },
	};
	struct hook	*h;
	char		 err[256], path[256];
	size_t		 i;

	th_script_mode("gw", "exit 0\n", 0775);
	th_script_mode("ow", "exit 0\n", 0757);
	th_script_mode("noexec", "exit 0\n", 0644);
	th_script("ok", "exit 0\n");
	cr_assert_eq(mkdir(th_path("dir"), 0755), 0);
	for (i = 0; i < nitems(cases); i++) {
		if (cases[i].cmd[0] == '@')
			snprintf(path, sizeof(path), "%s", th_path(
			    cases[i].cmd + 1));
		else
			snprintf(path, sizeof(path), "%s", cases[i].cmd);
		err[0] = '\0';
		h = hook_new(th.base, path, cases[i].timeout, cases[i].retry,
		    err, sizeof(err));
		cr_expect_null(h, "case %zu (%s): accepted", i, cases[i].cmd);
		cr_expect(strstr(err, cases[i].want) != NULL,
		    "case %zu: err \"%s\", want \"%s\"", i, err,
		    cases[i].want);
		hook_free(h);
	}
	/* A missing command is accepted: it may be installed later. */
	h = hook_new(th.base, th_path("later"), 30, 30, err, sizeof(err));
	cr_assert_not_null(h, "missing command refused: %s", err);
	hook_free(h);
}

Test(hook, child_gets_spec_json_and_two_env_vars)
{
	struct hook_event	 ev = th_event(0x0000BEEF, "expired");
	char			*want, *got, *env, *argv, *cwd;
	char			 want_argv[256];
	const char		*want_env = "PATH=/usr/bin:/bin\n"
	    "POSTERN_EVENT=expired\nPOSTERN_QUEUE_ID=0000BEEF\n";
	json_error_t		 jerr;
	json_t			*o;
	size_t			 gotlen;

	/* Nothing of the daemon's environment may reach the hook. */
	setenv("SMTP_PASSWORD", "hunter2", 1);
	setenv("POSTERN_SECRET", "hunter2", 1);
	th_script("hook",
	    "cat > @D@/stdin\n"
	    "tr '\\0' '\\n' < /proc/$$/environ | sort > @D@/env\n"
	    "echo \"$# $0\" > @D@/argv\n"
	    "pwd > @D@/cwd\n"
	    "echo 1 > @D@/count\n"
	    "exit 0\n");
	th_new(10, 30);
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 42, &th), 0);
	cr_assert_eq(th.ndone, 0, "done_cb ran inside hook_run");
	cr_assert_eq(hook_pending(th.hook), 1);
	cr_assert(th_run_until(th_one_done, 10), "hook never finished");
	cr_assert_eq(th.cookies[0], 42);
	cr_assert_eq(hook_pending(th.hook), 0);

	got = th_slurp(th_path("stdin"), &gotlen);
	cr_assert_not_null(got);
	want = hook_event_json(&ev);
	cr_assert_eq(gotlen, strlen(want) + 1, "stdin: got %zu bytes, want "
	    "%zu", gotlen, strlen(want) + 1);
	cr_assert_eq(memcmp(got, want, strlen(want)), 0, "stdin: got %s, "
	    "want %s", got, want);
	cr_assert_eq(got[gotlen - 1], '\n');
	o = json_loads(got, 0, &jerr);
	cr_assert_not_null(o, "parse: %s", jerr.text);
	th_assert_event(o, "0000BEEF", "expired");
	json_decref(o);

	env = th_slurp(th_path("env"), NULL);
	cr_assert_str_eq(env, want_env, "env: got\n%s\nwant\n%s", env,
	    want_env);
	argv = th_slurp(th_path("argv"), NULL);
	snprintf(want_argv, sizeof(want_argv), "0 %s\n", th.cmd);
	cr_assert_str_eq(argv, want_argv, "argv: got %s, want %s", argv,
	    want_argv);
	cwd = th_slurp(th_path("cwd"), NULL);
	cr_assert_str_eq(cwd, "/\n", "cwd: got %s", cwd);
	cr_assert(th_logged("0000BEEF: escalation event=expired, runs=1, "
	    "status=sent (hook exit 0)"));
	cr_assert_eq(stats.escalations_sent, 1);
	cr_assert_eq(stats.escalations_failed, 0);
	cr_assert_eq(stats.escalations_pending, 0);
	free(got);
	free(want);
	free(env);
	free(argv);
	free(cwd);
}

Test(hook, failure_is_retried_with_the_same_json)
{
	struct hook_event	 ev = th_event(0x12345678, "failed");
	char			*a, *b;

	th_script("hook",
	    "n=$(cat @D@/count 2>/dev/null || echo 0)\n"
	    "n=$((n + 1))\n"
	    "echo $n > @D@/count\n"
	    "cat > @D@/stdin.$n\n"
	    "if [ $n -lt 3 ]; then\n"
	    "  printf 'case API says \"no\"\\001\\nsecond line\\n' >&2\n"
	    "  exit 1\n"
	    "fi\n"
	    "exit 0\n");
	th_new(10, 1);
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 7, &th), 0);
	cr_assert(th_run_until(th_one_done, 20), "never succeeded");
	cr_assert_eq(th.ndone, 1);
	cr_assert_eq(th.runs_at_done, 3, "done after run %d, want 3",
	    th.runs_at_done);
	a = th_slurp(th_path("stdin.1"), NULL);
	b = th_slurp(th_path("stdin.3"), NULL);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	cr_assert_str_eq(a, b, "retry sent other JSON");
	free(a);
	free(b);

	/* Backoff doubles: 1 s, then 2 s. */
	cr_assert(th_logged("12345678: escalation event=failed, runs=1, "
	    "status=deferred (hook exit 1: case API says \"no\"\\x01), "
	    "retry in 1s"));
	cr_assert(th_logged("runs=2, status=deferred (hook exit 1: "
	    "case API says \"no\"\\x01), retry in 2s"));
	cr_assert(th_logged("runs=3, status=sent (hook exit 0)"));
	cr_assert(!th_logged("second line"));
	cr_assert_eq(stats.escalations_failed, 2);
	cr_assert_eq(stats.escalations_sent, 1);
	cr_assert_eq(stats.escalations_pending, 0);
}

Test(hook, killed_by_signal_is_a_failure)
{
	struct hook_event	ev = th_event(0x1, "failed");

	th_script("hook",
	    "n=$(cat @D@/count 2>/dev/null || echo 0)\n"
	    "echo $((n + 1)) > @D@/count\n"
	    "[ $n -ge 1 ] && exit 0\n"
	    "kill -TERM $$\n"
	    "sleep 5\n");
	th_new(10, 1);
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 1, &th), 0);
	cr_assert(th_run_until(th_one_done, 10));
	cr_assert(th_logged("status=deferred (hook killed by signal 15)"));
	cr_assert_eq(th.runs_at_done, 2);
	cr_assert_eq(stats.escalations_failed, 1);
}

Test(hook, timeout_kills_the_process_group_and_retries)
{
	struct hook_event	ev = th_event(0xABCDEF01, "failed");
	double			t0;
	int			pid, bgpid;

	th_script("hook",
	    "n=$(cat @D@/count 2>/dev/null || echo 0)\n"
	    "n=$((n + 1))\n"
	    "echo $n > @D@/count\n"
	    "if [ $n -eq 1 ]; then\n"
	    "  sleep 1000 &\n"
	    "  echo $! > @D@/bgpid\n"
	    "  echo $$ > @D@/pid\n"
	    "  sleep 1000\n"
	    "fi\n"
	    "exit 0\n");
	th_new(1, 1);
	t0 = util_monotonic();
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 5, &th), 0);
	cr_assert(th_run_until(th_one_done, 15), "never succeeded");
	cr_assert_geq(util_monotonic() - t0, 2.0, "timeout plus retry took "
	    "%.2f s", util_monotonic() - t0);
	cr_assert_eq(th.runs_at_done, 2);
	pid = th_read_int("pid");
	bgpid = th_read_int("bgpid");
	cr_assert_gt(pid, 0);
	cr_assert_gt(bgpid, 0);
	cr_assert(th_pid_is_dead(pid), "hook %d survived", pid);
	cr_assert(th_pid_is_dead(bgpid), "hook's child %d survived", bgpid);
	cr_assert(th_logged("ABCDEF01: escalation event=failed, runs=1, "
	    "status=deferred (hook timed out after 1s, process group "
	    "killed), retry in 1s"));
	cr_assert_eq(stats.escalations_failed, 1);
	cr_assert_eq(stats.escalations_sent, 1);
}

static void
th_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	int	*ticks = arg;

	(*ticks)++;
}

Test(hook, child_not_reading_stdin_does_not_block_the_loop)
{
	struct hook_event	 ev = th_event(0x2, "failed");
	struct hook_rcpt	*many;
	struct event		*tick;
	struct timeval		 tv = { 0, 20 * 1000 };
	char			*json, reply[400];
	double			 t0;
	size_t			 i, n = 2000;
	int			 ticks = 0;

	/* Far more than a pipe holds (64 KiB). */
	memset(reply, 'x', sizeof(reply) - 1);
	reply[sizeof(reply) - 1] = '\0';
	many = calloc(n, sizeof(*many));
	for (i = 0; i < n; i++) {
		many[i].address = "someone@example.net";
		many[i].dsn = "5.1.1";
		many[i].reply = reply;
		many[i].remote = "mx.example.net[192.0.2.10]";
	}
	ev.rcpts = many;
	ev.nrcpts = n;
	json = hook_event_json(&ev);
	cr_assert_gt(strlen(json), 4 * 65536, "JSON only %zu bytes",
	    strlen(json));
	free(json);

	th_script("hook", "sleep 2\nexit 0\n");
	th_new(10, 30);
	tick = event_new(th.base, -1, EV_PERSIST, th_tick_cb, &ticks);
	event_add(tick, &tv);
	t0 = util_monotonic();
	/*
	 * No duration assertion on hook_run itself (machine load decides
	 * that); the loop's liveness while the child ignores stdin is what
	 * the tick count below proves.
	 */
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 9, &th), 0);
	free(many);	/* the hook keeps its own copy */
	cr_assert(th_run_until(th_one_done, 10));
	/* 2 s at 20 ms is ~100 ticks; a blocked loop would give ~0. */
	cr_assert_gt(ticks, 20, "timer fired %d times in %.2f s", ticks,
	    util_monotonic() - t0);
	cr_assert_eq(stats.escalations_sent, 1);
	event_free(tick);
}

Test(hook, child_inherits_no_fds)
{
	struct hook_event	 ev = th_event(0x3, "failed");
	char			*fds, *fd0;
	int			 leak, sv[2];

	/* Deliberately without O_CLOEXEC: must still not reach the hook. */
	leak = open("/dev/null", O_RDONLY);
	cr_assert_geq(leak, 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	th_script("hook",
	    "ls /proc/self/fd | sort -n | tr '\\n' ' ' > @D@/fds\n"
	    "readlink /proc/self/fd/0 > @D@/fd0\n"
	    "exit 0\n");
	th_new(10, 30);
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 1, &th), 0);
	cr_assert(th_run_until(th_one_done, 10));
	fds = th_slurp(th_path("fds"), NULL);
	cr_assert_not_null(fds);
	/* 0, 1 (redirected to the file), 2, and ls's own directory fd. */
	cr_assert_str_eq(fds, "0 1 2 3 ", "fds: got \"%s\", want \"0 1 2 3 \"",
	    fds);
	fd0 = th_slurp(th_path("fd0"), NULL);
	cr_assert_eq(strncmp(fd0, "pipe:", 5), 0, "stdin is %s", fd0);
	free(fds);
	free(fd0);
	close(leak);
	close(sv[0]);
	close(sv[1]);
}

Test(hook, spawn_failure_counts_and_is_retried)
{
	struct hook_event	ev = th_event(0x4, "failed");

	/* Not installed yet: every run fails until it appears. */
	th_new(10, 1);
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 11, &th), 0);
	cr_assert_eq(stats.escalations_failed, 1, "failed: got %llu, want 1",
	    (unsigned long long)stats.escalations_failed);
	cr_assert_eq(stats.escalations_pending, 1);
	cr_assert_eq(hook_pending(th.hook), 1);
	cr_assert_eq(th.ndone, 0);
	cr_assert(th_logged("No such file or directory"));
	cr_assert(th_logged("retry in 1s"));

	th_script("hook", "echo 1 > @D@/count\nexit 0\n");
	cr_assert(th_run_until(th_one_done, 10));
	cr_assert_eq(th.cookies[0], 11);
	cr_assert_eq(stats.escalations_failed, 1);
	cr_assert_eq(stats.escalations_sent, 1);
	cr_assert_eq(stats.escalations_pending, 0);
}

Test(hook, unsafe_command_at_run_time_is_a_failure)
{
	struct hook_event	ev = th_event(0x5, "failed");

	th_script("hook", "exit 0\n");
	th_new(10, 60);
	cr_assert_eq(chmod(th.cmd, 0777), 0);
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 1, &th), 0);
	cr_assert_eq(stats.escalations_failed, 1);
	cr_assert(th_logged("writable by group or others"));
}

static bool
th_two_done(void)
{
	return (th.ndone >= 2);
}

Test(hook, one_escalation_per_message_and_event)
{
	struct hook_event	ev = th_event(0x6, "failed");
	struct hook_event	ev2 = th_event(0x6, "expired");
	struct hook_event	bad = th_event(0x6, "delivered");

	th_script("hook", "cat >/dev/null\nsleep 0.3\nexit 0\n");
	th_new(10, 30);
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 1, &th), 0);
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 2, &th), 0);
	cr_assert_eq(hook_run(th.hook, &ev2, th_done, 3, &th), 0);
	cr_assert_eq(hook_run(th.hook, &bad, th_done, 4, &th), -1);
	bad.event = NULL;
	cr_assert_eq(hook_run(th.hook, &bad, th_done, 4, &th), -1);
	cr_assert_eq(hook_pending(th.hook), 2);
	cr_assert_eq(stats.escalations_pending, 2);
	cr_assert(th_run_until(th_two_done, 10));
	/* Give a wrongly duplicated run time to finish too. */
	event_base_loopexit(th.base, &(struct timeval){ 1, 0 });
	event_base_dispatch(th.base);
	cr_assert_eq(th.ndone, 2, "done ran %d times, want 2", th.ndone);
	cr_assert(th.cookies[0] != 2 && th.cookies[1] != 2);
	cr_assert_eq(stats.escalations_sent, 2);
	cr_assert_eq(stats.escalations_pending, 0);
}

static bool
th_all_done(void)
{
	return (th.ndone >= 40);
}

Test(hook, more_runs_than_slots_all_complete)
{
	struct hook_event	 ev;
	char			*conc, *p;
	int			 i, n, max = 0;

	/* Each run records how many hooks are running as it starts. */
	cr_assert_eq(mkdir(th_path("run"), 0755), 0);
	th_script("hook",
	    "touch @D@/run/$$\n"
	    "ls @D@/run | wc -l >> @D@/conc\n"
	    "cat >/dev/null\n"
	    "sleep 0.2\n"
	    "rm @D@/run/$$\n"
	    "exit 0\n");
	th_new(10, 30);
	for (i = 0; i < 40; i++) {
		ev = th_event(0x100 + (qid_t)i, "failed");
		cr_assert_eq(hook_run(th.hook, &ev, th_done, (uint64_t)i, &th),
		    0);
	}
	cr_assert_eq(hook_pending(th.hook), 40);
	cr_assert(th_run_until(th_all_done, 20), "%d of 40 done", th.ndone);
	cr_assert_eq(stats.escalations_sent, 40);
	cr_assert_eq(stats.escalations_pending, 0);
	/* Slots are handed out oldest first. */
	cr_assert_lt(th.cookies[0], HOOK_RUNNING_MAX);
	conc = th_slurp(th_path("conc"), NULL);
	cr_assert_not_null(conc);
	for (p = strtok(conc, "\n"); p != NULL; p = strtok(NULL, "\n")) {
		n = atoi(p);
		if (n > max)
			max = n;
	}
	cr_assert_leq(max, HOOK_RUNNING_MAX, "%d running at once", max);
	cr_assert_geq(max, 2, "runs never overlapped");
	free(conc);
}

Test(hook, free_kills_running_children)
{
	struct hook_event	ev = th_event(0x7, "failed");
	double			t0;
	int			pid, bgpid;

	th_script("hook",
	    "sleep 1000 &\n"
	    "echo $! > @D@/bgpid\n"
	    "echo $$ > @D@/pid\n"
	    "sleep 1000\n");
	th_new(100, 30);
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 1, &th), 0);
	cr_assert(th_run_until(th_pid_file, 10));
	pid = th_read_int("pid");
	bgpid = th_read_int("bgpid");
	cr_assert(!th_pid_is_dead(pid));
	t0 = util_monotonic();
	hook_free(th.hook);
	th.hook = NULL;
	cr_assert_lt(util_monotonic() - t0, 1.5, "hook_free took %.2f s",
	    util_monotonic() - t0);
	cr_assert(th_pid_is_dead(pid), "hook %d survived hook_free", pid);
	/*
	 * The grandchild got SIGKILL with its process group; hook_free()
	 * waits for the hook only, so give the kernel a moment to schedule
	 * the grandchild's exit on a busy machine (CI once saw it alive right
	 * after).
	 */
	cr_assert(th_wait_dead(bgpid, 5.0), "hook's child %d survived",
	    bgpid);
	cr_assert_eq(th.ndone, 0);
	cr_assert_eq(stats.escalations_pending, 0);
	/* The loop has nothing of the hook's left. */
	cr_assert_eq(event_base_loop(th.base, EVLOOP_NONBLOCK), 1);
}

Test(hook, done_callback_may_free_the_hook)
{
	struct hook_event	ev = th_event(0x8, "failed");
	struct hook_event	ev2 = th_event(0x9, "failed");

	th_script("hook",
	    "read line\n"
	    "case \"$line\" in *'\"00000009\"'*) sleep 1000;; esac\n"
	    "exit 0\n");
	th_new(100, 30);
	th.free_in_done = true;
	cr_assert_eq(hook_run(th.hook, &ev, th_done, 1, &th), 0);
	cr_assert_eq(hook_run(th.hook, &ev2, th_done, 2, &th), 0);
	cr_assert(th_run_until(th_one_done, 10));
	cr_assert_null(th.hook);
	cr_assert_eq(th.ndone, 1);
	cr_assert_eq(stats.escalations_pending, 0);
}
