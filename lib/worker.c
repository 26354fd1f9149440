/*
 * A worker process: takes chunks from the task ring, runs them, and stores
 * each task's result in its slot.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdalign.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "fault.h"
#include "pool.h"

#define IDLE_TICK_NS 1000000000 /* re-check the supervisor this often */

static inline void *io_ptr(uint8_t io, uint64_t base, uint32_t size,
                           uint64_t i, uint32_t window, struct shp__slot *s)
{
	switch (io) {
	case SHP_IO_DIRECT:
		return (char *)(uintptr_t)base + i * size;
	case SHP_IO_STAGED:
		return (char *)(uintptr_t)base + (i % window) * size;
	case SHP_IO_INLINE:
		return s->data;
	default:
		return NULL;
	}
}

static void run_chunk(struct shp_pool *pool, struct shp__worker *me)
{
	const struct shp__task t = me->task;
	struct shp__call *c;
	shp_fn fn;
	void *ctx;
	uint64_t tb;
	uint32_t window, base, *ec, in_size, out_size;
	uint64_t in_base, out_base;
	uint8_t in_io, out_io;
	bool timed;
	alignas(16) unsigned char inbuf[SHP_SLOT_INLINE];

	if (t.call >= SHP_NCALLS)
		return;
	c = &pool->calls[t.call];
	/* The call record was written before the descriptor was enqueued, so
	 * A2 in shp__ring_dequeue covers it. A descriptor of a call that has
	 * ended (possible only after repairs) is dropped. */
	if (c->gen != t.gen)
		return;
	/* One snapshot of the record per chunk, checked: a task of another
	 * call may have scribbled over it. A chunk that does not fit is
	 * dropped; its caller sees its own record changed (SHP_ECORRUPT). */
	fn = (shp_fn)(uintptr_t)c->fn;
	ctx = (void *)(uintptr_t)c->ctx;
	tb = c->ticket_base;
	window = c->window;
	base = c->slot_base;
	in_io = c->in_io;
	out_io = c->out_io;
	in_base = c->in;
	out_base = c->out;
	in_size = c->in_size;
	out_size = c->out_size;
	if (window == 0 || window > SHP_NSLOTS || base > SHP_NSLOTS - window ||
	    t.end <= t.begin || t.end - t.begin > window ||
	    in_io > SHP_IO_INLINE || out_io > SHP_IO_INLINE ||
	    (in_io == SHP_IO_INLINE && in_size > SHP_SLOT_INLINE) ||
	    (out_io == SHP_IO_INLINE && out_size > SHP_SLOT_INLINE))
		return;
	timed = c->task_timeout_ns > 0;
	ec = c->notify == SHP_NOTIFY_HANDLER ? &pool->hdr->handler_ec : &c->ec;
	if (!timed && me->started_ns) {
		/* Untimed from here on: no start the supervisor could
		 * mistake for this chunk's. R4 as below. */
		SHP_STORE(me->started_ns, 0);
		cmm_smp_wmb();
	}
	for (uint64_t i = t.begin; i < t.end; i++) {
		struct shp__slot *s = &pool->slots[base + i % window];
		const void *in = io_ptr(in_io, in_base, in_size, i, window, s);
		void *out = io_ptr(out_io, out_base, out_size, i, window, s);
		uint32_t seen;
		int st;

		if (in_io == SHP_IO_INLINE && out_io == SHP_IO_INLINE) {
			/* Input and output share the slot's bytes. */
			memcpy(inbuf, s->data, in_size);
			in = inbuf;
		}
		if (timed) {
			SHP_STORE(me->started_ns, shp__now_ns());
			/* R4: the start before running; pairs with A4 in
			 * the supervisor, which so never sees a new running
			 * with an older start (never kills early). */
			cmm_smp_wmb();
		}
		SHP_STORE(me->running, i + 1);
		SHP_FAULT(RUN_STARTED);
		if (shp__likely(!SHP_LOAD(c->cancel))) {
			st = fn(in, out, ctx);
			if (st < 0)
				st = SHP_ETASK;
		} else {
			st = SHP_ECANCELED;
		}
		SHP_FAULT(RUN_RETURNED);
		s->status = st;
		s->aux = 0;
		SHP_FAULT(RUN_STATUS);
		/* R3 + N2: the output and status before DONE, and DONE before
		 * the load of the call's eventcount: uatomic_xchg is a full
		 * barrier. Pairs with A3 in the parent, and with E1 of its
		 * shp__ec_prepare. */
		uatomic_xchg(&s->tag, SHP_TAG(tb + i, SHP_SLOT_DONE));
		SHP_FAULT(RUN_DONE);
		SHP_STORE(me->running, 0);
		SHP_FAULT(RUN_CLEARED);
		me->ntasks++;
		seen = SHP_LOAD(*ec);
		if (seen & SHP_EC_SLEEPERS) {
			/* wake_index was stored before the parent set SLEEPERS
			 * (its CAS is a full barrier): load it after ec. */
			cmm_smp_rmb();
			if (i >= SHP_LOAD(c->wake_index)) {
				SHP_FAULT(RUN_NOTIFYING);
				shp__ec_wake_slow(ec, seen);
				SHP_FAULT(RUN_NOTIFIED);
			}
		}
	}
}

