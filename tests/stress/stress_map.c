/*
 * Multi-process torture of the whole pool under worker kills (make stress).
 * usage: stress_map [seconds] [workers] [kill_interval_us] [seed]
 *
 * Runs shp_map calls back to back with random parameters (sizes that land
 * inline, staged and zero-copy; chunk sizes; task durations) while a killer
 * process SIGKILLs random workers. Every call must return 0 or SHP_ETASK,
 * every task must report 0 with exactly the right output, or SHP_ECRASHED;
 * a task may never run twice; a call may not hang. Prints one parseable
 * summary line and exits non-zero on any violation.
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
#define ELEM_BUDGET (16u << 20) /* bytes per in or out buffer */
#define MAX_KIDS 1100           /* > SHP_MAX_WORKERS */
#define MAX_DETAILS 10          /* failures printed per call */
#define STATUS_UNSET 0x5eed5eed /* no status may ever be left at this */
#define POISON 0xa5

/* Statuses of our own that a task returns when its input is not what the
 * parent wrote: each is a failure of the pool, reported as such. */
#define TASK_BAD_INDEX 71
#define TASK_BAD_INPUT 72

enum spin_mode { SPIN_NONE, SPIN_SHORT, SPIN_LONG };

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
	uint32_t pad;
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
};

struct totals {
	uint64_t calls, tasks, completed, crashed;
	uint64_t lost, wrong, dup, bad_status, bad_ret;
};

static char alarm_msg[512];
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

/*
 * Checks its input, counts its start (a task must never run twice: done
 * tasks are not re-run and the one a dead worker was running is reported,
 * not retried), spins if asked, and fills every byte of its output.
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
		for (size_t k = 1; 8 * k < p->in_size; k++) {
			size_t len = p->in_size - 8 * k < 8 ? p->in_size - 8 * k : 8;

			w = in_word(p->salt, i, k);
			if (memcmp(b + 8 * k, &w, len) != 0)
				return TASK_BAD_INPUT;
		}
		__atomic_fetch_add(&p->count[i], 1, __ATOMIC_RELAXED);
	}
	started = __atomic_fetch_add(&p->execs, 1, __ATOMIC_RELAXED);
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

static void jitter_sleep(unsigned long us)
{
	uint64_t ns = (us / 2 + rnd_below(us + 1)) * 1000;
	struct timespec ts = { (time_t)(ns / 1000000000u),
	                       (long)(ns % 1000000000u) };

	nanosleep(&ts, NULL);
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

static int describe(char *buf, size_t len, const struct call_desc *d)
{
	return snprintf(buf, len,
	                "call=%" PRIu64 " salt=0x%016" PRIx64 " n=%zu chunksize=%zu"
	                " in_size=%zu%s out_size=%zu%s spin=%s spin_max_ns=%u"
	                " long_every=%u",
	                d->index, d->salt, d->n, d->chunksize, d->in_size,
	                d->in_size ? (d->in_arena ? "(arena)" : "(heap)") : "",
	                d->out_size,
	                d->out_size ? (d->out_arena ? "(arena)" : "(heap)") : "",
	                mode_name(d->mode), d->spin_max_ns, d->long_every);
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
	biggest = d->in_size > d->out_size ? d->in_size : d->out_size;
	if (biggest && cap > ELEM_BUDGET / biggest)
		cap = ELEM_BUDGET / biggest;
	if (d->n > cap)
		d->n = cap;
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

static void report(const struct call_desc *d, unsigned *shown, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));

static void report(const struct call_desc *d, unsigned *shown, const char *fmt,
                   ...)
{
	char desc[256];
	va_list ap;

	if ((*shown)++ >= MAX_DETAILS)
		return;
	describe(desc, sizeof(desc), d);
	fprintf(stderr, "stress_map: FAIL %s: ", desc);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Runs and checks one call; returns false on any violation. */
