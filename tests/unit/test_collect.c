/*
 * Ordered collection by position: shp_collect_*.
 *
 * Writers are processes from shp_process_start. A writer that dies in the
 * middle of a put cannot be caught there reliably from outside (a put is a
 * few hundred nanoseconds), so those tests run the first half of a put
 * themselves: shp__collect_claim (lib/collect.h), the claim that
 * shp_collect_put makes, then part of the element, then they wait to be
 * killed. Impossible slot values are written through the same header.
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
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

#include "collect.h"
#include "shmpool.h"
#include "util.h"

WATCHDOG_SUITE(collect, 40);

/* A writer's job: put a pattern of its position at pos after delay_ms. */
struct job {
	shp_collect *c;
	size_t pos;
	size_t size;
	int delay_ms;
};

/* The bytes of position pos: every byte depends on pos and its index. */
static void pattern(unsigned char *b, size_t size, size_t pos)
{
	for (size_t i = 0; i < size; i++)
		b[i] = (unsigned char)mix(pos * 1000003 + i);
}

static bool is_pattern(const unsigned char *b, size_t size, size_t pos)
{
	for (size_t i = 0; i < size; i++)
		if (b[i] != (unsigned char)mix(pos * 1000003 + i))
			return false;
	return true;
}

static int writer(void *arg)
{
	const struct job *j = arg;
	unsigned char *b = malloc(j->size);

	if (!b)
		return 100;
	pattern(b, j->size, j->pos);
	sleep_ms(j->delay_ms);
	return shp_collect_put(j->c, j->pos, b) == 0 ? 0 : 101;
}

static shp_collect *collect_of(size_t n, size_t size)
{
	shp_collect *c = NULL;

	cr_assert_eq(shp_collect_create(&c, n, size), 0);
	cr_assert_not_null(c);
	return c;
}

static void expect_exit_0(shp_process *p, size_t pos)
{
	int ws = -1;

	cr_assert_eq(shp_process_join(p, -1), 0);
	cr_assert_eq(shp_process_wait_status(p, &ws), 0);
	cr_expect(WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
	          "writer %zu: status %#x", pos, ws);
}

/*
 * n writers, started in a shuffled order with random delays, each putting
 * size bytes; the reader takes 0 .. n-1 in order, each with its bytes.
 */
static void ordered_from_writers(size_t n, size_t size, int max_delay_ms)
{
	shp_collect *c = collect_of(n, size);
	struct job *jobs = calloc(n, sizeof(*jobs));
	shp_process **procs = calloc(n, sizeof(*procs));
	size_t *order = calloc(n, sizeof(*order));
	unsigned char *got = malloc(size);
	size_t pos;

	cr_assert(jobs && procs && order && got);
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t k = mix(i + 77) % (i + 1), t = order[i];

		order[i] = order[k];
		order[k] = t;
	}
	for (size_t i = 0; i < n; i++) {
		size_t w = order[i];

		jobs[w] = (struct job){ c, w, size,
		                        (int)(mix(w + 5) % (uint64_t)(max_delay_ms + 1)) };
		cr_assert_eq(shp_process_start(&procs[w], writer, &jobs[w]), 0);
	}
	for (size_t i = 0; i < n; i++) {
		pos = SIZE_MAX;
		memset(got, 0, size);
		cr_assert_eq(shp_collect_next(c, &pos, got, slack(10000 * MS)), 1,
		             "position %zu", i);
		cr_assert_eq(pos, i);
		cr_expect(is_pattern(got, size, i), "position %zu: wrong bytes", i);
	}
	pos = SIZE_MAX;
	cr_expect_eq(shp_collect_next(c, &pos, got, 0), 0);
	cr_expect_eq(pos, SIZE_MAX, "*pos set at the end");
	for (size_t i = 0; i < n; i++) {
		expect_exit_0(procs[i], i);
		shp_process_free(procs[i]);
	}
	shp_collect_destroy(c);
	free(got);
	free(order);
	free(procs);
	free(jobs);
}

Test(collect, four_writers_of_64k_in_position_order, .timeout = 30)
{
	ordered_from_writers(4, 64 * 1024, 40);
}

