#define _GNU_SOURCE
/*
 * Streaming results: shp_imap, shp_imap_unordered, shp_imap_gen,
 * shp_iter_next and shp_iter_free.
 *
 * Tasks run in forked workers: what they report back to the test goes
 * through their output, their status, or memory that every process of the
 * pool shares (shp_alloc() memory, or a MAP_SHARED mapping made before the
 * pool). Generators run in the test's own process.
 *
 * Sections: 1. order and values; 2. element sizes and statuses;
 * 3. timeouts; 4. the generator form; 5. bounded memory and early free;
 * 6. close, join, terminate and bad arguments.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "procfs.h"
#include "shmpool.h"
#include "util.h"

/* Tasks an iterator may have in flight, and inputs a generator may have
 * produced, beyond the results taken so far. */
#define IN_FLIGHT_BOUND 4096

#define WATCHDOG_S 90

WATCHDOG_SUITE(iter, (unsigned)stretch_ms(WATCHDOG_S * 1000) / 1000);

static uint64_t *iota64(size_t n)
{
	uint64_t *v = malloc(n * sizeof(*v));

	cr_assert_not_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = i;
	return v;
}

/* The process's resident set, in KiB. */
static long vm_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kib = -1;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld", &kib) == 1)
			break;
	fclose(f);
	cr_assert_gt(kib, 0, "no VmRSS in /proc/self/status");
	return kib;
}

/*
 * Takes every result of an iterator over inputs 0..n-1 that must come in
 * index order, each with status 0 and output want(i) (a uint64_t), then
 * expects shp_iter_next to say the end (0), twice.
 */
static void drain_ordered(shp_iter *it, size_t n, uint64_t (*want)(uint64_t),
                          const char *what)
{
	size_t k = 0, idx = SIZE_MAX;
	const void *out = NULL;
	int st = -1, r;

	while ((r = shp_iter_next(it, &idx, &out, &st, -1)) == 1) {
		cr_assert_lt(k, n, "%s: more than %zu results", what, n);
		cr_assert_eq(idx, k, "%s: result %zu has index %zu", what, k, idx);
		cr_assert_not_null(out, "%s: result %zu: out NULL", what, k);
		cr_assert_eq(*(const uint64_t *)out, want(k),
		             "%s: result %zu = %" PRIu64 ", want %" PRIu64, what,
		             k, *(const uint64_t *)out, want(k));
		cr_assert_eq(st, 0, "%s: result %zu status %d", what, k, st);
		k++;
	}
	cr_expect_eq(r, 0, "%s: shp_iter_next ended with %d (%s)", what, r,
	             shp_strerror(r));
	cr_expect_eq(k, n, "%s: %zu results of %zu", what, k, n);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0,
	             "%s: the end is not sticky", what);
	cr_expect_eq(shp_iter_next(it, NULL, NULL, NULL, 0), 0,
	             "%s: the end is not sticky (poll)", what);
}

/* As drain_ordered, in any order: every index exactly once. */
static void drain_unordered(shp_iter *it, size_t n, uint64_t (*want)(uint64_t),
                            const char *what)
{
	unsigned char *seen = calloc(n, 1);
	size_t k = 0, idx = SIZE_MAX;
	const void *out = NULL;
	int st = -1, r;

	cr_assert_not_null(seen);
	while ((r = shp_iter_next(it, &idx, &out, &st, -1)) == 1) {
		cr_assert_lt(k, n, "%s: more than %zu results", what, n);
		cr_assert_lt(idx, n, "%s: result %zu has index %zu", what, k, idx);
		cr_assert_eq(seen[idx], 0, "%s: index %zu yielded twice", what,
		             idx);
		seen[idx] = 1;
		cr_assert_not_null(out, "%s: index %zu: out NULL", what, idx);
		cr_assert_eq(*(const uint64_t *)out, want(idx),
		             "%s: index %zu = %" PRIu64 ", want %" PRIu64, what,
		             idx, *(const uint64_t *)out, want(idx));
		cr_assert_eq(st, 0, "%s: index %zu status %d", what, idx, st);
		k++;
	}
	cr_expect_eq(r, 0, "%s: shp_iter_next ended with %d (%s)", what, r,
	             shp_strerror(r));
	cr_expect_eq(k, n, "%s: %zu results of %zu", what, k, n);
	for (size_t i = 0; i < n; i++)
		if (!seen[i]) {
			cr_expect_fail("%s: index %zu never yielded", what, i);
			break;
		}
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0,
	             "%s: the end is not sticky", what);
	free(seen);
}

/* ================================================ 1. order and values */

Test(iter, seed_cube_imap, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	const long in[6] = { 1, 2, 3, 4, 5, 6 };
	const long want[6] = { 1, 8, 27, 64, 125, 216 };
	shp_iter *it = NULL;
	size_t idx;
	const void *out;
	int st;

	cr_assert_eq(shp_imap(p, cube, NULL, in, sizeof(long), 6, sizeof(long),
	                      0, &it), 0);
	cr_assert_not_null(it);
	for (size_t k = 0; k < 6; k++) {
		idx = SIZE_MAX;
		out = NULL;
		st = -1;
		cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1,
		             "result %zu", k);
		cr_expect_eq(idx, k);
		cr_assert_not_null(out);
		cr_expect_eq(*(const long *)out, want[k], "result %zu = %ld", k,
		             *(const long *)out);
		cr_expect_eq(st, 0);
	}
	for (int again = 0; again < 3; again++)
		cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 0), 0);
	shp_iter_free(it);

	/* index, out and status may each be NULL. */
	cr_assert_eq(shp_imap(p, cube, NULL, in, sizeof(long), 6, sizeof(long),
	                      1, &it), 0);
	for (size_t k = 0; k < 6; k++) {
		out = NULL;
		cr_assert_eq(shp_iter_next(it, NULL, &out, NULL, -1), 1);
		cr_expect_eq(*(const long *)out, want[k]);
	}
	cr_expect_eq(shp_iter_next(it, NULL, NULL, NULL, -1), 0);
	shp_iter_free(it);
	destroy_clean(p);
}

/* ctx: a completion counter and each task's completion rank, in the arena. */
struct order {
	uint64_t counter;
	uint64_t *rank;
};

static uint64_t jitter_want(uint64_t x)
{
	return mix(x) ^ 0x5555;
}

static int jittery(const void *in, void *out, void *ctx)
{
	struct order *o = ctx;
	uint64_t x = *(const uint64_t *)in;

	/* A few busy spins of 0-200 µs, and now and then a sleep: a
	 * sleeping task gives up its core, so the other worker overtakes it
	 * even on a loaded machine. */
	if (mix(x) % 64 == 0)
		spin_ns((long)(mix(x + 1) % 200000));
	if (mix(x) % 1024 == 1)
		sleep_ms(1);
	*(uint64_t *)out = jitter_want(x);
	o->rank[x] = __atomic_fetch_add(&o->counter, 1, __ATOMIC_RELAXED);
	return 0;
}

/*
 * An imap (unordered: an imap_unordered) of jittery over inputs 0 .. n-1 at
 * chunksizes 1, 0 and 16, each read to the end by drain_ordered (or
 * drain_unordered). Returns how many times a task finished before the task
 * of the index below it, over the three.
 */
static size_t jittery_maps(size_t n, bool unordered)
{
	const size_t chunks[3] = { 1, 0, 16 };
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = iota64(n);
	struct order *o = shp_alloc(p, sizeof(*o));
	size_t inversions = 0;

	cr_assert_not_null(o);
	o->rank = shp_alloc(p, n * sizeof(uint64_t));
	cr_assert_not_null(o->rank);
	for (int c = 0; c < 3; c++) {
		shp_iter *it = NULL;
		char what[32];

		snprintf(what, sizeof(what), "%schunksize %zu",
		         unordered ? "unordered " : "", chunks[c]);
		o->counter = 0;
		if (unordered) {
			cr_assert_eq(shp_imap_unordered(p, jittery, o, in,
			                                sizeof(uint64_t), n,
			                                sizeof(uint64_t), chunks[c],
			                                &it), 0);
			drain_unordered(it, n, jitter_want, what);
		} else {
			cr_assert_eq(shp_imap(p, jittery, o, in, sizeof(uint64_t),
			                      n, sizeof(uint64_t), chunks[c], &it),
			             0);
			drain_ordered(it, n, jitter_want, what);
		}
		shp_iter_free(it);
		cr_expect_eq(o->counter, n, "%s: %" PRIu64 " tasks ran", what,
		             o->counter);
		for (size_t i = 1; i < n; i++)
			inversions += o->rank[i] < o->rank[i - 1];
	}
	shp_free(p, o->rank);
	shp_free(p, o);
	free(in);
	destroy_clean(p);
	return inversions;
}

