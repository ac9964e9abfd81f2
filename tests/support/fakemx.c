/*
 * fakemx.c: the fault-injecting SMTP sink that the delivery tests start as a
 * real peer on loopback to play an MX host or a smarthost (SPEC section 4,
 * SECURITY-CASES section 2, usage in tests/support/fakemx.md).
 *
 * One process, one libevent loop, many concurrent connections.  Each
 * connection owns its bufferevent, its stall timer and at most one open
 * message temp file.  It is freed only from a deferred event_base_once()
 * callback, after its bufferevent callbacks have been cleared, so nothing up
 * the call stack ever sees freed memory (STYLE 2.7).
 *
 * Rules (--rule) are global: their fire counters are shared by every
 * connection, which is what makes "451 once, then 250" deterministic across
 * reconnects.  Everything tests assert on is written atomically (temp file
 * and rename); a message's .eml is renamed into place before its .json and
 * both before the 250 leaves, so a test that saw the 250, or the .json,
 * always finds both files complete.  Input is bounded: command lines to
 * FAKEMX_LINE_MAX, and message bodies are streamed to disk in chunks.
 */
#include "compat.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <netinet/in.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "log.h"
#include "util.h"

/* The longest command line, CRLF excluded, before "500" and close. */
#define FAKEMX_LINE_MAX		4096
/* One formatted reply (possibly several lines). */
#define FAKEMX_REPLY_MAX	8192
/* Bytes of message data handled per step; the body is never held whole. */
#define FAKEMX_CHUNK		(64 * 1024)
/* Unsent replies above this stop reading until the client catches up. */
#define FAKEMX_OUT_HIWAT	(256 * 1024)
/* Bytes read ahead from one client; bounds memory per connection. */
#define FAKEMX_READ_HIWAT	(256 * 1024)
#define FAKEMX_RCPT_MAX		1000
#define FAKEMX_LISTEN_MAX	16
#define FAKEMX_RULE_MAX		64
/* Seconds a closing connection may take to flush its last reply. */
#define FAKEMX_CLOSE_TIMEOUT	5
/* How long STARTTLS may block to flush its 220 before the handshake. */
#define FAKEMX_FLUSH_MS		2000

enum fakemx_stage {
	FAKEMX_ST_GREETING,
	FAKEMX_ST_EHLO,
	FAKEMX_ST_STARTTLS,
	FAKEMX_ST_MAIL,
	FAKEMX_ST_RCPT,
	FAKEMX_ST_DATA,
	FAKEMX_ST_DOT,
	FAKEMX_ST_RSET,
	FAKEMX_ST_QUIT,
	FAKEMX_ST_COUNT
};

static const char *const fakemx_stage_names[] = {
	[FAKEMX_ST_GREETING] = "greeting",
	[FAKEMX_ST_EHLO] = "ehlo",
	[FAKEMX_ST_STARTTLS] = "starttls",
	[FAKEMX_ST_MAIL] = "mail",
	[FAKEMX_ST_RCPT] = "rcpt",
	[FAKEMX_ST_DATA] = "data",
	[FAKEMX_ST_DOT] = "dot",
	[FAKEMX_ST_RSET] = "rset",
	[FAKEMX_ST_QUIT] = "quit",
};
_Static_assert(nitems(fakemx_stage_names) == FAKEMX_ST_COUNT,
    "fakemx_stage_names out of step with enum fakemx_stage");

enum fakemx_action {
	FAKEMX_A_REPLY,		/* answer with rule->reply */
	FAKEMX_A_DROP,		/* close the socket, no reply */
	FAKEMX_A_DROP_AFTER,	/* data only: close after N body bytes */
	FAKEMX_A_STALL,		/* hold the reply for rule->stall seconds */
	FAKEMX_A_INJECT		/* starttls only: 220 plus a plaintext line */
};

struct fakemx_rule {
	enum fakemx_stage	 stage;
	char			*addr;		/* owned: rcpt=ADDR, or NULL */
	enum fakemx_action	 action;
	char			*reply;		/* owned; lines split by '\n' */
	double			 stall;
	uint64_t		 drop_after;
	unsigned		 limit;		/* 0: fires every time */
	unsigned		 fired;
	char			 spec[256];	/* as given, for tracing */
};

enum fakemx_state {
	FAKEMX_S_GREETING,	/* connected, greeting not sent yet */
	FAKEMX_S_CMD,		/* waiting for a command line */
	FAKEMX_S_AUTH_PLAIN,	/* 334 sent, waiting for the PLAIN blob */
	FAKEMX_S_AUTH_USER,	/* AUTH LOGIN: waiting for the user name */
	FAKEMX_S_AUTH_PASS,	/* AUTH LOGIN: waiting for the password */
	FAKEMX_S_DATA,		/* 354 sent, streaming the body */
	FAKEMX_S_STALLED,	/* a stall rule holds back a reply */
	FAKEMX_S_REJECTED,	/* non-2xx greeting: only QUIT is served */
	FAKEMX_S_CLOSING,	/* flushing the last reply, then free */
	FAKEMX_S_COUNT
};

static const char *const fakemx_state_names[] = {
	[FAKEMX_S_GREETING] = "GREETING",
	[FAKEMX_S_CMD] = "CMD",
	[FAKEMX_S_AUTH_PLAIN] = "AUTH_PLAIN",
	[FAKEMX_S_AUTH_USER] = "AUTH_USER",
	[FAKEMX_S_AUTH_PASS] = "AUTH_PASS",
	[FAKEMX_S_DATA] = "DATA",
	[FAKEMX_S_STALLED] = "STALLED",
	[FAKEMX_S_REJECTED] = "REJECTED",
	[FAKEMX_S_CLOSING] = "CLOSING",
};
_Static_assert(nitems(fakemx_state_names) == FAKEMX_S_COUNT,
    "fakemx_state_names out of step with enum fakemx_state");

/* Where the DATA scanner stands relative to the "CRLF . CRLF" terminator. */
enum fakemx_scan {
	FAKEMX_D_BOL,		/* at the start of a line (after CRLF) */
	FAKEMX_D_MID,		/* inside a line */
	FAKEMX_D_CR,		/* just after a CR */
	FAKEMX_D_DOT,		/* "." at BOL held back */
	FAKEMX_D_DOTCR		/* ".\r" at BOL held back */
};

struct fakemx_conn {
	TAILQ_ENTRY(fakemx_conn) entry;
	unsigned		 id;
	struct bufferevent	*bev;		/* owned (closes the fd) */
	struct event		*timer;		/* owned: stall timer */
	enum fakemx_state	 state;
	bool			 implicit_tls;
	bool			 tls;		/* handshake completed */
	bool			 free_scheduled;
	bool			 read_paused;	/* output above HIWAT */
	char			 peer[80];
	char			 tls_version[32];
	char			 sni[SMTP_DOMAIN_MAX + 1];

	/* A stall rule fired: what to do when its timer runs out. */
	enum fakemx_stage	 stall_stage;
	enum fakemx_state	 stall_resume;
	char			*stall_line;	/* owned: the held command */
	bool			 stall_skip;	/* replaying: ignore stalls */

	/* Per-command rule effects. */
	const char		*override;	/* borrowed from a rule */
	bool			 inject;

	/* Session. */
	bool			 greeted;
	bool			 helo_used;
	char			*ehlo;		/* owned */
	bool			 authed;
	bool			 auth_plaintext;
	char			 auth_user[256];
	char			 login_user[256];

	/* Transaction. */
	bool			 has_mail;
	char			*mail_from;	/* owned */
	char			*mail_params;	/* owned */
	char			**rcpts;	/* owned, nrcpt owned strings */
	size_t			 nrcpt;

	/* DATA. */
	FILE			*data_fp;	/* owned */
	char			 data_tmp[PATH_MAX];
	uint64_t		 data_wire;	/* bytes read off the wire */
	uint64_t		 data_size;	/* bytes recorded */
	bool			 has_drop_after;
	uint64_t		 drop_after;
	enum fakemx_scan	 scan;
	bool			 data_8bit;
	bool			 data_bare_crlf;
	bool			 data_oversize;
	bool			 data_error;
};

struct fakemx_listener {
	struct evconnlistener	*lev;		/* owned */
	struct event		*retry;		/* owned: resume after EMFILE */
	char			 spec[128];
	bool			 implicit_tls;
	int			 port;
};

struct fakemx_stats {
	uint64_t	 conns_total;
	uint64_t	 conns_current;
	uint64_t	 conns_max;
	uint64_t	 conns_refused;
	uint64_t	 messages;
	uint64_t	 rset;
	uint64_t	 quit;
	uint64_t	 tls_sessions;
	uint64_t	 auth_plaintext;
	uint64_t	 plaintext_mail;
};

struct fakemx_opts {
	const char	*dir;
	const char	*port_file;
	const char	*cert;
	const char	*key;
	const char	*hostname;
	bool		 no_starttls;
	bool		 implicit_tls;
	bool		 no_pipelining;
	bool		 no_8bitmime;
	bool		 no_smtputf8;
	uint64_t	 size;		/* 0: SIZE not advertised */
	char		*auth_user;	/* owned */
	char		*auth_pass;	/* owned */
	bool		 auth_required;
	bool		 ehlo_reject;
	unsigned	 max_conns;	/* 0: no limit */
	int		 timeout;
	int		 tls_min;
	int		 tls_max;
	bool		 debug;
};

static struct {
	struct fakemx_opts	 o;
	struct event_base	*base;		/* owned */
	SSL_CTX			*ssl_ctx;	/* owned */
	struct fakemx_listener	 listeners[FAKEMX_LISTEN_MAX];
	size_t			 nlisteners;
	struct fakemx_rule	 rules[FAKEMX_RULE_MAX];
	size_t			 nrules;
	struct fakemx_stats	 stats;
	FILE			*transcript;	/* owned */
	FILE			*plainlog;	/* owned, opened on first use */
	unsigned		 conn_seq;
	unsigned		 msg_seq;
	TAILQ_HEAD(, fakemx_conn) conns;
} fakemx_g;

/* Static scratch for the DATA scanner: one thread, one chunk at a time. */
static unsigned char	fakemx_chunk_in[FAKEMX_CHUNK];
static unsigned char	fakemx_chunk_out[FAKEMX_CHUNK + 2];

static void	fakemx_process(struct fakemx_conn *);
static void	fakemx_command(struct fakemx_conn *, char *, bool);
static void	fakemx_dot(struct fakemx_conn *);
static void	fakemx_greet(struct fakemx_conn *);
static void	fakemx_setup_bev(struct fakemx_conn *);

