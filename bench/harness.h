/*
 * shmpool-bench: the comparison harness. Each group of comparisons (ring,
 * tasks, scaling, wakeup, memory, queue) is one function that measures its
 * variants side by side, in interleaved rounds, verifies that every
 * variant's results equal the serial results in order, and adds one row
 * per variant to the report. The main program prints the report as a
 * table, and as CSV and a gnuplot picture on request.
 */
#ifndef SHP_BENCH_HARNESS_H
#define SHP_BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"
#include "shmpool.h"

/* What every group is given. */
struct bench_cfg {
	unsigned workers; /* pool workers, OpenMP threads, processes */
	unsigned runs;    /* timed rounds per variant (>= 5), after a warm-up */
	bool quick;       /* --quick: smaller workloads, the whole run ~30 s */
	const char *python; /* the python3 interpreter, or NULL: absent */
	const char *pydir;  /* where pool_bench.py is */
};

/* Returned by a group whose variant produced wrong results (after adding
 * its rows: the row's note says which). Other failures are -errno. */
#define BENCH_WRONG 1

/*
 * One row of the report. Strings are copied by bench_report_add. Numbers
 * are in the row's unit; a variant that could not run (peer not built,
 * python3 absent) has no stats (st.n == 0) and says why in note.
 */
struct bench_row {
	const char *group;  /* "ring", "tasks", "scaling", "wakeup", "memory", "queue" */
	const char *name;   /* the variant, e.g. "shp ring 2P/2C" */
	const char *unit;   /* "ns/op", "ns/task", "speedup", "us", "MiB" */
	struct bench_stats st; /* median, min, max over the rounds */
	double ratio;       /* this row against ratio_vs, same run; 0: none */
	const char *ratio_vs; /* the peer row's name, or NULL */
	const char *target; /* the target this row is judged by, or NULL */
	int met;            /* 1 met, 0 missed, -1 not judged */
	const char *note;   /* why it is missing, why a target was missed */
};

struct bench_report {
	struct bench_row *rows;
	size_t n, cap;
};

/* Appends a copy of *row (its strings too). 0 or -ENOMEM. */
int bench_report_add(struct bench_report *r, const struct bench_row *row);
/* The row of group/name, or NULL. */
const struct bench_row *bench_report_find(const struct bench_report *r,
                                          const char *group,
                                          const char *name);
void bench_report_free(struct bench_report *r);

/* Closes, joins and destroys pool (NULL: nothing): an orderly shutdown
 * is part of what is tested. 0, or BENCH_WRONG with the error on stderr. */
int bench_pool_shutdown(shp_pool *pool, const char *group);

/* The progress line on stderr: "[group] what", overwritten in place. */
void bench_progress(const char *group, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * The Python coprocess (bench/tasks.c): pool_bench.py --serve, one
 * interpreter and one Pool for a whole group, asked for one measurement at
 * a time, so that its rounds interleave with the C rounds. Errors come back
 * as text in err (the row's note).
 */
struct bench_py;
int bench_py_start(const struct bench_cfg *cfg, struct bench_py **out, char *err,
                   size_t errlen);
int bench_py_ask(struct bench_py *py, const char *req, char *ans, size_t anslen,
                 char *err, size_t errlen);
const char *bench_py_version(const struct bench_py *py);
void bench_py_stop(struct bench_py *py);

/* The groups. Each returns 0, BENCH_WRONG, or -errno (setup failed). */
int bench_group_ring(const struct bench_cfg *cfg, struct bench_report *r);
int bench_group_tasks(const struct bench_cfg *cfg, struct bench_report *r);
int bench_group_scaling(const struct bench_cfg *cfg, struct bench_report *r);
int bench_group_wakeup(const struct bench_cfg *cfg, struct bench_report *r);
int bench_group_memory(const struct bench_cfg *cfg, struct bench_report *r);
int bench_group_queue(const struct bench_cfg *cfg, struct bench_report *r);

#endif
