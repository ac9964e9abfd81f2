/*
 * pssmon.c: peak proportional set size (PSS) of a group of processes, for
 * bench/run.
 *
 * Every interval it reads the pids listed in a file (a cgroup's
 * cgroup.procs, so every process of one side is counted, however it was
 * forked) or the single pid given with -p, sums "Pss:" from each
 * /proc/PID/smaps_rollup, and keeps the largest sum seen.  A process that
 * exits between the listing and the read is skipped.  On SIGTERM or
 * SIGINT it prints one line, "peak_pss_kib=N procs_at_peak=N
 * max_procs=N samples=N", and exits 0.  Fixed-size buffers only: a line
 * of smaps_rollup longer than the buffer is split, and only the "Pss:"
 * line is parsed.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t	pssmon_stop;

static void
pssmon_onsig(int sig)
{
	(void)sig;
	pssmon_stop = 1;
}

/* PSS of one process in KiB, or -1 when it is gone. */
static long
pssmon_pid(long pid)
{
	char	path[64], line[256];
	long	kib = -1;
	FILE	*fp;

	snprintf(path, sizeof(path), "/proc/%ld/smaps_rollup", pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, "Pss:", 4) == 0) {
			kib = strtol(line + 4, NULL, 10);
			break;
		}
	fclose(fp);
	return kib;
}

int
main(int argc, char *argv[])
{
	struct sigaction	 sa;
	struct timespec		 ts;
	const char		*procs = NULL;
	char			 line[64];
	long			 pid = 0, kib, sum, n, peak = 0, peakn = 0;
	long			 maxn = 0, samples = 0, interval_ms = 200;
	int			 ch;
	FILE			*fp;

	while ((ch = getopt(argc, argv, "i:p:")) != -1) {
		switch (ch) {
		case 'i':
			interval_ms = strtol(optarg, NULL, 10);
			break;
		case 'p':
			pid = strtol(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind == 1)
		procs = argv[optind];
	if ((procs == NULL) == (pid <= 0) || interval_ms < 10)
		goto usage;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = pssmon_onsig;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	ts.tv_sec = interval_ms / 1000;
	ts.tv_nsec = (interval_ms % 1000) * 1000000L;

	while (!pssmon_stop) {
		sum = 0;
		n = 0;
		if (procs == NULL) {
			if ((kib = pssmon_pid(pid)) >= 0) {
				sum = kib;
				n = 1;
			}
		} else if ((fp = fopen(procs, "r")) != NULL) {
			while (fgets(line, sizeof(line), fp) != NULL)
				if ((kib = pssmon_pid(strtol(line, NULL,
				    10))) >= 0) {
					sum += kib;
					n++;
				}
			fclose(fp);
		}
		samples++;
		if (sum > peak) {
			peak = sum;
			peakn = n;
		}
		if (n > maxn)
			maxn = n;
		while (nanosleep(&ts, NULL) == -1 && errno == EINTR &&
		    !pssmon_stop)
			;
	}
	printf("peak_pss_kib=%ld procs_at_peak=%ld max_procs=%ld samples=%ld\n",
	    peak, peakn, maxn, samples);
	return 0;

usage:
	fprintf(stderr, "usage: pssmon [-i ms] cgroup.procs | -p pid\n");
	return 2;
}
