/*
 * The APIs that need no pool: ordered collections (shp_collect_*),
 * processes (shp_process_*) and pipelines (shp_pipeline_*, shp_emit),
 * with fuzzed arguments: NULL pointers, positions and sizes from 0 to
 * SIZE_MAX, n * size overflows, bad statuses, signals and flags, workers
 * and queue sizes around their limits, timeouts of every sign and size.
 *
 * The rules are include/shmpool.h's and docs/api.md's: a call that breaks
 * one must return the documented error (one of them, when it breaks
 * several) and must not touch its buffers (one-byte blocks, so that ASan
 * would see it). A call that breaks none runs for real and its results
 * are checked against a model:
 *   - a collection's puts, fails, gets and next: each position's answer
 *     (the element byte for byte, the failed status, -ETIMEDOUT, -EEXIST,
 *     the end), the cursor, elem and *pos written only when documented;
 *     waits with no deadline are ended by a writer, a thread or a process
 *     started with shp_process_start;
 *   - a process returning a fuzzed exit code, joined with every kind of
 *     timeout, killed or not: its wait status, pid, and what join, kill
 *     and wait_status return before and after the join, and from a fork
 *     that holds a copy of the handle;
 *   - a small pipeline (map, filter, flat_map and each stages over a few
 *     items from an array or a generator, in input order or not, with
 *     stage functions that fail on some items): every result and its
 *     index, in order or as a multiset, the calls each stage got, the end
 *     (0, the generator's error, its -ETIMEDOUT as -ETIME, or SHP_ETASK
 *     with what shp_pipeline_error says), and that each of them is
 *     returned again.
 * Stage functions check their own arguments (and shp_emit's answers to
 * bad ones) and fail with BAD_STATUS when one is wrong.
 *
 * Every input forks at most MAX_FORKS processes, and must leave no child
 * behind: once it is done, the harness has no child, running or zombie.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "shmpool.h"

#define OPS_PER_INPUT 8
#define MAX_FORKS 4          /* processes forked per input */
#define C_MAX_N 32           /* positions of a collection that runs */
#define C_MAX_ELEM 256       /* and its elem_size */
#define C_OPS 16
#define P_MAX_ITEMS 24       /* source items of a pipeline that runs */
#define P_MAX_SIZE 64        /* its item and output sizes */
#define P_MAX_RUN_STAGES 3
#define P_MAX_MAXSIZE 64
#define P_PAYLOAD_MAX (((size_t)1 << 20) - 16)
#define P_STAGES 16
#define P_WORKERS 1024u
#define P_MAXSIZE_MAX ((size_t)1 << 20)
#define BAD_STATUS 0x0bad    /* a stage function's own check failed */
#define GEN_BAD (-ENOTRECOVERABLE) /* the generator's own check failed */
#define SENTINEL 0x5a
#define WS_UNSET 0x5eed5eed

/* A pointer the library must not use: a call that gets it is refused. */
static unsigned char *poison;

/* Calls of each pipeline stage, counted by the workers. */
static uint32_t *stage_calls;

/* Forks left to the current input. */
static unsigned forks_left;

int LLVMFuzzerInitialize(int *argc, char ***argv);

/* NOLINTNEXTLINE(readability-non-const-parameter): libFuzzer's signature */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	void *m = mmap(NULL, P_STAGES * sizeof(uint32_t),
	               PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	(void)argc;
	(void)argv;
	poison = malloc(1);
	FUZZ_CHECK(poison && m != MAP_FAILED, "out of memory");
	stage_calls = m;
	return 0;
}

/* ------------------------------------------------------------ shared */

static uint64_t mix(uint64_t x)
{
	x = (x ^ (x >> 31)) * UINT64_C(0x9e3779b97f4a7c15);
	return x ^ (x >> 29);
}

/* Byte j of the value x: every byte depends on x. */
static unsigned char elem_byte(uint64_t x, size_t j)
{
	return (unsigned char)((mix(x + 1) >> (8 * (j % 8))) ^ (j / 8));
}

static void fill(unsigned char *p, size_t size, uint64_t x)
{
	for (size_t j = 0; j < size; j++)
		p[j] = elem_byte(x, j);
}

static bool holds(const unsigned char *p, size_t size, uint64_t x)
{
	for (size_t j = 0; j < size; j++)
		if (p[j] != elem_byte(x, j))
			return false;
	return true;
}

static bool untouched(const unsigned char *p, size_t size)
{
	for (size_t j = 0; j < size; j++)
		if (p[j] != SENTINEL)
			return false;
	return true;
}

static bool mul_overflows(size_t a, size_t b)
{
	size_t r;

	return __builtin_mul_overflow(a, b, &r);
}

static void nap_us(long us)
{
	struct timespec ts = { 0, us * 1000 };

	nanosleep(&ts, NULL);
}

/*
 * Sizes of every class the checks tell apart. Here and below, the choice
 * a zero byte makes is a small valid one: the fuzzer's inputs start short
 * (and run out into zeros), and should run something from the start.
 */
static size_t pick_size(struct fuzz_in *in, size_t small)
{
	switch (fuzz_pick(in, 8)) {
	case 0:
	case 1:
	case 2:
		return 1 + fuzz_pick(in, (uint32_t)small);
	case 3:
		return 0;
	case 4:
		return (size_t)1 << fuzz_pick(in, 64);
	case 5:
		return SIZE_MAX / (1 + fuzz_pick(in, 64));
	case 6:
		return SIZE_MAX - fuzz_pick(in, 4);
	default:
		return (size_t)fuzz_u64(in);
	}
}

/* A position: mostly inside n, or just past it, or far. */
static size_t pick_pos(struct fuzz_in *in, size_t n)
{
	switch (fuzz_pick(in, 7)) {
	case 4:
		return n + fuzz_pick(in, 3);
	case 5:
		return SIZE_MAX - fuzz_pick(in, 2);
	case 6:
		return (size_t)fuzz_u64(in);
	default:
		return n ? fuzz_u64(in) % n : 0;
	}
}

/* -------------------------------------------------------- collections */

enum { S_EMPTY, S_DONE, S_FAILED };

struct cmodel {
	shp_collect *c;
	size_t n, es;
	unsigned char state[C_MAX_N];
	int status[C_MAX_N];
	uint64_t val[C_MAX_N];
	size_t cursor;
	unsigned char *buf, *out; /* es bytes each */
};

/* A status for shp_collect_fail, valid or not. */
static int pick_status(struct fuzz_in *in)
{
	switch (fuzz_pick(in, 8)) {
	case 0:
		return SHP_ECRASHED;
	case 1:
		return 1 + (int)fuzz_below(in, 1000);
	case 2:
		return -ETIMEDOUT;
	case 3:
		return 0;
	case 4:
		return SHP_ETIMEDOUT;
	case 5:
		return INT_MIN;
	case 6:
		return -1 - (int)fuzz_below(in, 5000);
	default:
		return (int)fuzz_u32(in);
	}
}

