/*
 * conf.h: the configuration of SPEC section 2, read from a libconfig file
 * into an immutable struct conf.  Every problem is reported as
 * "FILE:LINE: message" (or "FILE: message" when no line applies) through
 * struct conf_errors; see postern.conf(5) for the keys.
 */
#ifndef POSTERN_CONF_H
#define POSTERN_CONF_H

#include <sys/types.h>
#include <sys/socket.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum conf_in_tls {
	CONF_IN_TLS_NONE,
	CONF_IN_TLS_STARTTLS,
	CONF_IN_TLS_IMPLICIT
};
enum conf_auth_mode {
	CONF_AUTH_NONE,
	CONF_AUTH_OPTIONAL,
	CONF_AUTH_REQUIRED
};
enum conf_out_tls {
	CONF_OUT_TLS_NONE,
	CONF_OUT_TLS_OPPORTUNISTIC,
	CONF_OUT_TLS_ENFORCED,
	CONF_OUT_TLS_VERIFY
};
#define CONF_EVENT_FAILED	0x1
#define CONF_EVENT_EXPIRED	0x2

/*
 * "file" members point into conf->srcfiles (borrowed, valid as long as the
 * conf); they name the file a setting came from, which differs from
 * conf->path for settings in @include'd files.  NULL and line 0 mean "not
 * from a file" (a default).
 */
struct conf_listen {
	char			*address;	/* owned; numeric or "*" */
	int			 port;
	enum conf_in_tls	 tls;
	enum conf_auth_mode	 auth;
	int			 line;
	const char		*file;		/* borrowed */
};
struct conf_cidr {
	int		 family;	/* AF_INET or AF_INET6 */
	unsigned char	 addr[16];	/* network byte order, host bits zero */
	int		 prefix;
};
struct conf_dkim {
	char		*domain;	/* owned, lower case */
	char		*selector;	/* owned */
	char		*key;		/* owned; path of the private key */
	int		 line;
	const char	*file;		/* borrowed */
};
struct conf_tls_policy {
	char			*domain;	/* owned, lower case */
	enum conf_out_tls	 tls;
	int			 line;
	const char		*file;		/* borrowed */
};
/* Parsed "ip", "ip:port", "[ipv6]:port", "host:port", "[host]:port". */
struct conf_hostport {
	char	*host;		/* owned, brackets stripped; NULL = unset */
	int	 port;
};

struct conf {
	char	*path;		/* owned; NULL for the embedded default */
	char	*hostname;		/* default: gethostname() */
	char	*user;			/* default "postern"; NULL = stay */
	char	*spool_dir;		/* default "/var/spool/postern" */
	char	*control_socket;	/* "/run/postern/control.sock" */
	unsigned int control_socket_mode;	/* octal string, default 0660 */
	char	*control_socket_group;	/* "" = the daemon's primary group */

	struct conf_listen *listen;	/* owned array */
	size_t	 nlisten;

	struct {
		char	*cert;		/* "" = none */
		char	*key;		/* "" = none */
		int	 min_version;	/* TLS1_2_VERSION or TLS1_3_VERSION */
	} tls;
	struct {
		char	*users_file;	/* "" = no users: AUTH always fails */
	} auth;

	struct conf_cidr *relay_networks;	/* owned array */
	size_t	 nrelay_networks;
	char	*relay_spf_domain;	/* "" = off */

	struct {
		uint64_t max_message_size;
		int	 max_recipients;
		int	 max_inbound_connections;
		int	 max_connections_per_ip;
		int	 command_timeout;
		int	 data_timeout;
		int	 max_auth_failures;
	} limits;

	struct conf_dkim *dkim;		/* owned array */
	size_t	 ndkim;

	struct {
		int	 pool_size;
		int	 max_per_destination;
		int	 max_messages_per_connection;
		int	 idle_timeout;
		int	 connect_timeout;
		enum conf_out_tls tls;
		char	*ca_file;
		int	 port;
		/* owned; none = the servers of /etc/resolv.conf */
		struct conf_hostport *dns_servers;
		size_t	 ndns_servers;
		struct conf_hostport smarthost;	/* host NULL = MX routing */
		bool	 smarthost_literal;	/* "[host]": no MX lookup */
		char	*smarthost_user;	/* "" = no AUTH upstream */
		char	*smarthost_password_file;
	} delivery;

	struct conf_tls_policy *tls_policy;	/* owned array */
	size_t	 ntls_policy;

