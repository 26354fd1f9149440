#include <criterion/criterion.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>

#include "ring.h"
#include "ring_torture.h"
#include "util.h"

static struct shp__ring *ring_new(uint32_t size)
{
	struct shp__ring *r = aligned_alloc(64, shp__ring_bytes(size));

	cr_assert_not_null(r);
	shp__ring_init(r, size);
	return r;
}

static struct shp__task task(uint64_t v)
{
	return (struct shp__task){ .call = (uint32_t)(v % 7), .gen = 3,
	                           .begin = v, .end = v * 2 + 1 };
}

static void expect_task(const struct shp__task *t, uint64_t v)
{
	cr_expect_eq(t->begin, v);
	cr_expect_eq(t->end, v * 2 + 1);
	cr_expect_eq(t->call, (uint32_t)(v % 7));
	cr_expect_eq(t->gen, 3);
}

Test(ring, empty_dequeue_returns_false, .timeout = 10)
{
	struct shp__ring *r = ring_new(8);
	struct shp__task t;

	cr_expect_not(shp__ring_dequeue(r, &t, NULL));
	cr_expect_eq(shp__ring_count(r), 0);
	free(r);
}

Test(ring, full_push_returns_zero, .timeout = 10)
{
	struct shp__ring *r = ring_new(8);
	struct shp__task t = task(1);

	for (int i = 0; i < 8; i++)
		cr_assert_eq(shp__ring_enqueue_burst(r, &t, 1), 1);
	cr_expect_eq(shp__ring_enqueue_burst(r, &t, 1), 0);
	cr_expect_eq(shp__ring_count(r), 8);
	free(r);
}

Test(ring, burst_is_partial_when_nearly_full, .timeout = 10)
{
	struct shp__ring *r = ring_new(8);
	struct shp__task in[6], out;

	for (int i = 0; i < 6; i++)
		in[i] = task((uint64_t)i);
	cr_assert_eq(shp__ring_enqueue_burst(r, in, 5), 5);
	cr_expect_eq(shp__ring_enqueue_burst(r, in, 6), 3);
	for (uint64_t i = 0; i < 5; i++) {
		cr_assert(shp__ring_dequeue(r, &out, NULL));
		expect_task(&out, i);
	}
	for (uint64_t i = 0; i < 3; i++) {
		cr_assert(shp__ring_dequeue(r, &out, NULL));
		expect_task(&out, i);
	}
	cr_expect_not(shp__ring_dequeue(r, &out, NULL));
	free(r);
}

Test(ring, fifo_across_many_laps, .timeout = 10)
{
	struct shp__ring *r = ring_new(4);
	struct shp__task t;
	uint64_t next_in = 0, next_out = 0;

	/* Uneven bursts so that every cell is hit at every phase. */
	while (next_out < 10000) {
		unsigned n = 1 + (unsigned)(next_in % 3);
		struct shp__task b[3];

		for (unsigned i = 0; i < n; i++)
			b[i] = task(next_in + i);
		next_in += shp__ring_enqueue_burst(r, b, n);
		while (shp__ring_count(r) > 1) {
			cr_assert(shp__ring_dequeue(r, &t, NULL));
			expect_task(&t, next_out++);
		}
	}
	free(r);
}

/* A claim record and descriptor buffer, as a worker keeps them. */
struct consumer {
	struct shp__claim cl;
	struct shp__task t;
};

/* Plays a consumer up to the point where it is "killed": after the claim,
 * after the CAS on head, after the copy. */
enum death { BEFORE_CAS, AFTER_CAS, AFTER_COPY };

static void die_in_dequeue(struct shp__ring *r, struct consumer *c,
                           enum death when)
{
	uint64_t pos = r->head;

	c->cl.pos = pos;
	if (when == BEFORE_CAS)
		return;
	r->head = pos + 1;
	if (when == AFTER_CAS)
		return;
	c->t = r->cells[pos & r->mask].task;
	c->cl.held = 1;
}

static struct shp__ring *ring_with(uint32_t size, uint64_t n)
{
	struct shp__ring *r = ring_new(size);

	for (uint64_t i = 0; i < n; i++) {
		struct shp__task t = task(100 + i);

		cr_assert_eq(shp__ring_enqueue_burst(r, &t, 1), 1);
	}
	return r;
}

