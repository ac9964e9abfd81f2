/*
 * posternd.c: the daemon's main(): flags and signals of SPEC section 1.
 *
 * Start-up order matters and is the reason this file exists as it is:
 * validate the whole configuration (and the files it names) first; as
 * root, bind the listeners and create the control socket, prepare the
 * spool directory for `user`, then drop privileges and check the drop
 * took; only then open the spool (which starts the sync thread), recover
 * the queue and start serving.  SIGHUP builds a new snapshot and swaps it
 * in only when it loaded completely; SIGTERM stops accepting, lets
 * in-flight transactions finish within a grace period, and exits leaving
 * the queue intact.
 *
 * Ownership: the daemon state below owns the event base, listeners,
 * control socket, spool, queue and worker pool; everything is freed at
 * exit so that LeakSanitizer runs stay quiet.
 */
#include "compat.h"

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <ares.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <libconfig.h>
#include <openssl/crypto.h>
#include <opendkim/dkim.h>
#include <zlib.h>

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "auth.h"
#include "conf.h"
#include "control.h"
#include "deliver.h"
#include "dns.h"
#include "listener.h"
#include "pool.h"
#include "log.h"
#include "metrics.h"
#include "queue.h"
#include "rtconf.h"
#include "smtp_server.h"
#include "spfcheck.h"
#include "spool.h"
#include "stats.h"
#include "util.h"
#include "worker.h"

#define POSTERND_DEFAULT_CONF	POSTERN_CONFDIR "/postern.conf"
/* Seconds SIGTERM waits for transactions in flight. */
#define POSTERND_STOP_GRACE	30
#define POSTERND_WORKERS	4

struct posternd {
	struct event_base	*base;
	const char		*conf_path;	/* NULL: embedded default */
	struct listener		**listeners;
	size_t			 nlisteners;
	struct control		*control;
	struct spool		*spool;
	struct queue		*queue;
	struct worker_pool	*workers;
	struct dns		*dns;
	struct spfcheck		*spf;
	struct metrics_http	*metrics;	/* NULL when metrics.listen is off */
	char			*metrics_listen;	/* "host:port" it serves */
	struct event		*ev_hup, *ev_term, *ev_int, *ev_stop;
	qid_t			*recovered_escs;	/* escalations to re-run */
	size_t			 nrecovered_escs;
	bool			 stopping;
	double			 stop_deadline;
};

static struct posternd	pd;

static void
posternd_usage(void)
{
	fprintf(stderr, "usage: posternd [-dfnV] [-c file] "
	    "[--hash-password]\n");
	exit(2);
}

static void
posternd_version(void)
{
	printf("posternd %s\n", POSTERN_VERSION);
	printf("libevent %s\n", event_get_version());
	printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
	printf("c-ares %s\n", ares_version(NULL));
	printf("libconfig %d.%d.%d\n", LIBCONFIG_VER_MAJOR,
	    LIBCONFIG_VER_MINOR, LIBCONFIG_VER_REVISION);
	printf("jansson %s\n", JANSSON_VERSION);
	printf("libopendkim %u.%u.%u\n", (dkim_libversion() >> 24) & 0xff,
	    (dkim_libversion() >> 16) & 0xff, (dkim_libversion() >> 8) & 0xff);
	printf("zlib %s\n", zlibVersion());
}

/* --hash-password: one line from stdin (no echo on a terminal). */
static int
posternd_hash_password(void)
{
	struct termios	 t, saved;
	bool		 tty = isatty(STDIN_FILENO);
	char		 pw[1024], err[256], *hash;
	size_t		 len;

	if (tty) {
		fprintf(stderr, "Password: ");
		tcgetattr(STDIN_FILENO, &saved);
		t = saved;
		t.c_lflag &= ~(tcflag_t)ECHO;
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &t);
	}
	if (fgets(pw, sizeof(pw), stdin) == NULL)
		pw[0] = '\0';
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
		fprintf(stderr, "\n");
	}
	len = strcspn(pw, "\r\n");
	pw[len] = '\0';
	if (len == 0) {
		fprintf(stderr, "posternd: empty password\n");
		return (1);
	}
	hash = auth_hash_password(pw, err, sizeof(err));
	explicit_bzero(pw, sizeof(pw));
	if (hash == NULL) {
		fprintf(stderr, "posternd: %s\n", err);
		return (1);
	}
	printf("%s\n", hash);
	free(hash);
	return (0);
}