static void __attribute__((noreturn))
fakemx_usage(void)
{
	fprintf(stderr,
	    "usage: fakemx --listen ADDR:PORT [--listen ...] --dir DIR\n"
	    "\t[--listen-tls ADDR:PORT] [--port-file FILE] [--hostname NAME]\n"
	    "\t[--cert FILE --key FILE] [--no-starttls] [--implicit-tls]\n"
	    "\t[--tls-min-version V] [--tls-max-version V]\n"
	    "\t[--no-pipelining] [--no-8bitmime] [--no-smtputf8] [--size N]\n"
	    "\t[--auth USER:PASS] [--auth-required] [--ehlo-reject]\n"
	    "\t[--max-conns N] [--timeout SECONDS] [--debug]\n"
	    "\t[--rule STAGE:ACTION[:COUNT] ...]\n"
	    "see tests/support/fakemx.md\n");
	exit(2);
}

/*
 * Files.
 */

/* Write data to path via path.tmp and rename(2): readers see all or none. */
static int
fakemx_write_atomic(const char *path, const void *data, size_t len)
{
	char	tmp[PATH_MAX];
	int	fd;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return (-1);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0644)) == -1) {
		log_warn("open %s", tmp);
		return (-1);
	}
	if (util_write_all(fd, data, len) == -1) {
		log_warn("write %s", tmp);
		close(fd);
		unlink(tmp);
		return (-1);
	}
	close(fd);
	if (rename(tmp, path) == -1) {
		log_warn("rename %s", tmp);
		unlink(tmp);
		return (-1);
	}
	return (0);
}

static int
fakemx_path(char *buf, size_t len, const char *name)
{
	if ((size_t)snprintf(buf, len, "%s/%s", fakemx_g.o.dir, name) >= len)
		return (-1);
	return (0);
}

/* Rewrite DIR/stats.json; called after every counter change. */
static void
fakemx_stats_write(void)
{
	struct fakemx_stats	*s = &fakemx_g.stats;
	char			 buf[1024], path[PATH_MAX];
	int			 n;

	n = snprintf(buf, sizeof(buf),
	    "{\"connections_total\": %llu, \"connections_current\": %llu, "
	    "\"connections_max\": %llu, \"connections_refused\": %llu, "
	    "\"messages\": %llu, \"rset\": %llu, \"quit\": %llu, "
	    "\"tls_sessions\": %llu, \"auth_plaintext\": %llu, "
	    "\"plaintext_mail\": %llu}\n",
	    (unsigned long long)s->conns_total,
	    (unsigned long long)s->conns_current,
	    (unsigned long long)s->conns_max,
	    (unsigned long long)s->conns_refused,
	    (unsigned long long)s->messages,
	    (unsigned long long)s->rset,
	    (unsigned long long)s->quit,
	    (unsigned long long)s->tls_sessions,
	    (unsigned long long)s->auth_plaintext,
	    (unsigned long long)s->plaintext_mail);
	if (n < 0 || (size_t)n >= sizeof(buf))
		return;
	if (fakemx_path(path, sizeof(path), "stats.json") == -1)
		return;
	(void)fakemx_write_atomic(path, buf, (size_t)n);
}

/* One transcript line: "N C: text", "N S: text" or "N *: note". */
static void
fakemx_trace(struct fakemx_conn *c, char dir, const char *text, size_t len)
{
	char	esc[FAKEMX_LINE_MAX * 4 + 8];

	if (fakemx_g.transcript == NULL)
		return;
	util_escape(esc, sizeof(esc), text, len);
	fprintf(fakemx_g.transcript, "%u %c: %s\n", c != NULL ? c->id : 0,
	    dir, esc);
}

static void __attribute__((format(printf, 2, 3)))
fakemx_note(struct fakemx_conn *c, const char *fmt, ...)
{
	char	buf[1024];
	va_list	ap;
	int	n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	fakemx_trace(c, '*', buf, strlen(buf));
	log_debug("conn %u: %s", c != NULL ? c->id : 0, buf);
}

/*
 * JSON.  Strings are escaped by hand: valid UTF-8 (an SMTPUTF8 address) is
 * kept as is, anything else becomes \u00XX so the file always parses.
 */

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), else 0. */
static size_t
fakemx_utf8_len(const unsigned char *p)
{
	unsigned char	lo = 0x80, hi = 0xbf;
	size_t		n, i;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return (0);
	if (p[1] < lo || p[1] > hi)
		return (0);
	for (i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return (0);
	return (n);
}

static void
fakemx_json_str(struct evbuffer *b, const char *s)
{
	const unsigned char	*p = (const unsigned char *)s;
	size_t			 n;

	if (s == NULL) {
		evbuffer_add(b, "null", 4);
		return;
	}
	evbuffer_add(b, "\"", 1);
	for (; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			evbuffer_add_printf(b, "\\u%04x", *p);
		else if (*p < 0x80)
			evbuffer_add(b, p, 1);
		else if ((n = fakemx_utf8_len(p)) > 0) {
			evbuffer_add(b, p, n);
			p += n - 1;
		} else
			evbuffer_add_printf(b, "\\u%04x", *p);
	}
	evbuffer_add(b, "\"", 1);
}

static void
fakemx_json_key(struct evbuffer *b, const char *key, bool first)
{
	evbuffer_add_printf(b, "%s\"%s\": ", first ? "{" : ", ", key);
}

/*
 * Rules.
 */

static int
fakemx_rule_parse(const char *spec, struct fakemx_rule *r, char *err,
    size_t errlen)
{
	char		*buf, *action, *colon, *p, *end;
	const char	*stage;
	size_t		 i;
	unsigned long	 ul;
	bool		 found = false;

	memset(r, 0, sizeof(*r));
	strlcpy(r->spec, spec, sizeof(r->spec));
	buf = xstrdup(spec);
	if ((action = strchr(buf, ':')) == NULL) {
		snprintf(err, errlen, "rule \"%s\": want STAGE:ACTION[:COUNT]",
		    spec);
		goto fail;
	}
	*action++ = '\0';
	stage = buf;
	if (strncasecmp(stage, "rcpt=", 5) == 0) {
		if (stage[5] == '\0') {
			snprintf(err, errlen, "rule \"%s\": empty address",
			    spec);
			goto fail;
		}
		r->addr = xstrdup(stage + 5);
		stage = "rcpt";
	}
	for (i = 0; i < FAKEMX_ST_COUNT; i++) {
		if (strcasecmp(stage, fakemx_stage_names[i]) == 0) {
			r->stage = (enum fakemx_stage)i;
			found = true;
			break;
		}
	}
	if (!found) {
		snprintf(err, errlen, "rule \"%s\": unknown stage \"%s\"",
		    spec, stage);
		goto fail;
	}

	/* A trailing ":DIGITS" is the count; reply text keeps other colons. */
	if ((colon = strrchr(action, ':')) != NULL && colon[1] != '\0' &&
	    strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
		errno = 0;
		ul = strtoul(colon + 1, &end, 10);
		if (errno != 0 || ul == 0 || ul > UINT_MAX) {
			snprintf(err, errlen, "rule \"%s\": bad count", spec);
			goto fail;
		}
		r->limit = (unsigned)ul;
		*colon = '\0';
	}

	if (strcasecmp(action, "drop") == 0)
		r->action = FAKEMX_A_DROP;
	else if (strncasecmp(action, "drop-after=", 11) == 0) {
		if (r->stage != FAKEMX_ST_DATA) {
			snprintf(err, errlen,
			    "rule \"%s\": drop-after is for the data stage",
			    spec);
			goto fail;
		}
		errno = 0;
		r->drop_after = strtoull(action + 11, &end, 10);
		if (errno != 0 || end == action + 11 || *end != '\0') {
			snprintf(err, errlen, "rule \"%s\": bad byte count",
			    spec);
			goto fail;
		}
		r->action = FAKEMX_A_DROP_AFTER;
	} else if (strncasecmp(action, "stall=", 6) == 0) {
		errno = 0;
		r->stall = strtod(action + 6, &end);
		if (errno != 0 || end == action + 6 || *end != '\0' ||
		    !(r->stall >= 0 && r->stall <= 86400)) {
			snprintf(err, errlen, "rule \"%s\": bad stall seconds",
			    spec);
			goto fail;
		}
		r->action = FAKEMX_A_STALL;
	} else if (strcasecmp(action, "inject") == 0) {
		if (r->stage != FAKEMX_ST_STARTTLS) {
			snprintf(err, errlen,
			    "rule \"%s\": inject is for the starttls stage",
			    spec);
			goto fail;
		}
		r->action = FAKEMX_A_INJECT;
	} else if (strcmp(action, "421") == 0) {
		r->action = FAKEMX_A_REPLY;
		r->reply = xstrdup("421 4.3.2 fakemx: service shutting down");
	} else if (strlen(action) >= 3 && action[0] >= '2' &&
	    action[0] <= '5' && action[1] >= '0' && action[1] <= '9' &&
	    action[2] >= '0' && action[2] <= '9' &&
	    (action[3] == '\0' || action[3] == ' ' || action[3] == '-' ||
	    action[3] == '\\')) {
		r->action = FAKEMX_A_REPLY;
		if (action[3] == '\0')
			xasprintf(&r->reply, "%s fakemx rule", action);
		else
			r->reply = xstrdup(action);
		/* A literal "\n" separates the lines of a multi-line reply. */
		for (p = r->reply; (p = strstr(p, "\\n")) != NULL; p++) {
			*p = '\n';
			memmove(p + 1, p + 2, strlen(p + 2) + 1);
		}
	} else {
		snprintf(err, errlen, "rule \"%s\": unknown action \"%s\"",
		    spec, action);
		goto fail;
	}
	free(buf);
	return (0);
fail:
	free(buf);
	free(r->addr);
	r->addr = NULL;
	return (-1);
}

/*
 * The first rule for this stage (and recipient) that still has shots left;
 * it is counted as fired.  While a stalled command is replayed, stall rules
 * are skipped so the replay cannot stall again forever.
 */
static struct fakemx_rule *
fakemx_rule_find(struct fakemx_conn *c, enum fakemx_stage stage,
    const char *addr)
{
	struct fakemx_rule	*r;
	size_t			 i;

	for (i = 0; i < fakemx_g.nrules; i++) {
		r = &fakemx_g.rules[i];
		if (r->stage != stage)
			continue;
		if (r->addr != NULL && (addr == NULL ||
		    strcasecmp(r->addr, addr) != 0))
			continue;
		if (r->limit != 0 && r->fired >= r->limit)
			continue;
		if (r->action == FAKEMX_A_STALL && c->stall_skip)
			continue;
		r->fired++;
		fakemx_note(c, "rule %s fired (%u)", r->spec, r->fired);
		return (r);
	}
	return (NULL);
}

/*
 * Connections.
 */

static void
fakemx_enter(struct fakemx_conn *c, enum fakemx_state st)
{
	if (c->state == st)
		return;
	log_debug("conn %u: %s -> %s", c->id, fakemx_state_names[c->state],
	    fakemx_state_names[st]);
	c->state = st;
}

static void
fakemx_tx_reset(struct fakemx_conn *c)
{
	size_t	i;

	free(c->mail_from);
	free(c->mail_params);
	c->mail_from = c->mail_params = NULL;
	for (i = 0; i < c->nrcpt; i++)
		free(c->rcpts[i]);
	free(c->rcpts);
	c->rcpts = NULL;
	c->nrcpt = 0;
	c->has_mail = false;
	if (c->data_fp != NULL) {
		fclose(c->data_fp);
		c->data_fp = NULL;
		unlink(c->data_tmp);
	}
	c->data_wire = c->data_size = 0;
	c->has_drop_after = false;
	c->data_8bit = c->data_bare_crlf = false;
	c->data_oversize = c->data_error = false;
}

static void
fakemx_session_reset(struct fakemx_conn *c)
{
	fakemx_tx_reset(c);
	free(c->ehlo);
	c->ehlo = NULL;
	c->greeted = c->helo_used = c->authed = false;
	c->auth_user[0] = '\0';
}

static void
fakemx_free(struct fakemx_conn *c)
{
	if (c == NULL)
		return;
	TAILQ_REMOVE(&fakemx_g.conns, c, entry);
	fakemx_tx_reset(c);
	free(c->ehlo);
	free(c->stall_line);
	if (c->timer != NULL)
		event_free(c->timer);
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	fakemx_note(c, "closed");
	fakemx_g.stats.conns_current--;
	fakemx_stats_write();
	free(c);
}

static void
fakemx_free_cb(evutil_socket_t fd, short ev, void *arg)
{
	fakemx_free(arg);
}

/* Free c once the current callbacks have unwound; idempotent. */
static void
fakemx_schedule_free(struct fakemx_conn *c)
{
	if (c->free_scheduled)
		return;
	c->free_scheduled = true;
	fakemx_enter(c, FAKEMX_S_CLOSING);
	if (c->timer != NULL)
		evtimer_del(c->timer);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	if (event_base_once(fakemx_g.base, -1, EV_TIMEOUT, fakemx_free_cb, c,
	    NULL) == -1)
		fatalx("event_base_once");
}

/*
 * Close c: at once (flush false: the "drop" fault) or after the replies
 * already queued have left (flush true).
 */
static void
fakemx_close(struct fakemx_conn *c, bool flush)
{
	struct timeval	tv = { FAKEMX_CLOSE_TIMEOUT, 0 };

	if (c->state == FAKEMX_S_CLOSING)
		return;
	if (!flush)
		fakemx_note(c, "dropping connection");
	if (!flush ||
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		fakemx_schedule_free(c);
		return;
	}
	fakemx_enter(c, FAKEMX_S_CLOSING);
	if (c->timer != NULL)
		evtimer_del(c->timer);
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	bufferevent_enable(c->bev, EV_WRITE);
}

/* Send a reply; text holds one or more lines separated by '\n'. */
static void
fakemx_reply(struct fakemx_conn *c, const char *text)
{
	const char	*p = text, *nl;
	size_t		 len;

	for (;;) {
		nl = strchr(p, '\n');
		len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		bufferevent_write(c->bev, p, len);
		bufferevent_write(c->bev, "\r\n", 2);
		fakemx_trace(c, 'S', p, len);
		if (nl == NULL || nl[1] == '\0')
			break;
		p = nl + 1;
	}
}

static void __attribute__((format(printf, 2, 3)))
fakemx_replyf(struct fakemx_conn *c, const char *fmt, ...)
{
	char	buf[FAKEMX_REPLY_MAX];
	va_list	ap;

	va_start(ap, fmt);
	(void)vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fakemx_reply(c, buf);
}

/*
 * The positive reply of a command: the text of a 2xx/3xx rule that fired
 * for it, else dflt.
 */
static void
fakemx_reply_ok(struct fakemx_conn *c, const char *dflt)
{
	const char	*text = c->override != NULL ? c->override : dflt;

	c->override = NULL;
	fakemx_reply(c, text);
}

static void
fakemx_stall_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct fakemx_conn	*c = arg;
	char			*line;

	fakemx_note(c, "stall over");
	fakemx_enter(c, c->stall_resume);
	c->stall_skip = true;
	switch (c->stall_stage) {
	case FAKEMX_ST_GREETING:
		fakemx_greet(c);
		break;
	case FAKEMX_ST_DOT:
		fakemx_dot(c);
		break;
	default:
		line = c->stall_line;
		c->stall_line = NULL;
		if (line != NULL)
			fakemx_command(c, line, true);
		free(line);
		break;
	}
	c->stall_skip = false;
	/* Commands the client pipelined meanwhile are still buffered. */
	if (c->state != FAKEMX_S_CLOSING)
		fakemx_process(c);
}