Test(collect, sixty_four_writers_in_random_order, .timeout = 30)
{
	ordered_from_writers(64, 40, 30);
}

Test(collect, one_byte_elements_at_once, .timeout = 30)
{
	ordered_from_writers(16, 1, 0);
}

/* ------------------------------------------------- the seed's example */

static const char chars[] = "abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

struct rand_job {
	unsigned length;
	size_t pos;
	shp_collect *output;
};

/* rand_string(length, pos, output): output.put((pos, rand_str)). */
static int rand_string(void *arg)
{
	const struct rand_job *j = arg;
	char s[16] = "";

	for (unsigned i = 0; i < j->length;) {
		unsigned char b;

		if (getrandom(&b, 1, 0) != 1)
			return 1;
		if (b < 248)
			s[i++] = chars[b % 62];
	}
	return shp_collect_put(j->output, j->pos, s) == 0 ? 0 : 2;
}

Test(collect, seed_rand_strings_need_no_sort, .timeout = 20)
{
	shp_collect *output = collect_of(4, 16);
	struct rand_job jobs[4];
	shp_process *processes[4];
	char results[4][16];
	size_t pos;
	int r;

	for (size_t x = 0; x < 4; x++) {
		jobs[x] = (struct rand_job){ 5, x, output };
		cr_assert_eq(shp_process_start(&processes[x], rand_string,
		                               &jobs[x]), 0);
	}
	for (size_t x = 0; x < 4; x++)
		expect_exit_0(processes[x], x);
	for (size_t x = 0; (r = shp_collect_next(output, &pos, results[x], 0)) == 1;
	     x++)
		cr_assert_eq(pos, x);
	cr_expect_eq(r, 0);
	for (size_t x = 0; x < 4; x++) {
		cr_expect_eq(strlen(results[x]), 5);
		cr_expect_eq(strspn(results[x], chars), 5, "'%s'", results[x]);
		shp_process_free(processes[x]);
	}
	shp_collect_destroy(output);
}

/* ------------------------------------------------------- arguments */

Test(collect, create_checks_its_arguments, .timeout = 10)
{
	shp_collect *c = (shp_collect *)&c; /* not NULL */

	cr_expect_eq(shp_collect_create(NULL, 4, 4), -EINVAL);
	cr_expect_eq(shp_collect_create(&c, 0, 4), -EINVAL);
	cr_expect_null(c, "*c not cleared on failure");
	cr_expect_eq(shp_collect_create(&c, 4, 0), -EINVAL);
	cr_expect_eq(shp_collect_create(&c, SIZE_MAX / 2, 4), -EOVERFLOW);
	cr_expect_eq(shp_collect_create(&c, SIZE_MAX / 16, 1), -EOVERFLOW);
	cr_expect_eq(shp_collect_create(&c, 4, SIZE_MAX / 2), -EOVERFLOW);
	/* Fits in a size_t, not in any address space. */
	cr_expect_eq(shp_collect_create(&c, (size_t)1 << 40, (size_t)1 << 20),
	             -ENOMEM);
	cr_expect_null(c);
	shp_collect_destroy(NULL);
}

Test(collect, put_once_per_position, .timeout = 10)
{
	shp_collect *c = collect_of(3, sizeof(int));
	int v = 7, w = 8, got = 0;
	size_t pos = 99;

	cr_expect_eq(shp_collect_put(NULL, 0, &v), -EINVAL);
	cr_expect_eq(shp_collect_put(c, 0, NULL), -EINVAL);
	cr_expect_eq(shp_collect_put(c, 3, &v), -EINVAL);
	cr_expect_eq(shp_collect_put(c, SIZE_MAX, &v), -EINVAL);
	cr_expect_eq(shp_collect_get(c, 3, &got, 0), -EINVAL);
	cr_expect_eq(shp_collect_get(NULL, 0, &got, 0), -EINVAL);
	cr_expect_eq(shp_collect_next(NULL, &pos, &got, 0), -EINVAL);
	cr_expect_eq(pos, 99);

	cr_expect_eq(shp_collect_put(c, 1, &v), 0);
	cr_expect_eq(shp_collect_put(c, 1, &w), -EEXIST);
	cr_expect_eq(shp_collect_fail(c, 1, SHP_ECRASHED), -EEXIST);
	cr_expect_eq(shp_collect_get(c, 1, &got, 0), 1);
	cr_expect_eq(got, 7, "the second put changed the element");
	shp_collect_destroy(c);
}

