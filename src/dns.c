/*
 * dns.c: MX and A/AAAA lookups for routing (SPEC section 4, SECURITY-CASES
 * OUT-27..OUT-34) with c-ares 1.18.1 driven by the libevent loop: c-ares
 * reports each socket it wants watched through ARES_OPT_SOCK_STATE_CB, we
 * keep one persistent event per socket and call ares_process_fd() on
 * readiness, and one timer armed from ares_timeout() drives retries.
 *
 * Every answer goes through dns_scan() before c-ares's parsers see it: it
 * bounds-checks each record (an MX whose RDATA is not exactly preference
 * plus name is malformed, OUT-34), follows CNAMEs with a chase limit
 * (OUT-31) and finds the TTLs that c-ares's parsers do not report.
 *
 * Ownership: struct dns owns the channel, the socket events, the timer, the
 * cache and every outstanding request.  A request owns its event and its
 * per-type answers (deep copies, so flushing the cache never pulls data from
 * under it).  Invariant: user callbacks run only from a request's own event,
 * after the request has left dns->reqs, so a callback may call dns_free().
 */
#include "compat.h"

#include <sys/queue.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ares.h>
#include <event2/event.h>

#include "conf.h"
#include "dns.h"
#include "log.h"
#include "util.h"

/* RR types and classes, spelled out to avoid <arpa/nameser.h> variants. */
#define DNS_T_A		1
#define DNS_T_CNAME	5
#define DNS_T_SOA	6
#define DNS_T_MX	15
#define DNS_T_AAAA	28
#define DNS_C_IN	1

#define DNS_HDR_LEN	12
#define DNS_RR_FIXED	10	/* type, class, ttl, rdlength */

#define DNS_TTL_MAX		86400	/* positive answers: at most a day */
#define DNS_NEG_TTL_MAX		300	/* NXDOMAIN/NODATA with an SOA */
#define DNS_NEG_TTL_DEFAULT	60	/* NXDOMAIN/NODATA without an SOA */
#define DNS_MX_KEEP		64	/* MX records kept per cached answer */
#define DNS_CNAME_KEEP		32	/* CNAME records examined per answer */

#define DNS_TIMEOUT_MS_DEFAULT	5000
#define DNS_TRIES_DEFAULT	3

/* One MX record as cached: host is owned. */
struct dns_mxrec {
	char		*host;
	unsigned int	 pref;
};

/* One answer for one (name, type): what the cache and a request hold. */
struct dns_ans {
	enum dns_status	 status;
	uint32_t	 ttl;		/* seconds to cache; 0 = do not */
	char		 error[128];
	size_t		 n;
	struct dns_mxrec *mx;		/* owned; MX: n records by pref */
	unsigned char	(*ip)[16];	/* owned; A uses 4 bytes of each */
};

struct dns_cache_ent {
	TAILQ_ENTRY(dns_cache_ent) age;	/* insertion order, oldest first */
	struct dns_cache_ent	*next;		/* hash chain */
	uint64_t		 hash;
	int			 qtype;
	char			 name[SMTP_DOMAIN_MAX + 1];
	double			 expires;	/* util_monotonic() */
	struct dns_ans		 ans;		/* owned */
};
TAILQ_HEAD(dns_cache_list, dns_cache_ent);

struct dns_sock {
	LIST_ENTRY(dns_sock)	 entry;
	struct dns		*dns;		/* borrowed */
	ares_socket_t		 fd;
	struct event		*ev;		/* owned */
};

enum dns_kind {
	DNS_KIND_MX,
	DNS_KIND_ADDR
};

struct dns_req;

/* One c-ares query of a request; the argument c-ares hands back. */
struct dns_part {
	struct dns_req		*req;		/* borrowed: our request */
	int			 qtype;
	struct dns_ans		 ans;		/* owned */
};

struct dns_req {
	TAILQ_ENTRY(dns_req)	 entry;
	struct dns		*dns;		/* borrowed */
	struct event		*ev;		/* owned; fires the callback */
	enum dns_kind		 kind;
	char			 name[SMTP_DOMAIN_MAX + 1];
	dns_mx_cb		 mxcb;
	dns_addr_cb		 addrcb;
	uint64_t		 cookie;
	void			*arg;		/* borrowed, the caller's */
	int			 pending;	/* parts not yet answered */
	size_t			 nparts;
	struct dns_part		 part[2];	/* MX; or AAAA then A */
	union {
		struct dns_mx_result	mx;
		struct dns_addr_result	addr;
	} res;
};
TAILQ_HEAD(dns_reqs, dns_req);

struct dns {
	struct event_base	*base;		/* borrowed */
	ares_channel		 channel;	/* owned */
	struct event		*timer;		/* owned */
	LIST_HEAD(, dns_sock)	 socks;		/* owned */
	struct dns_reqs		 reqs;		/* owned, outstanding */
	struct dns_cache_ent	**buckets;	/* owned */
	size_t			 nbuckets;	/* power of two */
	struct dns_cache_list	 cache_age;
	size_t			 cache_len;
	size_t			 cache_max;
	struct dns_stats	 stats;
	bool			 destroying;	/* inside dns_free */
};

/* What dns_scan() learns from a raw answer. */
struct dns_scan_info {
	int		 rcode;
	uint32_t	 ttl;		/* min TTL over the answer section */
	bool		 have_ttl;
	int64_t		 negttl;	/* RFC 2308 from an SOA, or -1 */
	int		 hops;		/* CNAMEs followed from the qname */
	bool		 loop;		/* chain longer than the chase limit */
	char		 target[SMTP_DOMAIN_MAX + 1];	/* end of the chain */
};

