#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "procfs.h"

/* Reads state and ppid from /proc/<pid>/stat; false if gone. */
static bool stat_of(pid_t pid, char *state, pid_t *ppid, long long *ticks)
{
	char path[64], buf[1024], *p;
	unsigned long utime, stime;
	int ppid_i;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the command name may hold spaces */
	if (!p || sscanf(p + 2, "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
	                 state, &ppid_i, &utime, &stime) != 4)
		return false;
	*ppid = ppid_i;
	if (ticks)
		*ticks = (long long)(utime + stime);
	return true;
}

size_t proc_children(pid_t pid, pid_t *out, size_t max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	size_t n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d))) {
		pid_t p, pp;
		char st;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		p = (pid_t)atoi(e->d_name);
		if (stat_of(p, &st, &pp, NULL) && pp == pid && st != 'Z' &&
		    n < max)
			out[n++] = p;
	}
	closedir(d);
	return n;
}

size_t proc_descendants(pid_t pid, pid_t *out, size_t max)
{
	size_t n = proc_children(pid, out, max);

	for (size_t i = 0; i < n && n < max; i++)
		n += proc_children(out[i], out + n, max - n);
	return n;
}

bool proc_parent(pid_t pid, pid_t *ppid)
{
	char st;

	return stat_of(pid, &st, ppid, NULL) && st != 'Z' && st != 'X';
}

bool proc_alive(pid_t pid)
{
	pid_t pp;

	return proc_parent(pid, &pp);
}

long long proc_cpu_ticks(pid_t pid)
{
	long long t;
	pid_t pp;
	char st;

	return stat_of(pid, &st, &pp, &t) ? t : -1;
}

long long proc_cpu_ticks_all(const pid_t *pids, size_t n)
{
	long long sum = 0;

	for (size_t i = 0; i < n; i++)
		sum += proc_cpu_ticks(pids[i]);
	return sum;
}

static int count_dir(const char *path, const char *prefix)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' &&
		    strncmp(e->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

int proc_fd_count(void)
{
	return count_dir("/proc/self/fd", "") - 1; /* the DIR's own fd */
}

int devshm_count(pid_t creator)
{
	char prefix[32] = "shmpool";

	if (creator > 0)
		snprintf(prefix, sizeof(prefix), "shmpool-%d-", (int)creator);
	return count_dir("/dev/shm", prefix);
}

int devshm_settled(void)
{
	int n = devshm_count(0);

	for (int i = 0; n > 0 && i < 100; i++) {
		struct timespec ts = { 0, 10000000 };

		nanosleep(&ts, NULL);
		n = devshm_count(0);
	}
	return n;
}
