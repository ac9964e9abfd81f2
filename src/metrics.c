/*
 * metrics.c: the Prometheus text exposition (format 0.0.4) and its HTTP
 * endpoint `metrics.listen` (SPEC sections 2 and 5).
 *
 * A scrape reads the global `stats`, queue_counts, pool_get_stats and
 * spool_get_stats, each O(1) or bounded by the pool cap: it never walks the
 * queue.  The delivery families (outcomes, delay histogram, destinations,
 * TLS) are fed by deliver.c through metrics_observe_delivery and live in
 * this file's one static state.
 *
 * Destination cardinality: the first METRICS_TOP_N distinct domains that
 * see a deferral or a failure get series of their own; every later domain
 * is counted under domain="other".  A space-saving (Misra-Gries) top-N
 * would follow today's worst domains better, but it evicts a series and
 * hands its count to a newcomer, which a counter must never do: rate()
 * would see a reset or a jump.  First-N keeps every series monotonic.
 *
 * Label values come from peers (recipient domains): `\`, `"` and newline
 * are escaped as the format says; other control characters and invalid
 * UTF-8 become '?', so no input can break a line or the parser's decoding.
 *
 * Threads: the event-loop thread only, like `stats`.
 */
#include "compat.h"

#include <sys/socket.h>

#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "postern.h"
#include "queue.h"
#include "spool.h"
#include "stats.h"
#include "util.h"

#ifndef POSTERN_VERSION
#define POSTERN_VERSION	"unknown"
#endif

/* Upper bounds of the delay histogram, seconds (le="+Inf" is implied). */
static const double	metrics_delay_bounds[] = {
	0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400
};
#define METRICS_NBOUNDS	nitems(metrics_delay_bounds)

#define METRICS_STR2(x)	#x
#define METRICS_STR(x)	METRICS_STR2(x)

enum metrics_outcome {
	METRICS_O_SENT,
	METRICS_O_DEFERRED,
	METRICS_O_BOUNCED,
	METRICS_O_EXPIRED,
	METRICS_O_N
};

static const char *const metrics_outcome_names[] = {
	[METRICS_O_SENT] = "sent",
	[METRICS_O_DEFERRED] = "deferred",
	[METRICS_O_BOUNCED] = "bounced",
	[METRICS_O_EXPIRED] = "expired",
};
_Static_assert(nitems(metrics_outcome_names) == METRICS_O_N,
    "metrics_outcome_names out of step with enum metrics_outcome");

/* TLS label values: a closed set, so the family stays small. */
static const char *const metrics_tls_names[] = {
	"none", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", "other"
};
#define METRICS_TLS_N		nitems(metrics_tls_names)
#define METRICS_TLS_OTHER	(METRICS_TLS_N - 1)

struct metrics_dest {
	char		domain[SMTP_DOMAIN_MAX + 1];	/* sanitized */
	uint64_t	deferrals;
	uint64_t	failures;
};

struct metrics_state {
	struct metrics_env	 env;		/* borrowed pointers */
	uint64_t		 deliveries[METRICS_O_N];
	/* Per bucket, not cumulative; the last is above every bound. */
	uint64_t		 delay_buckets[METRICS_NBOUNDS + 1];
	double			 delay_sum;
	uint64_t		 delay_count;
	struct metrics_dest	 dests[METRICS_TOP_N];
	size_t			 ndests;
	struct metrics_dest	 other;
	uint64_t		 tls[METRICS_TLS_N][2]; /* [tls][verified] */
};

static struct metrics_state	metrics_state;

/* A growing output buffer; the exposition is a few KiB. */
struct metrics_buf {
	char	*p;
	size_t	 len;
	size_t	 cap;
};

struct metrics_http {
	struct evhttp			*http;	/* owned */
	struct evhttp_bound_socket	*sock;	/* owned by http */
	int				 port;
};

void
metrics_init(const struct metrics_env *env)
{
	memset(&metrics_state, 0, sizeof(metrics_state));
	if (env != NULL)
		metrics_state.env = *env;
}

void
metrics_free(void)
{
	memset(&metrics_state, 0, sizeof(metrics_state));
}

/*
 * Copy a peer-supplied label value: lowercase ASCII, keep '\n' (the format
 * escapes it), turn other control characters and invalid UTF-8 into '?'.
 * Never cuts a UTF-8 sequence at the end of dst.
 */
