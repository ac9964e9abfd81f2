/*
 * loadgen.c: SMTP load generator for bench/run that records, for every
 * message, the acceptance latency: the time from the end of the final
 * "." to the server's reply.  smtp-source gives only a total, so this is
 * what p50/p99 come from.
 *
 * It behaves like "smtp-source -s S -m N -l L": S threads, each with one
 * blocking connection at a time, lock-step commands (no pipelining), one
 * message per connection (or every message on the same connection with
 * -d, like smtp-source -d).  Threads take message numbers from one atomic
 * counter, so exactly N transactions are attempted.  Latencies go into one
 * array indexed by message number; it is only read after every thread has
 * been joined.  Every buffer is fixed-size; a reply line longer than the
 * buffer is a protocol error for that connection.
 *
 * Output: one line of key=value pairs on stdout; exit 0 when every
 * message got a 2xx at the dot, 1 otherwise.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOADGEN_MAX_SESSIONS	1000
#define LOADGEN_LINE_MAX	1024
#define LOADGEN_BODY_MAX	(64 * 1024 * 1024)

struct loadgen_conn {
	int	 fd;
	char	 buf[LOADGEN_LINE_MAX * 4];
	size_t	 len;
};

static struct sockaddr_in	 loadgen_addr;
static const char		*loadgen_from = "a@example.com";
static const char		*loadgen_to = "b@example.net";
static char			*loadgen_body;	/* the L payload bytes */
static size_t			 loadgen_bodylen;
static long			 loadgen_count = 1;
static int			 loadgen_reuse;
static atomic_long		 loadgen_next;
static atomic_long		 loadgen_failed;
static atomic_long		 loadgen_conns;
static double			*loadgen_lat;	/* seconds; < 0: failed */

