/*
 * Processes: shp_process_start, _join, _wait_status, _pid, _kill, _free.
 *
 * The children run small functions of this file; they report through
 * their exit code or a shared_map() page, never through Criterion's
 * assertions, which belong to the test process.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procfs.h"
#include "shmpool.h"
#include "util.h"

WATCHDOG_SUITE(process, 30);

/* ------------------------------------------------------------ children */

/* Returns *arg. */
static int return_code(void *arg)
{
	return *(const int *)arg;
}

/* Sleeps *arg ms, then returns 5. */
static int sleep_then_5(void *arg)
{
	sleep_ms(*(const int *)arg);
	return 5;
}

/* Waits for a signal for ever. */
static int wait_forever(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return 0;
}

static int aborts(void *arg)
{
	struct rlimit none = { 0, 0 };

	(void)arg;
	setrlimit(RLIMIT_CORE, &none); /* no core file for an expected death */
	abort(); /* not SIGSEGV: ASan would turn that into exit(1) */
	return 0;
}

/* ------------------------------------------------------------ tests */

static void start(shp_process **p, shp_process_fn fn, void *arg)
{
	cr_assert_eq(shp_process_start(p, fn, arg), 0);
	cr_assert_not_null(*p);
	cr_assert_gt(shp_process_pid(*p), 0);
}

/* A join with a timeout of ms on a running process: -ETIMEDOUT, neither
 * early nor (much) late. */
static void expect_join_times_out(shp_process *p, long ms)
{
	int64_t t0 = now_ns(), dt;

	cr_expect_eq(shp_process_join(p, ms * MS), -ETIMEDOUT);
	dt = now_ns() - t0;
	cr_expect_geq(dt, ms * MS, "returned early: %lld ns", (long long)dt);
	cr_expect_lt(dt, ms * MS + slack(100 * MS), "returned late: %lld ns",
	             (long long)dt);
}

static int status_after_join(shp_process *p)
{
	int ws = -1;

	cr_assert_eq(shp_process_join(p, -1), 0);
	cr_assert_eq(shp_process_wait_status(p, &ws), 0);
	return ws;
}

Test(process, exit_codes_0_and_3, .timeout = 20)
{
	const int codes[] = { 0, 3, 255 };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		shp_process *p;
		int ws;

		start(&p, return_code, (void *)&codes[i]);
		ws = status_after_join(p);
		cr_expect(WIFEXITED(ws), "code %d: status %#x", codes[i], ws);
		cr_expect_eq(WEXITSTATUS(ws), codes[i]);
		/* Joined: at once, every time, with the same status. */
		cr_expect_eq(shp_process_join(p, 0), 0);
		cr_expect_eq(status_after_join(p), ws);
		shp_process_free(p);
	}
}

Test(process, return_value_is_cut_to_a_byte, .timeout = 20)
{
	const int minus_one = -1, big = 0x1234;
	shp_process *p, *q;

	start(&p, return_code, (void *)&minus_one);
	start(&q, return_code, (void *)&big);
	cr_expect_eq(WEXITSTATUS(status_after_join(p)), 255);
	cr_expect_eq(WEXITSTATUS(status_after_join(q)), 0x34);
	shp_process_free(p);
	shp_process_free(q);
}

Test(process, bad_arguments, .timeout = 20)
{
	shp_process *p = (shp_process *)&p; /* not NULL */
	int ws = 12345;

	cr_expect_eq(shp_process_start(NULL, return_code, NULL), -EINVAL);
	cr_expect_eq(shp_process_start(&p, NULL, NULL), -EINVAL);
	cr_expect_null(p, "*p not cleared on failure");
	cr_expect_eq(shp_process_join(NULL, 0), -EINVAL);
	cr_expect_eq(shp_process_wait_status(NULL, &ws), -EINVAL);
	cr_expect_eq(shp_process_pid(NULL), -EINVAL);
	cr_expect_eq(shp_process_kill(NULL, SIGTERM), -EINVAL);
	shp_process_free(NULL);

	start(&p, wait_forever, NULL);
	cr_expect_eq(shp_process_wait_status(p, NULL), -EINVAL);
	cr_expect_eq(shp_process_wait_status(p, &ws), -EAGAIN);
	cr_expect_eq(ws, 12345, "status written before the join");
	cr_expect_eq(shp_process_kill(p, 12345), -EINVAL);
	cr_expect_eq(shp_process_kill(p, SIGKILL), 0);
	cr_expect(WIFSIGNALED(status_after_join(p)));
	shp_process_free(p);
}

