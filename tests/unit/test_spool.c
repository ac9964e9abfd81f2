/*
 * test_spool.c: the durable spool against a real event_base in a mkdtemp
 * directory: byte-exact round trips (CR, LF and 8-bit text in envelope
 * fields), group commit, journal replay and torn tails, quarantine of
 * truncated and bit-flipped files (CC-06), crash points (CC-02), sync and
 * ENOSPC failures (IN-48, CC-05), and the permission checks.
 */
#include "compat.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "log.h"
#include "spool.h"
#include "util.h"

#define MAXDONE	1024

static char			 tmpdir[256];
static char			 spooldir[300];
static struct event_base	*base;

/* Completions seen on the loop thread, indexed by cookie. */
static int	ndone;
static int	done_err[MAXDONE];
static int	done_seen[MAXDONE];

/* Log lines captured from the spool, one per line. */
static char	logbuf[65536];

static void
capture_log(int prio, const char *line, void *arg)
{
	(void)prio;
	(void)arg;
	cr_assert_null(strpbrk(line, "\r\n"), "raw CR/LF in a log line");
	strlcat(logbuf, line, sizeof(logbuf));
	strlcat(logbuf, "\n", sizeof(logbuf));
}

static void
setup(void)
{
	logbuf[0] = '\0';
	log_set_sink(capture_log, NULL);
	strlcpy(tmpdir, "/tmp/test_spool.XXXXXX", sizeof(tmpdir));
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(spooldir, sizeof(spooldir), "%s/spool", tmpdir);
	cr_assert_eq(evthread_use_pthreads(), 0);
	cr_assert_not_null(base = event_base_new());
	ndone = 0;
	memset(done_err, 0, sizeof(done_err));
	memset(done_seen, 0, sizeof(done_seen));
}

static void
teardown(void)
{
	char	cmd[400];

	if (base != NULL)
		event_base_free(base);
	base = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", tmpdir);
}

TestSuite(spool, .init = setup, .fini = teardown, .timeout = 120);

static void
done_cb(uint64_t cookie, int error, void *arg)
{
	cr_assert_lt(cookie, MAXDONE);
	cr_assert_eq(done_seen[cookie], 0, "cookie %llu completed twice",
	    (unsigned long long)cookie);
	cr_assert_eq(arg, (void *)&ndone);
	done_seen[cookie] = 1;
	done_err[cookie] = error;
	ndone++;
}

/* Run the loop until n completions arrived. */
static void
wait_done(int n)
{
	int	spins = 0;

	while (ndone < n) {
		struct timeval	tv = { 0, 10000 };

		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
		cr_assert_lt(++spins, 3000, "only %d of %d completions",
		    ndone, n);
	}
}

static struct spool *
open_spool(void)
{
	char		 err[256] = "";
	struct spool	*s = spool_open(spooldir, base, err, sizeof(err));

	cr_assert_not_null(s, "spool_open: %s", err);
	return (s);
}

/* The sample envelope: peer text with CR, LF and 8-bit octets. */
static char	 s_sender[] = "we\r\nird\x01@ex\xc3\xa4mple.test";
static char	 s_r0[] = "a@ok.test";
static char	 s_r1[] = "\"b\r\nc\"@ok.test";
static char	 s_r2[] = "j\xc3\xb6@\xc3\xa4.test";
static char	 s_addr[] = "192.0.2.7";
static char	 s_name[] = "host\n.example";
static char	 s_helo[] = "evil\r\nX-Injected: 1";
static char	 s_user[] = "us\rer";

static void
sample_env(struct spool_envelope *env, struct spool_rcpt *rc, qid_t id)
{
	memset(env, 0, sizeof(*env));
	memset(rc, 0, 3 * sizeof(*rc));
	rc[0].addr = s_r0;
	rc[1].addr = s_r1;
	rc[2].addr = s_r2;
	env->id = id;
	env->queued_at = 1764064800;
	env->sender = s_sender;
	env->rcpts = rc;
	env->nrcpts = 3;
	env->client_addr = s_addr;
	env->client_name = s_name;
	env->helo = s_helo;
	env->sasl_user = s_user;
	env->flags = SPOOL_F_8BITMIME | SPOOL_F_SMTPUTF8;
}

/* A deterministic body of len octets made of CRLF-terminated lines. */
static char *
make_body(size_t len, unsigned seed)
{
	char	*b = xmalloc(len + 1);
	size_t	 i;

	for (i = 0; i < len; i++) {
		if (i % 78 == 76)
			b[i] = '\r';
		else if (i % 78 == 77)
			b[i] = '\n';
		else
			b[i] = (char)(0x20 + (i * 7 + seed) % 0x5f);
	}
	b[len] = '\0';
	return (b);
}

/* Write and commit one message; the body is given in uneven pieces. */
static void
commit_msg(struct spool *s, qid_t id, const char *body, size_t len,
    uint64_t cookie)
{
	struct spool_envelope	 env;
	struct spool_rcpt	 rc[3];
	struct spool_writer	*w;
	char			 err[256] = "";
	size_t			 off = 0, step = 1;

	sample_env(&env, rc, id);
	w = spool_writer_new(s, &env, err, sizeof(err));
	cr_assert_not_null(w, "writer_new: %s", err);
	while (off < len) {
		size_t	n = len - off < step ? len - off : step;

		cr_assert_eq(spool_writer_write(w, body + off, n), 0);
		off += n;
		step = step * 3 + 1;
	}
	cr_assert_eq(spool_writer_size(w), len);
	cr_assert_eq(spool_writer_commit(w, done_cb, cookie, &ndone), 0);
}

static int
count_dir(const char *sub)
{
	char		 path[400];
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	snprintf(path, sizeof(path), "%s/%s", spooldir, sub);
	cr_assert_not_null(d = opendir(path), "%s", path);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return (n);
}

static void
queue_path(char *buf, size_t len, qid_t id)
{
	char	name[QUEUE_ID_LEN + 1];

	util_qid_format(name, id);
	snprintf(buf, len, "%s/queue/%s", spooldir, name);
}