static void
metrics_sanitize(char *dst, size_t dstlen, const char *src)
{
	const unsigned char	*s = (const unsigned char *)src;
	size_t			 o = 0, n, k;
	uint32_t		 cp;

	while (*s != '\0' && o + 1 < dstlen) {
		if (*s < 0x80) {
			if (*s == '\n')
				dst[o++] = '\n';
			else if (*s < 0x20 || *s == 0x7f)
				dst[o++] = '?';
			else if (*s >= 'A' && *s <= 'Z')
				dst[o++] = (char)(*s - 'A' + 'a');
			else
				dst[o++] = (char)*s;
			s++;
			continue;
		}
		if (*s >= 0xc2 && *s <= 0xdf) {
			n = 2;
			cp = *s & 0x1f;
		} else if (*s >= 0xe0 && *s <= 0xef) {
			n = 3;
			cp = *s & 0x0f;
		} else if (*s >= 0xf0 && *s <= 0xf4) {
			n = 4;
			cp = *s & 0x07;
		} else {
			dst[o++] = '?';
			s++;
			continue;
		}
		for (k = 1; k < n; k++) {
			if ((s[k] & 0xc0) != 0x80)
				break;
			cp = (cp << 6) | (s[k] & 0x3f);
		}
		if (k < n || (n == 3 && cp < 0x800) ||
		    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff)) {
			/* Invalid: replace the lead byte, resync after it. */
			dst[o++] = '?';
			s++;
			continue;
		}
		if (o + n >= dstlen)
			break;
		memcpy(dst + o, s, n);
		o += n;
		s += n;
	}
	dst[o] = '\0';
}

/* The tracked destination for domain, or the "other" bucket. */
static struct metrics_dest *
metrics_dest_get(const char *domain)
{
	char	 name[SMTP_DOMAIN_MAX + 1];
	size_t	 i;

	if (domain == NULL || domain[0] == '\0')
		return (&metrics_state.other);
	metrics_sanitize(name, sizeof(name), domain);
	/* A domain spelled "other" must not get a second series so named. */
	if (strcmp(name, "other") == 0)
		return (&metrics_state.other);
	for (i = 0; i < metrics_state.ndests; i++)
		if (strcmp(metrics_state.dests[i].domain, name) == 0)
			return (&metrics_state.dests[i]);
	if (metrics_state.ndests == METRICS_TOP_N)
		return (&metrics_state.other);
	strlcpy(metrics_state.dests[i].domain, name,
	    sizeof(metrics_state.dests[i].domain));
	metrics_state.ndests++;
	return (&metrics_state.dests[i]);
}

static size_t
metrics_tls_index(const char *tls)
{
	size_t	i;

	if (tls == NULL || tls[0] == '\0')
		return (0);
	for (i = 0; i < METRICS_TLS_OTHER; i++)
		if (strcmp(tls, metrics_tls_names[i]) == 0)
			return (i);
	return (METRICS_TLS_OTHER);
}

void
metrics_observe_delivery(const char *domain, const char *outcome,
    double delay_s, const char *tls, bool verified)
{
	size_t	o, t, b;

	for (o = 0; o < METRICS_O_N; o++)
		if (outcome != NULL &&
		    strcmp(outcome, metrics_outcome_names[o]) == 0)
			break;
	if (o == METRICS_O_N) {
		log_warnx("metrics: unknown delivery outcome \"%s\"",
		    outcome != NULL ? outcome : "(null)");
		return;
	}
	metrics_state.deliveries[o]++;

	switch (o) {
	case METRICS_O_SENT:
		/*
		 * A wall clock stepped back gives a negative delay; count it
		 * as 0 rather than poison the sum.
		 */
		if (!isfinite(delay_s) || delay_s < 0)
			delay_s = 0;
		for (b = 0; b < METRICS_NBOUNDS; b++)
			if (delay_s <= metrics_delay_bounds[b])
				break;
		metrics_state.delay_buckets[b]++;
		metrics_state.delay_sum += delay_s;
		metrics_state.delay_count++;
		t = metrics_tls_index(tls);
		/* Without TLS there is nothing to verify. */
		metrics_state.tls[t][t != 0 && verified]++;
		break;
	case METRICS_O_DEFERRED:
		metrics_dest_get(domain)->deferrals++;
		break;
	default:
		metrics_dest_get(domain)->failures++;
		break;
	}
}

