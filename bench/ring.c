/*
 * The ring group: the task ring (lib/ring.c) side by side with DPDK's
 * rte_ring, Concurrency Kit's ck_ring and a ring buffer under a
 * process-shared mutex (bench/peers.h), on the same footing: 1024 slots
 * of 32 bytes each (rte_ring and ck_ring keep one slot free, so they hold
 * 1023), in one MAP_SHARED mapping per queue made before the processes are
 * forked; every operation one indirect call (for the shp ring into a
 * wrapper that calls the library, as the pool does; the peers' operations
 * are inline in their headers and inlined into their wrappers); every
 * queue waited on the same way: sched_yield when full or empty, since with
 * more processes than cores a spinner only keeps the one it waits for off
 * its core.
 *
 * Rows, each queue once per round, in turn (the first round a warm-up):
 *   pair   one thread enqueues an element and dequeues it again, n times:
 *          the uncontended cost of an enqueue plus a dequeue;
 *   1P/1C  one producer process, one consumer process: ns per item, wall
 *          time from the start gate to the last consumer's end;
 *   2P/2C  two of each: contended heads and tails, and, on two cores,
 *          processes preempted in the middle of an operation.
 * Every element is checked when it comes out; the cross-process rows also
 * check that each producer's items reach every consumer in increasing
 * order and that, over all consumers, each producer's count, sum and xor
 * equal what it sent: every item delivered exactly once.
 *
 * The element is 32 bytes for every queue. The shmpool ring's cell is 32
 * bytes too, but 8 of them are its sequence number: it carries a 24-byte
 * struct shp__task. So the element is a struct shp__task and 8 bytes more,
 * the shp ring is handed the task part, and the peers carry the rest as
 * payload (checked too). Every queue writes and reads 32 bytes per slot.
 *
 * The shp rows are judged against rte_ring and ck_ring; the mutex queue is
 * the baseline that lock-free code has to beat, and judges nothing. The
 * public queue, shp_queue, runs beside them: the same ring with 32-byte
 * elements of any content, claims that any participant can repair, and a
 * participant lookup per call; its rows show what that costs.
 */
#define _GNU_SOURCE
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "peers.h"
#include "ring.h"
#include "shmpool.h"

#define GROUP "ring"
#define CAP 1024u
#define MAX_PROD 2u
#define MAX_CONS 2u
#define MAX_PROCS (MAX_PROD + MAX_CONS)
#define PAGE 4096u
#define GOLDEN 0x9e3779b97f4a7c15ull
/* A child still running after this long is stuck (a lost item keeps the
 * consumers waiting for ever; a duplicated one lets them stop early, and
 * the producer waits on a full queue): SIGALRM ends it and the row is
 * wrong. The slowest round seen took 3.5 s (rte_ring, 2P/2C, quick: 44 us
 * per item), so a full round could take 35 s, and still not be stuck. */
#define CHILD_TIMEOUT_S 120
#define READY_TIMEOUT_NS (10 * 1000000000ull)
#define TARGET "no slower than rte_ring and ck_ring"

/*
 * See the top of the file: a struct shp__task (so the shp ring is handed
 * the element's own first 24 bytes, no copy, no type punning), then 8
 * bytes that only the peers carry. What each field holds:
 *   t.call   the producer, 0 or 1
 *   t.gen    the high half of t.end: a torn element shows
 *   t.begin  the producer's sequence number, 0, 1, 2, ...
 *   t.end    elem_value(producer, seq)
 *   pad      ~t.end
 */
struct elem {
	struct shp__task t;
	uint64_t pad;
};
_Static_assert(sizeof(struct elem) == PEER_ELEM_SIZE, "a slot");
_Static_assert(sizeof(struct shp__task) == 24, "the shp payload");

/* Distinct for every (producer, seq < 2^40): the multiplier is odd. */
static inline uint64_t elem_value(uint32_t producer, uint64_t seq)
{
	return (seq + 1 + ((uint64_t)producer << 40)) * GOLDEN;
}

static inline void elem_fill(struct elem *e, uint32_t producer, uint64_t seq)
{
	uint64_t v = elem_value(producer, seq);

	e->t.call = producer;
	e->t.gen = (uint32_t)(v >> 32);
	e->t.begin = seq;
	e->t.end = v;
	e->pad = ~v;
}

