#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "procfs.h"
#include "shmpool.h"
#include "util.h"

Test(pool, version_matches_package, .timeout = 10)
{
	cr_expect_str_eq(shp_version(), PACKAGE_VERSION_STRING);
	cr_expect_str_eq(shp_version(), SHP_VERSION_STRING);
}

Test(pool, strerror_names_every_code, .timeout = 10)
{
	cr_expect_str_eq(shp_strerror(0), "success");
	cr_expect_str_eq(shp_strerror(SHP_ECRASHED), "the worker running the task died");
	cr_expect_str_eq(shp_strerror(SHP_ECLOSED), "the pool is closed or terminated");
	cr_expect_str_eq(shp_strerror(-EINVAL), strerror(EINVAL));
	cr_expect_str_eq(shp_strerror(-99999), "unknown error");
	cr_expect_str_eq(shp_strerror(12), "unknown error");
	/* Every pool code is below -4095 and has its own text. */
#define CHECK(name, value, msg)                                                \
	cr_expect_lt(SHP_##name, -4095);                                       \
	cr_expect_str_eq(shp_strerror(SHP_##name), msg);
	SHP_ERRNO_MAP(CHECK)
#undef CHECK
}

/* Codes in errno's range that libc has no text for: strerror() formats
 * them into a buffer that its next such call frees, so a description
 * taken earlier was read after free. */
Test(pool, strerror_text_stays_valid, .timeout = 10)
{
	const char *a = shp_strerror(-4000);
	const char *b;
	char copy[64];

	cr_assert_not_null(a);
	snprintf(copy, sizeof(copy), "%s", a);
	b = shp_strerror(-4001);
	cr_assert_not_null(b);
	cr_expect_str_eq(a, copy);
	cr_expect_str_eq(a, "unknown error");
	cr_expect_str_eq(shp_strerror(-ENOSPC), strerror(ENOSPC));
}

Test(pool, bad_options_are_refused, .timeout = 10)
{
	struct shp_pool_options o = { .workers = 100000 };
	shp_pool *p = (shp_pool *)&o;

	cr_expect_eq(shp_pool_create(NULL, NULL), -EINVAL);
	cr_expect_eq(shp_pool_create(&p, &o), -EINVAL);
	cr_expect_null(p);
	o = (struct shp_pool_options){ .workers = UINT32_MAX };
	cr_expect_eq(shp_pool_create(&p, &o), -EINVAL);
	o = (struct shp_pool_options){ .queue_cells = (1u << 20) + 1 };
	cr_expect_eq(shp_pool_create(&p, &o), -EINVAL);
	o = (struct shp_pool_options){ .arena_bytes = SIZE_MAX - 100 };
	cr_expect_eq(shp_pool_create(&p, &o), -EOVERFLOW);
	o = (struct shp_pool_options){ .spin_us = 5000000 };
	cr_expect_eq(shp_pool_create(&p, &o), -EINVAL);
	cr_expect_eq(shp_pool_close(NULL), -EINVAL);
	cr_expect_eq(shp_pool_join(NULL), -EINVAL);
	cr_expect_eq(shp_pool_terminate(NULL), -EINVAL);
	shp_pool_destroy(NULL);
	cr_expect_eq(devshm_count(getpid()), 0);
	cr_expect_eq(proc_children(getpid(), &(pid_t){ 0 }, 1), 0);
}

Test(pool, default_workers_is_one_per_cpu, .timeout = 20)
{
	shp_pool *p;
	pid_t kids[2048];
	cpu_set_t cpus;

	/* The CPUs we may run on (a container's cpuset), not the host's. */
	cr_assert_eq(sched_getaffinity(0, sizeof(cpus), &cpus), 0);
	cr_assert_eq(shp_pool_create(&p, NULL), 0);
	/* The supervisor is our one child; the workers are its children. */
	cr_assert_eq(proc_children(getpid(), kids, 2048), 1);
	cr_expect_eq(proc_descendants(getpid(), kids, 2048),
	             1 + (size_t)CPU_COUNT(&cpus));
	shp_pool_destroy(p);
}

static int inc(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(int *)out = *(const int *)in + 1;
	return 0;
}

Test(pool, destroy_leaves_nothing_over_200_cycles, .timeout = 120)
{
	int fds = proc_fd_count();
	pid_t kids[64];

	cr_assert_eq(devshm_count(getpid()), 0);
	for (int i = 0; i < 200; i++) {
		struct shp_pool_options o = { .workers = 2, .arena_bytes = 1 << 20 };
		shp_pool *p;
		int x = i, y = 0;

		cr_assert_eq(shp_pool_create(&p, &o), 0, "cycle %d", i);
		cr_assert_eq(devshm_count(getpid()), 0,
		             "named object left while running");
		cr_assert_eq(shp_apply(p, inc, NULL, &x, sizeof(x), &y, sizeof(y)), 0);
		cr_assert_eq(y, i + 1);
		if (i % 2) {
			cr_assert_eq(shp_pool_close(p), 0);
			cr_assert_eq(shp_pool_join(p), 0);
		}
		shp_pool_destroy(p);
		cr_assert_eq(proc_descendants(getpid(), kids, 64), 0,
		             "cycle %d left a process", i);
	}
	cr_expect_eq(proc_fd_count(), fds);
	cr_expect_eq(devshm_count(getpid()), 0);
}

Test(pool, idle_pool_uses_no_cpu, .timeout = 20)
{
	struct shp_pool_options o = { .workers = 2 };
	shp_pool *p;
	pid_t kids[8];
	long long before, after;
	long hz = sysconf(_SC_CLK_TCK);
	size_t n;
	int x = 1, y;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	cr_assert_eq(shp_apply(p, inc, NULL, &x, sizeof(x), &y, sizeof(y)), 0);
	sleep_ms(100); /* past the workers' spin */
	n = proc_descendants(getpid(), kids, 8);
	cr_assert_eq(n, 3);
	before = proc_cpu_ticks_all(kids, n);
	sleep_ms(1000);
	after = proc_cpu_ticks_all(kids, n);
	/* 2% of a CPU over 1 s, in clock ticks (hz is 100: 2 ticks). */
	cr_expect_leq(after - before, hz * 2 / 100,
	              "idle pool used %lld ticks in 1 s", after - before);
	shp_pool_destroy(p);
}

Test(pool, close_join_terminate_semantics, .timeout = 20)
{
	shp_pool *p;
	struct shp_pool_options o = { .workers = 2 };
	int x = 1, y = 0;
	pid_t kids[8];

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	cr_expect_eq(shp_pool_join(p), -EINVAL); /* not closed */
	cr_expect_eq(shp_apply(p, inc, NULL, &x, sizeof(x), &y, sizeof(y)), 0);
	cr_expect_eq(shp_pool_terminate(p), 0);
	cr_expect_eq(proc_descendants(getpid(), kids, 8), 0);
	cr_expect_eq(shp_apply(p, inc, NULL, &x, sizeof(x), &y, sizeof(y)),
	             SHP_ECLOSED);
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), 0);
	cr_expect_eq(shp_pool_terminate(p), 0);
	shp_pool_destroy(p);

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_close(p), 0);
	cr_expect_eq(shp_pool_join(p), 0);
	cr_expect_eq(proc_descendants(getpid(), kids, 8), 0);
	cr_expect_eq(shp_pool_join(p), 0);
	shp_pool_destroy(p);
}

