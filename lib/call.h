/*
 * The parent's side of a call, shared by the synchronous calls (map.c), the
 * asynchronous ones (async.c) and the iterators (iter.c).
 *
 * A call holds a call-table entry, a window of W result slots and, when its
 * inputs or outputs need it, staging buffers of W elements in the arena.
 * Task i uses slot slot_base + i % W. One thread at a time drives a call
 * (the caller, the result thread, or the iterator's reader): it keeps the
 * tasks [nc, ns) in flight with ns - nc <= W, arms the slots of a chunk,
 * enqueues the chunk's descriptor, and takes results from the slot tags,
 * re-arming a slot only after its result was taken. Nothing is sorted, and
 * memory is bounded by W whatever n is.
 *
 * Ordered calls take results strictly in index order, so nc is also the
 * number taken. Unordered ones take any result that is done: nc is then the
 * lowest index not yet taken, and a bitmap marks the taken ones above it.
 */
#ifndef SHP_CALL_H
#define SHP_CALL_H

#include "pool.h"

#define SHP_CALL_BATCH 64 /* descriptors prepared per enqueue, at most */

struct call {
	struct shp_pool *pool;
	struct shp__call *rec;
	shp_fn fn;
	void *ctx;
	unsigned idx;
	uint32_t gen;
	uint32_t slot_base, window;
	unsigned first_block, nblocks;
	uint64_t ticket_base;
	const char *in;
	char *out; /* the caller's array, or NULL (iterators) */
	size_t in_size, out_size;
	uint8_t in_io, out_io;
	uint8_t notify; /* enum shp__notify */
	char *in_stage, *out_stage;
	int *status;  /* NULL, or n statuses */
	int *wstatus; /* NULL, or n wait statuses */
	int64_t task_timeout_ns;
	unsigned retries;
	size_t chunksize;

	/* The input source: the array in, or a generator. A generator call
	 * has n = SIZE_MAX until the generator ends, when n becomes the
	 * number of inputs it gave; source_err is its error, if it failed. */
	shp_gen_fn source;
	void *source_arg;
	int source_err;
	uint64_t ticket_end; /* generator calls: tickets reserved below */

	size_t n;
	size_t ns, nc;   /* submitted; lowest not taken */
	size_t ntaken;   /* results taken; read by other threads */
	bool iter;       /* an iterator's: join does not wait for it */
	bool unordered;
	uint64_t *taken; /* unordered: bit i % W, for i in (nc, ns) */
	bool cancelled;  /* no more submissions; the rest is SHP_ECANCELED */
	/* Descriptors prepared but not yet in the ring: room for batch of
	 * them, given by the call's owner (shp__call_init leaves none). */
	struct shp__task *pending;
	unsigned batch, npending;
	bool any_failed;
	bool begun;
	int64_t next_check; /* when the ring-room poll checks the supervisor */
	unsigned stalls;    /* wait slices in a row that found the pool idle */
	/* Since when the checks have found the ring frozen at the same head
	 * and tail (0: the last one did not). */
	int64_t frozen_since;
	uint64_t frozen_head, frozen_tail;
};

#define SHP_FORM_ITER 1u /* results through an iterator: no out array */
#define SHP_FORM_GEN 2u  /* inputs from a generator: no in array, n unknown */

/* Checks the arguments shared by every form of map and fills c; takes no
 * resource. form: SHP_FORM_* bits. 0 or the negative error the public
 * call returns. */
int shp__call_init(struct call *c, struct shp_pool *pool, shp_fn fn,
                   void *ctx, const void *in, size_t in_size, void *out,
                   size_t out_size, size_t n, int *status,
                   const struct shp_call_options *opt, unsigned form);

/* Takes a call entry, slots and staging. When wait is false and none is
 * free, returns -EAGAIN instead of waiting. 0 or a negative error. */
int shp__call_begin(struct call *c, bool wait);
/* Gives back what begin took (unless tasks are still in flight). */
void shp__call_end(struct call *c);

/* Fills the window: arms slots, enqueues descriptors, wakes workers. */
void shp__call_submit(struct call *c);

/* Ordered calls: takes every result that is ready, in order, into c->out
 * and c->status. Returns how many, or SHP_ECORRUPT. */
int shp__call_collect(struct call *c);

/*
 * Takes one result: the next in order, or for an unordered call any that
 * is done. Returns 1 and sets *index, copies the output to dst (NULL:
 * dropped) and sets *status; 0 when none is ready; SHP_ECORRUPT.
 */
int shp__call_take(struct call *c, size_t *index, void *dst, int *status);

/* Whether every result has been taken. */
static inline bool shp__call_finished(const struct call *c)
{
	return c->nc >= c->n;
}

/*
 * Prepares to sleep until a result may be ready: stores the wake index on
 * the call record. Returns 1 when a result is ready already, 0 when the
 * caller may sleep on the call's eventcount, -EAGAIN when nothing of the
 * call is in the ring (it is full of other calls' work, or the call
 * waits to re-base its tickets): then poll.
 */
int shp__call_arm_wake(struct call *c);
/* After the eventcount's prepare: whether a result is ready. */
bool shp__call_ready(const struct call *c);

/*
 * Waits, for a call driven by the calling thread, until a result may be
 * ready, or deadline (CLOCK_MONOTONIC ns; -1 none) passes. 0, -ETIMEDOUT,
 * or the pool's state (shp__pool_health).
 */
int shp__call_wait(struct call *c, int64_t deadline);

/*
 * After a wait slice without a result, or a slice of polling for ring
 * room: whether the call can still complete. 0, or SHP_ECORRUPT when the
 * call record in the segment no longer says what the call wrote there;
 * when the task ring's indices are impossible, or it has stayed frozen
 * (nothing can take from it or make room) for half a second: then the
 * pool is marked corrupt, for every call; or when, two slices in a row,
 * nothing in the pool could complete the tasks the call waits for (a task
 * rewound their tags).
 */
int shp__call_check(struct call *c);

/* Stops submitting: running and queued tasks finish (the workers store
 * SHP_ECANCELED for queued ones), the tasks never submitted are cancelled
 * in status. */
void shp__call_cancel(struct call *c);

/* After an error: the statuses of the tasks not taken become
 * SHP_ECANCELED. */
void shp__call_abandon(struct call *c);

/*
 * Whether the pool can still deliver results: 0, SHP_ECLOSED (terminated
 * or joined), SHP_EBROKEN (the supervisor is dead; the pool is marked
 * broken), or SHP_ECORRUPT (a call found the task ring corrupt).
 * check_supervisor: also look whether the supervisor lives.
 */
int shp__pool_health(struct shp_pool *pool, bool check_supervisor);

#endif