/*
 * Apply a rule that fired for a stage.  Returns true when the rule took
 * over the command (the caller stops), false when normal processing goes
 * on (a 2xx/3xx text override, inject, drop-after, or no rule).
 */
static bool
fakemx_rule_apply(struct fakemx_conn *c, struct fakemx_rule *r,
    enum fakemx_stage stage, const char *line)
{
	struct timeval	tv;

	if (r == NULL)
		return (false);
	switch (r->action) {
	case FAKEMX_A_DROP:
		fakemx_close(c, false);
		return (true);
	case FAKEMX_A_DROP_AFTER:
		c->has_drop_after = true;
		c->drop_after = r->drop_after;
		return (false);
	case FAKEMX_A_INJECT:
		c->inject = true;
		return (false);
	case FAKEMX_A_STALL:
		c->stall_stage = stage;
		c->stall_resume = c->state;
		free(c->stall_line);
		c->stall_line = line != NULL ? xstrdup(line) : NULL;
		tv.tv_sec = (time_t)r->stall;
		tv.tv_usec = (suseconds_t)((r->stall - (double)tv.tv_sec) *
		    1e6);
		fakemx_enter(c, FAKEMX_S_STALLED);
		evtimer_add(c->timer, &tv);
		return (true);
	case FAKEMX_A_REPLY:
		if (r->reply[0] == '2' || r->reply[0] == '3') {
			c->override = r->reply;
			return (false);
		}
		fakemx_reply(c, r->reply);
		if (strncmp(r->reply, "421", 3) == 0)
			fakemx_close(c, true);
		return (true);
	}
	return (false);
}

/*
 * Greeting and TLS.
 */

static void
fakemx_greet(struct fakemx_conn *c)
{
	struct fakemx_rule	*r;

	fakemx_enter(c, FAKEMX_S_CMD);
	r = fakemx_rule_find(c, FAKEMX_ST_GREETING, NULL);
	if (r != NULL && r->action == FAKEMX_A_REPLY &&
	    (r->reply[0] == '4' || r->reply[0] == '5')) {
		/* RFC 5321 3.1: after a 554 greeting, wait for QUIT. */
		fakemx_reply(c, r->reply);
		if (strncmp(r->reply, "421", 3) == 0)
			fakemx_close(c, true);
		else
			fakemx_enter(c, FAKEMX_S_REJECTED);
		return;
	}
	if (fakemx_rule_apply(c, r, FAKEMX_ST_GREETING, NULL))
		return;
	if (c->override != NULL)
		fakemx_reply_ok(c, NULL);
	else
		fakemx_replyf(c, "220 %s ESMTP fakemx", fakemx_g.o.hostname);
}

static void
fakemx_tls_errors(struct fakemx_conn *c)
{
	unsigned long	e;
	char		buf[256];

	while ((e = bufferevent_get_openssl_error(c->bev)) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		fakemx_note(c, "TLS error: %s", buf);
	}
}

static void
fakemx_tls_done(struct fakemx_conn *c)
{
	SSL		*ssl = bufferevent_openssl_get_ssl(c->bev);
	const char	*sni;

	c->tls = true;
	strlcpy(c->tls_version, SSL_get_version(ssl), sizeof(c->tls_version));
	if ((sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) != NULL)
		strlcpy(c->sni, sni, sizeof(c->sni));
	fakemx_note(c, "TLS established %s cipher=%s sni=%s", c->tls_version,
	    SSL_get_cipher_name(ssl), c->sni[0] != '\0' ? c->sni : "-");
	fakemx_g.stats.tls_sessions++;
	fakemx_stats_write();
}

/* Write out everything queued, blocking at most FAKEMX_FLUSH_MS per step. */
static int
fakemx_flush_sync(evutil_socket_t fd, struct evbuffer *out)
{
	struct pollfd	pfd;
	int		n, rv = 0;

	/* A bufferevent keeps the start of its output frozen between writes. */
	evbuffer_unfreeze(out, 1);
	while (evbuffer_get_length(out) > 0) {
		errno = 0;
		if ((n = evbuffer_write(out, fd)) > 0)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != EINTR)) {
			rv = -1;
			break;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		pfd.revents = 0;
		if (poll(&pfd, 1, FAKEMX_FLUSH_MS) <= 0) {
			rv = -1;
			break;
		}
	}
	evbuffer_freeze(out, 1);
	return (rv);
}

/*
 * After the 220 to STARTTLS: push the 220 out in plaintext, throw away
 * whatever the client pipelined after STARTTLS (it must never be read as if
 * it came inside TLS, CVE-2011-0411), and put an accepting TLS bufferevent
 * on a dup of the socket.
 */