static void	 dns_sock_state(void *, ares_socket_t, int, int);
static void	 dns_sock_cb(evutil_socket_t, short, void *);
static void	 dns_timer_cb(evutil_socket_t, short, void *);
static void	 dns_timer_rearm(struct dns *);
static void	 dns_answer_cb(void *, int, int, unsigned char *, int);
static void	 dns_req_fire(evutil_socket_t, short, void *);
static void	 dns_req_free(struct dns_req *);
static void	 dns_ans_clear(struct dns_ans *);
static void	 dns_ans_copy(struct dns_ans *, const struct dns_ans *);
static void	 dns_cache_del(struct dns *, struct dns_cache_ent *);

static const char *const dns_status_names[] = {
	[DNS_OK] = "OK",
	[DNS_NODATA] = "NODATA",
	[DNS_NXDOMAIN] = "NXDOMAIN",
	[DNS_NULLMX] = "NULLMX",
	[DNS_TEMPFAIL] = "TEMPFAIL",
};
_Static_assert(nitems(dns_status_names) == DNS_TEMPFAIL + 1,
    "dns_status_names out of step with enum dns_status");

/* Printable name of a status, for logs. */
const char *
dns_status_name(enum dns_status s)
{
	if ((size_t)s >= nitems(dns_status_names))
		return ("?");
	return (dns_status_names[s]);
}

static const char *
dns_type_name(int qtype)
{
	switch (qtype) {
	case DNS_T_A:
		return ("A");
	case DNS_T_AAAA:
		return ("AAAA");
	case DNS_T_MX:
		return ("MX");
	default:
		return ("?");
	}
}

/*
 * Copy a domain name into out (SMTP_DOMAIN_MAX + 1 bytes) in lower case
 * without its trailing dot.  -1 unless it is a sequence of 1..63-byte
 * labels of letters, digits, '-' and '_' (c-ares escapes anything else
 * with a backslash, so this also rejects such names from answers).
 */
static int
dns_name_norm(const char *in, char *out)
{
	size_t	 len, i, label = 0;

	if (in == NULL)
		return (-1);
	len = strlen(in);
	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > SMTP_DOMAIN_MAX - 2)
		return (-1);
	for (i = 0; i < len; i++) {
		unsigned char	c = in[i];

		if (c == '.') {
			if (label == 0)
				return (-1);
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > SMTP_LABEL_MAX)
				return (-1);
		} else
			return (-1);
		out[i] = tolower(c);
	}
	out[len] = '\0';
	return (label == 0 ? -1 : 0);
}

/*
 * A "numeric domain name" (Postfix): an IP literal, or a name whose last
 * label is all digits, which no top-level domain is.  An MX exchange like
 * that must never be connected to as a literal (OUT-32).
 */
static bool
dns_name_is_numeric(const char *name)
{
	const char	*last;
	unsigned char	 buf[16];

	if (inet_pton(AF_INET, name, buf) == 1 ||
	    inet_pton(AF_INET6, name, buf) == 1)
		return (true);
	last = strrchr(name, '.');
	last = last == NULL ? name : last + 1;
	if (*last == '\0')
		return (false);
	for (; *last != '\0'; last++)
		if (!isdigit((unsigned char)*last))
			return (false);
	return (true);
}

/* Big-endian reads from a buffer already bounds-checked by the caller. */
static unsigned int
dns_get16(const unsigned char *p)
{
	return ((unsigned int)p[0] << 8 | p[1]);
}

static uint32_t
dns_get32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3]);
}

/*
 * Expand the name at p into out (lower case, SMTP_DOMAIN_MAX + 1 bytes)
 * and set *enclen to the bytes it takes at p.  c-ares bounds the expansion
 * by the message and stops compression loops.  A name too long for out is
 * an error: no legal name is.
 */
static int
dns_expand(const unsigned char *p, const unsigned char *abuf, int alen,
    char *out, long *enclen)
{
	char	*s;
	size_t	 i, len;

	if (ares_expand_name(p, abuf, alen, &s, enclen) != ARES_SUCCESS)
		return (-1);
	len = strlen(s);
	if (len > SMTP_DOMAIN_MAX) {
		ares_free_string(s);
		return (-1);
	}
	for (i = 0; i <= len; i++)
		out[i] = tolower((unsigned char)s[i]);
	ares_free_string(s);
	return (0);
}

/*
 * Walk the header, question, answer and authority sections of abuf.
 * Every record must lie inside the message and the RDATA of A, AAAA, MX,
 * CNAME and SOA must have exactly the shape of its type.  Fills info with
 * the rcode, the minimum answer TTL, the negative TTL from an SOA and the
 * CNAME chain from qname.  -1 when the message is malformed.
 */
static int
dns_scan(const unsigned char *abuf, int alen, const char *qname,
    struct dns_scan_info *info)
{
	const unsigned char	*p, *end, *rd;
	char			 owner[SMTP_DOMAIN_MAX + 1];
	char			 target[SMTP_DOMAIN_MAX + 1];
	char			(*cn)[2][SMTP_DOMAIN_MAX + 1] = NULL;
	size_t			 ncn = 0, i;
	unsigned int		 qd, an, ns, n, type, cls, rdlen;
	uint32_t		 ttl;
	long			 enc;
	int			 rc = -1;

