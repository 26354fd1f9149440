/*
 * Per-call options (struct shp_call_options: chunksize, task_timeout_ns,
 * retries, wstatus) and pool options (initializer, max_tasks_per_worker),
 * and many threads of the caller submitting at once.
 *
 * Workers are forks: what a task writes to an ordinary global stays in its
 * worker. Tasks report through out, or through memory every process of the
 * pool shares: a MAP_SHARED mapping made before the pool, or shp_alloc().
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "procfs.h"
#include "shmpool.h"
#include "util.h"

#define WSTATUS_UNSET 0x7eed7eed

WATCHDOG_SUITE(options, 40);

/* The pool's workers: the children of our one child, the supervisor. */
static size_t workers_of(pid_t *w, size_t max)
{
	pid_t sup[4];

	if (proc_children(getpid(), sup, 4) != 1)
		return 0;
	return proc_children(sup[0], w, max);
}

/* Inputs 0 .. n-1; outputs, statuses and wait statuses not written yet. */
static void reset_call(int n, int *in, int *out, int *st, int *ws)
{
	for (int i = 0; i < n; i++) {
		in[i] = i;
		out[i] = -1;
		st[i] = STATUS_UNSET;
		ws[i] = WSTATUS_UNSET;
	}
}

/* Whether a wait status says killed by SIGKILL. */
static bool sigkilled(int ws)
{
	return WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL;
}

/* ====================================================== task_timeout_ns */

#define RUNAWAY 3

/* Task RUNAWAY never returns; the others are quick. ctx: attempt counters
 * (shared memory) or NULL. */
static int runaway(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;

	if (ctx)
		__atomic_fetch_add(&((uint32_t *)ctx)[x], 1, __ATOMIC_SEQ_CST);
	if (x == RUNAWAY) {
		volatile unsigned long spins = 0;

		for (;;)
			spins++;
	}
	*(int *)out = 3 * x + 1;
	return 0;
}

/* Runs the 8-task map with a 200 ms deadline and checks the outcome. */
static void timeout_case(size_t chunksize)
{
	enum { N = 8 };
	shp_pool *p = pool_of(2, 0);
	int in[N], out[N], st[N], ws[N];
	struct shp_call_options o = { .chunksize = chunksize,
	                              .task_timeout_ns = 200 * MS,
	                              .wstatus = ws };
	int64_t t0, took;
	pid_t before[8];
	int rc;

	cr_assert_eq(workers_of(before, 8), 2);
	reset_call(N, in, out, st, ws);
	t0 = now_ns();
	rc = shp_map_opt(p, runaway, NULL, in, sizeof(int), out, sizeof(int), N,
	                 st, &o);
	took = now_ns() - t0;
	cr_expect_eq(rc, SHP_ETASK, "map returned %d", rc);
	cr_expect_geq(took, 200 * MS, "the deadline fired after %lld ms",
	              (long long)(took / MS));
	/* Within an eighth of 200 ms, plus room for a loaded machine. */
	cr_expect_lt(took, slack(1000 * MS), "the runaway task was stopped after %lld ms",
	             (long long)(took / MS));
	cr_expect_eq(st[RUNAWAY], SHP_ETIMEDOUT, "status[%d] = %d", RUNAWAY,
	             st[RUNAWAY]);
	cr_expect(sigkilled(ws[RUNAWAY]), "wstatus[%d] = %#x", RUNAWAY,
	          ws[RUNAWAY]);
	for (int i = 0; i < N; i++) {
		if (i == RUNAWAY)
			continue;
		cr_expect_eq(st[i], 0, "status[%d] = %d", i, st[i]);
		cr_expect_eq(out[i], 3 * i + 1, "out[%d] = %d", i, out[i]);
		cr_expect_eq(ws[i], 0, "wstatus[%d] = %#x", i, ws[i]);
	}
	/* The killed worker is replaced. */
	cr_expect_eq(strength_after(p, 2, NULL, 0, 2000), 2,
	             "pool not back at full strength in 2 s");
	expect_map_correct(p, 5000, "after the timeout");
	shp_pool_destroy(p);
}

Test(options, task_timeout_kills_runaway_task, .timeout = 30)
{
	timeout_case(1);
}

/* The runaway task shares its descriptor with the tasks after it, which
 * never started: they must still run. */
Test(options, task_timeout_in_one_chunk_spares_the_rest, .timeout = 30)
{
	timeout_case(8);
}

/* Sleeps *ctx ms (ctx: a static const int, which every fork has), then
 * out = 3 * in + 1. */
static int sleepy(const void *in, void *out, void *ctx)
{
	sleep_ms(*(const int *)ctx);
	*(int *)out = 3 * *(const int *)in + 1;
	return 0;
}

static const int ms10 = 10, ms250 = 250;

Test(options, task_timeout_not_reached, .timeout = 20)
{
	enum { N = 8 };
	shp_pool *p = pool_of(2, 0);
	int in[N], out[N], st[N], ws[N];
	struct shp_call_options o = { .chunksize = 1,
	                              .task_timeout_ns = 5000 * MS,
	                              .wstatus = ws };
	pid_t before[8], after[8];

	cr_assert_eq(workers_of(before, 8), 2);
	reset_call(N, in, out, st, ws);
	cr_expect_eq(shp_map_opt(p, sleepy, (void *)&ms10, in, sizeof(int), out,
	                         sizeof(int), N, st, &o), 0);
	for (int i = 0; i < N; i++) {
		cr_expect_eq(st[i], 0, "status[%d] = %d", i, st[i]);
		cr_expect_eq(out[i], 3 * i + 1);
		cr_expect_eq(ws[i], 0, "wstatus[%d] = %#x", i, ws[i]);
	}
	/* No worker was killed. */
	cr_expect_eq(workers_of(after, 8), 2);
	cr_expect(among(after[0], before, 2) && among(after[1], before, 2),
	          "a worker was replaced");
	shp_pool_destroy(p);
}

