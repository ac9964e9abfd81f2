/*
 * it_dkim.c: end-to-end tests of DKIM signing, SPF relay authorization and
 * `posternctl check-domain` through the real daemon and the real
 * posternctl (SPEC sections 2-4, doc/dkim.md, posternctl(8)).
 *
 * Keys are made at test time with the openssl commands of doc/dkim.md and
 * their records published by each test's own dnsmasq.  Every signature is
 * graded by tests/support/dkimverify.py (dkimpy, never libopendkim) over
 * the message as the fakemx sink received it, against the TXT records
 * that dnsmasq serves (read back with harness_dns_txt), so a record that
 * does not survive DNS as published fails the test too.  The SPF tests run
 * in a network namespace of their own, where the client connects from
 * 192.0.2.1 or 198.51.100.7 on lo: a loopback client is never evaluated
 * (spfcheck.h), so those addresses are what makes SPF decide.  Nothing
 * waits on a fixed sleep: every check polls with a deadline.
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "../support/harness.h"

#define IT_TIMEOUT	180	/* s per test: ASan daemons on 2 cores */
#define IT_WAIT		60	/* s, one polled condition */
#define IT_MX_OK	"127.0.0.21"	/* mx.ok.test: the sink */
#define IT_RCPT		"rcpt@ok.test"
#define IT_RETRY	"initial = 1; max_interval = 2; factor = 2.0;"
#define IT_PYTHON	"/usr/bin/python3"	/* Debian's, with dkimpy */
#define IT_OUT_MAX	65536
#define IT_REC_MAX	4096
#define IT_ARGS_MAX	48
/* The --ip of check-domain, and the client that SPF passes. */
#define IT_CLIENT_IP	"192.0.2.1"
/* A client outside the SPF record. */
#define IT_OTHER_IP	"198.51.100.7"

/* Records every test's DNS has: the sink's MX. */
static const char *const it_dns_base[] = {
	"--mx-host=ok.test,mx.ok.test,10",
	"--host-record=mx.ok.test," IT_MX_OK,
	NULL
};

/* One private key made with the commands of doc/dkim.md. */
struct it_key {
	char		 path[256];
	const char	*selector;
	const char	*domain;
	bool		 ed25519;
	char		 record[1024];	/* the TXT value to publish */
};

/* The dnsmasq arguments of a test, owned. */
struct it_args {
	char		*v[IT_ARGS_MAX + 1];
	size_t		 n;
};

static void
it_args_add(struct it_args *a, const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	cr_assert(a->n < IT_ARGS_MAX, "too many dnsmasq arguments");
	va_start(ap, fmt);
	cr_assert(vasprintf(&s, fmt, ap) != -1, "vasprintf");
	va_end(ap);
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

static void
it_args_free(struct it_args *a)
{
	size_t	i;

	for (i = 0; i < a->n; i++)
		free(a->v[i]);
	a->n = 0;
	a->v[0] = NULL;
}

/*
 * --txt-record=name,s1,s2...: value cut into 255-byte character-strings
 * (TESTING.md).  dnsmasq separates the strings with commas, so a value
 * with a comma cannot be published this way.
 */
static void
it_args_txt(struct it_args *a, const char *name, const char *value)
{
	char	buf[IT_REC_MAX + 64];
	size_t	len = strlen(value), off;

	cr_assert(strchr(value, ',') == NULL, "TXT value with a comma: %s",
	    value);
	snprintf(buf, sizeof(buf), "--txt-record=%s", name);
	for (off = 0; off < len; off += 255) {
		strlcat(buf, ",", sizeof(buf));
		cr_assert(strlen(buf) + 256 < sizeof(buf), "record too long");
		strncat(buf, value + off, 255);
	}
	it_args_add(a, "%s", buf);
}

/* /bin/sh -c cmd in the test's dir; its output into out; must exit 0. */
static void
it_sh(struct harness *h, const char *cmd, char *out, size_t outlen)
{
	const char	*argv[] = { "/bin/sh", "-c", NULL, NULL };
	char		 full[2048], tmp[4096];
	int		 st;

	snprintf(full, sizeof(full), "cd '%s' && %s", h->dir, cmd);
	argv[2] = full;
	if (out == NULL) {
		out = tmp;
		outlen = sizeof(tmp);
	}
	st = harness_run(argv, NULL, out, outlen, 60);
	cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	    "%s: status 0x%x: %s", cmd, st, out);
}

/*
 * Make a key under dir/keys, mode 0600 from the start, and its record with
 * the commands doc/dkim.md gives.
 */
static void
it_key(struct harness *h, struct it_key *k, const char *domain,
    const char *selector, bool ed25519)
{
	char	cmd[1024], b64[1024];
	size_t	n;

	memset(k, 0, sizeof(*k));
	k->domain = domain;
	k->selector = selector;
	k->ed25519 = ed25519;
	snprintf(k->path, sizeof(k->path), "%s/keys/%s.%s.pem", h->dir,
	    selector, domain);
	snprintf(cmd, sizeof(cmd), "mkdir -p keys && umask 077 && "
	    "openssl genpkey -algorithm %s -out '%s' 2>&1 && chmod 600 '%s'",
	    ed25519 ? "ED25519" : "RSA -pkeyopt rsa_keygen_bits:2048",
	    k->path, k->path);
	it_sh(h, cmd, NULL, 0);
	snprintf(cmd, sizeof(cmd), "openssl pkey -in '%s' -pubout "
	    "-outform DER | %sbase64 -w0", k->path,
	    ed25519 ? "tail -c 32 | " : "");
	it_sh(h, cmd, b64, sizeof(b64));
	n = strlen(b64);
	while (n > 0 && (b64[n - 1] == '\n' || b64[n - 1] == '\r'))
		b64[--n] = '\0';
	cr_assert(n >= (ed25519 ? 44u : 390u), "public key of %s: \"%s\"",
	    k->path, b64);
	snprintf(k->record, sizeof(k->record), "v=DKIM1; k=%s; p=%s",
	    ed25519 ? "ed25519" : "rsa", b64);
}

/* "selector._domainkey.domain" of k (static buffer, one of four). */
static const char *
it_key_name(const struct it_key *k)
{
	static char	buf[4][300];
	static int	i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s._domainkey.%s", k->selector,
	    k->domain);
	return (buf[i]);
}

/* The dkim = ( ) statement for keys. */
static void
it_conf_dkim(struct harness *h, const struct it_key *keys, size_t n)
{
	char	buf[4096];
	size_t	i;

	strlcpy(buf, "dkim = (\n", sizeof(buf));
	for (i = 0; i < n; i++) {
		char	line[512];

		snprintf(line, sizeof(line), "  { domain = \"%s\"; "
		    "selector = \"%s\"; key = \"%s\"; }%s\n", keys[i].domain,
		    keys[i].selector, keys[i].path, i + 1 < n ? "," : "");
		strlcat(buf, line, sizeof(buf));
	}
	strlcat(buf, ");", sizeof(buf));
	harness_append_conf(h, buf);
}

/* (Re)start dnsmasq with the base records plus extra. */
static void
it_dns(struct harness *h, const struct it_args *extra)
{
	const char	*args[IT_ARGS_MAX + 8];
	size_t		 n = 0, i;

	if (h->dns_pid > 0)
		cr_assert(harness_dns_stop(h) == 0, "dns stop");
	for (i = 0; it_dns_base[i] != NULL; i++)
		args[n++] = it_dns_base[i];
	for (i = 0; extra != NULL && i < extra->n; i++)
		args[n++] = extra->v[i];
	args[n] = NULL;
	cr_assert(harness_dns_start(h, args) == 0, "dnsmasq: %s",
	    harness_err(h));
}

/*
 * Point delivery at the test's dnsmasq and sink port and write the
 * configuration (posternctl reads it too).
 */
