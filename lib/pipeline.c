/*
 * Pipelines: stages of worker processes joined by bounded shp_queues.
 *
 *   feeder thread --src--> stage 0 workers --q0--> stage 1 ... --qN-1--> reader
 *
 * Every queue element is a header (the source position it comes from, a
 * sub-position, flags) and the payload. A source item enters as
 * (i, 0, LAST). map passes the header on with its output; filter passes
 * the item on, or a tombstone (NONE) when it drops it; flat_map emits
 * (i, 0..k-1), the last with LAST, or a tombstone when it emits nothing;
 * each passes a tombstone. Tombstones travel to the reader untouched, so
 * the reader sees, for every source item, outputs (i, s) for s up to one
 * marked LAST: it knows when an item is finished without counting
 * anything upstream.
 *
 * Input order: the reader places each output at its position in a window
 * of W source positions (a reorder buffer indexed by position, never
 * sorted) and hands them out position by position; the feeder never runs
 * more than W positions ahead of the reader, so the window cannot
 * overflow and memory is bounded whatever the number of items.
 *
 * End and errors. The feeder closes src after the last item. The workers
 * of a stage count themselves out of ctl->active[s] when their input ends;
 * the last one closes the stage's output queue, so the end travels down
 * the pipeline. A stage function that fails records (index, status) in
 * its worker record, sets ctl->stop and closes every queue: every process
 * wakes and leaves. A worker that dies cannot do either: the reader reaps
 * the workers every slice and takes an unexpected exit as the error.
 *
 * Worker record state (shared; each written by its worker only):
 *   item    0 between items; i + 1 while handling source position i
 *   fail    0; or the status the stage function failed with, fail_index
 *           stored before it (W2, pairs with the reader's rmb)
 *   done    1 once the worker left normally: its input ended, or it
 *           saw the pipeline stop. An exit without it is a crash.
 * ctl->stop: 0 -> 1 by a failing worker or the reader; never back.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmpool.h"

#include "atomic.h"
#include "futex.h"

#define MAX_STAGES 16
#define MAX_WORKERS 1024u
#define QUEUE_USERS 1024u /* an shp_queue's participants at most */
#define MAX_MAXSIZE ((size_t)1 << 20)
#define MAX_PAYLOAD (((size_t)1 << 20) - sizeof(struct hdr))
#define H_LAST 1u
#define H_NONE 2u
/* The reader looks for dead workers this often. */
#define SLICE_NS 50000000
/* Workers get this long to leave after a stop, then SIGKILL. */
#define GRACE_NS 1000000000

struct hdr {
	uint64_t index;
	uint32_t sub;
	uint32_t flags;
};

enum kind { K_MAP, K_FILTER, K_FLAT, K_EACH };

/* A stage's function; any: to check the one set for NULL. */
union stage_fn {
	shp_fn map;
	shp_filter_fn filter;
	shp_flat_map_fn flat;
	shp_each_fn each;
	void (*any)(void);
};

struct stage {
	enum kind kind;
	union stage_fn fn;
	void *ctx;
	size_t in_size;  /* payload in */
	size_t out_size; /* payload out */
	unsigned workers;
	size_t maxsize;
	shp_queue *out;
	unsigned first; /* its first worker's record */
};

struct wrec {
	uint64_t item;
	uint64_t fail_index;
	int32_t fail;
	uint32_t done;
	char pad[SHP_CACHELINE - 24];
};

struct ctl {
	uint32_t stop;
	uint32_t active[MAX_STAGES];
	struct wrec w[] SHP_ALIGNED;
};

/* One position of the reorder window. */
struct slot {
	uint64_t index;    /* the position it holds; UINT64_MAX: none */
	uint32_t expected; /* outputs in all, once LAST came; else 0 */
	uint32_t cap;
	uint8_t *have;     /* per sub: 0 not yet, 1 output, 2 tombstone */
	unsigned char *data;
};

struct shp_pipeline {
	/* the source */
	const unsigned char *in;
	size_t in_size, n;
	shp_gen_fn gen;
	void *gen_arg;
	bool ordered;

	struct stage st[MAX_STAGES];
	unsigned nst;
	bool has_each, has_flat;

