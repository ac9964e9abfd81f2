/*
 * it_posternd.c: black-box tests of the posternd program itself (SPEC
 * sections 1, 2 and 5): its flags (-V, -n, --hash-password, the embedded
 * default when there is no configuration), its signals (SIGHUP reload,
 * failed reload, SIGTERM), the privilege drop when started as root, and
 * the control socket's mode.
 *
 * The -n tests write their configuration by hand so that the line numbers
 * asserted in "FILE:LINE: message" are the ones in the file; every bad file
 * is the valid base (lines 1-6) plus the faulty lines from 7 on.
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <crypt.h>
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../support/harness.h"

#define IT_TIMEOUT	120

static const char *const it_rcpt[] = { "b@ok.example" };
static const char it_msg[] = "From: a@ok.example\r\nSubject: t\r\n\r\nx\r\n";

static struct harness *
it_new(void)
{
	struct harness	*h;

	cr_assert((h = harness_new()) != NULL);
	cr_assert(harness_listen(h, NULL, "none", "none") == 0, "%s",
	    harness_err(h));
	return (h);
}

Test(it_posternd, version_flag, .timeout = IT_TIMEOUT)
{
	const char	*argv[] = { harness_posternd(), "-V", NULL };
	char		 out[8192];
	int		 st;

	st = harness_run(argv, NULL, out, sizeof(out), 30);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "posternd -V: status 0x%x: %s", st, out);
	cr_assert(strstr(out, POSTERN_VERSION) != NULL,
	    "no version %s in: %s", POSTERN_VERSION, out);
	/* (interp.) Library names as their projects spell them. */
	cr_assert(strcasestr(out, "libevent") != NULL, "no libevent: %s", out);
	cr_assert(strcasestr(out, "openssl") != NULL, "no OpenSSL: %s", out);
	cr_assert(strcasestr(out, "c-ares") != NULL, "no c-ares: %s", out);
}

/* Valid base: lines 1-6. */
static char *
it_conf_text(struct harness *h, const char *tail)
{
	char	*s;

	cr_assert(asprintf(&s,
	    "# written by it_posternd.c\n" /* 1 */
	    "hostname = \"relay.test\";\n" /* 2 */
	    "user = \"%s\";\n" /* 3 */
	    "spool_dir = \"%s\";\n" /* 4 */
	    "control_socket = \"%s\";\n" /* 5 */
	    "listen = ( { address = \"127.0.0.1\"; port = %d; "
	    "tls = \"none\"; auth = \"none\"; } );\n" /* 6 */
	    "%s", h->user, h->spool_dir, h->control_path,
	    harness_port(h, 0), tail) != -1);
	return (s);
}

/* Run posternd -n on base+tail; returns the wait status, output in out. */
static int
it_check(struct harness *h, const char *tail, char *out, size_t outlen)
{
	const char	*argv[] = { harness_posternd(), "-n", "-c",
			    h->conf_path, NULL };
	char		*text = it_conf_text(h, tail);

	cr_assert(harness_set_conf_text(h, text) == 0, "%s", harness_err(h));
	free(text);
	return (harness_run(argv, NULL, out, outlen, 60));
}

static void
it_assert_line(struct harness *h, const char *out, int line)
{
	char	want[400];

	snprintf(want, sizeof(want), "%s:%d: ", h->conf_path, line);
	cr_assert(strstr(out, want) != NULL, "want \"%s...\" in:\n%s", want,
	    out);
}

Test(it_posternd, check_valid_config, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new();
	char		 out[8192];
	int		 st;

	st = it_check(h, "", out, sizeof(out));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "-n on a valid file: status 0x%x:\n%s", st, out);
	/* "start nothing" */
	cr_assert(!harness_port_is_listening(harness_port(h, 0)));
	harness_free(h);
}

static void
it_check_bad(const char *tail, const int *lines, size_t nlines)
{
	struct harness	*h = it_new();
	char		 out[16384];
	size_t		 i;
	int		 st;

	st = it_check(h, tail, out, sizeof(out));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1,
	    "-n: status 0x%x, want exit 1:\n%s", st, out);
	for (i = 0; i < nlines; i++)
		it_assert_line(h, out, lines[i]);
	harness_free(h);
}

