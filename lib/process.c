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
 *   RUNNING -> LOST     somebody else reaped it: SIGCHLD set to SIG_IGN or
 *                       SA_NOCLDWAIT (the kernel reaps at the exit), or a
 *                       wait(-1) elsewhere, a SIGCHLD handler's say; its
 *                       status is unknown
 * Only the thread whose wait reaps, or learns of the loss, moves it; start
 * may create a handle LOST (below), before anybody else can see it.
 * Readers without the lock (wait_status) load it with J2.
 *
 * Which process a call reaches. Once somebody else has reaped the child,
 * its pid is free, and the kernel may give it to any new process, one of
 * ours included. A pidfd names the child itself, never a process that took
 * its pid: with one, signals go through pidfd_send_signal (ESRCH once the
 * child is reaped, nothing sent) and reaping through waitid(P_PIDFD)
 * (ECHILD once somebody else reaped it), so no call can reach another
 * process, or take another child's status. The pidfd is opened just after
 * the fork, when a quick child may already be reaped: pidfd_open then says
 * ESRCH, and the handle starts LOST. Only if its pid were also handed out
 * again in those microseconds (pid_max forks in between) would the pidfd
 * name the newcomer: not guarded against.
 *
 * Without a pidfd (before Linux 5.3, or no descriptor left), and for
 * reaping on 5.3, whose waitid takes no pidfd, the pid is all there is. While the program reaps its
 * children only through us, the child stays at least a zombie until our
 * waitpid, which runs under the lock as kill does: while RUNNING the pid is
 * the child's, and kill and waitpid reach it and nobody else. Once
 * somebody else has reaped it, nothing tells the child's pid from a
 * newcomer's: kill (from kill or free) may signal whoever took the pid,
 * and waitpid, when that is another child of ours, may wait for it (on
 * Linux 5.3, spinning on the readable pidfd) and take its status for this
 * child's. The docs warn of exactly that.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	/* Serialises reaping and signalling: by pid, a signal must not
	 * follow the reap that frees the pid (see the top). */
	pthread_mutex_t lock;
	pid_t pid;
	pid_t starter; /* getpid() of the process that forked it */
	/* Names the child, never a successor to its pid; readable once the
	 * child has exited. -1: none. Set in start, closed in free. */
	int pidfd;
	int wstatus;   /* once EXITED */
	int state;
};

/* waitid's P_PIDFD (Linux 5.4), which glibc names from 2.36 only. */
#define WAIT_PIDFD ((idtype_t)3)

/* A pidfd for pid (Linux 5.3 and later): a descriptor; -ESRCH when the
 * child was reaped already (see the top); another -errno when the kernel
 * has none, or no descriptor is left: join then polls. */
static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	/* Not asked again once the kernel said it has none. Set once,
	 * never cleared: threads that race ask the kernel once each. */
	static int missing;
	long fd;
	int err;

	if (SHP_LOAD(missing))
		return -ENOSYS;
	fd = syscall(SYS_pidfd_open, pid, 0);
	if (fd >= 0)
		return (int)fd;
	err = errno;
	if (err == ENOSYS)
		SHP_STORE(missing, 1);
	return -err;
#else
	(void)pid;
	return -ENOSYS;
#endif
}

int shp_process_start(shp_process **out, shp_process_fn fn, void *arg)
{
	struct shp_process *p;
	int err, fd;

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
	fd = open_pidfd(p->pid);
	p->pidfd = fd >= 0 ? fd : -1;
	/* Reaped already by somebody else: whoever has the pid now is not
	 * ours to signal or wait for. */
	if (fd == -ESRCH)
		p->state = LOST;
	*out = p;
	return 0;
}

/* The wait status waitpid would have given for what waitid told. */
static int wait_status_of(const siginfo_t *si)
{
	if (si->si_code == CLD_EXITED)
		return W_EXITCODE(si->si_status & 0xff, 0);
	if (si->si_code == CLD_DUMPED)
		return W_EXITCODE(0, si->si_status) | WCOREFLAG;
	return W_EXITCODE(0, si->si_status); /* CLD_KILLED */
}

/*
 * Waits for the child to exit (flags: WNOHANG, or 0 to block) and reaps
 * it. 1: reaped, *st its wait status; 0: it still runs (WNOHANG);
 * -ECHILD: it is not ours to reap any more; -EINTR.
 */
static int wait_child(const struct shp_process *p, int *st, int flags)
{
	/* Set once (the kernel has pidfd_open but not waitid on one:
	 * Linux 5.3), never cleared. */
	static int no_waitid_pidfd;
	pid_t r;

	if (p->pidfd >= 0 && !SHP_LOAD(no_waitid_pidfd)) {
		siginfo_t si;

		/* WNOHANG on a running child fills in nothing, and a
		 * zero si_pid is how that is told. */
		memset(&si, 0, sizeof(si));
		if (waitid(WAIT_PIDFD, (id_t)p->pidfd, &si, WEXITED | flags) ==
		    0) {
			if (si.si_pid == 0)
				return 0;
			*st = wait_status_of(&si);
			return 1;
		}
		if (errno != EINVAL)
			return -errno;
		SHP_STORE(no_waitid_pidfd, 1);
	}
	r = waitpid(p->pid, st, flags);
	if (r == p->pid)
		return 1;
	return r == 0 ? 0 : -errno;
}

/* Reaps the child if it has exited. 0: exited (now or before); -ECHILD:
 * lost; -EAGAIN: still running. */
static int reap(struct shp_process *p)
{
	int err, st = 0;

	pthread_mutex_lock(&p->lock);
	if (p->state == RUNNING) {
		int r = wait_child(p, &st, WNOHANG);

		if (r == 1) {
			p->wstatus = st;
			/* J1: the status before the state; pairs with J2. */
			shp__smp_release();
			SHP_STORE(p->state, EXITED);
		} else if (r == -ECHILD) {
			SHP_STORE(p->state, LOST);
		}
	}
	err = p->state == EXITED ? 0 : p->state == LOST ? -ECHILD : -EAGAIN;
	pthread_mutex_unlock(&p->lock);
	return err;
}

/* Sends sig to the child, which has not been reaped here: 0 or -errno.
 * Through the pidfd where there is one, since it cannot reach a process
 * that took the pid (see the top). */
static int send_signal(const struct shp_process *p, int sig)
{
#ifdef SYS_pidfd_send_signal
	if (p->pidfd >= 0) {
		if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) == 0)
			return 0;
		/* ENOSYS: a kernel with pidfd_open has it (5.1 < 5.3), but
		 * a seccomp filter may refuse it alone; the pid remains. */
		if (errno != ENOSYS)
			return -errno;
	}
#endif
	return kill(p->pid, sig) < 0 ? -errno : 0;
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
	int err;

	if (!p)
		return -EINVAL;
	if (getpid() != p->starter)
		return -ECHILD;
	pthread_mutex_lock(&p->lock);
	err = p->state == RUNNING ? send_signal(p, sig) : -ESRCH;
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
			(void)send_signal(p, SIGKILL);
			/* SIGKILL cannot be caught: this returns, with the
			 * child reaped here or by somebody else (-ECHILD). */
			while (wait_child(p, &st, 0) == -EINTR)
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
