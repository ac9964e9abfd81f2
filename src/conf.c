/*
 * conf.c: the configuration of SPEC section 2.  A libconfig file becomes
 * an immutable struct conf; nothing changes it after conf_load returns.
 *
 * Every scalar key lives in one table (conf_keys: name, type, default,
 * range), as Postfix keeps VAR_/DEF_ triples; lists of groups (listen,
 * dkim, tls_policy) use the same machinery with per-entry tables.  The
 * file is walked setting by setting and each one is looked up in the
 * table, so unknown keys are found at any depth and every message carries
 * the FILE:LINE of the setting (the included file for @include).  Loading
 * never stops at the first problem: posternd -n prints them all.
 *
 * Ownership: struct conf owns every string and array in it; the "file"
 * members are borrowed from conf->srcfiles.  Nothing here reads keys or
 * certificates: other modules do, and report through conf_errors_add.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "conf.h"
#include "postern.h"
#include "util.h"

/* Largest configuration (or included) file scanned for integer overflow. */
#define CONF_SCAN_MAX		(4 * 1024 * 1024)
/* Lines with a 32-bit overflow remembered so no second message is given. */
#define CONF_BADINT_MAX		64
/* Room for a value echoed in a message, escaped. */
#define CONF_ESC_MAX		160

enum conf_type {
	CONF_T_GROUP,		/* a group of further keys */
	CONF_T_STRING,		/* any string up to max bytes */
	CONF_T_NONEMPTY,	/* a string that must not be empty */
	CONF_T_PATH,		/* a file name; existence checked later */
	CONF_T_DOMAIN,		/* a domain name, stored lower-cased */
	CONF_T_SELECTOR,	/* DKIM selector: DNS label(s) */
	CONF_T_ADDR,		/* numeric IPv4/IPv6 address or "*" */
	CONF_T_INT,		/* int, range min..max */
	CONF_T_SIZE,		/* uint64_t, range min..max */
	CONF_T_DOUBLE,		/* double, range dmin..dmax; ints accepted */
	CONF_T_BOOL,
	CONF_T_OCTAL,		/* octal mode string, at most 0777 */
	CONF_T_ENUM,		/* one of names[], stored as values[i] or i */
	CONF_T_SPECIAL		/* parsed by fn */
};

struct conf_ctx;
struct conf_key;
typedef void (*conf_special_cb)(struct conf_ctx *, const config_setting_t *,
    const struct conf_key *);

struct conf_key {
	const char		*name;		/* dotted path */
	enum conf_type		 type;
	size_t			 off;	/* into struct conf or an entry */
	const char		*def;	/* textual default; NULL = none */
	long long		 min, max;	/* range, or string length */
	double			 dmin, dmax;
	const char *const	*names;		/* ENUM */
	const int		*values;	/* ENUM; NULL = index */
	bool			 empty_ok;	/* DOMAIN/PATH may be "" */
	size_t			 line_off;	/* lines.x or CONF_NOLINE */
	size_t			 file_off;	/* conf->files.x */
	conf_special_cb		 fn;
};

#define CONF_NOLINE	((size_t)-1)

struct conf_where {
	const char	*file;		/* borrowed from conf->srcfiles */
	int		 line;		/* 0 = not set in the file */
};

struct conf_ctx {
	struct conf		*conf;
	struct conf_errors	*errs;
	bool			 failed;	/* this load added an error */
	const char		*path;		/* main file, as given */
	char			*incdir;	/* owned; NULL = cwd */
	struct conf_where	*seen;		/* one per conf_keys entry */
	struct conf_where	 badint[CONF_BADINT_MAX];
	size_t			 nbadint;
};

static void	conf_special_listen(struct conf_ctx *,
		    const config_setting_t *, const struct conf_key *);
static void	conf_special_relay(struct conf_ctx *,
		    const config_setting_t *, const struct conf_key *);
static void	conf_special_dkim(struct conf_ctx *,
		    const config_setting_t *, const struct conf_key *);
static void	conf_special_policy(struct conf_ctx *,
		    const config_setting_t *, const struct conf_key *);
static void	conf_special_dns(struct conf_ctx *, const config_setting_t *,
		    const struct conf_key *);
static void	conf_special_smarthost(struct conf_ctx *,
		    const config_setting_t *, const struct conf_key *);
static void	conf_special_metrics(struct conf_ctx *,
		    const config_setting_t *, const struct conf_key *);
static void	conf_special_events(struct conf_ctx *,
		    const config_setting_t *, const struct conf_key *);

static const char *const conf_in_tls_names[] = {
	"none", "starttls", "implicit", NULL
};
static const char *const conf_auth_names[] = {
	"none", "optional", "required", NULL
};
static const char *const conf_out_tls_names[] = {
	"none", "opportunistic", "enforced", "verify", NULL
};
static const char *const conf_tlsver_names[] = {
	"TLSv1.2", "TLSv1.3", NULL
};
static const int conf_tlsver_values[] = { TLS1_2_VERSION, TLS1_3_VERSION };

/* ENUM keys are stored through an int: the enums must be int-sized. */
_Static_assert(sizeof(enum conf_out_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_in_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum conf_auth_mode) == sizeof(int), "enum size");

#define C(m)		offsetof(struct conf, m)
#define L(m)		.line_off = C(lines.m), .file_off = C(files.m)
#define NOL		.line_off = CONF_NOLINE
#define STR(n, m, d)	{ .name = n, .type = CONF_T_STRING, .off = C(m), \
			    .def = d, .max = PATH_MAX, NOL }
#define INT(n, m, d, lo, hi) { .name = n, .type = CONF_T_INT, .off = C(m), \
			    .def = d, .min = lo, .max = hi, NOL }
#define GRP(n)		{ .name = n, .type = CONF_T_GROUP, NOL }
#define SPC(n, f)	{ .name = n, .type = CONF_T_SPECIAL, .fn = f, NOL }

/*
 * The top-level keys, their types, defaults and ranges.  The defaults of
 * list-valued keys (listen, relay_networks, escalation.events) are set in
 * conf_new, and hostname defaults to gethostname().  Keep this table, the
 * man page postern.conf(5) and etc/postern.conf.example in step.
 */