Test(it_posternd, check_unknown_key, .timeout = IT_TIMEOUT)
{
	static const int l[] = { 7 };

	it_check_bad("bogus_key = 1;\n", l, nitems(l));
}

Test(it_posternd, check_wrong_type, .timeout = IT_TIMEOUT)
{
	static const int l[] = { 8 };

	it_check_bad("limits = {\n"
	    "  max_recipients = \"many\";\n"
	    "};\n", l, nitems(l));
}

Test(it_posternd, check_out_of_range, .timeout = IT_TIMEOUT)
{
	static const int l[] = { 8 };

	it_check_bad("delivery = {\n"
	    "  pool_size = 101;\n"
	    "};\n", l, nitems(l));
}

Test(it_posternd, check_missing_file, .timeout = IT_TIMEOUT)
{
	static const int l[] = { 8 };

	it_check_bad("auth = {\n"
	    "  users_file = \"/nonexistent/postern-users\";\n"
	    "};\n", l, nitems(l));
}

Test(it_posternd, check_syntax_error, .timeout = IT_TIMEOUT)
{
	static const int l[] = { 8 };

	it_check_bad("limits = {\n"
	    "  max_recipients = ;\n"
	    "};\n", l, nitems(l));
}

/* "print every problem": three independent errors, three lines. */
Test(it_posternd, check_reports_every_problem, .timeout = IT_TIMEOUT)
{
	static const int l[] = { 7, 9, 12 };

	it_check_bad("bogus_key = 1;\n" /* 7 */
	    "limits = {\n" /* 8 */
	    "  max_recipients = \"many\";\n" /* 9 */
	    "};\n" /* 10 */
	    "delivery = {\n" /* 11 */
	    "  pool_size = 0;\n" /* 12 */
	    "};\n", l, nitems(l));
}

Test(it_posternd, hash_password, .timeout = IT_TIMEOUT)
{
	char		 hash[512], err[512];
	const char	*again;

	cr_assert(harness_hash_password("s3cret pass", hash, sizeof(hash),
	    err, sizeof(err)) == 0, "%s", err);
	cr_assert(strncmp(hash, "$y$", 3) == 0 || strncmp(hash, "$6$", 3) ==
	    0, "not yescrypt or SHA-512: %s", hash);
	again = crypt("s3cret pass", hash);
	cr_assert(again != NULL && strcmp(again, hash) == 0,
	    "the hash does not verify the password: %s", hash);
	again = crypt("s3cret pasS", hash);
	cr_assert(again == NULL || strcmp(again, hash) != 0);
}

/* SPEC 1: no -c and no configuration file: the embedded default. */
Test(it_posternd, embedded_default, .timeout = IT_TIMEOUT)
{
	struct sockaddr_in	 sin;
	struct harness		*h;
	struct smtpc		*c;
	struct stat		 sb;
	char			 path[300];
	int			 fd, one = 1;

	if (access(POSTERN_CONFDIR "/postern.conf", F_OK) == 0)
		cr_skip_test(POSTERN_CONFDIR "/postern.conf exists here");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(2525);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		close(fd);
		cr_skip_test("127.0.0.1:2525 is busy");
	}
	close(fd);

	cr_assert((h = harness_new()) != NULL);
	h->no_conf_arg = true;
	h->nlisteners = 1;
	strlcpy(h->listeners[0].address, "127.0.0.1",
	    sizeof(h->listeners[0].address));
	h->listeners[0].port = 2525;
	snprintf(h->spool_dir, sizeof(h->spool_dir), "%s/var/spool", h->dir);
	snprintf(h->control_path, sizeof(h->control_path),
	    "%s/var/run/control.sock", h->dir);
	HARNESS_START(h);
	c = harness_session_ehlo(h, 0);
	cr_assert(c != NULL, "%s", harness_err(h));
	cr_assert(!smtpc_has_ext(c, "STARTTLS"), "%s", smtpc_last(c));
	cr_assert(smtpc_submit(c, "a@ok.example", it_rcpt, 1, it_msg, NULL) ==
	    250, "loopback may relay: %s", smtpc_last(c));
	smtpc_close(c);
	cr_assert(stat(h->spool_dir, &sb) == 0 && S_ISDIR(sb.st_mode),
	    "no ./var/spool");
	snprintf(path, sizeof(path), "%s", h->control_path);
	cr_assert(stat(path, &sb) == 0 && S_ISSOCK(sb.st_mode),
	    "no ./var/run/control.sock");
	harness_free(h);
}