Test(ring, repair_idle_consumer_is_none, .timeout = 10)
{
	struct shp__ring *r = ring_with(4, 2);
	struct consumer c = { .cl = { SHP_CLAIM_NONE, 0 } };

	cr_expect_eq(shp__ring_repair(r, &c.cl, &c.t, NULL, 0), SHP_REPAIR_NONE);
	cr_expect_eq(shp__ring_count(r), 2);
	free(r);
}

Test(ring, repair_death_before_cas_leaves_item_queued, .timeout = 10)
{
	struct shp__ring *r = ring_with(4, 2);
	struct consumer c = { .cl = { SHP_CLAIM_NONE, 0 } };
	struct shp__task t;

	die_in_dequeue(r, &c, BEFORE_CAS);
	cr_expect_eq(shp__ring_repair(r, &c.cl, &c.t, NULL, 0), SHP_REPAIR_NONE);
	cr_expect_eq(c.cl.pos, SHP_CLAIM_NONE);
	cr_assert(shp__ring_dequeue(r, &t, NULL));
	expect_task(&t, 100);
	free(r);
}

Test(ring, repair_death_after_cas_takes_descriptor, .timeout = 10)
{
	struct shp__ring *r = ring_with(4, 4);
	struct consumer c = { .cl = { SHP_CLAIM_NONE, 0 } };
	struct shp__task t = task(7);

	die_in_dequeue(r, &c, AFTER_CAS);
	cr_expect_eq(shp__ring_enqueue_burst(r, &t, 1), 0); /* wedged */
	cr_expect_eq(shp__ring_repair(r, &c.cl, &c.t, NULL, 0), SHP_REPAIR_TAKEN);
	expect_task(&c.t, 100);
	cr_expect_eq(c.cl.held, 1);
	cr_expect_eq(c.cl.pos, SHP_CLAIM_NONE);
	/* The cell is released: the ring takes an item again, and the rest
	 * come out in order. */
	cr_expect_eq(shp__ring_enqueue_burst(r, &t, 1), 1);
	for (uint64_t i = 101; i < 104; i++) {
		struct shp__task o;

		cr_assert(shp__ring_dequeue(r, &o, NULL));
		expect_task(&o, i);
	}
	free(r);
}

Test(ring, repair_is_busy_while_a_live_consumer_claims_the_cell, .timeout = 10)
{
	struct shp__ring *r = ring_with(4, 2);
	struct consumer dead = { .cl = { SHP_CLAIM_NONE, 0 } };
	struct shp__claim live = { .pos = 0, .held = 0 };
	struct shp__claim *lives[] = { &live };

	die_in_dequeue(r, &dead, AFTER_CAS);
	cr_expect_eq(shp__ring_repair(r, &dead.cl, &dead.t, lives, 1),
	             SHP_REPAIR_BUSY);
	cr_expect_eq(dead.cl.pos, 0); /* kept for the next attempt */
	live.pos = SHP_CLAIM_NONE;     /* the live one moved on */
	cr_expect_eq(shp__ring_repair(r, &dead.cl, &dead.t, lives, 1),
	             SHP_REPAIR_TAKEN);
	expect_task(&dead.t, 100);
	free(r);
}

Test(ring, repair_death_after_copy_keeps_its_copy, .timeout = 10)
{
	struct shp__ring *r = ring_with(4, 4);
	struct consumer c = { .cl = { SHP_CLAIM_NONE, 0 } };
	struct shp__task t = task(9);

	die_in_dequeue(r, &c, AFTER_COPY);
	cr_expect_eq(shp__ring_repair(r, &c.cl, &c.t, NULL, 0), SHP_REPAIR_TAKEN);
	expect_task(&c.t, 100);
	cr_expect_eq(shp__ring_enqueue_burst(r, &t, 1), 1);
	free(r);
}

Test(ring, repair_of_released_claim_is_taken_once, .timeout = 10)
{
	struct shp__ring *r = ring_with(4, 2);
	struct consumer c = { .cl = { SHP_CLAIM_NONE, 0 } };

	/* Dequeued whole, died while running it: (NONE, 1). */
	cr_assert(shp__ring_dequeue(r, &c.t, &c.cl));
	cr_expect_eq(c.cl.held, 1);
	cr_expect_eq(shp__ring_repair(r, &c.cl, &c.t, NULL, 0), SHP_REPAIR_TAKEN);
	expect_task(&c.t, 100);
	cr_expect_eq(shp__ring_count(r), 1);
	free(r);
}

