/*
 * fuzz_smtp_cmd.c: FZ-01 and FZ-04.  The input is one command line; it is
 * split into verb and arguments and the arguments go through the parser of
 * their verb (MAIL, RCPT, HELO/EHLO, AUTH).
 *
 * Oracles: an accepted line holds no NUL, CR or LF and a known verb; every
 * parsed field is bounded and free of control characters; a failure
 * always comes with a well-formed reply line; an accepted AUTH=xtext
 * decodes (by an independent decoder here) to no control character; a
 * RCPT accepted without SMTPUTF8 is accepted identically with it.
 */
#include "compat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp_parse.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FUZZ_CHECK(c)	do { if (!(c)) abort(); } while (0)

static void
fuzz_check_reply(const char *reply)
{
	size_t	 i, n;

	FUZZ_CHECK(reply != NULL);
	n = strlen(reply);
	FUZZ_CHECK(n >= 4 && n < 128);
	FUZZ_CHECK(reply[0] >= '4' && reply[0] <= '5');
	FUZZ_CHECK(reply[1] >= '0' && reply[1] <= '9');
	FUZZ_CHECK(reply[2] >= '0' && reply[2] <= '9' && reply[3] == ' ');
	for (i = 0; i < n; i++)
		FUZZ_CHECK(reply[i] >= 32 && reply[i] < 127);
}

static void
fuzz_check_field(const char *s, size_t max)
{
	size_t	 i, n = strlen(s);

	FUZZ_CHECK(n <= max);
	for (i = 0; i < n; i++)
		FUZZ_CHECK((unsigned char)s[i] >= 32 && s[i] != 127);
}

static void
fuzz_check_addr(const struct smtp_addr *a)
{
	char	 buf[SMTP_PATH_MAX + 1];

	fuzz_check_field(a->local, SMTP_PATH_MAX);
	fuzz_check_field(a->domain, SMTP_DOMAIN_MAX);
	FUZZ_CHECK(strchr(a->domain, '@') == NULL);
	FUZZ_CHECK(smtp_parse_addr_format(a, buf, sizeof(buf)) == 0);
	/* "<" + address + ">" is within the path limit. */
	FUZZ_CHECK(strlen(buf) + 2 <= SMTP_PATH_MAX);
	if (a->is_null)
		FUZZ_CHECK(buf[0] == '\0');
}

/* Reference xtext decoder (RFC 3461 4): the decoded octets of AUTH=. */
static void
fuzz_check_xtext(const char *args, size_t len)
{
	const char	*p, *end = args + len;
	unsigned	 v;
	char		 hex[3] = { 0 };
	bool		 quoted = false;

	/* Skip the path: up to the first '>' outside a quoted string. */
	for (p = args; p < end; p++) {
		if (quoted && *p == '\\')
			p++;
		else if (*p == '"')
			quoted = !quoted;
		else if (!quoted && *p == '>')
			break;
	}
	FUZZ_CHECK(p < end);
	for (; p + 6 <= end; p++) {
		if (strncasecmp(p, " AUTH=", 6) != 0)
			continue;
		for (p += 6; p < end && *p != ' '; p++) {
			if (*p != '+') {
				FUZZ_CHECK((unsigned char)*p > 32 && *p != 127);
				continue;
			}
			FUZZ_CHECK(end - p >= 3);
			hex[0] = p[1];
			hex[1] = p[2];
			v = (unsigned)strtoul(hex, NULL, 16);
			FUZZ_CHECK(v >= 32 && v != 127);
			p += 2;
		}
		return;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char		*line = (const char *)data, *reply = NULL;
	const char		*initial;
	struct smtp_cmd		 cmd;
	struct smtp_mail	 m;
	struct smtp_rcpt	 r1, r2;
	char			 out[SMTP_DOMAIN_MAX + 1], mech[32];
	size_t			 ilen, i;
	int			 rc;

	if (smtp_parse_command(line, size, &cmd, &reply) == -1) {
		fuzz_check_reply(reply);
		return (0);
	}
	FUZZ_CHECK(cmd.verb > SMTP_VERB_UNKNOWN &&
	    cmd.verb < SMTP_VERB_COUNT);
	FUZZ_CHECK(memchr(line, '\0', size) == NULL);
	FUZZ_CHECK(memchr(line, '\r', size) == NULL);
	FUZZ_CHECK(memchr(line, '\n', size) == NULL);
	FUZZ_CHECK(size + 2 <= smtp_parse_line_max(cmd.verb));
	FUZZ_CHECK(cmd.argslen <= size);
	if (cmd.argslen > 0)
		FUZZ_CHECK(cmd.args > line &&
		    cmd.args + cmd.argslen == line + size);

	switch (cmd.verb) {
	case SMTP_VERB_MAIL:
		if (smtp_parse_mail(cmd.args, cmd.argslen, &m, &reply) == -1) {
			fuzz_check_reply(reply);
			break;
		}
		fuzz_check_addr(&m.from);
		FUZZ_CHECK(!m.from.is_postmaster);
		FUZZ_CHECK(!m.from.has_utf8 || m.smtputf8);
		FUZZ_CHECK(m.body >= SMTP_BODY_UNSET &&
		    m.body <= SMTP_BODY_8BITMIME);
		fuzz_check_xtext(cmd.args, cmd.argslen);
		break;
	case SMTP_VERB_RCPT:
		rc = smtp_parse_rcpt(cmd.args, cmd.argslen, false, &r1, &reply);
		if (rc == -1)
			fuzz_check_reply(reply);
		else {
			fuzz_check_addr(&r1.to);
			FUZZ_CHECK(!r1.to.has_utf8 && !r1.to.is_null);
		}
		if (smtp_parse_rcpt(cmd.args, cmd.argslen, true, &r2,
		    &reply) == -1) {
			fuzz_check_reply(reply);
			FUZZ_CHECK(rc == -1);
		} else {
			fuzz_check_addr(&r2.to);
			if (rc == 0)
				FUZZ_CHECK(memcmp(&r1, &r2, sizeof(r1)) == 0);
		}
		break;
	case SMTP_VERB_HELO:
	case SMTP_VERB_EHLO:
		if (smtp_parse_helo(cmd.args, cmd.argslen, out, sizeof(out),
		    &reply) == -1) {
			fuzz_check_reply(reply);
			break;
		}
		FUZZ_CHECK(out[0] != '\0');
		fuzz_check_field(out, SMTP_DOMAIN_MAX);
		for (i = 0; out[i] != '\0'; i++)
			FUZZ_CHECK(out[i] != ' ' && (unsigned char)out[i] < 127);
		break;
	case SMTP_VERB_AUTH:
		if (smtp_parse_auth(cmd.args, cmd.argslen, mech, sizeof(mech),
		    &initial, &ilen, &reply) == -1) {
			fuzz_check_reply(reply);
			break;
		}
		FUZZ_CHECK(strlen(mech) >= 1 && strlen(mech) <= 20);
		for (i = 0; mech[i] != '\0'; i++)
			FUZZ_CHECK((mech[i] >= 'A' && mech[i] <= 'Z') ||
			    (mech[i] >= '0' && mech[i] <= '9') ||
			    mech[i] == '-' || mech[i] == '_');
		if (initial != NULL) {
			FUZZ_CHECK(ilen > 0 && initial > cmd.args &&
			    initial + ilen == cmd.args + cmd.argslen);
			FUZZ_CHECK(memchr(initial, ' ', ilen) == NULL);
		} else
			FUZZ_CHECK(ilen == 0);
		break;
	default:
		break;
	}
	return (0);
}
