/*
 * The "scaling" group: speedup over a serial loop for CPU-bound tasks of
 * 1, 10, 100 and 1000 µs, with shp_map (automatic chunking), OpenMP
 * schedule(dynamic) and Python's Pool.map (100 and 1000 µs only: it is too
 * slow per task for the short ones to say anything but that).
 *
 * The task is a busy loop calibrated once per run to the wanted length.
 * Its result depends on the input and on every iteration, so the compiler
 * can neither drop it nor shorten it, and every run's outputs are checked
 * against the serial loop's, in order. Each measurement does the same total
 * work (~0.3 s serially, ~0.05 s with --quick): a per-call cost that does
 * not scale with the tasks shows up as lost speedup on the short ones,
 * which is what this group is for.
 *
 * Rounds go over every duration and every variant once, after a warm-up
 * round, so that a noisy stretch of a shared machine falls on all of them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <shmpool.h>

#include "harness.h"

#define NDUR 4
static const unsigned dur_us[NDUR] = { 1, 10, 100, 1000 };
#define PY_MIN_US 100 /* Python rows only from this task length up */

/* Serial seconds per measurement: a parallel one takes about 1/workers. */
#define WORK_S_FULL 0.3
#define WORK_S_QUICK 0.05
#define PY_WORK_S_FULL 0.1
#define PY_WORK_S_QUICK 0.03
#define MIN_TASKS 20 /* enough to spread over the workers at 1000 µs */

#define TARGET_US 10       /* the target's task length */
#define TARGET_EFF 0.95    /* speedup >= 1.9 on 2 workers */

#define OMP_SETTLE_NS 20000000 /* see omp_settle() */

/* A task's input carries its length: the pool's ctx would have to be set
 * before the pool exists, the input is plain data. */
struct btask {
	uint64_t x;
	uint64_t iters;
};

static int task_busy(const void *in, void *out, void *ctx)
{
	const struct btask *t = in;

	(void)ctx;
	*(uint64_t *)out = bench_busy(t->x, t->iters);
	return 0;
}

/* Through a volatile pointer in every variant, as in tasks.c: the same
 * indirect call for the serial loop, the threads and the workers. */
static shp_fn volatile task_ptr = task_busy;

/* In this order in every round, and in the report. */
enum vkind { V_SERIAL, V_OMP, V_SHP, V_PY, NV };

static const char *const vname[NV] = {
	[V_SERIAL] = "serial",
	[V_OMP] = "OpenMP dynamic",
	[V_SHP] = "shp_map",
	[V_PY] = "Python Pool.map",
};

enum failure {
	F_NONE,
	F_SKIP,  /* could not run here: not built, python3 absent */
	F_LIB,   /* shmpool returned an error */
	F_WRONG, /* wrong results */
};

struct var {
	uint64_t *samples; /* ns per run, one per timed round */
	unsigned nsamples;
	enum failure failed;
	char note[256];
	struct bench_stats st; /* in the row's unit, once the rounds are over */
};

/* One task length and its variants. */
struct dur {
	unsigned us;
	size_t n;            /* tasks per C run */
	uint64_t iters;      /* bench_busy() iterations per task */
	struct btask *in;
	uint64_t *ref;       /* the serial loop's result, from the warm-up */
	bool have_ref;
	struct var v[NV];
	size_t py_n;         /* tasks per Python run; 0: no Python row */
	uint64_t py_iters;   /* as calibrated by Python, from its first answer */
	uint64_t py_expect;  /* the checksum of a right answer */
	uint64_t *py_ser;    /* Python's own serial loop, ns per round */
};

struct sctx {
	shp_pool *pool;
	unsigned workers;
	struct dur *d;
	uint64_t *out;
	struct var *v;
};

/* Marks variant v failed with f, and says why in its note. */
#define fail(v, f, ...) \
	((v)->failed = (f), snprintf((v)->note, sizeof((v)->note), __VA_ARGS__))

static int run_serial(void *arg)
{
	struct sctx *c = arg;
	shp_fn fn = task_ptr;

	for (size_t i = 0; i < c->d->n; i++)
		(void)fn(&c->d->in[i], &c->out[i], NULL);
	return 0;
}

#ifdef _OPENMP
static int run_omp(void *arg)
{
	struct sctx *c = arg;
	shp_fn fn = task_ptr;
	const struct btask *in = c->d->in;
	uint64_t *out = c->out;
	size_t n = c->d->n;

#pragma omp parallel for schedule(dynamic, 1) num_threads(c->workers)
	for (size_t i = 0; i < n; i++)
		(void)fn(&in[i], &out[i], NULL);
	return 0;
}
#endif

/*
 * libgomp's idle threads spin for a few milliseconds after a parallel
 * region before they sleep (as in tasks.c): the next variant must not lose
 * a core to them. Untimed.
 */