	memset(info, 0, sizeof(*info));
	info->negttl = -1;
	if (abuf == NULL || alen < DNS_HDR_LEN)
		return (-1);
	p = abuf;
	end = abuf + alen;
	info->rcode = p[3] & 0x0f;
	qd = dns_get16(p + 4);
	an = dns_get16(p + 6);
	ns = dns_get16(p + 8);
	if (qd != 1)
		return (-1);
	p += DNS_HDR_LEN;
	if (dns_expand(p, abuf, alen, owner, &enc) == -1 || enc > end - p ||
	    end - p - enc < 4)
		return (-1);
	p += enc + 4;

	cn = xcalloc(DNS_CNAME_KEEP, sizeof(*cn));
	for (n = 0; n < an + ns; n++) {
		if (dns_expand(p, abuf, alen, owner, &enc) == -1 ||
		    enc > end - p)
			goto out;
		p += enc;
		if (end - p < DNS_RR_FIXED)
			goto out;
		type = dns_get16(p);
		cls = dns_get16(p + 2);
		ttl = dns_get32(p + 4);
		rdlen = dns_get16(p + 8);
		p += DNS_RR_FIXED;
		if (rdlen > (size_t)(end - p))
			goto out;
		rd = p;
		p += rdlen;
		/* RFC 2181 8: a TTL with the top bit set means zero. */
		if (ttl > 0x7fffffff)
			ttl = 0;
		if (cls != DNS_C_IN)
			continue;

		switch (type) {
		case DNS_T_A:
			if (rdlen != 4)
				goto out;
			break;
		case DNS_T_AAAA:
			if (rdlen != 16)
				goto out;
			break;
		case DNS_T_MX:
			/* OUT-34: the name must fill the RDATA exactly. */
			if (rdlen < 3 || dns_expand(rd + 2, abuf, alen,
			    target, &enc) == -1 || enc != (long)rdlen - 2)
				goto out;
			break;
		case DNS_T_CNAME:
			if (dns_expand(rd, abuf, alen, target, &enc) == -1 ||
			    enc != (long)rdlen)
				goto out;
			if (n < an && ncn < DNS_CNAME_KEEP) {
				strlcpy(cn[ncn][0], owner, sizeof(cn[ncn][0]));
				strlcpy(cn[ncn][1], target, sizeof(cn[ncn][1]));
				ncn++;
			}
			break;
		case DNS_T_SOA:
			/* mname, rname, then five 32-bit fields. */
			if (dns_expand(rd, abuf, alen, target, &enc) == -1 ||
			    enc > (long)rdlen)
				goto out;
			i = enc;
			if (dns_expand(rd + i, abuf, alen, target, &enc) ==
			    -1 || enc > (long)rdlen - (long)i ||
			    (long)rdlen - (long)i - enc != 20)
				goto out;
			if (n >= an) {
				uint32_t	min = dns_get32(rd + rdlen - 4);

				if (min > 0x7fffffff)
					min = 0;
				info->negttl = ttl < min ? ttl : min;
			}
			break;
		default:
			break;
		}
		if (n < an && (!info->have_ttl || ttl < info->ttl)) {
			info->ttl = ttl;
			info->have_ttl = true;
		}
	}

	/* Follow the chain from the question's name. */
	strlcpy(info->target, qname, sizeof(info->target));
	for (;;) {
		for (i = 0; i < ncn; i++)
			if (strcmp(cn[i][0], info->target) == 0)
				break;
		if (i == ncn)
			break;
		if (++info->hops > DNS_CNAME_CHASE_MAX) {
			info->loop = true;
			break;
		}
		strlcpy(info->target, cn[i][1], sizeof(info->target));
	}
	rc = 0;
out:
	free(cn);
	return (rc);
}

/* Negative caching time: RFC 2308 from the SOA, else a fixed default. */
static uint32_t
dns_neg_ttl(const struct dns_scan_info *info)
{
	if (info->negttl < 0)
		return (DNS_NEG_TTL_DEFAULT);
	if (info->negttl > DNS_NEG_TTL_MAX)
		return (DNS_NEG_TTL_MAX);
	return ((uint32_t)info->negttl);
}

static uint32_t
dns_pos_ttl(const struct dns_scan_info *info)
{
	if (!info->have_ttl || info->ttl < 1)
		return (1);
	if (info->ttl > DNS_TTL_MAX)
		return (DNS_TTL_MAX);
	return (info->ttl);
}

static int
dns_mxrec_cmp(const void *a, const void *b)
{
	const struct dns_mxrec	*x = a, *y = b;

	if (x->pref != y->pref)
		return (x->pref < y->pref ? -1 : 1);
	return (0);
}