/* The longest deadline there is: the supervisor added it to the task's
 * start, overflowed, and killed every task it looked at as overdue. */
Test(options, task_timeout_of_int64_max_never_fires, .timeout = 20)
{
	enum { N = 2 };
	shp_pool *p = pool_of(2, 0);
	int in[N], out[N], st[N], ws[N];
	struct shp_call_options o = { .chunksize = 1,
	                              .task_timeout_ns = INT64_MAX,
	                              .wstatus = ws };

	/* Each task runs 250 ms, over the supervisor's longest period (100
	 * ms): it looks at every task at least once. */
	reset_call(N, in, out, st, ws);
	cr_expect_eq(shp_map_opt(p, sleepy, (void *)&ms250, in, sizeof(int),
	                         out, sizeof(int), N, st, &o), 0);
	for (int i = 0; i < N; i++) {
		cr_expect_eq(st[i], 0, "status[%d] = %d", i, st[i]);
		cr_expect_eq(out[i], 3 * i + 1);
		cr_expect_eq(ws[i], 0, "wstatus[%d] = %#x", i, ws[i]);
	}
	/* And the supervisor that did the sum is alive and well (built with
	 * UBSan, the overflow killed it). */
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), 0);
	shp_pool_destroy(p);
}

Test(options, timed_out_task_is_not_retried, .timeout = 30)
{
	enum { N = 8 };
	uint32_t *att = shared_map(N * sizeof(uint32_t));
	shp_pool *p = pool_of(2, 0);
	int in[N], out[N], st[N], ws[N];
	struct shp_call_options o = { .chunksize = 1,
	                              .task_timeout_ns = 150 * MS,
	                              .retries = 3, .wstatus = ws };

	reset_call(N, in, out, st, ws);
	cr_expect_eq(shp_map_opt(p, runaway, att, in, sizeof(int), out,
	                         sizeof(int), N, st, &o), SHP_ETASK);
	cr_expect_eq(st[RUNAWAY], SHP_ETIMEDOUT);
	cr_expect_eq(att[RUNAWAY], 1, "the timed-out task ran %u times",
	             att[RUNAWAY]);
	cr_expect(sigkilled(ws[RUNAWAY]), "wstatus = %#x", ws[RUNAWAY]);
	for (int i = 0; i < N; i++) {
		if (i == RUNAWAY)
			continue;
		cr_expect_eq(st[i], 0);
		cr_expect_eq(out[i], 3 * i + 1);
		cr_expect_eq(att[i], 1, "task %d ran %u times", i, att[i]);
	}
	cr_expect_eq(strength_after(p, 2, NULL, 0, 2000), 2);
	shp_pool_destroy(p);
	munmap(att, N * sizeof(uint32_t));
}

/* ============================================================= retries */

#define VICTIM 5
#define RN 16

/* ctx: attempt counters per index (MAP_SHARED). The victim kills its own
 * worker on its first attempt only. */
static int crash_first(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;
	uint32_t a = __atomic_add_fetch(&((uint32_t *)ctx)[x], 1,
	                                __ATOMIC_SEQ_CST);

	if (x == VICTIM && a == 1)
		raise(SIGKILL);
	*(int *)out = 3 * x + 1;
	return 0;
}

static int crash_always(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;

	__atomic_fetch_add(&((uint32_t *)ctx)[x], 1, __ATOMIC_SEQ_CST);
	if (x == VICTIM)
		raise(SIGKILL);
	*(int *)out = 3 * x + 1;
	return 0;
}

static int exit3(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;

	__atomic_fetch_add(&((uint32_t *)ctx)[x], 1, __ATOMIC_SEQ_CST);
	if (x == VICTIM)
		_exit(3);
	*(int *)out = 3 * x + 1;
	return 0;
}

struct crash_run {
	int rc;
	int out[RN], st[RN], ws[RN];
};

static void crash_map(shp_pool *p, shp_fn fn, uint32_t *att, unsigned retries,
                      struct crash_run *r)
{
	int in[RN];
	struct shp_call_options o = { .retries = retries, .wstatus = r->ws };

	reset_call(RN, in, r->out, r->st, r->ws);
	for (int i = 0; i < RN; i++)
		__atomic_store_n(&att[i], 0, __ATOMIC_SEQ_CST);
	r->rc = shp_map_opt(p, fn, att, in, sizeof(int), r->out, sizeof(int), RN,
	                    r->st, &o);
}

/* Every task but the victim ran once and succeeded, with wstatus 0, and
 * the pool is back at full strength. */