Test(iter, imap_keeps_input_order_under_random_durations, .timeout = 60)
{
	/* The test means something only if tasks finished out of order. */
	cr_expect_gt(jittery_maps(20000, false), 0,
	             "no task ever finished out of order");
}

Test(iter, imap_unordered_yields_each_index_once, .timeout = 60)
{
	jittery_maps(20000, true);
}

static uint64_t square_plus_one(uint64_t x)
{
	return x * x + 1;
}

/* Task 0 sleeps 200 ms, the others are quick. */
static int zero_is_slow(const void *in, void *out, void *ctx)
{
	uint64_t x = *(const uint64_t *)in;

	(void)ctx;
	if (x == 0)
		sleep_ms(stretch_ms(200));
	*(uint64_t *)out = square_plus_one(x);
	return 0;
}

/* Takes n results of a completion-order iterator whose task 0 is slow:
 * every index once, and index 0 not first. */
static void expect_completion_order(shp_iter *it, size_t n, const char *what)
{
	unsigned char seen[64] = { 0 };
	size_t idx = SIZE_MAX, first = SIZE_MAX, zero_at = SIZE_MAX;
	const void *out;
	int st;

	cr_assert_leq(n, sizeof(seen));
	for (size_t k = 0; k < n; k++) {
		cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1,
		             "%s: result %zu", what, k);
		cr_assert_lt(idx, n);
		cr_assert_eq(seen[idx], 0, "%s: index %zu twice", what, idx);
		seen[idx] = 1;
		cr_expect_eq(*(const uint64_t *)out, square_plus_one(idx));
		cr_expect_eq(st, 0);
		if (k == 0)
			first = idx;
		if (idx == 0)
			zero_at = k;
	}
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0);
	cr_expect_neq(first, 0, "%s: the slow task 0 came first: the results "
	              "are not in completion order", what);
	/* 63 quick tasks on the other worker take far less than 200 ms. */
	cr_expect_geq(zero_at, n / 2, "%s: the slow task 0 came %zu-th of %zu",
	              what, zero_at, n);
}

Test(iter, imap_unordered_follows_completion_order, .timeout = 20)
{
	const size_t n = 64;
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = iota64(n);
	shp_iter *it = NULL;

	cr_assert_eq(shp_imap_unordered(p, zero_is_slow, NULL, in,
	                                sizeof(uint64_t), n, sizeof(uint64_t), 1,
	                                &it), 0);
	expect_completion_order(it, n, "imap_unordered");
	shp_iter_free(it);
	free(in);
	destroy_clean(p);
}

/* Several iterators of one pool, open at once and read in turn. */
static uint64_t twice_want(uint64_t x)
{
	return 2 * x;
}

static int twice64(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(uint64_t *)out = twice_want(*(const uint64_t *)in);
	return 0;
}

static uint64_t odd_want(uint64_t x)
{
	return 2 * x + 1;
}

static int odd64(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(uint64_t *)out = odd_want(*(const uint64_t *)in);
	return 0;
}

static uint64_t thrice(uint64_t x)
{
	return 3 * x;
}

static int thrice64(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(uint64_t *)out = thrice(*(const uint64_t *)in);
	return 0;
}

/* A map and an imap of the pool work (after something that could have
 * kept its resources). */
static void expect_pool_works(shp_pool *p, const char *when)
{
	const size_t n = 20000;
	uint64_t *in = iota64(n), *out = malloc(n * sizeof(uint64_t));
	shp_iter *it = NULL;

	cr_assert_not_null(out);
	cr_expect_eq(shp_map(p, thrice64, NULL, in, sizeof(uint64_t), out,
	                     sizeof(uint64_t), n, 0, NULL), 0, "map %s", when);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(out[i], 3 * i, "map %s: out[%zu]", when, i);
	cr_assert_eq(shp_imap(p, thrice64, NULL, in, sizeof(uint64_t), n,
	                      sizeof(uint64_t), 0, &it), 0, "imap %s", when);
	drain_ordered(it, n, thrice, when);
	shp_iter_free(it);
	free(in);
	free(out);
}

/* Generator state: inputs 0, 1, ... n-1, then fail (0 or an error). */
struct counter {
	uint64_t next, n;
	uint64_t calls;
	int fail;
};

static int count_gen(void *in, void *arg)
{
	struct counter *c = arg;

	c->calls++;
	if (c->next >= c->n)
		return c->fail;
	memcpy(in, &c->next, sizeof(c->next));
	c->next++;
	return 1;
}

/*
 * Unless *end: takes the next result of it, waiting for it. Returns 1 with a
 * result; else it ended, which must be the end (0), and *end is set.
 */
static int next_until_end(shp_iter *it, bool *end, size_t *idx,
                          const void **out, int *st, const char *name)
{
	int r;

	if (*end)
		return 0;
	r = shp_iter_next(it, idx, out, st, -1);
	if (r == 1)
		return 1;
	cr_expect_eq(r, 0, "%s ended with %d", name, r);
	*end = true;
	return 0;
}

/*
 * Three iterators of one pool, all open before any result is read, read in
 * turn: an ordered imap, an imap_unordered and an imap_gen (its length
 * unknown). Each is read only by this thread, so none may wait for another
 * to move.
 */
static void three_iterators(size_t n)
{
	shp_pool *p = pool_of(2, 0);
	long *a_in = malloc(n * sizeof(long));
	uint64_t *b_in = iota64(n);
	struct counter g = { .n = n };
	shp_iter *a = NULL, *b = NULL, *c = NULL;
	unsigned char *b_seen = calloc(n, 1);
	size_t ka = 0, kb = 0, kc = 0;
	bool a_end = false, b_end = false, c_end = false;

	cr_assert_not_null(a_in);
	cr_assert_not_null(b_seen);
	for (size_t i = 0; i < n; i++)
		a_in[i] = (long)i - 5000;
	cr_assert_eq(shp_imap(p, cube, NULL, a_in, sizeof(long), n, sizeof(long),
	                      0, &a), 0);
	cr_assert_eq(shp_imap_unordered(p, twice64, NULL, b_in, sizeof(uint64_t),
	                                n, sizeof(uint64_t), 1, &b), 0);
	cr_assert_eq(shp_imap_gen(p, odd64, NULL, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t), 0, NULL, &c),
	             0);
	while (!a_end || !b_end || !c_end) {
		size_t idx;
		const void *out;
		int st;

		if (next_until_end(a, &a_end, &idx, &out, &st, "a")) {
			long x = (long)ka - 5000;

			cr_assert_eq(idx, ka);
			cr_assert_eq(*(const long *)out, x * x * x, "a: result %zu",
			             ka);
			cr_assert_eq(st, 0);
			ka++;
		}
		if (next_until_end(b, &b_end, &idx, &out, &st, "b")) {
			cr_assert_lt(idx, n);
			cr_assert_eq(b_seen[idx], 0, "b: %zu twice", idx);
			b_seen[idx] = 1;
			cr_assert_eq(*(const uint64_t *)out, 2 * idx);
			cr_assert_eq(st, 0);
			kb++;
		}
		if (next_until_end(c, &c_end, &idx, &out, &st, "c")) {
			cr_assert_eq(idx, kc);
			cr_assert_eq(*(const uint64_t *)out, 2 * kc + 1,
			             "c: result %zu", kc);
			cr_assert_eq(st, 0);
			kc++;
		}
	}
	cr_expect_eq(ka, n);
	cr_expect_eq(kb, n);
	cr_expect_eq(kc, n);
	shp_iter_free(a);
	shp_iter_free(b);
	shp_iter_free(c);
	free(a_in);
	free(b_in);
	free(b_seen);
	destroy_clean(p);
}

