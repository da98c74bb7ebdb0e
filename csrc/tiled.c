/* Rung 2 - tiled: cache blocking.
 *
 * Keeps rung 1's lesson (the ikj order, rows of B and C in the inner loop) and adds one idea:
 * work on tiles small enough to stay in cache while they are reused. A tile_k x tile_n block
 * of B is loaded once from memory and then used for all tile_m rows of the C tile, instead
 * of being streamed from memory again for every row of C.
 *
 *   for each tile_m rows of C  (i0)
 *     for each tile_k slice of K  (k0)   the B tile B[k0:k0+tile_k, j0:j0+tile_n] ...
 *       for each tile_n columns (j0)     ... stays in L1/L2 across the rows i of this tile
 *         ikj loops inside the tile
 *
 * Still scalar (compiled with -fno-tree-vectorize): vector instructions come in rung 3.
 */
#include "krypton.h"

static int64_t kr_min(int64_t a, int64_t b) { return a < b ? a : b; }

int kr_sgemm_tiled(int64_t M, int64_t N, int64_t K,
                   const float *restrict A, int64_t rsa, int64_t csa,
                   const float *restrict B, int64_t rsb, int64_t csb,
                   float *restrict C, int64_t ldc, const kr_knobs *knobs)
{
    const int64_t tile_m = knobs->tile_m, tile_n = knobs->tile_n, tile_k = knobs->tile_k;
    if (tile_m < 1 || tile_n < 1 || tile_k < 1)
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
                for (int64_t i = i0; i < i1; ++i) {
                    for (int64_t k = k0; k < k1; ++k) {
                        const float a_ik = A[i * rsa + k * csa];
                        for (int64_t j = j0; j < j1; ++j)     /* a row of the B and C tiles */
                            C[i * ldc + j] += a_ik * B[k * rsb + j * csb];
                    }
                }
            }
        }
    }
    return KR_OK;
}
