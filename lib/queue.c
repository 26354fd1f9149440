/*
 * shp_queue: a bounded MPMC queue of fixed-size elements in a MAP_SHARED
 * anonymous mapping, for any processes forked after it was created.
 *
 * The ring is the task ring's (ring.h): a sequence word per cell, free-
 * running 64-bit head and tail masked on access (D. Vyukov's bounded MPMC
 * queue). What differs is who repairs a death: a pool has a supervisor that
 * reaps its workers; a queue has only its participants, any of which may
 * die at any instant, and whoever finds the queue stuck on a dead one
 * repairs it.
 *
 * Cell state machine, cell at index i, position p (p & mask == i), size S:
 *   seq == p             EMPTY for p: the producer that wins tail p writes
 *   seq == p + 1         FULL: element of position p (or a SKIP: flags)
 *   seq == p + S         EMPTY for p + S, the next lap
 * producer: EMPTY(p) --[claim, CAS tail, write, R1]--> FULL(p)
 * consumer: FULL(p)  --[claim, CAS head, copy, R2]--> EMPTY(p + S)
 * repairer: EMPTY(p), tail past p, its winner dead --[SKIP, R1']--> FULL(p)
 *           FULL(p), head past p, its winner dead --[copy, R2']--> EMPTY(p+S)
 * A SKIP cell is a put that never happened: consumers release it and go
 * on. The bit CLOSED (63) of tail closes the queue: a tail CAS never
 * succeeds on a closed tail, so no put lands after a getter has seen the
 * queue closed and drained.
 *
 * Participant entries. Every thread that puts or gets owns one, found from
 * a thread-local cache; it holds the thread's claim, so that the owner of
 * every won-but-unfinished cell is discoverable.
 * owner word (owner.h; REPAIR is bit 63):
 *   0            free
 *   W            owned by a thread of process W: 0 -> W by that thread (CAS);
 *                W -> 0 by that thread, its claim idle, when it exits or
 *                destroys the queue
 *   W, W dead    W -> W' (CAS) by a registering thread of W', when the claim
 *                is idle; W -> REPAIR|W' (CAS) by a repairer W' otherwise
 *   REPAIR|W'    being repaired by W': -> 0 when every cell of the claim is
 *                resolved; back to the dead W when some is not yet (a
 *                getter with no room left takes the rest later); -> REPAIR|W''
 *                (CAS) when W' died repairing: repairs are idempotent
 * claim (kind, pos, n), written by the owner while it lives, then by its
 * repairer; pos and n before kind:
 *   (NONE)          holds nothing
 *   (PUT, t, k)     about to CAS tail t -> t + k, or won it and publishing
 *                   cells t .. t + k - 1 in order
 *   (GET, h, k)     about to CAS head h -> h + k, or won it and copying and
 *                   releasing cells h .. h + k - 1 in order
 * A claim is stored before the CAS that wins its cells (C1: the CAS is a
 * full barrier) and dropped after the last cell is finished (W1), so a cell
 * won but not finished is always covered by its winner's claim.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "shmpool.h"

#include "atomic.h"
#include "fault.h"
#include "futex.h"
#include "owner.h"

#define Q_MAGIC UINT64_C(0x7368705f71756575) /* "shp_queu" */
#define Q_PARTS 1024u
#define Q_CONST_BYTES 4096u
#define Q_MAX_ELEM ((size_t)1 << 20)
#define Q_MAX_CAP ((size_t)1 << 30)
#define Q_CLOSED (UINT64_C(1) << 63)
#define Q_REPAIR (UINT64_C(1) << 63)
#define Q_SKIP 1u
/* Before sleeping, a waiter spins Q_PAUSE_NS (the peer it waits for runs
 * on another CPU and is about to finish), then yields the CPU until
 * Q_SPIN_NS (the peer may need this CPU: more processes than CPUs are
 * runnable; with nobody else runnable a yield returns at once). */
#define Q_PAUSE_NS 2000
#define Q_SPIN_NS 50000
/* A sleeper wakes this often to look for a dead participant's cells. */
#define Q_SLICE_NS 20000000

enum { CLAIM_NONE, CLAIM_PUT, CLAIM_GET };