static void
metrics_buf_add(struct metrics_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap == 0 ? 4096 : b->cap * 2;
		b->p = xreallocarray(b->p, b->cap, 1);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void __attribute__((format(printf, 2, 3)))
metrics_buf_printf(struct metrics_buf *b, const char *fmt, ...)
{
	char	 tmp[512], *big;
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("metrics: vsnprintf failed");
	if ((size_t)n < sizeof(tmp)) {
		metrics_buf_add(b, tmp, (size_t)n);
		return;
	}
	big = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	metrics_buf_add(b, big, (size_t)n);
	free(big);
}

/* A label value between quotes, escaped as the exposition format says. */
static void
metrics_buf_label(struct metrics_buf *b, const char *v)
{
	const char	*p;

	metrics_buf_add(b, "\"", 1);
	for (p = v; *p != '\0'; p++) {
		if (*p == '\\')
			metrics_buf_add(b, "\\\\", 2);
		else if (*p == '"')
			metrics_buf_add(b, "\\\"", 2);
		else if (*p == '\n')
			metrics_buf_add(b, "\\n", 2);
		else
			metrics_buf_add(b, p, 1);
	}
	metrics_buf_add(b, "\"", 1);
}

/* The shortest of %.15g and %.17g that reads back as the same double. */
static void
metrics_fmt_double(char *dst, size_t dstlen, double v)
{
	snprintf(dst, dstlen, "%.15g", v);
	if (strtod(dst, NULL) != v)
		snprintf(dst, dstlen, "%.17g", v);
}

static void
metrics_family(struct metrics_buf *b, const char *name, const char *type,
    const char *help)
{
	metrics_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
	    type);
}

/* A family with one unlabelled sample. */
static void
metrics_single(struct metrics_buf *b, const char *name, const char *type,
    const char *help, unsigned long long v)
{
	metrics_family(b, name, type, help);
	metrics_buf_printf(b, "%s %llu\n", name, v);
}

static void
metrics_text_stats(struct metrics_buf *b)
{
	static const struct {
		const char	*name;
		size_t		 off;
		const char	*help;
	} counters[] = {
#define C(n, f, h) { "postern_" n "_total", offsetof(struct stats, f), h }
		C("messages_received", messages_received,
		    "Messages queued (accepted, and bounces generated)."),
		C("messages_delivered", messages_delivered,
		    "Messages whose every recipient was delivered."),
		C("messages_failed", messages_failed,
		    "Messages with a recipient that failed permanently."),
		C("messages_expired", messages_expired,
		    "Messages with a recipient that expired in the queue."),
		C("connections_in", connections_in_total,
		    "Inbound SMTP sessions accepted."),
		C("connections_in_rejected", connections_in_rejected,
		    "Inbound connections refused (connection limits)."),
		C("tls_in_sessions", tls_in_sessions,
		    "Inbound TLS sessions established."),
		C("tls_out_sessions", tls_out_sessions,
		    "Upstream sessions that negotiated TLS."),
		C("tls_out_verified", tls_out_verified,
		    "Upstream TLS sessions with a verified certificate."),
		C("tls_out_plaintext", tls_out_plaintext,
		    "Upstream sessions without TLS."),
		C("dkim_signed", dkim_signed, "Messages DKIM-signed."),
		C("dkim_errors", dkim_errors,
		    "Messages that could not be DKIM-signed."),
		C("escalations_sent", escalations_sent,
		    "Escalation hook runs that exited 0."),
		C("escalations_failed", escalations_failed,
		    "Escalation hook runs that failed (retried)."),
		C("rejected_smuggling", rejected_smuggling,
		    "Messages refused for a bare CR or LF (SMTP smuggling)."),
#undef C
	};
	size_t	i;

	for (i = 0; i < nitems(counters); i++)
		metrics_single(b, counters[i].name, "counter", counters[i].help,
		    (unsigned long long)*(const uint64_t *)(const void *)
		    ((const char *)&stats + counters[i].off));

	metrics_family(b, "postern_auth_attempts_total", "counter",
	    "SMTP AUTH attempts by result.");
	metrics_buf_printf(b,
	    "postern_auth_attempts_total{result=\"success\"} %llu\n"
	    "postern_auth_attempts_total{result=\"failure\"} %llu\n",
	    (unsigned long long)stats.auth_success,
	    (unsigned long long)stats.auth_failure);

	metrics_single(b, "postern_connections_in_open", "gauge",
	    "Inbound SMTP sessions open now.",
	    (unsigned long long)stats.connections_in_current);
	metrics_single(b, "postern_escalations_pending", "gauge",
	    "Escalations waiting to run or to be retried.",
	    (unsigned long long)stats.escalations_pending);
}

