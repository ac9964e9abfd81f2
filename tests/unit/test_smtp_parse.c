/*
 * test_smtp_parse.c: command, path, parameter, HELO/AUTH and reply parsing
 * (SECURITY-CASES IN-19, IN-21..IN-26, IN-33..IN-35, IN-39..IN-41, OUT-07,
 * OUT-08, OUT-10).  Table-driven; each failure prints got/want.
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "smtp_parse.h"

/* Counted strings so that tables can hold NULs. */
#define S(lit)	lit, sizeof(lit) - 1

static char *
repeat(char *buf, char c, size_t n)
{
	memset(buf, c, n);
	buf[n] = '\0';
	return (buf);
}

struct cmd_case {
	const char	*line;
	size_t		 len;
	int		 rc;
	enum smtp_verb	 verb;
	const char	*args;		/* rc 0 */
	const char	*reply;		/* rc -1: prefix */
};

Test(smtp_parse, command_table)
{
	static const struct cmd_case cases[] = {
		{ S("EHLO mx.example"), 0, SMTP_VERB_EHLO, "mx.example", NULL },
		{ S("ehlo mx.example"), 0, SMTP_VERB_EHLO, "mx.example", NULL },
		{ S("MaIl FROM:<a@b>"), 0, SMTP_VERB_MAIL, "FROM:<a@b>", NULL },
		{ S("QUIT"), 0, SMTP_VERB_QUIT, "", NULL },
		{ S("QUIT "), 0, SMTP_VERB_QUIT, "", NULL },
		{ S("NOOP  x"), 0, SMTP_VERB_NOOP, " x", NULL },
		{ S("STARTTLS x"), 0, SMTP_VERB_STARTTLS, "x", NULL },
		{ S("data"), 0, SMTP_VERB_DATA, "", NULL },
		{ S("BDAT 20 LAST"), 0, SMTP_VERB_BDAT, "20 LAST", NULL },
		{ S("AUTH PLAIN"), 0, SMTP_VERB_AUTH, "PLAIN", NULL },
		{ S("VRFY root"), 0, SMTP_VERB_VRFY, "root", NULL },
		{ S("EXPN list"), 0, SMTP_VERB_EXPN, "list", NULL },
		{ S("HELP"), 0, SMTP_VERB_HELP, "", NULL },
		{ S("RSET"), 0, SMTP_VERB_RSET, "", NULL },
		{ S("RCPT TO:<a@b>"), 0, SMTP_VERB_RCPT, "TO:<a@b>", NULL },
		{ S("HELO x"), 0, SMTP_VERB_HELO, "x", NULL },
		{ S("FOO bar"), -1, SMTP_VERB_UNKNOWN, NULL,
		    "500 5.5.2 Error: command not recognized" },
		{ S(""), -1, SMTP_VERB_UNKNOWN, NULL, "500 5.5.2" },
		{ S("MAILFROM:<a@b>"), -1, SMTP_VERB_UNKNOWN, NULL, "500 5.5.2" },
		{ S(" MAIL FROM:<a@b>"), -1, SMTP_VERB_UNKNOWN, NULL,
		    "500 5.5.2" },
		{ S("MAIL\tFROM:<a@b>"), -1, SMTP_VERB_UNKNOWN, NULL,
		    "500 5.5.2" },
		/* IN-22: never cut at a NUL. */
		{ S("EHLO a\0b"), -1, SMTP_VERB_EHLO, NULL,
		    "500 5.5.2 Error: NUL in command" },
		{ S("RCPT TO:<v@ok.example\0@evil.example>"), -1,
		    SMTP_VERB_RCPT, NULL, "500 5.5.2 Error: NUL in command" },
		{ S("QU\0IT"), -1, SMTP_VERB_UNKNOWN, NULL,
		    "500 5.5.2 Error: NUL in command" },
		/* IN-07, IN-08, should the reader ever let them through. */
		{ S("EHLO a\nMAIL FROM:<x@y.example>"), -1, SMTP_VERB_EHLO,
		    NULL, "500 5.5.2 Error: bare <CR> or <LF>" },
		{ S("RSET\rMAIL FROM:<x@y.example>"), -1, SMTP_VERB_UNKNOWN,
		    NULL, "500 5.5.2 Error: bare <CR> or <LF>" },
		/* IN-23 */
		{ S("NOOP \xc3\x28"), -1, SMTP_VERB_NOOP, NULL,
		    "500 5.5.2 Error: bad UTF-8 syntax" },
		{ S("NOOP j\xc3\xb6""e"), 0, SMTP_VERB_NOOP, "j\xc3\xb6""e",
		    NULL },
	};
	struct smtp_cmd	 cmd;
	const char	*reply;
	size_t		 i;
	int		 rc;

	for (i = 0; i < nitems(cases); i++) {
		reply = NULL;
		rc = smtp_parse_command(cases[i].line, cases[i].len, &cmd,
		    &reply);
		cr_expect_eq(rc, cases[i].rc, "case %zu %s: rc got %d want %d",
		    i, cases[i].line, rc, cases[i].rc);
		cr_expect_eq(cmd.verb, cases[i].verb,
		    "case %zu %s: verb got %s want %s", i, cases[i].line,
		    smtp_parse_verb_name(cmd.verb),
		    smtp_parse_verb_name(cases[i].verb));
		if (rc == 0 && cases[i].rc == 0) {
			cr_expect(cmd.argslen == strlen(cases[i].args) &&
			    memcmp(cmd.args, cases[i].args, cmd.argslen) == 0,
			    "case %zu: args got \"%.*s\" want \"%s\"", i,
			    (int)cmd.argslen, cmd.args, cases[i].args);
		} else if (rc == -1 && cases[i].rc == -1) {
			cr_expect(reply != NULL && strncmp(reply,
			    cases[i].reply, strlen(cases[i].reply)) == 0,
			    "case %zu %s: reply got \"%s\" want \"%s\"", i,
			    cases[i].line, reply, cases[i].reply);
		}
	}
}

