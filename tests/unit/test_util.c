/*
 * test_util.c: the bounded string helpers, log escaping, queue ids, time
 * formatting and the id -> pointer map of util.c.
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "util.h"

Test(util, escape_keeps_printable_ascii)
{
	char	buf[64];

	util_escape(buf, sizeof(buf), "hello world", 11);
	cr_assert_str_eq(buf, "hello world");
}

Test(util, escape_hides_control_and_8bit_bytes)
{
	static const struct {
		const char	*in;
		size_t		 len;
		const char	*want;
	} cases[] = {
		{ "a\r\nb", 4, "a\\x0d\\x0ab" },
		{ "nul\0x", 5, "nul\\x00x" },
		{ "back\\slash", 10, "back\\\\slash" },
		{ "\xc3\xa9", 2, "\\xc3\\xa9" },
		{ "\x7f", 1, "\\x7f" },
	};
	char	buf[64];
	size_t	i;

	for (i = 0; i < nitems(cases); i++) {
		util_escape(buf, sizeof(buf), cases[i].in, cases[i].len);
		cr_expect_str_eq(buf, cases[i].want, "case %zu: got \"%s\", "
		    "want \"%s\"", i, buf, cases[i].want);
	}
}

Test(util, escape_truncates_with_ellipsis_and_stays_terminated)
{
	char	buf[8];
	char	in[100];

	memset(in, 'x', sizeof(in));
	util_escape(buf, sizeof(buf), in, sizeof(in));
	cr_assert_eq(strlen(buf), sizeof(buf) - 1);
	cr_assert(strcmp(buf + strlen(buf) - 3, "...") == 0, "got %s", buf);
	/* A multi-byte escape never gets cut in half. */
	memset(in, '\n', sizeof(in));
	util_escape(buf, sizeof(buf), in, sizeof(in));
	cr_assert(strncmp(buf, "\\x0a", 4) == 0, "got %s", buf);
	cr_assert(strchr(buf, '\n') == NULL);
}

Test(util, qid_round_trip_and_validation)
{
	char	buf[QUEUE_ID_LEN + 1];
	qid_t	id, back;
	int	i;

	for (i = 0; i < 1000; i++) {
		id = util_qid_random();
		cr_assert_neq(id, 0);
		util_qid_format(buf, id);
		cr_assert_eq(strlen(buf), QUEUE_ID_LEN);
		cr_assert_eq(util_qid_parse(buf, &back), 0, "parse %s", buf);
		cr_assert_eq(back, id);
	}
	cr_assert_eq(util_qid_parse("00000000", &back), -1);
	cr_assert_eq(util_qid_parse("4f2a9c1b", &back), -1, "lower case");
	cr_assert_eq(util_qid_parse("4F2A9C1", &back), -1, "short");
	cr_assert_eq(util_qid_parse("4F2A9C1B0", &back), -1, "long");
	cr_assert_eq(util_qid_parse("../../x", &back), -1, "path");
	cr_assert_eq(util_qid_parse("4F2A9C1B", &back), 0);
	cr_assert_eq(back, 0x4F2A9C1Bu);
}

Test(util, domain_is_within_matches_label_boundaries)
{
	cr_assert(util_domain_is_within("example.com", "example.com"));
	cr_assert(util_domain_is_within("a.example.com", "example.com"));
	cr_assert(util_domain_is_within("A.Example.COM", "example.com"));
	cr_assert(!util_domain_is_within("badexample.com", "example.com"));
	cr_assert(!util_domain_is_within("example.com.evil", "example.com"));
	cr_assert(!util_domain_is_within("com", "example.com"));
	cr_assert(!util_domain_is_within("example.com", ""));
}

Test(util, dates_are_utc_and_english)
{
	char	buf[64];

	util_iso8601(buf, sizeof(buf), 1795600800);
	cr_assert_str_eq(buf, "2026-11-25T10:00:00Z");
	util_rfc5322_date(buf, sizeof(buf), 1795600800);
	cr_assert_str_eq(buf, "Wed, 25 Nov 2026 10:00:00 +0000");
}

Test(util, map_put_get_delete_and_iterate)
{
	struct util_map	 m;
	uint64_t	 k;
	void		*v;
	size_t		 it = 0, n = 0;
	uintptr_t	 i;

	util_map_init(&m);
	for (i = 1; i <= 10000; i++)
		util_map_put(&m, i * 7919, (void *)i);
	cr_assert_eq(m.len, 10000);
	for (i = 1; i <= 10000; i++)
		cr_assert_eq((uintptr_t)util_map_get(&m, i * 7919), i);
	cr_assert_null(util_map_get(&m, 3));
	/* Delete every other key; the rest must still be found. */
	for (i = 1; i <= 10000; i += 2)
		cr_assert_eq((uintptr_t)util_map_del(&m, i * 7919), i);
	cr_assert_eq(m.len, 5000);
	for (i = 1; i <= 10000; i++) {
		if (i % 2 == 1)
			cr_assert_null(util_map_get(&m, i * 7919));
		else
			cr_assert_eq((uintptr_t)util_map_get(&m, i * 7919), i);
	}
	while (util_map_next(&m, &it, &k, &v)) {
		cr_assert_eq(k, (uint64_t)(uintptr_t)v * 7919);
		n++;
	}
	cr_assert_eq(n, 5000);
	/* Re-inserting over tombstones keeps the count right. */
	for (i = 1; i <= 10000; i += 2)
		util_map_put(&m, i * 7919, (void *)i);
	cr_assert_eq(m.len, 10000);
	util_map_put(&m, 7919, (void *)42);
	cr_assert_eq(m.len, 10000, "replace does not grow");
	cr_assert_eq((uintptr_t)util_map_get(&m, 7919), 42);
	util_map_clear(&m);
}

Test(util, strlcpy_and_strlcat_truncate_safely)
{
	char	buf[6];

	cr_assert_eq(strlcpy(buf, "abcdefgh", sizeof(buf)), 8);
	cr_assert_str_eq(buf, "abcde");
	strlcpy(buf, "ab", sizeof(buf));
	cr_assert_eq(strlcat(buf, "cdefg", sizeof(buf)), 7);
	cr_assert_str_eq(buf, "abcde");
}