/* Turn c-ares's MX list into a sorted answer; see dns_lookup_mx. */
static void
dns_mx_fill(const char *name, struct ares_mx_reply *list,
    const struct dns_scan_info *info, struct dns_ans *ans)
{
	struct ares_mx_reply	*r;
	char			 host[SMTP_DOMAIN_MAX + 1];
	char			 esc[SMTP_DOMAIN_MAX * 4 + 4];
	size_t			 total = 0, dropped = 0;
	bool			 nullmx = false;

	for (r = list; r != NULL; r = r->next)
		total++;
	ans->mx = xcalloc(total > 0 ? total : 1, sizeof(*ans->mx));
	for (r = list; r != NULL; r = r->next) {
		/* c-ares expands the root name to "". */
		if (r->host[0] == '\0' || strcmp(r->host, ".") == 0) {
			nullmx = true;
			continue;
		}
		if (dns_name_norm(r->host, host) == -1 ||
		    dns_name_is_numeric(host)) {
			util_escape(esc, sizeof(esc), r->host,
			    strlen(r->host));
			log_warnx("dns: %s: MX host \"%s\" is %s, ignored",
			    name, esc, dns_name_norm(r->host, host) == -1 ?
			    "not a host name" : "a numeric domain name");
			dropped++;
			continue;
		}
		ans->mx[ans->n].host = xstrdup(host);
		ans->mx[ans->n].pref = r->priority;
		ans->n++;
	}
	if (nullmx) {
		/* OUT-30: a "." anywhere in the set wins. */
		while (ans->n > 0)
			free(ans->mx[--ans->n].host);
		ans->status = DNS_NULLMX;
		ans->ttl = dns_pos_ttl(info);
		snprintf(ans->error, sizeof(ans->error),
		    "%s: null MX (RFC 7505)", name);
		return;
	}
	if (ans->n == 0) {
		ans->status = DNS_OK;
		ans->ttl = dns_pos_ttl(info);
		snprintf(ans->error, sizeof(ans->error),
		    "%s: no usable MX host (%zu ignored)", name, dropped);
		return;
	}
	qsort(ans->mx, ans->n, sizeof(*ans->mx), dns_mxrec_cmp);
	while (ans->n > DNS_MX_KEEP)
		free(ans->mx[--ans->n].host);
	ans->status = DNS_OK;
	ans->ttl = dns_pos_ttl(info);
}

/* Fill ans with the addresses of an A or AAAA answer. */
static int
dns_addr_fill(int qtype, const unsigned char *abuf, int alen,
    struct dns_ans *ans)
{
	struct ares_addrttl	 a4[DNS_ADDR_MAX];
	struct ares_addr6ttl	 a6[DNS_ADDR_MAX];
	int			 n = DNS_ADDR_MAX, i, rc;

	if (qtype == DNS_T_A)
		rc = ares_parse_a_reply(abuf, alen, NULL, a4, &n);
	else
		rc = ares_parse_aaaa_reply(abuf, alen, NULL, a6, &n);
	if (rc != ARES_SUCCESS && rc != ARES_ENODATA)
		return (-1);
	if (rc == ARES_ENODATA || n <= 0)
		return (0);
	ans->ip = xcalloc(n, sizeof(*ans->ip));
	for (i = 0; i < n; i++) {
		if (qtype == DNS_T_A)
			memcpy(ans->ip[i], &a4[i].ipaddr, 4);
		else
			memcpy(ans->ip[i], &a6[i].ip6addr, 16);
	}
	ans->n = n;
	return (0);
}

/*
 * Classify one c-ares completion into ans.  Everything that is neither a
 * clean answer, a clean NODATA nor a clean NXDOMAIN is TEMPFAIL (OUT-28,
 * OUT-34): a malformed answer must defer, never fall back or bounce.
 */
static void
dns_classify(const char *name, int qtype, int status,
    const unsigned char *abuf, int alen, struct dns_ans *ans)
{
	struct dns_scan_info	 info;
	struct ares_mx_reply	*mx = NULL;
	const char		*tn = dns_type_name(qtype);

	memset(ans, 0, sizeof(*ans));
	ans->status = DNS_TEMPFAIL;
	switch (status) {
	case ARES_SUCCESS:
	case ARES_ENODATA:
	case ARES_ENOTFOUND:
		break;
	case ARES_ECONNREFUSED:
		/*
		 * c-ares drops SERVFAIL, REFUSED and NOTIMP answers to try
		 * the next server, and reports this when none is left.
		 */
		snprintf(ans->error, sizeof(ans->error), "%s %s: no usable "
		    "answer (SERVFAIL, REFUSED or unreachable)", tn, name);
		return;
	default:
		snprintf(ans->error, sizeof(ans->error), "%s %s: %s", tn,
		    name, ares_strerror(status));
		return;
	}
	if (dns_scan(abuf, alen, name, &info) == -1) {
		snprintf(ans->error, sizeof(ans->error),
		    "%s %s: malformed answer", tn, name);
		return;
	}
	if (info.loop) {
		log_warnx("dns: %s %s: CNAME chain longer than %d, deferred",
		    tn, name, DNS_CNAME_CHASE_MAX);
		snprintf(ans->error, sizeof(ans->error),
		    "%s %s: CNAME loop", tn, name);
		return;
	}
	if (info.hops > 0 && status == ARES_SUCCESS)
		log_warnx("dns: %s %s: name is an alias for %s", tn, name,
		    info.target);
	if (status == ARES_ENOTFOUND) {
		ans->status = DNS_NXDOMAIN;
		ans->ttl = dns_neg_ttl(&info);
		snprintf(ans->error, sizeof(ans->error), "%s %s: NXDOMAIN",
		    tn, name);
		return;
	}
	if (status == ARES_SUCCESS) {
		if (qtype == DNS_T_MX) {
			if (ares_parse_mx_reply(abuf, alen, &mx) !=
			    ARES_SUCCESS) {
				snprintf(ans->error, sizeof(ans->error),
				    "%s %s: malformed answer", tn, name);
				return;
			}
			if (mx != NULL) {
				dns_mx_fill(name, mx, &info, ans);
				ares_free_data(mx);
				return;
			}
		} else {
			if (dns_addr_fill(qtype, abuf, alen, ans) == -1) {
				snprintf(ans->error, sizeof(ans->error),
				    "%s %s: malformed answer", tn, name);
				return;
			}
			if (ans->n > 0) {
				ans->status = DNS_OK;
				ans->ttl = dns_pos_ttl(&info);
				return;
			}
		}
	}
	/* NOERROR with no record of the type, after any CNAMEs. */
	ans->status = DNS_NODATA;
	ans->ttl = dns_neg_ttl(&info);
	snprintf(ans->error, sizeof(ans->error), "%s %s: no %s records",
	    tn, name, tn);
}

