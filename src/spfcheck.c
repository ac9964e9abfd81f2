/*
 * spfcheck.c: SPF authorization of relay clients for relay_spf_domain
 * (SPEC section 3, SECURITY-CASES IN-38), with libspf2 doing the record
 * evaluation and a blocking DNS layer of our own doing the lookups.
 *
 * Why our own DNS layer: libspf2's resolv layer keeps a private per-thread
 * res_state built from /etc/resolv.conf, so it cannot use
 * delivery.dns_servers (with ports), has no overall time budget, and
 * libspf2 restarts its count of DNS mechanisms inside every include:, so
 * a chain of includes is not held to RFC 7208's limit of 10.  The layer
 * (spfcheck_layer_*) therefore counts DNS terms and void lookups across
 * the whole evaluation, refuses the 11th term, answers type SPF (99)
 * queries itself (obsolete, and a wasted round trip), never fetches exp=
 * explanations, and records the smallest TTL seen for the cache.
 *
 * Threads: every spfcheck_run() builds its own SPF_server_t, request and
 * DNS layer on its own stack, so libspf2 state is never shared; the only
 * shared state is the cache, under sc->lock.  libspf2's global log hooks
 * are set once, through pthread_once.
 *
 * Invariant: any DNS failure, limit or malformed answer ends in TEMPERROR
 * or PERMERROR, and only SPFCHECK_PASS authorizes.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <resolv.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "conf.h"
#include "log.h"
#include "postern.h"
#include "spfcheck.h"
#include "util.h"

#define SPFCHECK_TRIES		2	/* rounds over all servers */
#define SPFCHECK_RR_MAX		64	/* records kept per answer */
#define SPFCHECK_RAW_MAX	128	/* records scanned in one answer */
#define SPFCHECK_CNAME_MAX	8	/* CNAME hops followed */
#define SPFCHECK_HOSTS_MAX	10	/* MX/PTR names checked (libspf2) */
#define SPFCHECK_UDP_MAX	4096
#define SPFCHECK_EDNS_SIZE	1232
#define SPFCHECK_NEG_TTL	300	/* negative answer without an SOA */
#define SPFCHECK_NAME_MAX	(NS_MAXDNAME + 1)

enum spfcheck_dns_status {
	SPFCHECK_DNS_OK,
	SPFCHECK_DNS_NXDOMAIN,
	SPFCHECK_DNS_NODATA,
	SPFCHECK_DNS_TEMP
};

struct spfcheck_server {
	struct sockaddr_storage	 ss;
	socklen_t		 len;
};

struct spfcheck_entry {
	int			 family;
	unsigned char		 addr[16];
	char			 domain[SMTP_DOMAIN_MAX + 1]; /* lower */
	enum spfcheck_result	 res;
	double			 expires;	/* util_monotonic() */
};

struct spfcheck {
	struct spfcheck_server	 servers[SPFCHECK_SERVERS_MAX];
	size_t			 nservers;
	int			 query_ms;
	int			 total_ms;
	pthread_mutex_t		 lock;		/* guards cache */
	struct util_map		 cache;	/* hash -> owned entry */
};

/* One record of an answer; data is owned (raw address, name or text). */
struct spfcheck_rr {
	uint16_t	 type;
	size_t		 len;
	char		*data;
};

struct spfcheck_answer {
	enum spfcheck_dns_status status;
	struct spfcheck_rr	 rr[SPFCHECK_RR_MAX];
	size_t			 nrr;
	uint32_t		 ttl;
	char			 why[160];
};

/* The state of one evaluation, reached from the DNS layer's hook. */
struct spfcheck_eval {
	struct spfcheck	*sc;
	double		 deadline;
	bool		 top_done;	/* top-level TXT query made */
	int		 nterms;
	int		 nvoid;
	bool		 over_terms;
	bool		 over_void;
	bool		 dns_failed;
	char		 why[200];
	uint32_t	 ttl;		/* smallest TTL seen */
	/* Names of the last MX/PTR answer: their address lookups are free. */
	char		 hosts[SPFCHECK_HOSTS_MAX][SPFCHECK_NAME_MAX];
	size_t		 nhosts;
	size_t		 nexthost;
};

static const char *spfcheck_names[] = {
	[SPFCHECK_PASS] = "pass",
	[SPFCHECK_FAIL] = "fail",
	[SPFCHECK_SOFTFAIL] = "softfail",
	[SPFCHECK_NEUTRAL] = "neutral",
	[SPFCHECK_NONE] = "none",
	[SPFCHECK_TEMPERROR] = "temperror",
	[SPFCHECK_PERMERROR] = "permerror",
};
_Static_assert(nitems(spfcheck_names) == SPFCHECK_PERMERROR + 1,
    "spfcheck_names");

static pthread_once_t spfcheck_once = PTHREAD_ONCE_INIT;

const char *
spfcheck_result_name(enum spfcheck_result r)
{
	if ((size_t)r >= nitems(spfcheck_names))
		return ("unknown");
	return (spfcheck_names[r]);
}

/* libspf2 reports internal errors (OOM, broken invariants) this way. */
static void __attribute__((noreturn))
spfcheck_spf_error(const char *file, int line, const char *msg)
{
	fatalx("libspf2: %s:%d: %s", file != NULL ? file : "?", line,
	    msg != NULL ? msg : "");
}

/* Warnings and chatter about peer records are debug material only. */
static void
spfcheck_spf_debug(const char *file, int line, const char *msg)
{
	char	esc[256];

	(void)file;
	(void)line;
	if (msg != NULL && log_is_debug())
		log_debug("libspf2: %s", util_escape(esc, sizeof(esc), msg,
		    strlen(msg)));
}

