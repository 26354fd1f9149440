/*
 * Asynchronous calls: shp_apply_async, shp_map_async(_opt), the shp_async_*
 * handle functions, callbacks, cancellation, and how close, join and
 * terminate treat calls still under way.
 *
 * Callbacks run in the pool's result thread, a thread of this process: they
 * record what they see in plain structs (atomics where the main thread
 * reads them while they may still run) and the test thread asserts on it;
 * Criterion's assertions are not used from that thread.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "procfs.h"
#include "shmpool.h"
#include "util.h"

WATCHDOG_SUITE(async, 40);

/* Waits up to ms for this process to have no pool process left. */
static size_t descendants_after(long ms)
{
	int64_t until = now_ns() + ms * MS;
	pid_t kids[64];
	size_t n;

	while ((n = proc_descendants(getpid(), kids, 64)) != 0 &&
	       now_ns() < until)
		sleep_ms(5);
	return n;
}

/* ------------------------------------------------------------- tasks */

static int seven(const void *in, void *out, void *ctx)
{
	(void)in;
	(void)ctx;
	*(int *)out = 42;
	return 7;
}

/* Sleeps *ctx ms (ctx: a static const int, which every fork has). */
static int sleepy(const void *in, void *out, void *ctx)
{
	sleep_ms(*(const int *)ctx);
	*(int *)out = 3 * *(const int *)in + 1;
	return 0;
}

static const int ms20 = 20, ms50 = 50, ms300 = 300, ms700 = 700,
                 ms2000 = 2000;

/* 1 ms, counting the tasks that ran to the end (ctx: int in the arena). */
static int counted(const void *in, void *out, void *ctx)
{
	sleep_ms(1);
	*(int *)out = 3 * *(const int *)in + 1;
	__atomic_fetch_add((int *)ctx, 1, __ATOMIC_SEQ_CST);
	return 0;
}

/* Status 9 for input -1, else triple. */
static int fails_on_minus_one(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;

	(void)ctx;
	if (x == -1)
		return 9;
	*(int *)out = 3 * x + 1;
	return 0;
}

/* Returns x % 50 as its status, out 3x + 1. */
static int tagged(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;

	(void)ctx;
	*(int *)out = 3 * x + 1;
	return x % 50;
}

/* Spins a random 0-20 µs: 100000 tasks take half a second on 2 workers. */
static int jitter(const void *in, void *out, void *ctx)
{
	uint64_t x = *(const uint64_t *)in;

	(void)ctx;
	spin_ns((long)(mix(x) % 20000));
	*(uint64_t *)out = mix(x) ^ 0xa5a5;
	return 0;
}

/* Counts outputs that are not 3 * i + 1 with status 0. */
static size_t triple_mismatches(const int *out, const int *st, size_t n)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++)
		bad += out[i] != 3 * (int)i + 1 || (st && st[i] != 0);
	return bad;
}

/* ================================================== results and handles */

Test(async, apply_async_cube_and_task_status, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	long in[6] = { 1, 2, 3, 4, 5, 6 }, out[6] = { 0 };
	const long want[6] = { 1, 8, 27, 64, 125, 216 };
	shp_async *h[6], *h7 = NULL;
	int o = 0;

	for (int i = 0; i < 6; i++) {
		h[i] = NULL;
		cr_assert_eq(shp_apply_async(p, cube, NULL, &in[i], sizeof(long),
		                             &out[i], sizeof(long), &h[i]), 0);
		cr_assert_not_null(h[i]);
	}
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(shp_async_wait(h[i], -1), 0);
		cr_expect_eq(shp_async_ready(h[i]), 1);
		cr_expect_eq(shp_async_result(h[i]), 0, "result %d",
		             shp_async_result(h[i]));
		cr_expect_eq(out[i], want[i], "out[%d] = %ld", i, out[i]);
		/* Waiting again on a done call returns at once. */
		cr_expect_eq(shp_async_wait(h[i], 0), 0);
		shp_async_free(h[i]);
	}

	/* apply_async's result is the task's own status. */
	cr_assert_eq(shp_apply_async(p, seven, NULL, NULL, 0, &o, sizeof(o), &h7),
	             0);
	cr_assert_eq(shp_async_wait(h7, -1), 0);
	cr_expect_eq(shp_async_result(h7), 7);
	cr_expect_eq(o, 42);
	shp_async_free(h7);
	shp_pool_destroy(p);
}

Test(async, map_async_task_status_gives_etask, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[100], out[100], st[100];
	shp_async *h = NULL;

	for (int i = 0; i < 100; i++) {
		in[i] = i == 37 ? -1 : i;
		out[i] = -5;
		st[i] = STATUS_UNSET;
	}
	cr_assert_eq(shp_map_async(p, fails_on_minus_one, NULL, in, sizeof(int),
	                           out, sizeof(int), 100, 0, st, &h), 0);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	cr_expect_eq(shp_async_result(h), SHP_ETASK);
	for (int i = 0; i < 100; i++) {
		if (i == 37) {
			cr_expect_eq(st[i], 9);
			continue;
		}
		cr_expect_eq(st[i], 0, "status[%d] = %d", i, st[i]);
		cr_expect_eq(out[i], 3 * i + 1, "out[%d] = %d", i, out[i]);
	}
	shp_async_free(h);
	shp_pool_destroy(p);
}

Test(async, map_async_100k_in_order_with_progress, .timeout = 40)
{
	const size_t n = 100000;
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = malloc(n * sizeof(*in)), *out = malloc(n * sizeof(*out));
	size_t prev = 0, done = 0, total = 0, mid = 0, polls = 0, bad = 0;
	shp_async *h = NULL;
	int r;

	cr_assert(in && out);
	for (size_t i = 0; i < n; i++) {
		in[i] = i;
		out[i] = 0;
	}
	cr_assert_eq(shp_map_async(p, jitter, NULL, in, sizeof(*in), out,
	                           sizeof(*out), n, 0, NULL, &h), 0);
	cr_assert_not_null(h);
	while ((r = shp_async_ready(h)) == 0) {
		cr_assert_eq(shp_async_progress(h, &done, &total), 0);
		cr_assert_eq(total, n, "total %zu", total);
		cr_assert_geq(done, prev, "done went back from %zu to %zu", prev,
		              done);
		cr_assert_leq(done, n);
		mid += done > 0 && done < n;
		prev = done;
		polls++;
		sleep_ms(1);
	}
	cr_assert_eq(r, 1);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	cr_assert_eq(shp_async_progress(h, &done, &total), 0);
	cr_expect_eq(done, n, "done %zu at the end", done);
	cr_expect_eq(total, n);
	cr_expect_eq(shp_async_result(h), 0);
	for (size_t i = 0; i < n; i++)
		bad += out[i] != (mix(i) ^ 0xa5a5);
	cr_expect_eq(bad, 0, "%zu outputs wrong or out of place", bad);
	/* About a second of work: a progress bar must have moved. */
	cr_expect_gt(mid, 0, "no poll of %zu saw 0 < done < n", polls);
	shp_async_free(h);
	shp_pool_destroy(p);
	free(in);
	free(out);
}

Test(async, ready_is_zero_while_slow_call_runs, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[4] = { 0, 1, 2, 3 }, out[4] = { -1, -1, -1, -1 }, st[4];
	shp_async *h = NULL;
	int64_t t0 = now_ns();

	cr_assert_eq(shp_map_async(p, sleepy, (void *)&ms50, in, sizeof(int),
	                           out, sizeof(int), 4, 1, st, &h), 0);
	cr_expect_eq(shp_async_ready(h), 0);
	cr_expect_eq(shp_async_result(h), -EBUSY);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	/* 4 tasks of 50 ms on 2 workers. */
	cr_expect_geq(now_ns() - t0, 95 * MS);
	cr_expect_eq(shp_async_ready(h), 1);
	cr_expect_eq(shp_async_result(h), 0);
	cr_expect_eq(triple_mismatches(out, st, 4), 0);
	shp_async_free(h);
	shp_pool_destroy(p);
}