static void expect_others_fine(const shp_pool *p, const struct crash_run *r,
                               const uint32_t *att, const char *what)
{
	for (int i = 0; i < RN; i++) {
		if (i == VICTIM)
			continue;
		cr_expect_eq(r->st[i], 0, "%s: status[%d] = %d", what, i,
		             r->st[i]);
		cr_expect_eq(r->out[i], 3 * i + 1, "%s: out[%d]", what, i);
		cr_expect_eq(r->ws[i], 0, "%s: wstatus[%d] = %#x", what, i,
		             r->ws[i]);
		cr_expect_eq(att[i], 1, "%s: task %d ran %u times", what, i,
		             att[i]);
	}
	cr_expect_eq(strength_after(p, 2, NULL, 0, 2000), 2,
	             "%s: pool not back at full strength in 2 s", what);
}

/* The call failed for its victim alone, which crashed. */
static void expect_victim_crashed(const struct crash_run *r, const char *what)
{
	cr_expect_eq(r->rc, SHP_ETASK, "%s: map returned %d", what, r->rc);
	cr_expect_eq(r->st[VICTIM], SHP_ECRASHED, "%s: status %d", what,
	             r->st[VICTIM]);
}

Test(options, retries_rerun_a_task_that_killed_its_worker, .timeout = 30)
{
	uint32_t *att = shared_map(RN * sizeof(uint32_t));
	shp_pool *p = pool_of(2, 0);
	struct crash_run r;

	crash_map(p, crash_first, att, 2, &r);
	cr_expect_eq(r.rc, 0, "with retries: %d", r.rc);
	cr_expect_eq(r.st[VICTIM], 0);
	cr_expect_eq(r.out[VICTIM], 3 * VICTIM + 1);
	cr_expect_eq(att[VICTIM], 2, "the victim ran %u times", att[VICTIM]);
	cr_expect_eq(r.ws[VICTIM], 0, "wstatus of a task that succeeded: %#x",
	             r.ws[VICTIM]);
	expect_others_fine(p, &r, att, "retries 2");

	crash_map(p, crash_first, att, 0, &r);
	expect_victim_crashed(&r, "retries 0");
	cr_expect_eq(att[VICTIM], 1);
	cr_expect(sigkilled(r.ws[VICTIM]), "wstatus = %#x", r.ws[VICTIM]);
	expect_others_fine(p, &r, att, "retries 0");
	expect_map_correct(p, 2000, "after the crashes");
	shp_pool_destroy(p);
	munmap(att, RN * sizeof(uint32_t));
}

/* ctx: attempt counters (shared memory). Writes its output, then kills
 * its own worker on its first attempt: the retry must still see its
 * input, although input and output both fit in the result slot. */
static int write_then_die(const void *in, void *out, void *ctx)
{
	uint64_t x;

	memcpy(&x, in, sizeof(x));
	if (x >= RN)
		return 71; /* the input is not an index: it was overwritten */
	x |= 0xdead000000000000ull;
	memcpy(out, &x, sizeof(x));
	if (__atomic_fetch_add(&((uint32_t *)ctx)[x & 0xff], 1,
	                       __ATOMIC_SEQ_CST) == 0)
		raise(SIGKILL);
	return 0;
}

Test(options, retried_task_gets_its_input_back, .timeout = 30)
{
	static const size_t sizes[][2] = { { 8, 8 }, { 48, 48 }, { 13, 48 } };
	uint32_t *att = shared_map(RN * sizeof(uint32_t));
	shp_pool *p = pool_of(2, 0);

	for (size_t k = 0; k < 3; k++) {
		size_t is = sizes[k][0], os = sizes[k][1];
		unsigned char in[RN * 48] = { 0 }, out[RN * 48];
		struct shp_call_options o = { .retries = 1, .chunksize = 1 };
		int st[RN];

		for (uint64_t i = 0; i < RN; i++) {
			memcpy(in + i * is, &i, sizeof(i));
			__atomic_store_n(&att[i], 0, __ATOMIC_SEQ_CST);
		}
		cr_expect_eq(shp_map_opt(p, write_then_die, att, in, is, out, os,
		                         RN, st, &o), 0, "sizes %zu/%zu", is, os);
		for (uint64_t i = 0; i < RN; i++) {
			uint64_t v;

			memcpy(&v, out + i * os, sizeof(v));
			cr_expect_eq(st[i], 0, "sizes %zu/%zu: status[%d] = %d",
			             is, os, (int)i, st[i]);
			cr_expect_eq(v, 0xdead000000000000ull | i);
			cr_expect_eq(att[i], 2, "task %d ran %u times", (int)i,
			             att[i]);
		}
	}
	shp_pool_destroy(p);
	munmap(att, RN * sizeof(uint32_t));
}

Test(options, retries_run_out_for_a_task_that_always_crashes, .timeout = 30)
{
	uint32_t *att = shared_map(RN * sizeof(uint32_t));
	shp_pool *p = pool_of(2, 0);
	struct crash_run r;

	crash_map(p, crash_always, att, 3, &r);
	expect_victim_crashed(&r, "always crashes");
	cr_expect_eq(att[VICTIM], 4, "ran %u times for retries = 3",
	             att[VICTIM]);
	cr_expect(sigkilled(r.ws[VICTIM]), "wstatus = %#x", r.ws[VICTIM]);
	expect_others_fine(p, &r, att, "always crashes");
	expect_map_correct(p, 2000, "after the crashes");
	shp_pool_destroy(p);
	munmap(att, RN * sizeof(uint32_t));
}