/* Short iterators: each window is the whole of it. */
Test(iter, three_short_iterators_open_at_once, .timeout = 30)
{
	three_iterators(500);
}

/* Long iterators: each wants the largest window there is. */
Test(iter, three_iterators_open_at_once, .timeout = 30)
{
	three_iterators(10000);
}

/* A map (and an apply) from the thread that holds two long iterators
 * open: the iterators move only when read, so the map must not wait for
 * them. */
Test(iter, map_while_iterators_are_open, .timeout = 30)
{
	const size_t n = 100000, m = 10000;
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = iota64(n), *out = malloc(m * sizeof(uint64_t));
	uint64_t x = 21, y = 0;
	shp_iter *a = NULL, *b = NULL;
	size_t idx;
	const void *o;
	int st;

	cr_assert_not_null(out);
	cr_assert_eq(shp_imap(p, odd64, NULL, in, sizeof(uint64_t), n,
	                      sizeof(uint64_t), 0, &a), 0);
	cr_assert_eq(shp_imap_unordered(p, odd64, NULL, in, sizeof(uint64_t), n,
	                                sizeof(uint64_t), 0, &b), 0);
	cr_assert_eq(shp_iter_next(a, &idx, &o, &st, -1), 1);
	cr_expect_eq(idx, 0);
	cr_expect_eq(*(const uint64_t *)o, 1);
	cr_assert_eq(shp_iter_next(b, &idx, &o, &st, -1), 1);
	cr_expect_eq(*(const uint64_t *)o, 2 * idx + 1);
	cr_assert_eq(shp_map(p, thrice64, NULL, in, sizeof(uint64_t), out,
	                     sizeof(uint64_t), m, 0, NULL), 0);
	for (size_t i = 0; i < m; i++)
		cr_assert_eq(out[i], 3 * i, "out[%zu]", i);
	cr_expect_eq(shp_apply(p, thrice64, NULL, &x, sizeof(x), &y,
	                       sizeof(y)), 0);
	cr_expect_eq(y, 63);
	shp_iter_free(a);
	shp_iter_free(b);
	free(in);
	free(out);
	destroy_clean(p);
}

/*
 * As many long iterators as the pool takes ("about 50 fit"), then -EAGAIN
 * rather than a wait: each yields its own results, a map still runs from
 * the same thread, and freeing one makes room for another.
 */
#define MANY_MAX 200

Test(iter, many_iterators_open_at_once, .timeout = 60)
{
	const size_t n = 100000, m = 10000;
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = iota64(n), *out = malloc(m * sizeof(uint64_t));
	static shp_iter *its[MANY_MAX];
	size_t open = 0, idx;
	const void *o;
	int st, r = 0;

	cr_assert_not_null(out);
	while (open < MANY_MAX) {
		r = shp_imap(p, odd64, NULL, in, sizeof(uint64_t), n,
		             sizeof(uint64_t), 0, &its[open]);
		if (r != 0)
			break;
		open++;
	}
	if (open < MANY_MAX)
		cr_expect_eq(r, -EAGAIN, "opening iterator %zu gave %d (%s)",
		             open, r, shp_strerror(r));
	cr_expect_geq(open, 40, "only %zu iterators fit", open);
	cr_assert_gt(open, 0);
	/* A map still finds room. */
	cr_assert_eq(shp_map(p, thrice64, NULL, in, sizeof(uint64_t), out,
	                     sizeof(uint64_t), m, 0, NULL), 0);
	for (size_t i = 0; i < m; i++)
		cr_assert_eq(out[i], 3 * i, "out[%zu]", i);
	/* Read in turn. */
	for (size_t k = 0; k < 1000; k++)
		for (size_t j = 0; j < open; j++) {
			cr_assert_eq(shp_iter_next(its[j], &idx, &o, &st, -1), 1,
			             "iterator %zu result %zu", j, k);
			cr_assert_eq(idx, k, "iterator %zu", j);
			cr_assert_eq(*(const uint64_t *)o, 2 * k + 1);
			cr_assert_eq(st, 0);
		}
	/* Freeing one makes room for another. */
	shp_iter_free(its[open - 1]);
	cr_assert_eq(shp_imap(p, odd64, NULL, in, sizeof(uint64_t), n,
	                      sizeof(uint64_t), 0, &its[open - 1]), 0);
	for (size_t k = 0; k < 100; k++) {
		cr_assert_eq(shp_iter_next(its[open - 1], &idx, &o, &st, -1), 1);
		cr_assert_eq(idx, k);
		cr_assert_eq(*(const uint64_t *)o, 2 * k + 1);
	}
	for (size_t j = 0; j < open; j++)
		shp_iter_free(its[j]);
	expect_pool_works(p, "after many iterators");
	free(in);
	free(out);
	destroy_clean(p);
}

/* Inputs in shp_alloc() memory (used in place rather than copied). */
Test(iter, imap_over_arena_inputs, .timeout = 20)
{
	const size_t n = 30000;
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = shp_alloc(p, n * sizeof(uint64_t));
	shp_iter *it = NULL;

	cr_assert_not_null(in);
	for (size_t i = 0; i < n; i++)
		in[i] = i;
	cr_assert_eq(shp_imap(p, odd64, NULL, in, sizeof(uint64_t), n,
	                      sizeof(uint64_t), 0, &it), 0);
	drain_ordered(it, n, odd_want, "arena inputs");
	shp_iter_free(it);
	cr_assert_eq(shp_imap_unordered(p, odd64, NULL, in, sizeof(uint64_t), n,
	                                sizeof(uint64_t), 0, &it), 0);
	drain_unordered(it, n, odd_want, "arena inputs, unordered");
	shp_iter_free(it);
	shp_free(p, in);
	destroy_clean(p);
}

/* ===================================== 2. element sizes and statuses */

#define BIG 4096

static int big_reverse(const void *in, void *out, void *ctx)
{
	const unsigned char *a = in;
	unsigned char *b = out;

	(void)ctx;
	for (size_t i = 0; i < BIG; i++)
		b[i] = (unsigned char)(a[BIG - 1 - i] ^ 0xa5);
	return 0;
}

/* Every byte of result idx of big_reverse over in. */
static void expect_reversed(const unsigned char *in, size_t idx,
                            const void *out, const char *what)
{
	const unsigned char *o = out;

	cr_assert_not_null(o, "%s: element %zu: out NULL", what, idx);
	for (size_t i = 0; i < BIG; i++)
		if (o[i] != (unsigned char)(in[idx * BIG + BIG - 1 - i] ^ 0xa5))
			cr_assert_fail("%s: element %zu byte %zu = %u", what, idx,
			               i, o[i]);
}

Test(iter, four_kib_elements_through_the_arena, .timeout = 60)
{
	const size_t n = 3000;
	struct shp_pool_options opt = { .workers = 2, .arena_bytes = 32u << 20 };
	unsigned char *in = malloc(n * BIG), *seen = calloc(n, 1);
	shp_pool *p;
	shp_iter *it = NULL;
	size_t idx, k;
	const void *out;
	int st, r;

	cr_assert_not_null(in);
	cr_assert_not_null(seen);
	cr_assert_eq(shp_pool_create(&p, &opt), 0);
	for (size_t i = 0; i < n * BIG; i++)
		in[i] = (unsigned char)mix(i);

	for (size_t chunk = 0; chunk <= 1; chunk++) {
		cr_assert_eq(shp_imap(p, big_reverse, NULL, in, BIG, n, BIG, chunk,
		                      &it), 0);
		for (k = 0; (r = shp_iter_next(it, &idx, &out, &st, -1)) == 1; k++) {
			cr_assert_eq(idx, k, "chunk %zu", chunk);
			cr_assert_eq(st, 0);
			expect_reversed(in, idx, out, "imap");
		}
		cr_expect_eq(r, 0);
		cr_expect_eq(k, n);
		shp_iter_free(it);
	}

	cr_assert_eq(shp_imap_unordered(p, big_reverse, NULL, in, BIG, n, BIG, 0,
	                                &it), 0);
	for (k = 0; (r = shp_iter_next(it, &idx, &out, &st, -1)) == 1; k++) {
		cr_assert_lt(idx, n);
		cr_assert_eq(seen[idx], 0, "index %zu twice", idx);
		seen[idx] = 1;
		cr_assert_eq(st, 0);
		expect_reversed(in, idx, out, "imap_unordered");
	}
	cr_expect_eq(r, 0);
	cr_expect_eq(k, n);
	shp_iter_free(it);
	free(in);
	free(seen);
	destroy_clean(p);
}

