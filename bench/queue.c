/*
 * The "queue" group: what users coming from Python's multiprocessing
 * compare, queues and pipelines of processes. No target in DESIGN.md
 * covers these rows: they report, and judge nothing.
 *
 * Process+Queue, the seed's first example at scale: P producer processes
 * (shp_process_start; --workers, at most MAX_PROD) each put M records of
 * 16 bytes (position, value), and the parent gets all P * M. Over
 *   shp_queue    blocking shp_queue_put and shp_queue_get, one record at a
 *                time, as the Python loop does; REC_CAP records of room,
 *                the 64 KiB a pipe has;
 *   shp_collect  each record at its position, the parent taking them in
 *                position order: the seed's put((pos, r)) and sort;
 *   a pipe       a write() per record (atomic: below PIPE_BUF), the parent
 *                reading whatever is there: the kernel's channel at its
 *                best;
 *   Python       multiprocessing.Queue and Process producers, the same P
 *                and M (pool_bench.py, mode queue).
 * The clock runs from a gate that every producer has reached to the last
 * record in the parent's hands: process start-up is the tasks group's
 * subject (a fork per task). Every record is checked: each producer's M
 * arrive exactly once, in the order it put them.
 *
 * Pipelines, as pypeln's process stages: map x + 1 (W workers, --workers),
 * filter "even" (1 worker; it keeps every other item), map 2x (W workers),
 * a queue of PL_MAXSIZE after each stage. shp_pipeline in input order and
 * unordered; the same three functions in a serial loop (the floor); and
 * the same stages in Python, by hand: Process workers joined by
 * Queue(PL_MAXSIZE) with sentinels (pool_bench.py, mode pipeline). ns per
 * source item, from the first item fed (every worker started) to the last
 * result; what starting and stopping a pipeline costs (forks, reaping) is
 * the difference to its whole life, on a row of its own.
 *
 * 2x10us: two map stages of a 10 us busy loop, max(1, W / 2) workers each:
 * the parallelism a pipeline gives, as a speedup over the serial loop.
 *
 * Every variant runs once per round, the first round a warm-up, so that a
 * noisy stretch of the shared machine falls on all of them alike; every
 * pipeline output is checked against the serial result, position by
 * position, after every run; the Python rows' checksums against the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "shmpool.h"

#define GROUP "queue"

#define MAX_PROD 16
#define REC_CAP 4096 /* records: 64 KiB, a pipe's default buffer */
#define PQ_M_FULL 10000
#define PQ_M_QUICK 1000

/*
 * Sizes for about 10 s (quick) and 40 s of the whole group on 2 busy
 * cores with the default 5 timed rounds. There an item took 15 to 100 us
 * through the C pipelines, which have more processes than cores, and 50 to
 * 350 us through Python's, whose processes also take a good part of a
 * second to start: its own n, from the same inputs.
 */
#define PL_MAXSIZE 64
#define PL_N_FULL 20000
#define PL_N_QUICK 2000
#define PY_PL_N_FULL 4000
#define PY_PL_N_QUICK 500
_Static_assert(PY_PL_N_FULL <= PL_N_FULL && PY_PL_N_QUICK <= PL_N_QUICK,
               "the Python checksum comes from the C workload's results");

#define BUSY_US 10
#define BUSY_N_FULL 5000 /* 0.1 s serially */
#define BUSY_N_QUICK 1000

/* A wait longer than this is a lost item, not a slow machine. */
#define WAIT_NS (30 * INT64_C(1000000000))
#define READY_NS (10 * INT64_C(1000000000))
#define CHILD_TIMEOUT_S 120

/* No output at this position (yet). Odd: every kept value is even, and a
 * busy result equal to it is a 2^-64 chance. */
#define POISON UINT64_C(0xa5a5a5a5a5a5a5a5)

enum kind {
	K_SHP_QUEUE,
	K_SHP_COLLECT,
	K_PIPE,
	K_PY_QUEUE,
	K_SERIAL,
	K_PIPELINE,
	K_PY_PIPELINE,
	K_BUSY_SERIAL,
	K_BUSY_PIPELINE,
};

enum failure {
	F_NONE,
	F_SKIP,  /* could not run here: python3 absent */
	F_SETUP, /* the system refused (fork, pipe): not the variant's fault */
	F_LIB,   /* shmpool returned an error */
	F_WRONG, /* wrong results */
};

/* A pipeline workload: its items' expected outputs, and a run's. */
struct load {
	size_t n;
	uint64_t *want; /* by source position; POISON: filtered out */
	uint64_t *got;
};

struct variant {
	const char *name;
	enum kind kind;
	unsigned flags;       /* K_PIPELINE: 0 or SHP_UNORDERED */
	const char *ratio_vs; /* the row this one is compared with */
	const char *ss_name;  /* pipelines: the start and stop row, or NULL */
	struct load *ld;      /* pipelines and serial loops */
	size_t n;             /* items per run */
	uint64_t *ns;         /* per timed round: the measured span */
	uint64_t *life;       /* pipelines: create to the last worker reaped */
	unsigned nsamples;
	enum failure failed;
	char note[256];
};