static void
it_write_conf(struct harness *h)
{
	char	d[1024];

	snprintf(d, sizeof(d), "dns_servers = [ \"127.0.0.1:%d\" ];\n"
	    "  port = %d;\n  connect_timeout = 10;\n  tls = \"none\";",
	    harness_dns_port(h), harness_mx_port(h));
	harness_set_delivery(h, d);
	harness_set_retry(h, IT_RETRY);
	cr_assert(harness_write_conf(h) == 0, "conf: %s", harness_err(h));
}

/* A harness with one plain listener on addr (NULL: 127.0.0.1). */
static struct harness *
it_new(const char *addr)
{
	struct harness	*h;

	cr_assert((h = harness_new()) != NULL, "harness_new");
	cr_assert(h->err[0] == '\0', "harness_new: %s", harness_err(h));
	cr_assert(harness_listen(h, addr, "none", "none") == 0,
	    "listen: %s", harness_err(h));
	return (h);
}

static int
it_mx(struct harness *h)
{
	const char	*args[] = { "--no-starttls", NULL };
	int		 idx = harness_mx_start(h, IT_MX_OK, args);

	cr_assert(idx >= 0, "fakemx: %s", harness_err(h));
	return (idx);
}

/*
 * One transaction on a session that said EHLO: mail is the whole MAIL
 * command (parameters included), the body goes through smtpc_dot_stuff
 * (which ends it with CRLF if it does not, as any client does).  Returns
 * the final code; qid gets the queue id on 250.
 */
static int
it_txn(struct smtpc *c, const char *mail, const char *rcpt,
    const char *body, char *qid)
{
	char	 line[600], text[SMTPC_REPLY_MAX];
	char	*data;
	size_t	 len;
	int	 code;

	if ((code = smtpc_cmd(c, mail)) != 250)
		return (code);
	snprintf(line, sizeof(line), "RCPT TO:<%s>", rcpt);
	if ((code = smtpc_cmd(c, line)) != 250)
		return (code);
	if ((code = smtpc_cmd(c, "DATA")) != 354)
		return (code);
	data = smtpc_dot_stuff(body, strlen(body), &len);
	cr_assert(data != NULL, "dot_stuff");
	if (smtpc_send_raw(c, data, len) == -1) {
		free(data);
		return (-1);
	}
	free(data);
	if (smtpc_read_reply(c, &code, text, sizeof(text), 0) == -1)
		return (-1);
	if (code == 250 && qid != NULL)
		cr_assert(smtpc_parse_qid(text, qid) == 0, "no queue id: %s",
		    text);
	return (code);
}

/* Submit one message on listener 0; must get 250. */
static void
it_send(struct harness *h, const char *mail, const char *body)
{
	struct smtpc	*c;
	char		 qid[9];
	int		 code;

	c = harness_session_ehlo(h, 0);
	cr_assert(c != NULL, "session: %s", harness_err(h));
	code = it_txn(c, mail, IT_RCPT, body, qid);
	cr_assert(code == 250, "%s: got %d \"%s\", want 250", mail, code,
	    smtpc_last(c));
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);
}

/* Undo the dot-stuffing of a message as the sink recorded it (in place). */
static size_t
it_unstuff(char *m, size_t len)
{
	size_t	r = 0, w = 0;
	bool	bol = true;

	while (r < len) {
		if (bol && m[r] == '.')
			r++;
		if (r >= len)
			break;
		bol = r + 1 < len && m[r] == '\r' && m[r + 1] == '\n';
		if (bol) {
			m[w++] = m[r++];
			m[w++] = m[r++];
		} else
			m[w++] = m[r++];
	}
	m[w] = '\0';
	return (w);
}

/*
 * The message at the sink whose header has "Message-ID: <msgid>", waiting
 * for it; malloc'd, un-stuffed (the message as sent), length in *lenp.
 */
static char *
it_sink_msg(struct harness *h, int idx, const char *msgid, size_t *lenp)
{
	char	needle[256], *eml;
	size_t	len;
	int	i, n = 0, seen = 0;

	/* Case-insensitive: one shape writes "message-id:". */
	snprintf(needle, sizeof(needle), "\r\nMessage-ID: <%s>\r\n", msgid);
	for (;;) {
		n = harness_mx_messages(h, idx);
		for (i = seen + 1; i <= n; i++) {
			eml = harness_mx_read(h, idx, i, "eml", &len);
			if (eml == NULL)
				continue;
			len = it_unstuff(eml, len);
			if (strcasestr(eml, needle) != NULL) {
				*lenp = len;
				return (eml);
			}
			free(eml);
		}
		seen = n;
		cr_assert(harness_mx_wait_messages(h, idx, n + 1, IT_WAIT),
		    "message <%s> never reached the sink (%d there)\n%s",
		    msgid, n, harness_log_tail(h, 30));
	}
}

/* Header fields named name (case-insensitive) in the header of m. */
static int
it_header_count(const char *m, const char *name)
{
	const char	*p = m, *end;
	size_t		 nl = strlen(name);
	int		 n = 0;

	end = strstr(m, "\r\n\r\n");
	if (end == NULL)
		end = m + strlen(m);
	while (p < end) {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':')
			n++;
		if ((p = strstr(p, "\r\n")) == NULL)
			break;
		p += 2;
	}
	return (n);
}

/*
 * One dkimverify.py run in the background: python's start-up costs
 * seconds on a loaded machine, so a test starts every verifier at once
 * and then collects them.
 */
struct it_verifier {
	pid_t	pid;
	char	out[300];	/* its stdout and stderr */
};

/*
 * Start verifying the first count DKIM-Signature fields of m with
 * dkimverify.py, the key records read from the test's DNS server for
 * names.
 */
static void
it_verify_start(struct harness *h, const char *m, size_t len, int count,
    const char *const *names, size_t nnames, struct it_verifier *v)
{
	const char	*argv[16];
	char		 path[300], script[512], cnt[16];
	char		*recargs[8];
	char		 rec[IT_REC_MAX];
	static int	 seq;
	size_t		 i, n = 0, off;
	ssize_t		 w;
	int		 fd, nstr;

	cr_assert(nnames <= nitems(recargs), "too many names");
	snprintf(path, sizeof(path), "%s/verify-%d.eml", h->dir, ++seq);
	snprintf(v->out, sizeof(v->out), "%s/verify-%d.out", h->dir, seq);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd != -1, "%s: %s", path, strerror(errno));
	for (off = 0; off < len; off += (size_t)w) {
		w = write(fd, m + off, len - off);
		cr_assert(w > 0, "write %s: %s", path, strerror(errno));
	}
	close(fd);
	snprintf(script, sizeof(script), "%s/tests/support/dkimverify.py",
	    harness_srcdir());
	snprintf(cnt, sizeof(cnt), "%d", count);
	argv[n++] = IT_PYTHON;
	argv[n++] = script;
	argv[n++] = "--count";
	argv[n++] = cnt;
	argv[n++] = path;
	for (i = 0; i < nnames; i++) {
		int	r = harness_dns_txt(h, names[i], rec, sizeof(rec),
			    &nstr);

		cr_assert(r == 1, "TXT %s from dnsmasq: got %d records, "
		    "want 1 (%s)", names[i], r, harness_err(h));
		cr_assert(asprintf(&recargs[i], "%s=%s", names[i], rec) != -1);
		argv[n++] = recargs[i];
	}
	argv[n] = NULL;
	fflush(stderr);
	v->pid = fork();
	cr_assert(v->pid != -1, "fork: %s", strerror(errno));
	if (v->pid == 0) {
		if ((fd = open(v->out, O_WRONLY | O_CREAT | O_TRUNC, 0644))
		    == -1)
			_exit(125);
		dup2(fd, 1);
		dup2(fd, 2);
		if ((fd = open("/dev/null", O_RDONLY)) != -1)
			dup2(fd, 0);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (i = 0; i < nnames; i++)
		free(recargs[i]);
}

