/*
 * What the libFuzzer harnesses share: reading typed values off the fuzzer's
 * bytes, and a check that stops the run with a message. make fuzz builds
 * every tests/fuzz/fuzz_*.c listed in FUZZ_HARNESSES, with the library's
 * sources, by clang with -fsanitize=fuzzer,address,undefined.
 */
#ifndef SHP_FUZZ_H
#define SHP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fuzzer's input, consumed front to back; zeros once it runs out, so
 * that every input is a whole program. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static inline uint64_t fuzz_bytes(struct fuzz_in *in, size_t k)
{
	uint64_t v = 0;

	for (size_t i = 0; i < k && i < sizeof(v); i++) {
		if (in->n == 0)
			break;
		v |= (uint64_t)in->p[0] << (8 * i);
		in->p++;
		in->n--;
	}
	return v;
}

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	return (uint8_t)fuzz_bytes(in, 1);
}

static inline uint32_t fuzz_u32(struct fuzz_in *in)
{
	return (uint32_t)fuzz_bytes(in, 4);
}

static inline uint64_t fuzz_u64(struct fuzz_in *in)
{
	return fuzz_bytes(in, 8);
}

/* A value below bound (> 0). */
static inline uint32_t fuzz_below(struct fuzz_in *in, uint32_t bound)
{
	return fuzz_u32(in) % bound;
}

/* A choice below bound (1 to 256) from one byte: choices need not cost
 * an input four bytes each. */
static inline uint32_t fuzz_pick(struct fuzz_in *in, uint32_t bound)
{
	return fuzz_u8(in) % bound;
}

#define FUZZ_MAX_WAIT_NS 1000000 /* the longest short timeout: 1 ms */

enum { FUZZ_T_ZERO, FUZZ_T_SHORT, FUZZ_T_FOREVER };

/* Timeouts: negative (forever), 0 (never wait), short (mostly a few µs,
 * some up to FUZZ_MAX_WAIT_NS), INT64_MAX and around (as good as
 * forever); *kind says which. */
static inline int64_t fuzz_timeout(struct fuzz_in *in, int *kind)
{
	switch (fuzz_pick(in, 6)) {
	case 0:
		*kind = FUZZ_T_FOREVER;
		return -1 - (int64_t)fuzz_below(in, 1000);
	case 1:
		*kind = FUZZ_T_FOREVER;
		return INT64_MIN + (int64_t)fuzz_below(in, 1000);
	case 2:
		*kind = FUZZ_T_FOREVER;
		return INT64_MAX - (int64_t)fuzz_below(in, 1000);
	case 3:
		*kind = FUZZ_T_ZERO;
		return 0;
	default:
		*kind = FUZZ_T_SHORT;
		return 1 + (int64_t)fuzz_below(in, fuzz_u8(in) < 32 ? FUZZ_MAX_WAIT_NS
		                                                   : 20000);
	}
}

static inline int fuzz_done(const struct fuzz_in *in)
{
	return in->n == 0;
}

/*
 * The harness's own assertion: a finding is an abort with the line and the
 * values, which libFuzzer reports with the input that caused it. Never in
 * the library, which must not abort.
 */
#define FUZZ_CHECK(cond, ...)                                                  \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, \
			        __LINE__, #cond);                              \
			fprintf(stderr, __VA_ARGS__);                          \
			fputc('\n', stderr);                                   \
			abort();                                               \
		}                                                              \
	} while (0)

#endif
