/*
 * A numeric kernel over a large shared array: each task computes one row of
 * a Mandelbrot image straight into an image that lives in shp_alloc()
 * memory, so no pixel is copied between processes. The image goes to a
 * binary PGM file, and its FNV-1a checksum to stdout.
 *
 *   mandelbrot [--verify] [FILE [WIDTH HEIGHT [MAX_ITER]]]
 *
 * Defaults: mandelbrot.pgm, 320 x 240, 256 iterations. --verify also
 * computes the image with a serial loop and compares the two.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <shmpool.h>

struct view {
	unsigned width, height, max_iter;
};

/* Row y of the image into row[0 .. width): 0 (black) inside the set, lighter
 * the sooner a point escapes. */
static void render_row(const struct view *v, unsigned y, unsigned char *row)
{
	double ci = 1.2 - 2.4 * y / v->height;

	for (unsigned x = 0; x < v->width; x++) {
		double cr = -2.2 + 3.2 * x / v->width;
		double zr = 0, zi = 0;
		unsigned i = 0;

		while (i < v->max_iter && zr * zr + zi * zi <= 4.0) {
			double t = zr * zr - zi * zi + cr;

			zi = 2 * zr * zi + ci;
			zr = t;
			i++;
		}
		/* max_iter >= 1: arg() refuses 0 (the analyzer loses it
		 * through shp_map's ctx). */
		/* NOLINTNEXTLINE(clang-analyzer-core.DivideZero) */
		row[x] = (unsigned char)(255 - 255ull * i / v->max_iter);
	}
}

/* The task: in is the row number, out is that row of the shared image. */
static int row_task(const void *in, void *out, void *ctx)
{
	render_row(ctx, *(const unsigned *)in, out);
	return 0;
}

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--) {
		h ^= *p++;
		h *= 16777619u;
	}
	return h;
}

static int write_pgm(const char *path, const struct view *v,
                     const unsigned char *pix)
{
	FILE *f = fopen(path, "wb");
	size_t n = (size_t)v->width * v->height;

	if (!f) {
		perror(path);
		return -1;
	}
	fprintf(f, "P5\n%u %u\n255\n", v->width, v->height);
	if (fwrite(pix, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	return 0;
}

static unsigned arg(const char *s, const char *what)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v == 0 || v > 100000) {
		fprintf(stderr, "mandelbrot: bad %s: %s\n", what, s);
		exit(2);
	}
	return (unsigned)v;
}

int main(int argc, char **argv)
{
	/* The view must exist before the pool: the workers are forks of this
	 * process as it is at shp_pool_create, and get it through ctx. */
	struct view v = { 320, 240, 256 };
	const char *path = "mandelbrot.pgm";
	int verify = 0, err, ret = 1;
	unsigned char *pix;
	unsigned *rows;
	shp_pool *pool;
	size_t npix;

	if (argc > 1 && strcmp(argv[1], "--verify") == 0) {
		verify = 1;
		argv++;
		argc--;
	}
	if (argc > 1)
		path = argv[1];
	if (argc == 3 || argc > 5) {
		fprintf(stderr, "usage: mandelbrot [--verify] "
		                "[FILE [WIDTH HEIGHT [MAX_ITER]]]\n");
		return 2;
	}
	if (argc > 3) {
		v.width = arg(argv[2], "width");
		v.height = arg(argv[3], "height");
	}
	if (argc > 4)
		v.max_iter = arg(argv[4], "max_iter");
	npix = (size_t)v.width * v.height;

	/* An arena as large as the image, and a little room to spare. */
	err = shp_pool_create(&pool, &(struct shp_pool_options){
	                                     .arena_bytes = npix + (1 << 20) });
	if (err) {
		fprintf(stderr, "shp_pool_create: %s\n", shp_strerror(err));
		return 1;
	}
	/* The image lives in the pool's arena: each task writes its row in
	 * place. The row numbers are small inputs, copied as usual. */
	pix = shp_alloc(pool, npix);
	rows = malloc(v.height * sizeof(*rows));
	if (!pix || !rows) {
		fprintf(stderr, "mandelbrot: out of memory\n");
		goto out;
	}
	for (unsigned y = 0; y < v.height; y++)
		rows[y] = y;
	err = shp_map(pool, row_task, &v, rows, sizeof(*rows), pix, v.width,
	              v.height, 0, NULL);
	if (err) {
		fprintf(stderr, "shp_map: %s\n", shp_strerror(err));
		goto out;
	}
	if (write_pgm(path, &v, pix))
		goto out;
	printf("%ux%u, %u iterations: %s\n", v.width, v.height, v.max_iter,
	       path);
	printf("fnv1a %08x\n", (unsigned)fnv1a(pix, npix));

	if (verify) {
		/* The same rows by a plain loop in this process. */
		unsigned char *serial = malloc(npix);
		int same;

		if (!serial) {
			fprintf(stderr, "mandelbrot: out of memory\n");
			goto out;
		}
		for (unsigned y = 0; y < v.height; y++)
			render_row(&v, y, serial + (size_t)y * v.width);
		same = memcmp(serial, pix, npix) == 0;
		printf("serial fnv1a %08x: %s\n", (unsigned)fnv1a(serial, npix),
		       same ? "same image" : "different image");
		free(serial);
		if (!same)
			goto out;
	}
	ret = 0;
out:
	free(rows);
	shp_pool_destroy(pool); /* frees pix with the arena */
	return ret;
}