static bool status_ok(int st)
{
	return st < 0 && st != -ETIMEDOUT;
}

/* What a writer does to a position: put value v, or fail it. */
struct wjob {
	shp_collect *c;
	size_t pos, es;
	bool put;
	uint64_t v;
	int status;
	int code; /* the process's exit code when it did it */
	int result;
	pthread_t thread;
};

static int write_job(void *arg)
{
	struct wjob *j = arg;

	nap_us(20);
	if (j->put) {
		unsigned char buf[C_MAX_ELEM];

		fill(buf, j->es, j->v);
		j->result = shp_collect_put(j->c, j->pos, buf);
	} else {
		j->result = shp_collect_fail(j->c, j->pos, j->status);
	}
	return j->result == 0 ? j->code : 255;
}

static void *write_thread(void *arg)
{
	(void)write_job(arg);
	return NULL;
}

static int exit_status_of(shp_process *p)
{
	int ws = 0, r = shp_process_join(p, -1);

	FUZZ_CHECK(r == 0, "join(-1): %d", r);
	r = shp_process_wait_status(p, &ws);
	FUZZ_CHECK(r == 0, "wait_status after join: %d", r);
	return ws;
}

/* The model's answer for position pos, against what the call returned
 * and wrote to elem (NULL: none was given). */
static void check_slot(const struct cmodel *m, size_t pos, int res,
                       const unsigned char *elem, const char *what)
{
	switch (m->state[pos]) {
	case S_DONE:
		FUZZ_CHECK(res == 1, "%s %zu (written): %d", what, pos, res);
		FUZZ_CHECK(!elem || holds(elem, m->es, m->val[pos]),
		           "%s %zu: the element differs", what, pos);
		return;
	case S_FAILED:
		FUZZ_CHECK(res == m->status[pos], "%s %zu (failed %d): %d", what,
		           pos, m->status[pos], res);
		break;
	default:
		FUZZ_CHECK(res == -ETIMEDOUT, "%s %zu (empty): %d", what, pos, res);
		break;
	}
	FUZZ_CHECK(!elem || untouched(elem, m->es),
	           "%s %zu returned %d but wrote elem", what, pos, res);
}

/*
 * A wait for an empty position with no deadline: a writer fills it, a
 * thread or (forks allowing) a process. Returns the process to join
 * after the wait, or NULL; the model has the position's new state.
 */
static shp_process *start_writer(struct fuzz_in *in, struct cmodel *m,
                                 size_t pos, struct wjob *j)
{
	uint8_t f = fuzz_u8(in);
	shp_process *p = NULL;
	int r;

	*j = (struct wjob){ .c = m->c, .pos = pos, .es = m->es, .put = f & 1 };
	j->v = fuzz_u32(in);
	j->code = (int)fuzz_pick(in, 128);
	j->status = pick_status(in);
	if (!status_ok(j->status))
		j->status = SHP_ECRASHED;
	if (j->put) {
		m->state[pos] = S_DONE;
		m->val[pos] = j->v;
	} else {
		m->state[pos] = S_FAILED;
		m->status[pos] = j->status;
	}
	if (f & 2 && forks_left) {
		forks_left--;
		r = shp_process_start(&p, write_job, j);
		FUZZ_CHECK(r == 0 && p, "process_start: %d", r);
		return p;
	}
	r = pthread_create(&j->thread, NULL, write_thread, j);
	FUZZ_CHECK(r == 0, "pthread_create: %d", r);
	return NULL;
}

static void end_writer(struct wjob *j, shp_process *p)
{
	if (p) {
		int ws = exit_status_of(p);

		FUZZ_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == j->code,
		           "writer process: status %#x, want exit %d", ws,
		           j->code);
		shp_process_free(p);
		return;
	}
	FUZZ_CHECK(pthread_join(j->thread, NULL) == 0, "pthread_join");
	FUZZ_CHECK(j->result == 0, "writer thread: %d", j->result);
}

static void c_put(struct fuzz_in *in, struct cmodel *m)
{
	uint8_t f = fuzz_u8(in);
	size_t pos = pick_pos(in, m->n);
	uint64_t v = fuzz_u32(in);
	int r;

	if (f % 8 == 7 || f % 8 == 6 || pos >= m->n) {
		r = shp_collect_put(f % 8 == 7 ? NULL : m->c, pos,
		                    f % 8 == 6 ? NULL : poison);
		FUZZ_CHECK(r == -EINVAL, "put(%s, %zu of %zu, %s): %d",
		           f % 8 == 7 ? "NULL" : "c", pos, m->n,
		           f % 8 == 6 ? "NULL" : "elem", r);
		return;
	}
	fill(m->buf, m->es, v);
	r = shp_collect_put(m->c, pos, m->buf);
	if (m->state[pos] != S_EMPTY) {
		FUZZ_CHECK(r == -EEXIST, "put %zu again: %d", pos, r);
		return;
	}
	FUZZ_CHECK(r == 0, "put %zu: %d", pos, r);
	m->state[pos] = S_DONE;
	m->val[pos] = v;
}

static void c_fail(struct fuzz_in *in, struct cmodel *m)
{
	bool no_c = fuzz_u8(in) % 8 == 7;
	size_t pos = pick_pos(in, m->n);
	int st = pick_status(in), r;

	r = shp_collect_fail(no_c ? NULL : m->c, pos, st);
	if (no_c || pos >= m->n || !status_ok(st)) {
		FUZZ_CHECK(r == -EINVAL, "fail(%s, %zu of %zu, %d): %d",
		           no_c ? "NULL" : "c", pos, m->n, st, r);
		return;
	}
	if (m->state[pos] != S_EMPTY) {
		FUZZ_CHECK(r == -EEXIST, "fail %zu after it was set: %d", pos, r);
		return;
	}
	FUZZ_CHECK(r == 0, "fail %zu with %d: %d", pos, st, r);
	m->state[pos] = S_FAILED;
	m->status[pos] = st;
}

static void c_get(struct fuzz_in *in, struct cmodel *m)
{
	uint8_t f = fuzz_u8(in);
	size_t pos = pick_pos(in, m->n);
	int kind;
	int64_t timeout = fuzz_timeout(in, &kind);
	unsigned char *elem = f & 8 ? NULL : m->out;
	shp_process *p = NULL;
	struct wjob j;
	bool writer = false;
	int r;

	if (f % 8 == 7 || pos >= m->n) {
		r = shp_collect_get(f % 8 == 7 ? NULL : m->c, pos,
		                    elem ? poison : NULL, timeout);
		FUZZ_CHECK(r == -EINVAL, "get(%s, %zu of %zu): %d",
		           f % 8 == 7 ? "NULL" : "c", pos, m->n, r);
		return;
	}
	if (m->state[pos] == S_EMPTY && kind == FUZZ_T_FOREVER) {
		p = start_writer(in, m, pos, &j);
		writer = true;
	}
	memset(m->out, SENTINEL, m->es);
	r = shp_collect_get(m->c, pos, elem, timeout);
	if (writer)
		end_writer(&j, p);
	check_slot(m, pos, r, elem, "get");
}