/* Load and validate everything; NULL with every problem in errs. */
static struct rtconf *
posternd_load(const char *path, struct conf_errors *errs)
{
	struct conf	*conf;

	conf = path != NULL ? conf_load(path, errs) : conf_default();
	if (conf == NULL)
		return (NULL);
	return (rtconf_new(conf, errs));
}

static void
posternd_print_errors(const struct conf_errors *errs, bool to_log)
{
	size_t	i;

	for (i = 0; i < errs->nerrors; i++) {
		if (to_log)
			log_warnx("%s", errs->errors[i]);
		else
			fprintf(stderr, "%s\n", errs->errors[i]);
	}
	for (i = 0; i < errs->nwarnings; i++) {
		if (to_log)
			log_warnx("%s", errs->warnings[i]);
		else
			fprintf(stderr, "warning: %s\n", errs->warnings[i]);
	}
}

/* mkdir -p with mode, for the spool and run directories. */
static int
posternd_mkdirs(const char *path, mode_t mode)
{
	char	buf[PATH_MAX];
	char	*p;

	if (strlcpy(buf, path, sizeof(buf)) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) == -1 && errno != EEXIST)
			return (-1);
		*p = '/';
	}
	if (mkdir(buf, mode) == -1 && errno != EEXIST)
		return (-1);
	return (0);
}

static char *
posternd_dirname(const char *path)
{
	char	*d = xstrdup(path);
	char	*slash = strrchr(d, '/');

	if (slash == NULL)
		strlcpy(d, ".", strlen(d) + 1);
	else if (slash == d)
		slash[1] = '\0';
	else
		*slash = '\0';
	return (d);
}

/*
 * Started as root: give the spool and the control socket's directory to
 * the service user, then drop to it for good and verify (SECURITY-CASES 5).
 */
static void
posternd_drop_privileges(const struct conf *conf)
{
	struct passwd	*pw;
	uid_t		 ruid, euid, suid;
	gid_t		 rgid, egid, sgid;
	char		*rundir;

	if (getuid() != 0 || conf->user == NULL || conf->user[0] == '\0')
		return;
	if ((pw = getpwnam(conf->user)) == NULL)
		fatalx("user \"%s\" does not exist", conf->user);
	if (pw->pw_uid == 0) {
		log_warnx("user is root: running without privilege separation");
		return;
	}
	if (posternd_mkdirs(conf->spool_dir, 0700) == -1)
		fatal("%s", conf->spool_dir);
	if (chown(conf->spool_dir, pw->pw_uid, pw->pw_gid) == -1)
		fatal("chown %s", conf->spool_dir);
	rundir = posternd_dirname(conf->control_socket);
	if (chown(rundir, pw->pw_uid, pw->pw_gid) == -1)
		log_warn("chown %s", rundir);
	free(rundir);

	if (setgroups(1, &pw->pw_gid) == -1 ||
	    setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) == -1 ||
	    setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) == -1)
		fatal("cannot drop privileges to %s", conf->user);
	if (getresuid(&ruid, &euid, &suid) == -1 ||
	    getresgid(&rgid, &egid, &sgid) == -1 ||
	    ruid != pw->pw_uid || euid != pw->pw_uid || suid != pw->pw_uid ||
	    rgid != pw->pw_gid || egid != pw->pw_gid || sgid != pw->pw_gid ||
	    setuid(0) != -1)
		fatalx("privilege drop to %s did not take", conf->user);
	/* No core dumps with key material; no setuid helpers from hooks. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	log_info("running as %s (uid %lu)", conf->user,
	    (unsigned long)pw->pw_uid);
}

/* Open the listeners of conf that are not open yet; close the others. */
static int
posternd_listeners(const struct conf *conf, bool reload)
{
	struct listener	**next;
	size_t		  i, j, n = 0;
	char		  err[256];
	int		  rc = 0;

	next = xcalloc(conf->nlisten + 1, sizeof(*next));
	for (i = 0; i < conf->nlisten; i++) {
		const struct conf_listen *c = &conf->listen[i];

		for (j = 0; j < pd.nlisteners; j++) {
			if (pd.listeners[j] != NULL &&
			    listener_matches(pd.listeners[j], c)) {
				next[n] = pd.listeners[j];
				pd.listeners[j] = NULL;
				listener_update(next[n++], c);
				break;
			}
		}
		if (j < pd.nlisteners)
			continue;
		next[n] = listener_new(pd.base, c, smtp_server_accept, NULL,
		    err, sizeof(err));
		if (next[n] == NULL) {
			if (reload && c->port < 1024 && geteuid() != 0)
				log_warnx("listener [%s]:%d needs a restart: "
				    "ports below 1024 are bound only at "
				    "start-up (%s)", c->address, c->port, err);
			else
				log_warnx("cannot listen: %s", err);
			rc = -1;
			continue;
		}
		log_info("listening on [%s]:%d (tls=%s, auth=%s)", c->address,
		    c->port, c->tls == CONF_IN_TLS_NONE ? "none" :
		    c->tls == CONF_IN_TLS_STARTTLS ? "starttls" : "implicit",
		    c->auth == CONF_AUTH_NONE ? "none" :
		    c->auth == CONF_AUTH_OPTIONAL ? "optional" : "required");
		n++;
	}
	for (j = 0; j < pd.nlisteners; j++) {
		if (pd.listeners[j] != NULL) {
			log_info("closing %s", listener_name(pd.listeners[j]));
			listener_free(pd.listeners[j]);
		}
	}
	free(pd.listeners);
	pd.listeners = next;
	pd.nlisteners = n;
	return (rc);
}

