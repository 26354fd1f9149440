#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmpool.h"

#include "atomic.h"
#include "fault.h"
#include "queue_torture.h"
#include "util.h"

WATCHDOG_SUITE(queue, 120);

static shp_queue *queue_of(size_t elem_size, size_t cap)
{
	shp_queue *q;

	cr_assert_eq(shp_queue_create(&q, elem_size, cap), 0);
	return q;
}

/* Forks a child running fn(q, arg), which exits with fn's return value. */
static pid_t spawn(int (*fn)(shp_queue *, long), shp_queue *q, long arg)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(fn(q, arg));
	return pid;
}

static int exit_code(pid_t pid)
{
	int ws;

	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* ------------------------------------------------------------ arguments */

Test(queue, create_rejects_bad_arguments, .timeout = 10)
{
	shp_queue *q = (shp_queue *)&q;

	cr_expect_eq(shp_queue_create(NULL, 8, 8), -EINVAL);
	cr_expect_eq(shp_queue_create(&q, 0, 8), -EINVAL);
	cr_expect_null(q);
	cr_expect_eq(shp_queue_create(&q, 8, 0), -EINVAL);
	cr_expect_eq(shp_queue_create(&q, (1 << 20) + 1, 8), -EINVAL);
	cr_expect_eq(shp_queue_create(&q, 8, ((size_t)1 << 30) + 1), -EINVAL);
	cr_expect_eq(shp_queue_create(&q, SIZE_MAX, SIZE_MAX), -EINVAL);
}

Test(queue, calls_reject_bad_arguments, .timeout = 10)
{
	shp_queue *q = queue_of(sizeof(int), 4);
	int v = 1, buf[4];

	cr_expect_eq(shp_queue_put(NULL, &v, -1), -EINVAL);
	cr_expect_eq(shp_queue_put(q, NULL, -1), -EINVAL);
	cr_expect_eq(shp_queue_get(NULL, &v, -1), -EINVAL);
	cr_expect_eq(shp_queue_get(q, NULL, -1), -EINVAL);
	cr_expect_eq(shp_queue_tryput(q, NULL), -EINVAL);
	cr_expect_eq(shp_queue_tryget(NULL, buf), -EINVAL);
	cr_expect_eq(shp_queue_put_bulk(q, buf, 0, -1), -EINVAL);
	cr_expect_eq(shp_queue_put_bulk(q, buf, (size_t)INT_MAX + 1, -1),
	             -EINVAL);
	cr_expect_eq(shp_queue_get_bulk(q, buf, 0, -1), -EINVAL);
	cr_expect_eq(shp_queue_close(NULL), -EINVAL);
	cr_expect_eq(shp_queue_count(NULL), -EINVAL);
	cr_expect_eq(shp_queue_count(q), 0, "a rejected call changed the queue");
	shp_queue_destroy(NULL);
	shp_queue_destroy(q);
}

/* ------------------------------------------------------------ one process */

Test(queue, fifo_order_and_count, .timeout = 10)
{
	shp_queue *q = queue_of(sizeof(long), 64);
	long v;

	for (long round = 0; round < 100; round++) {
		for (long i = 0; i < 50; i++)
			cr_assert_eq(shp_queue_put(q, &(long){ round * 50 + i },
			                           -1), 0);
		cr_assert_eq(shp_queue_count(q), 50);
		for (long i = 0; i < 50; i++) {
			cr_assert_eq(shp_queue_get(q, &v, -1), 1);
			cr_assert_eq(v, round * 50 + i);
		}
		cr_assert_eq(shp_queue_count(q), 0);
	}
	shp_queue_destroy(q);
}

Test(queue, capacity_is_exact_when_not_a_power_of_two, .timeout = 10)
{
	shp_queue *q = queue_of(sizeof(int), 3);
	int v;

	for (int i = 0; i < 3; i++)
		cr_assert_eq(shp_queue_tryput(q, &i), 0);
	cr_expect_eq(shp_queue_tryput(q, &v), -EAGAIN);
	cr_expect_eq(shp_queue_put(q, &v, 0), -ETIMEDOUT);
	cr_expect_eq(shp_queue_count(q), 3);
	cr_assert_eq(shp_queue_tryget(q, &v), 1);
	cr_expect_eq(v, 0);
	cr_expect_eq(shp_queue_tryput(q, &(int){ 3 }), 0);
	cr_expect_eq(shp_queue_tryput(q, &v), -EAGAIN);
	for (int i = 1; i <= 3; i++) {
		cr_assert_eq(shp_queue_tryget(q, &v), 1);
		cr_expect_eq(v, i);
	}
	cr_expect_eq(shp_queue_tryget(q, &v), -EAGAIN);
	shp_queue_destroy(q);
}

Test(queue, bulk_put_and_get_keep_order, .timeout = 10)
{
	shp_queue *q = queue_of(3 * sizeof(int), 16);
	int in[10][3], out[16][3];

	for (int i = 0; i < 10; i++)
		for (int k = 0; k < 3; k++)
			in[i][k] = i * 3 + k;
	cr_assert_eq(shp_queue_put_bulk(q, in, 10, -1), 10);
	/* As many as are there, up to max. */
	cr_assert_eq(shp_queue_get_bulk(q, out, 4, -1), 4);
	cr_assert_eq(shp_queue_get_bulk(q, out + 4, 16, -1), 6);
	cr_assert_arr_eq(out, in, sizeof(in));
	/* A bulk put that does not fit puts what fits when time runs out. */
	cr_assert_eq(shp_queue_put_bulk(q, in, 10, 0), 10);
	cr_assert_eq(shp_queue_put_bulk(q, in, 10, 20 * MS), 6);
	cr_expect_eq(shp_queue_count(q), 16);
	cr_expect_eq(shp_queue_put_bulk(q, in, 1, 0), -ETIMEDOUT);
	shp_queue_destroy(q);
}

Test(queue, timeouts_expire_on_empty_and_full, .timeout = 10)
{
	shp_queue *q = queue_of(sizeof(int), 1);
	int v = 7;
	int64_t t0;

	t0 = now_ns();
	cr_expect_eq(shp_queue_get(q, &v, 50 * MS), -ETIMEDOUT);
	cr_expect_geq(now_ns() - t0, 50 * MS);
	cr_expect_lt(now_ns() - t0, slack(1000 * MS));
	cr_expect_eq(shp_queue_get(q, &v, 0), -ETIMEDOUT);
	cr_expect_eq(shp_queue_tryget(q, &v), -EAGAIN);
	cr_assert_eq(shp_queue_put(q, &v, 0), 0);
	t0 = now_ns();
	cr_expect_eq(shp_queue_put(q, &v, 50 * MS), -ETIMEDOUT);
	cr_expect_geq(now_ns() - t0, 50 * MS);
	cr_expect_eq(shp_queue_count(q), 1);
	shp_queue_destroy(q);
}

static void *put_later(void *arg)
{
	int v = 42;
	struct timespec nap = { 0, 50 * MS };

	nanosleep(&nap, NULL);
	return (void *)(intptr_t)shp_queue_put(arg, &v, -1);
}

/* A timeout so large that now + timeout overflows is no deadline: the
 * get waits for the put (and the sanitizers see no signed overflow). */
Test(queue, huge_timeout_is_no_deadline, .timeout = 10)
{
	shp_queue *q = queue_of(sizeof(int), 1);
	pthread_t t;
	void *r;
	int v = 0;

	cr_assert_eq(pthread_create(&t, NULL, put_later, q), 0);
	cr_expect_eq(shp_queue_get(q, &v, INT64_MAX), 1);
	cr_expect_eq(v, 42);
	cr_assert_eq(pthread_join(t, &r), 0);
	cr_expect_eq((intptr_t)r, 0);
	shp_queue_destroy(q);
}

Test(queue, close_drains_then_ends, .timeout = 10)
{
	shp_queue *q = queue_of(sizeof(int), 8);
	int v;

	for (int i = 0; i < 5; i++)
		cr_assert_eq(shp_queue_put(q, &i, -1), 0);
	cr_assert_eq(shp_queue_close(q), 0);
	cr_assert_eq(shp_queue_close(q), 0);
	cr_expect_eq(shp_queue_put(q, &v, -1), SHP_ECLOSED);
	cr_expect_eq(shp_queue_tryput(q, &v), SHP_ECLOSED);
	cr_expect_eq(shp_queue_put_bulk(q, &v, 1, -1), SHP_ECLOSED);
	cr_expect_eq(shp_queue_count(q), 5);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(shp_queue_get(q, &v, -1), 1);
		cr_expect_eq(v, i);
	}
	for (int i = 0; i < 3; i++) {
		cr_expect_eq(shp_queue_get(q, &v, -1), 0);
		cr_expect_eq(shp_queue_tryget(q, &v), 0);
		cr_expect_eq(shp_queue_get_bulk(q, &v, 1, 0), 0);
	}
	shp_queue_destroy(q);
}

