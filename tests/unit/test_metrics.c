/*
 * test_metrics.c: the Prometheus exposition, checked by an independent
 * parser (tests/support/promparse.py on Debian's python3-prometheus-client),
 * and the evhttp endpoint over real loopback sockets.
 *
 * Each test runs in its own Criterion child, so the module's static state
 * and `stats` start fresh.  HTTP exchanges run a blocking client in a
 * thread while the test thread runs the event loop; the client touches
 * only its socket, never libevent.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <criterion/criterion.h>
#include <event2/event.h>
#include <jansson.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "rtconf.h"
#include "stats.h"
#include "util.h"

/* pool_get_stats reads delivery.pool_size from the current snapshot. */
static void
tm_setup(void)
{
	struct conf_errors	 errs;
	struct rtconf		*rt;

	memset(&errs, 0, sizeof(errs));
	rt = rtconf_new(conf_default(), &errs);
	cr_assert_not_null(rt, "rtconf_new(conf_default()) failed");
	rtconf_set_current(rt);
	conf_errors_free(&errs);
	stats_init();
	metrics_init(NULL);
}

static void
tm_teardown(void)
{
	metrics_free();
}

TestSuite(metrics, .init = tm_setup, .fini = tm_teardown, .timeout = 60);

/*
 * Run promparse.py over text: the samples as a JSON array.  Fails the test
 * when the checker rejects the text.
 */
static json_t *
tm_parse(const char *text)
{
	const char	*src = getenv("POSTERN_SRCDIR");
	char		 path[] = "/tmp/test_metrics.XXXXXX", cmd[1024];
	char		 line[8192];
	json_t		*arr, *o;
	json_error_t	 jerr;
	FILE		*fp;
	int		 fd, st;

	fd = mkstemp(path);
	cr_assert(fd != -1);
	cr_assert_eq(util_write_all(fd, text, strlen(text)), 0);
	close(fd);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 "
	    "%s/tests/support/promparse.py %s",
	    src != NULL && src[0] != '\0' ? src : "/work/main", path);
	fp = popen(cmd, "r");
	cr_assert_not_null(fp);
	arr = json_array();
	while (fgets(line, sizeof(line), fp) != NULL) {
		o = json_loads(line, 0, &jerr);
		cr_assert_not_null(o, "promparse printed non-JSON: %s", line);
		json_array_append_new(arr, o);
	}
	st = pclose(fp);
	unlink(path);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "promparse rejected the exposition (status %d):\n%s", st, text);
	cr_assert_gt(json_array_size(arr), 0);
	return (arr);
}

/*
 * The value of the sample with this name and exactly these labels (up to
 * two pairs, NULL-terminated), or NAN when absent.
 */
static double
tm_value(json_t *arr, const char *name, const char *k1, const char *v1,
    const char *k2, const char *v2)
{
	json_t		*o, *labels;
	size_t		 i, want = (k1 != NULL) + (k2 != NULL);
	const char	*lv;

	json_array_foreach(arr, i, o) {
		if (strcmp(json_string_value(json_object_get(o, "name")),
		    name) != 0)
			continue;
		labels = json_object_get(o, "labels");
		if (json_object_size(labels) != want)
			continue;
		if (k1 != NULL && ((lv = json_string_value(
		    json_object_get(labels, k1))) == NULL ||
		    strcmp(lv, v1) != 0))
			continue;
		if (k2 != NULL && ((lv = json_string_value(
		    json_object_get(labels, k2))) == NULL ||
		    strcmp(lv, v2) != 0))
			continue;
		return (json_number_value(json_object_get(o, "value")));
	}
	return (NAN);
}

/* Samples of one name, and the sum of their values. */
static size_t
tm_count(json_t *arr, const char *name, double *sum)
{
	json_t	*o;
	size_t	 i, n = 0;

	*sum = 0;
	json_array_foreach(arr, i, o) {
		if (strcmp(json_string_value(json_object_get(o, "name")),
		    name) != 0)
			continue;
		*sum += json_number_value(json_object_get(o, "value"));
		n++;
	}
	return (n);
}