static double
loadgen_now(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
loadgen_write(int fd, const char *p, size_t n)
{
	ssize_t	w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Read one complete reply (the last line has a space after the code) and
 * return its code, or -1 on EOF, error or an overlong line.
 */
static int
loadgen_reply(struct loadgen_conn *c)
{
	char	*eol;
	ssize_t	 r;
	size_t	 linelen;
	int	 code, last;

	for (;;) {
		eol = memchr(c->buf, '\n', c->len);
		if (eol != NULL) {
			linelen = (size_t)(eol - c->buf) + 1;
			if (linelen < 4)
				return -1;
			code = (c->buf[0] - '0') * 100 +
			    (c->buf[1] - '0') * 10 + (c->buf[2] - '0');
			last = c->buf[3] != '-';
			memmove(c->buf, c->buf + linelen, c->len - linelen);
			c->len -= linelen;
			if (code < 100 || code > 599)
				return -1;
			if (last)
				return code;
			continue;
		}
		if (c->len == sizeof(c->buf))
			return -1;
		r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

static int
loadgen_cmd(struct loadgen_conn *c, const char *line, int want)
{
	int	code;

	if (loadgen_write(c->fd, line, strlen(line)) == -1)
		return -1;
	code = loadgen_reply(c);
	return code / 100 == want ? 0 : -1;
}

static void
loadgen_close(struct loadgen_conn *c, int polite)
{
	if (c->fd == -1)
		return;
	if (polite)
		(void)loadgen_cmd(c, "QUIT\r\n", 2);
	close(c->fd);
	c->fd = -1;
	c->len = 0;
}

static int
loadgen_open(struct loadgen_conn *c)
{
	int	one = 1;

	c->len = 0;
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	if (c->fd == -1)
		return -1;
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&loadgen_addr,
	    sizeof(loadgen_addr)) == -1 || loadgen_reply(c) / 100 != 2 ||
	    loadgen_cmd(c, "EHLO loadgen.example.com\r\n", 2) == -1) {
		loadgen_close(c, 0);
		return -1;
	}
	atomic_fetch_add(&loadgen_conns, 1);
	return 0;
}

/* One transaction on an open connection: 0, or -1 (connection unusable). */
static int
loadgen_one(struct loadgen_conn *c, long i, char *hdr, size_t hdrsize)
{
	char	cmd[LOADGEN_LINE_MAX];
	double	t0;
	int	n, code;

	snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>\r\n", loadgen_from);
	if (loadgen_cmd(c, cmd, 2) == -1)
		return -1;
	snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", loadgen_to);
	if (loadgen_cmd(c, cmd, 2) == -1 ||
	    loadgen_cmd(c, "DATA\r\n", 3) == -1)
		return -1;
	n = snprintf(hdr, hdrsize,
	    "From: <%s>\r\nTo: <%s>\r\nSubject: bench message %ld\r\n"
	    "Message-Id: <%ld.%ld@loadgen.example.com>\r\n\r\n",
	    loadgen_from, loadgen_to, i, (long)getpid(), i);
	if (n < 0 || (size_t)n >= hdrsize)
		return -1;
	if (loadgen_write(c->fd, hdr, (size_t)n) == -1 ||
	    loadgen_write(c->fd, loadgen_body, loadgen_bodylen) == -1 ||
	    loadgen_write(c->fd, ".\r\n", 3) == -1)
		return -1;
	t0 = loadgen_now();
	code = loadgen_reply(c);
	if (code == -1)
		return -1;
	if (code / 100 == 2)
		loadgen_lat[i] = loadgen_now() - t0;
	else
		atomic_fetch_add(&loadgen_failed, 1);
	return 0;
}

static void *
loadgen_thread(void *arg)
{
	struct loadgen_conn	 c;
	char			 hdr[LOADGEN_LINE_MAX * 2];
	long			 i;

	(void)arg;
	c.fd = -1;
	c.len = 0;
	while ((i = atomic_fetch_add(&loadgen_next, 1)) < loadgen_count) {
		if (c.fd == -1 && loadgen_open(&c) == -1) {
			atomic_fetch_add(&loadgen_failed, 1);
			usleep(10000);
			continue;
		}
		if (loadgen_one(&c, i, hdr, sizeof(hdr)) == -1) {
			atomic_fetch_add(&loadgen_failed, 1);
			loadgen_close(&c, 0);
			continue;
		}
		if (!loadgen_reuse)
			loadgen_close(&c, 1);
	}
	loadgen_close(&c, 1);
	return NULL;
}

static int
loadgen_cmp(const void *a, const void *b)
{
	double	x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
loadgen_makebody(size_t len)
{
	static const char	 pat[] = "La la la la la la la la la la la la "
	    "la la la la la la la la la la la la la la la la la la la la la";
	size_t			 i, col;

	_Static_assert(sizeof(pat) > 79, "pattern shorter than a line");
	loadgen_body = malloc(len);
	if (loadgen_body == NULL) {
		perror("malloc");
		exit(2);
	}
	/* 80-byte lines (78 characters and CRLF), never starting with a dot. */
	for (i = 0; i < len; i++) {
		col = i % 80;
		loadgen_body[i] = col == 78 ? '\r' : col == 79 ? '\n' : pat[col];
	}
	/* The last line ends in CRLF; no CR stands alone before it. */
	if (len >= 3 && loadgen_body[len - 3] == '\r')
		loadgen_body[len - 3] = 'x';
	loadgen_body[len - 2] = '\r';
	loadgen_body[len - 1] = '\n';
	loadgen_bodylen = len;
}

static void
loadgen_usage(void)
{
	fprintf(stderr, "usage: loadgen [-d] [-s sessions] [-m count] "
	    "[-l length] [-f from] [-t to] [-o latency-file] ip:port\n");
	exit(2);
}

int
main(int argc, char *argv[])
{
	pthread_t	 th[LOADGEN_MAX_SESSIONS];
	const char	*latfile = NULL;
	char		 host[64], *colon;
	double		*ok, t0, wall;
	long		 sessions = 1, length = 4096, i, nok;
	int		 ch;
	FILE		*fp;

	while ((ch = getopt(argc, argv, "df:l:m:o:s:t:")) != -1) {
		switch (ch) {
		case 'd':
			loadgen_reuse = 1;
			break;
		case 'f':
			loadgen_from = optarg;
			break;
		case 'l':
			length = strtol(optarg, NULL, 10);
			break;
		case 'm':
			loadgen_count = strtol(optarg, NULL, 10);
			break;
		case 'o':
			latfile = optarg;
			break;
		case 's':
			sessions = strtol(optarg, NULL, 10);
			break;
		case 't':
			loadgen_to = optarg;
			break;
		default:
			loadgen_usage();
		}
	}
	if (argc - optind != 1 || sessions < 1 ||
	    sessions > LOADGEN_MAX_SESSIONS || loadgen_count < 1 ||
	    length < 2 || length > LOADGEN_BODY_MAX ||
	    strlen(loadgen_from) > 256 || strlen(loadgen_to) > 256)
		loadgen_usage();
	if (strlen(argv[optind]) >= sizeof(host))
		loadgen_usage();
	strcpy(host, argv[optind]);
	if ((colon = strrchr(host, ':')) == NULL)
		loadgen_usage();
	*colon = '\0';
	memset(&loadgen_addr, 0, sizeof(loadgen_addr));
	loadgen_addr.sin_family = AF_INET;
	loadgen_addr.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &loadgen_addr.sin_addr) != 1)
		loadgen_usage();

	loadgen_makebody((size_t)length);
	loadgen_lat = malloc(sizeof(double) * (size_t)loadgen_count);
	ok = malloc(sizeof(double) * (size_t)loadgen_count);
	if (loadgen_lat == NULL || ok == NULL) {
		perror("malloc");
		return 2;
	}
	for (i = 0; i < loadgen_count; i++)
		loadgen_lat[i] = -1;
	if (sessions > loadgen_count)
		sessions = loadgen_count;

	t0 = loadgen_now();
	for (i = 0; i < sessions; i++)
		if (pthread_create(&th[i], NULL, loadgen_thread, NULL) != 0) {
			perror("pthread_create");
			return 2;
		}
	for (i = 0; i < sessions; i++)
		pthread_join(th[i], NULL);
	wall = loadgen_now() - t0;

	for (i = 0, nok = 0; i < loadgen_count; i++)
		if (loadgen_lat[i] >= 0)
			ok[nok++] = loadgen_lat[i];
	qsort(ok, (size_t)nok, sizeof(double), loadgen_cmp);
	if (latfile != NULL && (fp = fopen(latfile, "w")) != NULL) {
		for (i = 0; i < nok; i++)
			fprintf(fp, "%.6f\n", ok[i]);
		fclose(fp);
	}
	printf("sent=%ld failed=%ld errors=%ld connections=%ld wall_s=%.3f rate=%.1f "
	    "p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n", nok,
	    loadgen_count - nok, atomic_load(&loadgen_failed),
	    atomic_load(&loadgen_conns), wall,
	    wall > 0 ? (double)nok / wall : 0.0,
	    nok ? ok[(nok - 1) / 2] * 1e3 : 0.0,
	    nok ? ok[(long)((double)(nok - 1) * 0.99)] * 1e3 : 0.0,
	    nok ? ok[nok - 1] * 1e3 : 0.0);
	return nok == loadgen_count ? 0 : 1;
}
