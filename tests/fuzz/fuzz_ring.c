/*
 * The task ring (lib/ring.h) in one process against a FIFO model: random
 * sequences of burst enqueues, dequeues, claim releases, counts and
 * repairs of consumers that "died" part-way through a dequeue. Every
 * dequeued descriptor must be the model's front, every count the model's,
 * and the ring full or empty exactly when the model is.
 *
 * A death is simulated by taking the first steps of shp__ring_dequeue by
 * hand, in its order (claim, CAS on head, copy, held, release), and
 * stopping there; shp__ring_repair must then hand over the descriptor iff
 * the dead consumer had won it, and leave the cell released.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ring.h"

#define MAX_CELLS 64u
#define NCLAIMS 4u

/* The descriptor that carries sequence number x: every field depends on
 * it, so a torn or misplaced copy shows. */
static struct shp__task task_of(uint64_t x)
{
	return (struct shp__task){
		.call = (uint32_t)(x * 2654435761u),
		.gen = (uint32_t)(x >> 32) ^ 0x5eedu,
		.begin = x,
		.end = x * 3 + 1,
	};
}

static bool same(const struct shp__task *a, const struct shp__task *b)
{
	return a->call == b->call && a->gen == b->gen && a->begin == b->begin &&
	       a->end == b->end;
}

struct model {
	uint64_t q[MAX_CELLS];
	unsigned head, len, size;
	uint64_t next; /* sequence number of the next descriptor made */
};

static uint64_t model_pop(struct model *m)
{
	uint64_t x = m->q[m->head];

	m->head = (m->head + 1) % m->size;
	m->len--;
	return x;
}

static void check_claim(const struct shp__claim *cl, uint64_t pos,
                        uint64_t held, const char *when)
{
	FUZZ_CHECK(cl->pos == pos && cl->held == held,
	           "%s: claim (%#llx, %llu), want (%#llx, %llu)", when,
	           (unsigned long long)cl->pos, (unsigned long long)cl->held,
	           (unsigned long long)pos, (unsigned long long)held);
}

static void enqueue(struct shp__ring *r, struct model *m, unsigned k)
{
	struct shp__task t[MAX_CELLS + 2];
	unsigned want = m->size - m->len < k ? m->size - m->len : k, got;

	for (unsigned i = 0; i < k; i++)
		t[i] = task_of(m->next + i);
	got = shp__ring_enqueue_burst(r, t, k);
	FUZZ_CHECK(got == want, "enqueue of %u with %u/%u queued: %u", k,
	           m->len, m->size, got);
	for (unsigned i = 0; i < got; i++)
		m->q[(m->head + m->len + i) % m->size] = m->next + i;
	m->len += got;
	m->next += got;
}

static void dequeue(struct shp__ring *r, struct model *m,
                    struct shp__claim *cl, struct shp__task *t)
{
	bool ok = shp__ring_dequeue(r, t, cl);

	FUZZ_CHECK(ok == (m->len > 0), "dequeue %s with %u queued",
	           ok ? "succeeded" : "failed", m->len);
	if (ok) {
		struct shp__task want = task_of(model_pop(m));

		FUZZ_CHECK(same(t, &want), "dequeued begin %llu, want %llu",
		           (unsigned long long)t->begin,
		           (unsigned long long)want.begin);
	}
	if (cl)
		check_claim(cl, SHP_CLAIM_NONE, ok, "after dequeue");
}

/*
 * A consumer that dies after step 1 (claim stored), 2 (head won), 3
 * (descriptor copied, held set) or 4 (cell released): the dequeue's own
 * stores, in its order, up to there. A live claim on the same position
 * (busy) makes a repair of step 2 wait. Returns whether the dead one had
 * won a descriptor.
 */