static json_t *
tm_scrape(void)
{
	char	*text = metrics_text();
	json_t	*arr;

	cr_assert_not_null(text);
	arr = tm_parse(text);
	free(text);
	return (arr);
}

#define TM_EXPECT(arr, want, name, k1, v1, k2, v2) do {		\
	double	got_ = tm_value((arr), (name), (k1), (v1), (k2), (v2)); \
	cr_expect(got_ == (double)(want),				\
	    "%s{%s=%s,%s=%s}: got %g, want %g", (name),		\
	    (k1) ? (k1) : "", (v1) ? (v1) : "", (k2) ? (k2) : "",	\
	    (v2) ? (v2) : "", got_, (double)(want));			\
} while (0)

Test(metrics, empty_exposition_parses_with_every_family)
{
	static const char *const families[] = {
		"postern_start_time_seconds",
		"postern_uptime_seconds", "postern_queue_oldest_age_seconds",
		"postern_pool_size", "postern_pool_connections_in_use",
		"postern_pool_connections_idle", "postern_pool_jobs_waiting",
		"postern_pool_connections_peak",
		"postern_spool_committed_total",
		"postern_spool_journal_records_total",
		"postern_spool_syncs_total", "postern_spool_sync_errors_total",
		"postern_spool_corrupt_total",
		"postern_messages_received_total",
		"postern_messages_delivered_total",
		"postern_messages_failed_total",
		"postern_messages_expired_total",
		"postern_connections_in_total",
		"postern_connections_in_rejected_total",
		"postern_connections_in_open",
		"postern_tls_in_sessions_total",
		"postern_tls_out_sessions_total",
		"postern_tls_out_verified_total",
		"postern_tls_out_plaintext_total",
		"postern_dkim_signed_total", "postern_dkim_errors_total",
		"postern_escalations_sent_total",
		"postern_escalations_failed_total",
		"postern_escalations_pending",
		"postern_rejected_smuggling_total",
		"postern_delivery_delay_seconds_count",
		"postern_delivery_delay_seconds_sum",
	};
	json_t	*arr = tm_scrape();
	size_t	 i;
	double	 sum;

	for (i = 0; i < nitems(families); i++)
		TM_EXPECT(arr, (strcmp(families[i], "postern_pool_size") == 0) *
		    100 + (strcmp(families[i],
		    "postern_start_time_seconds") == 0) *
		    (double)stats.started_at, families[i], NULL, NULL, NULL,
		    NULL);
	TM_EXPECT(arr, 1, "postern_build_info", "version", POSTERN_VERSION,
	    NULL, NULL);
	cr_expect_eq(tm_count(arr, "postern_queue_messages", &sum), 3);
	cr_expect_eq(tm_count(arr, "postern_deliveries_total", &sum), 4);
	cr_expect_eq(tm_count(arr, "postern_auth_attempts_total", &sum), 2);
	cr_expect_eq(tm_count(arr, "postern_delivery_delay_seconds_bucket",
	    &sum), 13, "12 bounds and +Inf");
	cr_expect_eq(tm_count(arr, "postern_tls_outbound_total", &sum), 11);
	TM_EXPECT(arr, 0, "postern_destination_deferrals_total", "domain",
	    "other", NULL, NULL);
	TM_EXPECT(arr, 0, "postern_destination_failures_total", "domain",
	    "other", NULL, NULL);
	json_decref(arr);
}

