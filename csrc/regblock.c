/* Rung 4 - regblock: a register-blocked micro-kernel.
 *
 * Keeps rung 3 (cache tiles, vector FMAs, masked edges) and adds one idea: compute a small
 * KR_MR x KR_NR block of C at a time, with the whole block held in vector registers for the
 * entire k loop. Rung 3 loaded and stored C on every k; here C is loaded once, updated
 * tile_k times in registers, and stored once. Per k step the micro-kernel loads KR_NR floats
 * of B and KR_MR floats of A and does KR_MR * KR_NR multiply-adds on them: the ratio of
 * arithmetic to memory traffic grows with the block, until the registers run out.
 *
 * KR_MR and KR_NR change the generated code, so they are macros (the Python side passes them
 * with -D and checks they fit: KR_MR * KR_NR / KR_VLEN accumulators + KR_NR / KR_VLEN
 * vectors of B + 1 broadcast of A must fit in the ISA's KR_VREGS registers).
 */
#include "krypton.h"
#include "kr_simd.h"
#include "kr_microtile.h"   /* KR_MR x KR_NR (default per ISA, or -D), KR_NV, and the checks */

static int64_t kr_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* C[0:MR, 0:NR] += A[0:MR, k0:k1] * B[k0:k1, 0:NR], the block living in registers.
 * The loops over r and v have constant trip counts and are fully unrolled, so that
 * acc[][] is a set of named registers rather than an array in memory. */
static inline void kr_microkernel(int64_t kc, const float *restrict A, int64_t rsa, int64_t csa,
                                  const float *restrict B, int64_t rsb,
                                  float *restrict C, int64_t ldc)
{
    kr_vec acc[KR_MR][KR_NV];
#pragma GCC unroll 32
    for (int r = 0; r < KR_MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < KR_NV; ++v)
            acc[r][v] = kr_load(C + r * ldc + v * KR_VLEN);

    for (int64_t k = 0; k < kc; ++k) {                /* depth: one rank-1 update per step */
        kr_vec b[KR_NV];
#pragma GCC unroll 8
        for (int v = 0; v < KR_NV; ++v)
            b[v] = kr_load(B + k * rsb + v * KR_VLEN);
#pragma GCC unroll 32
        for (int r = 0; r < KR_MR; ++r) {
            const kr_vec a = kr_set1(A[r * rsa + k * csa]);
#pragma GCC unroll 8
            for (int v = 0; v < KR_NV; ++v)
                acc[r][v] = kr_fma(a, b[v], acc[r][v]);
        }
    }

#pragma GCC unroll 32
    for (int r = 0; r < KR_MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < KR_NV; ++v)
            kr_store(C + r * ldc + v * KR_VLEN, acc[r][v]);
}

/* The edges of a tile, where a full KR_MR x KR_NR block does not fit: rung 3's vector loop. */
static void kr_edge_block(int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t k0, int64_t k1,
                          const float *restrict A, int64_t rsa, int64_t csa,
                          const float *restrict B, int64_t rsb, float *restrict C, int64_t ldc)
{
    for (int64_t i = i0; i < i1; ++i) {
        float *c_row = C + i * ldc;
        for (int64_t k = k0; k < k1; ++k) {
            const kr_vec a_ik = kr_set1(A[i * rsa + k * csa]);
            const float *b_row = B + k * rsb;
            int64_t j = j0;
            for (; j + KR_VLEN <= j1; j += KR_VLEN)
                kr_store(c_row + j, kr_fma(a_ik, kr_load(b_row + j), kr_load(c_row + j)));
            if (j < j1)
                kr_store_n(c_row + j, kr_fma(a_ik, kr_load_n(b_row + j, j1 - j),
                                             kr_load_n(c_row + j, j1 - j)), j1 - j);
        }
    }
}

int kr_sgemm_regblock(int64_t M, int64_t N, int64_t K,
                      const float *restrict A, int64_t rsa, int64_t csa,
                      const float *restrict B, int64_t rsb, int64_t csb,
                      float *restrict C, int64_t ldc, const kr_knobs *knobs)
{
    const int64_t tile_m = knobs->tile_m, tile_n = knobs->tile_n, tile_k = knobs->tile_k;
    if (tile_m < 1 || tile_n < 1 || tile_k < 1 || (csb != 1 && N > 1))
        return KR_EINVAL;

    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j)
            C[i * ldc + j] = 0.0f;

    for (int64_t i0 = 0; i0 < M; i0 += tile_m) {              /* rows of C, a tile at a time */
        const int64_t i1 = kr_min(i0 + tile_m, M);
        for (int64_t k0 = 0; k0 < K; k0 += tile_k) {          /* depth: one slice of A and B */
            const int64_t k1 = kr_min(k0 + tile_k, K);
            for (int64_t j0 = 0; j0 < N; j0 += tile_n) {      /* columns: the B tile reused below */
                const int64_t j1 = kr_min(j0 + tile_n, N);
                int64_t i = i0;
                for (; i + KR_MR <= i1; i += KR_MR) {          /* MR rows of the tile at a time */
                    int64_t j = j0;
                    for (; j + KR_NR <= j1; j += KR_NR)        /* NR columns: one micro-tile */
                        kr_microkernel(k1 - k0, A + i * rsa + k0 * csa, rsa, csa,
                                       B + k0 * rsb + j, rsb, C + i * ldc + j, ldc);
                    kr_edge_block(i, i + KR_MR, j, j1, k0, k1, A, rsa, csa, B, rsb, C, ldc);
                }
                kr_edge_block(i, i1, j0, j1, k0, k1, A, rsa, csa, B, rsb, C, ldc);
            }
        }
    }
    return KR_OK;
}