/* A record of the Process+Queue rows. */
struct rec {
	uint64_t pos; /* producer * M + its sequence number */
	uint64_t val; /* bench_input(pos) + 1 */
};

struct qctx {
	unsigned np;        /* producers */
	uint64_t m;         /* records per producer */
	struct rec *recs;   /* np * m, in arrival order */
	uint64_t pq_ck;     /* the Python queue's checksum when right */
	unsigned w;         /* workers of the wide stages */
	size_t fed;         /* items the pipeline's source gave out */
	uint64_t fed_ns;    /* when it gave out the first */
	size_t src_n;       /* items the source gives */
	uint64_t iters;     /* bench_busy() iterations of a busy stage */
	size_t py_n;        /* items per Python pipeline run */
	uint64_t py_ck;     /* the Python pipeline's checksum when right */
	struct bench_py *py;
};

/* Marks variant v failed with f, and says why in its note. */
#define fail(v, f, ...) \
	((v)->failed = (f), snprintf((v)->note, sizeof((v)->note), __VA_ARGS__))

/* ---------------------------------------------------------- the stages */

static int st_inc(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(uint64_t *)out = *(const uint64_t *)in + 1;
	return 0;
}

static int st_even(const void *in, void *ctx)
{
	(void)ctx;
	return *(const uint64_t *)in % 2 == 0;
}

static int st_double(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(uint64_t *)out = 2 * *(const uint64_t *)in;
	return 0;
}

static int st_busy(const void *in, void *out, void *ctx)
{
	*(uint64_t *)out = bench_busy(*(const uint64_t *)in, *(const uint64_t *)ctx);
	return 0;
}

/*
 * Every variant loads the stages from here, as tasks.c does: the serial
 * loop cannot inline them, and pays the indirect call per item that the
 * pipeline's workers pay.
 */
static shp_fn volatile fn_inc = st_inc;
static shp_filter_fn volatile fn_even = st_even;
static shp_fn volatile fn_double = st_double;
static shp_fn volatile fn_busy = st_busy;

/* ---------------------------------------------------- Process + Queue */

/* What a producer process is given. */
struct producer {
	const struct qctx *c;
	enum kind kind;
	uint64_t first;  /* its first position: id * M */
	shp_queue *q;    /* K_SHP_QUEUE */
	shp_collect *col; /* K_SHP_COLLECT */
	int fd;          /* K_PIPE: the write end */
	int ready, go;   /* the gate: write a byte, then wait for EOF */
	int unused[3];   /* the parent's ends: closed, or EOF never comes */
};

/* A producer (shp_process_start): its exit status is what it returns. */
static int produce(void *arg)
{
	const struct producer *pr = arg;
	char b = 0;

	/* A producer stuck on a full queue whose reader is gone ends. */
	signal(SIGALRM, SIG_DFL);
	alarm(CHILD_TIMEOUT_S);
	for (int i = 0; i < 3; i++) {
		if (pr->unused[i] >= 0)
			close(pr->unused[i]);
	}
	if (write(pr->ready, &b, 1) != 1)
		return 2;
	/* EOF when the parent closes its end: every producer goes at once. */
	while (read(pr->go, &b, 1) < 0 && errno == EINTR)
		;
	for (uint64_t pos = pr->first; pos < pr->first + pr->c->m; pos++) {
		struct rec r = { .pos = pos, .val = bench_input(pos) + 1 };

		if (pr->kind == K_SHP_QUEUE) {
			if (shp_queue_put(pr->q, &r, -1))
				return 3;
		} else if (pr->kind == K_SHP_COLLECT) {
			if (shp_collect_put(pr->col, pos, &r.val))
				return 3;
		} else if (write(pr->fd, &r, sizeof(r)) != (ssize_t)sizeof(r)) {
			return 3;
		}
	}
	return 0;
}

/* n bytes from fd within READY_NS: one per producer at the gate. */
static int wait_ready(int fd, unsigned n)
{
	uint64_t deadline = bench_now_ns() + READY_NS;
	char buf[MAX_PROD];

	while (n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t now = bench_now_ns();
		ssize_t k;

		if (now >= deadline)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)((deadline - now) / 1000000 + 1)) <= 0)
			continue; /* EINTR, or the deadline: looked at above */
		k = read(fd, buf, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -EPIPE; /* every producer died before the gate */
		n -= (unsigned)k;
	}
	return 0;
}

static void kill_all(shp_process **pp, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		shp_process_kill(pp[i], SIGKILL);
}

