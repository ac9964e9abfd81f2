/*
 * test_auth.c: users-file parsing and its FILE:LINE errors, file-mode
 * refusal, sender-domain restriction, SASL PLAIN/LOGIN decoding
 * (SECURITY-CASES IN-51..IN-54), base64, password hashing and checks, and a
 * check run through the worker pool.
 */
#include "compat.h"

#include <sys/stat.h>

#include <crypt.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "auth.h"
#include "worker.h"

/* All of these are crypt("secret", ...). */
#define H_Y	"$y$j9T$edD0P7M1dBmw8fXmlWDE./$TIHoWk0RfNgzI6oFIQx6kfYh3wFybfaRjND0Z1IBqIC"
#define H_6	"$6$uSzzttGEnny8a0Wq$fWlnbJMJb0Oy.X8F0Kyp5Qx7mRj7JO0dVsxTlOZ1/mEQHYs7kIA.7mGfG9/wm3xvPQeSCKxxvrQ9VpzD0vVr91"
#define H_5	"$5$ICpup.DWYZpicqY7$9KP2/H.o3yzuHI0TkKA4DAOYJz.Q4Y3/AHhNAvbsUA7"
#define H_2B	"$2b$05$zFDH8gmzxCicgWETtTthXuuhj6JeMbz69HQcnnzkst9aUCwcELlMC"

static char	ta_dir[] = "/tmp/test_auth.XXXXXX";
static int	ta_nfile;

/* Write content to a fresh file of the given mode; returns its path. */
static char *
ta_file(const char *content, mode_t mode)
{
	char	*path;
	int	 fd;

	if (ta_dir[sizeof(ta_dir) - 7] == 'X')
		cr_assert_not_null(mkdtemp(ta_dir));
	cr_assert(asprintf(&path, "%s/users%d", ta_dir, ta_nfile++) > 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, content, strlen(content)),
	    (ssize_t)strlen(content));
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
	return (path);
}

static struct auth_db *
ta_load(const char *content)
{
	struct auth_db	*db;
	char		*path, err[512];

	path = ta_file(content, 0640);
	db = auth_db_load(path, err, sizeof(err));
	cr_assert_not_null(db, "load failed: %s", err);
	free(path);
	return (db);
}

Test(auth, users_file_valid)
{
	struct auth_db	*db;

	db = ta_load(
	    "# postern users\n"
	    "\n"
	    "   \t\n"
	    "  # indented comment\n"
	    "alice:" H_Y "\n"
	    "bob:" H_6 ":example.com,Example.ORG\r\n"
	    "carol@example.net:" H_5 ":ex-ample.net , b.example.net  \n"
	    "erin:$gy$j9T$.AsZDvBw1BGQ2EgvjCfQ3/$WCfESuc9IXNP8X7zTHIs0ZcIT8GdN3q7"
	    ".jHmNiN1Os1\n"
	    "frank:$7$CU..../....9DQP5YWHey9Xm4fP1XMAZ/$sOt8uRyh08ab4JBm0Rpd40bf3"
	    "yLV/SspSL6h24rKGzD\n"
	    "dave:" H_2B);	/* no final newline */
	cr_assert_eq(auth_db_count(db), 6, "got %zu users, want 6",
	    auth_db_count(db));
	cr_assert(auth_db_has_user(db, "alice"));
	cr_assert(auth_db_has_user(db, "carol@example.net"));
	cr_assert(auth_db_has_user(db, "dave"));
	cr_assert(!auth_db_has_user(db, "Alice"), "user names are exact");
	cr_assert(!auth_db_has_user(db, "eve"));
	cr_assert(!auth_db_has_user(db, ""));
	cr_assert(!auth_db_has_user(db, NULL));
	cr_assert(!auth_db_has_user(NULL, "alice"));
	cr_assert_eq(auth_db_count(NULL), 0);
	auth_db_free(db);
	auth_db_free(NULL);
}

