/*
 * shp_queue (the public queue) in one process against a FIFO model: a
 * queue created with fuzzed sizes, then random sequences of put, get,
 * tryput, tryget, put_bulk, get_bulk, close and count with fuzzed
 * arguments: NULL pointers, counts of 0, around INT_MAX and up to
 * SIZE_MAX, timeouts of every sign and size.
 *
 * The rules are include/shmpool.h's and docs/api.md's. A call that breaks
 * one must return the documented -EINVAL and must not touch its buffer (a
 * one-byte block, so that ASan would see it). A call that breaks none runs
 * for real and must return exactly what the model calls for: the count
 * put or taken, -EAGAIN when full (empty), -ETIMEDOUT once a short
 * timeout has passed, SHP_ECLOSED for a put after the close, partial
 * counts of a bulk put cut short, 0 (the end marker) for every get once
 * the queue is closed and drained; every element taken must be, byte for
 * byte, the model's oldest; the count must be the model's after every
 * call.
 *
 * A call that has to wait with no timeout (negative) or one too long to
 * run out (INT64_MAX and around) is ended by a second thread of the
 * harness: it closes the queue, or puts or takes the one element the
 * call waits for, so that the outcome is still exact. Other waits are
 * bounded: timeouts of 0 or at most FUZZ_MAX_WAIT_NS, and at most MAX_OPS
 * calls per input. The cross-process behaviour is tests/stress's.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"
#include "shmpool.h"

#define MAX_OPS 64               /* calls per input */
#define MAX_CAP_RUN 1024u        /* capacity of a queue that runs */
#define MAX_BYTES_RUN (2u << 20) /* its capacity * elem_size */
#define MAX_HELPED 4             /* waits the helper ends, per input */
#define ELEM_MAX ((size_t)1 << 20)
#define CAP_MAX ((size_t)1 << 30)

/* A pointer the library must not use: a call that gets it is refused. */
static unsigned char *poison;

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* NOLINTNEXTLINE(readability-non-const-parameter): libFuzzer's signature */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	poison = malloc(1);
	FUZZ_CHECK(poison, "out of memory");
	return 0;
}

/* ---------------------------------------------------------- the model */

/* Element x of the sequence put: every byte depends on x, so a torn,
 * misplaced or repeated copy shows. */
static unsigned char elem_byte(uint64_t x, size_t j)
{
	uint64_t h = (x + 1) * UINT64_C(0x9e3779b97f4a7c15);

	return (unsigned char)((h >> (8 * (j % 8))) ^ (j / 8));
}

static void fill(unsigned char *p, size_t elem_size, uint64_t x)
{
	for (size_t j = 0; j < elem_size; j++)
		p[j] = elem_byte(x, j);
}

struct model {
	uint64_t *q; /* sequence numbers, a ring of cap */
	size_t head, len, cap, elem_size;
	uint64_t next; /* the sequence number of the next element put */
	bool closed;
};

static size_t room(const struct model *m)
{
	return m->cap - m->len;
}

static void push(struct model *m)
{
	m->q[(m->head + m->len) % m->cap] = m->next++;
	m->len++;
}

/* The element at got must be the model's oldest; it is taken. */
static void pop_check(struct model *m, const unsigned char *got,
                      const char *what)
{
	uint64_t x;

	FUZZ_CHECK(m->len > 0, "%s: an element from an empty queue", what);
	x = m->q[m->head];
	m->head = (m->head + 1) % m->cap;
	m->len--;
	for (size_t j = 0; j < m->elem_size; j++)
		FUZZ_CHECK(got[j] == elem_byte(x, j),
		           "%s: element %llu byte %zu: %u, want %u", what,
		           (unsigned long long)x, j, got[j], elem_byte(x, j));
}

/* -------------------------------------------------------- arguments */

/*
 * Sizes of each class the checks tell apart, for elem_size and capacity.
 * Here and below, the choice a zero byte makes is a small valid one: the
 * fuzzer's inputs start short, and run out into zeros.
 */
static size_t pick_size(struct fuzz_in *in, size_t max)
{
	switch (fuzz_pick(in, 10)) {
	case 0:
	case 1:
	case 2:
	case 3:
		return 1 + fuzz_pick(in, 16);
	case 4:
		return 0;
	case 5:
		return 1 + fuzz_below(in, 4096);
	case 6:
		return max - 1 + fuzz_pick(in, 3); /* the limit's edge */
	case 7:
		return SIZE_MAX - fuzz_pick(in, 4);
	case 8:
		return (size_t)1 << fuzz_pick(in, 64);
	default:
		return (size_t)fuzz_u64(in);
	}
}