struct part {
	uint64_t owner;
	uint64_t kind;
	uint64_t pos;
	uint64_t n;
	char pad[SHP_CACHELINE - 32];
};
_Static_assert(sizeof(struct part) == SHP_CACHELINE, "one entry a line");

struct cell {
	uint64_t seq;
	uint32_t flags;
	uint32_t pad;
	unsigned char data[];
};

struct shp_queue {
	/* Geometry, alone on its own page, mapped read-only once set: a
	 * participant scribbling over the queue cannot send another's index
	 * outside it. */
	uint64_t magic;
	uint64_t id; /* tells apart queues mapped at the same address */
	uint64_t elem_size;
	uint64_t stride; /* bytes per cell */
	uint64_t size;   /* cells, a power of two */
	uint64_t mask;
	uint64_t cap;    /* elements; <= size */
	uint64_t bytes;  /* of the whole mapping */
	char pad0[Q_CONST_BYTES - 8 * sizeof(uint64_t)];
	/* Indices and the two eventcounts on lines of their own. */
	uint64_t tail SHP_ALIGNED;
	char pad1[2 * SHP_CACHELINE - 8];
	uint64_t head SHP_ALIGNED;
	char pad2[2 * SHP_CACHELINE - 8];
	uint32_t items_ec SHP_ALIGNED; /* getters sleep here */
	char pad3[SHP_CACHELINE - 4];
	uint32_t room_ec SHP_ALIGNED; /* putters sleep here */
	char pad4[SHP_CACHELINE - 4];
	struct part parts[Q_PARTS];
	/* cells follow */
};

static inline struct cell *cell_at(const struct shp_queue *q, uint64_t pos)
{
	return (struct cell *)((char *)(uintptr_t)q + sizeof(*q) +
	                       (pos & q->mask) * q->stride);
}

/* ------------------------------------------------------------ participants */

#define TLS_SLOTS 8

/* The entries this thread owns, by queue; self tells a fork's child, whose
 * copy of the cache names its parent's entries, to look again. Initial-exec:
 * a lookup per call must not cost a __tls_get_addr call; the 256 bytes fit
 * the static TLS surplus even when the library is dlopen()ed. */
static __thread __attribute__((tls_model("initial-exec"))) struct {
	const struct shp_queue *q;
	uint64_t id;
	uint64_t self;
	struct part *part;
} tls[TLS_SLOTS];

/*
 * An entry goes back when its thread exits (a key's destructor), so that a
 * process whose threads come and go does not use up the table. The thread
 * may outlive a queue another thread destroyed: the queues of this process
 * that are still mapped are listed here, under live_lock, which destroy
 * takes before it unmaps.
 */
struct live_queue {
	const struct shp_queue *q;
	uint64_t id;
	struct live_queue *next;
};

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct live_queue *live;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t exit_key;
static bool have_key;

static bool is_live(const struct shp_queue *q, uint64_t id)
{
	for (const struct live_queue *l = live; l; l = l->next)
		if (l->q == q && l->id == id)
			return true;
	return false;
}

static void thread_exit(void *unused)
{
	uint64_t self = shp__owner_self();

	(void)unused;
	pthread_mutex_lock(&live_lock);
	for (unsigned i = 0; i < TLS_SLOTS; i++) {
		if (!tls[i].q || tls[i].self != self ||
		    !is_live(tls[i].q, tls[i].id))
			continue;
		/* Between calls the claim is idle; a thread cancelled in
		 * a call keeps its entry, and its cells, to its process. */
		if (SHP_LOAD(tls[i].part->kind) == CLAIM_NONE)
			SHP_STORE(tls[i].part->owner, 0);
		tls[i].q = NULL;
	}
	pthread_mutex_unlock(&live_lock);
}

/* The list is whole in a fork's child: the fork waits for the lock. */
static void live_lock_fork(void)
{
	pthread_mutex_lock(&live_lock);
}

static void live_unlock_fork(void)
{
	pthread_mutex_unlock(&live_lock);
}

static void make_key(void)
{
	have_key = pthread_key_create(&exit_key, thread_exit) == 0;
	pthread_atfork(live_lock_fork, live_unlock_fork, live_unlock_fork);
}