static void c_next(struct fuzz_in *in, struct cmodel *m)
{
	uint8_t f = fuzz_u8(in);
	int kind;
	int64_t timeout = fuzz_timeout(in, &kind);
	unsigned char *elem = f & 8 ? NULL : m->out;
	size_t pos = SIZE_MAX - 7, i = m->cursor;
	size_t *ppos = f & 16 ? NULL : &pos;
	shp_process *p = NULL;
	struct wjob j;
	bool writer = false;
	int r;

	if (f % 8 == 7) {
		r = shp_collect_next(NULL, ppos ? (size_t *)(void *)poison : NULL,
		                     elem ? poison : NULL, timeout);
		FUZZ_CHECK(r == -EINVAL, "next(NULL): %d", r);
		return;
	}
	if (i < m->n && m->state[i] == S_EMPTY && kind == FUZZ_T_FOREVER) {
		p = start_writer(in, m, i, &j);
		writer = true;
	}
	memset(m->out, SENTINEL, m->es);
	r = shp_collect_next(m->c, ppos, elem, timeout);
	if (writer)
		end_writer(&j, p);
	if (i == m->n) {
		/* Every position taken: 0, *pos and elem untouched. */
		FUZZ_CHECK(r == 0, "next after the last: %d", r);
		FUZZ_CHECK(pos == SIZE_MAX - 7, "next after the last set *pos");
		FUZZ_CHECK(!elem || untouched(elem, m->es),
		           "next after the last wrote elem");
		return;
	}
	/* *pos is the position concerned, -ETIMEDOUT included. */
	FUZZ_CHECK(!ppos || pos == i, "next: *pos %zu, cursor at %zu", pos, i);
	check_slot(m, i, r, elem, "next");
	if (r != -ETIMEDOUT)
		m->cursor++;
}

/* The documented pattern: a process writes its position or dies before
 * it does; its join tells the parent, who then fails the position. */
static void c_process(struct fuzz_in *in, struct cmodel *m)
{
	size_t pos = fuzz_u64(in) % m->n;
	bool writes = fuzz_u8(in) & 1;
	struct wjob j = { .c = m->c, .pos = pos, .es = m->es, .put = true,
		          .v = fuzz_u32(in), .code = 0 };
	shp_process *p;
	int ws, r;

	if (!forks_left)
		return;
	forks_left--;
	/* One that does not write exits with 255, as if it had died. */
	if (!writes)
		j.c = NULL;
	r = shp_process_start(&p, write_job, &j);
	FUZZ_CHECK(r == 0 && p, "process_start: %d", r);
	ws = exit_status_of(p);
	shp_process_free(p);
	if (writes && m->state[pos] == S_EMPTY) {
		FUZZ_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
		           "writer of %zu: status %#x", pos, ws);
		m->state[pos] = S_DONE;
		m->val[pos] = j.v;
	} else {
		/* NULL c or a position already set: the put failed. */
		FUZZ_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 255,
		           "writer of %zu (set or no c): status %#x", pos, ws);
		r = shp_collect_fail(m->c, pos, SHP_ECRASHED);
		FUZZ_CHECK(r == (m->state[pos] == S_EMPTY ? 0 : -EEXIST),
		           "fail after the writer's death: %d", r);
		if (m->state[pos] == S_EMPTY) {
			m->state[pos] = S_FAILED;
			m->status[pos] = SHP_ECRASHED;
		}
	}
}

/* Whatever the sequence, the collection reads as the model says: every
 * position by get, then the rest by next, an empty position failed
 * after its timeout, which must have kept the cursor. */
static void c_end(struct cmodel *m)
{
	size_t pos;
	int r;

	for (size_t i = 0; i < m->n; i++) {
		memset(m->out, SENTINEL, m->es);
		r = shp_collect_get(m->c, i, m->out, 0);
		check_slot(m, i, r, m->out, "get at the end");
	}
	while (m->cursor < m->n) {
		size_t i = m->cursor;

		pos = SIZE_MAX;
		memset(m->out, SENTINEL, m->es);
		r = shp_collect_next(m->c, &pos, m->out, 0);
		FUZZ_CHECK(pos == i, "next: *pos %zu, cursor at %zu", pos, i);
		check_slot(m, i, r, m->out, "next at the end");
		if (r == -ETIMEDOUT) {
			r = shp_collect_fail(m->c, i, SHP_ECRASHED);
			FUZZ_CHECK(r == 0, "fail %zu: %d", i, r);
			m->state[i] = S_FAILED;
			m->status[i] = SHP_ECRASHED;
			continue;
		}
		m->cursor++;
	}
	pos = SIZE_MAX;
	r = shp_collect_next(m->c, &pos, NULL, 0);
	FUZZ_CHECK(r == 0 && pos == SIZE_MAX, "next past the end: %d", r);
}

/* A collection too large to run the model on, but valid: random access
 * at its far end, where pos * elem_size is largest. */
static void c_far(struct fuzz_in *in, shp_collect *c, size_t n, size_t es)
{
	size_t pos = fuzz_pick(in, 2) ? n - 1 : fuzz_u64(in) % n;
	unsigned char *buf;
	int r;

	FUZZ_CHECK(shp_collect_get(c, n, NULL, 0) == -EINVAL, "get(n)");
	FUZZ_CHECK(shp_collect_put(c, pos, NULL) == -EINVAL, "put(NULL)");
	FUZZ_CHECK(shp_collect_get(c, pos, NULL, 0) == -ETIMEDOUT, "get empty");
	if (es > C_MAX_ELEM)
		return;
	buf = malloc(es);
	FUZZ_CHECK(buf, "out of memory");
	fill(buf, es, pos);
	FUZZ_CHECK((r = shp_collect_put(c, pos, buf)) == 0, "put %zu: %d", pos, r);
	memset(buf, SENTINEL, es);
	FUZZ_CHECK((r = shp_collect_get(c, pos, buf, 0)) == 1 &&
	           holds(buf, es, pos), "get %zu: %d", pos, r);
	free(buf);
}

