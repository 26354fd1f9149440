/*
 * Asynchronous calls: shp_map_async, shp_apply_async and their handles.
 *
 * Every asynchronous call of a pool is driven by one thread of the caller's
 * process, the result thread, started with the pool's first asynchronous
 * call (Python's Pool has the same, its result handler). It starts queued
 * calls as call entries and slots become free, submits and collects for all
 * of them, and runs their callbacks. It sleeps on one eventcount for all its
 * calls (header.handler_ec, which workers notify for records marked
 * SHP_NOTIFY_HANDLER), and is kicked by the threads that submit, cancel or
 * free room.
 *
 * Handle state (h->state, under pool->lock):
 *   QUEUED -> RUNNING    the result thread took a call entry for it
 *   QUEUED -> CALLBACK   cancelled, or the pool stopped, before it started
 *   RUNNING -> CALLBACK  every result taken, or the call failed
 *   CALLBACK -> DONE     its callback returned; waiters are woken
 * Only the result thread moves it. Nothing in it is shared with the
 * workers, so no process death can leave it half-way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"

#define WAIT_SLICE_NS 100000000 /* re-check the supervisor this often */
#define IDLE_SLICE_NS 1000000000
#define POLL_NS 20000

enum async_state { QUEUED, RUNNING, CALLBACK, DONE };

struct shp_async {
	struct call c;
	void (*callback)(shp_async *h, void *arg);
	void (*error_callback)(shp_async *h, int result, void *arg);
	void *cb_arg;
	size_t total;
	bool is_apply;
	int apply_status;
	int result;
	enum async_state state; /* under lock; read without through SHP_LOAD */
	bool cancel_req;        /* under lock */
	bool free_req;          /* under lock */
	bool waited;            /* under lock: a thread waits for it */
	bool corrupt;           /* its call record was overwritten */
	struct shp_async *next; /* the queue, then the running list */
	struct shp__task batch[]; /* c.pending: min(n, SHP_CALL_BATCH) */
};

/* Descriptors a call of n tasks can have prepared at once. */
static unsigned batch_for(size_t n)
{
	return n < SHP_CALL_BATCH ? (n ? (unsigned)n : 1u) : SHP_CALL_BATCH;
}

static struct shp_async *new_handle(size_t n)
{
	return calloc(1, sizeof(struct shp_async) +
	                         batch_for(n) * sizeof(struct shp__task));
}

bool shp__in_handler(struct shp_pool *pool)
{
	return pool->handler_started &&
	       pthread_equal(pthread_self(), pool->handler);
}

void shp__kick_handler(struct shp_pool *pool)
{
	if (!SHP_LOAD(pool->handler_started))
		return;
	uatomic_inc(&pool->async_kick);
	cmm_smp_mb(); /* N1: the news before the sleeper check */
	shp__ec_notify(&pool->hdr->handler_ec);
}

/* The call's result, once it stopped: as shp_map's, or shp_apply's. */
static void settle(struct shp_async *h, int err)
{
	struct call *c = &h->c;
	int r;

	if (c->cancelled)
		r = SHP_ECANCELED;
	else if (err < 0)
		r = err;
	else
		r = c->any_failed ? SHP_ETASK : 0;
	if (err < 0 || c->cancelled)
		shp__call_abandon(c);
	if (h->is_apply && (r == 0 || r == SHP_ETASK))
		r = h->apply_status;
	h->result = r;
}

/* Runs the callbacks of the settled handles in list, then marks them all
 * done at once. Called without the lock. */