/*
 * Waits for work; returns when the cell at the ring's head holds a
 * descriptor or the pool state changed. Spins first: a wake-up costs
 * microseconds, a spin nanoseconds. Not a non-zero count: a task that wrote
 * the ring can keep one up for ever with nothing to take, and the worker
 * would burn its core on dequeues that fail.
 */
static void idle(struct shp_pool *pool)
{
	struct shp__header *h = pool->hdr;
	int64_t until = shp__now_ns() + pool->spin_ns;
	uint32_t key;

	while (pool->spin_ns > 0) {
		for (int k = 0; k < 64; k++) {
			if (shp__ring_ready(pool->ring) ||
			    SHP_LOAD(h->state) != SHP_STATE_RUN)
				return;
			caa_cpu_relax();
		}
		if (shp__now_ns() >= until)
			break;
	}
	key = shp__ec_prepare(&h->work_ec); /* E1: pairs with N1 of the producer */
	SHP_FAULT(IDLE_SLEEPER);
	if (shp__ring_ready(pool->ring) || SHP_LOAD(h->state) != SHP_STATE_RUN)
		return;
	shp__ec_wait(&h->work_ec, key, shp__now_ns() + IDLE_TICK_NS);
	if (getppid() != pool->zygote)
		_exit(0);
}

void shp__worker_main(struct shp_pool *pool, unsigned idx)
{
	struct shp__worker *me = &pool->workers[idx];

	/* Die with the supervisor; it is single-threaded, so the thread
	 * that forked us is the process. Closing the race with its death
	 * before prctl: check the parent after. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != pool->zygote)
		_exit(0);
	pthread_sigmask(SIG_SETMASK, &pool->caller_mask, NULL);
	me->ntasks = 0;
	SHP_FAULT(WORKER_START);
	if (pool->initializer)
		pool->initializer(pool->initializer_arg);
	for (;;) {
		if (shp__ring_dequeue(pool->ring, &me->task, &me->claim)) {
			run_chunk(pool, me);
			SHP_FAULT(LOOP_RAN);
			shp__ring_release_claim(&me->claim);
			SHP_FAULT(LOOP_RELEASED);
			if (pool->max_tasks_per_worker &&
			    me->ntasks >= pool->max_tasks_per_worker)
				_exit(0);
			continue;
		}
		switch (SHP_LOAD(pool->hdr->state)) {
		case SHP_STATE_RUN:
			idle(pool);
			break;
		default:
			/* EXIT: the ring is empty, nothing more will come. */
			_exit(0);
		}
	}
}
