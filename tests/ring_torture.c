#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"
#include "ring_torture.h"

#define CHECK_MAGIC 0x9e3779b97f4a7c15ull

struct shared {
	uint64_t consumed;       /* items taken, all consumers */
	uint64_t sum;            /* of item values, all consumers */
	uint64_t reordered;
	uint64_t torn;
	uint8_t seen[];          /* per item: how many times dequeued */
};

static void produce(struct shp__ring *r, unsigned id, unsigned np,
                    uint64_t items)
{
	struct shp__task batch[8];
	uint64_t seq = 0, mine = items / np + (id < items % np);
	unsigned rnd = id * 7919u + 1;

	while (seq < mine) {
		unsigned n = 1 + (rnd = rnd * 1103515245u + 12345u) % 8, k = 0;

		if (n > mine - seq)
			n = (unsigned)(mine - seq);
		for (unsigned i = 0; i < n; i++) {
			uint64_t item = (seq + i) * np + id;

			batch[i] = (struct shp__task){ .call = id, .gen = 0,
			                               .begin = item,
			                               .end = item ^ CHECK_MAGIC };
		}
		while (k < n) {
			unsigned got = shp__ring_enqueue_burst(r, batch + k, n - k);

			if (!got)
				sched_yield();
			k += got;
		}
		seq += n;
	}
}

static void consume(struct shp__ring *r, struct shared *sh, unsigned np,
                    uint64_t items, struct shp__claim *cl, struct shp__task *t)
{
	uint64_t *last = calloc(np, sizeof(*last)), sum = 0, n = 0;

	for (unsigned i = 0; i < np; i++)
		last[i] = UINT64_MAX;
	while (uatomic_read(&sh->consumed) < items) {
		if (!shp__ring_dequeue(r, t, cl)) {
			/* Oversubscribed (more processes than cores), the item
			 * we wait for may belong to a preempted producer. */
			sched_yield();
			continue;
		}
		if (t->end != (t->begin ^ CHECK_MAGIC) || t->call >= np ||
		    t->begin >= items) {
			uatomic_inc(&sh->torn);
		} else {
			if (last[t->call] != UINT64_MAX && t->begin <= last[t->call])
				uatomic_inc(&sh->reordered);
			last[t->call] = t->begin;
			uatomic_inc(&sh->seen[t->begin]);
			sum += t->begin;
		}
		shp__ring_release_claim(cl);
		n++;
		uatomic_inc(&sh->consumed);
	}
	uatomic_add(&sh->sum, sum);
	free(last);
}

int ring_torture(unsigned producers, unsigned consumers, uint64_t items,
                 uint32_t cells, struct ring_torture_result *res)
{
	size_t ring_bytes = shp__ring_bytes(cells);
	size_t sh_bytes = sizeof(struct shared) + items;
	size_t claims_bytes = consumers * (sizeof(struct shp__claim) +
	                                   sizeof(struct shp__task));
	size_t total = ring_bytes + sh_bytes + claims_bytes + 128;
	struct timespec t0, t1;
	char *mem;
	struct shp__ring *r;
	struct shared *sh;
	struct shp__claim *claims;
	struct shp__task *tasks;
	pid_t *pids;
	unsigned nproc = producers + consumers;

	memset(res, 0, sizeof(*res));
	mem = mmap(NULL, total, PROT_READ | PROT_WRITE,
	           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	r = (void *)mem;
	shp__ring_init(r, cells);
	sh = (void *)(mem + ring_bytes);
	claims = (void *)(((uintptr_t)(mem + ring_bytes + sh_bytes) + 63) & ~(uintptr_t)63);
	tasks = (void *)(claims + consumers);
	pids = calloc(nproc, sizeof(*pids));
	if (!pids) {
		munmap(mem, total);
		return -ENOMEM;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < nproc; i++) {
		pid_t p = fork();

		if (p == 0) {
			if (i < producers)
				produce(r, i, producers, items);
			else
				consume(r, sh, producers, items,
				        &claims[i - producers],
				        &tasks[i - producers]);
			_exit(0);
		}
		pids[i] = p;
	}
	for (unsigned i = 0; i < nproc; i++) {
		int st;

		if (pids[i] < 0 || waitpid(pids[i], &st, 0) != pids[i] ||
		    !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			res->failed_children++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	res->seconds = (double)(t1.tv_sec - t0.tv_sec) +
	               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	res->items = items;
	res->delivered = sh->consumed;
	res->torn = sh->torn;
	res->reordered = sh->reordered;
	res->sum_out = sh->sum;
	res->sum_in = items * (items - 1) / 2;
	for (uint64_t i = 0; i < items; i++) {
		if (sh->seen[i] == 0)
			res->missing++;
		else if (sh->seen[i] > 1)
			res->duplicated++;
	}
	free(pids);
	munmap(mem, total);
	return 0;
}
