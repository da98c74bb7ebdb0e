"""Reference solutions to notebook 01's exercise: read them after trying, not before.

Check any of them as the notebook checks yours:
``exercises.check_kernel(solutions.JKI_SOURCE, "kr_sgemm_jki", like="naive")``, after
``solutions = importlib.import_module("solutions.01_naive_solutions")``.

Each order names the loops outermost first. The operand the innermost index does not touch is
held in a register: in jki and kji that is B[k][j], and the inner loop over i walks down a
column of A and of C (one float per cache line), the slowest pattern of the six.
"""

from __future__ import annotations

_SIGNATURE = """#include "krypton.h"

int {name}(int64_t M, int64_t N, int64_t K,
           const float *restrict A, int64_t rsa, int64_t csa,
           const float *restrict B, int64_t rsb, int64_t csb,
           float *restrict C, int64_t ldc, const kr_knobs *knobs)
{{
    (void)knobs;
{body}
    return KR_OK;
}}
"""

_ZERO_C = """    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j)
            C[i * ldc + j] = 0.0f;"""

JIK_SOURCE = _SIGNATURE.format(name="kr_sgemm_jik", body="""\
    for (int64_t j = 0; j < N; ++j)              /* one column of C at a time */
        for (int64_t i = 0; i < M; ++i) {
            float sum = 0.0f;
            for (int64_t k = 0; k < K; ++k)      /* a row of A, a column of B */
                sum += A[i * rsa + k * csa] * B[k * rsb + j * csb];
            C[i * ldc + j] = sum;
        }""")

JKI_SOURCE = _SIGNATURE.format(name="kr_sgemm_jki", body=_ZERO_C + """
    for (int64_t j = 0; j < N; ++j)
        for (int64_t k = 0; k < K; ++k) {
            const float b_kj = B[k * rsb + j * csb];
            for (int64_t i = 0; i < M; ++i)      /* down a column of A and of C */
                C[i * ldc + j] += A[i * rsa + k * csa] * b_kj;
        }""")

KJI_SOURCE = _SIGNATURE.format(name="kr_sgemm_kji", body=_ZERO_C + """
    for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < N; ++j) {
            const float b_kj = B[k * rsb + j * csb];
            for (int64_t i = 0; i < M; ++i)      /* down a column of A and of C */
                C[i * ldc + j] += A[i * rsa + k * csa] * b_kj;
        }""")

SOURCES = {"jik": JIK_SOURCE, "jki": JKI_SOURCE, "kji": KJI_SOURCE}
