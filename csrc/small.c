/* Rung 7 - small: what the small products of training need (BLIS's gemmsup idea).
 *
 * Keeps rung 6 (it includes parallel.c: the same five loops, threads and micro-kernel) and adds
 * one idea: packing is a copy, and it pays only when the packed block is read many times. A
 * large product earns it back many times over; the products of one training step (a batch of
 * 128 rows, a layer of 10 outputs) may not. So one function, kr_small_plan, looks at the shape
 * and strides and decides, before anything runs:
 *
 *   - compute a C with few columns by dot products along k        (plan.dot: kr_dot_rows)
 *   - else, with few columns, compute C^T = B^T A^T, whose few rows fill MR, not NR
 *                                                                  (plan.transposed)
 *   - read A in place when a block of C is only a few panels wide  (plan.a_in_place)
 *   - read B in place when A has only a few panels of rows         (plan.b_in_place)
 *
 * Everything else it declines (plan.declined): rung 6's loops compute the product as they are.
 * Operands read in place go through the same loops: the packers hand out a view of the operand
 * itself (kr_pack.h). Edge tiles get kernels with fewer rows (KR_EDGE_KERNELS, kr_microkernel.h).
 * Python asks the same function for the plan (krypton.kernels.small_plan). Each threshold below
 * is a macro that switches its technique off at 0: `python -m krypton.ablation` measures what
 * each one buys on your machine.
 */
#define KR_READ_IN_PLACE 1   /* the packers may hand out an operand itself (kr_pack.h) */
#ifndef KR_EDGE_KERNELS
#  define KR_EDGE_KERNELS 1
#endif
/* The loop order: ir outside jr, A's micro-panel in L1 and C written along its rows, for a
 * block of B (its kc rows by one thread's columns) of at most this many floats: 512 KiB, half
 * of the smallest L2 measured (1 MiB, Zen 4), so that re-reading it for every MR rows stays an
 * L2 stream (see kr_rows_outside, parallel.c). */
#ifndef KR_ROWS_OUTSIDE_FLOATS
#  define KR_ROWS_OUTSIDE_FLOATS (128 * 1024)
#endif
#include "parallel.c"

/* Packing A pays when the packed block is read many times: once per NR-wide panel of B in the
 * jr loop. So a block of C at most this many panels wide reads A in place: the micro-kernel's
 * broadcasts load one float at a time from any strides. Wider, one packed stream is easier on
 * the caches and prefetchers than MR rows far apart. */
#ifndef KR_A_IN_PLACE_PANELS
#  define KR_A_IN_PLACE_PANELS 8
#endif
/* Packing B pays when each packed panel is read by many MR-row panels of A, ceil(M / MR) of
 * them. So a product of at most this many panels of rows reads B in place, if B's rows are
 * contiguous (vector loads need that) and B is small enough to stay in the caches: a larger B
 * comes from memory, where reading each panel's rows far apart costs more than packing.
 * Measure: time 256 x 128 x 784:tn (M x K x N: the MLP's first weight gradient, 32 panels of
 * 8 rows) and 256 x 1024 x 1024 on all cores against this rung compiled after
 * `#define KR_B_IN_PLACE_TILES 16` (krypton.kernels.compile_source), in interleaved rounds. */
#ifndef KR_B_IN_PLACE_TILES
#  define KR_B_IN_PLACE_TILES 32
#endif
#define KR_B_IN_PLACE_FLOATS (1 << 20)   /* 4 MiB of B */
/* With fewer panels of rows still, B is read in place whatever its size (a convolution's
 * im2col matrix, K x N with N = batch x pixels, is many MB). Packing a B from memory is a
 * pass over it that writes a copy as large, and the copy's kc x nc block is too large for L2,
 * so the micro-kernel reads it back from L3: three passes where reading in place is one, which
 * so few rows of A do not earn back. Measure: `python -m krypton.bench --kernels small parallel
 * --shapes 32x144x25088` (the second convolution of notebook 11). */