/* --------------------------------------------------------- timeouts */

Test(collect, timeouts_keep_the_cursor, .timeout = 10)
{
	shp_collect *c = collect_of(2, sizeof(int));
	int v = 41, got = -1;
	size_t pos = 99;
	int64_t t0, dt;

	t0 = now_ns();
	cr_expect_eq(shp_collect_next(c, &pos, &got, 0), -ETIMEDOUT);
	dt = now_ns() - t0;
	cr_expect_lt(dt, slack(10 * MS), "a poll took %lld ns", (long long)dt);
	cr_expect_eq(pos, 0, "*pos is the position awaited");
	cr_expect_eq(got, -1);

	t0 = now_ns();
	cr_expect_eq(shp_collect_next(c, &pos, &got, 50 * MS), -ETIMEDOUT);
	dt = now_ns() - t0;
	cr_expect_geq(dt, 50 * MS, "returned early: %lld ns", (long long)dt);
	cr_expect_lt(dt, 50 * MS + slack(100 * MS), "returned late: %lld ns",
	             (long long)dt);
	cr_expect_eq(shp_collect_get(c, 1, &got, 30 * MS), -ETIMEDOUT);

	/* A live writer mid-write: wait, never "crashed". */
	cr_assert_eq(shp__collect_claim(c, 0), 0);
	cr_expect_eq(shp_collect_next(c, &pos, &got, 30 * MS), -ETIMEDOUT);
	cr_expect_eq(shp_collect_put(c, 0, &v), -EEXIST);
	*(int *)shp__collect_elem(c, 0) = v;
	cr_assert_eq(shp__collect_publish(c, 0, SHP_COLLECT_DONE), 0);

	cr_expect_eq(shp_collect_next(c, &pos, &got, 0), 1);
	cr_expect_eq(pos, 0);
	cr_expect_eq(got, 41);
	cr_expect_eq(shp_collect_put(c, 1, &v), 0);
	cr_expect_eq(shp_collect_next(c, &pos, NULL, -1), 1);
	cr_expect_eq(pos, 1);
	cr_expect_eq(shp_collect_next(c, &pos, &got, -1), 0);
	shp_collect_destroy(c);
}

/* Puts *pos's pattern after 100 ms (a thread of the reader's process). */
struct later {
	shp_collect *c;
	size_t pos;
	int status; /* 0: put; else shp_collect_fail with it */
	int ret;
};

static void *put_later(void *arg)
{
	struct later *l = arg;
	int v = (int)l->pos * 10;

	sleep_ms(100);
	l->ret = l->status ? shp_collect_fail(l->c, l->pos, l->status)
	                   : shp_collect_put(l->c, l->pos, &v);
	return NULL;
}

Test(collect, get_waits_for_its_position_and_leaves_the_cursor, .timeout = 10)
{
	shp_collect *c = collect_of(4, sizeof(int));
	struct later l = { c, 2, 0, -1 };
	int got = -1, zero = 0;
	size_t pos;
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, put_later, &l), 0);
	cr_expect_eq(shp_collect_get(c, 2, &got, slack(5000 * MS)), 1);
	cr_expect_eq(got, 20);
	pthread_join(t, NULL);
	cr_expect_eq(l.ret, 0);
	cr_expect_eq(shp_collect_get(c, 2, &got, 0), 1, "get is repeatable");
	cr_expect_eq(shp_collect_put(c, 0, &zero), 0);
	cr_expect_eq(shp_collect_next(c, &pos, &got, 0), 1);
	cr_expect_eq(pos, 0, "get moved the cursor");
	shp_collect_destroy(c);
}

/* ------------------------------------------------- deaths and fail() */

/* Claims its position as shp_collect_put does, writes half of the element,
 * raises the flag in *ready and waits to be killed. */
