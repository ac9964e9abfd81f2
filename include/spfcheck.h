/*
 * spfcheck.h: SPF client authorization for relay_spf_domain (SPEC section
 * 3, SECURITY-CASES IN-38).  libspf2 evaluates the record; its DNS goes
 * through a blocking resolver of our own that uses delivery.dns_servers
 * (ports included), counts DNS terms across includes and bounds the time
 * one evaluation may take.  spfcheck_run() blocks and belongs on a worker
 * thread; spfcheck_cached() is the loop thread's non-blocking probe.
 *
 * Anything but SPFCHECK_PASS means "not authorized": TEMPERROR and
 * PERMERROR in particular are never a pass.
 */
#ifndef POSTERN_SPFCHECK_H
#define POSTERN_SPFCHECK_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>

struct conf_hostport;

enum spfcheck_result {
	SPFCHECK_PASS,
	SPFCHECK_FAIL,
	SPFCHECK_SOFTFAIL,
	SPFCHECK_NEUTRAL,
	SPFCHECK_NONE,
	SPFCHECK_TEMPERROR,
	SPFCHECK_PERMERROR
};

/* RFC 7208 section 4.6.4: DNS terms and void lookups per evaluation. */
#define SPFCHECK_DNS_TERMS_MAX	10
#define SPFCHECK_VOID_MAX	2
/* Cache: entries, and the bounds applied to the records' TTL (seconds). */
#define SPFCHECK_CACHE_MAX	4096
#define SPFCHECK_TTL_MIN	30
#define SPFCHECK_TTL_MAX	3600
/* TEMPERROR is cached this long only, so an outage ends quickly. */
#define SPFCHECK_TEMPERROR_TTL	10
/* Default timeouts: one query to one server, and one whole evaluation. */
#define SPFCHECK_QUERY_MS	2500
#define SPFCHECK_TOTAL_MS	15000
/* Nameservers used at most (as glibc's MAXNS, plus room for ports). */
#define SPFCHECK_SERVERS_MAX	8

struct spfcheck;

/* "pass", "fail", "softfail", "neutral", "none", "temperror", "permerror". */
const char	*spfcheck_result_name(enum spfcheck_result);

/*
 * A checker that queries the n servers ("ip" or "ip:port" entries of
 * delivery.dns_servers, numeric hosts only) in order; n == 0 means the
 * nameservers of /etc/resolv.conf.  NULL with the reason in err.
 */
struct spfcheck	*spfcheck_new(const struct conf_hostport *dns_servers,
		    size_t n, char *err, size_t errlen);
/* Frees the cache too.  No spfcheck_run() may be running.  Accepts NULL. */
void		 spfcheck_free(struct spfcheck *);

/*
 * Per-try timeout of one query to one server and the budget of a whole
 * evaluation, in milliseconds (0 keeps the current value).  Call before
 * the checker is shared between threads.
 */
void		 spfcheck_set_timeouts(struct spfcheck *, int query_ms,
		    int total_ms);

/*
 * Blocking (worker thread): the SPF result of client for domain (HELO and
 * MAIL identity = domain: RFC 7208 check_host(ip, domain,
 * "postmaster@domain")); explain gets a short reason for logs, already
 * escaped.  Uses and fills the cache.  Thread-safe: every call builds its
 * own libspf2 server and resolver state; only the cache is shared, under
 * a mutex.  A loopback client is never evaluated (libspf2 would pass it
 * unconditionally) and gets NEUTRAL.
 */
enum spfcheck_result spfcheck_run(struct spfcheck *,
		    const struct sockaddr *client, const char *domain,
		    char *explain, size_t explainlen);

/* Non-blocking cache probe for the loop thread: true and *res when fresh. */
bool		 spfcheck_cached(struct spfcheck *,
		    const struct sockaddr *client, const char *domain,
		    enum spfcheck_result *res);

/* Entries in the cache, expired ones included (for tests and stats). */
size_t		 spfcheck_cache_size(struct spfcheck *);

/*
 * Blocking TXT lookup through the same servers, for `posternctl
 * check-domain`: each record's strings joined.  0 with *txt an owned array
 * of *ntxt owned strings (*ntxt == 0: NXDOMAIN or no TXT records), -1 on a
 * DNS failure (timeout, SERVFAIL, REFUSED, malformed answer) with err set.
 * Free the array with spfcheck_txt_free().
 */
int		 spfcheck_txt(struct spfcheck *, const char *name,
		    char ***txt, size_t *ntxt, char *err, size_t errlen);
void		 spfcheck_txt_free(char **txt, size_t ntxt);

#endif /* POSTERN_SPFCHECK_H */
