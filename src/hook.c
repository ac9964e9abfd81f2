/*
 * hook.c: the failure-escalation hook runner (SPEC section 6, STYLE 2.11,
 * SECURITY-CASES OUT-37).
 *
 * Each escalation is a job keyed by (queue id, event).  Its JSON is built
 * once by hook_run(), so every retry sends the same bytes.  A run is a
 * posix_spawn() of the absolute command with no shell, a fixed argv, an
 * environment of PATH, POSTERN_EVENT and POSTERN_QUEUE_ID only, its own
 * process group, an empty signal mask with default dispositions, cwd "/",
 * and no descriptor but a stdin pipe and one stdout/stderr pipe (every other
 * fd is closed in the child, belt and braces over O_CLOEXEC).  stdin is
 * written from the loop through a non-blocking pipe, so a child that never
 * reads cannot block the daemon; output is drained and its first
 * HOOK_OUTPUT_MAX bytes kept for the log.  Children are reaped from a
 * SIGCHLD event with waitpid() on our own pids only, since other code may
 * spawn too.  At the timeout the whole group gets SIGKILL.
 *
 * Ownership: the hook owns its jobs, a job owns its JSON, events, pipes and
 * output buffer.  A job is in h->jobs from hook_run() until success or
 * hook_free(); it is on h->ready (waiting for a slot), on h->running, or on
 * neither (waiting for its retry timer).  A done callback may free the
 * hook: h->depth defers the final free until the callback stack unwinds.
 */
#include "compat.h"

#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "hook.h"
#include "log.h"
#include "stats.h"
#include "util.h"

/* Seconds between waitpid() polls once a timed-out group was killed, in
 * case the SIGCHLD was consumed by someone else. */
#define HOOK_REAP_POLL		1
/* How long hook_free() waits for killed children to be reaped. */
#define HOOK_FREE_WAIT_MS	2000
/* Bytes written to a child's stdin per write(2). */
#define HOOK_WRITE_CHUNK	65536
/* Bytes of the first output line quoted in a log line. */
#define HOOK_LOG_OUTPUT_MAX	200

enum hook_job_state {
	HOOK_J_READY,		/* on h->ready, waiting for a slot */
	HOOK_J_RUNNING,		/* on h->running */
	HOOK_J_WAITING		/* on no list, retry timer armed */
};

struct hook_job {
	TAILQ_ENTRY(hook_job)	 entry;		/* h->ready or h->running */
	struct hook		*h;		/* borrowed */
	uint64_t		 key;
	char			 qid[QUEUE_ID_LEN + 1];
	char			 event[8];	/* "failed" / "expired" */
	char			*json;		/* owned, ends in '\n' */
	size_t			 jsonlen;
	hook_done_cb		 done_cb;
	uint64_t		 cookie;
	void			*arg;		/* borrowed */
	enum hook_job_state	 state;
	int			 runs;		/* incl. failed spawns */
	int			 failures;
	struct event		*timer;		/* owned: retry or timeout */

	/* While running. */
	pid_t			 pid;
	bool			 timed_out;
	int			 in_fd;		/* -1 once closed */
	size_t			 in_off;
	struct event		*ev_in;		/* owned */
	int			 out_fd;	/* -1 once closed */
	struct event		*ev_out;	/* owned */
	char			*out;		/* owned, HOOK_OUTPUT_MAX + 1 */
	size_t			 outlen;
};
TAILQ_HEAD(hook_jobs, hook_job);

struct hook {
	struct event_base	*base;		/* borrowed */
	char			*command;	/* owned */
	int			 timeout_s;
	int			 retry_base_s;
	struct event		*ev_chld;	/* owned */
	struct util_map		 jobs;		/* key -> job, every job */
	struct hook_jobs	 ready;
	struct hook_jobs	 running;
	size_t			 njobs;
	size_t			 nrunning;
	int			 depth;		/* callbacks on the stack */
	bool			 freeing;
};

