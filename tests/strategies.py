"""Hypothesis strategies shared by the kernel tests: shapes, memory layouts and knobs.

Shapes favour the sizes where kernels break: 0, 1, primes, and one below / at / above every
block size the kernel uses (vector width, MR, NR, tiles, mc, kc, nc).
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class MemoryLayout:
    """How an operand sits in memory; ``view(values)`` builds it, ``repr`` rebuilds it.

    strided: a view of a NaN-filled parent array in ``order`` ("C" or "F"), optionally made
        as the ``.T`` of its transpose, taking every ``row_step``-th row and ``col_step``-th
        column (negative: walked backwards). A kernel that reads between the elements reads
        NaN, and the result shows it.
    broadcast_rows / broadcast_cols: the first row (column) repeated with stride 0.
    misaligned: a C-contiguous array starting one byte into its buffer.
    """

    kind: str = "strided"
    order: str = "C"
    row_step: int = 1
    col_step: int = 1
    transposed: bool = False

    def view(self, values: np.ndarray) -> np.ndarray:
        rows, cols = values.shape
        if self.kind == "broadcast_rows":
            return np.broadcast_to(values[:1], (rows, cols)) if rows else values
        if self.kind == "broadcast_cols":
            return np.broadcast_to(values[:, :1], (rows, cols)) if cols else values
        if self.kind == "misaligned":
            raw = np.empty(values.size * 4 + 1, np.uint8)
            out = np.frombuffer(raw.data, np.float32, count=values.size, offset=1)
            out = out.reshape(rows, cols)
            out[...] = values
            return out
        parent_shape = (max(1, rows * abs(self.row_step)), max(1, cols * abs(self.col_step)))
        if self.transposed:
            parent = np.full(parent_shape[::-1], np.nan, np.float32, order=self.order).T
        else:
            parent = np.full(parent_shape, np.nan, np.float32, order=self.order)
        out = parent[::self.row_step, ::self.col_step][:rows, :cols]
        out[...] = values
        return out


def memory_layouts() -> st.SearchStrategy[MemoryLayout]:
    """Layouts of every kind: contiguous, Fortran, transposed, strided, reversed, broadcast,
    misaligned. Contiguous C order is the most likely single layout."""
    steps = st.sampled_from([1, 1, 2, 3, -1, -2])
    strided = st.builds(MemoryLayout, kind=st.just("strided"), order=st.sampled_from("CF"),
                        row_step=steps, col_step=steps, transposed=st.booleans())
    special = st.builds(MemoryLayout, kind=st.sampled_from(
        ["broadcast_rows", "broadcast_cols", "misaligned"]))
    return st.one_of(st.just(MemoryLayout()), strided, special)


def tolerance(k: int) -> float:
    """Absolute tolerance for float32 sums of k products of values in [-1, 1].

    Rounding errors of a float32 sum grow like sqrt(k) (a random walk of errors of size
    eps * |partial sum|), and the partial sums themselves grow like sqrt(k).
    """
    return 4 * float(np.finfo(np.float32).eps) * max(1, k) ** 0.5 * max(1.0, (k / 3) ** 0.5) + 1e-6


def error_bound(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rounding error float32 can make in each element of a @ b, in any summation order:
    gamma_(k+1) |A| |B| (Higham, Accuracy and Stability of Numerical Algorithms, 3.1), where
    a sum of k products has k additions and one rounding per multiplication, fused or not.
    Rigorous where ``tolerance`` is statistical: it holds for any values, e.g. k equal terms."""
    k = a.shape[1]
    unit = 2.0**-24
    gamma = (k + 1) * unit / (1 - (k + 1) * unit)
    with np.errstate(invalid="ignore", over="ignore"):
        return gamma * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64))) + 1e-37


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The product in float64: the oracle every kernel is checked against."""
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is nan, as intended
        return a.astype(np.float64) @ b.astype(np.float64)


def runtime_knobs(kernel: str, block: st.SearchStrategy[int] | None = None
                  ) -> st.SearchStrategy[dict]:
    """Non-default runtime knobs, by default small enough (``block``: 1 to 70) that edge
    blocks appear in small shapes."""
    block = block if block is not None else st.integers(1, 70)
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


def every_microtile(isa: str = ISA, max_mr: int = 16, max_vectors: int = 4) -> list[dict]:
    """Every micro-tile ``isa`` can hold in its registers, up to ``max_mr`` rows and
    ``max_vectors`` vectors per row (each one is a separate compile: for long runs)."""
    from krypton.kernels import registers_needed

    width = machine.VECTOR_WIDTH[isa]
    return [{"isa": isa, "mr": mr, "nr": vectors * width}
            for vectors in range(1, max_vectors + 1) for mr in range(1, max_mr + 1)
            if registers_needed(mr, vectors * width, isa) <= machine.VECTOR_REGISTERS[isa]]


def microtiles() -> st.SearchStrategy[dict]:
    """Compiled variants of the micro-kernel (each one is compiled once, then cached)."""
    return st.sampled_from(microtile_variants())
