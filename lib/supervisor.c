/*
 * The supervisor ("zygote"): a single-threaded process forked from the
 * caller when the pool is created. It forks every worker, so that no worker
 * is ever forked from a multi-threaded process; it reaps dead workers,
 * repairs what they held and starts replacements; and it takes the pool down
 * when asked to, or when the caller dies.
 *
 * It sleeps in sigtimedwait() on SIGCHLD (a worker died) and SIGTERM (the
 * parent changed the pool state), both blocked so that none is lost between
 * two waits, with a short timeout to notice the caller's death.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

#define TICK_NS 100000000 /* caller-death check period */

struct sup {
	struct shp_pool *pool;
	unsigned npending; /* descriptors in pool->zy_pending */
	unsigned nbusy;    /* dead workers whose claim is still ambiguous */
};

static int spawn(struct shp_pool *pool, unsigned idx)
{
	struct shp__worker *w = &pool->workers[idx];
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0)
		shp__worker_main(pool, idx);
	w->pid = pid;
	SHP_STORE(w->life, SHP_LIFE_LIVE);
	return 0;
}

static int find_worker(struct shp_pool *pool, pid_t pid)
{
	for (unsigned i = 0; i < pool->nworkers; i++)
		if (pool->workers[i].life == SHP_LIFE_LIVE &&
		    pool->workers[i].pid == pid)
			return (int)i;
	return -1;
}

static void flush_pending(struct sup *s)
{
	struct shp_pool *pool = s->pool;
	unsigned done = 0;

	while (done < s->npending) {
		unsigned k = shp__ring_enqueue_burst(pool->ring,
		                                     &pool->zy_pending[done],
		                                     s->npending - done);
		if (!k)
			break;
		done += k;
	}
	for (unsigned i = done; i < s->npending; i++)
		pool->zy_pending[i - done] = pool->zy_pending[i];
	s->npending -= done;
	if (done)
		shp__wake_workers(pool);
}

/*
 * The dead worker owned chunk t: report the task it was running as crashed
 * and hand the tasks it had not started back to the ring.
 */
static void salvage(struct sup *s, struct shp__worker *w, int wstatus)
{
	struct shp_pool *pool = s->pool;
	struct shp__task t = w->task;
	struct shp__call *c;
	uint64_t tb;
	uint32_t base, window;

	if (t.call >= SHP_NCALLS)
		return;
	c = &pool->calls[t.call];
	/*
	 * Snapshot the call's fields between two reads of gen, seqlock
	 * style: if the caller ended the call and started another in this
	 * entry meanwhile, the fields may be the new call's, and the new
	 * call's task i must not be reported crashed. Once the snapshot is
	 * consistent it stays true for what we do with it: the call cannot
	 * end while a task we find not done is not done, and only its dead
	 * worker, or we, could have done it.
	 */
	if (SHP_LOAD(c->gen) != t.gen)
		return; /* the call is over */
	cmm_smp_rmb(); /* gen before the fields; pairs with the caller's
	                * mutex (a full barrier) between ending a call and
	                * filling the entry again */
	tb = SHP_LOAD(c->ticket_base);
	base = SHP_LOAD(c->slot_base);
	window = SHP_LOAD(c->window);
	cmm_smp_rmb(); /* the fields before gen again */
	if (SHP_LOAD(c->gen) != t.gen || window == 0)
		return;
	for (uint64_t i = t.begin; i < t.end; i++) {
		struct shp__slot *sl =
			&pool->slots[(base + i % window) % SHP_NSLOTS];
		uint64_t done = SHP_TAG(tb + i, SHP_SLOT_DONE);
		uint64_t tag = SHP_LOAD(sl->tag);

		/* Done: its slot says so, or already serves a later ticket
		 * (the parent re-uses a slot only after taking the result,
		 * and may have while this chunk was still running). */
		if (tag == done || (tag >> 2) > tb + i)
			continue;
		if (SHP_LOAD(w->running) == i + 1) {
			sl->status = SHP_ECRASHED;
			sl->aux = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus)
			                               : WEXITSTATUS(wstatus);
			/* R3' and N2: as in the worker. */
			uatomic_xchg(&sl->tag, done);
			shp__ec_notify(&c->ec);
			continue;
		}
		t.begin = i;
		pool->zy_pending[s->npending++] = t;
		break;
	}
}

