/*
 * bench_map: per-task overhead of shp_map with an empty task, side by side
 * with a serial loop and OpenMP loops over the same inputs, in one run.
 *
 * The target (docs/benchmarks.md) compares shp_map with chunksize 1 to
 * OpenMP schedule(dynamic,1): a process pool should cost about what a
 * thread loop costs per iteration. The task does almost nothing (out = in
 * + 1 on a uint64), so the wall time divided by n is the per-task overhead
 * of the scheduler itself. Every result is checked against the serial
 * one, in order, after every run: a fast wrong answer must not pass.
 *
 * Exit status: 0 after a measurement (whether or not the target is met),
 * 1 on a wrong result or an error from the library, 2 when the benchmark
 * could not be run (bad arguments, no memory, CSV file not writable).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <shmpool.h>

#include "common.h"

#define DEFAULT_N 1000000
#define DEFAULT_RUNS 5
#define QUICK_N 200000
#define QUICK_RUNS 3
#define MAX_N (UINT64_C(1) << 30)
#define TARGET_RATIO 2.0 /* shp_map cs 1 vs OpenMP dynamic,1, per task */

#define EXIT_WRONG 1     /* wrong result or library error */
#define EXIT_SETUP 2     /* could not run the benchmark at all */

#define ERR_MISMATCH 1   /* bench_fn value: the output was wrong */

static int task_inc(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(uint64_t *)out = *(const uint64_t *)in + 1;
	return 0;
}

/*
 * Every variant loads the task from here. The volatile read means the
 * compiler cannot know which function is called, so it can neither inline
 * the task into the loops nor delete the loops: serial and OpenMP pay an
 * indirect call per element, as the pool's workers do.
 */
static shp_fn volatile task_ptr = task_inc;

enum kind {
	K_SERIAL,
	K_OMP_DYNAMIC1,
	K_OMP_STATIC,
	K_SHP,
	K_SHP_ASYNC,
	K_SHP_APPLY_ASYNC,
	K_SHP_IMAP,
};

struct variant {
	const char *name;  /* CSV and messages */
	const char *label; /* table */
	enum kind kind;
	size_t chunksize;  /* K_SHP only */
	bool zero_copy;    /* K_SHP only: in and out from shp_alloc() */
	size_t share;      /* runs n / share tasks (0: all n) */
	/* filled in by the run */
	bool ran;
	uint64_t *samples; /* one per round */
	struct bench_stats st;
};

static struct variant variants[] = {
	{ .name = "serial", .label = "serial loop (fn ptr)",
	  .kind = K_SERIAL },
	{ .name = "omp_dynamic1", .label = "OpenMP dynamic,1",
	  .kind = K_OMP_DYNAMIC1 },
	{ .name = "omp_static", .label = "OpenMP static",
	  .kind = K_OMP_STATIC },
	{ .name = "shp_map_cs1", .label = "shp_map cs=1",
	  .kind = K_SHP, .chunksize = 1 },
	{ .name = "shp_map_auto", .label = "shp_map cs=0 (auto)",
	  .kind = K_SHP, .chunksize = 0 },
	{ .name = "shp_map_cs1_zerocopy", .label = "shp_map cs=1 zero-copy",
	  .kind = K_SHP, .chunksize = 1, .zero_copy = true },
	{ .name = "shp_map_async_cs1", .label = "shp_map_async cs=1",
	  .kind = K_SHP_ASYNC, .chunksize = 1 },
	{ .name = "shp_imap_cs1", .label = "shp_imap cs=1",
	  .kind = K_SHP_IMAP, .chunksize = 1 },
	{ .name = "shp_imap_auto", .label = "shp_imap cs=0 (auto)",
	  .kind = K_SHP_IMAP, .chunksize = 0 },
	/* One call per task: a tenth of n keeps the run short. */
	{ .name = "shp_apply_async", .label = "shp_apply_async (n/10)",
	  .kind = K_SHP_APPLY_ASYNC, .share = 10 },
};

#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))
#define V_SERIAL 0
#define V_OMP_DYNAMIC1 1
#define V_SHP_CS1 3