Test(process, abort_is_reported_as_its_signal, .timeout = 20)
{
	shp_process *p;
	int ws;

	start(&p, aborts, NULL);
	ws = status_after_join(p);
	cr_expect(WIFSIGNALED(ws), "status %#x", ws);
	cr_expect_eq(WTERMSIG(ws), SIGABRT);
	shp_process_free(p);
}

Test(process, join_timeout_expires_then_succeeds, .timeout = 20)
{
	const int ms = (int)stretch_ms(300);
	shp_process *p;
	int64_t t0, dt;
	int ws;

	start(&p, sleep_then_5, (void *)&ms);
	t0 = now_ns();
	cr_expect_eq(shp_process_join(p, 0), -ETIMEDOUT);
	dt = now_ns() - t0;
	cr_expect_lt(dt, slack(20 * MS), "a poll took %lld ns", (long long)dt);

	expect_join_times_out(p, 50);
	cr_expect_eq(shp_process_wait_status(p, &ws), -EAGAIN);

	t0 = now_ns();
	ws = status_after_join(p);
	dt = now_ns() - t0;
	cr_expect(WIFEXITED(ws) && WEXITSTATUS(ws) == 5, "status %#x", ws);
	/* Woken by the exit, not much later: the child had slept ms less
	 * the 50 ms above when this join started. */
	cr_expect_lt(dt, ms * MS + slack(50 * MS), "joined after %lld ns",
	             (long long)dt);
	shp_process_free(p);
}

Test(process, kill_then_join_reports_the_signal, .timeout = 20)
{
	shp_process *p;
	int ws;

	start(&p, wait_forever, NULL);
	cr_expect_eq(shp_process_join(p, 10 * MS), -ETIMEDOUT);
	cr_expect_eq(shp_process_kill(p, SIGTERM), 0);
	ws = status_after_join(p);
	cr_expect(WIFSIGNALED(ws), "status %#x", ws);
	cr_expect_eq(WTERMSIG(ws), SIGTERM);
	/* Reaped: the pid is nobody's to signal any more. */
	cr_expect_eq(shp_process_kill(p, SIGKILL), -ESRCH);
	cr_expect_eq(shp_process_kill(p, 0), -ESRCH);
	shp_process_free(p);
}

Test(process, free_of_a_running_child_leaves_no_zombie, .timeout = 20)
{
	shp_process *p;
	pid_t pid;
	int ws;

	start(&p, wait_forever, NULL);
	pid = shp_process_pid(p);
	cr_expect(proc_alive(pid));
	shp_process_free(p);
	errno = 0;
	cr_expect_eq(waitpid(pid, &ws, WNOHANG), -1, "the child is still ours");
	cr_expect_eq(errno, ECHILD);
	cr_expect_not(proc_alive(pid));
}

Test(process, free_after_exit_without_join_leaves_no_zombie, .timeout = 20)
{
	const int code = 9;
	shp_process *p;
	pid_t pid;
	int ws;

	start(&p, return_code, (void *)&code);
	pid = shp_process_pid(p);
	sleep_ms(50); /* a zombie by now, most likely */
	shp_process_free(p);
	errno = 0;
	cr_expect_eq(waitpid(pid, &ws, WNOHANG), -1);
	cr_expect_eq(errno, ECHILD);
}

struct joiner {
	shp_process *p;
	bool polling; /* join(1 ms) until done, instead of join(-1) */
	int ret;
	int ws;
	long polls;
};

static void *join_thread(void *arg)
{
	struct joiner *j = arg;

	if (j->polling) {
		while ((j->ret = shp_process_join(j->p, MS)) == -ETIMEDOUT)
			j->polls++;
	} else {
		j->ret = shp_process_join(j->p, -1);
	}
	if (j->ret == 0)
		j->ret = shp_process_wait_status(j->p, &j->ws);
	return NULL;
}