Test(ring, repair_of_cell_taken_by_another_is_none, .timeout = 10)
{
	struct shp__ring *r = ring_with(4, 2);
	struct consumer dead = { .cl = { SHP_CLAIM_NONE, 0 } };
	struct consumer other = { .cl = { SHP_CLAIM_NONE, 0 } };

	/* The dead one claimed cell 0 but lost it to another consumer. */
	dead.cl.pos = 0;
	cr_assert(shp__ring_dequeue(r, &other.t, &other.cl));
	cr_expect_eq(shp__ring_repair(r, &dead.cl, &dead.t, NULL, 0),
	             SHP_REPAIR_NONE);
	cr_expect_eq(shp__ring_count(r), 1);
	free(r);
}

/*
 * Words a task scribbled (ring.h): every operation must come back, with
 * "full" or "empty", and leave the words as it found them. Each runs in a
 * thread, so that one that follows the words for ever fails its test
 * rather than hanging it.
 */
struct bounded {
	struct shp__ring *r;
	bool dequeue;      /* else: enqueue one descriptor */
	struct consumer c; /* the dequeue's claim and buffer */
	unsigned result;   /* what the operation returned */
	pthread_t th;
};

static void *bounded_main(void *arg)
{
	struct bounded *b = arg;
	struct shp__task t = task(42);

	if (b->dequeue)
		b->result = shp__ring_dequeue(b->r, &b->c.t, &b->c.cl);
	else
		b->result = shp__ring_enqueue_burst(b->r, &t, 1);
	return NULL;
}

/* Runs one enqueue (dequeue: false) or dequeue on r; fails the test unless
 * it returns within 2 s. Returns its result. */
static unsigned bounded_op(struct shp__ring *r, bool dequeue)
{
	struct bounded b = { .r = r, .dequeue = dequeue,
	                     .c = { .cl = { SHP_CLAIM_NONE, 0 } } };

	cr_assert_eq(pthread_create(&b.th, NULL, bounded_main, &b), 0);
	cr_assert(bg_join(b.th, 2000), "the %s spins on the scribbled words",
	          dequeue ? "dequeue" : "enqueue");
	if (dequeue)
		cr_expect(b.c.cl.pos == SHP_CLAIM_NONE && b.c.cl.held == 0,
		          "the dequeue left its claim (%" PRIu64 ", %" PRIu64 ")",
		          b.c.cl.pos, b.c.cl.held);
	return b.result;
}

/* The seq of every cell, to check that an operation changed none. */
static void save_seqs(const struct shp__ring *r, uint64_t *seq)
{
	for (uint32_t i = 0; i < r->size; i++)
		seq[i] = r->cells[i].seq;
}

static void expect_seqs(const struct shp__ring *r, const uint64_t *seq)
{
	for (uint32_t i = 0; i < r->size; i++)
		cr_expect_eq(r->cells[i].seq, seq[i], "cell %u", i);
}

Test(ring, enqueue_on_a_cell_ahead_of_tail_returns_zero, .timeout = 10)
{
	struct shp__ring *r = ring_with(8, 3);
	uint64_t seq[8];

	/* A cell ahead of tail is what a producer that won tail leaves:
	 * the enqueue reloads tail, which must have moved. */
	r->cells[3].seq = 3 + 2 * 8;
	save_seqs(r, seq);
	cr_expect_eq(bounded_op(r, false), 0);
	cr_expect_eq(r->tail, 3);
	expect_seqs(r, seq);
	free(r);
}

Test(ring, enqueue_with_tail_rewound_returns_zero, .timeout = 10)
{
	static const uint64_t to[] = { 0, 1, 4 }; /* released, FULL, FULL */
	struct shp__ring *r = ring_with(8, 6);
	struct shp__task t;
	uint64_t seq[8];

	cr_assert(shp__ring_dequeue(r, &t, NULL));
	cr_assert(shp__ring_dequeue(r, &t, NULL));
	save_seqs(r, seq);
	for (size_t i = 0; i < sizeof(to) / sizeof(to[0]); i++) {
		r->tail = to[i];
		cr_expect_eq(bounded_op(r, false), 0, "tail %" PRIu64, to[i]);
		cr_expect_eq(r->tail, to[i]);
		expect_seqs(r, seq);
	}
	free(r);
}

