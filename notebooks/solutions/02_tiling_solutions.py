"""Reference solution to notebook 02's exercise 2: read it after trying, not before.

Check it as the notebook checks yours:
``exercises.check_kernel(solutions.SWAPPED_SOURCE, "kr_sgemm_mine", like="tiled")``, after
``solutions = importlib.import_module("solutions.02_tiling_solutions")``.

With j0 outside k0, one tile_m x tile_n tile of C stays put (in L1/L2) while k0 runs through
all of K: C is reused more (it is read and written once per tile_k slice, from cache), and each
B tile is used once per i0 and then not again until the next i0, so B is reused less.
Exercise 1 is a measurement: its answer is the notebook's own map for N = 1000.
"""

SWAPPED_SOURCE = r"""/* tiled.c with the k0 and j0 loops swapped: a tile of C stays put while k0 runs. */
#include "krypton.h"

static int64_t kr_min(int64_t a, int64_t b) { return a < b ? a : b; }

int kr_sgemm_mine(int64_t M, int64_t N, int64_t K,
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
        for (int64_t j0 = 0; j0 < N; j0 += tile_n) {          /* columns: one tile of C stays put */
            const int64_t j1 = kr_min(j0 + tile_n, N);
            for (int64_t k0 = 0; k0 < K; k0 += tile_k) {      /* depth: the whole of K for it */
                const int64_t k1 = kr_min(k0 + tile_k, K);
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
"""
