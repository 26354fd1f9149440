/*
 * Ordering helpers on top of liburcu.
 *
 * liburcu 0.13 offers full barriers (cmm_smp_mb), store-store (cmm_smp_wmb)
 * and load-load (cmm_smp_rmb) barriers, but no acquire or release. A release
 * must order earlier loads *and* stores before the store that publishes; an
 * acquire must order the load that observes before later loads *and* stores.
 * On x86 (TSO) the hardware already gives both, so a compiler barrier is
 * enough; elsewhere we fall back to the full barrier rather than guess at
 * what cmm_smp_rmb/wmb cover on each architecture.
 *
 * Every use names its partner in a comment: "R1 pairs with A1".
 */
#ifndef SHP_ATOMIC_H
#define SHP_ATOMIC_H

#include <urcu/arch.h>
#include <urcu/compiler.h>
#include <urcu/uatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#define shp__smp_release() cmm_barrier()
#define shp__smp_acquire() cmm_barrier()
#else
#define shp__smp_release() cmm_smp_mb()
#define shp__smp_acquire() cmm_smp_mb()
#endif

/* Relaxed accesses to words other processes change. */
#define SHP_LOAD(x) CMM_LOAD_SHARED(x)
#define SHP_STORE(x, v) CMM_STORE_SHARED(x, v)

#define SHP_CACHELINE 64
#define SHP_ALIGNED __attribute__((aligned(SHP_CACHELINE)))

#define shp__likely(x) caa_likely(x)
#define shp__unlikely(x) caa_unlikely(x)

#endif