Test(options, exit_in_a_task_is_crashed_with_exit_status, .timeout = 30)
{
	uint32_t *att = shared_map(RN * sizeof(uint32_t));
	shp_pool *p = pool_of(2, 0);
	struct crash_run r;

	crash_map(p, exit3, att, 0, &r);
	expect_victim_crashed(&r, "_exit(3)");
	cr_expect(WIFEXITED(r.ws[VICTIM]), "wstatus = %#x", r.ws[VICTIM]);
	cr_expect_eq(WEXITSTATUS(r.ws[VICTIM]), 3, "wstatus = %#x",
	             r.ws[VICTIM]);
	cr_expect_eq(att[VICTIM], 1);
	expect_others_fine(p, &r, att, "_exit(3)");
	expect_map_correct(p, 2000, "after the exit");
	shp_pool_destroy(p);
	munmap(att, RN * sizeof(uint32_t));
}

/* Error callback for the asynchronous form: counts and keeps the result. */
struct async_seen {
	int ok, err, result;
};

static void seen_ok(shp_async *h, void *arg)
{
	(void)h;
	__atomic_fetch_add(&((struct async_seen *)arg)->ok, 1, __ATOMIC_SEQ_CST);
}

static void seen_err(shp_async *h, int result, void *arg)
{
	struct async_seen *a = arg;

	(void)h;
	a->result = result;
	__atomic_fetch_add(&a->err, 1, __ATOMIC_SEQ_CST);
}

/* Deadline, retries and wstatus hold for shp_map_async_opt as well. */
Test(options, call_options_apply_to_async_calls, .timeout = 30)
{
	enum { N = 8 };
	uint32_t *att = shared_map(RN * sizeof(uint32_t));
	shp_pool *p = pool_of(2, 0);
	int in[RN], out[RN], st[RN], ws[RN];
	struct async_seen a = { 0 }, b = { 0 };
	struct shp_call_options o = { .chunksize = 1,
	                              .task_timeout_ns = 200 * MS,
	                              .wstatus = ws, .callback = seen_ok,
	                              .error_callback = seen_err,
	                              .callback_arg = &a };
	shp_async *h;

	reset_call(RN, in, out, st, ws);
	cr_assert_eq(shp_map_async_opt(p, runaway, NULL, in, sizeof(int), out,
	                               sizeof(int), N, st, &o, &h), 0);
	cr_assert_eq(shp_async_wait(h, 5000 * MS), 0);
	cr_expect_eq(shp_async_result(h), SHP_ETASK);
	cr_expect_eq(st[RUNAWAY], SHP_ETIMEDOUT);
	cr_expect(sigkilled(ws[RUNAWAY]), "wstatus = %#x", ws[RUNAWAY]);
	for (int i = 0; i < N; i++) {
		if (i == RUNAWAY)
			continue;
		cr_expect_eq(st[i], 0);
		cr_expect_eq(out[i], 3 * i + 1);
		cr_expect_eq(ws[i], 0);
	}
	cr_expect_eq(a.err, 1);
	cr_expect_eq(a.ok, 0);
	cr_expect_eq(a.result, SHP_ETASK);
	shp_async_free(h);

	/* Retries: the victim crashes once, is re-run, the call succeeds. */
	o = (struct shp_call_options){ .retries = 1, .wstatus = ws,
	                               .callback = seen_ok,
	                               .error_callback = seen_err,
	                               .callback_arg = &b };
	reset_call(RN, in, out, st, ws);
	for (int i = 0; i < RN; i++)
		att[i] = 0;
	cr_assert_eq(shp_map_async_opt(p, crash_first, att, in, sizeof(int),
	                               out, sizeof(int), RN, st, &o, &h), 0);
	cr_assert_eq(shp_async_wait(h, 5000 * MS), 0);
	cr_expect_eq(shp_async_result(h), 0);
	cr_expect_eq(b.ok, 1);
	cr_expect_eq(b.err, 0);
	cr_expect_eq(att[VICTIM], 2);
	for (int i = 0; i < RN; i++) {
		cr_expect_eq(st[i], 0);
		cr_expect_eq(out[i], 3 * i + 1);
		cr_expect_eq(ws[i], 0);
	}
	shp_async_free(h);
	cr_expect_eq(strength_after(p, 2, NULL, 0, 2000), 2);
	shp_pool_destroy(p);
	munmap(att, RN * sizeof(uint32_t));
}

/* ================================================ shp_map_opt, chunksize */

/* Status 4 for every 97th input, else triple. */
/*
 * A task that never returned -- it crashed, was killed for its deadline,
 * or was cancelled before it ran -- leaves out[i] as the caller had it
 * (the outputs below are copied through the segment: inline for an int,
 * staged for 64 bytes).
 */
struct big {
	int32_t v[16];
};

static int big_crash(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;
	struct big *o = out;

	(void)ctx;
	if (x == VICTIM)
		raise(SIGKILL);
	for (int j = 0; j < 16; j++)
		o->v[j] = 3 * x + j;
	return 0;
}

static int slow_triple(const void *in, void *out, void *ctx)
{
	(void)ctx;
	sleep_ms(1);
	*(int *)out = 3 * *(const int *)in;
	return 0;
}