/* Returns false when the repair must wait (a live worker may own the cell
 * the dead one had claimed). */
static bool repair(struct sup *s, unsigned idx, int wstatus)
{
	struct shp_pool *pool = s->pool;
	struct shp__worker *w = &pool->workers[idx];
	struct shp__claim *live[SHP_MAX_WORKERS];
	unsigned nlive = 0;

	/* salvage() may add one descriptor to the backlog: keep room. */
	if (s->npending >= 2 * pool->nworkers)
		return false;
	for (unsigned i = 0; i < pool->nworkers; i++)
		if (i != idx && pool->workers[i].life == SHP_LIFE_LIVE)
			live[nlive++] = &pool->workers[i].claim;
	switch (shp__ring_repair(pool->ring, &w->claim, &w->task, live, nlive)) {
	case SHP_REPAIR_BUSY:
		return false;
	case SHP_REPAIR_TAKEN:
		salvage(s, w, wstatus);
		shp__ring_release_claim(&w->claim);
		break;
	case SHP_REPAIR_NONE:
		break;
	}
	w->running = 0;
	return true;
}

/* Kills and reaps every worker, then exits. */
static void __attribute__((noreturn)) shutdown_now(struct shp_pool *pool)
{
	for (unsigned i = 0; i < pool->nworkers; i++)
		if (pool->workers[i].life == SHP_LIFE_LIVE)
			kill(pool->workers[i].pid, SIGKILL);
	while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
		;
	_exit(0);
}

static unsigned live_workers(struct shp_pool *pool)
{
	unsigned n = 0;

	for (unsigned i = 0; i < pool->nworkers; i++)
		n += pool->workers[i].life == SHP_LIFE_LIVE;
	return n;
}

void shp__supervisor_main(struct shp_pool *pool)
{
	struct sup s = { .pool = pool };
	struct shp__header *h = pool->hdr;
	struct timespec tick = { 0, TICK_NS };
	int wstatus[SHP_MAX_WORKERS];
	bool dead[SHP_MAX_WORKERS] = { false };
	sigset_t set;
	int err = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (getppid() != pool->caller)
		_exit(0);

	for (unsigned i = 0; i < pool->nworkers && !err; i++)
		err = spawn(pool, i);
	/* B1: the worker table before the boot word; pairs with the parent's
	 * load of boot after its eventcount wait. */
	cmm_smp_mb();
	SHP_STORE(h->boot, err ? err : 1);
	cmm_smp_mb(); /* N1 for boot_ec */
	shp__ec_notify(&h->boot_ec);
	if (err)
		shutdown_now(pool);

	for (;;) {
		pid_t pid;
		int st;

		sigtimedwait(&set, NULL, &tick);
		if (getppid() != pool->caller)
			shutdown_now(pool);
		if (SHP_LOAD(h->state) == SHP_STATE_KILL)
			shutdown_now(pool);

		while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			int idx = find_worker(pool, pid);

			if (idx < 0)
				continue;
			SHP_STORE(pool->workers[idx].life, SHP_LIFE_FREE);
			dead[idx] = true;
			wstatus[idx] = st;
			s.nbusy++;
		}
		for (unsigned i = 0; s.nbusy && i < pool->nworkers; i++) {
			if (!dead[i] || !repair(&s, i, wstatus[i]))
				continue;
			dead[i] = false;
			s.nbusy--;
		}
		flush_pending(&s);

		if (SHP_LOAD(h->state) == SHP_STATE_EXIT) {
			if (live_workers(pool) == 0)
				_exit(0);
			shp__wake_workers(pool);
			continue;
		}
		/* Replace the dead, once what they held is repaired. */
		for (unsigned i = 0; i < pool->nworkers; i++)
			if (pool->workers[i].life == SHP_LIFE_FREE && !dead[i])
				spawn(pool, i);
	}
}
