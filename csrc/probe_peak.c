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
 * Three traps in the compiler. Every chain must start from a different value, or it may
 * notice the chains are identical and compute one; and from values it cannot see, or it may
 * work out what the chains compute (tests/test_machine.py counts the distinct FMA
 * destination registers in the assembly). The results must be used, or it may delete them.
 *
 * A peak is the rate of all cores at once at the clock they hold under a long vector
 * load, which is lower than the clock of one busy core: so every thread first runs a warm-up
 * (the clock settles, an AVX-512 licence is taken), then all start each timed run together
 * behind a barrier; each thread times its share by its own CPU time, and the rates add up.
 *
 * The clock is measured without trusting /proc/cpuinfo (a guest sees the host's nominal
 * MHz): a chain of dependent register-to-register integer adds runs one add per cycle on
 * every x86-64 and AArch64 core, so adds per second is cycles per second. (Not adds of an
 * immediate: Intel's cores since Golden Cove fold `add $1, reg` chains in the renamer and
 * run several per cycle, which read as a 14-22 GHz clock. Check a probe by its pipe count:
 * `python build.py` and `python -m krypton.bench` print it, a whole number.) The FMA chains keep
 * running beside it, at a lower density, so the clock read is the one a vector load holds.
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

/* Defining KR_PROBE_CHAINS (macros={"KR_PROBE_CHAINS": n}) measures another count. */
#ifndef KR_PROBE_CHAINS
#  define KR_PROBE_CHAINS (KR_VREGS * 3 / 4)
#endif

/* Dependent integer adds per pass of the clock loop: more cycles than the pass's FMAs take
 * on one pipe, so the add chain, not the FMAs, sets the pace. */
#define KR_CLOCK_ADDS 64

#define KR_ADD8(insn) insn insn insn insn insn insn insn insn
#if defined(__x86_64__)
#  define KR_ADDS_64 KR_ADD8(KR_ADD8("add %1, %0\n\t"))
#  define KR_HAS_CLOCK 1
#elif defined(__aarch64__)
#  define KR_ADDS_64 KR_ADD8(KR_ADD8("add %0, %0, %1\n\t"))
#  define KR_HAS_CLOCK 1
#else
#  define KR_HAS_CLOCK 0
#endif

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

/* 1, read at run time: operands the compiler knows let it fold the chains away (clang sees
 * that x * y + 2 rounds back to 2 in float32, so chains that start at 2 or more never change,
 * and computes one chain instead of 24). */
static volatile float kr_probe_one = 1.0f;

/* ``iterations`` passes of every chain; with ``clock`` also KR_CLOCK_ADDS dependent integer
 * adds per pass (a volatile asm: the compiler keeps it although its sum is not used). */
static void kr_probe_loop(int64_t iterations, int clock)
{
    kr_vec acc[KR_PROBE_CHAINS];
    const float one = kr_probe_one;
    const kr_vec x = kr_set1(0.999999f * one), y = kr_set1(1e-7f * one);
    uint64_t adds = 0;
    const uint64_t increment = (uint64_t)one;   /* 1 in a register: the adds take no immediate */
#pragma GCC unroll 32
    for (int c = 0; c < KR_PROBE_CHAINS; ++c)
        acc[c] = kr_set1((float)(c + 1) * one);   /* distinct starts: distinct chains */
    for (int64_t it = 0; it < iterations; ++it) {
#pragma GCC unroll 32
        for (int c = 0; c < KR_PROBE_CHAINS; ++c)
            acc[c] = kr_probe_step(acc[c], x, y);
#if KR_HAS_CLOCK
        if (clock)
            __asm__ volatile(KR_ADDS_64 : "+r"(adds) : "r"(increment));
#endif
    }
    float lanes[KR_VLEN];
    kr_vec total = acc[0];
    for (int c = 1; c < KR_PROBE_CHAINS; ++c)
        total = kr_add(total, acc[c]);
    kr_store(lanes, total);
    volatile float sink = lanes[0];
    (void)sink;
    (void)adds;
    (void)increment;
}

