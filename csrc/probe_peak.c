/* probe_peak.c: how many floating-point operations per second can this machine do at most?
 *
 * A core reaches its peak only when every FMA unit starts a new fused multiply-add every
 * cycle. One chain of FMAs cannot do that: each FMA needs the previous result, so the chain
 * runs at one FMA per latency (about 4 cycles). With KR_PROBE_CHAINS independent chains the
 * units can overlap them: chains >= latency x FMA units keeps every unit busy.
 *
 * Two traps: every chain must start from a different value, or the compiler may notice the
 * chains are identical and compute one; and the results must be used, or it may delete them.
 * The probe uses the vector width of the ISA kr_simd.h selects, so forcing AVX2 measures the
 * AVX2 peak. Returns the number of floating-point operations done (an FMA counts as 2).
 */
#include "krypton.h"
#include "kr_simd.h"
#ifdef _OPENMP
#  include <omp.h>
#endif

#define KR_PROBE_CHAINS 12

static double kr_probe_fma_one_thread(int64_t iterations)
{
    kr_vec acc[KR_PROBE_CHAINS];
    const kr_vec x = kr_set1(0.999999f), y = kr_set1(1e-7f);
#pragma GCC unroll 16
    for (int c = 0; c < KR_PROBE_CHAINS; ++c)
        acc[c] = kr_set1((float)c);
    for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 16
        for (int c = 0; c < KR_PROBE_CHAINS; ++c)
            acc[c] = kr_fma(acc[c], x, y);
    }
    float lanes[KR_VLEN];
    kr_vec total = acc[0];
    for (int c = 1; c < KR_PROBE_CHAINS; ++c)
        total = kr_add(total, acc[c]);
    kr_store(lanes, total);
    volatile float sink = lanes[0];
    (void)sink;
    return 2.0 * KR_VLEN * KR_PROBE_CHAINS * (double)iterations;
}

double kr_probe_fma(int64_t iterations, int64_t threads)
{
    double flops = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads((int)(threads > 0 ? threads : 1)) reduction(+:flops)
    flops += kr_probe_fma_one_thread(iterations);
#else
    (void)threads;
    flops = kr_probe_fma_one_thread(iterations);
#endif
    return flops;
}

int64_t kr_probe_vector_width(void) { return KR_VLEN; }
