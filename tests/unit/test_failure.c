/*
 * Failure tests: what the caller sees when the pool's other processes die,
 * when /dev/shm is too small, and when tasks scribble over the shared
 * segment. docs/failure-model.md maps each promise to the test proving it.
 *
 * The tests reach into the segment through the private pool struct
 * (lib/pool.h): the supervisor's pid, the slot table, the header. Tasks get
 * those addresses through ctx, a struct in shp_alloc() memory: the segment
 * sits at the same address in every process of the pool.
 *
 * Sections: 1. the supervisor killed (idle, during a call, while a call
 * waits for ring room); 2. a /dev/shm too small (a private tmpfs in a mount
 * namespace); 3. tasks scribbling the segment; 4. workers killed.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"
#include "procfs.h"
#include "segment.h"
#include "shmpool.h"
#include "util.h"

#define WATCHDOG_S 45

WATCHDOG_SUITE(failure, (unsigned)stretch_ms(WATCHDOG_S * 1000) / 1000);

/* Waits up to ms for none of pids to run; returns how many still do. */
static int alive_after(const pid_t *pids, size_t n, long ms)
{
	int64_t until = now_ns() + slack(ms * MS);
	int alive;

	for (;;) {
		alive = 0;
		for (size_t i = 0; i < n; i++)
			alive += proc_alive(pids[i]);
		if (alive == 0 || now_ns() > until)
			return alive;
		sleep_ms(5);
	}
}

/* Tasks of 1 ms that give up their core. */
static int sleepy(const void *in, void *out, void *ctx)
{
	struct timespec ts = { 0, 1000000 };

	(void)ctx;
	nanosleep(&ts, NULL);
	*(int *)out = 3 * *(const int *)in + 1;
	return 0;
}

/* ------------------------------------------------- a map in a thread */

struct bg_map {
	shp_pool *p;
	shp_fn fn;
	void *ctx;
	size_t n, chunk;
	int *in, *out, *st;
	int rc;
	int64_t start, end;
	pthread_t th;
};

static void *bg_map_main(void *arg)
{
	struct bg_map *m = arg;

	m->start = now_ns();
	m->rc = shp_map(m->p, m->fn, m->ctx, m->in, sizeof(int), m->out,
	                sizeof(int), m->n, m->chunk, m->st);
	m->end = now_ns();
	return NULL;
}

static void bg_map_start(struct bg_map *m, shp_pool *p, shp_fn fn, void *ctx,
                         size_t n, size_t chunk)
{
	*m = (struct bg_map){ .p = p, .fn = fn, .ctx = ctx, .n = n,
	                      .chunk = chunk, .rc = 1 };
	m->in = iota(n);
	m->out = filled(n, -1);
	m->st = filled(n, STATUS_UNSET);
	cr_assert_eq(pthread_create(&m->th, NULL, bg_map_main, m), 0);
}

static void bg_map_free(struct bg_map *m)
{
	free(m->in);
	free(m->out);
	free(m->st);
}

/* =========================================== 1. the supervisor killed */

Test(failure, supervisor_killed_while_idle, .timeout = 20)
{
	struct shp_pool_options o = { .workers = 2 };
	const size_t n = 64;
	int *in = iota(n), *out = filled(n, -1), *st = filled(n, STATUS_UNSET);
	pid_t kids[8], w[8];
	shp_pool *p;
	int64_t t0, dt;
	int x = 4, y = 0;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	/* The supervisor is our one child; the workers are its children. */
	cr_assert_eq(proc_children(getpid(), kids, 8), 1);
	cr_assert_eq(kids[0], p->zygote);
	cr_assert_eq(proc_children(p->zygote, w, 8), 2);
	expect_map_correct(p, 100, "before the kill");

	cr_assert_eq(kill(p->zygote, SIGKILL), 0);
	cr_expect_eq(alive_after(w, 2, 1000), 0,
	             "workers outlived their supervisor by 1 s");

	t0 = now_ns();
	cr_expect_eq(shp_map(p, triple, NULL, in, sizeof(int), out, sizeof(int),
	                     n, 0, st), SHP_EBROKEN);
	dt = now_ns() - t0;
	cr_expect_lt(dt, slack(500 * MS), "the first call took %" PRId64 " ms", dt / MS);
	for (size_t i = 0; i < n; i++)
		cr_expect_eq(st[i], SHP_ECANCELED, "status[%zu] = %d", i, st[i]);

	/* Later calls: at once. */
	t0 = now_ns();
	cr_expect_eq(shp_apply(p, triple, NULL, &x, sizeof(x), &y, sizeof(y)),
	             SHP_EBROKEN);
	cr_expect_eq(shp_map(p, triple, NULL, in, sizeof(int), out, sizeof(int),
	                     n, 0, st), SHP_EBROKEN);
	dt = now_ns() - t0;
	cr_expect_lt(dt, slack(50 * MS), "later calls took %" PRId64 " ms", dt / MS);
	cr_expect_eq(y, 0);

	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), SHP_EBROKEN);
	cr_expect_eq(shp_pool_join(p), SHP_EBROKEN, "joining again");
	destroy_settled(p);
	free(in);
	free(out);
	free(st);
}

/* The death is noticed by join too, when no call ever saw it. */
Test(failure, supervisor_killed_then_join_reports_broken, .timeout = 20)
{
	struct shp_pool_options o = { .workers = 2 };
	shp_pool *p;
	pid_t w[8];

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	cr_assert_eq(proc_children(p->zygote, w, 8), 2);
	cr_assert_eq(kill(p->zygote, SIGKILL), 0);
	cr_expect_eq(alive_after(w, 2, 1000), 0);
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), SHP_EBROKEN);
	destroy_settled(p);

	/* And destroy alone reaps it. */
	cr_assert_eq(shp_pool_create(&p, &o), 0);
	cr_assert_eq(kill(p->zygote, SIGKILL), 0);
	destroy_settled(p);
}

Test(failure, terminate_leaves_a_broken_pool_broken, .timeout = 20)
{
	struct shp_pool_options o = { .workers = 2 };
	int x = 1, y = 0;
	shp_pool *p;
	pid_t w[8];

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	cr_assert_eq(proc_children(p->zygote, w, 8), 2);
	cr_assert_eq(kill(p->zygote, SIGKILL), 0);
	/* Until the workers are gone a task could still run. */
	cr_assert_eq(alive_after(w, 2, 1000), 0);
	cr_expect_eq(shp_apply(p, triple, NULL, &x, sizeof(x), &y, sizeof(y)),
	             SHP_EBROKEN);
	cr_expect_eq(shp_pool_terminate(p), 0);
	cr_expect_eq(shp_apply(p, triple, NULL, &x, sizeof(x), &y, sizeof(y)),
	             SHP_EBROKEN);
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), SHP_EBROKEN);
	cr_expect_eq(y, 0);
	destroy_settled(p);
}

struct killer {
	pid_t victim;
	long delay_ms;
	int64_t at;
	int rc;
};

static void *kill_later(void *arg)
{
	struct killer *k = arg;

	sleep_ms(k->delay_ms);
	k->at = now_ns();
	k->rc = kill(k->victim, SIGKILL);
	return NULL;
}

Test(failure, supervisor_killed_during_long_map, .timeout = 30)
{
	const size_t n = 20000; /* 10 s of 1 ms tasks on 2 workers */
	struct shp_pool_options o = { .workers = 2 };
	int *in = iota(n), *out = filled(n, -1), *st = filled(n, STATUS_UNSET);
	struct killer k = { .delay_ms = 300 };
	int x = 1, y = 0;
	pthread_t th;
	shp_pool *p;
	pid_t w[8];
	int64_t end;
	size_t taken = 0;
	int r;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	cr_assert_eq(proc_children(p->zygote, w, 8), 2);
	k.victim = p->zygote;
	cr_assert_eq(pthread_create(&th, NULL, kill_later, &k), 0);
	r = shp_map(p, sleepy, NULL, in, sizeof(int), out, sizeof(int), n, 0, st);
	end = now_ns();
	pthread_join(th, NULL);

	cr_assert_eq(k.rc, 0);
	cr_expect_eq(r, SHP_EBROKEN);
	cr_expect_gt(end, k.at, "the map returned before the kill");
	cr_expect_lt(end - k.at, slack(2000 * MS), "the map returned %" PRId64
	             " ms after the kill", (end - k.at) / MS);
	/* A prefix of results was taken, correct; the rest are cancelled. */
	while (taken < n && st[taken] == 0) {
		cr_expect_eq(out[taken], 3 * (int)taken + 1);
		taken++;
	}
	cr_expect_gt(taken, 0, "no result was taken in 300 ms");
	cr_expect_lt(taken, n);
	for (size_t i = taken; i < n; i++)
		if (st[i] != SHP_ECANCELED) {
			cr_expect_fail("status[%zu] = %d after %zu taken", i, st[i],
			               taken);
			break;
		}
	cr_expect_eq(alive_after(w, 2, 1000), 0,
	             "workers outlived their supervisor by 1 s");
	cr_expect_eq(shp_apply(p, triple, NULL, &x, sizeof(x), &y, sizeof(y)),
	             SHP_EBROKEN);
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), SHP_EBROKEN);
	destroy_settled(p);
	free(in);
	free(out);
	free(st);
}

