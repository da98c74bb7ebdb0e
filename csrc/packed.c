/* Rung 5 - packed: packing and the BLIS five-loop structure.
 *
 * Keeps rung 4 (the KR_MR x KR_NR register-blocked micro-kernel, vector FMAs) and adds one idea:
 * before computing, copy ("pack") the blocks of A and B the micro-kernel will read into small
 * contiguous buffers, laid out in exactly the order the micro-kernel reads them:
 *
 *   packed B: kc x nc block of B as NR-wide micro-panels:  panel p holds B[k][p*NR .. p*NR+NR)
 *             for k = 0..kc, one contiguous row of NR floats after another.
 *   packed A: mc x kc block of A as MR-tall micro-panels:  panel p holds A[p*MR .. p*MR+MR)[k]
 *             for k = 0..kc, one column of MR floats after another.
 *
 * Then every load in the micro-kernel is sequential, whatever the strides of A and B were
 * (a transposed view costs nothing extra: the packing routine reads it in its own order),
 * and the panels are padded with zeros to full MR and NR, so the micro-kernel never needs a
 * scalar tail. The loops around it follow BLIS (Van Zee & van de Geijn, 2015):
 *
 *   jc: nc columns of C and B    B block (kc x nc) lives in L3
 *    pc: kc of the depth          pack B[pc:pc+kc, jc:jc+nc]
 *     ic: mc rows of C and A      pack A[ic:ic+mc, pc:pc+kc]; A block lives in L2
 *      jr: NR columns             one B micro-panel (kc x NR): L2, an eighth of it
 *       ir: MR rows               micro-kernel: C[ir:ir+MR, jr:jr+NR] += Ap * Bp
 *
 * Packing is a copy, and it pays only when the packed block is read many times. The small
 * products of training (a batch of 128 rows, a layer of 10 outputs) read it a few times, so for
 * each product rung 5 also decides (the small-matrix path, further down):
 *   - read A in place when a block of C is at most 8 panels of B wide  (kr_use_a_in_place)
 *   - read B in place when M is at most 16 panels of A, B small        (kr_use_b_in_place)
 *   - give each edge row count its own copy of the micro-kernel        (kr_microkernel_edge)
 *   - compute a C with few columns by dot products along k              (kr_dot_rows)
 * Each is a macro that can switch it off: python -m krypton.ablation measures what each buys.
 *
 * rung 6 (parallel.c) includes this file and runs the same loops on several threads.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "krypton.h"
#include "kr_simd.h"

#ifndef KR_MR
#  define KR_MR 6
#endif
#ifndef KR_NR
#  define KR_NR (2 * KR_VLEN)
#endif
#define KR_NV (KR_NR / KR_VLEN)   /* vectors per row of the micro-tile */

#if KR_NR % KR_VLEN != 0
#  error "KR_NR must be a multiple of the vector width KR_VLEN"
#endif
#if KR_MR * KR_NV + KR_NV + 1 > KR_VREGS
#  error "KR_MR x KR_NR needs more vector registers than the ISA has"
#endif

#define KR_ALIGN 64   /* one cache line: packed panels start on a line, vector loads never split */