static int
fakemx_starttls(struct fakemx_conn *c)
{
	evutil_socket_t	 fd = bufferevent_getfd(c->bev);
	evutil_socket_t	 nfd;
	struct bufferevent *nbev;
	size_t		 junk;
	SSL		*ssl;

	if (fakemx_flush_sync(fd, bufferevent_get_output(c->bev)) == -1) {
		fakemx_note(c, "STARTTLS: cannot flush 220");
		return (-1);
	}
	junk = evbuffer_get_length(bufferevent_get_input(c->bev));
	if (junk > 0)
		fakemx_note(c, "discarded %zu bytes pipelined after STARTTLS",
		    junk);
	if ((nfd = dup(fd)) == -1) {
		log_warn("dup");
		return (-1);
	}
	(void)fcntl(nfd, F_SETFD, FD_CLOEXEC);
	if ((ssl = SSL_new(fakemx_g.ssl_ctx)) == NULL) {
		close(nfd);
		return (-1);
	}
	if ((nbev = bufferevent_openssl_socket_new(fakemx_g.base, nfd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		SSL_free(ssl);
		close(nfd);
		return (-1);
	}
	/* Freed inside its own read callback: libevent defers the release. */
	bufferevent_free(c->bev);
	c->bev = nbev;
	fakemx_setup_bev(c);
	fakemx_session_reset(c);
	return (0);
}

/*
 * Commands.
 */

static void
fakemx_cmd_ehlo(struct fakemx_conn *c, char *args)
{
	struct fakemx_rule	*r;
	char			 buf[FAKEMX_REPLY_MAX];

	if (*args == '\0') {
		fakemx_reply(c, "501 5.5.4 EHLO needs a domain");
		return;
	}
	if (fakemx_g.o.ehlo_reject) {
		fakemx_reply(c, "500 5.5.1 EHLO not supported, use HELO");
		return;
	}
	snprintf(buf, sizeof(buf), "EHLO %s", args);
	r = fakemx_rule_find(c, FAKEMX_ST_EHLO, NULL);
	if (fakemx_rule_apply(c, r, FAKEMX_ST_EHLO, buf))
		return;
	fakemx_tx_reset(c);
	free(c->ehlo);
	c->ehlo = xstrdup(args);
	c->greeted = true;
	c->helo_used = false;
	if (c->override != NULL) {
		fakemx_reply_ok(c, NULL);
		return;
	}
	snprintf(buf, sizeof(buf), "250-%s greets %s", fakemx_g.o.hostname,
	    args);
	if (!fakemx_g.o.no_pipelining)
		strlcat(buf, "\n250-PIPELINING", sizeof(buf));
	if (!fakemx_g.o.no_8bitmime)
		strlcat(buf, "\n250-8BITMIME", sizeof(buf));
	if (!fakemx_g.o.no_smtputf8)
		strlcat(buf, "\n250-SMTPUTF8", sizeof(buf));
	if (fakemx_g.o.size > 0) {
		char	tmp[64];

		snprintf(tmp, sizeof(tmp), "\n250-SIZE %llu",
		    (unsigned long long)fakemx_g.o.size);
		strlcat(buf, tmp, sizeof(buf));
	}
	if (fakemx_g.ssl_ctx != NULL && !c->tls && !c->implicit_tls &&
	    !fakemx_g.o.no_starttls)
		strlcat(buf, "\n250-STARTTLS", sizeof(buf));
	if (fakemx_g.o.auth_user != NULL && c->tls)
		strlcat(buf, "\n250-AUTH PLAIN LOGIN", sizeof(buf));
	strlcat(buf, "\n250 ENHANCEDSTATUSCODES", sizeof(buf));
	fakemx_reply(c, buf);
}

static void
fakemx_cmd_helo(struct fakemx_conn *c, char *args)
{
	if (*args == '\0') {
		fakemx_reply(c, "501 5.5.4 HELO needs a domain");
		return;
	}
	fakemx_tx_reset(c);
	free(c->ehlo);
	c->ehlo = xstrdup(args);
	c->greeted = true;
	c->helo_used = true;
	fakemx_replyf(c, "250 %s", fakemx_g.o.hostname);
}

static void
fakemx_cmd_starttls(struct fakemx_conn *c, char *args)
{
	struct fakemx_rule	*r;

	if (c->tls || c->implicit_tls) {
		fakemx_reply(c, "503 5.5.1 TLS already active");
		return;
	}
	if (fakemx_g.ssl_ctx == NULL || fakemx_g.o.no_starttls) {
		fakemx_reply(c, "502 5.5.1 STARTTLS not offered");
		return;
	}
	if (*args != '\0') {
		fakemx_reply(c, "501 5.5.4 STARTTLS takes no argument");
		return;
	}
	r = fakemx_rule_find(c, FAKEMX_ST_STARTTLS, NULL);
	if (fakemx_rule_apply(c, r, FAKEMX_ST_STARTTLS, "STARTTLS"))
		return;
	if (c->inject) {
		/* OUT-22: a reply injected after the 220, in the same write. */
		c->inject = false;
		c->override = NULL;
		fakemx_reply(c, "220 ready\n250-injected");
	} else
		fakemx_reply_ok(c, "220 2.0.0 Ready to start TLS");
	if (fakemx_starttls(c) == -1)
		fakemx_close(c, false);
}

/* Decode base64 into out; -1 on bad input or when it does not fit. */
static int
fakemx_b64_decode(const char *in, unsigned char *out, size_t outlen,
    size_t *got)
{
	size_t	len = strlen(in), pad = 0;
	int	n;

	*got = 0;
	if (len == 0)
		return (0);
	if (len % 4 != 0 || len / 4 * 3 > outlen || len > INT_MAX)
		return (-1);
	if ((n = EVP_DecodeBlock(out, (const unsigned char *)in,
	    (int)len)) < 0)
		return (-1);
	if (in[len - 1] == '=')
		pad++;
	if (in[len - 2] == '=')
		pad++;
	*got = (size_t)n - pad;
	return (0);
}

static void
fakemx_auth_check(struct fakemx_conn *c, const char *user, size_t ulen,
    const char *pass, size_t plen)
{
	fakemx_enter(c, FAKEMX_S_CMD);
	if (!c->tls) {
		c->auth_plaintext = true;
		fakemx_g.stats.auth_plaintext++;
		fakemx_stats_write();
		fakemx_note(c, "credentials received without TLS");
	}
	if (ulen == strlen(fakemx_g.o.auth_user) &&
	    memcmp(user, fakemx_g.o.auth_user, ulen) == 0 &&
	    plen == strlen(fakemx_g.o.auth_pass) &&
	    memcmp(pass, fakemx_g.o.auth_pass, plen) == 0) {
		c->authed = true;
		strlcpy(c->auth_user, fakemx_g.o.auth_user,
		    sizeof(c->auth_user));
		fakemx_reply(c, "235 2.7.0 Authentication successful");
	} else
		fakemx_reply(c, "535 5.7.8 Authentication credentials invalid");
}

/* A PLAIN blob: authzid NUL authcid NUL passwd. */
static void
fakemx_auth_plain(struct fakemx_conn *c, const char *b64)
{
	unsigned char	 buf[FAKEMX_LINE_MAX];
	unsigned char	*nul1, *nul2;
	size_t		 len;

	if (fakemx_b64_decode(b64, buf, sizeof(buf), &len) == -1 ||
	    (nul1 = memchr(buf, '\0', len)) == NULL ||
	    (nul2 = memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - buf))) ==
	    NULL) {
		fakemx_enter(c, FAKEMX_S_CMD);
		fakemx_reply(c, "501 5.5.2 Cannot decode AUTH PLAIN");
		return;
	}
	fakemx_auth_check(c, (char *)nul1 + 1, (size_t)(nul2 - nul1 - 1),
	    (char *)nul2 + 1, len - (size_t)(nul2 + 1 - buf));
}

static void
fakemx_auth_login_user(struct fakemx_conn *c, const char *b64)
{
	unsigned char	buf[FAKEMX_LINE_MAX];
	size_t		len;

	if (fakemx_b64_decode(b64, buf, sizeof(buf), &len) == -1 ||
	    len >= sizeof(c->login_user) || memchr(buf, '\0', len) != NULL) {
		fakemx_enter(c, FAKEMX_S_CMD);
		fakemx_reply(c, "501 5.5.2 Cannot decode user name");
		return;
	}
	memcpy(c->login_user, buf, len);
	c->login_user[len] = '\0';
	fakemx_enter(c, FAKEMX_S_AUTH_PASS);
	fakemx_reply(c, "334 UGFzc3dvcmQ6");
}

static void
fakemx_auth_login_pass(struct fakemx_conn *c, const char *b64)
{
	unsigned char	buf[FAKEMX_LINE_MAX];
	size_t		len;

	if (fakemx_b64_decode(b64, buf, sizeof(buf), &len) == -1) {
		fakemx_enter(c, FAKEMX_S_CMD);
		fakemx_reply(c, "501 5.5.2 Cannot decode password");
		return;
	}
	fakemx_auth_check(c, c->login_user, strlen(c->login_user),
	    (char *)buf, len);
}

/* A continuation line of an AUTH exchange (never traced in clear). */
static void
fakemx_auth_continue(struct fakemx_conn *c, const char *line)
{
	if (strcmp(line, "*") == 0) {
		fakemx_enter(c, FAKEMX_S_CMD);
		fakemx_reply(c, "501 5.0.0 Authentication cancelled");
		return;
	}
	switch (c->state) {
	case FAKEMX_S_AUTH_PLAIN:
		fakemx_auth_plain(c, line);
		break;
	case FAKEMX_S_AUTH_USER:
		fakemx_auth_login_user(c, line);
		break;
	case FAKEMX_S_AUTH_PASS:
		fakemx_auth_login_pass(c, line);
		break;
	default:
		break;
	}
}

/*
 * AUTH is offered only inside TLS, but it is served in plaintext too so
 * that a client that sends credentials in clear is caught and recorded
 * (auth_plaintext, OUT-35) rather than merely refused.
 */
static void
fakemx_cmd_auth(struct fakemx_conn *c, char *args)
{
	char	*mech = args, *init;

	if (fakemx_g.o.auth_user == NULL) {
		fakemx_reply(c, "502 5.5.1 AUTH not offered");
		return;
	}
	if (!c->greeted) {
		fakemx_reply(c, "503 5.5.1 Send EHLO first");
		return;
	}
	if (c->authed || c->has_mail) {
		fakemx_reply(c, "503 5.5.1 AUTH not allowed now");
		return;
	}
	if ((init = strchr(args, ' ')) != NULL) {
		*init++ = '\0';
		init += strspn(init, " ");
	}
	if (strcasecmp(mech, "PLAIN") == 0) {
		if (init == NULL || *init == '\0') {
			fakemx_enter(c, FAKEMX_S_AUTH_PLAIN);
			fakemx_reply(c, "334 ");
		} else
			fakemx_auth_plain(c, strcmp(init, "=") == 0 ? "" :
			    init);
	} else if (strcasecmp(mech, "LOGIN") == 0) {
		if (init == NULL || *init == '\0') {
			fakemx_enter(c, FAKEMX_S_AUTH_USER);
			fakemx_reply(c, "334 VXNlcm5hbWU6");
		} else
			fakemx_auth_login_user(c, init);
	} else
		fakemx_reply(c, "504 5.5.4 Unrecognized authentication type");
}

/*
 * "FROM:<path> params" or "TO:<path> params": the path (brackets
 * stripped) and the parameters.  -1 on a syntax error.
 */
static int
fakemx_parse_path(char *args, const char *kw, char **path, char **params)
{
	size_t	 kwlen = strlen(kw);
	char	*p, *end;

	if (strncasecmp(args, kw, kwlen) != 0)
		return (-1);
	p = args + kwlen;
	p += strspn(p, " ");
	if (*p != '<' || (end = strchr(p, '>')) == NULL)
		return (-1);
	*end = '\0';
	*path = p + 1;
	p = end + 1;
	if (*p != '\0' && *p != ' ')
		return (-1);
	p += strspn(p, " ");
	*params = p;
	return (0);
}