/* Wait for v: the verifier's exit status (0: all verified), output in out. */
static int
it_verify_finish(struct it_verifier *v, char *out, size_t outlen)
{
	ssize_t	n;
	int	fd, st;

	cr_assert(waitpid(v->pid, &st, 0) == v->pid, "waitpid: %s",
	    strerror(errno));
	out[0] = '\0';
	if ((fd = open(v->out, O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, out, outlen - 1);
		out[n > 0 ? n : 0] = '\0';
		close(fd);
	}
	cr_assert(WIFEXITED(st), "dkimverify: status 0x%x: %s", st, out);
	return (WEXITSTATUS(st));
}

/* it_verify_start and it_verify_finish. */
static int
it_verify(struct harness *h, const char *m, size_t len, int count,
    const char *const *names, size_t nnames, char *out, size_t outlen)
{
	struct it_verifier	v;

	it_verify_start(h, m, len, count, names, nnames, &v);
	return (it_verify_finish(&v, out, outlen));
}

/*
 * What a test expects of the message with Message-ID <msgid> at a sink:
 * exactly nsig_total DKIM-Signature fields, ours (nsig) placed first and
 * verified by dkimpy with the records of names; want[i] is what the
 * verifier's line of signature i must contain ("d=... s=... a=... ").
 */
struct it_expect {
	const char		 *msgid;
	int			  nsig;
	int			  nsig_total;
	const char *const	 *names;
	size_t			  nnames;
	const char *const	 *want;
	/* Filled by it_expect_signed. */
	char			 *msg;
	struct it_verifier	  v;
};

/* How many times the h= tag of a verifier's line names field. */
static int
it_h_count(const char *sigline, const char *field)
{
	const char	*p = strstr(sigline, " h="), *e;
	size_t		 fl = strlen(field);
	int		 n = 0;

	if (p == NULL)
		return (-1);
	for (p += 3; *p != '\0' && *p != ' '; p = *e == ':' ? e + 1 : e) {
		for (e = p; *e != '\0' && *e != ':' && *e != ' '; e++)
			;
		if ((size_t)(e - p) == fl && strncasecmp(p, field, fl) == 0)
			n++;
	}
	return (n);
}

/* Check every e[i] at sink idx, the verifiers running in parallel. */
static void
it_expect_signed(struct harness *h, int idx, struct it_expect *e, size_t n)
{
	char		 out[IT_OUT_MAX], line[64], sigline[1024], *p, *nl;
	size_t		 len, k;
	int		 rc, i, got;

	for (k = 0; k < n; k++) {
		e[k].msg = it_sink_msg(h, idx, e[k].msgid, &len);
		got = it_header_count(e[k].msg, "DKIM-Signature");
		cr_assert(got == e[k].nsig_total, "<%s>: %d DKIM-Signature "
		    "fields, want %d:\n%.2000s", e[k].msgid, got,
		    e[k].nsig_total, e[k].msg);
		if (e[k].nsig == 0)
			continue;
		cr_assert(strncasecmp(e[k].msg, "DKIM-Signature:", 15) == 0,
		    "<%s>: the signature is not the first field:\n%.600s",
		    e[k].msgid, e[k].msg);
		it_verify_start(h, e[k].msg, len, e[k].nsig, e[k].names,
		    e[k].nnames, &e[k].v);
	}
	for (k = 0; k < n; k++) {
		if (e[k].nsig == 0) {
			free(e[k].msg);
			continue;
		}
		rc = it_verify_finish(&e[k].v, out, sizeof(out));
		cr_assert(rc == 0, "<%s>: dkimverify exit %d, want 0:\n%s\n"
		    "message:\n%.3000s", e[k].msgid, rc, out, e[k].msg);
		for (i = 0; i < e[k].nsig; i++) {
			snprintf(line, sizeof(line), "sig %d ok ", i);
			p = strstr(out, line);
			cr_assert(p != NULL, "<%s>: no \"%s\" in\n%s",
			    e[k].msgid, line, out);
			strlcpy(sigline, p, sizeof(sigline));
			if ((nl = strchr(sigline, '\n')) != NULL)
				*nl = '\0';
			cr_assert(strstr(sigline, e[k].want[i]) != NULL,
			    "<%s>: signature %d: want \"%s\" in \"%s\"",
			    e[k].msgid, i, e[k].want[i], sigline);
			cr_assert(strstr(sigline, " c=relaxed/relaxed ") !=
			    NULL, "<%s>: canonicalization: \"%s\"",
			    e[k].msgid, sigline);
			/* From is over-signed: named once more than present. */
			got = it_h_count(sigline, "from");
			cr_assert(got == it_header_count(e[k].msg, "From") + 1,
			    "<%s>: h= names From %d times, want %d: \"%s\"",
			    e[k].msgid, got, it_header_count(e[k].msg,
			    "From") + 1, sigline);
		}
		free(e[k].msg);
	}
}

/* An integer at group.key in the daemon's stats, or -1. */
static long long
it_stat(struct harness *h, const char *group, const char *key)
{
	json_t		*r, *g, *v;
	long long	 n = -1;

	r = harness_control(h, "{\"cmd\":\"stats\"}");
	cr_assert(r != NULL, "stats: %s", harness_err(h));
	if (json_is_object(g = json_object_get(r, group)) &&
	    json_is_integer(v = json_object_get(g, key)))
		n = (long long)json_integer_value(v);
	json_decref(r);
	return (n);
}

/* posternctl -c CONF check-domain domain [--json] --ip 192.0.2.1. */
static int
it_check_domain(struct harness *h, const char *domain, bool json,
    char *out, size_t outlen)
{
	char		 ctl[512];
	const char	*argv[10];
	size_t		 n = 0;
	int		 st;

	snprintf(ctl, sizeof(ctl), "%s/src/posternctl", harness_builddir());
	argv[n++] = ctl;
	argv[n++] = "-c";
	argv[n++] = h->conf_path;
	argv[n++] = "check-domain";
	argv[n++] = domain;
	if (json)
		argv[n++] = "--json";
	argv[n++] = "--ip";
	argv[n++] = IT_CLIENT_IP;
	argv[n] = NULL;
	st = harness_run(argv, NULL, out, outlen, 90);
	cr_assert(st != -1 && WIFEXITED(st), "posternctl: status 0x%x: %s",
	    st, out);
	return (WEXITSTATUS(st));
}

/* The JSON report of check-domain; caller json_decref()s. */
static json_t *
it_check_json(struct harness *h, const char *domain, int want_rc)
{
	char		 out[IT_OUT_MAX];
	json_error_t	 jerr;
	json_t		*j;
	int		 rc;

	rc = it_check_domain(h, domain, true, out, sizeof(out));
	cr_assert(rc == want_rc, "check-domain --json: exit %d, want %d:\n%s",
	    rc, want_rc, out);
	j = json_loads(out, 0, &jerr);
	cr_assert(json_is_object(j), "check-domain --json: not JSON (%s):\n%s",
	    jerr.text, out);
	return (j);
}

/* The item of report j named name with check check, or NULL. */
static json_t *
it_item(json_t *j, const char *check, const char *name)
{
	json_t	*items = json_object_get(j, "items"), *it;
	size_t	 i;

	json_array_foreach(items, i, it) {
		if (strcmp(json_string_value(json_object_get(it, "check")),
		    check) == 0 && strcasecmp(json_string_value(
		    json_object_get(it, "name")), name) == 0)
			return (it);
	}
	return (NULL);
}

static const char *
it_jstr(json_t *o, const char *key)
{
	const char	*s = json_string_value(json_object_get(o, key));

	return (s != NULL ? s : "(null)");
}

/*
 * Parse one "publish: NAME IN TXT "s1" "s2"..." line of check-domain's
 * text output into the name and the joined value; the strings' count in
 * *nstr.  0, or -1 if the line is not of that form.
 */
static int
it_parse_publish(const char *line, char *name, size_t namelen, char *value,
    size_t valuelen, int *nstr)
{
	const char	*p = line, *sp;
	size_t		 vl = 0;

	*nstr = 0;
	while (*p == ' ' || *p == '\t')
		p++;
	if (strncmp(p, "publish: ", 9) != 0)
		return (-1);
	p += 9;
	if ((sp = strchr(p, ' ')) == NULL || (size_t)(sp - p) >= namelen)
		return (-1);
	memcpy(name, p, (size_t)(sp - p));
	name[sp - p] = '\0';
	p = sp;
	if (strncmp(p, " IN TXT ", 8) != 0)
		return (-1);
	p += 8;
	value[0] = '\0';
	while (*p == '"') {
		p++;
		while (*p != '"') {
			if (*p == '\\' && p[1] != '\0')
				p++;
			if (*p == '\0' || *p == '\n' || vl + 1 >= valuelen)
				return (-1);
			value[vl++] = *p++;
		}
		value[vl] = '\0';
		(*nstr)++;
		p++;
		if (*p == ' ')
			p++;
	}
	return (*p == '\0' || *p == '\n' ? 0 : -1);
}

/*
 * The three keys of the DKIM tests: RSA and Ed25519 for sign.test, and
 * Ed25519 for deep.sign.test, more specific.
 */
#define IT_NKEYS	3
static void
it_keys(struct harness *h, struct it_key *k)
{
	it_key(h, &k[0], "sign.test", "rsa1", false);
	it_key(h, &k[1], "sign.test", "ed1", true);
	it_key(h, &k[2], "deep.sign.test", "deep", true);
}

/* Records for keys, plus the SPF and DMARC records of domain. */
static void
it_args_keys(struct it_args *a, const struct it_key *k, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		it_args_txt(a, it_key_name(&k[i]), k[i].record);
}

/* The daemon with its keys, DNS with the key records, and a sink. */
static struct harness *
it_signing_setup(struct it_key *k, int *mx)
{
	struct harness	*h = it_new(NULL);
	struct it_args	 a = { { NULL }, 0 };

	it_keys(h, k);
	it_args_keys(&a, k, IT_NKEYS);
	it_dns(h, &a);
	it_args_free(&a);
	*mx = it_mx(h);
	it_conf_dkim(h, k, IT_NKEYS);
	it_write_conf(h);
	HARNESS_START(h);
	return (h);
}

/*
 * Message shapes, all From: sign.test, each signed with both keys and
 * verified: 8-bit, SMTPUTF8, folded and long header fields, with and
 * without a final CRLF, trailing empty lines, no body at all, leading
 * dots, a submitter's own DKIM-Signature.
 */
Test(it_dkim, shapes_rsa_and_ed25519, .timeout = IT_TIMEOUT)
{
	static const struct {
		const char	*id;
		const char	*mail;
		const char	*body;
		int		 extra_sigs;	/* the submitter's own */
	} shapes[] = {
		{ "plain", "MAIL FROM:<a@sign.test>",
		  "From: Alice <a@sign.test>\r\nTo: <" IT_RCPT ">\r\n"
		  "Subject: plain\r\nMessage-ID: <plain@client.test>\r\n"
		  "\r\nHello.\r\n", 0 },
		{ "8bit", "MAIL FROM:<a@sign.test> BODY=8BITMIME",
		  "From: a@sign.test\r\nTo: " IT_RCPT "\r\n"
		  "Subject: =?utf-8?q?caf=C3=A9?=\r\n"
		  "Message-ID: <8bit@client.test>\r\nMIME-Version: 1.0\r\n"
		  "Content-Type: text/plain; charset=iso-8859-1\r\n"
		  "Content-Transfer-Encoding: 8bit\r\n\r\n"
		  "caf\xe9 cr\xe8me br\xfbl\xe9\xe9\r\n\xff\xfe\x80\r\n", 0 },
		{ "utf8", "MAIL FROM:<j\xc3\xb6rg@sign.test> SMTPUTF8",
		  "From: J\xc3\xb6rg <j\xc3\xb6rg@sign.test>\r\n"
		  "To: \xe5\x8f\x97\xe4\xbf\xa1\xe8\x80\x85 <" IT_RCPT ">\r\n"
		  "Subject: gr\xc3\xbc\xc3\x9f\x65 \xf0\x9f\x93\xa7\r\n"
		  "Message-ID: <utf8@client.test>\r\nMIME-Version: 1.0\r\n"
		  "Content-Type: text/plain; charset=utf-8\r\n\r\n"
		  "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81"
		  "\xaf\r\n", 0 },
		{ "folded", "MAIL FROM:<a@sign.test>",
		  "From:\r\n\tAlice Example\r\n  <a@sign.test>\r\n"
		  "To: one@ok.test,\r\n two@ok.test,\r\n\tthree@ok.test,"
		  "\r\n    " IT_RCPT "\r\n"
		  "Subject: a subject that goes on and on and on, folded\r\n"
		  " over   several\t lines,\r\n\t with odd   whitespace   \r\n"
		  "message-id: <folded@client.test>\r\n"
		  "References: <r1@client.test> <r2@client.test>\r\n"
		  " <r3@client.test> <r4@client.test> <r5@client.test>\r\n"
		  "X-Long: 0123456789012345678901234567890123456789012345678"
		  "9012345678901234567890123456789012345678901234567890123456"
		  "7890123456789012345678901234567890123456789012345678901234"
		  "5678901234567890123456789012345678901234567890123456789012"
		  "3456789012345678901234567890123456789012345678901234567890"
		  "1234567890123456789012345678901234567890123456789012345678"
		  "9012345678901234567890123456789012345678901234567890\r\n"
		  "\r\nBody line with trailing space   \r\n\r\n"
		  "  leading   space\tand\ttabs\t\r\n", 0 },
		{ "nocrlf", "MAIL FROM:<a@sign.test>",
		  "From: a@sign.test\r\nSubject: no final CRLF\r\n"
		  "Message-ID: <nocrlf@client.test>\r\n\r\n"
		  "first line\r\nlast line without CRLF", 0 },
		{ "blanks", "MAIL FROM:<a@sign.test>",
		  "From: a@sign.test\r\nSubject: trailing empty lines\r\n"
		  "Message-ID: <blanks@client.test>\r\n\r\n"
		  "text\r\n\r\n\r\n\r\n", 0 },
		{ "emptybody", "MAIL FROM:<a@sign.test>",
		  "From: a@sign.test\r\nSubject: empty body\r\n"
		  "Message-ID: <emptybody@client.test>\r\n\r\n", 0 },
		{ "nobody", "MAIL FROM:<a@sign.test>",
		  "From: a@sign.test\r\nSubject: header only\r\n"
		  "Message-ID: <nobody@client.test>\r\n", 0 },
		{ "dots", "MAIL FROM:<a@sign.test>",
		  "From: a@sign.test\r\nSubject: dots\r\n"
		  "Message-ID: <dots@client.test>\r\n\r\n"
		  ".leading dot\r\n..two dots\r\n.\r\n. \r\nend\r\n", 0 },
		{ "theirsig", "MAIL FROM:<a@sign.test>",
		  "DKIM-Signature: v=1; a=rsa-sha256; d=platform.test; "
		  "s=x;\r\n\tc=relaxed/relaxed; h=from; bh=AAAA; b=AAAA\r\n"
		  "From: a@sign.test\r\nSubject: already signed upstream\r\n"
		  "Message-ID: <theirsig@client.test>\r\n\r\nbody\r\n", 1 },
	};
	static const char *const want[] = {
		"d=sign.test s=rsa1 a=rsa-sha256 ",
		"d=sign.test s=ed1 a=ed25519-sha256 "
	};
	struct it_key	 k[IT_NKEYS];
	struct it_expect e[nitems(shapes)];
	const char	*names[2];
	struct harness	*h;
	size_t		 i;
	char		 msgid[nitems(shapes)][64];
	long long	 n;
	int		 mx;

	h = it_signing_setup(k, &mx);
	names[0] = it_key_name(&k[0]);
	names[1] = it_key_name(&k[1]);
	for (i = 0; i < nitems(shapes); i++)
		it_send(h, shapes[i].mail, shapes[i].body);
	for (i = 0; i < nitems(shapes); i++) {
		snprintf(msgid[i], sizeof(msgid[i]), "%s@client.test",
		    shapes[i].id);
		e[i] = (struct it_expect){ msgid[i], 2,
		    2 + shapes[i].extra_sigs, names, 2, want, NULL, { 0 } };
	}
	it_expect_signed(h, mx, e, nitems(shapes));
	/* From: is over-signed: a From: added on the way breaks both. */
	{
		char	*m, *m2, out[IT_OUT_MAX];
		size_t	 len;

		m = it_sink_msg(h, mx, "plain@client.test", &len);
		cr_assert(asprintf(&m2, "From: mallory@evil.test\r\n%s", m) !=
		    -1);
		cr_assert(it_verify(h, m2, strlen(m2), 2, names, 2, out,
		    sizeof(out)) == 1, "an added From: still verifies:\n%s",
		    out);
		free(m2);
		free(m);
	}
	n = it_stat(h, "dkim", "signed");
	cr_assert(n == (long long)nitems(shapes), "dkim.signed %lld, want %zu",
	    n, nitems(shapes));
	n = it_stat(h, "dkim", "errors");
	cr_assert(n == 0, "dkim.errors %lld, want 0", n);
	harness_free(h);
}

/*
 * Which keys sign: the From: header's domain or a parent, the most
 * specific configured domain only, DNS labels not suffixes, the envelope
 * sender plays no part, no match is sent unsigned.
 */
Test(it_dkim, from_domains, .timeout = IT_TIMEOUT)
{
	static const char *const w_parent[] = {
		"d=sign.test s=rsa1 a=rsa-sha256 ",
		"d=sign.test s=ed1 a=ed25519-sha256 "
	};
	static const char *const w_deep[] = {
		"d=deep.sign.test s=deep a=ed25519-sha256 "
	};
	static const struct {
		const char		 *id;
		const char		 *mail;
		const char		 *from;
		int			  nsig;
		const char *const	 *want;
	} cases[] = {
		{ "exact", "MAIL FROM:<a@sign.test>", "a@sign.test", 2,
		  w_parent },
		{ "upper", "MAIL FROM:<a@sign.test>", "A <a@SIGN.Test>", 2,
		  w_parent },
		{ "sub", "MAIL FROM:<a@eu.sign.test>", "a@eu.sign.test", 2,
		  w_parent },
		{ "subsub", "MAIL FROM:<a@sign.test>", "a@x.y.sign.test", 2,
		  w_parent },
		{ "deep", "MAIL FROM:<a@sign.test>", "a@deep.sign.test", 1,
		  w_deep },
		{ "deepsub", "MAIL FROM:<a@sign.test>", "a@x.deep.sign.test",
		  1, w_deep },
		{ "envelope", "MAIL FROM:<bounce@other.test>",
		  "a@sign.test", 2, w_parent },
		{ "unconfigured", "MAIL FROM:<a@sign.test>",
		  "a@other.test", 0, NULL },
		{ "suffix", "MAIL FROM:<a@sign.test>", "a@notsign.test", 0,
		  NULL },
		{ "longer", "MAIL FROM:<a@sign.test>",
		  "a@sign.test.evil.test", 0, NULL },
		{ "display", "MAIL FROM:<a@sign.test>",
		  "\"a@sign.test\" <b@other.test>", 0, NULL },
		{ "nullsender", "MAIL FROM:<>", "a@sign.test", 2, w_parent },
		/* SMTPUTF8: a U-label subdomain of sign.test is under it. */
		{ "ulabel", "MAIL FROM:<a@sign.test> SMTPUTF8",
		  "a@b\xc3\xbc" "cher.sign.test", 2, w_parent },
		{ "alabel", "MAIL FROM:<a@sign.test>",
		  "a@xn--bcher-kva.sign.test", 2, w_parent },
		{ "ulabel-other", "MAIL FROM:<a@sign.test> SMTPUTF8",
		  "j\xc3\xb6rg@b\xc3\xbc" "cher.test", 0, NULL },
	};
	struct it_key	 k[IT_NKEYS];
	struct it_expect e[nitems(cases)];
	const char	*names[3];
	struct harness	*h;
	char		 body[512], msgid[nitems(cases)][64];
	size_t		 i;
	long long	 n;
	int		 mx, nsigned = 0;

	h = it_signing_setup(k, &mx);
	names[0] = it_key_name(&k[0]);
	names[1] = it_key_name(&k[1]);
	names[2] = it_key_name(&k[2]);
	for (i = 0; i < nitems(cases); i++) {
		snprintf(body, sizeof(body), "From: %s\r\nTo: " IT_RCPT "\r\n"
		    "Subject: from domain %s\r\n"
		    "Message-ID: <%s@client.test>\r\n\r\nbody %s\r\n",
		    cases[i].from, cases[i].id, cases[i].id, cases[i].id);
		it_send(h, cases[i].mail, body);
		if (cases[i].nsig > 0)
			nsigned++;
	}
	for (i = 0; i < nitems(cases); i++) {
		snprintf(msgid[i], sizeof(msgid[i]), "%s@client.test",
		    cases[i].id);
		e[i] = (struct it_expect){ msgid[i], cases[i].nsig,
		    cases[i].nsig, cases[i].nsig == 1 ? names + 2 : names,
		    cases[i].nsig == 1 ? 1 : 2, cases[i].want, NULL, { 0 } };
	}
	it_expect_signed(h, mx, e, nitems(cases));
	n = it_stat(h, "dkim", "signed");
	cr_assert(n == nsigned, "dkim.signed %lld, want %d", n, nsigned);
	n = it_stat(h, "dkim", "errors");
	cr_assert(n == 0, "dkim.errors %lld, want 0", n);
	harness_free(h);
}

/*
 * The "done when": keys made with doc/dkim.md's commands, the
 * records check-domain prints published as printed (a 2048-bit RSA record
 * in several strings), check-domain then passes, and mail through postern
 * carries two signatures that dkimpy verifies against that DNS.
 */
Test(it_dkim, check_domain_publish_then_send, .timeout = IT_TIMEOUT)
{
	static const char *const want[] = {
		"d=sign.test s=rsa1 a=rsa-sha256 ",
		"d=sign.test s=ed1 a=ed25519-sha256 "
	};
	struct it_key	 k[2];
	struct it_args	 a = { { NULL }, 0 };
	struct it_expect e;
	struct harness	*h;
	char		 out[IT_OUT_MAX], name[300], value[IT_REC_MAX];
	char		*line, *save = NULL, *copy;
	const char	*names[2];
	json_t		*j, *it, *s;
	size_t		 i, idx;
	int		 rc, nstr, npub = 0, mx;
	bool		 seen_rsa = false, seen_ed = false;

	h = it_new(NULL);
	it_key(h, &k[0], "sign.test", "rsa1", false);
	it_key(h, &k[1], "sign.test", "ed1", true);
	it_dns(h, NULL);
	it_conf_dkim(h, k, 2);
	it_write_conf(h);

	/* Nothing published: exit 1, every item missing, with a record. */
	rc = it_check_domain(h, "sign.test", false, out, sizeof(out));
	cr_assert(rc == 1, "check-domain with nothing published: exit %d, "
	    "want 1:\n%s", rc, out);
	copy = strdup(out);
	for (line = strtok_r(copy, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "        publish:", 16) != 0) {
			cr_assert(strncmp(line, "missing ", 8) == 0,
			    "want only missing items, got \"%s\" in\n%s",
			    line, out);
			continue;
		}
		cr_assert(it_parse_publish(line, name, sizeof(name), value,
		    sizeof(value), &nstr) == 0, "unparsable: \"%s\"", line);
		if (strcmp(name, it_key_name(&k[0])) == 0) {
			cr_assert_str_eq(value, k[0].record, "RSA record "
			    "printed differs from doc/dkim.md's command");
			cr_assert(nstr == (int)((strlen(value) + 254) / 255) &&
			    nstr >= 2, "RSA record in %d strings, want %zu",
			    nstr, (strlen(value) + 254) / 255);
			seen_rsa = true;
		} else if (strcmp(name, it_key_name(&k[1])) == 0) {
			cr_assert_str_eq(value, k[1].record, "Ed25519 record "
			    "printed differs from doc/dkim.md's command");
			seen_ed = true;
		}
		it_args_txt(&a, name, value);
		npub++;
	}
	free(copy);
	cr_assert(seen_rsa && seen_ed && npub == 4, "want 4 records to "
	    "publish (spf, 2 dkim, dmarc), got %d:\n%s", npub, out);

	/* --json says the same, with the strings cut at 255. */
	j = it_check_json(h, "sign.test", 1);
	cr_assert(json_is_false(json_object_get(j, "ok")), "ok");
	cr_assert(json_array_size(json_object_get(j, "items")) == 4,
	    "items: %zu, want 4", json_array_size(json_object_get(j,
	    "items")));
	json_array_foreach(json_object_get(j, "items"), i, it) {
		cr_assert_str_eq(it_jstr(it, "status"), "missing", "%s %s",
		    it_jstr(it, "check"), it_jstr(it, "name"));
		cr_assert(json_is_string(json_object_get(it, "record")),
		    "%s: no record", it_jstr(it, "name"));
		json_array_foreach(json_object_get(it, "strings"), idx, s)
			cr_assert(json_string_length(s) <= 255 &&
			    json_string_length(s) > 0, "string %zu of %s: %zu "
			    "bytes", idx, it_jstr(it, "name"),
			    json_string_length(s));
	}
	it = it_item(j, "dkim", it_key_name(&k[0]));
	cr_assert(it != NULL && json_array_size(json_object_get(it,
	    "strings")) >= 2, "RSA item in JSON with its strings");
	json_decref(j);

	/* Publish exactly the printed records: dnsmasq again. */
	it_dns(h, &a);
	it_args_free(&a);
	it_write_conf(h);
	{
		char	rec[IT_REC_MAX];

		cr_assert(harness_dns_txt(h, it_key_name(&k[0]), rec,
		    sizeof(rec), &nstr) == 1 && nstr >= 2,
		    "RSA TXT from dnsmasq in %d strings (%s)", nstr,
		    harness_err(h));
		cr_assert_str_eq(rec, k[0].record, "RSA TXT as served");
	}
	rc = it_check_domain(h, "sign.test", false, out, sizeof(out));
	cr_assert(rc == 0, "check-domain after publishing: exit %d, want 0:"
	    "\n%s", rc, out);
	copy = strdup(out);
	npub = 0;
	for (line = strtok_r(copy, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save), npub++)
		cr_assert(strncmp(line, "pass ", 5) == 0, "want only pass "
		    "lines, got \"%s\" in\n%s", line, out);
	free(copy);
	cr_assert(npub == 4, "%d lines, want 4:\n%s", npub, out);
	j = it_check_json(h, "sign.test", 0);
	cr_assert(json_is_true(json_object_get(j, "ok")), "ok");
	json_array_foreach(json_object_get(j, "items"), i, it)
		cr_assert_str_eq(it_jstr(it, "status"), "pass", "%s %s: %s",
		    it_jstr(it, "check"), it_jstr(it, "name"),
		    it_jstr(it, "detail"));
	json_decref(j);

	/* And mail through postern verifies against that DNS. */
	mx = it_mx(h);
	HARNESS_START(h);
	it_send(h, "MAIL FROM:<a@sign.test>", "From: Alice <a@sign.test>\r\n"
	    "To: <" IT_RCPT ">\r\nSubject: done when\r\n"
	    "Message-ID: <donewhen@client.test>\r\n\r\nIt works.\r\n");
	names[0] = it_key_name(&k[0]);
	names[1] = it_key_name(&k[1]);
	e = (struct it_expect){ "donewhen@client.test", 2, 2, names, 2, want,
	    NULL, { 0 } };
	it_expect_signed(h, mx, &e, 1);
	harness_free(h);
}