Test(async, wait_timeout_expires_then_completes, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[2] = { 0, 1 }, out[2] = { -1, -1 }, st[2];
	shp_async *h = NULL;
	size_t done = 99, total = 0;
	int64_t t0, t1;

	t0 = now_ns();
	cr_assert_eq(shp_map_async(p, sleepy, (void *)&ms300, in, sizeof(int),
	                           out, sizeof(int), 2, 1, st, &h), 0);
	t1 = now_ns();
	cr_expect_eq(shp_async_wait(h, 10 * MS), -ETIMEDOUT);
	cr_expect_geq(now_ns() - t1, 10 * MS, "wait returned early");
	cr_expect_lt(now_ns() - t0, slack(250 * MS), "wait(10 ms) took %lld ms",
	             (long long)((now_ns() - t0) / MS));
	cr_expect_eq(shp_async_wait(h, 0), -ETIMEDOUT);
	cr_expect_eq(shp_async_ready(h), 0);
	cr_expect_eq(shp_async_result(h), -EBUSY);
	cr_expect_eq(shp_async_progress(h, &done, &total), 0);
	cr_expect_eq(done, 0);
	cr_expect_eq(total, 2);
	cr_assert_eq(shp_async_wait(h, 5000 * MS), 0);
	cr_expect_geq(now_ns() - t0, 300 * MS);
	cr_expect_eq(shp_async_ready(h), 1);
	cr_expect_eq(shp_async_result(h), 0);
	cr_expect_eq(triple_mismatches(out, st, 2), 0);
	shp_async_free(h);
	shp_pool_destroy(p);
}

/* CPU time this thread has used, in ns. */
static int64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A timeout too long for the clock to add (now + INT64_MAX overflowed into
 * a deadline that had passed, which pthread_cond_timedwait refused at once:
 * the wait spun on a core until the call was done) means no deadline. */
Test(async, wait_with_the_longest_timeout_sleeps, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[2] = { 0, 1 }, out[2] = { -1, -1 }, st[2];
	shp_async *h = NULL;
	int64_t t0, cpu0;

	cr_assert_eq(shp_map_async(p, sleepy, (void *)&ms300, in, sizeof(int),
	                           out, sizeof(int), 2, 1, st, &h), 0);
	t0 = now_ns();
	cpu0 = thread_cpu_ns();
	cr_assert_eq(shp_async_wait(h, INT64_MAX), 0);
	cr_expect_geq(now_ns() - t0, 250 * MS, "the wait returned early");
	cr_expect_lt(thread_cpu_ns() - cpu0, slack(50 * MS),
	             "waiting 300 ms used %lld ms of CPU",
	             (long long)((thread_cpu_ns() - cpu0) / MS));
	cr_expect_eq(shp_async_result(h), 0);
	cr_expect_eq(triple_mismatches(out, st, 2), 0);
	shp_async_free(h);
	shp_pool_destroy(p);
}

Test(async, two_thousand_handles_at_once, .timeout = 40)
{
	const int n = 2000;
	shp_pool *p = pool_of(2, 0);
	int *in = iota((size_t)n), *out = filled((size_t)n, -1);
	shp_async **h = calloc((size_t)n, sizeof(*h));
	int bad = 0;

	cr_assert_not_null(h);
	/* Far more than the 64 call entries: the rest must queue. */
	for (int i = 0; i < n; i++)
		cr_assert_eq(shp_apply_async(p, tagged, NULL, &in[i], sizeof(int),
		                             &out[i], sizeof(int), &h[i]), 0,
		             "submission %d failed", i);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(shp_async_wait(h[i], -1), 0);
		if (shp_async_result(h[i]) != i % 50 || out[i] != 3 * i + 1) {
			if (!bad++)
				cr_expect_fail("handle %d: result %d out %d", i,
				               shp_async_result(h[i]), out[i]);
		}
	}
	cr_expect_eq(bad, 0, "%d handles had a wrong result", bad);
	for (int i = 0; i < n; i++)
		shp_async_free(h[i]);
	shp_pool_destroy(p);
	free(h);
	free(in);
	free(out);
}

/* ============================================================ callbacks */

/* What a callback saw; one per call. */
struct seen {
	int ok, err;           /* times each callback ran */
	int err_result;        /* result given to error_callback */
	int outs_ok;           /* outputs/statuses complete when called */
	int own_ready, own_result, own_wait; /* on its own handle, inside */
	shp_async *h;          /* handle given to the callback */
	void *arg;             /* arg given */
	pthread_t thread;
	int *out, *st;
	size_t n;
	int fail_at;           /* task expected to fail with 9, or -1 */
	long delay_ms;         /* sleep in the callback */
	int flag;              /* set (release) as the callback returns */
};

static int outputs_complete(const struct seen *s)
{
	for (size_t i = 0; i < s->n; i++) {
		if ((int)i == s->fail_at) {
			if (s->st && s->st[i] != 9)
				return 0;
			continue;
		}
		if (s->out[i] != 3 * (int)i + 1 || (s->st && s->st[i] != 0))
			return 0;
	}
	return 1;
}

/* What either callback records of its call; then it counts itself in
 * *times and sets the flag. */
static void record(struct seen *s, shp_async *h, void *arg, int *times)
{
	s->h = h;
	s->arg = arg;
	s->thread = pthread_self();
	s->outs_ok = outputs_complete(s);
	s->own_ready = shp_async_ready(h);
	s->own_result = shp_async_result(h);
	s->own_wait = shp_async_wait(h, -1);
	if (s->delay_ms)
		sleep_ms(s->delay_ms);
	__atomic_fetch_add(times, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->flag, 1, __ATOMIC_RELEASE);
}

static void on_ok(shp_async *h, void *arg)
{
	struct seen *s = arg;

	record(s, h, arg, &s->ok);
}

static void on_err(shp_async *h, int result, void *arg)
{
	struct seen *s = arg;

	s->err_result = result;
	record(s, h, arg, &s->err);
}

/* An empty map_async is done at once with result 0, as shp_map's, and its
 * callback runs (Python calls it with []). */
Test(async, empty_map_async_succeeds, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	struct seen s = { .fail_at = -1 };
	struct shp_call_options o = { .callback = on_ok, .error_callback = on_err,
	                              .callback_arg = &s };
	int in = 1, out = 0, st = 7;
	shp_async *h = NULL;

	s.out = &out;
	cr_assert_eq(shp_map_async_opt(p, triple, NULL, &in, sizeof(int), &out,
	                               sizeof(int), 0, &st, &o, &h), 0);
	cr_assert_not_null(h);
	cr_expect_eq(shp_async_wait(h, -1), 0);
	cr_expect_eq(shp_async_result(h), 0);
	cr_expect_eq(s.ok, 1);
	cr_expect_eq(s.err, 0);
	cr_expect_eq(out, 0, "no task ran");
	cr_expect_eq(st, 7, "no status written");
	shp_async_free(h);
	shp_pool_destroy(p);
}

/* Likewise for a call of no task, which the result thread settles as it
 * takes it from the queue: a cancel that landed while it looked (after
 * it found none requested) was dropped, the result 0. A race of a few
 * instructions: tried 100000 times, which caught it in about half the
 * runs on the old code. */
