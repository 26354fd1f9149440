#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmpool.h"
#include "util.h"

Test(map, seed_cube_map, .timeout = 20)
{
	shp_pool *p = pool_of(4, 0);
	long in[6] = { 1, 2, 3, 4, 5, 6 }, out[6] = { 0 };
	const long want[6] = { 1, 8, 27, 64, 125, 216 };

	cr_assert_eq(shp_map(p, cube, NULL, in, sizeof(long), out, sizeof(long),
	                     6, 0, NULL), 0);
	for (int i = 0; i < 6; i++)
		cr_expect_eq(out[i], want[i], "out[%d] = %ld", i, out[i]);
	shp_pool_destroy(p);
}

Test(map, seed_cube_apply, .timeout = 20)
{
	shp_pool *p = pool_of(4, 0);
	const long want[6] = { 1, 8, 27, 64, 125, 216 };

	for (long x = 1; x <= 6; x++) {
		long y = 0;

		cr_assert_eq(shp_apply(p, cube, NULL, &x, sizeof(x), &y, sizeof(y)), 0);
		cr_expect_eq(y, want[x - 1]);
	}
	shp_pool_destroy(p);
}

/* ctx: a completion counter and the order array, both in the arena. */
struct order {
	uint64_t counter;
	uint64_t *rank;
};

static int jittery(const void *in, void *out, void *ctx)
{
	struct order *o = ctx;
	uint64_t x = *(const uint64_t *)in;

	/* Spins of random length, and now and then a sleep: a sleeping task
	 * gives up its core, so the other worker overtakes it even on a
	 * loaded machine. */
	if (mix(x) % 64 == 0)
		spin_ns((long)(mix(x + 1) % 20000));
	if (mix(x) % 4096 == 1) {
		struct timespec ts = { 0, 100000 };

		nanosleep(&ts, NULL);
	}
	*(uint64_t *)out = mix(x) ^ 0x5555;
	o->rank[x] = __atomic_fetch_add(&o->counter, 1, __ATOMIC_RELAXED);
	return 0;
}

