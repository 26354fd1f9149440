#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "segment.h"

#define ALIGN_UP(x, a) (((x) + (a)-1) & ~((uint64_t)(a)-1))

static int add_region(uint64_t *off, uint64_t *cursor, uint64_t bytes,
                      uint64_t align)
{
	uint64_t at = ALIGN_UP(*cursor, align);

	if (at < *cursor || at + bytes < at)
		return -EOVERFLOW;
	*off = at;
	*cursor = at + bytes;
	return 0;
}

int shp__layout_compute(struct shp__layout *l)
{
	uint64_t cur = sizeof(struct shp__header);
	int err;

	err = add_region(&l->workers_off, &cur,
	                 (uint64_t)l->nworkers * sizeof(struct shp__worker),
	                 SHP_CACHELINE);
	if (!err)
		err = add_region(&l->calls_off, &cur,
		                 SHP_NCALLS * sizeof(struct shp__call),
		                 SHP_CACHELINE);
	if (!err)
		err = add_region(&l->slots_off, &cur,
		                 SHP_NSLOTS * sizeof(struct shp__slot),
		                 SHP_CACHELINE);
	/* On a page of its own: its geometry page is sealed read-only. */
	if (!err)
		err = add_region(&l->ring_off, &cur, shp__ring_bytes(l->ncells),
		                 SHP_RING_CONST_BYTES);
	/* The arena starts on a page so that big shp_alloc() blocks do. */
	if (!err)
		err = add_region(&l->arena_off, &cur, l->arena_size, 4096);
	if (err)
		return err;
	l->total_size = ALIGN_UP(cur, 4096);
	if (l->total_size < cur || l->total_size > (uint64_t)SIZE_MAX)
		return -EOVERFLOW;
	return 0;
}

int shp__segment_map(uint64_t size, void **base)
{
	char name[64];
	struct timespec ts;
	int fd = -1, err;
	void *p;

	/* A random name, created exclusively: collisions retry, nothing is
	 * ever opened that somebody else made. */
	for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		/* At most 46 bytes: never cut. */
		(void)snprintf(name, sizeof(name), "/shmpool-%d-%lx-%x",
		               (int)getpid(),
		               (unsigned long)ts.tv_nsec ^ (unsigned long)ts.tv_sec,
		               (unsigned)attempt);
		fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			return -errno;
	}
	if (fd < 0)
		return -EEXIST;
	/* Gone from the namespace at once; the fd and the mapping keep it. */
	shm_unlink(name);
	if (ftruncate(fd, (off_t)size) < 0) {
		err = -errno;
		goto fail;
	}
	/* Reserve the storage now, so that a small /dev/shm fails here with
	 * ENOSPC rather than with a SIGBUS on first touch, in some worker. */
	err = -posix_fallocate(fd, 0, (off_t)size);
	if (err == -EFBIG)
		err = -ENOSPC;
	if (err)
		goto fail;
	p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	close(fd);
	*base = p;
	return 0;
fail:
	close(fd);
	return err;
}

void shp__segment_init(void *base, const struct shp__layout *l)
{
	struct shp__header *h = base;
	struct shp__worker *w = (void *)((char *)base + l->workers_off);

	/* The object is fresh from ftruncate, hence zero: only what is not
	 * zero is written. */
	h->magic = SHP_MAGIC;
	h->layout_version = SHP_LAYOUT_VERSION;
	h->header_size = sizeof(*h);
	h->total_size = l->total_size;
	h->nworkers = l->nworkers;
	h->ncalls = SHP_NCALLS;
	h->nslots = SHP_NSLOTS;
	h->ncells = l->ncells;
	h->workers_off = l->workers_off;
	h->calls_off = l->calls_off;
	h->slots_off = l->slots_off;
	h->ring_off = l->ring_off;
	h->arena_off = l->arena_off;
	h->arena_size = l->arena_size;
	for (uint32_t i = 0; i < l->nworkers; i++)
		w[i].claim.pos = SHP_CLAIM_NONE;
	shp__ring_init((void *)((char *)base + l->ring_off), l->ncells);
}