static void complete(struct shp_pool *pool, struct shp_async *list)
{
	bool wake = false;

	if (!list)
		return;
	for (struct shp_async *h = list; h; h = h->next) {
		if (h->result == 0 && h->callback)
			h->callback(h, h->cb_arg);
		else if (h->result != 0 && h->error_callback)
			h->error_callback(h, h->result, h->cb_arg);
	}
	pthread_mutex_lock(&pool->lock);
	while (list) {
		struct shp_async *h = list;

		list = h->next;
		/* R5: the outputs, statuses and result before DONE, for
		 * readers that poll without the lock. Pairs with A5. */
		shp__smp_release();
		SHP_STORE(h->state, DONE);
		pool->async_pending--;
		/* Only a thread that waits is woken: a broadcast per
		 * handle would wake a thread waiting for another one. */
		wake |= h->waited;
		if (h->free_req)
			free(h);
	}
	if (wake)
		pthread_cond_broadcast(&pool->async_cond);
	if (!pool->async_pending)
		pthread_cond_broadcast(&pool->cond); /* join, terminate */
	pthread_mutex_unlock(&pool->lock);
}

/* Starts the queued calls that fit; settles the ones that cannot start.
 * Returns whether anything changed. */
static bool start_queued(struct shp_pool *pool, struct shp_async **running,
                         struct shp_async **done)
{
	bool moved = false;

	for (;;) {
		struct shp_async *h;
		int err;

		pthread_mutex_lock(&pool->lock);
		h = pool->async_head;
		err = h && h->cancel_req ? SHP_ECANCELED : 0;
		pthread_mutex_unlock(&pool->lock);
		if (!h)
			return moved;
		/* Only this thread takes from the queue: h stays its head
		 * while the lock is dropped. */
		if (!err && h->c.n)
			err = shp__call_begin(&h->c, false);
		if (err == -EAGAIN)
			return moved;
		pthread_mutex_lock(&pool->lock);
		pool->async_head = h->next;
		if (!pool->async_head)
			pool->async_tail = NULL;
		if (err || !h->c.n) {
			/* Cancelled or failed before it started, or nothing
			 * to run (n = 0: done at once, result 0). A cancel
			 * that came since the look above returned 0: it
			 * holds, as in drive(). */
			if (err == SHP_ECANCELED || h->cancel_req)
				shp__call_cancel(&h->c);
			SHP_STORE(h->state, CALLBACK);
			settle(h, err);
			h->next = *done;
			*done = h;
		} else {
			SHP_STORE(h->state, RUNNING);
			h->next = *running;
			*running = h;
		}
		pthread_mutex_unlock(&pool->lock);
		moved = true;
	}
}

/* Submits and collects for every running call; moves the finished ones to
 * done. Returns whether any made progress. */
static bool drive(struct shp_pool *pool, struct shp_async **running,
                  struct shp_async **done)
{
	int health = shp__pool_health(pool, false);
	bool progress = false;

	for (struct shp_async **p = running; *p;) {
		struct shp_async *h = *p;
		struct call *c = &h->c;
		int r;

		if (SHP_LOAD(h->cancel_req))
			shp__call_cancel(c);
		shp__call_submit(c);
		r = shp__call_collect(c);
		progress |= r > 0;
		if (r >= 0 && !shp__call_finished(c) && (health || h->corrupt))
			r = health ? health : SHP_ECORRUPT;
		if (r < 0)
			shp__call_collect(c); /* what is done is delivered */
		if (r >= 0 && !shp__call_finished(c)) {
			p = &h->next;
			continue;
		}
		shp__call_end(c);
		*p = h->next;
		pthread_mutex_lock(&pool->lock);
		SHP_STORE(h->state, CALLBACK);
		/* A cancel that got in before this (it returned 0) holds,
		 * even if every task had run by then. */
		if (h->cancel_req)
			c->cancelled = true;
		pthread_mutex_unlock(&pool->lock);
		settle(h, r < 0 ? r : 0);
		h->next = *done;
		*done = h;
		progress = true;
	}
	return progress;
}

