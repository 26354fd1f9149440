/*
 * The peers of the task ring in shmpool-bench's ring group: other bounded
 * MPMC queues, each behind the same small table of functions so that the
 * group drives all of them (and the shmpool ring, wrapped the same way)
 * with one loop, through one indirect call per operation.
 *
 * Every peer lives entirely in memory the caller gives it, which the group
 * maps MAP_SHARED before it forks: one queue, many processes. Elements are
 * 32 bytes, the size of a cell of the shmpool ring, and are copied in and
 * out (no pointers to elements elsewhere). Operations are try-operations:
 * they fail at once on a full or empty queue, and the caller decides how
 * to wait, the same way for every queue.
 *
 * Each peer sits in its own object (bench/libpeers.la) so that its flags,
 * DPDK's in particular, stay out of the rest of the program.
 */
#ifndef SHP_BENCH_PEERS_H
#define SHP_BENCH_PEERS_H

#include <config.h>

#include <stdbool.h>
#include <stddef.h>

#define PEER_ELEM_SIZE 32u

struct peer_ring_ops {
	const char *name;
	/* Bytes for a queue of cap slots (a power of two); 0 if impossible. */
	size_t (*size)(unsigned cap);
	/* Makes an empty queue in mem (size(cap) bytes, page-aligned).
	 * Returns 0 or -errno. Not concurrent with anything. */
	int (*init)(void *mem, unsigned cap);
	/* Undoes init, before mem is freed or initialised again; NULL when
	 * there is nothing to undo. */
	void (*fini)(void *ring);
	/* Copies in PEER_ELEM_SIZE bytes; false when full. */
	bool (*enqueue)(void *ring, const void *elem);
	/* Copies out PEER_ELEM_SIZE bytes; false when empty. */
	bool (*dequeue)(void *ring, void *elem);
};

/* A ring buffer under a process-shared pthread mutex: the baseline. */
extern const struct peer_ring_ops peer_mutex_ops;

#ifdef HAVE_DPDK
/* DPDK rte_ring, multi-producer/multi-consumer, without the EAL. */
extern const struct peer_ring_ops peer_rte_ops;
#endif

#ifdef HAVE_CK
/* Concurrency Kit ck_ring, MPMC, elements stored in the ring. */
extern const struct peer_ring_ops peer_ck_ops;
#endif

#endif /* SHP_BENCH_PEERS_H */