Test(metrics, stats_queue_and_pool_are_read_at_scrape_time)
{
	struct metrics_env	 env;
	struct queue		*q = queue_new();
	struct queue_msg	*m;
	int64_t			 now = util_wallclock();
	json_t			*arr;

	memset(&env, 0, sizeof(env));
	env.queue = q;
	metrics_init(&env);
	m = queue_add(q, 1, "a@example.org", 10, now - 500, 1, 0, now, NULL,
	    false);
	queue_set_state(q, m, QUEUE_ACTIVE);
	m = queue_add(q, 2, "b@example.org", 10, now - 100, 1, 1, now + 60,
	    "x", false);
	queue_set_state(q, m, QUEUE_DEFERRED);
	queue_add(q, 3, "c@example.org", 10, now - 50, 1, 0, now, NULL, true);
	stats.started_at = now - 42;
	stats.messages_received = 7;
	stats.messages_delivered = 5;
	stats.connections_in_current = 3;
	stats.connections_in_total = 11;
	stats.auth_success = 4;
	stats.auth_failure = 2;
	stats.tls_out_verified = 9;
	stats.rejected_smuggling = 1;
	stats.escalations_pending = 6;

	arr = tm_scrape();
	TM_EXPECT(arr, 7, "postern_messages_received_total", NULL, NULL, NULL,
	    NULL);
	TM_EXPECT(arr, 5, "postern_messages_delivered_total", NULL, NULL,
	    NULL, NULL);
	TM_EXPECT(arr, 3, "postern_connections_in_open", NULL, NULL, NULL,
	    NULL);
	TM_EXPECT(arr, 11, "postern_connections_in_total", NULL, NULL, NULL,
	    NULL);
	TM_EXPECT(arr, 4, "postern_auth_attempts_total", "result", "success",
	    NULL, NULL);
	TM_EXPECT(arr, 2, "postern_auth_attempts_total", "result", "failure",
	    NULL, NULL);
	TM_EXPECT(arr, 9, "postern_tls_out_verified_total", NULL, NULL, NULL,
	    NULL);
	TM_EXPECT(arr, 1, "postern_rejected_smuggling_total", NULL, NULL,
	    NULL, NULL);
	TM_EXPECT(arr, 6, "postern_escalations_pending", NULL, NULL, NULL,
	    NULL);
	TM_EXPECT(arr, 1, "postern_queue_messages", "state", "active", NULL,
	    NULL);
	TM_EXPECT(arr, 1, "postern_queue_messages", "state", "deferred", NULL,
	    NULL);
	TM_EXPECT(arr, 1, "postern_queue_messages", "state", "held", NULL,
	    NULL);
	cr_expect_geq(tm_value(arr, "postern_queue_oldest_age_seconds", NULL,
	    NULL, NULL, NULL), 500);
	cr_expect_leq(tm_value(arr, "postern_queue_oldest_age_seconds", NULL,
	    NULL, NULL, NULL), 510);
	cr_expect_geq(tm_value(arr, "postern_uptime_seconds", NULL, NULL, NULL,
	    NULL), 42);
	cr_expect_leq(tm_value(arr, "postern_uptime_seconds", NULL, NULL, NULL,
	    NULL), 52);
	TM_EXPECT(arr, 100, "postern_pool_size", NULL, NULL, NULL, NULL);
	json_decref(arr);

	/* A second scrape sees the counters move. */
	stats.messages_received++;
	arr = tm_scrape();
	TM_EXPECT(arr, 8, "postern_messages_received_total", NULL, NULL, NULL,
	    NULL);
	json_decref(arr);
	metrics_free();
	queue_free(q);
}

