/*
 * shp_map and shp_apply: the parent's side of a call.
 *
 * A call holds a call-table entry, a window of W result slots and, when its
 * inputs or outputs need it, staging buffers of W elements in the arena.
 * Task i uses slot slot_base + i % W. The parent keeps tasks [nc, ns) in
 * flight, with ns - nc <= W: it arms the slots of a chunk, enqueues the
 * chunk's descriptor, and takes results strictly in index order from the
 * slot tags, re-arming each slot only after its result is taken. No
 * sorting, and memory bounded by W whatever n is.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "pool.h"

#define MAX_WINDOW (SHP_NSLOTS / 2) /* leave room for a concurrent call */
#define BATCH 64                    /* descriptors prepared per enqueue */
#define WAIT_SLICE_NS 100000000     /* re-check the supervisor this often */

struct call {
	struct shp_pool *pool;
	struct shp__call *rec;
	unsigned idx;
	uint32_t gen;
	uint32_t slot_base, window;
	unsigned first_block, nblocks;
	uint64_t ticket_base;
	const char *in;
	char *out;
	size_t in_size, out_size;
	uint8_t in_io, out_io;
	char *in_stage, *out_stage;
	int *status;
	size_t n, chunksize;
	size_t ns, nc; /* submitted, collected */
	struct shp__task pending[BATCH];
	unsigned npending;
	bool any_failed;
	int64_t next_check; /* when the ring-room poll checks the supervisor */
};

static inline struct shp__slot *slot_of(const struct call *c, uint64_t i)
{
	return &c->pool->slots[c->slot_base + i % c->window];
}

static uint8_t choose_io(const struct shp_pool *pool, const void *p,
                         size_t size, size_t n)
{
	if (size == 0)
		return SHP_IO_NONE;
	if (shp__arena_contains(&pool->arena, p, size * n))
		return SHP_IO_DIRECT;
	return size <= SHP_SLOT_INLINE ? SHP_IO_INLINE : SHP_IO_STAGED;
}

/* Longest run of free slot blocks, at most want long. Under lock. */
static unsigned take_blocks(struct shp_pool *pool, unsigned want,
                            unsigned *first)
{
	unsigned best = 0, best_at = 0, run = 0;

	for (unsigned b = 0; b < 64; b++) {
		run = (pool->slot_busy >> b) & 1 ? 0 : run + 1;
		if (run > best) {
			best = run;
			best_at = b + 1 - run;
			if (best == want)
				break;
		}
	}
	for (unsigned b = best_at; b < best_at + best; b++)
		pool->slot_busy |= 1ull << b;
	*first = best_at;
	return best;
}

static void give_back(struct call *c)
{
	struct shp_pool *pool = c->pool;

	if (c->in_stage)
		shp__arena_free(&pool->arena, c->in_stage);
	if (c->out_stage)
		shp__arena_free(&pool->arena, c->out_stage);
	for (unsigned b = c->first_block; b < c->first_block + c->nblocks; b++)
		pool->slot_busy &= ~(1ull << b);
	pool->call_busy &= ~(1ull << c->idx);
}

/* Staging buffers for a window of w; shrinks w when the arena is short. */
static int stage(struct call *c, size_t w)
{
	struct shp__arena *a = &c->pool->arena;

	for (; w >= 1; w /= 2) {
		c->in_stage = c->in_io == SHP_IO_STAGED
		                      ? shp__arena_alloc(a, w * c->in_size)
		                      : NULL;
		c->out_stage = c->out_io == SHP_IO_STAGED
		                       ? shp__arena_alloc(a, w * c->out_size)
		                       : NULL;
		if ((c->in_stage || c->in_io != SHP_IO_STAGED) &&
		    (c->out_stage || c->out_io != SHP_IO_STAGED)) {
			c->window = (uint32_t)w;
			return 0;
		}
		if (c->in_stage)
			shp__arena_free(a, c->in_stage);
		if (c->out_stage)
			shp__arena_free(a, c->out_stage);
		c->in_stage = c->out_stage = NULL;
	}
	return -ENOMEM;
}

