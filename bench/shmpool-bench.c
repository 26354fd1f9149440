/*
 * shmpool-bench: shmpool side by side with its peers (DPDK rte_ring,
 * Concurrency Kit ck_ring, a mutex queue, OpenMP, the seed's Process+Queue
 * pattern, pipes, Python's multiprocessing Pool, Process and Queue), in one
 * run, as ratios.
 *
 * Every figure is the median of at least 5 rounds, with min and max; the
 * variants of a group run once per round, in turn, so that a noisy stretch
 * of a shared machine falls on all of them alike. Every row verifies that
 * its results equal the serial results, in order: a wrong result fails the
 * run (exit 1). A missed target does not: the table says so, and why.
 */
#define _GNU_SOURCE
#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "harness.h"
#include "shmpool.h"

#define EXIT_WRONG 1
#define EXIT_SETUP 2
#define MIN_RUNS 5

struct group {
	const char *name;
	int (*run)(const struct bench_cfg *cfg, struct bench_report *r);
	const char *what;
};

static const struct group groups[] = {
	{ "ring", bench_group_ring,
	  "the task ring against rte_ring, ck_ring and a mutex queue" },
	{ "tasks", bench_group_tasks,
	  "per-task overhead of an empty task" },
	{ "scaling", bench_group_scaling,
	  "CPU-bound tasks of 1 to 1000 us: speedup over a serial loop" },
	{ "wakeup", bench_group_wakeup,
	  "wake-up latency of a sleeping worker" },
	{ "memory", bench_group_memory,
	  "segment size, worker memory, imap in constant memory" },
	{ "queue", bench_group_queue,
	  "Process+Queue and pipelines, as Python users compare them" },
};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))

struct opts {
	struct bench_cfg cfg;
	const char *csv, *plot;
	bool only[NGROUPS];
};

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: shmpool-bench [options]\n"
	        "  --quick         a short run (about 30 s) on smaller workloads\n"
	        "  --runs R        timed rounds per variant, at least %d "
	        "(default %d)\n"
	        "  --workers W     pool workers and threads (default: usable "
	        "CPUs)\n"
	        "  --only G[,G]    only these groups:",
	        MIN_RUNS, MIN_RUNS);
	for (size_t g = 0; g < NGROUPS; g++)
		fprintf(f, " %s", groups[g].name);
	fprintf(f, "\n"
	           "  --csv FILE      also write every row to FILE\n"
	           "  --plot FILE.png also draw the medians with gnuplot\n"
	           "  --help          this text\n"
	           "exit status: 0, 1 when a result was wrong, 2 on a usage or "
	           "setup error\n");
}

static int parse_only(const char *arg, struct opts *o)
{
	char *copy = strdup(arg), *save = NULL;
	int err = copy ? 0 : -ENOMEM;

	for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t && !err;
	     t = strtok_r(NULL, ",", &save)) {
		size_t g = 0;

		while (g < NGROUPS && strcmp(t, groups[g].name) != 0)
			g++;
		if (g == NGROUPS) {
			fprintf(stderr, "shmpool-bench: no group '%s'\n", t);
			err = -EINVAL;
		} else {
			o->only[g] = true;
		}
	}
	free(copy);
	return err;
}

/* 1: run, 0: --help printed, < 0: usage error. */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "runs", required_argument, NULL, 'r' },
		{ "workers", required_argument, NULL, 'w' },
		{ "only", required_argument, NULL, 'o' },
		{ "csv", required_argument, NULL, 'c' },
		{ "plot", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool any_only = false;
	uint64_t v;
	int c;

	o->cfg.runs = MIN_RUNS;
	o->cfg.workers = bench_nproc();
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'q':
			o->cfg.quick = true;
			break;
		case 'r':
			if (bench_parse_u64(optarg, MIN_RUNS, 1000, &v)) {
				fprintf(stderr, "shmpool-bench: --runs: a number "
				        "from %d to 1000\n", MIN_RUNS);
				return -EINVAL;
			}
			o->cfg.runs = (unsigned)v;
			break;
		case 'w':
			/* The library's own limit: see shp_pool_options. */
			if (bench_parse_u64(optarg, 1, 1024, &v)) {
				fprintf(stderr, "shmpool-bench: --workers: a "
				        "number from 1 to 1024\n");
				return -EINVAL;
			}
			o->cfg.workers = (unsigned)v;
			break;
		case 'o':
			if (parse_only(optarg, o))
				return -EINVAL;
			any_only = true;
			break;
		case 'c':
			o->csv = optarg;
			break;
		case 'p':
			o->plot = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "shmpool-bench: unexpected argument '%s'\n",
		        argv[optind]);
		usage(stderr);
		return -EINVAL;
	}
	for (size_t g = 0; g < NGROUPS && !any_only; g++)
		o->only[g] = true;
	return 1;
}

/* python3: the environment's SHP_BENCH_PYTHON, else what configure
 * found; NULL when neither runs. */
