/*
 * it_smtp.c: black-box tests of posternd's inbound SMTP (SPEC section 3)
 * and of the hostile inputs of SECURITY-CASES section 1.1, 1.3, 1.5 and
 * 1.8, against the real daemon on loopback.
 *
 * Each test starts its own daemon through the harness with one plaintext
 * listener on 127.0.0.1 (auth "none", relay allowed for 127/8 by the
 * default relay_networks) and checks replies by code and enhanced code,
 * never by free text.  A rejected message is checked three ways: the
 * expected single reply, an empty queue over the control socket, and no
 * per-message "from=<" line in the log; the daemon must still serve a new
 * session afterwards (SECURITY-CASES section 0).  Where the spec is silent
 * and a test encodes an interpretation, the comment says "(interp.)".
 */
#include "compat.h"

#include <sys/socket.h>

#include <netinet/in.h>

#include <arpa/inet.h>
#include <criterion/criterion.h>

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../support/harness.h"

#define IT_TIMEOUT	120

static const char it_msg[] =
    "From: a@ok.example\r\n"
    "To: b@ok.example\r\n"
    "Subject: test\r\n"
    "Date: Tue, 25 Nov 2026 10:00:00 +0000\r\n"
    "Message-ID: <it-smtp-1@ok.example>\r\n"
    "\r\n"
    "hello\r\n";

static const char *const it_rcpt[] = { "b@ok.example" };

/* A started daemon with one plaintext listener (index 0). */
static struct harness *
it_start(const char *limits, const char *relay_networks)
{
	struct harness	*h;

	cr_assert((h = harness_new()) != NULL, "harness_new failed");
	cr_assert(harness_listen(h, NULL, "none", "none") == 0, "%s",
	    harness_err(h));
	if (limits != NULL)
		harness_set_limits(h, limits);
	if (relay_networks != NULL)
		harness_set_relay_networks(h, relay_networks);
	HARNESS_START(h);
	return (h);
}

static struct smtpc *
it_ehlo(struct harness *h)
{
	struct smtpc	*c;

	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	return (c);
}

/* A session standing after "354" of a transaction a@ok.example -> b. */
static struct smtpc *
it_open_data(struct harness *h)
{
	struct smtpc	*c = it_ehlo(h);

	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	HARNESS_CMD(c, "RCPT TO:<b@ok.example>", "250 2.1.5");
	HARNESS_CMD(c, "DATA", "354");
	return (c);
}

static void
it_assert_nothing_queued(struct harness *h, const char *what)
{
	int	n = harness_queue_count(h);

	cr_assert(n == 0, "%s: queue has %d messages, want 0 (%s)", what, n,
	    harness_err(h));
	cr_assert(!harness_log_has_queued(h),
	    "%s: the log shows a queued message:\n%s", what,
	    harness_log_tail(h, 20));
}

/* After a reply that ends the session: no further reply, then EOF. */
static void
it_assert_closed(struct smtpc *c, const char *what)
{
	int	code;

	cr_assert(smtpc_read_reply(c, &code, NULL, 0, 15000) == -1,
	    "%s: a second reply arrived: \"%s\"", what, smtpc_last(c));
	cr_assert(smtpc_status(c) == SMTPC_EOF,
	    "%s: connection not closed within 15 s (%s)", what,
	    smtpc_last(c));
}

static void
it_assert_serves(struct harness *h, const char *what)
{
	cr_assert(harness_still_serves(h, 0),
	    "%s: daemon no longer serves: %s\n%s", what, harness_err(h),
	    harness_log_tail(h, 20));
}

/* Occurrences of header name (e.g. "Received:") at a name boundary. */
static int
it_count_header(const char *buf, size_t len, const char *name)
{
	size_t	nl = strlen(name), i;
	int	n = 0;

	for (i = 0; i + nl <= len; i++) {
		if (strncasecmp(buf + i, name, nl) != 0)
			continue;
		if (i > 0 && (isalnum((unsigned char)buf[i - 1]) ||
		    buf[i - 1] == '-'))
			continue;
		n++;
	}
	return (n);
}

Test(it_smtp, banner_and_ehlo_keywords, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start("max_message_size = 1234567;",
			    NULL);
	struct smtpc	*c;
	char		 err[256], text[SMTPC_REPLY_MAX];
	const char	*size;
	int		 code;

	c = smtpc_connect("127.0.0.1", harness_port(h, 0), err, sizeof(err));
	cr_assert(c != NULL, "%s", err);
	cr_assert(smtpc_read_reply(c, &code, text, sizeof(text), 0) == 0,
	    "greeting: %s", smtpc_last(c));
	cr_assert(code == 220, "greeting: got %s", smtpc_last(c));
	cr_assert(strncmp(text, "relay.test", 10) == 0,
	    "greeting names the configured hostname: got %s", smtpc_last(c));
	cr_assert(smtpc_ehlo(c, "client.test") == 250, "EHLO: %s",
	    smtpc_last(c));
	cr_assert(strncmp(smtpc_last(c), "250-relay.test", 14) == 0,
	    "EHLO first line: %s", smtpc_last(c));
	cr_assert(smtpc_has_ext(c, "PIPELINING"), "%s", smtpc_last(c));
	cr_assert(smtpc_has_ext(c, "8BITMIME"), "%s", smtpc_last(c));
	cr_assert(smtpc_has_ext(c, "ENHANCEDSTATUSCODES"), "%s",
	    smtpc_last(c));
	cr_assert(smtpc_has_ext(c, "SMTPUTF8"), "%s", smtpc_last(c));
	size = smtpc_ext_param(c, "SIZE");
	cr_assert(size != NULL && strcmp(size, "1234567") == 0,
	    "SIZE: got %s, want 1234567", size ? size : "(none)");
	cr_assert(!smtpc_has_ext(c, "STARTTLS"),
	    "STARTTLS offered on a tls=none listener: %s", smtpc_last(c));
	cr_assert(!smtpc_has_ext(c, "AUTH"),
	    "AUTH offered on an auth=none listener: %s", smtpc_last(c));
	cr_assert(!smtpc_has_ext(c, "CHUNKING"), "%s", smtpc_last(c));
	HARNESS_CMD(c, "NOOP", "250 2.0.0");
	HARNESS_CMD(c, "RSET", "250 2.0.0");
	HARNESS_CMD(c, "VRFY root", "252");
	HARNESS_CMD(c, "HELP", "214");
	HARNESS_CMD(c, "HELO client.test", "250");
	HARNESS_CMD(c, "QUIT", "221 2.0.0");
	cr_assert(smtpc_is_closed(c, 10000), "open after QUIT");
	smtpc_close(c);
	harness_free(h);
}

