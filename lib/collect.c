/*
 * Ordered collection by position: process i writes result i into slot i,
 * and the reader takes slot 0, 1, ... as each arrives. The position is the
 * address, so nothing is sorted and nothing is tagged by hand. The slot
 * state machine and what each death leaves are in collect.h.
 *
 * Barriers:
 *   P1  publish: the CAS WRITING(w) -> DONE/FAILED (full barrier) orders
 *       the element or status before the tag; pairs with P2. It is also
 *       N1 of the eventcount protocol (futex.h): the tag before the
 *       SLEEPERS check; pairs with E1.
 *   P2  reader, after loading DONE or FAILED: the tag before the element
 *       or status; pairs with P1.
 *   P3  reader, after finding a WRITING owner dead: the death before the
 *       tag is loaded again; pairs with the owner's exit (a process's
 *       stores are visible before /proc shows it dead). A writer that
 *       published and then exited is not taken for one that died writing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "collect.h"
#include "futex.h"

/* A writer holds WRITING only while it copies: worth spinning on that
 * briefly before sleeping, never on EMPTY (its writer may not even run). */
#define SPIN_NS 50000
/* Sleeps are sliced: to look at a WRITING owner's liveness again, and
 * to recover a wake-up lost with a writer that died in its notify. */
#define SLICE_NS 20000000

int shp_collect_create(shp_collect **out, size_t n, size_t elem_size)
{
	struct shp_collect *c;
	size_t head, data;
	void *base;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!n || !elem_size)
		return -EINVAL;
	if (n > (SIZE_MAX - 2 * (size_t)SHP_CACHELINE) / sizeof(struct shp__collect_slot) ||
	    n > SIZE_MAX / elem_size)
		return -EOVERFLOW;
	head = sizeof(struct shp__collect_header) +
	       n * sizeof(struct shp__collect_slot);
	head = (head + SHP_CACHELINE - 1) & ~(size_t)(SHP_CACHELINE - 1);
	data = n * elem_size;
	if (data > SIZE_MAX - head)
		return -EOVERFLOW;
	/* A process that cannot name itself could never claim a slot. */
	if (!shp__owner_self())
		return -ENOSYS;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	/* Anonymous and shared: forks share it, nothing has a name, and it
	 * starts zeroed, every tag EMPTY. */
	base = mmap(NULL, head + data, PROT_READ | PROT_WRITE,
	            MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED) {
		free(c);
		return -ENOMEM;
	}
	c->hdr = base;
	c->slots = (struct shp__collect_slot *)(c->hdr + 1);
	c->data = (unsigned char *)base + head;
	c->n = n;
	c->elem_size = elem_size;
	c->map_size = head + data;
	*out = c;
	return 0;
}

void shp_collect_destroy(shp_collect *c)
{
	if (!c)
		return;
	munmap(c->hdr, c->map_size);
	free(c);
}

int shp__collect_claim(struct shp_collect *c, size_t pos)
{
	uint64_t self = shp__owner_self();

	if (!self)
		return -ENOSYS;
	if (uatomic_cmpxchg(&c->slots[pos].tag, SHP_COLLECT_EMPTY, self) !=
	    SHP_COLLECT_EMPTY)
		return -EEXIST;
	return 0;
}

int shp__collect_publish(struct shp_collect *c, size_t pos, uint64_t state)
{
	uint64_t self = shp__owner_self();

	/* P1/N1: full barrier; pairs with P2 and E1. */
	if (uatomic_cmpxchg(&c->slots[pos].tag, self, state) != self)
		return SHP_ECORRUPT;
	shp__ec_notify(&c->hdr->ec);
	return 0;
}

int shp_collect_put(shp_collect *c, size_t pos, const void *elem)
{
	int err;

	if (!c || !elem || pos >= c->n)
		return -EINVAL;
	err = shp__collect_claim(c, pos);
	if (err)
		return err;
	memcpy(shp__collect_elem(c, pos), elem, c->elem_size);
	return shp__collect_publish(c, pos, SHP_COLLECT_DONE);
}