/*
 * check-domain against correct records passes; against a mismatching key
 * (another RSA key, an Ed25519 selector holding an RSA key) and an SPF
 * record that does not cover the outbound address it fails, printing the
 * right records.
 */
Test(it_dkim, check_domain_correct_and_mismatch, .timeout = IT_TIMEOUT)
{
	struct it_key	 k[2], other;
	struct it_args	 a = { { NULL }, 0 };
	struct harness	*h;
	char		 out[IT_OUT_MAX], want[IT_REC_MAX];
	json_t		*j, *it;
	size_t		 i;
	int		 rc;

	h = it_new(NULL);
	it_key(h, &k[0], "sign.test", "rsa1", false);
	it_key(h, &k[1], "sign.test", "ed1", true);
	it_key(h, &other, "sign.test", "other", false);

	/* Correct: records written by hand, not taken from postern. */
	it_args_keys(&a, k, 2);
	it_args_txt(&a, "sign.test", "v=spf1 ip4:192.0.2.0/24 -all");
	it_args_txt(&a, "_dmarc.sign.test", "v=DMARC1; p=reject; adkim=s");
	it_dns(h, &a);
	it_args_free(&a);
	it_conf_dkim(h, k, 2);
	it_write_conf(h);
	rc = it_check_domain(h, "sign.test", false, out, sizeof(out));
	cr_assert(rc == 0, "correct records: exit %d, want 0:\n%s", rc, out);
	cr_assert(strstr(out, "publish") == NULL, "publish with all "
	    "correct:\n%s", out);
	j = it_check_json(h, "sign.test", 0);
	cr_assert(json_is_true(json_object_get(j, "ok")), "ok");
	cr_assert(json_array_size(json_object_get(j, "items")) == 4,
	    "items: %zu, want 4", json_array_size(json_object_get(j,
	    "items")));
	json_array_foreach(json_object_get(j, "items"), i, it) {
		cr_assert_str_eq(it_jstr(it, "status"), "pass", "%s %s: %s",
		    it_jstr(it, "check"), it_jstr(it, "name"),
		    it_jstr(it, "detail"));
		cr_assert(json_object_get(it, "record") == NULL ||
		    json_is_null(json_object_get(it, "record")),
		    "%s passes but has a record to publish",
		    it_jstr(it, "name"));
	}
	cr_assert(it_item(j, "dkim", it_key_name(&k[0])) != NULL &&
	    it_item(j, "dkim", it_key_name(&k[1])) != NULL &&
	    it_item(j, "spf", "sign.test") != NULL &&
	    it_item(j, "dmarc", "_dmarc.sign.test") != NULL, "items");
	json_decref(j);

	/* Mismatching: another key under rsa1, RSA under ed1, SPF wrong. */
	it_args_txt(&a, it_key_name(&k[0]), other.record);
	snprintf(want, sizeof(want), "%s", other.record);
	it_args_txt(&a, it_key_name(&k[1]), want);
	it_args_txt(&a, "sign.test", "v=spf1 ip4:198.51.100.1 -all");
	it_args_txt(&a, "_dmarc.sign.test", "v=DMARC1; p=reject; adkim=s");
	it_dns(h, &a);
	it_args_free(&a);
	it_write_conf(h);
	rc = it_check_domain(h, "sign.test", false, out, sizeof(out));
	cr_assert(rc == 1, "mismatching records: exit %d, want 1:\n%s", rc,
	    out);
	/* The text lines: "%-7s %-5s %s: reason" (checkdomain_print). */
	for (i = 0; i < 4; i++) {
		static const char *const st[] = { "fail", "fail", "fail",
					    "pass" };
		static const char *const ck[] = { "dkim", "dkim", "spf",
					    "dmarc" };
		const char	*nm[] = { it_key_name(&k[0]),
				    it_key_name(&k[1]), "sign.test",
				    "_dmarc.sign.test" };
		char		 wl[400];

		snprintf(wl, sizeof(wl), "%-7s %-5s %s: ", st[i], ck[i],
		    nm[i]);
		cr_assert(strstr(out, wl) != NULL, "want \"%s\" in\n%s", wl,
		    out);
	}
	j = it_check_json(h, "sign.test", 1);
	cr_assert(json_is_false(json_object_get(j, "ok")), "ok");
	for (i = 0; i < 2; i++) {
		it = it_item(j, "dkim", it_key_name(&k[i]));
		cr_assert(it != NULL, "no item %s", it_key_name(&k[i]));
		cr_assert_str_eq(it_jstr(it, "status"), "fail", "%s: %s",
		    it_key_name(&k[i]), it_jstr(it, "detail"));
		cr_assert_str_eq(it_jstr(it, "record"), k[i].record,
		    "%s: the record to publish", it_key_name(&k[i]));
		cr_assert_str_eq(it_jstr(it, "found"), other.record,
		    "%s: the record found", it_key_name(&k[i]));
	}
	it = it_item(j, "spf", "sign.test");
	cr_assert(it != NULL && strcmp(it_jstr(it, "status"), "fail") == 0,
	    "spf: %s", it != NULL ? it_jstr(it, "status") : "none");
	cr_assert(strstr(it_jstr(it, "record"), "ip4:" IT_CLIENT_IP) !=
	    NULL, "spf record to publish: %s", it_jstr(it, "record"));
	it = it_item(j, "dmarc", "_dmarc.sign.test");
	cr_assert(it != NULL && strcmp(it_jstr(it, "status"), "pass") == 0,
	    "dmarc");
	json_decref(j);
	harness_free(h);
}

