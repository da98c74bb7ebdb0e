/* Rung 6 - parallel: the five loops of rung 5, on several threads.
 *
 * Keeps everything of rung 5 (it includes packed.c: the same packing routines, micro-kernel
 * and loop order) and adds one idea: split the work of the ic and jr loops between threads.
 *
 * - The loops that split K (pc, and the k loop in the micro-kernel) are never divided, so every
 *   element of C is summed in the same order whatever the thread count: the result is bitwise
 *   identical for 1, 2 or 64 threads.
 * - The work is C's rectangles: a threads_m x threads_n grid of ranges of MR-row panels times
 *   ranges of NR-column panels, chosen to balance the micro-tiles per thread.
 * - Each (jc, pc) step, the threads that share a range of columns pack its B panels together
 *   into one shared buffer, each a part, and wait at a barrier before reading them; then each
 *   computes its rectangle, packing its own rows of A into a private buffer as it goes. With
 *   one thread per column range (threads_m == 1) a thread packs only the panels it reads and
 *   never waits for another. Ties in the grid go that way when rung 5 reads A in place (no
 *   packing of A to share out), and to splitting rows when it packs A.
 * - Rung 5's small-matrix path carries over: A or B read in place, and narrow C by dot
 *   products, its rows shared out between the threads.
 * - OpenMP keeps its team of threads alive between calls, so a small matmul does not pay for
 *   starting threads. Without OpenMP the same code runs on one thread, still correct.
 */
#include "packed.c"
#ifdef _OPENMP
#  include <omp.h>

/* GCC's OpenMP runtime keeps its threads between calls, and they do not survive fork(): in a
 * child forked after the parent ran a parallel region (what Python's multiprocessing does by
 * default on Linux), the next parallel region waits forever for them. So the child marks itself
 * at fork and computes on its calling thread only: the same sums, no hang. This flag is the
 * ladder's one piece of mutable global state; it only ever goes from 0 to 1. */
static int kr_threads_lost_to_fork;
static pthread_once_t kr_fork_watch_once = PTHREAD_ONCE_INIT;
static void kr_note_fork_in_child(void) { kr_threads_lost_to_fork = 1; }
static void kr_watch_fork(void) { pthread_atfork(NULL, NULL, kr_note_fork_in_child); }
#endif

typedef struct kr_parallel_job {
    int64_t M, N, K, mc_max, nc_max, kc_max;
    const float *A; int64_t rsa, csa;
    const float *B; int64_t rsb, csb;
    float *C; int64_t rsc, csc;
    float *Bp;          /* shared: the packed kc x nc block of B (the calling thread's buffer) */
    const float *Bt;    /* narrow C only (kr_prefer_dot): B^T as rows, ldbt apart; else NULL */
    int64_t ldbt;
    int out_of_memory;  /* set by a thread that could not get its buffer */
} kr_parallel_job;

#ifndef KR_MIN_FLOPS_PER_THREAD
#  define KR_MIN_FLOPS_PER_THREAD (4 * 1000 * 1000)
#endif

static int64_t kr_ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Pick threads_m x threads_n == threads minimizing the micro-tiles of the busiest thread.
 * Ties go to splitting rows when A is packed (each thread packs only its own rows of A), and
 * to splitting columns when A is read in place: then each thread packs only the B panels it
 * uses, and the threads never wait for one another (see kr_parallel_worker). */