/* Joins and frees the producers; 0 when every one exited with 0. */
static int join_all(shp_process **pp, unsigned n, struct variant *v)
{
	int bad = 0;

	for (unsigned i = 0; i < n; i++) {
		int st = 0, err = shp_process_join(pp[i], -1);

		if (!err)
			err = shp_process_wait_status(pp[i], &st);
		shp_process_free(pp[i]);
		if (!err && WIFEXITED(st) && !WEXITSTATUS(st))
			continue;
		if (!bad++ && !v->failed) {
			if (err)
				fail(v, F_LIB, "shp_process_join: %s", shp_strerror(err));
			else
				fail(v, F_WRONG, "WRONG RESULTS: producer %u %s %d", i,
				     WIFSIGNALED(st) ? "killed by signal" : "exited with status",
				     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
		}
	}
	return bad;
}

/* Every producer's records exactly once, in the order it put them; from
 * a collection, in position order. */
static void pq_verify(struct qctx *c, struct variant *v)
{
	uint64_t next[MAX_PROD] = { 0 }, total = c->np * c->m;

	for (uint64_t i = 0; i < total; i++) {
		const struct rec *r = &c->recs[i];
		uint64_t p = r->pos / c->m;

		if (r->pos >= total || r->pos % c->m != next[p] ||
		    (v->kind == K_SHP_COLLECT && r->pos != i)) {
			fail(v, F_WRONG,
			     "WRONG RESULTS: record %" PRIu64 " of %" PRIu64
			     " has position %" PRIu64 ": lost, repeated or out of order",
			     i, total, r->pos);
			return;
		}
		if (r->val != bench_input(r->pos) + 1) {
			fail(v, F_WRONG,
			     "WRONG RESULTS: position %" PRIu64 " came with %#" PRIx64
			     ", expected %#" PRIx64,
			     r->pos, r->val, bench_input(r->pos) + 1);
			return;
		}
		next[p]++;
	}
}

/* The parent's side of a shp_queue run: every record, then nothing. */
static void pq_get_queue(struct qctx *c, struct variant *v, shp_queue *q, uint64_t total,
                         uint64_t *t1)
{
	for (uint64_t i = 0; i < total; i++) {
		int r = shp_queue_get(q, &c->recs[i], WAIT_NS);

		if (r == 1)
			continue;
		if (r < 0 && r != -ETIMEDOUT)
			fail(v, F_LIB, "shp_queue_get: %s", shp_strerror(r));
		else
			fail(v, F_WRONG,
			     "WRONG RESULTS: shp_queue_get after %" PRIu64 " of %" PRIu64
			     " records: %s",
			     i, total, r ? shp_strerror(r) : "the end marker");
		break;
	}
	*t1 = bench_now_ns();
}

/* The parent's side of a shp_collect run: every position in order, then
 * the end. */
static void pq_get_collect(struct qctx *c, struct variant *v, shp_collect *col, uint64_t total,
                           uint64_t *t1)
{
	for (uint64_t i = 0; i < total; i++) {
		struct rec *r = &c->recs[i];
		size_t pos;
		int ret = shp_collect_next(col, &pos, &r->val, WAIT_NS);

		r->pos = pos;
		if (ret == 1)
			continue;
		fail(v, F_WRONG,
		     "WRONG RESULTS: shp_collect_next after %" PRIu64 " of %" PRIu64
		     " positions: %s",
		     i, total, ret ? shp_strerror(ret) : "the end");
		break;
	}
	*t1 = bench_now_ns();
}

/* The parent's side of a pipe run: every record's bytes. */
static void pq_get_pipe(struct qctx *c, struct variant *v, int fd, uint64_t total, uint64_t *t1)
{
	size_t want = total * sizeof(struct rec), bytes = 0;

	while (bytes < want) {
		ssize_t k = read(fd, (char *)c->recs + bytes, want - bytes);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			fail(v, F_WRONG, "WRONG RESULTS: the pipe ended after %zu of %zu bytes",
			     bytes, want);
			break;
		}
		bytes += (size_t)k;
	}
	*t1 = bench_now_ns();
}

/* One Process+Queue run over a shp_queue or a pipe: 0, or non-zero with
 * v->failed set. */