static int	 hook_check_command(const char *, bool, char *, size_t);
static uint64_t	 hook_key(qid_t, const char *);
static void	 hook_start_ready(struct hook *);
static void	 hook_spawn(struct hook_job *);
static int	 hook_pipe(int [2], bool);
static int	 hook_fd_above2(int);
static void	 hook_stdin_cb(evutil_socket_t, short, void *);
static void	 hook_output_cb(evutil_socket_t, short, void *);
static void	 hook_output_read(struct hook_job *);
static void	 hook_sigchld_cb(evutil_socket_t, short, void *);
static void	 hook_timer_cb(evutil_socket_t, short, void *);
static bool	 hook_reap(struct hook_job *);
static void	 hook_finish(struct hook_job *, int);
static void	 hook_defer(struct hook_job *, const char *);
static void	 hook_stop_child(struct hook_job *);
static void	 hook_job_free(struct hook_job *);
static void	 hook_leave(struct hook *);
static void	 hook_destroy(struct hook *);
static ssize_t	 hook_write(int, const void *, size_t);
static json_t	*hook_json_str(const char *);
static size_t	 hook_utf8_len(const unsigned char *);

/* Create a runner for command on base; NULL and err on a bad argument. */
struct hook *
hook_new(struct event_base *base, const char *command, int timeout_s,
    int retry_base_s, char *err, size_t errlen)
{
	struct hook	*h;
	char		 why[PATH_MAX + 64];

	if (base == NULL || command == NULL) {
		snprintf(err, errlen, "hook: no event base or command");
		return (NULL);
	}
	if (strlen(command) >= PATH_MAX) {
		snprintf(err, errlen, "hook: command path too long");
		return (NULL);
	}
	if (timeout_s < 1 || timeout_s > 86400) {
		snprintf(err, errlen, "hook: timeout %d, want 1..86400",
		    timeout_s);
		return (NULL);
	}
	if (retry_base_s < 1 || retry_base_s > HOOK_RETRY_MAX) {
		snprintf(err, errlen, "hook: retry base %d, want 1..%d",
		    retry_base_s, HOOK_RETRY_MAX);
		return (NULL);
	}
	if (hook_check_command(command, false, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "escalation.command: %s", why);
		return (NULL);
	}

	h = xcalloc(1, sizeof(*h));
	h->base = base;
	h->command = xstrdup(command);
	h->timeout_s = timeout_s;
	h->retry_base_s = retry_base_s;
	util_map_init(&h->jobs);
	TAILQ_INIT(&h->ready);
	TAILQ_INIT(&h->running);
	h->ev_chld = evsignal_new(base, SIGCHLD, hook_sigchld_cb, h);
	if (h->ev_chld == NULL || evsignal_add(h->ev_chld, NULL) == -1) {
		snprintf(err, errlen, "hook: cannot watch SIGCHLD");
		if (h->ev_chld != NULL)
			event_free(h->ev_chld);
		util_map_clear(&h->jobs);
		free(h->command);
		free(h);
		return (NULL);
	}
	return (h);
}

/*
 * Refuse a command that is not an absolute path to a regular, executable
 * file that only its owner can write: whoever can write it runs code as
 * the daemon's user.  A missing file is accepted when must_exist is false
 * (hook_new: it may be installed later; every run then fails and retries).
 */
static int
hook_check_command(const char *path, bool must_exist, char *err,
    size_t errlen)
{
	struct stat	st;

	if (path[0] != '/') {
		snprintf(err, errlen, "%s: not an absolute path", path);
		return (-1);
	}
	if (stat(path, &st) == -1) {
		if (errno == ENOENT && !must_exist)
			return (0);
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return (-1);
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		return (-1);
	}
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		snprintf(err, errlen, "%s: writable by group or others", path);
		return (-1);
	}
	if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) {
		snprintf(err, errlen, "%s: not executable", path);
		return (-1);
	}
	return (0);
}

/* The job key: non-zero, one per queue id and event; 0 if event is bad. */
static uint64_t
hook_key(qid_t id, const char *event)
{
	if (event == NULL)
		return (0);
	if (strcmp(event, "failed") == 0)
		return (((uint64_t)id << 2) | 1);
	if (strcmp(event, "expired") == 0)
		return (((uint64_t)id << 2) | 2);
	return (0);
}