struct half {
	shp_collect *c;
	size_t pos;
	int *ready; /* shared_map() */
};

static int claim_half_and_wait(void *arg)
{
	const struct half *h = arg;

	if (shp__collect_claim(h->c, h->pos) != 0)
		return 1;
	memset(shp__collect_elem(h->c, h->pos), 0xAA, h->c->elem_size / 2);
	__atomic_store_n(h->ready, 1, __ATOMIC_SEQ_CST);
	for (;;)
		pause();
	return 0;
}

static void wait_ready(int *ready)
{
	for (int i = 0; i < 5000 && !__atomic_load_n(ready, __ATOMIC_SEQ_CST);
	     i++)
		sleep_ms(1);
	cr_assert(__atomic_load_n(ready, __ATOMIC_SEQ_CST),
	          "the writer never claimed its position");
}

Test(collect, writer_killed_mid_write_is_crashed_and_later_positions_arrive, .timeout = 20)
{
	enum { N = 6, SIZE = 64, VICTIM = 2 };
	shp_collect *c = collect_of(N, SIZE);
	int *ready = shared_map(sizeof(int));
	struct half h = { c, VICTIM, ready };
	struct job jobs[N];
	shp_process *procs[N];
	unsigned char got[SIZE];
	size_t pos;
	int ws;

	cr_assert_eq(shp_process_start(&procs[VICTIM], claim_half_and_wait, &h), 0);
	for (size_t i = 0; i < N; i++) {
		if (i == VICTIM)
			continue;
		/* Positions after the victim's come late, while the reader
		 * already waits. */
		jobs[i] = (struct job){ c, i, SIZE, i > VICTIM ? 100 : 0 };
		cr_assert_eq(shp_process_start(&procs[i], writer, &jobs[i]), 0);
	}
	wait_ready(ready);
	/* kill -9 mid-write; not joined: a zombie still, and seen dead. */
	cr_assert_eq(shp_process_kill(procs[VICTIM], SIGKILL), 0);

	for (size_t i = 0; i < N; i++) {
		memset(got, 0x55, SIZE);
		pos = SIZE_MAX;
		if (i == VICTIM) {
			cr_expect_eq(shp_collect_next(c, &pos, got, slack(5000 * MS)),
			             SHP_ECRASHED);
			cr_expect_eq(pos, VICTIM);
			for (size_t k = 0; k < SIZE; k++)
				cr_assert_eq(got[k], 0x55, "torn bytes handed out");
			continue;
		}
		cr_expect_eq(shp_collect_next(c, &pos, got, slack(5000 * MS)), 1,
		             "position %zu", i);
		cr_expect_eq(pos, i);
		cr_expect(is_pattern(got, SIZE, i), "position %zu: wrong bytes", i);
	}
	cr_expect_eq(shp_collect_next(c, &pos, got, 0), 0);
	cr_expect_eq(shp_collect_get(c, VICTIM, got, 0), SHP_ECRASHED);
	/* What the dead writer left stays: no second writer, no fail. */
	cr_expect_eq(shp_collect_put(c, VICTIM, got), -EEXIST);
	cr_expect_eq(shp_collect_fail(c, VICTIM, SHP_ECRASHED), -EEXIST);

	cr_assert_eq(shp_process_join(procs[VICTIM], -1), 0);
	cr_assert_eq(shp_process_wait_status(procs[VICTIM], &ws), 0);
	cr_expect(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL, "status %#x", ws);
	for (size_t i = 0; i < N; i++) {
		if (i != VICTIM)
			expect_exit_0(procs[i], i);
		shp_process_free(procs[i]);
	}
	munmap(ready, sizeof(int));
	shp_collect_destroy(c);
}

struct killer {
	shp_process *p;
	int64_t at;
	int ret;
};

static void *kill_later(void *arg)
{
	struct killer *k = arg;

	sleep_ms(100);
	k->at = now_ns();
	k->ret = shp_process_kill(k->p, SIGKILL);
	return NULL;
}