static bool one_call(shp_pool *pool, struct params *p,
                     const struct call_desc *d, struct totals *tot,
                     uint64_t seed)
{
	size_t n = d->n, alloc_n = n ? n : 1;
	unsigned char *in = NULL, *out = NULL;
	int *status = malloc(alloc_n * sizeof(int));
	uint64_t completed = 0, crashed = 0, lost = 0, wrong = 0, dup = 0;
	uint64_t bad = 0, execs;
	unsigned shown = 0, deadline;
	bool any_nonzero = false;
	int ret;

	if (!status) {
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
	for (size_t i = 0; i < alloc_n; i++)
		status[i] = STATUS_UNSET;
	p->salt = d->salt;
	p->n = n;
	p->in_size = (uint32_t)d->in_size;
	p->out_size = (uint32_t)d->out_size;
	p->mode = d->mode;
	p->spin_max_ns = d->spin_max_ns;
	p->long_every = d->long_every;
	p->execs = 0;
	memset(p->count, 0, alloc_n * sizeof(p->count[0]));

	/* Generous: a slow machine, every task of a long call crashing. */
	deadline = 60 + (unsigned)(n / 100000) + 1;
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
	alarm(deadline);
	ret = shp_map(pool, task, p, in, d->in_size, out, d->out_size, n,
	              d->chunksize, status);
	alarm(0);
	execs = __atomic_load_n(&p->execs, __ATOMIC_RELAXED);

	if (ret != 0 && ret != SHP_ETASK) {
		report(d, &shown, "shp_map returned %d (%s)", ret,
		       shp_strerror(ret));
		tot->bad_ret++;
	}
	for (size_t i = 0; i < n; i++) {
		int st = status[i];
		uint32_t runs = d->in_size ? p->count[i] : 1;

		if (st != 0)
			any_nonzero = true;
		if (st == STATUS_UNSET) {
			lost++;
			report(d, &shown, "task %zu: no status", i);
		} else if (st == SHP_ECRASHED) {
			crashed++;
			if (runs > 1) {
				dup++;
				report(d, &shown, "task %zu: crashed after "
				       "%" PRIu32 " starts", i, runs);
			}
		} else if (st != 0) {
			bad++;
			report(d, &shown, "task %zu: status %d (%s)", i, st,
			       st == TASK_BAD_INDEX ? "input names another index" :
			       st == TASK_BAD_INPUT ? "input corrupt" :
			       st < 0 ? shp_strerror(st) : "?");
		} else {
			completed++;
			if (runs != 1) {
				if (runs)
					dup++;
				else
					wrong++;
				report(d, &shown, "task %zu: status 0 after "
				       "%" PRIu32 " starts", i, runs);
			}
			if (d->out_size &&
			    !output_ok(out + i * d->out_size, d->out_size,
			               out_word(d->salt, i, d->in_size > 0))) {
				uint64_t got;

				memcpy(&got, out + i * d->out_size,
				       d->out_size < 8 ? d->out_size : 8);
				wrong++;
				report(d, &shown, "task %zu: status 0, wrong "
				       "output (first word 0x%016" PRIx64
				       ", want 0x%016" PRIx64 ")", i, got,
				       out_word(d->salt, i, d->in_size > 0));
			}
		}
	}
	/* The return value must agree with the statuses. */
	if ((ret == 0 && any_nonzero) || (ret == SHP_ETASK && !any_nonzero)) {
		report(d, &shown, "shp_map returned %d but %s task failed", ret,
		       any_nonzero ? "some" : "no");
		tot->bad_ret++;
	}
	if (execs > n || execs < completed) {
		if (execs > n)
			dup++;
		else
			wrong++;
		report(d, &shown, "%" PRIu64 " task starts for %zu tasks, "
		       "%" PRIu64 " completed", execs, n, completed);
	}
	if (getenv("SHP_STRESS_VERBOSE"))
		fprintf(stderr, "  ret=%d completed=%" PRIu64 " crashed=%"
		        PRIu64 " starts=%" PRIu64 "\n", ret, completed, crashed,
		        execs);

	tot->calls++;
	tot->tasks += n;
	tot->completed += completed;
	tot->crashed += crashed;
	tot->lost += lost;
	tot->wrong += wrong;
	tot->dup += dup;
	tot->bad_status += bad;
	if (in)
		release(pool, in, d->in_arena);
	if (out)
		release(pool, out, d->out_arena);
	free(status);
	return shown == 0;
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
	ks = mmap(NULL, sizeof(*ks), PROT_READ | PROT_WRITE,
	          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!p || ks == MAP_FAILED) {
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
			char desc[256];

			describe(desc, sizeof(desc), &d);
			fprintf(stderr, "%s\n", desc);
		}
		if (!one_call(pool, p, &d, &tot, seed)) {
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
	       " crashed_per_kill=%.3f procs_left=%u shm_left=%d\n",
	       elapsed, workers, interval, seed, tot.calls, tot.tasks,
	       tot.completed, kills, tot.crashed, tot.lost, tot.wrong, tot.dup,
	       tot.bad_status, tot.bad_ret, ratio, left_procs + nremain,
	       left_shm);

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