/*
 * Move this test process into a network namespace of its own with lo up
 * and the two client addresses on it; skip when that is not allowed.
 */
static void
it_enter_netns(void)
{
	if (unshare(CLONE_NEWNET) == -1)
		cr_skip_test("unshare(CLONE_NEWNET): %s", strerror(errno));
	cr_assert(system("ip link set lo up && "
	    "ip addr add " IT_CLIENT_IP "/32 dev lo && "
	    "ip addr add " IT_OTHER_IP "/32 dev lo") == 0, "ip failed");
}

/*
 * A daemon listening on 192.0.2.1 that relays for nobody but SPF passes
 * for spf.test, whose record is spf (NULL: none); with k, signing with
 * an Ed25519 key for sign.test and a sink in mx.
 */
static struct harness *
it_spf_setup(const char *spf, struct it_key *k, int *mx)
{
	struct harness	*h;
	struct it_args	 a = { { NULL }, 0 };

	it_enter_netns();
	h = it_new(IT_CLIENT_IP);
	if (spf != NULL)
		it_args_txt(&a, "spf.test", spf);
	if (k != NULL) {
		it_key(h, k, "sign.test", "ed1", true);
		it_args_keys(&a, k, 1);
		it_conf_dkim(h, k, 1);
	}
	it_dns(h, &a);
	it_args_free(&a);
	if (mx != NULL)
		*mx = it_mx(h);
	harness_set_relay_networks(h, "[ ]");
	harness_append_conf(h, "relay_spf_domain = \"spf.test\";");
	it_write_conf(h);
	HARNESS_START(h);
	return (h);
}

