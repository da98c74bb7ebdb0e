/* probe_peak.c: how many floating-point operations per second can this machine do at most,
 * and at what clock?
 *
 * A core reaches its peak only when every FMA pipe starts a new fused multiply-add every
 * cycle. One chain of FMAs cannot do that: each FMA needs the previous result, so the chain
 * runs at one FMA per latency (about 4 cycles). With KR_PROBE_CHAINS independent chains the
 * pipes can overlap them: chains >= latency x pipes keeps every pipe busy. Two pipes of
 * latency 4 need 8; the probe uses three quarters of the vector registers (24 of 32, 12 of
 * 16), leaving room for the two operands, so a pipe more or a cycle more of latency than
 * expected is still covered.
 *
 * Three traps. Every chain must start from a different value, or the compiler may notice the
 * chains are identical and compute one (tests/test_machine.py counts the distinct FMA
 * destination registers in the assembly). The results must be used, or it may delete them.
 * And a peak is the rate of all cores at once at the clock they hold under a long vector
 * load, which is lower than the clock of one busy core: so every thread runs a warm-up as
 * long as the timed run (the clock settles, an AVX-512 licence is taken), all start the timed
 * run together behind a barrier, and the run is timed from the first start to the last end.
 *
 * The clock is measured without trusting /proc/cpuinfo (a guest sees the host's nominal
 * MHz): a chain of dependent integer adds runs one add per cycle on every x86-64 and AArch64
 * core, so adds per second is cycles per second. The FMA chains keep running beside it, at
 * a lower density, so the clock read is the one a vector load holds.
 *
 * The probe uses the vector width of the ISA kr_simd.h selects, so forcing AVX2 measures the
 * AVX2 peak.
 */
#include <time.h>
#include "krypton.h"
#include "kr_simd.h"
#ifdef _OPENMP
#  include <omp.h>
#endif

#define KR_PROBE_CHAINS (KR_VREGS * 3 / 4)

/* Dependent integer adds per pass of the clock loop: more cycles than the pass's FMAs take
 * on one pipe, so the add chain, not the FMAs, sets the pace. */
#define KR_CLOCK_ADDS 64

#define KR_ADD8(insn) insn insn insn insn insn insn insn insn
#if defined(__x86_64__)
#  define KR_ADDS_64 KR_ADD8(KR_ADD8("add $1, %0\n\t"))
#  define KR_HAS_CLOCK 1
#elif defined(__aarch64__)
#  define KR_ADDS_64 KR_ADD8(KR_ADD8("add %0, %0, #1\n\t"))
#  define KR_HAS_CLOCK 1
#else
#  define KR_HAS_CLOCK 0
#endif

static double kr_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One step of a chain. Vector ISAs accumulate into it (acc += x * y), the form an FMA
 * instruction takes natively on every ISA (AArch64's FMLA has no other: acc * x + y would
 * cost a register copy per FMA). Plain C does acc * x + y: in acc + x * y the compiler would
 * hoist the loop-invariant x * y and time additions. */
static inline kr_vec kr_probe_step(kr_vec acc, kr_vec x, kr_vec y)
{
#if KR_ISA == KR_ISA_SCALAR
    return kr_fma(acc, x, y);
#else
    return kr_fma(x, y, acc);
#endif
}

/* ``iterations`` passes of every chain; with ``clock`` also KR_CLOCK_ADDS dependent integer
 * adds per pass. Returns the adds done (0 without ``clock``). */
static int64_t kr_probe_loop(int64_t iterations, int clock)
{
    kr_vec acc[KR_PROBE_CHAINS];
    const kr_vec x = kr_set1(0.999999f), y = kr_set1(1e-7f);
    uint64_t adds = 0;
#pragma GCC unroll 32
    for (int c = 0; c < KR_PROBE_CHAINS; ++c)
        acc[c] = kr_set1((float)(c + 1));   /* distinct starts: distinct chains */
    for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 32
        for (int c = 0; c < KR_PROBE_CHAINS; ++c)
            acc[c] = kr_probe_step(acc[c], x, y);
#if KR_HAS_CLOCK
        if (clock)
            __asm__ volatile(KR_ADDS_64 : "+r"(adds));
#endif
    }
    float lanes[KR_VLEN];
    kr_vec total = acc[0];
    for (int c = 1; c < KR_PROBE_CHAINS; ++c)
        total = kr_add(total, acc[c]);
    kr_store(lanes, total);
    volatile float sink = lanes[0];
    (void)sink;
    return (int64_t)adds;
}

/* Warm up, then time one run on ``threads`` threads started together; writes the seconds
 * of the run to *seconds and returns the adds of the clock chain (summed over threads). */
static int64_t kr_probe_together(int64_t iterations, int64_t threads, int clock,
                                 double *seconds)
{
    int64_t adds = 0;
    double start = 0.0, end = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads((int)(threads > 0 ? threads : 1)) reduction(+:adds)
    {
        kr_probe_loop(iterations, clock);
#pragma omp barrier
#pragma omp master
        start = kr_now();
#pragma omp barrier
        adds += kr_probe_loop(iterations, clock);
#pragma omp barrier
#pragma omp master
        end = kr_now();
    }
#else
    (void)threads;
    kr_probe_loop(iterations, clock);
    start = kr_now();
    adds = kr_probe_loop(iterations, clock);
    end = kr_now();
#endif
    *seconds = end - start;
    return adds;
}

double kr_probe_fma(int64_t iterations, int64_t threads)
{
    double seconds;
    kr_probe_together(iterations, threads, 0, &seconds);
    return 2.0 * KR_VLEN * KR_PROBE_CHAINS * (double)iterations * (double)(threads > 0 ? threads : 1);
}

double kr_probe_fma_timed(int64_t iterations, int64_t threads, double *seconds)
{
#ifndef _OPENMP
    threads = 1;
#endif
    kr_probe_together(iterations, threads, 0, seconds);
    return 2.0 * KR_VLEN * KR_PROBE_CHAINS * (double)iterations * (double)threads;
}

double kr_probe_clock_hz(int64_t iterations, int64_t threads)
{
#ifndef _OPENMP
    threads = 1;
#endif
    double seconds;
    const int64_t adds = kr_probe_together(iterations, threads, KR_HAS_CLOCK, &seconds);
    return KR_HAS_CLOCK && seconds > 0 ? (double)adds / (double)threads / seconds : 0.0;
}

int64_t kr_probe_vector_width(void) { return KR_VLEN; }

int64_t kr_probe_chains(void) { return KR_PROBE_CHAINS; }