#ifndef KR_B_STREAM_TILES
#  define KR_B_STREAM_TILES 8
#endif
/* A C of at most this many columns (the widths the path was measured on, for which B^T stays
 * a small copy) is computed by dot products when A's rows are contiguous and either
 *   - C is narrower than NR / 2, which fills the micro-kernel's vectors badly, or
 *   - B's columns are contiguous too (a transposed view: a convolution's dY^T) and A has at
 *     most KR_B_IN_PLACE_TILES panels of rows: the dot path then copies nothing, where the
 *     micro-kernel would pack B by transposes for too few panels of A to earn the copy back.
 * 0 switches the path off. Measure: `python -m krypton.bench --shapes 9x100352x16:nt`
 * (the first convolution's weight gradient of notebook 11), this rung against `parallel`. */
#ifndef KR_NARROW_DOT
#  define KR_NARROW_DOT 16
#endif
/* The dot path's tile: KR_DOT_ROWS rows of A by KR_DOT_COLS columns of B (kr_dot_rows). */
#define KR_DOT_ROWS 4         /* the four sums of one column are finished together: kr_sum4 */
#if KR_VREGS >= 32
#  define KR_DOT_COLS 5       /* 20 accumulators + 5 vectors of B + 1 of A = 26 of 32 registers */
#else
#  define KR_DOT_COLS 2       /*  8 + 2 + 1 = 11 of 16 */
#endif
/* The dot path's threads each take rows of C and share nothing: no panel to pack, no barrier,
 * a fork and a join. With B^T read where it is (nothing to copy before the fork) that pays from
 * less work than rung 6's one thread per KR_MIN_FLOPS_PER_THREAD: one per this many flops.
 * Measure: time products of 0.25-0.5 Mflop by dot products (64 x 256 x 10:nt, 80 x 256 x
 * 10:nt: a batch of 64 or 80 through the output layer) on all cores against this rung compiled
 * after `#define KR_DOT_MIN_FLOPS_PER_THREAD KR_MIN_FLOPS_PER_THREAD`
 * (krypton.kernels.compile_source), one run, interleaved. */
#ifndef KR_DOT_MIN_FLOPS_PER_THREAD
#  define KR_DOT_MIN_FLOPS_PER_THREAD (250 * 1000)
#endif
/* The dot path walks k in chunks of this many floats (16 KiB of each row; a multiple of every
 * vector width), so that what its tiles re-read stays in L2 (see kr_dot_rows). */
#ifndef KR_DOT_CHUNK
#  define KR_DOT_CHUNK 4096
#endif

static int kr_reads_a_in_place(int64_t nc_max) { return nc_max <= KR_A_IN_PLACE_PANELS * KR_NR; }

/* Too few panels of rows to read a packed B often enough to earn its copy. */
static int kr_few_row_panels(int64_t M) { return M <= KR_B_IN_PLACE_TILES * KR_MR; }

/* Dot-product tiles an M x N C needs: each covers KR_DOT_ROWS rows and KR_DOT_COLS columns. */
static int64_t kr_dot_tiles(int64_t M, int64_t N)
{
    return kr_ceil_div(M, KR_DOT_ROWS) * kr_ceil_div(N, KR_DOT_COLS);
}

int kr_small_thresholds(kr_small_limits *limits)
{
    *limits = (kr_small_limits){
        .a_in_place_panels = KR_A_IN_PLACE_PANELS, .b_in_place_panels = KR_B_IN_PLACE_TILES,
        .b_in_place_floats = KR_B_IN_PLACE_FLOATS, .b_stream_panels = KR_B_STREAM_TILES,
        .dot_columns = KR_NARROW_DOT, .dot_chunk = KR_DOT_CHUNK,
        .edge_kernels = KR_EDGE_KERNELS, .tall_rows = KR_TALL_ROWS,
        .min_flops_per_thread = KR_MIN_FLOPS_PER_THREAD,
        .ties_to_columns = KR_TIES_TO_COLUMNS,
        .dot_min_flops_per_thread = KR_DOT_MIN_FLOPS_PER_THREAD,
        .rows_outside_floats = KR_ROWS_OUTSIDE_FLOATS};
    return KR_OK;
}

