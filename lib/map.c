/*
 * The call engine (see call.h) and the synchronous calls: shp_map,
 * shp_map_opt, shp_apply.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "call.h"

#define MAX_WINDOW (SHP_NSLOTS / 2) /* leave room for a concurrent call */
/* Iterators hold their window for as long as they are open, and move only
 * when read: they get smaller windows, and never the last RESERVE_* call
 * entries and slot blocks, so that no number of open iterators can keep
 * another call from starting (or, in the thread that reads them, wedge
 * it). */
#define ITER_WINDOW (SHP_NSLOTS / 16)
#define RESERVE_CALLS 8u
#define RESERVE_BLOCKS 8u
#define WAIT_SLICE_NS 100000000     /* re-check the supervisor this often */
#define POLL_NS 20000               /* ring-room poll period */
/* A ring frozen this long was stopped by a task, not by a producer that
 * lost its core between its CAS on tail and publishing (see ring_check). */
#define RING_STALL_NS 500000000
/* Tickets a generator call reserves at a time; it re-bases when they run
 * out, so an endless stream costs 2^32 tickets per 2^32 inputs. */
#define GEN_TICKETS (UINT64_C(1) << 32)
#define TICKET_LIMIT (UINT64_C(1) << 61) /* ticket << 2 must fit */
#define MIN_TICK_NS 1000000ll
#define MAX_TICK_NS 100000000ll

static inline struct shp__slot *slot_of(const struct call *c, uint64_t i)
{
	return &c->pool->slots[c->slot_base + i % c->window];
}

static uint8_t choose_io(const struct shp_pool *pool, const void *p,
                         size_t size, size_t n)
{
	if (size == 0)
		return SHP_IO_NONE;
	if (p && shp__arena_contains(&pool->arena, p, size * n))
		return SHP_IO_DIRECT;
	return size <= SHP_SLOT_INLINE ? SHP_IO_INLINE : SHP_IO_STAGED;
}

static bool mul_overflows(size_t a, size_t b)
{
	size_t r;

	return __builtin_mul_overflow(a, b, &r);
}

/* Whether calls under way in a pool in phase ph may go on. */
static bool phase_runs(enum shp__phase ph)
{
	return ph == SHP_PHASE_OPEN || ph == SHP_PHASE_CLOSED;
}

int shp__pool_health(struct shp_pool *pool, bool check_supervisor)
{
	enum shp__phase ph = SHP_LOAD(pool->phase);
	int err = 0;

	if (!phase_runs(ph))
		return shp__phase_error(ph);
	if (!check_supervisor)
		return 0;
	/* The liveness check (a waitpid) runs under the lock, so that two
	 * calls that look at once do not race on pool->zygote_status. */
	pthread_mutex_lock(&pool->lock);
	if (phase_runs(pool->phase) && !shp__supervisor_alive(pool))
		SHP_STORE(pool->phase, SHP_PHASE_BROKEN);
	if (!phase_runs(pool->phase))
		err = shp__phase_error(pool->phase);
	pthread_mutex_unlock(&pool->lock);
	return err;
}

/* A call found the ring unusable for every call: later ones fail at once,
 * and those under way at their next look at the pool. */
static void make_corrupt(struct shp_pool *pool)
{
	pthread_mutex_lock(&pool->lock);
	if (phase_runs(pool->phase))
		SHP_STORE(pool->phase, SHP_PHASE_CORRUPT);
	/* Calls waiting for an entry or slots (shp__call_begin). */
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	shp__kick_handler(pool);
}