Test(process, concurrent_joins_from_three_threads, .timeout = 20)
{
	const int ms = (int)stretch_ms(100);
	struct joiner j[3];
	pthread_t t[3];
	shp_process *p;

	start(&p, sleep_then_5, (void *)&ms);
	for (int i = 0; i < 3; i++) {
		j[i] = (struct joiner){ .p = p, .polling = i == 2, .ws = -1 };
		cr_assert_eq(pthread_create(&t[i], NULL, join_thread, &j[i]), 0);
	}
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		cr_expect_eq(j[i].ret, 0, "joiner %d: %d", i, j[i].ret);
		cr_expect(WIFEXITED(j[i].ws) && WEXITSTATUS(j[i].ws) == 5,
		          "joiner %d: status %#x", i, j[i].ws);
	}
	cr_expect_gt(j[2].polls, 0, "the child was gone before the polls");
	shp_process_free(p);
}

/* As start(), with no descriptor left for a pidfd: the handle has none. */
static void start_without_pidfd(shp_process **p, shp_process_fn fn, void *arg)
{
	struct rlimit old, low;
	int fds[512], nfds = 0, fd;

	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	if (low.rlim_cur > 256)
		low.rlim_cur = 256;
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
	while (nfds < 512 && (fd = dup(0)) >= 0)
		fds[nfds++] = fd;
	cr_assert_eq(errno, EMFILE, "the table did not fill up");
	start(p, fn, arg);
	while (nfds > 0)
		close(fds[--nfds]);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
}

/*
 * Without a pidfd, join falls back to polling waitpid, and still times out
 * and succeeds as with one.
 */
Test(process, join_without_a_pidfd_polls, .timeout = 20)
{
	const int ms = (int)stretch_ms(200);
	shp_process *p;
	int ws;

	start_without_pidfd(&p, sleep_then_5, (void *)&ms);
	expect_join_times_out(p, 30);
	ws = status_after_join(p);
	cr_expect(WIFEXITED(ws) && WEXITSTATUS(ws) == 5, "status %#x", ws);
	shp_process_free(p);
}

/* Prints "child" without a newline and returns 0: the exit flushes it. */
static int print_child(void *arg)
{
	(void)arg;
	printf("child");
	return 0;
}

Test(process, buffered_output_is_written_once, .timeout = 20)
{
	char path[] = "/tmp/shp-test-process-XXXXXX", buf[64] = "";
	int fd, saved;
	shp_process *p;
	ssize_t len;

	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	cr_assert_geq(saved, 0);
	cr_assert_eq(dup2(fd, STDOUT_FILENO), STDOUT_FILENO);
	printf("parent "); /* buffered: no newline, no flush */
	start(&p, print_child, NULL);
	cr_assert_eq(shp_process_join(p, -1), 0);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	len = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	cr_assert_geq(len, 0);
	buf[len] = '\0';
	/* Without the flush before the fork, "parent " would be there twice:
	 * the child's copy of the buffer, flushed at its exit, and ours. */
	cr_expect_str_eq(buf, "parent child");
	shp_process_free(p);
}

static int *atexit_runs; /* shared_map()ed */

static void count_atexit(void)
{
	if (atexit_runs)
		__atomic_fetch_add(atexit_runs, 1, __ATOMIC_SEQ_CST);
}

Test(process, child_runs_no_atexit_handler, .timeout = 20)
{
	const int code = 0;
	shp_process *p;

	atexit_runs = shared_map(sizeof(int));
	cr_assert_eq(atexit(count_atexit), 0);
	start(&p, return_code, (void *)&code);
	cr_expect_eq(WEXITSTATUS(status_after_join(p)), 0);
	cr_expect_eq(__atomic_load_n(atexit_runs, __ATOMIC_SEQ_CST), 0,
	             "the child ran the parent's atexit handler");
	shp_process_free(p);
}

/* arg: a handle inherited from the parent, of a sibling. Tries what a fork
 * must not do with it, then frees its copy. Exit code: a bit per wrong
 * answer. */
static int misuse_sibling(void *arg)
{
	shp_process *sibling = arg;
	int ws, bad = 0;

	if (shp_process_join(sibling, 0) != -ECHILD)
		bad |= 1;
	if (shp_process_kill(sibling, SIGKILL) != -ECHILD)
		bad |= 2;
	if (shp_process_wait_status(sibling, &ws) != -EAGAIN)
		bad |= 4;
	shp_process_free(sibling); /* must not kill it */
	return bad;
}