static void
metrics_text_gauges(struct metrics_buf *b, int64_t now)
{
	struct queue_counts	 qc;
	struct pool_stats	 ps;
	struct spool_stats	 ss;

	metrics_family(b, "postern_build_info", "gauge",
	    "Always 1; the version label says which postern runs.");
	metrics_buf_printf(b, "postern_build_info{version=");
	metrics_buf_label(b, POSTERN_VERSION);
	metrics_buf_printf(b, "} 1\n");
	metrics_single(b, "postern_start_time_seconds", "gauge",
	    "When the daemon started, seconds since the Unix epoch.",
	    (unsigned long long)(stats.started_at > 0 ? stats.started_at : 0));
	metrics_single(b, "postern_uptime_seconds", "gauge",
	    "Seconds since the daemon started.",
	    (unsigned long long)(now > stats.started_at ?
	    now - stats.started_at : 0));

	memset(&qc, 0, sizeof(qc));
	if (metrics_state.env.queue != NULL)
		queue_counts(metrics_state.env.queue, &qc);
	metrics_family(b, "postern_queue_messages", "gauge",
	    "Messages in the queue by state.");
	metrics_buf_printf(b,
	    "postern_queue_messages{state=\"active\"} %zu\n"
	    "postern_queue_messages{state=\"deferred\"} %zu\n"
	    "postern_queue_messages{state=\"held\"} %zu\n",
	    qc.by_state[QUEUE_ACTIVE], qc.by_state[QUEUE_DEFERRED],
	    qc.by_state[QUEUE_HELD]);
	metrics_single(b, "postern_queue_oldest_age_seconds", "gauge",
	    "Age of the oldest queued message (0 when the queue is empty).",
	    (unsigned long long)(qc.oldest_queued_at != 0 &&
	    now > qc.oldest_queued_at ? now - qc.oldest_queued_at : 0));

	pool_get_stats(&ps);
	metrics_single(b, "postern_pool_size", "gauge",
	    "Upstream connections allowed at once (delivery.pool_size).",
	    (unsigned long long)ps.size);
	metrics_single(b, "postern_pool_connections_in_use", "gauge",
	    "Upstream connections connecting or in a transaction.",
	    (unsigned long long)ps.in_use);
	metrics_single(b, "postern_pool_connections_idle", "gauge",
	    "Upstream connections open and idle, kept for reuse.",
	    (unsigned long long)ps.idle);
	metrics_single(b, "postern_pool_jobs_waiting", "gauge",
	    "Transactions waiting for an upstream connection.",
	    (unsigned long long)ps.waiting);
	metrics_single(b, "postern_pool_connections_peak", "gauge",
	    "Most upstream connections ever open at once.",
	    (unsigned long long)ps.peak);

	memset(&ss, 0, sizeof(ss));
	if (metrics_state.env.spool != NULL)
		spool_get_stats(metrics_state.env.spool, &ss);
	metrics_single(b, "postern_spool_committed_total", "counter",
	    "Messages made durable in the spool.",
	    (unsigned long long)ss.committed);
	metrics_single(b, "postern_spool_journal_records_total", "counter",
	    "Journal records made durable in the spool.",
	    (unsigned long long)ss.journal_records);
	metrics_single(b, "postern_spool_syncs_total", "counter",
	    "syncfs or fsync calls made by the spool.",
	    (unsigned long long)ss.syncs);
	metrics_single(b, "postern_spool_sync_errors_total", "counter",
	    "Spool syncs that failed.", (unsigned long long)ss.sync_errors);
	metrics_single(b, "postern_spool_corrupt_total", "counter",
	    "Spool files found invalid and moved to corrupt/.",
	    (unsigned long long)ss.corrupt);
}