/* Start, move or stop the Prometheus endpoint to match conf. */
static void
posternd_metrics_http(const struct conf *conf)
{
	char	*want = NULL, err[256];

	if (conf->metrics.listen.host != NULL)
		xasprintf(&want, "%s:%d", conf->metrics.listen.host,
		    conf->metrics.listen.port);
	if (want != NULL && pd.metrics_listen != NULL &&
	    strcmp(want, pd.metrics_listen) == 0) {
		free(want);
		return;
	}
	metrics_http_free(pd.metrics);
	pd.metrics = NULL;
	free(pd.metrics_listen);
	pd.metrics_listen = NULL;
	if (want == NULL)
		return;
	pd.metrics = metrics_http_new(pd.base, conf->metrics.listen.host,
	    conf->metrics.listen.port, err, sizeof(err));
	if (pd.metrics == NULL) {
		log_warnx("metrics: %s", err);
		free(want);
		return;
	}
	log_info("metrics on http://%s/metrics", want);
	pd.metrics_listen = want;
}

static void
posternd_reload(void *arg)
{
	struct conf_errors	 errs;
	struct rtconf		*rt, *old = rtconf_current();

	memset(&errs, 0, sizeof(errs));
	if (pd.stopping)
		return;
	log_info("reloading configuration %s",
	    pd.conf_path != NULL ? pd.conf_path : "(default)");
	rt = posternd_load(pd.conf_path, &errs);
	if (rt == NULL) {
		posternd_print_errors(&errs, true);
		log_warnx("reload failed: keeping the current configuration");
		conf_errors_free(&errs);
		return;
	}
	posternd_print_errors(&errs, true);
	conf_errors_free(&errs);
	if (strcmp(rt->conf->spool_dir, old->conf->spool_dir) != 0)
		log_warnx("spool_dir changed: takes effect after a restart");
	if (strcmp(rt->conf->control_socket, old->conf->control_socket) != 0)
		log_warnx("control_socket changed: takes effect after a "
		    "restart");
	rtconf_set_current(rt);
	posternd_listeners(rt->conf, true);
	posternd_metrics_http(rt->conf);
	log_info("configuration reloaded");
}

static void
posternd_stop_check(evutil_socket_t fd, short ev, void *arg)
{
	struct timeval	tv = { 0, 100000 };

	/* Wait for transactions, not for messages queued behind them. */
	if ((smtp_server_count() == 0 && pool_busy() == 0) ||
	    util_monotonic() > pd.stop_deadline) {
		if (smtp_server_count() > 0 || pool_busy() > 0)
			log_warnx("stop: closing %zu sessions and %zu outbound "
			    "transactions after %d s", smtp_server_count(),
			    pool_busy(), POSTERND_STOP_GRACE);
		event_base_loopexit(pd.base, NULL);
		return;
	}
	evtimer_add(pd.ev_stop, &tv);
}