/* No destructor of ours may run once the library is unloaded. */
__attribute__((destructor)) static void drop_key(void)
{
	if (have_key)
		pthread_key_delete(exit_key);
}

/* The slot evict() takes next when no slot is stale. */
static __thread __attribute__((tls_model("initial-exec"))) unsigned tls_victim;

/*
 * Frees a slot of a full cache, for a thread that uses more than TLS_SLOTS
 * queues in turn: a slot whose queue is gone, else the next in turn, whose
 * entry goes back (this thread is in no call on that queue, so its claim
 * is idle); its next call there takes one again.
 */
static unsigned evict(void)
{
	unsigned v = TLS_SLOTS;

	pthread_mutex_lock(&live_lock);
	for (unsigned i = 0; i < TLS_SLOTS && v == TLS_SLOTS; i++)
		if (!is_live(tls[i].q, tls[i].id))
			v = i;
	if (v == TLS_SLOTS) {
		v = tls_victim++ % TLS_SLOTS;
		if (SHP_LOAD(tls[v].part->kind) == CLAIM_NONE)
			SHP_STORE(tls[v].part->owner, 0);
	}
	tls[v].q = NULL;
	pthread_mutex_unlock(&live_lock);
	return v;
}

static struct part *take_entry(struct shp_queue *q, uint64_t self, bool dead)
{
	for (unsigned i = 0; i < Q_PARTS; i++) {
		struct part *e = &q->parts[i];
		uint64_t w = SHP_LOAD(e->owner);

		if (dead) {
			/* An entry of a dead process whose claim is idle. */
			if (!w || (w & Q_REPAIR) ||
			    SHP_LOAD(e->kind) != CLAIM_NONE ||
			    shp__owner_alive(w))
				continue;
		} else if (w) {
			continue;
		}
		if (uatomic_cmpxchg(&e->owner, w, self) == w)
			return e;
	}
	return NULL;
}

static int repair(struct shp_queue *q, unsigned char *out, uint64_t max);

/* This thread's entry in q: NULL when 1024 live threads hold them all. */
static struct part *participant(struct shp_queue *q)
{
	uint64_t self = shp__owner_self();
	unsigned free_slot = TLS_SLOTS;
	struct part *e;

	for (unsigned i = 0; i < TLS_SLOTS; i++) {
		if (tls[i].q == q && tls[i].id == q->id && tls[i].self == self)
			return tls[i].part;
		if (free_slot == TLS_SLOTS &&
		    (!tls[i].q || tls[i].self != self))
			free_slot = i;
	}
	if (!self)
		return NULL;
	if (free_slot == TLS_SLOTS)
		free_slot = evict();
	e = take_entry(q, self, false);
	if (!e) {
		/* Full: repairs free the entries of the dead that held
		 * cells; then take one of a dead process. */
		repair(q, NULL, 0);
		e = take_entry(q, self, false);
		if (!e)
			e = take_entry(q, self, true);
		if (!e)
			return NULL;
	}
	tls[free_slot].q = q;
	tls[free_slot].id = q->id;
	tls[free_slot].self = self;
	tls[free_slot].part = e;
	if (have_key && !pthread_getspecific(exit_key))
		pthread_setspecific(exit_key, &tls);
	return e;
}

static void set_claim(struct part *e, uint64_t kind, uint64_t pos, uint64_t n)
{
	SHP_STORE(e->pos, pos);
	SHP_STORE(e->n, n);
	/* pos and n before kind, for a scanner that reads kind first (its
	 * rmb). Pairs with the rmb in covered(). */
	cmm_smp_wmb();
	SHP_STORE(e->kind, kind);
}

static void drop_claim(struct part *e)
{
	/* W1: the cells finished before the claim goes, so a repairer that
	 * sees no claim sees them finished. Pairs with the full barrier after
	 * the scan in repair_put/repair_get. */
	cmm_smp_wmb();
	SHP_STORE(e->kind, CLAIM_NONE);
}

/* ------------------------------------------------------------ the ring */

/* Puts up to n elements as one run; returns how many (0: full, or a put in
 * progress blocks the way) or SHP_ECLOSED. */
