/*
 * Argument validation of every function of the pool API (shp_pool_*,
 * shp_map*, shp_apply*, shp_async_*, shp_imap*, shp_iter_*, shp_alloc,
 * shp_free, shp_strerror, shp_version; the queue is fuzz_queue.c's, and
 * collections, processes and pipelines fuzz_api.c's), with fuzzed arguments:
 * NULL and non-NULL pointers, sizes from 0 to SIZE_MAX, n * size
 * overflows, bad option fields, timeouts of every sign and size, any int
 * for shp_strerror, foreign pointers for shp_free.
 *
 * The rules are include/shmpool.h's and docs/api.md's: a call that breaks
 * one must return the documented error (one of them, when it breaks
 * several), and must not touch its buffers (they are one-byte blocks, so
 * ASan would see it). A call that breaks none runs for real, on one pool
 * made once with two workers, and must return >= 0, or the SHP_ETASK its
 * tasks' statuses call for, with every result right. Valid calls are kept
 * small; shp_pool_create is only ever given options it must refuse before
 * it forks anything.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "shmpool.h"

#define MAX_N 64         /* tasks in a call that runs */
#define MAX_ELEM 4096    /* bytes in an element of a call that runs */
#define ARENA_BYTES (4u << 20)
#define OPS_PER_INPUT 16 /* bounded time per input */
#define STATUS_UNSET 0x5eed5eed

/* Bits of the set of errors a call may return. */
#define E_INVAL 1u
#define E_2BIG 2u
#define E_OVERFLOW 4u

static shp_pool *pool;

/* The task's view of the call: in the arena, so the workers see what the
 * parent stores there before each call. */
struct fctx {
	uint32_t in_size, out_size;
};
static struct fctx *fctx;

/* Callbacks of the asynchronous calls; they run in the result thread. */
static unsigned ncallback, nerror_callback;

/* A pointer the library must not use: a call that gets it is refused. */
static unsigned char *poison;

static uint32_t hash_in(const unsigned char *in, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++)
		h = (h ^ in[i]) * 16777619u;
	return h;
}

static unsigned char out_byte(uint32_t h, size_t j)
{
	return (unsigned char)((h >> (8 * (j % 4))) ^ j);
}

/* Its status: a quarter of the inputs return a positive code. */
static int status_of(uint32_t h)
{
	return h % 4 == 0 ? (int)(h % 97) + 1 : 0;
}

static int task(const void *in, void *out, void *ctx)
{
	const struct fctx *c = ctx;
	uint32_t h = hash_in(in, c->in_size);

	for (size_t j = 0; j < c->out_size; j++)
		((unsigned char *)out)[j] = out_byte(h, j);
	return status_of(h);
}

static void on_done(shp_async *h, void *arg)
{
	(void)h;
	(void)arg;
	__atomic_fetch_add(&ncallback, 1, __ATOMIC_SEQ_CST);
}

static void on_error(shp_async *h, int result, void *arg)
{
	(void)h;
	(void)result;
	(void)arg;
	__atomic_fetch_add(&nerror_callback, 1, __ATOMIC_SEQ_CST);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* NOLINTNEXTLINE(readability-non-const-parameter): libFuzzer's signature */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* A small ring, so that calls fill it; no spinning: the fuzzer,
	 * the workers and the supervisor share the machine. */
	struct shp_pool_options o = { .workers = 2, .queue_cells = 8,
		                      .arena_bytes = ARENA_BYTES, .spin_us = -1 };
	int err = shp_pool_create(&pool, &o);

	(void)argc;
	(void)argv;
	FUZZ_CHECK(err == 0, "shp_pool_create: %s", shp_strerror(err));
	fctx = shp_alloc(pool, sizeof(*fctx));
	poison = malloc(1);
	FUZZ_CHECK(fctx && poison, "out of memory");
	return 0;
}

/* ---------------------------------------------------------- arguments */

/* Sizes from every class the checks tell apart. */
static size_t pick_size(struct fuzz_in *in)
{
	switch (fuzz_below(in, 8)) {
	case 0:
	case 1:
		return 0;
	case 2:
	case 3:
		return 1 + fuzz_below(in, 48); /* inline in the slot */
	case 4:
		return 49 + fuzz_below(in, MAX_ELEM - 48); /* staged */
	case 5:
		return (size_t)UINT32_MAX + fuzz_below(in, 2); /* the E2BIG edge */
	case 6:
		return SIZE_MAX - fuzz_below(in, 4);
	default:
		return (size_t)fuzz_u64(in);
	}
}