static int status_mod5(const void *in, void *out, void *ctx)
{
	(void)ctx;
	if (out != NULL)
		abort(); /* shows as SHP_ECRASHED */
	return (int)(*(const uint64_t *)in % 5);
}

Test(iter, out_size_zero_gives_null_and_statuses, .timeout = 20)
{
	const size_t n = 1000;
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = iota64(n);
	unsigned char seen[1000] = { 0 };
	static const int sentinel = 7;
	shp_iter *it = NULL;
	size_t idx, k;
	const void *out;
	int st, r;

	cr_assert_eq(shp_imap(p, status_mod5, NULL, in, sizeof(uint64_t), n, 0,
	                      0, &it), 0);
	for (k = 0;; k++) {
		out = &sentinel;
		st = -1;
		if ((r = shp_iter_next(it, &idx, &out, &st, -1)) != 1)
			break;
		cr_assert_eq(idx, k);
		cr_assert_null(out, "result %zu: out not NULL with out_size 0", k);
		cr_assert_eq(st, (int)(k % 5), "result %zu status %d", k, st);
	}
	cr_expect_eq(r, 0);
	cr_expect_eq(k, n);
	shp_iter_free(it);

	cr_assert_eq(shp_imap_unordered(p, status_mod5, NULL, in,
	                                sizeof(uint64_t), n, 0, 3, &it), 0);
	for (k = 0;; k++) {
		out = &sentinel;
		st = -1;
		if ((r = shp_iter_next(it, &idx, &out, &st, -1)) != 1)
			break;
		cr_assert_lt(idx, n);
		cr_assert_eq(seen[idx], 0);
		seen[idx] = 1;
		cr_assert_null(out);
		cr_assert_eq(st, (int)(idx % 5), "index %zu status %d", idx, st);
	}
	cr_expect_eq(r, 0);
	cr_expect_eq(k, n);
	shp_iter_free(it);
	free(in);
	destroy_clean(p);
}

static int no_input(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(uint64_t *)out = in == NULL ? 42 : 1;
	return 0;
}

static uint64_t forty_two(uint64_t x)
{
	(void)x;
	return 42;
}

Test(iter, in_size_zero_gives_null_input, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	shp_iter *it = NULL;

	cr_assert_eq(shp_imap(p, no_input, NULL, NULL, 0, 100, sizeof(uint64_t),
	                      0, &it), 0);
	drain_ordered(it, 100, forty_two, "in_size 0");
	shp_iter_free(it);
	destroy_clean(p);
}

Test(iter, n_zero_ends_at_once, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	uint64_t in[1] = { 3 };
	shp_iter *it = NULL;
	size_t idx;
	const void *out;
	int st;

	cr_assert_eq(shp_imap(p, twice64, NULL, in, sizeof(uint64_t), 0,
	                      sizeof(uint64_t), 0, &it), 0);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 0), 0);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0);
	shp_iter_free(it);
	cr_assert_eq(shp_imap_unordered(p, twice64, NULL, in, sizeof(uint64_t), 0,
	                                sizeof(uint64_t), 0, &it), 0);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0);
	shp_iter_free(it);
	destroy_clean(p);
}

static int fail_some_want(int i)
{
	return i % 5 == 0 ? i % 7 + 1 : i % 11 == 0 ? SHP_ETASK : 0;
}

Test(iter, task_failures_give_statuses_and_iteration_goes_on, .timeout = 20)
{
	const size_t n = 1000;
	shp_pool *p = pool_of(2, 0);
	int in[1000];
	unsigned char seen[1000] = { 0 };
	shp_iter *it = NULL;
	size_t idx, k;
	const void *out;
	int st, r;

	for (size_t i = 0; i < n; i++)
		in[i] = (int)i;
	cr_assert_eq(shp_imap(p, fail_some, NULL, in, sizeof(int), n, sizeof(int),
	                      0, &it), 0);
	for (k = 0; (r = shp_iter_next(it, &idx, &out, &st, -1)) == 1; k++) {
		cr_assert_eq(idx, k);
		cr_expect_eq(st, fail_some_want((int)k), "status[%zu] = %d", k, st);
		cr_expect_eq(*(const int *)out, (int)k + 1, "out[%zu]", k);
	}
	cr_expect_eq(r, 0, "ended with %d", r);
	cr_expect_eq(k, n);
	shp_iter_free(it);

	cr_assert_eq(shp_imap_unordered(p, fail_some, NULL, in, sizeof(int), n,
	                                sizeof(int), 3, &it), 0);
	for (k = 0; (r = shp_iter_next(it, &idx, &out, &st, -1)) == 1; k++) {
		cr_assert_lt(idx, n);
		cr_assert_eq(seen[idx], 0);
		seen[idx] = 1;
		cr_expect_eq(st, fail_some_want((int)idx), "status[%zu] = %d", idx,
		             st);
		cr_expect_eq(*(const int *)out, (int)idx + 1);
	}
	cr_expect_eq(r, 0, "ended with %d", r);
	cr_expect_eq(k, n);
	shp_iter_free(it);
	destroy_clean(p);
}

Test(iter, crashed_task_reports_crashed_and_iteration_goes_on, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	int in[40];
	shp_iter *it = NULL;
	size_t idx, k;
	const void *out;
	int st, r;

	for (int i = 0; i < 40; i++)
		in[i] = i;
	for (size_t chunk = 1; chunk <= 8; chunk *= 8) {
		cr_assert_eq(shp_imap(p, crash_on_five, NULL, in, sizeof(int), 40,
		                      sizeof(int), chunk, &it), 0);
		for (k = 0; (r = shp_iter_next(it, &idx, &out, &st, -1)) == 1;
		     k++) {
			cr_assert_eq(idx, k);
			if (k == 5 || k == 9) {
				cr_expect_eq(st, SHP_ECRASHED, "chunk %zu st[%zu]=%d",
				             chunk, k, st);
				continue;
			}
			cr_expect_eq(st, 0, "chunk %zu st[%zu]=%d", chunk, k, st);
			cr_expect_eq(*(const int *)out, (int)k * 10);
		}
		cr_expect_eq(r, 0, "chunk %zu: ended with %d", chunk, r);
		cr_expect_eq(k, 40);
		shp_iter_free(it);
	}
	destroy_clean(p);
}

/* ======================================================== 3. timeouts */

/* Sleeps its input in ms; out = input + 1. */
static int sleep_in_ms(const void *in, void *out, void *ctx)
{
	uint64_t ms = *(const uint64_t *)in;

	(void)ctx;
	sleep_ms((long)ms);
	*(uint64_t *)out = ms + 1;
	return 0;
}