/* A session from src to the listener, EHLO done. */
static struct smtpc *
it_session_from(struct harness *h, const char *src)
{
	struct smtpc	*c;
	char		 err[256];

	c = smtpc_connect_from(src, IT_CLIENT_IP, harness_port(h, 0), err,
	    sizeof(err));
	cr_assert(c != NULL, "connect from %s: %s", src, err);
	smtpc_set_timeout(c, 60000);
	HARNESS_EXPECT(c, "220", "greeting");
	cr_assert(smtpc_ehlo(c, "client.test") == 250, "%s", smtpc_last(c));
	return (c);
}

/*
 * "v=spf1 ip4:192.0.2.0/24 -all": the client on 192.0.2.1 relays without
 * AUTH (and its mail is delivered and signed); one on 198.51.100.7 gets
 * 530 5.7.0 from the same daemon.
 */
Test(it_dkim, spf_relay_allowed, .timeout = IT_TIMEOUT)
{
	static const char *const want[] = {
		"d=sign.test s=ed1 a=ed25519-sha256 "
	};
	struct it_key	 k;
	struct it_expect e;
	struct harness	*h;
	struct smtpc	*c;
	const char	*names[1];
	char		 qid[9];
	int		 mx, code, n;

	h = it_spf_setup("v=spf1 ip4:192.0.2.0/24 -all", &k, &mx);
	c = it_session_from(h, IT_CLIENT_IP);
	code = it_txn(c, "MAIL FROM:<a@sign.test>", IT_RCPT,
	    "From: a@sign.test\r\nSubject: spf\r\n"
	    "Message-ID: <spf@client.test>\r\n\r\nrelayed by SPF\r\n", qid);
	cr_assert(code == 250, "SPF pass from %s: got %d \"%s\", want 250",
	    IT_CLIENT_IP, code, smtpc_last(c));
	/* A second transaction on the session (the cached result). */
	HARNESS_CMD(c, "MAIL FROM:<b@sign.test>", "250 2.1.0");
	HARNESS_CMD(c, "RSET", "250");
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);

	c = it_session_from(h, IT_OTHER_IP);
	HARNESS_CMD(c, "MAIL FROM:<a@sign.test>", "530 5.7.0");
	HARNESS_CMD(c, "RCPT TO:<" IT_RCPT ">", "503 5.5.1");
	HARNESS_CMD(c, "QUIT", "221");
	smtpc_close(c);

	names[0] = it_key_name(&k);
	e = (struct it_expect){ "spf@client.test", 1, 1, names, 1, want, NULL,
	    { 0 } };
	it_expect_signed(h, mx, &e, 1);
	cr_assert(harness_wait_queue_count(h, 0, IT_WAIT), "queue not empty");
	n = harness_mx_messages(h, mx);
	cr_assert(n == 1, "sink has %d messages, want 1", n);
	harness_free(h);
}

