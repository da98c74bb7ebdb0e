"""Fuzzing every rung at once over everything a call can vary, against float64 NumPy.

tests/test_kernels.py checks each dimension of the input space on its own (shapes and the five
named layouts; runtime knobs; micro-kernel variants). Here hypothesis draws all of them together
for every call: M, N, K (0, 1, primes, one below / at / above the vector width, MR, NR and the
drawn block sizes), the memory layout of each operand (any strides, negative, broadcast,
Fortran, transposed, misaligned), the runtime knobs (from 1 to 2**62), the compiled micro-tile
and ISA, the thread count, and a few NaN and infinities, which must land where NumPy puts them.

The threaded rungs (parallel, small) run products smaller than a few MFLOP on one thread, which
would leave the thread count untested on fuzz-sized shapes; so they are also fuzzed as compiled
with ``KR_MIN_FLOPS_PER_THREAD=1``, where every product is split over all the threads asked for.

Bounded in CI (300 cases per rung, about 20 s on 2 cores). On demand, the "long" profile of
tests/conftest.py, which also draws from every micro-tile shape the ISA can hold:

    KRYPTON_HYPOTHESIS_PROFILE=long python -m pytest tests/test_fuzz_kernels.py -s

runs 5000 cases per rung (``KRYPTON_FUZZ_EXAMPLES=N`` sets any count). tests/test_sanitizers.py
runs a share of them under ASan and UBSan. A failure prints the case, the exact call to replay
it, and hypothesis' ``@reproduce_failure`` blob.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import krypton
from krypton.kernels import DEFAULT_MICROTILE, SPECS, compile_source, kernel_source

import strategies as S
from strategies import MemoryLayout  # noqa: F401  (so a replayed Case's repr evaluates)

SPECIAL_VALUES = ("nan", "inf", "-inf")

# Cases per rung: $KRYPTON_FUZZ_EXAMPLES if set (tests/test_sanitizers.py sets it), else 300, or
# the profile's count if larger (the "long" profile: 5000).
EXAMPLES = (int(os.environ.get("KRYPTON_FUZZ_EXAMPLES", "0"))
            or max(300, settings.default.max_examples))
# Long runs (1000 cases per rung or more) draw from every micro-tile the native ISA can hold
# (up to 16 rows and 4 vectors: ~45 on AVX-512, each compiled once per rung, minutes in all);
# shorter runs from the handful that tests/test_kernels.py compiles anyway.
ALL_MICROTILES = S.every_microtile() + S.microtile_variants()


@dataclass(frozen=True)
class Case:
    """One fuzzed call. ``operands()`` rebuilds its inputs; ``call()`` is the code to rerun it."""

    kernel: str
    m: int
    n: int
    k: int
    layout_a: S.MemoryLayout = S.MemoryLayout()
    layout_b: S.MemoryLayout = S.MemoryLayout()
    seed: int = 0
    specials: tuple[tuple[str, float, str], ...] = ()  # (operand, position in [0, 1), value)
    code_knobs: dict = field(default_factory=dict)
    runtime_knobs: dict = field(default_factory=dict)
    threads: int | None = None
    every_thread: bool = False

    def operands(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        values = {"a": rng.uniform(-1, 1, (self.m, self.k)).astype(np.float32),
                  "b": rng.uniform(-1, 1, (self.k, self.n)).astype(np.float32)}
        for operand, position, value in self.specials:
            flat = values[operand].reshape(-1)
            if flat.size:
                flat[int(position * flat.size)] = float(value)
        return self.layout_a.view(values["a"]), self.layout_b.view(values["b"])

    def call(self) -> str:
        knobs = "".join(f", {name}={value!r}"
                        for name, value in {**self.code_knobs, **self.runtime_knobs}.items())
        if self.every_thread:
            return (f"every_thread({self.kernel!r})(a, b, threads={self.threads!r}{knobs})   "
                    "# tests/test_fuzz_kernels.py")
        return f"krypton.matmul(a, b, kernel={self.kernel!r}, threads={self.threads!r}{knobs})"

    def run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.every_thread:
            return every_thread(self.kernel)(a, b, threads=self.threads, **self.runtime_knobs)
        return krypton.matmul(a, b, kernel=self.kernel, threads=self.threads,
                              **self.code_knobs, **self.runtime_knobs)


@functools.lru_cache(maxsize=None)
def every_thread(rung: str) -> krypton.Kernel:
    """A threaded rung compiled to split even a 1 x 1 x 1 product over every thread it is given."""
    source = "#define KR_MIN_FLOPS_PER_THREAD 1\n" + kernel_source(rung)
    return compile_source(source, f"kr_sgemm_{rung}", like=rung, name=f"{rung}_every_thread")


def blocks() -> st.SearchStrategy[int]:
    """A block size: mostly small (edge blocks in small shapes), sometimes past the matrix, or
    absurd (a block larger than any matrix must act as one block)."""
    return st.one_of(st.integers(1, 70), st.integers(1, 600),
                     st.sampled_from([2**31 - 1, 2**31, 2**62, 2**63 - 1]))


@st.composite
def cases(draw, kernel: str) -> Case:
    spec = SPECS[kernel]
    every_thread = spec.threaded and draw(st.booleans())
    code_knobs: dict = {}
    if spec.code_knobs and not every_thread and draw(st.booleans()):
        variant = draw(S.microtiles() if EXAMPLES < 1000 else st.sampled_from(ALL_MICROTILES))
        code_knobs = {name: variant[name] for name in spec.code_knobs}
    runtime_knobs = draw(S.runtime_knobs(kernel, block=blocks()))
    isa = code_knobs.get("isa", S.ISA)
    mr, nr = (code_knobs["mr"], code_knobs["nr"]) if "mr" in code_knobs \
        else DEFAULT_MICROTILE[isa]
    # Sizes next to the edges this very call has: MR, NR and the drawn blocks.
    edges = {mr, nr, *(v for v in runtime_knobs.values() if isinstance(v, int) and v <= 300)}
    near_edges = st.sampled_from(sorted({e + d for e in edges for d in (-1, 0, 1)} - {-1}))
    size = st.one_of(S.sizes(140), near_edges)
    m, n, k = draw(size), draw(size), draw(size)
    if spec.threaded:
        threads = draw(st.one_of(st.none(), st.integers(1, 4), st.just(8)))
    else:
        threads = draw(st.sampled_from([None, 1]))
    specials = draw(st.lists(st.tuples(st.sampled_from("ab"), st.floats(0, 1, exclude_max=True),
                                       st.sampled_from(SPECIAL_VALUES)), max_size=3)
                    | st.just([]))
    return Case(kernel=kernel, m=m, n=n, k=k, layout_a=draw(S.memory_layouts()),
                layout_b=draw(S.memory_layouts()), seed=draw(st.integers(0, 2**32 - 1)),
                specials=tuple(specials), code_knobs=code_knobs, runtime_knobs=runtime_knobs,
                threads=threads, every_thread=every_thread)


def mismatch(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> str | None:
    """What is wrong with ``c`` as ``a @ b``, or None: NaN and infinities where NumPy has them,
    every finite element within float32 rounding (a rigorous bound, since fuzzed operands can
    repeat one value k times) of the float64 product."""
    expected = S.reference(a, b)
    if c.shape != expected.shape or c.dtype != np.float32 or not c.flags.c_contiguous:
        return f"returned {c.dtype} {c.shape} (contiguous: {c.flags.c_contiguous})"
    for name, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        differ = test(c) != test(expected)
        if differ.any():
            i, j = np.argwhere(differ)[0]
            return f"{name} pattern differs from NumPy at C[{i}, {j}]: {c[i, j]} vs {expected[i, j]}"
    finite = np.isfinite(expected)
    error = np.abs(c[finite] - expected[finite])
    bound = S.error_bound(a, b)[finite]
    if not np.all(error <= bound):
        worst = int(np.argmax(error - bound))
        return f"error {error[worst]:.3g} > float32 rounding bound {bound[worst]:.3g}"
    return None


statistics = {"cases": 0, "seconds": 0.0}


@pytest.fixture(scope="module", autouse=True)
def report_totals():
    yield
    print(f"\nfuzz: {statistics['cases']} cases over {len(krypton.KERNELS)} rungs in "
          f"{statistics['seconds']:.1f} s")


def describe(case: Case) -> None:
    """Tell hypothesis' statistics (--hypothesis-show-statistics) what the cases covered."""
    event(f"layouts: {case.layout_a.kind} @ {case.layout_b.kind}")
    event("a zero dimension" if 0 in (case.m, case.n, case.k) else "M, N, K >= 1")
    event("NaN/inf in the input" if case.specials else "finite input")
    if SPECS[case.kernel].threaded:
        event(f"every_thread={case.every_thread}, threads="
              f"{'>1' if (case.threads or krypton.machine.cpu_count()) > 1 else '1'}")
    if case.code_knobs:
        event(f"compiled variant {case.code_knobs}")
    if any(value > 600 for value in case.runtime_knobs.values() if isinstance(value, int)):
        event("a block larger than any matrix")


@pytest.mark.parametrize("kernel", krypton.KERNELS)
@settings(max_examples=EXAMPLES)
@given(data=st.data())
def test_fuzzed_calls_match_numpy(kernel, data):
    case = data.draw(cases(kernel), label="case")
    describe(case)
    start = time.perf_counter()
    a, b = case.operands()
    a_before, b_before = a.copy(), b.copy()
    c = case.run(a, b)
    problem = mismatch(c, a, b)
    if problem is None and not (np.array_equal(a, a_before, equal_nan=True)
                                and np.array_equal(b, b_before, equal_nan=True)):
        problem = "the call modified its input"
    statistics["cases"] += 1
    statistics["seconds"] += time.perf_counter() - start
    assert problem is None, (
        f"{kernel}: {problem}. Replay it with:\n"
        f"    import numpy as np, krypton; from test_fuzz_kernels import *\n"
        f"    a, b = {case!r}.operands()\n"
        f"    {case.call()}")