Test(ring, enqueue_with_tail_laps_ahead_returns_zero, .timeout = 10)
{
	struct shp__ring *r = ring_with(8, 3);
	uint64_t seq[8];

	save_seqs(r, seq);
	r->tail = 3 + 5 * 8;
	cr_expect_eq(bounded_op(r, false), 0);
	cr_expect_eq(r->tail, 3 + 5 * 8);
	expect_seqs(r, seq);
	free(r);
}

Test(ring, dequeue_with_head_rewound_returns_false, .timeout = 10)
{
	struct shp__ring *r = ring_with(8, 4);
	struct shp__task t;
	uint64_t seq[8];

	cr_assert(shp__ring_dequeue(r, &t, NULL));
	cr_assert(shp__ring_dequeue(r, &t, NULL));
	save_seqs(r, seq);
	r->head = 0; /* cell 0 released for the next lap, head back on it */
	cr_expect_eq(bounded_op(r, true), false);
	cr_expect_eq(r->head, 0);
	expect_seqs(r, seq);
	free(r);
}

Test(ring, dequeue_on_a_cell_ahead_of_head_returns_false, .timeout = 10)
{
	struct shp__ring *r = ring_with(8, 2);
	uint64_t seq[8];

	r->cells[0].seq = 1 + 3 * 8;
	save_seqs(r, seq);
	cr_expect_eq(bounded_op(r, true), false);
	cr_expect_eq(r->head, 0);
	expect_seqs(r, seq);
	free(r);
}

Test(ring, dequeue_on_a_cell_behind_head_returns_false, .timeout = 10)
{
	struct shp__ring *r = ring_with(8, 2);
	uint64_t seq[8];

	r->cells[0].seq = 0; /* EMPTY again, tail past it */
	save_seqs(r, seq);
	cr_expect_eq(bounded_op(r, true), false);
	cr_expect_eq(r->head, 0);
	cr_expect_eq(shp__ring_count(r), 2);
	expect_seqs(r, seq);
	free(r);
}

Test(ring, ready_only_when_the_cell_at_head_is_full, .timeout = 10)
{
	struct shp__ring *r = ring_new(8);
	struct shp__task t = task(5);

	cr_expect_not(shp__ring_ready(r));
	/* A producer that won tail 0 and has not published: a count, but
	 * nothing to take. */
	r->tail = 1;
	cr_expect_eq(shp__ring_count(r), 1);
	cr_expect_not(shp__ring_ready(r));
	r->cells[0].task = t;
	r->cells[0].seq = 1;
	cr_expect(shp__ring_ready(r));
	cr_assert(shp__ring_dequeue(r, &t, NULL));
	expect_task(&t, 5);
	cr_expect_not(shp__ring_ready(r));
	/* Scribbled: the cell at head a lap ahead, or EMPTY again. */
	cr_assert_eq(shp__ring_enqueue_burst(r, &t, 1), 1);
	cr_expect(shp__ring_ready(r));
	r->cells[1].seq = 2 + 8;
	cr_expect_not(shp__ring_ready(r));
	r->cells[1].seq = 1;
	cr_expect_not(shp__ring_ready(r));
	free(r);
}

Test(ring, snapshot_is_sane_unless_head_and_tail_are_impossible, .timeout = 10)
{
	static const struct {
		uint64_t head, tail;
		bool sane;
	} at[] = {
		{ 0, 0, true },   { 2, 5, true },       { 3, 11, true }, /* full */
		{ 5, 2, false },  { 3, 12, false },     { 0, 8 * 5, false },
		{ 7, 0, false },  { UINT64_MAX - 1, 2, false },
		{ 2, UINT64_MAX, false },
	};
	struct shp__ring *r = ring_new(8);
	struct shp__ring_snap s;

	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		r->head = at[i].head;
		r->tail = at[i].tail;
		shp__ring_snapshot(r, &s);
		cr_expect_eq(s.sane, at[i].sane, "head %" PRIu64 " tail %" PRIu64,
		             at[i].head, at[i].tail);
		cr_expect_eq(s.head, at[i].head);
		cr_expect_eq(s.tail, at[i].tail);
	}
	free(r);
}

Test(ring, snapshot_ready_as_the_cell_at_head, .timeout = 10)
{
	struct shp__ring *r = ring_with(8, 2);
	struct shp__ring_snap s;
	struct shp__task t;

	shp__ring_snapshot(r, &s);
	cr_expect(s.sane && s.ready);
	cr_assert(shp__ring_dequeue(r, &t, NULL));
	cr_assert(shp__ring_dequeue(r, &t, NULL));
	shp__ring_snapshot(r, &s);
	cr_expect(s.sane && !s.ready);
	cr_expect_eq(s.head, 2);
	cr_expect_eq(s.tail, 2);
	free(r);
}