/* "v=spf1 ip4:198.51.100.1 -all": 530 5.7.0, nothing queued. */
Test(it_dkim, spf_relay_refused, .timeout = IT_TIMEOUT)
{
	struct harness	*h;
	struct smtpc	*c;
	int		 i, n;

	h = it_spf_setup("v=spf1 ip4:198.51.100.1 -all", NULL, NULL);
	/* Twice: the refusal is cached, and stays a refusal. */
	for (i = 0; i < 2; i++) {
		c = it_session_from(h, IT_CLIENT_IP);
		HARNESS_CMD(c, "MAIL FROM:<a@sign.test>", "530 5.7.0");
		HARNESS_CMD(c, "RCPT TO:<" IT_RCPT ">", "503 5.5.1");
		HARNESS_CMD(c, "QUIT", "221");
		smtpc_close(c);
	}
	n = harness_queue_count(h);
	cr_assert(n == 0, "queue: %d, want 0 (%s)", n, harness_err(h));
	harness_free(h);
}

/*
 * No record, or a DNS server that never answers: never authorized on a
 * failure (none, temperror), 530 5.7.0.
 */
Test(it_dkim, spf_relay_none_and_dns_down, .timeout = IT_TIMEOUT)
{
	struct harness	*h;
	struct smtpc	*c;
	int		 n;

	h = it_spf_setup(NULL, NULL, NULL);
	c = it_session_from(h, IT_CLIENT_IP);
	HARNESS_CMD(c, "MAIL FROM:<a@sign.test>", "530 5.7.0");
	smtpc_close(c);
	harness_free(h);

	/* The same namespace: only the DNS side changes. */
	h = it_new(IT_CLIENT_IP);
	{
		char	d[512];

		harness_set_relay_networks(h, "[ ]");
		harness_append_conf(h, "relay_spf_domain = \"spf.test\";");
		snprintf(d, sizeof(d), "dns_servers = [ \"127.0.0.1:%d\" ];",
		    h->dns_port);
		harness_set_delivery(h, d);
		HARNESS_START(h);
	}
	c = it_session_from(h, IT_CLIENT_IP);
	HARNESS_CMD(c, "MAIL FROM:<a@sign.test>", "530 5.7.0");
	HARNESS_CMD(c, "RCPT TO:<" IT_RCPT ">", "503 5.5.1");
	/* Asked again (a TEMPERROR may be cached, or evaluated again). */
	HARNESS_CMD(c, "MAIL FROM:<a@sign.test>", "530 5.7.0");
	smtpc_close(c);
	n = harness_queue_count(h);
	cr_assert(n == 0, "queue: %d, want 0 (%s)", n, harness_err(h));
	harness_free(h);
}