/* IN-58: replies in order, one per pipelined command. */
Test(it_smtp, pipelined_group_in_order, .timeout = IT_TIMEOUT)
{
	static const char grp[] =
	    "MAIL FROM:<a@ok.example>\r\n"
	    "RCPT TO:<b@ok.example>\r\n"
	    "RCPT TO:<no address here>\r\n"
	    "DATA\r\n";
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c = it_ehlo(h);
	char		*data, text[SMTPC_REPLY_MAX], qid[9];
	size_t		 dlen;
	int		 code;

	cr_assert(smtpc_send_raw(c, grp, sizeof(grp) - 1) == 0);
	HARNESS_EXPECT(c, "250 2.1.0", "pipelined MAIL");
	HARNESS_EXPECT(c, "250 2.1.5", "pipelined RCPT ok");
	HARNESS_EXPECT(c, "5xx", "pipelined RCPT with bad syntax");
	HARNESS_EXPECT(c, "354", "pipelined DATA");
	data = smtpc_dot_stuff(it_msg, strlen(it_msg), &dlen);
	cr_assert(smtpc_send_raw(c, data, dlen) == 0);
	free(data);
	cr_assert(smtpc_read_reply(c, &code, text, sizeof(text), 0) == 0,
	    "end of data: %s", smtpc_last(c));
	cr_assert(code == 250 && strncmp(text, "2.0.0", 5) == 0,
	    "end of data: %s", smtpc_last(c));
	cr_assert(smtpc_parse_qid(text, qid) == 0,
	    "no \"queued as XXXXXXXX\" in %s", smtpc_last(c));
	cr_assert(harness_queue_has(h, qid), "%s not in the queue (%s)", qid,
	    harness_err(h));
	smtpc_close(c);
	harness_free(h);
}

Test(it_smtp, second_transaction_same_connection, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c = it_ehlo(h);
	char		 q1[9], q2[9];

	cr_assert(smtpc_submit(c, "a@ok.example", it_rcpt, 1, it_msg, q1) ==
	    250, "first: %s", smtpc_last(c));
	cr_assert(smtpc_submit(c, "c@ok.example", it_rcpt, 1, it_msg, q2) ==
	    250, "second: %s", smtpc_last(c));
	cr_assert(q1[0] != '\0' && q2[0] != '\0' && strcmp(q1, q2) != 0,
	    "ids %s and %s", q1, q2);
	cr_assert(harness_queue_has(h, q1), "%s missing", q1);
	cr_assert(harness_queue_has(h, q2), "%s missing", q2);
	cr_assert(harness_log_wait(h, q1, 10), "no log line for %s", q1);
	HARNESS_CMD(c, "QUIT", "221 2.0.0");
	smtpc_close(c);
	harness_free(h);
}

/* SPEC 7: per-message log lines. */
Test(it_smtp, log_lines_per_message, .timeout = IT_TIMEOUT)
{
	static const char *const two[] = { "b@ok.example", "c@ok.example" };
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c = it_ehlo(h);
	char		 qid[9], re[128];

	cr_assert(smtpc_submit(c, "a@ok.example", two, 2, it_msg, qid) ==
	    250, "%s", smtpc_last(c));
	snprintf(re, sizeof(re), "%s: client=[^ ]*\\[127\\.0\\.0\\.1\\]", qid);
	cr_assert(harness_log_wait(h, re, 10), "want /%s/ in:\n%s", re,
	    harness_log_tail(h, 20));
	snprintf(re, sizeof(re), "%s: from=<a@ok\\.example>, size=[0-9]+, "
	    "nrcpt=2", qid);
	cr_assert(harness_log_wait(h, re, 10), "want /%s/ in:\n%s", re,
	    harness_log_tail(h, 20));
	smtpc_close(c);
	harness_free(h);
}

/* IN-19: 512 octets is a command line, 513 is too long. */
Test(it_smtp, command_line_limit, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c = it_ehlo(h);
	char		 line[600];

	/* "NOOP " + 505 + CRLF = 512 octets. */
	memcpy(line, "NOOP ", 5);
	memset(line + 5, 'a', 505);
	line[510] = '\0';
	HARNESS_CMD(c, line, "250");
	/* "NOOP " + 506 + CRLF = 513 octets. */
	memset(line + 5, 'a', 506);
	line[511] = '\0';
	HARNESS_CMD(c, line, "500 5.5.2");
	/* The session continues and the tail was not run as a command. */
	HARNESS_CMD(c, "NOOP", "250 2.0.0");
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	smtpc_close(c);
	harness_free(h);
}

Test(it_smtp, size_param_over_limit, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start("max_message_size = 10000;", NULL);
	struct smtpc	*c = it_ehlo(h);

	HARNESS_CMD(c, "MAIL FROM:<a@ok.example> SIZE=10001", "552 5.3.4");
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example> SIZE=9000", "250 2.1.0");
	smtpc_close(c);
	it_assert_nothing_queued(h, "SIZE over limit");
	harness_free(h);
}

