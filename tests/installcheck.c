/* Built by make installcheck against the installed header, library and
 * shmpool.pc (tests/check-install.sh): the version, then a map. */
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
	long in[6] = { 1, 2, 3, 4, 5, 6 }, out[6];
	shp_pool *pool;
	int err = shp_pool_create(&pool, &(struct shp_pool_options){ .workers = 2 });

	printf("shmpool %s (header %s)\n", shp_version(), SHP_VERSION_STRING);
	if (err) {
		fprintf(stderr, "shp_pool_create: %s\n", shp_strerror(err));
		return 1;
	}
	err = shp_map(pool, cube, NULL, in, sizeof(long), out, sizeof(long), 6,
	              0, NULL);
	shp_pool_destroy(pool);
	if (err) {
		fprintf(stderr, "shp_map: %s\n", shp_strerror(err));
		return 1;
	}
	for (int i = 0; i < 6; i++)
		printf("%ld%c", out[i], i < 5 ? ' ' : '\n');
	return 0;
}