Test(async, cancel_of_an_empty_call_holds, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	int in = 1, out = 0, st = 7;
	size_t n = scaled(100000), dropped = 0, took = 0;

	for (size_t i = 0; i < n; i++) {
		shp_async *h = NULL;
		int c, r;

		cr_assert_eq(shp_map_async(p, triple, NULL, &in, sizeof(int),
		                           &out, sizeof(int), 0, 1, &st, &h), 0);
		/* Half the time after a poll, which shifts the timing. */
		if (i % 2)
			cr_assert(shp_async_wait(h, 0) <= 0);
		c = shp_async_cancel(h);
		cr_assert(c == 0 || c == -EALREADY, "cancel: %d", c);
		cr_assert_eq(shp_async_wait(h, -1), 0);
		r = shp_async_result(h);
		took += c == 0;
		dropped += c == 0 && r != SHP_ECANCELED;
		cr_assert(c == 0 || r == 0, "result %d after a late cancel", r);
		shp_async_free(h);
	}
	cr_expect_eq(dropped, 0, "%zu of %zu cancels that returned 0 dropped",
	             dropped, took);
	shp_pool_destroy(p);
}

/* A cancel that returns 0 makes the result SHP_ECANCELED, however close
 * to the call's end it lands: here after every task is done. */
Test(async, cancel_that_returns_zero_takes_effect, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	const int calls = (int)scaled(2000);
	int took = 0, wrong = 0;

	for (int k = 0; k < calls; k++) {
		int in[4] = { k, k + 1, k + 2, k + 3 }, out[4], st[4];
		size_t done = 0;
		shp_async *h;
		int c;

		cr_assert_eq(shp_map_async(p, triple, NULL, in, sizeof(int), out,
		                           sizeof(int), 4, 1, st, &h), 0);
		/* Yielding: under valgrind, which runs one thread at a time,
		 * a bare spin starves the threads it waits for. */
		while (shp_async_progress(h, &done, NULL) == 0 && done < 4)
			sched_yield();
		c = shp_async_cancel(h);
		cr_assert_eq(shp_async_wait(h, -1), 0);
		cr_assert(c == 0 || c == -EALREADY, "cancel gave %d", c);
		took += c == 0;
		wrong += c == 0 && shp_async_result(h) != SHP_ECANCELED;
		wrong += c == -EALREADY && shp_async_result(h) != 0;
		shp_async_free(h);
	}
	cr_expect_eq(wrong, 0, "%d results disagree with their cancel (%d "
	             "cancels took)", wrong, took);
	shp_pool_destroy(p);
}

#define NCALLS 40
#define CALL_N 50

Test(async, callbacks_once_each_never_both, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	static int in[NCALLS][CALL_N], out[NCALLS][CALL_N], st[NCALLS][CALL_N];
	static struct seen s[NCALLS];
	shp_async *h[NCALLS];
	pthread_t result_thread = pthread_self();

	for (int k = 0; k < NCALLS; k++) {
		struct shp_call_options o = { .callback = on_ok,
		                              .error_callback = on_err,
		                              .callback_arg = &s[k] };

		s[k] = (struct seen){ .out = out[k], .st = st[k], .n = CALL_N,
		                      .fail_at = k % 2 ? k % CALL_N : -1,
		                      .err_result = 1 };
		for (int i = 0; i < CALL_N; i++) {
			in[k][i] = i == s[k].fail_at ? -1 : i;
			out[k][i] = -5;
			st[k][i] = STATUS_UNSET;
		}
		cr_assert_eq(shp_map_async_opt(p, fails_on_minus_one, NULL, in[k],
		                               sizeof(int), out[k], sizeof(int),
		                               CALL_N, st[k], &o, &h[k]), 0);
	}
	for (int k = 0; k < NCALLS; k++) {
		cr_assert_eq(shp_async_wait(h[k], -1), 0);
		cr_expect_eq(s[k].h, h[k], "call %d: callback got another handle",
		             k);
		cr_expect_eq(s[k].arg, &s[k]);
		cr_expect_eq(s[k].outs_ok, 1,
		             "call %d: results not stored before its callback", k);
		/* Not done until its callback returns. */
		cr_expect_eq(s[k].own_ready, 0);
		cr_expect_eq(s[k].own_result, -EBUSY);
		cr_expect_eq(s[k].own_wait, -EDEADLK,
		             "waiting for its own call from its callback: %d",
		             s[k].own_wait);
		cr_expect_eq(pthread_equal(s[k].thread, pthread_self()), 0);
		if (k == 0)
			result_thread = s[k].thread;
		else
			cr_expect_neq(pthread_equal(s[k].thread, result_thread), 0,
			              "callbacks ran on more than one thread");
		if (k % 2 == 0) {
			cr_expect_eq(shp_async_result(h[k]), 0);
			cr_expect_eq(s[k].ok, 1, "call %d: callback ran %d times", k,
			             s[k].ok);
			cr_expect_eq(s[k].err, 0);
		} else {
			cr_expect_eq(shp_async_result(h[k]), SHP_ETASK);
			cr_expect_eq(s[k].ok, 0);
			cr_expect_eq(s[k].err, 1,
			             "call %d: error_callback ran %d times", k,
			             s[k].err);
			cr_expect_eq(s[k].err_result, SHP_ETASK);
			cr_expect_eq(st[k][s[k].fail_at], 9);
		}
	}
	for (int k = 0; k < NCALLS; k++)
		shp_async_free(h[k]);
	shp_pool_destroy(p);
	/* Still exactly once, after everything is gone. */
	for (int k = 0; k < NCALLS; k++)
		cr_expect_eq(s[k].ok + s[k].err, 1, "call %d: %d callbacks", k,
		             s[k].ok + s[k].err);
}

/* Blocks until released: the callback is provably still running. */
struct gate {
	int entered, release, left;
};

static void gated(shp_async *h, void *arg)
{
	struct gate *g = arg;

	(void)h;
	__atomic_store_n(&g->entered, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&g->release, __ATOMIC_SEQ_CST))
		sleep_ms(1);
	__atomic_store_n(&g->left, 1, __ATOMIC_SEQ_CST);
}

Test(async, callback_runs_before_wait_returns, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	struct gate g = { 0 };
	int in[CALL_N], out[CALL_N], st[CALL_N];
	shp_async *h;

	/* Five rounds, success and failure alternating, the callback slow. */
	for (int round = 0; round < 6; round++) {
		struct seen s = { .out = out, .st = st, .n = CALL_N,
		                  .fail_at = round % 2 ? 3 : -1,
		                  .delay_ms = 30 };
		struct shp_call_options o = { .callback = on_ok,
		                              .error_callback = on_err,
		                              .callback_arg = &s };

		for (int i = 0; i < CALL_N; i++) {
			in[i] = i == s.fail_at ? -1 : i;
			out[i] = -5;
			st[i] = STATUS_UNSET;
		}
		cr_assert_eq(shp_map_async_opt(p, fails_on_minus_one, NULL, in,
		                               sizeof(int), out, sizeof(int),
		                               CALL_N, st, &o, &h), 0);
		cr_assert_eq(shp_async_wait(h, -1), 0);
		cr_expect_eq(__atomic_load_n(&s.flag, __ATOMIC_ACQUIRE), 1,
		             "round %d: wait returned before the callback did",
		             round);
		cr_expect_eq(s.ok + s.err, 1);
		cr_expect_eq(pthread_equal(s.thread, pthread_self()), 0,
		             "the callback ran in the submitting thread");
		cr_expect_eq(s.outs_ok, 1);
		shp_async_free(h);
	}

	/* While the callback runs, the call is not ready and wait times out. */
	{
		struct shp_call_options o = { .callback = gated,
		                              .callback_arg = &g };
		int64_t until = now_ns() + 5000 * MS;

		for (int i = 0; i < CALL_N; i++)
			in[i] = i;
		cr_assert_eq(shp_map_async_opt(p, triple, NULL, in, sizeof(int),
		                               out, sizeof(int), CALL_N, st, &o,
		                               &h), 0);
		while (!__atomic_load_n(&g.entered, __ATOMIC_SEQ_CST) &&
		       now_ns() < until)
			sleep_ms(1);
		cr_assert_eq(g.entered, 1, "the callback never ran");
		cr_expect_eq(shp_async_ready(h), 0,
		             "ready while its callback still runs");
		cr_expect_eq(shp_async_wait(h, 20 * MS), -ETIMEDOUT);
		__atomic_store_n(&g.release, 1, __ATOMIC_SEQ_CST);
		cr_assert_eq(shp_async_wait(h, -1), 0);
		cr_expect_eq(__atomic_load_n(&g.left, __ATOMIC_SEQ_CST), 1);
		cr_expect_eq(shp_async_ready(h), 1);
		cr_expect_eq(shp_async_result(h), 0);
		cr_expect_eq(triple_mismatches(out, st, CALL_N), 0);
		shp_async_free(h);
	}
	shp_pool_destroy(p);
}