Test(options, unrun_tasks_leave_output_untouched, .timeout = 30)
{
	uint32_t *att = shared_map(RN * sizeof(uint32_t));
	shp_pool *p = pool_of(2, 0);
	static struct big bout[RN];
	static int cin[2000], cout[2000], cst[2000];
	struct crash_run r;
	int in[RN], st[RN], ws[RN], out8[8], in8[8], ncancelled = 0;
	bool untouched = true;
	shp_async *h;

	/* Inline output: the slot's bytes hold the task's input. */
	crash_map(p, crash_always, att, 0, &r);
	cr_expect_eq(r.st[VICTIM], SHP_ECRASHED);
	cr_expect_eq(r.out[VICTIM], -1, "crashed (inline): out = %d",
	             r.out[VICTIM]);

	/* Staged output, after a call that filled the staging buffer. */
	for (int i = 0; i < RN; i++)
		in[i] = i == VICTIM ? VICTIM + 1 : i;
	cr_expect_eq(shp_map(p, big_crash, NULL, in, sizeof(int), bout,
	                     sizeof(struct big), RN, 1, st), 0);
	for (int i = 0; i < RN; i++)
		in[i] = i;
	memset(bout, 0xee, sizeof(bout));
	cr_expect_eq(shp_map(p, big_crash, NULL, in, sizeof(int), bout,
	                     sizeof(struct big), RN, 1, st), SHP_ETASK);
	cr_expect_eq(st[VICTIM], SHP_ECRASHED);
	for (int j = 0; j < 16; j++)
		untouched &= bout[VICTIM].v[j] == (int32_t)0xeeeeeeee;
	cr_expect(untouched, "crashed (staged): out.v[0] = %#x",
	          (unsigned)bout[VICTIM].v[0]);
	for (int i = 0; i < RN; i++)
		if (i != VICTIM)
			cr_expect_eq(bout[i].v[15], 3 * i + 15);

	/* Killed for its deadline. */
	for (int i = 0; i < 8; i++) {
		in8[i] = i;
		out8[i] = -7;
	}
	{
		struct shp_call_options o = { .chunksize = 1,
		                              .task_timeout_ns = 100 * MS,
		                              .wstatus = ws };

		cr_expect_eq(shp_map_opt(p, runaway, NULL, in8, sizeof(int), out8,
		                         sizeof(int), 8, st, &o), SHP_ETASK);
	}
	cr_expect_eq(st[RUNAWAY], SHP_ETIMEDOUT);
	cr_expect_eq(out8[RUNAWAY], -7, "timed out: out = %d", out8[RUNAWAY]);

	/* Cancelled: the tasks that never ran keep the caller's value. */
	for (int i = 0; i < 2000; i++) {
		cin[i] = i;
		cout[i] = -9;
	}
	cr_assert_eq(shp_map_async(p, slow_triple, NULL, cin, sizeof(int), cout,
	                           sizeof(int), 2000, 1, cst, &h), 0);
	cr_expect_eq(shp_async_cancel(h), 0);
	cr_expect_eq(shp_async_wait(h, -1), 0);
	cr_expect_eq(shp_async_result(h), SHP_ECANCELED);
	shp_async_free(h);
	for (int i = 0; i < 2000; i++) {
		if (cst[i] == SHP_ECANCELED) {
			ncancelled++;
			cr_expect_eq(cout[i], -9, "cancelled task %d: out = %d", i,
			             cout[i]);
		} else {
			cr_expect_eq(cst[i], 0);
			cr_expect_eq(cout[i], 3 * i);
		}
	}
	cr_expect_gt(ncancelled, 1000);
	shp_pool_destroy(p);
	munmap(att, RN * sizeof(uint32_t));
}

static int sometimes4(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;

	(void)ctx;
	*(int *)out = 3 * x + 1;
	return x % 97 == 5 ? 4 : 0;
}

Test(options, map_opt_null_is_map, .timeout = 20)
{
	const size_t n = 3000;
	shp_pool *p = pool_of(2, 0);
	int *in = iota(n);
	int *o1 = filled(n, -1), *s1 = filled(n, STATUS_UNSET);
	int *o2 = filled(n, -2), *s2 = filled(n, STATUS_UNSET);
	int *o3 = filled(n, -3), *s3 = filled(n, STATUS_UNSET);
	struct shp_call_options zero = { 0 };
	size_t bad = 0, fails = 0;

	cr_expect_eq(shp_map(p, sometimes4, NULL, in, sizeof(int), o1,
	                     sizeof(int), n, 0, s1), SHP_ETASK);
	cr_expect_eq(shp_map_opt(p, sometimes4, NULL, in, sizeof(int), o2,
	                         sizeof(int), n, s2, NULL), SHP_ETASK);
	cr_expect_eq(shp_map_opt(p, sometimes4, NULL, in, sizeof(int), o3,
	                         sizeof(int), n, s3, &zero), SHP_ETASK);
	for (size_t i = 0; i < n; i++) {
		int want = i % 97 == 5 ? 4 : 0;

		fails += s1[i] == 4;
		bad += o1[i] != 3 * (int)i + 1 || s1[i] != want ||
		       o2[i] != o1[i] || s2[i] != s1[i] || o3[i] != o1[i] ||
		       s3[i] != s1[i];
	}
	cr_expect_eq(bad, 0, "%zu tasks differ", bad);
	cr_expect_eq(fails, (n - 5 + 96) / 97);
	/* All succeeding: 0 from both. */
	cr_expect_eq(shp_map_opt(p, triple, NULL, in, sizeof(int), o2,
	                         sizeof(int), n, NULL, NULL), 0);
	for (size_t i = 0; i < n; i++)
		bad += o2[i] != 3 * (int)i + 1;
	cr_expect_eq(bad, 0);
	/* Arguments are checked as by shp_map. */
	cr_expect_eq(shp_map_opt(NULL, triple, NULL, in, sizeof(int), o2,
	                         sizeof(int), n, NULL, NULL), -EINVAL);
	cr_expect_eq(shp_map_opt(p, NULL, NULL, in, sizeof(int), o2,
	                         sizeof(int), n, NULL, NULL), -EINVAL);
	{
		struct shp_call_options neg = { .task_timeout_ns = -1 };
		shp_async *h = (shp_async *)&neg;

		cr_expect_eq(shp_map_opt(p, triple, NULL, in, sizeof(int), o2,
		                         sizeof(int), n, NULL, &neg), -EINVAL);
		cr_expect_eq(shp_map_async_opt(p, triple, NULL, in, sizeof(int),
		                               o2, sizeof(int), n, NULL, &neg,
		                               &h), -EINVAL);
		cr_expect_null(h);
	}
	shp_pool_destroy(p);
	free(in);
	free(o1);
	free(o2);
	free(o3);
	free(s1);
	free(s2);
	free(s3);
}

