"""krypton.exercises passes right answers and fails wrong ones, each with a reason that says why.

The wrong answers are the mistakes learners make: a wrong sign, `=` where `+=` belongs, a
transposed gradient, a kernel that skips the last column. A checker that passes them would
teach nothing, so each one must fail here.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from krypton import exercises


def add_right(a, b, out):
    a.grad += out.grad
    b.grad += out.grad


def add_wrong_sign(a, b, out):
    a.grad += out.grad
    b.grad -= out.grad


def add_assigns(a, b, out):
    a.grad = out.grad.copy()
    b.grad = out.grad.copy()


def mul_right(a, b, out):
    a.grad += b.data * out.grad
    b.grad += a.data * out.grad


def mul_swapped(a, b, out):
    a.grad += a.data * out.grad
    b.grad += b.data * out.grad


def matmul_right(a, b, out):
    a.grad += out.grad @ b.data.T
    b.grad += a.data.T @ out.grad


def matmul_transposed(a, b, out):
    a.grad += (out.grad @ b.data.T).T
    b.grad += a.data.T @ out.grad


def matmul_assigns(a, b, out):
    a.grad = out.grad @ b.data.T
    b.grad = a.data.T @ out.grad


def placeholder(a, b, out):
    raise NotImplementedError("write add's backward here")


@pytest.mark.parametrize("op_name, answer", [("add", add_right), ("mul", mul_right),
                                             ("matmul", matmul_right)])
def test_check_backward_passes_right_answers(op_name, answer):
    verdict = exercises.check_backward(op_name, answer)
    assert verdict, str(verdict)
    assert "all cases right" in str(verdict)


@pytest.mark.parametrize("op_name, answer, reason", [
    ("add", add_wrong_sign, "wrong sign"),
    ("add", add_assigns, "+="),
    ("mul", mul_swapped, "off by"),
    ("matmul", matmul_transposed, "shape"),
    ("matmul", matmul_assigns, "+="),
])
def test_check_backward_fails_wrong_answers_and_says_why(op_name, answer, reason):
    verdict = exercises.check_backward(op_name, answer)
    assert not verdict
    assert reason in str(verdict), str(verdict)


def test_check_backward_names_a_transposed_square_gradient():
    verdict = exercises.check_backward("matmul", matmul_transposed)
    assert "transpose of the right gradient" in str(verdict), str(verdict)


def test_check_backward_says_not_done_yet_for_a_placeholder():
    verdict = exercises.check_backward("add", placeholder)
    assert not verdict
    assert "not done yet" in str(verdict)


def test_check_backward_refuses_an_unknown_op():
    with pytest.raises(ValueError, match="add, mul, matmul"):
        exercises.check_backward("div", add_right)


KERNEL = r'''
#include "krypton.h"

int kr_sgemm_mine(int64_t M, int64_t N, int64_t K,
                  const float *A, int64_t rsa, int64_t csa,
                  const float *B, int64_t rsb, int64_t csb,
                  float *C, int64_t ldc, const kr_knobs *knobs)
{
    (void)knobs;
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < LAST; j++) {
            float sum = 0.0f;
            for (int64_t p = 0; p < K; p++)
                sum += A[i * rsa + p * csa] * B[p * rsb + j * csb];
            C[i * ldc + j] = sum;
        }
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = LAST; j < N; j++)
            C[i * ldc + j] = 0.0f;
    return KR_OK;
}
'''


@pytest.mark.parametrize("like", ["naive", "packed"])
def test_check_kernel_passes_a_right_kernel(like):
    verdict = exercises.check_kernel(KERNEL.replace("LAST", "N"), "kr_sgemm_mine", like=like)
    assert verdict, str(verdict)


def test_check_kernel_fails_a_kernel_that_skips_the_last_column():
    source = KERNEL.replace("LAST", "(N - 1)")
    verdict = exercises.check_kernel(source, "kr_sgemm_mine", like="naive")
    assert not verdict
    assert "the last column of C" in str(verdict), str(verdict)


def test_check_kernel_fails_a_kernel_that_ignores_strides():
    source = KERNEL.replace("LAST", "N").replace("A[i * rsa + p * csa]", "A[i * K + p]")
    verdict = exercises.check_kernel(source, "kr_sgemm_mine", like="naive")
    assert not verdict
    assert "transposed" in str(verdict), str(verdict)


def test_check_kernel_reports_a_compile_error():
    verdict = exercises.check_kernel("int kr_sgemm_mine(void) { return }", "kr_sgemm_mine",
                                     like="naive")
    assert not verdict
    assert "does not compile" in str(verdict)


# ---------------------------------------------------------------- notebooks 01 and 02

SOLUTIONS = Path(__file__).resolve().parent.parent / "notebooks" / "solutions"


def _solutions(name: str):
    spec = importlib.util.spec_from_file_location(name, SOLUTIONS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("order", ["jik", "jki", "kji"])
def test_check_kernel_passes_notebook_01s_solutions(order):
    source = _solutions("01_naive_solutions").SOURCES[order]
    assert exercises.check_kernel(source, f"kr_sgemm_{order}", like="naive")


def test_check_kernel_fails_notebook_01s_template_and_a_loop_that_misses_the_last_k():
    template = _solutions("01_naive_solutions").JKI_SOURCE.split("    for (int64_t i = 0; i < M")[0]
    template += "    return KR_OK;\n}\n"   # the notebook's template: signature, no loops
    assert not exercises.check_kernel(template, "kr_sgemm_jki", like="naive")
    short_k = _solutions("01_naive_solutions").KJI_SOURCE.replace("k < K", "k < K - 1")
    verdict = exercises.check_kernel(short_k, "kr_sgemm_kji", like="naive")
    assert not verdict and "wrong" in str(verdict)


def test_check_kernel_passes_notebook_02s_swapped_loops_and_fails_a_wrong_tile_edge():
    source = _solutions("02_tiling_solutions").SWAPPED_SOURCE
    assert exercises.check_kernel(source, "kr_sgemm_mine", like="tiled")
    assert "for (int64_t j0" in source.split("for (int64_t k0")[0]  # j0 really is outside k0
    no_edge = source.replace("const int64_t j1 = kr_min(j0 + tile_n, N);",
                             "const int64_t j1 = j0 + tile_n < N ? j0 + tile_n : N - 1;")
    assert no_edge != source
    assert not exercises.check_kernel(no_edge, "kr_sgemm_mine", like="tiled")


def test_notebook_00s_solutions_edit_the_probe_they_describe():
    from krypton.notebook import c_source

    solutions = _solutions("00_machine_and_roofline_solutions")
    peak_source = c_source("probe_peak.c")
    same = solutions.same_start_source(peak_source)
    assert same != peak_source and "acc[c] = kr_set1(one);" in same
    assert "#pragma GCC unroll 64" in solutions.unrolled_source(peak_source)


# ---------------------------------------------------------------- notebooks 05 and 06

def test_kc_checker_accepts_the_solution_and_rejects_wrong_answers():
    solution = _solutions("05_packing_solutions").kc_for_l1
    assert exercises.check_kc(solution)

    def whole_l1_for_b(l1_bytes, ways, line, mr, nr, element):   # the old rule: B fills L1
        return l1_bytes // (nr * element) // 8 * 8

    def no_free_way(l1_bytes, ways, line, mr, nr, element):
        return solution(l1_bytes, ways + 1, line, mr, nr, element)

    for wrong in (whole_l1_for_b, no_free_way, lambda *args: None):
        verdict = exercises.check_kc(wrong)
        assert not verdict and "expected" in str(verdict)


def test_thread_checker_accepts_the_solution_and_rejects_wrong_answers():
    from krypton import machine
    if not machine.machine_info()["openmp"]:
        pytest.skip("without OpenMP the C runs every product on one thread")
    solution = _solutions("06_threading_solutions").threads_for
    assert exercises.check_thread_count(solution)
    verdict = exercises.check_thread_count(lambda m, n, k, threads: threads)  # no cut-off
    assert not verdict and "the C says" in str(verdict)
    assert not exercises.check_thread_count(lambda m, n, k, threads: 1 / 0)


# ---------------------------------------------------------------- notebooks 03 and 04

def test_check_kernel_passes_notebook_03s_unrolled_k_and_fails_a_dropped_odd_k():
    source = _solutions("03_simd_solutions").UNROLLED_K_SOURCE
    assert exercises.check_kernel(source, "kr_sgemm_mine", like="simd")
    no_tail = source.replace("if (k < k1)", "if (0)")
    assert no_tail != source
    verdict = exercises.check_kernel(no_tail, "kr_sgemm_mine", like="simd")
    assert not verdict and "wrong" in str(verdict)


def test_notebook_04s_answers_meet_the_limits_they_claim():
    from krypton import kernels

    solutions = _solutions("04_register_blocking_solutions")
    mr, nr = solutions.too_few_accumulators(8, 16, needed=8)
    assert kernels.registers_needed(mr, nr, "avx2") <= 16 and mr * nr // 8 < 8
    tiles = solutions.model_tiles(8, 16, pipes=2)
    assert tiles, "AVX2 with 2 pipes has tiles that meet all three limits"
    for mr, nr in tiles:
        assert kernels.registers_needed(mr, nr, "avx2") <= 16
        assert mr * nr // 8 >= 8 and 2 * (1 / mr + 8 / nr) <= 3 and 2 / mr <= 2
    assert (6, 16) in tiles and (8, 8) in tiles              # the AVX2 default; narrow broadcasts
    assert (1, 8) not in tiles and (7, 8) not in tiles       # too few accumulators
    assert (8, 8) not in solutions.model_tiles(8, 16, pipes=2, load_ports=2)  # 1.125 loads/FMA
    assert solutions.model_tiles(8, 16, pipes=2, load_ports=0) == []


def test_check_edge_kernel_passes_notebook_04s_solution_and_fails_an_empty_or_unmasked_edge():
    solutions = _solutions("04_register_blocking_solutions")
    verdict = exercises.check_edge_kernel(solutions.edge_source())
    assert verdict, str(verdict)
    empty = solutions.edge_source("{\n    (void)kc; (void)n; (void)A; (void)rsa; (void)csa; "
                                  "(void)B; (void)rsb; (void)C; (void)ldc;\n}\n")
    assert not exercises.check_edge_kernel(empty)                 # the notebook's template
    no_mask = solutions.EDGE_BODY.replace("vectors = full + (rest > 0)", "vectors = full")
    assert no_mask != solutions.EDGE_BODY
    verdict = exercises.check_edge_kernel(solutions.edge_source(no_mask))
    assert not verdict and "wrong" in str(verdict), str(verdict)


# ---------------------------------------------------------------- notebooks 05 and 06: C

@pytest.mark.skipif(shutil.which("objdump") is None, reason="reads machine code with objdump")
def test_check_prefetch_off_passes_the_solution_and_fails_rung_5_as_it_is():
    solution = _solutions("05_packing_solutions").PREFETCH_OFF_SOURCE
    verdict = exercises.check_prefetch_off(solution)
    assert verdict and "no prefetch instruction" in str(verdict), str(verdict)
    verdict = exercises.check_prefetch_off('#include "packed.c"\n')
    assert not verdict and "still has" in str(verdict), str(verdict)
    wrong = KERNEL.replace("LAST", "(N - 1)").replace("kr_sgemm_mine", "kr_sgemm_packed")
    verdict = exercises.check_prefetch_off(wrong)
    assert not verdict and "the last column of C" in str(verdict), str(verdict)


def test_check_columns_only_passes_the_solution_and_fails_other_grids():
    solutions = _solutions("06_threading_solutions")
    verdict = exercises.check_columns_only(solutions.columns_only_source())
    assert verdict, str(verdict)
    assert "4 threads" in str(verdict)                 # the product is checked on threads too
    package = solutions.nb.c_source("parallel")
    rows_only = package.replace(solutions.GRID_LINE, "const int64_t tm = threads;")
    for wrong in (package, rows_only):
        verdict = exercises.check_columns_only(wrong)
        assert not verdict and "expected 1 x" in str(verdict), str(verdict)
    renamed = solutions.columns_only_source().replace("kr_thread_grid", "kr_grid")
    verdict = exercises.check_columns_only(renamed)
    assert not verdict and "kr_thread_grid" in str(verdict), str(verdict)


def test_a_verdicts_summary_shows_its_first_wrong_cases_only():
    verdict = exercises.check_kernel(KERNEL.replace("LAST", "(N - 1)"), "kr_sgemm_mine",
                                     like="naive")
    summary = verdict.summary(shown=2)
    assert summary.startswith(verdict.what) and "not right yet" in summary
    assert summary.count("WRONG") == 2 and "more wrong" in summary and "ok " not in summary
