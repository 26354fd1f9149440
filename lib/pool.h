/* The parent's private view of a pool, shared by lib/ files. */
#ifndef SHP_POOL_H
#define SHP_POOL_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "shmpool.h"
#include "arena.h"
#include "futex.h"
#include "segment.h"

/*
 * Parent-side lifecycle (pool->phase; changed under pool->lock):
 *   OPEN -> CLOSED -> JOINED      close, then join
 *   OPEN|CLOSED -> TERMINATED     terminate
 *   OPEN|CLOSED -> BROKEN         the supervisor was found dead
 *   OPEN|CLOSED -> CORRUPT        a call found the task ring in a state no
 *                                 producer or consumer leaves, or stopped
 *                                 for good (a task wrote it): no call can
 *                                 trust it again
 * terminate and join leave a broken or corrupt pool so (and stop the
 * processes of a corrupt one), so that later calls keep saying why it
 * stopped.
 */
enum shp__phase {
	SHP_PHASE_OPEN,
	SHP_PHASE_CLOSED,
	SHP_PHASE_JOINED,
	SHP_PHASE_TERMINATED,
	SHP_PHASE_BROKEN,
	SHP_PHASE_CORRUPT,
};

/* What a call is told by a pool in phase ph when that phase refuses it. */
static inline int shp__phase_error(enum shp__phase ph)
{
	switch (ph) {
	case SHP_PHASE_BROKEN:
		return SHP_EBROKEN;
	case SHP_PHASE_CORRUPT:
		return SHP_ECORRUPT;
	default:
		return SHP_ECLOSED;
	}
}

struct shp_pool {
	/* Set at create, read-only afterwards; workers and the supervisor
	 * are forks and see these values too. */
	void *base;
	uint64_t map_size;
	struct shp__header *hdr;
	struct shp__worker *workers;
	struct shp__call *calls;
	struct shp__slot *slots;
	struct shp__ring *ring;
	char *arena_base;
	uint64_t arena_size;
	unsigned nworkers;
	unsigned max_tasks_per_worker;
	void (*initializer)(void *arg);
	void *initializer_arg;
	int64_t spin_ns;
	pid_t caller;
	pid_t zygote;
	sigset_t caller_mask; /* restored in workers */
	struct shp__task *zy_pending; /* supervisor's re-enqueue backlog */

	/* Parent only, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;   /* a call, slot block, arena block or async
	                        * handle freed or done */
	enum shp__phase phase; /* read without the lock through SHP_LOAD */
	unsigned active_calls; /* calls that join and terminate wait for */
	unsigned iter_calls;   /* iterators: they move only when read */
	uint64_t call_busy;    /* bit i: call entry i in use */
	uint64_t slot_busy;    /* bit i: slot block i in use */
	int64_t call_timeout[SHP_NCALLS]; /* task deadline of entry i's call */
	uint64_t next_ticket;
	struct shp__arena arena;
	int zygote_status;     /* -1 until reaped */

	/* The result thread (async.c), under lock. */
	pthread_t handler;
	bool handler_started;
	bool handler_stop;
	struct shp_async *async_head, *async_tail; /* queued, not started */
	unsigned async_pending;  /* handles not yet done */
	pthread_cond_t async_cond; /* a handle is done (CLOCK_MONOTONIC) */
	uint32_t async_kick;     /* bumped (atomically) when the result
	                          * thread has something new to look at */
};
_Static_assert(SHP_NCALLS == 64, "call_busy is one word");
_Static_assert(SHP_NSLOTS / SHP_SLOT_BLOCK == 64, "slot_busy is one word");

/* lib/worker.c: runs in a new worker process; never returns. */
void shp__worker_main(struct shp_pool *pool, unsigned idx)
	__attribute__((noreturn));

/* lib/supervisor.c: runs in the supervisor process; never returns. */
void shp__supervisor_main(struct shp_pool *pool) __attribute__((noreturn));

/* lib/pool.c: whether the supervisor still lives (reaps it if not). */
bool shp__supervisor_alive(struct shp_pool *pool);

/* Wakes the workers after descriptors were enqueued (N1 inside). */
void shp__wake_workers(struct shp_pool *pool);

/* lib/async.c: tells the result thread to look again (N1 inside). */
void shp__kick_handler(struct shp_pool *pool);
/* Whether the calling thread is the pool's result thread (a callback). */
bool shp__in_handler(struct shp_pool *pool);
/* Makes the result thread finish its calls and exit; joins it. Not from
 * the result thread. */
void shp__handler_stop(struct shp_pool *pool);

#endif
