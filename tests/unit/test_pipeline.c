#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmpool.h"

#include "atomic.h"
#include "procfs.h"
#include "util.h"

WATCHDOG_SUITE(pipeline, 120);

/* ------------------------------------------------------------ stages */

static int square(const void *in, void *out, void *ctx)
{
	long x = *(const long *)in;

	(void)ctx;
	*(long *)out = x * x;
	return 0;
}

static int plus_one(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(long *)out = *(const long *)in + 1;
	return 0;
}

static int odd(const void *in, void *ctx)
{
	(void)ctx;
	return (int)(*(const long *)in & 1);
}

/* Sleeps up to 2 ms, by the item: workers finish out of order. */
static int jitter(const void *in, void *out, void *ctx)
{
	long x = *(const long *)in;

	(void)ctx;
	sleep_ms((long)(mix((uint64_t)x) % 3));
	*(long *)out = x;
	return 0;
}

/* x -> x % 4 copies of 10 * x + k, k = 0, 1, ... */
static int spread(const void *in, shp_emitter *em, void *ctx)
{
	long x = *(const long *)in;

	(void)ctx;
	for (long k = 0; k < x % 4; k++) {
		long v = 10 * x + k;
		int r = shp_emit(em, &v);

		if (r)
			return r;
	}
	return 0;
}

static long *longs(size_t n)
{
	long *v = malloc(n * sizeof(*v));

	cr_assert_not_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = (long)i;
	return v;
}

/* No child of this process is left, running or a zombie. */
static void expect_no_children(void)
{
	cr_expect_eq(waitpid(-1, NULL, WNOHANG), -1, "a child is left");
	cr_expect_eq(errno, ECHILD);
}

/* ------------------------------------------------------------ arguments */

Test(pipeline, bad_arguments, .timeout = 10)
{
	shp_pipeline *p = (shp_pipeline *)&p;
	long in[4] = { 0 };

	cr_expect_eq(shp_pipeline_create(NULL, in, sizeof(long), 4, 0), -EINVAL);
	cr_expect_eq(shp_pipeline_create(&p, in, sizeof(long), 4, 8), -EINVAL);
	cr_expect_null(p);
	cr_expect_eq(shp_pipeline_create(&p, NULL, sizeof(long), 4, 0), -EINVAL);
	cr_expect_eq(shp_pipeline_create(&p, in, 1 << 20, 4, 0), -EINVAL);
	cr_expect_eq(shp_pipeline_create(&p, in, 16, SIZE_MAX / 8, 0),
	             -EOVERFLOW);
	cr_expect_null(p);
	cr_expect_eq(shp_pipeline_create_gen(&p, NULL, NULL, 8, 0), -EINVAL);
	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), 4, 0), 0);
	cr_expect_eq(shp_pipeline_next(p, NULL, NULL, 0), -EINVAL, "no stages");
	cr_expect_eq(shp_pipeline_map(p, NULL, NULL, 8, 1, 1), -EINVAL);
	cr_expect_eq(shp_pipeline_map(p, square, NULL, 8, 0, 1), -EINVAL);
	cr_expect_eq(shp_pipeline_map(p, square, NULL, 8, 1025, 1), -EINVAL);
	cr_expect_eq(shp_pipeline_map(p, square, NULL, 8, 1, 0), -EINVAL);
	cr_expect_eq(shp_pipeline_map(p, square, NULL, 1 << 20, 1, 1), -EINVAL);
	cr_expect_eq(shp_pipeline_filter(NULL, odd, NULL, 1, 1), -EINVAL);
	cr_assert_eq(shp_pipeline_flat_map(p, spread, NULL, sizeof(long), 1, 4),
	             0);
	cr_expect_eq(shp_pipeline_flat_map(p, spread, NULL, sizeof(long), 1, 4),
	             -EINVAL, "a second flat_map in input order");
	/* 700 + 400 + 1 would pass a queue's 1024 participants. */
	cr_expect_eq(shp_pipeline_map(p, square, NULL, 8, 400, 1), 0);
	cr_expect_eq(shp_pipeline_map(p, square, NULL, 8, 700, 1), -EINVAL);
	cr_expect_eq(shp_pipeline_map(p, square, NULL, 8, 623, 1), 0);
	cr_expect_eq(shp_pipeline_error(p, NULL, NULL, NULL, NULL), -ENOENT);
	cr_expect_eq(shp_pipeline_error(NULL, NULL, NULL, NULL, NULL), -EINVAL);
	cr_expect_eq(shp_emit(NULL, in), -EINVAL);
	shp_pipeline_free(p);
	shp_pipeline_free(NULL);
}

