/*
 * A three-stage pipeline, as pypeln's
 *
 *     stage = pl.process.map(collatz, range(1, 41), workers=3, maxsize=8)
 *     stage = pl.process.filter(long_enough, stage, workers=2, maxsize=8)
 *     stage = pl.process.map(describe, stage, workers=2, maxsize=4)
 *     for line in stage: print(line)
 *
 * in C: each stage runs in its own worker processes, bounded queues join
 * them, and the lines come out in input order although the workers finish
 * out of order.
 */
#include <stdio.h>

#include <shmpool.h>

struct walk {
	long start;
	long steps; /* to reach 1 */
	long peak;  /* the highest value on the way */
};

/* Stage 1: the Collatz walk from n. */
static int collatz(const void *in, void *out, void *ctx)
{
	long n = *(const long *)in, x = n;
	struct walk *w = out;

	(void)ctx;
	w->start = n;
	w->steps = 0;
	w->peak = n;
	while (x != 1) {
		x = x % 2 ? 3 * x + 1 : x / 2;
		w->steps++;
		if (x > w->peak)
			w->peak = x;
	}
	return 0;
}

/* Stage 2: only the long walks. */
static int long_enough(const void *in, void *ctx)
{
	(void)ctx;
	return ((const struct walk *)in)->steps >= 20;
}

/* Stage 3: a line of text. */
static int describe(const void *in, void *out, void *ctx)
{
	const struct walk *w = in;

	(void)ctx;
	snprintf(out, 64, "%2ld: %3ld steps, peak %ld", w->start, w->steps,
	         w->peak);
	return 0;
}

int main(void)
{
	long in[40];
	char line[64];
	shp_pipeline *p;
	size_t i;
	int err;

	for (int k = 0; k < 40; k++)
		in[k] = k + 1;
	err = shp_pipeline_create(&p, in, sizeof(long), 40, 0);
	if (!err)
		err = shp_pipeline_map(p, collatz, NULL, sizeof(struct walk), 3,
		                       8);
	if (!err)
		err = shp_pipeline_filter(p, long_enough, NULL, 2, 8);
	if (!err)
		err = shp_pipeline_map(p, describe, NULL, sizeof(line), 2, 4);
	while (!err && (err = shp_pipeline_next(p, &i, line, -1)) == 1) {
		printf("%s\n", line);
		err = 0;
	}
	if (err < 0) {
		unsigned stage;

		fprintf(stderr, "pipeline: %s", shp_strerror(err));
		if (shp_pipeline_error(p, &stage, &i, NULL, NULL) == 0)
			fprintf(stderr, " (stage %u, item %zu)", stage, i);
		fprintf(stderr, "\n");
	}
	shp_pipeline_free(p);
	return err < 0;
}