static void
spfcheck_init_once(void)
{
	SPF_error_handler = spfcheck_spf_error;
	SPF_warning_handler = spfcheck_spf_debug;
	SPF_info_handler = spfcheck_spf_debug;
	SPF_debug_handler = spfcheck_spf_debug;
}

static int
spfcheck_add_server(struct spfcheck *sc, const char *host, int port,
    char *err, size_t errlen)
{
	struct addrinfo	 hints, *res;
	char		 portstr[16];
	int		 rc;

	if (sc->nservers >= SPFCHECK_SERVERS_MAX) {
		snprintf(err, errlen, "more than %d DNS servers",
		    SPFCHECK_SERVERS_MAX);
		return (-1);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_DGRAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port > 0 ? port : 53);
	if ((rc = getaddrinfo(host, portstr, &hints, &res)) != 0) {
		snprintf(err, errlen, "DNS server %s: %s", host,
		    gai_strerror(rc));
		return (-1);
	}
	memcpy(&sc->servers[sc->nservers].ss, res->ai_addr, res->ai_addrlen);
	sc->servers[sc->nservers].len = res->ai_addrlen;
	sc->nservers++;
	freeaddrinfo(res);
	return (0);
}

/* The nameservers of /etc/resolv.conf, else 127.0.0.1 as glibc does. */
static int
spfcheck_resolv_conf(struct spfcheck *sc, char *err, size_t errlen)
{
	FILE	*f;
	char	 line[512], *p, *addr;

	if ((f = fopen(_PATH_RESCONF, "re")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL &&
		    sc->nservers < 3) {
			p = line;
			if (strncmp(p, "nameserver", 10) != 0 ||
			    (p[10] != ' ' && p[10] != '\t'))
				continue;
			p += 10;
			p += strspn(p, " \t");
			addr = p;
			p += strcspn(p, " \t\r\n#;");
			*p = '\0';
			/* A bad line is skipped, as the libc resolver does. */
			if (*addr != '\0' && spfcheck_add_server(sc, addr,
			    53, err, errlen) == -1)
				log_warnx("%s: %s", _PATH_RESCONF, err);
		}
		fclose(f);
	}
	if (sc->nservers == 0)
		return (spfcheck_add_server(sc, "127.0.0.1", 53, err, errlen));
	return (0);
}

struct spfcheck *
spfcheck_new(const struct conf_hostport *servers, size_t n, char *err,
    size_t errlen)
{
	struct spfcheck	*sc;
	size_t		 i;

	pthread_once(&spfcheck_once, spfcheck_init_once);
	sc = xcalloc(1, sizeof(*sc));
	sc->query_ms = SPFCHECK_QUERY_MS;
	sc->total_ms = SPFCHECK_TOTAL_MS;
	for (i = 0; i < n; i++) {
		if (servers[i].host == NULL ||
		    spfcheck_add_server(sc, servers[i].host, servers[i].port,
		    err, errlen) == -1) {
			if (servers[i].host == NULL)
				snprintf(err, errlen, "empty DNS server");
			free(sc);
			return (NULL);
		}
	}
	if (n == 0 && spfcheck_resolv_conf(sc, err, errlen) == -1) {
		free(sc);
		return (NULL);
	}
	pthread_mutex_init(&sc->lock, NULL);
	util_map_init(&sc->cache);
	return (sc);
}

void
spfcheck_free(struct spfcheck *sc)
{
	size_t		 it = 0;
	uint64_t	 key;
	void		*val;

	if (sc == NULL)
		return;
	while (util_map_next(&sc->cache, &it, &key, &val))
		free(val);
	util_map_clear(&sc->cache);
	pthread_mutex_destroy(&sc->lock);
	free(sc);
}

void
spfcheck_set_timeouts(struct spfcheck *sc, int query_ms, int total_ms)
{
	if (query_ms > 0)
		sc->query_ms = query_ms;
	if (total_ms > 0)
		sc->total_ms = total_ms;
}

/*
 * DNS wire format.
 */

/* name (optionally dot-terminated) as wire labels into buf; length or -1. */
static int
spfcheck_dns_encode_name(const char *name, unsigned char *buf, size_t len)
{
	size_t	 n = strlen(name), off = 0, l;
	const char *p = name, *dot;

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n > SMTP_DOMAIN_MAX - 1)
		return (-1);
	while (p < name + n) {
		dot = memchr(p, '.', (size_t)(name + n - p));
		l = dot != NULL ? (size_t)(dot - p) : (size_t)(name + n - p);
		if (l == 0 || l > SMTP_LABEL_MAX || off + 1 + l + 1 > len)
			return (-1);
		buf[off++] = (unsigned char)l;
		memcpy(buf + off, p, l);
		off += l;
		p += l + (dot != NULL ? 1 : 0);
	}
	buf[off++] = 0;
	return (off > NS_MAXCDNAME ? -1 : (int)off);
}

/* A query with EDNS0 (so answers up to SPFCHECK_EDNS_SIZE come by UDP). */
static int
spfcheck_dns_build(const char *name, uint16_t qtype, uint16_t id,
    unsigned char *buf, size_t len)
{
	int	 n;
	size_t	 off;

	if (len < 12 + 4 + 11)
		return (-1);
	memset(buf, 0, 12);
	buf[0] = id >> 8;
	buf[1] = id & 0xff;
	buf[2] = 0x01;			/* RD */
	buf[5] = 1;			/* QDCOUNT */
	buf[11] = 1;			/* ARCOUNT: OPT */
	if ((n = spfcheck_dns_encode_name(name, buf + 12, len - 12 - 4 - 11))
	    == -1)
		return (-1);
	off = 12 + (size_t)n;
	buf[off++] = qtype >> 8;
	buf[off++] = qtype & 0xff;
	buf[off++] = 0;
	buf[off++] = ns_c_in;
	buf[off++] = 0;			/* OPT: root owner */
	buf[off++] = 0;
	buf[off++] = ns_t_opt;
	buf[off++] = SPFCHECK_EDNS_SIZE >> 8;
	buf[off++] = SPFCHECK_EDNS_SIZE & 0xff;
	memset(buf + off, 0, 6);	/* extended rcode, flags, rdlen */
	off += 6;
	return ((int)off);
}