/* ------------------------------------------------------------ results */

Test(pipeline, map_filter_map_in_input_order, .timeout = 60)
{
	size_t n = scaled(20000), k = 0, idx;
	long *in = longs(n), v;
	shp_pipeline *p;
	int r;

	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n, 0), 0);
	cr_assert_eq(shp_pipeline_map(p, plus_one, NULL, sizeof(long), 2, 8), 0);
	cr_assert_eq(shp_pipeline_filter(p, odd, NULL, 3, 4), 0);
	cr_assert_eq(shp_pipeline_map(p, jitter, NULL, sizeof(long), 4, 2), 0);
	cr_assert_eq(shp_pipeline_map(p, square, NULL, sizeof(long), 2, 16), 0);
	while ((r = shp_pipeline_next(p, &idx, &v, -1)) == 1) {
		/* Items 0, 2, 4, ... pass (x + 1 odd), in that order. */
		cr_assert_eq(idx, 2 * k, "item %zu came %zu-th", idx, k);
		cr_assert_eq(v, (long)(idx + 1) * (long)(idx + 1));
		k++;
	}
	cr_expect_eq(r, 0);
	cr_expect_eq(k, (n + 1) / 2);
	cr_expect_eq(shp_pipeline_next(p, &idx, &v, -1), 0, "end is not final");
	shp_pipeline_free(p);
	expect_no_children();
	free(in);
}

/* The longest timeout is no deadline: now + INT64_MAX overflowed (the
 * UBSan build stops there), where it should saturate. */
Test(pipeline, longest_timeout_waits_without_deadline, .timeout = 30)
{
	size_t n = 100, k = 0, idx;
	long *in = longs(n), v;
	shp_pipeline *p;
	int r;

	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n, 0), 0);
	cr_assert_eq(shp_pipeline_map(p, square, NULL, sizeof(long), 2, 8), 0);
	while ((r = shp_pipeline_next(p, &idx, &v, INT64_MAX)) == 1) {
		cr_assert_eq(idx, k);
		cr_assert_eq(v, (long)idx * (long)idx);
		k++;
	}
	cr_expect_eq(r, 0);
	cr_expect_eq(k, n);
	shp_pipeline_free(p);
	expect_no_children();
	free(in);
}

Test(pipeline, unordered_delivers_each_once, .timeout = 60)
{
	size_t n = scaled(5000), idx, k = 0;
	long *in = longs(n), v;
	char *seen = calloc(n, 1);
	shp_pipeline *p;
	bool out_of_order = false;
	int r;

	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n,
	                                 SHP_UNORDERED), 0);
	cr_assert_eq(shp_pipeline_map(p, jitter, NULL, sizeof(long), 4, 4), 0);
	cr_assert_eq(shp_pipeline_map(p, square, NULL, sizeof(long), 2, 4), 0);
	while ((r = shp_pipeline_next(p, &idx, &v, -1)) == 1) {
		cr_assert_lt(idx, n);
		cr_assert_eq(seen[idx], 0, "item %zu twice", idx);
		seen[idx] = 1;
		cr_assert_eq(v, (long)(idx * idx));
		out_of_order |= idx != k++;
	}
	cr_expect_eq(r, 0);
	cr_expect_eq(k, n);
	cr_expect(out_of_order, "4 jittering workers kept input order");
	shp_pipeline_free(p);
	expect_no_children();
	free(seen);
	free(in);
}