int shp_collect_fail(shp_collect *c, size_t pos, int status)
{
	int err;

	/* -ETIMEDOUT would read, at the reader, as its own timeout. */
	if (!c || pos >= c->n || status >= 0 || status == -ETIMEDOUT)
		return -EINVAL;
	err = shp__collect_claim(c, pos);
	if (err)
		return err;
	SHP_STORE(c->slots[pos].status, status);
	return shp__collect_publish(c, pos, SHP_COLLECT_FAILED);
}

/*
 * What slot pos says now: 1 when DONE (the element copied to elem unless
 * NULL), a negative result when FAILED or impossible, 0 when still to
 * come; then *writer is the WRITING owner word, or 0 for EMPTY. The tag
 * and status may have been written over by anybody: only the values a
 * writer can store are believed.
 */
static int look(const struct shp_collect *c, size_t pos, void *elem,
                uint64_t *writer)
{
	const struct shp__collect_slot *s = &c->slots[pos];
	uint64_t tag = SHP_LOAD(s->tag);

	*writer = 0;
	if (tag == SHP_COLLECT_EMPTY)
		return 0;
	if (tag == SHP_COLLECT_DONE) {
		shp__smp_acquire(); /* P2, pairs with P1 */
		if (elem)
			memcpy(elem, shp__collect_elem(c, pos), c->elem_size);
		return 1;
	}
	if (tag == SHP_COLLECT_FAILED) {
		int32_t st;

		shp__smp_acquire(); /* P2, pairs with P1 */
		st = SHP_LOAD(s->status);
		/* What shp_collect_fail accepts, and nothing else. */
		return st < 0 && st != -ETIMEDOUT ? st : SHP_ECORRUPT;
	}
	/* A pid of 0 names nobody: no claim stored this. */
	if (shp__owner_pid(tag) == 0)
		return SHP_ECORRUPT;
	*writer = tag;
	return 0;
}

/* Whether the claim writer on slot pos was left by a dead process. */
static bool died_writing(const struct shp_collect *c, size_t pos,
                         uint64_t writer)
{
	if (shp__owner_alive(writer))
		return false;
	cmm_smp_mb(); /* P3, pairs with the writer's exit */
	return SHP_LOAD(c->slots[pos].tag) == writer;
}

static int wait_slot(struct shp_collect *c, size_t pos, void *elem,
                     int64_t timeout_ns)
{
	int64_t now = shp__now_ns(), deadline, spin_end;
	uint64_t writer;
	int r;

	deadline = shp__deadline_ns(timeout_ns);
	r = look(c, pos, elem, &writer);
	if (r)
		return r;
	/* Spin on a live writer's copy, not past the deadline. */
	spin_end = deadline >= 0 && deadline < now + SPIN_NS ? deadline
	                                                      : now + SPIN_NS;
	while (writer && SHP_LOAD(c->slots[pos].tag) == writer &&
	       shp__now_ns() < spin_end)
		caa_cpu_relax();
	for (;;) {
		/* E1: SLEEPERS set before the tag is looked at again; pairs
		 * with N1 (P1) in the writer's publish. */
		uint32_t key = shp__ec_prepare(&c->hdr->ec);
		int64_t until;

		r = look(c, pos, elem, &writer);
		if (r)
			return r;
		if (writer && died_writing(c, pos, writer))
			return SHP_ECRASHED;
		now = shp__now_ns();
		if (deadline >= 0 && now >= deadline)
			return -ETIMEDOUT;
		until = now + SLICE_NS;
		if (deadline >= 0 && deadline < until)
			until = deadline;
		shp__ec_wait(&c->hdr->ec, key, until);
	}
}

int shp_collect_get(shp_collect *c, size_t pos, void *elem, int64_t timeout_ns)
{
	if (!c || pos >= c->n)
		return -EINVAL;
	return wait_slot(c, pos, elem, timeout_ns);
}

int shp_collect_next(shp_collect *c, size_t *pos, void *elem,
                     int64_t timeout_ns)
{
	size_t i;
	int r;

	if (!c)
		return -EINVAL;
	i = c->next;
	if (i >= c->n)
		return 0;
	if (pos)
		*pos = i;
	r = wait_slot(c, i, elem, timeout_ns);
	/* Every other answer is the position's own, final: move on. */
	if (r != -ETIMEDOUT)
		c->next = i + 1;
	return r;
}