static int try_put(struct shp_queue *q, struct part *e,
                   const unsigned char *elems, uint64_t n)
{
	uint64_t t = SHP_LOAD(q->tail);
	uint64_t k;

	for (;;) {
		if (t & Q_CLOSED) {
			SHP_STORE(e->kind, CLAIM_NONE);
			return SHP_ECLOSED;
		}
		/* The run of cells EMPTY for their position. Their seq loads
		 * are A1, pairing with R2: a cell seen released was read. */
		for (k = 0; k < n; k++) {
			uint64_t seq = SHP_LOAD(cell_at(q, t + k)->seq);
			int64_t dif = (int64_t)(seq - (t + k));

			if (dif != 0) {
				if (k == 0 && dif > 0)
					goto moved;
				break;
			}
		}
		if (k && q->cap < q->size) {
			/* Fewer elements than cells: the head bounds it. */
			uint64_t used = t - SHP_LOAD(q->head);

			k = used >= q->cap ? 0 : k < q->cap - used ? k : q->cap - used;
		}
		if (!k) {
			SHP_STORE(e->kind, CLAIM_NONE);
			return 0;
		}
		shp__smp_acquire(); /* A1: pairs with R2 */
		set_claim(e, CLAIM_PUT, t, k);
		SHP_FAULT(QPUT_CLAIMED);
		/* C1: the claim is visible before the cells are ours. */
		{
			uint64_t prev = uatomic_cmpxchg(&q->tail, t, t + k);

			if (prev == t)
				break;
			t = prev;
		}
		continue;
moved:
		/* A cell ahead of tail: a producer moved tail before writing
		 * it, so tail has moved. If it has not, the words were written
		 * over: no room, rather than a loop for ever. */
		cmm_smp_rmb();
		if (SHP_LOAD(q->tail) == t) {
			SHP_STORE(e->kind, CLAIM_NONE);
			return 0;
		}
		t = SHP_LOAD(q->tail);
	}
	SHP_FAULT(QPUT_WON);
	for (uint64_t i = 0; i < k; i++) {
		struct cell *c = cell_at(q, t + i);

		memcpy(c->data, elems + i * q->elem_size, q->elem_size);
		c->flags = 0;
		SHP_FAULT(QPUT_WRITTEN);
		/* R1: the element before the cell turns FULL. Pairs with
		 * A2 in try_get and repair_get. The last cell's store is an
		 * exchange, a full barrier: N1 as well, the cells FULL
		 * before the load of the sleepers' bit (pairs with E1). */
		shp__smp_release();
		if (i + 1 < k)
			SHP_STORE(c->seq, t + i + 1);
		else
			uatomic_xchg(&c->seq, t + i + 1);
	}
	SHP_FAULT(QPUT_PUBLISHED);
	drop_claim(e);
	shp__ec_notify(&q->items_ec);
	return (int)k;
}

/* Takes up to max elements as one run; returns how many were copied, which
 * is 0 when the queue is empty, a put in progress blocks the way, or the
 * run held only SKIP cells (*took then says cells were taken). */