/* Queue an escalation and start it if a slot is free. */
int
hook_run(struct hook *h, const struct hook_event *ev, hook_done_cb done_cb,
    uint64_t cookie, void *arg)
{
	struct hook_job	*job;
	char		*json;
	uint64_t	 key;

	if (h == NULL || ev == NULL || h->freeing)
		return (-1);
	if ((key = hook_key(ev->id, ev->event)) == 0) {
		log_warnx("hook: event \"%s\" is not failed or expired",
		    ev->event == NULL ? "" : ev->event);
		return (-1);
	}
	if (util_map_get(&h->jobs, key) != NULL) {
		log_debug("hook: %08X %s already pending", (unsigned)ev->id,
		    ev->event);
		return (0);
	}
	if (h->njobs >= HOOK_PENDING_MAX) {
		log_warnx("hook: %zu escalations pending, refusing more",
		    h->njobs);
		return (-1);
	}
	if ((json = hook_event_json(ev)) == NULL)
		return (-1);

	job = xcalloc(1, sizeof(*job));
	job->h = h;
	job->key = key;
	util_qid_format(job->qid, ev->id);
	strlcpy(job->event, ev->event, sizeof(job->event));
	/* Our own copy with the newline, so the run never depends on
	 * jansson's allocator. */
	job->jsonlen = strlen(json);
	job->json = xmalloc(job->jsonlen + 2);
	memcpy(job->json, json, job->jsonlen);
	free(json);
	job->json[job->jsonlen++] = '\n';
	job->json[job->jsonlen] = '\0';
	job->done_cb = done_cb;
	job->cookie = cookie;
	job->arg = arg;
	job->pid = -1;
	job->in_fd = job->out_fd = -1;
	job->timer = evtimer_new(h->base, hook_timer_cb, job);
	if (job->timer == NULL) {
		free(job->json);
		free(job);
		return (-1);
	}
	util_map_put(&h->jobs, key, job);
	h->njobs++;
	stats.escalations_pending++;

	job->state = HOOK_J_READY;
	TAILQ_INSERT_TAIL(&h->ready, job, entry);
	hook_start_ready(h);
	return (0);
}

/* Start ready jobs, oldest first, while slots are free. */
static void
hook_start_ready(struct hook *h)
{
	struct hook_job	*job;

	while (!h->freeing && h->nrunning < HOOK_RUNNING_MAX &&
	    (job = TAILQ_FIRST(&h->ready)) != NULL) {
		TAILQ_REMOVE(&h->ready, job, entry);
		hook_spawn(job);
	}
}

/*
 * Start one run of job.  On failure the job goes back to waiting for a
 * retry; no callback runs from here.
 */
static void
hook_spawn(struct hook_job *job)
{
	struct hook			*h = job->h;
	posix_spawn_file_actions_t	 fa;
	posix_spawnattr_t		 attr;
	sigset_t			 none, all;
	struct timeval			 tv;
	char				 env_event[32], env_qid[32];
	char				 why[PATH_MAX + 128];
	char				*argv[2], *envp[4];
	int				 in[2] = { -1, -1 };
	int				 out[2] = { -1, -1 };
	int				 rc;
	pid_t				 pid;

	job->runs++;
	if (hook_check_command(h->command, true, why, sizeof(why)) == -1) {
		hook_defer(job, why);
		return;
	}
	if (hook_pipe(in, true) == -1 || hook_pipe(out, false) == -1) {
		snprintf(why, sizeof(why), "cannot make a pipe: %s",
		    strerror(errno));
		if (in[0] != -1) {
			close(in[0]);
			close(in[1]);
		}
		hook_defer(job, why);
		return;
	}

	snprintf(env_event, sizeof(env_event), "POSTERN_EVENT=%s", job->event);
	snprintf(env_qid, sizeof(env_qid), "POSTERN_QUEUE_ID=%s", job->qid);
	envp[0] = (char *)"PATH=/usr/bin:/bin";
	envp[1] = env_event;
	envp[2] = env_qid;
	envp[3] = NULL;
	argv[0] = h->command;
	argv[1] = NULL;

	/*
	 * The pipe ends are all >= 3 (hook_pipe), so the dup2s cannot clobber
	 * one another, and closefrom(3) then drops anything that escaped
	 * O_CLOEXEC, including the child's copies of the pipe ends.
	 */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDERR_FILENO);
	posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
	posix_spawn_file_actions_addchdir_np(&fa, "/");

	/* A new group to kill at the timeout; signals as a fresh process. */
	sigemptyset(&none);
	sigfillset(&all);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &all);

	rc = posix_spawn(&pid, h->command, &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(in[0]);
	close(out[1]);
	if (rc != 0) {
		close(in[1]);
		close(out[0]);
		snprintf(why, sizeof(why), "cannot run %s: %s", h->command,
		    strerror(rc));
		hook_defer(job, why);
		return;
	}

	job->state = HOOK_J_RUNNING;
	TAILQ_INSERT_TAIL(&h->running, job, entry);
	h->nrunning++;
	job->pid = pid;
	job->timed_out = false;
	job->in_fd = in[1];
	job->in_off = 0;
	job->out_fd = out[0];
	job->out = xmalloc(HOOK_OUTPUT_MAX + 1);
	job->outlen = 0;
	job->ev_in = event_new(h->base, job->in_fd, EV_WRITE | EV_PERSIST,
	    hook_stdin_cb, job);
	job->ev_out = event_new(h->base, job->out_fd, EV_READ | EV_PERSIST,
	    hook_output_cb, job);
	if (job->ev_in == NULL || job->ev_out == NULL)
		fatalx("hook: event_new failed");
	event_add(job->ev_in, NULL);
	event_add(job->ev_out, NULL);
	tv.tv_sec = h->timeout_s;
	tv.tv_usec = 0;
	evtimer_add(job->timer, &tv);
	log_debug("%s: escalation event=%s, run %d, pid %ld", job->qid,
	    job->event, job->runs, (long)pid);
}