/* FNV-1a over the type and the (lower-case) name. */
static uint64_t
dns_cache_hash(int qtype, const char *name)
{
	uint64_t	h = 0xcbf29ce484222325ULL;

	h ^= (unsigned char)qtype;
	h *= 0x100000001b3ULL;
	for (; *name != '\0'; name++) {
		h ^= (unsigned char)*name;
		h *= 0x100000001b3ULL;
	}
	return (h);
}

static struct dns_cache_ent **
dns_cache_slot(struct dns *d, uint64_t hash, int qtype, const char *name)
{
	struct dns_cache_ent	**pp;

	pp = &d->buckets[hash & (d->nbuckets - 1)];
	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->hash == hash && (*pp)->qtype == qtype &&
		    strcmp((*pp)->name, name) == 0)
			break;
	return (pp);
}

/* Unlink and free one entry. */
static void
dns_cache_del(struct dns *d, struct dns_cache_ent *e)
{
	struct dns_cache_ent	**pp;

	pp = dns_cache_slot(d, e->hash, e->qtype, e->name);
	if (*pp == e)
		*pp = e->next;
	TAILQ_REMOVE(&d->cache_age, e, age);
	d->cache_len--;
	dns_ans_clear(&e->ans);
	free(e);
}

/* The live entry for (qtype, name), dropping it if it has expired. */
static struct dns_cache_ent *
dns_cache_get(struct dns *d, int qtype, const char *name)
{
	struct dns_cache_ent	*e;

	e = *dns_cache_slot(d, dns_cache_hash(qtype, name), qtype, name);
	if (e != NULL && util_monotonic() >= e->expires) {
		dns_cache_del(d, e);
		e = NULL;
	}
	return (e);
}

/* Store a copy of ans unless it must not be cached. */
static void
dns_cache_put(struct dns *d, int qtype, const char *name,
    const struct dns_ans *ans)
{
	struct dns_cache_ent	*e;
	uint64_t		 hash;

	if (ans->status == DNS_TEMPFAIL || ans->ttl == 0 || d->cache_max == 0)
		return;
	if ((e = dns_cache_get(d, qtype, name)) != NULL)
		dns_cache_del(d, e);
	while (d->cache_len >= d->cache_max)
		dns_cache_del(d, TAILQ_FIRST(&d->cache_age));
	hash = dns_cache_hash(qtype, name);
	e = xcalloc(1, sizeof(*e));
	e->hash = hash;
	e->qtype = qtype;
	strlcpy(e->name, name, sizeof(e->name));
	e->expires = util_monotonic() + ans->ttl;
	dns_ans_copy(&e->ans, ans);
	e->next = d->buckets[hash & (d->nbuckets - 1)];
	d->buckets[hash & (d->nbuckets - 1)] = e;
	TAILQ_INSERT_TAIL(&d->cache_age, e, age);
	d->cache_len++;
}

/* Empty the cache; see dns.h. */
void
dns_cache_flush(struct dns *d)
{
	while (!TAILQ_EMPTY(&d->cache_age))
		dns_cache_del(d, TAILQ_FIRST(&d->cache_age));
}

static void
dns_ans_clear(struct dns_ans *ans)
{
	size_t	i;

	if (ans->mx != NULL)
		for (i = 0; i < ans->n; i++)
			free(ans->mx[i].host);
	free(ans->mx);
	free(ans->ip);
	memset(ans, 0, sizeof(*ans));
}

static void
dns_ans_copy(struct dns_ans *dst, const struct dns_ans *src)
{
	size_t	i;

	*dst = *src;
	dst->mx = NULL;
	dst->ip = NULL;
	if (src->mx != NULL) {
		dst->mx = xcalloc(src->n > 0 ? src->n : 1, sizeof(*dst->mx));
		for (i = 0; i < src->n; i++) {
			dst->mx[i].host = xstrdup(src->mx[i].host);
			dst->mx[i].pref = src->mx[i].pref;
		}
	}
	if (src->ip != NULL) {
		dst->ip = xcalloc(src->n, sizeof(*dst->ip));
		memcpy(dst->ip, src->ip, src->n * sizeof(*dst->ip));
	}
}