static size_t pick_n(struct fuzz_in *in)
{
	switch (fuzz_below(in, 6)) {
	case 0:
		return 0;
	case 1:
	case 2:
	case 3:
		return 1 + fuzz_below(in, MAX_N);
	case 4:
		return SIZE_MAX / (1 + fuzz_below(in, 8));
	default:
		return (size_t)fuzz_u64(in);
	}
}

/* Timeouts: negative (forever), 0 (poll), short, INT64_MAX and around. */
static int64_t pick_timeout(struct fuzz_in *in)
{
	switch (fuzz_below(in, 5)) {
	case 0:
		return -1 - (int64_t)fuzz_below(in, 1000);
	case 1:
		return 0;
	case 2:
		return (int64_t)fuzz_below(in, 2000000);
	case 3:
		return INT64_MAX - (int64_t)fuzz_below(in, 1000);
	default:
		return INT64_MIN + (int64_t)fuzz_below(in, 1000);
	}
}

/* One array call's arguments; the buffers are made by prepare(). */
struct call_args {
	bool no_pool, no_fn, no_in, no_out, no_status, no_handle;
	bool in_arena, out_arena, use_wstatus, with_opt;
	size_t in_size, out_size, n, chunksize;
	int64_t task_timeout_ns;
	unsigned retries;
	bool iter; /* imap: no out array, no status */
};

static void pick_args(struct fuzz_in *in, struct call_args *a, bool iter)
{
	uint32_t f = fuzz_u32(in);

	memset(a, 0, sizeof(*a));
	a->iter = iter;
	a->no_pool = f % 16 == 0;
	a->no_fn = (f >> 4) % 16 == 0;
	a->no_in = (f >> 8) & 1;
	a->no_out = (f >> 9) & 1;
	a->no_status = (f >> 10) & 1;
	a->no_handle = (f >> 11) % 16 == 0;
	a->in_arena = (f >> 15) & 1;
	a->out_arena = (f >> 16) & 1;
	a->use_wstatus = (f >> 17) & 1;
	a->with_opt = (f >> 18) & 1;
	a->in_size = pick_size(in);
	a->out_size = pick_size(in);
	a->n = pick_n(in);
	a->chunksize = (f >> 19) & 1 ? fuzz_u64(in) : fuzz_below(in, 4);
	a->retries = fuzz_below(in, 3);
	a->task_timeout_ns = (f >> 20) & 1 ? pick_timeout(in) : 0;
	/* The rules pair a NULL buffer with size 0; mostly keep to them, so
	 * that the other checks are reached. */
	if ((f >> 21) % 4 != 0) {
		a->no_in = a->in_size == 0;
		a->no_out = a->out_size == 0;
	}
}

static bool mul_overflows(size_t a, size_t b)
{
	size_t r;

	return __builtin_mul_overflow(a, b, &r);
}

/* The errors the arguments call for, as documented; 0: none. */
static unsigned expected_errors(const struct call_args *a, bool async,
                                bool apply)
{
	unsigned e = 0;

	if (a->no_pool || a->no_fn || a->no_in != (a->in_size == 0))
		e |= E_INVAL;
	if (!a->iter && a->no_out != (a->out_size == 0))
		e |= E_INVAL;
	if (!a->iter && !apply && a->no_out && a->no_status)
		e |= E_INVAL; /* no output at all */
	if (a->with_opt && a->task_timeout_ns < 0)
		e |= E_INVAL;
	if (async && a->no_handle)
		e |= E_INVAL;
	if (a->in_size > UINT32_MAX || a->out_size > UINT32_MAX)
		e |= E_2BIG;
	if (mul_overflows(a->n, a->in_size) || mul_overflows(a->n, a->out_size))
		e |= E_OVERFLOW;
	return e;
}

static bool in_set(int r, unsigned e)
{
	return ((e & E_INVAL) && r == -EINVAL) || ((e & E_2BIG) && r == -E2BIG) ||
	       ((e & E_OVERFLOW) && r == -EOVERFLOW);
}

/* A valid call that would not run in a moment is made small: the checks
 * it passes stay passed. Deadlines short enough to fire on a scheduling
 * hiccup would only cost worker restarts; they are lengthened. */