/* The system call pid sleeps in, from /proc/pid/syscall; -1 if running. */
static long in_syscall(pid_t pid)
{
	char path[64], buf[256];
	FILE *f;
	long nr = -1;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (fgets(buf, sizeof(buf), f) && buf[0] >= '0' && buf[0] <= '9')
		nr = strtol(buf, NULL, 10);
	fclose(f);
	return nr;
}

/* Waits up to 2 s for every pid to sleep in futex(): a worker idle on
 * work_ec, past its start (PR_SET_PDEATHSIG is set). */
static bool all_asleep(const pid_t *pids, size_t n)
{
	for (int t = 0; t < 400; t++) {
		size_t k = 0;

		while (k < n && in_syscall(pids[k]) == SYS_futex)
			k++;
		if (k == n)
			return true;
		sleep_ms(5);
	}
	return false;
}

/*
 * A call that finds the ring full of another call's descriptors polls for
 * room. That poll must notice the supervisor's death (and a terminate) as
 * the sleeping wait does, or the call never returns. The workers are
 * stopped so that the ring stays full: queue_cells 2, both cells A's.
 */
static shp_pool *ring_full_pool(struct bg_map *a, struct bg_map *b, pid_t *w)
{
	struct shp_pool_options o = { .workers = 2, .queue_cells = 2 };
	shp_pool *p;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	cr_assert_eq(proc_children(p->zygote, w, 8), 2);
	/* Stopped only once they run their loop: a worker stopped before
	 * its PR_SET_PDEATHSIG would outlive the supervisor, stopped. */
	cr_assert(all_asleep(w, 2), "the workers did not go idle");
	cr_assert_eq(kill(w[0], SIGSTOP), 0);
	cr_assert_eq(kill(w[1], SIGSTOP), 0);
	sleep_ms(20);
	bg_map_start(a, p, sleepy, NULL, 64, 1);
	for (int i = 0; i < 200 && shp__ring_count(p->ring) < 2; i++)
		sleep_ms(5);
	cr_assert_eq(shp__ring_count(p->ring), 2, "A did not fill the ring");
	bg_map_start(b, p, triple, NULL, 1, 1);
	sleep_ms(100);
	cr_assert_eq(a->rc, 1, "A returned %d with its workers stopped", a->rc);
	cr_assert_eq(b->rc, 1, "B returned %d with the ring full", b->rc);
	return p;
}

Test(failure, call_waiting_for_ring_room_sees_supervisor_death, .timeout = 20)
{
	struct bg_map a, b;
	pid_t w[8];
	shp_pool *p = ring_full_pool(&a, &b, w);
	int64_t t0;

	t0 = now_ns();
	cr_assert_eq(kill(p->zygote, SIGKILL), 0);
	cr_assert(bg_join(a.th, 2000), "A hangs after the supervisor's death");
	cr_assert(bg_join(b.th, 2000),
	          "B, waiting for ring room, hangs after the supervisor's death");
	cr_expect_eq(a.rc, SHP_EBROKEN);
	cr_expect_eq(b.rc, SHP_EBROKEN);
	cr_expect_lt(b.end - t0, slack(2000 * MS));
	cr_expect_eq(b.st[0], SHP_ECANCELED);
	cr_expect_eq(b.out[0], -1);
	cr_expect_eq(alive_after(w, 2, 1000), 0);
	destroy_settled(p);
	bg_map_free(&a);
	bg_map_free(&b);
}

struct bg_terminate {
	shp_pool *p;
	int rc;
	pthread_t th;
};

static void *terminate_main(void *arg)
{
	struct bg_terminate *t = arg;

	t->rc = shp_pool_terminate(t->p);
	return NULL;
}

Test(failure, terminate_ends_call_waiting_for_ring_room, .timeout = 20)
{
	struct bg_map a, b;
	struct bg_terminate t = { .rc = 1 };
	pid_t w[8];
	shp_pool *p = ring_full_pool(&a, &b, w);

	t.p = p;
	cr_assert_eq(pthread_create(&t.th, NULL, terminate_main, &t), 0);
	cr_assert(bg_join(a.th, 2000), "A hangs after terminate");
	cr_assert(bg_join(b.th, 2000),
	          "B, waiting for ring room, hangs after terminate");
	cr_assert(bg_join(t.th, 2000), "terminate hangs");
	cr_expect_eq(t.rc, 0);
	cr_expect_eq(a.rc, SHP_ECLOSED);
	cr_expect_eq(b.rc, SHP_ECLOSED);
	cr_expect_eq(b.st[0], SHP_ECANCELED);
	cr_expect_eq(alive_after(w, 2, 1000), 0);
	destroy_settled(p);
	bg_map_free(&a);
	bg_map_free(&b);
}

/* ========================================== 2. a /dev/shm too small */

/* What the child in its own mount namespace saw. */
struct ns_report {
	int unshare_errno, mount_errno;
	long blocks;           /* of the 1 MiB tmpfs */
	int dflt_rc;           /* create with default options */
	long dflt_children;    /* processes left by the failed create */
	long dflt_entries;     /* /dev/shm entries left */
	long dflt_free;        /* free blocks left */
	uint64_t small_size;   /* segment bytes with a 64 KiB arena */
	int small_rc, small_map_rc, small_map_ok;
	long small_free;       /* free blocks while that pool runs */
	int second_rc;         /* a 1 MiB-arena pool beside it */
	int small_map2_rc, small_map2_ok;
	long small_after_children, small_after_free;
	int exact_rc, exact_map_ok; /* a segment of exactly 1 MiB */
	int over_rc;                /* 1 MiB + one page */
	long over_free;
	long final_entries, final_children;
};

static long shm_free_blocks(void)
{
	struct statvfs s;

	return statvfs("/dev/shm", &s) == 0 ? (long)s.f_bfree : -1;
}

static long shm_entries(void)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	long n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static uint64_t arena_for_total(unsigned workers, uint64_t total)
{
	struct shp__layout l = { .nworkers = workers, .ncells = 1024,
	                         .arena_size = 4096 };

	if (shp__layout_compute(&l))
		return 0;
	return total - l.arena_off;
}

static uint64_t segment_size(unsigned workers, uint64_t arena)
{
	struct shp__layout l = { .nworkers = workers, .ncells = 1024,
	                         .arena_size = arena };

	return shp__layout_compute(&l) ? 0 : l.total_size;
}

/* A map of 200 tasks in the child: 1 when every result is right. */
static int child_map_ok(shp_pool *p, int *rc)
{
	int in[200], out[200];

	for (int i = 0; i < 200; i++) {
		in[i] = i;
		out[i] = -1;
	}
	*rc = shp_map(p, triple, NULL, in, sizeof(int), out, sizeof(int), 200, 0,
	              NULL);
	for (int i = 0; i < 200; i++)
		if (out[i] != 3 * i + 1)
			return 0;
	return 1;
}