static int64_t kr_min(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t kr_max(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t kr_round_up(int64_t x, int64_t multiple) { return (x + multiple - 1) / multiple * multiple; }

static float *kr_alloc_floats(int64_t count)
{
    size_t bytes = (size_t)kr_round_up(count > 0 ? count : 1, KR_ALIGN / sizeof(float)) * sizeof(float);
    return aligned_alloc(KR_ALIGN, bytes);
}

/* Packing buffers are reused from call to call: allocating (and page-faulting) a few MB on every
 * call would cost more than a small matmul itself. Each thread keeps its own buffers, so calls
 * from several Python threads at once never share one; they are freed when the thread ends. */
enum { KR_BUFFER_A = 0, KR_BUFFER_B = 1, KR_BUFFERS = 2 };
typedef struct kr_workspace { float *data[KR_BUFFERS]; int64_t capacity[KR_BUFFERS]; } kr_workspace;

static pthread_key_t kr_workspace_key;
static pthread_once_t kr_workspace_once = PTHREAD_ONCE_INIT;

static void kr_workspace_free(void *opaque)
{
    kr_workspace *ws = opaque;
    for (int i = 0; i < KR_BUFFERS; ++i)
        free(ws->data[i]);
    free(ws);
}

static void kr_workspace_release_main_thread(void)
{
    kr_workspace *ws = pthread_getspecific(kr_workspace_key);
    if (ws) {
        pthread_setspecific(kr_workspace_key, NULL);
        kr_workspace_free(ws);
    }
}

static void kr_workspace_create_key(void)
{
    pthread_key_create(&kr_workspace_key, kr_workspace_free);
    atexit(kr_workspace_release_main_thread);  /* thread destructors do not run for main() */
}

/* This thread's buffer `which`, grown to hold at least rows x cols floats; NULL if out of
 * memory. A zero-stride NumPy view can make K as large as 2^61 with no memory behind it, so the
 * product is checked: wrapped around, it would hand back a buffer far too small. */
static float *kr_thread_buffer(int which, int64_t rows, int64_t cols)
{
    int64_t count;
    if (__builtin_mul_overflow(rows, cols, &count) || count > INT64_MAX / 8)
        return NULL;
    pthread_once(&kr_workspace_once, kr_workspace_create_key);
    kr_workspace *ws = pthread_getspecific(kr_workspace_key);
    if (!ws) {
        if (!(ws = calloc(1, sizeof *ws)))
            return NULL;
        pthread_setspecific(kr_workspace_key, ws);
    }
    if (ws->capacity[which] < count) {
        free(ws->data[which]);
        ws->data[which] = kr_alloc_floats(count);
        ws->capacity[which] = ws->data[which] ? count : 0;
    }
    return ws->data[which];
}

/* Pack panels [p_begin, p_end) of the kc x nc block of B into NR-wide micro-panels: panel p
 * starts at Bp + p * panel_stride and holds B[k][p*NR .. p*NR+NR) for k = 0..kc, padded with
 * zero columns beyond nc. The stride is kc_max * NR, not kc * NR: each panel keeps its place
 * when the last, shorter kc block is packed (rung 6's threads rely on that). */
static void kr_pack_b_panels(int64_t kc, int64_t nc, int64_t p_begin, int64_t p_end,
                             const float *restrict B, int64_t rsb, int64_t csb,
                             float *restrict Bp, int64_t panel_stride)
{
    for (int64_t p = p_begin; p < p_end; ++p) {        /* one NR-wide panel at a time */
        const int64_t nr = kr_min(KR_NR, nc - p * KR_NR);
        const float *src = B + p * KR_NR * csb;
        float *dst = Bp + p * panel_stride;
        if (csb == 1) {                                /* rows contiguous: vector copies */
            for (int64_t k = 0; k < kc; ++k)
                for (int v = 0; v < KR_NV; ++v) {
                    const int64_t lanes = kr_min(KR_VLEN, nr - v * KR_VLEN);
                    const float *from = src + k * rsb + v * KR_VLEN;
                    kr_store(dst + k * KR_NR + v * KR_VLEN, lanes == KR_VLEN ? kr_load(from)
                             : lanes > 0 ? kr_load_n(from, lanes) : kr_zero());
                }
        } else if (rsb == 1 && KR_HAVE_TRANSPOSE8) {
            /* B transposed (columns contiguous): 8 x 8 blocks transposed in registers, then
             * the ragged rest (k beyond a multiple of 8, columns beyond one) and the zero
             * padding one float at a time. */
            const int64_t k8 = kc - kc % 8, j8 = nr - nr % 8;
            for (int64_t k0 = 0; k0 < k8; k0 += 8)
                for (int64_t j0 = 0; j0 < j8; j0 += 8)
                    kr_transpose8x8(src + k0 + j0 * csb, csb, dst + k0 * KR_NR + j0, KR_NR);
            for (int64_t k = 0; k < kc; ++k)
                for (int64_t j = k < k8 ? j8 : 0; j < KR_NR; ++j)
                    dst[k * KR_NR + j] = j < nr ? src[k + j * csb] : 0.0f;
        } else {
            /* B with other strides: a blocked transpose. For 16 rows k at a time,
             * walk down each column j (contiguous in memory when rsb == 1): the 16 x NR block
             * read and the one written both stay in L1, whatever the distance between columns. */
            for (int64_t k0 = 0; k0 < kc; k0 += 16) {
                const int64_t k1 = kr_min(k0 + 16, kc);
                for (int64_t j = 0; j < KR_NR; ++j)
                    for (int64_t k = k0; k < k1; ++k)
                        dst[k * KR_NR + j] = j < nr ? src[k * rsb + j * csb] : 0.0f;
            }
        }
    }
}

/* Pack rows [0, mr) x depth [0, kc) of the A block at `A` into one MR-tall micro-panel:
 * column k of the panel is A[0..MR)[k], padded with zero rows beyond mr. */
static void kr_pack_a_panel(int64_t kc, int64_t mr, const float *restrict A, int64_t rsa,
                            int64_t csa, float *restrict Ap)
{
    for (int64_t k = 0; k < kc; ++k) {                 /* depth: one column of the panel */
        float *dst = Ap + k * KR_MR;
        int64_t r = 0;
        for (; r < mr; ++r)
            dst[r] = A[r * rsa + k * csa];
        for (; r < KR_MR; ++r)
            dst[r] = 0.0f;
    }
}

/* The micro-kernel: a rows x NR block of A*B over depth kc, held in registers (rows = MR for
 * every full tile). Row k of the B panel is B[k*ldb .. k*ldb + NR): a packed micro-panel for
 * ldb = NR, or the caller's matrix in place for ldb = its row stride (see kr_use_b_in_place).
 * A comes from anywhere: element (r, k) of the A panel is A[r*rsa + k*csa], which is a packed
 * micro-panel for rsa = 1, csa = MR, or the caller's matrix in place (see kr_use_a_in_place).
 * Only the first mr rows of C are stored, so only mr rows of A are read: a kernel with more
 * rows than that (the full one, on an edge tile) re-reads row mr - 1 for the rest.
 * `overwrite` is set on the first kc block (C = AB); later blocks add (C += AB). Tiles of full
 * width in a row-major C are stored straight from the registers; the others (nr < NR, or a
 * transposed C with csc != 1) go through a small buffer, so the padding never lands outside C.
 *
 * `rows` is a compile-time constant wherever this is inlined (always_inline): each value gets
 * its own copy of the code with exactly rows x NV accumulators, see kr_microkernel_edge. */
static inline __attribute__((always_inline)) void
kr_microkernel_rows(const int rows, int64_t kc, const float *restrict A, int64_t rsa,
                    int64_t csa, const float *restrict B, int64_t ldb, float *restrict C,
                    int64_t rsc, int64_t csc, int64_t mr, int64_t nr, int overwrite)
{
    const float *row[KR_MR];
#pragma GCC unroll 32
    for (int r = 0; r < rows; ++r)
        row[r] = A + kr_min(r, mr - 1) * rsa;
    kr_vec acc[KR_MR][KR_NV];
#pragma GCC unroll 32
    for (int r = 0; r < rows; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < KR_NV; ++v)
            acc[r][v] = kr_zero();
    /* C is touched only after the k loop. Ask for its lines now, so that on large matrices,
     * where C lives in memory, the loads at the end do not stall (as BLIS's kernels do). */
    if (csc == 1)
        for (int r = 0; r < rows; ++r)
            for (int j = 0; j < KR_NR; j += 64 / (int)sizeof(float))
                __builtin_prefetch(C + r * rsc + j, 1, 3);

#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; ++k) {                 /* depth: one rank-1 update per step */
        kr_vec b[KR_NV];
#pragma GCC unroll 8
        for (int v = 0; v < KR_NV; ++v)
            b[v] = kr_load(B + k * ldb + v * KR_VLEN);
#pragma GCC unroll 32
        for (int r = 0; r < rows; ++r) {
            const kr_vec a = kr_set1(row[r][k * csa]);
#pragma GCC unroll 8
            for (int v = 0; v < KR_NV; ++v)
                acc[r][v] = kr_fma(a, b[v], acc[r][v]);
        }
    }

    if (mr == rows && nr == KR_NR && csc == 1) {
#pragma GCC unroll 32
        for (int r = 0; r < rows; ++r)
#pragma GCC unroll 8
            for (int v = 0; v < KR_NV; ++v) {
                float *c = C + r * rsc + v * KR_VLEN;
                kr_store(c, overwrite ? acc[r][v] : kr_add(acc[r][v], kr_load(c)));
            }
        return;
    }
    float tile[KR_MR * KR_NR] __attribute__((aligned(KR_ALIGN)));
#pragma GCC unroll 32
    for (int r = 0; r < rows; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < KR_NV; ++v)
            kr_store(tile + r * KR_NR + v * KR_VLEN, acc[r][v]);
    for (int64_t r = 0; r < mr; ++r)
        for (int64_t j = 0; j < nr; ++j) {
            float *c = C + r * rsc + j * csc;
            *c = overwrite ? tile[r * KR_NR + j] : *c + tile[r * KR_NR + j];
        }
}

/* An edge tile, mr < MR rows: a product with M = 10 and MR = 8 has one. Computing it with the
 * full kernel on padded rows would cost as much as a full tile, which for M = 10 is 16 rows of
 * work for 10. So each row count up to 8 has its own copy of the kernel, with only the
 * accumulators it needs (taller edges, possible only with MR > 9, use the full kernel). */
static __attribute__((noinline)) void
kr_microkernel_edge(int64_t kc, const float *restrict A, int64_t rsa, int64_t csa,
                    const float *restrict B, int64_t ldb, float *restrict C, int64_t rsc,
                    int64_t csc, int64_t mr, int64_t nr, int overwrite)
{
#define KR_EDGE_ROWS(n) \
    case n:                                                                                       \
        kr_microkernel_rows(n, kc, A, rsa, csa, B, ldb, C, rsc, csc, mr, nr, overwrite);           \
        return;
    switch (mr) {
        KR_EDGE_ROWS(1)
#if KR_MR > 2
        KR_EDGE_ROWS(2)
#endif
#if KR_MR > 3
        KR_EDGE_ROWS(3)
#endif
#if KR_MR > 4
        KR_EDGE_ROWS(4)
#endif
#if KR_MR > 5
        KR_EDGE_ROWS(5)
#endif
#if KR_MR > 6
        KR_EDGE_ROWS(6)
#endif
#if KR_MR > 7
        KR_EDGE_ROWS(7)
#endif
#if KR_MR > 8
        KR_EDGE_ROWS(8)
#endif
    default:
        kr_microkernel_rows(KR_MR, kc, A, rsa, csa, B, ldb, C, rsc, csc, mr, nr, overwrite);
    }
#undef KR_EDGE_ROWS
}

/* The ir loop: the micro-kernel down one NR-wide panel of B (at b, row stride ldb), over the
 * mc rows of the A block: full MR-row tiles, then an edge tile if mc is not a multiple of MR.
 * A is packed (a_packed: panels of MR rows one after another, rsa = 1 and csa = MR inside a
 * panel) or in place (strides rsa, csa). Inlined with constant layouts, the packed ones
 * compile to rung 4's code exactly. KR_EDGE_KERNELS=0 runs the edge tile on the full kernel,
 * as rung 5 once did (python -m krypton.ablation measures what the copies buy). */
#ifndef KR_EDGE_KERNELS
#  define KR_EDGE_KERNELS 1
#endif
static inline __attribute__((always_inline)) void
kr_ir_loop(int64_t mc, int64_t kc, const float *restrict A, int a_packed, int64_t rsa,
           int64_t csa, const float *restrict b, int64_t ldb, float *restrict C, int64_t rsc,
           int64_t csc, int64_t nr, int overwrite)
{
    const int64_t panel_rsa = a_packed ? 1 : rsa, panel_csa = a_packed ? KR_MR : csa;
    const int64_t a_step = a_packed ? KR_MR * kc : KR_MR * rsa;   /* to the next MR rows */
    int64_t ir = 0;
    for (; ir + KR_MR <= mc; ir += KR_MR)                    /* ir: one MR-tall panel of A */
        kr_microkernel_rows(KR_MR, kc, A + ir / KR_MR * a_step, panel_rsa, panel_csa, b, ldb,
                            C + ir * rsc, rsc, csc, KR_MR, nr, overwrite);
    if (ir == mc)
        return;
    const float *a = A + ir / KR_MR * a_step;
    if (KR_EDGE_KERNELS)
        kr_microkernel_edge(kc, a, panel_rsa, panel_csa, b, ldb, C + ir * rsc, rsc, csc,
                            mc - ir, nr, overwrite);
    else
        kr_microkernel_rows(KR_MR, kc, a, panel_rsa, panel_csa, b, ldb, C + ir * rsc, rsc, csc,
                            mc - ir, nr, overwrite);
}

/* The two loops around the micro-kernel (jr, ir) over one mc x kc block of A and the panels
 * [panel_begin, panel_end) of B. C points at C[ic][jc]. A is either packed (a_packed) or read
 * in place with strides rsa, csa. B is packed (B == NULL) or read in place from B with row
 * stride rsb (its columns contiguous), except a last panel narrower than NR, which is always
 * packed: reading NR columns in place would run past the end of B's rows. */
static void kr_macrokernel(int64_t mc, int64_t nc, int64_t kc, int64_t panel_begin,
                           int64_t panel_end, const float *restrict A, int a_packed, int64_t rsa,
                           int64_t csa, const float *restrict B, int64_t rsb,
                           const float *restrict Bp, int64_t panel_stride, float *restrict C,
                           int64_t rsc, int64_t csc, int overwrite)
{
    for (int64_t p = panel_begin; p < panel_end; ++p) {      /* jr: one NR-wide panel of B (in L2) */
        const int64_t jr = p * KR_NR;
        const int64_t nr = kr_min(KR_NR, nc - jr);
        const int b_packed = !B || nr < KR_NR;
        const float *b = b_packed ? Bp + p * panel_stride : B + jr;
        float *c = C + jr * csc;
        /* One call per layout, so that each is compiled for its own strides: the packed ones
         * are constants, the in-place ones variables. */
        if (a_packed && b_packed)
            kr_ir_loop(mc, kc, A, 1, 0, 0, b, KR_NR, c, rsc, csc, nr, overwrite);
        else if (a_packed)
            kr_ir_loop(mc, kc, A, 1, 0, 0, b, rsb, c, rsc, csc, nr, overwrite);
        else if (b_packed)
            kr_ir_loop(mc, kc, A, 0, rsa, csa, b, KR_NR, c, rsc, csc, nr, overwrite);
        else
            kr_ir_loop(mc, kc, A, 0, rsa, csa, b, rsb, c, rsc, csc, nr, overwrite);
    }
}

/* Packing B pays when each packed panel is read by many MR-row panels of A: by all
 * ceil(M / MR) of them, over the ic loop. With few rows (the weight gradient dW = dY^T X of an
 * MLP's output layer has M = 10, its batches 128) the copy costs about as much as the
 * micro-kernels that read it. Then, if B's rows are contiguous (vector loads need that), full
 * NR-wide panels are read where they are. Measured on the team's Zen 4, one thread: in place
 * was 20-40% faster for M <= 16, 5-10% for M = 24..128 with K = 128..1024, N = 256..1024,
 * and 5-15% slower from M = 256 on (packing is amortized) or for a B of 12 MB and more (it
 * comes from memory, and the packed copy is read from L2 instead). */
#ifndef KR_B_IN_PLACE_TILES
#  define KR_B_IN_PLACE_TILES 16
#endif
#define KR_B_IN_PLACE_FLOATS (1 << 20)   /* 4 MiB of B */
static int kr_use_b_in_place(int64_t M, int64_t K, int64_t N, int64_t csb)
{
    return csb == 1 && M <= KR_B_IN_PLACE_TILES * KR_MR && K <= KR_B_IN_PLACE_FLOATS / N;
}

/* The panels of a kc x nc block of B that must be packed are [first, last panel]: all of
 * them, or with B in place only the last one, if it is narrower than NR (else none). */
static int64_t kr_first_panel_to_pack(int64_t nc, int b_in_place)
{
    const int64_t panels = (nc + KR_NR - 1) / KR_NR;
    return !b_in_place ? 0 : nc % KR_NR ? panels - 1 : panels;
}

/* Packing A pays when the packed block is read many times: once per NR-wide panel of B in the
 * jr loop. Measured on the team's Zen 4 (M = 128, K = 256 and 784, one thread), reading A in
 * place instead was 5-15% faster up to 4 panels of B, level at 8, and 3-7% slower from 16 on:
 * the micro-kernel's broadcasts load one float at a time, from any strides, but eight rows
 * apart they are harder on the caches and prefetchers than one packed stream. So a block of
 * C at most KR_A_IN_PLACE_PANELS panels wide reads A where it is. */
#ifndef KR_A_IN_PLACE_PANELS
#  define KR_A_IN_PLACE_PANELS 8
#endif
static int kr_use_a_in_place(int64_t nc_max)
{
    return nc_max <= KR_A_IN_PLACE_PANELS * KR_NR;
}

static void kr_pack_a_block(int64_t mc, int64_t kc, const float *restrict A, int64_t rsa,
                            int64_t csa, float *restrict Ap)
{
    for (int64_t ir = 0; ir < mc; ir += KR_MR)
        kr_pack_a_panel(kc, kr_min(KR_MR, mc - ir), A + ir * rsa, rsa, csa, Ap + ir * kc);
}

/* C[0:M, 0:N] = 0 for K == 0: the five loops below never run then, but C must be defined. */
static void kr_zero_c(int64_t M, int64_t N, float *restrict C, int64_t ldc)
{
    for (int64_t i = 0; i < M; ++i)
        memset(C + i * ldc, 0, (size_t)N * sizeof(float));
}

/* The five loops for C = A*B, where C has strides (rsc, csc). */
static int kr_packed_five_loops(int64_t M, int64_t N, int64_t K,
                                const float *restrict A, int64_t rsa, int64_t csa,
                                const float *restrict B, int64_t rsb, int64_t csb,
                                float *restrict C, int64_t rsc, int64_t csc, const kr_knobs *knobs)
{
    /* Blocks no larger than the matrix: the buffers are as large as this product needs, not
     * as large as the blocks could be, and a huge knob (say nc = 2^63 - 1) cannot overflow
     * when it is rounded up to whole micro-panels. */
    const int64_t mc_max = kr_round_up(kr_min(knobs->mc, M), KR_MR);
    const int64_t nc_max = kr_round_up(kr_min(knobs->nc, N), KR_NR);
    const int64_t kc_max = kr_min(knobs->kc, K);
    const int a_in_place = kr_use_a_in_place(nc_max);
    float *Ap = a_in_place ? NULL : kr_thread_buffer(KR_BUFFER_A, mc_max, kc_max);
    float *Bp = kr_thread_buffer(KR_BUFFER_B, nc_max, kc_max);
    if ((!a_in_place && !Ap) || !Bp)
        return KR_ENOMEM;

    const int64_t panel_stride = kc_max * KR_NR;
    const int b_in_place = kr_use_b_in_place(M, K, N, csb);
    for (int64_t jc = 0; jc < N; jc += nc_max) {                 /* jc: nc columns of C (L3) */
        const int64_t nc = kr_min(nc_max, N - jc);
        const int64_t panels = (nc + KR_NR - 1) / KR_NR;
        const int64_t pack_begin = kr_first_panel_to_pack(nc, b_in_place);
        for (int64_t pc = 0; pc < K; pc += kc_max) {             /* pc: kc of the depth */
            const int64_t kc = kr_min(kc_max, K - pc);
            const float *b = B + pc * rsb + jc * csb;
            kr_pack_b_panels(kc, nc, pack_begin, panels, b, rsb, csb, Bp, panel_stride);
            for (int64_t ic = 0; ic < M; ic += mc_max) {         /* ic: mc rows of C (L2) */
                const int64_t mc = kr_min(mc_max, M - ic);
                const float *a = A + ic * rsa + pc * csa;
                float *c = C + ic * rsc + jc * csc;
                if (!a_in_place) {
                    kr_pack_a_block(mc, kc, a, rsa, csa, Ap);
                    a = Ap;
                }
                kr_macrokernel(mc, nc, kc, 0, panels, a, !a_in_place, rsa, csa,
                               b_in_place ? b : NULL, rsb, Bp, panel_stride, c, rsc, csc,
                               pc == 0);
            }
        }
    }
    return KR_OK;
}

/* ---- Narrow C: dot products along k ---------------------------------------------------------
 *
 * A product with a handful of columns (the MLP's output layer: N = 10) fits the micro-kernel
 * badly whichever way round it is taken. C = A*B fills 10 of every NR lanes, and the transposed
 * product C^T = B^T A^T (below) needs A transposed into packed panels, a copy as large as A
 * for a few rows of work. So turn the vectors the other way: C[i][j] is the dot product of row
 * i of A and column j of B, and when both are contiguous along k, full vectors of k multiply
 * lane by lane, and each element of C ends as a sum of its vector's lanes (kr_sum4 finishes
 * the four of one column of a tile together). A tile of
 * KR_DOT_ROWS rows x KR_DOT_COLS columns shares each load: per KR_VLEN steps of k, ROWS + COLS
 * loads feed ROWS * COLS FMAs into as many independent accumulators. Rows of A must be
 * contiguous (csa == 1); columns of B are copied into rows of a small buffer when they are not
 * (N x K floats: B is narrow). Each element's sum has the same order for any thread count. */
#define KR_DOT_ROWS 4         /* the four sums of one column are finished together: kr_sum4 */
#if KR_VREGS >= 32
#  define KR_DOT_COLS 5       /* 20 accumulators + 5 vectors of B + 1 of A = 26 of 32 registers */
#else
#  define KR_DOT_COLS 2       /*  8 + 2 + 1 = 11 of 16 */
#endif

#ifndef KR_NARROW_DOT
#  define KR_NARROW_DOT 1     /* 0: narrow C takes the five loops (python -m krypton.ablation) */
#endif
/* N < NR/2: the widths where the five loops waste most of a micro-tile; at most 16: the
 * widths this path was measured on (and B^T stays a small copy). */
static int kr_prefer_dot(int64_t N, int64_t csa)
{
    return KR_NARROW_DOT && N < KR_NR / 2 && N <= 16 && csa == 1;
}

/* One step of KR_VLEN along k for a dot-product tile: `lanes` < KR_VLEN only at the tail of k,
 * where the loads are masked and the missing lanes read as zeros. */
static inline __attribute__((always_inline)) void
kr_dot_step(kr_vec acc[KR_DOT_ROWS][KR_DOT_COLS], const float *const a[KR_DOT_ROWS],
            const float *const b[KR_DOT_COLS], int64_t k, int64_t lanes)
{
    kr_vec bv[KR_DOT_COLS];
#pragma GCC unroll 8
    for (int c = 0; c < KR_DOT_COLS; ++c)
    {
        bv[c] = lanes == KR_VLEN ? kr_load(b[c] + k) : kr_load_n(b[c] + k, lanes);
        KR_IN_REGISTER(bv[c]);   /* one load per vector of B, not one per FMA (kr_simd.h) */
    }
#pragma GCC unroll 8
    for (int r = 0; r < KR_DOT_ROWS; ++r) {
        const kr_vec av = lanes == KR_VLEN ? kr_load(a[r] + k) : kr_load_n(a[r] + k, lanes);
#pragma GCC unroll 8
        for (int c = 0; c < KR_DOT_COLS; ++c)
            acc[r][c] = kr_fma(av, bv[c], acc[r][c]);
    }
}

/* Rows [i_begin, i_end) of C = A * B, with B^T given as rows: Bt[j*ldbt + k] = B[k][j]. A tile
 * at the bottom or right edge re-reads its last row or column of A or B (clamped pointers)
 * and stores only the elements that exist. */
static void kr_dot_rows(int64_t i_begin, int64_t i_end, int64_t N, int64_t K,
                        const float *restrict A, int64_t rsa, const float *restrict Bt,
                        int64_t ldbt, float *restrict C, int64_t ldc)
{
    const int64_t k_full = K - K % KR_VLEN;
    for (int64_t i0 = i_begin; i0 < i_end; i0 += KR_DOT_ROWS) {
        const int64_t rows = kr_min(KR_DOT_ROWS, i_end - i0);
        const float *a[KR_DOT_ROWS];
        for (int r = 0; r < KR_DOT_ROWS; ++r)
            a[r] = A + (i0 + kr_min(r, rows - 1)) * rsa;
        for (int64_t j0 = 0; j0 < N; j0 += KR_DOT_COLS) {
            const int64_t cols = kr_min(KR_DOT_COLS, N - j0);
            const float *b[KR_DOT_COLS];
            for (int c = 0; c < KR_DOT_COLS; ++c)
                b[c] = Bt + (j0 + kr_min(c, cols - 1)) * ldbt;
            kr_vec acc[KR_DOT_ROWS][KR_DOT_COLS];
#pragma GCC unroll 8
            for (int r = 0; r < KR_DOT_ROWS; ++r)
#pragma GCC unroll 8
                for (int c = 0; c < KR_DOT_COLS; ++c)
                    acc[r][c] = kr_zero();
            for (int64_t k = 0; k < k_full; k += KR_VLEN)
                kr_dot_step(acc, a, b, k, KR_VLEN);
            if (k_full < K)
                kr_dot_step(acc, a, b, k_full, K - k_full);
            /* A constant trip count, so acc[.][c] names registers: indexed by a variable,
             * the accumulators would have to live in memory (gcc spills all 20 to the stack). */
#pragma GCC unroll 8
            for (int c = 0; c < KR_DOT_COLS; ++c) {
                float sums[KR_DOT_ROWS];
                kr_sum4(acc[0][c], acc[1][c], acc[2][c], acc[3][c], sums);
                for (int64_t r = 0; r < rows && c < cols; ++r)
                    C[(i0 + r) * ldc + j0 + c] = sums[r];
            }
        }
    }
}

/* B^T as rows for kr_dot_rows: B itself when its columns are contiguous (rsb == 1, a
 * transposed weight such as W.T), else copied into this thread's B buffer. NULL: no memory. */
static const float *kr_dot_b_rows(int64_t N, int64_t K, const float *B, int64_t rsb,
                                  int64_t csb, int64_t *ldbt)
{
    if (rsb == 1) {
        *ldbt = csb;
        return B;
    }
    float *Bt = kr_thread_buffer(KR_BUFFER_B, N, K);
    if (Bt)   /* writes in order; reads walk down one column of B at a time (B is narrow) */
        for (int64_t j = 0; j < N; ++j)
            for (int64_t k = 0; k < K; ++k)
                Bt[j * K + k] = B[k * rsb + j * csb];
    *ldbt = K;
    return Bt;
}

/* A product with few columns would waste most of every NR-wide micro-tile on zero padding
 * (N = 10 with NR = 32 computes 22 columns of zeros). C^T = B^T A^T has the same sums in the
 * same order, so compute that instead, writing C transposed: the narrow side now fills MR. */
static int kr_prefer_transposed(int64_t M, int64_t N)
{
    return N < KR_NR / 2 && M > N;
}

int kr_sgemm_packed(int64_t M, int64_t N, int64_t K,
                    const float *restrict A, int64_t rsa, int64_t csa,
                    const float *restrict B, int64_t rsb, int64_t csb,
                    float *restrict C, int64_t ldc, const kr_knobs *knobs)
{
    if (knobs->mc < 1 || knobs->kc < 1 || knobs->nc < 1)
        return KR_EINVAL;
    if (M == 0 || N == 0)   /* nothing to compute, and no buffer to get */
        return KR_OK;
    if (K == 0) {
        kr_zero_c(M, N, C, ldc);
        return KR_OK;
    }
    if (kr_prefer_dot(N, csa)) {
        int64_t ldbt;
        const float *Bt = kr_dot_b_rows(N, K, B, rsb, csb, &ldbt);
        if (!Bt)
            return KR_ENOMEM;
        kr_dot_rows(0, M, N, K, A, rsa, Bt, ldbt, C, ldc);
        return KR_OK;
    }
    if (kr_prefer_transposed(M, N))
        return kr_packed_five_loops(N, M, K, B, csb, rsb, A, csa, rsa, C, 1, ldc, knobs);
    return kr_packed_five_loops(M, N, K, A, rsa, csa, B, rsb, csb, C, ldc, 1, knobs);
}
