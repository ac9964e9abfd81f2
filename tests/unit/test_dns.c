/*
 * test_dns.c: the resolver against a real dnsmasq on loopback (MX order and
 * shuffling, A/AAAA interleaving, NODATA, NXDOMAIN, null MX, numeric MX
 * names, the cache) and against a scripted UDP responder thread for the
 * answers dnsmasq will not give (SERVFAIL, silence, malformed records,
 * truncation, CNAME loops).  Each test has its own server on its own port,
 * so Criterion may run them in parallel.
 *
 * No test sets .timeout: with parallel jobs, Criterion 2.4.1 (BoxFort)
 * leaks a 48-byte timeout request in the runner process, which fails the
 * binary under LeakSanitizer.  Every wait here is bounded by td_run()'s
 * deadline instead.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>

#include "conf.h"
#include "dns.h"
#include "util.h"

#define TD_DNSMASQ	"/usr/sbin/dnsmasq"

extern char	**environ;

/* ---- dnsmasq on loopback ---------------------------------------------- */

static const char *const td_records[] = {
	"--local-ttl=60",
	/* listed out of order on purpose */
	"--mx-host=ok.test,mx1.ok.test,10",
	"--mx-host=ok.test,mx2.ok.test,20",
	"--mx-host=ok.test,mx0.ok.test,5",
	"--mx-host=eq.test,a.eq.test,10",
	"--mx-host=eq.test,b.eq.test,10",
	"--mx-host=eq.test,c.eq.test,20",
	"--host-record=mx1.ok.test,127.0.0.21,::1",
	"--host-record=multi.test,127.0.0.22,fd00::1",
	"--host-record=multi.test,127.0.0.23,fd00::2",
	"--host-record=multi.test,127.0.0.24",
	"--host-record=aonly.test,127.0.0.30",
	"--host-record=v6only.test,fd00::5",
	"--dns-rr=nullmx.test,15,000000",
	"--mx-host=mixed.test,mx.mixed.test,10",
	"--dns-rr=mixed.test,15,000000",
	"--mx-host=num.test,192.0.2.1,10",
	"--mx-host=num.test,mx.num.test,20",
	"--mx-host=numonly.test,192.0.2.7,10",
	"--mx-host=numonly.test,10.0.0.1,20",
	"--cname=alias.test,mx1.ok.test",
};

struct td_server {
	pid_t	pid;
	int	port;
};

/*
 * A port on 127.0.0.1 that was free a moment ago for UDP and for TCP:
 * dnsmasq binds both and exits when the TCP one is taken.
 */
static int
td_free_port(void)
{
	struct sockaddr_in	sin;
	socklen_t		len;
	int			fd, tfd, port, tries;

	for (tries = 0; tries < 100; tries++) {
		len = sizeof(sin);
		fd = socket(AF_INET, SOCK_DGRAM, 0);
		cr_assert(fd >= 0);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		cr_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
		cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
		port = ntohs(sin.sin_port);
		tfd = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert(tfd >= 0);
		if (bind(tfd, (struct sockaddr *)&sin, sizeof(sin)) == 0) {
			close(tfd);
			close(fd);
			return (port);
		}
		close(tfd);
		close(fd);
	}
	cr_assert_fail("no port free for both UDP and TCP");
	return (-1);
}

/* True once something holds 127.0.0.1:port/udp. */
static bool
td_port_taken(int port)
{
	struct sockaddr_in	sin;
	int			fd, rc;

	fd = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	rc = bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	close(fd);
	return (rc == -1 && errno == EADDRINUSE);
}

static bool
td_dnsmasq_try(struct td_server *srv)
{
	char		*argv[64], portarg[32];
	posix_spawn_file_actions_t fa;
	size_t		 n = 0, i;
	int		 status, waited, rc;

	srv->port = td_free_port();
	snprintf(portarg, sizeof(portarg), "--port=%d", srv->port);
	argv[n++] = (char *)TD_DNSMASQ;
	argv[n++] = (char *)"--keep-in-foreground";
	argv[n++] = (char *)"--no-resolv";
	argv[n++] = (char *)"--no-hosts";
	argv[n++] = (char *)"--conf-file=/dev/null";
	argv[n++] = (char *)"--bind-interfaces";
	argv[n++] = (char *)"--listen-address=127.0.0.1";
	argv[n++] = portarg;
	argv[n++] = (char *)"--pid-file=";
	argv[n++] = (char *)"--log-facility=-";
	argv[n++] = (char *)"--local=/test/";
	for (i = 0; i < nitems(td_records); i++)
		argv[n++] = (char *)td_records[i];
	argv[n] = NULL;

	/* dnsmasq's stdio goes to /dev/null: it logs every query. */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&srv->pid, TD_DNSMASQ, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "posix_spawn %s: %s", TD_DNSMASQ, strerror(rc));
	for (waited = 0; waited < 500; waited++) {
		if (waitpid(srv->pid, &status, WNOHANG) == srv->pid)
			return (false);
		if (td_port_taken(srv->port)) {
			/* Still alive a moment later: it bound UDP and TCP. */
			usleep(100000);
			if (waitpid(srv->pid, &status, WNOHANG) == srv->pid)
				return (false);
			return (true);
		}
		usleep(10000);
	}
	kill(srv->pid, SIGKILL);
	waitpid(srv->pid, &status, 0);
	return (false);
}

