/*
 * The shared segment: one POSIX shared-memory object, mapped before the
 * supervisor and the workers are forked, so that it sits at the same address
 * in every process of the pool.
 *
 *  +-----------------+ 0
 *  | header          |  magic, layout version, sizes, offsets, pool state,
 *  |                 |  eventcounts
 *  | worker table    |  one struct shp__worker per worker
 *  | call table      |  one struct shp__call per call in progress
 *  | result slots    |  struct shp__slot, nslots
 *  | task ring       |  struct shp__ring + cells
 *  | data arena      |  shp_alloc() memory, call staging buffers
 *  +-----------------+ total_size
 *
 * Everything is fixed-layout and linked by offsets and indices. The arena is
 * the one place where raw pointers are stored (call records point into it,
 * and at user memory that existed before the fork): the mapping has the same
 * address everywhere, so they are valid in every process.
 */
#ifndef SHP_SEGMENT_H
#define SHP_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "atomic.h"
#include "ring.h"

#define SHP_MAGIC 0x31706f6f6c6d6873ull /* "shmpool1" */
#define SHP_LAYOUT_VERSION 2u

#define SHP_MAX_WORKERS 1024u
#define SHP_MAX_CELLS (1u << 20)
#define SHP_NCALLS 64u
#define SHP_NSLOTS 4096u
#define SHP_SLOT_BLOCK 64u /* slots are handed to calls in blocks of this */
#define SHP_SLOT_INLINE 48u

/*
 * Pool state word (header.state). Written by the parent only; read by the
 * supervisor and the workers.
 *   RUN  -> EXIT  shp_pool_join: workers exit once the ring is empty, then
 *                 the supervisor exits once every worker has.
 *   RUN  -> KILL  shp_pool_terminate: the supervisor kills the workers and
 *   EXIT -> KILL  exits.
 * If the parent dies the word stays as it was; the supervisor notices the
 * death through getppid() and behaves as for KILL.
 */
enum shp__pool_state { SHP_STATE_RUN = 0, SHP_STATE_EXIT = 1, SHP_STATE_KILL = 2 };

/*
 * Boot word (header.boot): 0 -> 1 when the supervisor has started every
 * worker, or 0 -> a negative errno when it could not; written once by the
 * supervisor, waited on by shp_pool_create through boot_ec. If the
 * supervisor dies first the word stays 0 and the parent sees the death.
 */

struct shp__header {
	uint64_t magic;
	uint32_t layout_version;
	uint32_t header_size;
	uint64_t total_size;
	uint32_t nworkers;
	uint32_t ncalls;
	uint32_t nslots;
	uint32_t ncells;
	uint64_t workers_off;
	uint64_t calls_off;
	uint64_t slots_off;
	uint64_t ring_off;
	uint64_t arena_off;
	uint64_t arena_size;

	uint32_t state SHP_ALIGNED; /* enum shp__pool_state */
	int32_t boot;
	uint32_t boot_ec;

	/* Idle workers sleep here; producers notify after enqueueing. */
	uint32_t work_ec SHP_ALIGNED;

	/* The parent's result thread sleeps here for every asynchronous call
	 * at once (call records with notify == SHP_NOTIFY_HANDLER). */
	uint32_t handler_ec SHP_ALIGNED;

	/* The supervisor's period, in ns: 100 ms, shorter while a call with a
	 * task deadline runs. Written by the parent, read by the supervisor;
	 * a wrong value only changes how often it looks. */
	int64_t tick_ns;

	/* Descriptors the supervisor holds back for want of ring room (its
	 * re-enqueue backlog), published for the caller's stall check. */
	uint32_t backlog;
};

/*
 * Worker record, one per worker index. Lifetime (life word):
 *   FREE -> LIVE   the supervisor forked a worker for this index (pid set)
 *   LIVE -> FREE   the supervisor reaped it and repaired what it held
 * Only the supervisor writes life and pid. The worker itself writes claim,
 * task and running while it lives; after it is reaped, the supervisor does.
 *
 * running: index + 1 of the task the worker is executing, 0 when none.
 * Within a chunk tasks run in index order, so after a death the tasks of
 * the chunk in task are: done (their slot says so), the one in running
 * (it crashed its worker), and the rest, never started.
 */
enum shp__life { SHP_LIFE_FREE = 0, SHP_LIFE_LIVE = 1 };

struct shp__worker {
	int32_t pid;
	uint32_t life;
	uint64_t running;
	struct shp__claim claim;
	struct shp__task task;
	uint64_t ntasks;
	/* When the task in running started (CLOCK_MONOTONIC, system-wide):
	 * stored, for calls with a task deadline only, before running (R4). */
	int64_t started_ns;
} SHP_ALIGNED;
_Static_assert(sizeof(struct shp__worker) == 2 * (size_t)SHP_CACHELINE, "two lines");

