#include <errno.h>
#include <limits.h>
#include <time.h>

#include <urcu/futex.h>

#include "futex.h"

int64_t shp__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t shp__deadline_ns(int64_t timeout_ns)
{
	int64_t at;

	/* Past INT64_MAX ns from boot (292 years) is as good as never: the
	 * caller waits without a deadline rather than overflow into one
	 * that has passed. */
	if (timeout_ns < 0 || __builtin_add_overflow(shp__now_ns(), timeout_ns, &at))
		return -1;
	return at;
}

uint32_t shp__ec_prepare(uint32_t *ec)
{
	uint32_t old = SHP_LOAD(*ec);

	for (;;) {
		uint32_t prev;

		if (old & SHP_EC_SLEEPERS) {
			/* E1 (bit already set by another waiter): a plain
			 * load is not a barrier, so fence before the caller's
			 * re-check of the condition. Pairs with N1. */
			cmm_smp_mb();
			return old;
		}
		/* E1: full barrier (CAS), pairs with N1 in the notifier. */
		prev = uatomic_cmpxchg(ec, old, old | SHP_EC_SLEEPERS);
		if (prev == old)
			return old | SHP_EC_SLEEPERS;
		old = prev;
	}
}

int shp__ec_wait(uint32_t *ec, uint32_t key, int64_t deadline_ns)
{
	struct timespec ts, *tsp = NULL;

	if (deadline_ns >= 0) {
		int64_t left = deadline_ns - shp__now_ns();

		if (left <= 0)
			return -ETIMEDOUT;
		ts.tv_sec = (time_t)(left / 1000000000);
		ts.tv_nsec = (long)(left % 1000000000);
		tsp = &ts;
	}
	/* Shared futex (no FUTEX_PRIVATE_FLAG): sleepers and wakers are in
	 * different processes. The kernel compares *ec with key atomically
	 * with queueing us, which closes the window after shp__ec_prepare. */
	if (futex_async((int32_t *)ec, FUTEX_WAIT, (int32_t)key, tsp, NULL, 0) < 0 &&
	    errno == ETIMEDOUT)
		return -ETIMEDOUT;
	return 0;
}

void shp__ec_wake_slow(uint32_t *ec, uint32_t seen)
{
	/* Clear SLEEPERS and bump the epoch in one step. If the CAS fails,
	 * another notifier bumped it first and does the wake-up. */
	if (uatomic_cmpxchg(ec, seen, seen + 1) == seen)
		futex_async((int32_t *)ec, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