static int run_pq(struct qctx *c, struct variant *v, uint64_t *ns)
{
	uint64_t total = c->np * c->m, t0, t1 = 0;
	int data[2] = { -1, -1 }, ready[2] = { -1, -1 }, go[2] = { -1, -1 };
	struct producer pr[MAX_PROD];
	shp_process *pp[MAX_PROD];
	unsigned started = 0;
	shp_collect *col = NULL;
	shp_queue *q = NULL;
	struct rec extra;
	int err;

	if (v->kind == K_SHP_QUEUE) {
		err = shp_queue_create(&q, sizeof(struct rec), REC_CAP);
		if (err) {
			fail(v, F_LIB, "shp_queue_create: %s", shp_strerror(err));
			return err;
		}
	} else if (v->kind == K_SHP_COLLECT) {
		err = shp_collect_create(&col, total, sizeof(uint64_t));
		if (err) {
			fail(v, F_LIB, "shp_collect_create: %s", shp_strerror(err));
			return err;
		}
	} else if (pipe2(data, O_CLOEXEC)) {
		data[0] = data[1] = -1;
	}
	if (pipe2(ready, O_CLOEXEC))
		ready[0] = ready[1] = -1;
	if (pipe2(go, O_CLOEXEC))
		go[0] = go[1] = -1;
	if (ready[0] < 0 || go[0] < 0 || (v->kind == K_PIPE && data[0] < 0)) {
		fail(v, F_SETUP, "pipe: %s", strerror(errno));
		goto out;
	}
	for (; started < c->np; started++) {
		pr[started] = (struct producer){
			.c = c, .kind = v->kind, .first = started * c->m, .q = q, .col = col,
			.fd = data[1], .ready = ready[1], .go = go[0],
			.unused = { ready[0], go[1], data[0] },
		};
		err = shp_process_start(&pp[started], produce, &pr[started]);
		if (err) {
			fail(v, err == -EAGAIN ? F_SETUP : F_LIB, "shp_process_start: %s",
			     shp_strerror(err));
			kill_all(pp, started);
			goto join;
		}
	}
	/* The parent keeps the read ends only: its reads see EOF once every
	 * producer has exited. */
	close(ready[1]);
	close(go[0]);
	ready[1] = go[0] = -1;
	if (data[1] >= 0) {
		close(data[1]);
		data[1] = -1;
	}
	err = wait_ready(ready[0], c->np);
	if (err) {
		fail(v, F_SETUP, "producers not at the gate: %s", strerror(-err));
		kill_all(pp, started);
		goto join;
	}
	t0 = bench_now_ns();
	close(go[1]);
	go[1] = -1;
	if (v->kind == K_SHP_QUEUE)
		pq_get_queue(c, v, q, total, &t1);
	else if (v->kind == K_SHP_COLLECT)
		pq_get_collect(c, v, col, total, &t1);
	else
		pq_get_pipe(c, v, data[0], total, &t1);
	*ns = t1 - t0;
	if (v->failed)
		kill_all(pp, started); /* they may wait on a full queue */
join:
	if (join_all(pp, started, v) || v->failed)
		goto out;
	/* Every producer is gone: anything still there is a record too many
	 * (a collection has exactly its positions: it must say it ended). */
	if (v->kind == K_SHP_QUEUE ? shp_queue_tryget(q, &extra) != -EAGAIN
	    : v->kind == K_SHP_COLLECT ? shp_collect_next(col, NULL, NULL, 0) != 0
	                               : read(data[0], &extra, sizeof(extra)) != 0)
		fail(v, F_WRONG, "WRONG RESULTS: more than %" PRIu64 " records came", total);
	else
		pq_verify(c, v);
out:
	for (int i = 0; i < 2; i++) {
		if (data[i] >= 0)
			close(data[i]);
		if (ready[i] >= 0)
			close(ready[i]);
		if (go[i] >= 0)
			close(go[i]);
	}
	shp_queue_destroy(q);
	shp_collect_destroy(col);
	return v->failed ? -1 : 0;
}

/* ------------------------------------------------------------ pipelines */

/*
 * The pipelines' source, called in the feeder thread. Its first call
 * starts the clock: the workers are forked by then (shp_pipeline_next
 * forks them before it starts the feeder). fed and fed_ns are read after
 * shp_pipeline_free, which joins the feeder thread.
 */
static int source(void *in, void *arg)
{
	struct qctx *c = arg;

	if (c->fed == c->src_n)
		return 0;
	if (!c->fed)
		c->fed_ns = bench_now_ns();
	*(uint64_t *)in = bench_input(c->fed++);
	return 1;
}

static int add_stages(struct qctx *c, shp_pipeline *p, bool busy)
{
	unsigned half = c->w / 2 ? c->w / 2 : 1;
	int err;

	if (busy) {
		err = shp_pipeline_map(p, fn_busy, &c->iters, sizeof(uint64_t), half, PL_MAXSIZE);
		if (!err)
			err = shp_pipeline_map(p, fn_busy, &c->iters, sizeof(uint64_t), half,
			                       PL_MAXSIZE);
		return err;
	}
	err = shp_pipeline_map(p, fn_inc, NULL, sizeof(uint64_t), c->w, PL_MAXSIZE);
	if (!err)
		err = shp_pipeline_filter(p, fn_even, NULL, 1, PL_MAXSIZE);
	if (!err)
		err = shp_pipeline_map(p, fn_double, NULL, sizeof(uint64_t), c->w, PL_MAXSIZE);
	return err;
}

/*
 * One pipeline run: its results by position into ld->got. A position that
 * comes twice, or out of order when order was asked for, is wrong at once;
 * the rest is checked against ld->want afterwards.
 */