/* Where a task's input comes from and its output goes. */
enum shp__io {
	SHP_IO_NONE = 0,   /* size 0: the task gets NULL */
	SHP_IO_DIRECT = 1, /* the user's buffer lies in the arena: base + i */
	SHP_IO_STAGED = 2, /* a staging buffer in the arena: base + i % window */
	SHP_IO_INLINE = 3, /* in the task's result slot */
};

/* Which eventcount a worker notifies when it completes a task. */
enum shp__notify {
	SHP_NOTIFY_CALL = 0,    /* the record's own ec: a thread waits on it */
	SHP_NOTIFY_HANDLER = 1, /* header.handler_ec: the result thread */
};

/*
 * Call record, one per call in progress. The parent fills it before it
 * enqueues the first descriptor of the call (published by R1 of the ring),
 * and changes nothing but wake_index, cancel and ec until the call is over,
 * when gen is bumped for the entry's next use. A streaming call that has
 * used up its tickets is re-based the same way: once nothing of it is in
 * flight, gen is bumped and ticket_base moved. Workers and the supervisor
 * only read it, apart from ec.
 *
 * cancel: 0 -> 1 by the parent (shp_async_cancel, shp_iter_free); a worker
 * that takes a task of the call afterwards stores SHP_ECANCELED for it
 * without running it.
 */
struct shp__call {
	uint32_t gen;
	uint8_t in_io;  /* enum shp__io */
	uint8_t out_io; /* enum shp__io */
	uint16_t pad;
	uint32_t slot_base;
	uint32_t window;
	uint64_t ticket_base;
	uint64_t fn;  /* shp_fn, as an integer */
	uint64_t ctx; /* void *, as an integer */
	uint64_t in;  /* base address for DIRECT and STAGED */
	uint64_t out;
	uint32_t in_size;
	uint32_t out_size;

	/* The parent sleeps here (or on header.handler_ec, as notify says);
	 * a worker that completes a task with index >= wake_index notifies
	 * (N2). */
	uint32_t ec SHP_ALIGNED;
	uint32_t cancel;
	uint64_t wake_index;
	int64_t task_timeout_ns; /* > 0: the supervisor kills overdue tasks */
	uint32_t retries;        /* re-runs of a task whose worker died */
	uint8_t notify;          /* enum shp__notify */
} SHP_ALIGNED;
_Static_assert(sizeof(struct shp__call) == 2 * (size_t)SHP_CACHELINE, "two lines");

/*
 * Result slot. Slot s serves tickets t with slot_base + (t - ticket_base) %
 * window == s for the call that holds it; a ticket is a pool-wide task
 * number, unique for the life of the pool.
 *
 * Tag word: ticket << 2 | state.
 *   ARMED(t)  the parent stored task t's input inline in the slot before
 *             enqueueing the task (only inline inputs arm a slot);
 *   DONE(t)   a worker stored status and output (R3), or the supervisor
 *             reported the task's worker dead (status SHP_ECRASHED, or
 *             SHP_ETIMEDOUT when it killed it for the call's deadline; aux
 *             the worker's wait status).
 * Task t's slot goes from whatever its previous use left (an older ticket,
 * or zero in a fresh segment; tickets start at 1) or ARMED(t) to DONE(t),
 * moved by the worker running t, or by the supervisor once that worker is
 * reaped. The parent re-uses the slot for ticket t + window only after it
 * took t's result: that is the back-pressure. Any other value the parent
 * sees (a newer ticket, a bad state) is corruption: the call fails with
 * SHP_ECORRUPT.
 */
enum shp__slot_state { SHP_SLOT_ARMED = 1, SHP_SLOT_DONE = 2 };
#define SHP_TAG(ticket, state) (((uint64_t)(ticket) << 2) | (state))

struct shp__slot {
	uint64_t tag;
	int32_t status;
	int32_t aux;
	unsigned char data[SHP_SLOT_INLINE] __attribute__((aligned(16)));
} SHP_ALIGNED;
_Static_assert(sizeof(struct shp__slot) == SHP_CACHELINE, "one line each");

struct shp__layout {
	uint32_t nworkers;
	uint32_t ncells;
	uint64_t arena_size;
	uint64_t workers_off, calls_off, slots_off, ring_off, arena_off;
	uint64_t total_size;
};

/* Computes offsets and the total size; -EOVERFLOW if it does not fit. */
int shp__layout_compute(struct shp__layout *l);

/*
 * Creates the shared-memory object, reserves its storage, maps it and
 * unlinks it: nothing is left in /dev/shm, even if the caller dies later.
 * Returns 0 and *base, or -ENOSPC (not enough room in /dev/shm), -ENOMEM,
 * or another -errno.
 */
int shp__segment_map(uint64_t size, void **base);

/* Writes the header and initialises every table of a fresh mapping. */
void shp__segment_init(void *base, const struct shp__layout *l);

#endif
