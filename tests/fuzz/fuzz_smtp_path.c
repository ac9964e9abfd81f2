/*
 * fuzz_smtp_path.c: FZ-03.  The input is the text of a path and its
 * parameters, parsed as "TO:" + input and as "FROM:" + input.
 *
 * Oracles: an accepted path formats and re-parses to the identical
 * struct (a fixed point); the domain never contains '@'; no field holds a
 * control character; a source route never survives into the address.
 */
#include "compat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp_parse.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FUZZ_CHECK(c)	do { if (!(c)) abort(); } while (0)
#define FUZZ_MAX	(SMTP_MAIL_LINE_MAX * 2)

static void
fuzz_check_addr(const struct smtp_addr *a)
{
	size_t	 i;

	FUZZ_CHECK(strchr(a->domain, '@') == NULL);
	for (i = 0; a->local[i] != '\0'; i++)
		FUZZ_CHECK((unsigned char)a->local[i] >= 32 &&
		    a->local[i] != 127);
	for (i = 0; a->domain[i] != '\0'; i++)
		FUZZ_CHECK((unsigned char)a->domain[i] > 32 &&
		    a->domain[i] != 127);
	if (!a->is_null && !a->is_postmaster) {
		FUZZ_CHECK(a->local[0] != '\0' && a->domain[0] != '\0');
		FUZZ_CHECK(a->local[0] != '@');
	}
	FUZZ_CHECK(a->domain_is_literal == (a->domain[0] == '['));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char			 args[FUZZ_MAX + 16], buf[SMTP_PATH_MAX + 1];
	char			 again[SMTP_PATH_MAX + 32];
	struct smtp_rcpt	 r1, r2;
	struct smtp_mail	 m1, m2;
	const char		*reply;
	size_t			 n;
	int			 len;

	if (size > FUZZ_MAX)
		return (0);

	memcpy(args, "TO:", 3);
	memcpy(args + 3, data, size);
	if (smtp_parse_rcpt(args, size + 3, true, &r1, &reply) == 0) {
		fuzz_check_addr(&r1.to);
		FUZZ_CHECK(!r1.to.is_null);
		FUZZ_CHECK(smtp_parse_addr_format(&r1.to, buf,
		    sizeof(buf)) == 0);
		len = snprintf(again, sizeof(again), "TO:<%s>", buf);
		FUZZ_CHECK(len > 0 && (size_t)len < sizeof(again));
		FUZZ_CHECK(smtp_parse_rcpt(again, (size_t)len, true, &r2,
		    &reply) == 0);
		FUZZ_CHECK(memcmp(&r1, &r2, sizeof(r1)) == 0);
	} else
		FUZZ_CHECK(reply != NULL && strlen(reply) > 4);

	memcpy(args, "FROM:", 5);
	memcpy(args + 5, data, size);
	n = size + 5;
	if (smtp_parse_mail(args, n, &m1, &reply) == 0) {
		fuzz_check_addr(&m1.from);
		FUZZ_CHECK(!m1.from.is_postmaster);
		FUZZ_CHECK(smtp_parse_addr_format(&m1.from, buf,
		    sizeof(buf)) == 0);
		len = snprintf(again, sizeof(again), "FROM:<%s>%s", buf,
		    m1.smtputf8 ? " SMTPUTF8" : "");
		FUZZ_CHECK(len > 0 && (size_t)len < sizeof(again));
		FUZZ_CHECK(smtp_parse_mail(again, (size_t)len, &m2,
		    &reply) == 0);
		FUZZ_CHECK(memcmp(&m1.from, &m2.from, sizeof(m1.from)) == 0);
	} else
		FUZZ_CHECK(reply != NULL && strlen(reply) > 4);
	return (0);
}
