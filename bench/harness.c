/*
 * The report and the progress line of shmpool-bench; see harness.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static char *dup_or_null(const char *s, bool *failed)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*failed = true;
	return d;
}

static void free_row(struct bench_row *row)
{
	free((char *)row->group);
	free((char *)row->name);
	free((char *)row->unit);
	free((char *)row->ratio_vs);
	free((char *)row->target);
	free((char *)row->note);
}

int bench_report_add(struct bench_report *r, const struct bench_row *row)
{
	struct bench_row copy = *row;
	bool failed = false;

	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 32;
		struct bench_row *rows = realloc(r->rows, cap * sizeof(*rows));

		if (!rows)
			return -ENOMEM;
		r->rows = rows;
		r->cap = cap;
	}
	copy.group = dup_or_null(row->group, &failed);
	copy.name = dup_or_null(row->name, &failed);
	copy.unit = dup_or_null(row->unit, &failed);
	copy.ratio_vs = dup_or_null(row->ratio_vs, &failed);
	copy.target = dup_or_null(row->target, &failed);
	copy.note = dup_or_null(row->note, &failed);
	if (failed) {
		free_row(&copy);
		return -ENOMEM;
	}
	r->rows[r->n++] = copy;
	return 0;
}

const struct bench_row *bench_report_find(const struct bench_report *r,
                                          const char *group, const char *name)
{
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->rows[i].group, group) &&
		    !strcmp(r->rows[i].name, name))
			return &r->rows[i];
	return NULL;
}

void bench_report_free(struct bench_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		free_row(&r->rows[i]);
	free(r->rows);
	r->rows = NULL;
	r->n = r->cap = 0;
}

void bench_progress(const char *group, const char *fmt, ...)
{
	static char last[32];
	char line[160];
	va_list ap;
	int k;

	k = snprintf(line, sizeof(line), "[%s] ", group);
	va_start(ap, fmt);
	if (k > 0 && (size_t)k < sizeof(line))
		vsnprintf(line + k, sizeof(line) - (size_t)k, fmt, ap);
	va_end(ap);
	if (isatty(STDERR_FILENO)) {
		/* One line, rewritten in place; padded to wipe what a
		 * longer previous line left. */
		fprintf(stderr, "\r%-79.79s", line);
		fflush(stderr);
	} else if (strncmp(last, group, sizeof(last) - 1) != 0) {
		/* A log gets one line per group. */
		fprintf(stderr, "%s\n", line);
	}
	snprintf(last, sizeof(last), "%s", group);
}

int bench_pool_shutdown(shp_pool *pool, const char *group)
{
	int err;

	if (!pool)
		return 0;
	err = shp_pool_close(pool);
	if (!err)
		err = shp_pool_join(pool);
	shp_pool_destroy(pool);
	if (!err)
		return 0;
	fprintf(stderr, "%s: shutting the pool down: %s\n", group,
	        shp_strerror(err));
	return BENCH_WRONG;
}
