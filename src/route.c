/*
 * route.c: recipient domain -> ordered host addresses (SPEC section 4).
 *
 * The decisions of SECURITY-CASES OUT-27..OUT-32 live here: NXDOMAIN for
 * the domain is permanent (5.1.2) while NXDOMAIN for one MX host only
 * skips that host; a null MX anywhere wins (5.1.10, decided by dns.c);
 * SERVFAIL and timeouts are temporary (4.4.3) and never fall back to the
 * domain's A/AAAA, which is for NODATA only; an MX set that yields no
 * usable address fails 5.4.4 unless a lookup failed temporarily.
 *
 * Ownership: a lookup is a struct route_req owned by this module from
 * route_lookup() until its callback has run; DNS answers find it through
 * the pointer they were given.  dns_free() drops outstanding lookups
 * without calling back, so route_cancel_all() frees what is left first.
 */
#include "compat.h"

#include <sys/queue.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "dns.h"
#include "log.h"
#include "route.h"
#include "util.h"

struct route_req {
	struct dns		*dns;		/* borrowed */
	route_cb		 cb;
	uint64_t		 cookie;
	void			*arg;
	int			 port;
	struct dns_mx		 mx[ROUTE_MX_MAX];
	size_t			 nmx;
	size_t			 next;		/* next MX host to resolve */
	bool			 tempfail;	/* some lookup failed for now */
	struct route_result	 res;
	TAILQ_ENTRY(route_req)	 entry;		/* route_reqs */
};

/* Outstanding lookups, so that shutdown can free what dns.c drops. */
static TAILQ_HEAD(, route_req) route_reqs = TAILQ_HEAD_INITIALIZER(route_reqs);

static void	route_next_host(struct route_req *);

static void
route_finish(struct route_req *r)
{
	TAILQ_REMOVE(&route_reqs, r, entry);
	r->cb(r->cookie, &r->res, r->arg);
	free(r);
}

void
route_cancel_all(void)
{
	struct route_req	*r;

	while ((r = TAILQ_FIRST(&route_reqs)) != NULL) {
		TAILQ_REMOVE(&route_reqs, r, entry);
		free(r);
	}
}

static void
route_fail(struct route_req *, enum route_status, const char *,
    const char *, ...) __attribute__((format(printf, 4, 5)));

static void
route_fail(struct route_req *r, enum route_status st, const char *dsn,
    const char *fmt, ...)
{
	va_list	ap;

	r->res.status = st;
	strlcpy(r->res.dsn, dsn, sizeof(r->res.dsn));
	va_start(ap, fmt);
	vsnprintf(r->res.error, sizeof(r->res.error), fmt, ap);
	va_end(ap);
	route_finish(r);
}

/* A numeric host: use it as it is, no lookup. */
static bool
route_numeric(const char *host, int port, struct route_hop *hop)
{
	struct sockaddr_in	*sin = (void *)&hop->addr;
	struct sockaddr_in6	*sin6 = (void *)&hop->addr;

	memset(&hop->addr, 0, sizeof(hop->addr));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		hop->addrlen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		hop->addrlen = sizeof(*sin6);
	} else
		return (false);
	strlcpy(hop->host, host, sizeof(hop->host));
	return (true);
}

static void
route_addr_done(uint64_t cookie, const struct dns_addr_result *a, void *arg)
{
	struct route_req	*r = arg;
	const char		*host = r->mx[r->next - 1].host;
	size_t			 i;

	switch (a->status) {
	case DNS_OK:
		for (i = 0; i < a->naddr && r->res.nhops < ROUTE_HOPS_MAX;
		    i++) {
			struct route_hop *hop = &r->res.hops[r->res.nhops++];

			strlcpy(hop->host, host, sizeof(hop->host));
			hop->addr = a->addr[i];
			if (hop->addr.ss_family == AF_INET6) {
				((struct sockaddr_in6 *)&hop->addr)->sin6_port =
				    htons((uint16_t)r->port);
				hop->addrlen = sizeof(struct sockaddr_in6);
			} else {
				((struct sockaddr_in *)&hop->addr)->sin_port =
				    htons((uint16_t)r->port);
				hop->addrlen = sizeof(struct sockaddr_in);
			}
		}
		break;
	case DNS_TEMPFAIL:
		r->tempfail = true;
		log_info("route: %s: address lookup failed for now: %s", host,
		    a->error);
		break;
	default:
		/* OUT-27: one unknown MX host only removes that host. */
		log_info("route: %s: %s", host, dns_status_name(a->status));
		break;
	}
	route_next_host(r);
}

