/* pool.map(cube, range(1, 7)) and pool.apply(cube, (x,)), in C. */
#include <stdio.h>

#include <shmpool.h>

static int cube(const void *in, void *out, void *ctx)
{
	long x = *(const long *)in;

	(void)ctx;
	*(long *)out = x * x * x;
	return 0;
}

int main(void)
{
	struct shp_pool_options opt = { .workers = 4 };
	long in[6] = { 1, 2, 3, 4, 5, 6 }, out[6];
	shp_pool *pool;
	int err = shp_pool_create(&pool, &opt);

	if (err) {
		fprintf(stderr, "shp_pool_create: %s\n", shp_strerror(err));
		return 1;
	}
	err = shp_map(pool, cube, NULL, in, sizeof(long), out, sizeof(long), 6,
	              0, NULL);
	if (err) {
		fprintf(stderr, "shp_map: %s\n", shp_strerror(err));
		return 1;
	}
	for (int i = 0; i < 6; i++)
		printf("%ld%c", out[i], i < 5 ? ' ' : '\n');

	for (int i = 0; i < 6; i++) {
		err = shp_apply(pool, cube, NULL, &in[i], sizeof(long), &out[i],
		                sizeof(long));
		if (err) {
			fprintf(stderr, "shp_apply: %s\n", shp_strerror(err));
			return 1;
		}
	}
	for (int i = 0; i < 6; i++)
		printf("%ld%c", out[i], i < 5 ? ' ' : '\n');
	shp_pool_destroy(pool);
	return 0;
}