Test(it_posternd, sighup_applies_new_config, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new();
	struct smtpc	*old, *c;
	char		*data, qid[9], text[SMTPC_REPLY_MAX];
	size_t		 dlen;
	int		 code;

	HARNESS_START(h);
	cr_assert((old = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	HARNESS_CMD(old, "MAIL FROM:<a@ok.example>", "250 2.1.0");

	cr_assert(harness_listen(h, NULL, "none", "none") == 1);
	cr_assert(harness_write_conf(h) == 0, "%s", harness_err(h));
	cr_assert(harness_signal(h, SIGHUP) == 0);
	cr_assert(harness_wait_ready(h, 30) == 0, "new listener: %s",
	    harness_err(h));
	cr_assert((c = harness_session_ehlo(h, 1)) != NULL, "new port: %s",
	    harness_err(h));
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);

	/* The session from before the reload finishes its transaction. */
	HARNESS_CMD(old, "RCPT TO:<b@ok.example>", "250 2.1.5");
	HARNESS_CMD(old, "DATA", "354");
	data = smtpc_dot_stuff(it_msg, strlen(it_msg), &dlen);
	cr_assert(smtpc_send_raw(old, data, dlen) == 0);
	free(data);
	cr_assert(smtpc_read_reply(old, &code, text, sizeof(text), 0) == 0 &&
	    code == 250 && smtpc_parse_qid(text, qid) == 0, "got %s",
	    smtpc_last(old));
	smtpc_close(old);
	cr_assert(harness_queue_has(h, qid), "%s not queued", qid);
	cr_assert(harness_still_serves(h, 0), "%s", harness_err(h));
	harness_free(h);
}

Test(it_posternd, sighup_invalid_config_keeps_old, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new();
	struct smtpc	*old;
	int		 newport;

	HARNESS_START(h);
	cr_assert((old = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	/* A new listener plus an error: none of it may be applied. */
	cr_assert(harness_listen(h, NULL, "none", "none") == 1);
	newport = harness_port(h, 1);
	harness_append_conf(h, "bogus_reload_key = 1;");
	cr_assert(harness_write_conf(h) == 0, "%s", harness_err(h));
	cr_assert(harness_signal(h, SIGHUP) == 0);
	cr_assert(harness_log_wait(h, "bogus_reload_key", 30),
	    "the log does not say why the reload failed:\n%s",
	    harness_log_tail(h, 20));
	cr_assert(harness_is_running(h), "daemon died: %s",
	    harness_log_tail(h, 20));
	cr_assert(!harness_port_is_listening(newport),
	    "the listener of the rejected config was started");
	cr_assert(harness_still_serves(h, 0), "old port: %s", harness_err(h));
	HARNESS_CMD(old, "NOOP", "250");
	smtpc_close(old);
	/* Stop waiting for the port that never came. */
	h->nlisteners = 1;
	harness_free(h);
}

Test(it_posternd, sigterm_exits_0_queue_intact, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new();
	struct smtpc	*c;
	char		 qid[9];

	HARNESS_START(h);
	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	cr_assert(smtpc_submit(c, "a@ok.example", it_rcpt, 1, it_msg, qid) ==
	    250, "%s", smtpc_last(c));
	smtpc_close(c);
	cr_assert(harness_stop(h) == 0, "%s", harness_err(h));
	cr_assert(WIFEXITED(h->exit_status) && WEXITSTATUS(h->exit_status) ==
	    0, "exit status 0x%x:\n%s", h->exit_status,
	    harness_log_tail(h, 20));
	HARNESS_START(h);
	cr_assert(harness_queue_has(h, qid), "%s lost over a restart (%s)",
	    qid, harness_err(h));
	harness_free(h);
}

/* Uid/Gid lines of /proc/PID/status: all four ids equal want. */
static void
it_assert_ids(pid_t pid, const char *key, unsigned int want)
{
	char		 path[64], line[256];
	unsigned int	 a, b, c, d;
	FILE		*fp;
	bool		 seen = false;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	cr_assert((fp = fopen(path, "r")) != NULL, "%s", path);
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, key, strlen(key)) != 0)
			continue;
		cr_assert(sscanf(line + strlen(key), "%u %u %u %u", &a, &b, &c,
		    &d) == 4, "%s", line);
		cr_assert(a == want && b == want && c == want && d == want,
		    "%s want all %u", line, want);
		seen = true;
	}
	fclose(fp);
	cr_assert(seen, "no %s line", key);
}

