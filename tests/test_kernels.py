"""Every rung of the ladder against a float64 NumPy reference, on shapes, layouts and knobs
chosen to break kernels: 0, 1, primes, block edges, transposed and strided operands."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import krypton
from krypton import exercises
from krypton.kernels import SPECS, aligned_empty, default_knobs, get_kernel
from krypton.timing import random_operands

import strategies as S

RUNGS = krypton.KERNELS
FAST_RUNGS = tuple(k for k in RUNGS if k != "naive")


def check(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    expected = S.reference(a, b)
    assert c.shape == expected.shape and c.dtype == np.float32
    assert c.flags.c_contiguous
    if c.size:
        error = np.abs(c - expected).max()
        assert error <= S.tolerance(a.shape[1]), f"max error {error:.3g} for shape {a.shape} @ {b.shape}"


@pytest.mark.parametrize("kernel", RUNGS)
@settings(max_examples=60)
@given(shape=S.shapes(), layouts=st.tuples(st.sampled_from(S.LAYOUTS), st.sampled_from(S.LAYOUTS)),
       seed=st.integers(0, 2**32 - 1))
def test_rung_matches_numpy_on_random_shapes_and_layouts(kernel, shape, layouts, seed):
    m, n, k = shape
    rng = np.random.default_rng(seed)
    a = S.make_operand(rng, m, k, layouts[0])
    b = S.make_operand(rng, k, n, layouts[1])
    check(krypton.matmul(a, b, kernel=kernel), a, b)


@pytest.mark.parametrize("kernel", RUNGS)
@settings(max_examples=40)
@given(data=st.data(), shape=S.shapes(100), seed=st.integers(0, 2**32 - 1))
def test_rung_matches_numpy_with_non_default_knobs(kernel, data, shape, seed):
    m, n, k = shape
    knobs = data.draw(S.runtime_knobs(kernel))
    rng = np.random.default_rng(seed)
    a = S.make_operand(rng, m, k, "c")
    b = S.make_operand(rng, k, n, data.draw(st.sampled_from(S.LAYOUTS)))
    threads = data.draw(st.integers(1, 4)) if SPECS[kernel].threaded else None
    check(krypton.matmul(a, b, kernel=kernel, threads=threads, **knobs), a, b)


@pytest.mark.parametrize("kernel", ("regblock", "packed", "parallel", "small"))
@settings(max_examples=30)
@given(variant=S.microtiles(), shape=S.shapes(100), seed=st.integers(0, 2**32 - 1))
def test_micro_kernel_variants_and_narrower_isas_match_numpy(kernel, variant, shape, seed):
    m, n, k = shape
    rng = np.random.default_rng(seed)
    a = S.make_operand(rng, m, k, "transposed")
    b = S.make_operand(rng, k, n, "c")
    small_blocks = {"mc": 50, "kc": 30, "nc": 70} if kernel != "regblock" else {"tile_k": 30}
    check(krypton.matmul(a, b, kernel=kernel, **variant, **small_blocks), a, b)


@pytest.mark.parametrize("kernel", FAST_RUNGS)
def test_rung_handles_sizes_around_its_default_blocks(kernel):
    knobs = default_knobs(kernel)
    rng = np.random.default_rng(1)
    dims = set()
    for name in ("tile_k", "kc"):
        if name in knobs:
            dims |= {knobs[name] - 1, knobs[name], knobs[name] + 1}
    for k in sorted(dims) or [255, 256, 257]:
        a = S.make_operand(rng, 29, k, "c")
        b = S.make_operand(rng, k, 45, "c")
        check(krypton.matmul(a, b, kernel=kernel), a, b)
    if "mc" in knobs:
        for m in (knobs["mc"] - 1, knobs["mc"] + 1):
            a = S.make_operand(rng, m, 19, "c")
            b = S.make_operand(rng, 19, 3 * knobs["nr"] + 1, "c")
            check(krypton.matmul(a, b, kernel=kernel), a, b)


@pytest.mark.parametrize("kernel", FAST_RUNGS)
def test_rung_handles_tall_skinny_and_wide_shapes(kernel):
    rng = np.random.default_rng(2)
    for m, k, n in [(1000, 3, 1), (1, 3, 1000), (2, 2000, 2), (300, 1, 300), (1, 1, 1)]:
        a = S.make_operand(rng, m, k, "c")
        b = S.make_operand(rng, k, n, "sliced")
        check(krypton.matmul(a, b, kernel=kernel), a, b)


def test_naive_loop_orders_agree_with_numpy():
    rng = np.random.default_rng(3)
    a = S.make_operand(rng, 33, 47, "c")
    b = S.make_operand(rng, 47, 29, "reversed")
    for order in ("ijk", "ikj"):
        check(krypton.matmul(a, b, kernel="naive", loop_order=order), a, b)


@pytest.mark.parametrize("kernel", RUNGS)
def test_empty_dimensions_give_empty_or_zero_results(kernel):
    for m, k, n in [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)]:
        c = krypton.matmul(np.ones((m, k), np.float32), np.ones((k, n), np.float32), kernel=kernel)
        assert c.shape == (m, n) and c.dtype == np.float32
        assert np.array_equal(c, np.zeros((m, n), np.float32))


@pytest.mark.parametrize("kernel", RUNGS)
def test_nan_and_inf_propagate_like_numpy(kernel):
    rng = np.random.default_rng(4)
    a = S.make_operand(rng, 23, 37, "c")
    b = S.make_operand(rng, 37, 41, "c")
    a[3, 5] = np.nan
    a[7, 2] = np.inf
    b[11, 13] = -np.inf
    b[20, :] = 0.0
    a[9, 20] = np.inf  # inf * 0 = nan, in NumPy and in every rung
    c = krypton.matmul(a, b, kernel=kernel)
    expected = S.reference(a, b)
    assert np.array_equal(np.isnan(c), np.isnan(expected))
    assert np.array_equal(np.isposinf(c), np.isposinf(expected))
    assert np.array_equal(np.isneginf(c), np.isneginf(expected))
    finite = np.isfinite(expected)
    assert np.abs(c[finite] - expected[finite]).max() <= S.tolerance(37)


def test_parallel_is_bitwise_identical_for_every_thread_count_and_to_packed():
    rng = np.random.default_rng(5)
    for m, k, n in [(257, 531, 389), (128, 784, 256), (7, 1000, 3), (1000, 50, 1)]:
        a = S.make_operand(rng, m, k, "c")
        b = S.make_operand(rng, k, n, "transposed")
        results = [krypton.matmul(a, b, kernel="parallel", threads=t) for t in (1, 2, 3, 4, 7)]
        results.append(krypton.matmul(a, b, kernel="packed"))
        for other in results[1:]:
            assert np.array_equal(results[0], other)


def test_small_is_bitwise_identical_for_every_thread_count():
    rng = np.random.default_rng(7)
    for m, k, n in [(257, 531, 389), (128, 784, 256), (7, 1000, 3), (1000, 50, 1), (10, 128, 256),
                    (9, 5000, 16), (5, 300, 12)]:  # the last two: dot products of C^T
        a = S.make_operand(rng, m, k, "c")
        b = S.make_operand(rng, k, n, "transposed")
        results = [krypton.matmul(a, b, kernel="small", threads=t) for t in (1, 2, 3, 4, 7)]
        for other in results[1:]:
            assert np.array_equal(results[0], other)


@pytest.mark.parametrize("kernel", ["packed", "parallel", "small"])
def test_a_transposed_b_is_packed_to_the_same_bits_as_a_contiguous_one(kernel):
    # kr_pack_b moves a transposed B (columns contiguous) in square blocks transposed in
    # registers and the ragged rest (rows past the last whole block, columns past it, the zero
    # padding) one float at a time, skipping the rows the blocks covered. Packing only copies:
    # the same B in either layout must give the same bits. Depths with and without a
    # remainder of 8 and of 16 in each kc block, and widths with a ragged last panel.
    rng = np.random.default_rng(13)
    for m, k, n in [(40, 200, 70), (17, 37, 45), (9, 16, 8), (33, 136, 31), (24, 784, 100)]:
        a = S.make_operand(rng, m, k, "c")
        b = S.make_operand(rng, k, n, "transposed")
        for kc in (24, 64, 256):
            transposed = krypton.matmul(a, b, kernel=kernel, kc=kc)
            check(transposed, a, b)
            if kernel != "small":  # rung 7 may read a contiguous B in place, by another plan
                contiguous = np.ascontiguousarray(b)
                assert np.array_equal(transposed,
                                      krypton.matmul(a, contiguous, kernel=kernel, kc=kc))


@pytest.mark.parametrize("mr", [None, 16])
def test_packing_a_by_register_transposes_gives_the_same_bits_as_a_move_per_float(mr):
    # kr_pack_a moves a row-major A's full panels in square blocks (KR_TRANSPOSE_BLOCK) where
    # MR is a multiple of the block; KR_PACK_A_BLOCKS 0 moves every float. Packing only copies,
    # so both must give the same bits: on depths with and without a remainder of the block,
    # rows with and without an edge panel, and more than one kc block.
    code = {} if mr is None else {"mr": mr, "nr": 16}
    if mr is not None and krypton.machine.native_isa() != "avx512":
        pytest.skip("a 16 x 16 micro-tile fits the vector registers of AVX-512 only")
    source = krypton.kernels.kernel_source("packed")
    moves = krypton.compile_source("#define KR_PACK_A_BLOCKS 0\n" + source, "kr_sgemm_packed",
                                   like="packed", name="pack_a_moves", **code)
    blocks = get_kernel("packed", **code)
    rng = np.random.default_rng(11)
    for m, k, n in [(64, 256, 40), (37, 61, 33), (131, 519, 70), (8, 7, 5)]:
        a = S.make_operand(rng, m, k, "c")
        b = S.make_operand(rng, k, n, "c")
        c = blocks(a, b, kc=128)
        check(c, a, b)
        assert np.array_equal(c, moves(a, b, kc=128))


def test_rung_6_splits_a_tie_of_its_thread_grid_as_compiled():
    # 100 x 100 panels on 4 threads: 1 x 4, 2 x 2 and 4 x 1 give the busiest thread 2500
    # micro-tiles each, and KR_TIES_TO_COLUMNS (read from C) says which the loops take. Where
    # the grids are not tied, the busiest thread's micro-tiles alone decide.
    ties_to_columns = krypton.kernels.small_thresholds()["ties_to_columns"]
    grid = exercises._thread_grids(krypton.kernels.kernel_source("parallel"),
                                   get_kernel("parallel").code_knobs)
    assert grid(100, 100, 4, 0) == ((1, 4) if ties_to_columns else (4, 1))
    assert grid(100, 100, 4, 1) == (1, 4)   # A read in place: columns whatever the rule
    assert grid(64, 1, 4, 0) == (4, 1)      # one panel of columns cannot be split
    assert grid(9, 64, 2, 0) == (1, 2)      # columns: 9 x 32 = 288 tiles, rows 5 x 64 = 320
    assert grid(33, 3, 2, 0) == (2, 1)      # rows: 17 x 3 = 51 tiles, columns 33 x 2 = 66


def test_rung_6_splits_rows_for_a_single_panel_of_columns_as_compiled():
    # Each thread packs the B panels it reads (no shared buffer, no barrier), so a C of one
    # panel of columns splits its rows however few they are: no thread is left waiting.
    grid = exercises._thread_grids(krypton.kernels.kernel_source("parallel"),
                                   get_kernel("parallel").code_knobs)
    assert grid(2, 1, 2, 0) == (2, 1)                # 9 x 16 with K = 100352: both threads work
    assert grid(18, 1, 2, 0) == (2, 1)               # 144 x 32 (a convolution's dW)
    assert grid(4, 2, 4, 0) == (2, 2)                # one micro-tile each
    assert grid(1, 1, 2, 0) == (1, 2)                # one tile: a tie, columns (thread 1 idle)


@pytest.mark.parametrize("shape", [(9, 16, 4000), (16, 16, 5000), (40, 24, 3000)])
def test_rung_6_results_do_not_depend_on_how_threads_split_a_narrow_c(shape):
    m, n, k = shape
    rng = np.random.default_rng(7)
    a, b = S.make_operand(rng, m, k, "c"), S.make_operand(rng, k, n, "transposed")
    one = get_kernel("parallel")(a, b, threads=1)
    check(one, a, b)
    for threads in (2, 3, 4):
        assert np.array_equal(get_kernel("parallel")(a, b, threads=threads), one)


def test_kernels_do_not_modify_their_inputs():
    rng = np.random.default_rng(6)
    a = S.make_operand(rng, 70, 90, "c")
    b = S.make_operand(rng, 90, 50, "sliced")
    a_before, b_before = a.copy(), b.copy()
    for kernel in RUNGS:
        krypton.matmul(a, b, kernel=kernel)
    assert np.array_equal(a, a_before) and np.array_equal(b, b_before)


def test_read_only_and_broadcast_operands_are_accepted():
    a = np.broadcast_to(np.arange(7, dtype=np.float32)[None, :], (5, 7))  # zero row stride
    b = np.arange(21, dtype=np.float32).reshape(7, 3)
    b.setflags(write=False)
    for kernel in RUNGS:
        check(krypton.matmul(a, b, kernel=kernel), a, b)


def test_compiled_kernel_is_reused_from_the_process_cache():
    assert get_kernel("packed") is get_kernel("packed")
    mr, nr = default_knobs("packed")["mr"], default_knobs("packed")["nr"]
    other = get_kernel("packed", mr=mr - 1, nr=nr)   # one row fewer fits on every ISA
    assert other is not get_kernel("packed") and other is get_kernel("packed", mr=mr - 1, nr=nr)


@pytest.mark.parametrize("kernel", ["packed", "small"])
def test_large_c_starts_on_a_cache_line_and_small_c_is_numpys(kernel, monkeypatch):
    from krypton import kernels
    monkeypatch.setattr(kernels, "ALIGN_C_FLOATS", 64 * 64)
    rng = np.random.default_rng(8)
    for m, k, n in [(64, 33, 64), (67, 5, 131), (128, 1, 40)]:  # at and above the threshold
        a, b = S.make_operand(rng, m, k, "c"), S.make_operand(rng, k, n, "c")
        c = krypton.matmul(a, b, kernel=kernel)
        check(c, a, b)
        assert c.ctypes.data % 64 == 0 and c.flags.writeable and c.flags.owndata is False
        c[...] = 1.0  # an ordinary array: writing it touches nothing else
        assert np.array_equal(c, np.ones((m, n), np.float32))
    a, b = S.make_operand(rng, 63, 9, "c"), S.make_operand(rng, 9, 64, "c")  # below it
    c = krypton.matmul(a, b, kernel=kernel)
    check(c, a, b)
    assert c.flags.owndata


@pytest.mark.parametrize("shape, dtype", [((3, 5), np.float32), (7, np.float64), ((0, 4), np.float32),
                                          ((2, 3, 4), np.int16), ((1,), np.uint8)])
def test_aligned_empty_starts_on_a_cache_line_and_is_an_ordinary_array(shape, dtype):
    for _ in range(8):  # wherever the allocator puts the buffer
        x = aligned_empty(shape, dtype)
        assert (x.size == 0 or x.ctypes.data % 64 == 0) and x.dtype == dtype  # empty: no data
        assert x.flags.c_contiguous
        assert x.shape == ((shape,) if isinstance(shape, int) else shape)
        x[...] = 3  # writing it touches nothing past its own bytes
        assert np.all(x == 3) and x.nbytes == np.empty(shape, dtype).nbytes


def test_benchmark_operands_start_on_a_cache_line_with_the_same_values_as_before():
    rng = np.random.default_rng(5)
    expected_a = rng.uniform(-1, 1, (9, 7)).astype(np.float32)
    expected_b = rng.uniform(-1, 1, (7, 11)).astype(np.float32)
    a, b = random_operands(9, 11, 7, seed=5)
    assert a.ctypes.data % 64 == 0 and b.ctypes.data % 64 == 0
    assert a.dtype == b.dtype == np.float32
    assert np.array_equal(a, expected_a) and np.array_equal(b, expected_b)


def test_explicit_knobs_are_checked_every_call_and_resolved_once_per_set():
    kernel = get_kernel("packed")
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 5), np.float32)
    first = kernel._explicit(1, {"kc": 8})
    assert kernel._explicit(1, {"kc": 8}) is first          # the same set: built once
    assert kernel._explicit(1, {"kc": 16}) is not first     # another set: its own struct
    assert first[0]["kc"] == 8 and first[1].kc == 8
    check(kernel(a, b, threads=1, kc=8), a, b)
    for _ in range(2):  # a bad value is refused every time, never cached
        with pytest.raises(ValueError, match="kc must be a positive integer"):
            kernel(a, b, threads=1, kc=0)
        with pytest.raises((TypeError, ValueError), match="kc"):
            kernel(a, b, threads=1, kc=[8])
    kernel(a, b, threads=1, mc=1)
    with pytest.raises(TypeError, match="mc must be a positive integer"):  # True == 1, refused
        kernel(a, b, threads=1, mc=True)


def test_the_short_path_takes_plain_operands_and_leaves_the_rest_to_the_full_one(monkeypatch):
    # Kernel.__call__'s short path (csrc/kr_fastcall.c: float32 arrays of any whole-float
    # strides, no knobs, a C that fits in L2) computes what the full path does; any other call
    # reaches the full path, with its checks.
    from krypton import kernels
    kernel = get_kernel("small")
    rng = np.random.default_rng(21)
    a, b = S.make_operand(rng, 37, 19, "c"), S.make_operand(rng, 19, 23, "transposed")
    expected = kernel(a, b)   # the full path, which leaves what the short one needs
    full = []
    monkeypatch.setattr(kernels.Kernel, "_call",
                        lambda self, *args: full.append(args) or pytest.fail("full path"))
    assert np.array_equal(kernel(a, b), expected)
    sliced, reversed_rows = S.make_operand(rng, 37, 19, "sliced"), a[::-1]
    broadcast = np.broadcast_to(a[:1], a.shape)   # a zero row stride, read-only
    for x, y in ((b.T, a.T), (a.T.copy().T, b), (sliced, b), (reversed_rows, b[:, ::-2]),
                 (broadcast, b)):
        c = kernel(x, y)
        check(c, x, y)
        assert c.flags.c_contiguous and c.flags.writeable and c.dtype == np.float32
    assert not full
    monkeypatch.undo()
    calls = []
    original = kernels.Kernel._call
    monkeypatch.setattr(kernels.Kernel, "_call",
                        lambda self, *args: calls.append(args[2:]) or original(self, *args))
    check(kernel(a, b, threads=1, kc=8), a, b)                # knobs
    check(kernel(a[:, :0], b[:0]), a[:, :0], b[:0])           # K = 0
    check(kernel(a[:0], b), a[:0], b)                         # M = 0
    masked = np.ma.masked_array(a, mask=np.zeros(a.shape, bool))
    with pytest.raises(TypeError, match="masked"):            # a subclass of ndarray
        kernel(masked, b)
    misaligned = np.frombuffer(bytearray(a.size * 4 + 1), np.uint8)[1:]   # one byte in
    misaligned = misaligned.view(np.float32).reshape(a.shape)
    misaligned[...] = a
    assert not misaligned.flags.aligned
    check(kernel(misaligned, b), misaligned, b)               # copied by the full path
    swapped = a.astype(a.dtype.newbyteorder())                # big-endian float32
    with pytest.raises(TypeError, match="float32"):
        kernel(swapped, b)
    with pytest.raises(TypeError, match="threads"):
        kernel(a, b, threads=True)
    with pytest.raises(TypeError, match="float32"):
        kernel(a.astype(np.float64), b)
    assert len(calls) == 8
    # A rung that loads B's rows as vectors (rungs 3-4) gets a B with strided columns copied
    # by the full path; and a C at the size that is aligned to a line takes the full path.
    simd, calls[:] = get_kernel("simd"), []
    simd(a, b)
    check(simd(a, b[:, ::2]), a, b[:, ::2])
    assert len(calls) == 2
    monkeypatch.setattr(kernels, "ALIGN_C_FLOATS", 37 * 23)
    calls[:] = []
    assert kernel(a, b).ctypes.data % 64 == 0 and len(calls) == 1


def test_without_the_short_way_in_every_product_takes_the_full_path(monkeypatch):
    # Where csrc/kr_fastcall.c cannot be built (no NumPy headers, say), krypton warns once and
    # computes every product through the Python path, with the same results.
    from krypton import kernels, seam

    def no_compiler(*args, **kwargs):
        raise seam.CompileError("no NumPy headers here")

    monkeypatch.setattr(seam, "compile_extension", no_compiler)
    kernels._fastcall.cache_clear()
    try:
        kernel = kernels.compile_source('#include "small.c"\n', "kr_sgemm_small", like="small",
                                        exports=("kr_small_plan", "kr_small_thresholds",
                                                 "kr_parallel_threads"))
        rng = np.random.default_rng(5)
        a, b = S.make_operand(rng, 13, 7, "c"), S.make_operand(rng, 7, 11, "transposed")
        with pytest.warns(RuntimeWarning, match="kr_fastcall.c.*no NumPy headers"):
            check(kernel(a, b), a, b)
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # once is enough: a second warning fails here
            check(kernel(a, b), a, b)
        assert kernel._fast == {}
    finally:
        monkeypatch.undo()
        kernels._fastcall.cache_clear()
    assert kernels._fastcall() is not None