static const char *find_python(void)
{
	const char *p = getenv("SHP_BENCH_PYTHON");

	if (!p || !*p)
		p = BENCH_PYTHON3;
	return *p && access(p, X_OK) == 0 ? p : NULL;
}

/* pool_bench.py: beside the sources when run from the build tree, else
 * where make install put it. */
static const char *find_pydir(void)
{
	return access(BENCH_SRCDIR "/pool_bench.py", R_OK) == 0 ? BENCH_SRCDIR
	                                                        : BENCH_PYDIR;
}

static void fmt_num(char *buf, size_t len, double v)
{
	if (v == 0 || (fabs(v) >= 0.01 && fabs(v) < 1e7))
		snprintf(buf, len, "%.2f", v);
	else
		snprintf(buf, len, "%.3g", v);
}

static void print_group(const struct bench_report *r, const struct group *g)
{
	static const struct bench_col cols[] = {
		{ "variant", 28, true }, { "unit", 8, true },
		{ "median", 10, false }, { "min", 10, false },
		{ "max", 10, false },    { "ratio", 9, false },
		{ "vs", 22, true },      { "target", 7, true },
	};
	const size_t ncols = sizeof(cols) / sizeof(cols[0]);

	printf("\n## %s: %s\n", g->name, g->what);
	bench_table_header(stdout, cols, ncols);
	for (size_t i = 0; i < r->n; i++) {
		const struct bench_row *row = &r->rows[i];
		char med[32], mn[32], mx[32], ratio[32];
		const char *met = row->met == 1 ? "met" : row->met == 0 ? "MISSED"
		                                                       : "";
		const char *cells[] = { row->name, row->unit, med, mn, mx,
			                ratio, row->ratio_vs ? row->ratio_vs : "",
			                met };

		if (strcmp(row->group, g->name) != 0)
			continue;
		if (row->st.n) {
			fmt_num(med, sizeof(med), row->st.median);
			fmt_num(mn, sizeof(mn), row->st.min);
			fmt_num(mx, sizeof(mx), row->st.max);
		} else {
			snprintf(med, sizeof(med), "-");
			snprintf(mn, sizeof(mn), "-");
			snprintf(mx, sizeof(mx), "-");
		}
		if (row->ratio > 0)
			snprintf(ratio, sizeof(ratio), "%.2fx", row->ratio);
		else
			snprintf(ratio, sizeof(ratio), "%s", "");
		bench_table_row(stdout, cols, ncols, cells);
		if (row->note)
			printf("    %s\n", row->note);
	}
}

static void print_targets(const struct bench_report *r)
{
	bool any = false;

	for (size_t i = 0; i < r->n; i++) {
		const struct bench_row *row = &r->rows[i];

		if (!row->target || row->met < 0)
			continue;
		if (!any)
			printf("\n## targets\n");
		any = true;
		printf("%-7s %s: %s\n", row->met ? "met" : "MISSED", row->name,
		       row->target);
	}
}

/* A CSV field: quoted when it holds a comma or a quote. */
static void csv_field(FILE *f, const char *s, bool last)
{
	if (!s)
		s = "";
	if (strpbrk(s, ",\"\n")) {
		fputc('"', f);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', f);
			fputc(*s, f);
		}
		fputc('"', f);
	} else {
		fputs(s, f);
	}
	fputc(last ? '\n' : ',', f);
}

static int write_csv(const char *path, const struct bench_report *r,
                     unsigned runs)
{
	FILE *f = fopen(path, "w");
	int err = 0;

	if (!f)
		return -errno;
	fprintf(f, "group,name,unit,median,min,max,runs,ratio,ratio_vs,"
	           "target,met,note\n");
	for (size_t i = 0; i < r->n; i++) {
		const struct bench_row *row = &r->rows[i];

		csv_field(f, row->group, false);
		csv_field(f, row->name, false);
		csv_field(f, row->unit, false);
		if (row->st.n)
			fprintf(f, "%.4f,%.4f,%.4f,%u,", row->st.median,
			        row->st.min, row->st.max, runs);
		else
			fprintf(f, ",,,%u,", runs);
		if (row->ratio > 0)
			fprintf(f, "%.4f,", row->ratio);
		else
			fprintf(f, ",");
		csv_field(f, row->ratio_vs, false);
		csv_field(f, row->target, false);
		fprintf(f, "%s,", row->met == 1 ? "yes" : row->met == 0 ? "no"
		                                                        : "");
		csv_field(f, row->note, true);
	}
	if (fflush(f) || ferror(f))
		err = -EIO;
	if (fclose(f) && !err)
		err = -errno;
	return err;
}

/* Whether row goes into group's panel: measured, and above zero (the
 * axis is logarithmic). */
static bool plotted(const struct bench_row *row, const char *group)
{
	return !strcmp(row->group, group) && row->st.n && row->st.median > 0;
}

/*
 * One panel per group: the medians as horizontal bars (log scale, the
 * unit in the title), min and max as error bars. gnuplot reads the data
 * inline.
 */
