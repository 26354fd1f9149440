/*
 * Ordered collection by position (shp_collect_*): the shared layout and the
 * two halves of a write, which shp_collect_put and shp_collect_fail share
 * and which the tests use to leave a position half-written by a process
 * they then kill.
 *
 * Slot tag (uint64_t, shared), one per position:
 *   EMPTY        nobody has claimed the position
 *   WRITING(w)   the owner word w (owner.h) of the process writing it: the
 *                element (put) or the status (fail) is being stored
 *   DONE         the element is stored, for good
 *   FAILED       the slot's status holds what shp_collect_fail was given
 * Transitions, each a CAS:
 *   EMPTY -> WRITING(w)           claim, by a put or fail in process w;
 *                                 the loser of a race gets -EEXIST
 *   WRITING(w) -> DONE or FAILED  publish, by process w once it stored the
 *                                 element or the status (P1)
 * Nothing else moves a tag: DONE and FAILED are final, and nobody takes a
 * WRITING slot over, so a tag still WRITING(w) after w was seen dead will
 * stay so (P3): readers then report the position SHP_ECRASHED and never
 * read its bytes.
 * A death leaves:
 *   writer before the claim       EMPTY: the position comes only through
 *                                 shp_collect_fail (the parent, after a
 *                                 join that showed the death); a reader
 *                                 waits until its timeout
 *   writer between claim and publish  WRITING(dead): SHP_ECRASHED, seen
 *                                 within one wait slice; torn bytes stay
 *                                 unread
 *   writer after publish, before its notify  DONE; a sleeping reader is
 *                                 not woken, its next wait slice finds it
 *   a reader                      nothing: writers never wait for readers;
 *                                 a SLEEPERS bit it left costs one wake
 * DONE and FAILED are owner words with pid 0, which name no process: no
 * claim can look like them.
 */
#ifndef SHP_COLLECT_H
#define SHP_COLLECT_H

#include <stddef.h>
#include <stdint.h>

#include "shmpool.h"

#include "atomic.h"
#include "owner.h"

#define SHP_COLLECT_EMPTY  UINT64_C(0)
#define SHP_COLLECT_DONE   (UINT64_C(1) << SHP_OWNER_PID_BITS)
#define SHP_COLLECT_FAILED (UINT64_C(2) << SHP_OWNER_PID_BITS)

struct shp__collect_slot {
	uint64_t tag;
	int32_t status; /* FAILED: shp_collect_fail's status */
	uint32_t pad;
};
_Static_assert(sizeof(struct shp__collect_slot) == 16, "slot layout");

/*
 * The mapping: this header, the n slots, then the n elements from the next
 * 64-byte boundary. No magic and no sizes: the mapping is anonymous, only
 * forks of its creator ever see it, and each takes the geometry from its
 * private handle, never from the shared pages.
 */
struct shp__collect_header {
	uint32_t ec; /* eventcount: readers sleep here; every publish
	              * notifies it */
	char pad[SHP_CACHELINE - 4];
};
_Static_assert(sizeof(struct shp__collect_header) == SHP_CACHELINE,
               "header layout");

/* Private to each process (a fork gets a copy with the same addresses). */
struct shp_collect {
	struct shp__collect_header *hdr;
	struct shp__collect_slot *slots;
	unsigned char *data;
	size_t n;
	size_t elem_size;
	size_t map_size;
	size_t next; /* shp_collect_next's cursor */
};

static inline void *shp__collect_elem(const struct shp_collect *c, size_t pos)
{
	return c->data + pos * c->elem_size;
}

/* EMPTY -> WRITING(this process) for pos < c->n. 0, -EEXIST (claimed
 * before), -ENOSYS (this process cannot name itself: no /proc). */
int shp__collect_claim(struct shp_collect *c, size_t pos);
/* WRITING(this process) -> state (DONE or FAILED), then wakes the
 * readers. 0, or SHP_ECORRUPT when the tag is no longer this process's
 * claim (written over by somebody else). */
int shp__collect_publish(struct shp_collect *c, size_t pos, uint64_t state);

#endif