Test(iter, next_times_out_and_the_iterator_recovers, .timeout = 20)
{
	/* Task 0 sleeps 300 ms, task 3 600 ms; the quick ones run on the
	 * other worker meanwhile. */
	const uint64_t in[4] = { (uint64_t)stretch_ms(300), 0, 0,
	                         (uint64_t)stretch_ms(600) };
	shp_pool *p = pool_of(2, 0);
	shp_iter *it = NULL;
	size_t idx = SIZE_MAX;
	const void *out = NULL;
	int st = -1;
	int64_t t0, t;

	cr_assert_eq(shp_imap(p, sleep_in_ms, NULL, in, sizeof(uint64_t), 4,
	                      sizeof(uint64_t), 1, &it), 0);
	t0 = now_ns();
	/* A poll does not wait. */
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 0), -ETIMEDOUT);
	cr_expect_lt(now_ns() - t0, slack(100 * MS), "a poll waited %" PRId64
	             " ms", (now_ns() - t0) / MS);
	t = now_ns();
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 10 * MS), -ETIMEDOUT);
	t = now_ns() - t;
	cr_expect_geq(t, 9 * MS, "a 10 ms timeout returned after %" PRId64 " us",
	              t / 1000);
	cr_expect_lt(t, slack(200 * MS), "a 10 ms timeout took %" PRId64 " ms",
	             t / MS);
	/* The iterator goes on where it was. */
	cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1);
	cr_expect_eq(idx, 0);
	cr_expect_eq(*(const uint64_t *)out, in[0] + 1);
	cr_expect_eq(st, 0);
	cr_expect_geq(now_ns() - t0, 250 * MS, "task 0 came before its sleep");
	/* Tasks 1 and 2 are done by now: a poll takes them. */
	sleep_ms(stretch_ms(50));
	for (size_t k = 1; k <= 2; k++) {
		cr_assert_eq(shp_iter_next(it, &idx, &out, &st, 0), 1,
		             "a poll missed done task %zu", k);
		cr_expect_eq(idx, k);
		cr_expect_eq(*(const uint64_t *)out, 1);
		cr_expect_eq(st, 0);
	}
	/* Task 3 still sleeps. */
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 0), -ETIMEDOUT);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 5 * MS), -ETIMEDOUT);
	cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1);
	cr_expect_eq(idx, 3);
	cr_expect_eq(*(const uint64_t *)out, in[3] + 1);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 0), 0);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0);
	shp_iter_free(it);
	destroy_clean(p);
}

Test(iter, unordered_next_times_out_and_recovers, .timeout = 20)
{
	const uint64_t in[2] = { (uint64_t)stretch_ms(300), 0 };
	shp_pool *p = pool_of(2, 0);
	shp_iter *it = NULL;
	size_t idx = SIZE_MAX;
	const void *out = NULL;
	int st = -1;
	int64_t t;

	cr_assert_eq(shp_imap_unordered(p, sleep_in_ms, NULL, in,
	                                sizeof(uint64_t), 2, sizeof(uint64_t), 1,
	                                &it), 0);
	cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1);
	cr_expect_eq(idx, 1);
	cr_expect_eq(*(const uint64_t *)out, 1);
	t = now_ns();
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 10 * MS), -ETIMEDOUT);
	t = now_ns() - t;
	cr_expect_geq(t, 9 * MS);
	cr_expect_lt(t, slack(200 * MS));
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 0), -ETIMEDOUT);
	cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1);
	cr_expect_eq(idx, 0);
	cr_expect_eq(*(const uint64_t *)out, in[0] + 1);
	cr_expect_eq(st, 0);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0);
	shp_iter_free(it);
	destroy_clean(p);
}

/* ============================================ 4. the generator form */

Test(iter, gen_ten_million_in_order_in_constant_memory, .timeout = 80)
{
	const size_t n = scaled(10000000);
	const size_t sample = n / 10 < 100000 ? n / 10 : 100000;
	shp_pool *p = pool_of(2, 0);
	struct counter g = { .n = n };
	shp_iter *it = NULL;
	size_t idx = 0, k = 0, bad = 0, bad_at = 0, ahead = 0, bad_idx = 0;
	uint64_t bad_out = 0;
	const void *out;
	int st = 0, bad_st = 0, r;
	long rss0 = 0, rss1;

	cr_assert_eq(shp_imap_gen(p, odd64, NULL, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t), 0, NULL,
	                          &it), 0);
	while ((r = shp_iter_next(it, &idx, &out, &st, -1)) == 1) {
		uint64_t v = out ? *(const uint64_t *)out : UINT64_MAX;

		if (idx != k || v != 2 * (uint64_t)k + 1 || st != 0) {
			if (bad++ == 0) {
				bad_at = k;
				bad_idx = idx;
				bad_out = v;
				bad_st = st;
			}
		}
		k++;
		/* The generator runs only as far as the window. */
		if (g.next > k + IN_FLIGHT_BOUND)
			ahead++;
		if (k == sample)
			rss0 = vm_rss_kib();
	}
	rss1 = vm_rss_kib();
	cr_expect_eq(r, 0, "ended with %d (%s)", r, shp_strerror(r));
	cr_expect_eq(k, n, "%zu results of %zu", k, n);
	cr_expect_eq(bad, 0, "%zu wrong results; first: result %zu index %zu "
	             "out %" PRIu64 " status %d", bad, bad_at, bad_idx, bad_out,
	             bad_st);
	cr_expect_eq(ahead, 0, "the generator ran more than %d inputs ahead %zu "
	             "times", IN_FLIGHT_BOUND, ahead);
	cr_expect_eq(g.next, n);
	cr_expect_lt(rss1 - rss0, 8 * 1024, "VmRSS grew from %ld to %ld KiB",
	             rss0, rss1);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0);
	shp_iter_free(it);
	destroy_clean(p);
}

/*
 * An imap_gen of odd64 over inputs 0 .. n-1 (count_gen), with flags and
 * opt, read to the end by drain_ordered, or by drain_unordered for
 * SHP_UNORDERED. Returns the inputs the generator gave.
 */
static uint64_t drain_odd_gen(shp_pool *p, size_t n, unsigned flags,
                              const struct shp_call_options *opt,
                              const char *what)
{
	struct counter g = { .n = n };
	shp_iter *it = NULL;

	cr_assert_eq(shp_imap_gen(p, odd64, NULL, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t), flags, opt,
	                          &it), 0);
	if (flags & SHP_UNORDERED)
		drain_unordered(it, n, odd_want, what);
	else
		drain_ordered(it, n, odd_want, what);
	shp_iter_free(it);
	return g.next;
}

Test(iter, gen_unordered_each_index_once, .timeout = 60)
{
	const size_t n = 100000;
	shp_pool *p = pool_of(2, 0);
	struct counter g;
	struct shp_call_options opt = { .chunksize = 7 };
	shp_iter *it = NULL;

	cr_expect_eq(drain_odd_gen(p, n, SHP_UNORDERED, NULL, "gen unordered"),
	             n);
	drain_odd_gen(p, n, SHP_UNORDERED, &opt, "gen unordered, chunksize 7");

	/* Completion order: the slow task 0 is not first. */
	g = (struct counter){ .n = 64 };
	cr_assert_eq(shp_imap_gen(p, zero_is_slow, NULL, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t),
	                          SHP_UNORDERED, &(struct shp_call_options){
	                                  .chunksize = 1 }, &it), 0);
	expect_completion_order(it, 64, "gen unordered");
	shp_iter_free(it);
	destroy_clean(p);
}

Test(iter, gen_ordered_with_options, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	struct shp_call_options opt = { .chunksize = 5 };

	drain_odd_gen(p, 50000, 0, &opt, "gen chunksize 5");
	destroy_clean(p);
}

/* A task that counts its runs in a shared counter. */
static int count_runs(const void *in, void *out, void *ctx)
{
	__atomic_fetch_add((uint64_t *)ctx, 1, __ATOMIC_RELAXED);
	*(uint64_t *)out = *(const uint64_t *)in;
	return 0;
}

Test(iter, gen_empty_ends_at_once, .timeout = 20)
{
	uint64_t *runs = shared_map(sizeof(uint64_t));
	shp_pool *p = pool_of(2, 0);

	for (unsigned flags = 0; flags <= SHP_UNORDERED; flags++) {
		struct counter g = { .n = 0 };
		shp_iter *it = NULL;
		size_t idx;
		const void *out;
		int st;
		int64_t t;

		cr_assert_eq(shp_imap_gen(p, count_runs, runs, count_gen, &g,
		                          sizeof(uint64_t), sizeof(uint64_t), flags,
		                          NULL, &it), 0);
		t = now_ns();
		cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0,
		             "flags %u", flags);
		cr_expect_lt(now_ns() - t, slack(500 * MS),
		             "flags %u: took %" PRId64 " ms to say the end", flags,
		             (now_ns() - t) / MS);
		cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0);
		cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 0), 0);
		/* No more input: the generator is not asked again. */
		cr_expect_eq(g.calls, 1, "flags %u: generator called %" PRIu64
		             " times", flags, g.calls);
		shp_iter_free(it);
	}
	cr_expect_eq(*runs, 0, "%" PRIu64 " tasks ran", *runs);
	destroy_clean(p);
	munmap(runs, sizeof(uint64_t));
}