static void kr_thread_grid(int64_t m_panels, int64_t n_panels, int64_t threads,
                           int prefer_columns, int64_t *threads_m, int64_t *threads_n)
{
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

/* What one thread does. The barriers are OpenMP's; called outside a parallel region
 * (one thread, or no OpenMP) they do nothing. */
static void kr_parallel_worker(kr_parallel_job *job, int64_t tid, int64_t threads)
{
    if (job->Bt) {   /* narrow C: each thread takes a share of the rows, no packing to share */
        const int64_t share = kr_ceil_div(kr_ceil_div(job->M, KR_DOT_ROWS), threads) * KR_DOT_ROWS;
        kr_dot_rows(kr_min(tid * share, job->M), kr_min((tid + 1) * share, job->M), job->N,
                    job->K, job->A, job->rsa, job->Bt, job->ldbt, job->C, job->rsc);
        return;
    }
    const int64_t m_panels = kr_ceil_div(job->M, KR_MR);
    const int a_in_place = kr_use_a_in_place(job->nc_max);
    const int b_in_place = kr_use_b_in_place(job->M, job->K, job->N, job->csb);
    /* Each thread packs A into its own buffer; OpenMP's threads live on between calls, and so
     * do their buffers. A thread without one still walks the loops, to meet every barrier. */
    float *Ap = a_in_place ? NULL : kr_thread_buffer(KR_BUFFER_A, job->mc_max, job->kc_max);
    if (!a_in_place && !Ap) {
#pragma omp atomic write
        job->out_of_memory = 1;
    }
    const int64_t panel_stride = job->kc_max * KR_NR;

    for (int64_t jc = 0; jc < job->N; jc += job->nc_max) {          /* jc: nc columns (L3) */
        const int64_t nc = kr_min(job->nc_max, job->N - jc);
        const int64_t n_panels = kr_ceil_div(nc, KR_NR);
        int64_t threads_m = 1, threads_n = 1;
        kr_thread_grid(m_panels, n_panels, threads, a_in_place, &threads_m, &threads_n);
        /* This thread's rectangle: panel rows [m0, m1) x panel columns [n0, n1). */
        const int64_t tid_m = tid / threads_n, tid_n = tid % threads_n;
        const int64_t m_step = kr_ceil_div(m_panels, threads_m);
        const int64_t n_step = kr_ceil_div(n_panels, threads_n);
        const int64_t row_begin = kr_min(tid_m * m_step * KR_MR, job->M);
        const int64_t row_end = kr_min((tid_m + 1) * m_step * KR_MR, job->M);
        const int64_t n0 = kr_min(tid_n * n_step, n_panels);
        const int64_t n1 = kr_min((tid_n + 1) * n_step, n_panels);
        /* The threads_m threads that share columns [n0, n1) share their packing: each packs a
         * part, and all wait at a barrier before reading. With one thread per column range
         * (threads_m == 1) a thread packs its own panels and never waits for another. With B
         * read in place, only panels from `first` on are packed (at most a narrow last one). */
        const int must_wait = threads_m > 1;
        const int64_t share = kr_ceil_div(n1 - n0, threads_m);
        const int64_t first = kr_first_panel_to_pack(nc, b_in_place);
        const int64_t pack_begin = kr_max(kr_min(n0 + tid_m * share, n1), first);
        const int64_t pack_end = kr_max(kr_min(n0 + (tid_m + 1) * share, n1), pack_begin);

        for (int64_t pc = 0; pc < job->K; pc += job->kc_max) {      /* pc: kc of the depth */
            const int64_t kc = kr_min(job->kc_max, job->K - pc);
            const float *b = job->B + pc * job->rsb + jc * job->csb;
            kr_pack_b_panels(kc, nc, pack_begin, pack_end, b, job->rsb, job->csb, job->Bp,
                             panel_stride);
            if (must_wait) {
#pragma omp barrier
            }
            for (int64_t ic = row_begin; ic < row_end && n0 < n1; ic += job->mc_max) {  /* ic */
                const int64_t mc = kr_min(job->mc_max, row_end - ic);
                const float *a = job->A + ic * job->rsa + pc * job->csa;
                float *c = job->C + ic * job->rsc + jc * job->csc;
                if (!a_in_place) {
                    if (!Ap)
                        continue;
                    kr_pack_a_block(mc, kc, a, job->rsa, job->csa, Ap);
                    a = Ap;
                }
                kr_macrokernel(mc, nc, kc, n0, n1, a, !a_in_place, job->rsa, job->csa,
                               b_in_place ? b : NULL, job->rsb, job->Bp, panel_stride, c,
                               job->rsc, job->csc, pc == 0);
            }
            if (must_wait) {
#pragma omp barrier
            }
        }
        /* The next nc block may hand a panel slot to another thread: let the owner finish. */
        if (!must_wait && jc + job->nc_max < job->N) {
#pragma omp barrier
        }
    }
}

int kr_sgemm_parallel(int64_t M, int64_t N, int64_t K,
                      const float *restrict A, int64_t rsa, int64_t csa,
                      const float *restrict B, int64_t rsb, int64_t csb,
                      float *restrict C, int64_t ldc, const kr_knobs *knobs)
{
    if (knobs->mc < 1 || knobs->kc < 1 || knobs->nc < 1 || knobs->threads < 1)
        return KR_EINVAL;
    if (M == 0 || N == 0)   /* nothing to compute, and no buffer to get */
        return KR_OK;
    if (K == 0) {
        kr_zero_c(M, N, C, ldc);
        return KR_OK;
    }
#ifdef _OPENMP
    int64_t threads = knobs->threads;
#else
    int64_t threads = 1;
#endif
    kr_parallel_job job = {
        .M = M, .N = N, .K = K,
        .A = A, .rsa = rsa, .csa = csa, .B = B, .rsb = rsb, .csb = csb,
        .C = C, .rsc = ldc, .csc = 1,
    };
    if (kr_prefer_dot(N, csa)) {        /* as in rung 5: narrow C by dot products */
        job.Bt = kr_dot_b_rows(N, K, B, rsb, csb, &job.ldbt);
        if (!job.Bt)
            return KR_ENOMEM;
    } else if (kr_prefer_transposed(M, N)) {   /* as in rung 5: C^T = B^T A^T */
        job = (kr_parallel_job){
            .M = N, .N = M, .K = K,
            .A = B, .rsa = csb, .csa = rsb, .B = A, .rsb = csa, .csb = rsa,
            .C = C, .rsc = 1, .csc = ldc,
        };
    }
    /* Waking threads and meeting at barriers costs microseconds: a small product finishes
     * sooner on fewer threads. The split never changes the sums, so neither does this. */
    /* (in floating point: 2MNK overflows int64 for a broadcast operand with K = 10^17) */
    const double flops = 2.0 * (double)M * (double)N * (double)K;
    if (flops < (double)(threads - 1) * KR_MIN_FLOPS_PER_THREAD)
        threads = (int64_t)(flops / KR_MIN_FLOPS_PER_THREAD) + 1;
    /* As in rung 5: blocks no larger than the matrix, so buffers are as large as this product
     * needs and a huge knob cannot overflow when rounded up to whole micro-panels. */
    job.mc_max = kr_round_up(kr_min(knobs->mc, job.M), KR_MR);
    job.nc_max = kr_round_up(kr_min(knobs->nc, job.N), KR_NR);
    job.kc_max = kr_min(knobs->kc, K);
    if (!job.Bt && !(job.Bp = kr_thread_buffer(KR_BUFFER_B, job.nc_max, job.kc_max)))
        return KR_ENOMEM;
    {
#ifdef _OPENMP
        if (threads > 1 && !kr_threads_lost_to_fork) {
            pthread_once(&kr_fork_watch_once, kr_watch_fork);  /* before the first team starts */
#pragma omp parallel num_threads((int)threads)
            {
                /* OpenMP may grant fewer threads than asked (e.g. nested, or a limit set):
                 * then the work is split over the threads that actually run. */
                kr_parallel_worker(&job, omp_get_thread_num(), omp_get_num_threads());
            }
        } else
#endif
            kr_parallel_worker(&job, 0, 1);
    }
    return job.out_of_memory ? KR_ENOMEM : KR_OK;
}