static uint16_t
spfcheck_get16(const unsigned char *p)
{
	return ((uint16_t)(p[0] << 8 | p[1]));
}

static uint32_t
spfcheck_get32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3]);
}

/* Case-insensitive name equality, ignoring one trailing dot on either. */
static bool
spfcheck_name_eq(const char *a, const char *b)
{
	size_t	la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return (la == lb && strncasecmp(a, b, la) == 0);
}

/* One resource record's header, located in the message. */
struct spfcheck_raw {
	char		 owner[SPFCHECK_NAME_MAX];
	uint16_t	 type;
	uint32_t	 ttl;
	size_t		 rdoff;
	uint16_t	 rdlen;
};

/* Skip or read one RR at *off; -1 when it does not fit the message. */
static int
spfcheck_dns_rr(const unsigned char *msg, size_t len, size_t *off,
    struct spfcheck_raw *raw)
{
	int	n;

	if ((n = dn_expand(msg, msg + len, msg + *off, raw->owner,
	    sizeof(raw->owner))) < 0)
		return (-1);
	*off += (size_t)n;
	if (*off + 10 > len)
		return (-1);
	raw->type = spfcheck_get16(msg + *off);
	raw->ttl = spfcheck_get32(msg + *off + 4);
	if (raw->ttl > INT32_MAX)
		raw->ttl = 0;	/* RFC 2181 section 8 */
	raw->rdlen = spfcheck_get16(msg + *off + 8);
	*off += 10;
	raw->rdoff = *off;
	if (*off + raw->rdlen > len)
		return (-1);
	*off += raw->rdlen;
	return (0);
}

static void
spfcheck_answer_clear(struct spfcheck_answer *ans)
{
	size_t	i;

	for (i = 0; i < ans->nrr; i++)
		free(ans->rr[i].data);
	memset(ans, 0, sizeof(*ans));
}

/* Convert one record of the asked type; -1 when its RDATA is malformed. */
static int
spfcheck_dns_convert(const unsigned char *msg, size_t len,
    const struct spfcheck_raw *raw, struct spfcheck_answer *ans)
{
	const unsigned char	*rd = msg + raw->rdoff;
	char			 name[SPFCHECK_NAME_MAX];
	struct spfcheck_rr	*rr;
	size_t			 i, l;
	int			 n;

	if (ans->nrr >= SPFCHECK_RR_MAX)
		return (0);
	rr = &ans->rr[ans->nrr];
	rr->type = raw->type;
	switch (raw->type) {
	case ns_t_a:
	case ns_t_aaaa:
		if (raw->rdlen != (raw->type == ns_t_a ? 4 : 16))
			return (-1);
		rr->data = xmalloc(raw->rdlen);
		memcpy(rr->data, rd, raw->rdlen);
		rr->len = raw->rdlen;
		break;
	case ns_t_mx:
	case ns_t_ptr:
	case ns_t_cname:
		i = raw->type == ns_t_mx ? 2 : 0;
		if (raw->rdlen < i + 1 ||
		    (n = dn_expand(msg, msg + len, rd + i, name,
		    sizeof(name))) < 0 || (size_t)n + i != raw->rdlen)
			return (-1);
		rr->data = xstrdup(name);
		rr->len = strlen(name);
		break;
	case ns_t_txt:
		rr->data = xmalloc((size_t)raw->rdlen + 1);
		rr->len = 0;
		for (i = 0; i < raw->rdlen; i += l + 1) {
			l = rd[i];
			if (i + 1 + l > raw->rdlen) {
				free(rr->data);
				return (-1);
			}
			memcpy(rr->data + rr->len, rd + i + 1, l);
			rr->len += l;
		}
		rr->data[rr->len] = '\0';
		/* No SPF, DKIM or DMARC record contains a NUL: drop it. */
		if (memchr(rr->data, '\0', rr->len) != NULL) {
			free(rr->data);
			return (0);
		}
		break;
	default:
		return (0);
	}
	ans->nrr++;
	return (0);
}

/*
 * Parse a reply to (id, qname, qtype).  -2: not the reply (ignore it),
 * -1: malformed, 1: truncated, 0: parsed into ans (status from RCODE).
 */