/* Sleeps until a running call may have results, or a kick. */
static void wait_any(struct shp_pool *pool, struct shp_async *running,
                     uint32_t kick)
{
	int64_t slice = running ? WAIT_SLICE_NS : IDLE_SLICE_NS;
	uint32_t key;

	for (struct shp_async *h = running; h; h = h->next) {
		int r = shp__call_arm_wake(&h->c);

		if (r == 1)
			return;
		if (r == -EAGAIN)
			slice = POLL_NS; /* nothing of it in the ring */
	}
	key = shp__ec_prepare(&pool->hdr->handler_ec); /* E1: pairs with N2
	                                                * and kick's N1 */
	if (uatomic_read(&pool->async_kick) != kick)
		return;
	for (struct shp_async *h = running; h; h = h->next)
		if (shp__call_ready(&h->c))
			return;
	if (shp__pool_health(pool, false))
		return;
	if (shp__ec_wait(&pool->hdr->handler_ec, key, shp__now_ns() + slice) !=
	            -ETIMEDOUT ||
	    !running)
		return;
	/* A slice without a result: is the pool alive (marks a dead one
	 * broken, for drive), and is each record still its call's? */
	shp__pool_health(pool, true);
	for (struct shp_async *h = running; h; h = h->next)
		if (shp__call_check(&h->c))
			h->corrupt = true;
}

static void *handler_main(void *arg)
{
	struct shp_pool *pool = arg;
	struct shp_async *running = NULL;

	for (;;) {
		uint32_t kick = uatomic_read(&pool->async_kick);
		struct shp_async *done = NULL;
		bool stop, busy;

		busy = start_queued(pool, &running, &done);
		busy |= drive(pool, &running, &done);
		complete(pool, done);
		pthread_mutex_lock(&pool->lock);
		stop = pool->handler_stop && !running && !pool->async_head;
		pthread_mutex_unlock(&pool->lock);
		if (stop)
			return NULL;
		if (!busy)
			wait_any(pool, running, kick);
	}
}