static int try_get(struct shp_queue *q, struct part *e, unsigned char *out,
                   uint64_t max, bool *took)
{
	uint64_t h = SHP_LOAD(q->head);
	uint64_t k, got = 0;

	*took = false;
	for (;;) {
		for (k = 0; k < max; k++) {
			uint64_t seq = SHP_LOAD(cell_at(q, h + k)->seq);
			int64_t dif = (int64_t)(seq - (h + k + 1));

			if (dif != 0) {
				if (k == 0 && dif > 0)
					goto moved;
				break;
			}
		}
		if (!k) {
			SHP_STORE(e->kind, CLAIM_NONE);
			return 0;
		}
		set_claim(e, CLAIM_GET, h, k);
		SHP_FAULT(QGET_CLAIMED);
		/* C1: the claim is visible before the cells are ours. */
		{
			uint64_t prev = uatomic_cmpxchg(&q->head, h, h + k);

			if (prev == h)
				break;
			h = prev;
		}
		continue;
moved:
		/* As in try_put: a cell ahead of an unmoved head is a
		 * scribble; nothing to take. */
		cmm_smp_rmb();
		if (SHP_LOAD(q->head) == h) {
			SHP_STORE(e->kind, CLAIM_NONE);
			return 0;
		}
		h = SHP_LOAD(q->head);
	}
	SHP_FAULT(QGET_WON);
	/* A2: the FULL seqs were loaded before the elements are read. Pairs
	 * with R1. */
	shp__smp_acquire();
	for (uint64_t i = 0; i < k; i++) {
		struct cell *c = cell_at(q, h + i);

		if (!(c->flags & Q_SKIP))
			memcpy(out + got++ * q->elem_size, c->data,
			       q->elem_size);
		SHP_FAULT(QGET_COPIED);
		/* R2: the element read before the cell turns EMPTY for the
		 * next lap. Pairs with A1 in try_put. The last, an exchange,
		 * is N1 too, as in try_put. */
		shp__smp_release();
		if (i + 1 < k)
			SHP_STORE(c->seq, h + i + q->size);
		else
			uatomic_xchg(&c->seq, h + i + q->size);
	}
	SHP_FAULT(QGET_RELEASED);
	drop_claim(e);
	*took = true;
	shp__ec_notify(&q->room_ec);
	return (int)got;
}

/* ------------------------------------------------------------ repairs */

/* Whether a live participant other than x has a claim of kind on pos. */
static bool covered(struct shp_queue *q, const struct part *x, uint64_t kind,
                    uint64_t pos)
{
	for (unsigned i = 0; i < Q_PARTS; i++) {
		struct part *e = &q->parts[i];
		uint64_t p, n;

		if (e == x || SHP_LOAD(e->kind) != kind)
			continue;
		cmm_smp_rmb(); /* kind before pos, n: pairs with set_claim */
		p = SHP_LOAD(e->pos);
		n = SHP_LOAD(e->n);
		if (pos - p < n &&
		    shp__owner_alive(SHP_LOAD(e->owner) & ~Q_REPAIR))
			return true;
	}
	return false;
}

/* Whether cell pos is won and unfinished: tail (head) past it, cell still
 * EMPTY (FULL) for it. */
static bool held(const struct shp_queue *q, uint64_t kind, uint64_t pos)
{
	uint64_t seq = SHP_LOAD(cell_at(q, pos)->seq);

	if (kind == CLAIM_PUT)
		return seq == pos && (SHP_LOAD(q->tail) & ~Q_CLOSED) > pos;
	return seq == pos + 1 && SHP_LOAD(q->head) > pos;
}

/* The winner of an EMPTY cell died before publishing: the put never
 * happened. Returns whether the cell is resolved. */
static bool repair_put(struct shp_queue *q, struct part *x, uint64_t pos)
{
	struct cell *c = cell_at(q, pos);

	if (!held(q, CLAIM_PUT, pos))
		return true;
	/* tail before the claims: the winner's claim preceded its CAS (C1),
	 * so having seen tail past pos we see it. */
	cmm_smp_rmb();
	if (covered(q, x, CLAIM_PUT, pos))
		return false;
	/* Reload after the scan: a live winner may have published and
	 * dropped its claim meanwhile. Pairs with W1. */
	cmm_smp_mb();
	if (SHP_LOAD(c->seq) != pos)
		return true;
	c->flags = Q_SKIP;
	/* R1': as R1, pairs with A2. */
	shp__smp_release();
	SHP_STORE(c->seq, pos + 1);
	cmm_smp_mb(); /* N1 */
	shp__ec_notify(&q->items_ec);
	return true;
}

/* The winner of a FULL cell died before releasing it: its get never
 * returned, so the element goes to this getter (*got counts it). Returns
 * whether the cell is resolved. */