static void shrink(struct call_args *a)
{
	if (a->n > MAX_N)
		a->n %= MAX_N + 1;
	if (a->in_size > MAX_ELEM)
		a->in_size = 1 + a->in_size % MAX_ELEM;
	if (a->out_size > MAX_ELEM)
		a->out_size = 1 + a->out_size % MAX_ELEM;
	if (a->task_timeout_ns > 0 && a->task_timeout_ns < 1000000000)
		a->task_timeout_ns += 1000000000;
}

/* The buffers of a call that runs, and what it must produce. */
struct call_bufs {
	unsigned char *in, *out, *out_before;
	bool in_shared, out_shared; /* from shp_alloc: used in place */
	int *status, *wstatus;
	int *want_status;
	bool any_failed;
};

/* n elements of size bytes from the arena when asked and there is room,
 * else from the heap; NULL for elements of size 0, a byte for n = 0 (the
 * pointer of a call with no tasks is checked all the same). */
static void *buffer(size_t n, size_t elem, bool arena, bool *shared)
{
	size_t size = n ? n * elem : 1;
	void *p = NULL;

	*shared = false;
	if (elem == 0)
		return NULL;
	if (arena)
		p = shp_alloc(pool, size);
	*shared = p != NULL;
	if (!p)
		p = malloc(size);
	FUZZ_CHECK(p, "out of memory");
	return p;
}

static void release(void *p, bool shared)
{
	if (shared)
		shp_free(pool, p);
	else
		free(p);
}

/* The hash of task i's input, as the task computes it. */
static uint32_t input_hash(const struct call_args *a, const struct call_bufs *b,
                           size_t i)
{
	return b->in ? hash_in(b->in + i * a->in_size, a->in_size)
	             : hash_in(NULL, 0);
}

static void prepare(struct fuzz_in *in, const struct call_args *a,
                    struct call_bufs *b)
{
	size_t n = a->n;

	memset(b, 0, sizeof(*b));
	b->in = buffer(n, a->in_size, a->in_arena, &b->in_shared);
	b->out = a->iter ? NULL
	                 : buffer(n, a->out_size, a->out_arena, &b->out_shared);
	b->out_before = malloc(n * a->out_size + 1);
	b->status = a->no_status || a->iter ? NULL : malloc(n * sizeof(int) + 1);
	b->wstatus = a->use_wstatus ? malloc(n * sizeof(int) + 1) : NULL;
	b->want_status = malloc(n * sizeof(int) + 1);
	FUZZ_CHECK(b->out_before && b->want_status &&
	           (b->status || a->no_status || a->iter) &&
	           (b->wstatus || !a->use_wstatus), "out of memory");
	for (size_t i = 0; i < n * a->in_size; i++)
		b->in[i] = fuzz_u8(in);
	for (size_t i = 0; b->out && i < n * a->out_size; i++)
		b->out[i] = b->out_before[i] = (unsigned char)(i * 7);
	for (size_t i = 0; i < n; i++) {
		b->want_status[i] = status_of(input_hash(a, b, i));
		b->any_failed |= b->want_status[i] != 0;
		if (b->status)
			b->status[i] = STATUS_UNSET;
		if (b->wstatus)
			b->wstatus[i] = STATUS_UNSET;
	}
	fctx->in_size = (uint32_t)a->in_size;
	fctx->out_size = (uint32_t)a->out_size;
}

static void release_bufs(struct call_bufs *b)
{
	release(b->in, b->in_shared);
	release(b->out, b->out_shared);
	free(b->out_before);
	free(b->status);
	free(b->wstatus);
	free(b->want_status);
}

/* Task i's output, as the task computes it, must be at got. */
static void check_output(const struct call_args *a, const struct call_bufs *b,
                         size_t i, const unsigned char *got)
{
	uint32_t h = input_hash(a, b, i);

	for (size_t j = 0; j < a->out_size; j++)
		FUZZ_CHECK(got[j] == out_byte(h, j),
		           "task %zu: out[%zu] = %u, want %u", i, j, got[j],
		           out_byte(h, j));
}

/* After an array call that ran: every status, output and wait status;
 * cancelled: tasks may also have been cancelled, output untouched. */
static void check_results(const struct call_args *a, const struct call_bufs *b,
                          bool cancelled)
{
	for (size_t i = 0; i < a->n; i++) {
		int st = b->status ? b->status[i] : b->want_status[i];
		/* Cancelled: a task may not have run; without statuses there
		 * is no telling which. */
		bool skipped = cancelled && (!b->status || st == SHP_ECANCELED);

		FUZZ_CHECK(st == b->want_status[i] || skipped,
		           "task %zu: status %d, want %d", i, st,
		           b->want_status[i]);
		if (b->wstatus)
			FUZZ_CHECK(b->wstatus[i] == 0, "task %zu: wstatus %#x", i,
			           b->wstatus[i]);
		if (b->out && !skipped)
			check_output(a, b, i, b->out + i * a->out_size);
	}
}

