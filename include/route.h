/*
 * route.h: where to deliver a recipient domain (SPEC section 4, Routing):
 * the smarthost if one is set, else the domain's MX hosts in preference
 * order (equal preferences shuffled by dns.c), else its own A/AAAA when it
 * has no MX.  The answer is a short ordered list of host addresses to try
 * within one attempt, or a temporary or permanent failure with its DSN.
 */
#ifndef POSTERN_ROUTE_H
#define POSTERN_ROUTE_H

#include <sys/socket.h>

#include <stddef.h>
#include <stdint.h>

struct conf;
struct dns;

/* Addresses tried within one attempt (Postfix tries 5; we allow a few). */
#define ROUTE_HOPS_MAX		10
/* MX hosts whose addresses are looked up for one attempt. */
#define ROUTE_MX_MAX		5

enum route_status { ROUTE_OK, ROUTE_TEMPFAIL, ROUTE_PERMFAIL };

struct route_hop {
	char			 host[256];	/* MX or smarthost name */
	struct sockaddr_storage	 addr;		/* with the port set */
	socklen_t		 addrlen;
};

struct route_result {
	enum route_status	 status;
	char			 dsn[12];	/* for failures */
	char			 error[256];	/* for failures */
	struct route_hop	 hops[ROUTE_HOPS_MAX];
	size_t			 nhops;
};

typedef void (*route_cb)(uint64_t cookie, const struct route_result *,
    void *arg);

/*
 * Resolve the route for domain (ignored with a smarthost).  The callback
 * runs later from the loop, or at once when no lookup is needed (a numeric
 * smarthost).  Returns -1 only on a bad argument.
 */
int	route_lookup(struct dns *, const struct conf *, const char *domain,
	    route_cb, uint64_t cookie, void *arg);

/* Free every outstanding lookup without calling back (shutdown). */
void	route_cancel_all(void);

#endif /* POSTERN_ROUTE_H */