/* IN-47, streamed: discard to the end of data, then 552. */
Test(it_smtp, streamed_size_over_limit, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start("max_message_size = 10000;", NULL);
	struct smtpc	*c = it_open_data(h);
	char		*body, *data;
	size_t		 i, len = 0, dlen;
	const size_t	 cap = 40000;

	body = malloc(cap);
	cr_assert(body != NULL);
	len = (size_t)snprintf(body, cap, "From: a@ok.example\r\n\r\n");
	for (i = 0; len + 80 < cap - 100; i++)
		len += (size_t)snprintf(body + len, cap - len, "%077zu\r\n",
		    i);
	data = smtpc_dot_stuff(body, len, &dlen);
	cr_assert(smtpc_send_raw(c, data, dlen) == 0, "%s", smtpc_error(c));
	HARNESS_EXPECT(c, "552 5.3.4", "end of data of a 40 kB message");
	free(body);
	free(data);
	smtpc_close(c);
	it_assert_nothing_queued(h, "streamed over limit");
	it_assert_serves(h, "streamed over limit");
	harness_free(h);
}

Test(it_smtp, max_recipients, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start("max_recipients = 3;", NULL);
	struct smtpc	*c = it_ehlo(h);

	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	HARNESS_CMD(c, "RCPT TO:<r1@ok.example>", "250 2.1.5");
	HARNESS_CMD(c, "RCPT TO:<r2@ok.example>", "250 2.1.5");
	HARNESS_CMD(c, "RCPT TO:<r3@ok.example>", "250 2.1.5");
	HARNESS_CMD(c, "RCPT TO:<r4@ok.example>", "452 4.5.3");
	HARNESS_CMD(c, "RCPT TO:<r5@ok.example>", "452 4.5.3");
	smtpc_close(c);
	harness_free(h);
}

Test(it_smtp, per_ip_connection_cap, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start("max_connections_per_ip = 2;",
			    NULL);
	struct smtpc	*a, *b, *x, *d;
	char		 err[256];
	int		 port = harness_port(h, 0);

	a = smtpc_connect_from("127.0.0.1", "127.0.0.1", port, err,
	    sizeof(err));
	cr_assert(a != NULL && smtpc_expect(a, "220"), "1st: %s", err);
	b = smtpc_connect_from("127.0.0.1", "127.0.0.1", port, err,
	    sizeof(err));
	cr_assert(b != NULL && smtpc_expect(b, "220"), "2nd: %s", err);
	x = smtpc_connect_from("127.0.0.1", "127.0.0.1", port, err,
	    sizeof(err));
	cr_assert(x != NULL, "%s", err);
	HARNESS_EXPECT(x, "421", "3rd connection from 127.0.0.1");
	cr_assert(smtpc_is_closed(x, 15000), "3rd left open after 421");
	/* Another address is not affected by 127.0.0.1's cap. */
	d = smtpc_connect_from("127.0.0.2", "127.0.0.1", port, err,
	    sizeof(err));
	cr_assert(d != NULL, "%s", err);
	HARNESS_EXPECT(d, "220", "connection from 127.0.0.2");
	/* The first two still work. */
	HARNESS_CMD(a, "NOOP", "250");
	HARNESS_CMD(b, "NOOP", "250");
	smtpc_close(a);
	smtpc_close(b);
	smtpc_close(x);
	smtpc_close(d);
	harness_free(h);
}

Test(it_smtp, total_connection_cap, .timeout = IT_TIMEOUT)
{
	static const char *const src[] = { "127.0.0.1", "127.0.0.2",
	    "127.0.0.3" };
	struct harness	*h = it_start("max_inbound_connections = 3;\n"
	    "  max_connections_per_ip = 10;", NULL);
	struct smtpc	*c[3], *x;
	char		 err[256];
	int		 port = harness_port(h, 0);
	size_t		 i;

	for (i = 0; i < 3; i++) {
		c[i] = smtpc_connect_from(src[i], "127.0.0.1", port, err,
		    sizeof(err));
		cr_assert(c[i] != NULL, "%s", err);
		HARNESS_EXPECT(c[i], "220", src[i]);
	}
	x = smtpc_connect_from("127.0.0.4", "127.0.0.1", port, err,
	    sizeof(err));
	cr_assert(x != NULL, "%s", err);
	HARNESS_EXPECT(x, "421", "4th connection overall");
	cr_assert(smtpc_is_closed(x, 15000), "4th left open after 421");
	for (i = 0; i < 3; i++) {
		HARNESS_CMD(c[i], "NOOP", "250");
		smtpc_close(c[i]);
	}
	smtpc_close(x);
	harness_free(h);
}

/* IN-60: idle past command_timeout. */
Test(it_smtp, command_timeout, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start("command_timeout = 2;", NULL);
	struct smtpc	*c = it_ehlo(h);

	smtpc_set_timeout(c, 30000);
	HARNESS_EXPECT(c, "421 4.4.2", "idle session");
	cr_assert(smtpc_is_closed(c, 15000), "left open after 421");
	smtpc_close(c);
	harness_free(h);
}

/*
 * One smuggling attempt on a fresh connection: payload (one write) after
 * 354 must get exactly one reply, want, then the close.
 */
static void
it_smuggle(struct harness *h, const char *name, const char *payload,
    size_t len, const char *want)
{
	struct smtpc	*c = it_open_data(h);
	char		 what[128];

	snprintf(what, sizeof(what), "%s end of data", name);
	cr_assert(smtpc_send_raw(c, payload, len) == 0, "%s: %s", name,
	    smtpc_error(c));
	HARNESS_EXPECT(c, want, what);
	it_assert_closed(c, name);
	smtpc_close(c);
	it_assert_nothing_queued(h, name);
	it_assert_serves(h, name);
}