static void
td_dnsmasq_start(struct td_server *srv)
{
	int	i;

	if (access(TD_DNSMASQ, X_OK) != 0)
		cr_skip_test("%s not installed", TD_DNSMASQ);
	for (i = 0; i < 5; i++)
		if (td_dnsmasq_try(srv))
			return;
	cr_assert_fail("dnsmasq did not start");
}

static void
td_dnsmasq_stop(struct td_server *srv)
{
	int	status;

	if (srv->pid > 0) {
		kill(srv->pid, SIGTERM);
		waitpid(srv->pid, &status, 0);
		srv->pid = 0;
	}
}

/* ---- a scripted UDP responder ----------------------------------------- */

enum td_mode {
	TD_SERVFAIL,		/* RCODE 2 */
	TD_REFUSED,		/* RCODE 5 */
	TD_SILENT,		/* never answers */
	TD_SHORT,		/* 5 bytes: no room for a header */
	TD_MX_SHORT_RDATA,	/* MX with RDATA of 2 bytes */
	TD_MX_RDATA_LONG,	/* MX name shorter than its RDATA */
	TD_MX_OVERRUN,		/* RDLENGTH past the end of the message */
	TD_MX_PTR_LOOP,		/* MX exchange compression points at itself */
	TD_TRUNCATED,		/* TC bit; nothing listens on TCP */
	TD_CNAME_LOOP,		/* q CNAME x.q, x.q CNAME q */
	TD_NXDOMAIN_SOA,	/* NXDOMAIN with an SOA, negative TTL 7 */
};

struct td_resp {
	int		 fd;
	int		 port;
	enum td_mode	 mode;
	pthread_t	 thread;
	atomic_bool	 stop;
	atomic_int	 nqueries;
};

static size_t
td_put16(unsigned char *p, unsigned int v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
	return (2);
}

static size_t
td_put32(unsigned char *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (v >> 16) & 0xff;
	p[2] = (v >> 8) & 0xff;
	p[3] = v & 0xff;
	return (4);
}

/* RR header: name as a pointer to off, type, class IN, ttl, rdlength. */
static size_t
td_rr(unsigned char *p, unsigned int off, unsigned int type, uint32_t ttl,
    unsigned int rdlen)
{
	size_t	n = 0;

	n += td_put16(p + n, 0xc000 | off);
	n += td_put16(p + n, type);
	n += td_put16(p + n, 1);
	n += td_put32(p + n, ttl);
	n += td_put16(p + n, rdlen);
	return (n);
}

/* Build the reply for mode into out; 0 means do not answer. */
static size_t
td_reply(enum td_mode mode, const unsigned char *q, size_t qlen,
    unsigned char *out)
{
	size_t		 qend = 12, n, rd;
	unsigned int	 an = 0, ns = 0, rcode = 0, flags;

	/* Find the end of the question: labels, 0, type, class. */
	while (qend < qlen && q[qend] != 0)
		qend += q[qend] + 1;
	qend += 5;
	if (qend > qlen)
		return (0);
	memcpy(out, q, qend);
	n = qend;
	switch (mode) {
	case TD_SILENT:
		return (0);
	case TD_SHORT:
		return (5);
	case TD_SERVFAIL:
		rcode = 2;
		break;
	case TD_REFUSED:
		rcode = 5;
		break;
	case TD_TRUNCATED:
		break;
	case TD_MX_SHORT_RDATA:
		an = 1;
		n += td_rr(out + n, 12, 15, 60, 2);
		n += td_put16(out + n, 10);
		break;
	case TD_MX_RDATA_LONG:
		an = 1;
		n += td_rr(out + n, 12, 15, 60, 8);
		n += td_put16(out + n, 10);
		memcpy(out + n, "\001a\000\000\000\000", 6);
		n += 6;
		break;
	case TD_MX_OVERRUN:
		an = 1;
		n += td_rr(out + n, 12, 15, 60, 200);
		n += td_put16(out + n, 10);
		memcpy(out + n, "\002mx\300\014", 5);
		n += 5;
		break;
	case TD_MX_PTR_LOOP:
		an = 1;
		n += td_rr(out + n, 12, 15, 60, 4);
		n += td_put16(out + n, 10);
		/* a pointer to its own offset */
		n += td_put16(out + n, 0xc000 | (unsigned int)n);
		break;
	case TD_CNAME_LOOP:
		an = 2;
		n += td_rr(out + n, 12, 5, 60, 4);
		rd = n;
		memcpy(out + n, "\001x\300\014", 4);	/* x.<qname> */
		n += 4;
		n += td_rr(out + n, (unsigned int)rd, 5, 60, 2);
		n += td_put16(out + n, 0xc00c);		/* back to qname */
		break;
	case TD_NXDOMAIN_SOA:
		rcode = 3;
		ns = 1;
		/* SOA owned by the qname: mname ".", rname ".", 5 fields */
		n += td_rr(out + n, 12, 6, 7, 22);
		out[n++] = 0;
		out[n++] = 0;
		n += td_put32(out + n, 1);	/* serial */
		n += td_put32(out + n, 3600);
		n += td_put32(out + n, 600);
		n += td_put32(out + n, 86400);
		n += td_put32(out + n, 3600);	/* minimum > ttl 7 */
		break;
	}
	/* QR, opcode 0, AA, TC?, RD copied; RA; rcode */
	flags = 0x8400 | (q[2] & 0x01) << 8 | 0x0080 | rcode;
	if (mode == TD_TRUNCATED)
		flags |= 0x0200;
	td_put16(out + 2, flags);
	td_put16(out + 4, 1);
	td_put16(out + 6, an);
	td_put16(out + 8, ns);
	td_put16(out + 10, 0);
	return (n);
}

