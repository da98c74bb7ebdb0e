"""Hypothesis strategies shared by the kernel tests: shapes, memory layouts and knobs.

Shapes favour the sizes where kernels break: 0, 1, primes, and one below / at / above every
block size the kernel uses (vector width, MR, NR, tiles, mc, kc, nc).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from krypton import machine

ISA = machine.native_isa()
WIDTH = machine.VECTOR_WIDTH[ISA]

EDGE_SIZES = sorted({0, 1, 2, 3, 5, 7, 11, 13, 17, 31, 37, 61, 97, 127, 131,
                     WIDTH - 1, WIDTH, WIDTH + 1, 2 * WIDTH - 1, 2 * WIDTH + 1,
                     5, 6, 7, 11, 12, 13, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 48, 49,
                     63, 64, 65, 95, 96, 97})

LAYOUTS = ("c", "transposed", "sliced", "reversed", "fortran")


def sizes(max_size: int = 140) -> st.SearchStrategy[int]:
    """A dimension: mostly an edge size, sometimes any size up to ``max_size``."""
    edges = [s for s in EDGE_SIZES if s <= max_size]
    return st.one_of(st.sampled_from(edges), st.integers(0, max_size))


def shapes(max_size: int = 140) -> st.SearchStrategy[tuple[int, int, int]]:
    """(M, N, K)."""
    return st.tuples(sizes(max_size), sizes(max_size), sizes(max_size))


def make_operand(rng: np.random.Generator, rows: int, cols: int, layout: str) -> np.ndarray:
    """A float32 (rows, cols) array with values uniform in [-1, 1], laid out as ``layout``.

    c: C-contiguous. transposed: the .T view of a C-contiguous (cols, rows) array.
    sliced: every other row and column of a larger array. reversed: negative strides.
    fortran: column-major.
    """
    values = rng.uniform(-1, 1, (rows, cols)).astype(np.float32)
    if layout == "c":
        return values
    if layout == "transposed":
        return np.ascontiguousarray(values.T).T
    if layout == "sliced":
        big = np.full((2 * rows + 1, 2 * cols + 3), np.nan, np.float32)
        big[1::2, 3::2][:rows, :cols] = values
        return big[1::2, 3::2][:rows, :cols]
    if layout == "reversed":
        return np.ascontiguousarray(values[::-1, ::-1])[::-1, ::-1]
    if layout == "fortran":
        return np.asfortranarray(values)
    raise ValueError(layout)


def tolerance(k: int) -> float:
    """Absolute tolerance for float32 sums of k products of values in [-1, 1].

    Rounding errors of a float32 sum grow like sqrt(k) (a random walk of errors of size
    eps * |partial sum|), and the partial sums themselves grow like sqrt(k).
    """
    return 4 * float(np.finfo(np.float32).eps) * max(1, k) ** 0.5 * max(1.0, (k / 3) ** 0.5) + 1e-6


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The product in float64: the oracle every kernel is checked against."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is nan, as intended
        return a.astype(np.float64) @ b.astype(np.float64)


def runtime_knobs(kernel: str) -> st.SearchStrategy[dict]:
    """Non-default runtime knobs, small enough that edge blocks appear in small shapes."""
    block = st.integers(1, 70)
    if kernel == "naive":
        return st.fixed_dictionaries({"loop_order": st.sampled_from(["ijk", "ikj"])})
    if kernel in ("tiled", "simd", "regblock"):
        return st.fixed_dictionaries({}, optional={"tile_m": block, "tile_n": block,
                                                   "tile_k": block})
    return st.fixed_dictionaries({}, optional={"mc": block, "kc": block, "nc": block})


def microtile_variants() -> list[dict]:
    """The code knobs (isa, mr, nr) of the micro-kernel variants the tests compile."""
    variants = {"avx512": [(12, 32), (1, 16), (6, 48), (4, 64)], "avx2": [(6, 16), (3, 8)],
                "neon": [(8, 12), (4, 8)], "scalar": [(4, 2), (1, 1)]}
    choices = [{"isa": ISA, "mr": mr, "nr": nr} for mr, nr in variants[ISA]]
    if ISA == "avx512":
        choices += [{"isa": "avx2", "mr": 6, "nr": 16}]
    choices += [{"isa": "scalar", "mr": 4, "nr": 2}]
    return choices


def microtiles() -> st.SearchStrategy[dict]:
    """Compiled variants of the micro-kernel (each one is compiled once, then cached)."""
    return st.sampled_from(microtile_variants())