/* Fake end fake, then a smuggled transaction, then the real end. */
static void
it_smuggle_form(struct harness *h, const char *name, const char *fake)
{
	char	buf[1024];
	int	n;

	n = snprintf(buf, sizeof(buf), "From: a@ok.example\r\n\r\nhi%s"
	    "MAIL FROM:<ceo@victim.example>\r\n"
	    "RCPT TO:<x@t.example>\r\n"
	    "DATA\r\n"
	    "From: ceo@victim.example\r\n"
	    "\r\n"
	    "smuggled\r\n"
	    ".\r\n", fake);
	it_smuggle(h, name, buf, (size_t)n, "550 5.5.2");
}

Test(it_smtp, in01_bare_lf_dot_lf, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);

	it_smuggle_form(h, "IN-01 \\n.\\n", "\n.\n");
	harness_free(h);
}

Test(it_smtp, in02_exim_triggers, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);

	it_smuggle_form(h, "IN-02 \\r\\n.\\n", "\r\n.\n");
	it_smuggle_form(h, "IN-02 \\n.\\r\\n", "\n.\r\n");
	harness_free(h);
}

Test(it_smtp, in03_bare_cr_forms, .timeout = IT_TIMEOUT)
{
	static const char *const forms[][2] = {
		{ "IN-03 \\r.\\r", "\r.\r" },
		{ "IN-03 \\r.\\n", "\r.\n" },
		{ "IN-03 \\n.\\r", "\n.\r" },
		{ "IN-03 \\r.\\r\\n", "\r.\r\n" },
		{ "IN-03 \\r\\n.\\r", "\r\n.\r" },
	};
	struct harness	*h = it_start(NULL, NULL);
	size_t		 i;

	for (i = 0; i < nitems(forms); i++)
		it_smuggle_form(h, forms[i][0], forms[i][1]);
	harness_free(h);
}

Test(it_smtp, in04_cr_cr_lf_not_collapsed, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);

	it_smuggle_form(h, "IN-04 \\r\\n.\\r\\r\\n", "\r\n.\r\r\n");
	it_smuggle_form(h, "IN-04 \\r\\r\\n.\\r\\r\\n", "\r\r\n.\r\r\n");
	harness_free(h);
}

Test(it_smtp, in06_bare_lf_in_body_line, .timeout = IT_TIMEOUT)
{
	static const char p[] = "From: a@ok.example\r\n\r\nl1\nl2\r\n.\r\n";
	struct harness	*h = it_start(NULL, NULL);

	it_smuggle(h, "IN-06", p, sizeof(p) - 1, "550 5.5.2");
	harness_free(h);
}

/* A command with a bare LF/CR: one 500 5.5.2, close, nothing run. */
static void
it_bad_command(struct harness *h, const char *name, const char *bytes,
    bool ehlo_first)
{
	struct smtpc	*c;

	if (ehlo_first)
		c = it_ehlo(h);
	else
		cr_assert((c = harness_session(h, 0)) != NULL, "%s",
		    harness_err(h));
	cr_assert(smtpc_send_raw(c, bytes, strlen(bytes)) == 0);
	HARNESS_EXPECT(c, "500 5.5.2", name);
	it_assert_closed(c, name);
	smtpc_close(c);
	it_assert_serves(h, name);
}

Test(it_smtp, in07_bare_lf_in_command, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);

	it_bad_command(h, "IN-07", "EHLO a\nMAIL FROM:<x@y.example>\r\n",
	    false);
	harness_free(h);
}

Test(it_smtp, in08_bare_cr_in_command, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);

	it_bad_command(h, "IN-08", "RSET\rMAIL FROM:<x@y.example>\r\n", true);
	harness_free(h);
}

/* The DATA part of the message, dot-stuffed and terminated. */
static char *
it_payload(const char *body, size_t *len)
{
	return (smtpc_dot_stuff(body, strlen(body), len));
}

static void
it_expect_queued(struct harness *h, struct smtpc *c, const char *what)
{
	char	text[SMTPC_REPLY_MAX], qid[9];
	int	code;

	cr_assert(smtpc_read_reply(c, &code, text, sizeof(text), 0) == 0,
	    "%s: %s", what, smtpc_last(c));
	cr_assert(code == 250 && smtpc_parse_qid(text, qid) == 0,
	    "%s: got %s", what, smtpc_last(c));
	cr_assert(harness_queue_has(h, qid), "%s: %s not queued", what, qid);
}

/* IN-09: a valid end of data split across writes is still the end. */
Test(it_smtp, in09_split_end_of_data, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c;
	char		*p;
	size_t		 len;

	/* "...\r\n." / "\r\n" */
	c = it_open_data(h);
	p = it_payload(it_msg, &len);
	cr_assert(smtpc_send_raw(c, p, len - 2) == 0);
	usleep(300000);
	cr_assert(smtpc_send_raw(c, p + len - 2, 2) == 0);
	it_expect_queued(h, c, "split before the final CRLF");
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);

	/* "...\r" / "\n.\r\n" */
	c = it_open_data(h);
	cr_assert(smtpc_send_raw(c, p, len - 4) == 0);
	usleep(300000);
	cr_assert(smtpc_send_raw(c, p + len - 4, 4) == 0);
	it_expect_queued(h, c, "split between CR and LF");
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);
	free(p);
	harness_free(h);
}

/* Send s one byte per write. */
static void
it_dribble(struct smtpc *c, const char *s, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++) {
		cr_assert(smtpc_send_raw(c, s + i, 1) == 0, "byte %zu: %s", i,
		    smtpc_error(c));
		if (i % 16 == 15)
			usleep(1000);
	}
}