static const struct conf_key conf_keys[] = {
	{ .name = "hostname", .type = CONF_T_DOMAIN, .off = C(hostname),
	    NOL },
	{ .name = "user", .type = CONF_T_NONEMPTY, .off = C(user),
	    .def = "postern", .max = 64, NOL },
	{ .name = "spool_dir", .type = CONF_T_NONEMPTY, .off = C(spool_dir),
	    .def = "/var/spool/postern", .max = PATH_MAX, L(spool_dir) },
	/* sun_path is 108 bytes, NUL included */
	{ .name = "control_socket", .type = CONF_T_NONEMPTY,
	    .off = C(control_socket), .def = "/run/postern/control.sock",
	    .max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
	    L(control_socket) },
	{ .name = "control_socket_mode", .type = CONF_T_OCTAL,
	    .off = C(control_socket_mode), .def = "0660", NOL },
	{ .name = "control_socket_group", .type = CONF_T_STRING,
	    .off = C(control_socket_group), .def = "", .max = 64, NOL },
	SPC("listen", conf_special_listen),

	GRP("tls"),
	{ .name = "tls.cert", .type = CONF_T_PATH, .off = C(tls.cert),
	    .def = "", .empty_ok = true, .max = PATH_MAX, L(tls_cert) },
	{ .name = "tls.key", .type = CONF_T_PATH, .off = C(tls.key),
	    .def = "", .empty_ok = true, .max = PATH_MAX, L(tls_key) },
	{ .name = "tls.min_version", .type = CONF_T_ENUM,
	    .off = C(tls.min_version), .def = "TLSv1.2",
	    .names = conf_tlsver_names, .values = conf_tlsver_values, NOL },

	GRP("auth"),
	{ .name = "auth.users_file", .type = CONF_T_PATH,
	    .off = C(auth.users_file), .def = "", .empty_ok = true,
	    .max = PATH_MAX, L(users_file) },

	SPC("relay_networks", conf_special_relay),
	{ .name = "relay_spf_domain", .type = CONF_T_DOMAIN,
	    .off = C(relay_spf_domain), .def = "", .empty_ok = true, NOL },

	GRP("limits"),
	{ .name = "limits.max_message_size", .type = CONF_T_SIZE,
	    .off = C(limits.max_message_size), .def = "52428800",
	    .min = 1024, .max = 2147483647, NOL },
	INT("limits.max_recipients", limits.max_recipients, "100", 1, 100000),
	INT("limits.max_inbound_connections", limits.max_inbound_connections,
	    "1000", 1, 100000),
	INT("limits.max_connections_per_ip", limits.max_connections_per_ip,
	    "50", 1, 100000),
	INT("limits.command_timeout", limits.command_timeout, "300", 1, 86400),
	INT("limits.data_timeout", limits.data_timeout, "600", 1, 86400),
	INT("limits.max_auth_failures", limits.max_auth_failures, "3", 1, 100),

	SPC("dkim", conf_special_dkim),

	GRP("delivery"),
	INT("delivery.pool_size", delivery.pool_size, "100", 1, 100),
	INT("delivery.max_per_destination", delivery.max_per_destination,
	    "20", 1, 100),
	INT("delivery.max_messages_per_connection",
	    delivery.max_messages_per_connection, "100", 1, 100000),
	INT("delivery.idle_timeout", delivery.idle_timeout, "30", 1, 3600),
	INT("delivery.connect_timeout", delivery.connect_timeout, "30", 1,
	    3600),
	{ .name = "delivery.tls", .type = CONF_T_ENUM, .off = C(delivery.tls),
	    .def = "opportunistic", .names = conf_out_tls_names, NOL },
	{ .name = "delivery.ca_file", .type = CONF_T_PATH,
	    .off = C(delivery.ca_file),
	    .def = "/etc/ssl/certs/ca-certificates.crt", .max = PATH_MAX,
	    L(ca_file) },
	INT("delivery.port", delivery.port, "25", 1, 65535),
	SPC("delivery.dns_servers", conf_special_dns),
	SPC("delivery.smarthost", conf_special_smarthost),
	STR("delivery.smarthost_user", delivery.smarthost_user, ""),
	{ .name = "delivery.smarthost_password_file", .type = CONF_T_PATH,
	    .off = C(delivery.smarthost_password_file), .def = "",
	    .empty_ok = true, .max = PATH_MAX, L(smarthost_password_file) },

	SPC("tls_policy", conf_special_policy),

	GRP("retry"),
	INT("retry.initial", retry.initial, "60", 1, 86400),
	INT("retry.max_interval", retry.max_interval, "3600", 1, 31536000),
	{ .name = "retry.factor", .type = CONF_T_DOUBLE, .off = C(retry.factor),
	    .def = "2.0", .dmin = 1.0, .dmax = 10.0, NOL },
	INT("retry.max_age", retry.max_age, "432000", 60, 31536000),

	GRP("bounces"),
	{ .name = "bounces.enabled", .type = CONF_T_BOOL,
	    .off = C(bounces.enabled), .def = "true", NOL },

	GRP("escalation"),
	{ .name = "escalation.command", .type = CONF_T_PATH,
	    .off = C(escalation.command), .def = "", .empty_ok = true,
	    .max = PATH_MAX, .line_off = C(escalation.line),
	    .file_off = C(escalation.file) },
	SPC("escalation.events", conf_special_events),
	INT("escalation.timeout", escalation.timeout, "30", 1, 3600),

	GRP("metrics"),
	SPC("metrics.listen", conf_special_metrics),
};

#define E(t, m)		offsetof(struct t, m)

/* Keys of one listen = ( { ... } ) entry; address and port are required. */
static const struct conf_key conf_listen_keys[] = {
	{ .name = "address", .type = CONF_T_ADDR,
	    .off = E(conf_listen, address), .max = INET6_ADDRSTRLEN, NOL },
	{ .name = "port", .type = CONF_T_INT, .off = E(conf_listen, port),
	    .min = 1, .max = 65535, NOL },
	{ .name = "tls", .type = CONF_T_ENUM, .off = E(conf_listen, tls),
	    .def = "none", .names = conf_in_tls_names, NOL },
	{ .name = "auth", .type = CONF_T_ENUM, .off = E(conf_listen, auth),
	    .def = "none", .names = conf_auth_names, NOL },
};

/* Keys of one dkim = ( { ... } ) entry; all required. */
static const struct conf_key conf_dkim_keys[] = {
	{ .name = "domain", .type = CONF_T_DOMAIN,
	    .off = E(conf_dkim, domain), NOL },
	{ .name = "selector", .type = CONF_T_SELECTOR,
	    .off = E(conf_dkim, selector), NOL },
	{ .name = "key", .type = CONF_T_PATH, .off = E(conf_dkim, key),
	    .max = PATH_MAX, NOL },
};

/* Keys of one tls_policy = ( { ... } ) entry; all required. */
static const struct conf_key conf_policy_keys[] = {
	{ .name = "domain", .type = CONF_T_DOMAIN,
	    .off = E(conf_tls_policy, domain), NOL },
	{ .name = "tls", .type = CONF_T_ENUM, .off = E(conf_tls_policy, tls),
	    .names = conf_out_tls_names, NOL },
};

/* Error collection. */

static void
conf_errors_vadd(struct conf_errors *errs, bool warning, const char *file,
    int line, const char *fmt, va_list ap)
{
	char	  text[1024];
	char	***list;
	size_t	 *n;
	char	 *msg;

	if (errs == NULL)
		return;
	list = warning ? &errs->warnings : &errs->errors;
	n = warning ? &errs->nwarnings : &errs->nerrors;
	if (*n >= CONF_ERRORS_MAX)
		return;
	/* The last slot says that the list was cut, not what came next. */
	if (*n == CONF_ERRORS_MAX - 1)
		strlcpy(text, warning ? "too many warnings; the rest are not "
		    "shown" : "too many errors; the rest are not shown",
		    sizeof(text));
	else
		vsnprintf(text, sizeof(text), fmt, ap);
	if (file == NULL)
		msg = xstrdup(text);
	else if (line > 0)
		xasprintf(&msg, "%s:%d: %s", file, line, text);
	else
		xasprintf(&msg, "%s: %s", file, text);
	*list = xreallocarray(*list, *n + 1, sizeof(**list));
	(*list)[(*n)++] = msg;
}

/* Append one error or warning; see conf.h. */
void
conf_errors_add(struct conf_errors *errs, bool warning, const char *file,
    int line, const char *fmt, ...)
{
	va_list	ap;

	va_start(ap, fmt);
	conf_errors_vadd(errs, warning, file, line, fmt, ap);
	va_end(ap);
}

void
conf_errors_free(struct conf_errors *errs)
{
	size_t	i;

	if (errs == NULL)
		return;
	for (i = 0; i < errs->nerrors; i++)
		free(errs->errors[i]);
	for (i = 0; i < errs->nwarnings; i++)
		free(errs->warnings[i]);
	free(errs->errors);
	free(errs->warnings);
	memset(errs, 0, sizeof(*errs));
}

/* An error or warning at an explicit place (file NULL = the main file). */
static void __attribute__((format(printf, 5, 6)))
conf_at(struct conf_ctx *ctx, bool warning, const char *file, int line,
    const char *fmt, ...)
{
	va_list	ap;

	if (!warning)
		ctx->failed = true;
	va_start(ap, fmt);
	conf_errors_vadd(ctx->errs, warning, file != NULL ? file : ctx->path,
	    line, fmt, ap);
	va_end(ap);
}

/*
 * The file a setting came from.  libconfig 1.5 reports an included file by
 * the name written in the @include line, which it resolved against the
 * include directory (the main file's directory); report the resolved name
 * so that the message points at a file one can open.
 */
static const char *
conf_srcfile(struct conf_ctx *ctx, const char *name)
{
	struct conf	*conf = ctx->conf;
	char		*full;
	size_t		 i;

	if (name == NULL || strcmp(name, ctx->path) == 0)
		name = ctx->path;
	if (name != ctx->path && name[0] != '/' && ctx->incdir != NULL)
		xasprintf(&full, "%s/%s", ctx->incdir, name);
	else
		full = xstrdup(name);
	for (i = 0; i < conf->nsrcfiles; i++) {
		if (strcmp(conf->srcfiles[i], full) == 0) {
			free(full);
			return (conf->srcfiles[i]);
		}
	}
	conf->srcfiles = xreallocarray(conf->srcfiles, conf->nsrcfiles + 1,
	    sizeof(*conf->srcfiles));
	conf->srcfiles[conf->nsrcfiles++] = full;
	return (full);
}