static void fuzz_collect(struct fuzz_in *in)
{
	uint8_t f = fuzz_u8(in);
	size_t n = pick_size(in, C_MAX_N), es = pick_size(in, C_MAX_ELEM);
	shp_collect *c = (shp_collect *)poison;
	struct cmodel m;
	bool small, may_overflow;
	int r;

	if (f % 16 == 15) {
		r = shp_collect_create(NULL, n, es);
		FUZZ_CHECK(r == -EINVAL, "create(NULL): %d", r);
		return;
	}
	r = shp_collect_create(&c, n, es);
	if (!n || !es) {
		FUZZ_CHECK(r == -EINVAL && !c, "create(%zu, %zu): %d", n, es, r);
		return;
	}
	if (mul_overflows(n, es)) {
		FUZZ_CHECK(r == -EOVERFLOW && !c, "create(%zu, %zu): %d", n, es,
		           r);
		return;
	}
	/* The mapping holds the elements and a small slot per position:
	 * with a generous 64 bytes each, and 4096 more, it may overflow
	 * only where this does; where it fits in 64 MiB it must work. */
	may_overflow = es > SIZE_MAX - 64 || mul_overflows(n, es + 64) ||
	               n * (es + 64) > SIZE_MAX - 4096;
	small = !may_overflow && n * (es + 64) <= ((size_t)64 << 20);
	FUZZ_CHECK(r == 0 || (!small && r == -ENOMEM) ||
	           (may_overflow && r == -EOVERFLOW),
	           "create(%zu, %zu): %d", n, es, r);
	if (r) {
		FUZZ_CHECK(!c, "a failed create set *c");
		return;
	}
	FUZZ_CHECK(c && c != (shp_collect *)poison, "create set no *c");
	if (n > C_MAX_N || es > C_MAX_ELEM) {
		c_far(in, c, n, es);
		shp_collect_destroy(c);
		return;
	}
	memset(&m, 0, sizeof(m));
	m.c = c;
	m.n = n;
	m.es = es;
	m.buf = malloc(es);
	m.out = malloc(es);
	FUZZ_CHECK(m.buf && m.out, "out of memory");
	for (int k = 0; k < C_OPS && !fuzz_done(in); k++) {
		switch (fuzz_pick(in, 6)) {
		case 0:
			c_put(in, &m);
			break;
		case 1:
			c_fail(in, &m);
			break;
		case 2:
			c_get(in, &m);
			break;
		case 3:
		case 4:
			c_next(in, &m);
			break;
		default:
			c_process(in, &m);
			break;
		}
	}
	c_end(&m);
	shp_collect_destroy(c);
	free(m.buf);
	free(m.out);
}

/* --------------------------------------------------------- processes */

struct pjob {
	int code;     /* what fn returns */
	long nap_ms;  /* before it returns */
	shp_process *sibling; /* a fork's copy to misuse; NULL: none */
};

static int run_job(void *arg)
{
	const struct pjob *j = arg;
	struct timespec ts = { j->nap_ms / 1000, (j->nap_ms % 1000) * 1000000 };
	int ws;

	if (j->sibling) {
		/* A copy of another child's handle: join, kill and its
		 * status belong to the starter; free spares the child. */
		bool ok = shp_process_join(j->sibling, 0) == -ECHILD &&
		          shp_process_join(j->sibling, -1) == -ECHILD &&
		          shp_process_kill(j->sibling, SIGKILL) == -ECHILD &&
		          shp_process_wait_status(j->sibling, &ws) == -EAGAIN &&
		          shp_process_pid(j->sibling) > 0;

		shp_process_free(j->sibling);
		return ok ? j->code : 255;
	}
	if (j->nap_ms)
		nanosleep(&ts, NULL);
	return j->code;
}

/* A signal number: valid ones a child may get from the harness (it
 * inherits libFuzzer's handlers: SIGKILL, or SIGCONT, which a running
 * process ignores), or invalid ones. *valid says which. */
static int pick_signal(struct fuzz_in *in, bool *valid)
{
	*valid = true;
	switch (fuzz_pick(in, 5)) {
	case 0:
	case 1:
		return SIGKILL;
	case 2:
		return SIGCONT;
	case 3:
		*valid = false;
		return -1 - (int)fuzz_below(in, 1000);
	default:
		*valid = false;
		return NSIG + (int)(fuzz_u32(in) % (uint32_t)(INT_MAX - NSIG));
	}
}

static void fuzz_process(struct fuzz_in *in)
{
	uint8_t f = fuzz_u8(in);
	int code = (int)fuzz_u8(in) - 128;
	/* Negative, or past a byte, as often as not. */
	struct pjob j = { .code = code + 512 * ((int)fuzz_pick(in, 5) - 2) };
	struct pjob copy = { .code = (int)fuzz_pick(in, 128) };
	shp_process *p = (shp_process *)poison, *q;
	bool sleeper = f & 4, joined = false, killed = false;
	int ws = WS_UNSET, r, pid;

	if (f % 8 == 7) {
		r = shp_process_start(NULL, run_job, &j);
		FUZZ_CHECK(r == -EINVAL, "start(NULL): %d", r);
		return;
	}
	if (f % 8 == 6) {
		r = shp_process_start(&p, NULL, &j);
		FUZZ_CHECK(r == -EINVAL && !p, "start(NULL fn): %d", r);
		return;
	}
	if (!forks_left)
		return;
	forks_left--;
	/* A sleeper is still running when the harness looks at it, unless
	 * the machine stalls for 10 s: join before the kill then times out. */
	j.nap_ms = sleeper ? 10000 : 0;
	r = shp_process_start(&p, run_job, &j);
	FUZZ_CHECK(r == 0 && p, "start: %d", r);
	pid = shp_process_pid(p);
	FUZZ_CHECK(pid > 0, "pid %d", pid);
	if (f & 8 && forks_left) {
		/* A fork holding a copy of the handle. */
		forks_left--;
		copy.sibling = p;
		r = shp_process_start(&q, run_job, &copy);
		FUZZ_CHECK(r == 0 && q, "start: %d", r);
		ws = exit_status_of(q);
		FUZZ_CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == copy.code,
		           "a fork's misuse of a copy: status %#x", ws);
		shp_process_free(q);
	}
	for (int k = 0; k < 6 && !fuzz_done(in); k++) {
		int kind;
		int64_t timeout;
		bool valid;
		int sig;

		switch (fuzz_pick(in, 5)) {
		case 0:
			timeout = fuzz_timeout(in, &kind);
			if (kind == FUZZ_T_FOREVER && sleeper && !killed) {
				/* It would sleep on: kill it first. */
				FUZZ_CHECK(shp_process_kill(p, SIGKILL) == 0, "kill");
				killed = true;
			}
			r = shp_process_join(p, timeout);
			if (sleeper && !killed)
				FUZZ_CHECK(r == -ETIMEDOUT, "join of a sleeper: %d", r);
			else if (kind == FUZZ_T_FOREVER || joined)
				FUZZ_CHECK(r == 0, "join(%lld): %d", (long long)timeout,
				           r);
			else
				FUZZ_CHECK(r == 0 || r == -ETIMEDOUT, "join(%lld): %d",
				           (long long)timeout, r);
			joined |= r == 0;
			break;
		case 1:
			ws = WS_UNSET;
			r = shp_process_wait_status(p, &ws);
			FUZZ_CHECK(r == (joined ? 0 : -EAGAIN), "wait_status: %d", r);
			FUZZ_CHECK(shp_process_wait_status(p, NULL) == -EINVAL &&
			           shp_process_wait_status(NULL, &ws) == -EINVAL,
			           "wait_status(NULL)");
			if (!joined)
				break;
			if (killed && (sleeper || WIFSIGNALED(ws)))
				FUZZ_CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL,
				           "killed: status %#x", ws);
			else
				FUZZ_CHECK(WIFEXITED(ws) &&
				           WEXITSTATUS(ws) == (j.code & 0xff),
				           "exit %d: status %#x", j.code & 0xff, ws);
			break;
		case 2:
			sig = pick_signal(in, &valid);
			r = shp_process_kill(p, sig);
			if (joined)
				FUZZ_CHECK(r == -ESRCH || (!valid && r == -EINVAL),
				           "kill(%d) after the join: %d", sig, r);
			else
				FUZZ_CHECK(r == (valid ? 0 : -EINVAL), "kill(%d): %d",
				           sig, r);
			killed |= sig == SIGKILL && r == 0;
			break;
		case 3:
			FUZZ_CHECK(shp_process_pid(p) == pid, "pid changed");
			FUZZ_CHECK(shp_process_pid(NULL) == -EINVAL, "pid(NULL)");
			FUZZ_CHECK(shp_process_join(NULL, 0) == -EINVAL, "join(NULL)");
			FUZZ_CHECK(shp_process_kill(NULL, SIGKILL) == -EINVAL,
			           "kill(NULL)");
			shp_process_free(NULL);
			break;
		default:
			/* Freed early: a runner is killed and reaped, which
			 * the check for children at the input's end sees. */
			k = 6;
			break;
		}
	}
	shp_process_free(p);
}