static int
spfcheck_dns_parse(const unsigned char *msg, size_t len, uint16_t id,
    const char *qname, uint16_t qtype, struct spfcheck_answer *ans)
{
	char			 cur[SPFCHECK_NAME_MAX];
	struct spfcheck_raw	 raw, *list;
	size_t			 off, nraw = 0, i;
	unsigned int		 qd, an, ns, rcode, k, hop;
	bool			 found;
	int			 n;

	if (len < 12 || spfcheck_get16(msg) != id || (msg[2] & 0x80) == 0)
		return (-2);
	qd = spfcheck_get16(msg + 4);
	an = spfcheck_get16(msg + 6);
	ns = spfcheck_get16(msg + 8);
	if (qd != 1)
		return (-2);
	off = 12;
	if ((n = dn_expand(msg, msg + len, msg + off, cur, sizeof(cur))) < 0 ||
	    off + (size_t)n + 4 > len)
		return (-2);
	off += (size_t)n;
	if (!spfcheck_name_eq(cur, qname) || spfcheck_get16(msg + off) !=
	    qtype || spfcheck_get16(msg + off + 2) != ns_c_in)
		return (-2);
	off += 4;
	if (msg[2] & 0x02)
		return (1);
	rcode = msg[3] & 0x0f;
	spfcheck_answer_clear(ans);
	ans->ttl = UINT32_MAX;
	if (rcode != ns_r_noerror && rcode != ns_r_nxdomain) {
		ans->status = SPFCHECK_DNS_TEMP;
		snprintf(ans->why, sizeof(ans->why), "%s for %s",
		    rcode == ns_r_servfail ? "SERVFAIL" :
		    rcode == ns_r_refused ? "REFUSED" :
		    rcode == ns_r_formerr ? "FORMERR" : "DNS error", qname);
		return (0);
	}
	/* Heap, not stack: each record holds a full name buffer. */
	list = xcalloc(SPFCHECK_RAW_MAX, sizeof(*list));
	for (k = 0; k < an; k++) {
		if (spfcheck_dns_rr(msg, len, &off, &raw) == -1) {
			free(list);
			return (-1);
		}
		if (nraw < SPFCHECK_RAW_MAX)
			list[nraw++] = raw;
	}
	/* Follow the CNAME chain from the question name. */
	strlcpy(cur, qname, sizeof(cur));
	for (hop = 0; hop <= SPFCHECK_CNAME_MAX; hop++) {
		found = false;
		for (i = 0; i < nraw; i++) {
			if (list[i].type != qtype ||
			    !spfcheck_name_eq(list[i].owner, cur))
				continue;
			if (spfcheck_dns_convert(msg, len, &list[i],
			    ans) == -1) {
				free(list);
				spfcheck_answer_clear(ans);
				return (-1);
			}
			if (list[i].ttl < ans->ttl)
				ans->ttl = list[i].ttl;
			found = true;
		}
		if (found || qtype == ns_t_cname)
			break;
		for (i = 0; i < nraw; i++) {
			if (list[i].type == ns_t_cname &&
			    spfcheck_name_eq(list[i].owner, cur))
				break;
		}
		if (i == nraw)
			break;
		if (dn_expand(msg, msg + len, msg + list[i].rdoff, cur,
		    sizeof(cur)) < 0) {
			free(list);
			spfcheck_answer_clear(ans);
			return (-1);
		}
		if (list[i].ttl < ans->ttl)
			ans->ttl = list[i].ttl;
	}
	free(list);
	if (ans->nrr > 0) {
		ans->status = SPFCHECK_DNS_OK;
		return (0);
	}
	ans->status = rcode == ns_r_nxdomain ? SPFCHECK_DNS_NXDOMAIN :
	    SPFCHECK_DNS_NODATA;
	/* Negative TTL: min(SOA TTL, SOA MINIMUM) from the authority. */
	ans->ttl = SPFCHECK_NEG_TTL;
	for (k = 0; k < ns; k++) {
		if (spfcheck_dns_rr(msg, len, &off, &raw) == -1)
			break;
		if (raw.type == ns_t_soa && raw.rdlen >= 20) {
			uint32_t min = spfcheck_get32(msg + raw.rdoff +
			    raw.rdlen - 4);

			ans->ttl = raw.ttl < min ? raw.ttl : min;
			break;
		}
	}
	return (0);
}

/* Wait for events on fd until the monotonic time until; false on timeout. */
static bool
spfcheck_wait(int fd, short events, double until)
{
	struct pollfd	pfd;
	double		left;
	int		rc;

	for (;;) {
		left = until - util_monotonic();
		if (left <= 0)
			return (false);
		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		rc = poll(&pfd, 1, (int)(left * 1000) + 1);
		if (rc > 0)
			return (true);
		if (rc == 0)
			return (false);
		if (errno != EINTR)
			return (false);
	}
}

/* Read exactly len bytes from a stream socket before until. */
static int
spfcheck_read_full(int fd, unsigned char *buf, size_t len, double until)
{
	size_t	got = 0;
	ssize_t	n;

	while (got < len) {
		if (!spfcheck_wait(fd, POLLIN, until))
			return (-1);
		n = read(fd, buf + got, len - got);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return (-1);
		got += (size_t)n;
	}
	return (0);
}