/* A callback that submits calls of its own: a synchronous map, an
 * apply_async, and a map_async with a callback. */
struct nest {
	shp_pool *p;
	int map_rc, map_bad;
	int apply_rc, inner_rc;
	shp_async *apply_h, *inner_h;
	long x, y;
	int in[500], out[500], st[500];
	int in2[64], out2[64];
	struct seen inner;
};

static void nesting(shp_async *h, void *arg)
{
	struct nest *n = arg;
	struct shp_call_options o = { .callback = on_ok,
	                              .error_callback = on_err,
	                              .callback_arg = &n->inner };

	(void)h;
	n->map_rc = shp_map(n->p, triple, NULL, n->in, sizeof(int), n->out,
	                    sizeof(int), 500, 0, n->st);
	n->map_bad = 0;
	for (int i = 0; i < 500; i++)
		n->map_bad += n->out[i] != 3 * i + 1 || n->st[i] != 0;
	n->apply_rc = shp_apply_async(n->p, cube, NULL, &n->x, sizeof(long),
	                              &n->y, sizeof(long), &n->apply_h);
	n->inner_rc = shp_map_async_opt(n->p, triple, NULL, n->in2, sizeof(int),
	                                n->out2, sizeof(int), 64, NULL, &o,
	                                &n->inner_h);
}

Test(async, callback_submits_sync_and_async_calls, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	static struct nest n;
	int in[10], out[10];
	struct shp_call_options o = { .callback = nesting, .callback_arg = &n };
	shp_async *h;

	n = (struct nest){ .p = p, .map_rc = 1, .map_bad = -1, .apply_rc = 1,
	                   .inner_rc = 1, .x = 13 };
	for (int i = 0; i < 500; i++) {
		n.in[i] = i;
		n.out[i] = -1;
		n.st[i] = STATUS_UNSET;
	}
	for (int i = 0; i < 64; i++) {
		n.in2[i] = i;
		n.out2[i] = -1;
	}
	n.inner = (struct seen){ .out = n.out2, .n = 64, .fail_at = -1 };
	for (int i = 0; i < 10; i++)
		in[i] = i;
	cr_assert_eq(shp_map_async_opt(p, triple, NULL, in, sizeof(int), out,
	                               sizeof(int), 10, NULL, &o, &h), 0);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	cr_expect_eq(shp_async_result(h), 0);
	cr_expect_eq(triple_mismatches(out, NULL, 10), 0);
	cr_expect_eq(n.map_rc, 0, "shp_map in a callback: %d", n.map_rc);
	cr_expect_eq(n.map_bad, 0, "shp_map in a callback: %d wrong", n.map_bad);
	cr_assert_eq(n.apply_rc, 0, "apply_async in a callback: %d", n.apply_rc);
	cr_assert_eq(n.inner_rc, 0, "map_async in a callback: %d", n.inner_rc);
	cr_assert_not_null(n.apply_h);
	cr_assert_not_null(n.inner_h);
	cr_assert_eq(shp_async_wait(n.apply_h, 5000 * MS), 0);
	cr_expect_eq(shp_async_result(n.apply_h), 0);
	cr_expect_eq(n.y, 13 * 13 * 13);
	cr_assert_eq(shp_async_wait(n.inner_h, 5000 * MS), 0);
	cr_expect_eq(shp_async_result(n.inner_h), 0);
	cr_expect_eq(n.inner.ok, 1, "the nested call's callback ran %d times",
	             n.inner.ok);
	cr_expect_eq(n.inner.err, 0);
	cr_expect_eq(n.inner.outs_ok, 1);
	cr_expect_eq(n.inner.h, n.inner_h);
	shp_async_free(n.apply_h);
	shp_async_free(n.inner_h);
	shp_async_free(h);
	shp_pool_destroy(p);
}

/* From a callback: waiting for a call not done is a deadlock; for a call
 * that is done it is not. */
struct waiter {
	shp_async *slow, *done;
	int wait_slow, wait_done, ready_slow, result_slow, progress_slow;
	int ran;
};

static void waits_in_callback(shp_async *h, void *arg)
{
	struct waiter *w = arg;
	size_t d, t;

	(void)h;
	w->ready_slow = shp_async_ready(w->slow);
	w->result_slow = shp_async_result(w->slow);
	w->progress_slow = shp_async_progress(w->slow, &d, &t);
	w->wait_slow = shp_async_wait(w->slow, -1);
	w->wait_done = shp_async_wait(w->done, -1);
	__atomic_store_n(&w->ran, 1, __ATOMIC_SEQ_CST);
}

Test(async, wait_in_callback_is_edeadlk, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	struct waiter w = { .wait_slow = 1, .wait_done = 1, .ready_slow = 2,
	                    .result_slow = 1, .progress_slow = 1 };
	struct shp_call_options o = { .callback = waits_in_callback,
	                              .callback_arg = &w };
	int x = 5, y = -1, in[4] = { 0, 1, 2, 3 }, out[4], dx = 2, dy = -1;
	shp_async *fast;

	cr_assert_eq(shp_apply_async(p, triple, NULL, &dx, sizeof(int), &dy,
	                             sizeof(int), &w.done), 0);
	cr_assert_eq(shp_async_wait(w.done, -1), 0);
	/* One worker sleeps 700 ms in the slow call; the fast one runs on
	 * the other, and its callback runs while the slow call is not done. */
	cr_assert_eq(shp_apply_async(p, sleepy, (void *)&ms700, &x, sizeof(int),
	                             &y, sizeof(int), &w.slow), 0);
	cr_assert_eq(shp_map_async_opt(p, triple, NULL, in, sizeof(int), out,
	                               sizeof(int), 4, NULL, &o, &fast), 0);
	cr_assert_eq(shp_async_wait(fast, -1), 0);
	cr_assert_eq(w.ran, 1);
	cr_expect_eq(w.ready_slow, 0, "the slow call was done already");
	cr_expect_eq(w.result_slow, -EBUSY);
	cr_expect_eq(w.progress_slow, 0);
	cr_expect_eq(w.wait_slow, -EDEADLK, "wait from a callback gave %d",
	             w.wait_slow);
	cr_expect_eq(w.wait_done, 0, "wait for a done call from a callback: %d",
	             w.wait_done);
	cr_assert_eq(shp_async_wait(w.slow, -1), 0);
	cr_expect_eq(shp_async_result(w.slow), 0);
	cr_expect_eq(y, 16);
	cr_expect_eq(dy, 7);
	shp_async_free(fast);
	shp_async_free(w.slow);
	shp_async_free(w.done);
	shp_pool_destroy(p);
}

/* Join and terminate from a callback: -EDEADLK, the pool unharmed. */
struct joiner {
	shp_pool *p;
	int join_rc, term_rc, ran;
};

static void joins_in_callback(shp_async *h, void *arg)
{
	struct joiner *j = arg;

	(void)h;
	j->join_rc = shp_pool_join(j->p);
	j->term_rc = shp_pool_terminate(j->p);
	__atomic_store_n(&j->ran, 1, __ATOMIC_SEQ_CST);
}