/*
 * doc/dkim.md: signing happens at each delivery attempt, so a reload that
 * replaces the key applies to mail already queued.  The first attempt
 * (signed with the old key) finds no sink; after SIGHUP-equivalent reload
 * with only the new key, the flushed retry carries the new signature only.
 */
Test(it_dkim, reload_rotates_key_for_queued_mail, .timeout = IT_TIMEOUT)
{
	static const char *const want[] = {
		"d=sign.test s=new a=ed25519-sha256 "
	};
	struct it_key	 old, nk;
	struct it_args	 a = { { NULL }, 0 };
	struct it_expect e;
	struct harness	*h;
	struct smtpc	*c;
	const char	*names[1];
	char		 qid[9], req[128], re[128];
	json_t		*r;
	long long	 n;
	int		 mx, code;

	h = it_new(NULL);
	it_key(h, &old, "sign.test", "old", true);
	it_key(h, &nk, "sign.test", "new", true);
	it_args_keys(&a, &old, 1);
	it_args_keys(&a, &nk, 1);
	it_dns(h, &a);
	it_args_free(&a);
	it_conf_dkim(h, &old, 1);
	it_write_conf(h);
	/* Every attempt after the first is the test's flush. */
	harness_set_retry(h, "initial = 600; max_interval = 1200; "
	    "factor = 2.0;");
	HARNESS_START(h);

	c = harness_session_ehlo(h, 0);
	cr_assert(c != NULL, "session: %s", harness_err(h));
	code = it_txn(c, "MAIL FROM:<a@sign.test>", IT_RCPT,
	    "From: a@sign.test\r\nSubject: rotation\r\n"
	    "Message-ID: <rotate@client.test>\r\n\r\nqueued\r\n", qid);
	cr_assert(code == 250, "submit: got %d \"%s\"", code, smtpc_last(c));
	smtpc_close(c);
	snprintf(re, sizeof(re), "%s: to=<" IT_RCPT ">.*status=deferred",
	    qid);
	cr_assert(harness_log_wait(h, re, IT_WAIT), "want /%s/:\n%s", re,
	    harness_log_tail(h, 20));
	n = it_stat(h, "dkim", "signed");
	cr_assert(n == 1, "dkim.signed after the first attempt: %lld, "
	    "want 1", n);

	/* Rotate: only the new key, through the control socket's reload. */
	free(h->extra);
	h->extra = NULL;
	it_conf_dkim(h, &nk, 1);
	cr_assert(harness_write_conf(h) == 0, "conf: %s", harness_err(h));
	r = harness_control(h, "{\"cmd\":\"reload\"}");
	cr_assert(r != NULL && json_is_true(json_object_get(r, "ok")),
	    "reload: %s", harness_err(h));
	json_decref(r);
	cr_assert(harness_log_wait(h, "configuration reloaded", IT_WAIT),
	    "reload not logged:\n%s", harness_log_tail(h, 20));

	mx = it_mx(h);
	snprintf(req, sizeof(req), "{\"cmd\":\"flush\",\"id\":\"%s\"}", qid);
	r = harness_control(h, req);
	cr_assert(r != NULL && json_is_true(json_object_get(r, "ok")),
	    "flush: %s", harness_err(h));
	json_decref(r);
	names[0] = it_key_name(&nk);
	e = (struct it_expect){ "rotate@client.test", 1, 1, names, 1, want,
	    NULL, { 0 } };
	it_expect_signed(h, mx, &e, 1);
	n = it_stat(h, "dkim", "signed");
	cr_assert(n == 2, "dkim.signed: %lld, want 2 (one per attempt)", n);
	cr_assert(harness_wait_queue_count(h, 0, IT_WAIT), "queue not empty");
	harness_free(h);
}

/*
 * SECURITY-CASES IN-38: RFC 7208's limit of 10 DNS terms.  A record whose
 * client-matching ip4: comes after 10 includes passes; after 11 it is a
 * permerror, so 530 5.7.0 even though the ip4: would match.
 */
Test(it_dkim, spf_relay_dns_term_limit, .timeout = IT_TIMEOUT)
{
	static const int	 nincl[] = { 10, 11 };
	static const char *const wants[] = { "250 2.1.0", "530 5.7.0" };
	struct it_args		 a = { { NULL }, 0 };
	struct harness		*h;
	struct smtpc		*c;
	char			 rec[1024], term[64];
	size_t			 t;
	int			 i;

	it_enter_netns();
	for (t = 0; t < nitems(nincl); t++) {
		snprintf(rec, sizeof(rec), "v=spf1");
		for (i = 1; i <= nincl[t]; i++) {
			snprintf(term, sizeof(term), " include:i%d.spf.test",
			    i);
			strlcat(rec, term, sizeof(rec));
		}
		strlcat(rec, " ip4:" IT_CLIENT_IP " -all", sizeof(rec));
		h = it_new(IT_CLIENT_IP);
		it_args_txt(&a, "spf.test", rec);
		for (i = 1; i <= nincl[t]; i++) {
			snprintf(term, sizeof(term), "i%d.spf.test", i);
			it_args_txt(&a, term, "v=spf1 ip4:203.0.113.1 -all");
		}
		it_dns(h, &a);
		it_args_free(&a);
		harness_set_relay_networks(h, "[ ]");
		harness_append_conf(h, "relay_spf_domain = \"spf.test\";");
		it_write_conf(h);
		HARNESS_START(h);
		c = it_session_from(h, IT_CLIENT_IP);
		cr_assert(smtpc_cmd_expect(c, "MAIL FROM:<a@sign.test>",
		    wants[t]), "%d includes before ip4: got \"%s\", want "
		    "\"%s\"", nincl[t], smtpc_last(c), wants[t]);
		smtpc_close(c);
		harness_free(h);
	}
}
