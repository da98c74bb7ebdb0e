/* kr_pack.h: the packers of the blocked rungs, and the views they return.
 *
 * A packer copies the block of A or B the micro-kernel is about to read into micro-panels laid
 * out in exactly the order it reads them, and returns a view: where micro-panel p starts and
 * how to step inside it. The loops read through the view and never ask whether a copy was made,
 * so reading an operand in place (rung 7's choice, kr_operand.read_in_place, compiled in with
 * KR_READ_IN_PLACE) is the packer's business alone, as BLIS's bls_packm_a returns its buffer
 * with its strides:
 *
 *   packed B: kc x nc block as NR-wide micro-panels: panel p holds B[k][p*NR .. p*NR+NR) for
 *             k = 0..kc, one row of NR floats after another, zero-padded beyond nc.
 *   packed A: mc x kc block as MR-tall micro-panels: panel p holds A[p*MR .. p*MR+MR)[k] for
 *             k = 0..kc, one column of MR floats after another, zero-padded beyond mc.
 */
#ifndef KR_PACK_H
#define KR_PACK_H
#include "kr_microkernel.h"

/* An operand as the caller passed it: element (i, j) is data[i*rs + j*cs]. */
typedef struct kr_operand {
    const float *data;
    int64_t rs, cs;
    int read_in_place;   /* rung 7's plan: the packer hands out the operand itself */
} kr_operand;

/* Micro-panel p starts at data + p*ps; inside it, element (i, j) is at i*rs + j*cs. */
typedef struct kr_view {
    const float *data;
    int64_t rs, cs, ps;
} kr_view;

/* The block sizes of one product: no larger than the matrix, so the buffers are as large as
 * this product needs, and a huge knob (say nc = 2^63 - 1) cannot overflow when it is rounded
 * up to whole micro-panels. */
typedef struct kr_blocks { int64_t mc, kc, nc; } kr_blocks;

/* n cut into the fewest pieces of at most `most`, as even as they can be: the depth of each kc
 * block. C is read and written once per kc block, so a shallow last block (K = 1024 with kc =
 * 320 leaves 64) pays that traffic for little work; four blocks of 256 do not. */
static inline int64_t kr_even_split(int64_t n, int64_t most)
{
    if (n <= most)
        return n;
    const int64_t pieces = n / most + (n % most != 0);
    return n / pieces + (n % pieces != 0);
}

static inline kr_blocks kr_blocks_for(int64_t M, int64_t N, int64_t K,
                                      const kr_knobs *knobs)
{
    return (kr_blocks){.mc = kr_round_up(kr_min(knobs->mc, M), KR_MR),
                       .kc = kr_even_split(K, knobs->kc),
                       .nc = kr_round_up(kr_min(knobs->nc, N), KR_NR)};
}

/* Columns [j_begin, j_end) (whole panels) of the kc x nc block of B at B[pc][jc], packed into
 * Bp; panel p at Bp + p * panel_stride. The stride is the largest kc times NR, so each panel
 * keeps its place when the last, shorter kc block is packed (rung 6's threads rely on that).
 * Read in place, B's rows must be contiguous and nc a whole number of panels (rung 7 sees to
 * it): its panels then lie NR floats apart in B itself. */
