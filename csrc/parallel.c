/* Rung 6 - parallel: the five loops of rung 5, with a range of them per thread.
 *
 * Keeps rung 5 (packing, the micro-kernel, the loop order) and adds one idea: each thread asks
 * for its share of the ic and jr loops (kr_thread_range, as BLIS's bli_thread_range_sub), so
 * one loop nest serves 1 or N threads; running it on a team is a separate decorator
 * (kr_fork_join), and so is the guard against fork() (kr_fork_guard.h).
 *
 * - The loops that walk K (pc, and k inside the micro-kernel) are never divided, so every
 *   element of C is summed in the same order whatever the thread count: the result is bitwise
 *   identical for 1, 2 or 64 threads, and to rung 5's.
 * - The work is C's micro-tiles: a threads_m x threads_n grid of ranges of MR-row panels times
 *   ranges of NR-column panels, chosen to balance the micro-tiles of the busiest thread.
 * - The threads_m threads that share a range of columns pack its B panels together into one
 *   shared buffer, a part each, and wait at a barrier before reading them; each packs its own
 *   rows of A into a private buffer. With one thread per column range (threads_m == 1) a
 *   thread packs only the panels it reads, and never waits for another; of two grids that
 *   balance the work equally, that is the one chosen (kr_thread_grid).
 * - OpenMP keeps its team of threads alive between calls, so a small matmul does not pay for
 *   starting threads. Without OpenMP the same code runs on one thread, still correct.
 */
#include "krypton.h"
#include "kr_pack.h"
#include "kr_workspace.h"
#include "kr_fork_guard.h"  /* a child forked after a team ran computes on one thread */
#ifdef _OPENMP
#  include <omp.h>

/* Every thread of the team waits here for all the others; outside a team it returns at once. */
static void kr_team_barrier(void)
{
#pragma omp barrier
}
#else
static void kr_team_barrier(void) {}
#endif

/* Waking threads and meeting at barriers costs microseconds: a small product finishes sooner
 * on fewer threads, one per KR_MIN_FLOPS_PER_THREAD of work (a million flops is a few
 * microseconds of one core's work). The split never changes the sums, so neither does this
 * rule. Measure: time products of 1-8 Mflop (64 x 64 x 128, 128 x 40 x 128, 96 x 96 x 96) on
 * all cores against this rung compiled after `#define KR_MIN_FLOPS_PER_THREAD (4 * 1000 * 1000)`
 * (krypton.kernels.compile_source), one run, interleaved; notebook 06's exercise 2 goes to the
 * other extreme. */
#ifndef KR_MIN_FLOPS_PER_THREAD
#  define KR_MIN_FLOPS_PER_THREAD (1000 * 1000)
#endif
/* At most `threads`, one per `min_flops` of the product's work. */
static int64_t kr_threads_for_work(int64_t M, int64_t N, int64_t K, int64_t threads,
                                   double min_flops)
{
#ifndef _OPENMP
    threads = 1;
#endif
    /* in floating point: 2MNK overflows int64 for a broadcast operand with K = 10^17 */
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    if (flops < (double)(threads - 1) * min_flops)
        return (int64_t)(flops / min_flops) + 1;
    return threads;
}

int64_t kr_parallel_threads(int64_t M, int64_t N, int64_t K, int64_t threads)
{
    return kr_threads_for_work(M, N, K, threads, KR_MIN_FLOPS_PER_THREAD);
}

/* Part `part` of `parts` of [0, n), cut at multiples of `unit`. */
typedef struct kr_range { int64_t begin, end; } kr_range;
static kr_range kr_thread_range(int64_t n, int64_t unit, int64_t part, int64_t parts)
{
    const int64_t step = kr_ceil_div(kr_ceil_div(n, unit), parts) * unit;
    return (kr_range){kr_min(part * step, n), kr_min((part + 1) * step, n)};
}