Test(async, join_or_terminate_in_callback_is_edeadlk, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	struct joiner j = { .p = p, .join_rc = 1, .term_rc = 1 };
	struct shp_call_options o = { .callback = joins_in_callback,
	                              .callback_arg = &j };
	int in[2] = { 0, 1 }, out[2] = { -1, -1 }, st[2];
	shp_async *h;

	cr_assert_eq(shp_map_async_opt(p, sleepy, (void *)&ms300, in,
	                               sizeof(int), out, sizeof(int), 2, st, &o,
	                               &h), 0);
	/* Closed, so that join is otherwise allowed. */
	cr_assert_eq(shp_pool_close(p), 0);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	cr_assert_eq(j.ran, 1);
	cr_expect_eq(j.join_rc, -EDEADLK, "join from a callback: %d", j.join_rc);
	cr_expect_eq(j.term_rc, -EDEADLK, "terminate from a callback: %d",
	             j.term_rc);
	/* Nothing was terminated: the call completed normally. */
	cr_expect_eq(shp_async_result(h), 0);
	cr_expect_eq(triple_mismatches(out, st, 2), 0);
	shp_async_free(h);
	cr_expect_eq(shp_pool_join(p), 0);
	cr_expect_eq(descendants_after(1000), 0);
	shp_pool_destroy(p);
}

/* A callback that frees its own handle. */
struct selffree {
	int ok, err, bad_after_free;
};

/* After shp_async_free from its own callback, h stays usable until the
 * callback returns. */
static void probe_after_free(struct selffree *f, shp_async *h)
{
	size_t done = 0, total = 0;

	if (shp_async_progress(h, &done, &total) != 0 || total != 20)
		__atomic_store_n(&f->bad_after_free, 1, __ATOMIC_SEQ_CST);
}

static void free_self_ok(shp_async *h, void *arg)
{
	struct selffree *f = arg;

	shp_async_free(h);
	probe_after_free(f, h);
	__atomic_fetch_add(&f->ok, 1, __ATOMIC_SEQ_CST);
}

static void free_self_err(shp_async *h, int result, void *arg)
{
	struct selffree *f = arg;

	if (result != SHP_ETASK)
		__atomic_store_n(&f->bad_after_free, 1, __ATOMIC_SEQ_CST);
	shp_async_free(h);
	probe_after_free(f, h);
	__atomic_fetch_add(&f->err, 1, __ATOMIC_SEQ_CST);
}

Test(async, callback_frees_its_own_handle, .timeout = 30)
{
	enum { CALLS = 60, N = 20 };
	shp_pool *p = pool_of(2, 0);
	static int in[CALLS][N], out[CALLS][N];
	static struct selffree f;
	struct shp_call_options o = { .callback = free_self_ok,
	                              .error_callback = free_self_err,
	                              .callback_arg = &f };
	int64_t until;
	int bad = 0;

	memset(&f, 0, sizeof(f));
	for (int k = 0; k < CALLS; k++) {
		shp_async *h = NULL;

		for (int i = 0; i < N; i++) {
			in[k][i] = k % 3 == 0 && i == 4 ? -1 : i;
			out[k][i] = -5;
		}
		cr_assert_eq(shp_map_async_opt(p, fails_on_minus_one, NULL,
		                               in[k], sizeof(int), out[k],
		                               sizeof(int), N, NULL, &o, &h), 0);
		cr_assert_not_null(h);
	}
	until = now_ns() + 10000 * MS;
	while (__atomic_load_n(&f.ok, __ATOMIC_SEQ_CST) +
	               __atomic_load_n(&f.err, __ATOMIC_SEQ_CST) <
	       CALLS && now_ns() < until)
		sleep_ms(2);
	sleep_ms(50); /* no second call of any callback */
	cr_expect_eq(f.ok, CALLS - CALLS / 3, "callback ran %d times", f.ok);
	cr_expect_eq(f.err, CALLS / 3, "error_callback ran %d times", f.err);
	cr_expect_eq(f.bad_after_free, 0,
	             "a wrong result, or the handle unusable before its "
	             "callback returned");
	for (int k = 0; k < CALLS; k++)
		for (int i = 0; i < N; i++)
			if (!(k % 3 == 0 && i == 4))
				bad += out[k][i] != 3 * i + 1;
	cr_expect_eq(bad, 0, "%d outputs wrong", bad);
	/* Every handle is gone: destroying the pool is allowed. */
	shp_pool_destroy(p);
	cr_expect_eq(f.ok + f.err, CALLS);
}

Test(async, free_waits_for_a_running_call, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[4] = { 0, 1, 2, 3 }, out[4] = { -1, -1, -1, -1 }, st[4];
	struct seen s = { .out = out, .st = st, .n = 4, .fail_at = -1 };
	struct shp_call_options o = { .callback = on_ok, .error_callback = on_err,
	                              .callback_arg = &s };
	shp_async *h;
	int64_t t0 = now_ns();

	cr_assert_eq(shp_map_async_opt(p, sleepy, (void *)&ms50, in, sizeof(int),
	                               out, sizeof(int), 4, st, &o, &h), 0);
	shp_async_free(h);
	cr_expect_geq(now_ns() - t0, 95 * MS, "free did not wait for the call");
	cr_expect_eq(__atomic_load_n(&s.ok, __ATOMIC_SEQ_CST), 1);
	cr_expect_eq(s.err, 0);
	cr_expect_eq(triple_mismatches(out, st, 4), 0);
	shp_pool_destroy(p);
}

/* ======================================================== cancellation */

/*
 * Counts statuses: 0 with a right output (ok), SHP_ECANCELED (canceled);
 * anything else is wrong. A cancelled task's out[i] is unspecified.
 */
struct cancel_count {
	size_t ok, canceled, wrong;
};

static struct cancel_count count_cancel(const int *out, const int *st,
                                        size_t n)
{
	struct cancel_count k = { 0 };

	for (size_t i = 0; i < n; i++) {
		if (st[i] == 0 && out[i] == 3 * (int)i + 1) {
			k.ok++;
		} else if (st[i] == SHP_ECANCELED) {
			k.canceled++;
		} else {
			if (!k.wrong++)
				cr_expect_fail("task %zu: status %d out %d", i,
				               st[i], out[i]);
		}
	}
	return k;
}

/* A zeroed counter in the pool's arena, for counted(). */
static int *arena_counter(shp_pool *p)
{
	int *ran = shp_alloc(p, sizeof(int));

	cr_assert_not_null(ran);
	*ran = 0;
	return ran;
}

/*
 * The outcome of a cancelled call of n counted() tasks: SHP_ECANCELED, every
 * task succeeded or was cancelled, most of them cancelled, and *ran counts
 * exactly those that succeeded.
 */
static struct cancel_count expect_cancelled(shp_async *h, const int *out,
                                            const int *st, size_t n,
                                            const int *ran)
{
	struct cancel_count k;

	cr_expect_eq(shp_async_result(h), SHP_ECANCELED);
	k = count_cancel(out, st, n);
	cr_expect_eq(k.wrong, 0);
	cr_expect_eq(k.ok + k.canceled, n);
	cr_expect_gt(k.canceled, n / 2, "only %zu of %zu cancelled", k.canceled,
	              n);
	cr_expect_eq((size_t)__atomic_load_n(ran, __ATOMIC_SEQ_CST), k.ok,
	             "%d tasks ran, %zu report success", *ran, k.ok);
	return k;
}

