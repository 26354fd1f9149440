/* Pool life cycle and the arena API. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pool.h"

#define DEFAULT_CELLS 1024u
#define DEFAULT_ARENA (64u << 20)
#define DEFAULT_SPIN_US 50
#define BOOT_TIMEOUT_NS 10000000000ll
#define REAP_GRACE_NS 2000000000ll

static uint32_t round_pow2(uint32_t v)
{
	uint32_t p = 1;

	while (p < v)
		p <<= 1;
	return p;
}

/* CPUs this process may run on: a container's cpuset, not the host's. */
static unsigned usable_cpus(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static int resolve_options(const struct shp_pool_options *opt,
                           struct shp__layout *l, struct shp_pool *pool)
{
	struct shp_pool_options o = { 0 };

	if (opt)
		o = *opt;
	if (o.workers == 0) {
		o.workers = usable_cpus();
		if (o.workers > SHP_MAX_WORKERS)
			o.workers = SHP_MAX_WORKERS;
	}
	if (o.workers > SHP_MAX_WORKERS || o.queue_cells > SHP_MAX_CELLS)
		return -EINVAL;
	if (o.spin_us > 1000000)
		return -EINVAL;
	l->nworkers = o.workers;
	l->ncells = round_pow2(o.queue_cells ? o.queue_cells : DEFAULT_CELLS);
	if (l->ncells < 2)
		l->ncells = 2;
	l->arena_size = o.arena_bytes ? o.arena_bytes : DEFAULT_ARENA;
	pool->nworkers = o.workers;
	pool->max_tasks_per_worker = o.max_tasks_per_worker;
	pool->initializer = o.initializer;
	pool->initializer_arg = o.initializer_arg;
	pool->spin_ns = o.spin_us == 0 ? DEFAULT_SPIN_US * 1000ll
	                               : (int64_t)o.spin_us * 1000;
	return 0;
}

static void wire(struct shp_pool *pool, void *base, const struct shp__layout *l)
{
	char *b = base;

	pool->base = base;
	pool->map_size = l->total_size;
	pool->hdr = base;
	pool->workers = (void *)(b + l->workers_off);
	pool->calls = (void *)(b + l->calls_off);
	pool->slots = (void *)(b + l->slots_off);
	pool->ring = (void *)(b + l->ring_off);
	pool->arena_base = b + l->arena_off;
	pool->arena_size = l->arena_size;
}

/* Waits for the supervisor's boot word: 1, or its negative errno. */
static int wait_boot(struct shp_pool *pool)
{
	struct shp__header *h = pool->hdr;
	int64_t deadline = shp__now_ns() + BOOT_TIMEOUT_NS;

	for (;;) {
		uint32_t key = shp__ec_prepare(&h->boot_ec); /* E1 */
		int32_t boot = SHP_LOAD(h->boot);

		if (boot != 0) {
			cmm_smp_mb(); /* pairs with B1 */
			return boot > 0 ? 0 : boot;
		}
		if (!shp__supervisor_alive(pool))
			return -EAGAIN;
		if (shp__now_ns() > deadline)
			return -ETIMEDOUT;
		shp__ec_wait(&h->boot_ec, key, shp__now_ns() + 50000000);
	}
}

static void reap_supervisor(struct shp_pool *pool, bool force)
{
	int64_t deadline = shp__now_ns() + REAP_GRACE_NS;
	int st;

	if (pool->zygote_status >= 0)
		return;
	kill(pool->zygote, SIGTERM);
	for (;;) {
		pid_t r = waitpid(pool->zygote, &st, force ? WNOHANG : 0);

		if (r == pool->zygote) {
			pool->zygote_status = st;
			return;
		}
		if (r < 0 && errno != EINTR) {
			pool->zygote_status = 0; /* reaped by someone else */
			return;
		}
		if (r == 0) {
			if (shp__now_ns() > deadline) {
				/* The workers die with it (PDEATHSIG). */
				kill(pool->zygote, SIGKILL);
				force = false;
			} else {
				struct timespec ts = { 0, 1000000 };

				nanosleep(&ts, NULL);
			}
		}
	}
}

bool shp__supervisor_alive(struct shp_pool *pool)
{
	int st;
	pid_t r;

	if (pool->zygote_status >= 0)
		return false;
	r = waitpid(pool->zygote, &st, WNOHANG);
	if (r == 0)
		return true;
	pool->zygote_status = r == pool->zygote ? st : 0;
	return false;
}

void shp__wake_workers(struct shp_pool *pool)
{
	cmm_smp_mb(); /* N1: the enqueued cells before the sleeper check */
	shp__ec_notify(&pool->hdr->work_ec);
}

int shp_pool_create(shp_pool **out, const struct shp_pool_options *opt)
{
	struct shp__layout l = { 0 };
	struct shp_pool *pool;
	pthread_condattr_t ca;
	sigset_t all;
	void *base;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	err = resolve_options(opt, &l, pool);
	if (!err)
		err = shp__layout_compute(&l);
	if (err)
		goto fail_free;
	pool->zy_pending = calloc(2 * (size_t)pool->nworkers,
	                          sizeof(*pool->zy_pending));
	if (!pool->zy_pending) {
		err = -ENOMEM;
		goto fail_free;
	}
	err = shp__segment_map(l.total_size, &base);
	if (err)
		goto fail_free;
	shp__segment_init(base, &l);
	wire(pool, base, &l);
	/* Before any fork, so that every process of the pool has it so. */
	err = shp__ring_seal(pool->ring);
	if (err)
		goto fail_unmap;
	err = shp__arena_init(&pool->arena, pool->arena_base, pool->arena_size);
	if (err)
		goto fail_unmap;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->async_cond, &ca);
	pthread_condattr_destroy(&ca);
	pool->phase = SHP_PHASE_OPEN;
	pool->zygote_status = -1;
	pool->next_ticket = 1; /* ticket 0 would match a fresh slot's tag */
	pool->caller = getpid();

	/* Block everything around fork so that the supervisor starts with no
	 * signal handler of the caller's running in it; the workers get the
	 * caller's mask back. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &pool->caller_mask);
	pool->zygote = fork();
	if (pool->zygote == 0) {
		pool->zygote = getpid();
		/* Polled, not PR_SET_PDEATHSIG: that fires when the *thread*
		 * that forked us exits, which in a threaded caller is not the
		 * caller's death. */
		shp__supervisor_main(pool);
	}
	err = pool->zygote < 0 ? -errno : 0;
	pthread_sigmask(SIG_SETMASK, &pool->caller_mask, NULL);
	if (err)
		goto fail_arena;
	err = wait_boot(pool);
	if (err) {
		SHP_STORE(pool->hdr->state, SHP_STATE_KILL);
		reap_supervisor(pool, true);
		goto fail_arena;
	}
	*out = pool;
	return 0;

