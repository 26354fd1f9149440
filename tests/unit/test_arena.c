#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

static char mem[1 << 16] __attribute__((aligned(64)));

Test(arena, blocks_are_aligned_and_disjoint, .timeout = 10)
{
	struct shp__arena a;
	char *p[10];

	cr_assert_eq(shp__arena_init(&a, mem, sizeof(mem)), 0);
	for (int i = 0; i < 10; i++) {
		p[i] = shp__arena_alloc(&a, (size_t)(1 + i * 37));
		cr_assert_not_null(p[i]);
		cr_expect_eq((uintptr_t)p[i] % SHP_ARENA_ALIGN, 0);
		memset(p[i], i, (size_t)(1 + i * 37));
	}
	for (int i = 0; i < 10; i++)
		for (int k = 0; k < 1 + i * 37; k++)
			cr_assert_eq(p[i][k], i);
	shp__arena_fini(&a);
}

Test(arena, exhaustion_returns_null_and_free_coalesces, .timeout = 10)
{
	struct shp__arena a;
	void *p[16];

	cr_assert_eq(shp__arena_init(&a, mem, sizeof(mem)), 0);
	for (int i = 0; i < 16; i++)
		cr_assert_not_null(p[i] = shp__arena_alloc(&a, 4096));
	cr_expect_null(shp__arena_alloc(&a, 1));
	/* Free in an order that needs merging on both sides. */
	for (int i = 0; i < 16; i += 2)
		cr_expect_eq(shp__arena_free(&a, p[i]), 0);
	cr_expect_null(shp__arena_alloc(&a, 8192));
	for (int i = 1; i < 16; i += 2)
		cr_expect_eq(shp__arena_free(&a, p[i]), 0);
	cr_expect_eq(a.nfree, 1);
	cr_expect_eq(a.nused, 0);
	cr_expect_eq(shp__arena_alloc(&a, sizeof(mem)), mem);
	shp__arena_fini(&a);
}

Test(arena, bad_frees_are_refused, .timeout = 10)
{
	struct shp__arena a;
	char *p;
	int local;

	cr_assert_eq(shp__arena_init(&a, mem, sizeof(mem)), 0);
	p = shp__arena_alloc(&a, 100);
	cr_assert_not_null(p);
	cr_expect_eq(shp__arena_free(&a, &local), -EINVAL);
	cr_expect_eq(shp__arena_free(&a, p + 1), -EINVAL);
	cr_expect_eq(shp__arena_free(&a, p), 0);
	cr_expect_eq(shp__arena_free(&a, p), -EINVAL); /* double free */
	cr_expect_null(shp__arena_alloc(&a, 0));
	cr_expect_null(shp__arena_alloc(&a, SIZE_MAX));
	shp__arena_fini(&a);
}

Test(arena, contains_checks_the_whole_range, .timeout = 10)
{
	struct shp__arena a;

	cr_assert_eq(shp__arena_init(&a, mem, sizeof(mem)), 0);
	cr_expect(shp__arena_contains(&a, mem, sizeof(mem)));
	cr_expect(shp__arena_contains(&a, mem + 10, 100));
	cr_expect_not(shp__arena_contains(&a, mem + 10, sizeof(mem)));
	cr_expect_not(shp__arena_contains(&a, mem + sizeof(mem) - 1, 2));
	cr_expect_not(shp__arena_contains(&a, (char *)((uintptr_t)mem - 1), 1));
	cr_expect_not(shp__arena_contains(&a, NULL, 1));
	cr_expect_not(shp__arena_contains(&a, mem, SIZE_MAX));
	shp__arena_fini(&a);
}