/* ------------------------------------------------------------ processes */

static int put_after_100ms(shp_queue *q, long v)
{
	sleep_ms(100);
	return shp_queue_put(q, &v, -1) == 0 ? 0 : 1;
}

Test(queue, sleeping_getter_is_woken_by_a_put_from_another_process, .timeout = 10)
{
	shp_queue *q = queue_of(sizeof(long), 4);
	/* Before the fork: the child's 100 ms may start before the parent
	 * runs again. */
	int64_t t0 = now_ns();
	pid_t pid = spawn(put_after_100ms, q, 4242);
	long v = 0;

	cr_assert_eq(shp_queue_get(q, &v, -1), 1);
	cr_expect_eq(v, 4242);
	cr_expect_geq(now_ns() - t0, 90 * MS);
	cr_expect_eq(exit_code(pid), 0);
	shp_queue_destroy(q);
}

static int close_after_100ms(shp_queue *q, long unused)
{
	(void)unused;
	sleep_ms(100);
	return shp_queue_close(q) == 0 ? 0 : 1;
}

Test(queue, close_from_another_process_wakes_getter_and_putter, .timeout = 10)
{
	shp_queue *q = queue_of(sizeof(long), 1);
	long v = 1;
	pid_t pid;

	pid = spawn(close_after_100ms, q, 0);
	cr_expect_eq(shp_queue_get(q, &v, -1), 0);
	cr_expect_eq(exit_code(pid), 0);
	shp_queue_destroy(q);

	q = queue_of(sizeof(long), 1);
	cr_assert_eq(shp_queue_put(q, &v, -1), 0);
	pid = spawn(close_after_100ms, q, 0);
	cr_expect_eq(shp_queue_put(q, &v, -1), SHP_ECLOSED);
	cr_expect_eq(exit_code(pid), 0);
	cr_expect_eq(shp_queue_get(q, &v, -1), 1);
	cr_expect_eq(shp_queue_get(q, &v, -1), 0);
	shp_queue_destroy(q);
}