fail_arena:
	pthread_cond_destroy(&pool->async_cond);
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	shp__arena_fini(&pool->arena);
fail_unmap:
	munmap(base, l.total_size);
fail_free:
	free(pool->zy_pending);
	free(pool);
	return err;
}

int shp_pool_close(shp_pool *pool)
{
	if (!pool)
		return -EINVAL;
	pthread_mutex_lock(&pool->lock);
	if (pool->phase == SHP_PHASE_OPEN)
		SHP_STORE(pool->phase, SHP_PHASE_CLOSED);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

/* Tells the supervisor the pool state changed, and waits for it to exit. */
static void stop(struct shp_pool *pool, enum shp__pool_state how)
{
	SHP_STORE(pool->hdr->state, how);
	cmm_smp_mb(); /* N1: the state before the sleeper check */
	shp__ec_notify(&pool->hdr->work_ec);
	for (unsigned i = 0; i < SHP_NCALLS; i++)
		shp__ec_notify(&pool->calls[i].ec);
	shp__kick_handler(pool);
	reap_supervisor(pool, how == SHP_STATE_KILL);
}

int shp_pool_join(shp_pool *pool)
{
	int err = 0;

	if (!pool)
		return -EINVAL;
	if (shp__in_handler(pool))
		return -EDEADLK;
	pthread_mutex_lock(&pool->lock);
	if (pool->phase == SHP_PHASE_OPEN) {
		pthread_mutex_unlock(&pool->lock);
		return -EINVAL;
	}
	/* Asynchronous calls queued before close still run. */
	while (pool->active_calls || pool->async_pending)
		pthread_cond_wait(&pool->cond, &pool->lock);
	if (pool->phase == SHP_PHASE_CLOSED) {
		stop(pool, SHP_STATE_EXIT);
		SHP_STORE(pool->phase, SHP_PHASE_JOINED);
	} else if (pool->phase == SHP_PHASE_CORRUPT) {
		/* Its ring cannot be drained: stop it as terminate does. */
		stop(pool, SHP_STATE_KILL);
	}
	if (pool->phase == SHP_PHASE_CORRUPT)
		err = SHP_ECORRUPT;
	else if (pool->phase == SHP_PHASE_BROKEN ||
	         (pool->zygote_status > 0 && pool->phase != SHP_PHASE_TERMINATED))
		err = SHP_EBROKEN;
	pthread_mutex_unlock(&pool->lock);
	shp__handler_stop(pool);
	return err;
}

int shp_pool_terminate(shp_pool *pool)
{
	if (!pool)
		return -EINVAL;
	if (shp__in_handler(pool))
		return -EDEADLK;
	pthread_mutex_lock(&pool->lock);
	if (pool->phase != SHP_PHASE_JOINED &&
	    pool->phase != SHP_PHASE_TERMINATED) {
		/* A broken or corrupt pool stays so: join and later calls
		 * keep saying why it stopped. */
		if (pool->phase != SHP_PHASE_BROKEN &&
		    pool->phase != SHP_PHASE_CORRUPT)
			SHP_STORE(pool->phase, SHP_PHASE_TERMINATED);
		pthread_mutex_unlock(&pool->lock);
		stop(pool, SHP_STATE_KILL);
		pthread_mutex_lock(&pool->lock);
		pthread_cond_broadcast(&pool->cond);
		/* The result thread fails its calls (their error callbacks
		 * run) and the queued ones. */
		while (pool->active_calls || pool->async_pending)
			pthread_cond_wait(&pool->cond, &pool->lock);
	}
	pthread_mutex_unlock(&pool->lock);
	shp__handler_stop(pool);
	return 0;
}

void shp_pool_destroy(shp_pool *pool)
{
	/* From a callback it would free what the result thread is using:
	 * forbidden (documented), and refused rather than done. */
	if (!pool || shp__in_handler(pool))
		return;
	shp_pool_terminate(pool);
	munmap(pool->base, pool->map_size);
	shp__arena_fini(&pool->arena);
	pthread_cond_destroy(&pool->async_cond);
	pthread_cond_destroy(&pool->cond);
	pthread_mutex_destroy(&pool->lock);
	free(pool->zy_pending);
	free(pool);
}

void *shp_alloc(shp_pool *pool, size_t size)
{
	void *p;

	if (!pool || size == 0) {
		errno = EINVAL;
		return NULL;
	}
	pthread_mutex_lock(&pool->lock);
	p = shp__arena_alloc(&pool->arena, size);
	pthread_mutex_unlock(&pool->lock);
	if (!p)
		errno = ENOMEM;
	return p;
}

void shp_free(shp_pool *pool, void *p)
{
	if (!pool || !p)
		return;
	pthread_mutex_lock(&pool->lock);
	if (shp__arena_free(&pool->arena, p) == 0)
		pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
}