/* What a bench_fn needs: the current variant's buffers and parameters. */
struct ctx {
	shp_pool *pool;
	unsigned workers;
	size_t n;
	const struct variant *v;
	const uint64_t *in;
	uint64_t *out;
	const uint64_t *ref; /* the serial result */
	int lib_err;         /* the library's error, when a call failed */
};

static int run_serial(void *arg)
{
	struct ctx *c = arg;
	shp_fn fn = task_ptr;

	/* The task cannot fail; its status is ignored in every variant
	 * except shp_map, which reports it as SHP_ETASK. */
	for (size_t i = 0; i < c->n; i++)
		(void)fn(&c->in[i], &c->out[i], NULL);
	return 0;
}

#ifdef _OPENMP
static int run_omp_dynamic1(void *arg)
{
	struct ctx *c = arg;
	shp_fn fn = task_ptr;
	const uint64_t *in = c->in;
	uint64_t *out = c->out;
	size_t n = c->n;

#pragma omp parallel for schedule(dynamic, 1) num_threads(c->workers)
	for (size_t i = 0; i < n; i++)
		(void)fn(&in[i], &out[i], NULL);
	return 0;
}

static int run_omp_static(void *arg)
{
	struct ctx *c = arg;
	shp_fn fn = task_ptr;
	const uint64_t *in = c->in;
	uint64_t *out = c->out;
	size_t n = c->n;

#pragma omp parallel for schedule(static) num_threads(c->workers)
	for (size_t i = 0; i < n; i++)
		(void)fn(&in[i], &out[i], NULL);
	return 0;
}
#endif

static int run_shp(void *arg)
{
	struct ctx *c = arg;
	int err = shp_map(c->pool, task_ptr, NULL, c->in, sizeof(uint64_t),
	                  c->out, sizeof(uint64_t), c->n, c->v->chunksize,
	                  NULL);

	if (err) {
		fprintf(stderr, "bench_map: %s: shp_map: %s\n", c->v->name,
		        shp_strerror(err));
		c->lib_err = err;
	}
	return err;
}

static int run_shp_async(void *arg)
{
	struct ctx *c = arg;
	shp_async *h;
	int err = shp_map_async(c->pool, task_ptr, NULL, c->in,
	                        sizeof(uint64_t), c->out, sizeof(uint64_t),
	                        c->n, c->v->chunksize, NULL, &h);

	if (!err) {
		err = shp_async_wait(h, -1);
		if (!err)
			err = shp_async_result(h);
		shp_async_free(h);
	}
	if (err) {
		fprintf(stderr, "bench_map: %s: shp_map_async: %s\n",
		        c->v->name, shp_strerror(err));
		c->lib_err = err;
	}
	return err;
}

#define APPLY_BATCH 256 /* handles in flight at once */

static int run_shp_apply_async(void *arg)
{
	struct ctx *c = arg;
	shp_async *h[APPLY_BATCH];
	int err = 0;

	for (size_t i = 0; i < c->n && !err; i += APPLY_BATCH) {
		size_t k = c->n - i < APPLY_BATCH ? c->n - i : APPLY_BATCH;
		size_t got = 0;

		for (; got < k && !err; got++)
			err = shp_apply_async(c->pool, task_ptr, NULL,
			                      &c->in[i + got], sizeof(uint64_t),
			                      &c->out[i + got],
			                      sizeof(uint64_t), &h[got]);
		if (err)
			got--; /* the failed one has no handle */
		for (size_t j = 0; j < got; j++) {
			int r = shp_async_wait(h[j], -1);

			if (!r)
				r = shp_async_result(h[j]);
			if (r && !err)
				err = r;
			shp_async_free(h[j]);
		}
	}
	if (err) {
		fprintf(stderr, "bench_map: %s: shp_apply_async: %s\n",
		        c->v->name, shp_strerror(err));
		c->lib_err = err;
	}
	return err;
}