Test(it_smtp, in09_one_byte_per_write_session, .timeout = IT_TIMEOUT)
{
	static const char *const cmds[][2] = {
		{ "EHLO client.test\r\n", "250" },
		{ "MAIL FROM:<a@ok.example>\r\n", "250 2.1.0" },
		{ "RCPT TO:<b@ok.example>\r\n", "250 2.1.5" },
		{ "DATA\r\n", "354" },
	};
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c;
	char		*p;
	size_t		 i, len;

	cr_assert((c = harness_session(h, 0)) != NULL, "%s", harness_err(h));
	for (i = 0; i < nitems(cmds); i++) {
		it_dribble(c, cmds[i][0], strlen(cmds[i][0]));
		HARNESS_EXPECT(c, cmds[i][1], cmds[i][0]);
	}
	p = it_payload(it_msg, &len);
	it_dribble(c, p, len);
	free(p);
	it_expect_queued(h, c, "one byte per write");
	it_dribble(c, "QUIT\r\n", 6);
	HARNESS_EXPECT(c, "221 2.0.0", "QUIT");
	smtpc_close(c);
	harness_free(h);
}

/*
 * IN-10: "..", "..x", ".x" are stored as ".", ".x", "x".  The queue file
 * must hold the un-stuffed body lines (interp.: with CRLF or LF endings,
 * whichever the spool format keeps).
 */
Test(it_smtp, in10_dot_unstuffing, .timeout = IT_TIMEOUT)
{
	static const char raw[] =
	    "From: a@ok.example\r\n"
	    "Subject: dots\r\n"
	    "\r\n"
	    "start-marker\r\n"
	    "..\r\n"
	    "..x\r\n"
	    ".x\r\n"
	    "end-marker\r\n"
	    ".\r\n";
	static const char want_crlf[] =
	    "start-marker\r\n.\r\n.x\r\nx\r\nend-marker\r\n";
	static const char want_lf[] = "start-marker\n.\n.x\nx\nend-marker\n";
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c = it_open_data(h);
	char		 text[SMTPC_REPLY_MAX], qid[9], *buf;
	size_t		 len;
	int		 code;

	cr_assert(smtpc_send_raw(c, raw, sizeof(raw) - 1) == 0);
	cr_assert(smtpc_read_reply(c, &code, text, sizeof(text), 0) == 0 &&
	    code == 250 && smtpc_parse_qid(text, qid) == 0, "got %s",
	    smtpc_last(c));
	buf = harness_spool_read(h, qid, &len);
	cr_assert(buf != NULL, "%s", harness_err(h));
	cr_assert(memmem(buf, len, want_crlf, sizeof(want_crlf) - 1) !=
	    NULL || memmem(buf, len, want_lf, sizeof(want_lf) - 1) != NULL,
	    "un-stuffed body lines not found in the queue file of %s", qid);
	free(buf);
	smtpc_close(c);
	harness_free(h);
}

/* Submit body and return the queue file's bytes. */
static char *
it_submit_and_read(struct harness *h, const char *body, size_t *len)
{
	struct smtpc	*c = it_ehlo(h);
	char		 qid[9], *buf;

	cr_assert(smtpc_submit(c, "a@ok.example", it_rcpt, 1, body, qid) ==
	    250, "%s", smtpc_last(c));
	smtpc_close(c);
	buf = harness_spool_read(h, qid, len);
	cr_assert(buf != NULL, "%s", harness_err(h));
	return (buf);
}

/* SPEC 3: Received always; Message-ID and Date only when missing. */
Test(it_smtp, trace_headers_added_when_missing, .timeout = IT_TIMEOUT)
{
	static const char bare[] =
	    "From: a@ok.example\r\nSubject: no date\r\n\r\nbody\r\n";
	struct harness	*h = it_start(NULL, NULL);
	char		*buf;
	size_t		 len;
	int		 n;

	buf = it_submit_and_read(h, bare, &len);
	n = it_count_header(buf, len, "Received:");
	cr_assert(n == 1, "Received: fields: got %d, want 1", n);
	n = it_count_header(buf, len, "Message-ID:");
	cr_assert(n == 1, "Message-ID: fields: got %d, want 1", n);
	n = it_count_header(buf, len, "Date:");
	cr_assert(n == 1, "Date: fields: got %d, want 1", n);
	cr_assert(memmem(buf, len, "relay.test", 10) != NULL,
	    "Received: does not name relay.test");
	free(buf);
	harness_free(h);
}

Test(it_smtp, trace_headers_not_duplicated, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);
	char		*buf;
	size_t		 len;
	int		 n;

	buf = it_submit_and_read(h, it_msg, &len);
	n = it_count_header(buf, len, "Received:");
	cr_assert(n == 1, "Received: fields: got %d, want 1", n);
	n = it_count_header(buf, len, "Message-ID:");
	cr_assert(n == 1, "Message-ID: fields: got %d, want 1", n);
	n = it_count_header(buf, len, "Date:");
	cr_assert(n == 1, "Date: fields: got %d, want 1", n);
	cr_assert(memmem(buf, len, "<it-smtp-1@ok.example>", 22) != NULL,
	    "the client's Message-ID was not kept");
	cr_assert(memmem(buf, len, "Tue, 25 Nov 2026 10:00:00 +0000", 31) !=
	    NULL, "the client's Date was not kept");
	free(buf);
	harness_free(h);
}

/* IN-30: not authenticated, not in relay_networks. */
Test(it_smtp, unauthenticated_relay_refused, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, "[ ]");
	struct smtpc	*c = it_ehlo(h);

	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "530 5.7.0");
	HARNESS_CMD(c, "RCPT TO:<b@ok.example>", "503 5.5.1");
	HARNESS_CMD(c, "DATA", "503 5.5.1");
	smtpc_close(c);
	it_assert_nothing_queued(h, "relay refused");
	harness_free(h);
}

