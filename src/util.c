/*
 * util.c: the x* allocation family (OOM is fatal, as in every MTA we learn
 * from), bounded string helpers, log escaping, time formatting, queue ids
 * and the id -> pointer map.
 *
 * Nothing here touches the event loop; everything is safe to call from a
 * worker thread except the map, whose owner serialises access.
 */
#include "compat.h"

#include <sys/random.h>
#include <sys/types.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void *
xmalloc(size_t size)
{
	void	*p;

	if ((p = malloc(size == 0 ? 1 : size)) == NULL)
		fatal("xmalloc %zu", size);
	return (p);
}

void *
xcalloc(size_t n, size_t size)
{
	void	*p;

	if ((p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size)) == NULL)
		fatal("xcalloc %zu*%zu", n, size);
	return (p);
}

void *
xreallocarray(void *old, size_t n, size_t size)
{
	void	*p;

	if (size != 0 && n > SIZE_MAX / size)
		fatalx("xreallocarray: %zu*%zu overflows", n, size);
	if ((p = realloc(old, n * size == 0 ? 1 : n * size)) == NULL)
		fatal("xreallocarray %zu*%zu", n, size);
	return (p);
}

char *
xstrdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		fatal("xstrdup");
	return (p);
}

char *
xstrndup(const char *s, size_t n)
{
	char	*p;

	if ((p = strndup(s, n)) == NULL)
		fatal("xstrndup");
	return (p);
}

int
xasprintf(char **ret, const char *fmt, ...)
{
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vasprintf(ret, fmt, ap);
	va_end(ap);
	if (n == -1)
		fatal("xasprintf");
	return (n);
}

char *
util_escape(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	static const char hex[] = "0123456789abcdef";
	size_t	 o = 0, i;

	if (dstlen == 0)
		return (dst);
	for (i = 0; i < srclen; i++) {
		unsigned char	c = (unsigned char)src[i];
		char		tmp[4];
		size_t		n;

		if (c == '\\') {
			tmp[0] = '\\';
			tmp[1] = '\\';
			n = 2;
		} else if (c >= 0x20 && c < 0x7f) {
			tmp[0] = (char)c;
			n = 1;
		} else {
			tmp[0] = '\\';
			tmp[1] = 'x';
			tmp[2] = hex[c >> 4];
			tmp[3] = hex[c & 0xf];
			n = 4;
		}
		/* Keep room for "..." and the NUL when truncating. */
		if (o + n + 1 > dstlen || (i + 1 < srclen && o + n + 4 > dstlen)) {
			if (dstlen >= 4) {
				o = o + 4 > dstlen ? dstlen - 4 : o;
				memcpy(dst + o, "...", 3);
				o += 3;
			}
			break;
		}
		memcpy(dst + o, tmp, n);
		o += n;
	}
	dst[o < dstlen ? o : dstlen - 1] = '\0';
	return (dst);
}

