"""Rung 5's small-matrix path (csrc/packed.c), decision by decision.

For each product, rungs 5 and 6 decide whether to pack A, whether to pack B, whether an edge
tile gets its own kernel copy, and whether a narrow C is computed by dot products. The shapes
here sit on both sides of every one of those thresholds, in every layout the decisions look
at, and run on the rung as shipped and on each variant of ``krypton.ablation`` (which switches
techniques off), on one thread and on several.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import numpy as np
import pytest

import krypton
from krypton import ablation
from krypton.kernels import default_knobs

import strategies as S

MR = default_knobs("packed")["mr"]
NR = default_knobs("packed")["nr"]
WIDTH = S.WIDTH


def _boundary_shapes() -> list[tuple[int, int, int, str, str]]:
    """(M, N, K, layout of A, layout of B) on both sides of every decision."""
    cases = []
    # narrow C: dot products for N < NR/2 when A's rows are contiguous; k's vector tail
    for n in sorted({1, 2, 5, NR // 2 - 1, NR // 2, NR // 2 + 1}):
        for k in sorted({1, WIDTH - 1, WIDTH, WIDTH + 1, 3 * WIDTH + 5}):
            for m in (1, 3, 4, 5, 37):
                cases.append((m, n, k, "c", "c"))
        cases += [(37, n, 29, "transposed", "c"), (37, n, 29, "c", "transposed"),
                  (37, n, 29, "sliced", "sliced"), (37, n, 29, "reversed", "fortran")]
    # edge tiles: every row count up to one past two micro-tiles
    for m in range(1, 2 * MR + 2):
        cases += [(m, NR + 3, 19, "c", "c"), (m, 2 * NR, 40, "transposed", "sliced")]
    # A in place: C at most 8 panels wide, or wider
    for n in (8 * NR - 1, 8 * NR, 8 * NR + 1):
        cases += [(2 * MR + 1, n, 23, "c", "c"), (2 * MR + 1, n, 23, "sliced", "transposed")]
    # B in place: at most 16 row panels and contiguous rows of B; a narrow last panel
    for m in (16 * MR - 1, 16 * MR, 16 * MR + 1):
        cases += [(m, 3 * NR + 5, 31, "c", "c"), (m, 3 * NR + 5, 31, "c", "transposed"),
                  (m, 2 * NR, 31, "fortran", "reversed")]
    # ... and a B of at most 4 MiB (K * N <= 2**20 floats)
    cases += [(MR + 1, 1024, 1024, "c", "c"), (MR + 1, 1025, 1024, "c", "c")]
    return cases


CASES = _boundary_shapes()


def _operands(m, n, k, layout_a, layout_b, seed):
    rng = np.random.default_rng(seed)
    return S.make_operand(rng, m, k, layout_a), S.make_operand(rng, k, n, layout_b)


def _check(c, a, b):
    expected = S.reference(a, b)
    assert c.shape == expected.shape
    error = np.abs(c - expected).max() if c.size else 0.0
    assert error <= S.tolerance(a.shape[1]), f"error {error:.3g} for {a.shape} @ {b.shape}"


@functools.lru_cache(maxsize=None)
def _variant(step_index: int, threads: int):
    return ablation.variant(ablation.STEPS[step_index], threads)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("step", range(len(ablation.STEPS)),
                         ids=[s.label for s in ablation.STEPS])
def test_every_variant_matches_numpy_on_both_sides_of_every_threshold(step, threads):
    kernel = _variant(step, threads)
    for index, (m, n, k, layout_a, layout_b) in enumerate(CASES):
        a, b = _operands(m, n, k, layout_a, layout_b, seed=index)
        _check(kernel(a, b), a, b)


def test_the_shipped_rungs_agree_bitwise_for_every_thread_count_on_the_small_paths():
    # Each decision depends on the shape alone, and no path splits k between threads.
    for index, (m, n, k, layout_a, layout_b) in enumerate(CASES):
        a, b = _operands(m, n, k, layout_a, layout_b, seed=index)
        expected = krypton.matmul(a, b, kernel="packed")
        _check(expected, a, b)
        for threads in (1, 2, 3, 5):
            c = krypton.matmul(a, b, kernel="parallel", threads=threads)
            assert np.array_equal(c, expected), (m, n, k, layout_a, layout_b, threads)


def test_the_variants_differ_only_in_time_not_in_what_they_compute_for_the_mlp_shapes():
    # The MLP's shapes take a different path in each variant; each must still be right.
    for m, n, k in ablation.MLP_SHAPES:
        a, b = _operands(m, n, k, "c", "c", seed=m + n + k)
        for step in range(len(ablation.STEPS)):
            _check(_variant(step, 1)(a, b), a, b)


def test_a_step_compiles_to_the_rung_with_its_macros_defined_first():
    source = ablation.STEPS[0].source("parallel")
    assert source.splitlines()[-1] == '#include "parallel.c"'
    assert "#define KR_NARROW_DOT 0" in source and "#define KR_EDGE_KERNELS 0" in source
    assert ablation.STEPS[-1].source() == '#include "packed.c"\n'  # the rung as shipped


def test_ablation_cli_prints_a_row_per_shape_with_every_step_and_numpy():
    result = subprocess.run(
        [sys.executable, "-m", "krypton.ablation", "--shapes", "40x30x10", "17", "--repeats", "1",
         "--no-progress"], capture_output=True, text=True, timeout=600,
        env={**os.environ, "KRYPTON_QUICK": "1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "M x K x N" in line)
    for step in ablation.STEPS:
        assert step.label in header
    for shape in ("40x30x10", "17x17x17"):
        row = next(line for line in lines if line.strip().startswith(shape))
        numbers = [float(x.rstrip("x")) for x in row.split()[1:]]
        assert len(numbers) == 2 * len(ablation.STEPS) + 1  # GFLOPS and ratio, then NumPy
        assert all(x > 0 for x in numbers)


@pytest.mark.parametrize("argv, message", [(["--threads", "0"], "--threads must be positive"),
                                           (["--repeats", "0"], "--repeats must be at least 1"),
                                           (["--shapes", "3x4"], "expected N or MxKxN")])
def test_ablation_cli_refuses_bad_arguments_with_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ablation.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("code", [{"isa": "avx2"}, {"isa": "scalar"}, {"mr": 14, "nr": 32},
                                  {"mr": 1, "nr": 16}, {"mr": 3, "nr": 48}],
                         ids=["avx2", "scalar", "14x32", "1x16", "3x48"])
def test_the_small_paths_hold_for_other_isas_and_micro_tiles(code):
    # Narrower vectors change the dot tile (4 x 2) and kr_sum4; an MR above 9 sends tall edge
    # tiles to the full kernel with clamped rows; an NR of one vector has no narrow-C path.
    isa = code.get("isa", S.ISA)
    if isa not in krypton.machine.available_isas():
        pytest.skip(f"{isa} is not available here")
    width = krypton.machine.VECTOR_WIDTH[isa]
    if "nr" in code and (code["nr"] % width or
                         krypton.kernels.registers_needed(code["mr"], code["nr"], isa) > 32):
        pytest.skip(f"{code} does not fit {isa}")
    for rung, threads in (("packed", None), ("parallel", 3)):
        kernel = krypton.get_kernel(rung, **code)
        for index, (m, n, k, layout_a, layout_b) in enumerate(CASES[::3]):
            a, b = _operands(m, n, k, layout_a, layout_b, seed=index)
            _check(kernel(a, b) if threads is None else kernel(a, b, threads=threads), a, b)