/*
 * A close-on-exec pipe whose ends are >= 3.  The parent's end (the write
 * end for stdin, the read end for output) is non-blocking; the child's is
 * left blocking, as a program expects of its stdin and stdout.
 */
static int
hook_pipe(int fds[2], bool parent_writes)
{
	int	p[2], i, fl, parent = parent_writes ? 1 : 0;

	if (pipe2(p, O_CLOEXEC) == -1)
		return (-1);
	for (i = 0; i < 2; i++) {
		if ((p[i] = hook_fd_above2(p[i])) == -1) {
			if (i == 1)
				close(p[0]);
			return (-1);
		}
	}
	if ((fl = fcntl(p[parent], F_GETFL)) == -1 ||
	    fcntl(p[parent], F_SETFL, fl | O_NONBLOCK) == -1) {
		close(p[0]);
		close(p[1]);
		return (-1);
	}
	fds[0] = p[0];
	fds[1] = p[1];
	return (0);
}

/* Move fd above stderr: if 0..2 were closed, a pipe end could land there
 * and be clobbered by the child's dup2s. */
static int
hook_fd_above2(int fd)
{
	int	nfd;

	if (fd > STDERR_FILENO)
		return (fd);
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
	close(fd);
	return (nfd);
}

/*
 * write(2) to a pipe without dying of SIGPIPE when the child has gone:
 * block SIGPIPE around the call and consume the one it raised, unless one
 * was already pending for someone else.
 */
static ssize_t
hook_write(int fd, const void *buf, size_t len)
{
	static const struct timespec	 zero = { 0, 0 };
	sigset_t			 pipe_set, old, pending;
	bool				 was_pending;
	ssize_t				 n;
	int				 saved;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	n = write(fd, buf, len);
	saved = errno;
	if (n == -1 && saved == EPIPE && !was_pending) {
		while (sigtimedwait(&pipe_set, NULL, &zero) == -1 &&
		    errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = saved;
	return (n);
}

/* The child's stdin is writable: send more JSON, close it when done. */
static void
hook_stdin_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hook_job	*job = arg;
	size_t		 left;
	ssize_t		 n;

	while (job->in_off < job->jsonlen) {
		left = job->jsonlen - job->in_off;
		if (left > HOOK_WRITE_CHUNK)
			left = HOOK_WRITE_CHUNK;
		n = hook_write(fd, job->json + job->in_off, left);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* EPIPE: the hook closed stdin; its exit decides. */
			log_debug("%s: escalation stdin: %s", job->qid,
			    strerror(errno));
			break;
		}
		job->in_off += (size_t)n;
	}
	event_free(job->ev_in);
	job->ev_in = NULL;
	close(job->in_fd);
	job->in_fd = -1;
}

/* Output is readable (or at EOF). */
static void
hook_output_cb(evutil_socket_t fd, short what, void *arg)
{
	hook_output_read(arg);
}

/*
 * Drain the output pipe without blocking: keep the first HOOK_OUTPUT_MAX
 * bytes, drop the rest, close at EOF.  A grandchild that keeps the pipe open
 * delays the EOF, never the run's end (that is the child's exit).
 */
