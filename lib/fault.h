/*
 * Fault injection: named kill points in the workers' protocols and the
 * public queue's, for tests.
 *
 * SHP_FAULT(NAME) marks a step of the ring, slot or claim protocols after
 * which the death of a worker leaves a distinct state in shared memory.
 * Without SHP_FAULT_INJECTION (configure --enable-fault-injection) it
 * compiles to nothing: no code, no symbol. With it, a test arms one point
 * and a hit count; every pass through that point counts down, and the one
 * process whose pass brings the count to exactly 0 dies there of SIGKILL,
 * as if killed with kill -9. The count lives in a MAP_SHARED|MAP_ANONYMOUS
 * page mapped at the first arming, so it is shared by every process forked
 * afterwards (the supervisor, the workers, their replacements), and exactly
 * one of them dies.
 *
 * docs/design.md, "Fault injection", says for every point what state it
 * leaves and which repair handles it.
 */
#ifndef SHP_FAULT_H
#define SHP_FAULT_H

#include <stdbool.h>
#include <sys/types.h>

/* X(name, what the dying worker leaves behind) */
#define SHP_FAULT_POINTS(X)                                                    \
	X(WORKER_START, "worker started, initializer not run; holds nothing")  \
	X(DEQ_CLAIMED, "claim (i, 0) stored, head CAS not tried")              \
	X(DEQ_WON, "claim (i, 0), head won, cell i FULL, nothing copied")      \
	X(DEQ_COPIED, "claim (i, 0), descriptor copied, held not set")         \
	X(DEQ_HELD, "claim (i, 1), cell i still FULL")                         \
	X(DEQ_RELEASED, "claim (i, 1), cell i released")                       \
	X(DEQ_UNCLAIMED, "claim (NONE, 1): owns a chunk, nothing run")         \
	X(RUN_STARTED, "running = i + 1, task not called")                     \
	X(RUN_RETURNED, "running = i + 1, task returned, no status stored")    \
	X(RUN_STATUS, "running = i + 1, status stored, slot not DONE")         \
	X(RUN_DONE, "slot DONE, running still i + 1")                          \
	X(RUN_CLEARED, "slot DONE, running = 0")                               \
	X(RUN_NOTIFYING, "slot DONE, caller seen asleep, not woken")           \
	X(RUN_NOTIFIED, "slot DONE, caller woken")                             \
	X(LOOP_RAN, "claim (NONE, 1), every task of the chunk DONE")           \
	X(LOOP_RELEASED, "claim (NONE, 0): chunk finished, holds nothing")     \
	X(IDLE_SLEEPER, "SLEEPERS set on work_ec by a process now dead")      \
	X(QPUT_CLAIMED, "queue: claim (PUT, t, k) stored, tail CAS not tried") \
	X(QPUT_WON, "queue: tail won, nothing written: cells EMPTY")           \
	X(QPUT_WRITTEN, "queue: an element written, its cell still EMPTY")     \
	X(QPUT_PUBLISHED, "queue: every cell FULL, claim not dropped")         \
	X(QGET_CLAIMED, "queue: claim (GET, h, k) stored, head CAS not tried") \
	X(QGET_WON, "queue: head won, cells FULL, nothing copied")             \
	X(QGET_COPIED, "queue: an element copied, its cell still FULL")        \
	X(QGET_RELEASED, "queue: every cell released, claim not dropped")

enum shp__fault_point {
#define SHP_FAULT_ENUM(name, what) SHP_FAULT_##name,
	SHP_FAULT_POINTS(SHP_FAULT_ENUM)
#undef SHP_FAULT_ENUM
	SHP_FAULT_NPOINTS
};

#ifdef SHP_FAULT_INJECTION

/* "DEQ_CLAIMED", ..., indexed by point. */
extern const char *const shp__fault_names[SHP_FAULT_NPOINTS];

/* Counts a pass through point p; kills the process on the armed hit. */
void shp__fault_hit(enum shp__fault_point p);

/*
 * Arms point p: its hit-th pass from now on, in any process forked after
 * the first call, is killed. The first call must come before
 * shp_pool_create (it maps the shared page), and re-arming while a pool's
 * workers may pass the old point is unsafe: arm between pools. Returns 0,
 * -EINVAL (no such point, hit 0 or UINT32_MAX), or -errno from mmap.
 */
int shp__fault_arm(enum shp__fault_point p, unsigned hit);

/* Disarms, safe at any time; from its return no process can be killed.
 * Returns whether the kill happened. */
bool shp__fault_disarm(void);

/* Whether the armed kill has happened (the count reached 0). */
bool shp__fault_fired(void);

/* The pid of the process killed; 0 until it is stored, a moment after
 * shp__fault_fired() turns true, or when nothing fired. */
pid_t shp__fault_victim(void);

#define SHP_FAULT(name) shp__fault_hit(SHP_FAULT_##name)

#else

/* Names the constant so that a misspelt point fails to build either way. */
#define SHP_FAULT(name) ((void)SHP_FAULT_##name)

#endif

#endif