Test(auth, domain_restriction)
{
	static const struct {
		const char	*user, *domain;
		bool		 want;
	} cases[] = {
		{ "alice", "anything.example", true },	/* unrestricted */
		{ "alice", NULL, true },
		{ "bob", "example.com", true },
		{ "bob", "EXAMPLE.com", true },		/* case-insensitive */
		{ "bob", "example.org", true },
		{ "bob", "sub.example.com", false },	/* no subdomains */
		{ "bob", "example.com.evil", false },
		{ "bob", "xample.com", false },
		{ "bob", "", false },
		{ "bob", NULL, false },
		{ "carol", "ex-ample.net", true },
		{ "carol", "b.example.net", true },
		{ "carol", "example.net", false },
		{ "nobody", "example.com", false },	/* unknown user */
	};
	struct auth_db	*db;
	size_t		 i;
	bool		 got;

	db = ta_load(
	    "alice:" H_Y "\n"
	    "bob:" H_6 ":example.com,Example.ORG\n"
	    "carol:" H_5 ":ex-ample.net , b.example.net\n");
	cr_assert(!auth_db_user_is_restricted(db, "alice"));
	cr_assert(auth_db_user_is_restricted(db, "bob"));
	cr_assert(auth_db_user_is_restricted(db, "carol"));
	cr_assert(!auth_db_user_is_restricted(db, "nobody"));
	for (i = 0; i < nitems(cases); i++) {
		got = auth_db_user_may_send_from(db, cases[i].user,
		    cases[i].domain);
		cr_expect_eq(got, cases[i].want, "%s from %s: got %d, want %d",
		    cases[i].user, cases[i].domain ? cases[i].domain : "(null)",
		    got, cases[i].want);
	}
	auth_db_free(db);
}

Test(auth, users_file_errors)
{
	static const struct {
		const char	*content;
		int		 line;
		const char	*want;
	} cases[] = {
		{ "alice\n", 1, "missing ':'" },
		{ "# c\n\nalice " H_Y "\n", 3, "missing ':'" },
		{ ":" H_Y "\n", 1, "empty user name" },
		{ "al ice:" H_Y "\n", 1, "space, control or non-ASCII" },
		{ " alice:" H_Y "\n", 1, "space, control or non-ASCII" },
		{ "al\tice:" H_Y "\n", 1, "space, control or non-ASCII" },
		{ "al\x01ice:" H_Y "\n", 1, "space, control or non-ASCII" },
		{ "al\xc3\xa9ice:" H_Y "\n", 1, "space, control or non-ASCII" },
		{ "alice:\n", 1, "not a crypt(3) hash" },
		{ "alice:secret\n", 1, "not a crypt(3) hash" },
		{ "alice:$1$abcdefgh$abcdefghijklmnopqrstuv\n", 1,
		    "not a crypt(3) hash" },		/* MD5-crypt: refused */
		{ "alice:$6$saltsalt$\n", 1, "not a crypt(3) hash" },
		{ "alice:!" H_6 "\n", 1, "not a crypt(3) hash" },
		{ "alice:" H_6 " x\n", 1, "not a crypt(3) hash" },
		{ "alice:$y$j9T$edD0P7M1dBmw8fXmlWDE./$TIHoWk0RfNgzI6oFIQx6kf"
		    "Yh3wFybfaRjND0Z1IBqI*\n", 1, "not a crypt(3) hash" },
		{ "alice:" H_Y "\nbob:" H_6 "\nalice:" H_5 "\n", 3,
		    "duplicate user alice (first on line 1)" },
		{ "alice:" H_Y ":\n", 1, "empty domain list" },
		{ "alice:" H_Y ":a.example,,b.example\n", 1, "invalid domain" },
		{ "alice:" H_Y ":-a.example\n", 1, "invalid domain \"-a.example\"" },
		{ "alice:" H_Y ":a-.example\n", 1, "invalid domain" },
		{ "alice:" H_Y ":a..example\n", 1, "invalid domain" },
		{ "alice:" H_Y ":example.com.\n", 1, "invalid domain" },
		{ "alice:" H_Y ":exa_mple.com\n", 1, "invalid domain" },
		{ "alice:" H_Y ":exa mple.com\n", 1, "invalid domain" },
		{ "alice:" H_Y ":a.example:b.example\n", 1, "invalid domain" },
		{ "alice:" H_Y ":"
		    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		    ".example\n", 1, "invalid domain" },	/* 64-octet label */
		/* The first problem in the file is reported. */
		{ "alice:" H_Y "\nalice:" H_Y "\nbob\n", 2, "duplicate user" },
		{ "alice:" H_Y "\nbob\nalice:" H_Y "\n", 2, "missing ':'" },
	};
	char	*path, err[512], want[1024];
	size_t	 i;

	for (i = 0; i < nitems(cases); i++) {
		path = ta_file(cases[i].content, 0600);
		err[0] = '\0';
		cr_expect_null(auth_db_load(path, err, sizeof(err)),
		    "case %zu loaded", i);
		snprintf(want, sizeof(want), "%s:%d: ", path, cases[i].line);
		cr_expect(strncmp(err, want, strlen(want)) == 0,
		    "case %zu: got \"%s\", want prefix \"%s\"", i, err, want);
		cr_expect_not_null(strstr(err, cases[i].want),
		    "case %zu: got \"%s\", want \"%s\" in it", i, err,
		    cases[i].want);
		free(path);
	}
}

