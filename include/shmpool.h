/*
 * shmpool — a pool of worker processes sharing one shared-memory segment.
 *
 * Conventions: every call returns 0 (or a count) on success and a negative
 * value on failure: -errno for system and argument errors, or one of the
 * SHP_E* codes below (all under -4095, so they never collide with an errno)
 * for pool conditions. shp_strerror() describes both. Objects are opaque and
 * come back through an out-parameter. Timeouts are int64_t nanoseconds, -1
 * meaning forever and 0 meaning poll.
 *
 * Thread safety: shp_map, shp_apply, shp_alloc and shp_free may be called
 * from several threads of the creating process at once. shp_pool_close,
 * _join, _terminate and _destroy must not run concurrently with each other.
 * No call may be made from a worker (a task must not use its own pool).
 */
#ifndef SHMPOOL_H
#define SHMPOOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHP_BUILDING_LIBRARY)
#define SHP_EXPORT __attribute__((visibility("default")))
#else
#define SHP_EXPORT
#endif

#define SHP_VERSION_MAJOR 0
#define SHP_VERSION_MINOR 1
#define SHP_VERSION_PATCH 0
#define SHP_VERSION_STRING "0.1.0"

/* Pool error codes: X-macro so that codes, names and messages stay in step. */
#define SHP_ERRNO_MAP(X)                                                        \
	X(ETASK, -5001, "some task returned a non-zero status")                \
	X(ECRASHED, -5002, "the worker running the task died")                 \
	X(ETIMEDOUT, -5003, "the task's deadline passed")                      \
	X(ECANCELED, -5004, "the task was cancelled")                          \
	X(ECLOSED, -5005, "the pool is closed or terminated")                  \
	X(EBROKEN, -5006, "the pool's supervisor process died")                \
	X(ECORRUPT, -5007, "the shared segment holds an impossible value")

enum shp_errno {
#define SHP_ERRNO_ENUM(name, value, msg) SHP_##name = (value),
	SHP_ERRNO_MAP(SHP_ERRNO_ENUM)
#undef SHP_ERRNO_ENUM
};

typedef struct shp_pool shp_pool; /* a pool of worker processes */

/*
 * A task. Runs in a worker process. in: in_size bytes, read-only (NULL when
 * the call's in_size is 0). out: out_size bytes to fill. ctx: passed through
 * unchanged; it must point at memory that existed when the pool was created,
 * or into memory from shp_alloc(). Returns 0, or a positive code of the
 * task's own, which becomes its status.
 */
typedef int (*shp_fn)(const void *in, void *out, void *ctx);

/* Zero-initialised means every default. */
struct shp_pool_options {
	unsigned workers;          /* 0: one per CPU this process may
	                            * run on; at most 1024 */
	unsigned queue_cells;      /* task ring cells, rounded up to a power of
	                            * two; 0: 1024; at most 1 << 20 */
	size_t arena_bytes;        /* shared data arena; 0: 64 MiB */
	void (*initializer)(void *arg); /* runs once in each new worker */
	void *initializer_arg;
	unsigned max_tasks_per_worker;  /* recycle a worker after N; 0: never */
	int spin_us;               /* busy-wait before sleeping, in µs;
	                            * 0: default (50); negative: never spin */
};

/*
 * Creates a pool: maps the shared segment, starts the supervisor ("zygote")
 * process and the workers. Returns 0 and sets *pool, or -EINVAL (NULL pool,
 * absurd option), -ENOSPC (/dev/shm too small for the segment), -ENOMEM,
 * -EAGAIN (fork failed), or another -errno from the system.
 */
SHP_EXPORT int shp_pool_create(shp_pool **pool,
                               const struct shp_pool_options *opt);

/* Accepts no new calls from now on; calls under way finish. 0 or -EINVAL. */
SHP_EXPORT int shp_pool_close(shp_pool *pool);

/*
 * After shp_pool_close: waits for the calls under way, lets the workers and
 * the supervisor exit and reaps them. 0, -EINVAL (NULL, or the pool is not
 * closed), or SHP_EBROKEN when the supervisor had died.
 */
SHP_EXPORT int shp_pool_join(shp_pool *pool);

/*
 * Stops the pool now: workers are killed, tasks not yet done complete with
 * SHP_ECANCELED, and later calls return SHP_ECLOSED. 0 or -EINVAL.
 */
SHP_EXPORT int shp_pool_terminate(shp_pool *pool);

/* Terminates the pool if it still runs, then releases everything. NULL ok. */
SHP_EXPORT void shp_pool_destroy(shp_pool *pool);

/*
 * out[i] = fn(in[i]) for i in [0, n), in order. chunksize 0 chooses one.
 * Inputs and outputs that lie in shp_alloc() memory are used in place;
 * others are copied through the segment. status: NULL, or an array of n
 * per-task statuses: what the task returned (>= 0), or SHP_ECRASHED when its
 * worker died running it. Returns 0 when every task returned 0, SHP_ETASK when
 * some did not (see status; their out[i] holds what the task wrote), or a
 * negative error: -EINVAL (NULL pool or fn, a NULL buffer with a non-zero
 * size or a non-NULL one with a zero size, no output at all), -EOVERFLOW
 * (n * size overflows), SHP_ECLOSED, SHP_EBROKEN, SHP_ECORRUPT, -ENOMEM.
 */
SHP_EXPORT int shp_map(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                       size_t in_size, void *out, size_t out_size, size_t n,
                       size_t chunksize, int *status);

/* One task. Returns its status (>= 0) or a negative error as shp_map. */
SHP_EXPORT int shp_apply(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                         size_t in_size, void *out, size_t out_size);

/*
 * Shared memory visible to every worker at the same address, 64-byte
 * aligned: inputs and outputs that live here are neither copied in nor out.
 * Returns NULL (errno set to EINVAL or ENOMEM) on failure.
 */
SHP_EXPORT void *shp_alloc(shp_pool *pool, size_t size);

/* Frees memory from shp_alloc(). NULL is a no-op; anything else is ignored. */
SHP_EXPORT void shp_free(shp_pool *pool, void *p);

/* A description of err (a -errno or an SHP_E* code); never NULL. */
SHP_EXPORT const char *shp_strerror(int err);

/* The library's version, "MAJOR.MINOR.PATCH". */
SHP_EXPORT const char *shp_version(void);

#ifdef __cplusplus
}
#endif

#endif /* SHMPOOL_H */