static void *
td_resp_main(void *arg)
{
	struct td_resp		*r = arg;
	struct sockaddr_in	 from;
	socklen_t		 fromlen;
	unsigned char		 q[1500], out[1600];
	struct pollfd		 pfd;
	ssize_t			 len;
	size_t			 n;

	while (!atomic_load(&r->stop)) {
		pfd.fd = r->fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 20) <= 0)
			continue;
		fromlen = sizeof(from);
		len = recvfrom(r->fd, q, sizeof(q), 0,
		    (struct sockaddr *)&from, &fromlen);
		if (len < 12)
			continue;
		atomic_fetch_add(&r->nqueries, 1);
		if ((n = td_reply(r->mode, q, (size_t)len, out)) > 0)
			sendto(r->fd, out, n, 0, (struct sockaddr *)&from,
			    fromlen);
	}
	return (NULL);
}

static void
td_resp_start(struct td_resp *r, enum td_mode mode)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);

	memset(r, 0, sizeof(*r));
	r->mode = mode;
	r->fd = socket(AF_INET, SOCK_DGRAM, 0);
	cr_assert(r->fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(r->fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(getsockname(r->fd, (struct sockaddr *)&sin, &len) == 0);
	r->port = ntohs(sin.sin_port);
	cr_assert(pthread_create(&r->thread, NULL, td_resp_main, r) == 0);
}

static void
td_resp_stop(struct td_resp *r)
{
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	close(r->fd);
}

/* ---- the loop and the callbacks --------------------------------------- */

struct td_got {
	int			 calls;
	uint64_t		 cookie;
	bool			 reentrant;	/* ran inside a lookup call */
	struct dns_mx_result	 mx;
	struct dns_addr_result	 addr;
};

static bool	td_in_lookup;

static void
td_mx_cb(uint64_t cookie, const struct dns_mx_result *res, void *arg)
{
	struct td_got	*g = arg;

	g->calls++;
	g->cookie = cookie;
	g->reentrant |= td_in_lookup;
	g->mx = *res;
}

static void
td_addr_cb(uint64_t cookie, const struct dns_addr_result *res, void *arg)
{
	struct td_got	*g = arg;

	g->calls++;
	g->cookie = cookie;
	g->reentrant |= td_in_lookup;
	g->addr = *res;
}

static void
td_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

static double
td_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (ts.tv_sec + ts.tv_nsec / 1e9);
}

/* Run the loop until *calls >= want or secs pass. */
static void
td_run(struct event_base *base, const int *calls, int want, double secs)
{
	struct timeval	 tv = { 0, 10000 };
	struct event	*tick;
	double		 deadline = td_now() + secs;

	tick = event_new(base, -1, EV_PERSIST, td_tick, NULL);
	event_add(tick, &tv);
	while ((calls == NULL || *calls < want) && td_now() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(tick);
}

struct td_env {
	struct event_base	*base;
	struct dns		*dns;
	struct td_server	 srv;
};

static void
td_env_dnsmasq(struct td_env *env, const struct dns_opts *opts)
{
	struct conf_hostport	hp = { (char *)"127.0.0.1", 0 };
	char			err[256] = "";

	memset(env, 0, sizeof(*env));
	td_dnsmasq_start(&env->srv);
	hp.port = env->srv.port;
	env->base = event_base_new();
	cr_assert(env->base != NULL);
	env->dns = dns_new_opts(env->base, &hp, 1, opts, err, sizeof(err));
	cr_assert(env->dns != NULL, "dns_new: %s", err);
}

static void
td_env_free(struct td_env *env)
{
	dns_free(env->dns);
	event_base_free(env->base);
	td_dnsmasq_stop(&env->srv);
}

static void
td_mx(struct td_env *env, const char *domain, struct td_got *g)
{
	memset(g, 0, sizeof(*g));
	td_in_lookup = true;
	if (dns_lookup_mx(env->dns, domain, td_mx_cb, 42, g) != 0)
		cr_assert_fail("dns_lookup_mx(%s) refused", domain);
	td_in_lookup = false;
	td_run(env->base, &g->calls, 1, 10);
	/* Only failures reach Criterion: loops call this hundreds of times. */
	if (g->calls != 1 || g->cookie != 42 || g->reentrant)
		cr_assert_fail("%s: %d callbacks (want 1), cookie %ju (want "
		    "42), re-entrant %d (want 0)", domain, g->calls,
		    (uintmax_t)g->cookie, g->reentrant);
}

static void
td_addr(struct td_env *env, const char *host, struct td_got *g)
{
	memset(g, 0, sizeof(*g));
	td_in_lookup = true;
	if (dns_lookup_addr(env->dns, host, td_addr_cb, 7, g) != 0)
		cr_assert_fail("dns_lookup_addr(%s) refused", host);
	td_in_lookup = false;
	td_run(env->base, &g->calls, 1, 10);
	if (g->calls != 1 || g->cookie != 7 || g->reentrant)
		cr_assert_fail("%s: %d callbacks (want 1), cookie %ju (want "
		    "7), re-entrant %d (want 0)", host, g->calls,
		    (uintmax_t)g->cookie, g->reentrant);
}

static const char *
td_ntop(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (ss->ss_family == AF_INET)
		return (inet_ntop(AF_INET,
		    &((const struct sockaddr_in *)ss)->sin_addr, buf, len));
	if (ss->ss_family == AF_INET6)
		return (inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)ss)->sin6_addr, buf, len));
	return ("?");
}

