/*
 * Processes: Python's multiprocessing.Process for C. shp_process_start
 * forks a child that runs fn(arg) and exits with what it returns; join
 * waits for it, with a timeout, and keeps its wait status.
 *
 * A handle lives in the private memory of the process that started the
 * child (the starter). Its forks get a copy, good for nothing but free: the
 * child is not theirs to wait for, and their copy of the state may be
 * stale: kill from there could hit a process that was given the pid since.
 *
 * Handle state word (starter's memory, moved under lock only):
 *   RUNNING -> EXITED   the child was reaped here; wstatus holds its status
 *   RUNNING -> LOST     waitpid said ECHILD: somebody else reaped it
 *                       (SIGCHLD set to SIG_IGN, or a wait(-1) elsewhere);
 *                       its status is unknown
 * Only the thread that calls waitpid moves it, and until then the child
 * stays at least a zombie: while RUNNING its pid names it and nobody else,
 * so kill() under the same lock never signals a process that took the pid
 * over. Readers without the lock (wait_status) load it with J2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmpool.h"

#include "atomic.h"
#include "futex.h"

/* Without a pidfd, join polls waitpid: sleeps from NAP_MIN_NS, doubling up
 * to NAP_MAX_NS, so that a quick child is seen quickly and a slow one costs
 * a thousand wake-ups a second at most. */
#define NAP_MIN_NS 10000
#define NAP_MAX_NS 1000000

enum { RUNNING, EXITED, LOST };

struct shp_process {
	pthread_mutex_t lock; /* serialises waitpid and kill */
	pid_t pid;
	pid_t starter; /* getpid() of the process that forked it */
	int pidfd;     /* readable once the child has exited; -1: none */
	int wstatus;   /* once EXITED */
	int state;
};

/* A pidfd for pid (Linux 5.3 and later); -1 when the kernel has none, or no
 * descriptor is left: join then polls. Opened before the child can be
 * reaped, so it names the child and nothing else. */
static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	/* Not asked again once the kernel said it has none. */
	static int missing;
	long fd;

	if (SHP_LOAD(missing))
		return -1;
	fd = syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0 && errno == ENOSYS)
		SHP_STORE(missing, 1);
	return fd < 0 ? -1 : (int)fd;
#else
	(void)pid;
	return -1;
#endif
}

int shp_process_start(shp_process **out, shp_process_fn fn, void *arg)
{
	struct shp_process *p;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!fn)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	err = -pthread_mutex_init(&p->lock, NULL);
	if (err) {
		free(p);
		return err;
	}
	p->starter = getpid();
	/* What is still buffered would be written twice, by us and by the
	 * child's flush at its exit (CPython flushes here too). */
	(void)fflush(stdout);
	(void)fflush(stderr);
	p->pid = fork();
	if (p->pid == 0) {
		int ret = fn(arg);

		/* Nobody to tell if these fail: the exit status is fn's. */
		(void)fflush(stdout);
		(void)fflush(stderr);
		/* Not exit(): the parent's atexit handlers and the rest of
		 * its stdio buffers belong to the parent. */
		_exit(ret & 0xff);
	}
	if (p->pid < 0) {
		err = -errno;
		pthread_mutex_destroy(&p->lock);
		free(p);
		return err;
	}
	p->pidfd = open_pidfd(p->pid);
	*out = p;
	return 0;
}

/* Reaps the child if it has exited. 0: exited (now or before); -ECHILD:
 * lost; -EAGAIN: still running. */
static int reap(struct shp_process *p)
{
	int err, st;

	pthread_mutex_lock(&p->lock);
	if (p->state == RUNNING) {
		pid_t r = waitpid(p->pid, &st, WNOHANG);

		if (r == p->pid) {
			p->wstatus = st;
			/* J1: the status before the state; pairs with J2. */
			shp__smp_release();
			SHP_STORE(p->state, EXITED);
		} else if (r < 0 && errno == ECHILD) {
			SHP_STORE(p->state, LOST);
		}
	}
	err = p->state == EXITED ? 0 : p->state == LOST ? -ECHILD : -EAGAIN;
	pthread_mutex_unlock(&p->lock);
	return err;
}

static struct timespec ns_to_ts(int64_t ns)
{
	return (struct timespec){ .tv_sec = (time_t)(ns / 1000000000),
		                  .tv_nsec = (long)(ns % 1000000000) };
}

/* Sleeps until the child may have exited, or until deadline (-1: none).
 * *nap is the polling fallback's next sleep. */
static void await_exit(struct shp_process *p, int64_t deadline, int64_t *nap)
{
	struct timespec ts;
	int64_t left = -1;

	if (deadline >= 0) {
		left = deadline - shp__now_ns();
		if (left <= 0)
			return;
	}
	if (p->pidfd >= 0) {
		struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };

		ts = ns_to_ts(left);
		/* Several joiners may poll the same pidfd: it stays readable
		 * once the child has exited, reaped or not. */
		if (ppoll(&pfd, 1, left >= 0 ? &ts : NULL, NULL) >= 0 ||
		    errno == EINTR)
			return;
	}
	if (left < 0 || left > *nap)
		left = *nap;
	ts = ns_to_ts(left);
	nanosleep(&ts, NULL);
	*nap = *nap < NAP_MAX_NS / 2 ? *nap * 2 : NAP_MAX_NS;
}

int shp_process_join(shp_process *p, int64_t timeout_ns)
{
	int64_t deadline, nap = NAP_MIN_NS;
	int err;

	if (!p)
		return -EINVAL;
	if (getpid() != p->starter)
		return -ECHILD;
	deadline = shp__deadline_ns(timeout_ns);
	while ((err = reap(p)) == -EAGAIN) {
		if (deadline >= 0 && shp__now_ns() >= deadline)
			return -ETIMEDOUT;
		await_exit(p, deadline, &nap);
	}
	return err;
}

int shp_process_wait_status(const shp_process *p, int *wstatus)
{
	int state;

	if (!p || !wstatus)
		return -EINVAL;
	state = SHP_LOAD(p->state);
	/* J2: the state before the status; pairs with J1. */
	shp__smp_acquire();
	if (state == LOST)
		return -ECHILD;
	if (state != EXITED)
		return -EAGAIN;
	*wstatus = p->wstatus;
	return 0;
}

int shp_process_pid(const shp_process *p)
{
	return p ? p->pid : -EINVAL;
}

int shp_process_kill(shp_process *p, int sig)
{
	int err = 0;

	if (!p)
		return -EINVAL;
	if (getpid() != p->starter)
		return -ECHILD;
	pthread_mutex_lock(&p->lock);
	if (p->state != RUNNING)
		err = -ESRCH;
	else if (kill(p->pid, sig) < 0)
		err = -errno;
	pthread_mutex_unlock(&p->lock);
	return err;
}

void shp_process_free(shp_process *p)
{
	int st;

	if (!p)
		return;
	if (getpid() == p->starter) {
		if (p->state == RUNNING) {
			kill(p->pid, SIGKILL);
			/* SIGKILL cannot be caught: this returns. */
			while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR)
				;
		}
		pthread_mutex_destroy(&p->lock);
	}
	/* In a fork the lock may be a copy held by a thread that did not
	 * come along: it is dropped with the memory, not destroyed. */
	if (p->pidfd >= 0)
		close(p->pidfd);
	free(p);
}