Test(auth, users_file_long_name_and_line)
{
	struct auth_db	*db;
	char		 content[20000], *path, err[512];

	/* A 256-character name (AUTH_USER_MAX - 1 is the limit). */
	memset(content, 'a', 256);
	snprintf(content + 256, sizeof(content) - 256, ":%s\n", H_Y);
	path = ta_file(content, 0600);
	cr_assert_null(auth_db_load(path, err, sizeof(err)));
	cr_assert_not_null(strstr(err, ":1: user name longer"), "got %s", err);
	free(path);

	memset(content, 'a', 255);
	snprintf(content + 255, sizeof(content) - 255, ":%s\n", H_Y);
	path = ta_file(content, 0600);
	db = auth_db_load(path, err, sizeof(err));
	cr_assert_not_null(db, "255-character name refused: %s", err);
	auth_db_free(db);
	free(path);

	memset(content, '#', 10000);
	strcpy(content + 10000, "\n");
	path = ta_file(content, 0600);
	cr_assert_null(auth_db_load(path, err, sizeof(err)));
	cr_assert_not_null(strstr(err, ":1: line longer"), "got %s", err);
	free(path);
}

Test(auth, users_file_nul_byte_refused)
{
	char	*path, err[512];
	int	 fd;

	cr_assert_not_null(path = ta_file("", 0600));
	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(fd, "ok:" H_Y "\nal\0ice:" H_Y "\n",
	    sizeof("ok:" H_Y "\nal\0ice:" H_Y "\n") - 1),
	    (ssize_t)sizeof("ok:" H_Y "\nal\0ice:" H_Y "\n") - 1);
	close(fd);
	cr_assert_null(auth_db_load(path, err, sizeof(err)));
	cr_assert_not_null(strstr(err, ":2: NUL byte"), "got %s", err);
	free(path);
}

Test(auth, users_file_permissions)
{
	static const struct {
		mode_t	 mode;
		bool	 ok;
	} cases[] = {
		{ 0600, true }, { 0640, true }, { 0400, true }, { 0440, true },
		{ 0644, false }, { 0604, false }, { 0602, false },
		{ 0666, false }, { 0601, true },	/* x bit only: harmless */
	};
	struct auth_db	*db;
	char		*path, err[512];
	size_t		 i;

	for (i = 0; i < nitems(cases); i++) {
		path = ta_file("alice:" H_Y "\n", cases[i].mode);
		err[0] = '\0';
		db = auth_db_load(path, err, sizeof(err));
		cr_expect_eq(db != NULL, cases[i].ok, "mode %04o: got %s, "
		    "want %s (%s)", (unsigned)cases[i].mode,
		    db ? "loaded" : "refused", cases[i].ok ? "loaded" :
		    "refused", err);
		if (!cases[i].ok)
			cr_expect_not_null(strstr(err, "by others"),
			    "mode %04o: got \"%s\"", (unsigned)cases[i].mode,
			    err);
		auth_db_free(db);
		free(path);
	}
}

