/*
 * test_spfcheck.c: SPF client authorization against a real dnsmasq on a
 * high loopback port (results, include chains, the 10-term and void
 * limits across includes, IPv6, TCP fallback, the cache, threads), and
 * against servers that refuse, stay silent or answer SERVFAIL (TEMPERROR
 * within the time budget, never pass).  Skipped when dnsmasq is missing.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "conf.h"
#include "spfcheck.h"
#include "util.h"

#define TS_DNSMASQ	"/usr/sbin/dnsmasq"

extern char	**environ;

static const char *const ts_records[] = {
	"--local-ttl=300",
	"--txt-record=pass.test,v=spf1 ip4:192.0.2.0/24 -all",
	"--txt-record=soft.test,v=spf1 ip4:192.0.2.1 ~all",
	"--txt-record=neutral.test,v=spf1 ?all",
	"--txt-record=open.test,v=spf1 +all",
	"--txt-record=other.test,some-verification=abc",
	"--host-record=nodata.test,192.0.2.99",
	/* include chain: inc -> inc2 -> inc3 */
	"--txt-record=inc.test,v=spf1 include:inc2.test -all",
	"--txt-record=inc2.test,v=spf1 ip4:198.51.100.7 include:inc3.test ~all",
	"--txt-record=inc3.test,v=spf1 ip4:203.0.113.5 -all",
	"--txt-record=incnone.test,v=spf1 include:none.test -all",
	/* include loop */
	"--txt-record=loop.test,v=spf1 include:loop2.test -all",
	"--txt-record=loop2.test,v=spf1 include:loop.test -all",
	/* 10 and 11 a: terms in one record */
	"--txt-record=ten.test,v=spf1 a:h1.test a:h2.test a:h3.test a:h4.test "
	    "a:h5.test a:h6.test a:h7.test a:h8.test a:h9.test a:h10.test "
	    "-all",
	"--txt-record=eleven.test,v=spf1 a:h1.test a:h2.test a:h3.test "
	    "a:h4.test a:h5.test a:h6.test a:h7.test a:h8.test a:h9.test "
	    "a:h10.test a:h11.test -all",
	/* 11 terms spread over an include: libspf2 alone misses this */
	"--txt-record=split.test,v=spf1 a:h1.test a:h2.test a:h3.test "
	    "include:split2.test -all",
	"--txt-record=split2.test,v=spf1 a:h4.test a:h5.test a:h6.test "
	    "a:h7.test a:h8.test a:h9.test a:h10.test -all",
	"--txt-record=splitok.test,v=spf1 a:h1.test a:h2.test "
	    "include:split2.test -all",
	"--host-record=h1.test,10.0.0.1", "--host-record=h2.test,10.0.0.2",
	"--host-record=h3.test,10.0.0.3", "--host-record=h4.test,10.0.0.4",
	"--host-record=h5.test,10.0.0.5", "--host-record=h6.test,10.0.0.6",
	"--host-record=h7.test,10.0.0.7", "--host-record=h8.test,10.0.0.8",
	"--host-record=h9.test,10.0.0.9", "--host-record=h10.test,10.0.0.10",
	"--host-record=h11.test,10.0.0.11",
	/* void lookups */
	"--txt-record=void2.test,v=spf1 a:nx1.test a:nx2.test -all",
	"--txt-record=void3.test,v=spf1 a:nx1.test a:nx2.test a:nx3.test "
	    "-all",
	/* mx, with two hosts whose address lookups are not terms */
	"--txt-record=mx.test,v=spf1 mx -all",
	"--mx-host=mx.test,m1.mx.test,10",
	"--mx-host=mx.test,m2.mx.test,20",
	"--host-record=m1.mx.test,192.0.2.70",
	"--host-record=m2.mx.test,192.0.2.77",
	"--txt-record=a.test,v=spf1 a:host.a.test -all",
	"--host-record=host.a.test,198.51.100.20",
	/* IPv6 */
	"--txt-record=v6.test,v=spf1 ip6:2001:db8::/32 -all",
	/* redirect= */
	"--txt-record=redir.test,v=spf1 redirect=pass.test",
	/* two SPF records: permerror */
	"--txt-record=two.test,v=spf1 -all",
	"--txt-record=two.test,v=spf1 +all",
	/* CNAME to a record */
	"--cname=alias.test,pass.test",
	/* TXT set larger than a UDP answer: TC, then TCP */
	"--txt-record=big.test,"
	    "v=spf1 ip4:192.0.2.1 ip4:192.0.2.2 ip4:192.0.2.3 ip4:192.0.2.4 "
	    "ip4:192.0.2.5 ip4:192.0.2.6 ip4:192.0.2.7 ip4:192.0.2.8 "
	    "ip4:192.0.2.9 ip4:192.0.2.10 ip4:192.0.2.11 ip4:192.0.2.12 "
	    "ip4:192.0.2.13 ip4:192.0.2.14,"
	    " ip4:198.51.100.1 ip4:198.51.100.2 ip4:198.51.100.3 "
	    "ip4:198.51.100.4 ip4:198.51.100.5 ip4:198.51.100.6 "
	    "ip4:198.51.100.7 ip4:198.51.100.8 ip4:198.51.100.9 "
	    "ip4:198.51.100.10 ip4:198.51.100.11 ip4:198.51.100.12,"
	    " ip4:203.0.113.1 ip4:203.0.113.2 ip4:203.0.113.3 "
	    "ip4:203.0.113.4 ip4:203.0.113.5 ip4:203.0.113.6 "
	    "ip4:203.0.113.7 ip4:203.0.113.8 ip4:203.0.113.9 "
	    "ip4:203.0.113.10 ip4:203.0.113.11 ip4:203.0.113.12,"
	    " ip4:100.64.0.1 ip4:100.64.0.2 ip4:100.64.0.3 ip4:100.64.0.4 "
	    "ip4:100.64.0.5 ip4:100.64.0.6 ip4:100.64.0.7 ip4:100.64.0.8 "
	    "ip4:100.64.0.9 ip4:100.64.0.10 ip4:100.64.0.11 -all",
	"--txt-record=big.test,filler-1-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	"--txt-record=big.test,filler-2-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	    "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
};

