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

#define TICK_NS 100000000 /* caller-death check period, at most */

/* A worker the supervisor killed because its task overran the call's
 * deadline: which task it was running then. */
struct kill_record {
	uint64_t running; /* 0: not killed by us */
	uint32_t call, gen;
};

struct sup {
	struct shp_pool *pool;
	unsigned npending; /* descriptors in pool->zy_pending */
	unsigned nbusy;    /* dead workers whose claim is still ambiguous */
	struct kill_record killed[SHP_MAX_WORKERS];
};

/* Times the task of each slot crashed its worker, for retries: a count is
 * for the ticket beside it, and starts again for a new one. Private to the
 * supervisor process. */
static struct {
	uint64_t ticket;
	uint32_t count;
} crashes[SHP_NSLOTS];

static int spawn(struct sup *s, unsigned idx)
{
	struct shp__worker *w = &s->pool->workers[idx];
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0)
		shp__worker_main(s->pool, idx);
	s->killed[idx].running = 0;
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
 * What becomes of the task the dead worker was running, slot index sidx,
 * ticket: SHP_ETIMEDOUT if we killed it for its deadline; re-run (0) if we
 * killed the worker for an earlier task, or the call allows another retry;
 * SHP_ECRASHED otherwise.
 */
static int verdict(const struct kill_record *k, const struct shp__task *t,
                   uint64_t running, uint32_t retries, uint32_t sidx,
                   uint64_t ticket, int wstatus)
{
	/* Our kill, unless the worker had died of something else already
	 * (it is killed as overdue before it is reaped). */
	if (k->running && WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) {
		if (k->running == running && k->call == t->call &&
		    k->gen == t->gen)
			return SHP_ETIMEDOUT;
		return 0; /* innocent: its task had just begun */
	}
	if (crashes[sidx].ticket != ticket) {
		crashes[sidx].ticket = ticket;
		crashes[sidx].count = 0;
	}
	if (crashes[sidx].count < retries) {
		crashes[sidx].count++;
		return 0;
	}
	return SHP_ECRASHED;
}

/*
 * The dead worker owned chunk t: report the task it was running as crashed
 * (or timed out, or hand it back for a retry) and hand the tasks it had not
 * started back to the ring.
 */
static void salvage(struct sup *s, unsigned idx, int wstatus)
{
	struct shp_pool *pool = s->pool;
	struct shp__worker *w = &pool->workers[idx];
	struct shp__task t = w->task;
	struct shp__call *c;
	uint64_t tb;
	uint32_t base, window, retries, *ec;

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
	retries = SHP_LOAD(c->retries);
	ec = SHP_LOAD(c->notify) == SHP_NOTIFY_HANDLER ? &pool->hdr->handler_ec
	                                               : &c->ec;
	cmm_smp_rmb(); /* the fields before gen again */
	if (SHP_LOAD(c->gen) != t.gen || window == 0)
		return;
	for (uint64_t i = t.begin; i < t.end; i++) {
		uint32_t sidx = (base + i % window) % SHP_NSLOTS;
		struct shp__slot *sl = &pool->slots[sidx];
		uint64_t done = SHP_TAG(tb + i, SHP_SLOT_DONE);
		uint64_t tag = SHP_LOAD(sl->tag);
		int st;

		/* Done: its slot says so, or already serves a later ticket
		 * (the parent re-uses a slot only after taking the result,
		 * and may have while this chunk was still running). */
		if (tag == done || (tag >> 2) > tb + i)
			continue;
		st = SHP_LOAD(w->running) == i + 1
		             ? verdict(&s->killed[idx], &t, i + 1, retries,
		                       sidx, tb + i, wstatus)
		             : 0;
		if (st) {
			sl->status = st;
			sl->aux = wstatus;
			/* R3' and N2: as in the worker. */
			uatomic_xchg(&sl->tag, done);
			shp__ec_notify(ec);
			continue;
		}
		t.begin = i;
		pool->zy_pending[s->npending++] = t;
		break;
	}
}

/*
 * Kills the workers whose task overran its call's deadline. Returns how
 * long until the next deadline, at most tick.
 */
static int64_t enforce_deadlines(struct sup *s, int64_t tick)
{
	struct shp_pool *pool = s->pool;
	int64_t now = shp__now_ns(), next = tick;

	for (unsigned i = 0; i < pool->nworkers; i++) {
		struct shp__worker *w = &pool->workers[i];
		uint64_t running;
		struct shp__task t;
		int64_t timeout, started, left;

		if (w->life != SHP_LIFE_LIVE || s->killed[i].running)
			continue;
		running = SHP_LOAD(w->running);
		if (!running)
			continue;
		/* A4: running before started_ns and the chunk; pairs with
		 * R4 in the worker. */
		cmm_smp_rmb();
		started = SHP_LOAD(w->started_ns);
		t = w->task;
		cmm_smp_rmb(); /* and those before running again */
		if (started <= 0 || t.call >= SHP_NCALLS ||
		    SHP_LOAD(w->running) != running)
			continue; /* not a timed task, or it just ended */
		timeout = SHP_LOAD(pool->calls[t.call].task_timeout_ns);
		if (timeout <= 0)
			continue;
		/* Time left, never as started + timeout, which overflows for
		 * a timeout near INT64_MAX ("no deadline, really") and would
		 * kill the task at once. A start after now (stored since now
		 * was read) has used none of it. */
		left = started < now ? timeout - (now - started) : timeout;
		if (left > 0) {
			if (left < next)
				next = left;
			continue;
		}
		s->killed[i] = (struct kill_record){ running, t.call, t.gen };
		kill(w->pid, SIGKILL);
	}
	return next;
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
		salvage(s, idx, wstatus);
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
	static struct sup s;
	struct shp__header *h = pool->hdr;
	struct timespec tick;
	int wstatus[SHP_MAX_WORKERS];
	bool dead[SHP_MAX_WORKERS] = { false };
	sigset_t set;
	int err = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (getppid() != pool->caller)
		_exit(0);

	s.pool = pool;
	for (unsigned i = 0; i < pool->nworkers && !err; i++)
		err = spawn(&s, i);
	/* B1: the worker table before the boot word; pairs with the parent's
	 * load of boot after its eventcount wait. */
	cmm_smp_mb();
	SHP_STORE(h->boot, err ? err : 1);
	cmm_smp_mb(); /* N1 for boot_ec */
	shp__ec_notify(&h->boot_ec);
	if (err)
		shutdown_now(pool);

	for (;;) {
		int64_t period = SHP_LOAD(h->tick_ns);
		pid_t pid;
		int st;

		if (period <= 0 || period > TICK_NS)
			period = TICK_NS;
		period = enforce_deadlines(&s, period);
		tick.tv_sec = 0;
		tick.tv_nsec = period;
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
		/* Before any replacement is forked: a caller that sees every
		 * worker live and no backlog knows nothing is held here. */
		SHP_STORE(h->backlog, s.npending);
		cmm_smp_wmb();

		if (SHP_LOAD(h->state) == SHP_STATE_EXIT) {
			if (live_workers(pool) == 0)
				_exit(0);
			shp__wake_workers(pool);
			continue;
		}
		/* Replace the dead, once what they held is repaired. */
		for (unsigned i = 0; i < pool->nworkers; i++)
			if (pool->workers[i].life == SHP_LIFE_FREE && !dead[i])
				spawn(&s, i);
	}
}