Test(iter, gen_error_comes_after_the_results_before_it, .timeout = 30)
{
	const size_t n = 1000;
	shp_pool *p = pool_of(2, 0);
	struct counter g = { .n = n, .fail = -EIO };
	unsigned char seen[1000] = { 0 };
	shp_iter *it = NULL;
	size_t idx, k;
	const void *out;
	int st, r;

	cr_assert_eq(shp_imap_gen(p, odd64, NULL, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t), 0, NULL,
	                          &it), 0);
	for (k = 0; (r = shp_iter_next(it, &idx, &out, &st, -1)) == 1; k++) {
		cr_assert_eq(idx, k);
		cr_assert_eq(*(const uint64_t *)out, 2 * k + 1);
		cr_assert_eq(st, 0);
	}
	cr_expect_eq(k, n, "%zu results before the error, want %zu", k, n);
	cr_expect_eq(r, -EIO, "ended with %d (%s), want -EIO", r,
	             shp_strerror(r));
	/* The error ended the input: the generator is not asked again. */
	cr_expect_eq(g.calls, n + 1, "generator called %" PRIu64 " times",
	             g.calls);
	shp_iter_free(it);

	g = (struct counter){ .n = n, .fail = -EIO };
	cr_assert_eq(shp_imap_gen(p, odd64, NULL, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t),
	                          SHP_UNORDERED, NULL, &it), 0);
	for (k = 0; (r = shp_iter_next(it, &idx, &out, &st, -1)) == 1; k++) {
		cr_assert_lt(idx, n);
		cr_assert_eq(seen[idx], 0);
		seen[idx] = 1;
		cr_assert_eq(*(const uint64_t *)out, 2 * idx + 1);
		cr_assert_eq(st, 0);
	}
	cr_expect_eq(k, n, "unordered: %zu results before the error", k);
	cr_expect_eq(r, -EIO, "unordered: ended with %d (%s), want -EIO", r,
	             shp_strerror(r));
	shp_iter_free(it);
	destroy_clean(p);
}

/* A generator's -ETIMEDOUT, which a caller would take for its own wait's
 * timeout and retry for ever, ends the iteration as -ETIME. */
Test(iter, gen_timeout_error_is_not_the_callers_timeout, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	struct counter g = { .n = 10, .fail = -ETIMEDOUT };
	shp_iter *it = NULL;
	size_t k;
	int r;

	cr_assert_eq(shp_imap_gen(p, odd64, NULL, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t), 0, NULL,
	                          &it), 0);
	for (k = 0; (r = shp_iter_next(it, NULL, NULL, NULL, -1)) == 1; k++)
		;
	cr_expect_eq(k, 10);
	cr_expect_eq(r, -ETIME, "ended with %d (%s)", r, shp_strerror(r));
	cr_expect_eq(shp_iter_next(it, NULL, NULL, NULL, 0), -ETIME);
	shp_iter_free(it);
	destroy_clean(p);
}

/* The generator runs only in the caller's thread, inside shp_iter_next,
 * and never more than the window ahead of the results taken. */
struct watched {
	struct counter c;
	bool inside_next;
	pid_t tid;
	uint64_t outside, wrong_thread;
};

static int watched_gen(void *in, void *arg)
{
	struct watched *w = arg;

	w->outside += !w->inside_next;
	w->wrong_thread += (pid_t)syscall(SYS_gettid) != w->tid;
	return count_gen(in, &w->c);
}

Test(iter, gen_runs_only_inside_next_and_within_the_window, .timeout = 30)
{
	const size_t n = 50000;
	shp_pool *p = pool_of(2, 0);

	for (unsigned flags = 0; flags <= SHP_UNORDERED; flags++) {
		struct watched w = { .c = { .n = n },
		                     .tid = (pid_t)syscall(SYS_gettid) };
		shp_iter *it = NULL;
		size_t idx, k = 0, ahead = 0, max_ahead = 0;
		const void *out;
		int st, r;

		cr_assert_eq(shp_imap_gen(p, odd64, NULL, watched_gen, &w,
		                          sizeof(uint64_t), sizeof(uint64_t), flags,
		                          NULL, &it), 0);
		for (;;) {
			w.inside_next = true;
			r = shp_iter_next(it, &idx, &out, &st, -1);
			w.inside_next = false;
			if (r != 1)
				break;
			cr_assert_eq(*(const uint64_t *)out, 2 * idx + 1);
			k++;
			if (w.c.next - k > max_ahead)
				max_ahead = w.c.next - k;
			ahead += w.c.next > k + IN_FLIGHT_BOUND;
			if (k % 5000 == 0)
				sleep_ms(2); /* let the workers run ahead */
		}
		cr_expect_eq(r, 0);
		cr_expect_eq(k, n);
		cr_expect_eq(w.outside, 0, "flags %u: generator called %" PRIu64
		             " times outside shp_iter_next", flags, w.outside);
		cr_expect_eq(w.wrong_thread, 0, "flags %u: generator called %"
		             PRIu64 " times from another thread", flags,
		             w.wrong_thread);
		cr_expect_eq(ahead, 0, "flags %u: generator up to %zu inputs ahead",
		             flags, max_ahead);
		shp_iter_free(it);
	}
	destroy_clean(p);
}

/* ============================== 5. bounded memory and early free */

/* Shared with the workers: results the parent has taken, and the furthest
 * any task ran ahead of that. */
struct ahead {
	uint64_t taken;
	int64_t max_ahead;
	uint64_t runs;
};

static int note_ahead(const void *in, void *out, void *ctx)
{
	struct ahead *a = ctx;
	uint64_t i = *(const uint64_t *)in;
	int64_t d = (int64_t)i -
	            (int64_t)__atomic_load_n(&a->taken, __ATOMIC_ACQUIRE);
	int64_t m = __atomic_load_n(&a->max_ahead, __ATOMIC_RELAXED);

	while (d > m && !__atomic_compare_exchange_n(&a->max_ahead, &m, d, false,
	                                             __ATOMIC_RELAXED,
	                                             __ATOMIC_RELAXED))
		;
	__atomic_fetch_add(&a->runs, 1, __ATOMIC_RELAXED);
	*(uint64_t *)out = i ^ 0xabcdefull;
	return 0;
}

Test(iter, long_imap_keeps_a_bounded_window_in_flight, .timeout = 60)
{
	const size_t n = 100000;
	struct ahead *a = shared_map(sizeof(*a));
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = iota64(n);
	const struct {
		bool unordered;
		size_t chunk;
	} runs[3] = { { false, 0 }, { false, 1 }, { true, 0 } };

	for (int v = 0; v < 3; v++) {
		shp_iter *it = NULL;
		unsigned char *seen = calloc(n, 1);
		size_t idx, k;
		const void *out;
		int st, r;

		cr_assert_not_null(seen);
		memset(a, 0, sizeof(*a));
		if (runs[v].unordered)
			r = shp_imap_unordered(p, note_ahead, a, in,
			                       sizeof(uint64_t), n, sizeof(uint64_t),
			                       runs[v].chunk, &it);
		else
			r = shp_imap(p, note_ahead, a, in, sizeof(uint64_t), n,
			             sizeof(uint64_t), runs[v].chunk, &it);
		cr_assert_eq(r, 0);
		for (k = 0; (r = shp_iter_next(it, &idx, &out, &st, -1)) == 1;) {
			cr_assert_lt(idx, n);
			if (!runs[v].unordered)
				cr_assert_eq(idx, k);
			cr_assert_eq(seen[idx], 0);
			seen[idx] = 1;
			cr_assert_eq(*(const uint64_t *)out, idx ^ 0xabcdefull);
			cr_assert_eq(st, 0);
			k++;
			__atomic_store_n(&a->taken, k, __ATOMIC_RELEASE);
			/* A slow consumer now and then: the workers run as
			 * far ahead as the iterator lets them. */
			if (k % 10000 == 0)
				sleep_ms(5);
		}
		cr_expect_eq(r, 0);
		cr_expect_eq(k, n);
		cr_expect_eq(a->runs, n, "variant %d: %" PRIu64 " runs", v,
		             a->runs);
		cr_expect_leq(a->max_ahead, IN_FLIGHT_BOUND,
		              "variant %d (unordered %d, chunksize %zu): a task "
		              "ran %" PRId64 " ahead of the results taken", v,
		              runs[v].unordered, runs[v].chunk, a->max_ahead);
		shp_iter_free(it);
		free(seen);
	}
	free(in);
	destroy_clean(p);
	munmap(a, sizeof(*a));
}

