#include <errno.h>
#include <sys/mman.h>

#include "ring.h"

#include "fault.h"

void shp__ring_init(struct shp__ring *r, uint32_t size)
{
	r->size = size;
	r->mask = size - 1;
	r->head = 0;
	r->tail = 0;
	for (uint32_t i = 0; i < size; i++)
		r->cells[i].seq = i;
}

unsigned shp__ring_enqueue_burst(struct shp__ring *r,
                                 const struct shp__task *t, unsigned n)
{
	uint64_t pos = SHP_LOAD(r->tail);
	unsigned k;

	for (;;) {
		/* Count the run of cells from pos that are EMPTY for their
		 * position. Their seq loads are A1, pairing with R2: a cell we
		 * see released has been read by its consumer. */
		for (k = 0; k < n; k++) {
			uint64_t seq = SHP_LOAD(r->cells[(pos + k) & r->mask].seq);
			int64_t dif = (int64_t)(seq - (pos + k));

			if (dif != 0) {
				if (k == 0 && dif > 0)
					goto moved; /* tail moved under us */
				break;
			}
		}
		if (k == 0)
			return 0; /* full: the cell at tail is a lap behind */
		shp__smp_acquire(); /* A1: pairs with R2 */
		{
			uint64_t prev = uatomic_cmpxchg(&r->tail, pos, pos + k);

			if (prev == pos)
				break;
			pos = prev;
			continue;
		}
moved:
		/* The producer that won pos moved tail past it (its CAS, a
		 * full barrier) before it published the cell (R1), and a
		 * consumer released the cell after that: so tail has moved,
		 * unless a task wrote the cell or tail. Following those would
		 * spin for ever: no room, then. */
		cmm_smp_rmb(); /* A6: seq before tail; pairs with that CAS */
		{
			uint64_t now = SHP_LOAD(r->tail);

			if ((int64_t)(now - pos) <= 0)
				return 0;
			pos = now;
		}
	}
	for (unsigned i = 0; i < k; i++) {
		struct shp__cell *c = &r->cells[(pos + i) & r->mask];

		c->task = t[i];
		/* R1: the descriptor (and whatever the producer wrote before
		 * it, task inputs included) before the cell turns FULL.
		 * Pairs with A2 in shp__ring_dequeue. */
		shp__smp_release();
		SHP_STORE(c->seq, pos + i + 1);
	}
	return k;
}

/*
 * A dequeue that takes nothing. Drops a claim left by a CAS we lost: kept,
 * it would name the winner's cell while we sleep, and if the winner died
 * holding it, shp__ring_repair() would answer BUSY until we next dequeue,
 * which may be never (the dead one's chunk was the last work: the call
 * hangs). No barrier: under that claim we own nothing, so a repairer is
 * right whichever value it reads.
 */
static inline bool take_nothing(struct shp__claim *cl)
{
	if (cl && SHP_LOAD(cl->pos) != SHP_CLAIM_NONE)
		SHP_STORE(cl->pos, SHP_CLAIM_NONE);
	return false;
}

bool shp__ring_dequeue(struct shp__ring *r, struct shp__task *t,
                       struct shp__claim *cl)
{
	uint64_t pos = SHP_LOAD(r->head);
	struct shp__cell *c;

	for (;;) {
		uint64_t seq, prev;
		int64_t dif;

		c = &r->cells[pos & r->mask];
		seq = SHP_LOAD(c->seq);
		dif = (int64_t)(seq - (pos + 1));
		if (dif < 0)
			return take_nothing(cl); /* its producer is not done */
		if (dif > 0) {
			/* Another consumer took the cell: it moved head past
			 * pos (C1) before it released the cell (R2), so head
			 * has moved, unless a task wrote the cell or head.
			 * Nothing to take, then, rather than spin. */
			cmm_smp_rmb(); /* A7: seq before head; pairs with C1 */
			prev = SHP_LOAD(r->head);
			if ((int64_t)(prev - pos) <= 0)
				return take_nothing(cl);
			pos = prev;
			continue;
		}
		if (cl) {
			SHP_STORE(cl->pos, pos);
			SHP_FAULT(DEQ_CLAIMED);
		}
		/* The CAS is a full barrier: the claim is visible before the
		 * cell is ours, as shp__ring_repair() relies on (C1). */
		prev = uatomic_cmpxchg(&r->head, pos, pos + 1);
		if (prev == pos)
			break;
		pos = prev;
	}
	SHP_FAULT(DEQ_WON);
	/* A2: the FULL seq was loaded before the descriptor is read. Pairs
	 * with R1. */
	shp__smp_acquire();
	*t = c->task;
	SHP_FAULT(DEQ_COPIED);
	if (cl) {
		/* W0: the copy before held, so a repairer that sees held
		 * finds a whole descriptor in *t. Pairs with the reaping of
		 * this process (waitpid), after which all its stores are
		 * visible; the barrier keeps their order. */
		cmm_smp_wmb();
		SHP_STORE(cl->held, 1);
		SHP_FAULT(DEQ_HELD);
	}
	/* R2: the descriptor is read (and held is set) before the cell turns
	 * EMPTY for the next lap. Pairs with A1 in shp__ring_enqueue_burst. */
	shp__smp_release();
	SHP_STORE(c->seq, pos + r->size);
	SHP_FAULT(DEQ_RELEASED);
	if (cl) {
		/* W1: the release before the claim is dropped, so a repair
		 * that sees no claim then sees the cell EMPTY. Pairs with the
		 * full barrier after the scan in shp__ring_repair. */
		cmm_smp_wmb();
		SHP_STORE(cl->pos, SHP_CLAIM_NONE);
		SHP_FAULT(DEQ_UNCLAIMED);
	}
	return true;
}