static void tiny_devshm_child(int fd)
{
	struct ns_report r = { 0 };
	struct shp_pool_options o = { .workers = 2 };
	shp_pool *p = NULL, *q = NULL;
	pid_t kids[16];

	if (unshare(CLONE_NEWNS) < 0) {
		r.unshare_errno = errno;
		goto out;
	}
	/* Type and source are ignored for a propagation change; "none"
	 * rather than NULL, which valgrind flags. */
	if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("shp-test", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
	          "size=1m,mode=1777") < 0) {
		r.mount_errno = errno;
		goto out;
	}
	r.blocks = shm_free_blocks();

	/* Default options: a 64 MiB arena cannot be reserved. */
	r.dflt_rc = shp_pool_create(&p, NULL);
	r.dflt_children = (long)proc_descendants(getpid(), kids, 16);
	r.dflt_entries = shm_entries();
	r.dflt_free = shm_free_blocks();
	if (r.dflt_rc == 0)
		shp_pool_destroy(p);

	/* A 64 KiB arena fits, and works. */
	o.arena_bytes = 64 << 10;
	r.small_size = segment_size(2, o.arena_bytes);
	r.small_rc = shp_pool_create(&p, &o);
	if (r.small_rc == 0) {
		r.small_map_ok = child_map_ok(p, &r.small_map_rc);
		r.small_free = shm_free_blocks();
		/* A second pool does not fit beside it, and costs it nothing. */
		o.arena_bytes = 1 << 20;
		r.second_rc = shp_pool_create(&q, &o);
		if (r.second_rc == 0)
			shp_pool_destroy(q);
		r.small_map2_ok = child_map_ok(p, &r.small_map2_rc);
		shp_pool_destroy(p);
	}
	r.small_after_children = (long)proc_descendants(getpid(), kids, 16);
	r.small_after_free = shm_free_blocks();

	/* The boundary: a segment of exactly the tmpfs size fits; one page
	 * more does not. */
	o.arena_bytes = arena_for_total(2, 1 << 20);
	r.exact_rc = shp_pool_create(&p, &o);
	if (r.exact_rc == 0) {
		int rc;

		r.exact_map_ok = child_map_ok(p, &rc) && rc == 0;
		shp_pool_destroy(p);
	}
	o.arena_bytes = arena_for_total(2, (1 << 20) + 4096);
	r.over_rc = shp_pool_create(&p, &o);
	if (r.over_rc == 0)
		shp_pool_destroy(p);
	r.over_free = shm_free_blocks();
	r.final_entries = shm_entries();
	r.final_children = (long)proc_descendants(getpid(), kids, 16);
