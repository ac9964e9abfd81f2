/*
 * it_auth.c: black-box tests of SMTP AUTH and relay policy (SPEC section
 * 3; SECURITY-CASES 1.4 and 1.7).
 *
 * Users are made with "posternd --hash-password" by the harness.  Most
 * tests use a loopback listener, where AUTH is offered without TLS; the
 * rules for non-loopback clients (no AUTH before TLS, no relay without
 * AUTH) are tested inside a private network namespace of the test process
 * holding only lo with 192.0.2.1/32, so nothing leaves the machine; those
 * tests are skipped where unshare(CLONE_NEWNET) is not permitted.
 */
#include "compat.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/harness.h"

#define IT_TIMEOUT	120

static const char *const it_rcpt[] = { "b@ok.example" };

/*
 * Listener 0: 127.0.0.1 plaintext auth "optional"; 1: auth "none";
 * 2: auth "required".  Users: u/secret (any domain), r/restricted
 * (mine.example only), p/x (a one-character password).
 */
static struct harness *
it_start(void)
{
	struct harness	*h;

	cr_assert((h = harness_new()) != NULL);
	cr_assert(harness_listen(h, NULL, "none", "optional") == 0, "%s",
	    harness_err(h));
	cr_assert(harness_listen(h, NULL, "none", "none") == 1, "%s",
	    harness_err(h));
	cr_assert(harness_listen(h, NULL, "none", "required") == 2, "%s",
	    harness_err(h));
	cr_assert(harness_add_user(h, "u", "secret", NULL) == 0, "%s",
	    harness_err(h));
	cr_assert(harness_add_user(h, "r", "restricted", "mine.example") == 0,
	    "%s", harness_err(h));
	cr_assert(harness_add_user(h, "p", "x", NULL) == 0, "%s",
	    harness_err(h));
	HARNESS_START(h);
	return (h);
}

static struct smtpc *
it_ehlo(struct harness *h, int idx)
{
	struct smtpc	*c;

	cr_assert((c = harness_session_ehlo(h, idx)) != NULL, "%s",
	    harness_err(h));
	return (c);
}

/* AUTH PLAIN with a raw (pre-base64) blob of len bytes. */
static void
it_plain_raw(struct smtpc *c, const char *blob, size_t len,
    const char *want, const char *what)
{
	char	b64[512], line[600];

	cr_assert(smtpc_b64(blob, len, b64, sizeof(b64)) == 0);
	snprintf(line, sizeof(line), "AUTH PLAIN %s", b64);
	cr_assert(smtpc_cmd_expect(c, line, want), "%s: got \"%s\", want %s",
	    what, smtpc_last(c), want);
}

Test(it_auth, plain_success, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c = it_ehlo(h, 0);
	const char	*mech;
	char		 qid[9], b64[128], re[64];

	mech = smtpc_ext_param(c, "AUTH");
	cr_assert(mech != NULL && strstr(mech, "PLAIN") != NULL &&
	    strstr(mech, "LOGIN") != NULL,
	    "loopback auth=optional listener must offer AUTH PLAIN LOGIN: %s",
	    smtpc_last(c));
	cr_assert(smtpc_auth_plain(c, NULL, "u", "secret") == 235, "%s",
	    smtpc_last(c));
	cr_assert(strncmp(smtpc_last(c), "235 2.7.0", 9) == 0, "%s",
	    smtpc_last(c));
	cr_assert(smtpc_submit(c, "a@ok.example", it_rcpt, 1,
	    "From: a@ok.example\r\n\r\nx\r\n", qid) == 250, "%s",
	    smtpc_last(c));
	snprintf(re, sizeof(re), "%s: client=.*sasl_username=u", qid);
	cr_assert(harness_log_wait(h, re, 10), "want /%s/:\n%s", re,
	    harness_log_tail(h, 20));
	/* No password and no AUTH blob in the log. */
	smtpc_b64("\0u\0secret", 9, b64, sizeof(b64));
	cr_assert(!harness_log_grep(h, "secret"), "password logged");
	cr_assert(!harness_log_grep(h, b64), "AUTH blob logged");
	/* After success, AUTH again is out of sequence (IN-55). */
	HARNESS_CMD(c, "AUTH PLAIN AHUAc2VjcmV0", "503 5.5.1");
	smtpc_close(c);
	harness_free(h);
}

