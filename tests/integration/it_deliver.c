/*
 * it_deliver.c: black-box tests of the delivery engine (SPEC section 4,
 * SECURITY-CASES section 2) against real peers on loopback.
 *
 * Each test runs its own posternd, its own dnsmasq (MX, A and null MX
 * records under .test, NXDOMAIN for the rest) and one fakemx sink per MX
 * host, each on its own 127.0.0.x address and on the test's own port
 * (harness_mx_port), so tests may run in parallel.  Mail is submitted on
 * the daemon's listener and observed where it lands: the sinks' recorded
 * messages, stats.json and transcripts, the daemon's log lines, and the
 * control socket.  The sender's domain snd.test has a sink too, so a
 * bounce (DSN from <>) is delivered and can be read.  Nothing waits on a
 * fixed sleep: every check polls for its condition with a deadline.
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "../support/harness.h"

#define IT_TIMEOUT	150	/* s per test: ASan daemons on 2 cores */
#define IT_WAIT		60	/* s, one polled condition */
#define IT_SENDER	"alice@snd.test"
#define IT_MX_OK	"127.0.0.21"	/* mx.ok.test */
#define IT_MX_SND	"127.0.0.22"	/* mx.snd.test: receives DSNs */
/* Retries come quickly (retry.initial has a minimum of 1 s). */
#define IT_RETRY	"initial = 1; max_interval = 2; factor = 2.0;"
/*
 * Retries that never come during a test: the test triggers each attempt
 * (flush), so none is under way when it stops the daemon.
 */
#define IT_RETRY_SLOW	"initial = 600; max_interval = 1200; factor = 2.0;"

/* Records every test has: ok.test and the sender's domain. */
static const char *const it_dns_base[] = {
	"--mx-host=ok.test,mx.ok.test,10",
	"--host-record=mx.ok.test," IT_MX_OK,
	"--mx-host=snd.test,mx.snd.test,10",
	"--host-record=mx.snd.test," IT_MX_SND,
	NULL
};

