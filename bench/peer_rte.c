/*
 * DPDK's rte_ring as a peer: multi-producer, multi-consumer (the default
 * sync mode, a CAS on the head index, then a wait for earlier producers
 * or consumers to move the tail), without the EAL.
 *
 * rte_ring_init works on any memory and touches no EAL state (the ring is
 * not put in the EAL's list); an element ring is a plain ring whose memory
 * is sized with rte_ring_get_memsize_elem, the element size being passed
 * to every _elem call instead of stored: this is what rte_ring_create_elem
 * does itself (DPDK 22.11). So the 32-byte elements are stored in the ring
 * and copied, as in ours; no side array of pointers.
 *
 * Without RING_F_EXACT_SZ a ring of cap slots holds cap - 1 elements (one
 * slot tells full from empty). We keep cap slots rather than ask for
 * EXACT_SZ, which would round up to 2 * cap slots: the same 32 KiB of
 * cells as the others matter more to the cache than one element of room.
 */
#include <errno.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include "peers.h"

static size_t rte_size(unsigned cap)
{
	ssize_t n = rte_ring_get_memsize_elem(PEER_ELEM_SIZE, cap);

	return n < 0 ? 0 : (size_t)n;
}

static int rte_init(void *mem, unsigned cap)
{
	/* flags 0: multi-producer, multi-consumer. */
	int err = rte_ring_init(mem, "shp-bench", cap, 0);

	return err > 0 ? -err : err;
}

static bool rte_enqueue(void *ring, const void *elem)
{
	/* The _elem API takes void * but only reads it. */
	return rte_ring_mp_enqueue_elem(ring, (void *)elem,
	                                PEER_ELEM_SIZE) == 0;
}

static bool rte_dequeue(void *ring, void *elem)
{
	return rte_ring_mc_dequeue_elem(ring, elem, PEER_ELEM_SIZE) == 0;
}

const struct peer_ring_ops peer_rte_ops = {
	.name = "rte_ring",
	.size = rte_size,
	.init = rte_init,
	.fini = NULL,
	.enqueue = rte_enqueue,
	.dequeue = rte_dequeue,
};
