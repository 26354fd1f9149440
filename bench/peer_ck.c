/*
 * Concurrency Kit's ck_ring as a peer, MPMC, with the 32-byte elements
 * stored in the ring buffer itself (CK_RING_PROTOTYPE: the typed interface
 * copies sizeof(struct type) bytes per operation) rather than as pointers.
 *
 * A producer CASes p_head, copies, then waits for earlier producers to
 * move p_tail; a consumer copies, then CASes c_head (and copies again if
 * it lost). A ring of cap slots holds cap - 1 elements.
 */
#include <errno.h>
#include <string.h>

#include <ck_ring.h>

#include "peers.h"

struct peer_ck_elem {
	unsigned char b[PEER_ELEM_SIZE];
};

CK_RING_PROTOTYPE(bench32, peer_ck_elem)

struct peer_ck {
	struct ck_ring ring;
	struct peer_ck_elem buf[] __attribute__((aligned(64)));
};

static size_t ck_size(unsigned cap)
{
	return sizeof(struct peer_ck) +
	       (size_t)cap * sizeof(struct peer_ck_elem);
}

static int ck_init(void *mem, unsigned cap)
{
	struct peer_ck *q = mem;

	if (cap < 2 || (cap & (cap - 1)))
		return -EINVAL;
	memset(q, 0, ck_size(cap));
	ck_ring_init(&q->ring, cap);
	return 0;
}

static bool ck_enqueue(void *ring, const void *elem)
{
	struct peer_ck *q = ring;

	/* The typed interface takes a non-const entry but only reads it. */
	return ck_ring_enqueue_mpmc_bench32(&q->ring, q->buf,
	                                    (struct peer_ck_elem *)elem);
}

static bool ck_dequeue(void *ring, void *elem)
{
	struct peer_ck *q = ring;

	return ck_ring_dequeue_mpmc_bench32(&q->ring, q->buf, elem);
}

const struct peer_ring_ops peer_ck_ops = {
	.name = "ck_ring",
	.size = ck_size,
	.init = ck_init,
	.fini = NULL,
	.enqueue = ck_enqueue,
	.dequeue = ck_dequeue,
};
