/*
 * Process identities that survive pid reuse, for state words that name the
 * process holding something in shared memory.
 *
 * An owner word is (start << 22) | pid: the pid (at most 2^22 on Linux,
 * PID_MAX_LIMIT) and the process's start time in clock ticks since boot
 * (field 22 of /proc/<pid>/stat; 42 bits last 1394 years at 100 Hz). A pid
 * the kernel hands to a new process comes with a new start time, so a word
 * naming a dead process never comes to name a live one. 0 names nobody.
 */
#ifndef SHP_OWNER_H
#define SHP_OWNER_H

#include <stdbool.h>
#include <stdint.h>

#define SHP_OWNER_PID_BITS 22
#define SHP_OWNER_PID_MASK ((UINT64_C(1) << SHP_OWNER_PID_BITS) - 1)

/* The calling process's owner word (computed once per process, again after
 * a fork), or 0 when /proc cannot tell (then nothing can be claimed). */
uint64_t shp__owner_self(void);

/* Whether the process an owner word names still runs: false once it has
 * exited, even while it is an unreaped zombie. Reads /proc: a slow path. */
bool shp__owner_alive(uint64_t owner);

static inline int shp__owner_pid(uint64_t owner)
{
	return (int)(owner & SHP_OWNER_PID_MASK);
}

#endif