	/* running */
	bool started, sink_done;
	shp_queue *src;
	struct ctl *ctl;
	size_t ctl_bytes;
	unsigned nworkers;
	pid_t *pids; /* 0 once reaped */
	pthread_t feeder;
	bool feeder_live;
	unsigned char *elem; /* the reader's element buffer */
	size_t sink_elem;
	int64_t next_reap;

	/* the reorder window (input order) */
	struct slot *win;
	uint64_t w;
	uint64_t next_index;
	uint32_t next_sub;

	/* shared by the reader and the feeder */
	pthread_mutex_t lock;
	pthread_cond_t moved;
	uint64_t taken; /* positions finished by the reader */
	int gen_err;    /* the generator's error, once it ended with one */
	bool stopping;

	/* the error, once there is one */
	int err;
	unsigned err_stage;
	size_t err_index;
	int err_status, err_wstatus;
};

struct shp_emitter {
	const struct stage *st;
	struct hdr h;
	unsigned char *buf[2]; /* header + payload each */
	unsigned cur;          /* buf[cur] holds the pending output */
	bool pending;
};

/* ------------------------------------------------------------ building */

static int create(shp_pipeline **pp, const void *in, size_t in_size,
                  size_t n, shp_gen_fn gen, void *gen_arg, unsigned flags)
{
	struct shp_pipeline *p;

	if (!pp)
		return -EINVAL;
	*pp = NULL;
	if ((flags & ~SHP_UNORDERED) || in_size > MAX_PAYLOAD ||
	    (!gen && !in && in_size && n))
		return -EINVAL;
	/* No array holds that many: the feeder's offsets would wrap. */
	if (!gen && in_size && n > SIZE_MAX / in_size)
		return -EOVERFLOW;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->in = in;
	p->in_size = in_size;
	p->n = n;
	p->gen = gen;
	p->gen_arg = gen_arg;
	p->ordered = !(flags & SHP_UNORDERED);
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->moved, NULL);
	*pp = p;
	return 0;
}

int shp_pipeline_create(shp_pipeline **p, const void *in, size_t in_size,
                        size_t n, unsigned flags)
{
	return create(p, in, in_size, n, NULL, NULL, flags);
}

int shp_pipeline_create_gen(shp_pipeline **p, shp_gen_fn gen, void *gen_arg,
                            size_t in_size, unsigned flags)
{
	if (!gen) {
		if (p)
			*p = NULL;
		return -EINVAL;
	}
	return create(p, NULL, in_size, 0, gen, gen_arg, flags);
}

/* The payload size flowing into the next stage. */
static size_t tail_size(const struct shp_pipeline *p)
{
	return p->nst ? p->st[p->nst - 1].out_size : p->in_size;
}

/* Appends a stage; fn (the member of kind) is checked non-NULL first. */
static int add(struct shp_pipeline *p, enum kind kind, union stage_fn fn,
               void *ctx, size_t out_size, unsigned workers, size_t maxsize)
{
	struct stage *st;

	/* The queue before the stage serves the workers of both sides (or
	 * the feeder), the one after may serve the reader too: each is one
	 * of the queue's participants. */
	unsigned before = p && p->nst ? p->st[p->nst - 1].workers : 1;

	if (!fn.any || !p || !workers || workers > MAX_WORKERS ||
	    before + workers + 1 > QUEUE_USERS || !maxsize ||
	    maxsize > MAX_MAXSIZE || out_size > MAX_PAYLOAD ||
	    p->nst == MAX_STAGES || p->has_each ||
	    (kind == K_FLAT && p->ordered && p->has_flat))
		return -EINVAL;
	if (p->started)
		return -EBUSY;
	st = &p->st[p->nst];
	st->kind = kind;
	st->fn = fn;
	st->ctx = ctx;
	st->in_size = tail_size(p);
	st->out_size = kind == K_FILTER ? st->in_size
	               : kind == K_EACH ? 0 : out_size;
	st->workers = workers;
	st->maxsize = maxsize;
	p->has_flat |= kind == K_FLAT;
	p->has_each |= kind == K_EACH;
	p->nst++;
	return 0;
}

int shp_pipeline_map(shp_pipeline *p, shp_fn fn, void *ctx, size_t out_size,
                     unsigned workers, size_t maxsize)
{
	return add(p, K_MAP, (union stage_fn){ .map = fn }, ctx, out_size,
	           workers, maxsize);
}

