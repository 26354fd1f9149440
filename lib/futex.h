/*
 * Eventcounts on shared futex words.
 *
 * An eventcount lets a process sleep until a condition that lives in shared
 * memory becomes true, while the processes that make it true pay for a
 * system call only when somebody sleeps.
 *
 * State word (uint32_t, in shared memory):
 *   bits 31..1  epoch, bumped by every notify that found a sleeper
 *   bit 0       SLEEPERS: somebody may be asleep on this epoch
 * Transitions:
 *   waiter:   epoch|0 -> epoch|1        (shp__ec_prepare, CAS)
 *   notifier: epoch|1 -> (epoch+1)|0    (shp__ec_notify, CAS, then wake all)
 * A waiter that dies while asleep leaves SLEEPERS set; the next notify
 * clears it with one wasted wake-up, so a death costs a syscall, never a
 * missed wake. Sleepers are always woken all at once for that reason.
 *
 * Protocol (condition C lives elsewhere in shared memory):
 *   waiter:   key = shp__ec_prepare(ec)      E1: full barrier (CAS)
 *             if (C) done; else shp__ec_wait(ec, key, deadline)
 *   notifier: make C true
 *             cmm_smp_mb() or a full-barrier atomic   N1 pairs with E1
 *             shp__ec_notify(ec)
 * Either the notifier's load sees SLEEPERS (and bumps the epoch, so the
 * waiter's FUTEX_WAIT on the old key cannot sleep through it), or the
 * waiter's re-check sees C.
 */
#ifndef SHP_FUTEX_H
#define SHP_FUTEX_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "atomic.h"

#define SHP_EC_SLEEPERS 1u

uint32_t shp__ec_prepare(uint32_t *ec);
/* Sleeps while *ec == key, until woken or deadline (CLOCK_MONOTONIC ns,
 * -1 = none). Returns 0 or -ETIMEDOUT; a spurious return is possible. */
int shp__ec_wait(uint32_t *ec, uint32_t key, int64_t deadline_ns);
void shp__ec_wake_slow(uint32_t *ec, uint32_t seen);

/* Call after a full barrier (N1) that follows making the condition true. */
static inline void shp__ec_notify(uint32_t *ec)
{
	uint32_t seen = SHP_LOAD(*ec);

	if (shp__unlikely(seen & SHP_EC_SLEEPERS))
		shp__ec_wake_slow(ec, seen);
}

int64_t shp__now_ns(void);
/* The CLOCK_MONOTONIC time timeout_ns from now, or -1 (no deadline) when
 * timeout_ns is negative or so large that the sum would overflow. */
int64_t shp__deadline_ns(int64_t timeout_ns);

/* A generator's end (r <= 0) as its iterator reports it: its own
 * -ETIMEDOUT becomes -ETIME, which the caller cannot take for the timeout
 * of its wait (and so retry for ever). */
static inline int shp__gen_err(int r)
{
	return r == -ETIMEDOUT ? -ETIME : r;
}

#endif