static int begin_call(struct call *c, shp_fn fn, void *ctx)
{
	struct shp_pool *pool = c->pool;
	struct shp__call *rec;
	size_t want = c->n < MAX_WINDOW ? c->n : MAX_WINDOW;
	unsigned want_blocks = (unsigned)((want + SHP_SLOT_BLOCK - 1) / SHP_SLOT_BLOCK);
	int err = 0;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		if (pool->phase != SHP_PHASE_OPEN) {
			err = pool->phase == SHP_PHASE_BROKEN ? SHP_EBROKEN
			                                      : SHP_ECLOSED;
			goto out;
		}
		if (~pool->call_busy && ~pool->slot_busy)
			break;
		/* With no call active nothing will ever free an entry or a
		 * slot block: what is taken was kept by calls that failed
		 * with tasks in flight (end_call), i.e. by corruption. */
		if (pool->active_calls == 0) {
			err = SHP_ECORRUPT;
			goto out;
		}
		pthread_cond_wait(&pool->cond, &pool->lock);
	}
	if (c->n > (UINT64_C(1) << 61) - pool->next_ticket) {
		err = -EOVERFLOW;
		goto out;
	}
	c->idx = (unsigned)__builtin_ctzll(~pool->call_busy);
	pool->call_busy |= 1ull << c->idx;
	c->nblocks = take_blocks(pool, want_blocks, &c->first_block);
	c->slot_base = c->first_block * SHP_SLOT_BLOCK;
	if (want > (size_t)c->nblocks * SHP_SLOT_BLOCK)
		want = (size_t)c->nblocks * SHP_SLOT_BLOCK;
	err = stage(c, want);
	if (err) {
		give_back(c);
		goto out;
	}
	c->ticket_base = pool->next_ticket;
	pool->next_ticket += c->n;
	pool->active_calls++;

	rec = c->rec = &pool->calls[c->idx];
	c->gen = rec->gen;
	rec->in_io = c->in_io;
	rec->out_io = c->out_io;
	rec->slot_base = c->slot_base;
	rec->window = c->window;
	rec->ticket_base = c->ticket_base;
	rec->fn = (uint64_t)(uintptr_t)fn;
	rec->ctx = (uint64_t)(uintptr_t)ctx;
	rec->in = (uint64_t)(uintptr_t)(c->in_io == SHP_IO_STAGED ? c->in_stage
	                                                          : c->in);
	rec->out = (uint64_t)(uintptr_t)(c->out_io == SHP_IO_STAGED ? c->out_stage
	                                                            : c->out);
	rec->in_size = (uint32_t)c->in_size;
	rec->out_size = (uint32_t)c->out_size;
	rec->wake_index = UINT64_MAX;
out:
	pthread_mutex_unlock(&pool->lock);
	return err;
}

static void end_call(struct call *c)
{
	struct shp_pool *pool = c->pool;

	pthread_mutex_lock(&pool->lock);
	/* Tasks still in flight (the call failed early) may yet write into
	 * the slots and buffers: those stay taken for the life of the pool
	 * rather than be handed to another call. */
	if (c->nc == c->ns && c->npending == 0) {
		/* Stale descriptors of this entry, if any, are dropped by the
		 * workers from now on. */
		SHP_STORE(c->rec->gen, c->gen + 1);
		give_back(c);
	}
	pool->active_calls--;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
}

static size_t next_chunk(const struct call *c)
{
	size_t room = c->nc + c->window - c->ns, left = c->n - c->ns, k;

	if (c->chunksize) {
		k = c->chunksize;
	} else {
		/* Guided: big chunks while much is left, down to 1 at the
		 * end, so that short tasks amortise and long ones balance. */
		size_t cap = c->window / (2 * c->pool->nworkers);

		k = left / (4 * c->pool->nworkers);
		if (k > cap)
			k = cap;
		if (k == 0)
			k = 1;
	}
	if (k > room)
		k = room;
	if (k > left)
		k = left;
	return k;
}

/* Prepares task i's input. */
static void arm(struct call *c, uint64_t i)
{
	struct shp__slot *s = slot_of(c, i);
	const char *src = c->in + i * c->in_size;

	/* Only an inline input writes the slot; otherwise the parent leaves
	 * the line alone, so that it moves between cores once per task (to
	 * the worker's store) rather than three times. Ordered before the
	 * descriptor by R1 of the enqueue. */
	if (c->in_io == SHP_IO_INLINE) {
		memcpy(s->data, src, c->in_size);
		SHP_STORE(s->tag, SHP_TAG(c->ticket_base + i, SHP_SLOT_ARMED));
	} else if (c->in_io == SHP_IO_STAGED) {
		memcpy(c->in_stage + (i % c->window) * c->in_size, src,
		       c->in_size);
	}
}

