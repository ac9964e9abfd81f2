/*
 * harness.h: runs the real posternd for one integration test.
 *
 * Each test (a Criterion child process) makes its own struct harness: a
 * temp dir under /tmp holding the generated config, users file, TLS
 * certificates, spool, control socket and the daemon's log.  Ports come
 * from bind(0).  The delivery side points at a TCP port and a UDP port that
 * the harness holds bound but never serves, so accepted mail stays queued.
 * harness_free() at the end of a passing test stops the daemon and removes
 * the dir; when a test fails first, an atexit hook kills the daemon, keeps
 * the dir and prints its path and the log's tail to stderr.
 *
 * Delivery tests add real peers: a dnsmasq on a free UDP port of 127.0.0.1
 * (harness_dns_start) and fakemx sinks (harness_mx_start), each on its own
 * 127.0.0.x address and all on one TCP port that this test alone holds
 * bound on 127.0.0.1 (harness_mx_port), so parallel tests never meet.
 * Peers die with the test like the daemon: harness_free() stops them and
 * the atexit hook kills them.
 *
 * Functions return 0/-1 (or NULL) and leave a message in harness_err(h).
 */
#ifndef POSTERN_HARNESS_H
#define POSTERN_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "smtpc.h"

#define HARNESS_MAX_LISTENERS	8
#define HARNESS_ERR_MAX		4096
#define HARNESS_MAX_MX		8

struct harness_listener {
	char	address[64];
	int	port;
	char	tls[16];	/* "none" | "starttls" | "implicit" */
	char	auth[16];	/* "none" | "optional" | "required" */
};

/* One fakemx sink started by harness_mx_start(). */
struct harness_mx {
	char	addr[64];	/* listens on addr:harness_mx_port() */
	char	dir[192];	/* its --dir: msgs/, stats.json ... */
	pid_t	pid;		/* running or -1 */
};

struct harness {
	char	 dir[128];		/* the per-test temp dir */
	char	 conf_path[256];
	char	 log_path[256];
	char	 spool_dir[256];
	char	 control_path[256];
	char	 users_path[256];
	char	 cert_dir[200];		/* dir/certs */
	char	 ca_path[256];		/* cert_dir/ca.pem */
	char	 hostname[64];		/* "relay.test" */

	struct harness_listener listeners[HARNESS_MAX_LISTENERS];
	size_t	 nlisteners;

	/* Config fragments, owned; NULL leaves the key out (daemon default). */
	char	*relay_networks;	/* value: "[ \"127.0.0.0/8\" ]" */
	char	*limits;		/* statements inside limits = { } */
	char	*extra;			/* top-level statements */
	char	*user;			/* default: current user */
	char	*delivery;		/* inside delivery = { } */
	char	*tls_policy;		/* inside tls_policy = ( ) */
	char	*retry;			/* inside retry = { } */
	bool	 tls;			/* write the tls = { } block */
	bool	 have_users;		/* write auth = { } */
	bool	 raw_conf;		/* the test wrote conf_path */
	bool	 no_conf_arg;		/* start without -c */

	int	 smarthost_port;	/* bound TCP, never listening */
	int	 dns_port;		/* bound UDP, never answering */
	int	 hold_fds[2];

	pid_t	 dns_pid;		/* dnsmasq or -1 */
	int	 dnsmasq_port;		/* its port; 0: not started */
	struct harness_mx mx[HARNESS_MAX_MX];
	size_t	 nmx;

	pid_t	 pid;			/* running daemon or -1 */
	int	 exit_status;		/* wait status at the stop */
	bool	 freed;
	char	 err[HARNESS_ERR_MAX];
	struct harness *next;		/* live list for the atexit hook */
	int	 ready_base;		/* "ready" log lines before a start */
};

/* $POSTERN_BUILDDIR (default /work/build-dev) and $POSTERN_SRCDIR. */
const char	*harness_builddir(void);
const char	*harness_srcdir(void);
/* Path of the daemon binary under the build dir. */
const char	*harness_posternd(void);

/* A new harness with defaults and no listener; NULL on failure. */
struct harness	*harness_new(void);
/*
 * Stop the daemon (if any), remove the temp dir, free.  A sanitizer report
 * in the daemon's log fails the calling test instead (dir kept).
 */
void		 harness_free(struct harness *);
const char	*harness_err(const struct harness *);