Test(auth, users_file_missing_or_not_regular)
{
	char	err[512];

	cr_assert_null(auth_db_load("/nonexistent/users", err, sizeof(err)));
	cr_assert_str_eq(err, "/nonexistent/users: No such file or directory");
	cr_assert_null(auth_db_load("/tmp", err, sizeof(err)));
	cr_assert_not_null(strstr(err, "not a regular file"), "got %s", err);
}

Test(auth, empty_users_file)
{
	struct auth_db		*db;
	struct auth_check	*c;

	db = ta_load("# nobody yet\n");
	cr_assert_eq(auth_db_count(db), 0);
	c = auth_check_new(db, "alice", "secret");
	auth_check_run(c);
	cr_assert(!auth_check_ok(c));
	auth_check_free(c);
	auth_db_free(db);
}

/* ---- SASL ---- */

/* base64 of raw bytes, for building the tables. */
static char *
ta_b64(const char *raw, size_t len)
{
	char	*out;
	size_t	 cap = (len + 2) / 3 * 4 + 1;

	out = malloc(cap);
	cr_assert_eq(auth_b64_encode(raw, len, out, cap), 0);
	return (out);
}

#define RAW(s)	s, sizeof(s) - 1

static const char *
ta_rc_name(enum auth_decode rc)
{
	switch (rc) {
	case AUTH_DECODE_OK:			return ("OK");
	case AUTH_DECODE_BAD_BASE64:		return ("BAD_BASE64");
	case AUTH_DECODE_MALFORMED:		return ("MALFORMED");
	case AUTH_DECODE_AUTHZID_MISMATCH:	return ("AUTHZID_MISMATCH");
	case AUTH_DECODE_CANCELLED:		return ("CANCELLED");
	}
	return ("?");
}

