/*
 * Multi-process torture of the whole pool under worker kills (make stress).
 * usage: stress_map [seconds] [workers] [kill_interval_us] [seed]
 *
 * Runs calls back to back with random parameters (sizes that land inline,
 * staged and zero-copy; chunk sizes; task durations) while a killer process
 * SIGKILLs random workers. Each call picks its form at random:
 *
 *   map             shp_map
 *   map_opt         shp_map_opt, sometimes with retries (1-3), a task
 *                   deadline with a few tasks that deliberately overrun it,
 *                   and wait statuses
 *   async           shp_map_async(_opt) + wait (blocking, in slices, or by
 *                   polling), sometimes with callbacks, sometimes cancelled
 *                   at a random moment
 *   imap, imap_unordered, imap_gen
 *                   iterators read to the end; imap_gen takes options
 *                   (retries, deadline) and either order
 *
 * What must hold: an array call returns 0 or SHP_ETASK in agreement with
 * its statuses (an async call SHP_ECANCELED when its cancel took effect);
 * every task reports 0 with exactly the right output, SHP_ECRASHED (its
 * worker's wait status SIGKILL), SHP_ETIMEDOUT only in a call with a
 * deadline (never sooner than half the deadline after the task began; a
 * task that overruns must get it, or SHP_ECRASHED), SHP_ECANCELED only in a
 * cancelled call; an iterator delivers each index exactly once, in order
 * when ordered. A task may never run twice, except when re-run for a retry
 * (at most `retries` more times, and no more re-runs and crashes in a call
 * than kills during it) or, in a call with a deadline, once more when the
 * supervisor's deadline kill caught its worker just as it began the task.
 * A call may not hang. Prints one parseable summary line and exits non-zero
 * on any violation.
 *
 * The seed (4th argument, else $SHP_STRESS_SEED, else the clock) fixes the
 * sequence of calls, not the kill timing. $SHP_STRESS_VERBOSE=1 prints each
 * call before it runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmpool.h"
#include "procfs.h"

#define MAX_N 300000u
#define MAX_ITER_N 100000u      /* iterators take results one at a time */
#define MAX_TIMED_N 20000u      /* calls with a task deadline */
#define MAX_OVERRUN 3           /* tasks that overrun the deadline, per call */
#define ELEM_BUDGET (16u << 20) /* bytes per in or out buffer */
#define MAX_KIDS 1100           /* > SHP_MAX_WORKERS */
#define MAX_DETAILS 10          /* failures printed per call */
#define STATUS_UNSET 0x5eed5eed /* no status may ever be left at this */
#define WSTATUS_UNSET 0x7eed7eed
#define POISON 0xa5
/* Re-runs and crashes a call may have beyond the kills counted while it
 * ran: one kill in flight at each end (sent, not yet counted). */
#define KILL_SLACK 2

/* Statuses of our own that a task returns when its input is not what the
 * parent wrote, or when it was meant to overrun its deadline and was not
 * killed for it: each is a failure of the pool, reported as such. */
#define TASK_BAD_INDEX 71
#define TASK_BAD_INPUT 72
#define TASK_OVERRAN 73

enum spin_mode { SPIN_NONE, SPIN_SHORT, SPIN_LONG };

enum kind {
	K_MAP,
	K_MAP_OPT,
	K_ASYNC,
	K_IMAP,
	K_IMAP_UNORDERED,
	K_IMAP_GEN,
	NKINDS
};

static const char *const kind_names[NKINDS] = {
	"map", "map_opt", "async", "imap", "imap_unordered", "imap_gen",
};

enum cancel_mode { CANCEL_NONE, CANCEL_NOW, CANCEL_SLEEP, CANCEL_PROGRESS };
enum wait_mode { WAIT_FOREVER, WAIT_SLICES, WAIT_POLL };

/*
 * What a call's tasks need to know, in shp_alloc() memory so that the parent
 * can change it per call after the workers were forked (ctx must live in
 * the arena or predate the pool).
 */
struct params {
	uint64_t salt;
	uint64_t n;
	uint32_t in_size;
	uint32_t out_size;
	uint32_t mode;        /* enum spin_mode */
	uint32_t spin_max_ns; /* SPIN_SHORT: each task spins [0, this] */
	uint32_t long_every;  /* SPIN_LONG: one task in this many spins <= 1 ms */
	uint32_t noverrun;    /* overrun[0, noverrun): indices that overrun */
	uint64_t overrun[MAX_OVERRUN];
	uint64_t overrun_ns;  /* how long those spin before giving up */
	uint64_t *start_ns;   /* calls with a deadline: each index's last start
	                       * (arena, MAX_TIMED_N); NULL in the others */
	uint64_t execs;       /* tasks started, all indices */
	uint32_t count[];     /* starts per index (known when in_size > 0) */
};

/* Shared with the killer. */
struct killer_stats {
	uint64_t kills;    /* SIGKILLs delivered to a live worker */
	uint64_t attempts; /* rounds with no worker to kill, or a lost race */
};

/* One call's random choices; printed when anything goes wrong. */
struct call_desc {
	uint64_t index;
	uint64_t salt;
	size_t n, chunksize;
	size_t in_size, out_size;
	bool in_arena, out_arena;
	enum spin_mode mode;
	uint32_t spin_max_ns, long_every;
	enum kind kind;
	bool use_opt;       /* map_opt: options (else NULL); async: _opt form */
	unsigned retries;
	int64_t timeout_ns; /* task deadline; 0: none */
	unsigned noverrun;
	size_t overrun[MAX_OVERRUN];
	bool wstatus;       /* pass opt.wstatus and check it */
	bool callbacks;     /* async: callback and error_callback */
	enum cancel_mode cancel;
	uint32_t cancel_arg; /* CANCEL_SLEEP: us; CANCEL_PROGRESS: tasks done */
	enum wait_mode wait;
	int64_t next_timeout_ns; /* iterators: shp_iter_next's timeout */
	bool unordered;          /* imap_gen: SHP_UNORDERED */
};

struct totals {
	uint64_t calls, tasks, completed, crashed;
	uint64_t lost, wrong, dup, bad_status, bad_ret;
	uint64_t retried, timedout, slow_timeouts, cancelled, bad_wstatus;
	uint64_t excess;
	uint64_t retry_calls, timed_calls, cancel_calls, cancel_late;
	uint64_t overruns, callbacks;
	uint64_t kind_calls[NKINDS], kind_tasks[NKINDS];
};

/* One call's verdicts, task by task. */
struct tally {
	uint64_t completed, crashed, timedout, slow_timeouts, cancelled;
	uint64_t retried, lost, wrong, dup, bad, bad_ws, bad_ret, excess;
};

struct checker {
	const struct call_desc *d;
	struct params *p;
	struct tally t;
	unsigned shown;
	bool indexed;     /* the tasks know their index: p->count is kept */
	bool cancel_took; /* SHP_ECANCELED statuses are allowed */
};