/* Whole (not torn, not made up); full: the queue carries the pad too. */
static inline bool elem_whole(const struct elem *e, bool full)
{
	return e->t.end == elem_value(e->t.call, e->t.begin) &&
	       e->t.gen == (uint32_t)(e->t.end >> 32) &&
	       (!full || e->pad == ~e->t.end);
}

/* The same element; full: the pad too (the shp ring leaves it alone). */
static inline bool elem_same(const struct elem *a, const struct elem *b,
                             bool full)
{
	return a->t.call == b->t.call && a->t.gen == b->t.gen &&
	       a->t.begin == b->t.begin && a->t.end == b->t.end &&
	       (!full || a->pad == b->pad);
}

/* ------------------------------------------------------ the shmpool ring */

/*
 * The consumer's claim record, in the shared mapping. Every consumer is a
 * process of its own (the pair row's is this one), so one pointer per
 * process is one per consumer; each sets it before its first dequeue.
 */
static struct shp__claim *shp_claim;

static size_t shp_size(unsigned cap)
{
	return shp__ring_bytes(cap);
}

static int shp_init(void *mem, unsigned cap)
{
	/* shp__ring_init wants zeroed memory; the previous round left
	 * indices and sequence numbers behind. */
	memset(mem, 0, shp__ring_bytes(cap));
	shp__ring_init(mem, cap);
	return 0;
}

static bool shp_enqueue(void *ring, const void *elem)
{
	const struct elem *e = elem;

	return shp__ring_enqueue_burst(ring, &e->t, 1) == 1;
}

static bool shp_dequeue(void *ring, void *elem)
{
	struct elem *e = elem;

	/* elem is the consumer's buffer in the shared mapping, where the
	 * claim protocol wants the copy (a repairer would read it there). */
	if (!shp__ring_dequeue(ring, &e->t, shp_claim))
		return false;
	/* A worker releases after running the task; here the caller owns
	 * the copy at once. The same one store either way. */
	shp__ring_release_claim(shp_claim);
	return true;
}

static const struct peer_ring_ops shp_ops = {
	.name = "shp ring",
	.size = shp_size,
	.init = shp_init,
	.fini = NULL,
	.enqueue = shp_enqueue,
	.dequeue = shp_dequeue,
};

/* ------------------------------------------------- the public queue */

/*
 * shp_queue (lib/queue.c) makes its own mapping: the group's memory holds
 * only the handle, and the queue is made before the processes fork, as
 * the group's mapping is, so they all share it. Each operation registers
 * nothing after the first: a thread's participant entry is cached.
 */
static size_t queue_size(unsigned cap)
{
	(void)cap;
	return sizeof(shp_queue *);
}

static int queue_init(void *mem, unsigned cap)
{
	return shp_queue_create(mem, PEER_ELEM_SIZE, cap);
}

static void queue_fini(void *ring)
{
	shp_queue_destroy(*(shp_queue **)ring);
}

static bool queue_enqueue(void *ring, const void *elem)
{
	return shp_queue_tryput(*(shp_queue **)ring, elem) == 0;
}

static bool queue_dequeue(void *ring, void *elem)
{
	return shp_queue_tryget(*(shp_queue **)ring, elem) == 1;
}

static const struct peer_ring_ops queue_ops = {
	.name = "shp_queue",
	.size = queue_size,
	.init = queue_init,
	.fini = queue_fini,
	.enqueue = queue_enqueue,
	.dequeue = queue_dequeue,
};

/* ----------------------------------------------------------- the queues */

struct kind {
	const char *name;
	const struct peer_ring_ops *ops; /* NULL: not built */
	const char *missing;             /* the note when not built */
	bool full;   /* carries all 32 bytes of the element */
	bool judged; /* named by the shp rows' target */
};

