/*
 * test_smtp_data.c: the DATA framer (SECURITY-CASES IN-01..IN-06, IN-09,
 * IN-10, IN-43..IN-45, IN-47) and the header scanner (IN-37, IN-42, IN-46).
 *
 * Every framer case is run whole, split at every offset into two feeds,
 * split into three feeds at every pair of offsets (short inputs), and fed
 * one byte at a time; every run must give the same emitted header and
 * body bytes, error, consumed count, size and completion (IN-09, FZ-02).
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_data.h"

#define S(lit)	lit, sizeof(lit) - 1

/* What a run of the framer produced. */
struct result {
	char			*hdr;
	size_t			 hdrlen;
	char			*body;
	size_t			 bodylen;
	size_t			 consumed;
	bool			 done;
	bool			 order_ok;	/* no header byte after body */
	bool			 empty_call;	/* cb called with len 0 */
	enum smtp_data_error	 error;
	uint64_t		 size;
};

static void
collect(void *arg, const char *buf, size_t len, bool in_header)
{
	struct result	*r = arg;
	char		**dst = in_header ? &r->hdr : &r->body;
	size_t		*dlen = in_header ? &r->hdrlen : &r->bodylen;

	if (len == 0)
		r->empty_call = true;
	if (in_header && r->bodylen > 0)
		r->order_ok = false;
	*dst = realloc(*dst, *dlen + len + 1);
	cr_assert_not_null(*dst);
	memcpy(*dst + *dlen, buf, len);
	*dlen += len;
	(*dst)[*dlen] = '\0';
}

