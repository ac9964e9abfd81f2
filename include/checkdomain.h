/*
 * checkdomain.h: `posternctl check-domain DOMAIN`: checks, through the
 * configured DNS servers, that DOMAIN publishes what mail relayed by this
 * postern needs: an SPF record that passes the relay's outbound addresses,
 * the DKIM public key of every configured dkim entry for DOMAIN or a
 * parent of it, and a DMARC record.  Each item that is missing or wrong
 * comes with the exact record to publish.  Works without a running daemon.
 */
#ifndef POSTERN_CHECKDOMAIN_H
#define POSTERN_CHECKDOMAIN_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct conf;

enum checkdomain_status {
	CHECKDOMAIN_PASS,
	CHECKDOMAIN_FAIL,
	CHECKDOMAIN_MISSING
};

/* Outbound addresses considered at most. */
#define CHECKDOMAIN_IPS_MAX	32
/* One TXT character-string: records to publish are split at this length. */
#define CHECKDOMAIN_TXT_CHUNK	255

struct checkdomain_item {
	const char		*check;	/* "spf", "dkim", "dmarc" */
	enum checkdomain_status	 status;
	char			*name;	/* owned: name looked up */
	char			*detail; /* owned: one line, escaped */
	char			*found;	/* owned: record, or NULL */
	char			*record; /* owned: TXT value to publish,
					    NULL when it passes */
	char			*publish; /* owned: the zone-file line */
};

struct checkdomain_report {
	char			*domain;	/* owned, lower case */
	struct checkdomain_item	*items;		/* owned array */
	size_t			 nitems;
};

/*
 * Run every check for domain.  ips/nips are the outbound addresses (nips 0:
 * every global-scope address of this host, from getifaddrs()); conf gives
 * delivery.dns_servers and the dkim entries.  query_ms/total_ms are the DNS
 * timeouts (0: spfcheck's defaults).  0 with the report filled, or -1 with
 * err set for a usage or setup problem (bad domain, unusable DNS servers).
 */
int		 checkdomain_run(const struct conf *, const char *domain,
		    const struct sockaddr_storage *ips, size_t nips,
		    int query_ms, int total_ms, struct checkdomain_report *,
		    char *err, size_t errlen);
void		 checkdomain_report_free(struct checkdomain_report *);
/* True when every item passed. */
bool		 checkdomain_report_is_ok(
		    const struct checkdomain_report *);

/* One line per item, each missing or failing one followed by its fix. */
void		 checkdomain_print(FILE *,
		    const struct checkdomain_report *);
/* The report as one JSON object (owned string, one line). */
char		*checkdomain_json(const struct checkdomain_report *);

/*
 * The whole command: parse the --ip strings, run, print text or JSON to
 * out, problems to errf.  Returns the exit status: 0 all pass, 1 something
 * is missing or wrong, 2 usage or configuration error.
 */
int		 checkdomain_main(const struct conf *, const char *domain,
		    char *const *ips, size_t nips, bool json, FILE *out,
		    FILE *errf);

/*
 * The global-scope unicast addresses of this host's interfaces (no
 * loopback, link-local, RFC 1918, CGNAT, ULA or documentation ranges);
 * at most max.  Returns the count.
 */
size_t		 checkdomain_local_ips(struct sockaddr_storage *,
		    size_t max);

#endif /* POSTERN_CHECKDOMAIN_H */