static inline kr_view kr_pack_b(const kr_operand *restrict B, int64_t pc, int64_t jc,
                                int64_t kc, int64_t nc, int64_t j_begin, int64_t j_end,
                                float *restrict Bp, int64_t panel_stride)
{
    const int64_t rsb = B->rs, csb = B->cs;
    const float *block = B->data + pc * rsb + jc * csb;
#if KR_READ_IN_PLACE
    if (B->read_in_place)
        return (kr_view){.data = block, .rs = rsb, .cs = 1, .ps = KR_NR};
#endif
    for (int64_t j0 = j_begin; j0 < j_end; j0 += KR_NR) {   /* one NR-wide panel at a time */
        const int64_t nr = kr_min(KR_NR, nc - j0);
        const float *src = block + j0 * csb;
        float *dst = Bp + j0 / KR_NR * panel_stride;
        int64_t k_done = 0, j_done = 0;   /* a block [0, k_done) x [0, j_done) already packed */
        if (csb == 1) {                                 /* rows contiguous: vector copies */
            for (int64_t k = 0; k < kc; ++k)
                for (int v = 0; v < KR_NV; ++v) {
                    const int64_t lanes = kr_min(KR_VLEN, nr - v * KR_VLEN);
                    const float *from = src + k * rsb + v * KR_VLEN;
                    kr_store(dst + k * KR_NR + v * KR_VLEN, lanes == KR_VLEN ? kr_load(from)
                             : lanes > 0 ? kr_load_n(from, lanes) : kr_zero());
                }
            continue;
        }
#ifdef KR_TRANSPOSE_BLOCK
        if (rsb == 1) {   /* B transposed, columns contiguous: square blocks in registers */
            const int64_t t = KR_TRANSPOSE_BLOCK;
            k_done = kc - kc % t;
            j_done = nr - nr % t;
            for (int64_t k0 = 0; k0 < k_done; k0 += t)
                for (int64_t j = 0; j < j_done; j += t)
                    kr_transpose_block(src + k0 + j * csb, csb, dst + k0 * KR_NR + j, KR_NR);
        }
#endif
        /* The rest (all of it for other strides) in a blocked transpose: for 16 rows k at a
         * time, walk down each column j, so the 16 x NR block read and the one written both
         * stay in L1 whatever the distance between columns; zeros beyond nr. In rows the square
         * blocks covered, only the columns from j_done on are left, so the walk starts there. */
        for (int64_t k0 = 0; k0 < kc; k0 += 16) {
            const int64_t k1 = kr_min(k0 + 16, kc);
            for (int64_t j = k1 <= k_done ? j_done : 0; j < KR_NR; ++j)
                for (int64_t k = j < j_done ? kr_max(k0, k_done) : k0; k < k1; ++k)
                    dst[k * KR_NR + j] = j < nr ? src[k * rsb + j * csb] : 0.0f;
        }
    }
    return (kr_view){.data = Bp, .rs = KR_NR, .cs = 1, .ps = panel_stride};
}

/* A row-major A is packed in square blocks transposed in registers (KR_TRANSPOSE_BLOCK, as a
 * transposed B is) where MR is a multiple of the block; a move per float otherwise. Measure
 * it: time the packed rung on a large square against the source compiled after
 * `#define KR_PACK_A_BLOCKS 0` (krypton.kernels.compile_source), one run, interleaved. */
#ifndef KR_PACK_A_BLOCKS
#  define KR_PACK_A_BLOCKS 1
#endif
/* The mc x kc block of A at A[ic][pc], packed into Ap as MR-tall micro-panels, or A itself. */
static inline kr_view kr_pack_a(const kr_operand *restrict A, int64_t ic, int64_t pc,
                                int64_t mc, int64_t kc, float *restrict Ap)
{
    const int64_t rsa = A->rs, csa = A->cs;
    const float *block = A->data + ic * rsa + pc * csa;
#if KR_READ_IN_PLACE
    if (A->read_in_place)
        return (kr_view){.data = block, .rs = rsa, .cs = csa, .ps = KR_MR * rsa};
#endif
    for (int64_t ir = 0; ir < mc; ir += KR_MR) {        /* one MR-tall panel at a time */
        const int64_t mr = kr_min(KR_MR, mc - ir);
        const float *src = block + ir * rsa;
        float *dst = Ap + ir * kc;
        int64_t k_done = 0;   /* columns [0, k_done) of the panel already packed */
#ifdef KR_TRANSPOSE_BLOCK
        if (KR_PACK_A_BLOCKS && csa == 1 && mr == KR_MR && KR_MR % KR_TRANSPOSE_BLOCK == 0) {
            const int64_t t = KR_TRANSPOSE_BLOCK;
            k_done = kc - kc % t;
            for (int64_t k0 = 0; k0 < k_done; k0 += t)
                for (int64_t r0 = 0; r0 < KR_MR; r0 += t)
                    kr_transpose_block(src + r0 * rsa + k0, rsa, dst + k0 * KR_MR + r0, KR_MR);
        }
#endif
        for (int64_t k = k_done; k < kc; ++k) {         /* depth: one column of the panel */
            int64_t r = 0;
            for (; r < mr; ++r)
                dst[k * KR_MR + r] = src[r * rsa + k * csa];
            for (; r < KR_MR; ++r)
                dst[k * KR_MR + r] = 0.0f;
        }
    }
    return (kr_view){.data = Ap, .rs = 1, .cs = KR_MR, .ps = KR_MR * kc};
}

#endif