static int write_plot(const char *path, const struct bench_report *r,
                      const struct opts *o)
{
	FILE *gp;
	size_t ngroups = 0;
	int status;

	for (size_t g = 0; g < NGROUPS; g++)
		ngroups += o->only[g];
	gp = popen("gnuplot", "w");
	if (!gp)
		return -errno;
	fprintf(gp, "set terminal pngcairo noenhanced size 1400,%zu "
	            "font ',9'\n",
	        360 * ((ngroups + 1) / 2));
	fprintf(gp, "set output '%s'\n", path);
	fprintf(gp, "set multiplot layout %zu,2 title 'shmpool-bench %s "
	            "(median, min-max; %u workers)'\n",
	        (ngroups + 1) / 2, shp_version(), o->cfg.workers);
	fprintf(gp, "set style fill solid 0.6\nset grid xtics\nset logscale x\n"
	            "set format x '%%g'\nset key off\n"
	            "set offsets 0,0,0.5,0.5\n");
	for (size_t g = 0; g < NGROUPS; g++) {
		size_t k = 0;

		if (!o->only[g])
			continue;
		fprintf(gp, "set title '%s'\nset ytics (", groups[g].name);
		for (size_t i = 0; i < r->n; i++) {
			const struct bench_row *row = &r->rows[i];

			if (!plotted(row, groups[g].name))
				continue;
			fprintf(gp, "%s'%s (%s)' %zu", k ? ", " : "", row->name,
			        row->unit, k);
			k++;
		}
		fprintf(gp, ")\n");
		if (!k) {
			fprintf(gp, "set multiplot next\n");
			continue;
		}
		fprintf(gp, "plot '-' using 2:1:3:4:($1-0.35):($1+0.35) "
		            "with boxxyerror, '-' using 2:1:3:4 with "
		            "xerrorbars lc rgb 'black' pt 0\n");
		for (int pass = 0; pass < 2; pass++) {
			k = 0;
			for (size_t i = 0; i < r->n; i++) {
				const struct bench_row *row = &r->rows[i];
				double lo;

				if (!plotted(row, groups[g].name))
					continue;
				/* Bars start near zero on a log axis. */
				lo = row->st.min > 0 ? row->st.min / 1e3 : 1e-3;
				if (pass == 0)
					fprintf(gp, "%zu %g %g %g\n", k,
					        row->st.median, lo,
					        row->st.median);
				else
					fprintf(gp, "%zu %g %g %g\n", k,
					        row->st.median, row->st.min,
					        row->st.max);
				k++;
			}
			fprintf(gp, "e\n");
		}
	}
	fprintf(gp, "unset multiplot\n");
	status = pclose(gp);
	if (status == -1)
		return -errno;
	return status == 0 ? 0 : -EIO;
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	struct bench_report r = { 0 };
	char cpu[128];
	struct utsname u;
	int status = 0, err;

	err = parse_args(argc, argv, &o);
	if (err <= 0)
		return err ? EXIT_SETUP : 0;
	o.cfg.python = find_python();
	o.cfg.pydir = find_pydir();
	if (uname(&u))
		snprintf(u.release, sizeof(u.release), "?");
	printf("# shmpool-bench: shmpool %s; Linux %s; %u CPUs usable; cpu: "
	       "%s\n",
	       shp_version(), u.release, bench_nproc(),
	       bench_cpu_model(cpu, sizeof(cpu)));
	printf("# %u workers; %u timed rounds per variant after a warm-up; "
	       "%s workloads; python3: %s\n",
	       o.cfg.workers, o.cfg.runs, o.cfg.quick ? "quick" : "full",
	       o.cfg.python ? o.cfg.python : "not found");
	printf("# ratios compare medians of this run; see docs/benchmarks.md\n");
	fflush(stdout);

	for (size_t g = 0; g < NGROUPS; g++) {
		if (!o.only[g])
			continue;
		bench_progress(groups[g].name, "starting");
		err = groups[g].run(&o.cfg, &r);
		if (err == BENCH_WRONG) {
			status = EXIT_WRONG;
		} else if (err) {
			fprintf(stderr, "\nshmpool-bench: %s: %s\n",
			        groups[g].name, shp_strerror(err));
			if (!status)
				status = EXIT_SETUP;
		}
	}
	if (isatty(STDERR_FILENO))
		fprintf(stderr, "\r%79s\r", "");
	for (size_t g = 0; g < NGROUPS; g++)
		if (o.only[g])
			print_group(&r, &groups[g]);
	print_targets(&r);
	if (o.csv) {
		err = write_csv(o.csv, &r, o.cfg.runs);
		if (err) {
			fprintf(stderr, "shmpool-bench: %s: %s\n", o.csv,
			        strerror(-err));
			if (!status)
				status = EXIT_SETUP;
		}
	}
	if (o.plot) {
		err = write_plot(o.plot, &r, &o);
		if (err) {
			fprintf(stderr, "shmpool-bench: %s: gnuplot failed "
			        "(apt-get install gnuplot-nox)\n", o.plot);
			if (!status)
				status = EXIT_SETUP;
		}
	}
	bench_report_free(&r);
	return status;
}