static uint64_t *start_buf; /* params.start_ns of timed calls (arena) */
static char alarm_msg[1024];
static size_t alarm_len;
static pid_t killer_pid = -1;

/* ---------------------------------------------------------------- hashing */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64_C(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

static uint64_t rnd_state;

static uint64_t rnd(void)
{
	rnd_state += UINT64_C(0x9e3779b97f4a7c15);
	return mix64(rnd_state);
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

/* Word k of task i's input. Word 0 names the index, so that a task (which
 * is not told its index) can find it and check the rest. */
static uint64_t in_word(uint64_t salt, uint64_t i, size_t k)
{
	if (k == 0)
		return i ^ salt;
	return mix64(salt + i * UINT64_C(0x100000001b3) + k);
}

/* The value every word of task i's output must hold. Without an input the
 * task cannot know i: then it is the same for every task of the call. */
static uint64_t out_word(uint64_t salt, uint64_t i, bool indexed)
{
	return mix64(~salt ^ (indexed ? i * UINT64_C(0xc2b2ae3d27d4eb4f) + 1 : 0));
}

/* Element bytes are the words' bytes in order; a last partial word keeps
 * its low bytes. memcpy: elements of odd sizes are not aligned. */
static void make_input(unsigned char *p, size_t size, uint64_t salt,
                       uint64_t i)
{
	for (size_t k = 0; 8 * k < size; k++) {
		uint64_t w = in_word(salt, i, k);
		size_t len = size - 8 * k < 8 ? size - 8 * k : 8;

		memcpy(p + 8 * k, &w, len);
	}
}

static void fill_output(unsigned char *p, size_t size, uint64_t v)
{
	for (size_t k = 0; 8 * k < size; k++) {
		size_t len = size - 8 * k < 8 ? size - 8 * k : 8;

		memcpy(p + 8 * k, &v, len);
	}
}

static bool output_ok(const unsigned char *p, size_t size, uint64_t v)
{
	for (size_t k = 0; 8 * k < size; k++) {
		size_t len = size - 8 * k < 8 ? size - 8 * k : 8;

		if (memcmp(p + 8 * k, &v, len) != 0)
			return false;
	}
	return true;
}

static bool all_poison(const unsigned char *p, size_t size)
{
	for (size_t k = 0; k < size; k++)
		if (p[k] != POISON)
			return false;
	return true;
}

/* ---------------------------------------------------------------- the task */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t task_ns(const struct params *p, uint64_t i)
{
	uint64_t h = mix64(p->salt ^ (i * UINT64_C(0x9e3779b97f4a7c15)));

	switch (p->mode) {
	case SPIN_SHORT:
		return h % ((uint64_t)p->spin_max_ns + 1);
	case SPIN_LONG:
		if ((h >> 32) % p->long_every == 0)
			return h % 1000000;
		return h % 5000;
	default:
		return 0;
	}
}

static bool overruns(const struct params *p, uint64_t i)
{
	for (uint32_t k = 0; k < p->noverrun && k < MAX_OVERRUN; k++)
		if (p->overrun[k] == i)
			return true;
	return false;
}

/*
 * Checks its input, counts its start (a task must never run twice: done
 * tasks are not re-run and the one a dead worker was running is reported,
 * not retried, unless the call asked for retries), notes when it began
 * (calls with a deadline), spins if asked, and fills every byte of its
 * output. A task chosen to overrun the deadline spins until its worker is
 * killed, or gives up long after and says so.
 */
static int task(const void *in, void *out, void *ctx)
{
	struct params *p = ctx;
	uint64_t i = 0, started, ns;
	bool indexed = p->in_size > 0;

	if (indexed) {
		const unsigned char *b = in;
		uint64_t w;

		memcpy(&w, b, 8);
		i = w ^ p->salt;
		if (i >= p->n)
			return TASK_BAD_INDEX;
		/* As soon as it can: the pool's own start is just before. */
		if (p->start_ns && i < MAX_TIMED_N)
			__atomic_store_n(&p->start_ns[i], now_ns(),
			                 __ATOMIC_RELAXED);
		for (size_t k = 1; 8 * k < p->in_size; k++) {
			size_t len = p->in_size - 8 * k < 8 ? p->in_size - 8 * k : 8;

			w = in_word(p->salt, i, k);
			if (memcmp(b + 8 * k, &w, len) != 0)
				return TASK_BAD_INPUT;
		}
		__atomic_fetch_add(&p->count[i], 1, __ATOMIC_RELAXED);
	}
	started = __atomic_fetch_add(&p->execs, 1, __ATOMIC_RELAXED);
	if (indexed && overruns(p, i)) {
		uint64_t t0 = now_ns();

		while (now_ns() - t0 < p->overrun_ns)
			;
		return TASK_OVERRAN;
	}
	/* Without an index the order of starts picks the duration. */
	ns = task_ns(p, indexed ? i : started);
	if (ns) {
		uint64_t t0 = now_ns();

		while (now_ns() - t0 < ns)
			;
	}
	if (p->out_size)
		fill_output(out, p->out_size, out_word(p->salt, i, indexed));
	return 0;
}

/* ---------------------------------------------------------------- killer */

/*
 * SIGKILLs pid if it still is a live child of sup. Through a pidfd, so that
 * a worker that died and whose pid was reused is never confused with the
 * new owner: the pidfd pins the process we check.
 */
static bool kill_worker(pid_t pid, pid_t sup)
{
	int fd = pidfd_open(pid, 0);
	bool ok = false;
	pid_t pp;

	if (fd < 0)
		return false;
	if (proc_parent(pid, &pp) && pp == sup)
		ok = pidfd_send_signal(fd, SIGKILL, NULL, 0) == 0;
	close(fd);
	return ok;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000u),
	                       (long)(ns % 1000000000u) };

	nanosleep(&ts, NULL);
}

static void jitter_sleep(unsigned long us)
{
	sleep_ns((us / 2 + rnd_below(us + 1)) * 1000);
}

static void __attribute__((noreturn))
killer_main(pid_t parent, pid_t sup, unsigned long interval_us,
            struct killer_stats *ks)
{
	static pid_t kids[MAX_KIDS];