/* Counts for the bulk calls: n or max. */
static size_t pick_count(struct fuzz_in *in, size_t cap)
{
	switch (fuzz_pick(in, 8)) {
	case 0:
	case 1:
	case 2:
	case 3:
		return 1 + fuzz_below(in, (uint32_t)cap + 3);
	case 4:
		return 0;
	case 5:
		return (size_t)INT_MAX + fuzz_pick(in, 3) - 1; /* the edge */
	case 6:
		return SIZE_MAX - fuzz_pick(in, 4);
	default:
		return (size_t)fuzz_u64(in);
	}
}

/* --------------------------------------------------------- the helper */

enum { H_CLOSE, H_PUT, H_GET };

/* A second thread that ends a wait with no deadline: it closes the
 * queue, or puts or takes one element. */
struct helper {
	pthread_t thread;
	shp_queue *q;
	int action;
	size_t wait_count; /* H_CLOSE: close once count() shows it */
	unsigned char *elem;
	int result;
};

static void *help(void *arg)
{
	struct helper *h = arg;
	struct timespec nap = { 0, 20000 };

	switch (h->action) {
	case H_CLOSE:
		/* A bulk put puts what fits first; close after it did, or it
		 * could find the queue closed before it put anything. The
		 * count moves with the put's tail, before its cells are
		 * written: the put then goes on, and stops at the close. */
		for (int k = 0; k < 50000 &&
		                (size_t)shp_queue_count(h->q) < h->wait_count; k++)
			nanosleep(&nap, NULL);
		/* Give the waiter time to sleep, mostly. */
		nanosleep(&nap, NULL);
		h->result = shp_queue_close(h->q);
		break;
	case H_PUT:
		nanosleep(&nap, NULL);
		h->result = shp_queue_put(h->q, h->elem, -1);
		break;
	default:
		nanosleep(&nap, NULL);
		h->result = shp_queue_get(h->q, h->elem, -1);
		break;
	}
	return NULL;
}

static void helper_start(struct helper *h, shp_queue *q, int action,
                         size_t wait_count, unsigned char *elem)
{
	int err;

	h->q = q;
	h->action = action;
	h->wait_count = wait_count;
	h->elem = elem;
	h->result = INT_MIN;
	err = pthread_create(&h->thread, NULL, help, h);
	FUZZ_CHECK(err == 0, "pthread_create: %d", err);
}

static int helper_join(struct helper *h)
{
	int err = pthread_join(h->thread, NULL);

	FUZZ_CHECK(err == 0, "pthread_join: %d", err);
	return h->result;
}

/* ------------------------------------------------------------ the calls */

struct run {
	shp_queue *q;
	struct model m;
	unsigned char *buf;  /* cap + 3 elements */
	unsigned char *help; /* one element, the helper's */
	unsigned helped;
};

/* The timeout of a call that has to wait: one the helper ends (returns
 * true), or, when the helper has ended enough waits in this input, 0. */
static bool helped_wait(struct run *r, int *kind, int64_t *timeout)
{
	if (*kind != FUZZ_T_FOREVER)
		return false;
	if (r->helped == MAX_HELPED) {
		*kind = FUZZ_T_ZERO;
		*timeout = 0;
		return false;
	}
	r->helped++;
	return true;
}