int shp__call_init(struct call *c, struct shp_pool *pool, shp_fn fn,
                   void *ctx, const void *in, size_t in_size, void *out,
                   size_t out_size, size_t n, int *status,
                   const struct shp_call_options *opt, unsigned form)
{
	if (!pool || !fn)
		return -EINVAL;
	if (!(form & SHP_FORM_GEN) && !in != !in_size)
		return -EINVAL;
	if (!(form & SHP_FORM_ITER) &&
	    (!out != !out_size || (!out && !status)))
		return -EINVAL;
	if (in_size > UINT32_MAX || out_size > UINT32_MAX)
		return -E2BIG;
	if (!(form & SHP_FORM_GEN) &&
	    (mul_overflows(n, in_size) || mul_overflows(n, out_size)))
		return -EOVERFLOW;
	if (opt && opt->task_timeout_ns < 0)
		return -EINVAL;
	if (SHP_LOAD(pool->phase) != SHP_PHASE_OPEN)
		return shp__phase_error(SHP_LOAD(pool->phase));
	memset(c, 0, sizeof(*c));
	c->pool = pool;
	c->fn = fn;
	c->ctx = ctx;
	c->in = in;
	c->out = out;
	c->in_size = in_size;
	c->out_size = out_size;
	c->status = status;
	c->n = n;
	if (opt) {
		c->chunksize = opt->chunksize;
		c->task_timeout_ns = opt->task_timeout_ns;
		c->retries = opt->retries;
		c->wstatus = opt->wstatus;
	}
	c->iter = form & SHP_FORM_ITER;
	c->in_io = choose_io(pool, in, in_size, n);
	c->out_io = choose_io(pool, out, out_size, n);
	/* Inline input and output share the slot's bytes: the output
	 * overwrites the input. A task that may be re-run after it started
	 * (retries; a deadline kill that hits the next task) must find its
	 * input again: stage it instead. */
	if (c->in_io == SHP_IO_INLINE && c->out_io == SHP_IO_INLINE &&
	    (c->retries || c->task_timeout_ns))
		c->in_io = SHP_IO_STAGED;
	return 0;
}

/* Longest run of free slot blocks, at most want long. Under lock. */
static unsigned take_blocks(struct shp_pool *pool, unsigned want,
                            unsigned *first)
{
	unsigned best = 0, best_at = 0, len = 0;

	for (unsigned b = 0; b < 64; b++) {
		len = (pool->slot_busy >> b) & 1 ? 0 : len + 1;
		if (len > best) {
			best = len;
			best_at = b + 1 - len;
			if (best == want)
				break;
		}
	}
	for (unsigned b = best_at; b < best_at + best; b++)
		pool->slot_busy |= 1ull << b;
	*first = best_at;
	return best;
}

/* The supervisor's period: an eighth of the shortest task deadline of the
 * calls under way, within [1 ms, 100 ms]. Under lock. */