/* Where and when each task ran: arrays in the arena, reached through ctx. */
struct trace {
	int32_t runner[5003];
	int64_t start[5003];
	int64_t end0; /* when task 0 returned */
};

static int traced(const void *in, void *out, void *ctx)
{
	struct trace *t = ctx;
	int x = *(const int *)in;

	t->runner[x] = (int32_t)getpid();
	t->start[x] = now_ns();
	if (x == 0) {
		sleep_ms(200);
		t->end0 = now_ns();
	}
	*(int *)out = 3 * x + 1;
	return 0;
}

/*
 * A descriptor of c tasks runs on one worker, in order. Task 0 sleeps
 * 200 ms: the rest of its descriptor, [1, c), waits for it on the same
 * worker, while the next descriptor, from task c on, goes to the other
 * worker and starts during that sleep. So chunksize c shows as: tasks
 * 1 .. c-1 on task 0's worker after it returned, task c elsewhere before.
 */
Test(options, chunksize_is_honoured, .timeout = 30)
{
	const size_t n = 5003;
	const size_t chunks[3] = { 1, 7, 1000 };
	shp_pool *p = pool_of(2, 0);
	int *in = iota(n), *out = malloc(n * sizeof(int));
	int *st = malloc(n * sizeof(int));
	struct trace *t = shp_alloc(p, sizeof(*t));

	cr_assert(out && st && t);
	for (int k = 0; k < 3; k++) {
		const size_t c = chunks[k];
		struct shp_call_options o = { .chunksize = c };
		size_t bad = 0, apart = 0, early = 0;

		memset(t, 0, sizeof(*t));
		for (size_t i = 0; i < n; i++) {
			out[i] = -1;
			st[i] = STATUS_UNSET;
		}
		cr_expect_eq(shp_map_opt(p, traced, t, in, sizeof(int), out,
		                         sizeof(int), n, st, &o), 0,
		             "chunksize %zu", c);
		for (size_t i = 0; i < n; i++)
			bad += st[i] != 0 || out[i] != 3 * (int)i + 1 ||
			       t->runner[i] == 0;
		cr_expect_eq(bad, 0, "chunksize %zu: %zu tasks wrong", c, bad);
		for (size_t i = 1; i < c; i++) {
			apart += t->runner[i] != t->runner[0];
			early += t->start[i] < t->end0;
		}
		cr_expect_eq(apart, 0, "chunksize %zu: %zu tasks of the first "
		             "chunk ran on another worker", c, apart);
		cr_expect_eq(early, 0, "chunksize %zu: %zu tasks of the first "
		             "chunk started before task 0 returned", c, early);
		cr_expect_neq(t->runner[c], t->runner[0],
		              "chunksize %zu: task %zu ran in task 0's chunk", c,
		              c);
		cr_expect_lt(t->start[c], t->end0,
		             "chunksize %zu: task %zu waited for task 0", c, c);
	}
	shp_pool_destroy(p);
	free(in);
	free(out);
	free(st);
}

/* ========================================================= initializer */

struct inittab {
	uint32_t n;
	uint32_t arg_ok;
	int32_t pid[256];
};

static int initialized; /* set in each worker by init_worker */

static void init_worker(void *arg)
{
	struct inittab *t = arg;
	uint32_t k = __atomic_fetch_add(&t->n, 1, __ATOMIC_SEQ_CST);

	if (k < 256)
		__atomic_store_n(&t->pid[k], (int32_t)getpid(), __ATOMIC_SEQ_CST);
	if (t->pid[255] == 0x11111111) /* the marker the test put there */
		__atomic_fetch_add(&t->arg_ok, 1, __ATOMIC_SEQ_CST);
	initialized = 1;
}

/* out: { initializer ran here, pid }. */
static int report_init(const void *in, void *out, void *ctx)
{
	int32_t *o = out;

	(void)in;
	(void)ctx;
	nanosleep(&(struct timespec){ 0, 200000 }, NULL); /* both get some */
	o[0] = initialized;
	o[1] = (int32_t)getpid();
	return 0;
}

