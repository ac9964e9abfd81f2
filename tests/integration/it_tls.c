/*
 * it_tls.c: black-box tests of inbound TLS (SPEC sections 2 and 3;
 * SECURITY-CASES 1.2): STARTTLS, the plaintext-injection cases IN-13 to
 * IN-16, implicit TLS (IN-18) and the minimum protocol version.
 *
 * Certificates come from tests/support/gen-certs.sh through the harness;
 * the client verifies the server certificate against ca.pem for the name
 * "localhost", so a test that passes also proves the configured chain is
 * the one served.  Injected plaintext is checked on both sides of the
 * handshake: no plaintext reply before it, no reply inside TLS after it.
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "../support/harness.h"

#define IT_TIMEOUT	120

static const char it_msg[] =
    "From: a@ok.example\r\nTo: b@ok.example\r\nSubject: tls\r\n\r\nhi\r\n";
static const char *const it_rcpt[] = { "b@ok.example" };

/* Listener 0: starttls; 1: implicit; 2: plaintext; user "u"/"secret". */
static struct harness *
it_start(void)
{
	struct harness	*h;

	cr_assert((h = harness_new()) != NULL);
	cr_assert(harness_listen(h, NULL, "starttls", "optional") == 0, "%s",
	    harness_err(h));
	cr_assert(harness_listen(h, NULL, "implicit", "optional") == 1, "%s",
	    harness_err(h));
	cr_assert(harness_listen(h, NULL, "none", "none") == 2, "%s",
	    harness_err(h));
	cr_assert(harness_add_user(h, "u", "secret", NULL) == 0, "%s",
	    harness_err(h));
	HARNESS_START(h);
	return (h);
}

/* Nothing may arrive for ms: no reply to injected commands. */
static void
it_assert_silent(struct smtpc *c, int ms, const char *what)
{
	int	code;

	cr_assert(smtpc_read_reply(c, &code, NULL, 0, ms) == -1 &&
	    smtpc_status(c) == SMTPC_TIMEOUT,
	    "%s: unexpected bytes: \"%s\"", what, smtpc_last(c));
}

Test(it_tls, starttls_then_submission, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c;
	char		 qid[9];
	const char	*v;

	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	cr_assert(smtpc_has_ext(c, "STARTTLS"), "EHLO lacks STARTTLS: %s",
	    smtpc_last(c));
	cr_assert(smtpc_starttls(c, h->ca_path, "localhost") == 0,
	    "STARTTLS: %s (%s)", smtpc_error(c), smtpc_last(c));
	v = smtpc_tls_version(c);
	cr_assert(v != NULL && (strcmp(v, "TLSv1.2") == 0 ||
	    strcmp(v, "TLSv1.3") == 0), "version %s", v ? v : "?");
	cr_assert(smtpc_ehlo(c, "client.test") == 250, "%s", smtpc_last(c));
	cr_assert(!smtpc_has_ext(c, "STARTTLS"), "STARTTLS inside TLS: %s",
	    smtpc_last(c));
	cr_assert(smtpc_has_ext(c, "AUTH"), "no AUTH inside TLS: %s",
	    smtpc_last(c));
	cr_assert(smtpc_submit(c, "a@ok.example", it_rcpt, 1, it_msg, qid) ==
	    250, "%s", smtpc_last(c));
	cr_assert(harness_queue_has(h, qid), "%s not queued", qid);
	HARNESS_CMD(c, "QUIT", "221 2.0.0");
	smtpc_close(c);
	harness_free(h);
}

/* IN-13: "STARTTLS\r\nEHLO evil\r\n" in one write. */
Test(it_tls, in13_pipelined_ehlo_discarded, .timeout = IT_TIMEOUT)
{
	static const char inj[] = "STARTTLS\r\nEHLO evil\r\n";
	struct harness	*h = it_start();
	struct smtpc	*c;

	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	cr_assert(smtpc_send_raw(c, inj, sizeof(inj) - 1) == 0);
	HARNESS_EXPECT(c, "220 2.0.0", "STARTTLS");
	it_assert_silent(c, 1500, "plaintext after 220");
	cr_assert(smtpc_tls_handshake(c, h->ca_path, "localhost") == 0,
	    "handshake: %s", smtpc_error(c));
	it_assert_silent(c, 1500, "inside TLS before the client speaks");
	cr_assert(smtpc_ehlo(c, "good") == 250, "%s", smtpc_last(c));
	/* Exactly one EHLO reply: the next reply belongs to NOOP. */
	HARNESS_CMD(c, "NOOP", "250 2.0.0");
	it_assert_silent(c, 500, "after NOOP");
	smtpc_close(c);
	harness_free(h);
}