static void omp_settle(void)
{
	struct timespec ts = { .tv_nsec = OMP_SETTLE_NS };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int run_shp(void *arg)
{
	struct sctx *c = arg;
	int err = shp_map(c->pool, task_ptr, NULL, c->d->in, sizeof(struct btask), c->out,
	                  sizeof(uint64_t), c->d->n, 0, NULL);

	if (err)
		fail(c->v, F_LIB, "shp_map: %s", shp_strerror(err));
	return err;
}

static bench_fn fn_of(int j)
{
	switch (j) {
	case V_SERIAL:
		return run_serial;
#ifdef _OPENMP
	case V_OMP:
		return run_omp;
#endif
	case V_SHP:
		return run_shp;
	}
	return NULL;
}

/* Every run's output against the serial one, in order; then poisoned, so
 * that the next run must write every element to pass. */
static int check_out(void *arg)
{
	struct sctx *c = arg;
	struct dur *d = c->d;
	size_t bad = 0, first = 0;

	if (!d->have_ref) {
		/* The warm-up's serial run is the reference. */
		memcpy(d->ref, c->out, d->n * sizeof(uint64_t));
		d->have_ref = true;
	}
	bad = bench_diff_u64(c->out, d->ref, d->n, &first);
	if (bad) {
		fail(c->v, F_WRONG,
		     "WRONG RESULTS: %zu of %zu outputs differ from the serial loop's; "
		     "first out[%zu] = %" PRIu64 ", expected %" PRIu64,
		     bad, d->n, first, c->out[first], d->ref[first]);
		return 1;
	}
	memset(c->out, 0xa5, d->n * sizeof(uint64_t));
	return 0;
}

static uint64_t py_checksum(size_t n, uint64_t iters)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += (uint64_t)(i + 1) * bench_busy(bench_input(i), iters);
	return s;
}

/* One Python measurement: its serial loop and its Pool.map of the same
 * tasks, both timed by the script, both checked. */
static int py_round(struct bench_py *py, struct dur *d, uint64_t *ser_ns, uint64_t *pool_ns)
{
	struct var *v = &d->v[V_PY];
	char req[64], ans[256], err[256];
	unsigned long long us, n, iters, ck_ser, ck_pool;
	double ser, pool;
	int r;

	snprintf(req, sizeof(req), "busy %u %zu", d->us, d->py_n);
	r = bench_py_ask(py, req, ans, sizeof(ans), err, sizeof(err));
	if (r) {
		fail(v, F_SKIP, "%s", err);
		return r;
	}
	if (sscanf(ans, "busy %llu %llu %llu %lf %lf %llu %llu", &us, &n, &iters, &ser, &pool,
	           &ck_ser, &ck_pool) != 7 ||
	    us != d->us || n != d->py_n || !iters || !(ser > 0) || !(pool > 0) ||
	    (d->py_iters && iters != d->py_iters)) {
		fail(v, F_SKIP, "pool_bench.py: unexpected '%.160s'", ans);
		return -EPROTO;
	}
	if (!d->py_iters) {
		d->py_iters = iters;
		d->py_expect = py_checksum(d->py_n, iters);
	}
	if (ck_ser != d->py_expect || ck_pool != d->py_expect) {
		fail(v, F_WRONG, "WRONG RESULTS: checksums %llu (serial) %llu (Pool.map), "
		     "expected %" PRIu64, ck_ser, ck_pool, d->py_expect);
		return 1;
	}
	*ser_ns = (uint64_t)(ser * 1e9);
	*pool_ns = (uint64_t)(pool * 1e9);
	return 0;
}

static int stats_of(const struct var *v, struct bench_stats *st)
{
	return bench_stats(v->samples, v->nsamples, st);
}

/*
 * The speedup row of a variant: the serial median over each of its runs,
 * so that its median, min and max are the median, slowest and fastest run
 * against one reference.
 */
static void speedup(struct bench_stats *st, double ser_med, const struct bench_stats *t)
{
	st->median = ser_med / t->median;
	st->min = ser_med / t->max;
	st->max = ser_med / t->min;
	st->n = t->n;
}