	/* Never outlive the test, whatever way it ends. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
	signal(SIGTERM, SIG_DFL);
	for (;;) {
		size_t n;

		jitter_sleep(interval_us);
		n = proc_children(sup, kids, MAX_KIDS);
		if (n && kill_worker(kids[rnd_below(n)], sup))
			__atomic_fetch_add(&ks->kills, 1, __ATOMIC_RELAXED);
		else
			__atomic_fetch_add(&ks->attempts, 1, __ATOMIC_RELAXED);
	}
}

/* ---------------------------------------------------------------- the run */

static void on_alarm(int sig)
{
	(void)sig;
	if (write(STDERR_FILENO, alarm_msg, alarm_len) < 0)
		_exit(1);
	if (killer_pid > 0)
		kill(killer_pid, SIGKILL);
	_exit(1);
}

static const char *mode_name(enum spin_mode m)
{
	return m == SPIN_SHORT ? "short" : m == SPIN_LONG ? "long" : "none";
}

static const char *cancel_name(enum cancel_mode m)
{
	static const char *const names[] = { "none", "now", "sleep",
	                                     "progress" };

	return names[m];
}

static const char *wait_name(enum wait_mode m)
{
	static const char *const names[] = { "forever", "slices", "poll" };

	return names[m];
}

static int describe(char *buf, size_t len, const struct call_desc *d)
{
	int k = snprintf(buf, len,
	                 "call=%" PRIu64 " kind=%s salt=0x%016" PRIx64
	                 " n=%zu chunksize=%zu in_size=%zu%s out_size=%zu%s"
	                 " spin=%s spin_max_ns=%u long_every=%u",
	                 d->index, kind_names[d->kind], d->salt, d->n,
	                 d->chunksize, d->in_size,
	                 d->in_size ? (d->in_arena ? "(arena)" : "(heap)") : "",
	                 d->out_size,
	                 d->out_size ? (d->out_arena ? "(arena)" : "(heap)") : "",
	                 mode_name(d->mode), d->spin_max_ns, d->long_every);

	if (k < 0 || (size_t)k >= len)
		return k;
	if (d->kind == K_MAP_OPT || d->kind == K_ASYNC || d->kind == K_IMAP_GEN)
		k += snprintf(buf + k, len - (size_t)k,
		              " opt=%d retries=%u timeout_ms=%" PRId64
		              " overrun=%u[%zd,%zd,%zd] wstatus=%d",
		              d->use_opt, d->retries, d->timeout_ns / 1000000,
		              d->noverrun,
		              d->noverrun > 0 ? (ssize_t)d->overrun[0] : -1,
		              d->noverrun > 1 ? (ssize_t)d->overrun[1] : -1,
		              d->noverrun > 2 ? (ssize_t)d->overrun[2] : -1,
		              d->wstatus);
	if ((size_t)k >= len)
		return k;
	if (d->kind == K_ASYNC)
		k += snprintf(buf + k, len - (size_t)k,
		              " callbacks=%d cancel=%s/%u wait=%s slice_us=%" PRId64,
		              d->callbacks, cancel_name(d->cancel), d->cancel_arg,
		              wait_name(d->wait), d->next_timeout_ns / 1000);
	else if (d->kind >= K_IMAP)
		k += snprintf(buf + k, len - (size_t)k,
		              " next_timeout_us=%" PRId64 "%s",
		              d->next_timeout_ns < 0 ? -1
		                                     : d->next_timeout_ns / 1000,
		              d->unordered ? " unordered" : "");
	return k;
}

static size_t pick_size(bool output)
{
	/* 8, 13, 48: inline in the result slot; 56, 200, 4096: staged through
	 * the arena (or direct when the buffer is in it). 0: no buffer. */
	unsigned u = (unsigned)rnd_below(100);

	if (u < (output ? 5u : 10u))
		return 0;
	if (u < 35)
		return 8;
	if (u < 40)
		return 13;
	if (u < 50)
		return 48;
	if (u < 60)
		return 56;
	if (u < 85)
		return 200;
	return 4096;
}

static enum kind pick_kind(void)
{
	unsigned u = (unsigned)rnd_below(100);