Test(smtp_parse, command_line_limits)
{
	char		 line[SMTP_AUTH_LINE_MAX + 16];
	struct smtp_cmd	 cmd;
	const char	*reply = NULL;

	/* IN-19: "NOOP " + 506 a + CRLF is 513 octets. */
	memcpy(line, "NOOP ", 5);
	repeat(line + 5, 'a', 506);
	cr_expect_eq(smtp_parse_command(line, 511, &cmd, &reply), -1);
	cr_expect_str_eq(reply, "500 5.5.2 Error: line too long");
	/* 510 + CRLF = 512 is fine. */
	cr_expect_eq(smtp_parse_command(line, 510, &cmd, &reply), 0);

	/* IN-21: MAIL may use up to SMTP_MAIL_LINE_MAX. */
	memcpy(line, "MAIL ", 5);
	repeat(line + 5, 'a', SMTP_MAIL_LINE_MAX - 2 - 5);
	cr_expect_eq(smtp_parse_command(line, SMTP_MAIL_LINE_MAX - 2, &cmd,
	    &reply), 0);
	repeat(line + 5, 'a', SMTP_MAIL_LINE_MAX - 1 - 5);
	cr_expect_eq(smtp_parse_command(line, SMTP_MAIL_LINE_MAX - 1, &cmd,
	    &reply), -1);
	cr_expect_eq(cmd.verb, SMTP_VERB_MAIL);

	/* AUTH with a 12 KiB initial response (RFC 4954 4). */
	memcpy(line, "AUTH ", 5);
	repeat(line + 5, 'A', SMTP_AUTH_LINE_MAX - 2 - 5);
	cr_expect_eq(smtp_parse_command(line, SMTP_AUTH_LINE_MAX - 2, &cmd,
	    &reply), 0);
	cr_expect_eq(smtp_parse_line_max(SMTP_VERB_NOOP), SMTP_CMD_LINE_MAX);
}

Test(smtp_parse, verb_names)
{
	int	 v;

	for (v = SMTP_VERB_UNKNOWN + 1; v < SMTP_VERB_COUNT; v++) {
		const char	*n = smtp_parse_verb_name(v);
		struct smtp_cmd	 cmd;
		const char	*reply;

		cr_expect_eq(smtp_parse_command(n, strlen(n), &cmd, &reply), 0,
		    "verb %s does not parse back", n);
		cr_expect_eq((int)cmd.verb, v);
	}
	cr_expect_str_eq(smtp_parse_verb_name(SMTP_VERB_COUNT), "UNKNOWN");
	cr_expect_str_eq(smtp_parse_verb_name((enum smtp_verb)-1), "UNKNOWN");
}

/* A rejected row: only the reply matters. */
#define MREJ(a, r)	{ S(a), r, NULL, NULL, 0, 0, false, false }

struct mail_case {
	const char	*args;
	size_t		 len;
	const char	*reply;		/* NULL: accepted */
	const char	*local;
	const char	*domain;
	uint64_t	 size;
	int		 body;
	bool		 smtputf8;
	bool		 is_null;
};