Test(it_auth, login_success, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c = it_ehlo(h, 0);

	cr_assert(smtpc_auth_login(c, "u", "secret") == 235, "%s",
	    smtpc_last(c));
	cr_assert(strncmp(smtpc_last(c), "235 2.7.0", 9) == 0, "%s",
	    smtpc_last(c));
	smtpc_close(c);
	/* IN-52: a one-character password works. */
	c = it_ehlo(h, 0);
	cr_assert(smtpc_auth_login(c, "p", "x") == 235, "%s", smtpc_last(c));
	smtpc_close(c);
	harness_free(h);
}

Test(it_auth, wrong_password, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c = it_ehlo(h, 0);

	cr_assert(smtpc_auth_plain(c, NULL, "u", "wrong") == 535, "%s",
	    smtpc_last(c));
	cr_assert(strncmp(smtpc_last(c), "535 5.7.8", 9) == 0, "%s",
	    smtpc_last(c));
	/* Unknown user: the same reply. */
	cr_assert(smtpc_auth_login(c, "nobody", "secret") == 535, "%s",
	    smtpc_last(c));
	cr_assert(strncmp(smtpc_last(c), "535 5.7.8", 9) == 0, "%s",
	    smtpc_last(c));
	/* Below the limit the session goes on. */
	cr_assert(smtpc_auth_plain(c, NULL, "u", "secret") == 235, "%s",
	    smtpc_last(c));
	cr_assert(!harness_log_grep(h, "wrong"), "password logged");
	smtpc_close(c);
	harness_free(h);
}

/* IN-56: the third failure gets 535, then 421 4.7.0 and the close. */
Test(it_auth, lockout_after_three_failures, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c = it_ehlo(h, 0);
	int		 i;

	for (i = 0; i < 3; i++) {
		cr_assert(smtpc_auth_plain(c, NULL, "u", "bad") == 535,
		    "failure %d: %s", i + 1, smtpc_last(c));
		cr_assert(strncmp(smtpc_last(c), "535 5.7.8", 9) == 0,
		    "failure %d: %s", i + 1, smtpc_last(c));
	}
	HARNESS_EXPECT(c, "421 4.7.0", "after the third failure");
	cr_assert(smtpc_is_closed(c, 15000), "open after 421");
	smtpc_close(c);
	cr_assert(harness_still_serves(h, 0), "%s", harness_err(h));
	harness_free(h);
}

/* IN-51: a user must never act as another user. */
Test(it_auth, authzid_rules, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c;

	c = it_ehlo(h, 0);
	it_plain_raw(c, "admin\0u\0secret", 14, "535 5.7.8",
	    "authzid of another user");
	smtpc_close(c);
	c = it_ehlo(h, 0);
	it_plain_raw(c, "u\0u\0secret", 10, "235 2.7.0", "authzid = authcid");
	smtpc_close(c);
	c = it_ehlo(h, 0);
	it_plain_raw(c, "\0u\0secret", 9, "235 2.7.0", "empty authzid");
	smtpc_close(c);
	harness_free(h);
}

/* IN-52, IN-53: malformed PLAIN responses; one session each. */
Test(it_auth, malformed_responses, .timeout = IT_TIMEOUT)
{
	static const struct {
		const char	*what;
		const char	*blob;
		size_t		 len;
	} bad[] = {
		{ "trailing field", "\0u\0secret\0x", 11 },
		{ "empty user", "\0\0secret", 8 },
		{ "empty password", "\0u\0", 3 },
		{ "no NULs", "u", 1 },
		{ "CR in user", "\0u\rx\0secret", 11 },
	};
	struct harness	*h = it_start();
	struct smtpc	*c;
	size_t		 i;

	for (i = 0; i < nitems(bad); i++) {
		c = it_ehlo(h, 0);
		it_plain_raw(c, bad[i].blob, bad[i].len,
		    "501 5.5.2|535 5.7.8", bad[i].what);
		smtpc_close(c);
	}
	c = it_ehlo(h, 0);
	HARNESS_CMD(c, "AUTH PLAIN ###", "501 5.5.2");
	smtpc_close(c);
	c = it_ehlo(h, 0);
	HARNESS_CMD(c, "AUTH PLAIN", "334");
	HARNESS_CMD(c, "*", "501");
	/* Cancelled, not authenticated: still allowed to try again. */
	cr_assert(smtpc_auth_plain(c, NULL, "u", "secret") == 235, "%s",
	    smtpc_last(c));
	smtpc_close(c);
	harness_free(h);
}