Test(map, million_random_durations_in_order, .timeout = 120)
{
	const size_t n = 1000000;
	shp_pool *p;
	struct shp_pool_options opt = { .workers = 2, .arena_bytes = 32u << 20 };
	uint64_t *in = malloc(n * sizeof(*in)), *out = malloc(n * sizeof(*out));
	struct order *o;
	size_t inversions = 0;

	cr_assert_eq(shp_pool_create(&p, &opt), 0);
	o = shp_alloc(p, sizeof(*o));
	cr_assert_not_null(o);
	o->counter = 0;
	o->rank = shp_alloc(p, n * sizeof(uint64_t));
	cr_assert_not_null(o->rank);
	for (size_t i = 0; i < n; i++)
		in[i] = i;
	cr_assert_eq(shp_map(p, jittery, o, in, sizeof(*in), out, sizeof(*out),
	                     n, 1, NULL), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(out[i], mix(i) ^ 0x5555, "out[%zu]", i);
	for (size_t i = 1; i < n; i++)
		inversions += o->rank[i] < o->rank[i - 1];
	/* The test means something only if tasks did finish out of order. */
	cr_expect_gt(inversions, 50, "only %zu tasks finished out of order",
	             inversions);
	cr_expect_eq(o->counter, n);
	shp_pool_destroy(p);
	free(in);
	free(out);
}

static int twice(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(int *)out = 2 * *(const int *)in;
	return 0;
}

static void check_twice(shp_pool *p, size_t n, size_t chunk)
{
	int *in = malloc((n + 1) * sizeof(int)), *out = malloc((n + 1) * sizeof(int));

	for (size_t i = 0; i <= n; i++) {
		in[i] = (int)i - 7;
		out[i] = -1;
	}
	cr_assert_eq(shp_map(p, twice, NULL, in, sizeof(int), out, sizeof(int), n,
	                     chunk, NULL), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(out[i], 2 * ((int)i - 7), "n=%zu chunk=%zu i=%zu", n,
		             chunk, i);
	cr_expect_eq(out[n], -1, "wrote past n");
	free(in);
	free(out);
}

Test(map, n_zero_touches_nothing, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in = 5, out = -1;

	cr_expect_eq(shp_map(p, twice, NULL, &in, sizeof(int), &out, sizeof(int),
	                     0, 0, NULL), 0);
	cr_expect_eq(out, -1);
	shp_pool_destroy(p);
}

Test(map, n_one_and_odd_chunks, .timeout = 30)
{
	shp_pool *p = pool_of(3, 0);

	check_twice(p, 1, 0);
	check_twice(p, 1, 5);
	check_twice(p, 1001, 10);
	check_twice(p, 1001, 7);
	check_twice(p, 999, 4096);
	check_twice(p, 50000, 0);
	shp_pool_destroy(p);
}

Test(map, more_tasks_than_ring_cells, .timeout = 30)
{
	shp_pool *p = pool_of(2, 4);

	check_twice(p, 10000, 1);
	check_twice(p, 10000, 0);
	shp_pool_destroy(p);
}

#define BIG (64 * 1024)

static int big_reverse(const void *in, void *out, void *ctx)
{
	const unsigned char *a = in;
	unsigned char *b = out;

	(void)ctx;
	for (size_t i = 0; i < BIG; i++)
		b[i] = (unsigned char)(a[BIG - 1 - i] ^ 0xa5);
	return 0;
}

Test(map, sixty_four_kib_elements, .timeout = 60)
{
	const size_t n = 300;
	struct shp_pool_options o = { .workers = 2, .arena_bytes = 8u << 20 };
	unsigned char *in = malloc(n * BIG), *out = malloc(n * BIG);
	shp_pool *p;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	for (size_t i = 0; i < n * BIG; i++)
		in[i] = (unsigned char)mix(i);
	cr_assert_eq(shp_map(p, big_reverse, NULL, in, BIG, out, BIG, n, 0, NULL), 0);
	for (size_t k = 0; k < n; k++)
		for (size_t i = 0; i < BIG; i++)
			cr_assert_eq(out[k * BIG + i],
			             (unsigned char)(in[k * BIG + BIG - 1 - i] ^ 0xa5),
			             "element %zu byte %zu", k, i);
	shp_pool_destroy(p);
	free(in);
	free(out);
}

/* Writes the address it was given, to show the data was not copied. */
static int where(const void *in, void *out, void *ctx)
{
	struct { const void *in; void *out; uint64_t v; } *o = out;

	(void)ctx;
	o->v = *(const uint64_t *)in + 1;
	o->in = in;
	o->out = out;
	return 0;
}

Test(map, arena_buffers_are_used_in_place, .timeout = 30)
{
	const size_t n = 20000;
	shp_pool *p = pool_of(2, 0);
	struct rec { const void *in; void *out; uint64_t v; } *out;
	uint64_t *in;

	in = shp_alloc(p, n * sizeof(*in));
	out = shp_alloc(p, n * sizeof(*out));
	cr_assert_not_null(in);
	cr_assert_not_null(out);
	cr_expect_eq((uintptr_t)in % 64, 0);
	for (size_t i = 0; i < n; i++)
		in[i] = i * 3;
	cr_assert_eq(shp_map(p, where, NULL, in, sizeof(*in), out, sizeof(*out),
	                     n, 0, NULL), 0);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(out[i].v, i * 3 + 1);
		cr_assert_eq(out[i].in, &in[i]);
		cr_assert_eq(out[i].out, &out[i]);
	}
	shp_free(p, in);
	shp_free(p, out);
	shp_pool_destroy(p);
}

/* Mixed placements: inline input and staged output, and the reverse. */
struct wide {
	uint64_t v[12];
};

static int widen(const void *in, void *out, void *ctx)
{
	struct wide *w = out;

	(void)ctx;
	for (int k = 0; k < 12; k++)
		w->v[k] = *(const uint32_t *)in * (uint64_t)(k + 1);
	return 0;
}

static int narrow(const void *in, void *out, void *ctx)
{
	const struct wide *w = in;
	uint64_t s = 0;

	(void)ctx;
	for (int k = 0; k < 12; k++)
		s += w->v[k];
	*(uint64_t *)out = s;
	return 0;
}

Test(map, mixed_inline_and_staged, .timeout = 30)
{
	const size_t n = 5000;
	shp_pool *p = pool_of(2, 0);
	uint32_t *a = malloc(n * sizeof(*a));
	struct wide *w = malloc(n * sizeof(*w));
	uint64_t *s = malloc(n * sizeof(*s));

	for (size_t i = 0; i < n; i++)
		a[i] = (uint32_t)i;
	cr_assert_eq(shp_map(p, widen, NULL, a, sizeof(*a), w, sizeof(*w), n, 0,
	                     NULL), 0);
	cr_assert_eq(shp_map(p, narrow, NULL, w, sizeof(*w), s, sizeof(*s), n, 3,
	                     NULL), 0);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(w[i].v[11], i * 12);
		cr_assert_eq(s[i], i * 78);
	}
	shp_pool_destroy(p);
	free(a);
	free(w);
	free(s);
}

