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
 * - Each thread packs what it reads, into buffers of its own: the B panels of its columns and
 *   the A panels of its rows. So no thread ever waits for another between the fork and the
 *   join (no barrier), at the price of packing twice what two threads both read.
 * - OpenMP keeps its team of threads alive between calls, so a small matmul does not pay for
 *   starting threads. Without OpenMP the same code runs on one thread, still correct.
 */
#include "krypton.h"
#include "kr_pack.h"
#include "kr_workspace.h"
#include "kr_fork_guard.h"  /* a child forked after a team ran computes on one thread */
#ifdef _OPENMP
#  include <omp.h>
#endif

/* Waking a team of threads and joining it costs time even when its threads are warm: under a
 * microsecond for an empty parallel region, more inside a product, where each thread also finds
 * its ranges and buffers and brings its part of the operands into its own caches. A product of
 * t seconds on one thread gains from a second only if t/2 + that cost < t, so a small product
 * runs on one thread per KR_MIN_FLOPS_PER_THREAD of work (half a million flops is a few
 * microseconds of one core's work). The split never changes the sums, so neither does this
 * rule. Measure: time products of 0.5-1 Mflop (the MLP's 10 x 128 x 256 and 128 x 10 x 256,
 * 64 x 64 x 64, 32 x 128 x 64) on all cores against this rung compiled after
 * `#define KR_MIN_FLOPS_PER_THREAD (1000 * 1000)` (krypton.kernels.compile_source), one run,
 * interleaved; notebook 06's exercise 2 goes to the other extreme. */
#ifndef KR_MIN_FLOPS_PER_THREAD
#  define KR_MIN_FLOPS_PER_THREAD (500 * 1000)
#endif
/* The loop order inside a block. BLIS's, jr outside ir, keeps one kc x NR micro-panel of B
 * in L1 while the ir loop streams A's micro-panels from L2, and walks C down a column of
 * tiles: for a column-major C, as BLIS's is, one contiguous run. A row-major C's tiles down a
 * column are a row apart (N floats), so each tile writes MR rows of lines of its own. With ir
 * outside jr, one MR x kc micro-panel of A stays in L1 while the jr loop streams B's, and C is
 * written along its rows, a run of lines each, the order caches and prefetchers handle best.
 * The streamed operand must then come from L2 (every MR rows re-read all of B's block, where
 * BLIS's order reads it once), so rung 7 takes this order for a B block of at most
 * KR_ROWS_OUTSIDE_FLOATS; 0 here keeps rung 5's order in rung 6. And only where a thread
 * owns whole rows of the block: threads that split its columns write the same rows, and a
 * row of a NumPy array need not start on a cache line, so the two share a line in every row;
 * walking along rows, both reach those lines at the same moment, MR rows at a time, and the
 * lines bounce between their cores (BLIS's order reaches them at opposite ends of a sweep).
 * The order never changes a sum, only when each tile is computed. Measure: `python -m
 * krypton.ablation` ("+rows outside"; a short k such as the MLP's 128 x 10 x 256, K = 10,
 * leaves the tile's stores to C the most weight). */
#ifndef KR_ROWS_OUTSIDE_FLOATS
#  define KR_ROWS_OUTSIDE_FLOATS 0
#endif
static int kr_rows_outside(int64_t kc, int64_t columns)
{
    return kc * columns <= KR_ROWS_OUTSIDE_FLOATS;
}

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

/* Pick threads_m x threads_n == threads minimizing the micro-tiles of the busiest thread. Each
 * thread packs the panels it reads, so a grid decides what is packed twice: splitting rows,
 * every thread of a column range packs that range's B panels; splitting columns, every thread
 * of a row range packs those rows of A. Ties go to columns (KR_TIES_TO_COLUMNS), and always
 * where A is read in place (rung 7), since there is no A to pack then. Measure: time the
 * parallel rung on all cores on a square and on a wide product (128 x 4096 x 256) against the
 * source compiled after `#define KR_TIES_TO_COLUMNS 0`, one run, interleaved (notebook 06 times
 * both). */