/* IN-24 (and IN-11: BDAT with CHUNKING not offered). */
Test(it_smtp, in24_sequence_errors, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c;

	cr_assert((c = harness_session(h, 0)) != NULL, "%s", harness_err(h));
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "503 5.5.1");
	cr_assert(smtpc_ehlo(c, "client.test") == 250, "%s", smtpc_last(c));
	HARNESS_CMD(c, "RCPT TO:<b@ok.example>", "503 5.5.1");
	HARNESS_CMD(c, "mail from:<a@ok.example>", "250 2.1.0");
	HARNESS_CMD(c, "DATA", "503 5.5.1");
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "503 5.5.1");
	HARNESS_CMD(c, "FROBNICATE", "500 5.5.2");
	HARNESS_CMD(c, "BDAT 0 LAST", "500 5.5.1|502 5.5.1|500 5.5.2");
	HARNESS_CMD(c, "rcpt to:<b@ok.example>", "250 2.1.5");
	HARNESS_CMD(c, "RSET", "250 2.0.0");
	HARNESS_CMD(c, "QUIT", "221 2.0.0");
	smtpc_close(c);
	it_assert_nothing_queued(h, "sequence errors");
	harness_free(h);
}

/* IN-22: NUL in a command is rejected, never cut at. */
Test(it_smtp, in22_nul_in_command, .timeout = IT_TIMEOUT)
{
	static const char ehlo[] = "EHLO a\0b\r\n";
	static const char rcpt[] = "RCPT TO:<v@ok.example\0@evil.example>\r\n";
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c;

	cr_assert((c = harness_session(h, 0)) != NULL, "%s", harness_err(h));
	cr_assert(smtpc_send_raw(c, ehlo, sizeof(ehlo) - 1) == 0);
	HARNESS_EXPECT(c, "500 5.5.2|501 5.5.2", "EHLO with NUL");
	smtpc_close(c);

	c = it_ehlo(h);
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	cr_assert(smtpc_send_raw(c, rcpt, sizeof(rcpt) - 1) == 0);
	HARNESS_EXPECT(c, "500 5.5.2|501 5.5.2", "RCPT with NUL");
	/*
	 * No recipient was added: DATA has nobody to send to.  (interp.)
	 * Closing the session instead is as good.
	 */
	cr_assert(smtpc_send_line(c, "DATA") == 0 || smtpc_status(c) ==
	    SMTPC_EOF);
	cr_assert(smtpc_expect(c, "503 5.5.1|554 5.5.1") ||
	    smtpc_status(c) == SMTPC_EOF, "DATA after NUL RCPT: got %s",
	    smtpc_last(c));
	smtpc_close(c);
	it_assert_nothing_queued(h, "NUL in command");
	it_assert_serves(h, "NUL in command");
	harness_free(h);
}

/* IN-23 */
Test(it_smtp, in23_utf8_addresses, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c = it_ehlo(h);

	HARNESS_CMD(c, "MAIL FROM:<j\xc3\xb6" "e@ok.example>", "553 5.6.7");
	HARNESS_CMD(c, "MAIL FROM:<j\xc3\xb6" "e@ok.example> SMTPUTF8",
	    "250 2.1.0");
	HARNESS_CMD(c, "RSET", "250 2.0.0");
	HARNESS_CMD(c, "MAIL FROM:<j\xc3\x28" "e@ok.example> SMTPUTF8",
	    "500 5.5.2");
	smtpc_close(c);
	harness_free(h);
}

/* Run body (raw, already terminated) after 354; expect want. */
static void
it_data_reject(struct harness *h, const char *name, const char *raw,
    size_t len, const char *want)
{
	struct smtpc	*c = it_open_data(h);

	cr_assert(smtpc_send_raw(c, raw, len) == 0);
	HARNESS_EXPECT(c, want, name);
	smtpc_close(c);
	it_assert_nothing_queued(h, name);
}

/* IN-44 */
Test(it_smtp, in44_nul_in_body, .timeout = IT_TIMEOUT)
{
	static const char p[] = "From: a@ok.example\r\n\r\na\0b\r\n.\r\n";
	struct harness	*h = it_start(NULL, NULL);

	it_data_reject(h, "IN-44 NUL in body", p, sizeof(p) - 1, "554 5.6.0");
	it_assert_serves(h, "IN-44");
	harness_free(h);
}

/* IN-45: 1000 octets with CRLF is a text line, 1001 is not. */
Test(it_smtp, in45_text_line_limit, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c;
	char		 buf[1200];
	size_t		 n;

	n = (size_t)snprintf(buf, sizeof(buf), "From: a@ok.example\r\n\r\n");
	memset(buf + n, 'x', 999);
	memcpy(buf + n + 999, "\r\n.\r\n", 5);
	it_data_reject(h, "IN-45 1001-octet line", buf, n + 1004,
	    "550 5.5.2");

	c = it_open_data(h);
	/* 998 + CRLF = 1000 octets: fine. */
	cr_assert(smtpc_send_raw(c, buf, n) == 0);
	cr_assert(smtpc_send_raw(c, buf + n, 998) == 0);
	cr_assert(smtpc_send_raw(c, "\r\n.\r\n", 5) == 0);
	it_expect_queued(h, c, "1000-octet line");
	smtpc_close(c);
	harness_free(h);
}

/* IN-46 */
Test(it_smtp, in46_from_header_rules, .timeout = IT_TIMEOUT)
{
	static const char none[] = "Subject: x\r\n\r\nb\r\n.\r\n";
	static const char two[] = "From: a@ok.example\r\nFrom: c@ok.example\r\n"
	    "Subject: x\r\n\r\nb\r\n.\r\n";
	struct harness	*h = it_start(NULL, NULL);

	it_data_reject(h, "IN-46 no From:", none, sizeof(none) - 1,
	    "550 5.6.0");
	it_data_reject(h, "IN-46 two From:", two, sizeof(two) - 1,
	    "550 5.6.0");
	harness_free(h);
}

static char *
it_hops(int n, size_t *len)
{
	char	*buf;
	size_t	 cap = (size_t)n * 100 + 200, off = 0;
	int	 i;

	cr_assert((buf = malloc(cap)) != NULL);
	for (i = 0; i < n; i++)
		off += (size_t)snprintf(buf + off, cap - off,
		    "Received: from hop%d.example by hop%d.example; "
		    "Tue, 25 Nov 2026 10:00:00 +0000\r\n", i, i + 1);
	off += (size_t)snprintf(buf + off, cap - off,
	    "From: a@ok.example\r\n\r\nloop\r\n.\r\n");
	*len = off;
	return (buf);
}

