/*
 * The "tasks" group: what one task costs when it does nothing.
 *
 * The task is out = in + 1 on a uint64, called through a function pointer,
 * so the wall time of a run divided by its task count is the per-task cost
 * of whatever schedules the tasks: a serial loop, OpenMP threads, shmpool's
 * calls, one fork()ed process per task (the seed's Process+Queue pattern,
 * in C), and Python's multiprocessing.Pool (bench/pool_bench.py, run as a
 * coprocess). Every variant runs once per round, in the same rounds, so
 * that the ratios the targets are judged by compare medians of one run on
 * one machine. Every run's outputs are checked against the serial result,
 * in order: a fast wrong answer must not pass.
 *
 * This file also holds the Python coprocess (bench_py_*), which the scaling
 * group uses too.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <shmpool.h>

#include "harness.h"

/* ------------------------------------------------------------------ Python */

/*
 * pool_bench.py runs as a coprocess for the whole group: one interpreter and
 * one Pool, asked for one measurement at a time over a socket pair, so that
 * its rounds interleave with the C rounds and neither interpreter start-up
 * nor Pool creation is in any figure. A socket rather than two pipes: one
 * descriptor both ways, and send(MSG_NOSIGNAL) turns a dead interpreter
 * into EPIPE instead of a SIGPIPE that would kill the whole benchmark.
 * Declared in harness.h: scaling.c uses it too.
 */

#define PY_START_MS 30000 /* interpreter, imports, Pool, calibration */
#define PY_ASK_MS 120000  /* one measurement: a slow machine, a big n */
#define PY_QUIT_MS 5000

struct bench_py {
	pid_t pid;
	int fd;            /* our end of the socket pair */
	char buf[4096];    /* read but not yet returned */
	size_t len;
	char last[200];    /* the last line that was not an answer: on a
	                    * failure, the interpreter's own error message */
	char version[32];
};

static int64_t now_ms(void)
{
	return (int64_t)(bench_now_ns() / 1000000u);
}

/* One line without its newline into line: 1, 0 at EOF, -ETIMEDOUT, -errno. */
static int py_readline(struct bench_py *py, char *line, size_t len, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	/* Empty unless a line comes: callers may look at it whatever the
	 * return. */
	line[0] = '\0';
	for (;;) {
		char *nl = memchr(py->buf, '\n', py->len);
		size_t take = nl ? (size_t)(nl - py->buf) : py->len;
		struct pollfd pfd = { .fd = py->fd, .events = POLLIN };
		int64_t left;
		ssize_t got;

		/* A line longer than the buffer comes back cut: it can only
		 * be noise (a traceback), never an answer. */
		if (nl || py->len == sizeof(py->buf)) {
			size_t cp = take < len - 1 ? take : len - 1;

			memcpy(line, py->buf, cp);
			line[cp] = '\0';
			if (nl)
				take++;
			memmove(py->buf, py->buf + take, py->len - take);
			py->len -= take;
			return 1;
		}
		left = deadline - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)left) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (!pfd.revents)
			continue;
		got = read(py->fd, py->buf + py->len, sizeof(py->buf) - py->len);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (got == 0)
			return 0;
		py->len += (size_t)got;
	}
}

/*
 * Reads until a line that starts with prefix, into ans. Other lines (a
 * warning, a traceback) are kept in py->last: when the interpreter dies,
 * its last words are the best explanation there is.
 */
static int py_expect(struct bench_py *py, const char *prefix, char *ans, size_t anslen,
                     int timeout_ms, char *err, size_t errlen)
{
	size_t plen = strlen(prefix);
	int r;

	while ((r = py_readline(py, ans, anslen, timeout_ms)) == 1) {
		if (!strncmp(ans, prefix, plen))
			return 0;
		if (!strncmp(ans, "error ", 6)) {
			snprintf(err, errlen, "pool_bench.py: %s", ans + 6);
			return -EPROTO;
		}
		if (ans[0])
			snprintf(py->last, sizeof(py->last), "%s", ans);
	}
	if (r == -ETIMEDOUT)
		snprintf(err, errlen, "pool_bench.py: no answer in %d s", timeout_ms / 1000);
	else if (py->last[0])
		snprintf(err, errlen, "pool_bench.py: %s", py->last);
	else
		snprintf(err, errlen, "pool_bench.py exited without an answer");
	return r ? r : -EPIPE;
}