static void fill_opt(const struct call_args *a, struct shp_call_options *o,
                     const struct call_bufs *b, bool callbacks)
{
	memset(o, 0, sizeof(*o));
	o->chunksize = a->chunksize;
	o->task_timeout_ns = a->task_timeout_ns;
	o->retries = a->retries;
	o->wstatus = b ? b->wstatus : (a->use_wstatus ? (int *)poison : NULL);
	if (callbacks) {
		o->callback = on_done;
		o->error_callback = on_error;
	}
}

/* ------------------------------------------------------ synchronous */

static void fuzz_map(struct fuzz_in *in)
{
	struct call_args a;
	struct shp_call_options o;
	struct call_bufs b, v;
	unsigned form = fuzz_below(in, 3); /* shp_map, shp_map_opt, shp_apply */
	unsigned e;
	int r;

	pick_args(in, &a, false);
	if (form == 2)
		a.n = 1;
	if (form != 1)
		a.with_opt = false; /* only shp_map_opt takes options */
	e = expected_errors(&a, false, form == 2);
	if (e) {
		shp_pool *p = a.no_pool ? NULL : pool;
		shp_fn fn = a.no_fn ? NULL : task;
		void *pi = a.no_in ? NULL : poison, *po = a.no_out ? NULL : poison;
		int *ps = a.no_status ? NULL : (int *)poison;

		fill_opt(&a, &o, NULL, false);
		if (form == 0)
			r = shp_map(p, fn, fctx, pi, a.in_size, po, a.out_size, a.n,
			            a.chunksize, ps);
		else if (form == 1)
			r = shp_map_opt(p, fn, fctx, pi, a.in_size, po, a.out_size,
			                a.n, ps, a.with_opt ? &o : NULL);
		else
			r = shp_apply(p, fn, fctx, pi, a.in_size, po, a.out_size);
		FUZZ_CHECK(in_set(r, e), "form %u: %d (%s), want set %#x", form, r,
		           shp_strerror(r), e);
		return;
	}
	shrink(&a);
	prepare(in, &a, &b);
	fill_opt(&a, &o, &b, false);
	if (form == 0) {
		r = shp_map(pool, task, fctx, b.in, a.in_size, b.out, a.out_size,
		            a.n, a.chunksize, b.status);
	} else if (form == 1) {
		r = shp_map_opt(pool, task, fctx, b.in, a.in_size, b.out,
		                a.out_size, a.n, b.status, a.with_opt ? &o : NULL);
	} else {
		/* The task's status itself. */
		r = shp_apply(pool, task, fctx, b.in, a.in_size, b.out,
		              a.out_size);
	}
	FUZZ_CHECK(r == (form == 2 ? b.want_status[0]
	                           : b.any_failed ? SHP_ETASK : 0),
	           "form %u of %zu tasks: %d (%s)", form, a.n, r, shp_strerror(r));
	v = b;
	if (form == 2)
		v.status = NULL; /* shp_apply has none */
	if (form != 1 || !a.with_opt)
		v.wstatus = NULL; /* not given to the call */
	check_results(&a, &v, false);
	release_bufs(&b);
}

/* ----------------------------------------------------- asynchronous */