static void op_put(struct fuzz_in *in, struct run *r, bool try)
{
	struct model *m = &r->m;
	uint8_t f = fuzz_u8(in);
	int kind = FUZZ_T_ZERO;
	int64_t timeout = try ? 0 : fuzz_timeout(in, &kind);
	struct helper h;
	bool helper = false, taken = false;
	int res;

	if (f % 8 == 7 || f % 8 == 6) {
		/* NULL queue or element: -EINVAL, nothing read. */
		shp_queue *q = f % 8 == 7 ? NULL : r->q;
		const void *e = f % 8 == 7 ? poison : NULL;

		if (try)
			res = shp_queue_tryput(q, e);
		else
			res = shp_queue_put(q, e, timeout);
		FUZZ_CHECK(res == -EINVAL, "put(%s): %d", q ? "NULL elem" : "NULL",
		           res);
		return;
	}
	fill(r->buf, m->elem_size, m->next);
	if (!m->closed && !room(m) && !try &&
	    helped_wait(r, &kind, &timeout)) {
		/* Full: the helper closes, or takes the oldest element. */
		helper = true;
		taken = f & 8;
		helper_start(&h, r->q, taken ? H_GET : H_CLOSE, m->cap, r->help);
	}
	res = try ? shp_queue_tryput(r->q, r->buf)
	          : shp_queue_put(r->q, r->buf, timeout);
	if (helper) {
		int hr = helper_join(&h);

		if (taken) {
			FUZZ_CHECK(hr == 1, "helper's get: %d", hr);
			pop_check(m, r->help, "helper's get");
		} else {
			FUZZ_CHECK(hr == 0, "helper's close: %d", hr);
			m->closed = true;
		}
	}
	if (m->closed) {
		FUZZ_CHECK(res == SHP_ECLOSED, "put to a closed queue: %d", res);
	} else if (room(m)) {
		FUZZ_CHECK(res == 0, "put with %zu/%zu queued: %d", m->len,
		           m->cap, res);
		push(m);
	} else {
		FUZZ_CHECK(res == (try ? -EAGAIN : -ETIMEDOUT),
		           "%s of a full queue, timeout %lld: %d",
		           try ? "tryput" : "put", (long long)timeout, res);
	}
}

static void op_get(struct fuzz_in *in, struct run *r, bool try)
{
	struct model *m = &r->m;
	uint8_t f = fuzz_u8(in);
	int kind = FUZZ_T_ZERO;
	int64_t timeout = try ? 0 : fuzz_timeout(in, &kind);
	struct helper h;
	bool helper = false, put = false;
	int res;

	if (f % 8 == 7 || f % 8 == 6) {
		shp_queue *q = f % 8 == 7 ? NULL : r->q;
		void *e = f % 8 == 7 ? poison : NULL;

		if (try)
			res = shp_queue_tryget(q, e);
		else
			res = shp_queue_get(q, e, timeout);
		FUZZ_CHECK(res == -EINVAL, "get(%s): %d", q ? "NULL elem" : "NULL",
		           res);
		return;
	}
	if (!m->closed && !m->len && !try && helped_wait(r, &kind, &timeout)) {
		/* Empty: the helper closes, or puts the next element. */
		helper = true;
		put = f & 8;
		if (put)
			fill(r->help, m->elem_size, m->next);
		helper_start(&h, r->q, put ? H_PUT : H_CLOSE, 0, r->help);
	}
	res = try ? shp_queue_tryget(r->q, r->buf)
	          : shp_queue_get(r->q, r->buf, timeout);
	if (helper) {
		int hr = helper_join(&h);

		FUZZ_CHECK(hr == 0, "helper's %s: %d", put ? "put" : "close", hr);
		if (put)
			push(m);
		else
			m->closed = true;
	}
	if (m->len) {
		FUZZ_CHECK(res == 1, "get with %zu queued: %d", m->len, res);
		pop_check(m, r->buf, try ? "tryget" : "get");
	} else if (m->closed) {
		FUZZ_CHECK(res == 0, "get of a closed, drained queue: %d", res);
	} else {
		FUZZ_CHECK(res == (try ? -EAGAIN : -ETIMEDOUT),
		           "%s of an empty queue, timeout %lld: %d",
		           try ? "tryget" : "get", (long long)timeout, res);
	}
}