/* ---- tests against dnsmasq -------------------------------------------- */

Test(dns, mx_sorted_by_preference)
{
	struct td_env	 env;
	struct td_got	 g;
	const char	*want[] = { "mx0.ok.test", "mx1.ok.test", "mx2.ok.test" };
	unsigned int	 wantpref[] = { 5, 10, 20 };
	size_t		 i;

	td_env_dnsmasq(&env, NULL);
	td_mx(&env, "ok.test", &g);
	cr_assert_eq(g.mx.status, DNS_OK, "status got %s want OK (%s)",
	    dns_status_name(g.mx.status), g.mx.error);
	cr_assert_eq(g.mx.nmx, nitems(want), "nmx got %zu want %zu",
	    g.mx.nmx, nitems(want));
	for (i = 0; i < nitems(want); i++) {
		cr_expect_str_eq(g.mx.mx[i].host, want[i], "mx[%zu] got %s "
		    "want %s", i, g.mx.mx[i].host, want[i]);
		cr_expect_eq(g.mx.mx[i].pref, wantpref[i], "pref[%zu] got %u "
		    "want %u", i, g.mx.mx[i].pref, wantpref[i]);
	}
	cr_expect_eq(g.mx.ttl, 60, "ttl got %u want 60", g.mx.ttl);
	cr_expect_str_eq(g.mx.error, "");
	/* A trailing dot and upper case name the same domain. */
	td_mx(&env, "OK.Test.", &g);
	cr_expect_eq(g.mx.nmx, 3);
	td_env_free(&env);
}

Test(dns, equal_preferences_shuffled)
{
	struct td_env	 env;
	struct td_got	 g;
	int		 ab = 0, ba = 0, cached_ab = 0, cached_ba = 0, i;

	td_env_dnsmasq(&env, NULL);
	for (i = 0; i < 50; i++) {
		dns_cache_flush(env.dns);
		td_mx(&env, "eq.test", &g);
		if (g.mx.status != DNS_OK || g.mx.nmx != 3 ||
		    strcmp(g.mx.mx[2].host, "c.eq.test") != 0)
			cr_assert_fail("eq.test: %s nmx %zu, last %s; want OK 3 "
			    "c.eq.test", dns_status_name(g.mx.status),
			    g.mx.nmx, g.mx.mx[2].host);
		if (strcmp(g.mx.mx[0].host, "a.eq.test") == 0)
			ab++;
		else
			ba++;
	}
	cr_expect(ab > 0 && ba > 0, "50 fresh lookups: a,b %d times, "
	    "b,a %d times; want both orders", ab, ba);
	/* The order is drawn per lookup, also for cached answers. */
	for (i = 0; i < 50; i++) {
		td_mx(&env, "eq.test", &g);
		if (strcmp(g.mx.mx[0].host, "a.eq.test") == 0)
			cached_ab++;
		else
			cached_ba++;
	}
	cr_expect(cached_ab > 0 && cached_ba > 0, "50 cached lookups: a,b %d "
	    "times, b,a %d times; want both orders", cached_ab, cached_ba);
	td_env_free(&env);
}

Test(dns, addr_of_mx_host_v6_first)
{
	struct td_env	 env;
	struct td_got	 g;
	char		 buf[INET6_ADDRSTRLEN];
	const struct sockaddr_in *sin;

	td_env_dnsmasq(&env, NULL);
	td_addr(&env, "mx1.ok.test", &g);
	cr_assert_eq(g.addr.status, DNS_OK, "status got %s want OK (%s)",
	    dns_status_name(g.addr.status), g.addr.error);
	cr_assert_eq(g.addr.naddr, 2, "naddr got %zu want 2", g.addr.naddr);
	cr_expect_str_eq(td_ntop(&g.addr.addr[0], buf, sizeof(buf)), "::1");
	cr_expect_str_eq(td_ntop(&g.addr.addr[1], buf, sizeof(buf)),
	    "127.0.0.21");
	sin = (const struct sockaddr_in *)&g.addr.addr[1];
	cr_expect_eq(sin->sin_port, 0, "port must be 0");
	cr_expect_eq(g.addr.ttl, 60);
	td_env_free(&env);
}