Test(auth, sasl_plain_decode_raw_table)
{
	static const struct {
		const char		*raw;
		size_t			 len;
		enum auth_decode	 want;
		const char		*user, *pass;
	} cases[] = {
		/* IN-51 */
		{ RAW("admin\0user\0pass"), AUTH_DECODE_AUTHZID_MISMATCH, NULL, NULL },
		{ RAW("user\0user\0pass"), AUTH_DECODE_OK, "user", "pass" },
		{ RAW("\0user\0pass"), AUTH_DECODE_OK, "user", "pass" },
		{ RAW("User\0user\0pass"), AUTH_DECODE_AUTHZID_MISMATCH, NULL, NULL },
		{ RAW("user \0user\0pass"), AUTH_DECODE_AUTHZID_MISMATCH, NULL, NULL },
		/* IN-52 */
		{ RAW("\0user\0pass\0x"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("\0user\0pass\0"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("\0\0pass"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("\0user\0"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("user"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("\0user"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("\0us\rer\0pass"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("\0user\0pa\nss"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("\0user\0pass\r\n"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("a\rb\0user\0pass"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW("\0\0"), AUTH_DECODE_MALFORMED, NULL, NULL },
		{ RAW(""), AUTH_DECODE_MALFORMED, NULL, NULL },
		/* A one-character password works (OpenSMTPD off-by-one). */
		{ RAW("\0user\0p"), AUTH_DECODE_OK, "user", "p" },
		{ RAW("\0u\0p"), AUTH_DECODE_OK, "u", "p" },
		/* Bytes other than NUL/CR/LF pass through untouched. */
		{ RAW("\0us\xc3\xa9r\0p\x01ss w\xff"), AUTH_DECODE_OK,
		    "us\xc3\xa9r", "p\x01ss w\xff" },
	};
	char			 user[AUTH_USER_MAX], pass[AUTH_PASS_MAX];
	char			*b64;
	enum auth_decode	 got;
	size_t			 i;

	for (i = 0; i < nitems(cases); i++) {
		b64 = ta_b64(cases[i].raw, cases[i].len);
		memset(user, 'X', sizeof(user));
		memset(pass, 'X', sizeof(pass));
		got = auth_sasl_plain_decode(b64, strlen(b64), user,
		    sizeof(user), pass, sizeof(pass));
		cr_expect_eq(got, cases[i].want, "case %zu (%s): got %s, "
		    "want %s", i, b64, ta_rc_name(got),
		    ta_rc_name(cases[i].want));
		if (cases[i].want == AUTH_DECODE_OK) {
			cr_expect_str_eq(user, cases[i].user, "case %zu user",
			    i);
			cr_expect_str_eq(pass, cases[i].pass, "case %zu pass",
			    i);
		} else {
			cr_expect_str_eq(user, "", "case %zu: user left set",
			    i);
			cr_expect_str_eq(pass, "", "case %zu: pass left set",
			    i);
		}
		free(b64);
	}
}

Test(auth, sasl_plain_decode_text_table)
{
	static const struct {
		const char		*b64;
		enum auth_decode	 want;
	} cases[] = {
		/* IN-53 */
		{ "###", AUTH_DECODE_BAD_BASE64 },
		{ "####", AUTH_DECODE_BAD_BASE64 },
		{ "*", AUTH_DECODE_CANCELLED },
		{ "=", AUTH_DECODE_MALFORMED },		/* empty response */
		{ "", AUTH_DECODE_MALFORMED },
		{ "AHVzZXIAcGFzcw==", AUTH_DECODE_OK },	/* \0user\0pass */
		{ "AHVzZXIAcGFzcw", AUTH_DECODE_BAD_BASE64 },	/* no padding */
		{ "AHVzZXIAcGFzcw=", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIAcGFzcw===", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIAcGFzcw=x", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIAcGFz=w==", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIAcGFzcx==", AUTH_DECODE_BAD_BASE64 },	/* pad bits */
		{ " AHVzZXIAcGFzcw==", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIAcGFzcw== ", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIA cGFzcw==", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIAcGFzcw==\r\n", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIA\ncGFzcw==", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIAcGFzcw==AAAA", AUTH_DECODE_BAD_BASE64 },
		{ "AHVzZXIAcGFzcw-_", AUTH_DECODE_BAD_BASE64 },	/* base64url */
		{ "**", AUTH_DECODE_BAD_BASE64 },
		{ "==", AUTH_DECODE_BAD_BASE64 },
		{ "====", AUTH_DECODE_BAD_BASE64 },
		{ "A===", AUTH_DECODE_BAD_BASE64 },
	};
	char			 user[AUTH_USER_MAX], pass[AUTH_PASS_MAX];
	enum auth_decode	 got;
	size_t			 i;

	for (i = 0; i < nitems(cases); i++) {
		got = auth_sasl_plain_decode(cases[i].b64,
		    strlen(cases[i].b64), user, sizeof(user), pass,
		    sizeof(pass));
		cr_expect_eq(got, cases[i].want, "case %zu \"%s\": got %s, "
		    "want %s", i, cases[i].b64, ta_rc_name(got),
		    ta_rc_name(cases[i].want));
	}
	/* A NUL inside the line (len counts it) is not base64. */
	got = auth_sasl_plain_decode("AHVz\0XIA", 8, user, sizeof(user), pass,
	    sizeof(pass));
	cr_expect_eq(got, AUTH_DECODE_BAD_BASE64, "embedded NUL: got %s",
	    ta_rc_name(got));
}

Test(auth, sasl_plain_decode_field_bounds)
{
	char			 raw[2000], *b64, user[8], pass[8];
	enum auth_decode	 got;

	/* authcid of 7 fits user[8]; 8 does not. */
	memcpy(raw, "\0abcdefg\0pw", 11);
	b64 = ta_b64(raw, 11);
	got = auth_sasl_plain_decode(b64, strlen(b64), user, sizeof(user),
	    pass, sizeof(pass));
	cr_expect_eq(got, AUTH_DECODE_OK, "got %s", ta_rc_name(got));
	free(b64);
	memcpy(raw, "\0abcdefgh\0pw", 12);
	b64 = ta_b64(raw, 12);
	got = auth_sasl_plain_decode(b64, strlen(b64), user, sizeof(user),
	    pass, sizeof(pass));
	cr_expect_eq(got, AUTH_DECODE_MALFORMED, "got %s", ta_rc_name(got));
	free(b64);
	memcpy(raw, "\0u\0abcdefgh", 11);
	b64 = ta_b64(raw, 11);
	got = auth_sasl_plain_decode(b64, strlen(b64), user, sizeof(user),
	    pass, sizeof(pass));
	cr_expect_eq(got, AUTH_DECODE_MALFORMED, "got %s", ta_rc_name(got));
	free(b64);
}

Test(auth, sasl_login_decode_table)
{
	static const struct {
		const char		*raw;
		size_t			 len;
		enum auth_decode	 want;
	} cases[] = {
		{ RAW("alice"), AUTH_DECODE_OK },
		{ RAW("p"), AUTH_DECODE_OK },
		{ RAW("pass word"), AUTH_DECODE_OK },
		{ RAW(""), AUTH_DECODE_MALFORMED },
		{ RAW("al\0ice"), AUTH_DECODE_MALFORMED },
		{ RAW("alice\0"), AUTH_DECODE_MALFORMED },
		{ RAW("al\rice"), AUTH_DECODE_MALFORMED },
		{ RAW("alice\n"), AUTH_DECODE_MALFORMED },
	};
	char			 out[AUTH_PASS_MAX], *b64;
	enum auth_decode	 got;
	size_t			 i;

	for (i = 0; i < nitems(cases); i++) {
		b64 = ta_b64(cases[i].raw, cases[i].len);
		got = auth_sasl_login_decode(b64, strlen(b64), out,
		    sizeof(out));
		cr_expect_eq(got, cases[i].want, "case %zu (%s): got %s, "
		    "want %s", i, b64, ta_rc_name(got),
		    ta_rc_name(cases[i].want));
		if (got == AUTH_DECODE_OK)
			cr_expect(strlen(out) == cases[i].len &&
			    memcmp(out, cases[i].raw, cases[i].len) == 0,
			    "case %zu: got \"%s\"", i, out);
		else
			cr_expect_str_eq(out, "", "case %zu left output", i);
		free(b64);
	}
	cr_expect_eq(auth_sasl_login_decode("*", 1, out, sizeof(out)),
	    AUTH_DECODE_CANCELLED);
	cr_expect_eq(auth_sasl_login_decode("###", 3, out, sizeof(out)),
	    AUTH_DECODE_BAD_BASE64);
	cr_expect_eq(auth_sasl_login_decode("YWxpY2U", 7, out, sizeof(out)),
	    AUTH_DECODE_BAD_BASE64);
	cr_expect_eq(auth_sasl_login_decode("=", 1, out, sizeof(out)),
	    AUTH_DECODE_MALFORMED);
}

/* IN-54: a 12,288-octet response is accepted; longer ones are refused. */
Test(auth, sasl_login_decode_line_limit)
{
	char			*raw, *b64, *out;
	size_t			 rawlen = 12288 / 4 * 3;
	enum auth_decode	 got;

	raw = malloc(rawlen + 3);
	memset(raw, 'x', rawlen + 3);
	out = malloc(rawlen + 4);
	b64 = ta_b64(raw, rawlen);
	cr_assert_eq(strlen(b64), 12288);
	got = auth_sasl_login_decode(b64, strlen(b64), out, rawlen + 4);
	cr_expect_eq(got, AUTH_DECODE_OK, "12288 octets: got %s",
	    ta_rc_name(got));
	cr_expect_eq(strlen(out), rawlen);
	/* Into a small buffer the same data is malformed, not truncated. */
	got = auth_sasl_login_decode(b64, strlen(b64), out, 64);
	cr_expect_eq(got, AUTH_DECODE_MALFORMED, "small buffer: got %s",
	    ta_rc_name(got));
	free(b64);
	b64 = ta_b64(raw, rawlen + 3);
	got = auth_sasl_login_decode(b64, strlen(b64), out, rawlen + 4);
	cr_expect_eq(got, AUTH_DECODE_MALFORMED, "12292 octets: got %s",
	    ta_rc_name(got));
	free(b64);
	free(raw);
	free(out);
}

Test(auth, b64_encode_vectors)
{
	/* RFC 4648 section 10. */
	static const struct {
		const char	*in, *out;
	} cases[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
	};
	char	out[16], back[16];
	size_t	i;

	for (i = 0; i < nitems(cases); i++) {
		cr_expect_eq(auth_b64_encode(cases[i].in, strlen(cases[i].in),
		    out, sizeof(out)), 0);
		cr_expect_str_eq(out, cases[i].out, "\"%s\": got %s, want %s",
		    cases[i].in, out, cases[i].out);
		if (cases[i].in[0] != '\0') {
			cr_expect_eq(auth_sasl_login_decode(out, strlen(out),
			    back, sizeof(back)), AUTH_DECODE_OK);
			cr_expect_str_eq(back, cases[i].in);
		}
	}
	/* "Zm9vYmFy" needs 9 bytes. */
	cr_expect_eq(auth_b64_encode("foobar", 6, out, 9), 0);
	cr_expect_eq(auth_b64_encode("foobar", 6, out, 8), -1);
	cr_expect_eq(auth_b64_encode("\xff\xfe\xfd", 3, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "//79");
}

/* ---- hashing and checks ---- */

static bool
ta_check(const struct auth_db *db, const char *user, const char *pass)
{
	struct auth_check	*c;
	bool			 ok;

	c = auth_check_new(db, user, pass);
	cr_assert_not_null(c);
	auth_check_run(c);
	ok = auth_check_ok(c);
	auth_check_free(c);
	return (ok);
}

Test(auth, hash_password_round_trip, .timeout = 60)
{
	struct auth_db		*db;
	struct crypt_data	 cd;
	char			*yh, *setting, h6[CRYPT_OUTPUT_SIZE];
	char			 err[256], *content;

	yh = auth_hash_password("correct horse", err, sizeof(err));
	cr_assert_not_null(yh, "hash_password: %s", err);
	cr_assert(strncmp(yh, "$y$", 3) == 0, "got %s, want a $y$ hash", yh);
	memset(&cd, 0, sizeof(cd));
	setting = crypt_gensalt_ra("$6$", 0, NULL, 0);
	cr_assert_not_null(setting);
	strlcpy(h6, crypt_rn("p", setting, &cd, sizeof(cd)), sizeof(h6));
	free(setting);
	cr_assert(strncmp(h6, "$6$", 3) == 0);

	cr_assert(asprintf(&content, "yes:%s\nsha:%s\nfixed:%s\nbf:%s\n", yh,
	    h6, H_5, H_2B) > 0);
	db = ta_load(content);
	free(content);

	cr_expect(ta_check(db, "yes", "correct horse"));
	cr_expect(!ta_check(db, "yes", "correct horse "));
	cr_expect(!ta_check(db, "yes", "Correct horse"));
	cr_expect(!ta_check(db, "yes", ""));
	cr_expect(ta_check(db, "sha", "p"), "one-character password");
	cr_expect(!ta_check(db, "sha", "q"));
	cr_expect(ta_check(db, "fixed", "secret"));
	cr_expect(ta_check(db, "bf", "secret"));
	cr_expect(!ta_check(db, "bf", "secreT"));
	/* Unknown users fail, even with a password another user has. */
	cr_expect(!ta_check(db, "nobody", "correct horse"));
	cr_expect(!ta_check(db, "nobody", "secret"));
	cr_expect(!ta_check(db, "Yes", "correct horse"));
	cr_expect(!ta_check(NULL, "yes", "correct horse"));
	auth_db_free(db);
	free(yh);
}

Test(auth, hash_password_refuses_bad_input)
{
	char	 err[256], big[AUTH_PASS_MAX + 1], *h;

	cr_expect_null(auth_hash_password("", err, sizeof(err)));
	cr_expect_str_eq(err, "empty password");
	cr_expect_null(auth_hash_password("a\nb", err, sizeof(err)));
	cr_expect_null(auth_hash_password("ab\r", err, sizeof(err)));
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_expect_null(auth_hash_password(big, err, sizeof(err)));
	big[AUTH_PASS_MAX - 1] = '\0';
	h = auth_hash_password(big, err, sizeof(err));
	cr_expect_not_null(h, "511-byte password refused: %s", err);
	free(h);
}

/* Unknown users cost a real hash: within a loose factor of a known one. */
static double
ta_time_check(const struct auth_db *db, const char *user)
{
	struct timespec	 a, b;
	double		 best = 1e9, t;
	int		 i;

	for (i = 0; i < 3; i++) {
		clock_gettime(CLOCK_MONOTONIC, &a);
		(void)ta_check(db, user, "wrong password");
		clock_gettime(CLOCK_MONOTONIC, &b);
		t = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;
		if (t < best)
			best = t;
	}
	return (best);
}

Test(auth, unknown_user_costs_a_hash, .timeout = 60)
{
	struct auth_db	*db;
	double		 known, unknown;

	db = ta_load("alice:" H_Y "\nbob:" H_Y "\n");
	known = ta_time_check(db, "alice");
	unknown = ta_time_check(db, "mallory");
	cr_expect_gt(unknown, known / 4, "unknown user took %.4fs, known "
	    "%.4fs: the dummy hash was skipped", unknown, known);
	auth_db_free(db);
}

/* A check submitted to the worker pool reports back on the loop thread. */
struct ta_job {
	struct auth_check	*check;
	struct event_base	*base;
	pthread_t		 loop;
	bool			 ok, on_loop, done;
};

static void
ta_job_run(void *arg)
{
	struct ta_job	*j = arg;

	auth_check_run(j->check);
}

static void
ta_job_done(void *arg)
{
	struct ta_job	*j = arg;

	j->ok = auth_check_ok(j->check);
	j->on_loop = pthread_equal(pthread_self(), j->loop);
	j->done = true;
	auth_check_free(j->check);
	event_base_loopbreak(j->base);
}

static void
ta_timeout(evutil_socket_t fd, short what, void *arg)
{
	cr_assert_fail("checks did not come back in time");
}

Test(auth, check_on_worker_pool, .timeout = 60)
{
	struct event_base	*base;
	struct worker_pool	*wp;
	struct auth_db		*db;
	struct ta_job		 good = { 0 }, bad = { 0 };
	struct event		*keep;
	struct timeval		 tv = { 30, 0 };
	char			 err[256];

	cr_assert_eq(evthread_use_pthreads(), 0);
	base = event_base_new();
	wp = worker_pool_new(base, 2, err, sizeof(err));
	cr_assert_not_null(wp, "%s", err);
	db = ta_load("alice:" H_Y "\n");
	good.base = bad.base = base;
	good.loop = bad.loop = pthread_self();
	good.check = auth_check_new(db, "alice", "secret");
	bad.check = auth_check_new(db, "alice", "guess");
	/* The db may go away (a reload) while the checks run. */
	auth_db_free(db);
	keep = evtimer_new(base, ta_timeout, NULL);
	evtimer_add(keep, &tv);
	cr_assert_eq(worker_submit(wp, ta_job_run, ta_job_done, &good), 0);
	cr_assert_eq(worker_submit(wp, ta_job_run, ta_job_done, &bad), 0);
	while (!(good.done && bad.done))
		event_base_dispatch(base);
	cr_expect(good.ok && good.on_loop);
	cr_expect(!bad.ok && bad.on_loop);
	event_free(keep);
	worker_pool_free(wp);
	event_base_free(base);
}