static struct conf_where
conf_where_of(struct conf_ctx *ctx, const config_setting_t *s)
{
	struct conf_where	w;

	w.file = conf_srcfile(ctx, config_setting_source_file(s));
	w.line = config_setting_source_line(s);
	return (w);
}

/* An error or warning at the line of setting s. */
static void __attribute__((format(printf, 4, 5)))
conf_serr(struct conf_ctx *ctx, bool warning, const config_setting_t *s,
    const char *fmt, ...)
{
	struct conf_where	w = conf_where_of(ctx, s);
	va_list			ap;

	if (!warning)
		ctx->failed = true;
	va_start(ap, fmt);
	conf_errors_vadd(ctx->errs, warning, w.file, w.line, fmt, ap);
	va_end(ap);
}

/* Peer-independent, but values still go through util_escape: one line. */
static const char *
conf_esc(char buf[CONF_ESC_MAX], const char *s)
{
	return (util_escape(buf, CONF_ESC_MAX, s, strlen(s)));
}

/* Syntax helpers shared with other modules through conf.h. */

static bool
conf_is_label_list(const char *s, size_t max)
{
	size_t	len = strlen(s), lab = 0;
	char	prev = '.';

	if (len == 0 || len > max)
		return (false);
	for (; *s != '\0'; prev = *s++) {
		if (*s == '.') {
			if (lab == 0 || prev == '-')
				return (false);
			lab = 0;
			continue;
		}
		if (!isalnum((unsigned char)*s) && *s != '-')
			return (false);
		if (*s == '-' && lab == 0)
			return (false);
		if (++lab > SMTP_LABEL_MAX)
			return (false);
	}
	return (lab > 0 && prev != '-');
}

/* A domain name of LDH labels (1..63 each), at most SMTP_DOMAIN_MAX. */
bool
conf_is_domain(const char *s)
{
	return (conf_is_label_list(s, SMTP_DOMAIN_MAX));
}

static bool
conf_is_ip(const char *s)
{
	unsigned char	buf[sizeof(struct in6_addr)];

	return (inet_pton(AF_INET, s, buf) == 1 ||
	    inet_pton(AF_INET6, s, buf) == 1);
}

/* 1..65535 written as plain decimal digits. */
static int
conf_port_parse(const char *s, int *port)
{
	long	v = 0;
	size_t	i;

	if (s[0] == '\0' || strlen(s) > 5)
		return (-1);
	for (i = 0; s[i] != '\0'; i++) {
		if (!isdigit((unsigned char)s[i]))
			return (-1);
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return (-1);
	*port = (int)v;
	return (0);
}

/* Parse a host with an optional port; see conf.h. */
int
conf_hostport_parse(const char *s, int default_port, bool numeric_only,
    struct conf_hostport *out, bool *literal, char *err, size_t errlen)
{
	char		 host[SMTP_DOMAIN_MAX + 1];
	char		 ebuf[CONF_ESC_MAX];
	unsigned char	 abuf[sizeof(struct in6_addr)];
	const char	*portstr = NULL, *end, *colon, *in = s;
	size_t		 hlen;
	bool		 bracket = false;
	int		 port = default_port;

	out->host = NULL;
	out->port = 0;
	if (s[0] == '[') {
		if ((end = strchr(s, ']')) == NULL) {
			snprintf(err, errlen, "'%s': missing ']'",
			    conf_esc(ebuf, s));
			return (-1);
		}
		bracket = true;
		hlen = end - s - 1;
		if (end[1] == ':')
			portstr = end + 2;
		else if (end[1] != '\0') {
			snprintf(err, errlen, "'%s': expected ':port' after "
			    "']'", conf_esc(ebuf, s));
			return (-1);
		}
		s++;
	} else if ((colon = strchr(s, ':')) != NULL &&
	    strchr(colon + 1, ':') == NULL) {
		hlen = colon - s;
		portstr = colon + 1;
	} else
		hlen = strlen(s);	/* no colon, or a bare IPv6 address */

	if (hlen == 0 || hlen >= sizeof(host)) {
		snprintf(err, errlen, "'%s': missing or overlong host",
		    conf_esc(ebuf, in));
		return (-1);
	}
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (strchr(host, ':') != NULL && !bracket && portstr == NULL &&
	    inet_pton(AF_INET6, host, abuf) != 1) {
		snprintf(err, errlen, "'%s' is not an address; an IPv6 "
		    "address with a port is written [address]:port",
		    conf_esc(ebuf, host));
		return (-1);
	}
	if (numeric_only ? !conf_is_ip(host) :
	    !conf_is_ip(host) && !conf_is_domain(host)) {
		snprintf(err, errlen, "'%s' is not %s", conf_esc(ebuf, host),
		    numeric_only ? "a numeric IPv4 or IPv6 address" :
		    "an IP address or a host name");
		return (-1);
	}
	if (portstr != NULL && conf_port_parse(portstr, &port) == -1) {
		snprintf(err, errlen, "'%s' is not a port (1..65535)",
		    conf_esc(ebuf, portstr));
		return (-1);
	}
	if (port == 0) {
		snprintf(err, errlen, "'%s': a port is required (host:port)",
		    conf_esc(ebuf, host));
		return (-1);
	}
	out->host = xstrdup(host);
	if (!numeric_only)
		util_lowercase(out->host);
	out->port = port;
	if (literal != NULL)
		*literal = bracket;
	return (0);
}

/* Parse a network; see conf.h. */
int
conf_cidr_parse_err(const char *s, struct conf_cidr *c, char *err,
    size_t errlen)
{
	char		 addr[INET6_ADDRSTRLEN];
	char		 ebuf[CONF_ESC_MAX], nbuf[INET6_ADDRSTRLEN];
	const char	*slash = strchr(s, '/');
	size_t		 alen;
	int		 maxp, prefix, i;
	bool		 hostbits = false;
	static const unsigned char mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	memset(c, 0, sizeof(*c));
	alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof(addr))
		goto bad;
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, c->addr) == 1) {
		c->family = AF_INET;
		maxp = 32;
	} else if (inet_pton(AF_INET6, addr, c->addr) == 1) {
		c->family = AF_INET6;
		maxp = 128;
	} else
		goto bad;
	prefix = maxp;
	if (slash != NULL) {
		if (slash[1] == '\0' || strlen(slash + 1) > 3)
			goto bad;
		prefix = 0;
		for (i = 1; slash[i] != '\0'; i++) {
			if (!isdigit((unsigned char)slash[i]))
				goto bad;
			prefix = prefix * 10 + (slash[i] - '0');
		}
		if (prefix > maxp)
			goto bad;
	}
	c->prefix = prefix;
	/* Clear the host bits, remembering whether any was set. */
	for (i = 0; i < maxp / 8; i++) {
		int		keep = prefix - i * 8;
		unsigned char	mask;

		mask = keep >= 8 ? 0xff : keep <= 0 ? 0 :
		    (unsigned char)(0xff << (8 - keep));
		if ((c->addr[i] & ~mask) != 0)
			hostbits = true;
		c->addr[i] &= mask;
	}
	if (hostbits) {
		inet_ntop(c->family, c->addr, nbuf, sizeof(nbuf));
		snprintf(err, errlen, "'%s' has host bits set; the network is "
		    "%s/%d", conf_esc(ebuf, s), nbuf, prefix);
		return (-1);
	}
	/* ::ffff:a.b.c.d/n is the IPv4 network a.b.c.d/(n-96). */
	if (c->family == AF_INET6 && prefix >= 96 &&
	    memcmp(c->addr, mapped, sizeof(mapped)) == 0) {
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
		c->family = AF_INET;
		c->prefix = prefix - 96;
	}
	return (0);
bad:
	snprintf(err, errlen, "'%s' is not an IPv4 or IPv6 network "
	    "(address/prefix)", conf_esc(ebuf, s));
	memset(c, 0, sizeof(*c));
	return (-1);
}