Test(collect, reader_asleep_on_a_killed_writer_wakes_with_crashed, .timeout = 20)
{
	shp_collect *c = collect_of(2, 32);
	int *ready = shared_map(sizeof(int));
	struct half h = { c, 0, ready };
	struct killer k = { 0 };
	shp_process *p;
	pthread_t t;
	size_t pos = SIZE_MAX;
	int64_t late;
	int r;

	cr_assert_eq(shp_process_start(&p, claim_half_and_wait, &h), 0);
	wait_ready(ready);
	k.p = p;
	cr_assert_eq(pthread_create(&t, NULL, kill_later, &k), 0);
	r = shp_collect_next(c, &pos, NULL, -1);
	late = now_ns() - k.at;
	pthread_join(t, NULL);
	cr_expect_eq(k.ret, 0);
	cr_expect_eq(r, SHP_ECRASHED);
	cr_expect_eq(pos, 0);
	/* Within a wait slice (20 ms), and more for a loaded machine. */
	cr_expect_lt(late, slack(500 * MS), "noticed after %lld ns",
	             (long long)late);
	cr_expect_eq(shp_collect_next(c, &pos, NULL, 0), -ETIMEDOUT);
	cr_expect_eq(pos, 1);
	shp_process_free(p);
	munmap(ready, sizeof(int));
	shp_collect_destroy(c);
}

/* Exits with 7 without writing its position. */
static int exits_without_writing(void *arg)
{
	(void)arg;
	return 7;
}

#define MY_STATUS (-100007) /* a status of the test's own */

Test(collect, fail_marks_a_position_whose_process_died_first, .timeout = 20)
{
	enum { N = 4, SIZE = 24, SILENT = 1 };
	shp_collect *c = collect_of(N, SIZE);
	struct job jobs[N];
	shp_process *procs[N];
	unsigned char got[SIZE];
	size_t pos;

	for (size_t i = 0; i < N; i++) {
		jobs[i] = (struct job){ c, i, SIZE, 0 };
		cr_assert_eq(shp_process_start(&procs[i], i == SILENT
		                               ? exits_without_writing : writer,
		                               &jobs[i]), 0);
	}
	/* The seed's order: join every process, then read. */
	for (size_t i = 0; i < N; i++) {
		int ws;

		cr_assert_eq(shp_process_join(procs[i], -1), 0);
		cr_assert_eq(shp_process_wait_status(procs[i], &ws), 0);
		if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
			cr_expect_eq(shp_collect_fail(c, i, MY_STATUS - 1000 *
			                              WEXITSTATUS(ws)), 0);
		else
			cr_expect_eq(shp_collect_fail(c, i, MY_STATUS), -EEXIST);
	}
	for (size_t i = 0; i < N; i++) {
		pos = SIZE_MAX;
		if (i == SILENT) {
			cr_expect_eq(shp_collect_next(c, &pos, got, 0),
			             MY_STATUS - 7000);
			cr_expect_eq(pos, SILENT);
			continue;
		}
		cr_expect_eq(shp_collect_next(c, &pos, got, 0), 1);
		cr_expect_eq(pos, i);
		cr_expect(is_pattern(got, SIZE, i));
	}
	cr_expect_eq(shp_collect_next(c, &pos, got, 0), 0);
	cr_expect_eq(shp_collect_get(c, SILENT, got, -1), MY_STATUS - 7000);
	cr_expect_eq(shp_collect_put(c, SILENT, got), -EEXIST);
	cr_expect_eq(shp_collect_fail(c, SILENT, MY_STATUS), -EEXIST);
	for (size_t i = 0; i < N; i++)
		shp_process_free(procs[i]);
	shp_collect_destroy(c);
}

