/*
 * Wake-up latency of a sleeping worker: from the call to the first
 * instruction of the task, with every worker asleep on its futex (the pool
 * is told never to spin). The peer: a thread asleep on a condition
 * variable, woken the same way, which is what a thread pool pays.
 *
 * Two pools: one worker (the target's case: one sleeping worker), and
 * cfg->workers, where the eventcount wakes every sleeper for one task and
 * they contend for the CPUs the first one needs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "harness.h"
#include "shmpool.h"

#define GAP_NS 1000000 /* between samples: every sleeper back asleep */
#define TARGET_P50_US 20.0
#define TARGET_P99_US 100.0

static int stamp(const void *in, void *out, void *ctx)
{
	(void)in;
	(void)ctx;
	*(uint64_t *)out = bench_now_ns();
	return 0;
}

struct sleeper {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t seq, done, woke_at;
	bool stop;
	pthread_t th;
};

static void *sleeper_main(void *arg)
{
	struct sleeper *s = arg;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		while (s->done == s->seq && !s->stop)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->stop)
			break;
		s->woke_at = bench_now_ns();
		s->done = s->seq;
		pthread_cond_broadcast(&s->cond);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

static void gap(void)
{
	struct timespec ts = { 0, GAP_NS };

	nanosleep(&ts, NULL);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* p50, p99 and max of k samples, in place. */
static void percentiles(uint64_t *v, size_t k, uint64_t out[3])
{
	qsort(v, k, sizeof(*v), cmp_u64);
	out[0] = v[k / 2];
	out[1] = v[(k * 99) / 100 < k ? (k * 99) / 100 : k - 1];
	out[2] = v[k - 1];
}

/* k wake-ups of a pool worker; false on a wrong result. */
static int sample_pool(shp_pool *p, uint64_t *v, size_t k)
{
	for (size_t i = 0; i < k; i++) {
		uint64_t t0, t1 = 0;
		int err;

		gap();
		t0 = bench_now_ns();
		err = shp_apply(p, stamp, NULL, NULL, 0, &t1, sizeof(t1));
		if (err)
			return err < 0 ? err : BENCH_WRONG;
		if (t1 < t0)
			return BENCH_WRONG;
		v[i] = t1 - t0;
	}
	return 0;
}

static int sample_thread(struct sleeper *s, uint64_t *v, size_t k)
{
	for (size_t i = 0; i < k; i++) {
		uint64_t t0;

		gap();
		pthread_mutex_lock(&s->lock);
		t0 = bench_now_ns();
		s->seq++;
		pthread_cond_broadcast(&s->cond);
		while (s->done != s->seq)
			pthread_cond_wait(&s->cond, &s->lock);
		if (s->woke_at < t0) {
			pthread_mutex_unlock(&s->lock);
			return BENCH_WRONG;
		}
		v[i] = s->woke_at - t0;
		pthread_mutex_unlock(&s->lock);
	}
	return 0;
}

static const char *const what[3] = { "p50", "p99", "max" };

static int add_rows(struct bench_report *r, const char *who,
                    uint64_t (*per_run)[3], unsigned runs,
                    const struct bench_stats *peer, bool judged,
                    const char *why)
{
	for (int q = 0; q < 3; q++) {
		uint64_t *col = malloc(runs * sizeof(*col));
		struct bench_row row = { .group = "wakeup", .unit = "us",
			                 .met = -1 };
		char name[64], note[160];
		int err;

		if (!col)
			return -ENOMEM;
		for (unsigned i = 0; i < runs; i++)
			col[i] = per_run[i][q];
		err = bench_stats(col, runs, &row.st);
		free(col);
		if (err)
			return err;
		row.st.median /= 1e3;
		row.st.min /= 1e3;
		row.st.max /= 1e3;
		snprintf(name, sizeof(name), "%s %s", who, what[q]);
		row.name = name;
		if (peer) {
			row.ratio = row.st.median / (peer[q].median / 1e3);
			row.ratio_vs = q == 0 ? "condvar thread p50"
			               : q == 1 ? "condvar thread p99"
			                        : "condvar thread max";
		}
		if (judged && q < 2) {
			double t = q == 0 ? TARGET_P50_US : TARGET_P99_US;

			row.target = q == 0 ? "median wake-up <= 20 us"
			                    : "p99 wake-up <= 100 us";
			row.met = row.st.median <= t;
			if (!row.met) {
				snprintf(note, sizeof(note),
				         "%.1f us against %.0f: a futex wake-up "
				         "on this machine costs that much",
				         row.st.median, t);
				row.note = note;
			}
		}
		if (why && q == 0)
			row.note = why;
		err = bench_report_add(r, &row);
		if (err)
			return err;
	}
	return 0;
}

int bench_group_wakeup(const struct bench_cfg *cfg, struct bench_report *r)
{
	struct shp_pool_options o = { .workers = 1, .spin_us = -1 };
	size_t k = cfg->quick ? 100 : 400;
	uint64_t *v = malloc(k * sizeof(*v));
	uint64_t (*pool_q)[3] = calloc(cfg->runs, sizeof(*pool_q));
	uint64_t (*all_q)[3] = calloc(cfg->runs, sizeof(*all_q));
	uint64_t (*thr_q)[3] = calloc(cfg->runs, sizeof(*thr_q));
	struct bench_stats peer[3];
	struct sleeper s = { .lock = PTHREAD_MUTEX_INITIALIZER,
		             .cond = PTHREAD_COND_INITIALIZER };
	shp_pool *p = NULL, *pall = NULL;
	bool thread_up = false;
	char who[64];
	int err;

	if (!v || !pool_q || !all_q || !thr_q) {
		err = -ENOMEM;
		goto out;
	}
	err = shp_pool_create(&p, &o);
	o.workers = cfg->workers;
	if (!err)
		err = shp_pool_create(&pall, &o);
	if (err)
		goto out;
	err = -pthread_create(&s.th, NULL, sleeper_main, &s);
	if (err)
		goto out;
	thread_up = true;
	/* Round 0 warms up; then both, in turn, once per round. */
	for (unsigned round = 0; round <= cfg->runs && !err; round++) {
		bench_progress("wakeup", "round %u of %u", round, cfg->runs);
		err = sample_pool(p, v, k);
		if (!err && round)
			percentiles(v, k, pool_q[round - 1]);
		if (!err)
			err = sample_pool(pall, v, k);
		if (!err && round)
			percentiles(v, k, all_q[round - 1]);
		if (!err)
			err = sample_thread(&s, v, k);
		if (!err && round)
			percentiles(v, k, thr_q[round - 1]);
	}
	if (err == BENCH_WRONG) {
		struct bench_row row = { .group = "wakeup",
			                 .name = "shp sleeping worker",
			                 .unit = "us", .met = -1,
			                 .note = "WRONG RESULTS: a task started "
			                         "before it was submitted" };

		bench_report_add(r, &row);
		goto out;
	}
	if (err)
		goto out;
	for (int q = 0; q < 3; q++) {
		uint64_t col[1000];

		for (unsigned i = 0; i < cfg->runs; i++)
			col[i] = thr_q[i][q];
		err = bench_stats(col, cfg->runs, &peer[q]);
		if (err)
			goto out;
	}
	err = add_rows(r, "shp sleeping worker", pool_q, cfg->runs, peer, true,
	               NULL);
	snprintf(who, sizeof(who), "shp %u asleep", cfg->workers);
	if (!err)
		err = add_rows(r, who, all_q, cfg->runs, peer, false,
		               "every sleeper is woken for one task (the "
		               "eventcount wakes all): they contend for the "
		               "CPUs the first one needs");
	if (!err)
		err = add_rows(r, "condvar thread", thr_q, cfg->runs, NULL,
		               false, NULL);
out:
	if (thread_up) {
		pthread_mutex_lock(&s.lock);
		s.stop = true;
		pthread_cond_broadcast(&s.cond);
		pthread_mutex_unlock(&s.lock);
		pthread_join(s.th, NULL);
	}
	shp_pool_destroy(p);
	shp_pool_destroy(pall);
	free(v);
	free(all_q);
	free(pool_q);
	free(thr_q);
	return err;
}
