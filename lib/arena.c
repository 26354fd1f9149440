#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"

static int grow(struct shp__extent **v, size_t *cap, size_t need)
{
	struct shp__extent *n;
	size_t ncap;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	n = realloc(*v, ncap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	*v = n;
	*cap = ncap;
	return 0;
}

static void insert_at(struct shp__extent *v, size_t *n, size_t at,
                      struct shp__extent e)
{
	memmove(&v[at + 1], &v[at], (*n - at) * sizeof(*v));
	v[at] = e;
	(*n)++;
}

static void remove_at(struct shp__extent *v, size_t *n, size_t at)
{
	memmove(&v[at], &v[at + 1], (*n - at - 1) * sizeof(*v));
	(*n)--;
}

/* First index whose offset is >= off. */
static size_t lower_bound(const struct shp__extent *v, size_t n, size_t off)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid].off < off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int shp__arena_init(struct shp__arena *a, void *base, size_t size)
{
	memset(a, 0, sizeof(*a));
	a->base = base;
	a->size = size;
	if (grow(&a->free, &a->capfree, 1))
		return -ENOMEM;
	a->free[0] = (struct shp__extent){ 0, size };
	a->nfree = size ? 1 : 0;
	return 0;
}

void shp__arena_fini(struct shp__arena *a)
{
	free(a->free);
	free(a->used);
	memset(a, 0, sizeof(*a));
}

void *shp__arena_alloc(struct shp__arena *a, size_t size)
{
	size_t len;

	if (size == 0 || size > SIZE_MAX - SHP_ARENA_ALIGN)
		return NULL;
	len = (size + SHP_ARENA_ALIGN - 1) & ~(size_t)(SHP_ARENA_ALIGN - 1);
	for (size_t i = 0; i < a->nfree; i++) {
		struct shp__extent *f = &a->free[i];
		struct shp__extent u;

		if (f->len < len)
			continue;
		/* Room for the used entry first, so failure changes nothing. */
		if (grow(&a->used, &a->capused, a->nused + 1))
			return NULL;
		u = (struct shp__extent){ f->off, len };
		f->off += len;
		f->len -= len;
		if (f->len == 0)
			remove_at(a->free, &a->nfree, i);
		insert_at(a->used, &a->nused, lower_bound(a->used, a->nused, u.off),
		          u);
		return a->base + u.off;
	}
	return NULL;
}

int shp__arena_free(struct shp__arena *a, void *p)
{
	size_t off, i, j;
	struct shp__extent e;

	if (!shp__arena_contains(a, p, 1))
		return -EINVAL;
	off = (size_t)((char *)p - a->base);
	i = lower_bound(a->used, a->nused, off);
	if (i == a->nused || a->used[i].off != off)
		return -EINVAL;
	/* Coalescing can need one more free entry (no neighbour to merge). */
	if (grow(&a->free, &a->capfree, a->nfree + 1))
		return -ENOMEM;
	e = a->used[i];
	remove_at(a->used, &a->nused, i);
	j = lower_bound(a->free, a->nfree, e.off);
	if (j > 0 && a->free[j - 1].off + a->free[j - 1].len == e.off) {
		a->free[j - 1].len += e.len;
		if (j < a->nfree && e.off + e.len == a->free[j].off) {
			a->free[j - 1].len += a->free[j].len;
			remove_at(a->free, &a->nfree, j);
		}
	} else if (j < a->nfree && e.off + e.len == a->free[j].off) {
		a->free[j].off = e.off;
		a->free[j].len += e.len;
	} else {
		insert_at(a->free, &a->nfree, j, e);
	}
	return 0;
}

int shp__arena_contains(const struct shp__arena *a, const void *p, size_t len)
{
	uintptr_t b = (uintptr_t)a->base, x = (uintptr_t)p;

	return x >= b && x - b <= a->size && len <= a->size - (x - b) && p;
}