/* Ends the coprocess (the caller's own child, by its pid) and reaps it:
 * its wait status. */
static int py_reap(struct bench_py *py, bool ask_first)
{
	int st = 0;

	if (ask_first && send(py->fd, "quit\n", 5, MSG_NOSIGNAL) == 5) {
		char line[256];

		/* Python terminates its Pool on the way out; EOF on the
		 * socket means it is done. */
		while (py_readline(py, line, sizeof(line), PY_QUIT_MS) == 1)
			;
	}
	close(py->fd);
	py->fd = -1;
	if (waitpid(py->pid, &st, WNOHANG) == 0) {
		kill(py->pid, SIGKILL);
		while (waitpid(py->pid, &st, 0) < 0 && errno == EINTR)
			;
	}
	return st;
}

int bench_py_start(const struct bench_cfg *cfg, struct bench_py **out, char *err,
                   size_t errlen)
{
	struct bench_py *py;
	char script[4096], workers[16], line[256];
	char *argv[6];
	int sv[2], r;

	*out = NULL;
	if (!cfg->python) {
		snprintf(err, errlen, "python3 not found");
		return -ENOENT;
	}
	snprintf(script, sizeof(script), "%s/pool_bench.py", cfg->pydir ? cfg->pydir : ".");
	if (access(script, R_OK)) {
		snprintf(err, errlen, "%s: %s", script, strerror(errno));
		return -ENOENT;
	}
	py = calloc(1, sizeof(*py));
	if (!py) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		r = -errno;
		snprintf(err, errlen, "socketpair: %s", strerror(-r));
		free(py);
		return r;
	}
	snprintf(workers, sizeof(workers), "%u", cfg->workers);
	argv[0] = (char *)cfg->python;
	argv[1] = script;
	argv[2] = "--serve";
	argv[3] = "--workers";
	argv[4] = workers;
	argv[5] = NULL;
	py->pid = fork();
	if (py->pid == 0) {
		static const char msg[] = "cannot execute the python3 interpreter\n";

		/* Only async-signal-safe calls from here: the parent may have
		 * threads (OpenMP, the pool's result thread). stderr joins
		 * stdout so that a traceback reaches the report. */
		if (dup2(sv[1], 0) < 0 || dup2(sv[1], 1) < 0 || dup2(sv[1], 2) < 0)
			_exit(127);
		execv(cfg->python, argv);
		(void)!write(2, msg, sizeof(msg) - 1);
		_exit(127);
	}
	r = py->pid < 0 ? -errno : 0;
	close(sv[1]);
	if (r) {
		close(sv[0]);
		snprintf(err, errlen, "fork: %s", strerror(-r));
		free(py);
		return r;
	}
	py->fd = sv[0];
	r = py_expect(py, "ready ", line, sizeof(line), PY_START_MS, err, errlen);
	if (!r && sscanf(line, "ready %31s", py->version) != 1) {
		snprintf(err, errlen, "pool_bench.py: unexpected '%s'", line);
		r = -EPROTO;
	}
	if (r) {
		int st = py_reap(py, false);

		if (r == -EPIPE && !py->last[0] && WIFEXITED(st))
			snprintf(err, errlen, "%s exited with status %d", cfg->python,
			         WEXITSTATUS(st));
		free(py);
		return r;
	}
	*out = py;
	return 0;
}

int bench_py_ask(struct bench_py *py, const char *req, char *ans, size_t anslen, char *err,
                 size_t errlen)
{
	char msg[128], prefix[128];
	int len = snprintf(msg, sizeof(msg), "%s\n", req);

	/* The answer repeats the request's words: a stale or stray line
	 * cannot be taken for it. */
	snprintf(prefix, sizeof(prefix), "%s ", req);
	if (send(py->fd, msg, (size_t)len, MSG_NOSIGNAL) != len) {
		snprintf(err, errlen, "pool_bench.py: %s",
		         py->last[0] ? py->last : "exited");
		return -EPIPE;
	}
	return py_expect(py, prefix, ans, anslen, PY_ASK_MS, err, errlen);
}

const char *bench_py_version(const struct bench_py *py)
{
	return py->version;
}