Test(metrics, observe_delivery_moves_outcomes_histogram_and_tls)
{
	static const struct {
		const char	*outcome;
		double		 delay;
		const char	*tls;
		bool		 verified;
	} obs[] = {
		{ "sent", 0.05, "TLSv1.3", true },
		{ "sent", -5, "TLSv1.3", false },	/* clock went back */
		{ "sent", 2, "TLSv1.2", true },
		{ "sent", 100000, "none", true },	/* none: unverified */
		{ "sent", NAN, "SSLv3", false },	/* unknown version */
		{ "deferred", 30, "none", false },
		{ "bounced", 40, "TLSv1.3", true },
		{ "expired", 432000, "none", false },
	};
	static const struct {
		const char	*le;
		double		 want;
	} buckets[] = {
		{ "0.1", 3 }, { "0.5", 3 }, { "1", 3 }, { "5", 4 }, { "10", 4 },
		{ "86400", 4 }, { "+Inf", 5 },
	};
	json_t	*arr;
	size_t	 i;

	for (i = 0; i < nitems(obs); i++)
		metrics_observe_delivery("example.net", obs[i].outcome,
		    obs[i].delay, obs[i].tls, obs[i].verified);
	/* Not an outcome: ignored. */
	metrics_observe_delivery("example.net", "delivered", 1, "none", false);
	metrics_observe_delivery("example.net", NULL, 1, "none", false);

	arr = tm_scrape();
	TM_EXPECT(arr, 5, "postern_deliveries_total", "outcome", "sent", NULL,
	    NULL);
	TM_EXPECT(arr, 1, "postern_deliveries_total", "outcome", "deferred",
	    NULL, NULL);
	TM_EXPECT(arr, 1, "postern_deliveries_total", "outcome", "bounced",
	    NULL, NULL);
	TM_EXPECT(arr, 1, "postern_deliveries_total", "outcome", "expired",
	    NULL, NULL);
	for (i = 0; i < nitems(buckets); i++)
		TM_EXPECT(arr, buckets[i].want,
		    "postern_delivery_delay_seconds_bucket", "le",
		    buckets[i].le, NULL, NULL);
	TM_EXPECT(arr, 5, "postern_delivery_delay_seconds_count", NULL, NULL,
	    NULL, NULL);
	TM_EXPECT(arr, 0.05 + 2 + 100000, "postern_delivery_delay_seconds_sum",
	    NULL, NULL, NULL, NULL);
	TM_EXPECT(arr, 1, "postern_tls_outbound_total", "tls", "TLSv1.3",
	    "verified", "true");
	TM_EXPECT(arr, 1, "postern_tls_outbound_total", "tls", "TLSv1.3",
	    "verified", "false");
	TM_EXPECT(arr, 1, "postern_tls_outbound_total", "tls", "TLSv1.2",
	    "verified", "true");
	TM_EXPECT(arr, 1, "postern_tls_outbound_total", "tls", "none",
	    "verified", "false");
	TM_EXPECT(arr, 1, "postern_tls_outbound_total", "tls", "other",
	    "verified", "false");
	cr_expect(isnan(tm_value(arr, "postern_tls_outbound_total", "tls",
	    "none", "verified", "true")), "no none/verified series");
	TM_EXPECT(arr, 1, "postern_destination_deferrals_total", "domain",
	    "example.net", NULL, NULL);
	TM_EXPECT(arr, 2, "postern_destination_failures_total", "domain",
	    "example.net", NULL, NULL);
	json_decref(arr);
}

Test(metrics, destination_cardinality_is_bounded)
{
	char	 dom[64];
	json_t	*arr;
	double	 sum;
	size_t	 i;

	for (i = 0; i < 1000; i++) {
		snprintf(dom, sizeof(dom), "d%zu.example", i);
		metrics_observe_delivery(dom, "deferred", 1, "none", false);
		metrics_observe_delivery(dom, i % 2 ? "bounced" : "expired",
		    1, "none", false);
	}
	/* A tracked domain keeps its own series after the table is full. */
	metrics_observe_delivery("D3.EXAMPLE", "deferred", 1, "none", false);
	/* An untracked one, and a domain named "other", go to "other". */
	metrics_observe_delivery("late.example", "deferred", 1, "none", false);
	metrics_observe_delivery("other", "deferred", 1, "none", false);
	metrics_observe_delivery(NULL, "deferred", 1, "none", false);

	arr = tm_scrape();
	cr_expect_eq(tm_count(arr, "postern_destination_deferrals_total",
	    &sum), METRICS_TOP_N + 1);
	cr_expect_eq(sum, 1004, "got %g deferrals, want 1004", sum);
	cr_expect_eq(tm_count(arr, "postern_destination_failures_total",
	    &sum), METRICS_TOP_N + 1);
	cr_expect_eq(sum, 1000, "got %g failures, want 1000", sum);
	TM_EXPECT(arr, 1, "postern_destination_deferrals_total", "domain",
	    "d0.example", NULL, NULL);
	TM_EXPECT(arr, 2, "postern_destination_deferrals_total", "domain",
	    "d3.example", NULL, NULL);
	TM_EXPECT(arr, 1, "postern_destination_failures_total", "domain",
	    "d19.example", NULL, NULL);
	cr_expect(isnan(tm_value(arr, "postern_destination_deferrals_total",
	    "domain", "d20.example", NULL, NULL)), "d20 is not tracked");
	TM_EXPECT(arr, 1000 - METRICS_TOP_N + 3,
	    "postern_destination_deferrals_total", "domain", "other", NULL,
	    NULL);
	TM_EXPECT(arr, 1000 - METRICS_TOP_N,
	    "postern_destination_failures_total", "domain", "other", NULL,
	    NULL);
	json_decref(arr);
}