struct ts_server {
	pid_t		pid;		/* dnsmasq */
	int		port;
	int		fd;		/* scripted responder */
	bool		servfail;
	pthread_t	thread;
};

/* A UDP port on 127.0.0.1 that was free a moment ago. */
static int
ts_free_port(void)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);
	int			fd, port;

	fd = socket(AF_INET, SOCK_DGRAM, 0);
	cr_assert(fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return (port);
}

static bool
ts_port_taken(int port)
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
ts_dnsmasq_try(struct ts_server *srv)
{
	char		*argv[128], portarg[32];
	posix_spawn_file_actions_t fa;
	size_t		 n = 0, i;
	int		 status, waited, rc;

	srv->port = ts_free_port();
	snprintf(portarg, sizeof(portarg), "--port=%d", srv->port);
	argv[n++] = (char *)TS_DNSMASQ;
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
	for (i = 0; i < nitems(ts_records); i++)
		argv[n++] = (char *)ts_records[i];
	argv[n] = NULL;
	cr_assert(n < nitems(argv));

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&srv->pid, TS_DNSMASQ, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "posix_spawn %s: %s", TS_DNSMASQ, strerror(rc));
	for (waited = 0; waited < 500; waited++) {
		if (waitpid(srv->pid, &status, WNOHANG) == srv->pid)
			return (false);
		if (ts_port_taken(srv->port)) {
			/*
			 * Another test's dnsmasq may hold the port we were
			 * given; ours then exits at once: make sure it lives.
			 */
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
ts_dnsmasq_start(struct ts_server *srv)
{
	int	i;

	if (access(TS_DNSMASQ, X_OK) != 0)
		cr_skip_test("%s not installed", TS_DNSMASQ);
	for (i = 0; i < 5; i++)
		if (ts_dnsmasq_try(srv))
			return;
	cr_assert_fail("dnsmasq did not start");
}

static void
ts_dnsmasq_stop(struct ts_server *srv)
{
	int	status;

	if (srv->pid > 0) {
		kill(srv->pid, SIGTERM);
		waitpid(srv->pid, &status, 0);
		srv->pid = 0;
	}
}

/*
 * A scripted responder on a thread: SERVFAIL to every query, or silence
 * (it holds the port and never answers).
 */
static void *
ts_responder_main(void *arg)
{
	struct ts_server	*srv = arg;
	struct sockaddr_in	 from;
	socklen_t		 fl;
	unsigned char		 buf[512];
	ssize_t			 n;

	for (;;) {
		fl = sizeof(from);
		n = recvfrom(srv->fd, buf, sizeof(buf), 0,
		    (struct sockaddr *)&from, &fl);
		if (n <= 0)
			return (NULL);	/* shut down */
		if (n < 12 || !srv->servfail)
			continue;
		buf[2] |= 0x80;			/* QR */
		buf[3] = (buf[3] & 0xf0) | 2;	/* SERVFAIL */
		memset(buf + 6, 0, 6);		/* no records */
		sendto(srv->fd, buf, (size_t)n, 0, (struct sockaddr *)&from,
		    fl);
	}
}

static void
ts_responder_start(struct ts_server *srv, bool servfail)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof(sin);

	memset(srv, 0, sizeof(*srv));
	srv->servfail = servfail;
	srv->fd = socket(AF_INET, SOCK_DGRAM, 0);
	cr_assert(srv->fd >= 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(bind(srv->fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
	cr_assert(getsockname(srv->fd, (struct sockaddr *)&sin, &len) == 0);
	srv->port = ntohs(sin.sin_port);
	cr_assert(pthread_create(&srv->thread, NULL, ts_responder_main, srv)
	    == 0);
}

static void
ts_responder_stop(struct ts_server *srv)
{
	shutdown(srv->fd, SHUT_RDWR);
	pthread_join(srv->thread, NULL);
	close(srv->fd);
}

static struct spfcheck *
ts_checker(int port)
{
	struct conf_hostport	 hp;
	struct spfcheck		*sc;
	char			 err[256];

	hp.host = (char *)"127.0.0.1";
	hp.port = port;
	sc = spfcheck_new(&hp, 1, err, sizeof(err));
	cr_assert(sc != NULL, "spfcheck_new: %s", err);
	return (sc);
}

static void
ts_addr(const char *ip, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else {
		cr_assert(inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1, "%s",
		    ip);
		sin6->sin6_family = AF_INET6;
	}
}

static enum spfcheck_result
ts_run(struct spfcheck *sc, const char *ip, const char *domain, char *why,
    size_t whylen)
{
	struct sockaddr_storage	ss;

	ts_addr(ip, &ss);
	return (spfcheck_run(sc, (struct sockaddr *)&ss, domain, why, whylen));
}

struct ts_case {
	const char		*ip;
	const char		*domain;
	enum spfcheck_result	 want;
};

static void
ts_table(const struct ts_case *cases, size_t n)
{
	struct ts_server	 srv;
	struct spfcheck		*sc;
	enum spfcheck_result	 got;
	char			 why[256];
	size_t			 i;

	ts_dnsmasq_start(&srv);
	sc = ts_checker(srv.port);
	for (i = 0; i < n; i++) {
		got = ts_run(sc, cases[i].ip, cases[i].domain, why,
		    sizeof(why));
		cr_expect_eq(got, cases[i].want, "%s for %s: got %s, want %s "
		    "(%s)", cases[i].ip, cases[i].domain,
		    spfcheck_result_name(got),
		    spfcheck_result_name(cases[i].want), why);
	}
	spfcheck_free(sc);
	ts_dnsmasq_stop(&srv);
}

TestSuite(spfcheck, .timeout = 60);

Test(spfcheck, result_names)
{
	cr_expect_str_eq(spfcheck_result_name(SPFCHECK_PASS), "pass");
	cr_expect_str_eq(spfcheck_result_name(SPFCHECK_SOFTFAIL), "softfail");
	cr_expect_str_eq(spfcheck_result_name(SPFCHECK_TEMPERROR),
	    "temperror");
	cr_expect_str_eq(spfcheck_result_name(SPFCHECK_PERMERROR),
	    "permerror");
	cr_expect_str_eq(spfcheck_result_name((enum spfcheck_result)99),
	    "unknown");
}

Test(spfcheck, basic_results)
{
	static const struct ts_case cases[] = {
		{ "192.0.2.10", "pass.test", SPFCHECK_PASS },
		{ "192.0.2.10", "PASS.test.", SPFCHECK_PASS },
		{ "198.51.100.1", "pass.test", SPFCHECK_FAIL },
		{ "198.51.100.1", "soft.test", SPFCHECK_SOFTFAIL },
		{ "192.0.2.1", "soft.test", SPFCHECK_PASS },
		{ "198.51.100.1", "neutral.test", SPFCHECK_NEUTRAL },
		{ "198.51.100.1", "none.test", SPFCHECK_NONE },
		{ "198.51.100.1", "nodata.test", SPFCHECK_NONE },
		{ "198.51.100.1", "other.test", SPFCHECK_NONE },
		{ "198.51.100.1", "two.test", SPFCHECK_PERMERROR },
		{ "192.0.2.10", "redir.test", SPFCHECK_PASS },
		{ "198.51.100.1", "redir.test", SPFCHECK_FAIL },
		{ "192.0.2.10", "alias.test", SPFCHECK_PASS },
		{ "198.51.100.20", "a.test", SPFCHECK_PASS },
		{ "198.51.100.21", "a.test", SPFCHECK_FAIL },
		{ "192.0.2.77", "mx.test", SPFCHECK_PASS },
		{ "192.0.2.70", "mx.test", SPFCHECK_PASS },
		{ "192.0.2.71", "mx.test", SPFCHECK_FAIL },
		{ "::ffff:192.0.2.10", "pass.test", SPFCHECK_PASS },
	};

	ts_table(cases, nitems(cases));
}

Test(spfcheck, include_chains)
{
	static const struct ts_case cases[] = {
		{ "203.0.113.5", "inc.test", SPFCHECK_PASS },
		{ "198.51.100.7", "inc.test", SPFCHECK_PASS },
		{ "203.0.113.6", "inc.test", SPFCHECK_FAIL },
		/* include of a domain without a record: permerror */
		{ "203.0.113.6", "incnone.test", SPFCHECK_PERMERROR },
		{ "203.0.113.6", "loop.test", SPFCHECK_PERMERROR },
	};

	ts_table(cases, nitems(cases));
}

Test(spfcheck, dns_term_limit)
{
	static const struct ts_case cases[] = {
		{ "192.0.2.1", "ten.test", SPFCHECK_FAIL },
		{ "192.0.2.1", "eleven.test", SPFCHECK_PERMERROR },
		/* 3 + include + 7 = 11 terms across an include */
		{ "192.0.2.1", "split.test", SPFCHECK_PERMERROR },
		/* 2 + include + 7 = 10 */
		{ "192.0.2.1", "splitok.test", SPFCHECK_FAIL },
		/* the 10th term matches: still a pass */
		{ "10.0.0.10", "ten.test", SPFCHECK_PASS },
		{ "10.0.0.10", "splitok.test", SPFCHECK_PASS },
		/* a match before the limit is reached counts */
		{ "10.0.0.1", "eleven.test", SPFCHECK_PASS },
	};

	ts_table(cases, nitems(cases));
}

Test(spfcheck, void_lookup_limit)
{
	static const struct ts_case cases[] = {
		{ "192.0.2.1", "void2.test", SPFCHECK_FAIL },
		{ "192.0.2.1", "void3.test", SPFCHECK_PERMERROR },
	};

	ts_table(cases, nitems(cases));
}

Test(spfcheck, ipv6)
{
	static const struct ts_case cases[] = {
		{ "2001:db8::5", "v6.test", SPFCHECK_PASS },
		{ "2001:db8:ffff::1", "v6.test", SPFCHECK_PASS },
		{ "2001:db9::1", "v6.test", SPFCHECK_FAIL },
		{ "2001:db9::1", "pass.test", SPFCHECK_FAIL },
		{ "192.0.2.5", "v6.test", SPFCHECK_FAIL },
	};

	ts_table(cases, nitems(cases));
}

Test(spfcheck, tcp_fallback)
{
	static const struct ts_case cases[] = {
		{ "203.0.113.12", "big.test", SPFCHECK_PASS },
		{ "203.0.113.13", "big.test", SPFCHECK_FAIL },
	};
	struct ts_server	 srv;
	struct spfcheck		*sc;
	char			**txt, err[256];
	size_t			 n, i, total = 0;

	ts_table(cases, nitems(cases));
	ts_dnsmasq_start(&srv);
	sc = ts_checker(srv.port);
	cr_assert_eq(spfcheck_txt(sc, "big.test", &txt, &n, err, sizeof(err)),
	    0, "%s", err);
	cr_expect_eq(n, 3, "got %zu records", n);
	for (i = 0; i < n; i++)
		total += strlen(txt[i]);
	cr_expect(total > 1232, "got %zu bytes: not past a UDP answer", total);
	spfcheck_txt_free(txt, n);
	cr_assert_eq(spfcheck_txt(sc, "none.test", &txt, &n, err,
	    sizeof(err)), 0);
	cr_expect_eq(n, 0);
	spfcheck_txt_free(txt, n);
	spfcheck_free(sc);
	ts_dnsmasq_stop(&srv);
}

Test(spfcheck, loopback_is_not_evaluated)
{
	static const struct ts_case cases[] = {
		{ "127.0.0.1", "open.test", SPFCHECK_NEUTRAL },
		{ "::1", "open.test", SPFCHECK_NEUTRAL },
		{ "::ffff:127.0.0.2", "open.test", SPFCHECK_NEUTRAL },
		{ "192.0.2.200", "open.test", SPFCHECK_PASS },
	};

	ts_table(cases, nitems(cases));
}

Test(spfcheck, bad_input)
{
	struct spfcheck		*sc;
	struct sockaddr_storage	 ss;
	struct sockaddr		 sa;
	char			 why[128];

	sc = ts_checker(9);
	ts_addr("192.0.2.1", &ss);
	cr_expect_eq(spfcheck_run(sc, (struct sockaddr *)&ss, "", why,
	    sizeof(why)), SPFCHECK_NONE);
	cr_expect_eq(spfcheck_run(sc, (struct sockaddr *)&ss, "a..b", why,
	    sizeof(why)), SPFCHECK_NONE);
	cr_expect_eq(spfcheck_run(sc, (struct sockaddr *)&ss, "x;y.test",
	    why, sizeof(why)), SPFCHECK_NONE);
	memset(&sa, 0, sizeof(sa));
	sa.sa_family = AF_UNIX;
	cr_expect_eq(spfcheck_run(sc, &sa, "pass.test", why, sizeof(why)),
	    SPFCHECK_NONE);
	cr_expect_eq(spfcheck_cache_size(sc), 0);
	spfcheck_free(sc);
}

Test(spfcheck, bad_server)
{
	struct conf_hostport	 hp;
	char			 err[256];

	hp.host = (char *)"dns.example";
	hp.port = 53;
	cr_expect_null(spfcheck_new(&hp, 1, err, sizeof(err)));
	cr_expect(strstr(err, "dns.example") != NULL, "err %s", err);
}

/* A closed port, silence and SERVFAIL: TEMPERROR, quickly, never pass. */
Test(spfcheck, temperror_on_dns_failure)
{
	struct ts_server	 silent, sf;
	struct spfcheck		*sc;
	struct sockaddr_storage	 ss;
	enum spfcheck_result	 got, res = SPFCHECK_PASS;
	char			 why[256];
	double			 t0, took;
	int			 closed;
	size_t			 i;
	struct {
		const char	*what;
		int		 port;
	} servers[3];

	closed = ts_free_port();
	ts_responder_start(&silent, false);
	ts_responder_start(&sf, true);
	servers[0].what = "closed port";
	servers[0].port = closed;
	servers[1].what = "silent server";
	servers[1].port = silent.port;
	servers[2].what = "SERVFAIL";
	servers[2].port = sf.port;
	for (i = 0; i < nitems(servers); i++) {
		sc = ts_checker(servers[i].port);
		spfcheck_set_timeouts(sc, 200, 1000);
		t0 = util_monotonic();
		got = ts_run(sc, "192.0.2.10", "open.test", why, sizeof(why));
		took = util_monotonic() - t0;
		cr_expect_eq(got, SPFCHECK_TEMPERROR, "%s: got %s (%s)",
		    servers[i].what, spfcheck_result_name(got), why);
		cr_expect(took < 1.5, "%s: took %.2fs", servers[i].what, took);
		/* cached briefly, and still not a pass */
		ts_addr("192.0.2.10", &ss);
		cr_expect(spfcheck_cached(sc, (struct sockaddr *)&ss,
		    "open.test", &res));
		cr_expect_eq(res, SPFCHECK_TEMPERROR, "cached %s",
		    spfcheck_result_name(res));
		spfcheck_free(sc);
	}
	ts_responder_stop(&silent);
	ts_responder_stop(&sf);
}

/* A dead first server does not stop the second from answering. */
Test(spfcheck, second_server_answers)
{
	struct ts_server	 srv, sf;
	struct conf_hostport	 hp[2];
	struct spfcheck		*sc;
	enum spfcheck_result	 got;
	char			 err[256];

	ts_dnsmasq_start(&srv);
	ts_responder_start(&sf, true);
	hp[0].host = (char *)"127.0.0.1";
	hp[0].port = sf.port;
	hp[1].host = (char *)"127.0.0.1";
	hp[1].port = srv.port;
	sc = spfcheck_new(hp, 2, err, sizeof(err));
	cr_assert(sc != NULL, "%s", err);
	spfcheck_set_timeouts(sc, 500, 3000);
	got = ts_run(sc, "192.0.2.10", "pass.test", err, sizeof(err));
	cr_expect_eq(got, SPFCHECK_PASS, "got %s (%s)",
	    spfcheck_result_name(got), err);
	spfcheck_free(sc);
	ts_responder_stop(&sf);
	ts_dnsmasq_stop(&srv);
}

Test(spfcheck, cache_hit)
{
	struct ts_server	 srv;
	struct spfcheck		*sc;
	struct sockaddr_storage	 ss, other;
	enum spfcheck_result	 res = SPFCHECK_NONE;
	char			 why[256];

	ts_dnsmasq_start(&srv);
	sc = ts_checker(srv.port);
	spfcheck_set_timeouts(sc, 200, 1000);
	ts_addr("192.0.2.10", &ss);
	ts_addr("192.0.2.11", &other);
	cr_expect_not(spfcheck_cached(sc, (struct sockaddr *)&ss,
	    "pass.test", &res));
	cr_assert_eq(spfcheck_run(sc, (struct sockaddr *)&ss, "pass.test",
	    why, sizeof(why)), SPFCHECK_PASS, "%s", why);
	cr_expect_eq(spfcheck_cache_size(sc), 1);
	/* With the DNS server gone, the answer still comes from the cache. */
	ts_dnsmasq_stop(&srv);
	cr_expect(spfcheck_cached(sc, (struct sockaddr *)&ss, "Pass.Test",
	    &res));
	cr_expect_eq(res, SPFCHECK_PASS, "got %s", spfcheck_result_name(res));
	cr_expect_eq(spfcheck_run(sc, (struct sockaddr *)&ss, "pass.test",
	    why, sizeof(why)), SPFCHECK_PASS, "%s", why);
	cr_expect(strstr(why, "cached") != NULL, "why %s", why);
	/* Another client, or the same client for another domain: a miss. */
	cr_expect_not(spfcheck_cached(sc, (struct sockaddr *)&other,
	    "pass.test", &res));
	cr_expect_not(spfcheck_cached(sc, (struct sockaddr *)&ss,
	    "soft.test", &res));
	cr_expect_eq(spfcheck_run(sc, (struct sockaddr *)&other, "pass.test",
	    why, sizeof(why)), SPFCHECK_TEMPERROR, "%s", why);
	spfcheck_free(sc);
}

struct ts_thread {
	struct spfcheck		*sc;
	char			 ip[64];
	const char		*domain;
	enum spfcheck_result	 want, got;
	char			 why[256];
};

static void *
ts_thread_main(void *arg)
{
	struct ts_thread	*t = arg;

	t->got = ts_run(t->sc, t->ip, t->domain, t->why, sizeof(t->why));
	return (NULL);
}

/* One checker shared by many threads at once (the worker pool's use). */
Test(spfcheck, concurrent_threads)
{
	struct ts_server	 srv;
	struct ts_thread	 t[16];
	pthread_t		 tid[16];
	struct spfcheck		*sc;
	size_t			 i;

	ts_dnsmasq_start(&srv);
	sc = ts_checker(srv.port);
	for (i = 0; i < nitems(t); i++) {
		t[i].sc = sc;
		switch (i % 4) {
		case 0:
			snprintf(t[i].ip, sizeof(t[i].ip), "192.0.2.%zu",
			    i + 1);
			t[i].domain = "pass.test";
			t[i].want = SPFCHECK_PASS;
			break;
		case 1:
			snprintf(t[i].ip, sizeof(t[i].ip), "198.51.100.%zu",
			    i + 1);
			t[i].domain = "inc.test";
			t[i].want = SPFCHECK_FAIL;
			break;
		case 2:
			snprintf(t[i].ip, sizeof(t[i].ip), "2001:db8::%zu",
			    i + 1);
			t[i].domain = "v6.test";
			t[i].want = SPFCHECK_PASS;
			break;
		default:
			snprintf(t[i].ip, sizeof(t[i].ip), "192.0.2.%zu",
			    i + 1);
			t[i].domain = "split.test";
			t[i].want = SPFCHECK_PERMERROR;
			break;
		}
		cr_assert(pthread_create(&tid[i], NULL, ts_thread_main,
		    &t[i]) == 0);
	}
	for (i = 0; i < nitems(t); i++) {
		pthread_join(tid[i], NULL);
		cr_expect_eq(t[i].got, t[i].want, "%s %s: got %s want %s (%s)",
		    t[i].ip, t[i].domain, spfcheck_result_name(t[i].got),
		    spfcheck_result_name(t[i].want), t[i].why);
	}
	cr_expect_eq(spfcheck_cache_size(sc), nitems(t));
	spfcheck_free(sc);
	ts_dnsmasq_stop(&srv);
}