static int run_pipeline(struct qctx *c, struct variant *v, uint64_t *ns, uint64_t *life)
{
	struct load *ld = v->ld;
	bool ordered = !(v->flags & SHP_UNORDERED);
	uint64_t t0 = bench_now_ns(), end, val;
	shp_pipeline *p = NULL;
	size_t idx, prev = 0;
	bool any = false;
	int r;

	c->fed = 0;
	c->src_n = ld->n;
	r = shp_pipeline_create_gen(&p, source, c, sizeof(uint64_t), v->flags);
	if (!r)
		r = add_stages(c, p, v->kind == K_BUSY_PIPELINE);
	while (!r && (r = shp_pipeline_next(p, &idx, &val, WAIT_NS)) == 1) {
		const char *why = NULL;

		if (idx >= ld->n)
			why = "though no such item was fed";
		else if (ld->got[idx] != POISON)
			why = "twice";
		else if (ordered && any && idx <= prev)
			why = "out of order";
		if (why) {
			fail(v, F_WRONG, "WRONG RESULTS: position %zu came %s", idx, why);
			break;
		}
		ld->got[idx] = val;
		prev = idx;
		any = true;
		r = 0;
	}
	end = bench_now_ns();
	shp_pipeline_free(p);
	*life = bench_now_ns() - t0;
	if (v->failed)
		return -1;
	if (r) {
		if (r == -ETIMEDOUT)
			fail(v, F_WRONG, "WRONG RESULTS: no result in %d s: stuck",
			     (int)(WAIT_NS / 1000000000));
		else
			fail(v, r == -EAGAIN ? F_SETUP : F_LIB, "shp_pipeline: %s",
			     shp_strerror(r));
		return -1;
	}
	if (c->fed != ld->n) {
		fail(v, F_WRONG, "WRONG RESULTS: the source gave %zu items of %zu", c->fed, ld->n);
		return -1;
	}
	*ns = end - c->fed_ns;
	return 0;
}

/* The same functions in a loop, through the same pointers. */
static int run_serial(struct qctx *c, struct variant *v, uint64_t *ns)
{
	struct load *ld = v->ld;
	uint64_t t0 = bench_now_ns();

	for (size_t i = 0; i < ld->n; i++) {
		uint64_t x = bench_input(i), y, z;

		if (v->kind == K_BUSY_SERIAL) {
			(void)fn_busy(&x, &y, &c->iters);
			(void)fn_busy(&y, &ld->got[i], &c->iters);
			continue;
		}
		(void)fn_inc(&x, &y, NULL);
		if (fn_even(&y, NULL) != 1)
			continue;
		(void)fn_double(&y, &z, NULL);
		ld->got[i] = z;
	}
	*ns = bench_now_ns() - t0;
	return 0;
}

/* Before every run, so that each has to write every output to pass, and
 * a run that failed half-way leaves nothing behind for the next. */
static void poison(struct load *ld)
{
	for (size_t i = 0; i < ld->n; i++)
		ld->got[i] = POISON;
}

/* After every run: got equals want, position by position. */
static int check_load(struct variant *v)
{
	struct load *ld = v->ld;
	size_t first = 0, bad = bench_diff_u64(ld->got, ld->want, ld->n, &first);

	if (!bad)
		return 0;
	fail(v, F_WRONG,
	     "WRONG RESULTS: %zu of %zu positions differ from the serial result; "
	     "first %zu: %#" PRIx64 ", expected %#" PRIx64 " (%#" PRIx64 ": none)",
	     bad, ld->n, first, ld->got[first], ld->want[first], POISON);
	return -1;
}

/* --------------------------------------------------------------- Python */

static int py_queue(struct qctx *c, struct variant *v, uint64_t *ns)
{
	char req[64], ans[256], err[256];
	unsigned long long p, m, ck;
	double secs;
	int r;

	snprintf(req, sizeof(req), "queue %u %" PRIu64, c->np, c->m);
	r = bench_py_ask(c->py, req, ans, sizeof(ans), err, sizeof(err));
	if (r) {
		fail(v, F_SKIP, "%s", err);
		return r;
	}
	if (sscanf(ans, "queue %llu %llu %lf %llu", &p, &m, &secs, &ck) != 4 || p != c->np ||
	    m != c->m || !(secs > 0)) {
		fail(v, F_SKIP, "pool_bench.py: unexpected '%.160s'", ans);
		return -EPROTO;
	}
	if (ck != c->pq_ck) {
		fail(v, F_WRONG, "WRONG RESULTS: checksum %llu, expected %" PRIu64, ck, c->pq_ck);
		return 1;
	}
	*ns = (uint64_t)(secs * 1e9);
	return 0;
}

static int py_pipeline(struct qctx *c, struct variant *v, uint64_t *ns, uint64_t *life)
{
	char req[64], ans[256], err[256];
	unsigned long long n, w, k, ck, strays;
	double stream, total;
	int r;

	snprintf(req, sizeof(req), "pipeline %zu %u %d", c->py_n, c->w, PL_MAXSIZE);
	r = bench_py_ask(c->py, req, ans, sizeof(ans), err, sizeof(err));
	if (r) {
		fail(v, F_SKIP, "%s", err);
		return r;
	}
	if (sscanf(ans, "pipeline %llu %llu %llu %lf %lf %llu %llu", &n, &w, &k, &stream, &total,
	           &ck, &strays) != 7 ||
	    n != c->py_n || w != c->w || k != PL_MAXSIZE || !(stream > 0) || !(total >= stream)) {
		fail(v, F_SKIP, "pool_bench.py: unexpected '%.160s'", ans);
		return -EPROTO;
	}
	if (ck != c->py_ck || strays) {
		fail(v, F_WRONG, "WRONG RESULTS: checksum %llu, expected %" PRIu64 "; %llu strays",
		     ck, c->py_ck, strays);
		return 1;
	}
	*ns = (uint64_t)(stream * 1e9);
	*life = (uint64_t)(total * 1e9);
	return 0;
}