Test(metrics, hostile_label_values_are_escaped_and_parse)
{
	static const struct {
		const char	*in;
		const char	*want;	/* the label value, parsed */
	} cases[] = {
		{ "we\"ird\\dom\nain", "we\"ird\\dom\nain" },
		{ "cr\rtab\tdel\x7f.example", "cr?tab?del?.example" },
		{ "bad\xff\xc0\x80utf8.example", "bad???utf8.example" },
		{ "surrogate\xed\xa0\x80.example", "surrogate???.example" },
		{ "B\xc3\xbc" "CHER.example", "b\xc3\xbc" "cher.example" },
		{ "} 1\n# TYPE x counter\nx_total", "} 1\n# type x counter\n"
		    "x_total" },
	};
	char	 longdom[600];
	json_t	*arr, *o;
	size_t	 i, n;
	double	 sum;

	for (i = 0; i < nitems(cases); i++)
		metrics_observe_delivery(cases[i].in, "bounced", 1, "none",
		    false);
	/* Longer than a domain may be: truncated, still one series. */
	memset(longdom, 'a', sizeof(longdom) - 1);
	longdom[sizeof(longdom) - 1] = '\0';
	longdom[SMTP_DOMAIN_MAX - 1] = '\xc3';	/* a cut UTF-8 sequence */
	longdom[SMTP_DOMAIN_MAX] = '\xa9';
	metrics_observe_delivery(longdom, "bounced", 1, "none", false);

	arr = tm_scrape();
	for (i = 0; i < nitems(cases); i++)
		TM_EXPECT(arr, 1, "postern_destination_failures_total",
		    "domain", cases[i].want, NULL, NULL);
	n = tm_count(arr, "postern_destination_failures_total", &sum);
	cr_expect_eq(n, nitems(cases) + 2, "got %zu series", n);
	json_array_foreach(arr, i, o) {
		const char *d = json_string_value(json_object_get(
		    json_object_get(o, "labels"), "domain"));

		if (d != NULL && d[0] == 'a') {
			cr_expect_eq(strlen(d), SMTP_DOMAIN_MAX - 1,
			    "long domain kept %zu octets", strlen(d));
			cr_expect_eq(strspn(d, "a"), strlen(d));
		}
	}
	json_decref(arr);
}

/* HTTP: a blocking client in a thread, the event loop in the test thread. */
struct tm_client {
	int		 port;
	const char	*req;
	size_t		 reqlen;
	char		 resp[256 * 1024];
	size_t		 got;
	int		 done;
	int		 connect_errno;
	int		 rcvtimeo;	/* seconds; 0 means 5 */
	int		 recv_errno;	/* of the recv that ended it */
};