/* Check MAIL parameters against what was advertised; 0 or a reply. */
static const char *
fakemx_mail_params(char *params)
{
	char			*tok, *save = NULL;
	unsigned long long	 size;
	char			*end;

	for (tok = strtok_r(params, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		if (strncasecmp(tok, "SIZE=", 5) == 0) {
			errno = 0;
			size = strtoull(tok + 5, &end, 10);
			if (errno != 0 || end == tok + 5 || *end != '\0')
				return ("501 5.5.4 Bad SIZE parameter");
			if (fakemx_g.o.size > 0 && size > fakemx_g.o.size)
				return ("552 5.3.4 Message size exceeds "
				    "fixed limit");
		} else if (strcasecmp(tok, "BODY=8BITMIME") == 0) {
			if (fakemx_g.o.no_8bitmime)
				return ("555 5.5.4 BODY=8BITMIME not "
				    "supported");
		} else if (strcasecmp(tok, "SMTPUTF8") == 0) {
			if (fakemx_g.o.no_smtputf8)
				return ("555 5.5.4 SMTPUTF8 not supported");
		}
	}
	return (NULL);
}

static void
fakemx_plainlog(struct fakemx_conn *c, const char *line)
{
	char	path[PATH_MAX], esc[FAKEMX_LINE_MAX * 4 + 8];

	if (fakemx_g.plainlog == NULL) {
		if (fakemx_path(path, sizeof(path), "plaintext-mail.log") ==
		    -1 || (fakemx_g.plainlog = fopen(path, "ae")) == NULL) {
			log_warn("open plaintext-mail.log");
			return;
		}
		setvbuf(fakemx_g.plainlog, NULL, _IOLBF, 0);
	}
	util_escape(esc, sizeof(esc), line, strlen(line));
	fprintf(fakemx_g.plainlog, "connection=%u peer=%s %s\n", c->id,
	    c->peer, esc);
	fakemx_g.stats.plaintext_mail++;
	fakemx_stats_write();
}

static void
fakemx_cmd_mail(struct fakemx_conn *c, char *args)
{
	struct fakemx_rule	*r;
	char			*path, *params, *pcopy;
	const char		*bad;
	char			 line[FAKEMX_LINE_MAX + 8];

	snprintf(line, sizeof(line), "MAIL %s", args);
	if (!c->tls && !c->stall_skip)
		fakemx_plainlog(c, line);
	if (!c->greeted) {
		fakemx_reply(c, "503 5.5.1 Send EHLO/HELO first");
		return;
	}
	if (c->has_mail) {
		fakemx_reply(c, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (fakemx_g.o.auth_required && !c->authed) {
		fakemx_reply(c, "530 5.7.0 Authentication required");
		return;
	}
	if (fakemx_parse_path(args, "FROM:", &path, &params) == -1) {
		fakemx_reply(c, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	pcopy = xstrdup(params);
	bad = fakemx_mail_params(pcopy);
	free(pcopy);
	if (bad != NULL) {
		fakemx_reply(c, bad);
		return;
	}
	r = fakemx_rule_find(c, FAKEMX_ST_MAIL, NULL);
	if (fakemx_rule_apply(c, r, FAKEMX_ST_MAIL, line))
		return;
	c->has_mail = true;
	c->mail_from = xstrdup(path);
	c->mail_params = xstrdup(params);
	fakemx_reply_ok(c, "250 2.1.0 Ok");
}

static void
fakemx_cmd_rcpt(struct fakemx_conn *c, char *args)
{
	struct fakemx_rule	*r;
	char			*path, *params;
	char			 line[FAKEMX_LINE_MAX + 8];

	snprintf(line, sizeof(line), "RCPT %s", args);
	if (!c->has_mail) {
		fakemx_reply(c, "503 5.5.1 Need MAIL first");
		return;
	}
	if (fakemx_parse_path(args, "TO:", &path, &params) == -1 ||
	    *path == '\0') {
		fakemx_reply(c, "501 5.5.4 Syntax: RCPT TO:<address>");
		return;
	}
	if (c->nrcpt >= FAKEMX_RCPT_MAX) {
		fakemx_reply(c, "452 4.5.3 Too many recipients");
		return;
	}
	r = fakemx_rule_find(c, FAKEMX_ST_RCPT, path);
	if (fakemx_rule_apply(c, r, FAKEMX_ST_RCPT, line))
		return;
	c->rcpts = xreallocarray(c->rcpts, c->nrcpt + 1, sizeof(*c->rcpts));
	c->rcpts[c->nrcpt++] = xstrdup(path);
	fakemx_reply_ok(c, "250 2.1.5 Ok");
}

static void
fakemx_cmd_data(struct fakemx_conn *c, char *args)
{
	struct fakemx_rule	*r;
	int			 fd;

	if (!c->has_mail) {
		fakemx_reply(c, "503 5.5.1 Need MAIL first");
		return;
	}
	if (c->nrcpt == 0) {
		fakemx_reply(c, "554 5.5.1 No valid recipients");
		return;
	}
	if (*args != '\0') {
		fakemx_reply(c, "501 5.5.4 DATA takes no argument");
		return;
	}
	r = fakemx_rule_find(c, FAKEMX_ST_DATA, NULL);
	if (fakemx_rule_apply(c, r, FAKEMX_ST_DATA, "DATA"))
		return;
	fd = -1;
	if ((size_t)snprintf(c->data_tmp, sizeof(c->data_tmp),
	    "%s/msgs/.tmp-%u-XXXXXX", fakemx_g.o.dir, c->id) >=
	    sizeof(c->data_tmp) || (fd = mkostemp(c->data_tmp,
	    O_CLOEXEC)) == -1 || fchmod(fd, 0644) == -1 ||
	    (c->data_fp = fdopen(fd, "w")) == NULL) {
		log_warn("message temp file");
		if (fd != -1) {
			close(fd);
			unlink(c->data_tmp);
		}
		c->override = NULL;
		fakemx_reply(c, "451 4.3.0 Cannot store message");
		return;
	}
	c->scan = FAKEMX_D_BOL;
	c->data_wire = c->data_size = 0;
	fakemx_enter(c, FAKEMX_S_DATA);
	fakemx_reply_ok(c, "354 End data with <CR><LF>.<CR><LF>");
}

static void
fakemx_cmd_rset(struct fakemx_conn *c, char *args)
{
	struct fakemx_rule	*r;

	if (!c->stall_skip) {
		fakemx_g.stats.rset++;
		fakemx_stats_write();
	}
	r = fakemx_rule_find(c, FAKEMX_ST_RSET, NULL);
	if (fakemx_rule_apply(c, r, FAKEMX_ST_RSET, "RSET"))
		return;
	fakemx_tx_reset(c);
	fakemx_reply_ok(c, "250 2.0.0 Ok");
}

static void
fakemx_cmd_quit(struct fakemx_conn *c, char *args)
{
	struct fakemx_rule	*r;

	/* Counted once, not again when a stalled QUIT is replayed. */
	if (!c->stall_skip) {
		fakemx_g.stats.quit++;
		fakemx_stats_write();
	}
	r = fakemx_rule_find(c, FAKEMX_ST_QUIT, NULL);
	if (fakemx_rule_apply(c, r, FAKEMX_ST_QUIT, "QUIT"))
		return;
	fakemx_reply_ok(c, "221 2.0.0 Bye");
	fakemx_close(c, true);
}

static void
fakemx_cmd_noop(struct fakemx_conn *c, char *args)
{
	fakemx_reply(c, "250 2.0.0 Ok");
}

static void
fakemx_cmd_vrfy(struct fakemx_conn *c, char *args)
{
	fakemx_reply(c, "252 2.5.0 Cannot VRFY user");
}

static void
fakemx_cmd_help(struct fakemx_conn *c, char *args)
{
	fakemx_reply(c, "214 2.0.0 fakemx: see tests/support/fakemx.md");
}

static const struct fakemx_cmd {
	const char	*verb;
	void		(*fn)(struct fakemx_conn *, char *);
	bool		 secret;	/* arguments are credentials */
} fakemx_cmds[] = {
	{ "EHLO", fakemx_cmd_ehlo, false },
	{ "HELO", fakemx_cmd_helo, false },
	{ "STARTTLS", fakemx_cmd_starttls, false },
	{ "AUTH", fakemx_cmd_auth, true },
	{ "MAIL", fakemx_cmd_mail, false },
	{ "RCPT", fakemx_cmd_rcpt, false },
	{ "DATA", fakemx_cmd_data, false },
	{ "RSET", fakemx_cmd_rset, false },
	{ "QUIT", fakemx_cmd_quit, false },
	{ "NOOP", fakemx_cmd_noop, false },
	{ "VRFY", fakemx_cmd_vrfy, false },
	{ "HELP", fakemx_cmd_help, false },
};

/*
 * One command line (CRLF stripped, no NUL, CR or LF inside).  replay is
 * true when a stalled command is run again: it was traced already.
 */
static void
fakemx_command(struct fakemx_conn *c, char *line, bool replay)
{
	const struct fakemx_cmd	*cmd = NULL;
	const char		*mech;
	char			*args, masked[64];
	size_t			 vlen, mlen, i;

	vlen = strcspn(line, " ");
	for (i = 0; i < nitems(fakemx_cmds); i++) {
		if (strlen(fakemx_cmds[i].verb) == vlen &&
		    strncasecmp(line, fakemx_cmds[i].verb, vlen) == 0) {
			cmd = &fakemx_cmds[i];
			break;
		}
	}
	if (!replay && cmd != NULL && cmd->secret) {
		/* Keep the mechanism, mask any initial response. */
		mech = line + vlen + strspn(line + vlen, " ");
		mlen = strcspn(mech, " ");
		snprintf(masked, sizeof(masked), "%.*s %.*s%s", (int)vlen, line,
		    (int)(mlen > 20 ? 20 : mlen), mech,
		    mech[mlen] != '\0' ? " ****" : "");
		fakemx_trace(c, 'C', masked, strlen(masked));
	} else if (!replay)
		fakemx_trace(c, 'C', line, strlen(line));
	c->override = NULL;
	c->inject = false;
	if (c->state == FAKEMX_S_REJECTED) {
		if (cmd != NULL && cmd->fn == fakemx_cmd_quit) {
			fakemx_reply(c, "221 2.0.0 Bye");
			fakemx_close(c, true);
		} else
			fakemx_reply(c, "503 5.5.1 No service, send QUIT");
		return;
	}
	if (cmd == NULL) {
		fakemx_reply(c, "500 5.5.1 Command unrecognized");
		return;
	}
	args = line + vlen;
	args += strspn(args, " ");
	cmd->fn(c, args);
}

/* A complete line in any line state. */
static void
fakemx_line(struct fakemx_conn *c, char *line, size_t len)
{
	if (memchr(line, '\0', len) != NULL || strpbrk(line, "\r\n") != NULL) {
		fakemx_trace(c, 'C', line, len);
		if (c->state != FAKEMX_S_CMD && c->state != FAKEMX_S_REJECTED)
			fakemx_enter(c, FAKEMX_S_CMD);
		fakemx_reply(c, "500 5.5.2 Bare CR, LF or NUL in command");
		return;
	}
	switch (c->state) {
	case FAKEMX_S_AUTH_PLAIN:
	case FAKEMX_S_AUTH_USER:
	case FAKEMX_S_AUTH_PASS:
		fakemx_trace(c, 'C', "****", 4);
		fakemx_auth_continue(c, line);
		break;
	default:
		fakemx_command(c, line, false);
		break;
	}
}

/*
 * Message data.
 */

/* Write a message's .json next to its already renamed .eml. */
static int
fakemx_record_json(struct fakemx_conn *c, const char *path)
{
	struct evbuffer	*b;
	char		 num[32];
	size_t		 i;
	int		 rv;

	if ((b = evbuffer_new()) == NULL)
		return (-1);
	snprintf(num, sizeof(num), "%06u", fakemx_g.msg_seq);
	fakemx_json_key(b, "id", true);
	fakemx_json_str(b, num);
	fakemx_json_key(b, "mail_from", false);
	fakemx_json_str(b, c->mail_from);
	fakemx_json_key(b, "mail_params", false);
	fakemx_json_str(b, c->mail_params);
	fakemx_json_key(b, "rcpt_to", false);
	evbuffer_add(b, "[", 1);
	for (i = 0; i < c->nrcpt; i++) {
		if (i > 0)
			evbuffer_add(b, ", ", 2);
		fakemx_json_str(b, c->rcpts[i]);
	}
	evbuffer_add(b, "]", 1);
	fakemx_json_key(b, "tls", false);
	evbuffer_add_printf(b, "%s", c->tls ? "true" : "false");
	fakemx_json_key(b, "tls_version", false);
	fakemx_json_str(b, c->tls ? c->tls_version : NULL);
	fakemx_json_key(b, "sni", false);
	fakemx_json_str(b, c->sni[0] != '\0' ? c->sni : NULL);
	fakemx_json_key(b, "ehlo", false);
	fakemx_json_str(b, c->ehlo);
	fakemx_json_key(b, "helo_used", false);
	evbuffer_add_printf(b, "%s", c->helo_used ? "true" : "false");
	fakemx_json_key(b, "auth_user", false);
	fakemx_json_str(b, c->authed ? c->auth_user : NULL);
	fakemx_json_key(b, "auth_plaintext", false);
	evbuffer_add_printf(b, "%s", c->auth_plaintext ? "true" : "false");
	fakemx_json_key(b, "connection", false);
	evbuffer_add_printf(b, "%u", c->id);
	fakemx_json_key(b, "size", false);
	evbuffer_add_printf(b, "%llu", (unsigned long long)c->data_size);
	fakemx_json_key(b, "eight_bit", false);
	evbuffer_add_printf(b, "%s", c->data_8bit ? "true" : "false");
	fakemx_json_key(b, "bare_cr_lf", false);
	evbuffer_add_printf(b, "%s", c->data_bare_crlf ? "true" : "false");
	fakemx_json_key(b, "peer", false);
	fakemx_json_str(b, c->peer);
	evbuffer_add(b, "}\n", 2);
	rv = fakemx_write_atomic(path, evbuffer_pullup(b, -1),
	    evbuffer_get_length(b));
	evbuffer_free(b);
	return (rv);
}

/* Move the temp file into place as NNNNNN.eml, then write NNNNNN.json. */
static int
fakemx_record(struct fakemx_conn *c)
{
	char	path[PATH_MAX];
	FILE	*fp = c->data_fp;
	int	 bad;

	c->data_fp = NULL;
	bad = fflush(fp) != 0 || ferror(fp);
	if (fclose(fp) != 0 || bad) {
		log_warn("write %s", c->data_tmp);
		unlink(c->data_tmp);
		return (-1);
	}
	fakemx_g.msg_seq++;
	snprintf(path, sizeof(path), "%s/msgs/%06u.eml", fakemx_g.o.dir,
	    fakemx_g.msg_seq);
	if (rename(c->data_tmp, path) == -1) {
		log_warn("rename %s", c->data_tmp);
		unlink(c->data_tmp);
		return (-1);
	}
	snprintf(path, sizeof(path), "%s/msgs/%06u.json", fakemx_g.o.dir,
	    fakemx_g.msg_seq);
	if (fakemx_record_json(c, path) == -1)
		return (-1);
	fakemx_g.stats.messages++;
	fakemx_stats_write();
	fakemx_note(c, "recorded message %06u size=%llu", fakemx_g.msg_seq,
	    (unsigned long long)c->data_size);
	return (0);
}

/* The final dot has arrived: answer it (or not, as the rules say). */
static void
fakemx_dot(struct fakemx_conn *c)
{
	struct fakemx_rule	*r;
	char			 buf[128];

	fakemx_enter(c, FAKEMX_S_CMD);
	c->override = NULL;
	r = fakemx_rule_find(c, FAKEMX_ST_DOT, NULL);
	if (r != NULL && r->action == FAKEMX_A_STALL && !c->stall_skip) {
		(void)fakemx_rule_apply(c, r, FAKEMX_ST_DOT, NULL);
		return;
	}
	if (fakemx_rule_apply(c, r, FAKEMX_ST_DOT, NULL)) {
		/* A 4xx/5xx, 421 or drop: the message is not kept. */
		fakemx_tx_reset(c);
		return;
	}
	if (c->data_oversize) {
		c->override = NULL;
		fakemx_reply(c, "552 5.3.4 Message size exceeds fixed limit");
	} else if (c->data_error || fakemx_record(c) == -1) {
		c->override = NULL;
		fakemx_reply(c, "451 4.3.0 Cannot store message");
	} else {
		snprintf(buf, sizeof(buf), "250 2.0.0 Ok: queued as %06u",
		    fakemx_g.msg_seq);
		fakemx_reply_ok(c, buf);
	}
	fakemx_tx_reset(c);
}

/*
 * Scan n bytes of message data.  Bytes go to out exactly as they came off
 * the wire (still dot-stuffed) except the final ".\r\n"; the CRLF before it
 * is the end of the last line and is kept.  Only CRLF ends a line, so a
 * "\n.\r\n" smuggling attempt is data, not the end (SECURITY-CASES 1.1).
 * Returns the bytes consumed; *ended is set at the terminator.
 */
static size_t
fakemx_scan(struct fakemx_conn *c, const unsigned char *in, size_t n,
    unsigned char *out, size_t *outlen, bool *ended)
{
	size_t		i, o = 0;
	unsigned char	b;

	*ended = false;
	for (i = 0; i < n; i++) {
		b = in[i];
		if (b >= 0x80)
			c->data_8bit = true;
		switch (c->scan) {
		case FAKEMX_D_DOTCR:
			if (b == '\n') {
				*ended = true;
				*outlen = o;
				return (i + 1);
			}
			/* ".\r" then not LF: the CR was bare. */
			out[o++] = '.';
			out[o++] = '\r';
			c->scan = FAKEMX_D_CR;
			/* FALLTHROUGH */
		case FAKEMX_D_CR:
			out[o++] = b;
			if (b == '\n')
				c->scan = FAKEMX_D_BOL;
			else {
				c->data_bare_crlf = true;
				c->scan = b == '\r' ? FAKEMX_D_CR :
				    FAKEMX_D_MID;
			}
			break;
		case FAKEMX_D_DOT:
			if (b == '\r') {
				c->scan = FAKEMX_D_DOTCR;
				break;
			}
			out[o++] = '.';
			c->scan = FAKEMX_D_MID;
			/* FALLTHROUGH */
		case FAKEMX_D_MID:
		case FAKEMX_D_BOL:
			if (c->scan == FAKEMX_D_BOL && b == '.') {
				c->scan = FAKEMX_D_DOT;
				break;
			}
			out[o++] = b;
			if (b == '\r')
				c->scan = FAKEMX_D_CR;
			else {
				if (b == '\n')
					c->data_bare_crlf = true;
				c->scan = FAKEMX_D_MID;
			}
			break;
		}
	}
	*outlen = o;
	return (n);
}

/*
 * Stream buffered message data to the temp file.  Returns true when the
 * caller should keep processing input (the message ended), false when it
 * must wait for more bytes or the connection is going away.
 */
static bool
fakemx_data(struct fakemx_conn *c)
{
	struct evbuffer	*in = bufferevent_get_input(c->bev);
	size_t		 avail, n, used, outlen;
	bool		 ended;
	char		 note[64];

	for (;;) {
		if (c->has_drop_after && c->data_wire >= c->drop_after) {
			fakemx_note(c, "drop after %llu bytes of data",
			    (unsigned long long)c->data_wire);
			fakemx_close(c, false);
			return (false);
		}
		if ((avail = evbuffer_get_length(in)) == 0)
			return (false);
		n = avail < FAKEMX_CHUNK ? avail : FAKEMX_CHUNK;
		if (c->has_drop_after && c->drop_after - c->data_wire < n)
			n = (size_t)(c->drop_after - c->data_wire);
		if (evbuffer_copyout(in, fakemx_chunk_in, n) != (ev_ssize_t)n)
			fatalx("evbuffer_copyout short");
		used = fakemx_scan(c, fakemx_chunk_in, n, fakemx_chunk_out,
		    &outlen, &ended);
		evbuffer_drain(in, used);
		c->data_wire += used;
		if (fakemx_g.o.size > 0 &&
		    c->data_size + outlen > fakemx_g.o.size)
			c->data_oversize = true;
		if (!c->data_oversize && !c->data_error && outlen > 0 &&
		    fwrite(fakemx_chunk_out, 1, outlen, c->data_fp) != outlen)
			c->data_error = true;
		c->data_size += outlen;
		if (ended) {
			snprintf(note, sizeof(note), "<%llu octets of data>",
			    (unsigned long long)c->data_size);
			fakemx_trace(c, 'C', note, strlen(note));
			fakemx_trace(c, 'C', ".", 1);
			fakemx_dot(c);
			return (c->state != FAKEMX_S_CLOSING);
		}
	}
}

/*
 * The input loop: lines in command states, raw bytes in DATA.  c->bev is
 * fetched afresh on every pass because STARTTLS replaces it.
 */
static void
fakemx_process(struct fakemx_conn *c)
{
	struct evbuffer	*in;
	char		*line;
	size_t		 len;

	for (;;) {
		switch (c->state) {
		case FAKEMX_S_GREETING:
		case FAKEMX_S_STALLED:
		case FAKEMX_S_CLOSING:
			return;
		default:
			break;
		}
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) >
		    FAKEMX_OUT_HIWAT) {
			/* The client does not read its replies: wait. */
			c->read_paused = true;
			bufferevent_disable(c->bev, EV_READ);
			return;
		}
		if (c->state == FAKEMX_S_DATA) {
			if (!fakemx_data(c))
				return;
			continue;
		}
		in = bufferevent_get_input(c->bev);
		if ((line = evbuffer_readln(in, &len,
		    EVBUFFER_EOL_CRLF_STRICT)) == NULL) {
			if (evbuffer_get_length(in) > FAKEMX_LINE_MAX) {
				fakemx_note(c, "line too long");
				fakemx_reply(c, "500 5.5.2 Line too long");
				fakemx_close(c, true);
			}
			return;
		}
		if (len > FAKEMX_LINE_MAX) {
			free(line);
			fakemx_note(c, "line too long");
			fakemx_reply(c, "500 5.5.2 Line too long");
			fakemx_close(c, true);
			return;
		}
		fakemx_line(c, line, len);
		free(line);
	}
}

static void
fakemx_read_cb(struct bufferevent *bev, void *arg)
{
	fakemx_process(arg);
}

static void
fakemx_write_cb(struct bufferevent *bev, void *arg)
{
	struct fakemx_conn	*c = arg;

	if (c->state == FAKEMX_S_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			fakemx_schedule_free(c);
		return;
	}
	if (c->read_paused && evbuffer_get_length(bufferevent_get_output(bev))
	    <= FAKEMX_OUT_HIWAT / 2) {
		c->read_paused = false;
		bufferevent_enable(bev, EV_READ);
		fakemx_process(c);
	}
}

static void
fakemx_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct fakemx_conn	*c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		fakemx_tls_done(c);
		return;
	}
	if (what & BEV_EVENT_EOF)
		fakemx_note(c, "EOF from client%s", c->state == FAKEMX_S_DATA ?
		    " during DATA" : "");
	else if (what & BEV_EVENT_TIMEOUT)
		fakemx_note(c, "timeout");
	else if (what & BEV_EVENT_ERROR) {
		if (EVUTIL_SOCKET_ERROR() != 0)
			fakemx_note(c, "socket error: %s",
			    evutil_socket_error_to_string(
			    EVUTIL_SOCKET_ERROR()));
		if (bufferevent_openssl_get_ssl(bev) != NULL)
			fakemx_tls_errors(c);
	}
	fakemx_schedule_free(c);
}

static void
fakemx_setup_bev(struct fakemx_conn *c)
{
	struct timeval	tv = { fakemx_g.o.timeout, 0 };

	bufferevent_setcb(c->bev, fakemx_read_cb, fakemx_write_cb,
	    fakemx_event_cb, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, FAKEMX_READ_HIWAT);
	bufferevent_setwatermark(c->bev, EV_WRITE, FAKEMX_OUT_HIWAT / 2, 0);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	if (bufferevent_openssl_get_ssl(c->bev) != NULL)
		bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
fakemx_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct fakemx_listener	*l = arg;
	struct fakemx_conn	*c;
	char			 host[64];
	SSL			*ssl;
	int			 port = 0;

	c = xcalloc(1, sizeof(*c));
	c->id = ++fakemx_g.conn_seq;
	c->implicit_tls = l->implicit_tls;
	c->state = FAKEMX_S_GREETING;
	host[0] = '\0';
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in	*sin = (struct sockaddr_in *)sa;

		evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		port = ntohs(sin->sin_port);
		snprintf(c->peer, sizeof(c->peer), "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)sa;

		evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host,
		    sizeof(host));
		port = ntohs(sin6->sin6_port);
		snprintf(c->peer, sizeof(c->peer), "[%s]:%d", host, port);
	} else
		strlcpy(c->peer, "unknown", sizeof(c->peer));
	TAILQ_INSERT_TAIL(&fakemx_g.conns, c, entry);

	fakemx_g.stats.conns_total++;
	fakemx_g.stats.conns_current++;
	if (fakemx_g.stats.conns_current > fakemx_g.stats.conns_max)
		fakemx_g.stats.conns_max = fakemx_g.stats.conns_current;
	fakemx_stats_write();
	fakemx_note(c, "connect from %s to %s port %d%s", c->peer, l->spec,
	    l->port, l->implicit_tls ? " (implicit TLS)" : "");

	if ((c->timer = evtimer_new(fakemx_g.base, fakemx_stall_cb, c)) ==
	    NULL)
		fatalx("evtimer_new");
	if (l->implicit_tls) {
		if ((ssl = SSL_new(fakemx_g.ssl_ctx)) == NULL)
			fatalx("SSL_new");
		c->bev = bufferevent_openssl_socket_new(fakemx_g.base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	} else
		c->bev = bufferevent_socket_new(fakemx_g.base, fd,
		    BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("bufferevent_socket_new");
	fakemx_setup_bev(c);

	if (fakemx_g.o.max_conns > 0 &&
	    fakemx_g.stats.conns_current > fakemx_g.o.max_conns) {
		fakemx_g.stats.conns_refused++;
		fakemx_stats_write();
		fakemx_enter(c, FAKEMX_S_CMD);
		fakemx_reply(c, "421 4.7.0 fakemx: too many connections");
		fakemx_close(c, true);
		return;
	}
	fakemx_greet(c);
}

static void
fakemx_listener_retry_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct fakemx_listener	*l = arg;

	evconnlistener_enable(l->lev);
}

/* accept() failed (EMFILE most likely): pause this listener briefly. */
static void
fakemx_listener_error_cb(struct evconnlistener *lev, void *arg)
{
	struct fakemx_listener	*l = arg;
	struct timeval		 tv = { 0, 100 * 1000 };

	log_warnx("accept on %s: %s", l->spec,
	    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(lev);
	evtimer_add(l->retry, &tv);
}

/*
 * Start-up.
 */

/*
 * Parse "ADDR:PORT" or "[ADDR6]:PORT" into ss; port 0 is allowed (the
 * kernel picks one; see --port-file), which evutil_parse_sockaddr_port
 * refuses.
 */
static int
fakemx_parse_addr(const char *spec, struct sockaddr_storage *ss, int *sslen)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	char			 host[128], *end;
	const char		*colon;
	unsigned long		 port;
	size_t			 hlen;

	if ((colon = strrchr(spec, ':')) == NULL)
		return (-1);
	hlen = (size_t)(colon - spec);
	if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
		spec++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(host))
		return (-1);
	memcpy(host, spec, hlen);
	host[hlen] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno != 0 || end == colon + 1 || *end != '\0' || port > 65535)
		return (-1);
	memset(ss, 0, sizeof(*ss));
	if (evutil_inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*sslen = sizeof(*sin);
	} else if (evutil_inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof(*sin6);
	} else
		return (-1);
	return (0);
}