int kr_small_plan(int64_t M, int64_t N, int64_t K, int64_t rsa, int64_t csa, int64_t rsb,
                  int64_t csb, const kr_knobs *knobs, kr_plan *plan)
{
    *plan = (kr_plan){.threads = kr_parallel_threads(M, N, K, knobs->threads)};
    if (knobs->nc < 1 || knobs->threads < 1)
        return KR_EINVAL;
    if (N <= KR_NARROW_DOT && csa == 1
        && (N < KR_NR / 2 || (rsb == 1 && kr_few_row_panels(M)))) {
        /* A's rows are read where they are; B's columns too if contiguous (rsb == 1, as for
         * a transposed weight W.T), else copied as rows of B^T (N x K floats: B is narrow).
         * When both are read in place and C is narrow both ways, C^T = B^T A^T is the same
         * dot products with the roles of rows and columns swapped: taken when its tiles are
         * fewer (a 9 x 16 C needs 3 x 4 = 12 tiles of 4 x 5, its 16 x 9 transpose 4 x 2 = 8:
         * the first convolution's weight gradient). */
        const int transposed = rsb == 1 && M <= KR_NARROW_DOT
                               && kr_dot_tiles(N, M) < kr_dot_tiles(M, N);
        const int64_t threads = rsb == 1 ? kr_threads_for_work(M, N, K, knobs->threads,
                                                               KR_DOT_MIN_FLOPS_PER_THREAD)
                                         : plan->threads;
        *plan = (kr_plan){.dot = 1, .transposed = transposed, .a_in_place = 1,
                          .b_in_place = rsb == 1, .threads = threads};
        return KR_OK;
    }
    if (N < KR_NR / 2 && M > N) {   /* C^T = B^T A^T: the new B is A^T, column stride rsa */
        plan->transposed = 1;
        const int64_t rows = M;
        M = N, N = rows, csb = rsa;
    }
    plan->a_in_place = kr_reads_a_in_place(kr_round_up(kr_min(knobs->nc, N), KR_NR));
    plan->b_in_place = csb == 1 && N >= KR_NR && kr_few_row_panels(M)
                       && (K <= KR_B_IN_PLACE_FLOATS / N || M <= KR_B_STREAM_TILES * KR_MR);
    plan->declined = !plan->transposed && !plan->a_in_place && !plan->b_in_place;
    return KR_OK;
}

/* ---- Narrow C: dot products along k ---------------------------------------------------------
 *
 * A product with a handful of columns (the MLP's output layer: N = 10) fits the micro-kernel
 * badly whichever way round it is taken. C = A*B fills 10 of every NR lanes, and C^T = B^T A^T
 * needs A transposed into packed panels, a copy as large as A for a few rows of work. So turn
 * the vectors the other way: C[i][j] is the dot product of row i of A and column j of B, and
 * when both are contiguous along k, full vectors of k multiply lane by lane, and each element
 * of C ends as a sum of its vector's lanes (kr_sum4 finishes the four of one column of a tile
 * together). A tile of KR_DOT_ROWS rows x KR_DOT_COLS columns shares each load: per KR_VLEN
 * steps of k, ROWS + COLS loads feed ROWS * COLS FMAs into as many independent accumulators.
 * Each element's sum has the same order for any thread count. */

/* One step of KR_VLEN along k for a dot-product tile: `lanes` < KR_VLEN only at the tail of k,
 * where the loads are masked and the missing lanes read as zeros. */
