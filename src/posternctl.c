/*
 * posternctl.c: the operator's client for the control socket (SPEC
 * section 5).  Each command sends one JSON request line and prints the
 * reply as a readable table (mailq-like for `queue`), or raw with --json.
 *
 * Exit status: 0 the daemon answered ok, 1 it answered an error, 2 the
 * socket could not be reached or the reply was unreadable; the message for
 * 2 names the socket that was tried.
 *
 * check-domain needs no daemon: it reads the configuration itself and
 * checks DOMAIN's SPF, DKIM and DMARC records (checkdomain.c); its exit
 * status is 0 all pass, 1 something missing or wrong, 2 usage or config.
 */
#include "compat.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <jansson.h>

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkdomain.h"
#include "conf.h"
#include "util.h"

#define POSTERNCTL_DEFAULT_CONF	POSTERN_CONFDIR "/postern.conf"
#define POSTERNCTL_TIMEOUT_MS	30000
#define POSTERNCTL_REPLY_MAX	(256 * 1024 * 1024)

static void
posternctl_usage(void)
{
	fprintf(stderr,
	    "usage: posternctl [-s socket] [-c config] [--json] command [id]\n"
	    "commands:\n"
	    "  stats                      counters and gauges\n"
	    "  queue [--limit N] [--cursor ID]  list queued messages\n"
	    "  show ID                    envelope and recipient status\n"
	    "  flush [ID]                 retry now (one message or all)\n"
	    "  hold ID | release ID       stop / resume delivery\n"
	    "  delete ID                  remove from the queue, no bounce\n"
	    "  reload                     re-read the configuration\n"
	    "  metrics                    Prometheus text exposition\n"
	    "  check-domain DOMAIN [--ip ADDR]...  SPF, DKIM and DMARC "
	    "records\n");
	exit(2);
}

/* The socket: -s, else the configuration's control_socket. */
static char *
posternctl_socket(const char *sock, const char *config)
{
	struct conf_errors	 errs;
	struct conf		*conf;
	char			*path;

	if (sock != NULL)
		return (xstrdup(sock));
	if (config == NULL && access(POSTERNCTL_DEFAULT_CONF, R_OK) == 0)
		config = POSTERNCTL_DEFAULT_CONF;
	memset(&errs, 0, sizeof(errs));
	conf = config != NULL ? conf_load(config, &errs) : conf_default();
	conf_errors_free(&errs);
	if (conf == NULL) {
		fprintf(stderr, "posternctl: cannot read %s; use -s SOCKET\n",
		    config);
		exit(2);
	}
	path = xstrdup(conf->control_socket);
	conf_free(conf);
	return (path);
}

/*
 * check-domain: the configuration from -c, else the default file when it
 * is readable, else the embedded default; then checkdomain_main().
 */
static int
posternctl_check_domain(const char *config, const char *domain,
    char *const *ips, size_t nips, bool json)
{
	struct conf_errors	 errs;
	struct conf		*conf;
	size_t			 i;
	int			 rc;

	if (config == NULL && access(POSTERNCTL_DEFAULT_CONF, R_OK) == 0)
		config = POSTERNCTL_DEFAULT_CONF;
	memset(&errs, 0, sizeof(errs));
	conf = config != NULL ? conf_load(config, &errs) : conf_default();
	if (conf == NULL) {
		for (i = 0; i < errs.nerrors; i++)
			fprintf(stderr, "posternctl: %s\n", errs.errors[i]);
		if (errs.nerrors == 0)
			fprintf(stderr, "posternctl: cannot read %s\n",
			    config);
		conf_errors_free(&errs);
		return (2);
	}
	conf_errors_free(&errs);
	rc = checkdomain_main(conf, domain, ips, nips, json, stdout, stderr);
	conf_free(conf);
	return (rc);
}

/* Send one request line and read one reply line. */
static char *
posternctl_call(const char *path, const char *req)
{
	struct sockaddr_un	 sun;
	struct pollfd		 pfd;
	char			*buf = NULL;
	size_t			 len = 0, cap = 0;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path)) {
		fprintf(stderr, "posternctl: %s: path too long\n", path);
		exit(2);
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(stderr, "posternctl: cannot reach posternd at %s: %s\n",
		    path, strerror(errno));
		exit(2);
	}
	if (util_write_all(fd, req, strlen(req)) == -1 ||
	    util_write_all(fd, "\n", 1) == -1) {
		fprintf(stderr, "posternctl: %s: write: %s\n", path,
		    strerror(errno));
		exit(2);
	}
	for (;;) {
		ssize_t	n;

		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, POSTERNCTL_TIMEOUT_MS) <= 0) {
			fprintf(stderr, "posternctl: %s: no reply\n", path);
			exit(2);
		}
		if (len + 4096 + 1 > cap) {
			cap = cap == 0 ? 65536 : cap * 2;
			if (cap > POSTERNCTL_REPLY_MAX) {
				fprintf(stderr, "posternctl: reply too large\n");
				exit(2);
			}
			buf = xreallocarray(buf, cap, 1);
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "posternctl: %s: connection closed "
			    "before the reply\n", path);
			exit(2);
		}
		len += (size_t)n;
		if (memchr(buf + len - n, '\n', (size_t)n) != NULL)
			break;
	}
	close(fd);
	buf[len] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return (buf);
}

