/*
 * fuzz_smtp_data.c: FZ-02 (and FZ-09 structurally).  The first byte picks
 * the size limit, the next ones up to 8 split points; the rest is the DATA
 * stream.
 *
 * Oracles: feeding the stream whole, split at the chosen points, and one
 * byte at a time, and framing it with the plain-run fast path off
 * (smtp_data_set_bytewise), gives the same emitted header and body bytes,
 * error, consumed count, size and completion.  The whole-buffer run is also
 * compared with an independent reference: the end is the first CRLF "."
 * CRLF (the first CRLF may be the start of DATA); when the reference finds
 * no bare CR, bare LF, NUL or long line, the framer must report no error
 * and emit exactly the un-stuffed content, split into header and body at
 * the first empty line.  The emitted header then goes through the header
 * scanner, whose outputs must be bounded and well-formed.
 */
#include "compat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FUZZ_CHECK(c)	do { if (!(c)) abort(); } while (0)
#define FUZZ_MAX_SPLITS	8

struct fuzz_out {
	char			*buf[2];	/* [0] body, [1] header */
	size_t			 len[2];
	size_t			 consumed;
	bool			 done;
	bool			 seen_body;
	enum smtp_data_error	 error;
	uint64_t		 size;
};

static void
fuzz_emit(void *arg, const char *buf, size_t len, bool in_header)
{
	struct fuzz_out	*o = arg;
	int		 h = in_header ? 1 : 0;
	char		*n;

	FUZZ_CHECK(len > 0);
	if (!in_header)
		o->seen_body = true;
	FUZZ_CHECK(!(in_header && o->seen_body));
	if ((n = realloc(o->buf[h], o->len[h] + len)) == NULL)
		abort();
	o->buf[h] = n;
	memcpy(o->buf[h] + o->len[h], buf, len);
	o->len[h] += len;
}

static void
fuzz_run(const char *in, size_t len, uint64_t max, const size_t *cuts,
    size_t ncuts, bool bytewise, struct fuzz_out *o)
{
	struct smtp_data d;
	size_t		 from = 0, to, k, n;

	memset(o, 0, sizeof(*o));
	smtp_data_init(&d, max);
	smtp_data_set_bytewise(&d, bytewise);
	for (k = 0; k <= ncuts && !smtp_data_is_done(&d); k++) {
		to = k < ncuts ? cuts[k] : len;
		n = smtp_data_feed(&d, in + from, to - from, fuzz_emit, o);
		FUZZ_CHECK(n <= to - from);
		FUZZ_CHECK(n == to - from || smtp_data_is_done(&d));
		o->consumed += n;
		from = to;
	}
	o->done = smtp_data_is_done(&d);
	o->error = smtp_data_error(&d);
	o->size = smtp_data_size(&d);
	FUZZ_CHECK(o->done || o->consumed == len);
	FUZZ_CHECK(o->error == SMTP_DATA_OK ||
	    smtp_data_error_reply(o->error) != NULL);
}

static void
fuzz_same(const struct fuzz_out *a, const struct fuzz_out *b)
{
	int	 h;

	for (h = 0; h < 2; h++)
		FUZZ_CHECK(a->len[h] == b->len[h] && (a->len[h] == 0 ||
		    memcmp(a->buf[h], b->buf[h], a->len[h]) == 0));
	FUZZ_CHECK(a->consumed == b->consumed && a->done == b->done);
	FUZZ_CHECK(a->error == b->error && a->size == b->size);
}

static void
fuzz_free(struct fuzz_out *o)
{
	free(o->buf[0]);
	free(o->buf[1]);
}

static int
fuzz_cmp_size(const void *a, const void *b)
{
	size_t	 x = *(const size_t *)a, y = *(const size_t *)b;

	return (x < y ? -1 : x > y);
}