static bool repair_get(struct shp_queue *q, struct part *x, uint64_t pos,
                       unsigned char *out, uint64_t max, uint64_t *got)
{
	struct cell *c = cell_at(q, pos);

	if (!held(q, CLAIM_GET, pos))
		return true;
	if (*got >= max)
		return false;
	cmm_smp_rmb(); /* head before the claims: as in repair_put */
	if (covered(q, x, CLAIM_GET, pos))
		return false;
	cmm_smp_mb(); /* pairs with W1, as in repair_put */
	if (SHP_LOAD(c->seq) != pos + 1)
		return true;
	shp__smp_acquire(); /* A2': as A2, pairs with R1 */
	if (!(c->flags & Q_SKIP))
		memcpy(out + (*got)++ * q->elem_size, c->data, q->elem_size);
	shp__smp_release(); /* R2': as R2, pairs with A1 */
	SHP_STORE(c->seq, pos + q->size);
	cmm_smp_mb(); /* N1 */
	shp__ec_notify(&q->room_ec);
	return true;
}

/*
 * Finds the claims of dead participants that hold cells and resolves
 * them: unpublished puts become SKIP cells; elements whose getter died are
 * copied into out (up to max; none when out is NULL). Returns how many
 * elements it copied. Any participant may call it at any time.
 */
static int repair(struct shp_queue *q, unsigned char *out, uint64_t max)
{
	uint64_t self = shp__owner_self();
	uint64_t got = 0;

	for (unsigned i = 0; i < Q_PARTS; i++) {
		struct part *e = &q->parts[i];
		uint64_t w = SHP_LOAD(e->owner);
		uint64_t kind, pos, n;
		bool done = true, stuck = false;

		if (!w || w == self || (kind = SHP_LOAD(e->kind)) == CLAIM_NONE)
			continue;
		if (kind == CLAIM_GET && !out)
			continue;
		cmm_smp_rmb(); /* pairs with set_claim */
		pos = SHP_LOAD(e->pos);
		n = SHP_LOAD(e->n);
		if (n > q->size)
			continue; /* no claim spans more than the ring */
		for (uint64_t k = 0; k < n && !stuck; k++)
			stuck = held(q, kind, pos + k);
		if (!stuck || shp__owner_alive(w & ~Q_REPAIR))
			continue;
		if (uatomic_cmpxchg(&e->owner, w, Q_REPAIR | self) != w)
			continue; /* another repairer, or a registration */
		/* Owning the entry, read its claim again: the scan's copy
		 * may predate another repairer's progress. */
		cmm_smp_mb();
		kind = SHP_LOAD(e->kind);
		pos = SHP_LOAD(e->pos);
		n = SHP_LOAD(e->n);
		if (n > q->size)
			n = 0; /* impossible: a scribble; drop it */
		for (uint64_t k = 0; k < n && kind != CLAIM_NONE; k++) {
			if (kind == CLAIM_PUT)
				done &= repair_put(q, e, pos + k);
			else
				done &= repair_get(q, e, pos + k, out, max, &got);
		}
		if (done) {
			SHP_STORE(e->kind, CLAIM_NONE);
			/* The claim gone before the entry is free. */
			cmm_smp_wmb();
			SHP_STORE(e->owner, 0);
		} else {
			SHP_STORE(e->owner, w & ~Q_REPAIR);
		}
	}
	return (int)got;
}

/* ------------------------------------------------------------ waiting */

struct waiter {
	int64_t deadline; /* the timeout until the first await, then the
	                   * deadline; -1: none */
	int64_t pause_until;
	int64_t spin_until;
	int64_t next_repair;
	bool started;
};

/* Spins, then sleeps on ec until something changes, the deadline passes
 * (-ETIMEDOUT) or a slice ends (1: time to look for the dead). ready()
 * re-checks the condition after the sleep is announced. */
static int await(struct waiter *w, uint32_t *ec,
                 bool (*ready)(const struct shp_queue *), const struct shp_queue *q)
{
	int64_t now;
	uint32_t key;
	int64_t until;

	if (!w->started) {
		w->started = true;
		w->deadline = shp__deadline_ns(w->deadline);
		now = shp__now_ns();
		w->pause_until = now + Q_PAUSE_NS;
		w->spin_until = now + Q_SPIN_NS;
		w->next_repair = now + Q_SLICE_NS;
	} else {
		now = shp__now_ns();
	}
	if (w->deadline >= 0 && now >= w->deadline)
		return -ETIMEDOUT;
	if (now >= w->next_repair) {
		w->next_repair = now + Q_SLICE_NS;
		return 1;
	}
	if (now < w->pause_until) {
		caa_cpu_relax();
		return 0;
	}
	if (now < w->spin_until) {
		sched_yield();
		return 0;
	}
	key = shp__ec_prepare(ec); /* E1: pairs with N1 */
	if (ready(q))
		return 0;
	until = w->next_repair;
	if (w->deadline >= 0 && w->deadline < until)
		until = w->deadline;
	shp__ec_wait(ec, key, until);
	return 0;
}