/* Fills the window: arms slots, enqueues descriptors. */
static void submit(struct call *c)
{
	bool enqueued = false;

	for (;;) {
		unsigned k;

		while (c->npending < BATCH && c->ns < c->n &&
		       c->ns < c->nc + c->window) {
			size_t len = next_chunk(c);

			for (size_t i = c->ns; i < c->ns + len; i++)
				arm(c, i);
			c->pending[c->npending++] = (struct shp__task){
				.call = c->idx,
				.gen = c->gen,
				.begin = c->ns,
				.end = c->ns + len,
			};
			c->ns += len;
		}
		if (!c->npending)
			break;
		k = shp__ring_enqueue_burst(c->pool->ring, c->pending,
		                            c->npending);
		enqueued |= k > 0;
		memmove(c->pending, c->pending + k,
		        (c->npending - k) * sizeof(c->pending[0]));
		c->npending -= k;
		if (c->npending)
			break; /* ring full: results will free it */
	}
	if (enqueued)
		shp__wake_workers(c->pool);
}

static bool valid_status(int st)
{
	return st >= 0 || st == SHP_ETASK || st == SHP_ECRASHED ||
	       st == SHP_ETIMEDOUT || st == SHP_ECANCELED;
}

enum view { PENDING, DONE, CORRUPT };

/*
 * What the slot of task i says of it: DONE(t); ARMED(t), ARMED or DONE of
 * an older ticket (the slot's previous use), or zero (a fresh segment) while
 * it is pending; anything else is corruption.
 *
 * Only a fresh segment's zero has state 0 (tickets start at 1) and nothing
 * writes state 3, so an older ticket in either state was written by a task
 * scribbling the segment.
 */
static enum view view(const struct call *c, uint64_t i)
{
	uint64_t t = c->ticket_base + i, tag = SHP_LOAD(slot_of(c, i)->tag);
	uint64_t state = tag & 3;

	if (tag == SHP_TAG(t, SHP_SLOT_DONE))
		return DONE;
	if (tag == SHP_TAG(t, SHP_SLOT_ARMED) || tag == 0)
		return PENDING;
	if ((tag >> 2) < t &&
	    (state == SHP_SLOT_ARMED || state == SHP_SLOT_DONE))
		return PENDING;
	return CORRUPT;
}

static bool slot_pending(const struct call *c, uint64_t i)
{
	return view(c, i) == PENDING;
}

/* Takes every result that is ready, in order. Returns how many, or
 * SHP_ECORRUPT. */
static int collect(struct call *c)
{
	int got = 0;

	while (c->nc < c->ns) {
		uint64_t i = c->nc;
		struct shp__slot *s = slot_of(c, i);
		enum view v = view(c, i);
		int st;

		if (v == PENDING)
			break;
		if (v == CORRUPT)
			return SHP_ECORRUPT;
		/* A3: the tag before the status and output. Pairs with R3. */
		shp__smp_acquire();
		st = SHP_LOAD(s->status);
		if (!valid_status(st))
			return SHP_ECORRUPT;
		if (c->out_io == SHP_IO_INLINE)
			memcpy(c->out + i * c->out_size, s->data, c->out_size);
		else if (c->out_io == SHP_IO_STAGED)
			memcpy(c->out + i * c->out_size,
			       c->out_stage + (i % c->window) * c->out_size,
			       c->out_size);
		if (c->status)
			c->status[i] = st;
		c->any_failed |= st != 0;
		c->nc++;
		got++;
	}
	return got;
}


/*
 * Whether the pool can still deliver results: 0, SHP_ECLOSED (terminated),
 * or SHP_EBROKEN (the supervisor is dead; the pool is marked broken). The
 * liveness check (a waitpid) runs under the lock, so that two calls that
 * look at once do not race on pool->zygote_status.
 */
static int pool_health(struct shp_pool *pool, bool check_supervisor)
{
	enum shp__phase ph = SHP_LOAD(pool->phase);
	int err = 0;

	if (ph == SHP_PHASE_TERMINATED)
		return SHP_ECLOSED;
	if (ph == SHP_PHASE_BROKEN)
		return SHP_EBROKEN;
	if (!check_supervisor)
		return 0;
	pthread_mutex_lock(&pool->lock);
	if (pool->phase == SHP_PHASE_BROKEN) {
		err = SHP_EBROKEN;
	} else if (pool->phase != SHP_PHASE_TERMINATED &&
	           !shp__supervisor_alive(pool)) {
		pool->phase = SHP_PHASE_BROKEN;
		err = SHP_EBROKEN;
	}
	pthread_mutex_unlock(&pool->lock);
	return err;
}