Test(dns, addr_alternates_families)
{
	struct td_env	 env;
	struct td_got	 g;
	int		 want[] = { AF_INET6, AF_INET, AF_INET6, AF_INET,
			    AF_INET };
	size_t		 i, n4 = 0, n6 = 0;

	td_env_dnsmasq(&env, NULL);
	td_addr(&env, "multi.test", &g);
	cr_assert_eq(g.addr.status, DNS_OK);
	cr_assert_eq(g.addr.naddr, nitems(want), "naddr got %zu want %zu",
	    g.addr.naddr, nitems(want));
	for (i = 0; i < g.addr.naddr; i++) {
		cr_expect_eq(g.addr.addr[i].ss_family, want[i],
		    "addr[%zu] family got %d want %d", i,
		    g.addr.addr[i].ss_family, want[i]);
		if (g.addr.addr[i].ss_family == AF_INET)
			n4++;
		else
			n6++;
	}
	cr_expect(n4 == 3 && n6 == 2);
	td_env_free(&env);
}

Test(dns, addr_single_family)
{
	static const struct {
		const char	*host;
		int		 family;
		const char	*addr;
	} cases[] = {
		{ "aonly.test", AF_INET, "127.0.0.30" },
		{ "v6only.test", AF_INET6, "fd00::5" },
	};
	struct td_env	 env;
	struct td_got	 g;
	char		 buf[INET6_ADDRSTRLEN];
	size_t		 i;

	td_env_dnsmasq(&env, NULL);
	for (i = 0; i < nitems(cases); i++) {
		td_addr(&env, cases[i].host, &g);
		cr_expect_eq(g.addr.status, DNS_OK, "%s: status got %s (%s)",
		    cases[i].host, dns_status_name(g.addr.status),
		    g.addr.error);
		cr_expect_eq(g.addr.naddr, 1, "%s: naddr got %zu want 1",
		    cases[i].host, g.addr.naddr);
		cr_expect_eq(g.addr.addr[0].ss_family, cases[i].family);
		cr_expect_str_eq(td_ntop(&g.addr.addr[0], buf, sizeof(buf)),
		    cases[i].addr);
	}
	td_env_free(&env);
}

Test(dns, addr_through_cname)
{
	struct td_env	 env;
	struct td_got	 g;
	char		 buf[INET6_ADDRSTRLEN];

	td_env_dnsmasq(&env, NULL);
	td_addr(&env, "alias.test", &g);
	cr_assert_eq(g.addr.status, DNS_OK, "got %s (%s)",
	    dns_status_name(g.addr.status), g.addr.error);
	cr_assert_eq(g.addr.naddr, 2, "naddr got %zu want 2", g.addr.naddr);
	cr_expect_str_eq(td_ntop(&g.addr.addr[1], buf, sizeof(buf)),
	    "127.0.0.21");
	td_mx(&env, "alias.test", &g);
	cr_expect_eq(g.mx.status, DNS_NODATA, "MX of an alias without MX: "
	    "got %s (%s)", dns_status_name(g.mx.status), g.mx.error);
	td_env_free(&env);
}

Test(dns, statuses_from_dnsmasq)
{
	static const struct {
		const char	*domain;
		bool		 mx;
		enum dns_status	 want;
	} cases[] = {
		{ "aonly.test", true, DNS_NODATA },	/* OUT-29 */
		{ "nope.test", true, DNS_NXDOMAIN },	/* OUT-27 */
		{ "nope.test", false, DNS_NXDOMAIN },
		{ "mx.ok.test", false, DNS_NXDOMAIN },
		{ "nullmx.test", true, DNS_NULLMX },	/* OUT-30 */
		{ "mixed.test", true, DNS_NULLMX },	/* "." mixed in wins */
		{ "ok.test", false, DNS_NODATA },	/* MX only, no A */
	};
	struct td_env	 env;
	struct td_got	 g;
	enum dns_status	 got;
	size_t		 i;

	td_env_dnsmasq(&env, NULL);
	for (i = 0; i < nitems(cases); i++) {
		if (cases[i].mx) {
			td_mx(&env, cases[i].domain, &g);
			got = g.mx.status;
			if (got != DNS_OK)
				cr_expect_eq(g.mx.nmx, 0);
		} else {
			td_addr(&env, cases[i].domain, &g);
			got = g.addr.status;
			if (got != DNS_OK)
				cr_expect_eq(g.addr.naddr, 0);
		}
		cr_expect_eq(got, cases[i].want, "%s %s: got %s want %s",
		    cases[i].mx ? "MX" : "addr", cases[i].domain,
		    dns_status_name(got), dns_status_name(cases[i].want));
	}
	td_env_free(&env);
}