/* A harness with one plain listener and dnsmasq on base + extra records. */
static struct harness *
it_new(const char *const *extra)
{
	const char	*args[64];
	struct harness	*h;
	size_t		 n = 0, i;

	h = harness_new();
	cr_assert(h != NULL, "harness_new");
	cr_assert(h->err[0] == '\0', "harness_new: %s", harness_err(h));
	cr_assert(harness_listen(h, NULL, "none", "none") == 0,
	    "listen: %s", harness_err(h));
	/* The CA file that delivery.ca_file names; inbound stays plain. */
	cr_assert(harness_use_tls(h) == 0, "certs: %s", harness_err(h));
	h->tls = false;
	for (i = 0; it_dns_base[i] != NULL; i++)
		args[n++] = it_dns_base[i];
	for (i = 0; extra != NULL && extra[i] != NULL && n < 63; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	cr_assert(harness_dns_start(h, args) == 0, "dnsmasq: %s",
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

/*
 * Start the daemon with delivery pointed at the test's dnsmasq and sink
 * port, plus the statements in extra (pool_size, tls ...), tls_policy
 * entries (may be NULL) and the retry statements.
 */
static void
it_start_retry(struct harness *h, const char *extra, const char *policy,
    const char *retry)
{
	char	d[2048];

	snprintf(d, sizeof(d), "dns_servers = [ \"127.0.0.1:%d\" ];\n"
	    "  port = %d;\n  ca_file = \"%s\";\n  connect_timeout = 10;\n"
	    "  %s", harness_dns_port(h), harness_mx_port(h), h->ca_path,
	    extra != NULL ? extra : "");
	harness_set_delivery(h, d);
	harness_set_tls_policy(h, policy);
	harness_set_retry(h, retry);
	HARNESS_START(h);
}

/* it_start_retry with fast retries. */
static void
it_start(struct harness *h, const char *extra, const char *policy)
{
	it_start_retry(h, extra, policy, IT_RETRY);
}

/* A message of about 600 octets, so that drop-after=100 cuts it. */
static void
it_body(char *buf, size_t len, const char *to, const char *msgid)
{
	snprintf(buf, len,
	    "From: Alice <" IT_SENDER ">\r\n"
	    "To: <%s>\r\n"
	    "Subject: delivery test\r\n"
	    "Message-ID: <%s>\r\n"
	    "\r\n"
	    "This message is part of the postern delivery tests.\r\n"
	    "Line two of the body, long enough to be cut by a sink\r\n"
	    "that drops the connection in the middle of DATA.\r\n"
	    ".A line that starts with a dot must arrive intact.\r\n"
	    "0123456789012345678901234567890123456789012345678901234567\r\n"
	    "0123456789012345678901234567890123456789012345678901234567\r\n"
	    "0123456789012345678901234567890123456789012345678901234567\r\n"
	    "0123456789012345678901234567890123456789012345678901234567\r\n"
	    "The end.\r\n", to, msgid);
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

/* Submit n messages to rcpt with Message-IDs <prefix-I@client.test>. */
static void
it_submit_many(struct harness *h, const char *rcpt, int n,
    const char *prefix)
{
	const char	*rcpts[1] = { rcpt };
	struct smtpc	*c;
	char		 msgid[128], qid[9];
	int		 i;

	c = harness_session_ehlo(h, 0);
	cr_assert(c != NULL, "session: %s", harness_err(h));
	for (i = 0; i < n; i++) {
		snprintf(msgid, sizeof(msgid), "%s-%d@client.test", prefix, i);
		it_submit(c, rcpts, 1, msgid, qid);
	}
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);
}

/* Submit one message to rcpt; returns nothing, qid filled. */
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

/* The string value of key in the sink's message n, or "" (static). */
static const char *
it_sink_field(struct harness *h, int idx, int n, const char *key)
{
	static char	 buf[1024];
	json_t		*j, *v;

	buf[0] = '\0';
	if ((j = harness_mx_json(h, idx, n)) == NULL)
		return (buf);
	if (json_is_string(v = json_object_get(j, key)))
		strlcpy(buf, json_string_value(v), sizeof(buf));
	else if (json_is_array(v)) {
		size_t	 i;
		json_t	*e;

		json_array_foreach(v, i, e) {
			if (i > 0)
				strlcat(buf, ",", sizeof(buf));
			if (json_is_string(e))
				strlcat(buf, json_string_value(e),
				    sizeof(buf));
		}
	} else if (json_is_true(v))
		strlcpy(buf, "true", sizeof(buf));
	else if (json_is_false(v))
		strlcpy(buf, "false", sizeof(buf));
	json_decref(j);
	return (buf);
}

/* An integer at "a.b" in the daemon's stats, or -1. */
static long long
it_stat(struct harness *h, const char *group, const char *key)
{
	json_t		*r, *g, *v;
	long long	 n = -1;

	r = harness_control(h, "{\"cmd\":\"stats\"}");
	cr_assert(r != NULL, "stats: %s", harness_err(h));
	if (json_is_object(g = json_object_get(r, group)) &&
	    json_is_integer(v = json_object_get(g, key)))
		n = (long long)json_integer_value(v);
	json_decref(r);
	return (n);
}

/* Ask for an attempt of qid now. */
static void
it_flush(struct harness *h, const char *qid)
{
	char	 req[128];
	json_t	*r;

	snprintf(req, sizeof(req), "{\"cmd\":\"flush\",\"id\":\"%s\"}",
	    qid);
	r = harness_control(h, req);
	cr_assert(r != NULL, "flush: %s", harness_err(h));
	cr_assert(json_is_true(json_object_get(r, "ok")), "flush %s: not ok",
	    qid);
	json_decref(r);
}

#define IT_WAIT_QUEUE_EMPTY(h)						\
	cr_assert(harness_wait_queue_count((h), 0, IT_WAIT),		\
	    "queue not empty after %d s: got %d messages, want 0; "	\
	    "log:\n%s", IT_WAIT, harness_queue_count(h),		\
	    harness_log_tail((h), 30))

#define IT_WAIT_SINK(h, idx, n)						\
	cr_assert(harness_mx_wait_messages((h), (idx), (n), IT_WAIT),	\
	    "sink %d: got %d messages after %d s, want %d; log:\n%s",	\
	    (idx), harness_mx_messages((h), (idx)), IT_WAIT, (n),	\
	    harness_log_tail((h), 30))

#define IT_WAIT_LOG(h, re)						\
	cr_assert(harness_log_wait((h), (re), IT_WAIT),			\
	    "no log line matching /%s/ after %d s; log:\n%s", (re),	\
	    IT_WAIT, harness_log_tail((h), 30))

/* Poll until n log lines match re. */
static void
it_wait_count(struct harness *h, const char *re, int n)
{
	int	i;

	for (i = 0; i < IT_WAIT * 10; i++) {
		if (harness_log_count(h, re) >= n)
			return;
		usleep(100000);
	}
	cr_assert_fail("lines matching /%s/: got %d after %d s, want %d; "
	    "log:\n%s", re, harness_log_count(h, re), IT_WAIT, n,
	    harness_log_tail(h, 30));
}

/*
 * The DSN at the sender's sink (index snd): from <>, to the sender, a
 * multipart/report naming rcpt and every string in want.
 */
static void
it_check_dsn(struct harness *h, int snd, const char *rcpt,
    const char *const *want)
{
	char	*eml, needle[300];
	size_t	 i;

	IT_WAIT_SINK(h, snd, 1);
	cr_assert_eq(harness_mx_messages(h, snd), 1, "DSNs at the sender's "
	    "sink: got %d, want 1", harness_mx_messages(h, snd));
	cr_assert_str_eq(it_sink_field(h, snd, 1, "mail_from"), "",
	    "DSN MAIL FROM: got <%s>, want <>",
	    it_sink_field(h, snd, 1, "mail_from"));
	cr_assert_str_eq(it_sink_field(h, snd, 1, "rcpt_to"), IT_SENDER,
	    "DSN RCPT TO: got %s, want %s",
	    it_sink_field(h, snd, 1, "rcpt_to"), IT_SENDER);
	eml = harness_mx_read(h, snd, 1, "eml", NULL);
	cr_assert(eml != NULL, "cannot read the DSN");
	cr_assert(strstr(eml, "multipart/report") != NULL &&
	    strstr(eml, "report-type=delivery-status") != NULL,
	    "DSN is not a multipart/report delivery-status:\n%s", eml);
	cr_assert(strstr(eml, "message/delivery-status") != NULL,
	    "DSN has no message/delivery-status part:\n%s", eml);
	snprintf(needle, sizeof(needle), "Final-Recipient: rfc822; %s", rcpt);
	cr_assert(strstr(eml, needle) != NULL, "DSN lacks \"%s\":\n%s",
	    needle, eml);
	for (i = 0; want != NULL && want[i] != NULL; i++)
		cr_assert(strstr(eml, want[i]) != NULL,
		    "DSN lacks \"%s\":\n%s", want[i], eml);
	free(eml);
}

/*
 * Routing.
 */

Test(it_deliver, mx_lowest_preference_first, .timeout = IT_TIMEOUT)
{
	static const char *const dns[] = {
		"--mx-host=pref.test,mx20.pref.test,20",
		"--mx-host=pref.test,mx10.pref.test,10",
		"--mx-host=pref.test,mx30.pref.test,30",
		"--host-record=mx10.pref.test,127.0.0.31",
		"--host-record=mx20.pref.test,127.0.0.32",
		"--host-record=mx30.pref.test,127.0.0.33",
		NULL
	};
	struct harness	*h = it_new(dns);
	int		 m10, m20, m30;

	m20 = it_mx(h, "127.0.0.32", NULL);
	m10 = it_mx(h, "127.0.0.31", NULL);
	m30 = it_mx(h, "127.0.0.33", NULL);
	it_start(h, "pool_size = 5; max_per_destination = 5;", NULL);
	it_submit_many(h, "bob@pref.test", 3, "pref");
	IT_WAIT_SINK(h, m10, 3);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_eq(harness_mx_stat(h, m20, "connections_total"), 0,
	    "preference 20 host: got %lld connections, want 0",
	    harness_mx_stat(h, m20, "connections_total"));
	cr_assert_eq(harness_mx_stat(h, m30, "connections_total"), 0,
	    "preference 30 host: got %lld connections, want 0",
	    harness_mx_stat(h, m30, "connections_total"));
	cr_assert(harness_log_grep(h, "to=<bob@pref\\.test>, "
	    "relay=mx10\\.pref\\.test\\[127\\.0\\.0\\.31\\]:[0-9]+, .*"
	    "status=sent"), "no status=sent line via mx10; log:\n%s",
	    harness_log_tail(h, 20));
	harness_free(h);
}

Test(it_deliver, mx_next_host_when_first_refuses, .timeout = IT_TIMEOUT)
{
	static const char *const dns[] = {
		"--mx-host=pref.test,mx10.pref.test,10",
		"--mx-host=pref.test,mx20.pref.test,20",
		/* Nothing listens on .34: connection refused. */
		"--host-record=mx10.pref.test,127.0.0.34",
		"--host-record=mx20.pref.test,127.0.0.35",
		NULL
	};
	struct harness	*h = it_new(dns);
	int		 m20;
	char		 qid[9];

	m20 = it_mx(h, "127.0.0.35", NULL);
	it_start(h, "pool_size = 5; max_per_destination = 5;", NULL);
	it_submit_one(h, "bob@pref.test", "next-mx@client.test", qid);
	IT_WAIT_SINK(h, m20, 1);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_eq(it_sink_count(h, m20, "next-mx@client.test"), 1,
	    "copies at the preference 20 host: got %d, want 1",
	    it_sink_count(h, m20, "next-mx@client.test"));
	/* Same attempt: the refusal is not a deferral of the message. */
	cr_assert(!harness_log_grep(h, "to=<bob@pref\\.test>.*"
	    "status=deferred"), "the refused first MX deferred the message "
	    "instead of trying the next one; log:\n%s",
	    harness_log_tail(h, 20));
	harness_free(h);
}

Test(it_deliver, a_record_when_no_mx, .timeout = IT_TIMEOUT)
{
	static const char *const dns[] = {
		"--host-record=arec.test,127.0.0.36",
		NULL
	};
	struct harness	*h = it_new(dns);
	int		 a;
	char		 qid[9];

	a = it_mx(h, "127.0.0.36", NULL);
	it_start(h, "pool_size = 5; max_per_destination = 5;", NULL);
	it_submit_one(h, "bob@arec.test", "arec@client.test", qid);
	IT_WAIT_SINK(h, a, 1);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_str_eq(it_sink_field(h, a, 1, "rcpt_to"), "bob@arec.test",
	    "RCPT at the A host: got %s, want bob@arec.test",
	    it_sink_field(h, a, 1, "rcpt_to"));
	cr_assert(harness_log_grep(h, "to=<bob@arec\\.test>, "
	    "relay=arec\\.test\\[127\\.0\\.0\\.36\\]:[0-9]+, .*status=sent"),
	    "no status=sent line via arec.test's address; log:\n%s",
	    harness_log_tail(h, 20));
	harness_free(h);
}

Test(it_deliver, null_mx_fails_at_once, .timeout = IT_TIMEOUT)
{
	static const char *const dns[] = {
		"--dns-rr=nullmx.test,15,000000",
		NULL
	};
	static const char *const want[] = { "Status: 5.1.10",
		"null MX", NULL };
	struct harness	*h = it_new(dns);
	int		 ok, snd;
	char		 qid[9];

	ok = it_mx(h, IT_MX_OK, NULL);
	snd = it_mx(h, IT_MX_SND, NULL);
	it_start(h, "pool_size = 5; max_per_destination = 5;", NULL);
	it_submit_one(h, "bob@nullmx.test", "nullmx@client.test", qid);
	IT_WAIT_LOG(h, "to=<bob@nullmx\\.test>, relay=none, .*dsn=5\\.1\\.10, "
	    "status=bounced");
	it_check_dsn(h, snd, "bob@nullmx.test", want);
	IT_WAIT_QUEUE_EMPTY(h);
	/* At once: one attempt, never deferred. */
	cr_assert_eq(harness_log_count(h, "to=<bob@nullmx\\.test>"), 1,
	    "delivery lines for the null MX recipient: got %d, want 1",
	    harness_log_count(h, "to=<bob@nullmx\\.test>"));
	cr_assert_eq(harness_mx_stat(h, ok, "connections_total"), 0,
	    "connections to an unrelated sink: got %lld, want 0",
	    harness_mx_stat(h, ok, "connections_total"));
	harness_free(h);
}

Test(it_deliver, nxdomain_fails_at_once, .timeout = IT_TIMEOUT)
{
	static const char *const want[] = { "Status: 5.1.2", NULL };
	struct harness	*h = it_new(NULL);
	int		 snd;
	char		 qid[9];

	(void)it_mx(h, IT_MX_OK, NULL);
	snd = it_mx(h, IT_MX_SND, NULL);
	it_start(h, "pool_size = 5; max_per_destination = 5;", NULL);
	it_submit_one(h, "bob@nowhere.test", "nxdomain@client.test", qid);
	IT_WAIT_LOG(h, "to=<bob@nowhere\\.test>, relay=none, .*dsn=5\\.1\\.2, "
	    "status=bounced");
	it_check_dsn(h, snd, "bob@nowhere.test", want);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_eq(harness_log_count(h, "to=<bob@nowhere\\.test>"), 1,
	    "delivery lines for the NXDOMAIN recipient: got %d, want 1",
	    harness_log_count(h, "to=<bob@nowhere\\.test>"));
	harness_free(h);
}

/*
 * The pool.
 */

Test(it_deliver, pool_size_bounds_all_destinations, .timeout = IT_TIMEOUT)
{
	static const char *const dns[] = {
		"--mx-host=p1.test,mx.p1.test,10",
		"--mx-host=p2.test,mx.p2.test,10",
		"--mx-host=p3.test,mx.p3.test,10",
		"--host-record=mx.p1.test,127.0.0.41",
		"--host-record=mx.p2.test,127.0.0.42",
		"--host-record=mx.p3.test,127.0.0.43",
		NULL
	};
	struct harness	*h = it_new(dns);
	char		 l2[64], l3[64];
	const char	*args[] = { "--listen", l2, "--listen", l3,
			    "--rule", "dot:stall=0.3", NULL };
	long long	 cmax, peak;
	int		 sink;

	/* One sink behind all three domains: its stats see every socket. */
	snprintf(l2, sizeof(l2), "127.0.0.42:%d", harness_mx_port(h));
	snprintf(l3, sizeof(l3), "127.0.0.43:%d", harness_mx_port(h));
	sink = it_mx(h, "127.0.0.41", args);
	/* 3 domains x 2 per destination = 6 > pool_size 3. */
	it_start(h, "pool_size = 3; max_per_destination = 2;", NULL);
	it_submit_many(h, "bob@p1.test", 10, "p1");
	it_submit_many(h, "bob@p2.test", 10, "p2");
	it_submit_many(h, "bob@p3.test", 10, "p3");
	IT_WAIT_SINK(h, sink, 30);
	IT_WAIT_QUEUE_EMPTY(h);
	cmax = harness_mx_stat(h, sink, "connections_max");
	cr_assert(cmax >= 1 && cmax <= 3, "concurrent upstream connections: "
	    "got %lld, want 1..3 (pool_size)", cmax);
	peak = it_stat(h, "pool", "peak");
	cr_assert(peak >= 1 && peak <= 3, "stats pool.peak: got %lld, "
	    "want 1..3", peak);
	cr_assert_eq(harness_mx_messages(h, sink), 30, "messages at the "
	    "sink: got %d, want 30", harness_mx_messages(h, sink));
	harness_free(h);
}

Test(it_deliver, max_per_destination_bounds_one_domain,
    .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	const char	*args[] = { "--rule", "dot:stall=0.3", NULL };
	long long	 cmax;
	int		 ok;

	ok = it_mx(h, IT_MX_OK, args);
	it_start(h, "pool_size = 10; max_per_destination = 2;", NULL);
	it_submit_many(h, "bob@ok.test", 12, "perdest");
	IT_WAIT_SINK(h, ok, 12);
	IT_WAIT_QUEUE_EMPTY(h);
	cmax = harness_mx_stat(h, ok, "connections_max");
	cr_assert(cmax >= 1 && cmax <= 2, "concurrent connections to one "
	    "destination: got %lld, want 1..2 (max_per_destination)", cmax);
	harness_free(h);
}

Test(it_deliver, idle_connection_reused_with_rset, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	long long	 total, rset;
	int		 ok, i;
	char		 msgid[64];

	ok = it_mx(h, IT_MX_OK, NULL);
	it_start(h, "pool_size = 1; max_per_destination = 1; "
	    "idle_timeout = 60;", NULL);
	it_submit_many(h, "bob@ok.test", 20, "reuse");
	IT_WAIT_SINK(h, ok, 20);
	IT_WAIT_QUEUE_EMPTY(h);
	total = harness_mx_stat(h, ok, "connections_total");
	rset = harness_mx_stat(h, ok, "rset");
	cr_assert(total >= 1 && total < 20, "connections for 20 messages: "
	    "got %lld, want fewer than 20", total);
	/* Every message on a reused connection follows an RSET. */
	cr_assert(rset >= 20 - total, "RSETs: got %lld, want >= %lld "
	    "(messages - connections)", rset, 20 - total);
	for (i = 0; i < 20; i++) {
		snprintf(msgid, sizeof(msgid), "reuse-%d@client.test", i);
		cr_assert_eq(it_sink_count(h, ok, msgid), 1, "copies of %s: "
		    "got %d, want 1", msgid, it_sink_count(h, ok, msgid));
	}
	harness_free(h);
}

/*
 * Faults.
 */

Test(it_deliver, drop_mid_data_retried_once, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	const char	*args[] = { "--rule", "data:drop-after=100:1", NULL };
	int		 ok;
	char		 qid[9];

	ok = it_mx(h, IT_MX_OK, args);
	it_start(h, "pool_size = 5; max_per_destination = 5;", NULL);
	it_submit_one(h, "bob@ok.test", "drop@client.test", qid);
	IT_WAIT_LOG(h, "to=<bob@ok\\.test>, .*dsn=4\\.[0-9.]+, "
	    "status=deferred");
	IT_WAIT_SINK(h, ok, 1);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_eq(it_sink_count(h, ok, "drop@client.test"), 1,
	    "copies delivered: got %d, want 1",
	    it_sink_count(h, ok, "drop@client.test"));
	cr_assert_eq(harness_mx_messages(h, ok), 1, "messages at the sink: "
	    "got %d, want 1", harness_mx_messages(h, ok));
	cr_assert(harness_log_grep(h, "to=<bob@ok\\.test>, .*"
	    "dsn=4\\.4\\.2, status=deferred"), "the drop in DATA was not "
	    "deferred as 4.4.2 (OUT-12); log:\n%s", harness_log_tail(h, 20));
	cr_assert_eq(harness_log_count(h, "to=<bob@ok\\.test>, .*"
	    "status=sent"), 1, "status=sent lines: got %d, want 1",
	    harness_log_count(h, "to=<bob@ok\\.test>, .*status=sent"));
	harness_free(h);
}

Test(it_deliver, final_451_then_250_delivers_once, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	const char	*args[] = { "--rule", "dot:451 4.3.0 try later:1",
			    NULL };
	int		 ok;
	char		 qid[9];

	ok = it_mx(h, IT_MX_OK, args);
	it_start(h, "pool_size = 5; max_per_destination = 5;", NULL);
	it_submit_one(h, "bob@ok.test", "tempfail@client.test", qid);
	IT_WAIT_LOG(h, "to=<bob@ok\\.test>, .*dsn=4\\.3\\.0, "
	    "status=deferred \\(451 4\\.3\\.0 try later\\)");
	IT_WAIT_SINK(h, ok, 1);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_eq(harness_mx_messages(h, ok), 1, "messages at the sink: "
	    "got %d, want 1", harness_mx_messages(h, ok));
	cr_assert_eq(it_sink_count(h, ok, "tempfail@client.test"), 1,
	    "copies delivered: got %d, want 1",
	    it_sink_count(h, ok, "tempfail@client.test"));
	cr_assert_eq(harness_log_count(h, "to=<bob@ok\\.test>, .*"
	    "status=sent"), 1, "status=sent lines: got %d, want 1",
	    harness_log_count(h, "to=<bob@ok\\.test>, .*status=sent"));
	/* A deferral is not a failure: nothing goes back to the sender. */
	cr_assert(!harness_log_grep(h, "non-delivery notification"),
	    "a DSN was made for a deferral; log:\n%s",
	    harness_log_tail(h, 20));
	harness_free(h);
}

Test(it_deliver, rcpt_550_bounces_one_delivers_other,
    .timeout = IT_TIMEOUT)
{
	static const char *const want[] = { "Status: 5.1.1",
		"550 5.1.1 no such user", "Diagnostic-Code: smtp;",
		"text/rfc822-headers", "Message-ID: <split@client.test>",
		NULL };
	struct harness	*h = it_new(NULL);
	const char	*args[] = { "--rule",
			    "rcpt=bad@ok.test:550 5.1.1 no such user", NULL };
	const char	*rcpts[2] = { "good@ok.test", "bad@ok.test" };
	struct smtpc	*c;
	char		 qid[9], *eml;
	int		 ok, snd;

	ok = it_mx(h, IT_MX_OK, args);
	snd = it_mx(h, IT_MX_SND, NULL);
	it_start(h, "pool_size = 5; max_per_destination = 5;", NULL);
	c = harness_session_ehlo(h, 0);
	cr_assert(c != NULL, "session: %s", harness_err(h));
	it_submit(c, rcpts, 2, "split@client.test", qid);
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);

	IT_WAIT_SINK(h, ok, 1);
	it_check_dsn(h, snd, "bad@ok.test", want);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_eq(harness_mx_messages(h, ok), 1, "messages at ok.test: "
	    "got %d, want 1", harness_mx_messages(h, ok));
	cr_assert_str_eq(it_sink_field(h, ok, 1, "rcpt_to"), "good@ok.test",
	    "recipients of the delivered copy: got %s, want good@ok.test",
	    it_sink_field(h, ok, 1, "rcpt_to"));
	eml = harness_mx_read(h, snd, 1, "eml", NULL);
	cr_assert(eml != NULL, "cannot read the DSN");
	cr_assert(strstr(eml, "Final-Recipient: rfc822; good@ok.test") ==
	    NULL, "the DSN reports the delivered recipient too:\n%s", eml);
	free(eml);
	cr_assert(harness_log_grep(h, "to=<bad@ok\\.test>, .*dsn=5\\.1\\.1, "
	    "status=bounced \\(550 5\\.1\\.1 no such user\\)"),
	    "no bounced line for bad@ok.test; log:\n%s",
	    harness_log_tail(h, 20));
	cr_assert(harness_log_grep(h, "to=<good@ok\\.test>, .*status=sent"),
	    "no sent line for good@ok.test; log:\n%s",
	    harness_log_tail(h, 20));
	/* Partly delivered: the outcomes were journaled (sent and bounced
	 * recipients), not just the file removed. */
	cr_assert(it_stat(h, "spool", "journal_records") >= 2,
	    "spool.journal_records: got %lld, want >= 2",
	    it_stat(h, "spool", "journal_records"));
	/* One transaction carried both recipients. */
	cr_assert_eq(harness_mx_stat(h, ok, "connections_total"), 1,
	    "connections to ok.test: got %lld, want 1",
	    harness_mx_stat(h, ok, "connections_total"));
	harness_free(h);
}

/*
 * TLS policy.
 */

/*
 * "show" of qid once attempts have been recorded: still queued, deferred,
 * the recipient pending, and a last_error containing want.
 */
static void
it_check_deferred(struct harness *h, const char *qid, const char *want,
    int attempts_want)
{
	char		 req[128];
	json_t		*r = NULL, *v, *rc;
	const char	*state = "", *err = "", *rstate = "";
	json_int_t	 attempts = 0;
	int		 i;

	snprintf(req, sizeof(req), "{\"cmd\":\"show\",\"id\":\"%s\"}",
	    qid);
	for (i = 0; i < IT_WAIT * 10; i++) {
		json_decref(r);
		r = harness_control(h, req);
		cr_assert(r != NULL, "show: %s", harness_err(h));
		cr_assert(json_is_true(json_object_get(r, "ok")), "show %s: "
		    "not ok (the message left the queue?)", qid);
		if (json_is_integer(v = json_object_get(r, "attempts")))
			attempts = json_integer_value(v);
		if (attempts >= attempts_want &&
		    json_is_string(json_object_get(r, "last_error")))
			break;
		usleep(100000);
	}
	if (json_is_string(v = json_object_get(r, "state")))
		state = json_string_value(v);
	if (json_is_string(v = json_object_get(r, "last_error")))
		err = json_string_value(v);
	rc = json_array_get(json_object_get(r, "recipients"), 0);
	if (json_is_string(v = json_object_get(rc, "status")))
		rstate = json_string_value(v);
	cr_assert(attempts >= attempts_want, "show %s: attempts got %lld, "
	    "want >= %d", qid, (long long)attempts, attempts_want);
	cr_assert_str_eq(state, "deferred", "show %s: state got \"%s\", "
	    "want deferred", qid, state);
	cr_assert_str_eq(rstate, "pending", "show %s: recipient status got "
	    "\"%s\", want pending", qid, rstate);
	cr_assert(strstr(err, want) != NULL, "show %s: last_error got "
	    "\"%s\", want it to contain \"%s\"", qid, err, want);
	json_decref(r);
}

Test(it_deliver, enforced_tls_without_starttls_defers,
    .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	const char	*args[] = { "--no-starttls", NULL };
	int		 ok;
	char		 qid[9];

	ok = it_mx(h, IT_MX_OK, args);
	it_start_retry(h, "pool_size = 5; max_per_destination = 5;",
	    "{ domain = \"ok.test\"; tls = \"enforced\"; }", IT_RETRY_SLOW);
	it_submit_one(h, "bob@ok.test", "enforced@client.test", qid);
	IT_WAIT_LOG(h, "to=<bob@ok\\.test>, .*status=deferred");
	it_check_deferred(h, qid, "TLS is required", 1);
	/* A second attempt must not change anything. */
	it_flush(h, qid);
	it_wait_count(h, "to=<bob@ok\\.test>, .*status=deferred", 2);
	it_check_deferred(h, qid, "TLS is required", 2);
	cr_assert(harness_log_grep(h, "to=<bob@ok\\.test>, .*tls=none, .*"
	    "dsn=4\\.7\\.4, status=deferred"), "the deferral is not 4.7.4 "
	    "with tls=none; log:\n%s", harness_log_tail(h, 20));
	cr_assert(!harness_log_grep(h, "to=<bob@ok\\.test>, .*status=sent"),
	    "delivered without TLS; log:\n%s", harness_log_tail(h, 20));
	cr_assert(!harness_mx_has_file(h, ok, "plaintext-mail.log"),
	    "MAIL FROM was sent in plaintext (see %s/plaintext-mail.log)",
	    harness_mx_dir(h, ok));
	cr_assert_eq(harness_mx_stat(h, ok, "plaintext_mail"), 0,
	    "plaintext MAIL at the sink: got %lld, want 0",
	    harness_mx_stat(h, ok, "plaintext_mail"));
	cr_assert_eq(harness_mx_messages(h, ok), 0, "messages at the sink: "
	    "got %d, want 0", harness_mx_messages(h, ok));
	cr_assert(harness_mx_stat(h, ok, "connections_total") >= 1,
	    "the sink was never contacted");
	harness_free(h);
}

/* A sink whose certificate names wrong.test, not mx.ok.test. */
static int
it_mx_wrongname(struct harness *h)
{
	char		 cert[300], key[300];
	const char	*args[] = { "--cert", cert, "--key", key, NULL };

	snprintf(cert, sizeof(cert), "%s/wrongname.pem", h->cert_dir);
	snprintf(key, sizeof(key), "%s/wrongname.key", h->cert_dir);
	return (it_mx(h, IT_MX_OK, args));
}

Test(it_deliver, verify_wrong_name_defers, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	int		 ok;
	char		 qid[9];

	ok = it_mx_wrongname(h);
	it_start_retry(h, "pool_size = 5; max_per_destination = 5;",
	    "{ domain = \"ok.test\"; tls = \"verify\"; }", IT_RETRY_SLOW);
	it_submit_one(h, "bob@ok.test", "verify-bad@client.test", qid);
	IT_WAIT_LOG(h, "to=<bob@ok\\.test>, .*status=deferred");
	cr_assert(harness_log_grep(h, "to=<bob@ok\\.test>, .*"
	    "dsn=4\\.7\\.5, status=deferred"), "the deferral is not 4.7.5; "
	    "log:\n%s", harness_log_tail(h, 20));
	it_check_deferred(h, qid, "certificate verification failed", 1);
	cr_assert(!harness_mx_has_file(h, ok, "plaintext-mail.log"),
	    "MAIL FROM was sent in plaintext (see %s/plaintext-mail.log)",
	    harness_mx_dir(h, ok));
	cr_assert_eq(harness_mx_messages(h, ok), 0, "messages at the sink: "
	    "got %d, want 0", harness_mx_messages(h, ok));
	cr_assert(!harness_log_grep(h, "status=sent"), "delivered to a "
	    "certificate for the wrong name; log:\n%s",
	    harness_log_tail(h, 20));
	harness_free(h);
}

Test(it_deliver, opportunistic_wrong_name_delivers_tls,
    .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	int		 ok;
	char		 qid[9];

	ok = it_mx_wrongname(h);
	it_start(h, "pool_size = 5; max_per_destination = 5; "
	    "tls = \"opportunistic\";", NULL);
	it_submit_one(h, "bob@ok.test", "opportunistic@client.test", qid);
	IT_WAIT_SINK(h, ok, 1);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_str_eq(it_sink_field(h, ok, 1, "tls"), "true",
	    "delivered with TLS: got %s, want true",
	    it_sink_field(h, ok, 1, "tls"));
	cr_assert(harness_log_grep(h, "to=<bob@ok\\.test>, .*"
	    "tls=TLSv1\\.[23], tls_verified=no, dsn=2\\.[0-9.]+, "
	    "status=sent"), "no TLS, unverified sent line; log:\n%s",
	    harness_log_tail(h, 20));
	harness_free(h);
}

Test(it_deliver, verify_right_name_delivers, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	int		 ok;
	char		 qid[9];

	ok = it_mx(h, IT_MX_OK, NULL);
	it_start(h, "pool_size = 5; max_per_destination = 5;",
	    "{ domain = \"ok.test\"; tls = \"verify\"; }");
	it_submit_one(h, "bob@ok.test", "verify-ok@client.test", qid);
	IT_WAIT_SINK(h, ok, 1);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_str_eq(it_sink_field(h, ok, 1, "tls"), "true",
	    "delivered with TLS: got %s, want true",
	    it_sink_field(h, ok, 1, "tls"));
	cr_assert_str_eq(it_sink_field(h, ok, 1, "sni"), "mx.ok.test",
	    "SNI: got \"%s\", want mx.ok.test",
	    it_sink_field(h, ok, 1, "sni"));
	cr_assert(harness_log_grep(h, "to=<bob@ok\\.test>, .*"
	    "tls_verified=yes, dsn=2\\.[0-9.]+, status=sent"),
	    "no verified sent line; log:\n%s", harness_log_tail(h, 20));
	cr_assert(it_stat(h, "tls_out", "verified") >= 1, "tls_out.verified: "
	    "got %lld, want >= 1", it_stat(h, "tls_out", "verified"));
	harness_free(h);
}

/*
 * What the operator sees.
 */

Test(it_deliver, delivery_log_line_fields, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	char		 re[512], qid[9];
	int		 ok;

	ok = it_mx(h, IT_MX_OK, NULL);
	it_start(h, "pool_size = 5; max_per_destination = 5;", NULL);
	it_submit_one(h, "bob@ok.test", "logline@client.test", qid);
	IT_WAIT_SINK(h, ok, 1);
	IT_WAIT_QUEUE_EMPTY(h);
	snprintf(re, sizeof(re), "%s: to=<bob@ok\\.test>, "
	    "relay=mx\\.ok\\.test\\[127\\.0\\.0\\.21\\]:%d, "
	    "delay=[0-9]+\\.[0-9]{2}, tls=TLSv1\\.[23], tls_verified=no, "
	    "dsn=2\\.0\\.0, status=sent \\(250 2\\.0\\.0 Ok: queued as "
	    "000001\\)", qid, harness_mx_port(h));
	cr_assert(harness_log_grep(h, re), "no line matching /%s/; log:\n%s",
	    re, harness_log_tail(h, 20));
	snprintf(re, sizeof(re), "%s: removed", qid);
	cr_assert(harness_log_grep(h, re), "no \"%s\" line; log:\n%s", re,
	    harness_log_tail(h, 20));
	harness_free(h);
}

Test(it_deliver, stats_after_deliveries, .timeout = IT_TIMEOUT)
{
	static const char *const dns[] = {
		"--mx-host=plain.test,mx.plain.test,10",
		"--host-record=mx.plain.test,127.0.0.37",
		NULL
	};
	struct harness	*h = it_new(dns);
	const char	*args[] = { "--no-starttls", NULL };
	int		 ok, plain;

	ok = it_mx(h, IT_MX_OK, NULL);
	plain = it_mx(h, "127.0.0.37", args);
	it_start(h, "pool_size = 4; max_per_destination = 2;", NULL);
	it_submit_many(h, "bob@ok.test", 3, "stats-tls");
	it_submit_many(h, "bob@plain.test", 2, "stats-plain");
	IT_WAIT_SINK(h, ok, 3);
	IT_WAIT_SINK(h, plain, 2);
	IT_WAIT_QUEUE_EMPTY(h);
	cr_assert_eq(it_stat(h, "messages", "received"), 5,
	    "messages.received: got %lld, want 5",
	    it_stat(h, "messages", "received"));
	cr_assert_eq(it_stat(h, "messages", "delivered"), 5,
	    "messages.delivered: got %lld, want 5",
	    it_stat(h, "messages", "delivered"));
	cr_assert_eq(it_stat(h, "messages", "failed"), 0,
	    "messages.failed: got %lld, want 0",
	    it_stat(h, "messages", "failed"));
	/* Every recipient delivered at once: the synced removal of the file
	 * records it, with no RCPT_DONE journal records. */
	cr_assert_eq(it_stat(h, "spool", "journal_records"), 0,
	    "spool.journal_records: got %lld, want 0",
	    it_stat(h, "spool", "journal_records"));
	cr_assert_eq(it_stat(h, "pool", "size"), 4, "pool.size: got %lld, "
	    "want 4", it_stat(h, "pool", "size"));
	cr_assert_eq(it_stat(h, "pool", "waiting"), 0, "pool.waiting: got "
	    "%lld, want 0", it_stat(h, "pool", "waiting"));
	cr_assert(it_stat(h, "pool", "in_use") + it_stat(h, "pool", "idle")
	    <= 4, "pool.in_use + pool.idle over pool.size");
	cr_assert(it_stat(h, "pool", "peak") >= 1 &&
	    it_stat(h, "pool", "peak") <= 4, "pool.peak: got %lld, want 1..4",
	    it_stat(h, "pool", "peak"));
	/* Sessions, not messages: each sink saw at least one connection. */
	cr_assert(it_stat(h, "tls_out", "sessions") >= 1 &&
	    it_stat(h, "tls_out", "sessions") <=
	    harness_mx_stat(h, ok, "connections_total"),
	    "tls_out.sessions: got %lld, want 1..%lld",
	    it_stat(h, "tls_out", "sessions"),
	    harness_mx_stat(h, ok, "connections_total"));
	cr_assert(it_stat(h, "tls_out", "plaintext") >= 1 &&
	    it_stat(h, "tls_out", "plaintext") <=
	    harness_mx_stat(h, plain, "connections_total"),
	    "tls_out.plaintext: got %lld, want 1..%lld",
	    it_stat(h, "tls_out", "plaintext"),
	    harness_mx_stat(h, plain, "connections_total"));
	cr_assert_eq(it_stat(h, "tls_out", "verified"), 0,
	    "tls_out.verified: got %lld, want 0 (opportunistic)",
	    it_stat(h, "tls_out", "verified"));
	harness_free(h);
}

/*
 * Crash safety.
 */

#define IT_CRASH_N	500
#define IT_CRASH_POOL	10

Test(it_deliver, sigkill_during_delivery_loses_nothing,
    .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_new(NULL);
	const char	*args[] = { "--rule", "dot:stall=0.2", NULL };
	static int	 copies[IT_CRASH_N];
	char		 pool[128], *eml, *p;
	int		 ok, at_kill, n, i, k, dups = 0;

	ok = it_mx(h, IT_MX_OK, args);
	snprintf(pool, sizeof(pool), "pool_size = %d; "
	    "max_per_destination = %d;", IT_CRASH_POOL, IT_CRASH_POOL);
	it_start(h, pool, NULL);
	it_submit_many(h, "bob@ok.test", IT_CRASH_N, "crash");
	/* Kill in the middle of delivering: some sent, many not. */
	cr_assert(harness_mx_wait_messages(h, ok, 20, IT_WAIT),
	    "no deliveries started; log:\n%s", harness_log_tail(h, 20));
	cr_assert(harness_kill9(h) == 0, "kill: %s", harness_err(h));
	at_kill = harness_mx_messages(h, ok);
	cr_assert(at_kill < IT_CRASH_N, "all %d messages were delivered "
	    "before the kill: the test proves nothing", IT_CRASH_N);

	cr_assert(harness_restart(h) == 0, "restart: %s", harness_err(h));
	IT_WAIT_QUEUE_EMPTY(h);

	n = harness_mx_messages(h, ok);
	for (i = 1; i <= n; i++) {
		eml = harness_mx_read(h, ok, i, "eml", NULL);
		cr_assert(eml != NULL, "cannot read sink message %d", i);
		p = strstr(eml, "Message-ID: <crash-");
		cr_assert(p != NULL, "sink message %d has no crash Message-ID",
		    i);
		k = atoi(p + strlen("Message-ID: <crash-"));
		cr_assert(k >= 0 && k < IT_CRASH_N, "sink message %d: bad id",
		    i);
		copies[k]++;
		free(eml);
	}
	for (k = 0; k < IT_CRASH_N; k++) {
		cr_assert(copies[k] >= 1, "crash-%d@client.test was lost "
		    "(%d at the sink, %d when killed)", k, n, at_kill);
		dups += copies[k] - 1;
	}
	cr_assert(dups <= IT_CRASH_POOL, "duplicates: got %d, want <= %d "
	    "(transactions in flight at the kill)", dups, IT_CRASH_POOL);
	cr_assert(!harness_log_grep(h, "non-delivery notification"),
	    "a DSN was made; log:\n%s", harness_log_tail(h, 20));
	harness_free(h);
}