/* Pick threads_m x threads_n == threads minimizing the micro-tiles of the busiest thread. Of
 * grids that tie, splitting rows packs A once (each thread its own rows) but has the threads
 * share B's panels: each reads the panels another packed, which on cores with private L2
 * caches (most x86 and Arm cores today) come from that core's cache or from L3, every time an
 * ic step re-reads them, and the threads meet at two barriers per kc block. Splitting columns
 * packs each row of A once per column range, but every thread reads only the B panels it packed
 * itself, from its own L2, and never waits. So ties go to columns (KR_TIES_TO_COLUMNS), and
 * always where A is read in place (rung 7): then there is no A to pack. Measure: time the
 * parallel rung on all cores on squares and on a wide product (128 x 4096 x 256) against the
 * source compiled after `#define KR_TIES_TO_COLUMNS 0`, one run, interleaved (notebook 06 times
 * both).
 *
 * And a grid whose threads share B is taken only if each has at least KR_MIN_SHARED_TILES
 * micro-tiles to compute between two barriers: meeting there and reading B's panels from
 * another core costs microseconds per kc block, and a micro-tile over one kc block is well
 * under one (2 x MR x NR x kc flops). A C of one or two panels of each (9 x 16, with K = 100352:
 * an im2col product) would otherwise run slower on two threads than on one; without such a
 * grid the columns are split, and a thread with no columns waits. Measure: time 16 x 100352 x
 * 16 and 64 x 25088 x 32 (B transposed) on all cores against the source compiled after
 * `#define KR_MIN_SHARED_TILES 0`. */
#ifndef KR_TIES_TO_COLUMNS
#  define KR_TIES_TO_COLUMNS 1
#endif
#ifndef KR_MIN_SHARED_TILES
#  define KR_MIN_SHARED_TILES 8
#endif
static void kr_thread_grid(int64_t m_panels, int64_t n_panels, int64_t threads,
                           int a_in_place, int b_in_place, int64_t *threads_m,
                           int64_t *threads_n)
{
    const int prefer_columns = KR_TIES_TO_COLUMNS || a_in_place;
    int64_t best_cost = -1;
    for (int64_t i = 0; i < threads; ++i) {
        const int64_t tm = prefer_columns ? i + 1 : threads - i;
        if (threads % tm != 0)
            continue;
        const int64_t tn = threads / tm;
        const int64_t cost = kr_ceil_div(m_panels, tm) * kr_ceil_div(n_panels, tn);
        if (tm > 1 && !b_in_place && cost < KR_MIN_SHARED_TILES)
            continue;   /* too little work between two barriers to share B */
        if (best_cost < 0 || cost < best_cost) {
            best_cost = cost;
            *threads_m = tm;
            *threads_n = tn;
        }
    }
}

/* Thread tid's part of C = A*B for an M x N C with strides (rsc, csc); Bp is the team's shared
 * buffer for B. Returns KR_ENOMEM if this thread has no buffer for A: it still walks the loops
 * then, to meet the others at every barrier. */
static int kr_parallel_five_loops(int64_t M, int64_t N, int64_t K, const kr_operand *A,
                                  const kr_operand *B, float *restrict C, int64_t rsc,
                                  int64_t csc, const kr_knobs *knobs, float *restrict Bp,
                                  int64_t tid, int64_t threads)
{
    const kr_blocks max = kr_blocks_for(M, N, K, knobs);
    float *Ap = kr_thread_buffer(KR_BUFFER_A, max.mc, max.kc);
    const int64_t panel_stride = max.kc * KR_NR;
    int64_t threads_m = 1, threads_n = 1;
    kr_thread_grid(kr_ceil_div(M, KR_MR), max.nc / KR_NR, threads, A->read_in_place,
                   B->read_in_place, &threads_m, &threads_n);
    const int64_t tid_m = tid / threads_n, tid_n = tid % threads_n;
    /* This thread's rows, and its columns of every nc block: the same panels of the shared
     * buffer in each block, so a panel is never handed from one thread to another. */
    const kr_range rows = Ap ? kr_thread_range(M, KR_MR, tid_m, threads_m) : (kr_range){0, 0};
    const kr_range cols = kr_thread_range(max.nc, KR_NR, tid_n, threads_n);
    const int share_b = threads_m > 1 && !B->read_in_place;

    for (int64_t jc = 0; jc < N; jc += max.nc) {            /* jc: nc columns, B block in L3 */
        const int64_t nc = kr_min(max.nc, N - jc);
        const int64_t j_begin = kr_min(cols.begin, nc), j_end = kr_min(cols.end, nc);
        const kr_range packs = kr_thread_range(j_end - j_begin, KR_NR, tid_m, threads_m);
        for (int64_t pc = 0; pc < K; pc += max.kc) {        /* pc: kc of the depth */
            const int64_t kc = kr_min(max.kc, K - pc);
            const kr_view b = kr_pack_b(B, pc, jc, kc, nc, j_begin + packs.begin,
                                        j_begin + packs.end, Bp, panel_stride);
            if (share_b)
                kr_team_barrier();                          /* every part of B is packed */
            for (int64_t ic = rows.begin; ic < rows.end; ic += max.mc) {   /* ic: A in L2 */
                const int64_t mc = kr_min(max.mc, rows.end - ic);
                const kr_view a = kr_pack_a(A, ic, pc, mc, kc, Ap);
                for (int64_t jr = j_begin; jr < j_end; jr += KR_NR)   /* jr: B panel, L1 */
                    for (int64_t ir = 0; ir < mc; ir += KR_MR)     /* ir: tile in registers */
                        kr_microkernel(kr_min(KR_MR, mc - ir), kr_min(KR_NR, nc - jr), kc,
                                       a.data + ir / KR_MR * a.ps, a.rs, a.cs,
                                       b.data + jr / KR_NR * b.ps, b.rs,
                                       C + (ic + ir) * rsc + (jc + jr) * csc, rsc, csc,
                                       pc == 0);
            }
            if (share_b)
                kr_team_barrier();                  /* all have read B before it is repacked */
        }
    }
    return Ap ? KR_OK : KR_ENOMEM;
}