static void
metrics_text_deliveries(struct metrics_buf *b)
{
	const struct metrics_state	*m = &metrics_state;
	char				 num[64];
	uint64_t			 cum;
	size_t				 i, v;

	metrics_family(b, "postern_deliveries_total", "counter",
	    "Recipient delivery outcomes (one per recipient per attempt).");
	for (i = 0; i < METRICS_O_N; i++)
		metrics_buf_printf(b,
		    "postern_deliveries_total{outcome=\"%s\"} %llu\n",
		    metrics_outcome_names[i],
		    (unsigned long long)m->deliveries[i]);

	metrics_family(b, "postern_delivery_delay_seconds", "histogram",
	    "Seconds from acceptance to delivery, per recipient delivered.");
	cum = 0;
	for (i = 0; i < METRICS_NBOUNDS; i++) {
		cum += m->delay_buckets[i];
		metrics_fmt_double(num, sizeof(num), metrics_delay_bounds[i]);
		metrics_buf_printf(b,
		    "postern_delivery_delay_seconds_bucket{le=\"%s\"} %llu\n",
		    num, (unsigned long long)cum);
	}
	cum += m->delay_buckets[METRICS_NBOUNDS];
	metrics_fmt_double(num, sizeof(num), m->delay_sum);
	metrics_buf_printf(b,
	    "postern_delivery_delay_seconds_bucket{le=\"+Inf\"} %llu\n"
	    "postern_delivery_delay_seconds_sum %s\n"
	    "postern_delivery_delay_seconds_count %llu\n",
	    (unsigned long long)cum, num, (unsigned long long)m->delay_count);

	metrics_family(b, "postern_destination_deferrals_total", "counter",
	    "Recipients deferred, by recipient domain (the first "
	    METRICS_STR(METRICS_TOP_N) " domains seen, the rest as other).");
	for (i = 0; i < m->ndests; i++) {
		metrics_buf_printf(b, "postern_destination_deferrals_total"
		    "{domain=");
		metrics_buf_label(b, m->dests[i].domain);
		metrics_buf_printf(b, "} %llu\n",
		    (unsigned long long)m->dests[i].deferrals);
	}
	metrics_buf_printf(b, "postern_destination_deferrals_total"
	    "{domain=\"other\"} %llu\n",
	    (unsigned long long)m->other.deferrals);

	metrics_family(b, "postern_destination_failures_total", "counter",
	    "Recipients bounced or expired, by recipient domain (the "
	    "first " METRICS_STR(METRICS_TOP_N) " domains seen, the rest as "
	    "other).");
	for (i = 0; i < m->ndests; i++) {
		metrics_buf_printf(b, "postern_destination_failures_total"
		    "{domain=");
		metrics_buf_label(b, m->dests[i].domain);
		metrics_buf_printf(b, "} %llu\n",
		    (unsigned long long)m->dests[i].failures);
	}
	metrics_buf_printf(b, "postern_destination_failures_total"
	    "{domain=\"other\"} %llu\n",
	    (unsigned long long)m->other.failures);

	metrics_family(b, "postern_tls_outbound_total", "counter",
	    "Recipients delivered, by the TLS version of the upstream "
	    "session and whether its certificate was verified.");
	for (i = 0; i < METRICS_TLS_N; i++)
		for (v = 0; v < 2; v++) {
			/* "none" cannot be verified: no such series. */
			if (i == 0 && v == 1)
				continue;
			metrics_buf_printf(b, "postern_tls_outbound_total"
			    "{tls=\"%s\",verified=\"%s\"} %llu\n",
			    metrics_tls_names[i], v ? "true" : "false",
			    (unsigned long long)m->tls[i][v]);
		}
}

char *
metrics_text(void)
{
	struct metrics_buf	b;

	memset(&b, 0, sizeof(b));
	metrics_text_gauges(&b, util_wallclock());
	metrics_text_stats(&b);
	metrics_text_deliveries(&b);
	return (b.p);
}