static void
result_free(struct result *r)
{
	free(r->hdr);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/*
 * Feed in[0..len) in pieces ending at the given cut offsets (sorted,
 * ncuts of them), stopping once the framer is done, as a caller would.
 */
static void
run_cuts(const char *in, size_t len, uint64_t max, uint64_t hmax,
    const size_t *cuts, size_t ncuts, struct result *r)
{
	struct smtp_data d;
	size_t		 from = 0, to, k, n;

	memset(r, 0, sizeof(*r));
	r->order_ok = true;
	smtp_data_init(&d, max);
	if (hmax != 0)
		smtp_data_set_header_max(&d, hmax);
	for (k = 0; k <= ncuts && !smtp_data_is_done(&d); k++) {
		to = k < ncuts ? cuts[k] : len;
		n = smtp_data_feed(&d, in + from, to - from, collect, r);
		r->consumed += n;
		cr_assert(n <= to - from);
		if (n < to - from)
			cr_assert(smtp_data_is_done(&d),
			    "stopped short without being done");
		from = to;
	}
	if (smtp_data_is_done(&d))
		cr_assert_eq(smtp_data_feed(&d, "x", 1, collect, r), 0,
		    "feed after done consumed input");
	r->done = smtp_data_is_done(&d);
	r->error = smtp_data_error(&d);
	r->size = smtp_data_size(&d);
}

static void
same(const struct result *a, const struct result *b, const char *what)
{
	cr_assert(a->hdrlen == b->hdrlen &&
	    memcmp(a->hdr ? a->hdr : "", b->hdr ? b->hdr : "", a->hdrlen) == 0,
	    "%s: header differs", what);
	cr_assert(a->bodylen == b->bodylen && memcmp(a->body ? a->body : "",
	    b->body ? b->body : "", a->bodylen) == 0, "%s: body differs", what);
	cr_assert_eq(a->consumed, b->consumed, "%s: consumed %zu vs %zu", what,
	    a->consumed, b->consumed);
	cr_assert_eq(a->done, b->done, "%s: done", what);
	cr_assert_eq(a->error, b->error, "%s: error %s vs %s", what,
	    smtp_data_error_name(a->error), smtp_data_error_name(b->error));
	cr_assert_eq(a->size, b->size, "%s: size", what);
	cr_assert(b->order_ok && !b->empty_call, "%s: callback misuse", what);
}

/* The whole-buffer result, checked against every way of splitting. */
static void
run_all_splits(const char *in, size_t len, uint64_t max, uint64_t hmax,
    struct result *whole)
{
	struct result	 r;
	size_t		 cuts[2], i, j, *one;
	char		 what[64];

	run_cuts(in, len, max, hmax, NULL, 0, whole);
	cr_assert(whole->order_ok && !whole->empty_call);
	for (i = 0; i <= len; i++) {
		cuts[0] = i;
		run_cuts(in, len, max, hmax, cuts, 1, &r);
		snprintf(what, sizeof(what), "split at %zu", i);
		same(whole, &r, what);
		result_free(&r);
	}
	if (len <= 200) {
		for (i = 0; i <= len; i++)
			for (j = i; j <= len; j++) {
				cuts[0] = i;
				cuts[1] = j;
				run_cuts(in, len, max, hmax, cuts, 2, &r);
				snprintf(what, sizeof(what),
				    "split at %zu,%zu", i, j);
				same(whole, &r, what);
				result_free(&r);
			}
	}
	one = calloc(len + 1, sizeof(*one));
	cr_assert_not_null(one);
	for (i = 0; i < len; i++)
		one[i] = i + 1;
	run_cuts(in, len, max, hmax, one, len, &r);
	same(whole, &r, "one byte per feed");
	result_free(&r);
	free(one);
}

struct data_case {
	const char		*name;
	const char		*in;
	size_t			 len;
	size_t			 trailing;	/* bytes after the end */
	uint64_t		 max;
	enum smtp_data_error	 error;
	bool			 done;
	const char		*hdr;
	const char		*body;
};

#define HDR	"From: a@ok.example\r\n\r\n"
#define SMUG	"MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<x@t.example>\r\n" \
		"DATA\r\nFrom: ceo@victim.example\r\n\r\nsmuggled\r\n"
#define NEXT	"QUIT\r\n"

static const struct data_case data_cases[] = {
	{ "plain", S(HDR "hi\r\n.\r\n"), 0, 0, SMTP_DATA_OK, true,
	    HDR, "hi\r\n" },
	{ "pipelined command after the end", S(HDR "hi\r\n.\r\n" NEXT),
	    sizeof(NEXT) - 1, 0, SMTP_DATA_OK, true, HDR, "hi\r\n" },
	{ "empty message", S(".\r\n" NEXT), sizeof(NEXT) - 1, 0,
	    SMTP_DATA_OK, true, "", "" },
	{ "only an empty line", S("\r\n.\r\n"), 0, 0, SMTP_DATA_OK, true,
	    "\r\n", "" },
	{ "no header/body separator", S("Subject: x\r\nhi\r\n.\r\n"), 0, 0,
	    SMTP_DATA_OK, true, "Subject: x\r\nhi\r\n", "" },
	{ "unterminated", S(HDR "hi\r\n"), 0, 0, SMTP_DATA_OK, false,
	    HDR, "hi\r\n" },
	{ "unterminated after dot", S(HDR "hi\r\n.\r"), 0, 0, SMTP_DATA_OK,
	    false, HDR, "hi\r\n" },
	/* IN-10 */
	{ "dot transparency", S(HDR "..\r\n..x\r\n.x\r\n. \r\nx.\r\n.\r\n"),
	    0, 0, SMTP_DATA_OK, true, HDR, ".\r\n.x\r\nx\r\n \r\nx.\r\n" },
	{ "stuffed header line", S(".From: x\r\n\r\n.\r\n"), 0, 0,
	    SMTP_DATA_OK, true, "From: x\r\n\r\n", "" },
	{ "empty lines in body", S(HDR "\r\n\r\na\r\n\r\n.\r\n"), 0, 0,
	    SMTP_DATA_OK, true, HDR, "\r\n\r\na\r\n\r\n" },
	/* IN-01 */
	{ "IN-01 \\n.\\n", S(HDR "hi\n.\n" SMUG ".\r\n" NEXT),
	    sizeof(NEXT) - 1, 0, SMTP_DATA_BARE_LF, true, HDR, "hi" },
	/* IN-02 */
	{ "IN-02 \\r\\n.\\n", S(HDR "hi\r\n.\n" SMUG ".\r\n" NEXT),
	    sizeof(NEXT) - 1, 0, SMTP_DATA_BARE_LF, true, HDR, "hi\r\n" },
	{ "IN-02 \\n.\\r\\n", S(HDR "hi\n.\r\n" SMUG ".\r\n" NEXT),
	    sizeof(NEXT) - 1, 0, SMTP_DATA_BARE_LF, true, HDR, "hi" },
	/* IN-03 */
	{ "IN-03 \\r.\\r", S(HDR "hi\r.\r" SMUG ".\r\n"), 0, 0,
	    SMTP_DATA_BARE_CR, true, HDR, "hi" },
	{ "IN-03 \\r.\\n", S(HDR "hi\r.\n" SMUG ".\r\n"), 0, 0,
	    SMTP_DATA_BARE_CR, true, HDR, "hi" },
	{ "IN-03 \\n.\\r", S(HDR "hi\n.\r" SMUG ".\r\n"), 0, 0,
	    SMTP_DATA_BARE_LF, true, HDR, "hi" },
	{ "IN-03 \\r.\\r\\n", S(HDR "hi\r.\r\n" SMUG ".\r\n"), 0, 0,
	    SMTP_DATA_BARE_CR, true, HDR, "hi" },
	{ "IN-03 \\r\\n.\\r", S(HDR "hi\r\n.\r" SMUG ".\r\n"), 0, 0,
	    SMTP_DATA_BARE_CR, true, HDR, "hi\r\n" },
	{ "IN-03 lone \\r\\r\\r", S(HDR "\r\r\r.\r\r.\r\n.\r\n"), 0, 0,
	    SMTP_DATA_BARE_CR, true, HDR, "" },
	/* IN-04: CR CR LF is never collapsed to CRLF. */
	{ "IN-04 \\r\\n.\\r\\r\\n", S(HDR "hi\r\n.\r\r\n" SMUG ".\r\n"), 0,
	    0, SMTP_DATA_BARE_CR, true, HDR, "hi\r\n" },
	{ "IN-04 \\r\\r\\n.\\r\\r\\n", S(HDR "hi\r\r\n.\r\r\n" SMUG ".\r\n"),
	    0, 0, SMTP_DATA_BARE_CR, true, HDR, "hi" },
	/* IN-05: NUL is not stripped before the dot line is looked for. */
	{ "IN-05 \\r\\n\\0.\\r\\n", S(HDR "hi\r\n\0.\r\n" SMUG ".\r\n"), 0,
	    0, SMTP_DATA_NUL, true, HDR, "hi\r\n" },
	{ "IN-05 \\r\\n.\\0\\r\\n", S(HDR "hi\r\n.\0\r\n" SMUG ".\r\n"), 0,
	    0, SMTP_DATA_NUL, true, HDR, "hi\r\n" },
	/* IN-06 */
	{ "IN-06 bare LF in a line", S("l1\nl2\r\n.\r\n"), 0, 0,
	    SMTP_DATA_BARE_LF, true, "l1", "" },
	/* IN-44 */
	{ "IN-44 NUL in the body", S(HDR "a\0b\r\n.\r\n"), 0, 0,
	    SMTP_DATA_NUL, true, HDR, "a" },
	{ "first error wins", S(HDR "a\0b\nc\r\n.\r\n"), 0, 0,
	    SMTP_DATA_NUL, true, HDR, "a" },
	/* Size: exactly at the limit, then one over. */
	{ "size at limit", S("ab\r\n\r\n.\r\n"), 0, 6, SMTP_DATA_OK, true,
	    "ab\r\n\r\n", "" },
	{ "size over limit", S("ab\r\n\r\nc\r\n.\r\n"), 0, 6,
	    SMTP_DATA_TOO_BIG, true, "ab\r\n\r\n", "" },
	{ "size over at a CR", S("ab\r\n.\r\n"), 0, 2, SMTP_DATA_TOO_BIG,
	    true, "ab", "" },
	{ "size not counting stuffing", S("..\r\n.\r\n"), 0, 3,
	    SMTP_DATA_OK, true, ".\r\n", "" },
};

Test(smtp_data, framer_table_all_splits)
{
	struct result	 r;
	size_t		 i;

	for (i = 0; i < nitems(data_cases); i++) {
		const struct data_case *c = &data_cases[i];

		run_all_splits(c->in, c->len, c->max, 0, &r);
		cr_expect_eq(r.error, c->error, "%s: error got %s want %s",
		    c->name, smtp_data_error_name(r.error),
		    smtp_data_error_name(c->error));
		cr_expect_eq(r.done, c->done, "%s: done got %d want %d",
		    c->name, r.done, c->done);
		cr_expect_eq(r.consumed, c->len - c->trailing,
		    "%s: consumed got %zu want %zu", c->name, r.consumed,
		    c->len - c->trailing);
		cr_expect(r.hdrlen == strlen(c->hdr) &&
		    memcmp(r.hdr ? r.hdr : "", c->hdr, r.hdrlen) == 0,
		    "%s: header got \"%s\" want \"%s\"", c->name,
		    r.hdr ? r.hdr : "", c->hdr);
		cr_expect(r.bodylen == strlen(c->body) &&
		    memcmp(r.body ? r.body : "", c->body, r.bodylen) == 0,
		    "%s: body got \"%s\" want \"%s\"", c->name,
		    r.body ? r.body : "", c->body);
		if (c->error != SMTP_DATA_OK)
			cr_expect_not_null(smtp_data_error_reply(c->error));
		result_free(&r);
	}
}

/* IN-45: 1000 octets with CRLF is the longest line; stuffing counts. */
Test(smtp_data, line_length)
{
	static const struct {
		size_t			 content;	/* wire octets before
							 * CRLF, dot included */
		bool			 stuffed;
		enum smtp_data_error	 error;
	} cases[] = {
		{ 998, false, SMTP_DATA_OK },
		{ 999, false, SMTP_DATA_LINE_TOO_LONG },
		{ 998, true, SMTP_DATA_OK },
		{ 999, true, SMTP_DATA_LINE_TOO_LONG },
		{ 5000, false, SMTP_DATA_LINE_TOO_LONG },
	};
	char		*msg;
	struct result	 r;
	size_t		 i, n;

	for (i = 0; i < nitems(cases); i++) {
		msg = malloc(cases[i].content + 16);
		cr_assert_not_null(msg);
		n = 0;
		memcpy(msg, "\r\n", 2);		/* empty header section */
		n = 2;
		if (cases[i].stuffed)
			msg[n++] = '.';
		memset(msg + n, 'x', cases[i].content - cases[i].stuffed);
		n += cases[i].content - cases[i].stuffed;
		memcpy(msg + n, "\r\n.\r\n", 5);
		n += 5;
		run_cuts(msg, n, 0, 0, NULL, 0, &r);
		cr_expect_eq(r.error, cases[i].error,
		    "line of %zu%s: got %s want %s", cases[i].content,
		    cases[i].stuffed ? " (stuffed)" : "",
		    smtp_data_error_name(r.error),
		    smtp_data_error_name(cases[i].error));
		cr_expect(r.done && r.consumed == n);
		if (cases[i].error == SMTP_DATA_OK)
			cr_expect_eq(r.bodylen, cases[i].content -
			    cases[i].stuffed + 2);
		else
			/* Emission stops at the octet over the limit: the
			 * line is never completed with its CRLF. */
			cr_expect(r.bodylen <= SMTP_TEXT_LINE_MAX &&
			    memchr(r.body, '\n', r.bodylen) == NULL,
			    "long line emitted whole (%zu)", r.bodylen);
		result_free(&r);
		free(msg);
	}
	cr_expect_str_eq(smtp_data_error_reply(SMTP_DATA_LINE_TOO_LONG),
	    "550 5.5.2 Error: text line too long");
}

/* IN-47: the size is still counted after TOO_BIG, for the log. */
Test(smtp_data, size_counts_past_limit)
{
	struct smtp_data d;
	static const char msg[] = "\r\n0123456789\r\n..x\r\n.\r\n";

	smtp_data_init(&d, 5);
	cr_expect_eq(smtp_data_feed(&d, msg, sizeof(msg) - 1, NULL, NULL),
	    sizeof(msg) - 1);
	cr_expect(smtp_data_is_done(&d));
	cr_expect_eq(smtp_data_error(&d), SMTP_DATA_TOO_BIG);
	/* "\r\n" + "0123456789\r\n" + ".x\r\n" */
	cr_expect_eq(smtp_data_size(&d), 2 + 12 + 4, "size %ju",
	    (uintmax_t)smtp_data_size(&d));
	cr_expect_str_eq(smtp_data_error_reply(smtp_data_error(&d)),
	    "552 5.3.4 Error: message file too big");
}

Test(smtp_data, header_limit)
{
	struct result	 r;

	/* 10-octet header bound: "Subject: x\r\n" is 12. */
	run_all_splits(S("Subject: x\r\n\r\nbody\r\n.\r\n"), 0, 10, &r);
	cr_expect_eq(r.error, SMTP_DATA_HEADER_TOO_BIG);
	cr_expect_str_eq(r.hdr, "Subject: x", "got %s", r.hdr);
	cr_expect(r.done);
	result_free(&r);
	/* The body does not count against the header bound. */
	run_all_splits(S("S: x\r\n\r\nlong body line\r\n.\r\n"), 0, 8, &r);
	cr_expect_eq(r.error, SMTP_DATA_OK);
	cr_expect_str_eq(r.body, "long body line\r\n");
	result_free(&r);
	cr_expect_str_eq(smtp_data_error_reply(SMTP_DATA_HEADER_TOO_BIG),
	    "552 5.3.4 Error: message header too big");
}

/* IN-43: one field folded over 200,000 lines hits the 1 MiB header cap. */
Test(smtp_data, folded_header_bomb, .timeout = 10)
{
	struct smtp_data d;
	size_t		 i, total = 0;
	static const char first[] = "X-Fold: a\r\n";
	static const char cont[] = " continuation-line-of-some-length\r\n";

	smtp_data_init(&d, 0);
	total += smtp_data_feed(&d, first, sizeof(first) - 1, NULL, NULL);
	for (i = 0; i < 200000; i++)
		total += smtp_data_feed(&d, cont, sizeof(cont) - 1, NULL,
		    NULL);
	cr_expect_eq(smtp_data_feed(&d, "\r\n.\r\n", 5, NULL, NULL), 5);
	cr_expect(smtp_data_is_done(&d));
	cr_expect_eq(smtp_data_error(&d), SMTP_DATA_HEADER_TOO_BIG);
	cr_expect_eq(total, sizeof(first) - 1 + 200000 * (sizeof(cont) - 1));
}

Test(smtp_data, error_replies)
{
	static const struct {
		enum smtp_data_error	 e;
		const char		*reply;
	} cases[] = {
		{ SMTP_DATA_BARE_LF, "550 5.5.2 Error: bare <LF> received" },
		{ SMTP_DATA_BARE_CR, "550 5.5.2 Error: bare <CR> received" },
		{ SMTP_DATA_NUL, "554 5.6.0 Error: NUL character in message" },
		{ SMTP_DATA_LINE_TOO_LONG,
		    "550 5.5.2 Error: text line too long" },
		{ SMTP_DATA_TOO_BIG, "552 5.3.4 Error: message file too big" },
		{ SMTP_DATA_HEADER_TOO_BIG,
		    "552 5.3.4 Error: message header too big" },
	};
	size_t	 i;

	for (i = 0; i < nitems(cases); i++)
		cr_expect_str_eq(smtp_data_error_reply(cases[i].e),
		    cases[i].reply);
	cr_expect_null(smtp_data_error_reply(SMTP_DATA_OK));
}

struct hdr_case {
	const char	*name;
	const char	*hdr;
	int		 rc;
	int		 nfrom;
	int		 naddrs;
	const char	*domain;
	bool		 same;
};

static const struct hdr_case hdr_cases[] = {
	{ "plain", "From: a@mine.example\r\n\r\n", 0, 1, 1, "mine.example",
	    true },
	{ "lower-cased", "FROM: a@Mine.EXAMPLE\r\n", 0, 1, 1, "mine.example",
	    true },
	{ "angle", "From: Joe <a@mine.example>\r\n", 0, 1, 1, "mine.example",
	    true },
	/* IN-37: the display name never counts. */
	{ "address in display name",
	    "From: \"a@mine.example\" <b@other.example>\r\n", 0, 1, 1,
	    "other.example", true },
	{ "unquoted address as display name",
	    "From: a@mine.example <b@other.example>\r\n", 0, 1, 1, "",
	    false },
	{ "two From fields",
	    "From: a@mine.example\r\nFrom: b@other.example\r\n", 0, 2, 1,
	    "mine.example", false },
	{ "two From fields, same domain",
	    "From: a@mine.example\r\nfrom: b@mine.example\r\n", 0, 2, 1,
	    "mine.example", true },
	{ "two mailboxes", "From: a@mine.example, b@other.example\r\n", 0, 1,
	    2, "mine.example", false },
	{ "two mailboxes, same domain",
	    "From: a@mine.example, \"B\" <b@MINE.example>\r\n", 0, 1, 2,
	    "mine.example", true },
	{ "group", "From: team: a@x.example, b@x.example;\r\n", 0, 1, 2,
	    "x.example", true },
	{ "empty group", "From: undisclosed-recipients:;\r\n", 0, 1, 0, "",
	    false },
	{ "nested group", "From: g: h: a@x.example;;\r\n", 0, 1, 0, "",
	    false },
	{ "comments",
	    "From: (x (nested) a@evil.example) a(c)@mine.example (y)\r\n", 0,
	    1, 1, "mine.example", true },
	{ "comment with quoted pair",
	    "From: (a \\) @evil.example) a@mine.example\r\n", 0, 1, 1,
	    "mine.example", true },
	{ "unterminated comment", "From: (a@mine.example\r\n", 0, 1, 0, "",
	    false },
	{ "encoded word",
	    "From: =?utf-8?q?J=C3=B6e?= <joe@mine.example>\r\n", 0, 1, 1,
	    "mine.example", true },
	{ "encoded word with an @",
	    "From: =?utf-8?q?a@mine.example?= <b@other.example>\r\n", 0, 1,
	    1, "", false },
	{ "folded", "From: Joe\r\n <joe@mine.example>\r\n\r\n", 0, 1, 1,
	    "mine.example", true },
	{ "folded in the domain", "From: joe@mine\r\n\t.example\r\n", 0, 1, 1,
	    "mine.example", true },
	{ "obs route", "From: <@route.example:a@mine.example>\r\n", 0, 1, 1,
	    "mine.example", true },
	{ "obs WSP before colon", "From : a@mine.example\r\n", 0, 1, 1,
	    "mine.example", true },
	{ "quoted local part", "From: \"a b\"@mine.example\r\n", 0, 1, 1,
	    "mine.example", true },
	{ "comma in quoted display name",
	    "From: \"Doe, John\" <j@mine.example>\r\n", 0, 1, 1,
	    "mine.example", true },
	{ "unquoted comma", "From: Doe, John <j@mine.example>\r\n", 0, 1, 0,
	    "", false },
	{ "domain literal", "From: a@[192.0.2.1]\r\n", 0, 1, 1, "[192.0.2.1]",
	    true },
	{ "null angle", "From: <>\r\n", 0, 1, 0, "", false },
	{ "no domain", "From: joe\r\n", 0, 1, 0, "", false },
	{ "empty", "From:\r\n", 0, 1, 0, "", false },
	{ "8-bit", "From: j\xc3\xb6@b\xc3\xbc.example\r\n", 0, 1, 1,
	    "b\xc3\xbc.example", true },
	{ "no From", "Subject: x\r\n\r\n", 0, 0, 0, "", false },
	{ "From after the header", "Subject: x\r\n\r\nFrom: a@x.example\r\n",
	    0, 0, 0, "", false },
	{ "bare LF lines", "Subject: x\nFrom: a@mine.example\n\n", 0, 1, 1,
	    "mine.example", true },
	{ "no final line end", "From: a@mine.example", 0, 1, 1,
	    "mine.example", true },
	{ "not a field", "hello\r\nFrom: a@mine.example\r\n", -1, 0, 0, "",
	    false },
	{ "continuation first", " x\r\nFrom: a@mine.example\r\n", -1, 0, 0,
	    "", false },
	{ "space in field name", "Fr om: a@mine.example\r\n", -1, 0, 0, "",
	    false },
	{ "From-like name", "From-X: a@mine.example\r\nX-From: b\r\n", 0, 0,
	    0, "", false },
};

Test(smtp_data, scan_headers_from)
{
	struct smtp_data_hdrinfo h;
	size_t			 i;
	int			 rc;

	for (i = 0; i < nitems(hdr_cases); i++) {
		const struct hdr_case *c = &hdr_cases[i];

		rc = smtp_data_scan_headers(c->hdr, strlen(c->hdr), &h);
		cr_expect_eq(rc, c->rc, "%s: rc got %d want %d", c->name, rc,
		    c->rc);
		cr_expect_eq(h.nfrom, c->nfrom, "%s: nfrom got %d want %d",
		    c->name, h.nfrom, c->nfrom);
		cr_expect_eq(h.nfrom_addrs, c->naddrs,
		    "%s: nfrom_addrs got %d want %d", c->name, h.nfrom_addrs,
		    c->naddrs);
		cr_expect_str_eq(h.from_domain, c->domain,
		    "%s: from_domain got \"%s\" want \"%s\"", c->name,
		    h.from_domain, c->domain);
		cr_expect_eq(h.from_all_same_domain, c->same,
		    "%s: same domain got %d want %d", c->name,
		    h.from_all_same_domain, c->same);
		cr_expect_null(strchr(h.from_domain, '@'), "%s: '@'", c->name);
	}
}

Test(smtp_data, scan_headers_fields)
{
	struct smtp_data_hdrinfo h;
	char			*big;
	size_t			 i, n;
	static const char	 hdr[] =
	    "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "received: from c\r\n\tby d\r\n"
	    "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	    "Message-ID:\r\n <abc@x.example>  \r\n"
	    "From: a@x.example\r\n"
	    "\r\n";

	cr_assert_eq(smtp_data_scan_headers(hdr, sizeof(hdr) - 1, &h), 0);
	cr_expect_eq(h.nreceived, 2);
	cr_expect(h.has_date);
	cr_expect(h.has_message_id);
	cr_expect_str_eq(h.message_id, "<abc@x.example>");

	cr_assert_eq(smtp_data_scan_headers(S("Subject: x\r\n"), &h), 0);
	cr_expect(!h.has_date && !h.has_message_id);
	cr_expect_str_eq(h.message_id, "");

	/* A Message-ID of 300 octets is reported present but not kept. */
	big = malloc(400);
	cr_assert_not_null(big);
	n = (size_t)snprintf(big, 400, "Message-ID: <");
	memset(big + n, 'm', 300);
	n += 300;
	n += (size_t)snprintf(big + n, 400 - n, ">\r\n");
	cr_assert_eq(smtp_data_scan_headers(big, n, &h), 0);
	cr_expect(h.has_message_id);
	cr_expect_str_eq(h.message_id, "");
	free(big);

	/* IN-42: 101 Received: fields are all counted. */
	big = malloc(101 * 20 + 1);
	cr_assert_not_null(big);
	for (i = 0, n = 0; i < 101; i++)
		n += (size_t)snprintf(big + n, 21, "Received: from x\r\n");
	cr_assert_eq(smtp_data_scan_headers(big, n, &h), 0);
	cr_expect_eq(h.nreceived, 101);
	cr_expect_gt(h.nreceived, SMTP_MAX_HOPS);
	free(big);
}

/* IN-43: linear time on a field folded over 200,000 lines and on deeply
 * nested comments. */
Test(smtp_data, scan_headers_linear, .timeout = 10)
{
	struct smtp_data_hdrinfo h;
	char			*buf;
	size_t			 n = 0, i, cap = 200000 * 4 + 64;

	buf = malloc(cap);
	cr_assert_not_null(buf);
	n += (size_t)snprintf(buf, cap, "From: a@x.example");
	for (i = 0; i < 200000; i++) {
		memcpy(buf + n, "\r\n a", 4);
		n += 4;
	}
	cr_expect_eq(smtp_data_scan_headers(buf, n, &h), 0);
	cr_expect_eq(h.nfrom, 1);
	cr_expect_str_eq(h.from_domain, "", "trailing atoms: unparseable");

	n = (size_t)snprintf(buf, cap, "From: ");
	for (i = 0; i < 300000; i++)
		buf[n++] = '(';
	for (i = 0; i < 300000; i++)
		buf[n++] = ')';
	n += (size_t)snprintf(buf + n, cap - n, " a@mine.example\r\n");
	cr_expect_eq(smtp_data_scan_headers(buf, n, &h), 0);
	cr_expect_str_eq(h.from_domain, "mine.example");
	free(buf);
}

/* The framer's header output is what the scanner reads. */
Test(smtp_data, framer_then_scanner)
{
	static const char msg[] =
	    "From: \"a@mine.example\" <b@other.example>\r\n"
	    "Subject: x\r\n\r\nbody\r\n.\r\n";
	struct smtp_data_hdrinfo h;
	struct result		 r;

	run_all_splits(msg, sizeof(msg) - 1, 0, 0, &r);
	cr_assert_eq(r.error, SMTP_DATA_OK);
	cr_assert_eq(smtp_data_scan_headers(r.hdr, r.hdrlen, &h), 0);
	cr_expect_eq(h.nfrom, 1);
	cr_expect_str_eq(h.from_domain, "other.example");
	result_free(&r);
}