out:
	if (write(fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(2);
	_exit(0);
}

Test(failure, tiny_devshm_gives_enospc_not_sigbus, .timeout = 30)
{
	struct ns_report r;
	pid_t child;
	int fd[2], ws;
	ssize_t got;

	cr_assert_eq(pipe(fd), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		close(fd[0]);
		tiny_devshm_child(fd[1]);
	}
	close(fd[1]);
	got = read(fd[0], &r, sizeof(r));
	close(fd[0]);
	cr_assert_eq(waitpid(child, &ws, 0), child);
	cr_assert(WIFEXITED(ws), "the child died of signal %d (SIGBUS is %d)",
	          WIFSIGNALED(ws) ? WTERMSIG(ws) : 0, SIGBUS);
	cr_assert_eq(WEXITSTATUS(ws), 0);
	cr_assert_eq(got, (ssize_t)sizeof(r));
	if (r.unshare_errno == EPERM || r.mount_errno == EPERM)
		cr_skip_test("needs CAP_SYS_ADMIN for a private /dev/shm "
		             "(unshare/mount: %s); the ENOSPC path was NOT tested",
		             strerror(EPERM));
	cr_assert_eq(r.unshare_errno, 0, "unshare: %s", strerror(r.unshare_errno));
	cr_assert_eq(r.mount_errno, 0, "mount: %s", strerror(r.mount_errno));
	cr_assert_eq(r.blocks, 256, "a 1 MiB tmpfs has %ld pages", r.blocks);

	cr_expect_eq(r.dflt_rc, -ENOSPC, "default create: %d", r.dflt_rc);
	cr_expect_eq(r.dflt_children, 0, "the failed create left processes");
	cr_expect_eq(r.dflt_entries, 0, "the failed create left a name");
	cr_expect_eq(r.dflt_free, 256, "the failed create kept %ld pages",
	             256 - r.dflt_free);

	cr_expect_lt(r.small_size, 1 << 20);
	cr_expect_eq(r.small_rc, 0, "64 KiB arena: %d", r.small_rc);
	cr_expect_eq(r.small_map_rc, 0);
	cr_expect_eq(r.small_map_ok, 1);
	cr_expect_eq(r.small_free, 256 - (long)(r.small_size / 4096),
	             "the pool holds %ld pages, its segment is %" PRIu64 " B",
	             256 - r.small_free, r.small_size);
	cr_expect_eq(r.second_rc, -ENOSPC, "second pool: %d", r.second_rc);
	cr_expect_eq(r.small_map2_rc, 0);
	cr_expect_eq(r.small_map2_ok, 1);
	cr_expect_eq(r.small_after_children, 0);
	cr_expect_eq(r.small_after_free, 256, "destroy kept %ld pages",
	             256 - r.small_after_free);

	cr_expect_eq(r.exact_rc, 0, "a segment of exactly 1 MiB: %d", r.exact_rc);
	cr_expect_eq(r.exact_map_ok, 1);
	cr_expect_eq(r.over_rc, -ENOSPC, "1 MiB + 4 KiB: %d", r.over_rc);
	cr_expect_eq(r.over_free, 256);
	cr_expect_eq(r.final_entries, 0);
	cr_expect_eq(r.final_children, 0);
}

/* ===================================== 3. tasks scribbling the segment */

#define SN 8 /* tasks per scribbling call */

enum scribble {
	OWN_TAG_HOLD,     /* task 0: its own tag, then sleeps hold_ms */
	OWN_TAG_FLEETING, /* task 0 sleeps hold_ms; others: own tag, return */
	OTHER_TAG,        /* task 0: task 1's tag, once task 1 is DONE */
	OUTSIDE_WINDOW,   /* task 0: every slot outside the call's window */
	OWN_STATUS,       /* every task: its own status */
	OTHER_STATUS,     /* task 0: task 1's status, once task 1 is DONE */
	HEADER,           /* task 0: magic, sizes, offsets, boot, work_ec */
	STATE_WORD,       /* task 0: the pool state word, to KILL */
	CALL_RECORD,      /* task 0: its call's window and slot base */
	RING,             /* task 0: the ring's indices or cells (ring_kind) */
};

/*
 * What task 0 writes in the task ring (RING). It does so while task 1 runs
 * on the other worker and the call's other descriptors wait in the ring:
 * head 2, tail SN, in a fresh pool.
 */
enum ring_kind {
	R_SEQ_AHEAD,      /* every cell's seq, two laps ahead */
	R_SEQ_BEHIND,     /* the seq of the cell at tail, to 0 */
	R_TAIL_GAP,       /* tail 5 ahead: cells no producer will publish */
	R_TAIL_LAPS,      /* tail 3 laps ahead */
	R_TAIL_REWOUND,   /* tail to 0, below head */
	R_HEAD_REWOUND,   /* head to 0, onto cells released for the next lap */
	R_HEAD_PAST_TAIL, /* head 3 laps past tail */
	R_HEAD_SKIP,      /* head 3 ahead, past queued descriptors */
	R_NKINDS,
};

static const char *const ring_kind_name[R_NKINDS] = {
	"seq ahead", "seq behind", "tail gap", "tail laps ahead",
	"tail rewound", "head rewound", "head past tail", "head skip",
};

enum garbage {
	G_FUTURE_DONE,   /* DONE of a ticket far ahead */
	G_FUTURE_ARMED,  /* ARMED of the ticket one window ahead */
	G_BAD_STATE,     /* this ticket, state 3 */
	G_ZERO_STATE,    /* this ticket, state 0 */
	G_OLD_BAD_STATE, /* an older ticket, state 3 */
	G_RAW,           /* 0xdeadbeefdeadbeef */
	G_NDETECTED,
	G_REWIND = G_NDETECTED, /* DONE of the previous ticket */
	G_ZERO,                 /* 0, as in a fresh segment */
	G_NKINDS,
};

static const char *const garbage_name[G_NKINDS] = {
	"future DONE", "future ARMED", "bad state", "state 0",
	"older ticket, bad state", "raw", "rewound to DONE(t-1)", "zero",
};

struct seg_view {
	struct shp__header *hdr;
	struct shp__slot *slots;
	struct shp__call *calls;
	struct shp__ring *ring;
	uint32_t call_idx; /* the call's entry: 0 in a fresh pool */
	int what;          /* enum scribble */
	int garbage;       /* enum garbage */
	int ring_kind;     /* enum ring_kind */
	int32_t bad_status;
	int hold_ms;
	uint32_t mismatch;  /* out was not where the test thought */
	uint32_t timed_out; /* task 1 never became DONE, or never started */
	uint32_t started;   /* RING: task 1 runs */
	uint32_t scribbled;
};

static uint64_t garbage_tag(int kind, uint64_t t, uint32_t window)
{
	switch (kind) {
	case G_FUTURE_DONE:
		return SHP_TAG(t + 1000000, SHP_SLOT_DONE);
	case G_FUTURE_ARMED:
		return SHP_TAG(t + window, SHP_SLOT_ARMED);
	case G_BAD_STATE:
		return SHP_TAG(t, 3);
	case G_ZERO_STATE:
		return SHP_TAG(t, 0);
	case G_OLD_BAD_STATE:
		return SHP_TAG(t - 1, 3);
	case G_RAW:
		return 0xdeadbeefdeadbeefull;
	case G_REWIND:
		return SHP_TAG(t - 1, SHP_SLOT_DONE);
	default:
		return 0;
	}
}

static struct shp__slot *slot_for(const struct seg_view *v,
                                  const struct shp__call *rec, uint64_t i)
{
	return &v->slots[rec->slot_base + i % rec->window];
}

/* Waits until slot s says DONE(t); false after 5 s. */
static bool await_done(struct shp__slot *s, uint64_t t)
{
	int64_t until = now_ns() + slack(5000 * MS);

	while (__atomic_load_n(&s->tag, __ATOMIC_ACQUIRE) !=
	       SHP_TAG(t, SHP_SLOT_DONE))
		if (now_ns() > until)
			return false;
	return true;
}

/* Waits until *w is non-zero; false after 5 s. */
static bool await_set(const uint32_t *w)
{
	int64_t until = now_ns() + slack(5000 * MS);

	while (!__atomic_load_n(w, __ATOMIC_SEQ_CST))
		if (now_ns() > until)
			return false;
	return true;
}

/* Waits until the first n positions of a fresh ring are published; false
 * after 5 s. */
static bool await_published(const struct shp__ring *r, uint64_t n)
{
	int64_t until = now_ns() + slack(5000 * MS);

	while (__atomic_load_n(&r->tail, __ATOMIC_SEQ_CST) != n ||
	       __atomic_load_n(&r->cells[(n - 1) & r->mask].seq,
	                       __ATOMIC_SEQ_CST) != n)
		if (now_ns() > until)
			return false;
	return true;
}

static void scribble_ring(struct shp__ring *r, int kind)
{
	uint64_t head = r->head, tail = r->tail, size = r->size;

	switch (kind) {
	case R_SEQ_AHEAD:
		for (uint32_t c = 0; c < r->size; c++)
			__atomic_store_n(&r->cells[c].seq,
			                 r->cells[c].seq + 2 * size,
			                 __ATOMIC_SEQ_CST);
		break;
	case R_SEQ_BEHIND:
		__atomic_store_n(&r->cells[tail & r->mask].seq, 0,
		                 __ATOMIC_SEQ_CST);
		break;
	case R_TAIL_GAP:
		__atomic_store_n(&r->tail, tail + 5, __ATOMIC_SEQ_CST);
		break;
	case R_TAIL_LAPS:
		__atomic_store_n(&r->tail, tail + 3 * size, __ATOMIC_SEQ_CST);
		break;
	case R_TAIL_REWOUND:
		__atomic_store_n(&r->tail, 0, __ATOMIC_SEQ_CST);
		break;
	case R_HEAD_REWOUND:
		__atomic_store_n(&r->head, 0, __ATOMIC_SEQ_CST);
		break;
	case R_HEAD_PAST_TAIL:
		__atomic_store_n(&r->head, tail + 3 * size, __ATOMIC_SEQ_CST);
		break;
	case R_HEAD_SKIP:
		__atomic_store_n(&r->head, head + 3, __ATOMIC_SEQ_CST);
		break;
	}
}

static int scribbler(const void *in, void *out, void *ctx)
{
	struct seg_view *v = ctx;
	const struct shp__call *rec = &v->calls[v->call_idx];
	uint64_t i = (uint64_t)*(const int *)in, tb = rec->ticket_base;
	uint32_t window = rec->window;
	struct shp__slot *mine = slot_for(v, rec, i);
	struct shp__slot *next = slot_for(v, rec, i + 1);
	struct shp__header *h = v->hdr;

	/* Inline output: out is this task's slot, which proves the test
	 * aims at the right slots. */
	if (out != (void *)mine->data)
		__atomic_fetch_add(&v->mismatch, 1, __ATOMIC_SEQ_CST);
	*(int *)out = 7 * (int)i + 1;
	switch (v->what) {
	case OWN_TAG_HOLD:
		if (i == 0) {
			__atomic_store_n(&mine->tag,
			                 garbage_tag(v->garbage, tb, window),
			                 __ATOMIC_SEQ_CST);
			__atomic_fetch_add(&v->scribbled, 1, __ATOMIC_SEQ_CST);
			sleep_ms(v->hold_ms);
		}
		break;
	case OWN_TAG_FLEETING:
		if (i == 0) {
			sleep_ms(v->hold_ms);
			break;
		}
		__atomic_store_n(&mine->tag,
		                 garbage_tag((int)(i % G_NKINDS), tb + i, window),
		                 __ATOMIC_SEQ_CST);
		__atomic_fetch_add(&v->scribbled, 1, __ATOMIC_SEQ_CST);
		break;
	case OTHER_TAG:
	case OTHER_STATUS:
		if (i != 0)
			break;
		if (!await_done(next, tb + 1)) {
			v->timed_out = 1;
			break;
		}
		if (v->what == OTHER_TAG)
			__atomic_store_n(&next->tag,
			                 garbage_tag(v->garbage, tb + 1, window),
			                 __ATOMIC_SEQ_CST);
		else
			__atomic_store_n(&next->status, v->bad_status,
			                 __ATOMIC_SEQ_CST);
		__atomic_fetch_add(&v->scribbled, 1, __ATOMIC_SEQ_CST);
		break;
	case OUTSIDE_WINDOW:
		if (i != 0)
			break;
		for (uint32_t s = 0; s < SHP_NSLOTS; s++) {
			if (s >= rec->slot_base && s < rec->slot_base + window)
				continue;
			__atomic_store_n(&v->slots[s].tag,
			                 SHP_TAG(tb + 1000000 + s, SHP_SLOT_DONE),
			                 __ATOMIC_SEQ_CST);
			v->slots[s].status = INT_MIN;
		}
		__atomic_fetch_add(&v->scribbled, 1, __ATOMIC_SEQ_CST);
		break;
	case OWN_STATUS:
		__atomic_store_n(&mine->status, v->bad_status, __ATOMIC_SEQ_CST);
		mine->aux = 0x5eed;
		__atomic_fetch_add(&v->scribbled, 1, __ATOMIC_SEQ_CST);
		break;
	case HEADER:
		if (i != 0)
			break;
		h->magic = 0x0123456789abcdefull;
		h->layout_version = 999;
		h->header_size = 1;
		h->total_size = UINT64_MAX;
		h->nworkers = 0;
		h->ncalls = 0xffffffff;
		h->nslots = 7;
		h->ncells = 0xffffffff;
		h->workers_off = UINT64_MAX;
		h->calls_off = 1;
		h->slots_off = 0xdeadbeefull;
		h->ring_off = 3;
		h->arena_off = UINT64_MAX / 2;
		h->arena_size = 0;
		h->boot = -1;
		h->boot_ec = 0xffffffff;
		/* Epoch garbage with SLEEPERS clear: a worker asleep on the
		 * old value is not woken by notifies until its 1 s tick. */
		__atomic_store_n(&h->work_ec, 0x7ffffff0u, __ATOMIC_SEQ_CST);
		__atomic_fetch_add(&v->scribbled, 1, __ATOMIC_SEQ_CST);
		break;
	case STATE_WORD:
		if (i != 0)
			break;
		__atomic_store_n(&h->state, SHP_STATE_KILL, __ATOMIC_SEQ_CST);
		__atomic_fetch_add(&v->scribbled, 1, __ATOMIC_SEQ_CST);
		sleep_ms(3000); /* the supervisor kills us first */
		break;
	case CALL_RECORD:
		break; /* in record_scribbler */
	case RING:
		if (i == 1) {
			/* Keeps the other worker, so that the scribble finds
			 * every later descriptor still in the ring. */
			__atomic_store_n(&v->started, 1, __ATOMIC_SEQ_CST);
			await_set(&v->scribbled);
		}
		if (i != 0)
			break;
		if (!await_set(&v->started) ||
		    !await_published(v->ring, SN)) {
			v->timed_out = 1;
			break;
		}
		scribble_ring(v->ring, v->ring_kind);
		__atomic_fetch_add(&v->scribbled, 1, __ATOMIC_SEQ_CST);
		break;
	}
	return 0;
}

/* CALL_RECORD: task 0 breaks its call's window and slot base (no task of
 * the call may read them after that, as scribbler does). */
static int record_scribbler(const void *in, void *out, void *ctx)
{
	struct seg_view *v = ctx;
	struct shp__call *rec = &v->calls[v->call_idx];
	int i = *(const int *)in;

	*(int *)out = 7 * i + 1;
	if (i != 0) {
		/* A task taken before the scribble runs from the record as
		 * it was; let none finish before it. */
		await_set(&v->scribbled);
		return 0;
	}
	/* What every worker reads to find the call's slots. */
	__atomic_store_n(&rec->window, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&rec->slot_base, 0xfffffff0u, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&v->scribbled, 1, __ATOMIC_SEQ_CST);
	return 0;
}

/* A fresh pool of 2 workers and the view of its segment, in its arena. */
static shp_pool *scribble_pool(struct seg_view **vp, int what)
{
	struct shp_pool_options o = { .workers = 2, .arena_bytes = 1 << 20 };
	struct seg_view *v;
	shp_pool *p;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	v = shp_alloc(p, sizeof(*v));
	cr_assert_not_null(v);
	*v = (struct seg_view){ .hdr = p->hdr, .slots = p->slots,
	                        .calls = p->calls, .ring = p->ring,
	                        .what = what };
	*vp = v;
	return p;
}

/* One scribbling call: n tasks of chunk 1, inline input and output. */
static int scribble_map(shp_pool *p, struct seg_view *v, size_t n, int *out,
                        int *st, int64_t *ns)
{
	int *in = iota(n);
	int64_t t0 = now_ns();
	int r;

	for (size_t i = 0; i < n; i++) {
		out[i] = -1;
		st[i] = STATUS_UNSET;
	}
	r = shp_map(p, v->what == CALL_RECORD ? record_scribbler : scribbler, v,
	            in, sizeof(int), out, sizeof(int), n, 1, st);
	if (ns)
		*ns = now_ns() - t0;
	free(in);
	return r;
}

Test(failure, own_tag_scribbled_and_held_is_corruption, .timeout = 30)
{
	for (int g = 0; g < G_NDETECTED; g++) {
		struct seg_view *v;
		shp_pool *p = scribble_pool(&v, OWN_TAG_HOLD);
		int out[SN], st[SN];
		int64_t ns;

		v->garbage = g;
		v->hold_ms = (int)(slack(800 * MS) / MS);
		cr_expect_eq(scribble_map(p, v, SN, out, st, &ns), SHP_ECORRUPT,
		             "%s", garbage_name[g]);
		/* Seen while the task still held it: the caller did not
		 * wait for the task. */
		cr_expect_lt(ns, slack(600 * MS), "%s: %" PRId64 " ms", garbage_name[g],
		             ns / MS);
		cr_expect_eq(v->scribbled, 1);
		cr_expect_eq(v->mismatch, 0);
		for (int i = 0; i < SN; i++) {
			cr_expect_eq(st[i], SHP_ECANCELED, "%s: status[%d] = %d",
			             garbage_name[g], i, st[i]);
			cr_expect_eq(out[i], -1);
		}
		expect_map_correct(p, 500, "after the corrupt call");
		destroy_settled(p);
	}
}

Test(failure, own_tag_scribble_overwritten_by_done_completes, .timeout = 20)
{
	const size_t n = 64;
	struct seg_view *v;
	shp_pool *p = scribble_pool(&v, OWN_TAG_FLEETING);
	int out[64], st[64];

	/* Task 0 holds the caller at slot 0 for 300 ms; meanwhile every
	 * other task scribbles its own tag (all kinds of garbage) and
	 * returns, and its worker's DONE overwrites the scribble. The caller
	 * reads slot i only once it took i - 1: it never sees the garbage. */
	v->hold_ms = (int)(slack(300 * MS) / MS);
	cr_expect_eq(scribble_map(p, v, n, out, st, NULL), 0);
	cr_expect_eq(v->scribbled, n - 1);
	cr_expect_eq(v->mismatch, 0);
	for (size_t i = 0; i < n; i++) {
		cr_expect_eq(st[i], 0, "status[%zu] = %d", i, st[i]);
		cr_expect_eq(out[i], 7 * (int)i + 1);
	}
	expect_map_correct(p, 500, "after the scribbles");
	destroy_settled(p);
}

Test(failure, other_slot_tag_scribble_is_corruption, .timeout = 30)
{
	for (int g = 0; g < G_NDETECTED; g++) {
		struct seg_view *v;
		shp_pool *p = scribble_pool(&v, OTHER_TAG);
		int out[SN], st[SN];

		v->garbage = g;
		/* Task 0 overwrites task 1's DONE tag before it returns:
		 * the caller takes task 0, then finds the garbage. */
		cr_expect_eq(scribble_map(p, v, SN, out, st, NULL), SHP_ECORRUPT,
		             "%s", garbage_name[g]);
		cr_expect_eq(v->timed_out, 0);
		cr_expect_eq(v->scribbled, 1);
		cr_expect_eq(v->mismatch, 0);
		cr_expect_eq(st[0], 0);
		cr_expect_eq(out[0], 1);
		for (int i = 1; i < SN; i++)
			cr_expect_eq(st[i], SHP_ECANCELED, "%s: status[%d] = %d",
			             garbage_name[g], i, st[i]);
		expect_map_correct(p, 500, "after the corrupt call");
		destroy_settled(p);
	}
}

/*
 * A DONE tag rewound to a value a pending slot may legitimately hold (an
 * older ticket, or zero) looks like "not done yet". The caller must never
 * take it for a result, and must not wait for ever either: once nothing in
 * the pool could still complete the task (ring, backlog, workers all idle,
 * two wait slices in a row), the call fails with SHP_ECORRUPT.
 */
Test(failure, other_slot_tag_rewound_is_corruption, .timeout = 30)
{
	for (int g = G_REWIND; g < G_NKINDS; g++) {
		struct seg_view *v;
		shp_pool *p = scribble_pool(&v, OTHER_TAG);
		struct bg_map m;

		v->garbage = g;
		bg_map_start(&m, p, scribbler, v, SN, 1);
		cr_assert(bg_join(m.th, 3000), "%s: the call still "
		          "waits", garbage_name[g]);
		cr_expect_eq(m.rc, SHP_ECORRUPT, "%s", garbage_name[g]);
		cr_expect_eq(v->timed_out, 0);
		cr_expect_eq(v->scribbled, 1);
		cr_expect_eq(m.st[0], 0);
		for (int i = 1; i < SN; i++)
			cr_expect_eq(m.st[i], SHP_ECANCELED, "%s: status[%d] = %d",
			             garbage_name[g], i, m.st[i]);
		expect_map_correct(p, 500, "after the rewound tag");
		destroy_settled(p);
		bg_map_free(&m);
	}
}

Test(failure, scribble_outside_the_window_changes_nothing, .timeout = 20)
{
	struct seg_view *v;
	shp_pool *p = scribble_pool(&v, OUTSIDE_WINDOW);
	int out[SN], st[SN];

	cr_expect_eq(scribble_map(p, v, SN, out, st, NULL), 0);
	cr_expect_eq(v->scribbled, 1);
	cr_expect_eq(v->mismatch, 0);
	for (int i = 0; i < SN; i++) {
		cr_expect_eq(st[i], 0);
		cr_expect_eq(out[i], 7 * i + 1);
	}
	/* A later call with inline inputs arms every slot of its window
	 * before it enqueues: the garbage left there is overwritten. */
	expect_map_correct(p, 2000, "over the scribbled slots");
	destroy_settled(p);
}

Test(failure, own_status_scribble_is_overwritten, .timeout = 20)
{
	struct seg_view *v;
	shp_pool *p = scribble_pool(&v, OWN_STATUS);
	int out[SN], st[SN];

	/* The worker stores the task's status after the task returns. */
	v->bad_status = -12345;
	cr_expect_eq(scribble_map(p, v, SN, out, st, NULL), 0);
	cr_expect_eq(v->scribbled, SN);
	for (int i = 0; i < SN; i++) {
		cr_expect_eq(st[i], 0, "status[%d] = %d", i, st[i]);
		cr_expect_eq(out[i], 7 * i + 1);
	}
	destroy_settled(p);
}

Test(failure, other_slot_status_scribble_is_corruption, .timeout = 30)
{
	static const int32_t bad[] = { -1, -4095, -5000, SHP_ECLOSED, SHP_EBROKEN,
	                               SHP_ECORRUPT, INT_MIN };

	for (size_t b = 0; b < sizeof(bad) / sizeof(bad[0]); b++) {
		struct seg_view *v;
		shp_pool *p = scribble_pool(&v, OTHER_STATUS);
		int out[SN], st[SN];

		v->bad_status = bad[b];
		cr_expect_eq(scribble_map(p, v, SN, out, st, NULL), SHP_ECORRUPT,
		             "status %d", bad[b]);
		cr_expect_eq(v->timed_out, 0);
		cr_expect_eq(v->scribbled, 1);
		cr_expect_eq(st[0], 0);
		cr_expect_eq(out[0], 1);
		for (int i = 1; i < SN; i++)
			cr_expect_eq(st[i], SHP_ECANCELED, "status %d: status[%d] = %d",
			             bad[b], i, st[i]);
		destroy_settled(p);
	}
}

/* Overwrites the ring's geometry when its input is 3; ctx: the ring. */
static int ring_scribbler(const void *in, void *out, void *ctx)
{
	struct shp__ring *r = *(struct shp__ring **)ctx;
	int x = *(const int *)in;

	if (x == 3)
		SHP_STORE(r->mask, UINT32_MAX); /* must fault: the page is sealed */
	*(int *)out = 3 * x + 1;
	return 0;
}

Test(failure, ring_geometry_is_read_only, .timeout = 20)
{
	struct shp_pool_options o = { .workers = 2 };
	int in[200], out[200], st[200];
	struct shp__ring **ctx;
	shp_pool *p;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	ctx = shp_alloc(p, sizeof(*ctx));
	cr_assert_not_null(ctx);
	*ctx = p->ring;
	for (int i = 0; i < 200; i++)
		in[i] = i;
	cr_assert_eq(shp_map(p, ring_scribbler, ctx, in, sizeof(int), out,
	                     sizeof(int), 200, 1, st), SHP_ETASK);
	for (int i = 0; i < 200; i++) {
		if (i == 3) {
			cr_expect_eq(st[i], SHP_ECRASHED);
			continue;
		}
		cr_expect_eq(st[i], 0, "status[%d] = %d", i, st[i]);
		cr_expect_eq(out[i], 3 * i + 1);
	}
	cr_expect_eq(p->ring->mask, p->ring->size - 1);
	cr_expect_eq(p->ring->size, 1024);
	destroy_settled(p);
}

Test(failure, header_scribble_is_ignored, .timeout = 20)
{
	const size_t n = 1000;
	struct seg_view *v;
	shp_pool *p = scribble_pool(&v, HEADER);
	int *out = malloc(n * sizeof(int)), *st = malloc(n * sizeof(int));
	int64_t ns;
	void *a;

	/* Nobody reads those fields after create: everyone has private
	 * copies. A garbage work_ec costs at most a worker's 1 s tick. */
	cr_expect_eq(scribble_map(p, v, n, out, st, &ns), 0);
	cr_expect_lt(ns, slack(3000 * MS));
	cr_expect_eq(v->scribbled, 1);
	cr_expect_eq(v->mismatch, 0);
	cr_expect_neq(p->hdr->magic, SHP_MAGIC, "the scribble did not land");
	cr_expect_eq(p->hdr->nslots, 7);
	for (size_t i = 0; i < n; i++) {
		cr_expect_eq(st[i], 0);
		cr_expect_eq(out[i], 7 * (int)i + 1);
	}
	expect_map_correct(p, 5000, "after the header scribble");
	a = shp_alloc(p, 4096);
	cr_expect_not_null(a);
	shp_free(p, a);
	destroy_settled(p);
	free(out);
	free(st);
}

Test(failure, state_word_scribble_breaks_the_pool_cleanly, .timeout = 20)
{
	struct seg_view *v;
	shp_pool *p = scribble_pool(&v, STATE_WORD);
	int out[SN], st[SN];
	pid_t w[8];
	int64_t ns;

	/* KILL in the state word: the supervisor takes the pool down as if
	 * terminated; the caller sees a dead supervisor. */
	cr_assert_eq(proc_children(p->zygote, w, 8), 2);
	cr_expect_eq(scribble_map(p, v, SN, out, st, &ns), SHP_EBROKEN);
	cr_expect_lt(ns, slack(2000 * MS));
	cr_expect_eq(v->scribbled, 1);
	for (int i = 0; i < SN; i++)
		cr_expect_eq(st[i], SHP_ECANCELED);
	cr_expect_eq(alive_after(w, 2, 1000), 0);
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), SHP_EBROKEN);
	destroy_settled(p);
}