	struct {
		int	 initial;
		int	 max_interval;
		double	 factor;
		int	 max_age;
	} retry;
	struct {
		bool	 enabled;
	} bounces;
	struct {
		char		*command;	/* "" = off */
		unsigned int	 events;	/* CONF_EVENT_* */
		int		 timeout;
		int		 line;		/* of escalation.command */
		const char	*file;		/* borrowed */
	} escalation;
	struct {
		struct conf_hostport listen;	/* host NULL = off */
	} metrics;

	/*
	 * Source lines (and files, borrowed) of path-valued keys, so that
	 * later checks such as key loading can report FILE:LINE; 0 / NULL =
	 * not in the file.
	 */
	struct {
		int	 tls_cert, tls_key, users_file, ca_file;
		int	 smarthost_password_file, spool_dir, control_socket;
	} lines;
	struct {
		const char *tls_cert, *tls_key, *users_file, *ca_file;
		const char *smarthost_password_file, *spool_dir;
		const char *control_socket;
	} files;

	char	**srcfiles;	/* owned: every file a setting came from */
	size_t	 nsrcfiles;
};

/* Every message is "FILE:LINE: text" (or "FILE: text" when no line applies). */
struct conf_errors {
	char	**errors;
	size_t	 nerrors;
	char	**warnings;
	size_t	 nwarnings;
};

/* Hard cap on the messages kept in one struct conf_errors. */
#define CONF_ERRORS_MAX	200

/*
 * The embedded default of SPEC section 1: listen 127.0.0.1:2525 none/none,
 * relay for 127.0.0.0/8 and ::1/128, spool "./var/spool", control socket
 * "./var/run/control.sock", opportunistic MX delivery, no DKIM, user NULL
 * (stay the invoking user).
 */
struct conf	*conf_default(void);

/*
 * Read and validate path.  Problems are appended to errs (zero it before
 * the first use); returns NULL when this call added an error.  Warnings do
 * not fail the load.  errs may be NULL.
 */
struct conf	*conf_load(const char *path, struct conf_errors *errs);
void		 conf_free(struct conf *);
void		 conf_errors_free(struct conf_errors *);

/*
 * Append "FILE:LINE: text" (line > 0), "FILE: text" (line <= 0) or "text"
 * (file NULL); for modules that validate files named by the configuration
 * (keys, certificates, the users file).
 */
void		 conf_errors_add(struct conf_errors *, bool warning,
		    const char *file, int line, const char *fmt, ...)
		    __attribute__((format(printf, 5, 6)));

/*
 * True when sa falls in one of the n networks.  An IPv4-mapped IPv6
 * address (::ffff:a.b.c.d) is matched as the IPv4 address.
 */
bool		 conf_cidr_match(const struct conf_cidr *, size_t n,
		    const struct sockaddr *);
/*
 * "a.b.c.d/n", "x::y/n", or a bare address (/32, /128).  Host bits must be
 * zero.  IPv4-mapped networks with prefix >= 96 become IPv4.  0 or -1.
 */
int		 conf_cidr_parse(const char *, struct conf_cidr *);
/* As conf_cidr_parse, with the reason for a failure in err. */
int		 conf_cidr_parse_err(const char *, struct conf_cidr *,
		    char *err, size_t errlen);

/*
 * Parse a host and optional port: "ip", "ip:port", "[ipv6]:port",
 * "host", "host:port", "[host]", "[host]:port".  A missing port takes
 * default_port; default_port 0 makes the port mandatory.  With
 * numeric_only the host must be an IPv4 or IPv6 address.  *literal (may be
 * NULL) is set when the host was in brackets.  On success out->host is
 * allocated; 0 or -1 with the reason in err.
 */
int		 conf_hostport_parse(const char *, int default_port,
		    bool numeric_only, struct conf_hostport *out, bool *literal,
		    char *err, size_t errlen);

/* A syntactically valid domain name: LDH labels of 1..63, 255 at most. */
bool		 conf_is_domain(const char *);

/*
 * The tls_policy entry whose domain equals domain (case-insensitive),
 * else delivery.tls.
 */
enum conf_out_tls conf_tls_for_domain(const struct conf *,
		    const char *domain);
const char	*conf_out_tls_name(enum conf_out_tls);
const char	*conf_in_tls_name(enum conf_in_tls);
const char	*conf_auth_mode_name(enum conf_auth_mode);

#endif /* POSTERN_CONF_H */