/*
 * MPMC across processes: producers put (producer << 32 | i), consumers
 * count every element into a shared table and check that each producer's
 * elements reach them in the order put.
 */
#define PRODUCERS 4
#define CONSUMERS 3

struct mpmc {
	long per_producer;
	uint32_t seen[PRODUCERS][1 << 17]; /* times element i was taken */
	long out_of_order;
};

static struct mpmc *mp;

static int produce(shp_queue *q, long p)
{
	for (long i = 0; i < mp->per_producer; i++) {
		uint64_t v = (uint64_t)p << 32 | (uint64_t)i;

		if (i % 7 == 0) {
			uint64_t run[5];
			long k;

			for (k = 0; k < 5 && i + k < mp->per_producer; k++)
				run[k] = (uint64_t)p << 32 | (uint64_t)(i + k);
			if (shp_queue_put_bulk(q, run, (size_t)k, -1) != k)
				return 1;
			i += k - 1;
		} else if (shp_queue_put(q, &v, -1)) {
			return 1;
		}
	}
	return 0;
}

static int consume(shp_queue *q, long unused)
{
	long last[PRODUCERS];
	uint64_t buf[8];
	int n;

	(void)unused;
	for (int p = 0; p < PRODUCERS; p++)
		last[p] = -1;
	while ((n = shp_queue_get_bulk(q, buf, 1 + (size_t)(getpid() % 8),
	                               -1)) > 0) {
		for (int k = 0; k < n; k++) {
			unsigned p = (unsigned)(buf[k] >> 32);
			long i = (long)(buf[k] & 0xffffffff);

			if (p >= PRODUCERS || i >= mp->per_producer)
				return 2;
			uatomic_inc(&mp->seen[p][i]);
			if (i <= last[p])
				uatomic_inc(&mp->out_of_order);
			last[p] = i;
		}
	}
	return n == 0 ? 0 : 3;
}

