/*
 * The data arena's allocator. Its book-keeping lives in the parent's private
 * memory, never in the segment: a task that scribbles over the arena can
 * corrupt data, not the allocator. Used by the parent only, under the pool
 * lock.
 */
#ifndef SHP_ARENA_H
#define SHP_ARENA_H

#include <stddef.h>

struct shp__extent {
	size_t off;
	size_t len;
};

struct shp__arena {
	char *base;
	size_t size;
	struct shp__extent *free; /* sorted by offset, coalesced */
	size_t nfree, capfree;
	struct shp__extent *used; /* sorted by offset */
	size_t nused, capused;
};

#define SHP_ARENA_ALIGN 64u

int shp__arena_init(struct shp__arena *a, void *base, size_t size);
void shp__arena_fini(struct shp__arena *a);
/* First fit, SHP_ARENA_ALIGN-aligned. NULL when no room (or size 0). */
void *shp__arena_alloc(struct shp__arena *a, size_t size);
/* 0, or -EINVAL when p is not a live block of this arena. */
int shp__arena_free(struct shp__arena *a, void *p);
/* Whether [p, p + len) lies inside the arena. */
int shp__arena_contains(const struct shp__arena *a, const void *p, size_t len);

#endif