static const struct kind kinds[] = {
	{ "shp ring", &shp_ops, NULL, false, false },
#ifdef HAVE_DPDK
	{ "rte_ring", &peer_rte_ops, NULL, true, true },
#else
	{ "rte_ring", NULL, "not built: apt-get install libdpdk-dev", true,
	  true },
#endif
#ifdef HAVE_CK
	{ "ck_ring", &peer_ck_ops, NULL, true, true },
#else
	{ "ck_ring", NULL, "not built: apt-get install libck-dev", true, true },
#endif
	{ "mutex queue", &peer_mutex_ops, NULL, true, false },
	{ "shp_queue", &queue_ops, NULL, true, false },
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

/* One per process of a run, in the shared mapping. */
struct proc {
	/* A consumer's count of items taken, published when its queue looks
	 * empty (not per item: the line would bounce between consumers). */
	_Atomic uint64_t taken __attribute__((aligned(64)));
	/* A consumer's dequeue buffer and, for the shp ring, claim record:
	 * written per item by their owner only, on a line of their own. */
	struct elem buf __attribute__((aligned(64)));
	struct shp__claim claim;
	/* Results, written once at the end; read by the parent after
	 * waitpid(), which orders them before. */
	uint64_t end_ns __attribute__((aligned(64)));
	uint64_t count[MAX_PROD], sum[MAX_PROD], xor[MAX_PROD];
	char bad[120]; /* the first wrong element, or "" */
};

struct ctl {
	/* The start gate: every child counts itself in, then waits for go.
	 * They carry no data (fork() published the queue and this block),
	 * only time, so relaxed accesses do. */
	_Atomic unsigned ready __attribute__((aligned(64)));
	_Atomic unsigned go;
	struct proc proc[MAX_PROCS];
};

/* A queue under test: its mapping, and the current row's samples. */
struct var {
	const struct kind *k;
	char *map;
	size_t map_bytes;
	struct ctl *ctl;
	void *ring;
	bool live;      /* ring initialised: fini before init again */
	bool skip;      /* not built, or its init failed (note says) */
	bool wrong;     /* a round of this row gave wrong results */
	char note[200];
	uint64_t *ns;   /* wall time of each timed round of this row */
	unsigned n;
};

struct row_def {
	const char *what;
	const char *unit;
	unsigned np, nc;       /* 0, 0: the pair loop, in this process */
	uint64_t quick, full;  /* pairs, or items per producer */
};

/*
 * Sizes for about 4 s (quick) and 40 s of the whole group on 2 cores with
 * the default 5 timed rounds: 6 rounds of 4 queues, 3 rows. A pair costs
 * ~20 ns; an item across processes 30 ns to 2 us, depending on the queue
 * and on whether the processes share a core (cheap) or not, and much more
 * in a round where an rte_ring or ck_ring producer is preempted in the
 * middle of an enqueue (the others spin until it runs again).
 */
static const struct row_def rows[] = {
	{ "pair", "ns/op", 0, 0, 400000, 8000000 },
	{ "1P/1C", "ns/item", 1, 1, 100000, 2000000 },
	{ "2P/2C", "ns/item", 2, 2, 40000, 400000 },
};
#define NROWS (sizeof(rows) / sizeof(rows[0]))

static size_t page_up(size_t n)
{
	return (n + PAGE - 1) & ~(size_t)(PAGE - 1);
}

/* An empty queue for the next run, as the first run had. */
static int var_reset(struct var *v)
{
	int err;

	if (v->live && v->k->ops->fini)
		v->k->ops->fini(v->ring);
	err = v->k->ops->init(v->ring, CAP);
	v->live = !err;
	return err;
}

static int var_setup(struct var *v, const struct kind *k, unsigned runs)
{
	size_t ring_bytes;
	int err;

	v->k = k;
	if (!k->ops) {
		v->skip = true;
		snprintf(v->note, sizeof(v->note), "%s", k->missing);
		return 0;
	}
	v->ns = calloc(runs, sizeof(*v->ns));
	if (!v->ns)
		return -ENOMEM;
	ring_bytes = k->ops->size(CAP);
	if (!ring_bytes) {
		v->skip = true;
		snprintf(v->note, sizeof(v->note),
		         "cannot make a queue of %u slots", CAP);
		return 0;
	}
	v->map_bytes = page_up(sizeof(struct ctl)) + page_up(ring_bytes);
	v->map = mmap(NULL, v->map_bytes, PROT_READ | PROT_WRITE,
	              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (v->map == MAP_FAILED) {
		v->map = NULL;
		return -errno;
	}
	v->ctl = (struct ctl *)v->map;
	v->ring = v->map + page_up(sizeof(struct ctl));
	err = var_reset(v);
	if (err) {
		/* The peer's problem, not the group's: its rows say so. */
		v->skip = true;
		snprintf(v->note, sizeof(v->note), "%s init failed: %s",
		         k->name, strerror(-err));
	}
	return 0;
}

static void var_free(struct var *v)
{
	if (v->live && v->k->ops->fini)
		v->k->ops->fini(v->ring);
	if (v->map)
		munmap(v->map, v->map_bytes);
	free(v->ns);
}

static void set_wrong(struct var *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_wrong(struct var *v, const char *fmt, ...)
{
	va_list ap;
	int k;

	v->wrong = true;
	k = snprintf(v->note, sizeof(v->note), "WRONG RESULTS: ");
	va_start(ap, fmt);
	vsnprintf(v->note + k, sizeof(v->note) - (size_t)k, fmt, ap);
	va_end(ap);
}

/* The control block as a run starts: gate shut, claims idle. */
static void ctl_reset(struct ctl *c)
{
	memset(c, 0, sizeof(*c));
	for (unsigned i = 0; i < MAX_PROCS; i++)
		c->proc[i].claim.pos = SHP_CLAIM_NONE;
}

/* After a run: the queue must hold nothing. */
static bool queue_empty(struct var *v)
{
	struct proc *p = &v->ctl->proc[0];

	shp_claim = &p->claim;
	return !v->k->ops->dequeue(v->ring, &p->buf);
}

/* ------------------------------------------------------------- the pair */

/* 0, BENCH_WRONG (v->note says why) or -errno. */
static int run_pair(struct var *v, uint64_t n, uint64_t *ns)
{
	const struct peer_ring_ops *ops = v->k->ops;
	struct proc *me;
	struct elem in;
	uint64_t t0, i;
	bool enq = true, deq = true, same = true;
	int err;

	err = var_reset(v);
	if (err)
		return err;
	ctl_reset(v->ctl);
	me = &v->ctl->proc[0];
	shp_claim = &me->claim;
	t0 = bench_now_ns();
	for (i = 0; i < n; i++) {
		elem_fill(&in, 0, i);
		enq = ops->enqueue(v->ring, &in);
		deq = enq && ops->dequeue(v->ring, &me->buf);
		same = deq && elem_same(&in, &me->buf, v->k->full);
		if (!same)
			break;
	}
	*ns = bench_now_ns() - t0;
	if (!enq) {
		set_wrong(v, "pair %" PRIu64 ": enqueue on an empty queue "
		          "failed", i);
	} else if (!deq) {
		set_wrong(v, "pair %" PRIu64 ": the element just enqueued "
		          "could not be dequeued", i);
	} else if (!same) {
		set_wrong(v, "pair %" PRIu64 ": dequeued seq %" PRIu64
		          " value %#" PRIx64 ", enqueued seq %" PRIu64
		          " value %#" PRIx64, i, me->buf.t.begin,
		          me->buf.t.end, in.t.begin, in.t.end);
	} else if (!queue_empty(v)) {
		set_wrong(v, "an element came out of an emptied queue");
	}
	return v->wrong ? BENCH_WRONG : 0;
}

/* ----------------------------------------------- producers and consumers */

static void produce(struct var *v, uint32_t id, uint64_t m)
{
	const struct peer_ring_ops *ops = v->k->ops;
	struct elem e;

	for (uint64_t s = 0; s < m; s++) {
		elem_fill(&e, id, s);
		while (!ops->enqueue(v->ring, &e))
			sched_yield(); /* full: let a consumer run */
	}
}

static uint64_t all_taken(struct ctl *c, unsigned first, unsigned nc)
{
	uint64_t t = 0;

	for (unsigned i = first; i < first + nc; i++)
		t += atomic_load_explicit(&c->proc[i].taken,
		                          memory_order_relaxed);
	return t;
}

static void consume(struct var *v, struct proc *me, unsigned np,
                    unsigned nc, uint64_t total)
{
	const struct peer_ring_ops *ops = v->k->ops;
	uint64_t next[MAX_PROD] = { 0 }, taken = 0;
	uint64_t count[MAX_PROD] = { 0 }, sum[MAX_PROD] = { 0 };
	uint64_t xor[MAX_PROD] = { 0 };
	struct elem *e = &me->buf;

	shp_claim = &me->claim;
	for (;;) {
		uint32_t p;

		if (!ops->dequeue(v->ring, e)) {
			/* Done when all consumers together have taken every
			 * item. Each publishes its count whenever it finds
			 * the queue empty, which they all do at the end, so
			 * the last to look sees the final sum. Relaxed: the
			 * counts order nothing, and a stale one only means
			 * another look. */
			atomic_store_explicit(&me->taken, taken,
			                      memory_order_relaxed);
			if (all_taken(v->ctl, np, nc) >= total)
				break;
			sched_yield(); /* empty: let a producer run */
			continue;
		}
		taken++;
		p = e->t.call;
		if (!elem_whole(e, v->k->full) || p >= np) {
			if (!me->bad[0])
				snprintf(me->bad, sizeof(me->bad),
				         "a torn or made-up element: producer "
				         "%" PRIu32 " seq %" PRIu64 " value %#"
				         PRIx64, p, e->t.begin, e->t.end);
			continue;
		}
		if (e->t.begin < next[p] && !me->bad[0])
			snprintf(me->bad, sizeof(me->bad),
			         "producer %" PRIu32 "'s seq %" PRIu64
			         " came after %" PRIu64, p, e->t.begin,
			         next[p] - 1);
		next[p] = e->t.begin + 1;
		count[p]++;
		sum[p] += e->t.begin;
		xor[p] ^= e->t.end;
	}
	memcpy(me->count, count, sizeof(count));
	memcpy(me->sum, sum, sizeof(sum));
	memcpy(me->xor, xor, sizeof(xor));
}

static void child(struct var *v, unsigned i, unsigned np, unsigned nc,
                  uint64_t m) __attribute__((noreturn));

static void child(struct var *v, unsigned i, unsigned np, unsigned nc,
                  uint64_t m)
{
	struct ctl *c = v->ctl;

	/* A handler the parent installed must not catch our deadline. */
	signal(SIGALRM, SIG_DFL);
	alarm(CHILD_TIMEOUT_S);
	/* A shared mapping's pages are not mapped in a forked child until
	 * it touches them: fault them in before the clock starts. */
	for (size_t off = 0; off < v->map_bytes; off += PAGE)
		(void)*(volatile char *)(v->map + off);
	atomic_fetch_add_explicit(&c->ready, 1, memory_order_relaxed);
	while (!atomic_load_explicit(&c->go, memory_order_relaxed))
		sched_yield();
	if (i < np)
		produce(v, i, m);
	else
		consume(v, &c->proc[i], np, nc, (uint64_t)np * m);
	c->proc[i].end_ns = bench_now_ns();
	_exit(0);
}

/* waitpid, through signals that the program may catch. */
static pid_t reap(pid_t pid, int *st)
{
	pid_t r;

	do
		r = waitpid(pid, st, 0);
	while (r < 0 && errno == EINTR);
	return r;
}

/* Kills and reaps what run_procs started, on a setup failure. */
static void kill_all(const pid_t *pid, unsigned n)
{
	int st;

	for (unsigned i = 0; i < n; i++)
		kill(pid[i], SIGKILL);
	for (unsigned i = 0; i < n; i++)
		reap(pid[i], &st);
}

struct expect {
	uint64_t sum;            /* of seq over a producer's items */
	uint64_t xor[MAX_PROD];  /* of value, per producer */
};

static void expect_init(struct expect *x, unsigned np, uint64_t m)
{
	x->sum = m * (m - 1) / 2;
	for (unsigned p = 0; p < np; p++) {
		x->xor[p] = 0;
		for (uint64_t s = 0; s < m; s++)
			x->xor[p] ^= elem_value(p, s);
	}
}

/* Every item once: per producer, over all consumers. */
static void verify_procs(struct var *v, unsigned np, unsigned nc,
                         uint64_t m, const struct expect *x)
{
	struct ctl *c = v->ctl;

	for (unsigned i = np; i < np + nc; i++) {
		if (c->proc[i].bad[0]) {
			set_wrong(v, "consumer %u: %s", i - np, c->proc[i].bad);
			return;
		}
	}
	for (unsigned p = 0; p < np; p++) {
		uint64_t n = 0, sum = 0, xor = 0;

		for (unsigned i = np; i < np + nc; i++) {
			n += c->proc[i].count[p];
			sum += c->proc[i].sum[p];
			xor ^= c->proc[i].xor[p];
		}
		if (n != m || sum != x->sum || xor != x->xor[p]) {
			set_wrong(v, "producer %u: %" PRIu64 " items of %"
			          PRIu64 " delivered, seq sum %" PRIu64
			          " (want %" PRIu64 "), xor %s", p, n, m, sum,
			          x->sum, xor == x->xor[p] ? "right" : "wrong");
			return;
		}
	}
	if (!queue_empty(v))
		set_wrong(v, "an element was left in the queue");
}

/* np producers and nc consumers, forked; 0, BENCH_WRONG or -errno. */
static int run_procs(struct var *v, unsigned np, unsigned nc, uint64_t m,
                     const struct expect *x, uint64_t *ns)
{
	struct ctl *c = v->ctl;
	pid_t pid[MAX_PROCS];
	unsigned nproc = np + nc, started;
	uint64_t t0, end = 0, deadline;
	int err;

	err = var_reset(v);
	if (err)
		return err;
	ctl_reset(c);
	for (started = 0; started < nproc; started++) {
		pid[started] = fork();
		if (pid[started] < 0) {
			err = -errno;
			kill_all(pid, started);
			return err;
		}
		if (pid[started] == 0)
			child(v, started, np, nc, m);
	}
	deadline = bench_now_ns() + READY_TIMEOUT_NS;
	while (atomic_load_explicit(&c->ready, memory_order_relaxed) < nproc) {
		struct timespec nap = { 0, 100000 };

		if (bench_now_ns() > deadline) {
			kill_all(pid, nproc);
			return -ETIMEDOUT;
		}
		nanosleep(&nap, NULL);
	}
	t0 = bench_now_ns();
	atomic_store_explicit(&c->go, 1, memory_order_relaxed);
	for (unsigned i = 0; i < nproc; i++) {
		int st;

		if (reap(pid[i], &st) != pid[i]) {
			err = -errno;
			kill_all(pid + i, nproc - i);
			return err;
		}
		if (v->wrong)
			continue; /* the first failure names the row */
		if (WIFSIGNALED(st))
			set_wrong(v, "%s %u killed by signal %d%s",
			          i < np ? "producer" : "consumer",
			          i < np ? i : i - np, WTERMSIG(st),
			          WTERMSIG(st) == SIGALRM
			          ? " (stuck: an item lost or duplicated?)"
			          : "");
		else if (!WIFEXITED(st) || WEXITSTATUS(st))
			set_wrong(v, "%s %u exited with status %d",
			          i < np ? "producer" : "consumer",
			          i < np ? i : i - np, WEXITSTATUS(st));
	}
	if (v->wrong)
		return BENCH_WRONG;
	/* The clock is system-wide: the children's end times compare with
	 * ours. The wall time ends when the last item has been taken. */
	for (unsigned i = 0; i < nproc; i++)
		if (c->proc[i].end_ns > end)
			end = c->proc[i].end_ns;
	*ns = end > t0 ? end - t0 : 0;
	verify_procs(v, np, nc, m, x);
	return v->wrong ? BENCH_WRONG : 0;
}

/* ------------------------------------------------------------- the rows */

/*
 * The shp row's target: its median no higher than that of any peer the
 * target names that has one. note receives who was faster, and by how
 * much, when it was missed.
 */
static void judge(struct bench_row *row, const struct bench_stats *st,
                  const char *unit, char *note, size_t len)
{
	size_t k = 0;
	bool any = false;

	row->target = TARGET;
	if (!st[0].n)
		return; /* wrong results: the note says so */
	note[0] = 0;
	for (unsigned q = 1; q < NKINDS; q++) {
		if (!kinds[q].judged || !st[q].n)
			continue;
		any = true;
		if (st[0].median <= st[q].median || k >= len)
			continue;
		k += (size_t)snprintf(note + k, len - k,
		                      "%sslower than %s: %.1f against %.1f %s",
		                      k ? "; " : "", kinds[q].name,
		                      st[0].median, st[q].median, unit);
	}
	if (!any) {
		row->note = "not judged: neither rte_ring nor ck_ring built";
		return;
	}
	row->met = note[0] == 0;
	if (!row->met)
		row->note = note;
}

static int add_rows(struct bench_report *r, const struct row_def *d,
                    struct var *vars, uint64_t items)
{
	struct bench_stats st[NKINDS] = { { 0 } };
	char shp_name[64];
	int err;

	for (unsigned j = 0; j < NKINDS; j++) {
		if (vars[j].skip || vars[j].wrong || !vars[j].n)
			continue;
		err = bench_stats(vars[j].ns, vars[j].n, &st[j]);
		if (err)
			return err;
		st[j].median /= (double)items;
		st[j].min /= (double)items;
		st[j].max /= (double)items;
	}
	snprintf(shp_name, sizeof(shp_name), "%s %s", kinds[0].name, d->what);
	for (unsigned j = 0; j < NKINDS; j++) {
		struct var *v = &vars[j];
		struct bench_row row = { .group = GROUP, .unit = d->unit,
			                 .st = st[j], .met = -1 };
		char name[64], note[sizeof(v->note)];

		snprintf(name, sizeof(name), "%s %s", kinds[j].name, d->what);
		row.name = name;
		if (v->skip || v->wrong)
			row.note = v->note;
		if (j == 0) {
			judge(&row, st, d->unit, note, sizeof(note));
		} else if (st[j].n && st[0].n) {
			/* > 1: shmpool is faster. */
			row.ratio = st[j].median / st[0].median;
			row.ratio_vs = shp_name;
		}
		err = bench_report_add(r, &row);
		if (err)
			return err;
	}
	return 0;
}

/* All rounds of one row, the queues in turn; 0, BENCH_WRONG or -errno. */
static int run_row(const struct bench_cfg *cfg, const struct row_def *d,
                   struct var *vars, struct bench_report *r)
{
	uint64_t m = cfg->quick ? d->quick : d->full;
	uint64_t items = d->np ? d->np * m : m;
	struct expect x = { 0 };
	bool wrong = false;
	int err;

	if (d->np)
		expect_init(&x, d->np, m);
	for (unsigned j = 0; j < NKINDS; j++) {
		vars[j].wrong = false;
		vars[j].n = 0;
	}
	for (unsigned round = 0; round <= cfg->runs; round++) {
		for (unsigned o = 0; o < NKINDS; o++) {
			/* Each round starts with the next queue: none is
			 * always the one that runs first after a fork. */
			struct var *v = &vars[(o + round) % NKINDS];
			uint64_t ns = 0;

			if (v->skip || v->wrong)
				continue;
			bench_progress(GROUP, "%s: round %u of %u, %s", d->what,
			               round, cfg->runs, v->k->name);
			if (d->np)
				err = run_procs(v, d->np, d->nc, m, &x, &ns);
			else
				err = run_pair(v, m, &ns);
			if (err < 0)
				return err;
			if (err == BENCH_WRONG) {
				wrong = true;
				continue;
			}
			if (round) /* round 0 warms up */
				v->ns[v->n++] = ns;
		}
	}
	err = add_rows(r, d, vars, items);
	if (err)
		return err;
	return wrong ? BENCH_WRONG : 0;
}

int bench_group_ring(const struct bench_cfg *cfg, struct bench_report *r)
{
	struct var vars[NKINDS] = { { 0 } };
	bool wrong = false;
	int err = 0;

	for (unsigned j = 0; j < NKINDS && !err; j++)
		err = var_setup(&vars[j], &kinds[j], cfg->runs);
	for (unsigned i = 0; i < NROWS && !err; i++) {
		err = run_row(cfg, &rows[i], vars, r);
		if (err == BENCH_WRONG) {
			wrong = true;
			err = 0;
		}
	}
	for (unsigned j = 0; j < NKINDS; j++)
		var_free(&vars[j]);
	return err ? err : wrong ? BENCH_WRONG : 0;
}