Test(smtp_parse, mail_table)
{
	static const struct mail_case cases[] = {
		{ S("FROM:<a@ok.example>"), NULL, "a", "ok.example", 0, 0,
		    false, false },
		{ S("from: <a@ok.example>"), NULL, "a", "ok.example", 0, 0,
		    false, false },
		{ S("FROM:<>"), NULL, "", "", 0, 0, false, true },
		{ S("FROM:<> SIZE=0"), NULL, "", "", 0, 0, false, true },
		{ S("FROM:<a@ok.example> SIZE=10 BODY=8BITMIME"), NULL, "a",
		    "ok.example", 10, SMTP_BODY_8BITMIME, false, false },
		{ S("FROM:<a@ok.example> body=7bit size=36700161"), NULL, "a",
		    "ok.example", 36700161, SMTP_BODY_7BIT, false, false },
		{ S("FROM:<a@ok.example>  SIZE=1  "), NULL, "a",
		    "ok.example", 1, 0, false, false },
		/* IN-26: overflow saturates, never wraps. */
		{ S("FROM:<a@ok.example> SIZE=18446744073709551615"), NULL,
		    "a", "ok.example", UINT64_MAX, 0, false, false },
		{ S("FROM:<a@ok.example> SIZE=18446744073709551616"), NULL,
		    "a", "ok.example", UINT64_MAX, 0, false, false },
		{ S("FROM:<a@ok.example> SIZE=99999999999999999999999999"),
		    NULL, "a", "ok.example", UINT64_MAX, 0, false, false },
		MREJ("FROM:<a@ok.example> SIZE=abc",
		    "501 5.5.4 Bad SIZE syntax"),
		MREJ("FROM:<a@ok.example> SIZE=-1",
		    "501 5.5.4 Bad SIZE syntax"),
		MREJ("FROM:<a@ok.example> SIZE=",
		    "501 5.5.4 Bad SIZE syntax"),
		MREJ("FROM:<a@ok.example> SIZE",
		    "501 5.5.4 Bad SIZE syntax"),
		MREJ("FROM:<a@ok.example> BODY=BINARYMIME",
		    "501 5.5.4 Bad BODY syntax"),
		MREJ("FROM:<a@ok.example> FOO=BAR",
		    "555 5.5.4 Unsupported option: FOO"),
		MREJ("FROM:<a@ok.example> RET=HDRS",
		    "555 5.5.4 Unsupported option: RET"),
		MREJ("FROM:<a@ok.example> =x",
		    "501 5.5.4 Syntax: MAIL FROM:<address>"),
		MREJ("FROM:<a@ok.example>SIZE=1",
		    "501 5.5.4 Syntax: MAIL FROM:<address>"),
		MREJ("FROM:<a@ok.example> -X",
		    "501 5.5.4 Syntax: MAIL FROM:<address>"),
		/* IN-21: AUTH=<xtext> is accepted and ignored. */
		{ S("FROM:<a@ok.example> SIZE=100 AUTH=<>"), NULL, "a",
		    "ok.example", 100, 0, false, false },
		{ S("FROM:<a@ok.example> AUTH=user+2Bx@ok.example"), NULL, "a",
		    "ok.example", 0, 0, false, false },
		/* IN-40: xtext that decodes to CR LF; malformed xtext. */
		MREJ("FROM:<a@ok.example> AUTH=x+0D+0AXYZ",
		    "501 5.5.4 Bad AUTH syntax"),
		MREJ("FROM:<a@ok.example> AUTH=x+7F",
		    "501 5.5.4 Bad AUTH syntax"),
		MREJ("FROM:<a@ok.example> AUTH=x+0",
		    "501 5.5.4 Bad AUTH syntax"),
		MREJ("FROM:<a@ok.example> AUTH=x+0d",
		    "501 5.5.4 Bad AUTH syntax"),
		MREJ("FROM:<a@ok.example> AUTH=",
		    "501 5.5.4 Bad AUTH syntax"),
		/* SMTPUTF8, IN-23 */
		MREJ("FROM:<j\xc3\xb6""e@ok.example>",
		    "553 5.6.7 Must declare SMTPUTF8 to send unicode address"),
		{ S("FROM:<j\xc3\xb6""e@ok.example> SMTPUTF8"), NULL,
		    "j\xc3\xb6""e", "ok.example", 0, 0, true, false },
		{ S("FROM:<a@b\xc3\xbc""cher.example> SMTPUTF8"), NULL, "a",
		    "b\xc3\xbc""cher.example", 0, 0, true, false },
		MREJ("FROM:<a@ok.example> SMTPUTF8=yes",
		    "501 5.5.4 Bad SMTPUTF8 syntax"),
		MREJ("FROM:<j\xc3\x28@ok.example> SMTPUTF8",
		    "500 5.5.2 Error: bad UTF-8 syntax"),
		MREJ("FROM:<j\xc0\xaf@ok.example> SMTPUTF8",
		    "500 5.5.2 Error: bad UTF-8 syntax"),	/* overlong */
		MREJ("FROM:<j\xed\xa0\x80@ok.example> SMTPUTF8",
		    "500 5.5.2 Error: bad UTF-8 syntax"),	/* surrogate */
		MREJ("FROM:<j\xf4\x90\x80\x80@ok.example> SMTPUTF8",
		    "500 5.5.2 Error: bad UTF-8 syntax"),	/* > 10FFFF */
		MREJ("FROM:<a@ok.example\0@evil.example>",
		    "500 5.5.2 Error: NUL in command"),
		/* IN-39 */
		MREJ("FROM:<;sleep 66;>",
		    "501 5.1.7 Bad sender address syntax"),
		{ S("FROM:<\"$(reboot)\"@ok.example>"), NULL,
		    "\"$(reboot)\"", "ok.example", 0, 0, false, false },
		/* keyword syntax */
		MREJ("FROM:", "501 5.5.4 Syntax: MAIL FROM:<address>"),
		MREJ("FROM:a@ok.example",
		    "501 5.5.4 Syntax: MAIL FROM:<address>"),
		MREJ("FROM:  <a@ok.example>",
		    "501 5.5.4 Syntax: MAIL FROM:<address>"),
		MREJ("TO:<a@ok.example>",
		    "501 5.5.4 Syntax: MAIL FROM:<address>"),
		MREJ("FROM:<a@ok.example",
		    "501 5.5.4 Syntax: MAIL FROM:<address>"),
		MREJ("", "501 5.5.4 Syntax: MAIL FROM:<address>"),
		/* address syntax */
		MREJ("FROM:<postmaster>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a@>", "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<@ok.example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a@b@ok.example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a..b@ok.example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<.a@ok.example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a.@ok.example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a b@ok.example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a@ok..example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a@-ok.example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a@ok-.example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a@ok.example.>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<a@ok_x.example>",
		    "501 5.1.7 Bad sender address syntax"),
		MREJ("FROM:<\"a@ok.example>",
		    "501 5.5.4 Syntax: MAIL FROM:<address>"),
		MREJ("FROM:<\"a\x01\"@ok.example>",
		    "501 5.1.7 Bad sender address syntax"),
	};
	struct smtp_mail m;
	const char	*reply;
	size_t		 i;
	int		 rc;

	for (i = 0; i < nitems(cases); i++) {
		const struct mail_case *c = &cases[i];

		reply = NULL;
		rc = smtp_parse_mail(c->args, c->len, &m, &reply);
		if (c->reply != NULL) {
			cr_expect_eq(rc, -1, "case %zu %s: accepted, want %s",
			    i, c->args, c->reply);
			if (rc == -1)
				cr_expect_str_eq(reply, c->reply,
				    "case %zu %s: reply got \"%s\" want \"%s\"",
				    i, c->args, reply, c->reply);
			continue;
		}
		cr_expect_eq(rc, 0, "case %zu %s: rejected with %s", i,
		    c->args, reply);
		if (rc != 0)
			continue;
		cr_expect_str_eq(m.from.local, c->local,
		    "case %zu: local got %s want %s", i, m.from.local,
		    c->local);
		cr_expect_str_eq(m.from.domain, c->domain,
		    "case %zu: domain got %s want %s", i, m.from.domain,
		    c->domain);
		cr_expect_eq(m.size, c->size, "case %zu: size got %ju want %ju",
		    i, (uintmax_t)m.size, (uintmax_t)c->size);
		cr_expect_eq(m.body, c->body, "case %zu: body got %d want %d",
		    i, m.body, c->body);
		cr_expect_eq(m.smtputf8, c->smtputf8, "case %zu: smtputf8", i);
		cr_expect_eq(m.from.is_null, c->is_null, "case %zu: is_null",
		    i);
		cr_expect_eq(m.from.has_utf8, c->smtputf8,
		    "case %zu: has_utf8", i);
	}
}