int
conf_cidr_parse(const char *s, struct conf_cidr *c)
{
	char	err[256];

	return (conf_cidr_parse_err(s, c, err, sizeof(err)));
}

static bool
conf_cidr_has(const struct conf_cidr *c, int family, const unsigned char *a)
{
	int	full = c->prefix / 8, rest = c->prefix % 8;

	if (c->family != family)
		return (false);
	if (memcmp(c->addr, a, full) != 0)
		return (false);
	if (rest == 0)
		return (true);
	return (((c->addr[full] ^ a[full]) &
	    (unsigned char)(0xff << (8 - rest))) == 0);
}

/* Is the address of sa in one of the n networks?  See conf.h. */
bool
conf_cidr_match(const struct conf_cidr *nets, size_t n,
    const struct sockaddr *sa)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;
	const unsigned char		*a;
	int				 family;
	size_t				 i;

	if (sa == NULL)
		return (false);
	switch (sa->sa_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)sa;
		a = (const unsigned char *)&sin->sin_addr;
		family = AF_INET;
		break;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)sa;
		a = (const unsigned char *)&sin6->sin6_addr;
		family = AF_INET6;
		/* A dual-stack socket shows IPv4 clients as ::ffff:a.b.c.d. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			a += 12;
			family = AF_INET;
		}
		break;
	default:
		return (false);
	}
	for (i = 0; i < n; i++)
		if (conf_cidr_has(&nets[i], family, a))
			return (true);
	return (false);
}

enum conf_out_tls
conf_tls_for_domain(const struct conf *conf, const char *domain)
{
	size_t	i;

	for (i = 0; domain != NULL && i < conf->ntls_policy; i++)
		if (strcasecmp(conf->tls_policy[i].domain, domain) == 0)
			return (conf->tls_policy[i].tls);
	return (conf->delivery.tls);
}

const char *
conf_out_tls_name(enum conf_out_tls t)
{
	if ((size_t)t >= nitems(conf_out_tls_names) - 1)
		return ("unknown");
	return (conf_out_tls_names[t]);
}

const char *
conf_in_tls_name(enum conf_in_tls t)
{
	if ((size_t)t >= nitems(conf_in_tls_names) - 1)
		return ("unknown");
	return (conf_in_tls_names[t]);
}

const char *
conf_auth_mode_name(enum conf_auth_mode a)
{
	if ((size_t)a >= nitems(conf_auth_names) - 1)
		return ("unknown");
	return (conf_auth_names[a]);
}

/* Setting values through the tables. */

#define CONF_FIELD(base, k, type) \
	((type *)(void *)((char *)(base) + (k)->off))

static const char *
conf_type_name(enum conf_type t)
{
	switch (t) {
	case CONF_T_GROUP:
		return ("a group { ... }");
	case CONF_T_INT:
	case CONF_T_SIZE:
		return ("an integer");
	case CONF_T_DOUBLE:
		return ("a number");
	case CONF_T_BOOL:
		return ("a boolean (true or false)");
	default:
		return ("a string");
	}
}

static bool
conf_is_badint(struct conf_ctx *ctx, struct conf_where w)
{
	size_t	i;

	for (i = 0; i < ctx->nbadint; i++)
		if (ctx->badint[i].file == w.file &&
		    ctx->badint[i].line == w.line)
			return (true);
	return (false);
}

static int
conf_enum_parse(const struct conf_key *k, const char *v)
{
	int	i;

	for (i = 0; k->names[i] != NULL; i++)
		if (strcasecmp(k->names[i], v) == 0)
			return (k->values != NULL ? k->values[i] : i);
	return (-1);
}

static void
conf_enum_list(const struct conf_key *k, char *buf, size_t len)
{
	int	i;

	buf[0] = '\0';
	for (i = 0; k->names[i] != NULL; i++) {
		if (i > 0)
			strlcat(buf, ", ", len);
		strlcat(buf, k->names[i], len);
	}
}

/* Octal mode "0660" or "660": 1..4 digits 0-7, at most 0777. */
static int
conf_octal_parse(const char *s, unsigned int *mode)
{
	unsigned int	v = 0;
	size_t		i;

	if (s[0] == '\0' || strlen(s) > 4)
		return (-1);
	for (i = 0; s[i] != '\0'; i++) {
		if (s[i] < '0' || s[i] > '7')
			return (-1);
		v = v * 8 + (unsigned int)(s[i] - '0');
	}
	if (v > 0777)
		return (-1);
	*mode = v;
	return (0);
}

/* Check a string value against its type; NULL or the reason it is bad. */
static const char *
conf_string_check(const struct conf_key *k, const char *v)
{
	if (v[0] == '\0')
		return (k->type == CONF_T_STRING || k->empty_ok ? NULL :
		    "must not be empty");
	if (k->max > 0 && strlen(v) > (size_t)k->max)
		return ("is too long");
	switch (k->type) {
	case CONF_T_DOMAIN:
		return (conf_is_domain(v) ? NULL :
		    "is not a valid domain name");
	case CONF_T_SELECTOR:
		return (conf_is_label_list(v, SMTP_DOMAIN_MAX) ? NULL :
		    "is not a valid selector (DNS labels)");
	case CONF_T_ADDR:
		return (strcmp(v, "*") == 0 || conf_is_ip(v) ? NULL :
		    "is not a numeric IPv4 or IPv6 address (or \"*\")");
	default:
		return (NULL);
	}
}

/*
 * Store setting s into base as key k (base is struct conf, or a list
 * entry).  On any problem the previous value (the default) stays.
 */
static void
conf_set(struct conf_ctx *ctx, const struct conf_key *k,
    const config_setting_t *s, void *base, const char *dotted)
{
	struct conf_where	 w = conf_where_of(ctx, s);
	char			 ebuf[CONF_ESC_MAX], list[128];
	const char		*v = NULL, *why;
	int			 type = config_setting_type(s), e;
	long long		 n = 0;
	double			 d;
	unsigned int		 mode;
	char			**sp;

	switch (k->type) {
	case CONF_T_INT:
	case CONF_T_SIZE:
		if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64)
			goto badtype;
		/* conf_scan_ints reported it: libconfig truncated it. */
		if (conf_is_badint(ctx, w))
			return;
		n = config_setting_get_int64(s);
		if (n < k->min || n > k->max) {
			conf_serr(ctx, false, s, "%s: %lld is out of range "
			    "(%lld..%lld)", dotted, n, k->min, k->max);
			return;
		}
		if (k->type == CONF_T_INT)
			*CONF_FIELD(base, k, int) = (int)n;
		else
			*CONF_FIELD(base, k, uint64_t) = (uint64_t)n;
		break;
	case CONF_T_DOUBLE:
		if (type == CONFIG_TYPE_FLOAT)
			d = config_setting_get_float(s);
		else if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64)
			d = (double)config_setting_get_int64(s);
		else
			goto badtype;
		if (!(d >= k->dmin && d <= k->dmax)) {
			conf_serr(ctx, false, s, "%s: %g is out of range "
			    "(%g..%g)", dotted, d, k->dmin, k->dmax);
			return;
		}
		*CONF_FIELD(base, k, double) = d;
		break;
	case CONF_T_BOOL:
		if (type != CONFIG_TYPE_BOOL)
			goto badtype;
		*CONF_FIELD(base, k, bool) = config_setting_get_bool(s) != 0;
		break;
	case CONF_T_GROUP:
	case CONF_T_SPECIAL:
		/* conf_walk dispatches these before calling here. */
		return;
	default:
		/* Every other type is written as a string. */
		if (type != CONFIG_TYPE_STRING ||
		    (v = config_setting_get_string(s)) == NULL)
			goto badtype;
		break;
	}
	if (v == NULL)
		goto done;

	switch (k->type) {
	case CONF_T_OCTAL:
		if (conf_octal_parse(v, &mode) == -1) {
			conf_serr(ctx, false, s, "%s: '%s' is not an octal "
			    "mode such as \"0660\"", dotted, conf_esc(ebuf, v));
			return;
		}
		*CONF_FIELD(base, k, unsigned int) = mode;
		break;
	case CONF_T_ENUM:
		if ((e = conf_enum_parse(k, v)) == -1) {
			conf_enum_list(k, list, sizeof(list));
			conf_serr(ctx, false, s, "%s: '%s' is not one of %s",
			    dotted, conf_esc(ebuf, v), list);
			return;
		}
		*CONF_FIELD(base, k, int) = e;
		break;
	default:
		if ((why = conf_string_check(k, v)) != NULL) {
			conf_serr(ctx, false, s, "%s: '%s' %s", dotted,
			    conf_esc(ebuf, v), why);
			return;
		}
		sp = CONF_FIELD(base, k, char *);
		free(*sp);
		*sp = xstrdup(v);
		if (k->type == CONF_T_DOMAIN)
			util_lowercase(*sp);
		break;
	}