Test(dns, numeric_mx_dropped)
{
	struct td_env	 env;
	struct td_got	 g;

	td_env_dnsmasq(&env, NULL);
	td_mx(&env, "num.test", &g);
	cr_assert_eq(g.mx.status, DNS_OK);
	cr_assert_eq(g.mx.nmx, 1, "nmx got %zu want 1", g.mx.nmx);
	cr_expect_str_eq(g.mx.mx[0].host, "mx.num.test");
	cr_expect_eq(g.mx.mx[0].pref, 20);

	/* Nothing usable left: OK with no hosts, not NODATA (OUT-32). */
	td_mx(&env, "numonly.test", &g);
	cr_expect_eq(g.mx.status, DNS_OK, "got %s",
	    dns_status_name(g.mx.status));
	cr_expect_eq(g.mx.nmx, 0);
	cr_expect(strstr(g.mx.error, "no usable MX") != NULL, "error: %s",
	    g.mx.error);
	td_env_free(&env);
}

Test(dns, cache_hit_on_second_lookup)
{
	struct td_env		 env;
	struct td_got		 g;
	struct dns_stats	 st;

	td_env_dnsmasq(&env, NULL);
	td_mx(&env, "ok.test", &g);
	dns_get_stats(env.dns, &st);
	cr_expect(st.queries == 1 && st.cache_hits == 0,
	    "after 1st: queries %ju hits %ju, want 1 0",
	    (uintmax_t)st.queries, (uintmax_t)st.cache_hits);
	td_mx(&env, "ok.test", &g);
	cr_expect_eq(g.mx.nmx, 3);
	dns_get_stats(env.dns, &st);
	cr_expect(st.queries == 1 && st.cache_hits == 1,
	    "after 2nd: queries %ju hits %ju, want 1 1",
	    (uintmax_t)st.queries, (uintmax_t)st.cache_hits);

	/* NXDOMAIN is cached too; an addr lookup is two queries. */
	td_mx(&env, "nope.test", &g);
	td_mx(&env, "nope.test", &g);
	cr_expect_eq(g.mx.status, DNS_NXDOMAIN);
	td_addr(&env, "mx1.ok.test", &g);
	td_addr(&env, "mx1.ok.test", &g);
	cr_expect_eq(g.addr.naddr, 2);
	dns_get_stats(env.dns, &st);
	cr_expect(st.queries == 4 && st.cache_hits == 4 && st.failures == 0,
	    "queries %ju hits %ju failures %ju, want 4 4 0",
	    (uintmax_t)st.queries, (uintmax_t)st.cache_hits,
	    (uintmax_t)st.failures);

	dns_cache_flush(env.dns);
	td_mx(&env, "ok.test", &g);
	dns_get_stats(env.dns, &st);
	cr_expect_eq(st.queries, 5, "flush must force a query");
	td_env_free(&env);
}

Test(dns, cache_evicts_oldest)
{
	struct dns_opts		 opts = { .cache_max = 2 };
	struct td_env		 env;
	struct td_got		 g;
	struct dns_stats	 st;

	td_env_dnsmasq(&env, &opts);
	td_mx(&env, "ok.test", &g);
	td_mx(&env, "eq.test", &g);
	td_mx(&env, "num.test", &g);	/* evicts ok.test */
	td_mx(&env, "num.test", &g);	/* hit */
	td_mx(&env, "ok.test", &g);	/* miss, evicts eq.test */
	dns_get_stats(env.dns, &st);
	cr_expect(st.queries == 4 && st.cache_hits == 1,
	    "queries %ju hits %ju, want 4 1", (uintmax_t)st.queries,
	    (uintmax_t)st.cache_hits);
	td_env_free(&env);
}

static struct dns	*td_victim;

/* A callback that frees the resolver it was called from. */
static void
td_mx_free_cb(uint64_t cookie, const struct dns_mx_result *res, void *arg)
{
	td_mx_cb(cookie, res, arg);
	dns_free(td_victim);
	td_victim = NULL;
}

Test(dns, callbacks_deferred_and_free_from_callback)
{
	struct td_env	 env;
	struct td_got	 g, other;

	td_env_dnsmasq(&env, NULL);
	td_mx(&env, "ok.test", &g);	/* asserts "not re-entrant" */
	td_mx(&env, "ok.test", &g);	/* cached: still deferred */

	/* The callback frees the resolver while another lookup waits. */
	memset(&g, 0, sizeof(g));
	memset(&other, 0, sizeof(other));
	td_victim = env.dns;
	env.dns = NULL;
	cr_assert_eq(dns_lookup_mx(td_victim, "ok.test", td_mx_free_cb, 1,
	    &g), 0);
	cr_assert_eq(dns_lookup_mx(td_victim, "eq.test", td_mx_cb, 2,
	    &other), 0);
	cr_assert_eq(dns_lookup_addr(td_victim, "mx1.ok.test", td_addr_cb, 3,
	    &other), 0);
	td_run(env.base, &g.calls, 1, 10);
	cr_assert_eq(g.calls, 1);
	cr_assert(td_victim == NULL);
	td_run(env.base, NULL, 0, 0.2);
	cr_expect_eq(other.calls, 0, "a lookup outstanding at dns_free "
	    "must not call back");
	td_env_free(&env);
}