Test(failure, call_record_scribble_is_corruption, .timeout = 20)
{
	struct seg_view *v;
	shp_pool *p = scribble_pool(&v, CALL_RECORD);
	int out[SN], st[SN];
	pid_t before[8], after[8];
	int64_t ns;

	/* Workers check the record before they use it and drop the chunks
	 * that do not fit (no worker dies of it); the caller finds its
	 * record changed at its next wait slice. */
	cr_assert_eq(proc_children(p->zygote, before, 8), 2);
	cr_expect_eq(scribble_map(p, v, SN, out, st, &ns), SHP_ECORRUPT);
	cr_expect_lt(ns, slack(2000 * MS));
	cr_expect_eq(v->scribbled, 1);
	/* Results done before the failure are delivered: task 0, and task
	 * 1 if the other worker took it before the scribble (it waits for
	 * the scribble, so it is the only one that can have). */
	cr_expect_eq(st[0], 0);
	cr_expect_eq(out[0], 1);
	cr_expect(st[1] == SHP_ECANCELED || (st[1] == 0 && out[1] == 8),
	          "task 1: status %d, out %d", st[1], out[1]);
	for (int i = 2; i < SN; i++)
		cr_expect_eq(st[i], SHP_ECANCELED, "status[%d] = %d", i, st[i]);
	cr_assert_eq(proc_children(p->zygote, after, 8), 2);
	cr_expect(before[0] == after[0] && before[1] == after[1],
	          "a worker died of the scribbled record: %d %d, then %d %d",
	          before[0], before[1], after[0], after[1]);
	expect_map_correct(p, 5000, "after the call record scribble");
	destroy_settled(p);
}