int shp_pipeline_filter(shp_pipeline *p, shp_filter_fn fn, void *ctx,
                        unsigned workers, size_t maxsize)
{
	return add(p, K_FILTER, (union stage_fn){ .filter = fn }, ctx, 0,
	           workers, maxsize);
}

int shp_pipeline_flat_map(shp_pipeline *p, shp_flat_map_fn fn, void *ctx,
                          size_t out_size, unsigned workers, size_t maxsize)
{
	return add(p, K_FLAT, (union stage_fn){ .flat = fn }, ctx, out_size,
	           workers, maxsize);
}

int shp_pipeline_each(shp_pipeline *p, shp_each_fn fn, void *ctx,
                      unsigned workers, size_t maxsize)
{
	return add(p, K_EACH, (union stage_fn){ .each = fn }, ctx, 0, workers,
	           maxsize);
}

/* ------------------------------------------------------------ workers */

/* Every queue closed: whoever is blocked on one wakes and sees the end. */
static void close_all(struct shp_pipeline *p)
{
	shp_queue_close(p->src);
	for (unsigned s = 0; s < p->nst; s++)
		shp_queue_close(p->st[s].out);
}

static void stop(struct shp_pipeline *p)
{
	/* Before the closes: a worker woken by one sees it. */
	uatomic_xchg(&p->ctl->stop, 1);
	close_all(p);
}

static void fail(struct shp_pipeline *p, struct wrec *r, uint64_t index,
                 int status)
{
	SHP_STORE(r->fail_index, index);
	/* W2: the index before the status. Pairs with the rmb in
	 * find_failure. */
	cmm_smp_wmb();
	SHP_STORE(r->fail, status);
	stop(p);
}

/* The caller's pid, for workers to notice its death; 0 in the caller. */
static pid_t caller;

/* Waits are sliced: a worker whose caller died (an orphan, which no one
 * will ever stop) leaves at the next slice. */
#define ORPHAN_CHECK_NS 200000000

static bool orphaned(void)
{
	return caller && getppid() != caller;
}

/* Puts a header and payload on q: 0; SHP_ECLOSED when the pipeline
 * stops; -ESRCH once the caller is gone; another error of the queue's. */
static int pass(shp_queue *q, unsigned char *el)
{
	int r;

	while ((r = shp_queue_put(q, el, ORPHAN_CHECK_NS)) == -ETIMEDOUT)
		if (orphaned())
			return -ESRCH;
	return r;
}

/* The next item for a worker: as shp_queue_get, but -ESRCH once the
 * caller is gone. */
static int next_item(shp_queue *q, unsigned char *el)
{
	int r;

	while ((r = shp_queue_get(q, el, ORPHAN_CHECK_NS)) == -ETIMEDOUT)
		if (orphaned())
			return -ESRCH;
	return r;
}

int shp_emit(shp_emitter *em, const void *out)
{
	unsigned char *next;

	if (!em || (!out && em->st->out_size))
		return -EINVAL;
	if (em->pending) {
		struct hdr *h = (struct hdr *)em->buf[em->cur];

		*h = em->h;
		h->flags = 0;
		int r = pass(em->st->out, em->buf[em->cur]);

		if (r)
			return r;
		em->h.sub++;
		em->cur ^= 1;
	}
	next = em->buf[em->cur];
	if (em->st->out_size)
		memcpy(next + sizeof(struct hdr), out, em->st->out_size);
	em->pending = true;
	return 0;
}

/* Handles one item: 0, or why the worker must leave: SHP_ECLOSED (the
 * pipeline stops), or an error of pass(). */
static int handle(struct shp_pipeline *p, const struct stage *st,
                   struct wrec *r, unsigned char *in, unsigned char *out[2])
{
	struct hdr *h = (struct hdr *)in, *oh = (struct hdr *)out[0];
	const void *arg = st->in_size ? in + sizeof(*h) : NULL;
	int ret;