/* ----------------------------------------------------------------- rows */

/* One run of v, checked; 0 or non-zero with v->failed set. */
static int run_one(struct qctx *c, struct variant *v, uint64_t *ns, uint64_t *life)
{
	int err = 0;

	switch (v->kind) {
	case K_SHP_QUEUE:
	case K_SHP_COLLECT:
	case K_PIPE:
		return run_pq(c, v, ns);
	case K_PY_QUEUE:
		return py_queue(c, v, ns);
	case K_PY_PIPELINE:
		return py_pipeline(c, v, ns, life);
	case K_SERIAL:
	case K_BUSY_SERIAL:
		poison(v->ld);
		err = run_serial(c, v, ns);
		break;
	case K_PIPELINE:
	case K_BUSY_PIPELINE:
		poison(v->ld);
		err = run_pipeline(c, v, ns, life);
		break;
	}
	return err ? err : check_load(v);
}

static const struct variant *find(const struct variant *v, size_t nv, const char *name)
{
	for (size_t k = 0; k < nv; k++) {
		if (!strcmp(v[k].name, name))
			return &v[k];
	}
	return NULL;
}

/* The median, min and max of samples[0..n), each scaled by f. */
static int stats_scaled(const uint64_t *samples, unsigned n, double f, struct bench_stats *st)
{
	int err = bench_stats(samples, n, st);

	if (err)
		return err;
	st->median *= f;
	st->min *= f;
	st->max *= f;
	return 0;
}

/*
 * The start and stop row of pipeline x: its whole life less its streaming,
 * in each round. vs_name, vs: the row it is compared with, or NULL. Its
 * figures go to *st.
 */
static int add_startstop(struct bench_report *r, const struct variant *x, const char *vs_name,
                         const struct bench_stats *vs, struct bench_stats *st)
{
	struct bench_row row = { .group = GROUP, .name = x->ss_name, .unit = "ms", .met = -1 };
	uint64_t *d = NULL;

	*st = (struct bench_stats){ 0 };
	row.note = x->note;
	if (!x->failed && x->nsamples) {
		d = calloc(x->nsamples, sizeof(*d));
		if (!d)
			return -ENOMEM;
		for (unsigned i = 0; i < x->nsamples; i++)
			d[i] = x->life[i] - x->ns[i];
		int err = stats_scaled(d, x->nsamples, 1e-6, st);
		free(d);
		if (err)
			return err;
		row.note = "its whole life less the streaming: create, fork and start the workers, "
		           "end and reap them";
	}
	row.st = *st;
	if (vs && vs->n && st->n) {
		row.ratio_vs = vs_name;
		row.ratio = st->median / vs->median;
	}
	return bench_report_add(r, &row);
}

static int add_rows(struct bench_report *r, struct variant *v, size_t nv)
{
	struct bench_stats *st = calloc(nv, sizeof(*st)), ss, shp_ss;
	const char *shp_ss_name = NULL;
	int err = st ? 0 : -ENOMEM;

	for (size_t k = 0; k < nv && !err; k++) {
		struct variant *x = &v[k];
		/* ns per item; us per item for the busy serial loop. */
		double f = 1.0 / (double)x->n / (x->kind == K_BUSY_SERIAL ? 1e3 : 1);

		if (!x->failed && x->nsamples)
			err = stats_scaled(x->ns, x->nsamples, f, &st[k]);
	}
	for (size_t k = 0; k < nv && !err; k++) {
		struct variant *x = &v[k];
		const struct variant *vs = x->ratio_vs ? find(v, nv, x->ratio_vs) : NULL;
		const struct bench_stats *vst = vs ? &st[vs - v] : NULL;
		struct bench_row row = {
			.group = GROUP,
			.name = x->name,
			.unit = x->kind == K_BUSY_SERIAL ? "us/item" : "ns/item",
			.st = st[k],
			.met = -1,
			.note = x->note[0] ? x->note : NULL,
		};

		if (x->kind == K_BUSY_PIPELINE) {
			/* The serial median over each run, as the scaling
			 * group does: the median, slowest and fastest run. */
			double ser = vst && vst->n ? vst->median * 1e3 : 0;

			row.unit = "speedup";
			row.st.n = ser > 0 ? st[k].n : 0;
			if (row.st.n) {
				row.st.median = ser / st[k].median;
				row.st.min = ser / st[k].max;
				row.st.max = ser / st[k].min;
			}
		} else if (vst && vst->n && st[k].n) {
			row.ratio_vs = vs->name;
			row.ratio = st[k].median / vst->median;
		}
		err = bench_report_add(r, &row);
	}
	/* The start and stop rows after the others: another unit. */
	for (size_t k = 0; k < nv && !err; k++) {
		struct variant *x = &v[k];

		if (!x->ss_name)
			continue;
		err = add_startstop(r, x, shp_ss_name, shp_ss_name ? &shp_ss : NULL, &ss);
		if (x->kind == K_PIPELINE) {
			shp_ss = ss;
			shp_ss_name = x->ss_name;
		}
	}
	free(st);
	return err;
}

