/*
 * Long multi-process torture of the public queue under SIGKILL (make
 * stress; check-stress-short.sh runs a few seconds of it).
 * usage: stress_queue [seconds] [producers] [consumers] [capacity] [kill_us]
 * Prints one parseable line and exits non-zero on a duplicate, a torn
 * element, a loss beyond one per consumer killed, a wedge, or a child that
 * died of anything but our SIGKILL.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "queue_torture.h"

int main(int argc, char **argv)
{
	struct queue_torture_cfg cfg = {
		.millis = 1000 * (argc > 1 ? strtol(argv[1], NULL, 0) : 60),
		.producers = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 4,
		.consumers = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 3,
		.capacity = argc > 4 ? strtoul(argv[4], NULL, 0) : 64,
		.kill_us = argc > 5 ? strtol(argv[5], NULL, 0) : 2000,
		.seed = 12345,
	};
	struct queue_torture_result r;
	int err;

	if (cfg.millis <= 0 || !cfg.producers || !cfg.consumers ||
	    !cfg.capacity || cfg.kill_us < 0) {
		fprintf(stderr, "usage: %s [seconds] [producers] [consumers] "
		                "[capacity] [kill_us]\n", argv[0]);
		return 2;
	}
	err = queue_torture(&cfg, &r);
	if (err) {
		fprintf(stderr, "stress_queue: setup failed: %d\n", err);
		return 1;
	}
	printf("queue %uP/%uC capacity=%zu seconds=%.1f put=%" PRIu64
	       " delivered=%" PRIu64 " missing=%" PRIu64 " duplicated=%" PRIu64
	       " torn=%" PRIu64 " reordered=%" PRIu64 " producer_kills=%" PRIu64
	       " consumer_kills=%" PRIu64 " failed_children=%d wedged=%d\n",
	       cfg.producers, cfg.consumers, cfg.capacity, r.seconds, r.put,
	       r.delivered, r.missing, r.duplicated, r.torn, r.reordered,
	       r.producer_kills, r.consumer_kills, r.failed_children, r.wedged);
	return queue_torture_failed(&r);
}