Test(dns, rejects_invalid_names)
{
	static const char *const bad[] = {
		"", ".", "..", "a..b", ".a", "a b", "a\r\nb", "a/b",
		"[127.0.0.1]", "xn--\xc3\xa9.test",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    ".test",	/* 64-byte label */
	};
	struct event_base	*base = event_base_new();
	struct dns		*d;
	struct td_got		 g;
	char			 err[128], longname[300];
	size_t			 i;

	d = dns_new(base, NULL, 0, err, sizeof(err));
	cr_assert(d != NULL, "dns_new: %s", err);
	memset(&g, 0, sizeof(g));
	for (i = 0; i < nitems(bad); i++) {
		cr_expect_eq(dns_lookup_mx(d, bad[i], td_mx_cb, 1, &g), -1,
		    "MX \"%s\" accepted", bad[i]);
		cr_expect_eq(dns_lookup_addr(d, bad[i], td_addr_cb, 1, &g),
		    -1, "addr \"%s\" accepted", bad[i]);
	}
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	for (i = 50; i < sizeof(longname) - 1; i += 50)
		longname[i] = '.';
	cr_expect_eq(dns_lookup_mx(d, longname, td_mx_cb, 1, &g), -1);
	cr_expect_eq(dns_lookup_mx(d, NULL, td_mx_cb, 1, &g), -1);
	cr_expect_eq(dns_lookup_mx(d, "ok.test", NULL, 1, &g), -1);
	td_run(base, NULL, 0, 0.05);
	cr_expect_eq(g.calls, 0);
	dns_free(d);
	event_base_free(base);
}

Test(dns, new_rejects_bad_servers)
{
	static const struct conf_hostport bad[] = {
		{ (char *)"dns.example", 53 },
		{ (char *)"127.0.0.1:53", 0 },
		{ NULL, 53 },
		{ (char *)"127.0.0.1", 70000 },
	};
	struct event_base	*base = event_base_new();
	struct conf_hostport	 ok6 = { (char *)"::1", 5353 };
	struct dns		*d;
	char			 err[128];
	size_t			 i;

	for (i = 0; i < nitems(bad); i++) {
		err[0] = '\0';
		d = dns_new(base, &bad[i], 1, err, sizeof(err));
		cr_expect(d == NULL, "server %zu accepted", i);
		cr_expect(err[0] != '\0', "server %zu: no error text", i);
		dns_free(d);
	}
	d = dns_new(base, &ok6, 1, err, sizeof(err));
	cr_expect(d != NULL, "::1 refused: %s", err);
	dns_free(d);
	event_base_free(base);
}

Test(dns, status_names)
{
	cr_expect_str_eq(dns_status_name(DNS_OK), "OK");
	cr_expect_str_eq(dns_status_name(DNS_NODATA), "NODATA");
	cr_expect_str_eq(dns_status_name(DNS_NXDOMAIN), "NXDOMAIN");
	cr_expect_str_eq(dns_status_name(DNS_NULLMX), "NULLMX");
	cr_expect_str_eq(dns_status_name(DNS_TEMPFAIL), "TEMPFAIL");
	cr_expect_str_eq(dns_status_name((enum dns_status)99), "?");
}

/* ---- tests against the scripted responder ----------------------------- */

struct td_renv {
	struct event_base	*base;
	struct dns		*dns;
	struct td_resp		 resp;
};

static void
td_renv_start(struct td_renv *env, enum td_mode mode, int timeout_ms,
    int tries)
{
	struct conf_hostport	hp = { (char *)"127.0.0.1", 0 };
	struct dns_opts		opts = { .timeout_ms = timeout_ms,
				    .tries = tries };
	char			err[256] = "";

	memset(env, 0, sizeof(*env));
	td_resp_start(&env->resp, mode);
	hp.port = env->resp.port;
	env->base = event_base_new();
	env->dns = dns_new_opts(env->base, &hp, 1, &opts, err, sizeof(err));
	cr_assert(env->dns != NULL, "dns_new: %s", err);
}

static void
td_renv_free(struct td_renv *env)
{
	dns_free(env->dns);
	event_base_free(env->base);
	td_resp_stop(&env->resp);
}

