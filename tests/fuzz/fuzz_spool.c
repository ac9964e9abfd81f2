/*
 * fuzz_spool.c: FZ-07, the spool decoder against arbitrary bytes from disk.
 * The input is written as queue/0000F022 of a private spool and recovery
 * runs over it, twice: once as given, and once with its checksums made
 * right by an independent reading of doc/spool.md, so that the envelope
 * parser and journal replay are reached and not only the CRC check.
 *
 * Oracles (abort on violation): recovery never crashes; a rejected file is
 * quarantined, never reported; an accepted one has a bounded, NUL-
 * terminated envelope that re-encodes (spool_encode_envelope) to exactly
 * the bytes it was read from, followed by the END record.
 */
#include "compat.h"

#include <sys/stat.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <zlib.h>

#include "log.h"
#include "spool.h"
#include "util.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FZ_ID		0x0000F022u
#define FZ_NAME		"0000F022"

static struct spool		*fz_spool;
static struct event_base	*fz_base;
static char			 fz_dir[256];
static char			 fz_spooldir[300];

struct fz_input {
	const uint8_t	*data;
	size_t		 len;
	int		 accepted;
};

static void
fz_quiet(int prio, const char *line, void *arg)
{
	(void)prio;
	(void)line;
	(void)arg;
}

static void
fz_cleanup(void)
{
	char	cmd[400];

	spool_close(fz_spool);
	fz_spool = NULL;
	event_base_free(fz_base);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fz_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_spool: could not remove %s\n", fz_dir);
}

static void
fz_init(void)
{
	char	err[256];

	if (fz_spool != NULL)
		return;
	log_set_sink(fz_quiet, NULL);
	strlcpy(fz_dir, "/tmp/fuzz_spool.XXXXXX", sizeof(fz_dir));
	if (mkdtemp(fz_dir) == NULL)
		abort();
	snprintf(fz_spooldir, sizeof(fz_spooldir), "%s/spool", fz_dir);
	if (evthread_use_pthreads() != 0 ||
	    (fz_base = event_base_new()) == NULL)
		abort();
	if ((fz_spool = spool_open(fz_spooldir, fz_base, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "fuzz_spool: %s\n", err);
		abort();
	}
	atexit(fz_cleanup);
}

static void
fz_check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_spool: oracle violated: %s\n", what);
		abort();
	}
}

/* A string from the envelope: NUL-terminated within the input's size. */
static void
fz_str(const char *s, size_t bound, bool nullable)
{
	if (s == NULL) {
		fz_check(nullable, "NULL mandatory string");
		return;
	}
	fz_check(strnlen(s, bound + 1) <= bound, "unbounded string");
}

static int
fz_recover_cb(const struct spool_envelope *e, void *arg)
{
	struct fz_input	*in = arg;
	uint8_t		*enc;
	size_t		 enclen, i;
	char		 err[256];

	in->accepted++;
	fz_check(in->accepted == 1, "one file recovered twice");
	fz_check(e->id == FZ_ID, "id differs from the file name");
	fz_check(e->nrcpts >= 1 && e->nrcpts <= in->len / 6,
	    "recipient count not bounded by the file size");
	fz_check(e->size <= in->len, "body larger than the file");
	fz_str(e->sender, in->len, false);
	fz_str(e->client_addr, in->len, true);
	fz_str(e->client_name, in->len, true);
	fz_str(e->helo, in->len, true);
	fz_str(e->sasl_user, in->len, true);
	fz_str(e->last_error, SPOOL_ERROR_MAX, true);
	fz_check(e->attempts >= 0, "negative attempts");
	for (i = 0; i < e->nrcpts; i++) {
		const struct spool_rcpt	*r = &e->rcpts[i];

		fz_str(r->addr, in->len, false);
		fz_check(r->state >= SPOOL_RCPT_PENDING &&
		    r->state <= SPOOL_RCPT_EXPIRED, "recipient state");
		fz_check(memchr(r->dsn, '\0', sizeof(r->dsn)) != NULL,
		    "dsn not terminated");
		fz_str(r->reply, SPOOL_REPLY_MAX, true);
		fz_str(r->remote, SPOOL_REMOTE_MAX, true);
		fz_check((r->state == SPOOL_RCPT_PENDING) == (r->reply == NULL),
		    "reply present iff final");
	}
	/* Accepted means canonical: re-encoding gives the same bytes. */
	fz_check(spool_encode_envelope(e, e->size, &enc, &enclen, err,
	    sizeof(err)) == 0, "accepted envelope does not re-encode");
	fz_check(enclen + e->size + 8 <= in->len, "END beyond the file");
	fz_check(memcmp(enc, in->data, enclen) == 0,
	    "re-encoded envelope differs");
	fz_check(memcmp(in->data + enclen + e->size, "PEND", 4) == 0,
	    "no END record where the header says");
	free(enc);
	return (0);
}

