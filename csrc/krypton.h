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
    int64_t kc;          /* packed, parallel: depth of packed panels (B micro-panel in L1) */
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
int kr_sgemm_small(int64_t M, int64_t N, int64_t K,
                   const float *A, int64_t rsa, int64_t csa,
                   const float *B, int64_t rsb, int64_t csb,
                   float *C, int64_t ldc, const kr_knobs *knobs);

/* Rung 6 (csrc/parallel.c): the threads a product of this shape runs on, given `threads`
 * (fewer for a small product; one without OpenMP). */
int64_t kr_parallel_threads(int64_t M, int64_t N, int64_t K, int64_t threads);

/* Rung 7 (csrc/small.c): what it does for one product, as kr_small_plan decides it from the
 * shape, the strides and the knobs nc and threads. Each field is 0 or 1, but threads. */
typedef struct kr_plan {
    int64_t declined;    /* none of these: rung 6's loops compute it (edges: rung 7's kernels) */
    int64_t dot;         /* C has few columns: dot products along k */
    int64_t transposed;  /* computed as C^T = B^T A^T: C's few columns fill MR, not NR (or,
                            with dot, C^T needs fewer dot tiles) */
    int64_t a_in_place;  /* A (B^T if transposed) read where it is, not packed */
    int64_t b_in_place;  /* B (A^T if transposed) read where it is: its whole NR-wide panels */
    int64_t threads;     /* threads it runs on (rung 6's rule, kr_parallel_threads) */
} kr_plan;

/* Rung 7's thresholds, as compiled (each is a macro of csrc/small.c; 0 switches it off). */
typedef struct kr_small_limits {
    int64_t a_in_place_panels;    /* A in place for a block of C at most this many NR wide */
    int64_t b_in_place_panels;    /* B in place for an M of at most this many MR panels, */
    int64_t b_in_place_floats;    /*   and a B of at most this many floats, */
    int64_t b_stream_panels;      /*   or of any size for an M of at most this many */
    int64_t dot_columns;          /* dot products for N <= this and N < NR / 2 (any N <= this
                                     with B's columns contiguous and few rows of A), */
    int64_t dot_chunk;            /*   taken through k in chunks of this many floats */
    int64_t edge_kernels;         /* edge tiles on kernels with fewer rows, */
    int64_t tall_rows;            /*   and a tile of up to MR + this many rows at the bottom */
    int64_t min_flops_per_thread; /* rung 6: one more thread per this many flops */
    int64_t ties_to_columns;      /* rung 6: a tie of its thread grid splits columns */
    int64_t dot_min_flops_per_thread; /* dot products with B^T in place: a thread per this many */
    int64_t rows_outside_floats;  /* ir outside jr for a B block of at most this many floats */
} kr_small_limits;

int kr_small_plan(int64_t M, int64_t N, int64_t K, int64_t rsa, int64_t csa, int64_t rsb,
                  int64_t csb, const kr_knobs *knobs, kr_plan *plan);
int kr_small_thresholds(kr_small_limits *limits);

/* What one ISA is, as kr_simd.h and kr_microkernel.h define it (csrc/isa.c). */
typedef struct kr_isa_info {
    char name[16];             /* "avx512", "avx2", "neon", "scalar" */
    int64_t vector_width;      /* float32 lanes per vector register */
    int64_t vector_registers;  /* architectural vector registers */
    int64_t mr, nr;            /* the default micro-tile */
} kr_isa_info;

/* Fills *info for ISA id `isa` (KR_ISA_* of kr_simd.h); KR_EINVAL past the last one. */
int kr_describe_isa(int64_t isa, kr_isa_info *info);
/* Vector registers an mr x nr micro-kernel needs (KR_REGISTERS_NEEDED). */
int64_t kr_registers_needed(int64_t mr, int64_t vectors_per_row);

/* Probes for the roofline (csrc/probe_peak.c, csrc/probe_bandwidth.c). */
double kr_probe_fma(int64_t iterations, int64_t threads);
double kr_probe_peak(int64_t warmup, int64_t fma_iterations, int64_t clock_iterations,
                     int64_t threads, int64_t repeats, double *flops_per_second,
                     double *clock_hz);
int64_t kr_probe_clock_adds(void);
int64_t kr_probe_threads(int64_t threads);
int64_t kr_probe_chains(void);
double kr_probe_triad(float *a, const float *b, const float *c, int64_t n,
                      int64_t repeats, int64_t threads);
int64_t kr_probe_vector_width(void);

#endif
