/*
 * fuzz_sasl.c: FZ-05.  The input is one SASL response line.  Each of
 * auth_sasl_plain_decode and auth_sasl_login_decode is compared with a
 * reference written here from the RFCs: OpenSSL's EVP_DecodeBlock, made
 * strict by requiring that EVP_EncodeBlock gives the input back exactly (so
 * no whitespace, exact padding, zero pad bits), then a naive split at NULs.
 * Any disagreement, or a field with NUL, CR or LF on success, aborts.
 */
#include "compat.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "auth.h"
#include "postern.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FZ_DECODED_MAX	(SMTP_AUTH_LINE_MAX / 4 * 3)

#define FZ_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "fuzz_sasl: %s:%d: %s\n", __FILE__,	\
		    __LINE__, #cond);					\
		abort();						\
	}								\
} while (0)

/*
 * Reference base64: returns the decoded length, -1 for bad base64, -2 for
 * cancel, -3 for too long.
 */
static int
fz_ref_b64(const uint8_t *in, size_t len, unsigned char *out)
{
	static unsigned char	 again[SMTP_AUTH_LINE_MAX + 4];
	int			 n, pad = 0;

	if (len == 1 && in[0] == '*')
		return (-2);
	if (len == 1 && in[0] == '=')
		return (0);
	if (len > SMTP_AUTH_LINE_MAX)
		return (-3);
	if (len == 0)
		return (0);
	if ((n = EVP_DecodeBlock(out, in, (int)len)) < 0)
		return (-1);
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (in[len - 1] == '=')
		pad++;
	if (len > 1 && in[len - 2] == '=')
		pad++;
	n -= pad;
	if (n < 0)
		return (-1);
	if (EVP_EncodeBlock(again, out, n) != (int)len ||
	    memcmp(again, in, len) != 0)
		return (-1);
	return (n);
}

static bool
fz_clean(const unsigned char *p, size_t len)
{
	size_t	i;

	for (i = 0; i < len; i++)
		if (p[i] == '\0' || p[i] == '\r' || p[i] == '\n')
			return (false);
	return (true);
}

/* Reference PLAIN per RFC 4616 and auth.h. */
static enum auth_decode
fz_ref_plain(const uint8_t *in, size_t len, size_t userlen, size_t passlen,
    char *user, char *pass)
{
	static unsigned char	 buf[FZ_DECODED_MAX + 4];
	size_t			 i, nuls = 0, pos[2] = { 0, 0 };
	size_t			 zlen, clen, plen;
	int			 n;

	n = fz_ref_b64(in, len, buf);
	if (n == -1)
		return (AUTH_DECODE_BAD_BASE64);
	if (n == -2)
		return (AUTH_DECODE_CANCELLED);
	if (n < 0)
		return (AUTH_DECODE_MALFORMED);
	for (i = 0; i < (size_t)n; i++) {
		if (buf[i] == '\0') {
			if (nuls < 2)
				pos[nuls] = i;
			nuls++;
		}
	}
	if (nuls != 2)
		return (AUTH_DECODE_MALFORMED);
	zlen = pos[0];
	clen = pos[1] - pos[0] - 1;
	plen = (size_t)n - pos[1] - 1;
	if (clen == 0 || plen == 0)
		return (AUTH_DECODE_MALFORMED);
	if (!fz_clean(buf, zlen) || !fz_clean(buf + pos[0] + 1, clen) ||
	    !fz_clean(buf + pos[1] + 1, plen))
		return (AUTH_DECODE_MALFORMED);
	if (clen >= userlen || plen >= passlen)
		return (AUTH_DECODE_MALFORMED);
	if (zlen != 0 && (zlen != clen || memcmp(buf, buf + pos[0] + 1,
	    clen) != 0))
		return (AUTH_DECODE_AUTHZID_MISMATCH);
	memcpy(user, buf + pos[0] + 1, clen);
	user[clen] = '\0';
	memcpy(pass, buf + pos[1] + 1, plen);
	pass[plen] = '\0';
	return (AUTH_DECODE_OK);
}

/* Reference LOGIN step. */
static enum auth_decode
fz_ref_login(const uint8_t *in, size_t len, size_t outlen, char *out)
{
	static unsigned char	 buf[FZ_DECODED_MAX + 4];
	int			 n;

	n = fz_ref_b64(in, len, buf);
	if (n == -1)
		return (AUTH_DECODE_BAD_BASE64);
	if (n == -2)
		return (AUTH_DECODE_CANCELLED);
	if (n <= 0 || (size_t)n >= outlen || !fz_clean(buf, (size_t)n))
		return (AUTH_DECODE_MALFORMED);
	memcpy(out, buf, (size_t)n);
	out[n] = '\0';
	return (AUTH_DECODE_OK);
}

static void
fz_plain(const uint8_t *d, size_t n, size_t userlen, size_t passlen)
{
	static char		 user[AUTH_USER_MAX], pass[AUTH_PASS_MAX];
	static char		 ruser[AUTH_USER_MAX], rpass[AUTH_PASS_MAX];
	enum auth_decode	 got, want;

	memset(user, 'X', sizeof(user));
	memset(pass, 'X', sizeof(pass));
	got = auth_sasl_plain_decode((const char *)d, n, user, userlen, pass,
	    passlen);
	want = fz_ref_plain(d, n, userlen, passlen, ruser, rpass);
	FZ_CHECK(got == want);
	if (got == AUTH_DECODE_OK) {
		FZ_CHECK(strcmp(user, ruser) == 0);
		FZ_CHECK(strcmp(pass, rpass) == 0);
		FZ_CHECK(user[0] != '\0' && pass[0] != '\0');
		FZ_CHECK(strpbrk(user, "\r\n") == NULL);
		FZ_CHECK(strpbrk(pass, "\r\n") == NULL);
		FZ_CHECK(strlen(user) < userlen && strlen(pass) < passlen);
	} else {
		FZ_CHECK(user[0] == '\0' && pass[0] == '\0');
	}
}

static void
fz_login(const uint8_t *d, size_t n, size_t outlen)
{
	static char		 out[FZ_DECODED_MAX + 1];
	static char		 ref[FZ_DECODED_MAX + 1];
	enum auth_decode	 got, want;

	got = auth_sasl_login_decode((const char *)d, n, out, outlen);
	want = fz_ref_login(d, n, outlen, ref);
	FZ_CHECK(got == want);
	FZ_CHECK(got == AUTH_DECODE_OK || got == AUTH_DECODE_BAD_BASE64 ||
	    got == AUTH_DECODE_MALFORMED || got == AUTH_DECODE_CANCELLED);
	if (got == AUTH_DECODE_OK) {
		FZ_CHECK(strcmp(out, ref) == 0);
		FZ_CHECK(out[0] != '\0' && strpbrk(out, "\r\n") == NULL);
		FZ_CHECK(strlen(out) < outlen);
	} else
		FZ_CHECK(out[0] == '\0');
}

int
LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	/* Full-size buffers, then small ones to exercise the field bounds. */
	fz_plain(d, n, AUTH_USER_MAX, AUTH_PASS_MAX);
	fz_plain(d, n, 4, 4);
	fz_login(d, n, AUTH_PASS_MAX);
	fz_login(d, n, FZ_DECODED_MAX + 1);
	fz_login(d, n, 2);
	return (0);
}