#ifndef KR_TIES_TO_COLUMNS
#  define KR_TIES_TO_COLUMNS 1
#endif
static void kr_thread_grid(int64_t m_panels, int64_t n_panels, int64_t threads,
                           int a_in_place, int64_t *threads_m, int64_t *threads_n)
{
    const int prefer_columns = KR_TIES_TO_COLUMNS || a_in_place;
    int64_t best_cost = -1;
    for (int64_t i = 0; i < threads; ++i) {
        const int64_t tm = prefer_columns ? i + 1 : threads - i;
        if (threads % tm != 0)
            continue;
        const int64_t tn = threads / tm;
        const int64_t cost = kr_ceil_div(m_panels, tm) * kr_ceil_div(n_panels, tn);
        if (best_cost < 0 || cost < best_cost) {
            best_cost = cost;
            *threads_m = tm;
            *threads_n = tn;
        }
    }
}

/* The tile at the right edge of C, where the last panel of B is narrower than NR: the same
 * call, made once per row of tiles, so its copy of the micro-kernel is out of line. Inlined
 * beside the loop of whole panels, a third and fourth copy would leave the compiler fewer
 * registers for them all (clang 14 then reloads B's stride from the stack at every step of k:
 * tests/test_codegen.py). */
static __attribute__((noinline)) void
kr_microkernel_narrow(int64_t mr, int64_t nr, int64_t kc, const float *restrict A, int64_t rsa,
                      int64_t csa, int64_t psa, const float *restrict B, int64_t rsb,
                      float *restrict C, int64_t rsc, int64_t csc, int overwrite)
{
    kr_microkernel(mr, nr, kc, A, rsa, csa, psa, B, rsb, C, rsc, csc, overwrite);
}

