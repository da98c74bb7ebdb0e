/* Rung 3 - simd: vector fused multiply-adds.
 *
 * Keeps rung 2 (ikj order inside cache tiles) and adds one idea: the inner j loop does
 * KR_VLEN columns per instruction. One element a_ik of A is broadcast to every lane, a row
 * segment of B is loaded, and kr_fma computes a_ik * B + C for KR_VLEN columns in one
 * instruction (16 floats with AVX-512, 8 with AVX2, 4 with NEON; see kr_simd.h).
 * The last partial vector of a row uses masked loads and stores, so no scalar tail loop.
 *
 * Needs unit column stride for B (csb == 1): the Python wrapper copies B otherwise.
 * A keeps any strides, since it is read one element at a time.
 */
#include "krypton.h"
#include "kr_simd.h"

static int64_t kr_min(int64_t a, int64_t b) { return a < b ? a : b; }

int kr_sgemm_simd(int64_t M, int64_t N, int64_t K,
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
                for (int64_t i = i0; i < i1; ++i) {
                    float *c_row = C + i * ldc;
                    for (int64_t k = k0; k < k1; ++k) {
                        const kr_vec a_ik = kr_set1(A[i * rsa + k * csa]);
                        const float *b_row = B + k * rsb;
                        int64_t j = j0;
                        for (; j + KR_VLEN <= j1; j += KR_VLEN)   /* full vectors of the row */
                            kr_store(c_row + j, kr_fma(a_ik, kr_load(b_row + j), kr_load(c_row + j)));
                        if (j < j1)                                /* the masked remainder */
                            kr_store_n(c_row + j, kr_fma(a_ik, kr_load_n(b_row + j, j1 - j),
                                                         kr_load_n(c_row + j, j1 - j)), j1 - j);
                    }
                }
            }
        }
    }
    return KR_OK;
}
