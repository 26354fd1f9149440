/*
 * The task ring: a bounded multi-producer, multi-consumer ring of fixed-size
 * task descriptors in shared memory, with a sequence number per cell
 * (after D. Vyukov's bounded MPMC queue).
 *
 * Indices are free-running 64-bit counters, masked on access: they never
 * wrap in practice (2^64 operations), so "is cell i of this lap" is a plain
 * subtraction and there is no ABA on head or tail.
 *
 * Cell state machine, for the cell at index i (lap L = i / size):
 *   seq == i         EMPTY for position i: the producer that wins tail i
 *                    may write it.
 *   seq == i + 1     FULL: holds the descriptor for position i; the consumer
 *                    that wins head i reads it.
 *   seq == i + size  EMPTY for position i + size (next lap).
 * Producer: EMPTY(i) --[CAS tail i->i+1, write, R1]--> FULL(i)
 * Consumer: FULL(i)  --[claim, CAS head i->i+1, read, R2]--> EMPTY(i+size)
 *
 * Death of a participant:
 *  - producer after winning tail, before R1: the cell stays EMPTY(i) with
 *    tail past it, and consumers stop at it. Producers are threads of the
 *    caller or the supervisor, whose death ends the pool.
 *  - consumer after winning head, before R2: the cell stays FULL(i) with
 *    head past it, and producers stop at it when they come round. So every
 *    consumer keeps a claim record in shared memory (struct shp__claim),
 *    and shp__ring_repair() finishes the dequeue of a dead one.
 *
 * Claim record state machine (pos, held), written by its consumer only
 * while it lives, by the repairer only after it is reaped:
 *   (NONE, 0)  idle
 *   (i, 0)     about to CAS head i->i+1, or won it and copying cell i
 *   (i, 1)     *t holds the descriptor of cell i, the cell not yet released
 *   (NONE, 1)  *t holds a descriptor the consumer owns (cell released)
 *   back to (NONE, 0) through shp__ring_release_claim() when the consumer
 *   is done with the descriptor.
 *
 * Words a task may write: the geometry is sealed (shp__ring_seal), but
 * head, tail and every seq are not, and a task can set them to values no
 * producer or consumer leaves. Every loop here that follows them is
 * bounded: where a live peer would have moved an index, a reload that
 * shows it unmoved ends the operation as full (enqueue) or empty
 * (dequeue). Those reloads are off the fast path. Telling a ring that a
 * task broke from one that is merely slow is the caller's job, with
 * shp__ring_snapshot() over time.
 */
#ifndef SHP_RING_H
#define SHP_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic.h"

/* A chunk of one call: task indices [begin, end). */
struct shp__task {
	uint32_t call; /* index into the call table */
	uint32_t gen;  /* generation of that call-table entry */
	uint64_t begin;
	uint64_t end;
};

struct shp__cell {
	uint64_t seq;
	struct shp__task task;
};
_Static_assert(sizeof(struct shp__cell) == 32, "two cells per cache line");

#define SHP_CLAIM_NONE UINT64_MAX

/* A consumer's claim record, in shared memory; see the state machine. */
struct shp__claim {
	uint64_t pos;
	uint64_t held;
};

#define SHP_RING_CONST_BYTES 4096u

struct shp__ring {
	/* Geometry, alone on its own page: the pool maps that page read-only
	 * once the ring is initialised (shp__ring_seal), so a task that
	 * scribbles over the segment cannot send anybody's index outside the
	 * cells: it dies of SIGSEGV instead, and its task is reported
	 * crashed. */
	uint32_t size; /* power of two */
	uint32_t mask;
	char pad0[SHP_RING_CONST_BYTES - 8];
	/* Producer and consumer indices on their own lines, with a guard line
	 * between them so that adjacent-line prefetch does not couple them. */
	uint64_t tail SHP_ALIGNED;
	char pad1[2 * SHP_CACHELINE - 8];
	uint64_t head SHP_ALIGNED;
	char pad2[2 * SHP_CACHELINE - 8];
	struct shp__cell cells[] SHP_ALIGNED;
};