/* c-ares wants fd watched (or not); keep one persistent event per fd. */
static void
dns_sock_state(void *arg, ares_socket_t fd, int readable, int writable)
{
	struct dns	*d = arg;
	struct dns_sock	*s;
	short		 what;

	LIST_FOREACH(s, &d->socks, entry)
		if (s->fd == fd)
			break;
	if (!readable && !writable) {
		if (s != NULL) {
			LIST_REMOVE(s, entry);
			if (s->ev != NULL)
				event_free(s->ev);
			free(s);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->dns = d;
		s->fd = fd;
		LIST_INSERT_HEAD(&d->socks, s, entry);
	} else if (s->ev != NULL) {
		event_free(s->ev);
		s->ev = NULL;
	}
	what = EV_PERSIST | (readable ? EV_READ : 0) |
	    (writable ? EV_WRITE : 0);
	if ((s->ev = event_new(d->base, fd, what, dns_sock_cb, s)) == NULL ||
	    event_add(s->ev, NULL) == -1)
		fatalx("dns: cannot watch c-ares socket %d", (int)fd);
}

/*
 * A c-ares socket is ready.  ares_process_fd may close it and call
 * dns_sock_state, freeing s: read what we need from s first.
 */
static void
dns_sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_sock	*s = arg;
	struct dns	*d = s->dns;

	ares_process_fd(d->channel,
	    (what & EV_READ) ? (ares_socket_t)fd : ARES_SOCKET_BAD,
	    (what & EV_WRITE) ? (ares_socket_t)fd : ARES_SOCKET_BAD);
	dns_timer_rearm(d);
}

static void
dns_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns	*d = arg;

	(void)fd;
	(void)what;
	ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_rearm(d);
}

/* Arm the timer for c-ares's next timeout, or stop it when idle. */
static void
dns_timer_rearm(struct dns *d)
{
	struct timeval	 tv, *tvp;

	if (d->destroying)
		return;
	if ((tvp = ares_timeout(d->channel, NULL, &tv)) == NULL)
		evtimer_del(d->timer);
	else
		evtimer_add(d->timer, tvp);
}

/* One part of a request is answered; the last one schedules the callback. */
static void
dns_part_done(struct dns_part *p)
{
	struct dns_req	*req = p->req;

	if (--req->pending == 0 && !req->dns->destroying)
		event_active(req->ev, EV_TIMEOUT, 1);
}

/* The c-ares completion of one query (possibly from inside ares_query). */
static void
dns_answer_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_part	*p = arg;
	struct dns_req	*req = p->req;
	struct dns	*d = req->dns;

	(void)timeouts;
	if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
		p->ans.status = DNS_TEMPFAIL;
		snprintf(p->ans.error, sizeof(p->ans.error), "cancelled");
		dns_part_done(p);
		return;
	}
	dns_classify(req->name, p->qtype, status, abuf, alen, &p->ans);
	log_debug("dns: %s %s: %s ttl=%u n=%zu", dns_type_name(p->qtype),
	    req->name, dns_status_name(p->ans.status), p->ans.ttl, p->ans.n);
	if (p->ans.status == DNS_TEMPFAIL)
		d->stats.failures++;
	else
		dns_cache_put(d, p->qtype, req->name, &p->ans);
	dns_part_done(p);
}

/* Answer one part from the cache or send its query. */
static void
dns_part_start(struct dns *d, struct dns_part *p)
{
	struct dns_cache_ent	*e;

	if ((e = dns_cache_get(d, p->qtype, p->req->name)) != NULL) {
		d->stats.cache_hits++;
		dns_ans_copy(&p->ans, &e->ans);
		dns_part_done(p);
		return;
	}
	d->stats.queries++;
	/* ares_query, not ares_search: no search domains for mail. */
	ares_query(d->channel, p->req->name, DNS_C_IN, p->qtype,
	    dns_answer_cb, p);
	dns_timer_rearm(d);
}

static struct dns_req *
dns_req_new(struct dns *d, const char *name, enum dns_kind kind)
{
	struct dns_req	*req;
	char		 norm[SMTP_DOMAIN_MAX + 1];
	char		 esc[64];
	size_t		 i;

	if (d == NULL || dns_name_norm(name, norm) == -1) {
		if (name != NULL)
			log_warnx("dns: invalid name \"%s\"", util_escape(esc,
			    sizeof(esc), name, strlen(name)));
		return (NULL);
	}
	req = xcalloc(1, sizeof(*req));
	req->dns = d;
	req->kind = kind;
	strlcpy(req->name, norm, sizeof(req->name));
	if ((req->ev = event_new(d->base, -1, 0, dns_req_fire, req)) == NULL)
		fatalx("dns: event_new failed");
	if (kind == DNS_KIND_MX) {
		req->nparts = 1;
		req->part[0].qtype = DNS_T_MX;
	} else {
		req->nparts = 2;
		req->part[0].qtype = DNS_T_AAAA;
		req->part[1].qtype = DNS_T_A;
	}
	for (i = 0; i < req->nparts; i++)
		req->part[i].req = req;
	req->pending = req->nparts;
	TAILQ_INSERT_TAIL(&d->reqs, req, entry);
	return (req);
}

static void
dns_req_free(struct dns_req *req)
{
	size_t	i;

	for (i = 0; i < req->nparts; i++)
		dns_ans_clear(&req->part[i].ans);
	event_free(req->ev);
	free(req);
}

/* A uniform random index below n (n > 0), without modulo bias. */
static size_t
dns_random_below(size_t n)
{
	uint32_t	r, lim;

	lim = UINT32_MAX - UINT32_MAX % (uint32_t)n;
	do
		util_random(&r, sizeof(r));
	while (r >= lim);
	return (r % n);
}