Test(it_posternd, drops_privileges_as_root, .timeout = IT_TIMEOUT)
{
	struct harness	*h;
	struct passwd	*pw;
	struct smtpc	*c;
	char		 run[200], line[256], path[64], *tok, *save;
	FILE		*fp;
	uid_t		 uid;
	gid_t		 gid;

	if (getuid() != 0)
		cr_skip_test("not root");
	if ((pw = getpwnam("nobody")) == NULL)
		cr_skip_test("no user nobody");
	uid = pw->pw_uid;
	gid = pw->pw_gid;
	h = it_new();
	harness_set_user(h, "nobody");
	/*
	 * What an operator prepares: the spool and the socket's directory
	 * belong to the service user; the rest may only be traversed.
	 */
	cr_assert(chmod(h->dir, 0711) == 0);
	cr_assert(mkdir(h->spool_dir, 0700) == 0);
	cr_assert(chown(h->spool_dir, uid, gid) == 0);
	snprintf(run, sizeof(run), "%s/run", h->dir);
	cr_assert(mkdir(run, 0750) == 0);
	cr_assert(chown(run, uid, gid) == 0);
	snprintf(h->control_path, sizeof(h->control_path), "%s/control.sock",
	    run);
	HARNESS_START(h);
	it_assert_ids(h->pid, "Uid:", uid);
	it_assert_ids(h->pid, "Gid:", gid);
	/* Supplementary groups dropped too (setgroups/initgroups). */
	snprintf(path, sizeof(path), "/proc/%d/status", (int)h->pid);
	cr_assert((fp = fopen(path, "r")) != NULL);
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		for (tok = strtok_r(line + 7, " \t\n", &save); tok != NULL;
		    tok = strtok_r(NULL, " \t\n", &save))
			cr_assert(strcmp(tok, "0") != 0,
			    "still in supplementary group 0");
	}
	fclose(fp);
	/* And it still works as nobody: the spool is writable. */
	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	cr_assert(smtpc_submit(c, "a@ok.example", it_rcpt, 1, it_msg, NULL) ==
	    250, "%s", smtpc_last(c));
	smtpc_close(c);
	harness_free(h);
}

Test(it_posternd, control_socket_mode, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new();
	struct stat	 sb;
	json_t		*r;

	harness_append_conf(h, "control_socket_mode = \"0600\";");
	HARNESS_START(h);
	cr_assert(stat(h->control_path, &sb) == 0, "%s", h->control_path);
	cr_assert(S_ISSOCK(sb.st_mode));
	cr_assert((sb.st_mode & 07777) == 0600, "mode %o, want 600",
	    (unsigned int)(sb.st_mode & 07777));
	r = harness_control(h, "{\"cmd\":\"stats\"}");
	cr_assert(r != NULL, "%s", harness_err(h));
	cr_assert(json_is_true(json_object_get(r, "ok")));
	cr_assert(json_is_object(json_object_get(r, "queue")),
	    "stats without queue");
	json_decref(r);
	harness_free(h);
}