	if (h->flags & H_NONE) {
		/* A tombstone goes on as it is, in an element of the next
		 * queue's size (a map may change it). */
		*oh = *h;
		return pass(st->out, out[0]);
	}
	switch (st->kind) {
	case K_MAP:
		ret = st->fn.map(arg, st->out_size ? out[0] + sizeof(*h) : NULL,
		                 st->ctx);
		if (ret) {
			fail(p, r, h->index, ret);
			return SHP_ECLOSED;
		}
		*oh = *h;
		return pass(st->out, out[0]);
	case K_FILTER:
		ret = st->fn.filter(arg, st->ctx);
		if (ret != 0 && ret != 1) {
			fail(p, r, h->index, ret);
			return SHP_ECLOSED;
		}
		if (!ret)
			h->flags |= H_NONE;
		return pass(st->out, in);
	case K_EACH:
		ret = st->fn.each(arg, st->ctx);
		if (ret) {
			fail(p, r, h->index, ret);
			return SHP_ECLOSED;
		}
		h->flags |= H_NONE;
		return pass(st->out, in);
	case K_FLAT: {
		struct shp_emitter em = { .st = st, .h = *h,
			               .buf = { out[0], out[1] } };

		em.h.sub = 0;
		ret = st->fn.flat(arg, &em, st->ctx);
		if (ret) {
			fail(p, r, h->index, ret);
			return SHP_ECLOSED;
		}
		if (SHP_LOAD(p->ctl->stop))
			return SHP_ECLOSED;
		oh = (struct hdr *)em.buf[em.cur];
		*oh = em.h;
		oh->flags = h->flags | (em.pending ? 0 : H_NONE);
		return pass(st->out, em.buf[em.cur]);
	}
	}
	return -EINVAL;
}

static void worker(struct shp_pipeline *p, unsigned s, struct wrec *r)
	__attribute__((noreturn));

static void worker(struct shp_pipeline *p, unsigned s, struct wrec *r)
{
	const struct stage *st = &p->st[s];
	shp_queue *q = s ? p->st[s - 1].out : p->src;
	size_t in_bytes = sizeof(struct hdr) + st->in_size;
	size_t out_bytes = sizeof(struct hdr) + st->out_size;
	unsigned char *in = malloc(in_bytes);
	/* Zeroed: a tombstone's payload is sent as it is. */
	unsigned char *out[2] = { calloc(1, out_bytes), calloc(1, out_bytes) };
	int got = -ENOMEM;

	if (in && out[0] && out[1]) {
		while ((got = next_item(q, in)) == 1 &&
		       !SHP_LOAD(p->ctl->stop)) {
			int h;

			SHP_STORE(r->item, ((struct hdr *)in)->index + 1);
			h = handle(p, st, r, in, out);
			if (h) {
				/* A queue's own error is no normal leave:
				 * the reader must see it, as a crash. */
				if (h != SHP_ECLOSED)
					got = h;
				break;
			}
			SHP_STORE(r->item, 0);
		}
	}
	/* The input ended: the stage's last worker ends the next queue. */
	if (got == 0 && uatomic_sub_return(&p->ctl->active[s], 1) == 0)
		shp_queue_close(st->out);
	SHP_STORE(r->done, got >= 0);
	_exit(got >= 0 ? 0 : 1);
}

/* ------------------------------------------------------------ the feeder */

static void *feed(void *arg)
{
	struct shp_pipeline *p = arg;
	size_t bytes = sizeof(struct hdr) + p->in_size;
	unsigned char *el = malloc(bytes);
	int gen_err = 0;

	for (uint64_t i = 0; el && (p->gen || i < p->n); i++) {
		struct hdr *h = (struct hdr *)el;
		int r;

		if (p->ordered) {
			/* Never more than the window ahead of the reader. */
			pthread_mutex_lock(&p->lock);
			while (i >= p->taken + p->w && !p->stopping)
				pthread_cond_wait(&p->moved, &p->lock);
			pthread_mutex_unlock(&p->lock);
		}
		if (p->gen) {
			r = p->gen(p->in_size ? el + sizeof(*h) : NULL,
			           p->gen_arg);

			if (r <= 0) {
				gen_err = shp__gen_err(r);
				break;
			}
		} else if (p->in_size) {
			memcpy(el + sizeof(*h), p->in + i * p->in_size,
			       p->in_size);
		}
		h->index = i;
		h->sub = 0;
		h->flags = H_LAST;
		r = pass(p->src, el);
		if (r) {
			if (r != SHP_ECLOSED)
				gen_err = r; /* ends the source with it */
			break;
		}
	}
	if (!el)
		gen_err = -ENOMEM;
	free(el);
	pthread_mutex_lock(&p->lock);
	p->gen_err = gen_err;
	pthread_mutex_unlock(&p->lock);
	shp_queue_close(p->src);
	return NULL;
}