static void fuzz_async(struct fuzz_in *in)
{
	struct call_args a;
	struct shp_call_options o;
	struct call_bufs b, v;
	unsigned form = fuzz_below(in, 3); /* map_async, _opt, apply_async */
	unsigned cb0 = __atomic_load_n(&ncallback, __ATOMIC_SEQ_CST);
	unsigned ecb0 = __atomic_load_n(&nerror_callback, __ATOMIC_SEQ_CST);
	shp_async *h = (shp_async *)poison;
	size_t done = 0, total = 0;
	bool cancelled = false, callbacks;
	unsigned e;
	int r, result;

	pick_args(in, &a, false);
	if (form == 2)
		a.n = 1;
	if (form != 1)
		a.with_opt = false;
	e = expected_errors(&a, true, form == 2);
	if (!e)
		shrink(&a);
	if (e) {
		shp_pool *p = a.no_pool ? NULL : pool;
		shp_fn fn = a.no_fn ? NULL : task;
		void *pi = a.no_in ? NULL : poison, *po = a.no_out ? NULL : poison;
		int *ps = a.no_status ? NULL : (int *)poison;
		shp_async **ph = a.no_handle ? NULL : &h;

		fill_opt(&a, &o, NULL, true);
		if (form == 0)
			r = shp_map_async(p, fn, fctx, pi, a.in_size, po, a.out_size,
			                  a.n, a.chunksize, ps, ph);
		else if (form == 1)
			r = shp_map_async_opt(p, fn, fctx, pi, a.in_size, po,
			                      a.out_size, a.n, ps,
			                      a.with_opt ? &o : NULL, ph);
		else
			r = shp_apply_async(p, fn, fctx, pi, a.in_size, po,
			                    a.out_size, ph);
		FUZZ_CHECK(in_set(r, e), "async form %u: %d (%s), want set %#x",
		           form, r, shp_strerror(r), e);
		FUZZ_CHECK(a.no_handle || h == NULL, "a refused call set *h");
		/* A call that fails to start never calls back. */
		FUZZ_CHECK(ncallback == cb0 && nerror_callback == ecb0,
		           "a refused call called back");
		return;
	}
	prepare(in, &a, &b);
	fill_opt(&a, &o, &b, true);
	callbacks = form == 1 && a.with_opt;
	if (form == 0)
		r = shp_map_async(pool, task, fctx, b.in, a.in_size, b.out,
		                  a.out_size, a.n, a.chunksize, b.status, &h);
	else if (form == 1)
		r = shp_map_async_opt(pool, task, fctx, b.in, a.in_size, b.out,
		                      a.out_size, a.n, b.status,
		                      a.with_opt ? &o : NULL, &h);
	else
		r = shp_apply_async(pool, task, fctx, b.in, a.in_size, b.out,
		                    a.out_size, &h);
	FUZZ_CHECK(r == 0 && h, "async form %u: %d (%s)", form, r,
	           shp_strerror(r));
	r = shp_async_wait(h, pick_timeout(in));
	FUZZ_CHECK(r == 0 || r == -ETIMEDOUT, "shp_async_wait: %d", r);
	if (fuzz_u8(in) % 4 == 0) {
		r = shp_async_cancel(h);
		FUZZ_CHECK(r == 0 || r == -EALREADY, "shp_async_cancel: %d", r);
		cancelled = r == 0;
		FUZZ_CHECK(shp_async_cancel(h) == -EALREADY, "second cancel");
	}
	r = shp_async_ready(h);
	FUZZ_CHECK(r == 0 || r == 1, "shp_async_ready: %d", r);
	r = shp_async_result(h);
	FUZZ_CHECK(r == -EBUSY || shp_async_ready(h) == 1, "result %d early", r);
	FUZZ_CHECK(shp_async_wait(h, -1) == 0, "shp_async_wait(-1)");
	FUZZ_CHECK(shp_async_ready(h) == 1, "not ready after wait");
	FUZZ_CHECK(shp_async_progress(h, &done, &total) == 0 &&
	           shp_async_progress(h, NULL, NULL) == 0, "progress");
	FUZZ_CHECK(total == a.n && done <= total && (cancelled || done == total),
	           "progress %zu/%zu of %zu", done, total, a.n);
	result = shp_async_result(h);
	if (cancelled)
		FUZZ_CHECK(result == SHP_ECANCELED,
		           "form %u of %zu tasks cancelled: result %d", form, a.n,
		           result);
	else if (form == 2)
		FUZZ_CHECK(result == b.want_status[0], "apply_async: %d, want %d",
		           result, b.want_status[0]);
	else
		FUZZ_CHECK(result == (b.any_failed ? SHP_ETASK : 0),
		           "map_async of %zu: %d", a.n, result);
	FUZZ_CHECK(shp_async_cancel(h) == -EALREADY, "cancel after done");
	/* Exactly one callback, the one the result calls for, and it has
	 * returned by the time the wait did. */
	FUZZ_CHECK(__atomic_load_n(&ncallback, __ATOMIC_SEQ_CST) - cb0 ==
	                   (unsigned)(callbacks && result == 0) &&
	           __atomic_load_n(&nerror_callback, __ATOMIC_SEQ_CST) - ecb0 ==
	                   (unsigned)(callbacks && result != 0),
	           "callbacks for result %d", result);
	shp_async_free(h);
	v = b;
	if (!callbacks)
		v.wstatus = NULL; /* not given to the call */
	if (form == 2) {
		v.status = NULL; /* the handle's own */
		if (cancelled)
			v.out = NULL; /* it may or may not have run */
	}
	check_results(&a, &v, cancelled);
	release_bufs(&b);
}

