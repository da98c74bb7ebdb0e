"""Bad input to krypton.matmul gets a clear Python exception, never a crash."""

from __future__ import annotations

import re

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


@pytest.mark.parametrize("kernel", ["packed", "small"])
def test_a_count_that_equals_a_cached_one_is_still_checked(kernel):
    # The defaults are cached per thread count, and True == 1 and 1.0 == 1 as dict keys: a
    # warm cache must not let either through as one thread.
    assert krypton.matmul(A, B, kernel=kernel, threads=1).shape == (4, 5)
    with pytest.raises(TypeError, match="threads must be a positive integer"):
        krypton.matmul(A, B, kernel=kernel, threads=True)
    with pytest.raises(TypeError, match="threads must be a positive integer"):
        krypton.matmul(A, B, kernel=kernel, threads=1.0)


def test_unaligned_and_byte_swapped_buffers_are_copied_not_misread():
    raw = np.zeros(4 * 12 + 1, np.uint8)
    a = np.frombuffer(raw.data, dtype=np.float32, offset=1, count=12).reshape(4, 3)
    swapped = B.astype(">f4")
    for kernel in krypton.KERNELS:
        assert np.array_equal(krypton.matmul(a, B, kernel=kernel), np.zeros((4, 5), np.float32))
        with pytest.raises(TypeError, match="float32"):
            krypton.matmul(A, swapped, kernel=kernel)


# ---------------------------------------------------------------------------------------------
# More bad input (issue 8): every dtype, non-arrays, knobs at and past the int64 limit, shapes
# whose buffers cannot be allocated, a kernel's own error codes, bad compile_source arguments.

ONE = np.float32(1)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.longdouble, np.int8, np.int32,
                                   np.uint64, np.bool_, np.complex64, object, "U3", "S3",
                                   "datetime64[s]", ">f4"])
def test_every_non_float32_dtype_is_a_type_error_naming_it(dtype):
    for a, b, label in ((np.zeros(A.shape, dtype), B, "a"), (A, np.zeros(B.shape, dtype), "b")):
        with pytest.raises(TypeError, match=f"{label} must be float32, got "
                                            + re.escape(str(np.dtype(dtype)))):
            krypton.matmul(a, b)


@pytest.mark.parametrize("value", [None, 1.0, ONE, "abc", [["1", "2"]], [[None]], {"a": 1},
                                   krypton.matmul])
def test_non_arrays_and_lists_of_strings_are_type_errors(value):
    with pytest.raises(TypeError, match=r"a must be a NumPy array, got \w+"):
        krypton.matmul(value, B)
    with pytest.raises(TypeError, match=r"b must be a NumPy array, got \w+"):
        krypton.matmul(A, value)


def test_zero_dimensional_arrays_need_two_dimensions():
    with pytest.raises(ValueError, match=r"a must be 2-D \(M, K\), got 0-D shape \(\)"):
        krypton.matmul(np.array(1, np.float32), B)


def test_a_masked_array_is_refused_rather_than_multiplied_through_its_mask():
    masked = np.ma.masked_array(A, mask=A > 0)
    with pytest.raises(TypeError, match=r"a is a masked array.*a\.filled\(0\)"):
        krypton.matmul(masked, B)
    # ndarray subclasses without masks are plain arrays to the kernels
    assert np.array_equal(krypton.matmul(np.asmatrix(A), B), A @ B)


@pytest.mark.parametrize("kernel, knob", [("tiled", "tile_m"), ("simd", "tile_n"),
                                          ("regblock", "tile_k"), ("packed", "mc"),
                                          ("packed", "kc"), ("packed", "nc"),
                                          ("parallel", "mc"), ("parallel", "nc")])
def test_the_largest_knob_acts_as_one_block_and_a_larger_one_is_refused(kernel, knob):
    # 2**63 - 1 once overflowed when rounded up to whole micro-panels: rung 5 then wrote far
    # outside its buffers (segfault) and rung 6 looped forever, once the thread had a buffer.
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (37, 29)).astype(np.float32)
    b = rng.uniform(-1, 1, (29, 70)).astype(np.float32)
    krypton.matmul(a, b, kernel=kernel)  # this thread now has its packing buffers
    for _ in range(2):
        c = krypton.matmul(a, b, kernel=kernel, **{knob: 2**63 - 1})
        assert np.abs(c - a.astype(np.float64) @ b).max() < 1e-5
    largest = r"(2\*\*63 - 1|9223372036854775807)"
    with pytest.raises(ValueError, match=rf"{knob} must be at most {largest}, got "
                                         r"9223372036854775808"):
        krypton.matmul(a, b, kernel=kernel, **{knob: 2**63})


@pytest.mark.parametrize("value, error", [(None, TypeError), ("4", TypeError),
                                          (float("nan"), TypeError), (4.0, TypeError),
                                          (np.int64(-4), ValueError), (-(2**70), ValueError)])
def test_knob_values_that_are_not_positive_integers(value, error):
    with pytest.raises(error, match="tile_m must be a positive integer"):
        krypton.matmul(A, B, kernel="tiled", tile_m=value)
    assert krypton.matmul(A, B, kernel="tiled", tile_m=np.int32(3)).shape == (4, 5)