/* The query over TCP, after a truncated UDP answer: 0, or -1 (why set). */
static int
spfcheck_dns_tcp(const struct spfcheck_server *srv, const unsigned char *q,
    size_t qlen, uint16_t id, const char *qname, uint16_t qtype,
    double until, struct spfcheck_answer *ans)
{
	unsigned char	 hdr[2], *msg = NULL, *out;
	size_t		 mlen;
	int		 fd, soerr = 0, rc = -1;
	socklen_t	 sl = sizeof(soerr);

	if ((fd = socket(srv->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1)
		goto fail;
	if (connect(fd, (const struct sockaddr *)&srv->ss, srv->len) == -1) {
		if (errno != EINPROGRESS || !spfcheck_wait(fd, POLLOUT,
		    until) || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr,
		    &sl) == -1 || soerr != 0)
			goto fail;
	}
	out = xmalloc(qlen + 2);
	out[0] = qlen >> 8;
	out[1] = qlen & 0xff;
	memcpy(out + 2, q, qlen);
	if (!spfcheck_wait(fd, POLLOUT, until) ||
	    write(fd, out, qlen + 2) != (ssize_t)(qlen + 2)) {
		free(out);
		goto fail;
	}
	free(out);
	if (spfcheck_read_full(fd, hdr, 2, until) == -1)
		goto fail;
	mlen = spfcheck_get16(hdr);
	msg = xmalloc(mlen > 0 ? mlen : 1);
	if (spfcheck_read_full(fd, msg, mlen, until) == -1)
		goto fail;
	if (spfcheck_dns_parse(msg, mlen, id, qname, qtype, ans) == 0)
		rc = 0;
	else
		snprintf(ans->why, sizeof(ans->why),
		    "malformed TCP answer for %s", qname);
fail:
	if (rc == -1 && ans->why[0] == '\0')
		snprintf(ans->why, sizeof(ans->why), "TCP query for %s "
		    "failed", qname);
	free(msg);
	if (fd != -1)
		close(fd);
	return (rc);
}

/*
 * One query to one server: 0 with a final answer in ans (which may be a
 * SERVFAIL-style SPFCHECK_DNS_TEMP), -1 when the server did not answer
 * usefully (why set).
 */
static int
spfcheck_dns_ask(const struct spfcheck_server *srv, const char *qname,
    uint16_t qtype, double until, struct spfcheck_answer *ans)
{
	unsigned char	 q[NS_MAXCDNAME + 64], buf[SPFCHECK_UDP_MAX];
	uint16_t	 id;
	ssize_t		 n;
	int		 fd, qlen, rc = -1, pr;

	util_random(&id, sizeof(id));
	if ((qlen = spfcheck_dns_build(qname, qtype, id, q, sizeof(q))) == -1)
		return (-1);
	if ((fd = socket(srv->ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1 || connect(fd,
	    (const struct sockaddr *)&srv->ss, srv->len) == -1 ||
	    send(fd, q, (size_t)qlen, 0) != qlen) {
		snprintf(ans->why, sizeof(ans->why), "query for %s: %s",
		    qname, strerror(errno));
		goto out;
	}
	for (;;) {
		if (!spfcheck_wait(fd, POLLIN, until)) {
			snprintf(ans->why, sizeof(ans->why),
			    "timeout querying %s", qname);
			break;
		}
		n = recv(fd, buf, sizeof(buf), MSG_TRUNC);
		if (n == -1) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			snprintf(ans->why, sizeof(ans->why),
			    "query for %s: %s", qname, strerror(errno));
			break;
		}
		if ((size_t)n > sizeof(buf))
			continue;	/* not a reply we asked for */
		pr = spfcheck_dns_parse(buf, (size_t)n, id, qname, qtype, ans);
		if (pr == -2)
			continue;	/* stray or spoofed: keep waiting */
		if (pr == 1) {
			rc = spfcheck_dns_tcp(srv, q, (size_t)qlen, id, qname,
			    qtype, until, ans);
			break;
		}
		if (pr == -1) {
			snprintf(ans->why, sizeof(ans->why),
			    "malformed answer for %s", qname);
			break;
		}
		rc = 0;
		break;
	}
out:
	if (fd != -1)
		close(fd);
	return (rc);
}

/*
 * Resolve (qname, qtype) through the servers in order, SPFCHECK_TRIES
 * rounds, each try bounded by query_ms and everything by deadline.  A
 * server's SERVFAIL or REFUSED moves on to the next server.
 */
static void
spfcheck_dns_query(struct spfcheck *sc, double deadline, const char *qname,
    uint16_t qtype, struct spfcheck_answer *ans)
{
	unsigned char	 probe[NS_MAXCDNAME + 64];
	char		 why[sizeof(ans->why)];
	double		 until, now;
	size_t		 round, i;

	memset(ans, 0, sizeof(*ans));
	snprintf(why, sizeof(why), "no DNS server answered for %s", qname);
	if (spfcheck_dns_build(qname, qtype, 0, probe, sizeof(probe)) == -1) {
		/* No such name can exist (empty or over-long label). */
		ans->status = SPFCHECK_DNS_NXDOMAIN;
		ans->ttl = SPFCHECK_NEG_TTL;
		return;
	}
	for (round = 0; round < SPFCHECK_TRIES; round++) {
		for (i = 0; i < sc->nservers; i++) {
			now = util_monotonic();
			if (now >= deadline) {
				snprintf(ans->why, sizeof(ans->why),
				    "DNS time budget spent at %s", qname);
				ans->status = SPFCHECK_DNS_TEMP;
				return;
			}
			until = now + sc->query_ms / 1000.0;
			if (until > deadline)
				until = deadline;
			ans->why[0] = '\0';
			if (spfcheck_dns_ask(&sc->servers[i], qname, qtype,
			    until, ans) == 0 &&
			    ans->status != SPFCHECK_DNS_TEMP)
				return;
			if (ans->why[0] != '\0')
				strlcpy(why, ans->why, sizeof(why));
			spfcheck_answer_clear(ans);
		}
	}
	ans->status = SPFCHECK_DNS_TEMP;
	strlcpy(ans->why, why, sizeof(ans->why));
}

/*
 * The libspf2 DNS layer.
 */

static SPF_dns_rr_t *
spfcheck_layer_rr(SPF_dns_server_t *layer, const char *domain, ns_type type,
    int ttl, SPF_dns_stat_t herrno)
{
	SPF_dns_rr_t	*rr;

	if ((rr = SPF_dns_rr_new_init(layer, domain, type, ttl, herrno)) ==
	    NULL)
		fatalx("spfcheck: out of memory");
	return (rr);
}

/*
 * Is this query a DNS term of RFC 7208 section 4.6.4 (include, a, mx, ptr,
 * exists, redirect, or a %{p} lookup)?  Not the top-level record, and not
 * the address lookups of the names in the preceding MX or PTR answer,
 * which libspf2 makes in answer order and bounds at 10 itself.
 */
static bool
spfcheck_layer_is_term(struct spfcheck_eval *ev, const char *domain,
    ns_type type)
{
	if (type == ns_t_txt && !ev->top_done) {
		ev->top_done = true;
		return (false);
	}
	if ((type == ns_t_a || type == ns_t_aaaa) &&
	    ev->nexthost < ev->nhosts &&
	    spfcheck_name_eq(domain, ev->hosts[ev->nexthost])) {
		ev->nexthost++;
		return (false);
	}
	ev->nhosts = ev->nexthost = 0;
	return (true);
}

static SPF_dns_rr_t *
spfcheck_layer_lookup(SPF_dns_server_t *layer, const char *domain,
    ns_type type, int should_cache)
{
	struct spfcheck_eval	*ev = layer->hook;
	struct spfcheck_answer	*ans;
	SPF_dns_rr_t		*rr;
	bool			 term;
	size_t			 i, len;
	int			 ttl;

	(void)should_cache;
	/* RFC 7208 section 3.1: type SPF is gone; only TXT is consulted. */
	if (type == ns_t_spf)
		return (spfcheck_layer_rr(layer, domain, type, 0, NO_DATA));
	if (ev->over_terms || ev->over_void || ev->dns_failed)
		return (spfcheck_layer_rr(layer, domain, type, 0, TRY_AGAIN));
	term = spfcheck_layer_is_term(ev, domain, type);
	if (term && ++ev->nterms > SPFCHECK_DNS_TERMS_MAX) {
		/* TRY_AGAIN unwinds libspf2 at once; the caller turns the
		 * TEMPERROR it produces into PERMERROR. */
		ev->over_terms = true;
		return (spfcheck_layer_rr(layer, domain, type, 0, TRY_AGAIN));
	}
	ans = xmalloc(sizeof(*ans));
	spfcheck_dns_query(ev->sc, ev->deadline, domain, (uint16_t)type, ans);
	if (ans->status != SPFCHECK_DNS_TEMP && ans->ttl < ev->ttl)
		ev->ttl = ans->ttl;
	ttl = ans->ttl > INT32_MAX ? INT32_MAX : (int)ans->ttl;
	switch (ans->status) {
	case SPFCHECK_DNS_TEMP:
		ev->dns_failed = true;
		util_escape(ev->why, sizeof(ev->why), ans->why,
		    strlen(ans->why));
		rr = spfcheck_layer_rr(layer, domain, type, 0, TRY_AGAIN);
		break;
	case SPFCHECK_DNS_NXDOMAIN:
	case SPFCHECK_DNS_NODATA:
		if (term && ++ev->nvoid > SPFCHECK_VOID_MAX) {
			ev->over_void = true;
			rr = spfcheck_layer_rr(layer, domain, type, 0,
			    TRY_AGAIN);
			break;
		}
		rr = spfcheck_layer_rr(layer, domain, type, ttl,
		    ans->status == SPFCHECK_DNS_NXDOMAIN ? HOST_NOT_FOUND :
		    NO_DATA);
		break;
	default:
		rr = spfcheck_layer_rr(layer, domain, type, ttl,
		    NETDB_SUCCESS);
		if (type == ns_t_mx || type == ns_t_ptr)
			ev->nhosts = ev->nexthost = 0;
		for (i = 0; i < ans->nrr; i++) {
			len = ans->rr[i].len;
			if (type == ns_t_a || type == ns_t_aaaa)
				len = type == ns_t_a ? 4 : 16;
			else
				len++;
			if (SPF_dns_rr_buf_realloc(rr, (int)i, len) !=
			    SPF_E_SUCCESS)
				fatalx("spfcheck: out of memory");
			if (type == ns_t_a)
				memcpy(&rr->rr[i]->a, ans->rr[i].data, 4);
			else if (type == ns_t_aaaa)
				memcpy(&rr->rr[i]->aaaa, ans->rr[i].data, 16);
			else
				memcpy(rr->rr[i]->txt, ans->rr[i].data, len);
			if ((type == ns_t_mx || type == ns_t_ptr) &&
			    ev->nhosts < SPFCHECK_HOSTS_MAX)
				strlcpy(ev->hosts[ev->nhosts++],
				    ans->rr[i].data, SPFCHECK_NAME_MAX);
		}
		rr->num_rr = (int)ans->nrr;
		break;
	}
	spfcheck_answer_clear(ans);
	free(ans);
	return (rr);
}

/* exp= is only decoration for a log line: never spend a lookup on it. */
static SPF_errcode_t
spfcheck_layer_exp(SPF_server_t *server, const char *domain, char **bufp,
    size_t *buflenp)
{
	static const char	 text[] = "not permitted by SPF";
	char			*p;

	(void)server;
	(void)domain;
	if (*buflenp < sizeof(text)) {
		if ((p = realloc(*bufp, sizeof(text))) == NULL)
			return (SPF_E_NO_MEMORY);
		*bufp = p;
		*buflenp = sizeof(text);
	}
	memcpy(*bufp, text, sizeof(text));
	return (SPF_E_SUCCESS);
}

/*
 * The cache.
 */

static uint64_t
spfcheck_cache_key(int family, const unsigned char *addr,
    const char *domain)
{
	uint64_t	h = 14695981039346656037ULL;
	size_t		i, alen = family == AF_INET ? 4 : 16;

	h = (h ^ (uint64_t)family) * 1099511628211ULL;
	for (i = 0; i < alen; i++)
		h = (h ^ addr[i]) * 1099511628211ULL;
	for (i = 0; domain[i] != '\0'; i++)
		h = (h ^ (unsigned char)domain[i]) * 1099511628211ULL;
	return (h == 0 ? 1 : h);
}

/*
 * The client's family and address (an IPv4-mapped IPv6 address becomes
 * IPv4) and the lower-case domain: the cache key.  -1 when unusable.
 */
static int
spfcheck_key(const struct sockaddr *sa, const char *domain, int *family,
    unsigned char addr[16], char dom[SMTP_DOMAIN_MAX + 1])
{
	const struct sockaddr_in6	*sin6;
	size_t				 dl;

	memset(addr, 0, 16);
	if (sa == NULL || domain == NULL)
		return (-1);
	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		sin6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			*family = AF_INET;
			memcpy(addr, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			*family = AF_INET6;
			memcpy(addr, &sin6->sin6_addr, 16);
		}
	} else
		return (-1);
	dl = strlen(domain);
	if (dl > 0 && domain[dl - 1] == '.')
		dl--;
	if (dl == 0 || dl > SMTP_DOMAIN_MAX)
		return (-1);
	memcpy(dom, domain, dl);
	dom[dl] = '\0';
	util_lowercase(dom);
	return (0);
}

/* With sc->lock held: the fresh entry for the key, or NULL. */
static struct spfcheck_entry *
spfcheck_cache_find(struct spfcheck *sc, int family,
    const unsigned char *addr, const char *dom, double now)
{
	struct spfcheck_entry	*e;

	e = util_map_get(&sc->cache, spfcheck_cache_key(family, addr, dom));
	if (e == NULL || e->family != family || memcmp(e->addr, addr, 16) != 0
	    || strcmp(e->domain, dom) != 0 || e->expires <= now)
		return (NULL);
	return (e);
}

/* With sc->lock held: make room by expiry, else by dropping any entry. */
static void
spfcheck_cache_trim(struct spfcheck *sc, double now)
{
	size_t		 it = 0;
	uint64_t	 key, victim = 0;
	void		*val;

	if (sc->cache.len < SPFCHECK_CACHE_MAX)
		return;
	while (util_map_next(&sc->cache, &it, &key, &val)) {
		if (((struct spfcheck_entry *)val)->expires <= now) {
			free(util_map_del(&sc->cache, key));
			/* A delete leaves a tombstone: iterating is safe. */
		} else if (victim == 0)
			victim = key;
	}
	if (sc->cache.len >= SPFCHECK_CACHE_MAX && victim != 0)
		free(util_map_del(&sc->cache, victim));
}

static void
spfcheck_cache_put(struct spfcheck *sc, int family,
    const unsigned char *addr, const char *dom, enum spfcheck_result res,
    uint32_t ttl)
{
	struct spfcheck_entry	*e;
	uint64_t		 key;
	double			 now = util_monotonic();

	e = xcalloc(1, sizeof(*e));
	e->family = family;
	memcpy(e->addr, addr, 16);
	strlcpy(e->domain, dom, sizeof(e->domain));
	e->res = res;
	e->expires = now + ttl;
	key = spfcheck_cache_key(family, addr, dom);
	pthread_mutex_lock(&sc->lock);
	free(util_map_del(&sc->cache, key));
	spfcheck_cache_trim(sc, now);
	util_map_put(&sc->cache, key, e);
	pthread_mutex_unlock(&sc->lock);
}

bool
spfcheck_cached(struct spfcheck *sc, const struct sockaddr *client,
    const char *domain, enum spfcheck_result *res)
{
	struct spfcheck_entry	*e;
	unsigned char		 addr[16];
	char			 dom[SMTP_DOMAIN_MAX + 1];
	int			 family;
	bool			 hit = false;

	if (spfcheck_key(client, domain, &family, addr, dom) == -1)
		return (false);
	pthread_mutex_lock(&sc->lock);
	if ((e = spfcheck_cache_find(sc, family, addr, dom,
	    util_monotonic())) != NULL) {
		*res = e->res;
		hit = true;
	}
	pthread_mutex_unlock(&sc->lock);
	return (hit);
}

size_t
spfcheck_cache_size(struct spfcheck *sc)
{
	size_t	n;

	pthread_mutex_lock(&sc->lock);
	n = sc->cache.len;
	pthread_mutex_unlock(&sc->lock);
	return (n);
}

/*
 * Evaluation.
 */

static enum spfcheck_result
spfcheck_from_spf(SPF_result_t r)
{
	switch (r) {
	case SPF_RESULT_PASS:
		return (SPFCHECK_PASS);
	case SPF_RESULT_FAIL:
		return (SPFCHECK_FAIL);
	case SPF_RESULT_SOFTFAIL:
		return (SPFCHECK_SOFTFAIL);
	case SPF_RESULT_NEUTRAL:
		return (SPFCHECK_NEUTRAL);
	case SPF_RESULT_NONE:
		return (SPFCHECK_NONE);
	case SPF_RESULT_TEMPERROR:
		return (SPFCHECK_TEMPERROR);
	default:
		return (SPFCHECK_PERMERROR);
	}
}

static bool
spfcheck_is_loopback(int family, const unsigned char *addr)
{
	if (family == AF_INET)
		return (addr[0] == 127);
	return (IN6_IS_ADDR_LOOPBACK((const struct in6_addr *)addr));
}

/* Run libspf2 for one key; the result, with ev filled and explain set. */
static enum spfcheck_result
spfcheck_evaluate(struct spfcheck *sc, int family, const unsigned char *addr,
    const char *dom, struct spfcheck_eval *ev, char *explain,
    size_t explainlen)
{
	SPF_dns_server_t	 layer;
	SPF_server_t		*server;
	SPF_request_t		*req;
	SPF_response_t		*resp = NULL;
	enum spfcheck_result	 res;
	const char		*comment;
	char			*from;
	char			 tmp[512];
	struct in_addr		 in4;
	struct in6_addr		 in6;

	memset(&layer, 0, sizeof(layer));
	layer.lookup = spfcheck_layer_lookup;
	layer.get_exp = spfcheck_layer_exp;
	layer.name = "postern";
	layer.hook = ev;	/* destroy NULL: libspf2 leaves it to us */
	if ((server = SPF_server_new_dns(&layer, 0)) == NULL ||
	    (req = SPF_request_new(server)) == NULL)
		fatalx("spfcheck: out of memory");
	if (family == AF_INET) {
		memcpy(&in4, addr, 4);
		SPF_request_set_ipv4(req, in4);
	} else {
		memcpy(&in6, addr, 16);
		SPF_request_set_ipv6(req, in6);
	}
	xasprintf(&from, "postmaster@%s", dom);
	if (SPF_request_set_env_from(req, from) != 0 ||
	    SPF_request_set_helo_dom(req, dom) != SPF_E_SUCCESS) {
		res = SPFCHECK_NONE;
		snprintf(explain, explainlen, "none: unusable domain");
		goto out;
	}
	SPF_request_query_mailfrom(req, &resp);
	res = resp != NULL ? spfcheck_from_spf(SPF_response_result(resp)) :
	    SPFCHECK_TEMPERROR;
	if (ev->over_terms) {
		res = SPFCHECK_PERMERROR;
		snprintf(tmp, sizeof(tmp), "more than %d DNS lookups",
		    SPFCHECK_DNS_TERMS_MAX);
	} else if (ev->over_void) {
		res = SPFCHECK_PERMERROR;
		snprintf(tmp, sizeof(tmp), "more than %d void DNS lookups",
		    SPFCHECK_VOID_MAX);
	} else if (ev->dns_failed) {
		/*
		 * Whatever libspf2 made of it (a failed top-level lookup
		 * comes out as PERMERROR), the answer is incomplete.
		 */
		res = SPFCHECK_TEMPERROR;
		strlcpy(tmp, ev->why, sizeof(tmp));
	} else if (res == SPFCHECK_TEMPERROR || res == SPFCHECK_PERMERROR)
		strlcpy(tmp, SPF_strerror(SPF_response_errcode(resp)),
		    sizeof(tmp));
	else if ((comment = SPF_response_get_header_comment(resp)) != NULL)
		util_escape(tmp, sizeof(tmp), comment, strlen(comment));
	else
		tmp[0] = '\0';
	snprintf(explain, explainlen, "%s%s%s", spfcheck_result_name(res),
	    tmp[0] != '\0' ? ": " : "", tmp);
out:
	free(from);
	if (resp != NULL)
		SPF_response_free(resp);
	SPF_request_free(req);
	SPF_server_free(server);
	return (res);
}

enum spfcheck_result
spfcheck_run(struct spfcheck *sc, const struct sockaddr *client,
    const char *domain, char *explain, size_t explainlen)
{
	struct spfcheck_eval	*ev;
	enum spfcheck_result	 res;
	unsigned char		 addr[16];
	char			 dom[SMTP_DOMAIN_MAX + 1], dummy[8];
	uint32_t		 ttl;
	int			 family;

	if (explain == NULL || explainlen == 0) {
		explain = dummy;
		explainlen = sizeof(dummy);
	}
	if (spfcheck_key(client, domain, &family, addr, dom) == -1 ||
	    !conf_is_domain(dom)) {
		snprintf(explain, explainlen, "none: not an IP client or not "
		    "a domain");
		return (SPFCHECK_NONE);
	}
	if (spfcheck_cached(sc, client, dom, &res)) {
		snprintf(explain, explainlen, "%s (cached)",
		    spfcheck_result_name(res));
		return (res);
	}
	/*
	 * libspf2 passes loopback clients without looking at the record;
	 * behind a local proxy that would make everyone a relay.
	 */
	if (spfcheck_is_loopback(family, addr)) {
		snprintf(explain, explainlen, "neutral: loopback client not "
		    "evaluated");
		return (SPFCHECK_NEUTRAL);
	}
	ev = xcalloc(1, sizeof(*ev));
	ev->sc = sc;
	ev->deadline = util_monotonic() + sc->total_ms / 1000.0;
	ev->ttl = SPFCHECK_TTL_MAX;
	res = spfcheck_evaluate(sc, family, addr, dom, ev, explain,
	    explainlen);
	ttl = ev->ttl;
	if (ttl < SPFCHECK_TTL_MIN)
		ttl = SPFCHECK_TTL_MIN;
	if (res == SPFCHECK_TEMPERROR)
		ttl = SPFCHECK_TEMPERROR_TTL;
	spfcheck_cache_put(sc, family, addr, dom, res, ttl);
	free(ev);
	return (res);
}

int
spfcheck_txt(struct spfcheck *sc, const char *name, char ***txt,
    size_t *ntxt, char *err, size_t errlen)
{
	struct spfcheck_answer	*ans;
	size_t			 i;
	int			 rc = 0;

	*txt = NULL;
	*ntxt = 0;
	ans = xmalloc(sizeof(*ans));
	spfcheck_dns_query(sc, util_monotonic() + sc->total_ms / 1000.0,
	    name, ns_t_txt, ans);
	if (ans->status == SPFCHECK_DNS_TEMP) {
		util_escape(err, errlen, ans->why, strlen(ans->why));
		rc = -1;
	} else if (ans->status == SPFCHECK_DNS_OK) {
		*txt = xcalloc(ans->nrr, sizeof(**txt));
		for (i = 0; i < ans->nrr; i++) {
			(*txt)[i] = ans->rr[i].data;
			ans->rr[i].data = NULL;
		}
		*ntxt = ans->nrr;
	}
	spfcheck_answer_clear(ans);
	free(ans);
	return (rc);
}

void
spfcheck_txt_free(char **txt, size_t ntxt)
{
	size_t	i;

	for (i = 0; i < ntxt; i++)
		free(txt[i]);
	free(txt);
}
