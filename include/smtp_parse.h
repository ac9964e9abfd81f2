/*
 * smtp_parse.h: pure parsers for the SMTP protocol, shared by the inbound
 * session (smtp_server.c) and the outbound client: command verbs, paths
 * (RFC 5321 4.1.2 with SMTPUTF8, RFC 6531), ESMTP parameters of MAIL and
 * RCPT, HELO/EHLO and AUTH arguments, and multi-line upstream replies with
 * the EHLO capabilities they carry.  Nothing here allocates or does I/O.
 *
 * Every "reply" out-parameter is set on failure to a complete SMTP reply
 * line without CRLF.  It is a static string, except for "555 5.5.4
 * Unsupported option: X", which lives in a thread-local buffer that stays
 * valid until the next smtp_parse_* call in the same thread.
 */
#ifndef POSTERN_SMTP_PARSE_H
#define POSTERN_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "postern.h"

enum smtp_verb {
	SMTP_VERB_UNKNOWN,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_BDAT,
	SMTP_VERB_COUNT
};

struct smtp_cmd {
	enum smtp_verb	 verb;
	/* borrowed: after the verb and one SP; "" (0) when there is none */
	const char	*args;
	size_t		 argslen;
};

/*
 * Split one command line (without its CRLF) into verb and arguments.  The
 * verb is case-insensitive and ends at SP or at the end of the line.
 * Returns 0, or -1 with *reply set:
 *   NUL anywhere            "500 5.5.2 Error: NUL in command"
 *   CR or LF anywhere       "500 5.5.2 Error: bare <CR> or <LF> received"
 *   invalid UTF-8           "500 5.5.2 Error: bad UTF-8 syntax"
 *   longer than the limit   "500 5.5.2 Error: line too long"
 *                           (smtp_parse_line_max of the verb, CRLF counted)
 *   unknown verb            "500 5.5.2 Error: command not recognized"
 * cmd->verb is set even on failure when the verb was recognised, so the
 * caller can count errors per command.
 */
int		 smtp_parse_command(const char *line, size_t len,
		    struct smtp_cmd *cmd, const char **reply);
/* Upper-case name of a verb ("MAIL"), "UNKNOWN" for anything else. */
const char	*smtp_parse_verb_name(enum smtp_verb);
/*
 * The longest line, CRLF included, that a command with this verb may have:
 * SMTP_MAIL_LINE_MAX for MAIL and RCPT (RFC 1870, 4954 extensions),
 * SMTP_AUTH_LINE_MAX for AUTH (initial response), SMTP_CMD_LINE_MAX else.
 */
size_t		 smtp_parse_line_max(enum smtp_verb);

struct smtp_addr {		/* a parsed path */
	/* the local part as on the wire (quotes kept) */
	char	 local[SMTP_PATH_MAX + 1];
	/* the domain, or "[1.2.3.4]" / "[IPv6:...]" for a literal */
	char	 domain[SMTP_DOMAIN_MAX + 1];
	bool	 is_null;		/* "<>" */
	bool	 is_postmaster;		/* <postmaster>, RCPT only */
	bool	 domain_is_literal;
	bool	 has_utf8;		/* any non-ASCII octet */
};

/*
 * "local@domain", "postmaster" for <postmaster>, or "" for the null path.
 * Returns -1 (buf set to "") when it does not fit in len.
 */
int		 smtp_parse_addr_format(const struct smtp_addr *, char *buf,
		    size_t len);

#define SMTP_BODY_UNSET		0
#define SMTP_BODY_7BIT		1
#define SMTP_BODY_8BITMIME	2

struct smtp_mail {
	struct smtp_addr from;
	uint64_t	 size;	/* 0 absent; UINT64_MAX on overflow */
	int		 body;	/* SMTP_BODY_* */
	bool		 smtputf8;
};

struct smtp_rcpt {
	struct smtp_addr to;
};

/*
 * args is the text after "MAIL " ("FROM:<a@b> SIZE=10").  "FROM:" is
 * case-insensitive and may be followed by one SP.  Supported parameters:
 * SIZE=digits, BODY=7BIT|8BITMIME, SMTPUTF8, AUTH=xtext (validated and
 * ignored).  Returns 0 or -1 with *reply set:
 *   "501 5.5.4 Syntax: MAIL FROM:<address>"
 *   "501 5.1.7 Bad sender address syntax"     (also a path > 256 octets)
 *   "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
 *   "500 5.5.2 Error: bad UTF-8 syntax"
 *   "500 5.5.2 Error: NUL in command"
 *   "555 5.5.4 Unsupported option: FOO"
 *   "501 5.5.4 Bad SIZE syntax", "501 5.5.4 Bad BODY syntax",
 *   "501 5.5.4 Bad SMTPUTF8 syntax", "501 5.5.4 Bad AUTH syntax"
 */