static inline __attribute__((always_inline)) void
kr_dot_step(kr_vec acc[KR_DOT_ROWS][KR_DOT_COLS], const float *const a[KR_DOT_ROWS],
            const float *const b[KR_DOT_COLS], int64_t k, int64_t lanes)
{
    kr_vec bv[KR_DOT_COLS];
KR_UNROLL
    for (int c = 0; c < KR_DOT_COLS; ++c) {
        bv[c] = lanes == KR_VLEN ? kr_load(b[c] + k) : kr_load_n(b[c] + k, lanes);
        KR_IN_REGISTER(bv[c]);   /* one load per vector of B, not one per FMA (kr_simd.h) */
    }
KR_UNROLL
    for (int r = 0; r < KR_DOT_ROWS; ++r) {
        const kr_vec av = lanes == KR_VLEN ? kr_load(a[r] + k) : kr_load_n(a[r] + k, lanes);
KR_UNROLL
        for (int c = 0; c < KR_DOT_COLS; ++c)
            acc[r][c] = kr_fma(av, bv[c], acc[r][c]);
    }
}

/* With K long (a convolution's weight gradient sums over a whole batch of pixels), the rows of
 * A and of B^T that a thread's tiles read again no longer fit in L2, and each tile streams
 * them from memory anew. So k is cut into chunks of KR_DOT_CHUNK floats: every tile of the
 * thread takes its steps through one chunk before any tile starts the next, so the chunk of
 * B^T's rows (N of them, a few KiB each) stays in L2 while the tiles of A's rows go past.
 * Between chunks a tile's accumulators wait in a small buffer; each lane still sums in order
 * of k, so C is bitwise the same as with one chunk, for any thread count. Measure: time
 * `krypton.matmul(dy, cols.T)` (dy 16 x 100352, cols 9 x 100352: the weight gradient of
 * notebook 11's first convolution) on this rung and on one compiled with KR_DOT_CHUNK defined
 * as 1 << 40 before `#include "small.c"`. */
enum { KR_DOT_TILE = KR_DOT_ROWS * KR_DOT_COLS * KR_VLEN };   /* floats of one tile's sums */
enum { KR_DOT_COPY = 64 };   /* rows of B per block when B^T is copied (kr_small_dot) */

/* Rows [i_begin, i_end) of C = A * B, with B^T given as rows: Bt[j*ldbt + k] = B[k][j], and
 * C[i][j] at C[i*rsc + j*csc]; `partial` holds the accumulators of every tile between chunks
 * of k (NULL if K fits one). A tile at the bottom or right edge re-reads its last row or
 * column of A or B (clamped pointers) and stores only the elements that exist. */
