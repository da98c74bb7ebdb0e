/* Rung 1 - naive: the triple loop, straight from the definition C[i][j] = sum_k A[i][k] B[k][j].
 *
 * The lesson of this rung is loop order. The three loops can nest in any order and give the
 * same sums; what changes is how memory is walked:
 *   ijk: the inner loop walks down a column of B, one float per 64-byte cache line,
 *        so almost every B load is a cache miss once B outgrows the cache.
 *   ikj: the inner loop walks along a row of B and a row of C, using every float of each
 *        cache line it loads. Same arithmetic, several times faster.
 * The package compiles this rung (and `tiled`) with -fno-tree-vectorize so that both stay
 * scalar code: vector instructions are the lesson of rung 3.
 */
#include "krypton.h"

int kr_sgemm_naive(int64_t M, int64_t N, int64_t K,
                   const float *restrict A, int64_t rsa, int64_t csa,
                   const float *restrict B, int64_t rsb, int64_t csb,
                   float *restrict C, int64_t ldc, const kr_knobs *knobs)
{
    if (knobs->loop_order == 0) {
        /* ijk: one dot product per element of C. */
        for (int64_t i = 0; i < M; ++i) {
            for (int64_t j = 0; j < N; ++j) {
                float sum = 0.0f;
                for (int64_t k = 0; k < K; ++k)          /* k walks a row of A, a column of B */
                    sum += A[i * rsa + k * csa] * B[k * rsb + j * csb];
                C[i * ldc + j] = sum;
            }
        }
        return KR_OK;
    }
    /* ikj: row i of C is built as a sum of rows of B, each scaled by one element of A. */
    for (int64_t i = 0; i < M; ++i) {
        for (int64_t j = 0; j < N; ++j)
            C[i * ldc + j] = 0.0f;
        for (int64_t k = 0; k < K; ++k) {
            const float a_ik = A[i * rsa + k * csa];
            for (int64_t j = 0; j < N; ++j)              /* j walks a row of B and of C */
                C[i * ldc + j] += a_ik * B[k * rsb + j * csb];
        }
    }
    return KR_OK;
}
