"""Rung 7's small-matrix path (csrc/small.c), decision by decision.

For each product, rung 7's plan (kr_small_plan, asked through its C export) decides whether to
pack A, whether to pack B, whether a narrow C is computed by dot products or as C^T, and edge
tiles run on kernels of fewer rows. The plan is checked on both sides of every threshold, with
the thresholds read from the compiled module; the shapes there run on the rung as shipped and
on each variant of ``krypton.ablation`` (which switches techniques off), on one thread and on
several, and rung 6 is checked bitwise across thread counts on every one.
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
from krypton.kernels import default_knobs, small_plan, small_thresholds

import strategies as S

MR = default_knobs("small")["mr"]
NR = default_knobs("small")["nr"]
WIDTH = S.WIDTH
LIMITS = small_thresholds()
A_PANELS, B_PANELS = LIMITS["a_in_place_panels"], LIMITS["b_in_place_panels"]
B_FLOATS, DOT_COLUMNS = LIMITS["b_in_place_floats"], LIMITS["dot_columns"]
B_STREAM, DOT_CHUNK = LIMITS["b_stream_panels"], LIMITS["dot_chunk"]


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
    # ... and up to DOT_COLUMNS columns when B's columns are contiguous and M is small; as
    # C^T when that needs fewer dot tiles
    for n in sorted({NR // 2, DOT_COLUMNS, DOT_COLUMNS + 1}):
        for m in (1, B_PANELS * MR, B_PANELS * MR + 1):
            cases.append((m, n, 3 * WIDTH + 5, "c", "transposed"))
    for m, n in ((9, 16), (5, 12), (1, 16), (16, 9), (3, 7)):
        cases += [(m, n, 3 * WIDTH + 5, "c", "transposed"), (m, n, 2 * WIDTH, "c", "c")]
    # dot products through k in chunks: one chunk, a chunk and a tail, several chunks
    for k in (DOT_CHUNK - 1, DOT_CHUNK, DOT_CHUNK + 1, DOT_CHUNK + WIDTH, 2 * DOT_CHUNK + 3):
        cases += [(5, 9, k, "c", "c"), (37, 1, k, "c", "transposed"), (9, 7, k, "sliced", "c")]
    # edge tiles: every row count up to one past two micro-tiles
    for m in range(1, 2 * MR + 2):
        cases += [(m, NR + 3, 19, "c", "c"), (m, 2 * NR, 40, "transposed", "sliced")]
    # edge panels: half of NR wide (a kernel of half the vectors, stored straight), one more
    for m in (1, MR, 2 * MR + 1):
        cases += [(m, NR + NR // 2, 21, "c", "c"), (m, NR + NR // 2 + 1, 21, "sliced", "c"),
                  (m, NR // 2, 21, "c", "transposed")]
    # A in place: C at most A_PANELS panels wide, or wider
    for n in (A_PANELS * NR - 1, A_PANELS * NR, A_PANELS * NR + 1):
        cases += [(2 * MR + 1, n, 23, "c", "c"), (2 * MR + 1, n, 23, "sliced", "transposed")]
    # B in place: at most B_PANELS row panels and contiguous rows of B; a narrow last panel
    for m in (B_PANELS * MR - 1, B_PANELS * MR, B_PANELS * MR + 1):
        cases += [(m, 3 * NR + 5, 31, "c", "c"), (m, 3 * NR + 5, 31, "c", "transposed"),
                  (m, 2 * NR, 31, "fortran", "reversed")]
    # ... and a B of at most B_FLOATS floats, or of any size for at most B_STREAM row panels
    k = B_FLOATS // 1024
    cases += [(MR + 1, 1024, k, "c", "c"), (MR + 1, 1025, k, "c", "c")]
    for m in (B_STREAM * MR, B_STREAM * MR + 1):
        cases += [(m, 1025, k, "c", "c"), (m, 1025, k, "c", "transposed")]
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


def _plan(m, n, k, layout_a="c", layout_b="c", threads=1, **knobs):
    strides = {"c": lambda rows, cols: (cols, 1), "transposed": lambda rows, cols: (1, rows)}
    return small_plan(m, n, k, strides[layout_a](m, k), strides[layout_b](k, n),
                      threads=threads, **knobs)


def test_the_plan_takes_dot_products_below_half_a_micro_tile_when_rows_of_a_are_contiguous():
    narrow = min(NR // 2 - 1, DOT_COLUMNS)
    assert _plan(37, narrow, 29).dot and _plan(37, narrow, 29, "c", "transposed").dot
    assert _plan(37, narrow, 29, "c", "transposed").b_in_place   # B^T's rows are B's columns
    assert not _plan(37, narrow, 29).b_in_place                  # copied as rows of B^T
    assert not _plan(37, NR // 2, 29).dot
    assert not _plan(37, narrow, 29, "transposed", "c").dot      # A's rows not contiguous
    if DOT_COLUMNS + 1 < NR // 2:
        assert not _plan(37, DOT_COLUMNS + 1, 29).dot


def test_the_plan_takes_dot_products_up_to_its_width_when_b_needs_no_copy_and_rows_are_few():
    # B's columns contiguous (a transposed view) and A at most B_PANELS panels tall: the dot
    # path copies nothing, where the micro-kernel would pack B for few panels of A
    few = B_PANELS * MR
    for n in sorted({NR // 2, DOT_COLUMNS}):
        plan = _plan(few, n, 29, "c", "transposed")
        assert plan.dot and plan.b_in_place
        assert not _plan(few + 1, n, 29, "c", "transposed").dot or n < NR // 2
        assert not _plan(few, n, 29, "c", "c").dot or n < NR // 2   # B^T would be a copy
        assert not _plan(few, n, 29, "transposed", "transposed").dot   # A's rows strided
    assert not _plan(1, DOT_COLUMNS + 1, 29, "c", "transposed").dot


def test_the_plan_takes_dot_products_of_c_transposed_when_they_need_fewer_tiles():
    # dot tiles of 4 rows x 5 columns (4 x 2 with 16 registers): 9 x 16 needs 3 x 4, its
    # transpose 4 x 2 (with 2 columns: 3 x 8 and 4 x 5); only when both operands are read in
    # place and M is narrow too
    rows, cols = 4, (5 if krypton.machine.VECTOR_REGISTERS[S.ISA] >= 32 else 2)
    tiles = lambda m, n: -(-m // rows) * -(-n // cols)
    n = min(16, DOT_COLUMNS)
    plan = _plan(9, n, 29, "c", "transposed")
    assert plan.dot and plan.transposed == (tiles(n, 9) < tiles(9, n))
    assert not _plan(n, 9, 29, "c", "transposed").transposed or tiles(9, n) < tiles(n, 9)
    assert not _plan(9, min(NR // 2 - 1, DOT_COLUMNS), 29, "c", "c").transposed  # B^T copied
    assert not _plan(DOT_COLUMNS + 1, n, 29, "c", "transposed").transposed    # M is not narrow


def test_the_plan_transposes_a_narrow_c_it_cannot_take_by_dot_products():
    narrow = NR // 2 - 1
    plan = _plan(37, narrow, 29, "transposed", "c")
    assert plan.transposed and not plan.dot and not plan.declined
    assert not _plan(narrow, narrow, 29, "transposed", "c").transposed   # M <= N: no gain
    assert not _plan(37, NR // 2, 29, "transposed", "c").transposed


def test_the_plan_reads_a_in_place_for_blocks_of_c_at_most_a_few_panels_wide():
    wide = A_PANELS * NR
    assert _plan(4 * B_PANELS * MR, wide, 23).a_in_place
    plan = _plan(4 * B_PANELS * MR, wide + 1, 23)
    assert not plan.a_in_place and not plan.b_in_place and plan.declined
    assert _plan(4 * B_PANELS * MR, 4 * wide, 23, nc=wide).a_in_place   # nc blocks count


def test_the_plan_reads_b_in_place_for_few_rows_and_a_small_b_with_contiguous_rows():
    n = 3 * NR + 5
    assert _plan(B_PANELS * MR, n, 31).b_in_place
    assert not _plan(B_PANELS * MR + 1, n, 31).b_in_place
    assert not _plan(B_PANELS * MR, n, 31, "c", "transposed").b_in_place
    big_k = B_FLOATS // 1024 + 1   # a 1024-wide B just over B_FLOATS
    assert _plan(B_PANELS * MR, 1024, B_FLOATS // 1024).b_in_place
    assert not _plan(B_PANELS * MR, 1024, big_k).b_in_place
    assert B_STREAM < B_PANELS
    assert _plan(B_STREAM * MR, 1024, big_k).b_in_place        # few rows: any size of B
    assert not _plan(B_STREAM * MR + 1, 1024, big_k).b_in_place
    assert not _plan(B_STREAM * MR, 1024, big_k, "c", "transposed").b_in_place
    assert not _plan(MR + 1, NR - 1, 31, "transposed", "c").b_in_place   # no whole panel


def test_the_plan_runs_small_products_on_fewer_threads():
    min_flops = LIMITS["min_flops_per_thread"]
    side = 2
    while 2 * side**3 < 3 * min_flops:   # a cube with at least 3 threads' worth of work
        side *= 2
    assert small_plan(side, side, side, threads=3).threads == 3 or not machine_has_openmp()
    assert small_plan(8, 8, 8, threads=3).threads == 1
    assert small_plan(8, 8, 8, threads=1).threads == 1


def test_dot_products_with_nothing_to_copy_take_threads_from_less_work():
    # their threads only fork and join: one per dot_min_flops_per_thread when B^T is read in
    # place, rung 6's min_flops_per_thread when B^T is copied first
    dot_flops, flops = LIMITS["dot_min_flops_per_thread"], LIMITS["min_flops_per_thread"]
    assert dot_flops < flops
    n, k = 10, 256
    m = -(-dot_flops // (2 * n * k)) + 1            # just over one thread's worth of dot work
    assert 2 * m * n * k < flops and n < NR // 2    # rung 6's rule would give it one thread
    threads = 2 if machine_has_openmp() else 1
    assert _plan(m, n, k, "c", "transposed", threads=2).threads == threads
    assert _plan(m, n, k, "c", "transposed", threads=2).dot
    assert _plan(m - 2, n, k, "c", "transposed", threads=2).threads == 1   # under it
    assert _plan(m, n, k, "c", "c", threads=2).threads == 1    # B^T copied: rung 6's rule


def machine_has_openmp():
    return krypton.machine.machine_info()["openmp"]


def test_the_plan_refuses_knobs_c_would_refuse():
    with pytest.raises(ValueError, match="nc must be a positive integer"):
        small_plan(4, 4, 4, nc=0)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("step", range(len(ablation.STEPS)),
                         ids=[s.label for s in ablation.STEPS])
def test_every_variant_matches_numpy_on_both_sides_of_every_threshold(step, threads):
    kernel = _variant(step, threads)
    for index, (m, n, k, layout_a, layout_b) in enumerate(CASES):
        a, b = _operands(m, n, k, layout_a, layout_b, seed=index)
        _check(kernel(a, b), a, b)


@pytest.mark.parametrize("rung, reference", [("parallel", "packed"), ("small", None)])
def test_the_shipped_rungs_agree_bitwise_for_every_thread_count_on_the_small_paths(rung,
                                                                                  reference):
    # Each decision depends on the shape alone, and no path splits k between threads; rung 6
    # also sums exactly as rung 5 does.
    for index, (m, n, k, layout_a, layout_b) in enumerate(CASES):
        a, b = _operands(m, n, k, layout_a, layout_b, seed=index)
        expected = krypton.matmul(a, b, kernel=reference or rung, threads=None if reference
                                  else 1)
        _check(expected, a, b)
        for threads in (1, 2, 3, 5):
            c = krypton.matmul(a, b, kernel=rung, threads=threads)
            assert np.array_equal(c, expected), (m, n, k, layout_a, layout_b, threads)


@functools.lru_cache(maxsize=None)
def _small_without(macro):
    """Rung 7 compiled with one technique's macro at 0, as the ablation compiles its steps."""
    return ablation.variant(ablation.Step(f"no {macro}", f"{macro} 0", {macro: 0})).func


