/*
 * fuzz_smtp_reply.c: FZ-06.  The input is split at LF into reply lines
 * (a CR before the LF is dropped, as the client's line reader would); the
 * lines are fed to one reply after another, restarting after a complete
 * reply or a protocol error.
 *
 * Oracles: an accepted line leaves a code of 200..599 equal to its first
 * three digits; the text is bounded, NUL-terminated, free of NUL and CR,
 * and holds one '\n' per extra line unless truncated; the line count never
 * passes SMTP_REPLY_LINES_MAX; the EHLO and enhanced-status parsers give
 * bounded, well-formed results.
 */
#include "compat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_parse.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FUZZ_CHECK(c)	do { if (!(c)) abort(); } while (0)

static void
fuzz_check(const struct smtp_reply *r, const char *line)
{
	struct smtp_ehlo_caps	 caps;
	char			 st[12];
	size_t			 i, nl = 0;

	FUZZ_CHECK(r->code >= 200 && r->code <= 599);
	FUZZ_CHECK(r->code == (line[0] - '0') * 100 + (line[1] - '0') * 10 +
	    (line[2] - '0'));
	FUZZ_CHECK(r->nlines >= 1 && r->nlines <= SMTP_REPLY_LINES_MAX);
	FUZZ_CHECK(r->textlen < sizeof(r->text));
	FUZZ_CHECK(r->text[r->textlen] == '\0');
	FUZZ_CHECK(strlen(r->text) == r->textlen);
	for (i = 0; i < r->textlen; i++) {
		FUZZ_CHECK(r->text[i] != '\r');
		if (r->text[i] == '\n')
			nl++;
	}
	FUZZ_CHECK(r->truncated || nl == (size_t)r->nlines - 1);
	FUZZ_CHECK(nl <= (size_t)r->nlines - 1);
	if (r->complete) {
		smtp_parse_ehlo_caps(r, &caps);
		if (r->code != 250)
			FUZZ_CHECK(!caps.pipelining && !caps.starttls &&
			    caps.size == 0);
		if (smtp_parse_enhanced(r->text, st) == 0) {
			FUZZ_CHECK(strlen(st) >= 5 && strlen(st) <= 9);
			FUZZ_CHECK(strncmp(st, r->text, strlen(st)) == 0);
			FUZZ_CHECK(st[0] == '2' || st[0] == '4' ||
			    st[0] == '5');
		} else
			FUZZ_CHECK(st[0] == '\0');
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_reply	 r;
	const char		*p = (const char *)data, *end = p + size, *nl;
	size_t			 len;

	smtp_parse_reply_init(&r);
	while (p < end) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		len = (size_t)(nl - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (smtp_parse_reply_line(&r, p, len) == 0)
			fuzz_check(&r, p);
		else {
			FUZZ_CHECK(r.complete || r.nlines >= 0);
			smtp_parse_reply_init(&r);
		}
		if (r.complete)
			smtp_parse_reply_init(&r);
		p = nl + 1;
	}
	return (0);
}