Test(pipeline, flat_map_outputs_in_emission_order, .timeout = 60)
{
	size_t n = scaled(3000), idx;
	long *in = longs(n), v, x = 0, k = 0;
	shp_pipeline *p;
	int r;

	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n, 0), 0);
	cr_assert_eq(shp_pipeline_flat_map(p, spread, NULL, sizeof(long), 3, 4),
	             0);
	cr_assert_eq(shp_pipeline_map(p, jitter, NULL, sizeof(long), 3, 4), 0);
	while ((r = shp_pipeline_next(p, &idx, &v, -1)) == 1) {
		/* The serial order: x = 0..n-1, k = 0..x%4-1. */
		while (k >= x % 4) {
			x++;
			k = 0;
		}
		cr_assert_eq((long)idx, x);
		cr_assert_eq(v, 10 * x + k, "item %ld output %ld: %ld", x, k, v);
		k++;
	}
	cr_expect_eq(r, 0);
	while (k >= x % 4 && x < (long)n) {
		x++;
		k = 0;
	}
	cr_expect_eq(x, (long)n, "outputs stop at item %ld", x);
	shp_pipeline_free(p);
	free(in);
}

/* each: a side effect per item, into memory shared with the workers. */
static uint32_t *hits;

static int count_hit(const void *in, void *ctx)
{
	(void)ctx;
	uatomic_inc(&hits[*(const long *)in]);
	return 0;
}

Test(pipeline, each_runs_once_per_item, .timeout = 60)
{
	size_t n = scaled(4000);
	long *in = longs(n);
	shp_pipeline *p;

	hits = shared_map(n * sizeof(*hits));
	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n, 0), 0);
	cr_assert_eq(shp_pipeline_filter(p, odd, NULL, 2, 4), 0);
	cr_assert_eq(shp_pipeline_each(p, count_hit, NULL, 3, 4), 0);
	cr_expect_eq(shp_pipeline_map(p, square, NULL, 8, 1, 1), -EINVAL,
	             "a stage after each");
	cr_assert_eq(shp_pipeline_run(p, -1), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(hits[i], i & 1, "item %zu: %u", i, hits[i]);
	cr_expect_eq(shp_pipeline_map(p, square, NULL, 8, 1, 1), -EINVAL);
	shp_pipeline_free(p);
	munmap(hits, n * sizeof(*hits));
}

/* A generator source, of unknown length, read only as results go. */
struct counter {
	long next, end;
	long fail_at; /* fails with -EBADMSG there */
	long fed;     /* how many the generator gave */
};

static int count_up(void *in, void *arg)
{
	struct counter *c = arg;

	if (c->next == c->end)
		return 0;
	if (c->next == c->fail_at)
		return -EBADMSG;
	*(long *)in = c->next++;
	uatomic_inc(&c->fed);
	return 1;
}

Test(pipeline, back_pressure_bounds_what_runs_ahead, .timeout = 60)
{
	struct counter c = { 0, 100000, -1, 0 };
	shp_pipeline *p;
	size_t idx;
	long v, most = 0;

	cr_assert_eq(shp_pipeline_create_gen(&p, count_up, &c, sizeof(long),
	                                     SHP_UNORDERED), 0);
	cr_assert_eq(shp_pipeline_map(p, plus_one, NULL, sizeof(long), 2, 4), 0);
	cr_assert_eq(shp_pipeline_map(p, square, NULL, sizeof(long), 1, 2), 0);
	for (long k = 0; k < 200; k++) {
		cr_assert_eq(shp_pipeline_next(p, &idx, &v, -1), 1);
		cr_assert_eq(v, (long)(idx + 1) * (long)(idx + 1));
		/* A slow reader: let the pipeline fill up. */
		if (k % 50 == 0)
			sleep_ms(20);
		if (uatomic_read(&c.fed) - (k + 1) > most)
			most = uatomic_read(&c.fed) - (k + 1);
	}
	/* Items in flight: source queue 4, stage workers 2 + 1, queues 4 + 2,
	 * and the feeder's one in hand. */
	cr_expect_leq(most, 4 + 3 + 6 + 1, "%ld items ran ahead", most);
	cr_expect_gt(most, 3, "nothing ran ahead: no parallelism");
	shp_pipeline_free(p);
	cr_expect_lt(c.fed, 1000, "the source was read ahead: %ld", c.fed);
}