/* IN-14: injected transaction, then the victim's AUTH inside TLS. */
Test(it_tls, in14_injected_transaction_dropped, .timeout = IT_TIMEOUT)
{
	static const char inj[] = "STARTTLS\r\n"
	    "MAIL FROM:<m@att.example>\r\n"
	    "RCPT TO:<m@att.example>\r\n"
	    "DATA\r\n";
	struct harness	*h = it_start();
	struct smtpc	*c;
	char		 qid[9];
	int		 n;

	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	cr_assert(smtpc_send_raw(c, inj, sizeof(inj) - 1) == 0);
	HARNESS_EXPECT(c, "220 2.0.0", "STARTTLS");
	it_assert_silent(c, 1500, "plaintext after 220");
	cr_assert(smtpc_tls_handshake(c, h->ca_path, "localhost") == 0,
	    "handshake: %s", smtpc_error(c));
	it_assert_silent(c, 1500, "inside TLS before the client speaks");
	cr_assert(smtpc_ehlo(c, "victim") == 250, "%s", smtpc_last(c));
	cr_assert(smtpc_auth_plain(c, NULL, "u", "secret") == 235,
	    "AUTH must be handled as AUTH: %s", smtpc_last(c));
	/* A fresh transaction is allowed: no injected MAIL survived. */
	cr_assert(smtpc_submit(c, "v@ok.example", it_rcpt, 1, it_msg, qid) ==
	    250, "%s", smtpc_last(c));
	n = harness_queue_count(h);
	cr_assert(n == 1, "queue: got %d messages, want 1 (%s)", n,
	    harness_err(h));
	cr_assert(!harness_log_grep(h, "from=<m@att\\.example>"),
	    "the injected sender reached the log:\n%s",
	    harness_log_tail(h, 20));
	smtpc_close(c);
	harness_free(h);
}

/* IN-15: the session restarts after the handshake. */
Test(it_tls, in15_state_reset_after_handshake, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c;

	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	cr_assert(smtpc_starttls(c, h->ca_path, "localhost") == 0, "%s",
	    smtpc_error(c));
	HARNESS_CMD(c, "MAIL FROM:<a@b.example>", "503 5.5.1");
	cr_assert(smtpc_ehlo(c, "client.test") == 250, "%s", smtpc_last(c));
	cr_assert(smtpc_has_ext(c, "AUTH"), "%s", smtpc_last(c));
	cr_assert(!smtpc_has_ext(c, "STARTTLS"), "%s", smtpc_last(c));
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	smtpc_close(c);
	harness_free(h);
}

/* IN-16 */
Test(it_tls, starttls_misuse, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c;

	/* On a tls="none" listener. */
	cr_assert((c = harness_session_ehlo(h, 2)) != NULL, "%s",
	    harness_err(h));
	cr_assert(!smtpc_has_ext(c, "STARTTLS"), "%s", smtpc_last(c));
	HARNESS_CMD(c, "STARTTLS", "502 5.5.1");
	HARNESS_CMD(c, "NOOP", "250");
	smtpc_close(c);

	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	HARNESS_CMD(c, "STARTTLS x", "501 5.5.4");
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	/* (rec., as OpenSMTPD) not in the middle of a transaction. */
	HARNESS_CMD(c, "STARTTLS", "503 5.5.1");
	HARNESS_CMD(c, "RSET", "250");
	cr_assert(smtpc_starttls(c, h->ca_path, "localhost") == 0, "%s",
	    smtpc_error(c));
	cr_assert(smtpc_ehlo(c, "client.test") == 250, "%s", smtpc_last(c));
	HARNESS_CMD(c, "STARTTLS", "503 5.5.1|554 5.5.1");
	smtpc_close(c);
	harness_free(h);
}

Test(it_tls, implicit_tls_listener, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c;
	char		 err[512], qid[9];

	c = smtpc_connect_tls("127.0.0.1", harness_port(h, 1), h->ca_path,
	    "localhost", err, sizeof(err));
	cr_assert(c != NULL, "%s", err);
	HARNESS_EXPECT(c, "220", "greeting inside TLS");
	cr_assert(smtpc_ehlo(c, "client.test") == 250, "%s", smtpc_last(c));
	cr_assert(!smtpc_has_ext(c, "STARTTLS"), "%s", smtpc_last(c));
	cr_assert(smtpc_has_ext(c, "AUTH"), "%s", smtpc_last(c));
	cr_assert(smtpc_submit(c, "a@ok.example", it_rcpt, 1, it_msg, qid) ==
	    250, "%s", smtpc_last(c));
	cr_assert(harness_queue_has(h, qid), "%s not queued", qid);
	smtpc_close(c);
	harness_free(h);
}