void bench_py_stop(struct bench_py *py)
{
	if (!py)
		return;
	py_reap(py, true);
	free(py);
}

/* ------------------------------------------------------------------- tasks */

#define N_FULL 1000000
#define N_QUICK 200000
#define APPLY_SHARE 50  /* shp_apply_async runs n / 50 tasks: a call each */
#define APPLY_BATCH 256 /* handles in flight at once */
/* A fork() costs 0.1-2 ms (a VM's page tables are slow to copy): n / 2000
 * processes per run, 200 to 2000 of them, or 100 with --quick. */
#define PROC_SHARE 2000
#define PROC_MIN 200
#define PROC_MAX 2000
#define PROC_QUICK 100

/* Python is ~1000x slower per task: its own n, sized for ~0.05 s per run
 * (quick) or ~0.5 s. */
#define PY_CS1_FULL 8000
#define PY_CS1_QUICK 800
#define PY_AUTO_FULL 500000
#define PY_AUTO_QUICK 50000
#define PY_APPLY_FULL 4000
#define PY_APPLY_QUICK 500

#define TARGET_OMP 2.0     /* shp_map cs=1 per task <= 2x OpenMP dynamic,1 */
#define TARGET_PY_CS1 1000 /* Python Pool.map cs=1 >= 1000x shp_map cs=1 */
#define TARGET_PY_AUTO 20  /* Python Pool.map auto >= 20x shp_map auto */

#define OMP_SETTLE_NS 20000000 /* see omp_settle() */

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
	K_SHP_MAP,
	K_SHP_APPLY_ASYNC,
	K_SHP_IMAP,
	K_PROCESS,
	K_PY,
};

enum failure {
	F_NONE,
	F_SKIP,  /* could not run here: not built, python3 absent */
	F_SETUP, /* the system refused (fork, memory): not the variant's fault */
	F_LIB,   /* shmpool returned an error */
	F_WRONG, /* wrong results */
};

struct variant {
	const char *name;
	enum kind kind;
	size_t chunksize;     /* K_SHP_MAP */
	const char *py_mode;  /* K_PY: pool_bench.py's mode */
	const char *ratio_vs; /* the row this one is compared with */
	const char *target;   /* the target it is judged by, or NULL: */
	double target_ratio;  /* ratio <= this, or with at_least, >= this */
	bool at_least;
	size_t n;             /* tasks per run */
	uint64_t *samples;    /* ns per run, one per timed round */
	unsigned nsamples;
	struct bench_stats st; /* per task, once the rounds are over */
	enum failure failed;
	char note[256];
};

/* A (position, value) record, as the seed's processes put on their Queue. */
struct rec {
	uint64_t pos;
	uint64_t val;
};

struct tctx {
	shp_pool *pool;
	unsigned workers;
	struct variant *v;
	size_t n;
	const uint64_t *in;
	uint64_t *out;
	const uint64_t *ref; /* the serial result */
	pid_t *pids;         /* K_PROCESS */
	struct rec *recs;
};

/* Marks variant v failed with f, and says why in its note. */
#define fail(v, f, ...) \
	((v)->failed = (f), snprintf((v)->note, sizeof((v)->note), __VA_ARGS__))