Test(pipeline, generator_error_after_its_results, .timeout = 30)
{
	struct counter c = { 0, 1000000, 50, 0 };
	shp_pipeline *p;
	size_t idx, k = 0;
	long v;
	int r;

	cr_assert_eq(shp_pipeline_create_gen(&p, count_up, &c, sizeof(long), 0),
	             0);
	cr_assert_eq(shp_pipeline_map(p, square, NULL, sizeof(long), 2, 2), 0);
	while ((r = shp_pipeline_next(p, &idx, &v, -1)) == 1) {
		cr_assert_eq(idx, k);
		cr_assert_eq(v, (long)(k * k));
		k++;
	}
	cr_expect_eq(k, 50, "the results before the error");
	cr_expect_eq(r, -EBADMSG);
	cr_expect_eq(shp_pipeline_next(p, &idx, &v, -1), -EBADMSG);
	shp_pipeline_free(p);
	expect_no_children();
}

static int timeout_at_5(void *in, void *arg)
{
	long *next = arg;

	if (*next == 5)
		return -ETIMEDOUT;
	*(long *)in = (*next)++;
	return 1;
}

/* A generator's -ETIMEDOUT is not the caller's timeout: it ends the
 * pipeline as -ETIME. */
Test(pipeline, generator_timeout_error_is_not_the_callers_timeout, .timeout = 30)
{
	shp_pipeline *p;
	long next = 0, v;
	size_t idx, k = 0;
	int r;

	cr_assert_eq(shp_pipeline_create_gen(&p, timeout_at_5, &next,
	                                     sizeof(long), 0), 0);
	cr_assert_eq(shp_pipeline_map(p, square, NULL, sizeof(long), 1, 2), 0);
	while ((r = shp_pipeline_next(p, &idx, &v, -1)) == 1) {
		cr_assert_eq(idx, k);
		cr_assert_eq(v, (long)(k * k));
		k++;
	}
	cr_expect_eq(k, 5);
	cr_expect_eq(r, -ETIME);
	cr_expect_eq(shp_pipeline_next(p, &idx, &v, 0), -ETIME);
	shp_pipeline_free(p);
	expect_no_children();
}

/* ------------------------------------------------------------ errors */

static int fail_at_777(const void *in, void *out, void *ctx)
{
	long x = *(const long *)in;

	(void)ctx;
	*(long *)out = x;
	return x == 777 ? 42 : 0;
}

Test(pipeline, stage_error_stops_with_the_item_index, .timeout = 30)
{
	size_t n = 100000, idx;
	long *in = longs(n), v;
	shp_pipeline *p;
	unsigned stage = 99;
	size_t at = 0;
	int status = 0, ws = -1, r;
	int64_t t0;

	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n, 0), 0);
	cr_assert_eq(shp_pipeline_map(p, plus_one, NULL, sizeof(long), 2, 4), 0);
	cr_assert_eq(shp_pipeline_map(p, fail_at_777, NULL, sizeof(long), 2, 4),
	             0);
	while ((r = shp_pipeline_next(p, &idx, &v, -1)) == 1)
		cr_assert_eq(v, (long)idx + 1);
	cr_expect_eq(r, SHP_ETASK);
	cr_assert_eq(shp_pipeline_error(p, &stage, &at, &status, &ws), 0);
	cr_expect_eq(stage, 1);
	cr_expect_eq(at, 776, "the item whose x + 1 is 777");
	cr_expect_eq(status, 42);
	cr_expect_eq(ws, 0);
	cr_expect_eq(shp_pipeline_next(p, &idx, &v, 0), SHP_ETASK, "not sticky");
	t0 = now_ns();
	shp_pipeline_free(p);
	cr_expect_lt(now_ns() - t0, slack(1000 * MS), "free waited for a stop");
	expect_no_children();
	free(in);
}

/* Keeps odd items, fails with 5 on 300. */
static int odd_but_300(const void *in, void *ctx)
{
	long x = *(const long *)in;

	(void)ctx;
	return x == 300 ? 5 : (int)(x & 1);
}