	if (u < 22)
		return K_MAP;
	if (u < 42)
		return K_MAP_OPT;
	if (u < 64)
		return K_ASYNC;
	if (u < 76)
		return K_IMAP;
	if (u < 88)
		return K_IMAP_UNORDERED;
	return K_IMAP_GEN;
}

/* Options of the forms that take them: retries, a deadline with tasks that
 * overrun it, wait statuses, callbacks. */
static void pick_options(struct call_desc *d)
{
	/* Short ones too: a task that overruns must outlast its deadline
	 * without being killed first to get SHP_ETIMEDOUT, and the killer
	 * strikes each worker every few ms. */
	static const int64_t deadlines_ms[] = { 5, 10, 50 };

	if (d->kind == K_MAP_OPT)
		d->use_opt = rnd_below(100) < 85;
	else if (d->kind == K_ASYNC || d->kind == K_IMAP_GEN)
		d->use_opt = rnd_below(100) < 65;
	if (!d->use_opt) {
		if (d->kind == K_MAP_OPT)
			d->chunksize = 0; /* opt NULL: automatic chunks */
		return;
	}
	if (rnd_below(100) < 45)
		d->retries = 1 + (unsigned)rnd_below(3);
	if (rnd_below(100) < 30) {
		d->timeout_ns = deadlines_ms[rnd_below(3)] * 1000000;
		/* The tasks must know their index, for the overrunning ones
		 * and for the starts they note. */
		if (d->in_size == 0)
			d->in_size = 8;
		if (rnd_below(100) < 70)
			d->noverrun = 1 + (unsigned)rnd_below(MAX_OVERRUN);
	}
	d->wstatus = d->kind != K_IMAP_GEN && rnd_below(100) < 75;
	d->callbacks = d->kind == K_ASYNC && rnd_below(100) < 50;
}

static void pick_call(struct call_desc *d, uint64_t index)
{
	unsigned u = (unsigned)rnd_below(100);
	size_t biggest, cap = MAX_N;

	memset(d, 0, sizeof(*d));
	d->index = index;
	d->salt = rnd();
	/* Mostly small calls (latency paths, few chunks), a fair share of
	 * calls larger than the window (slot reuse), a few huge ones. */
	if (u < 5)
		d->n = 0;
	else if (u < 35)
		d->n = 1 + rnd_below(16);
	else if (u < 65)
		d->n = 17 + rnd_below(1000 - 16);
	else if (u < 88)
		d->n = 1001 + rnd_below(20000 - 1000);
	else
		d->n = 20001 + rnd_below(MAX_N - 20000);
	u = (unsigned)rnd_below(100);
	if (u < 40)
		d->chunksize = 0;
	else if (u < 60)
		d->chunksize = 1 + rnd_below(16);
	else
		d->chunksize = 1 + rnd_below(5000);
	d->in_size = pick_size(false);
	d->out_size = pick_size(true);
	d->in_arena = rnd_below(100) < 30;
	d->out_arena = rnd_below(100) < 30;
	u = (unsigned)rnd_below(100);
	if (u < 70) {
		d->mode = SPIN_NONE;
	} else if (u < 95) {
		d->mode = SPIN_SHORT;
		d->spin_max_ns = 1000 * (1 + (uint32_t)rnd_below(20));
		cap = 100000; /* <= 1 s of spinning per call */
	} else {
		d->mode = SPIN_LONG;
		d->long_every = 1 + (uint32_t)rnd_below(16);
		cap = 2000;
	}

	d->kind = pick_kind();
	pick_options(d);
	if (d->kind >= K_IMAP) {
		/* No output array; the generator has no input array. */
		d->out_arena = false;
		if (d->kind == K_IMAP_GEN) {
			d->in_arena = false;
			d->unordered = rnd_below(2);
		}
		if (cap > MAX_ITER_N)
			cap = MAX_ITER_N;
		u = (unsigned)rnd_below(100);
		d->next_timeout_ns = u < 65 ? -1
		                     : u < 95 ? (int64_t)(1 + rnd_below(5)) * 1000000
		                              : 0;
	}
	if (d->kind == K_ASYNC) {
		u = (unsigned)rnd_below(100);
		d->cancel = u < 55 ? CANCEL_NONE
		            : u < 65 ? CANCEL_NOW
		            : u < 80 ? CANCEL_SLEEP
		                     : CANCEL_PROGRESS;
		if (d->cancel == CANCEL_SLEEP)
			d->cancel_arg = (uint32_t)rnd_below(20000);
		u = (unsigned)rnd_below(100);
		d->wait = u < 50 ? WAIT_FOREVER : u < 80 ? WAIT_SLICES : WAIT_POLL;
		d->next_timeout_ns = (int64_t)(1 + rnd_below(10)) * 1000000;
	}
	if (d->timeout_ns && cap > MAX_TIMED_N)
		cap = MAX_TIMED_N;

	biggest = d->in_size > d->out_size ? d->in_size : d->out_size;
	if (biggest && cap > ELEM_BUDGET / biggest)
		cap = ELEM_BUDGET / biggest;
	if (d->n > cap)
		d->n = cap;
	if (d->cancel == CANCEL_PROGRESS)
		d->cancel_arg = (uint32_t)rnd_below(d->n + 1);
	if (d->noverrun > d->n)
		d->noverrun = (unsigned)d->n;
	for (unsigned k = 0; k < d->noverrun; k++) {
		bool fresh;

		do {
			d->overrun[k] = rnd_below(d->n);
			fresh = true;
			for (unsigned j = 0; j < k; j++)
				fresh &= d->overrun[j] != d->overrun[k];
		} while (!fresh);
	}
}

static void *buffer(shp_pool *pool, size_t bytes, bool arena)
{
	void *p = arena ? shp_alloc(pool, bytes) : malloc(bytes);

	if (!p) {
		fprintf(stderr, "stress_map: %s of %zu bytes failed: %s\n",
		        arena ? "shp_alloc" : "malloc", bytes, strerror(errno));
		exit(1);
	}
	return p;
}

static void release(shp_pool *pool, void *p, bool arena)
{
	if (arena)
		shp_free(pool, p);
	else
		free(p);
}

static void report(struct checker *ck, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void report(struct checker *ck, const char *fmt, ...)
{
	char desc[512];
	va_list ap;

	if (ck->shown++ >= MAX_DETAILS)
		return;
	describe(desc, sizeof(desc), ck->d);
	fprintf(stderr, "stress_map: FAIL %s: ", desc);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static bool desc_overruns(const struct call_desc *d, size_t i)
{
	for (unsigned k = 0; k < d->noverrun; k++)
		if (d->overrun[k] == i)
			return true;
	return false;
}

static const char *status_name(int st)
{
	switch (st) {
	case STATUS_UNSET:
		return "never set";
	case TASK_BAD_INDEX:
		return "input names another index";
	case TASK_BAD_INPUT:
		return "input corrupt";
	case TASK_OVERRAN:
		return "overran its deadline and was not killed";
	default:
		return st < 0 ? shp_strerror(st) : "?";
	}
}

/*
 * Checks one task's outcome: st its status (STATUS_UNSET: none came), outp
 * its output element (NULL: none), poison_kept whether an output the task
 * never returned must still hold the poison (array calls with the output
 * outside the arena), ws its wait status (NULL: not asked for), t_obs when
 * the parent saw the result.
 */
static void check_task(struct checker *ck, size_t i, int st,
                       const unsigned char *outp, bool poison_kept,
                       const int *ws, uint64_t t_obs)
{
	const struct call_desc *d = ck->d;
	const struct params *p = ck->p;
	struct tally *t = &ck->t;
	bool timed = d->timeout_ns > 0;
	uint32_t runs = ck->indexed ? p->count[i] : 1;
	/* Starts beyond the first a task may have: one per retry, and in a
	 * call with a deadline one more, when the supervisor killed its
	 * worker for the task before, which had ended just as it struck. A
	 * cancelled task ran only if a retry brought it back. */
	uint32_t allowed = d->retries + (timed ? 1u : 0u) +
	                   (st == SHP_ECANCELED ? 0u : 1u);

	switch (st) {
	case STATUS_UNSET:
		t->lost++;
		report(ck, "task %zu: no status", i);
		return;
	case 0:
		t->completed++;
		if (ck->indexed && runs == 0) {
			t->wrong++;
			report(ck, "task %zu: status 0 but never started", i);
		}
		if (d->out_size &&
		    (!outp || !output_ok(outp, d->out_size,
		                         out_word(d->salt, i, ck->indexed)))) {
			uint64_t got = 0;

			if (outp)
				memcpy(&got, outp,
				       d->out_size < 8 ? d->out_size : 8);
			t->wrong++;
			report(ck, "task %zu: status 0, wrong output (first "
			       "word 0x%016" PRIx64 ", want 0x%016" PRIx64 ")",
			       i, got, out_word(d->salt, i, ck->indexed));
		}
		break;
	case SHP_ECRASHED:
		t->crashed++;
		break;
	case SHP_ETIMEDOUT:
		if (!timed) {
			t->bad++;
			report(ck, "task %zu: SHP_ETIMEDOUT without a deadline",
			       i);
			return;
		}
		t->timedout++;
		/* A task that should take microseconds sat out the deadline
		 * (the machine is busy): allowed, and counted. */
		if (!desc_overruns(d, i))
			t->slow_timeouts++;
		if (p->start_ns && i < MAX_TIMED_N) {
			uint64_t s = __atomic_load_n(&p->start_ns[i],
			                             __ATOMIC_RELAXED);

			if (s && t_obs - s < (uint64_t)d->timeout_ns / 2) {
				t->bad++;
				report(ck, "task %zu: SHP_ETIMEDOUT %.3f ms after "
				       "it began, deadline %" PRId64 " ms", i,
				       (double)(t_obs - s) / 1e6,
				       d->timeout_ns / 1000000);
			}
		}
		break;
	case SHP_ECANCELED:
		if (!ck->cancel_took) {
			t->bad++;
			report(ck, "task %zu: SHP_ECANCELED in a call not "
			       "cancelled", i);
			return;
		}
		t->cancelled++;
		break;
	default:
		t->bad++;
		report(ck, "task %zu: status %d (%s)", i, st, status_name(st));
		return;
	}
	if (ck->indexed) {
		uint32_t first = st == SHP_ECANCELED ? 0 : 1;

		if (runs > allowed) {
			t->dup++;
			report(ck, "task %zu: status %d after %" PRIu32 " starts "
			       "(retries %u)", i, st, runs, d->retries);
		} else if (runs > first) {
			t->retried += runs - first;
		}
	}
	if (ws) {
		bool killed = st == SHP_ECRASHED || st == SHP_ETIMEDOUT;

		if (killed ? !(WIFSIGNALED(*ws) && WTERMSIG(*ws) == SIGKILL)
		           : *ws != 0) {
			t->bad_ws++;
			report(ck, "task %zu: status %d with wait status 0x%x",
			       i, st, (unsigned)*ws);
		}
	}
	if (st != 0 && poison_kept && outp && !all_poison(outp, d->out_size)) {
		t->bad++;
		report(ck, "task %zu: status %d, yet its output was written",
		       i, st);
	}
}

/* ---------------------------------------------------------------- array calls */

struct cb_record {
	int ok, err; /* calls of callback and error_callback */
	int result;  /* error_callback's */
	shp_async *h;
};

static void on_done(shp_async *h, void *arg)
{
	struct cb_record *r = arg;

	r->h = h;
	__atomic_fetch_add(&r->ok, 1, __ATOMIC_RELAXED);
}

static void on_error(shp_async *h, int result, void *arg)
{
	struct cb_record *r = arg;

	r->h = h;
	r->result = result;
	__atomic_fetch_add(&r->err, 1, __ATOMIC_RELAXED);
}

/*
 * Runs an asynchronous call to the end: cancels it at its moment if asked,
 * waits for it as asked. Returns its result, or the error of
 * shp_map_async(_opt) (then *started is false).
 */
static int run_async(shp_pool *pool, struct checker *ck, const void *in,
                     void *out, int *status,
                     const struct shp_call_options *o, bool *started)
{
	const struct call_desc *d = ck->d;
	struct cb_record cb = { 0 };
	struct shp_call_options oc = *o;
	shp_async *h = NULL;
	int err, res, cret = 0;
	size_t done = 0, total = 0;

	if (d->callbacks) {
		oc.callback = on_done;
		oc.error_callback = on_error;
		oc.callback_arg = &cb;
	}
	if (d->use_opt)
		err = shp_map_async_opt(pool, task, ck->p, in, d->in_size, out,
		                        d->out_size, d->n, status, &oc, &h);
	else
		err = shp_map_async(pool, task, ck->p, in, d->in_size, out,
		                    d->out_size, d->n, d->chunksize, status,
		                    &h);
	*started = err == 0;
	if (err) {
		ck->t.bad_ret++;
		report(ck, "shp_map_async%s returned %d (%s)",
		       d->use_opt ? "_opt" : "", err, shp_strerror(err));
		return err;
	}
	switch (d->cancel) {
	case CANCEL_NONE:
		break;
	case CANCEL_SLEEP:
		sleep_ns((uint64_t)d->cancel_arg * 1000);
		/* fall through */
	case CANCEL_NOW:
		cret = shp_async_cancel(h);
		break;
	case CANCEL_PROGRESS:
		while (shp_async_ready(h) == 0 &&
		       shp_async_progress(h, &done, NULL) == 0 &&
		       done < d->cancel_arg)
			sleep_ns(100000);
		cret = shp_async_cancel(h);
		break;
	}
	if (d->cancel != CANCEL_NONE && cret != 0 && cret != -EALREADY) {
		ck->t.bad_ret++;
		report(ck, "shp_async_cancel returned %d (%s)", cret,
		       shp_strerror(cret));
	}
	ck->cancel_took = d->cancel != CANCEL_NONE && cret == 0;

	switch (d->wait) {
	case WAIT_FOREVER:
		err = shp_async_wait(h, -1);
		break;
	case WAIT_SLICES:
		while ((err = shp_async_wait(h, d->next_timeout_ns)) ==
		       -ETIMEDOUT)
			;
		break;
	case WAIT_POLL:
		while ((err = shp_async_ready(h)) == 0)
			sleep_ns(200000);
		err = err == 1 ? shp_async_wait(h, 0) : err;
		break;
	}
	if (err) {
		ck->t.bad_ret++;
		report(ck, "shp_async_wait returned %d (%s)", err,
		       shp_strerror(err));
	}
	if (shp_async_ready(h) != 1) {
		ck->t.bad_ret++;
		report(ck, "shp_async_ready says %d after the wait",
		       shp_async_ready(h));
	}
	res = shp_async_result(h);
	if (shp_async_progress(h, &done, &total) != 0 || total != d->n ||
	    done > d->n || (!ck->cancel_took && done != d->n)) {
		ck->t.bad_ret++;
		report(ck, "progress %zu of %zu at the end", done, total);
	}
	if (ck->cancel_took && res != SHP_ECANCELED) {
		ck->t.bad_ret++;
		report(ck, "shp_async_cancel returned 0, then the result was "
		       "%d (%s), not SHP_ECANCELED", res, shp_strerror(res));
	}
	if (d->callbacks) {
		int ok = __atomic_load_n(&cb.ok, __ATOMIC_RELAXED);
		int bad = __atomic_load_n(&cb.err, __ATOMIC_RELAXED);

		if (ok + bad != 1 || (ok == 1) != (res == 0) || cb.h != h ||
		    (bad && cb.result != res)) {
			ck->t.bad_ret++;
			report(ck, "result %d: callback ran %d times, "
			       "error_callback %d times (result %d)", res, ok,
			       bad, cb.result);
		}
	}
	shp_async_free(h);
	return res;
}

/* shp_map, shp_map_opt, shp_map_async(_opt). Returns the call's result. */
static int run_array(shp_pool *pool, struct checker *ck)
{
	const struct call_desc *d = ck->d;
	size_t n = d->n, alloc_n = n ? n : 1;
	unsigned char *in = NULL, *out = NULL;
	int *status = malloc(alloc_n * sizeof(int));
	int *ws = d->wstatus ? malloc(alloc_n * sizeof(int)) : NULL;
	struct shp_call_options o = {
		.chunksize = d->chunksize,
		.task_timeout_ns = d->timeout_ns,
		.retries = d->retries,
		.wstatus = ws,
	};
	bool any_nonzero = false, started = true;
	uint64_t t_obs;
	int ret;

	if (!status || (d->wstatus && !ws)) {
		fprintf(stderr, "stress_map: out of memory\n");
		exit(1);
	}
	if (d->in_size) {
		in = buffer(pool, alloc_n * d->in_size, d->in_arena);
		for (size_t i = 0; i < n; i++)
			make_input(in + i * d->in_size, d->in_size, d->salt, i);
	}
	if (d->out_size) {
		out = buffer(pool, alloc_n * d->out_size, d->out_arena);
		/* Poison: a task that never ran leaves no right answer. */
		memset(out, POISON, alloc_n * d->out_size);
	}
	for (size_t i = 0; i < alloc_n; i++) {
		status[i] = STATUS_UNSET;
		if (ws)
			ws[i] = WSTATUS_UNSET;
	}

	switch (d->kind) {
	case K_MAP:
		ret = shp_map(pool, task, ck->p, in, d->in_size, out,
		              d->out_size, n, d->chunksize, status);
		break;
	case K_MAP_OPT:
		ret = shp_map_opt(pool, task, ck->p, in, d->in_size, out,
		                  d->out_size, n, status, d->use_opt ? &o : NULL);
		break;
	default:
		ret = run_async(pool, ck, in, out, status, &o, &started);
		break;
	}
	t_obs = now_ns();

	if (started && !ck->cancel_took && ret != 0 && ret != SHP_ETASK) {
		report(ck, "%s returned %d (%s)", kind_names[d->kind], ret,
		       shp_strerror(ret));
		ck->t.bad_ret++;
	}
	for (size_t i = 0; started && i < n; i++) {
		any_nonzero |= status[i] != 0;
		check_task(ck, i, status[i],
		           out ? out + i * d->out_size : NULL, !d->out_arena,
		           ws ? &ws[i] : NULL, t_obs);
	}
	/* The return value must agree with the statuses. */
	if (started && !ck->cancel_took &&
	    ((ret == 0 && any_nonzero) || (ret == SHP_ETASK && !any_nonzero))) {
		report(ck, "%s returned %d but %s task failed",
		       kind_names[d->kind], ret, any_nonzero ? "some" : "no");
		ck->t.bad_ret++;
	}
	if (in)
		release(pool, in, d->in_arena);
	if (out)
		release(pool, out, d->out_arena);
	free(ws);
	free(status);
	return ret;
}

/* ---------------------------------------------------------------- iterators */

struct gen_state {
	uint64_t salt;
	size_t in_size, n;
	size_t next;         /* inputs given */
	unsigned ended;      /* times it said there was no more */
	unsigned bad_buffer; /* times in was NULL with in_size > 0, or not */
};

static int gen_next(void *in, void *arg)
{
	struct gen_state *g = arg;

	if (g->next >= g->n) {
		g->ended++;
		return 0;
	}
	if ((in == NULL) != (g->in_size == 0))
		g->bad_buffer++;
	else if (g->in_size)
		make_input(in, g->in_size, g->salt, g->next);
	g->next++;
	return 1;
}

/* shp_imap, shp_imap_unordered, shp_imap_gen, read to the end. Returns 0,
 * or the error that ended the iteration. */
static int run_iter(shp_pool *pool, struct checker *ck)
{
	const struct call_desc *d = ck->d;
	size_t n = d->n, got = 0;
	unsigned char *in = NULL;
	unsigned char *seen = calloc(n ? n : 1, 1);
	struct gen_state g = { .salt = d->salt, .in_size = d->in_size, .n = n };
	struct shp_call_options o = {
		.chunksize = d->chunksize,
		.task_timeout_ns = d->timeout_ns,
		.retries = d->retries,
	};
	bool ordered = d->kind == K_IMAP ||
	               (d->kind == K_IMAP_GEN && !d->unordered);
	shp_iter *it = NULL;
	int err, r = 0;

	if (!seen) {
		fprintf(stderr, "stress_map: out of memory\n");
		exit(1);
	}
	if (d->in_size && d->kind != K_IMAP_GEN) {
		in = buffer(pool, (n ? n : 1) * d->in_size, d->in_arena);
		for (size_t i = 0; i < n; i++)
			make_input(in + i * d->in_size, d->in_size, d->salt, i);
	}
	switch (d->kind) {
	case K_IMAP:
		err = shp_imap(pool, task, ck->p, in, d->in_size, n,
		               d->out_size, d->chunksize, &it);
		break;
	case K_IMAP_UNORDERED:
		err = shp_imap_unordered(pool, task, ck->p, in, d->in_size, n,
		                         d->out_size, d->chunksize, &it);
		break;
	default:
		err = shp_imap_gen(pool, task, ck->p, gen_next, &g, d->in_size,
		                   d->out_size, d->unordered ? SHP_UNORDERED : 0,
		                   d->use_opt ? &o : NULL, &it);
		break;
	}
	if (err) {
		ck->t.bad_ret++;
		report(ck, "%s returned %d (%s)", kind_names[d->kind], err,
		       shp_strerror(err));
		goto out;
	}
	for (;;) {
		size_t idx = SIZE_MAX;
		const void *outp = &outp; /* must be overwritten */
		int st = STATUS_UNSET;

		r = shp_iter_next(it, &idx, &outp, &st, d->next_timeout_ns);
		if (r == -ETIMEDOUT && d->next_timeout_ns >= 0)
			continue;
		if (r == 0)
			break;
		if (r != 1) {
			ck->t.bad_ret++;
			report(ck, "shp_iter_next returned %d (%s) after %zu "
			       "results", r, shp_strerror(r), got);
			break;
		}
		if (idx >= n) {
			ck->t.bad++;
			report(ck, "result %zu: index %zu out of range", got,
			       idx);
			continue;
		}
		if (seen[idx]) {
			ck->t.dup++;
			report(ck, "index %zu delivered twice", idx);
			continue;
		}
		if (ordered && idx != got) {
			ck->t.bad++;
			report(ck, "result %zu of an ordered iterator is index "
			       "%zu", got, idx);
		}
		if ((outp == NULL) != (d->out_size == 0)) {
			ck->t.bad++;
			report(ck, "index %zu: output pointer %p with out_size "
			       "%zu", idx, outp, d->out_size);
			outp = NULL;
		}
		seen[idx] = 1;
		got++;
		check_task(ck, idx, st, outp, false, NULL, now_ns());
	}
	for (size_t i = 0; i < n; i++)
		if (!seen[i])
			check_task(ck, i, STATUS_UNSET, NULL, false, NULL, 0);
	if (d->kind == K_IMAP_GEN && r == 0 &&
	    (g.next != n || g.ended != 1 || g.bad_buffer)) {
		ck->t.bad_ret++;
		report(ck, "generator: %zu inputs taken, told %u times there "
		       "were no more, %u wrong buffers", g.next, g.ended,
		       g.bad_buffer);
	}
out:
	shp_iter_free(it);
	if (in)
		release(pool, in, d->in_arena);
	free(seen);
	return err ? err : r;
}

/* ---------------------------------------------------------------- one call */

/* Runs and checks one call; returns false on any violation. */
static bool one_call(shp_pool *pool, struct params *p,
                     const struct call_desc *d, struct totals *tot,
                     struct killer_stats *ks, uint64_t seed)
{
	struct checker ck = { .d = d, .p = p };
	size_t n = d->n, alloc_n = n ? n : 1;
	struct tally *t = &ck.t;
	uint64_t execs, k0, kd;
	unsigned deadline;
	bool timed = d->timeout_ns > 0;
	int ret;

	ck.indexed = d->in_size > 0;
	p->salt = d->salt;
	p->n = n;
	p->in_size = (uint32_t)d->in_size;
	p->out_size = (uint32_t)d->out_size;
	p->mode = d->mode;
	p->spin_max_ns = d->spin_max_ns;
	p->long_every = d->long_every;
	p->noverrun = d->noverrun;
	for (unsigned k = 0; k < MAX_OVERRUN; k++)
		p->overrun[k] = k < d->noverrun ? d->overrun[k] : UINT64_MAX;
	/* Long past the deadline (enforced to within an eighth of it). */
	p->overrun_ns = (uint64_t)d->timeout_ns * 20;
	if (p->overrun_ns < 1000000000u)
		p->overrun_ns = 1000000000u;
	p->execs = 0;
	memset(p->count, 0, alloc_n * sizeof(p->count[0]));
	p->start_ns = timed ? start_buf : NULL;
	if (timed)
		memset(start_buf, 0,
		       (n < MAX_TIMED_N ? alloc_n : MAX_TIMED_N) *
		               sizeof(start_buf[0]));

	/* Generous: a slow machine, every task of a long call crashing,
	 * each overrunning task running out its deadline once per retry. */
	deadline = 60 + (unsigned)(n / 100000) + 1 +
	           d->noverrun * (d->retries + 1);
	alarm_len = 0;
	{
		int k = snprintf(alarm_msg, sizeof(alarm_msg),
		                 "stress_map: HANG seed=0x%016" PRIx64 " no result "
		                 "after %u s in ", seed, deadline);
		int m = describe(alarm_msg + k, sizeof(alarm_msg) - (size_t)k - 1, d);

		alarm_len = (size_t)k + (size_t)m;
		if (alarm_len > sizeof(alarm_msg) - 2)
			alarm_len = sizeof(alarm_msg) - 2;
		alarm_msg[alarm_len++] = '\n';
	}
	k0 = __atomic_load_n(&ks->kills, __ATOMIC_RELAXED);
	alarm(deadline);
	if (d->kind >= K_IMAP)
		ret = run_iter(pool, &ck);
	else
		ret = run_array(pool, &ck);
	alarm(0);
	kd = __atomic_load_n(&ks->kills, __ATOMIC_RELAXED) - k0;
	execs = __atomic_load_n(&p->execs, __ATOMIC_RELAXED);

	if (!ck.indexed && d->retries) {
		/* Starts beyond the tasks that can have started: at least
		 * that many re-runs. */
		uint64_t could = t->completed + t->crashed + t->timedout +
		                 t->cancelled;

		if (execs > could)
			t->retried += execs - could;
	}
	/* A kill crashes, or has re-run, at most the one task its worker
	 * was running (the supervisor's own deadline kills are not counted
	 * here: they give SHP_ETIMEDOUT, or re-run a task just begun). */
	if (t->crashed + (timed ? 0 : t->retried) > kd + KILL_SLACK) {
		t->excess++;
		report(&ck, "%" PRIu64 " crashed and %" PRIu64 " re-run tasks "
		       "for %" PRIu64 " kills during the call", t->crashed,
		       t->retried, kd);
	}
	/* Every start, all indices: what tasks without an index allow. With
	 * one, each task's own count was checked above. */
	if (execs < t->completed ||
	    (!d->retries && !timed && execs > n) ||
	    (!ck.indexed && execs > n + kd + KILL_SLACK)) {
		if (execs < t->completed)
			t->wrong++;
		else
			t->dup++;
		report(&ck, "%" PRIu64 " task starts for %zu tasks, "
		       "%" PRIu64 " completed, %" PRIu64 " kills", execs, n,
		       t->completed, kd);
	}
	if (getenv("SHP_STRESS_VERBOSE"))
		fprintf(stderr, "  ret=%d completed=%" PRIu64 " crashed=%"
		        PRIu64 " timedout=%" PRIu64 " cancelled=%" PRIu64
		        " retried=%" PRIu64 " starts=%" PRIu64 " kills=%" PRIu64
		        "%s\n", ret, t->completed, t->crashed, t->timedout,
		        t->cancelled, t->retried, execs, kd,
		        ck.cancel_took ? " cancel-took" : "");

	tot->calls++;
	tot->tasks += n;
	tot->kind_calls[d->kind]++;
	tot->kind_tasks[d->kind] += n;
	tot->completed += t->completed;
	tot->crashed += t->crashed;
	tot->lost += t->lost;
	tot->wrong += t->wrong;
	tot->dup += t->dup;
	tot->bad_status += t->bad;
	tot->bad_ret += t->bad_ret;
	tot->retried += t->retried;
	tot->timedout += t->timedout;
	tot->slow_timeouts += t->slow_timeouts;
	tot->cancelled += t->cancelled;
	tot->bad_wstatus += t->bad_ws;
	tot->excess += t->excess;
	tot->retry_calls += d->retries > 0;
	tot->timed_calls += timed;
	tot->cancel_calls += ck.cancel_took;
	tot->cancel_late += d->cancel != CANCEL_NONE && !ck.cancel_took;
	tot->overruns += d->noverrun;
	tot->callbacks += d->callbacks;
	return ck.shown == 0;
}

/* Finds the supervisor: right after shp_pool_create it is our only child. */
static pid_t find_supervisor(void)
{
	pid_t kids[4];

	if (proc_children(getpid(), kids, 4) != 1)
		return -1;
	return kids[0];
}

/* Waits up to 2 s for every pidfd to report its process gone; returns how
 * many did not. */
static unsigned wait_gone(const int *fds, size_t n)
{
	uint64_t until = now_ns() + 2000000000u;
	unsigned left;

	do {
		left = 0;
		for (size_t i = 0; i < n; i++) {
			struct pollfd pfd = { .fd = fds[i], .events = POLLIN };

			if (fds[i] >= 0 && poll(&pfd, 1, 0) == 0)
				left++;
		}
		if (left) {
			struct timespec ts = { 0, 10000000 };

			nanosleep(&ts, NULL);
		}
	} while (left && now_ns() < until);
	return left;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? strtod(argv[1], NULL) : 30;
	unsigned workers = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 2;
	unsigned long interval = argc > 3 ? strtoul(argv[3], NULL, 0) : 2000;
	const char *seed_s = argc > 4 ? argv[4] : getenv("SHP_STRESS_SEED");
	struct shp_pool_options opt = { .workers = workers };
	static pid_t kids[MAX_KIDS];
	int kid_fds[MAX_KIDS + 1];
	size_t nkids;
	struct killer_stats *ks;
	struct totals tot = { 0 };
	struct params *p;
	shp_pool *pool;
	uint64_t seed, t0, until, kills;
	pid_t sup;
	double elapsed, ratio;
	bool ok = true, verbose = getenv("SHP_STRESS_VERBOSE") != NULL;
	int err, st, left_shm;
	unsigned left_procs, nremain;

	if (seconds < 0 || workers == 0 || workers > 1024) {
		fprintf(stderr, "usage: %s [seconds] [workers 1..1024] "
		                "[kill_interval_us, 0: no kills] [seed]\n", argv[0]);
		return 2;
	}
	seed = seed_s ? strtoull(seed_s, NULL, 0)
	              : now_ns() ^ ((uint64_t)getpid() << 32);
	rnd_state = seed;
	printf("stress_map: seed=0x%016" PRIx64 " seconds=%.0f workers=%u "
	       "kill_interval_us=%lu\n", seed, seconds, workers, interval);
	fflush(stdout);

	err = shp_pool_create(&pool, &opt);
	if (err) {
		fprintf(stderr, "stress_map: shp_pool_create: %s\n",
		        shp_strerror(err));
		return 1;
	}
	sup = find_supervisor();
	if (sup < 0) {
		fprintf(stderr, "stress_map: cannot find the supervisor\n");
		return 1;
	}
	p = shp_alloc(pool, sizeof(*p) + MAX_N * sizeof(p->count[0]));
	start_buf = shp_alloc(pool, MAX_TIMED_N * sizeof(start_buf[0]));
	ks = mmap(NULL, sizeof(*ks), PROT_READ | PROT_WRITE,
	          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!p || !start_buf || ks == MAP_FAILED) {
		fprintf(stderr, "stress_map: out of memory\n");
		return 1;
	}
	memset(ks, 0, sizeof(*ks));
	if (interval) {
		pid_t parent = getpid();

		fflush(NULL); /* no doubled buffered output from the child */
		killer_pid = fork();
		if (killer_pid < 0) {
			perror("stress_map: fork");
			return 1;
		}
		if (killer_pid == 0) {
			rnd_state = seed ^ UINT64_C(0x6b696c6c6572);
			killer_main(parent, sup, interval, ks);
		}
	}
	/* After the forks: neither the killer nor the pool has the handler. */
	signal(SIGALRM, on_alarm);

	t0 = now_ns();
	until = t0 + (uint64_t)(seconds * 1e9);
	while (now_ns() < until) {
		struct call_desc d;

		pick_call(&d, tot.calls);
		if (verbose) {
			char desc[512];

			describe(desc, sizeof(desc), &d);
			fprintf(stderr, "%s\n", desc);
		}
		if (!one_call(pool, p, &d, &tot, ks, seed)) {
			ok = false;
			break;
		}
	}
	elapsed = (double)(now_ns() - t0) / 1e9;

	if (killer_pid > 0) {
		kill(killer_pid, SIGTERM);
		while (waitpid(killer_pid, &st, 0) < 0 && errno == EINTR)
			;
		killer_pid = -1;
	}
	kills = __atomic_load_n(&ks->kills, __ATOMIC_RELAXED);

	/* Pin the pool's processes before destroying it: the supervisor and
	 * its workers, after a moment for it to replace the last killed. */
	{
		struct timespec ts = { 0, 200000000 };

		nanosleep(&ts, NULL);
	}
	nkids = proc_children(sup, kids, MAX_KIDS - 1);
	kids[nkids] = sup;
	for (size_t i = 0; i <= nkids; i++)
		kid_fds[i] = pidfd_open(kids[i], 0);
	shp_pool_destroy(pool);
	left_procs = wait_gone(kid_fds, nkids + 1);
	for (size_t i = 0; i <= nkids; i++)
		if (kid_fds[i] >= 0)
			close(kid_fds[i]);
	nremain = (unsigned)proc_descendants(getpid(), kids, MAX_KIDS);
	left_shm = devshm_settled();

	ratio = kills ? (double)tot.crashed / (double)kills : 0;
	printf("stress_map seconds=%.1f workers=%u kill_interval_us=%lu "
	       "seed=0x%016" PRIx64 " calls=%" PRIu64 " tasks=%" PRIu64
	       " completed=%" PRIu64 " kills=%" PRIu64 " crashed=%" PRIu64
	       " lost=%" PRIu64 " wrong=%" PRIu64 " dup=%" PRIu64
	       " bad_status=%" PRIu64 " bad_ret=%" PRIu64 " hangs=0"
	       " crashed_per_kill=%.3f procs_left=%u shm_left=%d",
	       elapsed, workers, interval, seed, tot.calls, tot.tasks,
	       tot.completed, kills, tot.crashed, tot.lost, tot.wrong, tot.dup,
	       tot.bad_status, tot.bad_ret, ratio, left_procs + nremain,
	       left_shm);
	/* The same line goes on: what the calls were, and the outcomes the
	 * options allow. */
	for (int k = 0; k < NKINDS; k++)
		printf(" %s_calls=%" PRIu64 " %s_tasks=%" PRIu64,
		       kind_names[k], tot.kind_calls[k], kind_names[k],
		       tot.kind_tasks[k]);
	printf(" retry_calls=%" PRIu64 " retried=%" PRIu64
	       " timed_calls=%" PRIu64 " overruns=%" PRIu64
	       " timedout=%" PRIu64 " slow_timeouts=%" PRIu64
	       " cancel_calls=%" PRIu64 " cancel_late=%" PRIu64
	       " cancelled=%" PRIu64 " callback_calls=%" PRIu64
	       " bad_wstatus=%" PRIu64 " excess=%" PRIu64 "\n",
	       tot.retry_calls, tot.retried, tot.timed_calls, tot.overruns,
	       tot.timedout, tot.slow_timeouts, tot.cancel_calls,
	       tot.cancel_late, tot.cancelled, tot.callbacks, tot.bad_wstatus,
	       tot.excess);

	/* A kill crashes at most the one task its worker was running. */
	if (tot.crashed > kills) {
		fprintf(stderr, "stress_map: FAIL %" PRIu64 " tasks crashed "
		        "for %" PRIu64 " kills\n", tot.crashed, kills);
		ok = false;
	}
	if (kills > 0 && elapsed >= 10 && tot.tasks > 0 && tot.completed == 0) {
		fprintf(stderr, "stress_map: FAIL no task completed\n");
		ok = false;
	}
	if (interval == 0 && tot.crashed) {
		fprintf(stderr, "stress_map: FAIL tasks crashed with no kills\n");
		ok = false;
	}
	if (left_procs || nremain) {
		fprintf(stderr, "stress_map: FAIL %u processes of the pool "
		        "remain after shp_pool_destroy\n", left_procs + nremain);
		ok = false;
	}
	if (left_shm != 0) {
		fprintf(stderr, "stress_map: FAIL /dev/shm holds %d shmpool "
		        "entries\n", left_shm);
		ok = false;
	}
	return ok ? 0 : 1;
}
