/*
 * Multi-process torture of the public queue under SIGKILL: producer and
 * consumer processes over one shp_queue while the parent kills random ones
 * of both at random instants and starts replacements. Checks that no
 * element is delivered twice or torn, that every element whose put
 * returned is delivered except at most one per consumer killed (the one
 * its get had returned when it died, before it was counted), and that the
 * queue drains at the end: never wedged.
 */
#ifndef SHP_QUEUE_TORTURE_H
#define SHP_QUEUE_TORTURE_H

#include <stddef.h>
#include <stdint.h>

struct queue_torture_cfg {
	unsigned producers, consumers;
	size_t capacity;
	long millis;    /* how long producers run and kills go on */
	long kill_us;   /* mean interval between kills; 0: none */
	/* Kills alternate between a random producer and a random consumer;
	 * the run goes on past millis until each side has been killed
	 * min_kills times (for at most 30 s more). */
	unsigned min_kills;
	uint32_t seed;
};

struct queue_torture_result {
	uint64_t put;        /* puts that returned */
	uint64_t delivered;  /* gets that returned and were counted */
	uint64_t missing;    /* returned puts never delivered */
	uint64_t duplicated; /* elements delivered more than once */
	uint64_t torn;       /* elements whose check words did not match */
	uint64_t reordered;  /* a producer's element after a later one (a
	                      * recovered element may do that; not an error) */
	uint64_t producer_kills, consumer_kills;
	int failed_children; /* exits that were neither 0 nor our SIGKILL */
	int wedged;          /* the drain at the end timed out */
	double seconds;
};

/* 0, or -errno when the run could not be set up. */
int queue_torture(const struct queue_torture_cfg *cfg,
                  struct queue_torture_result *res);

/* Whether res shows a failure. */
int queue_torture_failed(const struct queue_torture_result *res);

#endif
