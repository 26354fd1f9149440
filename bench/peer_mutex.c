/*
 * The baseline peer: a ring buffer of 32-byte elements under one
 * PTHREAD_PROCESS_SHARED mutex, what a queue between processes looks like
 * without lock-free code. The lock is held for the copy and two counters
 * only. There are no condition variables: like the other peers it offers
 * try-operations, and the group's loop waits the same way for all of them
 * (a blocking wait would measure the futex, not the queue).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "peers.h"

struct mutex_queue {
	pthread_mutex_t lock;
	unsigned mask;
	unsigned head;  /* next slot to dequeue; under lock */
	unsigned count; /* elements held; under lock */
	/* Slots on their own lines: a copy does not share a line with the
	 * lock word every process spins on. */
	unsigned char slot[][PEER_ELEM_SIZE] __attribute__((aligned(64)));
};

static size_t mutex_size(unsigned cap)
{
	return sizeof(struct mutex_queue) + (size_t)cap * PEER_ELEM_SIZE;
}

static int mutex_init(void *mem, unsigned cap)
{
	struct mutex_queue *q = mem;
	pthread_mutexattr_t a;
	int err;

	if (!cap || (cap & (cap - 1)))
		return -EINVAL;
	memset(q, 0, mutex_size(cap));
	q->mask = cap - 1;
	err = pthread_mutexattr_init(&a);
	if (err)
		return -err;
	/* The queue is mapped shared and used by forked processes. */
	err = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (!err)
		err = pthread_mutex_init(&q->lock, &a);
	pthread_mutexattr_destroy(&a);
	return -err;
}

static void mutex_fini(void *ring)
{
	struct mutex_queue *q = ring;

	pthread_mutex_destroy(&q->lock);
}

static bool mutex_enqueue(void *ring, const void *elem)
{
	struct mutex_queue *q = ring;
	bool ok;

	pthread_mutex_lock(&q->lock);
	ok = q->count <= q->mask;
	if (ok) {
		memcpy(q->slot[(q->head + q->count) & q->mask], elem,
		       PEER_ELEM_SIZE);
		q->count++;
	}
	pthread_mutex_unlock(&q->lock);
	return ok;
}

static bool mutex_dequeue(void *ring, void *elem)
{
	struct mutex_queue *q = ring;
	bool ok;

	pthread_mutex_lock(&q->lock);
	ok = q->count > 0;
	if (ok) {
		memcpy(elem, q->slot[q->head & q->mask], PEER_ELEM_SIZE);
		q->head++;
		q->count--;
	}
	pthread_mutex_unlock(&q->lock);
	return ok;
}

const struct peer_ring_ops peer_mutex_ops = {
	.name = "mutex queue",
	.size = mutex_size,
	.init = mutex_init,
	.fini = mutex_fini,
	.enqueue = mutex_enqueue,
	.dequeue = mutex_dequeue,
};