/* Under lock. */
static int start_handler(struct shp_pool *pool)
{
	sigset_t all, old;
	int err;

	if (pool->handler_started)
		return 0;
	/* The result thread takes none of the caller's signals. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&pool->handler, NULL, handler_main, pool);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	SHP_STORE(pool->handler_started, true);
	return 0;
}

void shp__handler_stop(struct shp_pool *pool)
{
	bool started;

	pthread_mutex_lock(&pool->lock);
	pool->handler_stop = true;
	started = pool->handler_started;
	pthread_mutex_unlock(&pool->lock);
	if (!started)
		return;
	shp__kick_handler(pool);
	pthread_join(pool->handler, NULL);
	pthread_mutex_lock(&pool->lock);
	SHP_STORE(pool->handler_started, false);
	pool->handler_stop = false;
	pthread_mutex_unlock(&pool->lock);
}

static int submit_async(struct shp_async *h, shp_async **out)
{
	struct shp_pool *pool = h->c.pool;
	int err = 0;

	h->c.notify = SHP_NOTIFY_HANDLER;
	pthread_mutex_lock(&pool->lock);
	if (pool->phase != SHP_PHASE_OPEN)
		err = shp__phase_error(pool->phase);
	else
		err = start_handler(pool);
	if (!err) {
		h->state = QUEUED;
		if (pool->async_tail)
			pool->async_tail->next = h;
		else
			pool->async_head = h;
		pool->async_tail = h;
		pool->async_pending++;
	}
	pthread_mutex_unlock(&pool->lock);
	if (err) {
		free(h);
		return err;
	}
	*out = h;
	shp__kick_handler(pool);
	return 0;
}

int shp_map_async_opt(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                      size_t in_size, void *out, size_t out_size, size_t n,
                      int *status, const struct shp_call_options *opt,
                      shp_async **out_h)
{
	struct shp_async *h;
	int err;

	if (!out_h)
		return -EINVAL;
	*out_h = NULL;
	h = new_handle(n);
	if (!h)
		return -ENOMEM;
	err = shp__call_init(&h->c, pool, fn, ctx, in, in_size, out, out_size,
	                     n, status, opt, 0);
	if (err) {
		free(h);
		return err;
	}
	h->c.pending = h->batch;
	h->c.batch = batch_for(n);
	if (opt) {
		h->callback = opt->callback;
		h->error_callback = opt->error_callback;
		h->cb_arg = opt->callback_arg;
	}
	h->total = n;
	return submit_async(h, out_h);
}

int shp_map_async(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                  size_t in_size, void *out, size_t out_size, size_t n,
                  size_t chunksize, int *status, shp_async **h)
{
	struct shp_call_options o = { .chunksize = chunksize };

	return shp_map_async_opt(pool, fn, ctx, in, in_size, out, out_size, n,
	                         status, &o, h);
}

int shp_apply_async(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                    size_t in_size, void *out, size_t out_size,
                    shp_async **out_h)
{
	struct shp_call_options o = { .chunksize = 1 };
	struct shp_async *h;
	int err;

	if (!out_h)
		return -EINVAL;
	*out_h = NULL;
	h = new_handle(1);
	if (!h)
		return -ENOMEM;
	err = shp__call_init(&h->c, pool, fn, ctx, in, in_size, out, out_size,
	                     1, &h->apply_status, &o, 0);
	if (err) {
		free(h);
		return err;
	}
	h->c.pending = h->batch;
	h->c.batch = batch_for(1);
	h->is_apply = true;
	h->total = 1;
	return submit_async(h, out_h);
}

int shp_async_wait(shp_async *h, int64_t timeout_ns)
{
	struct shp_pool *pool;
	struct timespec ts;
	int64_t at;
	int err = 0;

	if (!h)
		return -EINVAL;
	pool = h->c.pool;
	at = shp__deadline_ns(timeout_ns);
	if (at >= 0) {
		ts.tv_sec = at / 1000000000;
		ts.tv_nsec = at % 1000000000;
	}
	pthread_mutex_lock(&pool->lock);
	while (h->state != DONE && !err) {
		h->waited = true;
		if (shp__in_handler(pool))
			err = -EDEADLK;
		else if (at < 0)
			pthread_cond_wait(&pool->async_cond, &pool->lock);
		else if (timeout_ns == 0 ||
		         pthread_cond_timedwait(&pool->async_cond, &pool->lock,
		                                &ts) == ETIMEDOUT)
			err = h->state == DONE ? 0 : -ETIMEDOUT;
	}
	pthread_mutex_unlock(&pool->lock);
	return err;
}

int shp_async_ready(const shp_async *h)
{
	int done;

	if (!h)
		return -EINVAL;
	done = SHP_LOAD(h->state) == DONE;
	/* A5: a caller that sees 1 reads the outputs next. Pairs with R5. */
	shp__smp_acquire();
	return done;
}

int shp_async_result(const shp_async *h)
{
	if (!h)
		return -EINVAL;
	if (SHP_LOAD(h->state) != DONE)
		return -EBUSY;
	shp__smp_acquire(); /* A5: pairs with R5 */
	return h->result;
}

int shp_async_progress(const shp_async *h, size_t *done, size_t *total)
{
	if (!h)
		return -EINVAL;
	if (done)
		*done = SHP_LOAD(h->c.ntaken);
	if (total)
		*total = h->total;
	return 0;
}

int shp_async_cancel(shp_async *h)
{
	struct shp_pool *pool;
	int err = 0;

	if (!h)
		return -EINVAL;
	pool = h->c.pool;
	pthread_mutex_lock(&pool->lock);
	if (h->state == CALLBACK || h->state == DONE || h->cancel_req)
		err = -EALREADY;
	else
		SHP_STORE(h->cancel_req, true);
	pthread_mutex_unlock(&pool->lock);
	if (!err)
		shp__kick_handler(pool);
	return err;
}

void shp_async_free(shp_async *h)
{
	struct shp_pool *pool;

	if (!h)
		return;
	pool = h->c.pool;
	pthread_mutex_lock(&pool->lock);
	if (h->state != DONE && shp__in_handler(pool)) {
		/* From a callback: the result thread frees it once done. */
		h->free_req = true;
		pthread_mutex_unlock(&pool->lock);
		return;
	}
	while (h->state != DONE) {
		h->waited = true;
		pthread_cond_wait(&pool->async_cond, &pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	free(h);
}
