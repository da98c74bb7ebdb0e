/* kr_microkernel.h: the MR x NR micro-kernel of the blocked rungs (packed, parallel, small).
 *
 * The micro-kernel holds an MR x NR block of C in vector registers for the whole depth kc of
 * one packed block: per step of k it loads NR floats of B (NV vectors) and MR floats of A (one
 * broadcast each), and does MR x NV vector FMAs. kr_microtile.h defines MR x NR per ISA and
 * says how each was chosen; `python -m krypton.autotune` measures every tile that fits.
 */
#ifndef KR_MICROKERNEL_H
#define KR_MICROKERNEL_H
#include "kr_common.h"
#include "kr_simd.h"
#include "kr_microtile.h"   /* KR_MR x KR_NR: the default micro-tile per ISA, and its checks */

#ifndef KR_PREFETCH_C
#  define KR_PREFETCH_C 1
#endif
#ifndef KR_OPAQUE_C_ROWS   /* see the prefetch of C in kr_microkernel_tile; 0 switches it off */
#  define KR_OPAQUE_C_ROWS 1
#endif

/* Edge tiles: fewer than MR rows, or (rung 7) a last panel of fewer than NV vectors.
 * By default (rungs 5 and 6) the full kernel computes them on clamped rows and padded
 * columns, as BLIS pads: simple, and as costly as a full tile; a copy of its own, so that the
 * copy of full tiles knows mr = MR and reads A's rows at constant offsets. With
 * KR_EDGE_KERNELS (rung 7, where a product of 10 rows is common, or N = 784 = 24 x 32 + 16)
 * an edge costs about what it computes, from a few copies of the kernel:
 *   - a narrow last panel of all MR rows runs on the kernel with just the vectors that cover
 *     its columns (v = ceil(nr / VLEN) of NV: 784 = 24 x 32 + 16 ends on one vector, not two);
 *   - a short last panel of r rows below a full one is one tall tile with it, MR + r rows, if
 *     that many rows of accumulators fit the registers (KR_TALL_ROWS): each micro-panel of B
 *     is then read once for all the rows, not once per tile, and the r rows get no kernel of
 *     their own with only r x NV accumulators, fewer than the FMA latency times the pipes
 *     where a core has two 512-bit pipes (with 8-row tiles, M = 10, the weight gradient of a
 *     10-class layer, is one 10-row tile);
 *   - other short rows are split into the powers of two of mr (7 = 4 + 2 + 1), each computed
 *     by a kernel with only that many rows of accumulators and all NV vectors;
 *   - a corner, short and narrow, takes whichever of the two does fewer vector FMAs per step
 *     of k: mr x NV for the rows' kernels, MR x v for the narrow one on clamped rows.
 * `python -m krypton.ablation` measures what they buy. */
#ifndef KR_EDGE_KERNELS
#  define KR_EDGE_KERNELS 0
#endif
/* Rows a tall tile may add to MR: fewer than MR (they are the rows of one more panel), as
 * many as fit the registers beside B's NV vectors and A's broadcasts, and at most 3: 11 x 32
 * on AVX-512 holds 22 accumulators in 25 of 32 registers (an FMA there takes its broadcast of
 * A from memory), and reads A in place through 11 row pointers; 12 rows in place, 12 pointers
 * of x86's 16 general registers, ran slower than 8 + 4. AArch64's FMAs read registers only,
 * and gcc and clang load a step's values of A, one register per row, before its FMAs: NEON's
 * 8 x 8 takes 2 (10 x 2 accumulators + 2 of B + 10 of A = 32; with 3, gcc kept some on the
 * stack: tests/test_codegen.py). 0 on AVX2's 6 x 16, whose 16 vector registers are full.
 * Measure: time 10 x 128 x 256:tn, 11 x 128 x 1024 and 12 x 128 x 256:tn (M x K x N) on this
 * rung against one compiled after `#define KR_TALL_ROWS 0` (or 4), in interleaved rounds. */
#ifndef KR_TALL_ROWS
#  if KR_EDGE_KERNELS
#    if KR_ISA == KR_ISA_NEON   /* a register per row of A */
#      define KR_TALL_FIT ((KR_VREGS - KR_NV) / (KR_NV + 1) - KR_MR)
#    else                       /* one broadcast, or none */
#      define KR_TALL_FIT ((KR_VREGS - KR_NV - 1) / KR_NV - KR_MR)
#    endif
#    define KR_TALL_CAP (KR_MR - 1 < 3 ? KR_MR - 1 : 3)
#    define KR_TALL_ROWS \
         (KR_TALL_FIT > KR_TALL_CAP ? KR_TALL_CAP : KR_TALL_FIT > 0 ? KR_TALL_FIT : 0)