/*
 * Add a listener on address (NULL: 127.0.0.1) with a fresh free port.
 * tls != "none" turns on the certificates.  Returns the index or -1.
 */
int		 harness_listen(struct harness *, const char *address,
		    const char *tls, const char *auth);
int		 harness_port(const struct harness *, int idx);
const char	*harness_address(const struct harness *, int idx);

/* Set a config fragment (copied).  NULL restores the default. */
void		 harness_set_relay_networks(struct harness *, const char *);
void		 harness_set_limits(struct harness *, const char *);
void		 harness_append_conf(struct harness *, const char *);
void		 harness_set_user(struct harness *, const char *);
/*
 * The statements inside delivery = { } (replacing the default smarthost
 * that never answers), inside tls_policy = ( ) and inside retry = { }.
 */
void		 harness_set_delivery(struct harness *, const char *);
void		 harness_set_tls_policy(struct harness *, const char *);
void		 harness_set_retry(struct harness *, const char *);

/*
 * Add name:hash[:domains] to the users file, the hash made by
 * "posternd --hash-password" from password.  domains may be NULL.
 */
int		 harness_add_user(struct harness *, const char *name,
		    const char *password, const char *domains);
/* Run gen-certs.sh into cert_dir (once) and write the tls block. */
int		 harness_use_tls(struct harness *);
/* Write conf_path from the template and the fragments. */
int		 harness_write_conf(struct harness *);
/* Use a config file the test wrote itself (no template). */
int		 harness_set_conf_text(struct harness *, const char *text);

/*
 * Start posternd -f -c conf_path (extra appended, may be NULL) with
 * cwd = dir and stdout+stderr into log_path; wait up to 30 s for every
 * listener port to be in LISTEN state and the control socket to exist.
 */
int		 harness_start(struct harness *);
int		 harness_start_args(struct harness *,
		    const char *const *extra);
/*
 * Wait until every listener in h->listeners is in LISTEN state and the
 * control socket (if control_path is not empty) accepts; -1 if the daemon
 * exits or timeout_s passes.
 */
int		 harness_wait_ready(struct harness *, int timeout_s);
/* Whether some socket listens on TCP port (any local address). */
bool		 harness_port_is_listening(int port);
/* SIGTERM, wait up to 30 s (then SIGKILL); exit status in exit_status. */
int		 harness_stop(struct harness *);
/* SIGKILL and reap. */
int		 harness_kill9(struct harness *);
/* Start again on the same config and spool. */
int		 harness_restart(struct harness *);
/* Send a signal to the running daemon. */
int		 harness_signal(struct harness *, int sig);
/* Whether the daemon process is still running (reaps it if not). */
bool		 harness_is_running(struct harness *);
/* Wait up to timeout_s for the daemon to exit on its own. */
int		 harness_wait_exit(struct harness *, int timeout_s);

/* Whether a POSIX extended regex matches a line of the daemon's log. */
bool		 harness_log_grep(struct harness *, const char *regex);
/* Poll harness_log_grep until it matches or timeout_s passes. */
bool		 harness_log_wait(struct harness *, const char *regex,
		    int timeout_s);
/* Number of log lines matching regex. */
int		 harness_log_count(struct harness *, const char *regex);
/* The last n lines of the log in a static buffer (for messages). */
const char	*harness_log_tail(struct harness *, int nlines);

/*
 * Send one JSON line to the control socket, return the parsed reply (the
 * caller json_decref()s it) or NULL with err set.
 */
json_t		*harness_control(struct harness *, const char *request);
/*
 * The ids of "queue" (limit 100000) into ids[max][9]: the count, or -1.
 */
int		 harness_queue_ids(struct harness *, char (*ids)[9],
		    size_t max);
/* Count of queued messages, or -1. */
int		 harness_queue_count(struct harness *);
bool		 harness_queue_has(struct harness *, const char *id);
/*
 * The queue file of id (spool_dir/queue/<id>, else any file under the
 * spool whose name starts with id), malloc'd, NUL-terminated; NULL if none.
 */
char		*harness_spool_read(struct harness *, const char *id,
		    size_t *len);

/* Connect to listener idx and read the 220 greeting: NULL on failure. */
struct smtpc	*harness_session(struct harness *, int idx);
/* harness_session plus EHLO client.test answered 250. */
struct smtpc	*harness_session_ehlo(struct harness *, int idx);
/* A fresh session still gets 220 and QUIT gets 221. */
bool		 harness_still_serves(struct harness *, int idx);