@pytest.mark.parametrize("knobs, match", [
    ({"isa": None}, None), ({"isa": 5}, "isa 5 is not available"),
    ({"mr": -6}, "mr must be a positive integer, got -6"),
    ({"mr": 2**70}, "mr must be at most (2\\*\\*63 - 1|9223372036854775807)"),
    ({"nr": 0}, "nr must be a positive integer, got 0"),
])
def test_code_knobs_are_validated_before_compiling(knobs, match):
    if match is None:  # None means: this machine's ISA
        assert krypton.matmul(A, B, kernel="packed", **knobs).shape == (4, 5)
        return
    with pytest.raises(ValueError, match=match):
        krypton.matmul(A, B, kernel="packed", **knobs)


@pytest.mark.parametrize("kernel", [["naive"], ("packed",), 5])
def test_a_kernel_that_is_not_a_name_is_a_type_error_naming_the_choices(kernel):
    with pytest.raises(TypeError, match=r"kernel must be a name \(str\), one of naive, .*small"):
        krypton.matmul(A, B, kernel=kernel)


def test_get_kernel_and_kernel_calls_take_only_their_own_knobs():
    with pytest.raises(ValueError, match=r"kernel 'packed' has no code knob 'mc'"):
        krypton.get_kernel("packed", mc=4)
    with pytest.raises(TypeError, match=r"kernel must be a name \(str\).*got NoneType None"):
        krypton.get_kernel(None)
    with pytest.raises(ValueError, match=r"has no knob 'mr' \(code knobs are given when"):
        krypton.get_kernel("packed")(A, B, mr=4)
    with pytest.raises(TypeError, match=r"a must be a NumPy array, got list"):
        krypton.get_kernel("packed")([[1.0]], B)


def test_an_output_too_large_to_allocate_is_a_memory_error_before_any_c_runs():
    # Zero-stride (broadcast) operands take no memory, so a product of any shape can be asked
    # for: here C would need 10**7 x 10**6 floats (40 TB), then more than an address space.
    a = np.broadcast_to(ONE, (10**7, 3))
    b = np.broadcast_to(ONE, (3, 10**6))
    for kernel in krypton.KERNELS:
        with pytest.raises(MemoryError):
            krypton.matmul(a, b, kernel=kernel)
    with pytest.raises(ValueError, match="array is too big"):
        krypton.matmul(np.broadcast_to(ONE, (2**40, 3)), np.broadcast_to(ONE, (3, 2**40)))


@pytest.mark.parametrize("kernel", ["packed", "parallel"])
@pytest.mark.parametrize("k", [10**17, 2**61 - 1])
def test_packing_buffers_that_cannot_be_allocated_are_a_memory_error(kernel, k):
    # With kc = K, C asks for packing buffers of MR x K and NR x K floats: for K = 10**17
    # aligned_alloc fails; for K = 2**61 - 1 (the largest a float32 view can have) the count
    # itself overflows int64, and once wrapped to a small number it got the thread's existing
    # small buffer and wrote far past it (a segfault). Either way: KR_ENOMEM, then MemoryError,
    # and the next call works.
    krypton.matmul(A, B, kernel=kernel)  # this thread now has small packing buffers
    a = np.broadcast_to(ONE, (1, k))
    b = np.broadcast_to(ONE, (k, 1))
    with pytest.raises(MemoryError, match=rf"kernel '{kernel}' could not allocate its packing "
                                          rf"buffers for M=1, N=1, K={k}"):
        krypton.matmul(a, b, kernel=kernel, kc=k)
    assert np.array_equal(krypton.matmul(A, B, kernel=kernel), A @ B)


RETURNS = r"""
#include "krypton.h"
int kr_sgemm_returns(int64_t M, int64_t N, int64_t K, const float *A, int64_t rsa, int64_t csa,
                     const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc,
                     const kr_knobs *knobs)
{
    return CODE;
}
"""


@pytest.mark.parametrize("code, error, match", [
    (1, MemoryError, "could not allocate"), (2, RuntimeError, "returned KR_EINVAL"),
    (99, RuntimeError, "returned error 99"), (-1, RuntimeError, "returned error -1")])
def test_a_kernels_error_code_becomes_an_exception(code, error, match):
    source = RETURNS.replace("CODE", str(code))
    kernel = krypton.compile_source(source, "kr_sgemm_returns", like="tiled",
                                    name=f"returns_{abs(code)}{'n' if code < 0 else ''}")
    with pytest.raises(error, match=match):
        kernel(A, B)


@pytest.mark.parametrize("arguments, error, match", [
    ((None, "kr_x"), TypeError, "source must be C code as a str, got NoneType"),
    ((b"int x;", "kr_x"), TypeError, r"got bytes: decode it"),
    (("int x;", "1abc"), ValueError, "function must be a C identifier, got '1abc'"),
    (("int x;", None), ValueError, "function must be a C identifier, got None"),
    (("int x;", "kr_x", "fast"), ValueError, "unknown kernel 'fast'"),
])
def test_compile_source_checks_its_arguments(arguments, error, match):
    with pytest.raises(error, match=match):
        krypton.compile_source(*arguments)


def test_compile_source_names_a_function_the_source_does_not_define():
    with pytest.raises(ValueError, match=r"the source does not define the function "
                                         r"'kr_sgemm_absent'"):
        krypton.compile_source('#include "krypton.h"\nint unrelated;\n', "kr_sgemm_absent",
                               name="absent")
    with pytest.raises(ValueError, match="module name must be a C identifier"):
        krypton.compile_source("int x;", "kr_x", name="a-b")