Test(dns, broken_answers_are_tempfail)
{
	static const struct {
		enum td_mode	 mode;
		const char	*name;
		const char	*error;	/* expected in result.error */
	} cases[] = {
		{ TD_SERVFAIL, "servfail", "SERVFAIL" },
		{ TD_REFUSED, "refused", NULL },
		{ TD_SILENT, "timeout", "Timeout" },
		{ TD_SHORT, "5-byte answer", NULL },
		{ TD_MX_SHORT_RDATA, "short MX RDATA", "malformed" },
		{ TD_MX_RDATA_LONG, "MX RDATA longer than name", "malformed" },
		{ TD_MX_OVERRUN, "RDLENGTH past the end", "malformed" },
		{ TD_MX_PTR_LOOP, "compression loop", "malformed" },
		{ TD_TRUNCATED, "TC, no TCP", NULL },
		{ TD_CNAME_LOOP, "CNAME loop", "CNAME loop" },
	};
	struct td_renv		 env;
	struct td_got		 g;
	struct dns_stats	 st;
	double			 t0;
	size_t			 i;

	for (i = 0; i < nitems(cases); i++) {
		td_renv_start(&env, cases[i].mode, 150, 2);
		t0 = td_now();
		memset(&g, 0, sizeof(g));
		cr_assert_eq(dns_lookup_mx(env.dns, "broken.test", td_mx_cb,
		    9, &g), 0);
		td_run(env.base, &g.calls, 1, 10);
		cr_assert_eq(g.calls, 1, "%s: no callback", cases[i].name);
		cr_expect_eq(g.mx.status, DNS_TEMPFAIL, "%s: got %s (%s) want "
		    "TEMPFAIL", cases[i].name, dns_status_name(g.mx.status),
		    g.mx.error);
		cr_expect_eq(g.mx.nmx, 0);
		cr_expect(cases[i].error == NULL ||
		    strstr(g.mx.error, cases[i].error) != NULL,
		    "%s: error \"%s\" lacks \"%s\"", cases[i].name, g.mx.error,
		    cases[i].error);
		cr_expect(td_now() - t0 < 5, "%s: took %.1f s", cases[i].name,
		    td_now() - t0);
		cr_expect(atomic_load(&env.resp.nqueries) >= 1);

		/* Not cached: the next lookup asks again. */
		memset(&g, 0, sizeof(g));
		cr_assert_eq(dns_lookup_mx(env.dns, "broken.test", td_mx_cb,
		    9, &g), 0);
		td_run(env.base, &g.calls, 1, 10);
		dns_get_stats(env.dns, &st);
		cr_expect(st.queries == 2 && st.cache_hits == 0 &&
		    st.failures == 2, "%s: queries %ju hits %ju failures %ju, "
		    "want 2 0 2", cases[i].name, (uintmax_t)st.queries,
		    (uintmax_t)st.cache_hits, (uintmax_t)st.failures);

		/* Both halves of an addr lookup fail: TEMPFAIL, too. */
		memset(&g, 0, sizeof(g));
		cr_assert_eq(dns_lookup_addr(env.dns, "broken.test",
		    td_addr_cb, 9, &g), 0);
		td_run(env.base, &g.calls, 1, 10);
		cr_expect_eq(g.addr.status, DNS_TEMPFAIL, "%s: addr got %s",
		    cases[i].name, dns_status_name(g.addr.status));
		td_renv_free(&env);
	}
}

Test(dns, negative_ttl_from_soa)
{
	struct td_renv	 env;
	struct td_got	 g;

	td_renv_start(&env, TD_NXDOMAIN_SOA, 500, 2);
	memset(&g, 0, sizeof(g));
	cr_assert_eq(dns_lookup_mx(env.dns, "gone.test", td_mx_cb, 1, &g),
	    0);
	td_run(env.base, &g.calls, 1, 10);
	cr_assert_eq(g.mx.status, DNS_NXDOMAIN, "got %s (%s)",
	    dns_status_name(g.mx.status), g.mx.error);
	/* min(SOA TTL 7, MINIMUM 3600) */
	cr_expect_eq(g.mx.ttl, 7, "ttl got %u want 7", g.mx.ttl);
	td_renv_free(&env);
}

Test(dns, servfail_server_skipped_for_next)
{
	struct td_server	 srv;
	struct td_resp		 resp;
	struct conf_hostport	 hp[2];
	struct dns_opts		 opts = { .timeout_ms = 300, .tries = 2 };
	struct event_base	*base;
	struct dns		*d;
	struct td_got		 g;
	char			 err[256];

	td_dnsmasq_start(&srv);
	td_resp_start(&resp, TD_SERVFAIL);
	hp[0].host = (char *)"127.0.0.1";
	hp[0].port = resp.port;
	hp[1].host = (char *)"127.0.0.1";
	hp[1].port = srv.port;
	base = event_base_new();
	d = dns_new_opts(base, hp, 2, &opts, err, sizeof(err));
	cr_assert(d != NULL, "dns_new: %s", err);
	memset(&g, 0, sizeof(g));
	cr_assert_eq(dns_lookup_mx(d, "ok.test", td_mx_cb, 1, &g), 0);
	td_run(base, &g.calls, 1, 10);
	cr_expect_eq(g.mx.status, DNS_OK, "got %s (%s)",
	    dns_status_name(g.mx.status), g.mx.error);
	cr_expect_eq(g.mx.nmx, 3);
	dns_free(d);
	event_base_free(base);
	td_resp_stop(&resp);
	td_dnsmasq_stop(&srv);
}

Test(dns, free_with_queries_outstanding)
{
	struct td_renv	 env;
	struct td_got	 g1, g2;

	/* The responder never answers and c-ares would wait 10 s. */
	td_renv_start(&env, TD_SILENT, 10000, 1);
	memset(&g1, 0, sizeof(g1));
	memset(&g2, 0, sizeof(g2));
	cr_assert_eq(dns_lookup_mx(env.dns, "slow.test", td_mx_cb, 1, &g1),
	    0);
	cr_assert_eq(dns_lookup_addr(env.dns, "slow.test", td_addr_cb, 2,
	    &g2), 0);
	td_run(env.base, NULL, 0, 0.2);
	cr_expect(atomic_load(&env.resp.nqueries) >= 1, "queries not sent");
	td_renv_free(&env);
	cr_expect_eq(g1.calls + g2.calls, 0, "callbacks ran after dns_free");
}
