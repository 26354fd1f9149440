/*
 * Small helpers shared by the benchmarks under bench/: a clock, repeated
 * timing with median/min/max, strict number parsing, a description of the
 * machine, and an aligned one-line-per-row table printer.
 *
 * Benchmarks report ratios measured side by side in one run (see
 * docs/benchmarks.md), so these helpers only measure and
 * print; they judge nothing.
 */
#ifndef SHP_BENCH_COMMON_H
#define SHP_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* CLOCK_MONOTONIC in nanoseconds: immune to wall-clock steps. */
uint64_t bench_now_ns(void);

/* Summary of a set of samples, in the samples' unit (here: ns). */
struct bench_stats {
	double median; /* mean of the two middle samples when even */
	double min;
	double max;
	unsigned n;    /* how many samples */
};

/*
 * Fills *st from samples[0..n). The samples are not reordered: a sorted
 * copy is made, so the caller keeps them in the order they were taken.
 * Returns 0, -EINVAL (n == 0) or -ENOMEM.
 */
int bench_stats(const uint64_t *samples, size_t n, struct bench_stats *st);

/*
 * One run of the thing being measured. Returns 0, or non-zero to stop the
 * measurement (that value is passed back by bench_once).
 */
typedef int (*bench_fn)(void *arg);

/*
 * Calls fn(arg) once and stores its wall time in *ns; then check, when not
 * NULL, untimed, so that the result can be verified and the output reset
 * without the cost showing up in the sample. Benchmarks call it in rounds
 * (each variant once per round) so that noise on a shared machine falls on
 * every variant alike. Returns 0 or the first non-zero value of fn or check.
 */
int bench_once(bench_fn fn, bench_fn check, void *arg, uint64_t *ns);

/*
 * Parses a whole decimal string into *v, within [lo, hi]. Rejects empty
 * strings, signs, trailing garbage and overflow. Returns 0 or -EINVAL.
 */
int bench_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *v);

/* How many of got[0..n) differ from want[0..n); *first: the first that
 * does (untouched when none). */
size_t bench_diff_u64(const uint64_t *got, const uint64_t *want, size_t n,
                      size_t *first);

/*
 * The i-th input of the benchmarks' tasks, as pool_bench.py makes them:
 * i * 0x9e3779b97f4a7c15 mod 2^64, not i itself, so that a result at the
 * wrong position would rarely look right.
 */
static inline uint64_t bench_input(uint64_t i)
{
	return i * UINT64_C(0x9e3779b97f4a7c15);
}

/* pool_bench.py's checksum of results in order: sum((i + 1) * v[i]) mod
 * 2^64 over v[0..n). It changes when results are lost or reordered. */
uint64_t bench_checksum_u64(const uint64_t *v, size_t n);

/*
 * The CPU-bound task: x = x * A + C mod 2^64, iters times (pool_bench.py
 * runs the same loop, so its results can be checked here). Neither
 * shortened nor folded by the compiler.
 */
uint64_t bench_busy(uint64_t x, uint64_t iters);

/* Nanoseconds per iteration of bench_busy() on this machine, now. */
double bench_busy_calibrate(void);

/* CPUs this process may run on; at least 1. */
unsigned bench_nproc(void);

/*
 * The "model name" of the first CPU in /proc/cpuinfo into buf; "unknown"
 * when it cannot be read. Returns buf.
 */
const char *bench_cpu_model(char *buf, size_t len);

/* A column of a text table. */
struct bench_col {
	const char *title;
	int width;       /* in characters; longer cells are not cut */
	bool left;       /* left-align (names); numbers align right */
};

/* Prints the titles and a rule under them. */
void bench_table_header(FILE *f, const struct bench_col *cols, size_t ncols);

/* Prints one row: cells[i] under cols[i], on one line. */
void bench_table_row(FILE *f, const struct bench_col *cols, size_t ncols,
                     const char *const *cells);

#endif /* SHP_BENCH_COMMON_H */