/* The reference: returns true when the content is clean. */
static bool
fuzz_reference(const char *in, size_t len, bool *found, size_t *consumed,
    char *out, size_t *outlen)
{
	size_t	 i, ls, n = 0, endv, *end = &endv;
	bool	 clean = true;

	*end = len;
	*consumed = len;
	*found = false;
	if (len >= 3 && memcmp(in, ".\r\n", 3) == 0) {
		*end = 0;
		*consumed = 3;
		*found = true;
	} else {
		for (i = 0; i + 5 <= len; i++)
			if (memcmp(in + i, "\r\n.\r\n", 5) == 0) {
				*end = i + 2;
				*consumed = i + 5;
				*found = true;
				break;
			}
	}
	for (i = 0; i < *end; i++) {
		if (in[i] == '\0')
			clean = false;
		if (in[i] == '\r' && (i + 1 >= *end || in[i + 1] != '\n'))
			clean = false;
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			clean = false;
	}
	/* Line lengths on the wire, then un-stuff. */
	for (ls = 0; ls < *end;) {
		for (i = ls; i < *end && in[i] != '\n'; i++)
			;
		if (i + 1 - ls > SMTP_TEXT_LINE_MAX)
			clean = false;
		if (in[ls] == '.' && i + 1 - ls > 3)
			ls++;
		memcpy(out + n, in + ls, i + 1 - ls > *end - ls ? *end - ls :
		    i + 1 - ls);
		n += i + 1 - ls > *end - ls ? *end - ls : i + 1 - ls;
		ls = i + 1;
	}
	*outlen = n;
	return (clean);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_out		 whole, split, one;
	struct smtp_data_hdrinfo h;
	size_t			 cuts[FUZZ_MAX_SPLITS], ncuts, k, len;
	size_t			*ones, consumed, reflen, hlen, i;
	const char		*in;
	char			*ref;
	uint64_t		 max;
	bool			 clean, found;

	if (size < 2)
		return (0);
	max = data[0] < 128 ? 0 : (uint64_t)(data[0] - 127) * 8;
	ncuts = data[1] % (FUZZ_MAX_SPLITS + 1);
	if (size < 2 + ncuts * 2)
		return (0);
	in = (const char *)data + 2 + ncuts * 2;
	len = size - 2 - ncuts * 2;
	for (k = 0; k < ncuts; k++)
		cuts[k] = ((size_t)data[2 + 2 * k] << 8 |
		    data[3 + 2 * k]) % (len + 1);
	qsort(cuts, ncuts, sizeof(cuts[0]), fuzz_cmp_size);

	fuzz_run(in, len, max, NULL, 0, false, &whole);
	fuzz_run(in, len, max, cuts, ncuts, false, &split);
	fuzz_same(&whole, &split);
	fuzz_free(&split);
	/* The plain-run fast path against the octet-at-a-time framer. */
	fuzz_run(in, len, max, cuts, ncuts, true, &split);
	fuzz_same(&whole, &split);
	fuzz_free(&split);
	if (len <= 4096) {
		if ((ones = calloc(len + 1, sizeof(*ones))) == NULL)
			abort();
		for (k = 0; k < len; k++)
			ones[k] = k + 1;
		fuzz_run(in, len, max, ones, len, false, &one);
		fuzz_same(&whole, &one);
		fuzz_free(&one);
		free(ones);
	}

	if ((ref = malloc(len + 1)) == NULL)
		abort();
	clean = fuzz_reference(in, len, &found, &consumed, ref, &reflen);
	FUZZ_CHECK(whole.consumed == consumed);
	FUZZ_CHECK(whole.done == found);
	if (whole.error == SMTP_DATA_OK) {
		FUZZ_CHECK(clean || !whole.done);
		if (whole.done) {
			/* Header up to and including the first empty line. */
			hlen = reflen;
			if (reflen >= 2 && memcmp(ref, "\r\n", 2) == 0)
				hlen = 2;
			else
				for (i = 0; i + 4 <= reflen; i++)
					if (memcmp(ref + i, "\r\n\r\n",
					    4) == 0) {
						hlen = i + 4;
						break;
					}
			FUZZ_CHECK(whole.len[1] == hlen && (hlen == 0 ||
			    memcmp(whole.buf[1], ref, hlen) == 0));
			FUZZ_CHECK(whole.len[0] == reflen - hlen &&
			    (reflen == hlen || memcmp(whole.buf[0],
			    ref + hlen, reflen - hlen) == 0));
			FUZZ_CHECK(whole.size == reflen);
		}
	} else if (whole.done && clean && max == 0)
		FUZZ_CHECK(whole.error == SMTP_DATA_HEADER_TOO_BIG);
	if (whole.done && clean && (max == 0 || reflen <= max) &&
	    reflen < SMTP_HEADER_MAX)
		FUZZ_CHECK(whole.error == SMTP_DATA_OK);
	free(ref);

	/* FZ-09, structurally: the header scanner on the framer's header. */
	smtp_data_scan_headers(whole.buf[1] ? whole.buf[1] : "", whole.len[1],
	    &h);
	FUZZ_CHECK(h.nfrom >= 0 && h.nreceived >= 0 && h.nfrom_addrs >= 0);
	FUZZ_CHECK(strlen(h.from_domain) < sizeof(h.from_domain));
	FUZZ_CHECK(strchr(h.from_domain, '@') == NULL);
	for (i = 0; h.from_domain[i] != '\0'; i++)
		FUZZ_CHECK(!(h.from_domain[i] >= 'A' &&
		    h.from_domain[i] <= 'Z'));
	FUZZ_CHECK(h.from_domain[0] == '\0' || h.nfrom >= 1);
	FUZZ_CHECK(!h.from_all_same_domain || h.from_domain[0] != '\0');
	FUZZ_CHECK(strlen(h.message_id) < sizeof(h.message_id));
	fuzz_free(&whole);
	return (0);
}