#define RREJ(a, u, r)	{ S(a), u, r, NULL, NULL, false, false }
#define RACC(a, u, l, d)	{ S(a), u, NULL, l, d, false, false }

struct rcpt_case {
	const char	*args;
	size_t		 len;
	bool		 smtputf8;
	const char	*reply;
	const char	*local;
	const char	*domain;
	bool		 literal;
	bool		 postmaster;
};

Test(smtp_parse, rcpt_table)
{
	static const struct rcpt_case cases[] = {
		RACC("TO:<v@t.example>", false, "v", "t.example"),
		RACC("to: <V@T.Example>", false, "V", "T.Example"),
		{ S("TO:<postmaster>"), false, NULL, "postmaster", "", false,
		    true },
		{ S("TO:<PostMaster>"), false, NULL, "PostMaster", "", false,
		    true },
		RACC("TO:<postmaster@ok.example>", false, "postmaster",
		    "ok.example"),
		RREJ("TO:<>", false, "501 5.1.3 Bad recipient address syntax"),
		/* IN-33: the route is dropped. */
		RACC("TO:<@ok.example,@ok2.example:v@evil.example>", false,
		    "v", "evil.example"),
		RACC("TO:<@ok.example:v@evil.example>", false, "v",
		    "evil.example"),
		RREJ("TO:<@ok.example,ok2.example:v@evil.example>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<@ok.example v@evil.example>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<@:v@evil.example>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		/* IN-34: no %/! rewriting; the local part is kept as is. */
		RACC("TO:<v%evil.example@t.example>", false, "v%evil.example",
		    "t.example"),
		RACC("TO:<evil.example!v@t.example>", false, "evil.example!v",
		    "t.example"),
		/* IN-35: quotes kept, never split at the inner '@'. */
		RACC("TO:<\"v@evil.example\"@t.example>", false,
		    "\"v@evil.example\"", "t.example"),
		RACC("TO:<\"a\\\"b\"@t.example>", false, "\"a\\\"b\"",
		    "t.example"),
		RACC("TO:<\"a>b\"@t.example>", false, "\"a>b\"", "t.example"),
		RACC("TO:<\"\"@t.example>", false, "\"\"", "t.example"),
		RREJ("TO:<\"a\"b@t.example>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		/* IN-36 shapes: syntax only, policy is the server's. */
		{ S("TO:<postmaster@[127.0.0.1]>"), false, NULL, "postmaster",
		    "[127.0.0.1]", true, false },
		{ S("TO:<x@[IPv6:::1]>"), false, NULL, "x", "[IPv6:::1]",
		    true, false },
		{ S("TO:<x@[ipv6:2001:db8::1]>"), false, NULL, "x",
		    "[ipv6:2001:db8::1]", true, false },
		{ S("TO:<x@[IPv6:::ffff:10.0.0.5]>"), false, NULL, "x",
		    "[IPv6:::ffff:10.0.0.5]", true, false },
		{ S("TO:<x@[10.0.0.5]>"), false, NULL, "x", "[10.0.0.5]",
		    true, false },
		RREJ("TO:<x@[10.0.0.256]>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<x@[10.0.0]>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<x@[010.0.0.1]>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<x@[::1]>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<x@[IPv6:1.2.3.4]>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<x@[IPv6:]>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<x@[tag:foo]>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<x@[1.2.3.4>", false,
		    "501 5.1.3 Bad recipient address syntax"),
		/* IN-26: DSN is not offered. */
		RREJ("TO:<v@t.example> NOTIFY=SUCCESS ORCPT=rfc822;x+0D+0Ay",
		    false, "555 5.5.4 Unsupported option: NOTIFY"),
		RREJ("TO:<v@t.example> ORCPT=rfc822;x", false,
		    "555 5.5.4 Unsupported option: ORCPT"),
		RACC("TO:<v@t.example> ", false, "v", "t.example"),
		RREJ("TO:<v@t.example>x", false,
		    "501 5.5.4 Syntax: RCPT TO:<address>"),
		RREJ("FROM:<v@t.example>", false,
		    "501 5.5.4 Syntax: RCPT TO:<address>"),
		/* SMTPUTF8 comes from the MAIL of the transaction. */
		RREJ("TO:<\xc3\xbc@t.example>", false,
		    "553 5.6.7 Must declare SMTPUTF8 to send unicode address"),
		RACC("TO:<\xc3\xbc@t.example>", true, "\xc3\xbc", "t.example"),
		RACC("TO:<\"\xc3\xbc\"@t.example>", true, "\"\xc3\xbc\"",
		    "t.example"),
		RACC("TO:<u@\xc3\xbc.example>", true, "u", "\xc3\xbc.example"),
		RREJ("TO:<u@[IPv6:::\xc3\xbc]>", true,
		    "501 5.1.3 Bad recipient address syntax"),
		RREJ("TO:<v@ok.example\0@evil.example>", false,
		    "500 5.5.2 Error: NUL in command"),
	};
	struct smtp_rcpt rc;
	const char	*reply;
	size_t		 i;
	int		 r;

	for (i = 0; i < nitems(cases); i++) {
		const struct rcpt_case *c = &cases[i];

		reply = NULL;
		r = smtp_parse_rcpt(c->args, c->len, c->smtputf8, &rc, &reply);
		if (c->reply != NULL) {
			cr_expect_eq(r, -1, "case %zu %s: accepted, want %s",
			    i, c->args, c->reply);
			if (r == -1)
				cr_expect_str_eq(reply, c->reply,
				    "case %zu %s: reply got \"%s\" want \"%s\"",
				    i, c->args, reply, c->reply);
			continue;
		}
		cr_expect_eq(r, 0, "case %zu %s: rejected with %s", i,
		    c->args, reply);
		if (r != 0)
			continue;
		cr_expect_str_eq(rc.to.local, c->local,
		    "case %zu: local got %s want %s", i, rc.to.local, c->local);
		cr_expect_str_eq(rc.to.domain, c->domain,
		    "case %zu: domain got %s want %s", i, rc.to.domain,
		    c->domain);
		cr_expect_eq(rc.to.domain_is_literal, c->literal,
		    "case %zu: literal", i);
		cr_expect_eq(rc.to.is_postmaster, c->postmaster,
		    "case %zu: postmaster", i);
		cr_expect_null(strchr(rc.to.domain, '@'), "case %zu: '@'", i);
	}
}

/* IN-25: lengths of local part, path, domain and labels. */
Test(smtp_parse, path_lengths)
{
	char		 args[1024], local[300], label[100], dom[512];
	struct smtp_rcpt rc;
	struct smtp_mail m;
	const char	*reply;
	size_t		 n;

	/* A 65-octet local part is accepted. */
	snprintf(args, sizeof(args), "TO:<%s@t.example>",
	    repeat(local, 'l', 65));
	cr_expect_eq(smtp_parse_rcpt(args, strlen(args), false, &rc, &reply),
	    0);
	cr_expect_eq(strlen(rc.to.local), 65);

	/* The whole path "<" local "@" domain ">" at 256 is fine, 257 not:
	 * 256 = 1 + n + 1 + 9 ("t.example") + 1. */
	n = 256 - 12;
	snprintf(args, sizeof(args), "TO:<%s@t.example>",
	    repeat(local, 'l', n));
	cr_expect_eq(smtp_parse_rcpt(args, strlen(args), false, &rc, &reply),
	    0, "256-octet path rejected: %s", reply);
	snprintf(args, sizeof(args), "TO:<%s@t.example>",
	    repeat(local, 'l', n + 1));
	cr_expect_eq(smtp_parse_rcpt(args, strlen(args), false, &rc, &reply),
	    -1);
	cr_expect_str_eq(reply, "501 5.1.3 Bad recipient address syntax");
	snprintf(args, sizeof(args), "FROM:<%s@t.example>",
	    repeat(local, 'l', n + 1));
	cr_expect_eq(smtp_parse_mail(args, strlen(args), &m, &reply), -1);
	cr_expect_str_eq(reply, "501 5.1.7 Bad sender address syntax");

	/* A 63-octet label is fine, 64 is not. */
	snprintf(args, sizeof(args), "TO:<a@%s.example>",
	    repeat(label, 'd', 63));
	cr_expect_eq(smtp_parse_rcpt(args, strlen(args), false, &rc, &reply),
	    0);
	snprintf(args, sizeof(args), "TO:<a@%s.example>",
	    repeat(label, 'd', 64));
	cr_expect_eq(smtp_parse_rcpt(args, strlen(args), false, &rc, &reply),
	    -1);

	/* A domain over 255 octets (with a short local part the path is
	 * still within 256 octets only up to 252; check both bounds). */
	snprintf(dom, sizeof(dom), "%s.%s.%s.%s", repeat(label, 'a', 63),
	    label, label, repeat(label, 'a', 63));
	cr_expect_eq(strlen(dom), 255);
	snprintf(args, sizeof(args), "TO:<a@%s>", dom);
	cr_expect_eq(smtp_parse_rcpt(args, strlen(args), false, &rc, &reply),
	    -1, "path of 259 octets accepted");
}

/* FZ-03 in miniature: parse -> format -> parse is a fixed point. */
Test(smtp_parse, format_round_trip)
{
	static const char *const paths[] = {
		"<a@ok.example>", "<>", "<postmaster>",
		"<@r1.example,@r2.example:v@t.example>",
		"<\"v@evil.example\"@t.example>", "<\"a\\\"b\"@t.example>",
		"<x@[IPv6:::1]>", "<x@[10.0.0.5]>", "<a.b+c@d-e.f>",
		"<\xc3\xbc@\xc3\xbc.example>",
	};
	struct smtp_rcpt a, b;
	char		 args[700], buf[600];
	const char	*reply;
	size_t		 i;

	for (i = 0; i < nitems(paths); i++) {
		snprintf(args, sizeof(args), "TO:%s", paths[i]);
		cr_assert_eq(smtp_parse_rcpt(args, strlen(args), true, &a,
		    &reply) == 0 || strcmp(paths[i], "<>") == 0, true,
		    "%s: %s", paths[i], reply);
		if (strcmp(paths[i], "<>") == 0) {
			struct smtp_mail m;

			cr_assert_eq(smtp_parse_mail("FROM:<>", 7, &m, &reply),
			    0);
			cr_expect_eq(smtp_parse_addr_format(&m.from, buf,
			    sizeof(buf)), 0);
			cr_expect_str_eq(buf, "");
			continue;
		}
		cr_assert_eq(smtp_parse_addr_format(&a.to, buf, sizeof(buf)),
		    0);
		snprintf(args, sizeof(args), "TO:<%s>", buf);
		cr_assert_eq(smtp_parse_rcpt(args, strlen(args), true, &b,
		    &reply), 0, "%s -> %s: %s", paths[i], buf, reply);
		cr_expect(memcmp(&a, &b, sizeof(a)) == 0,
		    "%s: not a fixed point", paths[i]);
	}
	cr_expect_eq(smtp_parse_addr_format(&a.to, buf, 5), -1);
	cr_expect_str_eq(buf, "");
}

struct helo_case {
	const char	*args;
	size_t		 len;
	const char	*want;		/* NULL: rejected */
};

Test(smtp_parse, helo_table)
{
	static const struct helo_case cases[] = {
		{ S("mx.example"), "mx.example" },
		{ S("  mx.example  "), "mx.example" },
		{ S("my_host-1.local"), "my_host-1.local" },
		{ S("[192.0.2.1]"), "[192.0.2.1]" },
		{ S("[IPv6:2001:db8::1]"), "[IPv6:2001:db8::1]" },
		{ S(""), NULL },
		{ S("   "), NULL },
		/* IN-41 */
		{ S("x (spoof) by mx.google.com"), NULL },
		{ S("a b"), NULL },
		{ S("a\0b"), NULL },
		{ S("a\r\nX-Injected: 1"), NULL },
		{ S("h\xc3\xb6st"), NULL },
		{ S("[1.2.3.4"), NULL },
		{ S("[]"), NULL },
		{ S("[a]b]"), NULL },
		{ S("a;b"), NULL },
	};
	char		 out[SMTP_DOMAIN_MAX + 1], big[400];
	const char	*reply;
	size_t		 i;
	int		 rc;

	for (i = 0; i < nitems(cases); i++) {
		reply = NULL;
		rc = smtp_parse_helo(cases[i].args, cases[i].len, out,
		    sizeof(out), &reply);
		if (cases[i].want == NULL) {
			cr_expect_eq(rc, -1, "case %zu \"%s\": accepted as %s",
			    i, cases[i].args, out);
			cr_expect(reply != NULL && strncmp(reply, "50", 2) == 0,
			    "case %zu: reply %s", i, reply);
		} else {
			cr_expect_eq(rc, 0, "case %zu \"%s\": %s", i,
			    cases[i].args, reply);
			cr_expect_str_eq(out, cases[i].want,
			    "case %zu: got %s want %s", i, out, cases[i].want);
		}
	}
	rc = smtp_parse_helo(S("a\0b"), out, sizeof(out), &reply);
	cr_expect_str_eq(reply, "500 5.5.2 Error: NUL in command");
	rc = smtp_parse_helo(S("a b"), out, sizeof(out), &reply);
	cr_expect_str_eq(reply, "501 5.5.2 Syntax: EHLO hostname");
	repeat(big, 'h', 300);
	cr_expect_eq(smtp_parse_helo(big, 300, out, sizeof(out), &reply), -1);
	cr_expect_eq(smtp_parse_helo("abcdef", 6, out, 4, &reply), -1);
}

struct auth_case {
	const char	*args;
	size_t		 len;
	int		 rc;
	const char	*mech;
	const char	*initial;	/* NULL: none */
};

Test(smtp_parse, auth_table)
{
	static const struct auth_case cases[] = {
		{ S("PLAIN"), 0, "PLAIN", NULL },
		{ S("plain"), 0, "PLAIN", NULL },
		{ S("login dXNlcg=="), 0, "LOGIN", "dXNlcg==" },
		{ S("PLAIN ="), 0, "PLAIN", "=" },
		{ S("SCRAM-SHA-256"), 0, "SCRAM-SHA-256", NULL },
		{ S(""), -1, NULL, NULL },
		{ S("PLAIN "), -1, NULL, NULL },
		{ S("PLAIN a b"), -1, NULL, NULL },
		{ S("PLAIN dXNl\0cg=="), -1, NULL, NULL },
		{ S("PLAIN dXNl\r\nX-Injected: 1"), -1, NULL, NULL },
		{ S("PL*AIN"), -1, NULL, NULL },
		{ S("ABCDEFGHIJKLMNOPQRSTU"), -1, NULL, NULL },	/* 21 characters */
		{ S(" PLAIN"), -1, NULL, NULL },
	};
	char		 mech[32];
	const char	*initial, *reply;
	size_t		 ilen, i;
	int		 rc;

	for (i = 0; i < nitems(cases); i++) {
		rc = smtp_parse_auth(cases[i].args, cases[i].len, mech,
		    sizeof(mech), &initial, &ilen, &reply);
		cr_expect_eq(rc, cases[i].rc, "case %zu %s: got %d want %d", i,
		    cases[i].args, rc, cases[i].rc);
		if (rc != 0 || cases[i].rc != 0)
			continue;
		cr_expect_str_eq(mech, cases[i].mech, "case %zu: mech %s", i,
		    mech);
		if (cases[i].initial == NULL)
			cr_expect(initial == NULL && ilen == 0,
			    "case %zu: initial response", i);
		else
			cr_expect(initial != NULL &&
			    ilen == strlen(cases[i].initial) &&
			    memcmp(initial, cases[i].initial, ilen) == 0,
			    "case %zu: initial got %.*s want %s", i,
			    (int)ilen, initial ? initial : "",
			    cases[i].initial);
	}
	cr_expect_eq(smtp_parse_auth(S("PLAIN"), mech, 5, &initial, &ilen,
	    &reply), -1, "mech buffer too small");
	/* IN-53: a response that is not base64 cannot be decoded. */
	cr_expect_eq(smtp_parse_auth(S("PLAIN ###"), mech, sizeof(mech),
	    &initial, &ilen, &reply), -1);
	cr_expect_str_eq(reply, "501 5.5.2 Error: cannot decode response");
	cr_expect_eq(smtp_parse_auth(S("PLAIN a b"), mech, sizeof(mech),
	    &initial, &ilen, &reply), -1);
	cr_expect_str_eq(reply, "501 5.5.2 Error: cannot decode response");
	cr_expect_eq(smtp_parse_auth(S("PL*AIN"), mech, sizeof(mech),
	    &initial, &ilen, &reply), -1);
	cr_expect_str_eq(reply,
	    "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
}

/* Feed the lines of one reply; returns the rc of the last feed. */
static int
feed_reply(struct smtp_reply *r, const char *const *lines, size_t n)
{
	size_t	 i;
	int	 rc = 0;

	smtp_parse_reply_init(r);
	for (i = 0; i < n && lines[i] != NULL; i++)
		if ((rc = smtp_parse_reply_line(r, lines[i],
		    strlen(lines[i]))) == -1)
			break;
	return (rc);
}

struct reply_case {
	const char	*lines[4];
	int		 rc;
	bool		 complete;
	int		 code;
	const char	*text;
};

Test(smtp_parse, reply_table)
{
	static const struct reply_case cases[] = {
		{ { "250 ok" }, 0, true, 250, "ok" },
		/* OUT-07 */
		{ { "250-a", "250 b" }, 0, true, 250, "a\nb" },
		{ { "250-x", "250" }, 0, true, 250, "x\n" },
		{ { "250" }, 0, true, 250, "" },
		{ { "250 " }, 0, true, 250, "" },
		{ { "250-" }, 0, false, 250, "" },
		{ { "250-x", "550 y" }, -1, false, 0, NULL },
		{ { "600 x" }, -1, false, 0, NULL },
		{ { "199 x" }, -1, false, 0, NULL },
		{ { "25" }, -1, false, 0, NULL },
		{ { "2a0 x" }, -1, false, 0, NULL },
		{ { "250x" }, -1, false, 0, NULL },
		{ { "250x y" }, -1, false, 0, NULL },
		{ { "" }, -1, false, 0, NULL },
		{ { " 250 x" }, -1, false, 0, NULL },
		/* OUT-10: an extra line after the reply completed. */
		{ { "250 ok", "250 extra" }, -1, false, 0, NULL },
		{ { "354 go ahead" }, 0, true, 354, "go ahead" },
		{ { "421-a", "421-b", "421 4.4.2 bye" }, 0, true, 421,
		    "a\nb\n4.4.2 bye" },
		{ { "599 x" }, 0, true, 599, "x" },
	};
	struct smtp_reply r;
	size_t		 i;
	int		 rc;

	for (i = 0; i < nitems(cases); i++) {
		rc = feed_reply(&r, cases[i].lines, nitems(cases[i].lines));
		cr_expect_eq(rc, cases[i].rc, "case %zu %s: rc got %d want %d",
		    i, cases[i].lines[0], rc, cases[i].rc);
		if (rc != 0 || cases[i].rc != 0)
			continue;
		cr_expect_eq(r.complete, cases[i].complete,
		    "case %zu: complete", i);
		cr_expect_eq(r.code, cases[i].code, "case %zu: code %d", i,
		    r.code);
		cr_expect_str_eq(r.text, cases[i].text,
		    "case %zu: text got \"%s\" want \"%s\"", i, r.text,
		    cases[i].text);
		cr_expect_eq(r.textlen, strlen(r.text));
	}
}

Test(smtp_parse, reply_bounds)
{
	struct smtp_reply r;
	char		 line[8192];
	int		 i, rc = 0;

	/* OUT-08: 100,000 "250-" lines: refused after 1000. */
	smtp_parse_reply_init(&r);
	for (i = 0; i < 100000; i++)
		if ((rc = smtp_parse_reply_line(&r, "250-x", 5)) == -1)
			break;
	cr_expect_eq(rc, -1);
	cr_expect_eq(i, SMTP_REPLY_LINES_MAX, "refused at line %d", i);

	/* A long line is truncated, never overflows. */
	smtp_parse_reply_init(&r);
	memcpy(line, "250 ", 4);
	memset(line + 4, 'x', sizeof(line) - 4);
	cr_expect_eq(smtp_parse_reply_line(&r, line, sizeof(line)), 0);
	cr_expect(r.complete && r.truncated);
	cr_expect_eq(r.textlen, SMTP_REPLY_MAX - 1);
	cr_expect_eq(strlen(r.text), SMTP_REPLY_MAX - 1);

	/* NUL, CR, LF in the text never reach it raw (OUT-09). */
	smtp_parse_reply_init(&r);
	cr_expect_eq(smtp_parse_reply_line(&r, "550 a\0b\rc\nd", 11), 0);
	cr_expect_str_eq(r.text, "a?b?c?d");
	cr_expect_eq(r.textlen, 7);
}

Test(smtp_parse, ehlo_caps)
{
	static const char *const lines[] = {
		"250-mx.example Hello [192.0.2.1]", "250-PIPELINING",
		"250-SIZE 36700160", "250-starttls", "250-8BITMIME",
		"250-AUTH=LOGIN", "250-AUTH CRAM-MD5 PLAIN", "250-SMTPUTF8",
		"250 ENHANCEDSTATUSCODES",
	};
	struct smtp_reply	 r;
	struct smtp_ehlo_caps	 c;

	cr_assert_eq(feed_reply(&r, lines, nitems(lines)), 0);
	cr_assert(r.complete);
	smtp_parse_ehlo_caps(&r, &c);
	cr_expect(c.pipelining && c.starttls && c.eightbitmime &&
	    c.smtputf8 && c.enhancedstatuscodes && c.auth_plain &&
	    c.auth_login);
	cr_expect_eq(c.size, 36700160);

	/* The greeting line is not a keyword; SIZE without a value. */
	{
		static const char *const l2[] = { "250-PIPELINING",
		    "250 SIZE" };

		feed_reply(&r, l2, nitems(l2));
		smtp_parse_ehlo_caps(&r, &c);
		cr_expect(!c.pipelining);
		cr_expect_eq(c.size, 0);
	}
	{
		static const char *const l3[] = { "250 mx.example" };

		feed_reply(&r, l3, nitems(l3));
		smtp_parse_ehlo_caps(&r, &c);
		cr_expect(!c.pipelining && !c.starttls && c.size == 0);
	}
	{
		/* Not 250: no capabilities at all. */
		static const char *const l4[] = { "502-x", "502 PIPELINING" };

		feed_reply(&r, l4, nitems(l4));
		smtp_parse_ehlo_caps(&r, &c);
		cr_expect(!c.pipelining);
	}
	{
		static const char *const l5[] = { "250-x",
		    "250-PIPELININGX", "250-AUTH PLAINX", "250 SIZE 1x" };

		feed_reply(&r, l5, nitems(l5));
		smtp_parse_ehlo_caps(&r, &c);
		cr_expect(!c.pipelining && !c.auth_plain && c.size == 0);
	}
}

Test(smtp_parse, enhanced_status)
{
	static const struct {
		const char	*text;
		const char	*want;		/* NULL: none */
	} cases[] = {
		{ "5.1.1 no such user", "5.1.1" },
		{ "2.0.0", "2.0.0" },
		{ "4.7.0\nmore", "4.7.0" },
		{ "5.123.456 x", "5.123.456" },
		{ "5.1234.1 x", NULL },
		{ "3.1.1 x", NULL },
		{ "5.1 x", NULL },
		{ "5..1 x", NULL },
		{ "5.1.1x", NULL },
		{ "no code", NULL },
		{ "", NULL },
	};
	char	 st[12];
	size_t	 i;
	int	 rc;

	for (i = 0; i < nitems(cases); i++) {
		rc = smtp_parse_enhanced(cases[i].text, st);
		if (cases[i].want == NULL) {
			cr_expect_eq(rc, -1, "case %s: got %s", cases[i].text,
			    st);
			cr_expect_str_eq(st, "");
		} else {
			cr_expect_eq(rc, 0, "case %s", cases[i].text);
			cr_expect_str_eq(st, cases[i].want, "got %s want %s",
			    st, cases[i].want);
		}
	}
}