static void
posternctl_duration(char *buf, size_t len, json_int_t s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(buf, len, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm", (long long)(s / 60));
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600),
		    (long long)(s % 3600 / 60));
	else
		snprintf(buf, len, "%lldd%02lldh", (long long)(s / 86400),
		    (long long)(s % 86400 / 3600));
}

static json_int_t
posternctl_int(json_t *o, const char *key)
{
	return (json_integer_value(json_object_get(o, key)));
}

static void
posternctl_print_stats(json_t *r)
{
	static const char *groups[] = { "queue", "messages", "connections_in",
	    "pool", "tls_out", "dkim", "escalations", "auth", "spool" };
	char		 up[32];
	size_t		 i;

	posternctl_duration(up, sizeof(up), posternctl_int(r, "uptime_s"));
	printf("uptime: %s\n", up);
	for (i = 0; i < nitems(groups); i++) {
		json_t		*g = json_object_get(r, groups[i]);
		const char	*k;
		json_t		*v;

		if (!json_is_object(g))
			continue;
		printf("\n%s:\n", groups[i]);
		json_object_foreach(g, k, v) {
			if (json_is_integer(v))
				printf("  %-18s %lld\n", k,
				    (long long)json_integer_value(v));
		}
	}
}

static void
posternctl_print_queue(json_t *r)
{
	json_t	*msgs = json_object_get(r, "messages"), *m;
	size_t	 i;

	if (json_array_size(msgs) == 0) {
		printf("Mail queue is empty\n");
		return;
	}
	printf("%-8s  %-6s  %9s  %-8s  %-30s %7s %8s  %-8s %s\n", "Queue ID",
	    "Age", "Size", "State", "Sender", "Pending", "Attempts", "Next",
	    "Last error");
	json_array_foreach(msgs, i, m) {
		char		 age[32], next[32];
		const char	*err = json_string_value(json_object_get(m,
		    "last_error"));
		const char	*sender = json_string_value(json_object_get(m,
		    "sender"));

		posternctl_duration(age, sizeof(age), posternctl_int(m,
		    "age_s"));
		posternctl_duration(next, sizeof(next), posternctl_int(m,
		    "next_attempt_s"));
		printf("%-8s  %-6s  %9lld  %-8s  %-30s %7lld %8lld  %-8s %s\n",
		    json_string_value(json_object_get(m, "id")), age,
		    (long long)posternctl_int(m, "size"),
		    json_string_value(json_object_get(m, "state")),
		    sender != NULL && sender[0] != '\0' ? sender : "<>",
		    (long long)posternctl_int(m, "recipients_pending"),
		    (long long)posternctl_int(m, "attempts"),
		    strcmp(json_string_value(json_object_get(m, "state")),
		    "held") == 0 ? "-" : next, err != NULL ? err : "");
	}
	printf("-- %zu messages%s\n", json_array_size(msgs),
	    json_object_get(r, "next_cursor") != NULL ?
	    " (more: use --cursor with the last id)" : "");
}