/* The expected results of both pipeline workloads and the Python rows'
 * checksums, computed plainly: not through the variants' code. */
static int make_wants(struct qctx *c, struct load *tri, struct load *busy)
{
	size_t total = c->np * c->m, kept = 0;
	uint64_t *tmp = calloc(total > tri->n ? total : tri->n, sizeof(*tmp));

	if (!tmp)
		return -ENOMEM;
	for (size_t i = 0; i < total; i++)
		tmp[i] = bench_input(i) + 1;
	c->pq_ck = bench_checksum_u64(tmp, total);
	for (size_t i = 0; i < tri->n; i++) {
		uint64_t y = bench_input(i) + 1;

		tri->want[i] = y % 2 == 0 ? 2 * y : POISON;
		if (i < c->py_n && y % 2 == 0)
			tmp[kept++] = 2 * y;
	}
	c->py_ck = bench_checksum_u64(tmp, kept);
	free(tmp);
	for (size_t i = 0; i < busy->n; i++)
		busy->want[i] = bench_busy(bench_busy(bench_input(i), c->iters), c->iters);
	return 0;
}

static void note_of(struct qctx *c, struct variant *x, const char *pyver)
{
	unsigned half = c->w / 2 ? c->w / 2 : 1;

	switch (x->kind) {
	case K_SHP_QUEUE:
		snprintf(x->note, sizeof(x->note),
		         "%u x %" PRIu64 " records of 16 bytes; blocking put and get, one at a "
		         "time; room for %d",
		         c->np, c->m, REC_CAP);
		break;
	case K_SHP_COLLECT:
		snprintf(x->note, sizeof(x->note),
		         "the same records, each at its position; the parent takes them in "
		         "position order (the seed's put((pos, r)) and sort)");
		break;
	case K_PIPE:
		snprintf(x->note, sizeof(x->note),
		         "the same records, a write() each; the parent reads what is there");
		break;
	case K_PY_QUEUE:
		snprintf(x->note, sizeof(x->note),
		         "multiprocessing.Queue, Process producers, (position, value) tuples; "
		         "the same records; Python %s",
		         pyver);
		break;
	case K_SERIAL:
		snprintf(x->note, sizeof(x->note),
		         "map x+1, filter even (keeps every other), map 2x; %zu items", x->n);
		break;
	case K_PIPELINE:
		snprintf(x->note, sizeof(x->note),
		         "%s; workers %u/1/%u, maxsize %d; first item fed to last result; "
		         "%zu items",
		         x->flags ? "unordered" : "input order", c->w, c->w, PL_MAXSIZE, x->n);
		break;
	case K_PY_PIPELINE:
		snprintf(x->note, sizeof(x->note),
		         "pypeln's process stages by hand (not pypeln itself): Process workers "
		         "%u/1/%u, Queue(%d), sentinels, reordered by position; %zu items, "
		         "Python %s",
		         c->w, c->w, PL_MAXSIZE, x->n, pyver);
		break;
	case K_BUSY_SERIAL:
		snprintf(x->note, sizeof(x->note),
		         "two %d us stages (%" PRIu64 " busy iterations each); %zu items", BUSY_US,
		         c->iters, x->n);
		break;
	case K_BUSY_PIPELINE:
		snprintf(x->note, sizeof(x->note),
		         "over the serial loop; workers %u/%u, maxsize %d, input order", half, half,
		         PL_MAXSIZE);
		break;
	}
}

