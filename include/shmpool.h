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
 * Thread safety: every call may be made from several threads of the
 * creating process at once, except that shp_pool_close, _join, _terminate
 * and _destroy must not run concurrently with each other, one iterator must
 * not be used by two threads at once, and _destroy runs alone. No call may
 * be made from a worker (a task must not use its own pool).
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

typedef struct shp_pool shp_pool;   /* a pool of worker processes */
typedef struct shp_async shp_async; /* one asynchronous call (AsyncResult) */
typedef struct shp_iter shp_iter;   /* a streaming result iterator (imap) */

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
 * absurd option), -EOVERFLOW (the segment's size does not fit), -ENOSPC
 * (/dev/shm too small for the segment), -ENOMEM, -EAGAIN (fork failed),
 * -ETIMEDOUT (the supervisor did not report within 10 s), or another -errno
 * from the system.
 */
SHP_EXPORT int shp_pool_create(shp_pool **pool,
                               const struct shp_pool_options *opt);

/* Accepts no new calls from now on; calls under way finish. 0 or -EINVAL. */
SHP_EXPORT int shp_pool_close(shp_pool *pool);

/*
 * After shp_pool_close: waits for the calls under way, asynchronous ones
 * included (not for iterators, which move only when read: their tasks in
 * flight finish, then shp_iter_next returns SHP_ECLOSED), lets the workers
 * and the supervisor exit and reaps them. 0, -EINVAL (NULL, or the pool is
 * not closed), -EDEADLK from a callback, SHP_EBROKEN when the supervisor
 * had died, or SHP_ECORRUPT when a call had found the task ring corrupt
 * (then the workers are stopped as by shp_pool_terminate).
 */
SHP_EXPORT int shp_pool_join(shp_pool *pool);

/*
 * Stops the pool now: workers are killed, tasks not yet done complete with
 * SHP_ECANCELED, calls under way (asynchronous ones included, whose
 * error callbacks run) return SHP_ECLOSED, and so do later calls and open
 * iterators. 0, -EINVAL, or -EDEADLK from a callback.
 */
SHP_EXPORT int shp_pool_terminate(shp_pool *pool);

/* Terminates the pool if it still runs, then releases everything. Every
 * handle and iterator of the pool must be freed first. NULL ok; from a
 * callback it does nothing. */
SHP_EXPORT void shp_pool_destroy(shp_pool *pool);

/*
 * out[i] = fn(in[i]) for i in [0, n), in order. chunksize 0 chooses one.
 * Inputs and outputs that lie in shp_alloc() memory are used in place;
 * others are copied through the segment. status: NULL, or an array of n
 * per-task statuses: what the task returned (>= 0; SHP_ETASK for a negative
 * return), SHP_ECRASHED when its worker died running it, SHP_ETIMEDOUT
 * (per-call deadline), SHP_ECANCELED (never ran: the call was cancelled or
 * failed first). Returns 0 when every task returned 0, SHP_ETASK when
 * some did not (see status; their out[i] holds what the task wrote, and is
 * left as it was for a task that never returned, unless out lies in
 * shp_alloc() memory, where it holds what the task wrote first), or a
 * negative error: -EINVAL (NULL pool or fn, a NULL buffer with a non-zero
 * size or a non-NULL one with a zero size, no output at all), -E2BIG (an
 * element over 4 GiB), -EOVERFLOW (n * size overflows), SHP_ECLOSED,
 * SHP_EBROKEN, SHP_ECORRUPT, -ENOMEM, -EDEADLK (from a callback, when the
 * pool has no free call entry or slot block).
 */
SHP_EXPORT int shp_map(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                       size_t in_size, void *out, size_t out_size, size_t n,
                       size_t chunksize, int *status);

/* One task. Returns its status: what it returned (>= 0), SHP_ETASK when
 * it returned a negative value, SHP_ECRASHED when its worker died running
 * it; or a negative error as shp_map. */
SHP_EXPORT int shp_apply(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                         size_t in_size, void *out, size_t out_size);

/*
 * Per-call options, for what the short forms do not say. Zero-initialised
 * means the short forms' behaviour.
 *
 * Callbacks (asynchronous calls only) run in the pool's result thread, one
 * thread of the caller's process that the pool starts with its first
 * asynchronous call, once per call, after the results and statuses are
 * stored and before shp_async_wait returns. A callback may submit new
 * calls, synchronous ones included; it must not wait for another
 * asynchronous call of the pool (shp_async_wait returns -EDEADLK), nor
 * join or terminate it (-EDEADLK), and it should return quickly: it holds
 * up every other call's callbacks.
 */
struct shp_call_options {
	size_t chunksize;         /* tasks per descriptor; 0: automatic */
	int64_t task_timeout_ns;  /* > 0: a task that runs longer has its
	                           * worker killed (the pool replaces it) and
	                           * gets SHP_ETIMEDOUT. Enforced to within an
	                           * eighth of it, and no finer than 1 ms */
	unsigned retries;         /* times a task whose worker died is re-run
	                           * on another worker before it is reported
	                           * SHP_ECRASHED; timed-out tasks are not */
	int *wstatus;             /* NULL, or n ints: for each task reported
	                           * SHP_ECRASHED or SHP_ETIMEDOUT, the wait
	                           * status of its worker (WIFSIGNALED,
	                           * WTERMSIG, WEXITSTATUS); 0 for the others */
	void (*callback)(shp_async *h, void *arg);       /* result 0 */
	void (*error_callback)(shp_async *h, int result, /* result != 0 */
	                       void *arg);
	void *callback_arg;
};

/* shp_map with options; opt NULL is shp_map with chunksize 0. Returns as
 * shp_map, and -EINVAL also for a negative task_timeout_ns. */
SHP_EXPORT int shp_map_opt(shp_pool *pool, shp_fn fn, void *ctx,
                           const void *in, size_t in_size, void *out,
                           size_t out_size, size_t n, int *status,
                           const struct shp_call_options *opt);

/*
 * Asynchronous forms: the call is queued and *h returned at once (it starts
 * when the pool has room for it). in, out, status and opt->wstatus must
 * stay valid until the call is done; the input is read while the call
 * runs. Arguments are checked as by shp_map, and then -EINVAL for a NULL h
 * or a negative task_timeout_ns, SHP_ECLOSED, SHP_EBROKEN, -ENOMEM, -EAGAIN
 * (the result thread could not be started). When the call fails to start,
 * no callback is ever called and *h is NULL. A handle may be waited for,
 * polled and cancelled from several threads; shp_async_free must be its
 * last use.
 */
SHP_EXPORT int shp_map_async(shp_pool *pool, shp_fn fn, void *ctx,
                             const void *in, size_t in_size, void *out,
                             size_t out_size, size_t n, size_t chunksize,
                             int *status, shp_async **h);
SHP_EXPORT int shp_map_async_opt(shp_pool *pool, shp_fn fn, void *ctx,
                                 const void *in, size_t in_size, void *out,
                                 size_t out_size, size_t n, int *status,
                                 const struct shp_call_options *opt,
                                 shp_async **h);
SHP_EXPORT int shp_apply_async(shp_pool *pool, shp_fn fn, void *ctx,
                               const void *in, size_t in_size, void *out,
                               size_t out_size, shp_async **h);

/* Waits until the call is done and its callback has returned: 0,
 * -ETIMEDOUT when timeout_ns passed first, -EINVAL (NULL), -EDEADLK (from a
 * callback, for a call that is not done). */
SHP_EXPORT int shp_async_wait(shp_async *h, int64_t timeout_ns);
/* 1 when done (shp_async_wait would return at once), 0 if not, -EINVAL. */
SHP_EXPORT int shp_async_ready(const shp_async *h);
/* The call's result once done: as shp_map's return value (map_async), or
 * as shp_apply's (apply_async: the task's status or a negative error);
 * SHP_ECANCELED after shp_async_cancel took effect. -EBUSY while the call
 * runs, -EINVAL for NULL. */
SHP_EXPORT int shp_async_result(const shp_async *h);
/* Tasks done so far and in all; lock-free, cheap enough to poll for a
 * progress bar. 0 or -EINVAL. */
SHP_EXPORT int shp_async_progress(const shp_async *h, size_t *done,
                                  size_t *total);
/* Cancels the tasks not yet started: they get SHP_ECANCELED without
 * running; running ones finish. 0, -EALREADY when the call was already
 * done (or its callback running) or cancelled, -EINVAL. The call still
 * completes (wait for it). */
SHP_EXPORT int shp_async_cancel(shp_async *h);
/* Waits for the call if it still runs, then frees the handle. From the
 * call's own callback, the handle is freed once the callback returns.
 * NULL ok. */
SHP_EXPORT void shp_async_free(shp_async *h);

/*
 * Streaming: results one at a time, in input order (shp_imap) or in
 * completion order (shp_imap_unordered), with at most a bounded window of
 * tasks in flight, so any n runs in constant memory. Tasks run ahead of the
 * consumer only by that window: they are submitted as shp_iter_next takes
 * results. Arguments are checked as by shp_map (out_size may be 0): -EINVAL
 * (also for a NULL it), -E2BIG, -EOVERFLOW; then SHP_ECLOSED, SHP_EBROKEN,
 * -EAGAIN when too many iterators are open on the pool and no other call is
 * under way (an iterator holds its window until freed: windows shrink from
 * 192 tasks to 64 as iterators pile up; about 40 fit; with other calls
 * under way it waits for room), -EDEADLK (from a callback, when it would
 * wait for room), SHP_ECORRUPT, -ENOMEM.
 */
SHP_EXPORT int shp_imap(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                        size_t in_size, size_t n, size_t out_size,
                        size_t chunksize, shp_iter **it);
SHP_EXPORT int shp_imap_unordered(shp_pool *pool, shp_fn fn, void *ctx,
                                  const void *in, size_t in_size, size_t n,
                                  size_t out_size, size_t chunksize,
                                  shp_iter **it);

#define SHP_UNORDERED 1u /* shp_imap_gen flags: completion order */

/*
 * The generator form's input source: writes the next input (in_size bytes;
 * in is NULL when in_size is 0) and returns 1, returns 0 when there is no
 * more input, or a negative error that ends the iteration (shp_iter_next
 * returns it once the results before it are taken; -ETIMEDOUT as -ETIME,
 * which cannot be taken for the wait's own timeout). Called by the thread in
 * shp_iter_next, never ahead of the window: inputs of unknown length are
 * never materialised.
 */
typedef int (*shp_gen_fn)(void *in, void *arg);

/* imap over the inputs gen produces; flags 0 or SHP_UNORDERED; opt may be
 * NULL (its callbacks and wstatus are not used by iterators). Errors as
 * shp_imap, and -EINVAL also for a NULL gen, unknown flags or a negative
 * task_timeout_ns. */
SHP_EXPORT int shp_imap_gen(shp_pool *pool, shp_fn fn, void *ctx,
                            shp_gen_fn gen, void *gen_arg, size_t in_size,
                            size_t out_size, unsigned flags,
                            const struct shp_call_options *opt,
                            shp_iter **it);

/*
 * The next result: returns 1 and sets *index (the task's input position),
 * *out (out_size bytes, valid until the next call on it; NULL when
 * out_size is 0) and *status (as in shp_map); any of them may be NULL.
 * Returns 0 when every result was taken; -ETIMEDOUT when timeout_ns passed
 * first (call again to go on); SHP_ECLOSED when the pool was terminated or
 * joined before the remaining tasks could run; SHP_EBROKEN, SHP_ECORRUPT;
 * the generator's own negative error; -EOVERFLOW when the pool's 2^61 task
 * numbers ran out (generator iterators take them 2^32 at a time); -EINVAL
 * for NULL it. Every negative value but -ETIMEDOUT and -EINVAL is
 * returned again by later calls.
 */
SHP_EXPORT int shp_iter_next(shp_iter *it, size_t *index, const void **out,
                             int *status, int64_t timeout_ns);
/* Cancels what has not run, waits for running tasks, frees. NULL ok. */
SHP_EXPORT void shp_iter_free(shp_iter *it);

/*
 * Shared memory visible to every worker at the same address, 64-byte
 * aligned: inputs and outputs that live here are neither copied in nor out.
 * Returns NULL on failure, with errno set to EINVAL (NULL pool, size 0) or
 * ENOMEM (no room in the arena).
 */
SHP_EXPORT void *shp_alloc(shp_pool *pool, size_t size);

/* Frees memory from shp_alloc(). NULL is a no-op; anything else is ignored. */
SHP_EXPORT void shp_free(shp_pool *pool, void *p);

/*
 * A bounded multi-producer, multi-consumer queue of fixed-size elements in
 * shared memory (Python's multiprocessing.Queue, without pickling): every
 * process forked after shp_queue_create shares it, each of their threads
 * may put and get at once, and no pool is needed. Lock-free: a put or get
 * never waits for another one in flight, and a process killed in the
 * middle of one never wedges the queue. The put it was in either happened
 * or did not (its element is delivered once, or never); the element a get
 * was taking is delivered to another getter. Order is first in, first
 * out, except for an element so recovered. Empty and full waits sleep on
 * futexes: a put wakes a sleeping getter in microseconds.
 *
 * At most 1024 threads (of all processes together) may use one queue at a
 * time: a thread takes a participant entry at its first put or get and
 * keeps it until it exits (or its process does); entries of dead processes
 * are taken back as needed.
 */
typedef struct shp_queue shp_queue;

/*
 * Creates a queue of capacity elements of elem_size bytes each, in a
 * MAP_SHARED anonymous mapping (no name in /dev/shm; the memory goes when
 * the last process unmaps it). Needs /proc, to tell a dead participant
 * from a live one. Returns 0 and sets *q, or -EINVAL (NULL q, a size or
 * capacity of 0, capacity over 1 << 30, elem_size over 1 MiB), -ENOMEM,
 * -ENOSYS (no /proc).
 */
SHP_EXPORT int shp_queue_create(shp_queue **q, size_t elem_size,
                                size_t capacity);

/*
 * Puts one element (elem_size bytes), waiting up to timeout_ns for room.
 * Returns 0; -ETIMEDOUT (still full; timeout 0 never waits); SHP_ECLOSED
 * (closed: nothing was put); -EUSERS (1024 live threads already use the
 * queue); -EINVAL.
 */
SHP_EXPORT int shp_queue_put(shp_queue *q, const void *elem,
                             int64_t timeout_ns);
/*
 * Takes the oldest element into elem, waiting up to timeout_ns for one.
 * Returns 1; 0 once the queue is closed and every element put before the
 * close was taken (the end marker: every later get returns 0 too);
 * -ETIMEDOUT; -EUSERS; -EINVAL.
 */
SHP_EXPORT int shp_queue_get(shp_queue *q, void *elem, int64_t timeout_ns);
/* shp_queue_put and _get that never wait: -EAGAIN instead of -ETIMEDOUT
 * when full (empty). */
SHP_EXPORT int shp_queue_tryput(shp_queue *q, const void *elem);
SHP_EXPORT int shp_queue_tryget(shp_queue *q, void *elem);

/*
 * Puts n elements (n * elem_size bytes, in order), in as few steps as room
 * allows, waiting up to timeout_ns in all. Returns n, or how many were put
 * when the time ran out or the queue was closed part-way (then the rest
 * were not), or the error when none was: -ETIMEDOUT, SHP_ECLOSED, -EUSERS,
 * -EINVAL (also for n of 0 or over INT_MAX).
 */
SHP_EXPORT int shp_queue_put_bulk(shp_queue *q, const void *elems, size_t n,
                                  int64_t timeout_ns);
/*
 * Takes between 1 and max elements, as many as are there, waiting up to
 * timeout_ns for the first. Returns how many; 0 at the end marker;
 * -ETIMEDOUT, -EUSERS, -EINVAL (also for max of 0 or over INT_MAX).
 */
SHP_EXPORT int shp_queue_get_bulk(shp_queue *q, void *elems, size_t max,
                                  int64_t timeout_ns);

/* Accepts no more puts (they return SHP_ECLOSED); getters take what is
 * left, then get the end marker. Wakes every sleeper. Any participant may
 * close; closing again does nothing. 0 or -EINVAL. */
SHP_EXPORT int shp_queue_close(shp_queue *q);

/* Elements in the queue: a snapshot, exact when nobody puts or gets.
 * -EINVAL for NULL. */
SHP_EXPORT int64_t shp_queue_count(const shp_queue *q);

/* Unmaps the queue from the calling process; the others keep theirs. No
 * thread of this process may use q after. NULL ok. */
SHP_EXPORT void shp_queue_destroy(shp_queue *q);

/*
 * Pipelines of stages (pypeln's process stages): items flow from a source
 * through map, filter, flat_map and each stages, each stage run by its
 * own worker processes and followed by a bounded shp_queue of its own
 * (maxsize), so back-pressure holds end to end: a slow stage stalls the
 * ones before it, and the source is read only as fast as the results are
 * taken. Results come out in input order (the default: by the position of
 * the source item they come from, and for a flat_map by the order it
 * emitted them) or, with SHP_UNORDERED, as they complete.
 *
 * An error stops the whole pipeline cleanly: a stage function returning a
 * status of its own, or a stage worker dying (a crash, kill -9). Every
 * queue is closed, every worker is gone when shp_pipeline_free returns,
 * and shp_pipeline_error says which stage and which source item.
 *
 * Stage functions run in the workers, forked from the caller when the
 * pipeline starts (its first shp_pipeline_next or _run): ctx must point at
 * memory that existed then. The source is read in the caller, by a thread
 * of the pipeline's own.
 */
typedef struct shp_pipeline shp_pipeline;
typedef struct shp_emitter shp_emitter;

/* filter: 1 keeps the item, 0 drops it; any other value is an error
 * status that stops the pipeline. */
typedef int (*shp_filter_fn)(const void *in, void *ctx);
/* flat_map: calls shp_emit() for each output (any number, 0 included);
 * returns 0, or a non-zero status that stops the pipeline. */
typedef int (*shp_flat_map_fn)(const void *in, shp_emitter *em, void *ctx);
/* each: a side effect; returns 0, or a status that stops the pipeline. */
typedef int (*shp_each_fn)(const void *in, void *ctx);

/* From a flat_map function: one output (the stage's out_size bytes).
 * 0, -EINVAL, SHP_ECLOSED (the pipeline is stopping: return). */
SHP_EXPORT int shp_emit(shp_emitter *em, const void *out);

/*
 * A pipeline over n items of in_size bytes at in (read while it runs; in
 * may be NULL when in_size is 0), or over what gen produces (shp_gen_fn,
 * called in the pipeline's feeder thread, one item at a time, never ahead
 * of the queues). flags: 0 (input order) or SHP_UNORDERED. Returns 0, or
 * -EINVAL (NULL p or gen, a NULL in with items to read, a size over
 * 1 MiB - 16, bad flags), -EOVERFLOW (n * in_size does not fit in a
 * size_t), -ENOMEM.
 */
SHP_EXPORT int shp_pipeline_create(shp_pipeline **p, const void *in,
                                   size_t in_size, size_t n, unsigned flags);
SHP_EXPORT int shp_pipeline_create_gen(shp_pipeline **p, shp_gen_fn gen,
                                       void *gen_arg, size_t in_size,
                                       unsigned flags);

/*
 * Stages, appended in order before the pipeline starts. workers: processes
 * for the stage (1 to 1024); maxsize: capacity of the queue after it (1 to
 * 1 << 20). out_size: the size of each output (map, flat_map; at most
 * 1 MiB - 16). A filter passes its items on as they are. An each stage
 * passes nothing on: it must be the last. In input order, a pipeline may
 * hold one flat_map. Returns 0, -EINVAL (also: after an each stage, a
 * second flat_map in input order, more than 16 stages, workers that with
 * the previous stage's, or the feeder, and one more exceed the 1024
 * participants of a queue), -EBUSY (started).
 */
SHP_EXPORT int shp_pipeline_map(shp_pipeline *p, shp_fn fn, void *ctx,
                                size_t out_size, unsigned workers,
                                size_t maxsize);
SHP_EXPORT int shp_pipeline_filter(shp_pipeline *p, shp_filter_fn fn,
                                   void *ctx, unsigned workers,
                                   size_t maxsize);
SHP_EXPORT int shp_pipeline_flat_map(shp_pipeline *p, shp_flat_map_fn fn,
                                     void *ctx, size_t out_size,
                                     unsigned workers, size_t maxsize);
SHP_EXPORT int shp_pipeline_each(shp_pipeline *p, shp_each_fn fn, void *ctx,
                                 unsigned workers, size_t maxsize);

/*
 * The next result (the first call starts the pipeline): 1 with *index (the
 * position of the source item it comes from) and out (the last stage's
 * out_size bytes; the source's in_size when the stages are all filters)
 * set; either may be NULL. 0 when every item went through. -ETIMEDOUT
 * (call again to go on). The pipeline's error once it has one: SHP_ETASK
 * (a stage function returned a status of its own) or SHP_ECRASHED (a stage
 * worker died), or the generator's own negative error; returned again by
 * every later call. -EINVAL (NULL, no stages), -EAGAIN (fork failed),
 * -ENOMEM, -ENOSYS (no /proc for the queues), SHP_ECORRUPT (an output the
 * stages could not have produced, or one lost).
 */
SHP_EXPORT int shp_pipeline_next(shp_pipeline *p, size_t *index, void *out,
                                 int64_t timeout_ns);
/* Runs the pipeline to its end, dropping its results (for pipelines that
 * end with each): 0, or what shp_pipeline_next would return. */
SHP_EXPORT int shp_pipeline_run(shp_pipeline *p, int64_t timeout_ns);

/*
 * After an error: the stage it came from (0 is the first stage), the
 * position of the source item that stage was handling (SIZE_MAX when a
 * worker died between items; a worker killed just after passing an item
 * on may still name it), the status (what the stage function
 * returned, or SHP_ECRASHED) and, for a crash, the worker's wait status
 * (0 when the program reaped the worker itself, e.g. in a SIGCHLD handler).
 * Any pointer may be NULL. 0, -ENOENT (no error; a generator's own error
 * is not one of the pipeline's), -EINVAL.
 */
SHP_EXPORT int shp_pipeline_error(const shp_pipeline *p, unsigned *stage,
                                  size_t *index, int *status, int *wstatus);

/* Stops the pipeline if it still runs (workers get 1 s to finish their
 * item, then SIGKILL), reaps every worker, frees. NULL ok. */
SHP_EXPORT void shp_pipeline_free(shp_pipeline *p);

/*
 * Processes (Python's multiprocessing.Process): a forked child that runs
 * fn(arg) and exits with its return value & 0xff. No pool is needed. The
 * child is a fork of the calling thread: from a multi-threaded program it
 * may rely only on what fork() keeps (as with Python's fork start method).
 * fn should return rather than call exit(), which would run the parent's
 * atexit handlers in the child.
 *
 * A handle belongs to the process that started it: join and kill from any
 * other (a fork that inherited a copy) return -ECHILD, and free there only
 * releases the copy. join, kill, wait_status and pid may be called from
 * several threads at once; free must be the handle's last use.
 */
typedef struct shp_process shp_process;
typedef int (*shp_process_fn)(void *arg);

/*
 * Forks a child that runs fn(arg), fflush()es stdout and stderr, and
 * _exit()s with fn's return value & 0xff. stdout and stderr are flushed
 * before the fork, so that what was buffered is not written twice.
 * Returns 0 and sets *p, or -EINVAL (NULL p or fn), -ENOMEM, -EAGAIN (fork
 * failed: too many processes).
 */
SHP_EXPORT int shp_process_start(shp_process **p, shp_process_fn fn,
                                 void *arg);

/*
 * Waits up to timeout_ns for the child to exit, and reaps it. Several
 * threads may join at once: one reaps, all return 0. Returns 0 once it has
 * exited (then at once, every time); -ETIMEDOUT; -ECHILD (somebody else
 * reaped it, e.g. SIGCHLD is ignored: its status is lost, said as soon as
 * the child is gone; or called from a process other than the starter);
 * -EINVAL.
 */
SHP_EXPORT int shp_process_join(shp_process *p, int64_t timeout_ns);

/*
 * The child's wait status, for WIFEXITED/WEXITSTATUS and WIFSIGNALED/
 * WTERMSIG, once a join returned 0. Returns 0; -EAGAIN (not joined yet);
 * -ECHILD (lost, see join); -EINVAL. Python's exitcode is
 * WIFEXITED(s) ? WEXITSTATUS(s) : -WTERMSIG(s).
 */
SHP_EXPORT int shp_process_wait_status(const shp_process *p, int *wstatus);

/* The child's pid (still after it was reaped), or -EINVAL. */
SHP_EXPORT int shp_process_pid(const shp_process *p);

/*
 * Sends sig to the child (SIGTERM: Python's terminate(); SIGKILL: kill()),
 * through its pidfd where there is one, so that it hits no other process.
 * Returns 0; -ESRCH once it was reaped, here or by somebody
 * else (nothing is sent); -ECHILD (not the starter); -EINVAL (NULL, bad
 * signal number); -EPERM (the child changed its credentials). Without a
 * pidfd it goes by pid: see the docs for a program that reaps children
 * itself or ignores SIGCHLD.
 */
SHP_EXPORT int shp_process_kill(shp_process *p, int sig);

/* Frees the handle. A child still running is SIGKILLed (as kill does it)
 * and reaped first: no zombie is left. NULL ok. */
SHP_EXPORT void shp_process_free(shp_process *p);

/*
 * Ordered collection by position: n slots of elem_size bytes in shared
 * memory, where the process computing result i puts it at position i and
 * a reader takes results in position order as they arrive. It replaces
 * Python's output.put((pos, result)) followed by results.sort().
 *
 * Create it before forking the writers (shp_process_start or fork()): it
 * is a MAP_SHARED anonymous mapping, shared by the forks made after it, and
 * has no name in /dev/shm. Each position is written once. A writer killed
 * while writing its position never hangs the reader and never hands it
 * torn bytes: the reader gets SHP_ECRASHED for that position. Puts, gets
 * and fails may come from any thread of any process sharing it; next from
 * one thread at a time per handle (each process's handle has its own
 * cursor); destroy must be a handle's last use.
 */
typedef struct shp_collect shp_collect;

/*
 * Creates a collection of n positions of elem_size bytes each. Needs /proc
 * (to tell a dead writer from a live one). Returns 0 and sets *c, or
 * -EINVAL (NULL c, n or elem_size 0), -EOVERFLOW (n * elem_size overflows),
 * -ENOMEM, -ENOSYS (no /proc).
 */
SHP_EXPORT int shp_collect_create(shp_collect **c, size_t n,
                                  size_t elem_size);

/*
 * Stores elem (elem_size bytes) as position pos's result and wakes the
 * reader. Returns 0; -EEXIST (pos was already written, failed, or is being
 * written); -EINVAL (NULL c or elem, pos >= n); -ENOSYS (no /proc);
 * SHP_ECORRUPT (the slot was written over while we wrote it).
 */
SHP_EXPORT int shp_collect_put(shp_collect *c, size_t pos, const void *elem);

/*
 * The next position's result, in position order 0, 1, ..., n - 1, waiting
 * up to timeout_ns for it to arrive. *pos (if pos is not NULL) is set to
 * the position concerned, and elem (if not NULL) receives elem_size bytes.
 * Returns:
 *   1             the element is in elem;
 *   0             every position has been taken (*pos untouched);
 *   -ETIMEDOUT    the position has not arrived yet; the next call waits
 *                 for the same position;
 *   SHP_ECRASHED  its writer died while writing it;
 *   a status < 0  given to shp_collect_fail for it;
 *   SHP_ECORRUPT  its slot holds a value no writer stores;
 *   -EINVAL       NULL c.
 * After every result but -ETIMEDOUT (and -EINVAL) the next call moves on
 * to the next position; elem is written only when 1 is returned.
 */
SHP_EXPORT int shp_collect_next(shp_collect *c, size_t *pos, void *elem,
                                int64_t timeout_ns);

/*
 * Position pos's result, waiting up to timeout_ns for it: returns as
 * shp_collect_next (never 0), and -EINVAL for pos >= n. Random access: it
 * neither takes the position nor moves shp_collect_next's cursor, and may
 * be repeated.
 */
SHP_EXPORT int shp_collect_get(shp_collect *c, size_t pos, void *elem,
                               int64_t timeout_ns);

/*
 * Marks position pos failed, with status, when its writer cannot write it
 * (typically: shp_process_join showed that the process died before it
 * did), so that the reader is not left waiting: it gets status for pos.
 * status must be negative and not -ETIMEDOUT, which the reader could not
 * tell from its own: SHP_ECRASHED, SHP_ETIMEDOUT or a code of your own.
 * Returns 0; -EEXIST (pos was written, or is being written: what the
 * writer left wins, SHP_ECRASHED included); -EINVAL; -ENOSYS; SHP_ECORRUPT
 * (the slot was written over while we wrote it).
 */
SHP_EXPORT int shp_collect_fail(shp_collect *c, size_t pos, int status);

/* Unmaps the collection from the calling process (the others keep their
 * view) and frees the handle. NULL ok. */
SHP_EXPORT void shp_collect_destroy(shp_collect *c);

/* A description of err (a -errno or an SHP_E* code); never NULL. */
SHP_EXPORT const char *shp_strerror(int err);

/* The library's version, "MAJOR.MINOR.PATCH". */
SHP_EXPORT const char *shp_version(void);

#ifdef __cplusplus
}
#endif

#endif /* SHMPOOL_H */