done:
	if (base == ctx->conf && k->line_off != CONF_NOLINE) {
		*(int *)(void *)((char *)base + k->line_off) = w.line;
		*(const char **)(void *)((char *)base + k->file_off) = w.file;
	}
	return;
badtype:
	conf_serr(ctx, false, s, "%s: expected %s", dotted,
	    conf_type_name(k->type));
}

static const struct conf_key *
conf_key_find(const struct conf_key *keys, size_t n, const char *name)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (strcmp(keys[i].name, name) == 0)
			return (&keys[i]);
	return (NULL);
}

/* Walk one group of the top-level table; prefix "" is the root. */
static void
conf_walk(struct conf_ctx *ctx, const config_setting_t *group,
    const char *prefix)
{
	const config_setting_t	*s;
	const struct conf_key	*k;
	char			*dotted;
	int			 i;

	for (i = 0; (s = config_setting_get_elem(group, i)) != NULL; i++) {
		xasprintf(&dotted, "%s%s%s", prefix, prefix[0] != '\0' ?
		    "." : "", config_setting_name(s));
		k = conf_key_find(conf_keys, nitems(conf_keys), dotted);
		if (k == NULL) {
			conf_serr(ctx, false, s, "unknown key '%.100s'",
			    dotted);
			free(dotted);
			continue;
		}
		ctx->seen[k - conf_keys] = conf_where_of(ctx, s);
		if (k->type == CONF_T_GROUP) {
			if (!config_setting_is_group(s))
				conf_serr(ctx, false, s, "%s: expected %s",
				    dotted, conf_type_name(k->type));
			else
				conf_walk(ctx, s, dotted);
		} else if (k->type == CONF_T_SPECIAL)
			k->fn(ctx, s, k);
		else
			conf_set(ctx, k, s, ctx->conf, dotted);
		free(dotted);
	}
}

/*
 * Walk the group entry i of list key name with the entry table keys,
 * storing into base.  Returns a bit mask of the keys that were set.
 */
static unsigned int
conf_walk_entry(struct conf_ctx *ctx, const config_setting_t *entry,
    const char *name, int idx, const struct conf_key *keys, size_t nkeys,
    void *base)
{
	const config_setting_t	*s;
	const struct conf_key	*k;
	char			*dotted;
	unsigned int		 set = 0;
	int			 i;

	for (i = 0; (s = config_setting_get_elem(entry, i)) != NULL; i++) {
		xasprintf(&dotted, "%s[%d].%s", name, idx,
		    config_setting_name(s));
		k = conf_key_find(keys, nkeys, config_setting_name(s));
		if (k == NULL)
			conf_serr(ctx, false, s, "unknown key '%.100s'",
			    dotted);
		else {
			set |= 1U << (k - keys);
			conf_set(ctx, k, s, base, dotted);
		}
		free(dotted);
	}
	return (set);
}

/* Report each required key of an entry that is missing from set. */
static bool
conf_entry_complete(struct conf_ctx *ctx, const config_setting_t *entry,
    const char *name, int idx, const struct conf_key *keys, size_t nkeys,
    unsigned int set)
{
	bool	ok = true;
	size_t	i;

	for (i = 0; i < nkeys; i++) {
		if (keys[i].def != NULL || (set & (1U << i)) != 0)
			continue;
		conf_serr(ctx, false, entry, "%s[%d]: missing '%s'", name, idx,
		    keys[i].name);
		ok = false;
	}
	return (ok);
}

/* Apply the textual defaults of a table to base. */
static void
conf_apply_defaults(const struct conf_key *keys, size_t nkeys, void *base)
{
	const struct conf_key	*k;
	size_t			 i;
	unsigned int		 mode = 0;
	char			**sp;

	for (i = 0; i < nkeys; i++) {
		k = &keys[i];
		if (k->def == NULL)
			continue;
		switch (k->type) {
		case CONF_T_INT:
			*CONF_FIELD(base, k, int) = (int)strtol(k->def, NULL,
			    10);
			break;
		case CONF_T_SIZE:
			*CONF_FIELD(base, k, uint64_t) = strtoull(k->def, NULL,
			    10);
			break;
		case CONF_T_DOUBLE:
			*CONF_FIELD(base, k, double) = strtod(k->def, NULL);
			break;
		case CONF_T_BOOL:
			*CONF_FIELD(base, k, bool) =
			    strcmp(k->def, "true") == 0;
			break;
		case CONF_T_OCTAL:
			(void)conf_octal_parse(k->def, &mode);
			*CONF_FIELD(base, k, unsigned int) = mode;
			break;
		case CONF_T_ENUM:
			*CONF_FIELD(base, k, int) = conf_enum_parse(k, k->def);
			break;
		case CONF_T_GROUP:
		case CONF_T_SPECIAL:
			break;
		default:
			sp = CONF_FIELD(base, k, char *);
			free(*sp);
			*sp = xstrdup(k->def);
			break;
		}
	}
}

/* List-valued keys. */

/* A list ( ... ) of groups, as listen, dkim and tls_policy are. */
static bool
conf_is_group_list(struct conf_ctx *ctx, const config_setting_t *s,
    const char *name)
{
	const config_setting_t	*e;
	int			 i;

	if (!config_setting_is_list(s)) {
		conf_serr(ctx, false, s, "%s: expected a list ( { ... }, ... )",
		    name);
		return (false);
	}
	for (i = 0; (e = config_setting_get_elem(s, i)) != NULL; i++) {
		if (!config_setting_is_group(e)) {
			conf_serr(ctx, false, e, "%s[%d]: expected a group "
			    "{ ... }", name, i);
			return (false);
		}
	}
	return (true);
}

/* An array [ ... ] or list ( ... ) of strings; false after reporting. */
static bool
conf_is_string_list(struct conf_ctx *ctx, const config_setting_t *s,
    const char *name)
{
	const config_setting_t	*e;
	int			 i;

	if (!config_setting_is_array(s) && !config_setting_is_list(s)) {
		conf_serr(ctx, false, s, "%s: expected an array [ \"...\", "
		    "... ] of strings", name);
		return (false);
	}
	for (i = 0; (e = config_setting_get_elem(s, i)) != NULL; i++) {
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			conf_serr(ctx, false, e, "%s[%d]: expected a string",
			    name, i);
			return (false);
		}
	}
	return (true);
}

static void
conf_listen_free(struct conf_listen *l, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(l[i].address);
	free(l);
}

static void
conf_special_listen(struct conf_ctx *ctx, const config_setting_t *s,
    const struct conf_key *k)
{
	struct conf		*conf = ctx->conf;
	struct conf_listen	*l;
	struct conf_where	 w;
	const config_setting_t	*e;
	unsigned int		 set;
	int			 i, n;

	if (!conf_is_group_list(ctx, s, k->name))
		return;
	conf_listen_free(conf->listen, conf->nlisten);
	n = config_setting_length(s);
	if (n == 0)
		conf_serr(ctx, true, s, "%s: no listeners: no mail can be "
		    "submitted", k->name);
	conf->listen = xcalloc(n > 0 ? n : 1, sizeof(*conf->listen));
	conf->nlisten = 0;
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, i);
		l = &conf->listen[conf->nlisten];
		memset(l, 0, sizeof(*l));
		conf_apply_defaults(conf_listen_keys, nitems(conf_listen_keys),
		    l);
		w = conf_where_of(ctx, e);
		l->file = w.file;
		l->line = w.line;
		set = conf_walk_entry(ctx, e, k->name, i, conf_listen_keys,
		    nitems(conf_listen_keys), l);
		if (!conf_entry_complete(ctx, e, k->name, i, conf_listen_keys,
		    nitems(conf_listen_keys), set) || l->address == NULL ||
		    l->port == 0) {
			free(l->address);
			continue;
		}
		conf->nlisten++;
	}
}