/* --------------------------------------------------------- pipelines */

enum { K_MAP, K_FILTER, K_FLAT, K_EACH };

/* A stage as its function sees it (ctx), and as the model does. */
struct stage_cfg {
	int kind;
	unsigned index;
	uint64_t salt;
	uint32_t fail_mod; /* fails on payloads whose hash it divides; 0:
	                    * never */
	int fail_status;
	size_t in_size, out_size;
};
/* Set before the pipeline starts: the workers see them from the fork. */
static struct stage_cfg cfgs[P_STAGES];

static uint64_t phash(const void *in, size_t size, uint64_t salt)
{
	uint64_t h = UINT64_C(1469598103934665603) ^ salt;

	for (size_t i = 0; i < size; i++)
		h = (h ^ ((const unsigned char *)in)[i]) * UINT64_C(1099511628211);
	return mix(h);
}

static bool fails(const struct stage_cfg *c, uint64_t h)
{
	return c->fail_mod && (h >> 8) % c->fail_mod == 0;
}

static bool keeps(uint64_t h)
{
	return (h >> 4) % 3 != 0;
}

static unsigned spread(uint64_t h)
{
	return (unsigned)((h >> 12) % 4);
}

/* The stage function's view of its own arguments. */
static bool args_ok(const struct stage_cfg *c, const void *in)
{
	return (in == NULL) == (c->in_size == 0);
}

static void count_call(const struct stage_cfg *c)
{
	__atomic_fetch_add(&stage_calls[c->index], 1, __ATOMIC_SEQ_CST);
}

static int st_map(const void *in, void *out, void *ctx)
{
	const struct stage_cfg *c = ctx;
	uint64_t h;

	count_call(c);
	if (!args_ok(c, in) || (out == NULL) != (c->out_size == 0))
		return BAD_STATUS;
	h = phash(in, c->in_size, c->salt);
	if (fails(c, h))
		return c->fail_status;
	fill(out, c->out_size, h);
	return 0;
}

static int st_filter(const void *in, void *ctx)
{
	const struct stage_cfg *c = ctx;
	uint64_t h;

	count_call(c);
	if (!args_ok(c, in))
		return BAD_STATUS;
	h = phash(in, c->in_size, c->salt);
	if (fails(c, h))
		return c->fail_status;
	return keeps(h) ? 1 : 0;
}

static int st_flat(const void *in, shp_emitter *em, void *ctx)
{
	const struct stage_cfg *c = ctx;
	unsigned char buf[P_MAX_SIZE];
	uint64_t h;

	count_call(c);
	if (!args_ok(c, in) || !em || shp_emit(NULL, buf) != -EINVAL ||
	    (c->out_size && shp_emit(em, NULL) != -EINVAL))
		return BAD_STATUS;
	h = phash(in, c->in_size, c->salt);
	if (fails(c, h))
		return c->fail_status;
	for (unsigned k = 0; k < spread(h); k++) {
		int r;

		fill(buf, c->out_size, h + k + 1);
		r = shp_emit(em, c->out_size || k % 2 ? buf : NULL);
		if (r == SHP_ECLOSED)
			return 0; /* the pipeline stops: return */
		if (r)
			return BAD_STATUS;
	}
	return 0;
}

static int st_each(const void *in, void *ctx)
{
	const struct stage_cfg *c = ctx;

	count_call(c);
	if (!args_ok(c, in))
		return BAD_STATUS;
	return fails(c, phash(in, c->in_size, c->salt)) ? c->fail_status : 0;
}

/* The source's item i. */
static unsigned char src_byte(uint64_t seed, size_t i, size_t j)
{
	return elem_byte(seed + i, j);
}

struct gen_state {
	size_t next, count, in_size;
	uint32_t seed;
	int err;
};

static int gen(void *in, void *arg)
{
	struct gen_state *g = arg;

	if ((in == NULL) != (g->in_size == 0))
		return GEN_BAD;
	if (g->next == g->count)
		return g->err;
	for (size_t j = 0; j < g->in_size; j++)
		((unsigned char *)in)[j] = src_byte(g->seed, g->next, j);
	g->next++;
	return 1;
}

/* An output the model expects, or the failure of a stage on an item. */
struct pout {
	size_t index;
	unsigned char bytes[P_MAX_SIZE];
	bool fail;
	unsigned stage;
	int status;
	bool used;
};

struct pmodel {
	unsigned nst;
	bool ordered, has_each, has_flat;
	size_t tail; /* the payload size after the last stage */
	struct pout *outs;
	size_t nouts, cap;
	uint32_t calls[P_STAGES];
};

static void p_append(struct pmodel *m, const struct pout *o)
{
	FUZZ_CHECK(m->nouts < m->cap, "model overflow");
	m->outs[m->nouts++] = *o;
}