/* Thread tid's part of C = A*B for an M x N C with strides (rsc, csc). */
static int kr_parallel_five_loops(int64_t M, int64_t N, int64_t K, const kr_operand *A,
                                  const kr_operand *B, float *restrict C, int64_t rsc,
                                  int64_t csc, const kr_knobs *knobs, int64_t tid,
                                  int64_t threads)
{
    const kr_blocks max = kr_blocks_for(M, N, K, knobs);
    int64_t threads_m = 1, threads_n = 1;
    kr_thread_grid(kr_ceil_div(M, KR_MR), max.nc / KR_NR, threads, A->read_in_place,
                   &threads_m, &threads_n);
    const int64_t tid_m = tid / threads_n, tid_n = tid % threads_n;
    /* This thread's rows, and its columns of every nc block. */
    const kr_range rows = kr_thread_range(M, KR_MR, tid_m, threads_m);
    const kr_range cols = kr_thread_range(max.nc, KR_NR, tid_n, threads_n);
    if (rows.begin == rows.end || cols.begin >= kr_min(max.nc, N))
        return KR_OK;          /* more threads than tiles: nothing to compute, nothing to pack */
    float *Ap = kr_thread_buffer(KR_BUFFER_A, max.mc, max.kc);
    float *Bp = kr_thread_buffer(KR_BUFFER_B, max.nc, max.kc);
    if (!Ap || !Bp)
        return KR_ENOMEM;
    const int64_t panel_stride = max.kc * KR_NR;

    for (int64_t jc = 0; jc < N; jc += max.nc) {            /* jc: nc columns, B block in L3 */
        const int64_t nc = kr_min(max.nc, N - jc);
        const int64_t j_begin = kr_min(cols.begin, nc), j_end = kr_min(cols.end, nc);
        for (int64_t pc = 0; pc < K; pc += max.kc) {        /* pc: kc of the depth */
            const int64_t kc = kr_min(max.kc, K - pc);
            const kr_view b = kr_pack_b(B, pc, jc, kc, nc, j_begin, j_end, Bp, panel_stride);
            for (int64_t ic = rows.begin; ic < rows.end; ic += max.mc) {   /* ic: A in L2 */
                const int64_t mc = kr_min(max.mc, rows.end - ic);
                const kr_view a = kr_pack_a(A, ic, pc, mc, kc, Ap);
                /* The tile at (ir, jr): MR rows (or the rows left, kr_tile_rows) of A's
                 * block times nr columns of B's. A thread's panels of B are whole, NR wide,
                 * but for the last one at the right edge of C: the loops run over the whole
                 * ones with nr = KR_NR, a constant, so the micro-kernel inlined there loses its
                 * edge tests, and the narrow one goes to its own copy out of line. With nr a
                 * variable in every copy, clang 14 kept a copy of it on the stack for each of
                 * the tests and re-read them all at every tile: 128 x 10 x 256 (a K of 10:
                 * little work per tile) ran at two thirds of gcc's speed. Measure: that shape
                 * and 784 x 128 x 256 built by each compiler (CC=clang), against the loops
                 * written with nr = kr_min(KR_NR, nc - jr) for every panel, interleaved. */
#define KR_TILE(kernel, ir, mr, jr, nr)                                                         \
                kernel((mr), (nr), kc, a.data + (ir) / KR_MR * a.ps, a.rs, a.cs, a.ps,          \
                       b.data + (jr) / KR_NR * b.ps, b.rs,                                      \
                       C + (ic + (ir)) * rsc + (jc + (jr)) * csc, rsc, csc, pc == 0)
                const int64_t j_whole = j_begin + (j_end - j_begin) / KR_NR * KR_NR;
                if (threads_n == 1 && kr_rows_outside(kc, nc)) {  /* rung 7: B's block in L2 */
                    for (int64_t ir = 0, mr; ir < mc; ir += mr) {  /* ir: A panel, L1 */
                        mr = kr_tile_rows(mc - ir);
                        for (int64_t jr = j_begin; jr < j_whole; jr += KR_NR)   /* jr: tile */
                            KR_TILE(kr_microkernel, ir, mr, jr, KR_NR);
                        if (j_whole < j_end)
                            KR_TILE(kr_microkernel_narrow, ir, mr, j_whole, j_end - j_whole);
                    }
                } else {
                    for (int64_t jr = j_begin; jr < j_whole; jr += KR_NR)   /* jr: B panel, L1 */
                        for (int64_t ir = 0, mr; ir < mc; ir += mr) {  /* ir: tile in registers */
                            mr = kr_tile_rows(mc - ir);   /* MR, or the rows left */
                            KR_TILE(kr_microkernel, ir, mr, jr, KR_NR);
                        }
                    if (j_whole < j_end)
                        for (int64_t ir = 0, mr; ir < mc; ir += mr) {
                            mr = kr_tile_rows(mc - ir);
                            KR_TILE(kr_microkernel_narrow, ir, mr, j_whole, j_end - j_whole);
                        }
                }
#undef KR_TILE
            }
        }
    }
    return KR_OK;
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
    int status;   /* KR_OK, or the failure of any thread */
} kr_parallel_job;

static void kr_parallel_worker(void *opaque, int64_t tid, int64_t threads)
{
    kr_parallel_job *job = opaque;
    const int status = kr_parallel_five_loops(job->M, job->N, job->K, job->A, job->B, job->C,
                                              job->rsc, job->csc, job->knobs, tid, threads);
    if (status != KR_OK)
        __atomic_store_n(&job->status, status, __ATOMIC_RELAXED);
}

/* The five loops on `threads` threads. */
static int kr_parallel(int64_t M, int64_t N, int64_t K, const kr_operand *A,
                       const kr_operand *B, float *restrict C, int64_t rsc, int64_t csc,
                       const kr_knobs *knobs, int64_t threads)
{
    kr_parallel_job job = {.M = M, .N = N, .K = K, .A = A, .B = B, .C = C, .rsc = rsc,
                           .csc = csc, .knobs = knobs, .status = KR_OK};
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