Test(async, cancel_right_after_submit, .timeout = 30)
{
	const size_t n = 2000;
	shp_pool *p = pool_of(2, 0);
	int *in = iota(n), *out = filled(n, -1), *st = filled(n, STATUS_UNSET);
	int *ran = arena_counter(p);
	size_t done = 0, total = 0;
	shp_async *h;
	int64_t t0;

	t0 = now_ns();
	cr_assert_eq(shp_map_async(p, counted, ran, in, sizeof(int), out,
	                           sizeof(int), n, 1, st, &h), 0);
	cr_assert_eq(shp_async_cancel(h), 0);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	/* Uncancelled, the call takes a second. */
	cr_expect_lt(now_ns() - t0, slack(700 * MS), "the cancelled call took %lld ms",
	             (long long)((now_ns() - t0) / MS));
	expect_cancelled(h, out, st, n, ran);
	cr_expect_eq(shp_async_progress(h, &done, &total), 0);
	cr_expect_eq(total, n);
	/* Done now: a second cancel is too late and changes nothing. */
	cr_expect_eq(shp_async_cancel(h), -EALREADY);
	cr_expect_eq(shp_async_result(h), SHP_ECANCELED);
	shp_async_free(h);
	/* The pool goes on. */
	for (size_t i = 0; i < n; i++)
		out[i] = -1;
	cr_expect_eq(shp_map(p, triple, NULL, in, sizeof(int), out, sizeof(int),
	                     n, 0, st), 0);
	cr_expect_eq(triple_mismatches(out, st, n), 0);
	shp_pool_destroy(p);
	free(in);
	free(out);
	free(st);
}

/* Without statuses, the wait statuses still say 0 for every task that
 * never ran (they were left as they were). */
Test(async, cancel_without_statuses_fills_wstatus, .timeout = 30)
{
	const size_t n = 5000; /* over the 2048 a call keeps in flight */
	shp_pool *p = pool_of(2, 0);
	int *in = iota(n), *out = filled(n, -1), *ws = filled(n, STATUS_UNSET);
	int *ran = arena_counter(p);
	struct shp_call_options o = { .chunksize = 1, .wstatus = ws };
	size_t unset = 0;
	shp_async *h;

	cr_assert_eq(shp_map_async_opt(p, counted, ran, in, sizeof(int), out,
	                               sizeof(int), n, NULL, &o, &h), 0);
	cr_assert_eq(shp_async_cancel(h), 0);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	cr_expect_eq(shp_async_result(h), SHP_ECANCELED);
	for (size_t i = 0; i < n; i++)
		unset += ws[i] != 0;
	cr_expect_eq(unset, 0, "%zu of %zu wait statuses not 0", unset, n);
	shp_async_free(h);
	shp_pool_destroy(p);
	free(in);
	free(out);
	free(ws);
}

Test(async, cancel_while_running, .timeout = 30)
{
	const size_t n = 2000;
	shp_pool *p = pool_of(2, 0);
	int *in = iota(n), *out = filled(n, -1), *st = filled(n, STATUS_UNSET);
	int *ran = arena_counter(p);
	struct cancel_count k;
	size_t done = 0, total = 0;
	shp_async *h;

	cr_assert_eq(shp_map_async(p, counted, ran, in, sizeof(int), out,
	                           sizeof(int), n, 1, st, &h), 0);
	do {
		cr_assert_eq(shp_async_progress(h, &done, &total), 0);
		sleep_ms(1);
	} while (done < 100 && shp_async_ready(h) == 0);
	cr_assert_geq(done, 100);
	cr_assert_lt(done, n, "the call ended before it could be cancelled");
	cr_assert_eq(shp_async_cancel(h), 0);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	k = expect_cancelled(h, out, st, n, ran);
	cr_expect_geq(k.ok, 100, "%zu done before the cancel, %zu ok", done,
	              k.ok);
	cr_expect_gt(k.canceled, 0);
	cr_expect_eq(shp_async_cancel(h), -EALREADY);
	shp_async_free(h);
	shp_pool_destroy(p);
	free(in);
	free(out);
	free(st);
}

Test(async, cancel_after_done_is_ealready, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[CALL_N], out[CALL_N], st[CALL_N];
	struct seen s = { .out = out, .st = st, .n = CALL_N, .fail_at = -1 };
	struct shp_call_options o = { .callback = on_ok, .error_callback = on_err,
	                              .callback_arg = &s };
	shp_async *h;

	for (int i = 0; i < CALL_N; i++)
		in[i] = i;
	cr_assert_eq(shp_map_async_opt(p, triple, NULL, in, sizeof(int), out,
	                               sizeof(int), CALL_N, st, &o, &h), 0);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	cr_expect_eq(shp_async_cancel(h), -EALREADY);
	cr_expect_eq(shp_async_result(h), 0);
	cr_expect_eq(shp_async_ready(h), 1);
	cr_expect_eq(triple_mismatches(out, st, CALL_N), 0);
	cr_expect_eq(s.ok, 1);
	cr_expect_eq(s.err, 0);
	shp_async_free(h);
	shp_pool_destroy(p);
	cr_expect_eq(s.ok, 1);
	cr_expect_eq(s.err, 0);
}

Test(async, cancel_calls_error_callback, .timeout = 30)
{
	const size_t n = 2000;
	shp_pool *p = pool_of(2, 0);
	int *in = iota(n), *out = filled(n, -1), *st = filled(n, STATUS_UNSET);
	int *ran = arena_counter(p);
	struct seen s = { .out = out, .n = 0, .fail_at = -1, .err_result = 1 };
	struct shp_call_options o = { .chunksize = 1, .callback = on_ok,
	                              .error_callback = on_err,
	                              .callback_arg = &s };
	struct cancel_count k;
	shp_async *h;

	cr_assert_eq(shp_map_async_opt(p, counted, ran, in, sizeof(int), out,
	                               sizeof(int), n, st, &o, &h), 0);
	cr_assert_eq(shp_async_cancel(h), 0);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	cr_expect_eq(shp_async_result(h), SHP_ECANCELED);
	cr_expect_eq(s.err, 1, "error_callback ran %d times", s.err);
	cr_expect_eq(s.ok, 0, "callback ran %d times", s.ok);
	cr_expect_eq(s.err_result, SHP_ECANCELED, "error_callback got %d",
	             s.err_result);
	cr_expect_eq(s.h, h);
	k = count_cancel(out, st, n);
	cr_expect_eq(k.wrong, 0);
	cr_expect_gt(k.canceled, 0);
	shp_async_free(h);
	shp_pool_destroy(p);
	free(in);
	free(out);
	free(st);
}

/* A map_async of n sleepy() tasks of 20 ms, chunksize 1, outputs -1 and
 * statuses unset until written; on_ok or on_err reports to s. */
static shp_async *map_async_20ms(shp_pool *p, const int *in, int *out,
                                 int *st, int n, struct seen *s)
{
	struct shp_call_options o = { .chunksize = 1, .callback = on_ok,
	                              .error_callback = on_err,
	                              .callback_arg = s };
	shp_async *h = NULL;

	for (int i = 0; i < n; i++) {
		out[i] = -1;
		st[i] = STATUS_UNSET;
	}
	cr_assert_eq(shp_map_async_opt(p, sleepy, (void *)&ms20, in, sizeof(int),
	                               out, sizeof(int), (size_t)n, st, &o, &h),
	             0);
	return h;
}

/* Calls still queued for a call entry when cancelled never start: their
 * error callback gets SHP_ECANCELED and every status is SHP_ECANCELED. */