static uint32_t
fz_get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3]);
}

static void
fz_put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

/*
 * Make the CRCs right where the layout allows: END after header, envelope
 * and body, then each journal record (u16 type, u16 length, payload, CRC).
 */
static void
fz_fix_crcs(uint8_t *p, size_t len)
{
	uint64_t	envlen, body_len, end, off;
	size_t		plen;

	if (len < 32)
		return;
	envlen = fz_get32(p + 12);
	body_len = (uint64_t)fz_get32(p + 16) << 32 | fz_get32(p + 20);
	if (envlen > len || body_len > len || 32 + envlen + body_len + 8 > len)
		return;
	end = 32 + envlen + body_len;
	memcpy(p + end, "PEND", 4);
	fz_put32(p + end + 4, (uint32_t)crc32(0L, p, (uInt)end));
	for (off = end + 8; off + 4 <= len; off += 4 + plen + 4) {
		plen = (size_t)p[off + 2] << 8 | p[off + 3];
		if (off + 4 + plen + 4 > len)
			break;
		fz_put32(p + off + 4 + plen,
		    (uint32_t)crc32(0L, p + off, (uInt)(4 + plen)));
	}
}

static int
fz_count(const char *sub)
{
	char		 path[400];
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	snprintf(path, sizeof(path), "%s/%s", fz_spooldir, sub);
	if ((d = opendir(path)) == NULL)
		abort();
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return (n);
}

static void
fz_run(const uint8_t *data, size_t len)
{
	struct fz_input		 in = { data, len, 0 };
	struct spool_stats	 before, after;
	char			 path[400];
	int			 fd, n;

	snprintf(path, sizeof(path), "%s/queue/%s", fz_spooldir, FZ_NAME);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1)
		abort();
	if (len > 0 && write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);

	spool_get_stats(fz_spool, &before);
	n = spool_recover(fz_spool, fz_recover_cb, &in);
	spool_get_stats(fz_spool, &after);
	fz_check(n == in.accepted, "recover count differs from callbacks");
	if (n == 1) {
		fz_check(after.corrupt == before.corrupt, "accepted and "
		    "quarantined");
		fz_check(fz_count("queue") == 1, "accepted file moved");
		fz_check(unlink(path) == 0, "accepted file missing");
	} else {
		fz_check(n == 0, "recover failed");
		fz_check(after.corrupt == before.corrupt + 1,
		    "rejected file not counted");
		fz_check(fz_count("queue") == 0, "rejected file not moved");
		snprintf(path, sizeof(path), "%s/corrupt/%s", fz_spooldir,
		    FZ_NAME);
		fz_check(unlink(path) == 0, "quarantined under another name");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	uint8_t	*copy;

	fz_init();
	fz_run(data, len);
	copy = malloc(len > 0 ? len : 1);
	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, data, len);
	fz_fix_crcs(copy, len);
	fz_run(copy, len);
	free(copy);
	return (0);
}
