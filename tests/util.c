#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "pool.h"
#include "procfs.h"
#include "util.h"

int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

void spin_ns(long ns)
{
	int64_t until = now_ns() + ns;

	while (now_ns() < until)
		;
}

uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

int64_t slack(int64_t ns)
{
	return getenv("SHP_TEST_SCALE") ? 25 * ns : ns;
}

long stretch_ms(long ms)
{
	return (long)(slack(ms * MS) / MS);
}

size_t scaled(size_t n)
{
	const char *s = getenv("SHP_TEST_SCALE");

	if (s && atoi(s) > 1)
		n /= (size_t)atoi(s);
	return n;
}

int *iota(size_t n)
{
	int *v = malloc(n * sizeof(int));

	cr_assert_not_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = (int)i;
	return v;
}

int *filled(size_t n, int value)
{
	int *v = malloc(n * sizeof(int));

	cr_assert_not_null(v);
	for (size_t i = 0; i < n; i++)
		v[i] = value;
	return v;
}

bool among(pid_t x, const pid_t *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

bool bg_join(pthread_t th, long ms)
{
	struct timespec ts;

	ms = stretch_ms(ms);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_timedjoin_np(th, NULL, &ts) == 0;
}

void *shared_map(size_t size)
{
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(m, MAP_FAILED);
	memset(m, 0, size);
	return m;
}

int triple(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(int *)out = 3 * *(const int *)in + 1;
	return 0;
}

int cube(const void *in, void *out, void *ctx)
{
	long x = *(const long *)in;

	(void)ctx;
	*(long *)out = x * x * x;
	return 0;
}

int fail_some(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;

	(void)ctx;
	*(int *)out = x + 1;
	if (x % 5 == 0)
		return x % 7 + 1;
	if (x % 11 == 0)
		return -3; /* negative: reported as SHP_ETASK */
	return 0;
}

int crash_on_five(const void *in, void *out, void *ctx)
{
	int x = *(const int *)in;

	(void)ctx;
	if (x == 5)
		abort(); /* not SIGSEGV: ASan would turn that into exit(1) */
	if (x == 9)
		_exit(3);
	*(int *)out = x * 10;
	return 0;
}

shp_pool *pool_of(unsigned workers, unsigned cells)
{
	struct shp_pool_options o = { .workers = workers, .queue_cells = cells };
	shp_pool *p = NULL;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	return p;
}

void expect_map_correct(shp_pool *p, size_t n, const char *when)
{
	int *in = iota(n), *out = filled(n, -1), *st = filled(n, STATUS_UNSET);
	size_t bad = 0, first = 0;

	cr_expect_eq(shp_map(p, triple, NULL, in, sizeof(int), out, sizeof(int),
	                     n, 0, st), 0, "map %s", when);
	for (size_t i = 0; i < n; i++)
		if ((st[i] != 0 || out[i] != 3 * (int)i + 1) && bad++ == 0)
			first = i;
	if (bad)
		cr_expect_fail("map %s: %zu tasks wrong; first: task %zu status %d "
		               "out %d", when, bad, first, st[first], out[first]);
	free(in);
	free(out);
	free(st);
}

size_t strength_after(const shp_pool *p, size_t want, const pid_t *gone,
                      size_t ngone, long ms)
{
	int64_t until = now_ns() + ms * MS;
	pid_t kids[64];
	size_t n, fresh;

	for (;;) {
		n = proc_children(p->zygote, kids, 64);
		fresh = 0;
		for (size_t i = 0; i < n; i++)
			fresh += !among(kids[i], gone, ngone);
		if ((fresh == want && n == want &&
		     proc_descendants(getpid(), kids, 64) == 1 + want) ||
		    now_ns() > until)
			return fresh;
		sleep_ms(5);
	}
}

/* Destroys the pool and checks that no process of it is left. */
static void destroy_reaped(shp_pool *p)
{
	pid_t kids[64];

	shp_pool_destroy(p);
	cr_expect_eq(proc_descendants(getpid(), kids, 64), 0,
	             "shp_pool_destroy left a process");
}

void destroy_clean(shp_pool *p)
{
	destroy_reaped(p);
	cr_expect_eq(devshm_count(getpid()), 0, "an object was left in /dev/shm");
}

void destroy_settled(shp_pool *p)
{
	destroy_reaped(p);
	cr_expect_eq(devshm_settled(), 0, "an object was left in /dev/shm");
}