static void update_tick(struct shp_pool *pool)
{
	int64_t tick = MAX_TICK_NS;

	for (unsigned i = 0; i < SHP_NCALLS; i++) {
		int64_t t = pool->call_timeout[i] / 8;

		if ((pool->call_busy >> i & 1) && t > 0 && t < tick)
			tick = t < MIN_TICK_NS ? MIN_TICK_NS : t;
	}
	if (tick != SHP_LOAD(pool->hdr->tick_ns)) {
		bool sooner = tick < SHP_LOAD(pool->hdr->tick_ns);

		SHP_STORE(pool->hdr->tick_ns, tick);
		/* Wake it from its current, longer sleep. It is our child
		 * and not yet reaped, so the pid is still its. */
		if (sooner && pool->zygote_status < 0)
			kill(pool->zygote, SIGTERM);
	}
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
	if (pool->call_timeout[c->idx]) {
		pool->call_timeout[c->idx] = 0;
		update_tick(pool);
	}
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

/* Reserves the tickets of the call's next indices. Under lock. */
static int reserve_tickets(struct call *c)
{
	struct shp_pool *pool = c->pool;
	uint64_t want = c->source ? GEN_TICKETS : c->n;

	if (want > TICKET_LIMIT - pool->next_ticket)
		return -EOVERFLOW;
	/* Task i's ticket is ticket_base + i, modulo 2^64: after a re-base
	 * the base may "wrap" below zero, the tickets do not. */
	c->ticket_base = pool->next_ticket - c->ns;
	c->ticket_end = c->ns + want;
	pool->next_ticket += want;
	return 0;
}

int shp__call_begin(struct call *c, bool wait)
{
	struct shp_pool *pool = c->pool;
	struct shp__call *rec;
	size_t cap = c->iter ? ITER_WINDOW : MAX_WINDOW;
	size_t want = c->n < cap ? c->n : cap;
	unsigned want_blocks = (unsigned)((want + SHP_SLOT_BLOCK - 1) / SHP_SLOT_BLOCK);
	int err = 0;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		unsigned free_calls = (unsigned)__builtin_popcountll(~pool->call_busy);
		unsigned free_blocks = (unsigned)__builtin_popcountll(~pool->slot_busy);

		if (pool->phase != SHP_PHASE_OPEN &&
		    (pool->phase != SHP_PHASE_CLOSED || !c->notify)) {
			/* A closed pool still starts the asynchronous calls
			 * that were queued before it closed. */
			err = shp__phase_error(pool->phase);
			goto out;
		}
		if (!c->iter && free_calls && free_blocks)
			break;
		if (c->iter && free_calls > RESERVE_CALLS &&
		    free_blocks > RESERVE_BLOCKS) {
			/* A sixteenth of what iterators may still take, at
			 * least one block: windows shrink as iterators pile
			 * up, so that some forty fit rather than a few. */
			unsigned share = (free_blocks - RESERVE_BLOCKS) / 16;

			if (want_blocks > share)
				want_blocks = share ? share : 1;
			break;
		}
		/* With no call active nothing may ever free an entry or a
		 * slot block: the iterators hold all they may (an iterator
		 * cannot start: -EAGAIN), or what is taken was kept by
		 * calls that failed with tasks in flight (shp__call_end),
		 * i.e. by corruption. */
		if (pool->active_calls == 0) {
			err = c->iter && pool->iter_calls ? -EAGAIN
			                                  : SHP_ECORRUPT;
			goto out;
		}
		if (!wait) {
			err = -EAGAIN;
			goto out;
		}
		/* A callback waiting here would wait for itself: the result
		 * thread frees what async calls hold. */
		if (shp__in_handler(pool)) {
			err = -EDEADLK;
			goto out;
		}
		pthread_cond_wait(&pool->cond, &pool->lock);
	}
	err = reserve_tickets(c);
	if (err)
		goto out;
	c->idx = (unsigned)__builtin_ctzll(~pool->call_busy);
	pool->call_busy |= 1ull << c->idx;
	c->nblocks = take_blocks(pool, want_blocks, &c->first_block);
	c->slot_base = c->first_block * SHP_SLOT_BLOCK;
	if (want > (size_t)c->nblocks * SHP_SLOT_BLOCK)
		want = (size_t)c->nblocks * SHP_SLOT_BLOCK;
	err = stage(c, want);
	if (err) {
		pool->next_ticket -= c->ticket_end - c->ns;
		give_back(c);
		goto out;
	}
	if (c->unordered) {
		c->taken = calloc((c->window + 63) / 64, sizeof(uint64_t));
		if (!c->taken) {
			err = -ENOMEM;
			give_back(c);
			goto out;
		}
	}
	if (c->iter)
		pool->iter_calls++;
	else
		pool->active_calls++;
	c->begun = true;

	rec = c->rec = &pool->calls[c->idx];
	c->gen = rec->gen;
	rec->in_io = c->in_io;
	rec->out_io = c->out_io;
	rec->slot_base = c->slot_base;
	rec->window = c->window;
	rec->ticket_base = c->ticket_base;
	rec->fn = (uint64_t)(uintptr_t)c->fn;
	rec->ctx = (uint64_t)(uintptr_t)c->ctx;
	rec->in = (uint64_t)(uintptr_t)(c->in_io == SHP_IO_STAGED ? c->in_stage
	                                                          : c->in);
	rec->out = (uint64_t)(uintptr_t)(c->out_io == SHP_IO_STAGED ? c->out_stage
	                                                            : c->out);
	rec->in_size = (uint32_t)c->in_size;
	rec->out_size = (uint32_t)c->out_size;
	rec->wake_index = UINT64_MAX;
	rec->cancel = 0;
	rec->task_timeout_ns = c->task_timeout_ns;
	rec->retries = c->retries;
	rec->notify = c->notify;
	if (c->task_timeout_ns) {
		pool->call_timeout[c->idx] = c->task_timeout_ns;
		update_tick(pool);
	}
out:
	pthread_mutex_unlock(&pool->lock);
	return err;
}

void shp__call_end(struct call *c)
{
	struct shp_pool *pool = c->pool;

	if (!c->begun)
		return;
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
	if (c->iter)
		pool->iter_calls--;
	else
		pool->active_calls--;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	/* The result thread may have async calls waiting for room. */
	shp__kick_handler(pool);
	free(c->taken);
	c->taken = NULL;
	c->begun = false;
}

/* A generator call that has used its tickets: once nothing of it is in
 * flight, moves it to fresh ones, as if it were a new call in its entry. */