/* What item index becomes from stage s on, its payload being in. */
/* NOLINTNEXTLINE(misc-no-recursion): one level a stage, at most 4 deep */
static void walk(struct pmodel *m, size_t index, unsigned s,
                 const unsigned char *in)
{
	const struct stage_cfg *c = &cfgs[s];
	unsigned char out[P_MAX_SIZE];
	struct pout o = { .index = index };
	uint64_t h;

	if (s == m->nst) {
		if (!m->has_each) {
			memcpy(o.bytes, in, m->tail);
			p_append(m, &o);
		}
		return;
	}
	m->calls[s]++;
	h = phash(c->in_size ? in : NULL, c->in_size, c->salt);
	if (fails(c, h)) {
		o.fail = true;
		o.stage = s;
		o.status = c->fail_status;
		p_append(m, &o);
		return;
	}
	switch (c->kind) {
	case K_MAP:
		fill(out, c->out_size, h);
		walk(m, index, s + 1, out);
		break;
	case K_FILTER:
		if (keeps(h))
			walk(m, index, s + 1, in);
		break;
	case K_FLAT:
		for (unsigned k = 0; k < spread(h); k++) {
			fill(out, c->out_size, h + k + 1);
			walk(m, index, s + 1, out);
		}
		break;
	default:
		break;
	}
}

/* Stage arguments of every class the checks tell apart. */
struct stage_args {
	int kind;
	bool no_p, no_fn;
	unsigned workers;
	size_t maxsize, out_size;
};

static void pick_stage(struct fuzz_in *in, struct stage_args *a)
{
	uint8_t f = fuzz_u8(in);

	memset(a, 0, sizeof(*a));
	a->kind = f % 4;
	a->no_p = (f >> 2) % 32 == 31;
	a->no_fn = (f >> 2) % 32 == 30;
	switch (fuzz_pick(in, 8)) {
	case 4:
		a->workers = 0;
		break;
	case 5:
		a->workers = P_WORKERS - 3 + fuzz_pick(in, 5); /* the edge */
		break;
	case 6:
		a->workers = UINT_MAX - fuzz_pick(in, 2);
		break;
	case 7:
		a->workers = fuzz_u32(in);
		break;
	default:
		a->workers = 1 + fuzz_pick(in, 2);
		break;
	}
	switch (fuzz_pick(in, 8)) {
	case 4:
		a->maxsize = 0;
		break;
	case 5:
		a->maxsize = P_MAXSIZE_MAX + fuzz_pick(in, 2);
		break;
	case 6:
		a->maxsize = SIZE_MAX - fuzz_pick(in, 2);
		break;
	case 7:
		a->maxsize = (size_t)fuzz_u64(in);
		break;
	default:
		a->maxsize = 1 + fuzz_pick(in, 8);
		break;
	}
	switch (fuzz_pick(in, 8)) {
	case 4:
		a->out_size = P_PAYLOAD_MAX + fuzz_pick(in, 2);
		break;
	case 5:
		a->out_size = SIZE_MAX - fuzz_pick(in, 2);
		break;
	case 6:
		a->out_size = (size_t)fuzz_u64(in);
		break;
	case 7:
		a->out_size = 0;
		break;
	default:
		a->out_size = 1 + fuzz_pick(in, 16);
		break;
	}
}

/* The documented refusals of a stage (-EINVAL): true when a rule is
 * broken. prev: the workers before it (the feeder's 1 for the first). */
static bool stage_refused(const struct pmodel *m, const struct stage_args *a,
                          unsigned prev)
{
	bool sized = a->kind == K_MAP || a->kind == K_FLAT;

	return a->no_p || a->no_fn || !a->workers || a->workers > P_WORKERS ||
	       (uint64_t)prev + a->workers + 1 > P_WORKERS || !a->maxsize ||
	       a->maxsize > P_MAXSIZE_MAX ||
	       (sized && a->out_size > P_PAYLOAD_MAX) || m->has_each ||
	       (a->kind == K_FLAT && m->ordered && m->has_flat) ||
	       m->nst == P_STAGES;
}

static int add_stage(shp_pipeline *p, const struct stage_args *a,
                     struct stage_cfg *c)
{
	shp_pipeline *pp = a->no_p ? NULL : p;

	switch (a->kind) {
	case K_MAP:
		return shp_pipeline_map(pp, a->no_fn ? NULL : st_map, c,
		                        a->out_size, a->workers, a->maxsize);
	case K_FILTER:
		return shp_pipeline_filter(pp, a->no_fn ? NULL : st_filter, c,
		                           a->workers, a->maxsize);
	case K_FLAT:
		return shp_pipeline_flat_map(pp, a->no_fn ? NULL : st_flat, c,
		                             a->out_size, a->workers, a->maxsize);
	default:
		return shp_pipeline_each(pp, a->no_fn ? NULL : st_each, c,
		                         a->workers, a->maxsize);
	}
}

/* A result the pipeline gave: index and out (NULL: not asked). */
static void p_result(struct pmodel *m, size_t *taken, size_t index,
                     const unsigned char *out)
{
	if (m->ordered) {
		const struct pout *o;

		FUZZ_CHECK(*taken < m->nouts, "a result past the end");
		o = &m->outs[*taken];
		FUZZ_CHECK(!o->fail, "a result after item %zu failed at stage %u",
		           o->index, o->stage);
		FUZZ_CHECK(index == SIZE_MAX || index == o->index,
		           "result %zu: index %zu, want %zu", *taken, index,
		           o->index);
		FUZZ_CHECK(!out || memcmp(out, o->bytes, m->tail) == 0,
		           "result %zu (item %zu) differs", *taken, o->index);
		(*taken)++;
		return;
	}
	for (size_t k = 0; k < m->nouts; k++) {
		struct pout *o = &m->outs[k];

		if (o->used || o->fail || (index != SIZE_MAX && index != o->index) ||
		    (out && memcmp(out, o->bytes, m->tail) != 0))
			continue;
		o->used = true;
		(*taken)++;
		return;
	}
	FUZZ_CHECK(0, "an unexpected result, index %zu", index);
}

/* Runs the pipeline (the first call starts it) to its end, checking
 * each result; returns the end. *dropped: the end came from
 * shp_pipeline_run, which dropped the results it took. */