/* IN-18: plaintext to the implicit-TLS port gets no SMTP at all. */
Test(it_tls, in18_plaintext_to_implicit_port, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c;
	char		 err[256];
	int		 code;

	c = smtpc_connect("127.0.0.1", harness_port(h, 1), err, sizeof(err));
	cr_assert(c != NULL, "%s", err);
	cr_assert(smtpc_send_line(c, "EHLO x") == 0);
	cr_assert(smtpc_read_reply(c, &code, NULL, 0, 30000) == -1,
	    "an SMTP reply in plaintext: %s", smtpc_last(c));
	cr_assert(smtpc_status(c) != SMTPC_TIMEOUT,
	    "connection still open after 30 s");
	cr_assert(smtpc_is_closed(c, 15000), "connection not closed");
	smtpc_close(c);
	cr_assert(harness_still_serves(h, 2), "%s", harness_err(h));
	harness_free(h);
}

/* min_version defaults to TLSv1.2: a TLS 1.1-only client is refused. */
Test(it_tls, tls11_client_refused, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c;
	char		 err[512];

	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	HARNESS_CMD(c, "STARTTLS", "220");
	smtpc_set_tls_versions(c, TLS1_VERSION, TLS1_1_VERSION);
	cr_assert(smtpc_tls_handshake(c, NULL, "localhost") == -1,
	    "TLS 1.1 handshake succeeded (%s)", smtpc_tls_version(c));
	smtpc_close(c);

	/* The same on the implicit port, and TLS 1.2 still works there. */
	c = smtpc_connect("127.0.0.1", harness_port(h, 1), err, sizeof(err));
	cr_assert(c != NULL, "%s", err);
	smtpc_set_tls_versions(c, TLS1_VERSION, TLS1_1_VERSION);
	cr_assert(smtpc_tls_handshake(c, NULL, "localhost") == -1,
	    "TLS 1.1 handshake succeeded on the implicit port");
	smtpc_close(c);
	c = smtpc_connect("127.0.0.1", harness_port(h, 1), err, sizeof(err));
	cr_assert(c != NULL, "%s", err);
	smtpc_set_tls_versions(c, TLS1_2_VERSION, TLS1_2_VERSION);
	cr_assert(smtpc_tls_handshake(c, h->ca_path, "localhost") == 0,
	    "TLS 1.2 handshake: %s", smtpc_error(c));
	HARNESS_EXPECT(c, "220", "greeting over TLS 1.2");
	smtpc_close(c);
	harness_free(h);
}

/* current value of stats connections_in.current, or -1. */
static int
it_current_connections(struct harness *h)
{
	json_t	*r;
	int	 n = -1;

	if ((r = harness_control(h, "{\"cmd\":\"stats\"}")) == NULL)
		return (-1);
	if (json_is_integer(json_object_get(json_object_get(r,
	    "connections_in"), "current")))
		n = (int)json_integer_value(json_object_get(json_object_get(r,
		    "connections_in"), "current"));
	json_decref(r);
	return (n);
}

/*
 * RFC 5321 4.1.1.10: after 221 to QUIT the server closes the channel, in
 * TLS as in plaintext, and the session is released (stats).
 */
Test(it_tls, quit_closes_tls_session, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c;
	char		 err[512];
	int		 i, n = -1;

	cr_assert((c = harness_session_ehlo(h, 0)) != NULL, "%s",
	    harness_err(h));
	cr_assert(smtpc_starttls(c, h->ca_path, "localhost") == 0, "%s",
	    smtpc_error(c));
	cr_assert(smtpc_ehlo(c, "client.test") == 250, "%s", smtpc_last(c));
	HARNESS_CMD(c, "QUIT", "221 2.0.0");
	cr_assert(smtpc_is_closed(c, 10000),
	    "STARTTLS session still open 10 s after 221 to QUIT");
	smtpc_close(c);

	c = smtpc_connect_tls("127.0.0.1", harness_port(h, 1), h->ca_path,
	    "localhost", err, sizeof(err));
	cr_assert(c != NULL, "%s", err);
	HARNESS_EXPECT(c, "220", "greeting");
	HARNESS_CMD(c, "QUIT", "221 2.0.0");
	cr_assert(smtpc_is_closed(c, 10000),
	    "implicit-TLS session still open 10 s after 221 to QUIT");
	smtpc_close(c);

	for (i = 0; i < 100; i++) {
		if ((n = it_current_connections(h)) == 0)
			break;
		usleep(100000);
	}
	cr_assert(n == 0, "connections_in.current is %d 10 s after both "
	    "sessions ended (%s)", n, harness_err(h));
	harness_free(h);
}