static void
conf_special_relay(struct conf_ctx *ctx, const config_setting_t *s,
    const struct conf_key *k)
{
	struct conf		*conf = ctx->conf;
	struct conf_cidr	*c;
	const config_setting_t	*e;
	char			 err[512];
	int			 i, n;

	if (!conf_is_string_list(ctx, s, k->name))
		return;
	free(conf->relay_networks);
	n = config_setting_length(s);
	conf->relay_networks = xcalloc(n > 0 ? n : 1, sizeof(*c));
	conf->nrelay_networks = 0;
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, i);
		c = &conf->relay_networks[conf->nrelay_networks];
		if (conf_cidr_parse_err(config_setting_get_string(e), c, err,
		    sizeof(err)) == -1) {
			conf_serr(ctx, false, e, "%s: %s", k->name, err);
			continue;
		}
		if (c->prefix == 0)
			conf_serr(ctx, true, e, "%s: '%s' matches every "
			    "address: this is an open relay", k->name,
			    c->family == AF_INET ? "0.0.0.0/0" : "::/0");
		conf->nrelay_networks++;
	}
}

static void
conf_dkim_free(struct conf_dkim *d, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		free(d[i].domain);
		free(d[i].selector);
		free(d[i].key);
	}
	free(d);
}

static void
conf_special_dkim(struct conf_ctx *ctx, const config_setting_t *s,
    const struct conf_key *k)
{
	struct conf		*conf = ctx->conf;
	struct conf_dkim	*d;
	struct conf_where	 w;
	const config_setting_t	*e;
	unsigned int		 set;
	size_t			 j;
	int			 i, n;

	if (!conf_is_group_list(ctx, s, k->name))
		return;
	conf_dkim_free(conf->dkim, conf->ndkim);
	n = config_setting_length(s);
	conf->dkim = xcalloc(n > 0 ? n : 1, sizeof(*conf->dkim));
	conf->ndkim = 0;
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, i);
		d = &conf->dkim[conf->ndkim];
		memset(d, 0, sizeof(*d));
		w = conf_where_of(ctx, e);
		d->file = w.file;
		d->line = w.line;
		set = conf_walk_entry(ctx, e, k->name, i, conf_dkim_keys,
		    nitems(conf_dkim_keys), d);
		if (!conf_entry_complete(ctx, e, k->name, i, conf_dkim_keys,
		    nitems(conf_dkim_keys), set) || d->domain == NULL ||
		    d->selector == NULL || d->key == NULL)
			goto drop;
		for (j = 0; j < conf->ndkim; j++) {
			if (strcasecmp(conf->dkim[j].domain, d->domain) == 0 &&
			    strcasecmp(conf->dkim[j].selector,
			    d->selector) == 0) {
				conf_serr(ctx, false, e, "%s[%d]: duplicate "
				    "entry for selector '%s' of domain '%s' "
				    "(first at line %d)", k->name, i,
				    d->selector, d->domain,
				    conf->dkim[j].line);
				goto drop;
			}
		}
		conf->ndkim++;
		continue;
drop:
		free(d->domain);
		free(d->selector);
		free(d->key);
	}
}

static void
conf_policy_free(struct conf_tls_policy *p, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(p[i].domain);
	free(p);
}

static void
conf_special_policy(struct conf_ctx *ctx, const config_setting_t *s,
    const struct conf_key *k)
{
	struct conf		*conf = ctx->conf;
	struct conf_tls_policy	*p;
	struct conf_where	 w;
	const config_setting_t	*e;
	unsigned int		 set;
	size_t			 j;
	int			 i, n;

	if (!conf_is_group_list(ctx, s, k->name))
		return;
	conf_policy_free(conf->tls_policy, conf->ntls_policy);
	n = config_setting_length(s);
	conf->tls_policy = xcalloc(n > 0 ? n : 1, sizeof(*conf->tls_policy));
	conf->ntls_policy = 0;
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, i);
		p = &conf->tls_policy[conf->ntls_policy];
		memset(p, 0, sizeof(*p));
		p->tls = (enum conf_out_tls)-1;
		w = conf_where_of(ctx, e);
		p->file = w.file;
		p->line = w.line;
		set = conf_walk_entry(ctx, e, k->name, i, conf_policy_keys,
		    nitems(conf_policy_keys), p);
		if (!conf_entry_complete(ctx, e, k->name, i, conf_policy_keys,
		    nitems(conf_policy_keys), set) || p->domain == NULL ||
		    (int)p->tls == -1)
			goto drop;
		for (j = 0; j < conf->ntls_policy; j++) {
			if (strcmp(conf->tls_policy[j].domain,
			    p->domain) == 0) {
				conf_serr(ctx, false, e, "%s[%d]: duplicate "
				    "domain '%s' (first at line %d)", k->name,
				    i, p->domain, conf->tls_policy[j].line);
				goto drop;
			}
		}
		conf->ntls_policy++;
		continue;
drop:
		free(p->domain);
	}
}

static void
conf_hostports_free(struct conf_hostport *h, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(h[i].host);
	free(h);
}

static void
conf_special_dns(struct conf_ctx *ctx, const config_setting_t *s,
    const struct conf_key *k)
{
	struct conf		*conf = ctx->conf;
	const config_setting_t	*e;
	char			 err[512];
	int			 i, n;

	if (!conf_is_string_list(ctx, s, k->name))
		return;
	conf_hostports_free(conf->delivery.dns_servers,
	    conf->delivery.ndns_servers);
	n = config_setting_length(s);
	conf->delivery.dns_servers = n > 0 ?
	    xcalloc(n, sizeof(*conf->delivery.dns_servers)) : NULL;
	conf->delivery.ndns_servers = 0;
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, i);
		if (conf_hostport_parse(config_setting_get_string(e), 53, true,
		    &conf->delivery.dns_servers[conf->delivery.ndns_servers],
		    NULL, err, sizeof(err)) == -1) {
			conf_serr(ctx, false, e, "%s: %s", k->name, err);
			continue;
		}
		conf->delivery.ndns_servers++;
	}
}

/* A string key holding a host[:port]; "" leaves it unset. */
static void
conf_hostport_key(struct conf_ctx *ctx, const config_setting_t *s,
    const struct conf_key *k, int default_port, bool numeric,
    struct conf_hostport *hp, bool *literal)
{
	struct conf_hostport	 tmp;
	const char		*v;
	char			 err[512];

	if (config_setting_type(s) != CONFIG_TYPE_STRING ||
	    (v = config_setting_get_string(s)) == NULL) {
		conf_serr(ctx, false, s, "%s: expected a string", k->name);
		return;
	}
	free(hp->host);
	hp->host = NULL;
	hp->port = 0;
	if (v[0] == '\0')
		return;
	if (conf_hostport_parse(v, default_port, numeric, &tmp, literal, err,
	    sizeof(err)) == -1) {
		conf_serr(ctx, false, s, "%s: %s", k->name, err);
		return;
	}
	*hp = tmp;
}

static void
conf_special_smarthost(struct conf_ctx *ctx, const config_setting_t *s,
    const struct conf_key *k)
{
	conf_hostport_key(ctx, s, k, 25, false, &ctx->conf->delivery.smarthost,
	    &ctx->conf->delivery.smarthost_literal);
}

static void
conf_special_metrics(struct conf_ctx *ctx, const config_setting_t *s,
    const struct conf_key *k)
{
	conf_hostport_key(ctx, s, k, 0, true, &ctx->conf->metrics.listen,
	    NULL);
}

static void
conf_special_events(struct conf_ctx *ctx, const config_setting_t *s,
    const struct conf_key *k)
{
	const config_setting_t	*e;
	const char		*v;
	char			 ebuf[CONF_ESC_MAX];
	unsigned int		 events = 0;
	int			 i;

	if (!conf_is_string_list(ctx, s, k->name))
		return;
	for (i = 0; (e = config_setting_get_elem(s, i)) != NULL; i++) {
		v = config_setting_get_string(e);
		if (strcasecmp(v, "failed") == 0)
			events |= CONF_EVENT_FAILED;
		else if (strcasecmp(v, "expired") == 0)
			events |= CONF_EVENT_EXPIRED;
		else {
			conf_serr(ctx, false, e, "%s: '%s' is not one of "
			    "failed, expired", k->name, conf_esc(ebuf, v));
			return;
		}
	}
	ctx->conf->escalation.events = events;
}