static bool die_in_dequeue(struct shp__ring *r, struct model *m,
                           struct shp__claim *cl, struct shp__task *t,
                           unsigned step, bool busy)
{
	uint64_t pos = r->head;
	struct shp__cell *c = &r->cells[pos & r->mask];
	struct shp__claim other = { .pos = pos, .held = 0 };
	struct shp__claim *live[1] = { &other };
	enum shp__repair rep;
	bool won = step >= 2;

	if (m->len == 0)
		return false; /* a dequeue of an empty ring stores nothing */
	cl->pos = pos;
	if (step >= 2)
		r->head = pos + 1;
	if (step >= 3) {
		*t = c->task;
		cl->held = 1;
	}
	if (step >= 4)
		c->seq = pos + r->size;

	rep = shp__ring_repair(r, cl, t, live, busy && step == 2 ? 1 : 0);
	if (busy && step == 2) {
		/* Ownership is ambiguous while the live claim names pos. */
		FUZZ_CHECK(rep == SHP_REPAIR_BUSY, "repair at step 2 with a "
		           "live claim on the cell: %d", (int)rep);
		check_claim(cl, pos, 0, "busy repair");
		rep = shp__ring_repair(r, cl, t, live, 0);
	}
	FUZZ_CHECK(rep == (won ? SHP_REPAIR_TAKEN : SHP_REPAIR_NONE),
	           "repair after step %u: %d", step, (int)rep);
	check_claim(cl, SHP_CLAIM_NONE, won, "after repair");
	FUZZ_CHECK(c->seq == (won ? pos + r->size : pos + 1),
	           "cell seq %llu after repair at step %u (pos %llu)",
	           (unsigned long long)c->seq, step, (unsigned long long)pos);
	if (won) {
		struct shp__task want = task_of(model_pop(m));

		FUZZ_CHECK(same(t, &want), "repair gave begin %llu, want %llu",
		           (unsigned long long)t->begin,
		           (unsigned long long)want.begin);
	}
	return won;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	unsigned ncells = 2u << fuzz_below(&in, 6); /* 2 .. 64 */
	struct shp__ring *r = aligned_alloc(SHP_CACHELINE, shp__ring_bytes(ncells));
	struct shp__claim claims[NCLAIMS];
	struct shp__task owned[NCLAIMS];
	struct model m = { .size = ncells };

	FUZZ_CHECK(r, "out of memory");
	memset(r, 0, shp__ring_bytes(ncells));
	shp__ring_init(r, ncells);
	for (unsigned i = 0; i < NCLAIMS; i++)
		claims[i] = (struct shp__claim){ .pos = SHP_CLAIM_NONE };

	while (!fuzz_done(&in)) {
		uint8_t op = fuzz_u8(&in);
		unsigned who = (op >> 4) % NCLAIMS;
		struct shp__claim *cl = &claims[who];

		switch (op % 5) {
		case 0: /* a burst of 0 .. size + 2 */
			enqueue(r, &m, fuzz_below(&in, ncells + 3));
			break;
		case 1: /* dequeue into an idle claim, or without one */
			if (op & 8) {
				struct shp__task t;

				dequeue(r, &m, NULL, &t);
			} else if (!cl->held) {
				dequeue(r, &m, cl, &owned[who]);
			}
			break;
		case 2:
			if (cl->held) {
				shp__ring_release_claim(cl);
				check_claim(cl, SHP_CLAIM_NONE, 0, "after release");
			}
			break;
		case 3:
			FUZZ_CHECK(shp__ring_count(r) == m.len,
			           "count %llu, model %u",
			           (unsigned long long)shp__ring_count(r), m.len);
			break;
		case 4: /* a consumer dies inside a dequeue, is repaired */
			if (!cl->held &&
			    die_in_dequeue(r, &m, cl, &owned[who],
			                   1 + fuzz_below(&in, 4), op & 8))
				shp__ring_release_claim(cl);
			break;
		}
	}
	/* Whatever the sequence, the ring drains to exactly the model. */
	FUZZ_CHECK(shp__ring_count(r) == m.len, "final count %llu, model %u",
	           (unsigned long long)shp__ring_count(r), m.len);
	while (m.len) {
		struct shp__task t;

		dequeue(r, &m, NULL, &t);
	}
	{
		struct shp__task t;

		dequeue(r, &m, NULL, &t);
	}
	free(r);
	return 0;
}
