/*
 * Memory: the shared segment's size, what a worker costs in private memory,
 * and an imap over a huge generated input in constant memory (the parent's
 * resident set before and after). Python's Pool.imap has no bound on what
 * it reads ahead; shmpool's window is a fixed number of slots.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "shmpool.h"

#define MIB (1024.0 * 1024.0)
#define GROWTH_LIMIT_MIB 4.0

/* The size of the mapping of our pool's segment, from /proc/self/maps (the
 * object is unlinked at once: "/dev/shm/shmpool-... (deleted)"). */
static double segment_mib(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	double total = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (strstr(line, "/dev/shm/shmpool") &&
		    sscanf(line, "%lx-%lx", &lo, &hi) == 2)
			total += (double)(hi - lo);
	}
	fclose(f);
	return total / MIB;
}

/* A field of /proc/<pid>/<file> in kB (smaps_rollup, status), or -1. */
static long proc_kb(pid_t pid, const char *file, const char *key)
{
	char path[64], line[256];
	size_t klen = strlen(key);
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen) && line[klen] == ':')
			kb = strtol(line + klen + 1, NULL, 10);
	fclose(f);
	return kb;
}

static int my_pid(const void *in, void *out, void *ctx)
{
	(void)in;
	(void)ctx;
	*(int32_t *)out = (int32_t)getpid();
	return 0;
}

/* Private memory of each worker (found by asking the tasks), in MiB; the
 * median over workers into *mib. */
static int worker_private_mib(shp_pool *p, unsigned workers, double *mib)
{
	enum { N = 4096 };
	int32_t pids[N], seen[64];
	uint64_t kb[64];
	struct bench_stats st;
	unsigned k = 0;
	int err = shp_map(p, my_pid, NULL, NULL, 0, pids, sizeof(pids[0]), N,
	                  1, NULL);

	if (err)
		return err;
	for (size_t i = 0; i < N && k < 64 && k < workers; i++) {
		unsigned j = 0;
		long a, b;

		while (j < k && seen[j] != pids[i])
			j++;
		if (j < k)
			continue;
		a = proc_kb(pids[i], "smaps_rollup", "Private_Dirty");
		b = proc_kb(pids[i], "smaps_rollup", "Private_Clean");
		if (a < 0 || b < 0)
			continue; /* replaced meanwhile: skip it */
		seen[k] = pids[i];
		kb[k++] = (uint64_t)(a + b);
	}
	if (!k)
		return -ESRCH;
	err = bench_stats(kb, k, &st);
	*mib = st.median / 1024.0;
	return err;
}

struct counter {
	uint64_t next, n;
};

static int gen(void *in, void *arg)
{
	struct counter *c = arg;

	if (c->next == c->n)
		return 0;
	*(uint64_t *)in = c->next++;
	return 1;
}

static int inc(const void *in, void *out, void *ctx)
{
	(void)ctx;
	*(uint64_t *)out = *(const uint64_t *)in + 1;
	return 0;
}

/* One imap over n generated inputs: checks every result in order, and
 * the parent's resident set after the first tenth and at the end. */
static int imap_run(shp_pool *p, uint64_t n, uint64_t *ns, double *growth)
{
	struct counter c = { 0, n };
	uint64_t t0 = bench_now_ns(), i = 0;
	long rss0 = -1, rss1;
	shp_iter *it;
	const void *o;
	size_t idx;
	int err, r;

	err = shp_imap_gen(p, inc, NULL, gen, &c, sizeof(uint64_t),
	                   sizeof(uint64_t), 0, NULL, &it);
	if (err)
		return err;
	while ((r = shp_iter_next(it, &idx, &o, NULL, -1)) == 1) {
		if (idx != i || *(const uint64_t *)o != i + 1) {
			r = BENCH_WRONG;
			break;
		}
		if (++i == n / 10)
			rss0 = proc_kb(getpid(), "status", "VmRSS");
	}
	*ns = bench_now_ns() - t0;
	shp_iter_free(it);
	if (r < 0)
		return r;
	if (r == BENCH_WRONG || i != n)
		return BENCH_WRONG;
	rss1 = proc_kb(getpid(), "status", "VmRSS");
	*growth = rss0 < 0 || rss1 < 0 ? 0 : (double)(rss1 - rss0) / 1024.0;
	return 0;
}

static int add(struct bench_report *r, const char *name, const char *unit,
               double v, const char *target, int met, const char *note)
{
	struct bench_row row = { .group = "memory", .name = name, .unit = unit,
		                 .st = { v, v, v, 1 }, .target = target,
		                 .met = met, .note = note };

	return bench_report_add(r, &row);
}

int bench_group_memory(const struct bench_cfg *cfg, struct bench_report *r)
{
	struct shp_pool_options o = { .workers = cfg->workers };
	uint64_t n = cfg->quick ? 1000000 : 100000000;
	uint64_t *ns = calloc(cfg->runs, sizeof(*ns));
	double *growth = calloc(cfg->runs, sizeof(*growth));
	double seg, worker, worst = 0;
	struct bench_row row = { .group = "memory", .unit = "ns/task",
		                 .met = -1 };
	char name[64], gname[64], note[160];
	shp_pool *p = NULL;
	int err;

	if (!ns || !growth) {
		err = -ENOMEM;
		goto out;
	}
	bench_progress("memory", "segment and workers");
	err = shp_pool_create(&p, &o);
	if (err)
		goto out;
	seg = segment_mib();
	err = worker_private_mib(p, cfg->workers, &worker);
	if (err)
		goto out;
	err = add(r, "segment (default options)", "MiB", seg, NULL, -1,
	          "ring, slots, tables and the 64 MiB arena; reserved in "
	          "/dev/shm at create, shared by every process");
	if (!err)
		err = add(r, "worker private memory", "MiB", worker, NULL, -1,
		          "median over workers of Private_Dirty + "
		          "Private_Clean (smaps_rollup)");
	for (unsigned k = 0; k < cfg->runs && !err; k++) {
		bench_progress("memory", "imap over %llu inputs, run %u of %u",
		               (unsigned long long)n, k + 1, cfg->runs);
		err = imap_run(p, n, &ns[k], &growth[k]);
		if (growth[k] > worst)
			worst = growth[k];
	}
	if (err == BENCH_WRONG) {
		row.name = "imap_gen";
		row.note = "WRONG RESULTS: a result out of order or wrong";
		bench_report_add(r, &row);
		goto out;
	}
	if (err)
		goto out;
	err = bench_stats(ns, cfg->runs, &row.st);
	if (err)
		goto out;
	row.st.median /= (double)n;
	row.st.min /= (double)n;
	row.st.max /= (double)n;
	snprintf(name, sizeof(name), "imap_gen over %.0e inputs", (double)n);
	row.name = name;
	err = bench_report_add(r, &row);
	if (err)
		goto out;
	snprintf(gname, sizeof(gname), "imap_gen %.0e: parent RSS growth",
	         (double)n);
	snprintf(note, sizeof(note),
	         "worst of %u runs, from a tenth of the way to the end",
	         cfg->runs);
	err = add(r, gname, "MiB", worst, "imap in constant memory (growth "
	          "under 4 MiB)", worst < GROWTH_LIMIT_MIB, note);
out:
	shp_pool_destroy(p);
	free(ns);
	free(growth);
	return err;
}