/* ------------------------------------------------------------ the reader */

static void set_error(struct shp_pipeline *p, int err, unsigned stage,
                      size_t index, int status, int wstatus)
{
	if (p->err)
		return;
	p->err = err;
	p->err_stage = stage;
	p->err_index = index;
	p->err_status = status;
	p->err_wstatus = wstatus;
}

static unsigned stage_of(const struct shp_pipeline *p, unsigned w)
{
	unsigned s = 0;

	while (s + 1 < p->nst && w >= p->st[s + 1].first)
		s++;
	return s;
}

/* A stage function's failure, recorded in its worker's record. */
static bool find_failure(struct shp_pipeline *p)
{
	for (unsigned w = 0; w < p->nworkers; w++) {
		struct wrec *r = &p->ctl->w[w];
		int status = SHP_LOAD(r->fail);

		if (!status)
			continue;
		cmm_smp_rmb(); /* the status before the index: pairs with W2 */
		set_error(p, SHP_ETASK, stage_of(p, w), SHP_LOAD(r->fail_index),
		          status, 0);
		return true;
	}
	return false;
}

/* Reaps what has exited; a worker gone without leaving normally is the
 * pipeline's error. hang: wait for each. */
static void reap(struct shp_pipeline *p, bool hang)
{
	for (unsigned w = 0; w < p->nworkers; w++) {
		struct wrec *r = &p->ctl->w[w];
		uint64_t item;
		pid_t got;
		int ws = 0;

		if (!p->pids[w])
			continue;
		/* A program's SIGCHLD handler without SA_RESTART interrupts
		 * a wait that hangs: it must not leave the worker a zombie. */
		do
			got = waitpid(p->pids[w], &ws, hang ? 0 : WNOHANG);
		while (got < 0 && errno == EINTR);
		if (got < 0 && errno == ECHILD)
			ws = 0; /* reaped by the program (a SIGCHLD handler):
			         * only its record tells how it left */
		else if (got != p->pids[w])
			continue;
		p->pids[w] = 0;
		if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && SHP_LOAD(r->done))
			continue;
		item = SHP_LOAD(r->item);
		set_error(p, SHP_ECRASHED, stage_of(p, w),
		          item ? (size_t)(item - 1) : SIZE_MAX, SHP_ECRASHED, ws);
		stop(p);
	}
}

static void release(struct shp_pipeline *p)
{
	for (uint64_t k = 0; p->win && k < p->w; k++) {
		free(p->win[k].have);
		free(p->win[k].data);
	}
	free(p->win);
	free(p->pids);
	free(p->elem);
	p->win = NULL;
	p->pids = NULL;
	p->elem = NULL;
	shp_queue_destroy(p->src);
	p->src = NULL;
	for (unsigned s = 0; s < p->nst; s++) {
		shp_queue_destroy(p->st[s].out);
		p->st[s].out = NULL;
	}
	if (p->ctl)
		munmap(p->ctl, p->ctl_bytes);
	p->ctl = NULL;
}