/* 5 ms tasks that give up their core and count their runs. */
static int slow_counted(const void *in, void *out, void *ctx)
{
	sleep_ms(5);
	*(uint64_t *)out = 3 * *(const uint64_t *)in;
	__atomic_fetch_add((uint64_t *)ctx, 1, __ATOMIC_RELEASE);
	return 0;
}

static void free_early(size_t chunk)
{
	const size_t n = 1000000;
	uint64_t *runs = shared_map(sizeof(uint64_t));
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = iota64(n), at_free;
	shp_iter *it = NULL;
	size_t idx;
	const void *out;
	int st;
	int64_t t;

	cr_assert_eq(shp_imap(p, slow_counted, runs, in, sizeof(uint64_t), n,
	                      sizeof(uint64_t), chunk, &it), 0);
	for (size_t k = 0; k < 10; k++) {
		cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1);
		cr_assert_eq(idx, k);
		cr_assert_eq(*(const uint64_t *)out, 3 * k);
		cr_assert_eq(st, 0);
	}
	t = now_ns();
	shp_iter_free(it);
	t = now_ns() - t;
	at_free = __atomic_load_n(runs, __ATOMIC_ACQUIRE);
	cr_expect_lt(t, slack(2000 * MS), "chunksize %zu: shp_iter_free took %"
	             PRId64 " ms (%" PRIu64 " tasks ran)", chunk, t / MS,
	             at_free);
	/* It waited for the running tasks, and cancelled the others. */
	sleep_ms(100);
	cr_expect_eq(__atomic_load_n(runs, __ATOMIC_ACQUIRE), at_free,
	             "chunksize %zu: tasks ran after shp_iter_free returned",
	             chunk);
	cr_expect_geq(at_free, 10);
	cr_expect_lt(at_free, n);
	expect_pool_works(p, "after an early free");
	free(in);
	destroy_clean(p);
	munmap(runs, sizeof(uint64_t));
}

Test(iter, free_early_is_prompt_chunksize_1, .timeout = 30)
{
	free_early(1);
}

Test(iter, free_early_is_prompt_automatic_chunks, .timeout = 30)
{
	free_early(0);
}

static int fill_big(const void *in, void *out, void *ctx)
{
	uint64_t x = *(const uint64_t *)in;

	(void)ctx;
	memset(out, (int)(x & 0xff), BIG);
	return 0;
}

/* Each abandoned iterator must give back its slots and staging buffers:
 * far more than the pool has are abandoned in turn. */
Test(iter, free_early_gives_back_slots_and_arena, .timeout = 60)
{
	const size_t n = 100000;
	struct shp_pool_options opt = { .workers = 2, .arena_bytes = 16u << 20 };
	uint64_t *in = iota64(n);
	shp_pool *p;
	int fds;

	cr_assert_eq(shp_pool_create(&p, &opt), 0);
	fds = proc_fd_count();
	for (int round = 0; round < 40; round++) {
		shp_iter *it = NULL;
		size_t idx;
		const void *out;
		int st;

		if (round % 2)
			cr_assert_eq(shp_imap_unordered(p, fill_big, NULL, in,
			                                sizeof(uint64_t), n, BIG, 0,
			                                &it), 0, "round %d", round);
		else
			cr_assert_eq(shp_imap(p, fill_big, NULL, in,
			                      sizeof(uint64_t), n, BIG, 0, &it), 0,
			             "round %d", round);
		for (size_t k = 0; k < 10; k++) {
			const unsigned char *o;

			cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1,
			             "round %d result %zu", round, k);
			o = out;
			cr_assert_lt(idx, n);
			if (round % 2 == 0)
				cr_assert_eq(idx, k);
			cr_assert_eq(o[0], idx & 0xff);
			cr_assert_eq(o[BIG - 1], idx & 0xff);
			cr_assert_eq(st, 0);
		}
		shp_iter_free(it);
	}
	cr_expect_eq(proc_fd_count(), fds, "file descriptors leaked");
	expect_pool_works(p, "after 40 abandoned iterators");
	free(in);
	destroy_clean(p);
}

/* ============== 6. close, join, terminate and bad arguments */

/* 2 ms tasks that count the tasks done (after writing the output). */
static int slow_done(const void *in, void *out, void *ctx)
{
	sleep_ms(2);
	*(uint64_t *)out = 7 * *(const uint64_t *)in;
	__atomic_fetch_add((uint64_t *)ctx, 1, __ATOMIC_RELEASE);
	return 0;
}

/*
 * One iterator of each form on its own pool (each long enough that most of
 * it has not run when the pool is terminated): after shp_pool_terminate,
 * shp_iter_next gives at most the results of tasks already done (right,
 * status 0), then SHP_ECLOSED, and SHP_ECLOSED again on later calls.
 */
static void terminate_ends(int form)
{
	static const char *const names[3] = { "imap", "imap_unordered",
	                                      "imap_gen" };
	const size_t n = 100000;
	uint64_t *done = shared_map(sizeof(uint64_t));
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = iota64(n), done_at;
	struct counter g = { .n = n };
	struct shp_call_options opt = { .chunksize = 1 };
	unsigned char *seen = calloc(n, 1);
	const char *name = names[form];
	shp_iter *it = NULL, *refused = NULL;
	size_t idx, k;
	const void *out;
	int st, r;
	int64_t t;

	cr_assert_not_null(seen);
	if (form == 0)
		r = shp_imap(p, slow_done, done, in, sizeof(uint64_t), n,
		             sizeof(uint64_t), 1, &it);
	else if (form == 1)
		r = shp_imap_unordered(p, slow_done, done, in, sizeof(uint64_t),
		                       n, sizeof(uint64_t), 1, &it);
	else
		r = shp_imap_gen(p, slow_done, done, count_gen, &g,
		                 sizeof(uint64_t), sizeof(uint64_t), 0, &opt, &it);
	cr_assert_eq(r, 0, "%s", name);
	for (k = 0; k < 5; k++) {
		cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1);
		cr_assert_lt(idx, n);
		cr_assert_eq(*(const uint64_t *)out, 7 * idx);
		cr_assert_eq(st, 0);
		if (form != 1)
			cr_assert_eq(idx, k, "%s", name);
		seen[idx] = 1;
	}
	cr_assert_eq(shp_pool_terminate(p), 0);
	done_at = __atomic_load_n(done, __ATOMIC_ACQUIRE);
	t = now_ns();
	while ((r = shp_iter_next(it, &idx, &out, &st, -1)) == 1) {
		cr_assert_eq(st, 0, "%s: a result with status %d after terminate",
		             name, st);
		cr_assert_lt(idx, n);
		cr_assert_eq(*(const uint64_t *)out, 7 * idx);
		if (form != 1)
			cr_assert_eq(idx, k, "%s", name);
		cr_assert_eq(seen[idx], 0, "%s: index %zu twice", name, idx);
		seen[idx] = 1;
		k++;
		cr_assert_leq(k, done_at, "%s: %zu results, only %" PRIu64
		              " tasks done", name, k, done_at);
	}
	cr_expect_eq(r, SHP_ECLOSED, "%s: ended with %d (%s) after %zu results "
	             "of %zu (%" PRIu64 " tasks done)", name, r, shp_strerror(r),
	             k, n, done_at);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), SHP_ECLOSED,
	             "%s: not closed on the next call", name);
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, 0), SHP_ECLOSED,
	             "%s: not closed on a poll", name);
	cr_expect_lt(now_ns() - t, slack(2000 * MS), "%s: took %" PRId64
	             " ms to end", name, (now_ns() - t) / MS);
	cr_expect_lt(done_at, n, "%s: every task had run", name);

	/* New iterators of a terminated pool are refused. */
	cr_expect_eq(shp_imap(p, slow_done, done, in, sizeof(uint64_t), n,
	                      sizeof(uint64_t), 1, &refused), SHP_ECLOSED);
	cr_expect_eq(shp_imap_unordered(p, slow_done, done, in, sizeof(uint64_t),
	                                n, sizeof(uint64_t), 1, &refused),
	             SHP_ECLOSED);
	g = (struct counter){ .n = n };
	cr_expect_eq(shp_imap_gen(p, slow_done, done, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t), 0, NULL,
	                          &refused), SHP_ECLOSED);
	cr_expect_eq(g.calls, 0, "a refused imap_gen called its generator");
	shp_iter_free(it);
	destroy_clean(p);
	free(seen);
	free(in);
	munmap(done, sizeof(uint64_t));
}