/* IN-42: more than SMTP_MAX_HOPS (100) Received: is a loop. */
Test(it_smtp, in42_hop_count, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c;
	char		*buf;
	size_t		 len;

	buf = it_hops(101, &len);
	it_data_reject(h, "IN-42 101 Received:", buf, len, "554 5.4.6");
	free(buf);
	/* (interp.) 100 is still within the limit. */
	buf = it_hops(100, &len);
	c = it_open_data(h);
	cr_assert(smtpc_send_raw(c, buf, len) == 0);
	it_expect_queued(h, c, "100 Received:");
	free(buf);
	smtpc_close(c);
	harness_free(h);
}

/*
 * IN-12: content before its reply: 554 5.5.0 and the close, and the
 * pipelined MAIL or message is never run.  (interp.) The EHLO itself may
 * still be answered first, as Postfix does (it notices the early input
 * when it reads the next command); for DATA no 354 may come first.
 */
Test(it_smtp, in12_ehlo_not_last_in_group, .timeout = IT_TIMEOUT)
{
	static const char p[] = "EHLO x\r\nMAIL FROM:<a@b.example>\r\n";
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c;

	cr_assert((c = harness_session(h, 0)) != NULL, "%s", harness_err(h));
	cr_assert(smtpc_send_raw(c, p, sizeof(p) - 1) == 0);
	cr_assert(smtpc_expect(c, "554 5.5.0|250"), "EHLO+MAIL: got %s",
	    smtpc_last(c));
	if (smtpc_last_code(c) == 250)
		HARNESS_EXPECT(c, "554 5.5.0", "MAIL pipelined after EHLO");
	it_assert_closed(c, "IN-12 EHLO");
	smtpc_close(c);
	it_assert_serves(h, "IN-12 EHLO");
	harness_free(h);
}

Test(it_smtp, in12_data_with_content, .timeout = IT_TIMEOUT)
{
	static const char p[] = "DATA\r\nFrom: x@ok.example\r\n\r\nb\r\n.\r\n";
	struct harness	*h = it_start(NULL, NULL);
	struct smtpc	*c = it_ehlo(h);

	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	HARNESS_CMD(c, "RCPT TO:<b@ok.example>", "250 2.1.5");
	cr_assert(smtpc_send_raw(c, p, sizeof(p) - 1) == 0);
	HARNESS_EXPECT(c, "554 5.5.0", "DATA+content in one write");
	it_assert_closed(c, "IN-12 DATA");
	smtpc_close(c);
	it_assert_nothing_queued(h, "IN-12 DATA");
	harness_free(h);
}

/*
 * Pipelined replies on the direct write path (plaintext replies are
 * written straight to the socket after each read, with the write event
 * only while the socket is full): a client that pipelines 20 transactions
 * of 2,000 RCPTs (560 kB of replies) with a tiny receive buffer and does not
 * read for two seconds gets every reply, whole and in order, and the
 * session goes on to QUIT.  (On Linux loopback the server's send buffer
 * grows to 4 MiB, which takes all of this, so the short-write branch is
 * not reached here: no test reaches it, as filling 4 MiB needs more
 * pipelined commands than the junk and recipient limits allow in test
 * time.  It hands over to the bufferevent's own write event, the path TLS
 * sessions always take.)
 */
#define IT_BP_RCPTS	2000
#define IT_BP_TXNS	20

struct it_bp {
	int	 fd;
	char	*buf;
	size_t	 len;
	int	 error;
};

static void *
it_bp_send(void *arg)
{
	struct it_bp	*b = arg;
	size_t		 off = 0;
	ssize_t		 n;

	while (off < b->len) {
		n = send(b->fd, b->buf + off, b->len - off, MSG_NOSIGNAL);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			b->error = errno;
			break;
		}
		off += (size_t)n;
	}
	return (NULL);
}

/*
 * A raw connection to listener 0 (receive buffer rcvbuf when > 0) that has
 * had its EHLO answered; for tests that pipeline more than smtpc does.
 */
static int
it_raw_ehlo(struct harness *h, int rcvbuf)
{
	struct sockaddr_in	 sin;
	struct pollfd		 pfd;
	char			 buf[4096];
	size_t			 len = 0;
	ssize_t			 n;
	int			 fd;

	cr_assert((fd = socket(AF_INET, SOCK_STREAM, 0)) != -1);
	if (rcvbuf > 0)
		cr_assert(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		    sizeof(rcvbuf)) == 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)h->listeners[0].port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0,
	    "connect: %s", strerror(errno));
	cr_assert(send(fd, "EHLO raw.example\r\n", 18, 0) == 18);
	/* Banner and EHLO reply: EHLO must end a pipelined group. */
	buf[0] = '\0';
	while (strstr(buf, "\r\n250 ") == NULL) {
		pfd.fd = fd;
		pfd.events = POLLIN;
		cr_assert(poll(&pfd, 1, 10000) == 1, "no EHLO reply");
		cr_assert(len < sizeof(buf) - 1, "EHLO reply too long");
		n = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		cr_assert(n > 0, "EHLO reply: connection closed");
		len += (size_t)n;
		buf[len] = '\0';
	}
	return (fd);
}

/*
 * Send b->buf from a thread while reading every reply until EOF into a
 * NUL-terminated buffer of at most cap octets (returned, to free); after
 * waiting wait_s seconds first, without reading.  The send must complete.
 */