void
util_lowercase(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* True when domain equals parent or is a subdomain of it (label boundary). */
bool
util_domain_is_within(const char *domain, const char *parent)
{
	size_t	dl = strlen(domain), pl = strlen(parent);

	if (pl == 0 || dl < pl)
		return (false);
	if (strcasecmp(domain + dl - pl, parent) != 0)
		return (false);
	return (dl == pl || domain[dl - pl - 1] == '.');
}

double
util_monotonic(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

int64_t
util_wallclock(void)
{
	return ((int64_t)time(NULL));
}

void
util_iso8601(char *buf, size_t len, int64_t t)
{
	time_t		tt = (time_t)t;
	struct tm	tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void
util_rfc5322_date(char *buf, size_t len, int64_t t)
{
	static const char *days[] = { "Sun", "Mon", "Tue", "Wed", "Thu",
	    "Fri", "Sat" };
	static const char *months[] = { "Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t		tt = (time_t)t;
	struct tm	tm;

	/* Always UTC and always English: strftime's %a follows the locale. */
	gmtime_r(&tt, &tm);
	snprintf(buf, len, "%s, %d %s %04d %02d:%02d:%02d +0000",
	    days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

void
util_random(void *buf, size_t len)
{
	unsigned char	*p = buf;

	while (len > 0) {
		ssize_t	n = getrandom(p, len, 0);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			fatal("getrandom");
		}
		p += n;
		len -= (size_t)n;
	}
}

qid_t
util_qid_random(void)
{
	qid_t	id;

	do {
		util_random(&id, sizeof(id));
	} while (id == 0);
	return (id);
}

void
util_qid_format(char buf[QUEUE_ID_LEN + 1], qid_t id)
{
	snprintf(buf, QUEUE_ID_LEN + 1, "%08X", (unsigned)id);
}

int
util_qid_parse(const char *s, qid_t *out)
{
	qid_t	v = 0;
	int	i;

	for (i = 0; i < QUEUE_ID_LEN; i++) {
		char	c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (qid_t)(c - '0');
		else if (c >= 'A' && c <= 'F')
			v |= (qid_t)(c - 'A' + 10);
		else
			return (-1);
	}
	if (s[QUEUE_ID_LEN] != '\0' || v == 0)
		return (-1);
	*out = v;
	return (0);
}

int
util_write_all(int fd, const void *buf, size_t len)
{
	const char	*p = buf;

	while (len > 0) {
		ssize_t	n = write(fd, p, len);

		if (n == -1) {
			if (errno == EINTR)
				continue;
			return (-1);
		}
		p += n;
		len -= (size_t)n;
	}
	return (0);
}

int
util_fsync_dir(const char *dirpath)
{
	int	fd, rc, saved;

	if ((fd = open(dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return (-1);
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return (rc);
}

/*
 * The map: linear probing over a power-of-two table, with tombstones
 * (key 0 with a non-NULL marker value) so that deletes keep probe chains.
 */
static char util_map_tomb;

static size_t
util_map_hash(uint64_t k, size_t cap)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return ((size_t)k & (cap - 1));
}

void
util_map_init(struct util_map *m)
{
	memset(m, 0, sizeof(*m));
}

void
util_map_clear(struct util_map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static void
util_map_grow(struct util_map *m)
{
	struct util_map	n;
	size_t		i;

	n.cap = m->cap == 0 ? 16 : (m->len * 4 > m->cap ? m->cap * 2 : m->cap);
	n.keys = xcalloc(n.cap, sizeof(*n.keys));
	n.vals = xcalloc(n.cap, sizeof(*n.vals));
	n.len = n.tombs = 0;
	for (i = 0; i < m->cap; i++)
		if (m->keys[i] != 0)
			util_map_put(&n, m->keys[i], m->vals[i]);
	free(m->keys);
	free(m->vals);
	*m = n;
}

void
util_map_put(struct util_map *m, uint64_t key, void *val)
{
	size_t	i, tomb = SIZE_MAX;

	if (key == 0)
		fatalx("util_map_put: zero key");
	if ((m->len + m->tombs + 1) * 4 >= m->cap * 3)
		util_map_grow(m);
	for (i = util_map_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key) {
			m->vals[i] = val;
			return;
		}
		if (m->keys[i] == 0) {
			if (m->vals[i] == &util_map_tomb) {
				if (tomb == SIZE_MAX)
					tomb = i;
				continue;
			}
			break;
		}
	}
	if (tomb != SIZE_MAX) {
		i = tomb;
		m->tombs--;
	}
	m->keys[i] = key;
	m->vals[i] = val;
	m->len++;
}

static size_t
util_map_find(const struct util_map *m, uint64_t key)
{
	size_t	i;

	if (m->cap == 0 || key == 0)
		return (SIZE_MAX);
	for (i = util_map_hash(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key)
			return (i);
		if (m->keys[i] == 0 && m->vals[i] != &util_map_tomb)
			return (SIZE_MAX);
	}
}

void *
util_map_get(const struct util_map *m, uint64_t key)
{
	size_t	i = util_map_find(m, key);

	return (i == SIZE_MAX ? NULL : m->vals[i]);
}

void *
util_map_del(struct util_map *m, uint64_t key)
{
	size_t	 i = util_map_find(m, key);
	void	*v;

	if (i == SIZE_MAX)
		return (NULL);
	v = m->vals[i];
	m->keys[i] = 0;
	m->vals[i] = &util_map_tomb;
	m->len--;
	m->tombs++;
	return (v);
}

bool
util_map_next(const struct util_map *m, size_t *it, uint64_t *key, void **val)
{
	for (; *it < m->cap; (*it)++) {
		if (m->keys[*it] != 0) {
			*key = m->keys[*it];
			*val = m->vals[*it];
			(*it)++;
			return (true);
		}
	}
	return (false);
}
