/*
 * dns.h: asynchronous MX and A/AAAA lookups for delivery routing (SPEC
 * section 4), c-ares driven by the caller's libevent loop, with a bounded
 * TTL cache.  Results are delivered by value to a callback that carries the
 * requester's cookie (STYLE 2.7): the requester may be gone by then, so the
 * callback must look it up by id rather than trust a pointer.
 *
 * Every callback runs later, from the event loop, never from inside
 * dns_lookup_mx() or dns_lookup_addr(), even for a cached answer.
 */
#ifndef POSTERN_DNS_H
#define POSTERN_DNS_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct conf_hostport;

enum dns_status {
	DNS_OK,			/* answer present */
	DNS_NODATA,		/* name exists, no records of that type */
	DNS_NXDOMAIN,		/* the name does not exist: permanent */
	DNS_NULLMX,		/* RFC 7505 "MX 0 ." in the set: 5.1.10 */
	DNS_TEMPFAIL,		/* SERVFAIL, REFUSED, timeout, no server,
				   malformed answer, CNAME loop, cancelled */
};
const char	*dns_status_name(enum dns_status);

#define DNS_MX_MAX		16	/* MX hosts handed to one delivery */
#define DNS_ADDR_MAX		16	/* addresses handed to one attempt */
#define DNS_CACHE_MAX		10000	/* default cache size, in entries */
#define DNS_CNAME_CHASE_MAX	8	/* longer CNAME chains defer */

struct dns_mx {
	char		 host[256];	/* lower case, no trailing dot */
	unsigned int	 pref;
};

/*
 * status DNS_OK with nmx == 0 means the domain has MX records but none is
 * usable (every exchange was a numeric name, OUT-32): fail the recipient
 * (5.4.4); this is not NODATA, so do not fall back to A/AAAA (error says
 * why).  ttl is the time in seconds the answer stays cached.
 */
struct dns_mx_result {
	enum dns_status	 status;
	struct dns_mx	 mx[DNS_MX_MAX];
	size_t		 nmx;
	uint32_t	 ttl;
	char		 error[128];	/* "" for DNS_OK with nmx > 0 */
};

struct dns_addr_result {
	enum dns_status	 status;
	struct sockaddr_storage addr[DNS_ADDR_MAX];	/* port 0 */
	size_t		 naddr;
	uint32_t	 ttl;
	char		 error[128];
};

typedef void (*dns_mx_cb)(uint64_t cookie, const struct dns_mx_result *,
    void *arg);
typedef void (*dns_addr_cb)(uint64_t cookie, const struct dns_addr_result *,
    void *arg);

struct dns;

/*
 * Tunables; zero in a field means its default.  timeout_ms is c-ares's
 * first-try timeout per server (default 5000; c-ares doubles it on each
 * round), tries the rounds over all servers (default 3), cache_max the
 * cache size in entries (default DNS_CACHE_MAX).
 */
struct dns_opts {
	int		 timeout_ms;
	int		 tries;
	size_t		 cache_max;
};

/*
 * A resolver on base.  servers (nservers of them, numeric IPv4 or IPv6
 * host, port <= 0 meaning 53) replace /etc/resolv.conf's; nservers == 0
 * keeps the system's.  NULL with err filled on failure.
 */
struct dns	*dns_new(struct event_base *, const struct conf_hostport *servers,
		    size_t nservers, char *err, size_t errlen);
/* As dns_new with tunables; opts may be NULL. */
struct dns	*dns_new_opts(struct event_base *,
		    const struct conf_hostport *servers, size_t nservers,
		    const struct dns_opts *opts, char *err, size_t errlen);
/*
 * Cancel every outstanding lookup and free everything.  The callbacks of
 * cancelled lookups are NOT run, so a caller that frees the resolver must
 * not wait for them.  May be called from a dns callback.  Accepts NULL.
 */
void		 dns_free(struct dns *);

/*
 * MX records of domain (no search domains), sorted by preference with
 * equal preferences in a random order drawn anew for each lookup, cached
 * or not, and capped at DNS_MX_MAX.  Exchanges that are IP literals or not
 * host names are dropped with a warning (OUT-32); a "." exchange anywhere
 * gives DNS_NULLMX.  NODATA means "no MX": the caller falls back to the
 * domain's A/AAAA (RFC 5321 5.1); TEMPFAIL must not fall back (OUT-28).
 * Returns -1, and cb never runs, when domain is not a syntactically valid
 * domain name; otherwise 0 and cb runs exactly once from the event loop
 * (unless dns_free comes first).
 */
int		 dns_lookup_mx(struct dns *, const char *domain, dns_mx_cb,
		    uint64_t cookie, void *arg);
/*
 * A and AAAA of host, both queried.  Addresses alternate IPv6 and IPv4,
 * IPv6 first when both exist (RFC 6555 spirit), capped at DNS_ADDR_MAX.
 * OK when either type has records; NXDOMAIN only when both say so;
 * TEMPFAIL when either failed temporarily and the other had nothing;
 * otherwise NODATA.  The port of every sockaddr is 0.  No filtering of
 * loopback or own addresses happens here (OUT-33 is the caller's).
 * Return value and callback as for dns_lookup_mx.
 */
int		 dns_lookup_addr(struct dns *, const char *host, dns_addr_cb,
		    uint64_t cookie, void *arg);

/*
 * The cache holds each (name, type) answer: positive ones for their TTL
 * clamped to [1 s, 1 day]; NXDOMAIN and NODATA for the SOA's negative TTL
 * (RFC 2308: min of SOA TTL and MINIMUM) capped at 300 s, or 60 s when
 * the answer has no SOA; TEMPFAIL never.  At cache_max entries the oldest
 * entry is evicted.  dns_cache_flush empties it.
 */
void		 dns_cache_flush(struct dns *);

/*
 * queries: DNS queries sent to the network (an addr lookup sends up to
 * two); cache_hits: per-type answers served from the cache; failures:
 * network queries that ended in TEMPFAIL.
 */
struct dns_stats {
	uint64_t	 queries;
	uint64_t	 cache_hits;
	uint64_t	 failures;
};
void		 dns_get_stats(const struct dns *, struct dns_stats *);

#endif /* POSTERN_DNS_H */