Test(queue, mpmc_across_processes_delivers_each_once_in_order, .timeout = 120)
{
	shp_queue *q = queue_of(sizeof(uint64_t), 64);
	pid_t prod[PRODUCERS], cons[CONSUMERS];

	mp = shared_map(sizeof(*mp));
	mp->per_producer = (long)scaled(100000);
	for (long c = 0; c < CONSUMERS; c++)
		cons[c] = spawn(consume, q, 0);
	for (long p = 0; p < PRODUCERS; p++)
		prod[p] = spawn(produce, q, p);
	for (int p = 0; p < PRODUCERS; p++)
		cr_expect_eq(exit_code(prod[p]), 0);
	cr_assert_eq(shp_queue_close(q), 0);
	for (int c = 0; c < CONSUMERS; c++)
		cr_expect_eq(exit_code(cons[c]), 0);
	for (int p = 0; p < PRODUCERS; p++)
		for (long i = 0; i < mp->per_producer; i++)
			cr_assert_eq(mp->seen[p][i], 1,
			             "producer %d element %ld taken %u times",
			             p, i, mp->seen[p][i]);
	cr_expect_eq(mp->out_of_order, 0);
	cr_expect_eq(shp_queue_count(q), 0);
	munmap(mp, sizeof(*mp));
	shp_queue_destroy(q);
}

static void *put_get_once(void *arg)
{
	shp_queue *q = arg;
	int v = 7, got = 0;
	intptr_t r = shp_queue_tryput(q, &v);

	if (r == 0)
		r = shp_queue_tryget(q, &got) == 1 && got == v ? 0 : -1;
	return (void *)r;
}

/* Each thread takes an entry at its first call and gives it back when it
 * exits: far more than 1024 threads, one after another, all get one. */
Test(queue, exited_threads_give_their_entries_back, .timeout = 60)
{
	shp_queue *q = queue_of(sizeof(int), 4);

	for (int i = 0; i < 3000; i++) {
		pthread_t t;
		void *r;

		cr_assert_eq(pthread_create(&t, NULL, put_get_once, q), 0);
		cr_assert_eq(pthread_join(t, &r), 0);
		cr_assert_eq((intptr_t)r, 0, "thread %d: %ld", i, (long)(intptr_t)r);
	}
	cr_expect_eq(shp_queue_count(q), 0);
	shp_queue_destroy(q);
}

struct outlive {
	shp_queue *q;
	pthread_barrier_t b;
};

static void *outlive_body(void *arg)
{
	struct outlive *o = arg;
	int v = 1, got = 0;
	intptr_t r = shp_queue_tryput(o->q, &v) == 0 &&
	             shp_queue_tryget(o->q, &got) == 1 && got == v ? 0 : -1;

	pthread_barrier_wait(&o->b); /* it has used q */
	pthread_barrier_wait(&o->b); /* q is gone */
	return (void *)r;
}

enum { NQ = 12 };

static void *destroy_odd(void *arg)
{
	shp_queue **q = arg;

	for (int k = 1; k < NQ; k += 2)
		shp_queue_destroy(q[k]);
	return NULL;
}

/* A thread that uses more queues than it keeps entries of at hand, in
 * turn: every call works, however many (each queue has 1024 entries, and
 * each queue here gets 1100 calls). */