static int
fakemx_listen(struct fakemx_listener *l, char *err, size_t errlen)
{
	struct sockaddr_storage	ss;
	int			sslen = sizeof(ss);
	socklen_t		blen = sizeof(ss);

	if (fakemx_parse_addr(l->spec, &ss, &sslen) == -1) {
		snprintf(err, errlen, "%s: not ADDR:PORT", l->spec);
		return (-1);
	}
	if ((l->lev = evconnlistener_new_bind(fakemx_g.base, fakemx_accept_cb,
	    l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	    LEV_OPT_CLOSE_ON_EXEC, 1024, (struct sockaddr *)&ss,
	    sslen)) == NULL) {
		snprintf(err, errlen, "%s: bind: %s", l->spec,
		    strerror(errno));
		return (-1);
	}
	evconnlistener_set_error_cb(l->lev, fakemx_listener_error_cb);
	if ((l->retry = evtimer_new(fakemx_g.base, fakemx_listener_retry_cb,
	    l)) == NULL)
		fatalx("evtimer_new");
	if (getsockname(evconnlistener_get_fd(l->lev), (struct sockaddr *)&ss,
	    &blen) == -1) {
		snprintf(err, errlen, "%s: getsockname: %s", l->spec,
		    strerror(errno));
		return (-1);
	}
	l->port = ss.ss_family == AF_INET6 ?
	    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
	    ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return (0);
}