Test(iter, terminate_ends_open_iterators_with_closed, .timeout = 30)
{
	for (int form = 0; form < 3; form++)
		terminate_ends(form);
}

Test(iter, join_does_not_wait_for_iterators, .timeout = 30)
{
	const size_t n = 100000;
	uint64_t *done = shared_map(sizeof(uint64_t));
	shp_pool *p = pool_of(2, 0);
	uint64_t *in = iota64(n);
	shp_iter *it = NULL, *refused = NULL;
	size_t idx, k;
	const void *out;
	int st, r;
	int64_t t;

	cr_assert_eq(shp_imap(p, slow_done, done, in, sizeof(uint64_t), n,
	                      sizeof(uint64_t), 1, &it), 0);
	for (k = 0; k < 10; k++) {
		cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1);
		cr_assert_eq(idx, k);
		cr_assert_eq(*(const uint64_t *)out, 7 * k);
	}
	cr_assert_eq(shp_pool_close(p), 0);
	t = now_ns();
	cr_expect_eq(shp_pool_join(p), 0);
	t = now_ns() - t;
	/* All of it would take 100 s. */
	cr_expect_lt(t, slack(8000 * MS), "join took %" PRId64 " ms", t / MS);
	/* The tasks in flight finished; their results may come, in order,
	 * then SHP_ECLOSED. */
	while ((r = shp_iter_next(it, &idx, &out, &st, -1)) == 1) {
		cr_assert_eq(idx, k);
		cr_assert_eq(*(const uint64_t *)out, 7 * k);
		cr_assert_eq(st, 0);
		k++;
		cr_assert_leq(k, 10 + IN_FLIGHT_BOUND,
		              "results went on past the window after join");
	}
	cr_expect_eq(r, SHP_ECLOSED, "ended with %d (%s)", r, shp_strerror(r));
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), SHP_ECLOSED);
	cr_expect_lt(__atomic_load_n(done, __ATOMIC_ACQUIRE), n);
	cr_expect_eq(shp_imap(p, slow_done, done, in, sizeof(uint64_t), n,
	                      sizeof(uint64_t), 1, &refused), SHP_ECLOSED);
	shp_iter_free(it);
	free(in);
	destroy_clean(p);
	munmap(done, sizeof(uint64_t));
}

Test(iter, imap_on_a_closed_pool_is_refused, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	uint64_t in[4] = { 1, 2, 3, 4 };
	struct counter g = { .n = 4 };
	shp_iter *it = NULL;

	cr_assert_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_imap(p, twice64, NULL, in, sizeof(uint64_t), 4,
	                      sizeof(uint64_t), 0, &it), SHP_ECLOSED);
	cr_expect_eq(shp_imap_unordered(p, twice64, NULL, in, sizeof(uint64_t),
	                                4, sizeof(uint64_t), 0, &it),
	             SHP_ECLOSED);
	cr_expect_eq(shp_imap_gen(p, twice64, NULL, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t), 0, NULL,
	                          &it), SHP_ECLOSED);
	cr_assert_eq(shp_pool_join(p), 0);
	cr_expect_eq(shp_imap(p, twice64, NULL, in, sizeof(uint64_t), 4,
	                      sizeof(uint64_t), 0, &it), SHP_ECLOSED);
	cr_expect_eq(shp_imap_gen(p, twice64, NULL, count_gen, &g,
	                          sizeof(uint64_t), sizeof(uint64_t),
	                          SHP_UNORDERED, NULL, &it), SHP_ECLOSED);
	cr_expect_eq(g.calls, 0);
	destroy_clean(p);
}

Test(iter, bad_arguments_give_specific_errors, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	uint64_t in[4] = { 1, 2, 3, 4 };
	struct counter g = { .n = 4 };
	shp_iter *it = NULL;
	size_t idx;
	const void *out;
	int st;

	cr_expect_eq(shp_imap(NULL, twice64, NULL, in, 8, 4, 8, 0, &it), -EINVAL);
	cr_expect_eq(shp_imap(p, NULL, NULL, in, 8, 4, 8, 0, &it), -EINVAL);
	cr_expect_eq(shp_imap(p, twice64, NULL, in, 8, 4, 8, 0, NULL), -EINVAL);
	cr_expect_eq(shp_imap(p, twice64, NULL, NULL, 8, 4, 8, 0, &it), -EINVAL);
	cr_expect_eq(shp_imap(p, twice64, NULL, in, 0, 4, 8, 0, &it), -EINVAL);
	cr_expect_eq(shp_imap(p, twice64, NULL, in, 16, SIZE_MAX / 8, 8, 0, &it),
	             -EOVERFLOW);
	cr_expect_eq(shp_imap(p, twice64, NULL, in, 8, SIZE_MAX / 2, 8, 0, &it),
	             -EOVERFLOW);
	cr_expect_eq(shp_imap(p, twice64, NULL, in, 8, SIZE_MAX / 8, 16, 0, &it),
	             -EOVERFLOW);
	cr_expect_eq(shp_imap(p, twice64, NULL, in, SIZE_MAX / 2, 1, 8, 0, &it),
	             -E2BIG);
	cr_expect_eq(shp_imap(p, twice64, NULL, in, 8, 1, SIZE_MAX / 2, 0, &it),
	             -E2BIG);
	cr_expect_eq(shp_imap_unordered(NULL, twice64, NULL, in, 8, 4, 8, 0, &it),
	             -EINVAL);
	cr_expect_eq(shp_imap_unordered(p, NULL, NULL, in, 8, 4, 8, 0, &it),
	             -EINVAL);
	cr_expect_eq(shp_imap_unordered(p, twice64, NULL, in, 8, 4, 8, 0, NULL),
	             -EINVAL);
	cr_expect_eq(shp_imap_unordered(p, twice64, NULL, in, 16, SIZE_MAX / 8, 8,
	                                0, &it), -EOVERFLOW);
	cr_expect_eq(shp_imap_gen(NULL, twice64, NULL, count_gen, &g, 8, 8, 0,
	                          NULL, &it), -EINVAL);
	cr_expect_eq(shp_imap_gen(p, NULL, NULL, count_gen, &g, 8, 8, 0, NULL,
	                          &it), -EINVAL);
	cr_expect_eq(shp_imap_gen(p, twice64, NULL, NULL, &g, 8, 8, 0, NULL,
	                          &it), -EINVAL);
	cr_expect_eq(shp_imap_gen(p, twice64, NULL, count_gen, &g, 8, 8, 0, NULL,
	                          NULL), -EINVAL);
	cr_expect_eq(shp_imap_gen(p, twice64, NULL, count_gen, &g, 8, 8, 2, NULL,
	                          &it), -EINVAL);
	cr_expect_eq(g.calls, 0, "a refused imap_gen called its generator");
	cr_expect_eq(shp_iter_next(NULL, &idx, &out, &st, -1), -EINVAL);
	cr_expect_eq(shp_iter_next(NULL, NULL, NULL, NULL, 0), -EINVAL);
	shp_iter_free(NULL);

	/* None of that broke the pool. */
	cr_assert_eq(shp_imap(p, twice64, NULL, in, 8, 4, 8, 0, &it), 0);
	for (size_t k = 0; k < 4; k++) {
		cr_assert_eq(shp_iter_next(it, &idx, &out, &st, -1), 1);
		cr_expect_eq(idx, k);
		cr_expect_eq(*(const uint64_t *)out, 2 * in[k]);
	}
	cr_expect_eq(shp_iter_next(it, &idx, &out, &st, -1), 0);
	shp_iter_free(it);
	destroy_clean(p);
}