Test(queue, one_thread_cycling_through_many_queues_never_runs_out, .timeout = 60)
{
	shp_queue *q[NQ];
	pthread_t t;

	for (int k = 0; k < NQ; k++)
		q[k] = queue_of(sizeof(int), 2);
	for (int i = 0; i < NQ * 1100; i++) {
		int v = i, got = -1;

		cr_assert_eq(shp_queue_put(q[i % NQ], &v, 0), 0, "put %d", i);
		cr_assert_eq(shp_queue_get(q[i % NQ], &got, 0), 1, "get %d", i);
		cr_assert_eq(got, v);
	}
	/* Another thread destroys half of them: this thread's cached entries
	 * of those are never touched again, and their slots serve the rest. */
	cr_assert_eq(pthread_create(&t, NULL, destroy_odd, q), 0);
	cr_assert_eq(pthread_join(t, NULL), 0);
	for (int i = 0; i < 200; i++) {
		int v = i, got = -1;
		shp_queue *x = q[2 * (i % (NQ / 2))];

		cr_assert_eq(shp_queue_put(x, &v, 0), 0);
		cr_assert_eq(shp_queue_get(x, &got, 0), 1);
		cr_assert_eq(got, v);
	}
	for (int k = 0; k < NQ; k += 2)
		shp_queue_destroy(q[k]);
}

/* A thread that outlives a queue it used (another thread destroyed it)
 * exits without touching the unmapped memory. */
Test(queue, thread_exit_after_destroy_by_another_thread, .timeout = 10)
{
	struct outlive o = { .q = queue_of(sizeof(int), 4) };
	pthread_t t;
	void *r;

	cr_assert_eq(pthread_barrier_init(&o.b, NULL, 2), 0);
	cr_assert_eq(pthread_create(&t, NULL, outlive_body, &o), 0);
	pthread_barrier_wait(&o.b);
	shp_queue_destroy(o.q);
	pthread_barrier_wait(&o.b);
	cr_assert_eq(pthread_join(t, &r), 0);
	cr_expect_eq((intptr_t)r, 0);
	pthread_barrier_destroy(&o.b);
}

/* Random SIGKILLs of producers and consumers in the middle of their puts
 * and gets: tests/queue_torture.h says what is checked. */
Test(queue, random_kills_lose_nothing_and_never_wedge, .timeout = 120)
{
	struct queue_torture_cfg cfg = {
		.producers = 6, .consumers = 3, .capacity = 16,
		.millis = (long)slack(1500 * MS) / MS, .kill_us = 1000, .seed = 7,
		.min_kills = 20,
	};
	struct queue_torture_result r;

	cr_assert_eq(queue_torture(&cfg, &r), 0);
	cr_expect_eq(r.duplicated, 0);
	cr_expect_eq(r.torn, 0);
	cr_expect_eq(r.failed_children, 0);
	cr_expect_eq(r.wedged, 0);
	cr_expect_leq(r.missing, r.consumer_kills,
	              "%" PRIu64 " lost to %" PRIu64 " consumer kills",
	              r.missing, r.consumer_kills);
	/* The run goes on until both sides saw min_kills, within a bound. */
	cr_expect_geq(r.producer_kills, cfg.min_kills);
	cr_expect_geq(r.consumer_kills, cfg.min_kills);
	cr_expect_gt(r.delivered, 1000, "nothing flowed");
}

#ifdef SHP_FAULT_INJECTION

/*
 * Every queue kill point, deterministic: a child is killed at the point
 * in its put (or get) of a bulk of 3, after the elements before; then the
 * parent takes everything and checks what arrived, and that the whole
 * capacity is usable again.
 */
struct qfault {
	enum shp__fault_point point;
	unsigned hit;
	/* Bit i: element i of the child's bulk (put: 100 + i; get: i)
	 * arrives at the parent. */
	unsigned arrive;
};

static int child_put(shp_queue *q, long unused)
{
	int v[3] = { 100, 101, 102 };

	(void)unused;
	return shp_queue_put_bulk(q, v, 3, -1) == 3 ? 0 : 1;
}

static int child_get(shp_queue *q, long unused)
{
	int v[3];

	(void)unused;
	return shp_queue_get_bulk(q, v, 3, -1) == 3 ? 0 : 1;
}