static int
fakemx_tls_version(const char *s)
{
	if (strcmp(s, "1.0") == 0)
		return (TLS1_VERSION);
	if (strcmp(s, "1.1") == 0)
		return (TLS1_1_VERSION);
	if (strcmp(s, "1.2") == 0)
		return (TLS1_2_VERSION);
	if (strcmp(s, "1.3") == 0)
		return (TLS1_3_VERSION);
	fatalx("TLS version \"%s\": want 1.0, 1.1, 1.2 or 1.3", s);
}

static void
fakemx_tls_init(void)
{
	SSL_CTX	*ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		fatalx("SSL_CTX_new");
	if (SSL_CTX_use_certificate_chain_file(ctx, fakemx_g.o.cert) != 1)
		fatalx("%s: cannot load certificate", fakemx_g.o.cert);
	if (SSL_CTX_use_PrivateKey_file(ctx, fakemx_g.o.key,
	    SSL_FILETYPE_PEM) != 1)
		fatalx("%s: cannot load key", fakemx_g.o.key);
	if (SSL_CTX_check_private_key(ctx) != 1)
		fatalx("%s does not match %s", fakemx_g.o.key, fakemx_g.o.cert);
	if (fakemx_g.o.tls_min != 0) {
		/* Old versions need the security level lowered to work. */
		if (fakemx_g.o.tls_min < TLS1_2_VERSION)
			SSL_CTX_set_security_level(ctx, 0);
		SSL_CTX_set_min_proto_version(ctx, fakemx_g.o.tls_min);
	}
	if (fakemx_g.o.tls_max != 0) {
		if (fakemx_g.o.tls_max < TLS1_2_VERSION) {
			SSL_CTX_set_security_level(ctx, 0);
			SSL_CTX_set_min_proto_version(ctx, 0);
		}
		SSL_CTX_set_max_proto_version(ctx, fakemx_g.o.tls_max);
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	fakemx_g.ssl_ctx = ctx;
}

/* Continue message numbers after any NNNNNN.eml already in DIR/msgs. */
static void
fakemx_scan_msgs(const char *msgdir)
{
	DIR		*d;
	struct dirent	*de;
	unsigned long	 n;
	char		*end;

	if ((d = opendir(msgdir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) != 10 ||
		    strcmp(de->d_name + 6, ".eml") != 0)
			continue;
		n = strtoul(de->d_name, &end, 10);
		if (end == de->d_name + 6 && n > fakemx_g.msg_seq &&
		    n < 999999)
			fakemx_g.msg_seq = (unsigned)n;
	}
	closedir(d);
}

static void
fakemx_signal_cb(evutil_socket_t sig, short ev, void *arg)
{
	log_debug("signal %d: exiting", (int)sig);
	event_base_loopbreak(fakemx_g.base);
}

static void
fakemx_add_listener(const char *spec, bool implicit_tls)
{
	struct fakemx_listener	*l;

	if (fakemx_g.nlisteners >= FAKEMX_LISTEN_MAX)
		fatalx("too many listeners (max %d)", FAKEMX_LISTEN_MAX);
	l = &fakemx_g.listeners[fakemx_g.nlisteners++];
	if (strlcpy(l->spec, spec, sizeof(l->spec)) >= sizeof(l->spec))
		fatalx("%s: address too long", spec);
	l->implicit_tls = implicit_tls;
}

static unsigned long long
fakemx_number(const char *opt, const char *s, unsigned long long max)
{
	unsigned long long	 n;
	char			*end;

	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || n > max || s[0] == '-')
		fatalx("--%s %s: want a number up to %llu", opt, s, max);
	return (n);
}

enum {
	FAKEMX_O_LISTEN = 256, FAKEMX_O_LISTEN_TLS, FAKEMX_O_DIR,
	FAKEMX_O_PORT_FILE, FAKEMX_O_CERT, FAKEMX_O_KEY, FAKEMX_O_NO_STARTTLS,
	FAKEMX_O_IMPLICIT, FAKEMX_O_NO_PIPELINING, FAKEMX_O_NO_8BITMIME,
	FAKEMX_O_NO_SMTPUTF8, FAKEMX_O_SIZE, FAKEMX_O_AUTH,
	FAKEMX_O_AUTH_REQUIRED, FAKEMX_O_EHLO_REJECT, FAKEMX_O_RULE,
	FAKEMX_O_MAX_CONNS, FAKEMX_O_HOSTNAME, FAKEMX_O_TIMEOUT,
	FAKEMX_O_TLS_MIN, FAKEMX_O_TLS_MAX, FAKEMX_O_DEBUG, FAKEMX_O_HELP
};