static int p_drive(struct fuzz_in *in, shp_pipeline *p, struct pmodel *m,
                   size_t *taken, bool *dropped)
{
	unsigned char out[P_MAX_SIZE + 1];
	int polls = 0, r;

	for (;;) {
		uint8_t f = fuzz_u8(in);
		int kind;
		int64_t timeout = fuzz_timeout(in, &kind);
		size_t index = SIZE_MAX;
		/* Unordered results are matched on index and bytes both:
		 * with either alone, two alike could be matched wrongly. */
		bool no_index = m->ordered && (f & 8), no_out = m->ordered && (f & 16);

		if (polls > 200) {
			kind = FUZZ_T_FOREVER; /* bounded time per input */
			timeout = -1;
		}
		if (f % 8 == 7 || *dropped) {
			/* Drops what is left; its end is next's. Called
			 * again until that end. */
			*dropped = true;
			r = shp_pipeline_run(p, timeout);
			FUZZ_CHECK(r != 1, "run returned a result");
		} else {
			memset(out, SENTINEL, sizeof(out));
			r = shp_pipeline_next(p, no_index ? NULL : &index,
			                      no_out ? NULL : out, timeout);
			FUZZ_CHECK(out[m->tail] == SENTINEL, "next wrote past out");
		}
		if (r == -ETIMEDOUT) {
			FUZZ_CHECK(kind != FUZZ_T_FOREVER, "timed out with timeout %lld",
			           (long long)timeout);
			polls++;
			continue;
		}
		if (r != 1)
			return r;
		p_result(m, taken, index, no_out ? NULL : out);
	}
}

static void fuzz_pipeline(struct fuzz_in *in)
{
	uint8_t f = fuzz_u8(in);
	bool use_gen = f & 1, no_p = f % 32 == 2, no_src = (f >> 2) % 8 == 1;
	unsigned flags = f & 64 ? SHP_UNORDERED : 0;
	size_t in_size = fuzz_pick(in, 4) == 3 ? pick_size(in, P_MAX_SIZE)
	                                        : fuzz_pick(in, 17);
	size_t n = fuzz_pick(in, 4) == 3 ? pick_size(in, P_MAX_ITEMS)
	                                  : fuzz_pick(in, P_MAX_ITEMS + 1);
	struct gen_state g = { .seed = fuzz_u8(in) };
	struct pmodel m = { .ordered = !(flags & SHP_UNORDERED) };
	shp_pipeline *p = (shp_pipeline *)poison;
	unsigned char *src = NULL;
	bool refused, runnable;
	unsigned workers = 0, prev = 1, nadd;
	size_t taken = 0;
	bool dropped = false;
	int r, final, want;

	if (f & 128)
		flags |= 1u << (1 + fuzz_pick(in, 31));
	refused = no_p || (flags & ~SHP_UNORDERED) || in_size > P_PAYLOAD_MAX ||
	          (use_gen ? no_src : no_src && in_size && n);
	runnable = !refused && in_size <= P_MAX_SIZE &&
	           (use_gen || n <= P_MAX_ITEMS);
	if (use_gen) {
		g.in_size = in_size;
		g.count = n % (P_MAX_ITEMS + 1);
		g.err = fuzz_pick(in, 3) == 2 ? -1 - (int)fuzz_pick(in, 200) : 0;
		if (g.err == GEN_BAD)
			g.err = -EIO;
		r = shp_pipeline_create_gen(no_p ? NULL : &p, no_src ? NULL : gen,
		                            &g, in_size, flags);
	} else {
		/* An array to read only when the pipeline runs: else the
		 * one-byte block, which it must not read. */
		if (runnable && in_size && n) {
			src = malloc(n * in_size);
			FUZZ_CHECK(src, "out of memory");
			for (size_t i = 0; i < n; i++)
				for (size_t j = 0; j < in_size; j++)
					src[i * in_size + j] = src_byte(g.seed, i, j);
		}
		r = shp_pipeline_create(no_p ? NULL : &p,
		                        no_src ? NULL : src ? src : poison, in_size,
		                        n, flags);
	}
	if (refused) {
		FUZZ_CHECK(r == -EINVAL, "create%s(%zu, %zu, %#x): %d",
		           use_gen ? "_gen" : "", in_size, n, flags, r);
		return;
	}
	if (!use_gen && mul_overflows(n, in_size)) {
		FUZZ_CHECK(r == -EOVERFLOW && !p, "create(%zu, %zu): %d",
		           in_size, n, r);
		free(src); /* NULL: no array that large was made */
		return;
	}
	FUZZ_CHECK(r == 0 && p && p != (shp_pipeline *)poison,
	           "create%s(%zu, %zu, %#x): %d", use_gen ? "_gen" : "",
	           in_size, n, flags, r);
	FUZZ_CHECK(shp_pipeline_error(p, NULL, NULL, NULL, NULL) == -ENOENT,
	           "error before any");
	m.tail = in_size;
	nadd = fuzz_pick(in, 4) == 3 ? fuzz_pick(in, P_STAGES + 3)
	                              : 1 + fuzz_pick(in, P_MAX_RUN_STAGES);
	for (unsigned k = 0; k < nadd; k++) {
		struct stage_args a;
		struct stage_cfg *c = &cfgs[m.nst < P_STAGES ? m.nst : 0];
		bool bad;

		pick_stage(in, &a);
		bad = stage_refused(&m, &a, prev);
		if (!bad) {
			/* Read one at a time: an initializer's order of
			 * evaluation is unspecified. */
			c->kind = a.kind;
			c->index = m.nst;
			c->salt = fuzz_u8(in);
			c->fail_mod = fuzz_pick(in, 4) == 3 ? 1 + fuzz_pick(in, 8) : 0;
			c->fail_status = fuzz_pick(in, 4) == 3
			                 ? 2 + (int)fuzz_below(in, INT32_MAX - 2)
			                 : 2 + (int)fuzz_pick(in, 200);
			if (c->fail_status == BAD_STATUS)
				c->fail_status = 3;
			c->in_size = m.tail;
			c->out_size = a.kind == K_FILTER ? m.tail
			              : a.kind == K_EACH ? 0 : a.out_size;
		}
		r = add_stage(p, &a, c);
		if (bad) {
			FUZZ_CHECK(r == -EINVAL, "stage %u (kind %d, %u workers, "
			           "maxsize %zu, out %zu): %d", m.nst, a.kind,
			           a.workers, a.maxsize, a.out_size, r);
			continue;
		}
		FUZZ_CHECK(r == 0, "stage %u (kind %d, %u workers, maxsize %zu, "
		           "out %zu): %d", m.nst, a.kind, a.workers, a.maxsize,
		           a.out_size, r);
		m.nst++;
		m.has_each |= a.kind == K_EACH;
		m.has_flat |= a.kind == K_FLAT;
		m.tail = c->out_size;
		prev = a.workers;
		workers += a.workers;
		if (a.maxsize > P_MAX_MAXSIZE || c->out_size > P_MAX_SIZE)
			runnable = false;
	}
	if (!m.nst) {
		/* Nothing to run: refused, and not started. */
		FUZZ_CHECK(shp_pipeline_next(p, NULL, NULL, 0) == -EINVAL,
		           "next without stages");
		FUZZ_CHECK(shp_pipeline_run(p, 0) == -EINVAL, "run without stages");
		runnable = false;
	}
	if (!runnable || m.nst > P_MAX_RUN_STAGES || workers > forks_left) {
		shp_pipeline_free(p);
		free(src);
		return;
	}
	forks_left -= workers;

	/* The model: every output of every item, in input order. */
	m.cap = P_MAX_ITEMS * 64 + 8;
	m.outs = calloc(m.cap, sizeof(*m.outs));
	FUZZ_CHECK(m.outs, "out of memory");
	for (size_t i = 0; i < (use_gen ? g.count : n); i++) {
		unsigned char item[P_MAX_SIZE];

		for (size_t j = 0; j < in_size; j++)
			item[j] = src_byte(g.seed, i, j);
		walk(&m, i, 0, item);
	}
	/* A generator's -ETIMEDOUT comes as -ETIME: never taken for the
	 * wait's own timeout. */
	want = !use_gen ? 0 : g.err == -ETIMEDOUT ? -ETIME : g.err;
	for (size_t k = 0; k < m.nouts; k++)
		if (m.outs[k].fail)
			want = SHP_ETASK;
	memset(stage_calls, 0, P_STAGES * sizeof(*stage_calls));

	final = p_drive(in, p, &m, &taken, &dropped);
	FUZZ_CHECK(final == want, "pipeline ended with %d (%s), want %d", final,
	           shp_strerror(final), want);
	/* The end, again and again. */
	FUZZ_CHECK(shp_pipeline_next(p, NULL, NULL, 0) == final, "next again");
	FUZZ_CHECK(shp_pipeline_run(p, fuzz_u8(in) & 1 ? 0 : -1) == final,
	           "run again");
	if (want == SHP_ETASK) {
		unsigned stage = UINT_MAX;
		size_t index = SIZE_MAX - 1;
		int status = 0, ws = -1;
		bool known = false;

		r = shp_pipeline_error(p, &stage, &index, &status, &ws);
		FUZZ_CHECK(r == 0, "error after SHP_ETASK: %d", r);
		FUZZ_CHECK(status != BAD_STATUS, "stage %u's own check failed",
		           stage);
		for (size_t k = 0; k < m.nouts && !known; k++)
			known = m.outs[k].fail && m.outs[k].stage == stage &&
			        m.outs[k].index == index &&
			        m.outs[k].status == status;
		FUZZ_CHECK(known && ws == 0, "error: stage %u, item %zu, status "
		           "%d, wstatus %#x: no such failure", stage, index,
		           status, ws);
		FUZZ_CHECK(shp_pipeline_error(p, NULL, NULL, NULL, NULL) == 0,
		           "error with NULLs");
	} else {
		FUZZ_CHECK(shp_pipeline_error(p, NULL, NULL, NULL, NULL) ==
		           -ENOENT, "error without one");
		/* Everything came out, and each stage ran once per payload
		 * that reached it. */
		FUZZ_CHECK(dropped || taken == m.nouts, "%zu results of %zu",
		           taken, m.nouts);
		for (unsigned s = 0; s < m.nst; s++)
			FUZZ_CHECK(__atomic_load_n(&stage_calls[s], __ATOMIC_SEQ_CST) ==
			           m.calls[s], "stage %u: %u calls, want %u", s,
			           stage_calls[s], m.calls[s]);
	}
	/* Started: a stage may no longer be added. */
	r = shp_pipeline_map(p, st_map, &cfgs[0], 1, 1, 1);
	FUZZ_CHECK(r == -EBUSY || (m.has_each && r == -EINVAL),
	           "a stage after the start: %d", r);
	shp_pipeline_free(p);
	free(m.outs);
	free(src);
}