static int start(struct shp_pipeline *p)
{
	size_t src_cap = 2 * (size_t)p->st[0].workers;
	uint64_t inflight = src_cap;
	pid_t me;
	int err;

	p->nworkers = 0;
	for (unsigned s = 0; s < p->nst; s++) {
		p->st[s].first = p->nworkers;
		p->nworkers += p->st[s].workers;
		inflight += p->st[s].workers + p->st[s].maxsize;
	}
	p->ctl_bytes = sizeof(struct ctl) + p->nworkers * sizeof(struct wrec);
	p->ctl = mmap(NULL, p->ctl_bytes, PROT_READ | PROT_WRITE,
	              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p->ctl == MAP_FAILED) {
		p->ctl = NULL;
		return -ENOMEM;
	}
	err = shp_queue_create(&p->src, sizeof(struct hdr) + p->in_size,
	                       src_cap);
	for (unsigned s = 0; s < p->nst && !err; s++) {
		p->ctl->active[s] = p->st[s].workers;
		err = shp_queue_create(&p->st[s].out,
		                       sizeof(struct hdr) + p->st[s].out_size,
		                       p->st[s].maxsize);
	}
	p->sink_elem = sizeof(struct hdr) + tail_size(p);
	p->pids = calloc(p->nworkers, sizeof(*p->pids));
	p->elem = malloc(p->sink_elem);
	if (!err && (!p->pids || !p->elem))
		err = -ENOMEM;
	if (!err && p->ordered) {
		/* Room for everything the stages and queues can hold, and
		 * as much again, so the source never waits for the reader
		 * while the stages still have room. */
		p->w = 2 * inflight + 16;
		p->win = calloc(p->w, sizeof(*p->win));
		if (!p->win)
			err = -ENOMEM;
		for (uint64_t k = 0; !err && k < p->w; k++)
			p->win[k].index = UINT64_MAX;
	}
	if (err) {
		release(p);
		return err;
	}
	/* Workers first, while this is the only thread of the pipeline.
	 * Flushed, stdio buffers are not copied into them to be written
	 * twice; a stream that cannot flush keeps its error for its owner. */
	(void)fflush(NULL);
	me = getpid();
	for (unsigned s = 0; s < p->nst && !err; s++) {
		for (unsigned k = 0; k < p->st[s].workers; k++) {
			unsigned w = p->st[s].first + k;
			pid_t pid = fork();

			if (pid < 0) {
				err = -EAGAIN;
				break;
			}
			if (pid == 0) {
				caller = me;
				worker(p, s, &p->ctl->w[w]);
			}
			p->pids[w] = pid;
		}
	}
	if (!err && pthread_create(&p->feeder, NULL, feed, p))
		err = -EAGAIN;
	p->feeder_live = !err;
	p->started = true;
	p->next_reap = shp__now_ns() + SLICE_NS;
	if (err) {
		stop(p);
		set_error(p, err, 0, SIZE_MAX, 0, 0);
	}
	return err;
}

/* Places an output of the sink in the window. */
static int place(struct shp_pipeline *p, const unsigned char *el)
{
	const struct hdr *h = (const struct hdr *)el;
	size_t size = tail_size(p);
	struct slot *sl;

	if (h->index - p->next_index >= p->w)
		return SHP_ECORRUPT; /* the feeder's window forbids it */
	sl = &p->win[h->index % p->w];
	if (sl->index != h->index) {
		sl->index = h->index;
		sl->expected = 0;
		if (sl->have)
			memset(sl->have, 0, sl->cap);
	}
	if (h->sub >= sl->cap) {
		uint32_t cap = sl->cap ? sl->cap : 1;
		uint8_t *have;
		unsigned char *data;

		while (cap <= h->sub)
			cap *= 2;
		have = realloc(sl->have, cap);
		if (!have)
			return -ENOMEM;
		sl->have = have;
		memset(have + sl->cap, 0, cap - sl->cap);
		data = realloc(sl->data, (size_t)cap * (size ? size : 1));
		if (!data)
			return -ENOMEM;
		sl->data = data;
		sl->cap = cap;
	}
	sl->have[h->sub] = h->flags & H_NONE ? 2 : 1;
	if (size)
		memcpy(sl->data + (size_t)h->sub * size, el + sizeof(*h), size);
	if (h->flags & H_LAST)
		sl->expected = h->sub + 1;
	return 0;
}

/* The next output in input order, if it is there: 1, else 0. */
static int take(struct shp_pipeline *p, size_t *index, void *out)
{
	size_t size = tail_size(p);

	for (;;) {
		struct slot *sl = &p->win[p->next_index % p->w];
		uint8_t have;

		if (sl->index != p->next_index)
			return 0;
		if (p->next_sub < sl->cap && (have = sl->have[p->next_sub])) {
			sl->have[p->next_sub] = 0;
			p->next_sub++;
			if (have == 2)
				continue;
			if (index)
				*index = p->next_index;
			if (out && size)
				memcpy(out, sl->data + (size_t)(p->next_sub - 1) * size,
				       size);
			return 1;
		}
		if (!sl->expected || p->next_sub < sl->expected)
			return 0;
		/* Every output of this position taken. */
		sl->index = UINT64_MAX;
		p->next_index++;
		p->next_sub = 0;
		pthread_mutex_lock(&p->lock);
		p->taken = p->next_index;
		pthread_cond_signal(&p->moved);
		pthread_mutex_unlock(&p->lock);
	}
}