static const struct option fakemx_longopts[] = {
	{ "listen", required_argument, NULL, FAKEMX_O_LISTEN },
	{ "listen-tls", required_argument, NULL, FAKEMX_O_LISTEN_TLS },
	{ "dir", required_argument, NULL, FAKEMX_O_DIR },
	{ "port-file", required_argument, NULL, FAKEMX_O_PORT_FILE },
	{ "cert", required_argument, NULL, FAKEMX_O_CERT },
	{ "key", required_argument, NULL, FAKEMX_O_KEY },
	{ "no-starttls", no_argument, NULL, FAKEMX_O_NO_STARTTLS },
	{ "implicit-tls", no_argument, NULL, FAKEMX_O_IMPLICIT },
	{ "no-pipelining", no_argument, NULL, FAKEMX_O_NO_PIPELINING },
	{ "no-8bitmime", no_argument, NULL, FAKEMX_O_NO_8BITMIME },
	{ "no-smtputf8", no_argument, NULL, FAKEMX_O_NO_SMTPUTF8 },
	{ "size", required_argument, NULL, FAKEMX_O_SIZE },
	{ "auth", required_argument, NULL, FAKEMX_O_AUTH },
	{ "auth-required", no_argument, NULL, FAKEMX_O_AUTH_REQUIRED },
	{ "ehlo-reject", no_argument, NULL, FAKEMX_O_EHLO_REJECT },
	{ "rule", required_argument, NULL, FAKEMX_O_RULE },
	{ "max-conns", required_argument, NULL, FAKEMX_O_MAX_CONNS },
	{ "hostname", required_argument, NULL, FAKEMX_O_HOSTNAME },
	{ "timeout", required_argument, NULL, FAKEMX_O_TIMEOUT },
	{ "tls-min-version", required_argument, NULL, FAKEMX_O_TLS_MIN },
	{ "tls-max-version", required_argument, NULL, FAKEMX_O_TLS_MAX },
	{ "debug", no_argument, NULL, FAKEMX_O_DEBUG },
	{ "help", no_argument, NULL, FAKEMX_O_HELP },
	{ NULL, 0, NULL, 0 }
};

static void
fakemx_options(int argc, char **argv)
{
	struct fakemx_opts	*o = &fakemx_g.o;
	char			 err[512], *colon;
	int			 ch;

	o->hostname = "fakemx.test";
	o->timeout = 600;
	while ((ch = getopt_long(argc, argv, "", fakemx_longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case FAKEMX_O_LISTEN:
			fakemx_add_listener(optarg, false);
			break;
		case FAKEMX_O_LISTEN_TLS:
			fakemx_add_listener(optarg, true);
			break;
		case FAKEMX_O_DIR:
			o->dir = optarg;
			break;
		case FAKEMX_O_PORT_FILE:
			o->port_file = optarg;
			break;
		case FAKEMX_O_CERT:
			o->cert = optarg;
			break;
		case FAKEMX_O_KEY:
			o->key = optarg;
			break;
		case FAKEMX_O_NO_STARTTLS:
			o->no_starttls = true;
			break;
		case FAKEMX_O_IMPLICIT:
			o->implicit_tls = true;
			break;
		case FAKEMX_O_NO_PIPELINING:
			o->no_pipelining = true;
			break;
		case FAKEMX_O_NO_8BITMIME:
			o->no_8bitmime = true;
			break;
		case FAKEMX_O_NO_SMTPUTF8:
			o->no_smtputf8 = true;
			break;
		case FAKEMX_O_SIZE:
			o->size = fakemx_number("size", optarg, UINT64_MAX);
			break;
		case FAKEMX_O_AUTH:
			if ((colon = strchr(optarg, ':')) == NULL ||
			    colon == optarg)
				fatalx("--auth %s: want USER:PASS", optarg);
			free(o->auth_user);
			free(o->auth_pass);
			o->auth_user = xstrndup(optarg,
			    (size_t)(colon - optarg));
			o->auth_pass = xstrdup(colon + 1);
			break;
		case FAKEMX_O_AUTH_REQUIRED:
			o->auth_required = true;
			break;
		case FAKEMX_O_EHLO_REJECT:
			o->ehlo_reject = true;
			break;
		case FAKEMX_O_RULE:
			if (fakemx_g.nrules >= FAKEMX_RULE_MAX)
				fatalx("too many rules (max %d)",
				    FAKEMX_RULE_MAX);
			if (fakemx_rule_parse(optarg,
			    &fakemx_g.rules[fakemx_g.nrules], err,
			    sizeof(err)) == -1)
				fatalx("%s", err);
			fakemx_g.nrules++;
			break;
		case FAKEMX_O_MAX_CONNS:
			o->max_conns = (unsigned)fakemx_number("max-conns",
			    optarg, 1000000);
			break;
		case FAKEMX_O_HOSTNAME:
			o->hostname = optarg;
			break;
		case FAKEMX_O_TIMEOUT:
			o->timeout = (int)fakemx_number("timeout", optarg,
			    86400);
			break;
		case FAKEMX_O_TLS_MIN:
			o->tls_min = fakemx_tls_version(optarg);
			break;
		case FAKEMX_O_TLS_MAX:
			o->tls_max = fakemx_tls_version(optarg);
			break;
		case FAKEMX_O_DEBUG:
			o->debug = true;
			break;
		default:
			fakemx_usage();
		}
	}
	if (optind != argc || o->dir == NULL || fakemx_g.nlisteners == 0)
		fakemx_usage();
	if ((o->cert == NULL) != (o->key == NULL))
		fatalx("--cert and --key go together");
	if (o->implicit_tls) {
		size_t	i;

		for (i = 0; i < fakemx_g.nlisteners; i++)
			fakemx_g.listeners[i].implicit_tls = true;
	}
	if (o->auth_required && o->auth_user == NULL)
		fatalx("--auth-required needs --auth USER:PASS");
}

/* DIR/ready and the optional port file, once every listener is bound. */
static void
fakemx_announce(void)
{
	char	buf[FAKEMX_LISTEN_MAX * 8 + 1], path[PATH_MAX];
	size_t	i, off = 0;

	if (fakemx_g.o.port_file != NULL) {
		for (i = 0; i < fakemx_g.nlisteners; i++)
			off += (size_t)snprintf(buf + off, sizeof(buf) - off,
			    "%d\n", fakemx_g.listeners[i].port);
		if (fakemx_write_atomic(fakemx_g.o.port_file, buf, off) == -1)
			fatalx("cannot write %s", fakemx_g.o.port_file);
	}
	off = (size_t)snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (fakemx_path(path, sizeof(path), "ready") == -1 ||
	    fakemx_write_atomic(path, buf, off) == -1)
		fatalx("cannot write DIR/ready");
}

int
main(int argc, char **argv)
{
	struct event		*sigterm, *sigint;
	struct fakemx_conn	*c;
	struct rlimit		 rl;
	char			 path[PATH_MAX], err[512];
	size_t			 i;

	TAILQ_INIT(&fakemx_g.conns);
	log_init("fakemx", true, false);
	fakemx_options(argc, argv);
	log_set_debug(fakemx_g.o.debug);
	signal(SIGPIPE, SIG_IGN);

	/* A hundred concurrent connections, plus files, need headroom. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}

	if (mkdir(fakemx_g.o.dir, 0755) == -1 && errno != EEXIST)
		fatal("mkdir %s", fakemx_g.o.dir);
	if (fakemx_path(path, sizeof(path), "ready") == -1)
		fatalx("--dir too long");
	(void)unlink(path);
	if (fakemx_path(path, sizeof(path), "msgs") == -1 ||
	    (mkdir(path, 0755) == -1 && errno != EEXIST))
		fatal("mkdir %s/msgs", fakemx_g.o.dir);
	fakemx_scan_msgs(path);
	if (fakemx_path(path, sizeof(path), "transcript.log") == -1 ||
	    (fakemx_g.transcript = fopen(path, "ae")) == NULL)
		fatal("open %s/transcript.log", fakemx_g.o.dir);
	setvbuf(fakemx_g.transcript, NULL, _IOLBF, 0);

	if (fakemx_g.o.cert != NULL)
		fakemx_tls_init();
	for (i = 0; i < fakemx_g.nlisteners; i++)
		if (fakemx_g.listeners[i].implicit_tls &&
		    fakemx_g.ssl_ctx == NULL)
			fatalx("implicit TLS needs --cert and --key");

	if ((fakemx_g.base = event_base_new()) == NULL)
		fatalx("event_base_new");
	for (i = 0; i < fakemx_g.nlisteners; i++)
		if (fakemx_listen(&fakemx_g.listeners[i], err,
		    sizeof(err)) == -1)
			fatalx("%s", err);
	if ((sigterm = evsignal_new(fakemx_g.base, SIGTERM, fakemx_signal_cb,
	    NULL)) == NULL || (sigint = evsignal_new(fakemx_g.base, SIGINT,
	    fakemx_signal_cb, NULL)) == NULL)
		fatalx("evsignal_new");
	evsignal_add(sigterm, NULL);
	evsignal_add(sigint, NULL);

	fakemx_stats_write();
	fakemx_announce();
	for (i = 0; i < fakemx_g.nlisteners; i++)
		log_info("listening on %s port %d%s",
		    fakemx_g.listeners[i].spec, fakemx_g.listeners[i].port,
		    fakemx_g.listeners[i].implicit_tls ? " (implicit TLS)" :
		    "");

	event_base_dispatch(fakemx_g.base);

	/* Orderly teardown, so that LeakSanitizer runs stay quiet. */
	while ((c = TAILQ_FIRST(&fakemx_g.conns)) != NULL)
		fakemx_free(c);
	for (i = 0; i < fakemx_g.nlisteners; i++) {
		evconnlistener_free(fakemx_g.listeners[i].lev);
		event_free(fakemx_g.listeners[i].retry);
	}
	for (i = 0; i < fakemx_g.nrules; i++) {
		free(fakemx_g.rules[i].addr);
		free(fakemx_g.rules[i].reply);
	}
	event_free(sigterm);
	event_free(sigint);
	event_base_free(fakemx_g.base);
	SSL_CTX_free(fakemx_g.ssl_ctx);
	free(fakemx_g.o.auth_user);
	free(fakemx_g.o.auth_pass);
	if (fakemx_path(path, sizeof(path), "ready") == 0)
		(void)unlink(path);
	fclose(fakemx_g.transcript);
	if (fakemx_g.plainlog != NULL)
		fclose(fakemx_g.plainlog);
	return (0);
}