static int run_shp_imap(void *arg)
{
	struct ctx *c = arg;
	shp_iter *it;
	int err = shp_imap(c->pool, task_ptr, NULL, c->in, sizeof(uint64_t),
	                   c->n, sizeof(uint64_t), c->v->chunksize, &it);
	size_t i;
	const void *o;

	if (!err) {
		while ((err = shp_iter_next(it, &i, &o, NULL, -1)) == 1)
			memcpy(&c->out[i], o, sizeof(uint64_t));
		shp_iter_free(it);
	}
	if (err) {
		fprintf(stderr, "bench_map: %s: shp_imap: %s\n", c->v->name,
		        shp_strerror(err));
		c->lib_err = err;
	}
	return err;
}

/*
 * After every run: the output must equal the serial result, element by
 * element. Then poison it, so that the next run has to write every element
 * again to pass.
 */
static int check_out(void *arg)
{
	struct ctx *c = arg;
	size_t bad = 0, first = 0;

	for (size_t i = 0; i < c->n; i++) {
		if (c->out[i] != c->ref[i]) {
			if (!bad)
				first = i;
			bad++;
		}
	}
	if (bad) {
		fprintf(stderr,
		        "bench_map: error: %s: %zu of %zu outputs wrong; first "
		        "out[%zu] = %llu, serial result %llu\n",
		        c->v->name, bad, c->n, first,
		        (unsigned long long)c->out[first],
		        (unsigned long long)c->ref[first]);
		return ERR_MISMATCH;
	}
	memset(c->out, 0xa5, c->n * sizeof(c->out[0]));
	return 0;
}

static bench_fn fn_of(const struct variant *v)
{
	switch (v->kind) {
	case K_SERIAL:
		return run_serial;
#ifdef _OPENMP
	case K_OMP_DYNAMIC1:
		return run_omp_dynamic1;
	case K_OMP_STATIC:
		return run_omp_static;
#else
	case K_OMP_DYNAMIC1:
	case K_OMP_STATIC:
		return NULL;
#endif
	case K_SHP:
		return run_shp;
	case K_SHP_ASYNC:
		return run_shp_async;
	case K_SHP_APPLY_ASYNC:
		return run_shp_apply_async;
	case K_SHP_IMAP:
		return run_shp_imap;
	}
	return NULL;
}

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: bench_map [--n N] [--runs R] [--workers W] [--quick] "
	        "[--csv FILE]\n"
	        "  --n N        tasks per run (default %d)\n"
	        "  --runs R     timed runs per variant (default %d)\n"
	        "  --workers W  pool workers and OpenMP threads (default: "
	        "online CPUs)\n"
	        "  --quick      n = %d, runs = %d (explicit --n/--runs win)\n"
	        "  --csv FILE   also write one line per variant to FILE\n"
	        "exit: 0 measured, 1 wrong result or library error, 2 could "
	        "not run\n",
	        DEFAULT_N, DEFAULT_RUNS, QUICK_N, QUICK_RUNS);
}

struct opts {
	uint64_t n, runs, workers;
	const char *csv;
};

/* Returns 0, 1 after --help, or -EINVAL after printing why. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "n", required_argument, NULL, 'n' },
		{ "runs", required_argument, NULL, 'r' },
		{ "workers", required_argument, NULL, 'w' },
		{ "quick", no_argument, NULL, 'q' },
		{ "csv", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool quick = false, have_n = false, have_runs = false;
	int opt;

	o->n = DEFAULT_N;
	o->runs = DEFAULT_RUNS;
	o->workers = bench_nproc();
	o->csv = NULL;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			if (bench_parse_u64(optarg, 1, MAX_N, &o->n))
				goto bad_value;
			have_n = true;
			break;
		case 'r':
			if (bench_parse_u64(optarg, 1, 100000, &o->runs))
				goto bad_value;
			have_runs = true;
			break;
		case 'w':
			/* The library's own limit: see shp_pool_options. */
			if (bench_parse_u64(optarg, 1, 1024, &o->workers))
				goto bad_value;
			break;
		case 'q':
			quick = true;
			break;
		case 'c':
			o->csv = optarg;
			break;
		case 'h':
			usage(stdout);
			return 1;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "bench_map: unexpected argument '%s'\n",
		        argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	/* Order-independent: --quick only changes what was not given. */
	if (quick && !have_n)
		o->n = QUICK_N;
	if (quick && !have_runs)
		o->runs = QUICK_RUNS;
	return 0;