/*
 * A call that fails mid-way (SHP_ECORRUPT) keeps its call entry and slots
 * for the life of the pool, since its tasks may still write there. Once
 * those leaks hold every slot, a later call must fail, not wait forever
 * for slots nobody will free.
 */
Test(failure, leaked_slots_do_not_wedge_later_calls, .timeout = 30)
{
	const size_t n = 2048; /* a full window: 32 of the 64 slot blocks */
	struct seg_view *v;
	shp_pool *p = scribble_pool(&v, OTHER_TAG);
	int *out = malloc(n * sizeof(int)), *st = malloc(n * sizeof(int));
	struct bg_map m;

	v->garbage = G_FUTURE_DONE;
	for (uint32_t c = 0; c < 2; c++) {
		v->call_idx = c; /* the failed call's entry stays taken */
		v->scribbled = 0;
		cr_assert_eq(scribble_map(p, v, n, out, st, NULL), SHP_ECORRUPT,
		             "call %u", c);
		cr_assert_eq(v->scribbled, 1);
		cr_assert_eq(v->timed_out, 0);
	}
	bg_map_start(&m, p, triple, NULL, 10, 0);
	cr_assert(bg_join(m.th, 2000), "a call waits forever for slots");
	cr_expect_eq(m.rc, SHP_ECORRUPT);
	destroy_settled(p);
	bg_map_free(&m);
	free(out);
	free(st);
}