Test(process, a_fork_cannot_join_or_kill_and_free_spares_the_child, .timeout = 20)
{
	shp_process *a, *b;
	int ws;

	start(&a, wait_forever, NULL);
	start(&b, misuse_sibling, a);
	ws = status_after_join(b);
	cr_expect(WIFEXITED(ws), "status %#x", ws);
	cr_expect_eq(WEXITSTATUS(ws), 0, "wrong answers: %#x", WEXITSTATUS(ws));
	cr_expect(proc_alive(shp_process_pid(a)), "a fork's free killed it");
	cr_expect_eq(shp_process_join(a, 0), -ETIMEDOUT);
	shp_process_free(a);
	shp_process_free(b);
}

/* The seed's Process(target=rand_string, args=(5, output)), with an
 * argument struct in the parent's memory: the child has its copy. */
struct job {
	unsigned length;
	unsigned char *out; /* a shared_map() page */
};

static int write_length(void *arg)
{
	const struct job *j = arg;

	memset(j->out, 'x', j->length);
	return 0;
}

Test(process, argument_reaches_the_child, .timeout = 20)
{
	unsigned char *page = shared_map(64);
	struct job j = { .length = 5, .out = page };
	shp_process *p;

	start(&p, write_length, &j);
	cr_expect_eq(status_after_join(p), 0);
	cr_expect_eq(memcmp(page, "xxxxx\0", 6), 0);
	shp_process_free(p);
	munmap(page, 64);
}

/* ------------------------------------- children reaped by somebody else */

/* Waits until a byte can be read from the descriptor *arg (or it is
 * closed), then returns 0: it exits when the test says, after start has
 * returned. */
static int exit_on_byte(void *arg)
{
	char c;

	while (read(*(const int *)arg, &c, 1) < 0 && errno == EINTR)
		;
	return 0;
}

/* Whether pid is gone, reaped, within ms: kill(pid, 0) says ESRCH. */
static bool reaped_within(pid_t pid, long ms)
{
	int64_t until = now_ns() + stretch_ms(ms) * MS;

	while (kill(pid, 0) == 0 || errno != ESRCH) {
		if (now_ns() >= until)
			return false;
		sleep_ms(1);
	}
	return true;
}

/*
 * With SIGCHLD ignored the kernel reaps the child as it exits. Nothing is
 * sent to its pid from then on (kill says -ESRCH, as after a join), and
 * join says at once that the status is lost.
 */
Test(process, sigchld_ignored_kill_says_esrch_and_join_echild, .timeout = 20)
{
	int go[2], ws = 12345;
	shp_process *p;
	int64_t t0, dt;
	pid_t pid;

	cr_assert_eq(pipe(go), 0);
	cr_assert_neq(signal(SIGCHLD, SIG_IGN), SIG_ERR);
	start(&p, exit_on_byte, &go[0]);
	pid = shp_process_pid(p);
	cr_expect_eq(shp_process_kill(p, 0), 0, "gone before its byte");
	cr_assert_eq(write(go[1], "x", 1), 1);
	cr_assert(reaped_within(pid, 5000), "pid %d still there", (int)pid);

	cr_expect_eq(shp_process_kill(p, SIGTERM), -ESRCH);
	cr_expect_eq(shp_process_kill(p, 0), -ESRCH);
	cr_expect_eq(shp_process_wait_status(p, &ws), -EAGAIN,
	             "lost before any join looked");
	t0 = now_ns();
	cr_expect_eq(shp_process_join(p, -1), -ECHILD);
	dt = now_ns() - t0;
	cr_expect_lt(dt, slack(100 * MS), "join took %lld ns", (long long)dt);
	cr_expect_eq(shp_process_wait_status(p, &ws), -ECHILD);
	cr_expect_eq(ws, 12345, "status written for a lost child");
	cr_expect_eq(shp_process_join(p, 0), -ECHILD);
	cr_expect_eq(shp_process_kill(p, SIGKILL), -ESRCH);
	shp_process_free(p);
	signal(SIGCHLD, SIG_DFL);
	close(go[0]);
	close(go[1]);
}

/* A join that sleeps when the kernel reaps the child wakes and says so,
 * with a pidfd and without. */