static void
posternctl_print_show(json_t *r)
{
	json_t		*rcpts = json_object_get(r, "recipients"), *x;
	json_t		*client = json_object_get(r, "client");
	const char	*k;
	json_t		*v;
	size_t		 i;

	json_object_foreach(r, k, v) {
		if (strcmp(k, "ok") == 0 || json_is_object(v) ||
		    json_is_array(v))
			continue;
		if (json_is_string(v))
			printf("%-20s %s\n", k, json_string_value(v));
		else if (json_is_integer(v))
			printf("%-20s %lld\n", k,
			    (long long)json_integer_value(v));
		else if (json_is_boolean(v))
			printf("%-20s %s\n", k, json_is_true(v) ? "yes" : "no");
	}
	json_object_foreach(client, k, v) {
		if (json_is_string(v))
			printf("client.%-13s %s\n", k, json_string_value(v));
	}
	{
		json_t	*hist = json_object_get(r, "history"), *h;

		if (json_array_size(hist) > 0)
			printf("attempts:\n");
		json_array_foreach(hist, i, h) {
			printf("  #%lld  next %s  %s\n",
			    (long long)posternctl_int(h, "attempt"),
			    json_string_value(json_object_get(h,
			    "next_attempt")), json_string_value(
			    json_object_get(h, "error")));
		}
	}
	printf("recipients:\n");
	json_array_foreach(rcpts, i, x) {
		const char *dsn = json_string_value(json_object_get(x, "dsn"));
		const char *reply = json_string_value(json_object_get(x,
		    "reply"));
		const char *remote = json_string_value(json_object_get(x,
		    "remote"));

		printf("  %-40s %-10s %s%s%s%s%s\n",
		    json_string_value(json_object_get(x, "address")),
		    json_string_value(json_object_get(x, "status")),
		    dsn != NULL ? dsn : "", remote != NULL ? " " : "",
		    remote != NULL ? remote : "", reply != NULL ? " " : "",
		    reply != NULL ? reply : "");
	}
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "limit", required_argument, NULL, 'l' },
		{ "cursor", required_argument, NULL, 'C' },
		{ "ip", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char	*sock = NULL, *config = NULL, *cmd, *id = NULL,
			*cursor = NULL;
	char		*ips[CHECKDOMAIN_IPS_MAX];
	size_t		 nips = 0;
	bool		 json = false;
	long		 limit = 0;
	char		*path, *reply, *req;
	json_t		*o, *r;
	json_error_t	 jerr;
	int		 ch, rc;

	while ((ch = getopt_long(argc, argv, "c:hjs:", longopts, NULL))
	    != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			break;
		case 's':
			sock = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'l':
			limit = strtol(optarg, NULL, 10);
			if (limit < 1) {
				fprintf(stderr, "posternctl: bad --limit\n");
				return (2);
			}
			break;
		case 'C':
			cursor = optarg;
			break;
		case 'i':
			if (nips >= nitems(ips)) {
				fprintf(stderr, "posternctl: at most %zu "
				    "--ip\n", nitems(ips));
				return (2);
			}
			ips[nips++] = optarg;
			break;
		default:
			posternctl_usage();
		}
	}
	if (optind >= argc)
		posternctl_usage();
	cmd = argv[optind++];
	if (optind < argc)
		id = argv[optind++];
	if (optind < argc)
		posternctl_usage();

	if (strcmp(cmd, "check-domain") == 0) {
		if (id == NULL) {
			fprintf(stderr, "posternctl: check-domain needs a "
			    "domain\n");
			return (2);
		}
		return (posternctl_check_domain(config, id, ips, nips, json));
	}
	if (nips > 0) {
		fprintf(stderr, "posternctl: --ip is for check-domain only\n");
		return (2);
	}
	o = json_pack("{s:s}", "cmd", cmd);
	if (strcmp(cmd, "show") == 0 || strcmp(cmd, "hold") == 0 ||
	    strcmp(cmd, "release") == 0 || strcmp(cmd, "delete") == 0) {
		if (id == NULL) {
			fprintf(stderr, "posternctl: %s needs a queue id\n",
			    cmd);
			json_decref(o);
			return (2);
		}
		json_object_set_new(o, "id", json_string(id));
	} else if (strcmp(cmd, "flush") == 0) {
		if (id != NULL)
			json_object_set_new(o, "id", json_string(id));
	} else if (strcmp(cmd, "queue") == 0) {
		json_object_set_new(o, "limit", json_integer(limit > 0 ?
		    limit : 1000));
		if (cursor != NULL)
			json_object_set_new(o, "cursor", json_string(cursor));
	} else if (strcmp(cmd, "stats") != 0 && strcmp(cmd, "reload") != 0 &&
	    strcmp(cmd, "metrics") != 0) {
		fprintf(stderr, "posternctl: unknown command %s\n", cmd);
		posternctl_usage();
	}
	req = json_dumps(o, JSON_COMPACT);
	json_decref(o);

	path = posternctl_socket(sock, config);
	reply = posternctl_call(path, req);
	free(req);
	if ((r = json_loads(reply, 0, &jerr)) == NULL || !json_is_object(r)) {
		fprintf(stderr, "posternctl: %s: unreadable reply\n", path);
		return (2);
	}
	free(path);
	rc = json_is_true(json_object_get(r, "ok")) ? 0 : 1;
	if (json)
		printf("%s\n", reply);
	else if (rc != 0)
		fprintf(stderr, "posternctl: %s: %s\n", cmd,
		    json_string_value(json_object_get(r, "error")) != NULL ?
		    json_string_value(json_object_get(r, "error")) : "error");
	else if (strcmp(cmd, "stats") == 0)
		posternctl_print_stats(r);
	else if (strcmp(cmd, "queue") == 0)
		posternctl_print_queue(r);
	else if (strcmp(cmd, "show") == 0)
		posternctl_print_show(r);
	else if (strcmp(cmd, "metrics") == 0)
		fputs(json_string_value(json_object_get(r, "text")), stdout);
	else if (strcmp(cmd, "flush") == 0)
		printf("flushed %lld messages\n",
		    (long long)posternctl_int(r, "flushed"));
	else
		printf("%s: ok\n", cmd);
	free(reply);
	json_decref(r);
	return (rc);
}
