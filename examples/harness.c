/*
 * A benchmark harness: two implementations of one function, counting the
 * primes below N, timed side by side.
 *
 * Each timing run is one task, and runs in a fresh worker process
 * (max_tasks_per_worker = 1): no run inherits another's heap or warm
 * caches, and a run that crashes costs its row, not the harness. Runs are
 * interleaved in rounds (trial, sieve, trial, sieve, ...) so that noise on
 * the machine falls on both alike, and shp_map hands the rows back in that
 * order whatever order they finish in: the table is the same every time
 * but for the timings.
 *
 *   harness [N [ROUNDS]]        defaults: 200000 and 3
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <shmpool.h>

static long count_trial(long n)
{
	long count = n > 2;

	for (long k = 3; k < n; k += 2) {
		long d = 3;

		while (d * d <= k && k % d != 0)
			d += 2;
		count += d * d > k;
	}
	return count;
}

static long count_sieve(long n)
{
	char *composite = calloc((size_t)n + 1, 1);
	long count = 0;

	if (!composite)
		return -1;
	for (long k = 2; k < n; k++) {
		if (composite[k])
			continue;
		count++;
		for (long m = k * k; m < n; m += k)
			composite[m] = 1;
	}
	free(composite);
	return count;
}

static const struct impl {
	const char *name;
	long (*count)(long n);
} impls[] = { { "trial", count_trial }, { "sieve", count_sieve } };
#define NIMPL (sizeof(impls) / sizeof(impls[0]))

struct run {
	unsigned impl, round;
	long n;
};

struct timing {
	long answer;
	double ms;
};

/* The task: one timed run, in a worker process of its own. */
static int run_task(const void *in, void *out, void *ctx)
{
	const struct run *r = in;
	struct timing *t = out;
	struct timespec a, b;

	(void)ctx;
	clock_gettime(CLOCK_MONOTONIC, &a);
	t->answer = impls[r->impl].count(r->n);
	clock_gettime(CLOCK_MONOTONIC, &b);
	t->ms = (double)(b.tv_sec - a.tv_sec) * 1e3 +
	        (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	return t->answer < 0; /* status 1: the run failed */
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
	unsigned rounds = argc > 2 ? (unsigned)strtol(argv[2], NULL, 10) : 3;
	/* One worker: runs one at a time, so that they do not compete for
	 * the machine; each in a new process. */
	struct shp_pool_options opt = { .workers = 1, .max_tasks_per_worker = 1 };
	size_t nruns = NIMPL * rounds;
	struct run *runs;
	struct timing *t;
	int *status, err, ok = 1, ret = 1;
	double best[NIMPL];
	shp_pool *pool;

	if (n < 2 || rounds < 1 || rounds > 1000) {
		fprintf(stderr, "usage: harness [N >= 2 [ROUNDS 1..1000]]\n");
		return 2;
	}
	runs = calloc(nruns, sizeof(*runs));
	t = calloc(nruns, sizeof(*t));
	status = calloc(nruns, sizeof(*status));
	if (!runs || !t || !status) {
		fprintf(stderr, "harness: out of memory\n");
		goto out;
	}
	/* i / NIMPL < rounds <= 1000: both fit. */
	for (size_t i = 0; i < nruns; i++)
		runs[i] = (struct run){ (unsigned)(i % NIMPL), (unsigned)(i / NIMPL), n };

	err = shp_pool_create(&pool, &opt);
	if (err) {
		fprintf(stderr, "shp_pool_create: %s\n", shp_strerror(err));
		goto out;
	}
	/* chunksize 1: one run per hand-out, hence per process. */
	err = shp_map(pool, run_task, NULL, runs, sizeof(*runs), t, sizeof(*t),
	              nruns, 1, status);
	shp_pool_destroy(pool);
	if (err && err != SHP_ETASK) {
		fprintf(stderr, "shp_map: %s\n", shp_strerror(err));
		goto out;
	}

	printf("primes below %ld: %zu implementations, %u rounds, "
	       "a process per run\n", n, NIMPL, rounds);
	printf("round  impl       answer         ms\n");
	for (size_t i = 0; i < NIMPL; i++)
		best[i] = -1;
	for (size_t i = 0; i < nruns; i++) {
		const struct run *r = &runs[i];

		if (status[i] != 0) {
			printf("%5u  %-6s  failed: %s\n", r->round,
			       impls[r->impl].name,
			       status[i] > 0 ? "status 1" : shp_strerror(status[i]));
			ok = 0;
			continue;
		}
		printf("%5u  %-6s %9ld %10.3f\n", r->round, impls[r->impl].name,
		       t[i].answer, t[i].ms);
		if (best[r->impl] < 0 || t[i].ms < best[r->impl])
			best[r->impl] = t[i].ms;
		ok &= t[i].answer == t[0].answer;
	}
	for (size_t i = 0; i < NIMPL; i++)
		printf(" best  %-6s %9s %10.3f\n", impls[i].name, "", best[i]);
	printf("time ratio %s/%s: %.1f\n", impls[0].name, impls[1].name,
	       best[0] / best[1]);
	if (ok)
		printf("answers agree: %ld\n", t[0].answer);
	else
		printf("answers differ, or a run failed\n");
	ret = !ok;
out:
	free(runs);
	free(t);
	free(status);
	return ret;
}