static bool rebase(struct call *c)
{
	struct shp_pool *pool = c->pool;
	int err;

	if (c->nc < c->ns || c->npending)
		return false;
	pthread_mutex_lock(&pool->lock);
	err = reserve_tickets(c);
	if (!err) {
		/* The supervisor's salvage of a chunk from before sees the
		 * new gen and leaves the slots alone. */
		SHP_STORE(c->rec->gen, c->gen + 1);
		c->gen++;
		c->rec->ticket_base = c->ticket_base;
	}
	pthread_mutex_unlock(&pool->lock);
	if (err) {
		c->source_err = err;
		c->n = c->ns;
	}
	return !err;
}

static size_t next_chunk(const struct call *c)
{
	size_t room = c->nc + c->window - c->ns, k;
	size_t left = c->source ? c->window : c->n - c->ns;

	if (c->chunksize) {
		k = c->chunksize;
	} else {
		/* Guided: big chunks while much is left, down to 1 at the
		 * end, so that short tasks amortise and long ones balance. */
		size_t cap = c->window / (2 * c->pool->nworkers);

		k = left / (4 * (size_t)c->pool->nworkers);
		if (k > cap)
			k = cap;
		if (k == 0)
			k = 1;
	}
	if (k > room)
		k = room;
	if (k > c->n - c->ns)
		k = c->n - c->ns;
	if (k > c->ticket_end - c->ns)
		k = c->ticket_end - c->ns;
	return k;
}

/* Prepares task i's input. Returns false when the generator has none. */
static bool arm(struct call *c, uint64_t i)
{
	struct shp__slot *s = slot_of(c, i);
	char *dst = NULL;

	/* Only an inline input writes the slot; otherwise the parent leaves
	 * the line alone, so that it moves between cores once per task (to
	 * the worker's store) rather than three times. Ordered before the
	 * descriptor by R1 of the enqueue. */
	if (c->in_io == SHP_IO_INLINE)
		dst = (char *)s->data;
	else if (c->in_io == SHP_IO_STAGED)
		dst = c->in_stage + (i % c->window) * c->in_size;
	if (c->source) {
		int r = c->source(dst, c->source_arg);

		if (r <= 0) {
			c->source_err = shp__gen_err(r);
			c->n = i;
			return false;
		}
	} else if (c->in_io == SHP_IO_INLINE || c->in_io == SHP_IO_STAGED) {
		memcpy(dst, c->in + i * c->in_size, c->in_size);
	}
	if (c->in_io == SHP_IO_INLINE)
		SHP_STORE(s->tag, SHP_TAG(c->ticket_base + i, SHP_SLOT_ARMED));
	return true;
}

/* Whether task i's slot is free for it: its previous use was taken. */
static bool slot_free(const struct call *c, size_t i)
{
	return i < c->nc + c->window;
}