int shp_pipeline_next(shp_pipeline *p, size_t *index, void *out,
                      int64_t timeout_ns)
{
	int64_t deadline;
	int r;

	if (!p || !p->nst)
		return -EINVAL;
	if (p->err)
		return p->err;
	if (!p->started && (r = start(p)))
		return r;
	deadline = shp__deadline_ns(timeout_ns);
	for (;;) {
		int64_t now, wait;

		if (p->ordered && (r = take(p, index, out)))
			return r;
		/* Only a failing worker stops a pipeline the reader has not:
		 * its record says why (stop came after it, W2). */
		if (SHP_LOAD(p->ctl->stop) && !p->err && !find_failure(p))
			set_error(p, SHP_ECORRUPT, 0, SIZE_MAX, 0, 0);
		if (p->err)
			return p->err;
		if (p->sink_done) {
			int gen_err;

			pthread_mutex_lock(&p->lock);
			gen_err = p->gen_err;
			pthread_mutex_unlock(&p->lock);
			if (p->ordered && p->win[p->next_index % p->w].index ==
			                  p->next_index)
				return SHP_ECORRUPT; /* an output lost */
			return gen_err;
		}
		now = shp__now_ns();
		if (now >= p->next_reap) {
			p->next_reap = now + SLICE_NS;
			reap(p, false);
			continue;
		}
		wait = p->next_reap - now;
		if (deadline >= 0 && deadline - now < wait)
			wait = deadline - now > 0 ? deadline - now : 0;
		r = shp_queue_get(p->st[p->nst - 1].out, p->elem, wait);
		if (r == 1) {
			const struct hdr *h = (const struct hdr *)p->elem;

			if (p->ordered) {
				r = place(p, p->elem);
				if (r) {
					set_error(p, r, p->nst - 1, h->index,
					          r, 0);
					stop(p);
				}
				continue;
			}
			if (h->flags & H_NONE)
				continue;
			if (index)
				*index = h->index;
			if (out && tail_size(p))
				memcpy(out, p->elem + sizeof(*h), tail_size(p));
			return 1;
		}
		if (r == 0) {
			p->sink_done = true;
			continue;
		}
		if (r != -ETIMEDOUT)
			return r;
		if (deadline >= 0 && shp__now_ns() >= deadline)
			return -ETIMEDOUT;
	}
}

int shp_pipeline_run(shp_pipeline *p, int64_t timeout_ns)
{
	int64_t deadline = shp__deadline_ns(timeout_ns);
	int r;

	if (!p)
		return -EINVAL;
	do {
		int64_t left = -1;

		if (deadline >= 0) {
			left = deadline - shp__now_ns();
			if (left < 0)
				left = 0;
		}
		r = shp_pipeline_next(p, NULL, NULL, left);
	} while (r == 1);
	return r;
}

int shp_pipeline_error(const shp_pipeline *p, unsigned *stage, size_t *index,
                       int *status, int *wstatus)
{
	if (!p)
		return -EINVAL;
	if (!p->err)
		return -ENOENT;
	if (stage)
		*stage = p->err_stage;
	if (index)
		*index = p->err_index;
	if (status)
		*status = p->err_status;
	if (wstatus)
		*wstatus = p->err_wstatus;
	return 0;
}

void shp_pipeline_free(shp_pipeline *p)
{
	if (!p)
		return;
	if (p->started) {
		int64_t until = shp__now_ns() + GRACE_NS;
		bool left = true;

		stop(p);
		pthread_mutex_lock(&p->lock);
		p->stopping = true;
		pthread_cond_broadcast(&p->moved);
		pthread_mutex_unlock(&p->lock);
		if (p->feeder_live)
			pthread_join(p->feeder, NULL);
		while (left && shp__now_ns() < until) {
			struct timespec nap = { 0, 1000000 };

			reap(p, false);
			left = false;
			for (unsigned w = 0; w < p->nworkers; w++)
				left |= p->pids[w] != 0;
			if (left)
				nanosleep(&nap, NULL);
		}
		for (unsigned w = 0; w < p->nworkers; w++)
			if (p->pids[w])
				kill(p->pids[w], SIGKILL);
		reap(p, true);
		release(p);
	}
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->moved);
	free(p);
}