static inline size_t shp__ring_bytes(uint32_t size)
{
	return sizeof(struct shp__ring) + (size_t)size * sizeof(struct shp__cell);
}

/* Initialises a ring of size cells (a power of two) in zeroed memory. Not
 * concurrent with anything. */
void shp__ring_init(struct shp__ring *r, uint32_t size);

/* Maps the ring's geometry page read-only; r must be page-aligned. Returns
 * 0 or -errno. */
int shp__ring_seal(struct shp__ring *r);

/*
 * Enqueues up to n descriptors, in order, as one contiguous run. Returns how
 * many were enqueued (0 when full, or when the cell at tail is ahead of a
 * tail that does not move: words a task wrote). Safe against any number of
 * concurrent producers and consumers. Each descriptor is published with a
 * release (R1): a consumer that takes it sees everything the producer wrote
 * before.
 */
unsigned shp__ring_enqueue_burst(struct shp__ring *r,
                                 const struct shp__task *t, unsigned n);

/*
 * Dequeues one descriptor into *t. Returns false when the cell at head
 * holds none: the ring is empty, its producer is not done, or the cell is
 * ahead of a head that does not move (words a task wrote). Safe against
 * any number of concurrent producers and consumers. t and cl
 * must both be in shared memory, owned by this consumer, with cl idle
 * (NONE, 0) or NULL (then no repair is possible). On true, the consumer
 * owns *t until it calls shp__ring_release_claim(cl). On false, cl is left
 * idle again, even after a lost race.
 */
bool shp__ring_dequeue(struct shp__ring *r, struct shp__task *t,
                       struct shp__claim *cl);

/* The consumer is done with the descriptor it dequeued into *t. */
static inline void shp__ring_release_claim(struct shp__claim *cl)
{
	SHP_STORE(cl->held, 0);
}

/* Number of descriptors in the ring; a snapshot, exact when quiescent. */
uint64_t shp__ring_count(const struct shp__ring *r);

/*
 * Whether the cell at head is FULL: a dequeue now takes its descriptor, or
 * another consumer does. What idle consumers wait for: a count above zero
 * is not enough, since a producer between its CAS on tail and R1, or a
 * task that wrote the ring, keeps it up with nothing to take. Every
 * producer notifies after R1, so an eventcount sleep on this misses none.
 */
bool shp__ring_ready(const struct shp__ring *r);

/* The ring's indices as read by a process that does not trust them. */
struct shp__ring_snap {
	uint64_t head, tail;
	bool ready; /* the cell at head is FULL (shp__ring_ready) */
	bool sane;  /* head <= tail <= head + size, as every interleaving of
	             * live producers and consumers leaves them */
};

/*
 * Reads tail, head and tail again, in that order (A8), and whether the cell
 * at head is FULL. sane false: no producer or consumer left those values, a
 * task wrote them. Indexes only within the cells, whatever the words hold.
 * Safe against any concurrent operation.
 */
void shp__ring_snapshot(const struct shp__ring *r, struct shp__ring_snap *s);

enum shp__repair {
	SHP_REPAIR_NONE,  /* the dead consumer owned no descriptor */
	SHP_REPAIR_TAKEN, /* it owned one: *t, now the repairer's */
	SHP_REPAIR_BUSY,  /* a live consumer may own that cell: try later */
};

/*
 * After the consumer with claim record *cl and descriptor buffer *t is
 * known dead (reaped): completes or undoes whatever dequeue it was in, so
 * that its cell is released and its descriptor, if it owned one, is in *t.
 * live: the claim records of the consumers still alive; while one of them
 * names the same position, ownership is ambiguous and SHP_REPAIR_BUSY is
 * returned (a live consumer holds a claim for a few instructions only).
 * Leaves *cl idle unless BUSY. Not concurrent with another repair of *cl.
 */
enum shp__repair shp__ring_repair(struct shp__ring *r, struct shp__claim *cl,
                                  struct shp__task *t,
                                  struct shp__claim *const *live,
                                  unsigned nlive);

#endif