/*
 * Run argv with stdin_data (may be NULL) on stdin, capture stdout+stderr
 * (up to outlen-1 bytes) into out; returns the wait status or -1.
 */
int		 harness_run(const char *const *argv, const char *stdin_data,
		    char *out, size_t outlen, int timeout_s);
/* Hash password with posternd --hash-password into hash: 0 or -1. */
int		 harness_hash_password(const char *password, char *hash,
		    size_t hashlen, char *err, size_t errlen);

/*
 * Start dnsmasq on 127.0.0.1 and a free port, answering only from args
 * (NULL-terminated dnsmasq options such as "--mx-host=ok.test,mx.ok.test,10";
 * --local=/test/ is always given, so other names under .test are
 * NXDOMAIN).  Waits until it answers a query; its log is dir/dnsmasq.log.
 */
int		 harness_dns_start(struct harness *,
		    const char *const *args);
/* Its port (for delivery.dns_servers), or 0 if not started. */
int		 harness_dns_port(const struct harness *);
int		 harness_dns_stop(struct harness *);

/*
 * The TCP port every fakemx of this test listens on (delivery.port): held
 * bound on 127.0.0.1 by this test, so free on every other 127.0.0.x.
 */
int		 harness_mx_port(const struct harness *);
/*
 * Start fakemx --listen addr:harness_mx_port() --dir dir/mx-N with args
 * (NULL-terminated, may be NULL).  Unless args has "--cert", it gets the
 * test PKI's server.pem (SAN mx.ok.test, localhost) and so offers
 * STARTTLS.  Waits for DIR/ready.  Returns the index or -1.
 */
int		 harness_mx_start(struct harness *, const char *addr,
		    const char *const *args);
/* SIGTERM (then SIGKILL) and reap. */
int		 harness_mx_stop(struct harness *, int idx);
const char	*harness_mx_dir(const struct harness *, int idx);
/* Messages the sink recorded (msgs/NNNNNN.json files). */
int		 harness_mx_messages(struct harness *, int idx);
/* Poll until the sink recorded at least n messages; false at timeout. */
bool		 harness_mx_wait_messages(struct harness *, int idx, int n,
		    int timeout_s);
/*
 * msgs/NNNNNN.ext of message n (1-based), malloc'd and NUL-terminated,
 * or NULL.  ext is "eml" or "json".
 */
char		*harness_mx_read(struct harness *, int idx, int n,
		    const char *ext, size_t *len);
/* msgs/NNNNNN.json parsed (caller json_decref()s), or NULL. */
json_t		*harness_mx_json(struct harness *, int idx, int n);
/* stats.json parsed, or NULL. */
json_t		*harness_mx_stats(struct harness *, int idx);
/* An integer of stats.json, or -1. */
long long	 harness_mx_stat(struct harness *, int idx, const char *key);
/* Whether DIR/name exists (e.g. "plaintext-mail.log"). */
bool		 harness_mx_has_file(const struct harness *, int idx,
		    const char *name);

/* Poll "queue" until it lists exactly n messages; false at timeout. */
bool		 harness_wait_queue_count(struct harness *, int n,
		    int timeout_s);

/* Whether the log has a per-message line of any queued message. */
bool		 harness_log_has_queued(struct harness *);

/*
 * Assertion helpers for the tests (they use Criterion's cr_assert, so the
 * test file includes <criterion/criterion.h> first).
 */
#define HARNESS_EXPECT(c, want, what)					\
	cr_assert(smtpc_expect((c), (want)),				\
	    "%s: got \"%s\", want \"%s\"", (what), smtpc_last(c), (want))
#define HARNESS_CMD(c, line, want)					\
	cr_assert(smtpc_cmd_expect((c), (line), (want)),		\
	    "%s: got \"%s\", want \"%s\"", (line), smtpc_last(c), (want))
#define HARNESS_START(h)						\
	cr_assert(harness_start(h) == 0, "start: %s", harness_err(h))

/*
 * Ask the test's dnsmasq for the TXT records of name (UDP, a few tries).
 * The first record's character-strings, joined, go into out and their
 * count into *nstrings (may be NULL).  Returns the number of TXT records
 * (0: NXDOMAIN or none), or -1 with err set (no answer, bad reply).
 */
int		 harness_dns_txt(struct harness *, const char *name,
		    char *out, size_t outlen, int *nstrings);

#endif /* POSTERN_HARNESS_H */