/* IN-55 */
Test(it_auth, sequence_and_mechanism_errors, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c;

	cr_assert((c = harness_session(h, 0)) != NULL, "%s", harness_err(h));
	HARNESS_CMD(c, "AUTH PLAIN AHUAc2VjcmV0", "503 5.5.1");
	cr_assert(smtpc_ehlo(c, "client.test") == 250, "%s", smtpc_last(c));
	HARNESS_CMD(c, "AUTH CRAM-MD5", "504 5.5.4");
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	HARNESS_CMD(c, "AUTH PLAIN AHUAc2VjcmV0", "503 5.5.1");
	smtpc_close(c);

	/* An auth="none" listener neither offers nor accepts AUTH. */
	c = it_ehlo(h, 1);
	cr_assert(!smtpc_has_ext(c, "AUTH"), "%s", smtpc_last(c));
	HARNESS_CMD(c, "AUTH PLAIN AHUAc2VjcmV0", "503 5.5.1");
	smtpc_close(c);
	harness_free(h);
}

/* IN-31: auth="required" relays for authenticated users only. */
Test(it_auth, required_listener_refuses_loopback, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start();
	struct smtpc	*c = it_ehlo(h, 2);

	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "530 5.7.0");
	cr_assert(smtpc_auth_plain(c, NULL, "u", "secret") == 235, "%s",
	    smtpc_last(c));
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	smtpc_close(c);
	harness_free(h);
}

/* IN-37: MAIL FROM domains of a restricted user. */
Test(it_auth, restricted_sender_mail_from, .timeout = IT_TIMEOUT)
{
	static const char *const refused[] = {
		"MAIL FROM:<a@other.example>",
		"MAIL FROM:<a@evilmine.example>",
		"MAIL FROM:<a@mine.example.evil.example>",
	};
	struct harness	*h = it_start();
	struct smtpc	*c = it_ehlo(h, 0);
	size_t		 i;

	cr_assert(smtpc_auth_plain(c, NULL, "r", "restricted") == 235, "%s",
	    smtpc_last(c));
	for (i = 0; i < nitems(refused); i++)
		HARNESS_CMD(c, refused[i], "553 5.7.1");
	HARNESS_CMD(c, "MAIL FROM:<a@MINE.example>", "250 2.1.0");
	smtpc_close(c);
	harness_free(h);
}

/* IN-37: the From: header of a restricted user, after the final dot. */
Test(it_auth, restricted_sender_from_header, .timeout = IT_TIMEOUT)
{
	static const char *const refused[] = {
		"From: b@other.example\r\n\r\nx\r\n",
		"From: \"a@mine.example\" <b@other.example>\r\n\r\nx\r\n",
		"From: a@mine.example, b@other.example\r\n\r\nx\r\n",
	};
	struct harness	*h = it_start();
	struct smtpc	*c = it_ehlo(h, 0);
	char		 qid[9];
	size_t		 i;
	int		 n;

	cr_assert(smtpc_auth_plain(c, NULL, "r", "restricted") == 235, "%s",
	    smtpc_last(c));
	for (i = 0; i < nitems(refused); i++) {
		cr_assert(smtpc_submit(c, "a@mine.example", it_rcpt, 1,
		    refused[i], qid) == 550, "%s: got %s", refused[i],
		    smtpc_last(c));
		cr_assert(strncmp(smtpc_last(c), "550 5.7.1", 9) == 0,
		    "%s: got %s", refused[i], smtpc_last(c));
	}
	n = harness_queue_count(h);
	cr_assert(n == 0, "queue: %d, want 0 (%s)", n, harness_err(h));
	/* The display name is not the address: this one is fine. */
	cr_assert(smtpc_submit(c, "a@mine.example", it_rcpt, 1,
	    "From: \"b@other.example\" <a@mine.example>\r\n\r\nx\r\n", qid) ==
	    250, "%s", smtpc_last(c));
	smtpc_close(c);
	harness_free(h);
}