static int run_serial(void *arg)
{
	struct tctx *c = arg;
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
	struct tctx *c = arg;
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
	struct tctx *c = arg;
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

static int lib_failed(struct tctx *c, const char *call, int err)
{
	fail(c->v, F_LIB, "%s: %s", call, shp_strerror(err));
	return err;
}

static int run_shp_map(void *arg)
{
	struct tctx *c = arg;
	int err = shp_map(c->pool, task_ptr, NULL, c->in, sizeof(uint64_t), c->out,
	                  sizeof(uint64_t), c->n, c->v->chunksize, NULL);

	return err ? lib_failed(c, "shp_map", err) : 0;
}

static int run_shp_apply_async(void *arg)
{
	struct tctx *c = arg;
	shp_async *h[APPLY_BATCH];
	int err = 0;

	/* A bounded number of handles in flight, as a caller that cannot
	 * hold one per task would do. */
	for (size_t i = 0; i < c->n && !err; i += APPLY_BATCH) {
		size_t k = c->n - i < APPLY_BATCH ? c->n - i : APPLY_BATCH;
		size_t got = 0;

		for (; got < k && !err; got++)
			err = shp_apply_async(c->pool, task_ptr, NULL, &c->in[i + got],
			                      sizeof(uint64_t), &c->out[i + got],
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
	return err ? lib_failed(c, "shp_apply_async", err) : 0;
}

static int run_shp_imap(void *arg)
{
	struct tctx *c = arg;
	shp_iter *it;
	size_t i;
	const void *o;
	int err = shp_imap(c->pool, task_ptr, NULL, c->in, sizeof(uint64_t), c->n,
	                   sizeof(uint64_t), 0, &it);

	if (err)
		return lib_failed(c, "shp_imap", err);
	/* The copy is part of the cost: an iterator's result lives only
	 * until the next call. */
	while ((err = shp_iter_next(it, &i, &o, NULL, -1)) == 1)
		memcpy(&c->out[i], o, sizeof(uint64_t));
	shp_iter_free(it);
	return err ? lib_failed(c, "shp_iter_next", err) : 0;
}

static int cmp_rec(const void *a, const void *b)
{
	uint64_t x = ((const struct rec *)a)->pos, y = ((const struct rec *)b)->pos;

	return (x > y) - (x < y);
}

/*
 * The seed's Process+Queue example, in C: a process per task, each puts
 * (pos, value) on a shared channel, the parent collects them all, sorts by
 * position and joins the processes. The parent reads before it joins (the
 * seed joins first, which deadlocks once the results outgrow the channel's
 * buffer); 16-byte writes are below PIPE_BUF, so records never interleave.
 */
static int run_process(void *arg)
{
	struct tctx *c = arg;
	size_t started = 0, got = 0, bytes = 0, want;
	int fds[2], err = 0;

	if (pipe2(fds, O_CLOEXEC)) {
		fail(c->v, F_SETUP, "pipe: %s", strerror(errno));
		return -1;
	}
	for (; started < c->n; started++) {
		pid_t pid = fork();

		if (pid == 0) {
			/* Async-signal-safe only: the parent has threads. */
			struct rec r = { .pos = started };

			(void)task_ptr(&c->in[started], &r.val, NULL);
			_exit(write(fds[1], &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 1);
		}
		if (pid < 0) {
			err = errno;
			break;
		}
		c->pids[started] = pid;
	}
	/* Ours closed, the channel ends when the last child exits: a child
	 * that died without writing shows up as a missing record, not as a
	 * hang. */
	close(fds[1]);
	want = started * sizeof(struct rec);
	while (bytes < want) {
		ssize_t r = read(fds[0], (char *)c->recs + bytes, want - bytes);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		bytes += (size_t)r;
	}
	close(fds[0]);
	for (size_t i = 0; i < started; i++) {
		while (waitpid(c->pids[i], NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (err) {
		fail(c->v, F_SETUP, "fork (after %zu processes): %s", started, strerror(err));
		return -1;
	}
	got = bytes / sizeof(struct rec);
	qsort(c->recs, got, sizeof(struct rec), cmp_rec);
	/* A missing or duplicated record leaves its output poisoned: the
	 * check catches it. */
	for (size_t i = 0; i < got; i++) {
		if (c->recs[i].pos < c->n)
			c->out[c->recs[i].pos] = c->recs[i].val;
	}
	return 0;
}

/*
 * After every run: the output must equal the serial result, element by
 * element. Then poison it, so that the next run has to write every element
 * again to pass.
 */
static int check_out(void *arg)
{
	struct tctx *c = arg;
	size_t bad = 0, first = 0;

	bad = bench_diff_u64(c->out, c->ref, c->n, &first);
	if (bad) {
		fail(c->v, F_WRONG,
		     "WRONG RESULTS: %zu of %zu outputs differ from the serial loop's; "
		     "first out[%zu] = %" PRIu64 ", expected %" PRIu64,
		     bad, c->n, first, c->out[first], c->ref[first]);
		return 1;
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
	case K_SHP_MAP:
		return run_shp_map;
	case K_SHP_APPLY_ASYNC:
		return run_shp_apply_async;
	case K_SHP_IMAP:
		return run_shp_imap;
	case K_PROCESS:
		return run_process;
	case K_PY:
		break;
	}
	return NULL;
}

/* One Python run: its own timing of its loop, and its checksum against
 * that of the serial result (ref; Python's n is never more than ours). */
static int py_round(struct bench_py *py, struct variant *v, const uint64_t *ref,
                    uint64_t *ns)
{
	uint64_t want = bench_checksum_u64(ref, v->n);
	char req[64], ans[256], err[256];
	unsigned long long n, ck;
	double secs;
	int r;

	snprintf(req, sizeof(req), "%s %zu", v->py_mode, v->n);
	r = bench_py_ask(py, req, ans, sizeof(ans), err, sizeof(err));
	if (r) {
		fail(v, F_SKIP, "%s", err);
		return r;
	}
	if (sscanf(ans, "%*s %llu %lf %llu", &n, &secs, &ck) != 3 || n != v->n || !(secs > 0)) {
		fail(v, F_SKIP, "pool_bench.py: unexpected '%.160s'", ans);
		return -EPROTO;
	}
	if (ck != want) {
		fail(v, F_WRONG, "WRONG RESULTS: checksum %llu, expected %" PRIu64, ck, want);
		return 1;
	}
	*ns = (uint64_t)(secs * 1e9);
	return 0;
}

/*
 * libgomp's idle threads spin for a few milliseconds after a parallel
 * region (GOMP_SPINCOUNT) before they sleep: on 2 cores they would take a
 * core from whatever runs next. Measured here: 2-10 ms. Untimed.
 */
static void omp_settle(void)
{
	struct timespec ts = { .tv_nsec = OMP_SETTLE_NS };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* One C run, checked. */
static int c_round(struct tctx *c, struct variant *v, uint64_t *ns)
{
	int err;

	c->v = v;
	c->n = v->n;
	/* Poisoned so that every run must write everything. */
	memset(c->out, 0xa5, c->n * sizeof(uint64_t));
	err = bench_once(fn_of(v), check_out, c, ns);
	if (err && !v->failed)
		fail(v, F_SETUP, "failed (%d)", err);
	if (v->kind == K_OMP_DYNAMIC1 || v->kind == K_OMP_STATIC)
		omp_settle();
	return err;
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

static const struct variant *find(const struct variant *v, size_t nv, const char *name)
{
	for (size_t k = 0; k < nv; k++) {
		if (!strcmp(v[k].name, name))
			return &v[k];
	}
	return NULL;
}

/* The median per task of a variant that ran, or 0. */
static double median_of(const struct variant *v)
{
	return v->failed || !v->st.n ? 0 : v->st.median;
}

/* Judges a row against its target and puts the numbers behind the verdict
 * in the note. */
static void judge(struct variant *v, struct bench_row *row, const struct variant *vs)
{
	char buf[sizeof(v->note)];

	if (row->ratio == 0) {
		row->met = -1;
		snprintf(buf, sizeof(buf), "%.160s; not judged: %.60s has no figure", v->note,
		         vs->name);
	} else {
		row->met = v->at_least ? row->ratio >= v->target_ratio
		                       : row->ratio <= v->target_ratio;
		snprintf(buf, sizeof(buf), "%.120s; %s: %.1f vs %.1f ns/task = %.2fx, target %s %gx",
		         v->note, row->met ? "met" : "MISSED", median_of(v), median_of(vs),
		         row->ratio, v->at_least ? ">=" : "<=", v->target_ratio);
	}
	snprintf(v->note, sizeof(v->note), "%s", buf);
}

static int add_rows(struct bench_report *r, struct variant *v, size_t nv)
{
	int err;

	for (size_t k = 0; k < nv; k++) {
		struct bench_stats *st = &v[k].st;

		if (v[k].failed || !v[k].nsamples)
			continue;
		err = bench_stats(v[k].samples, v[k].nsamples, st);
		if (err)
			return err;
		st->median /= (double)v[k].n;
		st->min /= (double)v[k].n;
		st->max /= (double)v[k].n;
	}
	for (size_t k = 0; k < nv; k++) {
		struct variant *x = &v[k];
		struct bench_row row = {
			.group = "tasks",
			.name = x->name,
			.unit = "ns/task",
			.st = x->st,
			.met = -1,
		};
		const struct variant *vs = x->ratio_vs ? find(v, nv, x->ratio_vs) : NULL;

		if (vs) {
			row.ratio_vs = vs->name;
			if (median_of(x) > 0 && median_of(vs) > 0)
				row.ratio = median_of(x) / median_of(vs);
		}
		row.target = x->target;
		/* A wrong or failing variant misses its target; one that could
		 * not run here (no python3), or whose reference row is not in
		 * the table, is not judged. */
		if (x->target && (x->failed == F_WRONG || x->failed == F_LIB))
			row.met = 0;
		else if (x->target && !x->failed && vs)
			judge(x, &row, vs);
		row.note = x->note[0] ? x->note : NULL;
		err = bench_report_add(r, &row);
		if (err)
			return err;
	}
	return 0;
}

int bench_group_tasks(const struct bench_cfg *cfg, struct bench_report *r)
{
	struct variant v[] = {
		{ .name = "serial loop (fn ptr)", .kind = K_SERIAL },
		{ .name = "OpenMP dynamic,1", .kind = K_OMP_DYNAMIC1,
		  .ratio_vs = "serial loop (fn ptr)" },
		{ .name = "OpenMP static", .kind = K_OMP_STATIC,
		  .ratio_vs = "serial loop (fn ptr)" },
		{ .name = "shp_map cs=1", .kind = K_SHP_MAP, .chunksize = 1,
		  .ratio_vs = "OpenMP dynamic,1",
		  .target = "within 1x-2x of OpenMP dynamic,1",
		  .target_ratio = TARGET_OMP },
		{ .name = "shp_map cs=0 (auto)", .kind = K_SHP_MAP, .chunksize = 0,
		  .ratio_vs = "OpenMP dynamic,1" },
		{ .name = "shp_apply_async", .kind = K_SHP_APPLY_ASYNC,
		  .ratio_vs = "shp_map cs=1" },
		{ .name = "shp_imap (auto)", .kind = K_SHP_IMAP,
		  .ratio_vs = "shp_map cs=0 (auto)" },
		{ .name = "fork+pipe per task", .kind = K_PROCESS,
		  .ratio_vs = "shp_map cs=1" },
		{ .name = "Python Pool.map cs=1", .kind = K_PY, .py_mode = "map_cs1",
		  .ratio_vs = "shp_map cs=1",
		  .target = "shmpool >= 1000x Python Pool.map(chunksize=1)",
		  .target_ratio = TARGET_PY_CS1, .at_least = true },
		{ .name = "Python Pool.map (auto)", .kind = K_PY, .py_mode = "map_auto",
		  .ratio_vs = "shp_map cs=0 (auto)",
		  .target = "shmpool >= 20x Python Pool.map (auto)",
		  .target_ratio = TARGET_PY_AUTO, .at_least = true },
		{ .name = "Python apply_async", .kind = K_PY, .py_mode = "apply_async",
		  .ratio_vs = "shp_apply_async" },
	};
	const size_t nv = sizeof(v) / sizeof(v[0]);
	size_t n = cfg->quick ? N_QUICK : N_FULL;
	struct shp_pool_options popt = { .workers = cfg->workers };
	struct tctx c = { .workers = cfg->workers };
	struct bench_py *py = NULL;
	uint64_t *in = NULL, *out = NULL, *ref = NULL;
	char pyerr[256];
	int err, ret = 0;

	in = alloc_u64(n);
	out = alloc_u64(n);
	ref = alloc_u64(n);
	c.pids = calloc(PROC_MAX, sizeof(*c.pids));
	c.recs = calloc(PROC_MAX, sizeof(*c.recs));
	for (size_t k = 0; k < nv; k++)
		v[k].samples = calloc(cfg->runs, sizeof(uint64_t));
	err = -ENOMEM;
	if (!in || !out || !ref || !c.pids || !c.recs)
		goto out;
	for (size_t k = 0; k < nv; k++) {
		if (!v[k].samples)
			goto out;
	}
	for (size_t i = 0; i < n; i++)
		in[i] = bench_input(i);

	/* The reference: the serial loop's result, itself checked against
	 * the plain expression once, so that a broken reference cannot make
	 * every variant "agree". */
	c.in = in;
	c.out = ref;
	c.n = n;
	run_serial(&c);
	for (size_t i = 0; i < n; i++) {
		if (ref[i] != in[i] + 1) {
			for (size_t k = 1; k < nv; k++)
				fail(&v[k], F_SKIP, "not run: no reference");
			fail(&v[0], F_WRONG, "WRONG RESULTS: the serial reference at %zu", i);
			goto rows;
		}
	}
	c.ref = ref;
	c.out = out;

	bench_progress("tasks", "creating a pool of %u workers", cfg->workers);
	err = shp_pool_create(&c.pool, &popt);
	if (err) {
		fprintf(stderr, "tasks: shp_pool_create: %s\n", shp_strerror(err));
		err = err > -4096 ? err : -EIO;
		goto out;
	}
	/* After the pool: its processes must not inherit the socket. */
	bench_progress("tasks", "starting pool_bench.py");
	if (bench_py_start(cfg, &py, pyerr, sizeof(pyerr)))
		py = NULL;

	for (size_t k = 0; k < nv; k++) {
		struct variant *x = &v[k];

		switch (x->kind) {
		case K_SHP_APPLY_ASYNC:
			x->n = n / APPLY_SHARE;
			break;
		case K_PROCESS:
			x->n = n / PROC_SHARE;
			x->n = x->n < PROC_MIN ? PROC_MIN : x->n > PROC_MAX ? PROC_MAX : x->n;
			if (cfg->quick)
				x->n = PROC_QUICK;
			break;
		case K_PY:
			if (!strcmp(x->py_mode, "map_cs1"))
				x->n = cfg->quick ? PY_CS1_QUICK : PY_CS1_FULL;
			else if (!strcmp(x->py_mode, "map_auto"))
				x->n = cfg->quick ? PY_AUTO_QUICK : PY_AUTO_FULL;
			else
				x->n = cfg->quick ? PY_APPLY_QUICK : PY_APPLY_FULL;
			break;
		default:
			x->n = n;
		}
		if (x->kind == K_PY && !py)
			fail(x, F_SKIP, "%s", pyerr);
		else if (x->kind != K_PY && !fn_of(x))
			fail(x, F_SKIP, "not built with OpenMP");
	}

	/* Rounds: every variant once per round (round 0 is the warm-up), so
	 * that a noisy stretch of the shared machine hits them all alike and
	 * the ratios, taken between medians, stay meaningful. */
	for (unsigned round = 0; round <= cfg->runs; round++) {
		for (size_t k = 0; k < nv; k++) {
			struct variant *x = &v[k];
			uint64_t ns = 0;

			if (x->failed)
				continue;
			bench_progress("tasks", "round %u of %u%s: %s", round, cfg->runs,
			               round ? "" : " (warm-up)", x->name);
			if (x->kind == K_PY)
				err = py_round(py, x, c.ref, &ns);
			else
				err = c_round(&c, x, &ns);
			if (!err && round)
				x->samples[x->nsamples++] = ns;
		}
	}

rows:
	for (size_t k = 0; k < nv; k++) {
		struct variant *x = &v[k];
		char buf[sizeof(x->note)];

		if (x->failed == F_WRONG || x->failed == F_LIB)
			ret = BENCH_WRONG;
		if (x->failed)
			continue;
		if (x->kind == K_PY)
			snprintf(buf, sizeof(buf), "%zu tasks, Python %s", x->n,
			         bench_py_version(py));
		else if (x->kind == K_SHP_APPLY_ASYNC)
			snprintf(buf, sizeof(buf), "%zu tasks (n/%d), %d handles in flight", x->n,
			         APPLY_SHARE, APPLY_BATCH);
		else if (x->kind == K_PROCESS)
			snprintf(buf, sizeof(buf), "%zu tasks, a process each (the seed's Process+Queue)",
			         x->n);
		else
			snprintf(buf, sizeof(buf), "%zu tasks", x->n);
		snprintf(x->note, sizeof(x->note), "%s", buf);
	}
	err = add_rows(r, v, nv);
	if (!err)
		err = ret;
out:
	bench_py_stop(py);
	if (bench_pool_shutdown(c.pool, "tasks") && !err)
		err = BENCH_WRONG;
	for (size_t k = 0; k < nv; k++)
		free(v[k].samples);
	free(c.pids);
	free(c.recs);
	free(in);
	free(out);
	free(ref);
	return err;
}
