"""Reference solution to notebook 03's exercise 1: read it after trying, not before.

Check it as the tests do:
``exercises.check_kernel(solutions.UNROLLED_K_SOURCE, "kr_sgemm_mine", like="simd")``, after
``solutions = importlib.import_module("solutions.03_simd_solutions")``.

Two values of k per pass over a row of C: per vector of C, one load and one store of C, two loads
of B and two FMAs, so (2 + 1 + 1) / 2 = 2 memory operations per FMA instead of 3. If the loop is
limited by its memory operations (section 6), expect up to 3 / 2 = 1.5x; the measured speed-up is
smaller where B comes from L2 or the loop around it costs. Exercise 2 is a measurement: its answer
is the notebook's own output.
"""

UNROLLED_K_SOURCE = r"""/* simd.c with the k loop unrolled by 2: C loaded and stored once per two FMAs. */
#include "krypton.h"
#include "kr_simd.h"

static int64_t kr_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* c_row[j0, j1) += a * b_row[j0, j1): the old loop, for an odd last k. */
static void kr_row(float *c_row, const float *b_row, kr_vec a, int64_t j0, int64_t j1)
{
    int64_t j = j0;
    for (; j + KR_VLEN <= j1; j += KR_VLEN)
        kr_store(c_row + j, kr_fma(a, kr_load(b_row + j), kr_load(c_row + j)));
    if (j < j1)
        kr_store_n(c_row + j, kr_fma(a, kr_load_n(b_row + j, j1 - j), kr_load_n(c_row + j, j1 - j)),
                   j1 - j);
}

int kr_sgemm_mine(int64_t M, int64_t N, int64_t K,
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

    for (int64_t i0 = 0; i0 < M; i0 += tile_m) {
        const int64_t i1 = kr_min(i0 + tile_m, M);
        for (int64_t k0 = 0; k0 < K; k0 += tile_k) {
            const int64_t k1 = kr_min(k0 + tile_k, K);
            for (int64_t j0 = 0; j0 < N; j0 += tile_n) {
                const int64_t j1 = kr_min(j0 + tile_n, N);
                for (int64_t i = i0; i < i1; ++i) {
                    float *c_row = C + i * ldc;
                    int64_t k = k0;
                    for (; k + 1 < k1; k += 2) {                  /* two values of k per pass */
                        const kr_vec a0 = kr_set1(A[i * rsa + k * csa]);
                        const kr_vec a1 = kr_set1(A[i * rsa + (k + 1) * csa]);
                        const float *b0 = B + k * rsb, *b1 = B + (k + 1) * rsb;
                        int64_t j = j0;
                        for (; j + KR_VLEN <= j1; j += KR_VLEN) { /* load C once, store once */
                            kr_vec c = kr_load(c_row + j);
                            c = kr_fma(a0, kr_load(b0 + j), c);
                            c = kr_fma(a1, kr_load(b1 + j), c);
                            kr_store(c_row + j, c);
                        }
                        if (j < j1) {
                            kr_vec c = kr_load_n(c_row + j, j1 - j);
                            c = kr_fma(a0, kr_load_n(b0 + j, j1 - j), c);
                            c = kr_fma(a1, kr_load_n(b1 + j, j1 - j), c);
                            kr_store_n(c_row + j, c, j1 - j);
                        }
                    }
                    if (k < k1)                                   /* an odd last k */
                        kr_row(c_row, B + k * rsb, kr_set1(A[i * rsa + k * csa]), j0, j1);
                }
            }
        }
    }
    return KR_OK;
}
"""