static void
cr_assert_str_exact(const char *got, const char *want, const char *what)
{
	if (want == NULL) {
		cr_assert_null(got, "%s: got non-NULL, want NULL", what);
		return;
	}
	cr_assert_not_null(got, "%s: got NULL", what);
	cr_assert_eq(strlen(got), strlen(want), "%s: length got %zu want "
	    "%zu", what, strlen(got), strlen(want));
	cr_assert_eq(memcmp(got, want, strlen(want)), 0, "%s differs", what);
}

static void
check_sample(const struct spool_envelope *e, qid_t id, uint64_t size)
{
	cr_assert_eq(e->id, id, "id got %08X want %08X", e->id, id);
	cr_assert_eq(e->queued_at, 1764064800);
	cr_assert_str_exact(e->sender, s_sender, "sender");
	cr_assert_eq(e->nrcpts, 3, "nrcpts got %zu want 3", e->nrcpts);
	cr_assert_str_exact(e->rcpts[0].addr, s_r0, "rcpt 0");
	cr_assert_str_exact(e->rcpts[1].addr, s_r1, "rcpt 1");
	cr_assert_str_exact(e->rcpts[2].addr, s_r2, "rcpt 2");
	cr_assert_str_exact(e->client_addr, s_addr, "client_addr");
	cr_assert_str_exact(e->client_name, s_name, "client_name");
	cr_assert_str_exact(e->helo, s_helo, "helo");
	cr_assert_str_exact(e->sasl_user, s_user, "sasl_user");
	cr_assert_eq(e->flags, SPOOL_F_8BITMIME | SPOOL_F_SMTPUTF8);
	cr_assert_eq(e->size, size, "size got %llu want %llu",
	    (unsigned long long)e->size, (unsigned long long)size);
}

/* Recovery collects deep copies of what it reports. */
struct recovered {
	int			n;
	struct spool_envelope	env[64];
};

static char *
dup_or_null(const char *s)
{
	return (s == NULL ? NULL : xstrdup(s));
}

static int
collect_cb(const struct spool_envelope *e, void *arg)
{
	struct recovered	*r = arg;
	struct spool_envelope	*c;
	size_t			 i;

	cr_assert_lt(r->n, 64);
	c = &r->env[r->n++];
	*c = *e;
	c->sender = xstrdup(e->sender);
	c->client_addr = dup_or_null(e->client_addr);
	c->client_name = dup_or_null(e->client_name);
	c->helo = dup_or_null(e->helo);
	c->sasl_user = dup_or_null(e->sasl_user);
	c->last_error = dup_or_null(e->last_error);
	c->rcpts = xcalloc(e->nrcpts, sizeof(*c->rcpts));
	for (i = 0; i < e->nrcpts; i++) {
		c->rcpts[i] = e->rcpts[i];
		c->rcpts[i].addr = xstrdup(e->rcpts[i].addr);
		c->rcpts[i].reply = dup_or_null(e->rcpts[i].reply);
		c->rcpts[i].remote = dup_or_null(e->rcpts[i].remote);
	}
	for (i = 0; i < e->nhistory; i++)
		c->history[i].error = dup_or_null(e->history[i].error);
	return (0);
}

static void
recovered_free(struct recovered *r)
{
	int	i;

	for (i = 0; i < r->n; i++)
		spool_envelope_free(&r->env[i]);
	r->n = 0;
}

static int
recover_into(struct spool *s, struct recovered *r)
{
	memset(r, 0, sizeof(*r));
	return (spool_recover(s, collect_cb, r));
}

Test(spool, round_trip_byte_exact)
{
	struct spool		*s = open_spool();
	struct spool_envelope	 e;
	struct recovered	 rec;
	struct spool_stats	 st;
	size_t			 len = 200000;
	char			*body = make_body(len, 1), *got;
	off_t			 off;
	uint64_t		 blen;
	int			 fd;
	struct stat		 sb;
	char			 path[400];

	commit_msg(s, 0x1234ABCD, body, len, 1);
	wait_done(1);
	cr_assert_eq(done_err[1], 0, "commit error %d", done_err[1]);
	spool_get_stats(s, &st);
	cr_assert_eq(st.committed, 1);
	cr_assert_geq(st.syncs, 1);
	cr_assert_eq(count_dir("incoming"), 0);
	queue_path(path, sizeof(path), 0x1234ABCD);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 07777, 0600, "mode %o", sb.st_mode & 07777);
	spool_close(s);

	/* A fresh start recovers it byte-exact. */
	s = open_spool();
	cr_assert_eq(recover_into(s, &rec), 1);
	check_sample(&rec.env[0], 0x1234ABCD, len);
	cr_assert_eq(rec.env[0].rcpts[1].state, SPOOL_RCPT_PENDING);
	cr_assert_eq(rec.env[0].attempts, 0);
	cr_assert(!rec.env[0].held);
	recovered_free(&rec);

	cr_assert_eq(spool_load(s, 0x1234ABCD, &e), 0);
	check_sample(&e, 0x1234ABCD, len);
	spool_envelope_free(&e);

	cr_assert_eq(spool_open_body(s, 0x1234ABCD, &fd, &off, &blen), 0);
	cr_assert_eq(blen, len);
	got = xmalloc(len);
	cr_assert_eq(pread(fd, got, len, off), (ssize_t)len);
	cr_assert_eq(memcmp(got, body, len), 0, "body differs");
	close(fd);
	free(got);

	errno = 0;
	cr_assert_eq(spool_load(s, 0x0BADBEEF, &e), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(spool_open_body(s, 0x0BADBEEF, &fd, &off, &blen), -1);
	spool_close(s);
	free(body);
}