Test(collect, fail_checks_its_status, .timeout = 10)
{
	shp_collect *c = collect_of(2, 8);
	size_t pos;

	cr_expect_eq(shp_collect_fail(NULL, 0, SHP_ECRASHED), -EINVAL);
	cr_expect_eq(shp_collect_fail(c, 2, SHP_ECRASHED), -EINVAL);
	cr_expect_eq(shp_collect_fail(c, 0, 0), -EINVAL);
	cr_expect_eq(shp_collect_fail(c, 0, 3), -EINVAL);
	cr_expect_eq(shp_collect_fail(c, 0, -ETIMEDOUT), -EINVAL);
	cr_expect_eq(shp_collect_next(c, &pos, NULL, 0), -ETIMEDOUT,
	             "a refused fail marked the position");
	cr_expect_eq(shp_collect_fail(c, 0, SHP_ETIMEDOUT), 0);
	cr_expect_eq(shp_collect_fail(c, 0, SHP_ECRASHED), -EEXIST);
	cr_expect_eq(shp_collect_next(c, &pos, NULL, 0), SHP_ETIMEDOUT);
	cr_expect_eq(pos, 0);
	shp_collect_destroy(c);
}

Test(collect, fail_wakes_a_sleeping_reader, .timeout = 10)
{
	shp_collect *c = collect_of(1, 8);
	struct later l = { c, 0, SHP_ECRASHED, -1 };
	pthread_t t;
	size_t pos = SIZE_MAX;
	int64_t t0, dt;

	t0 = now_ns();
	cr_assert_eq(pthread_create(&t, NULL, put_later, &l), 0);
	cr_expect_eq(shp_collect_next(c, &pos, NULL, slack(5000 * MS)),
	             SHP_ECRASHED);
	dt = now_ns() - t0;
	pthread_join(t, NULL);
	cr_expect_eq(l.ret, 0);
	cr_expect_eq(pos, 0);
	cr_expect_geq(dt, 100 * MS);
	cr_expect_lt(dt, 100 * MS + slack(200 * MS), "woken after %lld ns",
	             (long long)dt);
	cr_expect_eq(shp_collect_next(c, &pos, NULL, 0), 0);
	shp_collect_destroy(c);
}

/* ------------------------------------------------- impossible values */

Test(collect, impossible_slot_values_are_reported_and_skipped, .timeout = 10)
{
	enum { N = 6 };
	shp_collect *c = collect_of(N, sizeof(int));
	const int want[N] = { SHP_ECORRUPT, SHP_ECORRUPT, SHP_ECORRUPT,
		              SHP_ECORRUPT, SHP_ECRASHED, 1 };
	int v = 5, got;
	size_t pos;

	/* Pid 0 with a start time: no claim stores it, nor is it a state. */
	c->slots[0].tag = UINT64_C(5) << SHP_OWNER_PID_BITS;
	/* FAILED with statuses shp_collect_fail refuses. */
	c->slots[1].tag = SHP_COLLECT_FAILED;
	c->slots[1].status = 3;
	c->slots[2].tag = SHP_COLLECT_FAILED;
	c->slots[2].status = 0;
	c->slots[3].tag = SHP_COLLECT_FAILED;
	c->slots[3].status = -ETIMEDOUT;
	/* A claim of a process that cannot exist (no such pid): dead. */
	c->slots[4].tag = SHP_OWNER_PID_MASK;
	cr_assert_eq(shp_collect_put(c, 5, &v), 0);

	for (size_t i = 0; i < N; i++) {
		got = -1;
		pos = SIZE_MAX;
		cr_expect_eq(shp_collect_next(c, &pos, &got, 0), want[i],
		             "position %zu", i);
		cr_expect_eq(pos, i);
		cr_expect_eq(got, want[i] == 1 ? 5 : -1, "position %zu", i);
	}
	cr_expect_eq(shp_collect_next(c, &pos, &got, 0), 0);
	shp_collect_destroy(c);
}

/* A claim written over before its publish: the writer says so, and the
 * reader never sees the element. */
Test(collect, claim_written_over_makes_the_put_fail, .timeout = 10)
{
	shp_collect *c = collect_of(1, sizeof(int));
	int got = -1;

	cr_assert_eq(shp__collect_claim(c, 0), 0);
	c->slots[0].tag = SHP_COLLECT_EMPTY;
	cr_expect_eq(shp__collect_publish(c, 0, SHP_COLLECT_DONE), SHP_ECORRUPT);
	cr_expect_eq(shp_collect_get(c, 0, &got, 0), -ETIMEDOUT);
	cr_expect_eq(got, -1);
	shp_collect_destroy(c);
}