/* The workers' pids, which must stay the same; and their CPU over half a
 * second, which must be next to nothing: a worker that spins on a ring it
 * cannot take from burns all of it (50 ticks at 100 Hz). */
static void expect_workers_kept_and_asleep(shp_pool *p, const pid_t *before,
                                           const char *what)
{
	long hz = sysconf(_SC_CLK_TCK);
	pid_t w[8];
	long long ticks;

	cr_assert_eq(proc_children(p->zygote, w, 8), 2, "%s", what);
	cr_expect(among(before[0], w, 2) && among(before[1], w, 2),
	          "%s: a worker died: %d %d, then %d %d", what, before[0],
	          before[1], w[0], w[1]);
	ticks = proc_cpu_ticks_all(w, 2);
	sleep_ms(500);
	ticks = proc_cpu_ticks_all(w, 2) - ticks;
	cr_expect_leq(ticks, hz / 25, "%s: the workers used %lld ticks in 0.5 s",
	              what, ticks);
}

/* A call of 10 triple() tasks, chunk 1, in a thread: its result, once it
 * returned within 3 s; every task cancelled, nothing written. */
static int next_call_fails(shp_pool *p, const char *what)
{
	struct bg_map m;
	int rc;

	bg_map_start(&m, p, triple, NULL, 10, 1);
	cr_assert(bg_join(m.th, 3000), "%s: the next call still waits", what);
	cr_expect_lt(m.end - m.start, slack(2000 * MS), "%s: %" PRId64 " ms",
	             what, (m.end - m.start) / MS);
	for (int i = 0; i < 10; i++) {
		cr_expect_eq(m.st[i], SHP_ECANCELED, "%s: status[%d] = %d", what,
		             i, m.st[i]);
		cr_expect_eq(m.out[i], -1);
	}
	rc = m.rc;
	bg_map_free(&m);
	return rc;
}

/*
 * Task 0 writes the ring (kind) while the other descriptors of its call
 * are queued. first: what the call returns; SHP_ECORRUPT when the words
 * keep its queued tasks from the workers (tasks 0 and 1 ran before), 0
 * when the workers still take them all. Either way the ring is then
 * unusable, and the call that finds it so (this one, or the next) fails
 * with SHP_ECORRUPT within a second or so, as every later call does at
 * once: the pool is corrupt. No worker dies or spins on the words, join
 * says why the pool stopped, and destroy leaves nothing behind.
 */
static void expect_ring_scribble_corrupts(int kind, int first)
{
	const char *name = ring_kind_name[kind];
	struct seg_view *v;
	shp_pool *p = scribble_pool(&v, RING);
	int out[SN], st[SN], x = 1, y = -1;
	pid_t before[8];
	int64_t ns;

	v->ring_kind = kind;
	cr_assert_eq(proc_children(p->zygote, before, 8), 2);
	cr_expect_eq(scribble_map(p, v, SN, out, st, &ns), first, "%s", name);
	cr_expect_lt(ns, slack(2000 * MS), "%s: %" PRId64 " ms", name, ns / MS);
	cr_expect_eq(v->scribbled, 1, "%s", name);
	cr_expect_eq(v->timed_out, 0, "%s", name);
	cr_expect_eq(v->mismatch, 0, "%s", name);
	for (int i = 0; i < SN; i++) {
		bool ran = i < 2 || first == 0;

		cr_expect_eq(st[i], ran ? 0 : SHP_ECANCELED,
		             "%s: status[%d] = %d", name, i, st[i]);
		cr_expect_eq(out[i], ran ? 7 * i + 1 : -1, "%s: out[%d]", name, i);
	}
	if (first == 0)
		cr_expect_eq(next_call_fails(p, name), SHP_ECORRUPT, "%s", name);
	ns = now_ns();
	cr_expect_eq(shp_apply(p, triple, NULL, &x, sizeof(x), &y, sizeof(y)),
	             SHP_ECORRUPT, "%s", name);
	cr_expect_lt(now_ns() - ns, slack(50 * MS), "%s", name);
	cr_expect_eq(y, -1);
	expect_workers_kept_and_asleep(p, before, name);
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), SHP_ECORRUPT, "%s", name);
	cr_expect_eq(proc_descendants(getpid(), before, 8), 0,
	             "%s: join left a process", name);
	destroy_settled(p);
}

Test(failure, ring_seq_scribble_is_corruption, .timeout = 30)
{
	/* Cells ahead of their positions: the workers cannot take the
	 * queued descriptors, and nothing publishes the cell at head. */
	expect_ring_scribble_corrupts(R_SEQ_AHEAD, SHP_ECORRUPT);
	/* The cell at tail a lap behind: the queued descriptors are taken,
	 * the next call finds no room, and nobody will make any. */
	expect_ring_scribble_corrupts(R_SEQ_BEHIND, 0);
}

Test(failure, ring_tail_scribble_is_corruption, .timeout = 30)
{
	/* The next call's descriptors land past cells nobody publishes. */
	expect_ring_scribble_corrupts(R_TAIL_GAP, 0);
	/* The next call finds no room, then tail more than a lap past head:
	 * impossible. */
	expect_ring_scribble_corrupts(R_TAIL_LAPS, 0);
	/* The next call's enqueue meets released cells ahead of a tail that
	 * does not move (it used to spin there), then tail below head. */
	expect_ring_scribble_corrupts(R_TAIL_REWOUND, 0);
}

Test(failure, ring_head_scribble_is_corruption, .timeout = 30)
{
	/* Workers meet a released cell at a head that does not move (they
	 * used to spin in the dequeue). */
	expect_ring_scribble_corrupts(R_HEAD_REWOUND, SHP_ECORRUPT);
	/* Head past tail: impossible. */
	expect_ring_scribble_corrupts(R_HEAD_PAST_TAIL, SHP_ECORRUPT);
}

/*
 * Head moved past three queued descriptors: those are lost, but the ring
 * still moves and its indices are possible. Their call fails when nothing
 * in the pool holds its tasks any more (the idle verdict), and the pool
 * goes on. The skipped cells stay FULL of a lap gone: when producers come
 * round to them, a lap later, they stop there for good, and that call
 * finds the ring frozen: the pool is corrupt.
 */
Test(failure, ring_head_skip_fails_its_call_then_a_lap_later_the_pool, .timeout = 30)
{
	const size_t n = 2000;
	struct seg_view *v;
	shp_pool *p = scribble_pool(&v, RING);
	int *in = iota(n), *out = filled(n, -1), *st = filled(n, STATUS_UNSET);
	int sout[SN], sst[SN];
	size_t room;
	int64_t ns;

	v->ring_kind = R_HEAD_SKIP;
	cr_expect_eq(scribble_map(p, v, SN, sout, sst, &ns), SHP_ECORRUPT);
	cr_expect_lt(ns, slack(2000 * MS), "%" PRId64 " ms", ns / MS);
	cr_expect_eq(v->scribbled, 1);
	cr_expect_eq(v->timed_out, 0);
	for (int i = 0; i < SN; i++)
		cr_expect_eq(sst[i], i < 2 ? 0 : SHP_ECANCELED, "status[%d] = %d",
		             i, sst[i]);
	/* Positions 8 to 17, one per task. */
	cr_expect_eq(shp_map(p, triple, NULL, in, sizeof(int), out, sizeof(int),
	                     10, 1, st), 0, "the pool stopped at a lost call");
	for (int i = 0; i < 10; i++)
		cr_expect_eq(out[i], 3 * i + 1);
	/* From position 18, up to 2 + size, where the first skipped cell
	 * comes round. */
	room = 2 + p->ring->size - 18;
	ns = now_ns();
	cr_expect_eq(shp_map(p, triple, NULL, in, sizeof(int), out, sizeof(int),
	                     n, 1, st), SHP_ECORRUPT);
	ns = now_ns() - ns;
	cr_expect_lt(ns, slack(3000 * MS), "%" PRId64 " ms", ns / MS);
	for (size_t i = 0; i < n; i++) {
		cr_expect_eq(st[i], i < room ? 0 : SHP_ECANCELED,
		             "status[%zu] = %d", i, st[i]);
		if (i < room)
			cr_expect_eq(out[i], 3 * (int)i + 1);
	}
	cr_expect_eq(shp_map(p, triple, NULL, in, sizeof(int), out, sizeof(int),
	                     10, 1, st), SHP_ECORRUPT);
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), SHP_ECORRUPT);
	destroy_settled(p);
	free(in);
	free(out);
	free(st);
}