/* Answer one request: /metrics or 404, GET/HEAD or 405. */
static void
metrics_http_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri	*uri;
	const char		*path = NULL;
	struct evkeyvalq	*hdr = evhttp_request_get_output_headers(req);
	struct evbuffer		*body;
	enum evhttp_cmd_type	 cmd = evhttp_request_get_command(req);
	char			*text;

	(void)arg;
	uri = evhttp_request_get_evhttp_uri(req);
	if (uri != NULL)
		path = evhttp_uri_get_path(uri);
	if ((body = evbuffer_new()) == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(hdr, "Content-Type", "text/plain; charset=utf-8");
	if (path == NULL || strcmp(path, "/metrics") != 0) {
		evbuffer_add_printf(body, "not found; try /metrics\n");
		evhttp_send_reply(req, HTTP_NOTFOUND, "Not Found", body);
	} else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(hdr, "Allow", "GET, HEAD");
		evbuffer_add_printf(body, "method not allowed\n");
		evhttp_send_reply(req, 405, "Method Not Allowed", body);
	} else {
		evhttp_remove_header(hdr, "Content-Type");
		evhttp_add_header(hdr, "Content-Type",
		    "text/plain; version=0.0.4; charset=utf-8");
		/*
		 * libevent 2.1 writes whatever body it is given even for HEAD,
		 * so HEAD gets none.
		 */
		if (cmd == EVHTTP_REQ_GET) {
			text = metrics_text();
			evbuffer_add(body, text, strlen(text));
			free(text);
		}
		evhttp_send_reply(req, HTTP_OK, "OK", body);
	}
	evbuffer_free(body);
}

/* A listening socket on host:port, non-blocking, or -1 with err. */
static int
metrics_http_listen(const char *host, int port, char *err, size_t errlen)
{
	struct addrinfo	 hints, *res, *ai;
	char		 serv[16];
	int		 fd = -1, rc, one = 1, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(serv, sizeof(serv), "%d", port);
	if ((rc = getaddrinfo(host, serv, &hints, &res)) != 0) {
		snprintf(err, errlen, "metrics.listen %s:%d: %s", host, port,
		    gai_strerror(rc));
		return (-1);
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd == -1) {
			saved = errno;
			continue;
		}
		/* A restart must not wait for TIME_WAIT to clear. */
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		    sizeof(one));
		if (ai->ai_family == AF_INET6)
			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
			    sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, 64) == 0)
			break;
		saved = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		snprintf(err, errlen, "metrics.listen %s:%d: %s", host, port,
		    strerror(saved != 0 ? saved : EADDRNOTAVAIL));
	return (fd);
}

struct metrics_http *
metrics_http_new(struct event_base *base, const char *host, int port,
    char *err, size_t errlen)
{
	struct metrics_http	*mh;
	struct sockaddr_storage	 ss;
	socklen_t		 sslen = sizeof(ss);
	int			 fd;

	if (host == NULL || host[0] == '\0' || port < 0 || port > 65535) {
		snprintf(err, errlen, "metrics.listen: no valid host:port");
		return (NULL);
	}
	if ((fd = metrics_http_listen(host, port, err, errlen)) == -1)
		return (NULL);
	mh = xcalloc(1, sizeof(*mh));
	if ((mh->http = evhttp_new(base)) == NULL) {
		snprintf(err, errlen, "metrics.listen: evhttp_new failed");
		close(fd);
		free(mh);
		return (NULL);
	}
	evhttp_set_max_headers_size(mh->http, METRICS_HTTP_HEADERS_MAX);
	/* A scrape has no body; a request with one gets 413. */
	evhttp_set_max_body_size(mh->http, 0);
	evhttp_set_timeout(mh->http, METRICS_HTTP_TIMEOUT);
	/*
	 * Let every method reach metrics_http_cb, which answers 405; libevent
	 * itself would answer 501 for the methods it does not allow.
	 */
	evhttp_set_allowed_methods(mh->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_gencb(mh->http, metrics_http_cb, mh);
	if ((mh->sock = evhttp_accept_socket_with_handle(mh->http, fd)) ==
	    NULL) {
		snprintf(err, errlen, "metrics.listen %s:%d: cannot accept",
		    host, port);
		close(fd);
		evhttp_free(mh->http);
		free(mh);
		return (NULL);
	}
	mh->port = port;
	if (getsockname(fd, (struct sockaddr *)&ss, &sslen) == 0) {
		if (ss.ss_family == AF_INET)
			mh->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			mh->port =
			    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return (mh);
}

void
metrics_http_free(struct metrics_http *mh)
{
	if (mh == NULL)
		return;
	/* Frees the bound socket (closing it) and every open connection. */
	evhttp_free(mh->http);
	free(mh);
}

int
metrics_http_port(const struct metrics_http *mh)
{
	return (mh->port);
}