static void kr_dot_rows(int64_t i_begin, int64_t i_end, int64_t N, int64_t K,
                        const float *restrict A, int64_t rsa, const float *restrict Bt,
                        int64_t ldbt, float *restrict C, int64_t rsc, int64_t csc,
                        float *restrict partial)
{
    const int64_t k_full = K - K % KR_VLEN;
    for (int64_t k0 = 0; k0 == 0 || k0 < k_full; k0 += KR_DOT_CHUNK) {   /* depth: chunks */
        const int64_t k1 = kr_min(k0 + KR_DOT_CHUNK, k_full);
        const int last = k1 == k_full;
        int64_t tile = 0;   /* which tile's sums in `partial` */
        for (int64_t i0 = i_begin; i0 < i_end; i0 += KR_DOT_ROWS) {   /* rows: one tile's */
            const int64_t rows = kr_min(KR_DOT_ROWS, i_end - i0);
            const float *a[KR_DOT_ROWS];
            for (int r = 0; r < KR_DOT_ROWS; ++r)
                a[r] = A + (i0 + kr_min(r, rows - 1)) * rsa;
            for (int64_t j0 = 0; j0 < N; j0 += KR_DOT_COLS) {     /* columns: one tile's */
                const int64_t cols = kr_min(KR_DOT_COLS, N - j0);
                const float *b[KR_DOT_COLS];
                for (int c = 0; c < KR_DOT_COLS; ++c)
                    b[c] = Bt + (j0 + kr_min(c, cols - 1)) * ldbt;
                const int64_t at = tile++ * KR_DOT_TILE;   /* its sums in `partial` */
                kr_vec acc[KR_DOT_ROWS][KR_DOT_COLS];
KR_UNROLL
                for (int r = 0; r < KR_DOT_ROWS; ++r)
KR_UNROLL
                    for (int c = 0; c < KR_DOT_COLS; ++c)
                        acc[r][c] = k0 == 0 ? kr_zero()
                                  : kr_load(partial + at + (r * KR_DOT_COLS + c) * KR_VLEN);
                for (int64_t k = k0; k < k1; k += KR_VLEN)        /* depth: a vector at a time */
                    kr_dot_step(acc, a, b, k, KR_VLEN);
                if (!last) {   /* the next chunk goes on from here */
KR_UNROLL
                    for (int r = 0; r < KR_DOT_ROWS; ++r)
KR_UNROLL
                        for (int c = 0; c < KR_DOT_COLS; ++c)
                            kr_store(partial + at + (r * KR_DOT_COLS + c) * KR_VLEN, acc[r][c]);
                    continue;
                }
                if (k_full < K)
                    kr_dot_step(acc, a, b, k_full, K - k_full);
                /* A constant trip count, so acc[.][c] names registers: indexed by a variable,
                 * the accumulators would have to live in memory (gcc spills all 20 to the
                 * stack). */
KR_UNROLL
                for (int c = 0; c < KR_DOT_COLS; ++c) {
                    float sums[KR_DOT_ROWS];
                    kr_sum4(acc[0][c], acc[1][c], acc[2][c], acc[3][c], sums);
                    for (int64_t r = 0; r < rows && c < cols; ++r)
                        C[(i0 + r) * rsc + (j0 + c) * csc] = sums[r];
                }
            }
        }
    }
}

typedef struct kr_dot_job {
    int64_t M, N, K;
    const float *A; int64_t rsa;
    const float *Bt; int64_t ldbt;
    float *C; int64_t rsc, csc;
    int status;   /* KR_OK, or KR_ENOMEM from any thread */
} kr_dot_job;

static void kr_dot_worker(void *opaque, int64_t tid, int64_t threads)
{
    kr_dot_job *job = opaque;
    const kr_range rows = kr_thread_range(job->M, KR_DOT_ROWS, tid, threads);
    float *partial = NULL;
    if (job->K - job->K % KR_VLEN > KR_DOT_CHUNK && rows.end > rows.begin) {
        const int64_t tiles = kr_ceil_div(rows.end - rows.begin, KR_DOT_ROWS)
                              * kr_ceil_div(job->N, KR_DOT_COLS);
        if (!(partial = kr_thread_buffer(KR_BUFFER_A, tiles, KR_DOT_TILE))) {
            __atomic_store_n(&job->status, KR_ENOMEM, __ATOMIC_RELAXED);
            return;
        }
    }
    kr_dot_rows(rows.begin, rows.end, job->N, job->K, job->A, job->rsa, job->Bt, job->ldbt,
                job->C, job->rsc, job->csc, partial);
}

/* C = A*B by dot products on `threads` threads, each a range of rows; C[i][j] at
 * C[i*rsc + j*csc]. B^T as rows: B itself when its columns are contiguous, else copied into
 * this thread's B buffer. */