/* Waits until the result of task nc may be ready. */
static int wait_results(struct call *c)
{
	struct shp_pool *pool = c->pool;
	uint64_t target, queued;
	uint32_t key;
	int err;

	/* With few tasks in flight the caller is waiting on latency: spin
	 * first. With many, spinning would only steal a core from the
	 * workers; sleep until half of what is in flight is done. */
	if (c->ns - c->nc <= pool->nworkers && pool->spin_ns > 0) {
		int64_t until = shp__now_ns() + pool->spin_ns;

		do {
			for (int k = 0; k < 64; k++) {
				if (!slot_pending(c, c->nc))
					return 0;
				caa_cpu_relax();
			}
		} while (shp__now_ns() < until);
	}
	/* Only tasks whose descriptors are in the ring can complete. */
	queued = c->npending ? c->pending[0].begin : c->ns;
	if (queued == c->nc) {
		/* The ring is full of other calls' work: poll for room. If
		 * the pool broke or was terminated nobody drains the ring, so
		 * check as the sleeping path does, the supervisor once per
		 * WAIT_SLICE_NS. */
		struct timespec ts = { 0, 20000 };
		int64_t now = shp__now_ns();

		err = pool_health(pool, now >= c->next_check);
		if (err)
			return err;
		if (now >= c->next_check)
			c->next_check = now + WAIT_SLICE_NS;
		nanosleep(&ts, NULL);
		return 0;
	}
	target = c->nc + (queued - c->nc - 1) / 2;
	if (!slot_pending(c, target))
		target = c->nc;
	SHP_STORE(c->rec->wake_index, target);
	key = shp__ec_prepare(&c->rec->ec); /* E1: pairs with N2 */
	if (!slot_pending(c, target))
		return 0;
	err = pool_health(pool, false);
	if (err)
		return err;
	if (shp__ec_wait(&c->rec->ec, key, shp__now_ns() + WAIT_SLICE_NS) ==
	    -ETIMEDOUT)
		return pool_health(pool, true);
	return 0;
}

static int run(struct call *c)
{
	int r = 0;

	while (c->nc < c->n) {
		submit(c);
		r = collect(c);
		if (r < 0)
			break;
		if (r > 0)
			continue;
		r = wait_results(c);
		if (r < 0)
			break;
	}
	if (r < 0) {
		for (size_t i = c->nc; c->status && i < c->n; i++)
			c->status[i] = SHP_ECANCELED;
		return r;
	}
	return c->any_failed ? SHP_ETASK : 0;
}

static bool mul_overflows(size_t a, size_t b)
{
	size_t r;

	return __builtin_mul_overflow(a, b, &r);
}

int shp_map(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
            size_t in_size, void *out, size_t out_size, size_t n,
            size_t chunksize, int *status)
{
	struct call c = { 0 };
	int err;

	if (!pool || !fn)
		return -EINVAL;
	if (!in != !in_size || !out != !out_size || (!out && !status))
		return -EINVAL;
	if (in_size > UINT32_MAX || out_size > UINT32_MAX)
		return -E2BIG;
	if (mul_overflows(n, in_size) || mul_overflows(n, out_size))
		return -EOVERFLOW;
	if (SHP_LOAD(pool->phase) != SHP_PHASE_OPEN)
		return SHP_LOAD(pool->phase) == SHP_PHASE_BROKEN ? SHP_EBROKEN
		                                                 : SHP_ECLOSED;
	if (n == 0)
		return 0;
	c.pool = pool;
	c.in = in;
	c.out = out;
	c.in_size = in_size;
	c.out_size = out_size;
	c.status = status;
	c.n = n;
	c.chunksize = chunksize;
	c.in_io = choose_io(pool, in, in_size, n);
	c.out_io = choose_io(pool, out, out_size, n);
	err = begin_call(&c, fn, ctx);
	if (err)
		return err;
	err = run(&c);
	end_call(&c);
	return err;
}

int shp_apply(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
              size_t in_size, void *out, size_t out_size)
{
	int st = 0;
	int err = shp_map(pool, fn, ctx, in, in_size, out, out_size, 1, 1, &st);

	return err == 0 || err == SHP_ETASK ? st : err;
}