Test(spool, empty_body_and_minimal_envelope)
{
	struct spool		*s = open_spool();
	struct spool_envelope	 env;
	struct spool_rcpt	 rc = { .addr = s_r0 };
	struct spool_writer	*w;
	struct recovered	 rec;
	char			 err[256], nullsender[] = "";

	memset(&env, 0, sizeof(env));
	env.id = 0x00000001;
	env.sender = nullsender;
	env.rcpts = &rc;
	env.nrcpts = 1;
	cr_assert_not_null(w = spool_writer_new(s, &env, err, sizeof(err)));
	cr_assert_eq(spool_writer_commit(w, done_cb, 0, &ndone), 0);
	wait_done(1);
	cr_assert_eq(done_err[0], 0);
	cr_assert_eq(recover_into(s, &rec), 1);
	cr_assert_str_eq(rec.env[0].sender, "");
	cr_assert_null(rec.env[0].helo);
	cr_assert_null(rec.env[0].client_addr);
	cr_assert_null(rec.env[0].sasl_user);
	cr_assert_eq(rec.env[0].size, 0);
	cr_assert_eq(rec.env[0].flags, 0);
	recovered_free(&rec);
	spool_close(s);
}

Test(spool, writer_rejects_bad_envelopes)
{
	struct spool		*s = open_spool();
	struct spool_envelope	 env;
	struct spool_rcpt	 rc[3];
	char			*big = xmalloc(SPOOL_FIELD_MAX + 2);
	char			 err[256];
	int			 i;

	memset(big, 'x', SPOOL_FIELD_MAX + 1);
	big[SPOOL_FIELD_MAX + 1] = '\0';
	for (i = 0; i < 6; i++) {
		sample_env(&env, rc, 0x42);
		switch (i) {
		case 0: env.nrcpts = 0; break;
		case 1: env.sender = NULL; break;
		case 2: env.id = 0; break;
		case 3: env.helo = big; break;
		case 4: rc[2].addr = NULL; break;
		case 5: env.flags = 0x80; break;
		}
		err[0] = '\0';
		cr_assert_null(spool_writer_new(s, &env, err, sizeof(err)),
		    "case %d accepted", i);
		cr_assert_neq(err[0], '\0', "case %d: no error text", i);
	}
	cr_assert_eq(count_dir("incoming"), 0);
	free(big);
	spool_close(s);
}

Test(spool, abort_removes_temp_file)
{
	struct spool		*s = open_spool();
	struct spool_envelope	 env;
	struct spool_rcpt	 rc[3];
	struct spool_writer	*w;
	char			 err[256];

	sample_env(&env, rc, 0x77);
	cr_assert_not_null(w = spool_writer_new(s, &env, err, sizeof(err)));
	cr_assert_eq(spool_writer_write(w, "hello\r\n", 7), 0);
	cr_assert_eq(count_dir("incoming"), 1);
	spool_writer_abort(w);
	cr_assert_eq(count_dir("incoming"), 0);
	cr_assert_eq(count_dir("queue"), 0);
	spool_writer_abort(NULL);
	spool_close(s);
}

/* CC: concurrent acceptances share their syncs. */
Test(spool, group_commit_batches_syncs)
{
	struct spool		*s = open_spool();
	struct spool_stats	 st;
	struct recovered	 rec;
	char			*body = make_body(5000, 2);
	int			 i, n = 50;

	for (i = 0; i < n; i++)
		commit_msg(s, 0x10000 + i, body, 5000, i);
	wait_done(n);
	for (i = 0; i < n; i++)
		cr_assert_eq(done_err[i], 0, "message %d: error %d", i,
		    done_err[i]);
	spool_get_stats(s, &st);
	cr_assert_eq(st.committed, (uint64_t)n);
	cr_assert_eq(st.sync_errors, 0);
#ifdef HAVE_SYNCFS
	cr_assert_lt(st.syncs, (uint64_t)n, "syncs %llu for %d messages",
	    (unsigned long long)st.syncs, n);
#endif
	cr_assert_geq(st.syncs, 1);
	cr_log_info("group commit: %d messages, %llu syncs", n,
	    (unsigned long long)st.syncs);
	cr_assert_eq(recover_into(s, &rec), n);
	recovered_free(&rec);
	spool_close(s);
	free(body);
}

struct submitter {
	struct spool	*s;
	int		 first;
	int		 n;
	char		*body;
};

static void *
submit_thread(void *arg)
{
	struct submitter	*t = arg;
	int			 i;

	for (i = 0; i < t->n; i++)
		commit_msg(t->s, 0x20000 + t->first + i, t->body, 3000,
		    t->first + i);
	return (NULL);
}