int		 smtp_parse_mail(const char *args, size_t len,
		    struct smtp_mail *, const char **reply);
/*
 * args is the text after "RCPT " ("TO:<a@b>").  smtputf8: the MAIL of this
 * transaction declared SMTPUTF8.  <postmaster> without a domain is valid.
 * No parameter is supported (DSN is not offered).  Errors as for MAIL, with
 * "501 5.5.4 Syntax: RCPT TO:<address>" and
 * "501 5.1.3 Bad recipient address syntax".
 */
int		 smtp_parse_rcpt(const char *args, size_t len, bool smtputf8,
		    struct smtp_rcpt *, const char **reply);
/*
 * HELO/EHLO argument: one token of letters, digits, '-', '.', '_', or an
 * address literal "[...]"; surrounding spaces are ignored.  Copied to out.
 * Errors: "501 5.5.2 Syntax: EHLO hostname", or the NUL reply.
 */
int		 smtp_parse_helo(const char *args, size_t len, char *out,
		    size_t outlen, const char **reply);
/*
 * AUTH argument: a SASL mechanism name (RFC 4422: 1-20 of A-Z 0-9 - _),
 * upper-cased into mech, then an optional initial response after one SP
 * (base64 characters or "="), returned as a borrowed pointer into args, or
 * NULL and 0 when absent.  Errors:
 * "501 5.5.4 Syntax: AUTH mechanism [initial-response]" (bad or missing
 * mechanism, SP with nothing after it), "501 5.5.2 Error: cannot decode
 * response" (a response with a non-base64 character, IN-53), or the NUL
 * reply.
 */
int		 smtp_parse_auth(const char *args, size_t len, char *mech,
		    size_t mechlen, const char **initial, size_t *initiallen,
		    const char **reply);

/* true when buf holds only well-formed UTF-8 (no overlongs, surrogates). */
bool		 smtp_parse_is_utf8(const char *buf, size_t len);

/*
 * Upstream replies (outbound client): one reply, possibly multi-line, is
 * accumulated line by line.  text holds the text of each line without its
 * code and separator ("250-" / "250 "), lines joined with "\n"; NUL, CR and
 * LF inside a line are stored as '?'.  text is always NUL-terminated;
 * truncated is set when it did not fit (the reply is still parsed).
 */
#define SMTP_REPLY_MAX		4096
#define SMTP_REPLY_LINES_MAX	1000

struct smtp_reply {
	int	 code;		/* 200..599 once a line was accepted */
	char	 text[SMTP_REPLY_MAX];
	size_t	 textlen;
	int	 nlines;
	bool	 complete;
	bool	 truncated;
};

void		 smtp_parse_reply_init(struct smtp_reply *);
/*
 * Feed one line without its CRLF.  Returns 0 (check r->complete), or -1 on
 * a protocol error: a code that is not three digits 200-599 followed by
 * end, SP or '-' ("25", "2a0", "600", "250x"), a code different from the
 * earlier lines, more than SMTP_REPLY_LINES_MAX lines, or a line fed after
 * the reply was complete.  After -1 the reply must be re-initialised.
 */
int		 smtp_parse_reply_line(struct smtp_reply *, const char *line,
		    size_t len);

struct smtp_ehlo_caps {
	bool		 pipelining;
	bool		 starttls;
	bool		 eightbitmime;
	bool		 smtputf8;
	bool		 enhancedstatuscodes;
	bool		 auth_plain;
	bool		 auth_login;
	uint64_t	 size;		/* SIZE n; 0 when absent */
};

/*
 * Capabilities of a complete 250 reply to EHLO (the first line, the
 * server's name, is skipped).  Anything else leaves every field zero.
 */
void		 smtp_parse_ehlo_caps(const struct smtp_reply *,
		    struct smtp_ehlo_caps *);
/*
 * An RFC 3463 enhanced status code at the start of text ("5.1.1 no such
 * user"), followed by SP, '\n' or the end: returns 0 and copies it into
 * status, else -1 and status is "".
 */
int		 smtp_parse_enhanced(const char *text, char status[12]);

#endif /* POSTERN_SMTP_PARSE_H */