/* --------------------------------------------------------- iterators */

static void iterate(struct fuzz_in *in, shp_iter *it, const struct call_args *a,
                    const struct call_bufs *b, bool ordered, bool gen,
                    int gen_err)
{
	size_t taken = 0, stop = fuzz_below(in, MAX_N + 8);
	unsigned char seen[MAX_N] = { 0 };
	unsigned ask = fuzz_u8(in);
	int64_t timeout = pick_timeout(in);

	for (;;) {
		size_t idx = SIZE_MAX;
		const void *out = poison;
		int st = STATUS_UNSET;
		int r;

		if (taken == stop)
			break; /* freed early: the rest is cancelled */
		r = shp_iter_next(it, ask & 1 ? &idx : NULL, ask & 2 ? &out : NULL,
		                  ask & 4 ? &st : NULL, timeout);
		if (r == -ETIMEDOUT) {
			FUZZ_CHECK(timeout >= 0, "timed out with timeout %lld",
			           (long long)timeout);
			continue;
		}
		if (r != 1) {
			FUZZ_CHECK(r == (gen ? gen_err : 0) && taken == a->n,
			           "iterator ended with %d after %zu of %zu", r,
			           taken, a->n);
			/* And says so again. */
			FUZZ_CHECK(shp_iter_next(it, NULL, NULL, NULL, 0) == r,
			           "end not sticky");
			break;
		}
		FUZZ_CHECK(taken < a->n, "a result past the end");
		if (!(ask & 1)) {
			taken++;
			continue; /* nothing to check it against */
		}
		FUZZ_CHECK(idx < a->n && !seen[idx], "index %zu", idx);
		FUZZ_CHECK(!ordered || idx == taken, "index %zu at %zu", idx,
		           taken);
		seen[idx] = 1;
		if (ask & 4)
			FUZZ_CHECK(st == b->want_status[idx], "task %zu: status %d, "
			           "want %d", idx, st, b->want_status[idx]);
		if (ask & 2) {
			FUZZ_CHECK((out == NULL) == (a->out_size == 0),
			           "out %p for out_size %zu", out, a->out_size);
			if (out)
				check_output(a, b, idx, out);
		}
		taken++;
	}
	shp_iter_free(it);
}

static void fuzz_imap(struct fuzz_in *in)
{
	struct call_args a;
	struct call_bufs b;
	bool unordered = fuzz_u8(in) & 1;
	shp_iter *it = (shp_iter *)poison;
	unsigned e;
	int r;

	pick_args(in, &a, true);
	a.with_opt = false; /* imap takes none */
	e = expected_errors(&a, true, false);
	if (e) {
		r = (unordered ? shp_imap_unordered : shp_imap)(
		        a.no_pool ? NULL : pool, a.no_fn ? NULL : task, fctx,
		        a.no_in ? NULL : poison, a.in_size, a.n, a.out_size,
		        a.chunksize, a.no_handle ? NULL : &it);
		FUZZ_CHECK(in_set(r, e), "imap: %d (%s), want set %#x", r,
		           shp_strerror(r), e);
		FUZZ_CHECK(a.no_handle || it == NULL, "a refused imap set *it");
		return;
	}
	shrink(&a);
	prepare(in, &a, &b);
	r = (unordered ? shp_imap_unordered : shp_imap)(pool, task, fctx, b.in,
	                                                a.in_size, a.n, a.out_size,
	                                                a.chunksize, &it);
	FUZZ_CHECK(r == 0 && it, "imap of %zu: %d (%s)", a.n, r, shp_strerror(r));
	iterate(in, it, &a, &b, !unordered, false, 0);
	release_bufs(&b);
}

/* The generator's state: inputs are the index's bytes, then its error. */
struct gen_state {
	size_t next, count, in_size;
	int err;
};

static int gen(void *in, void *arg)
{
	struct gen_state *g = arg;

	if (g->next == g->count)
		return g->err;
	for (size_t j = 0; j < g->in_size; j++)
		((unsigned char *)in)[j] = (unsigned char)(g->next + j);
	g->next++;
	return 1;
}

