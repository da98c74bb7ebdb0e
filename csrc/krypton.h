/* krypton.h: the one signature every rung of the kernel ladder exports.
 *
 * Every rung computes C = A * B for float32 matrices of any shape (M, N, K >= 0).
 * A is M x K, B is K x N, C is M x N. A and B are read through element strides
 * (row stride, column stride), so a transposed NumPy view (a.T) or a slice is
 * passed as it is, without a copy. C is written row-major with leading dimension ldc.
 *
 * The declarations below (everything that is not a preprocessor line) are also
 * the cffi cdef: krypton/kernels.py reads this file, so Python and C cannot drift.
 */
#ifndef KRYPTON_H
#define KRYPTON_H
#include <stdint.h>

/* Runtime knobs: sizes that do not change the generated code. Each rung reads the
 * ones it uses and ignores the rest. Knobs that change code (MR, NR, ISA) are macros. */
typedef struct kr_knobs {
    int64_t loop_order;  /* naive: 0 = ijk (textbook), 1 = ikj (streams rows of B and C) */
    int64_t tile_m;      /* tiled, simd, regblock: rows of C per cache tile */
    int64_t tile_n;      /* tiled, simd, regblock: columns of C per cache tile */
    int64_t tile_k;      /* tiled, simd, regblock: depth of the A and B tiles */
    int64_t mc;          /* packed, parallel: rows of the packed A block (fits in L2) */
    int64_t kc;          /* packed, parallel: depth of packed panels (B micro-panel: 1/8 of L2) */
    int64_t nc;          /* packed, parallel: columns of the packed B block (fits in L3) */
    int64_t threads;     /* parallel: number of threads */
} kr_knobs;

/* Return codes: 0 on success, a positive KR_E* value on a failure C can detect. */
enum { KR_OK = 0, KR_ENOMEM = 1, KR_EINVAL = 2 };

int kr_sgemm_naive(int64_t M, int64_t N, int64_t K,
                   const float *A, int64_t rsa, int64_t csa,
                   const float *B, int64_t rsb, int64_t csb,
                   float *C, int64_t ldc, const kr_knobs *knobs);
int kr_sgemm_tiled(int64_t M, int64_t N, int64_t K,
                   const float *A, int64_t rsa, int64_t csa,
                   const float *B, int64_t rsb, int64_t csb,
                   float *C, int64_t ldc, const kr_knobs *knobs);
int kr_sgemm_simd(int64_t M, int64_t N, int64_t K,
                  const float *A, int64_t rsa, int64_t csa,
                  const float *B, int64_t rsb, int64_t csb,
                  float *C, int64_t ldc, const kr_knobs *knobs);
int kr_sgemm_regblock(int64_t M, int64_t N, int64_t K,
                      const float *A, int64_t rsa, int64_t csa,
                      const float *B, int64_t rsb, int64_t csb,
                      float *C, int64_t ldc, const kr_knobs *knobs);
int kr_sgemm_packed(int64_t M, int64_t N, int64_t K,
                    const float *A, int64_t rsa, int64_t csa,
                    const float *B, int64_t rsb, int64_t csb,
                    float *C, int64_t ldc, const kr_knobs *knobs);
int kr_sgemm_parallel(int64_t M, int64_t N, int64_t K,
                      const float *A, int64_t rsa, int64_t csa,
                      const float *B, int64_t rsb, int64_t csb,
                      float *C, int64_t ldc, const kr_knobs *knobs);

/* Probes for the roofline (csrc/probe_peak.c, csrc/probe_bandwidth.c). */
double kr_probe_fma(int64_t iterations, int64_t threads);
double kr_probe_triad(float *a, const float *b, const float *c, int64_t n,
                      int64_t repeats, int64_t threads);
int64_t kr_probe_vector_width(void);

#endif