static void
route_next_host(struct route_req *r)
{
	while (r->next < r->nmx && r->res.nhops < ROUTE_HOPS_MAX) {
		struct dns_mx	*mx = &r->mx[r->next++];

		if (route_numeric(mx->host, r->port,
		    &r->res.hops[r->res.nhops])) {
			r->res.nhops++;
			continue;
		}
		if (dns_lookup_addr(r->dns, mx->host, route_addr_done, 0, r)
		    == -1) {
			r->tempfail = true;
			continue;
		}
		return;
	}
	if (r->res.nhops > 0) {
		r->res.status = ROUTE_OK;
		route_finish(r);
	} else if (r->tempfail)
		route_fail(r, ROUTE_TEMPFAIL, "4.4.3", "%s: host lookup failed "
		    "for now", r->mx[0].host);
	else
		route_fail(r, ROUTE_PERMFAIL, "5.4.4", "%s: no usable host "
		    "address", r->mx[0].host);
}

static void
route_mx_done(uint64_t cookie, const struct dns_mx_result *m, void *arg)
{
	struct route_req	*r = arg;
	const char		*domain = r->mx[0].host;
	size_t			 i;

	switch (m->status) {
	case DNS_OK:
		for (i = 0; i < m->nmx && i < ROUTE_MX_MAX; i++)
			r->mx[i] = m->mx[i];
		r->nmx = i;
		if (r->nmx == 0) {
			route_fail(r, ROUTE_PERMFAIL, "5.4.4", "%s: no usable "
			    "MX host", domain);
			return;
		}
		break;
	case DNS_NODATA:
		/* RFC 5321 5.1: the domain itself is the implicit MX. */
		r->nmx = 1;
		break;
	case DNS_NXDOMAIN:
		route_fail(r, ROUTE_PERMFAIL, "5.1.2", "Host or domain name "
		    "not found: %s", domain);
		return;
	case DNS_NULLMX:
		route_fail(r, ROUTE_PERMFAIL, "5.1.10", "Domain %s does not "
		    "accept mail (null MX)", domain);
		return;
	default:
		route_fail(r, ROUTE_TEMPFAIL, "4.4.3", "MX lookup for %s failed "
		    "for now", domain);
		return;
	}
	route_next_host(r);
}

int
route_lookup(struct dns *dns, const struct conf *conf, const char *domain,
    route_cb cb, uint64_t cookie, void *arg)
{
	struct route_req	*r;

	r = xcalloc(1, sizeof(*r));
	r->dns = dns;
	r->cb = cb;
	r->cookie = cookie;
	r->arg = arg;
	TAILQ_INSERT_TAIL(&route_reqs, r, entry);
	if (conf->delivery.smarthost.host != NULL) {
		/* A smarthost: its addresses, no MX lookup (SPEC 2). */
		r->port = conf->delivery.smarthost.port;
		strlcpy(r->mx[0].host, conf->delivery.smarthost.host,
		    sizeof(r->mx[0].host));
		r->nmx = 1;
		route_next_host(r);
		return (0);
	}
	r->port = conf->delivery.port;
	strlcpy(r->mx[0].host, domain, sizeof(r->mx[0].host));
	if (dns_lookup_mx(dns, domain, route_mx_done, cookie, r) == -1) {
		TAILQ_REMOVE(&route_reqs, r, entry);
		free(r);
		return (-1);
	}
	return (0);
}