int bench_group_queue(const struct bench_cfg *cfg, struct bench_report *r)
{
	char pq[4][32], pyerr[256], pyver[32] = "";
	struct load tri = { 0 }, busy = { 0 };
	struct qctx c = { 0 };
	struct variant v[] = {
		{ .name = pq[0], .kind = K_SHP_QUEUE },
		{ .name = pq[1], .kind = K_SHP_COLLECT, .ratio_vs = pq[0] },
		{ .name = pq[2], .kind = K_PIPE, .ratio_vs = pq[0] },
		{ .name = pq[3], .kind = K_PY_QUEUE, .ratio_vs = pq[0] },
		{ .name = "3 stages serial loop", .kind = K_SERIAL, .ld = &tri },
		/* Unordered has the same forks and reaping as in order: one
		 * start and stop row. */
		{ .name = "3 stages shp_pipeline", .kind = K_PIPELINE, .ld = &tri,
		  .ratio_vs = "3 stages serial loop", .ss_name = "shp_pipeline start+stop" },
		{ .name = "3 stages shp unordered", .kind = K_PIPELINE, .flags = SHP_UNORDERED,
		  .ld = &tri, .ratio_vs = "3 stages shp_pipeline" },
		{ .name = "3 stages Python", .kind = K_PY_PIPELINE,
		  .ratio_vs = "3 stages shp_pipeline", .ss_name = "Python stages start+stop" },
		{ .name = "2x10us serial loop", .kind = K_BUSY_SERIAL, .ld = &busy },
		{ .name = "2x10us shp_pipeline", .kind = K_BUSY_PIPELINE, .ld = &busy,
		  .ratio_vs = "2x10us serial loop" },
	};
	const size_t nv = sizeof(v) / sizeof(v[0]);
	struct load *loads[] = { &tri, &busy };
	const size_t nl = sizeof(loads) / sizeof(loads[0]);
	int err = -ENOMEM, ret = 0;

	c.np = cfg->workers < MAX_PROD ? cfg->workers : MAX_PROD;
	c.m = cfg->quick ? PQ_M_QUICK : PQ_M_FULL;
	c.w = cfg->workers;
	c.py_n = cfg->quick ? PY_PL_N_QUICK : PY_PL_N_FULL;
	snprintf(pq[0], sizeof(pq[0]), "shp_queue, %u producer%s", c.np, c.np > 1 ? "s" : "");
	snprintf(pq[1], sizeof(pq[1]), "shp_collect, %u producer%s", c.np, c.np > 1 ? "s" : "");
	snprintf(pq[2], sizeof(pq[2]), "pipe, %u producer%s", c.np, c.np > 1 ? "s" : "");
	snprintf(pq[3], sizeof(pq[3]), "Python Queue, %u producer%s", c.np, c.np > 1 ? "s" : "");
	tri.n = cfg->quick ? PL_N_QUICK : PL_N_FULL;
	busy.n = cfg->quick ? BUSY_N_QUICK : BUSY_N_FULL;
	c.recs = calloc(c.np * c.m, sizeof(*c.recs));
	if (!c.recs)
		goto out;
	for (size_t k = 0; k < nl; k++) {
		loads[k]->want = calloc(loads[k]->n, sizeof(uint64_t));
		loads[k]->got = calloc(loads[k]->n, sizeof(uint64_t));
		if (!loads[k]->want || !loads[k]->got)
			goto out;
	}
	for (size_t k = 0; k < nv; k++) {
		struct variant *x = &v[k];

		x->ns = calloc(cfg->runs, sizeof(uint64_t));
		x->life = calloc(cfg->runs, sizeof(uint64_t));
		if (!x->ns || !x->life)
			goto out;
		x->n = x->kind == K_PY_PIPELINE ? c.py_n : x->ld ? x->ld->n : c.np * c.m;
	}
	bench_progress(GROUP, "calibrating the busy loop");
	c.iters = (uint64_t)(BUSY_US * 1e3 / bench_busy_calibrate() + 0.5);
	if (!c.iters)
		c.iters = 1;
	bench_progress(GROUP, "the expected results");
	err = make_wants(&c, &tri, &busy);
	if (err)
		goto out;

	bench_progress(GROUP, "starting pool_bench.py");
	if (!bench_py_start(cfg, &c.py, pyerr, sizeof(pyerr)))
		snprintf(pyver, sizeof(pyver), "%s", bench_py_version(c.py));
	for (size_t k = 0; k < nv; k++) {
		if ((v[k].kind == K_PY_QUEUE || v[k].kind == K_PY_PIPELINE) && !c.py)
			fail(&v[k], F_SKIP, "%s", pyerr);
	}

	/* Rounds: every variant once per round (round 0 is the warm-up). */
	for (unsigned round = 0; round <= cfg->runs; round++) {
		for (size_t k = 0; k < nv; k++) {
			struct variant *x = &v[k];
			uint64_t ns = 0, life = 0;

			if (x->failed)
				continue;
			bench_progress(GROUP, "round %u of %u%s: %s", round, cfg->runs,
			               round ? "" : " (warm-up)", x->name);
			if (run_one(&c, x, &ns, &life) || !round)
				continue;
			x->ns[x->nsamples] = ns;
			x->life[x->nsamples] = life;
			x->nsamples++;
		}
	}

	for (size_t k = 0; k < nv; k++) {
		if (v[k].failed == F_WRONG || v[k].failed == F_LIB)
			ret = BENCH_WRONG;
		else if (!v[k].failed)
			note_of(&c, &v[k], pyver);
	}
	err = add_rows(r, v, nv);
	if (!err)
		err = ret;
out:
	bench_py_stop(c.py);
	for (size_t k = 0; k < nv; k++) {
		free(v[k].ns);
		free(v[k].life);
	}
	for (size_t k = 0; k < nl; k++) {
		free(loads[k]->want);
		free(loads[k]->got);
	}
	free(c.recs);
	return err;
}