/* Build the MX result: shuffle each run of equal preferences, then cap. */
static void
dns_mx_result(const struct dns_req *req, struct dns_mx_result *res)
{
	const struct dns_ans	*ans = &req->part[0].ans;
	size_t			 idx[DNS_MX_KEEP], i, j, k, t, t2, n;

	memset(res, 0, sizeof(*res));
	res->status = ans->status;
	res->ttl = ans->ttl;
	strlcpy(res->error, ans->error, sizeof(res->error));
	if (ans->status != DNS_OK)
		return;
	n = ans->n < DNS_MX_KEEP ? ans->n : DNS_MX_KEEP;
	for (i = 0; i < n; i++)
		idx[i] = i;
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n && ans->mx[j].pref == ans->mx[i].pref;
		    j++)
			;
		/* Fisher-Yates over idx[i..j). */
		for (k = j - 1; k > i; k--) {
			t = i + dns_random_below(k - i + 1);
			t2 = idx[k];
			idx[k] = idx[t];
			idx[t] = t2;
		}
	}
	for (i = 0; i < n && res->nmx < DNS_MX_MAX; i++) {
		strlcpy(res->mx[res->nmx].host, ans->mx[idx[i]].host,
		    sizeof(res->mx[res->nmx].host));
		res->mx[res->nmx].pref = ans->mx[idx[i]].pref;
		res->nmx++;
	}
}

static void
dns_addr_put(struct dns_addr_result *res, int qtype, const unsigned char *ip)
{
	struct sockaddr_storage	*ss = &res->addr[res->naddr++];

	memset(ss, 0, sizeof(*ss));
	if (qtype == DNS_T_A) {
		struct sockaddr_in	*sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, ip, 4);
	} else {
		struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, ip, 16);
	}
}

/* Combine the AAAA (part 0) and A (part 1) answers; see dns_lookup_addr. */
static void
dns_addr_result(const struct dns_req *req, struct dns_addr_result *res)
{
	const struct dns_ans	*a6 = &req->part[0].ans, *a4 = &req->part[1].ans;
	const struct dns_ans	*bad;
	size_t			 i6 = 0, i4 = 0;
	bool			 ok6, ok4;

	memset(res, 0, sizeof(*res));
	ok6 = a6->status == DNS_OK && a6->n > 0;
	ok4 = a4->status == DNS_OK && a4->n > 0;
	if (ok6 || ok4) {
		res->status = DNS_OK;
		if (ok6 && ok4)
			res->ttl = a6->ttl < a4->ttl ? a6->ttl : a4->ttl;
		else
			res->ttl = ok6 ? a6->ttl : a4->ttl;
		while (res->naddr < DNS_ADDR_MAX &&
		    ((ok6 && i6 < a6->n) || (ok4 && i4 < a4->n))) {
			if (ok6 && i6 < a6->n)
				dns_addr_put(res, DNS_T_AAAA, a6->ip[i6++]);
			if (res->naddr < DNS_ADDR_MAX && ok4 && i4 < a4->n)
				dns_addr_put(res, DNS_T_A, a4->ip[i4++]);
		}
		return;
	}
	if (a6->status == DNS_TEMPFAIL || a4->status == DNS_TEMPFAIL) {
		bad = a6->status == DNS_TEMPFAIL ? a6 : a4;
		res->status = DNS_TEMPFAIL;
		strlcpy(res->error, bad->error, sizeof(res->error));
		return;
	}
	if (a6->status == DNS_NXDOMAIN && a4->status == DNS_NXDOMAIN) {
		res->status = DNS_NXDOMAIN;
		res->ttl = a6->ttl < a4->ttl ? a6->ttl : a4->ttl;
		snprintf(res->error, sizeof(res->error), "%.100s: NXDOMAIN",
		    req->name);
		return;
	}
	res->status = DNS_NODATA;
	res->ttl = a6->ttl < a4->ttl ? a6->ttl : a4->ttl;
	snprintf(res->error, sizeof(res->error), "%.96s: no A or AAAA records",
	    req->name);
}

/*
 * Every part is answered: leave dns->reqs first, so that the callback may
 * call dns_free(), then run it and free the request, which is ours alone.
 */
static void
dns_req_fire(evutil_socket_t fd, short what, void *arg)
{
	struct dns_req	*req = arg;

	(void)fd;
	(void)what;
	TAILQ_REMOVE(&req->dns->reqs, req, entry);
	req->dns = NULL;
	if (req->kind == DNS_KIND_MX) {
		dns_mx_result(req, &req->res.mx);
		req->mxcb(req->cookie, &req->res.mx, req->arg);
	} else {
		dns_addr_result(req, &req->res.addr);
		req->addrcb(req->cookie, &req->res.addr, req->arg);
	}
	dns_req_free(req);
}

/* Look up the MX records of domain; see dns.h. */
int
dns_lookup_mx(struct dns *d, const char *domain, dns_mx_cb cb,
    uint64_t cookie, void *arg)
{
	struct dns_req	*req;

	if (cb == NULL || (req = dns_req_new(d, domain, DNS_KIND_MX)) == NULL)
		return (-1);
	req->mxcb = cb;
	req->cookie = cookie;
	req->arg = arg;
	dns_part_start(d, &req->part[0]);
	return (0);
}