static void op_put_bulk(struct fuzz_in *in, struct run *r)
{
	struct model *m = &r->m;
	uint8_t f = fuzz_u8(in);
	size_t n = pick_count(in, m->cap);
	int kind;
	int64_t timeout = fuzz_timeout(in, &kind);
	size_t fits = room(m), want;
	struct helper h;
	bool helper = false, taken = false;
	int res, hr;

	if (f % 8 == 7 || f % 8 == 6 || n == 0 || n > INT_MAX) {
		/* Every element would be read: the one-byte block shows it. */
		shp_queue *q = f % 8 == 7 ? NULL : r->q;
		const void *e = f % 8 == 6 ? NULL : poison;

		res = shp_queue_put_bulk(q, e, n, timeout);
		FUZZ_CHECK(res == -EINVAL, "put_bulk(%s, %s, %zu): %d",
		           q ? "q" : "NULL", e ? "elems" : "NULL", n, res);
		return;
	}
	/* Valid: as many elements as the buffer holds. */
	if (n > m->cap + 3)
		n = 1 + n % (m->cap + 3);
	for (size_t i = 0; i < n; i++)
		fill(r->buf + i * m->elem_size, m->elem_size, m->next + i);
	if (!m->closed && n > fits && helped_wait(r, &kind, &timeout)) {
		/* It puts what fits, then waits: the helper closes, or takes
		 * one element when that one makes room for the rest. */
		helper = true;
		taken = (f & 8) && n == fits + 1;
		helper_start(&h, r->q, taken ? H_GET : H_CLOSE, m->cap, r->help);
	}
	res = shp_queue_put_bulk(r->q, r->buf, n, timeout);
	hr = helper ? helper_join(&h) : 0;
	if (m->closed) {
		FUZZ_CHECK(res == SHP_ECLOSED, "put_bulk to a closed queue: %d",
		           res);
		return;
	}
	if (taken) {
		size_t k = 0;

		/* Room for all of them once the helper took the oldest:
		 * ours or, in an empty queue, the first of ours. */
		FUZZ_CHECK(hr == 1, "helper's get: %d", hr);
		FUZZ_CHECK(res >= 0 && (size_t)res == n,
		           "put_bulk of %zu with room for %zu and a get: %d", n,
		           fits, res);
		if (!m->len) {
			push(m);
			k++;
		}
		pop_check(m, r->help, "helper's get");
		for (; k < n; k++)
			push(m);
		return;
	}
	if (helper) {
		FUZZ_CHECK(hr == 0, "helper's close: %d", hr);
		m->closed = true;
	}
	/* What fits, when time ran out or the close came part-way. */
	want = n <= fits ? n : fits;
	if (want == 0)
		FUZZ_CHECK(res == (m->closed ? SHP_ECLOSED : -ETIMEDOUT),
		           "put_bulk of %zu to a full%s queue, timeout %lld: %d",
		           n, m->closed ? ", closed" : "", (long long)timeout, res);
	else
		FUZZ_CHECK(res >= 0 && (size_t)res == want,
		           "put_bulk of %zu with room for %zu, timeout %lld: %d",
		           n, fits, (long long)timeout, res);
	for (size_t i = 0; i < want; i++)
		push(m);
}

static void op_get_bulk(struct fuzz_in *in, struct run *r)
{
	struct model *m = &r->m;
	uint8_t f = fuzz_u8(in);
	size_t max = pick_count(in, m->cap);
	int kind;
	int64_t timeout = fuzz_timeout(in, &kind);
	struct helper h;
	bool helper = false, put = false;
	size_t want;
	int res;

	if (f % 8 == 7 || f % 8 == 6 || max == 0 || max > INT_MAX) {
		shp_queue *q = f % 8 == 7 ? NULL : r->q;
		void *e = f % 8 == 6 ? NULL : poison;

		res = shp_queue_get_bulk(q, e, max, timeout);
		FUZZ_CHECK(res == -EINVAL, "get_bulk(%s, %s, %zu): %d",
		           q ? "q" : "NULL", e ? "elems" : "NULL", max, res);
		return;
	}
	if (max > m->cap + 3)
		max = 1 + max % (m->cap + 3);
	if (!m->closed && !m->len && helped_wait(r, &kind, &timeout)) {
		helper = true;
		put = f & 8;
		if (put)
			fill(r->help, m->elem_size, m->next);
		helper_start(&h, r->q, put ? H_PUT : H_CLOSE, 0, r->help);
	}
	res = shp_queue_get_bulk(r->q, r->buf, max, timeout);
	if (helper) {
		int hr = helper_join(&h);

		FUZZ_CHECK(hr == 0, "helper's %s: %d", put ? "put" : "close", hr);
		if (put)
			push(m);
		else
			m->closed = true;
	}
	/* As many as are there, up to max. */
	want = m->len < max ? m->len : max;
	if (want) {
		FUZZ_CHECK(res >= 0 && (size_t)res == want,
		           "get_bulk of %zu with %zu queued: %d", max, m->len, res);
		for (size_t i = 0; i < want; i++)
			pop_check(m, r->buf + i * m->elem_size, "get_bulk");
	} else if (m->closed) {
		FUZZ_CHECK(res == 0, "get_bulk of a closed, drained queue: %d",
		           res);
	} else {
		FUZZ_CHECK(res == -ETIMEDOUT,
		           "get_bulk of an empty queue, timeout %lld: %d",
		           (long long)timeout, res);
	}
}