void shp__call_submit(struct call *c)
{
	bool enqueued = false;

	if (c->cancelled)
		return;
	/* An iterator frees one slot per result taken: wait for a quarter
	 * of the window before refilling, so that chunks stay big and the
	 * workers are woken once per batch, not once per result. */
	if (c->iter && c->ns > c->nc && c->ns < c->n &&
	    c->nc + c->window - c->ns < c->window / 4)
		return;
	for (;;) {
		unsigned k;

		while (c->npending < c->batch && c->ns < c->n &&
		       slot_free(c, c->ns)) {
			size_t len, armed = 0;

			if (c->ns == c->ticket_end && !rebase(c))
				break;
			len = next_chunk(c);
			while (armed < len && arm(c, c->ns + armed))
				armed++;
			if (!armed)
				break;
			c->pending[c->npending++] = (struct shp__task){
				.call = c->idx,
				.gen = c->gen,
				.begin = c->ns,
				.end = c->ns + armed,
			};
			c->ns += armed;
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

static bool is_taken(const struct call *c, size_t i)
{
	size_t b = i % c->window;

	return c->taken[b / 64] >> (b % 64) & 1;
}

/* Reads task i's result, which view() says is done: output to dst (NULL:
 * dropped), status and wait status. SHP_ECORRUPT or 0. */
static int read_result(struct call *c, uint64_t i, void *dst, int *status)
{
	struct shp__slot *s = slot_of(c, i);
	int st;

	/* A3: the tag before the status and output. Pairs with R3. */
	shp__smp_acquire();
	st = SHP_LOAD(s->status);
	if (!valid_status(st))
		return SHP_ECORRUPT;
	/* A task that never returned wrote nothing worth copying: the
	 * caller's element stays as it was. */
	if (st == SHP_ECRASHED || st == SHP_ETIMEDOUT || st == SHP_ECANCELED)
		dst = NULL;
	if (dst && c->out_io == SHP_IO_INLINE)
		memcpy(dst, s->data, c->out_size);
	else if (dst && c->out_io == SHP_IO_STAGED)
		memcpy(dst, c->out_stage + (i % c->window) * c->out_size,
		       c->out_size);
	if (c->wstatus)
		c->wstatus[i] = st == SHP_ECRASHED || st == SHP_ETIMEDOUT
		                        ? SHP_LOAD(s->aux)
		                        : 0;
	*status = st;
	c->any_failed |= st != 0;
	c->stalls = 0;
	return 0;
}

/* Marks i taken and moves nc past the taken run. */
static void mark_taken(struct call *c, size_t i)
{
	if (c->unordered) {
		size_t b = i % c->window;

		c->taken[b / 64] |= 1ull << (b % 64);
		while (c->nc < c->ns && is_taken(c, c->nc)) {
			b = c->nc % c->window;
			c->taken[b / 64] &= ~(1ull << (b % 64));
			c->nc++;
		}
	} else {
		c->nc++;
	}
	/* Read by shp_async_progress from other threads. */
	SHP_STORE(c->ntaken, c->ntaken + 1);
}

int shp__call_collect(struct call *c)
{
	int got = 0;

	while (c->nc < c->ns) {
		uint64_t i = c->nc;
		enum view v = view(c, i);
		void *dst = NULL;
		int st, err;

		if (v == PENDING)
			break;
		if (v == CORRUPT)
			return SHP_ECORRUPT;
		if (c->out_io == SHP_IO_INLINE || c->out_io == SHP_IO_STAGED)
			dst = c->out + i * c->out_size;
		err = read_result(c, i, dst, &st);
		if (err)
			return err;
		if (c->status)
			c->status[i] = st;
		mark_taken(c, i);
		got++;
	}
	return got;
}

int shp__call_take(struct call *c, size_t *index, void *dst, int *status)
{
	for (size_t i = c->nc; i < c->ns; i++) {
		enum view v;
		int err;

		if (c->unordered && i > c->nc && is_taken(c, i))
			continue;
		v = view(c, i);
		if (v == CORRUPT)
			return SHP_ECORRUPT;
		if (v == PENDING) {
			if (!c->unordered)
				return 0;
			continue;
		}
		err = read_result(c, i, dst, status);
		if (err)
			return err;
		*index = i;
		mark_taken(c, i);
		return 1;
	}
	return 0;
}

/* The first index not yet in the ring. */
static size_t queued_end(const struct call *c)
{
	return c->npending ? c->pending[0].begin : c->ns;
}

bool shp__call_ready(const struct call *c)
{
	size_t end = queued_end(c);

	if (!c->unordered)
		return c->nc < end && view(c, c->nc) != PENDING;
	for (size_t i = c->nc; i < end; i++)
		if (!(i > c->nc && is_taken(c, i)) && view(c, i) != PENDING)
			return true;
	return false;
}

int shp__call_arm_wake(struct call *c)
{
	size_t queued = queued_end(c);
	uint64_t target;

	if (queued == c->nc)
		return -EAGAIN;
	if (c->unordered) {
		/* Any completion will do. */
		target = c->nc;
	} else {
		/* Sleep until half of what is in flight is done: one
		 * wake-up per half window rather than one per task. */
		target = c->nc + (queued - c->nc - 1) / 2;
		if (view(c, target) != PENDING)
			target = c->nc;
	}
	SHP_STORE(c->rec->wake_index, target);
	return shp__call_ready(c) ? 1 : 0;
}

int shp__call_wait(struct call *c, int64_t deadline)
{
	struct shp_pool *pool = c->pool;
	int64_t now, until;
	uint32_t key;
	int err;

	/* With few tasks in flight the caller is waiting on latency: spin
	 * first. With many, spinning would only steal a core from the
	 * workers. */
	if (c->ns - c->nc <= pool->nworkers && pool->spin_ns > 0) {
		until = shp__now_ns() + pool->spin_ns;
		if (deadline >= 0 && until > deadline)
			until = deadline;
		do {
			for (int k = 0; k < 64; k++) {
				if (shp__call_ready(c))
					return 0;
				caa_cpu_relax();
			}
		} while (shp__now_ns() < until);
	}
	now = shp__now_ns();
	if (deadline >= 0 && now >= deadline)
		return -ETIMEDOUT;
	if (shp__call_arm_wake(c) == -EAGAIN) {
		/* The ring is full of other calls' work, or a generator
		 * waits to re-base: poll. If the pool broke or was
		 * terminated, or a task wrote the ring, nobody drains it,
		 * so check as the sleeping path does, once per slice. */
		struct timespec ts = { 0, POLL_NS };
		bool slice = now >= c->next_check;

		err = shp__pool_health(pool, slice);
		if (!err && slice)
			err = shp__call_check(c);
		if (err)
			return err;
		if (slice)
			c->next_check = now + WAIT_SLICE_NS;
		nanosleep(&ts, NULL);
		return 0;
	}
	key = shp__ec_prepare(&c->rec->ec); /* E1: pairs with N2 */
	if (shp__call_ready(c))
		return 0;
	err = shp__pool_health(pool, false);
	if (err)
		return err;
	until = now + WAIT_SLICE_NS;
	if (deadline >= 0 && deadline < until)
		until = deadline;
	if (shp__ec_wait(&c->rec->ec, key, until) == -ETIMEDOUT) {
		/* A slice without a result: is the pool alive, and is the
		 * record the workers read still ours? */
		err = shp__pool_health(pool, true);
		if (!err)
			err = shp__call_check(c);
		if (err)
			return err;
		if (deadline >= 0 && shp__now_ns() >= deadline)
			return -ETIMEDOUT;
	}
	return 0;
}

/* Whether a worker may still move the ring: one dead and not yet
 * replaced (its repair may release a cell), or one inside a dequeue. */
static bool consumer_active(const struct shp_pool *pool)
{
	for (unsigned k = 0; k < pool->nworkers; k++) {
		const struct shp__worker *w = &pool->workers[k];

		if (SHP_LOAD(w->life) != SHP_LIFE_LIVE ||
		    SHP_LOAD(w->claim.pos) != SHP_CLAIM_NONE)
			return true;
	}
	return false;
}

/*
 * Whether nothing in the pool holds a descriptor that could still complete
 * a task: none prepared by the call, none in the ring, none in the
 * supervisor's backlog, no worker dead and not yet replaced, none inside a
 * dequeue or a chunk. The order matters: a descriptor that leaves the ring
 * after the count was read is in its worker's claim (stored before the
 * CAS that took it) by the time the workers are read.
 */
static bool pool_idle(const struct call *c)
{
	struct shp_pool *pool = c->pool;

	if (c->npending || shp__ring_count(pool->ring) ||
	    SHP_LOAD(pool->hdr->backlog))
		return false;
	cmm_smp_rmb(); /* the ring and the backlog before the workers */
	if (consumer_active(pool))
		return false;
	for (unsigned k = 0; k < pool->nworkers; k++) {
		const struct shp__worker *w = &pool->workers[k];

		if (SHP_LOAD(w->claim.held) || SHP_LOAD(w->running))
			return false;
	}
	return true;
}

/*
 * Whether the task ring can still move, for every call: SHP_ECORRUPT when
 * its indices are impossible, or when it has been frozen for RING_STALL_NS.
 * Frozen: the cell at head holds no descriptor, yet something waits behind
 * it (head != tail) or the call found no room; no worker is inside a
 * dequeue or dead; and head and tail have not moved. Then no worker can
 * take anything and nothing can make room: what could still move it is a
 * producer that won tail and has not yet published (another thread of
 * ours, or the supervisor), which does so in nanoseconds unless it lost
 * its core; a task's writes stay. A ring stopped by workers that do not
 * run (stopped, or all busy) still has a FULL cell at head: not frozen.
 */
static int ring_check(struct call *c)
{
	struct shp_pool *pool = c->pool;
	struct shp__ring_snap s;
	int64_t now;

	shp__ring_snapshot(pool->ring, &s);
	if (!s.sane)
		return SHP_ECORRUPT;
	if (s.ready || (s.head == s.tail && !c->npending)) {
		c->frozen_since = 0;
		return 0;
	}
	cmm_smp_rmb(); /* head before the claims: pairs with C1 */
	if (consumer_active(pool)) {
		c->frozen_since = 0;
		return 0;
	}
	now = shp__now_ns();
	if (!c->frozen_since || s.head != c->frozen_head ||
	    s.tail != c->frozen_tail) {
		c->frozen_since = now;
		c->frozen_head = s.head;
		c->frozen_tail = s.tail;
		return 0;
	}
	return now - c->frozen_since >= RING_STALL_NS ? SHP_ECORRUPT : 0;
}

int shp__call_check(struct call *c)
{
	const struct shp__call *r = c->rec;
	uint64_t in = (uintptr_t)(c->in_io == SHP_IO_STAGED ? c->in_stage
	                                                    : c->in);
	uint64_t out = (uintptr_t)(c->out_io == SHP_IO_STAGED ? c->out_stage
	                                                      : c->out);

	if (SHP_LOAD(r->gen) != c->gen || r->slot_base != c->slot_base ||
	    r->window != c->window || r->ticket_base != c->ticket_base ||
	    r->fn != (uintptr_t)c->fn || r->ctx != (uintptr_t)c->ctx ||
	    r->in != in || r->out != out || r->in_io != c->in_io ||
	    r->out_io != c->out_io || r->in_size != c->in_size ||
	    r->out_size != c->out_size || r->notify != c->notify ||
	    r->task_timeout_ns != c->task_timeout_ns ||
	    r->retries != c->retries)
		return SHP_ECORRUPT;
	if (ring_check(c)) {
		make_corrupt(c->pool);
		return SHP_ECORRUPT;
	}
	/* Idle twice in a row, a slice apart, with no result taken between
	 * (read_result resets the count): what the call waits for was done
	 * and its tag rewound, so it will never come. */
	if (!pool_idle(c)) {
		c->stalls = 0;
		return 0;
	}
	return ++c->stalls >= 2 ? SHP_ECORRUPT : 0;
}

/* Tasks [from, n) will never run: SHP_ECANCELED in status, 0 in wstatus,
 * whichever of the two the call has (array calls only: their n is
 * known). */
static void cancel_from(struct call *c, size_t from)
{
	for (size_t i = from; (c->status || c->wstatus) && i < c->n; i++) {
		if (c->status)
			c->status[i] = SHP_ECANCELED;
		if (c->wstatus)
			c->wstatus[i] = 0;
	}
}

void shp__call_cancel(struct call *c)
{
	size_t q = queued_end(c);

	if (c->cancelled)
		return;
	c->cancelled = true;
	if (c->begun)
		SHP_STORE(c->rec->cancel, 1);
	/* Prepared but not in the ring, or never prepared: never will be. */
	cancel_from(c, q);
	c->npending = 0;
	c->ns = q;
	c->n = q;
}

void shp__call_abandon(struct call *c)
{
	/* Array calls are all ordered: nc is the first not taken. */
	cancel_from(c, c->nc);
}

/* Runs a call to the end in the calling thread. */
static int run(struct call *c)
{
	int r = 0;

	while (!shp__call_finished(c)) {
		shp__call_submit(c);
		r = shp__call_collect(c);
		if (r < 0)
			break;
		if (r > 0)
			continue;
		r = shp__call_wait(c, -1);
		if (r < 0)
			break;
	}
	if (r < 0) {
		/* Results that are done are still delivered; a corrupt
		 * slot stops there. */
		shp__call_collect(c);
		shp__call_abandon(c);
		return r;
	}
	return c->any_failed ? SHP_ETASK : 0;
}

int shp_map_opt(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                size_t in_size, void *out, size_t out_size, size_t n,
                int *status, const struct shp_call_options *opt)
{
	struct shp__task batch[SHP_CALL_BATCH];
	struct call c;
	int err;

	err = shp__call_init(&c, pool, fn, ctx, in, in_size, out, out_size, n,
	                     status, opt, 0);
	if (err || n == 0)
		return err;
	c.pending = batch;
	c.batch = SHP_CALL_BATCH;
	err = shp__call_begin(&c, true);
	if (err)
		return err;
	err = run(&c);
	shp__call_end(&c);
	return err;
}

int shp_map(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
            size_t in_size, void *out, size_t out_size, size_t n,
            size_t chunksize, int *status)
{
	struct shp_call_options o = { .chunksize = chunksize };

	return shp_map_opt(pool, fn, ctx, in, in_size, out, out_size, n,
	                   status, &o);
}

int shp_apply(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
              size_t in_size, void *out, size_t out_size)
{
	int st = 0;
	int err = shp_map(pool, fn, ctx, in, in_size, out, out_size, 1, 1, &st);

	return err == 0 || err == SHP_ETASK ? st : err;
}