Test(pipeline, filter_error_and_each_error, .timeout = 30)
{
	size_t n = 1000, at = 0;
	long *in = longs(n);
	shp_pipeline *p;
	unsigned stage = 9;
	int status = 0;

	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n,
	                                 SHP_UNORDERED), 0);
	cr_assert_eq(shp_pipeline_filter(p, odd_but_300, NULL, 2, 2), 0);
	cr_expect_eq(shp_pipeline_run(p, -1), SHP_ETASK);
	cr_assert_eq(shp_pipeline_error(p, &stage, &at, &status, NULL), 0);
	cr_expect_eq(stage, 0);
	cr_expect_eq(at, 300);
	cr_expect_eq(status, 5);
	shp_pipeline_free(p);

	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n, 0), 0);
	cr_assert_eq(shp_pipeline_map(p, plus_one, NULL, sizeof(long), 1, 2), 0);
	cr_assert_eq(shp_pipeline_each(p, (shp_each_fn)odd_but_300, NULL, 2, 2),
	             0);
	/* each fails on anything but 0: 1 for odd x + 1, i.e. item 0. */
	cr_expect_eq(shp_pipeline_run(p, -1), SHP_ETASK);
	cr_assert_eq(shp_pipeline_error(p, &stage, &at, &status, NULL), 0);
	cr_expect_eq(stage, 1);
	cr_expect_eq(status, 1);
	cr_expect_eq(at % 2, 0, "item %zu: x + 1 is odd there", at);
	shp_pipeline_free(p);
	expect_no_children();
	free(in);
}

/* Stage workers publish their pid, then take their time. */
static pid_t *slow_pids;

static int slow(const void *in, void *out, void *ctx)
{
	long x = *(const long *)in;

	(void)ctx;
	slow_pids[x % 2] = getpid();
	sleep_ms(5);
	*(long *)out = x;
	return 0;
}

Test(pipeline, kill_9_of_a_stage_worker_stops_it_cleanly, .timeout = 60)
{
	size_t n = 100000, idx, last = 0;
	long *in = longs(n), v;
	shp_pipeline *p;
	unsigned stage = 99;
	size_t at = 0;
	int status = 0, ws = 0, r;
	pid_t victim;

	slow_pids = shared_map(2 * sizeof(pid_t));
	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n, 0), 0);
	cr_assert_eq(shp_pipeline_map(p, plus_one, NULL, sizeof(long), 1, 8), 0);
	cr_assert_eq(shp_pipeline_map(p, slow, NULL, sizeof(long), 2, 8), 0);
	for (int k = 0; k < 20; k++) {
		cr_assert_eq(shp_pipeline_next(p, &idx, &v, -1), 1);
		cr_assert_eq(idx, (size_t)k);
		cr_assert_eq(v, k + 1);
	}
	victim = slow_pids[0];
	cr_assert_gt(victim, 0);
	cr_assert_eq(kill(victim, SIGKILL), 0);
	while ((r = shp_pipeline_next(p, &idx, &v, slack(5000 * MS))) == 1) {
		cr_assert_eq(v, (long)idx + 1);
		last = idx;
	}
	cr_expect_eq(r, SHP_ECRASHED);
	cr_assert_eq(shp_pipeline_error(p, &stage, &at, &status, &ws), 0);
	cr_expect_eq(stage, 1);
	cr_expect_eq(status, SHP_ECRASHED);
	cr_expect(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	/* The item it was handling (its output may have gone out just
	 * before the kill), or none. */
	cr_expect(at == SIZE_MAX || (at >= 10 && at < n),
	          "item %zu, last out %zu", at, last);
	shp_pipeline_free(p);
	expect_no_children();
	munmap(slow_pids, 2 * sizeof(pid_t));
	free(in);
}

static int forever(const void *in, void *out, void *ctx)
	__attribute__((noreturn));

static int forever(const void *in, void *out, void *ctx)
{
	(void)in;
	(void)out;
	(void)ctx;
	for (;;)
		pause();
}