static void op_misc(struct fuzz_in *in, struct run *r)
{
	switch (fuzz_pick(in, 4)) {
	case 0:
		FUZZ_CHECK(shp_queue_close(r->q) == 0, "close");
		r->m.closed = true;
		break;
	case 1:
		FUZZ_CHECK(shp_queue_close(NULL) == -EINVAL, "close(NULL)");
		break;
	case 2:
		FUZZ_CHECK(shp_queue_count(NULL) == -EINVAL, "count(NULL)");
		break;
	default:
		shp_queue_destroy(NULL);
		break;
	}
}

/* --------------------------------------------------------- an input */

/* Creates the queue of the input, after the calls its sizes make
 * invalid, which must be refused; false when the input has none. */
static bool create(struct fuzz_in *in, struct run *r)
{
	uint8_t f = fuzz_u8(in);
	size_t elem_size = pick_size(in, ELEM_MAX);
	size_t cap = pick_size(in, CAP_MAX);
	bool bad = !elem_size || elem_size > ELEM_MAX || !cap || cap > CAP_MAX;
	shp_queue *q = (shp_queue *)poison;
	int res;

	if (f % 8 == 7) {
		res = shp_queue_create(NULL, elem_size, cap);
		FUZZ_CHECK(res == -EINVAL, "create(NULL, %zu, %zu): %d", elem_size,
		           cap, res);
		return false;
	}
	if (bad) {
		res = shp_queue_create(&q, elem_size, cap);
		FUZZ_CHECK(res == -EINVAL, "create(%zu, %zu): %d", elem_size, cap,
		           res);
		return false;
	}
	/* Valid: made small enough to run in a moment. */
	if (cap > MAX_CAP_RUN)
		cap = 1 + cap % MAX_CAP_RUN;
	if (cap * elem_size > MAX_BYTES_RUN)
		cap = 1 + cap % (MAX_BYTES_RUN / elem_size);
	res = shp_queue_create(&r->q, elem_size, cap);
	FUZZ_CHECK(res == 0 && r->q, "create(%zu, %zu): %d", elem_size, cap,
	           res);
	r->m = (struct model){ .cap = cap, .elem_size = elem_size };
	r->m.q = malloc(cap * sizeof(*r->m.q));
	r->buf = malloc((cap + 3) * elem_size);
	r->help = malloc(elem_size);
	FUZZ_CHECK(r->m.q && r->buf && r->help, "out of memory");
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct run r = { 0 };
	int res;

	if (!create(&in, &r))
		return 0;
	for (int k = 0; k < MAX_OPS && !fuzz_done(&in); k++) {
		switch (fuzz_pick(&in, 7)) {
		case 0:
			op_put(&in, &r, false);
			break;
		case 1:
			op_put(&in, &r, true);
			break;
		case 2:
			op_get(&in, &r, false);
			break;
		case 3:
			op_get(&in, &r, true);
			break;
		case 4:
			op_put_bulk(&in, &r);
			break;
		case 5:
			op_get_bulk(&in, &r);
			break;
		default:
			op_misc(&in, &r);
			break;
		}
		FUZZ_CHECK(shp_queue_count(r.q) == (int64_t)r.m.len,
		           "count %lld, model %zu", (long long)shp_queue_count(r.q),
		           r.m.len);
	}
	/* Whatever the sequence, the queue drains to exactly the model. */
	while (r.m.len) {
		res = shp_queue_tryget(r.q, r.buf);
		FUZZ_CHECK(res == 1, "drain with %zu queued: %d", r.m.len, res);
		pop_check(&r.m, r.buf, "drain");
	}
	res = shp_queue_tryget(r.q, r.buf);
	FUZZ_CHECK(res == (r.m.closed ? 0 : -EAGAIN), "drained, %s: %d",
	           r.m.closed ? "closed" : "open", res);
	FUZZ_CHECK(shp_queue_count(r.q) == 0, "count after the drain");
	shp_queue_destroy(r.q);
	free(r.m.q);
	free(r.buf);
	free(r.help);
	return 0;
}
