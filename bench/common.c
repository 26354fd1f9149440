/*
 * Helpers shared by the benchmarks; see common.h.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define LCG_A UINT64_C(6364136223846793005)
#define LCG_C UINT64_C(1442695040888963407)

uint64_t bench_now_ns(void)
{
	struct timespec ts;

	/* Cannot fail with a valid clock id and pointer. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

int bench_stats(const uint64_t *samples, size_t n, struct bench_stats *st)
{
	uint64_t *s;
	size_t mid;

	if (n == 0 || !samples || !st)
		return -EINVAL;
	s = malloc(n * sizeof(*s));
	if (!s)
		return -ENOMEM;
	memcpy(s, samples, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_u64);
	st->min = (double)s[0];
	st->max = (double)s[n - 1];
	/* The median rather than the mean: a shared machine adds one-sided
	 * outliers (preemption, migrations) that would drag a mean up. */
	mid = n / 2;
	if (n % 2)
		st->median = (double)s[mid];
	else
		st->median = ((double)s[mid - 1] + (double)s[mid]) / 2.0;
	st->n = (unsigned)n;
	free(s);
	return 0;
}

int bench_once(bench_fn fn, bench_fn check, void *arg, uint64_t *ns)
{
	uint64_t t0 = bench_now_ns();
	int err = fn(arg);

	*ns = bench_now_ns() - t0;
	/* Every run is checked, not just the last: a variant that is right
	 * once and wrong later must not pass. */
	if (!err && check)
		err = check(arg);
	return err;
}

int bench_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *v)
{
	unsigned long long x;
	char *end;

	/* strtoull accepts leading blanks and a '-' (wrapping around):
	 * neither makes sense for a count. */
	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	x = strtoull(s, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return -EINVAL;
	*v = x;
	return 0;
}

uint64_t bench_checksum_u64(const uint64_t *v, size_t n)
{
	uint64_t s = 0;

	for (size_t i = 0; i < n; i++)
		s += (uint64_t)(i + 1) * v[i];
	return s;
}

uint64_t bench_busy(uint64_t x, uint64_t iters)
{
	for (uint64_t i = 0; i < iters; i++) {
		x = x * LCG_A + LCG_C;
		/* The compiler must believe x may have changed: no closed
		 * form, no strength reduction across iterations. */
		__asm__ volatile("" : "+r"(x));
	}
	return x;
}

static uint64_t volatile busy_sink;

/*
 * The fastest of a few tries, the one that was not preempted, after a
 * warm-up try that gives the core time to reach the clock it will run the
 * rounds at.
 */
double bench_busy_calibrate(void)
{
	const uint64_t iters = 4000000; /* ~5 ms */
	uint64_t best = UINT64_MAX;

	busy_sink = bench_busy(0, 8 * iters);
	for (unsigned i = 0; i < 5; i++) {
		uint64_t t0 = bench_now_ns(), dt;

		busy_sink = bench_busy(i, iters);
		dt = bench_now_ns() - t0;
		best = dt < best ? dt : best;
	}
	return (double)best / (double)iters;
}

unsigned bench_nproc(void)
{
	cpu_set_t set;

	/* As the pool counts them: the CPUs this process may run on. */
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return 1;
	return (unsigned)CPU_COUNT(&set);
}

const char *bench_cpu_model(char *buf, size_t len)
{
	static const char key[] = "model name";
	char line[512];
	FILE *f;

	if (len == 0)
		return buf;
	snprintf(buf, len, "unknown");
	f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return buf;
	while (fgets(line, sizeof(line), f)) {
		char *p, *e;

		if (strncmp(line, key, sizeof(key) - 1) != 0)
			continue;
		p = strchr(line, ':');
		if (!p)
			continue;
		for (p++; *p == ' ' || *p == '\t'; p++)
			;
		e = p + strlen(p);
		while (e > p && isspace((unsigned char)e[-1]))
			*--e = '\0';
		if (*p)
			snprintf(buf, len, "%s", p);
		break;
	}
	fclose(f);
	return buf;
}

static void put_cell(FILE *f, const struct bench_col *c, const char *s,
                     bool last)
{
	/* The last left-aligned cell is not padded: no trailing blanks. */
	if (c->left && last)
		fputs(s, f);
	else
		fprintf(f, c->left ? "%-*s" : "%*s", c->width, s);
}

void bench_table_header(FILE *f, const struct bench_col *cols, size_t ncols)
{
	int total = 0;

	for (size_t i = 0; i < ncols; i++) {
		if (i)
			fputs("  ", f);
		put_cell(f, &cols[i], cols[i].title, i + 1 == ncols);
		total += cols[i].width + (i ? 2 : 0);
	}
	fputc('\n', f);
	for (int i = 0; i < total; i++)
		fputc('-', f);
	fputc('\n', f);
}

void bench_table_row(FILE *f, const struct bench_col *cols, size_t ncols,
                     const char *const *cells)
{
	for (size_t i = 0; i < ncols; i++) {
		if (i)
			fputs("  ", f);
		put_cell(f, &cols[i], cells[i] ? cells[i] : "", i + 1 == ncols);
	}
	fputc('\n', f);
}

size_t bench_diff_u64(const uint64_t *got, const uint64_t *want, size_t n,
                      size_t *first)
{
	size_t bad = 0;

	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i] && !bad++)
			*first = i;
	return bad;
}