/* The threads the probe really runs when asked for `threads`: without OpenMP, one (Python's
 * machine.peak reports the peak of that many cores, not of the number asked for). */
int64_t kr_probe_threads(int64_t threads)
{
#ifdef _OPENMP
    return threads > 0 ? threads : 1;
#else
    (void)threads;
    return 1;
#endif
}

/* The seconds this thread has run on a CPU (not the time other processes had its core). */
static double kr_thread_cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* One run of ``iterations`` passes on every thread of the team, started together behind a
 * barrier; must be called by every thread. Returns (on every thread) the sum over the threads
 * of each one's passes per second of its own CPU time. CPU time, not wall time: on a shared
 * machine a thread another process pushes off its core for a while would read as a slow
 * core, and a run of two threads on two busy cores is almost never left alone; a core's
 * rate while it runs, with the other cores running the same load, is what bounds a kernel. */
static double kr_probe_rate_together(int64_t iterations, int clock)
{
    static double sum;   /* shared by the team */
#ifdef _OPENMP
#pragma omp barrier
#pragma omp master
    sum = 0.0;
#pragma omp barrier
#endif
    const double start = kr_thread_cpu_now();
    kr_probe_loop(iterations, clock);
    const double took = kr_thread_cpu_now() - start;
    const double mine = took > 0 ? (double)iterations / took : 0.0;
#ifdef _OPENMP
#pragma omp atomic
    sum += mine;
#pragma omp barrier
#else
    sum = mine;
#endif
    return sum;
}

/* Warm up for ``warmup`` passes, then ``repeats`` times: an FMA run of ``fma_iterations``
 * passes, and a clock run of ``clock_iterations`` passes (none when 0), on all threads at
 * once. Many short runs back to back, not one long one: a run no other process interrupted
 * is likelier to be among them; and the two kinds alternate, so both see the cores in the
 * same state. Writes the fastest FMA run (flops per second, all threads together) and the
 * fastest clock run (Hz, the mean of the threads; 0 without a clock probe); returns the
 * flops of one FMA run. */
double kr_probe_peak(int64_t warmup, int64_t fma_iterations, int64_t clock_iterations,
                     int64_t threads, int64_t repeats, double *flops_per_second,
                     double *clock_hz)
{
    const double flops_per_pass = 2.0 * KR_VLEN * KR_PROBE_CHAINS;
    double best_rate = 0.0, best_hz = 0.0;
    threads = kr_probe_threads(threads);
#ifdef _OPENMP
#pragma omp parallel num_threads((int)threads)
#endif
    {
        kr_probe_loop(warmup, 0);
        for (int64_t r = 0; r < repeats; ++r) {
            const double rate = flops_per_pass * kr_probe_rate_together(fma_iterations, 0);
            const double hz = clock_iterations > 0 && KR_HAS_CLOCK
                ? KR_CLOCK_ADDS * kr_probe_rate_together(clock_iterations, 1) / (double)threads
                : 0.0;
#ifdef _OPENMP
#pragma omp master
#endif
            {
                best_rate = rate > best_rate ? rate : best_rate;
                best_hz = hz > best_hz ? hz : best_hz;
            }
        }
    }
    *flops_per_second = best_rate;
    *clock_hz = best_hz;
    return flops_per_pass * (double)fma_iterations * (double)threads;
}

double kr_probe_fma(int64_t iterations, int64_t threads)
{
    double rate, hz;
    return kr_probe_peak(0, iterations, 0, threads, 1, &rate, &hz);
}

/* Integer adds (cycles) in one pass of the clock run; 0 where there is no clock probe. */
int64_t kr_probe_clock_adds(void) { return KR_HAS_CLOCK ? KR_CLOCK_ADDS : 0; }

int64_t kr_probe_vector_width(void) { return KR_VLEN; }

int64_t kr_probe_chains(void) { return KR_PROBE_CHAINS; }
