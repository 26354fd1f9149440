/*
 * Long multi-process torture of the task ring (make stress).
 * usage: stress_ring [producers] [consumers] [items] [cells]
 * Prints one parseable line per run and exits non-zero on any loss,
 * duplicate, torn descriptor or reordering.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "ring_torture.h"

int main(int argc, char **argv)
{
	unsigned p = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 4;
	unsigned c = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 4;
	uint64_t items = argc > 3 ? strtoull(argv[3], NULL, 0) : 100000000;
	uint32_t cells = argc > 4 ? (uint32_t)strtoul(argv[4], NULL, 0) : 1024;
	struct ring_torture_result r;
	int err;

	if (!p || !c || !items || !cells || (cells & (cells - 1))) {
		fprintf(stderr, "usage: %s [producers] [consumers] [items] "
		                "[cells, a power of two]\n", argv[0]);
		return 2;
	}
	err = ring_torture(p, c, items, cells, &r);
	if (err) {
		fprintf(stderr, "stress_ring: setup failed: %d\n", err);
		return 1;
	}
	printf("ring %uP/%uC cells=%" PRIu32 " items=%" PRIu64 " delivered=%" PRIu64
	       " missing=%" PRIu64 " duplicated=%" PRIu64 " torn=%" PRIu64
	       " reordered=%" PRIu64 " sum_ok=%d failed_children=%d seconds=%.2f"
	       " ns_per_item=%.1f\n",
	       p, c, cells, items, r.delivered, r.missing, r.duplicated, r.torn,
	       r.reordered, r.sum_in == r.sum_out, r.failed_children, r.seconds,
	       r.seconds * 1e9 / (double)items);
	return r.missing || r.duplicated || r.torn || r.reordered ||
	       r.sum_in != r.sum_out || r.failed_children || r.delivered != items;
}