static void
hook_output_read(struct hook_job *job)
{
	char	buf[4096];
	size_t	room;
	ssize_t	n;

	if (job->out_fd == -1)
		return;
	for (;;) {
		n = read(job->out_fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0)
			break;
		room = HOOK_OUTPUT_MAX - job->outlen;
		if ((size_t)n < room)
			room = (size_t)n;
		memcpy(job->out + job->outlen, buf, room);
		job->outlen += room;
	}
	event_free(job->ev_out);
	job->ev_out = NULL;
	close(job->out_fd);
	job->out_fd = -1;
}

/*
 * Some child exited.  Signals coalesce and other code may spawn as well, so
 * ask each of our own pids; finishing one may run a done callback that
 * starts or frees runs, hence the restart and the freeing check.
 */
static void
hook_sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
	struct hook	*h = arg;
	struct hook_job	*job;
	bool		 again = true;

	h->depth++;
	while (again && !h->freeing) {
		again = false;
		TAILQ_FOREACH(job, &h->running, entry) {
			if (hook_reap(job)) {
				again = true;
				break;
			}
		}
	}
	hook_leave(h);
}

/*
 * The retry timer of a waiting job, or the timeout of a running one.
 * At the timeout the group is killed with SIGKILL; then this polls until
 * the child is reaped, in case its SIGCHLD went to another reaper.
 */
static void
hook_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct hook_job	*job = arg;
	struct hook	*h = job->h;
	struct timeval	 tv = { HOOK_REAP_POLL, 0 };

	h->depth++;
	if (job->state == HOOK_J_WAITING) {
		job->state = HOOK_J_READY;
		TAILQ_INSERT_TAIL(&h->ready, job, entry);
		hook_start_ready(h);
	} else if (job->state == HOOK_J_RUNNING && !hook_reap(job)) {
		if (!job->timed_out) {
			job->timed_out = true;
			if (kill(-job->pid, SIGKILL) == -1 && errno != ESRCH)
				log_warn("%s: escalation: kill group %ld",
				    job->qid, (long)job->pid);
		}
		if (!hook_reap(job))
			evtimer_add(job->timer, &tv);
	}
	hook_leave(h);
}

/* waitpid() our one child; finish the run and return true if it ended. */
static bool
hook_reap(struct hook_job *job)
{
	pid_t	r;
	int	status;

	do {
		r = waitpid(job->pid, &status, WNOHANG);
	} while (r == -1 && errno == EINTR);
	if (r == 0)
		return (false);
	if (r == -1) {
		/* ECHILD: someone else reaped it; the status is lost. */
		log_warn("%s: escalation: waitpid %ld", job->qid,
		    (long)job->pid);
		status = -1;
	}
	hook_finish(job, status);
	return (true);
}

/*
 * A run ended with wait status (-1: unknown).  Exit 0 within the timeout is
 * success: free the job, refill the slots, then run the done callback as
 * the very last thing, since it may free the hook.  Anything else defers.
 */
static void
hook_finish(struct hook_job *job, int status)
{
	struct hook	*h = job->h;
	hook_done_cb	 cb;
	uint64_t	 cookie;
	void		*arg;
	char		 why[HOOK_LOG_OUTPUT_MAX * 4 + 128];
	char		 line[HOOK_LOG_OUTPUT_MAX * 4 + 8];
	const char	*nl;
	size_t		 len;

	hook_output_read(job);
	line[0] = '\0';
	if (job->out != NULL && job->outlen > 0) {
		nl = memchr(job->out, '\n', job->outlen);
		len = nl != NULL ? (size_t)(nl - job->out) : job->outlen;
		if (len > HOOK_LOG_OUTPUT_MAX)
			len = HOOK_LOG_OUTPUT_MAX;
		line[0] = ':';
		line[1] = ' ';
		util_escape(line + 2, sizeof(line) - 2, job->out, len);
		if (len == 0)
			line[0] = '\0';
	}
	hook_stop_child(job);

	if (job->timed_out) {
		snprintf(why, sizeof(why), "hook timed out after %ds, process "
		    "group killed%s", h->timeout_s, line);
	} else if (status == -1) {
		snprintf(why, sizeof(why), "hook exit status lost");
	} else if (WIFSIGNALED(status)) {
		snprintf(why, sizeof(why), "hook killed by signal %d%s",
		    WTERMSIG(status), line);
	} else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		snprintf(why, sizeof(why), "hook exit %d%s",
		    WEXITSTATUS(status), line);
	} else if (WIFEXITED(status)) {
		stats.escalations_sent++;
		log_info("%s: escalation event=%s, runs=%d, status=sent "
		    "(hook exit 0)", job->qid, job->event, job->runs);
		cb = job->done_cb;
		cookie = job->cookie;
		arg = job->arg;
		hook_job_free(job);
		hook_start_ready(h);
		if (cb != NULL)
			cb(cookie, arg);
		return;
	} else
		snprintf(why, sizeof(why), "hook wait status %#x", status);
	hook_defer(job, why);
	hook_start_ready(h);
}