static bool in_table(const struct inittab *t, int32_t pid)
{
	uint32_t n = __atomic_load_n(&t->n, __ATOMIC_SEQ_CST);

	for (uint32_t i = 0; i < n && i < 255; i++)
		if (t->pid[i] == pid)
			return true;
	return false;
}

/* Waits up to ms for the initializer to have run want times in all. */
static uint32_t inits_after(const struct inittab *t, uint32_t want, long ms)
{
	int64_t until = now_ns() + ms * MS;
	uint32_t n;

	while ((n = __atomic_load_n(&t->n, __ATOMIC_SEQ_CST)) < want &&
	       now_ns() < until)
		sleep_ms(5);
	return n;
}

/* Maps report_init over N tasks: every one must have run in a process
 * whose initializer ran and recorded it, and each of the pool's current
 * workers must have run some. */
static void expect_all_initialized(shp_pool *p, const struct inittab *t,
                                   const char *when)
{
	enum { N = 400 };
	static int32_t out[N][2];
	int st[N];
	size_t bad = 0, nw;
	pid_t w[8];

	memset(out, 0, sizeof(out));
	cr_expect_eq(shp_map(p, report_init, NULL, NULL, 0, out,
	                     sizeof(out[0]), N, 1, st), 0, "%s", when);
	for (int i = 0; i < N; i++) {
		if (st[i] != 0 || out[i][0] != 1 || !in_table(t, out[i][1])) {
			if (!bad)
				cr_expect_fail("%s: task %d: status %d initialized "
				               "%d pid %d", when, i, st[i],
				               out[i][0], out[i][1]);
			bad++;
		}
	}
	cr_expect_eq(bad, 0, "%s: %zu tasks ran without the initializer", when,
	             bad);
	nw = workers_of(w, 8);
	cr_expect_eq(nw, 2, "%s: %zu workers", when, nw);
	for (size_t k = 0; k < nw; k++) {
		int ran = 0;

		for (int i = 0; i < N; i++)
			ran += out[i][1] == (int32_t)w[k];
		cr_expect_gt(ran, 0, "%s: worker %d ran none of %d tasks", when,
		             (int)w[k], N);
		cr_expect(in_table(t, (int32_t)w[k]),
		          "%s: worker %d not in the initializer's table", when,
		          (int)w[k]);
	}
}

Test(options, initializer_runs_in_every_worker, .timeout = 30)
{
	struct inittab *t = shared_map(sizeof(*t));
	struct shp_pool_options po = { .workers = 2, .initializer = init_worker,
	                               .initializer_arg = t };
	pid_t w[8], gone[8];
	shp_pool *p;

	t->pid[255] = 0x11111111;
	cr_assert_eq(shp_pool_create(&p, &po), 0);
	cr_expect_eq(inits_after(t, 2, 2000), 2);
	expect_all_initialized(p, t, "first map");
	cr_expect_eq(t->n, 2, "initializer ran %u times for 2 workers", t->n);
	cr_expect_eq(t->arg_ok, t->n, "initializer_arg not passed");
	cr_assert_eq(workers_of(w, 8), 2);
	/* Not in the caller. */
	cr_expect_eq(initialized, 0);

	/* One worker killed: its replacement runs the initializer too. */
	gone[0] = w[0];
	cr_assert_eq(kill(w[0], SIGKILL), 0);
	cr_assert_eq(strength_after(p, 2, gone, 1, 2000), 2);
	/* The replacement may still be starting: give it 2 s. */
	cr_expect_eq(inits_after(t, 3, 2000), 3, "initializer ran %u times",
	             t->n);
	expect_all_initialized(p, t, "after one kill");
	cr_expect_eq(t->n, 3, "initializer ran %u times", t->n);
	cr_assert_eq(workers_of(w, 8), 2);

	/* Both killed. */
	gone[1] = w[0];
	gone[2] = w[1];
	kill(w[0], SIGKILL);
	kill(w[1], SIGKILL);
	cr_assert_eq(strength_after(p, 2, gone, 3, 2000), 2);
	cr_expect_eq(inits_after(t, 5, 2000), 5, "initializer ran %u times",
	             t->n);
	expect_all_initialized(p, t, "after two kills");
	cr_expect_eq(t->n, 5, "initializer ran %u times", t->n);
	cr_expect_eq(t->arg_ok, t->n);
	cr_expect_eq(initialized, 0);
	shp_pool_destroy(p);
	munmap(t, sizeof(*t));
}

/* ================================================ max_tasks_per_worker */

static int my_pid(const void *in, void *out, void *ctx)
{
	(void)in;
	(void)ctx;
	*(int32_t *)out = (int32_t)getpid();
	return 0;
}

