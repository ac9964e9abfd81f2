/*
 * test_checkdomain.c: `posternctl check-domain` against a real dnsmasq on
 * a high loopback port, with RSA and Ed25519 keys made by the openssl CLI
 * and DKIM records built here from `openssl pkey -pubout` output (not from
 * the code under test).  The records printed for missing items are parsed
 * back, served by a fresh dnsmasq, and must then pass.  Skipped when
 * dnsmasq or openssl is missing.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "checkdomain.h"
#include "conf.h"
#include "util.h"

#define TC_DNSMASQ	"/usr/sbin/dnsmasq"
#define TC_OPENSSL	"/usr/bin/openssl"
#define TC_ARGS_MAX	64

extern char	**environ;

struct tc_server {
	pid_t	pid;
	int	port;
};

/* The fixture: a temp dir with keys and the public records built from them. */
static char	 tc_dir[64];
static char	 tc_rsa_rec[1024];	/* "v=DKIM1; k=rsa; p=..." */
static char	 tc_ed_rec[256];
static char	 tc_rsa2_rec[1024];	/* another RSA key */

static int
tc_free_port(void)
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
tc_port_taken(int port)
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

/* Run argv with stdio on /dev/null (stdout to outpath if given). */
static int
tc_spawn(char *const argv[], const char *outpath)
{
	posix_spawn_file_actions_t	fa;
	pid_t				pid;
	int				rc, status;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, outpath != NULL ? outpath :
	    "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "posix_spawn %s: %s", argv[0], strerror(rc));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return (WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static bool
tc_dnsmasq_try(struct tc_server *srv, const char *const *recs, size_t n)
{
	char		*argv[TC_ARGS_MAX + 16], portarg[32];
	posix_spawn_file_actions_t fa;
	size_t		 k = 0, i;
	int		 status, waited, rc;

	srv->port = tc_free_port();
	snprintf(portarg, sizeof(portarg), "--port=%d", srv->port);
	argv[k++] = (char *)TC_DNSMASQ;
	argv[k++] = (char *)"--keep-in-foreground";
	argv[k++] = (char *)"--no-resolv";
	argv[k++] = (char *)"--no-hosts";
	argv[k++] = (char *)"--conf-file=/dev/null";
	argv[k++] = (char *)"--bind-interfaces";
	argv[k++] = (char *)"--listen-address=127.0.0.1";
	argv[k++] = portarg;
	argv[k++] = (char *)"--pid-file=";
	argv[k++] = (char *)"--log-facility=-";
	argv[k++] = (char *)"--local=/test/";
	cr_assert(n <= TC_ARGS_MAX);
	for (i = 0; i < n; i++)
		argv[k++] = (char *)recs[i];
	argv[k] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	rc = posix_spawn(&srv->pid, TC_DNSMASQ, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "posix_spawn %s: %s", TC_DNSMASQ, strerror(rc));
	for (waited = 0; waited < 500; waited++) {
		if (waitpid(srv->pid, &status, WNOHANG) == srv->pid)
			return (false);
		if (tc_port_taken(srv->port)) {
			/* Not another test's dnsmasq: ours must live on. */
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
tc_dnsmasq_start(struct tc_server *srv, const char *const *recs, size_t n)
{
	int	i;

	for (i = 0; i < 5; i++)
		if (tc_dnsmasq_try(srv, recs, n))
			return;
	cr_assert_fail("dnsmasq did not start");
}

static void
tc_dnsmasq_stop(struct tc_server *srv)
{
	int	status;

	if (srv->pid > 0) {
		kill(srv->pid, SIGTERM);
		waitpid(srv->pid, &status, 0);
		srv->pid = 0;
	}
}

/* Read a whole small file. */
static unsigned char *
tc_slurp(const char *path, size_t *len)
{
	FILE		*f;
	unsigned char	*buf = xmalloc(65536);

	cr_assert((f = fopen(path, "r")) != NULL, "%s: %s", path,
	    strerror(errno));
	*len = fread(buf, 1, 65536, f);
	fclose(f);
	return (buf);
}

/*
 * A key made by the openssl CLI, and its DKIM record from the DER public
 * key that `openssl pkey -pubout` writes: RSA publishes the whole DER,
 * Ed25519 its last 32 bytes (RFC 8463).
 */
static void
tc_keygen(const char *name, bool ed25519, char *rec, size_t reclen)
{
	char		 key[128], der[128], b64[700];
	unsigned char	*buf;
	size_t		 len;
	char *const	 gen_rsa[] = { (char *)TC_OPENSSL, (char *)"genpkey",
	    (char *)"-algorithm", (char *)"RSA", (char *)"-pkeyopt",
	    (char *)"rsa_keygen_bits:2048", (char *)"-out", key, NULL };
	char *const	 gen_ed[] = { (char *)TC_OPENSSL, (char *)"genpkey",
	    (char *)"-algorithm", (char *)"ED25519", (char *)"-out", key,
	    NULL };
	char *const	 pub[] = { (char *)TC_OPENSSL, (char *)"pkey",
	    (char *)"-in", key, (char *)"-pubout", (char *)"-outform",
	    (char *)"DER", (char *)"-out", der, NULL };

	snprintf(key, sizeof(key), "%s/%s.pem", tc_dir, name);
	snprintf(der, sizeof(der), "%s/%s.der", tc_dir, name);
	cr_assert_eq(tc_spawn(ed25519 ? gen_ed : gen_rsa, NULL), 0,
	    "openssl genpkey");
	cr_assert_eq(chmod(key, 0600), 0);
	cr_assert_eq(tc_spawn(pub, NULL), 0, "openssl pkey");
	buf = tc_slurp(der, &len);
	if (ed25519) {
		cr_assert(len > 32);
		EVP_EncodeBlock((unsigned char *)b64, buf + len - 32, 32);
	} else
		EVP_EncodeBlock((unsigned char *)b64, buf, (int)len);
	free(buf);
	snprintf(rec, reclen, "v=DKIM1; k=%s; p=%s", ed25519 ? "ed25519" :
	    "rsa", b64);
}

static void
tc_setup(void)
{
	if (access(TC_DNSMASQ, X_OK) != 0 || access(TC_OPENSSL, X_OK) != 0)
		cr_skip_test("dnsmasq or openssl not installed");
	strlcpy(tc_dir, "/tmp/test_checkdomain.XXXXXX", sizeof(tc_dir));
	cr_assert_not_null(mkdtemp(tc_dir), "mkdtemp: %s", strerror(errno));
	tc_keygen("rsa", false, tc_rsa_rec, sizeof(tc_rsa_rec));
	tc_keygen("ed", true, tc_ed_rec, sizeof(tc_ed_rec));
	tc_keygen("rsa2", false, tc_rsa2_rec, sizeof(tc_rsa2_rec));
}

static void
tc_teardown(void)
{
	char *const	rm[] = { (char *)"/bin/rm", (char *)"-rf", tc_dir,
	    NULL };

	if (tc_dir[0] != '\0')
		tc_spawn(rm, NULL);
}

/* "--txt-record=NAME,s1,s2,..." with value cut into 255-byte strings. */
static char *
tc_txt_arg(const char *name, const char *value)
{
	char	*out, *t;
	size_t	 off, len = strlen(value);

	xasprintf(&out, "--txt-record=%s", name);
	for (off = 0; off < len; off += 255) {
		xasprintf(&t, "%s,%.*s", out, (int)(len - off < 255 ?
		    len - off : 255), value + off);
		free(out);
		out = t;
	}
	return (out);
}

/* The configuration file: dns server, two dkim keys, one other domain. */
static struct conf *
tc_conf(int port, char *path, size_t pathlen)
{
	struct conf_errors	 errs;
	struct conf		*conf;
	FILE			*f;

	snprintf(path, pathlen, "%s/postern.conf", tc_dir);
	cr_assert((f = fopen(path, "w")) != NULL);
	fprintf(f, "delivery = { dns_servers = [ \"127.0.0.1:%d\" ]; };\n"
	    "dkim = (\n"
	    "  { domain = \"example.test\"; selector = \"r1\"; "
	    "key = \"%s/rsa.pem\"; },\n"
	    "  { domain = \"example.test\"; selector = \"e1\"; "
	    "key = \"%s/ed.pem\"; },\n"
	    "  { domain = \"other.test\"; selector = \"o1\"; "
	    "key = \"%s/ed.pem\"; }\n"
	    ");\n", port, tc_dir, tc_dir, tc_dir);
	fclose(f);
	memset(&errs, 0, sizeof(errs));
	conf = conf_load(path, &errs);
	cr_assert(conf != NULL, "conf_load: %s", errs.nerrors > 0 ?
	    errs.errors[0] : "?");
	conf_errors_free(&errs);
	return (conf);
}

/* checkdomain_main() with its output captured. */
static int
tc_main(struct conf *conf, const char *domain, const char *ip, bool json,
    char **out)
{
	char		*o = NULL, *e = NULL;
	size_t		 olen = 0, elen = 0;
	FILE		*fo, *fe;
	char *const	 ips[] = { (char *)ip };
	int		 rc;

	fo = open_memstream(&o, &olen);
	fe = open_memstream(&e, &elen);
	rc = checkdomain_main(conf, domain, ips, ip != NULL ? 1 : 0, json,
	    fo, fe);
	fclose(fo);
	fclose(fe);
	*out = o;
	cr_log_info("check-domain %s -> %d\n%s%s", domain, rc, o, e);
	free(e);
	return (rc);
}

/* The output line for (status, check, name), or NULL. */
static const char *
tc_line(const char *out, const char *status, const char *check,
    const char *name)
{
	char		 want[300];
	const char	*p;

	snprintf(want, sizeof(want), "%-7s %-5s %s:", status, check, name);
	for (p = out; p != NULL && *p != '\0'; p = strchr(p, '\n'),
	    p = p != NULL ? p + 1 : NULL)
		if (strncmp(p, want, strlen(want)) == 0)
			return (p);
	return (NULL);
}

/*
 * The "publish:" line after line, parsed: "NAME IN TXT "s1" "s2"..." into
 * a dnsmasq --txt-record argument, and the joined value into value.
 */
static char *
tc_publish(const char *line, char *value, size_t valuelen)
{
	const char	*p, *q, *eol;
	char		 name[300], *arg, *t;
	size_t		 n;

	value[0] = '\0';
	cr_assert((p = strchr(line, '\n')) != NULL);
	p++;
	cr_assert(strncmp(p, "        publish: ", 17) == 0, "no publish line "
	    "after %.60s", line);
	p += 17;
	eol = strchr(p, '\n');
	cr_assert((q = strstr(p, " IN TXT \"")) != NULL && q < eol);
	n = (size_t)(q - p);
	cr_assert(n < sizeof(name));
	memcpy(name, p, n);
	name[n] = '\0';
	xasprintf(&arg, "--txt-record=%s", name);
	p = q + 8;
	while (p < eol && *p == '"') {
		q = strchr(p + 1, '"');
		cr_assert(q != NULL && q < eol);
		cr_assert(q - p - 1 <= 255, "string of %d bytes",
		    (int)(q - p - 1));
		xasprintf(&t, "%s,%.*s", arg, (int)(q - p - 1), p + 1);
		free(arg);
		arg = t;
		n = strlen(value);
		cr_assert(n + (size_t)(q - p - 1) < valuelen);
		memcpy(value + n, p + 1, (size_t)(q - p - 1));
		value[n + (size_t)(q - p - 1)] = '\0';
		p = q + 1;
		if (*p == ' ')
			p++;
	}
	return (arg);
}

TestSuite(checkdomain, .init = tc_setup, .fini = tc_teardown,
    .timeout = 60);

Test(checkdomain, all_pass)
{
	struct tc_server	 srv;
	struct conf		*conf;
	char			*recs[5], *out, path[128];
	size_t			 i;

	recs[0] = tc_txt_arg("example.test", "v=spf1 ip4:192.0.2.0/24 -all");
	recs[1] = tc_txt_arg("r1._domainkey.example.test", tc_rsa_rec);
	recs[2] = tc_txt_arg("e1._domainkey.example.test", tc_ed_rec);
	recs[3] = tc_txt_arg("_dmarc.example.test",
	    "v=DMARC1; p=reject; rua=mailto:d@example.test");
	recs[4] = xstrdup("--txt-record=_dmarc.test,v=DMARC1; p=none");
	tc_dnsmasq_start(&srv, (const char *const *)recs, nitems(recs));
	conf = tc_conf(srv.port, path, sizeof(path));
	cr_expect_eq(tc_main(conf, "example.test", "192.0.2.1", false, &out),
	    0);
	cr_expect_not_null(tc_line(out, "pass", "spf", "example.test"));
	cr_expect_not_null(tc_line(out, "pass", "dkim",
	    "r1._domainkey.example.test"));
	cr_expect_not_null(tc_line(out, "pass", "dkim",
	    "e1._domainkey.example.test"));
	cr_expect_not_null(tc_line(out, "pass", "dmarc",
	    "_dmarc.example.test"));
	cr_expect_null(strstr(out, "o1._domainkey"), "other.test's key "
	    "checked");
	cr_expect_null(strstr(out, "publish:"));
	free(out);

	/* A subdomain: the parent's keys and DMARC apply, not its SPF. */
	cr_expect_eq(tc_main(conf, "Mail.Example.Test.", "192.0.2.1", false,
	    &out), 1);
	cr_expect_not_null(tc_line(out, "missing", "spf", "mail.example.test"));
	cr_expect_not_null(tc_line(out, "pass", "dkim",
	    "r1._domainkey.example.test"));
	cr_expect_not_null(tc_line(out, "pass", "dmarc",
	    "_dmarc.example.test"));
	free(out);
	conf_free(conf);
	tc_dnsmasq_stop(&srv);
	for (i = 0; i < nitems(recs); i++)
		free(recs[i]);
}

/* Nothing published: exit 1, and the printed records, served, pass. */
Test(checkdomain, missing_records_round_trip)
{
	static const struct {
		const char	*check;
		const char	*name;
	} want[] = {
		{ "spf", "example.test" },
		{ "dkim", "r1._domainkey.example.test" },
		{ "dkim", "e1._domainkey.example.test" },
		{ "dmarc", "_dmarc.example.test" },
	};
	struct tc_server	 srv, srv2;
	struct conf		*conf;
	char			*recs[nitems(want)], *out, path[128];
	char			 value[2048];
	const char		*line, *none = "--txt-record=x.test,x";
	size_t			 i;

	tc_dnsmasq_start(&srv, &none, 1);
	conf = tc_conf(srv.port, path, sizeof(path));
	cr_assert_eq(tc_main(conf, "example.test", "192.0.2.1", false, &out),
	    1);
	for (i = 0; i < nitems(want); i++) {
		line = tc_line(out, "missing", want[i].check, want[i].name);
		cr_assert_not_null(line, "no missing line for %s %s",
		    want[i].check, want[i].name);
		recs[i] = tc_publish(line, value, sizeof(value));
		if (i == 0)
			cr_expect_str_eq(value, "v=spf1 ip4:192.0.2.1 ~all");
		else if (i == 1)
			cr_expect_str_eq(value, tc_rsa_rec);
		else if (i == 2)
			cr_expect_str_eq(value, tc_ed_rec);
		else
			cr_expect_str_eq(value, "v=DMARC1; p=none; "
			    "rua=mailto:postmaster@example.test");
	}
	free(out);
	conf_free(conf);
	tc_dnsmasq_stop(&srv);

	/* Publish exactly what was printed: now everything passes. */
	tc_dnsmasq_start(&srv2, (const char *const *)recs, nitems(recs));
	conf = tc_conf(srv2.port, path, sizeof(path));
	cr_expect_eq(tc_main(conf, "example.test", "192.0.2.1", false, &out),
	    0);
	for (i = 0; i < nitems(want); i++)
		cr_expect_not_null(tc_line(out, "pass", want[i].check,
		    want[i].name), "%s %s not passing", want[i].check,
		    want[i].name);
	free(out);
	conf_free(conf);
	tc_dnsmasq_stop(&srv2);
	for (i = 0; i < nitems(recs); i++)
		free(recs[i]);
}

/* An SPF record that does not cover us: merged record, our IP first. */
Test(checkdomain, spf_merge)
{
	struct tc_server	 srv;
	struct conf		*conf;
	char			*recs[1], *out, path[128], value[512];
	const char		*line;

	recs[0] = tc_txt_arg("example.test",
	    "v=spf1 ip4:198.51.100.0/24 include:nx.test -all");
	tc_dnsmasq_start(&srv, (const char *const *)recs, nitems(recs));
	conf = tc_conf(srv.port, path, sizeof(path));
	cr_expect_eq(tc_main(conf, "example.test", "192.0.2.1", false, &out),
	    1);
	line = tc_line(out, "fail", "spf", "example.test");
	cr_assert_not_null(line);
	free(tc_publish(line, value, sizeof(value)));
	cr_expect_str_eq(value,
	    "v=spf1 ip4:192.0.2.1 ip4:198.51.100.0/24 include:nx.test -all");
	free(out);
	/* an address the record does cover passes */
	cr_expect_eq(tc_main(conf, "example.test", "198.51.100.9", false,
	    &out), 1);
	cr_expect_not_null(tc_line(out, "pass", "spf", "example.test"));
	free(out);
	conf_free(conf);
	tc_dnsmasq_stop(&srv);
	free(recs[0]);
}

/* A key that is not ours, a wrong k=, a revoked key, a bad DMARC. */
Test(checkdomain, dkim_mismatch)
{
	struct tc_server	 srv;
	struct conf		*conf;
	char			*recs[4], *out, path[128], value[1024], *ed;
	const char		*line;

	ed = xstrdup(tc_ed_rec);
	memcpy(strstr(ed, "k=ed25519"), "k=rsa;   ", 9);
	recs[0] = tc_txt_arg("r1._domainkey.example.test", tc_rsa2_rec);
	recs[1] = tc_txt_arg("e1._domainkey.example.test", ed);
	recs[2] = tc_txt_arg("_dmarc.example.test", "v=DMARC1; p=maybe");
	recs[3] = tc_txt_arg("example.test", "v=spf1 ip4:192.0.2.1 -all");
	tc_dnsmasq_start(&srv, (const char *const *)recs, nitems(recs));
	conf = tc_conf(srv.port, path, sizeof(path));
	cr_expect_eq(tc_main(conf, "example.test", "192.0.2.1", false, &out),
	    1);
	cr_expect_not_null(tc_line(out, "pass", "spf", "example.test"));
	line = tc_line(out, "fail", "dkim", "r1._domainkey.example.test");
	cr_assert_not_null(line);
	cr_expect(strstr(line, "not the public half") != NULL);
	free(tc_publish(line, value, sizeof(value)));
	cr_expect_str_eq(value, tc_rsa_rec);
	line = tc_line(out, "fail", "dkim", "e1._domainkey.example.test");
	cr_assert_not_null(line);
	cr_expect(strstr(line, "k=rsa but the configured key is ed25519") !=
	    NULL);
	line = tc_line(out, "fail", "dmarc", "_dmarc.example.test");
	cr_assert_not_null(line);
	free(tc_publish(line, value, sizeof(value)));
	cr_expect_str_eq(value,
	    "v=DMARC1; p=none; rua=mailto:postmaster@example.test");
	free(out);
	conf_free(conf);
	tc_dnsmasq_stop(&srv);
	free(recs[0]);
	free(recs[1]);
	free(recs[2]);
	free(recs[3]);
	free(ed);
}

Test(checkdomain, json_output)
{
	struct tc_server	 srv;
	struct conf		*conf;
	char			*recs[2], *out, path[128];
	json_t			*o, *items, *it;
	json_error_t		 jerr;
	size_t			 i, nspf = 0, ndkim = 0, ndmarc = 0;

	recs[0] = tc_txt_arg("example.test", "v=spf1 ip4:192.0.2.1 -all");
	recs[1] = tc_txt_arg("r1._domainkey.example.test", tc_rsa_rec);
	tc_dnsmasq_start(&srv, (const char *const *)recs, nitems(recs));
	conf = tc_conf(srv.port, path, sizeof(path));
	cr_expect_eq(tc_main(conf, "example.test", "192.0.2.1", true, &out),
	    1);
	o = json_loads(out, 0, &jerr);
	cr_assert_not_null(o, "not JSON: %s: %s", jerr.text, out);
	cr_expect_str_eq(json_string_value(json_object_get(o, "domain")),
	    "example.test");
	cr_expect(json_is_false(json_object_get(o, "ok")));
	items = json_object_get(o, "items");
	cr_assert(json_is_array(items));
	cr_expect_eq(json_array_size(items), 4);
	json_array_foreach(items, i, it) {
		const char *check = json_string_value(json_object_get(it,
		    "check"));
		const char *status = json_string_value(json_object_get(it,
		    "status"));
		const char *name = json_string_value(json_object_get(it,
		    "name"));

		cr_assert(check != NULL && status != NULL && name != NULL);
		if (strcmp(check, "spf") == 0) {
			nspf++;
			cr_expect_str_eq(status, "pass");
			cr_expect_null(json_object_get(it, "publish"));
		} else if (strcmp(check, "dkim") == 0) {
			ndkim++;
			if (strcmp(name, "r1._domainkey.example.test") == 0)
				cr_expect_str_eq(status, "pass");
			else {
				cr_expect_str_eq(name,
				    "e1._domainkey.example.test");
				cr_expect_str_eq(status, "missing");
				cr_expect_str_eq(json_string_value(
				    json_object_get(it, "record")), tc_ed_rec);
				cr_expect_eq(json_array_size(json_object_get(it,
				    "strings")), 1);
			}
		} else if (strcmp(check, "dmarc") == 0) {
			ndmarc++;
			cr_expect_str_eq(status, "missing");
			cr_expect_not_null(json_object_get(it, "publish"));
		}
	}
	cr_expect(nspf == 1 && ndkim == 2 && ndmarc == 1);
	json_decref(o);
	free(out);
	conf_free(conf);
	tc_dnsmasq_stop(&srv);
	free(recs[0]);
	free(recs[1]);
}

Test(checkdomain, usage_and_dns_errors)
{
	struct conf		*conf;
	char			*out, path[128];

	conf = tc_conf(tc_free_port(), path, sizeof(path));
	cr_expect_eq(tc_main(conf, "not a domain", "192.0.2.1", false, &out),
	    2);
	free(out);
	cr_expect_eq(tc_main(conf, "example.test", "192.0.2.300", false,
	    &out), 2);
	free(out);
	/* Nobody answers on the port: every item fails, exit 1, no hang. */
	cr_expect_eq(tc_main(conf, "example.test", "192.0.2.1", false, &out),
	    1);
	cr_expect_not_null(tc_line(out, "fail", "spf", "example.test"));
	cr_expect_not_null(tc_line(out, "fail", "dmarc",
	    "_dmarc.example.test"));
	free(out);
	conf_free(conf);
}

/* The posternctl binary itself, when the build tree has it. */
Test(checkdomain, posternctl_command)
{
	struct tc_server	 srv;
	struct conf		*conf;
	char			*recs[1], path[128], bin[512], outpath[160];
	const char		*bd = getenv("POSTERN_BUILDDIR");
	unsigned char		*buf;
	size_t			 len;
	json_t			*o;
	json_error_t		 jerr;

	snprintf(bin, sizeof(bin), "%s/src/posternctl", bd != NULL ? bd :
	    ".");
	if (access(bin, X_OK) != 0)
		cr_skip_test("%s not built", bin);
	recs[0] = tc_txt_arg("example.test", "v=spf1 ip4:192.0.2.1 -all");
	tc_dnsmasq_start(&srv, (const char *const *)recs, nitems(recs));
	conf = tc_conf(srv.port, path, sizeof(path));
	conf_free(conf);
	snprintf(outpath, sizeof(outpath), "%s/out.json", tc_dir);
	{
		char *const argv[] = { bin, (char *)"-c", path,
		    (char *)"check-domain", (char *)"example.test",
		    (char *)"--ip", (char *)"192.0.2.1", (char *)"--json",
		    NULL };
		char *const bad[] = { bin, (char *)"-c", path,
		    (char *)"check-domain", (char *)"example.test",
		    (char *)"--ip", (char *)"bogus", NULL };
		char *const noarg[] = { bin, (char *)"-c", path,
		    (char *)"check-domain", NULL };

		cr_expect_eq(tc_spawn(argv, outpath), 1);
		cr_expect_eq(tc_spawn(bad, NULL), 2);
		cr_expect_eq(tc_spawn(noarg, NULL), 2);
	}
	buf = tc_slurp(outpath, &len);
	o = json_loadb((const char *)buf, len, 0, &jerr);
	cr_assert_not_null(o, "not JSON: %s", jerr.text);
	cr_expect_eq(json_array_size(json_object_get(o, "items")), 4);
	json_decref(o);
	free(buf);
	tc_dnsmasq_stop(&srv);
	free(recs[0]);
}