static void join_while_the_kernel_reaps(bool pidfd)
{
	const int ms = (int)stretch_ms(50);
	shp_process *p;
	int64_t t0, dt;
	int ws;

	cr_assert_neq(signal(SIGCHLD, SIG_IGN), SIG_ERR);
	if (pidfd)
		start(&p, sleep_then_5, (void *)&ms);
	else
		start_without_pidfd(&p, sleep_then_5, (void *)&ms);
	t0 = now_ns();
	cr_expect_eq(shp_process_join(p, -1), -ECHILD);
	dt = now_ns() - t0;
	cr_expect_lt(dt, ms * MS + slack(100 * MS), "joined after %lld ns",
	             (long long)dt);
	cr_expect_eq(shp_process_wait_status(p, &ws), -ECHILD);
	cr_expect_eq(shp_process_kill(p, SIGKILL), -ESRCH);
	shp_process_free(p);
	signal(SIGCHLD, SIG_DFL);
}

Test(process, join_sleeping_when_the_kernel_reaps_says_echild, .timeout = 20)
{
	join_while_the_kernel_reaps(true);
}

Test(process, join_without_a_pidfd_when_the_kernel_reaps_says_echild, .timeout = 20)
{
	join_while_the_kernel_reaps(false);
}

/* The pid the SIGCHLD handler below reaped last. */
static volatile sig_atomic_t handler_reaped;

/* A program's handler that reaps every child it can. */
static void reap_everything(int sig)
{
	int saved = errno;
	pid_t r;

	(void)sig;
	while ((r = waitpid(-1, NULL, WNOHANG)) > 0)
		handler_reaped = r;
	errno = saved;
}

Test(process, child_reaped_by_a_sigchld_handler_is_lost, .timeout = 20)
{
	struct sigaction sa = { .sa_handler = reap_everything }, old;
	int64_t until = now_ns() + stretch_ms(5000) * MS, t0, dt;
	int go[2], ws;
	shp_process *p;

	cr_assert_eq(pipe(go), 0);
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGCHLD, &sa, &old), 0);
	start(&p, exit_on_byte, &go[0]);
	cr_assert_eq(write(go[1], "x", 1), 1);
	while (handler_reaped != shp_process_pid(p) && now_ns() < until)
		sleep_ms(1);
	cr_assert_eq(handler_reaped, shp_process_pid(p), "not reaped by the handler");

	cr_expect_eq(shp_process_kill(p, SIGTERM), -ESRCH);
	t0 = now_ns();
	cr_expect_eq(shp_process_join(p, -1), -ECHILD);
	dt = now_ns() - t0;
	cr_expect_lt(dt, slack(100 * MS), "join took %lld ns", (long long)dt);
	cr_expect_eq(shp_process_wait_status(p, &ws), -ECHILD);
	shp_process_free(p);
	sigaction(SIGCHLD, &old, NULL);
	close(go[0]);
	close(go[1]);
}

/*
 * The pid of a child the kernel reaped, given to another process: kill,
 * join and free must leave that one alone. Forcing the reuse needs a pid
 * namespace of our own, where nobody else forks and ns_last_pid says
 * which pid comes next: made in a user namespace, which an unprivileged
 * test may create where the system allows it (skipped elsewhere).
 *
 * reuse_in_pid_namespace runs as the namespace's init (pid 1): it starts
 * a child (pid 2) with SIGCHLD ignored, lets it exit, forks a victim that
 * gets pid 2, makes the call of *arg on the handle, frees it, and then
 * ends the victim with SIGTERM: a victim that died of SIGKILL, or that
 * another signal reached first, was hit through the stale pid. Exit code:
 * REUSE_* bits.
 */
enum reuse_call { CALL_KILL, CALL_JOIN, CALL_FREE };
#define REUSE_SETUP 1   /* the scenario could not be set up */
#define REUSE_NO_PID 2  /* the victim never got the child's pid */
#define REUSE_KILL 4    /* kill did not say -ESRCH */
#define REUSE_JOIN 8    /* join did not say -ECHILD */
#define REUSE_STATUS 16 /* wait_status did not say -ECHILD */
#define REUSE_VICTIM 32 /* the victim was signalled or reaped */
#define REUSE_SKIP 77   /* no namespace to be had */

static bool set_last_pid(pid_t pid)
{
	FILE *f = fopen("/proc/sys/kernel/ns_last_pid", "w");
	bool ok;

	if (!f)
		return false;
	ok = fprintf(f, "%d", (int)pid) > 0;
	return fclose(f) == 0 && ok;
}