/* Two consumers race for one descriptor per round: the loser must come back
 * with its claim idle, whether it lost the CAS on head or saw the cell
 * taken. A claim left naming the winner's cell would make a repair of the
 * winner, were it to die there, answer BUSY for as long as the loser slept
 * (shp__ring_dequeue used to leave it: 2 to 50 rounds in 20000 did). */
struct race {
	struct shp__ring *r;
	uint32_t rounds;
	uint32_t go;   /* round released to the racers */
	uint32_t done; /* racers finished, over all rounds */
	struct consumer c[2];
	bool got[2];
};

struct racer {
	struct race *race;
	unsigned k;
};

static void *racer_main(void *arg)
{
	struct racer *me = arg;
	struct race *rc = me->race;

	for (uint32_t round = 1; round <= rc->rounds; round++) {
		while (__atomic_load_n(&rc->go, __ATOMIC_ACQUIRE) != round)
			sched_yield();
		rc->got[me->k] = shp__ring_dequeue(rc->r, &rc->c[me->k].t,
		                                   &rc->c[me->k].cl);
		__atomic_fetch_add(&rc->done, 1, __ATOMIC_RELEASE);
	}
	return NULL;
}

Test(ring, losing_a_race_leaves_the_claim_idle, .timeout = 30)
{
	struct race rc = { .r = ring_new(4), .rounds = 50000 };
	struct racer rs[2] = { { &rc, 0 }, { &rc, 1 } };
	const char *scale = getenv("SHP_TEST_SCALE"); /* under valgrind */
	pthread_t th[2];
	unsigned bad = 0;

	if (scale && atoi(scale) > 1)
		rc.rounds /= (uint32_t)atoi(scale);

	for (unsigned k = 0; k < 2; k++) {
		rc.c[k].cl = (struct shp__claim){ SHP_CLAIM_NONE, 0 };
		cr_assert_eq(pthread_create(&th[k], NULL, racer_main, &rs[k]), 0);
	}
	for (uint32_t round = 1; round <= rc.rounds; round++) {
		struct shp__task t = task(round);

		cr_assert_eq(shp__ring_enqueue_burst(rc.r, &t, 1), 1);
		__atomic_store_n(&rc.go, round, __ATOMIC_RELEASE);
		while (__atomic_load_n(&rc.done, __ATOMIC_ACQUIRE) != 2 * round)
			sched_yield();
		cr_assert_eq(rc.got[0] + rc.got[1], 1, "round %u", round);
		for (unsigned k = 0; k < 2; k++) {
			struct shp__claim *cl = &rc.c[k].cl;

			if (rc.got[k]) {
				expect_task(&rc.c[k].t, round);
				cr_assert_eq(cl->pos, SHP_CLAIM_NONE);
				shp__ring_release_claim(cl);
			}
			bad += cl->pos != SHP_CLAIM_NONE || cl->held != 0;
			cl->pos = SHP_CLAIM_NONE;
		}
	}
	for (unsigned k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	cr_expect_eq(bad, 0, "%u of %u rounds left a claim behind", bad,
	             rc.rounds);
	free(rc.r);
}

static void torture(unsigned p, unsigned c, uint64_t items, uint32_t cells)
{
	struct ring_torture_result res;
	const char *scale = getenv("SHP_TEST_SCALE"); /* under valgrind */

	if (scale && atoi(scale) > 1)
		items /= (uint64_t)atoi(scale);

	cr_assert_eq(ring_torture(p, c, items, cells, &res), 0);
	cr_expect_eq(res.failed_children, 0);
	cr_expect_eq(res.delivered, items);
	cr_expect_eq(res.missing, 0);
	cr_expect_eq(res.duplicated, 0);
	cr_expect_eq(res.torn, 0);
	cr_expect_eq(res.reordered, 0);
	cr_expect_eq(res.sum_out, res.sum_in);
}

Test(ring, processes_2p_2c_ten_million_exactly_once, .timeout = 240)
{
	torture(2, 2, 10000000, 1024);
}

Test(ring, processes_3p_3c_tiny_ring_exactly_once, .timeout = 120)
{
	/* A 4-cell ring wraps constantly: every cell is contended. */
	torture(3, 3, 300000, 4);
}