/* Whether the queue is closed and every element put was taken. */
static bool drained(const struct shp_queue *q)
{
	uint64_t t = SHP_LOAD(q->tail);

	/* tail before head: a get that took the last element moved head
	 * after the put moved tail. */
	cmm_smp_rmb();
	return (t & Q_CLOSED) && (t & ~Q_CLOSED) <= SHP_LOAD(q->head);
}

static bool room_or_closed(const struct shp_queue *q)
{
	uint64_t t = SHP_LOAD(q->tail);

	if (t & Q_CLOSED)
		return true;
	return SHP_LOAD(cell_at(q, t)->seq) == t &&
	       t - SHP_LOAD(q->head) < q->cap;
}

static bool items_or_drained(const struct shp_queue *q)
{
	uint64_t h = SHP_LOAD(q->head);

	return SHP_LOAD(cell_at(q, h)->seq) == h + 1 || drained(q);
}

/*
 * The never-waiting forms look for the dead too, but at most once a slice
 * per process: a loop of failed polls must not scan the table each time,
 * nor miss forever an element a dead getter held.
 */
static bool poll_repair_due(void)
{
	static int64_t next;
	int64_t now = shp__now_ns();
	int64_t due = SHP_LOAD(next);

	return now >= due &&
	       uatomic_cmpxchg(&next, due, now + Q_SLICE_NS) == due;
}

/* ------------------------------------------------------------ public */

static uint64_t next_id;

int shp_queue_create(shp_queue **qp, size_t elem_size, size_t capacity)
{
	struct live_queue *l;
	struct shp_queue *q;
	uint64_t size, stride;
	size_t bytes;
	void *m;

	if (!qp)
		return -EINVAL;
	*qp = NULL;
	if (!elem_size || elem_size > Q_MAX_ELEM || !capacity ||
	    capacity > Q_MAX_CAP)
		return -EINVAL;
	if (!shp__owner_self())
		return -ENOSYS;
	/* At least 2 cells: with one, FULL(p) == EMPTY(p + 1). */
	size = 2;
	while (size < capacity)
		size <<= 1;
	stride = (sizeof(struct cell) + elem_size + 7) & ~(uint64_t)7;
	bytes = sizeof(*q) + (size_t)(size * stride);
	pthread_once(&key_once, make_key);
	l = malloc(sizeof(*l));
	if (!l)
		return -ENOMEM;
	m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
	         MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (m == MAP_FAILED) {
		free(l);
		return -ENOMEM;
	}
	q = m;
	q->magic = Q_MAGIC;
	q->id = uatomic_add_return(&next_id, 1);
	q->elem_size = elem_size;
	q->stride = stride;
	q->size = size;
	q->mask = size - 1;
	q->cap = capacity;
	q->bytes = bytes;
	for (uint64_t i = 0; i < size; i++)
		cell_at(q, i)->seq = i;
	if (mprotect(q, Q_CONST_BYTES, PROT_READ)) {
		munmap(m, bytes);
		free(l);
		return -ENOMEM;
	}
	l->q = q;
	l->id = q->id;
	pthread_mutex_lock(&live_lock);
	l->next = live;
	live = l;
	pthread_mutex_unlock(&live_lock);
	*qp = q;
	return 0;
}

void shp_queue_destroy(shp_queue *q)
{
	uint64_t self = shp__owner_self();

	if (!q)
		return;
	pthread_mutex_lock(&live_lock);
	for (struct live_queue **l = &live; *l; l = &(*l)->next) {
		if ((*l)->q == q && (*l)->id == q->id) {
			struct live_queue *gone = *l;

			*l = gone->next;
			free(gone);
			break;
		}
	}
	pthread_mutex_unlock(&live_lock);
	for (unsigned i = 0; i < TLS_SLOTS; i++) {
		if (tls[i].q != q)
			continue;
		/* This thread's entry goes back to the others, who may use
		 * the queue on: its claim is idle between calls. */
		if (tls[i].id == q->id && tls[i].self == self)
			SHP_STORE(tls[i].part->owner, 0);
		tls[i].q = NULL;
	}
	munmap(q, q->bytes);
}

