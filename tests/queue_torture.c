#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmpool.h"

#include "atomic.h"
#include "queue_torture.h"

#define MAX_PROCS 64
#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)
/* Elements per producer at most: the ledger is a byte and a word each. */
#define PER_PRODUCER ((uint64_t)1 << 24)
#define DRAIN_NS (30 * (int64_t)1000000000)
#define EXTRA_NS (30 * (int64_t)1000000000)

struct elem {
	uint64_t id; /* producer << 32 | seq */
	uint64_t check;
};

struct ledger {
	uint32_t stop;
	uint64_t trying[MAX_PROCS]; /* the seq a producer is putting */
	uint64_t torn, reordered;
	uint8_t *put;  /* [producer][seq]: its put returned */
	uint32_t *got; /* [producer][seq]: times delivered */
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t check_of(uint64_t id)
{
	return (id + 1) * GOLDEN;
}

static int produce(shp_queue *q, struct ledger *l, unsigned p, uint64_t from)
{
	for (uint64_t s = from; s < PER_PRODUCER && !SHP_LOAD(l->stop); s++) {
		struct elem e = { (uint64_t)p << 32 | s, 0 };
		int r;

		e.check = check_of(e.id);
		/* Before the put: a replacement starts after it, whether or
		 * not it happened. */
		SHP_STORE(l->trying[p], s);
		r = shp_queue_put(q, &e, -1);
		if (r == SHP_ECLOSED)
			break;
		if (r)
			return 1;
		l->put[p * PER_PRODUCER + s] = 1;
	}
	return 0;
}

static int consume(shp_queue *q, struct ledger *l, unsigned producers)
{
	uint64_t last[MAX_PROCS];
	struct elem e;
	int r;

	memset(last, 0xff, sizeof(last));
	while ((r = shp_queue_get(q, &e, -1)) == 1) {
		unsigned p = (unsigned)(e.id >> 32);
		uint64_t s = e.id & 0xffffffff;

		if (e.check != check_of(e.id) || p >= producers ||
		    s >= PER_PRODUCER) {
			uatomic_inc(&l->torn);
			continue;
		}
		if (last[p] != UINT64_MAX && s < last[p])
			uatomic_inc(&l->reordered);
		last[p] = s;
		uatomic_inc(&l->got[p * PER_PRODUCER + s]);
	}
	return r == 0 ? 0 : 1;
}

/* Child i: producers first, then consumers. */
static pid_t spawn(shp_queue *q, struct ledger *l, unsigned i,
                   unsigned producers, uint64_t from)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(i < producers ? produce(q, l, i, from)
		                    : consume(q, l, producers));
	return pid;
}

static bool expected_exit(int ws, bool killed)
{
	if (killed)
		return WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL;
	return WIFEXITED(ws) && WEXITSTATUS(ws) == 0;
}

int queue_torture(const struct queue_torture_cfg *cfg,
                  struct queue_torture_result *res)
{
	unsigned np = cfg->producers, nc = cfg->consumers, n = np + nc;
	size_t put_bytes = np * PER_PRODUCER;
	size_t got_bytes = np * PER_PRODUCER * sizeof(uint32_t);
	pid_t pid[MAX_PROCS];
	struct ledger *l;
	shp_queue *q;
	int64_t t0, end;
	uint32_t rnd = cfg->seed | 1;
	int err;

	memset(res, 0, sizeof(*res));
	if (!np || !nc || n > MAX_PROCS)
		return -EINVAL;
	l = mmap(NULL, sizeof(*l) + put_bytes + got_bytes,
	         PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
	         -1, 0);
	if (l == MAP_FAILED)
		return -errno;
	l->put = (uint8_t *)(l + 1);
	l->got = (uint32_t *)(l->put + put_bytes);
	err = shp_queue_create(&q, sizeof(struct elem), cfg->capacity);
	if (err) {
		munmap(l, sizeof(*l) + put_bytes + got_bytes);
		return err;
	}
	t0 = now_ns();
	for (unsigned i = 0; i < n; i++)
		pid[i] = spawn(q, l, i, np, 0);
	end = t0 + cfg->millis * 1000000;
	for (int64_t t = now_ns();
	     t < end || (cfg->kill_us && t < end + EXTRA_NS &&
	                 (res->producer_kills < cfg->min_kills ||
	                  res->consumer_kills < cfg->min_kills));
	     t = now_ns()) {
		struct timespec nap = { 0, 1000000 };
		unsigned v;
		int ws;

		if (cfg->kill_us) {
			rnd = rnd * 1103515245 + 12345;
			nap.tv_nsec = (long)(rnd % (uint32_t)(2 * cfg->kill_us)) * 1000;
		}
		nanosleep(&nap, NULL);
		if (!cfg->kill_us)
			continue;
		rnd = rnd * 1103515245 + 12345;
		if ((res->producer_kills + res->consumer_kills) % 2 == 0)
			v = (rnd >> 8) % np;
		else
			v = np + (rnd >> 8) % nc;
		kill(pid[v], SIGKILL);
		waitpid(pid[v], &ws, 0);
		/* A producer may have finished its share before the kill. */
		if (!expected_exit(ws, true) && !expected_exit(ws, false))
			res->failed_children++;
		if (v < np) {
			res->producer_kills++;
			/* Its last put may or may not have happened: the
			 * replacement goes on after it. */
			pid[v] = spawn(q, l, v, np, SHP_LOAD(l->trying[v]) + 1);
		} else {
			res->consumer_kills++;
			pid[v] = spawn(q, l, v, np, 0);
		}
	}
	end = now_ns(); /* the drain's deadline counts from here */
	SHP_STORE(l->stop, 1);
	for (unsigned i = 0; i < np; i++) {
		int ws;

		waitpid(pid[i], &ws, 0);
		if (!expected_exit(ws, false))
			res->failed_children++;
	}
	shp_queue_close(q);
	for (unsigned i = np; i < n; i++) {
		int ws = 0;
		pid_t r;

		while ((r = waitpid(pid[i], &ws, WNOHANG)) == 0 &&
		       now_ns() < end + DRAIN_NS) {
			struct timespec nap = { 0, 1000000 };

			nanosleep(&nap, NULL);
		}
		if (r == 0) {
			res->wedged = 1;
			kill(pid[i], SIGKILL);
			waitpid(pid[i], &ws, 0);
		} else if (!expected_exit(ws, false)) {
			res->failed_children++;
		}
	}
	res->seconds = (double)(now_ns() - t0) / 1e9;
	for (uint64_t k = 0; k < np * PER_PRODUCER; k++) {
		uint32_t got = l->got[k];

		res->put += l->put[k];
		res->delivered += got;
		res->duplicated += got > 1;
		res->missing += l->put[k] && !got;
	}
	res->torn = l->torn;
	res->reordered = l->reordered;
	shp_queue_destroy(q);
	munmap(l, sizeof(*l) + put_bytes + got_bytes);
	return 0;
}

int queue_torture_failed(const struct queue_torture_result *res)
{
	return res->duplicated || res->torn || res->failed_children ||
	       res->wedged || res->missing > res->consumer_kills;
}