ParameterizedTestParameters(queue, every_kill_point)
{
	static struct qfault cases[] = {
		{ SHP_FAULT_QPUT_CLAIMED, 1, 0 },
		{ SHP_FAULT_QPUT_WON, 1, 0 },
		{ SHP_FAULT_QPUT_WRITTEN, 1, 0 },
		{ SHP_FAULT_QPUT_WRITTEN, 2, 1 },
		{ SHP_FAULT_QPUT_WRITTEN, 3, 3 },
		{ SHP_FAULT_QPUT_PUBLISHED, 1, 7 },
		{ SHP_FAULT_QGET_CLAIMED, 1, 7 },
		{ SHP_FAULT_QGET_WON, 1, 7 },
		{ SHP_FAULT_QGET_COPIED, 1, 7 },
		{ SHP_FAULT_QGET_COPIED, 2, 6 },
		{ SHP_FAULT_QGET_COPIED, 3, 4 },
		{ SHP_FAULT_QGET_RELEASED, 1, 0 },
	};

	return cr_make_param_array(struct qfault, cases,
	                           sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct qfault *f, queue, every_kill_point, .timeout = 30)
{
	bool getter = f->point >= SHP_FAULT_QGET_CLAIMED;
	shp_queue *q = queue_of(sizeof(int), 8);
	unsigned arrived = 0;
	int v[16], n = 0, ws;
	pid_t pid;

	cr_assert_eq(shp__fault_arm(f->point, f->hit), 0);
	if (getter)
		for (int i = 0; i < 5; i++)
			cr_assert_eq(shp_queue_put(q, &i, -1), 0);
	pid = spawn(getter ? child_get : child_put, q, 0);
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	cr_assert(shp__fault_disarm(), "%s hit %u never fired",
	          shp__fault_names[f->point], f->hit);
	cr_assert(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	if (!getter)
		for (int i = 0; i < 5; i++)
			cr_assert_eq(shp_queue_put(q, &(int){ 10 + i }, -1), 0);
	cr_assert_eq(shp_queue_close(q), 0);
	/* Everything that arrives, each once; the getters left waiting on
	 * the dead one's cells find them within a slice. */
	while (n < 16 && shp_queue_get(q, &v[n], 5000 * MS) == 1)
		n++;
	cr_assert_lt(n, 16, "more arrived than was put");
	cr_expect_eq(shp_queue_get(q, &v[n], 0), 0, "no end marker");
	for (int k = 0; k < n; k++) {
		int x = v[k];

		if (getter) {
			cr_assert(x >= 0 && x < 5);
			if (x < 3) {
				cr_assert_not(arrived & 1u << x, "%d twice", x);
				arrived |= 1u << x;
			}
		} else if (x >= 100) {
			cr_assert(x <= 102);
			cr_assert_not(arrived & 1u << (x - 100), "%d twice", x);
			arrived |= 1u << (x - 100);
		}
	}
	cr_expect_eq(arrived, f->arrive, "%s hit %u: arrived %#x, want %#x",
	             shp__fault_names[f->point], f->hit, arrived, f->arrive);
	/* The parent's own elements all arrived. */
	cr_expect_eq(n, (getter ? 2 : 5) + __builtin_popcount(f->arrive));
	shp_queue_destroy(q);

	/* Nothing of the dead one's is left holding cells: a queue whose
	 * participant died mid-put takes its full capacity again. */
	q = queue_of(sizeof(int), 4);
	cr_assert_eq(shp__fault_arm(f->point, 1), 0);
	if (getter)
		cr_assert_eq(shp_queue_put_bulk(q, v, 3, -1), 3);
	pid = spawn(getter ? child_get : child_put, q, 0);
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
	shp__fault_disarm();
	for (int i = 0; i < 64; i++) {
		int x;

		while (shp_queue_tryput(q, &i) != 0)
			cr_assert_eq(shp_queue_get(q, &x, 5000 * MS), 1,
			             "wedged after %d", i);
	}
	cr_expect_eq(shp_queue_count(q), 4);
	shp_queue_destroy(q);
}

#endif