int shp_queue_close(shp_queue *q)
{
	if (!q)
		return -EINVAL;
	/* A full barrier (atomic or), so also N1 for both eventcounts: wake
	 * every getter for the end marker, every putter for SHP_ECLOSED. */
	uatomic_or(&q->tail, Q_CLOSED);
	cmm_smp_mb();
	shp__ec_notify(&q->items_ec);
	shp__ec_notify(&q->room_ec);
	return 0;
}

int64_t shp_queue_count(const shp_queue *q)
{
	uint64_t h, t;

	if (!q)
		return -EINVAL;
	h = SHP_LOAD(q->head);
	t = SHP_LOAD(q->tail) & ~Q_CLOSED;
	return t <= h ? 0 : t - h > q->cap ? (int64_t)q->cap : (int64_t)(t - h);
}

static int put(shp_queue *q, const void *elems, size_t n, int64_t timeout_ns,
               bool poll)
{
	const unsigned char *src = elems;
	struct waiter w = { .deadline = timeout_ns };
	struct part *e;
	uint64_t done = 0;

	if (!q || !elems || !n || n > INT_MAX)
		return -EINVAL;
	e = participant(q);
	if (!e)
		return -EUSERS;
	for (;;) {
		int r = try_put(q, e, src + done * q->elem_size, n - done);

		if (r < 0)
			return done ? (int)done : r;
		done += (uint64_t)r;
		if (done == n)
			return (int)n;
		if (r)
			continue;
		if (poll) {
			if (poll_repair_due())
				repair(q, NULL, 0);
			return done ? (int)done : -EAGAIN;
		}
		r = await(&w, &q->room_ec, room_or_closed, q);
		if (r == -ETIMEDOUT)
			return done ? (int)done : r;
		if (r == 1)
			repair(q, NULL, 0);
	}
}

static int get(shp_queue *q, void *elems, size_t max, int64_t timeout_ns,
               bool poll)
{
	struct waiter w = { .deadline = timeout_ns };
	struct part *e;

	if (!q || !elems || !max || max > INT_MAX)
		return -EINVAL;
	e = participant(q);
	if (!e)
		return -EUSERS;
	for (;;) {
		bool took;
		int r = try_get(q, e, elems, max, &took);

		if (r > 0)
			return r;
		if (took)
			continue; /* only SKIP cells */
		if (drained(q)) {
			/* A getter that died holding an element: it is ours.
			 * Otherwise the end. */
			return repair(q, elems, max);
		}
		if (poll) {
			if (poll_repair_due() && (r = repair(q, elems, max)) > 0)
				return r;
			return -EAGAIN;
		}
		r = await(&w, &q->items_ec, items_or_drained, q);
		if (r == -ETIMEDOUT)
			return r;
		if (r == 1 && (r = repair(q, elems, max)) > 0)
			return r;
	}
}

int shp_queue_put(shp_queue *q, const void *elem, int64_t timeout_ns)
{
	int r = put(q, elem, 1, timeout_ns, false);

	return r == 1 ? 0 : r;
}

int shp_queue_tryput(shp_queue *q, const void *elem)
{
	int r = put(q, elem, 1, 0, true);

	return r == 1 ? 0 : r;
}

int shp_queue_put_bulk(shp_queue *q, const void *elems, size_t n,
                       int64_t timeout_ns)
{
	return put(q, elems, n, timeout_ns, false);
}

int shp_queue_get(shp_queue *q, void *elem, int64_t timeout_ns)
{
	return get(q, elem, 1, timeout_ns, false);
}

int shp_queue_tryget(shp_queue *q, void *elem)
{
	return get(q, elem, 1, 0, true);
}

int shp_queue_get_bulk(shp_queue *q, void *elems, size_t max,
                       int64_t timeout_ns)
{
	return get(q, elems, max, timeout_ns, false);
}