Test(map, task_failures_give_statuses, .timeout = 30)
{
	const size_t n = 1000;
	shp_pool *p = pool_of(2, 0);
	int in[1000], out[1000], st[1000];

	for (size_t i = 0; i < n; i++)
		in[i] = (int)i;
	memset(st, 0x7f, sizeof(st));
	cr_assert_eq(shp_map(p, fail_some, NULL, in, sizeof(int), out, sizeof(int),
	                     n, 0, st), SHP_ETASK);
	for (int i = 0; i < (int)n; i++) {
		int want = i % 5 == 0 ? i % 7 + 1 : i % 11 == 0 ? SHP_ETASK : 0;

		cr_expect_eq(st[i], want, "status[%d] = %d", i, st[i]);
		cr_expect_eq(out[i], i + 1);
	}
	cr_expect_eq(shp_apply(p, fail_some, NULL, &in[10], sizeof(int), out,
	                       sizeof(int)), 10 % 7 + 1);
	cr_expect_eq(shp_apply(p, fail_some, NULL, &in[1], sizeof(int), out,
	                       sizeof(int)), 0);
	shp_pool_destroy(p);
}

static int status_only(const void *in, void *out, void *ctx)
{
	(void)out;
	(void)ctx;
	return *(const int *)in % 3;
}

Test(map, status_only_tasks, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[100], st[100];

	for (int i = 0; i < 100; i++)
		in[i] = i;
	cr_assert_eq(shp_map(p, status_only, NULL, in, sizeof(int), NULL, 0, 100,
	                     0, st), SHP_ETASK);
	for (int i = 0; i < 100; i++)
		cr_expect_eq(st[i], i % 3);
	shp_pool_destroy(p);
}

static int no_input(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(int *)out = in == NULL ? 42 : -1;
	return 0;
}

Test(map, no_input_gets_null, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int out[10];

	cr_assert_eq(shp_map(p, no_input, NULL, NULL, 0, out, sizeof(int), 10, 0,
	                     NULL), 0);
	for (int i = 0; i < 10; i++)
		cr_expect_eq(out[i], 42);
	shp_pool_destroy(p);
}

Test(map, bad_arguments_give_specific_errors, .timeout = 20)
{
	shp_pool *p = pool_of(2, 0);
	int in[4] = { 1, 2, 3, 4 }, out[4] = { 0 }, st[4];

	cr_expect_eq(shp_map(NULL, twice, NULL, in, 4, out, 4, 4, 0, NULL), -EINVAL);
	cr_expect_eq(shp_map(p, NULL, NULL, in, 4, out, 4, 4, 0, NULL), -EINVAL);
	cr_expect_eq(shp_map(p, twice, NULL, in, 4, NULL, 4, 4, 0, NULL), -EINVAL);
	cr_expect_eq(shp_map(p, twice, NULL, NULL, 4, out, 4, 4, 0, NULL), -EINVAL);
	cr_expect_eq(shp_map(p, twice, NULL, in, 0, out, 4, 4, 0, NULL), -EINVAL);
	cr_expect_eq(shp_map(p, twice, NULL, in, 4, out, 0, 4, 0, NULL), -EINVAL);
	cr_expect_eq(shp_map(p, twice, NULL, in, 4, NULL, 0, 4, 0, NULL), -EINVAL);
	cr_expect_eq(shp_map(p, twice, NULL, in, SIZE_MAX / 2, out, 4, 4, 0, st),
	             -E2BIG);
	cr_expect_eq(shp_map(p, twice, NULL, in, 4, out, 4, SIZE_MAX / 2, 0, NULL),
	             -EOVERFLOW);
	cr_expect_eq(shp_map(p, twice, NULL, in, 16, out, 4, SIZE_MAX / 8, 0, NULL),
	             -EOVERFLOW);
	cr_expect_eq(shp_apply(NULL, twice, NULL, in, 4, out, 4), -EINVAL);
	cr_expect_eq(shp_apply(p, NULL, NULL, in, 4, out, 4), -EINVAL);
	cr_expect_eq(shp_apply(p, twice, NULL, in, 4, NULL, 4), -EINVAL);
	/* None of this touched out, and the pool still works. */
	for (int i = 0; i < 4; i++)
		cr_expect_eq(out[i], 0);
	cr_expect_eq(shp_map(p, twice, NULL, in, 4, out, 4, 4, 0, NULL), 0);
	cr_expect_eq(out[3], 8);

	cr_assert_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_map(p, twice, NULL, in, 4, out, 4, 4, 0, NULL), SHP_ECLOSED);
	cr_expect_eq(shp_apply(p, twice, NULL, in, 4, out, 4), SHP_ECLOSED);
	cr_expect_eq(shp_pool_join(p), 0);
	cr_expect_eq(shp_map(p, twice, NULL, in, 4, out, 4, 4, 0, NULL), SHP_ECLOSED);
	shp_pool_destroy(p);
}

