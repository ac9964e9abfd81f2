/*
 * test_conf.c: conf_load against configurations written into a private
 * temporary directory: the SPEC section 2 example, defaults, every error
 * class with its exact FILE:LINE, several errors in one file, @include,
 * and the CIDR, host:port and TLS-policy helpers.
 *
 * In configuration texts "@D@" stands for the test's directory, so that
 * files named by the configuration can be created there.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "conf.h"
#include "util.h"

static char	test_dir[64];

static void
test_setup(void)
{
	strlcpy(test_dir, "/tmp/test_conf.XXXXXX", sizeof(test_dir));
	cr_assert_not_null(mkdtemp(test_dir));
}

static void
test_teardown(void)
{
	DIR		*d;
	struct dirent	*de;
	char		 path[512];

	/* The directory is flat: files only. */
	if ((d = opendir(test_dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", test_dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(test_dir);
}

TestSuite(conf, .init = test_setup, .fini = test_teardown);

/* text with every "@D@" replaced by the test directory; caller frees. */
static char *
test_subst(const char *text)
{
	size_t		 dl = strlen(test_dir), n = 1;
	const char	*p;
	char		*out, *o;

	for (p = text; *p != '\0'; p++)
		n += strncmp(p, "@D@", 3) == 0 ? dl : 1;
	o = out = xmalloc(n);
	for (p = text; *p != '\0';) {
		if (strncmp(p, "@D@", 3) == 0) {
			memcpy(o, test_dir, dl);
			o += dl;
			p += 3;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	return (out);
}

/* Write text (after @D@ substitution) to test_dir/name; caller frees path. */
static char *
test_write(const char *name, const char *text, mode_t mode)
{
	char	*path, *body;
	FILE	*f;

	xasprintf(&path, "%s/%s", test_dir, name);
	body = test_subst(text);
	f = fopen(path, "w");
	cr_assert_not_null(f, "fopen %s", path);
	fputs(body, f);
	fclose(f);
	chmod(path, mode);
	free(body);
	return (path);
}

static struct conf *
test_load(const char *text, struct conf_errors *errs)
{
	struct conf	*c;
	char		*path;

	memset(errs, 0, sizeof(*errs));
	path = test_write("postern.conf", text, 0644);
	c = conf_load(path, errs);
	free(path);
	return (c);
}

static bool
test_has(char **list, size_t n, const char *want)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strstr(list[i], want) != NULL)
			return (true);
	return (false);
}

static void
test_dump(const char *what, char **list, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		cr_log_info("%s[%zu]: %s", what, i, list[i]);
}

/* The SPEC section 2 example, with its files moved into the test dir. */
static const char spec_example[] =
"hostname = \"relay.example.com\";\n"
"user = \"postern\";\n"
"spool_dir = \"@D@/spool\";\n"
"control_socket = \"@D@/control.sock\";\n"
"control_socket_mode = \"0660\";\n"
"control_socket_group = \"postern\";\n"
"\n"
"listen = (\n"
"  { address = \"0.0.0.0\"; port = 587; tls = \"starttls\"; auth = \"required\"; },\n"
"  { address = \"0.0.0.0\"; port = 465; tls = \"implicit\"; auth = \"required\"; },\n"
"  { address = \"127.0.0.1\"; port = 2525; tls = \"none\"; auth = \"none\"; }\n"
");\n"
"\n"
"tls = {\n"
"  cert = \"@D@/fullchain.pem\";\n"
"  key = \"@D@/privkey.pem\";\n"
"  min_version = \"TLSv1.2\";\n"
"};\n"
"\n"
"auth = { users_file = \"@D@/users\"; };\n"
"\n"
"relay_networks = [ \"127.0.0.0/8\", \"::1/128\" ];\n"
"relay_spf_domain = \"\";\n"
"\n"
"limits = {\n"
"  max_message_size = 52428800;\n"
"  max_recipients = 100;\n"
"  max_inbound_connections = 1000;\n"
"  max_connections_per_ip = 50;\n"
"  command_timeout = 300;\n"
"  data_timeout = 600;\n"
"  max_auth_failures = 3;\n"
"};\n"
"\n"
"dkim = (\n"
"  { domain = \"example.com\"; selector = \"s2026r\"; key = \"@D@/example.com.rsa.pem\"; },\n"
"  { domain = \"example.com\"; selector = \"s2026e\"; key = \"@D@/example.com.ed25519.pem\"; }\n"
");\n"
"\n"
"delivery = {\n"
"  pool_size = 100;\n"
"  max_per_destination = 20;\n"
"  max_messages_per_connection = 100;\n"
"  idle_timeout = 30;\n"
"  connect_timeout = 30;\n"
"  tls = \"opportunistic\";\n"
"  ca_file = \"@D@/ca.crt\";\n"
"  port = 25;\n"
"  dns_servers = [ ];\n"
"  smarthost = \"\";\n"
"  smarthost_user = \"\";\n"
"  smarthost_password_file = \"\";\n"
"};\n"
"\n"
"tls_policy = (\n"
"  { domain = \"bank.example\"; tls = \"verify\"; },\n"
"  { domain = \"partner.example\"; tls = \"enforced\"; }\n"
");\n"
"\n"
"retry = { initial = 60; max_interval = 3600; factor = 2.0; max_age = 432000; };\n"
"\n"
"bounces = { enabled = true; };\n"
"\n"
"escalation = {\n"
"  command = \"@D@/open-case\";\n"
"  events = [ \"failed\", \"expired\" ];\n"
"  timeout = 30;\n"
"};\n"
"\n"
"metrics = { listen = \"127.0.0.1:9125\"; };\n";

static void
test_spec_files(void)
{
	static const char *const files[] = {
		"fullchain.pem", "privkey.pem", "users", "example.com.rsa.pem",
		"example.com.ed25519.pem", "ca.crt"
	};
	size_t	i;

	for (i = 0; i < nitems(files); i++)
		free(test_write(files[i], "x\n", 0640));
	free(test_write("open-case", "#!/bin/sh\nexit 0\n", 0755));
}

Test(conf, spec_example_parses)
{
	struct conf_errors	 errs;
	struct conf		*c;
	char			 want[128];

	test_spec_files();
	c = test_load(spec_example, &errs);
	test_dump("error", errs.errors, errs.nerrors);
	test_dump("warning", errs.warnings, errs.nwarnings);
	cr_assert_not_null(c, "the SPEC example must load");
	cr_expect_eq(errs.nerrors, 0);
	cr_expect_eq(errs.nwarnings, 0);

	cr_expect_str_eq(c->hostname, "relay.example.com");
	cr_expect_str_eq(c->user, "postern");
	cr_expect_eq(c->control_socket_mode, 0660u);
	cr_expect_str_eq(c->control_socket_group, "postern");
	cr_assert_eq(c->nlisten, 3);
	cr_expect_str_eq(c->listen[0].address, "0.0.0.0");
	cr_expect_eq(c->listen[0].port, 587);
	cr_expect_eq(c->listen[0].tls, CONF_IN_TLS_STARTTLS);
	cr_expect_eq(c->listen[0].auth, CONF_AUTH_REQUIRED);
	cr_expect_eq(c->listen[0].line, 9);
	cr_expect_eq(c->listen[1].tls, CONF_IN_TLS_IMPLICIT);
	cr_expect_eq(c->listen[2].port, 2525);
	cr_expect_eq(c->listen[2].auth, CONF_AUTH_NONE);
	cr_expect_eq(c->tls.min_version, TLS1_2_VERSION);
	snprintf(want, sizeof(want), "%s/fullchain.pem", test_dir);
	cr_expect_str_eq(c->tls.cert, want);
	cr_expect_eq(c->lines.tls_cert, 15);
	cr_expect_eq(c->lines.tls_key, 16);
	cr_expect_eq(c->lines.users_file, 20);
	cr_expect_eq(c->lines.spool_dir, 3);
	cr_expect_eq(c->lines.control_socket, 4);
	cr_expect_eq(c->lines.ca_file, 47);
	cr_expect_eq(c->lines.smarthost_password_file, 52);
	cr_expect_str_eq(c->files.tls_cert, c->path);
	cr_expect_eq(c->nrelay_networks, 2);
	cr_expect_str_eq(c->relay_spf_domain, "");
	cr_expect_eq(c->limits.max_message_size, 52428800u);
	cr_expect_eq(c->limits.max_auth_failures, 3);
	cr_assert_eq(c->ndkim, 2);
	cr_expect_str_eq(c->dkim[1].selector, "s2026e");
	cr_expect_eq(c->dkim[1].line, 37);
	cr_expect_eq(c->delivery.pool_size, 100);
	cr_expect_eq(c->delivery.tls, CONF_OUT_TLS_OPPORTUNISTIC);
	cr_expect_eq(c->delivery.ndns_servers, 0);
	cr_expect_null(c->delivery.smarthost.host);
	cr_assert_eq(c->ntls_policy, 2);
	cr_expect_eq(c->tls_policy[0].tls, CONF_OUT_TLS_VERIFY);
	cr_expect_eq(c->retry.factor, 2.0);
	cr_expect_eq(c->retry.max_age, 432000);
	cr_expect(c->bounces.enabled);
	cr_expect_eq(c->escalation.events,
	    CONF_EVENT_FAILED | CONF_EVENT_EXPIRED);
	cr_expect_eq(c->escalation.line, 65);
	cr_expect_str_eq(c->metrics.listen.host, "127.0.0.1");
	cr_expect_eq(c->metrics.listen.port, 9125);
	conf_free(c);
	conf_errors_free(&errs);
}

Test(conf, empty_file_takes_defaults)
{
	struct conf_errors	 errs;
	struct conf		*c;
	struct conf_cidr	 lo;

	c = test_load("# nothing\n", &errs);
	cr_assert_not_null(c);
	cr_expect_eq(errs.nerrors + errs.nwarnings, 0);
	cr_expect_str_eq(c->user, "postern");
	cr_expect_str_eq(c->spool_dir, "/var/spool/postern");
	cr_expect_str_eq(c->control_socket, "/run/postern/control.sock");
	cr_expect_eq(c->control_socket_mode, 0660u);
	cr_expect_str_eq(c->control_socket_group, "");
	cr_expect_not_null(c->hostname);
	cr_expect_gt(strlen(c->hostname), 0);
	cr_assert_eq(c->nlisten, 1);
	cr_expect_str_eq(c->listen[0].address, "127.0.0.1");
	cr_expect_eq(c->listen[0].port, 2525);
	cr_expect_eq(c->listen[0].tls, CONF_IN_TLS_NONE);
	cr_expect_eq(c->listen[0].auth, CONF_AUTH_NONE);
	cr_expect_str_eq(c->tls.cert, "");
	cr_expect_eq(c->tls.min_version, TLS1_2_VERSION);
	cr_expect_str_eq(c->auth.users_file, "");
	cr_assert_eq(c->nrelay_networks, 2);
	cr_assert_eq(conf_cidr_parse("127.0.0.0/8", &lo), 0);
	cr_expect_eq(memcmp(&c->relay_networks[0], &lo, sizeof(lo)), 0);
	cr_expect_eq(c->limits.max_message_size, 52428800u);
	cr_expect_eq(c->limits.max_recipients, 100);
	cr_expect_eq(c->limits.max_inbound_connections, 1000);
	cr_expect_eq(c->limits.max_connections_per_ip, 50);
	cr_expect_eq(c->limits.command_timeout, 300);
	cr_expect_eq(c->limits.data_timeout, 600);
	cr_expect_eq(c->limits.max_auth_failures, 3);
	cr_expect_eq(c->ndkim, 0);
	cr_expect_eq(c->delivery.pool_size, 100);
	cr_expect_eq(c->delivery.max_per_destination, 20);
	cr_expect_eq(c->delivery.max_messages_per_connection, 100);
	cr_expect_eq(c->delivery.idle_timeout, 30);
	cr_expect_eq(c->delivery.connect_timeout, 30);
	cr_expect_eq(c->delivery.tls, CONF_OUT_TLS_OPPORTUNISTIC);
	cr_expect_str_eq(c->delivery.ca_file,
	    "/etc/ssl/certs/ca-certificates.crt");
	cr_expect_eq(c->delivery.port, 25);
	cr_expect_eq(c->delivery.ndns_servers, 0);
	cr_expect_null(c->delivery.smarthost.host);
	cr_expect_str_eq(c->delivery.smarthost_user, "");
	cr_expect_str_eq(c->delivery.smarthost_password_file, "");
	cr_expect_eq(c->ntls_policy, 0);
	cr_expect_eq(c->retry.initial, 60);
	cr_expect_eq(c->retry.max_interval, 3600);
	cr_expect_eq(c->retry.factor, 2.0);
	cr_expect_eq(c->retry.max_age, 432000);
	cr_expect(c->bounces.enabled);
	cr_expect_str_eq(c->escalation.command, "");
	cr_expect_eq(c->escalation.events,
	    CONF_EVENT_FAILED | CONF_EVENT_EXPIRED);
	cr_expect_eq(c->escalation.timeout, 30);
	cr_expect_null(c->metrics.listen.host);
	cr_expect_eq(c->lines.tls_cert, 0);
	cr_expect_null(c->files.tls_cert);
	conf_free(c);
	conf_errors_free(&errs);
}

Test(conf, embedded_default)
{
	struct conf		*c = conf_default();
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;

	cr_assert_not_null(c);
	cr_expect_null(c->path);
	cr_expect_null(c->user, "the default stays the invoking user");
	cr_expect_str_eq(c->spool_dir, "./var/spool");
	cr_expect_str_eq(c->control_socket, "./var/run/control.sock");
	cr_assert_eq(c->nlisten, 1);
	cr_expect_str_eq(c->listen[0].address, "127.0.0.1");
	cr_expect_eq(c->listen[0].port, 2525);
	cr_expect_eq(c->listen[0].tls, CONF_IN_TLS_NONE);
	cr_expect_eq(c->delivery.tls, CONF_OUT_TLS_OPPORTUNISTIC);
	cr_expect_null(c->delivery.smarthost.host);
	cr_expect_eq(c->ndkim, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	inet_pton(AF_INET, "127.9.9.9", &sin.sin_addr);
	cr_expect(conf_cidr_match(c->relay_networks, c->nrelay_networks,
	    (struct sockaddr *)&sin));
	inet_pton(AF_INET, "10.0.0.1", &sin.sin_addr);
	cr_expect_not(conf_cidr_match(c->relay_networks, c->nrelay_networks,
	    (struct sockaddr *)&sin));
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::1", &sin6.sin6_addr);
	cr_expect(conf_cidr_match(c->relay_networks, c->nrelay_networks,
	    (struct sockaddr *)&sin6));
	conf_free(c);
	conf_free(NULL);
}

/* One bad configuration and a message it must produce. */
struct err_case {
	const char	*text;
	const char	*want;		/* substring, "postern.conf:LINE: ..." */
};

static const struct err_case err_cases[] = {
	{ "foo = 1;\n", "postern.conf:1: unknown key 'foo'" },
	{ "limits = {\n  max_foo = 1;\n};\n",
	    "postern.conf:2: unknown key 'limits.max_foo'" },
	{ "listen = (\n  { address = \"127.0.0.1\"; port = 25;\n"
	    "    bogus = 1; }\n);\n",
	    "postern.conf:3: unknown key 'listen[0].bogus'" },
	{ "dkim = ( { domain = \"a.example\"; selector = \"s\";\n"
	    "  key = \"@D@/k\"; algo = \"rsa\"; } );\n",
	    "postern.conf:2: unknown key 'dkim[0].algo'" },
	{ "tls_policy = ( { domain = \"a.example\"; tls = \"none\"; x = 1; } );\n",
	    "postern.conf:1: unknown key 'tls_policy[0].x'" },
	{ "\nlimits = { max_recipients = \"100\"; };\n",
	    "postern.conf:2: limits.max_recipients: expected an integer" },
	{ "delivery = {\n  pool_size = 500;\n};\n",
	    "postern.conf:2: delivery.pool_size: 500 is out of range (1..100)" },
	{ "limits = { max_message_size = 1000; };\n",
	    "postern.conf:1: limits.max_message_size: 1000 is out of range "
	    "(1024..2147483647)" },
	{ "limits = {\n\n  max_message_size = 4294968320;\n};\n",
	    "postern.conf:3: integer 4294968320 does not fit in 32 bits" },
	{ "limits = { max_message_size = 3000000000L; };\n",
	    "postern.conf:1: limits.max_message_size: 3000000000 is out of "
	    "range" },
	{ "delivery = { tls = \"maybe\"; };\n",
	    "postern.conf:1: delivery.tls: 'maybe' is not one of none, "
	    "opportunistic, enforced, verify" },
	{ "delivery = { tls = 1; };\n",
	    "postern.conf:1: delivery.tls: expected a string" },
	{ "tls = { min_version = \"TLSv1.1\"; };\n",
	    "tls.min_version: 'TLSv1.1' is not one of TLSv1.2, TLSv1.3" },
	{ "listen = ( { address = \"::1\"; port = 25; auth = \"maybe\"; } );\n",
	    "postern.conf:1: listen[0].auth: 'maybe' is not one of none, "
	    "optional, required" },
	{ "control_socket_mode = \"0860\";\n",
	    "postern.conf:1: control_socket_mode: '0860' is not an octal mode" },
	{ "control_socket_mode = \"1777\";\n",
	    "control_socket_mode: '1777' is not an octal mode" },
	{ "control_socket_mode = 0660;\n",
	    "postern.conf:1: control_socket_mode: expected a string" },
	{ "relay_networks = [\n  \"10.0.0.0/33\" ];\n",
	    "postern.conf:2: relay_networks: '10.0.0.0/33' is not an IPv4 or "
	    "IPv6 network" },
	{ "relay_networks = [ \"10.1.0.0/8\" ];\n",
	    "relay_networks: '10.1.0.0/8' has host bits set; the network is "
	    "10.0.0.0/8" },
	{ "relay_networks = \"10.0.0.0/8\";\n",
	    "postern.conf:1: relay_networks: expected an array" },
	{ "relay_networks = [ 10 ];\n",
	    "postern.conf:1: relay_networks[0]: expected a string" },
	{ "listen = ( { address = \"localhost\"; port = 25; } );\n",
	    "postern.conf:1: listen[0].address: 'localhost' is not a numeric "
	    "IPv4 or IPv6 address" },
	{ "listen = ( { address = \"127.0.0.1\"; port = 0; } );\n",
	    "postern.conf:1: listen[0].port: 0 is out of range (1..65535)" },
	{ "listen = (\n  { address = \"127.0.0.1\"; }\n);\n",
	    "postern.conf:2: listen[0]: missing 'port'" },
	{ "listen = { address = \"127.0.0.1\"; port = 25; };\n",
	    "postern.conf:1: listen: expected a list" },
	{ "listen = (\n { address = \"127.0.0.1\"; port = 25; },\n"
	    " { address = \"127.0.0.1\"; port = 25; }\n);\n",
	    "postern.conf:3: listen[1]: 127.0.0.1 port 25 is already used by "
	    "the listener at line 2" },
	{ "listen = (\n { address = \"::1\"; port = 25; },\n"
	    " { address = \"0:0::1\"; port = 25; }\n);\n",
	    "postern.conf:3: listen[1]: 0:0::1 port 25 is already used" },
	{ "listen = (\n  { address = \"127.0.0.1\"; port = 587; "
	    "tls = \"starttls\"; }\n);\n",
	    "postern.conf:2: listen[0]: tls \"starttls\" needs tls.cert and "
	    "tls.key" },
	{ "tls = {\n  cert = \"/nonexistent/cert.pem\";\n};\n",
	    "postern.conf:2: tls.cert: /nonexistent/cert.pem: No such file or "
	    "directory" },
	{ "auth = { users_file = \"@D@\"; };\n",
	    "postern.conf:1: auth.users_file: " },
	{ "dkim = ( { domain = \"exa_mple.com\"; selector = \"s\"; "
	    "key = \"@D@/k\"; } );\n",
	    "postern.conf:1: dkim[0].domain: 'exa_mple.com' is not a valid "
	    "domain name" },
	{ "dkim = ( { domain = \"example.com\"; selector = \"-s\"; "
	    "key = \"@D@/k\"; } );\n",
	    "dkim[0].selector: '-s' is not a valid selector" },
	{ "dkim = (\n  { domain = \"example.com\"; selector = \"s\"; }\n);\n",
	    "postern.conf:2: dkim[0]: missing 'key'" },
	{ "dkim = (\n { domain = \"example.com\"; selector = \"s\"; "
	    "key = \"@D@/nokey.pem\"; }\n);\n",
	    "postern.conf:2: dkim[0].key: " },
	{ "tls_policy = (\n { domain = \"bank.example\"; tls = \"verify\"; },\n"
	    " { domain = \"BANK.example\"; tls = \"none\"; }\n);\n",
	    "postern.conf:3: tls_policy[1]: duplicate domain 'bank.example'" },
	{ "tls_policy = ( { domain = \"bank.example\"; tls = \"strict\"; } );\n",
	    "tls_policy[0].tls: 'strict' is not one of none, opportunistic" },
	{ "tls_policy = ( { tls = \"none\"; } );\n",
	    "postern.conf:1: tls_policy[0]: missing 'domain'" },
	{ "hostname = \"-bad.example\";\n",
	    "postern.conf:1: hostname: '-bad.example' is not a valid domain "
	    "name" },
	{ "hostname = \"\";\n", "hostname: '' must not be empty" },
	{ "user = \"\";\n", "postern.conf:1: user: '' must not be empty" },
	{ "delivery = {\n  pool_size = 10;\n  max_per_destination = 30;\n};\n",
	    "postern.conf:3: delivery.max_per_destination (30) must not exceed "
	    "delivery.pool_size (10)" },
	{ "delivery = {\n  pool_size = 10;\n};\n",
	    "postern.conf:2: delivery.max_per_destination (20) must not exceed "
	    "delivery.pool_size (10)" },
	{ "retry = {\n  initial = 600;\n  max_interval = 60;\n};\n",
	    "postern.conf:3: retry.max_interval (60) must not be less than "
	    "retry.initial (600)" },
	{ "retry = { factor = 0.5; };\n",
	    "postern.conf:1: retry.factor: 0.5 is out of range (1..10)" },
	{ "retry = { factor = \"2\"; };\n",
	    "postern.conf:1: retry.factor: expected a number" },
	{ "retry = { max_age = 59; };\n",
	    "retry.max_age: 59 is out of range (60..31536000)" },
	{ "bounces = { enabled = 1; };\n",
	    "postern.conf:1: bounces.enabled: expected a boolean" },
	{ "escalation = {\n  command = \"open-case\";\n};\n",
	    "postern.conf:2: escalation.command: open-case: not an absolute "
	    "path" },
	{ "escalation = { command = \"@D@/missing-hook\"; };\n",
	    "escalation.command: " },
	{ "escalation = { events = [ \"failed\", \"bounced\" ]; };\n",
	    "postern.conf:1: escalation.events: 'bounced' is not one of failed, "
	    "expired" },
	{ "escalation = { timeout = 0; };\n",
	    "escalation.timeout: 0 is out of range (1..3600)" },
	{ "delivery = {\n  smarthost = \"[relay.example]:587\";\n"
	    "  smarthost_user = \"me\";\n};\n",
	    "postern.conf:3: delivery.smarthost_user needs "
	    "delivery.smarthost_password_file" },
	{ "delivery = { dns_servers = [ \"ns.example\" ]; };\n",
	    "postern.conf:1: delivery.dns_servers: 'ns.example' is not a "
	    "numeric IPv4 or IPv6 address" },
	{ "delivery = { dns_servers = [ \"127.0.0.1:0\" ]; };\n",
	    "delivery.dns_servers: '0' is not a port (1..65535)" },
	{ "delivery = { smarthost = \"bad_host:25\"; };\n",
	    "postern.conf:1: delivery.smarthost: 'bad_host' is not an IP "
	    "address or a host name" },
	{ "metrics = { listen = \"127.0.0.1\"; };\n",
	    "postern.conf:1: metrics.listen: '127.0.0.1': a port is required" },
	{ "delivery = { tls = \"verify\";\n  ca_file = \"@D@/none.crt\"; };\n",
	    "postern.conf:2: delivery.ca_file: " },
	{ "tls_policy = ( { domain = \"b.example\"; tls = \"verify\"; } );\n"
	    "delivery = {\n  ca_file = \"@D@/none.crt\";\n};\n",
	    "postern.conf:3: delivery.ca_file: " },
	{ "limits = {\n  max_recipients = ;\n};\n",
	    "postern.conf:2: syntax error" },
	{ "limits = { max_recipients = 5; };\nlimits = { };\n",
	    "postern.conf:2: duplicate setting name" },
	{ "limits = 5;\n", "postern.conf:1: limits: expected a group" },
	{ "control_socket = \"/run/postern/"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\";\n",
	    "postern.conf:1: control_socket: '/run/postern/aaaa" },
	{ "relay_spf_domain = \"spf..example\";\n",
	    "relay_spf_domain: 'spf..example' is not a valid domain name" },
};

/*
 * A loop rather than ParameterizedTest: Criterion runs each test in a
 * re-executed child, where pointers inside a parameter array (the case
 * strings) are not valid.
 */
Test(conf, reports_error_at_line)
{
	struct conf_errors	 errs;
	struct conf		*c;
	size_t			 i;

	for (i = 0; i < nitems(err_cases); i++) {
		const struct err_case *tc = &err_cases[i];

		c = test_load(tc->text, &errs);
		test_dump("error", errs.errors, errs.nerrors);
		cr_expect_null(c, "case %zu: load must fail for: %s", i,
		    tc->text);
		cr_expect(test_has(errs.errors, errs.nerrors, tc->want),
		    "case %zu: got %zu errors (first: %s), want one containing: "
		    "%s", i, errs.nerrors, errs.nerrors > 0 ? errs.errors[0] :
		    "none", tc->want);
		conf_free(c);
		conf_errors_free(&errs);
	}
}

Test(conf, each_message_starts_with_the_file)
{
	struct conf_errors	 errs;
	struct conf		*c;
	char			 prefix[128];
	size_t			 i;

	c = test_load("a = 1;\nb = 2;\nlimits = { c = 3; };\n", &errs);
	cr_assert_null(c);
	snprintf(prefix, sizeof(prefix), "%s/postern.conf:", test_dir);
	for (i = 0; i < errs.nerrors; i++)
		cr_expect_eq(strncmp(errs.errors[i], prefix, strlen(prefix)), 0,
		    "got %s, want prefix %s", errs.errors[i], prefix);
	conf_errors_free(&errs);
}

Test(conf, collects_every_error)
{
	struct conf_errors	 errs;
	struct conf		*c;
	static const char *const want[] = {
		"postern.conf:1: unknown key 'bogus'",
		"postern.conf:3: limits.max_recipients: 0 is out of range",
		"postern.conf:4: limits.data_timeout: expected an integer",
		"postern.conf:7: delivery.tls: 'sometimes' is not one of",
		"postern.conf:9: relay_networks: '300.0.0.0/8' is not",
		"postern.conf:10: tls.key: /nonexistent/key.pem: No such file",
	};
	size_t	i;

	c = test_load(
	    "bogus = 1;\n"
	    "limits = {\n"
	    "  max_recipients = 0;\n"
	    "  data_timeout = \"10m\";\n"
	    "};\n"
	    "delivery = {\n"
	    "  tls = \"sometimes\";\n"
	    "};\n"
	    "relay_networks = [ \"300.0.0.0/8\" ];\n"
	    "tls = { key = \"/nonexistent/key.pem\"; };\n", &errs);
	test_dump("error", errs.errors, errs.nerrors);
	cr_expect_null(c);
	cr_expect_eq(errs.nerrors, nitems(want), "got %zu errors, want %zu",
	    errs.nerrors, nitems(want));
	for (i = 0; i < nitems(want); i++)
		cr_expect(test_has(errs.errors, errs.nerrors, want[i]),
		    "missing: %s", want[i]);
	conf_errors_free(&errs);
}

Test(conf, error_list_is_capped)
{
	struct conf_errors	 errs;
	struct conf		*c;
	char			*text = NULL, *next;
	int			 i;

	text = xstrdup("");
	for (i = 0; i < 500; i++) {
		xasprintf(&next, "%sk%d = 1;\n", text, i);
		free(text);
		text = next;
	}
	c = test_load(text, &errs);
	free(text);
	cr_expect_null(c);
	cr_expect_eq(errs.nerrors, CONF_ERRORS_MAX);
	cr_expect(strstr(errs.errors[CONF_ERRORS_MAX - 1], "too many errors")
	    != NULL, "got %s", errs.errors[CONF_ERRORS_MAX - 1]);
	conf_errors_free(&errs);
}

/* Warnings do not fail the load. */
struct warn_case {
	const char	*text;
	const char	*want;
};

static const struct warn_case warn_cases[] = {
	{ "relay_networks = [\n  \"127.0.0.0/8\",\n  \"0.0.0.0/0\" ];\n",
	    "postern.conf:3: relay_networks: '0.0.0.0/0' matches every "
	    "address: this is an open relay" },
	{ "relay_networks = [ \"::/0\" ];\n",
	    "postern.conf:1: relay_networks: '::/0' matches every address" },
	{ "retry = {\n  max_interval = 7200;\n  max_age = 3600;\n};\n",
	    "postern.conf:2: retry.max_interval (7200) exceeds retry.max_age "
	    "(3600)" },
	{ "listen = (\n { address = \"127.0.0.1\"; port = 2525; "
	    "auth = \"required\"; }\n);\n",
	    "postern.conf:2: listen[0]: auth \"required\" but auth.users_file "
	    "is not set" },
	{ "listen = ( );\n", "postern.conf:1: listen: no listeners" },
};

Test(conf, warns)
{
	struct conf_errors	 errs;
	struct conf		*c;
	size_t			 i;

	for (i = 0; i < nitems(warn_cases); i++) {
		const struct warn_case *tc = &warn_cases[i];

		c = test_load(tc->text, &errs);
		test_dump("error", errs.errors, errs.nerrors);
		cr_expect_not_null(c, "case %zu: a warning alone must not fail "
		    "the load", i);
		cr_expect_eq(errs.nerrors, 0);
		cr_expect(test_has(errs.warnings, errs.nwarnings, tc->want),
		    "case %zu: got %zu warnings (first: %s), want one "
		    "containing: %s", i, errs.nwarnings, errs.nwarnings > 0 ?
		    errs.warnings[0] : "none", tc->want);
		conf_free(c);
		conf_errors_free(&errs);
	}
}

Test(conf, include_names_the_included_file)
{
	struct conf_errors	 errs;
	struct conf		*c;
	char			 want[256];

	free(test_write("limits.conf",
	    "limits = {\n  max_recipients = 7;\n  max_bogus = 1;\n};\n", 0644));
	c = test_load("hostname = \"a.example\";\n@include \"limits.conf\"\n"
	    "nope = 1;\n", &errs);
	test_dump("error", errs.errors, errs.nerrors);
	cr_expect_null(c);
	snprintf(want, sizeof(want), "%s/limits.conf:3: unknown key "
	    "'limits.max_bogus'", test_dir);
	cr_expect(test_has(errs.errors, errs.nerrors, want), "want %s", want);
	snprintf(want, sizeof(want), "%s/postern.conf:3: unknown key 'nope'",
	    test_dir);
	cr_expect(test_has(errs.errors, errs.nerrors, want), "want %s", want);
	conf_errors_free(&errs);
}

Test(conf, include_values_and_syntax_errors)
{
	struct conf_errors	 errs;
	struct conf		*c;
	char			 want[256];

	free(test_write("cert.pem", "x\n", 0644));
	free(test_write("tls.conf", "tls = {\n  cert = \"@D@/cert.pem\";\n"
	    "};\n", 0644));
	c = test_load("@include \"tls.conf\"\nlimits = { max_recipients = 7; "
	    "};\n", &errs);
	test_dump("error", errs.errors, errs.nerrors);
	cr_assert_not_null(c);
	cr_expect_eq(c->limits.max_recipients, 7);
	cr_expect_eq(c->lines.tls_cert, 2);
	snprintf(want, sizeof(want), "%s/tls.conf", test_dir);
	cr_expect_str_eq(c->files.tls_cert, want);
	conf_free(c);
	conf_errors_free(&errs);

	free(test_write("broken.conf", "\n\nlimits = { ;\n", 0644));
	c = test_load("@include \"broken.conf\"\n", &errs);
	test_dump("error", errs.errors, errs.nerrors);
	cr_expect_null(c);
	snprintf(want, sizeof(want), "%s/broken.conf:3: syntax error",
	    test_dir);
	cr_expect(test_has(errs.errors, errs.nerrors, want), "want %s", want);
	conf_errors_free(&errs);
}

Test(conf, missing_config_file)
{
	struct conf_errors	 errs;
	char			 path[128], want[160];

	memset(&errs, 0, sizeof(errs));
	snprintf(path, sizeof(path), "%s/nope.conf", test_dir);
	cr_expect_null(conf_load(path, &errs));
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	cr_assert_eq(errs.nerrors, 1);
	cr_expect_str_eq(errs.errors[0], want);
	conf_errors_free(&errs);

	cr_expect_null(conf_load(test_dir, &errs));
	cr_expect(test_has(errs.errors, errs.nerrors, "not a regular file"));
	conf_errors_free(&errs);
	cr_expect_null(conf_load(path, NULL), "errs may be NULL");
}

Test(conf, escalation_command_checks)
{
	static const struct {
		mode_t		 mode;
		const char	*want;		/* NULL = accepted */
	} cases[] = {
		{ 0755, NULL },
		{ 0700, NULL },
		{ 0644, "not executable" },
		{ 0775, "is group or world writable (mode 0775)" },
		{ 0757, "is group or world writable (mode 0757)" },
	};
	struct conf_errors	 errs;
	struct conf		*c;
	size_t			 i;

	for (i = 0; i < nitems(cases); i++) {
		free(test_write("hook", "#!/bin/sh\n", cases[i].mode));
		c = test_load("escalation = {\n  command = \"@D@/hook\";\n"
		    "  events = [ \"expired\" ];\n};\n", &errs);
		test_dump("error", errs.errors, errs.nerrors);
		if (cases[i].want == NULL) {
			cr_expect_not_null(c, "mode %o", cases[i].mode);
			if (c != NULL)
				cr_expect_eq(c->escalation.events,
				    CONF_EVENT_EXPIRED);
		} else {
			cr_expect_null(c, "mode %o", cases[i].mode);
			cr_expect(test_has(errs.errors, errs.nerrors,
			    cases[i].want), "mode %o: want %s", cases[i].mode,
			    cases[i].want);
			cr_expect(test_has(errs.errors, errs.nerrors,
			    "postern.conf:2: escalation.command: "));
		}
		conf_free(c);
		conf_errors_free(&errs);
	}
}

Test(conf, ca_file_only_checked_for_verify)
{
	struct conf_errors	 errs;
	struct conf		*c;

	c = test_load("delivery = { tls = \"enforced\"; "
	    "ca_file = \"/nonexistent/ca.crt\"; };\n", &errs);
	cr_expect_not_null(c);
	cr_expect_eq(errs.nerrors, 0);
	conf_free(c);
	conf_errors_free(&errs);
}

Test(conf, values_and_types)
{
	struct conf_errors	 errs;
	struct conf		*c;

	free(test_write("pw", "secret\n", 0600));
	c = test_load(
	    "hostname = \"Relay.Example.COM\";\n"
	    "control_socket_mode = \"660\";\n"
	    "tls = { min_version = \"TLSv1.3\"; };\n"
	    "limits = { max_message_size = 2147483647L; };\n"
	    "retry = { factor = 3; initial = 0x10; };\n"
	    "bounces = { enabled = false; };\n"
	    "relay_networks = ( \"192.0.2.0/24\", \"2001:db8::/32\" );\n"
	    "relay_spf_domain = \"SPF.Example.com\";\n"
	    "listen = ( { address = \"*\"; port = 25; },\n"
	    "  { address = \"::\"; port = 25; } );\n"
	    "delivery = {\n"
	    "  dns_servers = [ \"127.0.0.1:5353\", \"::1\", \"[::1]:54\" ];\n"
	    "  smarthost = \"[Mail.Example.net]:587\";\n"
	    "  smarthost_user = \"me\";\n"
	    "  smarthost_password_file = \"@D@/pw\";\n"
	    "  tls = \"none\";\n"
	    "};\n"
	    "dkim = ( { domain = \"Example.COM\"; selector = \"sel.v1\"; "
	    "key = \"@D@/pw\"; } );\n"
	    "escalation = { events = [ ]; };\n"
	    "metrics = { listen = \"[::1]:9125\"; };\n", &errs);
	test_dump("error", errs.errors, errs.nerrors);
	test_dump("warning", errs.warnings, errs.nwarnings);
	cr_assert_not_null(c);
	cr_expect_str_eq(c->hostname, "relay.example.com");
	cr_expect_eq(c->control_socket_mode, 0660u);
	cr_expect_eq(c->tls.min_version, TLS1_3_VERSION);
	cr_expect_eq(c->limits.max_message_size, 2147483647u);
	cr_expect_eq(c->retry.factor, 3.0);
	cr_expect_eq(c->retry.initial, 16);
	cr_expect_not(c->bounces.enabled);
	cr_expect_eq(c->nrelay_networks, 2);
	cr_expect_str_eq(c->relay_spf_domain, "spf.example.com");
	cr_assert_eq(c->nlisten, 2);
	cr_expect_str_eq(c->listen[0].address, "*");
	cr_assert_eq(c->delivery.ndns_servers, 3);
	cr_expect_str_eq(c->delivery.dns_servers[0].host, "127.0.0.1");
	cr_expect_eq(c->delivery.dns_servers[0].port, 5353);
	cr_expect_str_eq(c->delivery.dns_servers[1].host, "::1");
	cr_expect_eq(c->delivery.dns_servers[1].port, 53);
	cr_expect_eq(c->delivery.dns_servers[2].port, 54);
	cr_expect_str_eq(c->delivery.smarthost.host, "mail.example.net");
	cr_expect_eq(c->delivery.smarthost.port, 587);
	cr_expect(c->delivery.smarthost_literal);
	cr_expect_eq(c->delivery.tls, CONF_OUT_TLS_NONE);
	cr_assert_eq(c->ndkim, 1);
	cr_expect_str_eq(c->dkim[0].domain, "example.com");
	cr_expect_eq(c->escalation.events, 0u);
	cr_expect_str_eq(c->metrics.listen.host, "::1");
	cr_expect_eq(c->metrics.listen.port, 9125);
	conf_free(c);
	conf_errors_free(&errs);
}

struct cidr_case {
	const char	*in;
	int		 ok;
	int		 family;
	int		 prefix;
	const char	*net;		/* canonical network address */
};

static const struct cidr_case cidr_cases[] = {
	{ "127.0.0.0/8", 0, AF_INET, 8, "127.0.0.0" },
	{ "192.0.2.1", 0, AF_INET, 32, "192.0.2.1" },
	{ "0.0.0.0/0", 0, AF_INET, 0, "0.0.0.0" },
	{ "10.0.0.0/32", 0, AF_INET, 32, "10.0.0.0" },
	{ "::1/128", 0, AF_INET6, 128, "::1" },
	{ "2001:db8::/32", 0, AF_INET6, 32, "2001:db8::" },
	{ "::/0", 0, AF_INET6, 0, "::" },
	{ "::ffff:10.0.0.0/104", 0, AF_INET, 8, "10.0.0.0" },
	{ "10.0.0.0/33", -1, 0, 0, NULL },
	{ "10.0.0.1/8", -1, 0, 0, NULL },
	{ "10.0.0.0/", -1, 0, 0, NULL },
	{ "10.0.0.0/-1", -1, 0, 0, NULL },
	{ "10.0.0.0/8x", -1, 0, 0, NULL },
	{ "/8", -1, 0, 0, NULL },
	{ "", -1, 0, 0, NULL },
	{ "010.0.0.0/8", -1, 0, 0, NULL },
	{ "2001:db8::1/32", -1, 0, 0, NULL },
	{ "::1/129", -1, 0, 0, NULL },
	{ "example.com/8", -1, 0, 0, NULL },
	{ "10.0.0.0/0008", -1, 0, 0, NULL },
};

Test(conf, cidr_parse)
{
	struct conf_cidr	 c;
	char			 buf[INET6_ADDRSTRLEN];
	size_t			 i;
	int			 got;

	for (i = 0; i < nitems(cidr_cases); i++) {
		const struct cidr_case *tc = &cidr_cases[i];

		got = conf_cidr_parse(tc->in, &c);
		cr_expect_eq(got, tc->ok, "%s: got %d, want %d", tc->in, got,
		    tc->ok);
		if (got != 0 || tc->ok != 0)
			continue;
		cr_expect_eq(c.family, tc->family, "%s: family", tc->in);
		cr_expect_eq(c.prefix, tc->prefix, "%s: got /%d, want /%d",
		    tc->in, c.prefix, tc->prefix);
		inet_ntop(c.family, c.addr, buf, sizeof(buf));
		cr_expect_str_eq(buf, tc->net, "%s: got %s, want %s", tc->in,
		    buf, tc->net);
	}
}

struct match_case {
	const char	*addr;
	bool		 want;
};

Test(conf, cidr_match_v4_v6_and_mapped)
{
	static const char *const nets[] = {
		"10.0.0.0/8", "192.0.2.128/25", "2001:db8:1::/48", "::1/128",
		"198.51.100.7/32"
	};
	static const struct match_case cases[] = {
		{ "10.1.2.3", true }, { "11.0.0.1", false },
		{ "192.0.2.200", true }, { "192.0.2.127", false },
		{ "198.51.100.7", true }, { "198.51.100.8", false },
		{ "2001:db8:1:ffff::1", true }, { "2001:db8:2::1", false },
		{ "::1", true }, { "::2", false },
		{ "::ffff:10.9.8.7", true }, { "::ffff:11.0.0.1", false },
		{ "::ffff:192.0.2.129", true },
		/* IPv4-compatible (deprecated) is not mapped. */
		{ "::10.1.2.3", false },
	};
	struct conf_cidr	 c[nitems(nets)];
	struct sockaddr_storage	 ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	size_t			 i;
	bool			 got;

	for (i = 0; i < nitems(nets); i++)
		cr_assert_eq(conf_cidr_parse(nets[i], &c[i]), 0, "%s", nets[i]);
	for (i = 0; i < nitems(cases); i++) {
		memset(&ss, 0, sizeof(ss));
		if (inet_pton(AF_INET, cases[i].addr, &sin->sin_addr) == 1)
			sin->sin_family = AF_INET;
		else {
			cr_assert_eq(inet_pton(AF_INET6, cases[i].addr,
			    &sin6->sin6_addr), 1);
			sin6->sin6_family = AF_INET6;
		}
		got = conf_cidr_match(c, nitems(c), (struct sockaddr *)&ss);
		cr_expect_eq(got, cases[i].want, "%s: got %d, want %d",
		    cases[i].addr, got, cases[i].want);
	}
	/* A mapped network matches IPv4 clients too (normalised to IPv4). */
	cr_assert_eq(conf_cidr_parse("::ffff:203.0.113.0/120", &c[0]), 0);
	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	inet_pton(AF_INET, "203.0.113.9", &sin->sin_addr);
	cr_expect(conf_cidr_match(c, 1, (struct sockaddr *)&ss));
	ss.ss_family = AF_UNIX;
	cr_expect_not(conf_cidr_match(c, 1, (struct sockaddr *)&ss));
	cr_expect_not(conf_cidr_match(c, 1, NULL));
	cr_expect_not(conf_cidr_match(c, 0, (struct sockaddr *)&ss));
}

struct hp_case {
	const char	*in;
	int		 defport;
	bool		 numeric;
	int		 ok;
	const char	*host;
	int		 port;
	bool		 literal;
};

static const struct hp_case hp_cases[] = {
	{ "192.0.2.1", 53, true, 0, "192.0.2.1", 53, false },
	{ "192.0.2.1:5353", 53, true, 0, "192.0.2.1", 5353, false },
	{ "::1", 53, true, 0, "::1", 53, false },
	{ "[::1]:5353", 53, true, 0, "::1", 5353, true },
	{ "[2001:db8::1]", 53, true, 0, "2001:db8::1", 53, true },
	{ "mx.example.net:587", 25, false, 0, "mx.example.net", 587, false },
	{ "MX.Example.NET", 25, false, 0, "mx.example.net", 25, false },
	{ "[relay.example]:2525", 25, false, 0, "relay.example", 2525, true },
	{ "[relay.example]", 25, false, 0, "relay.example", 25, true },
	{ "127.0.0.1:9125", 0, true, 0, "127.0.0.1", 9125, false },
	{ "127.0.0.1", 0, true, -1, NULL, 0, false },
	{ "mx.example.net", 53, true, -1, NULL, 0, false },
	{ "192.0.2.1:0", 53, true, -1, NULL, 0, false },
	{ "192.0.2.1:65536", 53, true, -1, NULL, 0, false },
	{ "192.0.2.1:", 53, true, -1, NULL, 0, false },
	{ "192.0.2.1:+53", 53, true, -1, NULL, 0, false },
	{ "[::1", 53, true, -1, NULL, 0, false },
	{ "[::1]x", 53, true, -1, NULL, 0, false },
	{ "[]:25", 25, false, -1, NULL, 0, false },
	{ "", 25, false, -1, NULL, 0, false },
	{ ":25", 25, false, -1, NULL, 0, false },
	{ "2001:db8::1:25:x", 25, false, -1, NULL, 0, false },
	{ "bad_host", 25, false, -1, NULL, 0, false },
	{ "a..b:25", 25, false, -1, NULL, 0, false },
};

Test(conf, hostport_parse)
{
	struct conf_hostport	 hp;
	char			 err[256];
	size_t			 i;
	bool			 lit;
	int			 got;

	for (i = 0; i < nitems(hp_cases); i++) {
		const struct hp_case *tc = &hp_cases[i];

		lit = !tc->literal;
		err[0] = '\0';
		got = conf_hostport_parse(tc->in, tc->defport, tc->numeric, &hp,
		    &lit, err, sizeof(err));
		cr_expect_eq(got, tc->ok, "'%s': got %d (%s), want %d", tc->in,
		    got, err, tc->ok);
		if (got != 0) {
			cr_expect_null(hp.host);
			cr_expect_neq(err[0], '\0', "'%s': no reason", tc->in);
			continue;
		}
		if (tc->ok == 0) {
			cr_expect_str_eq(hp.host, tc->host, "'%s': host %s",
			    tc->in, hp.host);
			cr_expect_eq(hp.port, tc->port, "'%s': port %d", tc->in,
			    hp.port);
			cr_expect_eq(lit, tc->literal, "'%s': literal", tc->in);
		}
		free(hp.host);
	}
}

Test(conf, tls_for_domain)
{
	struct conf_errors	 errs;
	struct conf		*c;

	c = test_load("delivery = { tls = \"enforced\"; };\n"
	    "tls_policy = (\n"
	    "  { domain = \"Bank.Example\"; tls = \"none\"; },\n"
	    "  { domain = \"partner.example\"; tls = \"opportunistic\"; }\n"
	    ");\n", &errs);
	cr_assert_not_null(c);
	cr_expect_eq(conf_tls_for_domain(c, "bank.example"), CONF_OUT_TLS_NONE);
	cr_expect_eq(conf_tls_for_domain(c, "BANK.EXAMPLE"), CONF_OUT_TLS_NONE);
	cr_expect_eq(conf_tls_for_domain(c, "partner.example"),
	    CONF_OUT_TLS_OPPORTUNISTIC);
	cr_expect_eq(conf_tls_for_domain(c, "sub.bank.example"),
	    CONF_OUT_TLS_ENFORCED, "only an exact domain matches");
	cr_expect_eq(conf_tls_for_domain(c, "other.example"),
	    CONF_OUT_TLS_ENFORCED);
	cr_expect_str_eq(conf_out_tls_name(CONF_OUT_TLS_VERIFY), "verify");
	cr_expect_str_eq(conf_out_tls_name(CONF_OUT_TLS_OPPORTUNISTIC),
	    "opportunistic");
	cr_expect_str_eq(conf_out_tls_name((enum conf_out_tls)42), "unknown");
	conf_free(c);
	conf_errors_free(&errs);
}

Test(conf, domain_syntax)
{
	static const struct {
		const char	*in;
		bool		 want;
	} cases[] = {
		{ "example.com", true }, { "localhost", true },
		{ "a-b.c0.example", true }, { "xn--bcher-kva.example", true },
		{ "", false }, { ".example", false }, { "example.", false },
		{ "a..b", false }, { "-a.example", false },
		{ "a-.example", false }, { "a_b.example", false },
		{ "a b.example", false },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    ".example", false },
	};
	size_t	i;

	for (i = 0; i < nitems(cases); i++)
		cr_expect_eq(conf_is_domain(cases[i].in), cases[i].want,
		    "'%s': want %d", cases[i].in, cases[i].want);
}

Test(conf, errors_add_formats)
{
	struct conf_errors	errs;

	memset(&errs, 0, sizeof(errs));
	conf_errors_add(&errs, false, "/etc/k.pem", 12, "bad %s", "key");
	conf_errors_add(&errs, false, "/etc/users", 0, "unreadable");
	conf_errors_add(&errs, true, NULL, 3, "plain");
	conf_errors_add(NULL, false, "x", 1, "ignored");
	cr_assert_eq(errs.nerrors, 2);
	cr_expect_str_eq(errs.errors[0], "/etc/k.pem:12: bad key");
	cr_expect_str_eq(errs.errors[1], "/etc/users: unreadable");
	cr_assert_eq(errs.nwarnings, 1);
	cr_expect_str_eq(errs.warnings[0], "plain");
	conf_errors_free(&errs);
	cr_expect_eq(errs.nerrors, 0);
}

Test(conf, value_escaped_in_messages)
{
	struct conf_errors	 errs;
	struct conf		*c;

	c = test_load("delivery = { tls = \"a\\nb\"; };\n", &errs);
	cr_expect_null(c);
	cr_assert_eq(errs.nerrors, 1);
	cr_expect_null(strchr(errs.errors[0], '\n'), "got %s", errs.errors[0]);
	cr_expect(strstr(errs.errors[0], "'a\\x0ab'") != NULL, "got %s",
	    errs.errors[0]);
	conf_errors_free(&errs);
}

/* Replace every from in *text by to. */
static void
test_replace(char **text, const char *from, const char *to)
{
	char	*p, *out;

	while ((p = strstr(*text, from)) != NULL) {
		xasprintf(&out, "%.*s%s%s", (int)(p - *text), *text, to,
		    p + strlen(from));
		free(*text);
		*text = out;
	}
}

/* etc/postern.conf.example loads once the files it names exist. */
Test(conf, shipped_example_loads)
{
	static const char *const files[] = {
		"fullchain.pem", "privkey.pem", "users", "example.com.rsa.pem",
		"example.com.ed25519.pem", "ca-certificates.crt"
	};
	struct conf_errors	 errs;
	struct conf		*c;
	char			 path[512], *text;
	const char		*tail = "tests/unit/test_conf.c";
	size_t			 flen = strlen(__FILE__), i;
	FILE			*f;
	long			 len;

	/* The source tree is where this file is. */
	cr_assert(flen >= strlen(tail));
	snprintf(path, sizeof(path), "%.*setc/postern.conf.example",
	    (int)(flen - strlen(tail)), __FILE__);
	f = fopen(path, "r");
	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	fseek(f, 0, SEEK_SET);
	text = xcalloc(1, (size_t)len + 1);
	cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);

	test_replace(&text, "/etc/postern/tls/", "@D@/");
	test_replace(&text, "/etc/postern/dkim/", "@D@/");
	test_replace(&text, "/etc/postern/", "@D@/");
	test_replace(&text, "/etc/ssl/certs/", "@D@/");
	test_replace(&text, "/usr/libexec/postern/", "@D@/");
	for (i = 0; i < nitems(files); i++)
		free(test_write(files[i], "x\n", 0640));
	free(test_write("open-case", "#!/bin/sh\nexit 0\n", 0755));

	c = test_load(text, &errs);
	free(text);
	test_dump("error", errs.errors, errs.nerrors);
	test_dump("warning", errs.warnings, errs.nwarnings);
	cr_assert_not_null(c, "the shipped example must load");
	cr_expect_eq(errs.nwarnings, 0);
	cr_expect_eq(c->nlisten, 3);
	cr_expect_eq(c->ndkim, 2);
	cr_expect_eq(c->ntls_policy, 2);
	cr_expect_str_eq(c->metrics.listen.host, "127.0.0.1");
	conf_free(c);
	conf_errors_free(&errs);
}
