/* Helpers the unit tests share: clocks, buffers, pools and their checks. */
#ifndef SHP_TEST_UTIL_H
#define SHP_TEST_UTIL_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include "shmpool.h"

#define MS ((int64_t)1000000)
/* What a status array holds before a call: no task status is this. */
#define STATUS_UNSET 0x5eed5eed

/*
 * Declares suite with every test also bounded by alarm(seconds): a hang
 * must fail its test, and Criterion's .timeout was seen not to fire when
 * tests run in parallel (the whole binary then hangs). The default SIGALRM
 * action kills the test process; pool processes are forks and do not
 * inherit the alarm. seconds is read as each test starts.
 */
#define WATCHDOG_SUITE(suite, seconds)                                         \
	static void suite##_watchdog(void)                                     \
	{                                                                      \
		alarm(seconds);                                                \
	}                                                                      \
	TestSuite(suite, .init = suite##_watchdog)

/* CLOCK_MONOTONIC, in ns. */
int64_t now_ns(void);
/* Sleeps ms, resumed across signals. */
void sleep_ms(long ms);
/* Busy-waits ns, keeping the core. */
void spin_ns(long ns);
/* A cheap 64-bit hash (murmur3's finalizer, half of it). */
uint64_t mix(uint64_t x);
/* Time bounds stretch under valgrind (make check-valgrind sets
 * SHP_TEST_SCALE): ns, or 25 times ns. */
int64_t slack(int64_t ns);
/* Task durations that timing assertions rest on, in ms, likewise. */
long stretch_ms(long ms);
/* Task or iteration counts: n, divided by SHP_TEST_SCALE when set (the
 * valgrind runs). */
size_t scaled(size_t n);

/* n ints 0, 1, ... n - 1, malloc()ed. */
int *iota(size_t n);
/* n ints of value, malloc()ed. */
int *filled(size_t n, int value);
/* Whether x is one of the n pids of v. */
bool among(pid_t x, const pid_t *v, size_t n);
/* Joins th within ms (stretched under valgrind); false, the thread still
 * running, otherwise. */
bool bg_join(pthread_t th, long ms);
/* Zeroed MAP_SHARED anonymous memory: every process of a pool created
 * after this call (a fork) shares it. munmap() it. */
void *shared_map(size_t size);

/* Tasks. out = 3 * in + 1 (ints). */
int triple(const void *in, void *out, void *ctx);
/* out = in cubed (longs). */
int cube(const void *in, void *out, void *ctx);
/* out = in + 1 (ints); status x % 7 + 1 for multiples of 5, else -3 (seen
 * as SHP_ETASK) for multiples of 11, else 0. */
int fail_some(const void *in, void *out, void *ctx);
/* out = 10 * in (ints); input 5 aborts its worker, input 9 _exit()s it. */
int crash_on_five(const void *in, void *out, void *ctx);

/* A pool of workers workers and cells ring cells (0: the defaults). */
shp_pool *pool_of(unsigned workers, unsigned cells);
/* A map of n triple() tasks must complete with every result right. */
void expect_map_correct(shp_pool *p, size_t n, const char *when);
/*
 * Waits up to ms for the pool to be at full strength: its supervisor with
 * want live workers, none of them in gone[], and no other process under
 * this one. Returns the last count of such workers.
 */
size_t strength_after(const shp_pool *p, size_t want, const pid_t *gone,
                      size_t ngone, long ms);
/* Destroys the pool and checks that nothing of it is left: no process,
 * no name in /dev/shm of this process's pools. */
void destroy_clean(shp_pool *p);
/* As destroy_clean, but no name in /dev/shm of any pool once settled
 * (devshm_settled()). */
void destroy_settled(shp_pool *p);

#endif