/*
 * libconfig 1.5 reads an integer without the L suffix into 32 bits and
 * silently keeps the low bits: "max_message_size = 4294968320;" would
 * become 1024.  Scan the source text for integer literals that do not fit
 * and report them at their line; conf_set then skips those settings.
 */
static void
conf_scan_ints(struct conf_ctx *ctx, const char *file)
{
	FILE		*f;
	char		*buf, *p, *end, *q, tok[64];
	size_t		 len;
	long long	 v;
	int		 line = 1;
	bool		 hex;

	if ((f = fopen(file, "r")) == NULL)
		return;
	buf = xmalloc(CONF_SCAN_MAX + 1);
	len = fread(buf, 1, CONF_SCAN_MAX + 1, f);
	fclose(f);
	if (len > CONF_SCAN_MAX) {
		free(buf);
		return;
	}
	buf[len] = '\0';
	for (p = buf, end = buf + len; p < end;) {
		if (*p == '\n') {
			line++;
			p++;
		} else if (*p == '#' || *p == '@' ||
		    (p[0] == '/' && p[1] == '/')) {
			while (p < end && *p != '\n')
				p++;
		} else if (p[0] == '/' && p[1] == '*') {
			for (p += 2; p < end && !(p[0] == '*' && p[1] == '/');
			    p++)
				if (*p == '\n')
					line++;
			p += p < end ? 2 : 0;
		} else if (*p == '"') {
			for (p++; p < end && *p != '"' && *p != '\n'; p++)
				if (*p == '\\' && p + 1 < end && p[1] != '\n')
					p++;
			p += p < end && *p == '"' ? 1 : 0;
		} else if (isalpha((unsigned char)*p) || *p == '_' ||
		    *p == '*') {
			while (p < end && (isalnum((unsigned char)*p) ||
			    *p == '_' || *p == '*' || *p == '-'))
				p++;
		} else if (isdigit((unsigned char)*p) || ((*p == '-' ||
		    *p == '+') && isdigit((unsigned char)p[1]))) {
			q = p++;
			while (p < end && (isalnum((unsigned char)*p) ||
			    *p == '.' || ((*p == '-' || *p == '+') &&
			    (p[-1] == 'e' || p[-1] == 'E'))))
				p++;
			len = (size_t)(p - q);
			if (len >= sizeof(tok))
				len = sizeof(tok) - 1;
			memcpy(tok, q, len);
			tok[len] = '\0';
			hex = strstr(tok, "0x") != NULL ||
			    strstr(tok, "0X") != NULL;
			/* Floats and 64-bit (L) literals are fine. */
			if (tok[len - 1] == 'L' || strchr(tok, '.') != NULL ||
			    (!hex && strpbrk(tok, "eE") != NULL))
				continue;
			errno = 0;
			v = strtoll(tok, NULL, hex ? 16 : 10);
			if (errno != ERANGE && v >= INT32_MIN && v <= INT32_MAX)
				continue;
			conf_at(ctx, false, file, line, "integer %s does not "
			    "fit in 32 bits; write it as %sL", tok, tok);
			if (ctx->nbadint < nitems(ctx->badint)) {
				ctx->badint[ctx->nbadint].file = file;
				ctx->badint[ctx->nbadint++].line = line;
			}
		} else
			p++;
	}
	free(buf);
}

/* Intern the file of every setting, so conf_scan_ints sees them all. */
static void
conf_collect_files(struct conf_ctx *ctx, const config_setting_t *s)
{
	const config_setting_t	*e;
	int			 i;

	(void)conf_srcfile(ctx, config_setting_source_file(s));
	if (!config_setting_is_aggregate(s))
		return;
	for (i = 0; (e = config_setting_get_elem(s, i)) != NULL; i++)
		conf_collect_files(ctx, e);
}

/* Cross-key checks and files that must exist. */

/* Where key name was set; the main file without a line if it was not. */
static struct conf_where
conf_seen(struct conf_ctx *ctx, const char *name)
{
	const struct conf_key	*k;
	struct conf_where	 w = { NULL, 0 };

	k = conf_key_find(conf_keys, nitems(conf_keys), name);
	if (k != NULL && ctx->seen[k - conf_keys].file != NULL)
		w = ctx->seen[k - conf_keys];
	return (w);
}

/*
 * path (the value of key name, set at w) must exist; for the hook command
 * it must also be an executable regular file that only its owner may
 * change, since postern runs it.
 */
static void
conf_check_file(struct conf_ctx *ctx, const char *name, const char *path,
    struct conf_where w, bool command)
{
	struct stat	 st;
	char		 ebuf[CONF_ESC_MAX];
	const char	*p = conf_esc(ebuf, path);

