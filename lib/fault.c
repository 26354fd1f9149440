/* Fault injection for tests; see fault.h. Empty unless SHP_FAULT_INJECTION. */
#include "fault.h"

#ifdef SHP_FAULT_INJECTION

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "atomic.h"

#define DISARMED UINT32_MAX

/* Shared by every process forked after the first shp__fault_arm. */
struct fault_page {
	uint32_t point;     /* enum shp__fault_point armed */
	uint32_t countdown; /* passes left before the kill; 0: it happened;
	                     * DISARMED: none will */
	int32_t victim;     /* the process killed, once it is known */
};

/* NULL until the first arming: then no point is armed, and a pass costs
 * one load. Inherited by forks with the mapping. */
static struct fault_page *fault_page;

const char *const shp__fault_names[SHP_FAULT_NPOINTS] = {
#define SHP_FAULT_NAME(name, what) [SHP_FAULT_##name] = #name,
	SHP_FAULT_POINTS(SHP_FAULT_NAME)
#undef SHP_FAULT_NAME
};

void shp__fault_hit(enum shp__fault_point p)
{
	struct fault_page *fp = fault_page;
	uint32_t c;

	if (!fp || SHP_LOAD(fp->point) != (uint32_t)p)
		return;
	/* F1: the point before the count. Pairs with F2 in shp__fault_arm. */
	cmm_smp_rmb();
	/* A CAS rather than a decrement: the count never goes past 0 nor
	 * wakes up from DISARMED, so exactly one pass, of one process,
	 * takes it from 1 to 0. */
	c = SHP_LOAD(fp->countdown);
	while (c != 0 && c != DISARMED) {
		uint32_t prev = uatomic_cmpxchg(&fp->countdown, c, c - 1);

		if (prev == c) {
			if (c == 1) {
				SHP_STORE(fp->victim, (int32_t)getpid());
				(void)raise(SIGKILL); /* does not return */
			}
			return;
		}
		c = prev;
	}
}

int shp__fault_arm(enum shp__fault_point p, unsigned hit)
{
	if ((unsigned)p >= SHP_FAULT_NPOINTS || hit == 0 || hit >= DISARMED)
		return -EINVAL;
	if (!fault_page) {
		void *m = mmap(NULL, sizeof(*fault_page), PROT_READ | PROT_WRITE,
		               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

		if (m == MAP_FAILED)
			return -errno;
		fault_page = m;
	}
	/* Disarm, change the point, then set the count, so that a pass
	 * that sees the new count also sees the new point. F2: pairs with
	 * F1 in shp__fault_hit. (A pass that read the old point before
	 * this may still count: hence "arm between pools".) */
	SHP_STORE(fault_page->countdown, DISARMED);
	cmm_smp_mb(); /* F2 */
	SHP_STORE(fault_page->victim, 0);
	SHP_STORE(fault_page->point, (uint32_t)p);
	cmm_smp_mb(); /* F2 */
	SHP_STORE(fault_page->countdown, (uint32_t)hit);
	return 0;
}

bool shp__fault_disarm(void)
{
	uint32_t c;

	if (!fault_page)
		return false;
	/* A CAS against the passes' CAS: either a pass took the count to 0
	 * first (the kill is under way), or none can after this one. */
	c = SHP_LOAD(fault_page->countdown);
	while (c != 0 && c != DISARMED) {
		uint32_t prev = uatomic_cmpxchg(&fault_page->countdown, c,
		                                DISARMED);

		if (prev == c)
			break;
		c = prev;
	}
	return c == 0;
}

bool shp__fault_fired(void)
{
	return fault_page && SHP_LOAD(fault_page->countdown) == 0;
}

pid_t shp__fault_victim(void)
{
	return fault_page ? (pid_t)SHP_LOAD(fault_page->victim) : 0;
}

#endif