Test(async, cancel_queued_calls, .timeout = 30)
{
	enum { CALLS = 140, N = 2 };
	shp_pool *p = pool_of(2, 0);
	static int in[N] = { 0, 1 }, out[CALLS][N], st[CALLS][N];
	static struct seen s[CALLS];
	shp_async *h[CALLS];
	int finished = 0, canceled = 0, bad = 0;

	for (int k = 0; k < CALLS; k++) {
		s[k] = (struct seen){ .n = 0, .fail_at = -1, .err_result = 1 };
		h[k] = map_async_20ms(p, in, out[k], st[k], N, &s[k]);
	}
	/* 140 calls of 2 tasks of 20 ms, 64 call entries: the last 70
	 * are still queued, none can have started. */
	for (int k = CALLS / 2; k < CALLS; k++)
		cr_expect_eq(shp_async_cancel(h[k]), 0, "cancel %d", k);
	for (int k = 0; k < CALLS; k++) {
		cr_assert_eq(shp_async_wait(h[k], 20000 * MS), 0);
		if (s[k].ok + s[k].err != 1)
			bad++;
		if (k < CALLS / 2) {
			finished += shp_async_result(h[k]) == 0 && s[k].ok == 1 &&
			            triple_mismatches(out[k], st[k], N) == 0;
			continue;
		}
		if (shp_async_result(h[k]) == SHP_ECANCELED &&
		    s[k].err_result == SHP_ECANCELED)
			canceled++;
		for (int i = 0; i < N; i++)
			bad += st[k][i] != SHP_ECANCELED &&
			       !(st[k][i] == 0 && out[k][i] == 3 * i + 1);
	}
	cr_expect_eq(bad, 0, "%d calls or tasks wrong", bad);
	cr_expect_eq(finished, CALLS / 2);
	cr_expect_eq(canceled, CALLS / 2, "%d of %d queued calls cancelled",
	             canceled, CALLS / 2);
	/* The last of them never started: not one task ran. */
	for (int i = 0; i < N; i++)
		cr_expect_eq(st[CALLS - 1][i], SHP_ECANCELED);
	for (int k = 0; k < CALLS; k++)
		shp_async_free(h[k]);
	shp_pool_destroy(p);
}

struct waiting_thread {
	shp_async *h;
	int rc, result;
	pthread_t th;
};

static void *wait_main(void *arg)
{
	struct waiting_thread *w = arg;

	w->rc = shp_async_wait(w->h, -1);
	w->result = shp_async_result(w->h);
	return NULL;
}

Test(async, many_threads_wait_for_one_handle, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[4] = { 0, 1, 2, 3 }, out[4] = { -1, -1, -1, -1 }, st[4];
	struct waiting_thread w[4];
	shp_async *h;

	cr_assert_eq(shp_map_async(p, sleepy, (void *)&ms50, in, sizeof(int),
	                           out, sizeof(int), 4, 1, st, &h), 0);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct waiting_thread){ .h = h, .rc = 1, .result = 1 };
		cr_assert_eq(pthread_create(&w[i].th, NULL, wait_main, &w[i]), 0);
	}
	cr_expect_eq(shp_async_wait(h, -1), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(w[i].th, NULL);
		cr_expect_eq(w[i].rc, 0, "waiter %d: %d", i, w[i].rc);
		cr_expect_eq(w[i].result, 0);
	}
	cr_expect_eq(triple_mismatches(out, st, 4), 0);
	shp_async_free(h);
	shp_pool_destroy(p);
}

/* A callback that frees another call's handle, not done: it is freed
 * once done, and its own callback still runs, once. */
struct freer {
	shp_async *victim;
};

static void frees_other(shp_async *h, void *arg)
{
	(void)h;
	shp_async_free(((struct freer *)arg)->victim);
}

Test(async, callback_frees_another_running_handle, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int x = 5, y = -1, in[4] = { 0, 1, 2, 3 }, out[4];
	struct seen sv = { .out = &y, .n = 0, .fail_at = -1 };
	struct shp_call_options ov = { .chunksize = 1, .callback = on_ok,
	                               .error_callback = on_err,
	                               .callback_arg = &sv };
	struct freer f;
	struct shp_call_options of = { .callback = frees_other,
	                               .callback_arg = &f };
	shp_async *fast;
	int64_t until;

	/* The victim sleeps 300 ms on one worker. */
	cr_assert_eq(shp_map_async_opt(p, sleepy, (void *)&ms300, &x, sizeof(int),
	                               &y, sizeof(int), 1, NULL, &ov, &f.victim),
	             0);
	cr_assert_eq(shp_map_async_opt(p, triple, NULL, in, sizeof(int), out,
	                               sizeof(int), 4, NULL, &of, &fast), 0);
	cr_assert_eq(shp_async_wait(fast, -1), 0);
	cr_expect_eq(triple_mismatches(out, NULL, 4), 0);
	shp_async_free(fast);
	/* The victim is gone as a handle; its callback tells when it is done. */
	until = now_ns() + 5000 * MS;
	while (__atomic_load_n(&sv.ok, __ATOMIC_SEQ_CST) +
	               __atomic_load_n(&sv.err, __ATOMIC_SEQ_CST) == 0 &&
	       now_ns() < until)
		sleep_ms(2);
	sleep_ms(20);
	cr_expect_eq(sv.ok, 1, "the freed call's callback ran %d times", sv.ok);
	cr_expect_eq(sv.err, 0);
	cr_expect_eq(y, 16);
	shp_pool_destroy(p);
}

/* ============================================= close, join, terminate */

Test(async, close_lets_running_finish_then_refuses, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[4] = { 0, 1, 2, 3 }, out[4] = { -1, -1, -1, -1 }, st[4];
	int x = 1, y = -1;
	struct seen s = { .fail_at = -1 };
	struct shp_call_options o = { .callback = on_ok, .error_callback = on_err,
	                              .callback_arg = &s };
	shp_async *h, *refused, *q[100];
	int qin[100], qout[100], bad = 0;
	static int dummy;

	cr_assert_eq(shp_map_async(p, sleepy, (void *)&ms50, in, sizeof(int),
	                           out, sizeof(int), 4, 1, st, &h), 0);
	/* More than the 64 call entries: some are still queued at close. */
	for (int i = 0; i < 100; i++) {
		qin[i] = i;
		qout[i] = -1;
		cr_assert_eq(shp_apply_async(p, triple, NULL, &qin[i], sizeof(int),
		                             &qout[i], sizeof(int), &q[i]), 0);
	}
	cr_assert_eq(shp_pool_close(p), 0);

	refused = (shp_async *)&dummy;
	cr_expect_eq(shp_apply_async(p, triple, NULL, &x, sizeof(int), &y,
	                             sizeof(int), &refused), SHP_ECLOSED);
	cr_expect_null(refused);
	refused = (shp_async *)&dummy;
	cr_expect_eq(shp_map_async(p, triple, NULL, in, sizeof(int), &y,
	                           sizeof(int), 1, 0, NULL, &refused),
	             SHP_ECLOSED);
	cr_expect_null(refused);
	refused = (shp_async *)&dummy;
	cr_expect_eq(shp_map_async_opt(p, triple, NULL, in, sizeof(int), &y,
	                               sizeof(int), 1, NULL, &o, &refused),
	             SHP_ECLOSED);
	cr_expect_null(refused);
	cr_expect_eq(y, -1);

	/* The calls made before close, queued ones included, complete
	 * normally. */
	cr_assert_eq(shp_async_wait(h, -1), 0);
	cr_expect_eq(shp_async_result(h), 0);
	cr_expect_eq(triple_mismatches(out, st, 4), 0);
	shp_async_free(h);
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(shp_async_wait(q[i], 5000 * MS), 0);
		bad += shp_async_result(q[i]) != 0 || qout[i] != 3 * i + 1;
		shp_async_free(q[i]);
	}
	cr_expect_eq(bad, 0, "%d calls submitted before close went wrong", bad);
	cr_expect_eq(shp_pool_join(p), 0);
	/* No callback for a call that never started. */
	cr_expect_eq(s.ok + s.err, 0);
	shp_pool_destroy(p);
}