	if (path == NULL || path[0] == '\0')
		return;
	if (command && path[0] != '/') {
		conf_at(ctx, false, w.file, w.line, "%s: %s: not an absolute "
		    "path", name, p);
		return;
	}
	if (stat(path, &st) == -1) {
		conf_at(ctx, false, w.file, w.line, "%s: %s: %s", name, p,
		    strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		conf_at(ctx, false, w.file, w.line, "%s: %s: is a directory",
		    name, p);
		return;
	}
	if (!command)
		return;
	if (!S_ISREG(st.st_mode))
		conf_at(ctx, false, w.file, w.line, "%s: %s: not a regular "
		    "file", name, p);
	else if ((st.st_mode & 0111) == 0 || access(path, X_OK) == -1)
		conf_at(ctx, false, w.file, w.line, "%s: %s: not executable",
		    name, p);
	else if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
		conf_at(ctx, false, w.file, w.line, "%s: %s: is group or "
		    "world writable (mode %04o)", name, p,
		    (unsigned int)(st.st_mode & 07777));
}

static bool
conf_listen_same(const struct conf_listen *a, const struct conf_listen *b)
{
	unsigned char	aa[16], bb[16];
	int		af;

	if (a->port != b->port)
		return (false);
	if (strcmp(a->address, "*") == 0 || strcmp(b->address, "*") == 0)
		return (strcmp(a->address, b->address) == 0);
	af = strchr(a->address, ':') != NULL ? AF_INET6 : AF_INET;
	if ((strchr(b->address, ':') != NULL ? AF_INET6 : AF_INET) != af)
		return (false);
	if (inet_pton(af, a->address, aa) != 1 ||
	    inet_pton(af, b->address, bb) != 1)
		return (false);
	return (memcmp(aa, bb, af == AF_INET ? 4 : 16) == 0);
}

static void
conf_check(struct conf_ctx *ctx)
{
	struct conf		*c = ctx->conf;
	struct conf_where	 w, w2;
	const struct conf_listen *l;
	char			 name[32];
	size_t			 i, j;
	bool			 verify;

	for (i = 0; i < c->nlisten; i++) {
		l = &c->listen[i];
		for (j = 0; j < i; j++) {
			if (conf_listen_same(l, &c->listen[j])) {
				conf_at(ctx, false, l->file, l->line, "listen"
				    "[%zu]: %s port %d is already used by the "
				    "listener at line %d", i, l->address,
				    l->port, c->listen[j].line);
				break;
			}
		}
		if (l->tls != CONF_IN_TLS_NONE &&
		    (c->tls.cert[0] == '\0' || c->tls.key[0] == '\0'))
			conf_at(ctx, false, l->file, l->line, "listen[%zu]: "
			    "tls \"%s\" needs tls.cert and tls.key", i,
			    conf_in_tls_name(l->tls));
		if (l->auth != CONF_AUTH_NONE && c->auth.users_file[0] == '\0')
			conf_at(ctx, true, l->file, l->line, "listen[%zu]: "
			    "auth \"%s\" but auth.users_file is not set: no "
			    "login can succeed", i,
			    conf_auth_mode_name(l->auth));
	}

	if (c->delivery.max_per_destination > c->delivery.pool_size) {
		w = conf_seen(ctx, "delivery.max_per_destination");
		if (w.file == NULL)
			w = conf_seen(ctx, "delivery.pool_size");
		conf_at(ctx, false, w.file, w.line, "delivery."
		    "max_per_destination (%d) must not exceed delivery."
		    "pool_size (%d)",
		    c->delivery.max_per_destination, c->delivery.pool_size);
	}
	if (c->retry.max_interval < c->retry.initial) {
		w = conf_seen(ctx, "retry.max_interval");
		if (w.file == NULL)
			w = conf_seen(ctx, "retry.initial");
		conf_at(ctx, false, w.file, w.line, "retry.max_interval (%d) "
		    "must not be less than retry.initial (%d)",
		    c->retry.max_interval, c->retry.initial);
	}
	if (c->retry.max_interval > c->retry.max_age) {
		w = conf_seen(ctx, "retry.max_interval");
		if (w.file == NULL)
			w = conf_seen(ctx, "retry.max_age");
		conf_at(ctx, true, w.file, w.line, "retry.max_interval (%d) "
		    "exceeds retry.max_age (%d): a deferred message gets one "
		    "retry at most", c->retry.max_interval, c->retry.max_age);
	}

	w = conf_seen(ctx, "delivery.smarthost_user");
	if (c->delivery.smarthost_user[0] != '\0') {
		if (c->delivery.smarthost_password_file[0] == '\0')
			conf_at(ctx, false, w.file, w.line, "delivery."
			    "smarthost_user needs delivery."
			    "smarthost_password_file");
		if (c->delivery.smarthost.host == NULL)
			conf_at(ctx, true, w.file, w.line, "delivery."
			    "smarthost_user is set but delivery.smarthost is "
			    "not: it is not used");
	}
	if (c->escalation.command[0] != '\0' && c->escalation.events == 0) {
		w = conf_seen(ctx, "escalation.events");
		conf_at(ctx, true, w.file, w.line, "escalation.events is "
		    "empty: escalation.command is never run");
	}

	conf_check_file(ctx, "tls.cert", c->tls.cert,
	    conf_seen(ctx, "tls.cert"), false);
	conf_check_file(ctx, "tls.key", c->tls.key,
	    conf_seen(ctx, "tls.key"), false);
	conf_check_file(ctx, "auth.users_file", c->auth.users_file,
	    conf_seen(ctx, "auth.users_file"), false);
	for (i = 0; i < c->ndkim; i++) {
		w2.file = c->dkim[i].file;
		w2.line = c->dkim[i].line;
		snprintf(name, sizeof(name), "dkim[%zu].key", i);
		conf_check_file(ctx, name, c->dkim[i].key, w2, false);
	}
	verify = c->delivery.tls == CONF_OUT_TLS_VERIFY;
	for (i = 0; i < c->ntls_policy; i++)
		verify |= c->tls_policy[i].tls == CONF_OUT_TLS_VERIFY;
	if (verify)
		conf_check_file(ctx, "delivery.ca_file", c->delivery.ca_file,
		    conf_seen(ctx, "delivery.ca_file"), false);
	conf_check_file(ctx, "delivery.smarthost_password_file",
	    c->delivery.smarthost_password_file,
	    conf_seen(ctx, "delivery.smarthost_password_file"), false);
	conf_check_file(ctx, "escalation.command", c->escalation.command,
	    conf_seen(ctx, "escalation.command"), true);
}

/* Construction and destruction. */

/* Defaults shared by conf_load and conf_default. */
static struct conf *
conf_new(void)
{
	struct conf	*c;
	char		 host[SMTP_DOMAIN_MAX + 1];

	c = xcalloc(1, sizeof(*c));
	conf_apply_defaults(conf_keys, nitems(conf_keys), c);

	if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
		strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	c->hostname = xstrdup(host);
	util_lowercase(c->hostname);

	c->listen = xcalloc(1, sizeof(*c->listen));
	c->listen[0].address = xstrdup("127.0.0.1");
	c->listen[0].port = 2525;
	c->listen[0].tls = CONF_IN_TLS_NONE;
	c->listen[0].auth = CONF_AUTH_NONE;
	c->nlisten = 1;

	c->relay_networks = xcalloc(2, sizeof(*c->relay_networks));
	(void)conf_cidr_parse("127.0.0.0/8", &c->relay_networks[0]);
	(void)conf_cidr_parse("::1/128", &c->relay_networks[1]);
	c->nrelay_networks = 2;

	c->escalation.events = CONF_EVENT_FAILED | CONF_EVENT_EXPIRED;
	return (c);
}

/* The embedded default of SPEC section 1. */
struct conf *
conf_default(void)
{
	struct conf	*c = conf_new();

	free(c->user);
	c->user = NULL;
	free(c->spool_dir);
	c->spool_dir = xstrdup("./var/spool");
	free(c->control_socket);
	c->control_socket = xstrdup("./var/run/control.sock");
	return (c);
}

/* Read and validate a configuration file; see conf.h. */
struct conf *
conf_load(const char *path, struct conf_errors *errs)
{
	struct conf_ctx		 ctx;
	struct conf_errors	 local;
	struct stat		 st;
	config_t		 cfg;
	const char		*efile, *slash;
	size_t			 i;
	int			 eline;

	memset(&ctx, 0, sizeof(ctx));
	memset(&local, 0, sizeof(local));
	ctx.errs = errs != NULL ? errs : &local;
	ctx.path = path;
	ctx.conf = conf_new();
	ctx.conf->path = xstrdup(path);
	ctx.seen = xcalloc(nitems(conf_keys), sizeof(*ctx.seen));
	/* @include names are relative to the main file's directory. */
	if ((slash = strrchr(path, '/')) != NULL)
		ctx.incdir = slash == path ? xstrdup("/") :
		    xstrndup(path, slash - path);

	if (stat(path, &st) == -1) {
		conf_at(&ctx, false, path, 0, "%s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		conf_at(&ctx, false, path, 0, "not a regular file");
		goto out;
	}
	config_init(&cfg);
	if (ctx.incdir != NULL)
		config_set_include_dir(&cfg, ctx.incdir);
	if (config_read_file(&cfg, path) != CONFIG_TRUE) {
		efile = config_error_file(&cfg);
		eline = config_error_line(&cfg);
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			conf_at(&ctx, false, path, 0, "cannot read the file");
		else
			conf_at(&ctx, false, conf_srcfile(&ctx, efile), eline,
			    "%s", config_error_text(&cfg) != NULL ?
			    config_error_text(&cfg) : "syntax error");
		config_destroy(&cfg);
		goto out;
	}
	conf_collect_files(&ctx, config_root_setting(&cfg));
	for (i = 0; i < ctx.conf->nsrcfiles; i++)
		conf_scan_ints(&ctx, ctx.conf->srcfiles[i]);
	conf_walk(&ctx, config_root_setting(&cfg), "");
	config_destroy(&cfg);
	conf_check(&ctx);
out:
	free(ctx.seen);
	free(ctx.incdir);
	conf_errors_free(&local);
	if (ctx.failed) {
		conf_free(ctx.conf);
		return (NULL);
	}
	return (ctx.conf);
}

void
conf_free(struct conf *c)
{
	size_t	i;

	if (c == NULL)
		return;
	free(c->path);
	free(c->hostname);
	free(c->user);
	free(c->spool_dir);
	free(c->control_socket);
	free(c->control_socket_group);
	conf_listen_free(c->listen, c->nlisten);
	free(c->tls.cert);
	free(c->tls.key);
	free(c->auth.users_file);
	free(c->relay_networks);
	free(c->relay_spf_domain);
	conf_dkim_free(c->dkim, c->ndkim);
	free(c->delivery.ca_file);
	conf_hostports_free(c->delivery.dns_servers, c->delivery.ndns_servers);
	free(c->delivery.smarthost.host);
	free(c->delivery.smarthost_user);
	free(c->delivery.smarthost_password_file);
	conf_policy_free(c->tls_policy, c->ntls_policy);
	free(c->escalation.command);
	free(c->metrics.listen.host);
	for (i = 0; i < c->nsrcfiles; i++)
		free(c->srcfiles[i]);
	free(c->srcfiles);
	free(c);
}