bad_value:
	fprintf(stderr, "bench_map: bad value '%s' for --%s\n", optarg,
	        opt == 'n' ? "n" : opt == 'r' ? "runs" : "workers");
	usage(stderr);
	return -EINVAL;
}

/* Tasks variant v runs out of n. */
static size_t tasks_of(const struct variant *v, size_t n)
{
	size_t k = v->share ? n / v->share : n;

	return k ? k : 1;
}

static double per_task(double ns, size_t n)
{
	return ns / (double)n;
}

static void fmt_rate(char *buf, size_t len, double per_s)
{
	if (per_s >= 1e9)
		snprintf(buf, len, "%.2fG", per_s / 1e9);
	else if (per_s >= 1e6)
		snprintf(buf, len, "%.2fM", per_s / 1e6);
	else if (per_s >= 1e3)
		snprintf(buf, len, "%.2fk", per_s / 1e3);
	else
		snprintf(buf, len, "%.2f", per_s);
}

static void print_table(size_t n, bool have_omp)
{
	static const struct bench_col cols[] = {
		{ "variant", 22, true },     { "ns/task med", 11, false },
		{ "min", 9, false },         { "max", 9, false },
		{ "tasks/s", 9, false },     { "vs omp d,1", 10, false },
		{ "vs serial", 10, false },
	};
	double omp_med = per_task(variants[V_OMP_DYNAMIC1].st.median, n);
	double ser_med = per_task(variants[V_SERIAL].st.median, n);

	bench_table_header(stdout, cols, sizeof(cols) / sizeof(cols[0]));
	for (size_t k = 0; k < NVARIANTS; k++) {
		const struct variant *v = &variants[k];
		char med[32], mn[32], mx[32], rate[32], r_omp[32], r_ser[32];
		const char *cells[] = { v->label, med, mn, mx, rate, r_omp,
			                r_ser };
		size_t vn = tasks_of(v, n);
		double m = per_task(v->st.median, vn);

		if (!v->ran) {
			const char *na[] = { v->label, "not built with OpenMP" };

			/* Spans the numeric columns: two cells only. */
			bench_table_row(stdout, (const struct bench_col[]){
			                        cols[0], { "", 0, true } },
			                2, na);
			continue;
		}
		snprintf(med, sizeof(med), "%.2f", m);
		snprintf(mn, sizeof(mn), "%.2f", per_task(v->st.min, vn));
		snprintf(mx, sizeof(mx), "%.2f", per_task(v->st.max, vn));
		fmt_rate(rate, sizeof(rate), 1e9 / m);
		if (have_omp)
			snprintf(r_omp, sizeof(r_omp), "%.2fx", m / omp_med);
		else
			snprintf(r_omp, sizeof(r_omp), "n/a");
		snprintf(r_ser, sizeof(r_ser), "%.2fx", m / ser_med);
		bench_table_row(stdout, cols, sizeof(cols) / sizeof(cols[0]),
		                cells);
	}
}

/* Returns 0 or -errno. */
static int write_csv(FILE *f, size_t n, unsigned runs, bool have_omp)
{
	double omp_med = per_task(variants[V_OMP_DYNAMIC1].st.median, n);
	double ser_med = per_task(variants[V_SERIAL].st.median, n);

	fprintf(f, "name,n,runs,median_ns_per_task,min,max,"
	           "ratio_vs_omp_dynamic1,ratio_vs_serial\n");
	for (size_t k = 0; k < NVARIANTS; k++) {
		const struct variant *v = &variants[k];
		size_t vn = tasks_of(v, n);
		double m = per_task(v->st.median, vn);

		/* Variants that did not run keep their line, with empty
		 * numbers, so that every file has the same rows. */
		if (!v->ran) {
			fprintf(f, "%s,%zu,%u,,,,,\n", v->name, vn, runs);
			continue;
		}
		fprintf(f, "%s,%zu,%u,%.3f,%.3f,%.3f,", v->name, vn, runs, m,
		        per_task(v->st.min, vn), per_task(v->st.max, vn));
		if (have_omp)
			fprintf(f, "%.4f", m / omp_med);
		fprintf(f, ",%.4f\n", m / ser_med);
	}
	if (fflush(f) || ferror(f))
		return -EIO;
	return 0;
}