Test(async, join_waits_for_pending_async_calls, .timeout = 30)
{
	enum { CALLS = 3, N = 20 };
	shp_pool *p = pool_of(2, 0);
	int in[N], out[CALLS][N], st[CALLS][N];
	struct seen s[CALLS];
	shp_async *h[CALLS];
	int64_t t0 = now_ns();

	for (int i = 0; i < N; i++)
		in[i] = i;
	for (int k = 0; k < CALLS; k++) {
		s[k] = (struct seen){ .out = out[k], .st = st[k], .n = N,
		                      .fail_at = -1, .delay_ms = 20 };
		h[k] = map_async_20ms(p, in, out[k], st[k], N, &s[k]);
	}
	cr_assert_eq(shp_pool_close(p), 0);
	cr_assert_eq(shp_pool_join(p), 0);
	/* 60 tasks of 20 ms on 2 workers. */
	cr_expect_geq(now_ns() - t0, 590 * MS, "join returned after %lld ms",
	              (long long)((now_ns() - t0) / MS));
	for (int k = 0; k < CALLS; k++) {
		cr_expect_eq(__atomic_load_n(&s[k].ok, __ATOMIC_SEQ_CST), 1,
		             "call %d: callback ran %d times by join", k, s[k].ok);
		cr_expect_eq(s[k].err, 0);
		cr_expect_eq(s[k].outs_ok, 1);
		cr_expect_eq(shp_async_ready(h[k]), 1);
		cr_expect_eq(shp_async_result(h[k]), 0);
		cr_expect_eq(triple_mismatches(out[k], st[k], N), 0);
		cr_expect_eq(shp_async_wait(h[k], 0), 0);
		shp_async_free(h[k]);
	}
	cr_expect_eq(descendants_after(1000), 0);
	shp_pool_destroy(p);
}

Test(async, terminate_ends_pending_async_calls, .timeout = 30)
{
	enum { N = 10 };
	shp_pool *p = pool_of(2, 0);
	int in[N], out[N], st[N], x = 4, y = -1;
	struct seen s = { .out = out, .n = 0, .fail_at = -1, .err_result = 1 };
	struct shp_call_options o = { .chunksize = 1, .callback = on_ok,
	                              .error_callback = on_err,
	                              .callback_arg = &s };
	shp_async *h, *h2, *late, *q[100];
	int qin[100], qout[100], qbad = 0;
	int64_t t0;

	for (int i = 0; i < N; i++) {
		in[i] = i;
		out[i] = -1;
		st[i] = STATUS_UNSET;
	}
	/* 10 tasks of 2 s on 2 workers: 10 s unless terminated. */
	cr_assert_eq(shp_map_async_opt(p, sleepy, (void *)&ms2000, in,
	                               sizeof(int), out, sizeof(int), N, st, &o,
	                               &h), 0);
	cr_assert_eq(shp_apply_async(p, sleepy, (void *)&ms2000, &x, sizeof(int),
	                             &y, sizeof(int), &h2), 0);
	/* And 100 more behind them, most still queued for a call entry. */
	for (int i = 0; i < 100; i++) {
		qin[i] = i;
		qout[i] = -1;
		cr_assert_eq(shp_apply_async(p, sleepy, (void *)&ms2000, &qin[i],
		                             sizeof(int), &qout[i], sizeof(int),
		                             &q[i]), 0);
	}
	sleep_ms(200);
	t0 = now_ns();
	cr_assert_eq(shp_pool_terminate(p), 0);
	/* Done, error callback returned, before terminate returns. */
	cr_expect_eq(shp_async_ready(h), 1);
	cr_expect_eq(shp_async_ready(h2), 1);
	cr_expect_eq(__atomic_load_n(&s.err, __ATOMIC_SEQ_CST), 1,
	             "error_callback had run %d times when terminate returned",
	             s.err);
	cr_assert_eq(shp_async_wait(h, 3000 * MS), 0);
	cr_assert_eq(shp_async_wait(h2, 3000 * MS), 0);
	cr_expect_lt(now_ns() - t0, slack(1500 * MS), "terminated calls took %lld ms",
	             (long long)((now_ns() - t0) / MS));
	cr_expect_eq(shp_async_result(h), SHP_ECLOSED);
	cr_expect_eq(shp_async_result(h2), SHP_ECLOSED);
	for (int i = 0; i < 100; i++) {
		qbad += shp_async_ready(q[i]) != 1 ||
		        shp_async_result(q[i]) != SHP_ECLOSED || qout[i] != -1;
		shp_async_free(q[i]);
	}
	cr_expect_eq(qbad, 0, "%d of the queued calls did not end SHP_ECLOSED",
	             qbad);
	for (int i = 0; i < N; i++) {
		cr_expect_eq(st[i], SHP_ECANCELED, "status[%d] = %d", i, st[i]);
		cr_expect_eq(out[i], -1);
	}
	cr_expect_eq(y, -1);
	cr_expect_eq(s.err, 1, "error_callback ran %d times", s.err);
	cr_expect_eq(s.ok, 0);
	cr_expect_eq(s.err_result, SHP_ECLOSED, "error_callback got %d",
	             s.err_result);
	cr_expect_eq(descendants_after(1000), 0);
	late = (shp_async *)&o;
	cr_expect_eq(shp_apply_async(p, triple, NULL, &x, sizeof(int), &y,
	                             sizeof(int), &late), SHP_ECLOSED);
	cr_expect_null(late);
	shp_async_free(h);
	shp_async_free(h2);
	shp_pool_destroy(p);
	cr_expect_eq(s.err, 1);
}

/* ====================================================== bad arguments */

Test(async, bad_arguments, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int x = 1, y = -1;
	struct seen s = { .fail_at = -1 };
	struct shp_call_options o = { .callback = on_ok, .error_callback = on_err,
	                              .callback_arg = &s };
	shp_async *h;
	size_t d, t;

	cr_expect_eq(shp_apply_async(p, triple, NULL, &x, sizeof(int), &y,
	                             sizeof(int), NULL), -EINVAL);
	cr_expect_eq(shp_map_async(p, triple, NULL, &x, sizeof(int), &y,
	                           sizeof(int), 1, 0, NULL, NULL), -EINVAL);
	cr_expect_eq(shp_map_async_opt(p, triple, NULL, &x, sizeof(int), &y,
	                               sizeof(int), 1, NULL, &o, NULL), -EINVAL);
	h = (shp_async *)&s;
	cr_expect_eq(shp_apply_async(NULL, triple, NULL, &x, sizeof(int), &y,
	                             sizeof(int), &h), -EINVAL);
	cr_expect_null(h);
	h = (shp_async *)&s;
	cr_expect_eq(shp_map_async(NULL, triple, NULL, &x, sizeof(int), &y,
	                           sizeof(int), 1, 0, NULL, &h), -EINVAL);
	cr_expect_null(h);
	h = (shp_async *)&s;
	cr_expect_eq(shp_map_async_opt(NULL, triple, NULL, &x, sizeof(int), &y,
	                               sizeof(int), 1, NULL, &o, &h), -EINVAL);
	cr_expect_null(h);
	/* Checked as by shp_map: NULL fn, NULL buffer with a size. */
	h = (shp_async *)&s;
	cr_expect_eq(shp_map_async_opt(p, NULL, NULL, &x, sizeof(int), &y,
	                               sizeof(int), 1, NULL, &o, &h), -EINVAL);
	cr_expect_null(h);
	h = (shp_async *)&s;
	cr_expect_eq(shp_apply_async(p, triple, NULL, NULL, sizeof(int), &y,
	                             sizeof(int), &h), -EINVAL);
	cr_expect_null(h);

	cr_expect_eq(shp_async_wait(NULL, -1), -EINVAL);
	cr_expect_eq(shp_async_wait(NULL, 0), -EINVAL);
	cr_expect_eq(shp_async_ready(NULL), -EINVAL);
	cr_expect_eq(shp_async_result(NULL), -EINVAL);
	cr_expect_eq(shp_async_progress(NULL, &d, &t), -EINVAL);
	cr_expect_eq(shp_async_cancel(NULL), -EINVAL);
	shp_async_free(NULL);

	/* None of the refused calls ran or called back. */
	sleep_ms(50);
	cr_expect_eq(y, -1);
	cr_expect_eq(s.ok + s.err, 0);
	/* The pool still works. */
	cr_assert_eq(shp_apply_async(p, triple, NULL, &x, sizeof(int), &y,
	                             sizeof(int), &h), 0);
	cr_assert_eq(shp_async_wait(h, -1), 0);
	cr_expect_eq(y, 4);
	shp_async_free(h);
	shp_pool_destroy(p);
}