#  else
#    define KR_TALL_ROWS 0
#  endif
#endif
#if KR_TALL_ROWS < 0 || KR_TALL_ROWS > 7 || (KR_TALL_ROWS >= KR_MR && KR_TALL_ROWS > 0)
#  error "KR_TALL_ROWS must be from 0 to 7 and below KR_MR: a tall tile spans two panels of rows"
#endif
#define KR_TILE_ROWS (KR_MR + KR_TALL_ROWS)   /* the most rows a tile holds */

/* The rows of the next tile of a block when `left` rows remain: MR; all of them at the bottom
 * edge; and, with KR_TALL_ROWS, a short remainder together with the full panel above it. */
static inline int64_t kr_tile_rows(int64_t left)
{
    return left <= KR_MR + KR_TALL_ROWS ? left : KR_MR;
}

/* A rows x (vectors x KR_VLEN) block of A*B over depth kc, held in registers; rows and vectors
 * are compile-time constants wherever this is inlined, so each pair gets its own code with
 * exactly rows x vectors accumulators (a full tile: KR_MR x KR_NV). Element (r, k) of the A
 * panel is A[r*rsa + k*csa]: a packed micro-panel for rsa = 1, csa = MR, or the caller's
 * matrix in place; a tall tile's rows from MR on are those of the next panel, psa further on
 * (KR_TALL_ROWS, above). Row k of the B panel starts at B[k*rsb]; the first vectors x KR_VLEN
 * of its floats are read. Only the first mr rows and nr columns of C are stored, so only mr
 * rows of A are read: a kernel with more rows than that re-reads row mr - 1 for the rest.
 * `overwrite` on the first kc block (C = AB); later blocks add (C += AB). A full tile of a
 * row-major C is stored straight from the registers; any other (an edge, or a transposed C
 * with csc != 1) goes through a small buffer, so the padding never lands outside C. */
static inline __attribute__((always_inline)) void
kr_microkernel_tile(const int rows, const int vectors, int64_t kc, const float *restrict A,
                    int64_t rsa, int64_t csa, int64_t psa, const float *restrict B, int64_t rsb,
                    float *restrict C, int64_t rsc, int64_t csc, int64_t mr, int64_t nr,
                    int overwrite)
{
    const float *row[KR_TILE_ROWS];
KR_UNROLL
    for (int r = 0; r < rows; ++r) {
        const int64_t i = kr_min(r, mr - 1);
        row[r] = i < KR_MR ? A + i * rsa : A + psa + (i - KR_MR) * rsa;
    }
    kr_vec acc[KR_TILE_ROWS][KR_NV];
KR_UNROLL
    for (int r = 0; r < rows; ++r)
KR_UNROLL
        for (int v = 0; v < vectors; ++v)
            acc[r][v] = kr_zero();
    /* C is touched only after the k loop. Ask for its lines now, so that on large matrices,
     * where C lives in memory, the loads at the end do not stall (as BLIS's kernels do;
     * notebook 05 measures it with KR_PREFETCH_C 0). A row of the tile need not start on a
     * cache line (NumPy aligns its arrays to 16 bytes, not 64), so it may touch one line more
     * than NR floats fill: asking for every line-step and for the row's last float covers
     * them all. The rows are walked from a copy of C that the compiler cannot see through (an
     * empty asm): it would otherwise keep the MR row addresses it computes here for the
     * stores after the loop, and with A read in place (rung 7) the registers run out, so the
     * addresses wait on the stack and every store first reloads one. Measure: time 128 x 2 x
     * 256 and 2048 x 2048 x 2048 on rung 7 against it compiled after `#define
     * KR_OPAQUE_C_ROWS 0` (krypton.kernels.compile_source), in interleaved rounds. */
    if (KR_PREFETCH_C && csc == 1) {
        const float *c_row = C;
#if KR_OPAQUE_C_ROWS
        __asm__("" : "+r"(c_row));
#endif
        for (int r = 0; r < rows; ++r, c_row += rsc) {
            for (int j = 0; j < vectors * KR_VLEN; j += KR_ALIGN / (int)sizeof(float))
                __builtin_prefetch(c_row + j, 1, 3);
            __builtin_prefetch(c_row + vectors * KR_VLEN - 1, 1, 3);
        }
    }

KR_UNROLL_K
    for (int64_t k = 0; k < kc; ++k) {                 /* depth: one rank-1 update per step */
        kr_vec b[KR_NV];
KR_UNROLL
        for (int v = 0; v < vectors; ++v)
            b[v] = kr_load(B + k * rsb + v * KR_VLEN);
KR_UNROLL
        for (int r = 0; r < rows; ++r) {
            const kr_vec a = kr_set1(row[r][k * csa]);
KR_UNROLL
            for (int v = 0; v < vectors; ++v)
                acc[r][v] = kr_fma(a, b[v], acc[r][v]);
        }
    }

    if (mr == rows && nr == vectors * KR_VLEN && csc == 1) {
KR_UNROLL
        for (int r = 0; r < rows; ++r)
KR_UNROLL
            for (int v = 0; v < vectors; ++v) {
                float *c = C + r * rsc + v * KR_VLEN;
                kr_store(c, overwrite ? acc[r][v] : kr_add(acc[r][v], kr_load(c)));
            }
        return;
    }
    float tile[KR_TILE_ROWS * KR_NR] __attribute__((aligned(KR_ALIGN)));
KR_UNROLL
    for (int r = 0; r < rows; ++r)
KR_UNROLL
        for (int v = 0; v < vectors; ++v)
            kr_store(tile + r * KR_NR + v * KR_VLEN, acc[r][v]);
    for (int64_t r = 0; r < mr; ++r)
        for (int64_t j = 0; j < nr; ++j) {
            float *c = C + r * rsc + j * csc;
            *c = overwrite ? tile[r * KR_NR + j] : *c + tile[r * KR_NR + j];
        }
}