static int reuse_in_pid_namespace(void *arg)
{
	const enum reuse_call call = *(const enum reuse_call *)arg;
	pid_t pid, victim = -1;
	int go[2], ws = 0, bad = 0;
	shp_process *p;

	if (pipe(go) < 0 || signal(SIGCHLD, SIG_IGN) == SIG_ERR ||
	    shp_process_start(&p, exit_on_byte, &go[0]) != 0)
		return REUSE_SETUP;
	pid = shp_process_pid(p);
	if (write(go[1], "x", 1) != 1 || !reaped_within(pid, 5000))
		return REUSE_SETUP;
	signal(SIGCHLD, SIG_DFL); /* the victim's death must stay seen */
	/* A pid is free a moment after kill() stops finding it: retried. */
	for (int tries = 0; tries < 100 && victim != pid; tries++) {
		if (victim > 0) {
			kill(victim, SIGKILL);
			waitpid(victim, NULL, 0);
			sleep_ms(1);
		}
		if (!set_last_pid(pid - 1))
			return REUSE_SKIP;
		victim = fork();
		if (victim < 0)
			return REUSE_SETUP;
		if (victim == 0)
			for (;;)
				pause();
	}
	if (victim != pid)
		return REUSE_NO_PID;

	if (call == CALL_KILL && shp_process_kill(p, SIGKILL) != -ESRCH)
		bad |= REUSE_KILL;
	if (call == CALL_JOIN) {
		if (shp_process_join(p, 100 * MS) != -ECHILD)
			bad |= REUSE_JOIN;
		if (shp_process_wait_status(p, &ws) != -ECHILD)
			bad |= REUSE_STATUS;
	}
	shp_process_free(p);
	kill(victim, SIGTERM);
	if (waitpid(victim, &ws, 0) != victim || !WIFSIGNALED(ws) ||
	    WTERMSIG(ws) != SIGTERM)
		bad |= REUSE_VICTIM;
	return bad;
}

/* Makes a user and pid namespace, and runs reuse_in_pid_namespace as its
 * init; its exit code, or REUSE_SKIP. */
static int in_new_pid_namespace(void *arg)
{
	shp_process *init;
	int ws;

	if (unshare(CLONE_NEWUSER | CLONE_NEWPID) < 0)
		return REUSE_SKIP;
	if (shp_process_start(&init, reuse_in_pid_namespace, arg) != 0 ||
	    shp_process_join(init, -1) != 0 ||
	    shp_process_wait_status(init, &ws) != 0 || !WIFEXITED(ws))
		return REUSE_SETUP;
	return WEXITSTATUS(ws);
}

/* Whether the kernel has pidfd_open and waitid on a pidfd (Linux 5.4),
 * without which the pid is all a handle has, and it promises nothing. */
static bool kernel_has_pidfds(void)
{
	siginfo_t si;
	long fd = syscall(SYS_pidfd_open, getpid(), 0);
	bool has;

	if (fd < 0)
		return false;
	/* Ourselves: not our child; EINVAL if P_PIDFD is unknown. */
	has = waitid((idtype_t)3, (id_t)fd, &si, WEXITED | WNOHANG) < 0 &&
	      errno == ECHILD;
	close((int)fd);
	return has;
}

static void expect_reused_pid_spared(enum reuse_call call)
{
	shp_process *h;
	int code;

	if (!kernel_has_pidfds())
		cr_skip_test("no pidfds: the pid path promises nothing here");
	start(&h, in_new_pid_namespace, &call);
	code = WEXITSTATUS(status_after_join(h));
	shp_process_free(h);
	if (code == REUSE_SKIP)
		cr_skip_test("no user and pid namespace, or no ns_last_pid");
	cr_expect_eq(code, 0, "failures: %#x (see REUSE_*)", code);
}

Test(process, kill_spares_the_process_that_took_a_reaped_childs_pid, .timeout = 20)
{
	expect_reused_pid_spared(CALL_KILL);
}

Test(process, join_spares_the_process_that_took_a_reaped_childs_pid, .timeout = 20)
{
	expect_reused_pid_spared(CALL_JOIN);
}

Test(process, free_spares_the_process_that_took_a_reaped_childs_pid, .timeout = 20)
{
	expect_reused_pid_spared(CALL_FREE);
}