/* A run failed: count it, log why, and arm the retry with backoff. */
static void
hook_defer(struct hook_job *job, const char *why)
{
	struct timeval	tv;
	int		delay, i;

	stats.escalations_failed++;
	job->failures++;
	delay = job->h->retry_base_s;
	for (i = 1; i < job->failures && delay < HOOK_RETRY_MAX; i++)
		delay *= 2;
	if (delay > HOOK_RETRY_MAX)
		delay = HOOK_RETRY_MAX;
	log_warnx("%s: escalation event=%s, runs=%d, status=deferred (%s), "
	    "retry in %ds", job->qid, job->event, job->runs, why, delay);
	job->state = HOOK_J_WAITING;
	tv.tv_sec = delay;
	tv.tv_usec = 0;
	evtimer_add(job->timer, &tv);
}

/* Release what a run holds (the child is reaped or abandoned). */
static void
hook_stop_child(struct hook_job *job)
{
	struct hook	*h = job->h;

	if (job->state == HOOK_J_RUNNING) {
		TAILQ_REMOVE(&h->running, job, entry);
		h->nrunning--;
	}
	evtimer_del(job->timer);
	if (job->ev_in != NULL) {
		event_free(job->ev_in);
		job->ev_in = NULL;
	}
	if (job->in_fd != -1) {
		close(job->in_fd);
		job->in_fd = -1;
	}
	if (job->ev_out != NULL) {
		event_free(job->ev_out);
		job->ev_out = NULL;
	}
	if (job->out_fd != -1) {
		close(job->out_fd);
		job->out_fd = -1;
	}
	free(job->out);
	job->out = NULL;
	job->outlen = 0;
	job->pid = -1;
	job->state = HOOK_J_WAITING;
}

/* Forget a job that is on no list and has no child. */
static void
hook_job_free(struct hook_job *job)
{
	struct hook	*h = job->h;

	util_map_del(&h->jobs, job->key);
	h->njobs--;
	stats.escalations_pending--;
	event_free(job->timer);
	free(job->json);
	free(job);
}

/* Leave a callback; the outermost one completes a deferred hook_free(). */
static void
hook_leave(struct hook *h)
{
	if (--h->depth == 0 && h->freeing)
		hook_destroy(h);
}

/* Kill every running group, reap, drop every job. */
void
hook_free(struct hook *h)
{
	struct hook_job	*job;
	struct timespec	 ts = { 0, 10 * 1000 * 1000 };
	uint64_t	 key;
	void		*val;
	size_t		 it;
	pid_t		 r;
	int		 waited;

	if (h == NULL || h->freeing)
		return;
	h->freeing = true;

	TAILQ_FOREACH(job, &h->running, entry) {
		if (kill(-job->pid, SIGKILL) == -1 && errno != ESRCH)
			log_warn("hook: kill group %ld", (long)job->pid);
	}
	/* Reap, bounded: a child stuck in the kernel is left behind. */
	while ((job = TAILQ_FIRST(&h->running)) != NULL) {
		for (waited = 0; waited < HOOK_FREE_WAIT_MS; waited += 10) {
			r = waitpid(job->pid, NULL, WNOHANG);
			if (r != 0 && !(r == -1 && errno == EINTR))
				break;
			nanosleep(&ts, NULL);
		}
		log_info("%s: escalation event=%s, status=deferred (hook "
		    "killed at shutdown)", job->qid, job->event);
		hook_stop_child(job);
	}
	TAILQ_INIT(&h->ready);
	it = 0;
	while (util_map_next(&h->jobs, &it, &key, &val)) {
		job = val;
		util_map_del(&h->jobs, key);
		h->njobs--;
		stats.escalations_pending--;
		event_free(job->timer);
		free(job->json);
		free(job);
	}
	if (h->ev_chld != NULL) {
		event_free(h->ev_chld);
		h->ev_chld = NULL;
	}
	if (h->depth == 0)
		hook_destroy(h);
}