/* --------------------------------------------------------------- rest */

/* The text of a /proc file (NUL-terminated, cut to size - 1 bytes), or
 * "" when it cannot be read. */
static void read_text(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got = fd < 0 ? -1 : read(fd, buf, size - 1);

	buf[got > 0 ? got : 0] = '\0';
	if (fd >= 0)
		close(fd);
}

/* Whether child pid is the sanitizers' symbolizer, which libFuzzer starts
 * to name a new function and keeps running: the harness's only child
 * between inputs. */
static bool symbolizer(long pid)
{
	char path[64], comm[32];

	snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
	read_text(path, comm, sizeof(comm));
	return !strncmp(comm, "llvm-symbolizer", 15) ||
	       !strncmp(comm, "addr2line", 9);
}

/*
 * A child of this process other than the symbolizer, running or not; 0:
 * none. Every process the harness and the library start is forked by the
 * thread that runs the input: its children are in
 * /proc/thread-self/children (CONFIG_PROC_CHILDREN); without that file,
 * only a zombie is seen.
 */
static long child_left(void)
{
	char text[4096];
	const char *s = text;
	char *end;
	siginfo_t si;

	read_text("/proc/thread-self/children", text, sizeof(text));
	for (long pid; (pid = strtol(s, &end, 10)) > 0; s = end)
		if (!symbolizer(pid))
			return pid;
	/* A zombie, looked at without reaping it. */
	memset(&si, 0, sizeof(si));
	if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	    si.si_pid && !symbolizer(si.si_pid))
		return si.si_pid;
	return 0;
}

static void fuzz_null(struct fuzz_in *in)
{
	int kind;
	int64_t timeout = fuzz_timeout(in, &kind);

	FUZZ_CHECK(shp_pipeline_next(NULL, NULL, NULL, timeout) == -EINVAL,
	           "next(NULL)");
	FUZZ_CHECK(shp_pipeline_run(NULL, timeout) == -EINVAL, "run(NULL)");
	FUZZ_CHECK(shp_pipeline_error(NULL, NULL, NULL, NULL, NULL) == -EINVAL,
	           "error(NULL)");
	FUZZ_CHECK(shp_emit(NULL, poison) == -EINVAL, "emit(NULL)");
	FUZZ_CHECK(shp_collect_next(NULL, NULL, NULL, timeout) == -EINVAL,
	           "collect_next(NULL)");
	FUZZ_CHECK(shp_process_join(NULL, timeout) == -EINVAL, "join(NULL)");
	shp_pipeline_free(NULL);
	shp_collect_destroy(NULL);
	shp_process_free(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	long left;

	forks_left = MAX_FORKS;
	for (int k = 0; k < OPS_PER_INPUT && !fuzz_done(&in); k++) {
		switch (fuzz_u8(&in) % 4) {
		case 0:
			fuzz_collect(&in);
			break;
		case 1:
			fuzz_process(&in);
			break;
		case 2:
			fuzz_pipeline(&in);
			break;
		default:
			fuzz_null(&in);
			break;
		}
	}
	/* No child left behind, running or zombie. */
	left = child_left();
	FUZZ_CHECK(left == 0, "a child is left: %ld", left);
	return 0;
}
