/* kr_common.h: the small helpers the blocked rungs (packed, parallel, small) share.
 *
 * Integer arithmetic on sizes, the one aligned allocation every buffer goes through, and the
 * empty product. */
#ifndef KR_COMMON_H
#define KR_COMMON_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KR_ALIGN 64   /* one cache line: buffers start on a line, vector loads never split one */

/* Unroll the next loop completely. It runs a compile-time constant number of times (rows or
 * vectors of a micro-tile, at most 32), and unrolled, every array it indexes (accumulators,
 * vectors of B, row pointers) becomes a set of named registers; indexed by a variable, those
 * arrays live in memory and every FMA waits on a load and a store. gcc takes a count; clang
 * reads `#pragma GCC unroll 32` too, but where many copies of a loop are inlined into one
 * function (rung 7's edge kernels) it unrolled only some of them. Check:
 * tests/test_codegen.py reads each compiler's machine code for a tile loop off the stack; or
 * time `small` against `packed` built by the same compiler. */
#if defined(__clang__)
#  define KR_UNROLL _Pragma("clang loop unroll(full)")
#else
#  define KR_UNROLL _Pragma("GCC unroll 32")
#endif

/* Unroll the micro-kernel's k loop (a run-time trip count) by a few steps, or not at all. A
 * step is MR x NV FMAs, enough on its own to hide the loop's add and branch, so unrolling buys
 * little; gcc is given 4 steps, as BLIS's kernels unroll by 4. clang, unrolling, loads the
 * broadcasts of A for all the steps of a pass before their FMAs, and where A is read in place
 * or a tile is tall that is more values than registers (on AArch64, whose FMAs cannot take an
 * operand from memory): it kept them on the stack. Check: tests/test_codegen.py; time
 * 10 x 128 x 256 and 784 x 128 x 256 built with clang against `#pragma GCC unroll 4` here. */
#if defined(__clang__)
#  define KR_UNROLL_K _Pragma("clang loop unroll(disable)")
#else
#  define KR_UNROLL_K _Pragma("GCC unroll 4")
#endif

static inline int64_t kr_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t kr_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t kr_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t kr_round_up(int64_t x, int64_t multiple)
{
    return kr_ceil_div(x, multiple) * multiple;
}

/* count floats (at least one) on a cache line of their own; NULL if out of memory. */
static inline float *kr_alloc_floats(int64_t count)
{
    const int64_t per_line = KR_ALIGN / (int64_t)sizeof(float);
    return aligned_alloc(KR_ALIGN, (size_t)kr_round_up(count > 0 ? count : 1, per_line)
                                       * sizeof(float));
}

/* The products with nothing to multiply, which every blocked rung checks first: M or N = 0
 * (C is empty; no buffer is needed) and K = 0 (an empty sum: C = 0, which the loops would
 * never write). Returns 1 when C is done. */
static inline int kr_trivial_product(int64_t M, int64_t N, int64_t K, float *restrict C,
                                     int64_t ldc)
{
    if (M == 0 || N == 0)
        return 1;
    if (K == 0) {
        for (int64_t i = 0; i < M; ++i)
            memset(C + i * ldc, 0, (size_t)N * sizeof(float));
        return 1;
    }
    return 0;
}

#endif