static void *
tm_client_run(void *arg)
{
	struct tm_client	*c = arg;
	struct sockaddr_in	 sin;
	struct timeval		 tv = { 5, 0 };
	size_t			 off = 0;
	ssize_t			 n;
	int			 fd;

	if (c->rcvtimeo > 0)
		tv.tv_sec = c->rcvtimeo;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)c->port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		c->connect_errno = errno;
		goto out;
	}
	while (off < c->reqlen) {
		n = send(fd, c->req + off, c->reqlen - off, MSG_NOSIGNAL);
		if (n <= 0)
			break;	/* the server may close on refusal */
		off += (size_t)n;
	}
	while (c->got < sizeof(c->resp) - 1) {
		n = recv(fd, c->resp + c->got, sizeof(c->resp) - 1 - c->got,
		    0);
		if (n <= 0) {
			c->recv_errno = n == 0 ? 0 : errno;
			break;
		}
		c->got += (size_t)n;
	}
out:
	c->resp[c->got] = '\0';
	close(fd);
	__atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
	return (NULL);
}

struct tm_loop {
	struct event_base	*base;
	struct tm_client	*c;
};

static void
tm_poll_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct tm_loop	*l = arg;

	(void)fd;
	(void)ev;
	if (__atomic_load_n(&l->c->done, __ATOMIC_ACQUIRE))
		event_base_loopbreak(l->base);
}

/* One exchange: the raw response in c->resp (empty when none came). */
static void
tm_exchange(struct event_base *base, struct tm_client *c)
{
	struct tm_loop	 l = { base, c };
	struct timeval	 tick = { 0, 5000 };
	struct event	*ev;
	pthread_t	 t;

	c->got = 0;
	c->done = 0;
	c->connect_errno = 0;
	ev = event_new(base, -1, EV_PERSIST, tm_poll_cb, &l);
	event_add(ev, &tick);
	cr_assert_eq(pthread_create(&t, NULL, tm_client_run, c), 0);
	event_base_dispatch(base);
	pthread_join(t, NULL);
	event_free(ev);
}

static struct tm_client *
tm_request(struct event_base *base, int port, const char *req)
{
	struct tm_client	*c = xcalloc(1, sizeof(*c));

	c->port = port;
	c->req = req;
	c->reqlen = strlen(req);
	tm_exchange(base, c);
	return (c);
}

/* The body of an HTTP response; NULL when the headers are incomplete. */
static const char *
tm_body(const struct tm_client *c)
{
	const char	*p = strstr(c->resp, "\r\n\r\n");

	return (p != NULL ? p + 4 : NULL);
}