/* Rung 7 reads operands in place (KR_READ_IN_PLACE, csrc/small.c): then the micro-kernel meets
 * panels of other strides. B's row stride costs one add per step of k, so the inlined copy
 * takes it as it comes there; an A of any strides gets a second inlined copy (a call per tile
 * would cost more than a short k loop: K = 10 is common in training). */
#ifndef KR_READ_IN_PLACE
#  define KR_READ_IN_PLACE 0
#endif

/* An edge tile (see "Edge tiles" above): fewer than MR rows, or a narrow last panel. */
static __attribute__((noinline)) void
kr_microkernel_edge(int64_t kc, const float *restrict A, int64_t rsa, int64_t csa,
                    const float *restrict B, int64_t rsb, float *restrict C, int64_t rsc,
                    int64_t csc, int64_t mr, int64_t nr, int overwrite)
{
#if KR_EDGE_KERNELS
    const int64_t vectors = (nr + KR_VLEN - 1) / KR_VLEN;   /* of B that hold real columns */
    if (vectors < KR_NV && KR_MR * vectors <= mr * KR_NV) {   /* narrow: fewer vectors */
    /* One copy per count of vectors below NV; a count the tile does not have is never taken,
     * and compiles as a 1-vector copy (a kernel wider than NV would not fit acc[][KR_NV]). */
#  define KR_EDGE_VECTORS(v)                                                                   \
        if (vectors == (v) && KR_NV > (v)) {                                                    \
            kr_microkernel_tile(KR_MR, KR_NV > (v) ? (v) : 1, kc, A, rsa, csa, 0, B, rsb, C,    \
                                rsc, csc, mr, nr, overwrite);                                   \
            return;                                                                             \
        }
        KR_EDGE_VECTORS(1)
        KR_EDGE_VECTORS(2)
        KR_EDGE_VECTORS(3)
        KR_EDGE_VECTORS(4)
        KR_EDGE_VECTORS(5)
        KR_EDGE_VECTORS(6)
        KR_EDGE_VECTORS(7)
#  undef KR_EDGE_VECTORS
#  if KR_NV > 8   /* a tile of more vectors than the copies above (one row of 9 or more) */
        if (mr == KR_MR) {
            kr_microkernel_tile(KR_MR, KR_NV, kc, A, rsa, csa, 0, B, rsb, C, rsc, csc, mr, nr,
                                overwrite);
            return;
        }
#  endif
    }
#  define KR_EDGE_ROWS(n)                                                                       \
    if (KR_MR > (n) && (mr & (n))) {                                                            \
        kr_microkernel_tile(KR_MR > (n) ? (n) : 1, KR_NV, kc, A, rsa, csa, 0, B, rsb, C, rsc,   \
                            csc, (n), nr, overwrite);                                           \
        A += (n) * rsa;                                                                         \
        C += (n) * rsc;                                                                         \
    }
    KR_EDGE_ROWS(16)
    KR_EDGE_ROWS(8)
    KR_EDGE_ROWS(4)
    KR_EDGE_ROWS(2)
    KR_EDGE_ROWS(1)
#  undef KR_EDGE_ROWS
#else
    kr_microkernel_tile(KR_MR, KR_NV, kc, A, rsa, csa, 0, B, rsb, C, rsc, csc, mr, nr, overwrite);
#endif
}