/*
 * Move this test process into a network namespace of its own with lo up
 * and 192.0.2.1/32 on it; skip when that is not allowed.
 */
static void
it_enter_netns(void)
{
	if (unshare(CLONE_NEWNET) == -1)
		cr_skip_test("unshare(CLONE_NEWNET): %s", strerror(errno));
	cr_assert(system("ip link set lo up && "
	    "ip addr add 192.0.2.1/32 dev lo") == 0, "ip failed");
}

/*
 * Listener 0: 192.0.2.1 starttls auth "optional", default relay_networks;
 * the client connects from 192.0.2.1, which is neither loopback nor in
 * 127.0.0.0/8.
 */
static struct harness *
it_start_outside(void)
{
	struct harness	*h;

	it_enter_netns();
	cr_assert((h = harness_new()) != NULL);
	cr_assert(harness_listen(h, "192.0.2.1", "starttls", "optional") ==
	    0, "%s", harness_err(h));
	cr_assert(harness_add_user(h, "u", "secret", NULL) == 0, "%s",
	    harness_err(h));
	HARNESS_START(h);
	return (h);
}

static struct smtpc *
it_outside_session(struct harness *h)
{
	struct smtpc	*c;
	char		 err[256];

	c = smtpc_connect_from("192.0.2.1", "192.0.2.1", harness_port(h, 0),
	    err, sizeof(err));
	cr_assert(c != NULL, "%s", err);
	HARNESS_EXPECT(c, "220", "greeting");
	cr_assert(smtpc_ehlo(c, "outside.test") == 250, "%s", smtpc_last(c));
	return (c);
}

/* IN-50 */
Test(it_auth, no_auth_before_tls_off_loopback, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start_outside();
	struct smtpc	*c = it_outside_session(h);

	cr_assert(!smtpc_has_ext(c, "AUTH"),
	    "AUTH offered in plaintext to a non-loopback client: %s",
	    smtpc_last(c));
	cr_assert(smtpc_has_ext(c, "STARTTLS"), "%s", smtpc_last(c));
	HARNESS_CMD(c, "AUTH PLAIN AHUAc2VjcmV0", "538 5.7.11|503 5.5.1");
	cr_assert(!harness_log_grep(h, "AHUAc2VjcmV0"), "AUTH blob logged");
	/* After STARTTLS it is offered and works. */
	cr_assert(smtpc_starttls(c, h->ca_path, "localhost") == 0, "%s",
	    smtpc_error(c));
	cr_assert(smtpc_ehlo(c, "outside.test") == 250, "%s", smtpc_last(c));
	cr_assert(smtpc_has_ext(c, "AUTH"), "%s", smtpc_last(c));
	cr_assert(smtpc_auth_plain(c, NULL, "u", "secret") == 235, "%s",
	    smtpc_last(c));
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "250 2.1.0");
	smtpc_close(c);
	harness_free(h);
}

/* IN-30 from outside relay_networks (the default 127/8 and ::1). */
Test(it_auth, relay_refused_off_loopback, .timeout = IT_TIMEOUT)
{
	struct harness	*h = it_start_outside();
	struct smtpc	*c = it_outside_session(h);
	int		 n;

	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "530 5.7.0");
	HARNESS_CMD(c, "RCPT TO:<b@ok.example>", "503 5.5.1");
	cr_assert(smtpc_starttls(c, h->ca_path, "localhost") == 0, "%s",
	    smtpc_error(c));
	cr_assert(smtpc_ehlo(c, "outside.test") == 250, "%s", smtpc_last(c));
	/* TLS alone is not enough. */
	HARNESS_CMD(c, "MAIL FROM:<a@ok.example>", "530 5.7.0");
	smtpc_close(c);
	n = harness_queue_count(h);
	cr_assert(n == 0, "queue: %d, want 0 (%s)", n, harness_err(h));
	harness_free(h);
}