static void
posternd_signal(evutil_socket_t sig, short ev, void *arg)
{
	size_t	i;

	switch (sig) {
	case SIGHUP:
		posternd_reload(NULL);
		break;
	case SIGTERM:
	case SIGINT:
		if (pd.stopping)
			return;
		pd.stopping = true;
		log_info("stopping on signal %d", (int)sig);
		for (i = 0; i < pd.nlisteners; i++)
			listener_enable(pd.listeners[i], false);
		smtp_server_shutdown();
		deliver_shutdown();
		pd.stop_deadline = util_monotonic() + POSTERND_STOP_GRACE;
		posternd_stop_check(-1, 0, NULL);
		break;
	}
}

static size_t
posternd_queue_total(void)
{
	struct queue_counts	qc;

	queue_counts(pd.queue, &qc);
	return (qc.total);
}

static void
posternd_ready(evutil_socket_t fd, short ev, void *arg)
{
	log_info("ready: %zu listeners, %zu queued messages", pd.nlisteners,
	    posternd_queue_total());
}

static void
posternd_kick(void)
{
	deliver_kick();
}

static void
posternd_queued(unsigned int id, void *arg)
{
	deliver_kick();
}

static int
posternd_recover_one(const struct spool_envelope *env, void *arg)
{
	uint32_t	pending = 0;
	size_t		i;

	for (i = 0; i < env->nrcpts; i++)
		if (env->rcpts[i].state == SPOOL_RCPT_PENDING)
			pending++;
	if (env->escalations_pending != 0) {
		/* Delivery is set up after recovery: run them from there. */
		pd.recovered_escs = xreallocarray(pd.recovered_escs,
		    pd.nrecovered_escs + 1, sizeof(*pd.recovered_escs));
		pd.recovered_escs[pd.nrecovered_escs++] = env->id;
		if (pending == 0)
			return (0);
	}
	queue_add(pd.queue, env->id, env->sender, env->size, env->queued_at,
	    pending, env->attempts, env->next_attempt, env->last_error,
	    env->held);
	return (0);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "hash-password", no_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct conf_errors	 errs;
	struct rtconf		*rt;
	struct conf		*conf;
	struct smtp_server_env	 senv;
	struct control_env	 cenv;
	const char		*path = NULL;
	bool			 foreground = false, check = false,
				 debug = false;
	char			 err[512];
	int			 ch, n;
	size_t			 i;

	while ((ch = getopt_long(argc, argv, "c:dfhnV", longopts, NULL))
	    != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'd':
			debug = true;
			break;
		case 'f':
			foreground = true;
			break;
		case 'n':
			check = true;
			break;
		case 'V':
			posternd_version();
			return (0);
		case 'H':
			return (posternd_hash_password());
		default:
			posternd_usage();
		}
	}
	if (optind != argc)
		posternd_usage();
	/* No -c and no installed file: the embedded default (SPEC 1). */
	if (path == NULL && access(POSTERND_DEFAULT_CONF, F_OK) == 0)
		path = POSTERND_DEFAULT_CONF;
	pd.conf_path = path;

	memset(&errs, 0, sizeof(errs));
	rt = posternd_load(path, &errs);
	if (check) {
		posternd_print_errors(&errs, false);
		conf_errors_free(&errs);
		if (rt == NULL)
			return (1);
		printf("%s: configuration OK\n",
		    path != NULL ? path : "(embedded default)");
		rtconf_unref(rt);
		return (0);
	}
	log_init("posternd", foreground, debug);
	if (rt == NULL) {
		posternd_print_errors(&errs, true);
		fatalx("invalid configuration");
	}
	posternd_print_errors(&errs, true);
	conf_errors_free(&errs);
	conf = rt->conf;

	if (!foreground && daemon(0, 0) == -1)
		fatal("daemon");
	signal(SIGPIPE, SIG_IGN);
	umask(077);
	if (evthread_use_pthreads() == -1)
		fatalx("evthread_use_pthreads failed");
	if ((pd.base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	stats_init();
	rtconf_set_current(rt);
	log_info("daemon started -- version %s, configuration %s",
	    POSTERN_VERSION, path != NULL ? path : "(embedded default)");

	/* Privileged part: bind, create the control socket, then drop. */
	if (posternd_listeners(conf, false) == -1 && pd.nlisteners == 0)
		fatalx("no listener could be opened");
	pd.queue = queue_new();
	memset(&cenv, 0, sizeof(cenv));
	cenv.base = pd.base;
	cenv.queue = pd.queue;
	cenv.reload = posternd_reload;
	cenv.kick = posternd_kick;
	{
		char	*rundir = posternd_dirname(conf->control_socket);

		if (posternd_mkdirs(rundir, 0750) == -1)
			fatal("%s", rundir);
		free(rundir);
	}
	pd.control = control_new(&cenv, conf, err, sizeof(err));
	if (pd.control == NULL)
		fatalx("control socket: %s", err);
	posternd_metrics_http(conf);
	posternd_drop_privileges(conf);

	if (posternd_mkdirs(conf->spool_dir, 0700) == -1)
		fatal("%s", conf->spool_dir);
	if ((pd.spool = spool_open(conf->spool_dir, pd.base, err,
	    sizeof(err))) == NULL)
		fatalx("spool: %s", err);
	control_set_spool(pd.control, pd.spool);
	{
		struct metrics_env	menv;

		menv.queue = pd.queue;
		menv.spool = pd.spool;
		metrics_init(&menv);
	}
	if ((n = spool_recover(pd.spool, posternd_recover_one, NULL)) == -1)
		fatalx("spool recovery failed");
	log_info("recovered %d queued messages from %s", n, conf->spool_dir);
	if ((pd.workers = worker_pool_new(pd.base, POSTERND_WORKERS, err,
	    sizeof(err))) == NULL)
		fatalx("worker pool: %s", err);
	if ((pd.dns = dns_new(pd.base, conf->delivery.dns_servers,
	    conf->delivery.ndns_servers, err, sizeof(err))) == NULL)
		fatalx("dns: %s", err);
	{
		struct deliver_env	denv;

		memset(&denv, 0, sizeof(denv));
		denv.base = pd.base;
		denv.spool = pd.spool;
		denv.queue = pd.queue;
		denv.dns = pd.dns;
		denv.workers = pd.workers;
		deliver_init(&denv);
	}
	for (i = 0; i < pd.nrecovered_escs; i++) {
		struct spool_envelope	env;

		memset(&env, 0, sizeof(env));
		if (spool_load(pd.spool, pd.recovered_escs[i], &env) == 0)
			deliver_recovered_escalations(&env);
		spool_envelope_free(&env);
	}
	free(pd.recovered_escs);
	pd.recovered_escs = NULL;

	memset(&senv, 0, sizeof(senv));
	senv.base = pd.base;
	senv.spool = pd.spool;
	senv.queue = pd.queue;
	senv.workers = pd.workers;
	senv.queued_cb = posternd_queued;
	if ((pd.spf = spfcheck_new(conf->delivery.dns_servers,
	    conf->delivery.ndns_servers, err, sizeof(err))) == NULL)
		log_warnx("SPF checks unavailable: %s", err);
	senv.spf = pd.spf;
	smtp_server_init(&senv);

	pd.ev_hup = evsignal_new(pd.base, SIGHUP, posternd_signal, NULL);
	pd.ev_term = evsignal_new(pd.base, SIGTERM, posternd_signal, NULL);
	pd.ev_int = evsignal_new(pd.base, SIGINT, posternd_signal, NULL);
	pd.ev_stop = evtimer_new(pd.base, posternd_stop_check, NULL);
	evsignal_add(pd.ev_hup, NULL);
	evsignal_add(pd.ev_term, NULL);
	evsignal_add(pd.ev_int, NULL);

	/* Logged from inside the loop: everything before it is done. */
	{
		struct timeval	now = { 0, 0 };

		event_base_once(pd.base, -1, EV_TIMEOUT, posternd_ready, NULL,
		    &now);
	}
	event_base_dispatch(pd.base);

	/* Orderly teardown; the queue stays on disk. */
	smtp_server_close_all();
	for (i = 0; i < pd.nlisteners; i++)
		listener_free(pd.listeners[i]);
	free(pd.listeners);
	control_free(pd.control);
	metrics_http_free(pd.metrics);
	free(pd.metrics_listen);
	metrics_free();
	deliver_free();
	spfcheck_free(pd.spf);
	dns_free(pd.dns);
	worker_pool_free(pd.workers);
	spool_close(pd.spool);
	queue_free(pd.queue);
	event_free(pd.ev_hup);
	event_free(pd.ev_term);
	event_free(pd.ev_int);
	event_free(pd.ev_stop);
	rtconf_set_current(NULL);
	event_base_free(pd.base);
	log_info("stopped");
	return (0);
}