/* ============================================= 4. workers killed */

Test(failure, worker_killed_while_asleep_on_futex_is_replaced, .timeout = 20)
{
	struct shp_pool_options o = { .workers = 2 };
	pid_t w[8], gone[8];
	shp_pool *p;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	expect_map_correct(p, 1000, "first");
	cr_assert_eq(proc_children(p->zygote, w, 8), 2);
	/* Past their spin, both sleep on work_ec. */
	cr_assert(all_asleep(w, 2), "the workers are not asleep on their futex");
	gone[0] = w[0];
	cr_assert_eq(kill(w[0], SIGKILL), 0);
	cr_expect_eq(alive_after(gone, 1, 1000), 0);
	cr_expect_eq(strength_after(p, 2, gone, 1, stretch_ms(1000)), 2,
	             "no replacement within 1 s");
	cr_expect_eq(proc_children(p->zygote, w, 8), 2);
	expect_map_correct(p, 5000, "after the kill");

	/* Both at once, asleep again. */
	cr_assert_eq(proc_children(p->zygote, w, 8), 2);
	cr_expect(all_asleep(w, 2), "the workers are not asleep again");
	gone[0] = w[0];
	gone[1] = w[1];
	kill(w[0], SIGKILL);
	kill(w[1], SIGKILL);
	cr_expect_eq(strength_after(p, 2, gone, 2, stretch_ms(1000)), 2);
	expect_map_correct(p, 5000, "after both were killed");
	destroy_settled(p);
}

Test(failure, worker_killed_while_idle_is_replaced, .timeout = 20)
{
	struct shp_pool_options o = { .workers = 2 };
	pid_t w[8], gone[64];
	size_t ngone = 0;
	shp_pool *p;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	/* Right after a call returns: the workers spin or have just gone to
	 * sleep. Five rounds, each killing one of them. */
	for (int round = 0; round < 5; round++) {
		expect_map_correct(p, 2000, "before a kill");
		cr_assert_eq(proc_children(p->zygote, w, 8), 2, "round %d", round);
		gone[ngone++] = w[round % 2];
		cr_assert_eq(kill(w[round % 2], SIGKILL), 0);
		cr_expect_eq(strength_after(p, 2, gone, ngone,
		                            stretch_ms(1000)), 2,
		             "round %d: pool not back at full strength in 1 s",
		             round);
	}
	cr_expect_eq(alive_after(gone, ngone, 1000), 0);
	expect_map_correct(p, 5000, "after the kills");
	destroy_settled(p);
}

#define TRACK_N 3000
#define KILLS 3

struct track {
	uint64_t seq;
	uint64_t order[TRACK_N];  /* start order, from 1 */
	int32_t runner[TRACK_N];  /* pid that ran it */
	uint32_t runs[TRACK_N];
	uint32_t finished[TRACK_N]; /* the task function returned */
};

static int tracked(const void *in, void *out, void *ctx)
{
	struct track *t = ctx;
	int i = *(const int *)in;
	struct timespec ts = { 0, 1000000 };

	/* In this order: a kill between two of the stores leaves runs 0,
	 * which the test reads as "recorded nothing". */
	__atomic_store_n(&t->order[i],
	                 __atomic_add_fetch(&t->seq, 1, __ATOMIC_SEQ_CST),
	                 __ATOMIC_SEQ_CST);
	__atomic_store_n(&t->runner[i], (int32_t)getpid(), __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&t->runs[i], 1, __ATOMIC_SEQ_CST);
	nanosleep(&ts, NULL);
	*(int *)out = 3 * i + 1;
	__atomic_store_n(&t->finished[i], 1, __ATOMIC_SEQ_CST);
	return 0;
}

struct worker_killer {
	shp_pool *p;
	pid_t killed[KILLS];
	int nkilled;
};

static void *kill_workers(void *arg)
{
	struct worker_killer *k = arg;

	for (int i = 0; i < KILLS; i++) {
		pid_t w[8];
		size_t n;

		sleep_ms(150);
		n = proc_children(k->p->zygote, w, 8);
		if (n == 0)
			continue;
		k->killed[k->nkilled] = w[(size_t)i % n];
		if (kill(w[(size_t)i % n], SIGKILL) == 0)
			k->nkilled++;
	}
	return NULL;
}

Test(failure, worker_killed_during_map_reports_only_running_task, .timeout = 30)
{
	struct shp_pool_options o = { .workers = 2 };
	struct worker_killer k = { 0 };
	int *in = iota(TRACK_N), *out = filled(TRACK_N, -1);
	int *st = filled(TRACK_N, STATUS_UNSET);
	struct track *t;
	pthread_t th;
	shp_pool *p;
	int r, crashed = 0, running_at_kill = 0;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	t = shp_alloc(p, sizeof(*t));
	cr_assert_not_null(t);
	memset(t, 0, sizeof(*t));
	k.p = p;
	cr_assert_eq(pthread_create(&th, NULL, kill_workers, &k), 0);
	r = shp_map(p, tracked, t, in, sizeof(int), out, sizeof(int), TRACK_N, 0,
	            st);
	pthread_join(th, NULL);
	cr_assert_eq(k.nkilled, KILLS);

	for (int i = 0; i < TRACK_N; i++) {
		if (st[i] == SHP_ECRASHED) {
			crashed++;
			/* It ran at most once (its worker may have died before
			 * calling it), on a killed worker, as the last task that
			 * worker started. */
			cr_expect_leq(t->runs[i], 1, "crashed task %d ran %u times",
			              i, t->runs[i]);
			if (t->runs[i] == 0)
				continue;
			cr_expect(among(t->runner[i], k.killed, KILLS),
			          "crashed task %d ran on %d, not killed", i,
			          t->runner[i]);
			for (int j = 0; j < TRACK_N; j++)
				if (t->runner[j] == t->runner[i] &&
				    t->order[j] > t->order[i])
					cr_expect_fail("crashed task %d was not the last "
					               "its worker started (%d was)", i, j);
			continue;
		}
		if (st[i] != 0 || out[i] != 3 * i + 1 || t->runs[i] != 1 ||
		    !t->finished[i])
			cr_expect_fail("task %d: status %d, out %d, ran %u times, "
			               "finished %u", i, st[i], out[i], t->runs[i],
			               t->finished[i]);
	}
	/* A task a killed worker was still inside must be reported. */
	for (int q = 0; q < k.nkilled; q++) {
		int last = -1;

		for (int j = 0; j < TRACK_N; j++)
			if (t->runner[j] == k.killed[q] &&
			    (last < 0 || t->order[j] > t->order[last]))
				last = j;
		if (last >= 0 && !t->finished[last]) {
			running_at_kill++;
			cr_expect_eq(st[last], SHP_ECRASHED,
			             "task %d was running when its worker died: %d",
			             last, st[last]);
		}
	}
	cr_expect_leq(crashed, KILLS, "%d tasks crashed for %d kills", crashed,
	              KILLS);
	cr_expect_geq(crashed, running_at_kill);
	/* 1 ms tasks: a kill lands outside a task with odds of about 1%. */
	cr_expect_geq(running_at_kill, 1, "no kill hit a running task");
	cr_expect_eq(r, crashed ? SHP_ETASK : 0);

	cr_expect_eq(strength_after(p, 2, k.killed, KILLS, stretch_ms(1000)), 2);
	expect_map_correct(p, 5000, "after the kills");
	destroy_settled(p);
	free(in);
	free(out);
	free(st);
}