Test(pipeline, free_of_a_stuck_pipeline_kills_its_workers, .timeout = 30)
{
	long in[4] = { 1, 2, 3, 4 }, v;
	shp_pipeline *p;
	int64_t t0;

	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), 4, 0), 0);
	cr_assert_eq(shp_pipeline_map(p, forever, NULL, sizeof(long), 2, 2), 0);
	cr_expect_eq(shp_pipeline_next(p, NULL, &v, 100 * MS), -ETIMEDOUT);
	t0 = now_ns();
	shp_pipeline_free(p);
	cr_expect_lt(now_ns() - t0, slack(3000 * MS));
	expect_no_children();
}

/* A program that reaps every child itself, in a SIGCHLD handler. */
static void reap_all(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

Test(pipeline, workers_reaped_by_the_program_still_end_or_fail_cleanly, .timeout = 60)
{
	struct sigaction sa = { .sa_handler = reap_all,
		                .sa_flags = SA_RESTART };
	size_t n = 2000, idx, k = 0;
	long *in = longs(n), v;
	shp_pipeline *p;
	int r, ws = -1;

	cr_assert_eq(sigaction(SIGCHLD, &sa, NULL), 0);
	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n, 0), 0);
	cr_assert_eq(shp_pipeline_map(p, square, NULL, sizeof(long), 2, 4), 0);
	while ((r = shp_pipeline_next(p, &idx, &v, -1)) == 1) {
		cr_assert_eq(idx, k);
		cr_assert_eq(v, (long)(k * k));
		k++;
	}
	cr_expect_eq(r, 0);
	cr_expect_eq(k, n);
	shp_pipeline_free(p);

	slow_pids = shared_map(2 * sizeof(pid_t));
	cr_assert_eq(shp_pipeline_create(&p, in, sizeof(long), n, 0), 0);
	cr_assert_eq(shp_pipeline_map(p, slow, NULL, sizeof(long), 2, 4), 0);
	cr_assert_eq(shp_pipeline_next(p, &idx, &v, -1), 1);
	cr_assert_gt(slow_pids[0], 0);
	cr_assert_eq(kill(slow_pids[0], SIGKILL), 0);
	while ((r = shp_pipeline_next(p, &idx, &v, slack(5000 * MS))) == 1)
		;
	cr_expect_eq(r, SHP_ECRASHED);
	cr_assert_eq(shp_pipeline_error(p, NULL, NULL, NULL, &ws), 0);
	cr_expect_eq(ws, 0, "the status went to the program's handler");
	shp_pipeline_free(p);
	munmap(slow_pids, 2 * sizeof(pid_t));
	free(in);
}

/* The caller of a running pipeline is killed: its stage workers, which
 * nobody will stop now, leave on their own within a slice. */
Test(pipeline, caller_death_takes_the_workers_down, .timeout = 30)
{
	pid_t *pids = shared_map(3 * sizeof(pid_t)), caller;
	int ws;

	slow_pids = pids;
	caller = fork();
	cr_assert_geq(caller, 0);
	if (caller == 0) {
		long in[1000], v;
		shp_pipeline *p;

		for (int i = 0; i < 1000; i++)
			in[i] = i;
		if (shp_pipeline_create(&p, in, sizeof(long), 1000, 0) ||
		    shp_pipeline_map(p, slow, NULL, sizeof(long), 2, 4) ||
		    shp_pipeline_map(p, plus_one, NULL, sizeof(long), 1, 4) ||
		    shp_pipeline_next(p, NULL, &v, -1) != 1)
			_exit(1);
		pids[2] = 1;
		pause();
		_exit(0);
	}
	while (!uatomic_read(&pids[2]) || !pids[0] || !pids[1])
		sleep_ms(1);
	cr_assert_eq(kill(caller, SIGKILL), 0);
	cr_assert_eq(waitpid(caller, &ws, 0), caller);
	for (int i = 0; i < 2; i++) {
		int64_t t0 = now_ns();

		while (proc_alive(pids[i]) && now_ns() - t0 < slack(2000 * MS))
			sleep_ms(10);
		cr_expect_not(proc_alive(pids[i]),
		              "stage worker %d outlived its caller by 2 s",
		              (int)pids[i]);
	}
	munmap(pids, 3 * sizeof(pid_t));
}