int shp__ring_seal(struct shp__ring *r)
{
	return mprotect(r, SHP_RING_CONST_BYTES, PROT_READ) ? -errno : 0;
}

uint64_t shp__ring_count(const struct shp__ring *r)
{
	uint64_t head = SHP_LOAD(r->head);
	uint64_t tail = SHP_LOAD(r->tail);

	return tail > head ? tail - head : 0;
}

/* Whether the cell for position pos is FULL: holds pos's descriptor. */
static inline bool full_at(const struct shp__ring *r, uint64_t pos)
{
	return SHP_LOAD(r->cells[pos & r->mask].seq) == pos + 1;
}

bool shp__ring_ready(const struct shp__ring *r)
{
	return full_at(r, SHP_LOAD(r->head));
}

void shp__ring_snapshot(const struct shp__ring *r, struct shp__ring_snap *s)
{
	uint64_t before = SHP_LOAD(r->tail);

	/* A consumer moves head past p only once it saw cell p FULL, which
	 * the producer published (R1) after its CAS moved tail past p; a
	 * producer moves tail past p only once it saw cell p released for
	 * that lap, which the consumer of p - size did (R2) after C1 moved
	 * head past p - size. So a head read between two reads of tail is
	 * at most the second and at least the first less a lap, whatever
	 * runs meanwhile. */
	cmm_smp_rmb(); /* A8: tail before head; pairs with C1 */
	s->head = SHP_LOAD(r->head);
	s->ready = full_at(r, s->head);
	cmm_smp_rmb(); /* A8': head before tail; pairs with the CAS on tail */
	s->tail = SHP_LOAD(r->tail);
	/* Unsigned: indices never wrap (ring.h), so one near 2^64 is
	 * garbage too. */
	s->sane = s->head <= s->tail && before <= s->head + r->size;
}

static void release_cell(struct shp__ring *r, struct shp__cell *c,
                         uint64_t pos)
{
	shp__smp_release(); /* R2': as R2, pairs with A1 */
	SHP_STORE(c->seq, pos + r->size);
}

enum shp__repair shp__ring_repair(struct shp__ring *r, struct shp__claim *cl,
                                  struct shp__task *t,
                                  struct shp__claim *const *live,
                                  unsigned nlive)
{
	uint64_t pos = SHP_LOAD(cl->pos);
	bool held = SHP_LOAD(cl->held) != 0;
	struct shp__cell *c;
	enum shp__repair ret = held ? SHP_REPAIR_TAKEN : SHP_REPAIR_NONE;

	if (pos == SHP_CLAIM_NONE)
		goto out;
	c = &r->cells[pos & r->mask];
	if (held) {
		/* (i, 1): the copy is in *t; the cell may still be FULL. */
		if (SHP_LOAD(c->seq) == pos + 1)
			release_cell(r, c, pos);
		goto out;
	}
	/* (i, 0). The dead consumer saw seq == pos + 1 before claiming. If
	 * the cell is no longer FULL for pos, whoever took it released it; if
	 * head has not passed pos, nobody took it. Either way it held
	 * nothing. */
	if (SHP_LOAD(c->seq) != pos + 1 || SHP_LOAD(r->head) <= pos)
		goto out;
	/* head before the claims: an owner's claim store precedes its CAS on
	 * head (C1, a full barrier), so having seen head past pos we see its
	 * claim. */
	cmm_smp_rmb();
	for (unsigned i = 0; i < nlive; i++)
		if (SHP_LOAD(live[i]->pos) == pos)
			return SHP_REPAIR_BUSY;
	/* Reload after the scan: the owner may have been a live consumer that
	 * released the cell and dropped its claim while we looked. Pairs with
	 * W1. */
	cmm_smp_mb();
	if (SHP_LOAD(c->seq) != pos + 1)
		goto out;
	shp__smp_acquire(); /* A2': as A2, pairs with R1 */
	*t = c->task;
	release_cell(r, c, pos);
	ret = SHP_REPAIR_TAKEN;
out:
	SHP_STORE(cl->pos, SHP_CLAIM_NONE);
	SHP_STORE(cl->held, ret == SHP_REPAIR_TAKEN);
	return ret;
}