def test_a_tall_tile_sums_exactly_as_the_two_tiles_it_replaces():
    # A short last panel of r <= tall_rows rows joins the full panel above it (kr_tile_rows),
    # its rows read from the next panel of A, packed or in place. Each element is still one
    # chain of FMAs in the order of k, so the product is bitwise the one without tall tiles;
    # one row past the tallest stays two tiles.
    tall = LIMITS["tall_rows"]
    if not tall:
        pytest.skip("this micro-tile leaves no registers for a taller tile (KR_TALL_ROWS 0)")
    isa = S.ISA
    assert tall < MR and krypton.kernels.registers_needed(MR + tall, NR, isa) <= \
        krypton.machine.VECTOR_REGISTERS[isa]
    flat = _small_without("KR_TALL_ROWS")
    small = krypton.get_kernel("small")
    # A packed (C wider than A is read in place for), in place, transposed in place, and a
    # narrow last panel of columns (the tall tile splits into a full-height one and the rest)
    layouts = ((A_PANELS * NR + NR, "c"), (2 * NR, "c"), (2 * NR, "transposed"),
               (NR + NR // 2 + 1, "sliced"))
    for index, m in enumerate(rows + extra for rows in (MR, 2 * MR)
                              for extra in range(1, tall + 2)):
        for n, layout_a in layouts:
            for k in (1, 37):
                a, b = _operands(m, n, k, layout_a, "c", seed=index)
                expected = flat(a, b, threads=1)
                _check(expected, a, b)
                for threads in (1, 2):
                    c = small(a, b, threads=threads)
                    assert np.array_equal(c, expected), (m, n, k, layout_a, threads)
                # blocks of one panel each: no block has a panel above its last rows
                assert np.array_equal(small(a, b, threads=1, mc=MR), expected), (m, n, k)


def test_rows_outside_computes_every_tile_exactly_as_blis_order_does():
    # With ir outside jr (a thread owning whole rows of a block whose B fits
    # KR_ROWS_OUTSIDE_FLOATS) the tiles run in another order, each the same chain of FMAs, so
    # the product is bitwise the one in BLIS's order: B in place and packed (a transposed B),
    # tall tiles and short last panels, several kc and nc blocks, a B block on both sides of
    # the limit, one thread and two.
    limit = LIMITS["rows_outside_floats"]
    assert limit > 0
    blis = _small_without("KR_ROWS_OUTSIDE_FLOATS")
    small = krypton.get_kernel("small")
    cases = [(128, 256, 10, {}), (10, 256, 128, {}), (37, 97, 300, {}), (2 * MR + 1, 3 * NR, 5, {}),
             (129, 2 * NR + 3, 333, {"nc": NR}), (24, limit // 16 - NR, 16, {}),
             (24, limit // 16 + NR, 16, {})]
    for index, (m, n, k, knobs) in enumerate(cases):
        for layout_b in ("c", "transposed"):
            a, b = _operands(m, n, k, "c", layout_b, seed=index)
            expected = blis(a, b, threads=1, **knobs)
            _check(expected, a, b)
            for threads in (1, 2):
                c = small(a, b, threads=threads, **knobs)
                assert np.array_equal(c, expected), (m, n, k, layout_b, threads, knobs)


def test_the_variants_differ_only_in_time_not_in_what_they_compute_for_the_mlp_shapes():
    # The MLP's shapes take a different path in each variant; each must still be right.
    for m, n, k, layout in ablation.MLP_SHAPES:
        for layouts in (("c", "c"), tuple("transposed" if x == "t" else "c" for x in layout)):
            a, b = _operands(m, n, k, *layouts, seed=m + n + k)
            for step in range(len(ablation.STEPS)):
                _check(_variant(step, 1)(a, b), a, b)


def test_a_step_compiles_to_the_rung_with_its_macros_defined_first():
    source = ablation.STEPS[0].source()
    assert source.splitlines()[-1] == '#include "small.c"'
    assert "#define KR_NARROW_DOT 0" in source and "#define KR_EDGE_KERNELS 0" in source
    assert ablation.STEPS[-1].source() == '#include "small.c"\n'  # the rung as shipped


def test_the_first_step_switches_every_technique_of_the_plan_off():
    kernel = ablation.variant(ablation.STEPS[0]).func
    limits = kernel._ffi.new("kr_small_limits *")
    kernel.module.lib.kr_small_thresholds(limits)
    assert (limits.a_in_place_panels, limits.b_in_place_panels, limits.dot_columns,
            limits.edge_kernels, limits.rows_outside_floats) == (0, 0, 0, 0, 0)


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
                                           (["--shapes", "3x4"], "expected N or MxKxN"),
                                           (["--shapes", "100000000"], "GiB for A, B and C")])
def test_ablation_cli_refuses_bad_arguments_with_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        ablation.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("code", [{"isa": "avx2"}, {"isa": "scalar"}, {"mr": 14, "nr": 32},
                                  {"mr": 1, "nr": 16}, {"mr": 3, "nr": 48}, {"mr": 6, "nr": 64}],
                         ids=["avx2", "scalar", "14x32", "1x16", "3x48", "6x64"])
def test_the_small_paths_hold_for_other_isas_and_micro_tiles(code):
    # Narrower vectors change the dot tile (4 x 2) and kr_sum4; an MR above 9 sends tall edge
    # tiles to the full kernel with clamped rows; an NR of one vector has no narrow-C path and
    # no narrow edge kernel; 3 x 48 has narrow kernels of one and two vectors, 6 x 64 of one,
    # two and three.
    isa = code.get("isa", S.ISA)
    if isa not in krypton.machine.available_isas():
        pytest.skip(f"{isa} is not available here")
    width = krypton.machine.VECTOR_WIDTH[isa]
    if "nr" in code and (code["nr"] % width or krypton.kernels.registers_needed(
            code["mr"], code["nr"], isa) > krypton.machine.VECTOR_REGISTERS[isa]):
        pytest.skip(f"{code} does not fit {isa}")
    for rung, threads in (("packed", None), ("parallel", 3), ("small", 1), ("small", 3)):
        kernel = krypton.get_kernel(rung, **code)
        for index, (m, n, k, layout_a, layout_b) in enumerate(CASES[::3]):
            a, b = _operands(m, n, k, layout_a, layout_b, seed=index)
            _check(kernel(a, b) if threads is None else kernel(a, b, threads=threads), a, b)


@pytest.mark.parametrize("code", [{}, {"mr": 6, "nr": 64}, {"mr": 3, "nr": 48}],
                         ids=["default", "6x64", "3x48"])
def test_every_edge_kernel_of_rung_7_gives_the_product(code):
    # kr_microkernel_edge: a last panel of v < NV vectors runs on the kernel of v vectors, short
    # rows on the powers of two of mr, a corner on whichever does fewer FMAs. Every row count
    # around MR against every vector count of a last panel (full, ragged, one column).
    isa = S.ISA
    width = krypton.machine.VECTOR_WIDTH[isa]
    knobs = krypton.kernels.default_knobs("small")
    mr, nr = code.get("mr", knobs["mr"]), code.get("nr", knobs["nr"])
    if nr % width or krypton.kernels.registers_needed(mr, nr, isa) > \
            krypton.machine.VECTOR_REGISTERS[isa]:
        pytest.skip(f"{mr} x {nr} does not fit {isa}")
    kernel = krypton.get_kernel("small", **code)
    rows = sorted({1, 2, max(1, mr - 1), mr, mr + 1, 2 * mr + 3})
    columns = sorted({1, *(v * width + extra for v in range(1, nr // width + 1)
                           for extra in (-1, 0, 1))} - {0})
    for index, (m, n) in enumerate((m, nr + n) for m in rows for n in columns):
        for k in (1, 19):
            a, b = _operands(m, n, k, "c", "c", seed=index)
            _check(kernel(a, b, threads=1), a, b)