Test(pool, alloc_and_free, .timeout = 20)
{
	struct shp_pool_options o = { .workers = 1, .arena_bytes = 1 << 20 };
	shp_pool *p;
	void *a, *b;
	int local;

	cr_assert_eq(shp_pool_create(&p, &o), 0);
	errno = 0;
	cr_expect_null(shp_alloc(NULL, 10));
	cr_expect_eq(errno, EINVAL);
	cr_expect_null(shp_alloc(p, 0));
	cr_expect_eq(errno, EINVAL);
	cr_expect_null(shp_alloc(p, 2 << 20));
	cr_expect_eq(errno, ENOMEM);
	a = shp_alloc(p, 1 << 19);
	b = shp_alloc(p, 1 << 19);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	cr_expect_eq((uintptr_t)a % 64, 0);
	cr_expect_null(shp_alloc(p, 64));
	shp_free(p, &local); /* not ours: ignored */
	shp_free(p, NULL);
	shp_free(p, a);
	cr_expect_eq(shp_alloc(p, 1 << 19), a);
	shp_pool_destroy(p);
}

Test(pool, caller_death_takes_the_pool_down, .timeout = 20)
{
	int fd[2];
	pid_t child, procs[16];
	ssize_t got;
	int n = 0;

	cr_assert_eq(pipe(fd), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		struct shp_pool_options o = { .workers = 2 };
		shp_pool *p;
		pid_t d[16];
		size_t k;

		if (shp_pool_create(&p, &o))
			_exit(1);
		k = proc_descendants(getpid(), d, 16);
		if (write(fd[1], d, k * sizeof(pid_t)) < 0)
			_exit(1);
		pause();
		_exit(0);
	}
	close(fd[1]);
	got = read(fd[0], procs, sizeof(procs));
	cr_assert_eq(got, 3 * (ssize_t)sizeof(pid_t), "supervisor and 2 workers");
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	for (int t = 0; t < 100; t++) {
		n = 0;
		for (int i = 0; i < 3; i++)
			n += proc_alive(procs[i]);
		if (n == 0)
			break;
		sleep_ms(10);
	}
	cr_expect_eq(n, 0, "%d pool processes outlived the caller by 1 s", n);
	cr_expect_eq(devshm_count(child), 0);
}