static int kr_small_dot(int64_t M, int64_t N, int64_t K, const float *restrict A, int64_t rsa,
                        const float *restrict B, int64_t rsb, int64_t csb, float *restrict C,
                        int64_t rsc, int64_t csc, int64_t threads)
{
    kr_dot_job job = {.M = M, .N = N, .K = K, .A = A, .rsa = rsa, .Bt = B, .ldbt = csb,
                      .C = C, .rsc = rsc, .csc = csc, .status = KR_OK};
    if (rsb != 1) {
        float *Bt = kr_thread_buffer(KR_BUFFER_B, N, K);
        if (!Bt)
            return KR_ENOMEM;
        /* A block of KR_DOT_COPY rows of B at a time (a few KiB: it stays in L1), written
         * out as a whole line or more of each row of B^T. Row by row of B, the N writes of
         * each row would go to N lines at once, and when K * 4 bytes is a multiple of 4 KiB
         * (K = 100352, an im2col over a batch) those lines all fall in one set of L1 and
         * evict each other before they are full. Column by column, each pass would walk the
         * whole of B again for one float per row. */
        for (int64_t k0 = 0; k0 < K; k0 += KR_DOT_COPY)
            for (int64_t j = 0; j < N; ++j)
                for (int64_t k = k0; k < kr_min(k0 + KR_DOT_COPY, K); ++k)
                    Bt[j * K + k] = B[k * rsb + j * csb];
        job.Bt = Bt;
        job.ldbt = K;
    }
    kr_fork_join(threads, kr_dot_worker, &job);
    return job.status;
}

int kr_sgemm_small(int64_t M, int64_t N, int64_t K,
                   const float *restrict A, int64_t rsa, int64_t csa,
                   const float *restrict B, int64_t rsb, int64_t csb,
                   float *restrict C, int64_t ldc, const kr_knobs *knobs)
{
    if (knobs->mc < 1 || knobs->kc < 1 || knobs->nc < 1 || knobs->threads < 1)
        return KR_EINVAL;
    if (kr_trivial_product(M, N, K, C, ldc))
        return KR_OK;
    kr_plan plan;
    kr_small_plan(M, N, K, rsa, csa, rsb, csb, knobs, &plan);
    if (plan.dot && plan.transposed)   /* C^T = B^T A^T: B^T's rows are B's columns */
        return kr_small_dot(N, M, K, B, csb, A, csa, rsa, C, 1, ldc, plan.threads);
    if (plan.dot)
        return kr_small_dot(M, N, K, A, rsa, B, rsb, csb, C, ldc, 1, plan.threads);
    kr_operand a = {.data = A, .rs = rsa, .cs = csa, .read_in_place = (int)plan.a_in_place};
    kr_operand b = {.data = B, .rs = rsb, .cs = csb, .read_in_place = (int)plan.b_in_place};
    int64_t rsc = ldc, csc = 1;
    if (plan.transposed) {   /* C^T = B^T A^T, written into C through swapped strides */
        a = (kr_operand){.data = B, .rs = csb, .cs = rsb, .read_in_place = (int)plan.a_in_place};
        b = (kr_operand){.data = A, .rs = csa, .cs = rsa, .read_in_place = (int)plan.b_in_place};
        const int64_t rows = M;
        M = N, N = rows, rsc = 1, csc = ldc;
    }
    if (!plan.b_in_place)
        return kr_parallel(M, N, K, &a, &b, C, rsc, csc, knobs, plan.threads);
    /* B in place is read a whole NR-wide panel at a time, and its last panel may be narrower:
     * those columns are a product of their own, with B packed (and A in place: one panel). */
    const int64_t whole = N - N % KR_NR;
    int status = kr_parallel(M, whole, K, &a, &b, C, rsc, csc, knobs, plan.threads);
    if (status != KR_OK || whole == N)
        return status;
    const kr_operand a_rest = {.data = a.data, .rs = a.rs, .cs = a.cs,
                               .read_in_place = kr_reads_a_in_place(KR_NR)};
    const kr_operand b_rest = {.data = b.data + whole * b.cs, .rs = b.rs, .cs = b.cs};
    return kr_parallel(M, N - whole, K, &a_rest, &b_rest, C + whole * csc, rsc, csc, knobs,
                       kr_parallel_threads(M, N - whole, K, knobs->threads));
}