Test(options, max_tasks_per_worker_recycles, .timeout = 30)
{
	enum { N = 200, MAXT = 10 };
	struct shp_pool_options po = { .workers = 2,
	                               .max_tasks_per_worker = MAXT };
	int32_t out[N], pids[N];
	int st[N], count[N];
	size_t distinct = 0, bad = 0;
	int most = 0;
	shp_pool *p;

	cr_assert_eq(shp_pool_create(&p, &po), 0);
	for (int i = 0; i < N; i++) {
		out[i] = 0;
		st[i] = STATUS_UNSET;
	}
	cr_assert_eq(shp_map(p, my_pid, NULL, NULL, 0, out, sizeof(int32_t), N,
	                     1, st), 0);
	for (int i = 0; i < N; i++) {
		size_t k;

		bad += st[i] != 0 || out[i] <= 0;
		for (k = 0; k < distinct && pids[k] != out[i]; k++)
			;
		if (k == distinct) {
			pids[distinct] = out[i];
			count[distinct++] = 0;
		}
		count[k]++;
	}
	for (size_t k = 0; k < distinct; k++)
		if (count[k] > most)
			most = count[k];
	cr_expect_eq(bad, 0);
	cr_expect_geq(distinct, N / MAXT, "%zu workers ran %d tasks", distinct,
	              N);
	cr_expect_leq(most, MAXT, "one worker ran %d tasks", most);
	cr_expect_eq(strength_after(p, 2, NULL, 0, 2000), 2);
	expect_map_correct(p, 1000, "after recycling");
	shp_pool_destroy(p);
}

/* ================================================ concurrent submitters */

#define THREADS 4
#define ROUNDS 10

static int mixer(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(uint64_t *)out = mix(*(const uint64_t *)in);
	return 0;
}

struct submitter {
	shp_pool *p;
	pthread_barrier_t *start; /* every round starts in all threads at once */
	uint64_t tid;
	int errors;
	char first[200];
};

static void fail(struct submitter *s, const char *what, size_t i, long long v)
{
	if (!s->errors++)
		snprintf(s->first, sizeof(s->first),
		         "thread %llu: %s (index %zu, value %lld)",
		         (unsigned long long)s->tid, what, i, v);
}

static void *submit_main(void *arg)
{
	struct submitter *s = arg;
	const size_t nmap = 10000, nasync = 2000, nimap = 3000;
	uint64_t *in = malloc(nmap * sizeof(*in));
	uint64_t *out = malloc(nmap * sizeof(*out));
	int *st = malloc(nmap * sizeof(int));

	if (!in || !out || !st) {
		fail(s, "malloc", 0, 0);
		abort(); /* the others would wait at the barrier */
	}
	for (size_t i = 0; i < nmap; i++)
		in[i] = s->tid << 32 | i;
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t x = s->tid << 32 | 0xabcdef, y = 0;
		shp_async *h = NULL;
		shp_iter *it = NULL;
		size_t k = 0, idx;
		const void *o;
		int r, status;

		pthread_barrier_wait(s->start);
		/* A synchronous map. */
		memset(out, 0, nmap * sizeof(*out));
		r = shp_map(s->p, mixer, NULL, in, sizeof(*in), out, sizeof(*out),
		            nmap, 0, st);
		if (r)
			fail(s, "shp_map", 0, r);
		for (size_t i = 0; i < nmap; i++)
			if (out[i] != mix(in[i]) || st[i] != 0)
				fail(s, "shp_map result", i, (long long)out[i]);

		/* One apply. */
		r = shp_apply(s->p, mixer, NULL, &x, sizeof(x), &y, sizeof(y));
		if (r || y != mix(x))
			fail(s, "shp_apply", 0, r);

		/* An asynchronous map, waited for. */
		memset(out, 0, nasync * sizeof(*out));
		r = shp_map_async(s->p, mixer, NULL, in + nasync, sizeof(*in),
		                  out, sizeof(*out), nasync, 0, st, &h);
		if (r) {
			fail(s, "shp_map_async", 0, r);
		} else {
			if ((r = shp_async_wait(h, -1)) != 0)
				fail(s, "shp_async_wait", 0, r);
			if ((r = shp_async_result(h)) != 0)
				fail(s, "shp_async_result", 0, r);
			for (size_t i = 0; i < nasync; i++)
				if (out[i] != mix(in[nasync + i]) || st[i] != 0)
					fail(s, "map_async result", i,
					     (long long)out[i]);
			shp_async_free(h);
		}

		/* An imap, read to the end. */
		r = shp_imap(s->p, mixer, NULL, in + 7, sizeof(*in), nimap,
		             sizeof(uint64_t), 0, &it);
		if (r) {
			fail(s, "shp_imap", 0, r);
			continue;
		}
		while ((r = shp_iter_next(it, &idx, &o, &status, -1)) == 1) {
			if (idx != k || status != 0 || !o ||
			    *(const uint64_t *)o != mix(in[7 + k]))
				fail(s, "imap result", k, (long long)idx);
			k++;
		}
		if (r != 0)
			fail(s, "shp_iter_next", k, r);
		if (k != nimap)
			fail(s, "imap count", k, (long long)nimap);
		shp_iter_free(it);
	}
	free(in);
	free(out);
	free(st);
	return NULL;
}

Test(options, concurrent_submitters_get_their_own_results, .timeout = 40)
{
	shp_pool *p = pool_of(2, 0);
	struct submitter s[THREADS];
	pthread_t th[THREADS];
	pthread_barrier_t start;

	cr_assert_eq(pthread_barrier_init(&start, NULL, THREADS), 0);
	for (int i = 0; i < THREADS; i++) {
		s[i] = (struct submitter){ .p = p, .start = &start,
		                           .tid = (uint64_t)i + 1 };
		cr_assert_eq(pthread_create(&th[i], NULL, submit_main, &s[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	for (int i = 0; i < THREADS; i++)
		cr_expect_eq(s[i].errors, 0, "%d errors; first: %s", s[i].errors,
		             s[i].first);
	expect_map_correct(p, 1000, "after the threads");
	shp_pool_destroy(p);
}