/* Look up the A and AAAA records of host; see dns.h. */
int
dns_lookup_addr(struct dns *d, const char *host, dns_addr_cb cb,
    uint64_t cookie, void *arg)
{
	struct dns_req	*req;

	if (cb == NULL || (req = dns_req_new(d, host, DNS_KIND_ADDR)) == NULL)
		return (-1);
	req->addrcb = cb;
	req->cookie = cookie;
	req->arg = arg;
	dns_part_start(d, &req->part[0]);
	dns_part_start(d, &req->part[1]);
	return (0);
}

void
dns_get_stats(const struct dns *d, struct dns_stats *st)
{
	*st = d->stats;
}

/* Point the channel at servers; numeric addresses only. */
static int
dns_set_servers(struct dns *d, const struct conf_hostport *servers,
    size_t nservers, char *err, size_t errlen)
{
	struct ares_addr_port_node	*nodes;
	size_t				 i;
	int				 rc;

	nodes = xcalloc(nservers, sizeof(*nodes));
	for (i = 0; i < nservers; i++) {
		const char	*h = servers[i].host;
		int		 port = servers[i].port;

		if (h != NULL && inet_pton(AF_INET, h,
		    &nodes[i].addr.addr4) == 1)
			nodes[i].family = AF_INET;
		else if (h != NULL && inet_pton(AF_INET6, h,
		    &nodes[i].addr.addr6) == 1)
			nodes[i].family = AF_INET6;
		else {
			snprintf(err, errlen, "dns server \"%s\": not a "
			    "numeric IP address", h == NULL ? "" : h);
			free(nodes);
			return (-1);
		}
		if (port <= 0)
			port = 53;
		if (port > 65535) {
			snprintf(err, errlen, "dns server %s: port %d out of "
			    "range", h, port);
			free(nodes);
			return (-1);
		}
		nodes[i].udp_port = nodes[i].tcp_port = port;
		nodes[i].next = i + 1 < nservers ? &nodes[i + 1] : NULL;
	}
	rc = ares_set_servers_ports(d->channel, nodes);
	free(nodes);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "ares_set_servers_ports: %s",
		    ares_strerror(rc));
		return (-1);
	}
	return (0);
}

/* A resolver with default tunables; see dns.h. */
struct dns *
dns_new(struct event_base *base, const struct conf_hostport *servers,
    size_t nservers, char *err, size_t errlen)
{
	return (dns_new_opts(base, servers, nservers, NULL, err, errlen));
}

/* A resolver on base; see dns.h. */
struct dns *
dns_new_opts(struct event_base *base, const struct conf_hostport *servers,
    size_t nservers, const struct dns_opts *opts, char *err, size_t errlen)
{
	struct dns		*d;
	struct ares_options	 o;
	int			 rc, mask;
	size_t			 nb;

	if (base == NULL || (nservers > 0 && servers == NULL)) {
		snprintf(err, errlen, "dns: invalid arguments");
		return (NULL);
	}
	if ((rc = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		snprintf(err, errlen, "ares_library_init: %s",
		    ares_strerror(rc));
		return (NULL);
	}
	d = xcalloc(1, sizeof(*d));
	d->base = base;
	LIST_INIT(&d->socks);
	TAILQ_INIT(&d->reqs);
	TAILQ_INIT(&d->cache_age);
	d->cache_max = opts != NULL && opts->cache_max > 0 ?
	    opts->cache_max : DNS_CACHE_MAX;
	for (nb = 16; nb < d->cache_max && nb < (1U << 20); nb <<= 1)
		;
	d->nbuckets = nb;
	d->buckets = xcalloc(nb, sizeof(*d->buckets));
	if ((d->timer = evtimer_new(base, dns_timer_cb, d)) == NULL) {
		snprintf(err, errlen, "dns: evtimer_new failed");
		goto fail;
	}

	memset(&o, 0, sizeof(o));
	mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
	o.sock_state_cb = dns_sock_state;
	o.sock_state_cb_data = d;
	o.timeout = opts != NULL && opts->timeout_ms > 0 ? opts->timeout_ms :
	    DNS_TIMEOUT_MS_DEFAULT;
	o.tries = opts != NULL && opts->tries > 0 ? opts->tries :
	    DNS_TRIES_DEFAULT;
	if ((rc = ares_init_options(&d->channel, &o, mask)) != ARES_SUCCESS) {
		snprintf(err, errlen, "ares_init_options: %s",
		    ares_strerror(rc));
		d->channel = NULL;
		goto fail;
	}
	if (nservers > 0 &&
	    dns_set_servers(d, servers, nservers, err, errlen) == -1)
		goto fail;
	return (d);

fail:
	dns_free(d);
	return (NULL);
}

/* Free the resolver; outstanding callbacks never run.  See dns.h. */
void
dns_free(struct dns *d)
{
	struct dns_sock	*s;
	struct dns_req	*req;

	if (d == NULL)
		return;
	d->destroying = true;
	/* c-ares ends each query with ARES_EDESTRUCTION and closes sockets. */
	if (d->channel != NULL)
		ares_destroy(d->channel);
	while ((s = LIST_FIRST(&d->socks)) != NULL) {
		LIST_REMOVE(s, entry);
		if (s->ev != NULL)
			event_free(s->ev);
		free(s);
	}
	while ((req = TAILQ_FIRST(&d->reqs)) != NULL) {
		TAILQ_REMOVE(&d->reqs, req, entry);
		dns_req_free(req);
	}
	dns_cache_flush(d);
	free(d->buckets);
	if (d->timer != NULL)
		event_free(d->timer);
	free(d);
	ares_library_cleanup();
}