/* The decorator: run work(job, tid, threads) on a team of threads, or on this one. OpenMP may
 * grant fewer threads than asked (nested, or a limit set): the work is split over the threads
 * that actually run. */
static void kr_fork_join(int64_t threads, void (*work)(void *job, int64_t tid, int64_t threads),
                         void *job)
{
#ifdef _OPENMP
    if (threads > 1 && kr_teams_allowed()) {
#pragma omp parallel num_threads((int)threads)
        work(job, omp_get_thread_num(), omp_get_num_threads());
        return;
    }
#endif
    (void)threads;
    work(job, 0, 1);
}

typedef struct kr_parallel_job {
    int64_t M, N, K;
    const kr_operand *A, *B;
    float *C;
    int64_t rsc, csc;
    const kr_knobs *knobs;
    float *Bp;
    int status;   /* KR_OK, or the failure of any thread */
} kr_parallel_job;

static void kr_parallel_worker(void *opaque, int64_t tid, int64_t threads)
{
    kr_parallel_job *job = opaque;
    const int status = kr_parallel_five_loops(job->M, job->N, job->K, job->A, job->B, job->C,
                                              job->rsc, job->csc, job->knobs, job->Bp, tid,
                                              threads);
    if (status != KR_OK)
        __atomic_store_n(&job->status, status, __ATOMIC_RELAXED);
}

/* The five loops on `threads` threads, sharing this thread's buffer for B. */
static int kr_parallel(int64_t M, int64_t N, int64_t K, const kr_operand *A,
                       const kr_operand *B, float *restrict C, int64_t rsc, int64_t csc,
                       const kr_knobs *knobs, int64_t threads)
{
    const kr_blocks max = kr_blocks_for(M, N, K, knobs);
    kr_parallel_job job = {.M = M, .N = N, .K = K, .A = A, .B = B, .C = C, .rsc = rsc,
                           .csc = csc, .knobs = knobs, .status = KR_OK};
    if (!(job.Bp = kr_thread_buffer(KR_BUFFER_B, max.nc, max.kc)))
        return KR_ENOMEM;
    kr_fork_join(threads, kr_parallel_worker, &job);
    return job.status;
}

int kr_sgemm_parallel(int64_t M, int64_t N, int64_t K,
                      const float *restrict A, int64_t rsa, int64_t csa,
                      const float *restrict B, int64_t rsb, int64_t csb,
                      float *restrict C, int64_t ldc, const kr_knobs *knobs)
{
    if (knobs->mc < 1 || knobs->kc < 1 || knobs->nc < 1 || knobs->threads < 1)
        return KR_EINVAL;
    if (kr_trivial_product(M, N, K, C, ldc))
        return KR_OK;
    const kr_operand a = {.data = A, .rs = rsa, .cs = csa};
    const kr_operand b = {.data = B, .rs = rsb, .cs = csb};
    return kr_parallel(M, N, K, &a, &b, C, ldc, 1, knobs,
                       kr_parallel_threads(M, N, K, knobs->threads));
}