Test(map, crashing_task_reports_crashed_and_pool_recovers, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	int in[40], out[40], st[40];

	for (int i = 0; i < 40; i++)
		in[i] = i;
	memset(out, 0, sizeof(out));
	for (size_t chunk = 1; chunk <= 8; chunk *= 8) {
		cr_assert_eq(shp_map(p, crash_on_five, NULL, in, sizeof(int), out,
		                     sizeof(int), 40, chunk, st), SHP_ETASK);
		for (int i = 0; i < 40; i++) {
			if (i == 5 || i == 9) {
				cr_expect_eq(st[i], SHP_ECRASHED, "chunk %zu st[%d]=%d",
				             chunk, i, st[i]);
				continue;
			}
			cr_expect_eq(st[i], 0, "chunk %zu st[%d]=%d", chunk, i, st[i]);
			cr_expect_eq(out[i], i * 10);
		}
	}
	check_twice(p, 10000, 0);
	shp_pool_destroy(p);
}

/*
 * A worker dies in the middle of a chunk as wide as the window, after the
 * parent has taken the chunk's first results and handed their slots to
 * later tasks: only the task it was running may be reported crashed, and
 * nothing may run twice.
 */
#define REUSE_N 4096
#define REUSE_DIE 1000
#define REUSE_AFTER 2048 /* same slot as task 0 */

struct reuse {
	uint64_t after_done;
	uint64_t died;
	uint32_t runs[REUSE_N];
};

static int die_after_reuse(const void *in, void *out, void *ctx)
{
	struct reuse *r = ctx;
	uint64_t i = *(const uint64_t *)in;

	__atomic_fetch_add(&r->runs[i], 1, __ATOMIC_RELAXED);
	if (i == REUSE_DIE && !__atomic_exchange_n(&r->died, 1, __ATOMIC_SEQ_CST)) {
		struct timespec ts = { 0, 20000000 };

		while (!__atomic_load_n(&r->after_done, __ATOMIC_ACQUIRE))
			sched_yield();
		nanosleep(&ts, NULL); /* let task 2048's result land */
		raise(SIGKILL);
	}
	if (i == REUSE_AFTER)
		__atomic_store_n(&r->after_done, 1, __ATOMIC_RELEASE);
	*(uint64_t *)out = i * 5;
	return 0;
}

Test(map, crash_after_slot_reuse_reports_only_the_running_task, .timeout = 30)
{
	shp_pool *p = pool_of(2, 0);
	struct reuse *r = shp_alloc(p, sizeof(*r));
	uint64_t *in = shp_alloc(p, REUSE_N * sizeof(uint64_t));
	static uint64_t out[REUSE_N];
	static int st[REUSE_N];

	cr_assert_not_null(r);
	cr_assert_not_null(in);
	memset(r, 0, sizeof(*r));
	for (uint64_t i = 0; i < REUSE_N; i++)
		in[i] = i;
	/* chunksize n: the first chunk is the whole window, [0, 2048). */
	cr_assert_eq(shp_map(p, die_after_reuse, r, in, sizeof(uint64_t), out,
	                     sizeof(uint64_t), REUSE_N, REUSE_N, st), SHP_ETASK);
	for (uint64_t i = 0; i < REUSE_N; i++) {
		if (i == REUSE_DIE) {
			cr_expect_eq(st[i], SHP_ECRASHED);
			continue;
		}
		cr_expect_eq(st[i], 0, "status[%" PRIu64 "] = %d", i, st[i]);
		cr_expect_eq(out[i], i * 5);
		cr_expect_eq(r->runs[i], 1, "task %" PRIu64 " ran %u times", i,
		             r->runs[i]);
	}
	shp_pool_destroy(p);
}