static void fuzz_imap_gen(struct fuzz_in *in)
{
	struct call_args a;
	struct call_bufs b;
	struct shp_call_options o;
	struct gen_state g = { 0 };
	unsigned cb0 = __atomic_load_n(&ncallback, __ATOMIC_SEQ_CST);
	unsigned ecb0 = __atomic_load_n(&nerror_callback, __ATOMIC_SEQ_CST);
	uint8_t f = fuzz_u8(in);
	unsigned flags = f & 1 ? SHP_UNORDERED : 0;
	bool no_gen = f % 16 == 2;
	shp_iter *it = (shp_iter *)poison;
	unsigned e;
	int r;

	pick_args(in, &a, true);
	a.no_in = true; /* no array: the generator writes each input */
	a.n = 0;        /* nor a count to overflow */
	if (f % 16 == 4)
		flags |= 1u << (1 + fuzz_below(in, 31));
	e = expected_errors(&a, true, false) & ~E_INVAL;
	if (a.no_pool || a.no_fn || a.no_handle || no_gen ||
	    (flags & ~SHP_UNORDERED) || (a.with_opt && a.task_timeout_ns < 0))
		e |= E_INVAL;
	/* Iterators use neither callbacks nor wait statuses: both are given,
	 * neither may be touched. */
	fill_opt(&a, &o, NULL, true);
	if (e) {
		r = shp_imap_gen(a.no_pool ? NULL : pool, a.no_fn ? NULL : task, fctx,
		                 no_gen ? NULL : gen, &g, a.in_size, a.out_size, flags,
		                 a.with_opt ? &o : NULL, a.no_handle ? NULL : &it);
		FUZZ_CHECK(in_set(r, e), "imap_gen: %d (%s), want set %#x", r,
		           shp_strerror(r), e);
		FUZZ_CHECK(g.next == 0, "a refused imap_gen asked for input");
		return;
	}
	shrink(&a);
	o.task_timeout_ns = a.task_timeout_ns;
	/* The inputs the generator will give, for the expectations. */
	a.n = fuzz_below(in, MAX_N + 1);
	a.no_in = a.in_size == 0;
	prepare(in, &a, &b);
	for (size_t i = 0; i < a.n * a.in_size; i++)
		b.in[i] = (unsigned char)(i / a.in_size + i % a.in_size);
	for (size_t i = 0; i < a.n; i++)
		b.want_status[i] = status_of(input_hash(&a, &b, i));
	/* Any negative error but -ETIMEDOUT, which shp_iter_next's caller
	 * cannot tell from its own timeout. */
	g = (struct gen_state){ .count = a.n, .in_size = a.in_size,
		                .err = f & 2 ? -(int)(1 + fuzz_below(in, 200)) : 0 };
	if (g.err == -ETIMEDOUT)
		g.err = -EIO;
	r = shp_imap_gen(pool, task, fctx, gen, &g, a.in_size, a.out_size, flags,
	                 a.with_opt ? &o : NULL, &it);
	FUZZ_CHECK(r == 0 && it, "imap_gen: %d (%s)", r, shp_strerror(r));
	iterate(in, it, &a, &b, !(flags & SHP_UNORDERED), true, g.err);
	FUZZ_CHECK(ncallback == cb0 && nerror_callback == ecb0,
	           "an iterator called back");
	release_bufs(&b);
}

/* ------------------------------------------------------ the rest */

static void fuzz_alloc(struct fuzz_in *in)
{
	size_t size = pick_size(in);
	uint8_t f = fuzz_u8(in);
	unsigned char local;
	void *p, *heap;

	errno = 0;
	p = shp_alloc(f & 1 ? NULL : pool, size);
	if (f & 1 || size == 0) {
		FUZZ_CHECK(!p && errno == EINVAL, "shp_alloc(%s, %zu): %p, errno %d",
		           f & 1 ? "NULL" : "pool", size, p, errno);
		return;
	}
	if (size > ARENA_BYTES) {
		FUZZ_CHECK(!p && errno == ENOMEM, "shp_alloc(%zu): %p, errno %d",
		           size, p, errno);
		return;
	}
	if (!p) {
		FUZZ_CHECK(errno == ENOMEM, "shp_alloc(%zu): errno %d", size, errno);
		return;
	}
	FUZZ_CHECK((uintptr_t)p % 64 == 0, "shp_alloc: %p not 64-aligned", p);
	memset(p, 0xa5, size);
	/* Foreign pointers are ignored: not the arena's, inside a block,
	 * NULL, or given with no pool. */
	heap = malloc(1);
	FUZZ_CHECK(heap, "out of memory");
	shp_free(pool, &local);
	shp_free(pool, heap);
	if (size > 1)
		shp_free(pool, (unsigned char *)p + 1 + fuzz_below(in, (uint32_t)size - 1));
	shp_free(pool, NULL);
	shp_free(NULL, p);
	free(heap);
	shp_free(pool, p);
	if (f & 2)
		shp_free(pool, p); /* a second free is just as foreign */
}