/* The final free, once no callback of h is on the stack. */
static void
hook_destroy(struct hook *h)
{
	util_map_clear(&h->jobs);
	free(h->command);
	free(h);
}

/* Escalations held by h. */
size_t
hook_pending(const struct hook *h)
{
	return (h == NULL ? 0 : h->njobs);
}

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs,
 * no surrogates, nothing above U+10FFFF), or 0.  p is NUL-terminated, and
 * NUL is never a continuation byte, so no check reads past the end.
 */
static size_t
hook_utf8_len(const unsigned char *p)
{
	unsigned char	lo = 0x80, hi = 0xbf;
	size_t		n, i;

	if (p[0] < 0x80)
		return (1);
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return (0);
	if (p[1] < lo || p[1] > hi)
		return (0);
	for (i = 2; i < n; i++) {
		if (p[i] < 0x80 || p[i] > 0xbf)
			return (0);
	}
	return (n);
}

/*
 * A JSON string for peer text.  jansson escapes quotes, backslashes and
 * control characters but refuses bytes that are not UTF-8 (a remote reply
 * may hold any 8-bit text), so those become U+FFFD.
 */
static json_t *
hook_json_str(const char *s)
{
	const unsigned char	*p;
	json_t			*j;
	char			*clean, *q;
	size_t			 n;

	if (s == NULL)
		s = "";
	if ((j = json_string(s)) != NULL)
		return (j);
	clean = xreallocarray(NULL, strlen(s) + 1, 3);
	q = clean;
	for (p = (const unsigned char *)s; *p != '\0'; p += n) {
		if ((n = hook_utf8_len(p)) == 0) {
			memcpy(q, "\xef\xbf\xbd", 3);
			q += 3;
			n = 1;
		} else {
			memcpy(q, p, n);
			q += n;
		}
	}
	*q = '\0';
	j = json_string(clean);
	free(clean);
	return (j);
}

/* SPEC section 6's object, keys in SPEC order, compact. */
char *
hook_event_json(const struct hook_event *ev)
{
	const struct hook_rcpt	*r;
	json_t			*o, *rcpts, *ro;
	char			 qid[QUEUE_ID_LEN + 1], queued[32], failed[32];
	char			*s = NULL;
	size_t			 i;
	int			 bad = 0;

	if (ev == NULL)
		return (NULL);
	util_qid_format(qid, ev->id);
	util_iso8601(queued, sizeof(queued), ev->queued_at);
	util_iso8601(failed, sizeof(failed), ev->failed_at);

	if ((o = json_object()) == NULL || (rcpts = json_array()) == NULL) {
		json_decref(o);
		return (NULL);
	}
	bad |= json_object_set_new(o, "event", hook_json_str(ev->event));
	bad |= json_object_set_new(o, "queue_id", json_string(qid));
	bad |= json_object_set_new(o, "message_id",
	    hook_json_str(ev->message_id));
	bad |= json_object_set_new(o, "sender", hook_json_str(ev->sender));
	for (i = 0; i < ev->nrcpts; i++) {
		r = &ev->rcpts[i];
		if ((ro = json_object()) == NULL) {
			bad = -1;
			break;
		}
		bad |= json_object_set_new(ro, "address",
		    hook_json_str(r->address));
		bad |= json_object_set_new(ro, "dsn", hook_json_str(r->dsn));
		bad |= json_object_set_new(ro, "reply",
		    hook_json_str(r->reply));
		bad |= json_object_set_new(ro, "remote",
		    hook_json_str(r->remote));
		bad |= json_array_append_new(rcpts, ro);
	}
	bad |= json_object_set_new(o, "recipients", rcpts);
	bad |= json_object_set_new(o, "attempts",
	    json_integer(ev->attempts));
	bad |= json_object_set_new(o, "queued_at", json_string(queued));
	bad |= json_object_set_new(o, "failed_at", json_string(failed));
	bad |= json_object_set_new(o, "hostname", hook_json_str(ev->hostname));
	if (bad == 0)
		s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return (s);
}
