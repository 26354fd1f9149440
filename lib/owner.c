#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "owner.h"

#include "atomic.h"

/* The state letter and start time of a process, from /proc/<pid>/stat.
 * Returns false when there is no such process (or /proc is unreadable). */
static bool proc_stat(int pid, char *state, uint64_t *start)
{
	char path[32], buf[1024];
	const char *p;
	unsigned long long ticks;
	ssize_t len;
	int fd;

	(void)snprintf(path, sizeof(path), "/proc/%d/stat", pid); /* fits */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return false;
	buf[len] = '\0';
	/* The command name (field 2) may hold spaces and parentheses: the
	 * fields after it start at the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return false;
	/* After ") ": 3 state, then fields 4..21, then 22 starttime. The
	 * kernel writes that as an unsigned 64-bit decimal, never out of
	 * range. */
	/* NOLINTNEXTLINE(cert-err34-c) */
	if (sscanf(p + 2, "%c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s "
	                  "%*s %*s %*s %*s %*s %*s %llu",
	           state, &ticks) != 2)
		return false;
	*start = ticks;
	return true;
}

static uint64_t self_owner;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In the child of a fork the cached word names the parent. */
static void forget_self(void)
{
	self_owner = 0;
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, forget_self);
}

uint64_t shp__owner_self(void)
{
	uint64_t w;
	uint64_t start;
	char state;
	int pid;

	/* Set only once the fork handler is in place. */
	w = SHP_LOAD(self_owner);
	if (shp__likely(w))
		return w;
	pthread_once(&atfork_once, register_atfork);
	pid = getpid();
	if ((uint64_t)pid > SHP_OWNER_PID_MASK || !proc_stat(pid, &state, &start))
		return 0;
	w = start << SHP_OWNER_PID_BITS | (uint64_t)pid;
	/* Racing threads compute the same word. */
	SHP_STORE(self_owner, w);
	return w;
}

bool shp__owner_alive(uint64_t owner)
{
	uint64_t start;
	char state;

	if (!owner)
		return false;
	if (!proc_stat(shp__owner_pid(owner), &state, &start))
		return false;
	/* Z: exited, not yet reaped; X: being reaped. A different start
	 * time: the pid now belongs to somebody else. */
	return state != 'Z' && state != 'X' &&
	       start == owner >> SHP_OWNER_PID_BITS;
}