static void fuzz_misc(struct fuzz_in *in)
{
	int err = (int)fuzz_u32(in);
	const char *s = shp_strerror(err);

	FUZZ_CHECK(s && s[0], "shp_strerror(%d)", err);
#define CHECK_CODE(name, value, msg)                                           \
	FUZZ_CHECK(strcmp(shp_strerror(SHP_##name), msg) == 0, #name);
	SHP_ERRNO_MAP(CHECK_CODE)
#undef CHECK_CODE
	FUZZ_CHECK(strcmp(shp_version(), SHP_VERSION_STRING) == 0, "version");
	FUZZ_CHECK(shp_pool_close(NULL) == -EINVAL, "close(NULL)");
	FUZZ_CHECK(shp_pool_join(NULL) == -EINVAL, "join(NULL)");
	FUZZ_CHECK(shp_pool_terminate(NULL) == -EINVAL, "terminate(NULL)");
	shp_pool_destroy(NULL);
	/* Join before close is refused, and changes nothing. */
	FUZZ_CHECK(shp_pool_join(pool) == -EINVAL, "join of an open pool");
	FUZZ_CHECK(shp_async_wait(NULL, pick_timeout(in)) == -EINVAL, "wait");
	FUZZ_CHECK(shp_async_ready(NULL) == -EINVAL, "ready(NULL)");
	FUZZ_CHECK(shp_async_result(NULL) == -EINVAL, "result(NULL)");
	FUZZ_CHECK(shp_async_progress(NULL, NULL, NULL) == -EINVAL, "progress");
	FUZZ_CHECK(shp_async_cancel(NULL) == -EINVAL, "cancel(NULL)");
	shp_async_free(NULL);
	FUZZ_CHECK(shp_iter_next(NULL, NULL, NULL, NULL, pick_timeout(in)) ==
	                   -EINVAL, "iter_next(NULL)");
	shp_iter_free(NULL);
}

/* Options it must refuse, one field or more out of its limits, so that it
 * never gets as far as the segment or a fork. */
static void fuzz_create(struct fuzz_in *in)
{
	struct shp_pool_options o = { 0 };
	uint8_t f = fuzz_u8(in);
	shp_pool *p = (shp_pool *)poison;
	unsigned e = 0;
	int r;

	if (f & 1) {
		o.workers = 1025 + fuzz_u32(in) % (UINT32_MAX - 1024);
		e |= E_INVAL;
	}
	if (f & 2) {
		o.queue_cells = (1u << 20) + 1 + fuzz_u32(in) % (UINT32_MAX - (1u << 20));
		e |= E_INVAL;
	}
	if (f & 4) {
		o.spin_us = 1000001 + (int)(fuzz_u32(in) % (INT32_MAX - 1000000));
		e |= E_INVAL;
	}
	if (f & 8) {
		/* No segment layout holds it: past SIZE_MAX - 256 KiB. */
		o.arena_bytes = SIZE_MAX - fuzz_below(in, 1u << 18);
		e |= E_OVERFLOW;
	}
	o.max_tasks_per_worker = fuzz_u32(in);
	if (f & 16 || !e) {
		r = shp_pool_create(NULL, &o);
		FUZZ_CHECK(r == -EINVAL, "shp_pool_create(NULL): %d", r);
		return;
	}
	r = shp_pool_create(&p, &o);
	FUZZ_CHECK(in_set(r, e), "shp_pool_create: %d (%s), want set %#x", r,
	           shp_strerror(r), e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };

	for (int k = 0; k < OPS_PER_INPUT && !fuzz_done(&in); k++) {
		switch (fuzz_u8(&in) % 7) {
		case 0:
			fuzz_map(&in);
			break;
		case 1:
			fuzz_async(&in);
			break;
		case 2:
			fuzz_imap(&in);
			break;
		case 3:
			fuzz_imap_gen(&in);
			break;
		case 4:
			fuzz_alloc(&in);
			break;
		case 5:
			fuzz_misc(&in);
			break;
		default:
			fuzz_create(&in);
			break;
		}
	}
	return 0;
}
