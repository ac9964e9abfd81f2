/*
 * fuzz_conf.c: conf_load on arbitrary file contents.  The oracle: the
 * load fails exactly when errors were reported; every message begins with
 * the file name and ':' followed by a line number and ": ", or by " ";
 * no message spans lines; a configuration that loads respects the ranges
 * and cross-key rules of SPEC section 2.  Any violation aborts.
 *
 * '@' is replaced by '#' before the text is written: an @include could
 * name a FIFO or /dev/stdin and hang the run, and includes are covered by
 * the unit tests.
 */
#include "compat.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char	fuzz_conf_dir[64];
static char	fuzz_conf_path[128];

static void
fuzz_conf_cleanup(void)
{
	unlink(fuzz_conf_path);
	rmdir(fuzz_conf_dir);
}

/* "PATH:" then digits and ": ", or "PATH: "; one line. */
static void
fuzz_conf_check_msg(const char *msg)
{
	size_t		 plen = strlen(fuzz_conf_path);
	const char	*p;

	if (strncmp(msg, fuzz_conf_path, plen) != 0 || msg[plen] != ':')
		abort();
	p = msg + plen + 1;
	if (*p >= '0' && *p <= '9') {
		while (*p >= '0' && *p <= '9')
			p++;
		if (*p != ':')
			abort();
		p++;
	}
	if (*p != ' ')
		abort();
	if (strchr(msg, '\n') != NULL || strchr(msg, '\r') != NULL)
		abort();
}

static void
fuzz_conf_check_conf(const struct conf *c)
{
	size_t	i;

	if (c->delivery.pool_size < 1 || c->delivery.pool_size > 100 ||
	    c->delivery.max_per_destination < 1 ||
	    c->delivery.max_per_destination > c->delivery.pool_size)
		abort();
	if (c->retry.max_interval < c->retry.initial ||
	    c->retry.factor < 1.0 || c->retry.factor > 10.0)
		abort();
	if (c->limits.max_message_size < 1024 ||
	    c->limits.max_message_size > 2147483647u)
		abort();
	if (c->control_socket_mode > 0777)
		abort();
	for (i = 0; i < c->nlisten; i++)
		if (c->listen[i].address == NULL || c->listen[i].port < 1 ||
		    c->listen[i].port > 65535)
			abort();
	for (i = 0; i < c->ndkim; i++)
		if (c->dkim[i].domain == NULL || c->dkim[i].selector == NULL ||
		    c->dkim[i].key == NULL)
			abort();
	for (i = 0; i < c->delivery.ndns_servers; i++)
		if (c->delivery.dns_servers[i].host == NULL ||
		    c->delivery.dns_servers[i].port < 1)
			abort();
	if (c->hostname == NULL || c->user == NULL || c->spool_dir == NULL)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct conf_errors	 errs;
	struct conf		*c;
	FILE			*f;
	size_t			 i;

	if (fuzz_conf_dir[0] == '\0') {
		strlcpy(fuzz_conf_dir, "/tmp/fuzz_conf.XXXXXX",
		    sizeof(fuzz_conf_dir));
		if (mkdtemp(fuzz_conf_dir) == NULL)
			abort();
		snprintf(fuzz_conf_path, sizeof(fuzz_conf_path),
		    "%s/fuzz.conf", fuzz_conf_dir);
		atexit(fuzz_conf_cleanup);
	}
	if ((f = fopen(fuzz_conf_path, "w")) == NULL)
		abort();
	for (i = 0; i < len; i++)
		fputc(data[i] == '@' ? '#' : data[i], f);
	if (fclose(f) != 0)
		abort();

	memset(&errs, 0, sizeof(errs));
	c = conf_load(fuzz_conf_path, &errs);
	if ((c == NULL) != (errs.nerrors > 0))
		abort();
	for (i = 0; i < errs.nerrors; i++)
		fuzz_conf_check_msg(errs.errors[i]);
	for (i = 0; i < errs.nwarnings; i++)
		fuzz_conf_check_msg(errs.warnings[i]);
	if (c != NULL)
		fuzz_conf_check_conf(c);
	conf_free(c);
	conf_errors_free(&errs);
	return (0);
}