static char *
it_pipeline(struct it_bp *b, size_t cap, unsigned wait_s)
{
	struct pollfd	 pfd;
	pthread_t	 th;
	char		*in;
	size_t		 len = 0;
	ssize_t		 n;

	cr_assert_not_null(in = calloc(1, cap + 1));
	cr_assert(pthread_create(&th, NULL, it_bp_send, b) == 0);
	if (wait_s > 0)
		sleep(wait_s);
	for (;;) {
		pfd.fd = b->fd;
		pfd.events = POLLIN;
		cr_assert(poll(&pfd, 1, 60000) == 1, "replies stopped after "
		    "%zu octets", len);
		cr_assert(len < cap, "more replies than expected");
		n = recv(b->fd, in + len, cap - len, 0);
		cr_assert(n >= 0, "recv: %s", strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
	}
	in[len] = '\0';
	pthread_join(th, NULL);
	cr_assert_eq(b->error, 0, "send: %s", strerror(b->error));
	return (in);
}

/*
 * Check CRLF-separated replies against want(k) (a prefix; NULL: none
 * expected) without an assertion per line, which costs IPC each; the
 * number of replies.
 */
static size_t
it_check_replies(char *in, const char *(*want)(size_t))
{
	char	*line, *next, bad[128] = "";
	size_t	 k = 0;

	for (line = in; *line != '\0' && bad[0] == '\0'; line = next, k++) {
		const char *w = want(k);

		if ((next = strstr(line, "\r\n")) == NULL) {
			snprintf(bad, sizeof(bad), "reply %zu unterminated",
			    k);
			break;
		}
		*next = '\0';
		next += 2;
		if (w == NULL || strncmp(line, w, strlen(w)) != 0)
			snprintf(bad, sizeof(bad), "reply %zu: \"%.60s\", "
			    "want \"%s\"", k, line, w != NULL ? w : "none");
	}
	cr_assert(bad[0] == '\0', "%s", bad);
	return (k);
}

/* The expected reply number k of the pipelined stream. */
static const char *
it_bp_want(size_t k)
{
	size_t	per = IT_BP_RCPTS + 2;	/* MAIL, RCPTs, RSET */

	if (k >= IT_BP_TXNS * per)
		return (k == IT_BP_TXNS * per ? "221 " : NULL);
	k %= per;
	return (k == 0 ? "250 2.1.0 " : k <= IT_BP_RCPTS ? "250 2.1.5 " :
	    "250 2.0.0 ");
}

Test(it_smtp, output_backpressure_pipelined_rcpts, .timeout = 120)
{
	struct harness	*h = it_start("max_recipients = 2000;", NULL);
	struct it_bp	 b;
	char		*in;
	size_t		 i, t;

	memset(&b, 0, sizeof(b));
	b.fd = it_raw_ehlo(h, 4096);
	cr_assert_not_null(b.buf = calloc(1,
	    64 + (size_t)IT_BP_TXNS * (IT_BP_RCPTS + 2) * 40));
	for (t = 0; t < IT_BP_TXNS; t++) {
		b.len += (size_t)sprintf(b.buf + b.len,
		    "MAIL FROM:<a@ok.example>\r\n");
		for (i = 0; i < IT_BP_RCPTS; i++)
			b.len += (size_t)sprintf(b.buf + b.len,
			    "RCPT TO:<r%zu@ok.example>\r\n", i);
		b.len += (size_t)sprintf(b.buf + b.len, "RSET\r\n");
	}
	b.len += (size_t)sprintf(b.buf + b.len, "QUIT\r\n");
	/* Not reading for a while: the server must stop, not buffer. */
	in = it_pipeline(&b,
	    (size_t)IT_BP_TXNS * (IT_BP_RCPTS + 2) * 24 + 4096, 2);
	close(b.fd);
	cr_assert_eq(it_check_replies(in, it_bp_want),
	    (size_t)IT_BP_TXNS * (IT_BP_RCPTS + 2) + 1);
	free(in);
	free(b.buf);
	it_assert_serves(h, "after backpressure");
	harness_free(h);
}

/*
 * IN-28 at scale: with max_recipients = 30000, a pipelined transaction of
 * 30,000 distinct recipients, each also repeated later, and
 * then one more: every repeat is accepted with 250 and not counted, so the
 * one more is the 30,001st distinct and gets 452.  The duplicate check is
 * a hash set: this also runs in a blink where the old linear scan took
 * seconds.
 */
#define IT_DUP_N	30000

/* 250 for MAIL and every RCPT, 452 for the one more, then 221. */
static const char *
it_dup_want(size_t k)
{
	if (k == 0)
		return ("250 2.1.0 ");
	if (k <= 2 * IT_DUP_N)
		return ("250 2.1.5 ");
	if (k == 2 * IT_DUP_N + 1)
		return ("452 4.5.3 ");
	return (k == 2 * IT_DUP_N + 2 ? "221 " : NULL);
}

Test(it_smtp, in28_duplicates_in_large_transaction, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start("max_recipients = 30000;", NULL);
	struct it_bp	 b;
	char		*in;
	size_t		 i;

	memset(&b, 0, sizeof(b));
	b.fd = it_raw_ehlo(h, 0);
	cr_assert_not_null(b.buf = calloc(1, 64 + 3 * IT_DUP_N * 40));
	b.len = (size_t)sprintf(b.buf, "MAIL FROM:<a@ok.example>\r\n");
	for (i = 0; i < IT_DUP_N; i++)
		b.len += (size_t)sprintf(b.buf + b.len,
		    "RCPT TO:<d%zu@ok.example>\r\n", i);
	/* The repeats, in another order. */
	for (i = 0; i < IT_DUP_N; i++)
		b.len += (size_t)sprintf(b.buf + b.len,
		    "RCPT TO:<d%zu@ok.example>\r\n", (i * 7919) % IT_DUP_N);
	b.len += (size_t)sprintf(b.buf + b.len,
	    "RCPT TO:<one-more@ok.example>\r\nQUIT\r\n");
	in = it_pipeline(&b, 3 * IT_DUP_N * 24 + 4096, 0);
	close(b.fd);
	cr_assert_eq(it_check_replies(in, it_dup_want),
	    (size_t)2 * IT_DUP_N + 3);
	free(in);
	free(b.buf);
	harness_free(h);
}