static void print_verdict(size_t n, bool have_omp)
{
	const char *what = "shp_map chunksize 1 per-task cost within 2x of "
	                   "OpenMP dynamic,1";
	double ratio;

	if (!have_omp) {
		printf("verdict: %s: not evaluated (not built with OpenMP)\n",
		       what);
		return;
	}
	ratio = per_task(variants[V_SHP_CS1].st.median,
	                 n) /
	        per_task(variants[V_OMP_DYNAMIC1].st.median, n);
	if (ratio <= TARGET_RATIO)
		printf("verdict: %s: target met (ratio %.2f)\n", what, ratio);
	else
		printf("verdict: %s: target MISSED (ratio %.2f)\n", what,
		       ratio);
}

static void *alloc_u64(size_t n)
{
	void *p = NULL;

	/* Cache-line aligned like shp_alloc() memory, so that no variant
	 * gets a layout advantage from its buffers alone. */
	if (posix_memalign(&p, 64, n * sizeof(uint64_t)))
		return NULL;
	return p;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct ctx c = { 0 };
	struct shp_pool_options popt = { 0 };
	uint64_t *in = NULL, *out = NULL, *ref = NULL;
	uint64_t *shm_in = NULL, *shm_out = NULL;
	FILE *csv = NULL;
	char model[256];
	bool have_omp = false;
	int status = EXIT_SETUP, err;

#ifdef _OPENMP
	have_omp = true;
#endif
	err = parse_args(argc, argv, &o);
	if (err)
		return err > 0 ? 0 : EXIT_SETUP;

	/* Open the CSV first: better to fail now than after the runs. */
	if (o.csv) {
		csv = fopen(o.csv, "w");
		if (!csv) {
			fprintf(stderr, "bench_map: %s: %s\n", o.csv,
			        strerror(errno));
			return EXIT_SETUP;
		}
	}

	printf("# bench_map: shmpool %s; nproc %u; cpu: %s\n", shp_version(),
	       bench_nproc(), bench_cpu_model(model, sizeof(model)));
#ifdef _OPENMP
	printf("# n %llu, runs %llu (+1 warm-up), workers %llu, OpenMP %d "
	       "threads %llu; task: out = in + 1 (uint64) via fn pointer\n",
	       (unsigned long long)o.n, (unsigned long long)o.runs,
	       (unsigned long long)o.workers, _OPENMP,
	       (unsigned long long)o.workers);
#else
	printf("# n %llu, runs %llu (+1 warm-up), workers %llu, OpenMP: not "
	       "built; task: out = in + 1 (uint64) via fn pointer\n",
	       (unsigned long long)o.n, (unsigned long long)o.runs,
	       (unsigned long long)o.workers);
#endif
	fflush(stdout);

	c.n = (size_t)o.n;
	c.workers = (unsigned)o.workers;
	in = alloc_u64(c.n);
	out = alloc_u64(c.n);
	ref = alloc_u64(c.n);
	if (!in || !out || !ref) {
		fprintf(stderr, "bench_map: out of memory for n = %zu\n", c.n);
		goto out;
	}
	/* Not i itself: a wrong index would then produce a plausible
	 * value too often to be caught. */
	for (size_t i = 0; i < c.n; i++)
		in[i] = (uint64_t)i * UINT64_C(0x9e3779b97f4a7c15);

	/* Before any OpenMP region: fork() from a process that already has
	 * OpenMP threads is best avoided. */
	fprintf(stderr, "bench_map: creating pool, %u workers\n", c.workers);
	popt.workers = c.workers;
	err = shp_pool_create(&c.pool, &popt);
	if (err) {
		fprintf(stderr, "bench_map: shp_pool_create: %s\n",
		        shp_strerror(err));
		status = EXIT_WRONG;
		goto out;
	}
	shm_in = shp_alloc(c.pool, c.n * sizeof(uint64_t));
	shm_out = shp_alloc(c.pool, c.n * sizeof(uint64_t));
	if (!shm_in || !shm_out) {
		fprintf(stderr, "bench_map: shp_alloc(%zu bytes): %s "
		        "(the arena has the default size)\n",
		        c.n * sizeof(uint64_t), shp_strerror(-errno));
		status = EXIT_WRONG;
		goto out;
	}
	memcpy(shm_in, in, c.n * sizeof(uint64_t));

	/* The reference: the serial loop's result, itself checked against
	 * the plain expression once, so that a broken reference cannot make
	 * every variant "agree". */
	c.in = in;
	c.out = ref;
	c.v = &variants[V_SERIAL];
	run_serial(&c);
	for (size_t i = 0; i < c.n; i++) {
		if (ref[i] != in[i] + 1) {
			fprintf(stderr, "bench_map: error: serial reference "
			        "wrong at %zu\n", i);
			status = EXIT_WRONG;
			goto out;
		}
	}
	c.ref = ref;

	/* Rounds: every variant once per round (round 0 is the warm-up), so
	 * that a noisy stretch of the shared machine hits them all alike and
	 * the ratios, taken between medians, stay meaningful. */
	for (size_t k = 0; k < NVARIANTS; k++) {
		struct variant *v = &variants[k];

		if (!fn_of(v)) {
			fprintf(stderr, "bench_map: %s: not built with OpenMP\n",
			        v->name);
			continue;
		}
		v->samples = calloc(o.runs, sizeof(*v->samples));
		if (!v->samples) {
			status = EXIT_SETUP;
			goto out;
		}
	}
	for (uint64_t round = 0; round <= o.runs; round++) {
		fprintf(stderr, "bench_map: round %llu of %llu%s\n",
		        (unsigned long long)round, (unsigned long long)o.runs,
		        round ? "" : " (warm-up)");
		for (size_t k = 0; k < NVARIANTS; k++) {
			struct variant *v = &variants[k];
			uint64_t ns;

			if (!v->samples)
				continue;
			c.v = v;
			c.n = tasks_of(v, (size_t)o.n);
			c.in = v->zero_copy ? shm_in : in;
			c.out = v->zero_copy ? shm_out : out;
			/* Poisoned so that every run must write everything. */
			memset(c.out, 0xa5, c.n * sizeof(uint64_t));
			err = bench_once(fn_of(v), check_out, &c, &ns);
			if (err) {
				if (err < 0 && !c.lib_err)
					fprintf(stderr, "bench_map: %s: %s\n",
					        v->name, strerror(-err));
				status = err < 0 && !c.lib_err ? EXIT_SETUP
				                               : EXIT_WRONG;
				goto out;
			}
			if (round)
				v->samples[round - 1] = ns;
		}
	}
	for (size_t k = 0; k < NVARIANTS; k++) {
		struct variant *v = &variants[k];

		if (!v->samples)
			continue;
		err = bench_stats(v->samples, o.runs, &v->st);
		if (err) {
			status = EXIT_SETUP;
			goto out;
		}
		v->ran = true;
	}

	print_table((size_t)o.n, have_omp);
	print_verdict((size_t)o.n, have_omp);
	status = 0;
	if (csv) {
		err = write_csv(csv, (size_t)o.n, (unsigned)o.runs, have_omp);
		if (fclose(csv) && !err)
			err = -errno;
		csv = NULL;
		if (err) {
			fprintf(stderr, "bench_map: %s: %s\n", o.csv,
			        strerror(-err));
			status = EXIT_SETUP;
		}
	}

	/* An orderly shutdown is part of what is tested: a library error
	 * here fails the run like any other. */
	shp_free(c.pool, shm_in);
	shp_free(c.pool, shm_out);
	shm_in = shm_out = NULL;
	err = shp_pool_close(c.pool);
	if (!err)
		err = shp_pool_join(c.pool);
	if (err) {
		fprintf(stderr, "bench_map: shutting the pool down: %s\n",
		        shp_strerror(err));
		status = EXIT_WRONG;
	}
out:
	if (c.pool) {
		shp_free(c.pool, shm_in);
		shp_free(c.pool, shm_out);
		shp_pool_destroy(c.pool);
	}
	if (csv)
		fclose(csv);
	for (size_t k = 0; k < NVARIANTS; k++)
		free(variants[k].samples);
	free(in);
	free(out);
	free(ref);
	return status;
}