Test(metrics, http_serves_metrics_with_content_type)
{
	struct event_base	*base = event_base_new();
	struct metrics_http	*mh;
	struct tm_client	*c;
	char			 err[256];
	json_t			*arr;
	int			 port;

	stats.messages_received = 12;
	metrics_observe_delivery("example.com", "deferred", 1, "none", false);
	mh = metrics_http_new(base, "127.0.0.1", 0, err, sizeof(err));
	cr_assert_not_null(mh, "metrics_http_new: %s", err);
	port = metrics_http_port(mh);
	cr_assert_gt(port, 0);

	c = tm_request(base, port, "GET /metrics HTTP/1.1\r\n"
	    "Host: localhost\r\nConnection: close\r\n\r\n");
	cr_assert_eq(c->connect_errno, 0, "connect: %s",
	    strerror(c->connect_errno));
	cr_assert(strncmp(c->resp, "HTTP/1.1 200 ", 13) == 0,
	    "got status line %.40s", c->resp);
	cr_expect_not_null(strcasestr(c->resp, "\r\nContent-Type: text/plain; "
	    "version=0.0.4"), "no Content-Type text/plain; version=0.0.4:\n%s",
	    c->resp);
	cr_assert_not_null(tm_body(c));
	arr = tm_parse(tm_body(c));
	TM_EXPECT(arr, 12, "postern_messages_received_total", NULL, NULL,
	    NULL, NULL);
	TM_EXPECT(arr, 1, "postern_destination_deferrals_total", "domain",
	    "example.com", NULL, NULL);
	json_decref(arr);

	/* A query string does not change the path. */
	free(c);
	c = tm_request(base, port, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
	cr_expect(strncmp(c->resp, "HTTP/1.0 200 ", 13) == 0,
	    "got status line %.40s", c->resp);
	free(c);

	/* HEAD: headers only. */
	c = tm_request(base, port, "HEAD /metrics HTTP/1.0\r\n\r\n");
	cr_expect(strncmp(c->resp, "HTTP/1.0 200 ", 13) == 0,
	    "got status line %.40s", c->resp);
	cr_expect(tm_body(c) != NULL && tm_body(c)[0] == '\0',
	    "HEAD sent a body");
	free(c);

	metrics_http_free(mh);
	event_base_free(base);
}

Test(metrics, http_refuses_other_paths_methods_and_huge_requests)
{
	static const struct {
		const char	*req;
		const char	*status;
	} cases[] = {
		{ "GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 404 " },
		{ "GET /metrics/x HTTP/1.0\r\n\r\n", "HTTP/1.0 404 " },
		{ "GET /metricsx HTTP/1.0\r\n\r\n", "HTTP/1.0 404 " },
		{ "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
		    "HTTP/1.0 405 " },
		{ "DELETE /metrics HTTP/1.0\r\n\r\n", "HTTP/1.0 405 " },
		/* No request body is read at all. */
		{ "PUT /metrics HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello",
		    "HTTP/1.1 413 " },
		/* A method libevent does not know: 501 (RFC 9110 15.6.2). */
		{ "BREW /metrics HTTP/1.0\r\n\r\n", "HTTP/1.1 501 " },
	};
	struct event_base	*base = event_base_new();
	struct metrics_http	*mh;
	struct tm_client	*c;
	char			 err[256], *huge;
	size_t			 i, hugelen = 64 * 1024;
	int			 port;

	mh = metrics_http_new(base, "127.0.0.1", 0, err, sizeof(err));
	cr_assert_not_null(mh, "metrics_http_new: %s", err);
	port = metrics_http_port(mh);

	for (i = 0; i < nitems(cases); i++) {
		c = tm_request(base, port, cases[i].req);
		cr_expect(strncmp(c->resp, cases[i].status,
		    strlen(cases[i].status)) == 0,
		    "%.30s: got %.40s, want %s", cases[i].req, c->resp,
		    cases[i].status);
		if (strstr(cases[i].status, "405") != NULL)
			cr_expect_not_null(strcasestr(c->resp,
			    "\r\nAllow: GET, HEAD\r\n"), "405 without Allow");
		free(c);
	}

	/*
	 * A request line under METRICS_HTTP_HEADERS_MAX is read and answered;
	 * one far over it is refused (libevent 2.1 answers 400, not 413) or
	 * the connection closed, and never served.
	 */
	huge = xmalloc(hugelen + 64);
	memcpy(huge, "GET /", 5);
	memset(huge + 5, 'a', METRICS_HTTP_HEADERS_MAX - 1024);
	strlcpy(huge + 5 + METRICS_HTTP_HEADERS_MAX - 1024, " HTTP/1.0\r\n\r\n",
	    64);
	c = tm_request(base, port, huge);
	cr_expect(strncmp(c->resp, "HTTP/1.0 404 ", 13) == 0,
	    "request line under the bound: got %.40s", c->resp);
	free(c);
	memset(huge + 5, 'a', hugelen);
	strlcpy(huge + 5 + hugelen, " HTTP/1.0\r\n\r\n", 64);
	c = tm_request(base, port, huge);
	cr_expect(c->got == 0 || strncmp(c->resp, "HTTP/1.1 400 ", 13) == 0 ||
	    strncmp(c->resp, "HTTP/1.1 413 ", 13) == 0,
	    "huge request line: got %.40s", c->resp);
	free(c);

	/* Headers over the bound, after a good request line. */
	memcpy(huge, "GET /metrics HTTP/1.0\r\nX-Pad: ", 30);
	memset(huge + 30, 'b', hugelen - 30);
	strlcpy(huge + hugelen, "\r\n\r\n", 64);
	c = tm_request(base, port, huge);
	cr_expect(c->got == 0 || strncmp(c->resp, "HTTP/1.1 400 ", 13) == 0 ||
	    strncmp(c->resp, "HTTP/1.1 413 ", 13) == 0,
	    "huge headers: got %.40s", c->resp);
	free(c);
	free(huge);

	/* The endpoint still serves after all that. */
	c = tm_request(base, port, "GET /metrics HTTP/1.0\r\n\r\n");
	cr_expect(strncmp(c->resp, "HTTP/1.0 200 ", 13) == 0,
	    "got %.40s", c->resp);
	free(c);

	metrics_http_free(mh);
	event_base_free(base);
}

Test(metrics, http_closes_a_silent_connection_after_the_timeout)
{
	struct event_base	*base = event_base_new();
	struct metrics_http	*mh;
	struct tm_client	*c = xcalloc(1, sizeof(*c));
	char			 err[256];
	double			 t0, el;

	mh = metrics_http_new(base, "127.0.0.1", 0, err, sizeof(err));
	cr_assert_not_null(mh, "metrics_http_new: %s", err);
	c->port = metrics_http_port(mh);
	c->req = "";
	c->rcvtimeo = METRICS_HTTP_TIMEOUT + 10;
	t0 = util_monotonic();
	tm_exchange(base, c);
	el = util_monotonic() - t0;
	cr_expect_eq(c->connect_errno, 0);
	cr_expect_eq(c->recv_errno, 0, "recv: %s", strerror(c->recv_errno));
	cr_expect_eq(c->got, 0, "got %zu octets", c->got);
	cr_expect(el >= METRICS_HTTP_TIMEOUT - 1 &&
	    el < METRICS_HTTP_TIMEOUT + 5, "closed after %.1f s", el);
	free(c);
	metrics_http_free(mh);
	event_base_free(base);
}

Test(metrics, http_free_closes_the_port)
{
	struct event_base	*base = event_base_new();
	struct metrics_http	*mh, *mh2;
	struct tm_client	*c;
	char			 err[256];
	int			 port;

	mh = metrics_http_new(base, "127.0.0.1", 0, err, sizeof(err));
	cr_assert_not_null(mh, "metrics_http_new: %s", err);
	port = metrics_http_port(mh);

	/* The port is taken while it listens. */
	err[0] = '\0';
	mh2 = metrics_http_new(base, "127.0.0.1", port, err, sizeof(err));
	cr_expect_null(mh2);
	cr_expect_not_null(strstr(err, "in use"), "err: %s", err);

	metrics_http_free(mh);
	c = tm_request(base, port, "GET /metrics HTTP/1.0\r\n\r\n");
	cr_expect_eq(c->connect_errno, ECONNREFUSED, "connect after free: %s",
	    strerror(c->connect_errno));
	free(c);

	/* And it can be bound again at once (a reload). */
	mh = metrics_http_new(base, "127.0.0.1", port, err, sizeof(err));
	cr_expect_not_null(mh, "rebind: %s", err);
	metrics_http_free(mh);
	metrics_http_free(NULL);
	event_base_free(base);
}

Test(metrics, http_new_rejects_bad_arguments)
{
	struct event_base	*base = event_base_new();
	char			 err[256];

	err[0] = '\0';
	cr_expect_null(metrics_http_new(base, "127.0.0.1", 70000, err,
	    sizeof(err)));
	cr_expect_neq(err[0], '\0');
	err[0] = '\0';
	cr_expect_null(metrics_http_new(base, NULL, 9125, err, sizeof(err)));
	cr_expect_neq(err[0], '\0');
	err[0] = '\0';
	cr_expect_null(metrics_http_new(base, "192.0.2.1", 0, err,
	    sizeof(err)), "bound an address this host does not have");
	cr_expect_not_null(strstr(err, "192.0.2.1"), "err: %s", err);
	event_base_free(base);
}
