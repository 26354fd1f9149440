/*
 * Streaming results: shp_imap, shp_imap_unordered, shp_imap_gen.
 *
 * An iterator is a call driven by its reader: each shp_iter_next submits
 * what the window has room for (pulling inputs from the generator, if it
 * has one, only then), and takes one result. Nothing runs further ahead
 * than the window, so memory is constant whatever the number of inputs,
 * and a generator is never asked for more than the window can hold.
 */
#include <errno.h>
#include <stdlib.h>

#include "call.h"

struct shp_iter {
	struct call c;
	struct shp__task batch[SHP_CALL_BATCH];
	void *outbuf; /* the last result's output, out_size bytes */
	int err;      /* sticky: returned by every later shp_iter_next */
};

static int open_iter(struct shp_iter *it, shp_iter **out)
{
	int err = 0;

	it->c.pending = it->batch;
	it->c.batch = SHP_CALL_BATCH;
	if (it->c.out_size) {
		it->outbuf = malloc(it->c.out_size);
		if (!it->outbuf)
			err = -ENOMEM;
	}
	if (!err && it->c.n)
		err = shp__call_begin(&it->c, true);
	if (err) {
		free(it->outbuf);
		free(it);
		return err;
	}
	*out = it;
	return 0;
}

static int imap(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                size_t in_size, size_t n, size_t out_size, size_t chunksize,
                bool unordered, shp_iter **out)
{
	struct shp_call_options o = { .chunksize = chunksize };
	struct shp_iter *it;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	err = shp__call_init(&it->c, pool, fn, ctx, in, in_size, NULL,
	                     out_size, n, NULL, &o, SHP_FORM_ITER);
	if (err) {
		free(it);
		return err;
	}
	it->c.unordered = unordered;
	return open_iter(it, out);
}

int shp_imap(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
             size_t in_size, size_t n, size_t out_size, size_t chunksize,
             shp_iter **it)
{
	return imap(pool, fn, ctx, in, in_size, n, out_size, chunksize, false,
	            it);
}

int shp_imap_unordered(shp_pool *pool, shp_fn fn, void *ctx, const void *in,
                       size_t in_size, size_t n, size_t out_size,
                       size_t chunksize, shp_iter **it)
{
	return imap(pool, fn, ctx, in, in_size, n, out_size, chunksize, true,
	            it);
}

int shp_imap_gen(shp_pool *pool, shp_fn fn, void *ctx, shp_gen_fn gen,
                 void *gen_arg, size_t in_size, size_t out_size,
                 unsigned flags, const struct shp_call_options *opt,
                 shp_iter **out)
{
	struct shp_iter *it;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!gen || (flags & ~SHP_UNORDERED))
		return -EINVAL;
	it = calloc(1, sizeof(*it));
	if (!it)
		return -ENOMEM;
	err = shp__call_init(&it->c, pool, fn, ctx, NULL, in_size, NULL,
	                     out_size, SIZE_MAX, NULL, opt,
	                     SHP_FORM_ITER | SHP_FORM_GEN);
	if (err) {
		free(it);
		return err;
	}
	/* Per-call callbacks and wait statuses belong to array calls. */
	it->c.wstatus = NULL;
	it->c.source = gen;
	it->c.source_arg = gen_arg;
	it->c.unordered = flags & SHP_UNORDERED;
	return open_iter(it, out);
}

int shp_iter_next(shp_iter *it, size_t *index, const void **out, int *status,
                  int64_t timeout_ns)
{
	struct call *c;
	int64_t deadline;

	if (!it)
		return -EINVAL;
	if (it->err)
		return it->err;
	c = &it->c;
	deadline = shp__deadline_ns(timeout_ns);
	for (;;) {
		size_t i;
		int st, r;

		shp__call_submit(c);
		r = shp__call_take(c, &i, it->outbuf, &st);
		if (r == 1) {
			if (index)
				*index = i;
			if (out)
				*out = it->outbuf;
			if (status)
				*status = st;
			return 1;
		}
		if (r == 0 && shp__call_finished(c)) {
			/* Every result taken: the end, or the generator's
			 * error, which came after them. */
			it->err = c->source_err;
			return c->source_err;
		}
		if (r == 0)
			r = shp__call_wait(c, deadline);
		if (r == -ETIMEDOUT)
			return r; /* the iterator goes on */
		if (r < 0) {
			it->err = r;
			return r;
		}
	}
}

void shp_iter_free(shp_iter *it)
{
	struct call *c;

	if (!it)
		return;
	c = &it->c;
	if (c->begun) {
		/* Queued tasks are dropped by the workers; running ones
		 * finish: their slots must not go to another call before. */
		shp__call_cancel(c);
		while (c->nc < c->ns) {
			size_t i;
			int st, r = shp__call_take(c, &i, NULL, &st);

			if (r == 0)
				r = shp__call_wait(c, -1);
			if (r < 0)
				break;
		}
		shp__call_end(c);
	}
	free(it->outbuf);
	free(it);
}
