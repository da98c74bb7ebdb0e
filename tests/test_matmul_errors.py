"""Bad input to krypton.matmul gets a clear Python exception, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

import krypton
from krypton.kernels import registers_needed

A = np.ones((4, 3), np.float32)
B = np.ones((3, 5), np.float32)


@pytest.mark.parametrize("kernel", krypton.KERNELS)
def test_non_float32_input_names_the_dtype_and_the_fix(kernel):
    with pytest.raises(TypeError, match=r"a must be float32, got float64: pass a\.astype"):
        krypton.matmul(A.astype(np.float64), B, kernel=kernel)
    with pytest.raises(TypeError, match=r"b must be float32, got int64"):
        krypton.matmul(A, B.astype(np.int64), kernel=kernel)


def test_non_arrays_are_rejected_with_the_conversion_to_use():
    with pytest.raises(TypeError, match=r"a must be a NumPy array, got list"):
        krypton.matmul([[1.0]], B[:1])
    with pytest.raises(TypeError, match=r"b must be a NumPy array, got str"):
        krypton.matmul(A, "B")


@pytest.mark.parametrize("a, b, match", [
    (np.ones(3, np.float32), B, r"a must be 2-D \(M, K\), got 1-D shape \(3,\)"),
    (A, np.ones((3, 5, 1), np.float32), r"b must be 2-D \(K, N\), got 3-D"),
    (A, np.ones((4, 5), np.float32), r"shapes \(4, 3\) and \(4, 5\) do not multiply.*K = 3"),
])
def test_bad_shapes_name_both_shapes(a, b, match):
    with pytest.raises(ValueError, match=match):
        krypton.matmul(a, b)


def test_unknown_kernel_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown kernel 'fast'.*naive, tiled, simd, regblock"):
        krypton.matmul(A, B, kernel="fast")


def test_unknown_knob_lists_the_kernels_knobs():
    with pytest.raises(ValueError, match=r"kernel 'tiled' has no knob 'mc'; its knobs are tile_m"):
        krypton.matmul(A, B, kernel="tiled", mc=64)
    with pytest.raises(ValueError, match=r"kernel 'naive' has no knob 'tile_m'.*loop_order"):
        krypton.matmul(A, B, kernel="naive", tile_m=4)


@pytest.mark.parametrize("kernel, knobs, error, match", [
    ("tiled", {"tile_m": 0}, ValueError, "tile_m must be a positive integer, got 0"),
    ("simd", {"tile_k": -3}, ValueError, "tile_k must be a positive integer, got -3"),
    ("packed", {"kc": 2.5}, TypeError, "kc must be a positive integer, got 2.5"),
    ("packed", {"mc": True}, TypeError, "mc must be a positive integer"),
    ("parallel", {"nc": 0}, ValueError, "nc must be a positive integer"),
    ("naive", {"loop_order": "kji"}, ValueError, r"loop_order must be one of \('ijk', 'ikj'\)"),
    ("packed", {"mr": 0}, ValueError, "mr must be a positive integer"),
    ("packed", {"nr": 20}, ValueError, "nr must be a multiple of the .* vector width"),
    ("packed", {"mr": 40, "nr": 64}, ValueError, r"needs \d+ vector registers"),
    ("regblock", {"isa": "sse9"}, ValueError, r"isa 'sse9' is not available on this machine"),
])
def test_invalid_knob_values_raise_clear_errors(kernel, knobs, error, match):
    with pytest.raises(error, match=match):
        krypton.matmul(A, B, kernel=kernel, **knobs)


def test_register_budget_matches_the_c_side_check():
    # 12 x 32 on AVX-512: 12 * 2 accumulators + 2 vectors of B + 1 broadcast of A
    assert registers_needed(12, 32, "avx512") == 27
    assert registers_needed(6, 16, "avx2") == 15


def test_threads_are_validated():
    with pytest.raises(ValueError, match=r"kernel 'packed' runs on one thread; threads=2"):
        krypton.matmul(A, B, kernel="packed", threads=2)
    with pytest.raises(ValueError, match="threads must be a positive integer, got 0"):
        krypton.matmul(A, B, kernel="parallel", threads=0)
    with pytest.raises(TypeError, match="threads must be a positive integer"):
        krypton.matmul(A, B, kernel="parallel", threads="2")
    with pytest.raises(ValueError, match="more than 1024"):
        krypton.matmul(A, B, kernel="parallel", threads=10**6)
    assert krypton.matmul(A, B, kernel="packed", threads=1).shape == (4, 5)


def test_unaligned_and_byte_swapped_buffers_are_copied_not_misread():
    raw = np.zeros(4 * 12 + 1, np.uint8)
    a = np.frombuffer(raw.data, dtype=np.float32, offset=1, count=12).reshape(4, 3)
    swapped = B.astype(">f4")
    for kernel in krypton.KERNELS:
        assert np.array_equal(krypton.matmul(a, B, kernel=kernel), np.zeros((4, 5), np.float32))
        with pytest.raises(TypeError, match="float32"):
            krypton.matmul(A, swapped, kernel=kernel)