static void note_add(struct var *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note_add(struct var *v, const char *fmt, ...)
{
	size_t len = strlen(v->note);
	va_list ap;

	if (len >= sizeof(v->note) - 1)
		return;
	va_start(ap, fmt);
	vsnprintf(v->note + len, sizeof(v->note) - len, fmt, ap);
	va_end(ap);
}

/* Fills every variant's figures and notes for one task length. */
static int figures(const struct bench_cfg *cfg, struct dur *d, const char *pyver)
{
	struct bench_stats ser, t;
	struct var *sv = &d->v[V_SERIAL];
	int err;

	if (sv->failed || !sv->nsamples)
		return 0;
	err = stats_of(sv, &ser);
	if (err)
		return err;
	/* The serial row shows the task length as run: how well the
	 * calibration held. */
	sv->st = ser;
	sv->st.median = ser.median / (double)d->n / 1e3;
	sv->st.min = ser.min / (double)d->n / 1e3;
	sv->st.max = ser.max / (double)d->n / 1e3;
	snprintf(sv->note, sizeof(sv->note), "us per task; %zu tasks of %" PRIu64 " iterations",
	         d->n, d->iters);
	for (int j = V_SERIAL + 1; j < NV; j++) {
		struct var *v = &d->v[j];

		if (v->failed || !v->nsamples)
			continue;
		err = stats_of(v, &t);
		if (err)
			return err;
		if (j == V_PY) {
			/* Python against its own serial loop: its task is
			 * calibrated separately and runs ~50x slower per
			 * iteration, so the C serial loop is no reference. */
			struct var pys = { .samples = d->py_ser, .nsamples = v->nsamples };
			struct bench_stats ps;

			err = stats_of(&pys, &ps);
			if (err)
				return err;
			speedup(&v->st, ps.median, &t);
			snprintf(v->note, sizeof(v->note),
			         "efficiency %.2f; over Python's own serial loop (%.0f us/task); "
			         "%zu tasks, Python %s",
			         v->st.median / cfg->workers, ps.median / (double)d->py_n / 1e3,
			         d->py_n, pyver);
		} else {
			speedup(&v->st, ser.median, &t);
			snprintf(v->note, sizeof(v->note), "efficiency %.2f; %zu tasks",
			         v->st.median / cfg->workers, d->n);
		}
	}
	return 0;
}

/* Judges shp_map at the target's task length. */
static void judge(const struct bench_cfg *cfg, struct var *v, struct bench_row *row)
{
	unsigned nproc = bench_nproc();
	double want = TARGET_EFF * cfg->workers;

	if (v->failed == F_WRONG || v->failed == F_LIB) {
		row->met = 0;
	} else if (!v->st.n) {
		row->met = -1;
	} else if (cfg->workers > nproc) {
		/* More workers than CPUs cannot scale: nothing to judge. */
		row->met = -1;
		note_add(v, "; not judged: %u workers on %u CPUs", cfg->workers, nproc);
	} else {
		row->met = v->st.median >= want;
		note_add(v, "; %s: speedup %.2f %s %.2f", row->met ? "met" : "MISSED",
		         v->st.median, row->met ? ">=" : "<", want);
	}
}

static int add_rows(const struct bench_cfg *cfg, struct bench_report *r, struct dur *dd,
                    const char *pyver)
{
	char target[96];

	if (cfg->workers == 2)
		snprintf(target, sizeof(target), "speedup >= 1.9 on 2 workers");
	else
		snprintf(target, sizeof(target), "speedup >= %.2f on %u workers",
		         TARGET_EFF * cfg->workers, cfg->workers);
	for (size_t k = 0; k < NDUR; k++) {
		struct dur *d = &dd[k];
		char name[NV][64];
		int err = figures(cfg, d, pyver);

		if (err)
			return err;
		for (int j = 0; j < NV; j++)
			snprintf(name[j], sizeof(name[j]), "%s %uus", vname[j], d->us);
		for (int j = 0; j < NV; j++) {
			struct var *v = &d->v[j];
			struct bench_row row = {
				.group = "scaling",
				.name = name[j],
				.unit = j == V_SERIAL ? "us" : "speedup",
				.st = v->st,
				.met = -1,
			};
			/* shmpool against the threads, Python against shmpool. */
			int peer = j == V_SHP ? V_OMP : j == V_PY ? V_SHP : -1;

			if (j == V_PY && !d->py_n)
				continue;
			if (!v->failed && v->nsamples && !v->st.n && !v->note[0])
				snprintf(v->note, sizeof(v->note), "no serial figure to compare with");
			if (peer >= 0) {
				row.ratio_vs = name[peer];
				if (v->st.n && d->v[peer].st.n)
					row.ratio = v->st.median / d->v[peer].st.median;
			}
			if (j == V_SHP && d->us == TARGET_US) {
				row.target = target;
				judge(cfg, v, &row);
			}
			row.st = v->st;
			row.note = v->note[0] ? v->note : NULL;
			err = bench_report_add(r, &row);
			if (err)
				return err;
		}
	}
	return 0;
}

/* Tasks for a measurement of about work_s seconds, serially. */
static size_t tasks_for(double work_s, unsigned us)
{
	size_t n = (size_t)(work_s * 1e6 / us + 0.5);

	return n < MIN_TASKS ? MIN_TASKS : n;
}

int bench_group_scaling(const struct bench_cfg *cfg, struct bench_report *r)
{
	struct shp_pool_options popt = { .workers = cfg->workers };
	struct sctx c = { .workers = cfg->workers };
	struct dur d[NDUR] = { 0 };
	struct bench_py *py = NULL;
	char pyerr[256], pyver[32] = "";
	size_t maxn = 0;
	double ns_per_iter;
	int err = -ENOMEM, ret = 0;

	bench_progress("scaling", "calibrating the busy loop");
	ns_per_iter = bench_busy_calibrate();
	for (size_t k = 0; k < NDUR; k++) {
		d[k].us = dur_us[k];
		d[k].n = tasks_for(cfg->quick ? WORK_S_QUICK : WORK_S_FULL, d[k].us);
		d[k].iters = (uint64_t)(d[k].us * 1e3 / ns_per_iter + 0.5);
		if (!d[k].iters)
			d[k].iters = 1;
		if (d[k].us >= PY_MIN_US)
			d[k].py_n = tasks_for(cfg->quick ? PY_WORK_S_QUICK : PY_WORK_S_FULL,
			                      d[k].us);
		maxn = d[k].n > maxn ? d[k].n : maxn;
		d[k].in = calloc(d[k].n, sizeof(struct btask));
		d[k].ref = calloc(d[k].n, sizeof(uint64_t));
		d[k].py_ser = calloc(cfg->runs, sizeof(uint64_t));
		if (!d[k].in || !d[k].ref || !d[k].py_ser)
			goto out;
		for (int j = 0; j < NV; j++) {
			d[k].v[j].samples = calloc(cfg->runs, sizeof(uint64_t));
			if (!d[k].v[j].samples)
				goto out;
		}
		/* The inputs pool_bench.py makes too. */
		for (size_t i = 0; i < d[k].n; i++)
			d[k].in[i] = (struct btask){ .x = bench_input(i),
				                     .iters = d[k].iters };
	}
	c.out = calloc(maxn, sizeof(uint64_t));
	if (!c.out)
		goto out;

	bench_progress("scaling", "creating a pool of %u workers", cfg->workers);
	err = shp_pool_create(&c.pool, &popt);
	if (err) {
		fprintf(stderr, "scaling: shp_pool_create: %s\n", shp_strerror(err));
		err = err > -4096 ? err : -EIO;
		goto out;
	}
	/* After the pool: its processes must not inherit the socket. */
	bench_progress("scaling", "starting pool_bench.py");
	if (!bench_py_start(cfg, &py, pyerr, sizeof(pyerr)))
		snprintf(pyver, sizeof(pyver), "%s", bench_py_version(py));
	for (size_t k = 0; k < NDUR; k++) {
		if (!fn_of(V_OMP))
			fail(&d[k].v[V_OMP], F_SKIP, "not built with OpenMP");
		if (d[k].py_n && !py)
			fail(&d[k].v[V_PY], F_SKIP, "%s", pyerr);
	}

	for (unsigned round = 0; round <= cfg->runs; round++) {
		for (size_t k = 0; k < NDUR; k++) {
			c.d = &d[k];
			for (int j = 0; j < NV; j++) {
				struct var *v = &d[k].v[j];
				uint64_t ns = 0, ser_ns = 0;

				if (v->failed || (j == V_PY && !d[k].py_n))
					continue;
				/* Without a reference nothing can be checked. */
				if (j != V_SERIAL && !d[k].have_ref)
					continue;
				bench_progress("scaling", "round %u of %u%s: %s, %u us tasks", round,
				               cfg->runs, round ? "" : " (warm-up)", vname[j],
				               d[k].us);
				c.v = v;
				if (j == V_PY) {
					err = py_round(py, &d[k], &ser_ns, &ns);
				} else {
					memset(c.out, 0xa5, d[k].n * sizeof(uint64_t));
					err = bench_once(fn_of(j), check_out, &c, &ns);
					if (j == V_OMP)
						omp_settle();
				}
				if (err || !round)
					continue;
				if (j == V_PY)
					d[k].py_ser[v->nsamples] = ser_ns;
				v->samples[v->nsamples++] = ns;
			}
		}
	}

	for (size_t k = 0; k < NDUR; k++) {
		for (int j = 0; j < NV; j++) {
			if (d[k].v[j].failed == F_WRONG || d[k].v[j].failed == F_LIB)
				ret = BENCH_WRONG;
		}
	}
	err = add_rows(cfg, r, d, pyver);
	if (!err)
		err = ret;
out:
	bench_py_stop(py);
	if (bench_pool_shutdown(c.pool, "scaling") && !err)
		err = BENCH_WRONG;
	for (size_t k = 0; k < NDUR; k++) {
		for (int j = 0; j < NV; j++)
			free(d[k].v[j].samples);
		free(d[k].in);
		free(d[k].ref);
		free(d[k].py_ser);
	}
	free(c.out);
	return err;
}