#if KR_TALL_ROWS
/* A tall tile, MR + 1 to MR + KR_TALL_ROWS rows: rows from MR on are the next panel's, psa
 * after A. A narrow last panel is taken as a full-height tile and a short one below it, each
 * with the edge kernels' fewer vectors. */
static __attribute__((noinline)) void
kr_microkernel_tall(int64_t kc, const float *restrict A, int64_t rsa, int64_t csa, int64_t psa,
                    const float *restrict B, int64_t rsb, float *restrict C, int64_t rsc,
                    int64_t csc, int64_t mr, int64_t nr, int overwrite)
{
    if (nr <= (KR_NV - 1) * KR_VLEN) {
        kr_microkernel_edge(kc, A, rsa, csa, B, rsb, C, rsc, csc, KR_MR, nr, overwrite);
        kr_microkernel_edge(kc, A + psa, rsa, csa, B, rsb, C + KR_MR * rsc, rsc, csc,
                            mr - KR_MR, nr, overwrite);
        return;
    }
    /* One copy per height; a height beyond KR_TALL_ROWS is never taken (kr_tile_rows). */
#define KR_TALL(n)                                                                              \
    if (mr == KR_MR + (n) && KR_TALL_ROWS >= (n)) {                                             \
        kr_microkernel_tile(KR_MR + (KR_TALL_ROWS >= (n) ? (n) : 0), KR_NV, kc, A, rsa, csa,    \
                            psa, B, rsb, C, rsc, csc, mr, nr, overwrite);                       \
        return;                                                                                 \
    }
    KR_TALL(1)
    KR_TALL(2)
    KR_TALL(3)
    KR_TALL(4)
    KR_TALL(5)
    KR_TALL(6)
    KR_TALL(7)
#undef KR_TALL
}
#endif

/* C[0:mr, 0:nr] (+)= A panel * B panel: the one call the ir loop makes (mr from kr_tile_rows;
 * the next panel of A, psa after this one, holds a tall tile's rows from MR on). A full tile
 * of a packed A panel (rsa = 1, csa = MR) takes the copy inlined here with constant strides and
 * rows, rung 4's code exactly: the compiler folds every offset into the loads. */
static inline __attribute__((always_inline)) void
kr_microkernel(int64_t mr, int64_t nr, int64_t kc, const float *restrict A, int64_t rsa,
               int64_t csa, int64_t psa, const float *restrict B, int64_t rsb,
               float *restrict C, int64_t rsc, int64_t csc, int overwrite)
{
#if KR_TALL_ROWS
    if (mr > KR_MR) {
        kr_microkernel_tall(kc, A, rsa, csa, psa, B, rsb, C, rsc, csc, mr, nr, overwrite);
        return;
    }
#endif
    (void)psa;
    if (mr < KR_MR || (KR_EDGE_KERNELS && nr <= (KR_NV - 1) * KR_VLEN)) {
        kr_microkernel_edge(kc, A, rsa, csa, B, rsb, C, rsc, csc, mr, nr, overwrite);
        return;
    }
#if KR_READ_IN_PLACE
    if (rsa != 1 || csa != KR_MR) {
        kr_microkernel_tile(KR_MR, KR_NV, kc, A, rsa, csa, 0, B, rsb, C, rsc, csc, KR_MR, nr,
                            overwrite);
        return;
    }
#else
    rsb = KR_NR;   /* rungs 5 and 6 pack B: a constant stride, folded into the loads */
#endif
    kr_microkernel_tile(KR_MR, KR_NV, kc, A, 1, KR_MR, 0, B, rsb, C, rsc, csc, KR_MR, nr,
                        overwrite);
}

#endif
