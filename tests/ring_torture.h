/*
 * Multi-process torture of the task ring: P producer and C consumer
 * processes over one ring in shared memory. Every item is checked to arrive
 * exactly once, whole (no torn descriptor), and in order per producer as
 * seen by each consumer.
 */
#ifndef SHP_RING_TORTURE_H
#define SHP_RING_TORTURE_H

#include <stdint.h>

struct ring_torture_result {
	uint64_t items;      /* produced */
	uint64_t delivered;  /* dequeued */
	uint64_t missing;    /* items never dequeued */
	uint64_t duplicated; /* items dequeued more than once */
	uint64_t torn;       /* descriptors whose check word did not match */
	uint64_t reordered;  /* items seen before an earlier one of the same producer */
	uint64_t sum_in, sum_out;
	int failed_children; /* processes that did not exit 0 */
	double seconds;
};

/* 0, or -errno when the run could not be set up. */
int ring_torture(unsigned producers, unsigned consumers, uint64_t items,
                 uint32_t cells, struct ring_torture_result *res);

#endif