Test(spool, group_commit_from_concurrent_submitters)
{
	struct spool		*s = open_spool();
	struct submitter	 t[4];
	pthread_t		 th[4];
	struct spool_stats	 st;
	char			*body = make_body(3000, 3);
	int			 i;

	for (i = 0; i < 4; i++) {
		t[i] = (struct submitter){ s, i * 25, 25, body };
		cr_assert_eq(pthread_create(&th[i], NULL, submit_thread,
		    &t[i]), 0);
	}
	/* Journal appends and removals join the same batches. */
	wait_done(1);
	for (i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	wait_done(100);
	for (i = 0; i < 100; i++)
		cr_assert_eq(done_err[i], 0, "message %d: error %d", i,
		    done_err[i]);
	spool_get_stats(s, &st);
	cr_assert_eq(st.committed, 100);
#ifdef HAVE_SYNCFS
	cr_assert_lt(st.syncs, 100, "syncs %llu for 100 messages",
	    (unsigned long long)st.syncs);
#endif
	cr_log_info("group commit: 100 messages from 4 threads, %llu syncs",
	    (unsigned long long)st.syncs);
	cr_assert_eq(count_dir("queue"), 100);
	cr_assert_eq(count_dir("incoming"), 0);
	spool_close(s);
	free(body);
}

static void
append(struct spool *s, qid_t id, const struct spool_record *r,
    uint64_t cookie)
{
	cr_assert_eq(spool_journal_append(s, id, r, done_cb, cookie, &ndone),
	    0, "append cookie %llu", (unsigned long long)cookie);
}

/* Apply the standard journal and return the number of records. */
static int
standard_journal(struct spool *s, qid_t id, uint64_t first)
{
	struct spool_record	r;
	uint64_t		c = first;

	memset(&r, 0, sizeof(r));
	r.type = SPOOL_REC_RCPT_DONE;
	r.rcpt_index = 0;
	r.outcome = SPOOL_RCPT_DELIVERED;
	strlcpy(r.dsn, "2.0.0", sizeof(r.dsn));
	r.reply = "250 2.0.0 ok\r\nqueued as \x01X";
	r.remote = "mx.ok.test[192.0.2.25]";
	append(s, id, &r, c++);
	r.rcpt_index = 1;
	r.outcome = SPOOL_RCPT_FAILED;
	strlcpy(r.dsn, "5.1.1", sizeof(r.dsn));
	r.reply = "550 5.1.1 no such user";
	append(s, id, &r, c++);
	/* A later record for a final recipient never changes it. */
	r.rcpt_index = 0;
	r.outcome = SPOOL_RCPT_EXPIRED;
	strlcpy(r.dsn, "4.4.7", sizeof(r.dsn));
	append(s, id, &r, c++);

	memset(&r, 0, sizeof(r));
	r.type = SPOOL_REC_ATTEMPT;
	r.attempts = 2;
	r.next_attempt = 1764068400;
	r.last_error = "451 4.7.1 first";
	append(s, id, &r, c++);
	r.attempts = 3;
	r.next_attempt = 1764072000;
	r.last_error = "451 4.7.1 try\r\nlater";
	append(s, id, &r, c++);

	memset(&r, 0, sizeof(r));
	r.type = SPOOL_REC_HOLD;
	append(s, id, &r, c++);
	r.type = SPOOL_REC_RELEASE;
	append(s, id, &r, c++);
	r.type = SPOOL_REC_HOLD;
	append(s, id, &r, c++);
	r.type = SPOOL_REC_ESCALATION_PENDING;
	r.event = 2;
	append(s, id, &r, c++);
	r.event = 5;
	append(s, id, &r, c++);
	r.type = SPOOL_REC_ESCALATION_DONE;
	r.event = 2;
	append(s, id, &r, c++);
	r.type = SPOOL_REC_BOUNCE_DONE;
	append(s, id, &r, c++);
	return ((int)(c - first));
}

static void
check_standard_state(const struct spool_envelope *e)
{
	cr_assert_eq(e->rcpts[0].state, SPOOL_RCPT_DELIVERED,
	    "rcpt 0 state %d", e->rcpts[0].state);
	cr_assert_str_eq(e->rcpts[0].dsn, "2.0.0");
	cr_assert_str_exact(e->rcpts[0].reply, "250 2.0.0 ok\r\nqueued as "
	    "\x01X", "reply 0");
	cr_assert_str_exact(e->rcpts[0].remote, "mx.ok.test[192.0.2.25]",
	    "remote 0");
	cr_assert_eq(e->rcpts[1].state, SPOOL_RCPT_FAILED);
	cr_assert_str_eq(e->rcpts[1].dsn, "5.1.1");
	cr_assert_eq(e->rcpts[2].state, SPOOL_RCPT_PENDING);
	cr_assert_str_eq(e->rcpts[2].dsn, "");
	cr_assert_null(e->rcpts[2].reply);
	cr_assert_eq(e->attempts, 3);
	cr_assert_eq(e->next_attempt, 1764072000);
	cr_assert_str_exact(e->last_error, "451 4.7.1 try\r\nlater",
	    "last_error");
	cr_assert(e->held);
	cr_assert_eq(e->escalations_pending, 1u << 5, "escalations %#x",
	    e->escalations_pending);
	cr_assert(e->bounce_done);
}

Test(spool, journal_replay)
{
	struct spool		*s = open_spool();
	struct spool_envelope	 e;
	struct spool_stats	 st;
	struct recovered	 rec;
	char			*body = make_body(1000, 4);
	int			 n;

	commit_msg(s, 0xCAFE, body, 1000, 0);
	wait_done(1);
	n = standard_journal(s, 0xCAFE, 1);
	wait_done(1 + n);
	for (int i = 0; i <= n; i++)
		cr_assert_eq(done_err[i], 0, "cookie %d: error %d", i,
		    done_err[i]);
	spool_get_stats(s, &st);
	cr_assert_eq(st.journal_records, (uint64_t)n);

	cr_assert_eq(spool_load(s, 0xCAFE, &e), 0);
	check_sample(&e, 0xCAFE, 1000);
	check_standard_state(&e);
	spool_envelope_free(&e);
	spool_close(s);

	s = open_spool();
	cr_assert_eq(recover_into(s, &rec), 1);
	check_standard_state(&rec.env[0]);
	recovered_free(&rec);
	spool_close(s);
	free(body);
}

Test(spool, journal_append_rejects_bad_records)
{
	struct spool		*s = open_spool();
	struct spool_record	 r;
	int			 i;

	for (i = 0; i < 5; i++) {
		memset(&r, 0, sizeof(r));
		r.type = SPOOL_REC_RCPT_DONE;
		r.outcome = SPOOL_RCPT_DELIVERED;
		switch (i) {
		case 0: r.rcpt_index = -1; break;
		case 1: r.outcome = SPOOL_RCPT_PENDING; break;
		case 2: memset(r.dsn, '5', sizeof(r.dsn)); break;
		case 3: r.type = SPOOL_REC_ESCALATION_PENDING;
			r.event = 32; break;
		case 4: r.type = (enum spool_rec)99; break;
		}
		errno = 0;
		cr_assert_eq(spool_journal_append(s, 0x99, &r, done_cb, 0,
		    &ndone), -1, "case %d accepted", i);
		cr_assert_eq(errno, EINVAL);
	}
	/* A journal for a message that does not exist fails. */
	memset(&r, 0, sizeof(r));
	r.type = SPOOL_REC_HOLD;
	append(s, 0x99, &r, 7);
	wait_done(1);
	cr_assert_eq(done_err[7], ENOENT, "got %d", done_err[7]);
	spool_close(s);
}

static off_t
file_size(const char *path)
{
	struct stat	sb;

	cr_assert_eq(stat(path, &sb), 0, "%s", path);
	return (sb.st_size);
}

static uint8_t *
read_file(const char *path, size_t *len)
{
	int		 fd;
	struct stat	 sb;
	uint8_t		*p;

	cr_assert((fd = open(path, O_RDONLY)) >= 0, "%s", path);
	cr_assert_eq(fstat(fd, &sb), 0);
	p = xmalloc((size_t)sb.st_size + 1);
	cr_assert_eq(read(fd, p, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*len = (size_t)sb.st_size;
	return (p);
}

static void
write_file(const char *path, const void *p, size_t len)
{
	int	fd;

	cr_assert((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0,
	    "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, p, len), (ssize_t)len);
	close(fd);
}

/* A torn last record is ignored and cut off, at every cut point. */
Test(spool, torn_journal_tail_ignored)
{
	struct spool		*s = open_spool();
	struct spool_record	 r;
	struct spool_envelope	 e;
	struct recovered	 rec;
	char			 path[400];
	char			*body = make_body(700, 5);
	off_t			 before, full, cut;
	uint8_t			*orig;
	size_t			 olen;
	int			 fd;

	commit_msg(s, 0xD00D, body, 700, 0);
	wait_done(1);
	memset(&r, 0, sizeof(r));
	r.type = SPOOL_REC_ATTEMPT;
	r.attempts = 1;
	r.next_attempt = 100;
	r.last_error = "first";
	append(s, 0xD00D, &r, 1);
	wait_done(2);
	queue_path(path, sizeof(path), 0xD00D);
	before = file_size(path);
	r.attempts = 2;
	r.next_attempt = 200;
	r.last_error = "second, with a longer text to tear";
	append(s, 0xD00D, &r, 2);
	wait_done(3);
	full = file_size(path);
	cr_assert_gt(full, before);
	spool_close(s);

	orig = read_file(path, &olen);
	cr_assert_eq(olen, (size_t)full);
	for (cut = before + 1; cut < full; cut++) {
		write_file(path, orig, (size_t)cut);
		s = open_spool();
		cr_assert_eq(recover_into(s, &rec), 1, "cut at %lld",
		    (long long)cut);
		cr_assert_eq(rec.env[0].attempts, 1, "cut %lld: attempts %d",
		    (long long)cut, rec.env[0].attempts);
		cr_assert_str_eq(rec.env[0].last_error, "first");
		recovered_free(&rec);
		cr_assert_not_null(strstr(logbuf, "torn journal tail"));
		/* The torn tail is gone, so a new append is not hidden. */
		cr_assert_eq(file_size(path), before);
		spool_close(s);
	}
	free(orig);

	/* After recovery, a new append is visible. */
	s = open_spool();
	cr_assert_eq(recover_into(s, &rec), 1);
	recovered_free(&rec);
	r.attempts = 7;
	r.last_error = "after the tear";
	ndone = 0;
	memset(done_seen, 0, sizeof(done_seen));
	append(s, 0xD00D, &r, 9);
	wait_done(1);
	cr_assert_eq(done_err[9], 0);
	cr_assert_eq(spool_load(s, 0xD00D, &e), 0);
	cr_assert_eq(e.attempts, 7);
	cr_assert_str_eq(e.last_error, "after the tear");
	spool_envelope_free(&e);

	/* Garbage appended after valid records is a torn tail too. */
	cr_assert((fd = open(path, O_WRONLY | O_APPEND)) >= 0);
	cr_assert_eq(write(fd, "\x00\x02\x03\xff garbage", 12), 12);
	close(fd);
	cr_assert_eq(spool_load(s, 0xD00D, &e), 0);
	cr_assert_eq(e.attempts, 7);
	spool_envelope_free(&e);
	spool_close(s);
	free(body);
}

static void
clear_dir(const char *sub)
{
	char		 path[400], f[700];
	DIR		*d;
	struct dirent	*de;

	snprintf(path, sizeof(path), "%s/%s", spooldir, sub);
	cr_assert_not_null(d = opendir(path));
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(f, sizeof(f), "%s/%s", path, de->d_name);
		if (unlink(f) == -1)
			cr_assert_eq(rmdir(f), 0, "%s", f);
	}
	closedir(d);
}

static int
never_cb(const struct spool_envelope *e, void *arg)
{
	cr_assert_fail("corrupt file %08X reported as valid", e->id);
	return (0);
}

/*
 * CC-06: a committed file truncated at every offset before the end of its
 * END record, or with any single bit flipped there, is quarantined and
 * counted, never reported.
 */
Test(spool, corrupt_files_quarantined)
{
	struct spool		*s = open_spool();
	struct spool_stats	 st;
	struct recovered	 rec;
	char			 path[400];
	char			*body = make_body(300, 6);
	uint8_t			*orig, *copy;
	size_t			 len, off, bit;
	uint64_t		 expect = 0;

	commit_msg(s, 0xBEEF01, body, 300, 0);
	wait_done(1);
	queue_path(path, sizeof(path), 0xBEEF01);
	orig = read_file(path, &len);
	copy = xmalloc(len);

	for (off = 0; off < len; off++) {
		write_file(path, orig, off);
		cr_assert_eq(spool_recover(s, never_cb, NULL), 0,
		    "truncated at %zu", off);
		expect++;
		cr_assert_eq(count_dir("queue"), 0, "truncated at %zu", off);
		cr_assert_eq(count_dir("corrupt"), 1);
		clear_dir("corrupt");
	}
	for (off = 0; off < len; off++) {
		for (bit = 0; bit < 8; bit += 3) {
			memcpy(copy, orig, len);
			copy[off] ^= (uint8_t)(1u << bit);
			write_file(path, copy, len);
			cr_assert_eq(spool_recover(s, never_cb, NULL), 0,
			    "bit %zu of octet %zu flipped", bit, off);
			expect++;
			cr_assert_eq(count_dir("corrupt"), 1);
			clear_dir("corrupt");
		}
	}
	spool_get_stats(s, &st);
	cr_assert_eq(st.corrupt, expect, "corrupt got %llu want %llu",
	    (unsigned long long)st.corrupt, (unsigned long long)expect);

	/* The intact file still recovers; quarantine keeps names apart. */
	write_file(path, orig, len);
	cr_assert_eq(recover_into(s, &rec), 1);
	recovered_free(&rec);
	spool_close(s);
	free(orig);
	free(copy);
	free(body);
}

Test(spool, bad_names_and_types_quarantined)
{
	struct spool		*s = open_spool();
	struct recovered	 rec;
	struct spool_stats	 st;
	char			 path[400], p2[400];
	char			*body = make_body(100, 7);
	uint8_t			*orig;
	size_t			 len, i;
	const char		*names[] = { "zzz", "0000000G", "00000000",
				    "abcdef12", "123456789", "1234567",
				    "EVIL\r\nID\x01" };

	commit_msg(s, 0xF00D, body, 100, 0);
	wait_done(1);
	queue_path(path, sizeof(path), 0xF00D);
	orig = read_file(path, &len);
	for (i = 0; i < nitems(names); i++) {
		snprintf(p2, sizeof(p2), "%s/queue/%s", spooldir, names[i]);
		write_file(p2, orig, len);
	}
	/* A valid file under another id's name. */
	queue_path(p2, sizeof(p2), 0xF00E);
	write_file(p2, orig, len);
	/* A directory and a symlink under valid names. */
	queue_path(p2, sizeof(p2), 0xF00F);
	cr_assert_eq(mkdir(p2, 0700), 0);
	queue_path(p2, sizeof(p2), 0xF010);
	cr_assert_eq(symlink(path, p2), 0);
	/* A name already taken in corrupt/ gets a suffix. */
	snprintf(p2, sizeof(p2), "%s/corrupt/zzz", spooldir);
	write_file(p2, "x", 1);

	cr_assert_eq(recover_into(s, &rec), 1);
	cr_assert_eq(rec.env[0].id, 0xF00D);
	recovered_free(&rec);
	spool_get_stats(s, &st);
	cr_assert_eq(st.corrupt, nitems(names) + 3, "corrupt %llu",
	    (unsigned long long)st.corrupt);
	cr_assert_eq(count_dir("queue"), 1);
	cr_assert_eq(count_dir("corrupt"), (int)nitems(names) + 4);
	snprintf(p2, sizeof(p2), "%s/corrupt/zzz.1", spooldir);
	cr_assert_eq(access(p2, F_OK), 0, "zzz.1 missing");
	/* Each quarantine is logged, the peer-free but hostile name escaped. */
	cr_assert_not_null(strstr(logbuf, "queue/zzz moved to corrupt/zzz.1"),
	    "log: %s", logbuf);
	cr_assert_not_null(strstr(logbuf, "EVIL\\x0d\\x0aID\\x01"),
	    "log: %s", logbuf);
	cr_assert_not_null(strstr(logbuf, "envelope names id 0000F00D"),
	    "log: %s", logbuf);
	spool_close(s);
	free(orig);
	free(body);
}

Test(spool, incoming_leftovers_removed)
{
	struct spool		*s = open_spool();
	struct recovered	 rec;
	char			 p[400];

	snprintf(p, sizeof(p), "%s/incoming/0000ABCD.0011223344556677",
	    spooldir);
	write_file(p, "PSTRN1\n", 7);
	snprintf(p, sizeof(p), "%s/incoming/junk", spooldir);
	write_file(p, "x", 1);
	cr_assert_eq(recover_into(s, &rec), 0);
	cr_assert_eq(count_dir("incoming"), 0);
	spool_close(s);
}

Test(spool, duplicate_id_fails_with_eexist)
{
	struct spool		*s = open_spool();
	struct spool_envelope	 e;
	char			*b1 = make_body(100, 8);
	char			*b2 = make_body(90, 9);

	commit_msg(s, 0xD0D0, b1, 100, 0);
	wait_done(1);
	commit_msg(s, 0xD0D0, b2, 90, 1);
	wait_done(2);
	cr_assert_eq(done_err[0], 0);
	cr_assert_eq(done_err[1], EEXIST, "got %d", done_err[1]);
	cr_assert_eq(count_dir("incoming"), 0);
	cr_assert_eq(spool_load(s, 0xD0D0, &e), 0);
	cr_assert_eq(e.size, 100, "the first message was replaced");
	spool_envelope_free(&e);
	spool_close(s);
	free(b1);
	free(b2);
}

Test(spool, remove)
{
	struct spool		*s = open_spool();
	char			*b = make_body(10, 1);

	commit_msg(s, 0xAA, b, 10, 0);
	wait_done(1);
	cr_assert_eq(spool_remove(s, 0xAA, done_cb, 1, &ndone), 0);
	cr_assert_eq(spool_remove(s, 0xAA, done_cb, 2, &ndone), 0);
	cr_assert_eq(spool_remove(s, 0xAB, NULL, 0, NULL), 0);
	wait_done(3);
	cr_assert_eq(done_err[1], 0);
	cr_assert_eq(done_err[2], ENOENT);
	cr_assert_eq(count_dir("queue"), 0);
	spool_close(s);
	free(b);
}

/* spool_close completes what is pending, calling every callback. */
Test(spool, close_drains_pending)
{
	struct spool		*s = open_spool();
	struct recovered	 rec;
	char			*b = make_body(10, 1);
	int			 i;

	for (i = 0; i < 10; i++)
		commit_msg(s, 0x300 + i, b, 10, i);
	spool_close(s);
	cr_assert_eq(ndone, 10);
	for (i = 0; i < 10; i++)
		cr_assert_eq(done_err[i], 0);
	s = open_spool();
	cr_assert_eq(recover_into(s, &rec), 10);
	recovered_free(&rec);
	spool_close(s);
	free(b);
}

/* IN-48: a failed sync fails the whole batch, and is not retried. */
Test(spool, sync_error_fails_batch)
{
	struct spool		*s;
	struct spool_stats	 st;
	struct spool_record	 r;
	char			*b = make_body(100, 1);
	int			 i;

	cr_assert_eq(setenv("POSTERN_SPOOL_FAULT", "sync-eio", 1), 0);
	s = open_spool();
	for (i = 0; i < 5; i++)
		commit_msg(s, 0x400 + i, b, 100, i);
	wait_done(5);
	for (i = 0; i < 5; i++)
		cr_assert_eq(done_err[i], EIO, "message %d: got %d", i,
		    done_err[i]);
	cr_assert_eq(count_dir("queue"), 0);
	cr_assert_eq(count_dir("incoming"), 0);
	spool_get_stats(s, &st);
	cr_assert_eq(st.committed, 0);
	cr_assert_geq(st.sync_errors, 1);
	cr_assert_eq(st.sync_errors, st.syncs);
	spool_close(s);
	unsetenv("POSTERN_SPOOL_FAULT");

	/* A journal append whose sync fails reports the error. */
	s = open_spool();
	commit_msg(s, 0x500, b, 100, 10);
	wait_done(6);
	cr_assert_eq(done_err[10], 0);
	spool_close(s);
	cr_assert_eq(setenv("POSTERN_SPOOL_FAULT", "sync-eio", 1), 0);
	s = open_spool();
	memset(&r, 0, sizeof(r));
	r.type = SPOOL_REC_HOLD;
	append(s, 0x500, &r, 11);
	wait_done(7);
	cr_assert_eq(done_err[11], EIO);
	spool_close(s);
	unsetenv("POSTERN_SPOOL_FAULT");
	free(b);
}

/* CC-05: disk full while receiving gives a commit error and no files. */
Test(spool, enospc_fails_commit_and_leaves_nothing)
{
	struct spool		*s;
	struct spool_envelope	 env;
	struct spool_rcpt	 rc[3];
	struct spool_writer	*w;
	struct recovered	 rec;
	char			 err[256];
	char			*b = make_body(64 * 1024, 1);
	int			 i, rc_w = 0;

	if (unshare(CLONE_NEWNS) == -1 ||
	    mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) == -1 ||
	    mount("tmpfs", tmpdir, "tmpfs", 0, "size=128k,mode=0700") == -1) {
		cr_skip_test("cannot mount a small tmpfs: %s",
		    strerror(errno));
	}
	s = open_spool();
	sample_env(&env, rc, 0xF011);
	cr_assert_not_null(w = spool_writer_new(s, &env, err, sizeof(err)));
	for (i = 0; i < 8 && rc_w == 0; i++)
		rc_w = spool_writer_write(w, b, 64 * 1024);
	cr_assert_eq(rc_w, -1, "8 x 64 KiB fit in a 128 KiB tmpfs");
	cr_assert_eq(errno, ENOSPC, "errno %d", errno);
	/* Sticky: later writes fail at once. */
	cr_assert_eq(spool_writer_write(w, "x", 1), -1);
	errno = 0;
	cr_assert_eq(spool_writer_commit(w, done_cb, 0, &ndone), -1);
	cr_assert_eq(errno, ENOSPC, "commit errno %d", errno);
	cr_assert_eq(count_dir("incoming"), 0);
	cr_assert_eq(count_dir("queue"), 0);
	cr_assert_eq(ndone, 0, "callback called after a failed commit");
	/* The spool still works once there is room. */
	commit_msg(s, 0xF012, b, 1000, 1);
	wait_done(1);
	cr_assert_eq(done_err[1], 0);
	cr_assert_eq(recover_into(s, &rec), 1);
	recovered_free(&rec);
	spool_close(s);
	free(b);
	(void)umount2(tmpdir, MNT_DETACH);
}

/* CC-02: SIGKILL at each crash point, then recover. */
static void
crash_child(const char *point, int nmsgs)
{
	struct spool		*s;
	char			*b = make_body(500, 1);
	int			 i;

	setenv("POSTERN_CRASHPOINT", point, 1);
	/* A fresh base: the parent's is not ours to share after fork. */
	base = event_base_new();
	s = open_spool();
	for (i = 0; i < nmsgs; i++) {
		commit_msg(s, 0x600 + i, b, 500, i);
		/* One batch per message, so ":N" counts messages. */
		wait_done(i + 1);
	}
	_exit(0);
}

Test(spool, crash_points)
{
	const struct {
		const char	*point;
		int		 nmsgs;
		int		 want;	/* messages recovered */
	} cases[] = {
		{ "after-temp-write", 1, 0 },
		{ "after-rename", 1, 1 },
		{ "after-sync", 1, 1 },
		{ "after-temp-write:3", 4, 2 },
		{ "after-rename:2", 3, 2 },
		{ "after-sync:2", 3, 2 },
		{ "none-such", 2, 2 },
	};
	size_t			 i;

	for (i = 0; i < nitems(cases); i++) {
		struct spool		*s;
		struct recovered	 rec;
		pid_t			 pid;
		int			 status;
		char			 cmd[400];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", spooldir);
		cr_assert_eq(system(cmd), 0);
		fflush(NULL);
		cr_assert((pid = fork()) >= 0);
		if (pid == 0)
			crash_child(cases[i].point, cases[i].nmsgs);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		if (strcmp(cases[i].point, "none-such") == 0)
			cr_assert(WIFEXITED(status) &&
			    WEXITSTATUS(status) == 0, "%s: status %#x",
			    cases[i].point, status);
		else
			cr_assert(WIFSIGNALED(status) &&
			    WTERMSIG(status) == SIGKILL,
			    "%s: status %#x", cases[i].point, status);
		s = open_spool();
		cr_assert_eq(recover_into(s, &rec), cases[i].want,
		    "%s: recovered %d want %d", cases[i].point, rec.n,
		    cases[i].want);
		for (int j = 0; j < rec.n; j++)
			check_sample(&rec.env[j], rec.env[j].id, 500);
		recovered_free(&rec);
		cr_assert_eq(count_dir("incoming"), 0);
		cr_assert_eq(count_dir("corrupt"), 0);
		spool_close(s);
	}
}

Test(spool, refuses_unsafe_permissions)
{
	struct spool	*s;
	char		 err[256], p[400];
	const struct {
		const char	*sub;	/* NULL: the spool dir itself */
		mode_t		 mode;
		uid_t		 uid;
		const char	*want;
	} cases[] = {
		{ NULL, 0777, 0, "writable" },
		{ NULL, 0770, 0, "writable" },
		{ "queue", 0722, 0, "writable" },
		{ "incoming", 0700, 4321, "owned by uid 4321" },
		{ "corrupt", 0720, 0, "writable" },
	};
	size_t		 i;

	s = open_spool();
	spool_close(s);
	for (i = 0; i < nitems(cases); i++) {
		if (cases[i].sub == NULL)
			strlcpy(p, spooldir, sizeof(p));
		else
			snprintf(p, sizeof(p), "%s/%s", spooldir,
			    cases[i].sub);
		cr_assert_eq(chmod(p, cases[i].mode), 0);
		if (cases[i].uid != 0)
			cr_assert_eq(chown(p, cases[i].uid, 0), 0);
		err[0] = '\0';
		cr_assert_null(spool_open(spooldir, base, err, sizeof(err)),
		    "case %zu opened", i);
		cr_assert_not_null(strstr(err, cases[i].want),
		    "case %zu: got \"%s\" want \"%s\"", i, err, cases[i].want);
		cr_assert_eq(chmod(p, 0700), 0);
		cr_assert_eq(chown(p, 0, 0), 0);
	}

	/* An ancestor writable by others is refused unless sticky. */
	cr_assert_eq(chmod(tmpdir, 0777), 0);
	err[0] = '\0';
	cr_assert_null(spool_open(spooldir, base, err, sizeof(err)));
	cr_assert_not_null(strstr(err, "unsafe ancestor"), "got \"%s\"", err);
	cr_assert_eq(chmod(tmpdir, 01777), 0);
	s = open_spool();
	spool_close(s);

	/* A symlink as the spool directory is refused. */
	snprintf(p, sizeof(p), "%s/link", tmpdir);
	cr_assert_eq(symlink(spooldir, p), 0);
	cr_assert_null(spool_open(p, base, err, sizeof(err)));
}

Test(spool, creates_missing_dirs_0700)
{
	struct spool	*s = open_spool();
	struct stat	 sb;
	char		 p[400];
	const char	*subs[] = { "", "/incoming", "/queue", "/corrupt" };
	size_t		 i;

	for (i = 0; i < nitems(subs); i++) {
		snprintf(p, sizeof(p), "%s%s", spooldir, subs[i]);
		cr_assert_eq(stat(p, &sb), 0, "%s", p);
		cr_assert(S_ISDIR(sb.st_mode));
		cr_assert_eq(sb.st_mode & 07777, 0700, "%s mode %o", p,
		    sb.st_mode & 07777);
	}
	spool_close(s);
}

/*
 * The writer keeps a usual envelope in its buffer and writes a small
 * message with one write(2) at commit (header patched, END appended); an
 * envelope over half the buffer is written at once, and a body that fills
 * the buffer is flushed on the way.  Every combination must recover
 * byte-exact: 3,000 recipients (an envelope of about 100 KiB) with bodies
 * of 0 and 10 octets, and a usual envelope with bodies around the 64 KiB
 * buffer size.
 */
Test(spool, writer_buffer_paths_round_trip)
{
	static const size_t	 sizes[] = { 0, 10, 65536 - 200, 65536 - 8,
	    65536, 65536 + 1, 3 * 65536 + 17 };
	struct spool		*s = open_spool();
	struct spool_envelope	 env, e;
	struct spool_rcpt	*rc;
	struct spool_writer	*w;
	char			**addrs, err[256], *body, *got;
	size_t			 i, k, n = 3000;
	off_t			 off;
	uint64_t		 blen;
	int			 fd;

	rc = xcalloc(n, sizeof(*rc));
	addrs = xcalloc(n, sizeof(*addrs));
	for (i = 0; i < n; i++) {
		xasprintf(&addrs[i], "recipient-number-%05zu@example.test", i);
		rc[i].addr = addrs[i];
	}
	for (k = 0; k < 2 + nitems(sizes); k++) {
		bool	big = k < 2;
		size_t	len = big ? (k == 0 ? 0 : 10) : sizes[k - 2];
		qid_t	id = 0x10000000 + (qid_t)k;

		memset(&env, 0, sizeof(env));
		env.id = id;
		env.queued_at = 1764064800;
		env.sender = s_sender;
		env.rcpts = rc;
		env.nrcpts = big ? n : 1;
		w = spool_writer_new(s, &env, err, sizeof(err));
		cr_assert_not_null(w, "writer_new: %s", err);
		body = make_body(len, (unsigned)k);
		cr_assert_eq(spool_writer_write(w, body, len), 0);
		cr_assert_eq(spool_writer_commit(w, done_cb, 100 + k, &ndone),
		    0);
		wait_done((int)k + 1);
		cr_assert_eq(done_err[100 + k], 0, "case %zu: commit error %d",
		    k, done_err[100 + k]);

		cr_assert_eq(spool_load(s, id, &e), 0, "case %zu: load", k);
		cr_assert_eq(e.nrcpts, env.nrcpts, "case %zu", k);
		cr_assert_str_eq(e.rcpts[e.nrcpts - 1].addr,
		    rc[env.nrcpts - 1].addr);
		spool_envelope_free(&e);
		cr_assert_eq(spool_open_body(s, id, &fd, &off, &blen), 0);
		cr_assert_eq(blen, len, "case %zu: body length %llu, want %zu",
		    k, (unsigned long long)blen, len);
		got = xmalloc(len + 1);
		cr_assert_eq(pread(fd, got, len, off), (ssize_t)len);
		cr_assert(len == 0 || memcmp(got, body, len) == 0,
		    "case %zu: body differs", k);
		close(fd);
		free(got);
		free(body);
	}
	spool_close(s);

	/* Recovery checks every CRC. */
	{
		struct recovered	rec;

		s = open_spool();
		cr_assert_eq(recover_into(s, &rec), (int)(2 + nitems(sizes)));
		recovered_free(&rec);
		spool_close(s);
	}
	for (i = 0; i < n; i++)
		free(addrs[i]);
	free(addrs);
	free(rc);
}
