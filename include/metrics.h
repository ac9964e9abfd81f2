/*
 * metrics.h: Prometheus text exposition (format 0.0.4) of the daemon's
 * counters and gauges (SPEC section 5 `stats`), a delivery-delay histogram,
 * per-outcome and per-destination delivery counters and TLS outcomes, and
 * the optional HTTP endpoint `metrics.listen` (SPEC section 2).  Everything
 * runs on the event-loop thread; nothing here is thread-safe.
 */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct queue;
struct spool;

/* Destination domains with a series of their own; the rest is "other". */
#define METRICS_TOP_N			20
/* Bytes of request line plus headers the HTTP endpoint reads. */
#define METRICS_HTTP_HEADERS_MAX	8192
/* Seconds a connection to the HTTP endpoint may stay silent or blocked. */
#define METRICS_HTTP_TIMEOUT		10

/* What metrics_text needs to read; borrowed pointers, set once by the
 * daemon.  Either may be NULL (its gauges then read 0). */
struct metrics_env {
	struct queue	*queue;
	struct spool	*spool;
};

void	 metrics_init(const struct metrics_env *);
/* Forget the environment and every observation (counters restart at 0). */
void	 metrics_free(void);

/*
 * One recipient outcome: domain = recipient domain (lowercased); outcome
 * one of "sent", "deferred", "bounced", "expired"; delay_s = now -
 * queued_at; tls = "none" or "TLSv1.3"... for the session that carried
 * it; verified = its certificate was verified.  The delay histogram and
 * the TLS family count "sent" only; "deferred" counts as a destination
 * deferral, "bounced" and "expired" as destination failures.
 */
void	 metrics_observe_delivery(const char *domain, const char *outcome,
	    double delay_s, const char *tls, bool verified);

/* The whole exposition (text/plain; version=0.0.4), caller frees. */
char	*metrics_text(void);

struct metrics_http;

/*
 * evhttp on host:port serving GET (and HEAD) /metrics, 404 for any other
 * path, 405 for another method; request line and headers bounded by
 * METRICS_HTTP_HEADERS_MAX (413 beyond), no request body, connections
 * closed after METRICS_HTTP_TIMEOUT idle seconds.  Port 0 picks a free
 * port (see metrics_http_port).  NULL with err.
 */
struct metrics_http *metrics_http_new(struct event_base *, const char *host,
	    int port, char *err, size_t errlen);
/* Close the listening socket and every connection; accepts NULL. */
void	 metrics_http_free(struct metrics_http *);
/* The port actually bound (useful after port 0). */
int	 metrics_http_port(const struct metrics_http *);

#endif /* POSTERN_METRICS_H */
